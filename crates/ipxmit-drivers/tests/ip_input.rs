//! The receive side on the virtual clock: `lo`, IPv4 input checks and
//! their counters, UDP input to bound sockets, and ICMP errors reaching
//! the socket that sent the quoted datagram (the kernel's `ip_rcv`,
//! `udp_rcv`, `icmp_rcv`/`icmp_unreach`, `__udp4_lib_err`).

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use common::{clocked_host, PEER};
use ipxmit::error::Errno;
use ipxmit::socket::ErrOrigin;
use ipxmit::stats::{DropReason, Mib};
use ipxmit::wire::{checksum, icmp::IcmpPacket, Ipv4Packet, UdpPacket};
use ipxmit::{ManualClock, MsgFlags, PmtuDisc, SendError, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;

const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const MAC_ME: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_PEER: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn host() -> (Arc<Stack>, Arc<MemWire>) {
    clocked_host(Arc::new(ManualClock::new()), |_| MemWire::new(256))
}

/// An Ethernet frame to `dst_mac` carrying an IPv4 datagram of `proto`
/// from `src` to `dst` with `payload` (header checksum filled).
fn ipv4_frame(
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(34 + payload.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&MAC_PEER);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut h = [0u8; 20];
    let mut ip = Ipv4Packet::new_unchecked(&mut h[..]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_total_len(20 + payload.len() as u16);
    ip.set_ttl(64);
    ip.set_protocol(ipxmit::wire::IpProtocol(proto));
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.fill_checksum();
    f.extend_from_slice(&h);
    f.extend_from_slice(payload);
    f
}

/// A UDP datagram from `sport` to `dport` with `data`, checksummed.
fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 8 + data.len()];
    let mut u = UdpPacket::new_unchecked(&mut b[..]);
    u.set_src_port(sport);
    u.set_dst_port(dport);
    u.set_len(8 + data.len() as u16);
    u.payload_mut().copy_from_slice(data);
    u.fill_checksum(src, dst);
    b
}

/// An ICMP error of `t`/`code` with `rest`, quoting `quote`.
fn icmp(t: u8, code: u8, rest: u32, quote: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 8 + quote.len()];
    let mut m = IcmpPacket::new_unchecked(&mut b[..]);
    m.set_msg_type(t);
    m.set_code(code);
    m.set_rest(rest);
    m.data_mut().copy_from_slice(quote);
    m.fill_checksum();
    b
}

/// The IP header and 8 bytes of the last frame on `wire` (what a router
/// quotes), and that frame's IP total length.
fn last_quote(wire: &MemWire) -> (Vec<u8>, usize) {
    let mut last = None;
    wire.drain(|p| last = Some(p.to_vec()));
    let f = last.expect("a frame was sent");
    let ip = &f[14..];
    (
        ip[..28].to_vec(),
        Ipv4Packet::new_unchecked(ip).total_len() as usize,
    )
}

/// Frames on `wire`: their IP total lengths.
fn ip_lengths(wire: &MemWire) -> Vec<usize> {
    let mut v = Vec::new();
    wire.drain(|p| {
        let f = p.to_vec();
        v.push(Ipv4Packet::new_unchecked(&f[14..]).total_len() as usize);
    });
    v
}

#[test]
fn every_stack_has_lo_at_ifindex_1_and_devices_follow() {
    let (stack, _) = host();
    let lo = stack.device("lo").unwrap();
    assert_eq!((lo.ifindex(), lo.mtu(), lo.is_loopback()), (1, 65536, true));
    assert_eq!(lo.addrs(), vec!["127.0.0.1/8".parse().unwrap()]);
    assert_eq!(lo.queues()[0].with_qdisc(|q| q.kind()), "noqueue");
    assert_eq!(stack.device("eth0").unwrap().ifindex(), 2);
    let names: Vec<String> = stack.devices().iter().map(|d| d.name().into()).collect();
    assert_eq!(names, ["lo", "eth0"]);
}

#[test]
fn ip_rcv_header_errors_are_counted_and_dropped_by_reason() {
    let (stack, _) = host();
    let eth0 = stack.device("eth0").unwrap();
    let c = stack.counters();
    let good = ipv4_frame(MAC_ME, PEER, ME, 253, &[0; 4]);
    let mut bad_sum = good.clone();
    bad_sum[14 + 8] ^= 1; // TTL changed, checksum not
    stack.receive(&eth0, &bad_sum);
    let mut truncated = good.clone();
    truncated.truncate(14 + 22);
    stack.receive(&eth0, &truncated);
    stack.receive(&eth0, &good[..14 + 12]);
    let other = ipv4_frame([2, 0, 0, 0, 0, 9], PEER, ME, 17, &[0; 8]);
    stack.receive(&eth0, &other);
    let elsewhere = ipv4_frame(MAC_ME, PEER, Ipv4Addr::new(10, 9, 9, 9), 17, &[0; 8]);
    stack.receive(&eth0, &elsewhere);
    assert_eq!(c.get(Mib::IpInReceives), 4, "OTHERHOST is dropped before");
    assert_eq!(c.get(Mib::IpInHdrErrors), 2);
    assert_eq!(c.get(Mib::IpExtInCsumErrors), 1);
    assert_eq!(c.get(Mib::IpExtInTruncatedPkts), 1);
    assert_eq!(c.get(Mib::IpInAddrErrors), 1);
    assert_eq!(c.dropped(DropReason::IpCsum), 1);
    assert_eq!(c.dropped(DropReason::IpInhdr), 1);
    assert_eq!(c.dropped(DropReason::PktTooSmall), 1);
    assert_eq!(c.dropped(DropReason::OtherHost), 1);
    assert_eq!(c.dropped(DropReason::IpInaddrErrors), 1);
    assert_eq!(c.get(Mib::IpInDelivers), 0);
}

#[test]
fn udp_to_a_bound_socket_is_received_else_port_unreachable() {
    let (stack, wire) = host();
    let eth0 = stack.device("eth0").unwrap();
    let mut s = UdpSocket::new(&stack);
    s.bind(SocketAddrV4::new(ME, 5000)).unwrap();
    let d = udp(PEER, ME, 7000, 5000, b"hello");
    stack.receive(&eth0, &ipv4_frame(MAC_ME, PEER, ME, 17, &d));
    let got = s.recv_from().unwrap();
    assert_eq!(
        (got.from, got.data.as_slice()),
        (SocketAddrV4::new(PEER, 7000), &b"hello"[..])
    );
    assert_eq!(s.recv_from(), Err(SendError::Again));
    let mut bad = d.clone();
    bad[9] ^= 0xff;
    stack.receive(&eth0, &ipv4_frame(MAC_ME, PEER, ME, 17, &bad));
    let closed = udp(PEER, ME, 7000, 5001, b"x");
    let frame = ipv4_frame(MAC_ME, PEER, ME, 17, &closed);
    stack.receive(&eth0, &frame);
    let c = stack.counters();
    assert_eq!(c.get(Mib::UdpInDatagrams), 1);
    assert_eq!(
        (c.get(Mib::UdpInCsumErrors), c.get(Mib::UdpInErrors)),
        (1, 1)
    );
    assert_eq!(c.get(Mib::UdpNoPorts), 1);
    assert_eq!(c.get(Mib::IpInDelivers), 3);
    assert_eq!(c.get(Mib::IcmpOutDestUnreachs), 1);
    let mut out = Vec::new();
    wire.drain(|p| out.push(p.to_vec()));
    assert_eq!(out.len(), 1, "the port unreachable went out");
    let ip = Ipv4Packet::new_checked(&out[0][14..]).unwrap();
    assert_eq!(
        (ip.src_addr(), ip.dst_addr(), ip.tos(), ip.dont_frag()),
        (ME, PEER, 0xc0, false)
    );
    let m = IcmpPacket::new_checked(ip.payload()).unwrap();
    assert!(m.verify_checksum());
    assert_eq!((m.msg_type(), m.code()), (3, 3));
    assert_eq!(m.data(), &frame[14..], "the whole datagram quoted");
}

#[test]
fn receive_buffer_full_counts_rcvbuf_errors() {
    let (stack, _) = host();
    let eth0 = stack.device("eth0").unwrap();
    let mut s = UdpSocket::new(&stack);
    s.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5000))
        .unwrap();
    s.set_rcvbuf(0);
    let d = udp(PEER, ME, 7000, 5000, &[7; 1000]);
    for _ in 0..4 {
        stack.receive(&eth0, &ipv4_frame(MAC_ME, PEER, ME, 17, &d));
    }
    let c = stack.counters();
    let queued = s.inbox().queued() as u64;
    assert!((1..4).contains(&queued), "{queued} queued");
    assert_eq!(c.get(Mib::UdpRcvbufErrors), 4 - queued);
    assert_eq!(c.get(Mib::UdpInErrors), 4 - queued);
    assert_eq!(c.dropped(DropReason::SocketRcvbuff), 4 - queued);
}

/// A WANT socket with `IP_RECVERR` sends 1400 bytes to the peer; a
/// "fragmentation needed" quoting it arrives with `mtu`.
fn frag_needed_after_send(mtu: u16) -> (Arc<Stack>, Arc<MemWire>, UdpSocket) {
    let (stack, wire) = host();
    let eth0 = stack.device("eth0").unwrap();
    let mut s = UdpSocket::new(&stack);
    s.set_recverr(true);
    let to = SocketAddrV4::new(PEER, 9);
    assert_eq!(s.send_to(&[1; 1400], to, MsgFlags::NONE), Ok(1400));
    let (quote, len) = last_quote(&wire);
    assert_eq!(len, 1428);
    let router = Ipv4Addr::new(10, 0, 0, 254);
    let msg = icmp(3, 4, u32::from(mtu), &quote);
    stack.receive(&eth0, &ipv4_frame(MAC_ME, router, ME, 1, &msg));
    (stack, wire, s)
}

#[test]
fn frag_needed_fails_the_next_send_queues_the_error_and_lowers_the_pmtu() {
    let (stack, wire, mut s) = frag_needed_after_send(1200);
    let to = SocketAddrV4::new(PEER, 9);
    let r = s.send_to(&[1; 1400], to, MsgFlags::NONE);
    assert_eq!(r.map_err(|e| e.errno()), Err(Errno::EMSGSIZE), "sk_err");
    assert_eq!(s.take_error(), None, "the send took the pending error");
    let e = s.recv_err().expect("an error-queue entry");
    assert_eq!(
        (e.errno, e.origin, e.ee_type, e.ee_code),
        (Errno::EMSGSIZE, ErrOrigin::Icmp, 3, 4)
    );
    assert_eq!((e.info, e.addr, e.port), (1200, PEER, 9));
    assert_eq!(e.offender, Ipv4Addr::new(10, 0, 0, 254));
    assert_eq!(s.send_to(&[1; 1400], to, MsgFlags::NONE), Ok(1400));
    assert_eq!(
        ip_lengths(&wire),
        [1196, 252],
        "fragments at the new path MTU"
    );
    let c = stack.counters();
    assert_eq!(
        (c.get(Mib::IcmpInMsgs), c.get(Mib::IcmpInDestUnreachs)),
        (1, 1)
    );
    assert_eq!(
        (c.get(Mib::IcmpMsgInType3), c.get(Mib::IcmpInErrors)),
        (1, 0)
    );
}

#[test]
fn frag_needed_under_pmtudisc_dont_teaches_the_mtu_but_reports_nothing() {
    let (stack, wire) = host();
    let eth0 = stack.device("eth0").unwrap();
    let mut s = UdpSocket::new(&stack);
    s.set_recverr(true);
    s.set_mtu_discover(PmtuDisc::Dont);
    let to = SocketAddrV4::new(PEER, 9);
    s.send_to(&[1; 1400], to, MsgFlags::NONE).unwrap();
    let (quote, _) = last_quote(&wire);
    let msg = icmp(3, 4, 1000, &quote);
    stack.receive(&eth0, &ipv4_frame(MAC_ME, PEER, ME, 1, &msg));
    assert_eq!(s.err_queue_len(), 0);
    assert_eq!(s.take_error(), None);
    s.send_to(&[1; 1400], to, MsgFlags::NONE).unwrap();
    assert_eq!(ip_lengths(&wire), [996, 452]);
}

#[test]
fn ip_no_pmtu_disc_2_ignores_frag_needed() {
    let (stack, wire) = host();
    stack.set_sysctls(|s| s.ip_no_pmtu_disc = 2);
    let eth0 = stack.device("eth0").unwrap();
    let mut s = UdpSocket::new(&stack);
    s.set_recverr(true);
    s.set_mtu_discover(PmtuDisc::Want);
    let to = SocketAddrV4::new(PEER, 9);
    s.send_to(&[1; 1400], to, MsgFlags::NONE).unwrap();
    let (quote, _) = last_quote(&wire);
    stack.receive(
        &eth0,
        &ipv4_frame(MAC_ME, PEER, ME, 1, &icmp(3, 4, 1000, &quote)),
    );
    assert_eq!((s.err_queue_len(), s.take_error()), (0, None));
    s.send_to(&[1; 1400], to, MsgFlags::NONE).unwrap();
    assert_eq!(ip_lengths(&wire), [1428]);
    assert_eq!(stack.counters().get(Mib::IcmpInDestUnreachs), 1);
}

#[test]
fn port_unreachable_is_econnrefused_for_a_connected_socket_only() {
    let (stack, wire) = host();
    let eth0 = stack.device("eth0").unwrap();
    let mut conn = UdpSocket::new(&stack);
    conn.connect(SocketAddrV4::new(PEER, 9)).unwrap();
    conn.send(b"x", MsgFlags::NONE).unwrap();
    let (q1, _) = last_quote(&wire);
    let mut free = UdpSocket::new(&stack);
    free.send_to(b"y", SocketAddrV4::new(PEER, 9), MsgFlags::NONE)
        .unwrap();
    let (q2, _) = last_quote(&wire);
    for q in [&q1, &q2] {
        stack.receive(&eth0, &ipv4_frame(MAC_ME, PEER, ME, 1, &icmp(3, 3, 0, q)));
    }
    let r = conn.send(b"x", MsgFlags::NONE);
    assert_eq!(r, Err(SendError::SockErr(Errno::ECONNREFUSED)));
    assert_eq!(conn.send(b"x", MsgFlags::NONE), Ok(1));
    assert_eq!(free.take_error(), None, "unconnected, no IP_RECVERR");
    let stray = icmp(3, 3, 0, &q1[..27]);
    stack.receive(&eth0, &ipv4_frame(MAC_ME, PEER, ME, 1, &stray));
    let mut bad = icmp(3, 3, 0, &q1);
    bad[2] ^= 1;
    stack.receive(&eth0, &ipv4_frame(MAC_ME, PEER, ME, 1, &bad));
    let c = stack.counters();
    assert_eq!(
        (c.get(Mib::IcmpInMsgs), c.get(Mib::IcmpInCsumErrors)),
        (4, 1)
    );
    assert_eq!(c.get(Mib::IcmpInErrors), 1);
    drop(free);
    stack.receive(&eth0, &ipv4_frame(MAC_ME, PEER, ME, 1, &icmp(3, 3, 0, &q2)));
    assert_eq!(c.get(Mib::IcmpInErrors), 2, "an error for no socket");
}

#[test]
fn lo_hands_frames_back_to_the_stack() {
    let (stack, _) = host();
    let lo = stack.device("lo").unwrap();
    let mut rx = UdpSocket::new(&stack);
    rx.bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5000))
        .unwrap();
    let mut tx = UdpSocket::new(&stack);
    let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5000);
    assert_eq!(tx.send_to(&[9; 3000], to, MsgFlags::NONE), Ok(3000));
    stack.poll_until_idle(8);
    let got = rx.recv_from().unwrap();
    assert_eq!(
        (got.data.len(), *got.from.ip()),
        (3000, Ipv4Addr::LOCALHOST)
    );
    let st = lo.stats.snapshot();
    assert_eq!(
        (st.tx_packets, st.rx_packets),
        (1, 1),
        "one frame, no fragments"
    );
    assert_eq!(st.tx_bytes, st.rx_bytes);
    tx.connect(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5001))
        .unwrap();
    tx.send(b"z", MsgFlags::NONE).unwrap();
    stack.poll_until_idle(8);
    let r = tx.send(b"z", MsgFlags::NONE);
    assert_eq!(
        r,
        Err(SendError::SockErr(Errno::ECONNREFUSED)),
        "ICMP came back through lo"
    );
    assert_eq!(
        lo.stats.snapshot().rx_packets,
        3,
        "datagram and its port unreachable"
    );
}

#[test]
fn last_tx_keeps_the_first_fragment_of_the_last_datagram() {
    let (stack, _wire) = host();
    let eth0 = stack.device("eth0").unwrap();
    assert_eq!(eth0.last_tx(), None);
    eth0.remember_tx();
    let mut s = UdpSocket::new(&stack);
    s.bind(SocketAddrV4::new(ME, 4444)).unwrap();
    s.send_to(&[3; 3000], SocketAddrV4::new(PEER, 9), MsgFlags::NONE)
        .unwrap();
    let t = eth0.last_tx().expect("kept");
    assert_eq!(t.link_header()[..6], MAC_PEER);
    assert_eq!(t.quote().len(), 28);
    assert_eq!(t.header().frag_offset(), 0);
    assert_eq!(&t.quote()[20..22], &4444u16.to_be_bytes(), "the UDP header");
    assert!(checksum::verify(&t.quote()[..20]));
}

#[test]
fn reading_the_icmp_entry_clears_the_pending_error() {
    let (_stack, _wire, mut s) = frag_needed_after_send(1200);
    assert_eq!(s.recv_err().map(|e| e.errno), Some(Errno::EMSGSIZE));
    assert_eq!(s.take_error(), None, "sock_dequeue_err_skb cleared sk_err");
    let to = SocketAddrV4::new(PEER, 9);
    assert_eq!(s.send_to(&[1; 100], to, MsgFlags::NONE), Ok(100));
}

#[test]
fn ip_mtu_reads_the_learned_path_mtu_of_a_connected_socket() {
    let (stack, wire) = host();
    let eth0 = stack.device("eth0").unwrap();
    let mut s = UdpSocket::new(&stack);
    assert_eq!(s.ip_mtu(), Err(SendError::NotConnected));
    s.connect(SocketAddrV4::new(PEER, 9)).unwrap();
    assert_eq!(s.ip_mtu(), Ok(1500));
    s.send(&[1; 1400], MsgFlags::NONE).unwrap();
    let (quote, _) = last_quote(&wire);
    stack.receive(
        &eth0,
        &ipv4_frame(MAC_ME, PEER, ME, 1, &icmp(3, 4, 1280, &quote)),
    );
    assert_eq!(s.ip_mtu(), Ok(1280));
    assert_eq!(
        s.take_error(),
        Some(Errno::EMSGSIZE),
        "connected: a hard error"
    );
}

#[test]
fn a_pending_error_fails_the_first_message_of_send_batch_once() {
    let (_stack, wire, mut s) = frag_needed_after_send(1200);
    let to = Some(SocketAddrV4::new(PEER, 9));
    let data = [1u8; 100];
    let msgs = [
        ipxmit::BatchMsg::new(&data, to),
        ipxmit::BatchMsg::new(&data, to),
    ];
    let r = s.send_batch(&msgs, MsgFlags::NONE);
    assert_eq!(r, Err(SendError::SockErr(Errno::EMSGSIZE)));
    assert_eq!(s.send_batch(&msgs, MsgFlags::NONE), Ok(2));
    assert_eq!(ip_lengths(&wire), [128, 128]);
}

#[test]
fn the_receive_lookup_honours_so_bindtodevice() {
    let (stack, _) = host();
    let eth0 = stack.device("eth0").unwrap();
    let mut s = UdpSocket::new(&stack);
    s.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5000))
        .unwrap();
    s.set_bindtodevice("lo").unwrap();
    let d = udp(PEER, ME, 7000, 5000, b"x");
    stack.receive(&eth0, &ipv4_frame(MAC_ME, PEER, ME, 17, &d));
    assert_eq!(
        s.recv_from(),
        Err(SendError::Again),
        "bound to lo, came on eth0"
    );
    assert_eq!(stack.counters().get(Mib::UdpNoPorts), 1);
    s.set_bindtodevice("eth0").unwrap();
    stack.receive(&eth0, &ipv4_frame(MAC_ME, PEER, ME, 17, &d));
    assert_eq!(s.recv_from().map(|d| d.data), Ok(b"x".to_vec()));
}

mod no_panics {
    use super::*;
    use proptest::prelude::*;

    fn stack_with_socket() -> (Arc<Stack>, UdpSocket) {
        let (stack, _) = host();
        let mut s = UdpSocket::new(&stack);
        s.set_recverr(true);
        s.bind(SocketAddrV4::new(ME, 5000)).unwrap();
        s.connect(SocketAddrV4::new(PEER, 9)).unwrap();
        (stack, s)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Any bytes as a frame on eth0 or lo.
        #[test]
        fn any_frame(bytes in proptest::collection::vec(any::<u8>(), 0..120), lo in any::<bool>()) {
            let (stack, _s) = stack_with_socket();
            let dev = stack.device(if lo { "lo" } else { "eth0" }).unwrap();
            stack.receive(&dev, &bytes);
        }

        /// A good IPv4 header for the host, of ICMP or UDP, with any payload;
        /// an ICMP error quoting any bytes (headers of any IHL, lengths).
        #[test]
        fn any_payload(
            icmp in any::<bool>(),
            t in 0u8..20,
            code in 0u8..20,
            rest in any::<u32>(),
            quote in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let (stack, mut s) = stack_with_socket();
            let eth0 = stack.device("eth0").unwrap();
            let payload = if icmp { super::icmp(t, code, rest, &quote) } else { quote.clone() };
            let proto = if icmp { 1 } else { 17 };
            stack.receive(&eth0, &ipv4_frame(MAC_ME, PEER, ME, proto, &payload));
            let _ = s.recv_from();
            let _ = s.recv_err();
        }
    }
}

#[test]
fn icmp_errors_reach_raw_sockets_of_the_quoted_protocol() {
    let (stack, wire) = host();
    let eth0 = stack.device("eth0").unwrap();
    let mut conn = ipxmit::RawSocket::new(&stack, 253);
    conn.connect(SocketAddrV4::new(PEER, 0)).unwrap();
    let mut recverr = ipxmit::RawSocket::new(&stack, 253);
    recverr.set_recverr(true);
    let mut quiet = ipxmit::RawSocket::new(&stack, 253);
    let mut other = ipxmit::RawSocket::new(&stack, 254);
    other.set_recverr(true);
    conn.send(&[5; 40], MsgFlags::NONE).unwrap();
    let (quote, _) = last_quote(&wire);
    stack.receive(
        &eth0,
        &ipv4_frame(MAC_ME, PEER, ME, 1, &icmp(3, 3, 0, &quote)),
    );
    let e = recverr.recv_err().expect("queued for IP_RECVERR");
    assert_eq!(
        (e.errno, e.ee_type, e.ee_code, e.port),
        (Errno::ECONNREFUSED, 3, 3, 0)
    );
    assert_eq!((e.addr, e.offender), (PEER, PEER));
    // raw_sendmsg appends with no transport header: sock_alloc_send_skb,
    // which reports sk_err, is never called; SO_ERROR still has it.
    assert_eq!(conn.send(&[5; 40], MsgFlags::NONE), Ok(40));
    assert_eq!(
        conn.take_error(),
        Some(Errno::ECONNREFUSED),
        "connected, hard"
    );
    assert_eq!(quiet.take_error(), None, "unconnected, no IP_RECVERR");
    assert_eq!(
        (other.err_queue_len(), other.take_error()),
        (0, None),
        "other protocol"
    );
}

#[test]
fn a_send_refused_for_its_size_leaves_the_pending_error_for_the_next() {
    let (stack, wire) = host();
    let eth0 = stack.device("eth0").unwrap();
    let mut s = UdpSocket::new(&stack);
    s.set_mtu_discover(PmtuDisc::Do);
    s.connect(SocketAddrV4::new(PEER, 9)).unwrap();
    s.send(&[1; 100], MsgFlags::NONE).unwrap();
    let (quote, _) = last_quote(&wire);
    stack.receive(
        &eth0,
        &ipv4_frame(MAC_ME, PEER, ME, 1, &icmp(3, 4, 1300, &quote)),
    );
    let big = s.send(&[1; 1400], MsgFlags::NONE);
    assert_eq!(
        big,
        Err(SendError::MsgSize { mtu: 1300 }),
        "the size check comes first"
    );
    let small = s.send(&[1; 100], MsgFlags::NONE);
    assert_eq!(small, Err(SendError::SockErr(Errno::EMSGSIZE)));
    assert_eq!(s.send(&[1; 100], MsgFlags::NONE), Ok(100));
}

#[test]
fn icmp_errors_to_a_broadcast_address_are_icmp_in_errors() {
    let (stack, _) = host();
    let eth0 = stack.device("eth0").unwrap();
    let bcast = Ipv4Addr::new(10, 0, 0, 255);
    let msg = icmp(3, 3, 0, &[0x45; 28]);
    stack.receive(&eth0, &ipv4_frame([0xff; 6], PEER, bcast, 1, &msg));
    let echo = icmp(8, 0, 0, &[]);
    stack.receive(&eth0, &ipv4_frame([0xff; 6], PEER, bcast, 1, &echo));
    let c = stack.counters();
    assert_eq!((c.get(Mib::IcmpInMsgs), c.get(Mib::IcmpInErrors)), (2, 2));
    assert_eq!(c.get(Mib::IpInDelivers), 2);
}
