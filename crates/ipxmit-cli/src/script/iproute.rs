//! `ip route` and `ip rule` lines in scripts: ip(8)'s words, its messages
//! and its output.
//!
//! Stands for iproute2 6.1's `ip/iproute.c` (`iproute_modify`,
//! `iproute_list_flush_or_save`, `iproute_get`, `print_route`) and
//! `ip/iprule.c` (`iprule_modify`, `print_rule`), and for the kernel's
//! answers to them (`RTNETLINK answers: ...`, extack messages such as
//! `Error: Nexthop has invalid gateway.`). Every `ip route` output line ends
//! with one space, as ip prints it; `ip rule` lines do not.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use ipxmit::route::rules::{table_id, FibRule, RuleAction, RT_MASK};
use ipxmit::route::{DelKey, FlowKey, RouteError, RouteProto, RtnType, RT_TABLE_MAIN};
use ipxmit::{RouteSpec, Stack};

use super::ip::IpOpts;
use super::parse::{Command, ParseError};

mod show;

/// An `ip route` or `ip rule` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteCommand {
    /// `ip route add|replace|del ...`.
    Modify {
        /// `add`, `replace` or `del`.
        op: Op,
        /// The route as named.
        spec: RouteWords,
    },
    /// `ip route show [table T|all] [dev D] [type T]` or `show cache`.
    Show {
        /// ip's global options.
        opts: IpOpts,
        /// `table T` (`None`: main; `Some(0)`: all).
        table: Option<u32>,
        /// `dev D`.
        dev: Option<String>,
        /// `type T`.
        kind: Option<RtnType>,
        /// `cache`: the path-MTU exceptions.
        cache: bool,
    },
    /// `ip route get A [from S] [mark M] [tos T] [oif D]`.
    Get {
        /// ip's global options.
        opts: IpOpts,
        /// The flow, with `oif` by name.
        key: FlowKey,
        /// `oif D`.
        oif: Option<String>,
        /// `from S` was given.
        from: bool,
    },
    /// `ip rule add|del ...`.
    Rule {
        /// True for `add`.
        add: bool,
        /// The rule as named.
        rule: FibRule,
        /// `priority` was given.
        prio_given: bool,
        /// Which selectors were given (for `del`).
        given: Given,
    },
    /// `ip rule show`.
    RuleShow(IpOpts),
}

/// `ip route add|replace|del`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `add`.
    Add,
    /// `replace` (also `change`).
    Replace,
    /// `del`.
    Del,
}

/// What a route line named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteWords {
    /// The prefix.
    pub prefix: Ipv4Net,
    /// The type word, when given.
    pub kind: Option<RtnType>,
    /// `via`.
    pub via: Option<Ipv4Addr>,
    /// `dev`.
    pub dev: Option<String>,
    /// `src`.
    pub src: Option<Ipv4Addr>,
    /// `mtu [lock] N`.
    pub mtu: Option<(bool, u32)>,
    /// `hoplimit N`.
    pub hoplimit: Option<u8>,
    /// `metric N`.
    pub metric: Option<u32>,
    /// `tos T`.
    pub tos: u8,
    /// `table T`.
    pub table: u32,
    /// `proto P`.
    pub proto: RouteProto,
}

/// Which rule selectors a line gave (`ip rule del` matches on those).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Given {
    /// Any selector or action other than the priority.
    pub any: bool,
}

fn err(msg: impl Into<String>) -> ParseError {
    ParseError::Tc(msg.into())
}

/// The word after a keyword, or ip's complaint that the line ends early.
fn next_word<'a>(it: &mut std::slice::Iter<'_, &'a str>) -> Result<&'a str, ParseError> {
    it.next()
        .copied()
        .ok_or_else(|| err("Command line is not complete. Try option \"help\""))
}

/// `Error: argument "W" is wrong: WHAT`.
fn wrong(word: &str, what: &str) -> ParseError {
    err(format!("Error: argument \"{word}\" is wrong: {what}"))
}

/// ip's `matches()`: `word` is a non-empty prefix of `full`.
fn matches(word: &str, full: &str) -> bool {
    !word.is_empty() && full.starts_with(word)
}

/// iproute2's `get_u32`: decimal, `0x` hex or `0` octal.
fn num(s: &str) -> Option<u32> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

/// iproute2's `rtnl_dsfield_a2n`: a TOS byte, hex or decimal.
fn tos_value(s: &str) -> Option<u8> {
    let v = if let Some(h) = s.strip_prefix("0x") {
        u32::from_str_radix(h, 16).ok()?
    } else {
        u32::from_str_radix(s, 16).ok()?
    };
    u8::try_from(v).ok()
}

fn addr(s: &str) -> Option<Ipv4Addr> {
    s.parse().ok()
}

/// A prefix word: `default`/`all`, `A.B.C.D[/LEN]`.
fn prefix_word(s: &str) -> Option<Ipv4Net> {
    if s == "default" || s == "all" || s == "any" {
        return Some(Ipv4Net::default());
    }
    match s.split_once('/') {
        Some((a, l)) => Ipv4Net::new(addr(a)?, l.parse().ok()?).ok(),
        None => addr(s).map(Ipv4Net::from),
    }
}

/// Parses `ip route ...` (the words after `route`).
pub fn parse_route(w: &[&str], opts: IpOpts) -> Result<Command, ParseError> {
    let Some((&sub, rest)) = w.split_first() else {
        return Ok(show_cmd(opts, rest_show(&[])?));
    };
    let op = if matches(sub, "add") {
        Op::Add
    } else if sub == "replace" || matches(sub, "change") {
        Op::Replace
    } else if matches(sub, "delete") {
        Op::Del
    } else if matches(sub, "show") || matches(sub, "list") || sub == "lst" {
        return Ok(show_cmd(opts, rest_show(rest)?));
    } else if matches(sub, "get") {
        return parse_get(rest, opts);
    } else {
        return Err(err(format!(
            "Command \"{sub}\" is unknown, try \"ip route help\"."
        )));
    };
    let spec = parse_route_words(rest)?;
    Ok(Command::IpRoute(RouteCommand::Modify { op, spec }))
}

/// `(table, dev, type, cache)` of a show line.
type ShowArgs = (Option<u32>, Option<String>, Option<RtnType>, bool);

fn show_cmd(opts: IpOpts, (table, dev, kind, cache): ShowArgs) -> Command {
    Command::IpRoute(RouteCommand::Show {
        opts,
        table,
        dev,
        kind,
        cache,
    })
}

fn rest_show(w: &[&str]) -> Result<ShowArgs, ParseError> {
    let (mut table, mut dev, mut kind, mut cache) = (None, None, None, false);
    let mut it = w.iter();
    while let Some(&k) = it.next() {
        let mut val = || next_word(&mut it);
        match k {
            "table" => {
                let v = val()?;
                table = Some(match v {
                    "all" => 0,
                    _ => table_id(v).ok_or_else(|| wrong(v, "table id value is invalid"))?,
                });
            }
            "dev" | "oif" => dev = Some(val()?.to_string()),
            "type" => {
                let v = val()?;
                kind = Some(
                    RtnType::from_name(v).ok_or_else(|| wrong(v, "node type value is invalid"))?,
                );
            }
            "cache" => cache = true,
            _ => return Err(wrong(k, "invalid argument")),
        }
    }
    Ok((table, dev, kind, cache))
}

/// `iproute_modify`'s words: `[TYPE] PREFIX [KEY VALUE]...`.
fn parse_route_words(w: &[&str]) -> Result<RouteWords, ParseError> {
    let mut r = RouteWords {
        prefix: Ipv4Net::default(),
        kind: None,
        via: None,
        dev: None,
        src: None,
        mtu: None,
        hoplimit: None,
        metric: None,
        tos: 0,
        table: RT_TABLE_MAIN,
        proto: RouteProto::Boot,
    };
    let mut have_prefix = false;
    let mut i = 0;
    while i < w.len() {
        let k = w[i];
        let mut val = |what: &str| {
            i += 1;
            w.get(i).copied().ok_or_else(|| {
                err(format!(
                    "Command line is not complete. Try option \"help\" ({what})"
                ))
            })
        };
        match k {
            "via" => {
                let v = val("via")?;
                let v = if v == "inet" { val("via")? } else { v };
                r.via = Some(addr(v).ok_or_else(|| wrong(v, "invalid gateway address"))?);
            }
            "dev" | "oif" => r.dev = Some(val("dev")?.to_string()),
            "src" => {
                let v = val("src")?;
                r.src = Some(addr(v).ok_or_else(|| wrong(v, "invalid source address"))?);
            }
            "mtu" => {
                let mut v = val("mtu")?;
                let lock = v == "lock";
                if lock {
                    v = val("mtu")?;
                }
                let n = num(v).ok_or_else(|| wrong(v, "\"mtu\" value is invalid"))?;
                r.mtu = Some((lock, n));
            }
            "hoplimit" => {
                let v = val("hoplimit")?;
                let n = num(v)
                    .filter(|&n| n <= 255)
                    .ok_or_else(|| wrong(v, "\"hoplimit\" value is invalid"))?;
                r.hoplimit = Some(n as u8);
            }
            "metric" | "priority" | "preference" => {
                let v = val("metric")?;
                r.metric = Some(num(v).ok_or_else(|| wrong(v, "\"metric\" value is invalid"))?);
            }
            "tos" | "dsfield" => {
                let v = val("tos")?;
                r.tos = tos_value(v).ok_or_else(|| wrong(v, "\"tos\" value is invalid"))?;
            }
            "table" => {
                let v = val("table")?;
                r.table = table_id(v)
                    .or((num(v) == Some(0)).then_some(RT_TABLE_MAIN))
                    .ok_or_else(|| wrong(v, "\"table\" value is invalid"))?;
            }
            "proto" | "protocol" => {
                let v = val("proto")?;
                r.proto = match v {
                    "kernel" => RouteProto::Kernel,
                    "boot" => RouteProto::Boot,
                    "static" => RouteProto::Static,
                    _ => return Err(wrong(v, "\"protocol\" value is invalid")),
                };
            }
            "to" if !have_prefix => {
                let v = val("to")?;
                r.prefix = prefix_word(v).ok_or_else(|| wrong(v, "invalid prefix"))?;
                have_prefix = true;
            }
            _ if !have_prefix && RtnType::from_name(k).is_some() && r.kind.is_none() => {
                r.kind = RtnType::from_name(k);
            }
            _ if !have_prefix => {
                r.prefix = prefix_word(k).ok_or_else(|| wrong(k, "invalid prefix"))?;
                have_prefix = true;
            }
            _ => {
                return Err(err(format!(
                    "Error: either \"to\" is duplicate, or \"{k}\" is a garbage."
                )))
            }
        }
        i += 1;
    }
    Ok(r)
}

fn parse_get(w: &[&str], opts: IpOpts) -> Result<Command, ParseError> {
    let mut key = FlowKey::to(Ipv4Addr::UNSPECIFIED);
    let (mut oif, mut from, mut have) = (None, false, false);
    let mut it = w.iter();
    while let Some(&k) = it.next() {
        let mut val = || next_word(&mut it);
        match k {
            "from" => {
                let v = val()?;
                key.saddr = prefix_word(v)
                    .ok_or_else(|| wrong(v, "invalid from address"))?
                    .addr();
                from = true;
            }
            "mark" => {
                let v = val()?;
                key.mark = num(v).ok_or_else(|| wrong(v, "invalid mark value"))?;
            }
            "tos" | "dsfield" => {
                let v = val()?;
                key.tos = tos_value(v).ok_or_else(|| wrong(v, "\"tos\" value is invalid"))?;
            }
            "oif" | "dev" => oif = Some(val()?.to_string()),
            "ipproto" => {
                let v = val()?;
                key.proto =
                    super::parse::protocol(v).map_err(|_| wrong(v, "Invalid \"ipproto\" value"))?;
            }
            "dport" | "sport" => {
                let v = val()?;
                let p = v.parse::<u16>().map_err(|_| wrong(v, "invalid port"))?;
                if k == "dport" {
                    key.dport = p;
                } else {
                    key.sport = p;
                }
            }
            _ if !have => {
                let v = if k == "to" { val()? } else { k };
                key.daddr = prefix_word(v)
                    .ok_or_else(|| wrong(v, "invalid address"))?
                    .addr();
                have = true;
            }
            _ => {
                return Err(err(format!(
                    "Error: either \"to\" is duplicate, or \"{k}\" is a garbage."
                )))
            }
        }
    }
    if !have {
        return Err(err("need at least a destination address"));
    }
    Ok(Command::IpRoute(RouteCommand::Get {
        opts,
        key,
        oif,
        from,
    }))
}

/// Parses `ip rule ...` (the words after `rule`).
pub fn parse_rule(w: &[&str], opts: IpOpts) -> Result<Command, ParseError> {
    let Some((&sub, rest)) = w.split_first() else {
        return Ok(Command::IpRoute(RouteCommand::RuleShow(opts)));
    };
    let add = if matches(sub, "add") {
        true
    } else if matches(sub, "delete") {
        false
    } else if matches(sub, "show") || matches(sub, "list") || sub == "lst" {
        return Ok(Command::IpRoute(RouteCommand::RuleShow(opts)));
    } else {
        return Err(err(format!(
            "Command \"{sub}\" is unknown, try \"ip rule help\"."
        )));
    };
    let (rule, prio_given, given) = parse_rule_words(rest)?;
    Ok(Command::IpRoute(RouteCommand::Rule {
        add,
        rule,
        prio_given,
        given,
    }))
}

/// `iprule_modify`'s words.
fn parse_rule_words(w: &[&str]) -> Result<(FibRule, bool, Given), ParseError> {
    let mut r = FibRule::lookup(0, RT_TABLE_MAIN);
    let (mut prio, mut given) = (false, Given::default());
    let mut it = w.iter();
    while let Some(&k) = it.next() {
        let mut val = || next_word(&mut it);
        let prio_word = matches(k, "preference") || matches(k, "priority") || matches(k, "order");
        given.any |= !prio_word;
        let k = if prio_word {
            "pref"
        } else if matches(k, "fwmark") {
            "fwmark"
        } else if matches(k, "table") {
            "table"
        } else {
            k
        };
        match k {
            "not" => r.invert = true,
            "from" | "to" => {
                let v = val()?;
                let n = rule_prefix(v)?;
                if k == "from" {
                    r.from = n
                } else {
                    r.to = n
                }
            }
            "tos" | "dsfield" => {
                let v = val()?;
                r.tos = tos_value(v).ok_or_else(|| wrong(v, "TOS value is invalid"))?;
            }
            "fwmark" => {
                let v = val()?;
                r.fwmark = fwmark(v)?;
            }
            "iif" | "dev" => r.iif = Some((val()?.to_string(), 0)),
            "oif" => r.oif = Some((val()?.to_string(), 0)),
            "pref" | "priority" | "order" => {
                let v = val()?;
                r.priority = num(v).ok_or_else(|| wrong(v, "preference value is invalid"))?;
                prio = true;
            }
            "ipproto" => {
                let v = val()?;
                r.ipproto =
                    super::parse::protocol(v).map_err(|_| wrong(v, "Invalid \"ipproto\" value"))?;
            }
            "sport" | "dport" => {
                let v = val()?;
                let range = port_range(v)?;
                if k == "sport" {
                    r.sport = Some(range)
                } else {
                    r.dport = Some(range)
                }
            }
            "table" | "lookup" => {
                let v = val()?;
                r.action =
                    RuleAction::Table(table_id(v).ok_or_else(|| wrong(v, "invalid table ID"))?);
            }
            "blackhole" => r.action = RuleAction::Blackhole,
            "unreachable" => r.action = RuleAction::Unreachable,
            "prohibit" => r.action = RuleAction::Prohibit,
            "nop" => r.action = RuleAction::Nop,
            _ => return Err(wrong(k, "Failed to parse rule type")),
        }
    }
    Ok((r, prio, given))
}

fn rule_prefix(v: &str) -> Result<Option<Ipv4Net>, ParseError> {
    if v == "all" {
        return Ok(None);
    }
    let n = prefix_word(v).ok_or_else(|| wrong(v, "invalid prefix"))?;
    Ok(Some(n))
}

fn fwmark(v: &str) -> Result<(u32, u32), ParseError> {
    let (m, mask) = match v.split_once('/') {
        Some((m, k)) => (m, Some(k)),
        None => (v, None),
    };
    let m = num(m).ok_or_else(|| wrong(v, "fwmark value is invalid"))?;
    let mask = match mask {
        Some(k) => num(k).ok_or_else(|| wrong(v, "fwmask value is invalid"))?,
        None => u32::MAX,
    };
    Ok((m, mask))
}

fn port_range(v: &str) -> Result<(u16, u16), ParseError> {
    let p = |s: &str| s.parse::<u16>().map_err(|_| wrong(v, "invalid port range"));
    match v.split_once('-') {
        Some((a, b)) => Ok((p(a)?, p(b)?)),
        None => p(v).map(|x| (x, x)),
    }
}

/// Carries out an `ip route`/`ip rule` line: the text it printed, or ip's
/// message for a refusal.
pub fn run(stack: &Stack, cmd: &RouteCommand) -> Result<Option<String>, String> {
    match cmd {
        RouteCommand::Modify { op, spec } => modify(stack, *op, spec).map(|()| None),
        RouteCommand::Show {
            opts,
            table,
            dev,
            kind,
            cache,
        } => {
            if *cache {
                return Ok(Some(show::cache(stack, opts)));
            }
            show::routes(
                stack,
                opts,
                table.unwrap_or(RT_TABLE_MAIN),
                dev.as_deref(),
                *kind,
            )
            .map(Some)
        }
        RouteCommand::Get {
            opts,
            key,
            oif,
            from,
        } => show::get(stack, opts, key, oif.as_deref(), *from).map(Some),
        RouteCommand::Rule {
            add,
            rule,
            prio_given,
            given,
        } => rule_modify(stack, *add, rule, *prio_given, *given).map(|()| None),
        RouteCommand::RuleShow(opts) => Ok(Some(show::rules(stack, opts))),
    }
}

/// The text ip prints for a kernel refusal.
fn rtnl(e: &RouteError) -> String {
    match e {
        RouteError::Invalid(m) => format!("Error: {m}."),
        RouteError::Exists(..) => "RTNETLINK answers: File exists".into(),
        RouteError::NotFound(_) => "RTNETLINK answers: No such process".into(),
        RouteError::NoDevice(_) => "RTNETLINK answers: No such device".into(),
        e => format!("RTNETLINK answers: {}", strerror(e.errno())),
    }
}

/// `strerror()` of the errnos a route request answers with.
pub fn strerror(e: ipxmit::Errno) -> &'static str {
    use ipxmit::Errno::*;
    match e {
        ENETUNREACH => "Network is unreachable",
        EHOSTUNREACH => "No route to host",
        EACCES => "Permission denied",
        EINVAL => "Invalid argument",
        ENODEV => "No such device",
        EEXIST => "File exists",
        ESRCH => "No such process",
        _ => "Operation not permitted",
    }
}

fn modify(stack: &Stack, op: Op, w: &RouteWords) -> Result<(), String> {
    if w.tos & 3 != 0 {
        return Err("Error: Invalid dsfield (tos): ECN bits must be 0.".into());
    }
    if w.prefix != w.prefix.trunc() {
        return Err("Error: Invalid prefix for given prefix length.".into());
    }
    if let Some(d) = &w.dev {
        if stack.device(d).is_err() {
            return Err(format!("Cannot find device \"{d}\""));
        }
    }
    if op == Op::Del {
        let key = DelKey {
            tos: w.tos,
            metric: w.metric,
            kind: w.kind,
            ifindex: w
                .dev
                .as_ref()
                .and_then(|d| stack.device(d).ok())
                .map(|d| d.ifindex()),
            gateway: w.via,
        };
        return stack
            .del_route_matching(w.table, w.prefix, &key)
            .map_err(|e| config_err(&e));
    }
    let kind = w.kind.unwrap_or(RtnType::Unicast);
    if !kind.is_error() && w.dev.is_none() && w.via.is_none() {
        return Err("RTNETLINK answers: No such device".into());
    }
    let spec = RouteSpec {
        prefix: w.prefix,
        kind,
        via: w.via,
        dev: w.dev.clone(),
        src: w.src,
        mtu: w.mtu.map(|(_, m)| m),
        mtu_lock: w.mtu.is_some_and(|(l, _)| l),
        hoplimit: w.hoplimit,
        metric: w.metric.unwrap_or(0),
        tos: w.tos,
        table: w.table,
        proto: w.proto,
    };
    let r = match op {
        Op::Add => stack.add_route(spec),
        _ => stack.replace_route(spec),
    };
    r.map_err(|e| config_err(&e))
}

fn config_err(e: &ipxmit::stack::ConfigError) -> String {
    match e {
        ipxmit::stack::ConfigError::Route(r) => rtnl(r),
        ipxmit::stack::ConfigError::NoDevice(d) => format!("Cannot find device \"{d}\""),
        e => format!("Error: {e}"),
    }
}

fn rule_modify(
    stack: &Stack,
    add: bool,
    r: &FibRule,
    prio: bool,
    given: Given,
) -> Result<(), String> {
    if r.tos & 3 != 0 {
        return Err("Error: Invalid dsfield (tos): ECN bits must be 0.".into());
    }
    if r.tos & !RT_MASK != 0 {
        return Err("Error: Invalid tos.".into());
    }
    let mut rule = r.clone();
    let index = |d: &Option<(String, u32)>| {
        d.as_ref()
            .map(|(n, _)| (n.clone(), stack.device(n).map_or(u32::MAX, |d| d.ifindex())))
    };
    rule.iif = index(&r.iif);
    rule.oif = index(&r.oif);
    if !add {
        let same = |x: &FibRule| {
            (!prio || x.priority == rule.priority)
                && (!given.any
                    || FibRule {
                        priority: x.priority,
                        kernel: x.kernel,
                        ..rule.clone()
                    } == *x)
        };
        return if stack.del_rule(same) {
            Ok(())
        } else {
            Err("RTNETLINK answers: No such file or directory".into())
        };
    }
    if !prio {
        rule.priority = stack.rib().default_priority();
    }
    stack
        .add_rule(rule)
        .map_err(|_| "RTNETLINK answers: File exists".to_string())
}

#[cfg(test)]
mod tests {
    use super::super::exec::Host;
    use super::super::parse::parse_line;

    /// Words ip route/rule lines are made of, right and wrong.
    const VOCAB: &str = "ip route rule add del replace show get cache table all local main \
        100 0 blackhole unreachable prohibit throw via dev eth0 lo nosuch src mtu lock \
        hoplimit metric tos 0x10 0x03 0xfc from to fwmark 0x5/0xff iif oif ipproto udp dport \
        53 sport 1-2 prio not lookup nop mark default 10.0.0.0/8 10.1.2.3/16 10.0.0.2 \
        10.0.0.1 0.0.0.0 255.255.255.255 224.0.0.5 127.0.0.1 65536 -1 4294967296 x / -j";

    /// Random ip route/rule lines (a fixed xorshift sequence), parsed and
    /// carried out on a host with routes already: a refusal is fine, a
    /// panic is not, and the host keeps answering.
    #[test]
    fn random_route_and_rule_lines_never_panic() {
        let mut h = Host::new(false);
        for l in [
            "link add eth0 type mem peer 10.0.0.2",
            "ip addr add 10.0.0.1/24 dev eth0",
            "ip route add default via 10.0.0.2",
        ] {
            let c = parse_line(l).unwrap().unwrap();
            h.exec(&c).unwrap();
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let vocab: Vec<&str> = VOCAB.split_whitespace().collect();
        let (mut parsed, mut ran) = (0, 0);
        for _ in 0..20_000 {
            let n = 2 + next() % 9;
            let mut words = vec!["ip", ["route", "rule"][(next() % 2) as usize]];
            words.extend((0..n).map(|_| vocab[(next() % vocab.len() as u64) as usize]));
            let line = words.join(" ");
            if let Ok(Some(c)) = parse_line(&line) {
                parsed += 1;
                ran += usize::from(h.exec(&c).is_ok());
            }
        }
        assert!(parsed > 100 && ran > 50, "parsed {parsed}, ran {ran}");
        let get = parse_line("ip route get 10.0.0.2").unwrap().unwrap();
        assert!(h.exec(&get).is_ok(), "the host still answers");
    }
}
