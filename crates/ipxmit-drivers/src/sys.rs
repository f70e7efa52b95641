//! The few system interfaces the real-wire drivers need that `rustix` does not
//! wrap: the tun ioctls, `ifreq` ioctls, packet-socket options, `recvfrom` with
//! the link-layer address, and the `PACKET_TX_RING` mapping.
//!
//! Stands for the user-space side of `include/uapi/linux/if_tun.h`,
//! `include/uapi/linux/if_packet.h` and `include/uapi/linux/sockios.h`. Every
//! `unsafe` block of the drivers lives here, each with its SAFETY argument; the
//! rest of the crate calls the safe functions below.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use ipxmit::PacketBuf;

/// `IFNAMSIZ`: interface names are at most 15 bytes and a NUL.
pub const IFNAMSIZ: usize = 16;

/// `struct ifreq` (40 bytes on 64-bit Linux): the name and a 24-byte union of
/// which we use the flags (`ifr_flags`), the MTU (`ifr_mtu`) and the hardware
/// address (`ifr_hwaddr`, a `struct sockaddr`).
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> io::Result<IfReq> {
        let bytes = name.as_bytes();
        if bytes.len() >= IFNAMSIZ || bytes.contains(&0) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut r = IfReq {
            name: [0; IFNAMSIZ],
            data: [0; 24],
        };
        r.name[..bytes.len()].copy_from_slice(bytes);
        Ok(r)
    }

    fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}

/// `ioctl(fd, req, &mut ifreq)`.
fn ioctl_ifreq(fd: BorrowedFd<'_>, req: libc::Ioctl, ifr: &mut IfReq) -> io::Result<()> {
    // SAFETY: `ifr` is a live, writable `struct ifreq` of the kernel's size and
    // alignment, which is what every request passed here reads and writes;
    // for SIOCETHTOOL its `ifr_data` points at a live buffer large enough for
    // the command in it (see `ethtool`).
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, ifr as *mut IfReq) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `ioctl(fd, req, value)` for requests that take an integer argument by value.
fn ioctl_value(fd: BorrowedFd<'_>, req: libc::Ioctl, value: libc::c_ulong) -> io::Result<()> {
    // SAFETY: these requests (TUNSETOFFLOAD) read their argument as an integer,
    // not as a pointer; nothing in our memory is touched.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, value) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `ioctl(fd, req, &value)` for requests that read an `int` through a pointer.
fn ioctl_int_ptr(fd: BorrowedFd<'_>, req: libc::Ioctl, value: libc::c_int) -> io::Result<()> {
    let v = value;
    // SAFETY: `v` is a live `int` the request (TUNSETSNDBUF, TUNSETVNETHDRSZ)
    // only reads.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, &v as *const libc::c_int) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `TUNSETIFF`: creates or attaches the tun/tap device `name` (a `%d` pattern or
/// empty lets the kernel choose) with `flags`; returns the device's name.
pub fn tun_set_iff(fd: BorrowedFd<'_>, name: &str, flags: u16) -> io::Result<String> {
    let mut ifr = IfReq::new(name)?;
    ifr.data[..2].copy_from_slice(&flags.to_ne_bytes());
    ioctl_ifreq(fd, libc::TUNSETIFF, &mut ifr)?;
    Ok(ifr.name())
}

/// `TUNSETOFFLOAD`: the offloads (`TUN_F_*`) this reader accepts.
pub fn tun_set_offload(fd: BorrowedFd<'_>, flags: u32) -> io::Result<()> {
    ioctl_value(fd, libc::TUNSETOFFLOAD, flags.into())
}

/// `TUNSETVNETHDRSZ`: size of the `virtio_net_hdr` in front of each frame.
pub fn tun_set_vnet_hdr_sz(fd: BorrowedFd<'_>, size: i32) -> io::Result<()> {
    ioctl_int_ptr(fd, libc::TUNSETVNETHDRSZ, size)
}

/// `TUNSETSNDBUF`: the send buffer limiting frames in flight from this fd.
pub fn tun_set_sndbuf(fd: BorrowedFd<'_>, bytes: i32) -> io::Result<()> {
    ioctl_int_ptr(fd, libc::TUNSETSNDBUF, bytes)
}

/// `SIOCGIFHWADDR`: the hardware address of interface `name` (on a tun fd the
/// name is ignored and the tun device's own address returned).
pub fn if_hwaddr(fd: BorrowedFd<'_>, name: &str) -> io::Result<[u8; 6]> {
    let mut ifr = IfReq::new(name)?;
    ioctl_ifreq(fd, libc::SIOCGIFHWADDR, &mut ifr)?;
    let mut mac = [0; 6];
    // ifr_hwaddr is a struct sockaddr: sa_family (2 bytes), then sa_data.
    mac.copy_from_slice(&ifr.data[2..8]);
    Ok(mac)
}

/// `SIOCGIFMTU`: the MTU of interface `name`.
pub fn if_mtu(fd: BorrowedFd<'_>, name: &str) -> io::Result<u32> {
    let mut ifr = IfReq::new(name)?;
    ioctl_ifreq(fd, libc::SIOCGIFMTU, &mut ifr)?;
    let mtu = i32::from_ne_bytes([ifr.data[0], ifr.data[1], ifr.data[2], ifr.data[3]]);
    Ok(mtu.max(0) as u32)
}

/// `ioctl(fd, SIOCETHTOOL)` on interface `name` with `buf` as the command
/// structure (`ifr_data`); `buf` starts with the command word.
fn ethtool(fd: BorrowedFd<'_>, name: &str, buf: &mut [u32]) -> io::Result<()> {
    let mut ifr = IfReq::new(name)?;
    let p = buf.as_mut_ptr() as usize;
    // `ifr_data` is the union's first member, a pointer.
    ifr.data[..std::mem::size_of::<usize>()].copy_from_slice(&p.to_ne_bytes());
    ioctl_ifreq(fd, libc::SIOCETHTOOL, &mut ifr)
}

/// Whether interface `name` has the feature called `feature` (as ethtool
/// -k names it, e.g. `tx-udp-segmentation`) active: `ETHTOOL_GSSET_INFO`
/// for the number of feature names, `ETHTOOL_GSTRINGS` for them,
/// `ETHTOOL_GFEATURES` for the active bits. Kernel: `ethtool_get_features()`.
pub fn if_feature_active(fd: BorrowedFd<'_>, name: &str, feature: &str) -> io::Result<bool> {
    const ETHTOOL_GSTRINGS: u32 = 0x1b;
    const ETHTOOL_GSSET_INFO: u32 = 0x37;
    const ETHTOOL_GFEATURES: u32 = 0x3a;
    const ETH_SS_FEATURES: u32 = 4;
    const GSTRING: usize = 32;
    // struct ethtool_sset_info: cmd, reserved, u64 sset_mask, u32 data[1].
    let mut info = [ETHTOOL_GSSET_INFO, 0, 1 << ETH_SS_FEATURES, 0, 0];
    ethtool(fd, name, &mut info)?;
    let count = info[4] as usize;
    // struct ethtool_gstrings: cmd, string_set, len, then count x 32 bytes.
    let mut strings = vec![0u32; 3 + count * GSTRING / 4];
    strings[..3].copy_from_slice(&[ETHTOOL_GSTRINGS, ETH_SS_FEATURES, count as u32]);
    ethtool(fd, name, &mut strings)?;
    let bytes: Vec<u8> = strings[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();
    let Some(bit) = bytes.chunks(GSTRING).position(|c| {
        let end = c.iter().position(|&b| b == 0).unwrap_or(GSTRING);
        &c[..end] == feature.as_bytes()
    }) else {
        return Ok(false);
    };
    // struct ethtool_gfeatures: cmd, size, then blocks of {available,
    // requested, active, never_changed}.
    let blocks = count.div_ceil(32);
    let mut f = vec![0u32; 2 + 4 * blocks];
    f[..2].copy_from_slice(&[ETHTOOL_GFEATURES, blocks as u32]);
    ethtool(fd, name, &mut f)?;
    Ok(f[2 + 4 * (bit / 32) + 2] & (1 << (bit % 32)) != 0)
}

/// `setsockopt(fd, level, name, &value, sizeof value)` for a plain-data value.
fn setsockopt<T: Copy>(fd: BorrowedFd<'_>, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the given size; the kernel copies
    // it in and keeps no reference. `T` is plain data (`int`, `tpacket_req`).
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `setsockopt(fd, level, name, int)`.
pub fn setsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32, value: i32) -> io::Result<()> {
    setsockopt(fd, level, name, &value)
}

/// `bind(fd, sockaddr_ll{AF_PACKET, protocol, ifindex})`.
pub fn bind_packet(fd: BorrowedFd<'_>, protocol: u16, ifindex: u32) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a live sockaddr_ll and the length passed is its size.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `socket(AF_PACKET, SOCK_RAW, htons(proto))`, non-blocking and
/// close-on-exec (`EPERM` without `CAP_NET_RAW`).
pub fn packet_socket(proto: u16) -> rustix::io::Result<std::os::fd::OwnedFd> {
    use rustix::net::{AddressFamily, Protocol, RawProtocol, SocketFlags, SocketType};
    let p = RawProtocol::new(u32::from(proto.to_be())).map(Protocol::from_raw);
    rustix::net::socket_with(
        AddressFamily::PACKET,
        SocketType::RAW,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        p,
    )
}

/// Makes the packet socket `fd` of protocol `proto` a link's receive
/// socket: bound to interface `ifindex`, our own outgoing frames left out
/// (`PACKET_IGNORE_OUTGOING`; older kernels lack it, so receivers check
/// `sll_pkttype` as well).
pub fn bind_rx(fd: BorrowedFd<'_>, proto: u16, ifindex: u32) -> io::Result<()> {
    bind_packet(fd, proto, ifindex)?;
    let _ = setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1);
    Ok(())
}

/// `recvfrom(fd, buf, MSG_DONTWAIT, &sockaddr_ll)`: one frame and its packet
/// type (`PACKET_HOST`, `PACKET_OUTGOING`, ...).
pub fn recv_ll(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, u8)> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `buf` is writable for `buf.len()` bytes; `sll`/`len` describe a
    // writable sockaddr_ll of the stated size.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&mut sll as *mut libc::sockaddr_ll).cast(),
            &mut len,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok((n as usize, sll.sll_pkttype))
    }
}

/// The `tp_status` bits of a TX slot the kernel still owns: waiting to be
/// sent (`TP_STATUS_SEND_REQUEST`) or in flight (`TP_STATUS_SENDING`, until
/// the frame's buffer is freed and `tpacket_destruct_skb` hands the slot
/// back, possibly with `TP_STATUS_TS_*` bits set).
pub const TP_STATUS_KERNEL: u32 = libc::TP_STATUS_SEND_REQUEST | libc::TP_STATUS_SENDING;

/// The `PACKET_VERSION` of a TX ring: the layout of each slot's header.
/// Both rings are frame-based on transmit (`tpacket_snd` walks the slots
/// one by one with `packet_current_frame`); `TPACKET_V3`'s blocks only
/// matter on receive, and its `tp_next_offset` must stay 0 on transmit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TpacketVersion {
    /// `TPACKET_V2`: `struct tpacket2_hdr` (32 bytes).
    V2,
    /// `TPACKET_V3` (transmit since Linux 4.11): `struct tpacket3_hdr`
    /// (48 bytes).
    #[default]
    V3,
}

impl TpacketVersion {
    /// Where a frame's data starts in a TX slot: `tp_hdrlen - sizeof(struct
    /// sockaddr_ll)` = `TPACKET_ALIGN(sizeof(struct tpacketN_hdr))`.
    pub const fn data_offset(self) -> usize {
        match self {
            TpacketVersion::V2 => 32,
            TpacketVersion::V3 => 48,
        }
    }

    /// Offsets of `tp_status` and `tp_len` in the slot header.
    const fn status_len_offsets(self) -> (usize, usize) {
        match self {
            TpacketVersion::V2 => (0, 4),
            TpacketVersion::V3 => (20, 16),
        }
    }

    fn raw(self) -> i32 {
        match self {
            TpacketVersion::V2 => libc::tpacket_versions::TPACKET_V2 as i32,
            TpacketVersion::V3 => libc::tpacket_versions::TPACKET_V3 as i32,
        }
    }
}

/// `PACKET_VNET_HDR`: every frame sent on `fd` starts with a `struct
/// virtio_net_hdr` (`packet_snd`/`tpacket_snd` pass it to
/// `virtio_net_hdr_to_skb`). Must be set before a ring is.
pub fn set_packet_vnet_hdr(fd: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)
}

/// A `PACKET_TX_RING` mapped into our memory: `frame_nr` slots of
/// `frame_size` bytes, `frames_per_block` to a block of `block_size` bytes,
/// with `TPACKET_V2` or `TPACKET_V3` slot headers.
pub struct TxRingMap {
    base: NonNull<u8>,
    len: usize,
    block_size: usize,
    frame_size: usize,
    frames_per_block: usize,
    frame_nr: usize,
    version: TpacketVersion,
}

// SAFETY: the mapping is owned by this value (unmapped on drop) and only reached
// through `&mut self` or atomics, so moving it to another thread is sound.
unsafe impl Send for TxRingMap {}

impl std::fmt::Debug for TxRingMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxRingMap")
            .field("frames", &self.frame_nr)
            .field("frame_size", &self.frame_size)
            .finish()
    }
}

impl TxRingMap {
    /// Sets `PACKET_VERSION` to `version` and `PACKET_TX_RING` on `fd`, then
    /// maps the ring. `frame_size` must be a multiple of 16, `block_size` a
    /// multiple of the page size and of `frame_size`.
    pub fn setup(
        fd: BorrowedFd<'_>,
        version: TpacketVersion,
        block_size: usize,
        block_nr: usize,
        frame_size: usize,
    ) -> io::Result<TxRingMap> {
        setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_VERSION, version.raw())?;
        let frames_per_block = block_size / frame_size;
        let frame_nr = (block_nr * frames_per_block) as u32;
        let (bs, bn, fs) = (block_size as u32, block_nr as u32, frame_size as u32);
        match version {
            TpacketVersion::V2 => {
                let req = libc::tpacket_req {
                    tp_block_size: bs,
                    tp_block_nr: bn,
                    tp_frame_size: fs,
                    tp_frame_nr: frame_nr,
                };
                setsockopt(fd, libc::SOL_PACKET, libc::PACKET_TX_RING, &req)?;
            }
            TpacketVersion::V3 => {
                // No block retire timer, private area or features: the
                // kernel refuses them on a TX ring (`packet_set_ring`).
                let req = libc::tpacket_req3 {
                    tp_block_size: bs,
                    tp_block_nr: bn,
                    tp_frame_size: fs,
                    tp_frame_nr: frame_nr,
                    tp_retire_blk_tov: 0,
                    tp_sizeof_priv: 0,
                    tp_feature_req_word: 0,
                };
                setsockopt(fd, libc::SOL_PACKET, libc::PACKET_TX_RING, &req)?;
            }
        }
        let len = block_size * block_nr;
        // SAFETY: a fresh shared mapping of the ring the kernel just allocated
        // for this socket; no existing memory is affected.
        let p = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
                fd.as_fd(),
                0,
            )
        }?;
        let base = NonNull::new(p.cast::<u8>()).ok_or(io::ErrorKind::InvalidData)?;
        Ok(TxRingMap {
            base,
            len,
            block_size,
            frame_size,
            frames_per_block,
            frame_nr: block_nr * frames_per_block,
            version,
        })
    }

    /// Number of slots.
    pub fn frames(&self) -> usize {
        self.frame_nr
    }

    /// Largest frame a slot holds (a vnet header included).
    pub fn max_frame(&self) -> usize {
        self.frame_size - self.version.data_offset()
    }

    fn slot_offset(&self, i: usize) -> usize {
        (i / self.frames_per_block) * self.block_size
            + (i % self.frames_per_block) * self.frame_size
    }

    fn status_word(&self, i: usize) -> &AtomicU32 {
        let off = self.slot_offset(i % self.frame_nr) + self.version.status_len_offsets().0;
        // SAFETY: `off` is inside the mapping and 4-aligned (slots are
        // 16-aligned); the kernel accesses `tp_status` concurrently, which is
        // why it is only read and written atomically.
        unsafe { &*self.base.as_ptr().add(off).cast::<AtomicU32>() }
    }

    /// `tp_status` of slot `i` (acquire: the kernel's writes before it are seen).
    pub fn status(&self, i: usize) -> u32 {
        self.status_word(i).load(Ordering::Acquire)
    }

    /// Resets slot `i` to `TP_STATUS_AVAILABLE` (after `TP_STATUS_WRONG_FORMAT`).
    pub fn set_available(&self, i: usize) {
        self.status_word(i)
            .store(libc::TP_STATUS_AVAILABLE, Ordering::Release);
    }

    /// Copies `pkt` into slot `i`, after `vnet` (a `virtio_net_hdr` when the
    /// socket has `PACKET_VNET_HDR`, else empty). The slot must be available
    /// (the kernel does not touch it then; timestamp bits may be set); it is
    /// handed to the kernel (`TP_STATUS_SEND_REQUEST`, release). Returns false
    /// when the slot is not available or too small.
    pub fn fill(&mut self, i: usize, vnet: &[u8], pkt: &PacketBuf) -> bool {
        let len = vnet.len() + pkt.len();
        let busy = TP_STATUS_KERNEL | libc::TP_STATUS_WRONG_FORMAT;
        if len > self.max_frame() || self.status(i) & busy != 0 {
            return false;
        }
        let start = self.slot_offset(i % self.frame_nr);
        let data = start + self.version.data_offset();
        let base = self.base.as_ptr();
        let mut at = 0usize;
        let mut put = |s: &[u8]| {
            let n = s.len().min(len - at);
            // SAFETY: `data + at + n <= data + len <= slot end`, inside the
            // mapping; the slot is ours while AVAILABLE; `s` is our own memory,
            // disjoint from the mapping.
            unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), base.add(data + at), n) };
            at += n;
        };
        put(vnet);
        pkt.for_each_segment(&mut put);
        self.set_len(start, at as u32);
        self.status_word(i)
            .store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
        true
    }

    /// Writes `tp_len` (and for `TPACKET_V3` a zero `tp_next_offset`: the
    /// kernel sends only fixed-size slots) of the slot at `start`.
    /// Kernel: makes `tpacket_snd` skip slot `i`, which waits
    /// (`TP_STATUS_SEND_REQUEST`) and which the device keeps refusing: its
    /// `tp_len` set to 0, the kernel finds no Ethernet header in it
    /// (`dev_validate_header`: `EINVAL`) and, with `PACKET_LOSS`, marks it
    /// available and goes on. Only between `send`s on the socket: the
    /// kernel reads a waiting slot inside `send` alone.
    pub fn poison(&mut self, i: usize) {
        let start = self.slot_offset(i % self.frame_nr);
        self.set_len(start, 0);
    }

    fn set_len(&mut self, start: usize, len: u32) {
        let base = self.base.as_ptr();
        let len_off = self.version.status_len_offsets().1;
        // SAFETY: `tp_len` and `tp_next_offset` (offset 0) are 4-aligned
        // u32s inside the slot (slots are 16-aligned), which the kernel does
        // not read before it sees SEND_REQUEST, stored after this — or, for
        // a slot already waiting (`poison`), outside `send`, the only place
        // the kernel reads it (`tpacket_snd`).
        unsafe {
            base.add(start + len_off).cast::<u32>().write_volatile(len);
            if self.version == TpacketVersion::V3 {
                base.add(start).cast::<u32>().write_volatile(0);
            }
        }
    }
}

impl Drop for TxRingMap {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly the mapping made in `setup`, no
        // reference into it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// True when `fd` is writable now (a zero-timeout `poll` for `POLLOUT`).
pub fn writable_now(fd: &impl AsFd) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut p = [PollFd::new(fd, PollFlags::OUT)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut p, Some(&zero)), Ok(1))
        && p[0].revents().contains(PollFlags::OUT)
}
