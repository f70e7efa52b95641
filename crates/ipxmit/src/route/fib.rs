//! One routing table: longest-prefix match over routes of every type.
//!
//! Stands for one `struct fib_table` (`net/ipv4/fib_trie.c`:
//! `fib_table_insert()`, `fib_table_delete()`, `fib_table_lookup()`). Each
//! prefix in use is a leaf (the kernel's `struct key_vector` leaf) holding
//! its routes (the kernel's aliases, `struct fib_alias`) as the kernel
//! orders them: TOS-specific ones first (higher TOS first), then by metric.
//! Leaves live in a slab; a multibit trie ([`super::trie`]) maps an address
//! to the leaf of its longest matching prefix in at most three slot reads,
//! and an exact-match map (prefix to leaf) serves `add`, `delete` and the
//! backtracking to shorter prefixes when a leaf's routes do not answer.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use ipnet::Ipv4Net;
use smallvec::SmallVec;

use super::trie::{Trie, NONE};
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

/// One prefix in use and its routes in alias order.
#[derive(Clone, Debug, Default)]
struct Leaf {
    /// The network address (truncated).
    net: u32,
    /// The prefix length.
    len: u8,
    /// The routes, in the kernel's alias order; empty for a free leaf.
    /// The first is kept in the leaf itself (one memory read less per
    /// lookup, no allocation for a prefix's only route).
    routes: SmallVec<[Route; 1]>,
}

/// A hasher for the exact-match map's keys (`net << 8 | len`): one
/// multiplication, its high half folded down (keys are not chosen by an
/// adversary who could not also just add the routes).
#[derive(Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, k: u64) {
        self.0 = k;
    }
}

/// A longest-prefix-match forwarding table. See the module documentation.
#[derive(Clone, Debug)]
pub struct Fib {
    /// Every leaf, live or free (a free one has no routes).
    leaves: Vec<Leaf>,
    /// Free leaf numbers.
    free: Vec<u32>,
    /// Prefix (`net << 8 | len`) to leaf number.
    exact: HashMap<u64, u32, BuildHasherDefault<PrefixHasher>>,
    /// Prefixes in use per length.
    per_len: [u32; 33],
    /// Bit `l` set when some prefix has length `l`.
    lens: u64,
    /// Address to the leaf of its longest matching prefix.
    trie: Trie,
    /// Number of routes.
    count: usize,
}

impl Default for Fib {
    fn default() -> Self {
        Fib {
            leaves: Vec::new(),
            free: Vec::new(),
            exact: HashMap::default(),
            per_len: [0; 33],
            lens: 0,
            trie: Trie::new(),
            count: 0,
        }
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len as u32)
    }
}

/// Kernel: `fib_table_lookup()`'s check of one leaf's aliases: the answer
/// of the first route (in alias order) whose TOS fits the flow's `tos`: an
/// error type answers at once (throw: the next rule); a route whose device
/// is down, or not the flow's `oif` when it has one, is passed over.
#[inline]
fn flow_answer<'a>(routes: &'a [Route], key: &FlowKey, tos: u8) -> Option<Lookup<'a>> {
    for r in routes.iter().filter(|r| r.tos == 0 || r.tos == tos) {
        if let Some(e) = r.kind.error(key.daddr) {
            return Some(e.map_or_else(|e| Lookup::Error(r, e), |()| Lookup::Continue));
        }
        let Some(d) = &r.dst else { continue };
        if d.dev.is_up() && (key.oif == 0 || key.oif == d.dev.ifindex()) {
            return Some(Lookup::Found(r));
        }
    }
    None
}

/// The exact-match key of `net/len`.
fn key_of(net: u32, len: u8) -> u64 {
    u64::from(net) << 8 | u64::from(len)
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
        Fib::default()
    }

    /// Kernel: `fib_table_insert()` with `NLM_F_EXCL`. Adds a route; one
    /// with the same prefix, TOS and metric is refused (`EEXIST`).
    pub fn add(&mut self, route: Route) -> Result<(), RouteError> {
        let net = route.prefix.trunc();
        let (a, len) = (u32::from(net.network()), net.prefix_len());
        if let Some(&l) = self.exact.get(&key_of(a, len)) {
            let slot = &self.leaves[l as usize].routes;
            if slot
                .iter()
                .any(|r| r.metric == route.metric && r.tos == route.tos)
            {
                return Err(RouteError::Exists(net, route.metric));
            }
        }
        let l = self.leaf_or_new(a, len);
        let slot = &mut self.leaves[l as usize].routes;
        let key = order(&route);
        let at = slot.partition_point(|r| order(r) <= key);
        slot.insert(
            at,
            Route {
                prefix: net,
                ..route
            },
        );
        self.count += 1;
        Ok(())
    }

    /// Kernel: `fib_insert_node()` via `fib_table_insert()`: the leaf of
    /// `a/len`, made (and put in the trie) when the prefix is new.
    fn leaf_or_new(&mut self, a: u32, len: u8) -> u32 {
        if let Some(&l) = self.exact.get(&key_of(a, len)) {
            return l;
        }
        let leaf = Leaf {
            net: a,
            len,
            routes: SmallVec::new(),
        };
        let l = match self.free.pop() {
            Some(l) => {
                self.leaves[l as usize] = leaf;
                l
            }
            None => {
                self.leaves.push(leaf);
                (self.leaves.len() - 1) as u32
            }
        };
        assert!(l != NONE, "route table full");
        self.exact.insert(key_of(a, len), l);
        self.per_len[len as usize] += 1;
        self.lens |= 1 << len;
        let leaves = &self.leaves;
        self.trie.insert(a, len, l, |v| leaves[v as usize].len);
        l
    }

    /// Kernel: `fib_remove_alias()` for the last alias of a leaf: takes the
    /// (now empty) leaf `l` out of the trie and the exact-match map.
    fn drop_leaf(&mut self, l: u32) {
        let (a, len) = (self.leaves[l as usize].net, self.leaves[l as usize].len);
        self.exact.remove(&key_of(a, len));
        self.per_len[len as usize] -= 1;
        if self.per_len[len as usize] == 0 {
            self.lens &= !(1 << len);
        }
        let repl = self.covering(a, len);
        self.trie.remove(a, len, l, repl);
        self.leaves[l as usize].routes = SmallVec::new();
        self.free.push(l);
    }

    /// The longest prefix in use shorter than `len` that covers `a`: its
    /// leaf and length.
    fn covering(&self, a: u32, len: u8) -> Option<(u32, u8)> {
        let mut lens = self.lens & ((1u64 << len) - 1);
        while lens != 0 {
            let l = 63 - lens.leading_zeros() as u8;
            lens &= !(1 << l);
            if let Some(&leaf) = self.exact.get(&key_of(a & mask(l), l)) {
                return Some((leaf, l));
            }
        }
        None
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
        let k = key_of(u32::from(net.network()), net.prefix_len());
        let l = *self.exact.get(&k).ok_or(RouteError::NotFound(net))?;
        let slot = &mut self.leaves[l as usize].routes;
        let at = slot
            .iter()
            .position(|r| key.matches(r))
            .ok_or(RouteError::NotFound(net))?;
        let r = slot.remove(at);
        self.count -= 1;
        if slot.is_empty() {
            self.drop_leaf(l);
        }
        Ok(r)
    }

    /// Removes every route `pred` selects (a device removed or down).
    pub fn retain(&mut self, mut keep: impl FnMut(&Route) -> bool) {
        let mut emptied = Vec::new();
        for (l, leaf) in self.leaves.iter_mut().enumerate() {
            if leaf.routes.is_empty() {
                continue;
            }
            let before = leaf.routes.len();
            leaf.routes.retain(|r| keep(r));
            self.count -= before - leaf.routes.len();
            if leaf.routes.is_empty() {
                emptied.push(l as u32);
            }
        }
        // Any order: a leaf already dropped is never a replacement.
        for l in emptied {
            self.drop_leaf(l);
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
        let tos = key.tos & super::rules::RT_MASK;
        self.walk(u32::from(key.daddr), |v| flow_answer(v, key, tos))
            .unwrap_or(Lookup::Continue)
    }

    /// Kernel: `fib_table_lookup()`'s walk with its backtracking: `answer`
    /// asked of each prefix covering `a`, longest first, until it answers.
    #[inline]
    fn walk<'a, T>(
        &'a self,
        a: u32,
        mut answer: impl FnMut(&'a [Route]) -> Option<T>,
    ) -> Option<T> {
        let top = self.trie.lookup(a);
        if top == NONE {
            return None;
        }
        let leaf = &self.leaves[top as usize];
        if let Some(t) = answer(&leaf.routes) {
            return Some(t);
        }
        let mut lens = self.lens & ((1u64 << leaf.len) - 1);
        while lens != 0 {
            let len = 63 - lens.leading_zeros() as u8;
            lens &= !(1 << len);
            let Some(&l) = self.exact.get(&key_of(a & mask(len), len)) else {
                continue;
            };
            if let Some(t) = answer(&self.leaves[l as usize].routes) {
                return Some(t);
            }
        }
        None
    }

    /// The longest-prefix route for `addr` of link or host scope (no
    /// gateway of its own: a unicast route on link, or a local one),
    /// through the device `oif` when not 0 — what a gateway must be
    /// reached by (`fib_check_nh_v4_gw()`'s lookup at `RT_SCOPE_LINK`).
    pub fn lookup_link(&self, addr: std::net::Ipv4Addr, oif: u32) -> Option<&Route> {
        let linked = |r: &&Route| {
            matches!(r.kind, RtnType::Unicast | RtnType::Local)
                && r.dst
                    .as_ref()
                    .is_some_and(|d| d.gateway.is_none() && (oif == 0 || d.dev.ifindex() == oif))
        };
        self.walk(u32::from(addr), |v| v.iter().find(linked))
    }

    /// Every route in the order a dump of the kernel's trie gives them
    /// (`ip route show`): by network address, then longest prefix first
    /// (`fib_insert_alias()` orders a leaf by suffix length), then alias
    /// order.
    pub fn routes(&self) -> Vec<&Route> {
        let mut out: Vec<&Route> = self.leaves.iter().flat_map(|l| &l.routes).collect();
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
        self.count
    }

    /// True when the table has no route.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Approximate bytes the table holds: leaves, the exact-match map and
    /// the trie (the routes' shared destination entries not counted).
    pub fn bytes(&self) -> usize {
        let routes: usize = (self.leaves.iter())
            .filter(|l| l.routes.spilled())
            .map(|l| l.routes.capacity())
            .sum();
        self.leaves.capacity() * std::mem::size_of::<Leaf>()
            + routes * std::mem::size_of::<Route>()
            + self.exact.capacity() * (8 + 4 + 1)
            + self.free.capacity() * 4
            + self.trie.bytes()
    }
}
