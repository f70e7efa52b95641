//! Byte queue limits on the AF_PACKET driver's TX ring, against a real
//! kernel: our stack sends on the `A` end of a veth pair through a
//! `PACKET_TX_RING`, a kernel UDP socket in namespace `B` counts what
//! arrives. The queue's `dql` must behave as the kernel's: the limit starts
//! at 0 (the first frame stops the queue), grows from the first completion
//! by what completed, never lets more than the largest limit plus one frame
//! into the ring, stops the queue under a burst and wakes it again, and
//! reaches `inflight` 0 once the kernel has handed every slot back — with
//! every datagram delivered and none dropped. The `sendmmsg` mode keeps no
//! limits (no completion to report). The sending thread allocates nothing
//! per datagram on the way.
//!
//! Each test needs root and network namespaces; without them it prints
//! `SKIPPED (needs root and network namespaces): <test>` and returns.

#[path = "../benches/support/alloc_probe.rs"]
#[allow(dead_code)]
mod alloc_probe;
mod common;
#[path = "../benches/support/host.rs"]
#[allow(dead_code)]
mod host;

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::netns::{VethPeer, DEV_A, VETH_PEER};
use common::veth::{packet_stack, socket, veth_receiver, QUIET};
use common::{payload, report, skip};
use ipxmit::dev::TxQueueCtl;
use ipxmit::stats::DevCounter;
use ipxmit::{MsgFlags, Stack, UdpSocket};
use ipxmit_drivers::packet::{PacketConfig, PacketLink, PacketMode, PacketRx};
use ipxmit_drivers::runner::Runner;

#[global_allocator]
static ALLOC: alloc_probe::CountingAlloc = alloc_probe::CountingAlloc;

const RING: PacketMode = PacketMode::TxRing {
    frames: 256,
    frame_size: 2048,
};
/// A 1472-byte UDP payload in an Ethernet frame.
const FRAME: u32 = 1472 + 8 + 20 + 14;

fn ring_link(peer: &VethPeer, rx: PacketRx) -> PacketLink {
    let mut cfg = PacketConfig::new(DEV_A);
    cfg.mode = RING;
    cfg.rx = rx;
    peer.open(&cfg).unwrap()
}

/// Polls the stack's receive side (which scans the ring for completions)
/// and runs its deferred work until `done` or 2 s pass.
fn poll_until(stack: &Stack, mut done: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < QUIET {
        stack.poll_rx(64);
        stack.poll();
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    false
}

/// One thread, no runner, so each step is seen: the first frame meets a
/// limit of 0 and stops the queue; its completion, found by the stack's
/// receive poll, starves the queue over its limit, so the limit grows by
/// exactly that frame and the queue wakes.
#[test]
fn packet_tx_ring_bql_first_frame_stops_and_its_completion_sets_the_limit() {
    if skip("packet_tx_ring_bql_first_frame_stops_and_its_completion_sets_the_limit") {
        return;
    }
    let (peer, rx) = veth_receiver("bql1", 6100, 16 << 20);
    let link = ring_link(&peer, PacketRx::None);
    let (stack, dev) = packet_stack(&peer, &link);
    let ctl: &TxQueueCtl = dev.queues()[0].ctl();
    assert!(ctl.bql().is_none(), "no limits before the driver queues");
    let mut s = socket(&stack, 5000);
    let to = SocketAddrV4::new(VETH_PEER, 6100);
    s.send_to(&payload(1472, 0), to, MsgFlags::NONE).unwrap();
    let b = ctl.bql().expect("the ring reports what it queues");
    assert_eq!((b.limit(), b.inflight()), (0, FRAME), "one frame over 0");
    assert!(ctl.is_stopped(), "STACK_XOFF after the first frame");
    assert_eq!(ctl.bql_stops(), 1);
    // The next datagram waits in the qdisc behind the stopped queue.
    s.send_to(&payload(1472, 1), to, MsgFlags::NONE).unwrap();
    assert_eq!(link.stats().tx_frames, 1);
    assert!(poll_until(&stack, || ctl.bql().unwrap().inflight() == 0
        && link.stats().tx_frames == 2));
    // `dql_completed`'s starvation rule: over the limit and now empty, the
    // limit grows by what completed since (the frame) plus the previous
    // overshoot (0). The second frame then fits (in flight 1514, limit
    // 1514): no overshoot, no growth; nothing in flight, no shrinking.
    let b = ctl.bql().unwrap();
    assert_eq!(b.limit(), FRAME, "grew from 0 by the first frame: {b:?}");
    assert!(!ctl.is_stopped(), "woken by the completion");
    assert_eq!(ctl.bql_stops(), 1);
    assert_eq!(rx.count(2, 1472, QUIET).0, 2);
    assert_eq!(link.stats().tx_errors, 0);
    report(&format!("bql1: {b:?} stops {}", ctl.bql_stops()));
}

/// Samples a queue's limits while a burst runs: the largest limit seen and
/// whether `inflight` ever exceeded the largest limit so far plus a frame.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u32, u32, u64)>,
}

impl Sampler {
    fn start(ctl: Arc<TxQueueCtl>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut max_limit, mut worst, mut n) = (0u32, 0u32, 0u64);
            while !st.load(Ordering::Acquire) {
                if let Some(b) = ctl.bql() {
                    max_limit = max_limit.max(b.limit());
                    worst = worst.max(b.inflight().saturating_sub(max_limit));
                    n += 1;
                }
                std::thread::sleep(Duration::from_micros(20));
            }
            (max_limit, worst, n)
        });
        Sampler { stop, thread }
    }

    /// (largest limit, worst overshoot of `inflight` past it, samples).
    fn finish(self) -> (u32, u32, u64) {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap()
    }
}

/// A burst through the ring with a runner (the completion interrupt):
/// the limit grows from 0 and bounds what is in flight, the queue stops
/// and wakes, every datagram arrives, every byte completes.
#[test]
fn packet_tx_ring_bql_bounds_a_burst_and_completes_every_byte() {
    if skip("packet_tx_ring_bql_bounds_a_burst_and_completes_every_byte") {
        return;
    }
    const N: usize = 20_000;
    let (peer, rx) = veth_receiver("bql2", 6101, 64 << 20);
    let link = ring_link(&peer, PacketRx::Arp);
    let (stack, dev) = packet_stack(&peer, &link);
    let runner = Runner::spawn(stack.clone());
    let ctl = dev.queues()[0].ctl().clone();
    let sampler = Sampler::start(ctl.clone());
    let mut s = socket(&stack, 5000);
    s.set_gso_size(1472).unwrap();
    let to = SocketAddrV4::new(VETH_PEER, 6101);
    // Super-datagrams of 40 segments: batches with `more` set, as a
    // qdisc run hands a NIC.
    let big = payload(40 * 1472, 3);
    let t0 = Instant::now();
    for _ in 0..N / 40 {
        s.send_to(&big, to, MsgFlags::NONE).unwrap();
    }
    let (got, _) = rx.count(N, 1472, QUIET);
    let elapsed = t0.elapsed();
    let drained = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        ctl.bql().is_some_and(|b| b.inflight() == 0)
    });
    let (max_limit, worst, samples) = sampler.finish();
    let b = ctl.bql().unwrap();
    let st = link.stats();
    let qs = dev.queues()[0].with_qdisc(|q| *q.stats());
    report(&format!(
        "bql2: {N} frames in {elapsed:?}; {b:?}; stops {}; largest limit {max_limit}, \
         worst overshoot {worst} over {samples} samples; {st:?}; qdisc requeues {}; {:?}",
        ctl.bql_stops(),
        qs.requeues,
        runner.stats()
    ));
    assert_eq!(got, N, "every datagram arrived");
    assert_eq!(stack.counters().dropped_total(), 0, "nothing dropped");
    assert_eq!((st.tx_frames, st.tx_errors), (N as u64, 0));
    assert_eq!(dev.stats.get(DevCounter::TxPackets), N as u64);
    assert!(drained, "every byte queued completed: {b:?}");
    assert!(b.limit() > 0, "the limit grew from 0");
    assert!(ctl.bql_stops() >= 1, "the limit stopped the queue");
    assert!(!ctl.is_stopped(), "and it woke again");
    assert!(
        worst <= FRAME,
        "in flight at most the largest limit plus one frame ({worst} over)"
    );
}

/// `sendmmsg` returns when the kernel took each frame: no completion to
/// report, so no limits (as the kernel's veth and tun keep none).
#[test]
fn packet_sendmmsg_keeps_no_byte_queue_limits() {
    if skip("packet_sendmmsg_keeps_no_byte_queue_limits") {
        return;
    }
    let (peer, rx) = veth_receiver("bql3", 6102, 16 << 20);
    let link = peer.open(&PacketConfig::new(DEV_A)).unwrap();
    let (stack, dev) = packet_stack(&peer, &link);
    let _runner = Runner::spawn(stack.clone());
    let mut s = socket(&stack, 5000);
    for k in 0..100 {
        let p = payload(1472, k);
        s.send_to(&p, SocketAddrV4::new(VETH_PEER, 6102), MsgFlags::NONE)
            .unwrap();
    }
    assert_eq!(rx.count(100, 1472, QUIET).0, 100);
    let ctl = dev.queues()[0].ctl();
    assert!(ctl.bql().is_none());
    assert_eq!(ctl.bql_stops(), 0);
}

/// The sending thread allocates nothing per datagram through the ring with
/// byte queue limits at work (the runner's thread completes; its
/// allocations are its own and not counted).
#[test]
fn packet_tx_ring_bql_sends_without_allocating() {
    if skip("packet_tx_ring_bql_sends_without_allocating") {
        return;
    }
    let (peer, rx) = veth_receiver("bql4", 6103, 64 << 20);
    let link = ring_link(&peer, PacketRx::Arp);
    let (stack, dev) = packet_stack(&peer, &link);
    let _runner = Runner::spawn(stack.clone());
    let mut s = socket(&stack, 5000);
    let to = SocketAddrV4::new(VETH_PEER, 6103);
    let p = payload(1472, 9);
    let send = |s: &mut UdpSocket, n: usize| {
        for _ in 0..n {
            s.send_to(&p, to, MsgFlags::NONE).unwrap();
        }
    };
    send(&mut s, 2_000);
    let before = alloc_probe::allocations();
    send(&mut s, 5_000);
    let allocs = alloc_probe::allocations() - before;
    assert_eq!(rx.count(7_000, 1472, QUIET).0, 7_000);
    let ctl = dev.queues()[0].ctl();
    report(&format!(
        "bql4: {allocs} allocations in 5000 datagrams; {:?}; stops {}",
        ctl.bql(),
        ctl.bql_stops()
    ));
    assert_eq!(allocs, 0, "heap allocations on the sending thread");
}
