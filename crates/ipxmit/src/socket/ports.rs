//! The UDP port table of a stack (`udptable`, one hash slot per port): which
//! sockets hold which local port on which local address, with their
//! `SO_REUSEADDR`/`SO_REUSEPORT` flags.
//!
//! Stands for `udp_lib_get_port` and `udp_lib_lport_inuse`
//! (`net/ipv4/udp.c`) and `inet_rcv_saddr_equal` (`net/ipv4/inet_connection_sock.c`):
//! two sockets on one port clash only when their bound addresses overlap
//! (equal, or either is 0.0.0.0), unless both set `SO_REUSEADDR`
//! (`sk_reuse`) or both set `SO_REUSEPORT` (same owner: always here, one
//! process). Ephemeral selection skips a port exactly when binding to it
//! would clash. Binding is not on the per-packet path; the table allocates.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use crate::error::SendError;

/// One socket holding a port (an entry of a `udp_hslot` chain).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortOwner {
    /// The socket's identity.
    pub id: u64,
    /// The bound (receive) address, `inet_rcv_saddr`; 0.0.0.0 for any.
    pub addr: Ipv4Addr,
    /// `SO_REUSEADDR` (`sk->sk_reuse`).
    pub reuseaddr: bool,
    /// `SO_REUSEPORT` (`sk->sk_reuseport`).
    pub reuseport: bool,
}

/// Kernel: `inet_rcv_saddr_equal()` with wildcards matching, for IPv4: the
/// addresses are equal or either is 0.0.0.0.
fn addr_overlap(a: Ipv4Addr, b: Ipv4Addr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

/// The sockets holding each port, and the ephemeral cursor.
#[derive(Debug)]
pub struct PortTable {
    /// Per port, its holders in bind order (the kernel adds at the chain's
    /// head, so it walks them newest first).
    bound: HashMap<u16, Vec<PortOwner>>,
    /// The next ephemeral candidate.
    next: u16,
}

impl PortTable {
    /// An empty table whose ephemeral search starts at `first`.
    pub fn new(first: u16) -> PortTable {
        PortTable {
            bound: HashMap::new(),
            next: first,
        }
    }

    /// Kernel: `udp_lib_lport_inuse()` for one port: would `me` clash with a
    /// holder of `port`? Walks the holders newest first as the kernel's
    /// chain; a holder sharing the port through `SO_REUSEPORT` ends the walk
    /// with "free", any other overlapping holder without both `SO_REUSEADDR`
    /// with "in use".
    pub fn in_use(&self, port: u16, me: &PortOwner) -> bool {
        let Some(holders) = self.bound.get(&port) else {
            return false;
        };
        for h in holders.iter().rev() {
            if h.id == me.id || (h.reuseaddr && me.reuseaddr) || !addr_overlap(h.addr, me.addr) {
                continue;
            }
            return !(h.reuseport && me.reuseport);
        }
        false
    }

    /// Kernel: the bitmap pass of `udp_lib_lport_inuse()` for ephemeral
    /// selection: `port` is taken when any overlapping holder clashes with
    /// `me` (a `SO_REUSEPORT` sharer marks nothing).
    fn taken_for_ephemeral(&self, port: u16, me: &PortOwner) -> bool {
        self.bound.get(&port).is_some_and(|holders| {
            holders.iter().any(|h| {
                h.id != me.id
                    && !(h.reuseaddr && me.reuseaddr)
                    && addr_overlap(h.addr, me.addr)
                    && !(h.reuseport && me.reuseport)
            })
        })
    }

    /// Kernel: `udp_lib_get_port()`. Gives `me` port `port`, or for 0 the
    /// next ephemeral port in `range` it can hold; `EADDRINUSE` when it
    /// cannot.
    pub fn get_port(
        &mut self,
        port: u16,
        me: PortOwner,
        range: &RangeInclusive<u16>,
    ) -> Result<u16, SendError> {
        if port != 0 {
            if self.in_use(port, &me) {
                return Err(SendError::AddrInUse(port));
            }
            self.bound.entry(port).or_default().push(me);
            return Ok(port);
        }
        let span = (range.end() - range.start()) as u32 + 1;
        for _ in 0..span {
            let cand = if range.contains(&self.next) {
                self.next
            } else {
                *range.start()
            };
            self.next = if cand >= *range.end() {
                *range.start()
            } else {
                cand + 1
            };
            if !self.taken_for_ephemeral(cand, &me) {
                self.bound.entry(cand).or_default().push(me);
                return Ok(cand);
            }
        }
        Err(SendError::AddrInUse(0))
    }

    /// Kernel: `udp_lib_unhash()`. Socket `id` gives up `port`.
    pub fn release(&mut self, port: u16, id: u64) {
        if let Some(holders) = self.bound.get_mut(&port) {
            holders.retain(|h| h.id != id);
            if holders.is_empty() {
                self.bound.remove(&port);
            }
        }
    }

    /// Updates what the table knows of socket `id` on `port`: its bound
    /// address after a connect picked one (`udp_v4_rehash`), or its reuse
    /// flags after `setsockopt`. No clash check, as in the kernel.
    pub fn update(&mut self, port: u16, owner: PortOwner) {
        if let Some(h) = self
            .bound
            .get_mut(&port)
            .and_then(|v| v.iter_mut().find(|h| h.id == owner.id))
        {
            *h = owner;
        }
    }

    /// The sockets holding `port`, in bind order.
    pub fn owners(&self, port: u16) -> &[PortOwner] {
        self.bound.get(&port).map_or(&[], Vec::as_slice)
    }

    /// Sockets holding `port`.
    pub fn holders(&self, port: u16) -> usize {
        self.bound.get(&port).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
    const ANY: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
    const RANGE: RangeInclusive<u16> = 40000..=40003;

    fn o(id: u64, addr: Ipv4Addr, reuseaddr: bool, reuseport: bool) -> PortOwner {
        PortOwner {
            id,
            addr,
            reuseaddr,
            reuseport,
        }
    }

    fn bind(t: &mut PortTable, port: u16, me: PortOwner) -> Result<u16, SendError> {
        t.get_port(port, me, &RANGE)
    }

    #[test]
    fn distinct_addresses_share_a_port_any_overlaps_all() {
        let mut t = PortTable::new(40000);
        assert_eq!(bind(&mut t, 5000, o(1, A, false, false)), Ok(5000));
        assert_eq!(bind(&mut t, 5000, o(2, B, false, false)), Ok(5000));
        let e = bind(&mut t, 5000, o(3, ANY, false, false));
        assert_eq!(e, Err(SendError::AddrInUse(5000)));
        assert_eq!(
            bind(&mut t, 5000, o(4, A, false, false)),
            Err(SendError::AddrInUse(5000))
        );
        t.release(5000, 1);
        assert_eq!(bind(&mut t, 5000, o(4, A, false, false)), Ok(5000));
        assert_eq!(t.holders(5000), 2);
    }

    #[test]
    fn reuse_needs_both_sockets() {
        let mut t = PortTable::new(40000);
        assert_eq!(bind(&mut t, 53, o(1, ANY, true, false)), Ok(53));
        assert!(bind(&mut t, 53, o(2, A, false, false)).is_err());
        assert_eq!(bind(&mut t, 53, o(3, A, true, false)), Ok(53));
        assert!(bind(&mut t, 53, o(4, A, false, true)).is_err());
        let mut t = PortTable::new(40000);
        assert_eq!(bind(&mut t, 53, o(1, A, false, true)), Ok(53));
        assert_eq!(bind(&mut t, 53, o(2, A, false, true)), Ok(53));
        assert!(bind(&mut t, 53, o(3, ANY, true, false)).is_err());
    }

    #[test]
    fn newest_reuseport_holder_decides_as_the_kernel_chain() {
        let mut t = PortTable::new(40000);
        bind(&mut t, 7, o(1, A, true, false)).unwrap();
        bind(&mut t, 7, o(2, ANY, true, true)).unwrap();
        // The newest holder (2) shares by SO_REUSEPORT: the walk ends "free".
        assert_eq!(bind(&mut t, 7, o(3, A, false, true)), Ok(7));
    }

    #[test]
    fn ephemeral_skips_overlapping_holders_only() {
        let mut t = PortTable::new(40000);
        bind(&mut t, 40000, o(1, A, false, false)).unwrap();
        bind(&mut t, 40001, o(2, ANY, false, false)).unwrap();
        // B overlaps 40001 (any) but not 40000 (A).
        assert_eq!(bind(&mut t, 0, o(3, B, false, false)), Ok(40000));
        // Any overlaps both: the next free is 40002.
        assert_eq!(bind(&mut t, 0, o(4, ANY, false, false)), Ok(40002));
        assert_eq!(bind(&mut t, 0, o(5, ANY, false, false)), Ok(40003));
        assert_eq!(
            bind(&mut t, 0, o(6, ANY, false, false)),
            Err(SendError::AddrInUse(0))
        );
    }

    #[test]
    fn update_moves_the_address_and_flags() {
        let mut t = PortTable::new(40000);
        bind(&mut t, 9, o(1, ANY, false, false)).unwrap();
        assert!(bind(&mut t, 9, o(2, B, false, false)).is_err());
        t.update(9, o(1, A, false, false));
        assert_eq!(bind(&mut t, 9, o(2, B, false, false)), Ok(9));
        t.update(9, o(2, B, true, false));
        assert_eq!(bind(&mut t, 9, o(3, B, true, false)), Ok(9));
    }
}
