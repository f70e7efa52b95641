//! The AF_XDP driver against a real kernel: our stack sends on the `A` end
//! of a veth pair (namespace `A`) through XDP sockets in copy mode, a
//! kernel UDP socket on the `B` end (namespace `B`, 10.10.0.2) must receive
//! every datagram byte for byte and in order — 18, 1472, 8000 and 65000
//! bytes (the large ones as IP fragments). Also: the `more` hint batching
//! frames into one kick, a small ring (frames reclaimed from the completion
//! ring mid-batch), a stopped queue while the interface is down (frames
//! handed back, nothing lost), several queues, ARP over the packet socket
//! that receives, and the error messages.
//!
//! Each test needs root, network namespaces and AF_XDP in the kernel;
//! without them it prints `SKIPPED (<reason>): <test>` and returns.

mod common;

use std::io::Write;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::netns::{Receiver, VethPeer, DEV_A, VETH_PEER};
use common::veth::{
    check_arp_both_ways, numbered, send_all, socket, veth_receiver, veth_stack, without_net_raw,
    VethHost, QUIET,
};
use common::{assert_same, payload, payloads, report};
use ipxmit::dev::{TxQueueCtl, TxStatus};
use ipxmit::stats::DevCounter;
use ipxmit::{MsgFlags, PacketBuf, UdpSocket};
use ipxmit_drivers::netns::Netns;
use ipxmit_drivers::runner::Runner;
use ipxmit_drivers::xdp::{XdpConfig, XdpError, XdpLink, XdpMode, XdpStats};

const SIZES: [usize; 6] = [18, 1472, 1473, 8000, 65000, 65507];
/// Frames of [`SIZES`]: 1 + 1 + 2 + 6 + 44 + 45.
const SIZES_FRAMES: u64 = 99;

/// True (after printing the SKIPPED line) when the test cannot run here:
/// it needs root and network namespaces, and AF_XDP sockets.
fn skip(test: &str) -> bool {
    if common::skip(test) {
        return true;
    }
    // SAFETY: plain socket(2) call; a descriptor we get is closed at once.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd >= 0 {
        // SAFETY: `fd` is ours and not used after.
        unsafe { libc::close(fd) };
        return false;
    }
    let e = std::io::Error::last_os_error();
    let line = format!("SKIPPED (kernel without AF_XDP sockets: {e}): {test}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    true
}

/// A stack on `link` over `peer`'s A end ([`VethHost`]).
fn host(peer: &VethPeer, link: &XdpLink) -> VethHost {
    VethHost::new(peer, link.dev_config("eth0"), link.drivers())
}

fn open(peer: &VethPeer, cfg: &XdpConfig) -> Result<XdpLink, XdpError> {
    peer.a.run(|| XdpLink::open(cfg)).unwrap()
}

/// Waits until every frame written came back on the completion ring.
fn completed(link: &XdpLink) -> XdpStats {
    let t = Instant::now();
    let mut st = link.stats();
    while st.tx_completed < st.tx_frames && t.elapsed() < QUIET {
        std::thread::sleep(Duration::from_millis(1));
        st = link.stats();
    }
    st
}

#[test]
fn xdp_datagrams_of_every_size_reach_the_kernel_intact() {
    if skip("xdp_datagrams_of_every_size_reach_the_kernel_intact") {
        return;
    }
    let (peer, rx) = veth_receiver("xdp-sz", 6300, 16 << 20);
    let link = open(&peer, &XdpConfig::new(DEV_A)).unwrap();
    assert_eq!((link.hw_addr(), link.mtu()), (peer.mac_a, 1500));
    assert!(!link.zerocopy(), "veth has no zero-copy AF_XDP");
    let h = host(&peer, &link);
    let sent = payloads(&SIZES);
    send_all(&h.stack, 6300, &sent);
    assert_same(&rx.recv_n(sent.len(), QUIET), &sent);
    let st = completed(&link);
    assert_eq!(st.tx_frames, SIZES_FRAMES, "{st:?}");
    assert_eq!(st.tx_completed, SIZES_FRAMES, "every frame completed");
    assert_eq!((st.tx_errors, st.tx_dropped, st.tx_busy), (0, 0, 0));
    assert_eq!(link.tx_invalid_descs(), 0);
    assert_eq!(h.dev.stats.get(DevCounter::TxPackets), SIZES_FRAMES);
}

/// A UDP GSO send segmented in software: 64 frames handed over with `more`
/// set on all but the last go to the kernel in one batch — at most two
/// kicks (one where the kernel's copy-mode budget is raised to the ring,
/// two with its default budget of 32).
#[test]
fn xdp_more_hint_batches_frames_into_one_kick() {
    if skip("xdp_more_hint_batches_frames_into_one_kick") {
        return;
    }
    let (peer, rx) = veth_receiver("xdp-batch", 6301, 16 << 20);
    let link = open(&peer, &XdpConfig::new(DEV_A)).unwrap();
    let h = host(&peer, &link);
    let mut s = socket(&h.stack, 5002);
    s.set_gso_size(1000).unwrap();
    let big = payload(64 * 1000, 5);
    for _ in 0..2 {
        let before = link.stats().tx_kicks;
        s.send_to(&big, SocketAddrV4::new(VETH_PEER, 6301), MsgFlags::NONE)
            .unwrap();
        let got = rx.recv_n(64, QUIET);
        assert_eq!(got.len(), 64);
        assert_eq!(got.concat(), big, "segments in order");
        let kicks = link.stats().tx_kicks - before;
        let most = if link.tx_budget_raised() { 1 } else { 2 };
        assert!((1..=most).contains(&kicks), "64 frames in {kicks} kicks");
    }
    assert_eq!(link.stats().tx_frames, 128);
    report(&format!(
        "xdp-batch: XDP_MAX_TX_SKB_BUDGET taken: {}; {:?}",
        link.tx_budget_raised(),
        link.stats()
    ));
}

/// A ring of 4 slots (8 UMEM frames): fragment trains of 45 frames fill it
/// mid-batch, the doorbell rings early and frames come back from the
/// completion ring; every datagram arrives, in order.
#[test]
fn xdp_small_ring_back_pressure_loses_nothing() {
    if skip("xdp_small_ring_back_pressure_loses_nothing") {
        return;
    }
    let (peer, rx) = veth_receiver("xdp-bp", 6302, 64 << 20);
    let mut cfg = XdpConfig::new(DEV_A);
    cfg.ring = 4;
    let link = open(&peer, &cfg).unwrap();
    let h = host(&peer, &link);
    let sent = numbered(true);
    send_all(&h.stack, 6302, &sent);
    assert_same(&rx.recv_n(sent.len(), QUIET), &sent);
    let st = completed(&link);
    assert!(st.ring_full > 0, "the ring filled mid-batch: {st:?}");
    assert_eq!(st.tx_completed, st.tx_frames);
    assert_eq!((st.tx_errors, st.tx_dropped), (0, 0));
    assert_eq!(h.stack.counters().dropped_total(), 0, "nothing dropped");
    report(&format!("xdp-bp: {st:?} {:?}", h.runner.stats()));
}

/// The interface goes down: the kernel refuses the kick (`ENETDOWN`). An
/// 8000-byte datagram's 6 fragments come with `more` set: 4 fill the ring,
/// the 5th finds no room after a refused kick and is handed back (`Busy`),
/// the queue stops and what follows waits in the qdisc; nothing reaches
/// the receiver. Up again, the runner's retry sends everything, in order.
#[test]
fn xdp_interface_down_stops_the_queue_and_loses_nothing() {
    if skip("xdp_interface_down_stops_the_queue_and_loses_nothing") {
        return;
    }
    let (peer, rx) = veth_receiver("xdp-down", 6303, 64 << 20);
    let mut cfg = XdpConfig::new(DEV_A);
    cfg.ring = 4;
    let link = open(&peer, &cfg).unwrap();
    let h = host(&peer, &link);
    peer.a.ip(&["link", "set", DEV_A, "down"]).unwrap();
    let mut sent: Vec<Vec<u8>> = numbered(false).into_iter().take(40).collect();
    sent[0] = payload(8000, 99);
    send_all(&h.stack, 6303, &sent);
    std::thread::sleep(Duration::from_millis(50));
    let st = link.stats();
    assert_eq!(
        (st.tx_busy, st.ring_full, st.tx_frames),
        (1, 1, 4),
        "{st:?}"
    );
    assert!(h.dev.queues()[0].ctl().is_stopped());
    assert!(rx.recv_n(1, Duration::from_millis(200)).is_empty());
    peer.a.ip(&["link", "set", DEV_A, "up"]).unwrap();
    assert_same(&rx.recv_n(sent.len(), QUIET), &sent);
    let st = completed(&link);
    assert_eq!((st.tx_frames, st.tx_completed), (45, 45), "{st:?}");
    assert_eq!((st.tx_errors, st.tx_dropped), (0, 0));
    assert_eq!(h.stack.counters().dropped_total(), 0, "nothing dropped");
    report(&format!("xdp-down: {st:?} {:?}", h.runner.stats()));
}

/// Two queues, one XDP socket each on the veth's queues 0 and 1: sixteen
/// flows spread over both and arrive complete, each in order.
#[test]
fn xdp_several_queues_carry_their_flows() {
    if skip("xdp_several_queues_carry_their_flows") {
        return;
    }
    let peer = VethPeer::with_queues("xdp-mq", 2).unwrap();
    let rx = Receiver::bind(&peer.b, SocketAddrV4::new(VETH_PEER, 6304), 64 << 20).unwrap();
    let mut cfg = XdpConfig::new(DEV_A);
    cfg.queues = 2;
    let link = open(&peer, &cfg).unwrap();
    let h = host(&peer, &link);
    assert_eq!(h.dev.queues().len(), 2);
    let to = SocketAddrV4::new(VETH_PEER, 6304);
    let mut socks: Vec<UdpSocket> = (0..16).map(|i| socket(&h.stack, 5100 + i)).collect();
    for seq in 0..20u8 {
        for (f, s) in socks.iter_mut().enumerate() {
            let mut p = payload(if seq % 5 == 4 { 3000 } else { 600 }, f);
            p[..2].copy_from_slice(&[f as u8, seq]);
            s.send_to(&p, to, MsgFlags::NONE).unwrap();
        }
    }
    let got = rx.recv_n(16 * 20, QUIET);
    assert_eq!(got.len(), 16 * 20);
    let mut next = [0u8; 16];
    for p in &got {
        let (f, seq) = (p[0] as usize, p[1]);
        assert_eq!(seq, next[f], "flow {f} in order");
        next[f] += 1;
    }
    let per = link.queue_frames();
    assert!(per.iter().all(|&n| n > 0), "both queues used: {per:?}");
}

/// No static entries on either side: the stack resolves the kernel over
/// ARP through the packet socket that receives, and answers the kernel.
#[test]
fn xdp_resolves_over_arp_both_ways() {
    if skip("xdp_resolves_over_arp_both_ways") {
        return;
    }
    let (peer, rx) = veth_receiver("xdp-arp", 6305, 16 << 20);
    peer.b
        .ip(&["neigh", "del", "10.10.0.1", "dev", "xb0"])
        .unwrap();
    let link = open(&peer, &XdpConfig::new(DEV_A)).unwrap();
    let (stack, dev) = veth_stack(&peer, link.dev_config("eth0"), link.drivers(), true);
    let _runner = Runner::spawn(stack.clone());
    // What waits for the neighbour fits its queue (`unres_qlen_bytes`).
    let sent = payloads(&[18, 1472, 8000, 65000]);
    check_arp_both_ways(&peer, (&stack, &dev), &rx, 6305, &sent);
    assert!(link.stats().rx_frames > 0, "the ARP reply came up");
}

#[test]
fn xdp_open_errors_name_the_problem() {
    if skip("xdp_open_errors_name_the_problem") {
        return;
    }
    let peer = VethPeer::new("xdp-err").unwrap();
    let e = open(&peer, &XdpConfig::new("ipxnosuch0")).unwrap_err();
    assert_eq!(e.to_string(), "no such interface ipxnosuch0");
    let mut zc = XdpConfig::new(DEV_A);
    zc.mode = XdpMode::ZeroCopy;
    let e = open(&peer, &zc).unwrap_err();
    assert!(matches!(e, XdpError::Bind { .. }), "{e:?}");
    assert!(e.to_string().contains("no AF_XDP zero-copy support"), "{e}");
    let mut q = XdpConfig::new(DEV_A);
    q.first_queue = 7;
    let e = open(&peer, &q).unwrap_err();
    assert!(e.to_string().contains("queue 7: no such queue"), "{e}");
    let first = open(&peer, &XdpConfig::new(DEV_A)).unwrap();
    let e = open(&peer, &XdpConfig::new(DEV_A)).unwrap_err();
    assert!(e.to_string().contains("already has an XDP socket"), "{e}");
    drop(first);
    let mut auto = XdpConfig::new(DEV_A);
    auto.mode = XdpMode::Auto;
    let l = open(&peer, &auto).expect("auto falls back to copy mode");
    assert!(!l.zerocopy());
    drop(l);
    let mut bad = XdpConfig::new(DEV_A);
    bad.ring = 6;
    let e = open(&peer, &bad).unwrap_err();
    assert!(e.to_string().contains("power of two"), "{e}");
    // The same thread without CAP_NET_RAW in its effective set.
    let e = peer
        .a
        .run(|| without_net_raw(|| XdpLink::open(&XdpConfig::new(DEV_A))))
        .unwrap()
        .unwrap_err();
    assert_eq!(e.to_string(), "AF_XDP needs CAP_NET_RAW (run as root)");
}

/// The TX `dropped` counter of `dev` as `ip -s link` shows it.
fn link_tx_dropped(ns: &Netns, dev: &str) -> u64 {
    let out = ns.ip(&["-s", "link", "show", dev]).unwrap();
    let mut lines = out
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("TX:"));
    let values = lines.nth(1).unwrap_or_default();
    let v: Vec<u64> = values
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    v[3]
}

/// Frames the kernel's copy-mode transmit would not carry are counted
/// under their reason, never as sent, and hold nothing up. The stack's
/// device has an MTU above the link's: a 1942-byte frame (over the MTU,
/// within a 2048-byte UMEM frame) and a 3042-byte one (over both) are
/// refused by the driver (`tx_oversize`, `EMSGSIZE`) — `xsk_build_skb`
/// checks no MTU, and a veth would take up to its peer's MTU + 18. Then
/// the peer's MTU is lowered under the open link, which the driver cannot
/// see: sixteen 1462-byte frames in one batch (a UDP GSO send) each reach
/// the veth, which drops them (`is_skb_forwardable`) and counts them in its
/// TX `dropped`; each ends its kick with `EBUSY`, its descriptor completed.
/// The driver counts the same sixteen (`tx_dropped`) and kicks on at once —
/// all sixteen are through when the send returns, the queue running (it
/// used to stop after four kicks and wait for a completion) — and the
/// datagrams after them arrive.
#[test]
fn xdp_frames_the_kernel_refuses_hold_nothing_up() {
    if skip("xdp_frames_the_kernel_refuses_hold_nothing_up") {
        return;
    }
    let (peer, rx) = veth_receiver("xdp-ref", 6306, 16 << 20);
    let mut cfg = XdpConfig::new(DEV_A);
    cfg.ring = 8;
    let link = open(&peer, &cfg).unwrap();
    let mut dev = link.dev_config("eth0");
    dev.mtu = 4000;
    let h = VethHost::new(&peer, dev, link.drivers());
    send_all(&h.stack, 6306, &payloads(&[200, 1900, 3000, 200]));
    let got = rx.recv_n(3, Duration::from_millis(500));
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [200, 200]);
    let st = completed(&link);
    assert_eq!((st.tx_oversize, st.tx_errors, st.tx_frames), (2, 2, 2));
    assert_eq!(st.last_errno, libc::EMSGSIZE);
    peer.b.ip(&["link", "set", "xb0", "mtu", "1400"]).unwrap();
    let before = link_tx_dropped(&peer.a, DEV_A);
    let mut s = socket(&h.stack, 5003);
    s.set_gso_size(1420).unwrap();
    let to = SocketAddrV4::new(VETH_PEER, 6306);
    s.send_to(&payload(16 * 1420, 3), to, MsgFlags::NONE)
        .unwrap();
    // The sender's own kicks went through every drop: no queue stop left
    // sixteen drops to completions four at a time.
    let st = link.stats();
    assert_eq!(st.tx_dropped, 16, "at once: {st:?}");
    assert!(!h.dev.queues()[0].ctl().is_stopped(), "{st:?}");
    let after = payloads(&[200, 300, 400]);
    send_all(&h.stack, 6306, &after);
    assert_same(&rx.recv_n(after.len(), QUIET), &after);
    let st = completed(&link);
    assert_eq!(st.tx_dropped, 16, "{st:?}");
    assert_eq!(
        link_tx_dropped(&peer.a, DEV_A) - before,
        16,
        "as the veth counts"
    );
    assert_eq!((st.tx_frames, st.tx_completed), (21, 21), "{st:?}");
    assert_eq!((st.tx_errors, link.tx_invalid_descs()), (2, 0));
    assert!(!h.dev.queues()[0].ctl().is_stopped(), "nothing stalls");
    // The stack counts the drops too: dropped, not sent (the driver's
    // `tx_frames` counts every descriptor, the dropped ones included).
    h.assert_late_drops(16, st.tx_frames - st.tx_dropped);
    report(&format!("xdp-ref: {st:?}"));
}

/// A broadcast frame of `len` bytes (its Ethernet header cut short below
/// 14), for a driver called directly.
fn frame(len: usize) -> PacketBuf {
    let mut f = vec![0x45u8; len];
    let head = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 8, 0];
    let n = len.min(14);
    f[..n].copy_from_slice(&head[..n]);
    PacketBuf::from_slice(32, &f)
}

/// Frames shorter than an Ethernet header never reach the ring: a
/// descriptor of length 0 is one the kernel counts invalid
/// (`xp_aligned_validate_desc`, `tx_invalid_descs`) and, by the source of
/// `xskq_cons_read_desc`, steps over without completing it (Linux 6.18
/// here handed such frames back on the completion ring, one per kick), and
/// a veth drops a 10-byte frame. Both are refused (`tx_runt`, `EINVAL`);
/// the frames around them leave.
#[test]
fn xdp_frames_shorter_than_a_header_are_refused() {
    if skip("xdp_frames_shorter_than_a_header_are_refused") {
        return;
    }
    let peer = VethPeer::new("xdp-runt").unwrap();
    let link = open(&peer, &XdpConfig::new(DEV_A)).unwrap();
    let mut d = link.drivers();
    d[0].attach(Arc::new(TxQueueCtl::default()));
    let sent: Vec<bool> = [60, 0, 10, 60]
        .into_iter()
        .map(|len| matches!(d[0].start_xmit(frame(len), false), TxStatus::Ok))
        .collect();
    assert_eq!(sent, [true, false, false, true]);
    let t = Instant::now();
    while link.stats().tx_completed < 2 && t.elapsed() < QUIET {
        std::thread::sleep(Duration::from_millis(1));
        link.wait_source().complete_tx();
    }
    let st = link.stats();
    assert_eq!(
        (st.tx_runt, st.tx_errors, st.last_errno),
        (2, 2, libc::EINVAL)
    );
    assert_eq!((st.tx_frames, st.tx_completed, st.tx_dropped), (2, 2, 0));
    assert_eq!(link.tx_invalid_descs(), 0);
}

/// The interface's MTU changed under the open link is followed: lowered,
/// it is read again from the completion side (at most every 10 ms) and a
/// frame over it is refused (`tx_oversize`) — copy mode would hand it to
/// the device regardless; raised again, a frame over the MTU last read is
/// checked against a fresh read before it is refused, and leaves.
#[test]
fn xdp_an_mtu_changed_under_the_open_link_is_followed() {
    if skip("xdp_an_mtu_changed_under_the_open_link_is_followed") {
        return;
    }
    let peer = VethPeer::new("xdp-mtu").unwrap();
    let link = open(&peer, &XdpConfig::new(DEV_A)).unwrap();
    let mut d = link.drivers();
    d[0].attach(Arc::new(TxQueueCtl::default()));
    assert!(matches!(d[0].start_xmit(frame(1450), false), TxStatus::Ok));
    peer.a.ip(&["link", "set", DEV_A, "mtu", "1400"]).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    link.wait_source().complete_tx();
    assert!(matches!(
        d[0].start_xmit(frame(1450), false),
        TxStatus::Error
    ));
    assert_eq!(link.stats().tx_oversize, 1);
    peer.a.ip(&["link", "set", DEV_A, "mtu", "1500"]).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert!(matches!(d[0].start_xmit(frame(1450), false), TxStatus::Ok));
    let st = link.stats();
    assert_eq!((st.tx_frames, st.tx_oversize, st.tx_dropped), (2, 1, 0));
}
