//! What `ip route show`, `ip route show cache`, `ip route get` and
//! `ip rule show` print (iproute2 6.1's `print_route` and `print_rule`), as
//! text (every route line ends with one space) and as `-j` JSON.

use std::fmt::Write as _;
use std::sync::Arc;

use ipxmit::route::rules::{proto_name, table_name, FibRule, RuleAction};
use ipxmit::route::{Dst, FlowKey, Route, RouteType, RtnType, RT_TABLE_MAIN};
use ipxmit::{OutRoute, Stack};
use serde_json::{json, Map, Value};

use super::super::ip::IpOpts;
use super::rtnl;

fn json_lines(v: Vec<Value>) -> String {
    format!("{}\n", Value::Array(v))
}

/// A destination as ip prints it: `default`, `A` for a /32, else `A/LEN`.
fn dst_word(r: &Route) -> String {
    match r.prefix.prefix_len() {
        0 => "default".into(),
        32 => r.prefix.addr().to_string(),
        _ => r.prefix.to_string(),
    }
}

/// One `ip route show` line; `table` is printed after the device when the
/// listing is of every table and the route is not in main.
fn route_line(r: &Route, show_table: bool) -> String {
    let mut o = String::new();
    if r.kind != RtnType::Unicast {
        let _ = write!(o, "{} ", r.kind.name());
    }
    o.push_str(&dst_word(r));
    if r.tos != 0 {
        let _ = write!(o, " tos 0x{:x}", r.tos);
    }
    if let Some(d) = &r.dst {
        if let Some(gw) = d.gateway {
            let _ = write!(o, " via {gw}");
        }
        let _ = write!(o, " dev {}", d.dev.name());
    }
    if show_table && r.table != RT_TABLE_MAIN {
        let _ = write!(o, " table {}", table_name(r.table));
    }
    if r.proto.name() != "boot" {
        let _ = write!(o, " proto {}", r.proto.name());
    }
    if let Some(s) = r.scope() {
        let _ = write!(o, " scope {s}");
    }
    if let Some(src) = r.dst.as_ref().and_then(|d| d.prefsrc) {
        let _ = write!(o, " src {src}");
    }
    if r.metric != 0 {
        let _ = write!(o, " metric {}", r.metric);
    }
    if let Some(d) = &r.dst {
        metrics_text(&mut o, d.mtu_metric, d.mtu_locked, d.hoplimit);
        if !d.dev.is_up() {
            o.push_str(" linkdown");
        }
    }
    o.push(' ');
    o
}

/// ` mtu [lock ]N hoplimit H`.
fn metrics_text(o: &mut String, mtu: Option<u32>, lock: bool, hop: Option<u8>) {
    if let Some(m) = mtu {
        let _ = write!(o, " mtu {}{m}", if lock { "lock " } else { "" });
    }
    if let Some(h) = hop {
        let _ = write!(o, " hoplimit {h}");
    }
}

fn metrics_json(m: &mut Map<String, Value>, mtu: Option<u32>, hop: Option<u8>) {
    let mut x = Map::new();
    if let Some(v) = mtu {
        x.insert("mtu".into(), json!(v));
    }
    if let Some(h) = hop {
        x.insert("hoplimit".into(), json!(h));
    }
    if !x.is_empty() {
        m.insert("metrics".into(), json!([x]));
    }
}

fn route_json(r: &Route, show_table: bool) -> Value {
    let mut m = Map::new();
    if r.kind != RtnType::Unicast {
        m.insert("type".into(), json!(r.kind.name()));
    }
    m.insert("dst".into(), json!(dst_word(r)));
    if r.tos != 0 {
        m.insert("tos".into(), json!(format!("0x{:x}", r.tos)));
    }
    if let Some(d) = &r.dst {
        if let Some(gw) = d.gateway {
            m.insert("gateway".into(), json!(gw.to_string()));
        }
        m.insert("dev".into(), json!(d.dev.name()));
    }
    if show_table && r.table != RT_TABLE_MAIN {
        m.insert("table".into(), json!(table_name(r.table)));
    }
    if r.proto.name() != "boot" {
        m.insert("protocol".into(), json!(r.proto.name()));
    }
    if let Some(s) = r.scope() {
        m.insert("scope".into(), json!(s));
    }
    if let Some(src) = r.dst.as_ref().and_then(|d| d.prefsrc) {
        m.insert("prefsrc".into(), json!(src.to_string()));
    }
    if r.metric != 0 {
        m.insert("metric".into(), json!(r.metric));
    }
    let down = r.dst.as_ref().is_some_and(|d| !d.dev.is_up());
    m.insert(
        "flags".into(),
        json!(if down { vec!["linkdown"] } else { vec![] }),
    );
    if let Some(d) = &r.dst {
        metrics_json(&mut m, d.mtu_metric, d.hoplimit);
    }
    Value::Object(m)
}

/// `ip route show [table T|all] [dev D] [type T]`.
pub fn routes(
    stack: &Stack,
    opts: &IpOpts,
    table: u32,
    dev: Option<&str>,
    kind: Option<RtnType>,
) -> Result<String, String> {
    if let Some(d) = dev {
        stack
            .device(d)
            .map_err(|_| format!("Cannot find device \"{d}\""))?;
    }
    let rib = stack.rib();
    let all = table == 0;
    // The kernel walks its table hash by id % 256.
    let mut tables: Vec<_> = rib.tables().filter(|(id, _)| all || *id == table).collect();
    tables.sort_by_key(|(id, _)| (id % 256, *id));
    let keep = |r: &&Route| {
        dev.is_none_or(|d| r.dev_name() == Some(d)) && kind.is_none_or(|k| k == r.kind)
    };
    let list: Vec<&Route> = tables
        .iter()
        .flat_map(|(_, f)| f.routes())
        .filter(keep)
        .collect();
    if opts.json {
        return Ok(json_lines(
            list.iter().map(|r| route_json(r, all)).collect(),
        ));
    }
    Ok(list.iter().map(|r| route_line(r, all) + "\n").collect())
}

/// Whole seconds left until `expires_ns`, as ip prints them (rounded down,
/// so a fresh 600 s exception shows 599).
fn expires_secs(stack: &Stack, expires_ns: u64) -> u64 {
    let now = stack.now().as_nanos();
    expires_ns.saturating_sub(now).saturating_sub(1) / 1_000_000_000
}

/// `ip route show cache`: one entry per path-MTU exception with a cached
/// route.
pub fn cache(stack: &Stack, opts: &IpOpts) -> String {
    let entries = stack.route_cache();
    let mut v = Vec::new();
    let mut o = String::new();
    for (f, nh) in entries {
        let secs = expires_secs(stack, f.expires_ns);
        if opts.json {
            let mut m = Map::new();
            m.insert("dst".into(), json!(f.daddr.to_string()));
            if let Some(gw) = nh.gateway {
                m.insert("gateway".into(), json!(gw.to_string()));
            }
            m.insert("dev".into(), json!(nh.dev.name()));
            m.insert("flags".into(), json!([]));
            m.insert("cache".into(), json!([]));
            m.insert("expires".into(), json!(secs));
            metrics_json(&mut m, Some(f.pmtu), None);
            v.push(Value::Object(m));
            continue;
        }
        let _ = write!(o, "{}", f.daddr);
        if let Some(gw) = nh.gateway {
            let _ = write!(o, " via {gw}");
        }
        let _ = writeln!(o, " dev {} ", nh.dev.name());
        let lock = if f.locked { "lock " } else { "" };
        let _ = writeln!(o, "    cache expires {secs}sec mtu {lock}{} ", f.pmtu);
    }
    if opts.json {
        json_lines(v)
    } else {
        o
    }
}

/// `ip route get`: the flow's route as the kernel answers `RTM_GETROUTE`.
pub fn get(
    stack: &Stack,
    opts: &IpOpts,
    key: &FlowKey,
    oif: Option<&str>,
    from: bool,
) -> Result<String, String> {
    let mut key = *key;
    if let Some(d) = oif {
        let dev = stack
            .device(d)
            .map_err(|_| format!("Cannot find device \"{d}\""))?;
        key.oif = dev.ifindex();
    }
    let out = match stack.route_get(&key) {
        Ok(o) => o,
        Err(e) => return Err(rtnl(&e)),
    };
    let src = if from {
        key.saddr
    } else {
        stack.source_for(&out.dst)
    };
    let g = Got {
        out: &out,
        key: &key,
        src,
        from,
    };
    if opts.json {
        return Ok(json_lines(vec![g.json(stack)]));
    }
    Ok(g.text(stack))
}

/// One `ip route get` answer.
struct Got<'a> {
    out: &'a OutRoute,
    key: &'a FlowKey,
    src: std::net::Ipv4Addr,
    from: bool,
}

impl Got<'_> {
    fn type_word(&self) -> Option<&'static str> {
        match self.out.kind {
            RouteType::Local if self.out.table.is_some() => Some("local"),
            RouteType::Broadcast => Some("broadcast"),
            RouteType::Multicast => Some("multicast"),
            _ => None,
        }
    }

    fn flags(&self) -> Vec<&'static str> {
        let d = &self.out.dst;
        match self.out.kind {
            RouteType::Broadcast => vec!["local", "brd"],
            RouteType::Multicast => vec!["mc"],
            _ if d.dev.is_loopback() => vec!["local"],
            _ => vec![],
        }
    }

    fn table(&self) -> Option<String> {
        self.out
            .table
            .filter(|&t| t != RT_TABLE_MAIN)
            .map(table_name)
    }

    /// The learned or configured MTU shown on the cache line, and whether
    /// it is locked.
    fn mtu(&self) -> Option<(u32, bool)> {
        let d: &Arc<Dst> = &self.out.dst;
        if d.pmtu() != 0 {
            return Some((d.pmtu(), d.pmtu_locked));
        }
        d.mtu_metric.map(|m| (m, d.mtu_locked))
    }

    fn text(&self, stack: &Stack) -> String {
        let d = &self.out.dst;
        let mut o = String::new();
        if let Some(t) = self.type_word() {
            let _ = write!(o, "{t} ");
        }
        let _ = write!(o, "{}", self.key.daddr);
        if self.from {
            let _ = write!(o, " from {}", self.key.saddr);
        }
        if let Some(gw) = d.gateway {
            let _ = write!(o, " via {gw}");
        }
        let _ = write!(o, " dev {}", d.dev.name());
        if let Some(t) = self.table() {
            let _ = write!(o, " table {t}");
        }
        if !self.from {
            let _ = write!(o, " src {}", self.src);
        }
        if self.key.mark != 0 {
            let _ = write!(o, " mark {}", self.key.mark);
        }
        if self.out.kind == RouteType::Multicast {
            o.push_str(" rt_offload_failed");
        }
        o.push_str(" uid 0 \n    cache ");
        let flags = self.flags();
        if !flags.is_empty() {
            let _ = write!(o, "<{}> ", flags.join(","));
        }
        if d.expires_ns != 0 {
            let _ = write!(o, "expires {}sec ", expires_secs(stack, d.expires_ns));
        }
        let mut m = String::new();
        metrics_text(
            &mut m,
            self.mtu().map(|x| x.0),
            self.mtu().is_some_and(|x| x.1),
            d.hoplimit,
        );
        if !m.is_empty() {
            o.push_str(&m[1..]);
            o.push(' ');
        }
        o.push('\n');
        o
    }

    fn json(&self, stack: &Stack) -> Value {
        let d = &self.out.dst;
        let mut m = Map::new();
        if let Some(t) = self.type_word() {
            m.insert("type".into(), json!(t));
        }
        m.insert("dst".into(), json!(self.key.daddr.to_string()));
        if self.from {
            m.insert("from".into(), json!(self.key.saddr.to_string()));
        }
        if let Some(gw) = d.gateway {
            m.insert("gateway".into(), json!(gw.to_string()));
        }
        m.insert("dev".into(), json!(d.dev.name()));
        if let Some(t) = self.table() {
            m.insert("table".into(), json!(t));
        }
        if !self.from {
            m.insert("prefsrc".into(), json!(self.src.to_string()));
        }
        if self.key.mark != 0 {
            m.insert("mark".into(), json!(self.key.mark));
        }
        let fl: Vec<&str> = if self.out.kind == RouteType::Multicast {
            vec!["rt_offload_failed"]
        } else {
            vec![]
        };
        m.insert("flags".into(), json!(fl));
        m.insert("uid".into(), json!(0));
        m.insert("cache".into(), json!(self.flags()));
        if d.expires_ns != 0 {
            m.insert("expires".into(), json!(expires_secs(stack, d.expires_ns)));
        }
        metrics_json(&mut m, self.mtu().map(|x| x.0), d.hoplimit);
        Value::Object(m)
    }
}

fn rule_json(r: &FibRule) -> Value {
    let mut m = Map::new();
    m.insert("priority".into(), json!(r.priority));
    if r.invert {
        m.insert("not".into(), Value::Null);
    }
    let net = |m: &mut Map<String, Value>, k: &str, kl: &str, n: &ipnet::Ipv4Net| {
        m.insert(k.into(), json!(n.addr().to_string()));
        if n.prefix_len() != 32 {
            m.insert(kl.into(), json!(n.prefix_len()));
        }
    };
    match &r.from {
        Some(n) => net(&mut m, "src", "srclen", n),
        None => {
            m.insert("src".into(), json!("all"));
        }
    }
    if let Some(n) = &r.to {
        net(&mut m, "dst", "dstlen", n);
    }
    if r.tos != 0 {
        m.insert("tos".into(), json!(format!("0x{:02x}", r.tos)));
    }
    if r.fwmark != (0, 0) {
        m.insert("fwmark".into(), json!(format!("0x{:x}", r.fwmark.0)));
        if r.fwmark.1 != u32::MAX {
            m.insert("fwmask".into(), json!(format!("0x{:x}", r.fwmark.1)));
        }
    }
    if let Some((n, _)) = &r.iif {
        m.insert("iif".into(), json!(n));
    }
    if let Some((n, _)) = &r.oif {
        m.insert("oif".into(), json!(n));
    }
    if r.ipproto != 0 {
        m.insert("ipproto".into(), json!(proto_name(r.ipproto)));
    }
    for (k, v) in [("sport", r.sport), ("dport", r.dport)] {
        match v {
            Some((a, b)) if a == b => {
                m.insert(k.into(), json!(a));
            }
            Some((a, b)) => {
                m.insert(format!("{k}_start"), json!(a));
                m.insert(format!("{k}_end"), json!(b));
            }
            None => {}
        }
    }
    match r.action {
        RuleAction::Table(t) => m.insert("table".into(), json!(table_name(t))),
        RuleAction::Blackhole => m.insert("action".into(), json!("blackhole")),
        RuleAction::Unreachable => m.insert("action".into(), json!("unreachable")),
        RuleAction::Prohibit => m.insert("action".into(), json!("prohibit")),
        RuleAction::Nop => m.insert("action".into(), json!("nop")),
    };
    Value::Object(m)
}

/// `ip rule show`.
pub fn rules(stack: &Stack, opts: &IpOpts) -> String {
    let rib = stack.rib();
    if opts.json {
        return json_lines(rib.rules().iter().map(rule_json).collect());
    }
    rib.rules().iter().map(|r| format!("{r}\n")).collect()
}
