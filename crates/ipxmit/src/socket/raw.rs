//! Raw IPv4 sockets.
//!
//! Stands for `raw_sendmsg` and `raw_send_hdrinc` (`net/ipv4/raw.c`). Without
//! `IP_HDRINCL` the data is the payload of a datagram of the socket's protocol,
//! built by the cork exactly like UDP's (no transport header; `MSG_MORE` corks).
//! With `IP_HDRINCL` the data starts with the IP header the user wrote: it must
//! fit the device MTU (else `EMSGSIZE`), its IHL must fit the data (else
//! `EINVAL`); the stack fills in the source address when 0, the total length,
//! the ID when 0 (per-destination counter, or 0 for DF) and the checksum, and
//! routes by the address given to `send_to`, not the header's.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crate::buf::PacketBuf;
use crate::error::{Errno, SendError};
use crate::ipv4::output::{dst_output_hooked, send_skb};
use crate::socket::inet::InetSock;
use crate::socket::{Cmsg, MsgFlags};
use crate::stack::Stack;
use crate::stats::Mib;
use crate::wire::ipv4::{Ipv4Packet, HEADER_LEN};

/// A raw IPv4 socket (`struct raw_sock`). Dereferences to its [`InetSock`].
pub struct RawSocket {
    inet: InetSock,
    hdrincl: bool,
}

impl std::fmt::Debug for RawSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSocket")
            .field("protocol", &self.inet.protocol)
            .field("hdrincl", &self.hdrincl)
            .finish()
    }
}

impl Deref for RawSocket {
    type Target = InetSock;
    fn deref(&self) -> &InetSock {
        &self.inet
    }
}

impl DerefMut for RawSocket {
    fn deref_mut(&mut self) -> &mut InetSock {
        &mut self.inet
    }
}

impl RawSocket {
    /// A raw socket for IP protocol `protocol` (`socket(AF_INET, SOCK_RAW, p)`).
    /// Protocol 255 (`IPPROTO_RAW`) implies `IP_HDRINCL`, as in the kernel.
    pub fn new(stack: &Arc<Stack>, protocol: u8) -> RawSocket {
        RawSocket {
            inet: InetSock::new(stack, protocol, false),
            hdrincl: protocol == 255,
        }
    }

    /// `IP_HDRINCL`.
    pub fn set_hdrincl(&mut self, on: bool) {
        self.hdrincl = on;
    }

    /// True when the user supplies the IP header.
    pub fn hdrincl(&self) -> bool {
        self.hdrincl
    }

    /// Sends `buf` to `dest` (the port is ignored, as for raw sockets).
    pub fn send_to(
        &mut self,
        buf: &[u8],
        dest: SocketAddrV4,
        flags: MsgFlags,
    ) -> Result<usize, SendError> {
        self.sendmsg(buf, Some(*dest.ip()), flags)
    }

    /// Sends `buf` to the connected peer.
    pub fn send(&mut self, buf: &[u8], flags: MsgFlags) -> Result<usize, SendError> {
        self.sendmsg(buf, None, flags)
    }

    /// Kernel: `raw_sendmsg()` without control messages.
    pub fn sendmsg(
        &mut self,
        buf: &[u8],
        dest: Option<Ipv4Addr>,
        flags: MsgFlags,
    ) -> Result<usize, SendError> {
        self.sendmsg_cmsg(buf, dest, flags, &Cmsg::NONE)
    }

    /// Kernel: `raw_sendmsg()`. The control messages `cmsg` are read after
    /// the destination (`SCM_TXTIME` without `SO_TXTIME` is `EINVAL`); a
    /// send adding to a pending datagram keeps the departure time of the
    /// one that opened it.
    pub fn sendmsg_cmsg(
        &mut self,
        buf: &[u8],
        dest: Option<Ipv4Addr>,
        flags: MsgFlags,
        cmsg: &Cmsg,
    ) -> Result<usize, SendError> {
        if buf.len() > 0xffff {
            return Err(SendError::MsgSize { mtu: 0xffff });
        }
        let (daddr, connected) = match (dest, self.inet.peer) {
            (Some(d), _) => (d, false),
            (None, Some(p)) => (*p.ip(), true),
            (None, None) => return Err(SendError::DestAddrRequired),
        };
        let tstamp = self.inet.cmsg_send(cmsg)?;
        if !self.hdrincl && self.inet.protocol == 1 && buf.len() < 2 {
            // raw_probe_proto_opt: the ICMP type and code are read from the
            // data for the route lookup, before anything else happens (a
            // pending datagram stays pending).
            return Err(SendError::Fault("raw ICMP send shorter than type and code"));
        }
        if self.hdrincl {
            if !self.inet.opts.options.is_empty() {
                return Err(SendError::Inval("IP_HDRINCL with IP options"));
            }
            return self
                .send_hdrinc(buf, daddr, flags, tstamp)
                .map(|()| buf.len());
        }
        self.append_and_push(buf, (daddr, connected), flags, tstamp)
            .map(|()| buf.len())
    }

    /// `ip_append_data` (the cork opened for a new datagram, with the
    /// departure time `tstamp`), then `ip_push_pending_frames` unless
    /// `MSG_MORE`.
    fn append_and_push(
        &mut self,
        buf: &[u8],
        (daddr, connected): (Ipv4Addr, bool),
        flags: MsgFlags,
        tstamp: u64,
    ) -> Result<(), SendError> {
        let i = &mut self.inet;
        if flags.contains(MsgFlags::PROBE) {
            // ip_append_data returns at once; a pending datagram is still pushed.
            let _ = i.cork_params(daddr, 0, connected)?;
        } else {
            if i.cork.is_empty() {
                let mut p = i.cork_params(daddr, 0, connected)?;
                p.transmit_time = tstamp;
                i.cork.setup(p)?;
            }
            if let Err(e) = i.cork.append(&i.stack, &i.budget, buf, 0, flags) {
                if let Some(info) = i.cork.take_local_error() {
                    // ip_local_error(sk, EMSGSIZE, fl4->daddr, inet_dport, ..):
                    // the header's destination (a source route's first hop).
                    let to = i.cork.params().map_or(daddr, |p| p.daddr);
                    let port = i.peer.map_or(0, |p| p.port());
                    i.local_error(Errno::EMSGSIZE, to, port, info);
                }
                i.cork.flush();
                return Err(e);
            }
        }
        if flags.contains(MsgFlags::MORE) {
            return Ok(());
        }
        self.push_pending()
    }

    /// Kernel: `ip_push_pending_frames()`. Sends the pending datagram; `ENOBUFS`
    /// is reported only with `IP_RECVERR`.
    pub fn push_pending(&mut self) -> Result<(), SendError> {
        let i = &mut self.inet;
        let Some(skb) = i.cork.make(&i.stack, Some(&mut i.inet_id)) else {
            return Ok(());
        };
        match send_skb(&i.stack, skb) {
            Err(SendError::NoBufs) if !i.opts.recverr => Ok(()),
            r => r,
        }
    }

    /// Kernel: `ip_flush_pending_frames()`.
    pub fn flush(&mut self) {
        self.inet.cork.flush();
    }

    /// Kernel: `raw_send_hdrinc()`, the datagram leaving not before
    /// `tstamp` (0: any time).
    fn send_hdrinc(
        &mut self,
        buf: &[u8],
        daddr: Ipv4Addr,
        flags: MsgFlags,
        tstamp: u64,
    ) -> Result<(), SendError> {
        let (dst, kind) = self.inet.route_typed(daddr)?;
        let mtu = dst.dev.mtu();
        if buf.len() > mtu as usize {
            let port = self.inet.peer.map_or(0, |p| p.port());
            self.inet.local_error(Errno::EMSGSIZE, daddr, port, mtu);
            return Err(SendError::MsgSize { mtu });
        }
        if buf.len() < 20 {
            return Err(SendError::Inval(
                "IP_HDRINCL data shorter than an IPv4 header",
            ));
        }
        if flags.contains(MsgFlags::PROBE) {
            return Ok(());
        }
        let i = &mut self.inet;
        i.check_sock_error()?;
        let saddr = i.stack.source_for(&dst);
        let mut skb = i
            .stack
            .pool
            .alloc(buf.len() + dst.dev.ll_reserved_space() + 15);
        skb.reserve(dst.dev.ll_reserved_space());
        skb.put(buf.len()).copy_from_slice(buf);
        skb.reset_network_header();
        skb.meta.transport_header = skb.meta.network_header;
        let ihl = (buf[0] & 0xf) as usize;
        if ihl > buf.len() >> 2 || ihl < 5 {
            // Below 5 is refused as well (mainline and stable since the fix
            // "ipv4: raw: reject IP_HDRINCL packets with ihl < 5").
            i.stack.counters.inc(Mib::IpOutDiscards);
            return Err(SendError::Inval(
                "IP_HDRINCL header length beyond the data or below 5",
            ));
        }
        fill_hdrinc(&i.stack, &mut skb, saddr);
        crate::socket::cork::set_route_flags(&mut skb.meta.ip_flags, kind, i.opts.mc_loop);
        skb.meta.priority = i.opts.priority;
        skb.meta.mark = i.opts.mark;
        skb.meta.tstamp = tstamp;
        skb.meta.sk = i.sk_meta();
        skb.meta.dst = Some(dst);
        match dst_output_hooked(&i.stack, skb) {
            Ok(()) => Ok(()),
            Err(e) => {
                i.stack.counters.inc(Mib::IpOutDiscards);
                match e {
                    SendError::NoBufs if !i.opts.recverr => Ok(()),
                    e => Err(e),
                }
            }
        }
    }
}

/// What `raw_send_hdrinc` fills in a user header with IHL ≥ 5.
fn fill_hdrinc(stack: &Stack, skb: &mut PacketBuf, saddr: Ipv4Addr) {
    let len = skb.len();
    let mut ip = Ipv4Packet::new_unchecked(skb.network_header_mut());
    let hlen = ip.header_len();
    if hlen < HEADER_LEN {
        return;
    }
    if ip.src_addr().is_unspecified() {
        ip.set_src_addr(saddr);
    }
    ip.set_total_len(len as u16);
    if ip.ident() == 0 && !ip.dont_frag() {
        let (d, s, proto) = (ip.dst_addr(), ip.src_addr(), ip.protocol().0);
        ip.set_ident(stack.select_ident((d, s, proto), 1));
    }
    ip.fill_checksum();
    skb.meta.transport_header = skb.meta.network_header + hlen as u16;
}
