//! The kernel side: real sockets in namespace `A`, an `AF_PACKET` capture in
//! namespace `B`, and an end-of-scenario marker datagram so a capture stops as
//! soon as everything a scenario sent has arrived (no quiet-time guessing).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// An errno as the kernel returned it.
pub type Errno = i32;

fn last_errno() -> Errno {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; all-zero is valid.
    let mut s: libc::sockaddr_in = unsafe { zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
    s
}

/// One `recvmsg(MSG_ERRQUEUE)` result: `sock_extended_err` and the address the
/// failed datagram was for (`msg_name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrEntry {
    /// `ee_errno`.
    pub errno: u32,
    /// `ee_origin` (`SO_EE_ORIGIN_LOCAL` = 1, ICMP = 2, ZEROCOPY = 5).
    pub origin: u8,
    /// `ee_type`.
    pub ee_type: u8,
    /// `ee_code`.
    pub ee_code: u8,
    /// `ee_info`.
    pub info: u32,
    /// `ee_data`.
    pub data: u32,
    /// `msg_name` address.
    pub addr: Ipv4Addr,
    /// `msg_name` port.
    pub port: u16,
}

/// A kernel socket.
pub struct KSock {
    fd: OwnedFd,
}

impl KSock {
    /// `socket(AF_INET, ty, proto)` in the calling thread's namespace.
    pub fn new(ty: i32, proto: i32) -> io::Result<KSock> {
        // SAFETY: plain socket creation.
        let fd = unsafe { libc::socket(libc::AF_INET, ty | libc::SOCK_CLOEXEC, proto) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        Ok(KSock {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// `bind`.
    pub fn bind(&self, a: SocketAddrV4) -> Result<(), Errno> {
        let s = sockaddr(a);
        // SAFETY: a valid sockaddr_in of the right length.
        let r = unsafe {
            libc::bind(
                self.fd(),
                (&s as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if r < 0 {
            Err(last_errno())
        } else {
            Ok(())
        }
    }

    /// `connect`.
    pub fn connect(&self, a: SocketAddrV4) -> Result<(), Errno> {
        let s = sockaddr(a);
        // SAFETY: a valid sockaddr_in of the right length.
        let r = unsafe {
            libc::connect(
                self.fd(),
                (&s as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if r < 0 {
            Err(last_errno())
        } else {
            Ok(())
        }
    }

    /// `setsockopt` with an `int`.
    pub fn set_int(&self, level: i32, name: i32, v: i32) -> Result<(), Errno> {
        self.set_bytes(level, name, &v.to_ne_bytes())
    }

    /// `setsockopt` with bytes.
    pub fn set_bytes(&self, level: i32, name: i32, b: &[u8]) -> Result<(), Errno> {
        // SAFETY: b is valid for b.len() bytes.
        let r =
            unsafe { libc::setsockopt(self.fd(), level, name, b.as_ptr().cast(), b.len() as u32) };
        if r < 0 {
            Err(last_errno())
        } else {
            Ok(())
        }
    }

    /// `sendto` (or `send` without a destination).
    pub fn send(&self, buf: &[u8], dest: Option<SocketAddrV4>, flags: u32) -> Result<usize, Errno> {
        let r = match dest {
            Some(d) => {
                let s = sockaddr(d);
                // SAFETY: buffers valid for their lengths.
                unsafe {
                    libc::sendto(
                        self.fd(),
                        buf.as_ptr().cast(),
                        buf.len(),
                        flags as i32,
                        (&s as *const libc::sockaddr_in).cast(),
                        size_of::<libc::sockaddr_in>() as u32,
                    )
                }
            }
            // SAFETY: buffer valid for its length.
            None => unsafe { libc::send(self.fd(), buf.as_ptr().cast(), buf.len(), flags as i32) },
        };
        if r < 0 {
            Err(last_errno())
        } else {
            Ok(r as usize)
        }
    }

    /// `sendmmsg` of `bufs` (each to `dest`, or without one): the count sent,
    /// or the error of the first.
    pub fn sendmmsg(
        &self,
        bufs: &[Vec<u8>],
        dest: Option<SocketAddrV4>,
        flags: u32,
    ) -> Result<usize, Errno> {
        let mut name = dest.map(sockaddr);
        let mut iovs: Vec<libc::iovec> = bufs
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: plain data.
                let mut h: libc::mmsghdr = unsafe { zeroed() };
                if let Some(n) = name.as_mut() {
                    h.msg_hdr.msg_name = (n as *mut libc::sockaddr_in).cast();
                    h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
                }
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        // SAFETY: every header points at live buffers (the payloads, `iovs`,
        // `name`), all outliving the call.
        let r = unsafe {
            libc::sendmmsg(
                self.fd(),
                msgs.as_mut_ptr(),
                msgs.len() as u32,
                flags as i32,
            )
        };
        if r < 0 {
            Err(last_errno())
        } else {
            Ok(r as usize)
        }
    }

    /// One error-queue entry, or `None` when the queue is empty.
    pub fn recv_err(&self) -> Option<ErrEntry> {
        let mut data = [0u8; 512];
        let mut ctrl = [0u64; 64];
        // SAFETY: plain data.
        let mut name: libc::sockaddr_in = unsafe { zeroed() };
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: plain data.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut name as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 64]>();
        // SAFETY: msg points at live buffers.
        let r =
            unsafe { libc::recvmsg(self.fd(), &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if r < 0 {
            return None;
        }
        let mut entry = None;
        // SAFETY: walking the control buffer the kernel filled.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_IP && (*c).cmsg_type == libc::IP_RECVERR {
                    let p = libc::CMSG_DATA(c);
                    let mut ee = [0u8; 16];
                    std::ptr::copy_nonoverlapping(p, ee.as_mut_ptr(), 16);
                    let u32_at =
                        |i: usize| u32::from_ne_bytes([ee[i], ee[i + 1], ee[i + 2], ee[i + 3]]);
                    entry = Some(ErrEntry {
                        errno: u32_at(0),
                        origin: ee[4],
                        ee_type: ee[5],
                        ee_code: ee[6],
                        info: u32_at(8),
                        data: u32_at(12),
                        addr: Ipv4Addr::from(name.sin_addr.s_addr.to_ne_bytes()),
                        port: u16::from_be(name.sin_port),
                    });
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        // An entry without the control message still counts, as an odd one.
        Some(entry.unwrap_or(ErrEntry {
            errno: 0,
            origin: 0,
            ee_type: 0,
            ee_code: 0,
            info: 0,
            data: 0,
            addr: Ipv4Addr::UNSPECIFIED,
            port: 0,
        }))
    }
}

const PACKET_IGNORE_OUTGOING: i32 = 23;
const MARKER_PORT: u16 = 9;
const MARKER_MAGIC: &[u8; 12] = b"KDIFF-MARKER";

/// The capture on the peer: an `AF_PACKET` socket on `kdb0` in namespace `B`,
/// plus the marker socket in `A`.
pub struct Capture {
    fd: OwnedFd,
    marker: KSock,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    seq: u64,
    buf: Vec<u8>,
}

impl Capture {
    /// Opens the packet socket; call with the thread in `B`. `marker` is a UDP
    /// socket made in `A`.
    pub fn open(dev: &str, marker: KSock, src: Ipv4Addr, dst: Ipv4Addr) -> io::Result<Capture> {
        let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
        // SAFETY: plain socket creation.
        let fd =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let cname = std::ffi::CString::new(dev).expect("device name");
        // SAFETY: a valid C string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: plain data.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: a valid sockaddr_ll of the right length.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let set = |level: i32, name: i32, v: i32| {
            // SAFETY: an int option.
            unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (&v as *const i32).cast(), 4) }
        };
        set(libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
        set(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 64 << 20);
        Ok(Capture {
            fd,
            marker,
            src,
            dst,
            seq: 0,
            buf: vec![0; 1 << 17],
        })
    }

    fn recv(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
        if r <= 0 {
            return None;
        }
        // SAFETY: buffer valid for its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                libc::MSG_TRUNC | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return None;
        }
        let n = n as usize;
        assert!(n <= self.buf.len(), "captured frame of {n} bytes truncated");
        Some(self.buf[..n].to_vec())
    }

    fn is_ours(&self, f: &[u8]) -> bool {
        f.len() >= 34 && f[12..14] == [0x08, 0x00] && f[26..30] == self.src.octets()
    }

    fn is_marker(&self, f: &[u8], seq: u64) -> bool {
        if !self.is_ours(f) || f[23] != 17 || f[14] != 0x45 {
            return false;
        }
        let udp = &f[34..];
        udp.len() >= 8 + 20
            && u16::from_be_bytes([udp[2], udp[3]]) == MARKER_PORT
            && &udp[8..20] == MARKER_MAGIC
            && udp[20..28] == seq.to_be_bytes()
    }

    /// Sends the marker and returns every frame from the sender that arrived
    /// before it, in order.
    pub fn collect(&mut self) -> io::Result<Vec<Vec<u8>>> {
        self.seq += 1;
        let seq = self.seq;
        let mut payload = MARKER_MAGIC.to_vec();
        payload.extend_from_slice(&seq.to_be_bytes());
        self.marker
            .send(&payload, Some(SocketAddrV4::new(self.dst, MARKER_PORT)), 0)
            .map_err(io::Error::from_raw_os_error)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::other(format!(
                    "marker {seq} not captured within 5 s ({} frames so far)",
                    frames.len()
                )));
            }
            let Some(f) = self.recv(left) else { continue };
            if self.is_marker(&f, seq) {
                return Ok(frames);
            }
            if self.is_ours(&f) {
                frames.push(f);
            }
        }
    }
}
