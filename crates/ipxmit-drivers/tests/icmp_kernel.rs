//! ICMP errors reaching a UDP socket, against the kernel: a connected UDP
//! socket sends, an ICMP error quoting what it sent arrives, and what the
//! socket sees next is compared — the errno of the next send, the error
//! queue entry (`ee_errno`, `ee_origin`, `ee_type`, `ee_code`, `ee_info`,
//! `SO_EE_OFFENDER`), `IP_MTU`, and the frames of a send after that. The
//! kernel side is a socket in namespace `B` of a veth pair (10.10.0.2, the
//! peer 10.10.0.1 a static neighbour); the ICMP message is written into `A`'s
//! end by AF_PACKET. The ipxmit side is a stack with the same addresses on an
//! in-memory wire, the same message handed to its receive path.

mod common;

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket as KernelUdp};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use common::netns::{Capture, VethPeer, DEV_A};
use ipxmit::dev::DevConfig;
use ipxmit::neigh::NudState;
use ipxmit::wire::icmp::IcmpPacket;
use ipxmit::wire::{EthernetAddress, IpProtocol, Ipv4Packet};
use ipxmit::{ManualClock, MsgFlags, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;

const OURS: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 1);
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 254);
const LEN: usize = 1400;

/// One case: the ICMP code and next-hop MTU, `IP_RECVERR`, and the
/// namespace's `net.ipv4.ip_no_pmtu_disc`.
#[derive(Clone, Copy, Debug)]
struct Case {
    code: u8,
    mtu: u16,
    recverr: bool,
    no_pmtu_disc: u8,
}

/// What the socket saw after the message.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    /// errno of the next send (0: it went).
    next_send: i32,
    /// The error-queue entry: errno, origin, type, code, info, offender.
    entry: Option<(u32, u8, u8, u8, u32, Ipv4Addr)>,
    /// `IP_MTU`.
    ip_mtu: u32,
    /// IP total lengths of the frames of a send after that.
    frames: Vec<usize>,
}

/// The ICMP error of `c` from [`ROUTER`] quoting `quote`, as an Ethernet
/// frame from `src` to `dst`.
fn icmp_frame(c: Case, quote: &[u8], dst: EthernetAddress, src: EthernetAddress) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8 + quote.len()];
    f[..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&[8, 0]);
    let mut m = IcmpPacket::new_unchecked(&mut f[34..]);
    m.set_msg_type(3);
    m.set_code(c.code);
    m.set_rest(u32::from(c.mtu));
    m.data_mut().copy_from_slice(quote);
    m.fill_checksum();
    let total = (20 + 8 + quote.len()) as u16;
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..34]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_tos(0xc0);
    ip.set_total_len(total);
    ip.set_ttl(64);
    ip.set_protocol(IpProtocol::ICMP);
    ip.set_src_addr(ROUTER);
    ip.set_dst_addr(OURS);
    ip.fill_checksum();
    f
}

/// IPv4 frames of `frames` (Ethernet): each one's IP total length; the
/// quote (header + 8 bytes) of the first.
fn ipv4_of(frames: &[Vec<u8>]) -> (Vec<usize>, Vec<u8>) {
    let ip: Vec<&[u8]> = frames
        .iter()
        .filter(|f| f.len() > 34 && f[12..14] == [8, 0])
        .map(|f| &f[14..])
        .collect();
    let lens = ip
        .iter()
        .map(|p| usize::from(Ipv4Packet::new_unchecked(*p).total_len()))
        .collect();
    let quote = ip.first().map(|p| p[..28].to_vec()).unwrap_or_default();
    (lens, quote)
}

// ---- the ipxmit side -------------------------------------------------

fn on_ipxmit(c: Case) -> Seen {
    let stack = Stack::with_clock(Arc::new(ManualClock::new()));
    stack.set_sysctls(|s| s.ip_no_pmtu_disc = c.no_pmtu_disc);
    let wire = MemWire::new(256);
    let mac_ours = EthernetAddress([2, 0, 0, 0, 0, 2]);
    let mac_peer = EthernetAddress([2, 0, 0, 0, 0, 1]);
    stack
        .add_device(DevConfig::ethernet("eth0", mac_ours), wire.drivers(1))
        .unwrap();
    stack
        .add_addr("eth0", "10.10.0.2/24".parse().unwrap())
        .unwrap();
    stack
        .add_neigh("eth0", PEER, mac_peer, NudState::Permanent)
        .unwrap();
    let eth0 = stack.device("eth0").unwrap();
    let mut s = UdpSocket::new(&stack);
    s.set_recverr(c.recverr);
    s.bind(SocketAddrV4::new(OURS, 4000)).unwrap();
    s.connect(SocketAddrV4::new(PEER, 9)).unwrap();
    s.send(&[7; LEN], MsgFlags::NONE).unwrap();
    let drain = |w: &MemWire| {
        let mut v = Vec::new();
        w.drain(|p| v.push(p.to_vec()));
        v
    };
    let (_, quote) = ipv4_of(&drain(&wire));
    stack.receive(&eth0, &icmp_frame(c, &quote, mac_ours, mac_peer));
    let next_send = s
        .send(&[7; LEN], MsgFlags::NONE)
        .map_or_else(|e| e.errno().code(), |_| 0);
    drain(&wire);
    let entry = s.recv_err().map(|e| {
        let origin = match e.origin {
            ipxmit::socket::ErrOrigin::Local => 1,
            ipxmit::socket::ErrOrigin::Icmp => 2,
            ipxmit::socket::ErrOrigin::Zerocopy => 5,
        };
        let errno = e.errno.code() as u32;
        (errno, origin, e.ee_type, e.ee_code, e.info, e.offender)
    });
    let ip_mtu = s.ip_mtu().unwrap_or(0);
    let _ = s.send(&[7; LEN], MsgFlags::NONE);
    let (frames, _) = ipv4_of(&drain(&wire));
    Seen {
        next_send,
        entry,
        ip_mtu,
        frames,
    }
}

// ---- the kernel side -------------------------------------------------

fn setopt_int(fd: i32, level: i32, opt: i32, v: i32) -> io::Result<()> {
    // SAFETY: a c_int option value of the right length.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn ip_mtu_of(fd: i32) -> u32 {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live and of the size given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MTU,
            (&mut v as *mut i32).cast(),
            &mut len,
        )
    };
    if r < 0 {
        0
    } else {
        v as u32
    }
}

/// `recvmsg(MSG_ERRQUEUE)`: the `IP_RECVERR` control message's
/// `sock_extended_err` and offender, if any.
fn errqueue_of(fd: i32) -> Option<(u32, u8, u8, u8, u32, Ipv4Addr)> {
    let mut data = [0u8; 2048];
    let mut ctl = [0u64; 64];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&ctl);
    let flags = libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT;
    // SAFETY: `msg` points at live buffers of the lengths given.
    if unsafe { libc::recvmsg(fd, &mut msg, flags) } < 0 {
        return None;
    }
    // SAFETY: walking the control buffer the kernel filled, with its macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_RECVERR {
                let d = std::slice::from_raw_parts(libc::CMSG_DATA(c), 16 + 16);
                let u32_at = |i: usize| u32::from_ne_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
                let off = Ipv4Addr::new(d[20], d[21], d[22], d[23]);
                return Some((u32_at(0), d[4], d[5], d[6], u32_at(8), off));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    None
}

/// Writes `frame` on `dev` in `v.a` (AF_PACKET, as is).
fn inject(v: &VethPeer, frame: Vec<u8>) -> io::Result<()> {
    v.a.run(move || -> io::Result<()> {
        // SAFETY: plain socket(2); closed below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let name = std::ffi::CString::new(DEV_A).unwrap();
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        // SAFETY: sockaddr_ll is plain data; zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        // SAFETY: `frame` and `sll` are live, of the lengths given.
        let r = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        let e = io::Error::last_os_error();
        // SAFETY: our fd, closed once.
        unsafe { libc::close(fd) };
        if r < 0 {
            return Err(e);
        }
        Ok(())
    })?
}

fn on_kernel(c: Case) -> io::Result<Seen> {
    let v = VethPeer::new(&format!("icmp{}", c.code))?;
    v.b.sysctl("net/ipv4/ip_no_pmtu_disc", &c.no_pmtu_disc.to_string())?;
    let cap = Capture::open(&v.a, DEV_A)?;
    let s: KernelUdp = v.b.run(|| -> io::Result<KernelUdp> {
        let s = KernelUdp::bind("10.10.0.2:4000")?;
        s.connect("10.10.0.1:9")?;
        Ok(s)
    })??;
    let fd = s.as_raw_fd();
    setopt_int(fd, libc::IPPROTO_IP, libc::IP_RECVERR, i32::from(c.recverr))?;
    s.send(&[7; LEN])?;
    let quiet = Duration::from_millis(100);
    let sent: Vec<Vec<u8>> = cap.drain(quiet).into_iter().map(|x| x.frame).collect();
    let (_, quote) = ipv4_of(&sent);
    assert_eq!(quote.len(), 28, "the kernel's datagram was captured");
    inject(&v, icmp_frame(c, &quote, v.mac_b, v.mac_a))?;
    std::thread::sleep(Duration::from_millis(50));
    let next_send = match s.send(&[7; LEN]) {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    };
    cap.drain(quiet);
    let entry = errqueue_of(fd);
    let ip_mtu = ip_mtu_of(fd);
    let _ = s.send(&[7; LEN]);
    let after: Vec<Vec<u8>> = cap.drain(quiet).into_iter().map(|x| x.frame).collect();
    let (frames, _) = ipv4_of(&after);
    Ok(Seen {
        next_send,
        entry,
        ip_mtu,
        frames,
    })
}

const CASES: [Case; 6] = [
    // Frag needed, IP_RECVERR: EMSGSIZE, an entry with the MTU, fragments.
    Case {
        code: 4,
        mtu: 1200,
        recverr: true,
        no_pmtu_disc: 0,
    },
    // Port unreachable on a connected socket without IP_RECVERR.
    Case {
        code: 3,
        mtu: 0,
        recverr: false,
        no_pmtu_disc: 0,
    },
    // Host unreachable: not fatal, so nothing without IP_RECVERR...
    Case {
        code: 1,
        mtu: 0,
        recverr: false,
        no_pmtu_disc: 0,
    },
    // ... and EHOSTUNREACH with it.
    Case {
        code: 1,
        mtu: 0,
        recverr: true,
        no_pmtu_disc: 0,
    },
    // ip_no_pmtu_disc 1: sockets do IP_PMTUDISC_DONT, the MTU is taken as
    // 0 (the path MTU clamped to min_pmtu, 552, and locked), no error.
    Case {
        code: 4,
        mtu: 1200,
        recverr: true,
        no_pmtu_disc: 1,
    },
    // ip_no_pmtu_disc 2: the message is ignored.
    Case {
        code: 4,
        mtu: 1200,
        recverr: true,
        no_pmtu_disc: 2,
    },
];

/// What the kernel answers for [`CASES`] (run below where it can be): the
/// table the comparison rests on, so a regression shows without root too.
fn expected() -> Vec<Seen> {
    let e = |errno: i32, code: u8, info: u32| Some((errno as u32, 2, 3, code, info, ROUTER));
    vec![
        Seen {
            next_send: libc::EMSGSIZE,
            entry: e(libc::EMSGSIZE, 4, 1200),
            ip_mtu: 1200,
            frames: vec![1196, 252],
        },
        Seen {
            next_send: libc::ECONNREFUSED,
            entry: None,
            ip_mtu: 1500,
            frames: vec![1428],
        },
        Seen {
            next_send: 0,
            entry: None,
            ip_mtu: 1500,
            frames: vec![1428],
        },
        Seen {
            next_send: libc::EHOSTUNREACH,
            entry: e(libc::EHOSTUNREACH, 1, 0),
            ip_mtu: 1500,
            frames: vec![1428],
        },
        Seen {
            next_send: 0,
            entry: None,
            ip_mtu: 552,
            frames: vec![548, 548, 372],
        },
        Seen {
            next_send: 0,
            entry: None,
            ip_mtu: 1500,
            frames: vec![1428],
        },
    ]
}

#[test]
fn icmp_errors_reach_the_socket_as_in_the_kernel() {
    let ours: Vec<Seen> = CASES.iter().map(|&c| on_ipxmit(c)).collect();
    for (c, o) in CASES.iter().zip(&ours) {
        common::report(&format!("{c:?}: ipxmit {o:?}"));
    }
    let want = expected();
    for ((c, o), w) in CASES.iter().zip(&ours).zip(&want) {
        assert_eq!(o, w, "ipxmit, {c:?}");
    }
    if common::skip("icmp_errors_reach_the_socket_as_in_the_kernel") {
        return;
    }
    for ((c, o), w) in CASES.iter().zip(&ours).zip(&want) {
        let k = on_kernel(*c).expect("kernel side");
        common::report(&format!("{c:?}: kernel {k:?}"));
        assert_eq!(&k, w, "the kernel's table is wrong for {c:?}");
        assert_eq!(o, &k, "ipxmit against the kernel, {c:?}");
    }
}

/// A UDP datagram from the peer (10.10.0.1:7000) to our closed port 5999,
/// as an Ethernet frame to `dst` from `src`.
fn udp_to_closed_port(dst: EthernetAddress, src: EthernetAddress) -> Vec<u8> {
    let data = b"anyone there?";
    let mut f = vec![0u8; 14 + 20 + 8 + data.len()];
    f[..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&[8, 0]);
    let mut u = ipxmit::wire::UdpPacket::new_unchecked(&mut f[34..]);
    u.set_src_port(7000);
    u.set_dst_port(5999);
    u.set_len((8 + data.len()) as u16);
    u.payload_mut().copy_from_slice(data);
    u.fill_checksum(PEER, OURS);
    let total = (20 + 8 + data.len()) as u16;
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..34]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_tos(0x10);
    ip.set_ident(0x1234);
    ip.set_total_len(total);
    ip.set_ttl(61);
    ip.set_protocol(IpProtocol::UDP);
    ip.set_src_addr(PEER);
    ip.set_dst_addr(OURS);
    ip.fill_checksum();
    f
}

/// The IP datagram of an ICMP reply with the identification and the
/// header checksum zeroed (both follow the host's ID generator).
fn masked(mut ip: Vec<u8>) -> Vec<u8> {
    ip[4..6].fill(0);
    ip[10..12].fill(0);
    ip
}

#[test]
fn port_unreachable_sent_as_the_kernel_sends_it() {
    let stack = Stack::with_clock(Arc::new(ManualClock::new()));
    let wire = MemWire::new(16);
    let (mac_ours, mac_peer) = (
        EthernetAddress([2, 0, 0, 0, 0, 2]),
        EthernetAddress([2, 0, 0, 0, 0, 1]),
    );
    stack
        .add_device(DevConfig::ethernet("eth0", mac_ours), wire.drivers(1))
        .unwrap();
    stack
        .add_addr("eth0", "10.10.0.2/24".parse().unwrap())
        .unwrap();
    stack
        .add_neigh("eth0", PEER, mac_peer, NudState::Permanent)
        .unwrap();
    let eth0 = stack.device("eth0").unwrap();
    stack.receive(&eth0, &udp_to_closed_port(mac_ours, mac_peer));
    let mut out = Vec::new();
    wire.drain(|p| out.push(p.to_vec()));
    assert_eq!(out.len(), 1, "one port unreachable");
    let ours = masked(out[0][14..].to_vec());
    let hdr = Ipv4Packet::new_checked(&ours[..]).unwrap();
    assert_eq!((hdr.tos(), hdr.ttl(), hdr.dont_frag()), (0xd0, 64, false));
    if common::skip("port_unreachable_sent_as_the_kernel_sends_it") {
        return;
    }
    let v = VethPeer::new("icmpout").expect("namespaces");
    let cap = Capture::open(&v.a, DEV_A).expect("capture");
    inject(&v, udp_to_closed_port(v.mac_b, v.mac_a)).expect("inject");
    let frames: Vec<Vec<u8>> = cap
        .drain(Duration::from_millis(150))
        .into_iter()
        .map(|x| x.frame)
        .filter(|f| f.len() > 34 && f[12..14] == [8, 0] && f[23] == 1)
        .collect();
    assert_eq!(frames.len(), 1, "the kernel's port unreachable");
    let kernel = masked(frames[0][14..].to_vec());
    assert_eq!(ours, kernel, "ipxmit's reply, byte for byte but the ID");
}
