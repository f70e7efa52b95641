//! The null device: counts and frees every frame.
//!
//! Stands for the kernel's `dummy` driver (`drivers/net/dummy.c`, whose
//! `dummy_xmit` counts the frame and frees it): a sink that measures the stack's
//! own cost with no peer and no I/O.

use std::sync::Arc;

use ipxmit::dev::{Driver, LltxDriver, TxStatus};
use ipxmit::stats::Sharded;
use ipxmit::PacketBuf;

/// Frame and byte counts of a null device, shared by its queues.
#[derive(Debug, Default)]
pub struct NullCounters {
    c: Sharded<2>,
}

impl NullCounters {
    /// New shared counters.
    pub fn new() -> Arc<NullCounters> {
        Arc::new(NullCounters::default())
    }

    /// Frames freed.
    pub fn frames(&self) -> u64 {
        self.c.get(0)
    }

    /// Bytes freed.
    pub fn bytes(&self) -> u64 {
        self.c.get(1)
    }

    /// A driver for one transmit queue counting into these counters.
    pub fn driver(self: &Arc<Self>) -> Box<dyn Driver> {
        Box::new(NullDriver {
            xmit: Arc::new(NullXmit {
                counters: self.clone(),
            }),
        })
    }

    /// `n` drivers, one per transmit queue.
    pub fn drivers(self: &Arc<Self>, n: usize) -> Vec<Box<dyn Driver>> {
        (0..n.max(1)).map(|_| self.driver()).collect()
    }
}

/// One queue's driver: lockless (the kernel's `dummy` is `NETIF_F_LLTX`),
/// so threads sending on the same queue do not wait for each other. Each
/// frame is counted in the calling thread's shard of the shared counters
/// (a plain load and store on a cache line of its own).
struct NullDriver {
    xmit: Arc<NullXmit>,
}

/// The lockless transmit side of a null driver.
struct NullXmit {
    counters: Arc<NullCounters>,
}

impl LltxDriver for NullXmit {
    #[inline]
    fn start_xmit(&self, pkt: PacketBuf, _more: bool) -> TxStatus {
        self.counters.c.add_each([(0, 1), (1, pkt.len() as u64)]);
        drop(pkt);
        TxStatus::Ok
    }
}

impl Driver for NullDriver {
    /// Not called while [`Driver::lltx`] gives the transmit side; kept
    /// for a caller that holds the driver itself.
    fn start_xmit(&mut self, pkt: PacketBuf, more: bool) -> TxStatus {
        self.xmit.start_xmit(pkt, more)
    }

    fn lltx(&self) -> Option<Arc<dyn LltxDriver>> {
        Some(self.xmit.clone())
    }
}
