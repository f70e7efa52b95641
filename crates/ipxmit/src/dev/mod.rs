//! Network devices: transmit queues, drivers and taps.
//!
//! Stands for `struct net_device` and `struct netdev_queue`
//! (`include/linux/netdevice.h`), the `ndo_start_xmit` driver hook, the
//! `netif_tx_stop_queue`/`netif_tx_wake_queue` flow control, and the packet taps
//! of `dev_queue_xmit_nit` (`net/core/dev.c`). Transmission itself is in
//! [`batch`] (`dev_queue_xmit`), [`queue`] (`netdev_pick_tx`) and [`xmit`]
//! (`dev_hard_start_xmit`, `xmit_one`, `validate_xmit_skb`).

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use parking_lot::{Mutex, RwLock};

use crate::buf::PacketBuf;
use crate::sched::{Qdisc, ToFree};
use crate::stats::{Counters, DevCounter, DevStats, DropSite};
use crate::time::Instant;
use crate::wire::EthernetAddress;

pub mod batch;
pub mod dql;
pub mod last_tx;
pub mod loopback;
pub mod queue;
pub mod xmit;

pub use crate::offload::Features;

/// Link-layer type of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet II framing; neighbours resolved with ARP (`ARPHRD_ETHER`).
    Ethernet,
    /// Bare IP, no link header and no neighbours (`ARPHRD_NONE`, TUN).
    L3,
}

impl LinkType {
    /// The link header length (`dev->hard_header_len`).
    pub const fn header_len(self) -> usize {
        match self {
            LinkType::Ethernet => 14,
            LinkType::L3 => 0,
        }
    }
}

/// What a driver says about a frame it was given (`netdev_tx_t`).
#[derive(Debug)]
pub enum TxStatus {
    /// `NETDEV_TX_OK`: the frame is the driver's now (sent or in its ring).
    Ok,
    /// `NETDEV_TX_OK` after the driver dropped the frame on an error (it counts
    /// as `tx_errors`).
    Error,
    /// `NETDEV_TX_BUSY`: no room; the frame is handed back to be requeued.
    /// The stack requeues it and reschedules the queue (`dev_requeue_skb`);
    /// it never stops the queue itself. A driver that refuses should stop
    /// its queue first ([`TxQueueCtl::stop`], `netif_stop_queue`) and wake
    /// it when room returns; one that does not is simply tried again at
    /// every run of deferred work until it takes the frame.
    Busy(PacketBuf),
}

/// A transmit queue stopped by its driver (`__QUEUE_STATE_DRV_XOFF`).
pub const DRV_XOFF: u8 = 1;
/// A transmit queue stopped by byte queue limits (`__QUEUE_STATE_STACK_XOFF`).
pub const STACK_XOFF: u8 = 2;

/// Flow-control state of one transmit queue, shared with its driver.
///
/// Read at every frame by the queue's sender; aligned to 128 bytes (a
/// pair of cache lines, as [`CachePadded`] on x86-64) so that no other
/// queue's state, written by another thread, shares its lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct TxQueueCtl {
    /// `__QUEUE_STATE_DRV_XOFF` ([`DRV_XOFF`]) and
    /// `__QUEUE_STATE_STACK_XOFF` ([`STACK_XOFF`]: byte queue limits), one
    /// word so that `netif_xmit_stopped` is one load.
    state: AtomicU8,
    /// The byte queue limits, once the driver reports what it queues.
    dql: Mutex<Option<dql::Dql>>,
    /// Times byte queue limits stopped the queue.
    bql_stops: AtomicU64,
    /// The driver reports what it queues (`dql` is in use).
    bql_on: AtomicBool,
    scheduled: AtomicBool,
    notify: Arc<Notify>,
    /// Where a frame the device dropped after its driver took it is
    /// counted ([`TxQueueCtl::late_drop`]); touched on such a drop only.
    late: LateSink,
}

/// The counters a late drop goes to: the device's and the stack's.
#[derive(Debug, Default)]
struct LateSink {
    dev: Arc<DevStats>,
    counters: Arc<Counters>,
}

/// Tells the stack that deferred work is pending (the NET_TX softirq being raised).
#[derive(Debug, Default)]
pub struct Notify {
    pending: AtomicBool,
    waiter: Mutex<Option<std::thread::Thread>>,
}

impl Notify {
    /// Marks work pending and wakes a waiting runner thread.
    pub fn raise(&self) {
        self.pending.store(true, Ordering::Release);
        if let Some(t) = self.waiter.lock().as_ref() {
            t.unpark();
        }
    }

    /// Takes the pending mark (a load first: a poll that finds nothing
    /// pending writes nothing, so the senders' per-datagram reads of the
    /// mark keep their cached line).
    pub fn take(&self) -> bool {
        self.pending.load(Ordering::Acquire) && self.pending.swap(false, Ordering::AcqRel)
    }

    /// True when work is pending.
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Registers the thread to unpark on [`Notify::raise`].
    pub fn set_waiter(&self, t: Option<std::thread::Thread>) {
        *self.waiter.lock() = t;
    }
}

impl TxQueueCtl {
    fn new(notify: Arc<Notify>, dev: Arc<DevStats>, counters: Arc<Counters>) -> TxQueueCtl {
        TxQueueCtl {
            state: AtomicU8::new(0),
            dql: Mutex::new(None),
            bql_stops: AtomicU64::new(0),
            bql_on: AtomicBool::new(false),
            scheduled: AtomicBool::new(false),
            notify,
            late: LateSink { dev, counters },
        }
    }

    /// Kernel: `dev_core_stats_tx_dropped_inc()` (or a driver's own
    /// `tx_dropped` that `dev_get_stats()` adds in): `frames` frames of
    /// `bytes` bytes in all that the driver took ([`TxStatus::Ok`]) were
    /// dropped by the device afterwards. They leave the device's
    /// `tx_packets`/`tx_bytes` (counted when the driver took them) for its
    /// `tx_dropped`, and count at [`DropSite::DriverLateDrop`], so a
    /// frame is sent or dropped, never both. Device-wide: any queue's
    /// control counts for the device. `bytes` may be 0 when the driver
    /// cannot tell which frame went (they then stay in `tx_bytes`).
    #[cold]
    #[track_caller]
    pub fn late_drop(&self, frames: u64, bytes: u64) {
        let d = &self.late.dev;
        d.add(DevCounter::TxDropped, frames);
        d.add(DevCounter::TxPackets, frames.wrapping_neg());
        d.add(DevCounter::TxBytes, bytes.wrapping_neg());
        self.late
            .counters
            .drop_n_at(DropSite::DriverLateDrop, frames);
    }

    /// `netif_tx_stop_queue`: the driver has no room; the qdisc stops dequeuing.
    pub fn stop(&self) {
        self.state.fetch_or(DRV_XOFF, Ordering::AcqRel);
    }

    /// `netif_tx_wake_queue`: room again; schedule a qdisc run.
    pub fn wake(&self) {
        if self.state.fetch_and(!DRV_XOFF, Ordering::AcqRel) & DRV_XOFF != 0 {
            self.schedule();
        }
    }

    /// `netif_xmit_stopped`: by the driver, or by byte queue limits.
    pub fn is_stopped(&self) -> bool {
        self.state.load(Ordering::Acquire) != 0
    }

    /// `txq->state`: [`DRV_XOFF`] and [`STACK_XOFF`] bits.
    pub fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    /// Kernel: `netdev_tx_sent_queue()`: the driver took `bytes` for the
    /// hardware at `now`; over the byte limit the queue stops.
    pub fn sent_queue(&self, bytes: u32, now: Instant) {
        let mut g = self.dql.lock();
        let d = g.get_or_insert_with(|| {
            self.bql_on.store(true, Ordering::Relaxed);
            dql::Dql::new(now)
        });
        d.queued(bytes);
        if d.avail() >= 0 {
            return;
        }
        if self.state.fetch_or(STACK_XOFF, Ordering::AcqRel) & STACK_XOFF == 0 {
            self.bql_stops.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Kernel: `netdev_tx_completed_queue()`: the hardware finished
    /// `bytes`; back under the limit, a queue stopped by it wakes.
    pub fn completed_queue(&self, bytes: u32, now: Instant) {
        if bytes == 0 {
            return;
        }
        let mut g = self.dql.lock();
        let Some(d) = g.as_mut() else { return };
        d.completed(bytes, now);
        if d.avail() < 0 {
            return;
        }
        drop(g);
        if self.state.fetch_and(!STACK_XOFF, Ordering::AcqRel) & STACK_XOFF != 0 {
            self.schedule();
        }
    }

    /// Kernel: `qdisc_avail_bulklimit()`: the bytes a bulk dequeue may
    /// take for a queue under byte queue limits (`dql_avail`); `None` for
    /// a driver that does not report what it queues.
    pub fn bulk_limit(&self) -> Option<i64> {
        if !self.bql_on.load(Ordering::Relaxed) {
            return None;
        }
        self.dql.lock().as_ref().map(|d| i64::from(d.avail()))
    }

    /// The byte queue limits (sysfs `byte_queue_limits/`), when the driver
    /// uses them.
    pub fn bql(&self) -> Option<dql::Dql> {
        self.dql.lock().clone()
    }

    /// Times byte queue limits stopped the queue (set `STACK_XOFF` on a
    /// queue that did not have it). The kernel keeps no such counter; it
    /// shows that the limit, not the driver, held the queue back.
    pub fn bql_stops(&self) -> u64 {
        self.bql_stops.load(Ordering::Relaxed)
    }

    /// `__netif_schedule`: ask for a qdisc run from deferred work.
    pub fn schedule(&self) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            self.notify.raise();
        }
    }

    /// Takes the scheduled mark (`__QDISC_STATE_SCHED`).
    pub fn take_scheduled(&self) -> bool {
        self.scheduled.swap(false, Ordering::AcqRel)
    }
}

/// A transmit driver for one queue (`ndo_start_xmit`).
pub trait Driver: Send {
    /// Takes `pkt` for transmission. `more` is the kernel's `xmit_more`: another
    /// frame follows at once, so a driver may hold this one and ring its doorbell
    /// (make its syscall) with the last frame of the batch.
    fn start_xmit(&mut self, pkt: PacketBuf, more: bool) -> TxStatus;

    /// Called once when the driver is attached, with the queue's flow control:
    /// a driver that returns [`TxStatus::Busy`] keeps it, stops the queue
    /// before it refuses, and calls [`TxQueueCtl::wake`] when room returns
    /// (checking for room again after the stop, as a wake-up may already
    /// have happened).
    fn attach(&mut self, ctl: Arc<TxQueueCtl>) {
        let _ = ctl;
    }

    /// Sends whatever the driver holds back (a batch cut short). Called when a run
    /// ends with `more` having been true for the last frame.
    fn flush(&mut self) {}

    /// Receive side: hands each frame that arrived (link header first) to `rx`,
    /// at most `budget` of them, and returns how many (the kernel's NAPI poll).
    /// Only queue 0's driver is polled. Drivers without a receive side keep the
    /// default.
    fn poll_rx(&mut self, budget: usize, rx: &mut dyn FnMut(&[u8])) -> usize {
        let _ = (budget, rx);
        0
    }

    /// A file descriptor that becomes readable when frames arrive, for a runner
    /// thread to wait on (`None`: nothing to wait for).
    fn rx_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }

    /// When the driver next has something to do on the clock (a frame
    /// finishing on a line of some rate, which frees its ring and wakes the
    /// queue): the stack's [`crate::Stack::next_wakeup`] includes it.
    fn next_event(&self) -> Option<Instant> {
        None
    }

    /// Kernel: `NETIF_F_LLTX`. A transmit side that needs no lock (it
    /// keeps what it shares in atomics or per-thread shards), asked once
    /// when the driver is attached (after [`Driver::attach`]): frames then
    /// go to it without the queue's transmit lock (`HARD_TX_LOCK` skips
    /// the lock of an LLTX device), from several threads at once. `None`
    /// (the default): [`Driver::start_xmit`] under the lock.
    fn lltx(&self) -> Option<Arc<dyn LltxDriver>> {
        None
    }
}

/// The transmit side of a driver that does its own locking (the kernel's
/// `NETIF_F_LLTX`: `dummy`, `veth`, tunnels), called by several threads at
/// once. See [`Driver::lltx`].
pub trait LltxDriver: Send + Sync {
    /// As [`Driver::start_xmit`].
    fn start_xmit(&self, pkt: PacketBuf, more: bool) -> TxStatus;

    /// As [`Driver::flush`].
    fn flush(&self) {}
}

/// A queue's driver as the transmit path holds it: under the transmit lock,
/// or lockless (LLTX).
pub enum TxLock<'a> {
    /// `__netif_tx_lock` held.
    Held(parking_lot::MutexGuard<'a, Box<dyn Driver>>),
    /// An LLTX driver: no lock.
    Lockless(&'a dyn LltxDriver),
}

impl TxLock<'_> {
    /// The driver's `ndo_start_xmit`.
    #[inline(always)]
    pub fn start_xmit(&mut self, pkt: PacketBuf, more: bool) -> TxStatus {
        match self {
            TxLock::Held(d) => d.start_xmit(pkt, more),
            TxLock::Lockless(d) => d.start_xmit(pkt, more),
        }
    }

    /// Sends what the driver holds back.
    #[inline]
    pub fn flush(&mut self) {
        match self {
            TxLock::Held(d) => d.flush(),
            TxLock::Lockless(d) => d.flush(),
        }
    }
}

/// A packet tap (`ptype_all` handler, what `tcpdump` attaches): sees every frame
/// exactly as the driver is given it.
pub trait Tap: Send + Sync {
    /// Called for each frame before the driver gets it.
    fn tap(&self, dev: &NetDevice, pkt: &PacketBuf, now: Instant);

    /// Called for each frame the device layer or its qdisc drops at
    /// `site` (what `dropwatch` or `perf` on `skb:kfree_skb` sees, with
    /// the packet); by default nothing.
    fn drop_point(
        &self,
        _dev: &NetDevice,
        _pkt: &PacketBuf,
        _site: crate::stats::DropSite,
        _now: Instant,
    ) {
    }
}

/// One transmit queue (`struct netdev_queue`) with its qdisc and driver.
///
/// The queues of a device sit side by side in one slice, and the thread
/// sending on queue `i` reads every queue's XPS map at each batch. So,
/// as the kernel's `struct netdev_queue` is `____cacheline_aligned_in_smp`
/// with its `_xmit_lock` on a line of its own, what a sender writes at each
/// batch — the qdisc lock with the run's state, the transmit lock — is
/// padded to lines of its own ([`CachePadded`]): a thread writing its
/// queue's never takes a line another thread reads from its own queue or
/// from the read-mostly fields.
pub struct TxQueue {
    index: u16,
    /// The qdisc side, under the qdisc lock (the kernel's root lock).
    pub(crate) q: CachePadded<Mutex<QdiscSlot>>,
    /// The driver, under the transmit lock (`HARD_TX_LOCK`).
    pub(crate) driver: CachePadded<Mutex<Box<dyn Driver>>>,
    /// Its lockless transmit side, when it has one ([`Driver::lltx`]).
    lltx: Option<Arc<dyn LltxDriver>>,
    /// The queue's own qdisc is `noqueue` (`q->enqueue == NULL`): read
    /// without the qdisc lock, as the kernel reads `txq->qdisc` under RCU,
    /// so threads sending on a queueless queue share no lock at all.
    /// Written under the qdisc lock wherever the qdisc is replaced.
    noqueue: AtomicBool,
    /// `xps_cpus`: the threads ([`crate::cpu::current`]) that send on this
    /// queue, one bit each for numbers below 64 (empty: none).
    xps_cpus: AtomicU64,
    ctl: Arc<TxQueueCtl>,
    /// Its qdisc's watchdog time ([`QdiscSlot::set_watchdog`]), readable
    /// without the qdisc lock: the deferred work asks every queue for it
    /// on each pass, and must not take the lock senders contend for.
    watchdog_at: Arc<WatchdogTime>,
}

/// A qdisc's watchdog time as the queue shows it outside the qdisc lock:
/// nanoseconds of [`Instant`] plus one, 0 for none. Written under the lock
/// with the slot's own copy; a reader outside it sees the last write.
#[derive(Debug, Default)]
pub(crate) struct WatchdogTime(AtomicU64);

impl WatchdogTime {
    fn set(&self, t: Option<Instant>) {
        let v = t.map_or(0, |t| t.as_nanos().saturating_add(1));
        if self.0.load(Ordering::Relaxed) != v {
            self.0.store(v, Ordering::Release);
        }
    }

    fn get(&self) -> Option<Instant> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            v => Some(Instant::from_nanos(v - 1)),
        }
    }
}

/// A qdisc and the generic state around it (`struct Qdisc` fields owned by
/// `sch_generic.c`).
#[derive(Debug)]
pub(crate) struct QdiscSlot {
    pub(crate) qdisc: Box<dyn Qdisc>,
    /// The qdisc's handle (`1:` is `0x0001_0000`); 0 for the default.
    pub(crate) handle: u32,
    /// Packets the driver refused, sent first next time (`q->gso_skb`).
    pub(crate) requeued: std::collections::VecDeque<PacketBuf>,
    /// `qdisc_run_begin` owner flag.
    pub(crate) running: bool,
    /// Earliest time a throttled qdisc may dequeue (`qdisc_watchdog`);
    /// written through [`QdiscSlot::set_watchdog`].
    watchdog: Option<Instant>,
    /// The queue's lock-free copy of `watchdog`.
    watchdog_at: Arc<WatchdogTime>,
    /// Dropped packets waiting to be counted and freed.
    pub(crate) to_free: ToFree,
    /// This queue has no qdisc of its own: the device's root, at queue 0,
    /// serves it (a non-`mq` root on a multi-queue device, which the
    /// kernel installs once for every queue).
    pub(crate) redirect: bool,
    /// The qdisc serves several transmit queues (the kernel's
    /// `TCQ_F_ONETXQUEUE` unset): each frame goes to the queue its
    /// `queue_mapping` names, and bulk dequeue stops at a frame for
    /// another queue.
    pub(crate) shared: bool,
    /// A frame dequeued for a queue other than the batch's, sent first
    /// next time unless its queue is stopped (`q->skb_bad_txq`).
    pub(crate) bad_txq: Option<PacketBuf>,
    /// Reused buffer of frames on their way to the driver (bulk dequeue).
    /// (`None` while a run or a batch holds it: putting it back then drops
    /// nothing, where an empty placeholder deque cost a drop per packet.)
    batch: Option<std::collections::VecDeque<PacketBuf>>,
}

impl fmt::Debug for TxQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxQueue")
            .field("index", &self.index)
            .field("stopped", &self.ctl.is_stopped())
            .finish()
    }
}

impl TxQueue {
    /// Index among the device's queues.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// Flow-control state.
    pub fn ctl(&self) -> &Arc<TxQueueCtl> {
        &self.ctl
    }

    /// When this queue's qdisc, throttled, may dequeue again
    /// (`qdisc_watchdog`), read without the qdisc lock; `None` when it is
    /// not throttled.
    pub fn watchdog(&self) -> Option<Instant> {
        self.watchdog_at.get()
    }

    /// Runs `f` on the qdisc under the qdisc lock (statistics, inspection).
    pub fn with_qdisc<R>(&self, f: impl FnOnce(&dyn Qdisc) -> R) -> R {
        f(&*self.q.lock().qdisc)
    }

    /// Runs `f` on the qdisc, writable (a change of its parameters).
    pub fn with_qdisc_mut<R>(&self, f: impl FnOnce(&mut dyn Qdisc) -> R) -> R {
        f(&mut *self.q.lock().qdisc)
    }

    /// The qdisc's handle (`tc`'s `1:` is `0x0001_0000`); 0 for the default.
    pub fn qdisc_handle(&self) -> u32 {
        self.q.lock().handle
    }

    /// Packets waiting to be requeued to the driver.
    pub fn requeued_len(&self) -> usize {
        self.q.lock().requeued.len()
    }

    /// Kernel: `HARD_TX_LOCK()`, include/linux/netdevice.h. The driver,
    /// locked — or not, for an LLTX driver.
    #[inline]
    pub fn tx_lock(&self) -> TxLock<'_> {
        match &self.lltx {
            Some(d) => TxLock::Lockless(&**d),
            None => TxLock::Held(self.driver.lock()),
        }
    }

    /// True when the queue's own qdisc is `noqueue` (a queue served by a
    /// root shared from queue 0 says false).
    #[inline]
    pub fn is_noqueue(&self) -> bool {
        self.noqueue.load(Ordering::Acquire)
    }

    /// Installs `new` of `handle` under the qdisc lock (see
    /// [`QdiscSlot::install`]), the queueless mark following it.
    fn install(
        &self,
        slot: &mut QdiscSlot,
        new: Box<dyn Qdisc>,
        handle: u32,
        to_free: &mut ToFree,
    ) {
        slot.install(new, handle, to_free);
        self.noqueue
            .store(slot.qdisc.is_noqueue(), Ordering::Release);
    }

    /// True when the driver transmits without the lock (`NETIF_F_LLTX`).
    pub fn is_lltx(&self) -> bool {
        self.lltx.is_some()
    }

    /// Sysfs `queues/tx-N/xps_cpus`: the thread numbers (bit `i`: thread
    /// [`crate::cpu::current`] `== i`, below 64) that send on this queue.
    pub fn xps_cpus(&self) -> u64 {
        self.xps_cpus.load(Ordering::Relaxed)
    }
}

/// Static configuration of a device.
#[derive(Clone, Debug)]
pub struct DevConfig {
    /// Interface name.
    pub name: String,
    /// Link type.
    pub link: LinkType,
    /// MTU (bytes of IP datagram).
    pub mtu: u32,
    /// Hardware address (Ethernet).
    pub hw_addr: EthernetAddress,
    /// Offload features.
    pub features: Features,
    /// Queue length limit of the default qdiscs (`txqueuelen`).
    pub txqueuelen: u32,
}

impl DevConfig {
    /// An Ethernet device `name` with MTU 1500, txqueuelen 1000, no offloads.
    pub fn ethernet(name: &str, hw_addr: EthernetAddress) -> DevConfig {
        DevConfig {
            name: name.to_string(),
            link: LinkType::Ethernet,
            mtu: 1500,
            hw_addr,
            features: Features::NONE,
            txqueuelen: 1000,
        }
    }
}

/// A network device (`struct net_device`).
pub struct NetDevice {
    ifindex: u32,
    name: String,
    link: LinkType,
    hw_addr: EthernetAddress,
    mtu: AtomicU32,
    features: AtomicU32,
    up: AtomicBool,
    txqueuelen: u32,
    queues: Box<[TxQueue]>,
    taps: RwLock<Vec<Arc<dyn Tap>>>,
    nit_active: AtomicBool,
    addrs: RwLock<Vec<ipnet::Ipv4Net>>,
    /// The handle of an `mq` root (`0:`: the default of a multi-queue
    /// device), or `None` when the root is another qdisc, then copied on
    /// every queue.
    mq_root: Mutex<Option<u32>>,
    /// Some queue has an XPS map ([`NetDevice::set_xps_cpus`]).
    xps_on: AtomicBool,
    /// Counters as `ip -s link` shows them (shared with the queues'
    /// controls, for [`TxQueueCtl::late_drop`]).
    pub stats: Arc<DevStats>,
    /// `IFF_LOOPBACK`: the loopback device (`lo`).
    loopback: bool,
    /// The tap keeping the last IPv4 datagram sent, once asked for.
    last_tx: RwLock<Option<Arc<last_tx::LastTx>>>,
}

impl fmt::Debug for NetDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetDevice")
            .field("ifindex", &self.ifindex)
            .field("name", &self.name)
            .field("mtu", &self.mtu())
            .field("queues", &self.queues.len())
            .finish()
    }
}

/// Errors of device configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DevError {
    /// MTU outside what the device accepts (`EINVAL` from `dev_set_mtu`).
    #[error("mtu {mtu} out of range for {dev} (min {min}, max {max})")]
    BadMtu {
        /// Device name.
        dev: String,
        /// Requested MTU.
        mtu: u32,
        /// Smallest accepted.
        min: u32,
        /// Largest accepted.
        max: u32,
    },
    /// A device needs at least one transmit queue with a driver.
    #[error("device {0} needs at least one transmit queue (driver)")]
    NoQueues(String),
    /// Queue index out of range.
    #[error("device {dev} has no transmit queue {index}")]
    NoSuchQueue {
        /// Device name.
        dev: String,
        /// Requested index.
        index: usize,
    },
    /// Name empty or longer than `IFNAMSIZ - 1`.
    #[error("invalid interface name {0:?} (1..=15 bytes, no '/', ':' or whitespace)")]
    BadName(String),
}

/// Smallest MTU of an IPv4-capable device.
pub const MIN_MTU: u32 = crate::route::IP_MIN_MTU;
/// Largest MTU of a device.
pub const MAX_MTU: u32 = crate::route::IP_MAX_MTU;

fn check_name(name: &str) -> Result<(), DevError> {
    let bad = name.is_empty()
        || name.len() > 15
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if bad {
        Err(DevError::BadName(name.to_string()))
    } else {
        Ok(())
    }
}

fn check_mtu(name: &str, mtu: u32) -> Result<(), DevError> {
    if (MIN_MTU..=MAX_MTU).contains(&mtu) {
        Ok(())
    } else {
        Err(DevError::BadMtu {
            dev: name.to_string(),
            mtu,
            min: MIN_MTU,
            max: MAX_MTU,
        })
    }
}

impl NetDevice {
    /// Builds a device with one transmit queue per driver, each with the qdisc
    /// `make_qdisc` returns. The stack assigns `ifindex` and `notify`.
    pub fn new(
        ifindex: u32,
        cfg: DevConfig,
        drivers: Vec<Box<dyn Driver>>,
        make_qdisc: &dyn Fn(&DevConfig) -> Box<dyn Qdisc>,
        notify: Arc<Notify>,
        counters: Arc<Counters>,
    ) -> Result<NetDevice, DevError> {
        check_name(&cfg.name)?;
        check_mtu(&cfg.name, cfg.mtu)?;
        if drivers.is_empty() {
            return Err(DevError::NoQueues(cfg.name));
        }
        let stats = Arc::new(DevStats::default());
        let queues = drivers
            .into_iter()
            .enumerate()
            .map(|(i, mut d)| {
                let late = (stats.clone(), counters.clone());
                let ctl = Arc::new(TxQueueCtl::new(notify.clone(), late.0, late.1));
                d.attach(ctl.clone());
                let qdisc = make_qdisc(&cfg);
                let watchdog_at = Arc::new(WatchdogTime::default());
                TxQueue {
                    index: i as u16,
                    noqueue: AtomicBool::new(qdisc.is_noqueue()),
                    q: CachePadded::new(Mutex::new(QdiscSlot::new(qdisc, &watchdog_at))),
                    lltx: d.lltx(),
                    driver: CachePadded::new(Mutex::new(d)),
                    xps_cpus: AtomicU64::new(0),
                    ctl,
                    watchdog_at,
                }
            })
            .collect::<Box<[TxQueue]>>();
        let mq_root = Mutex::new((queues.len() > 1).then_some(0));
        Ok(NetDevice {
            mq_root,
            xps_on: AtomicBool::new(false),
            ifindex,
            name: cfg.name,
            link: cfg.link,
            hw_addr: cfg.hw_addr,
            mtu: AtomicU32::new(cfg.mtu),
            features: AtomicU32::new(cfg.features.bits()),
            up: AtomicBool::new(true),
            txqueuelen: cfg.txqueuelen,
            queues,
            taps: RwLock::new(Vec::new()),
            nit_active: AtomicBool::new(false),
            addrs: RwLock::new(Vec::new()),
            stats,
            loopback: false,
            last_tx: RwLock::new(None),
        })
    }

    /// This device as the loopback device: `IFF_LOOPBACK` and `lo`'s MTU
    /// (64 KiB, above what `ip link set mtu` accepts).
    pub(crate) fn into_loopback(mut self) -> NetDevice {
        self.loopback = true;
        self.mtu.store(loopback::LOOPBACK_MTU, Ordering::Relaxed);
        self
    }

    /// `IFF_LOOPBACK`: the loopback device.
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }

    /// Starts keeping the first fragment of the last IPv4 datagram the
    /// device sends (a tap, [`last_tx::LastTx`]; nothing is kept, and
    /// nothing is spent per frame, until this is called).
    pub fn remember_tx(&self) -> Arc<last_tx::LastTx> {
        let mut g = self.last_tx.write();
        if let Some(t) = g.as_ref() {
            return t.clone();
        }
        let t = Arc::new(last_tx::LastTx::default());
        *g = Some(t.clone());
        drop(g);
        self.add_tap(t.clone());
        t
    }

    /// What [`NetDevice::remember_tx`] kept: the last IPv4 datagram's
    /// first fragment, or `None` when not asked for or none sent since.
    pub fn last_tx(&self) -> Option<last_tx::Sent> {
        self.last_tx.read().as_ref().and_then(|t| t.get())
    }

    /// Interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Link type.
    pub fn link(&self) -> LinkType {
        self.link
    }

    /// Hardware address.
    pub fn hw_addr(&self) -> EthernetAddress {
        self.hw_addr
    }

    /// Current MTU.
    #[inline]
    pub fn mtu(&self) -> u32 {
        self.mtu.load(Ordering::Relaxed)
    }

    /// Sets the MTU (`dev_set_mtu`), 68..=65535.
    pub fn set_mtu(&self, mtu: u32) -> Result<(), DevError> {
        check_mtu(&self.name, mtu)?;
        self.mtu.store(mtu, Ordering::Relaxed);
        Ok(())
    }

    /// Offload features in force.
    #[inline]
    pub fn features(&self) -> Features {
        Features::from_bits(self.features.load(Ordering::Relaxed))
    }

    /// Sets the offload features (`ethtool -K`).
    pub fn set_features(&self, f: Features) {
        self.features.store(f.bits(), Ordering::Relaxed);
    }

    /// Administrative state (`IFF_UP`).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Sets the administrative state (`ip link set up|down`).
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    /// `txqueuelen`.
    pub fn txqueuelen(&self) -> u32 {
        self.txqueuelen
    }

    /// Link header bytes to reserve (`LL_RESERVED_SPACE`, rounded up to 16).
    #[inline]
    pub fn ll_reserved_space(&self) -> usize {
        (self.link.header_len() + 15) & !15
    }

    /// The transmit queues.
    pub fn queues(&self) -> &[TxQueue] {
        &self.queues
    }

    /// Kernel: `netif_set_xps_queue()` (sysfs `xps_cpus`). Threads whose
    /// number ([`crate::cpu::current`]) has its bit in `cpus` send on
    /// queue `index`; a thread in no queue's map, or above 63, falls back
    /// to the flow hash.
    pub fn set_xps_cpus(&self, index: usize, cpus: u64) -> Result<(), DevError> {
        let q = self
            .queues
            .get(index)
            .ok_or_else(|| DevError::NoSuchQueue {
                dev: self.name.clone(),
                index,
            })?;
        q.xps_cpus.store(cpus, Ordering::Relaxed);
        let any = self.queues.iter().any(|q| q.xps_cpus() != 0);
        self.xps_on.store(any, Ordering::Relaxed);
        Ok(())
    }

    /// The map multi-queue drivers set up (`netif_set_xps_queue` of CPU
    /// `i` on queue `i % n`: `virtio_net`, `ixgbe`, `mlx5`): thread `i`
    /// sends on queue `i % n`, so threads alive at once keep to queues of
    /// their own while there are as many queues as threads.
    pub fn set_xps_default(&self) {
        let n = self.queues.len();
        for (i, q) in self.queues.iter().enumerate() {
            let cpus = (i..64).step_by(n).fold(0u64, |m, c| m | 1 << c);
            q.xps_cpus.store(cpus, Ordering::Relaxed);
        }
        self.xps_on.store(n > 1, Ordering::Relaxed);
    }

    /// Kernel: `get_xps_queue()`, net/core/dev.c. The queue the calling
    /// thread's map names (among several, the flow `hash` picks one);
    /// `None` without a map for it.
    #[inline]
    pub fn xps_queue(&self, hash: u32) -> Option<usize> {
        if !self.xps_on.load(Ordering::Relaxed) {
            return None;
        }
        self.xps_lookup(crate::cpu::current(), hash)
    }

    /// [`NetDevice::xps_queue`] for thread number `cpu`.
    fn xps_lookup(&self, cpu: usize, hash: u32) -> Option<usize> {
        let bit = 1u64.checked_shl(u32::try_from(cpu).ok()?)?;
        let mapped = || self.queues.iter().filter(move |q| q.xps_cpus() & bit != 0);
        let n = mapped().count();
        match n {
            0 => None,
            1 => mapped().next().map(|q| q.index as usize),
            _ => {
                let k = queue::reciprocal_scale(hash, n as u32) as usize;
                mapped().nth(k).map(|q| q.index as usize)
            }
        }
    }

    /// Attaches a tap (`dev_add_pack` on `ETH_P_ALL`).
    pub fn add_tap(&self, tap: Arc<dyn Tap>) {
        let mut t = self.taps.write();
        t.push(tap);
        self.nit_active.store(true, Ordering::Release);
    }

    /// Detaches every tap.
    pub fn clear_taps(&self) {
        self.taps.write().clear();
        self.nit_active.store(false, Ordering::Release);
    }

    /// `dev_nit_active`: any tap attached.
    #[inline]
    pub fn nit_active(&self) -> bool {
        self.nit_active.load(Ordering::Acquire)
    }

    /// Addresses configured on the device (`ip addr`).
    pub fn addrs(&self) -> Vec<ipnet::Ipv4Net> {
        self.addrs.read().clone()
    }

    /// True when an address configured on the device satisfies `f` (read
    /// in place: nothing is copied, so the receive and send paths may ask).
    pub fn any_addr(&self, f: impl Fn(&ipnet::Ipv4Net) -> bool) -> bool {
        self.addrs.read().iter().any(f)
    }

    /// The first configured address that satisfies `f` (read in place).
    pub fn find_addr(&self, f: impl Fn(Ipv4Addr) -> bool) -> Option<Ipv4Addr> {
        self.addrs.read().iter().map(|n| n.addr()).find(|&a| f(a))
    }

    /// The primary address: the first configured one (`inet_select_addr`).
    pub fn primary_addr(&self) -> Option<Ipv4Addr> {
        self.addrs.read().first().map(|n| n.addr())
    }

    /// Adds an address; returns false when it was already there.
    pub fn add_addr(&self, net: ipnet::Ipv4Net) -> bool {
        let mut a = self.addrs.write();
        if a.contains(&net) {
            return false;
        }
        a.push(net);
        true
    }

    /// Kernel: `__inet_del_ifa()`. Removes the address `net`; a primary
    /// takes the secondaries of its subnet with it (`promote_secondaries`
    /// is 0 by default). Returns the addresses removed (none when `net`
    /// was not there).
    pub fn del_addr(&self, net: ipnet::Ipv4Net) -> Vec<ipnet::Ipv4Net> {
        let mut a = self.addrs.write();
        let Some(at) = a.iter().position(|x| *x == net) else {
            return Vec::new();
        };
        let same_subnet =
            |x: &ipnet::Ipv4Net| x.prefix_len() == net.prefix_len() && net.contains(&x.addr());
        let primary = !a[..at].iter().any(same_subnet);
        let mut removed = vec![a.remove(at)];
        if primary {
            let mut i = at;
            while i < a.len() {
                if same_subnet(&a[i]) {
                    removed.push(a.remove(i));
                } else {
                    i += 1;
                }
            }
        }
        removed
    }

    /// Replaces the qdisc of queue `index` (`tc qdisc replace`); packets in the
    /// old one are dropped into the returned list, as the kernel's `qdisc_reset`.
    pub fn replace_qdisc(
        &self,
        index: usize,
        new: Box<dyn Qdisc>,
        handle: u32,
    ) -> Result<ToFree, DevError> {
        let q = self
            .queues
            .get(index)
            .ok_or_else(|| DevError::NoSuchQueue {
                dev: self.name.clone(),
                index,
            })?;
        let mut to_free = ToFree::default();
        q.install(&mut q.q.lock(), new, handle, &mut to_free);
        Ok(to_free)
    }

    /// Kernel: `dev_graft_qdisc()` of a non-`mq` root on every transmit
    /// queue: `new` is installed once, at queue 0, and every other queue
    /// is served by it; the packets of the old qdiscs are dropped into
    /// the returned list.
    pub fn share_root(&self, new: Box<dyn Qdisc>, handle: u32) -> ToFree {
        let mut to_free = ToFree::default();
        let shared = self.queues.len() > 1;
        if let Some(q0) = self.queues.first() {
            let mut slot = q0.q.lock();
            q0.install(&mut slot, new, handle, &mut to_free);
            slot.shared = shared;
        }
        for q in self.queues.iter().skip(1) {
            let mut slot = q.q.lock();
            slot.install(Box::new(crate::sched::Noqueue::default()), 0, &mut to_free);
            slot.redirect = true;
            // Served by queue 0's root: not queueless of its own.
            q.noqueue.store(false, Ordering::Release);
        }
        to_free
    }

    /// The queue whose qdisc serves `txq` (itself, or queue 0 under a
    /// shared root), with that qdisc locked.
    pub(crate) fn root_slot<'a>(
        &'a self,
        txq: &'a TxQueue,
    ) -> (&'a TxQueue, parking_lot::MutexGuard<'a, QdiscSlot>) {
        let slot = txq.q.lock();
        if !slot.redirect {
            return (txq, slot);
        }
        drop(slot);
        let q0 = &self.queues[0];
        (q0, q0.q.lock())
    }

    /// The queues whose qdiscs make up the device's tree: every queue
    /// under `mq`, else queue 0 alone (whose root the others share).
    pub fn trees(&self) -> &[TxQueue] {
        if self.mq_root().is_some() {
            &self.queues
        } else {
            &self.queues[..1]
        }
    }

    /// The handle of the `mq` root, `None` when the root is not `mq`.
    pub fn mq_root(&self) -> Option<u32> {
        *self.mq_root.lock()
    }

    /// Records the root as `mq` of `handle`, or (`None`) as another qdisc.
    pub fn set_mq_root(&self, handle: Option<u32>) {
        *self.mq_root.lock() = handle;
    }

    /// The root qdisc's handle and kind: the `mq`'s, else the first
    /// queue's.
    pub fn root_qdisc(&self) -> (u32, &'static str) {
        if let Some(h) = self.mq_root() {
            return (h, "mq");
        }
        match self.queues.first() {
            Some(q) => {
                let slot = q.q.lock();
                (slot.handle, slot.qdisc.kind())
            }
            None => (0, "noqueue"),
        }
    }
}

impl QdiscSlot {
    pub(crate) fn new(qdisc: Box<dyn Qdisc>, watchdog_at: &Arc<WatchdogTime>) -> QdiscSlot {
        QdiscSlot {
            qdisc,
            handle: 0,
            requeued: std::collections::VecDeque::with_capacity(8),
            running: false,
            watchdog: None,
            watchdog_at: watchdog_at.clone(),
            redirect: false,
            shared: false,
            bad_txq: None,
            to_free: ToFree::with_capacity(64),
            batch: Some(std::collections::VecDeque::with_capacity(128)),
        }
    }

    /// Kernel: `qdisc_watchdog_schedule_ns()` / `qdisc_watchdog_cancel()`:
    /// the earliest time the throttled qdisc may dequeue, or none.
    pub(crate) fn set_watchdog(&mut self, t: Option<Instant>) {
        self.watchdog = t;
        self.watchdog_at.set(t);
    }

    /// The watchdog time ([`QdiscSlot::set_watchdog`]).
    pub(crate) fn watchdog(&self) -> Option<Instant> {
        self.watchdog
    }

    /// Takes the reusable frame buffer (an empty one if it is out).
    pub(crate) fn take_batch(&mut self) -> std::collections::VecDeque<PacketBuf> {
        self.batch.take().unwrap_or_default()
    }

    /// Puts the frame buffer back.
    pub(crate) fn put_batch(&mut self, f: std::collections::VecDeque<PacketBuf>) {
        self.batch = Some(f);
    }

    /// Nothing queued, the requeued packets included.
    pub(crate) fn is_empty(&self) -> bool {
        self.requeued.is_empty() && self.bad_txq.is_none() && self.qdisc.stats().qlen == 0
    }

    /// Kernel: `qdisc_graft()`'s replacement of one queue's qdisc: the old
    /// one reset (`qdisc_reset`), its packets and the requeued ones dropped
    /// into `to_free`, `new` of `handle` in its place serving this queue
    /// alone.
    fn install(&mut self, new: Box<dyn Qdisc>, handle: u32, to_free: &mut ToFree) {
        self.qdisc.reset(to_free);
        let held = self.requeued.drain(..).chain(self.bad_txq.take());
        for p in held {
            to_free.push(p, crate::stats::DropReason::QueuePurge);
        }
        self.qdisc = new;
        self.handle = handle;
        self.set_watchdog(None);
        (self.redirect, self.shared) = (false, false);
    }

    /// `__dev_xmit_skb`'s bypass condition: a qdisc that allows it
    /// (`TCQ_F_CAN_BYPASS`), empty, and not running.
    pub(crate) fn can_bypass_now(&self) -> bool {
        self.qdisc.can_bypass() && self.is_empty() && !self.running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes every frame.
    struct Sink;

    impl Driver for Sink {
        fn start_xmit(&mut self, _pkt: PacketBuf, _more: bool) -> TxStatus {
            TxStatus::Ok
        }
    }

    fn device(queues: usize) -> NetDevice {
        let cfg = DevConfig::ethernet("eth0", EthernetAddress([2, 0, 0, 0, 0, 1]));
        let drivers = (0..queues)
            .map(|_| Box::new(Sink) as Box<dyn Driver>)
            .collect();
        let qdisc = |_: &DevConfig| Box::new(crate::sched::Noqueue::default()) as Box<dyn Qdisc>;
        NetDevice::new(1, cfg, drivers, &qdisc, Arc::default(), Arc::default()).unwrap()
    }

    #[test]
    fn xps_maps_a_thread_number_to_its_queue_and_the_hash_picks_among_several() {
        let dev = device(4);
        assert_eq!(dev.xps_queue(7), None, "no map: the flow hash decides");
        dev.set_xps_default();
        for cpu in 0..64 {
            assert_eq!(dev.xps_lookup(cpu, 0xdead_beef), Some(cpu % 4), "cpu {cpu}");
        }
        assert_eq!(dev.xps_lookup(64, 1), None, "beyond the map's 64 bits");
        assert_eq!(dev.xps_lookup(crate::cpu::RETIRED, 1), None);
        // Thread 5 on queues 1 and 3: the hash's upper bits choose.
        dev.set_xps_cpus(1, 1 << 5).unwrap();
        dev.set_xps_cpus(3, 1 << 5 | 1 << 3).unwrap();
        dev.set_xps_cpus(0, 0).unwrap();
        dev.set_xps_cpus(2, 0).unwrap();
        assert_eq!(dev.xps_lookup(5, 0x1000_0000), Some(1));
        assert_eq!(dev.xps_lookup(5, 0xf000_0000), Some(3));
        assert_eq!(dev.xps_lookup(0, 0), None, "thread 0 has no queue now");
        assert!(dev.set_xps_cpus(4, 1).is_err());
    }

    /// The 128-byte blocks (cache-line pairs) `x` lies in.
    fn blocks<T: ?Sized>(x: &T) -> std::ops::RangeInclusive<usize> {
        let a = x as *const T as *const u8 as usize;
        a / 128..=(a + std::mem::size_of_val(x).max(1) - 1) / 128
    }

    /// What queue `q`'s sender writes at each batch (the qdisc lock and
    /// run state, the qdisc's counters, the transmit lock), and everything
    /// of the queue (the queue itself, its qdisc, its flow control).
    fn queue_blocks(q: &TxQueue) -> (Vec<usize>, Vec<usize>) {
        let slot = q.q.lock();
        let qd = blocks::<dyn Qdisc>(&*slot.qdisc);
        let written = blocks(&q.q).chain(blocks(&q.driver)).chain(qd.clone());
        let whole = blocks(q).chain(blocks(&**q.ctl())).chain(qd);
        (written.collect(), whole.collect())
    }

    /// Threads sending on queues of their own share no cache line: what
    /// one queue's sender writes at each batch is nowhere near anything of
    /// another queue — not its neighbour in the queue slice (whose XPS map
    /// every sender reads), its qdisc or its flow control (the false
    /// sharing a profile of two senders on two pfifo_fast queues showed:
    /// their qdisc locks and XPS reads missing the cache at each batch).
    #[test]
    fn a_queues_per_batch_writes_share_no_cache_line_with_another_queue() {
        let cfg = DevConfig::ethernet("eth0", EthernetAddress([2, 0, 0, 0, 0, 1]));
        let drivers = (0..4).map(|_| Box::new(Sink) as Box<dyn Driver>).collect();
        let qdisc = |_: &DevConfig| Box::new(crate::sched::PfifoFast::new(1000)) as Box<dyn Qdisc>;
        let dev = NetDevice::new(1, cfg, drivers, &qdisc, Arc::default(), Arc::default()).unwrap();
        let fifo = || Box::new(crate::sched::Pfifo::new(100)) as Box<dyn Qdisc>;
        dev.replace_qdisc(3, fifo(), 0x4_0000).unwrap();
        let qs: Vec<_> = dev.queues().iter().map(queue_blocks).collect();
        for (i, (written, _)) in qs.iter().enumerate() {
            for (j, (_, touched)) in qs.iter().enumerate().filter(|(j, _)| *j != i) {
                let shared: Vec<_> = written.iter().filter(|b| touched.contains(b)).collect();
                assert!(
                    shared.is_empty(),
                    "queue {i} writes {shared:?} of queue {j}"
                );
            }
        }
    }

    #[test]
    fn the_queueless_mark_follows_every_qdisc_replacement() {
        let dev = device(2);
        assert!(dev.queues().iter().all(TxQueue::is_noqueue));
        let fifo = || Box::new(crate::sched::PfifoFast::new(1000)) as Box<dyn Qdisc>;
        dev.replace_qdisc(1, fifo(), 0).unwrap();
        assert!(dev.queues()[0].is_noqueue() && !dev.queues()[1].is_noqueue());
        dev.share_root(Box::new(crate::sched::Noqueue::default()), 0);
        let marks: Vec<bool> = dev.queues().iter().map(TxQueue::is_noqueue).collect();
        assert_eq!(marks, [true, false], "queue 1 is served by queue 0's root");
        dev.share_root(fifo(), 0x1_0000);
        assert!(!dev.queues()[0].is_noqueue());
    }

    #[test]
    fn a_device_without_a_lockless_driver_takes_the_transmit_lock() {
        let dev = device(1);
        let q = &dev.queues()[0];
        assert!(!q.is_lltx());
        let held = q.tx_lock();
        assert!(matches!(held, TxLock::Held(_)));
        assert!(q.driver.try_lock().is_none(), "HARD_TX_LOCK is held");
    }

    #[test]
    fn bql_stops_count_each_stop_once_and_completions_wake() {
        let ctl = TxQueueCtl::default();
        let t = Instant::from_nanos(0);
        ctl.sent_queue(1000, t);
        ctl.sent_queue(1000, t);
        assert!(ctl.is_stopped());
        assert_eq!(ctl.bql_stops(), 1, "already stopped: not counted again");
        ctl.completed_queue(2000, t);
        assert!(!ctl.is_stopped());
        assert!(ctl.take_scheduled(), "the wake-up reschedules the queue");
        ctl.sent_queue(3000, t);
        assert_eq!(ctl.bql_stops(), 2);
    }
}
