//! The neighbour table's timer queue (a heap with lazy deletion) against a
//! scan of every entry: after random sends, ARP replies and requests,
//! deletions, static entries and clock steps, the next timer the table
//! reports is the earliest of its entries' timers, `poll` leaves none due,
//! and the queue's stale items stay bounded.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use ipxmit::dev::DevConfig;
use ipxmit::neigh::NudState;
use ipxmit::wire::{ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetRepr};
use ipxmit::{ManualClock, MsgFlags, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;
use proptest::prelude::*;

const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const MAC_US: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);

fn peer(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 10 + i)
}

fn peer_mac(i: u8) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, 1, i])
}

fn arp_frame(op: ArpOperation, i: u8) -> Vec<u8> {
    let mut b = vec![0u8; 42];
    let eth = EthernetRepr {
        src_addr: peer_mac(i),
        dst_addr: if op == ArpOperation::Reply {
            MAC_US
        } else {
            EthernetAddress::BROADCAST
        },
        ethertype: EtherType::Arp,
    };
    b[..14].copy_from_slice(&eth.to_bytes());
    ArpRepr {
        operation: op,
        source_hardware_addr: peer_mac(i),
        source_protocol_addr: peer(i),
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: US,
    }
    .emit(&mut ArpPacket::new_unchecked(&mut b[14..]));
    b
}

#[derive(Debug, Clone)]
enum Op {
    Send(u8),
    Reply(u8),
    Request(u8),
    Del(u8),
    Static(u8),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..12).prop_map(Op::Send),
        2 => (0u8..12).prop_map(Op::Reply),
        1 => (0u8..12).prop_map(Op::Request),
        1 => (0u8..12).prop_map(Op::Del),
        1 => (0u8..12).prop_map(Op::Static),
        4 => prop_oneof![0u64..1500, 1000u64..60_000].prop_map(Op::Advance),
    ]
}

/// The earliest timer of any entry, by scanning them all.
fn scanned(stack: &Stack) -> Option<ipxmit::time::Instant> {
    stack
        .neighbours()
        .entries()
        .iter()
        .filter_map(|n| n.timer())
        .min()
}

fn apply(stack: &Stack, wire: &MemWire, clock: &ManualClock, s: &mut UdpSocket, op: &Op) {
    let dev = stack.device("eth0").unwrap();
    match *op {
        Op::Send(i) => {
            let _ = s.send_to(&[i; 64], SocketAddrV4::new(peer(i), 9), MsgFlags::DONTWAIT);
        }
        Op::Reply(i) => stack.receive(&dev, &arp_frame(ArpOperation::Reply, i)),
        Op::Request(i) => stack.receive(&dev, &arp_frame(ArpOperation::Request, i)),
        Op::Del(i) => {
            stack.del_neigh("eth0", peer(i)).unwrap();
        }
        Op::Static(i) => stack
            .add_neigh("eth0", peer(i), peer_mac(i), NudState::Permanent)
            .unwrap(),
        Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
    }
    wire.drain(|_| {});
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_timer_queue_agrees_with_a_scan_of_the_table(ops in prop::collection::vec(op(), 1..80)) {
        let clock = ManualClock::new();
        let stack = Stack::with_clock(Arc::new(clock.clone()));
        let wire = MemWire::new(4096);
        stack.add_device(DevConfig::ethernet("eth0", MAC_US), wire.drivers(1)).unwrap();
        stack.add_addr("eth0", "10.0.0.1/24".parse().unwrap()).unwrap();
        let mut s = UdpSocket::new(&stack);
        for (k, op) in ops.iter().enumerate() {
            apply(&stack, &wire, &clock, &mut s, op);
            prop_assert_eq!(stack.neighbours().next_timer(), scanned(&stack), "after op {} {:?}", k, op);
            stack.poll();
            wire.drain(|_| {});
            let next = stack.neighbours().next_timer();
            prop_assert_eq!(next, scanned(&stack), "after poll, op {} {:?}", k, op);
            prop_assert!(next.is_none_or(|t| t > stack.now()), "poll ran every due timer");
            // Each op arms at most a few timers; items leave once due.
            prop_assert!(stack.neighbours().timer_items() <= 4 * (k + 1));
        }
    }
}

/// A timer that fires re-arms itself (INCOMPLETE retransmits): each run
/// records the new time, so resolution keeps going to FAILED and then the
/// table has nothing armed.
#[test]
fn retransmit_timers_rearm_through_the_queue_until_failed() {
    let clock = ManualClock::new();
    let stack = Stack::with_clock(Arc::new(clock.clone()));
    let wire = MemWire::new(4096);
    stack
        .add_device(DevConfig::ethernet("eth0", MAC_US), wire.drivers(1))
        .unwrap();
    stack
        .add_addr("eth0", "10.0.0.1/24".parse().unwrap())
        .unwrap();
    let mut s = UdpSocket::new(&stack);
    for i in 0..3 {
        s.send_to(&[0; 8], SocketAddrV4::new(peer(i), 9), MsgFlags::NONE)
            .unwrap();
    }
    let mut requests = 0;
    for _ in 0..5 {
        wire.drain(|_| requests += 1);
        clock.advance(Duration::from_secs(1));
        stack.poll();
    }
    assert_eq!(requests, 9, "three requests for each of three entries");
    let n = stack.neighbours().lookup(2, peer(1)).unwrap();
    assert_eq!(n.state(), NudState::Failed);
    assert_eq!(stack.neighbours().next_timer(), None);
    assert_eq!(stack.neighbours().timer_items(), 0, "every item left");
}

/// A REACHABLE timer run exactly at its time, with no confirmation since,
/// re-arms itself at that same time (`neigh_timer_handler`'s
/// `time_before_eq(now, confirmed + reachable_time)`): it stays recorded,
/// so the entry still goes STALE once the clock moves on.
#[test]
fn a_timer_rearmed_at_the_time_it_ran_stays_in_the_queue() {
    let clock = ManualClock::new();
    let stack = Stack::with_clock(Arc::new(clock.clone()));
    let wire = MemWire::new(4096);
    stack
        .add_device(DevConfig::ethernet("eth0", MAC_US), wire.drivers(1))
        .unwrap();
    stack
        .add_addr("eth0", "10.0.0.1/24".parse().unwrap())
        .unwrap();
    let mut s = UdpSocket::new(&stack);
    s.send_to(&[0; 8], SocketAddrV4::new(peer(0), 9), MsgFlags::NONE)
        .unwrap();
    let dev = stack.device("eth0").unwrap();
    stack.receive(&dev, &arp_frame(ArpOperation::Reply, 0));
    let n = stack.neighbours().lookup(dev.ifindex(), peer(0)).unwrap();
    let t = n.timer().unwrap();
    assert_eq!(n.state(), NudState::Reachable);
    clock.advance(Duration::from_nanos(t.as_nanos() - stack.now().as_nanos()));
    stack.poll();
    assert_eq!((n.state(), n.timer()), (NudState::Reachable, Some(t)));
    assert_eq!(stack.neighbours().next_timer(), Some(t), "still queued");
    clock.advance(Duration::from_millis(1));
    stack.poll();
    assert_eq!(n.state(), NudState::Stale);
}
