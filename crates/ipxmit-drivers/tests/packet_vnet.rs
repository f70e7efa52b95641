//! The AF_PACKET driver's `TPACKET_V3` ring and `PACKET_VNET_HDR` offloads
//! against a real kernel: our stack sends on the `A` end of a veth pair, a
//! kernel UDP socket on the `B` end (10.10.0.2) must receive every datagram
//! byte for byte, in order — through a `TPACKET_V3` ring, and with the vnet
//! header through `sendmmsg`, a `TPACKET_V2` and a `TPACKET_V3` ring; under
//! back-pressure; UDP GSO super-frames the kernel splits into datagrams;
//! checksums the kernel completes (with `xa0`'s checksum offload off, so
//! the kernel computes them in software and `B` verifies every one).
//!
//! Each test needs root and network namespaces; without them it prints
//! `SKIPPED (needs root and network namespaces): <test>` and returns.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::netns::{Capture, VethPeer, DEV_A, DEV_B};
use common::veth::{
    numbered, offload_off, packet_stack, send_from, slow_qdisc, socket, veth_receiver, QUIET,
};
use common::{assert_same, payload, payloads, report, skip};
use ipxmit::{Features, Stack};
use ipxmit_drivers::packet::{PacketConfig, PacketError, PacketLink, PacketMode, TpacketVersion};
use ipxmit_drivers::runner::Runner;

const SIZES: [usize; 6] = [0, 1, 1472, 1473, 8000, 65507];
const RING: PacketMode = PacketMode::TxRing {
    frames: 64,
    frame_size: 0,
};
const OFFLOADS: Features = Features::HW_CSUM.union(Features::GSO_UDP_L4);

/// A link on `xa0` in `peer`'s `A`, configured by `set`, with a stack and
/// its runner.
struct Host {
    link: PacketLink,
    stack: Arc<Stack>,
    _runner: Runner,
}

fn host(peer: &VethPeer, set: impl FnOnce(&mut PacketConfig)) -> Host {
    let mut cfg = PacketConfig::new(DEV_A);
    set(&mut cfg);
    let link = peer.open(&cfg).unwrap();
    let (stack, _) = packet_stack(peer, &link);
    let runner = Runner::spawn(stack.clone());
    Host {
        link,
        stack,
        _runner: runner,
    }
}

fn vnet(mode: PacketMode, version: TpacketVersion) -> impl FnOnce(&mut PacketConfig) {
    move |c| {
        c.mode = mode;
        c.version = version;
        c.vnet_hdr = true;
        c.offload = OFFLOADS;
    }
}

/// Sends each payload to `port` in `B`, as UDP GSO of `gso` bytes unless 0.
fn send_all(stack: &Arc<Stack>, port: u16, gso: u32, payloads: &[Vec<u8>]) {
    let mut s = socket(stack, 5000);
    if gso > 0 {
        s.set_gso_size(gso).unwrap();
    }
    send_from(&mut s, port, payloads);
}

/// Every size through a link configured by `set`; the frame count proves
/// the unfragmented ones went out as one frame each.
fn sizes_through(tag: &str, port: u16, set: impl FnOnce(&mut PacketConfig)) -> Host {
    let (peer, rx) = veth_receiver(tag, port, 16 << 20);
    let h = host(&peer, set);
    let sent = payloads(&SIZES);
    send_all(&h.stack, port, 0, &sent);
    assert_same(&rx.recv_n(sent.len(), QUIET), &sent);
    let st = h.link.stats();
    assert_eq!(st.tx_frames, 56, "1 + 1 + 1 + 2 + 6 + 45 frames: {st:?}");
    assert_eq!((st.tx_errors, st.tx_busy), (0, 0), "{st:?}");
    h
}

#[test]
fn packet_v3_ring_datagrams_of_every_size_reach_the_kernel_intact() {
    if skip("packet_v3_ring_datagrams_of_every_size_reach_the_kernel_intact") {
        return;
    }
    let h = sizes_through("pkv3", 6100, |c| c.mode = RING);
    assert!(!h.link.features().intersects(OFFLOADS));
}

#[test]
fn packet_vnet_hdr_sendmmsg_datagrams_of_every_size_reach_the_kernel_intact() {
    if skip("packet_vnet_hdr_sendmmsg_datagrams_of_every_size_reach_the_kernel_intact") {
        return;
    }
    let h = sizes_through("pkvm", 6101, vnet(PacketMode::Sendmmsg, TpacketVersion::V3));
    assert!(
        h.link.features().contains(OFFLOADS),
        "granted: {:?}",
        h.link.features()
    );
}

#[test]
fn packet_vnet_hdr_v2_ring_datagrams_of_every_size_reach_the_kernel_intact() {
    if skip("packet_vnet_hdr_v2_ring_datagrams_of_every_size_reach_the_kernel_intact") {
        return;
    }
    let h = sizes_through("pkv2v", 6102, vnet(RING, TpacketVersion::V2));
    assert!(h.link.features().contains(OFFLOADS));
}

#[test]
fn packet_vnet_hdr_v3_ring_datagrams_of_every_size_reach_the_kernel_intact() {
    if skip("packet_vnet_hdr_v3_ring_datagrams_of_every_size_reach_the_kernel_intact") {
        return;
    }
    let h = sizes_through("pkv3v", 6103, vnet(RING, TpacketVersion::V3));
    assert!(h.link.features().contains(OFFLOADS));
}

/// UDP GSO of 64 x 1000 B plus a 200 B tail: one super-frame per send
/// leaves the driver (the kernel got the vnet header's `gso_size`), and the
/// receiver reads 65 datagrams, in order, byte for byte. On a veth the
/// super-frame reaches `B` whole; `B`'s UDP socket splits it.
fn gso_through(tag: &str, port: u16, mode: PacketMode) {
    let (peer, rx) = veth_receiver(tag, port, 16 << 20);
    let h = host(&peer, vnet(mode, TpacketVersion::V3));
    let big: Vec<Vec<u8>> = (0..3).map(|k| payload(64 * 1000 + 200, k)).collect();
    send_all(&h.stack, port, 1000, &big);
    let got = rx.recv_n(3 * 65, QUIET);
    assert_eq!(got.len(), 3 * 65, "datagrams received");
    for (k, b) in big.iter().enumerate() {
        let part = &got[k * 65..(k + 1) * 65];
        assert!(part[..64].iter().all(|d| d.len() == 1000));
        assert_eq!(part[64].len(), 200);
        assert!(part.concat() == *b, "super-datagram {k} split in order");
    }
    let st = h.link.stats();
    assert_eq!(st.tx_frames, 3, "one GSO super-frame per send: {st:?}");
    assert_eq!(st.tx_errors, 0);
}

#[test]
fn packet_vnet_hdr_udp_gso_over_sendmmsg_delivers_every_segment() {
    if skip("packet_vnet_hdr_udp_gso_over_sendmmsg_delivers_every_segment") {
        return;
    }
    gso_through("pkgm", 6104, PacketMode::Sendmmsg);
}

#[test]
fn packet_vnet_hdr_udp_gso_over_v3_ring_delivers_every_segment() {
    if skip("packet_vnet_hdr_udp_gso_over_v3_ring_delivers_every_segment") {
        return;
    }
    gso_through("pkgr", 6105, RING);
}

/// `InCsumErrors` of `Udp:` in `/proc/thread-self/net/snmp`, read inside
/// `ns` (`/proc/net` is the process's namespace, not the thread's).
fn udp_csum_errors(ns: &ipxmit_drivers::netns::Netns) -> u64 {
    let snmp = ns
        .run(|| std::fs::read_to_string("/proc/thread-self/net/snmp"))
        .unwrap()
        .unwrap();
    let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
    let names: Vec<&str> = udp[0].split_whitespace().collect();
    let values: Vec<&str> = udp[1].split_whitespace().collect();
    let i = names.iter().position(|n| *n == "InCsumErrors").unwrap();
    values[i].parse().unwrap()
}

/// With `xa0`'s checksum offload off, the kernel completes each partial
/// checksum in software (`skb_checksum_help`, at `validate_xmit_skb`) and
/// segments GSO super-frames itself, so `B` gets full checksums and
/// verifies each one: every datagram arrives (a wrong checksum is dropped
/// and counted in `InCsumErrors`), and the frames captured on `xb0` carry
/// the checksum an independent implementation computes.
fn checksums_completed(tag: &str, port: u16, mode: PacketMode) {
    let (peer, rx) = veth_receiver(tag, port, 16 << 20);
    offload_off(&peer, "tx");
    let cap = Capture::open(&peer.b, DEV_B).unwrap();
    // Through the qdisc: with `xa0`'s offloads off the kernel segments the
    // GSO super-frame in software, which the bypass cannot.
    let h = host(&peer, |c| {
        vnet(mode, TpacketVersion::V3)(c);
        c.qdisc_bypass = false;
    });
    let small: Vec<Vec<u8>> = (0..20).map(|k| payload(1 + 73 * k, k)).collect();
    send_all(&h.stack, port, 0, &small);
    let gso = vec![payload(10 * 1400, 99)];
    send_all(&h.stack, port, 1400, &gso);
    let got = rx.recv_n(30, QUIET);
    assert_same(&got[..20.min(got.len())], &small);
    assert_eq!(got.len(), 30, "all datagrams verified and delivered");
    assert!(got[20..].concat() == gso[0], "GSO segments in order");
    assert_eq!(udp_csum_errors(&peer.b), 0, "no checksum errors in B");
    let frames: Vec<_> = cap
        .drain(Duration::from_millis(300))
        .into_iter()
        .filter(|c| c.frame.len() > 42 && c.frame[23] == 17)
        .collect();
    assert_eq!(frames.len(), 30, "UDP frames on xb0");
    for c in &frames {
        assert_eq!(
            udp_checksum_ok(&c.frame),
            Ok(()),
            "frame {:?}",
            &c.frame[..42]
        );
    }
    assert!(h.link.features().contains(OFFLOADS));
    report(&format!("{tag}: {:?}", h.link.stats()));
}

/// Checks the UDP checksum of an Ethernet/IPv4/UDP frame independently
/// (`internet-checksum` over the pseudo-header and the datagram).
fn udp_checksum_ok(f: &[u8]) -> Result<(), String> {
    let ip = &f[14..];
    let ihl = usize::from(ip[0] & 15) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let udp = &ip[ihl..total];
    let mut c = internet_checksum::Checksum::new();
    c.add_bytes(&ip[12..20]);
    c.add_bytes(&[0, 17]);
    c.add_bytes(&(udp.len() as u16).to_be_bytes());
    c.add_bytes(udp);
    match c.checksum() {
        [0, 0] => Ok(()),
        s => Err(format!(
            "checksum {:02x?} does not verify (sum {s:02x?})",
            &udp[6..8]
        )),
    }
}

#[test]
fn packet_vnet_hdr_checksums_the_kernel_completes_verify_over_sendmmsg() {
    if skip("packet_vnet_hdr_checksums_the_kernel_completes_verify_over_sendmmsg") {
        return;
    }
    checksums_completed("pkcm", 6106, PacketMode::Sendmmsg);
}

#[test]
fn packet_vnet_hdr_checksums_the_kernel_completes_verify_over_v3_ring() {
    if skip("packet_vnet_hdr_checksums_the_kernel_completes_verify_over_v3_ring") {
        return;
    }
    checksums_completed("pkcr", 6107, RING);
}

/// A slow kernel qdisc (tbf, no bypass) behind a minimal send buffer (or a
/// small V3 ring): writes find no room, the queue stops and is woken on
/// completion, and every datagram still arrives, in order — fragmented
/// ones too, through the 4-slot ring: with the vnet header the kernel
/// copies each non-GSO slot whole (`hdr_len`), so no fragment waiting in
/// `B`'s reassembly queue still points into a slot that is reused (the
/// caveat of a ring without it, see `packet.rs`).
fn back_pressure(tag: &str, port: u16, mode: PacketMode, fragmented: bool) {
    let (peer, rx) = veth_receiver(tag, port, 64 << 20);
    slow_qdisc(&peer);
    let h = host(&peer, |c| {
        vnet(mode, TpacketVersion::V3)(c);
        c.qdisc_bypass = false;
        c.sndbuf = Some(1);
    });
    let sent = numbered(fragmented);
    send_all(&h.stack, port, 0, &sent);
    assert_same(&rx.recv_n(sent.len(), QUIET), &sent);
    let st = h.link.stats();
    assert!(st.tx_busy > 0, "the socket ran out of room: {st:?}");
    assert_eq!(st.tx_errors, 0);
    assert_eq!(h.stack.counters().dropped_total(), 0, "nothing dropped");
}

#[test]
fn packet_vnet_hdr_back_pressure_loses_nothing() {
    if skip("packet_vnet_hdr_back_pressure_loses_nothing") {
        return;
    }
    back_pressure("pkbpm", 6108, PacketMode::Sendmmsg, true);
}

#[test]
fn packet_vnet_hdr_v3_ring_back_pressure_loses_nothing() {
    if skip("packet_vnet_hdr_v3_ring_back_pressure_loses_nothing") {
        return;
    }
    let small = PacketMode::TxRing {
        frames: 4,
        frame_size: 2048,
    };
    back_pressure("pkbpr", 6109, small, true);
}

#[test]
fn packet_offloads_without_the_vnet_header_are_refused() {
    let mut cfg = PacketConfig::new("lo");
    cfg.offload = Features::HW_CSUM;
    let e = PacketLink::open(&cfg).unwrap_err();
    assert!(matches!(e, PacketError::Config { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "invalid AF_PACKET configuration for lo: offloads need the vnet header"
    );
}

/// A ring whose slots cannot hold a 64 KiB super-frame grants checksum
/// offload only (the stack then segments GSO sends itself), and so does
/// the qdisc bypass on an interface without `tx-udp-segmentation` (the
/// kernel would drop a super-frame it must segment); without the bypass
/// the kernel's qdisc path segments, and UDP GSO is granted.
#[test]
fn packet_udp_gso_is_granted_only_where_it_reaches_the_interface() {
    if skip("packet_udp_gso_is_granted_only_where_it_reaches_the_interface") {
        return;
    }
    let peer = VethPeer::new("pksm").unwrap();
    let small = PacketMode::TxRing {
        frames: 16,
        frame_size: 2048,
    };
    let f = host(&peer, vnet(small, TpacketVersion::V3)).link.features();
    assert!(f.contains(Features::HW_CSUM), "{f:?}");
    assert!(!f.contains(Features::GSO_UDP_L4), "{f:?}");
    offload_off(&peer, "tx-udp-segmentation");
    let bypass = host(&peer, vnet(PacketMode::Sendmmsg, TpacketVersion::V3));
    assert!(!bypass.link.features().intersects(Features::GSO_UDP_L4));
    assert!(bypass.link.features().contains(Features::HW_CSUM));
    let qdisc = host(&peer, |c| {
        vnet(PacketMode::Sendmmsg, TpacketVersion::V3)(c);
        c.qdisc_bypass = false;
    });
    assert!(qdisc.link.features().contains(OFFLOADS));
}
