//! Statistics as network engineers read them: `ip -s link`, `tc -s qdisc show`
//! and `nstat`, in text and as JSON values.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipxmit::time::Instant;
use ipxmit::wire::EthernetAddress;
use ipxmit::{NetDevice, Stack};
use ipxmit_drivers::peer::PeerStats;
use serde_json::{json, Value};

/// `ip -s link show DEV`.
pub fn ip_link(dev: &NetDevice) -> String {
    let s = dev.stats.snapshot();
    let qdisc = dev.queues()[0].with_qdisc(|q| q.kind());
    let state = if dev.is_up() { "UP" } else { "DOWN" };
    let flags = if dev.is_up() {
        "BROADCAST,MULTICAST,UP,LOWER_UP"
    } else {
        "BROADCAST,MULTICAST"
    };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}: {}: <{flags}> mtu {} qdisc {qdisc} state {state} mode DEFAULT group default qlen {}",
        dev.ifindex(),
        dev.name(),
        dev.mtu(),
        dev.txqueuelen()
    );
    match dev.link() {
        ipxmit::LinkType::Ethernet => {
            let _ = writeln!(o, "    link/ether {} brd ff:ff:ff:ff:ff:ff", dev.hw_addr());
        }
        ipxmit::LinkType::L3 => {
            let _ = writeln!(o, "    link/none");
        }
    }
    let _ = writeln!(o, "    RX:  bytes packets errors dropped  missed   mcast");
    let _ = writeln!(
        o,
        "    {:>10} {:>7} {:>6} {:>7} {:>7} {:>7}",
        s.rx_bytes, s.rx_packets, 0, s.rx_dropped, 0, 0
    );
    let _ = writeln!(o, "    TX:  bytes packets errors dropped carrier collsns");
    let _ = writeln!(
        o,
        "    {:>10} {:>7} {:>6} {:>7} {:>7} {:>7}",
        s.tx_bytes, s.tx_packets, s.tx_errors, s.tx_dropped, 0, 0
    );
    bql_lines(&mut o, dev);
    o
}

/// The byte queue limits of each transmit queue whose driver uses them,
/// as the files of `/sys/class/net/DEV/queues/tx-N/byte_queue_limits/`
/// read (`hold_time` in milliseconds).
fn bql_lines(o: &mut String, dev: &NetDevice) {
    for (i, q) in dev.queues().iter().enumerate() {
        let Some(b) = q.ctl().bql() else { continue };
        let _ = writeln!(
            o,
            "    tx-{i} byte_queue_limits: hold_time 1000 inflight {} limit {} limit_max {} limit_min {}",
            b.inflight(),
            b.limit(),
            b.max_limit,
            b.min_limit
        );
    }
}

/// `ip -s link` as JSON (the field names of `ip -j -s link`).
pub fn ip_link_json(dev: &NetDevice) -> Value {
    let s = dev.stats.snapshot();
    json!({
        "ifindex": dev.ifindex(),
        "ifname": dev.name(),
        "mtu": dev.mtu(),
        "txqlen": dev.txqueuelen(),
        "address": dev.hw_addr().to_string(),
        "stats64": {
            "rx": {"bytes": s.rx_bytes, "packets": s.rx_packets, "errors": 0, "dropped": s.rx_dropped},
            "tx": {"bytes": s.tx_bytes, "packets": s.tx_packets, "errors": s.tx_errors, "dropped": s.tx_dropped}
        }
    })
}

/// `tc -s qdisc show dev DEV` at `now`, as `tc` lines in scripts print it.
pub fn tc_qdisc(dev: &Arc<NetDevice>, now: Instant) -> String {
    let opts = crate::script::tc::ShowOpts {
        stats: true,
        ..Default::default()
    };
    crate::script::tc::qdisc_show(std::slice::from_ref(dev), false, opts, now, None)
}

/// `tc -s qdisc show` (every device) at `now`: each line names its device
/// (`qdisc pfifo_fast 0: dev eth0 root ...`).
pub fn tc_qdisc_all(devs: &[Arc<NetDevice>], now: Instant) -> String {
    let opts = crate::script::tc::ShowOpts {
        stats: true,
        ..Default::default()
    };
    crate::script::tc::qdisc_show(devs, true, opts, now, None)
}

/// `tc -s -j qdisc show` as JSON.
pub fn tc_qdisc_json(dev: &NetDevice) -> Value {
    let v: Vec<Value> = dev
        .queues()
        .iter()
        .map(|q| {
            q.with_qdisc(|qd| {
                let s = qd.stats();
                json!({
                    "kind": qd.kind(), "queue": q.index(), "options": qd.params(),
                    "bytes": s.bytes, "packets": s.packets, "drops": s.drops,
                    "overlimits": s.overlimits, "requeues": s.requeues,
                    "backlog": s.backlog, "qlen": s.qlen
                })
            })
        })
        .collect();
    Value::Array(v)
}

/// `nstat`-style MIB counters (only non-zero ones unless `all`), then drops by
/// reason, then how `send_batch`'s messages went (built in one pass, or
/// through `sendmsg` and why).
pub fn nstat(stack: &Stack, all: bool) -> String {
    let mut o = String::from("#kernel\n");
    for (m, v) in stack.counters().mib_snapshot() {
        if all || v != 0 {
            let _ = writeln!(o, "{:<32}{:<18}{:.1}", m.name(), v, 0.0);
        }
    }
    let c = stack.counters();
    let drops = c.drop_snapshot().into_iter().map(|(r, v)| (r.name(), v));
    section(&mut o, "#drop reasons", drops, all);
    // ipxmit's own: how the messages of send_batch (sendmmsg) went.
    let paths = c
        .batch_path_snapshot()
        .into_iter()
        .map(|(p, v)| (p.name(), v));
    section(&mut o, "#send_batch messages", paths, all);
    o
}

/// The MIB counters, drop reasons and `send_batch` paths as JSON objects.
pub fn nstat_json(stack: &Stack) -> Value {
    let c = stack.counters();
    let mib = json_counts(c.mib_snapshot().into_iter().map(|(m, v)| (m.name(), v)));
    let drops = json_counts(c.drop_snapshot().into_iter().map(|(r, v)| (r.name(), v)));
    let paths = json_counts(
        c.batch_path_snapshot()
            .into_iter()
            .map(|(p, v)| (p.name(), v)),
    );
    json!({"mib": mib, "drops": drops, "send_batch": paths})
}

/// An `nstat` section: `title`, then a line per counter (only non-zero
/// ones unless `all`); nothing when no line is left.
fn section(
    o: &mut String,
    title: &str,
    counts: impl Iterator<Item = (&'static str, u64)>,
    all: bool,
) {
    let mut counts = counts.filter(|&(_, v)| all || v != 0).peekable();
    if counts.peek().is_none() {
        return;
    }
    let _ = writeln!(o, "{title}");
    for (name, v) in counts {
        let _ = writeln!(o, "{name:<32}{v}");
    }
}

/// Named counters as a JSON object.
fn json_counts(
    counts: impl Iterator<Item = (&'static str, u64)>,
) -> serde_json::Map<String, Value> {
    counts
        .map(|(name, v)| (name.to_string(), json!(v)))
        .collect()
}

/// One line on what a verifying peer received on `dev`'s wire, then its
/// non-zero drop reasons.
pub fn peer_line(dev: &str, addr: Ipv4Addr, mac: EthernetAddress, s: &PeerStats) -> String {
    let mut o = format!(
        "peer {addr} ({mac}) on {dev}: {} frames, {} UDP datagrams intact ({} reassembled), \
         {} other IP, {} ARP requests answered, {} dropped\n",
        s.frames,
        s.datagrams,
        s.reassembled,
        s.ip_delivered,
        s.arp_requests,
        s.drops_total()
    );
    for (name, v) in s
        .counters()
        .skip(PeerStats::TOTALS)
        .filter(|&(_, v)| v != 0)
    {
        let _ = writeln!(o, "    {name:<24}{v}");
    }
    o
}

/// A verifying peer's counters as JSON (every counter, by its name).
pub fn peer_json(addr: Ipv4Addr, mac: EthernetAddress, s: &PeerStats) -> Value {
    let counters: serde_json::Map<String, Value> = s
        .counters()
        .map(|(n, v)| (n.to_string(), json!(v)))
        .collect();
    json!({
        "addr": addr.to_string(), "lladdr": mac.to_string(),
        "datagrams": s.datagrams, "reassembled": s.reassembled,
        "drops": s.drops_total(), "counters": counters
    })
}
