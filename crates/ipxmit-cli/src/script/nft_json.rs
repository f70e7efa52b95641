//! `nft -j list ruleset|table|chain|set`: the listing as nft 1.0.6's JSON
//! (libnftables-json(5)): `{"nftables": [metainfo, table, set/map...,
//! chain..., rule...]}`, one line. Rules' statements map to `match`,
//! `counter`, `accept`/`drop`/..., `jump`/`goto`, `mangle`, `reject`,
//! `limit`, `log`, `snat`/`dnat`/`masquerade`; what has no JSON form here
//! yet (maps, `vmap`) is written as a string of nft's text.

use serde_json::{json, Map, Value};
use std::net::Ipv4Addr;

use ipxmit::nft::{
    Chain, Elem, Family, Key, Limit, Log, MapData, MapRef, MapValue, Match, Nat, NatKind, NatMap,
    NatTo, Op, Policy, Reject, Rhs, RuleVerdict, Ruleset, Set, SetUpdate, Stmt, Table, ICMP_CODES,
    LOG_ALL, LOG_IPOPT, LOG_LEVELS, LOG_MACDECODE, LOG_TCPOPT, LOG_TCPSEQ, LOG_UID,
};

use super::nft::{ListWhat, NftParseError};
use super::nft_list::{hook_name, type_name, value};
use super::nft_rule::{ty_of, ty_of_data, Ty, CT_STATES, LIMIT_UNITS};

fn fam(f: Family) -> &'static str {
    match f {
        Family::Ip => "ip",
        Family::Netdev => "netdev",
    }
}

/// The JSON listing `w` asks for.
/// `now` (the stack's time, ns) gives live elements their `expires`.
pub fn list(rs: &Ruleset, w: &ListWhat, now: u64) -> Result<String, NftParseError> {
    let mut v = vec![
        json!({"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5",
        "json_schema_version": 1}}),
    ];
    let missing = |t: &super::nft::Tok| NftParseError {
        msg: "No such file or directory".into(),
        span: t.span,
    };
    match w {
        ListWhat::Ruleset => rs.tables.iter().for_each(|t| table(&mut v, t, None, now)),
        ListWhat::Table(f, n) => table(
            &mut v,
            rs.table(*f, &n.text).ok_or_else(|| missing(n))?,
            None,
            now,
        ),
        ListWhat::Chain(f, tn, cn) => {
            let t = rs.table(*f, &tn.text).ok_or_else(|| missing(tn))?;
            let c = t.chain(&cn.text).ok_or_else(|| missing(cn))?;
            table(&mut v, t, Some(c), now);
        }
        ListWhat::Set(f, tn, sn) => {
            // nft -j list set: the set alone, without its table.
            let t = rs.table(*f, &tn.text).ok_or_else(|| missing(tn))?;
            let s = t.set(&sn.text).ok_or_else(|| missing(sn))?;
            v.push(set(fam(t.family), &t.name, s, now));
        }
    }
    Ok(json!({ "nftables": v }).to_string() + "\n")
}

fn table(v: &mut Vec<Value>, t: &Table, only: Option<&Chain>, now: u64) {
    let f = fam(t.family);
    v.push(json!({"table": {"family": f, "name": t.name, "handle": t.handle}}));
    if only.is_none() {
        t.sets.iter().for_each(|s| v.push(set(f, &t.name, s, now)));
    }
    for c in t
        .chains
        .iter()
        .filter(|c| only.is_none_or(|o| o.name == c.name))
    {
        let mut o = json!({"family": f, "table": t.name, "name": c.name, "handle": c.handle});
        if let Some(b) = &c.base {
            let (ty, hook) = (type_name(b.ty), hook_name(b.hook));
            o["type"] = json!(ty);
            o["hook"] = json!(hook);
            if let Some(d) = &b.device {
                o["dev"] = json!(d);
            }
            o["prio"] = json!(b.priority);
            o["policy"] = json!(if b.policy == Policy::Drop {
                "drop"
            } else {
                "accept"
            });
        }
        v.push(json!({ "chain": o }));
    }
    for c in t
        .chains
        .iter()
        .filter(|c| only.is_none_or(|o| o.name == c.name))
    {
        for r in &c.rules {
            let expr: Vec<Value> = r.stmts.iter().map(stmt).collect();
            v.push(
                json!({"rule": {"family": f, "table": t.name, "chain": c.name,
                "handle": r.handle, "expr": expr}}),
            );
        }
    }
}

fn set(f: &str, table: &str, s: &Set, now: u64) -> Value {
    let names: Vec<&str> =
        s.ty.iter()
            .map(|d| match ty_of_data(*d) {
                Ty::Addr => "ipv4_addr",
                Ty::Port => "inet_service",
                Ty::Mark => "mark",
                Ty::Time => "time",
                _ => "inet_proto",
            })
            .collect();
    let ty = if names.len() == 1 {
        json!(names[0])
    } else {
        json!(names)
    };
    let kind = if s.map.is_some() { "map" } else { "set" };
    let mut o =
        json!({"family": f, "name": s.name, "table": table, "type": ty, "handle": s.handle});
    if let Some(d) = s.map {
        o["map"] = json!(if d == MapData::Mark {
            "mark"
        } else {
            "verdict"
        });
    }
    if s.opts.size != 0 {
        o["size"] = json!(s.opts.size);
    }
    let flags = super::nft_list::set_flags(s, false);
    if !flags.is_empty() {
        o["flags"] = json!(flags);
    }
    if s.opts.timeout != 0 {
        o["timeout"] = json!(s.opts.timeout / 1000);
    }
    let tys: Vec<Ty> = s.ty.iter().map(|d| ty_of_data(*d)).collect();
    if s.map.is_some() && (!s.elems.is_empty() || s.default.is_some()) {
        let pairs: Vec<(Elem, MapValue)> = s
            .elems
            .iter()
            .copied()
            .zip(s.values.iter().cloned())
            .collect();
        o["elem"] = json!(map_pairs(&pairs, s.default.as_ref(), &tys));
    } else if s.map.is_none() {
        let mut e: Vec<(Elem, Value)> = s.elems.iter().map(|e| (*e, elem(e, &tys))).collect();
        for (k, l) in s.live.elems(now) {
            e.push((
                Elem::one(k),
                live_elem(s, elem(&Elem::one(k), &tys), &l, now),
            ));
        }
        e.sort_by_key(|(e, _)| *e);
        let mut e: Vec<Value> = e.into_iter().map(|(_, v)| v).collect();
        if s.catchall {
            e.push(json!("*"));
        }
        if !e.is_empty() {
            o["elem"] = json!(e);
        }
    }
    json!({ kind: o })
}

/// A map's elements as nft -j writes them: `[KEY, VALUE]` pairs, the
/// catch-all's key `"*"`, last.
fn map_pairs(elems: &[(Elem, MapValue)], default: Option<&MapValue>, tys: &[Ty]) -> Vec<Value> {
    let value = |v: &MapValue| match v {
        MapValue::Num(n) => json!(n),
        MapValue::Verdict(v) => verdict(v),
        MapValue::Nat(t) => nat_to(t),
    };
    let mut out: Vec<Value> = elems
        .iter()
        .map(|(e, v)| json!([elem(e, tys), value(v)]))
        .collect();
    out.extend(default.map(|v| json!(["*", value(v)])));
    out
}

/// What a map statement reads: `"@NAME"` or `{"set": [[K, V], ...]}`.
fn map_data(r: &MapRef, tys: &[Ty]) -> Value {
    match r {
        MapRef::Named(n) => json!(format!("@{n}")),
        MapRef::Anon(m) => json!({"set": map_pairs(&m.elems, m.default.as_ref(), tys)}),
    }
}

/// A live element: its value alone, or with a timeout `{"elem": {"val":
/// V, "timeout": S, "expires": S}}` (seconds; the timeout only when it is
/// not the set's).
fn live_elem(s: &Set, v: Value, e: &ipxmit::nft::dynset::LiveElem, now: u64) -> Value {
    if e.timeout == 0 {
        return v;
    }
    let mut o = json!({"val": v});
    let ms = e.timeout / 1_000_000;
    if ms != s.opts.timeout {
        o["timeout"] = json!(ms / 1000);
    }
    o["expires"] = json!(e.expires.saturating_sub(now) / 1_000_000_000);
    json!({ "elem": o })
}

/// `{"set": {"op": "add", "elem": KEY, "set": "@s"}}` (`elem` with its
/// timeout: `{"elem": {"val": KEY, "timeout": S}}`).
fn set_update(u: &SetUpdate) -> Value {
    let mut e = keys_expr(&u.keys);
    if u.timeout != 0 {
        e = json!({"elem": {"val": e, "timeout": u.timeout / 1000}});
    }
    let op = if u.update { "update" } else { "add" };
    json!({"set": {"op": op, "elem": e, "set": format!("@{}", u.set)}})
}

/// A key, or the keys of a concatenation (`{"concat": [...]}`).
fn keys_expr(keys: &[Key]) -> Value {
    match keys {
        [k] => key(*k),
        ks => json!({"concat": ks.iter().map(|k| key(*k)).collect::<Vec<_>>()}),
    }
}

/// A value of type `ty`: addresses and names as strings, numbers as numbers.
fn val(v: u64, ty: Ty) -> Value {
    match ty {
        Ty::Addr | Ty::Proto | Ty::Dscp | Ty::Ecn | Ty::CtDir | Ty::Prio => {
            let s = value(v, ty);
            s.parse::<u64>().map_or(json!(s), |n| json!(n))
        }
        _ => json!(v),
    }
}

fn elem(e: &Elem, tys: &[Ty]) -> Value {
    let ty = tys[0];
    if tys.len() > 1 {
        // The second key fills the low bits (16 for a port, else 32).
        let (a, b) = e.split_concat(if tys[1] == Ty::Port { 16 } else { 32 });
        return json!({"concat": [elem(&a, &tys[..1]), elem(&b, &tys[1..])]});
    }
    if e.lo == e.hi {
        return val(e.lo, ty);
    }
    let span = e.hi - e.lo + 1;
    if ty == Ty::Addr && span.is_power_of_two() && e.lo.is_multiple_of(span) {
        let addr = Ipv4Addr::from(e.lo as u32).to_string();
        return json!({"prefix": {"addr": addr, "len": 32 - span.trailing_zeros()}});
    }
    json!({"range": [val(e.lo, ty), val(e.hi, ty)]})
}

fn key(k: Key) -> Value {
    let pl = |p: &str, f: &str| json!({"payload": {"protocol": p, "field": f}});
    let meta = |m: &str| json!({"meta": {"key": m}});
    let text = super::nft_list::key_str(k);
    match text.split_once(' ') {
        Some(("ip", f)) => pl("ip", f),
        Some((p @ ("udp" | "tcp" | "th"), f)) => pl(p, f),
        Some(("meta", m)) => meta(m),
        Some(("ct", c)) => json!({"ct": {"key": c}}),
        _ => meta(text),
    }
}

/// `KEY & MASK` (`{"&": [KEY, MASK]}`), `KEY | BITS`, or both.
fn masked_left(left: Value, k: Key, mask: u64, xor: u64) -> Value {
    let (all, ty) = (k.width_mask(), ty_of(k));
    match (mask, xor) {
        (mask, 0) => json!({"&": [left, val(mask, ty)]}),
        (mask, x) if mask == all & !x => json!({"|": [left, val(x, ty)]}),
        (mask, x) => json!({"^": [{"&": [left, val(mask, ty)]}, val(x, ty)]}),
    }
}

fn matcher(m: &Match) -> Value {
    let left = keys_expr(&m.keys);
    let tys: Vec<Ty> = m.keys.iter().map(|k| ty_of(*k)).collect();
    if let Rhs::Vmap(r) = &m.rhs {
        return json!({"vmap": {"key": left, "data": map_data(r, &tys)}});
    }
    let op = match m.op {
        Op::Eq => "==",
        Op::Ne => "!=",
        Op::Lt => "<",
        Op::Gt => ">",
        Op::Le => "<=",
        Op::Ge => ">=",
    };
    let (left, rhs) = match &m.rhs {
        Rhs::Masked { mask, xor, rhs } => (masked_left(left, m.keys[0], *mask, *xor), &**rhs),
        rhs => (left, rhs),
    };
    let right = match rhs {
        Rhs::Value(v) => val(*v, tys[0]),
        Rhs::Prefix(a, l) => json!({"prefix": {"addr": Ipv4Addr::from(*a).to_string(), "len": l}}),
        Rhs::Range(lo, hi) => json!({"range": [val(*lo, tys[0]), val(*hi, tys[0])]}),
        Rhs::Set(e) => json!({"set": e.iter().map(|e| elem(e, &tys)).collect::<Vec<_>>()}),
        Rhs::Named(n) => json!(format!("@{n}")),
        Rhs::Dev(n, _) | Rhs::Ifname(n) => json!(n),
        Rhs::IfnameSet(v) => json!({ "set": v }),
        Rhs::Flags(f) => {
            let names: Vec<&str> = CT_STATES
                .iter()
                .filter(|(_, b)| f & u64::from(*b) != 0)
                .map(|(n, _)| *n)
                .collect();
            if names.len() == 1 {
                json!(names[0])
            } else {
                json!(names)
            }
        }
        Rhs::Vmap(_) | Rhs::Masked { .. } => {
            json!(super::nft_list::stmt(&Stmt::Match(m.clone())))
        }
    };
    let op = if matches!(m.rhs, Rhs::Flags(_)) && m.op == Op::Eq {
        "in"
    } else {
        op
    };
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn verdict(v: &RuleVerdict) -> Value {
    match v {
        RuleVerdict::Accept => json!({"accept": null}),
        RuleVerdict::Drop => json!({"drop": null}),
        RuleVerdict::Continue => json!({"continue": null}),
        RuleVerdict::Return => json!({"return": null}),
        RuleVerdict::Jump(c) => json!({"jump": {"target": c}}),
        RuleVerdict::Goto(c) => json!({"goto": {"target": c}}),
    }
}

/// `snat|dnat|masquerade|redirect` with their address and port.
fn nat(n: &Nat) -> Value {
    let kind = match n.kind {
        NatKind::Snat => "snat",
        NatKind::Dnat => "dnat",
        NatKind::Masquerade => "masquerade",
        NatKind::Redirect => "redirect",
    };
    let mut o = Map::new();
    match n.addr {
        Some((a, b)) if a == b => {
            o.insert("addr".into(), json!(Ipv4Addr::from(a).to_string()));
        }
        Some((a, b)) => {
            let e = Elem {
                lo: u64::from(a),
                hi: u64::from(b),
            };
            o.insert("addr".into(), elem(&e, &[Ty::Addr]));
        }
        None => {}
    }
    match n.ports {
        Some((lo, hi)) if lo == hi => {
            o.insert("port".into(), json!(lo));
        }
        Some((lo, hi)) => {
            o.insert("port".into(), json!({"range": [lo, hi]}));
        }
        None => {}
    }
    json!({ kind: if o.is_empty() { Value::Null } else { Value::Object(o) } })
}

/// A NAT statement whose target a map gives: `{"snat": {"family": "ip",
/// "addr": {"map": {...}}}}` (`redirect`: `"port"`), `prefix` as
/// `"flags": "netmap", "type_flags": "prefix"`.
fn nat_map(m: &NatMap) -> Value {
    let tys: Vec<Ty> = m.keys.iter().map(|k| ty_of(*k)).collect();
    let map = json!({"map": {"key": keys_expr(&m.keys), "data": map_data(&m.map, &tys)}});
    let mut o = Map::new();
    if super::nft_list::nat_map_family(m) {
        o.insert("family".into(), json!("ip"));
    }
    let what = match m.nat.kind {
        NatKind::Redirect | NatKind::Masquerade => "port",
        _ => "addr",
    };
    o.insert(what.into(), map);
    if m.netmap {
        o.insert("flags".into(), json!("netmap"));
        o.insert("type_flags".into(), json!("prefix"));
    }
    json!({ super::nft_list::nat_word(m.nat.kind): Value::Object(o) })
}

/// A NAT map's value: an address, range or prefix, a port or port range,
/// or their concatenation.
fn nat_to(t: &NatTo) -> Value {
    let addr = t.addr.map(|(a, b)| {
        elem(
            &Elem {
                lo: u64::from(a),
                hi: u64::from(b),
            },
            &[Ty::Addr],
        )
    });
    let port = t.ports.map(|(lo, hi)| {
        if lo == hi {
            json!(lo)
        } else {
            json!({"range": [lo, hi]})
        }
    });
    match (addr, port) {
        (Some(a), Some(p)) => json!({"concat": [a, p]}),
        (Some(v), None) | (None, Some(v)) => v,
        (None, None) => Value::Null,
    }
}

/// `limit rate ...`.
fn limit(l: &Limit) -> Value {
    let per = LIMIT_UNITS
        .iter()
        .find(|(_, s)| *s == l.unit)
        .map_or("second", |(n, _)| n);
    let mut o = json!({"rate": l.rate, "burst": l.burst, "per": per});
    if l.bytes {
        o["rate_unit"] = json!("bytes");
        o["burst_unit"] = json!("bytes");
    }
    if l.over {
        o["inv"] = json!(true);
    }
    json!({ "limit": o })
}

/// `log ...`: the options given.
fn log(l: &Log) -> Value {
    let mut o = Map::new();
    if let Some(p) = &l.prefix {
        o.insert("prefix".into(), json!(p));
    }
    if let Some(g) = l.group {
        o.insert("group".into(), json!(g));
    }
    if let Some(n) = l.snaplen {
        o.insert("snaplen".into(), json!(n));
    }
    if let Some(q) = l.qthreshold {
        o.insert("queue-threshold".into(), json!(q));
    }
    let level = l
        .level
        .and_then(|v| LOG_LEVELS.iter().find(|(_, x)| *x == v));
    if let Some((name, _)) = level.filter(|(n, _)| *n != "warn") {
        o.insert("level".into(), json!(name));
    }
    if l.flags != 0 {
        o.insert("flags".into(), log_flags(l.flags));
    }
    json!({ "log": if o.is_empty() { Value::Null } else { Value::Object(o) } })
}

/// `log`'s flags: `["all"]` or the names of those set.
fn log_flags(f: u8) -> Value {
    if f & LOG_ALL == LOG_ALL {
        return json!(["all"]);
    }
    let names = [
        (LOG_TCPSEQ, "tcp sequence"),
        (LOG_TCPOPT, "tcp options"),
        (LOG_IPOPT, "ip options"),
        (LOG_UID, "skuid"),
        (LOG_MACDECODE, "ether"),
    ];
    json!(names
        .iter()
        .filter(|(b, _)| f & b != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>())
}

/// One statement as nft's JSON writes it.
fn stmt(s: &Stmt) -> Value {
    let mangle = |k: Key, v: Value| json!({"mangle": {"key": key(k), "value": v}});
    match s {
        Stmt::Match(m) => matcher(m),
        Stmt::Counter(c) => {
            let (p, b) = c.get();
            json!({"counter": {"packets": p, "bytes": b}})
        }
        Stmt::Verdict(v) => verdict(v),
        Stmt::MarkSet(m) => mangle(Key::MetaMark, json!(m)),
        Stmt::PrioritySet(v) => mangle(Key::MetaPriority, val(u64::from(*v), Ty::Prio)),
        Stmt::DscpSet(d) => mangle(Key::IpDscp, val(u64::from(*d), Ty::Dscp)),
        Stmt::TtlSet(t) => mangle(Key::IpTtl, json!(t)),
        Stmt::FieldSet(k, v) => mangle(*k, val(u64::from(*v), ty_of(*k))),
        Stmt::Reject(Reject::Icmp(c)) => {
            let name = ICMP_CODES
                .iter()
                .find(|(_, x)| x == c)
                .map_or(json!(c), |(n, _)| json!(n));
            json!({"reject": {"type": "icmp", "expr": name}})
        }
        Stmt::Reject(Reject::TcpReset) => json!({"reject": {"type": "tcp reset"}}),
        Stmt::Nat(n) => nat(n),
        Stmt::NatMap(m) => nat_map(m),
        Stmt::Limit(l) => limit(l),
        Stmt::Log(l) => log(l),
        Stmt::SetUpdate(u) => set_update(u),
        Stmt::MarkSetMap(keys, r) => {
            let tys: Vec<Ty> = keys.iter().map(|k| ty_of(*k)).collect();
            let map = json!({"map": {"key": keys_expr(keys), "data": map_data(r, &tys)}});
            json!({"mangle": {"key": {"meta": {"key": "mark"}}, "value": map}})
        }
    }
}
