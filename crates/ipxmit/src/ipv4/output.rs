//! From a complete IP datagram to `dev_queue_xmit`, one datagram or a batch.
//!
//! Stands for `ip_send_skb`, `ip_local_out`/`__ip_local_out`, `dst_output`,
//! `ip_output`, `ip_finish_output`/`__ip_finish_output`, `ip_finish_output_gso`,
//! `ip_fragment`/`ip_do_fragment`'s loop, `ip_finish_output2` and
//! `neigh_output`/`neigh_hh_output` (`net/ipv4/ip_output.c`,
//! `include/net/neighbour.h`), and `ip_queue_xmit` for connection-oriented
//! transports.
//!
//! Every datagram goes down through an [`OutputBatch`]: the datagrams of one
//! flow (one route and next hop) sent by one call, in order — one for a
//! `send`, up to a `sendmmsg`'s worth for a batch. Per datagram it does what
//! the kernel does per `skb`: the LOCAL_OUT hook, `ip_output`'s count and
//! the POST_ROUTING hook, the MTU decision and fragmentation, the link
//! header, `dev_queue_xmit`. Once per batch: the hook lists read, the next
//! hop's cached link header looked up (`neigh_output`'s connected case;
//! resolution, `MSG_CONFIRM` and an unresolved neighbour go through the
//! neighbour layer per datagram), the device's transmit batch
//! ([`XmitBatch`]: queue claim, transmit lock, `xmit_more`) and the MIB
//! updates, each counted here and added once.
//!
//! Error conventions follow the kernel: a filter drop is `EPERM`, a qdisc drop is
//! `ENOBUFS` (`net_xmit_errno`; congestion is not an error), a DF datagram over
//! the MTU is `EMSGSIZE`. Every dropped packet is counted under its reason.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::buf::{CsumState, GsoType, PacketBuf};
use crate::dev::batch::XmitBatch;
pub use crate::dev::queue::{QdiscPath, QdiscPlan};
use crate::dev::{LinkType, NetDevice, Notify};
use crate::error::SendError;
use crate::ipv4::fragment::{self, FragError, FragList, Fragmenter};
use crate::ipv4::options::{self, IpOptions};
use crate::ipv4::PmtuDisc;
use crate::neigh::HhCache;
use crate::netfilter::{HookList, HookPoint, Verdict};
use crate::offload::Features;
use crate::route::Dst;
use crate::stack::Stack;
use crate::stats::{fate, DropReason, DropSite, Mib};
use crate::wire::ipv4::{
    send_check, set_len_and_check, set_len_and_check_from, IpProtocol, Ipv4Packet, FLAG_DF,
    HEADER_LEN,
};

/// Output errors are the socket-level errors.
pub type OutputError = SendError;

fn daddr_of(pkt: &PacketBuf) -> Ipv4Addr {
    Ipv4Packet::new_unchecked(pkt.network_header()).dst_addr()
}

/// The packet's route (`skb_dst`), taken out of it: the datagram's batch
/// carries it down, and the device layer would release it anyway
/// (`IFF_XMIT_DST_RELEASE`). A packet that was never routed is refused
/// (`EINVAL`, counted as no route) rather than panicking.
fn dst_of(stack: &Stack, pkt: &mut PacketBuf) -> Result<Arc<Dst>, SendError> {
    pkt.meta.dst.take().ok_or_else(|| {
        stack.counters.drop_at(DropSite::OutputNoRoute);
        fate::dropped(pkt.meta.tskey, DropReason::IpOutNoRoutes);
        SendError::Inval("packet has no route (skb_dst unset)")
    })
}

/// Kernel: `ip_send_skb()`, net/ipv4/ip_output.c. Sends a datagram built by the
/// cork (its route in `skb_dst`): a batch of one.
pub fn send_skb(stack: &Stack, pkt: PacketBuf) -> Result<(), SendError> {
    batch_of_one(stack, pkt, |b, p, more| b.send_skb(p, more))
}

/// Kernel: `__ip_local_out()` and `ip_local_out()` for one datagram whose
/// route is in `skb_dst`: a batch of one.
pub fn local_out(stack: &Stack, pkt: PacketBuf) -> Result<(), SendError> {
    batch_of_one(stack, pkt, |b, p, more| b.local_out(p, more))
}

/// The `NF_HOOK(LOCAL_OUT, ..., dst_output)` of `raw_send_hdrinc`: the user's
/// header is complete, so `__ip_local_out`'s length and checksum are skipped.
pub fn dst_output_hooked(stack: &Stack, pkt: PacketBuf) -> Result<(), SendError> {
    batch_of_one(stack, pkt, |b, p, more| b.local_out_complete(p, more))
}

/// `pkt` (its route in `skb_dst`) through `step` of an [`OutputBatch`] of
/// its own, the stack's clock read once for it, the batch ended after.
fn batch_of_one(
    stack: &Stack,
    mut pkt: PacketBuf,
    step: impl FnOnce(&mut OutputBatch<'_>, PacketBuf, bool) -> Result<(), SendError>,
) -> Result<(), SendError> {
    let dst = dst_of(stack, &mut pkt)?;
    let t = stack.time_scope();
    let mut b = OutputBatch::begin(stack, &dst, daddr_of(&pkt));
    let r = step(&mut b, pkt, false);
    drop(t);
    b.finish();
    r
}

/// The kernel runs pending NET_TX work when bottom halves are re-enabled after
/// `dev_queue_xmit`; this is that point.
#[inline]
fn softirq_on_exit(stack: &Stack) {
    if stack.notify.is_pending() {
        stack.poll_until_idle(10);
    }
}

/// The part of `__ip_local_out()` before the hook: `tot_len`, the header
/// checksum and `skb->protocol`. Returns the datagram's length.
#[inline(always)]
pub(crate) fn complete_header(pkt: &mut PacketBuf) -> usize {
    let len = pkt.len();
    pkt.meta.protocol = 0x0800;
    // `htons(skb->len)`: a datagram is at most 65535 bytes here.
    let tot_len = len as u16;
    let sum = std::mem::take(&mut pkt.meta.hdr_sum);
    match pkt.network_header_array::<HEADER_LEN>() {
        // The header its writer summed as it wrote it.
        Some(h) if sum != 0 => set_len_and_check_from(h, sum, tot_len),
        // The common option-less header, as one fixed-size view.
        Some(h) if h[0] == 0x45 => set_len_and_check(h, tot_len),
        _ => {
            let h = pkt.network_header_mut();
            Ipv4Packet::new_unchecked(&mut *h).set_total_len(tot_len);
            send_check(h);
        }
    }
    len
}

/// Kernel: `ip_skb_dst_mtu()`. The device MTU for sockets that do not use the
/// path MTU (`IP_PMTUDISC_PROBE` and above: `use_dev_mtu`), else the path MTU.
#[inline]
pub fn ip_mtu(dst: &Dst, use_dev_mtu: bool) -> u32 {
    if use_dev_mtu {
        dst.dev.mtu().min(crate::route::IP_MAX_MTU)
    } else {
        dst.mtu()
    }
}

/// `neigh_hh_output()` for a frame: the cached link header of `hlen` bytes
/// (none on an L3 device) pushed in front of the IP header.
#[inline(always)]
pub(crate) fn push_link_header(f: &mut PacketBuf, hh: &HhCache, hlen: usize) {
    match hlen {
        0 => {}
        // The Ethernet header as two overlapping 8-byte moves: LLVM makes
        // a 14-byte copy a call to memcpy (about 12 instructions a frame
        // more).
        14 => {
            let h = f.push_array::<14>();
            h[..8].copy_from_slice(&hh.hdr[..8]);
            h[6..].copy_from_slice(&hh.hdr[6..]);
        }
        _ => f.push(hlen).copy_from_slice(&hh.hdr[..hlen]),
    }
}

/// The IPv4 MIBs a batch counts, added to the stack's once when it ends.
#[derive(Clone, Copy, Debug, Default)]
struct OutCount {
    /// `IpOutRequests`: datagrams that reached `__ip_local_out` (before
    /// LOCAL_OUT, so a datagram a hook drops counts; `IP_HDRINCL` ones,
    /// which the kernel hands to LOCAL_OUT itself, do not).
    requests: u64,
    /// `IpOutTransmits`/`IpExtOutOctets`: frames and IP bytes that reached
    /// `ip_finish_output2`.
    pkts: u64,
    octets: u64,
    /// `IpFragOKs`, `IpFragCreates`, `IpFragFails`.
    frag_oks: u64,
    frag_creates: u64,
    frag_fails: u64,
    /// `IpOutDiscards`: datagrams `ip_send_skb` saw dropped for lack of
    /// resources.
    discards: u64,
    /// `IpExtOutMcastPkts`/`Octets`, `IpExtOutBcastPkts`/`Octets`.
    mcast: (u64, u64),
    bcast: (u64, u64),
}

impl OutCount {
    /// Adds the counts to `stack`'s MIBs.
    fn settle(&self, stack: &Stack) {
        let c = &stack.counters;
        c.add(Mib::IpOutRequests, self.requests);
        c.add(Mib::IpOutTransmits, self.pkts);
        c.add(Mib::IpExtOutOctets, self.octets);
        if self.frag_oks | self.frag_creates | self.frag_fails | self.discards != 0 {
            c.add(Mib::IpFragOKs, self.frag_oks);
            c.add(Mib::IpFragCreates, self.frag_creates);
            c.add(Mib::IpFragFails, self.frag_fails);
            c.add(Mib::IpOutDiscards, self.discards);
        }
        if self.mcast.0 | self.bcast.0 != 0 {
            c.add(Mib::IpExtOutMcastPkts, self.mcast.0);
            c.add(Mib::IpExtOutMcastOctets, self.mcast.1);
            c.add(Mib::IpExtOutBcastPkts, self.bcast.0);
            c.add(Mib::IpExtOutBcastOctets, self.bcast.1);
        }
    }
}

/// The IP output path for the datagrams of one flow sent by one call. See
/// the module documentation.
pub struct OutputBatch<'a> {
    stack: &'a Stack,
    dst: &'a Dst,
    /// The next hop of the flow's destination (`rt_nexthop`).
    nexthop: Ipv4Addr,
    /// The next hop's cached link header when its neighbour was connected
    /// as the batch began (an L3 device's: empty).
    hh: Option<HhCache>,
    /// The device's link header length (`hard_header_len`).
    hlen: usize,
    /// `ip_skb_dst_mtu` for the path (`[0]`) and for a datagram that uses
    /// the device's MTU (`[1]`), read as the batch began.
    mtus: [u32; 2],
    /// The device takes UDP datagrams over its MTU whole (`NETIF_F_UFO`)
    /// and the route has no transform (`!dst_xfrm`).
    ufo: bool,
    /// The hooks at LOCAL_OUT and POST_ROUTING, read once (`None`: none).
    local_out_hooks: Option<HookList<'a>>,
    post_routing_hooks: Option<HookList<'a>>,
    count: OutCount,
    /// Where deferred transmit work is signalled (the NET_TX softirq).
    notify: &'a Notify,
    /// An emptied chain vector from the last datagram fragmented, for the
    /// next datagram built with a chain ([`OutputBatch::chain_vec`]).
    spare_chain: Vec<PacketBuf>,
    /// The device's transmit batch, begun with the first frame for it.
    xmit: XmitBatch<'a>,
}

impl<'a> OutputBatch<'a> {
    /// Starts a batch of datagrams to `daddr` through the route `dst`.
    pub fn begin(stack: &'a Stack, dst: &'a Dst, daddr: Ipv4Addr) -> OutputBatch<'a> {
        let dev = &*dst.dev;
        let nexthop = dst.nexthop(daddr);
        let hh = match dev.link() {
            LinkType::L3 => Some(HhCache { hdr: [0; 14] }),
            LinkType::Ethernet => stack.neigh.connected_hh(dev.ifindex(), nexthop),
        };
        let ctx = stack.xmit_ctx();
        OutputBatch {
            stack,
            dst,
            nexthop,
            hh,
            hlen: dev.link().header_len(),
            mtus: [ip_mtu(dst, false), ip_mtu(dst, true)],
            ufo: dev.features().contains(Features::UFO) && dst.header_len == 0,
            local_out_hooks: stack.hooks.list(HookPoint::LocalOut),
            post_routing_hooks: stack.hooks.list(HookPoint::PostRouting),
            count: OutCount::default(),
            notify: &stack.notify,
            spare_chain: Vec::new(),
            xmit: XmitBatch::new(ctx, dev),
        }
    }

    /// A vector for the chain (`frag_list`) of a datagram to be built:
    /// the one the last datagram fragmented emptied, when there is one
    /// (no allocation, no shared or thread-local state per datagram).
    #[inline]
    pub fn chain_vec(&mut self) -> Vec<PacketBuf> {
        std::mem::take(&mut self.spare_chain)
    }

    /// Kernel: `ip_send_skb()`. [`OutputBatch::local_out`], and
    /// `IpOutDiscards` for a datagram it failed (a hook's drop, no
    /// buffers, a device down: any error but congestion, which is none).
    #[inline(always)]
    pub fn send_skb(&mut self, pkt: PacketBuf, more: bool) -> Result<(), SendError> {
        let r = self.local_out(pkt, more);
        if r.is_err() {
            self.count_discard();
        }
        r
    }

    /// `ip_send_skb`'s `IpOutDiscards` for a datagram `ip_local_out`
    /// failed.
    #[cold]
    fn count_discard(&mut self) {
        self.count.discards += 1;
    }

    /// `local_bh_enable()` after a datagram's `dev_queue_xmit`: deferred
    /// transmit work pending (a queue a driver's refusal rescheduled) runs
    /// now, as after each datagram of the kernel's `sendmmsg` — the
    /// device's transmit batch ended first (it may hold the transmit lock;
    /// the next frame begins a new one).
    #[inline(always)]
    fn bh_enable(&mut self) {
        if self.notify.is_pending() {
            self.run_deferred();
        }
    }

    /// [`OutputBatch::bh_enable`] with work pending.
    #[cold]
    fn run_deferred(&mut self) {
        self.xmit.end();
        self.stack.poll_until_idle(10);
    }

    /// Kernel: `__ip_local_out()` and `ip_local_out()`. Completes the header
    /// (`tot_len`, checksum), runs LOCAL_OUT, then `dst_output`. `more` says
    /// another datagram of the batch follows at once.
    #[inline(always)]
    pub fn local_out(&mut self, mut pkt: PacketBuf, more: bool) -> Result<(), SendError> {
        self.count.requests += 1;
        let len = complete_header(&mut pkt);
        let r = self.hooked_output(pkt, len, more);
        self.bh_enable();
        r
    }

    /// [`OutputBatch::local_out`] for a header the caller completed
    /// (`IP_HDRINCL`): LOCAL_OUT, then `dst_output`.
    #[inline]
    pub fn local_out_complete(&mut self, mut pkt: PacketBuf, more: bool) -> Result<(), SendError> {
        pkt.meta.protocol = 0x0800;
        let len = pkt.len();
        let r = self.hooked_output(pkt, len, more);
        self.bh_enable();
        r
    }

    /// LOCAL_OUT, then `dst_output` (`ip_output`). `len` is the datagram's
    /// length (a hook that changes it says so by the packet).
    #[inline(always)]
    fn hooked_output(
        &mut self,
        mut pkt: PacketBuf,
        mut len: usize,
        more: bool,
    ) -> Result<(), SendError> {
        if let Some(h) = &self.local_out_hooks {
            len = self.filter(h, HookPoint::LocalOut, &mut pkt)?;
            if pkt.meta.dst.is_some() {
                return self.rerouted(pkt, len);
            }
        }
        self.output(pkt, len, more)
    }

    /// A datagram a LOCAL_OUT hook routed again (`ip_route_me_harder` put
    /// a new `skb_dst`): `dst_output` by that route, in a batch of its own
    /// (this batch's transmit ended first: the route may leave by the same
    /// device).
    #[cold]
    fn rerouted(&mut self, mut pkt: PacketBuf, len: usize) -> Result<(), SendError> {
        let dst = dst_of(self.stack, &mut pkt)?;
        self.xmit.end();
        let mut b = OutputBatch::begin(self.stack, &dst, daddr_of(&pkt));
        let r = b.output(pkt, len, false);
        b.finish();
        r
    }

    /// `nf_hook()` at `point`: the first DROP wins (`NETFILTER_DROP`,
    /// `EPERM`, or the errno of an `NF_DROP_ERR`); else the packet's length,
    /// which a hook may have changed.
    #[inline(always)]
    fn filter(
        &self,
        h: &HookList<'_>,
        point: HookPoint,
        pkt: &mut PacketBuf,
    ) -> Result<usize, SendError> {
        let v = self.run_hooks(h, point, pkt);
        if v.is_drop() {
            return Err(self.hook_drop(v, pkt));
        }
        Ok(pkt.len())
    }

    /// [`OutputBatch::filter`] out of line, for POST_ROUTING.
    #[cold]
    #[inline(never)]
    fn filter_outlined(
        &self,
        h: &HookList<'_>,
        point: HookPoint,
        pkt: &mut PacketBuf,
    ) -> Result<usize, SendError> {
        self.filter(h, point, pkt)
    }

    /// The hooks' verdict on `pkt`, out of line (the path without hooks
    /// keeps its registers; with one hook, a jump to it).
    #[inline(never)]
    fn run_hooks(&self, h: &HookList<'_>, point: HookPoint, pkt: &mut PacketBuf) -> Verdict {
        h.run(point, pkt, &self.dst.dev)
    }

    /// A hook's drop of `pkt` ([`OutputBatch::filter`]): counted, shown
    /// to the taps, and the send's error.
    #[cold]
    fn hook_drop(&self, v: Verdict, pkt: &PacketBuf) -> SendError {
        self.stack.counters.drop_at(DropSite::HookDrop);
        crate::dev::xmit::tap_drop(&self.dst.dev, pkt, DropSite::HookDrop, self.stack.now());
        fate::dropped(pkt.meta.tskey, DropReason::NetfilterDrop);
        hook_error(v, daddr_of(pkt))
    }

    /// Kernel: `ip_output()`. Runs POST_ROUTING unless the packet was
    /// rerouted.
    #[inline(always)]
    fn output(&mut self, mut pkt: PacketBuf, mut len: usize, more: bool) -> Result<(), SendError> {
        let f = pkt.meta.ip_flags;
        if f.bcast | f.mcast && self.mc_output(&pkt) {
            return Ok(());
        }
        if let (Some(h), false) = (&self.post_routing_hooks, f.rerouted) {
            len = self.filter_outlined(h, HookPoint::PostRouting, &mut pkt)?;
        }
        self.finish_output(pkt, len, more)
    }

    /// Kernel: `ip_mc_output()`'s part before the datagram's own
    /// POST_ROUTING, the output of a broadcast route and of a multicast
    /// one to a group the host is in (`RTCF_LOCAL`: all-hosts; ipxmit
    /// joins no other): a copy of a broadcast datagram, or of a multicast
    /// one from a socket with `IP_MULTICAST_LOOP`, passes POST_ROUTING and
    /// is looped to the host ([`loop_copy`]); such a multicast datagram of
    /// TTL 0 goes no further (freed quietly: true).
    #[cold]
    fn mc_output(&mut self, pkt: &PacketBuf) -> bool {
        let f = pkt.meta.ip_flags;
        let h = pkt.network_header();
        let member = f.mcast && h.get(16..20) == Some(&crate::ipv4::input::ALL_HOSTS.octets()[..]);
        if !(f.bcast || member) {
            return false;
        }
        if f.bcast || f.mc_loop {
            let mut copy = loop_copy(pkt, &self.stack.pool);
            let passed = match &self.post_routing_hooks {
                Some(h) => self
                    .filter_outlined(h, HookPoint::PostRouting, &mut copy)
                    .is_ok(),
                None => true,
            };
            if passed {
                push_loop_header(&mut copy, &self.dst.dev);
                self.stack.loop_to_host(&self.dst.dev, copy);
            }
        }
        member && pkt.network_header().get(8) == Some(&0)
    }

    /// Kernel: `__ip_finish_output()`. Fragments what exceeds the MTU
    /// (`ip_skb_dst_mtu`: the device's or the path's, read once for the
    /// batch) — unless the device fragments UDP itself ([`ufo_mark`]).
    #[inline(always)]
    fn finish_output(
        &mut self,
        mut pkt: PacketBuf,
        len: usize,
        more: bool,
    ) -> Result<(), SendError> {
        if pkt.meta.gso_type != GsoType::None {
            // ip_finish_output_gso: segments were sized for the MTU at send time.
            return self.finish_output2(pkt, len, more);
        }
        let mut mtu = self.mtus[usize::from(pkt.meta.use_dev_mtu)];
        let fms = u32::from(pkt.meta.frag_max_size);
        if len as u32 > mtu || fms != 0 {
            if self.ufo && fms == 0 && ufo_mark(&mut pkt, len, mtu) {
                return self.finish_output2(pkt, len, more);
            }
            if fms != 0 && fms < mtu {
                mtu = fms;
            }
            return self.fragment(pkt, mtu, more);
        }
        self.finish_output2(pkt, len, more)
    }

    /// Kernel: `ip_fragment()` and `ip_do_fragment()`. Refuses DF
    /// datagrams (`EMSGSIZE`, `IpFragFails`, and the host's own ICMP
    /// "fragmentation needed" to itself), else sends each fragment as it
    /// is made: from the datagram's own chain when it can (the fast path),
    /// else cut out of it; a failed fragment fails the datagram and frees
    /// the rest.
    #[inline(never)]
    fn fragment(&mut self, mut pkt: PacketBuf, mtu: u32, more: bool) -> Result<(), SendError> {
        let df = Ipv4Packet::new_unchecked(pkt.network_header()).dont_frag();
        let fms = u32::from(pkt.meta.frag_max_size);
        if (df && !pkt.meta.ip_flags.ignore_df) || (fms != 0 && fms > mtu) {
            fate::dropped(pkt.meta.tskey, DropReason::PktTooBig);
            // The ICMP goes out through `lo`: this batch's transmit ends
            // first, as for neighbour resolution.
            self.xmit.end();
            crate::ipv4::icmp::frag_needed_self(self.stack, pkt.network_header(), mtu);
            return Err(self.frag_failed(SendError::MsgSize { mtu }));
        }
        let key = pkt.meta.tskey;
        let (plan, optlen) = match fragment::prepare(&mut pkt, mtu) {
            Ok(p) => p,
            Err(e) => return Err(self.frag_failed(e.into())),
        };
        let ll_rs = self.dst.dev.ll_reserved_space();
        if fragment::fast_path_ok(&pkt, plan, ll_rs) {
            return self.fraglist(pkt, plan.hlen(), optlen, more);
        }
        let mut frags = Fragmenter::slow(pkt, (plan, optlen), ll_rs, &self.stack.pool);
        let mut first = true;
        while let Some(f) = frags.next() {
            if !first {
                // A frame more than the datagram its fate counted.
                fate::made(key);
            }
            first = false;
            let len = f.len();
            if let Err(e) = self.finish_output2(f, len, more || !frags.is_done()) {
                // kfree_skb of the datagram, its fragments cut from it one
                // at a time.
                self.stack
                    .counters
                    .drop_n_at(DropSite::FragSlowRest, frags.unsent(false));
                fate::dropped(key, DropReason::NotSpecified);
                self.count.frag_fails += 1;
                return Err(e);
            }
            self.count.frag_creates += 1;
        }
        self.count.frag_oks += 1;
        Ok(())
    }

    /// `ip_do_fragment`'s fast path: the head, then each chained buffer as
    /// [`FragList`] makes it a fragment, each sent as it is made; a failed
    /// fragment frees the ones not sent (`kfree_skb_list`).
    #[inline(always)]
    fn fraglist(
        &mut self,
        mut head: PacketBuf,
        hlen: usize,
        optlen: usize,
        more: bool,
    ) -> Result<(), SendError> {
        let key = head.meta.tskey;
        let mut list = FragList::new();
        let mut rest = list.init(&mut head, hlen, optlen);
        let n = rest.len();
        fate::made_n(key, n as u32);
        let len = head.len();
        let mut r = self.finish_output2(head, len, true);
        let mut frags = rest.drain(..);
        let mut k = 0;
        while r.is_ok() {
            self.count.frag_creates += 1;
            let Some(mut f) = frags.next() else {
                break;
            };
            k += 1;
            let len = list.prepare(&mut f, k == n);
            r = self.finish_output2(f, len, k < n || more);
        }
        let unsent = frags.len() as u64;
        drop(frags);
        if self.spare_chain.capacity() == 0 {
            self.spare_chain = rest;
        } else {
            self.stack.pool.put_chain(rest);
        }
        match r {
            Ok(()) => self.count.frag_oks += 1,
            Err(_) => {
                self.stack
                    .counters
                    .drop_n_at(DropSite::FragListRest, unsent);
                fate::dropped(key, DropReason::NotSpecified);
                self.count.frag_fails += 1;
            }
        }
        r
    }

    /// A datagram that may not be fragmented: `IpFragFails`, `PKT_TOO_BIG`.
    #[cold]
    fn frag_failed(&mut self, e: SendError) -> SendError {
        self.count.frag_fails += 1;
        self.stack.counters.drop_at(DropSite::FragTooBig);
        e
    }

    /// Kernel: `ip_finish_output2()` and `neigh_output()`/`neigh_hh_output()`.
    /// Pushes the cached link header of the next hop and queues the frame on
    /// the device; without one (or with `MSG_CONFIRM`), the neighbour layer
    /// resolves.
    #[inline(always)]
    fn finish_output2(
        &mut self,
        mut pkt: PacketBuf,
        len: usize,
        more: bool,
    ) -> Result<(), SendError> {
        self.count.pkts += 1;
        self.count.octets += len as u64;
        let f = pkt.meta.ip_flags;
        if f.mcast | f.bcast {
            let c = if f.mcast {
                &mut self.count.mcast
            } else {
                &mut self.count.bcast
            };
            c.0 += 1;
            c.1 += len as u64;
        }
        match &self.hh {
            Some(hh) if !pkt.meta.confirm_neigh => push_link_header(&mut pkt, hh, self.hlen),
            _ => return self.resolve_output(pkt),
        }
        match self.xmit.xmit_sized(pkt, len + self.hlen, more) {
            Ok(()) => Ok(()),
            Err(e) => Err(xmit_error(e)),
        }
    }

    /// `neigh_output()` through resolution (or confirmation): the device's
    /// transmit batch is ended first (resolution may transmit an ARP
    /// request on the same queue).
    #[cold]
    fn resolve_output(&mut self, pkt: PacketBuf) -> Result<(), SendError> {
        self.xmit.end();
        crate::neigh::neigh_output(self.stack, &self.dst.dev, self.nexthop, pkt)
    }

    /// Ends the batch: the device's transmit batch ends (its bypass run
    /// given up, or run on for frames others queued meanwhile), the MIBs
    /// are added, and deferred transmit work that raised runs
    /// (`local_bh_enable`).
    pub fn finish(mut self) {
        let closed = self.xmit.is_begun();
        self.xmit.end();
        self.count.settle(self.stack);
        self.local_out_hooks = None;
        self.post_routing_hooks = None;
        let spare = std::mem::take(&mut self.spare_chain);
        if spare.capacity() != 0 {
            self.stack.pool.put_chain(spare);
        }
        if closed {
            softirq_on_exit(self.stack);
        }
    }
}

/// Kernel: `NF_DROP_GETERR()` in `nf_hook_slow()`: the send's error for a
/// hook's drop `v` of a datagram to `daddr` — `EPERM`, or the errno the
/// hook dropped with (a failed reroute's).
#[cold]
fn hook_error(v: Verdict, daddr: Ipv4Addr) -> SendError {
    use crate::error::Errno;
    use crate::route::RouteError;
    let e = match v {
        Verdict::DropErr(Errno::ENETUNREACH) => RouteError::NetUnreachable(daddr),
        Verdict::DropErr(Errno::EHOSTUNREACH) => RouteError::HostUnreachable(daddr),
        Verdict::DropErr(Errno::EACCES) => RouteError::Prohibited(daddr),
        Verdict::DropErr(Errno::EINVAL) => RouteError::Blackhole(daddr),
        _ => return SendError::Perm,
    };
    SendError::from_route(&e)
}

/// Kernel: the UFO branch of `__ip_append_data()` (before 4.14) and
/// `ip_finish_output_gso()`. Marks the datagram `pkt` of `len` bytes, over
/// `mtu`, to leave a UFO device whole, as one `SKB_GSO_UDP` packet whose
/// fragments carry `gso_size = (mtu - 20) & !7` data bytes (`maxfraglen -
/// fragheaderlen`; the segments then pass `skb_gso_validate_network_len`
/// by construction) — when it is a UDP datagram of a socket that sums
/// them ([`IpCbFlags::udp_dgram`](crate::buf::IpCbFlags::udp_dgram)),
/// may be fragmented (DF clear: `IP_PMTUDISC_DO`/`PROBE` datagrams keep
/// to the fragmenter, which refuses or fragments them as before) and has
/// no IP options (a UFO device copies every option into every fragment,
/// where `ip_fragment` blanks the uncopied ones after the first; ipxmit
/// keeps such datagrams on the fragmenter so their frames stay the
/// kernel's). Returns false, the datagram untouched, otherwise. Nothing
/// is counted here: the kernel's sending host counts no `IpFragOKs` or
/// `IpFragCreates` for a UFO datagram (the device or `skb_gso_segment`
/// cuts it, below IP), one `IpOutTransmits`, and the device one packet.
#[inline]
fn ufo_mark(pkt: &mut PacketBuf, len: usize, mtu: u32) -> bool {
    let ok = pkt.meta.ip_flags.udp_dgram
        && matches!(pkt.network_header_array::<HEADER_LEN>(),
            Some(h) if h[0] == 0x45 && h[6] & 0x40 == 0 && h[9] == 17);
    let seg = (mtu as usize).saturating_sub(HEADER_LEN) & !7;
    if !ok || seg == 0 {
        return false;
    }
    pkt.meta.gso_type = GsoType::Udp;
    pkt.meta.gso_size = seg as u16;
    pkt.meta.gso_segs = (len - HEADER_LEN).div_ceil(seg) as u16;
    true
}

/// `net_xmit_errno` of a device's refusal, out of the hot path.
#[cold]
fn xmit_error(e: crate::dev::queue::QueueXmitError) -> SendError {
    SendError::from(e)
}

impl From<FragError> for SendError {
    fn from(e: FragError) -> SendError {
        match e {
            FragError::NeedFrag { mtu } | FragError::MtuTooSmall { mtu, .. } => {
                SendError::MsgSize { mtu }
            }
            FragError::Malformed => SendError::Inval("malformed IPv4 header"),
        }
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
    /// `IP_TTL`: the TTL to write, or `None` for the route's `hoplimit`
    /// or `ip_default_ttl` (`ip_select_ttl()`).
    pub ttl: Option<u8>,
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
    build_queue_xmit_header(p, &dst, stack.default_ttl(), &mut skb, ident, saddr, daddr);
    skb.meta.ip_optlen = opt.len() as u8;
    skb.meta.use_dev_mtu = !p.pmtudisc.use_pmtu();
    skb.meta.priority = p.priority;
    skb.meta.mark = p.mark;
    skb.meta.dst = Some(dst);
    local_out(stack, skb)
}

/// The fields of an IPv4 header that a transport's socket gives it
/// (`__ip_make_skb`, `__ip_queue_xmit`); the total length and the checksum
/// are `ip_local_out`'s.
#[derive(Clone, Copy, Debug)]
pub struct HeaderFields<'a> {
    /// `IP_TOS`.
    pub tos: u8,
    /// The identification.
    pub ident: u16,
    /// Don't Fragment.
    pub df: bool,
    /// The TTL.
    pub ttl: u8,
    /// The transport protocol.
    pub protocol: u8,
    /// Source address.
    pub saddr: Ipv4Addr,
    /// Destination address of the header (a source route's first hop).
    pub daddr: Ipv4Addr,
    /// The options, and the final destination a source route's last slot
    /// gets.
    pub options: &'a IpOptions,
    /// The destination the user named.
    pub final_daddr: Ipv4Addr,
}

/// Kernel: the `iph->...` stores of `__ip_make_skb()` and
/// `__ip_queue_xmit()`, and `ip_options_build()`: writes the header of
/// `20 + options` bytes at the start of `h` through the [`Ipv4Packet`]
/// view (total length and checksum left to `ip_local_out`).
pub fn build_header(h: &mut [u8], f: &HeaderFields<'_>) {
    let hlen = HEADER_LEN + f.options.len();
    let mut ip = Ipv4Packet::new_unchecked(&mut h[..hlen]);
    ip.set_version(4);
    ip.set_header_len(hlen);
    ip.set_tos(f.tos);
    ip.set_ident(f.ident);
    ip.set_frag_word(if f.df { FLAG_DF } else { 0 });
    ip.set_ttl(f.ttl);
    ip.set_protocol(IpProtocol(f.protocol));
    ip.set_src_addr(f.saddr);
    ip.set_dst_addr(f.daddr);
    if !f.options.is_empty() {
        let now = if f.options.ts_needtime {
            options::current_timestamp()
        } else {
            0
        };
        options::build(ip.into_inner(), f.options, f.final_daddr, f.saddr, now);
    }
}

/// The header `__ip_queue_xmit` pushes: DF from the PMTU mode, the ID,
/// TTL, TOS, options built.
fn build_queue_xmit_header(
    p: &XmitParams<'_>,
    dst: &Dst,
    default_ttl: u8,
    skb: &mut PacketBuf,
    ident: u16,
    saddr: Ipv4Addr,
    daddr: Ipv4Addr,
) {
    let hlen = HEADER_LEN + p.options.len();
    let df = p.pmtudisc.dont_fragment_on(dst) && !skb.meta.ip_flags.ignore_df;
    skb.push(hlen);
    skb.reset_network_header();
    let fields = HeaderFields {
        tos: p.tos,
        ident,
        df,
        ttl: p.ttl.or(dst.hoplimit).unwrap_or(default_ttl),
        protocol: p.protocol,
        saddr,
        daddr,
        options: p.options,
        final_daddr: p.peer,
    };
    build_header(skb.network_header_mut(), &fields);
}

/// What `dst_output()` would do with a datagram's first frame `first` of
/// flow hash `hash` going out by `dst`, without sending it: the device
/// layer's answer ([`crate::dev::queue::xmit_plan`]), for `ipxmit explain`;
/// `recorded` is a connected socket's recorded transmit queue.
pub fn plan_xmit(dst: &Dst, hash: u32, first: &PacketBuf, recorded: Option<usize>) -> QdiscPlan {
    crate::dev::queue::xmit_plan(&dst.dev, hash, first, recorded)
}

/// The copy `ip_mc_output()` loops to the host (`skb_clone()`): the
/// datagram's bytes with room for a link header, a checksum left to the
/// device completed (the kernel marks the clone `CHECKSUM_UNNECESSARY`),
/// no socket, no fate of its own.
fn loop_copy(pkt: &PacketBuf, pool: &crate::buf::BufPool) -> PacketBuf {
    let hlen = crate::wire::ethernet::HEADER_LEN;
    let mut copy = pool.alloc(hlen + pkt.len());
    copy.reserve(hlen);
    pkt.copy_to(copy.put(pkt.len()));
    copy.reset_network_header();
    if let CsumState::Partial { start, offset } = pkt.meta.ip_summed {
        let at = usize::from(start) - pkt.data_offset() + copy.data_offset();
        copy.meta.ip_summed = CsumState::Partial {
            start: at as u16,
            offset,
        };
        crate::offload::checksum_help(&mut copy);
    }
    copy.meta.ip_flags = pkt.meta.ip_flags;
    copy
}

/// Kernel: `dev_loopback_xmit()`'s frame as ipxmit's receive path takes
/// it: the Ethernet header `dev` would give the datagram (the group's
/// address or the broadcast one).
fn push_loop_header(copy: &mut PacketBuf, dev: &NetDevice) {
    let daddr = copy.network_header_array::<20>().map_or([0; 4], |h| {
        let mut a = [0; 4];
        a.copy_from_slice(&h[16..20]);
        a
    });
    let dst_mac = match copy.meta.ip_flags.mcast {
        true => crate::wire::EthernetAddress([0x01, 0, 0x5e, daddr[1] & 0x7f, daddr[2], daddr[3]]),
        false => crate::wire::EthernetAddress::BROADCAST,
    };
    let h = copy.push(crate::wire::ethernet::HEADER_LEN);
    h[..6].copy_from_slice(&dst_mac.0);
    h[6..12].copy_from_slice(&dev.hw_addr().0);
    h[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
}
