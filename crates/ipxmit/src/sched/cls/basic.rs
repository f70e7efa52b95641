//! The `basic` classifier's ematch trees, as far as `meta` goes.
//!
//! Stands for `net/sched/cls_basic.c`, `net/sched/ematch.c`
//! (`tcf_em_tree_match`) and `net/sched/em_meta.c` for the keys a
//! transmit path has (`priority`, `nf_mark`, `pktlen`, `protocol`), with
//! tc's ematch syntax (`tc/m_ematch.c`, `tc/em_meta.c`):
//! `meta(KEY [mask M] [shift S] eq|lt|gt VALUE)`, joined by `and`/`or`,
//! each term optionally preceded by `not`. Terms are tried left to right
//! as the kernel's tree walk does: after a term, `and` stops at the first
//! false, `or` at the first true.

use crate::buf::PacketBuf;

/// A meta key (`TCF_META_ID_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKey {
    /// `priority` (`skb->priority`).
    Priority,
    /// `nf_mark` (`skb->mark`).
    NfMark,
    /// `pktlen` (`skb->len`).
    PktLen,
    /// `protocol` (`skb->protocol`).
    Protocol,
}

/// A comparison (`TCF_EM_OPND_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaOp {
    /// `eq`.
    Eq,
    /// `lt`.
    Lt,
    /// `gt`.
    Gt,
}

/// One ematch term and how it joins the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmTerm {
    /// `not`.
    pub invert: bool,
    /// The key.
    pub key: MetaKey,
    /// `mask M` (all ones when absent).
    pub mask: u32,
    /// `shift S`.
    pub shift: u8,
    /// The comparison.
    pub op: MetaOp,
    /// The value compared with.
    pub value: u32,
    /// `and` (true) or `or` (false) to the next term; unused on the last.
    pub and_next: bool,
}

impl EmTerm {
    /// Kernel: `em_meta_match()`.
    fn matches(&self, pkt: &PacketBuf) -> bool {
        let v = match self.key {
            MetaKey::Priority => pkt.meta.priority,
            MetaKey::NfMark => pkt.meta.mark,
            MetaKey::PktLen => pkt.len() as u32,
            MetaKey::Protocol => u32::from(pkt.meta.protocol),
        };
        let v = (v >> self.shift) & self.mask;
        let r = match self.op {
            MetaOp::Eq => v == self.value,
            MetaOp::Lt => v < self.value,
            MetaOp::Gt => v > self.value,
        };
        r != self.invert
    }

    /// tc's `print_ematch()` of the term.
    pub fn text(&self) -> String {
        let key = match self.key {
            MetaKey::Priority => "priority",
            MetaKey::NfMark => "nf_mark",
            MetaKey::PktLen => "pktlen",
            MetaKey::Protocol => "protocol",
        };
        let op = match self.op {
            MetaOp::Eq => "eq",
            MetaOp::Lt => "lt",
            MetaOp::Gt => "gt",
        };
        let mut s = String::new();
        if self.invert {
            s += "NOT ";
        }
        s += &format!("meta({key}");
        if self.shift != 0 {
            s += &format!(" shift {}", self.shift);
        }
        if self.mask != u32::MAX {
            s += &format!(" mask 0x{:08x}", self.mask);
        }
        s + &format!(" {op} {})", self.value)
    }
}

/// Kernel: `tcf_em_tree_match()` over a flat sequence.
pub fn tree_match(terms: &[EmTerm], pkt: &PacketBuf) -> bool {
    let mut r = true;
    for t in terms {
        r = t.matches(pkt);
        if t.and_next != r {
            // `and` after a false, `or` after a true: the answer is known.
            break;
        }
    }
    r
}

/// tc's ematch parser for a flat `meta` sequence: the words after `match`
/// up to `classid`/`flowid`; the number of words taken.
pub fn parse_ematch(words: &[&str]) -> Result<(Vec<EmTerm>, usize), String> {
    let end = words
        .iter()
        .position(|w| ["classid", "flowid", "action", "police"].contains(w))
        .unwrap_or(words.len());
    let text = words[..end].join(" ");
    let bad = || "Illegal \"ematch\"".to_owned();
    let mut terms: Vec<EmTerm> = Vec::new();
    let mut rest = text.trim();
    loop {
        let invert = match rest.strip_prefix("not ") {
            Some(r) => {
                rest = r.trim_start();
                true
            }
            None => false,
        };
        let body = rest.strip_prefix("meta(").ok_or_else(bad)?;
        let close = body.find(')').ok_or_else(bad)?;
        let mut t = parse_meta(&body[..close]).ok_or_else(bad)?;
        t.invert = invert;
        rest = body[close + 1..].trim_start();
        let next = rest.split_whitespace().next();
        match next {
            None => {
                terms.push(t);
                return Ok((terms, end));
            }
            Some(rel @ ("and" | "or")) => {
                t.and_next = rel == "and";
                terms.push(t);
                rest = rest[rel.len()..].trim_start();
            }
            Some(_) => return Err(bad()),
        }
    }
}

/// `KEY [mask M] [shift S] OP VALUE`.
fn parse_meta(s: &str) -> Option<EmTerm> {
    let w: Vec<&str> = s.split_whitespace().collect();
    let key = match *w.first()? {
        "priority" => MetaKey::Priority,
        "nf_mark" => MetaKey::NfMark,
        "pktlen" => MetaKey::PktLen,
        "protocol" => MetaKey::Protocol,
        _ => return None,
    };
    let (mut mask, mut shift, mut i) = (u32::MAX, 0u8, 1);
    loop {
        match *w.get(i)? {
            "mask" => mask = super::parse::number(w.get(i + 1)?)?,
            "shift" => shift = w.get(i + 1)?.parse().ok().filter(|&x: &u8| x < 32)?,
            _ => break,
        }
        i += 2;
    }
    let op = match *w.get(i)? {
        "eq" => MetaOp::Eq,
        "lt" => MetaOp::Lt,
        "gt" => MetaOp::Gt,
        _ => return None,
    };
    let value = super::parse::number(w.get(i + 1)?)?;
    (w.len() == i + 2).then_some(EmTerm {
        invert: false,
        key,
        mask,
        shift,
        op,
        value,
        and_next: true,
    })
}
