//! nft rule statements and values: `ip saddr 10.0.0.0/8 udp dport { 53,
//! 1000-2000 } counter accept` into [`ipxmit::nft::Stmt`]s.

use ipxmit::nft::{
    Counter, DataType, Elem, Key, Limit, Log, MapElems, MapRef, MapValue, Match, Nat, NatKind,
    NatMap, NatTo, NftError, Op, Reject, Rhs, RuleVerdict, SetUpdate, Stmt, ICMP_CODES, LOG_ALL,
    LOG_IPOPT, LOG_LEVELS, LOG_MACDECODE, LOG_TCPOPT, LOG_TCPSEQ, LOG_UID, NAT_FULLY_RANDOM,
    NAT_PERSISTENT, NAT_RANDOM,
};
use ipxmit::Stack;

use super::nft::{NftParseError, Tok, P};

/// How a key's values are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// `ipv4_addr`.
    Addr,
    /// `inet_proto` (names or numbers).
    Proto,
    /// `dscp` (names or 0..63).
    Dscp,
    /// An 8-bit integer (`ip ttl`).
    U8,
    /// A 4-bit integer (`ip version`, `ip hdrlength`).
    U4,
    /// `ecn_type` (`not-ect`, `ect1`, `ect0`, `ce`).
    Ecn,
    /// A 16-bit integer (`ip length`, `ip id`, `udp checksum`).
    U16,
    /// `inet_service`.
    Port,
    /// `mark` (printed `0x%08x`).
    Mark,
    /// A 32-bit integer (`meta length`).
    U32,
    /// `tc_handle` (`none`, `root`, `MAJ:MIN`).
    Prio,
    /// `time` (a 64-bit number of nanoseconds).
    Time,
    /// A device (`oif`).
    Dev,
    /// A device name (`oifname`).
    Ifname,
    /// `ct_state` (a bitmask: `new`, `established`, ...).
    CtState,
    /// `ct_dir` (`original`, `reply`).
    CtDir,
}

/// The value type of a key.
pub fn ty_of(k: Key) -> Ty {
    match k {
        Key::IpSaddr | Key::IpDaddr => Ty::Addr,
        Key::IpProtocol | Key::MetaL4proto => Ty::Proto,
        Key::IpDscp => Ty::Dscp,
        Key::IpTtl => Ty::U8,
        Key::IpVersion | Key::IpHdrlength => Ty::U4,
        Key::IpEcn => Ty::Ecn,
        Key::IpLength | Key::IpId | Key::IpFragOff | Key::IpChecksum => Ty::U16,
        Key::UdpLength | Key::UdpChecksum => Ty::U16,
        Key::UdpSport | Key::UdpDport => Ty::Port,
        Key::TcpSport | Key::TcpDport => Ty::Port,
        Key::TcpWindow | Key::TcpChecksum | Key::TcpUrgptr => Ty::U16,
        Key::TcpSequence | Key::TcpAckseq => Ty::U32,
        Key::MetaMark => Ty::Mark,
        Key::MetaLength => Ty::U32,
        Key::MetaPriority => Ty::Prio,
        Key::Oif => Ty::Dev,
        Key::Oifname | Key::Iifname => Ty::Ifname,
        Key::CtState => Ty::CtState,
        Key::CtDirection => Ty::CtDir,
        Key::CtMark => Ty::Mark,
        Key::ThSport | Key::ThDport => Ty::Port,
    }
}

/// A type's description as nft's errors name it (`datatype->desc`).
pub fn ty_desc(t: Ty) -> &'static str {
    match t {
        Ty::Addr => "IPv4 address",
        Ty::Port => "internet network service",
        Ty::Mark => "packet mark",
        Ty::Proto => "Internet protocol",
        Ty::Dscp => "Differentiated Services Code Point",
        Ty::Ecn => "Explicit Congestion Notification",
        Ty::Prio => "TC class handle",
        Ty::Time => "Relative time",
        Ty::Dev => "network interface index",
        Ty::Ifname => "network interface name",
        Ty::CtState => "conntrack state",
        Ty::CtDir => "conntrack direction",
        Ty::U4 | Ty::U8 | Ty::U16 | Ty::U32 => "integer",
    }
}

/// The value type of a set's data type.
pub fn ty_of_data(d: DataType) -> Ty {
    match d {
        DataType::Ipv4Addr => Ty::Addr,
        DataType::InetService => Ty::Port,
        DataType::Mark => Ty::Mark,
        DataType::InetProto => Ty::Proto,
        DataType::Time => Ty::Time,
    }
}

/// Protocol names nft prints (Debian's /etc/protocols).
pub const PROTOS: &[(&str, u8)] = &[
    ("icmp", 1),
    ("igmp", 2),
    ("ipencap", 4),
    ("tcp", 6),
    ("egp", 8),
    ("pup", 12),
    ("udp", 17),
    ("dccp", 33),
    ("ipv6", 41),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("ipv6-icmp", 58),
    ("ospf", 89),
    ("ipip", 94),
    ("pim", 103),
    ("comp", 108),
    ("vrrp", 112),
    ("l2tp", 115),
    ("sctp", 132),
    ("udplite", 136),
];

/// `ct state` names (`ct_state`), by bit.
pub const CT_STATES: &[(&str, u8)] = &[
    ("invalid", 1),
    ("established", 2),
    ("related", 4),
    ("new", 8),
    ("untracked", 64),
];

/// `ct direction` names (`ct_dir`).
pub const CT_DIRS: &[(&str, u8)] = &[("original", 0), ("reply", 1)];

/// ECN names (`ecn_type`).
pub const ECNS: &[(&str, u8)] = &[("not-ect", 0), ("ect1", 1), ("ect0", 2), ("ce", 3)];

/// DSCP names (`dscp_type`).
pub const DSCPS: &[(&str, u8)] = &[
    ("cs0", 0),
    ("cs1", 8),
    ("cs2", 16),
    ("cs3", 24),
    ("cs4", 32),
    ("cs5", 40),
    ("cs6", 48),
    ("cs7", 56),
    ("af11", 10),
    ("af12", 12),
    ("af13", 14),
    ("af21", 18),
    ("af22", 20),
    ("af23", 22),
    ("af31", 26),
    ("af32", 28),
    ("af33", 30),
    ("af41", 34),
    ("af42", 36),
    ("af43", 38),
    ("ef", 46),
];

fn bad(t: &Tok) -> NftParseError {
    P::err(t, format!("syntax error, unexpected {}", t.text))
}

fn int(t: &Tok, max: u64) -> Result<u64, NftParseError> {
    let v = crate::script::parse::parse_num(&t.text).map_err(|_| bad(t))?;
    if v > max {
        return Err(P::err(t, format!("Value {v} exceeds valid range 0-{max}")));
    }
    Ok(v)
}

/// One value of type `ty` (no range or prefix).
pub fn scalar(t: &Tok, s: &str, ty: Ty) -> Result<u64, NftParseError> {
    let tok = Tok {
        text: s.to_string(),
        ..t.clone()
    };
    let named = |tab: &[(&str, u8)]| {
        tab.iter()
            .find(|(n, _)| *n == s)
            .map(|&(_, v)| u64::from(v))
    };
    Ok(match ty {
        Ty::Addr => inet_aton(s)
            .map(u64::from)
            .ok_or_else(|| P::err(t, format!("Could not resolve hostname: {s}")))?,
        Ty::Proto => match named(PROTOS) {
            Some(v) => v,
            None => int(&tok, 255)?,
        },
        Ty::Dscp => match named(DSCPS) {
            Some(v) => v,
            None => int(&tok, 63)?,
        },
        Ty::U8 => int(&tok, 255)?,
        Ty::U4 => int(&tok, 15)?,
        Ty::U16 => int(&tok, 65535)?,
        Ty::Ecn => match named(ECNS) {
            Some(v) => v,
            None => int(&tok, 3)?,
        },
        Ty::Port => int(&tok, 65535).map_err(|e| {
            if e.msg.starts_with("syntax") {
                P::err(
                    t,
                    "Could not resolve service: Servname not supported for ai_socktype",
                )
            } else {
                e
            }
        })?,
        Ty::Mark | Ty::U32 => int(&tok, u64::from(u32::MAX))?,
        Ty::Time => int(&tok, u64::MAX)?,
        Ty::Prio => prio(&tok)?,
        Ty::CtState => match named(CT_STATES) {
            Some(v) => v,
            None => int(&tok, u64::from(u32::MAX))
                .map_err(|_| P::err(t, "Could not parse conntrack state"))?,
        },
        Ty::CtDir => {
            named(CT_DIRS).ok_or_else(|| P::err(t, "Could not parse conntrack direction"))?
        }
        Ty::Dev | Ty::Ifname => return Err(bad(t)),
    })
}

/// An IPv4 address as `getaddrinfo()` (through `inet_aton()`) reads a
/// numeric host, which nft's `ipv4_addr` type takes: `A.B.C.D`, `A.B.C`
/// (C 16 bits), `A.B` (B 24 bits) or one 32-bit number, each part
/// decimal, `0x` hex or `0` octal.
fn inet_aton(s: &str) -> Option<u32> {
    let parts: Vec<u64> = s.split('.').map(c_number).collect::<Option<_>>()?;
    let (last, lead) = parts.split_last()?;
    if lead.len() > 3 || lead.iter().any(|&p| p > 255) {
        return None;
    }
    let rest_bits = 32 - 8 * lead.len() as u32;
    if *last >> rest_bits != 0 {
        return None;
    }
    let head = lead.iter().fold(0u64, |a, &p| a << 8 | p);
    u32::try_from(head << rest_bits | last).ok()
}

/// A number as `strtoul(s, NULL, 0)` reads a whole string.
fn c_number(s: &str) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None if s.len() > 1 && s.starts_with('0') => (&s[1..], 8),
        None => (s, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

fn prio(t: &Tok) -> Result<u64, NftParseError> {
    match t.text.as_str() {
        "none" => return Ok(0),
        "root" => return Ok(0xffff_ffff),
        s if !s.contains(':') => return int(t, u64::from(u32::MAX)),
        _ => {}
    }
    let (a, b) = t.text.split_once(':').ok_or_else(|| bad(t))?;
    let h = |x: &str| u16::from_str_radix(x, 16).map_err(|_| bad(t));
    Ok(u64::from(h(a)?) << 16 | u64::from(h(b)?))
}

/// One element: a value, `LO-HI`, or (addresses, marks) `A/LEN`.
fn elem(t: &Tok, ty: Ty) -> Result<Elem, NftParseError> {
    if matches!(ty, Ty::Addr | Ty::Mark) {
        if let Some((a, l)) = t.text.split_once('/') {
            let a = scalar(t, a, ty)? as u32;
            let len: u8 = l.parse().ok().filter(|&l| l <= 32).ok_or_else(|| bad(t))?;
            let m = ipxmit::nft::compile::prefix_mask(len);
            return Ok(Elem {
                lo: u64::from(a & m),
                hi: u64::from(a | !m),
            });
        }
    }
    let prio_range = ty == Ty::Prio && t.text.matches(':').count() == 2;
    if !t.quoted && (ty != Ty::Prio || prio_range) {
        if let Some((a, b)) = t.text.split_once('-').filter(|(a, _)| !a.is_empty()) {
            let (lo, hi) = (scalar(t, a, ty)?, scalar(t, b, ty)?);
            if lo > hi {
                return Err(P::err(t, "Range has zero or negative size"));
            }
            return Ok(Elem { lo, hi });
        }
    }
    Ok(Elem::one(scalar(t, &t.text, ty)?))
}

/// An element of a possibly concatenated key (`A . B`).
fn concat_elem(p: &mut P<'_>, tys: &[Ty]) -> Result<Elem, NftParseError> {
    let mut acc = Elem { lo: 0, hi: 0 };
    for (i, ty) in tys.iter().enumerate() {
        if i > 0 {
            p.expect(".")?;
        }
        let e = elem(p.take()?, *ty)?;
        let w = bits(*ty);
        acc = Elem {
            lo: acc.lo.checked_shl(w).unwrap_or(0) | e.lo,
            hi: acc.hi.checked_shl(w).unwrap_or(0) | e.hi,
        };
    }
    Ok(acc)
}

fn bits(ty: Ty) -> u32 {
    match ty {
        Ty::CtDir => 8,
        Ty::Port | Ty::U16 => 16,
        Ty::Proto | Ty::Dscp | Ty::U8 | Ty::U4 | Ty::Ecn => 8,
        Ty::Time => 64,
        _ => 32,
    }
}

/// `{ E, E, ... }` of a set typed `tys`, and whether the catch-all `*`
/// is among them.
pub fn set_elems(p: &mut P<'_>, tys: &[DataType]) -> Result<(Vec<Elem>, bool), NftParseError> {
    let tys: Vec<Ty> = tys.iter().map(|d| ty_of_data(*d)).collect();
    let mut star = false;
    let v = brace_elems_star(p, &tys, Some(&mut star))?;
    Ok((v, star))
}

fn brace_elems(p: &mut P<'_>, tys: &[Ty]) -> Result<Vec<Elem>, NftParseError> {
    brace_elems_star(p, tys, None)
}

/// `{ E, ... }`; with `star`, `*` (a named set's catch-all) is taken.
fn brace_elems_star(
    p: &mut P<'_>,
    tys: &[Ty],
    mut star: Option<&mut bool>,
) -> Result<Vec<Elem>, NftParseError> {
    p.expect("{")?;
    let mut v = Vec::new();
    loop {
        if p.eat("}") {
            break;
        }
        if p.peek_text() == "{" {
            // A nested anonymous set: its elements (nft flattens them).
            v.extend(brace_elems(p, tys)?);
        } else if star.is_some() && p.peek().is_some_and(|t| t.text == "*" && !t.quoted) {
            p.i += 1;
            if let Some(s) = star.as_deref_mut() {
                *s = true;
            }
        } else {
            v.push(concat_elem(p, tys)?);
        }
        if !p.eat(",") {
            p.expect("}")?;
            break;
        }
    }
    Ok(v)
}

fn key(p: &mut P<'_>) -> Result<Option<Key>, NftParseError> {
    key_named(p, p.peek_text())
}

/// The key whose first word is `t` (the next token's text, or that text
/// without the `:` of `redirect to :tcp dport map`).
fn key_named(p: &mut P<'_>, t: &str) -> Result<Option<Key>, NftParseError> {
    fn two<'a>(p: &mut P<'a>) -> Result<&'a str, NftParseError> {
        p.i += 1;
        Ok(p.take()?.text.as_str())
    }
    let k = match t {
        "ip" => match two(p)? {
            "saddr" => Key::IpSaddr,
            "daddr" => Key::IpDaddr,
            "protocol" => Key::IpProtocol,
            "dscp" => Key::IpDscp,
            "ttl" => Key::IpTtl,
            "version" => Key::IpVersion,
            "hdrlength" => Key::IpHdrlength,
            "ecn" => Key::IpEcn,
            "length" => Key::IpLength,
            "id" => Key::IpId,
            "frag-off" => Key::IpFragOff,
            "checksum" => Key::IpChecksum,
            _ => return Err(bad(&p.toks[p.i - 1])),
        },
        "udp" => match two(p)? {
            "sport" => Key::UdpSport,
            "dport" => Key::UdpDport,
            "length" => Key::UdpLength,
            "checksum" => Key::UdpChecksum,
            _ => return Err(bad(&p.toks[p.i - 1])),
        },
        "tcp" => match two(p)? {
            "sport" => Key::TcpSport,
            "dport" => Key::TcpDport,
            "sequence" => Key::TcpSequence,
            "ackseq" => Key::TcpAckseq,
            "window" => Key::TcpWindow,
            "checksum" => Key::TcpChecksum,
            "urgptr" => Key::TcpUrgptr,
            _ => return Err(bad(&p.toks[p.i - 1])),
        },
        "meta" => match two(p)? {
            "l4proto" => Key::MetaL4proto,
            "mark" => Key::MetaMark,
            "length" => Key::MetaLength,
            "priority" => Key::MetaPriority,
            "oif" => Key::Oif,
            "oifname" => Key::Oifname,
            "iifname" => Key::Iifname,
            _ => return Err(bad(&p.toks[p.i - 1])),
        },
        "ct" => match two(p)? {
            "state" => Key::CtState,
            "direction" => Key::CtDirection,
            "mark" => Key::CtMark,
            _ => return Err(bad(&p.toks[p.i - 1])),
        },
        "th" => match two(p)? {
            "sport" => Key::ThSport,
            "dport" => Key::ThDport,
            _ => return Err(bad(&p.toks[p.i - 1])),
        },
        "mark" | "length" | "priority" | "l4proto" | "oif" | "oifname" | "iifname" => {
            p.i += 1;
            match t {
                "mark" => Key::MetaMark,
                "length" => Key::MetaLength,
                "priority" => Key::MetaPriority,
                "l4proto" => Key::MetaL4proto,
                "oif" => Key::Oif,
                "iifname" => Key::Iifname,
                _ => Key::Oifname,
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(k))
}

fn op(p: &mut P<'_>) -> Op {
    let o = match p.peek_text() {
        "==" | "eq" => Op::Eq,
        "!=" | "ne" => Op::Ne,
        "<" | "lt" => Op::Lt,
        ">" | "gt" => Op::Gt,
        "<=" | "le" => Op::Le,
        ">=" | "ge" => Op::Ge,
        _ => return Op::Eq,
    };
    p.i += 1;
    o
}

/// The statement after a key: `set V` or a match.
fn after_key(p: &mut P<'_>, k: Key) -> Result<Stmt, NftParseError> {
    if p.eat("set") {
        if k == Key::MetaMark {
            if let Some(s) = mark_map(p)? {
                return Ok(s);
            }
        }
        let t = p.take()?;
        let v = fold_constant(p, scalar(t, &t.text, ty_of(k))?, ty_of(k))?;
        return Ok(match k {
            Key::MetaMark => Stmt::MarkSet(v as u32),
            Key::MetaPriority => Stmt::PrioritySet(v as u32),
            Key::IpDscp => Stmt::DscpSet(v as u8),
            Key::IpTtl => Stmt::TtlSet(v as u8),
            Key::IpSaddr
            | Key::IpDaddr
            | Key::IpProtocol
            | Key::IpId
            | Key::IpEcn
            | Key::IpChecksum
            | Key::UdpSport
            | Key::UdpDport
            | Key::UdpChecksum => Stmt::FieldSet(k, v as u32),
            _ => return Err(P::err(t, "statement not supported by ipxmit")),
        });
    }
    let mut keys = vec![k];
    while p.eat(".") {
        let t = p.peek().cloned();
        match key(p)? {
            Some(k) => keys.push(k),
            None => return Err(t.as_ref().map_or_else(|| p.unexpected(), bad)),
        }
    }
    if let Some((mask, xor)) = bitwise(p, &keys)? {
        let op = op(p);
        let rhs = rhs(p, &keys, op)?;
        let rhs = masked(mask, xor, rhs, op, keys[0]);
        return Ok(Stmt::Match(Match { keys, op, rhs }));
    }
    if p.eat("vmap") {
        let tys: Vec<Ty> = keys.iter().map(|k| ty_of(*k)).collect();
        let r = map_ref(p, &tys, true)?;
        return Ok(Stmt::Match(Match {
            keys,
            op: Op::Eq,
            rhs: Rhs::Vmap(r),
        }));
    }
    let explicit = matches!(p.peek_text(), "==" | "eq");
    let op = op(p);
    if k == Key::CtState && keys.len() == 1 && !explicit && p.peek_text() != "{" {
        return ct_flags(p, op).map(|rhs| Stmt::Match(Match { keys, op, rhs }));
    }
    let rhs = rhs(p, &keys, op)?;
    Ok(Stmt::Match(Match { keys, op, rhs }))
}

/// `& V`, `| V`, `^ V` (or `and`, `or`, `xor`) after a key: the
/// `(key & mask) ^ xor` nft's bitwise expression computes.
fn bitwise(p: &mut P<'_>, keys: &[Key]) -> Result<Option<(u64, u64)>, NftParseError> {
    let kind = match p.peek_text() {
        "&" | "and" => 0,
        "|" | "or" => 1,
        "^" | "xor" => 2,
        _ => return Ok(None),
    };
    if keys.len() > 1 || matches!(ty_of(keys[0]), Ty::Dev | Ty::Ifname) {
        return Err(p.peek().map_or_else(|| p.unexpected(), bad));
    }
    p.i += 1;
    let t = p.take()?;
    let v = scalar(t, &t.text, ty_of(keys[0]))?;
    let all = keys[0].width_mask();
    Ok(Some(match kind {
        0 => (v, 0),
        1 => (all & !v, v),
        _ => (all, v),
    }))
}

/// A bitwise match as nft's evaluation leaves it: `KEY ^ X == V` folds to
/// `KEY == V ^ X`; `KEY & PREFIXMASK == V` (V within the mask) becomes
/// the prefix `V/LEN`.
fn masked(mask: u64, xor: u64, rhs: Rhs, op: Op, k: Key) -> Rhs {
    let all = k.width_mask();
    let eq = matches!(op, Op::Eq | Op::Ne);
    match rhs {
        Rhs::Value(v) if eq && mask == all => Rhs::Value(v ^ xor),
        Rhs::Value(v) if eq && xor == 0 && k.bits() == 32 && v & !mask == 0 => {
            let len = (mask as u32).leading_ones();
            if u64::from(ipxmit::nft::compile::prefix_mask(len as u8)) == mask {
                Rhs::Prefix(v as u32, len as u8)
            } else {
                Rhs::Masked {
                    mask,
                    xor,
                    rhs: Box::new(rhs),
                }
            }
        }
        rhs => Rhs::Masked {
            mask,
            xor,
            rhs: Box::new(rhs),
        },
    }
}

/// `V and M`, `V or M`, `V xor M` after a constant of type `ty`: nft
/// folds them into one constant (`meta mark set 0xfffe xor 0x16` is `meta
/// mark set 0x0000ffe8`).
fn fold_constant(p: &mut P<'_>, mut v: u64, ty: Ty) -> Result<u64, NftParseError> {
    loop {
        let f: fn(u64, u64) -> u64 = match p.peek_text() {
            "&" | "and" => |a, b| a & b,
            "|" | "or" => |a, b| a | b,
            "^" | "xor" => |a, b| a ^ b,
            _ => return Ok(v),
        };
        p.i += 1;
        let t = p.take()?;
        v = f(v, scalar(t, &t.text, ty)?);
    }
}

/// `meta mark set KEY [. KEY] map { ... }|@NAME`, when a key follows `set`.
fn mark_map(p: &mut P<'_>) -> Result<Option<Stmt>, NftParseError> {
    let at = p.i;
    let Some(k) = key(p)? else {
        p.i = at;
        return Ok(None);
    };
    let mut keys = vec![k];
    while p.eat(".") {
        let t = p.peek().cloned();
        match key(p)? {
            Some(k) => keys.push(k),
            None => return Err(t.as_ref().map_or_else(|| p.unexpected(), bad)),
        }
    }
    p.expect("map")?;
    let tys: Vec<Ty> = keys.iter().map(|k| ty_of(*k)).collect();
    let r = map_ref(p, &tys, false)?;
    Ok(Some(Stmt::MarkSetMap(keys, r)))
}

/// `@NAME` or `{ K : V, ..., * : V }` of keys `tys`, values verdicts
/// (`vmap`) or marks.
fn map_ref(p: &mut P<'_>, tys: &[Ty], verdicts: bool) -> Result<MapRef, NftParseError> {
    let t = p.peek().ok_or_else(|| p.unexpected())?;
    if t.text.starts_with('@') && !t.quoted {
        p.i += 1;
        return Ok(MapRef::Named(t.text[1..].to_string()));
    }
    map_elems(p, tys, verdicts).map(MapRef::Anon)
}

/// `{ K : V, ... }`: keys of types `tys`, values verdicts or marks; `*`
/// the catch-all.
pub fn map_elems(p: &mut P<'_>, tys: &[Ty], verdicts: bool) -> Result<MapElems, NftParseError> {
    map_elems_with(p, tys, |p| {
        let t = p.take()?;
        Ok(if verdicts {
            MapValue::Verdict(verdict_word(p, t)?.ok_or_else(|| bad(t))?)
        } else {
            MapValue::Num(scalar(t, &t.text, Ty::Mark)?)
        })
    })
}

/// `{ K : V, ... }`: keys of types `tys`, values as `value` reads them;
/// `*` the catch-all.
fn map_elems_with(
    p: &mut P<'_>,
    tys: &[Ty],
    value: impl Fn(&mut P<'_>) -> Result<MapValue, NftParseError>,
) -> Result<MapElems, NftParseError> {
    p.expect("{")?;
    let mut m = MapElems::default();
    while !p.eat("}") {
        let key = if p.eat("*") {
            None
        } else {
            Some(concat_elem(p, tys)?)
        };
        p.expect(":")?;
        let v = value(p)?;
        match key {
            Some(k) => m.elems.push((k, v)),
            None => m.default = Some(v),
        }
        if !p.eat(",") {
            p.expect("}")?;
            break;
        }
    }
    m.elems.sort_by_key(|(e, _)| *e);
    Ok(m)
}

/// A verdict word at `t` (`jump`/`goto` take the chain after it).
fn verdict_word(p: &mut P<'_>, t: &Tok) -> Result<Option<RuleVerdict>, NftParseError> {
    Ok(Some(match t.text.as_str() {
        "accept" => RuleVerdict::Accept,
        "drop" => RuleVerdict::Drop,
        "continue" => RuleVerdict::Continue,
        "return" => RuleVerdict::Return,
        "jump" => RuleVerdict::Jump(p.take()?.text.clone()),
        "goto" => RuleVerdict::Goto(p.take()?.text.clone()),
        _ => return Ok(None),
    }))
}

/// `ct state new,established` (a bitmask type without `==`): any of the
/// bits (`!=`: none).
fn ct_flags(p: &mut P<'_>, op: Op) -> Result<Rhs, NftParseError> {
    if !matches!(op, Op::Eq | Op::Ne) {
        return Err(p.peek().map_or_else(|| p.unexpected(), bad));
    }
    let mut mask = 0;
    loop {
        let t = p.take()?;
        mask |= scalar(t, &t.text, Ty::CtState)?;
        if !p.eat(",") {
            return Ok(Rhs::Flags(mask));
        }
    }
}

/// `snat [ip [prefix]] [to] ADDR[:PORT[-PORT]] [FLAGS]`, `dnat [to] ...`,
/// `masquerade [to :PORT[-PORT]] [FLAGS]`, `redirect [to :PORT[-PORT]]
/// [FLAGS]`, or the target from a map ([`nat_map`]); a port needs a
/// transport protocol match before it (`prior`), as nft's evaluation says.
fn nat(p: &mut P<'_>, kind: NatKind, prior: &[Stmt]) -> Result<Stmt, NftParseError> {
    let kw = p.toks[p.i - 1].clone();
    let fam = p.eat("ip");
    let netmap = fam && p.eat("prefix");
    let to = p.eat("to");
    if fam && !to {
        return Err(p.peek().map_or_else(|| p.unexpected(), bad));
    }
    let mut n = Nat {
        kind,
        addr: None,
        ports: None,
        flags: 0,
    };
    if to {
        if let Some(keys) = nat_map_keys(p, kind)? {
            return nat_map(p, n, keys, prior, (&kw, netmap));
        }
    }
    if netmap {
        return Err(P::err(&kw, "prefix needs a map"));
    }
    if to || !matches!(kind, NatKind::Masquerade | NatKind::Redirect) {
        nat_target(p, &mut n)?;
    }
    n.flags = nat_flags(p)?;
    if n.ports.is_some() && !l4_match(prior) {
        return Err(no_l4(&kw));
    }
    Ok(Stmt::Nat(n))
}

/// A match before the statement that fixes the transport protocol.
fn l4_match(prior: &[Stmt]) -> bool {
    prior.iter().any(|s| {
        matches!(s, Stmt::Match(m) if m.keys.iter().any(|k| l4_key(*k)
            || matches!(k, Key::IpProtocol | Key::MetaL4proto)))
    })
}

/// A key of a given transport protocol (nft adds its dependency).
fn l4_key(k: Key) -> bool {
    matches!(
        k,
        Key::UdpSport
            | Key::UdpDport
            | Key::UdpLength
            | Key::UdpChecksum
            | Key::TcpSport
            | Key::TcpDport
    )
}

fn no_l4(kw: &Tok) -> NftParseError {
    P::err(
        kw,
        "transport protocol mapping is only valid after transport protocol match",
    )
}

/// The keys of a NAT map after `to` (`redirect`'s written `:KEY`), if a
/// key follows.
fn nat_map_keys(p: &mut P<'_>, kind: NatKind) -> Result<Option<Vec<Key>>, NftParseError> {
    let at = p.i;
    let t = p.peek_text();
    let first = match kind {
        NatKind::Masquerade | NatKind::Redirect => match t.strip_prefix(':') {
            Some(w) if !w.is_empty() && !w.starts_with(|c: char| c.is_ascii_digit()) => w,
            _ => return Ok(None),
        },
        _ => t,
    };
    let Some(k) = key_named(p, first)? else {
        p.i = at;
        return Ok(None);
    };
    let mut keys = vec![k];
    while p.eat(".") {
        let t = p.peek().cloned();
        match key(p)? {
            Some(k) => keys.push(k),
            None => return Err(t.as_ref().map_or_else(|| p.unexpected(), bad)),
        }
    }
    Ok(Some(keys))
}

/// `KIND [ip [prefix]] to KEY map { K : V, ... }` (`redirect to :KEY map
/// { K : PORT }`): V an address, range or prefix, with ` . PORT[-PORT]`
/// or not, the same for every element (else nft refuses); `ip` is
/// printed when V is a concatenation or a range.
fn nat_map(
    p: &mut P<'_>,
    n: Nat,
    keys: Vec<Key>,
    prior: &[Stmt],
    (kw, netmap): (&Tok, bool),
) -> Result<Stmt, NftParseError> {
    p.expect("map")?;
    if p.peek_text().starts_with('@') {
        return Err(P::err(
            p.peek().unwrap_or(kw),
            "named NAT maps are not supported by ipxmit",
        ));
    }
    let tys: Vec<Ty> = keys.iter().map(|k| ty_of(*k)).collect();
    let ports_only = matches!(n.kind, NatKind::Masquerade | NatKind::Redirect);
    let start = p.i;
    let map = map_elems_with(p, &tys, |p| nat_value(p, ports_only).map(MapValue::Nat))?;
    let shape = |v: &MapValue| match v {
        MapValue::Nat(t) => (t.addr.is_some() && t.ports.is_some(), nat_interval(t)),
        _ => (false, false),
    };
    let all: Vec<(bool, bool)> = map
        .elems
        .iter()
        .map(|(_, v)| v)
        .chain(&map.default)
        .map(shape)
        .collect();
    let at = &p.toks[start];
    if all.windows(2).any(|w| w[0].0 != w[1].0) {
        return Err(P::err(
            at,
            "invalid data type, expected concatenation of (IPv4 address, internet network service)",
        ));
    }
    if all.windows(2).any(|w| w[0].1 != w[1].1) {
        return Err(P::err(at, "Could not process rule: Invalid argument"));
    }
    let ports = all.first().is_some_and(|s| s.0) || ports_only;
    if ports && !l4_match(prior) && !keys.iter().any(|k| l4_key(*k)) {
        return Err(no_l4(kw));
    }
    let mut nat = n;
    nat.flags = nat_flags(p)?;
    Ok(Stmt::NatMap(NatMap {
        nat,
        keys,
        map: MapRef::Anon(map),
        netmap,
    }))
}

/// A NAT map value with a range of addresses or ports.
pub fn nat_interval(t: &NatTo) -> bool {
    t.addr.is_some_and(|(a, b)| a != b) || t.ports.is_some_and(|(a, b)| a != b)
}

/// A NAT map's value: `ADDR[-ADDR|/LEN][ . PORT[-PORT]]`, or (`ports_only`)
/// `PORT[-PORT]`.
fn nat_value(p: &mut P<'_>, ports_only: bool) -> Result<NatTo, NftParseError> {
    if ports_only {
        return Ok(NatTo {
            addr: None,
            ports: Some(port_range(p)?),
        });
    }
    let t = p.take()?;
    let e = elem(t, Ty::Addr)?;
    let addr = Some((e.lo as u32, e.hi as u32));
    let ports = if p.eat(".") {
        Some(port_range(p)?)
    } else {
        None
    };
    Ok(NatTo { addr, ports })
}

/// `PORT`, `LO-HI` or `LO - HI`.
fn port_range(p: &mut P<'_>) -> Result<(u16, u16), NftParseError> {
    let t = p.take()?;
    let e = elem(t, Ty::Port)?;
    let (lo, hi) = if e.lo == e.hi && p.eat("-") {
        let h = p.take()?;
        (e.lo, scalar(h, &h.text, Ty::Port)?)
    } else {
        (e.lo, e.hi)
    };
    if lo > hi {
        return Err(P::err(t, "Range has zero or negative size"));
    }
    Ok((lo as u16, hi as u16))
}

/// The `ADDR[:PORT[-PORT]]` (masquerade: `:PORT[-PORT]`) of a NAT statement.
fn nat_target(p: &mut P<'_>, n: &mut Nat) -> Result<(), NftParseError> {
    let t = p.take()?;
    let (a, ports) = match t.text.split_once(':') {
        Some((a, pr)) => (a, Some(pr)),
        None => (t.text.as_str(), None),
    };
    if matches!(n.kind, NatKind::Masquerade | NatKind::Redirect) {
        if !a.is_empty() || ports.is_none() {
            return Err(bad(t));
        }
    } else {
        let e = if a.contains('/') {
            let tok = Tok {
                text: a.to_string(),
                ..t.clone()
            };
            elem(&tok, Ty::Addr)?
        } else {
            let (lo, hi) = a.split_once('-').unwrap_or((a, a));
            let (lo, hi) = (scalar(t, lo, Ty::Addr)?, scalar(t, hi, Ty::Addr)?);
            if lo > hi {
                return Err(P::err(t, "Range has zero or negative size"));
            }
            Elem { lo, hi }
        };
        n.addr = Some((e.lo as u32, e.hi as u32));
    }
    if let Some(pr) = ports {
        let (lo, hi) = pr.split_once('-').unwrap_or((pr, pr));
        let (lo, hi) = (scalar(t, lo, Ty::Port)?, scalar(t, hi, Ty::Port)?);
        if lo > hi {
            return Err(P::err(t, "Range has zero or negative size"));
        }
        n.ports = Some((lo as u16, hi as u16));
    }
    Ok(())
}

/// `random`, `fully-random`, `persistent`, comma-separated.
fn nat_flags(p: &mut P<'_>) -> Result<u8, NftParseError> {
    let mut flags = 0;
    loop {
        let f = match p.peek_text() {
            "random" => NAT_RANDOM,
            "fully-random" => NAT_FULLY_RANDOM,
            "persistent" => NAT_PERSISTENT,
            _ if flags == 0 => return Ok(0),
            _ => return Err(p.peek().map_or_else(|| p.unexpected(), bad)),
        };
        p.i += 1;
        flags |= f;
        if !p.eat(",") {
            return Ok(flags);
        }
    }
}

fn rhs(p: &mut P<'_>, keys: &[Key], op: Op) -> Result<Rhs, NftParseError> {
    let tys: Vec<Ty> = keys.iter().map(|k| ty_of(*k)).collect();
    let t = p.peek().ok_or_else(|| p.unexpected())?;
    if t.text.starts_with('@') && !t.quoted {
        p.i += 1;
        return Ok(Rhs::Named(t.text[1..].to_string()));
    }
    let set_ok = matches!(op, Op::Eq | Op::Ne);
    if t.text == "{" && !t.quoted && set_ok && !matches!(tys[0], Ty::Dev | Ty::Ifname) {
        return brace_elems(p, &tys).map(|mut v| {
            if tys.len() > 1 {
                // Parts' ranges: kept as written (nft does not merge them).
                v.sort_unstable();
                v.dedup();
                Rhs::Set(v)
            } else {
                Rhs::Set(merge(v))
            }
        });
    }
    if t.text == "{" && !t.quoted && set_ok && tys[..] == [Ty::Ifname] {
        return ifname_set(p);
    }
    if keys.len() > 1 {
        return Err(P::err(
            t,
            "concatenations are matched against sets only in ipxmit",
        ));
    }
    let t = p.take()?;
    match tys[0] {
        Ty::Dev => return Ok(Rhs::Dev(t.text.clone(), 0)),
        Ty::Ifname if t.text.is_empty() => {
            return Err(P::err(t, "Empty string is not allowed"));
        }
        Ty::Ifname => return Ok(Rhs::Ifname(t.text.clone())),
        _ => {}
    }
    let e = elem(t, tys[0])?;
    let prefix = t.text.contains('/');
    Ok(match (e.lo == e.hi, prefix) {
        (_, true) => {
            let len = t
                .text
                .split_once('/')
                .map_or(32, |(_, l)| l.parse().unwrap_or(32));
            Rhs::Prefix(e.lo as u32, len)
        }
        (true, false) => Rhs::Value(e.lo),
        (false, false) => Rhs::Range(e.lo, e.hi),
    })
}

/// `{ "NAME", "PREFIX*", ... }` after `oifname`: the names without
/// duplicates, in nft's listing order: a set with a wildcard is an
/// interval set, listed by name; one without, by the 16 bytes read as a
/// host-order (little-endian) number, as nft sorts a string type.
fn ifname_set(p: &mut P<'_>) -> Result<Rhs, NftParseError> {
    p.expect("{")?;
    let mut v = Vec::new();
    while !p.eat("}") {
        let t = p.take()?;
        if t.text.is_empty() {
            return Err(P::err(t, "Empty string is not allowed"));
        }
        if t.text.len() > 16 {
            return Err(P::err(t, "Device name too long"));
        }
        v.push(t.text.clone());
        if !p.eat(",") {
            p.expect("}")?;
            break;
        }
    }
    v.sort_unstable();
    v.dedup();
    if !v.iter().any(|n| n.ends_with('*')) {
        v.sort_by_key(|n| {
            let mut k = [0u8; 16];
            k[..n.len()].copy_from_slice(n.as_bytes());
            k.reverse();
            k
        });
    }
    Ok(Rhs::IfnameSet(v))
}

/// A rule's statements, to the end of the command.
pub fn parse_rule(p: &mut P<'_>) -> Result<Vec<Stmt>, NftParseError> {
    let mut v: Vec<Stmt> = Vec::new();
    while let Some(t) = p.peek() {
        if matches!(
            v.last(),
            Some(Stmt::Nat(_) | Stmt::NatMap(_) | Stmt::Reject(_))
        ) {
            return Err(P::err(
                t,
                "Statement after terminal statement has no effect",
            ));
        }
        if let Some(k) = key(p)? {
            v.push(after_key(p, k)?);
            continue;
        }
        p.i += 1;
        let verdict = |v: RuleVerdict| Ok(Stmt::Verdict(v));
        let s: Result<Stmt, NftParseError> = match t.text.as_str() {
            "accept" => verdict(RuleVerdict::Accept),
            "drop" => verdict(RuleVerdict::Drop),
            "continue" => verdict(RuleVerdict::Continue),
            "return" => verdict(RuleVerdict::Return),
            "jump" => verdict(RuleVerdict::Jump(p.take()?.text.clone())),
            "goto" => verdict(RuleVerdict::Goto(p.take()?.text.clone())),
            "counter" => counter(p),
            "snat" => nat(p, NatKind::Snat, &v),
            "dnat" => nat(p, NatKind::Dnat, &v),
            "masquerade" => nat(p, NatKind::Masquerade, &v),
            "redirect" => nat(p, NatKind::Redirect, &v),
            "reject" => reject(p, &v),
            "limit" => limit(p),
            "log" => log(p),
            "add" | "update" => set_update(p, t.text == "update"),
            _ => Err(P::err(t, format!("syntax error, unexpected {}", t.text))),
        };
        v.push(s?);
        if matches!(v.last(), Some(Stmt::Reject(Reject::TcpReset))) {
            tcp_dependency(&mut v);
        }
    }
    Ok(v)
}

/// nft's dependency of `reject with tcp reset`: `meta l4proto tcp` first
/// in the rule, unless a match says TCP already.
fn tcp_dependency(v: &mut Vec<Stmt>) {
    let tcp = v.iter().any(|s| {
        matches!(s, Stmt::Match(m) if matches!(m.keys[..], [Key::IpProtocol | Key::MetaL4proto])
            && m.op == Op::Eq && m.rhs == Rhs::Value(6))
    });
    if !tcp {
        let dep = Match {
            keys: vec![Key::MetaL4proto],
            op: Op::Eq,
            rhs: Rhs::Value(6),
        };
        v.insert(0, Stmt::Match(dep));
    }
}

/// `reject [with icmp [type] CODE | with tcp reset]` (CODE a name of
/// [`ICMP_CODES`] or a number; `reject` alone is port unreachable). A
/// TCP reset after a match of another transport protocol (`prior`) is
/// refused, as nft's evaluation refuses it.
fn reject(p: &mut P<'_>, prior: &[Stmt]) -> Result<Stmt, NftParseError> {
    let kw = p.toks[p.i - 1].clone();
    if !p.eat("with") {
        return Ok(Stmt::Reject(Reject::Icmp(3)));
    }
    let t = p.take()?;
    match t.text.as_str() {
        "icmp" => {}
        "tcp" => {
            p.expect("reset")?;
            if prior.iter().any(not_tcp) {
                return Err(P::err(&kw, "you cannot use tcp reset with this protocol"));
            }
            return Ok(Stmt::Reject(Reject::TcpReset));
        }
        "icmpx" => {
            p.eat("type");
            let c = p.take()?;
            return Err(P::err(c, "abstracted ICMP unreachable not supported"));
        }
        _ => return Err(bad(t)),
    }
    p.eat("type");
    let c = p.take()?;
    let code = match ICMP_CODES.iter().find(|(n, _)| *n == c.text) {
        Some(&(_, v)) => v,
        None => int(c, 255).map_err(|_| P::err(c, "Could not parse icmp code"))? as u8,
    };
    Ok(Stmt::Reject(Reject::Icmp(code)))
}

/// `limit` periods, in seconds.
pub const LIMIT_UNITS: &[(&str, u64)] = &[
    ("second", 1),
    ("minute", 60),
    ("hour", 3600),
    ("day", 86400),
    ("week", 604800),
];

/// Byte units of a byte rate.
pub const BYTE_UNITS: &[(&str, u64)] = &[("bytes", 1), ("kbytes", 1024), ("mbytes", 1 << 20)];

fn named_unit(t: &Tok, s: &str, tab: &[(&str, u64)]) -> Result<u64, NftParseError> {
    tab.iter()
        .find(|(n, _)| *n == s)
        .map(|&(_, v)| v)
        .ok_or_else(|| P::err(t, format!("syntax error, unexpected {s}")))
}

/// `limit rate [over] N/UNIT [burst M packets]`, `limit rate [over] N
/// BYTES/UNIT [burst M BYTES]` (`BYTES/UNIT` also as `BYTES / UNIT`).
fn limit(p: &mut P<'_>) -> Result<Stmt, NftParseError> {
    p.expect("rate")?;
    let over = p.eat("over");
    let t = p.take()?;
    let (rate, unit, bytes) = match t.text.split_once('/') {
        Some((n, u)) => {
            let n = int(
                &Tok {
                    text: n.into(),
                    ..t.clone()
                },
                u64::MAX,
            )?;
            (n, named_unit(t, u, LIMIT_UNITS)?, false)
        }
        None => {
            let n = int(t, u64::MAX)?;
            let b = p.take()?;
            let (bu, per) = match b.text.split_once('/') {
                Some((bu, per)) => (bu.to_string(), per.to_string()),
                None => {
                    p.expect("/")?;
                    (b.text.clone(), p.take()?.text.clone())
                }
            };
            let mult = named_unit(b, &bu, BYTE_UNITS)?;
            let r = n.checked_mul(mult).ok_or_else(|| bad(t))?;
            (r, named_unit(b, &per, LIMIT_UNITS)?, true)
        }
    };
    let mut burst = if bytes { 0 } else { 5 };
    if p.eat("burst") {
        let n = p.take()?;
        let v = int(n, u64::from(u32::MAX))?;
        let u = p.take()?;
        burst = match (bytes, u.text.as_str()) {
            (false, "packets") => v,
            (true, w) => v * named_unit(u, w, BYTE_UNITS)?,
            _ => return Err(bad(u)),
        };
    }
    let l = Limit::new(rate, unit, burst, bytes, over)
        .map_err(|e| P::err(t, format!("Could not process rule: {e}")))?;
    Ok(Stmt::Limit(l))
}

/// `log [prefix S] [level L] [group N] [snaplen N] [queue-threshold N]
/// [flags ...]`, in any order, with nft's refusals (`stmt_evaluate_log`).
fn log(p: &mut P<'_>) -> Result<Stmt, NftParseError> {
    let kw = p.toks[p.i - 1].clone();
    let mut l = Log::default();
    loop {
        match p.peek_text() {
            "prefix" => {
                p.i += 1;
                l.prefix = Some(p.take()?.text.clone());
            }
            "level" => {
                p.i += 1;
                let t = p.take()?;
                let lv = LOG_LEVELS.iter().find(|(n, _)| *n == t.text);
                l.level = Some(
                    lv.ok_or_else(|| P::err(t, format!("invalid log level: {}", t.text)))?
                        .1,
                );
            }
            "group" => {
                p.i += 1;
                l.group = Some(int(p.take()?, 65535)? as u16);
            }
            "snaplen" => {
                p.i += 1;
                l.snaplen = Some(int(p.take()?, u64::from(u32::MAX))? as u32);
            }
            "queue-threshold" => {
                p.i += 1;
                l.qthreshold = Some(int(p.take()?, 65535)? as u16);
            }
            "flags" => {
                p.i += 1;
                l.flags |= log_flags(p)?;
            }
            _ => break,
        }
    }
    let nflog = l.group.is_some() || l.snaplen.is_some() || l.qthreshold.is_some();
    let why = if nflog && l.level.is_some() {
        "level and group are mutually exclusive"
    } else if nflog && l.flags != 0 {
        "flags and group are mutually exclusive"
    } else if l.level == Some(8)
        && (l
            != Log {
                level: Some(8),
                ..Log::default()
            })
    {
        "log level audit doesn't support any further options"
    } else {
        return Ok(Stmt::Log(std::sync::Arc::new(l)));
    };
    Err(P::err(&kw, why))
}

/// The words after `flags`: `all`, `ip options`, `skuid`, `ether`, `tcp
/// sequence,options`.
fn log_flags(p: &mut P<'_>) -> Result<u8, NftParseError> {
    let t = p.take()?;
    Ok(match t.text.as_str() {
        "all" => LOG_ALL,
        "skuid" => LOG_UID,
        "ether" => LOG_MACDECODE,
        "ip" => {
            p.expect("options")?;
            LOG_IPOPT
        }
        "tcp" => {
            let mut f = 0;
            loop {
                let w = p.take()?;
                f |= match w.text.as_str() {
                    "sequence" => LOG_TCPSEQ,
                    "options" => LOG_TCPOPT,
                    _ => return Err(bad(w)),
                };
                if !p.eat(",") {
                    break f;
                }
            }
        }
        _ => return Err(bad(t)),
    })
}

/// A match that fixes a transport protocol other than TCP.
fn not_tcp(s: &Stmt) -> bool {
    let Stmt::Match(m) = s else {
        return false;
    };
    m.keys.iter().any(|k| {
        matches!(
            k,
            Key::UdpSport | Key::UdpDport | Key::UdpLength | Key::UdpChecksum
        )
    }) || (matches!(m.keys[..], [Key::IpProtocol | Key::MetaL4proto])
        && m.op == Op::Eq
        && matches!(m.rhs, Rhs::Value(v) if v != 6))
}

/// nft's `set_stmt`: `add|update @SET { KEY [. KEY] [timeout T] }`.
fn set_update(p: &mut P<'_>, update: bool) -> Result<Stmt, NftParseError> {
    let t = p.take()?;
    let Some(set) = t.text.strip_prefix('@').filter(|n| !n.is_empty()) else {
        return Err(bad(t));
    };
    p.expect("{")?;
    let mut keys = Vec::new();
    loop {
        match key(p)? {
            Some(k) => keys.push(k),
            None => return Err(p.unexpected()),
        }
        if !p.eat(".") {
            break;
        }
    }
    let mut timeout = 0;
    if p.eat("timeout") {
        timeout = ipxmit::nft::dynset::timeout_ms(time_ms(p.take()?)?);
    }
    p.expect("}")?;
    Ok(Stmt::SetUpdate(SetUpdate {
        update,
        set: set.to_string(),
        keys,
        timeout,
    }))
}

/// nft's time string (`1d2h3m4s5ms`; a bare number is seconds) in ms.
pub fn time_ms(t: &Tok) -> Result<u64, NftParseError> {
    let wrong = || P::err(t, format!("Wrong time format: {}", t.text));
    if let Ok(v) = t.text.parse::<u64>() {
        return v.checked_mul(1000).ok_or_else(wrong);
    }
    let (mut ms, mut rest) = (0u64, t.text.as_str());
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let n: u64 = rest[..digits].parse().map_err(|_| wrong())?;
        rest = &rest[digits..];
        let unit = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let mult = match &rest[..unit] {
            "d" => 86_400_000,
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1000,
            "ms" => 1,
            _ => return Err(wrong()),
        };
        rest = &rest[unit..];
        ms = n
            .checked_mul(mult)
            .and_then(|v| v.checked_add(ms))
            .ok_or_else(wrong)?;
    }
    Ok(ms)
}

fn counter(p: &mut P<'_>) -> Result<Stmt, NftParseError> {
    let (mut packets, mut bytes) = (0, 0);
    loop {
        if p.eat("packets") {
            packets = int(p.take()?, u64::MAX)?;
        } else if p.eat("bytes") {
            bytes = int(p.take()?, u64::MAX)?;
        } else {
            break;
        }
    }
    Ok(Stmt::Counter(Counter::new(packets, bytes)))
}

/// Resolves `oif NAME` to the device's index (the kernel stores the index).
pub fn resolve(stack: &Stack, mut stmts: Vec<Stmt>) -> Result<Vec<Stmt>, NftError> {
    for s in &mut stmts {
        if let Stmt::Match(Match {
            rhs: Rhs::Dev(name, idx),
            ..
        }) = s
        {
            *idx = stack
                .device(name)
                .map_err(|_| NftError::NoDevice)?
                .ifindex();
        }
    }
    Ok(stmts)
}

/// Sorts an anonymous set's elements and, when one is an interval (the
/// set is then an interval set), merges overlapping or adjacent elements,
/// as nft does (`set_automerge`).
fn merge(mut v: Vec<Elem>) -> Vec<Elem> {
    v.sort_unstable();
    let interval = v.iter().any(|e| e.lo != e.hi);
    let mut out: Vec<Elem> = Vec::with_capacity(v.len());
    for e in v {
        match out.last_mut() {
            Some(l) if interval && e.lo <= l.hi.saturating_add(1) => {
                l.hi = l.hi.max(e.hi);
            }
            _ => out.push(e),
        }
    }
    out
}
