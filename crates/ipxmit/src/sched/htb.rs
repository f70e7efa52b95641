//! `htb`: the hierarchical token bucket.
//!
//! Stands for `net/sched/sch_htb.c` (without hysteresis, its default,
//! and without offload).
//!
//! # Algorithm
//!
//! Classes form a tree under the qdisc; a leaf holds a qdisc of its own
//! (a `pfifo` of the device's `tx_queue_len` unless one is grafted).
//! Every class has two token buckets counted in nanoseconds of sending:
//! `tokens` at its `rate`, at most `buffer` deep, and `ctokens` at its
//! `ceil`, at most `cbuffer`. At a time `now` a class *can't send* when
//! `ctokens + (now - t_c)` is negative, else *can send* when `tokens +
//! (now - t_c)` is not negative, else it *may borrow*. (So a class sends
//! while its tokens are not yet negative: the check comes before the
//! charge.)
//!
//! - **Classify.** A priority (`SO_PRIORITY`) equal to the qdisc's handle
//!   goes to the direct queue; a priority naming a leaf goes there; else
//!   the filters decide (the handle: the direct queue; a leaf: there);
//!   else the `default` class when it is a leaf; else the direct queue
//!   (`direct_qlen` packets, sent before anything else and unshaped).
//!   (Filters on inner classes are not modelled.)
//! - **Modes.** Each class keeps its mode as last worked out (`cmode`):
//!   after every charge, and at the time it changes by itself (tokens
//!   only grow with time, so *can't send* turns *may borrow* or *can
//!   send*, *may borrow* turns *can send*). Classes not in *can send*
//!   wait in one queue ordered by that time (then by arrival); a dequeue
//!   first gives every class whose time has come its mode anew, so the
//!   kept modes are those of the moment (the kernel's `wait_pq` per
//!   level and `htb_do_events()`; here one queue, all levels at once).
//! - **Activity.** A leaf with packets is *active* at its `prio`. An
//!   active class that can send sits in the *row* of its level and prio;
//!   one that may borrow sits in its parent's *feed* for that prio, and
//!   the parent, active in turn at the prios of its feeds, goes the same
//!   way up; one that can't send goes nowhere (nor, through it, the
//!   classes below). A mode change or a leaf filling or emptying moves
//!   the class out and back in (`htb_activate_prios()`,
//!   `htb_deactivate_prios()`). Rows and feeds are sorted by class id,
//!   each with a pointer to the class whose turn it is.
//! - **Dequeue.** The rows from level 0 up, each from the lowest prio:
//!   the first that yields a packet wins. In a row the leaf is found by
//!   following turns down: the row's class, and while it is an inner
//!   class, the class whose turn it is in its feed (a feed whose pointer
//!   ran past its end starts again at its first class and passes its
//!   parent's turn on). A leaf is served at the level of the row (its
//!   own tokens at 0, else those of the ancestor it borrows from), keeps
//!   the turn until its deficit for that level goes negative, then gets
//!   a `quantum` of bytes more and passes the turn in its parent's feed
//!   (in the row at level 0) (quantum `rate / r2q`, 1000 to 200000 bytes,
//!   unless given). A leaf found empty leaves the row; one whose qdisc
//!   gives nothing (a throttled child) passes its turn, until the turns
//!   come round to the first leaf tried. A leaf emptied by the packet
//!   leaves its row or feed.
//! - **Charge.** The packet's time at `ceil` is taken from the `ctokens`
//!   of the leaf and of every ancestor, and its time at `rate` from the
//!   `tokens` of those at or above the level it was sent at (the class at
//!   that level counts a `lend`, those below a `borrow`, and only gain
//!   the elapsed time). Buckets keep at most a minute of debt. Each class
//!   on the way then gets its mode anew (and its time in the wait queue);
//!   one that enters *can't send* counts an overlimit, as does the qdisc.
//! - When no leaf may send, the watchdog is set for the earliest time an
//!   active class changes mode (at most 5 s away), or a throttled leaf
//!   qdisc's time if earlier.
//!
//! A dequeue costs the rows and feeds on one path down the tree, not a
//! walk over every class; rows, feeds and the wait queue are sorted
//! vectors that stop allocating once they have held their most classes.
//!
//! Unlike the kernel: a waiting class's time is renewed at every charge
//! (the kernel keeps the older, earlier time while the mode stays, and
//! wakes once more for nothing); a class that becomes inner, or a reset,
//! keeps its mode (the kernel says *can send* until the next charge).
//! As in the kernel, a leaf whose `prio` changes while active stays in
//! the row of its old prio until it empties.

use std::collections::VecDeque;
use std::fmt::Write as _;

use super::class::{xmitsize, ClassError, ClassShow, ClassSpec, HtbClassConfig};
use super::clhash::ClassHash;
use super::cls::FilterChain;
use super::fifo::Pfifo;
use super::rate::{LinkLayer, RateCfg};
use super::{Dequeued, NetXmit, OptValue, Qdisc, QdiscStats, ToFree};
use crate::buf::PacketBuf;
use crate::stats::DropReason;
use crate::time::Instant;
use crate::units::{format_rate, format_size};
use ring::{Ring, WaitQueue};

/// `TC_HTB_MAXDEPTH`.
pub const MAX_DEPTH: u8 = 8;
/// `TC_HTB_NUMPRIO`.
pub const NUM_PRIO: u8 = 8;
/// `mbuffer`: tokens gain at most a minute, and keep at most a minute of debt.
const MBUFFER_NS: i64 = 60_000_000_000;
/// The farthest the watchdog is set (`q->now + 5 * NSEC_PER_SEC`).
const MAX_WAIT_NS: i64 = 5_000_000_000;
/// Nanoseconds in a psched tick (`PSCHED_SHIFT` 6).
const TICK_NS: i64 = 64;

/// A class's mode (`enum htb_cmode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    CantSend,
    MayBorrow,
    CanSend,
}

/// One class.
#[derive(Debug)]
struct Class {
    classid: u32,
    parent: Option<usize>,
    children: u32,
    level: u8,
    rate: RateCfg,
    ceil: RateCfg,
    buffer: i64,
    cbuffer: i64,
    tokens: i64,
    ctokens: i64,
    t_c: Instant,
    /// Kept while the class is inner, for when it is a leaf again.
    prio: u8,
    quantum: i32,
    deficit: [i32; MAX_DEPTH as usize],
    leaf: Option<Box<dyn Qdisc>>,
    /// The grafted leaf qdisc's handle (0: the default `pfifo`).
    leaf_handle: u32,
    /// The mode as last worked out (`cmode`): at a change of tokens or
    /// at the time in the wait queue.
    cmode: Mode,
    /// The prios at which the class is active (`prio_activity`): a
    /// backlogged leaf at its prio, an inner class at those of its feeds.
    activity: u8,
    /// Its key in the wait queue, when its mode is not `CanSend`.
    pq: Option<(u64, u64)>,
    /// Per prio, the active children that may borrow from it (`feed`).
    feed: [Ring; NUM_PRIO as usize],
    stats: QdiscStats,
    lends: u32,
    borrows: u32,
    /// The class's own filters (its block: `tc filter add ... parent
    /// 1:1`), which classify what reaches it as an inner class.
    filters: FilterChain,
}

/// The `htb` qdisc. See the module documentation.
#[derive(Debug)]
pub struct Htb {
    handle: u32,
    defcls: u32,
    r2q: u32,
    direct_qlen: u32,
    direct: VecDeque<PacketBuf>,
    direct_pkts: u32,
    slots: Vec<Option<Class>>,
    order: ClassHash,
    /// `(classid, slot)` of every class, by class id (`htb_find()`).
    index: Vec<(u32, usize)>,
    /// The slot of the `default` class when it is a leaf.
    default_leaf: Option<usize>,
    txqueuelen: u32,
    /// Per level and prio, the active classes that can send (`row`).
    rows: [[Ring; NUM_PRIO as usize]; MAX_DEPTH as usize],
    /// Per level, the prios whose rows are not empty (`row_mask`).
    row_mask: [u8; MAX_DEPTH as usize],
    /// The classes that can't send or may borrow, by their time of change.
    wait: WaitQueue,
    /// The qdisc's filters.
    filters: FilterChain,
    /// u32 hash tables made in the qdisc's and its classes' filters
    /// (numbered together, as the kernel's `tc_u_common` of the qdisc).
    u32_hts: u32,
    stats: QdiscStats,
}

impl Htb {
    /// Kernel: `htb_init()`: unclassified traffic to class `defcls` (a
    /// minor), quanta of `rate / r2q` (`r2q` at least 1), a direct queue
    /// of `direct_qlen` packets; leaves get `pfifo`s of `txqueuelen`.
    pub fn new(defcls: u32, r2q: u32, direct_qlen: u32, txqueuelen: u32) -> Htb {
        Htb {
            handle: 0,
            defcls,
            r2q: r2q.max(1),
            direct_qlen,
            direct: VecDeque::with_capacity(direct_qlen.min(1024) as usize),
            direct_pkts: 0,
            slots: Vec::new(),
            order: ClassHash::new(),
            index: Vec::new(),
            default_leaf: None,
            txqueuelen,
            rows: std::array::from_fn(|_| std::array::from_fn(|_| Ring::default())),
            row_mask: [0; MAX_DEPTH as usize],
            wait: WaitQueue::default(),
            filters: FilterChain::default(),
            u32_hts: 0,
            stats: QdiscStats::default(),
        }
    }

    /// Takes in the u32 hash tables every filter chain made since.
    fn fold_hts(&mut self) {
        let classes = self.slots.iter().flatten().map(|c| c.filters.ht_count());
        let made = classes.chain([self.filters.ht_count()]).max().unwrap_or(0);
        self.u32_hts = self.u32_hts.max(made);
    }

    fn find(&self, classid: u32) -> Option<usize> {
        let i = self.index.binary_search_by_key(&classid, |&(id, _)| id);
        i.ok().map(|i| self.index[i].1)
    }

    fn class(&self, i: usize) -> &Class {
        self.slots[i].as_ref().expect("a live class index")
    }

    fn class_mut(&mut self, i: usize) -> &mut Class {
        self.slots[i].as_mut().expect("a live class index")
    }

    fn live(&self) -> impl Iterator<Item = (usize, &Class)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
    }

    /// A new leaf's default qdisc (`qdisc_create_dflt(pfifo)`).
    fn default_leaf(&self) -> Box<dyn Qdisc> {
        Box::new(Pfifo::new(self.txqueuelen))
    }

    /// Kernel: the leaf part of `htb_change_class()`: the quantum from the
    /// rate (clamped, with tc's warning) unless given, the prio at most 7.
    fn leaf_params(&self, cfg: &HtbClassConfig, classid: u32) -> (u8, i32, Option<String>) {
        let q = (cfg.rate.bytes_per_sec() / u64::from(self.r2q)).min(i32::MAX as u64) as i32;
        let (quantum, warn) = match cfg.quantum {
            0 if q < 1000 => (1000, Some("small")),
            0 if q > 200_000 => (200_000, Some("big")),
            0 => (q, None),
            given => (given as i32, None),
        };
        let warning = warn.map(|w| {
            format!("Warning: sch_htb: quantum of class {classid:X} is {w}. Consider r2q change.")
        });
        (
            cfg.prio.min(u32::from(NUM_PRIO) - 1) as u8,
            quantum,
            warning,
        )
    }

    /// Kernel: `htb_change_class()` creating `classid` under `parent` (a
    /// class, or none: a top class; an unknown parent makes one too).
    fn add_class(
        &mut self,
        classid: u32,
        parent: u32,
        cfg: &HtbClassConfig,
        now: Instant,
        to_free: &mut ToFree,
    ) -> Result<Option<String>, ClassError> {
        if classid == 0
            || (classid ^ self.handle) & 0xffff_0000 != 0
            || self.find(classid).is_some()
        {
            return Err(ClassError::Invalid);
        }
        let parent = self.find(parent);
        if let Some(p) = parent {
            let pp = self.class(p).parent;
            if pp.is_some_and(|pp| self.class(pp).level < 2) {
                return Err(ClassError::Refused("sch_htb: tree is too deep"));
            }
            self.make_inner(p, to_free);
        }
        let (prio, quantum, warning) = self.leaf_params(cfg, classid);
        let (buffer, cbuffer) = (ticks_ns(cfg.buffer_ticks), ticks_ns(cfg.cbuffer_ticks));
        let class = Class {
            classid,
            parent,
            children: 0,
            level: 0,
            rate: cfg.rate,
            ceil: cfg.ceil,
            buffer,
            cbuffer,
            tokens: buffer,
            ctokens: cbuffer,
            t_c: now,
            prio,
            quantum,
            deficit: [0; MAX_DEPTH as usize],
            leaf: Some(self.default_leaf()),
            leaf_handle: 0,
            cmode: Mode::CanSend,
            activity: 0,
            pq: None,
            feed: Default::default(),
            stats: QdiscStats::default(),
            lends: 0,
            borrows: 0,
            filters: FilterChain::default(),
        };
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(i) => {
                self.slots[i] = Some(class);
                i
            }
            None => {
                self.slots.push(Some(class));
                self.slots.len() - 1
            }
        };
        let at = self.index.partition_point(|&(id, _)| id < classid);
        self.index.insert(at, (classid, slot));
        self.order.insert(classid);
        self.find_default_leaf();
        Ok(warning)
    }

    /// Turns leaf `p` into an inner class: its queue purged (counted
    /// here), its qdisc gone, its level one below its parent's.
    fn make_inner(&mut self, p: usize, to_free: &mut ToFree) {
        let level = match self.class(p).parent {
            Some(pp) => self.class(pp).level - 1,
            None => MAX_DEPTH - 1,
        };
        if self.class(p).leaf.is_some() {
            self.deactivate(p);
        }
        let c = self.slots[p].as_mut().expect("a live class index");
        c.children += 1;
        if let Some(mut q) = c.leaf.take() {
            let (qlen, backlog) = (q.stats().qlen, q.stats().backlog);
            q.reset(to_free);
            self.stats.qlen -= qlen;
            self.stats.backlog -= backlog;
            let c = self.class_mut(p);
            c.level = level;
            c.leaf_handle = 0;
            c.feed.iter_mut().for_each(Ring::clear);
        }
    }

    /// Kernel: `htb_change_class()` on an existing class: rates and
    /// bucket depths (tokens kept), and for a leaf prio and quantum.
    fn change_class(&mut self, i: usize, cfg: &HtbClassConfig) -> Option<String> {
        let classid = self.class(i).classid;
        let (prio, quantum, warning) = self.leaf_params(cfg, classid);
        let c = self.class_mut(i);
        c.rate = cfg.rate;
        c.ceil = cfg.ceil;
        c.buffer = ticks_ns(cfg.buffer_ticks);
        c.cbuffer = ticks_ns(cfg.cbuffer_ticks);
        if c.level != 0 {
            return None;
        }
        c.prio = prio;
        c.quantum = quantum;
        warning
    }

    /// Kernel: `htb_delete()`: a class without children; its packets
    /// dropped; a parent left without children is a leaf again (new
    /// `pfifo`, full buckets).
    fn delete_class(
        &mut self,
        i: usize,
        now: Instant,
        to_free: &mut ToFree,
    ) -> Result<(), ClassError> {
        if self.class(i).children > 0 || self.bound(self.class(i).classid) {
            return Err(ClassError::Refused("HTB class in use"));
        }
        self.fold_hts();
        self.deactivate(i);
        if let Some(key) = self.class_mut(i).pq.take() {
            self.wait.remove(key);
        }
        let mut c = self.slots[i].take().expect("a live class index");
        self.order.remove(c.classid);
        self.index.retain(|&(id, _)| id != c.classid);
        if let Some(q) = &mut c.leaf {
            let (qlen, backlog) = (q.stats().qlen, q.stats().backlog);
            q.reset(to_free);
            self.stats.qlen -= qlen;
            self.stats.backlog -= backlog;
        }
        if let Some(p) = c.parent {
            let leaf = self.default_leaf();
            let pc = self.slots[p].as_mut().expect("a live class index");
            pc.children -= 1;
            if pc.children == 0 {
                pc.level = 0;
                pc.leaf = Some(leaf);
                pc.tokens = pc.buffer;
                pc.ctokens = pc.cbuffer;
                pc.t_c = now;
                pc.cmode = Mode::CanSend;
                pc.feed.iter_mut().for_each(Ring::clear);
                if let Some(key) = pc.pq.take() {
                    self.wait.remove(key);
                }
            }
        }
        Ok(())
    }

    /// Does a filter anywhere in the qdisc (its own block or a class's)
    /// send packets to `classid` (`qdisc_class_in_use()`)?
    fn bound(&self, classid: u32) -> bool {
        self.filters.binds(classid)
            || self
                .slots
                .iter()
                .flatten()
                .any(|c| c.filters.binds(classid))
    }

    /// Kernel: `htb_classify()`: the leaf, or `None` for the direct
    /// queue. The priority first (the handle itself: direct; a leaf: it;
    /// an inner class: its filters start), else the qdisc's filters; a
    /// filter's answer is the handle (direct), a leaf (it), or an inner
    /// class, whose own filters go on; when they find nothing, the
    /// default class if it is a leaf, else the direct queue.
    fn classify(&self, pkt: &PacketBuf) -> Option<usize> {
        let priority = pkt.meta.priority;
        if priority == self.handle {
            return None;
        }
        let mut chain = &self.filters;
        // Only a class of this qdisc (`htb_find()` checks the major first).
        let own = (priority ^ self.handle) & 0xffff_0000 == 0;
        if let Some(i) = own.then(|| self.find(priority)).flatten() {
            if self.class(i).leaf.is_some() {
                return Some(i);
            }
            chain = &self.class(i).filters;
        }
        // Each step goes down a level; the depth bounds the walk.
        for _ in 0..=MAX_DEPTH {
            let Some(c) = (!chain.is_empty())
                .then(|| chain.classify(pkt, self.handle))
                .flatten()
            else {
                break;
            };
            if c == self.handle {
                return None;
            }
            let Some(i) = self.find(c) else { break };
            if self.class(i).leaf.is_some() {
                return Some(i);
            }
            chain = &self.class(i).filters;
        }
        self.default_leaf
    }

    /// The slot of the `default` class when it is a leaf, worked out
    /// again after every change of the tree or of the handle.
    fn find_default_leaf(&mut self) {
        let def = (self.handle & 0xffff_0000) | (self.defcls & 0xffff);
        self.default_leaf = self.find(def).filter(|&i| self.class(i).leaf.is_some());
    }

    /// Kernel: `htb_class_mode()` of class `i` at `now`, and the time to
    /// its next change of mode.
    fn mode(&self, i: usize, now: Instant) -> (Mode, i64) {
        let c = self.class(i);
        let diff = elapsed(c.t_c, now);
        let ctoks = c.ctokens + diff;
        if ctoks < 0 {
            return (Mode::CantSend, -ctoks);
        }
        let toks = c.tokens + diff;
        if toks >= 0 {
            (Mode::CanSend, 0)
        } else {
            (Mode::MayBorrow, -toks)
        }
    }
}

/// The earlier of two optional times.
fn min_instant(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Psched ticks in nanoseconds (`PSCHED_TICKS2NS`).
fn ticks_ns(ticks: u32) -> i64 {
    i64::from(ticks) * TICK_NS
}

/// `min(now - t_c, mbuffer)` in nanoseconds.
fn elapsed(t_c: Instant, now: Instant) -> i64 {
    (now.as_nanos().saturating_sub(t_c.as_nanos()) as i64).min(MBUFFER_NS)
}

/// C's `%#x`: `0`, or `0x` and lower-case hex digits.
fn c_hash_x(v: u32) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("{v:#x}")
    }
}

/// A class id as tc prints it: `1:10`, `1:` for minor 0.
fn class_id(id: u32) -> String {
    super::api::Handle(id).to_string()
}

impl Htb {
    /// Kernel: `htb_enqueue()` of a packet classified to leaf `i`: into
    /// its qdisc (the totals kept), the leaf active when it holds packets.
    fn enqueue_leaf(
        &mut self,
        i: usize,
        pkt: PacketBuf,
        now: Instant,
        to_free: &mut ToFree,
    ) -> NetXmit {
        let c = self.slots[i].as_mut().expect("a live class index");
        let q = c.leaf.as_mut().expect("classify gives leaves");
        let before = *q.stats();
        let r = q.enqueue(pkt, now, to_free);
        let after = *q.stats();
        super::carry(&mut self.stats, &before, &after);
        c.stats.drops += after.drops.saturating_sub(before.drops);
        if c.activity == 0 && after.qlen > 0 {
            self.activate(i);
        }
        r
    }

    /// Kernel: `htb_graft()` on leaf `i`: the old qdisc's packets purged
    /// (and out of the totals), `new` in its place.
    fn graft_leaf(&mut self, i: usize, new: Box<dyn Qdisc>, handle: u32, to_free: &mut ToFree) {
        let c = self.slots[i].as_mut().expect("a live class index");
        if let Some(old) = c.leaf.as_mut() {
            super::on_child(&mut self.stats, &mut **old, |q| q.reset(to_free));
        }
        c.leaf = Some(new);
        c.leaf_handle = handle;
        self.deactivate(i);
    }

    /// tc's `htb_print_opt()` for a class.
    fn print_class(&self, c: &Class, details: bool) -> String {
        let mut o = match c.parent {
            Some(p) => format!("parent {} ", class_id(self.class(p).classid)),
            None => "root ".to_owned(),
        };
        if c.leaf_handle != 0 {
            let _ = write!(o, "leaf {} ", class_id(c.leaf_handle));
        }
        if c.level == 0 {
            let _ = write!(o, "prio {} ", c.prio);
            if details {
                let _ = write!(o, "quantum {} ", c.quantum);
            }
        }
        let (r, cr) = (c.rate.bytes_per_sec(), c.ceil.bytes_per_sec());
        let _ = write!(o, "rate {} ", format_rate(r * 8));
        if c.rate.overhead() != 0 {
            let _ = write!(o, "overhead {} ", c.rate.overhead());
        }
        let _ = write!(o, "ceil {} ", format_rate(cr * 8));
        if c.rate.linklayer() != LinkLayer::Ethernet || details {
            let _ = write!(o, "linklayer {} ", c.rate.linklayer());
        }
        let burst = |rate, ns: i64| format_size(u64::from(xmitsize(rate, (ns / TICK_NS) as u32)));
        if details {
            let _ = write!(
                o,
                "burst {}/1 mpu {}b cburst {}/1 mpu {}b level {} ",
                burst(r, c.buffer),
                c.rate.mpu(),
                burst(cr, c.cbuffer),
                c.ceil.mpu(),
                c.level
            );
        } else {
            let _ = write!(
                o,
                "burst {} cburst {} ",
                burst(r, c.buffer),
                burst(cr, c.cbuffer)
            );
        }
        o
    }

    /// A class's `tc -s` lines: its counters (the leaf qdisc's backlog)
    /// and `htb_print_xstats()`.
    fn class_stats(&self, c: &Class) -> (QdiscStats, String) {
        let mut s = c.stats;
        if let Some(q) = &c.leaf {
            s.qlen = q.stats().qlen;
            s.backlog = q.stats().backlog;
        }
        let clamp = |ns: i64| (ns / TICK_NS).clamp(i64::from(i32::MIN), i64::from(i32::MAX));
        let x = format!(
            " lended: {} borrowed: {} giants: 0\n tokens: {} ctokens: {}\n",
            c.lends,
            c.borrows,
            clamp(c.tokens),
            clamp(c.ctokens)
        );
        (s, x)
    }
}

impl Qdisc for Htb {
    fn kind(&self) -> &'static str {
        "htb"
    }

    /// Kernel: `htb_enqueue()`.
    fn enqueue(&mut self, mut pkt: PacketBuf, now: Instant, to_free: &mut ToFree) -> NetXmit {
        let leaf = self.classify(&pkt);
        if pkt.meta.class == 0 {
            pkt.meta.class = leaf.map_or(self.handle, |i| self.class(i).classid);
        }
        if let Some(i) = leaf {
            return self.enqueue_leaf(i, pkt, now, to_free);
        }
        if self.direct.len() < self.direct_qlen as usize {
            self.stats.queued(pkt.len());
            self.direct.push_back(pkt);
            self.direct_pkts += 1;
            return NetXmit::Success;
        }
        self.stats.drops += 1;
        to_free.push(pkt, DropReason::QdiscDrop);
        NetXmit::Drop
    }

    /// Kernel: `htb_dequeue()`: the direct queue first, then a leaf.
    fn dequeue(&mut self, now: Instant) -> Dequeued {
        if let Some(p) = self.direct.pop_front() {
            self.stats.unqueued(p.len());
            self.stats.sent(p.len());
            return Dequeued::Packet(p);
        }
        if self.stats.qlen == 0 {
            return Dequeued::Empty;
        }
        self.dequeue_classes(now)
    }

    fn peek(&self) -> Option<&PacketBuf> {
        self.direct.front().or_else(|| {
            self.live()
                .find_map(|(_, c)| c.leaf.as_ref().and_then(|q| q.peek()))
        })
    }

    /// Kernel: `htb_reset()`.
    fn reset(&mut self, to_free: &mut ToFree) {
        for p in self.direct.drain(..) {
            to_free.push(p, DropReason::QueuePurge);
        }
        for c in self.slots.iter_mut().flatten() {
            if let Some(q) = &mut c.leaf {
                q.reset(to_free);
            }
            c.activity = 0;
            c.feed.iter_mut().for_each(Ring::clear);
        }
        self.rows.iter_mut().flatten().for_each(Ring::clear);
        self.row_mask = [0; MAX_DEPTH as usize];
        self.stats.backlog = 0;
        self.stats.qlen = 0;
    }

    fn stats(&self) -> &QdiscStats {
        &self.stats
    }

    fn stats_mut(&mut self) -> &mut QdiscStats {
        &mut self.stats
    }

    fn set_handle(&mut self, handle: u32) {
        self.handle = handle;
        self.find_default_leaf();
    }

    /// tc's `htb_print_opt()`: `r2q 10 default 0 direct_packets_stat 0
    /// direct_qlen 1000`.
    fn params(&self) -> String {
        self.params_with("")
    }

    /// With `-d`: ` ver 3.17` before `direct_qlen`.
    fn params_details(&self) -> String {
        self.params_with(" ver 3.17")
    }

    fn options(&self) -> Vec<(&'static str, OptValue)> {
        vec![
            ("r2q", OptValue::Num(u64::from(self.r2q))),
            ("default", OptValue::Str(c_hash_x(self.defcls))),
            (
                "direct_packets_stat",
                OptValue::Num(u64::from(self.direct_pkts)),
            ),
            ("direct_qlen", OptValue::Num(u64::from(self.direct_qlen))),
        ]
    }

    fn classes(&self) -> Vec<u32> {
        self.order.iter().map(|id| id & 0xffff).collect()
    }

    fn classful(&self) -> bool {
        true
    }

    fn class_find(&self, classid: u32) -> bool {
        self.find(classid).is_some()
    }

    /// Kernel: `htb_change_class()`.
    fn class_change(
        &mut self,
        parent: u32,
        classid: u32,
        spec: &ClassSpec,
        now: Instant,
        to_free: &mut ToFree,
    ) -> Result<Option<String>, ClassError> {
        let ClassSpec::Htb(cfg) = spec;
        match self.find(classid) {
            Some(i) => Ok(self.change_class(i, cfg)),
            None => self.add_class(classid, parent, cfg, now, to_free),
        }
    }

    fn class_delete(
        &mut self,
        classid: u32,
        now: Instant,
        to_free: &mut ToFree,
    ) -> Result<(), ClassError> {
        let i = self.find(classid).ok_or(ClassError::NotFound)?;
        self.delete_class(i, now, to_free)?;
        self.find_default_leaf();
        Ok(())
    }

    fn class_show(&self, classid: u32, details: bool) -> Option<ClassShow> {
        let c = self.class(self.find(classid)?);
        let (stats, xstats) = self.class_stats(c);
        Some(ClassShow {
            text: self.print_class(c, details),
            stats,
            xstats: Some(xstats),
        })
    }

    fn graft(
        &mut self,
        classid: u32,
        new: Option<(u32, Box<dyn Qdisc>)>,
        to_free: &mut ToFree,
    ) -> Result<(), ClassError> {
        let i = self.find(classid).ok_or(ClassError::NotFound)?;
        if self.class(i).level != 0 {
            return Err(ClassError::Invalid);
        }
        let (handle, new) = new.unwrap_or_else(|| (0, self.default_leaf()));
        self.graft_leaf(i, new, handle, to_free);
        Ok(())
    }

    fn leaf_mut(&mut self, classid: u32) -> Option<(u32, &mut dyn Qdisc)> {
        let i = self.find(classid)?;
        let c = self.slots[i].as_mut()?;
        let h = c.leaf_handle;
        c.leaf.as_mut().map(|q| (h, &mut **q as &mut dyn Qdisc))
    }

    fn class_of(&self, pkt: &PacketBuf) -> Option<u32> {
        Some(self.classify(pkt).map_or(0, |i| self.class(i).classid))
    }

    fn children(&self) -> Vec<(u32, u32, &dyn Qdisc)> {
        self.live()
            .filter(|(_, c)| c.leaf_handle != 0)
            .filter_map(|(_, c)| Some((c.classid, c.leaf_handle, &**c.leaf.as_ref()?)))
            .collect()
    }

    fn children_mut(&mut self) -> Vec<(u32, &mut dyn Qdisc)> {
        self.slots
            .iter_mut()
            .flatten()
            .filter(|c| c.leaf_handle != 0)
            .filter_map(|c| {
                let q: &mut dyn Qdisc = &mut **c.leaf.as_mut()?;
                Some((c.leaf_handle, q))
            })
            .collect()
    }

    fn filters(&self) -> Option<&FilterChain> {
        Some(&self.filters)
    }

    fn filters_mut(&mut self) -> Option<&mut FilterChain> {
        self.fold_hts();
        self.filters.ht_seed(self.u32_hts);
        Some(&mut self.filters)
    }

    fn class_filters(&self, classid: u32) -> Option<&FilterChain> {
        self.find(classid).map(|i| &self.class(i).filters)
    }

    fn class_filters_mut(&mut self, classid: u32) -> Option<&mut FilterChain> {
        let i = self.find(classid)?;
        self.fold_hts();
        let n = self.u32_hts;
        let chain = &mut self.class_mut(i).filters;
        chain.ht_seed(n);
        Some(chain)
    }

    fn take_dropped(&mut self, to_free: &mut ToFree) {
        for c in self.slots.iter_mut().flatten() {
            if let Some(q) = &mut c.leaf {
                q.take_dropped(to_free);
            }
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl Htb {
    fn params_with(&self, ver: &str) -> String {
        format!(
            "r2q {} default {} direct_packets_stat {}{ver} direct_qlen {}",
            self.r2q,
            c_hash_x(self.defcls),
            self.direct_pkts,
            self.direct_qlen
        )
    }
}

mod dequeue;
mod ring;
#[cfg(test)]
mod tests;
