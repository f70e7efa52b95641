//! `pfifo_fast`: three FIFO bands served in strict priority — the default qdisc.
//!
//! Stands for `pfifo_fast_ops` in `net/sched/sch_generic.c`.
//!
//! # Algorithm
//!
//! A packet's band is `prio2band[skb->priority & TC_PRIO_MAX]`, with the fixed
//! map (priority 0..15 -> band)
//!
//! ```text
//! priority: 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15
//! band:     1 2 2 2 1 2 0 0 1 1 1  1  1  1  1  1
//! ```
//!
//! so `TC_PRIO_BESTEFFORT` (0) lands in band 1, `TC_PRIO_BULK` (2) and
//! `TC_PRIO_FILLER` (1) in band 2, and `TC_PRIO_INTERACTIVE` (6) and
//! `TC_PRIO_CONTROL` (7) in band 0. Priorities above 15 are masked to their low
//! four bits. Each band is a FIFO; dequeue always takes the head of the lowest
//! numbered non-empty band, so band 0 starves bands 1 and 2 and band 1 starves 2.
//!
//! # Limit
//!
//! Each band is a ring of `tx_queue_len` slots of its own (the kernel allocates
//! three `skb_array`s of `dev->tx_queue_len` entries each in `pfifo_fast_init`);
//! there is no limit on the total. So up to `3 * tx_queue_len` packets can be
//! queued, and a packet is dropped only when *its own band* is full. A dropped
//! packet is the arriving one (tail drop): it is counted in `drops` and handed
//! back in `to_free` with [`DropReason::QdiscDrop`], and enqueue returns
//! [`NetXmit::Drop`].
//!
//! The kernel refuses to create `pfifo_fast` on a device whose `tx_queue_len` is
//! 0 (`-EINVAL`, "guard against zero length rings") and the device is then left
//! with the `noop` qdisc, which drops everything. [`PfifoFast::new`] with 0 builds
//! a qdisc whose rings have no slot, so every packet is dropped likewise.
//!
//! # Flags and output
//!
//! `TCQ_F_CAN_BYPASS` is set: an empty `pfifo_fast` lets the generic layer hand a
//! packet straight to the driver. `tc qdisc show` prints
//! `bands 3 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1`.
//!
//! The band queues are allocated up front (up to [`super::fifo::PRESIZE_MAX`]
//! slots each), so the steady state does not allocate.

use std::collections::VecDeque;
use std::fmt::Write as _;

use super::{Dequeued, NetXmit, Qdisc, QdiscStats, ToFree};
use crate::buf::PacketBuf;
use crate::stats::DropReason;
use crate::time::Instant;

/// `TC_PRIO_MAX`: the mask applied to `skb->priority` before the band lookup.
pub const TC_PRIO_MAX: u32 = 15;

/// Number of bands (`PFIFO_FAST_BANDS`); it cannot be changed.
pub const PFIFO_FAST_BANDS: usize = 3;

/// The priority-to-band map (`prio2band` / `sch_default_prio2band`).
pub const PRIO2BAND: [u8; TC_PRIO_MAX as usize + 1] =
    [1, 2, 2, 2, 1, 2, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];

/// The default qdisc: three strict-priority FIFO bands. See the module docs.
///
/// Aligned to 128 bytes (two cache lines), as the kernel's `qdisc_alloc`
/// aligns a `struct Qdisc`: under `mq` each transmit queue has one, boxed
/// one after another, and each is written (its counters, at least) by the
/// thread sending on its queue; aligned, no two share a line.
#[derive(Debug)]
#[repr(align(128))]
pub struct PfifoFast {
    bands: [VecDeque<PacketBuf>; PFIFO_FAST_BANDS],
    band_limit: usize,
    stats: QdiscStats,
}

impl PfifoFast {
    /// Kernel: `pfifo_fast_init()`. A `pfifo_fast` for a device whose
    /// `tx_queue_len` is `tx_queue_len`: each band holds that many packets.
    pub fn new(tx_queue_len: u32) -> PfifoFast {
        let band_limit = usize::try_from(tx_queue_len).unwrap_or(usize::MAX);
        let cap = band_limit.min(super::fifo::PRESIZE_MAX);
        PfifoFast {
            bands: std::array::from_fn(|_| VecDeque::with_capacity(cap)),
            band_limit,
            stats: QdiscStats::default(),
        }
    }

    /// The band (0 = served first) of a packet with priority `priority`
    /// (`prio2band[priority & TC_PRIO_MAX]`).
    #[inline]
    pub fn band_of(priority: u32) -> usize {
        usize::from(PRIO2BAND[(priority & TC_PRIO_MAX) as usize])
    }

    /// Packets each band may hold (the device's `tx_queue_len`).
    pub fn band_limit(&self) -> usize {
        self.band_limit
    }

    /// Packets queued in `band` (0 when `band` does not exist).
    pub fn band_len(&self, band: usize) -> usize {
        self.bands.get(band).map_or(0, VecDeque::len)
    }
}

impl Qdisc for PfifoFast {
    fn kind(&self) -> &'static str {
        "pfifo_fast"
    }

    /// Kernel: `pfifo_fast_enqueue()`.
    fn enqueue(&mut self, pkt: PacketBuf, _now: Instant, to_free: &mut ToFree) -> NetXmit {
        let band = &mut self.bands[Self::band_of(pkt.meta.priority)];
        if band.len() >= self.band_limit {
            self.stats.drops += 1;
            to_free.push(pkt, DropReason::QdiscDrop);
            return NetXmit::Drop;
        }
        self.stats.queued(pkt.len());
        band.push_back(pkt);
        NetXmit::Success
    }

    /// Kernel: `pfifo_fast_dequeue()`.
    fn dequeue(&mut self, _now: Instant) -> Dequeued {
        for band in &mut self.bands {
            if let Some(pkt) = band.pop_front() {
                let len = pkt.len();
                self.stats.unqueued(len);
                self.stats.sent(len);
                return Dequeued::Packet(pkt);
            }
        }
        Dequeued::Empty
    }

    /// Kernel: `pfifo_fast_peek()`.
    fn peek(&self) -> Option<&PacketBuf> {
        self.bands.iter().find_map(VecDeque::front)
    }

    /// Kernel: `pfifo_fast_reset()`. Queued packets go to `to_free` as
    /// [`DropReason::QueuePurge`]; they are not counted as qdisc drops.
    fn reset(&mut self, to_free: &mut ToFree) {
        for band in &mut self.bands {
            for pkt in band.drain(..) {
                to_free.push(pkt, DropReason::QueuePurge);
            }
        }
        self.stats.backlog = 0;
        self.stats.qlen = 0;
    }

    fn stats(&self) -> &QdiscStats {
        &self.stats
    }

    fn stats_mut(&mut self) -> &mut QdiscStats {
        &mut self.stats
    }

    /// `pfifo_fast_init()` sets `TCQ_F_CAN_BYPASS`.
    fn can_bypass(&self) -> bool {
        true
    }

    /// Kernel: `pfifo_fast_dump()` as printed by tc's `prio_print_opt()`.
    fn params(&self) -> String {
        let mut s = format!("bands {PFIFO_FAST_BANDS} priomap");
        for band in PRIO2BAND {
            let _ = write!(s, " {band}");
        }
        s
    }

    /// `{"bands":3,"priomap":[1,2,...],"multiqueue":false}`.
    fn options(&self) -> Vec<(&'static str, super::OptValue)> {
        use super::OptValue;
        let map = PRIO2BAND.iter().map(|&b| u64::from(b)).collect();
        vec![
            ("bands", OptValue::Num(PFIFO_FAST_BANDS as u64)),
            ("priomap", OptValue::List(map)),
            ("multiqueue", OptValue::Bool(false)),
        ]
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(prio: u32, len: usize, tag: u8) -> PacketBuf {
        let mut p = PacketBuf::from_slice(0, &vec![tag; len]);
        p.meta.priority = prio;
        p
    }

    fn tag(d: Dequeued) -> (u8, usize) {
        match d {
            Dequeued::Packet(p) => (p.to_vec()[0], p.len()),
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    #[test]
    fn band_of_every_priority() {
        let want = [1, 2, 2, 2, 1, 2, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
        for prio in 0..16u32 {
            assert_eq!(PfifoFast::band_of(prio), want[prio as usize], "prio {prio}");
        }
        // Priorities above TC_PRIO_MAX are masked.
        assert_eq!(PfifoFast::band_of(16), 1);
        assert_eq!(PfifoFast::band_of(22), 0);
        assert_eq!(PfifoFast::band_of(0x1234_5677), 0);
        assert_eq!(PfifoFast::band_of(u32::MAX), 1);
    }

    #[test]
    fn enqueue_lands_in_band() {
        let mut q = PfifoFast::new(100);
        let mut tf = ToFree::default();
        for prio in 0..32u32 {
            assert_eq!(
                q.enqueue(pkt(prio, 1, 0), Instant::ZERO, &mut tf),
                NetXmit::Success
            );
        }
        // Per 16 priorities: band 0 gets 2, band 1 gets 10, band 2 gets 4.
        assert_eq!(q.band_len(0), 4);
        assert_eq!(q.band_len(1), 20);
        assert_eq!(q.band_len(2), 8);
        assert_eq!(q.band_len(3), 0);
        assert!(tf.is_empty());
    }

    #[test]
    fn fifo_within_band_and_strict_priority_across() {
        let mut q = PfifoFast::new(100);
        let mut tf = ToFree::default();
        // Interleave: bulk (band 2), best effort (band 1), interactive (band 0).
        let order = [(2, 20), (0, 10), (6, 0), (2, 21), (0, 11), (7, 1), (1, 22)];
        for (prio, t) in order {
            q.enqueue(pkt(prio, 1, t), Instant::ZERO, &mut tf);
        }
        let got: Vec<u8> = (0..7).map(|_| tag(q.dequeue(Instant::ZERO)).0).collect();
        assert_eq!(got, [0, 1, 10, 11, 20, 21, 22]);
        assert!(matches!(q.dequeue(Instant::ZERO), Dequeued::Empty));
        assert!(tf.is_empty());
    }

    #[test]
    fn higher_band_starves_lower_until_empty() {
        let mut q = PfifoFast::new(100);
        let mut tf = ToFree::default();
        q.enqueue(pkt(0, 1, 10), Instant::ZERO, &mut tf);
        assert_eq!(tag(q.dequeue(Instant::ZERO)).0, 10);
        q.enqueue(pkt(0, 1, 11), Instant::ZERO, &mut tf);
        q.enqueue(pkt(6, 1, 0), Instant::ZERO, &mut tf);
        assert_eq!(q.peek().map(|p| p.to_vec()[0]), Some(0));
        assert_eq!(tag(q.dequeue(Instant::ZERO)).0, 0);
        assert_eq!(tag(q.dequeue(Instant::ZERO)).0, 11);
    }

    #[test]
    fn limit_is_per_band_and_drops_the_new_packet() {
        let mut q = PfifoFast::new(2);
        let mut tf = ToFree::default();
        assert_eq!(
            q.enqueue(pkt(0, 100, 1), Instant::ZERO, &mut tf),
            NetXmit::Success
        );
        assert_eq!(
            q.enqueue(pkt(0, 100, 2), Instant::ZERO, &mut tf),
            NetXmit::Success
        );
        assert_eq!(
            q.enqueue(pkt(0, 70, 3), Instant::ZERO, &mut tf),
            NetXmit::Drop
        );
        // Other bands still have room.
        assert_eq!(
            q.enqueue(pkt(6, 10, 4), Instant::ZERO, &mut tf),
            NetXmit::Success
        );
        assert_eq!(
            q.enqueue(pkt(2, 10, 5), Instant::ZERO, &mut tf),
            NetXmit::Success
        );
        assert_eq!(
            q.enqueue(pkt(2, 10, 6), Instant::ZERO, &mut tf),
            NetXmit::Success
        );
        assert_eq!(
            q.enqueue(pkt(1, 10, 7), Instant::ZERO, &mut tf),
            NetXmit::Drop
        );
        assert_eq!(q.stats().drops, 2);
        assert_eq!(q.stats().qlen, 5);
        assert_eq!(q.stats().backlog, 230);
        let dropped: Vec<_> = tf
            .drain()
            .map(|(p, r)| (p.to_vec()[0], p.len(), r))
            .collect();
        assert_eq!(
            dropped,
            [
                (3, 70, DropReason::QdiscDrop),
                (7, 10, DropReason::QdiscDrop)
            ]
        );
    }

    #[test]
    fn zero_tx_queue_len_drops_everything() {
        let mut q = PfifoFast::new(0);
        let mut tf = ToFree::default();
        for prio in 0..16 {
            assert_eq!(
                q.enqueue(pkt(prio, 1, 0), Instant::ZERO, &mut tf),
                NetXmit::Drop
            );
        }
        assert_eq!(q.stats().drops, 16);
        assert_eq!(tf.len(), 16);
        assert_eq!(q.stats().qlen, 0);
    }

    #[test]
    fn accounting_through_enqueue_dequeue_reset() {
        let mut q = PfifoFast::new(10);
        let mut tf = ToFree::default();
        q.enqueue(pkt(0, 100, 0), Instant::ZERO, &mut tf);
        q.enqueue(pkt(6, 60, 0), Instant::ZERO, &mut tf);
        q.enqueue(pkt(2, 40, 0), Instant::ZERO, &mut tf);
        assert_eq!((q.stats().qlen, q.stats().backlog), (3, 200));
        assert_eq!(tag(q.dequeue(Instant::ZERO)).1, 60);
        let s = *q.stats();
        assert_eq!((s.qlen, s.backlog, s.packets, s.bytes), (2, 140, 1, 60));
        q.reset(&mut tf);
        let s = *q.stats();
        assert_eq!(
            (s.qlen, s.backlog, s.packets, s.bytes, s.drops),
            (0, 0, 1, 60, 0)
        );
        let reasons: Vec<_> = tf.drain().map(|(_, r)| r).collect();
        assert_eq!(reasons, [DropReason::QueuePurge, DropReason::QueuePurge]);
        assert!(q.peek().is_none());
        assert!(matches!(q.dequeue(Instant::ZERO), Dequeued::Empty));
        // Usable again after a reset.
        q.enqueue(pkt(0, 5, 9), Instant::ZERO, &mut tf);
        assert_eq!(tag(q.dequeue(Instant::ZERO)), (9, 5));
    }

    #[test]
    fn flags_and_params() {
        let q = PfifoFast::new(1000);
        assert_eq!(q.kind(), "pfifo_fast");
        assert!(q.can_bypass());
        assert!(!q.is_noqueue());
        assert_eq!(q.band_limit(), 1000);
        assert_eq!(
            q.params(),
            "bands 3 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1"
        );
    }
}
