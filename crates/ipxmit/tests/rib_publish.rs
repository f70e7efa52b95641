//! Routing changes are made in place and published without copying the
//! tables (issue 19, "tables that scale"): a change waits for lookups in
//! flight, as `synchronize_rcu()` lets RCU readers finish, and copies the
//! state only for a caller that keeps a snapshot (`Stack::rib()`) past the
//! wait. The routing state's address tells a copy from an in-place change.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use ipnet::Ipv4Net;
use ipxmit::dev::{DevConfig, Driver, TxStatus};
use ipxmit::route::{FlowKey, Rib};
use ipxmit::stack::RouteSpec;
use ipxmit::wire::EthernetAddress;
use ipxmit::{PacketBuf, Stack};

/// A driver that accepts and drops every frame.
struct Sink;

impl Driver for Sink {
    fn start_xmit(&mut self, _pkt: PacketBuf, _more: bool) -> TxStatus {
        TxStatus::Ok
    }
}

/// A stack with `dum0` up on 10.0.0.1/8.
fn stack() -> Arc<Stack> {
    let stack = Stack::new();
    let mac = EthernetAddress([2, 0, 0, 0, 0, 1]);
    stack
        .add_device(DevConfig::ethernet("dum0", mac), vec![Box::new(Sink)])
        .unwrap();
    stack.set_link_up("dum0", true).unwrap();
    stack
        .add_addr("dum0", "10.0.0.1/8".parse().unwrap())
        .unwrap();
    stack
}

/// Where the routing state lives now (no snapshot kept).
fn rib_at(stack: &Stack) -> *const Rib {
    Arc::as_ptr(&stack.rib())
}

/// `n` /32 routes in 10.1/16 and up, starting at `first`.
fn add_hosts(stack: &Stack, first: u32, n: u32) {
    for i in first..first + n {
        let a = Ipv4Addr::from(0x0a01_0000 + i);
        let spec = RouteSpec::new(Ipv4Net::new(a, 32).unwrap(), "dum0");
        stack.add_route(spec).unwrap();
    }
}

#[test]
fn changes_without_readers_are_made_in_place() {
    let stack = stack();
    let at = rib_at(&stack);
    add_hosts(&stack, 0, 1000);
    stack
        .del_route("10.1.0.7/32".parse().unwrap(), None)
        .unwrap();
    stack.set_link_up("dum0", false).unwrap();
    stack.set_link_up("dum0", true).unwrap();
    assert_eq!(
        rib_at(&stack),
        at,
        "a change with no reader copied the state"
    );
}

#[test]
fn lookups_in_flight_do_not_make_a_change_copy_the_tables() {
    let stack = stack();
    add_hosts(&stack, 0, 1000);
    let at = rib_at(&stack);
    let stop = Arc::new(AtomicBool::new(false));
    let lookups = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stack, stop, lookups) = (stack.clone(), stop.clone(), lookups.clone());
        std::thread::spawn(move || {
            let key = FlowKey::to(Ipv4Addr::new(10, 1, 0, 9));
            while !stop.load(Ordering::Relaxed) {
                assert!(stack.route_get(&key).is_ok());
                lookups.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while lookups.load(Ordering::Relaxed) == 0 {
        std::thread::yield_now();
    }
    // On a busy 2-core machine the reader may sit descheduled through a
    // whole batch of changes: keep adding until it has looked up while
    // the changes were being made (bounded: 100,000 routes).
    let before = lookups.load(Ordering::Relaxed);
    let (mut added, mut during) = (0, 0);
    while added < 2000 || (during < 100 && added < 100_000) {
        add_hosts(&stack, 1000 + added, 500);
        added += 500;
        during = lookups.load(Ordering::Relaxed) - before;
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert!(
        during > 0,
        "the reader made no lookup while {added} routes were added"
    );
    assert_eq!(
        rib_at(&stack),
        at,
        "a change copied the state ({during} lookups)"
    );
    let key = FlowKey::to(Ipv4Addr::new(10, 1, 11, 183));
    assert!(stack.route_get(&key).is_ok(), "route 2999 was added");
}

#[test]
fn a_kept_snapshot_keeps_its_state_and_the_change_gets_a_copy() {
    let stack = stack();
    add_hosts(&stack, 0, 10);
    let snapshot = stack.rib();
    add_hosts(&stack, 10, 1);
    let new = FlowKey::to(Ipv4Addr::new(10, 1, 0, 10));
    let found = |rib: &Rib| rib.lookup(&new).map(|r| r.prefix.prefix_len());
    assert_eq!(
        found(&snapshot).ok(),
        Some(8),
        "the snapshot changed under its reader"
    );
    assert_eq!(found(&stack.rib()).ok(), Some(32));
    assert_ne!(Arc::as_ptr(&snapshot), rib_at(&stack));
}
