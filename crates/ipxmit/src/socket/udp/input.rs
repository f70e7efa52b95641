//! UDP input to the host's own sockets, and ICMP errors for them.
//!
//! Stands for `__udp4_lib_rcv()` (length and checksum checks, the socket
//! lookup, `UdpNoPorts` and the port unreachable the caller sends),
//! `udp_queue_rcv_one_skb()` / `__udp_queue_rcv_skb()` with
//! `__udp_enqueue_schedule_skb()` (the receive buffer), the broadcast walk
//! of `__udp4_lib_mcast_deliver()`, and `__udp4_lib_err()` with
//! `ip_icmp_error()` (net/ipv4/udp.c, net/ipv4/ip_sockglue.c) and the PMTU
//! part of `ipv4_sk_update_pmtu()` (net/ipv4/route.c).

use std::net::SocketAddrV4;

use crate::error::Errno;
use crate::ipv4::icmp::{err_convert, IcmpError};
use crate::ipv4::input::{Local, LocalKind};
use crate::ipv4::PmtuDisc;
use crate::socket::inbox::{Datagram, SockInbox};
use crate::socket::{ErrOrigin, ErrQueueEntry};
use crate::stack::Stack;
use crate::stats::{DropSite, Mib};
use crate::wire::icmp as wicmp;
use crate::wire::UdpPacket;

/// What became of a received UDP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rcv {
    /// Queued on a socket (or several, for a broadcast).
    Queued,
    /// Dropped (counted under its reason).
    Dropped,
    /// No socket holds the port: counted `UdpNoPorts`; the caller sends a
    /// port unreachable (`icmp_send()`).
    NoPort,
    /// A broadcast no socket took (`UdpIgnoredMulti`).
    Ignored,
}

/// Kernel: `__udp4_lib_rcv()`, net/ipv4/udp.c. A datagram shorter than
/// its UDP length, or with a UDP length below 8, is `UdpInErrors`
/// (`PKT_TOO_SMALL`); a bad checksum `UdpInCsumErrors` and `UdpInErrors`
/// (`UDP_CSUM`). It goes to the best-matching socket's receive queue
/// (every matching socket for a broadcast); a full receive buffer is
/// `UdpRcvbufErrors` and `UdpInErrors` (`SOCKET_RCVBUFF`).
pub fn rcv(stack: &Stack, l: &Local<'_>) -> Rcv {
    let c = &stack.counters;
    let data = l.ip.payload();
    let udp = match UdpPacket::new_checked(data) {
        Ok(u) => u,
        Err(_) => {
            c.inc(Mib::UdpInErrors);
            c.drop_at(DropSite::UdpShort);
            return Rcv::Dropped;
        }
    };
    let (saddr, daddr) = (l.ip.src_addr(), l.ip.dst_addr());
    if !udp.verify_checksum(saddr, daddr) {
        c.inc(Mib::UdpInCsumErrors);
        c.inc(Mib::UdpInErrors);
        c.drop_at(DropSite::UdpChecksum);
        return Rcv::Dropped;
    }
    let src = (saddr, udp.src_port());
    let dst = (daddr, udp.dst_port());
    let from = SocketAddrV4::new(saddr, udp.src_port());
    let hlen = l.ip.as_bytes().len() - udp.payload().len();
    if l.kind != LocalKind::Unicast {
        let socks = stack.udp_lookup_all(src, dst, l.dif);
        if socks.is_empty() {
            c.inc(Mib::UdpIgnoredMulti);
            return Rcv::Ignored;
        }
        for sk in socks {
            queue_segments(stack, &sk, (from, daddr), udp.payload(), hlen, l.gso_size);
        }
        return Rcv::Queued;
    }
    let Some(sk) = stack.udp_lookup(src, dst, l.dif) else {
        c.inc(Mib::UdpNoPorts);
        c.drop_at(DropSite::UdpNoSocket);
        return Rcv::NoPort;
    };
    if queue_segments(stack, &sk, (from, daddr), udp.payload(), hlen, l.gso_size) {
        Rcv::Queued
    } else {
        Rcv::Dropped
    }
}

/// Kernel: `udp_queue_rcv_skb()`: a UDP GSO packet the socket did not ask
/// for whole (`udp_unexpected_gso()`: ipxmit's sockets have no `UDP_GRO`)
/// is split by `udp_rcv_segment()` into datagrams of `gso_size` payload
/// bytes, each queued on its own; anything else is queued as it is.
/// `hlen` is the IP and UDP header length before `payload`. True when
/// every datagram was queued.
fn queue_segments(
    stack: &Stack,
    sk: &SockInbox,
    (from, to): (SocketAddrV4, std::net::Ipv4Addr),
    payload: &[u8],
    hlen: usize,
    gso_size: u16,
) -> bool {
    let seg = match usize::from(gso_size) {
        0 => payload.len().max(1),
        n => n,
    };
    if payload.is_empty() {
        let truesize = crate::buf::kernel_truesize(hlen + 16);
        return queue(stack, sk, from, to, payload, truesize);
    }
    let mut all = true;
    for part in payload.chunks(seg) {
        let truesize = crate::buf::kernel_truesize(hlen + part.len() + 16);
        all &= queue(stack, sk, from, to, part, truesize);
    }
    all
}

/// Kernel: `__udp_queue_rcv_skb()`: queues `payload` on `sk`, or counts
/// `UdpRcvbufErrors` and `UdpInErrors` (`SOCKET_RCVBUFF`).
fn queue(
    stack: &Stack,
    sk: &SockInbox,
    from: SocketAddrV4,
    to: std::net::Ipv4Addr,
    payload: &[u8],
    truesize: usize,
) -> bool {
    let d = Datagram {
        from,
        to,
        data: payload.to_vec(),
    };
    if sk.enqueue(d, truesize).is_ok() {
        return true;
    }
    let c = &stack.counters;
    c.inc(Mib::UdpRcvbufErrors);
    c.inc(Mib::UdpInErrors);
    c.drop_at(DropSite::UdpRcvbuf);
    false
}

/// Kernel: `__udp4_lib_err()`, net/ipv4/udp.c. Finds the socket that sent
/// the quoted datagram (the quoted source is the socket's address, the
/// quoted destination its peer); none is `IcmpInErrors`. A "fragmentation
/// needed" teaches the path MTU ([`Stack::update_pmtu`], with the flow of
/// the quoted addresses and the socket's TOS, mark and bound device, unless
/// the socket's mode ignores path MTUs: `ip_sk_accept_pmtu()`), and is an
/// `EMSGSIZE` hard error unless the socket does `IP_PMTUDISC_DONT`. Other
/// errors take their errno from [`err_convert`]. With `IP_RECVERR` the
/// error is queued (`icmp_error`) and becomes the pending error; without
/// it, only a hard error on a connected socket does.
pub fn err(stack: &Stack, e: &IcmpError<'_>) {
    let q = &e.quoted;
    let uh = UdpPacket::new_unchecked(e.quoted_l4());
    let src = (q.dst_addr(), uh.dst_port());
    let dst = (q.src_addr(), uh.src_port());
    let Some(sk) = stack.udp_lookup(src, dst, e.dif) else {
        stack.counters.inc(Mib::IcmpInErrors);
        return;
    };
    let v = sk.view();
    let (errno, hard) = if e.icmp_type == wicmp::DEST_UNREACH && e.code == wicmp::FRAG_NEEDED {
        v.update_pmtu(stack, (q.src_addr(), q.dst_addr()), 17, e.info);
        if v.pmtudisc == PmtuDisc::Dont {
            return;
        }
        (Errno::EMSGSIZE, true)
    } else {
        match err_convert(e.icmp_type, e.code) {
            Some(x) => x,
            None => return,
        }
    };
    if v.recverr {
        icmp_error(&sk, e, errno, uh.dst_port());
    } else if !hard || v.peer.is_none() {
        return;
    }
    sk.set_error(errno);
}

/// Kernel: `ip_icmp_error()`, net/ipv4/ip_sockglue.c. An error-queue entry
/// of origin `SO_EE_ORIGIN_ICMP` with the message's type and code, `info`
/// as `ee_info`, the quoted destination and `port` as the address, and the
/// message's sender as the offender.
fn icmp_error(sk: &SockInbox, e: &IcmpError<'_>, errno: Errno, port: u16) {
    sk.queue_err(ErrQueueEntry {
        errno,
        origin: ErrOrigin::Icmp,
        ee_type: e.icmp_type,
        ee_code: e.code,
        info: e.info,
        data: 0,
        addr: e.quoted.dst_addr(),
        port,
        offender: e.from,
    });
}

impl crate::socket::UdpSocket {
    /// Kernel: `udp_recvmsg()` with `MSG_DONTWAIT`, net/ipv4/udp.c. A
    /// pending error comes first (and is cleared: `sock_error()` in
    /// `__skb_recv_udp()`); then the oldest datagram waiting, counted
    /// `UdpInDatagrams` as it is read; `EAGAIN` when none waits.
    pub fn recv_from(&mut self) -> Result<Datagram, crate::error::SendError> {
        self.check_sock_error()?;
        match self.inbox.dequeue() {
            Some(d) => {
                self.stack.counters.inc(Mib::UdpInDatagrams);
                Ok(d)
            }
            None => Err(crate::error::SendError::Again),
        }
    }
}
