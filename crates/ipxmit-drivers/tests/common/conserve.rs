//! The conservation ledgers shared by `conservation.rs` (the in-memory wire)
//! and `conservation_wire.rs` (the null and capture-file devices, TAP and
//! AF_PACKET into a kernel): random overload workloads and the checks that
//! every datagram and every IP packet is sent, dropped under a reason or
//! still queued.

use std::net::SocketAddrV4;

use ipxmit::stats::fate::MsgFate;
use ipxmit::stats::{DevCounter, DropReason, Mib};
use ipxmit::{BatchMsg, MsgFlags, SendError, Stack, UdpSocket};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Drop reasons given after the neighbour layer took the packet.
pub const AFTER_OUTPUT: [DropReason; 12] = [
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

/// One step of a workload.
#[derive(Debug, Clone)]
pub enum Op {
    /// One `sendto` of this many bytes.
    Send(usize),
    /// A `sendmmsg` of n datagrams of this many bytes.
    Batch(usize, usize),
    /// Takes up to n frames off the wire (the in-memory wire; elsewhere
    /// the wire drains itself).
    Drain(usize),
    /// A new device MTU.
    Mtu(u32),
    /// The clock moves on this many milliseconds.
    Advance(u64),
    /// Deferred work runs (`Stack::poll`).
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

/// A random overload workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// `pfifo limit N`, or the default `pfifo_fast`.
    pub pfifo: Option<u32>,
    /// `SO_SNDBUF`.
    pub sndbuf: usize,
    /// Frames the in-memory wire holds.
    pub wire: usize,
    /// The destination's neighbour never answers.
    pub arp_fails: bool,
    /// The steps.
    pub ops: Vec<Op>,
}

/// Workloads: tiny qdiscs, small send buffers, a short wire, ARP failure,
/// MTU changes, sizes that fragment, one-by-one and batch sends.
pub fn workload() -> impl Strategy<Value = Workload> {
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

/// What the test saw of the sends.
#[derive(Debug, Default)]
pub struct Seen {
    /// Datagrams the socket accepted.
    pub accepted: u64,
    /// Accepted datagrams over the MTU of their send.
    pub over_mtu: u64,
    /// Sends refused with `ENOBUFS` or `EAGAIN`.
    pub refused_nobufs: u64,
}

impl Seen {
    fn count(&mut self, mtu: u32, r: Result<usize, SendError>, n: usize, len: usize) {
        match r {
            Ok(k) => {
                let k = k.min(n) as u64;
                self.accepted += k;
                if len + 28 > mtu as usize {
                    self.over_mtu += k;
                }
            }
            Err(SendError::NoBufs | SendError::Again) => self.refused_nobufs += 1,
            Err(_) => {}
        }
    }
}

/// Runs a [`Op::Send`] or [`Op::Batch`] to `dst` on a device of MTU `mtu`
/// (other steps are the caller's): true when it was one.
pub fn send(sock: &mut UdpSocket, op: &Op, dst: SocketAddrV4, mtu: u32, seen: &mut Seen) -> bool {
    let payload = [0x5au8; 9000];
    match *op {
        Op::Send(len) => {
            let r = sock.send_to(&payload[..len], dst, MsgFlags::DONTWAIT);
            seen.count(mtu, r.map(|_| 1), 1, len);
        }
        Op::Batch(n, len) => {
            let msgs: Vec<BatchMsg<'_>> = (0..n)
                .map(|_| BatchMsg::new(&payload[..len], Some(dst)))
                .collect();
            let mut fates = vec![MsgFate::NotSent; n];
            let r = sock.send_batch_fates(&msgs, MsgFlags::DONTWAIT, &mut fates);
            // A later message's failure ends the call with the count so far
            // (its error lost, as sendmmsg's): the fates tell it.
            if r.is_ok() {
                let failed = fates
                    .iter()
                    .filter(|f| matches!(f, MsgFate::Failed(SendError::NoBufs | SendError::Again)));
                seen.refused_nobufs += failed.count() as u64;
            }
            seen.count(mtu, r, n, len);
        }
        _ => return false,
    }
    true
}

/// Packets waiting for a neighbour, and in the qdiscs. A qdisc's `qlen`
/// counts its requeued packets too (`dev_requeue_skb` adds them to
/// `q.qlen`, as the kernel's does): not added again.
pub fn queued(stack: &Stack) -> u64 {
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

/// Drop reasons of a qdisc.
const QDISC: [DropReason; 4] = [
    DropReason::QdiscDrop,
    DropReason::QdiscOverlimit,
    DropReason::QdiscCongested,
    DropReason::QueuePurge,
];

/// The ledgers, given the IPv4 frames the wire took (`wire_ip`) and
/// whether the workload's neighbour never answers: then every datagram
/// waits on it and is dropped there, and the qdisc only ever holds ARP
/// requests, whose drops are no IP packet's.
pub fn check(
    stack: &Stack,
    seen: &Seen,
    wire_ip: u64,
    arp_fails: bool,
) -> Result<(), TestCaseError> {
    let c = stack.counters();
    let swallowed = c.get(Mib::UdpSndbufErrors) - seen.refused_nobufs;
    prop_assert_eq!(
        seen.accepted,
        c.get(Mib::UdpOutDatagrams) + swallowed,
        "datagrams: accepted = sent by UDP + swallowed ENOBUFS"
    );
    let after: u64 = AFTER_OUTPUT
        .iter()
        .filter(|r| !(arp_fails && QDISC.contains(r)))
        .map(|r| c.dropped(*r))
        .sum();
    let q = queued(stack);
    // The ICMP errors an unanswered neighbour sends us (`arp_error_report`)
    // go out of `lo`.
    let lo = stack.device("lo").unwrap().stats.get(DevCounter::TxPackets);
    prop_assert_eq!(
        c.get(Mib::IpOutTransmits),
        wire_ip + lo + after + q,
        "IP packets: transmits = on the wire {} + on lo {} + dropped {} + queued {}",
        wire_ip,
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
