//! Counters: the SNMP MIBs (`nstat`), drop reasons and device statistics.
//!
//! Stands for the kernel's `IP_INC_STATS`/`UDP_INC_STATS` MIB counters
//! (`include/net/snmp.h`, shown by `nstat` as `IpOutRequests`, ...), the drop
//! reasons of `enum skb_drop_reason` (`include/net/dropreason-core.h`), and
//! `struct rtnl_link_stats64` (shown by `ip -s link`).
//!
//! Every packet that enters the stack is either handed to a driver or dropped
//! under exactly one [`DropReason`], so `sent + sum(dropped) = submitted` can be
//! checked.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

pub mod fate;
mod sites;
pub use sites::DropSite;

macro_rules! counter_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $v,)* }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$v,)*];

            /// The name the kernel's tools print.
            pub const fn name(self) -> &'static str {
                match self { $($name::$v => $s,)* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

counter_enum! {
    /// An SNMP MIB counter, named as `nstat` prints it, in `nstat`'s order
    /// (`/proc/net/snmp`'s `Ip:` and `Udp:` lines, then `/proc/net/netstat`'s
    /// `IpExt:`), so a listing of [`Mib::ALL`] is a subsequence of `nstat -az`.
    Mib {
        /// Datagrams received, before any check (`IPSTATS_MIB_INRECEIVES`).
        IpInReceives => "IpInReceives",
        /// Datagrams discarded for a header error: version, header length,
        /// checksum, total length (`IPSTATS_MIB_INHDRERRORS`).
        IpInHdrErrors => "IpInHdrErrors",
        /// Datagrams for an address not this host's, not forwarded
        /// (forwarding off: `IPSTATS_MIB_INADDRERRORS`).
        IpInAddrErrors => "IpInAddrErrors",
        /// Datagrams of a protocol the host does not handle
        /// (`IPSTATS_MIB_INUNKNOWNPROTOS`).
        IpInUnknownProtos => "IpInUnknownProtos",
        /// Received datagrams discarded for lack of resources
        /// (`IPSTATS_MIB_INDISCARDS`).
        IpInDiscards => "IpInDiscards",
        /// Datagrams handed to a transport protocol (`IPSTATS_MIB_INDELIVERS`).
        IpInDelivers => "IpInDelivers",
        /// Datagrams handed to IP for transmission (`IPSTATS_MIB_OUTREQUESTS`).
        IpOutRequests => "IpOutRequests",
        /// Datagrams discarded on output for lack of resources (`OUTDISCARDS`).
        IpOutDiscards => "IpOutDiscards",
        /// Datagrams dropped because no route was found (`OUTNOROUTES`).
        IpOutNoRoutes => "IpOutNoRoutes",
        /// Fragments received that need reassembly (`IPSTATS_MIB_REASMREQDS`).
        IpReasmReqds => "IpReasmReqds",
        /// Datagrams successfully fragmented (`FRAGOKS`).
        IpFragOKs => "IpFragOKs",
        /// Datagrams that needed fragmenting but could not be (`FRAGFAILS`).
        IpFragFails => "IpFragFails",
        /// Fragments created (`FRAGCREATES`).
        IpFragCreates => "IpFragCreates",
        /// Packets passed to the device layer (`IPSTATS_MIB_OUTPKTS`, which
        /// `nstat` shows as `IpOutTransmits`).
        IpOutTransmits => "IpOutTransmits",
        /// ICMP messages received, bad ones included (`ICMP_MIB_INMSGS`).
        IcmpInMsgs => "IcmpInMsgs",
        /// ICMP messages received with an error: bad checksum, too short, an
        /// error for no socket (`ICMP_MIB_INERRORS`).
        IcmpInErrors => "IcmpInErrors",
        /// ICMP messages received with a bad checksum (`ICMP_MIB_CSUMERRORS`).
        IcmpInCsumErrors => "IcmpInCsumErrors",
        /// Destination unreachable messages received (`/proc/net/snmp`
        /// derives it from the `IcmpMsg` type 3 count).
        IcmpInDestUnreachs => "IcmpInDestUnreachs",
        /// ICMP messages sent (`ICMP_MIB_OUTMSGS`).
        IcmpOutMsgs => "IcmpOutMsgs",
        /// ICMP errors the host-wide rate limit refused
        /// (`ICMP_MIB_RATELIMITGLOBAL`).
        IcmpOutRateLimitGlobal => "IcmpOutRateLimitGlobal",
        /// ICMP errors a destination's rate limit refused
        /// (`ICMP_MIB_RATELIMITHOST`).
        IcmpOutRateLimitHost => "IcmpOutRateLimitHost",
        /// Destination unreachable messages sent.
        IcmpOutDestUnreachs => "IcmpOutDestUnreachs",
        /// ICMP type 3 messages received (`ICMPMSG_MIB_INTYPE3`; nstat's
        /// `IcmpMsgInType3`).
        IcmpMsgInType3 => "IcmpMsgInType3",
        /// ICMP type 3 messages sent (`IcmpMsgOutType3`).
        IcmpMsgOutType3 => "IcmpMsgOutType3",
        /// UDP datagrams read by a socket (`UDP_MIB_INDATAGRAMS`, counted
        /// at `recvmsg` as the kernel does).
        UdpInDatagrams => "UdpInDatagrams",
        /// UDP datagrams for a port no socket holds (`UDP_MIB_NOPORTS`).
        UdpNoPorts => "UdpNoPorts",
        /// UDP datagrams received and dropped: too short, bad checksum, a
        /// full receive buffer (`UDP_MIB_INERRORS`).
        UdpInErrors => "UdpInErrors",
        /// UDP datagrams sent (`UDP_MIB_OUTDATAGRAMS`).
        UdpOutDatagrams => "UdpOutDatagrams",
        /// UDP datagrams dropped for a full receive buffer (`UDP_MIB_RCVBUFERRORS`).
        UdpRcvbufErrors => "UdpRcvbufErrors",
        /// UDP sends that failed for lack of send buffer (`UDP_MIB_SNDBUFERRORS`).
        UdpSndbufErrors => "UdpSndbufErrors",
        /// UDP datagrams received with a bad checksum (`UDP_MIB_CSUMERRORS`).
        UdpInCsumErrors => "UdpInCsumErrors",
        /// Broadcast UDP datagrams no socket took (`UDP_MIB_IGNOREDMULTI`).
        UdpIgnoredMulti => "UdpIgnoredMulti",
        /// Datagrams shorter than their total length says
        /// (`IPSTATS_MIB_INTRUNCATEDPKTS`).
        IpExtInTruncatedPkts => "IpExtInTruncatedPkts",
        /// Multicast datagrams received (`IPSTATS_MIB_INMCAST`).
        IpExtInMcastPkts => "IpExtInMcastPkts",
        /// Multicast packets sent (`IPSTATS_MIB_OUTMCAST`).
        IpExtOutMcastPkts => "IpExtOutMcastPkts",
        /// Broadcast datagrams received (`IPSTATS_MIB_INBCAST`).
        IpExtInBcastPkts => "IpExtInBcastPkts",
        /// Broadcast packets sent (`IPSTATS_MIB_OUTBCAST`).
        IpExtOutBcastPkts => "IpExtOutBcastPkts",
        /// Octets received (`IPSTATS_MIB_INOCTETS`).
        IpExtInOctets => "IpExtInOctets",
        /// Octets passed to the device layer (`IPSTATS_MIB_OUTOCTETS`).
        IpExtOutOctets => "IpExtOutOctets",
        /// Octets of received multicast (`IPSTATS_MIB_INMCASTOCTETS`).
        IpExtInMcastOctets => "IpExtInMcastOctets",
        /// Octets of multicast sent (`IPSTATS_MIB_OUTMCASTOCTETS`).
        IpExtOutMcastOctets => "IpExtOutMcastOctets",
        /// Octets of received broadcast (`IPSTATS_MIB_INBCASTOCTETS`).
        IpExtInBcastOctets => "IpExtInBcastOctets",
        /// Octets of broadcast sent (`IPSTATS_MIB_OUTBCASTOCTETS`).
        IpExtOutBcastOctets => "IpExtOutBcastOctets",
        /// Datagrams received with a bad header checksum
        /// (`IPSTATS_MIB_CSUMERRORS`).
        IpExtInCsumErrors => "IpExtInCsumErrors",
    }
}

counter_enum! {
    /// Why a packet was dropped (the kernel's `enum skb_drop_reason`).
    DropReason {
        /// `SKB_DROP_REASON_NOT_SPECIFIED`.
        NotSpecified => "NOT_SPECIFIED",
        /// A filter hook returned DROP (`NETFILTER_DROP`).
        NetfilterDrop => "NETFILTER_DROP",
        /// No route to the destination (`IP_OUTNOROUTES`).
        IpOutNoRoutes => "IP_OUTNOROUTES",
        /// Larger than the MTU with DF set (`PKT_TOO_BIG`).
        PktTooBig => "PKT_TOO_BIG",
        /// Dropped by a queueing discipline (`QDISC_DROP`).
        QdiscDrop => "QDISC_DROP",
        /// Refused by a qdisc over its limit (`QDISC_OVERLIMIT`: codel,
        /// fq_codel).
        QdiscOverlimit => "QDISC_OVERLIMIT",
        /// Dropped by an AQM for a standing queue (`QDISC_CONGESTED`:
        /// CoDel).
        QdiscCongested => "QDISC_CONGESTED",
        /// Neighbour resolution failed (`NEIGH_FAILED`).
        NeighFailed => "NEIGH_FAILED",
        /// The unresolved-neighbour queue was full (`NEIGH_QUEUEFULL`).
        NeighQueueFull => "NEIGH_QUEUEFULL",
        /// The neighbour entry was removed (`NEIGH_DEAD`).
        NeighDead => "NEIGH_DEAD",
        /// No buffer memory (`NOMEM`).
        NoMem => "NOMEM",
        /// The device is down (`DEV_READY`).
        DevReady => "DEV_READY",
        /// The driver failed to transmit (`FULL_RING` / driver error).
        FullRing => "FULL_RING",
        /// The device dropped a frame after its driver had taken it
        /// (ipxmit's own name: the kernel has no reason for it, as the
        /// frame's `kfree_skb` is the driver's own; it shows in the
        /// device's `tx_dropped`).
        DriverLateDrop => "DRIVER_LATE_DROP",
        /// Segmentation or checksum help failed (`SKB_CSUM`/`SKB_GSO_SEG`).
        SkbGsoSeg => "SKB_GSO_SEG",
        /// The queue was reset or destroyed with the packet in it (`QUEUE_PURGE`).
        QueuePurge => "QUEUE_PURGE",
        /// A received frame for another host's link address (`OTHERHOST`).
        OtherHost => "OTHERHOST",
        /// A received IP header that is malformed (`IP_INHDR`).
        IpInhdr => "IP_INHDR",
        /// A received IP header with a bad checksum (`IP_CSUM`).
        IpCsum => "IP_CSUM",
        /// A received packet shorter than its headers say (`PKT_TOO_SMALL`).
        PktTooSmall => "PKT_TOO_SMALL",
        /// A received datagram for an address not this host's, forwarding
        /// off (`IP_INADDRERRORS`).
        IpInaddrErrors => "IP_INADDRERRORS",
        /// A received datagram the input route refused: a martian source
        /// (`IP_INVALID_SOURCE`).
        IpInvalidSource => "IP_INVALID_SOURCE",
        /// A received datagram of a protocol no one handles (`IP_NOPROTO`).
        IpNoproto => "IP_NOPROTO",
        /// A received fragment: ipxmit does not reassemble (the kernel's
        /// queue would time out, `FRAG_REASM_TIMEOUT`).
        FragReasmTimeout => "FRAG_REASM_TIMEOUT",
        /// A received ICMP message with a bad checksum (`ICMP_CSUM`).
        IcmpCsum => "ICMP_CSUM",
        /// A received UDP datagram with a bad checksum (`UDP_CSUM`).
        UdpCsum => "UDP_CSUM",
        /// A received UDP datagram for a port no socket holds (`NO_SOCKET`).
        NoSocket => "NO_SOCKET",
        /// A socket's receive buffer was full (`SOCKET_RCVBUFF`).
        SocketRcvbuff => "SOCKET_RCVBUFF",
        /// The receive backlog (`netdev_max_backlog`) was full (`CPU_BACKLOG`).
        CpuBacklog => "CPU_BACKLOG",
        /// An ICMP type beyond those the kernel knows (`UNHANDLED_PROTO`).
        UnhandledProto => "UNHANDLED_PROTO",
    }
}

counter_enum! {
    /// Which way the messages of `UdpSocket::send_batch` went (ipxmit's own
    /// counters; the kernel's `sendmmsg` has one way only). `OnePass`
    /// messages were built in one pass and went down the output path with
    /// their run's batch; the others were each sent through `sendmsg` (the
    /// cork), one call's context each, for the reason named. Every message
    /// is counted once, whatever came of it.
    BatchPath {
        /// Built in one pass and sent with its run.
        OnePass => "OnePass",
        /// A datagram was pending (`MSG_MORE` from an earlier call) or
        /// `UDP_CORK` is set: appended to it.
        Pending => "Pending",
        /// The socket has IP options (`IP_OPTIONS`).
        Options => "Options",
        /// The socket segments (`UDP_SEGMENT`).
        Gso => "Gso",
        /// `SO_NO_CHECK` is set.
        NoCheck => "NoCheck",
        /// A flag besides `MSG_DONTWAIT`/`MSG_MORE` (`MSG_PROBE`,
        /// `MSG_CONFIRM`, `MSG_ZEROCOPY`).
        Flags => "Flags",
        /// No destination, port 0, or over 65535 bytes: `sendmsg` reports it.
        Invalid => "Invalid",
        /// A transform (`dst->header_len`) or a buffer beyond the largest
        /// linear allocation (the cork's paged layout).
        Layout => "Layout",
        /// A datagram over the MTU the one-pass build does not cut: DF, a
        /// fragment size other than `ip_fragment`'s, a corked datagram on
        /// an MTU whose data space is not a multiple of 8, or a corked
        /// group whose flags or destination differ within it.
        Fragments => "Fragments",
        /// The send budget would make it wait or fail (`SO_SNDBUF`).
        SendBuffer => "SendBuffer",
    }
}

const N_MIB: usize = Mib::ALL.len();
const N_DROP: usize = DropReason::ALL.len();
const N_PATH: usize = BatchPath::ALL.len();
const N_SITE: usize = DropSite::ALL.len();

/// Threads with a shard of their own; more threads alive at once share one.
pub const SHARDS: usize = 32;

/// Counters split per thread, like the kernel's per-CPU MIBs (`this_cpu_inc`):
/// a thread whose number ([`crate::cpu::current`], dense among the live
/// threads and reused after a thread exits) is below [`SHARDS`] (or the
/// count given to [`Sharded::with_owners`]) owns a cache
/// line of its own and updates it with a plain load and store (no locked
/// instruction); the others share one more shard and use atomic adds.
/// Readers sum the shards. (A number passes to a new thread only through
/// the exit of the old one, which happens before: the shard never has two
/// writers at once.)
pub struct Sharded<const N: usize> {
    shards: Box<[Shard<N>]>,
}

#[repr(align(128))]
struct Shard<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for Sharded<N> {
    fn default() -> Self {
        Sharded::with_owners(SHARDS)
    }
}

impl<const N: usize> fmt::Debug for Sharded<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries((0..N).map(|i| self.get(i))).finish()
    }
}

impl<const N: usize> Sharded<N> {
    /// Counters whose first `owners` threads (at most [`SHARDS`]) have a
    /// shard of their own; the others share one more.
    pub fn with_owners(owners: usize) -> Self {
        Sharded {
            shards: (0..=owners.min(SHARDS))
                .map(|_| Shard(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }

    /// Adds `n` to counter `i`.
    #[inline]
    pub fn add(&self, i: usize, n: u64) {
        let t = crate::cpu::current();
        let shared = self.shards.len() - 1;
        if t < shared {
            let c = &self.shards[t].0[i];
            c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
        } else {
            self.shards[shared].0[i].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Adds `n` to counter `i` for each `(i, n)` of `adds`, the thread's
    /// shard found once for all of them (as [`Sharded::add`] for each).
    #[inline]
    pub fn add_each<const K: usize>(&self, adds: [(usize, u64); K]) {
        let t = crate::cpu::current();
        let shared = self.shards.len() - 1;
        if t < shared {
            let s = &self.shards[t].0;
            for (i, n) in adds {
                s[i].store(
                    s[i].load(Ordering::Relaxed).wrapping_add(n),
                    Ordering::Relaxed,
                );
            }
        } else {
            for (i, n) in adds {
                self.shards[shared].0[i].fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// The sum of counter `i` over all threads.
    pub fn get(&self, i: usize) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0[i].load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }
}

/// The stack's MIB and drop counters.
#[derive(Debug, Default)]
pub struct Counters {
    mib: Sharded<N_MIB>,
    drops: Sharded<N_DROP>,
    paths: Sharded<N_PATH>,
    sites: Sharded<N_SITE>,
}

impl Counters {
    /// Adds `n` to a MIB counter.
    #[inline]
    pub fn add(&self, m: Mib, n: u64) {
        self.mib.add(m as usize, n);
    }

    /// Adds one to a MIB counter.
    #[inline]
    pub fn inc(&self, m: Mib) {
        self.add(m, 1);
    }

    /// Counts one dropped packet under `reason` (and fires `kfree_skb`,
    /// with the caller as its location).
    #[inline]
    #[track_caller]
    pub fn drop(&self, reason: DropReason) {
        self.drop_n(reason, 1);
    }

    /// Counts `n` dropped packets under `reason`; fires one `kfree_skb`
    /// event for them (the kernel fires one per buffer).
    #[inline]
    #[track_caller]
    pub fn drop_n(&self, reason: DropReason, n: u64) {
        self.drops.add(reason as usize, n);
        if tracing::level_enabled!(tracing::Level::INFO) {
            kfree_skb(reason, n, std::panic::Location::caller());
        }
    }

    /// Counts one packet dropped at `site`, under its reason (and fires
    /// `kfree_skb` with the caller as its location).
    #[inline]
    #[track_caller]
    pub fn drop_at(&self, site: DropSite) {
        self.drop_n_at(site, 1);
    }

    /// Counts `n` packets dropped at `site`, under its reason.
    #[inline]
    #[track_caller]
    pub fn drop_n_at(&self, site: DropSite, n: u64) {
        self.sites.add(site as usize, n);
        self.drop_n(site.reason(), n);
    }

    /// Packets dropped at `site`.
    pub fn dropped_at(&self, site: DropSite) -> u64 {
        self.sites.get(site as usize)
    }

    /// Every drop site with its count, in declaration order.
    pub fn site_snapshot(&self) -> Vec<(DropSite, u64)> {
        DropSite::ALL
            .iter()
            .map(|&s| (s, self.dropped_at(s)))
            .collect()
    }

    /// Counts `n` messages of `send_batch` that went the way `p`.
    #[inline]
    pub fn batch_path_add(&self, p: BatchPath, n: u64) {
        self.paths.add(p as usize, n);
    }

    /// Messages of `send_batch` that went the way `p`.
    pub fn batch_path(&self, p: BatchPath) -> u64 {
        self.paths.get(p as usize)
    }

    /// All `send_batch` path counters with their values.
    pub fn batch_path_snapshot(&self) -> Vec<(BatchPath, u64)> {
        BatchPath::ALL
            .iter()
            .map(|&p| (p, self.batch_path(p)))
            .collect()
    }

    /// A MIB counter's value.
    pub fn get(&self, m: Mib) -> u64 {
        self.mib.get(m as usize)
    }

    /// Packets dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops.get(reason as usize)
    }

    /// Packets dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        DropReason::ALL.iter().map(|&r| self.dropped(r)).sum()
    }

    /// All MIB counters with their values, in declaration order.
    pub fn mib_snapshot(&self) -> Vec<(Mib, u64)> {
        Mib::ALL.iter().map(|&m| (m, self.get(m))).collect()
    }

    /// All drop counters with their values, in declaration order.
    pub fn drop_snapshot(&self) -> Vec<(DropReason, u64)> {
        DropReason::ALL
            .iter()
            .map(|&r| (r, self.dropped(r)))
            .collect()
    }
}

/// Tracepoint `kfree_skb` (`include/trace/events/skb.h`): `packets`
/// dropped for `reason` at `location` (the kernel's is the caller's
/// address; here the source line that counted the drop).
#[cold]
#[inline(never)]
fn kfree_skb(reason: DropReason, packets: u64, location: &'static std::panic::Location<'static>) {
    tracing::info!(
        name: "kfree_skb",
        target: crate::trace::SKB,
        %reason,
        packets,
        %location,
        "kfree_skb"
    );
}

/// A device counter (`struct rtnl_link_stats64` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevCounter {
    /// Frames handed to the driver successfully.
    TxPackets,
    /// Bytes of those frames (link header included).
    TxBytes,
    /// Frames the driver failed to send.
    TxErrors,
    /// Frames dropped on the way to the driver.
    TxDropped,
    /// Frames received by the driver's receive side.
    RxPackets,
    /// Bytes received.
    RxBytes,
    /// Received frames dropped.
    RxDropped,
}

/// Device counters as `ip -s link` shows them, per-thread sharded.
#[derive(Debug, Default)]
pub struct DevStats {
    c: Sharded<7>,
}

impl DevStats {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(&self, which: DevCounter, n: u64) {
        self.c.add(which as usize, n);
    }

    /// A counter's value. A late drop ([`crate::dev::TxQueueCtl::late_drop`])
    /// takes frames out of `tx_packets`/`tx_bytes` on the thread that saw
    /// it, which may be before the sending batch added them: a sum read in
    /// between is below zero (wrapped), and reads as 0 until they settle.
    pub fn get(&self, which: DevCounter) -> u64 {
        let v = self.c.get(which as usize);
        if v > i64::MAX as u64 {
            0
        } else {
            v
        }
    }

    /// A copy of the current values.
    pub fn snapshot(&self) -> DevStatsSnapshot {
        use DevCounter::*;
        DevStatsSnapshot {
            tx_packets: self.get(TxPackets),
            tx_bytes: self.get(TxBytes),
            tx_errors: self.get(TxErrors),
            tx_dropped: self.get(TxDropped),
            rx_packets: self.get(RxPackets),
            rx_bytes: self.get(RxBytes),
            rx_dropped: self.get(RxDropped),
        }
    }
}

/// A plain copy of [`DevStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevStatsSnapshot {
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Transmit drops.
    pub tx_dropped: u64,
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Receive drops.
    pub rx_dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_count_and_name() {
        let c = Counters::default();
        c.inc(Mib::IpOutRequests);
        c.add(Mib::IpFragCreates, 6);
        c.drop(DropReason::QdiscDrop);
        assert_eq!(c.get(Mib::IpOutRequests), 1);
        assert_eq!(c.get(Mib::IpFragCreates), 6);
        assert_eq!(c.dropped(DropReason::QdiscDrop), 1);
        assert_eq!(c.dropped_total(), 1);
        assert_eq!(Mib::IpFragOKs.to_string(), "IpFragOKs");
        assert_eq!(DropReason::NeighFailed.name(), "NEIGH_FAILED");
    }

    /// A late drop taken out before its frame was added reads as 0, not
    /// as a wrapped huge count, and the sum is exact once both are in.
    #[test]
    fn a_device_count_below_zero_reads_as_zero_until_it_settles() {
        let d = DevStats::default();
        std::thread::scope(|s| {
            s.spawn(|| d.add(DevCounter::TxPackets, 1u64.wrapping_neg()));
        });
        assert_eq!(d.get(DevCounter::TxPackets), 0);
        assert_eq!(d.snapshot().tx_packets, 0);
        d.add(DevCounter::TxPackets, 3);
        assert_eq!(d.get(DevCounter::TxPackets), 2);
    }
}

#[cfg(test)]
mod shard_tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sharded_counts_from_many_threads_add_up() {
        let c = Arc::new(Counters::default());
        let threads: Vec<_> = (0..SHARDS + 8)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.inc(Mib::IpOutRequests);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.get(Mib::IpOutRequests), 1000 * (SHARDS as u64 + 8));
    }

    /// `add_each` adds each pair where `add` would, from owning threads and
    /// from those past the owners (the shared shard) alike.
    #[test]
    fn add_each_adds_every_pair_from_owners_and_sharers() {
        let c: Arc<Sharded<3>> = Arc::new(Sharded::with_owners(2));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for k in 0..100 {
                        c.add_each([(0, 1), (2, k)]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.get(0), 600);
        assert_eq!(c.get(1), 0);
        assert_eq!(c.get(2), 6 * 4950);
    }
}
