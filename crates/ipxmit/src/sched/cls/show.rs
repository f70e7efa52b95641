//! What `tc filter show` prints of a chain (`tc/tc_filter.c`'s
//! `print_filter` and the classifiers' printers), text and JSON.

use std::fmt::Write as _;

use super::{classid_text, ClsKind, Filter, Match, Tp, ETH_P_ALL, ETH_P_IP};

/// How `tc filter show` was asked.
#[derive(Clone, Debug, Default)]
pub struct FilterShow {
    /// The qdisc's handle, printed as `parent H:` unless `parent` was
    /// given on the line.
    pub parent: Option<u32>,
    /// `prio N` given: only that proto, and no `pref` printed.
    pub pref: Option<u32>,
}

/// tc's protocol names.
fn protocol(p: u16) -> String {
    match p {
        ETH_P_ALL => "all".into(),
        ETH_P_IP => "ip".into(),
        0x0806 => "arp".into(),
        0x86dd => "ipv6".into(),
        0x8100 => "802.1Q".into(),
        other => format!("[{other:04x}]"),
    }
}

/// `filter parent 1: protocol ip pref 1 u32 chain 0 `.
fn head(tp: &Tp, how: &FilterShow) -> String {
    let mut s = "filter ".to_owned();
    if let Some(p) = how.parent {
        let _ = write!(s, "parent {} ", classid_text(p));
    }
    let _ = write!(s, "protocol {} ", protocol(tp.protocol));
    if how.pref.is_none() {
        let _ = write!(s, "pref {} ", tp.pref);
    }
    let _ = write!(s, "{} chain 0 ", tp.kind.name());
    s
}

/// The text lines of one proto.
pub(super) fn tp_lines(o: &mut String, tp: &Tp, how: &FilterShow) {
    let h = head(tp, how);
    let _ = writeln!(o, "{h}");
    if tp.kind == ClsKind::U32 {
        let _ = writeln!(o, "{h}fh {:x}: ht divisor 1 ", tp.ht);
    }
    for f in &tp.filters {
        let _ = write!(o, "{h}");
        filter_text(o, tp, f);
    }
}

/// One filter's options, as its classifier prints them.
fn filter_text(o: &mut String, tp: &Tp, f: &Filter) {
    match &f.matcher {
        Match::U32(keys) => {
            let node = f.handle & 0xfff;
            let _ = write!(
                o,
                "fh {:x}::{node:x} order {node} key ht {:x} bkt 0 ",
                tp.ht, tp.ht
            );
            if let Some(c) = f.classid {
                let _ = write!(o, "*flowid {} ", classid_text(c));
            }
            let _ = writeln!(o, "not_in_hw ");
            for k in keys {
                let _ = writeln!(o, "  match {:08x}/{:08x} at {}", k.val, k.mask, k.off);
            }
        }
        Match::Fw { mask } => {
            if f.handle != 0 {
                let _ = write!(o, "handle 0x{:x}", f.handle);
                if *mask != u32::MAX {
                    let _ = write!(o, "/0x{mask:x}");
                }
                o.push(' ');
            }
            if let Some(c) = f.classid {
                let _ = write!(o, "classid {} ", classid_text(c));
            }
            o.push('\n');
        }
        Match::All => {
            let _ = write!(o, "handle 0x{:x} ", f.handle);
            if let Some(c) = f.classid {
                let _ = write!(o, "flowid {} ", classid_text(c));
            }
            let _ = writeln!(o, "\n  not_in_hw");
        }
        Match::Basic(terms) => {
            let _ = write!(o, "handle 0x{:x} ", f.handle);
            if let Some(c) = f.classid {
                let _ = write!(o, "flowid {} ", classid_text(c));
            }
            if !terms.is_empty() {
                o.push_str("\n  ");
                for (i, t) in terms.iter().enumerate() {
                    o.push_str(&t.text());
                    if i + 1 < terms.len() {
                        o.push_str(if t.and_next { " AND " } else { " OR " });
                    }
                }
                o.push(' ');
            }
            o.push('\n');
        }
    }
}

/// The JSON head fields of one proto.
fn head_json(tp: &Tp, how: &FilterShow) -> String {
    let mut s = String::from("{");
    if let Some(p) = how.parent {
        let _ = write!(s, "\"parent\":\"{}\",", classid_text(p));
    }
    let _ = write!(s, "\"protocol\":\"{}\",", protocol(tp.protocol));
    if how.pref.is_none() {
        let _ = write!(s, "\"pref\":{},", tp.pref);
    }
    let _ = write!(s, "\"kind\":\"{}\",\"chain\":0", tp.kind.name());
    s
}

/// The JSON objects of one proto.
pub(super) fn tp_json(v: &mut Vec<String>, tp: &Tp, how: &FilterShow) {
    let h = head_json(tp, how);
    v.push(format!("{h}}}"));
    if tp.kind == ClsKind::U32 {
        v.push(format!(
            "{h},\"options\":{{\"fh\":\"{:x}:\",\"ht_divisor\":1}}}}",
            tp.ht
        ));
    }
    for f in &tp.filters {
        v.push(format!("{h},\"options\":{{{}}}}}", filter_json(tp, f)));
    }
}

/// One filter's `options` members.
fn filter_json(tp: &Tp, f: &Filter) -> String {
    let flow = |key: &str| {
        f.classid
            .map(|c| format!(",\"{key}\":\"{}\"", classid_text(c)))
            .unwrap_or_default()
    };
    match &f.matcher {
        Match::U32(keys) => {
            let node = f.handle & 0xfff;
            let mut s = format!(
                "\"fh\":\"{:x}::{node:x}\",\"order\":{node},\"key_ht\":\"{:x}\",\"bkt\":\"0\"",
                tp.ht, tp.ht
            );
            s += &flow("flowid");
            s += ",\"not_in_hw\":true";
            for k in keys {
                let _ = write!(
                    s,
                    ",\"match\":{{\"value\":\"{:x}\",\"mask\":\"{:x}\",\"offmask\":\"\",\"off\":{}}}",
                    k.val, k.mask, k.off
                );
            }
            s
        }
        Match::Fw { .. } => format!("\"handle\":\"0x{:x}\"{}", f.handle, flow("classid")),
        Match::All => format!(
            "\"handle\":{}{},\"not_in_hw\":true",
            f.handle,
            flow("flowid")
        ),
        Match::Basic(_) => format!("\"handle\":{}{}", f.handle, flow("flowid")),
    }
}
