//! From a complete IP datagram to `dev_queue_xmit`.
//!
//! Stands for `ip_send_skb`, `ip_local_out`/`__ip_local_out`, `dst_output`,
//! `ip_output`, `ip_finish_output`/`__ip_finish_output`, `ip_finish_output_gso`,
//! `ip_fragment`, `ip_finish_output2` and `neigh_output`/`neigh_hh_output`
//! (`net/ipv4/ip_output.c`, `include/net/neighbour.h`), and `ip_queue_xmit` for
//! connection-oriented transports.
//!
//! Error conventions follow the kernel: a filter drop is `EPERM`, a qdisc drop is
//! `ENOBUFS` (`net_xmit_errno`; congestion is not an error), a DF datagram over
//! the MTU is `EMSGSIZE`. Every dropped packet is counted under its reason.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::buf::{GsoType, PacketBuf};
use crate::dev::queue::{queue_xmit as dev_queue_xmit, QueueXmitError};
use crate::dev::{LinkType, NetDevice};
use crate::error::SendError;
use crate::ipv4::fragment::{FragError, Fragmenter};
use crate::ipv4::options::{self, IpOptions};
use crate::ipv4::PmtuDisc;
use crate::neigh::HhCache;
use crate::netfilter::{HookPoint, Verdict};
use crate::route::Dst;
use crate::stack::Stack;
use crate::stats::{DropReason, Mib};
use crate::wire::ipv4::send_check;
use crate::wire::ipv4::{IpProtocol, Ipv4Packet};

/// Output errors are the socket-level errors.
pub type OutputError = SendError;

fn daddr_of(pkt: &PacketBuf) -> Ipv4Addr {
    let h = pkt.network_header();
    Ipv4Addr::new(h[16], h[17], h[18], h[19])
}

/// The packet's route (`skb_dst`); a packet that was never routed is refused
/// (`EINVAL`, counted as no route) rather than panicking.
fn dst_of(stack: &Stack, pkt: &PacketBuf) -> Result<Arc<Dst>, SendError> {
    pkt.meta.dst.clone().ok_or_else(|| {
        stack.counters.drop(DropReason::IpOutNoRoutes);
        SendError::Inval("packet has no route (skb_dst unset)")
    })
}

/// Kernel: `ip_send_skb()`, net/ipv4/ip_output.c. Sends a datagram built by the
/// cork; counts `IpOutDiscards` when it was dropped for lack of resources.
pub fn send_skb(stack: &Stack, pkt: PacketBuf) -> Result<(), SendError> {
    let t = stack.time_scope();
    let r = local_out(stack, pkt);
    drop(t);
    sent(stack, r)
}

/// `ip_send_skb` for a datagram already cut into its fragments, in order,
/// IP headers complete, link headers not yet pushed (UDP's one-pass
/// fragments): `ip_output`'s count, then the fragment train of
/// `ip_do_fragment`'s fast path to the connected neighbour whose cached
/// header is `hh`, exactly as [`fragment`] sends a datagram the cork built.
/// The caller checked what the general path would have decided on the way:
/// no filter hook, the route's device, a fragmentable datagram.
pub(crate) fn send_fragments(
    stack: &Stack,
    dev: &NetDevice,
    frags: impl Iterator<Item = PacketBuf>,
    hh: &HhCache,
) -> Result<(), SendError> {
    let t = stack.time_scope();
    stack.counters.inc(Mib::IpOutRequests);
    let r = xmit_train(stack, dev, frags, hh);
    drop(t);
    sent(stack, r)
}

/// The end of `ip_send_skb`: `IpOutDiscards` for a datagram dropped for
/// lack of resources; then the deferred transmit work.
fn sent(stack: &Stack, r: Result<(), SendError>) -> Result<(), SendError> {
    if let Err(SendError::NoBufs) = &r {
        stack.counters.inc(Mib::IpOutDiscards);
    }
    softirq_on_exit(stack);
    r
}

/// The kernel runs pending NET_TX work when bottom halves are re-enabled after
/// `dev_queue_xmit`; this is that point.
#[inline]
pub(crate) fn softirq_on_exit(stack: &Stack) {
    if stack.notify.is_pending() {
        stack.poll_until_idle(10);
    }
}

/// Kernel: `__ip_local_out()` and `ip_local_out()`. Completes the header
/// (`tot_len`, checksum), runs LOCAL_OUT, then `dst_output`.
pub fn local_out(stack: &Stack, mut pkt: PacketBuf) -> Result<(), SendError> {
    complete_header(&mut pkt);
    let dst = dst_of(stack, &pkt)?;
    if stack.hooks.run(HookPoint::LocalOut, &mut pkt, &dst.dev) == Verdict::Drop {
        stack.counters.drop(DropReason::NetfilterDrop);
        return Err(SendError::Perm);
    }
    output(stack, pkt)
}

/// The part of `__ip_local_out()` before the hook: `tot_len`, the header
/// checksum and `skb->protocol`.
#[inline]
pub(crate) fn complete_header(pkt: &mut PacketBuf) {
    let len = pkt.len().min(0xffff) as u16;
    let h = pkt.network_header_mut();
    h[2..4].copy_from_slice(&len.to_be_bytes());
    send_check(h);
    pkt.meta.protocol = 0x0800;
}

/// The `NF_HOOK(LOCAL_OUT, ..., dst_output)` of `raw_send_hdrinc`: the user's
/// header is complete, so `__ip_local_out`'s length and checksum are skipped.
pub fn dst_output_hooked(stack: &Stack, mut pkt: PacketBuf) -> Result<(), SendError> {
    pkt.meta.protocol = 0x0800;
    let dst = dst_of(stack, &pkt)?;
    if stack.hooks.run(HookPoint::LocalOut, &mut pkt, &dst.dev) == Verdict::Drop {
        stack.counters.drop(DropReason::NetfilterDrop);
        return Err(SendError::Perm);
    }
    let t = stack.time_scope();
    let r = output(stack, pkt);
    drop(t);
    softirq_on_exit(stack);
    r
}

/// Kernel: `ip_output()`. Counts the datagram and runs POST_ROUTING unless the
/// packet was rerouted.
pub fn output(stack: &Stack, mut pkt: PacketBuf) -> Result<(), SendError> {
    stack.counters.inc(Mib::IpOutRequests);
    let dst = dst_of(stack, &pkt)?;
    if !pkt.meta.ip_flags.rerouted
        && stack.hooks.run(HookPoint::PostRouting, &mut pkt, &dst.dev) == Verdict::Drop
    {
        stack.counters.drop(DropReason::NetfilterDrop);
        return Err(SendError::Perm);
    }
    finish_output(stack, &dst, pkt)
}

/// Kernel: `ip_skb_dst_mtu()`. The device MTU for sockets that do not use the
/// path MTU (`IP_PMTUDISC_PROBE` and above), else the path MTU.
#[inline]
pub fn skb_dst_mtu(dst: &Dst, pkt: &PacketBuf) -> u32 {
    if pkt.meta.use_dev_mtu {
        dst.dev.mtu().min(crate::route::IP_MAX_MTU)
    } else {
        dst.mtu()
    }
}

/// Kernel: `__ip_finish_output()`. Fragments what exceeds the MTU.
pub fn finish_output(stack: &Stack, dst: &Dst, pkt: PacketBuf) -> Result<(), SendError> {
    let mut mtu = skb_dst_mtu(dst, &pkt);
    let fms = pkt.meta.frag_max_size as u32;
    if pkt.meta.gso_type != GsoType::None {
        // ip_finish_output_gso: segments were sized for the MTU at send time.
        return finish_output2(stack, dst, pkt);
    }
    if pkt.len() as u32 > mtu || fms != 0 {
        if fms != 0 && fms < mtu {
            mtu = fms;
        }
        return fragment(stack, dst, pkt, mtu);
    }
    finish_output2(stack, dst, pkt)
}

/// Kernel: `ip_fragment()` and `ip_do_fragment()`. Refuses DF datagrams
/// (`EMSGSIZE`, `IpFragFails`), else sends each fragment; a failed fragment
/// fails the datagram and frees the rest.
pub fn fragment(stack: &Stack, dst: &Dst, pkt: PacketBuf, mtu: u32) -> Result<(), SendError> {
    let df = pkt.network_header()[6] & 0x40 != 0;
    let fms = pkt.meta.frag_max_size as u32;
    if (df && !pkt.meta.ip_flags.ignore_df) || (fms != 0 && fms > mtu) {
        stack.counters.inc(Mib::IpFragFails);
        stack.counters.drop(DropReason::PktTooBig);
        return Err(SendError::MsgSize { mtu });
    }
    let confirm = pkt.meta.confirm_neigh;
    let frags = match Fragmenter::new(pkt, mtu, dst.dev.ll_reserved_space(), &stack.pool) {
        Ok(f) => f,
        Err(e) => {
            stack.counters.inc(Mib::IpFragFails);
            stack.counters.drop(DropReason::PktTooBig);
            return Err(match e {
                FragError::NeedFrag { mtu } | FragError::MtuTooSmall { mtu, .. } => {
                    SendError::MsgSize { mtu }
                }
                FragError::Malformed => SendError::Inval("malformed IPv4 header"),
            });
        }
    };
    let mut frags = frags;
    if let Some(hh) = train_header(stack, dst, &frags).filter(|_| !confirm) {
        return xmit_train(stack, &dst.dev, frags, &hh);
    }
    while let Some(f) = frags.next() {
        if let Err(e) = finish_output2(stack, dst, f) {
            let rest = frags.by_ref().count() as u64;
            stack.counters.drop_n(DropReason::NotSpecified, rest);
            stack.counters.inc(Mib::IpFragFails);
            return Err(e);
        }
        stack.counters.inc(Mib::IpFragCreates);
    }
    stack.counters.inc(Mib::IpFragOKs);
    Ok(())
}

thread_local! {
    /// A reused list for fragment trains (no allocation per datagram).
    static TRAIN: std::cell::RefCell<VecDeque<PacketBuf>> = const {
        std::cell::RefCell::new(VecDeque::new())
    };
}

/// The link header every fragment of a train gets: the neighbour's cached
/// header when it is connected (empty for an L3 device); `None` sends the
/// fragments one by one through neighbour resolution.
fn train_header(stack: &Stack, dst: &Dst, frags: &Fragmenter) -> Option<HhCache> {
    let dev = &dst.dev;
    if !frags.is_fast_path() {
        return None;
    }
    match dev.link() {
        LinkType::L3 => Some(HhCache { hdr: [0; 14] }),
        LinkType::Ethernet => {
            let nexthop = dst.nexthop(frags.daddr());
            stack.neigh.connected_hh(dev.ifindex(), nexthop)
        }
    }
}

/// `ip_finish_output2` for a whole fragment train with a known link header:
/// the fragments go to `dev_queue_xmit` as one train (one queue choice, one
/// qdisc decision, `xmit_more` within the train), each as it is made. A
/// refused fragment fails the datagram and the rest are freed, as in
/// `ip_do_fragment`.
fn xmit_train(
    stack: &Stack,
    dev: &NetDevice,
    frags: impl Iterator<Item = PacketBuf>,
    hh: &HhCache,
) -> Result<(), SendError> {
    let hlen = dev.link().header_len();
    let mut own = VecDeque::new();
    TRAIN.with(|t| {
        let mut guard = t.try_borrow_mut();
        let list = match guard.as_deref_mut() {
            Ok(l) => l,
            Err(_) => &mut own,
        };
        let (mut pkts, mut octets) = (0u64, 0u64);
        let train = frags.map(|mut f| {
            pkts += 1;
            octets += f.len() as u64;
            push_link_header(&mut f, hh, hlen);
            f
        });
        let r = crate::dev::queue::queue_xmit_train(stack.xmit_ctx(), dev, train, list);
        stack.counters.add(Mib::IpExtOutPkts, pkts);
        stack.counters.add(Mib::IpExtOutOctets, octets);
        stack.counters.add(Mib::IpFragCreates, r.accepted as u64);
        match r.error {
            None => {
                stack.counters.inc(Mib::IpFragOKs);
                Ok(())
            }
            Some(e) => {
                stack.counters.inc(Mib::IpFragFails);
                Err(match e {
                    QueueXmitError::Dropped => SendError::NoBufs,
                    QueueXmitError::NetDown => SendError::NetDown,
                })
            }
        }
    })
}

/// `neigh_hh_output()` for a frame of a train: the cached link header of
/// `hlen` bytes (none on an L3 device) pushed in front of the IP header.
#[inline]
pub(crate) fn push_link_header(f: &mut PacketBuf, hh: &HhCache, hlen: usize) {
    if hlen == 0 {
        return;
    }
    write_link_header(f.push(hlen), &hh.hdr);
}

/// Copies the first `h.len()` bytes of the cached link header `hdr` into
/// `h`. The Ethernet header is copied as two overlapping 8-byte moves:
/// LLVM makes a 14-byte copy a call to memcpy (about 12 instructions a
/// frame more).
#[inline(always)]
pub(crate) fn write_link_header(h: &mut [u8], hdr: &[u8; 14]) {
    if h.len() == 14 {
        h[..8].copy_from_slice(&hdr[..8]);
        h[6..].copy_from_slice(&hdr[6..]);
    } else {
        h.copy_from_slice(&hdr[..h.len()]);
    }
}

/// Kernel: `ip_finish_output2()` and `neigh_output()`/`neigh_hh_output()`.
/// Pushes the cached link header of the next hop and queues the frame on the
/// device.
pub fn finish_output2(stack: &Stack, dst: &Dst, pkt: PacketBuf) -> Result<(), SendError> {
    let dev = &dst.dev;
    stack.counters.inc(Mib::IpExtOutPkts);
    stack.counters.add(Mib::IpExtOutOctets, pkt.len() as u64);
    if dev.link() == LinkType::Ethernet {
        let nexthop = dst.nexthop(daddr_of(&pkt));
        return crate::neigh::neigh_output(stack, dev, nexthop, pkt);
    }
    match dev_queue_xmit(stack.xmit_ctx(), dev, pkt) {
        Ok(_) => Ok(()),
        Err(QueueXmitError::Dropped) => Err(SendError::NoBufs),
        Err(QueueXmitError::NetDown) => Err(SendError::NetDown),
    }
}

/// What a connected transport hands [`queue_xmit`]: the socket's transmit
/// parameters (`struct inet_sock` fields `__ip_queue_xmit` reads).
#[derive(Clone, Copy, Debug)]
pub struct XmitParams<'a> {
    /// The connected peer (`inet_daddr`): the final destination.
    pub peer: Ipv4Addr,
    /// The bound source address, unspecified for the route's (`inet_saddr`).
    pub saddr: Ipv4Addr,
    /// The transport protocol (`sk_protocol`).
    pub protocol: u8,
    /// `IP_TOS`.
    pub tos: u8,
    /// The TTL to write (`ip_select_ttl`).
    pub ttl: u8,
    /// `IP_MTU_DISCOVER`.
    pub pmtudisc: PmtuDisc,
    /// `IP_OPTIONS` as compiled.
    pub options: &'a IpOptions,
    /// `SO_PRIORITY`.
    pub priority: u32,
    /// `SO_MARK`.
    pub mark: u32,
}

/// Kernel: `ip_queue_xmit()` / `__ip_queue_xmit()`, net/ipv4/ip_output.c. Sends a
/// transport segment (`skb` starts at the transport header, with headroom for
/// the IP header and the link layer) of a connected socket whose parameters
/// are `p`: routes it with `route` to the peer — a source route's first hop —
/// unless it carries a route already, refuses a strict source route through
/// a gateway (`EHOSTUNREACH`, `IpOutNoRoutes`), writes the IP header (TOS,
/// TTL, DF when `ip_dont_fragment` and the segment does not ignore DF, the
/// protocol, the flow's addresses, the options completed by
/// `ip_options_build` with the peer as the final destination), numbers it
/// from the socket's own counter `id` (`gso_segs` numbers for a GSO segment;
/// TCP takes the counter before the increment, the others after, as
/// `ip_select_ident_segs` does), sets priority and mark, and hands it to
/// `ip_local_out`.
pub fn queue_xmit(
    stack: &Stack,
    p: &XmitParams<'_>,
    route: &mut dyn FnMut(Ipv4Addr) -> Option<Arc<Dst>>,
    id: &mut u16,
    mut skb: PacketBuf,
) -> Result<(), SendError> {
    let opt = p.options;
    let daddr = opt.faddr.unwrap_or(p.peer);
    let Some(dst) = skb.meta.dst.clone().or_else(|| route(daddr)) else {
        stack.counters.inc(Mib::IpOutNoRoutes);
        return Err(SendError::HostUnreachable(daddr));
    };
    if opt.is_strictroute && dst.nexthop(daddr) != daddr {
        stack.counters.inc(Mib::IpOutNoRoutes);
        return Err(SendError::HostUnreachable(daddr));
    }
    let hlen = 20 + opt.len();
    if skb.headroom() < hlen {
        return Err(SendError::Inval("no headroom for the IP header"));
    }
    let saddr = if p.saddr.is_unspecified() {
        stack.source_for(&dst)
    } else {
        p.saddr
    };
    let segs = skb.meta.gso_segs.max(1);
    let ident = if p.protocol == 6 {
        let v = *id;
        *id = v.wrapping_add(segs);
        v
    } else {
        *id = id.wrapping_add(segs);
        *id
    };
    build_queue_xmit_header(p, &mut skb, ident, saddr, daddr);
    skb.meta.ip_optlen = opt.len() as u8;
    skb.meta.use_dev_mtu = !p.pmtudisc.use_pmtu();
    skb.meta.priority = p.priority;
    skb.meta.mark = p.mark;
    skb.meta.dst = Some(dst);
    let t = stack.time_scope();
    let r = local_out(stack, skb);
    drop(t);
    softirq_on_exit(stack);
    r
}

/// The header `__ip_queue_xmit` pushes: DF from the PMTU mode, the ID,
/// TTL, TOS, options built.
fn build_queue_xmit_header(
    p: &XmitParams<'_>,
    skb: &mut PacketBuf,
    ident: u16,
    saddr: Ipv4Addr,
    daddr: Ipv4Addr,
) {
    let hlen = 20 + p.options.len();
    let df = matches!(p.pmtudisc, PmtuDisc::Do | PmtuDisc::Want) && !skb.meta.ip_flags.ignore_df;
    skb.push(hlen);
    skb.reset_network_header();
    let mut h = Ipv4Packet::new_unchecked(skb.network_header_mut());
    h.set_version(4);
    h.set_header_len(hlen);
    h.set_tos(p.tos);
    h.set_ident(ident);
    h.clear_flags();
    h.set_dont_frag(df);
    h.set_ttl(p.ttl);
    h.set_protocol(IpProtocol(p.protocol));
    h.set_src_addr(saddr);
    h.set_dst_addr(daddr);
    if !p.options.is_empty() {
        let now = if p.options.ts_needtime {
            options::current_timestamp()
        } else {
            0
        };
        options::build(&mut h.into_inner()[..hlen], p.options, p.peer, saddr, now);
    }
}
