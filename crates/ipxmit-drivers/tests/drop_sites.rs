//! Every drop site, provoked one by one — the transmit path's by sends,
//! the receive side's by frames handed to `eth0`: each scenario
//! makes one site drop and checks that site's counter, its reason's
//! counter, and that every reason's count is the sum of its sites' (no drop
//! counted without a site). The last test checks that the scenarios cover
//! `DropSite::ALL`, so a new site without a scenario fails here.
//!
//! Filter hooks stand in for what would otherwise need a broken peer or a
//! race: a hook may set DF, strip a GSO size or take the device down, the
//! way an nft rule or an admin could between the route lookup and the
//! device.

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use ipxmit::dev::{Driver, TxQueueCtl, TxStatus};
use ipxmit::neigh::NudState;
use ipxmit::netfilter::{Hook, HookPoint, Verdict};
use ipxmit::sched::QdiscSpec;
use ipxmit::stats::{DropReason, DropSite};
use ipxmit::time::ManualClock;
use ipxmit::wire::EthernetAddress;
use ipxmit::{MsgFlags, NetDevice, PacketBuf, PmtuDisc, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;

const UNRESOLVED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);

fn to() -> SocketAddrV4 {
    SocketAddrV4::new(common::PEER, 9)
}

/// Checks that `site` dropped `n` packets (at least `n` when `at_least`),
/// that its reason counted them, and that every reason's count is the sum
/// of its sites'. Returns the site for the coverage list.
fn check(stack: &Stack, site: DropSite, n: u64, at_least: bool) -> DropSite {
    let c = stack.counters();
    let got = c.dropped_at(site);
    if at_least {
        assert!(got >= n, "{site:?}: {got} < {n}");
    } else {
        assert_eq!(got, n, "{site:?}");
    }
    assert!(c.dropped(site.reason()) >= got, "{site:?}'s reason");
    for &r in DropReason::ALL {
        let sited: u64 = DropSite::ALL
            .iter()
            .filter(|s| s.reason() == r)
            .map(|&s| c.dropped_at(s))
            .sum();
        assert_eq!(c.dropped(r), sited, "{r} counted without a site");
    }
    site
}

/// A hook doing `f` to every packet at its point.
struct Poke(fn(&mut PacketBuf, &NetDevice));

impl Hook for Poke {
    fn hook(&self, _p: HookPoint, pkt: &mut PacketBuf, out: &NetDevice) -> Verdict {
        (self.0)(pkt, out);
        Verdict::Accept
    }
}

struct DropAll;

impl Hook for DropAll {
    fn hook(&self, _p: HookPoint, _pkt: &mut PacketBuf, _out: &NetDevice) -> Verdict {
        Verdict::Drop
    }
}

fn hooked(point: HookPoint, h: Arc<dyn Hook>) -> (Arc<Stack>, Arc<MemWire>) {
    let (stack, wire) = common::mem_host(common::eth0(), 1, 64);
    stack.hooks().register(point, h);
    (stack, wire)
}

fn send(stack: &Arc<Stack>, len: usize, pmtu: PmtuDisc) -> Result<usize, ipxmit::SendError> {
    let mut s = UdpSocket::new(stack);
    s.set_mtu_discover(pmtu);
    s.send_to(&vec![7u8; len], to(), MsgFlags::NONE)
}

fn ip_layer_sites() -> Vec<DropSite> {
    let mut v = Vec::new();
    let (stack, _w) = common::mem_host(common::eth0(), 1, 64);
    assert!(send(&stack, 3000, PmtuDisc::Do).is_err());
    v.push(check(&stack, DropSite::CorkTooBig, 1, false));

    let pkt = PacketBuf::from_slice(32, &[0x45; 28]);
    assert!(ipxmit::ipv4::output::local_out(&stack, pkt).is_err());
    v.push(check(&stack, DropSite::OutputNoRoute, 1, false));

    let (stack, _w) = hooked(HookPoint::LocalOut, Arc::new(DropAll));
    assert!(send(&stack, 10, PmtuDisc::Want).is_err());
    v.push(check(&stack, DropSite::HookDrop, 1, false));

    // DF set after the cork made a datagram over the MTU (an `ip frag-off
    // set` rule would do the same).
    let (stack, _w) = hooked(
        HookPoint::PostRouting,
        Arc::new(Poke(|p, _| {
            p.meta.ip_flags.ignore_df = false;
            let h = p.network_header_mut();
            h[6] |= 0x40;
        })),
    );
    assert!(send(&stack, 3000, PmtuDisc::Dont).is_err());
    v.push(check(&stack, DropSite::FragTooBig, 1, false));
    v
}

/// eth0 with `noqueue` on a wire of `cap` frames, and `hook` at LOCAL_OUT.
fn noqueue(cap: usize, hook: Option<Arc<dyn Hook>>) -> (Arc<Stack>, Arc<MemWire>) {
    let (stack, wire) = common::mem_host(common::eth0(), 1, cap);
    stack.replace_qdisc("eth0", &QdiscSpec::Noqueue).unwrap();
    if let Some(h) = hook {
        stack.hooks().register(HookPoint::LocalOut, h);
    }
    (stack, wire)
}

fn fragment_and_device_sites() -> Vec<DropSite> {
    let mut v = Vec::new();
    // Six fragments, room for three: the fourth refused, two freed.
    let (stack, _w) = noqueue(3, None);
    assert!(send(&stack, 8000, PmtuDisc::Dont).is_err());
    v.push(check(&stack, DropSite::NoqueueBusy, 1, false));
    v.push(check(&stack, DropSite::FragListRest, 2, false));
    // Linear, the datagram is cut by the slow path: what is left of it
    // is one buffer, freed once.
    let (stack, _w) = noqueue(3, Some(Arc::new(Poke(|p, _| p.linearize()))));
    assert!(send(&stack, 8000, PmtuDisc::Dont).is_err());
    v.push(check(&stack, DropSite::FragSlowRest, 1, false));

    // A netdev egress drop: NET_XMIT_DROP, which UDP without IP_RECVERR
    // reports as success.
    let (stack, _w) = hooked(HookPoint::Egress, Arc::new(DropAll));
    assert_eq!(send(&stack, 10, PmtuDisc::Want).ok(), Some(10));
    v.push(check(&stack, DropSite::EgressHookDrop, 1, false));

    let (stack, _w) = noqueue(8, None);
    stack.device("eth0").unwrap().queues()[0].ctl().stop();
    assert!(send(&stack, 10, PmtuDisc::Want).is_err());
    v.push(check(&stack, DropSite::NoqueueStopped, 1, false));

    let (stack, _w) = hooked(
        HookPoint::PostRouting,
        Arc::new(Poke(|_, dev| dev.set_up(false))),
    );
    assert!(send(&stack, 10, PmtuDisc::Want).is_err());
    v.push(check(&stack, DropSite::DevDown, 1, false));

    // A UDP GSO packet whose segment size a hook cleared, on a device
    // without GSO: software segmentation refuses it.
    let (stack, _w) = hooked(
        HookPoint::PostRouting,
        Arc::new(Poke(|p, _| p.meta.gso_size = 0)),
    );
    let mut s = UdpSocket::new(&stack);
    s.set_gso_size(1000).unwrap();
    let _ = s.send_to(&[1u8; 3000], to(), MsgFlags::NONE);
    v.push(check(&stack, DropSite::GsoSegFail, 1, false));

    let stack = common::driver_stack(Box::new(Failing), common::eth0(), None);
    let _ = send(&stack, 10, PmtuDisc::Want);
    v.push(check(&stack, DropSite::DriverError, 1, false));

    let stack = common::driver_stack(Box::new(LateDropping(None)), common::eth0(), None);
    let _ = send(&stack, 10, PmtuDisc::Want);
    v.push(check(&stack, DropSite::DriverLateDrop, 1, false));
    let d = stack.device("eth0").unwrap().stats.snapshot();
    assert_eq!((d.tx_packets, d.tx_bytes, d.tx_dropped), (0, 0, 1), "{d:?}");
    v
}

/// A driver that takes every frame and then finds it dropped by its
/// device (as a ring driver learns from the kernel after the fact).
struct LateDropping(Option<Arc<TxQueueCtl>>);

impl Driver for LateDropping {
    fn attach(&mut self, ctl: Arc<TxQueueCtl>) {
        self.0 = Some(ctl);
    }

    fn start_xmit(&mut self, pkt: PacketBuf, _more: bool) -> TxStatus {
        if let Some(ctl) = &self.0 {
            ctl.late_drop(1, pkt.len() as u64);
        }
        TxStatus::Ok
    }
}

/// A driver that fails every frame.
struct Failing;

impl Driver for Failing {
    fn start_xmit(&mut self, _pkt: PacketBuf, _more: bool) -> TxStatus {
        TxStatus::Error
    }
}

fn qdisc_sites() -> Vec<DropSite> {
    let mut v = Vec::new();
    for (spec, site) in [
        ("pfifo limit 2", DropSite::QdiscDrop),
        ("codel limit 2", DropSite::QdiscOverlimit),
    ] {
        let (stack, _w) = common::mem_host(common::eth0(), 1, 64);
        stack.replace_qdisc("eth0", &spec.parse().unwrap()).unwrap();
        stack.device("eth0").unwrap().queues()[0].ctl().stop();
        for _ in 0..5 {
            let _ = send(&stack, 10, PmtuDisc::Want);
        }
        v.push(check(&stack, site, 3, false));
        stack.replace_qdisc("eth0", &QdiscSpec::PfifoFast).unwrap();
        v.push(check(&stack, DropSite::QueuePurge, 2, false));
    }
    v.push(red_congested());
    v
}

/// RED with a stopped queue: the average backlog climbs past `max` and
/// RED drops at enqueue (not ECN-capable: no mark).
fn red_congested() -> DropSite {
    let (stack, _w) = common::mem_host(common::eth0(), 1, 64);
    let spec = "red limit 60000 min 3000 max 9000 avpkt 1000 burst 4 probability 1";
    stack.replace_qdisc("eth0", &spec.parse().unwrap()).unwrap();
    stack.device("eth0").unwrap().queues()[0].ctl().stop();
    for _ in 0..50 {
        let _ = send(&stack, 1000, PmtuDisc::Want);
    }
    check(&stack, DropSite::QdiscCongested, 1, true)
}

/// A host whose neighbour 10.0.0.3 is not resolved, on the manual clock.
fn unresolved() -> (Arc<Stack>, Arc<MemWire>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let (stack, wire) = common::clocked_host(clock.clone(), |_| MemWire::new(4096));
    (stack, wire, clock)
}

fn send_unresolved(stack: &Arc<Stack>, n: usize, len: usize) {
    let mut s = UdpSocket::new(stack);
    for _ in 0..n {
        s.send_to(
            &vec![0; len],
            SocketAddrV4::new(UNRESOLVED, 9),
            MsgFlags::NONE,
        )
        .unwrap();
    }
}

fn neigh_sites() -> Vec<DropSite> {
    let mut v = Vec::new();
    let (stack, _w, _c) = unresolved();
    send_unresolved(&stack, 200, 1400);
    v.push(check(&stack, DropSite::NeighQueueFull, 1, true));

    let (stack, _w, clock) = unresolved();
    send_unresolved(&stack, 3, 10);
    for _ in 0..4 {
        clock.advance(Duration::from_secs(1));
        stack.poll();
    }
    v.push(check(&stack, DropSite::NeighFailed, 3, false));

    let (stack, _w, _c) = unresolved();
    send_unresolved(&stack, 2, 10);
    assert!(stack.del_neigh("eth0", UNRESOLVED).unwrap());
    v.push(check(&stack, DropSite::NeighDead, 2, false));

    // A packet queued on the neighbour without room for the link header,
    // released when the neighbour resolves.
    let (stack, _w, _c) = unresolved();
    let dst = stack.route_output(UNRESOLVED).unwrap();
    let mut h = [0u8; 28];
    h[0] = 0x45;
    h[8] = 64;
    h[9] = 17;
    h[12..16].copy_from_slice(&[10, 0, 0, 1]);
    h[16..20].copy_from_slice(&UNRESOLVED.octets());
    let mut pkt = PacketBuf::from_slice(0, &h);
    pkt.meta.dst = Some(dst);
    let _ = ipxmit::ipv4::output::local_out(&stack, pkt);
    let mac = EthernetAddress([2, 0, 0, 0, 0, 3]);
    stack
        .add_neigh("eth0", UNRESOLVED, mac, NudState::Reachable)
        .unwrap();
    v.push(check(&stack, DropSite::NeighNoHeadroom, 1, false));
    v
}

/// `lo`'s driver over a backlog no one drains (the stack drains its own
/// after each send, so a send cannot fill it): the frames past
/// `netdev_max_backlog` are dropped and counted when settled.
fn backlog_site() -> DropSite {
    use ipxmit::dev::loopback::{Backlog, LoopbackDriver, LoopbackDrops, NETDEV_MAX_BACKLOG};
    let stack = Stack::new();
    let lo = stack.loopback().unwrap();
    let backlog = Arc::new(Backlog::new(Arc::default()));
    let drops = Arc::new(LoopbackDrops::default());
    let mut drv = LoopbackDriver::new(lo.ifindex(), backlog, drops.clone());
    for _ in 0..NETDEV_MAX_BACKLOG + 5 {
        drv.start_xmit(PacketBuf::from_slice(0, &[0x45; 20]), false);
    }
    drops.settle(stack.counters(), &lo);
    check(&stack, DropSite::Backlog, 5, false)
}

/// An Ethernet frame to `mac` with an IPv4 header from `src` to `dst` of
/// protocol `proto` (checksum filled, then `edit` applied to the header)
/// and `payload`.
fn rx_frame(
    mac: [u8; 6],
    (src, dst): (Ipv4Addr, Ipv4Addr),
    proto: u8,
    payload: &[u8],
    edit: fn(&mut [u8]),
) -> Vec<u8> {
    use ipxmit::wire::Ipv4Packet;
    let mut f = Vec::with_capacity(34 + payload.len());
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 0x08, 0x00]);
    let mut h = [0u8; 20];
    let mut ip = Ipv4Packet::new_unchecked(&mut h[..]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_total_len(20 + payload.len() as u16);
    ip.set_ttl(64);
    ip.set_protocol(ipxmit::wire::IpProtocol(proto));
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.fill_checksum();
    edit(&mut h);
    f.extend_from_slice(&h);
    f.extend_from_slice(payload);
    f
}

/// A UDP datagram from the peer's port 7 to `dport` of ours.
fn rx_udp(dport: u16, data: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 8 + data.len()];
    let mut u = ipxmit::wire::UdpPacket::new_unchecked(&mut b[..]);
    u.set_src_port(7);
    u.set_dst_port(dport);
    u.set_len(8 + data.len() as u16);
    u.payload_mut().copy_from_slice(data);
    u.fill_checksum(common::PEER, ME);
    b
}

/// An ICMP message of `t`/`code` with `quote` after its header.
fn rx_icmp(t: u8, code: u8, quote: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 8 + quote.len()];
    let mut m = ipxmit::wire::icmp::IcmpPacket::new_unchecked(&mut b[..]);
    m.set_msg_type(t);
    m.set_code(code);
    m.data_mut().copy_from_slice(quote);
    m.fill_checksum();
    b
}

const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const MAC_ME: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn no_edit(_: &mut [u8]) {}

/// The header's checksum computed again after an edit.
fn refill(h: &mut [u8]) {
    ipxmit::wire::Ipv4Packet::new_unchecked(h).fill_checksum();
}

/// Each receive-side site (but a full receive buffer's) with the frame
/// that makes it drop.
fn receive_cases() -> Vec<(DropSite, Vec<u8>)> {
    use DropSite::*;
    let peer = common::PEER;
    let to_me = (peer, ME);
    let udp = rx_udp(9, b"data");
    let mut bad_udp = udp.clone();
    bad_udp[6] ^= 0xff;
    let mut bad_icmp = rx_icmp(3, 3, &[0x45; 28]);
    bad_icmp[2] ^= 0xff;
    let quote_ihl4 = [&[0x44u8][..], &[0; 27]].concat();
    let cases = vec![
        (
            RcvOtherHost,
            rx_frame([2, 0, 0, 0, 0, 9], to_me, 17, &udp, no_edit),
        ),
        (
            RcvHeader,
            rx_frame(MAC_ME, to_me, 17, &udp, |h| h[0] = 0x65),
        ),
        (
            RcvChecksum,
            rx_frame(MAC_ME, to_me, 17, &udp, |h| h[10] ^= 1),
        ),
        (
            RcvTruncated,
            rx_frame(MAC_ME, to_me, 17, &udp, |h| {
                h[3] += 10;
                refill(h);
            }),
        ),
        (
            RcvFragment,
            rx_frame(MAC_ME, to_me, 17, &udp, |h| {
                h[6] |= 0x20;
                refill(h);
            }),
        ),
        (
            RcvMartian,
            rx_frame(MAC_ME, (Ipv4Addr::new(224, 0, 0, 5), ME), 17, &udp, no_edit),
        ),
        (
            RcvNoGroup,
            rx_frame(
                MAC_ME,
                (peer, Ipv4Addr::new(239, 1, 1, 1)),
                17,
                &udp,
                no_edit,
            ),
        ),
        (
            RcvBadDest,
            rx_frame(MAC_ME, (peer, Ipv4Addr::new(0, 1, 2, 3)), 17, &udp, no_edit),
        ),
        (
            RcvNotLocal,
            rx_frame(
                MAC_ME,
                (peer, Ipv4Addr::new(10, 0, 0, 77)),
                17,
                &udp,
                no_edit,
            ),
        ),
        (RcvNoProto, rx_frame(MAC_ME, to_me, 200, b"x", no_edit)),
        (IcmpShort, rx_frame(MAC_ME, to_me, 1, &[3, 3, 0], no_edit)),
        (IcmpChecksum, rx_frame(MAC_ME, to_me, 1, &bad_icmp, no_edit)),
        (
            IcmpType,
            rx_frame(MAC_ME, to_me, 1, &rx_icmp(40, 0, &[]), no_edit),
        ),
        (
            IcmpBroadcast,
            rx_frame(
                MAC_ME,
                (peer, Ipv4Addr::BROADCAST),
                1,
                &rx_icmp(8, 0, &[]),
                no_edit,
            ),
        ),
        (
            IcmpShortQuote,
            rx_frame(MAC_ME, to_me, 1, &rx_icmp(3, 3, &[0x45; 8]), no_edit),
        ),
        (
            IcmpQuoteHeader,
            rx_frame(MAC_ME, to_me, 1, &rx_icmp(3, 3, &quote_ihl4), no_edit),
        ),
        (UdpShort, rx_frame(MAC_ME, to_me, 17, &[0, 7, 0], no_edit)),
        (UdpChecksum, rx_frame(MAC_ME, to_me, 17, &bad_udp, no_edit)),
        (UdpNoSocket, rx_frame(MAC_ME, to_me, 17, &udp, no_edit)),
    ];
    cases
}

/// Every receive-side site, each on a host of its own.
fn receive_sites() -> Vec<DropSite> {
    let to_me = (common::PEER, ME);
    let mut v = Vec::new();
    for (site, frame) in receive_cases() {
        let (stack, _w) = common::mem_host(common::eth0(), 1, 64);
        let eth0 = stack.device("eth0").unwrap();
        stack.receive(&eth0, &frame);
        v.push(check(&stack, site, 1, false));
    }
    let (stack, _w) = common::mem_host(common::eth0(), 1, 64);
    let mut s = UdpSocket::new(&stack);
    s.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9)).unwrap();
    s.set_rcvbuf(0);
    let eth0 = stack.device("eth0").unwrap();
    let big = rx_udp(9, &[7; 1000]);
    for _ in 0..4 {
        stack.receive(&eth0, &rx_frame(MAC_ME, to_me, 17, &big, no_edit));
    }
    v.push(check(&stack, DropSite::UdpRcvbuf, 1, true));
    v
}

#[test]
fn every_drop_site_is_provoked_named_and_counted() {
    let mut covered = BTreeSet::new();
    covered.extend(ip_layer_sites());
    covered.extend(fragment_and_device_sites());
    covered.extend(qdisc_sites());
    covered.extend(neigh_sites());
    covered.insert(backlog_site());
    covered.extend(receive_sites());
    let all: BTreeSet<DropSite> = DropSite::ALL.iter().copied().collect();
    let missing: Vec<_> = all.difference(&covered).collect();
    assert!(missing.is_empty(), "sites without a scenario: {missing:?}");
}
