//! `pfifo`, `bfifo` and `pfifo_head_drop`: one FIFO queue with a limit.
//!
//! Stands for `pfifo_qdisc_ops`, `bfifo_qdisc_ops` and
//! `pfifo_head_drop_qdisc_ops` in `net/sched/sch_fifo.c`.
//!
//! # Algorithm
//!
//! All three keep a single first-in first-out queue and differ only in the limit
//! and in which packet goes when it is reached:
//!
//! - `pfifo` ([`Pfifo`]): a packet is queued while fewer than `limit` packets are
//!   queued; otherwise the *arriving* packet is dropped (tail drop,
//!   [`NetXmit::Drop`]).
//! - `bfifo` ([`Bfifo`]): a packet is queued when the bytes already queued plus
//!   its own length stay within `limit` bytes; otherwise it is dropped.
//! - `pfifo_head_drop` ([`PfifoHeadDrop`]): when `limit` packets are queued, the
//!   *oldest* queued packet is dropped to make room and the arriving one is
//!   queued; the enqueue reports [`NetXmit::Congested`]. (As in the kernel, the
//!   drop counter is incremented even if there was nothing at the head to drop,
//!   which can only happen with `limit 0` — the queue then behaves as `limit 1`.)
//!
//! Dropped packets go to `to_free` with [`DropReason::QdiscDrop`] and are counted
//! in `drops`. The limit checks use the qdisc's `qlen`/`backlog` statistics, as
//! the kernel uses `sch->q.qlen` and `sch->qstats.backlog`: a packet the driver
//! refused and the generic layer requeued counts against the limit until it is
//! sent.
//!
//! # Defaults and flags (`__fifo_init`)
//!
//! Without a `limit` option the limit is the device's `tx_queue_len` in packets,
//! and for `bfifo` `tx_queue_len * psched_mtu(dev)` bytes, where `psched_mtu` is
//! the MTU plus the link-layer header (`dev->hard_header_len`, 14 on Ethernet):
//! 1000 packets of a 1500-byte-MTU Ethernet device give `limit 1514000b`. (Current
//! kernels do not turn a zero `tx_queue_len` into 1; the "txqueuelen 0 on an
//! `IFF_NO_QUEUE` device means 1000" fix-up lives in `qdisc_create()`, in the
//! device layer.) `TCQ_F_CAN_BYPASS` is set when `limit >= 1` for the packet
//! FIFOs and when `limit >= psched_mtu` for `bfifo`: an empty FIFO that could
//! take a full-sized packet lets the generic layer send straight to the driver.
//!
//! `tc qdisc show` prints `limit 1000p` for the packet FIFOs and the byte limit
//! through `sprint_size` for `bfifo` (`limit 1514000b`, `limit 32Kb`).

use std::collections::VecDeque;

use super::{Dequeued, NetXmit, Qdisc, QdiscStats, ToFree};
use crate::buf::PacketBuf;
use crate::stats::DropReason;
use crate::time::Instant;
use crate::units::format_size;

/// Most slots a queue allocates up front. Queues are pre-sized to their limit up
/// to this many packets (a larger queue grows once, then keeps its capacity), so
/// the steady state does not allocate without a huge limit costing memory.
pub const PRESIZE_MAX: usize = 1024;

/// The queue and statistics shared by the three FIFOs (`sch->q`, `sch->qstats`).
/// Aligned to 128 bytes (two cache lines), as `qdisc_alloc` aligns a
/// `struct Qdisc`: FIFOs boxed one after another for the queues of an `mq`
/// root, each written by its own queue's sender, share no line.
#[derive(Debug)]
#[repr(align(128))]
struct FifoQueue {
    q: VecDeque<PacketBuf>,
    stats: QdiscStats,
}

impl FifoQueue {
    fn with_capacity(packets: u64) -> FifoQueue {
        let cap = usize::try_from(packets)
            .unwrap_or(usize::MAX)
            .min(PRESIZE_MAX);
        FifoQueue {
            q: VecDeque::with_capacity(cap),
            stats: QdiscStats::default(),
        }
    }

    /// Kernel: `qdisc_enqueue_tail()`.
    fn enqueue_tail(&mut self, pkt: PacketBuf) -> NetXmit {
        self.stats.queued(pkt.len());
        self.q.push_back(pkt);
        NetXmit::Success
    }

    /// Kernel: `qdisc_drop()` — the arriving packet is dropped.
    fn drop_new(&mut self, pkt: PacketBuf, to_free: &mut ToFree) -> NetXmit {
        self.stats.drops += 1;
        to_free.push(pkt, DropReason::QdiscDrop);
        NetXmit::Drop
    }

    /// Kernel: `__qdisc_queue_drop_head()` — the oldest packet is dropped (not
    /// counted in `drops`; the caller does that).
    fn drop_head(&mut self, to_free: &mut ToFree) {
        if let Some(pkt) = self.q.pop_front() {
            self.stats.unqueued(pkt.len());
            to_free.push(pkt, DropReason::QdiscDrop);
        }
    }

    /// Kernel: `qdisc_dequeue_head()`.
    fn dequeue_head(&mut self) -> Dequeued {
        match self.q.pop_front() {
            Some(pkt) => {
                let len = pkt.len();
                self.stats.unqueued(len);
                self.stats.sent(len);
                Dequeued::Packet(pkt)
            }
            None => Dequeued::Empty,
        }
    }

    /// Kernel: `qdisc_reset_queue()`. Purged packets are not counted as drops.
    fn reset(&mut self, to_free: &mut ToFree) {
        for pkt in self.q.drain(..) {
            to_free.push(pkt, DropReason::QueuePurge);
        }
        self.stats.backlog = 0;
        self.stats.qlen = 0;
    }
}

/// The parts of [`Qdisc`] the three FIFOs share.
macro_rules! fifo_common {
    () => {
        /// Kernel: `qdisc_dequeue_head()`.
        fn dequeue(&mut self, _now: Instant) -> Dequeued {
            self.fifo.dequeue_head()
        }

        /// Kernel: `qdisc_peek_head()`.
        fn peek(&self) -> Option<&PacketBuf> {
            self.fifo.q.front()
        }

        /// Kernel: `qdisc_reset_queue()`; packets go to `to_free` as
        /// [`DropReason::QueuePurge`].
        fn reset(&mut self, to_free: &mut ToFree) {
            self.fifo.reset(to_free)
        }

        fn stats(&self) -> &QdiscStats {
            &self.fifo.stats
        }

        fn stats_mut(&mut self) -> &mut QdiscStats {
            &mut self.fifo.stats
        }
    };
}

/// `pfifo`: a FIFO of at most `limit` packets, tail drop. See the module docs.
#[derive(Debug)]
pub struct Pfifo {
    fifo: FifoQueue,
    limit: u32,
}

impl Pfifo {
    /// Kernel: `fifo_init()` with a limit. A `pfifo` holding `limit` packets.
    pub fn new(limit: u32) -> Pfifo {
        Pfifo {
            fifo: FifoQueue::with_capacity(u64::from(limit)),
            limit,
        }
    }

    /// The limit in packets.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Kernel: `fifo_init()` on a `change`: the new limit; packets already
    /// queued stay.
    pub fn set_limit(&mut self, limit: u32) {
        self.limit = limit;
    }
}

impl Qdisc for Pfifo {
    fn kind(&self) -> &'static str {
        "pfifo"
    }

    /// Kernel: `pfifo_enqueue()`.
    fn enqueue(&mut self, pkt: PacketBuf, _now: Instant, to_free: &mut ToFree) -> NetXmit {
        if self.fifo.stats.qlen < u64::from(self.limit) {
            self.fifo.enqueue_tail(pkt)
        } else {
            self.fifo.drop_new(pkt, to_free)
        }
    }

    fifo_common!();

    /// `__fifo_init()`: bypass when the limit is at least one packet.
    fn can_bypass(&self) -> bool {
        self.limit >= 1
    }

    /// `limit 1000p`.
    fn params(&self) -> String {
        format!("limit {}p", self.limit)
    }

    /// `{"limit":1000}`.
    fn options(&self) -> Vec<(&'static str, super::OptValue)> {
        vec![("limit", super::OptValue::Num(u64::from(self.limit)))]
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// `bfifo`: a FIFO of at most `limit` bytes, tail drop. See the module docs.
#[derive(Debug)]
pub struct Bfifo {
    fifo: FifoQueue,
    limit: u32,
    bypass: bool,
    psched_mtu: u32,
}

impl Bfifo {
    /// Kernel: `fifo_init()` with a limit. A `bfifo` holding `limit` bytes on a
    /// device whose `psched_mtu` (MTU plus link-layer header) is `psched_mtu`;
    /// the latter only decides `TCQ_F_CAN_BYPASS` and the pre-allocation.
    pub fn new(limit: u32, psched_mtu: u32) -> Bfifo {
        let packets = u64::from(limit) / u64::from(psched_mtu.max(1));
        Bfifo {
            fifo: FifoQueue::with_capacity(packets),
            limit,
            bypass: limit >= psched_mtu,
            psched_mtu,
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Kernel: `fifo_set_limit()` (a `change` of the limit): packets
    /// already queued stay, even beyond it.
    pub fn set_limit(&mut self, limit: u32) {
        self.limit = limit;
        self.bypass = limit >= self.psched_mtu;
    }
}

impl Qdisc for Bfifo {
    fn kind(&self) -> &'static str {
        "bfifo"
    }

    /// Kernel: `bfifo_enqueue()`.
    fn enqueue(&mut self, pkt: PacketBuf, _now: Instant, to_free: &mut ToFree) -> NetXmit {
        let after = self.fifo.stats.backlog.saturating_add(pkt.len() as u64);
        if after <= u64::from(self.limit) {
            self.fifo.enqueue_tail(pkt)
        } else {
            self.fifo.drop_new(pkt, to_free)
        }
    }

    fifo_common!();

    /// `__fifo_init()`: bypass when the limit holds at least one full-sized packet.
    fn can_bypass(&self) -> bool {
        self.bypass
    }

    /// `limit 1514000b`, `limit 32Kb` (tc's `sprint_size`).
    fn params(&self) -> String {
        format!("limit {}", format_size(u64::from(self.limit)))
    }

    /// `{"limit":1514000}`.
    fn options(&self) -> Vec<(&'static str, super::OptValue)> {
        vec![("limit", super::OptValue::Num(u64::from(self.limit)))]
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// `pfifo_head_drop`: a FIFO of at most `limit` packets that drops the oldest
/// packet to make room. See the module docs.
#[derive(Debug)]
pub struct PfifoHeadDrop {
    fifo: FifoQueue,
    limit: u32,
}

impl PfifoHeadDrop {
    /// Kernel: `fifo_hd_init()` with a limit. A `pfifo_head_drop` of `limit` packets.
    pub fn new(limit: u32) -> PfifoHeadDrop {
        PfifoHeadDrop {
            fifo: FifoQueue::with_capacity(u64::from(limit).saturating_add(1)),
            limit,
        }
    }

    /// The limit in packets.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Kernel: `fifo_init()` on a `change`: the new limit; packets already
    /// queued stay.
    pub fn set_limit(&mut self, limit: u32) {
        self.limit = limit;
    }
}

impl Qdisc for PfifoHeadDrop {
    fn kind(&self) -> &'static str {
        "pfifo_head_drop"
    }

    /// Kernel: `pfifo_tail_enqueue()`.
    fn enqueue(&mut self, pkt: PacketBuf, _now: Instant, to_free: &mut ToFree) -> NetXmit {
        if self.fifo.stats.qlen < u64::from(self.limit) {
            return self.fifo.enqueue_tail(pkt);
        }
        self.fifo.drop_head(to_free);
        self.fifo.stats.drops += 1;
        self.fifo.enqueue_tail(pkt);
        NetXmit::Congested
    }

    fifo_common!();

    /// `__fifo_init()`: bypass when the limit is at least one packet.
    fn can_bypass(&self) -> bool {
        self.limit >= 1
    }

    /// `limit 1000p`.
    fn params(&self) -> String {
        format!("limit {}p", self.limit)
    }

    /// `{"limit":1000}`.
    fn options(&self) -> Vec<(&'static str, super::OptValue)> {
        vec![("limit", super::OptValue::Num(u64::from(self.limit)))]
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Instant = Instant::ZERO;

    fn pkt(len: usize, tag: u8) -> PacketBuf {
        PacketBuf::from_slice(0, &vec![tag; len])
    }

    fn next_tag(q: &mut dyn Qdisc) -> Option<u8> {
        match q.dequeue(T0) {
            Dequeued::Packet(p) => Some(p.to_vec()[0]),
            Dequeued::Empty => None,
            Dequeued::Throttled(t) => panic!("a fifo never throttles ({t})"),
        }
    }

    fn dropped(tf: &mut ToFree) -> Vec<(u8, DropReason)> {
        tf.drain().map(|(p, r)| (p.to_vec()[0], r)).collect()
    }

    #[test]
    fn pfifo_order_and_tail_drop() {
        let mut q = Pfifo::new(3);
        let mut tf = ToFree::default();
        for t in 1..=3 {
            assert_eq!(q.enqueue(pkt(10, t), T0, &mut tf), NetXmit::Success);
        }
        assert_eq!(q.enqueue(pkt(10, 4), T0, &mut tf), NetXmit::Drop);
        assert_eq!(q.stats().drops, 1);
        assert_eq!(dropped(&mut tf), [(4, DropReason::QdiscDrop)]);
        assert_eq!(q.peek().map(|p| p.to_vec()[0]), Some(1));
        assert_eq!(next_tag(&mut q), Some(1));
        assert_eq!(q.enqueue(pkt(10, 5), T0, &mut tf), NetXmit::Success);
        let rest: Vec<_> = std::iter::from_fn(|| next_tag(&mut q)).collect();
        assert_eq!(rest, [2, 3, 5]);
        let s = *q.stats();
        assert_eq!(
            (s.packets, s.bytes, s.qlen, s.backlog, s.drops),
            (4, 40, 0, 0, 1)
        );
    }

    #[test]
    fn pfifo_limit_counts_requeued_packets() {
        // The generic layer accounts a requeued packet in qlen (dev_requeue_skb).
        let mut q = Pfifo::new(2);
        let mut tf = ToFree::default();
        q.enqueue(pkt(10, 1), T0, &mut tf);
        q.stats_mut().queued(10);
        assert_eq!(q.enqueue(pkt(10, 2), T0, &mut tf), NetXmit::Drop);
    }

    #[test]
    fn pfifo_zero_limit() {
        let mut q = Pfifo::new(0);
        let mut tf = ToFree::default();
        assert!(!q.can_bypass());
        assert_eq!(q.enqueue(pkt(1, 1), T0, &mut tf), NetXmit::Drop);
        assert_eq!(q.stats().drops, 1);
    }

    #[test]
    fn bfifo_byte_limit() {
        let mut q = Bfifo::new(3000, 1514);
        let mut tf = ToFree::default();
        assert_eq!(q.enqueue(pkt(1500, 1), T0, &mut tf), NetXmit::Success);
        assert_eq!(q.enqueue(pkt(1501, 2), T0, &mut tf), NetXmit::Drop);
        assert_eq!(q.enqueue(pkt(1500, 3), T0, &mut tf), NetXmit::Success);
        assert_eq!(q.stats().backlog, 3000);
        assert_eq!(q.enqueue(pkt(1, 4), T0, &mut tf), NetXmit::Drop);
        assert_eq!(
            dropped(&mut tf),
            [(2, DropReason::QdiscDrop), (4, DropReason::QdiscDrop)]
        );
        assert_eq!(next_tag(&mut q), Some(1));
        assert_eq!(q.stats().backlog, 1500);
        assert_eq!(q.enqueue(pkt(1000, 5), T0, &mut tf), NetXmit::Success);
        assert_eq!(q.stats().qlen, 2);
        assert_eq!(q.stats().drops, 2);
        q.reset(&mut tf);
        assert_eq!(
            (q.stats().qlen, q.stats().backlog, q.stats().drops),
            (0, 0, 2)
        );
        assert_eq!(
            dropped(&mut tf),
            [(3, DropReason::QueuePurge), (5, DropReason::QueuePurge)]
        );
        assert!(q.peek().is_none());
    }

    #[test]
    fn bfifo_bypass_needs_room_for_a_full_packet() {
        assert!(Bfifo::new(1514, 1514).can_bypass());
        assert!(!Bfifo::new(1513, 1514).can_bypass());
        assert!(Bfifo::new(0, 0).can_bypass());
        assert_eq!(Bfifo::new(1_514_000, 1514).params(), "limit 1514000b");
        assert_eq!(Bfifo::new(32768, 1514).params(), "limit 32Kb");
        assert_eq!(Bfifo::new(32768, 1514).limit(), 32768);
    }

    #[test]
    fn head_drop_drops_the_oldest() {
        let mut q = PfifoHeadDrop::new(2);
        let mut tf = ToFree::default();
        assert_eq!(q.enqueue(pkt(10, 1), T0, &mut tf), NetXmit::Success);
        assert_eq!(q.enqueue(pkt(20, 2), T0, &mut tf), NetXmit::Success);
        assert_eq!(q.enqueue(pkt(30, 3), T0, &mut tf), NetXmit::Congested);
        assert_eq!(q.enqueue(pkt(40, 4), T0, &mut tf), NetXmit::Congested);
        assert_eq!(
            dropped(&mut tf),
            [(1, DropReason::QdiscDrop), (2, DropReason::QdiscDrop)]
        );
        let s = *q.stats();
        assert_eq!((s.qlen, s.backlog, s.drops), (2, 70, 2));
        let rest: Vec<_> = std::iter::from_fn(|| next_tag(&mut q)).collect();
        assert_eq!(rest, [3, 4]);
        assert_eq!((q.stats().packets, q.stats().bytes), (2, 70));
    }

    #[test]
    fn head_drop_zero_limit_behaves_as_the_kernel() {
        let mut q = PfifoHeadDrop::new(0);
        let mut tf = ToFree::default();
        assert!(!q.can_bypass());
        // Nothing to drop at the head, but the drop is counted and the packet queued.
        assert_eq!(q.enqueue(pkt(10, 1), T0, &mut tf), NetXmit::Congested);
        assert!(tf.is_empty());
        assert_eq!((q.stats().drops, q.stats().qlen), (1, 1));
        assert_eq!(q.enqueue(pkt(10, 2), T0, &mut tf), NetXmit::Congested);
        assert_eq!(dropped(&mut tf), [(1, DropReason::QdiscDrop)]);
        assert_eq!(next_tag(&mut q), Some(2));
    }

    #[test]
    fn kinds_flags_params() {
        let p = Pfifo::new(1000);
        assert_eq!(
            (p.kind(), p.params(), p.can_bypass()),
            ("pfifo", "limit 1000p".into(), true)
        );
        assert_eq!(p.limit(), 1000);
        let h = PfifoHeadDrop::new(100);
        assert_eq!(
            (h.kind(), h.params(), h.can_bypass()),
            ("pfifo_head_drop", "limit 100p".into(), true)
        );
        assert_eq!(h.limit(), 100);
        let b = Bfifo::new(1000, 1514);
        assert_eq!((b.kind(), b.can_bypass()), ("bfifo", false));
        assert!(!p.is_noqueue() && !h.is_noqueue() && !b.is_noqueue());
    }

    #[test]
    fn empty_dequeue_and_peek() {
        let mut q = Pfifo::new(5);
        assert!(q.peek().is_none());
        assert!(matches!(q.dequeue(T0), Dequeued::Empty));
        assert_eq!(q.stats(), &QdiscStats::default());
    }
}
