//! Conservation under overload: random workloads (tiny `pfifo` limits, small
//! `SO_SNDBUF`, an in-memory wire of a few frames drained now and then so the
//! driver is busy, a neighbour that never answers ARP, MTU changes, sizes
//! that fragment, one-by-one and batch sends) and, at the end, exact ledgers:
//!
//! * datagrams: every send the socket accepted is `UdpOutDatagrams`, or a
//!   drop for lack of buffers it swallowed (`UdpSndbufErrors` less the sends
//!   that failed with `ENOBUFS`/`EAGAIN`, as `udp_send_skb` counts them);
//! * IP packets (`IpOutTransmits`: datagrams and fragments handed to the
//!   neighbour layer) = IPv4 frames on the wire + packets out of `lo` (the
//!   ICMP errors of failed resolutions) + drops after that point by reason +
//!   packets still queued (neighbour queues, qdiscs);
//! * fragmentation: each accepted datagram over the MTU is one `IpFragOKs`
//!   or one `IpFragFails`.
//!
//! In the ARP-failure workloads every datagram waits on the unresolved
//! neighbour, so the qdisc only ever holds ARP requests and no IP packet's
//! drop is confused with theirs.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use ipxmit::dev::DevConfig;
use ipxmit::neigh::NudState;
use ipxmit::sched::QdiscSpec;
use ipxmit::stats::fate::MsgFate;
use ipxmit::stats::{DevCounter, DropReason, Mib};
use ipxmit::wire::EthernetAddress;
use ipxmit::{BatchMsg, ManualClock, MsgFlags, SendError, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;
use proptest::prelude::*;

const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const MAC_US: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const MAC_PEER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

/// Drop reasons given after the neighbour layer took the packet.
const AFTER_OUTPUT: [DropReason; 12] = [
    DropReason::QdiscDrop,
    DropReason::QdiscOverlimit,
    DropReason::QdiscCongested,
    DropReason::QueuePurge,
    DropReason::NeighFailed,
    DropReason::NeighQueueFull,
    DropReason::NeighDead,
    DropReason::NoMem,
    DropReason::DevReady,
    DropReason::FullRing,
    DropReason::SkbGsoSeg,
    DropReason::CpuBacklog,
];

#[derive(Debug, Clone)]
enum Op {
    Send(usize),
    Batch(usize, usize),
    Drain(usize),
    Mtu(u32),
    Advance(u64),
    Poll,
}

fn len() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..100,
        1400usize..1600,
        2900usize..3000,
        8000usize..9000
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => len().prop_map(Op::Send),
        3 => (1usize..16, len()).prop_map(|(n, l)| Op::Batch(n, l)),
        3 => (0usize..8).prop_map(Op::Drain),
        1 => prop::sample::select(vec![576u32, 1280, 1500, 9000]).prop_map(Op::Mtu),
        1 => (0u64..2500).prop_map(Op::Advance),
        1 => Just(Op::Poll),
    ]
}

#[derive(Debug, Clone)]
struct Workload {
    /// `pfifo limit N`, or the default `pfifo_fast`.
    pfifo: Option<u32>,
    sndbuf: usize,
    wire: usize,
    arp_fails: bool,
    ops: Vec<Op>,
}

fn workload() -> impl Strategy<Value = Workload> {
    (
        prop::option::of(1u32..6),
        prop_oneof![Just(4096usize), 8192usize..65536, Just(212_992)],
        1usize..8,
        prop::bool::weighted(0.25),
        prop::collection::vec(op(), 1..60),
    )
        .prop_map(|(pfifo, sndbuf, wire, arp_fails, ops)| Workload {
            pfifo,
            sndbuf,
            wire,
            arp_fails,
            ops,
        })
}

/// What the test saw.
#[derive(Debug, Default)]
struct Seen {
    /// Datagrams the socket accepted.
    accepted: u64,
    /// Accepted datagrams over the MTU of their send.
    over_mtu: u64,
    /// Sends refused with `ENOBUFS` or `EAGAIN`.
    refused_nobufs: u64,
    /// IPv4 frames taken off the wire.
    wire_ip: u64,
}

struct Host {
    stack: Arc<Stack>,
    wire: Arc<MemWire>,
    clock: ManualClock,
    sock: UdpSocket,
    mtu: u32,
}

fn host(w: &Workload) -> Host {
    let clock = ManualClock::new();
    let stack = Stack::with_clock(Arc::new(clock.clone()));
    let wire = MemWire::new(w.wire);
    stack
        .add_device(DevConfig::ethernet("eth0", MAC_US), wire.drivers(1))
        .unwrap();
    stack
        .add_addr("eth0", "10.0.0.1/24".parse().unwrap())
        .unwrap();
    if let Some(limit) = w.pfifo {
        let spec = QdiscSpec::Pfifo { limit: Some(limit) };
        stack.replace_qdisc("eth0", &spec).unwrap();
    }
    if !w.arp_fails {
        stack
            .add_neigh("eth0", PEER, MAC_PEER, NudState::Permanent)
            .unwrap();
    }
    let mut sock = UdpSocket::new(&stack);
    sock.set_sndbuf(w.sndbuf);
    Host {
        stack,
        wire,
        clock,
        sock,
        mtu: 1500,
    }
}

fn drain(h: &Host, max: usize, seen: &mut Seen) {
    for _ in 0..max {
        let Some(f) = h.wire.pop() else { return };
        if f.linear().get(12..14) == Some(&[0x08, 0x00]) {
            seen.wire_ip += 1;
        }
    }
}

fn count(h: &Host, seen: &mut Seen, r: Result<usize, SendError>, n: usize, len: usize) {
    match r {
        Ok(k) => {
            let k = k.min(n) as u64;
            seen.accepted += k;
            if len + 28 > h.mtu as usize {
                seen.over_mtu += k;
            }
        }
        Err(SendError::NoBufs | SendError::Again) => seen.refused_nobufs += 1,
        Err(_) => {}
    }
}

fn run(h: &mut Host, op: &Op, seen: &mut Seen) {
    let dst = SocketAddrV4::new(PEER, 9);
    let payload = [0x5au8; 9000];
    match *op {
        Op::Send(len) => {
            let r = h.sock.send_to(&payload[..len], dst, MsgFlags::DONTWAIT);
            count(h, seen, r.map(|_| 1), 1, len);
        }
        Op::Batch(n, len) => {
            let msgs: Vec<BatchMsg<'_>> = (0..n)
                .map(|_| BatchMsg::new(&payload[..len], Some(dst)))
                .collect();
            let mut fates = vec![MsgFate::NotSent; n];
            let r = h
                .sock
                .send_batch_fates(&msgs, MsgFlags::DONTWAIT, &mut fates);
            // A later message's failure ends the call with the count so far
            // (its error lost, as sendmmsg's): the fates tell it.
            if r.is_ok() {
                let failed = fates
                    .iter()
                    .filter(|f| matches!(f, MsgFate::Failed(SendError::NoBufs | SendError::Again)));
                seen.refused_nobufs += failed.count() as u64;
            }
            count(h, seen, r, n, len);
        }
        Op::Drain(max) => drain(h, max, seen),
        Op::Mtu(mtu) => {
            h.stack.device("eth0").unwrap().set_mtu(mtu).unwrap();
            h.mtu = mtu;
        }
        Op::Advance(ms) => h.clock.advance(Duration::from_millis(ms)),
        Op::Poll => {
            h.stack.poll();
        }
    }
}

/// Packets waiting for a neighbour, and in the qdiscs. A qdisc's `qlen`
/// counts its requeued packets too (`dev_requeue_skb` adds them to
/// `q.qlen`, as the kernel's does): not added again.
fn queued(stack: &Stack) -> u64 {
    let neigh: u64 = stack
        .neighbours()
        .entries()
        .iter()
        .map(|n| n.queued() as u64)
        .sum();
    let qdisc: u64 = stack
        .devices()
        .iter()
        .flat_map(|d| d.queues().iter())
        .map(|q| q.with_qdisc(|q| q.stats().qlen))
        .sum();
    neigh + qdisc
}

/// Drains the wire and runs the stack until nothing is queued, moving the
/// clock on whenever a round made no progress (an unanswered neighbour
/// fails within three seconds).
fn settle(h: &Host, seen: &mut Seen) {
    let mut last = (u64::MAX, u64::MAX);
    for _ in 0..10_000 {
        drain(h, usize::MAX, seen);
        h.stack.poll();
        drain(h, usize::MAX, seen);
        let now = (seen.wire_ip, queued(&h.stack));
        if now.1 == 0 && h.wire.is_empty() {
            return;
        }
        if now == last {
            h.clock.advance(Duration::from_millis(500));
        }
        last = now;
    }
}

fn check(h: &Host, seen: &Seen) -> Result<(), TestCaseError> {
    let c = h.stack.counters();
    let swallowed = c.get(Mib::UdpSndbufErrors) - seen.refused_nobufs;
    prop_assert_eq!(
        seen.accepted,
        c.get(Mib::UdpOutDatagrams) + swallowed,
        "datagrams: accepted = sent by UDP + swallowed ENOBUFS"
    );
    let after: u64 = AFTER_OUTPUT.iter().map(|r| c.dropped(*r)).sum();
    let q = queued(&h.stack);
    // The ICMP errors an unanswered neighbour sends us (`arp_error_report`)
    // go out of `lo`.
    let lo = h
        .stack
        .device("lo")
        .unwrap()
        .stats
        .get(DevCounter::TxPackets);
    prop_assert_eq!(
        c.get(Mib::IpOutTransmits),
        seen.wire_ip + lo + after + q,
        "IP packets: transmits = on the wire {} + on lo {} + dropped {} + queued {}",
        seen.wire_ip,
        lo,
        after,
        q
    );
    prop_assert_eq!(
        seen.over_mtu,
        c.get(Mib::IpFragOKs) + c.get(Mib::IpFragFails),
        "fragmentation: each datagram over the MTU once OK or failed"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_datagram_and_packet_is_sent_dropped_or_queued(w in workload()) {
        let mut h = host(&w);
        let mut seen = Seen::default();
        for op in &w.ops {
            run(&mut h, op, &mut seen);
        }
        settle(&h, &mut seen);
        check(&h, &seen)?;
        prop_assert_eq!(queued(&h.stack), 0, "everything left or was dropped");
    }
}

/// Regression: a frame the busy driver handed back is in the qdisc's
/// `qlen` and in its requeue list; counted once, the packets balance.
#[test]
fn requeued_packets_are_counted_once() {
    let w = Workload {
        pfifo: None,
        sndbuf: 212_992,
        wire: 1,
        arp_fails: false,
        ops: vec![Op::Batch(11, 1473)],
    };
    let mut h = host(&w);
    let mut seen = Seen::default();
    run(&mut h, &w.ops[0], &mut seen);
    let d = h.stack.device("eth0").unwrap();
    assert_eq!(d.queues()[0].requeued_len(), 1, "the busy driver's frame");
    assert_eq!(queued(&h.stack) + h.wire.len() as u64, 22);
    settle(&h, &mut seen);
    assert_eq!(seen.wire_ip, 22);
}
