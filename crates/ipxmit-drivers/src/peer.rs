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
//!   is queued beyond `max_reasm_bytes` (`ipfrag_high_thresh`).
//! * `__udp4_lib_rcv()` / `udp4_csum_init()` (net/ipv4/udp.c): the UDP length
//!   and the checksum over the pseudo-header (0 means none was sent).
//!
//! It is stricter than Linux where Linux repairs a sender's mistake: a fragment
//! with MF set whose payload is not a multiple of 8 bytes is rejected (Linux
//! trims it), and the UDP length must equal the IP payload length (Linux trims
//! a longer IP payload). A correct sender never triggers either.
//!
//! Every frame ends in exactly one [`Received`] outcome; every drop is counted
//! under its [`PeerDrop`] reason in [`PeerStats`]. The peer never reads a clock:
//! `now` is a parameter. Without fragments it allocates only the delivered
//! payload.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
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

/// The kernel's default `net.ipv4.ipfrag_time`: 30 seconds.
pub const DEFAULT_FRAG_TIMEOUT: Duration = Duration::from_secs(30);
/// The kernel's default `net.ipv4.ipfrag_high_thresh`: 4 MiB.
pub const DEFAULT_MAX_REASM_BYTES: usize = 4 << 20;

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
    /// Queuing the fragment would exceed `max_reasm_bytes`: it is dropped.
    ReasmOverLimit,
    /// The UDP length is below 8 or differs from the IP payload length.
    BadUdpLength,
    /// The UDP checksum does not verify.
    BadUdpChecksum,
}

impl PeerDrop {
    /// Number of reasons.
    pub const COUNT: usize = 19;

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
        PeerDrop::ReasmOverLimit,
        PeerDrop::BadUdpLength,
        PeerDrop::BadUdpChecksum,
    ];

    /// Position in [`PeerDrop::ALL`] and in [`PeerStats::drops`].
    pub const fn index(self) -> usize {
        self as usize
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
            PeerDrop::ReasmOverLimit => "IpReasmMemLimit",
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
            PeerDrop::FragDuplicate => None,
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
            PeerDrop::BadUdpLength => Some("UdpInErrors"),
            PeerDrop::BadUdpChecksum => Some("UdpInCsumErrors"),
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

    /// Every counter as (name, value), kernel names where one exists: the
    /// totals first, then one entry per drop reason ([`PeerDrop::name`]).
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
        totals.into_iter().chain(drops)
    }
}

impl fmt::Display for PeerStats {
    /// One `Name value` line per counter; drop reasons only when non-zero,
    /// then `Drops` with their total.
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
        }
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
        self.queues.retain(|_, q| {
            let live = q.deadline > now;
            if !live {
                freed += q.data.len();
            }
            live
        });
        let expired = before - self.queues.len();
        self.reasm_bytes -= freed;
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
        let key = FragKey {
            src: meta.src,
            dst: meta.dst,
            protocol: meta.protocol.0,
            ident: meta.ident,
        };
        let end = pos.offset + payload.len();
        if end + IP_HEADER_LEN > IP_MAX_LEN {
            self.remove_queue(&key);
            return Received::Dropped(PeerDrop::FragTooBig);
        }
        let held = self.queues.get(&key).map_or(0, |q| q.data.len());
        if self.reasm_bytes + end.saturating_sub(held) > self.cfg.max_reasm_bytes {
            return Received::Dropped(PeerDrop::ReasmOverLimit);
        }
        let deadline = now + self.cfg.frag_timeout;
        let queue = self
            .queues
            .entry(key)
            .or_insert_with(|| FragQueue::new(deadline));
        self.next_expiry = Some(
            self.next_expiry
                .map_or(queue.deadline, |t| t.min(queue.deadline)),
        );
        let result = queue.insert(meta, pos, payload);
        self.reasm_bytes = self.reasm_bytes - held + queue.data.len();
        match result {
            Err(PeerDrop::FragDuplicate) => return Received::Dropped(PeerDrop::FragDuplicate),
            Err(reason) => {
                self.remove_queue(&key);
                return Received::Dropped(reason);
            }
            Ok(()) if !queue.complete() => return Received::Fragment,
            Ok(()) => {}
        }
        let Some(queue) = self.remove_queue(&key) else {
            return Received::Fragment;
        };
        match queue.finish() {
            Ok((meta, data, fragments)) => {
                self.stats.reassembled += 1;
                deliver(&meta, &data, fragments)
            }
            Err(reason) => Received::Dropped(reason),
        }
    }

    /// Removes a queue and releases its bytes (`inet_frag_kill()`).
    fn remove_queue(&mut self, key: &FragKey) -> Option<FragQueue> {
        let queue = self.queues.remove(key)?;
        self.reasm_bytes -= queue.data.len();
        Some(queue)
    }
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
