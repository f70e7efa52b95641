//! Classifiers: the filters a classful qdisc consults to pick a class.
//!
//! Stands for `tcf_classify()` and the filter chain of a qdisc's block
//! (`net/sched/cls_api.c`), and the classifiers `cls_u32.c`, `cls_fw.c`
//! and `cls_matchall.c`, with tc's parsers for them (`tc/f_u32.c`,
//! `tc/f_fw.c`, `tc/f_matchall.c`).
//!
//! # Algorithm
//!
//! A chain holds *filter protos* (`tcf_proto`), each of one kind and one
//! protocol at one preference; a packet tries them in increasing
//! preference, skipping those whose protocol is neither its own nor
//! `all`. The first that matches gives a class id:
//!
//! - `u32`: each filter (a *knode*, in handle order) is a list of keys,
//!   32-bit words at byte offsets from the network header, each with a
//!   mask; the filter matches when every `(word ^ value) & mask` is 0, and
//!   gives its `flowid` (a filter without one never gives a class). A key
//!   beyond the packet ends the search of that proto.
//! - `fw`: the packet's mark equals the filter's handle (under its mask);
//!   a proto without filters takes the mark itself as the class id when
//!   its major is the qdisc's.
//! - `matchall`: every packet.
//! - `basic`: the filters in handle order; the first whose ematch
//!   sequence ([`basic`]) matches, or that has none.
//!
//! tc writes `match ip dst 10.0.0.0/8` as a key at offset 16, `ip sport`
//! in the high half of the word at 20, `ip dport` in its low half, `ip
//! protocol` at 9, `ip tos` at 1; keys at the same offset are merged, and
//! a contradiction is refused (`Illegal "match"`).

use std::fmt::Write as _;

use crate::buf::PacketBuf;

/// `ETH_P_ALL`: a proto of every protocol.
pub const ETH_P_ALL: u16 = 0x0003;
/// `ETH_P_IP`.
pub const ETH_P_IP: u16 = 0x0800;
/// The first automatic preference (`TC_H_MAJ(0xC0000000)`).
const AUTO_PREF: u32 = 0xc000;
/// The first u32 hash table of a qdisc (`0x800:`).
const FIRST_HT: u32 = 0x800;
/// The first node id in a u32 hash table.
const FIRST_NODE: u32 = 0x800;

/// One u32 key: the word at `off` from the network header, masked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct U32Key {
    /// Expected value (in network order, as a number).
    pub val: u32,
    /// Mask.
    pub mask: u32,
    /// Byte offset, a multiple of 4.
    pub off: i32,
}

/// What a filter matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// u32 keys (all must match).
    U32(Vec<U32Key>),
    /// The mark under a mask equals the filter's handle.
    Fw {
        /// Mask (`0xffffffff` by default).
        mask: u32,
    },
    /// Everything.
    All,
    /// A `basic` ematch sequence (empty: everything).
    Basic(Vec<basic::EmTerm>),
}

/// The kind of a proto.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClsKind {
    /// `u32`.
    U32,
    /// `fw`.
    Fw,
    /// `matchall`.
    Matchall,
    /// `basic`.
    Basic,
}

impl ClsKind {
    /// tc's name.
    pub fn name(self) -> &'static str {
        match self {
            ClsKind::U32 => "u32",
            ClsKind::Fw => "fw",
            ClsKind::Matchall => "matchall",
            ClsKind::Basic => "basic",
        }
    }
}

/// A filter as `tc filter add` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterSpec {
    /// `prio`/`pref` (0: automatic).
    pub pref: u32,
    /// `protocol` (`ETH_P_ALL` when absent).
    pub protocol: u16,
    /// The classifier.
    pub kind: ClsKind,
    /// `handle` (0: none given).
    pub handle: u32,
    /// What it matches.
    pub matcher: Match,
    /// `flowid`/`classid`.
    pub classid: Option<u32>,
}

/// One filter inside a proto.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Filter {
    handle: u32,
    matcher: Match,
    classid: Option<u32>,
}

/// A filter proto (`tcf_proto`): one kind, one protocol, one preference.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Tp {
    pref: u32,
    protocol: u16,
    kind: ClsKind,
    /// u32: its root hash table's id (`800`, `801`, ...).
    ht: u32,
    filters: Vec<Filter>,
}

/// Why a filter request is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Another protocol at that preference.
    #[error("Error: Protocol mismatch for filter with specified priority.\nWe have an error talking to the kernel")]
    ProtocolMismatch,
    /// Another kind at that preference.
    #[error("Error: Specified filter kind does not match existing one.\nWe have an error talking to the kernel")]
    KindMismatch,
    /// A filter of that handle exists.
    #[error("RTNETLINK answers: File exists\nWe have an error talking to the kernel")]
    Exists,
    /// No such filter or proto.
    #[error("Error: Filter with specified priority/protocol not found.\nWe have an error talking to the kernel")]
    NotFound,
    /// No qdisc of the parent's handle.
    #[error("Error: Parent Qdisc doesn't exists.\nWe have an error talking to the kernel")]
    NoParent,
    /// The qdisc is classful but takes no filters.
    #[error("Error: Class doesn't support blocks.\nWe have an error talking to the kernel")]
    NoBlock,
    /// The qdisc has no classes, hence no filters (`__tcf_qdisc_find`).
    #[error("Error: Qdisc not classful.\nWe have an error talking to the kernel")]
    NotClassful,
    /// The parent names a class the qdisc does not have.
    #[error("Error: Specified class doesn't exist.\nWe have an error talking to the kernel")]
    NoClass,
    /// The class takes no filters of its own (its `tcf_block` is none).
    #[error("RTNETLINK answers: Invalid argument\nWe have an error talking to the kernel")]
    ClassNoBlock,
}

/// The filters of one qdisc (its block's chain 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterChain {
    tps: Vec<Tp>,
    /// u32 hash tables made so far (`gen_new_htid`, never reused).
    hts: u32,
}

impl FilterChain {
    /// True when no filter is attached.
    pub fn is_empty(&self) -> bool {
        self.tps.is_empty()
    }

    /// u32 hash tables made so far in this chain's numbering.
    pub fn ht_count(&self) -> u32 {
        self.hts
    }

    /// Continues the numbering of u32 hash tables from `n` made already
    /// (the kernel's `tc_u_common`, one per qdisc, shared by the blocks of
    /// its classes: `gen_new_htid()` never reuses an id).
    pub fn ht_seed(&mut self, n: u32) {
        self.hts = self.hts.max(n);
    }

    /// Kernel: `tcf_classify()`: the class id of the first proto (by
    /// preference) whose filter matches `pkt` of `protocol`.
    pub fn classify(&self, pkt: &PacketBuf, qdisc_handle: u32) -> Option<u32> {
        let proto = pkt.meta.protocol;
        self.tps
            .iter()
            .filter(|tp| tp.protocol == proto || tp.protocol == ETH_P_ALL)
            .find_map(|tp| tp.classify(pkt, qdisc_handle))
    }

    /// Does any filter send packets to `classid` (`tcf_bind_filter`)?
    pub fn binds(&self, classid: u32) -> bool {
        self.tps
            .iter()
            .flat_map(|tp| &tp.filters)
            .any(|f| f.classid == Some(classid))
    }

    /// Kernel: `tc_new_tfilter()`: the filter added to the proto of its
    /// preference (made when new; an automatic preference is one below
    /// the first proto's from 32768 up, else 49152).
    pub fn add(&mut self, spec: &FilterSpec) -> Result<(), FilterError> {
        let pref = match spec.pref {
            // Kernel: `tcf_auto_prio()` of the proto where 0x8000 would go.
            0 => self
                .tps
                .iter()
                .find(|tp| tp.pref >= 0x8000)
                .map_or(AUTO_PREF, |tp| tp.pref - 1),
            p => p,
        };
        let i = match self.tps.iter().position(|tp| tp.pref == pref) {
            Some(i) => {
                let tp = &self.tps[i];
                if tp.protocol != spec.protocol {
                    return Err(FilterError::ProtocolMismatch);
                }
                if tp.kind != spec.kind {
                    return Err(FilterError::KindMismatch);
                }
                i
            }
            None => self.new_tp(pref, spec),
        };
        self.tps[i].insert(spec)
    }

    /// A new proto at `pref`, in preference order; its index.
    fn new_tp(&mut self, pref: u32, spec: &FilterSpec) -> usize {
        let ht = if spec.kind == ClsKind::U32 {
            self.hts += 1;
            FIRST_HT + self.hts - 1
        } else {
            0
        };
        let tp = Tp {
            pref,
            protocol: spec.protocol,
            kind: spec.kind,
            ht,
            filters: Vec::new(),
        };
        let i = self.tps.partition_point(|t| t.pref < pref);
        self.tps.insert(i, tp);
        i
    }

    /// Kernel: `tc_del_tfilter()`: the proto of `pref` (all of it, or the
    /// filter of `handle`), or every proto when `pref` is 0.
    pub fn delete(&mut self, pref: u32, handle: u32) -> Result<(), FilterError> {
        if pref == 0 {
            self.tps.clear();
            return Ok(());
        }
        let i = self
            .tps
            .iter()
            .position(|tp| tp.pref == pref)
            .ok_or(FilterError::NotFound)?;
        if handle == 0 {
            self.tps.remove(i);
            return Ok(());
        }
        let tp = &mut self.tps[i];
        let k = tp
            .filters
            .iter()
            .position(|f| f.handle == handle)
            .ok_or(FilterError::NotFound)?;
        tp.filters.remove(k);
        Ok(())
    }
}

impl Tp {
    /// Adds a filter: a u32 node gets the next free node id of the hash
    /// table (`800::800`, `800::801`, ...); others keep their handle.
    fn insert(&mut self, spec: &FilterSpec) -> Result<(), FilterError> {
        let handle = match self.kind {
            ClsKind::U32 if spec.handle == 0 => {
                let taken = |n: u32| self.filters.iter().any(|f| f.handle & 0xfff == n);
                let node = (FIRST_NODE..0xfff).find(|&n| !taken(n)).unwrap_or(0xfff);
                self.ht << 20 | node
            }
            ClsKind::Matchall if spec.handle == 0 => 1,
            ClsKind::Basic if spec.handle == 0 => (1..)
                .find(|h| self.filters.iter().all(|f| f.handle != *h))
                .unwrap_or(1),
            _ => spec.handle,
        };
        let exists = self.filters.iter().any(|f| f.handle == handle);
        if exists || (self.kind == ClsKind::Matchall && !self.filters.is_empty()) {
            return Err(FilterError::Exists);
        }
        let f = Filter {
            handle,
            matcher: spec.matcher.clone(),
            classid: spec.classid,
        };
        let at = self.filters.partition_point(|g| g.handle < handle);
        self.filters.insert(at, f);
        Ok(())
    }

    /// This proto's answer for `pkt`.
    fn classify(&self, pkt: &PacketBuf, qdisc_handle: u32) -> Option<u32> {
        match self.kind {
            ClsKind::U32 => u32_classify(&self.filters, pkt.network_header()),
            ClsKind::Fw => fw_classify(&self.filters, pkt.meta.mark, qdisc_handle),
            ClsKind::Matchall => self.filters.first().and_then(|f| f.classid),
            ClsKind::Basic => self.filters.iter().find_map(|f| match &f.matcher {
                Match::Basic(t) if t.is_empty() || basic::tree_match(t, pkt) => f.classid,
                _ => None,
            }),
        }
    }
}

/// Kernel: `u32_classify()` over one hash table of one bucket.
fn u32_classify(filters: &[Filter], net: &[u8]) -> Option<u32> {
    for f in filters {
        let Match::U32(keys) = &f.matcher else {
            continue;
        };
        let mut all = true;
        for k in keys {
            let at = usize::try_from(k.off).ok()?;
            let w = net.get(at..at + 4)?;
            let word = u32::from_be_bytes([w[0], w[1], w[2], w[3]]);
            if (word ^ k.val) & k.mask != 0 {
                all = false;
                break;
            }
        }
        if all && f.classid.is_some() {
            return f.classid;
        }
    }
    None
}

/// Kernel: `fw_classify()`.
fn fw_classify(filters: &[Filter], mark: u32, qdisc_handle: u32) -> Option<u32> {
    if filters.is_empty() {
        let major_ok = (mark ^ qdisc_handle) & 0xffff_0000 == 0;
        return major_ok.then_some(mark);
    }
    filters.iter().find_map(|f| match f.matcher {
        Match::Fw { mask } if mark & mask == f.handle => f.classid,
        _ => None,
    })
}

pub mod basic;
mod parse;
mod show;

pub use parse::parse_filter;
pub use show::FilterShow;

impl FilterChain {
    /// The text `tc filter show` prints for this chain under qdisc
    /// `parent` (see [`FilterShow`]).
    pub fn show(&self, how: &FilterShow) -> String {
        let mut o = String::new();
        for tp in &self.tps {
            if how.pref.is_some_and(|p| p != tp.pref) {
                continue;
            }
            show::tp_lines(&mut o, tp, how);
        }
        o
    }

    /// The JSON objects `tc -j filter show` prints for this chain, as
    /// text (tc repeats the `match` key, which a JSON map cannot).
    pub fn show_json(&self, how: &FilterShow) -> Vec<String> {
        let mut v = Vec::new();
        for tp in self
            .tps
            .iter()
            .filter(|tp| how.pref.is_none_or(|p| p == tp.pref))
        {
            show::tp_json(&mut v, tp, how);
        }
        v
    }
}

/// A class id as tc prints it (`1:10`, `1:`).
fn classid_text(id: u32) -> String {
    let mut s = format!("{:x}:", id >> 16);
    if id & 0xffff != 0 {
        let _ = write!(s, "{:x}", id & 0xffff);
    }
    s
}

#[cfg(test)]
mod tests;
