//! UDP sockets.
//!
//! Stands for `udp_sendmsg`, `udp_send_skb`, `udp_push_pending_frames`,
//! `udp_flush_pending_frames`, `udp4_hwcsum`/`udp_csum` and the UDP socket
//! options (`net/ipv4/udp.c`), plus `ip_local_error` (`net/ipv4/ip_sockglue.c`).
//!
//! A send either builds and sends one datagram at once (the kernel's lockless
//! `ip_make_skb` path) or, with `MSG_MORE` or `UDP_CORK`, appends to the pending
//! datagram, which the first send without them pushes. While a datagram is
//! pending, later sends add to it whatever destination they name, as in the kernel.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use crate::buf::{CsumState, GsoType, PacketBuf, SendBudget};
use crate::error::{Errno, SendError};
use crate::ipv4::output::send_skb;
use crate::route::Dst;
use crate::socket::cork::{Cork, CorkParams};
use crate::socket::{ErrOrigin, ErrQueue, ErrQueueEntry, MsgFlags, PmtuDisc, SockOpts};
use crate::stack::Stack;
use crate::stats::Mib;
use crate::wire::checksum::{pseudo_header_v4, Csum};

/// UDP header length.
pub const UDP_HLEN: usize = 8;

/// Most segments of one UDP GSO send (`UDP_MAX_SEGMENTS`).
pub const UDP_MAX_SEGMENTS: usize = 128;

/// `rt_tos2priority`: the priority `IP_TOS` implies (`ip_tos2prio`).
pub fn tos_to_priority(tos: u8) -> u32 {
    const MAP: [u32; 16] = [0, 0, 0, 0, 2, 2, 2, 2, 6, 6, 6, 6, 4, 4, 4, 4];
    MAP[((tos & 0x1e) >> 1) as usize]
}

/// A UDP socket. Owned by one thread; the stack it sends through is shared.
pub struct UdpSocket {
    stack: Arc<Stack>,
    opts: SockOpts,
    local: SocketAddrV4,
    peer: Option<SocketAddrV4>,
    cork: Cork,
    pending: bool,
    budget: Arc<SendBudget>,
    errq: ErrQueue,
    inet_id: u16,
    dst_cache: Option<(u64, Ipv4Addr, Arc<Dst>)>,
    /// Destination port of the pending datagram (`fl4->fl4_dport`).
    cork_dport: u16,
}

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .field("pending", &self.pending)
            .finish()
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.stack.release_port(self.local.port());
    }
}

impl UdpSocket {
    /// An unbound socket on `stack`.
    pub fn new(stack: &Arc<Stack>) -> UdpSocket {
        let sndbuf = stack.sysctls().wmem_default;
        UdpSocket {
            stack: stack.clone(),
            opts: SockOpts::default(),
            local: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            peer: None,
            cork: Cork::default(),
            pending: false,
            budget: SendBudget::new(sndbuf),
            errq: ErrQueue::default(),
            inet_id: 0,
            dst_cache: None,
            cork_dport: 0,
        }
    }

    /// The local address (`getsockname`).
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// The connected peer (`getpeername`).
    pub fn peer_addr(&self) -> Option<SocketAddrV4> {
        self.peer
    }

    /// The socket's options.
    pub fn opts(&self) -> &SockOpts {
        &self.opts
    }

    /// The options, writable (`setsockopt` without side effects).
    pub fn opts_mut(&mut self) -> &mut SockOpts {
        &mut self.opts
    }

    /// The send budget (`SO_SNDBUF`, `sk_wmem_alloc`).
    pub fn budget(&self) -> &Arc<SendBudget> {
        &self.budget
    }

    /// Bytes of the pending (corked) datagram.
    pub fn pending_len(&self) -> usize {
        self.cork.length()
    }

    /// Binds to `addr` (`bind`): port 0 picks an ephemeral port; the address must
    /// be 0.0.0.0 or one of the stack's.
    pub fn bind(&mut self, addr: SocketAddrV4) -> Result<(), SendError> {
        if self.local.port() != 0 {
            return Err(SendError::Inval("socket already bound"));
        }
        let ip = *addr.ip();
        if !ip.is_unspecified() && !self.stack.is_local_addr(ip) {
            return Err(SendError::AddrNotAvail(ip));
        }
        let port = self.stack.bind_port(addr.port())?;
        self.local = SocketAddrV4::new(ip, port);
        Ok(())
    }

    fn autobind(&mut self) -> Result<(), SendError> {
        if self.local.port() == 0 {
            self.bind(SocketAddrV4::new(*self.local.ip(), 0))?;
        }
        Ok(())
    }

    /// Connects to `peer` (`ip4_datagram_connect`): routes, picks the source
    /// address, seeds the socket's own IP ID counter.
    pub fn connect(&mut self, peer: SocketAddrV4) -> Result<(), SendError> {
        if peer.port() == 0 {
            return Err(SendError::Inval("destination port 0"));
        }
        let dst = self.route(*peer.ip())?;
        self.autobind()?;
        if self.local.ip().is_unspecified() {
            let src = self.stack.source_for(&dst);
            self.local = SocketAddrV4::new(src, self.local.port());
        }
        self.peer = Some(peer);
        self.inet_id = self.stack.random_u16();
        Ok(())
    }

    fn route(&mut self, daddr: Ipv4Addr) -> Result<Arc<Dst>, SendError> {
        let gen = self.stack.fib_generation();
        if let Some((g, a, d)) = &self.dst_cache {
            if *g == gen && *a == daddr {
                return Ok(d.clone());
            }
        }
        let d = self
            .stack
            .route_output(daddr)
            .map_err(|_| SendError::NetUnreachable(daddr))?;
        self.dst_cache = Some((gen, daddr, d.clone()));
        Ok(d)
    }

    /// Sends `buf` to `dest` (`sendto`).
    pub fn send_to(
        &mut self,
        buf: &[u8],
        dest: SocketAddrV4,
        flags: MsgFlags,
    ) -> Result<usize, SendError> {
        self.sendmsg(buf, Some(dest), flags)
    }

    /// Sends `buf` to the connected peer (`send`).
    pub fn send(&mut self, buf: &[u8], flags: MsgFlags) -> Result<usize, SendError> {
        self.sendmsg(buf, None, flags)
    }

    /// Kernel: `udp_sendmsg()`. Returns the bytes taken, or the error; counts
    /// `UdpSndbufErrors` for `ENOBUFS`/`EAGAIN` as the kernel does.
    pub fn sendmsg(
        &mut self,
        buf: &[u8],
        dest: Option<SocketAddrV4>,
        flags: MsgFlags,
    ) -> Result<usize, SendError> {
        let r = self.sendmsg_inner(buf, dest, flags);
        if let Err(SendError::NoBufs | SendError::Again) = r {
            self.stack.counters.inc(Mib::UdpSndbufErrors);
        }
        r.map(|()| buf.len())
    }

    fn sendmsg_inner(
        &mut self,
        buf: &[u8],
        dest: Option<SocketAddrV4>,
        flags: MsgFlags,
    ) -> Result<(), SendError> {
        if buf.len() > 0xffff {
            return Err(SendError::MsgSize { mtu: 0xffff });
        }
        let corkreq = self.opts.cork || flags.contains(MsgFlags::MORE);
        if self.pending {
            return self.append_and_maybe_push(buf, 0, flags, corkreq);
        }
        let (daddr, dport, connected) = match dest {
            Some(d) if d.port() == 0 => return Err(SendError::Inval("destination port 0")),
            Some(d) => (*d.ip(), d.port(), false),
            None => {
                let p = self.peer.ok_or(SendError::DestAddrRequired)?;
                (*p.ip(), p.port(), true)
            }
        };
        let params = self.cork_params(daddr, connected)?;
        if flags.contains(MsgFlags::PROBE) {
            return Ok(());
        }
        self.cork.setup(params)?;
        self.cork_dport = dport;
        if !corkreq {
            return self.append_and_maybe_push(buf, UDP_HLEN, flags, false);
        }
        self.pending = true;
        self.append_and_maybe_push(buf, UDP_HLEN, flags, true)
    }
}

impl UdpSocket {
    fn cork_params(&mut self, daddr: Ipv4Addr, connected: bool) -> Result<CorkParams, SendError> {
        let dst = self.route(daddr)?;
        self.autobind()?;
        let saddr = if self.local.ip().is_unspecified() {
            self.stack.source_for(&dst)
        } else {
            *self.local.ip()
        };
        let ttl = self.opts.ttl.unwrap_or(self.stack.sysctls().ip_default_ttl);
        Ok(CorkParams {
            dst,
            daddr,
            saddr,
            protocol: 17,
            ttl,
            tos: self.opts.tos,
            options: self.opts.options.clone(),
            gso_size: self.opts.gso_size,
            pmtudisc: self.opts.pmtudisc,
            priority: self.opts.priority,
            mark: self.opts.mark,
            connected,
        })
    }

    /// `do_append_data` of `udp_sendmsg`: append, then flush on error, push
    /// without cork, or stay pending.
    fn append_and_maybe_push(
        &mut self,
        buf: &[u8],
        transhdrlen: usize,
        flags: MsgFlags,
        corkreq: bool,
    ) -> Result<(), SendError> {
        let mut f = flags;
        if corkreq {
            f = f.with(MsgFlags::MORE);
        }
        let r = if flags.contains(MsgFlags::PROBE) {
            Ok(())
        } else {
            self.cork
                .append(&self.stack, &self.budget, buf, transhdrlen, f)
        };
        if let Err(e) = r {
            if let Some(info) = self.cork.take_local_error() {
                self.local_error(Errno::EMSGSIZE, info);
            }
            self.flush();
            return Err(e);
        }
        if !corkreq {
            return self.push_pending();
        }
        if self.cork.is_empty() {
            self.pending = false;
            self.cork.flush();
        }
        Ok(())
    }

    /// Kernel: `udp_flush_pending_frames()`. Discards the pending datagram.
    pub fn flush(&mut self) {
        self.cork.flush();
        self.pending = false;
    }

    /// Kernel: `udp_push_pending_frames()`. Sends the pending datagram.
    pub fn push_pending(&mut self) -> Result<(), SendError> {
        self.pending = false;
        let daddr = self.cork.params().map(|p| (p.daddr, p.saddr));
        let id = Some(&mut self.inet_id);
        let Some(skb) = self.cork.make(&self.stack, id) else {
            return Ok(());
        };
        let (daddr, saddr) = daddr.unwrap_or((Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED));
        self.send_skb(skb, saddr, daddr, self.cork_dport)
    }

    /// Kernel: `ip_local_error()`: queue an error for `IP_RECVERR` readers.
    fn local_error(&mut self, errno: Errno, info: u32) {
        if !self.opts.recverr {
            return;
        }
        let (addr, port) = self
            .cork
            .params()
            .map_or((Ipv4Addr::UNSPECIFIED, 0), |p| (p.daddr, self.cork_dport));
        self.errq.push(ErrQueueEntry {
            errno,
            origin: ErrOrigin::Local,
            ee_type: 0,
            ee_code: 0,
            info,
            data: 0,
            addr,
            port,
        });
    }

    /// Reads one error-queue entry (`recvmsg(MSG_ERRQUEUE)`).
    pub fn recv_err(&mut self) -> Option<ErrQueueEntry> {
        self.errq.pop()
    }

    /// The error queue.
    pub fn err_queue(&self) -> &ErrQueue {
        &self.errq
    }

    /// Kernel: `udp_send_skb()`. Writes the UDP header and checksum (or leaves it
    /// to the device, or marks GSO), then `ip_send_skb`.
    fn send_skb(
        &mut self,
        mut skb: PacketBuf,
        saddr: Ipv4Addr,
        daddr: Ipv4Addr,
        dport: u16,
    ) -> Result<(), SendError> {
        let th = skb.meta.transport_header as usize;
        let len = skb.len() - (th - skb.data_offset());
        {
            let uh = &mut skb.from_offset_mut(th)[..UDP_HLEN];
            uh[0..2].copy_from_slice(&self.local.port().to_be_bytes());
            uh[2..4].copy_from_slice(&dport.to_be_bytes());
            uh[4..6].copy_from_slice(&(len.min(0xffff) as u16).to_be_bytes());
            uh[6..8].copy_from_slice(&[0, 0]);
        }
        skb.meta.hash = flow_hash(saddr, daddr, self.local.port(), dport);
        let gso = self.opts.gso_size as usize;
        if gso != 0 {
            self.gso_check(&mut skb, len - UDP_HLEN, gso)?;
            hwcsum(&mut skb, saddr, daddr, len);
        } else if self.opts.no_check {
            skb.meta.ip_summed = CsumState::None;
        } else if skb.meta.ip_summed != CsumState::None {
            hwcsum(&mut skb, saddr, daddr, len);
        } else {
            let c = udp_csum(&skb, th).add(pseudo_header_v4(saddr, daddr, 17, len as u16));
            write_check(&mut skb, th, c.finish());
        }
        let r = send_skb(&self.stack, skb);
        match r {
            Err(SendError::NoBufs) if !self.opts.recverr => {
                self.stack.counters.inc(Mib::UdpSndbufErrors);
                Ok(())
            }
            Err(e) => Err(e),
            Ok(()) => {
                self.stack.counters.inc(Mib::UdpOutDatagrams);
                Ok(())
            }
        }
    }

    /// The GSO checks of `udp_send_skb` and the GSO marks.
    fn gso_check(&self, skb: &mut PacketBuf, datalen: usize, gso: usize) -> Result<(), SendError> {
        let hlen = skb.meta.transport_header as usize - skb.meta.network_header as usize + UDP_HLEN;
        let fragsize = skb.meta.dst.as_ref().map_or(0, |d| d.mtu()) as usize;
        if hlen + gso > fragsize {
            return Err(SendError::Inval(
                "UDP_SEGMENT size plus headers exceeds the MTU",
            ));
        }
        if datalen > gso * UDP_MAX_SEGMENTS {
            return Err(SendError::Inval("more than 128 UDP GSO segments"));
        }
        if self.opts.no_check {
            return Err(SendError::Inval(
                "UDP GSO needs checksums (SO_NO_CHECK set)",
            ));
        }
        if datalen > gso {
            skb.meta.gso_size = gso as u16;
            skb.meta.gso_type = GsoType::UdpL4;
            skb.meta.gso_segs = datalen.div_ceil(gso) as u16;
        }
        Ok(())
    }
}

/// The flow hash of a UDP 4-tuple (`skb_get_hash` via the flow dissector): any
/// well-mixed hash will do, the kernel's is seeded randomly at boot.
fn flow_hash(saddr: Ipv4Addr, daddr: Ipv4Addr, sport: u16, dport: u16) -> u32 {
    let a = u64::from(u32::from(saddr)) << 32 | u64::from(u32::from(daddr));
    let b = u64::from(sport) << 16 | u64::from(dport) | 17 << 32;
    let mut h = (a ^ b.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= h >> 32;
    (h as u32).max(1)
}

/// Kernel: `udp_csum()`. Header sum plus the payload sums of every buffer.
fn udp_csum(skb: &PacketBuf, th: usize) -> Csum {
    let mut c = Csum::of(&skb.from_offset(th)[..UDP_HLEN]).add(skb.meta.csum);
    for f in skb.chain() {
        c = c.add(f.meta.csum);
    }
    c
}

fn write_check(skb: &mut PacketBuf, th: usize, mut check: u16) {
    if check == 0 {
        check = 0xffff;
    }
    skb.from_offset_mut(th)[6..8].copy_from_slice(&check.to_be_bytes());
}

/// Kernel: `udp4_hwcsum()`. One buffer: leave the sum to the device with the
/// pseudo-header in the field. Several: sum in software now.
fn hwcsum(skb: &mut PacketBuf, saddr: Ipv4Addr, daddr: Ipv4Addr, len: usize) {
    let th = skb.meta.transport_header as usize;
    let pseudo = pseudo_header_v4(saddr, daddr, 17, len as u16);
    if skb.chain().is_empty() {
        skb.meta.ip_summed = CsumState::Partial {
            start: th as u16,
            offset: 6,
        };
        skb.from_offset_mut(th)[6..8].copy_from_slice(&pseudo.fold().to_be_bytes());
        return;
    }
    let mut c = Csum::ZERO;
    for f in skb.chain() {
        c = c.add(f.meta.csum);
    }
    let head = crate::dev::xmit::checksum_linear_from(skb, th);
    skb.meta.ip_summed = CsumState::None;
    write_check(skb, th, c.add(head).add(pseudo).finish());
}

impl UdpSocket {
    /// `IP_TOS`: also sets the priority it implies (`rt_tos2priority`).
    pub fn set_tos(&mut self, tos: u8) {
        self.opts.tos = tos;
        self.opts.priority = tos_to_priority(tos);
    }

    /// `IP_TTL`: 1..=255, or `None` for the default.
    pub fn set_ttl(&mut self, ttl: Option<u8>) -> Result<(), SendError> {
        if ttl == Some(0) {
            return Err(SendError::Inval("IP_TTL must be 1..255"));
        }
        self.opts.ttl = ttl;
        Ok(())
    }

    /// `IP_MTU_DISCOVER`.
    pub fn set_mtu_discover(&mut self, mode: PmtuDisc) {
        self.opts.pmtudisc = mode;
    }

    /// `IP_RECVERR`; turning it off purges the error queue.
    pub fn set_recverr(&mut self, on: bool) {
        self.opts.recverr = on;
        if !on {
            while self.errq.pop().is_some() {}
        }
    }

    /// `SO_NO_CHECK`.
    pub fn set_no_check(&mut self, on: bool) {
        self.opts.no_check = on;
    }

    /// `SO_PRIORITY`.
    pub fn set_priority(&mut self, prio: u32) {
        self.opts.priority = prio;
    }

    /// `SO_MARK`.
    pub fn set_mark(&mut self, mark: u32) {
        self.opts.mark = mark;
    }

    /// `IP_OPTIONS`: validated and padded (at most 40 bytes).
    pub fn set_ip_options(&mut self, raw: &[u8]) -> Result<(), SendError> {
        self.opts.options = crate::socket::parse_ip_options(raw)?;
        Ok(())
    }

    /// `UDP_SEGMENT`: GSO segment size (0 turns it off).
    pub fn set_gso_size(&mut self, size: u32) -> Result<(), SendError> {
        let s = u16::try_from(size).map_err(|_| SendError::Inval("UDP_SEGMENT over 65535"))?;
        self.opts.gso_size = s;
        Ok(())
    }

    /// `UDP_CORK`: clearing it pushes the pending datagram.
    pub fn set_cork(&mut self, on: bool) -> Result<(), SendError> {
        self.opts.cork = on;
        if !on && self.pending {
            return self.push_pending();
        }
        Ok(())
    }

    /// `SO_SNDBUF`: the kernel doubles the value (for overhead), capped by
    /// `wmem_max`, at least `SOCK_MIN_SNDBUF`.
    pub fn set_sndbuf(&mut self, bytes: usize) {
        let max = self.stack.sysctls().wmem_max;
        let v = (bytes.min(max) * 2).max(4608);
        self.budget.set_limit(v);
    }
}
