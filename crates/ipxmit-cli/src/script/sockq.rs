//! `getsockopt` and `sendmmsg` script commands.
//!
//! Stand for `getsockopt(2)` on the options scripts ask about
//! (`do_ip_getsockopt()`'s `IP_MTU`, `sk_getsockopt()`'s `SO_ERROR` and
//! `SO_SNDBUF`) and `sendmmsg(2)` (`__sys_sendmmsg()` over `udp_sendmsg()`,
//! through [`ipxmit::UdpSocket::send_batch`]: the number of messages sent
//! when at least one left, the first message's errno when none did; a later
//! message's error is not reported, as the kernel loses it).

use std::fmt::Write as _;
use std::net::SocketAddrV4;

use ipxmit::socket::inet::InetSock;
use ipxmit::stats::fate::MsgFate;
use ipxmit::{MsgFlags, SendError};
use serde_json::{json, Value};

use super::parse::{sockaddr, Command, ParseError};
use crate::values;

/// The options `getsockopt` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetOpt {
    /// `ip_mtu`: the connected route's path MTU (`ENOTCONN` unconnected).
    IpMtu,
    /// `so_error`: the pending error, cleared (0 for none).
    SoError,
    /// `so_sndbuf`: the send buffer size (the doubled value).
    SoSndbuf,
}

impl GetOpt {
    /// The option's script name.
    pub fn name(self) -> &'static str {
        match self {
            GetOpt::IpMtu => "ip_mtu",
            GetOpt::SoError => "so_error",
            GetOpt::SoSndbuf => "so_sndbuf",
        }
    }
}

/// One message of a `sendmmsg` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmsgArgs {
    /// `to A:P` (the connected peer when absent).
    pub to: Option<SocketAddrV4>,
    /// Payload bytes.
    pub len: usize,
}

/// Parses `getsockopt NAME OPTION`.
pub fn parse_getsockopt(rest: &[&str]) -> Result<Command, ParseError> {
    let missing = |what| ParseError::Missing {
        cmd: "getsockopt",
        what,
    };
    let sock = rest.first().ok_or(missing("socket name"))?.to_string();
    let opt = match rest.get(1).copied().ok_or(missing("option"))? {
        "ip_mtu" => GetOpt::IpMtu,
        "so_error" => GetOpt::SoError,
        "so_sndbuf" => GetOpt::SoSndbuf,
        o => {
            return Err(ParseError::Invalid {
                cmd: "getsockopt",
                what: "option",
                value: format!("\"{o}\""),
                hint: ": expected ip_mtu, so_error or so_sndbuf".into(),
            })
        }
    };
    if let Some(w) = rest.get(2) {
        return Err(ParseError::Unexpected {
            cmd: "getsockopt",
            word: format!("\"{w}\""),
        });
    }
    Ok(Command::Getsockopt { sock, opt })
}

/// Parses `sendmmsg NAME [to A:P] len N [[to A:P] len N ...] [dontwait]
/// [fates]`: each `len` ends a message, a `to` before it names its
/// destination; `fates` reports what became of each message.
pub fn parse_sendmmsg(rest: &[&str]) -> Result<Command, ParseError> {
    let cmd = "sendmmsg";
    let sock = rest
        .first()
        .ok_or(ParseError::Missing {
            cmd,
            what: "socket name",
        })?
        .to_string();
    let (mut msgs, mut to, mut flags) = (Vec::new(), None, MsgFlags::NONE);
    let mut fates = false;
    let mut it = rest[1..].iter();
    while let Some(&k) = it.next() {
        let mut val = |what| it.next().copied().ok_or(ParseError::Missing { cmd, what });
        match k {
            "to" => {
                let v = val("destination")?;
                to = Some(sockaddr(v).map_err(|h| invalid("destination", v, &h))?);
            }
            "len" => {
                let v = val("length")?;
                let len = values::number_in(v, 0, super::parse::MAX_SEND_LEN as u64)
                    .map_err(|e| invalid("length", v, &e.to_string()))?;
                msgs.push(MmsgArgs {
                    to: to.take(),
                    len: len as usize,
                });
            }
            "dontwait" => flags = flags.with(MsgFlags::DONTWAIT),
            "fates" => fates = true,
            _ => {
                return Err(ParseError::Unexpected {
                    cmd,
                    word: format!("\"{k}\""),
                })
            }
        }
    }
    if msgs.is_empty() || to.is_some() {
        return Err(ParseError::Missing {
            cmd,
            what: "len N (each message ends with its length)",
        });
    }
    Ok(Command::Sendmmsg {
        sock,
        msgs,
        flags,
        fates,
    })
}

fn invalid(what: &'static str, v: &str, hint: &str) -> ParseError {
    ParseError::Invalid {
        cmd: "sendmmsg",
        what,
        value: format!("\"{v}\""),
        hint: format!(": {hint}"),
    }
}

/// Kernel: `do_ip_getsockopt()`/`sk_getsockopt()`. The value `opt` reads
/// on the socket `i`.
pub fn getsockopt(i: &mut InetSock, opt: GetOpt) -> Result<i64, SendError> {
    Ok(match opt {
        GetOpt::IpMtu => i64::from(i.ip_mtu()?),
        GetOpt::SoError => i.take_error().map_or(0, |e| i64::from(e.code())),
        GetOpt::SoSndbuf => i.budget().limit() as i64,
    })
}

/// A `sendmmsg`'s result: the messages sent, or the first one's error.
#[derive(Debug)]
pub struct MmsgResult {
    /// The messages as named.
    pub msgs: Vec<MmsgArgs>,
    /// How many were sent, or the error of the first.
    pub ret: Result<usize, SendError>,
    /// Each message's fate at the return of the call, when asked.
    pub fates: Option<Vec<MsgFate>>,
}

/// A fate as the result line shows it: `sent`, `queued`, `not-sent`,
/// `dropped(REASON)`, `failed(ERRNO)`.
pub fn fate_text(f: &MsgFate) -> String {
    match f {
        MsgFate::Dropped(r) => format!("dropped({r})"),
        MsgFate::Failed(e) => format!("failed({})", e.errno().name()),
        f => f.name().to_string(),
    }
}

impl MmsgResult {
    /// The result line's text.
    pub fn text(&self, line: usize, sock: &str) -> String {
        let mut o = String::new();
        match &self.ret {
            Ok(n) => {
                let _ = write!(o, "line {line}: sendmmsg {sock} = {n}");
                let lens: Vec<String> = self.msgs[..*n].iter().map(|m| m.len.to_string()).collect();
                let _ = write!(o, " [{}]", lens.join(", "));
            }
            Err(e) => {
                let _ = write!(o, "line {line}: sendmmsg {sock} = -1 {e}");
            }
        }
        if let Some(f) = &self.fates {
            let f: Vec<String> = f.iter().map(fate_text).collect();
            let _ = write!(o, " fates [{}]", f.join(", "));
        }
        o.push('\n');
        o
    }

    /// The result line under `--json`: `ret` (or `errno`) and each
    /// message with its destination, length and whether it was sent
    /// (`msg_len` for the sent ones).
    pub fn json(&self, line: usize, sock: &str) -> Value {
        let sent = *self.ret.as_ref().unwrap_or(&0);
        let msgs: Vec<Value> = self
            .msgs
            .iter()
            .enumerate()
            .map(|(k, m)| {
                let mut v = json!({"len": m.len, "sent": k < sent});
                if let Some(t) = m.to {
                    v["to"] = json!(t.to_string());
                }
                if k < sent {
                    v["ret"] = json!(m.len);
                }
                if let Some(f) = self.fates.as_ref().and_then(|f| f.get(k)) {
                    v["fate"] = json!(f.name());
                    match f {
                        MsgFate::Dropped(r) => v["reason"] = json!(r.name()),
                        MsgFate::Failed(e) => v["errno"] = json!(e.errno().name()),
                        _ => {}
                    }
                }
                v
            })
            .collect();
        let mut v = json!({"line": line, "op": "sendmmsg", "socket": sock, "msgs": msgs});
        match &self.ret {
            Ok(n) => v["ret"] = json!(n),
            Err(e) => v["errno"] = json!(e.errno().name()),
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_len_ends_a_message_with_the_to_before_it() {
        let w = [
            "s",
            "len",
            "10",
            "to",
            "10.0.0.2:7",
            "len",
            "20",
            "dontwait",
        ];
        let Command::Sendmmsg {
            sock, msgs, flags, ..
        } = parse_sendmmsg(&w).unwrap()
        else {
            panic!("not a sendmmsg");
        };
        assert_eq!(sock, "s");
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[0].to, msgs[0].len), (None, 10));
        assert_eq!(msgs[1].to, Some("10.0.0.2:7".parse().unwrap()));
        assert!(flags.contains(MsgFlags::DONTWAIT));
        assert!(
            parse_sendmmsg(&["s", "to", "10.0.0.2:7"]).is_err(),
            "a to without len"
        );
        assert!(parse_sendmmsg(&["s"]).is_err());
        assert!(parse_getsockopt(&["s", "ip_frob"]).is_err());
        assert_eq!(
            parse_getsockopt(&["s", "so_error"]).unwrap(),
            Command::Getsockopt {
                sock: "s".into(),
                opt: GetOpt::SoError
            }
        );
    }
}
