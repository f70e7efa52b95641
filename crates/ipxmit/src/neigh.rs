//! Neighbours: next-hop link addresses and the cached hardware header.
//!
//! Stands for `struct neighbour`, the neighbour table (`net/core/neighbour.c`,
//! `__ipv4_neigh_lookup_noref`, `neigh_output`) and `struct hh_cache`
//! (`neigh_hh_output`, `include/net/neighbour.h`). A neighbour in a connected
//! state (`NUD_CONNECTED`: PERMANENT, NOARP, REACHABLE) holds a precomputed Ethernet
//! header that output copies into the packet's headroom in one move.
//!
//! Static entries (`ip neigh add ... nud permanent`) are complete. Resolution over
//! ARP with the kernel's state machine and timers builds on this table.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::wire::EthernetAddress;

/// Neighbour Unreachability Detection state (`NUD_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NudState {
    /// `NUD_NONE`: just created.
    None,
    /// `NUD_INCOMPLETE`: resolution in progress.
    Incomplete,
    /// `NUD_REACHABLE`: confirmed recently.
    Reachable,
    /// `NUD_STALE`: usable, confirmation due.
    Stale,
    /// `NUD_DELAY`: waiting before probing.
    Delay,
    /// `NUD_PROBE`: probing.
    Probe,
    /// `NUD_FAILED`: resolution failed.
    Failed,
    /// `NUD_NOARP`: no resolution needed.
    Noarp,
    /// `NUD_PERMANENT`: static.
    Permanent,
}

impl NudState {
    /// `NUD_CONNECTED`: the cached header may be used without events.
    pub fn is_connected(self) -> bool {
        matches!(
            self,
            NudState::Permanent | NudState::Noarp | NudState::Reachable
        )
    }

    /// `NUD_VALID`: the link address is usable.
    pub fn is_valid(self) -> bool {
        self.is_connected() || matches!(self, NudState::Stale | NudState::Delay | NudState::Probe)
    }

    /// As `ip neigh` prints it.
    pub fn name(self) -> &'static str {
        match self {
            NudState::None => "NONE",
            NudState::Incomplete => "INCOMPLETE",
            NudState::Reachable => "REACHABLE",
            NudState::Stale => "STALE",
            NudState::Delay => "DELAY",
            NudState::Probe => "PROBE",
            NudState::Failed => "FAILED",
            NudState::Noarp => "NOARP",
            NudState::Permanent => "PERMANENT",
        }
    }
}

/// The cached hardware header (`struct hh_cache`): an Ethernet header for IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HhCache {
    /// The header bytes: destination, source, EtherType 0x0800.
    pub hdr: [u8; 14],
}

impl HhCache {
    /// The header from `src` to `dst` carrying IPv4.
    pub fn ethernet_ipv4(dst: EthernetAddress, src: EthernetAddress) -> HhCache {
        let mut hdr = [0u8; 14];
        hdr[0..6].copy_from_slice(&dst.0);
        hdr[6..12].copy_from_slice(&src.0);
        hdr[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        HhCache { hdr }
    }
}

/// One neighbour entry.
pub struct Neighbour {
    /// The neighbour's IPv4 address.
    pub addr: Ipv4Addr,
    /// Interface index it is reached through.
    pub ifindex: u32,
    inner: RwLock<NeighInner>,
}

#[derive(Clone, Copy, Debug)]
struct NeighInner {
    state: NudState,
    lladdr: Option<EthernetAddress>,
    hh: Option<HhCache>,
}

impl fmt::Debug for Neighbour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = *self.inner.read();
        f.debug_struct("Neighbour")
            .field("addr", &self.addr)
            .field("ifindex", &self.ifindex)
            .field("state", &i.state)
            .field("lladdr", &i.lladdr)
            .finish()
    }
}

impl Neighbour {
    /// Current state.
    pub fn state(&self) -> NudState {
        self.inner.read().state
    }

    /// Link address, when known.
    pub fn lladdr(&self) -> Option<EthernetAddress> {
        self.inner.read().lladdr
    }

    /// The cached header when the entry is connected (`neigh_output` fast path).
    #[inline]
    pub fn connected_hh(&self) -> Option<HhCache> {
        let i = self.inner.read();
        if i.state.is_connected() {
            i.hh
        } else {
            None
        }
    }

    /// Sets state and link address, refreshing the cached header
    /// (`neigh_update`, `neigh_update_hhs`). `dev_addr` is the device's address.
    pub fn update(
        &self,
        state: NudState,
        lladdr: Option<EthernetAddress>,
        dev_addr: EthernetAddress,
    ) {
        let mut i = self.inner.write();
        i.state = state;
        if lladdr.is_some() {
            i.lladdr = lladdr;
        }
        i.hh = i.lladdr.map(|ll| HhCache::ethernet_ipv4(ll, dev_addr));
    }
}

/// The neighbour table (`arp_tbl`), keyed by interface and address.
#[derive(Debug, Default)]
pub struct NeighTable {
    map: RwLock<HashMap<(u32, Ipv4Addr), Arc<Neighbour>>>,
}

impl NeighTable {
    /// Finds the entry for `addr` on `ifindex` (`__ipv4_neigh_lookup_noref`).
    #[inline]
    pub fn lookup(&self, ifindex: u32, addr: Ipv4Addr) -> Option<Arc<Neighbour>> {
        self.map.read().get(&(ifindex, addr)).cloned()
    }

    /// Adds or replaces an entry (`ip neigh replace`).
    pub fn set(
        &self,
        ifindex: u32,
        addr: Ipv4Addr,
        lladdr: EthernetAddress,
        state: NudState,
        dev_addr: EthernetAddress,
    ) -> Arc<Neighbour> {
        let n = self
            .map
            .write()
            .entry((ifindex, addr))
            .or_insert_with(|| {
                Arc::new(Neighbour {
                    addr,
                    ifindex,
                    inner: RwLock::new(NeighInner {
                        state: NudState::None,
                        lladdr: None,
                        hh: None,
                    }),
                })
            })
            .clone();
        n.update(state, Some(lladdr), dev_addr);
        n
    }

    /// Removes an entry; returns whether it existed.
    pub fn remove(&self, ifindex: u32, addr: Ipv4Addr) -> bool {
        self.map.write().remove(&(ifindex, addr)).is_some()
    }

    /// Every entry (for `ip neigh show`).
    pub fn entries(&self) -> Vec<Arc<Neighbour>> {
        let mut v: Vec<_> = self.map.read().values().cloned().collect();
        v.sort_by_key(|n| (n.ifindex, n.addr));
        v
    }
}
