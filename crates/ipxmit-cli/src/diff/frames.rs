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

/// One step of an alignment of two frame lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The same frame (after masking) on both sides.
    Same(usize, usize),
    /// A frame of the kernel's with none of ipxmit's against it.
    OnlyKernel(usize),
    /// A frame of ipxmit's with none of the kernel's against it.
    OnlyIpxmit(usize),
    /// Two frames in the same place that differ (same addresses and
    /// length or both ARP): the first byte that differs.
    Differ(usize, usize, usize),
}

/// Cells an alignment may take (frames × frames); beyond it the lists
/// are compared in order.
const ALIGN_MAX_CELLS: usize = 16 << 20;

/// The alignment of `a` (the kernel's frames) and `b` (ipxmit's): a
/// longest common subsequence of the masked frames, and between its
/// matches, frames of one side only or (when alike) differing pairs.
pub fn align(a: &[Vec<u8>], b: &[Vec<u8>]) -> Vec<Step> {
    let (na, nb): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (
        a.iter().map(|f| normalise(f)).collect(),
        b.iter().map(|f| normalise(f)).collect(),
    );
    let raw = if (na.len() + 1) * (nb.len() + 1) <= ALIGN_MAX_CELLS {
        lcs(&na, &nb)
    } else {
        in_order(na.len(), nb.len(), |i, j| na[i] == nb[j])
    };
    pair_up(&raw, a, b)
}

/// The steps of a longest common subsequence of `a` and `b`.
fn lcs(a: &[Vec<u8>], b: &[Vec<u8>]) -> Vec<Step> {
    let (n, m) = (a.len(), b.len());
    let w = m + 1;
    let mut t = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i * w + j] = if a[i] == b[j] {
                t[(i + 1) * w + j + 1] + 1
            } else {
                t[(i + 1) * w + j].max(t[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push(Step::Same(i, j));
            (i, j) = (i + 1, j + 1);
        } else if j == m || (i < n && t[(i + 1) * w + j] >= t[i * w + j + 1]) {
            out.push(Step::OnlyKernel(i));
            i += 1;
        } else {
            out.push(Step::OnlyIpxmit(j));
            j += 1;
        }
    }
    out
}

/// The lists side by side in order, the longer one's tail alone.
fn in_order(n: usize, m: usize, same: impl Fn(usize, usize) -> bool) -> Vec<Step> {
    let mut out = Vec::new();
    for i in 0..n.max(m) {
        match (i < n, i < m) {
            (true, true) if same(i, i) => out.push(Step::Same(i, i)),
            (true, true) => out.extend([Step::OnlyKernel(i), Step::OnlyIpxmit(i)]),
            (true, false) => out.push(Step::OnlyKernel(i)),
            _ => out.push(Step::OnlyIpxmit(i)),
        }
    }
    out
}

/// Within each run between matches, the k-th frame of the kernel's alone
/// and the k-th of ipxmit's alone become one differing pair when alike.
fn pair_up(raw: &[Step], a: &[Vec<u8>], b: &[Vec<u8>]) -> Vec<Step> {
    let mut out = Vec::new();
    let mut run: (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
    let flush = |run: &mut (Vec<usize>, Vec<usize>), out: &mut Vec<Step>| {
        let (ks, xs) = (std::mem::take(&mut run.0), std::mem::take(&mut run.1));
        let paired = ks.len().min(xs.len());
        for (&i, &j) in ks.iter().zip(&xs) {
            match first_difference(&a[i], &b[j]).filter(|_| alike(&a[i], &b[j])) {
                Some(at) => out.push(Step::Differ(i, j, at)),
                None => out.extend([Step::OnlyKernel(i), Step::OnlyIpxmit(j)]),
            }
        }
        out.extend(ks[paired..].iter().map(|&i| Step::OnlyKernel(i)));
        out.extend(xs[paired..].iter().map(|&j| Step::OnlyIpxmit(j)));
    };
    for s in raw {
        match *s {
            Step::OnlyKernel(i) => run.0.push(i),
            Step::OnlyIpxmit(j) => run.1.push(j),
            other => {
                flush(&mut run, &mut out);
                out.push(other);
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Two frames that stand for the same packet: both ARP, or IPv4 with the
/// same length, addresses and protocol.
fn alike(a: &[u8], b: &[u8]) -> bool {
    let arp = |f: &[u8]| f.get(12..14) == Some(&[0x08, 0x06][..]);
    if arp(a) || arp(b) {
        return arp(a) && arp(b);
    }
    // Total length, protocol and addresses (not the ID or the checksum).
    let same = |x: &[u8], y: &[u8]| x[2..4] == y[2..4] && x[9] == y[9] && x[12..20] == y[12..20];
    a.len() == b.len()
        && a.get(14..34)
            .zip(b.get(14..34))
            .is_some_and(|(x, y)| same(x, y))
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

    #[test]
    fn a_missing_frame_does_not_shift_the_rest() {
        let f = |b: u8| {
            let mut v = vec![0u8; 60];
            v[12] = 0x08;
            v[14] = 0x45;
            v[40] = b;
            v
        };
        let k = vec![f(1), f(2), f(3), f(4)];
        let x = vec![f(1), f(3), f(4)];
        let a = align(&k, &x);
        assert_eq!(
            a,
            vec![
                Step::Same(0, 0),
                Step::OnlyKernel(1),
                Step::Same(2, 1),
                Step::Same(3, 2)
            ]
        );
        let y = vec![f(1), f(9), f(3), f(4)];
        let a = align(&k, &y);
        assert_eq!(a[1], Step::Differ(1, 1, 40));
    }
}
