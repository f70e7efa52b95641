//! Raw sockets: protocol datagrams through the cork, and `IP_HDRINCL` sends.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use etherparse::Ipv4HeaderSlice;
use ipxmit::{Errno, MsgFlags, RawSocket, SendError, Stack};
use ipxmit_drivers::mem::MemWire;

const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn host() -> (Arc<Stack>, Arc<MemWire>) {
    common::mem_host(common::eth0(), 1, 1024)
}

fn frames(wire: &MemWire) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    wire.drain(|p| v.push(p.to_vec()));
    v
}

fn to() -> SocketAddrV4 {
    SocketAddrV4::new(DST, 0)
}

#[test]
fn raw_protocol_datagram_is_corked_and_fragmented_like_udp() {
    let (stack, wire) = host();
    let mut s = RawSocket::new(&stack, 253);
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    s.send_to(&data[..1000], to(), MsgFlags::MORE).unwrap();
    assert!(wire.is_empty(), "MSG_MORE corks");
    s.send_to(&data[1000..], to(), MsgFlags::NONE).unwrap();
    let f = frames(&wire);
    let lens: Vec<u16> = f
        .iter()
        .map(|x| Ipv4HeaderSlice::from_slice(&x[14..]).unwrap().total_len())
        .collect();
    assert_eq!(
        lens,
        vec![1500, 1500, 60],
        "3000 bytes at MTU 1500: 1480 + 1480 + 40"
    );
    let mut got = Vec::new();
    for x in &f {
        let h = Ipv4HeaderSlice::from_slice(&x[14..]).unwrap();
        assert_eq!(h.protocol().0, 253);
        got.extend_from_slice(&x[34..]);
    }
    assert_eq!(got, data);
}

fn user_header(len: usize, df: bool, id: u16) -> Vec<u8> {
    let mut h = vec![0u8; 20 + len];
    h[0] = 0x45;
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6] = if df { 0x40 } else { 0 };
    h[8] = 64;
    h[9] = 253;
    h[16..20].copy_from_slice(&DST.octets());
    h
}

#[test]
fn hdrincl_fills_source_length_id_and_checksum() {
    let (stack, wire) = host();
    let mut s = RawSocket::new(&stack, 255);
    assert!(s.hdrincl());
    s.send_to(&user_header(100, false, 0), to(), MsgFlags::NONE)
        .unwrap();
    s.send_to(&user_header(100, true, 0), to(), MsgFlags::NONE)
        .unwrap();
    s.send_to(&user_header(100, false, 0x1234), to(), MsgFlags::NONE)
        .unwrap();
    let f = frames(&wire);
    assert_eq!(f.len(), 3);
    let h: Vec<_> = f
        .iter()
        .map(|x| Ipv4HeaderSlice::from_slice(&x[14..]).unwrap().to_header())
        .collect();
    for x in &h {
        assert_eq!(x.source, [10, 0, 0, 1], "source filled in");
        assert_eq!(x.total_len, 120);
        assert_eq!(x.header_checksum, x.calc_header_checksum());
    }
    assert_eq!(h[1].identification, 0, "DF with ID 0 stays 0");
    assert_eq!(h[2].identification, 0x1234, "a given ID is kept");
}

#[test]
fn hdrincl_errors() {
    let (stack, wire) = host();
    let mut s = RawSocket::new(&stack, 255);
    s.set_recverr(true);
    let e = s
        .send_to(&user_header(1481, false, 0), to(), MsgFlags::NONE)
        .unwrap_err();
    assert_eq!(e, SendError::MsgSize { mtu: 1500 });
    let ee = s.recv_err().unwrap();
    assert_eq!((ee.errno, ee.info), (Errno::EMSGSIZE, 1500));
    let e = s.send_to(&[0x45; 10], to(), MsgFlags::NONE).unwrap_err();
    assert_eq!(e.errno(), Errno::EINVAL, "shorter than a header");
    let mut bad = user_header(4, false, 0);
    bad[0] = 0x4f;
    let e = s.send_to(&bad, to(), MsgFlags::NONE).unwrap_err();
    assert_eq!(e.errno(), Errno::EINVAL, "IHL beyond the data");
    assert!(wire.is_empty());
    s.send_to(&user_header(1480, false, 0), to(), MsgFlags::NONE)
        .unwrap();
    assert_eq!(wire.len(), 1, "the socket keeps working");
}

/// `raw_sendmsg()` refuses a broadcast route without `SO_BROADCAST` before
/// it looks at `IP_HDRINCL`: a header-including send to the subnet's
/// broadcast is `EACCES` too (kernel 6.18: errno 13, then 50 bytes sent
/// once `SO_BROADCAST` is set); it used to leave.
#[test]
fn hdrincl_to_a_broadcast_needs_so_broadcast() {
    let (stack, wire) = host();
    let mut s = RawSocket::new(&stack, 255);
    let bcast = Ipv4Addr::new(10, 0, 0, 255);
    let mut h = user_header(30, false, 0);
    h[16..20].copy_from_slice(&bcast.octets());
    let to = SocketAddrV4::new(bcast, 0);
    let e = s.send_to(&h, to, MsgFlags::NONE).unwrap_err();
    assert_eq!(e.errno(), Errno::EACCES);
    assert!(frames(&wire).is_empty());
    s.set_broadcast(true);
    assert_eq!(s.send_to(&h, to, MsgFlags::NONE), Ok(50));
    assert_eq!(frames(&wire).len(), 1);
}
