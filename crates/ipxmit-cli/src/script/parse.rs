//! The script language: one command per line, `#` starts a comment.
//!
//! [`parse_line`] turns one line into a typed [`Command`] or a [`ParseError`]
//! naming what is wrong; it never looks at the host (whether a device or a
//! socket exists is the executor's question). The grammar is documented in
//! `docs/script.md`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use ipxmit::sched::QdiscSpec;
use ipxmit::wire::EthernetAddress;
use ipxmit::{Features, MsgFlags, PmtuDisc};

use crate::values::{self, quote};

/// Every command word, for the "unknown command" message.
pub const COMMANDS: &str =
    "ip, tc, nft, sysctl, link, addr, route, neigh, qdisc, capture, socket, bind, connect, sockopt, getsockopt, send, sendmmsg, errqueue, recv, inject, sleep, close";

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The first word is not a command.
    #[error("unknown command {0} (commands: {COMMANDS})")]
    UnknownCommand(String),
    /// A `tc` line tc refuses: its own message.
    #[error("{0}")]
    Tc(String),
    /// An `ip` or `sysctl` line the tool refuses: its own message.
    #[error("{0}")]
    Tool(String),
    /// A sub-command (`link frob`) is not known.
    #[error("{cmd}: unknown sub-command {word} (expected {expected})")]
    UnknownSub {
        /// The command.
        cmd: &'static str,
        /// The word found (quoted).
        word: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// A word the command does not take.
    #[error("{cmd}: unexpected {word}")]
    Unexpected {
        /// The command.
        cmd: &'static str,
        /// The word (quoted).
        word: String,
    },
    /// A required word is missing before the word found in its place.
    #[error("{cmd}: missing {what} before {word}")]
    MissingBefore {
        /// The command.
        cmd: &'static str,
        /// What is missing.
        what: &'static str,
        /// The word found (quoted).
        word: String,
    },
    /// A required word is missing.
    #[error("{cmd}: missing {what}")]
    Missing {
        /// The command.
        cmd: &'static str,
        /// What is missing.
        what: &'static str,
    },
    /// A value could not be read.
    #[error("{cmd}: invalid {what} {value}{hint}")]
    Invalid {
        /// The command.
        cmd: &'static str,
        /// What the value should be.
        what: &'static str,
        /// The value as written (quoted).
        value: String,
        /// More detail (starts with ": " when present).
        hint: String,
    },
}

/// The type of a `link add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    /// An in-memory wire (optionally with a verifying peer).
    Mem,
    /// The null device: counts and frees every frame.
    Null,
    /// A capture file as the wire.
    Pcap,
    /// A Linux TAP device.
    Tap,
    /// A Linux interface through AF_PACKET.
    Packet,
    /// A Linux interface through AF_XDP.
    Xdp,
}

impl LinkKind {
    /// The keyword.
    pub fn name(&self) -> &'static str {
        match self {
            LinkKind::Mem => "mem",
            LinkKind::Null => "null",
            LinkKind::Pcap => "pcap",
            LinkKind::Tap => "tap",
            LinkKind::Packet => "packet",
            LinkKind::Xdp => "xdp",
        }
    }
}

/// `link add NAME type KIND [options]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    /// Device name.
    pub name: String,
    /// Link type.
    pub kind: LinkKind,
    /// `file PATH` (pcap).
    pub file: Option<PathBuf>,
    /// `ifname NAME` (tap, packet, xdp).
    pub ifname: Option<String>,
    /// `mtu N`.
    pub mtu: Option<u32>,
    /// `txqueues N`.
    pub txqueues: Option<usize>,
    /// `txqueuelen N`.
    pub txqueuelen: Option<u32>,
    /// `offload LIST`.
    pub offload: Option<Features>,
    /// `lladdr MAC`.
    pub lladdr: Option<EthernetAddress>,
    /// `peer ADDR` (mem): a verifying peer at that address.
    pub peer: Option<Ipv4Addr>,
    /// `peerlladdr MAC` (mem): the peer's MAC.
    pub peer_lladdr: Option<EthernetAddress>,
    /// `rate RATE` (mem): the line rate, bits per second.
    pub rate: Option<u64>,
    /// `ring FRAMES` (packet): a `PACKET_TX_RING` of that many slots, with
    /// byte queue limits, instead of `sendmmsg` batches; (xdp) the TX ring's
    /// entries, a power of two.
    pub ring: Option<usize>,
    /// `tpacket 2|3` (packet, with `ring`): the ring's `PACKET_VERSION`
    /// (default 3).
    pub tpacket: Option<ipxmit_drivers::packet::TpacketVersion>,
    /// `queue N` (xdp): the interface's first hardware queue to bind.
    pub queue: Option<u32>,
    /// `zerocopy on|off` (xdp): `XDP_ZEROCOPY` or `XDP_COPY`; absent,
    /// zero-copy where the interface's driver has it, else copy.
    pub zerocopy: Option<bool>,
}

/// The kind of a `socket` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockKind {
    /// `udp`.
    Udp,
    /// `raw PROTO`.
    Raw(u8),
    /// `rawhdrincl PROTO`: raw with `IP_HDRINCL`.
    RawHdrincl(u8),
}

/// A `sockopt` option and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SockOpt {
    /// `ip_tos N`.
    Tos(u8),
    /// `ip_ttl N` (`-1`: the default).
    Ttl(Option<u8>),
    /// `ip_mtu_discover MODE`.
    MtuDiscover(PmtuDisc),
    /// `ip_recverr 0|1`.
    RecvErr(bool),
    /// `ip_options HEX`.
    Options(Vec<u8>),
    /// `ip_hdrincl 0|1` (raw sockets).
    Hdrincl(bool),
    /// `so_no_check 0|1`.
    NoCheck(bool),
    /// `udp_segment N`.
    Segment(u32),
    /// `udp_cork 0|1`.
    Cork(bool),
    /// `so_sndbuf N`.
    SndBuf(usize),
    /// `so_priority N`.
    Priority(u32),
    /// `so_mark N`.
    Mark(u32),
    /// `so_sndtimeo TIME` (0: wait for ever).
    SndTimeo(Duration),
    /// `so_bindtodevice DEV` (`""`: unbind).
    BindToDevice(String),
    /// `so_zerocopy 0|1`.
    ZeroCopy(bool),
    /// `so_reuseaddr 0|1`.
    ReuseAddr(bool),
    /// `so_reuseport 0|1`.
    ReusePort(bool),
    /// `so_max_pacing_rate RATE`: bytes per second (`u64::MAX`: none).
    MaxPacingRate(u64),
    /// `so_txtime [clockid CLOCK] [deadline_mode] [report_errors]`.
    Txtime {
        /// `CLOCK_*` number.
        clockid: i32,
        /// `SOF_TXTIME_*` flags.
        flags: u32,
    },
    /// `so_broadcast 0|1`.
    Broadcast(bool),
    /// `ip_multicast_ttl N` (`-1`: the default, 1).
    MulticastTtl(Option<u8>),
    /// `ip_multicast_if ADDR|DEV` (`0.0.0.0`: none).
    MulticastIf(String),
    /// `ip_multicast_loop 0|1`.
    MulticastLoop(bool),
}

/// A `send`'s `txtime`: a departure time on the stack's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxTime {
    /// `txtime TIME`: that long after the clock's origin.
    At(Duration),
    /// `txtime +TIME`: that long after the clock at the send.
    After(Duration),
}

/// A `send` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendArgs {
    /// Socket name.
    pub sock: String,
    /// `to ADDR[:PORT]` (port 0 when absent).
    pub to: Option<SocketAddrV4>,
    /// Payload bytes.
    pub len: usize,
    /// `MSG_*` flags.
    pub flags: MsgFlags,
    /// `txtime [+]TIME`: the send's `SCM_TXTIME`.
    pub txtime: Option<TxTime>,
}

/// One script command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `link add ...`.
    LinkAdd(LinkSpec),
    /// An `ip` line for links, addresses or neighbours (and their
    /// unprefixed aliases `link set|show`, `addr ...`, `neigh ...`).
    Ip(super::ip::IpCommand),
    /// An `ip route` or `ip rule` line (or the unprefixed `route` alias).
    IpRoute(super::iproute::RouteCommand),
    /// A `sysctl` line.
    Sysctl(super::sysctl::SysctlCommand),
    /// A `conntrack` line.
    Conntrack(super::conntrack::ConntrackCommand),
    /// A `tc` line.
    Tc(super::tc::TcCommand),
    /// An `nft` line.
    Nft(super::nft::NftCommand),
    /// `qdisc replace dev DEV root SPEC`.
    Qdisc {
        /// Device.
        dev: String,
        /// The qdisc.
        spec: QdiscSpec,
    },
    /// `capture dev DEV file PATH`.
    Capture {
        /// Device.
        dev: String,
        /// Capture file.
        file: PathBuf,
    },
    /// `socket NAME KIND [bind A] [connect A]`.
    Socket {
        /// Name.
        name: String,
        /// Kind.
        kind: SockKind,
        /// Bind at creation.
        bind: Option<SocketAddrV4>,
        /// Connect at creation.
        connect: Option<SocketAddrV4>,
    },
    /// `bind NAME ADDR[:PORT]`.
    Bind {
        /// Socket.
        sock: String,
        /// Address.
        addr: SocketAddrV4,
    },
    /// `connect NAME ADDR[:PORT]`.
    Connect {
        /// Socket.
        sock: String,
        /// Address.
        addr: SocketAddrV4,
    },
    /// `sockopt NAME OPT VALUE`.
    Sockopt {
        /// Socket.
        sock: String,
        /// The option.
        opt: SockOpt,
    },
    /// `send ...`.
    Send(SendArgs),
    /// `explain ...` (a `send`'s words): the plan of that send, not made.
    Explain(SendArgs),
    /// `errqueue NAME`.
    Errqueue {
        /// Socket.
        sock: String,
    },
    /// `sleep DURATION`.
    Sleep(Duration),
    /// `close NAME`.
    Close {
        /// Socket.
        sock: String,
    },
    /// `recv NAME`: the oldest datagram waiting on the socket.
    /// `getsockopt NAME ip_mtu|so_error|so_sndbuf`.
    Getsockopt {
        /// Socket.
        sock: String,
        /// The option.
        opt: super::sockq::GetOpt,
    },
    /// `sendmmsg NAME [to A:P] len N ... [dontwait] [fates]`.
    Sendmmsg {
        /// Socket.
        sock: String,
        /// The messages.
        msgs: Vec<super::sockq::MmsgArgs>,
        /// The call's flags.
        flags: MsgFlags,
        /// Report each message's fate (`send_batch_fates`).
        fates: bool,
    },
    Recv {
        /// Socket.
        sock: String,
    },
    /// `inject dev DEV frame HEX | icmp frag-needed mtu N from A`.
    Inject {
        /// Device.
        dev: String,
        /// What is fed to its receive path.
        what: super::rx::Inject,
    },
}

/// The words of one line, with the command they belong to (for messages).
struct Words<'a> {
    cmd: &'static str,
    it: std::iter::Peekable<std::slice::Iter<'a, &'a str>>,
}

impl<'a> Words<'a> {
    fn new(cmd: &'static str, w: &'a [&'a str]) -> Words<'a> {
        Words {
            cmd,
            it: w.iter().peekable(),
        }
    }

    fn next(&mut self) -> Option<&'a str> {
        self.it.next().copied()
    }

    fn need(&mut self, what: &'static str) -> Result<&'a str, ParseError> {
        self.next().ok_or(ParseError::Missing {
            cmd: self.cmd,
            what,
        })
    }

    fn end(&mut self) -> Result<(), ParseError> {
        match self.next() {
            None => Ok(()),
            Some(w) => Err(self.unexpected(w)),
        }
    }

    fn unexpected(&self, w: &str) -> ParseError {
        ParseError::Unexpected {
            cmd: self.cmd,
            word: quote(w),
        }
    }

    fn invalid(&self, what: &'static str, value: &str, hint: impl std::fmt::Display) -> ParseError {
        let hint = hint.to_string();
        ParseError::Invalid {
            cmd: self.cmd,
            what,
            value: quote(value),
            hint: if hint.is_empty() {
                hint
            } else {
                format!(": {hint}")
            },
        }
    }

    /// The value after a keyword, parsed by `f`.
    fn value<T>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ParseError> {
        let v = self.need(what)?;
        f(v).map_err(|e| self.invalid(what, v, e))
    }
}

/// Splits a line into words, dropping a `#` comment.
pub fn words(line: &str) -> Vec<&str> {
    let code = line.split_once('#').map_or(line, |(c, _)| c);
    code.split_whitespace().collect()
}

/// Parses one line; `Ok(None)` for a blank or comment line.
pub fn parse_line(line: &str) -> Result<Option<Command>, ParseError> {
    let w = words(line);
    let Some((&first, rest)) = w.split_first() else {
        return Ok(None);
    };
    if matches!(
        first,
        "tc" | "ip" | "nft" | "conntrack" | "sysctl" | "link" | "addr" | "neigh"
    ) {
        return shell_line(line).map(Some);
    }
    let cmd = match first {
        "route" => super::iproute::parse_route(rest, Default::default())?,
        "qdisc" => parse_qdisc(rest)?,
        "capture" => parse_capture(rest)?,
        "socket" => parse_socket(rest)?,
        "bind" | "connect" => parse_bind_connect(first == "bind", rest)?,
        "sockopt" => parse_sockopt(rest)?,
        "send" => parse_send(rest)?,
        "explain" => match parse_send_as("explain", rest)? {
            Command::Send(a) => Command::Explain(a),
            other => other,
        },
        "errqueue" => Command::Errqueue {
            sock: one_name("errqueue", rest)?,
        },
        "close" => Command::Close {
            sock: one_name("close", rest)?,
        },
        "sleep" => parse_sleep(rest)?,
        "recv" => super::rx::parse_recv(rest)?,
        "getsockopt" => super::sockq::parse_getsockopt(rest)?,
        "sendmmsg" => super::sockq::parse_sendmmsg(rest)?,
        "inject" => super::rx::parse_inject(rest)?,
        other => return Err(ParseError::UnknownCommand(quote(other))),
    };
    Ok(Some(cmd))
}

/// A line of a Linux tool (`tc`, `ip`, `sysctl`) or an unprefixed alias
/// of an `ip` one (`link`, `addr`, `neigh`), split with the shell's word
/// rules.
fn shell_line(line: &str) -> Result<Command, ParseError> {
    let words = super::tc::split_shell(line).map_err(ParseError::Tool)?;
    let (first, rest) = words.split_first().ok_or(ParseError::Missing {
        cmd: "ip",
        what: "a command",
    })?;
    match first.as_str() {
        "tc" => super::tc::parse(rest)
            .map(Command::Tc)
            .map_err(ParseError::Tc),
        "ip" => super::ip::parse(rest),
        "sysctl" => super::sysctl::parse(rest).map(Command::Sysctl),
        "nft" => super::nft::parse(rest)
            .map(Command::Nft)
            .map_err(ParseError::Tool),
        "conntrack" => super::conntrack::parse(rest)
            .map(Command::Conntrack)
            .map_err(ParseError::Tool),
        _ => {
            let w: Vec<&str> = words.iter().map(String::as_str).collect();
            super::ip::parse_object(&w, super::ip::IpOpts::default())
        }
    }
}

fn one_name(cmd: &'static str, rest: &[&str]) -> Result<String, ParseError> {
    let mut w = Words::new(cmd, rest);
    let n = w.need("socket name")?;
    w.end()?;
    Ok(n.to_string())
}

/// A number: decimal, or hexadecimal with `0x`.
pub fn parse_num(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse::<u64>(),
    };
    r.map_err(|_| "not a number".to_string())
}

fn num_in<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    let v = parse_num(s)?;
    T::try_from(v).map_err(|_| format!("{v} is out of range"))
}

fn bool01(s: &str) -> Result<bool, String> {
    match s {
        "0" | "off" => Ok(false),
        "1" | "on" => Ok(true),
        _ => Err("expected 0 or 1".into()),
    }
}

/// `A.B.C.D`.
pub fn ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse()
        .map_err(|_| "expected an IPv4 address (A.B.C.D)".into())
}

/// `A.B.C.D[:PORT]` (port 0 when absent).
pub fn sockaddr(s: &str) -> Result<SocketAddrV4, String> {
    if let Ok(a) = s.parse::<SocketAddrV4>() {
        return Ok(a);
    }
    s.parse::<Ipv4Addr>()
        .map(|ip| SocketAddrV4::new(ip, 0))
        .map_err(|_| "expected ADDR[:PORT] (10.0.0.2:9000)".into())
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac(s: &str) -> Result<EthernetAddress, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || "expected a MAC address (02:00:00:00:00:fe)".to_string();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut m = [0u8; 6];
    for (b, p) in m.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 2 {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(EthernetAddress(m))
}

/// `csum,sg,gso` (device offload names).
pub fn features(s: &str) -> Result<Features, String> {
    let mut f = Features::NONE;
    for w in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let (_, v) = Features::NAMES
            .iter()
            .find(|(n, _)| *n == w)
            .ok_or_else(|| {
                let names: Vec<&str> = Features::NAMES.iter().map(|(n, _)| *n).collect();
                format!("unknown offload {w:?} (known: {})", names.join(", "))
            })?;
        f = f.union(*v);
    }
    Ok(f)
}

fn name_word<'a>(w: &mut Words<'a>, what: &'static str) -> Result<&'a str, ParseError> {
    let n = w.need(what)?;
    if n.len() > 32
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err(w.invalid(what, n, "letters, digits, '_', '-', '.'"));
    }
    Ok(n)
}

/// The words after `link add` (ipxmit's link types).
pub fn parse_link_add_words(rest: &[&str]) -> Result<Command, ParseError> {
    let mut w = Words::new("link", rest);
    parse_link_add(&mut w).map(Command::LinkAdd)
}

fn link_kind(s: &str) -> Result<LinkKind, String> {
    Ok(match s {
        "mem" => LinkKind::Mem,
        "null" => LinkKind::Null,
        "pcap" => LinkKind::Pcap,
        "tap" => LinkKind::Tap,
        "packet" => LinkKind::Packet,
        "xdp" => LinkKind::Xdp,
        _ => return Err("expected mem, null, pcap, tap, packet or xdp".into()),
    })
}

fn parse_link_add(w: &mut Words<'_>) -> Result<LinkSpec, ParseError> {
    let name = name_word(w, "device name")?.to_string();
    match w.need("type")? {
        "type" => {}
        other => return Err(w.unexpected(other)),
    }
    let mut s = LinkSpec {
        name,
        kind: w.value("link type", link_kind)?,
        file: None,
        ifname: None,
        mtu: None,
        txqueues: None,
        txqueuelen: None,
        offload: None,
        lladdr: None,
        peer: None,
        peer_lladdr: None,
        rate: None,
        ring: None,
        tpacket: None,
        queue: None,
        zerocopy: None,
    };
    while let Some(k) = w.next() {
        match k {
            "file" => s.file = Some(PathBuf::from(w.need("file path")?)),
            "ifname" => s.ifname = Some(name_word(w, "ifname")?.to_string()),
            "mtu" => s.mtu = Some(w.value("mtu", num_in::<u32>)?),
            "txqueues" | "numtxqueues" => {
                s.txqueues = Some(w.value("txqueues", |v| {
                    values::txqueues(v).map_err(|e| e.to_string())
                })?)
            }
            "txqueuelen" => s.txqueuelen = Some(w.value("txqueuelen", num_in::<u32>)?),
            "offload" => s.offload = Some(w.value("offload list", features)?),
            "lladdr" => s.lladdr = Some(w.value("lladdr", mac)?),
            "peer" => s.peer = Some(w.value("peer address", ipv4)?),
            "peerlladdr" => s.peer_lladdr = Some(w.value("peerlladdr", mac)?),
            "rate" => s.rate = Some(w.value("rate (e.g. 100mbit)", line_rate)?),
            "ring" => s.ring = Some(w.value("ring frames", ring_frames)?),
            "tpacket" => s.tpacket = Some(w.value("tpacket 2|3", tpacket_version)?),
            "queue" => s.queue = Some(w.value("queue", num_in::<u32>)?),
            "zerocopy" => s.zerocopy = Some(w.value("zerocopy on|off", bool01)?),
            _ => return Err(w.unexpected(k)),
        }
    }
    check_link_options(&s)?;
    Ok(s)
}

/// A line rate in tc's units (`100mbit`, `1gbit`), above 0.
fn line_rate(s: &str) -> Result<u64, String> {
    match ipxmit::units::parse_rate(s) {
        Ok(r) if r > 0 => Ok(r),
        Ok(_) => Err("expected a rate above 0".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Slots of a TX ring: 1..=65536.
fn ring_frames(s: &str) -> Result<usize, String> {
    let n: usize = num_in(s)?;
    if (1..=65536).contains(&n) {
        Ok(n)
    } else {
        Err("expected 1..=65536".into())
    }
}

/// `2` or `3`: a TX ring's `TPACKET_V2` or `TPACKET_V3` slot headers.
pub fn tpacket_version(s: &str) -> Result<ipxmit_drivers::packet::TpacketVersion, String> {
    use ipxmit_drivers::packet::TpacketVersion;
    match s {
        "2" | "v2" => Ok(TpacketVersion::V2),
        "3" | "v3" => Ok(TpacketVersion::V3),
        _ => Err("expected 2 or 3".into()),
    }
}

/// Options that only some link types take.
fn check_link_options(s: &LinkSpec) -> Result<(), ParseError> {
    let missing = |what| ParseError::Missing { cmd: "link", what };
    let unexpected = |word: &str| ParseError::Unexpected {
        cmd: "link",
        word: format!("{} (not for type {})", quote(word), s.kind.name()),
    };
    if s.kind == LinkKind::Pcap && s.file.is_none() {
        return Err(missing("file PATH (type pcap)"));
    }
    if s.file.is_some() && s.kind != LinkKind::Pcap {
        return Err(unexpected("file"));
    }
    let os = matches!(s.kind, LinkKind::Tap | LinkKind::Packet | LinkKind::Xdp);
    if s.ifname.is_some() && !os {
        return Err(unexpected("ifname"));
    }
    if (s.peer.is_some() || s.peer_lladdr.is_some()) && s.kind != LinkKind::Mem {
        return Err(unexpected("peer"));
    }
    if s.rate.is_some() && s.kind != LinkKind::Mem {
        return Err(unexpected("rate"));
    }
    if s.ring.is_some() && !matches!(s.kind, LinkKind::Packet | LinkKind::Xdp) {
        return Err(unexpected("ring"));
    }
    if s.kind == LinkKind::Xdp && s.ring.is_some_and(|r| !r.is_power_of_two() || r < 2) {
        return Err(ParseError::Unexpected {
            cmd: "link",
            word: "ring (type xdp: a power of two, 2..=32768)".into(),
        });
    }
    if s.queue.is_some() && s.kind != LinkKind::Xdp {
        return Err(unexpected("queue"));
    }
    if s.zerocopy.is_some() && s.kind != LinkKind::Xdp {
        return Err(unexpected("zerocopy"));
    }
    if s.tpacket.is_some() && s.kind != LinkKind::Packet {
        return Err(unexpected("tpacket"));
    }
    if s.tpacket.is_some() && s.ring.is_none() {
        return Err(missing("ring FRAMES (before tpacket)"));
    }
    if s.peer_lladdr.is_some() && s.peer.is_none() {
        return Err(missing("peer ADDR (before peerlladdr)"));
    }
    Ok(())
}

/// `dev NAME`.
fn dev_clause(w: &mut Words<'_>) -> Result<String, ParseError> {
    match w.need("dev NAME")? {
        "dev" => Ok(name_word(w, "device name")?.to_string()),
        other => Err(w.unexpected(other)),
    }
}

fn parse_qdisc(rest: &[&str]) -> Result<Command, ParseError> {
    let mut w = Words::new("qdisc", rest);
    match w.need("sub-command (replace)")? {
        "replace" | "add" => {}
        other => {
            return Err(ParseError::UnknownSub {
                cmd: "qdisc",
                word: quote(other),
                expected: "replace",
            })
        }
    }
    let dev = dev_clause(&mut w)?;
    match w.need("root KIND")? {
        "root" => {}
        other => {
            return Err(ParseError::MissingBefore {
                cmd: "qdisc",
                what: "\"root\" (qdisc replace dev DEV root KIND [options])",
                word: quote(other),
            })
        }
    }
    let spec_words: Vec<&str> = w.it.by_ref().copied().collect();
    let spec = QdiscSpec::parse(&spec_words).map_err(|e| {
        let v = spec_words.join(" ");
        w.invalid("qdisc", &v, e)
    })?;
    Ok(Command::Qdisc { dev, spec })
}

fn parse_capture(rest: &[&str]) -> Result<Command, ParseError> {
    let mut w = Words::new("capture", rest);
    let dev = dev_clause(&mut w)?;
    match w.need("file PATH")? {
        "file" => {}
        other => return Err(w.unexpected(other)),
    }
    let file = PathBuf::from(w.need("file path")?);
    w.end()?;
    Ok(Command::Capture { dev, file })
}

/// An IP protocol: a number or a common name.
pub fn protocol(s: &str) -> Result<u8, String> {
    let named = match s {
        "icmp" => Some(1),
        "igmp" => Some(2),
        "ipip" => Some(4),
        "tcp" => Some(6),
        "udp" => Some(17),
        "gre" => Some(47),
        "esp" => Some(50),
        "ah" => Some(51),
        "sctp" => Some(132),
        "raw" => Some(255),
        _ => None,
    };
    match named {
        Some(p) => Ok(p),
        None => num_in::<u8>(s)
            .map_err(|_| "expected 0..=255 or a name (icmp, tcp, udp, gre, ...)".into()),
    }
}

fn parse_socket(rest: &[&str]) -> Result<Command, ParseError> {
    let mut w = Words::new("socket", rest);
    let name = name_word(&mut w, "socket name")?.to_string();
    let kind = match w.need("socket type (udp, raw PROTO, rawhdrincl PROTO)")? {
        "udp" => SockKind::Udp,
        "raw" => SockKind::Raw(w.value("protocol", protocol)?),
        "rawhdrincl" => SockKind::RawHdrincl(w.value("protocol", protocol)?),
        other => {
            return Err(w.invalid(
                "socket type",
                other,
                "expected udp, raw PROTO or rawhdrincl PROTO",
            ))
        }
    };
    let (mut bind, mut connect) = (None, None);
    while let Some(k) = w.next() {
        match k {
            "bind" => bind = Some(w.value("address", sockaddr)?),
            "connect" => connect = Some(w.value("address", sockaddr)?),
            _ => return Err(w.unexpected(k)),
        }
    }
    Ok(Command::Socket {
        name,
        kind,
        bind,
        connect,
    })
}

fn parse_bind_connect(bind: bool, rest: &[&str]) -> Result<Command, ParseError> {
    let mut w = Words::new(if bind { "bind" } else { "connect" }, rest);
    let sock = name_word(&mut w, "socket name")?.to_string();
    let addr = w.value("address", sockaddr)?;
    w.end()?;
    Ok(if bind {
        Command::Bind { sock, addr }
    } else {
        Command::Connect { sock, addr }
    })
}

/// `0b10..` style hex string, with optional `0x` prefix.
pub fn hex_bytes(s: &str) -> Result<Vec<u8>, String> {
    let h = s.strip_prefix("0x").unwrap_or(s);
    if !h.len().is_multiple_of(2) || !h.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("expected an even number of hex digits".into());
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

fn ttl(s: &str) -> Result<Option<u8>, String> {
    if s == "-1" {
        return Ok(None);
    }
    num_in::<u8>(s).map(Some)
}

fn parse_sockopt(rest: &[&str]) -> Result<Command, ParseError> {
    let mut w = Words::new("sockopt", rest);
    let sock = name_word(&mut w, "socket name")?.to_string();
    let opt = match w.need("option name")? {
        "ip_tos" => SockOpt::Tos(w.value("ip_tos", num_in::<u8>)?),
        "ip_ttl" => SockOpt::Ttl(w.value("ip_ttl", ttl)?),
        "ip_mtu_discover" => SockOpt::MtuDiscover(w.value("ip_mtu_discover", |s| s.parse())?),
        "ip_recverr" => SockOpt::RecvErr(w.value("ip_recverr", bool01)?),
        "ip_options" => SockOpt::Options(w.value("ip_options", hex_bytes)?),
        "ip_hdrincl" => SockOpt::Hdrincl(w.value("ip_hdrincl", bool01)?),
        "so_broadcast" => SockOpt::Broadcast(w.value("so_broadcast", bool01)?),
        "ip_multicast_ttl" => SockOpt::MulticastTtl(w.value("ip_multicast_ttl", ttl)?),
        "ip_multicast_if" => {
            SockOpt::MulticastIf(w.value("ip_multicast_if", |s| Ok::<_, String>(s.to_string()))?)
        }
        "ip_multicast_loop" => SockOpt::MulticastLoop(w.value("ip_multicast_loop", bool01)?),
        "so_no_check" => SockOpt::NoCheck(w.value("so_no_check", bool01)?),
        "udp_segment" => SockOpt::Segment(w.value("udp_segment", num_in::<u32>)?),
        "udp_cork" => SockOpt::Cork(w.value("udp_cork", bool01)?),
        "so_sndbuf" => SockOpt::SndBuf(w.value("so_sndbuf", num_in::<usize>)?),
        "so_priority" => SockOpt::Priority(w.value("so_priority", num_in::<u32>)?),
        "so_mark" => SockOpt::Mark(w.value("so_mark", num_in::<u32>)?),
        "so_sndtimeo" => SockOpt::SndTimeo(w.value("so_sndtimeo", duration)?),
        "so_bindtodevice" => {
            let d = w.need("device name (\"\" unbinds)")?;
            SockOpt::BindToDevice(if d == "\"\"" {
                String::new()
            } else {
                d.to_string()
            })
        }
        "so_zerocopy" => SockOpt::ZeroCopy(w.value("so_zerocopy", bool01)?),
        "so_reuseaddr" => SockOpt::ReuseAddr(w.value("so_reuseaddr", bool01)?),
        "so_reuseport" => SockOpt::ReusePort(w.value("so_reuseport", bool01)?),
        "so_max_pacing_rate" => SockOpt::MaxPacingRate(w.value("so_max_pacing_rate", pacing_rate)?),
        "so_txtime" => return parse_txtime_opt(sock, w),
        other => {
            return Err(w.invalid(
                "option",
                other,
                "expected ip_tos, ip_ttl, ip_mtu_discover, ip_recverr, ip_options, ip_hdrincl, \
                 ip_multicast_ttl, ip_multicast_if, ip_multicast_loop, so_broadcast, \
                 so_no_check, udp_segment, udp_cork, so_sndbuf, so_priority, so_mark, \
                 so_zerocopy, so_reuseaddr, so_reuseport, so_max_pacing_rate or so_txtime",
            ))
        }
    };
    w.end()?;
    Ok(Command::Sockopt { sock, opt })
}

/// `so_max_pacing_rate`'s value: `unlimited`; a bare number, bytes per
/// second as the kernel takes it (up to 4294967295 as a 32-bit
/// `setsockopt`, whose `~0U` means no cap; above, as a 64-bit one); or a
/// tc rate (`1mbit`, `125kbps`), in bits per second, divided by 8.
fn pacing_rate(s: &str) -> Result<u64, String> {
    if s == "unlimited" {
        return Ok(u64::MAX);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let n: u64 = num_in(s)?;
        return Ok(match u32::try_from(n) {
            Ok(v) => ipxmit::socket::inet::max_pacing_rate_u32(v),
            Err(_) => n,
        });
    }
    ipxmit::units::parse_rate(s)
        .map(|bits| bits / 8)
        .map_err(|e| e.to_string())
}

/// The rest of `sockopt NAME so_txtime`: `[clockid monotonic|realtime|tai|N]
/// [deadline_mode] [report_errors]` (`struct sock_txtime`; the clock
/// defaults to monotonic).
fn parse_txtime_opt(sock: String, mut w: Words<'_>) -> Result<Command, ParseError> {
    use ipxmit::socket::{
        CLOCK_MONOTONIC, CLOCK_REALTIME, CLOCK_TAI, SOF_TXTIME_DEADLINE_MODE,
        SOF_TXTIME_REPORT_ERRORS,
    };
    let (mut clockid, mut flags) = (CLOCK_MONOTONIC, 0);
    while let Some(k) = w.next() {
        match k {
            "clockid" => {
                clockid = w.value("clockid", |c| match c {
                    "monotonic" => Ok(CLOCK_MONOTONIC),
                    "realtime" => Ok(CLOCK_REALTIME),
                    "tai" => Ok(CLOCK_TAI),
                    n => num_in::<i32>(n),
                })?
            }
            "deadline_mode" => flags |= SOF_TXTIME_DEADLINE_MODE,
            "report_errors" => flags |= SOF_TXTIME_REPORT_ERRORS,
            _ => return Err(w.unexpected(k)),
        }
    }
    let opt = SockOpt::Txtime { clockid, flags };
    Ok(Command::Sockopt { sock, opt })
}

/// A `send`'s `txtime` value: `+TIME` after the clock at the send, or
/// `TIME` after its origin; the times of `sleep`.
fn txtime(s: &str) -> Result<TxTime, String> {
    match s.strip_prefix('+') {
        Some(rel) => duration(rel).map(TxTime::After),
        None => duration(s).map(TxTime::At),
    }
}

/// The longest `send ... len N`: the call is made, and answered as the
/// kernel answers it (`EMSGSIZE` above 65,507 bytes for UDP), up to 16 MiB.
pub const MAX_SEND_LEN: usize = 16 << 20;

fn parse_send(rest: &[&str]) -> Result<Command, ParseError> {
    parse_send_as("send", rest)
}

/// `send`'s words, for `cmd` (`send` or `explain`, whose errors name it).
fn parse_send_as(cmd: &'static str, rest: &[&str]) -> Result<Command, ParseError> {
    let mut w = Words::new(cmd, rest);
    let sock = name_word(&mut w, "socket name")?.to_string();
    let (mut to, mut len, mut flags) = (None, None, MsgFlags::NONE);
    let mut txtime_v = None;
    while let Some(k) = w.next() {
        match k {
            "to" => to = Some(w.value("destination", sockaddr)?),
            "len" => {
                len = Some(w.value("length", |s| {
                    values::number_in(s, 0, MAX_SEND_LEN as u64)
                        .map(|n| n as usize)
                        .map_err(|e| e.to_string())
                })?)
            }
            "more" => flags = flags.with(MsgFlags::MORE),
            "dontwait" => flags = flags.with(MsgFlags::DONTWAIT),
            "probe" => flags = flags.with(MsgFlags::PROBE),
            "confirm" => flags = flags.with(MsgFlags::CONFIRM),
            "zerocopy" => flags = flags.with(MsgFlags::ZEROCOPY),
            "txtime" => txtime_v = Some(w.value("txtime", txtime)?),
            _ => return Err(w.unexpected(k)),
        }
    }
    let len = len.ok_or(ParseError::Missing { cmd, what: "len N" })?;
    Ok(Command::Send(SendArgs {
        sock,
        to,
        len,
        flags,
        txtime: txtime_v,
    }))
}

/// `sleep D`: tc's times (a bare number is microseconds, as tc's
/// `get_time`), and nanoseconds too (`500ns`, as `get_time64`), so that a
/// script can step to a shaper's exact departure times.
fn parse_sleep(rest: &[&str]) -> Result<Command, ParseError> {
    let mut w = Words::new("sleep", rest);
    let d = w.value("duration", duration)?;
    w.end()?;
    Ok(Command::Sleep(d))
}

/// A duration as `sleep` takes it: tc's times, and nanoseconds too.
fn duration(s: &str) -> Result<Duration, String> {
    let ns = ["ns", "nsec", "nsecs"]
        .iter()
        .any(|u| s.to_ascii_lowercase().ends_with(u));
    let parse = if ns {
        ipxmit::units::parse_time64
    } else {
        ipxmit::units::parse_time
    };
    parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(l: &str) -> Command {
        parse_line(l).unwrap().unwrap()
    }

    fn err(l: &str) -> String {
        parse_line(l).unwrap_err().to_string()
    }

    #[test]
    fn sleep_takes_tc_times_and_nanoseconds() {
        assert_eq!(ok("sleep 250"), Command::Sleep(Duration::from_micros(250)));
        assert_eq!(ok("sleep 3us"), Command::Sleep(Duration::from_micros(3)));
        assert_eq!(
            ok("sleep 1500ns"),
            Command::Sleep(Duration::from_nanos(1500))
        );
        assert_eq!(ok("sleep 2ms"), Command::Sleep(Duration::from_millis(2)));
    }

    #[test]
    fn comments_and_blanks() {
        assert_eq!(parse_line("   # only a comment").unwrap(), None);
        assert_eq!(parse_line("").unwrap(), None);
        assert_eq!(ok("close s1 # bye"), Command::Close { sock: "s1".into() });
    }

    #[test]
    fn link_add_options() {
        let Command::LinkAdd(s) =
            ok("link add eth0 type mem mtu 9000 txqueues 4 offload csum,sg peer 10.0.0.2")
        else {
            panic!()
        };
        assert_eq!(s.kind, LinkKind::Mem);
        assert_eq!(s.mtu, Some(9000));
        assert_eq!(s.txqueues, Some(4));
        assert_eq!(s.peer, Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert!(s.offload.unwrap().contains(Features::SG));
        assert!(err("link add eth0 type pcap").contains("missing file PATH"));
        assert!(err("link add eth0 type mem file x").contains("not for type mem"));
        assert!(err("link add eth0 type wire").contains("invalid link type \"wire\""));
        let Command::LinkAdd(s) = ok("link add eth0 type packet ifname veth0 ring 256") else {
            panic!()
        };
        assert_eq!((s.kind, s.ring), (LinkKind::Packet, Some(256)));
        assert!(err("link add eth0 type mem ring 8").contains("not for type mem"));
        assert!(err("link add eth0 type packet ring 0").contains("expected 1..=65536"));
        let Command::LinkAdd(s) = ok("link add p0 type packet ifname xa0 ring 64 tpacket 2") else {
            panic!()
        };
        use ipxmit_drivers::packet::TpacketVersion;
        assert_eq!((s.ring, s.tpacket), (Some(64), Some(TpacketVersion::V2)));
        assert!(err("link add p0 type packet tpacket 3").contains("ring FRAMES"));
        assert!(err("link add p0 type packet ring 8 tpacket 4").contains("expected 2 or 3"));
        assert!(err("link add t0 type tap tpacket 3").contains("not for type tap"));
        let line = "link add x0 type xdp ifname veth0 queue 1 ring 512 zerocopy off";
        let Command::LinkAdd(s) = ok(line) else {
            panic!()
        };
        assert_eq!(s.kind, LinkKind::Xdp);
        assert_eq!(
            (s.queue, s.ring, s.zerocopy),
            (Some(1), Some(512), Some(false))
        );
        assert!(err("link add x0 type xdp ring 100").contains("a power of two"));
        assert!(err("link add x0 type packet queue 1").contains("not for type packet"));
        assert!(err("link add x0 type mem zerocopy on").contains("not for type mem"));
    }

    #[test]
    fn sends_and_flags() {
        let Command::Send(s) = ok("send s1 to 10.0.0.2:9000 len 100 more dontwait") else {
            panic!()
        };
        assert_eq!(s.len, 100);
        assert!(s.flags.contains(MsgFlags::MORE) && s.flags.contains(MsgFlags::DONTWAIT));
        assert_eq!(s.to, Some("10.0.0.2:9000".parse().unwrap()));
        assert!(err("send s1 to 10.0.0.2").contains("missing len N"));
        // The kernel answers a long send (EMSGSIZE); only 16 MiB is a bound.
        assert!(matches!(ok("send s1 len 70000"), Command::Send(s) if s.len == 70000));
        assert!(err("send s1 len 16777217").contains("out of range 0..=16777216"));
    }

    #[test]
    fn pacing_and_txtime_options() {
        let opt = |l: &str| match ok(l) {
            Command::Sockopt { opt, .. } => opt,
            c => panic!("{c:?}"),
        };
        assert_eq!(
            opt("sockopt s1 so_max_pacing_rate 125000"),
            SockOpt::MaxPacingRate(125_000)
        );
        assert_eq!(
            opt("sockopt s1 so_max_pacing_rate 1mbit"),
            SockOpt::MaxPacingRate(125_000)
        );
        for none in ["4294967295", "unlimited"] {
            let l = format!("sockopt s1 so_max_pacing_rate {none}");
            assert_eq!(opt(&l), SockOpt::MaxPacingRate(u64::MAX));
        }
        assert_eq!(
            opt("sockopt s1 so_max_pacing_rate 5000000000"),
            SockOpt::MaxPacingRate(5_000_000_000)
        );
        assert_eq!(
            opt("sockopt s1 so_txtime"),
            SockOpt::Txtime {
                clockid: 1,
                flags: 0
            }
        );
        assert_eq!(
            opt("sockopt s1 so_txtime clockid tai deadline_mode report_errors"),
            SockOpt::Txtime {
                clockid: 11,
                flags: 3
            }
        );
        assert!(err("sockopt s1 so_txtime clockid x").contains("invalid clockid"));
        let Command::Send(s) = ok("send s1 to 10.0.0.2:9 len 1 txtime +5ms") else {
            panic!()
        };
        assert_eq!(s.txtime, Some(TxTime::After(Duration::from_millis(5))));
        let Command::Send(s) = ok("send s1 to 10.0.0.2:9 len 1 txtime 1500ns") else {
            panic!()
        };
        assert_eq!(s.txtime, Some(TxTime::At(Duration::from_nanos(1500))));
    }

    #[test]
    fn error_messages_name_the_word() {
        assert!(err("frob x").starts_with("unknown command \"frob\""));
        // `addr`/`neigh`/`link set` are `ip` lines: ip's messages.
        assert_eq!(
            err("addr add 10.0.0.300/24 dev eth0"),
            "Error: any valid prefix is expected rather than \"10.0.0.300/24\"."
        );
        assert!(err("sockopt s1 ip_ttl 300").contains("300 is out of range"));
        assert!(err("sockopt s1 ip_frob 1").contains("invalid option \"ip_frob\""));
        assert_eq!(
            err("neigh add 10.0.0.1 lladdr 02:00 dev eth0"),
            "Error: Invalid link address."
        );
        assert!(err("qdisc replace dev eth0 root sfqx").contains("unknown qdisc kind"));
        assert_eq!(
            err("route add 10.60.0.0/16 dev eth0 foo"),
            "Error: either \"to\" is duplicate, or \"foo\" is a garbage."
        );
    }

    #[test]
    fn values() {
        assert_eq!(hex_bytes("0x01020304").unwrap(), vec![1, 2, 3, 4]);
        assert!(hex_bytes("123").is_err());
        assert_eq!(protocol("gre").unwrap(), 47);
        assert_eq!(protocol("253").unwrap(), 253);
        assert_eq!(mac("02:00:00:00:00:fe").unwrap().0[5], 0xfe);
        assert_eq!(ok("sleep 20ms"), Command::Sleep(Duration::from_millis(20)));
    }
}
