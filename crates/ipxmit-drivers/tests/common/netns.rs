//! Namespace topologies for the real-wire tests, on top of
//! `ipxmit_drivers::netns` (which creates, enters and deletes namespaces).
//!
//! - [`TapPeer`]: a namespace `B` holding the kernel side of a TAP (or TUN)
//!   device created from a thread inside `B`, with 10.9.0.2/24 and a static
//!   neighbour for our 10.9.0.1; our stack writes to the user side.
//! - [`VethPeer`]: namespaces `A` and `B` joined by a veth pair (`xa0` in `A`,
//!   where the AF_PACKET driver sends, `xb0` in `B` with 10.10.0.2/24 and a
//!   static neighbour for our 10.10.0.1).
//! - [`Receiver`]: a kernel UDP socket bound inside `B` with a large receive
//!   buffer and a read timeout — the end-to-end check (the kernel reassembles
//!   and verifies checksums).
//! - [`Capture`]: an AF_PACKET socket inside `B` with `PACKET_VNET_HDR`, showing
//!   each frame as the kernel holds it, offload state included.
//!
//! Everything is removed when the values are dropped (namespaces deleted, which
//! removes their links). Traffic only goes to addresses inside them.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use ipxmit::wire::EthernetAddress;
use ipxmit_drivers::netns::{format_mac, Netns};
use ipxmit_drivers::packet::{PacketConfig, PacketLink};
use ipxmit_drivers::tap::{TapConfig, TapDevice, TunMode};

/// Our address on the TAP's user side.
pub const TAP_OURS: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
/// The kernel side of the TAP, in `B`.
pub const TAP_PEER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
/// Our address on the veth's `A` end.
pub const VETH_OURS: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 1);
/// The `B` end of the veth.
pub const VETH_PEER: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
/// The veth end in `A`.
pub const DEV_A: &str = "xa0";
/// The veth end in `B`.
pub const DEV_B: &str = "xb0";

fn other<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(e.to_string())
}

/// Turns IPv6 off in `ns`, so only the frames a test causes are on its links.
fn quiet(ns: &Netns) {
    for k in ["all", "default"] {
        let _ = ns.sysctl(&format!("net/ipv6/conf/{k}/disable_ipv6"), "1");
    }
}

/// A TAP (or TUN) device whose kernel side lives in namespace `B`.
pub struct TapPeer {
    /// The open device (our side). Declared first: dropped before `ns`.
    pub tap: TapDevice,
    /// The kernel side's MAC (TAP mode).
    pub kernel_mac: EthernetAddress,
    /// Namespace `B`.
    pub ns: Netns,
}

impl TapPeer {
    /// Creates `B`, opens the device from inside it with `cfg`, and gives the
    /// kernel side 10.9.0.2/24 (TAP: plus a permanent neighbour 10.9.0.1 ->
    /// `our_mac`).
    pub fn new(tag: &str, cfg: &TapConfig, our_mac: EthernetAddress) -> io::Result<TapPeer> {
        let ns = Netns::unique(tag)?;
        quiet(&ns);
        let tap = ns.run(|| TapDevice::open(cfg))?.map_err(other)?;
        let name = tap.name().to_string();
        ns.ip(&["addr", "add", "10.9.0.2/24", "dev", &name])?;
        ns.ip(&["link", "set", &name, "up"])?;
        let mut kernel_mac = EthernetAddress([0; 6]);
        if cfg.mode == TunMode::Tap {
            let ours = format_mac(our_mac.0);
            ns.ip(&[
                "neigh",
                "replace",
                "10.9.0.1",
                "lladdr",
                &ours,
                "dev",
                &name,
                "nud",
                "permanent",
            ])?;
            kernel_mac = tap.kernel_mac().map_err(other)?;
        }
        Ok(TapPeer {
            tap,
            kernel_mac,
            ns,
        })
    }
}

/// Namespaces `A` and `B` joined by a veth pair. See the module documentation.
pub struct VethPeer {
    /// Namespace `A` (our sending end).
    pub a: Netns,
    /// Namespace `B` (the kernel receiver).
    pub b: Netns,
    /// MAC of `xa0` (our source address).
    pub mac_a: EthernetAddress,
    /// MAC of `xb0` (the destination).
    pub mac_b: EthernetAddress,
}

impl VethPeer {
    /// A pair whose A side has 10.10.0.1/24 and B (10.10.0.2) as a
    /// permanent neighbour: the kernel sends from A without resolving.
    pub fn with_static_peer(tag: &str) -> io::Result<VethPeer> {
        VethPeer::with_static_peer_queues(tag, 1)
    }

    /// [`VethPeer::with_static_peer`] with `queues` transmit and receive
    /// queues on each end (`numtxqueues`, `numrxqueues`).
    pub fn with_static_peer_queues(tag: &str, queues: u32) -> io::Result<VethPeer> {
        let v = VethPeer::with_queues(tag, queues)?;
        v.a.ip(&["addr", "add", "10.10.0.1/24", "dev", DEV_A])?;
        let mac_b = format_mac(v.mac_b.0);
        let neigh = ["neigh", "replace", "10.10.0.2", "lladdr", &mac_b];
        v.a.ip(&[&neigh[..], &["dev", DEV_A, "nud", "permanent"]].concat())?;
        Ok(v)
    }

    /// Creates both namespaces, the veth pair and the addresses.
    pub fn new(tag: &str) -> io::Result<VethPeer> {
        VethPeer::with_queues(tag, 1)
    }

    /// [`VethPeer::new`] with `queues` transmit and receive queues on
    /// each end.
    pub fn with_queues(tag: &str, queues: u32) -> io::Result<VethPeer> {
        let a = Netns::unique(&format!("{tag}-a"))?;
        let b = Netns::unique(&format!("{tag}-b"))?;
        quiet(&a);
        quiet(&b);
        let n = queues.to_string();
        let nq = ["numtxqueues", &n, "numrxqueues", &n];
        let (na, nb) = (a.name(), b.name());
        ipxmit_drivers::netns::ip(
            &[
                &["link", "add", DEV_A][..],
                &nq,
                &["netns", na, "type", "veth", "peer", "name", DEV_B],
                &nq,
                &["netns", nb],
            ]
            .concat(),
        )?;
        b.ip(&["addr", "add", "10.10.0.2/24", "dev", DEV_B])?;
        a.ip(&["link", "set", DEV_A, "up"])?;
        b.ip(&["link", "set", DEV_B, "up"])?;
        let mac_a = EthernetAddress(a.link_mac(DEV_A)?);
        let mac_b = EthernetAddress(b.link_mac(DEV_B)?);
        let ours = format_mac(mac_a.0);
        b.ip(&[
            "neigh",
            "replace",
            "10.10.0.1",
            "lladdr",
            &ours,
            "dev",
            DEV_B,
            "nud",
            "permanent",
        ])?;
        Ok(VethPeer { a, b, mac_a, mac_b })
    }

    /// Opens an AF_PACKET link on `xa0` from inside `A`.
    pub fn open(&self, cfg: &PacketConfig) -> io::Result<PacketLink> {
        self.a.run(|| PacketLink::open(cfg))?.map_err(other)
    }
}

/// A kernel UDP socket bound inside a namespace.
pub struct Receiver {
    sock: UdpSocket,
}

impl Receiver {
    /// Binds `addr` inside `ns` with a receive buffer of `rcvbuf` bytes
    /// (forced past `rmem_max`) and a 100 ms read timeout.
    pub fn bind(ns: &Netns, addr: SocketAddrV4, rcvbuf: usize) -> io::Result<Receiver> {
        let sock = ns.run(|| UdpSocket::bind(addr))??;
        rustix::net::sockopt::set_socket_recv_buffer_size_force(&sock, rcvbuf)?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(Receiver { sock })
    }

    /// Receives until `n` datagrams came or `quiet` passed without one.
    pub fn recv_n(&self, n: usize, quiet: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(n);
        let mut buf = vec![0u8; 65536];
        let mut last = Instant::now();
        while out.len() < n && last.elapsed() < quiet {
            if let Ok((len, _)) = self.sock.recv_from(&mut buf) {
                out.push(buf[..len].to_vec());
                last = Instant::now();
            }
        }
        out
    }

    /// Counts datagrams (checking only their length) until `n` came or `quiet`
    /// passed without one; returns the count and the time of the last one.
    pub fn count(&self, n: usize, len: usize, quiet: Duration) -> (usize, Instant) {
        let mut buf = vec![0u8; 65536];
        let (mut got, mut last) = (0, Instant::now());
        while got < n && last.elapsed() < quiet {
            if let Ok((l, _)) = self.sock.recv_from(&mut buf) {
                if l == len {
                    got += 1;
                }
                last = Instant::now();
            }
        }
        (got, last)
    }
}

/// One captured frame and the `virtio_net_hdr` the kernel put before it.
#[derive(Debug, Clone)]
pub struct Captured {
    /// `flags` (`VIRTIO_NET_HDR_F_NEEDS_CSUM` = 1).
    pub flags: u8,
    /// `gso_type` (`VIRTIO_NET_HDR_GSO_UDP_L4` = 5).
    pub gso_type: u8,
    /// `gso_size`.
    pub gso_size: u16,
    /// `csum_start`.
    pub csum_start: u16,
    /// `csum_offset`.
    pub csum_offset: u16,
    /// The frame.
    pub frame: Vec<u8>,
}

/// An AF_PACKET socket on a device inside a namespace, with `PACKET_VNET_HDR`
/// (or without: [`Capture::open_plain`]).
pub struct Capture {
    fd: OwnedFd,
    vnet: bool,
}

impl Capture {
    /// Opens it on `dev` inside `ns` (every frame, `ETH_P_ALL`).
    pub fn open(ns: &Netns, dev: &str) -> io::Result<Capture> {
        Capture::open_with(ns, dev, true)
    }

    /// [`Capture::open`] without `PACKET_VNET_HDR`: every frame as the
    /// kernel holds it, also those whose offload state a vnet header cannot
    /// show (`virtio_net_hdr_from_skb` refuses a UFO buffer, and the packet
    /// socket then drops it); the offload fields read 0.
    pub fn open_plain(ns: &Netns, dev: &str) -> io::Result<Capture> {
        Capture::open_with(ns, dev, false)
    }

    fn open_with(ns: &Netns, dev: &str, vnet: bool) -> io::Result<Capture> {
        let dev = dev.to_string();
        ns.run(move || -> io::Result<Capture> {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket(2) call; the result is checked.
            let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a fresh descriptor nobody else owns.
            let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
            let one = libc::c_int::from(vnet);
            // SAFETY: `one` is a live int; the kernel copies it.
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_VNET_HDR,
                    (&one as *const libc::c_int).cast(),
                    4,
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            let ifindex = rustix::net::netdevice::name_to_index(&fd, &dev)?;
            // SAFETY: sockaddr_ll is plain data; zero is valid.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex as i32;
            // SAFETY: `sll` is a live sockaddr_ll of the size passed.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            rustix::net::sockopt::set_socket_recv_buffer_size_force(&fd, 64 << 20)?;
            Ok(Capture { fd, vnet })
        })?
    }

    /// Takes every frame that arrives until `quiet` passes without one.
    pub fn drain(&self, quiet: Duration) -> Vec<Captured> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70000];
        let mut last = Instant::now();
        while last.elapsed() < quiet {
            let mut p = [rustix::event::PollFd::new(
                &self.fd,
                rustix::event::PollFlags::IN,
            )];
            let t = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 10_000_000,
            };
            if !matches!(rustix::event::poll(&mut p, Some(&t)), Ok(1)) {
                continue;
            }
            let flags = rustix::net::RecvFlags::DONTWAIT;
            let Ok((n, _)) = rustix::net::recv(self.fd.as_fd(), &mut buf[..], flags) else {
                continue;
            };
            let hl = if self.vnet { 10 } else { 0 };
            if n < hl {
                continue;
            }
            let h = if self.vnet {
                &buf[..10]
            } else {
                &[0u8; 10][..]
            };
            let u = |i: usize| u16::from_ne_bytes([h[i], h[i + 1]]);
            out.push(Captured {
                flags: h[0],
                gso_type: h[1],
                gso_size: u(4),
                csum_start: u(6),
                csum_offset: u(8),
                frame: buf[hl..n].to_vec(),
            });
            last = Instant::now();
        }
        out
    }
}

/// Makes the kernel in `ns` resolve `addr` again (its neighbours on `dev`
/// flushed, then a UDP datagram sent from `from` to `addr`) and waits up to
/// 5 s until its table holds `mac` for `addr` in a usable state. Panics with
/// what the table showed otherwise.
pub fn kernel_resolves(ns: &Netns, dev: &str, from: &str, addr: &str, mac: EthernetAddress) {
    let _ = ns.ip(&["neigh", "flush", "dev", dev]);
    ns.run(|| {
        let s = std::net::UdpSocket::bind(format!("{from}:7000"))?;
        s.send_to(b"hello", format!("{addr}:7001"))
    })
    .expect("enter the namespace")
    .expect("send from the kernel");
    let want = format_mac(mac.0);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let shown = ns
            .ip(&["neigh", "show", addr, "dev", dev])
            .unwrap_or_default();
        if shown.contains(&want) && !shown.contains("INCOMPLETE") && !shown.contains("FAILED") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "kernel did not resolve {addr}: {shown:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A kernel UDP socket inside a namespace that reads the kernel's arrival
/// time of each datagram (`SO_TIMESTAMPNS`, stamped when the frame entered
/// the receive path), so that a receiving thread's own wake-up delay does
/// not count in measured departure gaps.
pub struct StampedRx {
    sock: UdpSocket,
}

impl StampedRx {
    /// Binds `addr` inside `ns`, arrival stamps on, reads ending after
    /// `quiet` without a datagram.
    pub fn bind(ns: &Netns, addr: &str, quiet: Duration) -> io::Result<StampedRx> {
        let sock = ns.run(|| UdpSocket::bind(addr))??;
        sock.set_read_timeout(Some(quiet))?;
        let one: libc::c_int = 1;
        // SAFETY: `one` is a live int; the kernel copies it.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&one as *const libc::c_int).cast(),
                4,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(StampedRx { sock })
    }

    /// Every datagram of `len` bytes until the socket is quiet: its source
    /// port and the kernel's arrival time (ns of `CLOCK_REALTIME`).
    pub fn recv_all(&self, len: usize) -> Vec<(u16, i64)> {
        let mut out = Vec::new();
        while let Some((n, port, t)) = self.recv_one() {
            if n == len {
                out.push((port, t));
            }
        }
        out
    }

    /// One datagram: its length, source port and arrival stamp.
    fn recv_one(&self) -> Option<(usize, u16, i64)> {
        let mut buf = [0u8; 2048];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: plain data; zero is valid for both.
        let mut from: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        let mut control = [0u64; 16];
        msg.msg_name = (&mut from as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: every pointer in `msg` is to a live buffer of the stated size.
        let n = unsafe { libc::recvmsg(self.sock.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            return None;
        }
        // SAFETY: `msg` was filled by recvmsg; the cmsg walk stays inside
        // `control` as the CMSG macros guarantee.
        let stamp = unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            let mut t = None;
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                    t = Some(ts.tv_sec * 1_000_000_000 + ts.tv_nsec);
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
            t
        }?;
        Some((n as usize, u16::from_be(from.sin_port), stamp))
    }
}
