//! `ipxmit run SCRIPT`: a whole host and a sequence of socket operations from a
//! script file (or `-` for standard input). The language is documented in
//! `docs/script.md`; [`parse`] reads lines, [`exec`] carries them out on a
//! [`exec::Host`], [`links`] builds devices.
//!
//! Exit status: 0 when the script ran to its end (a `send` that fails with an
//! errno is a result, not a failure); 1 when it ran to its end but a verifying
//! peer dropped a frame or a capture file could not be written; 2 when a line
//! is wrong (it is reported as `line L: <what is wrong>` on stderr and the
//! script stops there) or the script cannot be read.

pub mod conntrack;
pub mod exec;
pub mod explain;
pub mod ip;
pub mod iproute;
pub mod links;
pub mod nft;
pub mod nft_json;
pub mod nft_list;
pub mod nft_rule;
pub mod parse;
pub mod rx;
pub mod sockq;
pub mod sysctl;
pub mod tc;
pub mod tc_class;
pub mod tc_filter;

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::report;
use exec::{Event, ExecError, Host};

/// Options of `ipxmit run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The script file, or `-` for standard input.
    pub script: PathBuf,
    /// One JSON line per result, then one JSON object with every statistic.
    #[arg(long)]
    pub json: bool,
    /// Print every MIB counter and drop reason, not only the non-zero ones.
    #[arg(long)]
    pub all: bool,
    /// Do not print the statistics at the end.
    #[arg(long)]
    pub no_stats: bool,
    /// At the end, a dropwatch-like summary: each place packets were
    /// dropped, how many, the reason and the kernel function it mirrors.
    #[arg(long)]
    pub drops: bool,
    /// Run on the real clock (`sleep` waits for real) instead of the virtual
    /// one; for scripts with tap or packet links.
    #[arg(long)]
    pub realtime: bool,
    /// Draw each qdisc's and class's throughput and backlog over the clock
    /// into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Seed of the stack's random choices (IP ID hash key, socket ID
    /// starts). On the virtual clock the seed is 0 unless given, so a script
    /// gives the same frames every run; on the real clock they are random
    /// unless given.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

/// A line that could not be carried out.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {err}")]
pub struct ScriptError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub err: ExecError,
}

/// Runs `ipxmit run`.
pub fn run(a: RunArgs) -> Result<ExitCode> {
    let input: Box<dyn BufRead> = if a.script.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        let f = std::fs::File::open(&a.script)
            .with_context(|| format!("cannot read script {}", a.script.display()))?;
        Box::new(io::BufReader::new(f))
    };
    let mut out = io::stdout().lock();
    let mut host = Host::new(a.realtime);
    if let Some(seed) = a.seed.or((!a.realtime).then_some(0)) {
        host.stack().set_seed(seed);
    }
    if a.plot.is_some() {
        host.enable_plot();
    }
    let r = run_lines(input, &mut host, &a, &mut out);
    let flushed = host.flush_captures();
    if let Some(p) = &a.plot {
        host.write_plot(p)
            .with_context(|| format!("cannot write the plot {}", p.display()))?;
    }
    if let Err(e) = r? {
        out.flush()?;
        let _ = writeln!(io::stderr(), "{e}");
        return Ok(ExitCode::from(2));
    }
    if let Err(e) = flushed {
        let _ = writeln!(io::stderr(), "ipxmit: {e}");
        return Ok(ExitCode::from(1));
    }
    let ok = host_ok(&host);
    if !a.no_stats {
        print_stats(&host, &a, &mut out)?;
    }
    if a.drops {
        print_drops(host.stack(), a.json, &mut out)?;
    }
    out.flush()?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Reads, parses and carries out lines until the end or the first wrong line.
/// The outer error is an I/O error of our output (or reading the script).
fn run_lines(
    input: Box<dyn BufRead>,
    host: &mut Host,
    a: &RunArgs,
    out: &mut impl Write,
) -> Result<Result<(), ScriptError>> {
    for (i, line) in input.lines().enumerate() {
        let line_no = i + 1;
        let text = line.with_context(|| format!("cannot read line {line_no} of the script"))?;
        let r = parse::parse_line(&text)
            .map_err(ExecError::from)
            .and_then(|c| c.map_or(Ok(Vec::new()), |c| host.exec(&c)));
        match r {
            Ok(events) => {
                for e in &events {
                    write_event(out, a.json, line_no, e)?;
                }
            }
            Err(err) => {
                return Ok(Err(ScriptError { line: line_no, err }));
            }
        }
    }
    for e in &host.close_all() {
        write_end_event(out, a.json, e)?;
    }
    Ok(Ok(()))
}

/// True when no peer dropped a frame and every capture wrote every frame.
fn host_ok(h: &Host) -> bool {
    let peers_ok = h
        .links()
        .iter()
        .all(|l| l.peer().is_none_or(|(_, _, s)| s.drops_total() == 0));
    peers_ok && h.captures().iter().all(|(_, t)| t.errors() == 0)
}

/// One result, as a JSON line or a text line.
pub fn write_event(out: &mut impl Write, json: bool, line: usize, e: &Event) -> io::Result<()> {
    if json {
        return writeln!(out, "{}", event_json(line, e));
    }
    match e {
        Event::Send { sock, result } => match result {
            Ok(n) => writeln!(out, "line {line}: send {sock} = {n}"),
            Err(err) => writeln!(out, "line {line}: send {sock} = -1 {err}"),
        },
        Event::Errqueue { sock, entries } => {
            let list: Vec<String> = entries
                .iter()
                .map(errq_text)
                .collect();
            let shown = if list.is_empty() {
                "empty".to_string()
            } else {
                list.join("; ")
            };
            writeln!(out, "line {line}: errqueue {sock} = {shown}")
        }
        Event::SockCall {
            op,
            sock,
            what,
            err,
        } => {
            let what = what.map(|w| format!(" {w}")).unwrap_or_default();
            writeln!(out, "line {line}: {op} {sock}{what} = -1 {err}")
        }
        Event::Discarded { sock, bytes, to } => {
            writeln!(out, "line {line}: close {sock} = {}", discarded(*bytes, to))
        }
        Event::Output { text, .. } => write!(out, "{text}"),
        Event::Getsockopt { sock, opt, result } => match result {
            Ok(v) => writeln!(out, "line {line}: getsockopt {sock} {} = {v}", opt.name()),
            Err(e) => writeln!(out, "line {line}: getsockopt {sock} {} = -1 {e}", opt.name()),
        },
        Event::Sendmmsg { sock, result } => write!(out, "{}", result.text(line, sock)),
        Event::Explain { sock, result } => write!(out, "{}", explain::text(line, sock, result)),
        Event::Recv { sock, result } => match result {
            Ok(d) => writeln!(out, "line {line}: recv {sock} = {} from {}", d.data.len(), d.from),
            Err(ipxmit::SendError::Again) => writeln!(
                out,
                "line {line}: recv {sock} = -1 EAGAIN: resource temporarily unavailable (no datagram waiting)"
            ),
            Err(err) => writeln!(out, "line {line}: recv {sock} = -1 {err}"),
        },
    }
}

/// An error-queue entry as a text line shows it; one from an ICMP message
/// adds its type, code and sender (`SO_EE_OFFENDER`).
fn errq_text(x: &ipxmit::socket::ErrQueueEntry) -> String {
    let mut t = format!("{} origin {}", x.errno, x.origin.name());
    if x.origin == ipxmit::socket::ErrOrigin::Icmp {
        t += &format!(" type {} code {}", x.ee_type, x.ee_code);
    }
    t += &format!(" info {}", x.info);
    if x.origin == ipxmit::socket::ErrOrigin::Icmp {
        t += &format!(" from {}", x.offender);
    }
    t
}

/// An error-queue entry as a JSON result shows it (`ee_type`, `ee_code`
/// and `offender` for one from an ICMP message).
fn errq_json(x: &ipxmit::socket::ErrQueueEntry) -> Value {
    let mut v =
        json!({"ee_errno": x.errno.name(), "ee_origin": x.origin.name(), "ee_info": x.info});
    if x.origin == ipxmit::socket::ErrOrigin::Icmp {
        v["ee_type"] = json!(x.ee_type);
        v["ee_code"] = json!(x.ee_code);
        v["offender"] = json!(x.offender.to_string());
    }
    v
}

/// What a close says of a pending datagram it discarded.
fn discarded(bytes: usize, to: &std::net::SocketAddrV4) -> String {
    format!("discarded {bytes} bytes pending (corked) for {to}, never sent")
}

/// A result of the end of the script ([`Host::close_all`]): as a line of
/// [`write_event`] but `end:` for the line number, in JSON `"at": "end"`
/// and no `line`.
pub fn write_end_event(out: &mut impl Write, json: bool, e: &Event) -> io::Result<()> {
    if json {
        let mut v: serde_json::Map<String, Value> = match event_json(0, e) {
            Value::Object(o) => o.into_iter().filter(|(k, _)| k != "line").collect(),
            _ => serde_json::Map::new(),
        };
        v.insert("at".into(), json!("end"));
        return writeln!(out, "{}", Value::Object(v));
    }
    match e {
        Event::Discarded { sock, bytes, to } => {
            writeln!(out, "end: close {sock} = {}", discarded(*bytes, to))
        }
        other => write_event(out, false, 0, other),
    }
}

/// The JSON line of one result.
pub fn event_json(line: usize, e: &Event) -> Value {
    match e {
        Event::Send { sock, result } => match result {
            Ok(n) => json!({"line": line, "op": "send", "socket": sock, "ret": n}),
            Err(err) => {
                json!({"line": line, "op": "send", "socket": sock, "errno": err.errno().name()})
            }
        },
        Event::Errqueue { sock, entries } => {
            let list: Vec<Value> = entries.iter().map(errq_json).collect();
            json!({"line": line, "op": "errqueue", "socket": sock, "entries": list})
        }
        Event::SockCall {
            op,
            sock,
            what,
            err,
        } => {
            let mut v = json!({"line": line, "op": op, "socket": sock});
            if let Some(w) = what {
                v["option"] = json!(w);
            }
            v["errno"] = json!(err.errno().name());
            v
        }
        Event::Discarded { sock, bytes, to } => json!({
            "line": line, "op": "close", "socket": sock, "discarded": bytes,
            "to": to.to_string()
        }),
        Event::Output { op, text } => json!({"line": line, "op": op, "out": text}),
        Event::Getsockopt { sock, opt, result } => {
            let mut v =
                json!({"line": line, "op": "getsockopt", "socket": sock, "option": opt.name()});
            match result {
                Ok(x) => v["value"] = json!(x),
                Err(e) => v["errno"] = json!(e.errno().name()),
            }
            v
        }
        Event::Sendmmsg { sock, result } => result.json(line, sock),
        Event::Explain { sock, result } => explain::json(line, sock, result),
        Event::Recv { sock, result } => match result {
            Ok(d) => json!({"line": line, "op": "recv", "socket": sock, "ret": d.data.len(),
                "from": d.from.to_string()}),
            Err(err) => {
                json!({"line": line, "op": "recv", "socket": sock, "errno": err.errno().name()})
            }
        },
    }
}

/// The statistics: `ip -s link` for every device, `tc -s qdisc`, `nstat`,
/// each as its Linux tool prints it and after a blank line; then, after
/// another blank line, ipxmit's own blocks (drop reasons, `send_batch`
/// paths, the peers), each headed `ipxmit ...`. Or one JSON object with
/// all of them ([`stats_json`]).
fn print_stats(h: &Host, a: &RunArgs, out: &mut impl Write) -> io::Result<()> {
    let st = h.stack();
    if a.json {
        return writeln!(out, "{}", stats_json(h, a.all));
    }
    let devs = st.devices();
    for d in &devs {
        writeln!(out)?;
        write!(out, "{}", report::ip_link(d))?;
    }
    if !devs.is_empty() {
        writeln!(out)?;
        write!(out, "{}", report::tc_qdisc_all(&devs, st.now()))?;
    }
    writeln!(out)?;
    write!(out, "{}", report::nstat(st, a.all))?;
    let peers = h.links().iter().filter_map(|l| {
        l.peer()
            .map(|(addr, mac, s)| report::peer_line(l.dev.name(), addr, mac, &s))
    });
    let own = report::ipxmit_counters(st, a.all) + &peers.collect::<String>();
    if !own.is_empty() {
        writeln!(out)?;
        write!(out, "{own}")?;
    }
    Ok(())
}

/// The dropwatch-like summary (`--drops`): text, or one JSON line
/// `{"op": "drops", "drops": [...]}`.
fn print_drops(st: &ipxmit::Stack, json: bool, out: &mut impl Write) -> io::Result<()> {
    if json {
        let v = json!({"op": "drops", "drops": report::drop_summary_json(st)});
        return writeln!(out, "{v}");
    }
    writeln!(out)?;
    write!(out, "{}", report::drop_summary(st))
}

/// Every statistic as one JSON object, the shape `send --json` ends with
/// too ([`report::stats_json`]): `{"op": "stats", "links": [ip -j -s link
/// objects], "qdiscs": [tc -j -s qdisc objects], "nstat": {"kernel": {...}},
/// "ipxmit": {"drop_reasons", "send_batch", "links": [{"ifname", "kind",
/// "wire", "peer"}]}, "ok": bool}`; `all` keeps zero MIB counters.
pub fn stats_json(h: &Host, all: bool) -> Value {
    let st = h.stack();
    let devs = st.devices();
    let own: Vec<Value> = h
        .links()
        .iter()
        .map(|l| {
            json!({
                "ifname": l.dev.name(),
                "kind": l.kind.name(),
                "wire": l.wire_counts().map(|(f, b)| json!({"frames": f, "bytes": b})),
                "peer": l.peer().map(|(a, m, s)| report::peer_json(a, m, &s)),
            })
        })
        .collect();
    let mut v = serde_json::Map::new();
    v.insert("op".into(), json!("stats"));
    v.extend(report::stats_json(&devs, st, all));
    v["ipxmit"]["links"] = Value::Array(own);
    v.insert("ok".into(), json!(host_ok(h)));
    Value::Object(v)
}
