//! Neighbour resolution over ARP with the kernel's NUD state machine and
//! default timers, stepped with a manual clock.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use ipxmit::dev::DevConfig;
use ipxmit::neigh::NudState;
use ipxmit::stats::DropReason;
use ipxmit::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
};
use ipxmit::{ManualClock, MsgFlags, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;

const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const MAC_US: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const MAC_PEER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 3]);

fn host() -> (Arc<Stack>, Arc<MemWire>, ManualClock) {
    let clock = ManualClock::new();
    let stack = Stack::with_clock(Arc::new(clock.clone()));
    let wire = MemWire::new(4096);
    stack
        .add_device(DevConfig::ethernet("eth0", MAC_US), wire.drivers(1))
        .unwrap();
    stack
        .add_addr("eth0", "10.0.0.1/24".parse().unwrap())
        .unwrap();
    (stack, wire, clock)
}

enum Frame {
    Arp(EthernetAddress, ArpRepr),
    Ip(EthernetAddress, Vec<u8>),
}

fn frames(wire: &MemWire) -> Vec<Frame> {
    let mut v = Vec::new();
    wire.drain(|p| {
        let b = p.to_vec();
        let eth = EthernetFrame::new_checked(&b[..]).unwrap();
        let f = match eth.ethertype() {
            EtherType::Arp => {
                assert_eq!(
                    b.len(),
                    42,
                    "ARP frames are 42 bytes, as arp_create makes them"
                );
                let a = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
                Frame::Arp(eth.dst_addr(), a)
            }
            _ => Frame::Ip(eth.dst_addr(), eth.payload().to_vec()),
        };
        v.push(f);
    });
    v
}

fn arp_frame(
    op: ArpOperation,
    eth_dst: EthernetAddress,
    sha: EthernetAddress,
    sip: Ipv4Addr,
    tip: Ipv4Addr,
) -> Vec<u8> {
    let mut b = vec![0u8; 42];
    let eth = EthernetRepr {
        src_addr: sha,
        dst_addr: eth_dst,
        ethertype: EtherType::Arp,
    };
    b[..14].copy_from_slice(&eth.to_bytes());
    let a = ArpRepr {
        operation: op,
        source_hardware_addr: sha,
        source_protocol_addr: sip,
        target_hardware_addr: if op == ArpOperation::Reply {
            MAC_US
        } else {
            EthernetAddress([0; 6])
        },
        target_protocol_addr: tip,
    };
    a.emit(&mut ArpPacket::new_unchecked(&mut b[14..]));
    b
}

fn send(s: &mut UdpSocket, tag: u8) {
    s.send_to(&[tag; 100], SocketAddrV4::new(PEER, 9), MsgFlags::NONE)
        .unwrap();
}

fn is_request(f: &Frame, dst: EthernetAddress) -> bool {
    matches!(f, Frame::Arp(d, a) if *d == dst && a.operation == ArpOperation::Request
        && a.target_protocol_addr == PEER && a.source_protocol_addr == US
        && a.source_hardware_addr == MAC_US)
}

#[test]
fn unanswered_resolution_sends_three_requests_then_fails_and_drops_the_queue() {
    let (stack, wire, clock) = host();
    let mut s = UdpSocket::new(&stack);
    for t in 0..3 {
        send(&mut s, t);
    }
    let f = frames(&wire);
    assert_eq!(f.len(), 1, "one request at once, datagrams queued");
    assert!(is_request(&f[0], EthernetAddress::BROADCAST));
    let n = stack.neighbours().lookup(2, PEER).unwrap();
    assert_eq!((n.state(), n.queued()), (NudState::Incomplete, 3));
    for _ in 0..2 {
        clock.advance(Duration::from_secs(1));
        stack.poll();
        let f = frames(&wire);
        assert_eq!(f.len(), 1, "one retransmission per retrans_time");
        assert!(is_request(&f[0], EthernetAddress::BROADCAST));
    }
    clock.advance(Duration::from_secs(1));
    stack.poll();
    assert!(
        frames(&wire).is_empty(),
        "mcast_solicit = 3 requests in all"
    );
    assert_eq!(n.state(), NudState::Failed);
    assert_eq!(stack.counters().dropped(DropReason::NeighFailed), 3);
    assert_eq!(stack.next_wakeup(), None);
}

#[test]
fn reply_resolves_and_releases_the_queue_in_order() {
    let (stack, wire, _clock) = host();
    let dev = stack.device("eth0").unwrap();
    let mut s = UdpSocket::new(&stack);
    for t in 0..4 {
        send(&mut s, t);
    }
    assert_eq!(frames(&wire).len(), 1);
    stack.receive(
        &dev,
        &arp_frame(ArpOperation::Reply, MAC_US, MAC_PEER, PEER, US),
    );
    let f = frames(&wire);
    assert_eq!(f.len(), 4);
    for (t, fr) in f.iter().enumerate() {
        let Frame::Ip(dst, ip) = fr else {
            panic!("IP frame expected")
        };
        assert_eq!(*dst, MAC_PEER);
        assert_eq!(ip[28], t as u8, "released in order");
    }
    let n = stack.neighbours().lookup(dev.ifindex(), PEER).unwrap();
    assert_eq!(n.state(), NudState::Reachable);
    send(&mut s, 9);
    assert!(
        matches!(&frames(&wire)[..], [Frame::Ip(d, _)] if *d == MAC_PEER),
        "fast path"
    );
}

#[test]
fn reachable_goes_stale_then_delay_then_unicast_probes() {
    let (stack, wire, clock) = host();
    let dev = stack.device("eth0").unwrap();
    let mut s = UdpSocket::new(&stack);
    send(&mut s, 0);
    stack.receive(
        &dev,
        &arp_frame(ArpOperation::Reply, MAC_US, MAC_PEER, PEER, US),
    );
    frames(&wire);
    let n = stack.neighbours().lookup(dev.ifindex(), PEER).unwrap();
    clock.advance(Duration::from_secs(46));
    stack.poll();
    assert_eq!(
        n.state(),
        NudState::Stale,
        "reachable_time is at most 1.5 x 30 s"
    );
    send(&mut s, 1);
    assert!(
        matches!(&frames(&wire)[..], [Frame::Ip(d, _)] if *d == MAC_PEER),
        "STALE still sends"
    );
    assert_eq!(n.state(), NudState::Delay);
    clock.advance(Duration::from_secs(5));
    stack.poll();
    assert_eq!(n.state(), NudState::Probe);
    let f = frames(&wire);
    assert!(
        f.len() == 1 && is_request(&f[0], MAC_PEER),
        "PROBE asks by unicast"
    );
    for _ in 0..2 {
        clock.advance(Duration::from_secs(1));
        stack.poll();
        assert!(is_request(&frames(&wire)[0], MAC_PEER));
    }
    clock.advance(Duration::from_secs(1));
    stack.poll();
    assert_eq!(n.state(), NudState::Failed, "ucast_solicit = 3 probes");
}

#[test]
fn requests_for_us_are_answered_and_the_sender_learned() {
    let (stack, wire, _clock) = host();
    let dev = stack.device("eth0").unwrap();
    stack.receive(
        &dev,
        &arp_frame(
            ArpOperation::Request,
            EthernetAddress::BROADCAST,
            MAC_PEER,
            PEER,
            US,
        ),
    );
    let f = frames(&wire);
    let [Frame::Arp(dst, a)] = &f[..] else {
        panic!("one ARP reply")
    };
    assert_eq!(*dst, MAC_PEER);
    assert_eq!(a.operation, ArpOperation::Reply);
    assert_eq!(
        (a.source_hardware_addr, a.source_protocol_addr),
        (MAC_US, US)
    );
    assert_eq!(
        (a.target_hardware_addr, a.target_protocol_addr),
        (MAC_PEER, PEER)
    );
    let n = stack.neighbours().lookup(dev.ifindex(), PEER).unwrap();
    assert_eq!((n.state(), n.lladdr()), (NudState::Stale, Some(MAC_PEER)));
    // A request for an address that is not ours is ignored.
    stack.receive(
        &dev,
        &arp_frame(
            ArpOperation::Request,
            EthernetAddress::BROADCAST,
            MAC_PEER,
            PEER,
            Ipv4Addr::new(10, 0, 0, 9),
        ),
    );
    assert!(frames(&wire).is_empty());
}

#[test]
fn unresolved_queue_is_bounded_in_bytes_and_permanent_entries_hold() {
    let (stack, wire, _clock) = host();
    let mut s = UdpSocket::new(&stack);
    for _ in 0..200 {
        s.send_to(&[0; 1400], SocketAddrV4::new(PEER, 9), MsgFlags::NONE)
            .unwrap();
    }
    let n = stack.neighbours().lookup(2, PEER).unwrap();
    let dropped = stack.counters().dropped(DropReason::NeighQueueFull);
    assert!(dropped > 0, "over unres_qlen_bytes the oldest are dropped");
    assert_eq!(n.queued() as u64 + dropped, 200, "queued + dropped = sent");
    frames(&wire);
    let other = Ipv4Addr::new(10, 0, 0, 7);
    stack
        .add_neigh("eth0", other, MAC_PEER, NudState::Permanent)
        .unwrap();
    let dev = stack.device("eth0").unwrap();
    stack.receive(
        &dev,
        &arp_frame(
            ArpOperation::Reply,
            MAC_US,
            EthernetAddress([2, 9, 9, 9, 9, 9]),
            other,
            US,
        ),
    );
    let p = stack.neighbours().lookup(dev.ifindex(), other).unwrap();
    assert_eq!(
        (p.state(), p.lladdr()),
        (NudState::Permanent, Some(MAC_PEER)),
        "ARP does not override PERMANENT"
    );
}
