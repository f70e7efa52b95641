//! tc's parsers of the classifiers' words (`tc/f_u32.c`, `tc/f_fw.c`,
//! `tc/f_matchall.c`): what follows the kind on a `tc filter add` line.

use std::net::Ipv4Addr;

use super::{ClsKind, Match, U32Key};

/// What a classifier's words give: the match, the `flowid`/`classid`
/// and the handle.
pub type Parsed = (Match, Option<u32>, u32);

/// Parses `KIND OPTIONS` with the `handle` given before the kind, as tc
/// does; a refusal is tc's message.
pub fn parse_filter(
    kind: &str,
    handle: Option<&str>,
    opts: &[&str],
) -> Result<(ClsKind, Parsed), String> {
    match kind {
        "u32" => parse_u32(handle, opts).map(|p| (ClsKind::U32, p)),
        "fw" => parse_fw(handle, opts).map(|p| (ClsKind::Fw, p)),
        "matchall" => parse_matchall(handle, opts).map(|p| (ClsKind::Matchall, p)),
        "basic" => parse_basic(handle, opts).map(|p| (ClsKind::Basic, p)),
        other => Err(format!(
            "Unknown filter \"{other}\", hence option \"{}\" is unparsable",
            opts.first().copied().unwrap_or("")
        )),
    }
}

/// tc's `get_tc_classid()` for a `flowid`/`classid` value.
fn classid(v: Option<&&str>, what: &str) -> Result<u32, String> {
    let v = v.ok_or_else(|| format!("Illegal \"{what}\""))?;
    let (maj, min) = v
        .split_once(':')
        .ok_or_else(|| format!("Illegal \"{what}\""))?;
    let hex = |t: &str| {
        if t.is_empty() {
            Some(0)
        } else {
            u32::from_str_radix(t, 16).ok().filter(|&x| x <= 0xffff)
        }
    };
    match (hex(maj), hex(min)) {
        (Some(a), Some(b)) => Ok(a << 16 | b),
        _ => Err(format!("Illegal \"{what}\"")),
    }
}

/// tc's `get_u32(.., 0)`: decimal, `0x` hexadecimal or `0` octal.
pub(super) fn number(v: &str) -> Option<u32> {
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        return u32::from_str_radix(h, 16).ok();
    }
    if v.len() > 1 && v.starts_with('0') {
        return u32::from_str_radix(&v[1..], 8).ok();
    }
    v.parse().ok()
}

/// tc's `get_u32(.., 16)` of a mask: hexadecimal with or without `0x`.
fn hex_mask(v: &str) -> Option<u32> {
    u32::from_str_radix(v.strip_prefix("0x").unwrap_or(v), 16).ok()
}

/// A u32 handle `HT:HASH:NODE` (hexadecimal, parts may be empty).
fn u32_handle(h: &str) -> Option<u32> {
    let mut parts = h.split(':');
    let mut part = |max: u32| -> Option<u32> {
        match parts.next() {
            None | Some("") => Some(0),
            Some(p) => u32::from_str_radix(p, 16).ok().filter(|&x| x <= max),
        }
    };
    let (ht, hash, node) = (part(0xfff)?, part(0xff)?, part(0xfff)?);
    Some(ht << 20 | hash << 12 | node)
}

/// The u32 selector being built (`struct tc_u32_sel`).
#[derive(Default)]
struct Sel {
    keys: Vec<U32Key>,
}

impl Sel {
    /// tc's `pack_key()`: a key merged into one at the same offset (a
    /// contradiction refused).
    fn pack(&mut self, val: u32, mask: u32, off: i32) -> Result<(), ()> {
        let val = val & mask;
        if let Some(k) = self.keys.iter_mut().find(|k| k.off == off) {
            if (k.val ^ val) & (k.mask & mask) != 0 {
                return Err(());
            }
            k.val |= val;
            k.mask |= mask;
            return Ok(());
        }
        self.keys.push(U32Key { val, mask, off });
        Ok(())
    }

    /// tc's `pack_key16()`: the high half of the word when `off` is a
    /// multiple of 4.
    fn pack16(&mut self, val: u32, mask: u32, off: i32) -> Result<(), ()> {
        if val > 0xffff || mask > 0xffff {
            return Err(());
        }
        let shift = if off & 3 == 0 { 16 } else { 0 };
        self.pack(val << shift, mask << shift, off & !3)
    }

    /// tc's `pack_key8()`.
    fn pack8(&mut self, val: u32, mask: u32, off: i32) -> Result<(), ()> {
        if val > 0xff || mask > 0xff {
            return Err(());
        }
        let shift = 8 * (3 - (off & 3) as u32);
        self.pack(val << shift, mask << shift, off & !3)
    }
}

/// tc's `u32_parse_opt()`: `match ...` selectors, `flowid`/`classid`.
fn parse_u32(handle: Option<&str>, opts: &[&str]) -> Result<Parsed, String> {
    let handle = match handle {
        Some(h) => u32_handle(h).ok_or("Illegal \"handle\"")?,
        None => 0,
    };
    let mut sel = Sel::default();
    let mut flow = None;
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            "match" => {
                let used = parse_selector(&mut sel, &opts[i + 1..]).ok_or("Illegal \"match\"")?;
                i += 1 + used;
            }
            w if w == "classid" || w == "flowid" => {
                flow = Some(classid(opts.get(i + 1), "classid")?);
                i += 2;
            }
            "help" => return Err(U32_USAGE.into()),
            other => return Err(format!("What is \"{other}\"?\n{U32_USAGE}")),
        }
    }
    Ok((Match::U32(sel.keys), flow, handle))
}

/// tc's usage line for u32.
const U32_USAGE: &str = "Usage: ... u32 [ match SELECTOR ... ] [ link HTID ] [ classid CLASSID ]";

/// One selector after `match`; the number of words it took.
fn parse_selector(sel: &mut Sel, w: &[&str]) -> Option<usize> {
    match *w.first()? {
        "ip" => parse_ip(sel, &w[1..]).map(|n| n + 1),
        "u32" | "u16" | "u8" => {
            let (val, mask) = (number(w.get(1)?)?, hex_mask(w.get(2)?)?);
            // `at OFF` is optional (offset 0).
            let (off, used) = match w.get(3) {
                Some(&"at") => (w.get(4)?.parse::<i32>().ok()?, 5),
                _ => (0, 3),
            };
            let r = match w[0] {
                "u32" => sel.pack(val, mask, off),
                "u16" => sel.pack16(val, mask, off),
                _ => sel.pack8(val, mask, off),
            };
            r.ok().map(|()| used)
        }
        _ => None,
    }
}

/// `match ip src|dst A[/LEN]`, `match ip tos|dsfield|protocol|ihl V M`,
/// `match ip sport|dport V M`, `match ip icmp_type|icmp_code V M`.
fn parse_ip(sel: &mut Sel, w: &[&str]) -> Option<usize> {
    let field = *w.first()?;
    if field == "src" || field == "dst" {
        let (addr, len) = match w.get(1)?.split_once('/') {
            Some((a, l)) => (a, l.parse::<u32>().ok().filter(|&l| l <= 32)?),
            None => (*w.get(1)?, 32),
        };
        let a = u32::from(addr.parse::<Ipv4Addr>().ok()?);
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let off = if field == "src" { 12 } else { 16 };
        return sel.pack(a, mask, off).ok().map(|()| 2);
    }
    let (val, mask) = (number(w.get(1)?)?, hex_mask(w.get(2)?)?);
    let r = match field {
        "tos" | "dsfield" => sel.pack8(val, mask, 1),
        "protocol" => sel.pack8(val, mask, 9),
        "ihl" => sel.pack8(val, mask, 0),
        "icmp_type" => sel.pack8(val, mask, 20),
        "icmp_code" => sel.pack8(val, mask, 21),
        "sport" => sel.pack16(val, mask, 20),
        "dport" => sel.pack16(val, mask, 22),
        _ => return None,
    };
    r.ok().map(|()| 3)
}

/// tc's `fw_parse_opt()`: `handle MARK[/MASK]`, `classid`.
fn parse_fw(handle: Option<&str>, opts: &[&str]) -> Result<Parsed, String> {
    let (h, mask) = match handle {
        Some(h) => {
            let (v, m) = match h.split_once('/') {
                Some((v, m)) => (v, Some(m)),
                None => (h, None),
            };
            let v = number(v).ok_or("Illegal \"handle\"")?;
            let m = match m {
                Some(m) => number(m).ok_or("Illegal \"handle\" mask")?,
                None => u32::MAX,
            };
            (v, m)
        }
        None => (0, u32::MAX),
    };
    let flow = classid_opts(opts, "Usage: ... fw [ classid CLASSID ]")?;
    Ok((Match::Fw { mask }, flow, h))
}

/// tc's `matchall_parse_opt()`: `classid`.
fn parse_matchall(handle: Option<&str>, opts: &[&str]) -> Result<Parsed, String> {
    let h = match handle {
        Some(h) => number(h).ok_or("Illegal \"handle\"")?,
        None => 0,
    };
    let flow = classid_opts(opts, "Usage: ... matchall [ classid CLASSID ]")?;
    Ok((Match::All, flow, h))
}

/// Options that are only `classid`/`flowid`.
fn classid_opts(opts: &[&str], usage: &str) -> Result<Option<u32>, String> {
    let mut flow = None;
    let mut it = opts.iter();
    while let Some(w) = it.next() {
        match *w {
            "classid" | "flowid" => flow = Some(classid(it.next(), "classid")?),
            "help" => return Err(usage.into()),
            other => return Err(format!("What is \"{other}\"?\n{usage}")),
        }
    }
    Ok(flow)
}

/// tc's `basic_parse_opt()`: `match EMATCH`, `classid`/`flowid`.
fn parse_basic(handle: Option<&str>, opts: &[&str]) -> Result<Parsed, String> {
    const USAGE: &str = "Usage: ... basic [ match EMATCH_TREE ] [ classid CLASSID ]";
    let h = match handle {
        Some(h) => number(h).ok_or(format!("Illegal handle \"{h}\", must be numeric."))?,
        None => 0,
    };
    let (mut terms, mut flow) = (Vec::new(), None);
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            "match" => {
                let (t, used) = super::basic::parse_ematch(&opts[i + 1..])?;
                terms = t;
                i += 1 + used;
            }
            "classid" | "flowid" => {
                flow = Some(classid(opts.get(i + 1), "classid")?);
                i += 2;
            }
            "help" => return Err(USAGE.into()),
            other => return Err(format!("What is \"{other}\"?\n{USAGE}")),
        }
    }
    Ok((Match::Basic(terms), flow, h))
}
