//! The AF_PACKET driver against a real kernel: our stack sends on the `A` end
//! of a veth pair (namespace `A`), a kernel UDP socket on the `B` end
//! (namespace `B`, 10.10.0.2) must receive every datagram byte for byte. Also:
//! batching from the `more` hint (fewer `sendmmsg` calls than frames), the TX
//! ring (its byte queue limits: `packet_bql.rs`), back-pressure from a tiny send buffer behind a slow kernel qdisc, the
//! receive side, and the error messages.
//!
//! Each test needs root and network namespaces; without them it prints
//! `SKIPPED (needs root and network namespaces): <test>` and returns.

mod common;

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::netns::{Receiver, VethPeer, DEV_A, VETH_PEER};
use common::veth::{
    check_arp_both_ways, numbered, packet_stack, send_all, slow_qdisc, socket, veth_receiver,
    veth_stack, without_net_raw, VethHost, QUIET,
};
use common::{assert_same, payload, payloads, report, skip};
use ipxmit::dev::{TxQueueCtl, TxStatus};
use ipxmit::stats::DevCounter;
use ipxmit::{MsgFlags, PacketBuf};
use ipxmit_drivers::packet::{PacketConfig, PacketError, PacketLink, PacketMode, PacketRx};
use ipxmit_drivers::runner::Runner;

const SIZES: [usize; 6] = [0, 1, 1472, 1473, 8000, 65507];
const RING: PacketMode = PacketMode::TxRing {
    frames: 64,
    frame_size: 2048,
};

/// A stack on `link` over `peer`'s A end ([`VethHost`]).
fn host(peer: &VethPeer, link: &PacketLink) -> VethHost {
    let (stack, dev) = packet_stack(peer, link);
    let runner = Runner::spawn(stack.clone());
    VethHost { runner, stack, dev }
}

/// Every size through `mode`; returns the link's counters.
fn sizes_through(tag: &str, mode: PacketMode, port: u16) {
    let (peer, rx) = veth_receiver(tag, port, 16 << 20);
    let mut cfg = PacketConfig::new(DEV_A);
    cfg.mode = mode;
    let link = peer.open(&cfg).unwrap();
    assert_eq!(
        (link.hw_addr(), link.mtu()),
        (peer.mac_a, 1500),
        "read from the interface"
    );
    let h = host(&peer, &link);
    let sent = payloads(&SIZES);
    send_all(&h.stack, port, &sent);
    assert_same(&rx.recv_n(sent.len(), QUIET), &sent);
    let st = link.stats();
    assert_eq!(st.tx_frames, 56, "1 + 1 + 1 + 2 + 6 + 45 frames: {st:?}");
    assert_eq!((st.tx_errors, st.tx_busy), (0, 0));
    // The last frames may have gone out from a run on the runner's thread
    // (the ring's byte queue limits stopped the queue and a completion woke
    // it), which counts them when its batch ends.
    let t = Instant::now();
    while h.dev.stats.get(DevCounter::TxPackets) < 56 && t.elapsed() < QUIET {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(h.dev.stats.get(DevCounter::TxPackets), 56);
}

#[test]
fn packet_datagrams_of_every_size_reach_the_kernel_intact() {
    if skip("packet_datagrams_of_every_size_reach_the_kernel_intact") {
        return;
    }
    sizes_through("pkt", PacketMode::Sendmmsg, 6000);
}

#[test]
fn packet_tx_ring_datagrams_of_every_size_reach_the_kernel_intact() {
    if skip("packet_tx_ring_datagrams_of_every_size_reach_the_kernel_intact") {
        return;
    }
    sizes_through("ring", RING, 6001);
}

/// A UDP GSO send the device cannot offload is segmented in software into 64
/// frames handed to the driver with `more` set on all but the last. The
/// first send warms the TX ring's byte queue limits up (the limit starts at
/// 0, so a cold queue stops, rings the doorbell early and grows the limit
/// from each completion); the second must go in at most two system calls.
fn batch_through(tag: &str, mode: PacketMode, port: u16) {
    let (peer, rx) = veth_receiver(tag, port, 16 << 20);
    let mut cfg = PacketConfig::new(DEV_A);
    cfg.mode = mode;
    let link = peer.open(&cfg).unwrap();
    let h = host(&peer, &link);
    let mut s = socket(&h.stack, 5002);
    s.set_gso_size(1000).unwrap();
    let big = payload(64 * 1000, 5);
    let mut calls = 0;
    for _ in 0..2 {
        let before = link.stats().tx_syscalls;
        s.send_to(&big, SocketAddrV4::new(VETH_PEER, port), MsgFlags::NONE)
            .unwrap();
        let got = rx.recv_n(64, QUIET);
        assert_eq!(got.len(), 64);
        assert_eq!(got.concat(), big, "segments in order");
        calls = link.stats().tx_syscalls - before;
    }
    let st = link.stats();
    assert_eq!(st.tx_frames, 128);
    assert!(calls <= 2, "64 frames in {calls} system calls");
}

#[test]
fn packet_more_hint_batches_frames_into_one_sendmmsg() {
    if skip("packet_more_hint_batches_frames_into_one_sendmmsg") {
        return;
    }
    batch_through("batch", PacketMode::Sendmmsg, 6002);
}

#[test]
fn packet_tx_ring_more_hint_batches_frames_into_one_send() {
    if skip("packet_tx_ring_more_hint_batches_frames_into_one_send") {
        return;
    }
    batch_through("rbatch", RING, 6003);
}

/// A slow kernel qdisc (tbf, no bypass) behind a minimal send buffer or a
/// small ring: writes find no room, the queue stops and is woken on
/// completion, and every datagram still arrives, in order.
fn back_pressure(tag: &str, mode: PacketMode, port: u16, fragmented: bool) {
    let (peer, rx) = veth_receiver(tag, port, 64 << 20);
    slow_qdisc(&peer);
    let mut cfg = PacketConfig::new(DEV_A);
    cfg.mode = mode;
    cfg.qdisc_bypass = false;
    cfg.sndbuf = Some(1);
    let link = peer.open(&cfg).unwrap();
    let h = host(&peer, &link);
    let sent = numbered(fragmented);
    send_all(&h.stack, port, &sent);
    assert_same(&rx.recv_n(sent.len(), QUIET), &sent);
    let st = link.stats();
    assert!(st.tx_busy > 0, "the socket ran out of room: {st:?}");
    assert_eq!(st.tx_errors, 0);
    assert_eq!(
        h.stack.counters().dropped_total(),
        0,
        "nothing dropped in the stack"
    );
    report(&format!("{tag}: {st:?} {:?}", h.runner.stats()));
}

#[test]
fn packet_back_pressure_loses_nothing() {
    if skip("packet_back_pressure_loses_nothing") {
        return;
    }
    back_pressure("bp", PacketMode::Sendmmsg, 6004, true);
}

#[test]
fn packet_tx_ring_back_pressure_loses_nothing() {
    if skip("packet_tx_ring_back_pressure_loses_nothing") {
        return;
    }
    let small = PacketMode::TxRing {
        frames: 4,
        frame_size: 2048,
    };
    // Unfragmented datagrams only: the kernel maps a TX ring slot's data
    // into its skb and hands the slot back when a veth forwards the skb
    // (orphaned into the peer namespace), while IP fragments still wait in
    // the peer's reassembly queue on those pages; a 4-slot ring reuses a
    // slot soon enough to rewrite them (seen twice in some hundred runs as
    // a corrupted 8000 or 65507-byte datagram). A property of the kernel's
    // ring on veth, documented in the driver; sendmmsg copies.
    back_pressure("rbp", small, 6005, false);
}

#[test]
fn packet_receive_side_ignores_our_own_frames() {
    if skip("packet_receive_side_ignores_our_own_frames") {
        return;
    }
    let peer = VethPeer::new("prx").unwrap();
    let mut cfg = PacketConfig::new(DEV_A);
    cfg.rx = PacketRx::All;
    cfg.qdisc_bypass = false; // our frames pass the kernel's taps
    let link = peer.open(&cfg).unwrap();
    let h = host(&peer, &link);
    // A listener, so B's kernel answers nothing (no ICMP port unreachable).
    let sink = Receiver::bind(&peer.b, SocketAddrV4::new(VETH_PEER, 9), 1 << 20).unwrap();
    send_all(&h.stack, 9, &[payload(100, 0), payload(2000, 1)]);
    assert_eq!(sink.recv_n(2, QUIET).len(), 2);
    let s = peer
        .b
        .run(|| std::net::UdpSocket::bind("10.10.0.2:0"))
        .unwrap()
        .unwrap();
    for _ in 0..3 {
        s.send_to(b"hello", "10.10.0.1:7").unwrap();
    }
    let t = Instant::now();
    while h.dev.stats.get(DevCounter::RxPackets) < 3 && t.elapsed() < QUIET {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    let st = link.stats();
    assert_eq!(
        h.dev.stats.get(DevCounter::TxPackets),
        3,
        "we sent 3 frames"
    );
    assert_eq!(
        h.dev.stats.get(DevCounter::RxPackets),
        3,
        "only B's 3 frames came back up"
    );
    assert_eq!(st.rx_frames, 3, "{st:?}");
}

#[test]
fn packet_open_errors_name_the_problem() {
    if skip("packet_open_errors_name_the_problem") {
        if !rustix::process::geteuid().is_root() {
            let e = PacketLink::open(&PacketConfig::new("lo")).unwrap_err();
            assert_eq!(e.to_string(), "AF_PACKET needs CAP_NET_RAW");
        }
        return;
    }
    let ns = ipxmit_drivers::netns::Netns::unique("perr").unwrap();
    let e = ns
        .run(|| PacketLink::open(&PacketConfig::new("ipxnosuch0")))
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, PacketError::NoSuchInterface(_)), "{e:?}");
    assert_eq!(e.to_string(), "no such interface ipxnosuch0");
    // The same thread without CAP_NET_RAW in its effective set.
    let e = ns
        .run(|| without_net_raw(|| PacketLink::open(&PacketConfig::new("lo"))))
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, PacketError::NeedsCapNetRaw), "{e:?}");
    assert_eq!(e.to_string(), "AF_PACKET needs CAP_NET_RAW");
}

/// No static entries on either side: our stack resolves the kernel over ARP
/// through the AF_PACKET receive side, and answers the kernel's request for us.
#[test]
fn packet_resolves_over_arp_both_ways() {
    if skip("packet_resolves_over_arp_both_ways") {
        return;
    }
    let (peer, rx) = veth_receiver("pktarp", 6020, 16 << 20);
    peer.b
        .ip(&["neigh", "del", "10.10.0.1", "dev", "xb0"])
        .unwrap();
    let mut cfg = PacketConfig::new(DEV_A);
    cfg.rx = PacketRx::Arp;
    let link = peer.open(&cfg).unwrap();
    let (stack, dev) = veth_stack(&peer, link.dev_config("eth0"), link.drivers(), true);
    let _runner = Runner::spawn(stack.clone());
    check_arp_both_ways(&peer, (&stack, &dev), &rx, 6020, &payloads(&SIZES));
}

/// A link's drivers handed to a second stack (`drivers()` again, as the
/// conservation test does for each case) serve that stack's queue: a
/// frame is reported to its byte queue limits, and a stop of it is woken
/// by the link's transmit completion. Kept for the first stack's queue,
/// the driver woke a queue nobody ran and the new one's frames stayed
/// queued ("the link stopped draining").
#[test]
fn packet_drivers_attached_again_serve_the_new_stacks_queue() {
    if skip("packet_drivers_attached_again_serve_the_new_stacks_queue") {
        return;
    }
    let peer = VethPeer::new("reat").unwrap();
    let mut cfg = PacketConfig::new(DEV_A);
    cfg.mode = PacketMode::TxRing {
        frames: 2,
        frame_size: 0,
    };
    let link = peer.open(&cfg).unwrap();
    let (old, new) = (
        Arc::new(TxQueueCtl::default()),
        Arc::new(TxQueueCtl::default()),
    );
    let mut first = link.drivers();
    first[0].attach(old.clone());
    let mut second = link.drivers();
    second[0].attach(new.clone());
    let frame = PacketBuf::from_slice(32, &[0x45; 60]);
    assert!(matches!(second[0].start_xmit(frame, false), TxStatus::Ok));
    assert!(new.bql().is_some(), "the frame is the new queue's");
    assert!(old.bql().is_none(), "and none of the old queue's");
    new.stop();
    old.stop();
    link.wait_source().complete_tx();
    assert!(!new.is_stopped(), "the completion wakes the new queue");
    assert!(old.is_stopped(), "the old queue is no longer the link's");
}

/// A frame over the interface's MTU (as a stack whose device MTU was
/// raised above the link's sends) is refused by the driver and counted
/// (`EMSGSIZE`, as `tpacket_snd` refuses it), and so is one shorter than an
/// Ethernet header (`EINVAL`, `dev_validate_header`); and a ring slot the
/// kernel refuses all the same (the interface's MTU lowered after the link
/// was opened) holds up no later slot: the kernel skips it
/// (`PACKET_LOSS`). Left `TP_STATUS_WRONG_FORMAT`, the kernel's head stayed
/// on it, the next frame stopped the queue and no completion woke it (the
/// conservation test's "link stopped draining"). The skipped slot is
/// counted (`tx_skipped`, from `send`'s byte count), the MTU read again,
/// and the next frame over it refused by the driver.
#[test]
fn packet_tx_ring_frame_the_kernel_refuses_holds_nothing_up() {
    if skip("packet_tx_ring_frame_the_kernel_refuses_holds_nothing_up") {
        return;
    }
    let peer = VethPeer::new("wfmt").unwrap();
    let mut cfg = PacketConfig::new(DEV_A);
    cfg.mode = PacketMode::TxRing {
        frames: 2,
        frame_size: 0,
    };
    let link = peer.open(&cfg).unwrap();
    let ctl = Arc::new(TxQueueCtl::default());
    let mut d = link.drivers();
    d[0].attach(ctl.clone());
    let frame = |len: usize| {
        let mut f = vec![0x45u8; len];
        let head = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 8, 0];
        let n = len.min(14);
        f[..n].copy_from_slice(&head[..n]);
        PacketBuf::from_slice(32, &f)
    };
    // 1516 bytes: fits a slot sized for MTU 1500, over the veth's MTU.
    assert!(matches!(
        d[0].start_xmit(frame(1516), false),
        TxStatus::Error
    ));
    assert!(matches!(d[0].start_xmit(frame(13), false), TxStatus::Error));
    let st = link.stats();
    assert_eq!((st.tx_oversize, st.tx_runt, st.tx_errors), (1, 1, 2));
    // The MTU lowered under the open link: the kernel refuses the slot.
    peer.a.ip(&["link", "set", DEV_A, "mtu", "1400"]).unwrap();
    assert!(matches!(d[0].start_xmit(frame(1450), false), TxStatus::Ok));
    let st = link.stats();
    assert_eq!((st.tx_skipped, st.tx_errors), (1, 3), "skipped, counted");
    assert_eq!((st.tx_frames, st.last_errno), (0, libc::EMSGSIZE));
    assert!(matches!(
        d[0].start_xmit(frame(1450), false),
        TxStatus::Error
    ));
    assert_eq!(link.stats().tx_oversize, 2, "the MTU read again");
    let done = |ctl: &TxQueueCtl| {
        for _ in 0..100 {
            link.wait_source().complete_tx();
            if !ctl.is_stopped() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    done(&ctl);
    assert!(!ctl.is_stopped(), "the refused frame's slot came back");
    assert!(matches!(d[0].start_xmit(frame(60), false), TxStatus::Ok));
    done(&ctl);
    assert!(
        !ctl.is_stopped(),
        "the next frame left: state {}",
        ctl.state()
    );
    // One `send` of a slot skipped and a slot sent: it returns 60 bytes of
    // the 1410 it took.
    peer.a.ip(&["link", "set", DEV_A, "mtu", "1300"]).unwrap();
    assert!(matches!(d[0].start_xmit(frame(1350), true), TxStatus::Ok));
    assert!(matches!(d[0].start_xmit(frame(60), false), TxStatus::Ok));
    let st = link.stats();
    assert_eq!((st.tx_skipped, st.tx_errors), (2, 5), "{st:?}");
    assert_eq!((st.tx_frames, st.tx_bytes), (2, 120), "{st:?}");
    done(&ctl);
    assert!(!ctl.is_stopped());
}

/// The interface's MTU lowered under an open ring link, which the driver
/// cannot see: of a train of eight 1462-byte frames (a UDP GSO send), the
/// slots filled before the first doorbell (when byte queue limits stop
/// the queue) are skipped by `tpacket_snd` (`PACKET_LOSS`), which sends
/// nothing of them and returns 0 bytes. The driver counts them
/// (`tx_skipped`), never as sent, reads the MTU again and refuses the rest
/// and the next such frame itself (`tx_oversize`): nine errors, none
/// lost uncounted; the datagrams around them arrive. The veth's peer
/// keeps MTU 1500: it is the sender's `tpacket_snd` that refuses.
#[test]
fn packet_tx_ring_slots_skipped_under_a_lowered_mtu_are_counted() {
    if skip("packet_tx_ring_slots_skipped_under_a_lowered_mtu_are_counted") {
        return;
    }
    let (peer, rx) = veth_receiver("skip", 6207, 16 << 20);
    let mut cfg = PacketConfig::new(DEV_A);
    cfg.mode = RING;
    let link = peer.open(&cfg).unwrap();
    let h = host(&peer, &link);
    let first = payloads(&[200, 1420]);
    send_all(&h.stack, 6207, &first);
    assert_same(&rx.recv_n(2, QUIET), &first);
    peer.a.ip(&["link", "set", DEV_A, "mtu", "1400"]).unwrap();
    let mut s = socket(&h.stack, 5007);
    s.set_gso_size(1420).unwrap();
    let to = SocketAddrV4::new(VETH_PEER, 6207);
    s.send_to(&payload(8 * 1420, 4), to, MsgFlags::NONE)
        .unwrap();
    let after = payloads(&[200, 1420, 300]);
    send_all(&h.stack, 6207, &after);
    let got = rx.recv_n(3, Duration::from_millis(500));
    assert_same(&got, &[after[0].clone(), after[2].clone()]);
    // A kick on the runner's thread accounts once its `send` returns,
    // which may be after the receiver has the datagrams.
    let t = Instant::now();
    while link.stats().tx_errors < 9 && t.elapsed() < QUIET {
        std::thread::sleep(Duration::from_millis(1));
    }
    let st = link.stats();
    assert!(st.tx_skipped > 0, "{st:?}");
    assert_eq!(st.tx_skipped + st.tx_oversize, 9, "{st:?}");
    assert_eq!((st.tx_errors, st.last_errno), (9, libc::EMSGSIZE));
    assert_eq!(st.tx_frames, 4, "only the frames sent: {st:?}");
    assert!(!h.dev.queues()[0].ctl().is_stopped(), "nothing stalls");
    // The stack counts the skipped slots as dropped, not sent, bytes too.
    h.assert_late_drops(st.tx_skipped, 4);
    assert_eq!(h.dev.stats.get(DevCounter::TxBytes), st.tx_bytes);
    report(&format!("packet-skip: {st:?}"));
}

/// A frame the device drops every time it is offered holds nothing up.
/// The veth's peer MTU lowered under the open link: the veth drops the
/// 1462-byte frame (`is_skb_forwardable`, `NET_XMIT_DROP`) and the kernel
/// hands it back (`ENOBUFS`: `tpacket_snd` puts its slot back,
/// `packet_snd` returns the error) to be offered again. It used to be
/// offered for ever — thousands of veth drops a second, the queue stopped,
/// the datagrams behind it never sent. Now after `packet::REFUSED_DROP` with
/// nothing sent it is dropped and counted (`tx_dropped`, not as sent), in
/// both modes, and the datagrams after it arrive, in order.
#[test]
fn packet_frame_the_device_keeps_refusing_is_dropped_and_counted() {
    if skip("packet_frame_the_device_keeps_refusing_is_dropped_and_counted") {
        return;
    }
    for (mode, port) in [(RING, 6208), (PacketMode::Sendmmsg, 6209)] {
        let (peer, rx) = veth_receiver("refuse", port, 16 << 20);
        let mut cfg = PacketConfig::new(DEV_A);
        cfg.mode = mode;
        let link = peer.open(&cfg).unwrap();
        let h = host(&peer, &link);
        peer.b.ip(&["link", "set", "xb0", "mtu", "1400"]).unwrap();
        let sent = payloads(&[200, 1420, 300, 400]);
        send_all(&h.stack, port, &sent);
        let want = [sent[0].clone(), sent[2].clone(), sent[3].clone()];
        assert_same(&rx.recv_n(3, QUIET), &want);
        // The runner counts a `sendmmsg` when it returns, which may be
        // after the receiver has the datagrams.
        let t = Instant::now();
        while link.stats().tx_frames < 3 && t.elapsed() < QUIET {
            std::thread::sleep(Duration::from_millis(1));
        }
        let st = link.stats();
        assert_eq!(
            (st.tx_dropped, st.last_errno),
            (1, libc::ENOBUFS),
            "{mode:?}: {st:?}"
        );
        assert_eq!(
            (st.tx_frames, st.tx_skipped, st.tx_errors),
            (3, 0, 0),
            "{st:?}"
        );
        assert!(!h.dev.queues()[0].ctl().is_stopped(), "{mode:?}");
        h.assert_late_drops(1, 3);
        let bytes = h.dev.stats.get(DevCounter::TxBytes);
        assert_eq!(bytes, st.tx_bytes, "{mode:?}");
        report(&format!("refuse {mode:?}: {st:?}"));
    }
}
