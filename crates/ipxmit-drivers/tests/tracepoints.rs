//! The `tracing` events at the kernel's tracepoints (`ipxmit::trace`):
//! names, targets, levels and fields, for a send through an in-memory
//! device with a qdisc, a qdisc drop, a route lookup and a neighbour update,
//! collected by a subscriber of the test's own.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};

use ipxmit::dev::DevConfig;
use ipxmit::neigh::NudState;
use ipxmit::stats::DropReason;
use ipxmit::wire::EthernetAddress;
use ipxmit::{ManualClock, MsgFlags, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata};

const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const MAC_US: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const MAC_PEER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 3]);

/// One event as the test saw it.
#[derive(Clone, Debug)]
struct Seen {
    name: &'static str,
    target: &'static str,
    level: Level,
    fields: BTreeMap<&'static str, String>,
}

impl Seen {
    fn field(&self, k: &str) -> &str {
        self.fields
            .get(k)
            .unwrap_or_else(|| panic!("{} has no field {k}: {self:?}", self.name))
    }
}

struct Fields(BTreeMap<&'static str, String>);

impl Visit for Fields {
    fn record_debug(&mut self, f: &Field, v: &dyn fmt::Debug) {
        self.0.insert(f.name(), format!("{v:?}"));
    }
}

/// A subscriber that keeps every event.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Seen>>>);

impl tracing::Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut f = Fields(BTreeMap::new());
        e.record(&mut f);
        let m = e.metadata();
        self.0.lock().unwrap().push(Seen {
            name: m.name(),
            target: m.target(),
            level: *m.level(),
            fields: f.0,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Collect {
    /// Runs `f` with this subscriber and returns the events it saw.
    fn run(f: impl FnOnce()) -> Vec<Seen> {
        let c = Collect::default();
        tracing::subscriber::with_default(c.clone(), f);
        let v = c.0.lock().unwrap().clone();
        v
    }
}

fn named<'a>(ev: &'a [Seen], name: &str) -> Vec<&'a Seen> {
    ev.iter().filter(|e| e.name == name).collect()
}

fn host(qdisc: &str) -> (Arc<Stack>, Arc<MemWire>) {
    let stack = Stack::with_clock(Arc::new(ManualClock::new()));
    let wire = MemWire::new(4096);
    stack
        .add_device(DevConfig::ethernet("eth0", MAC_US), wire.drivers(1))
        .unwrap();
    stack
        .add_addr("eth0", "10.0.0.1/24".parse().unwrap())
        .unwrap();
    stack
        .replace_qdisc("eth0", &qdisc.parse().unwrap())
        .unwrap();
    (stack, wire)
}

fn send(s: &mut UdpSocket, n: usize) {
    for _ in 0..n {
        let _ = s.send_to(&[7; 100], SocketAddrV4::new(PEER, 9), MsgFlags::NONE);
    }
}

#[test]
fn a_send_through_a_qdisc_fires_the_net_and_qdisc_tracepoints() {
    let (stack, wire) = host("pfifo limit 10");
    let ev = Collect::run(|| {
        stack
            .add_neigh("eth0", PEER, MAC_PEER, NudState::Permanent)
            .unwrap();
        let dev = stack.device("eth0").unwrap();
        let mut s = UdpSocket::new(&stack);
        dev.queues()[0].ctl().stop();
        send(&mut s, 3);
        dev.queues()[0].ctl().wake();
        stack.poll();
    });
    assert_eq!(wire.drain(|_| {}), 3, "the three datagrams left");

    let n = named(&ev, "neigh_update");
    assert_eq!(n.len(), 1, "{ev:#?}");
    let n = n[0];
    assert_eq!((n.target, n.level), ("ipxmit::neigh", Level::INFO));
    assert_eq!(n.field("primary_key4"), "10.0.0.3");
    assert_eq!(n.field("ifindex"), "2");
    assert_eq!(n.field("nud_state"), "NONE");
    assert_eq!(n.field("new_state"), "PERMANENT");
    assert_eq!(n.field("lladdr"), "-");
    assert_eq!(n.field("new_lladdr"), "02:00:00:00:00:03");
    assert_eq!(n.field("admin"), "true");

    let f = named(&ev, "fib_table_lookup");
    // The socket caches its route: three sends, not three lookups. (The
    // first send looks up before its autobind, with sport 0, so the
    // second's key differs once.)
    assert!((1..=2).contains(&f.len()), "{f:#?}");
    let f = f[f.len() - 1];
    assert_eq!((f.target, f.level), ("ipxmit::fib", Level::INFO));
    assert_eq!(f.field("tb_id"), "254", "local merged into main");
    assert_eq!(f.field("dst"), "10.0.0.3");
    assert_eq!(f.field("dport"), "9");
    assert_eq!(f.field("proto"), "17");
    assert_eq!(f.field("dev"), "eth0");
    assert_eq!(f.field("gw"), "0.0.0.0");
    assert_eq!(f.field("err"), "0");

    let q = named(&ev, "net_dev_queue");
    assert_eq!(q.len(), 3);
    assert_eq!((q[0].target, q[0].level), ("ipxmit::net", Level::TRACE));
    assert_eq!((q[0].field("dev"), q[0].field("len")), ("eth0", "142"));

    let d: Vec<_> = named(&ev, "qdisc_dequeue")
        .into_iter()
        .filter(|e| e.field("packets") != "0")
        .collect();
    assert_eq!(d.len(), 1, "one bulk dequeue of all three: {ev:#?}");
    assert_eq!((d[0].target, d[0].level), ("ipxmit::qdisc", Level::DEBUG));
    assert_eq!(d[0].field("packets"), "3");
    assert_eq!(d[0].field("dev"), "eth0");
    assert_eq!(d[0].field("parent"), "0xffffffff", "TC_H_ROOT");
    assert_eq!(d[0].field("txq_state"), "0x0");

    let s = named(&ev, "net_dev_start_xmit");
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].field("protocol"), "0x0800");
    assert_eq!(s[0].field("len"), "142");
    assert_eq!(s[0].field("network_offset"), "14");
    assert_eq!(s[0].field("transport_offset"), "34");
    assert_eq!(s[0].field("queue_mapping"), "1");
    let x = named(&ev, "net_dev_xmit");
    assert_eq!(x.len(), 3);
    assert_eq!((x[0].target, x[0].level), ("ipxmit::net", Level::TRACE));
    assert_eq!(
        (x[0].field("dev"), x[0].field("len"), x[0].field("rc")),
        ("eth0", "142", "0")
    );
    assert!(named(&ev, "kfree_skb").is_empty(), "nothing dropped");
}

#[test]
fn a_qdisc_drop_fires_kfree_skb_with_its_reason_and_place() {
    let (stack, _wire) = host("pfifo limit 0");
    let ev = Collect::run(|| {
        stack
            .add_neigh("eth0", PEER, MAC_PEER, NudState::Permanent)
            .unwrap();
        let dev = stack.device("eth0").unwrap();
        dev.queues()[0].ctl().stop();
        send(&mut UdpSocket::new(&stack), 2);
    });
    assert_eq!(stack.counters().dropped(DropReason::QdiscDrop), 2);
    let k = named(&ev, "kfree_skb");
    assert_eq!(k.len(), 2, "{ev:#?}");
    for e in k {
        assert_eq!((e.target, e.level), ("ipxmit::skb", Level::INFO));
        assert_eq!(e.field("reason"), "QDISC_DROP");
        assert_eq!(e.field("packets"), "1");
        assert!(
            e.field("location").contains("crates/ipxmit/src/"),
            "the source line that counted it: {e:?}"
        );
    }
}

#[test]
fn a_lookup_without_a_route_reports_the_error() {
    let (stack, _wire) = host("pfifo limit 10");
    let ev = Collect::run(|| {
        let to = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 9);
        let e = UdpSocket::new(&stack).send_to(&[1; 8], to, MsgFlags::NONE);
        assert!(e.is_err());
    });
    let f = named(&ev, "fib_table_lookup");
    assert!(!f.is_empty(), "{ev:#?}");
    let last = f[f.len() - 1];
    assert_eq!(last.field("dst"), "192.0.2.1");
    assert_eq!(last.field("dev"), "-");
    assert_eq!(last.field("err"), "-11", "EAGAIN: no route in the table");
    let k = named(&ev, "kfree_skb");
    assert!(k.is_empty(), "a failed route lookup frees no packet: {k:?}");
}
