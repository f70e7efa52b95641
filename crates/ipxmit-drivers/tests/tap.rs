//! The TAP/TUN driver against a real kernel: the device's kernel side lives in
//! a namespace `B` the test creates (10.9.0.2/24), our stack writes to its user
//! side as 10.9.0.1, and a kernel UDP socket in `B` must receive every datagram
//! byte for byte — the kernel reassembles fragments and verifies checksums.
//! With offloads, an AF_PACKET capture in `B` shows what the kernel was handed
//! (checksum left to it, one GSO super-packet) and the receiver shows the
//! kernel finished the job.
//!
//! Each test needs root and network namespaces; without them it prints
//! `SKIPPED (needs root and network namespaces): <test>` and returns.

mod common;

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::netns::{Capture, Captured, Receiver, TapPeer, TAP_OURS, TAP_PEER};
use common::{assert_same, payload, report, skip};
use ipxmit::dev::{Features, LinkType, NetDevice};
use ipxmit::neigh::NudState;
use ipxmit::stats::DevCounter;
use ipxmit::wire::EthernetAddress;
use ipxmit::{MsgFlags, Stack, UdpSocket};
use ipxmit_drivers::runner::Runner;
use ipxmit_drivers::tap::TapConfig;

const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0x69, 0x70, 0x78, 0x00, 0x01]);
const SIZES: [usize; 6] = [0, 1, 1472, 1473, 8000, 65507];
const QUIET: Duration = Duration::from_secs(2);

/// Our side: a stack with `tap0` on the device, its address, the static
/// neighbour (TAP) and a runner.
struct Host {
    runner: Runner,
    stack: Arc<Stack>,
    dev: Arc<NetDevice>,
}

fn host(peer: &TapPeer) -> Host {
    let stack = Stack::new();
    let cfg = peer.tap.dev_config("tap0", OUR_MAC);
    let link = cfg.link;
    let dev = stack.add_device(cfg, peer.tap.drivers()).unwrap();
    stack
        .add_addr("tap0", "10.9.0.1/24".parse().unwrap())
        .unwrap();
    if link == LinkType::Ethernet {
        stack
            .add_neigh("tap0", TAP_PEER, peer.kernel_mac, NudState::Permanent)
            .unwrap();
    }
    let runner = Runner::spawn(stack.clone());
    Host { runner, stack, dev }
}

fn socket(stack: &Arc<Stack>, port: u16) -> UdpSocket {
    let mut s = UdpSocket::new(stack);
    s.bind(SocketAddrV4::new(TAP_OURS, port)).unwrap();
    s
}

/// Sends one datagram of each size to `port` in `B`; returns the payloads.
fn send_sizes(stack: &Arc<Stack>, port: u16, sizes: &[usize]) -> Vec<Vec<u8>> {
    let mut s = socket(stack, 5000);
    let to = SocketAddrV4::new(TAP_PEER, port);
    sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            let p = payload(n, k);
            assert_eq!(s.send_to(&p, to, MsgFlags::NONE).unwrap(), n);
            p
        })
        .collect()
}

#[test]
fn tap_datagrams_of_every_size_reach_the_kernel_intact() {
    if skip("tap_datagrams_of_every_size_reach_the_kernel_intact") {
        return;
    }
    let peer = TapPeer::new("tap", &TapConfig::tap("ipxt%d"), OUR_MAC).unwrap();
    let rx = Receiver::bind(&peer.ns, SocketAddrV4::new(TAP_PEER, 6000), 16 << 20).unwrap();
    let h = host(&peer);
    assert!(
        !peer.tap.features().can_csum(),
        "no offload asked, none used"
    );
    let sent = send_sizes(&h.stack, 6000, &SIZES);
    assert_same(&rx.recv_n(SIZES.len(), QUIET), &sent);
    // 1 + 1 + 1 + 2 + 6 + 45 frames at MTU 1500.
    let st = peer.tap.stats();
    assert_eq!(st.tx_frames, 56, "frames written: {st:?}");
    assert_eq!((st.tx_errors, st.tx_busy), (0, 0));
    assert_eq!(h.dev.stats.get(DevCounter::TxPackets), 56);
}

/// Completes a `NEEDS_CSUM` frame's checksum as the kernel would and checks
/// the UDP checksum then verifies over the pseudo-header.
fn verify_partial_csum(frame: &[u8], start: usize, offset: usize) {
    let mut f = frame.to_vec();
    let mut c = internet_checksum::Checksum::new();
    c.add_bytes(&f[start..]);
    let sum = c.checksum();
    f[start + offset..start + offset + 2].copy_from_slice(&sum);
    let udp = &f[34..];
    let mut v = internet_checksum::Checksum::new();
    v.add_bytes(&f[26..34]);
    v.add_bytes(&[0, 17]);
    v.add_bytes(&(udp.len() as u16).to_be_bytes());
    v.add_bytes(udp);
    assert_eq!(v.checksum(), [0, 0], "completed UDP checksum verifies");
}

fn is_udp4(c: &Captured) -> bool {
    c.frame.len() >= 42 && c.frame[12..14] == [8, 0] && c.frame[23] == 17
}

/// Checksum offload: every size arrives intact; the single-frame datagrams
/// reached the kernel with the checksum left to it, at the right offsets.
fn check_csum_offload(h: &Host, rx: &Receiver, cap: &Capture) {
    let sent = send_sizes(&h.stack, 6001, &SIZES);
    assert_same(&rx.recv_n(SIZES.len(), QUIET), &sent);
    let frames = cap.drain(Duration::from_millis(300));
    let partial: Vec<_> = frames
        .iter()
        .filter(|c| is_udp4(c) && c.flags & 1 != 0)
        .collect();
    let why = "sizes 0, 1 and 1472 left their checksum to the kernel";
    assert_eq!(partial.len(), 3, "{why}");
    for c in &partial {
        let at = (c.csum_start, c.csum_offset);
        assert_eq!(at, (34, 6), "csum_start/offset from the frame start");
        verify_partial_csum(&c.frame, 34, 6);
    }
}

/// UDP GSO: one super-packet of 10 full segments and a short one leaves our
/// device as one frame; B's capture sees it whole; B's receiver gets the
/// segments the kernel cut.
fn check_gso(h: &Host, peer: &TapPeer, rx: &Receiver, cap: &Capture) {
    let mut s = socket(&h.stack, 5001);
    s.set_gso_size(1472).unwrap();
    let big = payload(10 * 1472 + 100, 99);
    let tx0 = h.dev.stats.get(DevCounter::TxPackets);
    let frames0 = peer.tap.stats().tx_frames;
    let to = SocketAddrV4::new(TAP_PEER, 6001);
    s.send_to(&big, to, MsgFlags::NONE).unwrap();
    let got = rx.recv_n(11, QUIET);
    let lens: Vec<usize> = got.iter().map(Vec::len).collect();
    assert_eq!(
        lens,
        [vec![1472; 10], vec![100]].concat(),
        "the kernel segmented"
    );
    assert_eq!(got.concat(), big, "segments carry the payload in order");
    let tx = h.dev.stats.get(DevCounter::TxPackets) - tx0;
    assert_eq!(tx, 1, "one frame left our device");
    let writes = peer.tap.stats().tx_frames - frames0;
    assert_eq!(writes, 1, "one write to the tap");
    let supers: Vec<_> = cap.drain(Duration::from_millis(300));
    let supers: Vec<_> = supers.into_iter().filter(is_udp4).collect();
    assert_eq!(
        supers.len(),
        1,
        "the capture in B saw one frame, not segments"
    );
    let c = &supers[0];
    assert_eq!(c.frame.len(), 14 + 20 + 8 + big.len(), "the super-packet");
    let why = "marked VIRTIO_NET_HDR_GSO_UDP_L4, gso_size 1472";
    assert_eq!((c.gso_type, c.gso_size), (5, 1472), "{why}");
}

#[test]
fn tap_offload_hands_checksum_and_udp_segmentation_to_the_kernel() {
    let name = "tap_offload_hands_checksum_and_udp_segmentation_to_the_kernel";
    if skip(name) {
        return;
    }
    let mut cfg = TapConfig::tap("ipxo%d");
    cfg.offload = Features::HW_CSUM | Features::GSO_UDP_L4;
    let peer = TapPeer::new("tapoff", &cfg, OUR_MAC).unwrap();
    let want = Features::SG | Features::HW_CSUM | Features::GSO_UDP_L4;
    let granted = peer.tap.features();
    assert!(granted.contains(want), "granted: {granted}");
    let cap = Capture::open(&peer.ns, peer.tap.name()).unwrap();
    let rx = Receiver::bind(&peer.ns, SocketAddrV4::new(TAP_PEER, 6001), 16 << 20).unwrap();
    let h = host(&peer);
    check_csum_offload(&h, &rx, &cap);
    check_gso(&h, &peer, &rx, &cap);
}

#[test]
fn tun_mode_sends_bare_ip_packets() {
    if skip("tun_mode_sends_bare_ip_packets") {
        return;
    }
    let peer = TapPeer::new("tun", &TapConfig::tun("ipxu%d"), OUR_MAC).unwrap();
    assert_eq!(peer.tap.link_type(), LinkType::L3);
    let rx = Receiver::bind(&peer.ns, SocketAddrV4::new(TAP_PEER, 6002), 16 << 20).unwrap();
    let h = host(&peer);
    let sent = send_sizes(&h.stack, 6002, &SIZES);
    assert_same(&rx.recv_n(SIZES.len(), QUIET), &sent);
    assert_eq!(peer.tap.stats().tx_frames, 56);
}

#[test]
fn multi_queue_tap_spreads_flows_over_its_fds() {
    if skip("multi_queue_tap_spreads_flows_over_its_fds") {
        return;
    }
    let mut cfg = TapConfig::tap("ipxm%d");
    cfg.queues = 4;
    cfg.vnet_hdr = false; // frames alone, no virtio_net_hdr in front
    let peer = TapPeer::new("tapmq", &cfg, OUR_MAC).unwrap();
    assert_eq!(peer.tap.queues(), 4);
    let rx = Receiver::bind(&peer.ns, SocketAddrV4::new(TAP_PEER, 6003), 16 << 20).unwrap();
    let h = host(&peer);
    assert_eq!(h.dev.queues().len(), 4, "one transmit queue per fd");
    let mut socks: Vec<UdpSocket> = (0..8).map(|i| socket(&h.stack, 5100 + i)).collect();
    let to = SocketAddrV4::new(TAP_PEER, 6003);
    let mut sent = Vec::new();
    for round in 0..20 {
        for (i, s) in socks.iter_mut().enumerate() {
            let mut p = payload(100 + round, i);
            p[0] = i as u8;
            s.send_to(&p, to, MsgFlags::NONE).unwrap();
            sent.push(p);
        }
    }
    let got = rx.recv_n(sent.len(), QUIET);
    assert_eq!(got.len(), sent.len());
    for i in 0..8u8 {
        let per = |v: &Vec<Vec<u8>>| v.iter().filter(|p| p[0] == i).cloned().collect::<Vec<_>>();
        assert_eq!(per(&got), per(&sent), "flow {i} arrives whole and in order");
    }
    let used = h
        .dev
        .queues()
        .iter()
        .filter(|q| q.with_qdisc(|qd| qd.stats().packets) > 0)
        .count();
    assert!(used >= 2, "flows were spread over the queues ({used} used)");
}

#[test]
fn tap_receive_side_reads_what_the_kernel_sends() {
    if skip("tap_receive_side_reads_what_the_kernel_sends") {
        return;
    }
    let peer = TapPeer::new("taprx", &TapConfig::tap("ipxr%d"), OUR_MAC).unwrap();
    let h = host(&peer);
    // B's kernel sends to 10.9.0.1 (its static neighbour) over the tap; the
    // runner reads the frames and hands them to the stack, which counts them.
    // (Not an ARP request: the stack answering one from inside `poll_rx`
    // re-locks queue 0's driver — see the report to the lead.)
    let s = peer
        .ns
        .run(|| std::net::UdpSocket::bind("10.9.0.2:0"))
        .unwrap()
        .unwrap();
    for _ in 0..3 {
        s.send_to(b"hello", "10.9.0.1:7").unwrap();
    }
    let t = Instant::now();
    while h.dev.stats.get(DevCounter::RxPackets) < 3 && t.elapsed() < QUIET {
        std::thread::sleep(Duration::from_millis(5));
    }
    let st = peer.tap.stats();
    assert!(st.rx_frames >= 3, "read the kernel's frames: {st:?}");
    assert!(
        h.dev.stats.get(DevCounter::RxPackets) >= 3,
        "handed to the stack"
    );
    assert_eq!(
        st.rx_bytes % 47,
        0,
        "vnet header stripped: 14 + 20 + 8 + 5 bytes a frame"
    );
}

#[test]
fn tap_back_pressure_loses_nothing() {
    if skip("tap_back_pressure_loses_nothing") {
        return;
    }
    // A small TUNSETSNDBUF, and B's kernel holding our frames in a slow queue
    // before it receives them (ingress redirected to an ifb device with tbf):
    // writes find no room (EAGAIN), the queue stops, POLLOUT wakes it.
    let mut cfg = TapConfig::tap("ipxb%d");
    cfg.sndbuf = Some(8192);
    let peer = TapPeer::new("tapbp", &cfg, OUR_MAC).unwrap();
    let tap = peer.tap.name().to_string();
    let ns = peer.ns.name().to_string();
    peer.ns.ip(&["link", "add", "ifb0", "type", "ifb"]).unwrap();
    peer.ns.ip(&["link", "set", "ifb0", "up"]).unwrap();
    let tc = |args: &[&str]| {
        let mut v = vec!["netns", "exec", ns.as_str(), "tc"];
        v.extend_from_slice(args);
        ipxmit_drivers::netns::ip(&v).unwrap();
    };
    tc(&[
        "qdisc", "add", "dev", "ifb0", "root", "tbf", "rate", "200mbit", "burst", "16kb",
        "latency", "2s",
    ]);
    tc(&["qdisc", "add", "dev", &tap, "ingress"]);
    tc(&[
        "filter", "add", "dev", &tap, "parent", "ffff:", "protocol", "all", "u32", "match", "u32",
        "0", "0", "action", "mirred", "egress", "redirect", "dev", "ifb0",
    ]);
    let rx = Receiver::bind(&peer.ns, SocketAddrV4::new(TAP_PEER, 6004), 64 << 20).unwrap();
    let h = host(&peer);
    let mut s = socket(&h.stack, 5004);
    let to = SocketAddrV4::new(TAP_PEER, 6004);
    let mut sent = Vec::new();
    for k in 0..400 {
        let n = match k % 50 {
            0 => 8000,
            25 => 65507,
            _ => 1472,
        };
        let mut p = payload(n, k);
        p[..2].copy_from_slice(&(k as u16).to_be_bytes());
        assert_eq!(s.send_to(&p, to, MsgFlags::NONE).unwrap(), n);
        sent.push(p);
    }
    assert_same(&rx.recv_n(sent.len(), QUIET), &sent);
    let st = peer.tap.stats();
    assert!(st.tx_busy > 0, "the tap fd ran out of room: {st:?}");
    assert_eq!(st.tx_errors, 0);
    assert_eq!(
        h.stack.counters().dropped_total(),
        0,
        "nothing dropped in the stack"
    );
    report(&format!("tap back-pressure: {st:?} {:?}", h.runner.stats()));
}

/// No static entries on either side: we resolve the kernel over ARP before
/// sending, and the kernel resolves us (its request is answered by our stack
/// from the runner's receive path).
#[test]
fn tap_resolves_over_arp_both_ways() {
    if skip("tap_resolves_over_arp_both_ways") {
        return;
    }
    let peer = TapPeer::new("taparp", &TapConfig::tap("ipxa%d"), OUR_MAC).unwrap();
    let name = peer.tap.name().to_string();
    peer.ns
        .ip(&["neigh", "del", "10.9.0.1", "dev", &name])
        .unwrap();
    let rx = Receiver::bind(&peer.ns, SocketAddrV4::new(TAP_PEER, 6010), 16 << 20).unwrap();
    let stack = Stack::new();
    let dev = stack
        .add_device(peer.tap.dev_config("tap0", OUR_MAC), peer.tap.drivers())
        .unwrap();
    stack
        .add_addr("tap0", "10.9.0.1/24".parse().unwrap())
        .unwrap();
    let _runner = Runner::spawn(stack.clone());
    let sent = send_sizes(&stack, 6010, &SIZES);
    assert_same(&rx.recv_n(SIZES.len(), QUIET), &sent);
    let n = stack
        .neighbours()
        .lookup(dev.ifindex(), TAP_PEER)
        .expect("we resolved the kernel");
    assert_eq!(n.lladdr(), Some(peer.kernel_mac));
    assert!(n.state().is_valid(), "state {:?}", n.state());
    // Make the kernel ask for us: forget us, then send to us from B.
    common::netns::kernel_resolves(&peer.ns, &name, "10.9.0.2", "10.9.0.1", OUR_MAC);
    assert!(
        dev.stats.get(DevCounter::RxPackets) >= 2,
        "our stack received the kernel's ARP request and its datagram"
    );
}
