//! The in-memory wire: frames a device transmits land in a bounded ring that a
//! consumer drains.
//!
//! Stands for a NIC's transmit ring with its completion interrupt, and for what
//! virtual drivers (`veth_xmit`, `tun_net_xmit`) do on transmit: the frame is
//! orphaned from its socket's send budget (`skb_orphan`) and handed over. When the
//! ring is full the driver stops its queue (`netif_tx_stop_queue`) and returns
//! busy, so the qdisc requeues; the consumer taking a frame wakes stopped queues
//! (`netif_tx_wake_queue`), which reschedules their qdisc runs.
//!
//! A wire may have a line rate ([`MemWire::with_rate`]): the device then
//! serialises its frames one after another, each taking `len * 8 / rate`
//! on the stack's clock, and the far end only takes a frame once it has
//! been sent; the ring is the NIC's transmit ring, full when frames wait
//! faster than the line drains them. [`Driver::next_event`] tells the
//! stack when the next frame completes, so that on the virtual clock
//! time steps to it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use ipxmit::dev::{Driver, LltxDriver, TxQueueCtl, TxStatus};
use ipxmit::time::{Clock, Instant};
use ipxmit::PacketBuf;
use parking_lot::Mutex;

/// Nanoseconds in a second.
const NSEC_PER_SEC: u128 = 1_000_000_000;

/// A wire with a line rate: frames in the transmit ring with the time each
/// finishes on the line.
struct Line {
    bits_per_sec: u64,
    clock: Arc<dyn Clock>,
    /// When the line is free again (the last frame's end), ns.
    busy_until: u64,
    /// Frames with their end time and the queue that sent them (for its
    /// completion, `netdev_tx_completed_queue`).
    ring: VecDeque<(u64, PacketBuf, Option<Arc<TxQueueCtl>>)>,
    capacity: usize,
}

impl Line {
    /// The time `len` bytes take on the line, ns (rounded up).
    fn wire_time(&self, len: usize) -> u64 {
        let bits = len as u128 * 8 * NSEC_PER_SEC;
        bits.div_ceil(u128::from(self.bits_per_sec.max(1))) as u64
    }
}

/// A bounded in-memory wire shared by the transmit queues of one device and
/// its consumer.
pub struct MemWire {
    ring: ArrayQueue<PacketBuf>,
    line: Option<Mutex<Line>>,
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
            line: None,
            stopped: Mutex::new(Vec::new()),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            busy: AtomicU64::new(0),
        })
    }

    /// A wire of `bits_per_sec` whose transmit ring holds `capacity`
    /// frames, timed on `clock` (the stack's).
    pub fn with_rate(capacity: usize, bits_per_sec: u64, clock: Arc<dyn Clock>) -> Arc<MemWire> {
        Arc::new(MemWire {
            ring: ArrayQueue::new(1),
            line: Some(Mutex::new(Line {
                bits_per_sec,
                clock,
                busy_until: 0,
                ring: VecDeque::with_capacity(capacity.clamp(1, 4096)),
                capacity: capacity.max(1),
            })),
            stopped: Mutex::new(Vec::new()),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            busy: AtomicU64::new(0),
        })
    }

    /// The line rate, bits per second (`None`: frames leave at once).
    pub fn rate(&self) -> Option<u64> {
        self.line.as_ref().map(|l| l.lock().bits_per_sec)
    }

    /// When the frame now on the line finishes (`None`: nothing in flight).
    pub fn next_completion(&self) -> Option<Instant> {
        let l = self.line.as_ref()?.lock();
        l.ring.front().map(|(t, ..)| Instant::from_nanos(*t))
    }

    /// A driver for one transmit queue of the device on this wire:
    /// lockless (`NETIF_F_LLTX`, as `veth`), the ring being a lock-free
    /// queue (a rated wire's line has a lock of its own).
    pub fn driver(self: &Arc<Self>) -> Box<dyn Driver> {
        Box::new(MemDriver {
            wire: self.clone(),
            xmit: None,
        })
    }

    /// `n` drivers, one per transmit queue.
    pub fn drivers(self: &Arc<Self>, n: usize) -> Vec<Box<dyn Driver>> {
        (0..n.max(1)).map(|_| self.driver()).collect()
    }

    /// Takes the oldest frame (on a rated wire, only one the line has
    /// finished sending), waking queues stopped for lack of room.
    pub fn pop(&self) -> Option<PacketBuf> {
        let f = self.take_one()?;
        self.wake_stopped();
        Some(f)
    }

    /// Takes every frame now on the wire (on a rated wire, those the line
    /// has finished), calling `f` on each.
    pub fn drain(&self, mut f: impl FnMut(PacketBuf)) -> usize {
        let mut n = 0;
        while let Some(p) = self.take_one() {
            f(p);
            n += 1;
        }
        if n > 0 {
            self.wake_stopped();
        }
        n
    }

    /// The next finished frame, without waking anyone.
    fn take_one(&self) -> Option<PacketBuf> {
        let Some(l) = &self.line else {
            return self.ring.pop();
        };
        let mut l = l.lock();
        let now = l.clock.now();
        let (_, pkt, ctl) = match l.ring.front() {
            Some((t, ..)) if *t <= now.as_nanos() => l.ring.pop_front()?,
            _ => return None,
        };
        drop(l);
        if let Some(c) = ctl {
            c.completed_queue(pkt.len() as u32, now);
        }
        Some(pkt)
    }

    fn wake_stopped(&self) {
        let mut s = self.stopped.lock();
        for ctl in s.drain(..) {
            ctl.wake();
        }
    }

    /// Frames waiting for the consumer (on a rated wire, also those still
    /// on the line).
    pub fn len(&self) -> usize {
        match &self.line {
            Some(l) => l.lock().ring.len(),
            None => self.ring.len(),
        }
    }

    /// True when no frame waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts `pkt` on the wire: `Err` gives it back when the ring is full.
    /// On a rated wire the queue `ctl` counts it for its byte limits.
    fn push(&self, pkt: PacketBuf, ctl: Option<&Arc<TxQueueCtl>>) -> Result<(), PacketBuf> {
        let Some(l) = &self.line else {
            return self.ring.push(pkt);
        };
        let mut l = l.lock();
        if l.ring.len() >= l.capacity {
            return Err(pkt);
        }
        let now = l.clock.now();
        let start = l.busy_until.max(now.as_nanos());
        let end = start + l.wire_time(pkt.len());
        l.busy_until = end;
        let len = pkt.len() as u32;
        l.ring.push_back((end, pkt, ctl.cloned()));
        drop(l);
        if let Some(c) = ctl {
            c.sent_queue(len, now);
        }
        Ok(())
    }

    /// Is the ring full?
    fn is_full(&self) -> bool {
        match &self.line {
            Some(l) => {
                let l = l.lock();
                l.ring.len() >= l.capacity
            }
            None => self.ring.is_full(),
        }
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
    /// The transmit side, made when the queue attaches it.
    xmit: Option<Arc<MemXmit>>,
}

/// The lockless transmit side of a [`MemDriver`].
struct MemXmit {
    wire: Arc<MemWire>,
    ctl: Arc<TxQueueCtl>,
}

impl Driver for MemDriver {
    fn attach(&mut self, ctl: Arc<TxQueueCtl>) {
        self.xmit = Some(Arc::new(MemXmit {
            wire: self.wire.clone(),
            ctl,
        }));
    }

    fn next_event(&self) -> Option<Instant> {
        self.wire.next_completion()
    }

    fn start_xmit(&mut self, pkt: PacketBuf, more: bool) -> TxStatus {
        match &self.xmit {
            Some(x) => x.start_xmit(pkt, more),
            None => xmit_on(&self.wire, None, pkt),
        }
    }

    fn lltx(&self) -> Option<Arc<dyn LltxDriver>> {
        self.xmit.clone().map(|x| x as Arc<dyn LltxDriver>)
    }
}

impl LltxDriver for MemXmit {
    fn start_xmit(&self, pkt: PacketBuf, _more: bool) -> TxStatus {
        xmit_on(&self.wire, Some(&self.ctl), pkt)
    }
}

/// Puts `pkt` on `wire` for the queue `ctl`; a full ring stops the queue
/// and hands the frame back.
fn xmit_on(wire: &MemWire, ctl: Option<&Arc<TxQueueCtl>>, mut pkt: PacketBuf) -> TxStatus {
    let len = pkt.len() as u64;
    // Orphaned (`skb_orphan`) once on the wire; a refused frame goes
    // back to be requeued still charged to its socket.
    let charge = pkt.detach_owner();
    match wire.push(pkt, ctl) {
        Ok(()) => {
            drop(charge);
            wire.frames.fetch_add(1, Ordering::Relaxed);
            wire.bytes.fetch_add(len, Ordering::Relaxed);
            TxStatus::Ok
        }
        Err(mut pkt) => {
            pkt.reattach_owner(charge);
            wire.busy.fetch_add(1, Ordering::Relaxed);
            if let Some(ctl) = ctl {
                ctl.stop();
                wire.stopped.lock().push(ctl.clone());
                // The consumer may have made room between the push and the
                // stop: do not sleep on a wake-up that already happened.
                if !wire.is_full() {
                    wire.wake_stopped();
                }
            }
            TxStatus::Busy(pkt)
        }
    }
}
