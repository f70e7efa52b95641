//! The null device: counts and frees every frame.
//!
//! Stands for the kernel's `dummy` driver (`drivers/net/dummy.c`, whose
//! `dummy_xmit` counts the frame and frees it): a sink that measures the stack's
//! own cost with no peer and no I/O.

use std::sync::Arc;

use ipxmit::dev::{Driver, TxStatus};
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
            counters: self.clone(),
            frames: 0,
            bytes: 0,
        })
    }

    /// `n` drivers, one per transmit queue.
    pub fn drivers(self: &Arc<Self>, n: usize) -> Vec<Box<dyn Driver>> {
        (0..n.max(1)).map(|_| self.driver()).collect()
    }
}

/// One queue's driver. Within a batch (`xmit_more`) it counts in its own
/// fields and adds them to the shared counters at the batch's last frame
/// (or a flush), as a driver rings its doorbell once per batch.
struct NullDriver {
    counters: Arc<NullCounters>,
    frames: u64,
    bytes: u64,
}

impl NullDriver {
    fn publish(&mut self) {
        if self.frames > 0 {
            self.counters.c.add(0, self.frames);
            self.counters.c.add(1, self.bytes);
            (self.frames, self.bytes) = (0, 0);
        }
    }
}

impl Driver for NullDriver {
    #[inline]
    fn start_xmit(&mut self, pkt: PacketBuf, more: bool) -> TxStatus {
        self.frames += 1;
        self.bytes += pkt.len() as u64;
        drop(pkt);
        if !more {
            self.publish();
        }
        TxStatus::Ok
    }

    fn flush(&mut self) {
        self.publish();
    }
}
