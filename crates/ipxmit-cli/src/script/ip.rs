//! `ip` command lines in scripts: ip(8)'s words, its messages and its
//! output, for links, addresses and neighbours.
//!
//! Stands for iproute2 6.1's `ip/ip.c` (global options, object names),
//! `ip/iplink.c` (`ip link set|show`), `ip/ipaddress.c` (`ip addr
//! add|del|show`, `print_linkinfo`, `print_addrinfo`) and `ip/ipneigh.c`
//! (`ip neigh add|replace|del|show`), and for the kernel's answers to them
//! (`RTNETLINK answers: ...`, extack messages). A line is split with shell
//! word rules ([`super::tc::split_shell`]); the stack decides. `ip link add
//! NAME type mem|...` is ipxmit's own (`link add` in `docs/script.md`);
//! `ip route` goes to the route parser.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use ipxmit::neigh::NudState;
use ipxmit::wire::EthernetAddress;
use ipxmit::{NetDevice, Stack};
use serde_json::{json, Map, Value};

use super::parse::{Command, ParseError};
use crate::report;

/// ip's global options that change what `show` prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpOpts {
    /// `-s` (`-stats`): statistics.
    pub stats: bool,
    /// `-d` (`-details`): details.
    pub details: bool,
    /// `-j` (`-json`): JSON.
    pub json: bool,
    /// `-4`: IPv4 only.
    pub inet4: bool,
}

/// What `show` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpObject {
    /// `ip link show`.
    Link,
    /// `ip addr show`.
    Addr,
    /// `ip neigh show`.
    Neigh,
}

/// An `ip` line (or its unprefixed alias) for links, addresses, neighbours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpCommand {
    /// `ip link set DEV [mtu N] [up|down]`.
    LinkSet {
        /// Device.
        dev: String,
        /// New MTU.
        mtu: Option<u32>,
        /// Administrative state.
        up: Option<bool>,
    },
    /// `ip addr add|del A[/P] dev DEV`.
    Addr {
        /// True for `add`, false for `del`.
        add: bool,
        /// Address and prefix (`/32` when absent).
        net: Ipv4Net,
        /// `del` without a prefix length: the first address equal to it.
        any_len: bool,
        /// Device.
        dev: String,
    },
    /// `ip neigh add|replace ADDR lladdr MAC dev DEV [nud STATE]`.
    NeighSet {
        /// `replace` (no `File exists` for an existing entry).
        replace: bool,
        /// Neighbour address.
        addr: Ipv4Addr,
        /// Its link address (the kernel refuses an entry without one).
        lladdr: Option<EthernetAddress>,
        /// Device.
        dev: String,
        /// NUD state (default permanent).
        nud: NudState,
    },
    /// `ip neigh del ADDR dev DEV`.
    NeighDel {
        /// Neighbour address.
        addr: Ipv4Addr,
        /// Device.
        dev: String,
    },
    /// `ip [OPTIONS] link|addr|neigh show [dev D] [...]`.
    Show {
        /// What is listed.
        object: IpObject,
        /// The device, or every device.
        dev: Option<String>,
        /// Global options.
        opts: IpOpts,
        /// `up`: only devices that are up (link, addr).
        up_only: bool,
        /// `ip neigh show PREFIX`.
        to: Option<Ipv4Net>,
        /// `ip neigh show nud S|all` (`None`: ip's default, all but NOARP).
        nud: Option<Vec<NudState>>,
    },
}

fn err(msg: impl Into<String>) -> ParseError {
    ParseError::Tc(msg.into())
}

/// ip's `matches()`: `word` is a non-empty prefix of `full`.
fn matches(word: &str, full: &str) -> bool {
    !word.is_empty() && full.starts_with(word)
}

/// Parses the words after `ip`, as ip does (its messages). `ip route` goes
/// to the route parser, `ip link add` to ipxmit's link parser.
pub fn parse(words: &[String]) -> Result<Command, ParseError> {
    let mut opts = IpOpts::default();
    let mut i = 0;
    while let Some(o) = words.get(i).filter(|w| w.starts_with('-') && w.len() > 1) {
        let o = o.as_str();
        let name = o.strip_prefix("--").unwrap_or(o);
        if name == "-4" {
            opts.inet4 = true;
        } else if matches(name, "-json") {
            opts.json = true;
        } else if matches(name, "-stats") || matches(name, "-statistics") {
            opts.stats = true;
        } else if matches(name, "-details") {
            opts.details = true;
        } else {
            return Err(err(format!("Option \"{o}\" is unknown, try \"ip -help\".")));
        }
        i += 1;
    }
    let w: Vec<&str> = words[i..].iter().map(String::as_str).collect();
    parse_object(&w, opts)
}

/// `ip OBJECT ...` after the options; also the unprefixed aliases
/// (`addr ...`, `link ...`, `neigh ...`).
pub fn parse_object(w: &[&str], opts: IpOpts) -> Result<Command, ParseError> {
    let Some((&obj, rest)) = w.split_first() else {
        return Err(err("Usage: ip [ OPTIONS ] OBJECT { COMMAND | help }"));
    };
    // ip.c's table, in its order: the first object `obj` is a prefix of.
    let table = ["address", "route", "rule", "neighbor", "neighbour", "link"];
    let found = table.iter().find(|t| matches(obj, t));
    match found.copied() {
        Some("address") => parse_addr(rest, opts),
        Some("route") => super::iproute::parse_route(rest, opts),
        Some("rule") => super::iproute::parse_rule(rest, opts),
        Some("link") => parse_link(rest, opts),
        Some("neighbor" | "neighbour") => parse_neigh(rest, opts),
        _ => Err(err(format!(
            "Object \"{obj}\" is unknown, try \"ip help\"."
        ))),
    }
}

fn show(object: IpObject, dev: Option<String>, opts: IpOpts) -> IpCommand {
    IpCommand::Show {
        object,
        dev,
        opts,
        up_only: false,
        to: None,
        nud: None,
    }
}

/// `Error: either "K" is duplicate, or "W" is a garbage.`
fn garbage(key: &str, word: &str) -> ParseError {
    err(format!(
        "Error: either \"{key}\" is duplicate, or \"{word}\" is a garbage."
    ))
}

fn parse_link(w: &[&str], opts: IpOpts) -> Result<Command, ParseError> {
    let Some((&sub, rest)) = w.split_first() else {
        return Ok(Command::Ip(show(IpObject::Link, None, opts)));
    };
    if matches(sub, "add") {
        return super::parse::parse_link_add_words(rest);
    }
    if matches(sub, "set") {
        return parse_link_set(rest);
    }
    if matches(sub, "show") || matches(sub, "list") || matches(sub, "lst") {
        let (dev, up) = dev_filter(rest)?;
        let mut c = show(IpObject::Link, dev, opts);
        if let IpCommand::Show { up_only, .. } = &mut c {
            *up_only = up;
        }
        return Ok(Command::Ip(c));
    }
    Err(err(format!(
        "Command \"{sub}\" is unknown, try \"ip link help\"."
    )))
}

/// `[dev] NAME [up]` of `ip link show` / `ip addr show`.
fn dev_filter(w: &[&str]) -> Result<(Option<String>, bool), ParseError> {
    let (mut dev, mut up) = (None, false);
    let mut it = w.iter();
    while let Some(&k) = it.next() {
        match k {
            "up" => up = true,
            "dev" => {
                let d = it
                    .next()
                    .ok_or_else(|| err("Command line is not complete. Try option \"help\""))?;
                if dev.is_some() {
                    return Err(garbage("dev", d));
                }
                dev = Some(d.to_string());
            }
            _ if dev.is_none() => dev = Some(k.to_string()),
            _ => return Err(garbage("dev", k)),
        }
    }
    Ok((dev, up))
}

fn parse_link_set(w: &[&str]) -> Result<Command, ParseError> {
    let (mut dev, mut mtu, mut up) = (None::<String>, None, None);
    let mut it = w.iter();
    while let Some(&k) = it.next() {
        match k {
            "up" => up = Some(true),
            "down" => up = Some(false),
            "mtu" => {
                let v = need(&mut it)?;
                if mtu.is_some() {
                    return Err(err(format!(
                        "Error: duplicate \"mtu\": \"{v}\" is the second value."
                    )));
                }
                let n = v.parse::<u32>().map_err(|_| {
                    err(format!(
                        "Error: argument \"{v}\" is wrong: Invalid \"mtu\" value"
                    ))
                })?;
                mtu = Some(n);
            }
            "dev" => {
                let d = need(&mut it)?;
                if dev.is_some() {
                    return Err(garbage("dev", d));
                }
                dev = Some(d.to_string());
            }
            _ if dev.is_none() => dev = Some(k.to_string()),
            _ => return Err(garbage("dev", k)),
        }
    }
    let dev = dev.ok_or_else(|| err("Not enough information: \"dev\" argument is required."))?;
    Ok(Command::Ip(IpCommand::LinkSet { dev, mtu, up }))
}

fn need<'a>(it: &mut std::slice::Iter<'_, &'a str>) -> Result<&'a str, ParseError> {
    it.next()
        .copied()
        .ok_or_else(|| err("Command line is not complete. Try option \"help\""))
}

/// iproute2's `get_addr_ipv4`: one to four dotted decimal parts, the
/// missing ones zero (`1.2.3` is 1.2.3.0).
pub fn ip_addr(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut o = [0u8; 4];
    for (b, p) in o.iter_mut().zip(&parts) {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        *b = p.parse().ok()?;
    }
    Some(Ipv4Addr::from(o))
}

/// iproute2's `get_prefix`: `A[/LEN]`; the bool says a length was given.
pub fn ip_prefix(s: &str) -> Option<(Ipv4Net, bool)> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().ok().filter(|l| *l <= 32)?)),
        None => (s, None),
    };
    let net = Ipv4Net::new(ip_addr(a)?, len.unwrap_or(32)).ok()?;
    Some((net, len.is_some()))
}

fn parse_addr(w: &[&str], opts: IpOpts) -> Result<Command, ParseError> {
    let Some((&sub, rest)) = w.split_first() else {
        return Ok(Command::Ip(show(IpObject::Addr, None, opts)));
    };
    let add = if matches(sub, "add") {
        true
    } else if matches(sub, "delete") {
        false
    } else if matches(sub, "show") || matches(sub, "list") || matches(sub, "lst") {
        let (dev, up) = dev_filter(rest)?;
        let mut c = show(IpObject::Addr, dev, opts);
        if let IpCommand::Show { up_only, .. } = &mut c {
            *up_only = up;
        }
        return Ok(Command::Ip(c));
    } else {
        return Err(err(format!(
            "Command \"{sub}\" is unknown, try \"ip address help\"."
        )));
    };
    let (mut local, mut dev) = (None, None);
    let mut it = rest.iter();
    while let Some(&k) = it.next() {
        match k {
            "dev" => dev = Some(need(&mut it)?.to_string()),
            "peer" | "remote" | "broadcast" | "brd" | "anycast" | "scope" | "label"
            | "valid_lft" | "preferred_lft" | "metric" => {
                return Err(err(format!("Error: \"{k}\" is not supported by ipxmit.")))
            }
            _ => {
                let v = if k == "local" { need(&mut it)? } else { k };
                if local.is_some() {
                    return Err(garbage("local", v));
                }
                local = Some(ip_prefix(v).ok_or_else(|| {
                    err(format!(
                        "Error: any valid prefix is expected rather than \"{v}\"."
                    ))
                })?);
            }
        }
    }
    let dev = dev.ok_or_else(|| err("Not enough information: \"dev\" argument is required."))?;
    let (net, had_len) = local.ok_or_else(|| err("RTNETLINK answers: Operation not supported"))?;
    Ok(Command::Ip(IpCommand::Addr {
        add,
        net,
        any_len: !add && !had_len,
        dev,
    }))
}

/// `nud STATE` of `ip neigh`.
fn nud_word(s: &str) -> Option<NudState> {
    Some(match s {
        "permanent" => NudState::Permanent,
        "reachable" => NudState::Reachable,
        "noarp" => NudState::Noarp,
        "stale" => NudState::Stale,
        "none" => NudState::None,
        "incomplete" => NudState::Incomplete,
        "delay" => NudState::Delay,
        "probe" => NudState::Probe,
        "failed" => NudState::Failed,
        _ => return None,
    })
}

/// iproute2's `ll_addr_a2n`: hex bytes separated by `:` (ip names the
/// first that is not one); the kernel refuses a length other than six.
fn lladdr(s: &str) -> Result<EthernetAddress, ParseError> {
    let mut bytes = Vec::new();
    for p in s.split(':') {
        let b = (!p.is_empty() && p.len() <= 2)
            .then(|| u8::from_str_radix(p, 16).ok())
            .flatten()
            .ok_or_else(|| err(format!("\"{p}\" is invalid lladdr.")))?;
        bytes.push(b);
    }
    let a: [u8; 6] = bytes
        .try_into()
        .map_err(|_| err("Error: Invalid link address."))?;
    Ok(EthernetAddress(a))
}

fn parse_neigh(w: &[&str], opts: IpOpts) -> Result<Command, ParseError> {
    let Some((&sub, rest)) = w.split_first() else {
        return Ok(Command::Ip(show(IpObject::Neigh, None, opts)));
    };
    if matches(sub, "show") || matches(sub, "list") || matches(sub, "lst") {
        return parse_neigh_show(rest, opts);
    }
    let op = ["add", "replace", "delete"]
        .into_iter()
        .find(|o| matches(sub, o))
        .ok_or_else(|| {
            err(format!(
                "Command \"{sub}\" is unknown, try \"ip neigh help\"."
            ))
        })?;
    let (mut dst, mut ll, mut dev, mut nud) = (None, None, None, NudState::Permanent);
    let mut it = rest.iter();
    while let Some(&k) = it.next() {
        match k {
            "lladdr" => {
                let v = need(&mut it)?;
                if ll.is_some() {
                    return Err(err(format!(
                        "Error: duplicate \"lladdr\": \"{v}\" is the second value."
                    )));
                }
                ll = Some(v);
            }
            "nud" => {
                let v = need(&mut it)?;
                nud = nud_word(v).ok_or_else(|| {
                    err(format!(
                        "Error: argument \"{v}\" is wrong: nud state is bad"
                    ))
                })?;
            }
            "dev" => dev = Some(need(&mut it)?.to_string()),
            _ => {
                let v = if k == "to" { need(&mut it)? } else { k };
                if dst.is_some() {
                    return Err(garbage("to", v));
                }
                dst = Some(ip_addr(v).ok_or_else(|| {
                    err(format!(
                        "Error: any valid address is expected rather than \"{v}\"."
                    ))
                })?);
            }
        }
    }
    let (Some(addr), Some(dev)) = (dst, dev) else {
        return Err(err("Device and destination are required arguments."));
    };
    if op == "delete" {
        return Ok(Command::Ip(IpCommand::NeighDel { addr, dev }));
    }
    let lladdr = ll.map(lladdr).transpose()?;
    Ok(Command::Ip(IpCommand::NeighSet {
        replace: op == "replace",
        addr,
        lladdr,
        dev,
        nud,
    }))
}

fn parse_neigh_show(w: &[&str], opts: IpOpts) -> Result<Command, ParseError> {
    let (mut dev, mut to, mut nud) = (None, None, None::<Vec<NudState>>);
    let mut it = w.iter();
    while let Some(&k) = it.next() {
        match k {
            "dev" => dev = Some(need(&mut it)?.to_string()),
            "nud" => {
                let v = need(&mut it)?;
                let s = if v == "all" {
                    ALL_NUD.to_vec()
                } else {
                    vec![nud_word(v).ok_or_else(|| {
                        err(format!(
                            "Error: argument \"{v}\" is wrong: nud state is bad"
                        ))
                    })?]
                };
                nud.get_or_insert_with(Vec::new).extend(s);
            }
            _ => {
                let v = if k == "to" { need(&mut it)? } else { k };
                if to.is_some() {
                    return Err(garbage("to", v));
                }
                let (n, _) = ip_prefix(v).ok_or_else(|| {
                    err(format!(
                        "Error: any valid prefix is expected rather than \"{v}\"."
                    ))
                })?;
                to = Some(n);
            }
        }
    }
    Ok(Command::Ip(IpCommand::Show {
        object: IpObject::Neigh,
        dev,
        opts,
        up_only: false,
        to,
        nud,
    }))
}

const ALL_NUD: [NudState; 9] = [
    NudState::None,
    NudState::Incomplete,
    NudState::Reachable,
    NudState::Stale,
    NudState::Delay,
    NudState::Probe,
    NudState::Failed,
    NudState::Noarp,
    NudState::Permanent,
];

/// Carries out an `ip` line on `stack`: what a query prints, or the
/// message ip prints when it (or the kernel) refuses.
pub fn run(stack: &Stack, cmd: &IpCommand) -> Result<Option<String>, String> {
    match cmd {
        IpCommand::LinkSet { dev, mtu, up } => link_set(stack, dev, *mtu, *up).map(|_| None),
        IpCommand::Addr {
            add,
            net,
            any_len,
            dev,
        } => addr_modify(stack, *add, *net, *any_len, dev).map(|_| None),
        IpCommand::NeighSet {
            replace,
            addr,
            lladdr,
            dev,
            nud,
        } => neigh_set(stack, *replace, *addr, *lladdr, dev, *nud).map(|_| None),
        IpCommand::NeighDel { addr, dev } => {
            device(stack, dev)?;
            match stack.del_neigh(dev, *addr) {
                Ok(true) => Ok(None),
                Ok(false) => Err("RTNETLINK answers: No such file or directory".into()),
                Err(e) => Err(e.to_string()),
            }
        }
        IpCommand::Show {
            object,
            dev,
            opts,
            up_only,
            to,
            nud,
        } => {
            let devs = show_devices(stack, *object, dev.as_deref())?;
            let devs: Vec<_> = devs.into_iter().filter(|d| !up_only || d.is_up()).collect();
            let text = match object {
                IpObject::Link => link_show(&devs, *opts),
                IpObject::Addr => addr_show(&devs, *opts),
                IpObject::Neigh => {
                    neigh_show(stack, &devs, dev.is_some(), *opts, *to, nud.as_deref())
                }
            };
            Ok(Some(text))
        }
    }
}

/// The device `name`, or ip's `Cannot find device "NAME"`.
fn device(stack: &Stack, name: &str) -> Result<Arc<NetDevice>, String> {
    stack
        .device(name)
        .map_err(|_| format!("Cannot find device \"{name}\""))
}

/// Kernel: `do_setlink()` (`dev_set_mtu_ext`, `dev_change_flags`): `ip
/// link set DEV [mtu N] [up|down]`, with the kernel's extack messages.
fn link_set(stack: &Stack, dev: &str, mtu: Option<u32>, up: Option<bool>) -> Result<(), String> {
    let d = device(stack, dev)?;
    if let Some(m) = mtu {
        if m < ipxmit::dev::MIN_MTU {
            return Err("Error: mtu less than device minimum.".into());
        }
        if m > ipxmit::dev::MAX_MTU {
            return Err("Error: mtu greater than device maximum.".into());
        }
        d.set_mtu(m).map_err(|e| e.to_string())?;
    }
    if let Some(u) = up {
        stack.set_link_up(dev, u).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Kernel: `inet_rtm_newaddr()` / `inet_rtm_deladdr()`: `ip addr
/// add|del`, with their extack messages.
fn addr_modify(
    stack: &Stack,
    add: bool,
    net: Ipv4Net,
    any_len: bool,
    dev: &str,
) -> Result<(), String> {
    let d = device(stack, dev)?;
    let same =
        |a: &Ipv4Net| a.addr() == net.addr() && (any_len || a.prefix_len() == net.prefix_len());
    let found = d.addrs().into_iter().find(same);
    if add {
        if found.is_some() {
            return Err("Error: ipv4: Address already assigned.".into());
        }
        return stack.add_addr(dev, net).map_err(|e| e.to_string());
    }
    let a = found.ok_or("Error: ipv4: Address not found.")?;
    stack
        .del_addr(dev, a)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Kernel: `neigh_add()`: `ip neigh add|replace`; `add` of an existing
/// entry is `EEXIST` (`NLM_F_EXCL`), an entry without a link address is
/// refused. The states ipxmit's table takes from a user are permanent,
/// noarp, reachable and stale.
fn neigh_set(
    stack: &Stack,
    replace: bool,
    addr: Ipv4Addr,
    lladdr: Option<EthernetAddress>,
    dev: &str,
    nud: NudState,
) -> Result<(), String> {
    let d = device(stack, dev)?;
    if !replace && stack.neighbours().lookup(d.ifindex(), addr).is_some() {
        return Err("RTNETLINK answers: File exists".into());
    }
    let ll = lladdr.ok_or("Error: No link layer address given.")?;
    if !matches!(
        nud,
        NudState::Permanent | NudState::Noarp | NudState::Reachable | NudState::Stale
    ) {
        return Err(format!(
            "Error: \"nud {}\" is not supported by ipxmit.",
            nud.name().to_lowercase()
        ));
    }
    stack
        .add_neigh(dev, addr, ll, nud)
        .map_err(|e| e.to_string())
}

/// The devices a `show` lists: the one named, or every one.
fn show_devices(
    stack: &Stack,
    object: IpObject,
    dev: Option<&str>,
) -> Result<Vec<Arc<NetDevice>>, String> {
    let Some(name) = dev else {
        return Ok(stack.devices());
    };
    match stack.device(name) {
        Ok(d) => Ok(vec![d]),
        Err(_) if object == IpObject::Neigh => Err(format!("Cannot find device \"{name}\"")),
        Err(_) => Err(format!("Device \"{name}\" does not exist.")),
    }
}

/// A JSON array as ip prints it (compact, one line).
fn json_lines(v: Vec<Value>) -> String {
    format!("{}\n", Value::Array(v))
}

/// The first line of `print_linkinfo`: `N: NAME: <FLAGS> mtu ... qlen N`
/// (`mode DEFAULT` in `ip link` only).
fn head_line(o: &mut String, dev: &NetDevice, mode: bool) {
    let _ = writeln!(
        o,
        "{}: {}: <{}> mtu {} qdisc {} state {}{} group default qlen {}",
        dev.ifindex(),
        dev.name(),
        report::link_flags(dev).join(","),
        dev.mtu(),
        report::root_qdisc(dev),
        report::operstate(dev),
        if mode { " mode DEFAULT" } else { "" },
        dev.txqueuelen()
    );
}

/// The head fields of `print_linkinfo` in JSON (`linkmode` in `ip link`
/// only, the link-layer ones unless `-4`).
fn head_json(dev: &NetDevice, mode: bool, ll: bool) -> Map<String, Value> {
    let mut v = Map::new();
    v.insert("ifindex".into(), json!(dev.ifindex()));
    v.insert("ifname".into(), json!(dev.name()));
    v.insert("flags".into(), json!(report::link_flags(dev)));
    v.insert("mtu".into(), json!(dev.mtu()));
    v.insert("qdisc".into(), json!(report::root_qdisc(dev)));
    v.insert("operstate".into(), json!(report::operstate(dev)));
    if mode {
        v.insert("linkmode".into(), json!("DEFAULT"));
    }
    v.insert("group".into(), json!("default"));
    v.insert("txqlen".into(), json!(dev.txqueuelen()));
    if ll {
        v.extend(report::link_layer_json(dev));
    }
    v
}

/// `ip [-s] [-j] link show`.
pub fn link_show(devs: &[Arc<NetDevice>], opts: IpOpts) -> String {
    if opts.json {
        let v = devs
            .iter()
            .map(|d| {
                let mut m = head_json(d, true, true);
                if opts.stats {
                    m.insert("stats64".into(), report::stats64_json(d));
                }
                Value::Object(m)
            })
            .collect();
        return json_lines(v);
    }
    let mut o = String::new();
    for d in devs {
        head_line(&mut o, d, true);
        o.push_str(&report::link_layer_line(d));
        if opts.stats {
            o.push_str(&report::stats_lines(d));
        }
    }
    o
}

/// A device's addresses in the kernel's list order (primaries, then
/// secondaries), each with its secondary flag: an address inside the
/// subnet of an earlier primary of the same prefix length is `secondary`,
/// as the kernel's `inet_insert_ifa` marks it.
fn ordered_addrs(dev: &NetDevice) -> Vec<(Ipv4Net, bool)> {
    let (mut prim, mut sec) = (Vec::<Ipv4Net>::new(), Vec::new());
    for a in dev.addrs() {
        let covered = prim
            .iter()
            .any(|p| p.prefix_len() == a.prefix_len() && p.contains(&a.addr()));
        if covered {
            sec.push((a, true));
        } else {
            prim.push(a);
        }
    }
    prim.into_iter().map(|a| (a, false)).chain(sec).collect()
}

/// `scope host` for 127/8 (ip's default for a loopback address), else
/// `global`.
fn scope(a: Ipv4Addr) -> &'static str {
    if a.is_loopback() {
        "host"
    } else {
        "global"
    }
}

/// `ip [-s] [-4] [-j] addr show`.
pub fn addr_show(devs: &[Arc<NetDevice>], opts: IpOpts) -> String {
    let devs = devs.iter().filter(|d| !opts.inet4 || !d.addrs().is_empty());
    if opts.json {
        let v = devs.map(|d| addr_json(d, opts)).collect();
        return json_lines(v);
    }
    let mut o = String::new();
    for d in devs {
        head_line(&mut o, d, false);
        if !opts.inet4 {
            o.push_str(&report::link_layer_line(d));
        }
        for (a, sec) in ordered_addrs(d) {
            let _ = writeln!(
                o,
                "    inet {a} scope {}{} {}",
                scope(a.addr()),
                if sec { " secondary" } else { "" },
                d.name()
            );
            o.push_str("       valid_lft forever preferred_lft forever\n");
        }
        if opts.stats {
            o.push_str(&report::stats_lines(d));
        }
    }
    o
}

fn addr_json(d: &NetDevice, opts: IpOpts) -> Value {
    let mut m = head_json(d, false, !opts.inet4);
    let info: Vec<Value> = ordered_addrs(d)
        .into_iter()
        .map(|(a, sec)| {
            let mut e = Map::new();
            e.insert("family".into(), json!("inet"));
            e.insert("local".into(), json!(a.addr().to_string()));
            e.insert("prefixlen".into(), json!(a.prefix_len()));
            e.insert("scope".into(), json!(scope(a.addr())));
            if sec {
                e.insert("secondary".into(), json!(true));
            }
            e.insert("label".into(), json!(d.name()));
            e.insert("valid_life_time".into(), json!(u32::MAX));
            e.insert("preferred_life_time".into(), json!(u32::MAX));
            Value::Object(e)
        })
        .collect();
    m.insert("addr_info".into(), Value::Array(info));
    if opts.stats {
        m.insert("stats64".into(), report::stats64_json(d));
    }
    Value::Object(m)
}

/// `ip [-j] neigh show [dev D] [PREFIX] [nud S]`: by default every state
/// but NOARP (ip's filter); `dev` is left out when one device is named.
pub fn neigh_show(
    stack: &Stack,
    devs: &[Arc<NetDevice>],
    one_dev: bool,
    opts: IpOpts,
    to: Option<Ipv4Net>,
    nud: Option<&[NudState]>,
) -> String {
    let shown = |s: NudState| match nud {
        Some(list) => list.contains(&s),
        None => s != NudState::Noarp,
    };
    let mut rows = Vec::new();
    for n in stack.neighbours().entries() {
        let Some(d) = devs.iter().find(|d| d.ifindex() == n.ifindex) else {
            continue;
        };
        let state = n.state();
        if !shown(state) || to.is_some_and(|p| !p.contains(&n.addr)) {
            continue;
        }
        rows.push((
            n.addr,
            d.name().to_string(),
            n.lladdr().filter(|_| state.is_valid()),
            state,
        ));
    }
    if opts.json {
        let v = rows
            .into_iter()
            .map(|(a, dev, ll, st)| {
                let mut e = Map::new();
                e.insert("dst".into(), json!(a.to_string()));
                if !one_dev {
                    e.insert("dev".into(), json!(dev));
                }
                if let Some(ll) = ll {
                    e.insert("lladdr".into(), json!(ll.to_string()));
                }
                e.insert("state".into(), json!([st.name()]));
                Value::Object(e)
            })
            .collect();
        return json_lines(v);
    }
    let mut o = String::new();
    for (a, dev, ll, st) in rows {
        let _ = write!(o, "{a} ");
        if !one_dev {
            let _ = write!(o, "dev {dev} ");
        }
        if let Some(ll) = ll {
            let _ = write!(o, "lladdr {ll} ");
        }
        let _ = writeln!(o, "{} ", st.name());
    }
    o
}
