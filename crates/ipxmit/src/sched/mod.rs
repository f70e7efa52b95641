//! Queueing disciplines and the qdisc run loop.
//!
//! Stands for `net/sched/sch_generic.c` and the `Qdisc_ops` of `net/sched/sch_*.c`.
//! A [`Qdisc`] only queues and chooses: `enqueue` takes a packet (or drops it,
//! counted under a reason), `dequeue` hands the next one out (or says it is empty, or
//! throttled until a time). Everything generic — the bypass of an empty qdisc
//! (`TCQ_F_CAN_BYPASS`), the "running" owner (`qdisc_run_begin/end`), the run loop
//! with its quota (`__qdisc_run`, `qdisc_restart`), requeueing a packet the driver
//! refused (`dev_requeue_skb`, `q->gso_skb`) and the `requeues` counter — lives in
//! [`run`] and [`crate::dev::queue`], around the qdisc, as in the kernel.
//!
//! One file per qdisc, each opening with its algorithm.

use std::fmt;

use crate::buf::PacketBuf;
use crate::stats::DropReason;
use crate::time::Instant;

pub mod api;
pub mod class;
pub mod clhash;
pub mod cls;
pub mod codel;
pub mod est;
pub mod fifo;
pub mod fq;
pub mod fq_codel;
pub mod graft;
pub mod htb;
pub mod netem;
pub mod noqueue;
pub mod pfifo_fast;
pub mod prio;
pub mod rate;
pub mod red;
pub mod run;
pub mod sfq;
pub mod spec;
pub mod tbf;

pub use api::{QdiscOp, TcError};
pub use class::{ClassError, ClassOp, ClassRequest, ClassShow, ClassSpec, HtbClassConfig};
pub use fifo::{Bfifo, Pfifo};
pub use htb::Htb;
pub use noqueue::Noqueue;
pub use pfifo_fast::PfifoFast;
pub use rate::{LinkLayer, RateCfg};
pub use spec::{QdiscSpec, SpecError};
pub use tbf::{Tbf, TbfConfig, TbfError};

/// Result of an enqueue (the kernel's `NET_XMIT_*` codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetXmit {
    /// `NET_XMIT_SUCCESS`: queued.
    Success,
    /// `NET_XMIT_DROP`: the packet was dropped.
    Drop,
    /// `NET_XMIT_CN`: queued (or another packet dropped) but the queue is congested.
    Congested,
}

/// What [`Qdisc::dequeue`] gives.
#[derive(Debug)]
pub enum Dequeued {
    /// The next packet.
    Packet(PacketBuf),
    /// Nothing queued.
    Empty,
    /// Packets are queued but none may leave before this time (shapers); the
    /// caller arms a timer (`qdisc_watchdog_schedule`).
    Throttled(Instant),
}

/// Packets a qdisc dropped during an operation, with reasons (the kernel's
/// `to_free` list). The caller counts and frees them after releasing locks.
#[derive(Debug, Default)]
pub struct ToFree {
    pkts: Vec<(PacketBuf, DropReason)>,
}

impl ToFree {
    /// An empty list with room for `n` packets.
    pub fn with_capacity(n: usize) -> ToFree {
        ToFree {
            pkts: Vec::with_capacity(n),
        }
    }

    /// Adds a dropped packet.
    pub fn push(&mut self, pkt: PacketBuf, reason: DropReason) {
        self.pkts.push((pkt, reason));
    }

    /// Number of packets held.
    pub fn len(&self) -> usize {
        self.pkts.len()
    }

    /// True when no packet is held.
    pub fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }

    /// Removes and yields the dropped packets.
    pub fn drain(&mut self) -> impl Iterator<Item = (PacketBuf, DropReason)> + '_ {
        self.pkts.drain(..)
    }
}

/// Statistics of one qdisc, as `tc -s qdisc show` prints them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QdiscStats {
    /// Bytes sent (dequeued towards the driver, or bypassed).
    pub bytes: u64,
    /// Packets sent.
    pub packets: u64,
    /// Packets dropped.
    pub drops: u64,
    /// Times the qdisc was over its limit (shapers) or refused to dequeue.
    pub overlimits: u64,
    /// Packets the driver refused that were put back.
    pub requeues: u64,
    /// Bytes queued.
    pub backlog: u64,
    /// Packets queued.
    pub qlen: u64,
}

impl QdiscStats {
    /// Counts a packet that left the qdisc (`qdisc_bstats_update`).
    #[inline]
    pub fn sent(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
        self.packets += 1;
    }

    /// Counts a packet entering the queue (`qdisc_qstats_backlog_inc`, `qlen++`).
    #[inline]
    pub fn queued(&mut self, bytes: usize) {
        self.backlog += bytes as u64;
        self.qlen += 1;
    }

    /// Counts a packet leaving the queue (dequeued or dropped from inside it).
    #[inline]
    pub fn unqueued(&mut self, bytes: usize) {
        self.backlog -= bytes as u64;
        self.qlen -= 1;
    }
}

impl fmt::Display for QdiscStats {
    /// The two statistics lines of `tc -s qdisc show`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            " Sent {} bytes {} pkt (dropped {}, overlimits {} requeues {}) ",
            self.bytes, self.packets, self.drops, self.overlimits, self.requeues
        )?;
        write!(
            f,
            " backlog {}b {}p requeues {}",
            self.backlog, self.qlen, self.requeues
        )
    }
}

/// A queueing discipline (the kernel's `struct Qdisc_ops`).
///
/// A qdisc is used under its transmit queue's lock; it needs no locking itself.
pub trait Qdisc: Send + fmt::Debug {
    /// The tc name (`pfifo_fast`, `tbf`, ...).
    fn kind(&self) -> &'static str;

    /// Queues `pkt` or drops it (into `to_free`, counted in `stats().drops`).
    fn enqueue(&mut self, pkt: PacketBuf, now: Instant, to_free: &mut ToFree) -> NetXmit;

    /// Takes the next packet to send. Implementations count it with
    /// [`QdiscStats::sent`] and [`QdiscStats::unqueued`].
    fn dequeue(&mut self, now: Instant) -> Dequeued;

    /// The packet `dequeue` would return next, without removing it.
    fn peek(&self) -> Option<&PacketBuf>;

    /// Drops every queued packet into `to_free` (`qdisc_reset`).
    fn reset(&mut self, to_free: &mut ToFree);

    /// Statistics.
    fn stats(&self) -> &QdiscStats;

    /// Statistics, writable (the generic layer counts bypassed packets and requeues).
    fn stats_mut(&mut self) -> &mut QdiscStats;

    /// `TCQ_F_CAN_BYPASS`: when empty, a packet may go straight to the driver.
    fn can_bypass(&self) -> bool {
        false
    }

    /// True for `noqueue`: no queue at all, packets go straight to the driver
    /// (the kernel's `q->enqueue == NULL`).
    fn is_noqueue(&self) -> bool {
        false
    }

    /// The parameters as `tc qdisc show` prints them after the kind
    /// (e.g. `bands 3 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1`).
    fn params(&self) -> String;

    /// What `tc -s qdisc show` adds after the parameters (`sfq`'s per-flow
    /// RED counters), if anything.
    fn params_stats(&self) -> String {
        String::new()
    }

    /// The parameters as `tc -d qdisc show` prints them.
    fn params_details(&self) -> String {
        self.params()
    }

    /// The parameters as `tc -j qdisc show` gives them (`"options"`), in
    /// tc's order.
    fn options(&self) -> Vec<(&'static str, OptValue)>;

    /// The qdisc as its own type, for a change of its parameters in place
    /// ([`QdiscSpec::change`]).
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;

    /// Hands over the packets a dequeue dropped (an AQM's), with their
    /// reasons, for the generic layer to count and free.
    fn take_dropped(&mut self, _to_free: &mut ToFree) {}

    /// Tells the qdisc its handle (`sch->handle`), which its classes and
    /// classification by priority use.
    fn set_handle(&mut self, _handle: u32) {}

    /// The minor numbers of its classes, for `tc class show` (none for a
    /// classless qdisc).
    fn classes(&self) -> Vec<u32> {
        Vec::new()
    }

    /// The kind's own statistics lines of `tc -s` (`xstats`) at `now`,
    /// if it has any.
    fn xstats(&self, _now: Instant) -> Option<String> {
        None
    }

    /// The class the qdisc's own classification (`htb_classify()`,
    /// `prio_classify()`) puts `pkt` in, without enqueueing it: `Some(0)`
    /// for none (HTB's direct queue), `None` when the qdisc does not say
    /// (classless, or classification not reported). For `ipxmit explain`.
    fn class_of(&self, _pkt: &PacketBuf) -> Option<u32> {
        None
    }

    /// True when the qdisc has classes at all (the kernel's `cl_ops`).
    fn classful(&self) -> bool {
        !self.classes().is_empty()
    }

    /// Kernel: `cops->find()`: is there a class `classid` (major included)?
    fn class_find(&self, classid: u32) -> bool {
        self.classes().contains(&(classid & 0xffff))
    }

    /// Kernel: `cops->change()`: creates class `classid` under `parent`, or
    /// changes it; gives the kernel's warning, if any. Qdiscs whose classes
    /// are fixed refuse (`EOPNOTSUPP`).
    fn class_change(
        &mut self,
        _parent: u32,
        _classid: u32,
        _spec: &ClassSpec,
        _now: Instant,
        _to_free: &mut ToFree,
    ) -> Result<Option<String>, ClassError> {
        Err(ClassError::NotSupported)
    }

    /// Kernel: `cops->delete()`: deletes class `classid`, its packets
    /// into `to_free`.
    fn class_delete(
        &mut self,
        _classid: u32,
        _now: Instant,
        _to_free: &mut ToFree,
    ) -> Result<(), ClassError> {
        Err(ClassError::NotSupported)
    }

    /// `tc class show` of class `classid` by the kind's own printer
    /// (`None`: tc prints only `parent H:`).
    fn class_show(&self, _classid: u32, _details: bool) -> Option<ClassShow> {
        None
    }

    /// Kernel: `cops->graft()`: puts `new` (handle, qdisc) on class `classid` (`None`: the
    /// class's default qdisc again), the old one's packets into
    /// `to_free`. Refused where the class holds no qdisc.
    fn graft(
        &mut self,
        _classid: u32,
        _new: Option<(u32, Box<dyn Qdisc>)>,
        _to_free: &mut ToFree,
    ) -> Result<(), ClassError> {
        Err(ClassError::NotSupported)
    }

    /// Kernel: `cops->leaf()`: the qdisc on class `classid` and its handle
    /// (0 for a default one); `None` for a class without one.
    fn leaf_mut(&mut self, _classid: u32) -> Option<(u32, &mut dyn Qdisc)> {
        None
    }

    /// The qdiscs grafted on its classes (not the defaults): the class
    /// id, the handle and the qdisc, for `tc qdisc show`.
    fn children(&self) -> Vec<(u32, u32, &dyn Qdisc)> {
        Vec::new()
    }

    /// The `options` object of `tc -j` as JSON text, for kinds whose
    /// options nest (`netem`); `None`: built from [`Qdisc::options`].
    fn options_json(&self) -> Option<String> {
        None
    }

    /// True for a `netem` that duplicates packets (Linux 6.18 refuses to
    /// mix one with other netems in a tree).
    fn duplicating_netem(&self) -> bool {
        false
    }

    /// The filters attached to the qdisc (its block), if it takes any.
    fn filters(&self) -> Option<&cls::FilterChain> {
        None
    }

    /// [`Qdisc::filters`], writable.
    fn filters_mut(&mut self) -> Option<&mut cls::FilterChain> {
        None
    }

    /// Kernel: `cops->tcf_block()` for class `classid`: the class's own
    /// filters (`None`: the class takes none, `EINVAL`).
    fn class_filters(&self, _classid: u32) -> Option<&cls::FilterChain> {
        None
    }

    /// [`Qdisc::class_filters`], writable.
    fn class_filters_mut(&mut self, _classid: u32) -> Option<&mut cls::FilterChain> {
        None
    }

    /// [`Qdisc::children`], writable: the handle and the qdisc.
    fn children_mut(&mut self) -> Vec<(u32, &mut dyn Qdisc)> {
        Vec::new()
    }
}

/// Runs `f` on `child`, a qdisc inside a classful one, and carries the
/// change of its queue length, backlog and drops into `parent` (the
/// kernel's `qdisc_tree_reduce_backlog()` for what an AQM child drops on
/// its own, and the parent's drop count).
pub fn on_child<R>(
    parent: &mut QdiscStats,
    child: &mut dyn Qdisc,
    f: impl FnOnce(&mut dyn Qdisc) -> R,
) -> R {
    let before = *child.stats();
    let r = f(child);
    carry(parent, &before, child.stats());
    r
}

/// Carries into a parent's counters what a child's queue length, backlog
/// and drops changed by from `before` to `after` (the arithmetic of
/// `qdisc_tree_reduce_backlog()`).
pub fn carry(parent: &mut QdiscStats, before: &QdiscStats, after: &QdiscStats) {
    parent.qlen = (parent.qlen + after.qlen).saturating_sub(before.qlen);
    parent.backlog = (parent.backlog + after.backlog).saturating_sub(before.backlog);
    parent.drops += after.drops.saturating_sub(before.drops);
}

/// A value of `tc -j`'s `"options"` object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptValue {
    /// A number.
    Num(u64),
    /// A string.
    Str(String),
    /// A list of numbers (`priomap`).
    List(Vec<u64>),
    /// A flag.
    Bool(bool),
}
