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

use std::ops::{Deref, DerefMut};

use crate::buf::{CsumState, GsoType, PacketBuf};
use crate::error::{Errno, SendError};
use crate::ipv4::output::send_skb;
use crate::socket::inet::InetSock;
use crate::socket::{Cmsg, MsgFlags};
use crate::stack::Stack;
use crate::stats::Mib;
use crate::wire::checksum::{pseudo_header_v4, Csum};
use crate::wire::udp::{mangle_zero, UdpPacket};

mod batch;
mod build;
pub mod input;
pub use batch::{BatchMsg, BATCH_MAX};

/// UDP header length.
pub const UDP_HLEN: usize = crate::wire::udp::HEADER_LEN;

/// Buffers a pushed datagram needs before its budget releases are gathered
/// (below, the guard's own reference counting costs more than it saves).
const GATHER_MIN_BUFFERS: usize = 4;

/// Most segments of one UDP GSO send (`UDP_MAX_SEGMENTS`).
pub const UDP_MAX_SEGMENTS: usize = 128;

/// A UDP socket (`struct udp_sock`). Owned by one thread; the stack it sends
/// through is shared. Dereferences to its [`InetSock`] for the generic options.
pub struct UdpSocket {
    inet: InetSock,
    /// A datagram is pending (`up->pending`).
    pending: bool,
    /// Destination port of the pending datagram (`fl4->fl4_dport`).
    cork_dport: u16,
    /// Data lent for a zero-copy send in progress.
    zc_src: Option<bytes::Bytes>,
    /// The datagrams of a `send_batch` run (kept for their capacity).
    plan: Vec<build::Datagram>,
    /// The last corked or fragmenting datagram a `send_batch` run planned,
    /// by its pieces' lengths, kept from call to call while the run's
    /// [`build::PlanKey`] stays the same. Lent to a run's cork while it
    /// plans (no cell here: the socket stays `Sync`); boxed, a few hundred
    /// bytes the socket need not carry inline.
    plan_memo: Option<Box<build::PlanMemo>>,
}

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local", &self.inet.local)
            .field("peer", &self.inet.peer)
            .field("pending", &self.pending)
            .finish()
    }
}

impl Deref for UdpSocket {
    type Target = InetSock;
    fn deref(&self) -> &InetSock {
        &self.inet
    }
}

impl DerefMut for UdpSocket {
    fn deref_mut(&mut self) -> &mut InetSock {
        &mut self.inet
    }
}

impl UdpSocket {
    /// An unbound socket on `stack`.
    pub fn new(stack: &Arc<Stack>) -> UdpSocket {
        UdpSocket {
            inet: InetSock::new(stack, 17, true),
            pending: false,
            cork_dport: 0,
            zc_src: None,
            plan: Vec::new(),
            plan_memo: None,
        }
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

    /// Sends `buf` to `dest` not before `txtime` (`sendto` with an
    /// `SCM_TXTIME`; see [`UdpSocket::sendmsg_cmsg`]).
    pub fn send_to_at(
        &mut self,
        buf: &[u8],
        dest: SocketAddrV4,
        flags: MsgFlags,
        txtime: crate::time::Instant,
    ) -> Result<usize, SendError> {
        self.sendmsg_cmsg(buf, Some(dest), flags, &Cmsg::txtime(txtime))
    }

    /// Kernel: `udp_sendmsg()` without control messages (see
    /// [`UdpSocket::sendmsg_cmsg`]).
    pub fn sendmsg(
        &mut self,
        buf: &[u8],
        dest: Option<SocketAddrV4>,
        flags: MsgFlags,
    ) -> Result<usize, SendError> {
        self.sendmsg_cmsg(buf, dest, flags, &Cmsg::NONE)
    }

    /// Kernel: `udp_sendmsg()`. Returns the bytes taken, or the error; counts
    /// `UdpSndbufErrors` for `ENOBUFS`/`EAGAIN` as the kernel does. The
    /// control messages `cmsg` are read when the send opens a datagram
    /// (`SCM_TXTIME` without `SO_TXTIME` is `EINVAL`, after the checks of
    /// the destination); a send adding to a pending datagram ignores them,
    /// as the kernel does.
    pub fn sendmsg_cmsg(
        &mut self,
        buf: &[u8],
        dest: Option<SocketAddrV4>,
        flags: MsgFlags,
        cmsg: &Cmsg,
    ) -> Result<usize, SendError> {
        let r = self.append_or_send(buf, dest, flags, cmsg);
        if let Err(e) = &r {
            let mut count = UdpCount::default();
            count.sendmsg_failed(e);
            count.settle(&self.inet.stack);
        }
        r.map(|()| buf.len())
    }

    /// The body of `udp_sendmsg` up to its error count: the destination
    /// and the cork set up (unless a datagram is pending), then the data
    /// appended, and the datagram pushed unless corked.
    fn append_or_send(
        &mut self,
        buf: &[u8],
        dest: Option<SocketAddrV4>,
        flags: MsgFlags,
        cmsg: &Cmsg,
    ) -> Result<(), SendError> {
        if buf.len() > 0xffff {
            // udp_sendmsg's `len > 0xFFFF`: no error-queue entry; the most
            // a UDP datagram carries is 65,507 bytes.
            return Err(SendError::TooLong { max: 0xffff - 28 });
        }
        let corkreq = self.opts.cork || flags.contains(MsgFlags::MORE);
        if self.pending {
            return self.append_and_maybe_push(buf, 0, flags, corkreq);
        }
        let (daddr, dport, connected) = match dest {
            Some(d) if d.port() == 0 => return Err(SendError::Inval("destination port 0")),
            Some(d) => (*d.ip(), d.port(), false),
            None => {
                let p = self.inet.peer.ok_or(SendError::DestAddrRequired)?;
                (*p.ip(), p.port(), true)
            }
        };
        let transmit_time = self.inet.cmsg_send(cmsg)?;
        let mut params = self.inet.cork_params(daddr, dport, connected)?;
        params.transmit_time = transmit_time;
        if corkreq {
            // The corking path keeps its own flow (`inet->cork.fl`) whose
            // destination is the address named, not a source route's first hop
            // the lockless path routes and addresses to: the kernel's header
            // then differs between the two, and so does ours.
            params.daddr = params.final_daddr;
        }
        if flags.contains(MsgFlags::PROBE) {
            return Ok(());
        }
        self.inet.cork.setup(params)?;
        self.cork_dport = dport;
        if !corkreq {
            return self.append_and_maybe_push(buf, UDP_HLEN, flags, false);
        }
        self.pending = true;
        self.append_and_maybe_push(buf, UDP_HLEN, flags, true)
    }
}

impl UdpSocket {
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
        let mut uarg = None;
        let r = if flags.contains(MsgFlags::PROBE) {
            Ok(())
        } else {
            uarg = self.zerocopy_prepare(buf.len() + transhdrlen, flags);
            let i = &mut self.inet;
            i.cork.append(&i.stack, &i.budget, buf, transhdrlen, f)
        };
        if let (Err(_), Some(u)) = (&r, &uarg) {
            u.abort_one();
            self.inet.zckey = self.inet.zckey.wrapping_sub(1);
        }
        drop(uarg);
        if let Err(e) = r {
            if let Some(info) = self.inet.cork.take_local_error() {
                let daddr = self
                    .inet
                    .cork
                    .params()
                    .map_or(Ipv4Addr::UNSPECIFIED, |p| p.daddr);
                // ip_local_error(..., inet->inet_dport, ...): the connected
                // peer's port, 0 on an unconnected socket.
                let port = self.inet.peer.map_or(0, |p| p.port());
                self.inet.local_error(Errno::EMSGSIZE, daddr, port, info);
            }
            self.flush();
            return Err(e);
        }
        if !corkreq {
            return self.push_pending();
        }
        if self.inet.cork.is_empty() {
            self.pending = false;
            self.inet.cork.flush();
        }
        Ok(())
    }

    /// The `MSG_ZEROCOPY` part of `__ip_append_data`: with `SO_ZEROCOPY` set,
    /// a send of `length` bytes (transport header included) gets a completion
    /// token, the pending datagram's extended or a new one.
    fn zerocopy_prepare(
        &mut self,
        length: usize,
        flags: MsgFlags,
    ) -> Option<std::sync::Arc<crate::buf::ZcUarg>> {
        let src = self.zc_src.take();
        if !flags.contains(MsgFlags::ZEROCOPY) || length == 0 || !self.inet.opts.zerocopy {
            return None;
        }
        let pending = self.inet.cork.pending_zerocopy();
        let u = self.inet.zerocopy_uarg(pending.as_ref());
        self.inet.cork.prepare_zerocopy(u.clone(), src);
        Some(u)
    }

    /// Sends `data` with `MSG_ZEROCOPY` semantics where the device allows: the
    /// frames reference `data` instead of copying it (scatter-gather and
    /// checksum offload, a datagram that fits the MTU, as in the kernel),
    /// otherwise it is copied; with `SO_ZEROCOPY` set, completion of send id
    /// `n` is reported on the error queue (origin zerocopy, `ee_info..=ee_data`
    /// the ids, `ee_code` 1 when the data was copied).
    pub fn send_to_zerocopy(
        &mut self,
        data: bytes::Bytes,
        dest: SocketAddrV4,
        flags: MsgFlags,
    ) -> Result<usize, SendError> {
        self.zc_src = Some(data.clone());
        let r = self.sendmsg(&data, Some(dest), flags.with(MsgFlags::ZEROCOPY));
        self.zc_src = None;
        r
    }

    /// The destination of the pending (corked) datagram (`fl4->daddr`,
    /// the final one under a source route, and `fl4->fl4_dport`), if one
    /// is pending (`up->pending`).
    pub fn pending_dest(&self) -> Option<SocketAddrV4> {
        let p = self.inet.cork.params().filter(|_| self.pending)?;
        Some(SocketAddrV4::new(p.final_daddr, self.cork_dport))
    }

    /// Kernel: `udp_flush_pending_frames()`. Discards the pending datagram.
    pub fn flush(&mut self) {
        self.inet.cork.flush();
        self.pending = false;
    }

    /// Kernel: `udp_push_pending_frames()`. Sends the pending datagram.
    pub fn push_pending(&mut self) -> Result<(), SendError> {
        self.pending = false;
        let i = &mut self.inet;
        let Some(p) = i.cork.params() else {
            return Ok(());
        };
        let (daddr, saddr) = (p.daddr, p.saddr);
        let gso = Gso {
            size: p.gso_size as usize,
            fragsize: i.cork.fragsize() as usize,
        };
        let Some(skb) = i.cork.make(&i.stack, Some(&mut i.inet_id)) else {
            return Ok(());
        };
        // A datagram of many buffers (fragments to be) whose driver frees
        // them as they go: their budget releases in one step.
        let _gathered = (skb.chain().len() >= GATHER_MIN_BUFFERS)
            .then(|| crate::buf::SendBudget::gather_releases(&self.inet.budget));
        self.send_skb(skb, saddr, daddr, self.cork_dport, gso)
    }

    /// Kernel: `udp_send_skb()`. Writes the UDP header and checksum (or leaves it
    /// to the device, or marks GSO), then `ip_send_skb`.
    fn send_skb(
        &mut self,
        mut skb: PacketBuf,
        saddr: Ipv4Addr,
        daddr: Ipv4Addr,
        dport: u16,
        gso: Gso,
    ) -> Result<(), SendError> {
        let th = skb.meta.transport_header as usize;
        let len = skb.len() - (th - skb.data_offset());
        write_udp_header(&mut skb, th, self.inet.local.port(), dport, len);
        skb.meta.hash = flow_hash(saddr, daddr, self.inet.local.port(), dport);
        skb.meta.ip_flags.udp_dgram = !self.inet.opts.no_check;
        if gso.size != 0 && self.gso_check(&mut skb, len - UDP_HLEN, gso)? {
            // Segmented later: the payload is not summed now.
            hwcsum(&mut skb, saddr, daddr, len);
        } else if self.inet.opts.no_check {
            skb.meta.ip_summed = CsumState::None;
        } else if skb.meta.ip_summed != CsumState::None {
            hwcsum(&mut skb, saddr, daddr, len);
        } else {
            let c = udp_csum(&skb, th).add(pseudo_header_v4(saddr, daddr, 17, len as u16));
            write_check(&mut skb, th, c.finish());
        }
        let r = send_skb(&self.inet.stack, skb);
        let mut count = UdpCount::default();
        let r = count.sent(self.inet.opts.recverr, r);
        count.settle(&self.inet.stack);
        r
    }

    /// The GSO checks of `udp_send_skb` and the GSO marks. A segment (or the
    /// whole datagram, when smaller) that would not fit the cork's fragment
    /// size is `EMSGSIZE`; more than 128 segments or `SO_NO_CHECK` is
    /// `EINVAL`. Returns true when the datagram is marked for segmentation
    /// (more payload than one segment).
    fn gso_check(&self, skb: &mut PacketBuf, datalen: usize, g: Gso) -> Result<bool, SendError> {
        let gso = g.size;
        let hlen = skb.meta.transport_header as usize - skb.meta.network_header as usize + UDP_HLEN;
        if hlen + datalen.min(gso) > g.fragsize {
            return Err(SendError::MsgSize {
                mtu: g.fragsize as u32,
            });
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
            return Ok(true);
        }
        Ok(false)
    }
}

/// The UDP MIBs of one call, added to the stack's once: the one place
/// `UdpOutDatagrams` and `UdpSndbufErrors` are counted, for `sendmsg` and
/// `send_batch` alike.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct UdpCount {
    out_datagrams: u64,
    sndbuf_errors: u64,
}

impl UdpCount {
    /// A datagram sent: `UdpOutDatagrams`.
    #[inline(always)]
    pub(super) fn sent_one(&mut self) {
        self.out_datagrams += 1;
    }

    /// The end of `udp_send_skb` for a datagram's outcome `r`:
    /// `UdpOutDatagrams` for one sent; a drop for lack of buffers is an
    /// error only with `IP_RECVERR` (else it is counted in
    /// `UdpSndbufErrors` and the send succeeds).
    #[inline(always)]
    pub(super) fn sent(
        &mut self,
        recverr: bool,
        r: Result<(), SendError>,
    ) -> Result<(), SendError> {
        match r {
            Ok(()) => {
                self.out_datagrams += 1;
                Ok(())
            }
            Err(SendError::NoBufs) if !recverr => {
                self.sndbuf_errors += 1;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// `udp_sendmsg`'s last step for a send that failed with `e`:
    /// `UdpSndbufErrors` for `ENOBUFS`/`EAGAIN`.
    pub(super) fn sendmsg_failed(&mut self, e: &SendError) {
        if let SendError::NoBufs | SendError::Again = e {
            self.sndbuf_errors += 1;
        }
    }

    /// Adds the counts to `stack`'s MIBs.
    pub(super) fn settle(&self, stack: &Stack) {
        if self.out_datagrams != 0 {
            stack.counters.add(Mib::UdpOutDatagrams, self.out_datagrams);
        }
        if self.sndbuf_errors != 0 {
            stack.counters.add(Mib::UdpSndbufErrors, self.sndbuf_errors);
        }
    }
}

/// What `udp_send_skb` reads of the cork for GSO: the segment size and the
/// fragment size (`cork->gso_size`, `cork->fragsize`), both fixed when the
/// cork opened.
#[derive(Clone, Copy, Debug)]
struct Gso {
    size: usize,
    fragsize: usize,
}

/// The flow hash of a UDP 4-tuple (`skb_get_hash` via the flow dissector): any
/// well-mixed hash will do, the kernel's is seeded randomly at boot. Every
/// bit of the result depends on every field (the addresses spread by a
/// multiply, then MurmurHash3's 64-bit finalizer), so that qdiscs taking
/// the low bits (`sfq`'s `hash & (divisor - 1)`) and those taking the high
/// ones (`reciprocal_scale`: queues, `fq_codel`) both tell flows apart
/// that differ only in a port.
pub(crate) fn flow_hash(saddr: Ipv4Addr, daddr: Ipv4Addr, sport: u16, dport: u16) -> u32 {
    let a = u64::from(u32::from(saddr)) << 32 | u64::from(u32::from(daddr));
    let b = u64::from(sport) << 16 | u64::from(dport) | 17 << 32;
    let mut h = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h as u32).max(1)
}

/// The UDP header `udp_send_skb` writes at `th`: ports, length, zero checksum.
#[inline]
fn write_udp_header(skb: &mut PacketBuf, th: usize, sport: u16, dport: u16, len: usize) {
    let uh = &mut skb.from_offset_mut(th)[..UDP_HLEN];
    udp_header(uh, (sport, dport), len.min(0xffff) as u16, 0);
}

/// Kernel: the `uh->...` stores of `udp_send_skb()`: the ports, the length
/// and the checksum (or its seed, or 0 to be filled later) of the header
/// `uh`, through the [`UdpPacket`] view. Every UDP header is written here.
#[inline(always)]
fn udp_header(uh: &mut [u8], (sport, dport): (u16, u16), len: u16, check: u16) {
    let mut uh = UdpPacket::new_unchecked(uh);
    uh.set_src_port(sport);
    uh.set_dst_port(dport);
    uh.set_len(len);
    uh.set_checksum(check);
}

/// Kernel: `udp_csum()`. Header sum plus the payload sums of every buffer.
fn udp_csum(skb: &PacketBuf, th: usize) -> Csum {
    let mut c = Csum::of(&skb.from_offset(th)[..UDP_HLEN]).add(skb.meta.csum);
    for f in skb.chain() {
        c = c.add(f.meta.csum);
    }
    c
}

/// Stores a computed UDP checksum, 0 sent as `CSUM_MANGLED_0`.
#[inline]
fn write_check(skb: &mut PacketBuf, th: usize, check: u16) {
    UdpPacket::new_unchecked(&mut skb.from_offset_mut(th)[..UDP_HLEN])
        .set_checksum(mangle_zero(check));
}

/// Kernel: `udp4_hwcsum()`. One buffer: leave the sum to the device with the
/// pseudo-header in the field. Several: sum in software now.
fn hwcsum(skb: &mut PacketBuf, saddr: Ipv4Addr, daddr: Ipv4Addr, len: usize) {
    hwcsum_pseudo(skb, pseudo_header_v4(saddr, daddr, 17, len as u16));
}

/// [`hwcsum`] with the pseudo-header sum (length included) given.
#[inline(always)]
fn hwcsum_pseudo(skb: &mut PacketBuf, pseudo: Csum) {
    let th = skb.meta.transport_header as usize;
    if skb.chain().is_empty() {
        skb.meta.ip_summed = CsumState::Partial {
            start: th as u16,
            offset: 6,
        };
        UdpPacket::new_unchecked(&mut skb.from_offset_mut(th)[..UDP_HLEN])
            .set_checksum(pseudo.fold());
        return;
    }
    let mut c = Csum::ZERO;
    for f in skb.chain() {
        c = c.add(f.meta.csum);
    }
    let head = crate::offload::checksum_linear_from(skb, th);
    skb.meta.ip_summed = CsumState::None;
    write_check(skb, th, c.add(head).add(pseudo).finish());
}

impl UdpSocket {
    /// `UDP_SEGMENT`: GSO segment size (0 turns it off).
    pub fn set_gso_size(&mut self, size: u32) -> Result<(), SendError> {
        let s = u16::try_from(size).map_err(|_| SendError::Inval("UDP_SEGMENT over 65535"))?;
        self.opts.gso_size = s;
        Ok(())
    }

    /// `UDP_CORK`: clearing it pushes the pending datagram. As in the kernel
    /// (`udp_lib_setsockopt`), the option itself succeeds whatever the push
    /// gives: a datagram refused there is lost silently (and counted).
    pub fn set_cork(&mut self, on: bool) -> Result<(), SendError> {
        self.opts.cork = on;
        if !on && self.pending {
            let _ = self.push_pending();
        }
        Ok(())
    }
}

#[cfg(test)]
mod flow_hash_tests {
    use super::*;

    /// Flows that differ only in the source port spread over the low bits
    /// (sfq's 1024 buckets) and the high ones (`reciprocal_scale` onto 4
    /// queues) alike: 256 ports fill at least 150 of 1024 buckets (a
    /// uniform hash fills 227 on average) and every queue.
    #[test]
    fn every_field_reaches_the_low_and_the_high_bits() {
        let (s, d) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let hashes: Vec<u32> = (0..256).map(|p| flow_hash(s, d, 5000 + p, 9)).collect();
        let low: std::collections::HashSet<u32> = hashes.iter().map(|h| h & 1023).collect();
        assert!(low.len() >= 150, "{} buckets", low.len());
        let mut queues = [0u32; 4];
        for h in &hashes {
            // `reciprocal_scale` onto 4 queues: the top two bits.
            queues[((u64::from(*h) * 4) >> 32) as usize] += 1;
        }
        assert!(queues.iter().all(|&n| n >= 40), "{queues:?}");
    }
}
