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

/// `ip -s link show DEV`, laid out as iproute2 6.1 prints it (the trailing
/// blanks of the statistics lines included), then ipxmit's byte queue limit
/// lines.
pub fn ip_link(dev: &NetDevice) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}: {}: <{}> mtu {} qdisc {} state {} mode DEFAULT group default qlen {}",
        dev.ifindex(),
        dev.name(),
        link_flags(dev).join(","),
        dev.mtu(),
        root_qdisc(dev),
        operstate(dev),
        dev.txqueuelen()
    );
    o.push_str(&link_layer_line(dev));
    o.push_str(&stats_lines(dev));
    bql_lines(&mut o, dev);
    o
}

/// The link-layer line of `ip link` / `ip addr` (`    link/ether MAC brd
/// ff:ff:ff:ff:ff:ff`), newline included.
pub(crate) fn link_layer_line(dev: &NetDevice) -> String {
    if dev.is_loopback() {
        return "    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n".to_string();
    }
    match dev.link() {
        ipxmit::LinkType::Ethernet => {
            format!("    link/ether {} brd ff:ff:ff:ff:ff:ff\n", dev.hw_addr())
        }
        ipxmit::LinkType::L3 => "    link/none \n".to_string(),
    }
}

/// The statistics lines of `ip -s link` / `ip -s addr` (the trailing
/// blanks included).
pub(crate) fn stats_lines(dev: &NetDevice) -> String {
    let s = dev.stats.snapshot();
    let mut o = String::new();
    let rows = [
        (
            "RX:  bytes packets errors dropped  missed   mcast",
            [s.rx_bytes, s.rx_packets, 0, s.rx_dropped, 0, 0],
        ),
        (
            "TX:  bytes packets errors dropped carrier collsns",
            [s.tx_bytes, s.tx_packets, s.tx_errors, s.tx_dropped, 0, 0],
        ),
    ];
    for (head, v) in rows {
        let _ = writeln!(o, "    {head}           ");
        let _ = writeln!(
            o,
            "    {:>10} {:>7} {:>6} {:>7} {:>7} {:>7} ",
            v[0], v[1], v[2], v[3], v[4], v[5]
        );
    }
    o
}

/// The interface flags `ip link` lists: an Ethernet link as a veth, a bare
/// IP link as a TUN device.
pub(crate) fn link_flags(dev: &NetDevice) -> Vec<&'static str> {
    let mut f = match dev.link() {
        _ if dev.is_loopback() => vec!["LOOPBACK"],
        ipxmit::LinkType::Ethernet => vec!["BROADCAST", "MULTICAST"],
        ipxmit::LinkType::L3 => vec!["POINTOPOINT", "MULTICAST", "NOARP"],
    };
    if dev.is_up() {
        f.extend(["UP", "LOWER_UP"]);
    }
    f
}

/// `state`/`operstate`: `UP` or `DOWN`; an up bare IP link says `UNKNOWN`,
/// as a TUN device (no carrier notion) does.
pub(crate) fn operstate(dev: &NetDevice) -> &'static str {
    match (dev.is_up(), dev.link()) {
        (false, _) => "DOWN",
        (true, _) if dev.is_loopback() => "UNKNOWN",
        (true, ipxmit::LinkType::Ethernet) => "UP",
        (true, ipxmit::LinkType::L3) => "UNKNOWN",
    }
}

/// The root qdisc's kind: `mq` on a multi-queue device with the default
/// root, else the (one) tree's root.
pub(crate) fn root_qdisc(dev: &NetDevice) -> String {
    if dev.mq_root().is_some() {
        return "mq".to_string();
    }
    dev.queues()[0].with_qdisc(|q| q.kind().to_string())
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

/// `ip -j -s link show DEV`: the fields of iproute2 6.1, in its order and
/// nesting (no `link` key: ipxmit's links have no peer device).
pub fn ip_link_json(dev: &NetDevice) -> Value {
    let mut v = serde_json::Map::new();
    v.insert("ifindex".into(), json!(dev.ifindex()));
    v.insert("ifname".into(), json!(dev.name()));
    v.insert("flags".into(), json!(link_flags(dev)));
    v.insert("mtu".into(), json!(dev.mtu()));
    v.insert("qdisc".into(), json!(root_qdisc(dev)));
    v.insert("operstate".into(), json!(operstate(dev)));
    v.insert("linkmode".into(), json!("DEFAULT"));
    v.insert("group".into(), json!("default"));
    v.insert("txqlen".into(), json!(dev.txqueuelen()));
    v.extend(link_layer_json(dev));
    v.insert("stats64".into(), stats64_json(dev));
    Value::Object(v)
}

/// The link-layer fields of `ip -j link` / `ip -j addr`: `link_type`,
/// and an Ethernet link's `address` and `broadcast`.
pub(crate) fn link_layer_json(dev: &NetDevice) -> serde_json::Map<String, Value> {
    let mut v = serde_json::Map::new();
    match dev.link() {
        _ if dev.is_loopback() => {
            v.insert("link_type".into(), json!("loopback"));
            v.insert("address".into(), json!("00:00:00:00:00:00"));
            v.insert("broadcast".into(), json!("00:00:00:00:00:00"));
        }
        ipxmit::LinkType::Ethernet => {
            v.insert("link_type".into(), json!("ether"));
            v.insert("address".into(), json!(dev.hw_addr().to_string()));
            v.insert("broadcast".into(), json!("ff:ff:ff:ff:ff:ff"));
        }
        ipxmit::LinkType::L3 => {
            v.insert("link_type".into(), json!("none"));
        }
    }
    v
}

/// `stats64` of `ip -j -s link`.
pub(crate) fn stats64_json(dev: &NetDevice) -> Value {
    let s = dev.stats.snapshot();
    json!({
        "rx": {"bytes": s.rx_bytes, "packets": s.rx_packets, "errors": 0,
               "dropped": s.rx_dropped, "over_errors": 0, "multicast": 0},
        "tx": {"bytes": s.tx_bytes, "packets": s.tx_packets, "errors": s.tx_errors,
               "dropped": s.tx_dropped, "carrier_errors": 0, "collisions": 0}
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

/// `tc -s -j qdisc show` (every device in `devs`, each object naming its
/// `dev`) at `now`: the objects `tc` prints, options as objects, handles as
/// the qdiscs have them.
pub fn tc_qdisc_json(devs: &[Arc<NetDevice>], now: Instant) -> Value {
    let opts = crate::script::tc::ShowOpts {
        stats: true,
        json: true,
        ..Default::default()
    };
    let text = crate::script::tc::qdisc_show(devs, true, opts, now, None);
    serde_json::from_str(&text).unwrap_or_else(|_| json!([]))
}

/// `nstat` (`nstat -az` with `all`): the `#kernel` header, then a line per
/// MIB counter, only non-zero ones unless `all`, in `nstat`'s columns
/// (`%-32s%-16llu%6.1f`; no history, so the rate is 0.0). ipxmit's own
/// counters are in [`ipxmit_counters`], not here.
pub fn nstat(stack: &Stack, all: bool) -> String {
    let mut o = String::from("#kernel\n");
    for (m, v) in stack.counters().mib_snapshot() {
        if shown(m, v, all) {
            let _ = writeln!(o, "{:<32}{:<16}{:>6.1}", m.name(), v, 0.0);
        }
    }
    o
}

/// `nstat -j` (`nstat -j -az` with `all`): `{"kernel": {NAME: value, ...}}`.
pub fn nstat_json(stack: &Stack, all: bool) -> Value {
    let mib = stack.counters().mib_snapshot().into_iter();
    let kernel = json_counts(
        mib.filter(|&(m, v)| shown(m, v, all))
            .map(|(m, v)| (m.name(), v)),
    );
    json!({ "kernel": kernel })
}

/// Whether `nstat` prints counter `m` of value `v`: non-zero ones, or all
/// with `-a`, but for the per-type `IcmpMsg` counters, which the kernel
/// lists in `/proc/net/snmp` only once non-zero.
fn shown(m: ipxmit::stats::Mib, v: u64, all: bool) -> bool {
    v != 0 || (all && !m.name().starts_with("IcmpMsg"))
}

/// ipxmit's own counters, which no Linux tool prints: drops by reason and
/// how `send_batch`'s messages went (built in one pass, or through
/// `sendmsg` and why). Each block is a header line `ipxmit ...:` then
/// indented `NAME value` lines (only non-zero ones unless `all`), so that an
/// `nstat` parser stops before it; nothing when no line is left.
pub fn ipxmit_counters(stack: &Stack, all: bool) -> String {
    let c = stack.counters();
    let mut o = String::new();
    let drops = c.drop_snapshot().into_iter().map(|(r, v)| (r.name(), v));
    section(&mut o, "ipxmit drop reasons:", drops, all);
    let paths = c
        .batch_path_snapshot()
        .into_iter()
        .map(|(p, v)| (p.name(), v));
    section(&mut o, "ipxmit send_batch messages:", paths, all);
    o
}

/// ipxmit's own counters as JSON: `{"drop_reasons": {...}, "send_batch":
/// {...}}`, every counter by its name.
pub fn ipxmit_json(stack: &Stack) -> Value {
    let c = stack.counters();
    let drops = json_counts(c.drop_snapshot().into_iter().map(|(r, v)| (r.name(), v)));
    let paths = json_counts(
        c.batch_path_snapshot()
            .into_iter()
            .map(|(p, v)| (p.name(), v)),
    );
    json!({"drop_reasons": drops, "send_batch": paths})
}

/// The statistics both `send --json` and `run --json` end with, one shape:
/// `links` (`ip -j -s link` objects), `qdiscs` (`tc -j -s qdisc show`),
/// `nstat` (`nstat -j`) and `ipxmit` (ipxmit's own counters; callers add
/// their own keys to it).
pub fn stats_json(
    devs: &[Arc<NetDevice>],
    stack: &Stack,
    all: bool,
) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    let links: Vec<Value> = devs.iter().map(|d| ip_link_json(d)).collect();
    m.insert("links".into(), Value::Array(links));
    m.insert("qdiscs".into(), tc_qdisc_json(devs, stack.now()));
    m.insert("nstat".into(), nstat_json(stack, all));
    m.insert("ipxmit".into(), ipxmit_json(stack));
    m
}

/// One of ipxmit's blocks: `title`, then an indented line per counter (only
/// non-zero ones unless `all`); nothing when no line is left.
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
        let _ = writeln!(o, "    {name:<28}{v}");
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

/// One line on what a verifying peer received on `dev`'s wire (`ipxmit
/// peer ...`, not a format of a Linux tool), then its non-zero drop reasons.
pub fn peer_line(dev: &str, addr: Ipv4Addr, mac: EthernetAddress, s: &PeerStats) -> String {
    let mut o = format!(
        "ipxmit peer {addr} ({mac}) on {dev}: {} frames, {} UDP datagrams intact ({} reassembled), \
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

/// One row of the drop summary: where, why and how many.
struct DropRow {
    count: u64,
    reason: &'static str,
    function: &'static str,
    kernel: &'static str,
}

/// The drops by site, most first, then each reason's drops that no site
/// named (ipxmit's receive side counts by reason alone).
fn drop_rows(stack: &Stack) -> Vec<DropRow> {
    use ipxmit::stats::DropSite;
    let c = stack.counters();
    let mut rows: Vec<DropRow> = c
        .site_snapshot()
        .into_iter()
        .filter(|&(_, n)| n != 0)
        .map(|(s, count)| DropRow {
            count,
            reason: s.reason().name(),
            function: s.function(),
            kernel: s.kernel(),
        })
        .collect();
    for (r, n) in c.drop_snapshot() {
        let sited: u64 = DropSite::ALL
            .iter()
            .filter(|s| s.reason() == r)
            .map(|&s| c.dropped_at(s))
            .sum();
        if n > sited {
            rows.push(DropRow {
                count: n - sited,
                reason: r.name(),
                function: "-",
                kernel: "-",
            });
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.count));
    rows
}

/// A `dropwatch`-like summary (`run --drops`, `send --drops`): one line
/// per place packets were freed without being sent — how many, the
/// kernel's drop reason, the kernel function whose `kfree_skb_reason` it
/// mirrors and ipxmit's function — then the total.
pub fn drop_summary(stack: &Stack) -> String {
    let rows = drop_rows(stack);
    let total: u64 = rows.iter().map(|r| r.count).sum();
    let mut o = String::from("ipxmit drops (dropwatch):\n");
    for r in &rows {
        let _ = writeln!(
            o,
            "{:>8} drops at {:<26} {:<17} ipxmit {}",
            r.count, r.kernel, r.reason, r.function
        );
    }
    let _ = writeln!(o, "{total:>8} drops in all");
    o
}

/// [`drop_summary`] as JSON: `[{"count", "reason", "kernel", "function"}]`.
pub fn drop_summary_json(stack: &Stack) -> Value {
    let rows: Vec<Value> = drop_rows(stack)
        .iter()
        .map(|r| {
            json!({"count": r.count, "reason": r.reason, "kernel": r.kernel,
                   "function": r.function})
        })
        .collect();
    Value::Array(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipxmit::dev::DevConfig;
    use ipxmit_drivers::null::NullCounters;

    /// A bare IP link (TUN-like) reads as `ip -j -s link show dev t0` of a
    /// TUN device on iproute2 6.1 (captured on the development machine): no
    /// `address`/`broadcast`, `link_type` `none`, the flags and state of a TUN
    /// device with its file open (`UP,LOWER_UP`, `UNKNOWN`); the text says
    /// `link/none ` (with its trailing blank).
    #[test]
    fn l3_link_reads_as_a_tun_device() {
        let stack = Stack::new();
        let mut cfg = DevConfig::ethernet("t0", EthernetAddress([2, 0, 0, 0, 0, 9]));
        cfg.link = ipxmit::LinkType::L3;
        let dev = stack
            .add_device(cfg, NullCounters::new().drivers(1))
            .unwrap();
        let v = ip_link_json(&dev);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let tun = [
            "ifindex",
            "ifname",
            "flags",
            "mtu",
            "qdisc",
            "operstate",
            "linkmode",
            "group",
            "txqlen",
            "link_type",
            "stats64",
        ];
        assert_eq!(keys, tun);
        assert_eq!(v["link_type"], "none");
        let flags = ["POINTOPOINT", "MULTICAST", "NOARP", "UP", "LOWER_UP"];
        assert_eq!(v["flags"], json!(flags));
        assert_eq!(v["operstate"], "UNKNOWN", "as an up TUN device");
        assert_eq!(v["qdisc"], "pfifo_fast");
        assert!(ip_link(&dev).contains("\n    link/none \n"));
    }
}
