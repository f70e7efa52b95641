//! Routing: the forwarding table and destination entries.
//!
//! Stands for the kernel's FIB (`net/ipv4/fib_trie.c`, `fib_table_lookup`), the
//! output route lookup (`ip_route_output_key`, `net/ipv4/route.c`) and the
//! destination cache entry (`struct dst_entry`/`struct rtable`) with its MTU
//! (`dst_mtu`, `ip_dst_mtu_maybe_forward`).
//!
//! A [`Fib`] is a longest-prefix-match table of [`Route`]s, kept as one hash map per
//! prefix length plus a bitmap of the lengths in use, so a lookup probes only the
//! lengths that exist, longest first. Among routes of the same prefix the lowest
//! metric wins. Each route carries a prebuilt [`Dst`] (the kernel's per-nexthop
//! cached `rtable`), so a lookup hands out a shared reference and never allocates.
//! The stack swaps whole tables on change; readers never lock per packet.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use ipnet::Ipv4Net;

use crate::dev::NetDevice;

mod flow;
pub use flow::FlowKey;

/// Largest IPv4 MTU (`IP_MAX_MTU`).
pub const IP_MAX_MTU: u32 = 0xFFFF;

/// Smallest IPv4 MTU a device or route may have (RFC 791, the kernel's 68).
pub const IP_MIN_MTU: u32 = 68;

/// Errors of route operations.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No route matches the destination (`ENETUNREACH`).
    #[error("network is unreachable: no route to {0}")]
    NetUnreachable(Ipv4Addr),
    /// The named device does not exist (`ENODEV`).
    #[error("no such device: {0}")]
    NoDevice(String),
    /// A route's MTU is out of range.
    #[error("route mtu {0} out of range ({IP_MIN_MTU}..={IP_MAX_MTU})")]
    BadMtu(u32),
    /// The same prefix and metric already exist (`EEXIST`).
    #[error("route {0} metric {1} already exists")]
    Exists(Ipv4Net, u32),
    /// No such route to delete (`ESRCH`).
    #[error("no such route {0}")]
    NotFound(Ipv4Net),
}

/// The type of an output route (`rt_type`: `RTN_UNICAST`, `RTN_BROADCAST`,
/// `RTN_MULTICAST`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteType {
    /// A unicast destination.
    Unicast,
    /// Limited (255.255.255.255) or directed (a subnet's) broadcast
    /// (`RTCF_BROADCAST`).
    Broadcast,
    /// A multicast group, 224.0.0.0/4 (`RTCF_MULTICAST`).
    Multicast,
}

/// A destination entry: where packets of a route go (`struct rtable`).
pub struct Dst {
    /// Output device.
    pub dev: Arc<NetDevice>,
    /// Gateway, or `None` when the destination is on link.
    pub gateway: Option<Ipv4Addr>,
    /// Preferred source address of the route (`src`), if configured.
    pub prefsrc: Option<Ipv4Addr>,
    /// The route's `mtu` metric, if configured (locked MTU in the kernel).
    pub mtu_metric: Option<u32>,
    /// Learned path MTU, 0 when none (`rt_pmtu`).
    pmtu: AtomicU32,
    /// Extra header space a transform needs in front (`dst.header_len`).
    pub header_len: u16,
    /// Extra space a transform needs at the end (`dst.trailer_len`).
    pub trailer_len: u16,
}

impl fmt::Debug for Dst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dst")
            .field("dev", &self.dev.name())
            .field("gateway", &self.gateway)
            .field("prefsrc", &self.prefsrc)
            .field("mtu", &self.mtu())
            .finish()
    }
}

impl Dst {
    /// A destination entry out of `dev`.
    pub fn new(dev: Arc<NetDevice>, gateway: Option<Ipv4Addr>) -> Dst {
        Dst {
            dev,
            gateway,
            prefsrc: None,
            mtu_metric: None,
            pmtu: AtomicU32::new(0),
            header_len: 0,
            trailer_len: 0,
        }
    }

    /// Kernel: `__mkroute_output()` for a broadcast, or a multicast route
    /// matched by a prefix shorter than /4: the entry without its gateway
    /// (`fi = NULL`), so the frame goes to the destination's own link address.
    pub fn on_link(&self) -> Dst {
        Dst {
            dev: self.dev.clone(),
            gateway: None,
            prefsrc: self.prefsrc,
            mtu_metric: self.mtu_metric,
            pmtu: AtomicU32::new(0),
            header_len: self.header_len,
            trailer_len: self.trailer_len,
        }
    }

    /// The path MTU (`dst_mtu`): the learned PMTU when set, else the route's
    /// metric, else the device MTU.
    pub fn mtu(&self) -> u32 {
        let p = self.pmtu.load(Ordering::Relaxed);
        if p != 0 {
            return p;
        }
        self.mtu_metric.unwrap_or_else(|| self.dev.mtu())
    }

    /// Records a learned path MTU (`update_pmtu`); 0 forgets it.
    pub fn set_pmtu(&self, mtu: u32) {
        self.pmtu.store(mtu, Ordering::Relaxed);
    }

    /// The next hop for `daddr` (`rt_nexthop`).
    #[inline]
    pub fn nexthop(&self, daddr: Ipv4Addr) -> Ipv4Addr {
        self.gateway.unwrap_or(daddr)
    }
}

/// A route as configured (`ip route add`).
#[derive(Clone, Debug)]
pub struct Route {
    /// Destination prefix.
    pub prefix: Ipv4Net,
    /// Preference among equal prefixes: lower wins.
    pub metric: u32,
    /// The destination entry packets take.
    pub dst: Arc<Dst>,
}

impl fmt::Display for Route {
    /// As `ip route show` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.prefix_len() == 0 {
            write!(f, "default")?;
        } else {
            write!(f, "{}", self.prefix)?;
        }
        if let Some(gw) = self.dst.gateway {
            write!(f, " via {gw}")?;
        }
        write!(f, " dev {}", self.dst.dev.name())?;
        if let Some(src) = self.dst.prefsrc {
            write!(f, " src {src}")?;
        }
        if self.metric != 0 {
            write!(f, " metric {}", self.metric)?;
        }
        if let Some(mtu) = self.dst.mtu_metric {
            write!(f, " mtu {mtu}")?;
        }
        Ok(())
    }
}

/// A longest-prefix-match forwarding table. See the module documentation.
#[derive(Clone, Debug)]
pub struct Fib {
    /// One map per prefix length (0..=32), keyed by the masked network address.
    by_len: Vec<HashMap<u32, Vec<Route>>>,
    /// Bit `l` set when some route has prefix length `l`.
    lens: u64,
}

impl Default for Fib {
    fn default() -> Self {
        Fib::new()
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len as u32)
    }
}

impl Fib {
    /// An empty table.
    pub fn new() -> Fib {
        Fib {
            by_len: vec![HashMap::new(); 33],
            lens: 0,
        }
    }

    /// Adds a route; an equal prefix with an equal metric is refused.
    pub fn add(&mut self, route: Route) -> Result<(), RouteError> {
        let net = route.prefix.trunc();
        let len = net.prefix_len();
        if let Some(m) = route.dst.mtu_metric {
            if !(IP_MIN_MTU..=IP_MAX_MTU).contains(&m) {
                return Err(RouteError::BadMtu(m));
            }
        }
        let slot = self.by_len[len as usize]
            .entry(u32::from(net.network()))
            .or_default();
        if slot.iter().any(|r| r.metric == route.metric) {
            return Err(RouteError::Exists(net, route.metric));
        }
        let at = slot.partition_point(|r| r.metric <= route.metric);
        slot.insert(
            at,
            Route {
                prefix: net,
                ..route
            },
        );
        self.lens |= 1 << len;
        Ok(())
    }

    /// Adds or replaces the route with the same prefix and metric (`ip route replace`).
    pub fn replace(&mut self, route: Route) -> Result<(), RouteError> {
        let _ = self.delete(route.prefix, Some(route.metric));
        self.add(route)
    }

    /// Removes the route for `prefix` (the one with `metric`, or the best one).
    pub fn delete(&mut self, prefix: Ipv4Net, metric: Option<u32>) -> Result<Route, RouteError> {
        let net = prefix.trunc();
        let len = net.prefix_len() as usize;
        let key = u32::from(net.network());
        let slot = self.by_len[len]
            .get_mut(&key)
            .ok_or(RouteError::NotFound(net))?;
        let at = match metric {
            Some(m) => slot.iter().position(|r| r.metric == m),
            None => Some(0),
        }
        .ok_or(RouteError::NotFound(net))?;
        let r = slot.remove(at);
        if slot.is_empty() {
            self.by_len[len].remove(&key);
            if self.by_len[len].is_empty() {
                self.lens &= !(1 << len);
            }
        }
        Ok(r)
    }

    /// Removes every route through the device with `ifindex` (device removed).
    pub fn flush_dev(&mut self, ifindex: u32) {
        for (len, map) in self.by_len.iter_mut().enumerate() {
            map.retain(|_, v| {
                v.retain(|r| r.dst.dev.ifindex() != ifindex);
                !v.is_empty()
            });
            if map.is_empty() {
                self.lens &= !(1 << len);
            }
        }
    }

    /// Kernel: `fib_table_lookup()`. The best route for `daddr`: longest
    /// prefix, then lowest metric, skipping routes through a device that is
    /// down (the kernel's dead nexthops, `RTNH_F_DEAD`).
    #[inline]
    pub fn lookup(&self, daddr: Ipv4Addr) -> Option<&Route> {
        let a = u32::from(daddr);
        let mut lens = self.lens;
        while lens != 0 {
            let len = 63 - lens.leading_zeros() as u8;
            lens &= !(1 << len);
            if let Some(v) = self.by_len[len as usize].get(&(a & mask(len))) {
                if let Some(r) = v.iter().find(|r| r.dst.dev.is_up()) {
                    return Some(r);
                }
            }
        }
        None
    }

    /// Every route, longest prefixes first (for `ip route show`).
    pub fn routes(&self) -> Vec<&Route> {
        let mut out: Vec<&Route> = self
            .by_len
            .iter()
            .flat_map(|m| m.values().flatten())
            .collect();
        out.sort_by_key(|r| {
            (
                std::cmp::Reverse(r.prefix.prefix_len()),
                r.prefix.network(),
                r.metric,
            )
        });
        out
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.by_len
            .iter()
            .flat_map(|m| m.values())
            .map(Vec::len)
            .sum()
    }

    /// True when the table has no route.
    pub fn is_empty(&self) -> bool {
        self.lens == 0
    }
}
