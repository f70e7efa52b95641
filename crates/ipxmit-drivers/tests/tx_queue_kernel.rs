//! Which transmit queue a socket's datagrams take on a device of two
//! queues with XPS (sender 0 -> queue 0, sender 1 -> queue 1), ipxmit
//! against the kernel: a veth of two queues in a namespace under an `mq`
//! root, `xps_cpus` mapping CPU 0 to `tx-0` and CPU 1 to `tx-1`, one
//! thread moved between the two CPUs; ipxmit's in-memory device of two
//! queues, XPS mapping two sender threads the same way.
//!
//! `netdev_pick_tx()` records the queue it picks on a socket with a cached
//! route (a connected UDP socket: `sk_tx_queue_set()`), and later frames
//! of that socket keep it wherever their sender runs (UDP never sets
//! `ooo_okay`), until the route is reset (`sk_dst_reset()` on a route made
//! obsolete by a change of the routing state, which clears the record);
//! an unconnected socket's frames follow their sender's queue. The test
//! compares, step by step, how many datagrams each queue carried. Needs
//! root and two CPUs; prints SKIPPED otherwise. `explain` is checked
//! against the same rule without root.

mod common;

use std::net::{SocketAddrV4, UdpSocket as OsUdp};
use std::sync::mpsc;
use std::sync::Arc;

use common::netns::{VethPeer, DEV_A};
use ipxmit::{MsgFlags, RouteSpec, UdpSocket};
use ipxmit_drivers::mem::MemWire;

/// Datagrams per step.
const N: usize = 4;

/// One step of the scenario, run on both sides.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// The connected socket sends `N` datagrams from sender 0 or 1.
    Connected(usize),
    /// The unconnected socket sends `N` datagrams from sender 0 or 1.
    Unconnected(usize),
    /// A route is added (the routing state changes; nothing is sent).
    AddRoute,
}

const STEPS: [Step; 7] = [
    Step::Connected(0),
    Step::Connected(1),
    Step::AddRoute,
    Step::Connected(1),
    Step::Connected(0),
    Step::Unconnected(0),
    Step::Unconnected(1),
];

/// Datagrams each queue carried in each step.
type Deltas = Vec<[u64; 2]>;

#[test]
fn a_connected_socket_keeps_its_queue_until_its_route_is_reset() {
    let name = "a_connected_socket_keeps_its_queue_until_its_route_is_reset";
    if common::skip(name) {
        return;
    }
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        common::report(&format!("SKIPPED (needs two CPUs): {name} [{cpus:?}]"));
        return;
    }
    let kernel = kernel_side([cpus[0], cpus[1]]).expect("kernel side");
    let ours = ipxmit_side();
    common::report(&format!("kernel {kernel:?}\nipxmit {ours:?}"));
    assert_eq!(ours, kernel, "per-step queue counts: ipxmit vs the kernel");
    // Both queues were used, so XPS steered and the record held.
    assert!(kernel.iter().any(|d| d[0] > 0) && kernel.iter().any(|d| d[1] > 0));
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    let set = rustix::thread::sched_getaffinity(None).expect("sched_getaffinity");
    (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| set.is_set(c))
        .collect()
}

/// Moves the calling thread onto `cpu`.
fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).expect("sched_setaffinity");
}

/// The kernel: namespace A's `xa0` (two queues, `mq`), CPU `cpus[i]`
/// steered to `tx-i`; one thread in A moved to the CPU each step names.
fn kernel_side(cpus: [usize; 2]) -> std::io::Result<Deltas> {
    let v = VethPeer::with_static_peer_queues("txq", 2)?;
    let ns = v.a.name().to_owned();
    common::run_cmd(
        "tc",
        &[
            "-n", &ns, "qdisc", "replace", "dev", DEV_A, "root", "handle", "1:", "mq",
        ],
    )?;
    for (q, cpu) in cpus.iter().enumerate() {
        let path = format!("/sys/class/net/{DEV_A}/queues/tx-{q}/xps_cpus");
        let mask = format!("{:x}", 1u64 << cpu);
        let sh = format!("echo {mask} > {path}");
        common::run_cmd("ip", &["netns", "exec", &ns, "sh", "-c", &sh])?;
    }
    let peer = "10.10.0.2:9";
    // A listener in B, so the connected socket meets no port unreachable.
    let _rx = v.b.run(|| OsUdp::bind(peer))??;
    v.a.run(|| -> std::io::Result<Deltas> {
        let conn = OsUdp::bind("10.10.0.1:0")?;
        conn.connect(peer)?;
        let unconn = OsUdp::bind("10.10.0.1:0")?;
        let mut out = Vec::new();
        for step in STEPS {
            let before = common::mq_child_packets(&ns, DEV_A, 2)?;
            match step {
                Step::Connected(i) | Step::Unconnected(i) => {
                    pin(cpus[i]);
                    for k in 0..N {
                        let p = common::payload(64, k);
                        match step {
                            Step::Connected(_) => conn.send(&p)?,
                            _ => unconn.send_to(&p, peer)?,
                        };
                    }
                }
                Step::AddRoute => {
                    let r = ["route", "add", "10.20.0.0/24", "dev", DEV_A];
                    common::run_cmd("ip", &[&["-n", &ns][..], &r].concat())?;
                }
            }
            let after = common::mq_child_packets(&ns, DEV_A, 2)?;
            out.push([after[0] - before[0], after[1] - before[1]]);
        }
        Ok(out)
    })?
}

/// What a sender thread is asked to do.
type Job = Box<dyn FnOnce() + Send>;

/// ipxmit: `eth0` of two queues on an in-memory wire, XPS mapping sender
/// thread `i` to queue `i`; the steps run on the two sender threads.
fn ipxmit_side() -> Deltas {
    let (stack, wire) = common::mem_host(common::eth0(), 2, 1024);
    let conn = Arc::new(parking_lot::Mutex::new(UdpSocket::new(&stack)));
    let unconn = Arc::new(parking_lot::Mutex::new(UdpSocket::new(&stack)));
    let peer = SocketAddrV4::new(common::PEER, 9);
    conn.lock().connect(peer).unwrap();
    std::thread::scope(|s| {
        let senders: Vec<(mpsc::Sender<Job>, usize)> = (0..2)
            .map(|_| {
                let (tx, rx) = mpsc::channel::<Job>();
                let (num_tx, num_rx) = mpsc::channel();
                s.spawn(move || {
                    num_tx.send(ipxmit::cpu::current()).unwrap();
                    rx.into_iter().for_each(|job| job());
                });
                (tx, num_rx.recv().unwrap())
            })
            .collect();
        let dev = stack.device("eth0").unwrap();
        for (q, (_, num)) in senders.iter().enumerate() {
            dev.set_xps_cpus(q, 1 << num).unwrap();
        }
        let steps = STEPS.iter().map(|&step| {
            let job: Option<(usize, Job)> = match step {
                Step::Connected(i) => Some((i, send_job(&conn, None))),
                Step::Unconnected(i) => Some((i, send_job(&unconn, Some(peer)))),
                Step::AddRoute => {
                    let r = RouteSpec::new("10.20.0.0/24".parse().unwrap(), "eth0");
                    stack.add_route(r).unwrap();
                    None
                }
            };
            if let Some((i, job)) = job {
                let (done_tx, done_rx) = mpsc::channel();
                let job: Job = Box::new(move || {
                    job();
                    done_tx.send(()).unwrap();
                });
                senders[i].0.send(job).unwrap();
                done_rx.recv().unwrap();
            }
            per_queue(&wire)
        });
        steps.collect()
    })
}

/// A job sending `N` datagrams on `sock` (to `to`, or its peer).
fn send_job(sock: &Arc<parking_lot::Mutex<UdpSocket>>, to: Option<SocketAddrV4>) -> Job {
    let sock = sock.clone();
    Box::new(move || {
        let mut s = sock.lock();
        for k in 0..N {
            let p = common::payload(64, k);
            match to {
                Some(to) => s.send_to(&p, to, MsgFlags::NONE).unwrap(),
                None => s.send(&p, MsgFlags::NONE).unwrap(),
            };
        }
    })
}

/// The frames on `wire` since the last call, counted by queue.
fn per_queue(wire: &MemWire) -> [u64; 2] {
    let mut v = [0; 2];
    while let Some(f) = wire.pop() {
        let q = usize::from(f.meta.queue_mapping).saturating_sub(1);
        v[q.min(1)] += 1;
    }
    v
}

/// `explain` names the queue a connected socket's frames keep — the one
/// its first datagram was given, after XPS moved the thread to another —
/// and the XPS queue for an unconnected socket's send (no root needed).
#[test]
fn explain_names_the_queue_a_connected_socket_keeps() {
    let (stack, wire) = common::mem_host(common::eth0(), 2, 1024);
    let peer = SocketAddrV4::new(common::PEER, 9);
    let mut conn = UdpSocket::new(&stack);
    conn.connect(peer).unwrap();
    let dev = stack.device("eth0").unwrap();
    let me = 1u64 << ipxmit::cpu::current();
    let xps = |q: usize| {
        dev.set_xps_cpus(q, me).unwrap();
        dev.set_xps_cpus(1 - q, 0).unwrap();
    };
    xps(0);
    conn.send(&common::payload(64, 0), MsgFlags::NONE).unwrap();
    assert_eq!(per_queue(&wire), [1, 0]);
    xps(1);
    assert_eq!(conn.explain(64, None, MsgFlags::NONE).unwrap().qdisc.txq, 0);
    conn.send(&common::payload(64, 1), MsgFlags::NONE).unwrap();
    assert_eq!(per_queue(&wire), [1, 0], "the send keeps the queue too");
    let mut unconn = UdpSocket::new(&stack);
    let plan = unconn.explain(64, Some(peer), MsgFlags::NONE).unwrap();
    assert_eq!(plan.qdisc.txq, 1);
    unconn
        .send_to(&common::payload(64, 2), peer, MsgFlags::NONE)
        .unwrap();
    assert_eq!(per_queue(&wire), [0, 1]);
}
