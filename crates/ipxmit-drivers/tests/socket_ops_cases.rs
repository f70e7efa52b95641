//! Cases the `socket_ops` fuzz target (fuzz/fuzz_targets/socket_ops.rs)
//! found, each kept as a test of what the kernel does.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use ipxmit::dev::DevConfig;
use ipxmit::stats::Mib;
use ipxmit::wire::EthernetAddress;
use ipxmit::{BatchMsg, MsgFlags, RouteSpec, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;

/// `eth0` 10.0.0.1/24 on an in-memory wire, a default route via
/// 10.0.0.2 (never resolved: nobody answers ARP).
fn host() -> (Arc<Stack>, Arc<MemWire>) {
    let stack = Stack::new();
    let wire = MemWire::new(8);
    let cfg = DevConfig::ethernet("eth0", EthernetAddress([2, 0, 0, 0, 0, 1]));
    stack.add_device(cfg, wire.drivers(1)).unwrap();
    stack
        .add_addr("eth0", "10.0.0.1/24".parse().unwrap())
        .unwrap();
    let mut dflt = RouteSpec::new("0.0.0.0/0".parse().unwrap(), "eth0");
    dflt.via = Some(Ipv4Addr::new(10, 0, 0, 2));
    stack.add_route(dflt).unwrap();
    (stack, wire)
}

/// Found as a ledger mismatch (the harness expected no datagram): clearing
/// `UDP_CORK` pushes a datagram held by `MSG_MORE` even on a socket that
/// never set `UDP_CORK` — `udp_lib_setsockopt()` calls
/// `udp_push_pending_frames()` whenever the option is set to 0.
#[test]
fn clearing_udp_cork_pushes_a_msg_more_datagram() {
    let (stack, _wire) = host();
    let mut s = UdpSocket::new(&stack);
    let data = [0x5a; 2817];
    let mut m = BatchMsg::new(&data, Some(SocketAddrV4::new([60, 60, 60, 255].into(), 9)));
    m.flags = MsgFlags::MORE;
    assert_eq!(s.send_batch(&[m], MsgFlags::DONTWAIT), Ok(1));
    assert_eq!(s.pending_len(), 8 + data.len(), "held by MSG_MORE");
    assert_eq!(stack.counters().get(Mib::UdpOutDatagrams), 0);
    s.set_cork(false).unwrap();
    assert_eq!(s.pending_len(), 0);
    assert_eq!(stack.counters().get(Mib::UdpOutDatagrams), 1);
}

/// Found as a ledger mismatch (transmits 6, frames off the wires 97): a UDP
/// GSO datagram out of a device without `NETIF_F_GSO_UDP_L4` is one
/// transmit — `ip_finish_output2()` counts the GSO packet once in
/// `OutTransmits` — that the device layer cuts into `gso_segs` frames after
/// the qdisc (`validate_xmit_skb()`), each a datagram of at most
/// `gso_size` bytes that fits the MTU. (The harness took frames on a wire
/// for IP packets; seed `regression-gso-segments-on-a-wire`.)
#[test]
fn a_udp_gso_datagram_leaves_a_wire_as_its_segments_for_one_transmit() {
    let (stack, wire) = host();
    let mut s = UdpSocket::new(&stack);
    s.set_gso_size(85).unwrap();
    let data = [0x5a; 8244];
    let to = SocketAddrV4::new(Ipv4Addr::new(239, 1, 2, 3), 9);
    assert_eq!(s.send_to(&data, to, MsgFlags::DONTWAIT), Ok(data.len()));
    let mut frames = Vec::new();
    for _ in 0..100 {
        stack.poll_until_idle(16);
        wire.drain(|p| frames.push(p.to_vec()));
    }
    assert_eq!(frames.len(), data.len().div_ceil(85), "one frame a segment");
    let mut payload = 0;
    for f in &frames {
        assert!(f.len() <= 14 + 1500, "a frame of {} bytes", f.len());
        let ulen = usize::from(u16::from_be_bytes([f[38], f[39]]));
        assert!((9..=8 + 85).contains(&ulen), "a segment of {ulen} bytes");
        payload += ulen - 8;
    }
    assert_eq!(payload, data.len());
    let c = stack.counters();
    assert_eq!(c.get(Mib::IpOutTransmits), 1, "the GSO packet counted once");
    assert_eq!(c.get(Mib::UdpOutDatagrams), 1);
}
