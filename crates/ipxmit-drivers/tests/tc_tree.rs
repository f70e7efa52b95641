//! A qdisc tree three levels deep, operated on below the root: classes
//! of a grafted htb (`tc class add dev D parent 10: classid 10:1`, which
//! the kernel's `tc_ctl_tclass()` finds anywhere with `qdisc_lookup()`),
//! and changes deep in the tree whose drops leave every qdisc above
//! (`qdisc_tree_reduce_backlog()` walks up to the root), so that the
//! root's queue length stays the sum of what its tree holds.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};

use ipxmit::sched::{ClassOp, ClassRequest, ClassSpec, QdiscOp, QdiscSpec};
use ipxmit::{MsgFlags, Stack, UdpSocket};

/// `1:` htb, class 1:1, on it `10:` htb (default 1), class 10:1, on it
/// `11:` codel of `limit` packets; every datagram goes 1:1 → 10:1 → 11:.
fn tree(stack: &Stack, limit: u32) {
    let add = QdiscOp::Add;
    let htb = |d: &str| d.parse::<QdiscSpec>().unwrap();
    stack
        .qdisc_modify("eth0", add, Some(1 << 16), &htb("htb default 1"))
        .unwrap();
    let class = |parent: u32, classid: u32| ClassRequest {
        op: ClassOp::Add,
        parent,
        classid,
        spec: ClassSpec::parse(&["htb", "rate", "8bit"]).unwrap(),
    };
    stack
        .class_modify("eth0", &class(1 << 16, 0x1_0001))
        .unwrap();
    stack
        .qdisc_modify_at(
            "eth0",
            0x1_0001,
            add,
            Some(0x10 << 16),
            &htb("htb default 1"),
        )
        .unwrap();
    stack
        .class_modify("eth0", &class(0x10 << 16, 0x10_0001))
        .expect("a class of a qdisc below the root");
    let codel: QdiscSpec = format!("codel limit {limit}").parse().unwrap();
    stack
        .qdisc_modify_at("eth0", 0x10_0001, add, Some(0x11 << 16), &codel)
        .unwrap();
}

/// Sends `n` datagrams of 100 bytes (a rate of 8 bit/s lets one through).
fn send(stack: &std::sync::Arc<Stack>, n: usize) {
    let mut s = UdpSocket::new(stack);
    s.bind(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5000))
        .unwrap();
    for k in 0..n {
        let dst = SocketAddrV4::new(common::PEER, 9);
        s.send_to(&common::payload(100, k), dst, MsgFlags::NONE)
            .unwrap();
    }
}

/// The root's queue length and drops.
fn root(stack: &Stack) -> (u64, u64) {
    let d = stack.device("eth0").unwrap();
    let st = d.queues()[0].with_qdisc(|q| *q.stats());
    (st.qlen, st.drops)
}

#[test]
fn a_change_deep_in_the_tree_reduces_every_qdisc_above() {
    let (stack, wire) = common::mem_host(common::eth0(), 1, 1024);
    tree(&stack, 100);
    send(&stack, 10);
    let held = 10 - wire.len() as u64;
    assert!(held > 4, "the bucket lets few through: {held} held");
    assert_eq!(root(&stack), (held, 0), "held three levels down");
    let codel: QdiscSpec = "codel limit 4".parse().unwrap();
    let dropped = stack.counters().dropped_total();
    stack
        .qdisc_modify_at("eth0", 0x10_0001, QdiscOp::Change, Some(0x11 << 16), &codel)
        .unwrap();
    assert_eq!(
        root(&stack),
        (4, held - 4),
        "trimmed at 11:, gone from 1: too"
    );
    let trimmed = stack.counters().dropped_total() - dropped;
    assert_eq!(trimmed, held - 4, "each counted under a reason");
}

#[test]
fn deleting_a_class_below_the_root_drops_its_packets_from_the_root() {
    let (stack, wire) = common::mem_host(common::eth0(), 1, 1024);
    tree(&stack, 100);
    send(&stack, 6);
    assert_eq!(root(&stack).0, 6 - wire.len() as u64);
    assert!(root(&stack).0 > 0);
    stack
        .qdisc_delete_at("eth0", 0x10_0001, None)
        .expect("the codel on 10:1 deleted");
    assert_eq!(root(&stack).0, 0, "its packets left the root's count");
    send(&stack, 3);
    let held = root(&stack).0;
    assert!(held > 0);
    stack
        .class_delete("eth0", 0x10 << 16, 0x10_0001)
        .expect("class 10:1 deleted");
    assert_eq!(
        root(&stack).0,
        0,
        "the {held} it held left the root's count"
    );
}
