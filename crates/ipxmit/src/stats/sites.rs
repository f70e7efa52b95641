//! Drop sites: every place ipxmit frees a packet (or a fragment) without
//! sending it, each with its reason, the ipxmit function and the kernel
//! function it mirrors.
//!
//! Stands for what `dropwatch` (and `perf script` on `skb:kfree_skb`)
//! shows: the `kfree_skb_reason()` calls of the kernel, named by the
//! function that made them (the tracepoint's `location`) and the
//! `enum skb_drop_reason` (`include/net/dropreason-core.h`) they pass.
//! Each site has one reason; a drop counted at a site counts under its
//! reason too ([`crate::stats::Counters::drop_at`]), so a reason's count
//! is the sum of its sites' (and of drops counted by reason alone, which
//! no site of ipxmit's own makes: `tests/drop_sites.rs` walks them). The
//! transmit path's sites come first, then the receive side's.

use super::DropReason;

macro_rules! drop_sites {
    ($($(#[$m:meta])* $v:ident => ($r:ident, $f:literal, $k:literal),)*) => {
        /// A place where a packet is freed without being sent; see the
        /// module documentation.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum DropSite { $($(#[$m])* $v,)* }

        impl DropSite {
            /// Every site, in declaration order (the packet's way down,
            /// then the receive side).
            pub const ALL: &'static [DropSite] = &[$(DropSite::$v,)*];

            /// The drop reason the site gives.
            pub const fn reason(self) -> DropReason {
                match self { $(DropSite::$v => DropReason::$r,)* }
            }

            /// The ipxmit function that drops there (module path).
            pub const fn function(self) -> &'static str {
                match self { $(DropSite::$v => $f,)* }
            }

            /// The kernel function whose `kfree_skb` it mirrors.
            pub const fn kernel(self) -> &'static str {
                match self { $(DropSite::$v => $k,)* }
            }
        }
    };
}

drop_sites! {
    /// `__ip_append_data` refuses a datagram over the MTU with DF (no
    /// buffer yet; counted as the kernel's tools would see the datagram).
    CorkTooBig => (PktTooBig, "socket::cork::Cork::append", "__ip_append_data()"),
    /// A packet handed to IP output without a route.
    OutputNoRoute => (IpOutNoRoutes, "ipv4::output::dst_of", "__ip_queue_xmit()"),
    /// A LOCAL_OUT or POST_ROUTING rule returned DROP.
    HookDrop => (NetfilterDrop, "ipv4::output::OutputBatch::filter", "nf_hook_slow()"),
    /// Over the MTU and not to be fragmented (DF, or `frag_max_size`).
    FragTooBig => (PktTooBig, "ipv4::output::OutputBatch::frag_failed", "ip_fragment()"),
    /// The fragments not yet sent when one failed (slow path).
    FragSlowRest => (NotSpecified, "ipv4::output::OutputBatch::fragment", "ip_do_fragment()"),
    /// The fragments not yet sent when one failed (fast path).
    FragListRest => (NotSpecified, "ipv4::output::OutputBatch::fraglist", "ip_do_fragment()"),
    /// The neighbour's queue of packets awaiting resolution overflowed:
    /// the oldest goes.
    NeighQueueFull => (NeighQueueFull, "neigh::Neighbour::event_send", "__neigh_event_send()"),
    /// Resolution failed: the queued packets go.
    NeighFailed => (NeighFailed, "neigh::invalidate", "neigh_invalidate()"),
    /// The neighbour entry was deleted with packets queued on it.
    NeighDead => (NeighDead, "stack::Stack::del_neigh", "neigh_flush_dev()"),
    /// No headroom for the link header of a released packet.
    NeighNoHeadroom => (NoMem, "neigh::arp::xmit_with", "neigh_resolve_output()"),
    /// A netdev `egress` rule returned DROP (the frame: a fragment drops
    /// alone, and its datagram's rest is not made).
    EgressHookDrop => (NetfilterDrop, "dev::batch::XmitBatch::egress_drop", "nf_hook_slow()"),
    /// The device is down.
    DevDown => (DevReady, "dev::batch::XmitBatch::xmit_other", "__dev_queue_xmit()"),
    /// A queueless device whose queue is stopped.
    NoqueueStopped => (DevReady, "dev::batch::XmitBatch::noqueue", "__dev_queue_xmit()"),
    /// A queueless device's driver refused the frame (or an earlier
    /// segment of it).
    NoqueueBusy => (DevReady, "dev::batch::XmitBatch::noqueue_segments", "__dev_queue_xmit()"),
    /// A qdisc refused the packet, or dropped one it held, over its limit.
    QdiscDrop => (QdiscDrop, "sched::Qdisc::enqueue", "qdisc_drop()"),
    /// A qdisc over its own packet limit (codel, fq_codel, fq, sfq).
    QdiscOverlimit => (QdiscOverlimit, "sched::Qdisc::enqueue", "qdisc_drop_reason()"),
    /// An AQM dropped for a standing queue (codel, fq_codel, red).
    QdiscCongested => (QdiscCongested, "sched::Qdisc::dequeue", "qdisc_drop_reason()"),
    /// A qdisc reset, replaced or deleted with packets in it.
    QueuePurge => (QueuePurge, "sched::Qdisc::reset", "qdisc_reset()"),
    /// Software segmentation failed.
    GsoSegFail => (SkbGsoSeg, "dev::xmit::validate_xmit", "validate_xmit_skb()"),
    /// The driver failed the frame.
    DriverError => (FullRing, "dev::xmit::xmit_one", "ndo_start_xmit()"),
    /// The device dropped a frame after its driver took it
    /// ([`crate::dev::TxQueueCtl::late_drop`]): a ring driver saw the
    /// kernel drop or skip it.
    DriverLateDrop => (DriverLateDrop, "dev::TxQueueCtl::late_drop", "dev_core_stats_tx_dropped_inc()"),
    /// `lo`'s receive backlog was full.
    Backlog => (CpuBacklog, "dev::loopback::LoopbackDrops::settle", "enqueue_to_backlog()"),
    /// Received: a frame for another host's link address.
    RcvOtherHost => (OtherHost, "ipv4::input::rcv", "ip_rcv_core()"),
    /// Received: a malformed IP header (length, version, IHL).
    RcvHeader => (IpInhdr, "ipv4::input::rcv", "ip_rcv_core()"),
    /// Received: a bad IP header checksum.
    RcvChecksum => (IpCsum, "ipv4::input::rcv", "ip_rcv_core()"),
    /// Received: shorter than its total length.
    RcvTruncated => (PktTooSmall, "ipv4::input::rcv", "ip_rcv_core()"),
    /// Received: a fragment (ipxmit does not reassemble).
    RcvFragment => (FragReasmTimeout, "ipv4::input::rcv", "ip_expire()"),
    /// Received: a martian source.
    RcvMartian => (IpInvalidSource, "ipv4::input::route_input", "ip_route_input_slow()"),
    /// Received: for a multicast group the host is not in.
    RcvNoGroup => (NotSpecified, "ipv4::input::route_input", "ip_route_input_mc()"),
    /// Received: for 0/8 (or a loopback address off `lo`).
    RcvBadDest => (NotSpecified, "ipv4::input::route_input", "ip_route_input_slow()"),
    /// Received: for an address not the host's, forwarding off.
    RcvNotLocal => (IpInaddrErrors, "ipv4::input::route_input", "ip_error()"),
    /// Received: a protocol no one handles.
    RcvNoProto => (IpNoproto, "stack::Stack::local_deliver", "ip_protocol_deliver_rcu()"),
    /// Received ICMP: shorter than its header.
    IcmpShort => (NotSpecified, "ipv4::icmp::rcv", "icmp_rcv()"),
    /// Received ICMP: a bad checksum.
    IcmpChecksum => (IcmpCsum, "ipv4::icmp::rcv", "icmp_rcv()"),
    /// Received ICMP: a type beyond those the kernel knows.
    IcmpType => (UnhandledProto, "ipv4::icmp::rcv", "icmp_rcv()"),
    /// Received ICMP: to a broadcast or multicast address.
    IcmpBroadcast => (NotSpecified, "ipv4::icmp::rcv", "icmp_rcv()"),
    /// Received ICMP error: no room for the quoted header.
    IcmpShortQuote => (NotSpecified, "ipv4::icmp::unreach", "icmp_unreach()"),
    /// Received ICMP error: the quoted header's IHL is below 5.
    IcmpQuoteHeader => (IpInhdr, "ipv4::icmp::unreach", "icmp_unreach()"),
    /// Received UDP: shorter than its header or length.
    UdpShort => (PktTooSmall, "socket::udp::input::rcv", "__udp4_lib_rcv()"),
    /// Received UDP: a bad checksum.
    UdpChecksum => (UdpCsum, "socket::udp::input::rcv", "__udp4_lib_rcv()"),
    /// Received UDP: no socket holds the port.
    UdpNoSocket => (NoSocket, "socket::udp::input::rcv", "__udp4_lib_rcv()"),
    /// Received UDP: the socket's receive buffer is full.
    UdpRcvbuf => (SocketRcvbuff, "socket::udp::input::queue", "__udp_queue_rcv_skb()"),
}

impl DropSite {
    /// The site where a qdisc's drop of `reason` (its `to_free` list) is
    /// counted; `None` for a reason no qdisc gives.
    pub const fn of_qdisc(reason: DropReason) -> Option<DropSite> {
        match reason {
            DropReason::QdiscDrop => Some(DropSite::QdiscDrop),
            DropReason::QdiscOverlimit => Some(DropSite::QdiscOverlimit),
            DropReason::QdiscCongested => Some(DropSite::QdiscCongested),
            DropReason::QueuePurge => Some(DropSite::QueuePurge),
            _ => None,
        }
    }

    /// The site of a neighbour's drop of `reason`; `None` for a reason
    /// the neighbour layer does not give.
    pub const fn of_neigh(reason: DropReason) -> Option<DropSite> {
        match reason {
            DropReason::NeighQueueFull => Some(DropSite::NeighQueueFull),
            DropReason::NeighFailed => Some(DropSite::NeighFailed),
            DropReason::NeighDead => Some(DropSite::NeighDead),
            _ => None,
        }
    }

    /// True for a site on the way out above the device layer (the socket,
    /// IP output, its hooks, the neighbour layer): a packet dropped there
    /// has no link header yet and never met a qdisc.
    pub const fn above_device(self) -> bool {
        matches!(
            self,
            DropSite::CorkTooBig
                | DropSite::OutputNoRoute
                | DropSite::HookDrop
                | DropSite::FragTooBig
                | DropSite::FragSlowRest
                | DropSite::FragListRest
                | DropSite::NeighQueueFull
                | DropSite::NeighFailed
                | DropSite::NeighDead
                | DropSite::NeighNoHeadroom
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_site_names_its_reason_and_functions() {
        for &s in DropSite::ALL {
            assert!(s.kernel().ends_with("()"), "{s:?}");
            assert!(s.function().contains("::"), "{s:?}");
        }
        assert_eq!(DropSite::HookDrop.reason().name(), "NETFILTER_DROP");
        assert_eq!(
            DropSite::of_qdisc(DropReason::QueuePurge),
            Some(DropSite::QueuePurge)
        );
        assert_eq!(DropSite::of_qdisc(DropReason::NeighDead), None);
    }
}
