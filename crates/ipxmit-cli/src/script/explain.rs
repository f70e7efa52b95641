//! `explain NAME [to A:P] len N`: the plan a UDP send will follow, step by
//! step, each step with the kernel function it mirrors, printed for a
//! person or (`--json`) for a program. The plan is the library's
//! ([`UdpSocket::explain`]); this file adds what the script's host knows
//! (the nft base chains at each hook, the link's driver) and prints it.

use std::fmt::Write as _;
use std::io::{self, BufRead, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use ipxmit::nft::{ChainHook, ChainType, Family, Policy, RuleRef, Ruleset};
use ipxmit::socket::explain::{CsumPlan, IdentRule, NeighPlan, Plan, QdiscPath};
use ipxmit::SendError;
use serde_json::{json, Value};

/// Options of `ipxmit explain`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExplainArgs {
    /// A script that builds the host and its sockets (its lines are
    /// carried out, their results not printed); without it, the default
    /// host: `eth0`, an in-memory link to a verifying peer at 10.0.0.2,
    /// address 10.0.0.1/24, and a UDP socket `s`.
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// The plan as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// The send to explain, as a script's `explain` (and `send`) line takes
    /// it: `SOCKET [to A:P] len N [more]`, e.g. `s to 10.0.0.2:9 len 3000`.
    #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
    pub send: Vec<String>,
}

/// The host `ipxmit explain` builds without `--script`.
const DEFAULT_HOST: &str = "link add eth0 type mem peer 10.0.0.2
addr add 10.0.0.1/24 dev eth0
socket s udp
";

/// Runs `ipxmit explain`: the host's lines, then the plan of the send.
/// Exit 0 with a plan, 1 when the send would fail (the plan says how), 2
/// for a wrong line.
pub fn run(a: ExplainArgs) -> Result<ExitCode> {
    let lines: Vec<String> = match &a.script {
        Some(p) => {
            let f = std::fs::File::open(p)
                .with_context(|| format!("cannot read script {}", p.display()))?;
            io::BufReader::new(f).lines().collect::<io::Result<_>>()?
        }
        None => DEFAULT_HOST.lines().map(String::from).collect(),
    };
    let mut host = super::exec::Host::new(false);
    host.stack().set_seed(0);
    let explain = format!("explain {}", a.send.join(" "));
    let last = lines.len() + 1;
    let mut out = io::stdout().lock();
    for (i, text) in lines.iter().chain(std::iter::once(&explain)).enumerate() {
        let r = super::parse::parse_line(text)
            .map_err(super::exec::ExecError::from)
            .and_then(|c| c.map_or(Ok(Vec::new()), |c| host.exec(&c)));
        let events = match r {
            Ok(ev) => ev,
            Err(err) => {
                let _ = writeln!(io::stderr(), "line {}: {err}", i + 1);
                return Ok(ExitCode::from(2));
            }
        };
        for e in events.iter().filter(|_| i + 1 == last) {
            super::write_event(&mut out, a.json, last, e)?;
            if let super::exec::Event::Explain { result, .. } = e {
                if result.plan.is_err() {
                    return Ok(ExitCode::from(1));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One nft base chain on the output path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainInfo {
    /// `output`, `postrouting` or `egress`.
    pub hook: &'static str,
    /// `ip filter output` (family, table, chain).
    pub name: String,
    /// `filter`, `route` or `nat`.
    pub ty: &'static str,
    /// Its priority.
    pub priority: i32,
    /// `accept` or `drop`.
    pub policy: &'static str,
    /// How many rules it holds.
    pub rules: usize,
}

/// An `explain` result: the plan (or the error the send would return)
/// and the host's part.
#[derive(Debug)]
pub struct Explained {
    /// The plan, or the send's error.
    pub plan: Result<Plan, SendError>,
    /// The nft base chains, by hook then priority.
    pub chains: Vec<ChainInfo>,
    /// The output device's driver (`mem`, `tap`, `packet`, `null`, `lo`).
    pub driver: String,
    /// The nft rules that would match the datagram at LOCAL_OUT and at
    /// POST_ROUTING, in the order evaluated ([`ipxmit::nft::Nft::would_match`]).
    pub matched: Vec<(ipxmit::netfilter::HookPoint, Vec<RuleRef>)>,
}

/// The base chains of `rs` in the order the hooks run them.
pub fn chains(rs: &Ruleset) -> Vec<ChainInfo> {
    let mut v: Vec<ChainInfo> = rs
        .tables
        .iter()
        .flat_map(|t| t.chains.iter().map(move |c| (t, c)))
        .filter_map(|(t, c)| {
            let b = c.base.as_ref()?;
            Some(ChainInfo {
                hook: hook_name(b.hook),
                name: format!("{} {} {}", family_name(t.family), t.name, c.name),
                ty: type_name(b.ty),
                priority: b.priority,
                policy: policy_name(b.policy),
                rules: c.rules.len(),
            })
        })
        .collect();
    v.sort_by_key(|c| (hook_order(c.hook), c.priority));
    v
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::Ip => "ip",
        Family::Netdev => "netdev",
    }
}

fn policy_name(p: Policy) -> &'static str {
    match p {
        Policy::Accept => "accept",
        Policy::Drop => "drop",
    }
}

fn hook_name(h: ChainHook) -> &'static str {
    match h {
        ChainHook::Output => "output",
        ChainHook::Postrouting => "postrouting",
        ChainHook::Egress => "egress",
    }
}

fn hook_order(h: &str) -> u8 {
    match h {
        "output" => 0,
        "postrouting" => 1,
        _ => 2,
    }
}

fn type_name(t: ChainType) -> &'static str {
    match t {
        ChainType::Filter => "filter",
        ChainType::Route => "route",
        ChainType::Nat => "nat",
    }
}

/// The text lines: a heading, then one line per step (`step  kernel()
/// what`), continuation lines indented.
pub fn text(line: usize, sock: &str, e: &Explained) -> String {
    let mut out = format!("line {line}: explain {sock}\n");
    let p = match &e.plan {
        Ok(p) => p,
        Err(err) => {
            let _ = writeln!(out, "  the send fails: -1 {err}");
            return out;
        }
    };
    for (step, kernel, what) in steps(p, e) {
        let mut lines = what.lines();
        let first = lines.next().unwrap_or("");
        let _ = writeln!(out, "  {step:<10} {kernel:<24} {first}");
        for l in lines {
            let _ = writeln!(out, "  {:<10} {:<24} {l}", "", "");
        }
    }
    out
}

/// Each step: its name, the kernel function it mirrors, what it decides.
fn steps(p: &Plan, e: &Explained) -> Vec<(&'static str, &'static str, String)> {
    vec![
        ("route", "ip_route_output_flow()", route_text(p)),
        ("neighbour", "neigh_output()", neigh_text(&p.neigh)),
        ("geometry", "__ip_append_data()", geometry_text(p)),
        ("checksum", "__ip_append_data()", csum_text(&p.csum)),
        ("gso", "udp_send_skb()", gso_text(p)),
        (
            "ip id",
            "ip_select_ident_segs()",
            ident_text(p.ident).into(),
        ),
        ("hooks", "nf_hook()", hooks_text(p, e)),
        ("qdisc", "__dev_xmit_skb()", qdisc_text(p)),
        ("driver", "ndo_start_xmit()", e.driver.clone()),
    ]
}

fn route_text(p: &Plan) -> String {
    let r = &p.route;
    let mut s = String::new();
    for x in &r.rules {
        let t = x.table.map(|t| format!(" lookup {}", table_name(t)));
        let _ = writeln!(
            s,
            "rule {}{}: {}",
            x.priority,
            t.unwrap_or_default(),
            x.answer
        );
    }
    let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
    let table = r.table.map(|t| format!(" table {}", table_name(t)));
    let _ = write!(
        s,
        "{} {}{} dev {} src {}{}, {}",
        kind_name(r.kind),
        r.daddr,
        via,
        r.dev,
        r.saddr,
        table.unwrap_or_default(),
        r.prefix
            .map_or("no table's route".into(), |n| format!("route {n}"))
    );
    let pmtu = r.pmtu.map(|m| format!(" (learned path MTU {m})"));
    let _ = write!(
        s,
        "\nmtu {}{}, ttl {}",
        r.mtu,
        pmtu.unwrap_or_default(),
        r.ttl
    );
    s
}

fn table_name(t: u32) -> String {
    match t {
        255 => "local".into(),
        254 => "main".into(),
        253 => "default".into(),
        n => n.to_string(),
    }
}

fn kind_name(k: ipxmit::route::RouteType) -> &'static str {
    use ipxmit::route::RouteType;
    match k {
        RouteType::Unicast => "unicast",
        RouteType::Broadcast => "broadcast",
        RouteType::Multicast => "multicast",
        RouteType::Local => "local",
    }
}

fn neigh_text(n: &NeighPlan) -> String {
    match n {
        NeighPlan::NotNeeded => "none needed (no link header on this device)".into(),
        NeighPlan::Mapped(m) => format!("{m}, mapped from the address, no ARP"),
        NeighPlan::Entry {
            addr,
            state,
            lladdr,
            connected,
        } => {
            let ll = lladdr.as_deref().unwrap_or("(no address yet)");
            let what = if *connected {
                "frames go out at once"
            } else {
                "frames wait while it resolves"
            };
            format!("{addr} {state} {ll}: {what}")
        }
        NeighPlan::Missing(a) => {
            format!("{a}: no entry; created INCOMPLETE, an ARP request sent, the datagram queued")
        }
    }
}

fn geometry_text(p: &Plan) -> String {
    let g = &p.geometry;
    let df = if g.df { "DF" } else { "no DF" };
    let mut s = format!(
        "{} bytes of IP datagram, fragsize {}, header {}, maxfraglen {}, {df}: ",
        g.ip_len, g.fragsize, g.hlen, g.maxfraglen
    );
    if g.frames.len() == 1 {
        s += "1 frame, not fragmented";
        return s;
    }
    let _ = write!(s, "{} fragments", g.frames.len());
    for (off, len) in &g.frames {
        let _ = write!(s, "\noffset {off} length {len}");
    }
    s
}

fn csum_text(c: &CsumPlan) -> String {
    match c {
        CsumPlan::Partial => "CHECKSUM_PARTIAL: the device sums it (offload)".into(),
        CsumPlan::Software(why) => format!("in software as the data is copied: {why}"),
        CsumPlan::Off => "none: SO_NO_CHECK, the checksum field is 0".into(),
    }
}

fn gso_text(p: &Plan) -> String {
    match p.gso {
        Some(g) => format!("{} segments of {} bytes of payload", g.segs, g.size),
        None => "none".into(),
    }
}

fn ident_text(r: IdentRule) -> &'static str {
    match r {
        IdentRule::Socket => "the connected socket's own counter",
        IdentRule::Zero => "0: DF set and not to be fragmented on the way",
        IdentRule::PerDestination => "the per-destination counter (ip_idents_reserve)",
    }
}

/// A hook point's kernel name and nft's.
fn point_name(p: ipxmit::netfilter::HookPoint) -> (&'static str, &'static str) {
    match p {
        ipxmit::netfilter::HookPoint::LocalOut => ("LOCAL_OUT", "output"),
        ipxmit::netfilter::HookPoint::PostRouting => ("POST_ROUTING", "postrouting"),
        ipxmit::netfilter::HookPoint::Egress => ("EGRESS", "egress"),
    }
}

/// The rules of `matched` at `point`, as `nft -a` names them.
fn matched_text(
    matched: &[(ipxmit::netfilter::HookPoint, Vec<RuleRef>)],
    point: ipxmit::netfilter::HookPoint,
) -> Option<String> {
    let (_, rules) = matched.iter().find(|(p, _)| *p == point)?;
    let names: Vec<String> = rules
        .iter()
        .map(|r| {
            format!(
                "{} {} {} handle {}",
                family_name(r.family),
                r.table,
                r.chain,
                r.handle
            )
        })
        .collect();
    Some(match names.is_empty() {
        true => "  no rule would match".to_string(),
        false => format!("  would match: {}", names.join(", ")),
    })
}

fn hooks_text(p: &Plan, e: &Explained) -> String {
    let mut s = String::new();
    for h in &p.hooks {
        let (point, hook) = point_name(h.point);
        let here: Vec<String> = e
            .chains
            .iter()
            .filter(|c| c.hook == hook)
            .map(|c| {
                format!(
                    "{} ({} priority {} policy {}, {} rules)",
                    c.name, c.ty, c.priority, c.policy, c.rules
                )
            })
            .collect();
        let what = match (h.hooks, here.is_empty()) {
            (0, _) => "nothing registered".to_string(),
            (_, true) => format!("{} hook functions", h.hooks),
            (_, false) => here.join("; "),
        };
        let _ = writeln!(s, "{point}: {what}");
        if !here.is_empty() {
            if let Some(m) = matched_text(&e.matched, h.point) {
                let _ = writeln!(s, "{m}");
            }
        }
    }
    s.trim_end().to_string()
}

fn qdisc_text(p: &Plan) -> String {
    let q = &p.qdisc;
    let path = match q.path {
        QdiscPath::NoQueue => "no queue: straight to the driver",
        QdiscPath::Bypass => "bypassed: the qdisc is empty, frames go straight to the driver",
        QdiscPath::Enqueue => "enqueued, then dequeued by the qdisc's run",
        QdiscPath::Down => "the device is down: dropped (ENETDOWN)",
    };
    let class = match q.class {
        None => String::new(),
        Some(0) => ", class: none (the direct queue)".to_string(),
        Some(c) => format!(", class {:x}:{:x}", c >> 16, c & 0xffff),
    };
    format!(
        "txq {} of {}: {} {:x}: ({} queued){class}: {path}",
        q.txq,
        q.queues,
        q.kind,
        q.handle >> 16,
        q.qlen
    )
}

/// The JSON line: every step as an object under `plan`, or `errno`.
pub fn json(line: usize, sock: &str, e: &Explained) -> Value {
    let mut v = json!({"line": line, "op": "explain", "socket": sock});
    let p = match &e.plan {
        Ok(p) => p,
        Err(err) => {
            v["errno"] = json!(err.errno().name());
            return v;
        }
    };
    v["plan"] = json!({
        "route": route_json(p),
        "neighbour": neigh_text(&p.neigh),
        "geometry": {
            "ip_len": p.geometry.ip_len, "fragsize": p.geometry.fragsize,
            "hlen": p.geometry.hlen, "maxfraglen": p.geometry.maxfraglen,
            "df": p.geometry.df,
            "frames": p.geometry.frames.iter()
                .map(|(o, l)| json!({"offset": o, "length": l})).collect::<Vec<_>>(),
        },
        "checksum": csum_text(&p.csum),
        "gso": p.gso.map(|g| json!({"size": g.size, "segs": g.segs})),
        "ip_id": ident_text(p.ident),
        "hooks": hooks_text(p, e).lines().collect::<Vec<_>>(),
        "rules": e.matched.iter().map(|(point, rules)| json!({
            "hook": point_name(*point).1,
            "match": rules.iter().map(|r| json!({
                "family": family_name(r.family), "table": r.table,
                "chain": r.chain, "handle": r.handle,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "qdisc": {
            "txq": p.qdisc.txq, "queues": p.qdisc.queues, "kind": p.qdisc.kind,
            "handle": format!("{:x}:", p.qdisc.handle >> 16), "qlen": p.qdisc.qlen,
            "class": p.qdisc.class.map(|c| format!("{:x}:{:x}", c >> 16, c & 0xffff)),
            "path": qdisc_text(p),
        },
        "driver": e.driver,
    });
    v
}

fn route_json(p: &Plan) -> Value {
    let r = &p.route;
    let rules: Vec<Value> = r
        .rules
        .iter()
        .map(|x| json!({"priority": x.priority, "table": x.table.map(table_name), "answer": x.answer}))
        .collect();
    json!({
        "rules": rules, "table": r.table.map(table_name),
        "prefix": r.prefix.map(|n| n.to_string()), "type": kind_name(r.kind),
        "dst": r.daddr.to_string(), "src": r.saddr.to_string(), "dev": r.dev,
        "gateway": r.gateway.map(|g| g.to_string()), "mtu": r.mtu, "pmtu": r.pmtu, "ttl": r.ttl,
    })
}
