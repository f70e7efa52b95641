//! ICMP for the host: what a received message means to its sockets, and the
//! errors the host sends.
//!
//! Stands for net/ipv4/icmp.c: `icmp_rcv()` (counting, checksum, dispatch
//! by type), `icmp_unreach()` (checks of the quoted header, the
//! `ip_no_pmtu_disc` cases of "fragmentation needed"), the
//! `icmp_err_convert[]` table of errnos, and `icmp_send()` (an error about
//! a received datagram, going back out through the normal output path).
//! Delivery of an error to the sockets (`icmp_socket_deliver()` and the
//! protocols' error handlers) is left to the caller, which gets an
//! [`IcmpError`]: this layer imports nothing from sockets.

use std::net::Ipv4Addr;

use crate::error::Errno;
use crate::ipv4::icmp_rate::GlobalVerdict;
use crate::ipv4::input::{Local, LocalKind};
use crate::ipv4::options::IpOptions;
use crate::ipv4::output::{build_header, local_out, HeaderFields};
use crate::stack::Stack;
use crate::stats::{DropSite, Mib};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::Ipv4Packet;

/// Kernel: `icmp_err_convert[]`, net/ipv4/icmp.c: the errno a destination
/// unreachable code means to a socket, and whether it is fatal (a hard
/// error, reported to a connected socket without `IP_RECVERR`).
pub const ERR_CONVERT: [(Errno, bool); 16] = [
    (Errno::ENETUNREACH, false),
    (Errno::EHOSTUNREACH, false),
    (Errno::ENOPROTOOPT, true),
    (Errno::ECONNREFUSED, true),
    (Errno::EMSGSIZE, false),
    (Errno::EOPNOTSUPP, false),
    (Errno::ENETUNREACH, true),
    (Errno::EHOSTDOWN, true),
    (Errno::ENONET, true),
    (Errno::ENETUNREACH, true),
    (Errno::EHOSTUNREACH, true),
    (Errno::ENETUNREACH, false),
    (Errno::EHOSTUNREACH, false),
    (Errno::EHOSTUNREACH, true),
    (Errno::EHOSTUNREACH, true),
    (Errno::EHOSTUNREACH, true),
];

/// An ICMP error for the host's sockets (what `icmp_socket_deliver()`
/// hands the protocol's `err_handler`).
#[derive(Debug)]
pub struct IcmpError<'a> {
    /// `icmph->type`.
    pub icmp_type: u8,
    /// `icmph->code`.
    pub code: u8,
    /// `info`: the next-hop MTU of a "fragmentation needed" (0 under
    /// `ip_no_pmtu_disc` 1), the pointer of a parameter problem.
    pub info: u32,
    /// The sender of the ICMP message (`SO_EE_OFFENDER`).
    pub from: Ipv4Addr,
    /// The quoted datagram: its header and at least 8 bytes after it.
    pub quoted: Ipv4Packet<&'a [u8]>,
    /// The device the message came on.
    pub dif: u32,
}

impl IcmpError<'_> {
    /// The first 8 bytes after the quoted header (a UDP header).
    pub fn quoted_l4(&self) -> &[u8] {
        let h = self.quoted.header_len();
        &self.quoted.as_bytes()[h..h + 8]
    }
}

/// Kernel: `icmp_rcv()`, net/ipv4/icmp.c. Counts `IcmpInMsgs`; a bad
/// checksum is `IcmpInCsumErrors` and `IcmpInErrors` (`ICMP_CSUM`), a
/// message shorter than its header or of a type beyond 18 `IcmpInErrors`;
/// the type's `IcmpMsgInType` counter (and `IcmpInDestUnreachs`). To a
/// broadcast or multicast address only address mask messages are taken
/// (ipxmit answers none), anything else is `IcmpInErrors`. Errors (destination
/// unreachable, source quench, time exceeded, parameter problem) go to
/// `unreach`; anything else is consumed.
pub fn rcv<'a>(stack: &Stack, l: &Local<'a>) -> Option<IcmpError<'a>> {
    let c = &stack.counters;
    c.inc(Mib::IcmpInMsgs);
    let bytes: &'a [u8] = l.ip.clone().into_inner();
    let data = &bytes[l.ip.header_len()..];
    let Ok(msg) = IcmpPacket::new_checked(data) else {
        c.inc(Mib::IcmpInErrors);
        c.drop_at(DropSite::IcmpShort);
        return None;
    };
    if !msg.verify_checksum() {
        c.inc(Mib::IcmpInCsumErrors);
        c.inc(Mib::IcmpInErrors);
        c.drop_at(DropSite::IcmpChecksum);
        return None;
    }
    let t = msg.msg_type();
    if t == icmp::DEST_UNREACH {
        c.inc(Mib::IcmpMsgInType3);
        c.inc(Mib::IcmpInDestUnreachs);
    }
    if t > icmp::NR_ICMP_TYPES {
        c.inc(Mib::IcmpInErrors);
        c.drop_at(DropSite::IcmpType);
        return None;
    }
    // To a broadcast or multicast address only address-mask messages are
    // taken; echo and timestamp too were `icmp_echo_ignore_broadcasts` 0
    // (it is 1 by default, and ipxmit keeps no such sysctl).
    if l.kind != LocalKind::Unicast && !matches!(t, 17 | 18) {
        c.inc(Mib::IcmpInErrors);
        c.drop_at(DropSite::IcmpBroadcast);
        return None;
    }
    match t {
        icmp::DEST_UNREACH | icmp::SOURCE_QUENCH | icmp::TIME_EXCEEDED | icmp::PARAMETERPROB => {
            unreach(stack, l, msg, &data[icmp::HEADER_LEN..])
        }
        _ => None,
    }
}

/// Kernel: `icmp_unreach()`, net/ipv4/icmp.c. The quoted header must be
/// there (else `IcmpInErrors`) with an IHL of at least 5 (`IP_INHDR`). A
/// "fragmentation needed" carries the next-hop MTU as `info` under
/// `ip_no_pmtu_disc` 0, 0 under 1, and is ignored under 2 and under 3 (no
/// protocol ipxmit delivers to validates it: only TCP does). A code beyond
/// 15, or a fragment reassembly time exceeded, is consumed. The quoted
/// header and 8 bytes after it must be there (else consumed) for the error
/// to go to the sockets (`icmp_socket_deliver()`).
fn unreach<'a>(
    stack: &Stack,
    l: &Local<'a>,
    msg: IcmpPacket<&[u8]>,
    data: &'a [u8],
) -> Option<IcmpError<'a>> {
    let c = &stack.counters;
    if data.len() < 20 {
        c.inc(Mib::IcmpInErrors);
        c.drop_at(DropSite::IcmpShortQuote);
        return None;
    }
    let q = Ipv4Packet::new_unchecked(data);
    if q.header_len() < 20 {
        c.inc(Mib::IcmpInErrors);
        c.drop_at(DropSite::IcmpQuoteHeader);
        return None;
    }
    let (t, code) = (msg.msg_type(), msg.code());
    let mut info = 0;
    match t {
        icmp::DEST_UNREACH => {
            if code & 15 == icmp::FRAG_NEEDED {
                match stack.sysctls().ip_no_pmtu_disc {
                    0 => info = u32::from(msg.next_hop_mtu()),
                    2 | 3 => return None,
                    _ => {}
                }
            }
            if code > icmp::NR_ICMP_UNREACH {
                return None;
            }
        }
        icmp::PARAMETERPROB => info = msg.rest() >> 24,
        icmp::TIME_EXCEEDED if code == icmp::EXC_FRAGTIME => return None,
        _ => {}
    }
    let qlen = q.header_len() + 8;
    if data.len() < qlen {
        return None;
    }
    Some(IcmpError {
        icmp_type: t,
        code,
        info,
        from: l.ip.src_addr(),
        quoted: Ipv4Packet::new_unchecked(&data[..qlen]),
        dif: l.dif,
    })
}

/// The largest ICMP error datagram (`576`, RFC 1812's minimum reassembly).
const ICMP_ERR_MAX: usize = 576;

/// Kernel: `__icmp_send()`, net/ipv4/icmp.c, with its rate limits. Sends an
/// ICMP error of `icmp_type`/`code` (with `info` as the rest of the
/// header) about the received datagram `l` back to its source, from the
/// address it was sent to, TOS `(tos & IPTOS_TOS_MASK) | 0xc0`
/// (`IPTOS_PREC_INTERNETCONTROL`), the default TTL, no DF, quoting as much
/// of it as fits 576 bytes. Nothing is sent about a datagram to a
/// broadcast or multicast address, a fragment other than the first, or an
/// ICMP error. Counts `IcmpOutMsgs` and the type's counters; returns
/// whether it was handed to the output path.
pub fn send(stack: &Stack, l: &Local<'_>, icmp_type: u8, code: u8, info: u32) -> bool {
    if l.kind != LocalKind::Unicast {
        return false;
    }
    // A datagram received for the host: the error comes from the address
    // it was sent to.
    let in_lo = l.dif == crate::route::rules::LOOPBACK_IFINDEX;
    send_error(
        stack,
        &l.ip,
        (l.ip.dst_addr(), in_lo),
        (icmp_type, code, info),
    )
}

/// Kernel: `ipv4_link_failure()`: a datagram the host sent whose next hop
/// did not resolve (`arp_error_report()` when the neighbour fails) makes
/// `icmp_send()` report "host unreachable" to its source, the host
/// itself, from the address the route back chooses (an output route:
/// `saddr` 0). The error arrives through `lo` as any other, and reaches
/// the socket by the rules of ICMP errors (with `IP_RECVERR`: the error
/// queue and `SO_ERROR`). `datagram` starts at the IP header.
pub fn link_failure(stack: &Stack, datagram: &[u8]) -> bool {
    unreach_self(stack, datagram, 1)
}

/// Kernel: `icmp_send(skb, ICMP_DEST_UNREACH, code, 0)` about a datagram
/// the host sent (`ipv4_link_failure()`, `nf_send_unreach()` at
/// LOCAL_OUT): the destination unreachable of `code` goes to the
/// datagram's source, the host itself, from the address the route back
/// chooses; nothing about a datagram to a broadcast or multicast address.
/// `datagram` starts at the IP header.
pub fn unreach_self(stack: &Stack, datagram: &[u8], code: u8) -> bool {
    let total = match datagram.get(2..4) {
        Some(t) => usize::from(u16::from_be_bytes([t[0], t[1]])),
        None => return false,
    };
    let Ok(ip) = Ipv4Packet::new_checked(&datagram[..total.min(datagram.len())]) else {
        return false;
    };
    let d = ip.dst_addr();
    if d.is_broadcast() || d.is_multicast() {
        return false;
    }
    send_error(
        stack,
        &ip,
        (Ipv4Addr::UNSPECIFIED, false),
        (icmp::DEST_UNREACH, code, 0),
    )
}

/// Kernel: `icmp_send(skb, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED,
/// htonl(mtu))` of `ip_fragment()`: a datagram of the host's own that may
/// not be fragmented and exceeds `mtu` (its route changed after the
/// socket sized it: a `route` chain's reroute) earns the host a
/// "fragmentation needed" from itself, which updates the path MTU as one
/// from the path would. `datagram` starts at the IP header.
pub fn frag_needed_self(stack: &Stack, datagram: &[u8], mtu: u32) -> bool {
    let total = match datagram.get(2..4) {
        Some(t) => usize::from(u16::from_be_bytes([t[0], t[1]])),
        None => return false,
    };
    let Ok(ip) = Ipv4Packet::new_checked(&datagram[..total.min(datagram.len())]) else {
        return false;
    };
    send_error(
        stack,
        &ip,
        (Ipv4Addr::UNSPECIFIED, false),
        (icmp::DEST_UNREACH, 4, mtu),
    )
}

/// The body of `__icmp_send()`: the checks on the datagram `ip`, the
/// host-wide rate limit (not for a datagram that came in on `lo`,
/// `in_lo`), the route back to its source from `saddr` (0: the route's
/// choice), the destination's rate limit, the message and its counters.
/// See [`crate::ipv4::icmp_rate`].
fn send_error(
    stack: &Stack,
    ip: &Ipv4Packet<&[u8]>,
    (saddr, in_lo): (Ipv4Addr, bool),
    (icmp_type, code, info): (u8, u8, u32),
) -> bool {
    if ip.frag_offset() != 0 || is_icmp_error(ip) {
        return false;
    }
    let (sys, now) = (stack.sysctls(), stack.now());
    let limit = stack.icmp_rate.global(&sys, (icmp_type, code), in_lo, now);
    if limit == GlobalVerdict::Refused {
        stack.counters.inc(Mib::IcmpOutRateLimitGlobal);
        return false;
    }
    let daddr = ip.src_addr();
    let tos = (ip.tos() & 0x1e) | 0xc0;
    // icmp_route_lookup(): a source that is not the host's (a datagram
    // looped through `lo` to a foreign address) finds no route, and
    // nothing is sent.
    let key = crate::route::FlowKey {
        saddr,
        tos,
        proto: 1,
        ..crate::route::FlowKey::to(daddr)
    };
    let Ok((dst, _)) = stack.route_output_key(&key) else {
        return false;
    };
    let via_lo = dst.dev.is_loopback();
    if !stack.icmp_rate.peer(&sys, limit, (daddr, via_lo), now) {
        stack.counters.inc(Mib::IcmpOutRateLimitHost);
        return false;
    }
    let saddr = match saddr.is_unspecified() {
        true => stack.source_for(&dst),
        false => saddr,
    };
    let room = (dst.mtu() as usize)
        .min(ICMP_ERR_MAX)
        .saturating_sub(20 + icmp::HEADER_LEN);
    let quote = &ip.as_bytes()[..ip.as_bytes().len().min(room)];
    let mut pkt = error_packet(stack, &dst, (icmp_type, code, info), quote);
    let fields = HeaderFields {
        tos,
        ident: stack.select_ident((daddr, saddr, 1), 1),
        df: false,
        ttl: stack.default_ttl(),
        protocol: 1,
        saddr,
        daddr,
        options: &IpOptions::default(),
        final_daddr: daddr,
    };
    build_header(pkt.network_header_mut(), &fields);
    pkt.meta.dst = Some(dst);
    out_count(stack, icmp_type);
    local_out(stack, pkt).is_ok()
}

/// Kernel: `icmp_out_count()`: an ICMP message of `icmp_type` sent, by
/// the host's errors or by a socket (`__ip_make_skb()` counts those):
/// `IcmpOutMsgs` and the type's counters (of the types ipxmit keeps:
/// destination unreachable; the others count in `IcmpOutMsgs` only).
pub(crate) fn out_count(stack: &Stack, icmp_type: u8) {
    let c = &stack.counters;
    c.inc(Mib::IcmpOutMsgs);
    if icmp_type == icmp::DEST_UNREACH {
        c.inc(Mib::IcmpOutDestUnreachs);
        c.inc(Mib::IcmpMsgOutType3);
    }
}

/// The error's buffer: the ICMP header and `quote` written, room for the
/// IP header in front (the network header set there).
fn error_packet(
    stack: &Stack,
    dst: &crate::route::Dst,
    (icmp_type, code, info): (u8, u8, u32),
    quote: &[u8],
) -> crate::buf::PacketBuf {
    let hroom = dst.dev.ll_reserved_space() + 20;
    let mut pkt = stack.pool.alloc(hroom + icmp::HEADER_LEN + quote.len());
    pkt.reserve(hroom);
    let body = pkt.put(icmp::HEADER_LEN + quote.len());
    let mut m = IcmpPacket::new_unchecked(&mut *body);
    m.set_msg_type(icmp_type);
    m.set_code(code);
    m.set_rest(info);
    m.data_mut().copy_from_slice(quote);
    m.fill_checksum();
    pkt.push(20);
    pkt.reset_network_header();
    pkt
}

/// An ICMP message that is an error, or of an unknown type: never
/// answered with an error (`icmp_pointers[].error`).
fn is_icmp_error(ip: &Ipv4Packet<&[u8]>) -> bool {
    if ip.protocol() != crate::wire::IpProtocol::ICMP {
        return false;
    }
    match ip.payload().first() {
        Some(&t) => t > icmp::NR_ICMP_TYPES || matches!(t, 3 | 4 | 5 | 11 | 12),
        None => true,
    }
}

/// The errno and fatality of an ICMP error of `icmp_type`/`code` for a
/// UDP or raw socket (`__udp4_lib_err()`'s switch): time exceeded and
/// unknown types `EHOSTUNREACH`, parameter problem `EPROTO` (hard),
/// destination unreachable by [`ERR_CONVERT`]; `None` for a source quench
/// (ignored). "Fragmentation needed" is the caller's (`EMSGSIZE`, hard).
pub fn err_convert(icmp_type: u8, code: u8) -> Option<(Errno, bool)> {
    match icmp_type {
        icmp::SOURCE_QUENCH => None,
        icmp::PARAMETERPROB => Some((Errno::EPROTO, true)),
        icmp::DEST_UNREACH => Some(
            ERR_CONVERT
                .get(usize::from(code))
                .copied()
                .unwrap_or((Errno::EHOSTUNREACH, false)),
        ),
        _ => Some((Errno::EHOSTUNREACH, false)),
    }
}
