//! End to end: UDP datagrams through the whole transmit path to the in-memory
//! wire, checked by independent parsers (etherparse, internet-checksum) and
//! against the kernel's fragment geometry.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use etherparse::{Ipv4HeaderSlice, SlicedPacket};
use ipxmit::sched::QdiscSpec;
use ipxmit::stats::{DropReason, Mib};
use ipxmit::wire::EthernetAddress;
use ipxmit::{MsgFlags, SendError, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;

const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn mac(last: u8) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, 0, last])
}

/// A stack with eth0 (10.0.0.1/24) on a memory wire and a static neighbour.
fn host(wire_cap: usize, txqueuelen: u32) -> (Arc<Stack>, Arc<MemWire>) {
    let mut cfg = common::eth0();
    cfg.txqueuelen = txqueuelen;
    common::mem_host(cfg, 1, wire_cap)
}

fn payload(len: usize, k: usize) -> Vec<u8> {
    (0..len).map(|i| ((7 * i + k) % 256) as u8).collect()
}

struct Frag {
    id: u16,
    tot_len: u16,
    offset: u16,
    mf: bool,
    df: bool,
    ip_payload: Vec<u8>,
}

/// Parses one frame with etherparse and checks its IP header checksum with
/// internet-checksum.
fn parse_frame(frame: &[u8]) -> Frag {
    let p = SlicedPacket::from_ethernet(frame).expect("etherparse parses the frame");
    let eth = frame[..14].to_vec();
    assert_eq!(&eth[0..6], &mac(2).0, "destination MAC from the neighbour");
    assert_eq!(&eth[6..12], &mac(1).0, "source MAC of eth0");
    assert!(p.net.is_some());
    let ip = Ipv4HeaderSlice::from_slice(&frame[14..]).expect("IPv4 header");
    let hlen = ip.ihl() as usize * 4;
    let mut c = internet_checksum::Checksum::new();
    c.add_bytes(&frame[14..14 + hlen]);
    assert_eq!(c.checksum(), [0, 0], "IP header checksum verifies");
    assert_eq!(ip.source_addr(), SRC);
    assert_eq!(ip.destination_addr(), DST);
    assert_eq!(ip.ttl(), 64);
    assert_eq!(
        frame.len(),
        14 + ip.total_len() as usize,
        "frame is exactly the datagram"
    );
    Frag {
        id: ip.identification(),
        tot_len: ip.total_len(),
        offset: ip.fragments_offset().byte_offset(),
        mf: ip.more_fragments(),
        df: ip.dont_fragment(),
        ip_payload: frame[14 + hlen..].to_vec(),
    }
}

/// Reassembles fragments (in order on this wire) into UDP datagrams and checks
/// each UDP checksum over the pseudo-header.
fn reassemble(frags: &[Frag]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
    let mut id = None;
    for f in frags {
        if f.offset == 0 {
            assert!(cur.is_empty(), "previous datagram complete");
            id = Some(f.id);
        }
        assert_eq!(Some(f.id), id, "all fragments share the ID");
        cur.insert(f.offset, f.ip_payload.clone());
        if !f.mf {
            let mut dgram = Vec::new();
            for (off, data) in std::mem::take(&mut cur) {
                assert_eq!(off as usize, dgram.len(), "no hole or overlap");
                dgram.extend_from_slice(&data);
            }
            out.push(check_udp(&dgram));
        }
    }
    assert!(cur.is_empty(), "no datagram left incomplete");
    out
}

fn check_udp(d: &[u8]) -> Vec<u8> {
    assert_eq!(
        u16::from_be_bytes([d[4], d[5]]) as usize,
        d.len(),
        "UDP length"
    );
    assert_eq!(u16::from_be_bytes([d[0], d[1]]), 5000);
    assert_eq!(u16::from_be_bytes([d[2], d[3]]), 6000);
    assert_ne!(u16::from_be_bytes([d[6], d[7]]), 0, "checksum present");
    let mut c = internet_checksum::Checksum::new();
    c.add_bytes(&SRC.octets());
    c.add_bytes(&DST.octets());
    c.add_bytes(&[0, 17]);
    c.add_bytes(&(d.len() as u16).to_be_bytes());
    c.add_bytes(d);
    assert_eq!(c.checksum(), [0, 0], "UDP checksum verifies");
    d[8..].to_vec()
}

fn drain(wire: &MemWire) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    wire.drain(|p| v.push(p.to_vec()));
    v
}

fn bound_socket(stack: &Arc<Stack>) -> UdpSocket {
    let mut s = UdpSocket::new(stack);
    s.bind(SocketAddrV4::new(SRC, 5000)).unwrap();
    s
}

#[test]
fn datagrams_of_every_boundary_size_arrive_intact_with_kernel_geometry() {
    let (stack, wire) = host(4096, 1000);
    let mut s = bound_socket(&stack);
    let sizes = [0usize, 1, 1472, 1473, 2953, 8000, 65507];
    let to = SocketAddrV4::new(DST, 6000);
    for (k, &n) in sizes.iter().enumerate() {
        assert_eq!(s.send_to(&payload(n, k), to, MsgFlags::NONE).unwrap(), n);
    }
    let frames = drain(&wire);
    let frags: Vec<Frag> = frames.iter().map(|f| parse_frame(f)).collect();
    let lens: Vec<u16> = frags.iter().map(|f| f.tot_len).collect();
    assert_eq!(frames.len(), 1 + 1 + 1 + 2 + 3 + 6 + 45);
    assert_eq!(&lens[..3], &[28, 29, 1500]);
    assert_eq!(&lens[3..5], &[1500, 21], "1473 bytes: 1500 + 21");
    assert_eq!((frags[3].offset, frags[4].offset), (0, 1480));
    assert!(frags[3].mf && !frags[4].mf);
    assert!(frags[2].df, "IP_PMTUDISC_WANT: DF on a datagram that fits");
    assert!(!frags[3].df, "and off on one that is fragmented");
    assert_eq!(&lens[5..8], &[1500, 1500, 21]);
    let f8000 = &frags[8..14];
    assert!(f8000[..5].iter().all(|f| f.tot_len == 1500 && f.mf));
    assert_eq!(
        (f8000[5].tot_len, f8000[5].offset, f8000[5].mf),
        (628, 7400, false)
    );
    for (i, f) in f8000.iter().enumerate() {
        assert_eq!(
            f.offset as usize,
            i * 1480,
            "offsets are multiples of the data space"
        );
    }
    let got = reassemble(&frags);
    for (k, &n) in sizes.iter().enumerate() {
        assert_eq!(got[k], payload(n, k), "payload of the {n}-byte datagram");
    }
    let c = stack.counters();
    assert_eq!(c.get(Mib::IpOutRequests), 7);
    assert_eq!(c.get(Mib::UdpOutDatagrams), 7);
    assert_eq!(c.get(Mib::IpFragOKs), 4);
    assert_eq!(c.get(Mib::IpFragCreates), 2 + 3 + 6 + 45);
    assert_eq!(c.dropped_total(), 0);
    let dev = stack.device("eth0").unwrap();
    let st = dev.stats.snapshot();
    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    assert_eq!((st.tx_packets, st.tx_bytes), (frames.len() as u64, bytes));
    let q = dev.queues()[0].with_qdisc(|q| *q.stats());
    assert_eq!(
        (q.packets, q.bytes),
        (frames.len() as u64, bytes),
        "qdisc Sent"
    );
    assert_eq!(
        s.budget().allocated(),
        0,
        "every buffer returned its charge"
    );
}

#[test]
fn oversize_datagram_is_emsgsize_and_sends_nothing() {
    let (stack, wire) = host(64, 1000);
    let mut s = bound_socket(&stack);
    s.set_recverr(true);
    let e = s
        .send_to(
            &payload(65508, 0),
            SocketAddrV4::new(DST, 6000),
            MsgFlags::NONE,
        )
        .unwrap_err();
    assert_eq!(e.errno(), ipxmit::Errno::EMSGSIZE);
    assert!(wire.is_empty());
    assert_eq!(stack.counters().dropped(DropReason::PktTooBig), 1);
    let ee = s.recv_err().expect("IP_RECVERR entry");
    assert_eq!(
        (ee.errno, ee.info),
        (ipxmit::Errno::EMSGSIZE, 1500),
        "ee_info is the MTU"
    );
    assert_eq!(stack.counters().get(Mib::IpOutRequests), 0);
}

#[test]
fn no_route_is_enetunreach_and_counted() {
    let (stack, wire) = host(64, 1000);
    let mut s = bound_socket(&stack);
    let e = s
        .send_to(
            b"x",
            SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 1), 9),
            MsgFlags::NONE,
        )
        .unwrap_err();
    assert_eq!(e, SendError::NetUnreachable(Ipv4Addr::new(192, 168, 77, 1)));
    assert_eq!(stack.counters().get(Mib::IpOutNoRoutes), 1);
    assert!(wire.is_empty());
    // The stack keeps working.
    s.send_to(b"ok", SocketAddrV4::new(DST, 6000), MsgFlags::NONE)
        .unwrap();
    assert_eq!(wire.len(), 1);
}

#[test]
fn busy_driver_requeues_without_loss_or_reordering() {
    let (stack, wire) = host(4, 1000);
    let mut s = bound_socket(&stack);
    let to = SocketAddrV4::new(DST, 6000);
    for k in 0..50 {
        s.send_to(&payload(100, k), to, MsgFlags::NONE).unwrap();
    }
    let dev = stack.device("eth0").unwrap();
    assert!(
        dev.queues()[0].ctl().is_stopped(),
        "the full ring stopped the queue"
    );
    let mut frames = Vec::new();
    for _ in 0..1000 {
        frames.extend(drain(&wire));
        stack.poll();
        if frames.len() == 50 {
            break;
        }
    }
    assert_eq!(frames.len(), 50, "nothing lost");
    for (k, f) in frames.iter().enumerate() {
        let fr = parse_frame(f);
        assert_eq!(check_udp(&fr.ip_payload), payload(100, k), "in order");
    }
    let q = dev.queues()[0].with_qdisc(|q| *q.stats());
    assert!(q.requeues >= 1, "busy driver made the qdisc requeue");
    assert_eq!((q.packets, q.drops, q.qlen, q.backlog), (50, 0, 0, 0));
    assert!(wire.busy_count() >= 1);
}

#[test]
fn full_pfifo_fast_drops_and_counts() {
    let (stack, wire) = host(1, 8);
    stack.replace_qdisc("eth0", &QdiscSpec::PfifoFast).unwrap();
    let mut s = bound_socket(&stack);
    let to = SocketAddrV4::new(DST, 6000);
    for k in 0..30 {
        // Without IP_RECVERR the kernel reports a qdisc drop as success and
        // counts UdpSndbufErrors.
        s.send_to(&payload(10, k), to, MsgFlags::NONE).unwrap();
    }
    let dev = stack.device("eth0").unwrap();
    let q = dev.queues()[0].with_qdisc(|q| *q.stats());
    // One on the wire, one requeued, eight in band 1, the rest dropped.
    assert_eq!(q.drops, 20);
    assert_eq!(stack.counters().dropped(DropReason::QdiscDrop), 20);
    assert_eq!(stack.counters().get(Mib::UdpSndbufErrors), 20);
    assert_eq!(stack.counters().get(Mib::IpOutDiscards), 20);
    assert_eq!(stack.counters().get(Mib::UdpOutDatagrams), 10);
    let mut n = 0;
    for _ in 0..100 {
        n += drain(&wire).len();
        stack.poll();
    }
    assert_eq!(n, 10, "sent + dropped = submitted");
    s.set_recverr(true);
    for k in 0..20 {
        let _ = s.send_to(&payload(10, k), to, MsgFlags::NONE);
    }
    let errs = (0..20)
        .filter(|&k| s.send_to(&payload(10, k), to, MsgFlags::NONE) == Err(SendError::NoBufs))
        .count();
    assert!(errs > 0, "with IP_RECVERR the drop is ENOBUFS");
}

#[test]
fn an_unrouted_packet_is_refused_not_panicked_on() {
    let (stack, wire) = host(8, 1000);
    let mut h = [0u8; 28];
    h[0] = 0x45;
    let pkt = ipxmit::PacketBuf::from_slice(32, &h);
    let r = ipxmit::ipv4::output::local_out(&stack, pkt);
    assert!(matches!(r, Err(SendError::Inval(_))), "{r:?}");
    assert!(wire.is_empty());
    assert_eq!(stack.counters().dropped(DropReason::IpOutNoRoutes), 1);
}
