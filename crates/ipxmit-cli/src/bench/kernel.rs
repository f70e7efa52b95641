//! Side A: the kernel's own UDP send path, driven with `sendto` and with
//! `sendmmsg` (64 messages per call) from the calling thread, which must
//! already be in the benchmark's network namespace. Also the legacy ethtool
//! ioctls that read and set the sink's checksum offload.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::cases::Case;
use super::measure::{self, Sample, CHECK_EVERY};

/// Messages per `sendmmsg` call.
pub const MMSG_BATCH: usize = 64;

const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;

/// How the kernel side writes its datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One `sendto` per datagram (per piece with `MSG_MORE`).
    SendTo,
    /// `sendmmsg` of 64 datagrams; with `MSG_MORE` pieces, one `sendmmsg` of
    /// all but the last piece (flag `MSG_MORE`) and a `sendto` of the last.
    SendMmsg,
}

impl Mode {
    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Mode::SendTo => "kernel sendto",
            Mode::SendMmsg => "kernel sendmmsg",
        }
    }
}

/// A kernel UDP socket set up for one case.
pub struct KernelSender {
    fd: OwnedFd,
    dest: libc::sockaddr_in,
    payload: Vec<u8>,
    case: Case,
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A datagram socket in the calling thread's network namespace.
pub fn udp_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt` of an `int`.
pub fn set_int_opt(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    set_opt(fd, level, name, &v)
}

/// `setsockopt` of any plain value.
pub fn set_opt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: v lives across the call; the length is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Binds `fd` to `addr`.
pub fn bind(fd: &OwnedFd, addr: SocketAddrV4) -> io::Result<()> {
    let sa = sockaddr(addr);
    // SAFETY: sa is a valid sockaddr_in for the call.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One `mmsghdr` per entry of `iov`, addressed to `dest` when given. The
/// result points into `iov` and `dest`: keep both in place while it is used.
pub fn msgs_for(iov: &mut [libc::iovec], dest: Option<&libc::sockaddr_in>) -> Vec<libc::mmsghdr> {
    iov.iter_mut()
        .map(|v| {
            // SAFETY: mmsghdr is plain data; zeroed is valid.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            if let Some(d) = dest {
                m.msg_hdr.msg_name = (d as *const libc::sockaddr_in).cast_mut().cast();
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect()
}

impl KernelSender {
    /// A socket sending `case` to `dest`.
    pub fn new(case: Case, dest: SocketAddrV4) -> io::Result<KernelSender> {
        let fd = udp_socket()?;
        if case.gso != 0 {
            set_int_opt(&fd, SOL_UDP, UDP_SEGMENT, libc::c_int::from(case.gso))?;
        }
        set_int_opt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20)?;
        Ok(KernelSender {
            fd,
            dest: sockaddr(dest),
            payload: case.payload_bytes(),
            case,
        })
    }

    fn sendto(&self, buf: &[u8], flags: libc::c_int) -> io::Result<bool> {
        // SAFETY: buf and dest are valid for the call.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                flags,
                (&self.dest as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if rc >= 0 {
            return Ok(true);
        }
        transient(io::Error::last_os_error())
    }

    /// One datagram with `sendto` (its pieces with `MSG_MORE`).
    fn send_datagram(&self) -> io::Result<(u64, u64, u64)> {
        let lens = self.case.piece_lens();
        let mut at = 0;
        for (i, n) in lens.iter().enumerate() {
            let flags = if i + 1 < lens.len() {
                libc::MSG_MORE
            } else {
                0
            };
            if !self.sendto(&self.payload[at..at + n], flags)? {
                return Ok((i as u64 + 1, 0, 1));
            }
            at += n;
        }
        Ok((lens.len() as u64, 1, 0))
    }

    /// Runs `mode` for `dur`.
    pub fn run(&self, mode: Mode, dur: Duration) -> io::Result<Sample> {
        let mut s = match (mode, self.case.pieces > 1) {
            (Mode::SendTo, _) => measure::timed(dur, || {
                let mut t = (0, 0, 0);
                for _ in 0..CHECK_EVERY {
                    let (c, s, e) = self.send_datagram()?;
                    t = (t.0 + c, t.1 + s, t.2 + e);
                }
                Ok::<_, io::Error>(t)
            })?,
            (Mode::SendMmsg, false) => self.run_mmsg(dur)?,
            (Mode::SendMmsg, true) => self.run_mmsg_pieces(dur)?,
        };
        s.datagrams = s.sends * self.case.datagrams_per_send();
        s.payload_bytes = s.sends * self.case.payload as u64;
        Ok(s)
    }

    fn sendmmsg(&self, msgs: &mut [libc::mmsghdr], flags: libc::c_int) -> io::Result<usize> {
        // SAFETY: msgs point at iovecs, the destination and the payload, all
        // alive for the call (see msgs_for).
        let rc = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                flags,
            )
        };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        transient(io::Error::last_os_error()).map(|_| 0)
    }

    fn run_mmsg(&self, dur: Duration) -> io::Result<Sample> {
        let base = self.payload.as_ptr().cast_mut().cast();
        let mut iov: Vec<libc::iovec> = (0..MMSG_BATCH)
            .map(|_| libc::iovec {
                iov_base: base,
                iov_len: self.payload.len(),
            })
            .collect();
        let mut msgs = msgs_for(&mut iov, Some(&self.dest));
        measure::timed(dur, || {
            let sent = self.sendmmsg(&mut msgs, 0)? as u64;
            Ok((1, sent, MMSG_BATCH as u64 - sent))
        })
    }

    fn run_mmsg_pieces(&self, dur: Duration) -> io::Result<Sample> {
        let lens = self.case.piece_lens();
        let (head, last) = lens.split_at(lens.len() - 1);
        let mut at = 0;
        let mut iov: Vec<libc::iovec> = Vec::new();
        for n in head {
            let p = self.payload[at..].as_ptr().cast_mut().cast();
            iov.push(libc::iovec {
                iov_base: p,
                iov_len: *n,
            });
            at += n;
        }
        let tail = &self.payload[at..at + last[0]];
        let mut msgs = msgs_for(&mut iov, Some(&self.dest));
        measure::timed(dur, || {
            let mut t = (0, 0, 0);
            for _ in 0..CHECK_EVERY / 8 {
                let n = self.sendmmsg(&mut msgs, libc::MSG_MORE)?;
                let ok = n == head.len() && self.sendto(tail, 0)?;
                t = (t.0 + 2, t.1 + u64::from(ok), t.2 + u64::from(!ok));
            }
            Ok(t)
        })
    }
}

/// `ENOBUFS`/`EAGAIN` are counted, anything else is an error.
fn transient(e: io::Error) -> io::Result<bool> {
    match e.raw_os_error() {
        Some(libc::ENOBUFS) | Some(libc::EAGAIN) => Ok(false),
        _ => Err(e),
    }
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
/// `ETHTOOL_GTXCSUM` / `ETHTOOL_STXCSUM`.
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
/// `ETHTOOL_GSG`.
const ETHTOOL_GSG: u32 = 0x18;
/// `ETHTOOL_GGSO`.
const ETHTOOL_GGSO: u32 = 0x23;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

fn ethtool(ifname: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let fd = udp_socket()?;
    let mut v = EthtoolValue { cmd, data };
    // SAFETY: a zeroed ifreq is valid; the name is copied within its bounds
    // (checked below) and ifru_data points at `v`, alive for the call.
    let rc = unsafe {
        let mut ifr: libc::ifreq = std::mem::zeroed();
        if ifname.len() >= ifr.ifr_name.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "interface name too long",
            ));
        }
        for (d, s) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
            *d = s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_data = (&mut v as *mut EthtoolValue).cast();
        libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL as _, &mut ifr)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v.data)
}

/// Offloads of the sink as the kernel reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offloads {
    /// `tx-checksumming`.
    pub csum: bool,
    /// `scatter-gather`.
    pub sg: bool,
    /// `generic-segmentation-offload`.
    pub gso: bool,
}

/// Reads the sink's offloads (legacy ethtool ioctls; no ethtool binary needed).
pub fn offloads(ifname: &str) -> io::Result<Offloads> {
    Ok(Offloads {
        csum: ethtool(ifname, ETHTOOL_GTXCSUM, 0)? != 0,
        sg: ethtool(ifname, ETHTOOL_GSG, 0)? != 0,
        gso: ethtool(ifname, ETHTOOL_GGSO, 0)? != 0,
    })
}

/// Turns the sink's checksum offload on or off (`ethtool -K IF tx on|off`).
pub fn set_csum(ifname: &str, on: bool) -> io::Result<()> {
    ethtool(ifname, ETHTOOL_STXCSUM, u32::from(on)).map(|_| ())
}
