//! Policy routing and path-MTU exceptions through the socket API, on the
//! virtual clock: rules on mark, TOS, source and device; route types and the
//! kernel's errno for each (`IpOutNoRoutes` only for `ENETUNREACH`);
//! `SO_BINDTODEVICE`'s on-link fallback; route metrics (`hoplimit`,
//! `mtu lock`); learned path MTUs that only lower, clamp to `min_pmtu` and
//! expire; local destinations through `lo`, never onto the wire. The
//! same rules are held against the kernel in `ipxmit-cli/tests/route_kernel.rs`.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use common::clocked_host;
use ipxmit::error::Errno;
use ipxmit::route::rules::{FibRule, RuleAction};
use ipxmit::route::{FlowKey, RtnType};
use ipxmit::stats::Mib;
use ipxmit::time::ManualClock;
use ipxmit::wire::{EtherType, EthernetFrame};
use ipxmit::{MsgFlags, PmtuDisc, RouteSpec, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;

const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn host() -> (Arc<Stack>, Arc<MemWire>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let (stack, wire) = clocked_host(clock.clone(), |_| MemWire::new(4096));
    (stack, wire, clock)
}

fn route(stack: &Stack, prefix: &str, kind: RtnType, table: u32) {
    let mut r = RouteSpec::new(prefix.parse().unwrap(), "eth0");
    r.kind = kind;
    r.table = table;
    if kind == RtnType::Unicast {
        r.via = Some(GW);
    } else {
        r.dev = None;
    }
    stack.add_route(r).unwrap();
}

fn send(s: &mut UdpSocket, to: Ipv4Addr, len: usize) -> Result<usize, Errno> {
    let buf = vec![0u8; len];
    s.send_to(&buf, SocketAddrV4::new(to, 9), MsgFlags::NONE)
        .map_err(|e| e.errno())
}

/// IPv4 frames on the wire: (TTL, DF, total length).
fn ip_frames(wire: &MemWire) -> Vec<(u8, bool, usize)> {
    let mut v = Vec::new();
    wire.drain(|p| {
        let b = p.to_vec();
        let eth = EthernetFrame::new_checked(&b[..]).unwrap();
        if eth.ethertype() == EtherType::Ipv4 {
            let ip = eth.payload();
            let len = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            v.push((ip[8], ip[6] & 0x40 != 0, len));
        }
    });
    v
}

#[test]
fn route_types_answer_with_the_kernels_errnos() {
    let (stack, _wire, _) = host();
    route(&stack, "10.40.0.0/16", RtnType::Blackhole, 254);
    route(&stack, "10.41.0.0/16", RtnType::Unreachable, 254);
    route(&stack, "10.42.0.0/16", RtnType::Prohibit, 254);
    route(&stack, "10.43.0.0/16", RtnType::Throw, 254);
    let mut rule = FibRule::lookup(50, 0);
    rule.to = Some("10.21.0.0/16".parse().unwrap());
    rule.action = RuleAction::Unreachable;
    stack.add_rule(rule).unwrap();
    let mut s = UdpSocket::new(&stack);
    let cases = [
        (Ipv4Addr::new(10, 40, 1, 1), Errno::EINVAL, 0),
        (Ipv4Addr::new(10, 41, 1, 1), Errno::EHOSTUNREACH, 0),
        (Ipv4Addr::new(10, 42, 1, 1), Errno::EACCES, 0),
        (Ipv4Addr::new(10, 43, 1, 1), Errno::ENETUNREACH, 1),
        (Ipv4Addr::new(10, 21, 1, 1), Errno::ENETUNREACH, 1),
        (Ipv4Addr::new(10, 99, 1, 1), Errno::ENETUNREACH, 1),
    ];
    for (to, errno, noroutes) in cases {
        let before = stack.counters().get(Mib::IpOutNoRoutes);
        assert_eq!(send(&mut s, to, 10), Err(errno), "to {to}");
        let counted = stack.counters().get(Mib::IpOutNoRoutes) - before;
        assert_eq!(counted, noroutes, "IpOutNoRoutes for {to}");
    }
}

#[test]
fn mark_tos_and_source_steer_to_tables() {
    let (stack, wire, _) = host();
    route(&stack, "10.98.0.0/16", RtnType::Unicast, 100);
    let mut by_mark = FibRule::lookup(10, 100);
    by_mark.fwmark = (5, 0xff);
    stack.add_rule(by_mark).unwrap();
    let mut by_tos = FibRule::lookup(11, 100);
    by_tos.tos = 0x10;
    stack.add_rule(by_tos).unwrap();
    let to = Ipv4Addr::new(10, 98, 1, 1);
    let mut s = UdpSocket::new(&stack);
    assert_eq!(send(&mut s, to, 10), Err(Errno::ENETUNREACH));
    s.set_mark(0x105);
    assert_eq!(send(&mut s, to, 10), Ok(10), "(0x105 & 0xff) == 5");
    s.set_mark(6);
    assert_eq!(send(&mut s, to, 10), Err(Errno::ENETUNREACH));
    for (tos, ok) in [(0x10, true), (0x11, true), (0x30, true), (0x14, false)] {
        s.set_tos(tos);
        assert_eq!(send(&mut s, to, 10).is_ok(), ok, "tos {tos:#x}");
    }
    assert_eq!(ip_frames(&wire).len(), 4);
}

#[test]
fn a_bound_device_takes_any_failed_lookup_on_link() {
    let (stack, _wire, _) = host();
    route(&stack, "10.42.0.0/16", RtnType::Prohibit, 254);
    let mut s = UdpSocket::new(&stack);
    assert_eq!(
        send(&mut s, Ipv4Addr::new(10, 42, 1, 1), 10),
        Err(Errno::EACCES)
    );
    assert_eq!(
        s.set_bindtodevice("nosuch").map_err(|e| e.errno()),
        Err(Errno::ENODEV)
    );
    s.set_bindtodevice("eth0").unwrap();
    let (dst, _) = stack
        .route_output_key(&FlowKey {
            oif: stack.device("eth0").unwrap().ifindex(),
            ..FlowKey::to(Ipv4Addr::new(10, 42, 1, 1))
        })
        .unwrap();
    assert_eq!(dst.gateway, None, "on link");
    assert_eq!(dst.dev.name(), "eth0");
    s.set_bindtodevice("").unwrap();
    assert_eq!(
        send(&mut s, Ipv4Addr::new(10, 42, 1, 1), 10),
        Err(Errno::EACCES)
    );
}

#[test]
fn hoplimit_sets_the_ttl_and_mtu_lock_clears_df_for_want() {
    let (stack, wire, _) = host();
    let mut r = RouteSpec::new("10.44.0.0/16".parse().unwrap(), "eth0");
    r.via = Some(GW);
    r.hoplimit = Some(5);
    r.mtu = Some(1300);
    r.mtu_lock = true;
    stack.add_route(r).unwrap();
    let mut s = UdpSocket::new(&stack);
    assert_eq!(send(&mut s, Ipv4Addr::new(10, 44, 1, 1), 100), Ok(100));
    assert_eq!(ip_frames(&wire), vec![(5, false, 128)], "TTL 5, no DF");
    s.set_mtu_discover(PmtuDisc::Do);
    assert_eq!(
        send(&mut s, Ipv4Addr::new(10, 44, 1, 1), 1273),
        Err(Errno::EMSGSIZE)
    );
    assert_eq!(send(&mut s, Ipv4Addr::new(10, 44, 1, 1), 1272), Ok(1272));
    assert_eq!(ip_frames(&wire), vec![(5, true, 1300)]);
}

#[test]
fn a_learned_path_mtu_lowers_clamps_and_expires() {
    let (stack, wire, clock) = host();
    stack.set_sysctls(|s| s.mtu_expires = Duration::from_secs(5));
    let peer = Ipv4Addr::new(10, 0, 0, 2);
    let key = FlowKey::to(peer);
    stack.update_pmtu(&key, 1300);
    assert_eq!(stack.route_cache().len(), 0, "shown after the next lookup");
    assert_eq!(stack.route_output(peer).unwrap().mtu(), 1300);
    assert_eq!(stack.route_cache().len(), 1);
    stack.update_pmtu(&key, 1400);
    assert_eq!(stack.route_output(peer).unwrap().mtu(), 1300, "only lowers");
    let mut s = UdpSocket::new(&stack);
    assert_eq!(send(&mut s, peer, 1400), Ok(1400));
    let f = ip_frames(&wire);
    assert_eq!(f.len(), 2, "fragmented at 1300: {f:?}");
    assert_eq!(f[0].2, 1300);
    stack.update_pmtu(&key, 500);
    let d = stack.route_output(peer).unwrap();
    assert_eq!((d.mtu(), d.pmtu_locked), (552, true), "clamped to min_pmtu");
    stack.update_pmtu(&key, 400);
    assert_eq!(stack.route_output(peer).unwrap().mtu(), 552, "locked");
    clock.advance(Duration::from_secs(5));
    assert_eq!(stack.route_output(peer).unwrap().mtu(), 1500, "expired");
    assert!(stack.route_cache().is_empty());
    assert_eq!(send(&mut s, peer, 1400), Ok(1400));
    assert_eq!(
        ip_frames(&wire).len(),
        1,
        "the socket's cached route expired too"
    );
}

#[test]
fn a_locked_route_mtu_learns_nothing() {
    let (stack, _wire, _) = host();
    let mut r = RouteSpec::new("10.45.0.0/16".parse().unwrap(), "eth0");
    r.via = Some(GW);
    r.mtu = Some(1400);
    r.mtu_lock = true;
    stack.add_route(r).unwrap();
    let to = Ipv4Addr::new(10, 45, 1, 1);
    stack.update_pmtu(&FlowKey::to(to), 1300);
    assert_eq!(stack.route_output(to).unwrap().mtu(), 1400);
    assert!(stack.route_cache().is_empty());
}

#[test]
fn local_destinations_go_through_lo_never_the_wire() {
    let (stack, wire, _) = host();
    let mut s = UdpSocket::new(&stack);
    for to in [
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::new(127, 1, 2, 3),
        Ipv4Addr::UNSPECIFIED,
    ] {
        let (dst, kind) = stack.route_output_key(&FlowKey::to(to)).unwrap();
        assert_eq!(dst.dev.name(), "lo", "{to}");
        assert_eq!(kind, ipxmit::route::RouteType::Local);
        assert_eq!(send(&mut s, to, 10), Ok(10), "{to}");
    }
    stack.poll();
    assert!(ip_frames(&wire).is_empty(), "nothing on eth0");
    assert_eq!(wire.len(), 0, "no ARP for the host's own address");
}

#[test]
fn a_route_tos_key_matches_the_flows_tos_masked_to_0x1c() {
    let (stack, _wire, _) = host();
    let add = |tos: u8, gw: Ipv4Addr| {
        let mut r = RouteSpec::new("10.60.0.0/16".parse().unwrap(), "eth0");
        r.via = Some(gw);
        r.tos = tos;
        stack.add_route(r).unwrap();
    };
    add(0, GW);
    add(0x10, Ipv4Addr::new(10, 0, 0, 3));
    add(0xfc, Ipv4Addr::new(10, 0, 0, 4));
    let gw = |tos: u8| {
        let key = FlowKey {
            tos,
            ..FlowKey::to(Ipv4Addr::new(10, 60, 1, 1))
        };
        stack.route_output_key(&key).unwrap().0.gateway.unwrap()
    };
    assert_eq!(gw(0), GW);
    assert_eq!(gw(0x10), Ipv4Addr::new(10, 0, 0, 3));
    assert_eq!(gw(0x11), Ipv4Addr::new(10, 0, 0, 3), "ECN bits ignored");
    assert_eq!(gw(0xfc), GW, "a route tos 0xfc matches no flow");
}
