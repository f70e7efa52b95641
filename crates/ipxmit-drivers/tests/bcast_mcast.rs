//! Broadcast, multicast and a down link, as `udp_sendmsg` and the output
//! route lookup treat them: `SO_BROADCAST` or `EACCES`, the broadcast and
//! multicast link addresses without ARP, `IP_MULTICAST_TTL`/`_IF`/`_LOOP`,
//! and `ENETUNREACH` once a link is down (its routes are flushed). The
//! errnos are checked against the kernel's in a namespace.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use common::netns::{VethPeer, DEV_A, VETH_PEER};
use common::{eth0, mem_host};
use ipxmit::dev::DevConfig;
use ipxmit::error::Errno;
use ipxmit::route::RouteType;
use ipxmit::wire::{EtherType, EthernetAddress, EthernetFrame};
use ipxmit::{MsgFlags, RouteSpec, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;

/// One frame off the wire: destination MAC, ethertype, IP TTL, IP source.
fn frames(wire: &MemWire) -> Vec<(EthernetAddress, EtherType, u8, Ipv4Addr)> {
    let mut v = Vec::new();
    wire.drain(|p| {
        let b = p.to_vec();
        let eth = EthernetFrame::new_checked(&b[..]).unwrap();
        let ip = eth.payload();
        let (ttl, src) = if eth.ethertype() == EtherType::Ipv4 {
            (ip[8], Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]))
        } else {
            (0, Ipv4Addr::UNSPECIFIED)
        };
        v.push((eth.dst_addr(), eth.ethertype(), ttl, src));
    });
    v
}

fn send(s: &mut UdpSocket, to: Ipv4Addr) -> Result<usize, Errno> {
    s.send_to(b"hello", SocketAddrV4::new(to, 9), MsgFlags::NONE)
        .map_err(|e| e.errno())
}

fn host() -> (Arc<Stack>, Arc<MemWire>) {
    mem_host(eth0(), 1, 64)
}

#[test]
fn broadcast_needs_so_broadcast_and_goes_to_ff_without_arp() {
    let (stack, wire) = host();
    let mut s = UdpSocket::new(&stack);
    // No route for the limited broadcast: ENETUNREACH, as the kernel
    // (no default route) — before the SO_BROADCAST check.
    assert_eq!(send(&mut s, Ipv4Addr::BROADCAST), Err(Errno::ENETUNREACH));
    let directed = Ipv4Addr::new(10, 0, 0, 255);
    assert_eq!(send(&mut s, directed), Err(Errno::EACCES));
    assert!(frames(&wire).is_empty());
    s.set_broadcast(true);
    assert_eq!(send(&mut s, directed), Ok(5));
    let f = frames(&wire);
    assert_eq!(f.len(), 1, "one frame, no ARP request: {f:?}");
    assert_eq!(f[0].0, EthernetAddress::BROADCAST);
    assert_eq!(f[0].1, EtherType::Ipv4);
    assert_eq!(f[0].2, 64, "broadcast takes the unicast TTL");
    // The network address is unicast for the kernel (no broadcast route).
    assert_eq!(
        stack.route_type(Ipv4Addr::new(10, 0, 0, 0)),
        RouteType::Unicast
    );
}

#[test]
fn limited_broadcast_through_a_default_route_skips_the_gateway() {
    let (stack, wire) = host();
    let mut spec = RouteSpec::new("0.0.0.0/0".parse().unwrap(), "eth0");
    spec.via = Some(common::PEER);
    stack.add_route(spec).unwrap();
    let mut s = UdpSocket::new(&stack);
    assert_eq!(send(&mut s, Ipv4Addr::BROADCAST), Err(Errno::EACCES));
    s.set_broadcast(true);
    assert_eq!(send(&mut s, Ipv4Addr::BROADCAST), Ok(5));
    let f = frames(&wire);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, EthernetAddress::BROADCAST, "not the gateway's MAC");
    // Multicast through the default route: on link, group MAC, TTL 1.
    assert_eq!(send(&mut s, Ipv4Addr::new(239, 129, 2, 3)), Ok(5));
    let f = frames(&wire);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        f[0].0,
        EthernetAddress([0x01, 0x00, 0x5e, 0x01, 0x02, 0x03])
    );
    assert_eq!(f[0].2, 1, "IP_MULTICAST_TTL defaults to 1");
}

#[test]
fn multicast_maps_the_group_and_takes_multicast_options() {
    let (stack, wire) = host();
    let mut s = UdpSocket::new(&stack);
    // No route, no IP_MULTICAST_IF: ENETUNREACH, as the kernel.
    assert_eq!(
        send(&mut s, Ipv4Addr::new(224, 0, 0, 1)),
        Err(Errno::ENETUNREACH)
    );
    s.set_multicast_if(Ipv4Addr::new(10, 0, 0, 1), 0).unwrap();
    assert_eq!(
        s.set_multicast_if(Ipv4Addr::new(10, 0, 0, 9), 0)
            .map_err(|e| e.errno()),
        Err(Errno::EADDRNOTAVAIL)
    );
    assert_eq!(send(&mut s, Ipv4Addr::new(224, 0, 0, 1)), Ok(5));
    s.set_ttl(Some(200)).unwrap();
    s.set_multicast_ttl(Some(7));
    s.set_multicast_loop(false);
    assert!(!s.opts().mc_loop);
    assert_eq!(send(&mut s, Ipv4Addr::new(239, 255, 255, 250)), Ok(5));
    assert_eq!(send(&mut s, common::PEER), Ok(5));
    let f = frames(&wire);
    assert_eq!(f.len(), 3, "no ARP for groups: {f:?}");
    assert_eq!(f[0].0, EthernetAddress([0x01, 0x00, 0x5e, 0, 0, 1]));
    assert_eq!((f[0].2, f[0].3), (1, Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(
        f[1].0,
        EthernetAddress([0x01, 0x00, 0x5e, 0x7f, 0xff, 0xfa])
    );
    assert_eq!(f[1].2, 7, "IP_MULTICAST_TTL, not IP_TTL");
    assert_eq!(f[2].2, 200, "IP_TTL for unicast");
    // The group entries are NOARP, as arp_constructor makes them.
    let n = stack
        .neighbours()
        .lookup(
            stack.device("eth0").unwrap().ifindex(),
            Ipv4Addr::new(224, 0, 0, 1),
        )
        .unwrap();
    assert_eq!(n.state(), ipxmit::neigh::NudState::Noarp);
}

#[test]
fn multicast_if_picks_the_device_and_a_down_one_is_unreachable() {
    let (stack, wire) = host();
    let wire1 = MemWire::new(64);
    let mac1 = EthernetAddress([2, 0, 0, 0, 1, 1]);
    stack
        .add_device(DevConfig::ethernet("eth1", mac1), wire1.drivers(1))
        .unwrap();
    stack
        .add_addr("eth1", "10.1.0.1/24".parse().unwrap())
        .unwrap();
    let mut spec = RouteSpec::new("0.0.0.0/0".parse().unwrap(), "eth0");
    spec.via = Some(common::PEER);
    stack.add_route(spec).unwrap();
    let mut s = UdpSocket::new(&stack);
    let eth1 = stack.device("eth1").unwrap().ifindex();
    s.set_multicast_if(Ipv4Addr::UNSPECIFIED, eth1).unwrap();
    let group = Ipv4Addr::new(239, 1, 1, 1);
    assert_eq!(send(&mut s, group), Ok(5));
    assert!(
        frames(&wire).is_empty(),
        "not out of the default route's eth0"
    );
    let f = frames(&wire1);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].3,
        Ipv4Addr::new(10, 1, 0, 1),
        "eth1's address as source"
    );
    stack.set_link_up("eth1", false).unwrap();
    assert_eq!(send(&mut s, group), Err(Errno::ENETUNREACH));
}

#[test]
fn a_down_link_refuses_the_send_and_up_restores_its_prefix_route() {
    let (stack, wire) = host();
    let mut spec = RouteSpec::new("192.168.0.0/16".parse().unwrap(), "eth0");
    spec.via = Some(common::PEER);
    stack.add_route(spec).unwrap();
    let mut s = UdpSocket::new(&stack);
    let unresolved = Ipv4Addr::new(10, 0, 0, 7);
    assert_eq!(send(&mut s, unresolved), Ok(5));
    wire.drain(|_| {});
    stack.set_link_up("eth0", false).unwrap();
    assert_eq!(send(&mut s, unresolved), Err(Errno::ENETUNREACH));
    assert_eq!(send(&mut s, common::PEER), Err(Errno::ENETUNREACH));
    assert!(
        stack.fib().is_empty(),
        "the kernel flushes a down link's routes"
    );
    assert!(frames(&wire).is_empty(), "nothing on the wire, no ARP");
    stack.set_link_up("eth0", true).unwrap();
    assert_eq!(send(&mut s, common::PEER), Ok(5));
    assert_eq!(
        send(&mut s, Ipv4Addr::new(192, 168, 1, 1)),
        Err(Errno::ENETUNREACH),
        "a static route through the link is gone for good, as in the kernel"
    );
}

/// The kernel's errnos for the same sends, from a socket inside namespace
/// `A` of a veth pair (10.10.0.1/24 on `xa0`): directed broadcast without
/// and with `SO_BROADCAST`, then the link down.
#[test]
fn errnos_match_the_kernel() {
    if common::skip("errnos_match_the_kernel") {
        return;
    }
    let v = VethPeer::new("bcast").unwrap();
    v.a.ip(&["addr", "add", "10.10.0.1/24", "dev", DEV_A])
        .unwrap();
    let kernel = |bcast: bool, to: Ipv4Addr| -> i32 {
        v.a.run(|| {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_broadcast(bcast).unwrap();
            match s.send_to(b"hello", SocketAddrV4::new(to, 9)) {
                Ok(_) => 0,
                Err(e) => e.raw_os_error().unwrap(),
            }
        })
        .unwrap()
    };
    let (stack, _wire) = mem_host(eth0(), 1, 64);
    stack
        .del_route("10.0.0.0/24".parse().unwrap(), None)
        .unwrap();
    stack
        .add_addr("eth0", "10.10.0.1/24".parse().unwrap())
        .unwrap();
    let ours = |bcast: bool, to: Ipv4Addr| -> i32 {
        let mut s = UdpSocket::new(&stack);
        s.set_broadcast(bcast);
        send(&mut s, to).map_or_else(|e| e.code(), |_| 0)
    };
    let bcast = Ipv4Addr::new(10, 10, 0, 255);
    let cases = [
        (false, bcast),
        (true, bcast),
        (false, Ipv4Addr::BROADCAST),
        (false, Ipv4Addr::new(224, 0, 0, 1)),
    ];
    for (b, to) in cases {
        assert_eq!(ours(b, to), kernel(b, to), "{to} so_broadcast={b}");
    }
    assert_eq!(kernel(false, bcast), Errno::EACCES.code());
    v.a.ip(&["link", "set", DEV_A, "down"]).unwrap();
    stack.set_link_up("eth0", false).unwrap();
    for (b, to) in [(false, VETH_PEER), (true, bcast)] {
        assert_eq!(ours(b, to), kernel(b, to), "down: {to}");
    }
    assert_eq!(kernel(false, VETH_PEER), Errno::ENETUNREACH.code());
}
