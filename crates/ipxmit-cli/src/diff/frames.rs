//! Frames for `ipxmit diff`: read off the kernel's wire (an AF_PACKET
//! socket on the peer's end of the veth) and off ipxmit's (its capture
//! file), and compared field by field with what may differ between two
//! correct stacks masked: the IP ID (only whether it is 0, and equal
//! across one datagram's fragments), the header checksum (only whether it
//! is right), an ephemeral source port (ports 32768 and up: each stack
//! picks its own) and, with it, the UDP checksum.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// An AF_PACKET socket taking every frame that reaches one device (not
/// the frames it sends itself).
pub struct PacketSocket {
    fd: OwnedFd,
}

/// Bytes of receive buffer for the capture: a script's frames wait there
/// until the end.
const CAPTURE_RCVBUF: i32 = 16 << 20;

impl PacketSocket {
    /// Opens the capture on `dev` (in the calling thread's namespace).
    pub fn open(dev: &str) -> std::io::Result<PacketSocket> {
        let name = std::ffi::CString::new(dev).map_err(std::io::Error::other)?;
        // SAFETY: if_nametoindex of a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(std::io::Error::last_os_error());
        }
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: socket(2); the descriptor is owned at once.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an all-zero sockaddr_ll is valid; filled below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        let p = (&sll as *const libc::sockaddr_ll).cast();
        // SAFETY: a valid sockaddr_ll and its size; an int and its size.
        unsafe {
            if libc::bind(fd.as_raw_fd(), p, len) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let v = CAPTURE_RCVBUF;
            let vp = (&v as *const i32).cast();
            let vl = std::mem::size_of::<i32>() as libc::socklen_t;
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                vp,
                vl,
            );
        }
        Ok(PacketSocket { fd })
    }

    /// Every frame waiting, in arrival order, but those the device sent.
    pub fn drain(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65600];
        loop {
            // SAFETY: an all-zero sockaddr_ll is valid.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut fl = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            let fp = (&mut from as *mut libc::sockaddr_ll).cast();
            // SAFETY: a buffer of its stated length and a sockaddr_ll.
            let n = unsafe {
                let b = buf.as_mut_ptr().cast();
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    b,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    fp,
                    &mut fl,
                )
            };
            if n < 0 {
                return out;
            }
            if from.sll_pkttype != libc::PACKET_OUTGOING {
                out.push(buf[..n as usize].to_vec());
            }
        }
    }
}

/// The frames of a pcap file (ipxmit's capture), in order.
pub fn read_pcap(path: &std::path::Path) -> std::io::Result<Vec<Vec<u8>>> {
    let data = std::fs::read(path)?;
    let bad = || std::io::Error::other(format!("{}: not a pcap file", path.display()));
    let magic = data.get(..4).ok_or_else(bad)?;
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err(bad()),
    };
    let u32_at = |o: usize| -> Option<u32> {
        let b: [u8; 4] = data.get(o..o + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let (mut at, mut out) = (24, Vec::new());
    while at + 16 <= data.len() {
        let caplen = u32_at(at + 8).ok_or_else(bad)? as usize;
        let frame = data.get(at + 16..at + 16 + caplen).ok_or_else(bad)?;
        out.push(frame.to_vec());
        at += 16 + caplen;
    }
    Ok(out)
}

/// The Internet checksum of `b` (RFC 1071), folded and complemented: 0
/// when `b` holds a right one.
pub fn csum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// A frame with what may differ masked (see the module documentation).
/// Returns the masked copy.
pub fn normalise(f: &[u8]) -> Vec<u8> {
    let mut v = f.to_vec();
    if v.len() < 34 || v[12..14] != [0x08, 0x00] {
        return v;
    }
    let ihl = usize::from(v[14] & 0x0f) * 4;
    if v.len() < 14 + ihl {
        return v;
    }
    let id_zero = v[18] == 0 && v[19] == 0;
    let ck_ok = csum(&v[14..14 + ihl]) == 0;
    (v[18], v[19]) = (u8::from(!id_zero), 0);
    (v[24], v[25]) = (u8::from(!ck_ok), 0);
    let first_udp = v[23] == 17 && (v[20] & 0x1f) == 0 && v[21] == 0;
    let th = 14 + ihl;
    if first_udp && v.len() >= th + 8 && u16::from_be_bytes([v[th], v[th + 1]]) >= 32768 {
        (v[th], v[th + 1]) = (0xff, 0xff);
        (v[th + 6], v[th + 7]) = (0, 0);
    }
    v
}

/// One line about a frame: `ARP who-has 10.0.0.2`, `IPv4 10.0.0.1 >
/// 10.0.0.2 proto 17 len 1500 id 0x1234 off 0 DF MF`.
pub fn summary(f: &[u8]) -> String {
    if f.len() >= 42 && f[12..14] == [0x08, 0x06] {
        let op = if f[21] == 1 { "request" } else { "reply" };
        let ip = |o: usize| format!("{}.{}.{}.{}", f[o], f[o + 1], f[o + 2], f[o + 3]);
        return format!("ARP {op} {} asks for {}", ip(28), ip(38));
    }
    if f.len() < 34 || f[12..14] != [0x08, 0x00] {
        return format!(
            "{} bytes, ethertype {:02x}{:02x}",
            f.len(),
            f.get(12).unwrap_or(&0),
            f.get(13).unwrap_or(&0)
        );
    }
    let ip = |o: usize| format!("{}.{}.{}.{}", f[o], f[o + 1], f[o + 2], f[o + 3]);
    let frag = u16::from_be_bytes([f[20], f[21]]);
    format!(
        "IPv4 {} > {} proto {} len {} tos {:#x} ttl {} id {:#06x} off {}{}{}",
        ip(26),
        ip(30),
        f[23],
        u16::from_be_bytes([f[16], f[17]]),
        f[15],
        f[22],
        u16::from_be_bytes([f[18], f[19]]),
        (frag & 0x1fff) * 8,
        if frag & 0x4000 != 0 { " DF" } else { "" },
        if frag & 0x2000 != 0 { " MF" } else { "" },
    )
}

/// A frame in hex, a space every 2 bytes.
pub fn hex(f: &[u8]) -> String {
    let mut s = String::with_capacity(f.len() * 5 / 2);
    for (i, b) in f.iter().enumerate() {
        if i > 0 && i % 2 == 0 {
            s.push(' ');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The first byte where two frames differ, after masking.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    let (na, nb) = (normalise(a), normalise(b));
    na.iter()
        .zip(&nb)
        .position(|(x, y)| x != y)
        .or((na.len() != nb.len()).then(|| na.len().min(nb.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_checksums_and_ephemeral_ports_are_masked() {
        let mut f = vec![0u8; 14 + 28];
        f[12] = 0x08;
        f[14] = 0x45;
        f[23] = 17;
        (f[18], f[19]) = (0x12, 0x34);
        (f[34], f[35]) = (0xc0, 0x00);
        let mut g = f.clone();
        (g[18], g[19]) = (0x56, 0x78);
        (g[34], g[35]) = (0xd0, 0x01);
        assert_eq!(first_difference(&f, &g), None);
        (g[18], g[19]) = (0, 0);
        assert_eq!(first_difference(&f, &g), Some(18));
        let mut h = f.clone();
        (h[34], h[35]) = (0x13, 0x88);
        assert_eq!(first_difference(&f, &h), Some(34));
    }
}
