//! Several threads sending through one stack at once: nothing lost, nothing
//! counted twice. N threads × M `send_batch` calls of 64 datagrams each must
//! come out as exactly N·M·64 in every counter on the way — the MIBs (per-
//! thread shards summed on read), the device's, the qdiscs', the null
//! driver's (lockless, LLTX) — on one queue with `noqueue`, on one queue
//! with `pfifo_fast` (threads transmitting each other's frames), and on N
//! queues with XPS, where each thread's datagrams must all be on the queue
//! its thread number maps to.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Barrier};

use ipxmit::dev::DevConfig;
use ipxmit::neigh::NudState;
use ipxmit::stats::{DevCounter, Mib};
use ipxmit::wire::EthernetAddress;
use ipxmit::{BatchMsg, MsgFlags, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;
use ipxmit_drivers::null::NullCounters;

const THREADS: usize = 4;
const CALLS: u64 = 2000;
const PER_CALL: u64 = 64;
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// A stack with `eth0` on `drivers`, root `qdisc` (None: the default),
/// XPS's default map when `xps`, and a permanent neighbour for the peer.
fn host(drivers: Vec<Box<dyn ipxmit::dev::Driver>>, qdisc: Option<&str>, xps: bool) -> Arc<Stack> {
    let stack = Stack::new();
    let dev = DevConfig::ethernet("eth0", EthernetAddress([2, 0, 0, 0, 0, 1]));
    stack.add_device(dev, drivers).unwrap();
    if let Some(q) = qdisc {
        stack.replace_qdisc("eth0", &q.parse().unwrap()).unwrap();
    }
    if xps {
        stack.device("eth0").unwrap().set_xps_default();
    }
    stack
        .add_addr("eth0", "10.0.0.1/24".parse().unwrap())
        .unwrap();
    let mac = EthernetAddress([2, 0, 0, 0, 0, 2]);
    stack
        .add_neigh("eth0", PEER, mac, NudState::Permanent)
        .unwrap();
    stack
}

/// `THREADS` threads, started together, each with a socket of its own
/// sending `calls` batches of 64 18-byte datagrams; returns each thread's
/// number ([`ipxmit::cpu::current`]) while it sent.
fn send_from_threads(stack: &Arc<Stack>, calls: u64) -> Vec<usize> {
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|_| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut sock = UdpSocket::new(stack);
                    let payload = [7u8; 18];
                    let to = Some(SocketAddrV4::new(PEER, 9000));
                    let msgs = [BatchMsg::new(&payload, to); PER_CALL as usize];
                    barrier.wait();
                    for _ in 0..calls {
                        assert_eq!(sock.send_batch(&msgs, MsgFlags::NONE), Ok(64));
                    }
                    ipxmit::cpu::current()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

const TOTAL: u64 = THREADS as u64 * CALLS * PER_CALL;

/// Every counter on the way says `total`, nothing dropped.
fn assert_counted(stack: &Stack, total: u64) {
    let c = stack.counters();
    for m in [
        Mib::IpOutRequests,
        Mib::IpOutTransmits,
        Mib::UdpOutDatagrams,
    ] {
        assert_eq!(c.get(m), total, "{m}");
    }
    assert_eq!(c.get(Mib::IpExtOutOctets), total * (20 + 8 + 18));
    assert_eq!(c.dropped_total(), 0);
    let dev = stack.device("eth0").unwrap();
    assert_eq!(dev.stats.get(DevCounter::TxPackets), total);
    assert_eq!(dev.stats.get(DevCounter::TxBytes), total * 60);
}

/// Packets and bytes each queue's qdisc counted as sent.
fn qdisc_sent(stack: &Stack) -> Vec<(u64, u64)> {
    let dev = stack.device("eth0").unwrap();
    dev.queues()
        .iter()
        .map(|q| q.with_qdisc(|qd| (qd.stats().packets, qd.stats().bytes)))
        .collect()
}

#[test]
fn threads_on_one_noqueue_queue_count_every_datagram_once() {
    let sink = NullCounters::new();
    let stack = host(sink.drivers(1), Some("noqueue"), false);
    let dev = stack.device("eth0").unwrap();
    assert!(dev.queues()[0].is_lltx() && dev.queues()[0].is_noqueue());
    send_from_threads(&stack, CALLS);
    assert_counted(&stack, TOTAL);
    assert_eq!((sink.frames(), sink.bytes()), (TOTAL, TOTAL * 60));
}

#[test]
fn threads_sharing_one_pfifo_fast_queue_count_every_datagram_once() {
    let sink = NullCounters::new();
    let stack = host(sink.drivers(1), None, false);
    send_from_threads(&stack, CALLS);
    assert_counted(&stack, TOTAL);
    assert_eq!(sink.frames(), TOTAL);
    let q = qdisc_sent(&stack);
    assert_eq!(q, vec![(TOTAL, TOTAL * 60)], "pfifo_fast's sent counters");
    let dev = stack.device("eth0").unwrap();
    assert_eq!(dev.queues()[0].with_qdisc(|qd| qd.stats().qlen), 0);
}

#[test]
fn with_xps_each_thread_keeps_to_the_queue_its_number_maps_to() {
    let sink = NullCounters::new();
    let stack = host(sink.drivers(THREADS), None, true);
    let ids = send_from_threads(&stack, CALLS);
    assert_counted(&stack, TOTAL);
    assert_eq!(sink.frames(), TOTAL);
    // Thread number i sends on queue i % N (numbers of 64 and above have
    // no map: their flow hash picks; the test threads are far below).
    let mut want = vec![0u64; THREADS];
    for id in &ids {
        assert!(*id < 64, "thread number {id}");
        want[id % THREADS] += CALLS * PER_CALL;
    }
    let got: Vec<u64> = qdisc_sent(&stack).iter().map(|q| q.0).collect();
    assert_eq!(got, want, "per-queue packets for thread numbers {ids:?}");
}

#[test]
fn threads_on_the_lockless_in_memory_wire_deliver_every_frame_once() {
    const CALLS: u64 = 100;
    const TOTAL: u64 = THREADS as u64 * CALLS * PER_CALL;
    let wire = MemWire::new(TOTAL as usize);
    let stack = host(wire.drivers(2), Some("noqueue"), true);
    assert!(stack.device("eth0").unwrap().queues()[1].is_lltx());
    send_from_threads(&stack, CALLS);
    assert_counted(&stack, TOTAL);
    let mut frames = 0u64;
    wire.drain(|p| {
        assert_eq!(p.len(), 60);
        frames += 1;
    });
    assert_eq!(
        (frames, wire.frames(), wire.busy_count()),
        (TOTAL, TOTAL, 0)
    );
}
