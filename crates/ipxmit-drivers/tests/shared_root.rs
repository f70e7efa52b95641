//! A root qdisc on a device with several transmit queues is one qdisc,
//! shared by all of them (the kernel's `dev_graft_qdisc()` of a non-`mq`
//! root on every queue), where `mq` gives each queue its own: its limit
//! holds for the device, not per queue; its counters count every queue's
//! frames once; and each frame still leaves on the queue its flow chose
//! (`skb_get_tx_queue()` in `qdisc_restart()`), in order per flow.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use ipxmit::sched::{QdiscOp, QdiscSpec};
use ipxmit::{MsgFlags, UdpSocket};

/// Queues of the device, and datagrams sent (five flows, in turn).
const QUEUES: usize = 4;
const SENDS: usize = 40;

/// Sends [`SENDS`] datagrams of five flows (destination ports 9 to 13)
/// onto a wire of 2 frames nobody drains, under `IP_RECVERR` (a qdisc's
/// drop is the send's `ENOBUFS`); returns which sends succeeded.
fn send_all(stack: &std::sync::Arc<ipxmit::Stack>) -> Vec<bool> {
    let mut s = UdpSocket::new(stack);
    s.bind(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5000))
        .unwrap();
    s.set_recverr(true);
    (0..SENDS)
        .map(|k| {
            let dst = SocketAddrV4::new(common::PEER, 9 + (k % 5) as u16);
            s.send_to(&common::payload(100, k), dst, MsgFlags::NONE)
                .is_ok()
        })
        .collect()
}

#[test]
fn a_root_on_several_queues_is_one_qdisc_with_one_limit() {
    let (stack, wire) = common::mem_host(common::eth0(), QUEUES, 2);
    let spec: QdiscSpec = "pfifo limit 5".parse().unwrap();
    stack
        .qdisc_modify("eth0", QdiscOp::Add, Some(1 << 16), &spec)
        .unwrap();
    let ok = send_all(&stack);
    let dev = stack.device("eth0").unwrap();
    assert_eq!(dev.trees().len(), 1, "one tree");
    let st = dev.queues()[0].with_qdisc(|q| *q.stats());
    let requeued: usize = dev.queues().iter().map(|q| q.requeued_len()).sum();
    // 2 frames on the wire; at most 5 in the pfifo and one requeued (the
    // kernel's `gso_skb`) beside it: per-queue copies would hold 4 x 5.
    assert!(st.qlen as usize <= 5 + requeued && requeued <= 1, "{st:?}");
    let queued = st.qlen as usize;
    assert_eq!(2 + queued + st.drops as usize, SENDS, "{st:?}");
    assert_eq!(ok.iter().filter(|&&o| !o).count(), st.drops as usize);
    for q in &dev.queues()[1..] {
        let s = q.with_qdisc(|q| *q.stats());
        assert_eq!((s.packets, s.qlen), (0, 0), "nothing counted twice");
    }
    // Drained: every queued frame leaves, on the queue of its flow.
    let mut by_port: BTreeMap<u16, Vec<u16>> = BTreeMap::new();
    let mut n = 0;
    loop {
        let got = wire.drain(|f| {
            let b = f.to_vec();
            let dport = u16::from_be_bytes([b[36], b[37]]);
            by_port.entry(dport).or_default().push(f.meta.queue_mapping);
        });
        n += got;
        if got == 0 && !stack.poll_until_idle(8) && wire.is_empty() {
            break;
        }
    }
    assert_eq!(n, 2 + queued, "all sent in the end");
    let st = dev.queues()[0].with_qdisc(|q| *q.stats());
    assert_eq!((st.packets as usize, st.qlen), (2 + queued, 0));
    let queues: std::collections::BTreeSet<u16> = by_port.values().flatten().copied().collect();
    assert!(
        queues.len() >= 2,
        "the flows use several queues: {by_port:?}"
    );
    for (port, q) in &by_port {
        assert!(q.windows(2).all(|w| w[0] == w[1]), "port {port}: one queue");
    }
}

#[test]
fn mq_gives_each_queue_its_own_qdisc_and_limit() {
    let (stack, _wire) = common::mem_host(common::eth0(), QUEUES, 2);
    stack
        .qdisc_modify("eth0", QdiscOp::Add, Some(1 << 16), &QdiscSpec::Mq)
        .unwrap();
    let spec: QdiscSpec = "pfifo limit 5".parse().unwrap();
    for i in 1..=QUEUES as u32 {
        stack
            .qdisc_modify_at("eth0", 1 << 16 | i, QdiscOp::Add, None, &spec)
            .unwrap();
    }
    send_all(&stack);
    let dev = stack.device("eth0").unwrap();
    assert_eq!(dev.trees().len(), QUEUES);
    let per: Vec<_> = dev
        .queues()
        .iter()
        .map(|q| q.with_qdisc(|q| *q.stats()))
        .collect();
    let held: u64 = per.iter().map(|s| s.qlen).sum();
    assert!(held > 6, "each queue holds its own 5: {per:?}");
    assert!(per.iter().all(|s| s.qlen <= 6), "{per:?}");
}

/// Replacing a shared root by `mq` and back loses nothing unaccounted:
/// the old qdisc's packets are dropped and counted, the new tree sends.
#[test]
fn switching_between_a_shared_root_and_mq_accounts_every_packet() {
    let (stack, wire) = common::mem_host(common::eth0(), QUEUES, 2);
    let tbf: QdiscSpec = "tbf rate 1mbit burst 2000 limit 100000".parse().unwrap();
    for spec in [&tbf, &QdiscSpec::Mq, &tbf] {
        stack.replace_qdisc("eth0", spec).unwrap();
        let ok = send_all(&stack).iter().filter(|&&o| o).count();
        assert_eq!(ok, SENDS, "{spec:?}");
    }
    while wire.drain(|_| {}) > 0 || stack.poll_until_idle(8) {}
    let dev = stack.device("eth0").unwrap();
    let purged = stack
        .counters()
        .dropped(ipxmit::stats::DropReason::QueuePurge);
    let queued: u64 = dev
        .trees()
        .iter()
        .map(|q| q.with_qdisc(|q| q.stats().qlen))
        .sum();
    let sent = wire.frames();
    assert_eq!(sent + purged + queued, 3 * SENDS as u64);
    assert!(
        purged > 0 && queued > 0,
        "sent {sent} purged {purged} queued {queued}"
    );
}
