//! The system calls `ipxmit diff` makes on the kernel's sockets, with
//! errors as the errno names ipxmit reports (`EMSGSIZE`): `setsockopt`,
//! `getsockopt`, `sendmmsg` and the `sockaddr_in` they take. Shared with
//! the kernel-differential tests.

use std::net::SocketAddrV4;
use std::os::fd::RawFd;

/// The size of a `sockaddr_in`.
pub const SIN_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;

/// `a` as a `sockaddr_in`.
pub fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// An errno's name as ipxmit prints it (`errno N` for one it has none for).
pub fn errno_name(e: i32) -> String {
    ipxmit::Errno::from_code(e).map_or_else(|| format!("errno {e}"), |x| x.name().to_string())
}

/// The name of the errno of the last failed call.
pub fn last_errno() -> String {
    errno_name(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// `setsockopt` of an int.
pub fn set_int(fd: RawFd, level: i32, opt: i32, v: i32) -> Result<(), String> {
    set_bytes(fd, level, opt, &v.to_ne_bytes())
}

/// `setsockopt` of bytes (a device name, an int's bytes).
pub fn set_bytes(fd: RawFd, level: i32, opt: i32, v: &[u8]) -> Result<(), String> {
    let len = v.len() as libc::socklen_t;
    // SAFETY: a valid pointer to `len` bytes.
    let r = unsafe { libc::setsockopt(fd, level, opt, v.as_ptr().cast(), len) };
    if r == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// `getsockopt` of an int.
pub fn get_int(fd: RawFd, level: i32, opt: i32) -> Result<i64, String> {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: a valid pointer to an int and its size.
    let r = unsafe { libc::getsockopt(fd, level, opt, (&mut v as *mut i32).cast(), &mut len) };
    if r == 0 {
        Ok(i64::from(v))
    } else {
        Err(last_errno())
    }
}

/// `sendmmsg(2)` of `msgs` (destination, payload): how many were sent.
pub fn sendmmsg(
    fd: RawFd,
    msgs: &mut [(Option<libc::sockaddr_in>, Vec<u8>)],
    flags: i32,
) -> Result<i64, String> {
    let mut iovs: Vec<libc::iovec> = msgs
        .iter_mut()
        .map(|(_, b)| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = msgs
        .iter_mut()
        .zip(iovs.iter_mut())
        .map(|((to, _), iov)| {
            // SAFETY: an all-zero msghdr is a valid empty one.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            if let Some(sa) = to {
                h.msg_hdr.msg_name = (sa as *mut libc::sockaddr_in).cast();
                h.msg_hdr.msg_namelen = SIN_LEN;
            }
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: headers pointing at live buffers and addresses.
    let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as u32, flags as _) };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(i64::from(r))
    }
}
