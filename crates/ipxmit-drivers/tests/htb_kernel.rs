//! htb against the kernel's: the same `tc` lines on a veth in a namespace
//! and on ipxmit's in-memory device on the virtual clock; two sockets
//! whose `SO_PRIORITY` names two leaves (prio 0 and prio 1, each 50 kbit
//! of a 200 kbit parent) send twelve 1000-byte datagrams each,
//! alternating; then the same with `u32` filters on the source port
//! choosing the leaves instead (on the root, and on the inner class 1:1
//! reached by a root filter or by the priority); then with `pfifo_fast` and a 3000-byte
//! `bfifo` grafted on the leaves (the bfifo drops most of its flow). Compared: the order in which the two flows leave, the
//! departure times (the kernel's stamped on arrival at a receiving socket
//! in the peer namespace, `SO_TIMESTAMPNS`; its timers fire tens of
//! microseconds late on a quiet machine, milliseconds on a loaded one: never
//! more than 200 µs early, at most 10 ms late, `common::assert_departures`
//! (a kernel run later than that is measured again, `common::kernel_in_bounds`),
//! on gaps of 42 ms), and the qdisc's and each class's packets, lends and
//! borrows. Needs root; prints SKIPPED otherwise.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket as OsUdp};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use common::netns::{StampedRx, VethPeer, DEV_A};
use ipxmit::sched::QdiscOp;
use ipxmit::time::ManualClock;
use ipxmit::{Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;

/// The tree both sides get (after `tc ... dev D`).
const TREE: &[&str] = &[
    "qdisc add dev D root handle 1: htb default 20",
    "class add dev D parent 1: classid 1:1 htb rate 200kbit burst 2000 cburst 2000",
    "class add dev D parent 1:1 classid 1:10 htb rate 50kbit ceil 200kbit burst 2000 cburst 2000 prio 0 quantum 1500",
    "class add dev D parent 1:1 classid 1:20 htb rate 50kbit ceil 200kbit burst 2000 cburst 2000 prio 1 quantum 1500",
];
/// The same tree with u32 filters picking the leaves by source port.
const TREE_U32: &[&str] = &[
    "qdisc add dev D root handle 1: htb default 20",
    "class add dev D parent 1: classid 1:1 htb rate 200kbit burst 2000 cburst 2000",
    "class add dev D parent 1:1 classid 1:10 htb rate 50kbit ceil 200kbit burst 2000 cburst 2000 prio 0 quantum 1500",
    "class add dev D parent 1:1 classid 1:20 htb rate 50kbit ceil 200kbit burst 2000 cburst 2000 prio 1 quantum 1500",
    "filter add dev D parent 1: protocol ip prio 1 u32 match ip sport 5001 0xffff flowid 1:10",
    "filter add dev D parent 1: protocol ip prio 2 u32 match ip protocol 17 0xff match ip sport 5002 0xffff flowid 1:20",
];
/// The same tree with filters on the inner class 1:1 choosing the
/// leaves by source port; the root's filter sends every UDP datagram to
/// 1:1 (an inner class: its filters go on).
const TREE_INNER: &[&str] = &[
    "qdisc add dev D root handle 1: htb default 20",
    "class add dev D parent 1: classid 1:1 htb rate 200kbit burst 2000 cburst 2000",
    "class add dev D parent 1:1 classid 1:10 htb rate 50kbit ceil 200kbit burst 2000 cburst 2000 prio 0 quantum 1500",
    "class add dev D parent 1:1 classid 1:20 htb rate 50kbit ceil 200kbit burst 2000 cburst 2000 prio 1 quantum 1500",
    "filter add dev D parent 1: protocol ip prio 1 u32 match ip protocol 17 0xff flowid 1:1",
    "filter add dev D parent 1:1 protocol ip prio 2 u32 match ip sport 5001 0xffff flowid 1:10",
    "filter add dev D parent 1:1 protocol ip prio 3 u32 match ip sport 5002 0xffff flowid 1:20",
];
/// Inner-class filters alone: the flows' priority names 1:1, whose
/// filters choose (without them both would go to the default, 1:20).
const TREE_INNER_PRIO: &[&str] = &[
    "qdisc add dev D root handle 1: htb default 20",
    "class add dev D parent 1: classid 1:1 htb rate 200kbit burst 2000 cburst 2000",
    "class add dev D parent 1:1 classid 1:10 htb rate 50kbit ceil 200kbit burst 2000 cburst 2000 prio 0 quantum 1500",
    "class add dev D parent 1:1 classid 1:20 htb rate 50kbit ceil 200kbit burst 2000 cburst 2000 prio 1 quantum 1500",
    "filter add dev D parent 1:1 protocol ip prio 2 u32 match ip sport 5001 0xffff flowid 1:10",
];
/// Both flows with the inner class 1:1 as their priority.
const FLOWS_INNER: [(u16, u32); 2] = [(5001, 0x1_0001), (5002, 0x1_0001)];
/// The same tree with qdiscs grafted on the leaves: `pfifo_fast` on
/// 1:10, a `bfifo` of 3000 bytes on 1:20 (which drops most of flow b).
const TREE_GRAFT: &[&str] = &[
    "qdisc add dev D root handle 1: htb default 20",
    "class add dev D parent 1: classid 1:1 htb rate 200kbit burst 2000 cburst 2000",
    "class add dev D parent 1:1 classid 1:10 htb rate 50kbit ceil 200kbit burst 2000 cburst 2000 prio 0 quantum 1500",
    "class add dev D parent 1:1 classid 1:20 htb rate 50kbit ceil 200kbit burst 2000 cburst 2000 prio 1 quantum 1500",
    "qdisc add dev D parent 1:10 handle 10: pfifo_fast",
    "qdisc add dev D parent 1:20 handle 20: bfifo limit 3000",
];
/// Datagrams per flow, and their payload.
const SENDS: usize = 12;
const LEN: usize = 1000;
/// The flows' source ports and their priorities (the leaves' class ids).
const FLOWS: [(u16, u32); 2] = [(5001, 0x1_0010), (5002, 0x1_0020)];
/// The flows without a priority (the filters choose).
const FLOWS_U32: [(u16, u32); 2] = [(5001, 0), (5002, 0)];

/// What a side did: which flow left, in order (`a`/`b`), when (µs from
/// the first), and per qdisc and class: packets, lends, borrows, drops.
#[derive(Debug)]
struct Outcome {
    order: String,
    times_us: Vec<i64>,
    counters: Vec<(u64, u64, u64, u64)>,
}

#[test]
fn htb_shares_and_borrows_as_the_kernel_does() {
    compare("htb_shares_and_borrows_as_the_kernel_does", TREE, FLOWS);
}

#[test]
fn htb_with_u32_filters_classifies_as_the_kernel_does() {
    compare(
        "htb_with_u32_filters_classifies_as_the_kernel_does",
        TREE_U32,
        FLOWS_U32,
    );
}

#[test]
fn htb_filters_on_an_inner_class_classify_as_the_kernel_does() {
    compare(
        "htb_filters_on_an_inner_class_classify_as_the_kernel_does",
        TREE_INNER,
        FLOWS_U32,
    );
}

#[test]
fn htb_priority_of_an_inner_class_starts_its_filters_as_the_kernel_does() {
    compare(
        "htb_priority_of_an_inner_class_starts_its_filters_as_the_kernel_does",
        TREE_INNER_PRIO,
        FLOWS_INNER,
    );
}

#[test]
fn htb_with_grafted_leaf_qdiscs_drops_as_the_kernel_does() {
    compare(
        "htb_with_grafted_leaf_qdiscs_drops_as_the_kernel_does",
        TREE_GRAFT,
        FLOWS,
    );
}

/// Runs both sides with `tree` and `flows` and compares them.
fn compare(name: &str, tree: &[&str], flows: [(u16, u32); 2]) {
    if common::skip(name) {
        return;
    }
    let ours = ipxmit_side(tree, flows);
    let kernel = common::kernel_in_bounds(
        &ours.times_us,
        |k: &Outcome| &k.times_us,
        || kernel_side(tree, flows).expect("the kernel side"),
    );
    common::report(&format!(
        "{name}: order ours {} kernel {}; times ours {:?} kernel {:?} us",
        ours.order, kernel.order, ours.times_us, kernel.times_us
    ));
    assert_eq!(ours.order, kernel.order, "the order the flows left in");
    assert_eq!(
        ours.counters, kernel.counters,
        "packets, lends, borrows, drops"
    );
    common::assert_departures(&ours.times_us, &kernel.times_us);
}

/// ipxmit on the virtual clock: the sends at time 0, then the queue run at
/// each watchdog time; a frame's time is the clock when it reached the wire.
fn ipxmit_side(tree: &[&str], flows: [(u16, u32); 2]) -> Outcome {
    let clock = Arc::new(ManualClock::new());
    clock.set(ipxmit::time::Instant::from_nanos(1_000_000_000));
    let (stack, wire) = common::clocked_host(clock.clone(), |_| MemWire::new(1024));
    configure(&stack, tree);
    let mut socks: Vec<UdpSocket> = flows
        .iter()
        .map(|&(port, prio)| {
            let mut s = UdpSocket::new(&stack);
            s.bind(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), port))
                .unwrap();
            s.set_priority(prio);
            s
        })
        .collect();
    let (order, times_us) = common::run_flows(
        &clock,
        (&stack, &wire),
        &mut socks,
        (SENDS, LEN, 2 * SENDS),
        flow_of,
    );
    let out = tc_show(&stack);
    Outcome {
        order,
        times_us,
        counters: counters(&out),
    }
}

/// The tree through the library's tc entry points.
fn configure(stack: &Stack, tree: &[&str]) {
    use ipxmit::sched::{ClassOp, ClassRequest, ClassSpec, QdiscSpec};
    let spec: QdiscSpec = "htb default 20".parse().unwrap();
    stack
        .qdisc_modify("eth0", QdiscOp::Add, Some(1 << 16), &spec)
        .unwrap();
    for line in &tree[1..] {
        let w: Vec<&str> = line.split(' ').collect();
        if w[0] == "filter" {
            add_filter(stack, &w);
            continue;
        }
        if w[0] == "qdisc" {
            let leaf: QdiscSpec = w[8..].join(" ").parse().unwrap();
            let (parent, h) = (parse_id(w[5]), parse_id(w[7]));
            stack
                .qdisc_modify_at("eth0", parent, QdiscOp::Add, Some(h), &leaf)
                .unwrap();
            continue;
        }
        let parent = parse_id(w[5]);
        let classid = parse_id(w[7]);
        let spec = ClassSpec::parse(&w[8..]).unwrap();
        let req = ClassRequest {
            op: ClassOp::Add,
            parent,
            classid,
            spec,
        };
        stack.class_modify("eth0", &req).unwrap();
    }
}

/// `filter add dev D parent 1: protocol ip prio N u32 ...`.
fn add_filter(stack: &Stack, w: &[&str]) {
    use ipxmit::sched::cls::{parse_filter, FilterSpec, ETH_P_IP};
    let (kind, (matcher, classid, handle)) = parse_filter(w[10], None, &w[11..]).unwrap();
    let spec = FilterSpec {
        pref: w[9].parse().unwrap(),
        protocol: ETH_P_IP,
        kind,
        handle,
        matcher,
        classid,
    };
    stack.filter_add("eth0", parse_id(w[5]), &spec).unwrap();
}

/// `1:`, `1:10` as numbers.
fn parse_id(s: &str) -> u32 {
    let (maj, min) = s.split_once(':').unwrap();
    let min = if min.is_empty() {
        0
    } else {
        u32::from_str_radix(min, 16).unwrap()
    };
    u32::from_str_radix(maj, 16).unwrap() << 16 | min
}

/// `tc -s qdisc show` and `tc -s class show` of ipxmit's device, as text
/// the kernel's parser below reads too.
fn tc_show(stack: &Stack) -> String {
    let d = stack.device("eth0").unwrap();
    let q = &d.queues()[0];
    let mut o = q.with_qdisc(|q| format!("qdisc htb 1: root\n{}\n", q.stats()));
    for id in [0x1_0001, 0x1_0010, 0x1_0020] {
        let s = q.with_qdisc(|q| q.class_show(id, false)).unwrap();
        o += &format!("class htb {id:x}\n{}\n{}", s.stats, s.xstats.unwrap());
    }
    o
}

/// The flow of a source port.
fn flow_of(port: u16) -> char {
    if port == FLOWS[0].0 {
        'a'
    } else {
        'b'
    }
}

/// The kernel: a veth from namespace A (10.10.0.1, the tree on its end)
/// to B (10.10.0.2, a receiving socket timing arrivals).
fn kernel_side(tree: &[&str], flows: [(u16, u32); 2]) -> std::io::Result<Outcome> {
    let v = VethPeer::with_static_peer("htbk")?;
    for line in tree {
        let mut args = vec!["-n", v.a.name()];
        args.extend(line.split(' ').map(|w| if w == "D" { DEV_A } else { w }));
        common::run_cmd("tc", &args)?;
    }
    let rx = StampedRx::bind(&v.b, "10.10.0.2:9", Duration::from_millis(400))?;
    let (arrivals, sent) = std::thread::scope(|sc| {
        let h = sc.spawn(|| rx.recv_all(LEN));
        let sent = v.a.run(|| send_all(flows));
        (h.join().expect("receiver"), sent)
    });
    sent??;
    let ns = v.a.name().to_owned();
    let mut out = common::run_cmd("tc", &["-n", &ns, "-s", "qdisc", "show", "dev", DEV_A])?;
    out += &common::run_cmd("tc", &["-n", &ns, "-s", "class", "show", "dev", DEV_A])?;
    let t0 = arrivals.first().map_or(0, |a| a.1);
    Ok(Outcome {
        order: arrivals.iter().map(|a| flow_of(a.0)).collect(),
        times_us: arrivals.iter().map(|a| (a.1 - t0) / 1000).collect(),
        counters: counters(&out),
    })
}

/// Inside namespace A: one socket per flow, its priority set, sending in
/// turn.
fn send_all(flows: [(u16, u32); 2]) -> std::io::Result<()> {
    let socks = flows
        .iter()
        .map(|&(port, prio)| {
            let s = OsUdp::bind(("10.10.0.1", port))?;
            // SAFETY: `prio` is a live u32; the kernel copies it.
            let r = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_PRIORITY,
                    (&prio as *const u32).cast(),
                    4,
                )
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(s)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    for k in 0..SENDS {
        for s in &socks {
            s.send_to(&common::payload(LEN, k), "10.10.0.2:9")?;
        }
    }
    Ok(())
}

/// From `tc -s` text: the qdisc's packets (lends and borrows 0), then
/// for classes 1:1, 1:10, 1:20 in that order their packets, lends and
/// borrows.
fn counters(out: &str) -> Vec<(u64, u64, u64, u64)> {
    let mut blocks: Vec<(String, (u64, u64, u64, u64))> = Vec::new();
    for line in out.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.first().copied() {
            Some("qdisc") | Some("class") => {
                let id = if w[2].contains(':') {
                    format!("{:x}", parse_id(w[2]))
                } else {
                    w[2].to_owned()
                };
                blocks.push((id, (0, 0, 0, 0)))
            }
            Some("Sent") => {
                let c = &mut blocks.last_mut().unwrap().1;
                c.0 = w[3].parse().unwrap();
                // Sent B bytes P pkt (dropped D, ...
                c.3 = w[6].trim_end_matches(',').parse().unwrap();
            }
            Some("lended:") => {
                let c = &mut blocks.last_mut().unwrap().1;
                c.1 = w[1].parse().unwrap();
                c.2 = w[3].parse().unwrap();
            }
            _ => {}
        }
    }
    let find = |k: &str| {
        blocks
            .iter()
            .find(|b| b.0 == k)
            .map_or((u64::MAX, 0, 0, 0), |b| b.1)
    };
    ["10000", "10001", "10010", "10020"]
        .iter()
        .map(|k| find(k))
        .collect()
}
