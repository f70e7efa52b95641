//! The in-memory wire: frames a device transmits land in a bounded ring that a
//! consumer drains.
//!
//! Stands for a NIC's transmit ring with its completion interrupt, and for what
//! virtual drivers (`veth_xmit`, `tun_net_xmit`) do on transmit: the frame is
//! orphaned from its socket's send budget (`skb_orphan`) and handed over. When the
//! ring is full the driver stops its queue (`netif_tx_stop_queue`) and returns
//! busy, so the qdisc requeues; the consumer taking a frame wakes stopped queues
//! (`netif_tx_wake_queue`), which reschedules their qdisc runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use ipxmit::dev::{Driver, TxQueueCtl, TxStatus};
use ipxmit::PacketBuf;
use parking_lot::Mutex;

/// A bounded in-memory wire shared by the transmit queues of one device and
/// its consumer.
pub struct MemWire {
    ring: ArrayQueue<PacketBuf>,
    stopped: Mutex<Vec<Arc<TxQueueCtl>>>,
    frames: AtomicU64,
    bytes: AtomicU64,
    busy: AtomicU64,
}

impl std::fmt::Debug for MemWire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemWire")
            .field("queued", &self.ring.len())
            .field("capacity", &self.ring.capacity())
            .field("frames", &self.frames())
            .finish()
    }
}

impl MemWire {
    /// A wire holding at most `capacity` frames not yet consumed.
    pub fn new(capacity: usize) -> Arc<MemWire> {
        Arc::new(MemWire {
            ring: ArrayQueue::new(capacity.max(1)),
            stopped: Mutex::new(Vec::new()),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            busy: AtomicU64::new(0),
        })
    }

    /// A driver for one transmit queue of the device on this wire.
    pub fn driver(self: &Arc<Self>) -> Box<dyn Driver> {
        Box::new(MemDriver {
            wire: self.clone(),
            ctl: None,
        })
    }

    /// `n` drivers, one per transmit queue.
    pub fn drivers(self: &Arc<Self>, n: usize) -> Vec<Box<dyn Driver>> {
        (0..n.max(1)).map(|_| self.driver()).collect()
    }

    /// Takes the oldest frame, waking queues stopped for lack of room.
    pub fn pop(&self) -> Option<PacketBuf> {
        let f = self.ring.pop()?;
        self.wake_stopped();
        Some(f)
    }

    /// Takes every frame now on the wire, calling `f` on each.
    pub fn drain(&self, mut f: impl FnMut(PacketBuf)) -> usize {
        let mut n = 0;
        while let Some(p) = self.ring.pop() {
            f(p);
            n += 1;
        }
        if n > 0 {
            self.wake_stopped();
        }
        n
    }

    fn wake_stopped(&self) {
        let mut s = self.stopped.lock();
        for ctl in s.drain(..) {
            ctl.wake();
        }
    }

    /// Frames waiting for the consumer.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// True when no frame waits.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Frames accepted so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Bytes accepted so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Times a driver found the ring full.
    pub fn busy_count(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }
}

/// The driver of one transmit queue on a [`MemWire`].
struct MemDriver {
    wire: Arc<MemWire>,
    ctl: Option<Arc<TxQueueCtl>>,
}

impl Driver for MemDriver {
    fn attach(&mut self, ctl: Arc<TxQueueCtl>) {
        self.ctl = Some(ctl);
    }

    fn start_xmit(&mut self, mut pkt: PacketBuf, _more: bool) -> TxStatus {
        let len = pkt.len() as u64;
        // Orphaned (`skb_orphan`) once on the wire; a refused frame goes
        // back to be requeued still charged to its socket.
        let charge = pkt.detach_owner();
        match self.wire.ring.push(pkt) {
            Ok(()) => {
                drop(charge);
                self.wire.frames.fetch_add(1, Ordering::Relaxed);
                self.wire.bytes.fetch_add(len, Ordering::Relaxed);
                TxStatus::Ok
            }
            Err(mut pkt) => {
                pkt.reattach_owner(charge);
                self.wire.busy.fetch_add(1, Ordering::Relaxed);
                if let Some(ctl) = &self.ctl {
                    ctl.stop();
                    self.wire.stopped.lock().push(ctl.clone());
                    // The consumer may have made room between the push and the
                    // stop: do not sleep on a wake-up that already happened.
                    if !self.wire.ring.is_full() {
                        self.wire.wake_stopped();
                    }
                }
                TxStatus::Busy(pkt)
            }
        }
    }
}
