//! Roots on a device with two transmit queues against the kernel's, on a
//! veth of two queues in a namespace (`numtxqueues 2`) and on ipxmit's
//! in-memory device of two queues on the virtual clock, two flows that
//! leave on different queues sending 1000-byte datagrams in turn:
//!
//! - a `tbf` root: one qdisc shared by both queues (`dev_graft_qdisc()`
//!   on every queue), so the flows share its rate and its limit;
//! - an `mq` root with a `tbf` of its own on each queue (100 and 300
//!   kbit), so each flow gets its queue's rate.
//!
//! Compared: the order in which the flows leave, the departure times (the
//! kernel's stamped on arrival in the peer namespace, `SO_TIMESTAMPNS`;
//! its timers fire late, never early: `common::assert_departures`, on gaps of 28 ms or
//! more), and each tbf's bytes, packets and drops. The kernel picks a
//! flow's queue by its hash (random per boot or socket); its sockets are
//! probed with a 1-byte datagram (counted by the `mq` child of that
//! queue) and kept when on the queue wanted. Needs root; prints SKIPPED
//! otherwise.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket as OsUdp};
use std::sync::Arc;
use std::time::Duration;

use common::netns::{StampedRx, VethPeer, DEV_A};
use ipxmit::sched::{QdiscOp, QdiscSpec};
use ipxmit::time::ManualClock;
use ipxmit::{MsgFlags, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;

/// Datagrams per flow, and their payload.
const SENDS: usize = 12;
const LEN: usize = 1000;
/// The shared root.
const SHARED: &str = "tbf rate 200kbit burst 3000 limit 12000";
/// The `mq` children: queue 1's and queue 2's.
const CHILDREN: [&str; 2] = [
    "tbf rate 100kbit burst 3000 limit 6000",
    "tbf rate 300kbit burst 3000 limit 6000",
];

/// What a side did: which flow left, in order, when (µs from the first),
/// and each tbf's bytes, packets, drops.
#[derive(Debug)]
struct Outcome {
    order: String,
    times_us: Vec<i64>,
    counters: Vec<(u64, u64, u64)>,
}

#[test]
fn a_root_shared_by_two_queues_shapes_as_the_kernel_does() {
    compare(
        "a_root_shared_by_two_queues_shapes_as_the_kernel_does",
        false,
    );
}

#[test]
fn mq_with_a_tbf_per_queue_shapes_as_the_kernel_does() {
    compare("mq_with_a_tbf_per_queue_shapes_as_the_kernel_does", true);
}

/// Runs both sides, with `mq` or the shared root, and compares them.
fn compare(name: &str, mq: bool) {
    if common::skip(name) {
        return;
    }
    let ours = ipxmit_side(mq);
    let kernel = common::kernel_in_bounds(
        &ours.times_us,
        |k: &Outcome| &k.times_us,
        || kernel_side(mq).expect("the kernel side"),
    );
    common::report(&format!(
        "{name}: order ours {} kernel {}; times ours {:?} kernel {:?} us; tbf ours {:?} kernel {:?}",
        ours.order, kernel.order, ours.times_us, kernel.times_us, ours.counters, kernel.counters
    ));
    assert_eq!(ours.order, kernel.order, "the order the flows left in");
    assert_eq!(ours.counters, kernel.counters, "bytes, packets, drops");
    common::assert_departures(&ours.times_us, &kernel.times_us);
}

/// The ipxmit host: two queues on a wire of the clock.
fn host(clock: &Arc<ManualClock>, mq: bool) -> (Arc<Stack>, Arc<MemWire>) {
    let stack = Stack::with_clock(clock.clone());
    let wire = MemWire::new(1024);
    stack.add_device(common::eth0(), wire.drivers(2)).unwrap();
    stack
        .add_addr("eth0", "10.0.0.1/24".parse().unwrap())
        .unwrap();
    let mac = ipxmit::wire::EthernetAddress([2, 0, 0, 0, 0, 2]);
    stack
        .add_neigh(
            "eth0",
            common::PEER,
            mac,
            ipxmit::neigh::NudState::Permanent,
        )
        .unwrap();
    let add = QdiscOp::Add;
    if !mq {
        let spec: QdiscSpec = SHARED.parse().unwrap();
        stack
            .qdisc_modify("eth0", add, Some(1 << 16), &spec)
            .unwrap();
        return (stack, wire);
    }
    stack
        .qdisc_modify("eth0", add, Some(1 << 16), &QdiscSpec::Mq)
        .unwrap();
    for (i, c) in CHILDREN.iter().enumerate() {
        let (parent, h) = (1 << 16 | (i as u32 + 1), ((i as u32 + 1) * 0x10) << 16);
        let spec: QdiscSpec = c.parse().unwrap();
        stack
            .qdisc_modify_at("eth0", parent, add, Some(h), &spec)
            .unwrap();
    }
    (stack, wire)
}

/// The queue (1 or 2) ipxmit sends a flow from source port `port` on.
fn ipxmit_queue(port: u16) -> u16 {
    let clock = Arc::new(ManualClock::new());
    let (stack, wire) = host(&clock, true);
    let mut s = UdpSocket::new(&stack);
    s.bind(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), port))
        .unwrap();
    s.send_to(&[0], SocketAddrV4::new(common::PEER, 9), MsgFlags::NONE)
        .unwrap();
    wire.pop().map_or(0, |f| f.meta.queue_mapping)
}

/// Source ports of two flows ipxmit sends on queues 1 and 2.
fn ipxmit_ports() -> [u16; 2] {
    let on = |q| (5001..5100).find(|&p| ipxmit_queue(p) == q).unwrap();
    [on(1), on(2)]
}

/// ipxmit on the virtual clock: the sends at time 0, then the queues run
/// at each watchdog time.
fn ipxmit_side(mq: bool) -> Outcome {
    let ports = ipxmit_ports();
    let clock = Arc::new(ManualClock::new());
    clock.set(ipxmit::time::Instant::from_nanos(1_000_000_000));
    let (stack, wire) = host(&clock, mq);
    let mut socks: Vec<UdpSocket> = ports
        .iter()
        .map(|&port| {
            let mut s = UdpSocket::new(&stack);
            s.bind(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), port))
                .unwrap();
            s
        })
        .collect();
    let flow_of = |port| if port == ports[0] { 'a' } else { 'b' };
    let (order, times_us) = common::run_flows(
        &clock,
        (&stack, &wire),
        &mut socks,
        (SENDS, LEN, usize::MAX),
        flow_of,
    );
    let dev = stack.device("eth0").unwrap();
    let counters = dev
        .trees()
        .iter()
        .map(|q| q.with_qdisc(|q| (q.stats().bytes, q.stats().packets, q.stats().drops)))
        .collect();
    Outcome {
        order,
        times_us,
        counters,
    }
}

/// `tc -n NS ARGS`, `D` in `args` standing for the device.
fn tc(ns: &str, args: &str) -> std::io::Result<String> {
    let mut a = vec!["-n", ns];
    a.extend(args.split(' ').map(|w| if w == "D" { DEV_A } else { w }));
    common::run_cmd("tc", &a)
}

/// Each tbf's bytes, packets and drops, from `tc -s qdisc show`: the
/// root's, or the children's in queue order (by their handles 10:, 20:).
fn kernel_counters(ns: &str) -> std::io::Result<Vec<(u64, u64, u64)>> {
    let out = tc(ns, "-s qdisc show dev D")?;
    let mut tbf = None;
    let mut v = Vec::new();
    for line in out.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.first().copied() {
            Some("qdisc") => tbf = (w.get(1) == Some(&"tbf")).then(|| w[2].to_owned()),
            Some("Sent") => {
                if let Some(h) = tbf.take() {
                    let n = |i: usize| w[i].trim_end_matches(',').parse().unwrap_or(u64::MAX);
                    v.push((h, (n(1), n(3), n(6))));
                }
            }
            _ => {}
        }
    }
    v.sort();
    Ok(v.into_iter().map(|x| x.1).collect())
}

/// Inside namespace A: a socket whose flow to 10.10.0.2:9 the kernel sends
/// on queue `want` (0 or 1), found by probing fresh sockets on fresh
/// ports; its port.
fn kernel_socket(v: &VethPeer, want: usize, from: u16) -> std::io::Result<(OsUdp, u16)> {
    let ns = v.a.name().to_owned();
    for port in from..from + 64 {
        let s = v.a.run(|| OsUdp::bind(("10.10.0.1", port)))??;
        let before = common::mq_child_packets(&ns, DEV_A, 2)?;
        s.send_to(&[0], "10.10.0.2:9")?;
        let after = common::mq_child_packets(&ns, DEV_A, 2)?;
        let on = (0..after.len()).find(|&i| after[i] > before.get(i).copied().unwrap_or(0));
        if on == Some(want) {
            return Ok((s, port));
        }
    }
    Err(std::io::Error::other(format!("no socket on queue {want}")))
}

/// The kernel: a veth of two queues from namespace A (10.10.0.1, the
/// qdiscs on its end) to B (10.10.0.2, a receiving socket stamping
/// arrivals).
fn kernel_side(mq: bool) -> std::io::Result<Outcome> {
    let v = VethPeer::with_static_peer_queues("mqk", 2)?;
    let ns = v.a.name().to_owned();
    tc(&ns, "qdisc replace dev D root handle 1: mq")?;
    let (sa, pa) = kernel_socket(&v, 0, 6001)?;
    let (sb, pb) = kernel_socket(&v, 1, pa + 1)?;
    if mq {
        for (i, c) in CHILDREN.iter().enumerate() {
            let n = i + 1;
            tc(
                &ns,
                &format!("qdisc replace dev D parent 1:{n} handle {n}0: {c}"),
            )?;
        }
    } else {
        // (A replace of `mq` 1: by a tbf of the same handle is refused:
        // "Invalid qdisc name: must match existing qdisc".)
        tc(&ns, "qdisc del dev D root")?;
        tc(&ns, &format!("qdisc add dev D root handle 1: {SHARED}"))?;
    }
    let rx = StampedRx::bind(&v.b, "10.10.0.2:9", Duration::from_millis(400))?;
    let (arrivals, sent) = std::thread::scope(|sc| {
        let h = sc.spawn(|| rx.recv_all(LEN));
        let sent = (0..SENDS).try_for_each(|k| {
            sa.send_to(&common::payload(LEN, k), "10.10.0.2:9")?;
            sb.send_to(&common::payload(LEN, k), "10.10.0.2:9")
                .map(|_| ())
        });
        (h.join().expect("receiver"), sent)
    });
    sent?;
    let t0 = arrivals.first().map_or(0, |a| a.1);
    Ok(Outcome {
        order: arrivals
            .iter()
            .map(|a| {
                if a.0 == pa {
                    'a'
                } else if a.0 == pb {
                    'b'
                } else {
                    '?'
                }
            })
            .collect(),
        times_us: arrivals.iter().map(|a| (a.1 - t0) / 1000).collect(),
        counters: kernel_counters(&ns)?,
    })
}
