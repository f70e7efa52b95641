//! Carrying out script commands on a host: a [`Stack`] with the script's links,
//! sockets and captures.
//!
//! Time: by default the stack runs on a virtual clock ([`ManualClock`]) that
//! only `sleep` moves, so neighbour and qdisc timers fire at exact, repeatable
//! times and scripts give the same output on every run. `--realtime` uses the
//! monotonic clock, and `sleep` then waits for real (for `tap`/`packet` links,
//! whose far end is the kernel).
//!
//! After every command the host settles: deferred transmit work runs, in-memory
//! wires are drained (their peers answer ARP, which is fed back), and OS links
//! are polled for received frames.

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ipxmit::netfilter::HookPoint;
use ipxmit::socket::explain::Plan;
use ipxmit::socket::inet::InetSock;
use ipxmit::socket::{Cmsg, ErrQueueEntry};
use ipxmit::stack::ConfigError;
use ipxmit::stats::fate::MsgFate;
use ipxmit::{Instant, ManualClock, MsgFlags, RawSocket, SendError, Stack, UdpSocket};
use ipxmit_drivers::capture::PcapTap;

use super::links::{build_link, Link, LinkError};
use super::parse::{Command, ParseError, SendArgs, SockKind, SockOpt, TxTime};

/// A capture tap writing to a file.
pub type FileTap = PcapTap<BufWriter<std::fs::File>>;

/// Why a line could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The line does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The stack refused a configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A device error (`link set mtu`).
    #[error(transparent)]
    Dev(#[from] ipxmit::dev::DevError),
    /// A link could not be made.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// No socket of that name.
    #[error("unknown socket \"{0}\"")]
    NoSocket(String),
    /// A socket of that name exists.
    #[error("socket \"{0}\" already exists")]
    SocketExists(String),
    /// A file could not be created or written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A `tc` line the kernel (or tc) refuses: tc's message.
    #[error("{0}")]
    Tc(String),
    /// An `ip` or `sysctl` line the kernel (or the tool) refuses: the
    /// tool's message.
    #[error("{0}")]
    Tool(String),
    /// A blocking send would wait forever.
    #[error("send would block forever: the send buffer is full and nothing pending will free it (use dontwait)")]
    WouldBlock,
    /// An `inject` that has nothing to quote.
    #[error(transparent)]
    Inject(#[from] super::rx::InjectError),
}

/// What a command produced that the user sees.
#[derive(Debug)]
pub enum Event {
    /// A `send` and what it returned.
    Send {
        /// Socket name.
        sock: String,
        /// Bytes taken, or the error.
        result: Result<usize, SendError>,
    },
    /// An `errqueue` read.
    Errqueue {
        /// Socket name.
        sock: String,
        /// The entries read, oldest first.
        entries: Vec<ErrQueueEntry>,
    },
    /// A socket call (bind, connect, sockopt) that failed with an errno.
    SockCall {
        /// `bind`, `connect` or `sockopt`.
        op: &'static str,
        /// Socket name.
        sock: String,
        /// The option, for `sockopt`.
        what: Option<&'static str>,
        /// The error.
        err: SendError,
    },
    /// A close (`close`, or the end of the script) that discarded a pending
    /// (corked) datagram, never sent: the kernel's `udp_destroy_sock` /
    /// `raw_destroy` → `ip_flush_pending_frames` frees it and counts nothing.
    Discarded {
        /// Socket name.
        sock: String,
        /// Payload bytes pending (the UDP header not counted).
        bytes: usize,
        /// The datagram's destination (port 0 on a raw socket).
        to: SocketAddrV4,
    },
    /// A `getsockopt` and what it read.
    Getsockopt {
        /// Socket name.
        sock: String,
        /// The option.
        opt: super::sockq::GetOpt,
        /// The value, or the error.
        result: Result<i64, SendError>,
    },
    /// A `sendmmsg` and what it returned.
    Sendmmsg {
        /// Socket name.
        sock: String,
        /// The result.
        result: super::sockq::MmsgResult,
    },
    /// A `recv` and what it returned.
    Recv {
        /// Socket name.
        sock: String,
        /// The datagram read, or the error.
        result: Result<ipxmit::socket::inbox::Datagram, SendError>,
    },
    /// An `explain` and the plan it found.
    Explain {
        /// Socket name.
        sock: String,
        /// The plan and the host's part.
        result: Box<super::explain::Explained>,
    },
    /// What a query printed (`tc ... show`), as the tool prints it.
    Output {
        /// The tool (`tc`).
        op: &'static str,
        /// The text.
        text: String,
    },
}

/// A socket of the script.
enum Sock {
    Udp(UdpSocket),
    Raw { s: RawSocket, proto: u8 },
}

impl Sock {
    fn inet(&mut self) -> &mut InetSock {
        match self {
            Sock::Udp(s) => s,
            Sock::Raw { s, .. } => s,
        }
    }

    /// Kernel: `udp_destroy_sock()` / `raw_destroy()`: the close discards a
    /// pending (corked) datagram (`ip_flush_pending_frames`, no counter);
    /// what it was, as a result for `name`.
    fn close(mut self, name: &str) -> Option<Event> {
        let (bytes, to) = match &mut self {
            Sock::Udp(u) => {
                let to = u.pending_dest()?;
                (u.pending_len().saturating_sub(UDP_HLEN), to)
            }
            Sock::Raw { s, .. } => {
                let to = SocketAddrV4::new(s.pending_daddr()?, 0);
                (s.pending_len(), to)
            }
        };
        match &mut self {
            Sock::Udp(u) => u.flush(),
            Sock::Raw { s, .. } => s.flush(),
        }
        Some(Event::Discarded {
            sock: name.to_string(),
            bytes,
            to,
        })
    }
}

/// The UDP header the cork's length counts.
const UDP_HLEN: usize = 8;

/// How the host keeps time.
enum Timebase {
    Virtual(ManualClock),
    Real,
}

/// Most rounds of settling after one command.
const SETTLE_ROUNDS: usize = 64;
/// Most timer steps one `sleep` (or one blocked send) takes.
const MAX_STEPS: usize = 1_000_000;
/// Longest a blocked send waits on the real clock.
const REAL_BLOCK_LIMIT: Duration = Duration::from_secs(10);

/// A script host: stack, links, sockets, captures.
pub struct Host {
    stack: Arc<Stack>,
    time: Timebase,
    links: Vec<Link>,
    socks: BTreeMap<String, Sock>,
    captures: Vec<(String, Arc<FileTap>)>,
    sends: u64,
    pattern: Vec<u8>,
    sampler: Option<crate::plot::Sampler>,
    nft: ipxmit::nft::Nft,
}

impl Host {
    /// An empty host on the virtual clock, or the real one with `realtime`.
    pub fn new(realtime: bool) -> Host {
        let (stack, time) = if realtime {
            (Stack::new(), Timebase::Real)
        } else {
            let c = ManualClock::new();
            (Stack::with_clock(Arc::new(c.clone())), Timebase::Virtual(c))
        };
        Host {
            stack,
            time,
            links: Vec::new(),
            socks: BTreeMap::new(),
            captures: Vec::new(),
            sends: 0,
            pattern: (0..65535 + 256).map(|j| (7 * j % 256) as u8).collect(),
            sampler: None,
            nft: ipxmit::nft::Nft::new(),
        }
    }

    /// Samples every qdisc and class at each settling, for `--plot`.
    pub fn enable_plot(&mut self) {
        self.sampler = Some(crate::plot::Sampler::default());
    }

    /// Draws the samples into `path` (SVG).
    pub fn write_plot(&self, path: &std::path::Path) -> anyhow::Result<()> {
        match &self.sampler {
            Some(s) => s.write_svg(path),
            None => Ok(()),
        }
    }

    /// The stack.
    pub fn stack(&self) -> &Arc<Stack> {
        &self.stack
    }

    /// The links, in the order they were added.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The capture taps, with their file names.
    pub fn captures(&self) -> &[(String, Arc<FileTap>)] {
        &self.captures
    }

    /// Carries out one command, then settles the host.
    pub fn exec(&mut self, cmd: &Command) -> Result<Vec<Event>, ExecError> {
        let ev = self.dispatch(cmd)?;
        self.settle();
        Ok(ev)
    }

    fn dispatch(&mut self, cmd: &Command) -> Result<Vec<Event>, ExecError> {
        let st = self.stack.clone();
        match cmd {
            Command::LinkAdd(spec) => {
                let l = build_link(&st, spec, self.links.len())?;
                self.links.push(l);
            }
            Command::Ip(c) => {
                let out = super::ip::run(&st, c).map_err(ExecError::Tool)?;
                return Ok(output("ip", out));
            }
            Command::IpRoute(c) => {
                let out = super::iproute::run(&st, c).map_err(ExecError::Tool)?;
                return Ok(output("ip", out));
            }
            Command::Sysctl(c) => {
                let out = super::sysctl::run(&st, c).map_err(ExecError::Tool)?;
                return Ok(output("sysctl", Some(out).filter(|o| !o.is_empty())));
            }
            Command::Qdisc { dev, spec } => st.replace_qdisc(dev, spec)?,
            Command::Tc(c) => {
                let out = super::tc::run(&st, c).map_err(ExecError::Tc)?;
                return Ok(out
                    .map(|text| Event::Output { op: "tc", text })
                    .into_iter()
                    .collect());
            }
            Command::Conntrack(c) => {
                let (out, err) = super::conntrack::run(&st, *c);
                eprint!("{err}");
                return Ok(output("conntrack", Some(out).filter(|o| !o.is_empty())));
            }
            Command::Nft(c) => {
                let out = super::nft::run(&st, &mut self.nft, c).map_err(ExecError::Tool)?;
                return Ok(output("nft", out));
            }
            Command::Capture { dev, file } => self.capture(dev, file)?,
            Command::Sleep(d) => self.sleep(*d),
            Command::Inject { dev, what } => super::rx::inject(&st, &*st.device(dev)?, what)?,
            _ => return self.socket_cmd(cmd),
        }
        Ok(Vec::new())
    }

    fn socket_cmd(&mut self, cmd: &Command) -> Result<Vec<Event>, ExecError> {
        let ev = match cmd {
            Command::Socket {
                name,
                kind,
                bind,
                connect,
            } => return self.open(name, *kind, *bind, *connect),
            Command::Bind { sock, addr } => {
                let r = self.sock(sock)?.inet().bind(*addr);
                call_event("bind", sock, None, r)
            }
            Command::Connect { sock, addr } => {
                let r = self.sock(sock)?.inet().connect(*addr);
                call_event("connect", sock, None, r)
            }
            Command::Sockopt { sock, opt } => {
                let r = setsockopt(self.sock(sock)?, opt);
                call_event("sockopt", sock, Some(opt_name(opt)), r)
            }
            Command::Send(a) => Some(self.send(a)?),
            Command::Explain(a) => Some(self.explain(a)?),
            Command::Errqueue { sock } => {
                let s = self.sock(sock)?.inet();
                let entries = std::iter::from_fn(|| s.recv_err()).collect();
                Some(Event::Errqueue {
                    sock: sock.clone(),
                    entries,
                })
            }
            Command::Getsockopt { sock, opt } => {
                let result = super::sockq::getsockopt(self.sock(sock)?.inet(), *opt);
                Some(Event::Getsockopt {
                    sock: sock.clone(),
                    opt: *opt,
                    result,
                })
            }
            Command::Sendmmsg {
                sock,
                msgs,
                flags,
                fates,
            } => Some(self.sendmmsg(sock, msgs, (*flags, *fates))?),
            Command::Recv { sock } => {
                let result = match self.sock(sock)? {
                    Sock::Udp(u) => u.recv_from(),
                    Sock::Raw { .. } => Err(SendError::NotSupported("recv on a raw socket")),
                };
                Some(Event::Recv {
                    sock: sock.clone(),
                    result,
                })
            }
            Command::Close { sock } => match self.socks.remove(sock) {
                Some(s) => s.close(sock),
                None => return Err(ExecError::NoSocket(sock.clone())),
            },
            _ => None,
        };
        Ok(ev.into_iter().collect())
    }

    /// The end of the script (the process exits and its sockets close):
    /// closes every socket left open, in name order, and reports each
    /// pending (corked) datagram so discarded.
    pub fn close_all(&mut self) -> Vec<Event> {
        let socks = std::mem::take(&mut self.socks);
        socks
            .into_iter()
            .filter_map(|(name, s)| s.close(&name))
            .collect()
    }

    fn sock(&mut self, name: &str) -> Result<&mut Sock, ExecError> {
        self.socks
            .get_mut(name)
            .ok_or_else(|| ExecError::NoSocket(name.to_string()))
    }

    fn open(
        &mut self,
        name: &str,
        kind: SockKind,
        bind: Option<SocketAddrV4>,
        connect: Option<SocketAddrV4>,
    ) -> Result<Vec<Event>, ExecError> {
        if self.socks.contains_key(name) {
            return Err(ExecError::SocketExists(name.to_string()));
        }
        let mut s = match kind {
            SockKind::Udp => Sock::Udp(UdpSocket::new(&self.stack)),
            SockKind::Raw(p) | SockKind::RawHdrincl(p) => {
                let mut s = RawSocket::new(&self.stack, p);
                s.set_hdrincl(matches!(kind, SockKind::RawHdrincl(_)) || p == 255);
                Sock::Raw { s, proto: p }
            }
        };
        let mut ev = Vec::new();
        if let Some(a) = bind {
            ev.extend(call_event("bind", name, None, s.inet().bind(a)));
        }
        if let Some(a) = connect {
            ev.extend(call_event("connect", name, None, s.inet().connect(a)));
        }
        self.socks.insert(name.to_string(), s);
        Ok(ev)
    }

    fn capture(&mut self, dev: &str, file: &Path) -> Result<(), ExecError> {
        let d = self.stack.device(dev)?;
        let t = PcapTap::create(file, &d, self.stack.now()).map_err(|source| ExecError::Io {
            path: file.display().to_string(),
            source,
        })?;
        d.add_tap(t.clone());
        self.captures.push((file.display().to_string(), t));
        Ok(())
    }

    /// Payload of the `k`-th send: byte `i` is `(7*i + k) mod 256`; longer
    /// than any datagram (`len` up to `MAX_SEND_LEN`, for the kernel's
    /// `EMSGSIZE`), it is built byte by byte.
    fn payload(&self, k: u64, len: usize) -> Vec<u8> {
        // 183 is the inverse of 7 modulo 256: pattern[m] = 7m = k (mod 256).
        let m = (183 * (k % 256)) as usize % 256;
        match self.pattern.get(m..m + len) {
            Some(p) => p.to_vec(),
            None => payload_of(k, len),
        }
    }

    /// `sendmmsg`: one `send_batch` call with each message's payload
    /// (`send_batch_fates` when the line asks for `fates`).
    fn sendmmsg(
        &mut self,
        name: &str,
        msgs: &[super::sockq::MmsgArgs],
        (flags, with_fates): (MsgFlags, bool),
    ) -> Result<Event, ExecError> {
        let payloads: Vec<Vec<u8>> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| self.payload(self.sends + i as u64, m.len))
            .collect();
        let batch: Vec<ipxmit::BatchMsg<'_>> = msgs
            .iter()
            .zip(&payloads)
            .map(|(m, p)| ipxmit::BatchMsg::new(p, m.to))
            .collect();
        let mut fates = with_fates.then(|| vec![MsgFate::NotSent; batch.len()]);
        let ret = match (self.sock(name)?, fates.as_mut()) {
            (Sock::Udp(s), Some(f)) => s.send_batch_fates(&batch, flags, f),
            (Sock::Udp(s), None) => s.send_batch(&batch, flags),
            (Sock::Raw { .. }, _) => Err(SendError::NotSupported("sendmmsg on a raw socket")),
        };
        self.sends += *ret.as_ref().unwrap_or(&0) as u64;
        Ok(Event::Sendmmsg {
            sock: name.to_string(),
            result: super::sockq::MmsgResult {
                msgs: msgs.to_vec(),
                ret,
                fates,
            },
        })
    }

    /// `explain`: the plan of the send `a` describes, not made (a UDP
    /// socket's; a raw socket's is `EOPNOTSUPP`).
    fn explain(&mut self, a: &SendArgs) -> Result<Event, ExecError> {
        let chains = super::explain::chains(&self.nft.ruleset);
        let plan = match self.sock(&a.sock)? {
            Sock::Udp(s) => s.explain(a.len, a.to, a.flags),
            Sock::Raw { .. } => Err(SendError::NotSupported("explain on a raw socket")),
        };
        let driver = match &plan {
            Ok(p) => self.driver_name(&p.route.dev),
            Err(_) => String::new(),
        };
        let matched = match &plan {
            Ok(p) => self.would_match(p),
            Err(_) => Vec::new(),
        };
        let result = Box::new(super::explain::Explained {
            plan,
            chains,
            driver,
            matched,
        });
        Ok(Event::Explain {
            sock: a.sock.clone(),
            result,
        })
    }

    /// The nft rules that would match the plan's datagram at each hook it
    /// passes, asked without effect of the ruleset's program.
    fn would_match(&self, p: &Plan) -> Vec<(HookPoint, Vec<ipxmit::nft::RuleRef>)> {
        let Ok(dev) = self.stack.device(&p.route.dev) else {
            return Vec::new();
        };
        // One copy through both hooks: what LOCAL_OUT's rules set (a mark)
        // POST_ROUTING's see.
        let mut pkt = p.datagram.to_packet();
        p.hooks
            .iter()
            .map(|h| (h.point, self.nft.would_match_on(h.point, &mut pkt, &dev)))
            .collect()
    }

    /// The driver behind device `dev`: its link type's keyword, `lo` for
    /// the loopback device.
    fn driver_name(&self, dev: &str) -> String {
        let link = self.links().iter().find(|l| l.dev.name() == dev);
        match link {
            Some(l) => l.kind.name().to_string(),
            None if dev == "lo" => "loopback (lo)".to_string(),
            None => "unknown".to_string(),
        }
    }

    fn send(&mut self, a: &SendArgs) -> Result<Event, ExecError> {
        let k = self.sends;
        self.sends += 1;
        let blocks = match self.sock(&a.sock)? {
            // Only the first buffer of a UDP datagram waits for send buffer
            // (`sock_alloc_send_skb`); appends to a pending one do not.
            Sock::Udp(s) => s.pending_len() == 0 && !a.flags.contains(MsgFlags::DONTWAIT),
            Sock::Raw { .. } => false,
        };
        if blocks && !self.wait_for_sndbuf(&a.sock)? {
            // SO_SNDTIMEO ran out (on the script's clock): EAGAIN.
            return Ok(Event::Send {
                sock: a.sock.clone(),
                result: Err(SendError::Again),
            });
        }
        let payload = self.payload(k, a.len);
        let cmsg = Cmsg {
            txtime: a.txtime.map(|t| match t {
                TxTime::At(d) => Instant::ZERO + d,
                TxTime::After(d) => self.stack.now() + d,
            }),
        };
        let sock = self.sock(&a.sock)?;
        let result = match sock {
            Sock::Udp(s) => match a.to {
                // A zerocopy send lends its buffer, so frames may reference it.
                Some(d) if a.flags.contains(MsgFlags::ZEROCOPY) => {
                    s.send_to_zerocopy(payload.into(), d, a.flags)
                }
                to => s.sendmsg_cmsg(&payload, to, a.flags, &cmsg),
            },
            Sock::Raw { s, proto } => {
                let data = if s.hdrincl() {
                    let dst = a.to.map(|d| *d.ip()).or(s.peer_addr().map(|p| *p.ip()));
                    with_ip_header(*proto, dst.unwrap_or(Ipv4Addr::UNSPECIFIED), &payload)
                } else {
                    payload
                };
                s.sendmsg_cmsg(&data, a.to.map(|d| *d.ip()), a.flags, &cmsg)
            }
        };
        Ok(Event::Send {
            sock: a.sock.clone(),
            result,
        })
    }

    /// A blocking send waits while the send buffer is full
    /// (`sock_wait_for_wmem`): on the virtual clock, time jumps to each next
    /// timer until room appears. False when `SO_SNDTIMEO` ran out first
    /// (the clock then stands at its end): the send is `EAGAIN`.
    fn wait_for_sndbuf(&mut self, name: &str) -> Result<bool, ExecError> {
        let budget = self.sock(name)?.inet().budget().clone();
        let full = || budget.allocated() >= budget.limit();
        let real_start = std::time::Instant::now();
        let deadline = budget.sndtimeo().map(|t| self.stack.now() + t);
        let mut steps = 0;
        while full() {
            self.settle();
            if !full() {
                break;
            }
            steps += 1;
            let advanced = match &self.time {
                Timebase::Virtual(c) => match self.stack.next_wakeup() {
                    Some(t) if steps < MAX_STEPS => {
                        if let Some(d) = deadline.filter(|&d| t > d) {
                            c.set(d.max(self.stack.now()));
                            return Ok(false);
                        }
                        c.set(t.max(self.stack.now()));
                        true
                    }
                    _ => match deadline {
                        Some(d) => {
                            c.set(d.max(self.stack.now()));
                            return Ok(false);
                        }
                        None => false,
                    },
                },
                Timebase::Real => {
                    std::thread::sleep(Duration::from_millis(1));
                    if deadline.is_some_and(|d| self.stack.now() >= d) {
                        return Ok(false);
                    }
                    real_start.elapsed() < REAL_BLOCK_LIMIT
                }
            };
            if !advanced {
                return Err(ExecError::WouldBlock);
            }
        }
        Ok(true)
    }

    /// Runs deferred work, drains wires and polls receive until nothing moves.
    pub fn settle(&mut self) {
        // Every device keeps its last IPv4 datagram for `inject ... icmp`.
        for d in self.stack.devices() {
            d.remember_tx();
        }
        for _ in 0..SETTLE_ROUNDS {
            // One poll runs due timers (neighbour, qdisc watchdog) even when no
            // queue was rescheduled; then rescheduled queues until idle.
            self.stack.poll();
            self.stack.poll_until_idle(SETTLE_ROUNDS);
            let mut moved = self.stack.poll_rx(256);
            for l in &mut self.links {
                moved += l.drain(&self.stack);
            }
            if moved == 0 && !self.stack.notifier().is_pending() {
                break;
            }
        }
        if let Some(s) = &mut self.sampler {
            s.sample(&self.stack);
        }
    }

    /// `sleep`: moves time forward by `d`, running every timer due on the way.
    pub fn sleep(&mut self, d: Duration) {
        match &self.time {
            Timebase::Virtual(c) => {
                let c = c.clone();
                let target = self.stack.now() + d;
                for _ in 0..MAX_STEPS {
                    self.settle();
                    match self.stack.next_wakeup() {
                        Some(t) if t <= target && t > self.stack.now() => c.set(t),
                        _ => break,
                    }
                }
                c.set(target);
            }
            Timebase::Real => {
                let end = std::time::Instant::now() + d;
                while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
                    self.settle();
                    if left.is_zero() {
                        break;
                    }
                    // Woken at once by a received frame (an ARP reply
                    // releases the queued datagrams as in the kernel).
                    ipxmit_drivers::runner::wait_rx(
                        &self.stack,
                        left.min(Duration::from_millis(1)),
                    );
                }
            }
        }
        self.settle();
        let now = self.stack.now();
        for l in &mut self.links {
            l.expire(now);
        }
    }

    /// Flushes every capture file; returns the first error.
    pub fn flush_captures(&self) -> Result<(), ExecError> {
        for (path, t) in &self.captures {
            t.flush().map_err(|source| ExecError::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// What a query printed, as a result (none when it printed nothing).
fn output(op: &'static str, text: Option<String>) -> Vec<Event> {
    text.map(|text| Event::Output { op, text })
        .into_iter()
        .collect()
}

fn call_event(
    op: &'static str,
    sock: &str,
    what: Option<&'static str>,
    r: Result<(), SendError>,
) -> Option<Event> {
    r.err().map(|err| Event::SockCall {
        op,
        sock: sock.to_string(),
        what,
        err,
    })
}

/// The payload rule of a script's `k`-th send, byte by byte: byte `i` is
/// `(7*i + k) mod 256` (`ipxmit diff` gives the kernel the same bytes).
pub fn payload_of(k: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (7 * i as u64 + k) as u8).collect()
}

/// The 20-byte header a `rawhdrincl` send writes before its payload: version
/// 4, IHL 5, TOS 0, total length, ID 0, DF clear, TTL 64, the protocol,
/// checksum 0, source 0.0.0.0, the destination.
pub fn with_ip_header(proto: u8, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let total = (payload.len() + 20).min(0xffff) as u16;
    let mut v = Vec::with_capacity(payload.len() + 20);
    v.extend_from_slice(&[0x45, 0]);
    v.extend_from_slice(&total.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0, 64, proto, 0, 0, 0, 0, 0, 0]);
    v.extend_from_slice(&dst.octets());
    v.extend_from_slice(payload);
    v
}

/// The script name of an option.
pub fn opt_name(o: &SockOpt) -> &'static str {
    match o {
        SockOpt::Tos(_) => "ip_tos",
        SockOpt::Ttl(_) => "ip_ttl",
        SockOpt::MtuDiscover(_) => "ip_mtu_discover",
        SockOpt::RecvErr(_) => "ip_recverr",
        SockOpt::Options(_) => "ip_options",
        SockOpt::Hdrincl(_) => "ip_hdrincl",
        SockOpt::Broadcast(_) => "so_broadcast",
        SockOpt::MulticastTtl(_) => "ip_multicast_ttl",
        SockOpt::MulticastIf(_) => "ip_multicast_if",
        SockOpt::MulticastLoop(_) => "ip_multicast_loop",
        SockOpt::NoCheck(_) => "so_no_check",
        SockOpt::Segment(_) => "udp_segment",
        SockOpt::Cork(_) => "udp_cork",
        SockOpt::SndBuf(_) => "so_sndbuf",
        SockOpt::Priority(_) => "so_priority",
        SockOpt::Mark(_) => "so_mark",
        SockOpt::BindToDevice(_) => "so_bindtodevice",
        SockOpt::SndTimeo(_) => "so_sndtimeo",
        SockOpt::ZeroCopy(_) => "so_zerocopy",
        SockOpt::ReuseAddr(_) => "so_reuseaddr",
        SockOpt::ReusePort(_) => "so_reuseport",
        SockOpt::MaxPacingRate(_) => "so_max_pacing_rate",
        SockOpt::Txtime { .. } => "so_txtime",
    }
}

/// `setsockopt`: UDP-level options on a raw socket and `IP_HDRINCL` on a UDP
/// socket fail with `ENOPROTOOPT`, as in the kernel.
fn setsockopt(s: &mut Sock, o: &SockOpt) -> Result<(), SendError> {
    match (s, o) {
        (Sock::Udp(u), SockOpt::Segment(n)) => u.set_gso_size(*n),
        (Sock::Udp(u), SockOpt::Cork(on)) => u.set_cork(*on),
        (Sock::Raw { s, .. }, SockOpt::Hdrincl(on)) => {
            s.set_hdrincl(*on);
            Ok(())
        }
        (Sock::Raw { .. }, SockOpt::Segment(_) | SockOpt::Cork(_)) => {
            Err(SendError::NoProtoOpt("UDP option on a raw socket"))
        }
        (Sock::Udp(_), SockOpt::Hdrincl(_)) => {
            Err(SendError::NoProtoOpt("IP_HDRINCL on a non-raw socket"))
        }
        (s, o) => inet_opt(s.inet(), o),
    }
}

/// `ip_multicast_if ADDR|DEV`: a local address (`struct in_addr`), or a
/// device name taken as its index (`struct ip_mreqn`); an unknown device is
/// `EADDRNOTAVAIL`, as an unknown index is in the kernel.
fn multicast_if(i: &mut InetSock, v: &str) -> Result<(), SendError> {
    if let Ok(a) = v.parse::<Ipv4Addr>() {
        return i.set_multicast_if(a, 0);
    }
    let dev = i.stack().device(v);
    let ifindex = dev.map_err(|_| SendError::AddrNotAvail(Ipv4Addr::UNSPECIFIED))?;
    i.set_multicast_if(Ipv4Addr::UNSPECIFIED, ifindex.ifindex())
}

fn inet_opt(i: &mut InetSock, o: &SockOpt) -> Result<(), SendError> {
    match o {
        SockOpt::Tos(t) => i.set_tos(*t),
        SockOpt::Ttl(t) => i.set_ttl(*t)?,
        SockOpt::MtuDiscover(m) => i.set_mtu_discover(*m),
        SockOpt::RecvErr(on) => i.set_recverr(*on),
        SockOpt::Options(raw) => i.set_ip_options(raw)?,
        SockOpt::Broadcast(on) => i.set_broadcast(*on),
        SockOpt::MulticastTtl(t) => i.set_multicast_ttl(*t),
        SockOpt::MulticastIf(v) => multicast_if(i, v)?,
        SockOpt::MulticastLoop(on) => i.set_multicast_loop(*on),
        SockOpt::NoCheck(on) => i.set_no_check(*on),
        SockOpt::SndBuf(n) => i.set_sndbuf(*n),
        SockOpt::Priority(p) => i.set_priority(*p),
        SockOpt::Mark(m) => i.set_mark(*m),
        SockOpt::BindToDevice(d) => i.set_bindtodevice(d)?,
        SockOpt::SndTimeo(t) => i.set_sndtimeo(Some(*t)),
        SockOpt::ZeroCopy(on) => i.set_zerocopy(*on),
        SockOpt::ReuseAddr(on) => i.set_reuseaddr(*on),
        SockOpt::ReusePort(on) => i.set_reuseport(*on),
        SockOpt::MaxPacingRate(r) => i.set_max_pacing_rate(*r),
        SockOpt::Txtime { clockid, flags } => i.set_txtime(*clockid, *flags)?,
        SockOpt::Hdrincl(_) | SockOpt::Segment(_) | SockOpt::Cork(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_follows_the_rule() {
        let h = Host::new(false);
        for k in [0u64, 1, 5, 255, 256, 1000] {
            let p = h.payload(k, 600);
            for (i, b) in p.iter().enumerate() {
                assert_eq!(*b as u64, (7 * i as u64 + k) % 256);
            }
        }
    }

    #[test]
    fn hdrincl_header() {
        let v = with_ip_header(253, Ipv4Addr::new(10, 0, 0, 2), &[1, 2, 3]);
        assert_eq!(v.len(), 23);
        assert_eq!(&v[..4], &[0x45, 0, 0, 23]);
        assert_eq!(v[8], 64);
        assert_eq!(v[9], 253);
        assert_eq!(&v[16..20], &[10, 0, 0, 2]);
        assert_eq!(&v[20..], &[1, 2, 3]);
    }
}
