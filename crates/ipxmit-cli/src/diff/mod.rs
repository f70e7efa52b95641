//! `ipxmit diff SCRIPT`: a script carried out by this machine's kernel
//! (in throwaway network namespaces, [`kernel`]) and by ipxmit (on its
//! virtual clock), and the first differences printed: what each line
//! returned (a tool's output or refusal, a socket call's value or errno),
//! the frames each put on each link ([`frames`]: IP ID by its rules,
//! checksums by whether they are right, ephemeral ports masked), and the
//! deltas of the MIB counters. The machinery of the kernel-differential
//! tests (`tests/route_kernel.rs`), made a command a user can point at a
//! script of their own.
//!
//! Compared: `link add NAME type mem [peer A] [peerlladdr M] [lladdr M]
//! [mtu N]` (a veth to a namespace of its own in the kernel), `ip`/`tc`/`nft`/`sysctl` lines and
//! their unprefixed aliases, `socket`, `bind`, `connect`, `sockopt` (the
//! options with a `setsockopt` of their own), `send`, `sendmmsg`,
//! `getsockopt`, `recv`, `close`. Carried out on both sides but not
//! compared: `sleep` (real time in the kernel), `capture`, `errqueue`,
//! `explain`, `inject`, `send ... txtime`. Other link types have no
//! kernel counterpart here: the script is refused.

pub mod frames;
pub mod kernel;
pub mod sys;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use ipxmit::SendError;

use crate::script::exec::{Event, Host};
use crate::script::parse::{self, Command, LinkKind};
use kernel::{Answer, Kernel};

/// Options of `ipxmit diff`.
#[derive(clap::Args, Debug, Clone)]
pub struct DiffArgs {
    /// The script to run through both.
    pub script: PathBuf,
    /// How many differences to print (of each kind).
    #[arg(long, default_value_t = 10)]
    pub max: usize,
    /// With each differing frame, both frames in hex.
    #[arg(long)]
    pub hex: bool,
}

/// The MIB counters compared at the end.
const COUNTERS: &[&str] = &[
    "IcmpOutMsgs",
    "IcmpInMsgs",
    "IcmpOutDestUnreachs",
    "IcmpInDestUnreachs",
    // Not IcmpOutRateLimitGlobal: each error takes 0-2 credits at random.
    "IcmpOutRateLimitHost",
    "IpOutRequests",
    "IpOutNoRoutes",
    "IpOutDiscards",
    "IpFragOKs",
    "IpFragFails",
    "IpFragCreates",
    "UdpOutDatagrams",
    "UdpSndbufErrors",
    "UdpNoPorts",
    "IpInReceives",
    "IpInDelivers",
    "UdpInDatagrams",
    "UdpIgnoredMulti",
    "IpExtInMcastPkts",
    "IpExtOutMcastPkts",
    "IpExtInBcastPkts",
    "IpExtOutBcastPkts",
    "IpExtOutOctets",
];

/// What ipxmit did with a line, in the kernel's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Mine {
    /// Refused with this message.
    Refused(String),
    /// A query's output.
    Out(String),
    /// A call's value or errno name.
    Call(Result<i64, String>),
    /// Done, nothing returned.
    Done,
}

/// The differences found.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
    frames: Vec<String>,
    counters: Vec<String>,
    not_compared: Vec<usize>,
    compared: usize,
}

/// Runs `ipxmit diff`: exit 0 when nothing differs, 1 when something
/// does, 2 when the script cannot be compared (not root, a wrong line, a
/// link without a kernel counterpart).
pub fn run(a: DiffArgs) -> Result<ExitCode> {
    if let Some(why) = ipxmit_drivers::netns::unavailable() {
        eprintln!("ipxmit diff: needs root and network namespaces: {why}");
        return Ok(ExitCode::from(2));
    }
    let text = std::fs::read_to_string(&a.script)
        .with_context(|| format!("cannot read script {}", a.script.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let dir = std::env::temp_dir().join(format!("ipxmit-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let r = compare_run(&lines, &dir, a.hex);
    let _ = std::fs::remove_dir_all(&dir);
    let rep = match r {
        Ok(rep) => rep,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    print!("{}", report_text(&rep, a.max));
    let same = rep.lines.is_empty() && rep.frames.is_empty() && rep.counters.is_empty();
    Ok(if same {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Both sides, line by line, then the frames and the counters.
fn compare_run(lines: &[&str], dir: &std::path::Path, hex: bool) -> Result<Report, String> {
    let mut k = Kernel::new()?;
    let mut host = Host::new(false);
    host.stack().set_seed(0);
    let before = k.snmp();
    let mut rep = Report::default();
    let mut links: Vec<String> = Vec::new();
    for (i, text) in lines.iter().enumerate() {
        let n = i + 1;
        let cmd = match parse::parse_line(text) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                // A tool's line ipxmit refuses as it reads it: the kernel's
                // tool may take it.
                let t = tool_line(&k, text).ok_or_else(|| format!("line {n}: {e}"))?;
                rep.compared += 1;
                if let Some(d) = line_difference(&t, &Mine::Refused(e.to_string())) {
                    rep.lines.push(format!("line {n}: {text}\n{d}"));
                }
                continue;
            }
        };
        let theirs =
            kernel_line(&mut k, &cmd, text, links.len()).map_err(|e| format!("line {n}: {e}"))?;
        let mine = ipxmit_line(&mut host, &cmd);
        if let (Command::LinkAdd(spec), Mine::Done) = (&cmd, &mine) {
            let cap = format!(
                "capture dev {} file {}/{}.pcap",
                spec.name,
                dir.display(),
                spec.name
            );
            let c = parse::parse_line(&cap)
                .ok()
                .flatten()
                .ok_or("capture line")?;
            host.exec(&c).map_err(|e| format!("line {n}: {e}"))?;
            links.push(spec.name.clone());
        }
        match theirs {
            Some(t) => {
                rep.compared += 1;
                if let Some(d) = line_difference(&t, &mine) {
                    rep.lines.push(format!("line {n}: {text}\n{d}"));
                }
            }
            None => rep.not_compared.push(n),
        }
    }
    k.settle();
    host.flush_captures().map_err(|e| e.to_string())?;
    for l in &links {
        compare_frames(&k, l, (dir, hex), &mut rep);
    }
    compare_counters(&before, &k.snmp(), &host, &mut rep);
    Ok(rep)
}

/// The kernel's side of a line: `Some(answer)` to compare, `None` for a
/// line carried out but not compared.
fn kernel_line(
    k: &mut Kernel,
    cmd: &Command,
    text: &str,
    nlinks: usize,
) -> Result<Option<Answer>, String> {
    let a = match cmd {
        Command::LinkAdd(spec) => {
            if spec.kind != LinkKind::Mem {
                return Err(format!(
                    "diff cannot compare a link of type {}: only mem links have a kernel counterpart (a veth)",
                    spec.kind.name()
                ));
            }
            let mac = spec
                .lladdr
                .unwrap_or(crate::script::links::default_lladdr(nlinks));
            let peer = spec
                .peer_lladdr
                .unwrap_or(crate::script::links::PEER_LLADDR);
            k.add_link(nlinks, spec, mac.to_string(), peer.to_string())
        }
        Command::Socket {
            name,
            kind,
            bind,
            connect,
        } => {
            let mut r = k.socket(name, *kind);
            for (addr, c) in [(bind, false), (connect, true)] {
                if let (Answer::Done, Some(x)) = (&r, addr) {
                    r = k.bind_connect(name, *x, c);
                }
            }
            r
        }
        Command::Bind { sock, addr } => k.bind_connect(sock, *addr, false),
        Command::Connect { sock, addr } => k.bind_connect(sock, *addr, true),
        Command::Sockopt { sock, opt } => return Ok(k.sockopt(sock, opt)),
        Command::Send(s) if s.txtime.is_none() => k.send(&s.sock, s.to, s.len, s.flags),
        Command::Getsockopt { sock, opt } => k.getsockopt(sock, opt.name()),
        Command::Sendmmsg {
            sock, msgs, flags, ..
        } => {
            let m: Vec<_> = msgs.iter().map(|m| (m.to, m.len)).collect();
            k.sendmmsg(sock, &m, *flags)
        }
        Command::Recv { sock } => k.recv(sock),
        Command::Sleep(d) => {
            // The kernel's timers run on the real clock: the sleep is real.
            std::thread::sleep(*d);
            return Ok(None);
        }
        Command::Close { sock } => k.close(sock),
        _ => return Ok(tool_line(k, text)),
    };
    Ok(Some(a))
}

/// A tool's line in the kernel (`ip`, `tc`, `nft`, `sysctl`; `link`,
/// `addr`, `neigh`, `route`, `rule` as `ip`'s); `None` for the others.
fn tool_line(k: &Kernel, text: &str) -> Option<Answer> {
    let mut w = crate::script::tc::split_shell(text).ok()?;
    match w.first()?.as_str() {
        "ip" | "tc" | "nft" | "sysctl" => {}
        "link" | "addr" | "neigh" | "route" | "rule" => w.insert(0, "ip".into()),
        _ => return None,
    }
    Some(k.tool(&w))
}

/// ipxmit's side of a line.
fn ipxmit_line(host: &mut Host, cmd: &Command) -> Mine {
    let events = match host.exec(cmd) {
        Ok(ev) => ev,
        Err(e) => return Mine::Refused(e.to_string()),
    };
    let call = |r: &Result<usize, SendError>| {
        Mine::Call(
            r.as_ref()
                .map(|n| *n as i64)
                .map_err(|e| e.errno().name().to_string()),
        )
    };
    match events.first() {
        Some(Event::Output { text, .. }) => Mine::Out(text.clone()),
        Some(Event::Send { result, .. }) => call(result),
        Some(Event::SockCall { err, .. }) => Mine::Call(Err(err.errno().name().to_string())),
        Some(Event::Getsockopt { result, .. }) => Mine::Call(
            result
                .as_ref()
                .map(|v| *v)
                .map_err(|e| e.errno().name().to_string()),
        ),
        Some(Event::Sendmmsg { result, .. }) => call(&result.ret),
        Some(Event::Recv { result, .. }) => {
            call(&result.as_ref().map(|d| d.data.len()).map_err(Clone::clone))
        }
        _ => Mine::Done,
    }
}

/// How the two answers to a line differ, if they do.
fn line_difference(k: &Answer, m: &Mine) -> Option<String> {
    let same = match (k, m) {
        (Answer::Tool { code: 0, out, .. }, Mine::Out(o)) => {
            auto_handles(&veth_less(out)) == auto_handles(o)
        }
        (Answer::Tool { code: 0, out, .. }, Mine::Done) => out.is_empty(),
        (Answer::Tool { code, err, .. }, Mine::Refused(r)) if *code != 0 => {
            err.trim_end() == r.trim_end()
        }
        (Answer::Call(a), Mine::Call(b)) => a == b,
        (Answer::Call(Ok(_)) | Answer::Done, Mine::Done) => true,
        (Answer::Done, Mine::Call(Ok(_))) => true,
        (Answer::Call(Err(e)), Mine::Refused(r)) => r.contains(e.as_str()),
        _ => false,
    };
    if same {
        return None;
    }
    if let (Answer::Tool { code: 0, out, .. }, Mine::Out(o)) = (k, m) {
        return Some(output_difference(
            &auto_handles(&veth_less(out)),
            &auto_handles(o),
        ));
    }
    Some(format!(
        "  kernel: {}\n  ipxmit: {}",
        kernel_text(k),
        mine_text(m)
    ))
}

/// Where two outputs part: the first line that differs, both ways.
fn output_difference(k: &str, m: &str) -> String {
    let (kl, ml): (Vec<&str>, Vec<&str>) = (k.lines().collect(), m.lines().collect());
    let n = kl.iter().zip(&ml).take_while(|(a, b)| a == b).count();
    let show = |v: &[&str]| {
        v.get(n)
            .map_or("(no more lines)".to_string(), |l| format!("{l:?}"))
    };
    format!(
        "  output line {}:\n  kernel: {}\n  ipxmit: {}",
        n + 1,
        show(&kl),
        show(&ml)
    )
}

/// The kernel's tool output without what only its veth has: the peer's
/// index after the name (`eth0@if2`) and the peer's namespace
/// (` link-netns NAME`), in text output (JSON keeps them).
fn veth_less(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for line in s.split_inclusive('\n') {
        let mut l = line.to_string();
        if let Some(at) = l.find(" link-netns ") {
            let end = l[at + 12..]
                .find(char::is_whitespace)
                .map_or(l.len(), |e| at + 12 + e);
            l.replace_range(at..end, "");
        }
        if let Some(at) = l.find("@if") {
            let digits = l[at + 3..].chars().take_while(char::is_ascii_digit).count();
            if digits > 0 && l[at + 3 + digits..].starts_with(':') {
                l.replace_range(at..at + 3 + digits, "");
            }
        }
        out.push_str(&l);
    }
    out
}

/// A tool's output with automatically chosen qdisc handles (`8001:`; the
/// kernel's come from a counter shared by every namespace) as `auto:`.
fn auto_handles(s: &str) -> String {
    s.split_inclusive(|c: char| c.is_whitespace() || c == '"')
        .map(|w| {
            let t = w.trim_end_matches(|c: char| c.is_whitespace() || c == '"');
            let auto = t.len() == 5
                && t.ends_with(':')
                && t.starts_with(|c: char| ('8'..='9').contains(&c) || ('a'..='f').contains(&c))
                && t[..4].chars().all(|c| c.is_ascii_hexdigit());
            if auto {
                w.replacen(t, "auto:", 1)
            } else {
                w.to_string()
            }
        })
        .collect()
}

fn kernel_text(k: &Answer) -> String {
    match k {
        Answer::Tool { code: 0, out, .. } if out.is_empty() => "done, no output".into(),
        Answer::Tool { code: 0, out, .. } => format!("printed {out:?}"),
        Answer::Tool { code, err, .. } => format!("exit {code}: {}", err.trim_end()),
        Answer::Call(Ok(v)) => format!("returned {v}"),
        Answer::Call(Err(e)) => format!("failed: {e}"),
        Answer::Done => "done".into(),
    }
}

fn mine_text(m: &Mine) -> String {
    match m {
        Mine::Refused(r) => format!("refused: {r}"),
        Mine::Out(o) => format!("printed {o:?}"),
        Mine::Call(Ok(v)) => format!("returned {v}"),
        Mine::Call(Err(e)) => format!("failed: {e}"),
        Mine::Done => "done, no output".into(),
    }
}

/// The frames on link `name`: the kernel's peer's capture against
/// ipxmit's capture file.
fn compare_frames(k: &Kernel, name: &str, (dir, hex): (&std::path::Path, bool), rep: &mut Report) {
    let theirs = k.captures.get(name).map(|c| c.drain()).unwrap_or_default();
    let mine = match frames::read_pcap(&dir.join(format!("{name}.pcap"))) {
        Ok(f) => f,
        Err(e) => {
            rep.frames.push(format!("{name}: ipxmit's capture: {e}"));
            return;
        }
    };
    for step in frames::align(&theirs, &mine) {
        let d = match step {
            frames::Step::Same(..) => continue,
            frames::Step::OnlyKernel(i) => {
                format!(
                    "{name} kernel frame {}: only the kernel sent {}",
                    i + 1,
                    frames::summary(&theirs[i])
                )
            }
            frames::Step::OnlyIpxmit(j) => {
                format!(
                    "{name} ipxmit frame {}: only ipxmit sent {}",
                    j + 1,
                    frames::summary(&mine[j])
                )
            }
            frames::Step::Differ(i, j, at) => {
                let (t, m) = (&theirs[i], &mine[j]);
                let mut d = format!(
                    "{name} frame {} (ipxmit's {}): differ at byte {at}\n  kernel: {}\n  ipxmit: {}",
                    i + 1,
                    j + 1,
                    frames::summary(t),
                    frames::summary(m)
                );
                if hex {
                    let _ = write!(
                        d,
                        "\n  kernel: {}\n  ipxmit: {}",
                        frames::hex(t),
                        frames::hex(m)
                    );
                }
                d
            }
        };
        rep.frames.push(d);
    }
}

/// The deltas of [`COUNTERS`]: the kernel's namespace against ipxmit's.
fn compare_counters(
    before: &std::collections::BTreeMap<String, i64>,
    after: &std::collections::BTreeMap<String, i64>,
    host: &Host,
    rep: &mut Report,
) {
    let st = host.stack();
    for name in COUNTERS {
        let theirs = after.get(*name).unwrap_or(&0) - before.get(*name).unwrap_or(&0);
        let mine = ipxmit::stats::Mib::ALL
            .iter()
            .find(|m| m.name() == *name)
            .map_or(0, |m| st.counters().get(*m) as i64);
        if theirs != mine {
            rep.counters
                .push(format!("{name}: kernel {theirs}, ipxmit {mine}"));
        }
    }
}

/// The report: each kind of difference (at most `max` of each), what was
/// not compared, and a last line with the verdict.
fn report_text(rep: &Report, max: usize) -> String {
    let mut s = String::new();
    for (what, list) in [
        ("lines", &rep.lines),
        ("frames", &rep.frames),
        ("counters", &rep.counters),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(s, "{} {what} differ:", list.len());
        for d in list.iter().take(max) {
            let _ = writeln!(s, "{d}");
        }
    }
    if !rep.not_compared.is_empty() {
        let l: Vec<String> = rep.not_compared.iter().map(usize::to_string).collect();
        let _ = writeln!(
            s,
            "not compared (carried out on both sides): lines {}",
            l.join(", ")
        );
    }
    let n = rep.lines.len() + rep.frames.len() + rep.counters.len();
    let verdict = if n == 0 {
        "no differences".to_string()
    } else {
        format!("{n} differences")
    };
    let _ = writeln!(
        s,
        "{} lines compared, frames on every link, {} counters: {verdict}",
        rep.compared,
        COUNTERS.len()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_veths_own_words_are_left_out() {
        let k = "2: eth0@if2: <UP> mtu 1500\n    link/ether 02:00:00:00:00:01 brd ff:ff:ff:ff:ff:ff link-netns ipxmit-diff-b-1-1\n";
        let m = "2: eth0: <UP> mtu 1500\n    link/ether 02:00:00:00:00:01 brd ff:ff:ff:ff:ff:ff\n";
        assert_eq!(veth_less(k), m);
    }

    #[test]
    fn automatic_handles_compare_equal() {
        let k = "qdisc pfifo 83dc: root refcnt 2 limit 10p\n";
        let m = "qdisc pfifo 8001: root refcnt 2 limit 10p\n";
        assert_eq!(auto_handles(k), auto_handles(m));
        let given = "qdisc pfifo 1: root refcnt 2 limit 10p\n";
        assert_ne!(auto_handles(given), auto_handles(m));
        assert_eq!(auto_handles("\"handle\":\"8002:\""), "\"handle\":\"auto:\"");
    }

    #[test]
    fn answers_compare_as_the_tools_and_calls_do() {
        let tool = |code, out: &str, err: &str| Answer::Tool {
            out: out.into(),
            err: err.into(),
            code,
        };
        assert_eq!(line_difference(&tool(0, "", ""), &Mine::Done), None);
        assert_eq!(
            line_difference(&tool(0, "x\n", ""), &Mine::Out("x\n".into())),
            None
        );
        let refused = Mine::Refused("Error: Nexthop has invalid gateway.".into());
        assert_eq!(
            line_difference(
                &tool(2, "", "Error: Nexthop has invalid gateway.\n"),
                &refused
            ),
            None
        );
        assert!(line_difference(&tool(0, "", ""), &refused).is_some());
        let emsgsize = Answer::Call(Err("EMSGSIZE".into()));
        assert_eq!(
            line_difference(&emsgsize, &Mine::Call(Err("EMSGSIZE".into()))),
            None
        );
        assert!(line_difference(&emsgsize, &Mine::Call(Ok(3000))).is_some());
    }
}
