//! `noqueue`: no queue at all — packets go straight to the driver.
//!
//! Stands for `noqueue_qdisc_ops` in `net/sched/sch_generic.c`.
//!
//! # Algorithm
//!
//! There is none: `noqueue_init()` clears the qdisc's `enqueue` hook, and
//! `__dev_queue_xmit()` treats a qdisc without one as "transmit directly": it
//! calls the driver itself (`dev_hard_start_xmit`), and if the driver is busy
//! the packet is dropped (virtual devices such as loopback, veth, tunnels and
//! bridges default to it through `IFF_NO_QUEUE`). In ipxmit the generic layer
//! checks [`Qdisc::is_noqueue`] and never calls [`Qdisc::enqueue`].
//!
//! Should it be called anyway, the packet is dropped rather than lost or
//! panicking: it goes to `to_free` with [`DropReason::QdiscDrop`], is counted in
//! `drops`, and enqueue returns [`NetXmit::Drop`]. (The kernel's fallback
//! `noop_enqueue` frees it the same way but reports `NET_XMIT_CN` and counts
//! nothing; reporting the drop keeps ipxmit's accounting visible.) Dequeue is
//! always empty, and `tc qdisc show` prints no parameters.

use super::{Dequeued, NetXmit, Qdisc, QdiscStats, ToFree};
use crate::buf::PacketBuf;
use crate::stats::DropReason;
use crate::time::Instant;

/// The `noqueue` qdisc. See the module docs.
#[derive(Debug, Default)]
pub struct Noqueue {
    stats: QdiscStats,
}

impl Noqueue {
    /// Kernel: `noqueue_init()`.
    pub fn new() -> Noqueue {
        Noqueue::default()
    }
}

impl Qdisc for Noqueue {
    fn kind(&self) -> &'static str {
        "noqueue"
    }

    /// Kernel: `noop_enqueue()` (never reached in the kernel). Drops `pkt`.
    fn enqueue(&mut self, pkt: PacketBuf, _now: Instant, to_free: &mut ToFree) -> NetXmit {
        self.stats.drops += 1;
        to_free.push(pkt, DropReason::QdiscDrop);
        NetXmit::Drop
    }

    /// Kernel: `noop_dequeue()`.
    fn dequeue(&mut self, _now: Instant) -> Dequeued {
        Dequeued::Empty
    }

    fn peek(&self) -> Option<&PacketBuf> {
        None
    }

    fn reset(&mut self, _to_free: &mut ToFree) {}

    fn stats(&self) -> &QdiscStats {
        &self.stats
    }

    fn stats_mut(&mut self) -> &mut QdiscStats {
        &mut self.stats
    }

    fn is_noqueue(&self) -> bool {
        true
    }

    fn params(&self) -> String {
        String::new()
    }

    /// None.
    fn options(&self) -> Vec<(&'static str, super::OptValue)> {
        Vec::new()
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_noqueue_and_never_queues() {
        let mut q = Noqueue::new();
        assert_eq!(q.kind(), "noqueue");
        assert!(q.is_noqueue());
        assert!(!q.can_bypass());
        assert_eq!(q.params(), "");
        let mut tf = ToFree::default();
        let pkt = PacketBuf::from_slice(0, &[1, 2, 3]);
        assert_eq!(q.enqueue(pkt, Instant::ZERO, &mut tf), NetXmit::Drop);
        assert_eq!(q.stats().drops, 1);
        assert_eq!(q.stats().qlen, 0);
        let reasons: Vec<_> = tf.drain().map(|(p, r)| (p.len(), r)).collect();
        assert_eq!(reasons, [(3, DropReason::QdiscDrop)]);
        assert!(q.peek().is_none());
        assert!(matches!(q.dequeue(Instant::ZERO), Dequeued::Empty));
        q.reset(&mut tf);
        assert!(tf.is_empty());
    }
}
