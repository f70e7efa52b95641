//! One routing table: longest-prefix match over routes of every type.
//!
//! Stands for one `struct fib_table` (`net/ipv4/fib_trie.c`:
//! `fib_table_insert()`, `fib_table_delete()`, `fib_table_lookup()`). A
//! table keeps one hash map per prefix length plus a bitmap of the lengths in
//! use, so a lookup probes only the lengths that exist, longest first. Under
//! one prefix the routes (the kernel's aliases, `struct fib_alias`) are kept
//! as the kernel orders them: TOS-specific ones first (higher TOS first),
//! then by metric.

use std::collections::HashMap;

use ipnet::Ipv4Net;

use super::{FlowKey, Route, RouteError, RtnType};

/// What a table says for a flow (`fib_table_lookup()`'s result).
#[derive(Debug)]
pub enum Lookup<'a> {
    /// A usable route: unicast, local or broadcast.
    Found(&'a Route),
    /// An error route matched (blackhole, unreachable, prohibit).
    Error(&'a Route, RouteError),
    /// No route, or a `throw` route: the next rule is consulted (`-EAGAIN`).
    Continue,
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

/// The kernel's alias order under one prefix: higher TOS first, then lower
/// metric (`fib_find_alias()`).
fn order(r: &Route) -> (std::cmp::Reverse<u8>, u32) {
    (std::cmp::Reverse(r.tos), r.metric)
}

/// What `ip route del` names: the prefix and whichever keys were given.
#[derive(Clone, Debug, Default)]
pub struct DelKey {
    /// `tos T`.
    pub tos: u8,
    /// `metric M`.
    pub metric: Option<u32>,
    /// The type word, when given.
    pub kind: Option<RtnType>,
    /// `dev D` (its ifindex).
    pub ifindex: Option<u32>,
    /// `via GW`.
    pub gateway: Option<std::net::Ipv4Addr>,
}

impl DelKey {
    /// Kernel: `fib_table_delete()`'s match of one alias (and
    /// `fib_nh_match()` for `dev`/`via`).
    fn matches(&self, r: &Route) -> bool {
        let dev_ok = self
            .ifindex
            .is_none_or(|i| r.dst.as_ref().is_some_and(|d| d.dev.ifindex() == i));
        let gw_ok = self
            .gateway
            .is_none_or(|g| r.dst.as_ref().is_some_and(|d| d.gateway == Some(g)));
        r.tos == self.tos
            && self.metric.is_none_or(|m| m == r.metric)
            && self.kind.is_none_or(|k| k == r.kind)
            && dev_ok
            && gw_ok
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

    /// Kernel: `fib_table_insert()` with `NLM_F_EXCL`. Adds a route; one
    /// with the same prefix, TOS and metric is refused (`EEXIST`).
    pub fn add(&mut self, route: Route) -> Result<(), RouteError> {
        let net = route.prefix.trunc();
        let len = net.prefix_len();
        let slot = self.by_len[len as usize]
            .entry(u32::from(net.network()))
            .or_default();
        if slot
            .iter()
            .any(|r| r.metric == route.metric && r.tos == route.tos)
        {
            return Err(RouteError::Exists(net, route.metric));
        }
        let key = order(&route);
        let at = slot.partition_point(|r| order(r) <= key);
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

    /// Kernel: `fib_table_insert()` with `NLM_F_REPLACE`: adds or replaces
    /// the route with the same prefix, TOS and metric (`ip route replace`).
    pub fn replace(&mut self, route: Route) -> Result<(), RouteError> {
        let key = DelKey {
            tos: route.tos,
            metric: Some(route.metric),
            ..DelKey::default()
        };
        let _ = self.delete_matching(route.prefix, &key);
        self.add(route)
    }

    /// Removes the route for `prefix` (the one with `metric`, or the first).
    pub fn delete(&mut self, prefix: Ipv4Net, metric: Option<u32>) -> Result<Route, RouteError> {
        let key = DelKey {
            metric,
            ..DelKey::default()
        };
        self.delete_matching(prefix, &key)
    }

    /// Kernel: `fib_table_delete()`. Removes the first route for `prefix`
    /// that `key` matches (`ESRCH` when none).
    pub fn delete_matching(&mut self, prefix: Ipv4Net, key: &DelKey) -> Result<Route, RouteError> {
        let net = prefix.trunc();
        let len = net.prefix_len() as usize;
        let k = u32::from(net.network());
        let slot = self.by_len[len]
            .get_mut(&k)
            .ok_or(RouteError::NotFound(net))?;
        let at = slot
            .iter()
            .position(|r| key.matches(r))
            .ok_or(RouteError::NotFound(net))?;
        let r = slot.remove(at);
        if slot.is_empty() {
            self.by_len[len].remove(&k);
            if self.by_len[len].is_empty() {
                self.lens &= !(1 << len);
            }
        }
        Ok(r)
    }

    /// Removes every route `pred` selects (a device removed or down).
    pub fn retain(&mut self, mut keep: impl FnMut(&Route) -> bool) {
        for (len, map) in self.by_len.iter_mut().enumerate() {
            map.retain(|_, v| {
                v.retain(&mut keep);
                !v.is_empty()
            });
            if map.is_empty() {
                self.lens &= !(1 << len);
            }
        }
    }

    /// Removes every route through the device with `ifindex`.
    pub fn flush_dev(&mut self, ifindex: u32) {
        self.retain(|r| r.dst.as_ref().is_none_or(|d| d.dev.ifindex() != ifindex));
    }

    /// The best route for `daddr` regardless of TOS and output device
    /// (longest prefix, then lowest metric, devices that are up).
    #[inline]
    pub fn lookup(&self, daddr: std::net::Ipv4Addr) -> Option<&Route> {
        match self.lookup_flow(&FlowKey::to(daddr)) {
            Lookup::Found(r) | Lookup::Error(r, _) => Some(r),
            Lookup::Continue => None,
        }
    }

    /// Kernel: `fib_table_lookup()`. Longest prefix first; under a prefix,
    /// the routes in alias order whose TOS is 0 or equals the flow's TOS
    /// masked to 0x1c (`fib_dscp_masked_match()`: a route `tos 0xfc`
    /// matches nothing); an error
    /// type answers at once (throw: the next rule); a route whose device is
    /// down, or not the flow's `oif` when it has one, is passed over.
    #[inline]
    pub fn lookup_flow(&self, key: &FlowKey) -> Lookup<'_> {
        let a = u32::from(key.daddr);
        let tos = key.tos & super::rules::RT_MASK;
        let mut lens = self.lens;
        while lens != 0 {
            let len = 63 - lens.leading_zeros() as u8;
            lens &= !(1 << len);
            let Some(v) = self.by_len[len as usize].get(&(a & mask(len))) else {
                continue;
            };
            for r in v.iter().filter(|r| r.tos == 0 || r.tos == tos) {
                if let Some(e) = r.kind.error(key.daddr) {
                    return e.map_or_else(|e| Lookup::Error(r, e), |()| Lookup::Continue);
                }
                let Some(d) = &r.dst else { continue };
                if d.dev.is_up() && (key.oif == 0 || key.oif == d.dev.ifindex()) {
                    return Lookup::Found(r);
                }
            }
        }
        Lookup::Continue
    }

    /// The longest-prefix route for `addr` of link or host scope (no
    /// gateway of its own: a unicast route on link, or a local one),
    /// through the device `oif` when not 0 — what a gateway must be
    /// reached by (`fib_check_nh_v4_gw()`'s lookup at `RT_SCOPE_LINK`).
    pub fn lookup_link(&self, addr: std::net::Ipv4Addr, oif: u32) -> Option<&Route> {
        let a = u32::from(addr);
        let mut lens = self.lens;
        while lens != 0 {
            let len = 63 - lens.leading_zeros() as u8;
            lens &= !(1 << len);
            let Some(v) = self.by_len[len as usize].get(&(a & mask(len))) else {
                continue;
            };
            let linked = |r: &&Route| {
                matches!(r.kind, RtnType::Unicast | RtnType::Local)
                    && r.dst.as_ref().is_some_and(|d| {
                        d.gateway.is_none() && (oif == 0 || d.dev.ifindex() == oif)
                    })
            };
            if let Some(r) = v.iter().find(linked) {
                return Some(r);
            }
        }
        None
    }

    /// Every route in the order a dump of the kernel's trie gives them
    /// (`ip route show`): by network address, then longest prefix first
    /// (`fib_insert_alias()` orders a leaf by suffix length), then alias
    /// order.
    pub fn routes(&self) -> Vec<&Route> {
        let mut out: Vec<&Route> = self
            .by_len
            .iter()
            .flat_map(|m| m.values().flatten())
            .collect();
        out.sort_by_key(|r| {
            (
                r.prefix.network(),
                std::cmp::Reverse(r.prefix.prefix_len()),
                std::cmp::Reverse(r.tos),
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
