//! Path-MTU exceptions: what the host learned about one destination.
//!
//! Stands for `struct fib_nh_exception` and its table in a next hop
//! (`update_or_create_fnhe()`, `find_exception()`, `rt_bind_exception()`,
//! `__ip_rt_update_pmtu()` in `net/ipv4/route.c`). An ICMP "fragmentation
//! needed" lowers the path MTU of one destination behind one next hop, for
//! `net.ipv4.route.mtu_expires`; a value below `route.min_pmtu` is raised to
//! it and locked. The next output lookup to that destination builds a route
//! bound to the exception (its cached `rtable`), which is what
//! `ip route show cache` lists.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::Dst;

/// One learned exception (`struct fib_nh_exception`).
#[derive(Clone, Debug)]
pub struct Fnhe {
    /// The destination it is for.
    pub daddr: Ipv4Addr,
    /// The learned path MTU.
    pub pmtu: u32,
    /// Clamped to `min_pmtu`, so not to be learned again (`fnhe_mtu_locked`).
    pub locked: bool,
    /// When it expires (ns on the stack clock).
    pub expires_ns: u64,
    /// The route an output lookup built for it (`fnhe_rth_output`).
    pub rth: Option<Arc<Dst>>,
}

/// The exceptions of one next hop (`nh_exceptions`).
#[derive(Debug, Default)]
pub struct Exceptions {
    map: parking_lot::Mutex<HashMap<Ipv4Addr, Fnhe>>,
    any: AtomicBool,
}

/// What [`Exceptions::update`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Updated {
    /// A new exception: cached routes of the next hop must be looked up
    /// again (the kernel marks them stale).
    Created,
    /// An existing one changed (its cached route was updated in place).
    Changed,
}

impl Exceptions {
    /// True when the next hop has at least one exception (a lookup without
    /// any pays one load).
    #[inline]
    pub fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }

    /// Kernel: `update_or_create_fnhe()`. Records `pmtu` (locked or not)
    /// for `daddr` until `expires_ns`.
    pub fn update(&self, daddr: Ipv4Addr, pmtu: u32, locked: bool, expires_ns: u64) -> Updated {
        let mut m = self.map.lock();
        self.any.store(true, Ordering::Release);
        if let Some(f) = m.get_mut(&daddr) {
            f.pmtu = pmtu;
            f.locked = locked;
            f.expires_ns = expires_ns.max(1);
            if let Some(rt) = f.rth.take() {
                f.rth = Some(Arc::new(bound(&rt, f)));
            }
            return Updated::Changed;
        }
        m.insert(
            daddr,
            Fnhe {
                daddr,
                pmtu,
                locked,
                expires_ns: expires_ns.max(1),
                rth: None,
            },
        );
        Updated::Created
    }

    /// Kernel: `find_exception()` and `rt_bind_exception()`. The route for
    /// `daddr` bound to its live exception, built from `nh` the first time
    /// and cached in the exception; an expired exception is removed.
    pub fn route_for(&self, nh: &Dst, daddr: Ipv4Addr, now_ns: u64) -> Option<Arc<Dst>> {
        let mut m = self.map.lock();
        let f = m.get_mut(&daddr)?;
        if now_ns >= f.expires_ns {
            m.remove(&daddr);
            if m.is_empty() {
                self.any.store(false, Ordering::Release);
            }
            return None;
        }
        if f.rth.is_none() {
            f.rth = Some(Arc::new(bound(nh, f)));
        }
        f.rth.clone()
    }

    /// The live exception for `daddr`, if any (without building a route).
    pub fn get(&self, daddr: Ipv4Addr, now_ns: u64) -> Option<Fnhe> {
        let m = self.map.lock();
        m.get(&daddr).filter(|f| now_ns < f.expires_ns).cloned()
    }

    /// Every live exception that has a cached route (`fnhe_dump_bucket()`:
    /// what `ip route show cache` lists).
    pub fn dump(&self, now_ns: u64) -> Vec<Fnhe> {
        let m = self.map.lock();
        let mut v: Vec<Fnhe> = m
            .values()
            .filter(|f| f.rth.is_some() && now_ns < f.expires_ns)
            .cloned()
            .collect();
        v.sort_by_key(|f| f.daddr);
        v
    }

    /// Forgets every exception (`fnhe_flush_routes()`, a route changed).
    pub fn clear(&self) {
        self.map.lock().clear();
        self.any.store(false, Ordering::Release);
    }
}

/// A copy of the next hop's entry carrying the exception's path MTU.
fn bound(nh: &Dst, f: &Fnhe) -> Dst {
    let d = nh.fresh_copy();
    d.set_pmtu(f.pmtu);
    Dst {
        pmtu_locked: f.locked,
        expires_ns: f.expires_ns,
        ..d
    }
}
