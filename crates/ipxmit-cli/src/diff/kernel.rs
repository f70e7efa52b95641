//! The kernel's side of `ipxmit diff`: a script's lines carried out by
//! this machine's kernel in throwaway network namespaces.
//!
//! Namespace A is the host: each `mem` link becomes a veth there (with
//! ipxmit's MAC for that link, up, as ipxmit's links start), its other end
//! in a namespace of its own with the peer's address and MAC (the verifying peer's
//! stand-in: it answers ARP, and an nft rule drops whatever IP reaches it,
//! so it sends nothing back, as ipxmit's peer does not). `ip`, `tc`, `nft`
//! and `sysctl` lines run verbatim in A (`ip netns exec`); socket lines are
//! made with the same system calls on sockets created in A, with the same
//! payloads as ipxmit's (byte `i` of send `k` is `7i + k`). IPv6 is off in
//! every namespace. Everything is deleted when the value is dropped.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::Command;
use std::time::Duration;

use ipxmit::{Features, MsgFlags, PmtuDisc};
use ipxmit_drivers::netns::Netns;

use super::frames::PacketSocket;
use super::sys::{self, sockaddr_in, SIN_LEN};
use crate::script::exec::payload_of as payload;
use crate::script::parse::{LinkSpec, SockKind, SockOpt};

/// What one line did in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A tool ran: its stdout, stderr and exit status.
    Tool {
        /// Standard output.
        out: String,
        /// Standard error.
        err: String,
        /// Exit status.
        code: i32,
    },
    /// A socket call: its return value, or the errno's name.
    Call(Result<i64, String>),
    /// Done, nothing to compare.
    Done,
}

/// The kernel side: the namespaces, the peers' capture sockets, the
/// script's sockets.
pub struct Kernel {
    a: Netns,
    /// Per link, in order: the peer's namespace.
    peers: Vec<Netns>,
    /// Per link (ipxmit's name): the capture on the peer's end.
    pub captures: BTreeMap<String, PacketSocket>,
    socks: BTreeMap<String, OwnedFd>,
    /// The raw sockets: protocol, `IP_HDRINCL`, connected address.
    raw: BTreeMap<String, (u8, bool, Option<std::net::Ipv4Addr>)>,
    /// Sends so far (the payload pattern's `k`).
    sends: u64,
}

/// IPv6 off in `ns` (no router solicitations, no `table all` of IPv6).
fn no_ipv6(ns: &Netns) -> Result<(), String> {
    for k in ["all", "default"] {
        ns.sysctl(&format!("net/ipv6/conf/{k}/disable_ipv6"), "1")
            .map_err(setup("disable IPv6"))?;
    }
    Ok(())
}

/// A link's peer namespace: IPv6 off and IP input dropped (nft), so it
/// answers ARP and sends nothing else back.
fn silent_peer() -> Result<Netns, String> {
    let b = Netns::unique("diff-b").map_err(setup("a peer namespace"))?;
    no_ipv6(&b)?;
    let rules = "add table ip sink; add chain ip sink in { type filter hook input priority 0; policy drop; }";
    let o = Command::new("ip")
        .args(["netns", "exec", b.name(), "nft", rules])
        .output()
        .map_err(setup("nft in a peer namespace"))?;
    if !o.status.success() {
        return Err(format!(
            "kernel side: nft in a peer namespace: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(b)
}

/// A namespace error, with what was being set up.
fn setup(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("kernel side: {what}: {e}")
}

impl Kernel {
    /// Namespace A, the host, IPv6 off.
    pub fn new() -> Result<Kernel, String> {
        let a = Netns::unique("diff-a").map_err(setup("namespace A"))?;
        no_ipv6(&a)?;
        Ok(Kernel {
            a,
            peers: Vec::new(),
            captures: BTreeMap::new(),
            socks: BTreeMap::new(),
            raw: BTreeMap::new(),
            sends: 0,
        })
    }

    /// `link add NAME type mem ...` as the `i`-th link: a veth with
    /// ipxmit's MAC `mac`, its end (`d<i>`) in a silent namespace of its
    /// own with the peer's address and MAC, both up, and a capture on that
    /// end.
    pub fn add_link(&mut self, i: usize, spec: &LinkSpec, mac: String, peer_mac: String) -> Answer {
        let far = format!("d{i}");
        let peer = match silent_peer() {
            Ok(p) => p,
            Err(e) => return tool_error(std::io::Error::other(e)),
        };
        let b = peer.name().to_string();
        self.peers.push(peer);
        let bns = &self.peers[self.peers.len() - 1];
        let q = spec.txqueues.unwrap_or(1);
        let mut steps: Vec<Vec<String>> = vec![
            words(&format!(
                "link add {} address {mac} numtxqueues {q} numrxqueues {q} type veth peer name {far} netns {b}",
                spec.name
            )),
            words(&format!("link set {} up", spec.name)),
        ];
        if let Some(m) = spec.mtu {
            steps.push(words(&format!("link set {} mtu {m}", spec.name)));
        }
        for s in &steps {
            let v: Vec<&str> = s.iter().map(String::as_str).collect();
            if let Err(e) = self.a.ip(&v) {
                return tool_error(e);
            }
        }
        if let Err(e) = self.offloads(&spec.name, spec.offload.unwrap_or(Features::NONE)) {
            return e;
        }
        let mut far_steps = vec![format!("link set {far} address {peer_mac} up")];
        if let Some(m) = spec.mtu {
            far_steps.push(format!("link set {far} mtu {m}"));
        }
        if let Some(p) = spec.peer {
            far_steps.push(format!("addr add {p}/32 dev {far}"));
            far_steps.push(format!("route add default dev {far}"));
        }
        for s in &far_steps {
            let w = words(s);
            let v: Vec<&str> = w.iter().map(String::as_str).collect();
            if let Err(e) = bns.ip(&v) {
                return tool_error(e);
            }
        }
        match bns.run(|| PacketSocket::open(&far)) {
            Ok(Ok(s)) => {
                self.captures.insert(spec.name.clone(), s);
                Answer::Done
            }
            Ok(Err(e)) | Err(e) => tool_error(e),
        }
    }

    /// The veth's offloads as ipxmit's link has them (`offload LIST`, none
    /// by default): a checksum left to the device, scatter-gather, UDP
    /// segmentation (`ethtool -K`). Without them the kernel completes
    /// checksums and segments before the veth, as ipxmit does.
    fn offloads(&self, dev: &str, f: Features) -> Result<(), Answer> {
        let on = |x: Features| if f.intersects(x) { "on" } else { "off" };
        let args = [
            "netns",
            "exec",
            self.a.name(),
            "ethtool",
            "-K",
            dev,
            "tx",
            on(Features::IP_CSUM.union(Features::HW_CSUM)),
            "sg",
            on(Features::SG),
            "tx-udp-segmentation",
            on(Features::GSO_UDP_L4),
        ];
        let o = Command::new("ip").args(args).output().map_err(tool_error)?;
        if o.status.success() {
            return Ok(());
        }
        Err(Answer::Tool {
            out: String::new(),
            err: format!(
                "ethtool -K {dev}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            code: o.status.code().unwrap_or(-1),
        })
    }

    /// A tool's line (`ip`, `tc`, `nft`, `sysctl`) run in A, its words as
    /// the script's shell-split words.
    pub fn tool(&self, w: &[String]) -> Answer {
        let o = Command::new("ip")
            .args(["netns", "exec", self.a.name()])
            .args(w)
            .output();
        match o {
            Ok(o) => Answer::Tool {
                out: String::from_utf8_lossy(&o.stdout).into_owned(),
                err: String::from_utf8_lossy(&o.stderr).into_owned(),
                code: o.status.code().unwrap_or(-1),
            },
            Err(e) => tool_error(e),
        }
    }

    /// The MIB counters of A (`/proc/net/snmp`, `/proc/net/netstat`), by
    /// nstat's names.
    pub fn snmp(&self) -> BTreeMap<String, i64> {
        let read = |f: &str| {
            let p = format!("/proc/thread-self/net/{f}");
            self.a
                .run(move || std::fs::read_to_string(p))
                .ok()
                .and_then(|r| r.ok())
        };
        let mut m = BTreeMap::new();
        for text in ["snmp", "netstat"].into_iter().filter_map(read) {
            let lines: Vec<&str> = text.lines().collect();
            for pair in lines.chunks(2) {
                let [names, values] = pair else { continue };
                let (Some((p, names)), Some((_, values))) =
                    (names.split_once(": "), values.split_once(": "))
                else {
                    continue;
                };
                for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
                    m.insert(format!("{p}{n}"), v.parse().unwrap_or(0));
                }
            }
        }
        m
    }

    /// Waits for frames in flight (veth delivers at once; a moment for
    /// the peer's ARP replies and the queued datagrams they release).
    pub fn settle(&self) {
        std::thread::sleep(Duration::from_millis(50));
    }

    /// `socket NAME udp|raw P|rawhdrincl P`.
    pub fn socket(&mut self, name: &str, kind: SockKind) -> Answer {
        let (ty, proto) = match kind {
            SockKind::Udp => (libc::SOCK_DGRAM, 0),
            SockKind::Raw(p) | SockKind::RawHdrincl(p) => (libc::SOCK_RAW, i32::from(p)),
        };
        // SAFETY: plain socket(2); the descriptor is owned at once below.
        let fd = self
            .a
            .run(|| unsafe { libc::socket(libc::AF_INET, ty, proto) });
        let fd = match fd {
            Ok(fd) if fd >= 0 => fd,
            Ok(_) => return last_errno(),
            Err(e) => return tool_error(e),
        };
        // SAFETY: a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if let SockKind::RawHdrincl(_) = kind {
            set_int(fd.as_raw_fd(), libc::IPPROTO_IP, libc::IP_HDRINCL, 1);
        }
        if let SockKind::Raw(p) | SockKind::RawHdrincl(p) = kind {
            // IPPROTO_RAW (255) implies IP_HDRINCL.
            let hdrincl = matches!(kind, SockKind::RawHdrincl(_)) || p == 255;
            self.raw.insert(name.to_string(), (p, hdrincl, None));
        }
        self.socks.insert(name.to_string(), fd);
        Answer::Done
    }

    /// `close NAME`.
    pub fn close(&mut self, name: &str) -> Answer {
        self.socks.remove(name);
        self.raw.remove(name);
        Answer::Done
    }

    fn fd(&self, name: &str) -> Option<RawFd> {
        self.socks.get(name).map(|f| f.as_raw_fd())
    }

    /// `bind`/`connect NAME A:P`.
    pub fn bind_connect(&mut self, name: &str, addr: SocketAddrV4, connect: bool) -> Answer {
        let Some(fd) = self.fd(name) else {
            return Answer::Call(Err("EBADF".into()));
        };
        let sa = sockaddr_in(addr);
        let p = (&sa as *const libc::sockaddr_in).cast::<libc::sockaddr>();
        // SAFETY: a valid sockaddr_in and its size.
        let r = unsafe {
            if connect {
                libc::connect(fd, p, SIN_LEN)
            } else {
                libc::bind(fd, p, SIN_LEN)
            }
        };
        if r != 0 {
            return last_errno();
        }
        if let (true, Some(raw)) = (connect, self.raw.get_mut(name)) {
            raw.2 = Some(*addr.ip());
        }
        Answer::Done
    }

    /// `sockopt NAME OPT V`: the same `setsockopt(2)`; options without a
    /// kernel counterpart here are not compared.
    pub fn sockopt(&mut self, name: &str, opt: &SockOpt) -> Option<Answer> {
        let fd = self.fd(name)?;
        let (lvl, ip) = (libc::SOL_SOCKET, libc::IPPROTO_IP);
        let (level, o, v) = match opt {
            SockOpt::Tos(t) => (ip, libc::IP_TOS, i32::from(*t)),
            SockOpt::Ttl(t) => (ip, libc::IP_TTL, t.map_or(-1, i32::from)),
            SockOpt::MtuDiscover(m) => (ip, libc::IP_MTU_DISCOVER, pmtudisc(*m)),
            SockOpt::RecvErr(b) => (ip, libc::IP_RECVERR, i32::from(*b)),
            SockOpt::Hdrincl(b) => {
                if let Some(raw) = self.raw.get_mut(name) {
                    raw.1 = *b;
                }
                (ip, libc::IP_HDRINCL, i32::from(*b))
            }
            SockOpt::NoCheck(b) => (lvl, libc::SO_NO_CHECK, i32::from(*b)),
            SockOpt::Segment(s) => (libc::SOL_UDP, libc::UDP_SEGMENT, *s as i32),
            SockOpt::Cork(b) => (libc::SOL_UDP, libc::UDP_CORK, i32::from(*b)),
            SockOpt::SndBuf(n) => (lvl, libc::SO_SNDBUF, *n as i32),
            SockOpt::Priority(p) => (lvl, libc::SO_PRIORITY, *p as i32),
            SockOpt::Mark(m) => (lvl, libc::SO_MARK, *m as i32),
            SockOpt::ReuseAddr(b) => (lvl, libc::SO_REUSEADDR, i32::from(*b)),
            SockOpt::ReusePort(b) => (lvl, libc::SO_REUSEPORT, i32::from(*b)),
            SockOpt::Broadcast(b) => (lvl, libc::SO_BROADCAST, i32::from(*b)),
            SockOpt::MulticastTtl(t) => (ip, libc::IP_MULTICAST_TTL, t.map_or(-1, i32::from)),
            SockOpt::MulticastLoop(b) => (ip, libc::IP_MULTICAST_LOOP, i32::from(*b)),
            SockOpt::BindToDevice(d) => return Some(bind_to_device(fd, d)),
            SockOpt::MulticastIf(v) => return Some(self.multicast_if(fd, v)),
            SockOpt::Options(raw) => {
                return Some(done(sys::set_bytes(fd, ip, libc::IP_OPTIONS, raw)))
            }
            _ => return None,
        };
        Some(set_int(fd, level, o, v))
    }

    /// `IP_MULTICAST_IF` by address (`in_addr`) or by device name
    /// (`ip_mreqn` with the device's index in A).
    fn multicast_if(&self, fd: RawFd, v: &str) -> Answer {
        let mreqn: [u8; 12] = match v.parse::<std::net::Ipv4Addr>() {
            Ok(a) => {
                let mut m = [0u8; 12];
                m[4..8].copy_from_slice(&a.octets());
                m
            }
            Err(_) => {
                let name = std::ffi::CString::new(v).unwrap_or_default();
                // SAFETY: if_nametoindex of a NUL-terminated name, in A.
                let idx = self
                    .a
                    .run(|| unsafe { libc::if_nametoindex(name.as_ptr()) });
                let mut m = [0u8; 12];
                m[8..12].copy_from_slice(&(idx.unwrap_or(0) as i32).to_ne_bytes());
                m
            }
        };
        done(sys::set_bytes(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            &mreqn,
        ))
    }

    /// `getsockopt NAME ip_mtu|so_error|so_sndbuf`.
    pub fn getsockopt(&mut self, name: &str, opt: &str) -> Answer {
        let Some(fd) = self.fd(name) else {
            return Answer::Call(Err("EBADF".into()));
        };
        match opt {
            "ip_mtu" => get_int(fd, libc::IPPROTO_IP, libc::IP_MTU),
            "so_error" => get_int(fd, libc::SOL_SOCKET, libc::SO_ERROR),
            _ => get_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF),
        }
    }

    /// `send NAME [to A:P] len N [flags]`, with send `k`'s payload.
    pub fn send(
        &mut self,
        name: &str,
        to: Option<SocketAddrV4>,
        len: usize,
        f: MsgFlags,
    ) -> Answer {
        let Some(fd) = self.fd(name) else {
            return Answer::Call(Err("EBADF".into()));
        };
        let mut buf = payload(self.sends, len);
        self.sends += 1;
        if let Some(&(proto, true, peer)) = self.raw.get(name) {
            // ipxmit's `rawhdrincl` sends put its header before the payload.
            let dst = to
                .map(|a| *a.ip())
                .or(peer)
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
            buf = crate::script::exec::with_ip_header(proto, dst, &buf);
        }
        let flags = f.bits() as i32;
        // SAFETY: a valid buffer and (when given) sockaddr_in.
        let r = unsafe {
            match to {
                Some(a) => {
                    let sa = sockaddr_in(a);
                    let p = (&sa as *const libc::sockaddr_in).cast();
                    libc::sendto(fd, buf.as_ptr().cast(), buf.len(), flags, p, SIN_LEN)
                }
                None => libc::send(fd, buf.as_ptr().cast(), buf.len(), flags),
            }
        };
        if r < 0 {
            last_errno()
        } else {
            Answer::Call(Ok(r as i64))
        }
    }

    /// `sendmmsg NAME [to A:P] len N ...`: one `sendmmsg(2)`.
    pub fn sendmmsg(
        &mut self,
        name: &str,
        msgs: &[(Option<SocketAddrV4>, usize)],
        f: MsgFlags,
    ) -> Answer {
        let Some(fd) = self.fd(name) else {
            return Answer::Call(Err("EBADF".into()));
        };
        let mut bufs: Vec<(Option<libc::sockaddr_in>, Vec<u8>)> = msgs
            .iter()
            .enumerate()
            .map(|(i, (to, len))| (to.map(sockaddr_in), payload(self.sends + i as u64, *len)))
            .collect();
        let r = sys::sendmmsg(fd, &mut bufs, f.bits() as i32);
        if let Ok(n) = r {
            self.sends += n as u64;
        }
        Answer::Call(r)
    }

    /// `recv NAME`: one datagram, without waiting.
    pub fn recv(&mut self, name: &str) -> Answer {
        let Some(fd) = self.fd(name) else {
            return Answer::Call(Err("EBADF".into()));
        };
        let mut buf = vec![0u8; 65536];
        // SAFETY: a buffer of its stated length.
        let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if r < 0 {
            last_errno()
        } else {
            Answer::Call(Ok(r as i64))
        }
    }
}

/// `ip_mtu_discover`'s kernel value.
fn pmtudisc(m: PmtuDisc) -> i32 {
    m as i32
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn tool_error(e: std::io::Error) -> Answer {
    Answer::Tool {
        out: String::new(),
        err: e.to_string(),
        code: -1,
    }
}

/// A call's outcome as an answer: done, or the errno's name.
fn done(r: Result<(), String>) -> Answer {
    match r {
        Ok(()) => Answer::Done,
        Err(e) => Answer::Call(Err(e)),
    }
}

/// The errno of the last failed call as an answer.
fn last_errno() -> Answer {
    Answer::Call(Err(sys::last_errno()))
}

fn set_int(fd: RawFd, level: i32, opt: i32, v: i32) -> Answer {
    done(sys::set_int(fd, level, opt, v))
}

fn get_int(fd: RawFd, level: i32, opt: i32) -> Answer {
    Answer::Call(sys::get_int(fd, level, opt))
}

fn bind_to_device(fd: RawFd, dev: &str) -> Answer {
    done(sys::set_bytes(
        fd,
        libc::SOL_SOCKET,
        libc::SO_BINDTODEVICE,
        dev.as_bytes(),
    ))
}
