//! Tests of the verifying peer against frames built by `etherparse`, an
//! implementation independent of ipxmit's output path.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Ethernet2Header, IpEcn, IpFragOffset,
    IpNumber, Ipv4Header, Ipv4Options, PacketBuilder, UdpHeader,
};
use ipxmit::dev::LinkType;
use ipxmit::time::Instant;
use ipxmit::wire::EthernetAddress;
use ipxmit_drivers::pattern::{self, Check};
use ipxmit_drivers::peer::{
    Peer, PeerConfig, PeerDrop, PeerStats, Received, UdpDatagram, Unassembled,
};
use ipxmit_drivers::sender_drops::{SenderDrops, SLOTS};
use proptest::prelude::*;

const PEER_IP: [u8; 4] = [10, 0, 0, 2];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const SENDER_IP: [u8; 4] = [10, 0, 0, 1];
const SENDER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SPORT: u16 = 4000;
const DPORT: u16 = 5000;
const T0: Instant = Instant::from_nanos(1_000_000_000);

fn config() -> PeerConfig {
    PeerConfig::new(Ipv4Addr::from(PEER_IP), EthernetAddress(PEER_MAC))
}

fn peer() -> Peer {
    Peer::new(config())
}

/// An Ethernet/IPv4/UDP frame with a correct UDP checksum, DF set, TTL 64.
fn udp_frame(payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(SENDER_MAC, PEER_MAC)
        .ipv4(SENDER_IP, PEER_IP, 64)
        .udp(SPORT, DPORT);
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, payload).unwrap();
    frame
}

/// Offset of the UDP header in frames from [`udp_frame`].
const UDP_AT: usize = 14 + 20;

/// The IP payload (UDP header and payload, checksum filled) of a datagram
/// from the sender to the peer.
fn udp_bytes(payload: &[u8]) -> Vec<u8> {
    let ip = Ipv4Header::new(0, 64, IpNumber::UDP, SENDER_IP, PEER_IP).unwrap();
    let udp = UdpHeader::with_ipv4_checksum(SPORT, DPORT, &ip, payload).unwrap();
    let mut out = udp.to_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// One fragment of an IP datagram as an Ethernet frame.
struct Frag<'a> {
    id: u16,
    offset: usize,
    more: bool,
    data: &'a [u8],
    options: &'a [u8],
    ecn: u8,
    protocol: IpNumber,
}

impl<'a> Frag<'a> {
    fn new(id: u16, offset: usize, more: bool, data: &'a [u8]) -> Self {
        Frag {
            id,
            offset,
            more,
            data,
            options: &[],
            ecn: 0,
            protocol: IpNumber::UDP,
        }
    }

    fn frame(&self) -> Vec<u8> {
        let mut ip = Ipv4Header {
            total_len: (20 + self.options.len() + self.data.len()) as u16,
            identification: self.id,
            dont_fragment: false,
            more_fragments: self.more,
            fragment_offset: IpFragOffset::try_new((self.offset / 8) as u16).unwrap(),
            time_to_live: 64,
            protocol: self.protocol,
            source: SENDER_IP,
            destination: PEER_IP,
            options: Ipv4Options::try_from(self.options).unwrap(),
            ecn: IpEcn::try_new(self.ecn).unwrap(),
            ..Default::default()
        };
        ip.header_checksum = ip.calc_header_checksum();
        let eth = Ethernet2Header {
            source: SENDER_MAC,
            destination: PEER_MAC,
            ether_type: EtherType::IPV4,
        };
        let mut frame = eth.to_bytes().to_vec();
        frame.extend_from_slice(&ip.to_bytes());
        frame.extend_from_slice(self.data);
        frame
    }
}

/// Fragments `ip_payload` at the given (sorted, 8-multiple) cut points.
fn fragments(id: u16, ip_payload: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(ip_payload.len());
    bounds
        .windows(2)
        .map(|w| {
            let last = w[1] == ip_payload.len();
            Frag::new(id, w[0], !last, &ip_payload[w[0]..w[1]]).frame()
        })
        .collect()
}

fn datagram(r: Received) -> UdpDatagram {
    match r {
        Received::Datagram(d) => d,
        other => panic!("expected a datagram, got {other:?}"),
    }
}

/// Rewrites the IP header checksum of an Ethernet frame after an edit.
fn fix_ip_checksum(frame: &mut [u8]) {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    frame[24] = 0;
    frame[25] = 0;
    let sum = internet_checksum::checksum(&frame[14..14 + ihl]);
    frame[24..26].copy_from_slice(&sum);
}

#[test]
fn whole_udp_datagram_is_delivered() {
    let mut p = peer();
    let payload: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
    let frame = udp_frame(&payload);
    let d = datagram(p.receive(&frame, T0));
    assert_eq!(d.src, SocketAddrV4::new(SENDER_IP.into(), SPORT));
    assert_eq!(d.dst, SocketAddrV4::new(PEER_IP.into(), DPORT));
    assert_eq!((d.ttl, d.tos, d.df, d.fragments), (64, 0, true, 1));
    assert_eq!(d.payload, payload);
    let s = p.stats();
    assert_eq!(
        (s.frames, s.bytes, s.ip_packets),
        (1, frame.len() as u64, 1)
    );
    assert_eq!((s.datagrams, s.udp_bytes, s.drops_total()), (1, 300, 0));
    assert_eq!((s.fragments, s.reassembled), (0, 0));
}

#[test]
fn corrupted_udp_checksum_is_dropped() {
    let mut p = peer();
    let mut frame = udp_frame(b"hello, peer");
    assert_ne!(&frame[UDP_AT + 6..UDP_AT + 8], &[0, 0]);
    *frame.last_mut().unwrap() ^= 0x01;
    assert_eq!(
        p.receive(&frame, T0),
        Received::Dropped(PeerDrop::BadUdpChecksum)
    );
    let s = p.stats();
    assert_eq!(s.drops(PeerDrop::BadUdpChecksum), 1);
    assert_eq!((s.datagrams, s.drops_total()), (0, 1));
}

#[test]
fn corrupted_ip_checksum_is_dropped() {
    let mut p = peer();
    let mut frame = udp_frame(b"hello, peer");
    frame[24] ^= 0x40;
    assert_eq!(
        p.receive(&frame, T0),
        Received::Dropped(PeerDrop::BadIpChecksum)
    );
    assert_eq!(p.stats().drops(PeerDrop::BadIpChecksum), 1);
    assert_eq!(PeerDrop::BadIpChecksum.name(), "IpInCsumErrors");
}

#[test]
fn zero_udp_checksum_is_accepted() {
    let mut p = peer();
    let mut frame = udp_frame(b"no checksum");
    frame[UDP_AT + 6] = 0;
    frame[UDP_AT + 7] = 0;
    assert_eq!(datagram(p.receive(&frame, T0)).payload, b"no checksum");
}

#[test]
fn ethernet_padding_after_total_length_is_ignored() {
    let mut p = peer();
    let mut frame = udp_frame(b"tiny");
    assert_eq!(frame.len(), 46);
    frame.resize(60, 0xee);
    assert_eq!(datagram(p.receive(&frame, T0)).payload, b"tiny");
}

#[test]
fn udp_length_must_equal_ip_payload_length() {
    let mut p = peer();
    // UDP length 2 bytes shorter than the IP payload (Linux would trim).
    let mut frame = udp_frame(b"abcdefgh");
    frame[UDP_AT + 5] -= 2;
    frame[UDP_AT + 6..UDP_AT + 8].copy_from_slice(&[0, 0]);
    assert_eq!(
        p.receive(&frame, T0),
        Received::Dropped(PeerDrop::BadUdpLength)
    );
    // IP payload shorter than a UDP header.
    let short = Frag::new(1, 0, false, &[1, 2, 3, 4]).frame();
    assert_eq!(
        p.receive(&short, T0),
        Received::Dropped(PeerDrop::BadUdpLength)
    );
    assert_eq!(p.stats().drops(PeerDrop::BadUdpLength), 2);
}

#[test]
fn header_errors_have_their_own_reasons() {
    let mut p = peer();
    let good = udp_frame(b"header checks");
    let mut version = good.clone();
    version[14] = 0x55;
    fix_ip_checksum(&mut version);
    assert_eq!(
        p.receive(&version, T0),
        Received::Dropped(PeerDrop::BadVersion)
    );
    let mut ihl = good.clone();
    ihl[14] = 0x44;
    assert_eq!(p.receive(&ihl, T0), Received::Dropped(PeerDrop::BadIhl));
    let mut total = good.clone();
    total[17] += 1; // one byte more than the frame holds
    fix_ip_checksum(&mut total);
    assert_eq!(
        p.receive(&total, T0),
        Received::Dropped(PeerDrop::BadTotalLength)
    );
    let mut below = good.clone();
    below[16..18].copy_from_slice(&16u16.to_be_bytes());
    fix_ip_checksum(&mut below);
    assert_eq!(
        p.receive(&below, T0),
        Received::Dropped(PeerDrop::BadTotalLength)
    );
    let body = udp_bytes(b"options");
    let bad_option = Frag {
        options: &[7, 2, 0, 0],
        ..Frag::new(9, 0, false, &body)
    };
    assert_eq!(
        p.receive(&bad_option.frame(), T0),
        Received::Dropped(PeerDrop::BadOptions)
    );
    let nops = Frag {
        options: &[1, 1, 1, 0],
        ..Frag::new(9, 0, false, &body)
    };
    assert_eq!(datagram(p.receive(&nops.frame(), T0)).payload, b"options");
    let s = p.stats();
    assert_eq!((s.drops_total(), s.ip_packets, s.datagrams), (5, 6, 1));
}

#[test]
fn frames_not_for_us_and_other_protocols() {
    let mut p = peer();
    let mut other_mac = udp_frame(b"x");
    other_mac[5] = 0x99;
    assert_eq!(p.receive(&other_mac, T0), Received::NotForUs);
    let to_other_ip = PacketBuilder::ethernet2(SENDER_MAC, PEER_MAC)
        .ipv4(SENDER_IP, [10, 0, 0, 3], 64)
        .udp(SPORT, DPORT);
    let mut frame = Vec::new();
    to_other_ip.write(&mut frame, b"x").unwrap();
    assert_eq!(p.receive(&frame, T0), Received::NotForUs);
    let mut broadcast = udp_frame(b"b");
    broadcast[..6].copy_from_slice(&[0xff; 6]);
    assert!(matches!(p.receive(&broadcast, T0), Received::Datagram(_)));
    let mut ipv6 = udp_frame(b"x");
    ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(p.receive(&ipv6, T0), Received::Other);
    let mut vlan = udp_frame(b"x");
    vlan[12..14].copy_from_slice(&[0x81, 0x00]);
    assert_eq!(
        p.receive(&vlan, T0),
        Received::Dropped(PeerDrop::BadEthertype)
    );
    let s = p.stats();
    assert_eq!(
        (s.not_for_us, s.other, s.datagrams, s.drops_total()),
        (2, 1, 1, 1)
    );
}

/// A peer standing for a gateway takes datagrams for any address at its MAC,
/// but answers ARP for its own address only (a mistyped on-link
/// destination must stay unresolved).
#[test]
fn gateway_peer_accepts_routed_datagrams_but_answers_arp_for_itself_only() {
    let mut cfg = config();
    cfg.gateway = true;
    let mut p = Peer::new(cfg);
    let routed = PacketBuilder::ethernet2(SENDER_MAC, PEER_MAC)
        .ipv4(SENDER_IP, [192, 168, 1, 1], 64)
        .udp(SPORT, DPORT);
    let mut frame = Vec::new();
    routed.write(&mut frame, b"x").unwrap();
    assert!(matches!(p.receive(&frame, T0), Received::Datagram(_)));
    let mut other_mac = frame.clone();
    other_mac[5] = 0x99;
    assert_eq!(p.receive(&other_mac, T0), Received::NotForUs);
    let other = arp_frame(ArpOperation::REQUEST, SENDER_IP, [10, 0, 0, 9]);
    assert_eq!(p.receive(&other, T0), Received::ArpOther);
    let ours = arp_frame(ArpOperation::REQUEST, SENDER_IP, PEER_IP);
    assert!(matches!(p.receive(&ours, T0), Received::ArpRequest { .. }));
}

#[test]
fn promiscuous_peer_accepts_other_addresses() {
    let mut cfg = config();
    cfg.promiscuous = true;
    let mut p = Peer::new(cfg);
    let mut other_mac = udp_frame(b"x");
    other_mac[5] = 0x99;
    assert!(matches!(p.receive(&other_mac, T0), Received::Datagram(_)));
}

#[test]
fn martian_sources_are_dropped() {
    let mut p = peer();
    for src in [
        [224, 0, 0, 1],
        [255, 255, 255, 255],
        [127, 0, 0, 1],
        [0, 0, 0, 0],
    ] {
        let b = PacketBuilder::ethernet2(SENDER_MAC, PEER_MAC)
            .ipv4(src, PEER_IP, 64)
            .udp(1, 2);
        let mut frame = Vec::new();
        b.write(&mut frame, b"m").unwrap();
        assert_eq!(
            p.receive(&frame, T0),
            Received::Dropped(PeerDrop::MartianSource)
        );
    }
    // DHCP-style: zero source to limited broadcast is fine.
    let b = PacketBuilder::ethernet2(SENDER_MAC, [0xff; 6])
        .ipv4([0, 0, 0, 0], [255, 255, 255, 255], 64)
        .udp(68, 67);
    let mut frame = Vec::new();
    b.write(&mut frame, b"discover").unwrap();
    assert!(matches!(p.receive(&frame, T0), Received::Datagram(_)));
}

#[test]
fn other_ip_protocols_are_delivered_raw() {
    let mut p = peer();
    let icmp = Frag {
        protocol: IpNumber::ICMP,
        ..Frag::new(3, 0, false, &[8, 0, 0xf7, 0xff])
    };
    assert_eq!(
        p.receive(&icmp.frame(), T0),
        Received::Ip {
            protocol: ipxmit::wire::IpProtocol::ICMP,
            src: SENDER_IP.into(),
            dst: PEER_IP.into(),
            payload: vec![8, 0, 0xf7, 0xff],
        }
    );
    assert_eq!(p.stats().ip_delivered, 1);
}

#[test]
fn l3_link_frames_start_at_the_ip_header() {
    let mut cfg = config();
    cfg.link = LinkType::L3;
    let mut p = Peer::new(cfg);
    let frame = udp_frame(b"over tun");
    assert_eq!(datagram(p.receive(&frame[14..], T0)).payload, b"over tun");
    assert_eq!(p.receive(&[0x60, 0, 0, 0], T0), Received::Other);
    assert_eq!(p.receive(&[], T0), Received::Dropped(PeerDrop::TooShort));
    assert_eq!(
        p.receive(&[0x45; 10], T0),
        Received::Dropped(PeerDrop::TooShort)
    );
    assert_eq!(
        p.receive(&frame, T0),
        Received::Dropped(PeerDrop::BadVersion)
    );
}

#[test]
fn fragments_in_order_are_reassembled() {
    let mut p = peer();
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    let body = udp_bytes(&payload);
    let frames = fragments(0x1234, &body, &[1480, 2960]);
    assert_eq!(p.receive(&frames[0], T0), Received::Fragment);
    assert_eq!(p.receive(&frames[1], T0), Received::Fragment);
    assert_eq!(p.pending_reassembly(), 1);
    let d = datagram(p.receive(&frames[2], T0));
    assert_eq!((d.fragments, d.ip_id, d.df), (3, 0x1234, false));
    assert_eq!(d.payload, payload);
    let s = p.stats();
    assert_eq!((s.fragments, s.reassembled, s.datagrams), (3, 1, 1));
    assert_eq!(
        (p.pending_reassembly(), p.pending_reassembly_bytes()),
        (0, 0)
    );
}

#[test]
fn fragments_out_of_order_are_reassembled() {
    let mut p = peer();
    let payload: Vec<u8> = (0..2000u32).map(|i| (i % 251) as u8).collect();
    let body = udp_bytes(&payload);
    let frames = fragments(7, &body, &[512, 1024, 1536]);
    for f in frames[1..].iter().rev() {
        assert_eq!(p.receive(f, T0), Received::Fragment);
    }
    let d = datagram(p.receive(&frames[0], T0));
    assert_eq!((d.fragments, d.payload.len()), (4, 2000));
    assert_eq!(d.payload, payload);
}

#[test]
fn interleaved_datagrams_use_separate_queues() {
    let mut p = peer();
    let a = udp_bytes(&[0xaa; 100]);
    let b = udp_bytes(&[0xbb; 100]);
    let fa = fragments(1, &a, &[48]);
    let fb = fragments(2, &b, &[56]);
    assert_eq!(p.receive(&fa[0], T0), Received::Fragment);
    assert_eq!(p.receive(&fb[1], T0), Received::Fragment);
    assert_eq!(p.pending_reassembly(), 2);
    assert_eq!(datagram(p.receive(&fb[0], T0)).payload, vec![0xbb; 100]);
    assert_eq!(datagram(p.receive(&fa[1], T0)).payload, vec![0xaa; 100]);
}

#[test]
fn overlapping_fragments_drop_the_queue() {
    let mut p = peer();
    let body = udp_bytes(&[5; 40]);
    assert_eq!(
        p.receive(&Frag::new(9, 0, true, &body[..24]).frame(), T0),
        Received::Fragment
    );
    let overlap = Frag::new(9, 16, false, &body[16..]).frame();
    assert_eq!(
        p.receive(&overlap, T0),
        Received::Dropped(PeerDrop::FragOverlap)
    );
    assert_eq!(p.pending_reassembly(), 0);
    // The rest of the datagram now starts a new queue that never completes.
    let rest = Frag::new(9, 24, false, &body[24..]).frame();
    assert_eq!(p.receive(&rest, T0), Received::Fragment);
    let s = p.stats();
    assert_eq!((s.drops(PeerDrop::FragOverlap), s.reassembled), (1, 0));
    assert_eq!(PeerDrop::FragOverlap.mib(), Some("IpReasmOverlaps"));
}

#[test]
fn overlap_before_the_last_run_drops_the_queue() {
    let mut p = peer();
    let body = udp_bytes(&[6; 56]); // 64 bytes
    assert_eq!(
        p.receive(&Frag::new(4, 48, false, &body[48..]).frame(), T0),
        Received::Fragment
    );
    assert_eq!(
        p.receive(&Frag::new(4, 8, true, &body[8..24]).frame(), T0),
        Received::Fragment
    );
    let across = Frag::new(4, 16, true, &body[16..32]).frame();
    assert_eq!(
        p.receive(&across, T0),
        Received::Dropped(PeerDrop::FragOverlap)
    );
    assert_eq!(p.pending_reassembly(), 0);
}

#[test]
fn duplicate_fragment_is_dropped_alone() {
    let mut p = peer();
    let body = udp_bytes(&[3; 56]);
    let frames = fragments(11, &body, &[16, 32]);
    assert_eq!(p.receive(&frames[1], T0), Received::Fragment);
    assert_eq!(
        p.receive(&frames[1], T0),
        Received::Dropped(PeerDrop::FragDuplicate)
    );
    assert_eq!(p.receive(&frames[2], T0), Received::Fragment);
    let d = datagram(p.receive(&frames[0], T0));
    assert_eq!((d.fragments, d.payload), (3, vec![3; 56]));
    assert_eq!(p.stats().drops(PeerDrop::FragDuplicate), 1);
}

#[test]
fn missing_fragment_times_out() {
    let mut p = peer();
    let body = udp_bytes(&[1; 100]);
    let frames = fragments(21, &body, &[56]);
    assert_eq!(p.receive(&frames[0], T0), Received::Fragment);
    assert_eq!(p.pending_reassembly_bytes(), 56);
    let almost = T0 + Duration::from_nanos(29_999_999_999);
    assert_eq!(p.expire(almost), 0);
    assert_eq!(p.pending_reassembly(), 1);
    assert_eq!(p.expire(T0 + Duration::from_secs(30)), 1);
    assert_eq!(
        (p.pending_reassembly(), p.pending_reassembly_bytes()),
        (0, 0)
    );
    assert_eq!(p.stats().drops(PeerDrop::FragTimeout), 1);
    // The late fragment starts a new queue, which `receive` expires too.
    let late = T0 + Duration::from_secs(31);
    assert_eq!(p.receive(&frames[1], late), Received::Fragment);
    assert!(matches!(
        p.receive(&udp_frame(b"x"), late + Duration::from_secs(30)),
        Received::Datagram(_)
    ));
    assert_eq!(p.pending_reassembly(), 0);
    assert_eq!(p.stats().drops(PeerDrop::FragTimeout), 2);
}

#[test]
fn timeout_runs_from_the_first_fragment() {
    let mut cfg = config();
    cfg.frag_timeout = Duration::from_secs(5);
    let mut p = Peer::new(cfg);
    let body = udp_bytes(&[2; 100]);
    let frames = fragments(22, &body, &[32, 64]);
    assert_eq!(p.receive(&frames[0], T0), Received::Fragment);
    assert_eq!(
        p.receive(&frames[1], T0 + Duration::from_secs(4)),
        Received::Fragment
    );
    assert_eq!(
        p.receive(&frames[2], T0 + Duration::from_secs(5)),
        Received::Fragment
    );
    assert_eq!(p.stats().drops(PeerDrop::FragTimeout), 1);
}

#[test]
fn reassembly_beyond_65535_is_dropped() {
    let mut p = peer();
    // Ping of death: the last fragment ends past 65535.
    let data = [0u8; 100];
    let pod = Frag::new(30, 65528, false, &data).frame();
    assert_eq!(p.receive(&pod, T0), Received::Dropped(PeerDrop::FragTooBig));
    // 65512 payload bytes fit a 20-byte header but not the first fragment's
    // 24-byte one: found when reassembling.
    let body = vec![0x5a; 65512];
    let first = Frag {
        options: &[1, 1, 1, 1],
        ..Frag::new(31, 0, true, &body[..32768])
    };
    let last = Frag::new(31, 32768, false, &body[32768..]);
    assert_eq!(p.receive(&first.frame(), T0), Received::Fragment);
    assert_eq!(
        p.receive(&last.frame(), T0),
        Received::Dropped(PeerDrop::FragTooBig)
    );
    let s = p.stats();
    assert_eq!(
        (
            s.drops(PeerDrop::FragTooBig),
            s.reassembled,
            p.pending_reassembly()
        ),
        (2, 0, 0)
    );
}

#[test]
fn largest_datagram_is_reassembled() {
    let mut p = peer();
    let payload: Vec<u8> = (0..65507u32).map(|i| (i >> 3) as u8).collect();
    let body = udp_bytes(&payload);
    let cuts: Vec<usize> = (1..45).map(|i| i * 1480).collect();
    let frames = fragments(32, &body, &cuts);
    let mut last = Received::Fragment;
    for f in &frames {
        last = p.receive(f, T0);
    }
    let d = datagram(last);
    assert_eq!((d.fragments, d.payload.len()), (45, 65507));
    assert_eq!(d.payload, payload);
}

#[test]
fn bad_fragment_lengths_and_ends_drop_the_queue() {
    let mut p = peer();
    let body = udp_bytes(&[4; 40]);
    let odd = Frag::new(40, 0, true, &body[..12]).frame();
    assert_eq!(
        p.receive(&odd, T0),
        Received::Dropped(PeerDrop::FragBadLength)
    );
    let empty = Frag::new(41, 8, true, &[]).frame();
    assert_eq!(
        p.receive(&empty, T0),
        Received::Dropped(PeerDrop::FragBadLength)
    );
    assert_eq!(
        p.receive(&Frag::new(42, 16, false, &body[16..]).frame(), T0),
        Received::Fragment
    );
    let other_end = Frag::new(42, 8, false, &body[8..16]).frame();
    assert_eq!(
        p.receive(&other_end, T0),
        Received::Dropped(PeerDrop::FragBadEnd)
    );
    assert_eq!(
        p.receive(&Frag::new(43, 16, false, &body[16..]).frame(), T0),
        Received::Fragment
    );
    let past_end = Frag::new(43, 48, true, &[0; 8]).frame();
    assert_eq!(
        p.receive(&past_end, T0),
        Received::Dropped(PeerDrop::FragBadEnd)
    );
    assert_eq!(p.pending_reassembly(), 0);
    assert_eq!(p.stats().drops_total(), 4);
}

#[test]
fn ecn_must_agree_across_fragments() {
    let mut p = peer();
    let body = udp_bytes(&[8; 40]);
    let a = Frag {
        ecn: 0,
        ..Frag::new(50, 0, true, &body[..24])
    };
    let b = Frag {
        ecn: 2,
        ..Frag::new(50, 24, false, &body[24..])
    };
    assert_eq!(p.receive(&a.frame(), T0), Received::Fragment);
    assert_eq!(
        p.receive(&b.frame(), T0),
        Received::Dropped(PeerDrop::FragEcnMismatch)
    );
    // ECT(0) with CE reassembles with CE.
    let c = Frag {
        ecn: 2,
        ..Frag::new(51, 0, true, &body[..24])
    };
    let d = Frag {
        ecn: 3,
        ..Frag::new(51, 24, false, &body[24..])
    };
    assert_eq!(p.receive(&c.frame(), T0), Received::Fragment);
    assert_eq!(datagram(p.receive(&d.frame(), T0)).tos & 3, 3);
}

#[test]
fn reassembly_memory_is_limited() {
    let mut cfg = config();
    cfg.max_reasm_bytes = 1000;
    let mut p = Peer::new(cfg);
    let body = udp_bytes(&[9; 1500]);
    let frames = fragments(60, &body, &[512, 1024]);
    assert_eq!(p.receive(&frames[0], T0), Received::Fragment);
    assert_eq!(
        p.receive(&frames[1], T0),
        Received::Dropped(PeerDrop::ReasmOverLimit)
    );
    assert_eq!(
        (p.pending_reassembly(), p.pending_reassembly_bytes()),
        (1, 512)
    );
    cfg.max_reasm_bytes = 0;
    let mut off = Peer::new(cfg);
    assert_eq!(
        off.receive(&frames[0], T0),
        Received::Dropped(PeerDrop::ReasmOverLimit)
    );
}

#[test]
fn truncated_frames_are_counted_not_panicked_on() {
    let mut p = peer();
    let frame = udp_frame(&[0x42; 100]);
    for len in 0..60 {
        let expect = if len < 14 + 20 {
            PeerDrop::TooShort
        } else {
            PeerDrop::BadTotalLength
        };
        assert_eq!(
            p.receive(&frame[..len], T0),
            Received::Dropped(expect),
            "length {len}"
        );
    }
    let s = p.stats();
    assert_eq!((s.frames, s.drops_total()), (60, 60));
    assert_eq!(s.drops(PeerDrop::TooShort), 34);
    assert_eq!(s.drops(PeerDrop::BadTotalLength), 26);
}

fn arp_frame(op: ArpOperation, sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        op,
        &SENDER_MAC,
        &sender_ip,
        &[0; 6],
        &target_ip,
    )
    .unwrap();
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(SENDER_MAC, [0xff; 6])
        .arp(arp)
        .write(&mut frame)
        .unwrap();
    frame
}

#[test]
fn arp_request_for_us_is_answered() {
    let mut p = peer();
    let Received::ArpRequest { reply } =
        p.receive(&arp_frame(ArpOperation::REQUEST, SENDER_IP, PEER_IP), T0)
    else {
        panic!("expected an ARP request");
    };
    let (eth, rest) = Ethernet2Header::from_slice(&reply).unwrap();
    assert_eq!(
        (eth.destination, eth.source, eth.ether_type),
        (SENDER_MAC, PEER_MAC, EtherType::ARP)
    );
    let arp = ArpPacket::from_slice(rest).unwrap().try_eth_ipv4().unwrap();
    assert_eq!(arp.operation, ArpOperation::REPLY);
    assert_eq!((arp.sender_mac, arp.sender_ipv4), (PEER_MAC, PEER_IP));
    assert_eq!((arp.target_mac, arp.target_ipv4), (SENDER_MAC, SENDER_IP));
    assert_eq!(reply.len(), 42);
    assert_eq!(p.stats().arp_requests, 1);
}

#[test]
fn other_arp_is_counted() {
    let mut p = peer();
    let other = arp_frame(ArpOperation::REQUEST, SENDER_IP, [10, 0, 0, 9]);
    assert_eq!(p.receive(&other, T0), Received::ArpOther);
    let gratuitous = arp_frame(ArpOperation::REQUEST, SENDER_IP, SENDER_IP);
    assert_eq!(p.receive(&gratuitous, T0), Received::ArpOther);
    let reply = arp_frame(ArpOperation::REPLY, SENDER_IP, PEER_IP);
    assert_eq!(p.receive(&reply, T0), Received::ArpOther);
    let conflict = arp_frame(ArpOperation::REQUEST, PEER_IP, PEER_IP);
    assert_eq!(p.receive(&conflict, T0), Received::ArpOther);
    let truncated = arp_frame(ArpOperation::REQUEST, SENDER_IP, PEER_IP);
    assert_eq!(
        p.receive(&truncated[..40], T0),
        Received::Dropped(PeerDrop::BadArp)
    );
    let s = p.stats();
    assert_eq!(
        (s.arp_requests, s.arp_other, s.drops(PeerDrop::BadArp)),
        (0, 4, 1)
    );
}

#[test]
fn drop_reasons_and_counters_are_named() {
    for (i, r) in PeerDrop::ALL.iter().enumerate() {
        assert_eq!(r.index(), i);
        assert_eq!(r.to_string(), r.name());
    }
    let mut names: Vec<_> = PeerDrop::ALL.iter().map(|r| r.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), PeerDrop::COUNT);
    assert_eq!(PeerDrop::BadUdpChecksum.name(), "UdpInCsumErrors");
    assert_eq!(PeerDrop::BadVersion.mib(), Some("IpInHdrErrors"));
    let mut p = peer();
    p.receive(&udp_frame(b"x"), T0);
    p.receive(&[0; 3], T0);
    let text = p.stats().to_string();
    assert!(
        text.contains("UdpInDatagrams") && text.contains("PktTooSmall"),
        "{text}"
    );
    assert!(!text.contains("UdpInCsumErrors"), "{text}");
    assert_eq!(
        p.stats().counters().count(),
        PeerStats::TOTALS + PeerDrop::COUNT + Unassembled::COUNT
    );
    assert_eq!(PeerDrop::FragTooFar.mib(), Some("IpReasmFails"));
    assert!(PeerDrop::FragMixed.is_reassembly() && !PeerDrop::BadUdpChecksum.is_reassembly());
}

/// Sends `n` whole two-fragment datagrams from the sender (IDs from
/// `first`), each delivered: `2 * n` fragments from its source.
fn other_traffic(p: &mut Peer, first: u16, n: u16) {
    for id in first..first + n {
        let body = udp_bytes(&[0x11; 40]);
        for f in fragments(id, &body, &[24]) {
            let _ = p.receive(&f, T0);
        }
    }
    assert_eq!(p.stats().datagrams, u64::from(n), "{}", p.stats());
}

/// Moves the sender's IP ID sequence once round (datagrams at IDs 16,000
/// apart, each delivered), so that the next ID 7 is another datagram's.
fn wrap_ids(p: &mut Peer) {
    let before = p.stats().datagrams;
    for id in [16_000, 32_000, 48_000, 64_000] {
        for f in fragments(id, &udp_bytes(&[0x22; 40]), &[24]) {
            let _ = p.receive(&f, T0);
        }
    }
    assert_eq!(p.stats().datagrams, before + 4);
}

/// Datagram A (ID 7, three fragments): the sender drops its second
/// fragment (and frees the third); its first lingers. Datagram B, 65,536
/// IDs later, has ID 7 again and the same lengths but other bytes.
fn id_wrap_case(max_dist: u32) -> (Peer, Vec<Vec<u8>>) {
    let mut cfg = config();
    cfg.max_dist = max_dist;
    let mut p = Peer::new(cfg);
    let a = fragments(7, &udp_bytes(&[0xaa; 56]), &[24, 48]);
    assert_eq!(p.receive(&a[0], T0), Received::Fragment);
    assert!(p.sender_dropped(&a[1]));
    // A frame that is no fragment is no loss of a datagram.
    assert!(!p.sender_dropped(&udp_frame(b"x")));
    other_traffic(&mut p, 100, 40);
    wrap_ids(&mut p);
    (p, fragments(7, &udp_bytes(&[0xbb; 56]), &[24, 48]))
}

#[test]
fn id_reuse_after_a_sender_drop_is_attributed_not_misassembled() {
    // Without `max_dist` (`ipfrag_max_dist = 0`) B's fragments meet A's
    // queue: the first is a duplicate, the last completes a queue that
    // mixes A's bytes with B's. Linux would deliver it if the checksum
    // let it through; the peer knows A lost a fragment and drops it.
    let (mut p, b) = id_wrap_case(0);
    assert_eq!(
        p.receive(&b[0], T0),
        Received::Dropped(PeerDrop::FragDuplicate)
    );
    assert_eq!(p.receive(&b[1], T0), Received::Fragment);
    assert_eq!(p.receive(&b[2], T0), Received::Dropped(PeerDrop::FragMixed));
    let s = p.stats();
    assert_eq!(s.unassembled(Unassembled::IdReuse), 1, "{s}");
    assert_eq!(s.unassembled(Unassembled::Unexplained), 0, "{s}");
    assert_eq!((s.frame_drops(), p.pending_reassembly()), (0, 0));
}

#[test]
fn max_dist_restarts_a_stale_queue_and_the_new_datagram_arrives_whole() {
    // With the kernel's default (64) the 80 fragments since A's put B's
    // first one too far: A's queue is emptied (the sender's drop), B
    // reassembles from its own fragments alone.
    let (mut p, b) = id_wrap_case(64);
    assert_eq!(p.receive(&b[0], T0), Received::Fragment);
    assert_eq!(p.stats().drops(PeerDrop::FragTooFar), 1);
    assert_eq!(p.receive(&b[1], T0), Received::Fragment);
    let d = datagram(p.receive(&b[2], T0));
    assert_eq!((d.ip_id, d.payload), (7, vec![0xbb; 56]));
    let s = p.stats();
    assert_eq!(s.unassembled(Unassembled::SenderDropped), 1, "{s}");
    assert_eq!(s.unassembled(Unassembled::Unexplained), 0, "{s}");
}

#[test]
fn a_sender_drop_marks_the_queue_its_earlier_fragments_make_later() {
    // The drop is reported before the fragments ahead of it (still in a
    // qdisc) arrive: their queue is marked when it is made.
    let mut p = peer();
    let a = fragments(9, &udp_bytes(&[0xcc; 56]), &[24, 48]);
    assert!(p.sender_dropped(&a[2]));
    assert_eq!(p.receive(&a[0], T0), Received::Fragment);
    assert_eq!(p.receive(&a[1], T0), Received::Fragment);
    assert_eq!(
        p.pending_unassembled()[Unassembled::SenderDropped as usize],
        1
    );
    assert_eq!(p.expire(T0 + Duration::from_secs(30)), 1);
    let s = p.stats();
    assert_eq!(s.drops(PeerDrop::FragTimeout), 1);
    assert_eq!(s.unassembled(Unassembled::SenderDropped), 1, "{s}");
    // The note marks no later datagram with the same ID: one that loses a
    // fragment on the way is a fault.
    other_traffic(&mut p, 200, 10);
    wrap_ids(&mut p);
    let b = fragments(9, &udp_bytes(&[0xdd; 56]), &[24, 48]);
    assert_eq!(p.receive(&b[0], T0), Received::Fragment);
    assert_eq!(
        p.pending_unassembled()[Unassembled::Unexplained as usize],
        1
    );
}

#[test]
fn a_lost_fragment_nobody_dropped_is_unexplained() {
    let mut p = peer();
    let a = fragments(12, &udp_bytes(&[0xee; 56]), &[24, 48]);
    assert_eq!(p.receive(&a[0], T0), Received::Fragment);
    assert_eq!(p.receive(&a[2], T0), Received::Fragment);
    assert_eq!(p.expire(T0 + Duration::from_secs(30)), 1);
    assert_eq!(p.stats().unassembled(Unassembled::Unexplained), 1);
}

#[test]
fn a_corrupted_byte_is_still_a_fault() {
    // Every fragment of the datagram came from one send, and the sender
    // dropped a fragment of another datagram: a wrong byte still fails
    // the checksum and counts as a frame the peer dropped, unattributed.
    let mut p = peer();
    let other = fragments(30, &udp_bytes(&[1; 56]), &[24]);
    assert!(p.sender_dropped(&other[1]));
    let mut a = fragments(31, &udp_bytes(&[0x5a; 56]), &[24, 48]);
    a[1][14 + 20 + 3] ^= 0x01;
    assert_eq!(p.receive(&a[0], T0), Received::Fragment);
    assert_eq!(p.receive(&a[1], T0), Received::Fragment);
    assert_eq!(
        p.receive(&a[2], T0),
        Received::Dropped(PeerDrop::BadUdpChecksum)
    );
    let s = p.stats();
    assert_eq!((s.frame_drops(), s.reassembled), (1, 1), "{s}");
    assert_eq!(s.unassembled.iter().sum::<u64>(), 0, "{s}");
}

#[test]
fn a_fragment_refused_over_the_memory_limit_marks_its_datagram() {
    let mut cfg = config();
    cfg.max_reasm_bytes = 40;
    let mut p = Peer::new(cfg);
    let a = fragments(40, &udp_bytes(&[3; 56]), &[24, 48]);
    assert_eq!(p.receive(&a[0], T0), Received::Fragment);
    for f in &a[1..] {
        assert_eq!(
            p.receive(f, T0),
            Received::Dropped(PeerDrop::ReasmOverLimit)
        );
    }
    assert_eq!(p.expire(T0 + Duration::from_secs(30)), 1);
    let s = p.stats();
    assert_eq!(s.unassembled(Unassembled::MemLimit), 1, "{s}");
    assert_eq!(s.unassembled(Unassembled::Unexplained), 0, "{s}");
}

/// Splits `len` bytes at 8-multiple cut points chosen from `seeds`.
fn cut_points(len: usize, seeds: &[u16]) -> Vec<usize> {
    let units = len.div_ceil(8).max(1);
    let mut cuts: Vec<usize> = seeds.iter().map(|s| usize::from(*s) % units * 8).collect();
    cuts.retain(|&c| c > 0 && c < len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// Fisher-Yates with a small deterministic generator.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        items.swap(i, (seed >> 33) as usize % (i + 1));
    }
}

proptest! {
    #[test]
    fn random_fragmentation_reassembles(
        payload in proptest::collection::vec(any::<u8>(), 0..4000),
        seeds in proptest::collection::vec(any::<u16>(), 0..16),
        order in any::<u64>(),
        id in any::<u16>(),
    ) {
        let mut p = peer();
        let body = udp_bytes(&payload);
        let cuts = cut_points(body.len(), &seeds);
        let mut frames = fragments(id, &body, &cuts);
        let n = frames.len();
        shuffle(&mut frames, order);
        let mut outcomes: Vec<Received> = frames.iter().map(|f| p.receive(f, T0)).collect();
        let last = outcomes.pop().unwrap();
        prop_assert!(outcomes.iter().all(|o| *o == Received::Fragment));
        let d = datagram(last);
        prop_assert_eq!(d.fragments, n);
        prop_assert_eq!(&d.payload, &payload);
        prop_assert_eq!(p.pending_reassembly(), 0);
        prop_assert_eq!(p.pending_reassembly_bytes(), 0);
        prop_assert_eq!(p.stats().drops_total(), 0);
    }

    #[test]
    fn random_bytes_never_panic(
        frame in proptest::collection::vec(any::<u8>(), 0..200),
        l3 in any::<bool>(),
    ) {
        let mut cfg = config();
        cfg.promiscuous = true;
        if l3 {
            cfg.link = LinkType::L3;
        }
        let mut p = Peer::new(cfg);
        let _ = p.receive(&frame, T0);
        let _ = p.receive(&frame, T0 + Duration::from_secs(60));
        prop_assert_eq!(p.stats().frames, 2);
    }

    #[test]
    fn mutated_fragments_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        fix in any::<bool>(),
    ) {
        let mut p = peer();
        let body = udp_bytes(&[7; 300]);
        for mut f in fragments(77, &body, &[96, 200]) {
            for (at, x) in &flips {
                let at = at % f.len();
                f[at] ^= x;
            }
            if fix && f.len() >= 34 && f[14] >> 4 == 4 && (f[14] & 0x0f) >= 5 {
                let ihl = usize::from(f[14] & 0x0f) * 4;
                if f.len() >= 14 + ihl {
                    fix_ip_checksum(&mut f);
                }
            }
            let _ = p.receive(&f, T0);
        }
        let s = p.stats();
        prop_assert_eq!(s.frames, 3);
        let _ = p.expire(T0 + Duration::from_secs(30));
        prop_assert_eq!(p.pending_reassembly(), 0);
        prop_assert_eq!(p.pending_reassembly_bytes(), 0);
    }
}

/// Datagram `k`'s UDP body with `len` bytes of the test pattern.
fn pattern_body(k: u64, len: usize) -> Vec<u8> {
    let mut p = vec![0; len];
    pattern::fill(k, &mut p);
    udp_bytes(&p)
}

/// A peer reading the sender's record of drops.
fn recording_peer() -> (Peer, Arc<SenderDrops>) {
    let mut cfg = config();
    cfg.max_dist = 0;
    let mut p = Peer::new(cfg);
    let r = SenderDrops::new();
    p.set_sender_record(r.clone());
    (p, r)
}

#[test]
fn a_crafted_id_reuse_mix_is_recognised_and_attributed() {
    // Datagram 100 (ID 7): its first fragment arrives, the sender drops
    // the second (and frees the third). Datagram 65,636 has ID 7 again
    // and the same lengths; its fragments come in around the stale one.
    // Without signatures its last two would complete 100's queue with
    // 100's first fragment: a mix. Each fragment names its datagram: the
    // first of 65,636 empties 100's queue, which the record attributes.
    let (mut p, record) = recording_peer();
    let a = fragments(7, &pattern_body(100, 64), &[24, 48]);
    let b = fragments(7, &pattern_body(65_636, 64), &[24, 48]);
    assert_eq!(p.receive(&a[0], T0), Received::Fragment);
    record.record(100);
    assert_eq!(p.receive(&b[1], T0), Received::Fragment);
    assert_eq!(p.stats().drops(PeerDrop::FragTooFar), 1);
    assert_eq!(p.receive(&b[2], T0), Received::Fragment);
    let d = datagram(p.receive(&b[0], T0));
    assert_eq!(pattern::check(&d.payload), Check::Intact(Some(65_636)));
    let s = p.stats();
    assert_eq!(s.unassembled(Unassembled::SenderDropped), 1, "{s}");
    assert_eq!(s.unassembled(Unassembled::Unexplained), 0, "{s}");
    assert_eq!((s.frame_drops(), s.reassembled), (0, 1), "{s}");
    assert_eq!((p.pending_reassembly(), p.record_overwritten()), (0, 0));
}

#[test]
fn a_stale_queue_the_sender_did_not_cut_short_is_a_fault() {
    // The same mix, but the record names no drop of datagram 100: its
    // missing fragments were lost on the way.
    let (mut p, _record) = recording_peer();
    let a = fragments(7, &pattern_body(100, 64), &[24, 48]);
    let b = fragments(7, &pattern_body(65_636, 64), &[24, 48]);
    assert_eq!(p.receive(&a[0], T0), Received::Fragment);
    for f in &b[..2] {
        assert_eq!(p.receive(f, T0), Received::Fragment);
    }
    assert_eq!(
        pattern::check(&datagram(p.receive(&b[2], T0)).payload),
        Check::Intact(Some(65_636))
    );
    let s = p.stats();
    assert_eq!(s.unassembled(Unassembled::Unexplained), 1, "{s}");
    assert_eq!(s.unassembled(Unassembled::SenderDropped), 0, "{s}");
}

#[test]
fn a_lingering_queue_keeps_the_record_read_before_its_slot_is_taken() {
    // Datagram 3 loses its last fragment at the sender; 1,100 datagrams
    // (2,200 fragments) later the peer has read the record for its queue.
    // A later datagram's drop then takes the slot: the queue, timed out,
    // is still the sender's drop, not a record that cannot tell.
    let (mut p, record) = recording_peer();
    let a = fragments(5, &pattern_body(3, 64), &[24, 48]);
    for f in &a[..2] {
        assert_eq!(p.receive(f, T0), Received::Fragment);
    }
    record.record(3);
    for i in 1..=1100u16 {
        for f in fragments(5 + i, &pattern_body(1000 + u64::from(i), 40), &[24]) {
            let _ = p.receive(&f, T0);
        }
    }
    record.record(3 + SLOTS as u64);
    assert_eq!(p.expire(T0 + Duration::from_secs(30)), 1);
    let s = p.stats();
    assert_eq!(s.datagrams, 1100, "{s}");
    assert_eq!(s.unassembled(Unassembled::SenderDropped), 1, "{s}");
    assert_eq!(s.unassembled(Unassembled::Unexplained), 0, "{s}");
    assert_eq!(p.record_overwritten(), 0);
    // Without a reading in between, the record cannot tell: a fault.
    let b = fragments(9, &pattern_body(7, 64), &[24, 48]);
    assert_eq!(p.receive(&b[0], T0), Received::Fragment);
    record.record(7);
    record.record(7 + SLOTS as u64);
    assert_eq!(p.expire(T0 + Duration::from_secs(60)), 1);
    assert_eq!(p.stats().unassembled(Unassembled::Unexplained), 1);
    assert_eq!(p.record_overwritten(), 1);
}

#[test]
fn a_complete_queue_of_a_datagram_the_sender_cut_short_is_mixed() {
    // The record says datagram 9 lost a fragment, yet all its bytes came:
    // some are another datagram's that named none (a short last fragment
    // carries no whole word). It is dropped, not delivered.
    let (mut p, record) = recording_peer();
    let a = fragments(9, &pattern_body(9, 60), &[64]);
    record.record(9);
    assert_eq!(p.receive(&a[0], T0), Received::Fragment);
    assert_eq!(p.receive(&a[1], T0), Received::Dropped(PeerDrop::FragMixed));
    let s = p.stats();
    assert_eq!(s.unassembled(Unassembled::IdReuse), 1, "{s}");
    assert_eq!(s.frame_drops(), 0, "{s}");
}
