//! Random sequences of library socket operations on a host of two in-memory
//! wires and `lo`: `UdpSocket::new`, `bind`, `connect`, socket options
//! (`UDP_CORK`, TOS, TTL, `IP_MTU_DISCOVER`, `SO_BROADCAST`, `SO_SNDBUF`,
//! `SO_BINDTODEVICE`, `IP_OPTIONS`, `UDP_SEGMENT`, ...), `send_to`/`send`
//! with and without `MSG_MORE`/`MSG_DONTWAIT` (a blocking send with a short
//! `SO_SNDTIMEO`), `send_batch`, close, `Stack::poll`, the clock moved on,
//! wires drained, an MTU or link state changed. The host: `eth0`
//! 10.0.0.1/24 with a default route via 10.0.0.2 (a permanent neighbour, or
//! none: ARP fails), `eth1` 10.1.0.1/24, destinations drawn from the
//! addresses that matter (own, peer, unresolved, loopback, 0.0.0.0,
//! limited and directed broadcast, multicast, off-link) or anywhere.
//!
//! Invariants after every operation: no panic; every call returns within
//! two seconds of wall time; every frame taken off a wire parses with
//! `etherparse`, fits the largest MTU its device had, its IPv4 header and
//! (unfragmented) UDP/ICMP checksums verify, and nothing follows the IP
//! total length but Ethernet padding to 60 bytes; no IPv4 frame to 127/8 or
//! 0.0.0.0 leaves on a wire (only `lo` may carry them), none to a multicast
//! or broadcast address carries a unicast MAC, and no ARP request asks for
//! such an address or the host's own; IP packets handed to the neighbour
//! layer = frames on the wires + packets out of `lo` + drops after output
//! by reason + packets still queued (until a frame leaves by a wire after a
//! socket set `UDP_SEGMENT`: see `Host::gso_since`). At the end, after the stack settles:
//! datagrams accepted = `UdpOutDatagrams` + the `ENOBUFS` drops the
//! sockets swallowed, and nothing is left queued.

#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as WallInstant};

use arbitrary::Arbitrary;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use ipxmit::dev::{DevConfig, NetDevice, Tap};
use ipxmit::neigh::NudState;
use ipxmit::stats::{DevCounter, DropReason, DropSite, Mib};
use ipxmit::wire::EthernetAddress;
use ipxmit::{
    BatchMsg, ManualClock, MsgFlags, PacketBuf, PmtuDisc, RouteSpec, SendError, Stack, UdpSocket,
};
use ipxmit_drivers::mem::MemWire;
use libfuzzer_sys::fuzz_target;

const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 1, 1]];
const SOCKETS: usize = 4;
/// How long any one call may take (wall time).
const BOUND: Duration = Duration::from_secs(2);

/// Drop reasons given after the neighbour layer took the packet.
const AFTER_OUTPUT: [DropReason; 12] = [
    DropReason::QdiscDrop,
    DropReason::QdiscOverlimit,
    DropReason::QdiscCongested,
    DropReason::QueuePurge,
    DropReason::NeighFailed,
    DropReason::NeighQueueFull,
    DropReason::NeighDead,
    DropReason::NoMem,
    DropReason::DevReady,
    DropReason::FullRing,
    DropReason::SkbGsoSeg,
    DropReason::CpuBacklog,
];

#[derive(Arbitrary, Debug)]
struct Input {
    wire: u8,
    arp_fails: bool,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    Pick(u8),
    Any(u32),
}

#[derive(Arbitrary, Debug)]
enum Opt {
    Cork(bool),
    Tos(u8),
    Ttl(Option<u8>),
    MtuDiscover(u8),
    Broadcast(bool),
    SndBuf(u16),
    RecvErr(bool),
    NoCheck(bool),
    Priority(u8),
    Mark(u8),
    GsoSize(u16),
    BindToDevice(u8),
    IpOptions(Vec<u8>),
    MulticastTtl(Option<u8>),
    MulticastLoop(bool),
    ReuseAddr(bool),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Socket(u8),
    Close(u8),
    Bind(u8, Addr, u16),
    Connect(u8, Addr, u16),
    Set(u8, Opt),
    SendTo {
        s: u8,
        to: Addr,
        port: u16,
        len: u16,
        more: bool,
        block: bool,
    },
    Send {
        s: u8,
        len: u16,
        more: bool,
    },
    Batch {
        s: u8,
        msgs: Vec<(u16, Option<Addr>, bool)>,
    },
    Poll,
    Advance(u16),
    Drain(bool, u8),
    Mtu(bool, u16),
    Link(bool, bool),
}

fn addr(a: Addr) -> Ipv4Addr {
    const PICKS: [Ipv4Addr; 14] = [
        PEER,
        Ipv4Addr::new(10, 0, 0, 3),
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(127, 9, 9, 9),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(10, 0, 0, 255),
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::new(239, 1, 2, 3),
        Ipv4Addr::new(8, 8, 8, 8),
        Ipv4Addr::new(10, 1, 0, 2),
        Ipv4Addr::new(10, 1, 0, 255),
        Ipv4Addr::new(10, 1, 0, 1),
    ];
    match a {
        Addr::Pick(i) => PICKS[usize::from(i) % PICKS.len()],
        Addr::Any(x) => Ipv4Addr::from(x),
    }
}

/// What the harness saw.
#[derive(Debug, Default)]
struct Seen {
    /// Datagrams the sockets accepted.
    accepted: u64,
    /// Sends refused with `ENOBUFS` or `EAGAIN` (as `UdpSndbufErrors`).
    refused_nobufs: u64,
    /// IPv4 frames taken off the wires.
    wire_ip: u64,
}

/// Counts the ARP frames the device layer or a qdisc drops (a down link's
/// purged queue, a full qdisc): their drop reasons are the IP packets'
/// (`QUEUE_PURGE`, `QDISC_DROP`), but they are no IP packet's.
#[derive(Default)]
struct ArpDrops(AtomicU64);

impl Tap for ArpDrops {
    fn tap(&self, _dev: &NetDevice, _pkt: &PacketBuf, _now: ipxmit::Instant) {}

    fn drop_point(&self, _: &NetDevice, pkt: &PacketBuf, _: DropSite, _: ipxmit::Instant) {
        if pkt.linear().get(12..14) == Some(&[0x08, 0x06]) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Host {
    stack: Arc<Stack>,
    /// ARP frames dropped after output, on either device.
    arp_drops: Arc<ArpDrops>,
    /// Some socket was bound to eth0 or eth1 (`SO_BINDTODEVICE`): then a
    /// datagram to 127/8 may leave by that device's route, as the kernel's
    /// does (the local table's 127/8 route is on `lo`, not the bound
    /// device: `fib_table_lookup()` skips it), checked with `ipxmit diff`.
    bound_out: bool,
    /// Set when a socket first set `UDP_SEGMENT`: the IP frames taken off
    /// the wires and the drops after output until then. A GSO packet to
    /// `eth0`/`eth1` (no `NETIF_F_GSO_UDP_L4`) is one transmit that the
    /// device layer cuts into segments after the qdisc
    /// (`validate_xmit_skb()`), each a frame on the wire or a drop, which
    /// the harness cannot tell from datagrams: the packet ledger is not
    /// checked once either moved after that (`lo` takes GSO packets whole,
    /// so GSO to the host alone is still checked). Seed
    /// `regression-gso-segments-on-a-wire`.
    gso_since: Option<(u64, u64)>,
    clock: ManualClock,
    wires: [Arc<MemWire>; 2],
    socks: Vec<Option<UdpSocket>>,
    /// The largest MTU each wire's device has had.
    max_mtu: [u32; 2],
    seen: Seen,
}

fn host(input: &Input) -> Host {
    let clock = ManualClock::new();
    let stack = Stack::with_clock(Arc::new(clock.clone()));
    stack.set_seed(1);
    let cap = usize::from(input.wire % 8) + 1;
    let wires = [MemWire::new(cap), MemWire::new(cap)];
    let arp_drops = Arc::new(ArpDrops::default());
    for (i, w) in wires.iter().enumerate() {
        let cfg = DevConfig::ethernet(&format!("eth{i}"), EthernetAddress(MACS[i]));
        let dev = stack.add_device(cfg, w.drivers(1)).unwrap();
        dev.add_tap(arp_drops.clone());
        let net = format!("10.{i}.0.1/24").parse().unwrap();
        stack.add_addr(&format!("eth{i}"), net).unwrap();
    }
    if !input.arp_fails {
        let mac = EthernetAddress([2, 0, 0, 0, 0, 2]);
        stack
            .add_neigh("eth0", PEER, mac, NudState::Permanent)
            .unwrap();
    }
    let mut dflt = RouteSpec::new("0.0.0.0/0".parse().unwrap(), "eth0");
    dflt.via = Some(PEER);
    stack.add_route(dflt).unwrap();
    Host {
        stack,
        arp_drops,
        bound_out: false,
        gso_since: None,
        clock,
        wires,
        socks: (0..SOCKETS).map(|_| None).collect(),
        max_mtu: [1500; 2],
        seen: Seen::default(),
    }
}

/// The directed broadcast address of each wire's subnet.
const DIRECTED: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 0, 255), Ipv4Addr::new(10, 1, 0, 255)];
const OWN: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 1, 0, 1)];

/// Never on a wire: loopback and the unspecified address.
fn martian(a: Ipv4Addr) -> bool {
    a.is_loopback() || a.is_unspecified()
}

/// Checks one frame taken off wire `w`.
fn check_frame(h: &mut Host, w: usize, f: &[u8]) {
    assert!(f.len() >= 14, "runt frame of {} bytes", f.len());
    assert!(
        f.len() <= 14 + h.max_mtu[w] as usize,
        "frame of {} bytes",
        f.len()
    );
    let ethertype = u16::from_be_bytes([f[12], f[13]]);
    if ethertype == 0x0806 {
        assert!(f.len() >= 42, "short ARP");
        let tip = Ipv4Addr::new(f[38], f[39], f[40], f[41]);
        // A socket bound to a device resolves there what no route of that
        // device covers ("routing tables are wrong": on link), as the
        // kernel's: 127/8, the other subnet's broadcast address.
        let foreign = tip.is_loopback() || tip == DIRECTED[1 - w];
        let bound_foreign = h.bound_out && foreign;
        let bcast = tip.is_broadcast() || tip.is_multicast() || DIRECTED.contains(&tip);
        assert!(
            (!martian(tip) && !bcast) || bound_foreign,
            "ARP for {tip} on eth{w}"
        );
        assert!(tip != OWN[w], "ARP for our own {tip}");
        return;
    }
    assert_eq!(ethertype, 0x0800, "only IPv4 and ARP leave");
    h.seen.wire_ip += 1;
    let p = SlicedPacket::from_ethernet(f).unwrap_or_else(|e| panic!("etherparse: {e:?}"));
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("no IPv4 header")
    };
    let hdr = ip.header();
    let dst = hdr.destination_addr();
    let bound_loopback = h.bound_out && dst.is_loopback();
    assert!(!martian(dst) || bound_loopback, "frame to {dst} on eth{w}");
    let total = usize::from(hdr.total_len());
    let past = &f[14 + total..];
    assert!(
        past.is_empty() || (f.len() == 60 && past.iter().all(|&b| b == 0)),
        "{} bytes past the IP total length",
        past.len()
    );
    let ours = hdr.to_header().calc_header_checksum();
    assert_eq!(ours, hdr.header_checksum(), "IPv4 header checksum");
    if dst.is_multicast() || dst.is_broadcast() || dst == DIRECTED[w] {
        assert!(f[0] & 1 == 1, "{dst} to a unicast MAC on eth{w}");
    }
    let fragment = hdr.more_fragments() || hdr.fragments_offset().value() != 0;
    if fragment {
        return;
    }
    match &p.transport {
        Some(TransportSlice::Udp(u)) if u.checksum() != 0 => {
            let h4 = hdr.to_header();
            let c = u.to_header().calc_checksum_ipv4(&h4, u.payload()).unwrap();
            assert_eq!(c, u.checksum(), "UDP checksum");
        }
        Some(TransportSlice::Icmpv4(i)) => {
            let c = i.header().icmp_type.calc_checksum(i.payload());
            assert_eq!(c, i.checksum(), "ICMP checksum");
        }
        _ => {}
    }
}

fn drain(h: &mut Host, w: usize, max: usize) {
    for _ in 0..max {
        let Some(p) = h.wires[w].pop() else { return };
        let f = p.to_vec();
        drop(p);
        check_frame(h, w, &f);
    }
}

/// Packets waiting for a neighbour and in the qdiscs.
fn queued(stack: &Stack) -> u64 {
    let neigh: u64 = stack
        .neighbours()
        .entries()
        .iter()
        .map(|n| n.queued() as u64)
        .sum();
    let qdisc: u64 = stack
        .devices()
        .iter()
        .flat_map(|d| d.queues().iter())
        .map(|q| q.with_qdisc(|q| q.stats().qlen))
        .sum();
    neigh + qdisc
}

/// True when some qdisc holds a packet.
fn qdiscs_hold(stack: &Stack) -> bool {
    stack
        .devices()
        .iter()
        .flat_map(|d| d.queues().iter())
        .any(|q| q.with_qdisc(|q| q.stats().qlen) > 0)
}

/// The packet ledger, checked whenever the wires and the qdiscs are empty
/// (the frames on the wires are counted as they are taken off; a qdisc's
/// `qlen` counts the ARP requests it holds too, which are no IP packets).
fn check_packets(h: &Host) {
    if h.wires.iter().any(|w| !w.is_empty()) || qdiscs_hold(&h.stack) {
        return;
    }
    let c = h.stack.counters();
    let after = after_output(h);
    if let Some((wire, dropped)) = h.gso_since {
        if h.seen.wire_ip > wire || after > dropped {
            return;
        }
    }
    let lo = h
        .stack
        .device("lo")
        .unwrap()
        .stats
        .get(DevCounter::TxPackets);
    let (wire, q) = (h.seen.wire_ip, queued(&h.stack));
    assert_eq!(
        c.get(Mib::IpOutTransmits),
        wire + lo + after + q,
        "IP packets: transmits = wires {wire} + lo {lo} + dropped {after} + queued {q}"
    );
}

/// Drops after output of IP packets (the ARP frames' taken out).
fn after_output(h: &Host) -> u64 {
    let c = h.stack.counters();
    let arp = h.arp_drops.0.load(Ordering::Relaxed);
    AFTER_OUTPUT.iter().map(|r| c.dropped(*r)).sum::<u64>() - arp
}

/// Counts a send's outcome: `n` datagrams completed when it succeeds.
fn count(h: &mut Host, r: &Result<usize, SendError>, n: u64) {
    match r {
        Ok(_) => h.seen.accepted += n,
        Err(SendError::NoBufs | SendError::Again) => h.seen.refused_nobufs += 1,
        Err(_) => {}
    }
}

fn set(sock: &mut UdpSocket, opt: Opt) -> u64 {
    let pushes = u64::from(sock.pending_len() > 0 || sock.pending_dest().is_some());
    match opt {
        Opt::Cork(on) => {
            // Clearing UDP_CORK pushes what is pending, corked or held by
            // MSG_MORE alike (`udp_lib_setsockopt`), and succeeds whatever
            // the push gives (an ENOBUFS there is counted and swallowed).
            let _ = sock.set_cork(on);
            return if on { 0 } else { pushes };
        }
        Opt::Tos(t) => sock.set_tos(t),
        Opt::Ttl(t) => drop(sock.set_ttl(t)),
        Opt::MtuDiscover(m) => sock.set_mtu_discover(match m % 6 {
            0 => PmtuDisc::Dont,
            1 => PmtuDisc::Want,
            2 => PmtuDisc::Do,
            3 => PmtuDisc::Probe,
            4 => PmtuDisc::Interface,
            _ => PmtuDisc::Omit,
        }),
        Opt::Broadcast(on) => sock.set_broadcast(on),
        Opt::SndBuf(b) => sock.set_sndbuf(usize::from(b) * 8),
        Opt::RecvErr(on) => sock.set_recverr(on),
        Opt::NoCheck(on) => sock.set_no_check(on),
        Opt::Priority(p) => sock.set_priority(u32::from(p)),
        Opt::Mark(m) => sock.set_mark(u32::from(m)),
        Opt::GsoSize(g) => drop(sock.set_gso_size(u32::from(g))),
        Opt::BindToDevice(d) => {
            let _ = sock.set_bindtodevice(["", "eth0", "eth1", "lo"][usize::from(d % 4)]);
        }
        Opt::IpOptions(raw) => drop(sock.set_ip_options(&raw[..raw.len().min(44)])),
        Opt::MulticastTtl(t) => sock.set_multicast_ttl(t),
        Opt::MulticastLoop(on) => sock.set_multicast_loop(on),
        Opt::ReuseAddr(on) => sock.set_reuseaddr(on),
    }
    0
}

/// Whether a send with `flags` on `sock` completes a datagram.
fn completes(sock: &UdpSocket, flags: MsgFlags) -> bool {
    !flags.contains(MsgFlags::MORE) && !sock.opts().cork
}

fn run(h: &mut Host, op: Op) {
    let payload = [0x5au8; 9000];
    let slot = |s: u8| usize::from(s) % SOCKETS;
    match op {
        Op::Socket(s) => h.socks[slot(s)] = Some(UdpSocket::new(&h.stack)),
        Op::Close(s) => h.socks[slot(s)] = None,
        Op::Bind(s, a, port) => {
            if let Some(sock) = &mut h.socks[slot(s)] {
                let _ = sock.bind(SocketAddrV4::new(addr(a), port));
            }
        }
        Op::Connect(s, a, port) => {
            if let Some(sock) = &mut h.socks[slot(s)] {
                let _ = sock.connect(SocketAddrV4::new(addr(a), port));
            }
        }
        Op::Set(s, opt) => {
            let gso = matches!(opt, Opt::GsoSize(g) if g != 0) && h.socks[slot(s)].is_some();
            if gso && h.gso_since.is_none() {
                h.gso_since = Some((h.seen.wire_ip, after_output(h)));
            }
            if let Some(sock) = &mut h.socks[slot(s)] {
                if let Opt::BindToDevice(d) = opt {
                    h.bound_out |= matches!(d % 4, 1 | 2);
                }
                // Clearing UDP_CORK pushes the pending datagram and returns
                // no error whatever the push gives (as the kernel's option):
                // a push that failed (its link gone down) moves neither
                // UdpOutDatagrams nor UdpSndbufErrors, and is not counted.
                let c = h.stack.counters();
                let before = c.get(Mib::UdpOutDatagrams) + c.get(Mib::UdpSndbufErrors);
                let n = set(sock, opt);
                let c = h.stack.counters();
                let after = c.get(Mib::UdpOutDatagrams) + c.get(Mib::UdpSndbufErrors);
                h.seen.accepted += n.min(after - before);
            }
        }
        Op::SendTo {
            s,
            to,
            port,
            len,
            more,
            block,
        } => {
            let Some(sock) = &mut h.socks[slot(s)] else {
                return;
            };
            let mut flags = if block {
                MsgFlags::NONE
            } else {
                MsgFlags::DONTWAIT
            };
            if more {
                flags = flags.with(MsgFlags::MORE);
            }
            sock.set_sndtimeo(Some(Duration::from_millis(2)));
            let n = u64::from(completes(sock, flags));
            let len = usize::from(len) % payload.len();
            let r = sock.send_to(&payload[..len], SocketAddrV4::new(addr(to), port), flags);
            count(h, &r, n);
        }
        Op::Send { s, len, more } => {
            let Some(sock) = &mut h.socks[slot(s)] else {
                return;
            };
            let flags = MsgFlags::DONTWAIT.with(if more { MsgFlags::MORE } else { MsgFlags::NONE });
            let n = u64::from(completes(sock, flags));
            let len = usize::from(len) % payload.len();
            let r = sock.send(&payload[..len], flags);
            count(h, &r, n);
        }
        Op::Batch { s, msgs } => batch(h, slot(s), &msgs, &payload),
        Op::Poll => drop(h.stack.poll()),
        Op::Advance(ms) => h.clock.advance(Duration::from_millis(u64::from(ms % 4000))),
        Op::Drain(w, max) => drain(h, usize::from(w), usize::from(max)),
        Op::Mtu(w, mtu) => {
            let d = h.stack.device(&format!("eth{}", usize::from(w))).unwrap();
            if d.set_mtu(u32::from(mtu)).is_ok() {
                let m = &mut h.max_mtu[usize::from(w)];
                *m = (*m).max(u32::from(mtu));
            }
        }
        Op::Link(w, up) => drop(h.stack.set_link_up(&format!("eth{}", usize::from(w)), up)),
    }
}

/// `send_batch`: each message without `MSG_MORE` (on an uncorked socket)
/// completes a datagram; the call returns how many messages it sent.
fn batch(h: &mut Host, s: usize, msgs: &[(u16, Option<Addr>, bool)], payload: &[u8]) {
    let Some(sock) = &mut h.socks[s] else { return };
    let msgs: Vec<BatchMsg<'_>> = msgs
        .iter()
        .take(8)
        .map(|&(len, to, more)| {
            let len = usize::from(len) % payload.len();
            let dest = to.map(|a| SocketAddrV4::new(addr(a), 9));
            let mut m = BatchMsg::new(&payload[..len], dest);
            if more {
                m.flags = MsgFlags::MORE;
            }
            m
        })
        .collect();
    let mut fates = vec![ipxmit::stats::fate::MsgFate::NotSent; msgs.len()];
    let corked = sock.opts().cork;
    let r = sock.send_batch_fates(&msgs, MsgFlags::DONTWAIT, &mut fates);
    match r {
        Ok(k) => {
            let done = msgs[..k.min(msgs.len())]
                .iter()
                .filter(|m| !corked && !m.flags.contains(MsgFlags::MORE))
                .count();
            h.seen.accepted += done as u64;
            let failed = fates.iter().filter(|f| {
                matches!(
                    f,
                    ipxmit::stats::fate::MsgFate::Failed(SendError::NoBufs | SendError::Again)
                )
            });
            h.seen.refused_nobufs += failed.count() as u64;
        }
        Err(SendError::NoBufs | SendError::Again) => h.seen.refused_nobufs += 1,
        Err(_) => {}
    }
}

/// Closes every socket, drains the wires and runs the stack until nothing
/// is queued, moving the clock on when a round made no progress. Fails
/// after 1,000 rounds in a row without progress (or 100,000 in all): a
/// round may move a single frame (a full qdisc of 1,000 packets drains
/// through a one-frame wire in 1,000 rounds; seed
/// `regression-settle-a-full-qdisc-through-a-one-frame-wire`).
fn settle(h: &mut Host) {
    h.socks.iter_mut().for_each(|s| *s = None);
    let mut last = (u64::MAX, u64::MAX);
    let mut idle = 0;
    for _ in 0..100_000 {
        drain(h, 0, usize::MAX);
        drain(h, 1, usize::MAX);
        h.stack.poll();
        let now = (h.seen.wire_ip, queued(&h.stack));
        if now.1 == 0 && h.wires.iter().all(|w| w.is_empty()) {
            return;
        }
        if now == last {
            h.clock.advance(Duration::from_millis(500));
            idle += 1;
            if idle == 1000 {
                break;
            }
        } else {
            idle = 0;
        }
        last = now;
    }
    panic!("the stack did not settle: {} queued", queued(&h.stack));
}

fuzz_target!(|input: Input| {
    let mut h = host(&input);
    for op in input.ops.into_iter().take(64) {
        let t = WallInstant::now();
        run(&mut h, op);
        assert!(t.elapsed() < BOUND, "a call took {:?}", t.elapsed());
        check_packets(&h);
    }
    settle(&mut h);
    check_packets(&h);
    let c = h.stack.counters();
    let swallowed = c.get(Mib::UdpSndbufErrors) - h.seen.refused_nobufs;
    assert_eq!(
        h.seen.accepted,
        c.get(Mib::UdpOutDatagrams) + swallowed,
        "datagrams: accepted = sent by UDP + swallowed ENOBUFS ({:?})",
        h.seen
    );
});
