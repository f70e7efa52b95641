//! `conntrack` lines (conntrack-tools): `conntrack -L` lists the stack's
//! tracked flows as conntrack 1.4.7 prints them (`-F` flushes them, `-C`
//! counts them).

use std::fmt::Write;
use std::net::Ipv4Addr;

use ipxmit::nft::conntrack::{FlowView, Tuple, ASSURED, SEEN_REPLY};
use ipxmit::Stack;

/// The version the listing's last line names.
pub const VERSION: &str = "1.4.7";

/// A `conntrack` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConntrackCommand {
    /// `-L` / `--dump`.
    List,
    /// `-F` / `--flush`.
    Flush,
    /// `-C` / `--count`.
    Count,
}

/// Parses the words after `conntrack`.
pub fn parse(rest: &[String]) -> Result<ConntrackCommand, String> {
    let w: Vec<&str> = rest.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["-L" | "--dump"] => Ok(ConntrackCommand::List),
        ["-F" | "--flush"] => Ok(ConntrackCommand::Flush),
        ["-C" | "--count"] => Ok(ConntrackCommand::Count),
        [] => Err("conntrack v1.4.7 (conntrack-tools): no command specified".into()),
        _ => Err(format!(
            "conntrack v1.4.7 (conntrack-tools): unsupported arguments: {}",
            w.join(" ")
        )),
    }
}

/// What the command prints on standard output, and on standard error.
pub fn run(stack: &Stack, c: ConntrackCommand) -> (String, String) {
    let ct = stack.conntrack();
    let now = stack.now().as_nanos();
    match c {
        ConntrackCommand::List => {
            let flows = ct.list(now);
            let mut out = String::new();
            for f in &flows {
                let _ = writeln!(out, "{}", line(f));
            }
            let err = format!(
                "conntrack v{VERSION} (conntrack-tools): {} flow entries have been shown.\n",
                flows.len()
            );
            (out, err)
        }
        ConntrackCommand::Flush => {
            ct.flush();
            (
                String::new(),
                format!("conntrack v{VERSION} (conntrack-tools): connection tracking table has been emptied.\n"),
            )
        }
        ConntrackCommand::Count => (format!("{}\n", ct.list(now).len()), String::new()),
    }
}

/// conntrack-tools' protocol names.
fn proto_name(p: u8) -> &'static str {
    match p {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        33 => "dccp",
        47 => "gre",
        132 => "sctp",
        136 => "udplite",
        _ => "unknown",
    }
}

fn tuple(out: &mut String, t: &Tuple) {
    let _ = write!(
        out,
        "src={} dst={} ",
        Ipv4Addr::from(t.src),
        Ipv4Addr::from(t.dst)
    );
    let _ = match t.proto {
        17 => write!(out, "sport={} dport={} ", t.sport, t.dport),
        1 => write!(
            out,
            "type={} code={} id={} ",
            t.dport >> 8,
            t.dport & 0xff,
            t.sport
        ),
        _ => Ok(()),
    };
}

/// One flow as `conntrack -L` prints it (`__snprintf_conntrack_default`).
pub fn line(f: &FlowView) -> String {
    let p = f.tuple[0].proto;
    let mut out = format!("{:<8} {} {} ", proto_name(p), p, f.timeout_secs);
    tuple(&mut out, &f.tuple[0]);
    if f.status & SEEN_REPLY == 0 {
        out.push_str("[UNREPLIED] ");
    }
    tuple(&mut out, &f.tuple[1]);
    if f.status & ASSURED != 0 {
        out.push_str("[ASSURED] ");
    }
    let _ = write!(out, "mark={} use=1", f.mark);
    out
}
