//! The verifying peer: a strict in-process receiver at the far end of a wire.
//!
//! [`Peer`] takes the frames ipxmit emits (from an in-memory wire, a capture or
//! a test) and receives them the way a Linux host would, so that what ipxmit
//! sends is proved correct by an independent implementation rather than by the
//! code that built it. It does not share code with ipxmit's output path: only
//! the wire views of [`ipxmit::wire`] (which validate and never panic) are used
//! to read bytes.
//!
//! What it mirrors, in receive order:
//!
//! * `eth_type_trans()` (net/ethernet/eth.c): a frame whose destination MAC is
//!   neither ours nor a group address is `PACKET_OTHERHOST`
//!   ([`Received::NotForUs`]); an EtherType nobody handles is counted as the
//!   device's `rx_nohandler` ([`PeerDrop::BadEthertype`]). On an
//!   [`LinkType::L3`] link frames start at the IP header and the version nibble
//!   picks the protocol, as `tun_get_user()` does.
//! * `arp_rcv()` / `arp_process()` (net/ipv4/arp.c): a request for our address
//!   is answered with the reply `arp_create()` would build
//!   ([`Received::ArpRequest`]); everything else is [`Received::ArpOther`].
//! * `ip_rcv_core()` (net/ipv4/ip_input.c): header length and version, header
//!   checksum, total length within the frame (link-layer padding after it is
//!   accepted and ignored), then `ip_rcv_options()`' syntax checks. The
//!   martian-source checks of `ip_route_input_slow()` (net/ipv4/route.c) follow,
//!   then the local-address check (a host that does not forward).
//! * `ip_defrag()` / `ip_frag_queue()` / `ip_frag_reasm()`
//!   (net/ipv4/ip_fragment.c) with `inet_frag_queue_insert()` and
//!   `inet_frag_find()` (net/ipv4/inet_fragment.c): queues keyed by (source,
//!   destination, protocol, ID); an overlapping fragment discards the whole
//!   queue (RFC 5722, which Linux applies to IPv4 since 2018), a duplicate is
//!   dropped alone; a second, different end or data past the end discards the
//!   queue; the reassembled datagram may not exceed 65535 bytes; the ECN bits of
//!   the fragments must agree (`ip_frag_ecn_table`); a queue expires
//!   `frag_timeout` (`ipfrag_time`, 30 s) after its first fragment; no fragment
//!   is queued beyond `max_reasm_bytes` (`ipfrag_high_thresh`); a queue whose
//!   next fragment comes more than `max_dist` fragments of the same source
//!   after its last one is emptied and starts afresh (`ip_frag_too_far()` and
//!   `ip_frag_reinit()`, `ipfrag_max_dist`, 64): the kernel's guard against
//!   an IP ID reused while an old datagram's fragments linger (RFC 4963).
//! * `__udp4_lib_rcv()` / `udp4_csum_init()` (net/ipv4/udp.c): the UDP length
//!   and the checksum over the pseudo-header (0 means none was sent).
//!
//! It is stricter than Linux where Linux repairs a sender's mistake: a fragment
//! with MF set whose payload is not a multiple of 8 bytes is rejected (Linux
//! trims it), and the UDP length must equal the IP payload length (Linux trims
//! a longer IP payload). A correct sender never triggers either.
//!
//! Every frame ends in exactly one [`Received`] outcome; every drop is counted
//! under its [`PeerDrop`] reason in [`PeerStats`].
//!
//! What it could not reassemble is attributed ([`Unassembled`]): the sender
//! tells the peer which fragments it dropped itself, in frame order
//! ([`Peer::sender_dropped`], from a capture or a test), and the peer marks the
//! queue of that datagram, or the queue its other fragments make shortly
//! after; a fragment the peer itself refuses over `max_reasm_bytes` marks
//! its datagram likewise. A marked queue given up (timed out, emptied by
//! `max_dist`, full) is the sender's drop or the peer's memory limit; a
//! marked queue that completes or meets inconsistent fragments holds
//! fragments of two datagrams that shared an IP ID (RFC 4963) and is dropped
//! ([`PeerDrop::FragMixed`]) where Linux, lacking the sender's word, would
//! deliver what the checksum lets through. An unmarked queue given up is
//! [`Unassembled::Unexplained`]: a fault.
//!
//! With the sender's record instead ([`Peer::set_sender_record`], a
//! [`SenderDrops`] tap, for datagrams carrying the [`pattern`]), nothing is
//! told in frame order: every fragment names its datagram, so one of a
//! later datagram with the same IP ID never joins an older one's queue, and
//! the peer looks a datagram up in the record when it gives it up. The
//! peer never reads a clock:
//! `now` is a parameter. Without fragments it allocates only the delivered
//! payload.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use ipxmit::buf::{CsumState, GsoType};
use ipxmit::dev::LinkType;
use ipxmit::offload::gso::segment_udp;
use ipxmit::offload::{checksum_help, Features};
use ipxmit::time::Instant;
use ipxmit::wire::{
    self, ArpOperation, ArpPacket, ArpRepr, ChecksumCheck, EtherType, EthernetAddress,
    EthernetFrame, EthernetRepr, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket,
};
use ipxmit::PacketBuf;

use crate::pattern;
use crate::sender_drops::{Record, SenderDrops};

/// The kernel's default `net.ipv4.ipfrag_time`: 30 seconds.
pub const DEFAULT_FRAG_TIMEOUT: Duration = Duration::from_secs(30);
/// The kernel's default `net.ipv4.ipfrag_high_thresh`: 4 MiB.
pub const DEFAULT_MAX_REASM_BYTES: usize = 4 << 20;
/// The kernel's default `net.ipv4.ipfrag_max_dist`: 64 fragments.
pub const DEFAULT_MAX_DIST: u32 = 64;
/// Where a flow's unwrapped IP ID sequence starts: far from 0, so that IDs
/// a little behind the first one seen unwrap without underflow.
const EXT_ORIGIN: u64 = 1 << 40;
/// With the sender's record: fragments between two readings of it for
/// every queue held ([`Peer::read_record`]).
const READ_EVERY: u64 = 1024;

/// Largest IPv4 datagram, header included (`IP_MAX_MTU`).
const IP_MAX_LEN: usize = 65535;
/// Length of an IPv4 header without options.
const IP_HEADER_LEN: usize = 20;
/// Length of an Ethernet II header.
const ETH_HEADER_LEN: usize = 14;

/// How a [`Peer`] sits on its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's IPv4 address: the destination it accepts (besides limited
    /// broadcast and multicast) and the address ARP requests must ask for.
    pub addr: Ipv4Addr,
    /// The peer's MAC: unicast frames to other MACs are not for us.
    pub mac: EthernetAddress,
    /// Link type: Ethernet frames, or bare IP packets (TUN-like).
    pub link: LinkType,
    /// How long a reassembly queue lives after its first fragment
    /// (`ipfrag_time`, default 30 s).
    pub frag_timeout: Duration,
    /// Most payload bytes held in all reassembly queues together
    /// (`ipfrag_high_thresh`, default 4 MiB); 0 disables reassembly.
    pub max_reasm_bytes: usize,
    /// Fragments from one source between two fragments of a queue beyond
    /// which the queue is emptied before the later one is queued
    /// (`ipfrag_max_dist`, default 64); 0 disables the check.
    pub max_dist: u32,
    /// Accept every destination MAC and IP address (a sniffer's view), not
    /// only ours, broadcast and multicast. Default off.
    pub promiscuous: bool,
    /// Stand for a gateway: accept IP datagrams sent to our MAC whatever
    /// their destination address (a router forwards them), while ARP is still
    /// answered for [`addr`](Self::addr) only. Default off.
    pub gateway: bool,
}

impl PeerConfig {
    /// A peer at `addr`/`mac` on an Ethernet link with the kernel's default
    /// reassembly timeout and memory limit, not promiscuous.
    pub fn new(addr: Ipv4Addr, mac: EthernetAddress) -> PeerConfig {
        PeerConfig {
            addr,
            mac,
            link: LinkType::Ethernet,
            frag_timeout: DEFAULT_FRAG_TIMEOUT,
            max_reasm_bytes: DEFAULT_MAX_REASM_BYTES,
            max_dist: DEFAULT_MAX_DIST,
            promiscuous: false,
            gateway: false,
        }
    }
}

/// A UDP datagram delivered intact: every check passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram {
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
    /// IP identification.
    pub ip_id: u16,
    /// Type of service of the (first) fragment, CE set if any fragment had it.
    pub tos: u8,
    /// TTL of the (first) fragment.
    pub ttl: u8,
    /// Don't Fragment flag of the (first) fragment.
    pub df: bool,
    /// How many fragments carried it (1: it arrived unfragmented).
    pub fragments: usize,
    /// The UDP payload (after the 8-byte header).
    pub payload: Vec<u8>,
}

/// What became of one frame given to [`Peer::receive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A UDP datagram, whole or just reassembled, passed every check.
    Datagram(UdpDatagram),
    /// An IP datagram of another protocol (whole or reassembled), delivered as
    /// a raw socket would see its payload. No transport checks are made.
    Ip {
        /// The IP protocol number.
        protocol: IpProtocol,
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
        /// The IP payload.
        payload: Vec<u8>,
    },
    /// A valid fragment, queued for reassembly.
    Fragment,
    /// An ARP request for our address.
    ArpRequest {
        /// The whole Ethernet frame of the reply the peer sends back.
        reply: Vec<u8>,
    },
    /// A well-formed ARP packet that needs no answer (a reply, a gratuitous
    /// announcement, a request for another address).
    ArpOther,
    /// The frame was dropped for this reason (and counted).
    Dropped(PeerDrop),
    /// A frame for another MAC or IP address.
    NotForUs,
    /// A well-formed frame of a protocol the peer does not handle (IPv6).
    Other,
}

/// Why the peer dropped a frame, a fragment or a reassembly queue.
///
/// Reassembly reasons count once per queue given up, not per fragment held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerDrop {
    /// The frame cannot hold the Ethernet header, the 20-byte IP header or
    /// the header its IHL announces (`SKB_DROP_REASON_PKT_TOO_SMALL`).
    TooShort,
    /// An EtherType no handler takes (counted as the device's `rx_nohandler`).
    BadEthertype,
    /// An ARP packet that is truncated or not Ethernet/IPv4.
    BadArp,
    /// The IP version is not 4.
    BadVersion,
    /// The IHL is below 5.
    BadIhl,
    /// The total length runs past the frame, or is below the header length.
    BadTotalLength,
    /// The IP header checksum does not verify.
    BadIpChecksum,
    /// The IP options are malformed.
    BadOptions,
    /// The source address is multicast, broadcast, loopback, or zero towards
    /// a unicast destination (`ip_route_input_slow()`'s `martian_source`).
    MartianSource,
    /// A fragment overlaps data already queued: the whole queue is dropped.
    FragOverlap,
    /// A fragment repeats data already queued: it alone is dropped.
    FragDuplicate,
    /// A fragment is empty, or has MF set and a payload that is not a
    /// multiple of 8 bytes: the queue is dropped.
    FragBadLength,
    /// A fragment puts the end of the datagram somewhere else than an earlier
    /// last fragment did, or data past it: the queue is dropped.
    FragBadEnd,
    /// The reassembled datagram would exceed 65535 bytes: the queue is dropped.
    FragTooBig,
    /// The fragments mix ECN-capable and not-ECN-capable TOS bits.
    FragEcnMismatch,
    /// A queue was still incomplete `frag_timeout` after its first fragment.
    FragTimeout,
    /// A fragment came more than `max_dist` fragments of its source after
    /// its queue's last one: the queue's fragments are dropped, and the
    /// fragment starts it afresh (`SKB_DROP_REASON_FRAG_TOO_FAR`). With the
    /// sender's record ([`Peer::set_sender_record`]) also: a fragment names
    /// another datagram than its queue holds.
    FragTooFar,
    /// Queuing the fragment would exceed `max_reasm_bytes`: it is dropped.
    ReasmOverLimit,
    /// A queue marked as missing a fragment the sender (or the peer) dropped
    /// completed or met an inconsistent fragment: it mixes two datagrams
    /// that shared an IP ID (RFC 4963) and is dropped, not delivered.
    FragMixed,
    /// The UDP length is below 8 or differs from the IP payload length.
    BadUdpLength,
    /// The UDP checksum does not verify.
    BadUdpChecksum,
}

impl PeerDrop {
    /// Number of reasons.
    pub const COUNT: usize = 21;

    /// Every reason, in declaration order (`ALL[r.index()] == r`).
    pub const ALL: [PeerDrop; PeerDrop::COUNT] = [
        PeerDrop::TooShort,
        PeerDrop::BadEthertype,
        PeerDrop::BadArp,
        PeerDrop::BadVersion,
        PeerDrop::BadIhl,
        PeerDrop::BadTotalLength,
        PeerDrop::BadIpChecksum,
        PeerDrop::BadOptions,
        PeerDrop::MartianSource,
        PeerDrop::FragOverlap,
        PeerDrop::FragDuplicate,
        PeerDrop::FragBadLength,
        PeerDrop::FragBadEnd,
        PeerDrop::FragTooBig,
        PeerDrop::FragEcnMismatch,
        PeerDrop::FragTimeout,
        PeerDrop::FragTooFar,
        PeerDrop::ReasmOverLimit,
        PeerDrop::FragMixed,
        PeerDrop::BadUdpLength,
        PeerDrop::BadUdpChecksum,
    ];

    /// Position in [`PeerDrop::ALL`] and in [`PeerStats::drops`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A drop of the reassembly layer (a fragment or a queue), whose
    /// datagram [`Unassembled`] attributes.
    pub const fn is_reassembly(self) -> bool {
        matches!(
            self,
            PeerDrop::FragOverlap
                | PeerDrop::FragDuplicate
                | PeerDrop::FragBadLength
                | PeerDrop::FragBadEnd
                | PeerDrop::FragTooBig
                | PeerDrop::FragEcnMismatch
                | PeerDrop::FragTimeout
                | PeerDrop::FragTooFar
                | PeerDrop::ReasmOverLimit
                | PeerDrop::FragMixed
        )
    }

    /// A unique counter name for the reason: the kernel's SNMP counter when
    /// the kernel has one for exactly this reason (`IpInCsumErrors`,
    /// `IpReasmTimeout`, `UdpInCsumErrors`, ...), otherwise a name in the same
    /// style.
    pub const fn name(self) -> &'static str {
        match self {
            PeerDrop::TooShort => "PktTooSmall",
            PeerDrop::BadEthertype => "RxNoHandler",
            PeerDrop::BadArp => "ArpInBadPackets",
            PeerDrop::BadVersion => "IpInBadVersion",
            PeerDrop::BadIhl => "IpInBadIhl",
            PeerDrop::BadTotalLength => "IpInTruncatedPkts",
            PeerDrop::BadIpChecksum => "IpInCsumErrors",
            PeerDrop::BadOptions => "IpInBadOptions",
            PeerDrop::MartianSource => "InMartianSrc",
            PeerDrop::FragOverlap => "IpReasmOverlaps",
            PeerDrop::FragDuplicate => "IpReasmDupFrags",
            PeerDrop::FragBadLength => "IpReasmBadLength",
            PeerDrop::FragBadEnd => "IpReasmBadEnd",
            PeerDrop::FragTooBig => "IpReasmOversize",
            PeerDrop::FragEcnMismatch => "IpReasmEcnMismatch",
            PeerDrop::FragTimeout => "IpReasmTimeout",
            PeerDrop::FragTooFar => "IpReasmTooFar",
            PeerDrop::ReasmOverLimit => "IpReasmMemLimit",
            PeerDrop::FragMixed => "IpReasmIdReuse",
            PeerDrop::BadUdpLength => "UdpInBadLength",
            PeerDrop::BadUdpChecksum => "UdpInCsumErrors",
        }
    }

    /// The kernel SNMP counter (`/proc/net/snmp`, `nstat` spelling) the
    /// kernel increments for this drop, if any. Several reasons share one
    /// (`IpInHdrErrors`, `IpReasmFails`, `UdpInErrors`).
    pub const fn mib(self) -> Option<&'static str> {
        match self {
            PeerDrop::BadEthertype | PeerDrop::BadArp | PeerDrop::MartianSource => None,
            PeerDrop::FragDuplicate | PeerDrop::FragMixed => None,
            PeerDrop::TooShort | PeerDrop::BadVersion | PeerDrop::BadIhl => Some("IpInHdrErrors"),
            PeerDrop::BadOptions => Some("IpInHdrErrors"),
            PeerDrop::BadTotalLength => Some("IpInTruncatedPkts"),
            PeerDrop::BadIpChecksum => Some("IpInCsumErrors"),
            PeerDrop::FragOverlap => Some("IpReasmOverlaps"),
            PeerDrop::FragTimeout => Some("IpReasmTimeout"),
            PeerDrop::FragBadLength | PeerDrop::FragBadEnd | PeerDrop::FragTooBig => {
                Some("IpReasmFails")
            }
            PeerDrop::FragEcnMismatch | PeerDrop::ReasmOverLimit => Some("IpReasmFails"),
            PeerDrop::FragTooFar => Some("IpReasmFails"),
            PeerDrop::BadUdpLength => Some("UdpInErrors"),
            PeerDrop::BadUdpChecksum => Some("UdpInCsumErrors"),
        }
    }
}

/// What became of a datagram the peer held fragments of and did not
/// deliver: one count per reassembly queue given up (timed out, emptied by
/// `max_dist`, dropped as inconsistent or mixed), and per duplicate or
/// oversized fragment no queue accounts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unassembled {
    /// The sender dropped a fragment of it ([`Peer::sender_dropped`], or
    /// the sender's record, [`Peer::set_sender_record`]): the rest lingered
    /// until given up.
    SenderDropped,
    /// It held fragments of a datagram the sender (or the peer) dropped part
    /// of and met fragments of a later datagram with the same IP ID
    /// (RFC 4963): dropped as mixed or inconsistent.
    IdReuse,
    /// The peer refused one of its fragments over `max_reasm_bytes`.
    MemLimit,
    /// Nothing explains it: a fault (a fragment lost or malformed on the
    /// way, or a sender that fragments wrongly).
    Unexplained,
}

impl Unassembled {
    /// Number of attributions.
    pub const COUNT: usize = 4;

    /// Every attribution, in declaration order.
    pub const ALL: [Unassembled; Unassembled::COUNT] = [
        Unassembled::SenderDropped,
        Unassembled::IdReuse,
        Unassembled::MemLimit,
        Unassembled::Unexplained,
    ];

    /// A counter name in the style of [`PeerDrop::name`].
    pub const fn name(self) -> &'static str {
        match self {
            Unassembled::SenderDropped => "ReasmSenderDropped",
            Unassembled::IdReuse => "ReasmIdReuse",
            Unassembled::MemLimit => "ReasmMemLimit",
            Unassembled::Unexplained => "ReasmUnexplained",
        }
    }

    /// The attribution of a queue carrying `lost` marks, given up as
    /// `mixed` (it completed or met an inconsistent fragment) or not.
    const fn of(lost: u8, mixed: bool) -> Unassembled {
        match (lost, mixed) {
            (0, _) => Unassembled::Unexplained,
            (_, true) => Unassembled::IdReuse,
            (l, false) if l & LOST_SENDER != 0 => Unassembled::SenderDropped,
            _ => Unassembled::MemLimit,
        }
    }
}

impl fmt::Display for PeerDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The peer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Frames given to [`Peer::receive`].
    pub frames: u64,
    /// Bytes of those frames.
    pub bytes: u64,
    /// Frames that reached IPv4 receive (`IpInReceives`).
    pub ip_packets: u64,
    /// Fragments for us that passed the header checks (`IpReasmReqds`).
    pub fragments: u64,
    /// Datagrams reassembled (`IpReasmOKs`).
    pub reassembled: u64,
    /// UDP datagrams delivered intact (`UdpInDatagrams`).
    pub datagrams: u64,
    /// UDP payload bytes delivered.
    pub udp_bytes: u64,
    /// Datagrams of other protocols delivered as [`Received::Ip`].
    pub ip_delivered: u64,
    /// ARP requests for our address (each answered).
    pub arp_requests: u64,
    /// Other well-formed ARP packets.
    pub arp_other: u64,
    /// Frames for another MAC or IP address.
    pub not_for_us: u64,
    /// Frames of protocols the peer does not handle.
    pub other: u64,
    /// Drops, indexed by [`PeerDrop::index`].
    pub drops: [u64; PeerDrop::COUNT],
    /// Datagrams not reassembled, by [`Unassembled`] attribution (indexed
    /// by its declaration order).
    pub unassembled: [u64; Unassembled::COUNT],
}

impl PeerStats {
    /// How many entries of [`counters`](Self::counters) come before the drops.
    pub const TOTALS: usize = 12;

    /// Drops counted for `reason`.
    pub const fn drops(&self, reason: PeerDrop) -> u64 {
        self.drops[reason.index()]
    }

    /// All drops together.
    pub fn drops_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Datagrams not reassembled and attributed to `why`.
    pub const fn unassembled(&self, why: Unassembled) -> u64 {
        self.unassembled[why as usize]
    }

    /// Drops of whole frames: every drop but those of reassembly, whose
    /// datagrams [`unassembled`](Self::unassembled) attributes.
    pub fn frame_drops(&self) -> u64 {
        PeerDrop::ALL
            .into_iter()
            .filter(|r| !r.is_reassembly())
            .map(|r| self.drops(r))
            .sum()
    }

    /// Every counter as (name, value), kernel names where one exists: the
    /// totals first, then one entry per drop reason ([`PeerDrop::name`]),
    /// then one per [`Unassembled`] attribution.
    pub fn counters(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        let totals: [(&'static str, u64); Self::TOTALS] = [
            ("InFrames", self.frames),
            ("InFrameOctets", self.bytes),
            ("IpInReceives", self.ip_packets),
            ("IpReasmReqds", self.fragments),
            ("IpReasmOKs", self.reassembled),
            ("UdpInDatagrams", self.datagrams),
            ("UdpInPayloadOctets", self.udp_bytes),
            ("RawInDatagrams", self.ip_delivered),
            ("ArpInRequests", self.arp_requests),
            ("ArpInOther", self.arp_other),
            ("InOtherHost", self.not_for_us),
            ("InOtherProto", self.other),
        ];
        let drops = PeerDrop::ALL.into_iter().map(|r| (r.name(), self.drops(r)));
        let why = Unassembled::ALL
            .into_iter()
            .map(|u| (u.name(), self.unassembled(u)));
        totals.into_iter().chain(drops).chain(why)
    }
}

impl fmt::Display for PeerStats {
    /// One `Name value` line per counter; drop reasons and attributions
    /// only when non-zero, then `Drops` with their total.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.counters().enumerate() {
            if i < Self::TOTALS || value != 0 {
                writeln!(f, "{name:<20} {value}")?;
            }
        }
        write!(f, "{:<20} {}", "Drops", self.drops_total())
    }
}

/// The IP header fields a delivery reports.
#[derive(Debug, Clone, Copy)]
struct IpMeta {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    ident: u16,
    tos: u8,
    ttl: u8,
    df: bool,
}

impl IpMeta {
    fn of(repr: &Ipv4Repr) -> IpMeta {
        IpMeta {
            src: repr.src_addr,
            dst: repr.dst_addr,
            protocol: repr.protocol,
            ident: repr.ident,
            tos: repr.tos,
            ttl: repr.ttl,
            df: repr.dont_frag,
        }
    }
}

/// A reassembly queue's identity (`struct frag_v4_compare_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ident: u16,
}

/// A run of contiguous fragments (the kernel's `frag_run_len` heads).
#[derive(Debug, Clone, Copy)]
struct Run {
    start: usize,
    end: usize,
}

/// A queue's mark: the sender dropped a fragment of its datagram.
const LOST_SENDER: u8 = 1;
/// A queue's mark: the peer refused a fragment of its datagram.
const LOST_REFUSED: u8 = 2;

/// A loss of a fragment of the datagram with the unwrapped ID `ext`: it
/// marks that datagram's queue, made before or after it.
#[derive(Debug, Clone, Copy)]
struct Note {
    ext: u64,
    lost: u8,
}

/// The datagrams of one source, destination and protocol: the IP ID
/// sequence the sender draws their IDs from (`ip_idents_reserve()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Flow {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
}

impl Flow {
    /// The flow of a reassembly key.
    fn of(key: &FragKey) -> Flow {
        Flow {
            src: key.src,
            dst: key.dst,
            protocol: key.protocol,
        }
    }
}

/// The losses known of the datagram of queue `q`: its marks, and what the
/// sender's `record` says of the datagram its fragments name;
/// `overwritten` counts a record that cannot tell.
fn losses(record: Option<&SenderDrops>, q: &FragQueue, overwritten: &mut u64) -> u8 {
    let Some((r, k)) = record.zip(q.sig).filter(|_| q.lost & LOST_SENDER == 0) else {
        return q.lost;
    };
    match r.lookup(k) {
        Record::Dropped => q.lost | LOST_SENDER,
        Record::NotDropped => q.lost,
        Record::Overwritten => {
            *overwritten += 1;
            q.lost
        }
    }
}

/// `ip_frag_ecn()` bits (`IPFRAG_ECN_*`).
const ECN_NOT_ECT: u8 = 0x01;
const ECN_CE: u8 = 0x08;

/// One datagram being reassembled (`struct ipq` / `inet_frag_queue`).
#[derive(Debug)]
struct FragQueue {
    /// When it expires: creation + `frag_timeout`.
    deadline: Instant,
    /// Payload bytes at their offsets; holes are zero until filled.
    data: Vec<u8>,
    /// Sorted, disjoint runs of received data.
    runs: Vec<Run>,
    /// The datagram's payload length as far as known (`q.len`).
    len: usize,
    /// Payload bytes received (`q.meat`).
    meat: usize,
    /// The last fragment (MF clear) arrived (`INET_FRAG_LAST_IN`).
    last_in: bool,
    /// Header of the offset-0 fragment and its length (`INET_FRAG_FIRST_IN`).
    first: Option<(IpMeta, usize)>,
    /// Fragments queued.
    fragments: usize,
    /// ECN bits seen (`qp->ecn`).
    ecn: u8,
    /// Losses known of its datagram (`LOST_*`).
    lost: u8,
    /// The source's fragment count at its last fragment (`qp->rid`).
    rid: u32,
    /// Its datagram's IP ID, unwrapped ([`Peer::unwrap_id`]).
    ext: u64,
    /// The datagram its fragments name ([`pattern`]), with the sender's
    /// record.
    sig: Option<u64>,
}

/// A fragment's place in its datagram.
#[derive(Debug, Clone, Copy)]
struct FragPos {
    offset: usize,
    more: bool,
    header_len: usize,
}

impl FragQueue {
    fn new(deadline: Instant) -> FragQueue {
        FragQueue {
            deadline,
            data: Vec::new(),
            runs: Vec::new(),
            len: 0,
            meat: 0,
            last_in: false,
            first: None,
            fragments: 0,
            ecn: 0,
            lost: 0,
            rid: 0,
            ext: 0,
            sig: None,
        }
    }

    /// Kernel: `ip_frag_queue()`. `Err` with a reason: the fragment is dropped
    /// and, unless the reason is [`PeerDrop::FragDuplicate`], so is the queue.
    fn insert(&mut self, meta: &IpMeta, pos: FragPos, payload: &[u8]) -> Result<(), PeerDrop> {
        let (offset, end) = (pos.offset, pos.offset + payload.len());
        if pos.more {
            if end % 8 != 0 {
                return Err(PeerDrop::FragBadLength);
            }
            if end > self.len {
                if self.last_in {
                    return Err(PeerDrop::FragBadEnd);
                }
                self.len = end;
            }
        } else {
            if end < self.len || (self.last_in && end != self.len) {
                return Err(PeerDrop::FragBadEnd);
            }
            self.last_in = true;
            self.len = end;
        }
        if end == offset {
            return Err(PeerDrop::FragBadLength);
        }
        self.insert_run(offset, end)?;
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[offset..end].copy_from_slice(payload);
        if offset == 0 {
            self.first = Some((*meta, pos.header_len));
        }
        self.meat += payload.len();
        self.fragments += 1;
        self.ecn |= 1 << (meta.tos & 0x03);
        Ok(())
    }

    /// Kernel: `inet_frag_queue_insert()`: the common in-order case appends
    /// to the last run; otherwise a search finds the run `[start, end)` would
    /// touch: inside it is a duplicate, across its edge an overlap.
    fn insert_run(&mut self, start: usize, end: usize) -> Result<(), PeerDrop> {
        let Some(last) = self.runs.last_mut() else {
            self.runs.push(Run { start, end });
            return Ok(());
        };
        if last.end < end {
            if start < last.end {
                return Err(PeerDrop::FragOverlap);
            }
            if start == last.end {
                last.end = end;
            } else {
                self.runs.push(Run { start, end });
            }
            return Ok(());
        }
        let idx = self.runs.partition_point(|r| r.end <= start);
        if let Some(r) = self.runs.get(idx) {
            if r.start < end {
                let inside = start >= r.start && end <= r.end;
                return Err(if inside {
                    PeerDrop::FragDuplicate
                } else {
                    PeerDrop::FragOverlap
                });
            }
        }
        self.runs.insert(idx, Run { start, end });
        Ok(())
    }

    /// Whether every byte from 0 to the last fragment's end is here.
    fn complete(&self) -> bool {
        self.last_in && self.first.is_some() && self.meat == self.len
    }

    /// Kernel: `ip_frag_reasm()`: the header of the first fragment, the ECN
    /// verdict of `ip_frag_ecn_table`, the 65535-byte limit.
    fn finish(mut self) -> Result<(IpMeta, Vec<u8>, usize), PeerDrop> {
        let Some((mut meta, header_len)) = self.first else {
            return Err(PeerDrop::FragBadEnd);
        };
        if header_len + self.len > IP_MAX_LEN {
            return Err(PeerDrop::FragTooBig);
        }
        if self.ecn & ECN_NOT_ECT != 0 && self.ecn & !ECN_NOT_ECT != 0 {
            return Err(PeerDrop::FragEcnMismatch);
        }
        if self.ecn & ECN_CE != 0 {
            meta.tos |= 0x03;
        }
        self.data.truncate(self.len);
        Ok((meta, self.data, self.fragments))
    }
}

/// The verifying peer. See the [module documentation](self).
#[derive(Debug)]
pub struct Peer {
    cfg: PeerConfig,
    stats: PeerStats,
    queues: HashMap<FragKey, FragQueue>,
    /// Bytes held by all queues' buffers.
    reasm_bytes: usize,
    /// No queue expires before this (may be early, never late).
    next_expiry: Option<Instant>,
    /// Each source's fragment count (`inet_peer.rid`), for `max_dist`.
    rids: HashMap<Ipv4Addr, u32>,
    /// The latest loss noted per reassembly key ([`Peer::sender_dropped`]);
    /// at most one per IP ID of a flow, so bounded.
    notes: HashMap<FragKey, Note>,
    /// Each flow's highest unwrapped IP ID seen in a fragment or a note.
    flows: HashMap<Flow, u64>,
    /// The sender's record of the datagrams it dropped fragments of
    /// ([`Peer::set_sender_record`]).
    record: Option<Arc<SenderDrops>>,
    /// Lookups of the record that found a later datagram's drop in the
    /// datagram's slot.
    record_overwritten: u64,
}

impl Peer {
    /// A peer configured by `cfg`, with zeroed counters and no queues.
    pub fn new(cfg: PeerConfig) -> Peer {
        Peer {
            cfg,
            stats: PeerStats::default(),
            queues: HashMap::new(),
            reasm_bytes: 0,
            next_expiry: None,
            rids: HashMap::new(),
            notes: HashMap::new(),
            flows: HashMap::new(),
            record: None,
            record_overwritten: 0,
        }
    }

    /// Gives the peer the sender's record of the datagrams it dropped
    /// fragments of (a [`SenderDrops`] tap on the sending device), for UDP
    /// datagrams whose payload is the [`pattern`]: each fragment names its
    /// datagram. Then a fragment of another datagram than the one its
    /// queue holds (the IP ID reused, RFC 4963) empties that queue and
    /// starts it afresh instead of joining it (counted as
    /// [`PeerDrop::FragTooFar`]); a datagram given up is
    /// [`Unassembled::SenderDropped`] when the record says the sender
    /// dropped a fragment of it (the peer reads the record for every
    /// queue it holds every 1,024 fragments, and once more when it gives
    /// one up), and one that completes although the record says so is
    /// dropped as mixed ([`PeerDrop::FragMixed`]).
    pub fn set_sender_record(&mut self, record: Arc<SenderDrops>) {
        self.record = Some(record);
    }

    /// Lookups of the sender's record that could not tell (a later
    /// datagram's drop had taken the slot): those datagrams count as
    /// [`Unassembled::Unexplained`].
    pub fn record_overwritten(&self) -> u64 {
        self.record_overwritten
    }

    /// The configuration.
    pub fn config(&self) -> &PeerConfig {
        &self.cfg
    }

    /// A copy of the counters.
    pub fn stats(&self) -> PeerStats {
        self.stats
    }

    /// Reassembly queues currently held.
    pub fn pending_reassembly(&self) -> usize {
        self.queues.len()
    }

    /// Payload bytes currently held for reassembly (what
    /// `max_reasm_bytes` limits).
    pub fn pending_reassembly_bytes(&self) -> usize {
        self.reasm_bytes
    }

    /// The reassembly queues still held, by the attribution each would get
    /// if given up now (a queue of a datagram still arriving counts as
    /// [`Unassembled::Unexplained`]: ask once the wire is drained).
    pub fn pending_unassembled(&self) -> [u64; Unassembled::COUNT] {
        let mut why = [0; Unassembled::COUNT];
        let mut unknown = 0;
        for q in self.queues.values() {
            let lost = losses(self.record.as_deref(), q, &mut unknown);
            why[Unassembled::of(lost, false) as usize] += 1;
        }
        why
    }

    /// The sender dropped `frame` (as this peer's link carries it; the
    /// headers suffice) before it reached the wire: when it is a fragment
    /// for us, its datagram is marked as one that cannot complete, so its
    /// queue is attributed to [`Unassembled::SenderDropped`] when given up
    /// and dropped as mixed ([`PeerDrop::FragMixed`]) if it completes. The
    /// datagram is told apart from later ones with the same IP ID by its
    /// place in the flow's ID sequence, unwrapped from the fragments and
    /// drops seen (`Peer::unwrap_id`; they must come at least every 32,768
    /// IDs). Returns whether `frame` was such a fragment.
    ///
    /// This is the sender's word, which a Linux receiver does not have; it
    /// makes the verdict of an overloaded run truthful (RFC 4963).
    pub fn sender_dropped(&mut self, frame: &[u8]) -> bool {
        match self.cfg.link {
            LinkType::Ethernet if frame.get(12..14) == Some(&[0x08, 0x00]) => {
                self.sender_dropped_ip(&frame[ETH_HEADER_LEN..])
            }
            LinkType::Ethernet => false,
            LinkType::L3 => self.sender_dropped_ip(frame),
        }
    }

    /// [`sender_dropped`](Self::sender_dropped) of an IP packet, given from
    /// its IP header on (the rest may be left out).
    pub fn sender_dropped_ip(&mut self, ip: &[u8]) -> bool {
        let Some(key) = fragment_key(ip) else {
            return false;
        };
        if !self.accepts(key.dst) {
            return false;
        }
        self.note(key, LOST_SENDER);
        true
    }

    /// Receives one frame (an Ethernet frame, or an IP packet on an
    /// [`LinkType::L3`] link) at time `now`. Reassembly queues that expired
    /// by `now` are dropped first (see [`expire`](Self::expire)).
    ///
    /// Kernel: `__netif_receive_skb()` down to `ip_local_deliver_finish()`.
    pub fn receive(&mut self, frame: &[u8], now: Instant) -> Received {
        self.expire(now);
        self.stats.frames += 1;
        self.stats.bytes += frame.len() as u64;
        let outcome = match self.cfg.link {
            LinkType::Ethernet => self.receive_ethernet(frame, now),
            LinkType::L3 => self.receive_l3(frame, now),
        };
        self.count(&outcome);
        outcome
    }

    /// Receives what a NIC puts on the wire for the packet `f` it was given
    /// (see [`nic_output`]): each resulting frame is received as by
    /// [`receive`](Self::receive) and its outcome handed to `on`.
    pub fn receive_packet(&mut self, f: PacketBuf, now: Instant, mut on: impl FnMut(Received)) {
        nic_output(f, |frame| on(self.receive(frame, now)));
    }

    /// Drops every reassembly queue whose `frag_timeout` has run out by `now`
    /// (first fragment's arrival + timeout <= `now`), counting each under
    /// [`PeerDrop::FragTimeout`]; returns how many.
    ///
    /// Kernel: `ip_expire()`, net/ipv4/ip_fragment.c (without the ICMP
    /// time-exceeded message).
    pub fn expire(&mut self, now: Instant) -> usize {
        match self.next_expiry {
            Some(t) if t <= now => {}
            _ => return 0,
        }
        let before = self.queues.len();
        let mut freed = 0;
        let mut why = [0u64; Unassembled::COUNT];
        let Peer {
            queues,
            record,
            record_overwritten,
            ..
        } = self;
        queues.retain(|_, q| {
            let live = q.deadline > now;
            if !live {
                freed += q.data.len();
                let lost = losses(record.as_deref(), q, record_overwritten);
                why[Unassembled::of(lost, false) as usize] += 1;
            }
            live
        });
        let expired = before - self.queues.len();
        self.reasm_bytes -= freed;
        for (n, w) in self.stats.unassembled.iter_mut().zip(why) {
            *n += w;
        }
        self.stats.drops[PeerDrop::FragTimeout.index()] += expired as u64;
        self.next_expiry = self.queues.values().map(|q| q.deadline).min();
        expired
    }

    /// Counts an outcome of [`receive`](Self::receive).
    fn count(&mut self, outcome: &Received) {
        let s = &mut self.stats;
        match outcome {
            Received::Datagram(d) => {
                s.datagrams += 1;
                s.udp_bytes += d.payload.len() as u64;
            }
            Received::Ip { .. } => s.ip_delivered += 1,
            Received::Fragment => {}
            Received::ArpRequest { .. } => s.arp_requests += 1,
            Received::ArpOther => s.arp_other += 1,
            Received::Dropped(reason) => s.drops[reason.index()] += 1,
            Received::NotForUs => s.not_for_us += 1,
            Received::Other => s.other += 1,
        }
    }

    /// Kernel: `eth_type_trans()` and the protocol dispatch of
    /// `__netif_receive_skb_core()`.
    fn receive_ethernet(&mut self, frame: &[u8], now: Instant) -> Received {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return Received::Dropped(PeerDrop::TooShort);
        };
        let dst = eth.dst_addr();
        if !self.cfg.promiscuous && dst != self.cfg.mac && !dst.is_multicast() {
            return Received::NotForUs;
        }
        match eth.ethertype() {
            EtherType::Ipv4 => self.receive_ipv4(eth.payload(), now),
            EtherType::Arp => self.receive_arp(eth.payload()),
            EtherType::Ipv6 => Received::Other,
            EtherType::Unknown(_) => Received::Dropped(PeerDrop::BadEthertype),
        }
    }

    /// Kernel: `tun_get_user()`'s protocol sniffing on a TUN without packet
    /// information: the version nibble says IPv4 or IPv6.
    fn receive_l3(&mut self, packet: &[u8], now: Instant) -> Received {
        match packet.first().map(|b| b >> 4) {
            None => Received::Dropped(PeerDrop::TooShort),
            Some(6) => Received::Other,
            Some(_) => self.receive_ipv4(packet, now),
        }
    }

    /// Kernel: `arp_rcv()` and `arp_process()`, net/ipv4/arp.c. A request for
    /// our address from another address is answered; the rest needs nothing.
    fn receive_arp(&mut self, payload: &[u8]) -> Received {
        let Ok(packet) = ArpPacket::new_checked(payload) else {
            return Received::Dropped(PeerDrop::BadArp);
        };
        let Ok(arp) = ArpRepr::parse(&packet) else {
            return Received::Dropped(PeerDrop::BadArp);
        };
        let for_us = arp.operation == ArpOperation::Request
            && arp.target_protocol_addr == self.cfg.addr
            && arp.source_protocol_addr != self.cfg.addr;
        if !for_us {
            return Received::ArpOther;
        }
        Received::ArpRequest {
            reply: self.arp_reply(&arp),
        }
    }

    /// Kernel: `arp_create()` for `arp_send_dst(ARPOP_REPLY, ...)`: 42 bytes,
    /// sent to the requester's hardware address (the device pads it).
    fn arp_reply(&self, request: &ArpRepr) -> Vec<u8> {
        let mut frame = vec![0u8; ETH_HEADER_LEN + ArpRepr::BUFFER_LEN];
        let eth = EthernetRepr {
            src_addr: self.cfg.mac,
            dst_addr: request.source_hardware_addr,
            ethertype: EtherType::Arp,
        };
        let mut view = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.emit(&mut view);
        let reply = ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: self.cfg.mac,
            source_protocol_addr: self.cfg.addr,
            target_hardware_addr: request.source_hardware_addr,
            target_protocol_addr: request.source_protocol_addr,
        };
        reply.emit(&mut ArpPacket::new_unchecked(view.payload_mut()));
        frame
    }

    /// Kernel: `ip_rcv_core()` and `ip_rcv_options()`, net/ipv4/ip_input.c;
    /// the martian and local-address checks of `ip_route_input_slow()`;
    /// `ip_local_deliver()`'s call of `ip_defrag()` for fragments.
    fn receive_ipv4(&mut self, bytes: &[u8], now: Instant) -> Received {
        self.stats.ip_packets += 1;
        let packet = Ipv4Packet::new_unchecked(bytes);
        let repr = match Ipv4Repr::parse(&packet, ChecksumCheck::Verify) {
            Ok(repr) => repr,
            Err(err) => return Received::Dropped(ip_drop_reason(bytes, err)),
        };
        if martian_source(repr.src_addr, repr.dst_addr) {
            return Received::Dropped(PeerDrop::MartianSource);
        }
        if !self.accepts(repr.dst_addr) {
            return Received::NotForUs;
        }
        let payload = &bytes[repr.header_len()..repr.buffer_len()];
        let meta = IpMeta::of(&repr);
        if repr.more_frags || repr.frag_offset != 0 {
            let pos = FragPos {
                offset: usize::from(repr.frag_offset),
                more: repr.more_frags,
                header_len: repr.header_len(),
            };
            return self.defrag(&meta, pos, payload, now);
        }
        deliver(&meta, payload, 1)
    }

    /// Whether `dst` is one of our addresses: ours, limited broadcast,
    /// multicast, or anything when promiscuous or standing for a gateway.
    fn accepts(&self, dst: Ipv4Addr) -> bool {
        self.cfg.promiscuous
            || self.cfg.gateway
            || dst == self.cfg.addr
            || dst.is_broadcast()
            || dst.is_multicast()
    }

    /// Kernel: `ip_defrag()`: find or create the queue (`inet_frag_find()`,
    /// which refuses beyond `ipfrag_high_thresh`), queue the fragment, and
    /// reassemble once the datagram is complete.
    fn defrag(&mut self, meta: &IpMeta, pos: FragPos, payload: &[u8], now: Instant) -> Received {
        self.stats.fragments += 1;
        let sig = match self.record {
            Some(_) if meta.protocol == IpProtocol::UDP => {
                pattern::of_fragment(pos.offset, payload)
            }
            _ => None,
        };
        if self.stats.fragments.is_multiple_of(READ_EVERY) {
            self.read_record();
        }
        let key = FragKey {
            src: meta.src,
            dst: meta.dst,
            protocol: meta.protocol.0,
            ident: meta.ident,
        };
        let end = pos.offset + payload.len();
        if end + IP_HEADER_LEN > IP_MAX_LEN {
            self.give_up(&key, false);
            self.stats.unassembled[Unassembled::Unexplained as usize] += 1;
            return Received::Dropped(PeerDrop::FragTooBig);
        }
        let held = self.queues.get(&key).map_or(0, |q| q.data.len());
        if self.reasm_bytes + end.saturating_sub(held) > self.cfg.max_reasm_bytes {
            self.note(key, LOST_REFUSED);
            return Received::Dropped(PeerDrop::ReasmOverLimit);
        }
        let Some(queue) = self.queue_for(key, sig, now) else {
            return Received::Fragment;
        };
        let held = queue.data.len();
        let result = queue.insert(meta, pos, payload);
        let (complete, lost, grown) = (queue.complete(), queue.lost, queue.data.len() - held);
        self.reasm_bytes += grown;
        match result {
            Err(PeerDrop::FragDuplicate) => {
                if lost == 0 {
                    self.stats.unassembled[Unassembled::Unexplained as usize] += 1;
                }
                return Received::Dropped(PeerDrop::FragDuplicate);
            }
            Err(reason) => {
                self.give_up(&key, true);
                return Received::Dropped(reason);
            }
            Ok(()) if !complete => return Received::Fragment,
            Ok(()) => {}
        }
        self.reassemble(&key)
    }

    /// Kernel: `inet_frag_find()`, then `ip_frag_too_far()` and
    /// `ip_frag_reinit()`: the queue of `key`, made if new (marked by a
    /// note of a loss of its datagram), emptied first (`FragTooFar`) when
    /// its source sent more than `max_dist` fragments since its last one,
    /// or when it holds another datagram than the fragment's `sig` names.
    fn queue_for(
        &mut self,
        key: FragKey,
        sig: Option<u64>,
        now: Instant,
    ) -> Option<&mut FragQueue> {
        let rid = self.next_rid(key.src);
        let ext = self.unwrap_id(&key);
        let max = self.cfg.max_dist;
        let too_far = self.queues.get(&key).is_some_and(|q| {
            (max != 0 && q.fragments > 0 && rid.wrapping_sub(q.rid) > max)
                || matches!((q.sig, sig), (Some(a), Some(b)) if a != b)
        });
        if too_far {
            self.give_up(&key, false);
            self.stats.drops[PeerDrop::FragTooFar.index()] += 1;
        }
        if !self.queues.contains_key(&key) {
            let mut q = FragQueue::new(now + self.cfg.frag_timeout);
            q.ext = ext;
            q.lost = match self.notes.get(&key) {
                Some(n) if n.ext == ext => n.lost,
                _ => 0,
            };
            self.next_expiry = Some(self.next_expiry.map_or(q.deadline, |t| t.min(q.deadline)));
            self.queues.insert(key, q);
        }
        let q = self.queues.get_mut(&key)?;
        q.rid = rid;
        q.sig = q.sig.or(sig);
        Some(q)
    }

    /// With the sender's record: marks every queue held whose datagram the
    /// record says lost a fragment. Read every [`READ_EVERY`] fragments,
    /// the record still holds a datagram that lingers (its slot is taken
    /// only after its sender thread sent 2^18 / threads datagrams more),
    /// and the mark stays however long the queue does.
    fn read_record(&mut self) {
        let Some(r) = &self.record else {
            return;
        };
        for q in self.queues.values_mut() {
            if q.sig.is_some_and(|k| r.lookup(k) == Record::Dropped) {
                q.lost |= LOST_SENDER;
            }
        }
    }

    /// The source's next fragment count (`atomic_inc_return(&peer->rid)`);
    /// 0 when `max_dist` is off (the kernel then keeps no `inet_peer`).
    fn next_rid(&mut self, src: Ipv4Addr) -> u32 {
        if self.cfg.max_dist == 0 {
            return 0;
        }
        let rid = self.rids.entry(src).or_insert(0);
        *rid = rid.wrapping_add(1);
        *rid
    }

    /// Kernel: `ip_frag_reasm()` of the complete queue `key`. A queue
    /// marked as missing a dropped fragment cannot be complete with its own
    /// fragments alone: it is dropped as mixed ([`PeerDrop::FragMixed`]).
    fn reassemble(&mut self, key: &FragKey) -> Received {
        let Some(queue) = self.remove_queue(key) else {
            return Received::Fragment;
        };
        if losses(self.record.as_deref(), &queue, &mut self.record_overwritten) != 0 {
            self.stats.unassembled[Unassembled::IdReuse as usize] += 1;
            return Received::Dropped(PeerDrop::FragMixed);
        }
        match queue.finish() {
            Ok((meta, data, fragments)) => {
                self.stats.reassembled += 1;
                deliver(&meta, &data, fragments)
            }
            Err(reason) => {
                self.stats.unassembled[Unassembled::Unexplained as usize] += 1;
                Received::Dropped(reason)
            }
        }
    }

    /// Removes a queue and releases its bytes (`inet_frag_kill()`).
    fn remove_queue(&mut self, key: &FragKey) -> Option<FragQueue> {
        let queue = self.queues.remove(key)?;
        self.reasm_bytes -= queue.data.len();
        Some(queue)
    }

    /// Removes the queue `key`, if any, and counts its datagram under its
    /// attribution; `mixed`: it met an inconsistent fragment.
    fn give_up(&mut self, key: &FragKey, mixed: bool) {
        if let Some(q) = self.remove_queue(key) {
            let lost = losses(self.record.as_deref(), &q, &mut self.record_overwritten);
            self.stats.unassembled[Unassembled::of(lost, mixed) as usize] += 1;
        }
    }

    /// Records the loss `lost` of a fragment of datagram `key`: it marks
    /// the datagram's queue, now or when one of its fragments makes it.
    fn note(&mut self, key: FragKey, lost: u8) {
        let ext = self.unwrap_id(&key);
        if let Some(q) = self.queues.get_mut(&key) {
            if q.ext == ext {
                q.lost |= lost;
            }
        }
        let n = self.notes.entry(key).or_insert(Note { ext, lost: 0 });
        if n.ext != ext {
            *n = Note { ext, lost: 0 };
        }
        n.lost |= lost;
    }

    /// The place of `key`'s IP ID in its flow's ID sequence, unwrapped:
    /// taken as the one within 32,768 of the highest seen so far, which
    /// moves on with it. Two datagrams 65,536 IDs apart share a key, never
    /// an unwrapped ID.
    fn unwrap_id(&mut self, key: &FragKey) -> u64 {
        let flow = Flow::of(key);
        let head = self
            .flows
            .entry(flow)
            .or_insert(EXT_ORIGIN + u64::from(key.ident));
        let delta = key.ident.wrapping_sub(*head as u16) as i16;
        let ext = head.wrapping_add_signed(i64::from(delta));
        *head = (*head).max(ext);
        ext
    }
}

/// The reassembly key of an IPv4 fragment's header (`ip` may end after
/// the header); `None` when it is no IPv4 fragment.
fn fragment_key(ip: &[u8]) -> Option<FragKey> {
    let h: &[u8; IP_HEADER_LEN] = ip.get(..IP_HEADER_LEN)?.try_into().ok()?;
    let frag = u16::from_be_bytes([h[6], h[7]]);
    if h[0] >> 4 != 4 || frag & 0x3fff == 0 {
        return None;
    }
    Some(FragKey {
        src: Ipv4Addr::new(h[12], h[13], h[14], h[15]),
        dst: Ipv4Addr::new(h[16], h[17], h[18], h[19]),
        protocol: h[9],
        ident: u16::from_be_bytes([h[4], h[5]]),
    })
}

/// Maps a parse error of the IPv4 header to its drop reason.
fn ip_drop_reason(bytes: &[u8], err: wire::Error) -> PeerDrop {
    match err {
        wire::Error::BadVersion(_) => PeerDrop::BadVersion,
        wire::Error::BadHeaderLength => PeerDrop::BadIhl,
        wire::Error::BadChecksum => PeerDrop::BadIpChecksum,
        wire::Error::MalformedOption { .. } => PeerDrop::BadOptions,
        wire::Error::Truncated => {
            let ihl_len = bytes.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
            if bytes.len() < IP_HEADER_LEN || bytes.len() < ihl_len {
                PeerDrop::TooShort
            } else {
                PeerDrop::BadTotalLength
            }
        }
        // `BadTotalLength`, and variants `Ipv4Repr::parse` does not return.
        _ => PeerDrop::BadTotalLength,
    }
}

/// Kernel: the `martian_source` checks of `ip_route_input_slow()` and
/// `ip_route_input_mc()`: no multicast, limited-broadcast or loopback source;
/// a zero-network source only towards broadcast or multicast (DHCP, IGMP).
fn martian_source(src: Ipv4Addr, dst: Ipv4Addr) -> bool {
    let zeronet = src.octets()[0] == 0;
    src.is_multicast()
        || src.is_broadcast()
        || src.is_loopback()
        || (zeronet && !dst.is_broadcast() && !dst.is_multicast())
}

/// Kernel: `ip_local_deliver_finish()` to `__udp4_lib_rcv()` (length and
/// `udp4_csum_init()` / `udp_lib_checksum_complete()`), or to a raw socket
/// for other protocols.
fn deliver(meta: &IpMeta, payload: &[u8], fragments: usize) -> Received {
    if meta.protocol != IpProtocol::UDP {
        return Received::Ip {
            protocol: meta.protocol,
            src: meta.src,
            dst: meta.dst,
            payload: payload.to_vec(),
        };
    }
    let Ok(udp) = UdpPacket::new_checked(payload) else {
        return Received::Dropped(PeerDrop::BadUdpLength);
    };
    if usize::from(udp.len()) != payload.len() {
        return Received::Dropped(PeerDrop::BadUdpLength);
    }
    if !udp.verify_checksum(meta.src, meta.dst) {
        return Received::Dropped(PeerDrop::BadUdpChecksum);
    }
    Received::Datagram(UdpDatagram {
        src: SocketAddrV4::new(meta.src, udp.src_port()),
        dst: SocketAddrV4::new(meta.dst, udp.dst_port()),
        ip_id: meta.ident,
        tos: meta.tos,
        ttl: meta.ttl,
        df: meta.df,
        fragments,
        payload: udp.payload().to_vec(),
    })
}

/// The NIC's part of a transmission, for a device that advertises checksum
/// and UDP GSO offload: a UDP GSO packet is segmented and a
/// `CHECKSUM_PARTIAL` checksum completed before the frame is on the wire;
/// `out` gets each frame's bytes. A malformed GSO packet yields nothing (the
/// NIC drops it). This is the device's work, done with ipxmit's software
/// fallbacks (`skb_gso_segment()`, `skb_checksum_help()`); the peer's
/// receive checks that follow stay independent of them.
pub fn nic_output(f: PacketBuf, mut out: impl FnMut(&[u8])) {
    let mut emit = |mut p: PacketBuf| {
        if matches!(p.meta.ip_summed, CsumState::Partial { .. }) {
            checksum_help(&mut p);
        }
        if p.data_len() == 0 {
            out(p.linear());
        } else {
            out(&p.to_vec());
        }
    };
    if f.meta.gso_type == GsoType::None {
        emit(f);
    } else {
        segment_udp(f, Features::NONE)
            .unwrap_or_default()
            .into_iter()
            .for_each(emit);
    }
}
