//! The device layer: xmit_more batching, the run quota and rescheduling, taps,
//! filter hooks, noqueue, and transmit-queue selection.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use ipxmit::dev::{DevConfig, Driver, TxStatus};
use ipxmit::neigh::NudState;
use ipxmit::netfilter::{Hook, HookPoint, Verdict};
use ipxmit::sched::QdiscSpec;
use ipxmit::stats::{DevCounter, DropReason, Mib};
use ipxmit::wire::EthernetAddress;
use ipxmit::{MsgFlags, NetDevice, PacketBuf, SendError, Stack, UdpSocket};
use ipxmit_drivers::capture::PcapTap;
use ipxmit_drivers::mem::MemWire;
use ipxmit_drivers::pcap::{CaptureFormat, CaptureWriter, LinkType};
use parking_lot::Mutex;

const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn mac(last: u8) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, 0, last])
}

/// A driver that records each frame's length and `more` hint, and the queue
/// it belongs to.
struct Recorder {
    queue: usize,
    log: Arc<Mutex<Vec<(usize, usize, bool)>>>,
}

impl Driver for Recorder {
    fn start_xmit(&mut self, pkt: PacketBuf, more: bool) -> TxStatus {
        self.log.lock().push((self.queue, pkt.len(), more));
        TxStatus::Ok
    }
}

type Log = Arc<Mutex<Vec<(usize, usize, bool)>>>;

fn host_with(drivers: Vec<Box<dyn Driver>>) -> Arc<Stack> {
    let stack = Stack::new();
    stack
        .add_device(DevConfig::ethernet("eth0", mac(1)), drivers)
        .unwrap();
    stack
        .add_addr("eth0", "10.0.0.1/24".parse().unwrap())
        .unwrap();
    stack
        .add_neigh("eth0", DST, mac(2), NudState::Permanent)
        .unwrap();
    stack
}

fn recording_host(queues: usize) -> (Arc<Stack>, Log) {
    let log: Log = Arc::default();
    let drivers = (0..queues)
        .map(|q| {
            Box::new(Recorder {
                queue: q,
                log: log.clone(),
            }) as Box<dyn Driver>
        })
        .collect();
    (host_with(drivers), log)
}

fn to() -> SocketAddrV4 {
    SocketAddrV4::new(DST, 6000)
}

#[test]
fn stopped_queue_runs_in_quota_sized_batches_with_xmit_more() {
    let (stack, log) = recording_host(1);
    let dev = stack.device("eth0").unwrap();
    let ctl = dev.queues()[0].ctl().clone();
    ctl.stop();
    let mut s = UdpSocket::new(&stack);
    for _ in 0..100 {
        s.send_to(&[0u8; 10], to(), MsgFlags::NONE).unwrap();
    }
    assert!(
        log.lock().is_empty(),
        "nothing reaches a stopped queue's driver"
    );
    let q = dev.queues()[0].with_qdisc(|q| *q.stats());
    assert_eq!(q.qlen, 100);
    ctl.wake();
    stack.poll();
    {
        let l = log.lock();
        assert_eq!(l.len(), 64, "one run sends the quota of 64 (dev_tx_weight)");
        assert!(
            l[..63].iter().all(|e| e.2),
            "xmit_more set while frames follow"
        );
        assert!(!l[63].2, "and clear on the last of the batch");
    }
    assert!(stack.next_wakeup().is_some(), "the queue was rescheduled");
    stack.poll();
    assert_eq!(log.lock().len(), 100);
    assert_eq!(stack.next_wakeup(), None);
    let q = dev.queues()[0].with_qdisc(|q| *q.stats());
    assert_eq!((q.qlen, q.backlog, q.packets), (0, 0, 100));
}

#[test]
fn tap_sees_exactly_what_the_driver_gets() {
    let (stack, wire) = common::mem_host(common::eth0(), 1, 1024);
    let dev = stack.device("eth0").unwrap();
    let w = CaptureWriter::new(
        Vec::new(),
        CaptureFormat::Pcap,
        LinkType::Ethernet,
        0,
        "eth0",
    )
    .unwrap();
    let tap = PcapTap::new(w, stack.now());
    dev.add_tap(tap.clone());
    let mut s = UdpSocket::new(&stack);
    for n in [0usize, 100, 1473, 8000] {
        s.send_to(&vec![0xab; n], to(), MsgFlags::NONE).unwrap();
    }
    let mut frames = Vec::new();
    wire.drain(|p| frames.push(p.to_vec()));
    assert_eq!(tap.frames(), frames.len() as u64);
    let file = tap.with_writer(|w| w.get_ref().clone());
    let mut r = pcap_file::pcap::PcapReader::new(&file[..]).unwrap();
    let mut captured = Vec::new();
    while let Some(p) = r.next_packet() {
        captured.push(p.unwrap().data.to_vec());
    }
    assert_eq!(captured, frames, "capture equals the wire, frame for frame");
}

struct DropDns;

impl Hook for DropDns {
    fn hook(&self, _p: HookPoint, pkt: &mut PacketBuf, _out: &NetDevice) -> Verdict {
        let h = pkt.network_header();
        let ihl = (h[0] & 0xf) as usize * 4;
        if h[9] == 17 && u16::from_be_bytes([h[ihl + 2], h[ihl + 3]]) == 53 {
            Verdict::Drop
        } else {
            Verdict::Accept
        }
    }
}

struct Count(Arc<Mutex<usize>>);

impl Hook for Count {
    fn hook(&self, _p: HookPoint, _pkt: &mut PacketBuf, _out: &NetDevice) -> Verdict {
        *self.0.lock() += 1;
        Verdict::Accept
    }
}

#[test]
fn hooks_drop_with_eperm_and_see_datagrams_before_fragmentation() {
    let (stack, log) = recording_host(1);
    stack
        .hooks()
        .register(HookPoint::LocalOut, Arc::new(DropDns));
    let seen = Arc::new(Mutex::new(0));
    stack
        .hooks()
        .register(HookPoint::PostRouting, Arc::new(Count(seen.clone())));
    let mut s = UdpSocket::new(&stack);
    let e = s
        .send_to(b"query", SocketAddrV4::new(DST, 53), MsgFlags::NONE)
        .unwrap_err();
    assert_eq!(e, SendError::Perm);
    assert_eq!(stack.counters().dropped(DropReason::NetfilterDrop), 1);
    assert!(log.lock().is_empty());
    s.send_to(&[1u8; 8000], to(), MsgFlags::NONE).unwrap();
    assert_eq!(
        *seen.lock(),
        1,
        "POST_ROUTING sees the datagram once, before ip_fragment"
    );
    assert_eq!(log.lock().len(), 6);
}

/// eth0 with the `noqueue` qdisc on a memory wire of `cap` frames.
fn noqueue_host(cap: usize) -> (Arc<Stack>, Arc<MemWire>) {
    let (stack, wire) = common::mem_host(common::eth0(), 1, cap);
    stack.replace_qdisc("eth0", &QdiscSpec::Noqueue).unwrap();
    (stack, wire)
}

#[test]
fn noqueue_drops_what_a_busy_driver_refuses() {
    let (stack, wire) = noqueue_host(1);
    let mut s = UdpSocket::new(&stack);
    s.send_to(b"one", to(), MsgFlags::NONE).unwrap();
    let e = s.send_to(b"two", to(), MsgFlags::NONE).unwrap_err();
    assert_eq!(e, SendError::NetDown);
    assert_eq!(stack.counters().dropped(DropReason::DevReady), 1);
    assert_eq!(wire.len(), 1);
    wire.pop();
    s.send_to(b"three", to(), MsgFlags::NONE).unwrap();
    assert_eq!(wire.len(), 1, "the consumer's room wakes the queue again");
}

/// A frame the in-memory wire refuses (full) goes back to the qdisc still
/// charged to its socket: the wire orphans a frame (`skb_orphan`) only once
/// it has taken it. Drained, the requeued frame goes out and the charge is
/// released.
#[test]
fn a_refused_frame_stays_charged_until_the_wire_takes_it() {
    let (stack, wire) = common::mem_host(common::eth0(), 1, 1);
    let mut s = UdpSocket::new(&stack);
    s.send_to(b"one", to(), MsgFlags::NONE).unwrap();
    assert_eq!(s.budget().allocated(), 0, "on the wire: orphaned");
    s.send_to(b"two", to(), MsgFlags::NONE).unwrap();
    assert_eq!(wire.busy_count(), 1, "the full wire refused it");
    let held = s.budget().allocated();
    assert!(held > 0, "the requeued frame is still charged");
    let dev = stack.device("eth0").unwrap();
    let requeues = dev.queues()[0].with_qdisc(|q| q.stats().requeues);
    assert_eq!(requeues, 1);
    wire.pop();
    for _ in 0..10 {
        stack.poll();
    }
    assert_eq!(wire.len(), 1, "the requeued frame went out");
    assert_eq!(s.budget().allocated(), 0, "and its charge was released");
}

/// A fragment train on a queueless device whose driver has room for 3 of its
/// 6 frames: 3 leave (in one pass, `xmit_more` within), the refused one is
/// dropped by the device (`DevReady`, `tx_dropped`), the 2 after it are
/// freed by `ip_do_fragment` (`kfree_skb_list`: `NOT_SPECIFIED`, not the
/// device's) and the datagram fails with `ENETDOWN` and `IpFragFails`, as
/// the kernel's per-fragment calls end.
#[test]
fn noqueue_fragment_train_stops_at_a_busy_driver() {
    let (stack, wire) = noqueue_host(3);
    let mut s = UdpSocket::new(&stack);
    let e = s.send_to(&[7u8; 8000], to(), MsgFlags::NONE).unwrap_err();
    assert_eq!(e, SendError::NetDown);
    assert_eq!(wire.len(), 3);
    assert_eq!(stack.counters().dropped(DropReason::DevReady), 1);
    assert_eq!(stack.counters().dropped(DropReason::NotSpecified), 2);
    assert_eq!(stack.counters().get(Mib::IpFragCreates), 3);
    assert_eq!(stack.counters().get(Mib::IpFragFails), 1);
    let dev = stack.device("eth0").unwrap();
    assert_eq!(dev.stats.get(DevCounter::TxDropped), 1);
    assert_eq!(dev.stats.get(DevCounter::TxPackets), 3);
    while wire.pop().is_some() {}
    let e = s.send_to(&[7u8; 8000], to(), MsgFlags::NONE).unwrap_err();
    assert_eq!(e, SendError::NetDown);
    assert_eq!(
        wire.len(),
        3,
        "woken: again 3 of 6 before the driver is full"
    );
}

#[test]
fn flows_spread_over_queues_and_each_flow_keeps_its_queue() {
    let (stack, log) = recording_host(4);
    let mut used = std::collections::BTreeSet::new();
    for port in 0..16u16 {
        let mut s = UdpSocket::new(&stack);
        s.bind(SocketAddrV4::new(SRC, 7000 + port)).unwrap();
        for _ in 0..3 {
            s.send_to(b"x", to(), MsgFlags::NONE).unwrap();
        }
        let l = log.lock();
        let qs: Vec<usize> = l[l.len() - 3..].iter().map(|e| e.0).collect();
        assert!(qs.iter().all(|&q| q == qs[0]), "one flow, one queue");
        used.insert(qs[0]);
    }
    assert!(
        used.len() >= 2,
        "16 flows use more than one of 4 queues: {used:?}"
    );
}

#[test]
fn fragment_train_goes_to_the_driver_in_one_pass_with_xmit_more() {
    let (stack, log) = recording_host(1);
    let mut s = UdpSocket::new(&stack);
    s.send_to(&[7u8; 8000], to(), MsgFlags::NONE).unwrap();
    let l = log.lock();
    let more: Vec<bool> = l.iter().map(|e| e.2).collect();
    assert_eq!(more, vec![true, true, true, true, true, false]);
    let lens: Vec<usize> = l.iter().map(|e| e.1).collect();
    assert_eq!(lens, vec![1514, 1514, 1514, 1514, 1514, 642]);
}

#[test]
fn a_full_queue_fails_the_rest_of_a_fragment_train() {
    use ipxmit::stats::Mib;
    let (stack, log) = recording_host(1);
    stack
        .replace_qdisc("eth0", &"pfifo limit 3".parse().unwrap())
        .unwrap();
    let dev = stack.device("eth0").unwrap();
    dev.queues()[0].ctl().stop();
    let mut s = UdpSocket::new(&stack);
    s.set_recverr(true);
    let e = s.send_to(&[7u8; 8000], to(), MsgFlags::NONE).unwrap_err();
    assert_eq!(e, SendError::NoBufs);
    let c = stack.counters();
    assert_eq!(c.get(Mib::IpFragCreates), 3, "three fragments queued");
    assert_eq!(c.get(Mib::IpFragFails), 1);
    assert_eq!(c.get(Mib::IpFragOKs), 0);
    assert_eq!(c.dropped(DropReason::QdiscDrop), 1, "the fourth refused");
    assert_eq!(c.dropped(DropReason::NotSpecified), 2, "the last two freed");
    dev.queues()[0].ctl().wake();
    stack.poll();
    assert_eq!(log.lock().len(), 3, "what was queued still leaves");
}
