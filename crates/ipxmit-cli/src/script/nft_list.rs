//! `nft list ruleset|table|chain|set` as nft 1.0.6 prints them, and base
//! chain priorities by name (`filter`, `mangle - 5`).

use std::fmt::Write;
use std::net::Ipv4Addr;

use ipxmit::nft::{
    Chain, ChainHook, ChainType, Elem, Family, Key, Limit, Log, MapData, MapRef, MapValue, Match,
    Nat, NatKind, NatMap, NatTo, Op, Policy, Reject, Rhs, RuleVerdict, Ruleset, Set, SetUpdate,
    Stmt, Table, ICMP_CODES, LOG_ALL, LOG_IPOPT, LOG_LEVELS, LOG_MACDECODE, LOG_TCPOPT, LOG_TCPSEQ,
    LOG_UID, NAT_FULLY_RANDOM, NAT_PERSISTENT, NAT_RANDOM,
};

use ipxmit::nft::dynset::{jiffies_ns, LiveElem};

use super::nft::{ListWhat, NftParseError, P};
use super::nft_rule::{
    ty_of, ty_of_data, Ty, BYTE_UNITS, CT_DIRS, CT_STATES, DSCPS, ECNS, LIMIT_UNITS, PROTOS,
};

/// The standard priorities of family ip (`std_prios`), in nft's order.
const PRIOS: &[(&str, i32)] = &[
    ("raw", -300),
    ("mangle", -150),
    ("dstnat", -100),
    ("filter", 0),
    ("security", 50),
    ("srcnat", 100),
];

/// Kernel-side names nft allows at a hook (`std_prio_family_hook_compat`).
fn prio_ok(fam: Family, hook: ChainHook, name: &str) -> bool {
    match (fam, name) {
        (Family::Netdev, n) => n == "filter",
        // nft allows dstnat at prerouting only (not at output).
        (_, "dstnat") => false,
        (_, "srcnat") => hook == ChainHook::Postrouting,
        _ => true,
    }
}

/// `priority N`, `priority NAME`, `priority NAME + N` / `- N`.
pub fn parse_priority(p: &mut P<'_>, fam: Family, hook: ChainHook) -> Result<i32, NftParseError> {
    let t = p.take()?;
    if let Ok(n) = t.text.parse::<i32>() {
        return Ok(n);
    }
    let Some(&(name, base)) = PRIOS.iter().find(|(n, _)| *n == t.text) else {
        return Err(P::err(
            t,
            "invalid priority expression value in this context.",
        ));
    };
    if !prio_ok(fam, hook, name) {
        return Err(P::err(
            t,
            "invalid priority expression value in this context.",
        ));
    }
    let sign = match p.peek_text() {
        "+" => 1,
        "-" => -1,
        _ => return Ok(base),
    };
    p.i += 1;
    let n = p.take()?;
    let off: i32 = n.text.parse().map_err(|_| P::err(n, "syntax error"))?;
    Ok(base + sign * off)
}

fn prio_str(fam: Family, hook: ChainHook, prio: i32) -> String {
    for &(name, base) in PRIOS {
        let off = prio - base;
        if !prio_ok(fam, hook, name) || !(-10..=10).contains(&off) {
            continue;
        }
        return match off {
            0 => name.to_string(),
            o if o > 0 => format!("{name} + {o}"),
            o => format!("{name} - {}", -o),
        };
    }
    prio.to_string()
}

/// The listing `w` asks for, or nft's error for a missing table or chain.
///
/// `now` is the stack's time (ns): a set's live elements are listed with
/// the time they have left (`expires`).
pub fn list(rs: &Ruleset, w: &ListWhat, handles: bool, now: u64) -> Result<String, NftParseError> {
    let mut out = String::new();
    let missing = |t: &super::nft::Tok| NftParseError {
        msg: "No such file or directory".into(),
        span: t.span,
    };
    match w {
        ListWhat::Ruleset => rs
            .tables
            .iter()
            .for_each(|t| table(&mut out, t, Only::All, (handles, now))),
        ListWhat::Table(f, n) => {
            let t = rs.table(*f, &n.text).ok_or_else(|| missing(n))?;
            table(&mut out, t, Only::All, (handles, now));
        }
        ListWhat::Chain(f, tn, cn) => {
            let t = rs.table(*f, &tn.text).ok_or_else(|| missing(tn))?;
            let c = t.chain(&cn.text).ok_or_else(|| missing(cn))?;
            table(&mut out, t, Only::Chain(c), (handles, now));
        }
        ListWhat::Set(f, tn, sn) => {
            let t = rs.table(*f, &tn.text).ok_or_else(|| missing(tn))?;
            let s = t.set(&sn.text).ok_or_else(|| missing(sn))?;
            table(&mut out, t, Only::Set(s), (handles, now));
        }
    }
    Ok(out)
}

fn fam_str(f: Family) -> &'static str {
    match f {
        Family::Ip => "ip",
        Family::Netdev => "netdev",
    }
}

/// What of a table a listing shows.
#[derive(Clone, Copy)]
enum Only<'a> {
    /// Its sets and chains.
    All,
    /// One chain.
    Chain(&'a Chain),
    /// One set.
    Set(&'a Set),
}

fn table(out: &mut String, t: &Table, only: Only<'_>, (handles, now): (bool, u64)) {
    let h = |n: u64| {
        if handles {
            format!(" # handle {n}")
        } else {
            String::new()
        }
    };
    let _ = writeln!(
        out,
        "table {} {} {{{}",
        fam_str(t.family),
        t.name,
        h(t.handle)
    );
    let mut first = true;
    let mut sep = |out: &mut String| {
        if !std::mem::take(&mut first) {
            out.push('\n');
        }
    };
    for s in &t.sets {
        if matches!(only, Only::All) || matches!(only, Only::Set(o) if o.name == s.name) {
            sep(out);
            set(out, s, &h(s.handle), now);
        }
    }
    for c in &t.chains {
        if !matches!(only, Only::All) && !matches!(only, Only::Chain(o) if o.name == c.name) {
            continue;
        }
        sep(out);
        chain(out, t.family, c, handles);
    }
    out.push_str("}\n");
}

fn set(out: &mut String, s: &Set, h: &str, now: u64) {
    let tys: Vec<Ty> = s.ty.iter().map(|d| ty_of_data(*d)).collect();
    let names: Vec<&str> =
        s.ty.iter()
            .map(|d| match d {
                ipxmit::nft::DataType::Ipv4Addr => "ipv4_addr",
                ipxmit::nft::DataType::InetService => "inet_service",
                ipxmit::nft::DataType::Mark => "mark",
                ipxmit::nft::DataType::InetProto => "inet_proto",
                ipxmit::nft::DataType::Time => "time",
            })
            .collect();
    let (kind, data) = match s.map {
        None => ("set", ""),
        Some(MapData::Mark) => ("map", " : mark"),
        Some(MapData::Verdict) => ("map", " : verdict"),
    };
    let _ = writeln!(
        out,
        "\t{kind} {} {{{h}\n\t\ttype {}{data}",
        s.name,
        names.join(" . ")
    );
    if s.opts.size != 0 {
        let _ = writeln!(out, "\t\tsize {}", s.opts.size);
    }
    if s.interval || s.opts.dynamic || (s.opts.timeouts && s.opts.timeout == 0) {
        let _ = writeln!(out, "\t\tflags {}", set_flags(s, true).join(","));
    }
    if s.opts.timeout != 0 {
        let _ = writeln!(out, "\t\ttimeout {}", time_str(s.opts.timeout));
    }
    if s.map.is_none() {
        let parts = set_elems(s, &tys, now);
        if !parts.is_empty() {
            let _ = writeln!(out, "\t\telements = {{ {} }}", wrapped(&parts, &tys));
        }
    } else if !s.elems.is_empty() || s.default.is_some() {
        let pairs: Vec<(Elem, MapValue)> = s
            .elems
            .iter()
            .copied()
            .zip(s.values.iter().cloned())
            .collect();
        let _ = writeln!(
            out,
            "\t\telements = {}",
            map_elems(&pairs, s.default.as_ref(), &tys)
        );
    }
    out.push_str("\t}\n");
}

/// A set's flags as nft names them (`dynamic` only in the text listing:
/// nft 1.0.6's JSON does not write it).
pub fn set_flags(s: &Set, text: bool) -> Vec<&'static str> {
    let mut f = Vec::new();
    if s.interval {
        f.push("interval");
    }
    if s.opts.dynamic && text {
        f.push("dynamic");
    }
    if s.opts.timeouts {
        f.push("timeout");
    }
    f
}

/// One live element's ` timeout T expires E` (its timeout when it is not
/// the set's, and the time it has left, in whole jiffies).
fn live_suffix(s: &Set, e: &LiveElem, now: u64) -> String {
    if e.timeout == 0 {
        return String::new();
    }
    let ms = e.timeout / 1_000_000;
    let mut out = String::new();
    if ms != s.opts.timeout {
        let _ = write!(out, " timeout {}", time_str(ms));
    }
    let left = jiffies_ns(e.expires.saturating_sub(now)) / 1_000_000;
    let _ = write!(out, " expires {}", time_str(left));
    out
}

/// A named set's elements as listed, sorted by key: those added with
/// `add element`, those rules added (with their timeouts), the catch-all
/// last.
fn set_elems(s: &Set, tys: &[Ty], now: u64) -> Vec<String> {
    let mut v: Vec<(Elem, String)> = s.elems.iter().map(|e| (*e, String::new())).collect();
    for (k, e) in s.live.elems(now) {
        v.push((Elem::one(k), live_suffix(s, &e, now)));
    }
    v.sort_by_key(|(e, _)| *e);
    let mut parts: Vec<String> = v.iter().map(|(e, x)| elem(e, tys) + x).collect();
    if s.catchall {
        parts.push("*".into());
    }
    parts
}

/// Kernel-listed elements joined as nft 1.0.6 does for a named set
/// (`calculate_delim()`): addresses two to a line, integers five, other
/// types (concatenations) one.
fn wrapped(parts: &[String], tys: &[Ty]) -> String {
    let per_line = match tys {
        [Ty::Addr] => 2,
        [Ty::Port | Ty::Proto | Ty::Mark] => 5,
        _ => 1,
    };
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(if i % per_line == 0 {
                ",\n\t\t\t     "
            } else {
                ", "
            });
        }
        out.push_str(p);
    }
    out
}

/// nft's `time_print()`: `1d2h3m4s5ms`, zero parts left out.
pub fn time_str(ms: u64) -> String {
    let parts = [
        (ms / 86_400_000, "d"),
        (ms / 3_600_000 % 24, "h"),
        (ms / 60_000 % 60, "m"),
        (ms / 1000 % 60, "s"),
        (ms % 1000, "ms"),
    ];
    let mut out = String::new();
    for (n, unit) in parts {
        if n != 0 {
            let _ = write!(out, "{n}{unit}");
        }
    }
    out
}

/// `add @s { KEY [. KEY] [timeout T] }` (or `update`).
fn set_update(u: &SetUpdate) -> String {
    let keys: Vec<&str> = u.keys.iter().map(|k| key_str(*k)).collect();
    let timeout = match u.timeout {
        0 => String::new(),
        t => format!(" timeout {}", time_str(t)),
    };
    let op = if u.update { "update" } else { "add" };
    format!("{op} @{} {{ {}{timeout} }}", u.set, keys.join(" . "))
}

fn chain(out: &mut String, fam: Family, c: &Chain, handles: bool) {
    let h = |n: u64| {
        if handles {
            format!(" # handle {n}")
        } else {
            String::new()
        }
    };
    let _ = writeln!(out, "\tchain {} {{{}", c.name, h(c.handle));
    if let Some(b) = &c.base {
        let (ty, hook) = (type_name(b.ty), hook_name(b.hook));
        let dev = b
            .device
            .as_ref()
            .map_or(String::new(), |d| format!(" device \"{d}\""));
        let pol = match b.policy {
            Policy::Accept => "accept",
            Policy::Drop => "drop",
        };
        let prio = prio_str(fam, b.hook, b.priority);
        let _ = writeln!(
            out,
            "\t\ttype {ty} hook {hook}{dev} priority {prio}; policy {pol};"
        );
    }
    for r in &c.rules {
        let text: Vec<String> = shown(&r.stmts).iter().map(stmt).collect();
        let _ = writeln!(out, "\t\t{}{}", text.join(" "), h(r.handle));
    }
    out.push_str("\t}\n");
}

/// The statements nft prints: a `meta l4proto tcp` first, followed only by
/// matches up to `reject with tcp reset`, is the reject's dependency and
/// is left out (as nft's delinearization leaves it out).
fn shown(stmts: &[Stmt]) -> &[Stmt] {
    let dep = matches!(stmts.first(), Some(Stmt::Match(m))
        if m.keys[..] == [Key::MetaL4proto] && m.op == Op::Eq && m.rhs == Rhs::Value(6));
    let Some((Stmt::Reject(Reject::TcpReset), mid)) = stmts.split_last() else {
        return stmts;
    };
    if dep && mid[1..].iter().all(|s| matches!(s, Stmt::Match(_))) {
        &stmts[1..]
    } else {
        stmts
    }
}

/// A statement as nft prints it.
pub fn stmt(s: &Stmt) -> String {
    match s {
        Stmt::Match(m) => matcher(m),
        Stmt::Counter(c) => {
            let (p, b) = c.get();
            format!("counter packets {p} bytes {b}")
        }
        Stmt::MarkSet(m) => format!("meta mark set {}", value(u64::from(*m), Ty::Mark)),
        Stmt::MarkSetMap(keys, r) => {
            let lhs: Vec<&str> = keys.iter().map(|k| key_str(*k)).collect();
            let tys: Vec<Ty> = keys.iter().map(|k| ty_of(*k)).collect();
            format!("meta mark set {} map {}", lhs.join(" . "), map_ref(r, &tys))
        }
        Stmt::PrioritySet(v) => format!("meta priority set {}", value(u64::from(*v), Ty::Prio)),
        Stmt::DscpSet(d) => format!("ip dscp set {}", value(u64::from(*d), Ty::Dscp)),
        Stmt::TtlSet(t) => format!("ip ttl set {t}"),
        Stmt::FieldSet(k, v) => format!("{} set {}", key_str(*k), value(u64::from(*v), ty_of(*k))),
        Stmt::Nat(n) => nat(n),
        Stmt::NatMap(m) => nat_map(m),
        Stmt::Reject(Reject::Icmp(3)) => "reject".into(),
        Stmt::Reject(Reject::Icmp(c)) => match ICMP_CODES.iter().find(|(_, v)| v == c) {
            Some((n, _)) => format!("reject with icmp {n}"),
            None => format!("reject with icmp {c}"),
        },
        Stmt::Reject(Reject::TcpReset) => "reject with tcp reset".into(),
        Stmt::Limit(l) => limit(l),
        Stmt::Log(l) => log(l),
        Stmt::SetUpdate(u) => set_update(u),
        Stmt::Verdict(v) => match v {
            RuleVerdict::Accept => "accept".into(),
            RuleVerdict::Drop => "drop".into(),
            RuleVerdict::Continue => "continue".into(),
            RuleVerdict::Return => "return".into(),
            RuleVerdict::Jump(c) => format!("jump {c}"),
            RuleVerdict::Goto(c) => format!("goto {c}"),
        },
    }
}

/// `limit rate [over] ...` as nft 1.0.6 prints it (`stmt_limit_print`):
/// a packet burst of 5 (the default) left out, byte counts in the largest
/// of bytes, kbytes, mbytes that divides them (`get_rate`).
fn limit(l: &Limit) -> String {
    let over = if l.over { "over " } else { "" };
    let per = LIMIT_UNITS
        .iter()
        .find(|(_, s)| *s == l.unit)
        .map_or("second", |(n, _)| n);
    if !l.bytes {
        let burst = match l.burst {
            0 | 5 => String::new(),
            b => format!(" burst {b} packets"),
        };
        return format!("limit rate {over}{}/{per}{burst}", l.rate);
    }
    let (r, ru) = byte_rate(l.rate);
    let burst = match l.burst {
        0 => String::new(),
        b => {
            let (b, bu) = byte_rate(b);
            format!(" burst {b} {bu}")
        }
    };
    format!("limit rate {over}{r} {ru}/{per}{burst}")
}

/// `log ...` in nft's order (`log_stmt_print`): prefix, group, snaplen,
/// queue-threshold, a level other than warn, the flags (`all` when every
/// one is set).
fn log(l: &Log) -> String {
    let mut s = String::from("log");
    if let Some(p) = &l.prefix {
        let _ = write!(s, " prefix \"{p}\"");
    }
    if let Some(g) = l.group {
        let _ = write!(s, " group {g}");
    }
    if let Some(n) = l.snaplen {
        let _ = write!(s, " snaplen {n}");
    }
    if let Some(q) = l.qthreshold {
        let _ = write!(s, " queue-threshold {q}");
    }
    if let Some((name, _)) = l
        .level
        .and_then(|v| LOG_LEVELS.iter().find(|(_, x)| *x == v))
    {
        if *name != "warn" {
            let _ = write!(s, " level {name}");
        }
    }
    if l.flags & LOG_ALL == LOG_ALL {
        s.push_str(" flags all");
        return s;
    }
    if l.flags & (LOG_TCPSEQ | LOG_TCPOPT) != 0 {
        s.push_str(" flags tcp");
        let mut delim = " ";
        if l.flags & LOG_TCPSEQ != 0 {
            s.push_str(" sequence");
            delim = ",";
        }
        if l.flags & LOG_TCPOPT != 0 {
            let _ = write!(s, "{delim}options");
        }
    }
    for (bit, word) in [
        (LOG_IPOPT, " flags ip options"),
        (LOG_UID, " flags skuid"),
        (LOG_MACDECODE, " flags ether"),
    ] {
        if l.flags & bit != 0 {
            s.push_str(word);
        }
    }
    s
}

/// nft's `get_rate()`: the value in the largest unit dividing it.
fn byte_rate(mut v: u64) -> (u64, &'static str) {
    let mut i = 0;
    while i + 1 < BYTE_UNITS.len() && v != 0 && v.is_multiple_of(1024) {
        v /= 1024;
        i += 1;
    }
    (v, BYTE_UNITS[i].0)
}

/// `snat to A[:P[-P]]`, `dnat to ...`, `masquerade [to :P[-P]]`.
fn nat(n: &Nat) -> String {
    let kind = nat_word(n.kind);
    let ports = match n.ports {
        Some((lo, hi)) if lo == hi => format!(":{lo}"),
        Some((lo, hi)) => format!(":{lo}-{hi}"),
        None => String::new(),
    };
    let flags = nat_flags(n.flags);
    match n.addr {
        Some((a, b)) => format!("{kind} to {}{ports}{flags}", addr_range(a, b)),
        None if ports.is_empty() => format!("{kind}{flags}"),
        None => format!("{kind} to {ports}{flags}"),
    }
}

/// ` random,persistent` (empty without flags).
fn nat_flags(f: u8) -> String {
    let flags: Vec<&str> = [
        (NAT_RANDOM, "random"),
        (NAT_FULLY_RANDOM, "fully-random"),
        (NAT_PERSISTENT, "persistent"),
    ]
    .iter()
    .filter(|(b, _)| f & b != 0)
    .map(|(_, s)| *s)
    .collect();
    if flags.is_empty() {
        String::new()
    } else {
        format!(" {}", flags.join(","))
    }
}

/// The word of a NAT statement.
pub fn nat_word(k: NatKind) -> &'static str {
    match k {
        NatKind::Snat => "snat",
        NatKind::Dnat => "dnat",
        NatKind::Masquerade => "masquerade",
        NatKind::Redirect => "redirect",
    }
}

/// Whether nft names the family of a NAT map statement (`snat ip to`):
/// its values are concatenations or ranges (`STMT_NAT_F_CONCAT`,
/// `STMT_NAT_F_INTERVAL`), or it is a `prefix` map.
pub fn nat_map_family(m: &NatMap) -> bool {
    let MapRef::Anon(e) = &m.map else {
        return m.netmap;
    };
    m.netmap
        || e.elems.iter().map(|(_, v)| v).chain(&e.default).any(|v| {
            matches!(v, MapValue::Nat(t) if (t.addr.is_some() && t.ports.is_some())
                || super::nft_rule::nat_interval(t))
        })
}

/// `snat ip to ip saddr map { ... }`, `redirect to :tcp dport map { ... }`.
fn nat_map(m: &NatMap) -> String {
    let lhs: Vec<&str> = m.keys.iter().map(|k| key_str(*k)).collect();
    let tys: Vec<Ty> = m.keys.iter().map(|k| ty_of(*k)).collect();
    let fam = match (nat_map_family(m), m.netmap) {
        (_, true) => " ip prefix",
        (true, false) => " ip",
        _ => "",
    };
    let colon = if matches!(m.nat.kind, NatKind::Redirect | NatKind::Masquerade) {
        ":"
    } else {
        ""
    };
    let flags = nat_flags(m.nat.flags);
    format!(
        "{}{fam} to {colon}{} map {}{flags}",
        nat_word(m.nat.kind),
        lhs.join(" . "),
        map_ref(&m.map, &tys)
    )
}

/// A NAT map's value: `ADDR[-ADDR|/LEN][ . PORT[-PORT]]` or `PORT[-PORT]`.
fn nat_to(t: &NatTo) -> String {
    let ports = t.ports.map(|(lo, hi)| {
        if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}-{hi}")
        }
    });
    match (t.addr, ports) {
        (Some((a, b)), None) => addr_range(a, b),
        (Some((a, b)), Some(p)) => format!("{} . {p}", addr_range(a, b)),
        (None, Some(p)) => p,
        (None, None) => String::new(),
    }
}

/// An address range as nft prints it: `A/LEN` when it is a prefix, else
/// `A-B`.
fn addr_range(a: u32, b: u32) -> String {
    if a == b {
        return Ipv4Addr::from(a).to_string();
    }
    let span = u64::from(b - a) + 1;
    if span.is_power_of_two() && u64::from(a) % span == 0 {
        format!("{}/{}", Ipv4Addr::from(a), 32 - span.trailing_zeros())
    } else {
        format!("{}-{}", Ipv4Addr::from(a), Ipv4Addr::from(b))
    }
}

/// A base chain's type as nft writes it.
pub fn type_name(t: ChainType) -> &'static str {
    match t {
        ChainType::Filter => "filter",
        ChainType::Route => "route",
        ChainType::Nat => "nat",
    }
}

/// A base chain's hook as nft writes it.
pub fn hook_name(h: ChainHook) -> &'static str {
    match h {
        ChainHook::Output => "output",
        ChainHook::Postrouting => "postrouting",
        ChainHook::Egress => "egress",
    }
}

/// A key as nft writes it (`ip daddr`, `meta mark`, `oifname`).
pub fn key_str(k: Key) -> &'static str {
    match k {
        Key::IpSaddr => "ip saddr",
        Key::IpDaddr => "ip daddr",
        Key::IpProtocol => "ip protocol",
        Key::IpDscp => "ip dscp",
        Key::IpTtl => "ip ttl",
        Key::IpVersion => "ip version",
        Key::IpHdrlength => "ip hdrlength",
        Key::IpEcn => "ip ecn",
        Key::IpLength => "ip length",
        Key::IpId => "ip id",
        Key::IpFragOff => "ip frag-off",
        Key::IpChecksum => "ip checksum",
        Key::UdpLength => "udp length",
        Key::UdpChecksum => "udp checksum",
        Key::UdpSport => "udp sport",
        Key::UdpDport => "udp dport",
        Key::TcpSport => "tcp sport",
        Key::TcpDport => "tcp dport",
        Key::TcpSequence => "tcp sequence",
        Key::TcpAckseq => "tcp ackseq",
        Key::TcpWindow => "tcp window",
        Key::TcpChecksum => "tcp checksum",
        Key::TcpUrgptr => "tcp urgptr",
        Key::MetaL4proto => "meta l4proto",
        Key::MetaMark => "meta mark",
        Key::MetaLength => "meta length",
        Key::MetaPriority => "meta priority",
        Key::Oif => "oif",
        Key::Oifname => "oifname",
        Key::Iifname => "iifname",
        Key::CtState => "ct state",
        Key::CtDirection => "ct direction",
        Key::CtMark => "ct mark",
        Key::ThSport => "th sport",
        Key::ThDport => "th dport",
    }
}

fn matcher(m: &Match) -> String {
    let lhs: Vec<&str> = m.keys.iter().map(|k| key_str(*k)).collect();
    let op = match m.op {
        Op::Eq => "",
        Op::Ne => "!= ",
        Op::Lt => "< ",
        Op::Gt => "> ",
        Op::Le => "<= ",
        Op::Ge => ">= ",
    };
    let tys: Vec<Ty> = m.keys.iter().map(|k| ty_of(*k)).collect();
    let ty = tys[0];
    if let Rhs::Vmap(r) = &m.rhs {
        return format!("{} vmap {}", lhs.join(" . "), map_ref(r, &tys));
    }
    if let Rhs::Masked { mask, xor, rhs } = &m.rhs {
        let all = m.keys[0].width_mask();
        let bits = match (*mask, *xor) {
            (m, 0) => format!("& {}", value(m, ty)),
            (m, x) if m == all & !x => format!("| {}", value(x, ty)),
            (m, x) => format!("& {} ^ {}", value(m, ty), value(x, ty)),
        };
        let op = if op.is_empty() { "== " } else { op };
        return format!("{} {bits} {op}{}", lhs[0], rhs_text(rhs, m.op, &tys));
    }
    format!("{} {op}{}", lhs.join(" . "), rhs_text(&m.rhs, m.op, &tys))
}

/// The right side of a match of keys of types `tys` as nft prints it.
fn rhs_text(rhs: &Rhs, op: Op, tys: &[Ty]) -> String {
    let ty = tys[0];
    match rhs {
        Rhs::Value(v) if ty == Ty::CtState && op == Op::Eq => format!("== {}", value(*v, ty)),
        Rhs::Value(v) => value(*v, ty),
        Rhs::Flags(mask) => CT_STATES
            .iter()
            .filter(|(_, b)| mask & u64::from(*b) != 0)
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(","),
        Rhs::Prefix(a, l) if ty == Ty::Addr => format!("{}/{l}", Ipv4Addr::from(*a)),
        Rhs::Prefix(a, l) => format!("{}/{l}", value(u64::from(*a), ty)),
        Rhs::Range(lo, hi) if ty == Ty::Proto => format!("{lo}-{hi}"),
        Rhs::Range(lo, hi) => format!("{}-{}", value(*lo, ty), value(*hi, ty)),
        Rhs::Set(e) => elems(e, tys),
        Rhs::Named(n) => format!("@{n}"),
        Rhs::Dev(n, _) | Rhs::Ifname(n) => format!("\"{n}\""),
        Rhs::IfnameSet(v) => {
            let names: Vec<String> = v.iter().map(|n| format!("\"{n}\"")).collect();
            format!("{{ {} }}", names.join(", "))
        }
        Rhs::Vmap(_) | Rhs::Masked { .. } => String::new(),
    }
}

/// A map as a rule shows it: `@NAME` or `{ K : V, ..., * : V }`.
fn map_ref(r: &MapRef, tys: &[Ty]) -> String {
    match r {
        MapRef::Named(n) => format!("@{n}"),
        MapRef::Anon(m) => map_elems(&m.elems, m.default.as_ref(), tys),
    }
}

/// `{ K : V, ... }` sorted by key, the catch-all last.
fn map_elems(elems: &[(Elem, MapValue)], default: Option<&MapValue>, tys: &[Ty]) -> String {
    let mut v: Vec<&(Elem, MapValue)> = elems.iter().collect();
    v.sort_by_key(|(e, _)| *e);
    let mut parts: Vec<String> = v
        .iter()
        .map(|(e, x)| format!("{} : {}", elem(e, tys), map_value(x)))
        .collect();
    if let Some(d) = default {
        parts.push(format!("* : {}", map_value(d)));
    }
    format!("{{ {} }}", parts.join(", "))
}

fn map_value(v: &MapValue) -> String {
    match v {
        MapValue::Num(n) => value(*n, Ty::Mark),
        MapValue::Verdict(v) => stmt(&Stmt::Verdict(v.clone())),
        MapValue::Nat(t) => nat_to(t),
    }
}

/// `{ a, b-c, d/len }`, sorted by value as the kernel's interval tree.
fn elems(v: &[Elem], tys: &[Ty]) -> String {
    let mut v = v.to_vec();
    v.sort_unstable();
    let parts: Vec<String> = v.iter().map(|e| elem(e, tys)).collect();
    format!("{{ {} }}", parts.join(", "))
}

fn elem(e: &Elem, tys: &[Ty]) -> String {
    if tys.len() > 1 {
        // Each part's first and last: `A . B1-B2`.
        let (a, b) = e.split_concat(if tys[1] == Ty::Port { 16 } else { 32 });
        return format!("{} . {}", elem(&a, &tys[..1]), elem(&b, &tys[1..]));
    }
    let ty = tys[0];
    if e.lo == e.hi {
        return value(e.lo, ty);
    }
    if ty == Ty::Addr {
        let span = e.hi - e.lo + 1;
        if span.is_power_of_two() && e.lo.is_multiple_of(span) {
            return format!(
                "{}/{}",
                Ipv4Addr::from(e.lo as u32),
                32 - span.trailing_zeros()
            );
        }
    }
    if ty == Ty::Proto {
        return format!("{}-{}", e.lo, e.hi);
    }
    format!("{}-{}", value(e.lo, ty), value(e.hi, ty))
}

/// One value of type `ty` as nft prints it.
pub fn value(v: u64, ty: Ty) -> String {
    let named = |tab: &[(&'static str, u8)]| {
        tab.iter()
            .find(|(_, x)| u64::from(*x) == v)
            .map(|(n, _)| n.to_string())
    };
    match ty {
        Ty::Addr => Ipv4Addr::from(v as u32).to_string(),
        Ty::Proto => named(PROTOS).unwrap_or_else(|| v.to_string()),
        Ty::Dscp => named(DSCPS).unwrap_or_else(|| format!("0x{v:02x}")),
        Ty::Ecn => named(ECNS).unwrap_or_else(|| v.to_string()),
        Ty::CtState => named(CT_STATES).unwrap_or_else(|| format!("0x{v:08x}")),
        Ty::CtDir => named(CT_DIRS).unwrap_or_else(|| v.to_string()),
        Ty::Mark => format!("0x{v:08x}"),
        Ty::Prio => match v {
            0 => "none".into(),
            0xffff_ffff => "root".into(),
            v => format!("{:x}:{:x}", v >> 16, v & 0xffff),
        },
        _ => v.to_string(),
    }
}
