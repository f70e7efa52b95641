//! Tables, chains and sets, and the commands that change them
//! (`nf_tables_api.c`'s newtable/newchain/newrule/newset/newsetelem and
//! their delete and flush forms).

use std::sync::Arc;

use super::dynset::LiveSet;
use super::rule::{Elem, MapElems, MapRef, MapValue, Rule, SetUpdate, Stmt};
use super::NftError;

/// A table's family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `ip`.
    Ip,
    /// `netdev`.
    Netdev,
}

/// A base chain's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainType {
    /// `filter`.
    Filter,
    /// `route`: a changed mark, address or TOS reroutes (output only).
    Route,
    /// `nat`: run on a flow's first packet to bind its NAT.
    Nat,
}

/// Where a base chain hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainHook {
    /// `output` (`NF_INET_LOCAL_OUT`).
    Output,
    /// `postrouting` (`NF_INET_POST_ROUTING`).
    Postrouting,
    /// `egress` of family netdev (`NF_NETDEV_EGRESS`, on one device).
    Egress,
}

/// A base chain's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    /// `accept`.
    #[default]
    Accept,
    /// `drop`.
    Drop,
}

/// What makes a chain a base chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseChain {
    /// Its type.
    pub ty: ChainType,
    /// Its hook.
    pub hook: ChainHook,
    /// `device D` (netdev egress).
    pub device: Option<String>,
    /// Its priority (lower runs first).
    pub priority: i32,
    /// Its policy.
    pub policy: Policy,
}

/// A chain.
#[derive(Clone, Debug)]
pub struct Chain {
    /// Its name.
    pub name: String,
    /// Its handle.
    pub handle: u64,
    /// Set for a base chain.
    pub base: Option<BaseChain>,
    /// Its rules, in order.
    pub rules: Vec<Rule>,
}

/// The type of one part of a set's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    /// `ipv4_addr`.
    Ipv4Addr,
    /// `inet_service`.
    InetService,
    /// `mark`.
    Mark,
    /// `inet_proto`.
    InetProto,
    /// `time` (nanoseconds since the epoch, `meta time`'s type).
    Time,
}

impl DataType {
    /// Its width in bits.
    pub fn bits(self) -> u32 {
        match self {
            DataType::Ipv4Addr | DataType::Mark => 32,
            DataType::InetService => 16,
            DataType::InetProto => 8,
            DataType::Time => 64,
        }
    }
}

/// A named set.
#[derive(Clone, Debug)]
pub struct Set {
    /// Its name.
    pub name: String,
    /// Its handle.
    pub handle: u64,
    /// Its key type (two parts for a concatenation).
    pub ty: Vec<DataType>,
    /// `flags interval`.
    pub interval: bool,
    /// Its elements, sorted.
    pub elems: Vec<Elem>,
    /// A map's data type (`type K : mark`, `type K : verdict`).
    pub map: Option<MapData>,
    /// A map's elements' values, in the order of `elems`.
    pub values: Vec<MapValue>,
    /// A map's catch-all value.
    pub default: Option<MapValue>,
    /// A set's catch-all element `*` (`NFT_SET_ELEM_CATCHALL`): every key
    /// is in the set.
    pub catchall: bool,
    /// `size N`, `timeout T`, `flags dynamic,timeout`.
    pub opts: SetOpts,
    /// The elements rules added from the packet path (shared with every
    /// compiled program).
    pub live: Arc<LiveSet>,
    /// Whether its backend takes updates from the packet path
    /// ([`Set::backend_updates`], decided when it is made).
    pub updatable: bool,
}

/// A set's options besides its type and `flags interval`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetOpts {
    /// `size N` (0: none given).
    pub size: u32,
    /// `timeout T` in ms, whole jiffies (0: none).
    pub timeout: u64,
    /// `flags timeout` (`NFT_SET_TIMEOUT`; also implied by `timeout T`).
    pub timeouts: bool,
    /// `flags dynamic` (`NFT_SET_EVAL`).
    pub dynamic: bool,
}

impl Set {
    /// Kernel: `nft_select_set_ops()` then `nft_dynset_init()`: whether the
    /// backend the kernel chose for this set can be updated from the
    /// packet path (`ops->update`): not an interval set (`nft_rbtree`),
    /// nor, without `flags dynamic` or timeouts, a key of at most two
    /// bytes (`nft_bitmap`) or a set of known size (the fixed `nft_hash`).
    pub fn backend_updates(ty: &[DataType], interval: bool, opts: &SetOpts) -> bool {
        if interval {
            return false;
        }
        let bits: u32 = ty.iter().map(|t| t.bits()).sum();
        opts.dynamic || opts.timeouts || (bits > 16 && opts.size == 0)
    }
}

/// The data type of a named map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapData {
    /// `mark`.
    Mark,
    /// `verdict`.
    Verdict,
}

/// A table.
#[derive(Clone, Debug)]
pub struct Table {
    /// Its family.
    pub family: Family,
    /// Its name.
    pub name: String,
    /// Its handle.
    pub handle: u64,
    /// Its chains, in the order added.
    pub chains: Vec<Chain>,
    /// Its sets, in the order added.
    pub sets: Vec<Set>,
    next_handle: u64,
}

impl Table {
    /// The chain called `name`.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// The set called `name`.
    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|s| s.name == name)
    }

    fn handle(&mut self) -> u64 {
        self.next_handle += 1;
        self.next_handle
    }

    fn chain_mut(&mut self, name: &str) -> Result<&mut Chain, NftError> {
        self.chains
            .iter_mut()
            .find(|c| c.name == name)
            .ok_or(NftError::NoEntry)
    }

    /// Checks what a rule refers to (chains, sets and their key widths).
    fn check_rule(&self, stmts: &[Stmt]) -> Result<(), NftError> {
        for s in stmts {
            match s {
                Stmt::Verdict(super::RuleVerdict::Jump(c) | super::RuleVerdict::Goto(c)) => {
                    let t = self.chain(c).ok_or(NftError::NoEntry)?;
                    if t.base.is_some() {
                        return Err(NftError::Inval("jump to a base chain"));
                    }
                }
                Stmt::Match(super::Match {
                    rhs: super::Rhs::Vmap(r),
                    keys,
                    ..
                }) => self.check_map(keys, r, MapData::Verdict)?,
                Stmt::MarkSetMap(keys, r) => self.check_map(keys, r, MapData::Mark)?,
                Stmt::NatMap(super::NatMap {
                    map: MapRef::Named(_),
                    ..
                }) => return Err(NftError::Inval("a named NAT map")),
                Stmt::SetUpdate(u) => self.check_update(u)?,
                Stmt::Match(m) => {
                    if let super::Rhs::Named(n) = &m.rhs {
                        let set = self.set(n).ok_or(NftError::NoEntry)?;
                        let want: u32 = m.keys.iter().map(|k| k.bits()).sum();
                        let have: u32 = set.ty.iter().map(|t| t.bits()).sum();
                        if want != have {
                            return Err(NftError::DatatypeMismatch);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl Table {
    /// Kernel: `nft_dynset_init()`: the set must exist (`ENOENT`), be a
    /// set (`EINVAL` for a map), have the key's type, have a backend that
    /// updates and, for a `timeout`, `flags timeout` (`EOPNOTSUPP`).
    fn check_update(&self, u: &SetUpdate) -> Result<(), NftError> {
        let set = self.set(&u.set).ok_or(NftError::NoEntry)?;
        let want: Vec<u32> = u.keys.iter().map(|k| k.bits()).collect();
        let have: Vec<u32> = set.ty.iter().map(|t| t.bits()).collect();
        if want != have {
            return Err(NftError::DatatypeMismatch);
        }
        if set.map.is_some() {
            return Err(NftError::Inval("a map in a set statement"));
        }
        if !set.updatable || (u.timeout != 0 && !set.opts.timeouts) {
            return Err(NftError::NotSupported);
        }
        Ok(())
    }

    /// A map a rule looks up: a named one must exist, be a map of `data`
    /// and have the key's width; a verdict's chains must exist.
    fn check_map(&self, keys: &[super::Key], r: &MapRef, data: MapData) -> Result<(), NftError> {
        let verdicts: Vec<&MapValue> = match r {
            MapRef::Named(n) => {
                let set = self.set(n).ok_or(NftError::NoEntry)?;
                let want: u32 = keys.iter().map(|k| k.bits()).sum();
                let have: u32 = set.ty.iter().map(|t| t.bits()).sum();
                if set.map != Some(data) || want != have {
                    return Err(NftError::DatatypeMismatch);
                }
                set.values.iter().chain(&set.default).collect()
            }
            MapRef::Anon(m) => m.elems.iter().map(|(_, v)| v).chain(&m.default).collect(),
        };
        for v in verdicts {
            if let MapValue::Verdict(super::RuleVerdict::Jump(c) | super::RuleVerdict::Goto(c)) = v
            {
                self.chain(c).ok_or(NftError::NoEntry)?;
            }
        }
        Ok(())
    }
}

/// Kernel: `nft_nat_validate()`, `nft_masq_validate()`: in a base chain,
/// `snat` and `masquerade` need a `nat` chain at postrouting, `dnat` and
/// `redirect` (`nft_redir_validate()`) one at output (`EOPNOTSUPP`); `nft_reject_validate()`: `reject` is refused
/// at postrouting and egress.
fn check_nat(c: &Chain, stmts: &[Stmt]) -> Result<(), NftError> {
    let Some(b) = &c.base else {
        return Ok(());
    };
    for s in stmts {
        // nft_reject_validate(): input, forward, output, prerouting only.
        if matches!(s, Stmt::Reject(_)) && b.hook != ChainHook::Output {
            return Err(NftError::NotSupported);
        }
        let nat = match s {
            Stmt::Nat(n) => Some(n),
            Stmt::NatMap(m) => Some(&m.nat),
            _ => None,
        };
        if let Some(n) = nat {
            let hook = match n.kind {
                super::NatKind::Dnat | super::NatKind::Redirect => ChainHook::Output,
                _ => ChainHook::Postrouting,
            };
            if b.ty != ChainType::Nat || b.hook != hook {
                return Err(NftError::NotSupported);
            }
        }
    }
    Ok(())
}

/// A statement with a `ct` key (conntrack, which a netdev table cannot
/// load).
fn uses_ct(s: &Stmt) -> bool {
    let ct = |k: &super::Key| {
        matches!(
            k,
            super::Key::CtState | super::Key::CtDirection | super::Key::CtMark
        )
    };
    match s {
        Stmt::Match(m) => m.keys.iter().any(ct),
        Stmt::MarkSetMap(keys, _) => keys.iter().any(ct),
        Stmt::NatMap(n) => n.keys.iter().any(ct),
        _ => false,
    }
}

/// Where a new rule goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// `add rule`: at the end (or after `handle N`).
    Append(Option<u64>),
    /// `insert rule`: at the start (or before `handle N`).
    Insert(Option<u64>),
}

/// A rule as `nft -a` names it: family, table, chain and handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleRef {
    /// The table's family.
    pub family: Family,
    /// The table.
    pub table: String,
    /// The chain.
    pub chain: String,
    /// The rule's handle.
    pub handle: u64,
}

/// Every table of one namespace (`nft list ruleset`).
#[derive(Clone, Debug, Default)]
pub struct Ruleset {
    /// The tables, in the order added.
    pub tables: Vec<Table>,
    next_handle: [u64; 2],
}

impl Ruleset {
    /// The table `name` of `family`.
    pub fn table(&self, family: Family, name: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.family == family && t.name == name)
    }

    /// Set `set` of table `table` (`ENOENT` when either is missing).
    fn set_mut(&mut self, family: Family, table: &str, set: &str) -> Result<&mut Set, NftError> {
        let t = self.table_mut(family, table)?;
        t.sets
            .iter_mut()
            .find(|s| s.name == set)
            .ok_or(NftError::NoEntry)
    }

    fn table_mut(&mut self, family: Family, name: &str) -> Result<&mut Table, NftError> {
        self.tables
            .iter_mut()
            .find(|t| t.family == family && t.name == name)
            .ok_or(NftError::NoEntry)
    }

    /// Every chain's rules as [`RuleRef`]s, chains in the program's order
    /// (tables, then their chains, as [`super::Program::compile`] numbers
    /// them).
    pub fn rule_refs(&self) -> Vec<Vec<RuleRef>> {
        let mut v = Vec::new();
        for t in &self.tables {
            for c in &t.chains {
                v.push(
                    c.rules
                        .iter()
                        .map(|r| RuleRef {
                            family: t.family,
                            table: t.name.clone(),
                            chain: c.name.clone(),
                            handle: r.handle,
                        })
                        .collect(),
                );
            }
        }
        v
    }

    /// Kernel: `nf_tables_newtable()`. `create` refuses an existing table.
    pub fn add_table(&mut self, family: Family, name: &str, create: bool) -> Result<(), NftError> {
        if self.table(family, name).is_some() {
            return if create {
                Err(NftError::Exists)
            } else {
                Ok(())
            };
        }
        let n = &mut self.next_handle[family as usize];
        *n += 1;
        self.tables.push(Table {
            family,
            name: name.to_string(),
            handle: *n,
            chains: Vec::new(),
            sets: Vec::new(),
            next_handle: 0,
        });
        Ok(())
    }

    /// Kernel: `nf_tables_deltable()` (with everything in it).
    pub fn delete_table(&mut self, family: Family, name: &str) -> Result<(), NftError> {
        let before = self.tables.len();
        self.tables
            .retain(|t| !(t.family == family && t.name == name));
        if self.tables.len() == before {
            return Err(NftError::NoEntry);
        }
        Ok(())
    }

    /// `flush table`: every chain's rules go.
    pub fn flush_table(&mut self, family: Family, name: &str) -> Result<(), NftError> {
        let t = self.table_mut(family, name)?;
        t.chains.iter_mut().for_each(|c| c.rules.clear());
        Ok(())
    }

    /// Kernel: `nf_tables_newchain()`. An existing chain is left as it is
    /// (its policy updated) unless `create`.
    pub fn add_chain(
        &mut self,
        family: Family,
        table: &str,
        name: &str,
        base: Option<BaseChain>,
        create: bool,
    ) -> Result<(), NftError> {
        let t = self.table_mut(family, table)?;
        if let Some(base) = &base {
            check_base(family, base)?;
        }
        if let Ok(c) = t.chain_mut(name) {
            if create {
                return Err(NftError::Exists);
            }
            return match (&mut c.base, base) {
                (Some(old), Some(new)) if old.ty == new.ty && old.hook == new.hook => {
                    old.policy = new.policy;
                    Ok(())
                }
                (_, None) => Ok(()),
                _ => Err(NftError::Busy),
            };
        }
        let handle = t.handle();
        t.chains.push(Chain {
            name: name.to_string(),
            handle,
            base,
            rules: Vec::new(),
        });
        Ok(())
    }

    /// Kernel: `nf_tables_delchain()`: refused while it has rules or is a
    /// jump target (`EBUSY`).
    pub fn delete_chain(
        &mut self,
        family: Family,
        table: &str,
        name: &str,
    ) -> Result<(), NftError> {
        let t = self.table_mut(family, table)?;
        let i = t
            .chains
            .iter()
            .position(|c| c.name == name)
            .ok_or(NftError::NoEntry)?;
        let target = super::RuleVerdict::Jump(name.to_string());
        let goto = super::RuleVerdict::Goto(name.to_string());
        let used = t.chains.iter().flat_map(|c| &c.rules).any(|r| {
            r.stmts
                .iter()
                .any(|s| matches!(s, Stmt::Verdict(v) if *v == target || *v == goto))
        });
        if used || !t.chains[i].rules.is_empty() {
            return Err(NftError::Busy);
        }
        t.chains.remove(i);
        Ok(())
    }

    /// `flush chain`: its rules go.
    pub fn flush_chain(&mut self, family: Family, table: &str, name: &str) -> Result<(), NftError> {
        self.table_mut(family, table)?
            .chain_mut(name)?
            .rules
            .clear();
        Ok(())
    }

    /// Kernel: `nf_tables_newrule()`. Returns the new rule's handle; an
    /// anonymous set in it takes a handle first, as in the kernel.
    pub fn add_rule(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        stmts: Vec<Stmt>,
        pos: Position,
    ) -> Result<u64, NftError> {
        let t = self.table_mut(family, table)?;
        check_nat(t.chain_mut(chain)?, &stmts)?;
        if family == Family::Netdev && stmts.iter().any(uses_ct) {
            // nf_ct_netns_get() of NFPROTO_NETDEV.
            return Err(NftError::Protocol);
        }
        t.check_rule(&stmts)?;
        for s in &stmts {
            if let Stmt::SetUpdate(u) = s {
                // nft_dynset_init(): a set without a size gets one.
                if let Some(set) = t.sets.iter_mut().find(|x| x.name == u.set) {
                    if set.opts.size == 0 {
                        set.opts.size = super::dynset::DEFAULT_SIZE;
                    }
                }
            }
        }
        let anon = stmts
            .iter()
            .filter(|s| match s {
                Stmt::Match(m) => matches!(
                    m.rhs,
                    super::Rhs::Set(_)
                        | super::Rhs::IfnameSet(_)
                        | super::Rhs::Vmap(MapRef::Anon(_))
                ),
                Stmt::MarkSetMap(_, MapRef::Anon(_)) => true,
                Stmt::NatMap(n) => matches!(n.map, MapRef::Anon(_)),
                _ => false,
            })
            .count();
        for _ in 0..anon {
            t.handle();
        }
        let handle = t.handle();
        let c = t.chain_mut(chain)?;
        let at = |h: u64| {
            c.rules
                .iter()
                .position(|r| r.handle == h)
                .ok_or(NftError::NoEntry)
        };
        let i = match pos {
            Position::Append(None) => c.rules.len(),
            Position::Append(Some(h)) => at(h)? + 1,
            Position::Insert(None) => 0,
            Position::Insert(Some(h)) => at(h)?,
        };
        c.rules.insert(i, Rule { handle, stmts });
        Ok(handle)
    }

    /// Kernel: `nf_tables_delrule()`.
    pub fn delete_rule(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        handle: u64,
    ) -> Result<(), NftError> {
        let c = self.table_mut(family, table)?.chain_mut(chain)?;
        let i = c
            .rules
            .iter()
            .position(|r| r.handle == handle)
            .ok_or(NftError::NoEntry)?;
        c.rules.remove(i);
        Ok(())
    }

    /// Kernel: `nf_tables_newset()`.
    pub fn add_set(
        &mut self,
        family: Family,
        table: &str,
        name: &str,
        ty: Vec<DataType>,
        interval: bool,
    ) -> Result<(), NftError> {
        self.add_set_with(family, table, name, (ty, interval), SetOpts::default())
    }

    /// Kernel: `nf_tables_newset()` with `size`, `timeout` and flags
    /// besides `interval`. An interval set with `flags dynamic` has no
    /// backend (`EOPNOTSUPP`).
    pub fn add_set_with(
        &mut self,
        family: Family,
        table: &str,
        name: &str,
        (ty, interval): (Vec<DataType>, bool),
        mut opts: SetOpts,
    ) -> Result<(), NftError> {
        opts.timeouts |= opts.timeout != 0;
        if interval && opts.dynamic {
            return Err(NftError::NotSupported);
        }
        let t = self.table_mut(family, table)?;
        if let Some(s) = t.set(name) {
            return if s.ty == ty {
                Ok(())
            } else {
                Err(NftError::Exists)
            };
        }
        let handle = t.handle();
        let updatable = Set::backend_updates(&ty, interval, &opts);
        t.sets.push(Set {
            name: name.to_string(),
            handle,
            ty,
            interval,
            elems: Vec::new(),
            map: None,
            values: Vec::new(),
            default: None,
            catchall: false,
            opts,
            live: Arc::default(),
            updatable,
        });
        Ok(())
    }

    /// Kernel: `nf_tables_newset()` of a map (`NFT_SET_MAP`, data `data`).
    pub fn add_map(
        &mut self,
        family: Family,
        table: &str,
        name: &str,
        (ty, data): (Vec<DataType>, MapData),
        interval: bool,
    ) -> Result<(), NftError> {
        if let Some(s) = self.table(family, table).and_then(|t| t.set(name)) {
            return match s.ty == ty && s.map == Some(data) {
                true => Ok(()),
                false => Err(NftError::Exists),
            };
        }
        self.add_set(family, table, name, ty, interval)?;
        let t = self.table_mut(family, table)?;
        if let Some(s) = t.sets.iter_mut().find(|s| s.name == name) {
            s.map = Some(data);
        }
        Ok(())
    }

    /// Kernel: `nf_tables_newsetelem()` of a map: each key with its value
    /// (a key present already keeps its value: `EEXIST` in the kernel
    /// only with `create`); `None` as a key is the catch-all element.
    pub fn add_map_elements(
        &mut self,
        family: Family,
        table: &str,
        set: &str,
        elems: &MapElems,
    ) -> Result<(), NftError> {
        let s = self.set_mut(family, table, set)?;
        if s.map.is_none() {
            return Err(NftError::Inval("elements with data for a set"));
        }
        let mut pairs: Vec<(Elem, MapValue)> = s.elems.drain(..).zip(s.values.drain(..)).collect();
        for (e, v) in &elems.elems {
            if !pairs.iter().any(|(k, _)| k == e) {
                pairs.push((*e, v.clone()));
            }
        }
        pairs.sort_by_key(|(e, _)| *e);
        (s.elems, s.values) = pairs.into_iter().unzip();
        if elems.default.is_some() {
            s.default.clone_from(&elems.default);
        }
        Ok(())
    }

    /// Kernel: `nf_tables_newsetelem()` of the catch-all element `*`
    /// (`NFT_SET_ELEM_CATCHALL`) in a set (a map's is its default value).
    pub fn add_catchall(&mut self, family: Family, table: &str, set: &str) -> Result<(), NftError> {
        let s = self.set_mut(family, table, set)?;
        if s.map.is_some() {
            return Err(NftError::Inval("a catch-all without data in a map"));
        }
        s.catchall = true;
        Ok(())
    }

    /// Kernel: `nf_tables_newsetelem()`. Ranges need `flags interval`.
    pub fn add_elements(
        &mut self,
        family: Family,
        table: &str,
        set: &str,
        elems: &[Elem],
    ) -> Result<(), NftError> {
        let s = self.set_mut(family, table, set)?;
        if !s.interval && elems.iter().any(|e| e.lo != e.hi) {
            return Err(NftError::Inval("set without flags interval"));
        }
        // An interval that overlaps one of the set's (nft_rbtree_insert:
        // EEXIST, "interval overlaps").
        let overlaps = |e: &Elem| {
            s.elems
                .iter()
                .any(|o| o != e && o.lo <= e.hi && e.lo <= o.hi)
        };
        if s.interval && elems.iter().any(overlaps) {
            return Err(NftError::Exists);
        }
        s.elems.extend_from_slice(elems);
        s.elems.sort_unstable();
        s.elems.dedup();
        Ok(())
    }
}

/// The kernel's checks of a base chain's family, type and hook
/// (`nft_chain_validate_hooks`, the chain types' hook masks).
fn check_base(family: Family, b: &BaseChain) -> Result<(), NftError> {
    let ok = match (family, b.ty, b.hook) {
        (Family::Ip, ChainType::Filter | ChainType::Nat, ChainHook::Output) => true,
        (Family::Ip, ChainType::Filter | ChainType::Nat, ChainHook::Postrouting) => true,
        (Family::Ip, ChainType::Route, ChainHook::Output) => true,
        (Family::Netdev, ChainType::Filter, ChainHook::Egress) => b.device.is_some(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(NftError::NotSupported)
    }
}
