//! The loopback device `lo` and the receive backlog it feeds.
//!
//! Stands for `drivers/net/loopback.c` (`loopback_setup()`: `IFF_LOOPBACK`,
//! MTU 65536, `noqueue` through `IFF_NO_QUEUE`, an all-zero Ethernet
//! address; `loopback_xmit()`: the frame leaves its socket's accounting,
//! `skb_orphan()`, and goes to `netif_rx()`) and for the per-CPU receive
//! backlog of `net/core/dev.c` (`enqueue_to_backlog()`, bounded by
//! `netdev_max_backlog`, drained by `process_backlog()` in the receive
//! softirq). Here the backlog is drained by [`crate::Stack::poll`], so a
//! frame given to `lo` comes back in through the stack's receive path after
//! the send that made it returned, as in the kernel.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::buf::PacketBuf;
use crate::dev::{Driver, Notify, TxStatus};
use crate::stats::{Counters, DevCounter, DropSite};

/// `net.core.netdev_max_backlog`: frames the backlog holds at most.
pub const NETDEV_MAX_BACKLOG: usize = 1000;

/// `lo`'s MTU (the kernel's `LOOPBACK_MTU`, 64 KiB).
pub const LOOPBACK_MTU: u32 = 65536;

/// Frames waiting for the receive path (`softnet_data.input_pkt_queue`),
/// each with the index of the device it arrived on.
#[derive(Debug)]
pub struct Backlog {
    q: Mutex<VecDeque<(u32, PacketBuf)>>,
    notify: Arc<Notify>,
}

impl Backlog {
    /// An empty backlog that raises `notify` when a frame arrives.
    pub fn new(notify: Arc<Notify>) -> Backlog {
        Backlog {
            q: Mutex::new(VecDeque::with_capacity(64)),
            notify,
        }
    }

    /// Kernel: `enqueue_to_backlog()`. Queues `pkt` received on `ifindex`,
    /// or hands it back when `netdev_max_backlog` frames wait already.
    pub fn enqueue(&self, ifindex: u32, pkt: PacketBuf) -> Result<(), PacketBuf> {
        let mut q = self.q.lock();
        if q.len() >= NETDEV_MAX_BACKLOG {
            return Err(pkt);
        }
        q.push_back((ifindex, pkt));
        drop(q);
        self.notify.raise();
        Ok(())
    }

    /// Takes the oldest frame (`process_backlog()`'s dequeue).
    pub fn dequeue(&self) -> Option<(u32, PacketBuf)> {
        self.q.lock().pop_front()
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.q.lock().len()
    }

    /// True when no frame waits.
    pub fn is_empty(&self) -> bool {
        self.q.lock().is_empty()
    }
}

/// The driver of `lo`: every frame goes to the stack's backlog.
pub struct LoopbackDriver {
    ifindex: u32,
    backlog: Arc<Backlog>,
    counters: Arc<LoopbackDrops>,
}

/// What `lo` dropped because the backlog was full, counted when the stack
/// next polls (the driver has no access to the stack's counters).
#[derive(Debug, Default)]
pub struct LoopbackDrops(std::sync::atomic::AtomicU64);

impl LoopbackDrops {
    /// Moves the drops counted so far into `c` (as `CPU_BACKLOG`) and the
    /// device's `rx_dropped`.
    pub fn settle(&self, c: &Counters, dev: &crate::dev::NetDevice) {
        let n = self.0.swap(0, std::sync::atomic::Ordering::Relaxed);
        if n != 0 {
            c.drop_n_at(DropSite::Backlog, n);
            dev.stats.add(DevCounter::RxDropped, n);
        }
    }
}

impl std::fmt::Debug for LoopbackDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopbackDriver")
            .field("backlog", &self.backlog.len())
            .finish()
    }
}

impl LoopbackDriver {
    /// The driver of the loopback device `ifindex`, feeding `backlog`;
    /// frames the backlog refuses are counted in `drops`.
    pub fn new(ifindex: u32, backlog: Arc<Backlog>, drops: Arc<LoopbackDrops>) -> LoopbackDriver {
        LoopbackDriver {
            ifindex,
            backlog,
            counters: drops,
        }
    }
}

impl Driver for LoopbackDriver {
    /// Kernel: `loopback_xmit()`, drivers/net/loopback.c. The frame stops
    /// counting against its socket's send buffer (`skb_orphan()`), loses
    /// its route, and is queued for the receive path (`__netif_rx()`); a
    /// full backlog drops it (`CPU_BACKLOG`, `rx_dropped`). Always
    /// `NETDEV_TX_OK`.
    fn start_xmit(&mut self, mut pkt: PacketBuf, _more: bool) -> TxStatus {
        pkt.release_owner();
        pkt.meta.dst = None;
        if self.backlog.enqueue(self.ifindex, pkt).is_err() {
            self.counters
                .0
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        TxStatus::Ok
    }
}
