//! `tc` command lines in scripts: tc(8)'s words, its messages and its
//! output.
//!
//! Stands for iproute2's `tc/tc.c` (global options), `tc/tc_qdisc.c`
//! (`tc_qdisc_modify`, `tc_qdisc_list`, `print_qdisc`) and `tc/tc_class.c`
//! (`print_class`) for what the stack has: a device's root qdisc. A line is
//! split with shell word rules ([`split_shell`]); what the kernel decides
//! is [`ipxmit::Stack::qdisc_modify`] and [`ipxmit::Stack::qdisc_delete`].

use std::fmt::Write as _;

use ipxmit::dev::NetDevice;
use ipxmit::sched::api::Handle;
use ipxmit::sched::est::{EstTarget, EstimatorSpec};
use ipxmit::sched::{OptValue, QdiscOp, QdiscSpec, TcError};
use ipxmit::time::Instant;
use ipxmit::Stack;
use serde_json::{json, Map, Value};

/// A `tc` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcCommand {
    /// `tc qdisc add|replace|change dev D root|parent X:Y [handle H:] KIND ...`.
    Modify {
        /// What is asked.
        op: QdiscOp,
        /// Device.
        dev: String,
        /// `root` (`TC_H_ROOT`), `parent X:Y`, or 0 for neither.
        parent: u32,
        /// The handle asked for.
        handle: Option<u32>,
        /// The qdisc.
        spec: QdiscSpec,
        /// `estimator INTERVAL TIME_CONSTANT`.
        est: Option<EstimatorSpec>,
    },
    /// `tc qdisc del dev D root|parent X:Y [handle H:]`.
    Delete {
        /// Device.
        dev: String,
        /// `root` (`TC_H_ROOT`), `parent X:Y`, or 0 for neither.
        parent: u32,
        /// The handle named.
        handle: Option<u32>,
    },
    /// `tc [-s] [-d] [-j] qdisc|class|filter show [dev D] [classid C]`.
    Show {
        /// `qdisc`, `class` or `filter`.
        object: Object,
        /// The device, or every device.
        dev: Option<String>,
        /// The global options.
        opts: ShowOpts,
        /// `classid C` (classes only).
        classid: Option<u32>,
    },
    /// `tc class add|change|replace dev D [parent P] [classid C] KIND ...`.
    ClassModify {
        /// Device.
        dev: String,
        /// The request.
        req: ipxmit::sched::ClassRequest,
        /// `estimator INTERVAL TIME_CONSTANT`.
        est: Option<EstimatorSpec>,
    },
    /// `tc filter add dev D [parent P] [protocol PROTO] [prio N] KIND ...`.
    FilterAdd {
        /// Device.
        dev: String,
        /// `parent` (0 when absent: the root).
        parent: u32,
        /// The filter.
        spec: ipxmit::sched::cls::FilterSpec,
    },
    /// `tc filter del dev D [parent P] [prio N] [handle H KIND]`.
    FilterDel {
        /// Device.
        dev: String,
        /// `parent` (0 when absent: the root).
        parent: u32,
        /// `prio` (0: every filter).
        pref: u32,
        /// The filter's handle (0: the whole preference).
        handle: u32,
    },
    /// `tc [-j] filter show dev D [parent P] [prio N]`.
    FilterShow {
        /// Device.
        dev: Option<String>,
        /// `parent`.
        parent: Option<u32>,
        /// `prio`.
        pref: Option<u32>,
        /// `-j`.
        json: bool,
    },
    /// `tc class del dev D [parent P] classid C`.
    ClassDelete {
        /// Device.
        dev: String,
        /// `parent` (0 when absent).
        parent: u32,
        /// `classid` (0 when absent).
        classid: u32,
    },
}

/// What `tc ... show` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    /// Qdiscs.
    Qdisc,
    /// Classes.
    Class,
}

/// tc's global options that change what `show` prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShowOpts {
    /// `-s`: statistics.
    pub stats: bool,
    /// `-d`: details.
    pub details: bool,
    /// `-j`: JSON.
    pub json: bool,
}

/// Splits a line with the shell's word rules: blanks separate words,
/// single quotes keep everything, double quotes keep all but `\"` and
/// `\\`, a backslash outside quotes keeps the next character, and a `#`
/// that starts a word starts a comment.
pub fn split_shell(line: &str) -> Result<Vec<String>, String> {
    let (mut words, mut cur, mut in_word) = (Vec::new(), String::new(), false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated quote '".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                double_quoted(&mut chars, &mut cur)?;
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// The rest of a double-quoted string, into `cur`.
fn double_quoted(chars: &mut std::str::Chars<'_>, cur: &mut String) -> Result<(), String> {
    loop {
        match chars.next() {
            Some('"') => return Ok(()),
            Some('\\') => match chars.next() {
                Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                Some(c) => {
                    cur.push('\\');
                    cur.push(c);
                }
                None => return Err("unterminated quote \"".into()),
            },
            Some(c) => cur.push(c),
            None => return Err("unterminated quote \"".into()),
        }
    }
}

/// Parses the words after `tc`, as tc does (its messages).
pub fn parse(words: &[String]) -> Result<TcCommand, String> {
    let mut opts = ShowOpts::default();
    let mut it = words.iter().map(String::as_str).peekable();
    while let Some(w) = it.next_if(|w| w.starts_with('-')) {
        match w {
            "-s" | "-stats" | "-statistics" => opts.stats = true,
            "-d" | "-details" => opts.details = true,
            "-j" | "-json" => opts.json = true,
            "-p" | "-pretty" | "-i" | "-iec" => {}
            other => return Err(format!("Option \"{other}\" is unknown, try \"tc -help\".")),
        }
    }
    let rest: Vec<&str> = it.collect();
    match rest.split_first() {
        Some((&"qdisc", r)) => parse_qdisc(r, opts),
        Some((&"class", r)) => match r.split_first() {
            Some((&c, rest)) if !matches_show(c) => super::tc_class::parse_modify(c, rest),
            _ => parse_show(Object::Class, r, opts),
        },
        Some((&"filter", r)) => match r.split_first() {
            Some((&c, rest)) => super::tc_filter::parse(c, rest, opts.json),
            None => super::tc_filter::parse("show", &[], opts.json),
        },
        Some((other, _)) => Err(format!("Object \"{other}\" is unknown, try \"tc help\".")),
        None => Err("Usage: tc [ OPTIONS ] OBJECT { COMMAND | help }".into()),
    }
}

/// `tc qdisc ...`.
fn parse_qdisc(r: &[&str], opts: ShowOpts) -> Result<TcCommand, String> {
    let Some((&cmd, rest)) = r.split_first() else {
        return parse_show(Object::Qdisc, &[], opts);
    };
    let op = match cmd {
        "add" => QdiscOp::Add,
        "replace" => QdiscOp::Replace,
        "change" => QdiscOp::Change,
        "del" | "delete" => {
            return parse_modify(rest).map(|m| TcCommand::Delete {
                dev: m.dev,
                parent: m.parent,
                handle: m.handle,
            })
        }
        c if matches_show(c) => return parse_show(Object::Qdisc, rest, opts),
        other => {
            return Err(format!(
                "Command \"{other}\" is unknown, try \"tc qdisc help\"."
            ))
        }
    };
    let m = parse_modify(rest)?;
    if m.words.is_empty() {
        return Err("Unknown qdisc \"\", hence option \"\" is unparsable".into());
    }
    let spec = QdiscSpec::parse(&m.words).map_err(|e| e.to_string())?;
    Ok(TcCommand::Modify {
        op,
        dev: m.dev,
        parent: m.parent,
        handle: m.handle,
        spec,
        est: m.est,
    })
}

/// `show`, `list`, `ls` and their prefixes.
fn matches_show(c: &str) -> bool {
    ["show", "list", "lst"].iter().any(|k| k.starts_with(c)) || c == "ls"
}

/// The words of `tc_qdisc_modify`.
struct ModifyWords<'a> {
    dev: String,
    parent: u32,
    handle: Option<u32>,
    est: Option<EstimatorSpec>,
    words: Vec<&'a str>,
}

/// The words of `tc_qdisc_modify`: `dev D`, `root` or `parent X:Y`,
/// `handle H:`, then the kind and its options.
fn parse_modify<'a>(r: &[&'a str]) -> Result<ModifyWords<'a>, String> {
    const INCOMPLETE: &str = "Command line is not complete. Try option \"help\"";
    let (mut dev, mut handle, mut parent, mut est) = (None, None, 0, None);
    let mut it = r.iter().copied();
    let mut words = Vec::new();
    while let Some(w) = it.next() {
        match w {
            "dev" => dev = Some(it.next().ok_or(INCOMPLETE)?),
            "root" | "parent" if parent != 0 => {
                return Err(format!("Error: \"{w}\" is duplicate parent ID"))
            }
            "root" => parent = ROOT,
            "parent" => {
                let v = it.next().ok_or(INCOMPLETE)?;
                parent = super::tc_class::parse_classid(v)
                    .ok_or(format!("Invalid parent ID \"{v}\""))?;
            }
            "handle" => {
                let h = it.next().ok_or(INCOMPLETE)?;
                handle = Some(parse_handle(h).ok_or(format!("Invalid handle \"{h}\""))?);
            }
            "estimator" => {
                est = Some(EstimatorSpec::parse(it.next(), it.next()).map_err(|e| e.to_string())?);
            }
            kind => {
                words = std::iter::once(kind).chain(it).collect();
                break;
            }
        }
    }
    let dev = dev.ok_or("Cannot find device \"\"")?.to_owned();
    Ok(ModifyWords {
        dev,
        parent,
        handle,
        est,
        words,
    })
}

/// `TC_H_ROOT`.
const ROOT: u32 = ipxmit::sched::class::TC_H_ROOT;

/// tc's `get_qdisc_handle()`: `MAJ:` (hex), the major up to `ffff`.
fn parse_handle(h: &str) -> Option<u32> {
    let major = h.strip_suffix(':').unwrap_or(h);
    if h == "none" {
        return Some(0xffff_0000);
    }
    let v = u32::from_str_radix(major, 16).ok()?;
    (v <= 0xffff && h.ends_with(':')).then_some(v << 16)
}

/// `... show [dev D]`.
fn parse_show(object: Object, r: &[&str], opts: ShowOpts) -> Result<TcCommand, String> {
    let mut it = r.iter().copied();
    let (mut dev, mut classid) = (None, None);
    while let Some(w) = it.next() {
        match w {
            "dev" => {
                dev = Some(
                    it.next()
                        .ok_or("Command line is not complete. Try option \"help\"")?
                        .to_owned(),
                )
            }
            "classid" | "parent" if object == Object::Class => {
                let v = it
                    .next()
                    .ok_or("Command line is not complete. Try option \"help\"")?;
                let id =
                    super::tc_class::parse_classid(v).ok_or(format!("Invalid class ID \"{v}\""))?;
                if w == "classid" {
                    classid = Some(id);
                }
            }
            w if matches_show(w) => {}
            "root" | "invisible" | "ingress" => {}
            other => {
                return Err(format!(
                    "What is \"{other}\"? Try \"tc {} help\"",
                    object.name()
                ))
            }
        }
    }
    Ok(TcCommand::Show {
        object,
        dev,
        opts,
        classid,
    })
}

impl Object {
    fn name(self) -> &'static str {
        match self {
            Object::Qdisc => "qdisc",
            Object::Class => "class",
        }
    }
}

/// What a refused `tc` line says, as tc prints it.
pub fn refusal(e: &TcError) -> String {
    match e {
        TcError::NoDevice(_) | TcError::Spec(_) | TcError::Class(_) | TcError::Filter(_) => {
            e.to_string()
        }
        other => format!("Error: {other}."),
    }
}

/// The handle of the qdisc a `tc qdisc` line without `handle` made or
/// changed: the root's, or the one on class `parent`.
fn modified_handle(stack: &Stack, dev: &str, parent: u32) -> Option<u32> {
    let d = stack.device(dev).ok()?;
    if parent == ROOT {
        return Some(d.root_qdisc().0);
    }
    stack.leaf_handle(dev, parent)
}

/// Kernel: the `TCA_RATE` part of a qdisc's or class's creation or change:
/// an `estimator` given is (re)started; a new one without it has none; a
/// change without it keeps what there was.
fn set_estimator(
    stack: &Stack,
    dev: &str,
    op: QdiscOp,
    target: Option<EstTarget>,
    est: Option<EstimatorSpec>,
) -> Result<Option<String>, String> {
    let Some(target) = target else {
        return Ok(None);
    };
    if est.is_some() || op == QdiscOp::Add {
        stack
            .set_estimator(dev, target, est)
            .map_err(|e| refusal(&e))?;
    }
    Ok(None)
}

/// Carries out a `tc` line; `show` returns what tc prints.
pub fn run(stack: &Stack, cmd: &TcCommand) -> Result<Option<String>, String> {
    let done = |r: Result<(), TcError>| r.map(|()| None).map_err(|e| refusal(&e));
    match cmd {
        TcCommand::Modify {
            op,
            dev,
            parent,
            handle,
            spec,
            est,
        } => {
            done(stack.qdisc_modify_at(dev, *parent, *op, *handle, spec))?;
            let h = handle.or_else(|| modified_handle(stack, dev, *parent));
            set_estimator(stack, dev, *op, h.map(EstTarget::Qdisc), *est)
        }
        TcCommand::Delete {
            dev,
            parent,
            handle,
        } => done(stack.qdisc_delete_at(dev, *parent, *handle)),
        TcCommand::ClassModify { dev, req, est } => {
            if let Some(w) = stack.class_modify(dev, req).map_err(|e| refusal(&e))? {
                eprintln!("{w}");
            }
            let clid = match req.classid & 0xffff_0000 {
                0 => (req.parent & 0xffff_0000) | req.classid,
                _ => req.classid,
            };
            let op = match req.op {
                ipxmit::sched::ClassOp::Add => QdiscOp::Add,
                ipxmit::sched::ClassOp::Replace => QdiscOp::Replace,
                ipxmit::sched::ClassOp::Change => QdiscOp::Change,
            };
            set_estimator(stack, dev, op, Some(EstTarget::Class(clid)), *est)
        }
        TcCommand::ClassDelete {
            dev,
            parent,
            classid,
        } => done(stack.class_delete(dev, *parent, *classid)),
        TcCommand::FilterAdd { dev, parent, spec } => done(stack.filter_add(dev, *parent, spec)),
        TcCommand::FilterDel {
            dev,
            parent,
            pref,
            handle,
        } => done(stack.filter_delete(dev, *parent, *pref, *handle)),
        TcCommand::FilterShow {
            dev,
            parent,
            pref,
            json,
        } => {
            let d = dev.as_deref().map(|d| named_device(stack, d)).transpose()?;
            let out = super::tc_filter::show(d.as_deref(), *parent, *pref, *json);
            Ok(Some(out))
        }
        TcCommand::Show {
            object,
            dev,
            opts,
            classid,
        } => Ok(Some(show(stack, *object, dev.as_deref(), *opts, *classid)?)),
    }
}

/// A device a line names, or tc's message.
fn named_device(stack: &Stack, d: &str) -> Result<std::sync::Arc<NetDevice>, String> {
    stack
        .device(d)
        .map_err(|_| format!("Cannot find device \"{d}\""))
}

/// `tc [-s] [-d] [-j] qdisc|class show [dev D] [classid C]`.
fn show(
    stack: &Stack,
    object: Object,
    dev: Option<&str>,
    opts: ShowOpts,
    classid: Option<u32>,
) -> Result<String, String> {
    let devs = match dev {
        Some(d) => vec![named_device(stack, d)?],
        None => stack.devices(),
    };
    let named = dev.is_none();
    Ok(match object {
        Object::Qdisc => qdisc_show(&devs, named, opts, stack.now(), Some(stack)),
        Object::Class => super::tc_class::class_show(
            &devs,
            super::tc_class::ShowClass {
                named,
                stats: opts.stats,
                details: opts.details,
                only: classid,
                rates: &[],
            },
            Some(stack),
        ),
    })
}

/// `tc [-s] [-d] [-j] qdisc show`: each device's root (on a multi-queue
/// device, `mq` and a qdisc per queue); `named` adds `dev D`.
pub fn qdisc_show(
    devs: &[std::sync::Arc<NetDevice>],
    named: bool,
    opts: ShowOpts,
    now: Instant,
    stack: Option<&Stack>,
) -> String {
    // Read before any qdisc is locked (reading takes the due samples).
    let rates = |d: &NetDevice| stack.map(|s| s.rate_estimates(d)).unwrap_or_default();
    if opts.json {
        let all: Vec<Value> = devs
            .iter()
            .flat_map(|d| qdisc_json(d, named, opts, &rates(d)))
            .collect();
        return format!("{}\n", Value::Array(all));
    }
    let mut o = String::new();
    for d in devs {
        qdisc_text(&mut o, d, named, opts, now, &rates(d));
    }
    o
}

/// A device's rate estimates: each target's bytes and packets per second.
pub type Rates = [(EstTarget, (u64, u64))];

/// The estimate of `target` among `rates`.
pub fn rate_of(rates: &Rates, target: EstTarget) -> Option<(u64, u64)> {
    rates.iter().find(|(t, _)| *t == target).map(|(_, r)| *r)
}

/// The two statistics lines of `tc -s`, with the rate estimate (`rate
/// 824bit 1pps `) before the backlog when there is one.
pub fn stats_text(s: &ipxmit::sched::QdiscStats, rate: Option<(u64, u64)>) -> String {
    let t = s.to_string();
    match rate {
        None => t,
        Some((bps, pps)) => {
            let r = ipxmit::units::format_rate(bps.saturating_mul(8));
            t.replacen("\n backlog", &format!("\n rate {r} {pps}pps backlog"), 1)
        }
    }
}

/// A class id as tc prints it: `1:2`, `:2` under a handle of `0:`.
fn classid(handle: u32, minor: usize) -> String {
    match handle >> 16 {
        0 => format!(":{minor:x}"),
        major => format!("{major:x}:{minor:x}"),
    }
}

/// The text lines of one device's qdiscs: the root, then the others in
/// the order of the kernel's qdisc hash table ([`hash_order`]): under an
/// `mq` root each queue's qdisc and what is grafted in its tree (a root of
/// another kind on a multi-queue device is one qdisc, which every queue
/// shares).
fn qdisc_text(
    o: &mut String,
    d: &NetDevice,
    named: bool,
    opts: ShowOpts,
    now: Instant,
    rates: &Rates,
) {
    let devpart = if named {
        format!("dev {} ", d.name())
    } else {
        String::new()
    };
    let mq = d.mq_root();
    if let Some(h) = mq {
        let _ = writeln!(o, "qdisc mq {} {devpart}root ", Handle(h));
        if opts.stats {
            let rate = rate_of(rates, EstTarget::Qdisc(h));
            let _ = writeln!(o, "{}", stats_text(&summed(d), rate));
        }
    }
    let n = d.queues().len();
    let mut others: Vec<(u32, String)> = Vec::new();
    for (i, q) in d.trees().iter().enumerate() {
        let handle = q.qdisc_handle();
        q.with_qdisc(|qd| {
            let place = match mq {
                Some(h) => format!("parent {}", classid(h, i + 1)),
                None => format!("root refcnt {}", if n > 1 { n + 1 } else { 2 }),
            };
            let mut t = String::new();
            qdisc_lines(
                &mut t,
                qd,
                &QdiscLine {
                    handle,
                    place,
                    rate: rate_of(rates, EstTarget::Qdisc(handle)),
                },
                &devpart,
                opts,
                now,
            );
            match mq {
                Some(_) => others.push((handle, t)),
                None => o.push_str(&t),
            }
            for (parent, h, c) in tree_walk(qd) {
                let place = format!("parent {}", Handle(parent));
                let mut t = String::new();
                qdisc_lines(
                    &mut t,
                    c,
                    &QdiscLine {
                        handle: h,
                        place,
                        rate: rate_of(rates, EstTarget::Qdisc(h)),
                    },
                    &devpart,
                    opts,
                    now,
                );
                others.push((h, t));
            }
        });
    }
    hash_order(&mut others);
    others.iter().for_each(|(_, t)| o.push_str(t));
}

/// Where a qdisc sits, for its `tc qdisc show` line.
struct QdiscLine {
    handle: u32,
    /// `root refcnt N` or `parent X:Y`.
    place: String,
    /// Its rate estimate, if it has an estimator.
    rate: Option<(u64, u64)>,
}

/// One qdisc's line, and with `-s` its counters and xstats.
fn qdisc_lines(
    o: &mut String,
    q: &dyn ipxmit::sched::Qdisc,
    at: &QdiscLine,
    devpart: &str,
    opts: ShowOpts,
    now: Instant,
) {
    let mut params = if opts.details {
        q.params_details()
    } else {
        q.params()
    };
    if opts.stats {
        params += &q.params_stats();
    }
    let sep = if params.is_empty() { "" } else { " " };
    let (kind, h, place) = (q.kind(), Handle(at.handle), &at.place);
    let _ = writeln!(o, "qdisc {kind} {h} {devpart}{place}{sep}{params}");
    if opts.stats {
        let _ = writeln!(o, "{}", stats_text(q.stats(), at.rate));
        if let Some(x) = q.xstats(now) {
            let _ = writeln!(o, "{x}");
        }
    }
}

/// The counters of all of `d`'s queues added up.
fn summed(d: &NetDevice) -> ipxmit::sched::QdiscStats {
    let mut t = ipxmit::sched::QdiscStats::default();
    for q in d.queues() {
        let s = q.with_qdisc(|qd| *qd.stats());
        t.bytes += s.bytes;
        t.packets += s.packets;
        t.drops += s.drops;
        t.overlimits += s.overlimits;
        t.requeues += s.requeues;
        t.backlog += s.backlog;
        t.qlen += s.qlen;
    }
    t
}

/// The JSON objects of one device's qdiscs (as [`qdisc_text`] lists them).
fn qdisc_json(d: &NetDevice, named: bool, opts: ShowOpts, rates: &Rates) -> Vec<Value> {
    let n = d.queues().len();
    let mq = d.mq_root();
    let dev = named.then(|| d.name());
    let mut all = Vec::new();
    if let Some(h) = mq {
        let mut v = json_head("mq", h, dev);
        v.insert("root".into(), json!(true));
        v.insert("options".into(), json!({}));
        if opts.stats {
            stats_json(&mut v, &summed(d), rate_of(rates, EstTarget::Qdisc(h)));
        }
        all.push(Value::Object(v));
    }
    let mut others: Vec<(u32, Value)> = Vec::new();
    for (i, q) in d.trees().iter().enumerate() {
        let handle = q.qdisc_handle();
        q.with_qdisc(|qd| {
            let mut v = json_head(qd.kind(), handle, dev);
            match mq {
                Some(h) => {
                    v.insert("parent".into(), json!(classid(h, i + 1)));
                }
                None => {
                    v.insert("root".into(), json!(true));
                    v.insert("refcnt".into(), json!(if n > 1 { n + 1 } else { 2 }));
                }
            }
            v.insert("options".into(), qdisc_options(qd));
            if opts.stats {
                stats_json(&mut v, qd.stats(), rate_of(rates, EstTarget::Qdisc(handle)));
            }
            match mq {
                Some(_) => others.push((handle, Value::Object(v))),
                None => all.push(Value::Object(v)),
            }
            for (parent, h, c) in tree_walk(qd) {
                let mut v = json_head(c.kind(), h, dev);
                v.insert("parent".into(), json!(Handle(parent).to_string()));
                v.insert("options".into(), qdisc_options(c));
                if opts.stats {
                    stats_json(&mut v, c.stats(), rate_of(rates, EstTarget::Qdisc(h)));
                }
                others.push((h, Value::Object(v)));
            }
        });
    }
    hash_order(&mut others);
    all.extend(others.into_iter().map(|x| x.1));
    all
}

/// `{"kind":..,"handle":..[,"dev":..]}`, the start of a qdisc's object.
fn json_head(kind: &str, handle: u32, dev: Option<&str>) -> Map<String, Value> {
    let mut v = Map::new();
    v.insert("kind".into(), json!(kind));
    v.insert("handle".into(), json!(Handle(handle).to_string()));
    if let Some(d) = dev {
        v.insert("dev".into(), json!(d));
    }
    v
}

/// Every qdisc grafted in the tree under `q` (class, handle, qdisc), in
/// the order the kernel lists a device's qdiscs: by bucket of its
/// `qdisc_hash` (`hash_32(handle, 4)`), the later grafted first within a
/// bucket (approximated by the deeper, then the later class first).
pub fn grafted(q: &dyn ipxmit::sched::Qdisc) -> Vec<(u32, u32, &dyn ipxmit::sched::Qdisc)> {
    let mut out: Vec<(u32, (u32, &dyn ipxmit::sched::Qdisc))> = tree_walk(q)
        .into_iter()
        .map(|(parent, h, c)| (h, (parent, c)))
        .collect();
    hash_order(&mut out);
    out.into_iter().map(|(h, (p, c))| (p, h, c)).collect()
}

/// Every qdisc grafted in the tree under `q` (class, handle, qdisc), in
/// the order they were grafted as far as the tree tells (depth first).
pub fn tree_walk(q: &dyn ipxmit::sched::Qdisc) -> Vec<(u32, u32, &dyn ipxmit::sched::Qdisc)> {
    fn walk<'a>(
        q: &'a dyn ipxmit::sched::Qdisc,
        out: &mut Vec<(u32, u32, &'a dyn ipxmit::sched::Qdisc)>,
    ) {
        for (parent, h, c) in q.children() {
            out.push((parent, h, c));
            walk(c, out);
        }
    }
    let mut out = Vec::new();
    walk(q, &mut out);
    out
}

/// Kernel: `tc_dump_qdisc_root()`'s walk of `dev->qdisc_hash` (16
/// buckets of `hash_32(handle, 4)`, each newest first): entries keyed by
/// handle, in creation order as far as known, put in that order.
pub fn hash_order<T>(v: &mut [(u32, T)]) {
    v.reverse();
    v.sort_by_key(|&(h, _)| h.wrapping_mul(0x61C8_8647) >> 28);
}

/// tc's statistics keys of `-s -j`.
fn stats_json(v: &mut Map<String, Value>, s: &ipxmit::sched::QdiscStats, rate: Option<(u64, u64)>) {
    for (k, x) in [
        ("bytes", s.bytes),
        ("packets", s.packets),
        ("drops", s.drops),
        ("overlimits", s.overlimits),
        ("requeues", s.requeues),
    ] {
        v.insert(k.into(), json!(x));
    }
    // tc prints the estimate (bytes per second) between the two groups.
    if let Some((bps, pps)) = rate {
        v.insert("rate".into(), json!(bps));
        v.insert("pps".into(), json!(pps));
    }
    v.insert("backlog".into(), json!(s.backlog));
    v.insert("qlen".into(), json!(s.qlen));
}

/// `"options"` as an object in tc's order.
/// A qdisc's `"options"`: its own JSON text when its options nest, else
/// built from [`ipxmit::sched::Qdisc::options`].
fn qdisc_options(q: &dyn ipxmit::sched::Qdisc) -> Value {
    q.options_json()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| options_json(q.options()))
}

fn options_json(opts: Vec<(&'static str, OptValue)>) -> Value {
    let m: Map<String, Value> = opts
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                OptValue::Num(n) => json!(n),
                OptValue::Str(s) => json!(s),
                OptValue::List(l) => json!(l),
                OptValue::Bool(b) => json!(b),
            };
            (k.to_owned(), v)
        })
        .collect();
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        split_shell(s).unwrap()
    }

    #[test]
    fn shell_words() {
        assert_eq!(
            w("tc qdisc add  dev eth0"),
            ["tc", "qdisc", "add", "dev", "eth0"]
        );
        assert_eq!(
            w("a 'b c' \"d \\\" e\" f\\ g # no"),
            ["a", "b c", "d \" e", "f g"]
        );
        assert_eq!(w("a''b \"\""), ["ab", ""]);
        assert!(split_shell("a 'b").is_err());
    }

    #[test]
    fn qdisc_lines_parse_as_tc() {
        let c = parse(&w(
            "qdisc add dev d1 handle 1: root tbf rate 1mbit burst 10k limit 10k",
        ))
        .unwrap();
        assert!(matches!(
            c,
            TcCommand::Modify {
                op: QdiscOp::Add,
                handle: Some(0x10000),
                ..
            }
        ));
        let c = parse(&w("-s -j qdisc show dev d1")).unwrap();
        assert_eq!(
            c,
            TcCommand::Show {
                object: Object::Qdisc,
                dev: Some("d1".into()),
                opts: ShowOpts {
                    stats: true,
                    details: false,
                    json: true
                },
                classid: None,
            }
        );
        assert_eq!(
            parse(&w("qdisc del dev d1 root handle 2:")).unwrap(),
            TcCommand::Delete {
                dev: "d1".into(),
                parent: ROOT,
                handle: Some(0x20000)
            }
        );
        assert_eq!(
            parse(&w("qdisc add dev d1 root tbf rate xyz burst 1k limit 1k")).unwrap_err(),
            "tbf: illegal value for \"rate\": \"xyz\""
        );
        assert_eq!(
            parse(&w("qdisc add dev d1 root handle 1ffff: pfifo")).unwrap_err(),
            "Invalid handle \"1ffff:\""
        );
    }
}
