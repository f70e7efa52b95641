//! tbf against the kernel's: the same `tc` line on a veth in a namespace
//! and on ipxmit's in-memory device on the virtual clock, the same twenty
//! 1000-byte datagrams sent back to back under `IP_RECVERR`, compared:
//! each send's result, how many arrive, the qdisc's counters, and the
//! departure times (the kernel's stamped on arrival at a receiving socket
//! in the peer namespace, `SO_TIMESTAMPNS`; its timers fire late by tens
//! of microseconds, never early: `common::assert_departures`, on gaps of 83 ms). Needs root; prints SKIPPED otherwise.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket as OsUdp};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use common::netns::{StampedRx, VethPeer, DEV_A};
use ipxmit::sched::QdiscSpec;
use ipxmit::time::{Clock, ManualClock};
use ipxmit::{MsgFlags, UdpSocket};
use ipxmit_drivers::mem::MemWire;

/// The shaper both sides get: slow enough (a 1042-byte frame takes 83 ms)
/// that a sender preempted for tens of milliseconds between its sends
/// still sees the same drops.
const TBF: &str = "tbf rate 100kbit burst 3000 limit 6000";
/// Datagrams sent, and their payload.
const SENDS: usize = 20;
const LEN: usize = 1000;

/// What a side did: each send's result (the errno, 0 for success), the
/// departure (or arrival) times from the first, and the qdisc's bytes,
/// packets and drops.
#[derive(Debug)]
struct Outcome {
    results: Vec<i32>,
    times_us: Vec<i64>,
    counters: (u64, u64, u64),
}

#[test]
fn tbf_paces_and_drops_as_the_kernel_does() {
    if common::skip("tbf_paces_and_drops_as_the_kernel_does") {
        return;
    }
    let ours = ipxmit_side();
    let kernel = common::kernel_in_bounds(
        &ours.times_us,
        |k: &Outcome| &k.times_us,
        || kernel_side().expect("the kernel side"),
    );
    assert_eq!(ours.results, kernel.results, "send results");
    assert_eq!(
        ours.counters, kernel.counters,
        "qdisc bytes, packets, drops"
    );
    assert_eq!(
        ours.times_us.len(),
        kernel.times_us.len(),
        "datagrams that arrived"
    );
    let worst = common::worst_gap(&ours.times_us, &kernel.times_us);
    common::report(&format!(
        "tbf vs kernel: {} sent, {} arrived, departure offsets ours {:?} us, kernel {:?} us, worst {} us",
        SENDS,
        ours.times_us.len(),
        ours.times_us,
        kernel.times_us,
        worst
    ));
    common::assert_departures(&ours.times_us, &kernel.times_us);
}

/// ipxmit on the virtual clock: the sends at time 0, then the queue run at
/// each watchdog time; a frame's time is the clock when it reached the wire.
fn ipxmit_side() -> Outcome {
    let clock = Arc::new(ManualClock::new());
    clock.set(ipxmit::time::Instant::from_nanos(1_000_000_000));
    let (stack, wire) = common::clocked_host(clock.clone(), |_| MemWire::new(1024));
    stack
        .replace_qdisc("eth0", &TBF.parse::<QdiscSpec>().unwrap())
        .unwrap();
    let mut s = UdpSocket::new(&stack);
    s.bind(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5000))
        .unwrap();
    s.set_recverr(true);
    let dst = SocketAddrV4::new(common::PEER, 9);
    let results = (0..SENDS)
        .map(
            |k| match s.send_to(&common::payload(LEN, k), dst, MsgFlags::NONE) {
                Ok(_) => 0,
                Err(e) => e.errno().code(),
            },
        )
        .collect();
    let mut times = Vec::new();
    loop {
        let now = clock.now().as_nanos();
        wire.drain(|_| times.push(now));
        match stack.next_wakeup() {
            Some(t) if times.len() < SENDS => {
                clock.set(t);
                stack.poll();
            }
            _ => break,
        }
    }
    let s0 = times.first().copied().unwrap_or(0);
    let st = stack.device("eth0").unwrap().queues()[0].with_qdisc(|q| *q.stats());
    Outcome {
        results,
        times_us: times.iter().map(|t| ((t - s0) / 1000) as i64).collect(),
        counters: (st.bytes, st.packets, st.drops),
    }
}

/// The kernel: a veth from namespace A (10.10.0.1, the shaper on its end)
/// to B (10.10.0.2, a receiving socket timing arrivals).
fn kernel_side() -> std::io::Result<Outcome> {
    let v = VethPeer::with_static_peer("tbfk")?;
    let mut tc = vec!["-n", v.a.name(), "qdisc", "add", "dev", DEV_A, "root"];
    tc.extend(TBF.split(' '));
    common::run_cmd("tc", &tc)?;
    let rx = StampedRx::bind(&v.b, "10.10.0.2:9", Duration::from_millis(300))?;
    let (times, results) = std::thread::scope(|sc| {
        let h = sc.spawn(|| rx.recv_all(LEN));
        let results = v.a.run(send_twenty);
        (h.join().expect("receiver"), results)
    });
    let results = results??;
    let counters = kernel_counters(v.a.name())?;
    let t0 = times.first().map_or(0, |t| t.1);
    let times_us = times.iter().map(|t| (t.1 - t0) / 1000).collect();
    Ok(Outcome {
        results,
        times_us,
        counters,
    })
}

/// Inside namespace A: a UDP socket with `IP_RECVERR` sends the twenty.
fn send_twenty() -> std::io::Result<Vec<i32>> {
    let s = OsUdp::bind("10.10.0.1:5000")?;
    let one: libc::c_int = 1;
    // SAFETY: `one` is a live int; the kernel copies it.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_RECVERR,
            (&one as *const libc::c_int).cast(),
            4,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((0..SENDS)
        .map(
            |k| match s.send_to(&common::payload(LEN, k), "10.10.0.2:9") {
                Ok(_) => 0,
                Err(e) => e.raw_os_error().unwrap_or(-1),
            },
        )
        .collect())
}

/// The tbf's bytes, packets and drops, from `tc -s qdisc show`'s
/// ` Sent B bytes P pkt (dropped D, ...` line.
fn kernel_counters(ns: &str) -> std::io::Result<(u64, u64, u64)> {
    let out = common::run_cmd("tc", &["-n", ns, "-s", "qdisc", "show", "dev", DEV_A])?;
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("Sent "))
        .unwrap_or("");
    let w: Vec<&str> = line.split_whitespace().collect();
    let n = |i: usize| {
        w.get(i)
            .map(|x| x.trim_end_matches(','))
            .and_then(|x| x.parse().ok())
            .unwrap_or(u64::MAX)
    };
    // Sent <bytes> bytes <pkts> pkt (dropped <drops>, ...
    Ok((n(1), n(3), n(6)))
}
