use super::*;
use crate::wire::ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr};
use crate::wire::ipv4::{self, ChecksumCheck, Ipv4Packet, Ipv4Repr};
use proptest::prelude::*;

const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// 1234 -> 5678, payload "hi!!", checksum for 10.0.0.1 -> 10.0.0.2.
const DATAGRAM: [u8; 12] = [
    0x04, 0xd2, 0x16, 0x2e, 0x00, 0x0c, 0x47, 0x49, b'h', b'i', b'!', b'!',
];

const REPR: UdpRepr = UdpRepr {
    src_port: 1234,
    dst_port: 5678,
};

#[test]
fn view_getters() {
    let p = UdpPacket::new_checked(&DATAGRAM[..]).unwrap();
    assert_eq!(p.src_port(), 1234);
    assert_eq!(p.dst_port(), 5678);
    assert_eq!(p.len(), 12);
    assert!(!p.is_empty());
    assert_eq!(p.checksum(), 0x4749);
    assert_eq!(p.payload(), b"hi!!");
    assert!(p.verify_checksum(SRC, DST));
    assert!(!p.verify_checksum(SRC, Ipv4Addr::new(10, 0, 0, 3)));
}

#[test]
fn parse_fixture() {
    let p = UdpPacket::new_unchecked(&DATAGRAM[..]);
    assert_eq!(UdpRepr::parse(&p, SRC, DST, true), Ok(REPR));
    let mut bad = DATAGRAM;
    bad[8] = b'H';
    let p = UdpPacket::new_unchecked(&bad[..]);
    assert_eq!(UdpRepr::parse(&p, SRC, DST, true), Err(Error::BadChecksum));
    assert_eq!(UdpRepr::parse(&p, SRC, DST, false), Ok(REPR));
    // A zero checksum means none was sent.
    bad[6..8].fill(0);
    let p = UdpPacket::new_unchecked(&bad[..]);
    assert_eq!(UdpRepr::parse(&p, SRC, DST, true), Ok(REPR));
}

#[test]
fn length_errors() {
    for len in 0..8 {
        assert_eq!(
            UdpPacket::new_checked(&DATAGRAM[..len]).err(),
            Some(Error::Truncated)
        );
    }
    assert_eq!(
        UdpPacket::new_checked(&DATAGRAM[..11]).err(),
        Some(Error::Truncated)
    );
    let mut bad = DATAGRAM;
    bad[5] = 7;
    assert_eq!(
        UdpPacket::new_checked(&bad[..]).err(),
        Some(Error::BadLength)
    );
    let p = UdpPacket::new_unchecked(&DATAGRAM[..3]);
    assert_eq!(UdpRepr::parse(&p, SRC, DST, true), Err(Error::Truncated));
}

#[test]
fn emit_fixture() {
    let mut buf = [0u8; 12];
    buf[8..].copy_from_slice(b"hi!!");
    let compute = UdpChecksum::Compute {
        src_addr: SRC,
        dst_addr: DST,
    };
    REPR.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), 4, compute);
    assert_eq!(buf, DATAGRAM);
    assert_eq!(udp_checksum(SRC, DST, &DATAGRAM), 0x4749);

    let sum = Csum::of(b"hi!!");
    let mut buf2 = [0u8; 12];
    buf2[8..].copy_from_slice(b"hi!!");
    let with_sum = UdpChecksum::PayloadSum {
        src_addr: SRC,
        dst_addr: DST,
        sum,
    };
    REPR.emit(&mut UdpPacket::new_unchecked(&mut buf2[..]), 4, with_sum);
    assert_eq!(buf2, DATAGRAM);
    let header: [u8; 8] = DATAGRAM[..8].try_into().unwrap();
    assert_eq!(
        udp_checksum_with_payload_sum(SRC, DST, &header, sum),
        0x4749
    );

    REPR.emit(
        &mut UdpPacket::new_unchecked(&mut buf2[..]),
        4,
        UdpChecksum::None,
    );
    assert_eq!(&buf2[6..8], &[0, 0]);
    assert_eq!(REPR.header_len(), 8);
    assert_eq!(REPR.buffer_len(4), 12);
}

#[test]
fn fill_checksum_view() {
    let mut buf = DATAGRAM;
    buf[6..8].copy_from_slice(&[0x12, 0x34]);
    let mut p = UdpPacket::new_unchecked(&mut buf[..]);
    p.fill_checksum(SRC, DST);
    assert_eq!(p.checksum(), 0x4749);
    p.payload_mut()[0] = b'H';
    p.fill_checksum(SRC, DST);
    assert!(p.verify_checksum(SRC, DST));
}

#[test]
fn partial_checksum_is_finished_by_summing() {
    let mut buf = [0u8; 12];
    buf[8..].copy_from_slice(b"hi!!");
    let partial = UdpChecksum::Partial {
        src_addr: SRC,
        dst_addr: DST,
    };
    REPR.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), 4, partial);
    // What a device (or skb_checksum_help) does: sum from the UDP header on,
    // store the complement at csum_offset 6.
    let finished = Csum::of(&buf).finish();
    assert_eq!(finished, 0x4749);
}

/// A payload whose checksum computes to 0 must carry 0xffff, and verify.
#[test]
fn computed_zero_is_sent_as_ffff() {
    let mut buf = [0u8; 12];
    buf[8..10].copy_from_slice(b"ok");
    REPR.emit(
        &mut UdpPacket::new_unchecked(&mut buf[..]),
        4,
        UdpChecksum::None,
    );
    // Choose the last payload word so that the full sum folds to 0xffff.
    let pseudo = pseudo_header_v4(SRC, DST, 17, 12);
    let raw = pseudo.add(Csum::of(&buf)).finish();
    buf[10..12].copy_from_slice(&raw.to_be_bytes());
    assert_eq!(pseudo.add(Csum::of(&buf)).finish(), 0);
    assert_eq!(udp_checksum(SRC, DST, &buf), 0xffff);
    let compute = UdpChecksum::Compute {
        src_addr: SRC,
        dst_addr: DST,
    };
    REPR.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), 4, compute);
    let p = UdpPacket::new_checked(&buf[..]).unwrap();
    assert_eq!(p.checksum(), 0xffff);
    assert!(p.verify_checksum(SRC, DST));
    assert_eq!(UdpRepr::parse(&p, SRC, DST, true), Ok(REPR));
    let payload: [u8; 4] = buf[8..].try_into().unwrap();
    let header: [u8; 8] = buf[..8].try_into().unwrap();
    assert_eq!(
        udp_checksum_with_payload_sum(SRC, DST, &header, Csum::of(&payload)),
        0xffff
    );
}

#[test]
fn etherparse_builds_we_parse() {
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .udp(4000, 53);
    let payload = b"an odd-length payload";
    let mut frame = Vec::new();
    builder.write(&mut frame, payload).unwrap();

    let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
    let eth_repr = EthernetRepr::parse(&eth).unwrap();
    assert_eq!(eth_repr.ethertype, EtherType::Ipv4);
    assert_eq!(eth_repr.src_addr, EthernetAddress([2, 0, 0, 0, 0, 1]));
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    let ip_repr = Ipv4Repr::parse(&ip, ChecksumCheck::Verify).unwrap();
    assert_eq!(ip_repr.protocol, IpProtocol::UDP);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    let udp_repr = UdpRepr::parse(&udp, ip_repr.src_addr, ip_repr.dst_addr, true).unwrap();
    assert_eq!(
        udp_repr,
        UdpRepr {
            src_port: 4000,
            dst_port: 53
        }
    );
    assert_eq!(udp.payload(), payload);
    assert_eq!(
        udp_checksum(ip_repr.src_addr, ip_repr.dst_addr, ip.payload()),
        udp.checksum()
    );
}

/// Builds Ethernet + IPv4 + UDP with this module only.
fn build_frame(src: Ipv4Addr, dst: Ipv4Addr, udp: UdpRepr, payload: &[u8], ident: u16) -> Vec<u8> {
    let udp_len = HEADER_LEN + payload.len();
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: IpProtocol::UDP,
        ttl: 64,
        ident,
        dont_frag: true,
        payload_len: udp_len,
        ..Ipv4Repr::default()
    };
    let mut frame = vec![0u8; 14 + ip.buffer_len()];
    let eth = EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
        ethertype: EtherType::Ipv4,
    };
    eth.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    let (_, rest) = frame.split_at_mut(14);
    let (ip_hdr, udp_bytes) = rest.split_at_mut(ipv4::HEADER_LEN);
    let sum = Csum::copy_and_sum(payload, &mut udp_bytes[HEADER_LEN..]);
    let check = UdpChecksum::PayloadSum {
        src_addr: src,
        dst_addr: dst,
        sum,
    };
    udp.emit(
        &mut UdpPacket::new_unchecked(&mut udp_bytes[..]),
        payload.len(),
        check,
    );
    ipv4::emit_header(ip_hdr, &ip, &[]);
    frame
}

proptest! {
    #[test]
    fn etherparse_parses_ours(
        src in any::<u32>(), dst in any::<u32>(), sport in any::<u16>(), dport in any::<u16>(),
        payload in proptest::collection::vec(any::<u8>(), 0..1500), ident in any::<u16>(),
    ) {
        let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
        let repr = UdpRepr { src_port: sport, dst_port: dport };
        let frame = build_frame(src, dst, repr, &payload, ident);

        let sliced = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &sliced.net else { panic!("not IPv4") };
        prop_assert_eq!(ip.header().source_addr(), src);
        prop_assert_eq!(ip.header().destination_addr(), dst);
        prop_assert_eq!(ip.header().identification(), ident);
        prop_assert_eq!(ip.header().header_checksum(), ip.header().to_header().calc_header_checksum());
        let Some(etherparse::TransportSlice::Udp(udp)) = &sliced.transport else { panic!("not UDP") };
        prop_assert_eq!(udp.source_port(), sport);
        prop_assert_eq!(udp.destination_port(), dport);
        prop_assert_eq!(udp.payload(), &payload[..]);
        let expected = udp.to_header()
            .calc_checksum_ipv4_raw(src.octets(), dst.octets(), &payload)
            .unwrap();
        prop_assert_eq!(udp.checksum(), expected);

        // And we parse our own frame back.
        let ip_view = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        let udp_view = UdpPacket::new_checked(ip_view.payload()).unwrap();
        prop_assert_eq!(UdpRepr::parse(&udp_view, src, dst, true), Ok(repr));
        prop_assert_eq!(udp_view.payload(), &payload[..]);
    }

    #[test]
    fn checksum_variants_agree(
        payload in proptest::collection::vec(any::<u8>(), 0..600),
        src in any::<u32>(), dst in any::<u32>(),
    ) {
        let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
        let len = REPR.buffer_len(payload.len());
        let mut a = vec![0u8; len];
        a[8..].copy_from_slice(&payload);
        let mut b = a.clone();
        let mut c = a.clone();
        REPR.emit(&mut UdpPacket::new_unchecked(&mut a[..]), payload.len(),
                  UdpChecksum::Compute { src_addr: src, dst_addr: dst });
        REPR.emit(&mut UdpPacket::new_unchecked(&mut b[..]), payload.len(),
                  UdpChecksum::PayloadSum { src_addr: src, dst_addr: dst, sum: Csum::of(&payload) });
        REPR.emit(&mut UdpPacket::new_unchecked(&mut c[..]), payload.len(),
                  UdpChecksum::Partial { src_addr: src, dst_addr: dst });
        prop_assert_eq!(&a, &b);
        let finished = match Csum::of(&c).finish() { 0 => 0xffff, v => v };
        prop_assert_eq!(finished, UdpPacket::new_unchecked(&a[..]).checksum());
        prop_assert_ne!(UdpPacket::new_unchecked(&a[..]).checksum(), 0);
        prop_assert!(UdpPacket::new_unchecked(&a[..]).verify_checksum(src, dst));
    }

    #[test]
    fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..40)) {
        let p = UdpPacket::new_unchecked(&data[..]);
        let _ = UdpRepr::parse(&p, SRC, DST, true);
        if let Ok(p) = UdpPacket::new_checked(&data[..]) {
            let _ = (p.payload(), p.verify_checksum(SRC, DST));
        }
    }
}
