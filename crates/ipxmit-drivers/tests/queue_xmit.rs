//! `ip_queue_xmit`: a connected socket's transport segments get their IP header
//! from the socket (TOS, TTL, DF, protocol, addresses, options) and IDs from its
//! own counter.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use etherparse::Ipv4HeaderSlice;
use ipxmit::{PacketBuf, PmtuDisc, SendError, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;

const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn host(mtu: u32) -> (Arc<Stack>, Arc<MemWire>) {
    let (stack, wire) = common::mem_host(common::eth0(), 1, 1024);
    stack.device("eth0").unwrap().set_mtu(mtu).unwrap();
    (stack, wire)
}

fn connected(stack: &Arc<Stack>) -> UdpSocket {
    let mut s = UdpSocket::new(stack);
    s.bind(SocketAddrV4::new(SRC, 5000)).unwrap();
    s.connect(SocketAddrV4::new(DST, 6000)).unwrap();
    s
}

fn segment(len: usize) -> PacketBuf {
    let data: Vec<u8> = (0..len).map(|i| (i * 3) as u8).collect();
    PacketBuf::from_slice(128, &data)
}

fn frames(wire: &MemWire) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    wire.drain(|p| v.push(p.to_vec()));
    v
}

#[test]
fn header_comes_from_the_socket_and_ids_from_its_counter() {
    let (stack, wire) = host(1500);
    let mut s = connected(&stack);
    s.set_tos(0xb8);
    s.set_ttl(Some(9)).unwrap();
    for n in [10, 100, 1000] {
        s.queue_xmit(segment(n)).unwrap();
    }
    let f = frames(&wire);
    assert_eq!(f.len(), 3);
    let mut ids = Vec::new();
    for (x, n) in f.iter().zip([10, 100, 1000]) {
        let h = Ipv4HeaderSlice::from_slice(&x[14..]).unwrap();
        assert_eq!(h.total_len() as usize, 20 + n);
        assert_eq!(x[15], 0xb8, "TOS");
        assert_eq!(h.ttl(), 9);
        assert_eq!(h.protocol().0, 17);
        assert!(h.dont_fragment(), "IP_PMTUDISC_WANT: DF");
        assert_eq!(h.source_addr(), SRC);
        assert_eq!(h.destination_addr(), DST);
        assert_eq!(internet_checksum::checksum(&x[14..34]), [0, 0]);
        assert_eq!(&x[34..], &segment(n).to_vec()[..]);
        ids.push(h.identification());
    }
    assert_eq!(ids[1], ids[0].wrapping_add(1));
    assert_eq!(ids[2], ids[1].wrapping_add(1));
}

#[test]
fn df_segments_over_the_mtu_are_refused_and_others_fragmented() {
    let (stack, wire) = host(576);
    let mut s = connected(&stack);
    let e = s.queue_xmit(segment(1000)).unwrap_err();
    assert_eq!(e, SendError::MsgSize { mtu: 576 });
    assert!(wire.is_empty());
    s.set_mtu_discover(PmtuDisc::Dont);
    s.queue_xmit(segment(1000)).unwrap();
    let f = frames(&wire);
    assert_eq!(f.len(), 2);
    let lens: Vec<u16> = f
        .iter()
        .map(|x| Ipv4HeaderSlice::from_slice(&x[14..]).unwrap().total_len())
        .collect();
    assert_eq!(lens, [572, 468]);
}

#[test]
fn options_are_built_for_the_peer() {
    let (stack, wire) = host(1500);
    let mut s = connected(&stack);
    // Loose source route through the peer, and a record route.
    s.set_ip_options(&[131, 7, 4, 10, 0, 0, 2, 7, 7, 4, 0, 0, 0, 0])
        .unwrap();
    s.queue_xmit(segment(40)).unwrap();
    let f = frames(&wire);
    assert_eq!(f.len(), 1);
    let h = Ipv4HeaderSlice::from_slice(&f[0][14..]).unwrap();
    assert_eq!(h.destination_addr(), DST, "routed to the first hop");
    assert_eq!(
        h.options(),
        [131, 7, 4, 10, 0, 0, 2, 7, 7, 8, 10, 0, 0, 1, 0, 0],
        "the peer in the route's last slot, the source in the record"
    );
}
