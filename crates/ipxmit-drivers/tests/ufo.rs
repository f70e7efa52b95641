//! UDP fragmentation offload (UFO): a UDP datagram over the MTU leaves a
//! device with [`Features::UFO`] whole, as one `SKB_GSO_UDP` packet, and the
//! device (a TAP: the kernel, from the `VIRTIO_NET_HDR_GSO_UDP` header)
//! fragments it; a device without UFO gets the fragments `ip_fragment`
//! makes, and a UFO packet that meets one (here: through `tbf`, which
//! segments what exceeds its burst) is cut into the very same fragments in
//! software.
//!
//! The in-memory tests run anywhere; the TAP tests need root and network
//! namespaces (else `SKIPPED (needs root and network namespaces): <test>`),
//! and a kernel that takes `TUN_F_UFO` (else `SKIPPED (...)` with the
//! reason).

mod common;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use common::netns::{
    Capture, Receiver, TapPeer, VethPeer, DEV_A, TAP_OURS, TAP_PEER, VETH_OURS, VETH_PEER,
};
use common::veth::packet_stack;
use common::{eth0, mem_host, payload, report, skip, PEER};
use ipxmit::buf::GsoType;
use ipxmit::dev::Features;
use ipxmit::neigh::NudState;
use ipxmit::stats::{DevCounter, Mib};
use ipxmit::wire::EthernetAddress;
use ipxmit::{BatchMsg, BufPool, MsgFlags, PmtuDisc, SendError, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;
use ipxmit_drivers::netns::Netns;
use ipxmit_drivers::packet::{PacketConfig, PacketMode};
use ipxmit_drivers::runner::Runner;
use ipxmit_drivers::tap::TapConfig;

/// Sizes over the MTU (and one under): 1473 is one byte over, 4321 is odd.
const SIZES: [usize; 5] = [1473, 8000, 4321, 65000, 100];
const QUIET: Duration = Duration::from_secs(2);
const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0x69, 0x70, 0x78, 0x75, 0x01]);

/// Sends `SIZES` to `to`, the first half with `send_to` (the cork) and the
/// rest with one `send_batch` (the one-pass build); returns the payloads.
fn send_both_ways(stack: &Arc<Stack>, from: SocketAddrV4, to: SocketAddrV4) -> Vec<Vec<u8>> {
    let mut s = UdpSocket::new(stack);
    s.bind(from).unwrap();
    let sent: Vec<Vec<u8>> = SIZES
        .iter()
        .enumerate()
        .map(|(k, &n)| payload(n, k))
        .collect();
    let (one, batch) = sent.split_at(2);
    for p in one {
        assert_eq!(s.send_to(p, to, MsgFlags::NONE).unwrap(), p.len());
    }
    let msgs: Vec<BatchMsg<'_>> = batch.iter().map(|p| BatchMsg::new(p, Some(to))).collect();
    assert_eq!(s.send_batch(&msgs, MsgFlags::NONE).unwrap(), msgs.len());
    sent
}

/// The frames on `wire`, as bytes.
fn frames_of(wire: &MemWire) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    wire.drain(|p| {
        let mut b = vec![0; p.len()];
        p.copy_to(&mut b);
        v.push(b);
    });
    v
}

/// The frame with its IP ID and header checksum zeroed (they depend on
/// the stack's ID counter), after checking the header checksum.
fn masked(f: &[u8]) -> Vec<u8> {
    let mut c = internet_checksum::Checksum::new();
    c.add_bytes(&f[14..34]);
    assert_eq!(c.checksum(), [0, 0], "IP header checksum verifies");
    let mut m = f.to_vec();
    m[18..20].fill(0);
    m[24..26].fill(0);
    m
}

/// An in-memory host whose `eth0` has `feats` and MTU 1500.
fn host_with(feats: Features) -> (Arc<Stack>, Arc<MemWire>) {
    let mut cfg = eth0();
    cfg.features = feats;
    mem_host(cfg, 1, 4096)
}

#[test]
fn ufo_device_takes_datagrams_whole_and_software_ufo_cuts_as_ip_fragment() {
    let from = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5000);
    let to = SocketAddrV4::new(PEER, 9);
    // Without UFO: ip_fragment's frames.
    let (plain, pw) = host_with(Features::SG);
    send_both_ways(&plain, from, to);
    let want: Vec<Vec<u8>> = frames_of(&pw).iter().map(|f| masked(f)).collect();
    assert_eq!(want.len(), 2 + 6 + 3 + 44 + 1, "fragments at MTU 1500");
    assert_eq!(plain.counters().get(Mib::IpFragOKs), 4);
    // With UFO: one frame per datagram, marked SKB_GSO_UDP of 1480 bytes.
    let (ufo, uw) = host_with(Features::SG | Features::UFO);
    send_both_ways(&ufo, from, to);
    let pool = BufPool::new(64);
    let mut cut = VecDeque::new();
    let mut whole = 0;
    uw.drain(|p| {
        if p.len() > 1514 {
            assert_eq!((p.meta.gso_type, p.meta.gso_size), (GsoType::Udp, 1480));
            let mut ip = [0u8; 20];
            p.copy_bits(14, &mut ip);
            assert_eq!(
                usize::from(u16::from_be_bytes([ip[2], ip[3]])),
                p.len() - 14
            );
            assert_eq!(ip[6] & 0x7f, 0, "not a fragment, DF clear");
            whole += 1;
            assert!(ipxmit::offload::ufo::fragment_into(p, &pool, &mut cut));
        } else {
            cut.push_back(p);
        }
    });
    assert_eq!(whole, 4, "the four datagrams over the MTU left whole");
    let got: Vec<Vec<u8>> = cut
        .iter()
        .map(|p| {
            let mut b = vec![0; p.len()];
            p.copy_to(&mut b);
            masked(&b)
        })
        .collect();
    assert!(got == want, "software UFO makes ip_fragment's frames");
    // The sending host's MIBs: no fragmentation at IP, one transmit each.
    let c = ufo.counters();
    assert_eq!((c.get(Mib::IpFragOKs), c.get(Mib::IpFragCreates)), (0, 0));
    assert_eq!(c.get(Mib::IpOutTransmits), SIZES.len() as u64);
    let dev = ufo.device("eth0").unwrap();
    assert_eq!(dev.stats.get(DevCounter::TxPackets), SIZES.len() as u64);
}

#[test]
fn ufo_packet_cut_by_tbf_leaves_as_ip_fragment_would() {
    let from = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5000);
    let to = SocketAddrV4::new(PEER, 9);
    let (plain, pw) = host_with(Features::SG);
    send_both_ways(&plain, from, to);
    let want: Vec<Vec<u8>> = frames_of(&pw).iter().map(|f| masked(f)).collect();
    // tbf's burst takes one full frame (1514 bytes), so every UFO packet
    // is over it and cut in software (`tbf_segment` -> `skb_gso_segment`),
    // its fragments queued.
    let (ufo, uw) = host_with(Features::SG | Features::UFO);
    let spec = "tbf rate 10gbit burst 1514 limit 10000000".parse().unwrap();
    ufo.replace_qdisc("eth0", &spec).unwrap();
    send_both_ways(&ufo, from, to);
    let deadline = std::time::Instant::now() + QUIET;
    while uw.len() < want.len() && std::time::Instant::now() < deadline {
        ufo.poll();
        std::thread::sleep(Duration::from_millis(1));
    }
    let got: Vec<Vec<u8>> = frames_of(&uw).iter().map(|f| masked(f)).collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "tbf's software UFO makes ip_fragment's frames");
    assert_eq!(ufo.counters().dropped_total(), 0);
}

#[test]
fn ufo_leaves_df_datagrams_to_the_fragmenter() {
    let (ufo, uw) = host_with(Features::SG | Features::UFO);
    let mut s = UdpSocket::new(&ufo);
    s.bind(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5000))
        .unwrap();
    s.set_mtu_discover(PmtuDisc::Do);
    let to = SocketAddrV4::new(PEER, 9);
    let r = s.send_to(&payload(2000, 1), to, MsgFlags::NONE);
    assert!(matches!(r, Err(SendError::MsgSize { mtu: 1500 })), "{r:?}");
    let msgs = [BatchMsg::new(&[7u8; 3000][..], Some(to))];
    let r = s.send_batch(&msgs, MsgFlags::NONE);
    assert!(matches!(r, Err(SendError::MsgSize { .. })), "{r:?}");
    // SO_NO_CHECK: the datagram is not UFO's (the kernel's test), it is
    // fragmented as before.
    let mut n = UdpSocket::new(&ufo);
    n.bind(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5001))
        .unwrap();
    n.set_no_check(true);
    n.send_to(&payload(3000, 2), to, MsgFlags::NONE).unwrap();
    assert_eq!(frames_of(&uw).len(), 3, "no UFO without checksums");
}

/// Our side of a TAP peer: a stack with `tap0`, its address, the static
/// neighbour and a runner.
fn tap_host(peer: &TapPeer) -> (Runner, Arc<Stack>) {
    let stack = Stack::new();
    let cfg = peer.tap.dev_config("tap0", OUR_MAC);
    stack.add_device(cfg, peer.tap.drivers()).unwrap();
    stack
        .add_addr("tap0", "10.9.0.1/24".parse().unwrap())
        .unwrap();
    stack
        .add_neigh("tap0", TAP_PEER, peer.kernel_mac, NudState::Permanent)
        .unwrap();
    (Runner::spawn(stack.clone()), stack)
}

/// A TAP peer asking for UFO for the test `name`, or `None` once the
/// SKIPPED line says why the test cannot run here (no root and network
/// namespaces, no TAP peer, or a kernel that refuses `TUN_F_UFO`).
fn ufo_peer(name: &str, tag: &str, sndbuf: Option<i32>) -> Option<TapPeer> {
    if skip(name) {
        return None;
    }
    let mut cfg = TapConfig::tap("ipxf%d");
    cfg.offload = Features::HW_CSUM | Features::GSO_UDP_L4 | Features::UFO;
    cfg.sndbuf = sndbuf;
    let why = match TapPeer::new(tag, &cfg, OUR_MAC) {
        Ok(peer) if peer.tap.features().contains(Features::UFO) => return Some(peer),
        Ok(peer) => format!("the kernel refused TUN_F_UFO: {}", peer.tap.features()),
        Err(e) => e.to_string(),
    };
    println!("SKIPPED ({why}): {name}");
    None
}

/// `IpReasmReqds` of namespace `ns` (`/proc/net/snmp` read from inside).
fn reasm_reqds(ns: &Netns) -> u64 {
    let snmp = ns
        .run(|| std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap())
        .unwrap();
    let ip: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Ip: ")).collect();
    let names: Vec<&str> = ip[0].split_whitespace().collect();
    let vals: Vec<&str> = ip[1].split_whitespace().collect();
    let i = names.iter().position(|n| *n == "ReasmReqds").unwrap();
    vals[i].parse().unwrap()
}

#[test]
fn ufo_tap_hands_the_kernel_whole_datagrams() {
    let Some(peer) = ufo_peer("ufo_tap_hands_the_kernel_whole_datagrams", "ufotap", None) else {
        return;
    };
    let cap = Capture::open_plain(&peer.ns, peer.tap.name()).unwrap();
    let rx = Receiver::bind(&peer.ns, SocketAddrV4::new(TAP_PEER, 6100), 16 << 20).unwrap();
    let (_runner, stack) = tap_host(&peer);
    let from = SocketAddrV4::new(TAP_OURS, 5100);
    let sent = send_both_ways(&stack, from, SocketAddrV4::new(TAP_PEER, 6100));
    let got = rx.recv_n(sent.len(), QUIET);
    assert!(got == sent, "every datagram byte for byte, in order");
    assert_eq!(
        peer.tap.stats().tx_frames,
        SIZES.len() as u64,
        "one write each"
    );
    assert_eq!(reasm_reqds(&peer.ns), 0, "the kernel reassembled nothing");
    let frames: Vec<_> = cap.drain(Duration::from_millis(300));
    let lens: Vec<usize> = frames.iter().map(|c| c.frame.len()).collect();
    let want: Vec<usize> = SIZES.iter().map(|n| 14 + 20 + 8 + n).collect();
    assert_eq!(lens, want, "the kernel took each datagram as one frame");
    for c in &frames {
        let tot = u16::from_be_bytes([c.frame[16], c.frame[17]]);
        assert_eq!(usize::from(tot), c.frame.len() - 14, "a whole datagram");
        if c.frame.len() > 1514 {
            assert_eq!(c.frame[20] & 0x7f, 0, "not a fragment, DF clear");
        }
    }
}

/// B's kernel holds our frames in a slow queue before it receives them
/// (the TAP's ingress redirected to an ifb device with tbf, which cuts a
/// UFO buffer into its fragments): with a small `TUNSETSNDBUF`, writes find
/// no room (`EAGAIN`), the queue stops, `POLLOUT` wakes it.
fn slow_ingress(peer: &TapPeer) {
    let tap = peer.tap.name().to_string();
    let ns = peer.ns.name().to_string();
    peer.ns.ip(&["link", "add", "ifb0", "type", "ifb"]).unwrap();
    peer.ns.ip(&["link", "set", "ifb0", "up"]).unwrap();
    let tc = |args: &str| {
        let mut v = vec!["netns", "exec", ns.as_str(), "tc"];
        v.extend(args.split(' '));
        ipxmit_drivers::netns::ip(&v).unwrap();
    };
    tc("qdisc add dev ifb0 root tbf rate 200mbit burst 16kb latency 2s");
    tc(&format!("qdisc add dev {tap} ingress"));
    tc(&format!(
        "filter add dev {tap} parent ffff: protocol all u32 match u32 0 0 \
         action mirred egress redirect dev ifb0"
    ));
}

#[test]
fn ufo_tap_back_pressure_loses_nothing() {
    let Some(peer) = ufo_peer("ufo_tap_back_pressure_loses_nothing", "ufobp", Some(8192)) else {
        return;
    };
    slow_ingress(&peer);
    let rx = Receiver::bind(&peer.ns, SocketAddrV4::new(TAP_PEER, 6101), 64 << 20).unwrap();
    let (runner, stack) = tap_host(&peer);
    let mut s = UdpSocket::new(&stack);
    s.bind(SocketAddrV4::new(TAP_OURS, 5101)).unwrap();
    let to = SocketAddrV4::new(TAP_PEER, 6101);
    let mut sent = Vec::new();
    for k in 0..300 {
        let mut p = payload([65000, 8000, 1473, 4321][k % 4], k);
        p[..2].copy_from_slice(&(k as u16).to_be_bytes());
        sent.push(p);
    }
    for chunk in sent.chunks(16) {
        let msgs: Vec<BatchMsg<'_>> = chunk.iter().map(|p| BatchMsg::new(p, Some(to))).collect();
        let mut off = 0;
        while off < msgs.len() {
            match s.send_batch(&msgs[off..], MsgFlags::NONE) {
                Ok(n) => off += n,
                Err(SendError::NoBufs | SendError::Again) => std::thread::yield_now(),
                Err(e) => panic!("{e:?}"),
            }
        }
    }
    let got = rx.recv_n(sent.len(), QUIET);
    assert_eq!(got.len(), sent.len(), "every datagram arrived");
    assert!(got == sent, "byte for byte, in order");
    let st = peer.tap.stats();
    assert!(st.tx_busy > 0, "the tap fd ran out of room: {st:?}");
    assert_eq!(st.tx_errors, 0);
    assert_eq!(st.tx_frames, sent.len() as u64, "one frame per datagram");
    assert_eq!(stack.counters().dropped_total(), 0);
    report(&format!(
        "ufo tap back-pressure: {st:?} {:?}",
        runner.stats()
    ));
}

/// The datagrams' frames on a veth, as the kernel forwards them from the
/// TAP (ours: one UFO buffer each, which it cuts) or sends them from its own
/// socket: `B` routes between the TAP (10.9.0.2) and `ufoa` (10.11.0.1),
/// `C` holds `ufoc` (10.11.0.2), its capture and its receiver.
struct Forwarder {
    peer: TapPeer,
    c: Netns,
}

const FWD_DEST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 11, 0, 2), 6200);

impl Forwarder {
    fn new(peer: TapPeer) -> Forwarder {
        let c = Netns::unique("ufoc").unwrap();
        let b = &peer.ns;
        let veth = [
            "link", "add", "ufoa", "type", "veth", "peer", "name", "ufoc",
        ];
        b.ip(&[&veth[..], &["netns", c.name()]].concat()).unwrap();
        b.ip(&["addr", "add", "10.11.0.1/24", "dev", "ufoa"])
            .unwrap();
        b.ip(&["link", "set", "ufoa", "up"]).unwrap();
        c.ip(&["addr", "add", "10.11.0.2/24", "dev", "ufoc"])
            .unwrap();
        c.ip(&["link", "set", "ufoc", "up"]).unwrap();
        b.sysctl("net/ipv4/ip_forward", "1").unwrap();
        Forwarder { peer, c }
    }

    /// The IPv4 frames `send` puts on `ufoc`, and what `C` received.
    fn frames(&self, send: impl FnOnce()) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let cap = Capture::open_plain(&self.c, "ufoc").unwrap();
        let rx = Receiver::bind(&self.c, FWD_DEST, 16 << 20).unwrap();
        send();
        let got = rx.recv_n(SIZES.len(), QUIET);
        let frames = cap.drain(Duration::from_millis(300));
        let ip4 = frames.into_iter().map(|c| c.frame);
        (
            ip4.filter(|f| f.len() > 34 && f[12..14] == [8, 0] && f[23] == 17)
                .collect(),
            got,
        )
    }
}

/// What of a frame the two senders must agree on: total length, flags and
/// offset, and the IP payload — the first fragment's UDP header left out
/// (its source port and checksum are the sender's).
fn geometry(f: &[u8]) -> (u16, u16, Vec<u8>) {
    let word = u16::from_be_bytes([f[20], f[21]]);
    let skip = if word & 0x1fff == 0 { 42 } else { 34 };
    (u16::from_be_bytes([f[16], f[17]]), word, f[skip..].to_vec())
}

/// The fragments of one datagram share its ID.
fn ids_shared(frames: &[Vec<u8>]) {
    let mut id = None;
    for f in frames {
        let word = u16::from_be_bytes([f[20], f[21]]);
        let this = [f[18], f[19]];
        if word & 0x1fff != 0 {
            assert_eq!(Some(this), id, "a fragment carries its datagram's ID");
        }
        id = Some(this);
    }
}

#[test]
fn ufo_frames_forwarded_by_the_kernel_are_its_own_sockets_fragments() {
    let Some(peer) = ufo_peer(
        "ufo_frames_forwarded_by_the_kernel_are_its_own_sockets_fragments",
        "ufofwd",
        None,
    ) else {
        return;
    };
    let fwd = Forwarder::new(peer);
    let (_runner, stack) = tap_host(&fwd.peer);
    let mut r = ipxmit::RouteSpec::new("10.11.0.0/24".parse().unwrap(), "tap0");
    r.via = Some(TAP_PEER);
    stack.add_route(r).unwrap();
    let mut sent = Vec::new();
    let (ours, got) =
        fwd.frames(|| sent = send_both_ways(&stack, SocketAddrV4::new(TAP_OURS, 5200), FWD_DEST));
    assert!(got == sent, "C received every datagram intact, in order");
    assert_eq!(fwd.peer.tap.stats().tx_frames, SIZES.len() as u64);
    let (theirs, got) = fwd.frames(|| {
        let s = fwd
            .peer
            .ns
            .run(|| std::net::UdpSocket::bind("10.11.0.1:0"))
            .unwrap()
            .unwrap();
        for p in &sent {
            s.send_to(p, FWD_DEST).unwrap();
        }
    });
    assert!(got == sent, "and the kernel's own");
    assert_eq!(
        ours.len(),
        2 + 6 + 3 + 44 + 1,
        "fragments of the forwarded UFO buffers"
    );
    assert_eq!(ours.len(), theirs.len());
    for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
        assert!(
            geometry(o) == geometry(t),
            "frame {i}: as the kernel's socket sent it"
        );
    }
    ids_shared(&ours);
    ids_shared(&theirs);
}

/// UFO over AF_PACKET (`PACKET_VNET_HDR`, `sendmmsg` and a `TPACKET_V3`
/// ring): one frame written per datagram, which the kernel cuts into
/// fragments for the veth; B's socket gets every datagram intact, in order.
#[test]
fn ufo_over_af_packet_writes_one_frame_per_datagram() {
    let name = "ufo_over_af_packet_writes_one_frame_per_datagram";
    if skip(name) {
        return;
    }
    let ring = PacketMode::TxRing {
        frames: 64,
        frame_size: 0,
    };
    for (k, mode) in [PacketMode::Sendmmsg, ring].into_iter().enumerate() {
        let peer = VethPeer::with_static_peer("ufopkt").unwrap();
        let mut cfg = PacketConfig::new(DEV_A);
        (cfg.mode, cfg.vnet_hdr) = (mode, true);
        cfg.offload = Features::HW_CSUM | Features::UFO;
        // The kernel cuts UFO in software: not through the bypass.
        cfg.qdisc_bypass = false;
        let link = peer.open(&cfg).unwrap();
        assert!(
            link.features().contains(Features::UFO),
            "{}",
            link.features()
        );
        let (stack, _) = packet_stack(&peer, &link);
        let _runner = Runner::spawn(stack.clone());
        let port = 6300 + k as u16;
        let rx = Receiver::bind(&peer.b, SocketAddrV4::new(VETH_PEER, port), 16 << 20).unwrap();
        let from = SocketAddrV4::new(VETH_OURS, 5300);
        let sent = send_both_ways(&stack, from, SocketAddrV4::new(VETH_PEER, port));
        let got = rx.recv_n(sent.len(), QUIET);
        assert!(
            got == sent,
            "{mode:?}: every datagram byte for byte, in order"
        );
        assert_eq!(
            link.stats().tx_frames,
            SIZES.len() as u64,
            "{mode:?}: one frame each"
        );
        assert_eq!(stack.counters().get(Mib::IpFragOKs), 0);
    }
}
