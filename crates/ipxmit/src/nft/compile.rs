//! From the ruleset to the program the hooks run: each rule's statements
//! become instructions once, when the ruleset changes (the kernel builds a
//! new generation of its rule blobs on commit, `nf_tables_commit`).

use std::ops::Range;
use std::sync::Arc;

use super::dynset::{LiveSet, Update};
use super::expr::{Base, CmpOp, Code, CtKey, Insn, MetaKey, Reg};
use super::rule::{
    Counter, Elem, Key, Limit, Log, MapRef, MapValue, Match, Op, Reject, Rhs, RuleVerdict,
    SetUpdate, Stmt,
};
use super::ruleset::{ChainHook, ChainType, Family, Policy, Ruleset, Table};

/// A set as the program looks it up: single values in an open-addressed
/// hash table (O(1), as `nft_hash`), intervals sorted and disjoint, found
/// by binary search (O(log n), as `nft_rbtree`); no allocation. An element
/// is found by its index in the order given.
#[derive(Clone, Debug, Default)]
pub struct CompiledSet {
    /// Hash slots: (value, index + 1); 0 is empty.
    slots: Vec<(u64, u32)>,
    /// Intervals by their first value, with their indexes.
    intervals: Vec<(Elem, u32)>,
    /// The catch-all element `*`: [`CompiledSet::contains`] holds for
    /// every value.
    catchall: bool,
    /// A concatenation with ranges in its parts ([`CompiledSet::concat`]).
    concat: Option<Box<ConcatIndex>>,
    /// A named set's elements added from the packet path
    /// ([`super::dynset`]).
    pub live: Option<Arc<LiveSet>>,
}

/// The lookup of a two-part concatenated key whose elements are ranges in
/// each part (`A1-A2 . B1-B2`, nft's `nft_set_pipapo`): the first part's
/// values cut into segments at every element's bounds, each segment with
/// the second-part ranges of the elements covering it, sorted; a key is
/// found by two binary searches (O(log n)).
#[derive(Clone, Debug, Default)]
struct ConcatIndex {
    /// The second part's width in bits.
    w: u32,
    /// Where each segment of the first part starts, ascending.
    starts: Vec<u64>,
    /// Each segment's second-part ranges (first, last, element index).
    segs: Vec<Vec<(u64, u64, u32)>>,
}

impl ConcatIndex {
    fn new(elems: &[(Elem, u32)], w: u32) -> ConcatIndex {
        let m = (1u64 << w) - 1;
        let part = |e: &Elem| (e.lo >> w, e.hi >> w, e.lo & m, e.hi & m);
        let mut starts: Vec<u64> = elems
            .iter()
            .flat_map(|(e, _)| {
                let (a1, a2, ..) = part(e);
                [Some(a1), a2.checked_add(1)]
            })
            .flatten()
            .collect();
        starts.sort_unstable();
        starts.dedup();
        let segs = starts
            .iter()
            .map(|&s| {
                let mut v: Vec<(u64, u64, u32)> = elems
                    .iter()
                    .filter(|(e, _)| part(e).0 <= s && s <= part(e).1)
                    .map(|(e, ix)| (part(e).2, part(e).3, *ix))
                    .collect();
                v.sort_unstable();
                v
            })
            .collect();
        ConcatIndex { w, starts, segs }
    }

    #[inline]
    fn find(&self, v: u64) -> Option<u32> {
        let (a, b) = (v >> self.w, v & ((1u64 << self.w) - 1));
        let i = self.starts.partition_point(|&s| s <= a).checked_sub(1)?;
        let seg = &self.segs[i];
        let j = seg.partition_point(|&(_, hi, _)| hi < b);
        seg.get(j)
            .filter(|&&(lo, _, _)| lo <= b)
            .map(|&(_, _, ix)| ix)
    }
}

impl CompiledSet {
    /// Makes the set one of a two-part concatenation whose second part is
    /// `w` bits wide: an interval set's elements (`lo` and `hi` each the
    /// parts' firsts and lasts) are then ranges in each part.
    pub fn concat(&mut self, w: u32) {
        if !self.intervals.is_empty() && w < 64 {
            self.concat = Some(Box::new(ConcatIndex::new(&self.intervals, w)));
        }
    }

    fn new(elems: &[Elem]) -> CompiledSet {
        if elems.iter().any(|e| e.lo != e.hi) {
            let mut v: Vec<(Elem, u32)> = elems.iter().copied().zip(0..).collect();
            v.sort_unstable();
            return CompiledSet {
                slots: Vec::new(),
                intervals: v,
                catchall: false,
                concat: None,
                live: None,
            };
        }
        let n = (elems.len() * 2).next_power_of_two().max(8);
        let mut slots = vec![(0u64, 0u32); n];
        for (i, e) in elems.iter().enumerate() {
            let mut at = hash(e.lo) & (n - 1);
            while slots[at].1 != 0 && slots[at].0 != e.lo {
                at = (at + 1) & (n - 1);
            }
            if slots[at].1 == 0 {
                slots[at] = (e.lo, i as u32 + 1);
            }
        }
        CompiledSet {
            slots,
            intervals: Vec::new(),
            catchall: false,
            concat: None,
            live: None,
        }
    }

    /// Kernel: `nft_lookup_eval()` → the set backend's lookup
    /// (`nft_hash_lookup`, `nft_rbtree_lookup`): the index of the element
    /// holding `v`.
    #[inline]
    pub fn find(&self, v: u64) -> Option<u32> {
        if let Some(c) = &self.concat {
            return c.find(v);
        }
        if self.slots.is_empty() {
            let i = self.intervals.partition_point(|(e, _)| e.hi < v);
            return self
                .intervals
                .get(i)
                .filter(|(e, _)| e.lo <= v)
                .map(|&(_, ix)| ix);
        }
        let mask = self.slots.len() - 1;
        let mut at = hash(v) & mask;
        loop {
            let (k, ix) = self.slots[at];
            if ix == 0 {
                return None;
            }
            if k == v {
                return Some(ix - 1);
            }
            at = (at + 1) & mask;
        }
    }

    /// Whether `v` is in the set (the catch-all holds every value).
    #[inline]
    pub fn contains(&self, v: u64) -> bool {
        self.catchall || self.find(v).is_some()
    }

    /// Whether `v` is in the set at `now`: one of its elements, or a live
    /// element the packet path added ([`super::dynset::LiveSet`]).
    #[inline]
    pub fn contains_at(&self, v: u64, now: impl FnOnce() -> u64) -> bool {
        self.contains(v)
            || self
                .live
                .as_ref()
                .is_some_and(|l| !l.is_empty() && l.contains(v, now()))
    }

    /// How many elements it holds besides its live ones.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.1 != 0).count() + self.intervals.len()
    }

    /// Whether it holds no element besides its live ones.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && !self.catchall
    }
}

/// A multiplicative hash (Fibonacci hashing).
#[inline]
fn hash(v: u64) -> usize {
    (v.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize
}

/// A set of device names (`oifname { "eth0", "veth*" }`): each name,
/// NUL padded to `IFNAMSIZ`, is the interval from itself to itself, a
/// wildcard `veth*` the interval of every name it starts (its prefix
/// padded with 0, then with 0xff), as nft hands the kernel's interval set;
/// sorted, found by binary search (O(log n)).
#[derive(Clone, Debug, Default)]
pub struct IfnameSet {
    intervals: Vec<([u8; 16], [u8; 16])>,
}

impl IfnameSet {
    fn new(names: &[String]) -> IfnameSet {
        let mut intervals: Vec<([u8; 16], [u8; 16])> = names
            .iter()
            .map(|n| {
                let (stem, wild) = match n.strip_suffix('*') {
                    Some(s) if !s.ends_with('\\') => (s, true),
                    _ => (n.as_str(), false),
                };
                let b = stem.as_bytes();
                let k = b.len().min(16);
                let (mut lo, mut hi) = ([0u8; 16], [if wild { 0xff } else { 0 }; 16]);
                lo[..k].copy_from_slice(&b[..k]);
                hi[..k].copy_from_slice(&b[..k]);
                (lo, hi)
            })
            .collect();
        intervals.sort_unstable();
        IfnameSet { intervals }
    }

    /// Kernel: `nft_lookup_eval()` of the 16-byte `meta oifname` key in
    /// an interval set: whether `name` is in one of the intervals.
    #[inline]
    pub fn contains(&self, name: &str) -> bool {
        let b = name.as_bytes();
        if b.len() > 16 {
            return false;
        }
        let mut key = [0u8; 16];
        key[..b.len()].copy_from_slice(b);
        let i = self.intervals.partition_point(|(_, hi)| *hi < key);
        self.intervals.get(i).is_some_and(|(lo, _)| *lo <= key)
    }
}

/// A map's value as the program reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapOut {
    /// A number, loaded into a register.
    Num(u64),
    /// A verdict.
    Code(Code),
    /// A NAT range.
    Nat(super::rule::NatTo),
}

/// A map as the program looks it up: its keys' [`CompiledSet`], the
/// values by element, the catch-all's.
#[derive(Clone, Debug, Default)]
pub struct CompiledMap {
    keys: CompiledSet,
    values: Vec<MapOut>,
    default: Option<MapOut>,
}

impl CompiledMap {
    /// Kernel: `nft_lookup_eval()` with a destination register, or
    /// `nft_objref`/vmap's: the value of `v`'s element, else the
    /// catch-all's.
    #[inline]
    pub fn get(&self, v: u64) -> Option<MapOut> {
        match self.keys.find(v) {
            Some(i) => self.values.get(i as usize).copied(),
            None => self.default,
        }
    }
}

/// A compiled chain: its rules' instructions one after the other in
/// [`Program::insns`], each rule's followed by an [`Insn::RuleEnd`], the
/// last by an [`Insn::ChainEnd`], so the walk is one loop over one array.
#[derive(Clone, Debug)]
pub struct CompiledChain {
    /// Where the chain starts in [`Program::insns`].
    pub start: u32,
    /// Each rule's instructions in [`Program::insns`] (its `RuleEnd`
    /// after them).
    pub rules: Vec<Range<u32>>,
    /// The policy (base chains).
    pub policy: Policy,
    /// A `type route` base chain.
    pub route: bool,
    /// Its priority (base chains).
    pub priority: i32,
}

/// The compiled ruleset.
#[derive(Clone, Debug, Default)]
pub struct Program {
    /// Every chain's instructions, chain after chain ([`CompiledChain`]).
    pub insns: Vec<Insn>,
    /// For each instruction, where its rule's successor starts: where a
    /// rule that does not match (`NFT_BREAK`) or ends with `continue`
    /// goes on, and where a `jump` returns to.
    pub next: Vec<u32>,
    /// Every chain of every table.
    pub chains: Vec<CompiledChain>,
    /// The sets rules look up (named and anonymous).
    pub sets: Vec<CompiledSet>,
    /// The sets of device names `oifname { ... }` looks up.
    pub ifnames: Vec<IfnameSet>,
    /// The runs of guarded rules [`Insn::Block`] skips through.
    pub blocks: Vec<Block>,
    /// The maps and verdict maps rules look up.
    pub maps: Vec<CompiledMap>,
    /// The rules' counters.
    pub counters: Vec<Arc<Counter>>,
    /// The rules' limits.
    pub limits: Vec<Arc<Limit>>,
    /// The rules' `log` statements.
    pub logs: Vec<Arc<Log>>,
    /// The rules' set updates ([`Insn::Dynset`]).
    pub dynsets: Vec<Dynset>,
    /// The base chains at `output` and at `postrouting` (`[0]`, `[1]`),
    /// in priority order (`nat` chains apart).
    pub bases: [Vec<u32>; 2],
    /// The `nat` base chains at `output` and at `postrouting`, in priority
    /// order: the NAT hook runs them on a flow's first packet.
    pub nat: [Vec<u32>; 2],
    /// The netdev `egress` base chains, by the device they hook (by name:
    /// a device that comes later is hooked then), each in priority order.
    pub egress: Vec<EgressChains>,
    /// Some rule matches on `ct` or a `nat` chain exists: the hooks track
    /// connections (the kernel loads conntrack on demand).
    pub needs_ct: bool,
}

/// A set update a rule makes (`add @s { ... }`, `update @s { ... }`).
#[derive(Clone, Debug)]
pub struct Dynset {
    /// The set, in [`Program::sets`] (its elements and live ones).
    pub set: u16,
    /// What the update does.
    pub update: Update,
}

impl Dynset {
    /// Kernel: `nft_dynset_eval()`: `v` into the set (an element it holds
    /// already stays, refreshed by `update`); `false` when the set is full.
    #[inline]
    pub fn eval(&self, prog: &Program, v: u64, now: u64) -> bool {
        let set = &prog.sets[usize::from(self.set)];
        if set.contains(v) {
            return true;
        }
        set.live
            .as_ref()
            .is_some_and(|l| l.update(v, &self.update, now))
    }
}

/// The netdev `egress` base chains of one device.
#[derive(Clone, Debug, Default)]
pub struct EgressChains {
    /// The device's name (`device "eth0"`).
    pub device: String,
    /// The chains, in priority order.
    pub chains: Vec<u32>,
}

/// Why a rule could not be compiled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A match the engine cannot express (a concatenation of more than two
    /// keys or 64 bits).
    #[error("unsupported match")]
    Unsupported,
}

impl Program {
    /// Compiles every table of `rs`.
    pub fn compile(rs: &Ruleset) -> Result<Program, CompileError> {
        let mut p = Program::default();
        let mut hooked: [Vec<(i32, u32)>; 2] = Default::default();
        let mut nat: [Vec<(i32, u32)>; 2] = Default::default();
        let mut egress: Vec<(String, Vec<(i32, u32)>)> = Vec::new();
        for t in &rs.tables {
            let first = p.chains.len() as u32;
            for c in &t.chains {
                let idx = p.chains.len() as u32;
                let chain_start = p.insns.len() as u32;
                let mut codes = Vec::with_capacity(c.rules.len());
                for r in &c.rules {
                    let start = p.insns.len();
                    for s in &r.stmts {
                        p.stmt(t, first, s)?;
                    }
                    let mut fused = fuse(&p.insns[start..]);
                    if t.family == Family::Netdev {
                        protocol_dependency(&mut fused);
                    }
                    p.insns.truncate(start);
                    codes.push(fuse_tests(&fused));
                }
                let rules = p.lay_out(codes);
                let b = c.base.as_ref();
                p.chains.push(CompiledChain {
                    start: chain_start,
                    rules,
                    policy: b.map_or(Policy::Accept, |b| b.policy),
                    route: b.is_some_and(|b| b.ty == ChainType::Route),
                    priority: b.map_or(0, |b| b.priority),
                });
                let Some(b) = b else {
                    continue;
                };
                let at = match (t.family, b.hook, &b.device) {
                    (Family::Ip, ChainHook::Output, _) => 0,
                    (Family::Ip, ChainHook::Postrouting, _) => 1,
                    (Family::Netdev, ChainHook::Egress, Some(d)) => {
                        add_egress(&mut egress, d, (b.priority, idx));
                        continue;
                    }
                    _ => continue,
                };
                match b.ty {
                    ChainType::Nat => nat[at].push((b.priority, idx)),
                    _ => hooked[at].push((b.priority, idx)),
                }
            }
        }
        p.next = next_rules(&p.chains, p.insns.len());
        p.needs_ct = nat.iter().any(|n| !n.is_empty())
            || p.insns.iter().any(|i| matches!(i, Insn::Ct { .. }));
        for (i, (mut h, mut n)) in hooked.into_iter().zip(nat).enumerate() {
            // Stable: equal priorities run in the order registered.
            h.sort_by_key(|&(prio, _)| prio);
            n.sort_by_key(|&(prio, _)| prio);
            p.bases[i] = h.into_iter().map(|(_, c)| c).collect();
            p.nat[i] = n.into_iter().map(|(_, c)| c).collect();
        }
        p.egress = egress
            .into_iter()
            .map(|(device, mut c)| {
                c.sort_by_key(|&(prio, _)| prio);
                let chains = c.into_iter().map(|(_, c)| c).collect();
                EgressChains { device, chains }
            })
            .collect();
        Ok(p)
    }

    /// Lays a chain's rules out in [`Program::insns`], each followed by
    /// its [`Insn::RuleEnd`], the chain by [`Insn::ChainEnd`], with an
    /// [`Insn::Block`] before each run of guarded rules ([`guard`]);
    /// returns each rule's instructions.
    fn lay_out(&mut self, codes: Vec<Vec<Insn>>) -> Vec<Range<u32>> {
        let mut rules = Vec::with_capacity(codes.len());
        let mut i = 0;
        while i < codes.len() {
            let run = codes[i..]
                .iter()
                .take(BLOCK_MAX)
                .take_while(|c| guard(c).is_some())
                .count();
            let block = (run >= BLOCK_MIN && self.blocks.len() < usize::from(u16::MAX))
                .then_some(self.blocks.len());
            if let Some(b) = block {
                self.insns.push(Insn::Block(b as u16));
                self.blocks.push(Block::default());
            }
            let mut guards = Vec::new();
            for code in &codes[i..i + run.max(1)] {
                let start = self.insns.len() as u32;
                guards.extend(guard(code).map(|g| (g, start)));
                self.insns.extend_from_slice(code);
                rules.push(start..self.insns.len() as u32);
                self.insns.push(Insn::RuleEnd);
            }
            if let Some(b) = block {
                self.blocks[b] = Block::new(&guards, self.insns.len() as u32);
            }
            i += run.max(1);
        }
        self.insns.push(Insn::ChainEnd);
        rules
    }

    /// The egress chains hooked on the device named `dev`, in priority
    /// order (none: empty).
    #[inline]
    pub fn egress_chains(&self, dev: &str) -> &[u32] {
        self.egress
            .iter()
            .find(|e| e.device == dev)
            .map_or(&[], |e| &e.chains[..])
    }

    fn stmt(&mut self, t: &Table, first: u32, s: &Stmt) -> Result<(), CompileError> {
        let insn = match s {
            Stmt::Match(m) => return self.matcher(t, first, m),
            Stmt::Counter(c) => {
                self.counters.push(c.clone());
                Insn::Counter {
                    idx: (self.counters.len() - 1) as u16,
                }
            }
            Stmt::Limit(l) => {
                self.limits.push(l.clone());
                Insn::Limit {
                    idx: (self.limits.len() - 1) as u16,
                }
            }
            Stmt::Log(l) => {
                self.logs.push(l.clone());
                Insn::Log {
                    idx: (self.logs.len() - 1) as u16,
                }
            }
            Stmt::MarkSet(m) => Insn::MarkSet(*m),
            Stmt::MarkSetMap(keys, r) => {
                self.load_keys(keys)?;
                let map = self.map(t, first, r);
                self.insns.push(Insn::MapLoad { reg: 0, map });
                Insn::MarkSetReg { reg: 0 }
            }
            Stmt::PrioritySet(v) => Insn::PrioritySet(*v),
            Stmt::DscpSet(d) => Insn::DscpSet(*d),
            Stmt::TtlSet(v) => Insn::TtlSet(*v),
            Stmt::FieldSet(k, v) => field_set(*k, *v)?,
            Stmt::Nat(n) => {
                // nft_nat_eval binds and the rule's verdict is accept.
                self.insns.push(Insn::Nat(*n));
                Insn::Verdict(Code::Accept)
            }
            Stmt::NatMap(n) => {
                self.load_keys(&n.keys)?;
                let map = self.map(t, first, &n.map);
                self.insns.push(Insn::NatMap {
                    reg: 0,
                    map,
                    nat: n.nat,
                    netmap: n.netmap,
                });
                Insn::Verdict(Code::Accept)
            }
            Stmt::Reject(Reject::Icmp(code)) => {
                self.insns.push(Insn::Reject(*code));
                Insn::Verdict(Code::Drop)
            }
            // nft puts `meta l4proto tcp` before it; ipxmit sends no TCP.
            Stmt::Reject(Reject::TcpReset) => Insn::Verdict(Code::Drop),
            Stmt::Verdict(v) => Insn::Verdict(code(t, first, v)),
            Stmt::SetUpdate(u) => return self.set_update(t, u),
        };
        self.insns.push(insn);
        Ok(())
    }

    /// Kernel: `nft_dynset_init()`: the key's loads, then the update of
    /// the named set (its elements and its live ones) with the timeout a
    /// new element gets (the statement's, else the set's, when the set
    /// has timeouts).
    fn set_update(&mut self, t: &Table, u: &SetUpdate) -> Result<(), CompileError> {
        let set = t.set(&u.set).ok_or(CompileError::Unsupported)?;
        self.load_keys(&u.keys)?;
        let ns = |ms: u64| ms.saturating_mul(1_000_000);
        let timeout = match set.opts.timeouts {
            true if u.timeout != 0 => ns(u.timeout),
            true => ns(set.opts.timeout),
            false => 0,
        };
        let lookup = self.named(t, &u.set, false);
        let Insn::Lookup { set: idx, .. } = lookup else {
            return Err(CompileError::Unsupported);
        };
        let fixed = self.sets[usize::from(idx)].len() as u32;
        self.dynsets.push(Dynset {
            set: idx,
            update: Update {
                update: u.update,
                timeout,
                refresh: ns(u.timeout),
                size: set.opts.size,
                fixed,
            },
        });
        self.insns.push(Insn::Dynset {
            reg: 0,
            idx: (self.dynsets.len() - 1) as u16,
        });
        Ok(())
    }

    /// The lookup of named set `n` of `t`: its elements, its catch-all,
    /// its live elements when rules may add some.
    fn named(&mut self, t: &Table, n: &str, neg: bool) -> Insn {
        let elems = t.set(n).map_or(&[][..], |s| &s.elems[..]);
        let insn = self.lookup(elems, neg);
        if let Some(last) = self.sets.last_mut() {
            let set = t.set(n);
            last.catchall = set.is_some_and(|s| s.catchall);
            // Only a set some rule adds to (or that holds live elements
            // already) pays for looking at them.
            last.live = set
                .filter(|s| !s.live.is_empty() || updated(t, &s.name))
                .map(|s| s.live.clone());
        }
        insn
    }

    /// The loads of `key` into `dreg`, with the dependency nft adds for a
    /// transport field (`meta l4proto udp`).
    fn load(&mut self, key: Key, dreg: Reg) {
        let pl = |off, len| Insn::Payload {
            base: Base::Network,
            off,
            len,
            dreg,
        };
        let udp = |off| Insn::Payload {
            base: Base::Transport,
            off,
            len: 2,
            dreg,
        };
        let meta = |key| Insn::Meta { key, dreg };
        let insn = match key {
            Key::IpSaddr => pl(12, 4),
            Key::IpDaddr => pl(16, 4),
            Key::IpProtocol => pl(9, 1),
            Key::IpTtl => pl(8, 1),
            Key::IpDscp => {
                self.insns.push(pl(1, 1));
                Insn::Bitwise {
                    reg: dreg,
                    mask: 0xfc,
                    shr: 2,
                }
            }
            Key::IpLength => pl(2, 2),
            Key::IpId => pl(4, 2),
            Key::IpFragOff => pl(6, 2),
            Key::IpChecksum => pl(10, 2),
            Key::IpVersion | Key::IpHdrlength | Key::IpEcn => {
                let (off, mask, shr) = match key {
                    Key::IpVersion => (0, 0xf0, 4),
                    Key::IpHdrlength => (0, 0x0f, 0),
                    _ => (1, 0x03, 0),
                };
                self.insns.push(pl(off, 1));
                Insn::Bitwise {
                    reg: dreg,
                    mask,
                    shr,
                }
            }
            Key::UdpSport | Key::UdpDport | Key::UdpLength | Key::UdpChecksum => {
                self.insns.push(meta(MetaKey::L4proto));
                self.insns.push(Insn::Cmp {
                    reg: dreg,
                    op: CmpOp::Eq,
                    data: 17,
                });
                udp(match key {
                    Key::UdpSport => 0,
                    Key::UdpDport => 2,
                    Key::UdpLength => 4,
                    _ => 6,
                })
            }
            Key::TcpSport
            | Key::TcpDport
            | Key::TcpSequence
            | Key::TcpAckseq
            | Key::TcpWindow
            | Key::TcpChecksum
            | Key::TcpUrgptr => {
                self.insns.push(meta(MetaKey::L4proto));
                self.insns.push(Insn::Cmp {
                    reg: dreg,
                    op: CmpOp::Eq,
                    data: 6,
                });
                let (off, len) = tcp_field(key);
                Insn::Payload {
                    base: Base::Transport,
                    off,
                    len,
                    dreg,
                }
            }
            Key::MetaL4proto => meta(MetaKey::L4proto),
            Key::MetaMark => meta(MetaKey::Mark),
            Key::MetaLength => meta(MetaKey::Len),
            Key::MetaPriority => meta(MetaKey::Priority),
            Key::Oif => meta(MetaKey::Oif),
            Key::Oifname | Key::Iifname => return,
            Key::CtState => Insn::Ct {
                key: CtKey::State,
                dreg,
            },
            Key::CtDirection => Insn::Ct {
                key: CtKey::Direction,
                dreg,
            },
            Key::CtMark => Insn::Ct {
                key: CtKey::Mark,
                dreg,
            },
            Key::ThSport | Key::ThDport => Insn::Payload {
                base: Base::Transport,
                off: if key == Key::ThSport { 0 } else { 2 },
                len: 2,
                dreg,
            },
        };
        self.insns.push(insn);
    }

    fn matcher(&mut self, t: &Table, first: u32, m: &Match) -> Result<(), CompileError> {
        let neg = m.op == Op::Ne;
        if let Rhs::IfnameSet(names) = &m.rhs {
            self.ifnames.push(IfnameSet::new(names));
            self.insns.push(Insn::LookupIfname {
                set: (self.ifnames.len() - 1) as u16,
                neg,
                iif: m.keys[..] == [Key::Iifname],
            });
            return Ok(());
        }
        if let Rhs::Ifname(n) = &m.rhs {
            let mut name = [0u8; 16];
            let b = n.as_bytes();
            name[..b.len().min(16)].copy_from_slice(&b[..b.len().min(16)]);
            let iif = m.keys[..] == [Key::Iifname];
            self.insns.push(Insn::CmpIfname { name, neg, iif });
            return Ok(());
        }
        self.load_keys(&m.keys)?;
        let rhs = match &m.rhs {
            Rhs::Masked { mask, xor, rhs } => {
                self.insns.push(Insn::MaskXor {
                    reg: 0,
                    mask: *mask,
                    xor: *xor,
                });
                &**rhs
            }
            r => r,
        };
        let insn = self.comparison(t, first, m.op, rhs)?;
        if let [_, k] = m.keys[..] {
            match insn {
                Insn::Lookup { set, .. } => self.sets[usize::from(set)].concat(k.bits()),
                Insn::Vmap { map, .. } => self.maps[usize::from(map)].keys.concat(k.bits()),
                _ => {}
            }
        }
        self.insns.push(insn);
        Ok(())
    }

    /// The instruction comparing register 0 (loaded, maybe masked) with
    /// `rhs` under `op`, after any it needs first.
    fn comparison(
        &mut self,
        t: &Table,
        first: u32,
        op: Op,
        rhs: &Rhs,
    ) -> Result<Insn, CompileError> {
        let neg = op == Op::Ne;
        Ok(match rhs {
            Rhs::Vmap(r) => {
                let map = self.map(t, first, r);
                Insn::Vmap { reg: 0, map }
            }
            Rhs::Value(v) => Insn::Cmp {
                reg: 0,
                op: cmp_op(op),
                data: *v,
            },
            Rhs::Dev(_, i) => Insn::Cmp {
                reg: 0,
                op: cmp_op(op),
                data: u64::from(*i),
            },
            Rhs::Prefix(a, len) => {
                let mask = prefix_mask(*len);
                self.insns.push(Insn::Bitwise {
                    reg: 0,
                    mask: u64::from(mask),
                    shr: 0,
                });
                Insn::Cmp {
                    reg: 0,
                    op: cmp_op(op),
                    data: u64::from(a & mask),
                }
            }
            Rhs::Range(lo, hi) => Insn::Range {
                reg: 0,
                lo: *lo,
                hi: *hi,
                neg,
            },
            Rhs::Flags(mask) => {
                self.insns.push(Insn::Bitwise {
                    reg: 0,
                    mask: *mask,
                    shr: 0,
                });
                Insn::Cmp {
                    reg: 0,
                    op: if neg { CmpOp::Eq } else { CmpOp::Ne },
                    data: 0,
                }
            }
            Rhs::Set(elems) => self.lookup(elems, neg),
            Rhs::Named(n) => self.named(t, n, neg),
            _ => return Err(CompileError::Unsupported),
        })
    }

    /// The loads of `keys` into register 0 (a concatenation: the first
    /// shifted left by the second's width).
    fn load_keys(&mut self, keys: &[Key]) -> Result<(), CompileError> {
        let bits: u32 = keys.iter().map(|k| k.bits()).sum();
        if keys.is_empty() || keys.len() > 2 || bits > 64 {
            return Err(CompileError::Unsupported);
        }
        for (i, k) in keys.iter().enumerate() {
            self.load(*k, i as Reg);
            if i > 0 {
                self.insns.push(Insn::Concat {
                    dreg: 0,
                    sreg: i as Reg,
                    shl: k.bits() as u8,
                });
            }
        }
        Ok(())
    }

    /// The map `r` (anonymous, or named in `t`, whose chains start at
    /// `first`) compiled; its index.
    fn map(&mut self, t: &Table, first: u32, r: &MapRef) -> u16 {
        let out = |v: &MapValue| match v {
            MapValue::Num(n) => MapOut::Num(*n),
            MapValue::Verdict(v) => MapOut::Code(code(t, first, v)),
            MapValue::Nat(to) => MapOut::Nat(*to),
        };
        let (keys, values, default): (Vec<Elem>, Vec<MapOut>, _) = match r {
            MapRef::Anon(m) => (
                m.elems.iter().map(|(e, _)| *e).collect(),
                m.elems.iter().map(|(_, v)| out(v)).collect(),
                m.default.as_ref().map(out),
            ),
            MapRef::Named(n) => match t.set(n) {
                Some(s) => (
                    s.elems.clone(),
                    s.values.iter().map(out).collect(),
                    s.default.as_ref().map(out),
                ),
                None => (Vec::new(), Vec::new(), None),
            },
        };
        self.maps.push(CompiledMap {
            keys: CompiledSet::new(&keys),
            values,
            default,
        });
        (self.maps.len() - 1) as u16
    }

    fn lookup(&mut self, elems: &[Elem], neg: bool) -> Insn {
        self.sets.push(CompiledSet::new(elems));
        Insn::Lookup {
            reg: 0,
            set: (self.sets.len() - 1) as u16,
            neg,
        }
    }
}

/// Whether a rule of `t` adds to set `name` (`add @name`, `update @name`).
fn updated(t: &Table, name: &str) -> bool {
    t.chains
        .iter()
        .flat_map(|c| &c.rules)
        .flat_map(|r| &r.stmts)
        .any(|s| matches!(s, Stmt::SetUpdate(u) if u.set == name))
}

/// [`Program::next`] of `n` instructions laid out as `chains` say: each
/// instruction of a rule, and its `RuleEnd`, lead to the instruction
/// after that `RuleEnd`; a `ChainEnd` to itself.
fn next_rules(chains: &[CompiledChain], n: usize) -> Vec<u32> {
    let mut next: Vec<u32> = (0..n as u32).collect();
    for r in chains.iter().flat_map(|c| &c.rules) {
        next[r.start as usize..=r.end as usize].fill(r.end + 1);
    }
    next
}

/// The chain and rule of [`Program::insns`]' instruction `pc` (for a dry
/// run's notes).
pub fn rule_at(prog: &Program, pc: u32) -> (u32, u32) {
    let c = prog
        .chains
        .partition_point(|c| c.start <= pc)
        .saturating_sub(1);
    let rules = prog.chains.get(c).map_or(&[][..], |c| &c.rules[..]);
    let r = rules.partition_point(|r| r.start <= pc).saturating_sub(1);
    (c as u32, r as u32)
}

/// An egress chain `c` of priority `prio` on device `dev`, in its
/// device's list.
fn add_egress(egress: &mut Vec<(String, Vec<(i32, u32)>)>, dev: &str, c: (i32, u32)) {
    match egress.iter_mut().find(|(d, _)| d == dev) {
        Some((_, l)) => l.push(c),
        None => egress.push((dev.to_string(), vec![c])),
    }
}

/// The dependency nft puts before a network header field in a netdev
/// table (`meta protocol ip`): before the rule's first instruction that
/// reads or writes the IP header, so a frame that is not IPv4 (an ARP
/// request) breaks there, after the statements before it ran.
fn protocol_dependency(insns: &mut Vec<Insn>) {
    let network = |i: &Insn| match i {
        Insn::Payload { base, .. }
        | Insn::PayloadCmp { base, .. }
        | Insn::FieldSet { base, .. } => *base == Base::Network,
        Insn::DscpSet(_) | Insn::TtlSet(_) => true,
        _ => false,
    };
    if let Some(at) = insns.iter().position(network) {
        insns.insert(at, Insn::ProtocolIs(ETH_P_IP));
    }
}

/// `ETH_P_IP`, the EtherType of IPv4 (`skb->protocol`).
const ETH_P_IP: u16 = 0x0800;

/// A rule's instructions with each load that only a comparison reads
/// fused with it ([`Insn::PayloadCmp`], [`Insn::L4protoIs`]).
fn fuse(insns: &[Insn]) -> Vec<Insn> {
    let mut out = Vec::with_capacity(insns.len());
    let mut i = 0;
    while i < insns.len() {
        let next = insns.get(i + 1).copied();
        let fused = match (insns[i], next) {
            (
                Insn::Payload {
                    base,
                    off,
                    len,
                    dreg,
                },
                Some(Insn::Cmp { reg, op, data }),
            ) if reg == dreg => Some(Insn::PayloadCmp {
                base,
                off,
                len,
                op,
                data,
            }),
            (
                Insn::Meta {
                    key: MetaKey::L4proto,
                    dreg,
                },
                Some(Insn::Cmp {
                    reg,
                    op: CmpOp::Eq,
                    data,
                }),
            ) if reg == dreg && data <= 255 => Some(Insn::L4protoIs(data as u8)),
            _ => None,
        };
        match fused {
            Some(f) => {
                out.push(f);
                i += 2;
            }
            None => {
                out.push(insns[i]);
                i += 1;
            }
        }
    }
    out
}

/// A rule's instructions with each test of a header field or meta key
/// fused into one instruction ([`Insn::Test`], [`Insn::MetaCmp`]): a
/// load, its mask (`Bitwise` without a shift) and the comparison that
/// alone reads it, with the `meta l4proto` dependency just before a
/// transport field's. Only what breaks the rule together is fused, so the
/// rule breaks where it did, and nothing it did before changes.
fn fuse_tests(insns: &[Insn]) -> Vec<Insn> {
    let mut out: Vec<Insn> = Vec::with_capacity(insns.len());
    let mut i = 0;
    while i < insns.len() {
        let (mut insn, used) = fuse_test(&insns[i..]);
        i += used;
        if let (Insn::Test { at, proto, .. }, Some(&Insn::L4protoIs(p))) = (&mut insn, out.last()) {
            if usize::from(*at) >= TH && proto.is_none() {
                *proto = Some(p);
                out.pop();
            }
        }
        out.push(insn);
    }
    out
}

/// Every bit of a field of `len` bytes (1 to 8).
fn width(len: u8) -> u64 {
    u64::MAX >> (64 - 8 * u32::from(len.clamp(1, 8)))
}

/// The fewest rules in a run that gets an [`Insn::Block`].
const BLOCK_MIN: usize = 4;
/// The most rules one [`Block`] holds (its candidates are a `u64`).
const BLOCK_MAX: usize = 64;

/// What a rule's guard tests: a header field ([`Insn::Test`]'s) or a
/// meta key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardKey {
    /// The field of an [`Insn::Test`] (`at`, `end`, `proto`, `mask`).
    Header(u8, u8, Option<u8>, u32),
    /// A meta key.
    Meta(MetaKey),
}

/// A rule's guard: its first instruction, when it is a test of a field
/// for equality with a constant (`udp dport 53`, `ip saddr 10.0.0.0/8`,
/// `meta mark 7`); the rule cannot match a packet whose field differs.
pub fn guard(code: &[Insn]) -> Option<(GuardKey, u32)> {
    match *code.first()? {
        Insn::Test {
            at,
            end,
            proto,
            op: CmpOp::Eq,
            mask,
            data,
        } => Some((GuardKey::Header(at, end, proto, mask), data)),
        Insn::MetaCmp {
            key,
            op: CmpOp::Eq,
            data,
        } => Some((GuardKey::Meta(key), u32::try_from(data).ok()?)),
        _ => None,
    }
}

/// A run of consecutive guarded rules ([`Insn::Block`]). A packet none of
/// whose guards holds skips the run; else it goes on at the first rule
/// whose guard holds, every rule before it having failed its guard on the
/// packet as it came, with nothing done. From there the rules run one by
/// one, as a statement may have changed the fields.
#[derive(Clone, Debug, Default)]
pub struct Block {
    /// The fields the guards test, each with its values: (value, the
    /// rules guarded by it as bits), sorted by value.
    pub keys: Vec<(GuardKey, Vec<(u32, u64)>)>,
    /// Each rule's first instruction.
    pub starts: Vec<u32>,
    /// The instruction after the run.
    pub end: u32,
}

impl Block {
    fn new(guards: &[((GuardKey, u32), u32)], end: u32) -> Block {
        let mut keys: Vec<(GuardKey, Vec<(u32, u64)>)> = Vec::new();
        for (bit, &((key, value), _)) in guards.iter().enumerate() {
            let i = match keys.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    keys.push((key, Vec::new()));
                    keys.len() - 1
                }
            };
            let values = &mut keys[i].1;
            match values.iter_mut().find(|(v, _)| *v == value) {
                Some((_, rules)) => *rules |= 1 << bit,
                None => values.push((value, 1 << bit)),
            }
        }
        keys.iter_mut().for_each(|(_, v)| v.sort_unstable());
        Block {
            keys,
            starts: guards.iter().map(|&(_, start)| start).collect(),
            end,
        }
    }
}

/// Where [`Insn::Test`] finds the transport header in its copy.
const TH: usize = 20;

/// The fused test at the start of `insns` and how many instructions it
/// stands for (none fused: the first instruction, 1).
fn fuse_test(insns: &[Insn]) -> (Insn, usize) {
    let test = |base: Base, off: u8, len: u8, op, mask: u64, data: u64| {
        let at = off as usize + if base == Base::Transport { TH } else { 0 };
        let fits = off as usize + len as usize <= TH && matches!(len, 1 | 2 | 4);
        (fits && data <= u64::from(u32::MAX) && mask & width(len) == mask).then(|| Insn::Test {
            at: at as u8,
            end: (at + len as usize) as u8,
            proto: None,
            op,
            mask: mask as u32,
            data: data as u32,
        })
    };
    let fused = match insns {
        [Insn::PayloadCmp {
            base,
            off,
            len,
            op,
            data,
        }, ..] => test(*base, *off, *len, *op, width(*len), *data).map(|t| (t, 1)),
        [Insn::Payload {
            base,
            off,
            len,
            dreg,
        }, Insn::Bitwise { reg, mask, shr: 0 }, Insn::Cmp { reg: r2, op, data }, ..]
            if reg == dreg && r2 == dreg =>
        {
            test(*base, *off, *len, *op, *mask, *data).map(|t| (t, 3))
        }
        [Insn::Meta { key, dreg }, Insn::Cmp { reg, op, data }, ..] if reg == dreg => Some((
            Insn::MetaCmp {
                key: *key,
                op: *op,
                data: *data,
            },
            2,
        )),
        _ => None,
    };
    fused.unwrap_or((insns[0], 1))
}

/// A verdict as the program holds it: chains of table `t` (whose first
/// is chain `first` of the program) by index.
fn code(t: &Table, first: u32, v: &RuleVerdict) -> Code {
    let chain = |n: &str| first + t.chains.iter().position(|c| c.name == n).unwrap_or(0) as u32;
    match v {
        RuleVerdict::Accept => Code::Accept,
        RuleVerdict::Drop => Code::Drop,
        RuleVerdict::Continue => Code::Continue,
        RuleVerdict::Return => Code::Return,
        RuleVerdict::Jump(n) => Code::Jump(chain(n)),
        RuleVerdict::Goto(n) => Code::Goto(chain(n)),
    }
}

/// The netmask of a prefix length.
pub fn prefix_mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

/// The offset and length of a TCP header field (`tcp_hdr`'s layout).
fn tcp_field(key: Key) -> (u8, u8) {
    match key {
        Key::TcpSport => (0, 2),
        Key::TcpDport => (2, 2),
        Key::TcpSequence => (4, 4),
        Key::TcpAckseq => (8, 4),
        Key::TcpWindow => (14, 2),
        Key::TcpChecksum => (16, 2),
        _ => (18, 2),
    }
}

fn cmp_op(op: Op) -> CmpOp {
    match op {
        Op::Eq => CmpOp::Eq,
        Op::Ne => CmpOp::Ne,
        Op::Lt => CmpOp::Lt,
        Op::Gt => CmpOp::Gt,
        Op::Le => CmpOp::Le,
        Op::Ge => CmpOp::Ge,
    }
}

/// The instruction of `KEY set V` (`nft_payload_set_init`'s offsets and
/// checksum flags).
fn field_set(key: Key, v: u32) -> Result<Insn, CompileError> {
    let (base, off, len, mask, value) = match key {
        Key::IpSaddr => (Base::Network, 12, 4, 0xff, v),
        Key::IpDaddr => (Base::Network, 16, 4, 0xff, v),
        Key::IpProtocol => (Base::Network, 9, 1, 0xff, v),
        Key::IpId => (Base::Network, 4, 2, 0xff, v),
        Key::IpEcn => (Base::Network, 1, 1, 0x03, v),
        Key::IpChecksum => (Base::Network, 10, 2, 0xff, v),
        Key::UdpSport => (Base::Transport, 0, 2, 0xff, v),
        Key::UdpDport => (Base::Transport, 2, 2, 0xff, v),
        Key::UdpChecksum => (Base::Transport, 6, 2, 0xff, v),
        _ => return Err(CompileError::Unsupported),
    };
    let pseudo = matches!(key, Key::IpSaddr | Key::IpDaddr);
    let l4 = pseudo || matches!(key, Key::UdpSport | Key::UdpDport);
    Ok(Insn::FieldSet {
        base,
        off,
        len,
        mask,
        value,
        l3: base == Base::Network && key != Key::IpChecksum,
        l4,
        pseudo,
    })
}
