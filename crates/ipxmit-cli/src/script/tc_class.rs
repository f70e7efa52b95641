//! `tc class` lines in scripts: tc(8)'s words, its messages and its
//! output.
//!
//! Stands for iproute2's `tc/tc_class.c` (`tc_class_modify`,
//! `print_class`) and `get_tc_classid()` (`tc/tc_util.c`); what the kernel
//! decides is [`ipxmit::Stack::class_modify`] and
//! [`ipxmit::Stack::class_delete`].

use std::fmt::Write as _;

use ipxmit::dev::NetDevice;
use ipxmit::sched::api::Handle;
use ipxmit::sched::class::TC_H_ROOT;
use ipxmit::sched::est::EstTarget;
use ipxmit::sched::{ClassOp, ClassRequest, ClassSpec, Qdisc};

use super::tc::TcCommand;

/// tc's message for a keyword without its value.
const INCOMPLETE: &str = "Command line is not complete. Try option \"help\"";

/// tc's `get_tc_classid()`: `root`, `none`, `MAJ:MIN`, `MAJ:`, `:MIN` or
/// a bare hexadecimal number.
pub fn parse_classid(s: &str) -> Option<u32> {
    match s {
        "root" => return Some(TC_H_ROOT),
        "none" => return Some(0),
        _ => {}
    }
    let hex = |t: &str| -> Option<u32> {
        if t.is_empty() {
            Some(0)
        } else {
            u32::from_str_radix(t, 16).ok()
        }
    };
    match s.split_once(':') {
        Some((maj, min)) => {
            let (maj, min) = (hex(maj)?, hex(min)?);
            (maj < 0x1_0000 && min < 0x1_0000).then_some(maj << 16 | min)
        }
        None if !s.is_empty() => u32::from_str_radix(s, 16).ok(),
        None => None,
    }
}

/// The words of `tc_class_modify()` after the command.
struct Words<'a> {
    dev: Option<&'a str>,
    parent: u32,
    classid: u32,
    kind: Vec<&'a str>,
    /// `estimator INTERVAL TIME_CONSTANT`.
    est: Option<ipxmit::sched::est::EstimatorSpec>,
}

/// Reads `dev D`, `classid C`, `parent P`, `root`, then the kind and its
/// options.
fn words<'a>(r: &[&'a str]) -> Result<Words<'a>, String> {
    let mut w = Words {
        dev: None,
        parent: 0,
        classid: 0,
        kind: Vec::new(),
        est: None,
    };
    let mut it = r.iter().copied();
    while let Some(word) = it.next() {
        match word {
            "dev" => w.dev = Some(it.next().ok_or(INCOMPLETE)?),
            "classid" => {
                let v = it.next().ok_or(INCOMPLETE)?;
                w.classid = parse_classid(v).ok_or(format!("Invalid class ID \"{v}\""))?;
            }
            "handle" => return Err("Error: try \"classid\" instead of \"handle\"".into()),
            "estimator" => {
                let spec = ipxmit::sched::est::EstimatorSpec::parse(it.next(), it.next());
                w.est = Some(spec.map_err(|e| e.to_string())?);
            }
            "root" => {
                if w.parent != 0 {
                    return Err("Error: \"root\" is duplicate parent ID.".into());
                }
                w.parent = TC_H_ROOT;
            }
            "parent" => {
                let v = it.next().ok_or(INCOMPLETE)?;
                if w.parent != 0 {
                    return Err("Error: \"parent\" is duplicate parent ID.".into());
                }
                w.parent = parse_classid(v).ok_or(format!("Invalid parent ID \"{v}\""))?;
            }
            kind => {
                w.kind = std::iter::once(kind).chain(it).collect();
                break;
            }
        }
    }
    Ok(w)
}

/// `tc class add|change|replace|del ...` (after `class`).
pub fn parse_modify(cmd: &str, rest: &[&str]) -> Result<TcCommand, String> {
    let op = match cmd {
        "add" => ClassOp::Add,
        "change" => ClassOp::Change,
        "replace" => ClassOp::Replace,
        "del" | "delete" => {
            let w = words(rest)?;
            return Ok(TcCommand::ClassDelete {
                dev: w.dev.ok_or("Cannot find device \"\"")?.to_owned(),
                parent: w.parent,
                classid: w.classid,
            });
        }
        other => {
            return Err(format!(
                "Command \"{other}\" is unknown, try \"tc class help\"."
            ))
        }
    };
    let w = words(rest)?;
    let dev = w.dev.ok_or("Cannot find device \"\"")?.to_owned();
    let spec = ClassSpec::parse(&w.kind).map_err(|e| e.to_string())?;
    Ok(TcCommand::ClassModify {
        dev,
        req: ClassRequest {
            op,
            parent: w.parent,
            classid: w.classid,
            spec,
        },
        est: w.est,
    })
}

/// What `tc [-s] [-d] class show` prints.
#[derive(Clone, Copy)]
pub struct ShowClass<'a> {
    /// `dev D ` after the class id (all devices listed).
    pub named: bool,
    /// `-s`.
    pub stats: bool,
    /// `-d`.
    pub details: bool,
    /// `classid C`: only that class.
    pub only: Option<u32>,
    /// The device's rate estimates (filled in by [`class_show`]).
    pub rates: &'a super::tc::Rates,
}

/// `tc [-s] [-d] class show`: the classes of each device's root, then of
/// the qdiscs grafted in its tree, each in its qdisc's order (`class htb
/// 1:1 root rate ...`; tc 6.1 prints text even under `-j`).
pub fn class_show(
    devs: &[std::sync::Arc<NetDevice>],
    how: ShowClass,
    stack: Option<&ipxmit::Stack>,
) -> String {
    let mut o = String::new();
    for d in devs {
        // Read before any qdisc is locked (reading takes the due samples).
        let rates = stack.map(|s| s.rate_estimates(d)).unwrap_or_default();
        let how = ShowClass {
            rates: &rates,
            ..how
        };
        let devpart = if how.named {
            format!("dev {} ", d.name())
        } else {
            String::new()
        };
        if let Some(mh) = d.mq_root() {
            mq_classes(&mut o, d, mh, &devpart, how);
            continue;
        }
        let h = d.queues()[0].qdisc_handle();
        d.queues()[0].with_qdisc(|q| {
            qdisc_classes(&mut o, q, h, &devpart, how);
            for (_, ch, c) in super::tc::grafted(q) {
                qdisc_classes(&mut o, c, ch, &devpart, how);
            }
        });
    }
    o
}

/// Kernel: `mq_dump_class()`: an `mq` root's class per queue (`class mq
/// 1:1 root leaf 10: `, its counters the queue's qdisc's), then the
/// classes of the qdiscs under it in the kernel's hash order.
fn mq_classes(o: &mut String, d: &NetDevice, mh: u32, devpart: &str, how: ShowClass) {
    let mut others: Vec<(u32, String)> = Vec::new();
    for (i, txq) in d.trees().iter().enumerate() {
        let id = (mh & 0xffff_0000) | (i as u32 + 1);
        let lh = txq.qdisc_handle();
        txq.with_qdisc(|q| {
            if how.only.is_none_or(|c| c == id) {
                let leaf = match lh {
                    0 => String::new(),
                    h => format!("leaf {} ", Handle(h)),
                };
                let _ = writeln!(o, "class mq {} {devpart}root {leaf}", Handle(id));
                if how.stats {
                    let rate = super::tc::rate_of(how.rates, EstTarget::Class(id));
                    let _ = writeln!(o, "{}", super::tc::stats_text(q.stats(), rate));
                }
            }
            let mut t = String::new();
            qdisc_classes(&mut t, q, lh, devpart, how);
            others.push((lh, t));
            for (_, ch, c) in super::tc::tree_walk(q) {
                let mut t = String::new();
                qdisc_classes(&mut t, c, ch, devpart, how);
                others.push((ch, t));
            }
        });
    }
    super::tc::hash_order(&mut others);
    others.iter().for_each(|(_, t)| o.push_str(t));
}

/// The classes of one qdisc `q` of handle `h`.
fn qdisc_classes(o: &mut String, q: &dyn Qdisc, h: u32, devpart: &str, how: ShowClass) {
    let leaves = q.children();
    for minor in q.classes() {
        let id = (h & 0xffff_0000) | minor;
        if how.only.is_some_and(|c| c != id) {
            continue;
        }
        let show = q.class_show(id, how.details).unwrap_or_else(|| {
            let leaf = leaves.iter().find(|l| l.0 == id);
            let text = match leaf {
                Some((_, lh, _)) => format!("parent {} leaf {} ", Handle(h), Handle(*lh)),
                None => format!("parent {} ", Handle(h)),
            };
            ipxmit::sched::ClassShow {
                text,
                stats: Default::default(),
                xstats: None,
            }
        });
        let _ = writeln!(
            o,
            "class {} {} {devpart}{}",
            q.kind(),
            Handle(id),
            show.text
        );
        if how.stats {
            let rate = super::tc::rate_of(how.rates, EstTarget::Class(id));
            let _ = writeln!(o, "{}", super::tc::stats_text(&show.stats, rate));
            *o += show.xstats.as_deref().unwrap_or("");
            o.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_ids_are_tcs() {
        assert_eq!(parse_classid("1:10"), Some(0x1_0010));
        assert_eq!(parse_classid("1:"), Some(0x1_0000));
        assert_eq!(parse_classid(":5"), Some(5));
        assert_eq!(parse_classid("5"), Some(5));
        assert_eq!(parse_classid("root"), Some(TC_H_ROOT));
        assert_eq!(parse_classid("1:10000"), None);
        assert_eq!(parse_classid("x:1"), None);
    }

    #[test]
    fn class_lines_parse_as_tc() {
        let p = |s: &str| {
            let w: Vec<&str> = s.split_whitespace().collect();
            parse_modify(w[0], &w[1..])
        };
        match p("add dev d0 parent 1: classid 1:1 htb rate 20kbit").unwrap() {
            TcCommand::ClassModify { dev, req, .. } => {
                assert_eq!(
                    (dev.as_str(), req.parent, req.classid),
                    ("d0", 0x1_0000, 0x1_0001)
                );
                assert_eq!(req.op, ClassOp::Add);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            p("add dev d0 parent 1: handle 1:1 htb rate 1").unwrap_err(),
            "Error: try \"classid\" instead of \"handle\""
        );
        assert_eq!(
            p("add dev d0 parent 1: classid 1:1 tbf rate 1mbit").unwrap_err(),
            "Error: Qdisc \"tbf\" is classless."
        );
        assert!(matches!(
            p("del dev d0 classid 1:5").unwrap(),
            TcCommand::ClassDelete {
                classid: 0x1_0005,
                parent: 0,
                ..
            }
        ));
    }
}
