//! The runner thread: a stack's deferred work on the real clock.
//!
//! Stands for what the kernel does outside the sending task: `ksoftirqd`
//! running `net_tx_action` (rescheduled qdisc runs, `net/core/dev.c`) and
//! `net_rx_action` (the NAPI poll of `poll_rx`), the timers behind qdisc
//! watchdogs and neighbour state machines, and a NIC's transmit-completion
//! interrupt, which frees ring slots and calls `netif_tx_wake_queue`.
//!
//! One thread loops: [`Stack::poll`], [`Stack::poll_rx`] (up to 64 frames a
//! round), then `poll(2)` on the devices' descriptors — readable receive fds,
//! and the transmit fds of queues a driver stopped because the kernel had no
//! room (`POLLOUT` there is the completion interrupt: the thread calls
//! [`WaitSource::complete_tx`], which sends what the driver holds and wakes the
//! queue) — with a timeout up to [`Stack::next_wakeup`]. A raise of the stack's
//! [`Notify`](ipxmit::dev::Notify) must cut that wait short, but `Notify` unparks a
//! thread and a thread blocked in `poll(2)` does not see unparks; so a second,
//! tiny "doorbell" thread is the notifier's waiter: unparked, it writes an
//! eventfd that is part of every wait.
//!
//! Descriptors are found without any help from the caller: drivers of this
//! crate call [`announce`] from their `poll_rx`, which the runner calls on its
//! own thread every round; [`Runner::watch`] adds sources nothing announces.

use std::cell::RefCell;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ipxmit::Stack;
use parking_lot::Mutex;
use rustix::event::{PollFd, PollFlags, Timespec};

/// Frames one `poll_rx` call may hand up (`napi_poll` weight).
pub const RX_BUDGET: usize = 64;
/// `poll_rx` calls per round while frames keep coming.
const RX_ROUNDS: usize = 8;
/// Longest wait without a reason to wake (new devices are found this often).
pub const HOUSEKEEPING: Duration = Duration::from_millis(100);

/// A descriptor a [`WaitSource`] wants waited on.
#[derive(Debug, Clone, Copy)]
pub struct WaitFd<'a> {
    /// The descriptor.
    pub fd: BorrowedFd<'a>,
    /// Wake when frames arrive (`POLLIN`): the runner then polls receive.
    pub readable: bool,
    /// Wake when the kernel has room again (`POLLOUT`): the runner then calls
    /// [`WaitSource::complete_tx`].
    pub writable: bool,
}

/// Something with descriptors for the runner to wait on: a device's receive
/// fds, and the transmit fds of its stopped queues.
pub trait WaitSource: Send + Sync {
    /// Appends the descriptors to wait on now. Returns a time after which
    /// [`WaitSource::complete_tx`] should be called even if no descriptor became
    /// ready (retrying a device that refused frames without a `POLLOUT` to wait
    /// for), or `None`.
    fn wait_fds<'a>(&'a self, out: &mut Vec<WaitFd<'a>>) -> Option<Duration>;

    /// Transmit completion: sends what was held back, and wakes the queues that
    /// have room again (`netif_tx_wake_queue`). Must not block.
    fn complete_tx(&self);
}

thread_local! {
    /// Sources announced during the current round, on a runner thread only.
    static ANNOUNCED: RefCell<Option<Vec<Arc<dyn WaitSource>>>> = const { RefCell::new(None) };
}

/// Makes `src` known to the runner thread this is called on (a driver calls it
/// from `poll_rx`); does nothing on any other thread.
pub fn announce(src: &Arc<dyn WaitSource>) {
    ANNOUNCED.with(|a| {
        if let Some(v) = a.borrow_mut().as_mut() {
            if !v.iter().any(|s| same_source(s, src)) {
                v.push(src.clone());
            }
        }
    });
}

fn same_source(a: &Arc<dyn WaitSource>, b: &Arc<dyn WaitSource>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

/// Reuses a vector's allocation for elements of another lifetime (the vector
/// is emptied; in-place collection keeps the buffer, as the layouts match).
pub(crate) fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

/// Counters of a runner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunnerStats {
    /// Rounds of the loop.
    pub rounds: u64,
    /// Frames handed to the stack by `poll_rx`.
    pub rx_frames: u64,
    /// Calls of [`WaitSource::complete_tx`].
    pub tx_completions: u64,
}

struct Shared {
    stop: AtomicBool,
    doorbell: OwnedFd,
    watched: Mutex<Vec<Arc<dyn WaitSource>>>,
    rounds: AtomicU64,
    rx_frames: AtomicU64,
    completions: AtomicU64,
}

/// The runner thread of one stack. See the module documentation. Stopped and
/// joined by [`Runner::stop`] or on drop.
pub struct Runner {
    stack: Arc<Stack>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    bell: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Runner {
    /// Starts the runner of `stack`. It takes the waiter slot of the stack's
    /// notifier (`Notify::set_waiter`) until it stops.
    ///
    /// # Panics
    /// When the system cannot create a thread or an eventfd (as
    /// `std::thread::spawn` does); [`Runner::try_spawn`] returns the error.
    pub fn spawn(stack: Arc<Stack>) -> Runner {
        match Runner::try_spawn(stack) {
            Ok(r) => r,
            Err(e) => panic!("cannot start the ipxmit runner: {e}"),
        }
    }

    /// Starts the runner of `stack`, or says why it could not.
    pub fn try_spawn(stack: Arc<Stack>) -> io::Result<Runner> {
        let doorbell = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::NONBLOCK | rustix::event::EventfdFlags::CLOEXEC,
        )?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            doorbell,
            watched: Mutex::new(Vec::new()),
            rounds: AtomicU64::new(0),
            rx_frames: AtomicU64::new(0),
            completions: AtomicU64::new(0),
        });
        let sh = shared.clone();
        let bell = std::thread::Builder::new()
            .name("ipxmit-doorbell".into())
            .spawn(move || doorbell_loop(&sh))?;
        stack.notifier().set_waiter(Some(bell.thread().clone()));
        let (st, sh) = (stack.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("ipxmit-runner".into())
            .spawn(move || run_loop(&st, &sh));
        let mut r = Runner {
            stack,
            shared,
            thread: None,
            bell: Some(bell),
        };
        r.thread = Some(thread?);
        Ok(r)
    }

    /// Adds a source to wait on that no driver announces.
    pub fn watch(&self, src: Arc<dyn WaitSource>) {
        self.shared.watched.lock().push(src);
        ring(&self.shared);
    }

    /// Counters so far.
    pub fn stats(&self) -> RunnerStats {
        RunnerStats {
            rounds: self.shared.rounds.load(Ordering::Relaxed),
            rx_frames: self.shared.rx_frames.load(Ordering::Relaxed),
            tx_completions: self.shared.completions.load(Ordering::Relaxed),
        }
    }

    /// Stops the threads and waits for them.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        ring(&self.shared);
        if let Some(b) = self.bell.take() {
            b.thread().unpark();
            let _ = b.join();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.stack.notifier().set_waiter(None);
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Waits up to `timeout` for a frame to arrive on any of `stack`'s devices
/// (`poll(2)` on their receive descriptors, [`Stack::rx_fds`]), for a caller
/// that sleeps on its own thread (a real-time script's `sleep`, `send`'s
/// drain wait) and must handle an ARP reply as it arrives. Returns true when
/// a descriptor is readable (then [`Stack::poll_rx`] has work); with no
/// descriptor it simply sleeps.
pub fn wait_rx(stack: &Stack, timeout: Duration) -> bool {
    let fds = stack.rx_fds();
    if fds.is_empty() {
        std::thread::sleep(timeout);
        return false;
    }
    // SAFETY: the descriptors belong to the stack's drivers, which outlive
    // this call (the stack is borrowed for it).
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|&fd| PollFd::from_borrowed_fd(unsafe { BorrowedFd::borrow_raw(fd) }, PollFlags::IN))
        .collect();
    let ts = Timespec::try_from(timeout).unwrap_or(Timespec {
        tv_sec: 0,
        tv_nsec: 1_000_000,
    });
    matches!(rustix::event::poll(&mut pfds, Some(&ts)), Ok(n) if n > 0)
}

/// Wakes the runner out of `poll(2)`.
fn ring(sh: &Shared) {
    let _ = rustix::io::write(&sh.doorbell, &1u64.to_ne_bytes());
}

/// The notifier's waiter: turns unparks into doorbell writes.
fn doorbell_loop(sh: &Shared) {
    while !sh.stop.load(Ordering::Acquire) {
        std::thread::park();
        ring(sh);
    }
}

/// Reused buffers of the wait, kept across rounds.
#[derive(Default)]
struct Scratch {
    sources: Vec<Arc<dyn WaitSource>>,
    fds: Vec<WaitFd<'static>>,
    pfds: Vec<PollFd<'static>>,
    owner: Vec<usize>,
    hints: Vec<Option<Duration>>,
}

fn run_loop(stack: &Stack, sh: &Shared) {
    ANNOUNCED.with(|a| *a.borrow_mut() = Some(Vec::new()));
    let mut sc = Scratch::default();
    while !sh.stop.load(Ordering::Acquire) {
        sh.rounds.fetch_add(1, Ordering::Relaxed);
        stack.poll();
        ANNOUNCED.with(|a| a.borrow_mut().as_mut().map(Vec::clear));
        for _ in 0..RX_ROUNDS {
            let n = stack.poll_rx(RX_BUDGET);
            sh.rx_frames.fetch_add(n as u64, Ordering::Relaxed);
            if n < RX_BUDGET {
                break;
            }
        }
        sc.sources.clear();
        ANNOUNCED.with(|a| sc.sources.extend(a.borrow().iter().flatten().cloned()));
        for w in sh.watched.lock().iter() {
            if !sc.sources.iter().any(|s| same_source(s, w)) {
                sc.sources.push(w.clone());
            }
        }
        wait(stack, sh, &mut sc);
    }
    ANNOUNCED.with(|a| *a.borrow_mut() = None);
}

/// How long the wait may last: zero with work pending, else until the stack's
/// next timer, a source's retry time, or the housekeeping period.
fn timeout(stack: &Stack, hint: Option<Duration>) -> Duration {
    if stack.notifier().is_pending() {
        return Duration::ZERO;
    }
    let mut t = HOUSEKEEPING;
    if let Some(at) = stack.next_wakeup() {
        t = t.min(at.saturating_since(stack.now()));
    }
    hint.map_or(t, |h| t.min(h))
}

/// One `poll(2)` on the doorbell and every source's descriptors, then the
/// transmit completions that became due: a write descriptor ready, or a
/// source's retry time passed.
fn wait(stack: &Stack, sh: &Shared, sc: &mut Scratch) {
    let sources = std::mem::take(&mut sc.sources);
    let mut fds: Vec<WaitFd<'_>> = recycle(std::mem::take(&mut sc.fds));
    let (mut owner, mut hints) = (std::mem::take(&mut sc.owner), std::mem::take(&mut sc.hints));
    owner.clear();
    hints.clear();
    for (k, s) in sources.iter().enumerate() {
        let before = fds.len();
        hints.push(s.wait_fds(&mut fds));
        owner.extend(std::iter::repeat_n(k, fds.len() - before));
    }
    let mut pfds: Vec<PollFd<'_>> = recycle(std::mem::take(&mut sc.pfds));
    pfds.push(PollFd::new(&sh.doorbell, PollFlags::IN));
    for f in &fds {
        let mut ev = PollFlags::empty();
        ev.set(PollFlags::IN, f.readable);
        ev.set(PollFlags::OUT, f.writable);
        pfds.push(PollFd::from_borrowed_fd(f.fd, ev));
    }
    let t = timeout(stack, hints.iter().flatten().min().copied());
    let ts = Timespec::try_from(t).unwrap_or(Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    });
    let start = std::time::Instant::now();
    let _ = rustix::event::poll(&mut pfds, Some(&ts));
    let elapsed = start.elapsed();
    let _ = drain_doorbell(sh, &pfds[0]);
    let ready = PollFlags::OUT | PollFlags::ERR | PollFlags::HUP;
    let mut due: Vec<bool> = hints
        .iter()
        .map(|h| h.is_some_and(|h| elapsed >= h))
        .collect();
    for (i, p) in pfds[1..].iter().enumerate() {
        if fds[i].writable && p.revents().intersects(ready) {
            due[owner[i]] = true;
        }
    }
    for (s, _) in sources.iter().zip(&due).filter(|(_, &d)| d) {
        sh.completions.fetch_add(1, Ordering::Relaxed);
        s.complete_tx();
    }
    sc.pfds = recycle(pfds);
    sc.fds = recycle(fds);
    (sc.owner, sc.hints, sc.sources) = (owner, hints, sources);
}

fn drain_doorbell(sh: &Shared, p: &PollFd<'_>) -> io::Result<()> {
    if p.revents().contains(PollFlags::IN) {
        let mut b = [0u8; 8];
        rustix::io::read(&sh.doorbell, &mut b)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycle_keeps_the_allocation() {
        let mut v: Vec<IoSliceLike<'static>> = Vec::with_capacity(32);
        let cap = v.capacity();
        let ptr = v.as_ptr() as usize;
        let data = [1u8, 2, 3];
        let mut w: Vec<IoSliceLike<'_>> = recycle(std::mem::take(&mut v));
        w.push(IoSliceLike(&data));
        assert_eq!((w.capacity(), w.as_ptr() as usize), (cap, ptr));
        v = recycle(w);
        assert!(v.is_empty());
        assert_eq!((v.capacity(), v.as_ptr() as usize), (cap, ptr));
    }

    struct IoSliceLike<'a>(#[allow(dead_code)] &'a [u8]);
}
