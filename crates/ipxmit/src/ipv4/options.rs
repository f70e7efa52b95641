//! The IP options of a socket: checked and prepared when `IP_OPTIONS` is set,
//! completed in every datagram's header.
//!
//! Stands for `ip_options_get`/`ip_options_compile` as they run for a socket
//! (no packet yet) and `ip_options_build` (`net/ipv4/ip_options.c`), and
//! `inet_current_timestamp` (`net/ipv4/icmp.c`).
//!
//! At `setsockopt` time the bytes are padded with End to a multiple of 4, every
//! byte after an End becomes End, each option is validated (length, pointer,
//! duplicates) and the options the stack fills in later are prepared: a record
//! route or timestamp pointer is moved past the slot this host will fill, and
//! a source route gives up its first address (the first hop, `faddr`), the
//! others moving down one slot so the last is free for the final destination.
//! When a datagram's header is written, those slots get the source address, the
//! time, the destination. The caller is taken to be privileged
//! (`CAP_NET_RAW`): options of unknown type are accepted as they are.

use std::net::Ipv4Addr;

use crate::error::SendError;
use crate::wire::ipv4_options::kind;

/// What `inet_addr_type` says of an address (for prespecified timestamps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrType {
    /// Somewhere else.
    Unicast,
    /// One of ours.
    Local,
    /// 0.0.0.0, 255.255.255.255 or a subnet broadcast address.
    Broadcast,
    /// 224.0.0.0/4.
    Multicast,
}

/// A socket's IP options (`struct ip_options`): the bytes to put in each
/// header and what to fill in them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpOptions {
    /// The option bytes (a multiple of 4, at most 40).
    pub data: Vec<u8>,
    /// First hop of a source route (`faddr`): where the datagram is routed.
    pub faddr: Option<Ipv4Addr>,
    /// Offset from the IP header of the source route option (`srr`), 0 if none.
    pub srr: u8,
    /// The source route is strict (`is_strictroute`).
    pub is_strictroute: bool,
    /// Offset of the record route option (`rr`), 0 if none.
    pub rr: u8,
    /// The record route needs this host's address (`rr_needaddr`).
    pub rr_needaddr: bool,
    /// Offset of the timestamp option (`ts`), 0 if none.
    pub ts: u8,
    /// The timestamp needs the time (`ts_needtime`).
    pub ts_needtime: bool,
    /// The timestamp needs this host's address (`ts_needaddr`).
    pub ts_needaddr: bool,
    /// Offset of a router alert with value 0 (`router_alert`), 0 if none.
    pub router_alert: u8,
}

impl IpOptions {
    /// Option bytes (`optlen`).
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when there are no options.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

fn bad(what: &'static str) -> SendError {
    SendError::Inval(what)
}

fn addr_at(d: &[u8], i: usize) -> Ipv4Addr {
    Ipv4Addr::new(d[i], d[i + 1], d[i + 2], d[i + 3])
}

/// Kernel: `ip_options_get()` + `ip_options_compile()` for a socket. `raw` is
/// what was given to `IP_OPTIONS`; `addr_type` classifies the addresses of
/// prespecified timestamps. Any problem is `EINVAL`.
pub fn compile(
    raw: &[u8],
    addr_type: impl Fn(Ipv4Addr) -> AddrType,
) -> Result<IpOptions, SendError> {
    if raw.len() > 40 {
        return Err(bad("IP options longer than 40 bytes"));
    }
    let mut d = raw.to_vec();
    while !d.len().is_multiple_of(4) {
        d.push(kind::END);
    }
    let mut o = IpOptions::default();
    let n = d.len();
    let mut i = 0;
    while i < n {
        match d[i] {
            kind::END => {
                d[i + 1..].fill(kind::END);
                break;
            }
            kind::NOOP => {
                i += 1;
                continue;
            }
            _ => {}
        }
        if n - i < 2 {
            return Err(bad("IP option truncated"));
        }
        let len = d[i + 1] as usize;
        if len < 2 || len > n - i {
            return Err(bad("IP option length out of range"));
        }
        let off = (20 + i) as u8;
        let opt = &mut d[i..i + len];
        match opt[0] {
            kind::LSRR | kind::SSRR => compile_srr(opt, off, &mut o)?,
            kind::RR => compile_rr(opt, off, &mut o)?,
            kind::TIMESTAMP => compile_ts(opt, off, &mut o, &addr_type)?,
            kind::RA => compile_ra(opt, off, &mut o)?,
            _ => {}
        }
        i += len;
    }
    o.data = d;
    Ok(o)
}

/// Source route (LSRR/SSRR) as a socket gives it: the first hop is taken out
/// as `faddr` and the rest moved up.
fn compile_srr(opt: &mut [u8], off: u8, o: &mut IpOptions) -> Result<(), SendError> {
    let len = opt.len();
    if len < 3 || opt[2] < 4 {
        return Err(bad("source route option malformed"));
    }
    if o.srr != 0 {
        return Err(bad("two source route options"));
    }
    // From a socket: pointer at the first address, whole addresses.
    if opt[2] != 4 || len < 7 || (len - 3) & 3 != 0 {
        return Err(bad("source route option malformed"));
    }
    o.faddr = Some(addr_at(opt, 3));
    opt.copy_within(7.., 3);
    o.is_strictroute = opt[0] == kind::SSRR;
    o.srr = off;
    Ok(())
}

/// Record route: the pointer moves past the slot the output path fills.
fn compile_rr(opt: &mut [u8], off: u8, o: &mut IpOptions) -> Result<(), SendError> {
    let len = opt.len();
    if o.rr != 0 {
        return Err(bad("two record route options"));
    }
    if len < 3 || opt[2] < 4 {
        return Err(bad("record route option malformed"));
    }
    let p = opt[2] as usize;
    if p <= len {
        if p + 3 > len {
            return Err(bad("record route pointer out of range"));
        }
        opt[2] += 4;
        o.rr_needaddr = true;
    }
    o.rr = off;
    Ok(())
}

/// Timestamp: which stamps the output path writes, per the flags.
fn compile_ts(
    opt: &mut [u8],
    off: u8,
    o: &mut IpOptions,
    addr_type: &impl Fn(Ipv4Addr) -> AddrType,
) -> Result<(), SendError> {
    let len = opt.len();
    if o.ts != 0 {
        return Err(bad("two timestamp options"));
    }
    if len < 4 || opt[2] < 5 {
        return Err(bad("timestamp option malformed"));
    }
    let p = opt[2] as usize;
    let flags = opt[3] & 0xf;
    if p <= len {
        if p + 3 > len {
            return Err(bad("timestamp pointer out of range"));
        }
        match flags {
            0 => {
                o.ts_needtime = true;
                opt[2] += 4;
            }
            1 | 3 if p + 7 > len => {
                return Err(bad("timestamp pointer out of range"));
            }
            1 => {
                o.ts_needaddr = true;
                o.ts_needtime = true;
                opt[2] += 8;
            }
            // Only a host named in the list stamps it.
            3 if addr_type(addr_at(opt, p - 1)) != AddrType::Unicast => {
                o.ts_needtime = true;
                opt[2] += 8;
            }
            _ => {}
        }
    } else if flags != 3 && opt[3] >> 4 == 15 {
        return Err(bad("timestamp overflow counter full"));
    }
    o.ts = off;
    Ok(())
}

/// Router alert: recorded when its value is 0.
fn compile_ra(opt: &mut [u8], off: u8, o: &mut IpOptions) -> Result<(), SendError> {
    if opt.len() < 4 {
        return Err(bad("router alert option malformed"));
    }
    if opt[2] == 0 && opt[3] == 0 {
        o.router_alert = off;
    }
    Ok(())
}

/// Kernel: `inet_current_timestamp()`: milliseconds since midnight UTC, the
/// value of an IP timestamp. This is the one place the stack reads the wall
/// clock (the injected [`Clock`](crate::time::Clock) is monotonic).
pub fn current_timestamp() -> u32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    ((now.as_secs() % 86_400) * 1000 + u64::from(now.subsec_millis())) as u32
}

/// Kernel: `ip_options_build()`. Copies the options into the header `h` (the
/// IP header with room for them) and fills in the source route's last slot
/// with `daddr` (the final destination), the record route's and timestamp's
/// slots with `saddr` and the time `now_ms`.
pub fn build(h: &mut [u8], o: &IpOptions, daddr: Ipv4Addr, saddr: Ipv4Addr, now_ms: u32) {
    h[20..20 + o.data.len()].copy_from_slice(&o.data);
    let mut put = |at: usize, v: [u8; 4]| h[at..at + 4].copy_from_slice(&v);
    if o.srr != 0 {
        let s = o.srr as usize;
        put(s + o.data[s - 20 + 1] as usize - 4, daddr.octets());
    }
    if o.rr_needaddr {
        let r = o.rr as usize;
        put(r + o.data[r - 20 + 2] as usize - 5, saddr.octets());
    }
    if o.ts_needtime || o.ts_needaddr {
        let t = o.ts as usize;
        let p = o.data[t - 20 + 2] as usize;
        if o.ts_needtime {
            put(t + p - 5, now_ms.to_be_bytes());
        }
        if o.ts_needaddr {
            put(t + p - 9, saddr.octets());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_unicast(_: Ipv4Addr) -> AddrType {
        AddrType::Unicast
    }

    #[test]
    fn record_route_pointer_moves_and_the_first_slot_gets_the_source() {
        let o = compile(&[7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0], all_unicast).unwrap();
        assert_eq!(o.data, [7, 11, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!((o.rr, o.rr_needaddr), (20, true));
        let mut h = [0u8; 32];
        build(
            &mut h,
            &o,
            Ipv4Addr::new(9, 9, 9, 9),
            Ipv4Addr::new(10, 0, 0, 1),
            5,
        );
        assert_eq!(h[20..], [7, 11, 8, 10, 0, 0, 1, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn bytes_after_end_become_end() {
        let o = compile(&[148, 4, 0, 0, 0, 1, 1, 1], all_unicast).unwrap();
        assert_eq!(o.data, [148, 4, 0, 0, 0, 0, 0, 0]);
        assert_eq!(o.router_alert, 20);
    }

    #[test]
    fn timestamps_with_and_without_addresses() {
        let o = compile(&[68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0], all_unicast).unwrap();
        let mut h = [0u8; 32];
        build(
            &mut h,
            &o,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(1, 2, 3, 4),
            0x0102_0304,
        );
        assert_eq!(h[20..], [68, 12, 9, 0, 1, 2, 3, 4, 0, 0, 0, 0]);
        let o = compile(&[68, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0], all_unicast).unwrap();
        build(
            &mut h,
            &o,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(1, 2, 3, 4),
            7,
        );
        assert_eq!(h[20..], [68, 12, 13, 1, 1, 2, 3, 4, 0, 0, 0, 7]);
        // Prespecified: only a listed address that is not somewhere else stamps.
        let o = compile(&[68, 12, 5, 3, 8, 8, 8, 8, 0, 0, 0, 0], all_unicast).unwrap();
        assert_eq!((o.data[2], o.ts_needtime), (5, false));
        let o = compile(&[68, 12, 5, 3, 0, 0, 0, 0, 0, 0, 0, 0], |_| {
            AddrType::Broadcast
        })
        .unwrap();
        assert_eq!((o.data[2], o.ts_needtime), (13, true));
    }

    #[test]
    fn source_route_gives_up_its_first_hop() {
        let o = compile(&[131, 11, 4, 1, 1, 1, 1, 2, 2, 2, 2, 0], all_unicast).unwrap();
        assert_eq!(o.faddr, Some(Ipv4Addr::new(1, 1, 1, 1)));
        assert_eq!(o.data, [131, 11, 4, 2, 2, 2, 2, 2, 2, 2, 2, 0]);
        let mut h = [0u8; 32];
        build(
            &mut h,
            &o,
            Ipv4Addr::new(9, 9, 9, 9),
            Ipv4Addr::UNSPECIFIED,
            0,
        );
        assert_eq!(h[20..], [131, 11, 4, 2, 2, 2, 2, 9, 9, 9, 9, 0]);
    }

    #[test]
    fn malformed_options_are_refused() {
        for raw in [
            &[7u8, 2, 4, 0][..],
            &[7, 7, 3, 0, 0, 0, 0, 0],
            &[7, 6, 4, 0, 0, 0, 0, 0],
            &[148, 6, 0, 0],
            &[148, 1, 0, 0],
            &[7, 3, 4, 7, 3, 4, 0, 0],
            &[68, 8, 4, 0, 0, 0, 0, 0],
            &[68, 8, 9, 0xf0, 1, 2, 3, 4],
            &[68, 8, 5, 1, 0, 0, 0, 0],
            &[131, 8, 4, 1, 1, 1, 1, 0],
            &[131, 7, 8, 1, 1, 1, 1, 0],
            &[1, 1, 1, 7],
            &[1; 41],
        ] {
            assert!(compile(raw, all_unicast).is_err(), "{raw:?}");
        }
        // A full record route and a full timestamp are fine as they are.
        let o = compile(&[7, 7, 8, 10, 0, 0, 1], all_unicast).unwrap();
        assert!(!o.rr_needaddr);
        assert!(compile(&[68, 8, 9, 0x20, 1, 2, 3, 4], all_unicast).is_ok());
    }
}
