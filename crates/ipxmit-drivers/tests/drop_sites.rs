//! Every drop site of the transmit path, provoked one by one: each scenario
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

use ipxmit::dev::{Driver, TxStatus};
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
    v
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

#[test]
fn every_drop_site_is_provoked_named_and_counted() {
    let mut covered = BTreeSet::new();
    covered.extend(ip_layer_sites());
    covered.extend(fragment_and_device_sites());
    covered.extend(qdisc_sites());
    covered.extend(neigh_sites());
    covered.insert(backlog_site());
    let all: BTreeSet<DropSite> = DropSite::ALL.iter().copied().collect();
    let missing: Vec<_> = all.difference(&covered).collect();
    assert!(missing.is_empty(), "sites without a scenario: {missing:?}");
}
