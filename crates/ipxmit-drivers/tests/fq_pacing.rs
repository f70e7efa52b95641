//! `fq` with a socket's pacing rate (`SO_MAX_PACING_RATE`) and departure
//! times (`SO_TXTIME` + `SCM_TXTIME`), end to end on the virtual clock:
//! `send_to` one by one and `send_batch` give the same frames at the same
//! times, and those are the times the kernel's algorithm gives (this
//! machine's kernel has no `fq`: the times are worked out from
//! `sch_fq.c`). Also the errors the kernel gives for `SCM_TXTIME` without
//! `SO_TXTIME` and for refused `SO_TXTIME` values.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use ipxmit::sched::QdiscOp;
use ipxmit::socket::{Cmsg, CLOCK_MONOTONIC, CLOCK_TAI, SOF_TXTIME_REPORT_ERRORS};
use ipxmit::time::{Clock, Instant, ManualClock};
use ipxmit::{BatchMsg, Errno, MsgFlags, RawSocket, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;

const MS: u64 = 1_000_000;
/// Where the virtual clock starts.
const T0: u64 = 1_000_000_000;

/// A host on a manual clock at [`T0`] with `fq ARGS` as eth0's root.
fn fq_host(args: &str) -> (Arc<Stack>, Arc<MemWire>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    clock.set(Instant::from_nanos(T0));
    let (stack, wire) = common::clocked_host(clock.clone(), |_| MemWire::new(1024));
    let spec = format!("fq {args}").parse().unwrap();
    stack
        .qdisc_modify("eth0", QdiscOp::Add, Some(1 << 16), &spec)
        .unwrap();
    (stack, wire, clock)
}

/// A UDP socket bound to 10.0.0.1:`port`.
fn socket(stack: &Arc<Stack>, port: u16) -> UdpSocket {
    let mut s = UdpSocket::new(stack);
    s.bind(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), port))
        .unwrap();
    s
}

/// Every frame's departure until the stack is idle, waking it at each
/// `next_wakeup`: (time since [`T0`], frame with its IP ID and header
/// checksum zeroed: each stack draws its own IDs).
fn run(stack: &Stack, wire: &MemWire, clock: &ManualClock) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let now = clock.now().as_nanos() - T0;
        wire.drain(|f| {
            let mut f = f.to_vec();
            f[18..20].fill(0);
            f[24..26].fill(0);
            out.push((now, f));
        });
        match stack.next_wakeup() {
            Some(t) => {
                clock.set(t);
                stack.poll();
            }
            None => return out,
        }
    }
}

/// The payload of message `k`: `len` bytes, its first byte `k`.
fn payload(len: usize, k: usize) -> Vec<u8> {
    let mut p = common::payload(len, k);
    p[0] = k as u8;
    p
}

const DEST: SocketAddrV4 = SocketAddrV4::new(common::PEER, 9);

/// 22 datagrams whose frames are 1000 bytes (958 of payload) from a
/// socket paced at 125000 bytes/s, one by one or in one batch.
fn paced(batch: bool) -> Vec<(u64, Vec<u8>)> {
    let (stack, wire, clock) = fq_host("");
    let mut s = socket(&stack, 4000);
    s.set_max_pacing_rate(125_000);
    assert_eq!((s.pacing_rate(), s.max_pacing_rate()), (125_000, 125_000));
    let data: Vec<Vec<u8>> = (0..22).map(|k| payload(958, k)).collect();
    if batch {
        let msgs: Vec<BatchMsg<'_>> = data.iter().map(|d| BatchMsg::new(d, Some(DEST))).collect();
        assert_eq!(s.send_batch(&msgs, MsgFlags::NONE).unwrap(), 22);
    } else {
        for d in &data {
            s.send_to(d, DEST, MsgFlags::NONE).unwrap();
        }
    }
    run(&stack, &wire, &clock)
}

#[test]
fn a_socket_pacing_rate_spaces_send_to_and_send_batch_alike() {
    let one = paced(false);
    let times = |d: &[(u64, Vec<u8>)]| d.iter().map(|d| d.0).collect::<Vec<_>>();
    let batch = paced(true);
    assert_eq!(times(&one), times(&batch));
    assert!(one == batch, "the same frames");
    assert!(one.iter().all(|(_, f)| f.len() == 1000));
    // fq's schedule (the kernel's `fq_dequeue`): fifteen frames on the
    // initial quantum (15140 bytes), the sixteenth overdraws it, then the
    // flow waits a quantum's time at the socket's rate, 3028 * 10^9 /
    // 125000 ns, for each quantum (three frames).
    let t1 = 24_224_000;
    let mut want = vec![0; 16];
    want.extend([t1; 3]);
    want.extend([2 * t1; 3]);
    assert_eq!(one.iter().map(|d| d.0).collect::<Vec<_>>(), want);
}

#[test]
fn without_a_pacing_rate_the_same_datagrams_leave_at_once() {
    let (stack, wire, clock) = fq_host("");
    let mut s = socket(&stack, 4000);
    for k in 0..22 {
        s.send_to(&payload(958, k), DEST, MsgFlags::NONE).unwrap();
    }
    assert!(run(&stack, &wire, &clock).iter().all(|d| d.0 == 0));
}

/// Message `k`'s departure time after [`T0`] and its length (the one of
/// 3000 bytes is fragmented). The last comes out of order.
const TIMED: [(u64, usize); 7] = [
    (0, 100),
    (5 * MS, 200),
    (10 * MS, 300),
    (10 * MS, 400),
    (20 * MS, 3000),
    (30 * MS, 500),
    (15 * MS, 600),
];

/// The [`TIMED`] datagrams, one by one or in one batch, from a socket with
/// `SO_TXTIME`; (time, first payload byte, frame length) of each frame.
fn timed(batch: bool) -> Vec<(u64, u8, usize)> {
    let (stack, wire, clock) = fq_host("");
    let mut s = socket(&stack, 4000);
    s.set_txtime(CLOCK_MONOTONIC, 0).unwrap();
    let data: Vec<Vec<u8>> = (0..TIMED.len()).map(|k| payload(TIMED[k].1, k)).collect();
    let at = |k: usize| Instant::from_nanos(T0 + TIMED[k].0);
    if batch {
        let msgs: Vec<BatchMsg<'_>> = (0..TIMED.len())
            .map(|k| BatchMsg::new(&data[k], Some(DEST)).at(at(k)))
            .collect();
        assert_eq!(s.send_batch(&msgs, MsgFlags::NONE).unwrap(), TIMED.len());
    } else {
        for (k, d) in data.iter().enumerate() {
            s.send_to_at(d, DEST, MsgFlags::NONE, at(k)).unwrap();
        }
    }
    let frames = run(&stack, &wire, &clock);
    frames.iter().map(|(t, f)| (*t, f[42], f.len())).collect()
}

#[test]
fn departure_times_hold_for_send_to_and_send_batch_alike() {
    let one = timed(false);
    assert_eq!(one, timed(true));
    // Each frame at its message's time, in time order (equal times in the
    // order sent; the late one from the flow's tree before the later
    // ones); the three fragments of message 4 all at its time (byte 42 of
    // the second and third is the payload's 1480th and 2960th).
    let frag = payload(3000, 4);
    assert_eq!(
        one,
        [
            (0, 0, 142),
            (5 * MS, 1, 242),
            (10 * MS, 2, 342),
            (10 * MS, 3, 442),
            (15 * MS, 6, 642),
            (20 * MS, 4, 1514),
            (20 * MS, frag[1480], 1514),
            (20 * MS, frag[2960], 82),
            (30 * MS, 5, 542),
        ]
    );
}

#[test]
fn an_earlier_time_waits_for_a_flow_already_waiting_later() {
    // The kernel's fq keeps a throttled flow's time: a packet sent after
    // with an earlier departure time leaves with the flow, not before
    // (sch_fq.c sets `f->time_next_packet` when it throttles the flow).
    let (stack, wire, clock) = fq_host("");
    let mut s = socket(&stack, 4000);
    s.set_txtime(CLOCK_MONOTONIC, 0).unwrap();
    for (k, t) in [(0, 30 * MS), (1, 10 * MS)] {
        let at = Instant::from_nanos(T0 + t);
        s.send_to_at(&payload(100, k), DEST, MsgFlags::NONE, at)
            .unwrap();
    }
    let got: Vec<(u64, u8)> = run(&stack, &wire, &clock)
        .iter()
        .map(|(t, f)| (*t, f[42]))
        .collect();
    assert_eq!(got, [(30 * MS, 1), (30 * MS, 0)]);
}

#[test]
fn beyond_fq_horizon_a_datagram_is_dropped() {
    let (stack, wire, clock) = fq_host("horizon 1s");
    let mut s = socket(&stack, 4000);
    s.set_txtime(CLOCK_MONOTONIC, 0).unwrap();
    let late = Instant::from_nanos(T0 + 1_000_000_001);
    // The qdisc's drop is no error of the send (`NET_XMIT_DROP`).
    s.send_to_at(&[1; 10], DEST, MsgFlags::NONE, late).unwrap();
    assert!(run(&stack, &wire, &clock).is_empty());
    let d = stack.device("eth0").unwrap();
    let (x, drops) = d.queues()[0].with_qdisc(|q| (q.xstats(clock.now()), q.stats().drops));
    let x = x.unwrap_or_default();
    assert!(x.contains("horizon_drops 1"), "{x}");
    assert_eq!(drops, 1);
}

#[test]
fn scm_txtime_without_so_txtime_is_einval() {
    let (stack, wire, clock) = fq_host("");
    let mut s = socket(&stack, 4000);
    let at = Instant::from_nanos(T0 + MS);
    let e = s
        .send_to_at(&[1; 10], DEST, MsgFlags::NONE, at)
        .unwrap_err();
    assert_eq!(e.errno(), Errno::EINVAL);
    // In a batch: the first message's error is the call's; a later one
    // ends the call with the count so far.
    let d = [1u8; 10];
    let bad = BatchMsg::new(&d, Some(DEST)).at(at);
    let good = BatchMsg::new(&d, Some(DEST));
    let e = s.send_batch(&[bad, good], MsgFlags::NONE).unwrap_err();
    assert_eq!(e.errno(), Errno::EINVAL);
    assert_eq!(s.send_batch(&[good, bad, good], MsgFlags::NONE).unwrap(), 1);
    // A send adding to a pending datagram does not read its control
    // messages (the kernel jumps to the append).
    s.send_to(&d, DEST, MsgFlags::MORE).unwrap();
    s.sendmsg_cmsg(&d, Some(DEST), MsgFlags::NONE, &Cmsg::txtime(at))
        .unwrap();
    assert_eq!(run(&stack, &wire, &clock).len(), 2);
    let mut raw = RawSocket::new(&stack, 253);
    let e = raw
        .sendmsg_cmsg(&d, Some(common::PEER), MsgFlags::NONE, &Cmsg::txtime(at))
        .unwrap_err();
    assert_eq!(e.errno(), Errno::EINVAL);
}

#[test]
fn so_txtime_refuses_what_the_kernel_refuses() {
    let (stack, _wire, _clock) = fq_host("");
    let mut s = socket(&stack, 4000);
    assert_eq!(
        s.set_txtime(CLOCK_MONOTONIC, 4).unwrap_err().errno(),
        Errno::EINVAL
    );
    assert_eq!(s.set_txtime(2, 0).unwrap_err().errno(), Errno::EINVAL);
    assert!(s.opts().txtime.is_none());
    s.set_txtime(CLOCK_TAI, SOF_TXTIME_REPORT_ERRORS).unwrap();
    let t = s.opts().txtime.unwrap();
    assert_eq!(
        (t.clockid, t.deadline_mode, t.report_errors),
        (11, false, true)
    );
}

#[test]
fn a_timed_socket_beside_a_paced_one() {
    // The timed socket is connected: its flow is its own (keyed by the
    // socket). Two unconnected sockets to one destination share a flow
    // here: fq keys them by `hash & orphan_mask`, and the UDP flow hash's
    // low bits do not depend on the source port.
    let (stack, wire, clock) = fq_host("");
    let mut s1 = socket(&stack, 5001);
    s1.set_max_pacing_rate(30_000);
    for k in 0..3 {
        s1.send_to(&payload(958, k), DEST, MsgFlags::NONE).unwrap();
    }
    let mut s2 = socket(&stack, 5002);
    s2.connect(DEST).unwrap();
    s2.set_txtime(CLOCK_MONOTONIC, 0).unwrap();
    let at = Cmsg::txtime(Instant::from_nanos(T0 + 5 * MS));
    s2.sendmsg_cmsg(&payload(10, 9), None, MsgFlags::NONE, &at)
        .unwrap();
    let got: Vec<(u64, u8)> = run(&stack, &wire, &clock)
        .iter()
        .map(|(t, f)| (*t, f[35]))
        .collect();
    assert_eq!(
        got,
        [
            (0, 0x89),
            (5 * MS, 0x8a),
            (33_333_333, 0x89),
            (66_666_666, 0x89)
        ]
    );
}
