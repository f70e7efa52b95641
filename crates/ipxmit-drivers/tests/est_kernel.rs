//! Rate estimators against the kernel's: a `tbf` of 1 Mbit with
//! `estimator 250ms 1sec`, kept busy for three seconds by 400 datagrams
//! of 1000 bytes sent at once, on a veth in a namespace and on ipxmit's
//! in-memory device on the virtual clock. The estimate after three
//! seconds is compared with the shaped rate both sides deliver (125,000
//! bytes a second of 1042-byte frames: 120 packets), which twelve samples
//! of weight 1/4 from zero reach to 96.8%: the kernel's timer starts at an
//! arbitrary phase of the traffic, so the two sides agree to 3%, not to
//! the byte (the arithmetic itself is tested on a manual clock in
//! `sched::est`; the text and JSON shapes in `ipxmit-cli`'s `tc_lines`).
//! Needs root; prints SKIPPED otherwise.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket as OsUdp};
use std::sync::Arc;
use std::time::Duration;

use common::netns::{VethPeer, DEV_A};
use ipxmit::sched::est::{EstTarget, EstimatorSpec};
use ipxmit::sched::{QdiscOp, QdiscSpec};
use ipxmit::time::{Clock, ManualClock};
use ipxmit::{MsgFlags, UdpSocket};
use ipxmit_drivers::mem::MemWire;

const TBF: &str = "tbf rate 1mbit burst 3000 limit 600000";
const SENDS: usize = 400;
const LEN: usize = 1000;
/// The shaped rate: bytes and packets (of 1042 bytes) a second.
const BPS: f64 = 125_000.0;
const PPS: f64 = BPS / 1042.0;

#[test]
fn a_rate_estimator_reads_the_shaped_rate_as_the_kernels_does() {
    let name = "a_rate_estimator_reads_the_shaped_rate_as_the_kernels_does";
    if common::skip(name) {
        return;
    }
    let ours = ipxmit_side();
    let kernel = kernel_side().expect("the kernel side");
    common::report(&format!(
        "{name}: bytes/s, pkts/s ours {ours:?} kernel {kernel:?}"
    ));
    for (side, (bps, pps)) in [("ours", ours), ("kernel", kernel)] {
        // Twelve samples of weight 1/4 from zero: 1 - (3/4)^12 = 96.8%.
        assert!(
            (0.93 * BPS..=BPS).contains(&(bps as f64)),
            "{side}: {bps} B/s"
        );
        assert!(
            (0.93 * PPS - 1.0..=PPS).contains(&(pps as f64)),
            "{side}: {pps} pkt/s"
        );
    }
    let (a, b) = (ours.0 as f64, kernel.0 as f64);
    assert!((a - b).abs() < 0.03 * BPS, "ours {a} B/s, the kernel's {b}");
}

/// ipxmit: the datagrams at time 0, the queue run at each watchdog time
/// until three seconds have passed; the estimate then.
fn ipxmit_side() -> (u64, u64) {
    let clock = Arc::new(ManualClock::new());
    clock.set(ipxmit::time::Instant::from_nanos(1_000_000_000));
    let (stack, wire) = common::clocked_host(clock.clone(), |_| MemWire::new(4096));
    let spec: QdiscSpec = TBF.parse().unwrap();
    stack
        .qdisc_modify("eth0", QdiscOp::Add, Some(2 << 16), &spec)
        .unwrap();
    let est = EstimatorSpec::parse(Some("250ms"), Some("1sec")).unwrap();
    stack
        .set_estimator("eth0", EstTarget::Qdisc(2 << 16), Some(est))
        .unwrap();
    let mut s = UdpSocket::new(&stack);
    s.bind(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5000))
        .unwrap();
    let end = clock.now().as_nanos() + 3_000_000_000;
    let dst = SocketAddrV4::new(common::PEER, 9);
    let mut k = 0;
    // As the kernel's sender: blocked while its buffer is full, sending
    // again when the shaper has freed some.
    loop {
        while k < SENDS
            && s.send_to(&common::payload(LEN, k), dst, MsgFlags::DONTWAIT)
                .is_ok()
        {
            k += 1;
        }
        let Some(t) = stack.next_wakeup().filter(|t| t.as_nanos() <= end) else {
            break;
        };
        clock.set(t.max(clock.now()));
        stack.poll();
        wire.drain(|_| {});
    }
    clock.set(ipxmit::time::Instant::from_nanos(end));
    let dev = stack.device("eth0").unwrap();
    let r = stack.rate_estimates(&dev);
    r.iter()
        .find(|(t, _)| *t == EstTarget::Qdisc(2 << 16))
        .unwrap()
        .1
}

/// The kernel: the same on a veth's A end, a sender thread blocking as
/// its buffer fills; `tc -s -j` three seconds after the first send.
fn kernel_side() -> std::io::Result<(u64, u64)> {
    let v = VethPeer::with_static_peer("estk")?;
    let ns = v.a.name().to_owned();
    let mut tc = vec![
        "-n", &ns, "qdisc", "add", "dev", DEV_A, "root", "handle", "2:",
    ];
    tc.extend(["estimator", "250ms", "1sec"]);
    tc.extend(TBF.split(' '));
    common::run_cmd("tc", &tc)?;
    let s = v.a.run(|| OsUdp::bind("10.10.0.1:5000"))??;
    let sender = std::thread::spawn(move || {
        for k in 0..SENDS {
            let _ = s.send_to(&common::payload(LEN, k), "10.10.0.2:9");
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    let out = common::run_cmd(
        "tc",
        &["-n", &ns, "-s", "-j", "qdisc", "show", "dev", DEV_A],
    )?;
    let _ = sender.join();
    // After the counters: `"options"` has a `"rate"` of its own.
    let stats = out.split("\"requeues\"").nth(1).unwrap_or("");
    Ok((json_u64(stats, "rate"), json_u64(stats, "pps")))
}

/// The number after `"key":` in tc's one-line JSON (0 when absent).
fn json_u64(json: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\":");
    json.find(&pat)
        .map(|i| &json[i + pat.len()..])
        .and_then(|r| r.split([',', '}']).next()?.parse().ok())
        .unwrap_or(0)
}
