//! Transmit-queue bookkeeping shared by the ring drivers: [`packet`]
//! (AF_PACKET, `sendmmsg` batches or a `PACKET_TX_RING`) and [`xdp`]
//! (AF_XDP TX and completion rings).
//!
//! Stands for the part of a NIC driver that is the same whatever its ring
//! looks like: frames in flight until the completion is seen, the queue
//! stopped (`netif_tx_stop_queue`) when the ring has no room after a kick
//! and a completion scan, and woken (`netif_tx_wake_queue`) from the
//! transmit-completion poll once there is room and nothing waits; the
//! doorbell rung at the end of a batch (`xmit_more` false) or when the
//! batch is full. What a ring is — slots with a status word, or
//! descriptors and a completion ring over a UMEM — is the driver's
//! [`RingTx`]; when the completion is seen — `POLLOUT` on the socket, a
//! retry timer, a scan of the ring in memory — is its [`Policy`].
//!
//! [`packet`]: crate::packet
//! [`xdp`]: crate::xdp

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipxmit::dev::TxQueueCtl;
use parking_lot::{Mutex, MutexGuard, RwLock};

use crate::runner::WaitFd;
use crate::sys;

/// The stack's flow control of one transmit queue of a driver: the one
/// given by the latest [`Driver::attach`](ipxmit::dev::Driver::attach).
///
/// A link's drivers may be handed to a new stack (`drivers()` again): as a
/// device registered again gets new queues, the driver then stops and
/// wakes the new stack's queue, never the old one's (whose wake-ups would
/// go nowhere, and leave the new queue stopped or spun on). A runner of
/// the old stack still completing the link holds its own reference to
/// the control it read, so replacing it under it is safe.
#[derive(Debug, Default)]
pub(crate) struct CtlSlot(RwLock<Option<Arc<TxQueueCtl>>>);

impl CtlSlot {
    /// Takes `ctl` in place of any earlier one (`Driver::attach`).
    pub fn attach(&self, ctl: Arc<TxQueueCtl>) {
        *self.0.write() = Some(ctl);
    }

    /// The flow control of the queue, once attached.
    pub fn get(&self) -> Option<Arc<TxQueueCtl>> {
        self.0.read().clone()
    }

    /// `f` on the flow control of the queue (`None` before it is
    /// attached), read in place: no reference is taken, as the per-frame
    /// paths need none.
    pub fn with<R>(&self, f: impl FnOnce(Option<&TxQueueCtl>) -> R) -> R {
        f(self.0.read().as_deref())
    }

    /// Counts `frames` frames (`bytes` bytes) the kernel dropped after the
    /// driver took them on the device, for the stack
    /// ([`TxQueueCtl::late_drop`]); nothing before a stack attached.
    pub fn late_drop(&self, frames: u64, bytes: u64) {
        self.with(|c| {
            if let Some(c) = c {
                c.late_drop(frames, bytes);
            }
        });
    }

    /// The queue is attached and stopped.
    pub fn is_stopped(&self) -> bool {
        self.with(|c| c.is_some_and(TxQueueCtl::is_stopped))
    }
}

/// The Ethernet header a frame carries on top of the interface's MTU
/// (`dev->hard_header_len` of an Ethernet device; no VLAN tag is sent), and
/// the shortest frame the kernel takes (`dev_validate_header`).
pub(crate) const ETH_HLEN: usize = 14;

/// How often [`LiveMtu::refresh_if_stale`] reads the MTU again: as often as
/// the runner reaps a ring with frames in flight.
pub(crate) const MTU_REFRESH: Duration = Duration::from_millis(10);

/// Why a ring driver refuses a frame before it reaches a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Misfit {
    /// Shorter than an Ethernet header: `tpacket_snd` skips it
    /// (`dev_validate_header`), an XDP descriptor of length 0 is invalid.
    Runt,
    /// Over the interface's MTU plus its Ethernet header.
    Oversize,
}

/// A ring driver's counts of the frames it refused before a slot, by
/// [`Misfit`].
#[derive(Debug, Default)]
pub(crate) struct MisfitCounts {
    oversize: AtomicU64,
    runt: AtomicU64,
}

impl MisfitCounts {
    /// Counts one frame refused as `m`.
    pub fn count(&self, m: Misfit) {
        let c = match m {
            Misfit::Runt => &self.runt,
            Misfit::Oversize => &self.oversize,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Frames refused as over the MTU (or a UMEM frame).
    pub fn oversize(&self) -> u64 {
        self.oversize.load(Ordering::Relaxed)
    }

    /// Frames refused as shorter than a header.
    pub fn runt(&self) -> u64 {
        self.runt.load(Ordering::Relaxed)
    }
}

impl Misfit {
    /// The errno it is counted under: `EINVAL`, `EMSGSIZE`.
    pub fn errno(self) -> rustix::io::Errno {
        match self {
            Misfit::Runt => rustix::io::Errno::INVAL,
            Misfit::Oversize => rustix::io::Errno::MSGSIZE,
        }
    }
}

/// Kernel: `dev->mtu` of the interface a ring driver sends on, as the
/// driver checks frames against it. Read at open (`SIOCGIFMTU`), and again —
/// never on the path of a frame that fits — when the kernel's answer says a
/// frame was refused, before the driver refuses one as over it (at most
/// every [`MTU_REFRESH`]: raised since, it may fit), and where a driver
/// asks for it from its completion side (at most every [`MTU_REFRESH`]).
/// The ioctl goes to a socket of the link (a packet socket: an XDP socket
/// answers none), which answers for its own network namespace whatever
/// thread asks.
#[derive(Debug, Default)]
pub(crate) struct LiveMtu {
    ifname: String,
    mtu: AtomicU32,
    /// `CLOCK_MONOTONIC_COARSE` nanoseconds of the last read.
    read_at: AtomicU64,
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: a few nanoseconds to read.
pub(crate) fn coarse_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl LiveMtu {
    /// The MTU `mtu` of `ifname`, just read.
    pub fn new(ifname: &str, mtu: u32) -> LiveMtu {
        LiveMtu {
            ifname: ifname.to_string(),
            mtu: AtomicU32::new(mtu),
            read_at: AtomicU64::new(coarse_nanos()),
        }
    }

    /// The MTU as last read.
    #[inline]
    pub fn get(&self) -> u32 {
        self.mtu.load(Ordering::Relaxed)
    }

    /// Why a frame of `len` bytes would be refused by the kernel, if it
    /// would; `any_size`: no MTU limit (frames after a vnet header, which
    /// may be GSO super-frames).
    #[inline]
    pub fn misfit(&self, len: usize, any_size: bool) -> Option<Misfit> {
        if len < ETH_HLEN {
            Some(Misfit::Runt)
        } else if !any_size && len > self.get() as usize + ETH_HLEN {
            Some(Misfit::Oversize)
        } else {
            None
        }
    }

    /// [`LiveMtu::misfit`], with the MTU read again (at most every
    /// [`MTU_REFRESH`]) before a frame is refused as over it: raised
    /// since, it may fit. Costs nothing on frames that fit.
    pub fn misfit_fresh(&self, len: usize, any_size: bool, fd: BorrowedFd<'_>) -> Option<Misfit> {
        match self.misfit(len, any_size) {
            Some(Misfit::Oversize) => {
                self.refresh_if_stale(fd);
                self.misfit(len, any_size)
            }
            m => m,
        }
    }

    /// Reads the MTU again through `fd`; the last one read if the ioctl
    /// fails (the interface gone: the kernel refuses the sends anyway).
    pub fn refresh(&self, fd: BorrowedFd<'_>) -> u32 {
        self.read_at.store(coarse_nanos(), Ordering::Relaxed);
        match sys::if_mtu(fd, &self.ifname) {
            Ok(m) if m > 0 => {
                self.mtu.store(m, Ordering::Relaxed);
                m
            }
            _ => self.get(),
        }
    }

    /// [`LiveMtu::refresh`] when the last read is [`MTU_REFRESH`] old.
    pub fn refresh_if_stale(&self, fd: BorrowedFd<'_>) {
        let at = self.read_at.load(Ordering::Relaxed);
        if coarse_nanos().saturating_sub(at) >= MTU_REFRESH.as_nanos() as u64 {
            self.refresh(fd);
        }
    }
}

/// Whether frames are still waiting for the kernel after a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Everything handed to the kernel was taken.
    Clear,
    /// The socket or ring is full: wait for `POLLOUT` (or a completion).
    Full,
    /// The kernel refused (`ENOBUFS`, `ENETDOWN`): retry on a timer.
    Refused,
}

/// What a completion scan found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reaped {
    /// Frames handed to the kernel and not yet seen completed.
    pub in_flight: usize,
    /// Bytes seen completed by this scan (for byte queue limits; 0 where
    /// the driver keeps none).
    pub bytes: u64,
}

/// The ring of one queue, under the queue's lock: what differs between
/// the ring drivers.
pub(crate) trait RingTx {
    /// The driver's counters.
    type Counters;

    /// Kernel: the doorbell. Hands what waits to the kernel.
    fn push_out(&mut self, fd: &OwnedFd, c: &Self::Counters) -> Flow;

    /// Kernel: the descriptor scan of a transmit-completion poll. `None`
    /// when the queue keeps nothing in flight (frames are done when the
    /// system call returns).
    fn reap(&mut self, c: &Self::Counters) -> Option<Reaped>;

    /// Kernel: `netdev_tx_completed_queue()`, for a driver with byte queue
    /// limits: `bytes` completed (more than 0).
    fn completed(&mut self, _bytes: u64, _ctl: Option<&TxQueueCtl>) {}

    /// True when a new frame can be taken.
    fn has_room(&mut self) -> bool;

    /// Counts a ring found full before a frame (the doorbell rung early).
    fn count_full(_c: &Self::Counters) {}

    /// Counts a frame handed back for lack of room.
    fn count_busy(_c: &Self::Counters) {}

    /// Counts a stop of the queue, busy or not.
    fn count_block(_c: &Self::Counters) {}
}

/// When a driver's completions are seen.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    /// How soon the runner scans for completions while frames are in
    /// flight and the queue runs.
    pub reap: Duration,
    /// How soon a queue waiting on a timer (refused, or not waiting for
    /// `POLLOUT`) is tried again.
    pub retry: Duration,
    /// The longest wait for `POLLOUT` before the queue is looked at again
    /// (`None`: `POLLOUT` alone).
    pub pollout_fallback: Option<Duration>,
    /// Completions are seen in memory (a slot's status), not by `POLLOUT`:
    /// a stopped queue is completed at every poll, and one not cleared
    /// waits on a timer.
    pub in_memory: bool,
    /// A queue stopped by anyone (byte queue limits included), not only by
    /// the driver before a busy return, needs a completion to wake it.
    pub any_stop: bool,
}

/// One transmit queue of a ring driver: its socket, the ring under a lock,
/// and the flags its completion side reads without the lock. Field order
/// is drop order: the socket is closed before the ring (and any memory
/// mapped for it) is dropped.
pub(crate) struct RingQueue<T> {
    /// The transmit socket.
    pub fd: OwnedFd,
    /// Frames not yet seen completed: a copy readable without the lock.
    in_flight: AtomicUsize,
    /// Stopped for lack of room; waiting for completion.
    waiting: AtomicBool,
    /// Waiting on a timer rather than `POLLOUT`.
    backoff: AtomicBool,
    /// The stack's flow control of the queue.
    ctl: CtlSlot,
    /// The ring.
    pub tx: Mutex<T>,
}

impl<T: RingTx> RingQueue<T> {
    /// A running queue on `fd` with nothing in flight.
    pub fn new(fd: OwnedFd, tx: T) -> RingQueue<T> {
        RingQueue {
            fd,
            in_flight: AtomicUsize::new(0),
            waiting: AtomicBool::new(false),
            backoff: AtomicBool::new(false),
            ctl: CtlSlot::default(),
            tx: Mutex::new(tx),
        }
    }

    /// Takes the stack's flow control of the queue (`Driver::attach`), in
    /// place of an earlier stack's ([`CtlSlot`]).
    pub fn attach(&self, ctl: Arc<TxQueueCtl>) {
        self.ctl.attach(ctl);
    }

    /// The stack's flow control of the queue, once attached.
    pub fn ctl(&self) -> Option<Arc<TxQueueCtl>> {
        self.ctl.get()
    }

    /// `f` on the stack's flow control of the queue, read in place
    /// ([`CtlSlot::with`]).
    pub fn with_ctl<R>(&self, f: impl FnOnce(Option<&TxQueueCtl>) -> R) -> R {
        self.ctl.with(f)
    }

    /// Stopped for lack of room (by the driver's [`RingQueue::block`], or
    /// with `any_stop` by anyone holding the queue's flow control): a
    /// completion must wake it.
    pub fn needs_completion(&self, p: &Policy) -> bool {
        self.waiting.load(Ordering::Acquire) || (p.any_stop && self.ctl.is_stopped())
    }

    /// Frames are in flight: their completion is still to be seen.
    pub fn has_in_flight(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Publishes the frames in flight after a frame was written.
    pub fn set_in_flight(&self, n: usize) {
        self.in_flight.store(n, Ordering::Release);
    }

    /// Kernel: the TX clean-up of a completion poll. Scans the ring,
    /// publishes what is still in flight and reports the bytes completed.
    pub fn reap(&self, tx: &mut T, c: &T::Counters) {
        let Some(r) = tx.reap(c) else {
            return;
        };
        self.set_in_flight(r.in_flight);
        if r.bytes > 0 {
            self.ctl.with(|ctl| tx.completed(r.bytes, ctl));
        }
    }

    /// Room for the next frame: when the ring has none, the kernel is
    /// kicked and the completions scanned once; still none, the queue is
    /// stopped ([`RingQueue::block`]) and `None` says to hand the frame
    /// back.
    pub fn make_room<'g>(
        &self,
        mut tx: MutexGuard<'g, T>,
        c: &T::Counters,
    ) -> Option<MutexGuard<'g, T>> {
        if tx.has_room() {
            return Some(tx);
        }
        T::count_full(c);
        let flow = tx.push_out(&self.fd, c);
        self.reap(&mut tx, c);
        if tx.has_room() {
            return Some(tx);
        }
        drop(tx);
        T::count_busy(c);
        let flow = if flow == Flow::Refused {
            flow
        } else {
            Flow::Full
        };
        self.block(flow, c);
        None
    }

    /// Kernel: the doorbell at the end of a batch. Hands what waits to the
    /// kernel, lets go of the ring and stops the queue when frames still
    /// wait.
    pub fn doorbell(&self, mut tx: MutexGuard<'_, T>, c: &T::Counters) {
        let flow = tx.push_out(&self.fd, c);
        drop(tx);
        if flow != Flow::Clear {
            self.block(flow, c);
        }
    }

    /// Kernel: `netif_tx_stop_queue()` until completion: `POLLOUT` when
    /// frames wait for room, a timer when the kernel refused them.
    pub fn block(&self, flow: Flow, c: &T::Counters) {
        T::count_block(c);
        self.backoff.store(flow == Flow::Refused, Ordering::Release);
        // Stop first: a completion that sees `waiting` must find the queue
        // stopped, or its wake-up would be lost.
        let ctl = self.ctl();
        if let Some(ctl) = &ctl {
            ctl.stop();
        }
        self.waiting.store(true, Ordering::Release);
        if let Some(ctl) = ctl {
            // Raise the stack's deferred work so a runner re-collects its
            // descriptors, now with this one's completion.
            ctl.schedule();
        }
    }

    /// Transmit completion: push out what waits, scan the completions;
    /// wake the queue (`netif_tx_wake_queue`) when there is room and
    /// nothing waits.
    pub fn complete(&self, c: &T::Counters, p: &Policy) {
        let mut tx = self.tx.lock();
        let flow = tx.push_out(&self.fd, c);
        self.reap(&mut tx, c);
        if flow == Flow::Clear && tx.has_room() {
            self.waiting.store(false, Ordering::Release);
            self.backoff.store(false, Ordering::Release);
            drop(tx);
            if let Some(ctl) = self.ctl() {
                ctl.wake();
            }
        } else {
            drop(tx);
            // Refused, or frames still in flight: `POLLOUT` may already be
            // set and say nothing about them.
            self.backoff
                .store(flow != Flow::Full || p.in_memory, Ordering::Release);
        }
        if p.in_memory && self.ctl.is_stopped() {
            // Still over the byte limit: the bytes it waits for are in
            // flight, and `POLLOUT` says nothing about them.
            self.backoff.store(true, Ordering::Release);
        }
    }

    /// A completion scan of a running queue (nothing to push out or wake),
    /// skipped while its sender holds the queue: the sender scans itself.
    pub fn reap_running(&self, c: &T::Counters) {
        if let Some(mut tx) = self.tx.try_lock() {
            self.reap(&mut tx, c);
        }
    }

    /// The completion work the queue needs now, if any: `poll_out` tells
    /// whether a stopped queue's socket has room (asked only where
    /// completions are not seen in memory).
    pub fn service(&self, c: &T::Counters, p: &Policy, poll_out: impl FnOnce() -> bool) {
        if self.needs_completion(p) {
            if p.in_memory || poll_out() {
                self.complete(c, p);
            }
        } else if self.has_in_flight() {
            self.reap_running(c);
        }
    }

    /// Appends the descriptor to wait on for the queue's completion, if
    /// any, and returns when to look again without one.
    pub fn wait_fd<'a>(&'a self, p: &Policy, out: &mut Vec<WaitFd<'a>>) -> Option<Duration> {
        if !self.needs_completion(p) {
            return self.has_in_flight().then_some(p.reap);
        }
        if self.backoff.load(Ordering::Acquire) {
            return Some(p.retry);
        }
        out.push(WaitFd {
            fd: self.fd.as_fd(),
            readable: false,
            writable: true,
        });
        p.pollout_fallback
    }
}

/// [`WaitSource::wait_fds`](crate::runner::WaitSource::wait_fds) of a
/// link: the receive socket (if any) and every queue's completion; the
/// earliest time to look again.
pub(crate) fn wait_fds<'a, T: RingTx + 'a>(
    rx: Option<&'a OwnedFd>,
    queues: impl Iterator<Item = &'a RingQueue<T>>,
    p: &Policy,
    out: &mut Vec<WaitFd<'a>>,
) -> Option<Duration> {
    if let Some(rx) = rx {
        out.push(WaitFd {
            fd: rx.as_fd(),
            readable: true,
            writable: false,
        });
    }
    queues.filter_map(|q| q.wait_fd(p, out)).min()
}

/// The receive counters of a ring driver's packet socket.
pub(crate) struct RxCounters<'a> {
    /// Frames handed up.
    pub frames: &'a AtomicU64,
    /// Our own outgoing frames seen and ignored.
    pub outgoing: &'a AtomicU64,
}

/// Kernel: `packet_recvmsg()`, as the ring drivers' receive sockets use
/// it. Reads up to `budget` frames from `fd` into `buf` (grown to 64 KiB)
/// and hands each up, skipping our own outgoing ones (`PACKET_OUTGOING`).
pub(crate) fn recv_frames(
    fd: &OwnedFd,
    buf: &mut Vec<u8>,
    budget: usize,
    c: RxCounters<'_>,
    rx: &mut dyn FnMut(&[u8]),
) -> usize {
    if buf.len() < 65536 {
        buf.resize(65536, 0);
    }
    let mut got = 0;
    while got < budget {
        match sys::recv_ll(fd.as_fd(), buf) {
            Ok((_, t)) if t == libc::PACKET_OUTGOING => {
                c.outgoing.fetch_add(1, Ordering::Relaxed);
            }
            Ok((n, _)) => {
                c.frames.fetch_add(1, Ordering::Relaxed);
                rx(&buf[..n.min(buf.len())]);
                got += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_fits_from_an_ethernet_header_to_the_mtu_plus_that_header() {
        let m = LiveMtu::new("eth0", 1500);
        assert_eq!(m.misfit(0, false), Some(Misfit::Runt));
        assert_eq!(m.misfit(13, true), Some(Misfit::Runt));
        assert_eq!(m.misfit(14, false), None);
        assert_eq!(m.misfit(1514, false), None);
        assert_eq!(m.misfit(1515, false), Some(Misfit::Oversize));
        assert_eq!(m.misfit(65536, true), None, "no limit after a vnet header");
        assert_eq!(Misfit::Oversize.errno(), rustix::io::Errno::MSGSIZE);
    }
}
