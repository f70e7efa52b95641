use super::*;
use crate::wire::ipv4_options::OptionProblem;
use proptest::prelude::*;

/// 10.0.0.1 -> 10.0.0.2, UDP, DF, ident 0x1234, TTL 64, total length 28.
const PACKET: [u8; 28] = [
    0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x14, 0x9b, 10, 0, 0, 1, 10, 0, 0,
    2, // UDP header 1234 -> 5678
    0x04, 0xd2, 0x16, 0x2e, 0x00, 0x08, 0x00, 0x00,
];

fn fixture_repr() -> Ipv4Repr {
    Ipv4Repr {
        src_addr: Ipv4Addr::new(10, 0, 0, 1),
        dst_addr: Ipv4Addr::new(10, 0, 0, 2),
        protocol: IpProtocol::UDP,
        tos: 0,
        ttl: 64,
        ident: 0x1234,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
        options_len: 0,
        payload_len: 8,
    }
}

#[test]
fn view_getters() {
    let p = Ipv4Packet::new_checked(&PACKET[..]).unwrap();
    assert_eq!(p.version(), 4);
    assert_eq!(p.header_len(), 20);
    assert_eq!(p.tos(), 0);
    assert_eq!(p.total_len(), 28);
    assert_eq!(p.ident(), 0x1234);
    assert!(p.dont_frag());
    assert!(!p.more_frags());
    assert_eq!(p.frag_offset(), 0);
    assert!(!p.is_fragment());
    assert_eq!(p.ttl(), 64);
    assert_eq!(p.protocol(), IpProtocol::UDP);
    assert_eq!(p.checksum(), 0x149b);
    assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
    assert!(p.options().is_empty());
    assert_eq!(p.payload(), &PACKET[20..]);
    assert!(p.verify_checksum());
}

#[test]
fn parse_fixture() {
    let p = Ipv4Packet::new_unchecked(&PACKET[..]);
    assert_eq!(
        Ipv4Repr::parse(&p, ChecksumCheck::Verify),
        Ok(fixture_repr())
    );
    // Link-layer padding after the datagram is not payload.
    let mut padded = PACKET.to_vec();
    padded.extend_from_slice(&[0; 18]);
    let p = Ipv4Packet::new_checked(&padded[..]).unwrap();
    assert_eq!(p.payload().len(), 8);
    assert_eq!(
        Ipv4Repr::parse(&p, ChecksumCheck::Verify),
        Ok(fixture_repr())
    );
}

#[test]
fn emit_fixture() {
    let mut buf = PACKET;
    buf[..20].fill(0xee);
    fixture_repr().emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]), &[]);
    assert_eq!(buf, PACKET);
    let mut buf2 = [0u8; 20];
    emit_header(&mut buf2, &fixture_repr(), &[]);
    assert_eq!(buf2[..], PACKET[..20]);
    assert_eq!(fixture_repr().header_len(), 20);
    assert_eq!(fixture_repr().buffer_len(), 28);
}

#[test]
fn setters() {
    let mut buf = [0u8; 40];
    let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
    p.set_version(4);
    p.set_header_len(24);
    p.set_dscp(46);
    p.set_ecn(2);
    p.set_total_len(40);
    p.set_ident(7);
    p.set_more_frags(true);
    p.set_frag_offset(1480);
    p.set_dont_frag(true);
    p.set_dont_frag(false);
    p.set_ttl(1);
    p.set_protocol(IpProtocol::ICMP);
    p.set_src_addr(Ipv4Addr::new(1, 2, 3, 4));
    p.set_dst_addr(Ipv4Addr::new(5, 6, 7, 8));
    p.options_mut().copy_from_slice(&[148, 4, 0, 0]);
    p.payload_mut().fill(0xab);
    p.fill_checksum();
    assert_eq!(p.version(), 4);
    assert_eq!(p.header_len(), 24);
    assert_eq!((p.dscp(), p.ecn(), p.tos()), (46, 2, 46 << 2 | 2));
    assert!(p.more_frags() && !p.dont_frag());
    assert_eq!(p.frag_offset(), 1480);
    assert!(p.is_fragment());
    assert_eq!(p.options(), &[148, 4, 0, 0]);
    assert_eq!(p.payload(), &[0xab; 16]);
    assert!(p.verify_checksum());
    let repr = Ipv4Repr::parse(&p, ChecksumCheck::Verify).unwrap();
    assert_eq!(repr.options_len, 4);
    assert_eq!(repr.payload_len, 16);
    p.clear_flags();
    assert!(!p.is_fragment() && !p.dont_frag());
    assert!(!p.verify_checksum());
}

#[test]
fn length_errors() {
    for len in 0..20 {
        assert_eq!(
            Ipv4Packet::new_checked(&PACKET[..len]).err(),
            Some(Error::Truncated)
        );
        let p = Ipv4Packet::new_unchecked(&PACKET[..len]);
        assert_eq!(
            Ipv4Repr::parse(&p, ChecksumCheck::Verify),
            Err(Error::Truncated)
        );
    }
    // Total length beyond the buffer.
    assert_eq!(
        Ipv4Packet::new_checked(&PACKET[..27]).err(),
        Some(Error::Truncated)
    );
    let mut bad = PACKET;
    bad[0] = 0x44; // IHL 4
    assert_eq!(
        Ipv4Packet::new_checked(&bad[..]).err(),
        Some(Error::BadHeaderLength)
    );
    bad[0] = 0x48; // IHL 8 (32 bytes) > 28
    assert_eq!(
        Ipv4Packet::new_checked(&bad[..]).err(),
        Some(Error::Truncated)
    );
    let mut bad = PACKET;
    bad[3] = 19; // total length below header
    assert_eq!(
        Ipv4Packet::new_checked(&bad[..]).err(),
        Some(Error::BadTotalLength)
    );
}

#[test]
fn parse_errors() {
    let parse = |b: &[u8]| Ipv4Repr::parse(&Ipv4Packet::new_unchecked(b), ChecksumCheck::Verify);
    let mut v6 = PACKET;
    v6[0] = 0x65;
    assert_eq!(parse(&v6), Err(Error::BadVersion(6)));
    let mut sum = PACKET;
    sum[11] ^= 1;
    assert_eq!(parse(&sum), Err(Error::BadChecksum));
    let ignored = Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&sum[..]), ChecksumCheck::Ignore);
    assert_eq!(ignored, Ok(fixture_repr()));
    // A header with a malformed option (length byte 1).
    let repr = Ipv4Repr {
        options_len: 4,
        payload_len: 0,
        ..fixture_repr()
    };
    let mut buf = [0u8; 24];
    emit_header(&mut buf, &repr, &[7, 1, 0, 0]);
    assert_eq!(
        parse(&buf),
        Err(Error::MalformedOption {
            kind: 7,
            offset: 0,
            problem: OptionProblem::BadLength
        })
    );
}

#[test]
fn protocol_numbers() {
    assert_eq!(IpProtocol::UDP.0, 17);
    assert_eq!(IpProtocol::TCP.0, 6);
    assert_eq!(IpProtocol::ICMP.0, 1);
    assert_eq!(IpProtocol::RAW.0, 255);
    assert_eq!(u8::from(IpProtocol::from(47)), 47);
    assert_eq!(IpProtocol::UDP.to_string(), "UDP");
    assert_eq!(IpProtocol(99).to_string(), "99");
}

#[test]
fn etherparse_builds_we_parse() {
    let mut header = etherparse::Ipv4Header::new(
        13,
        33,
        etherparse::IpNumber::UDP,
        [192, 0, 2, 1],
        [198, 51, 100, 7],
    )
    .unwrap();
    header.identification = 0xbeef;
    header.dont_fragment = false;
    header.more_fragments = true;
    header.fragment_offset = etherparse::IpFragOffset::try_new(185).unwrap();
    header.dscp = etherparse::IpDscp::try_new(10).unwrap();
    header.ecn = etherparse::IpEcn::try_new(1).unwrap();
    header.options = [1u8, 1, 148, 4, 0, 0, 0, 0][..].try_into().unwrap();
    let ip = etherparse::IpHeaders::Ipv4(header, Default::default());
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ip(ip)
        .udp(40000, 53);
    let mut frame = Vec::new();
    builder.write(&mut frame, b"hello").unwrap();
    let p = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    let repr = Ipv4Repr::parse(&p, ChecksumCheck::Verify).unwrap();
    assert_eq!(repr.src_addr, Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(repr.dst_addr, Ipv4Addr::new(198, 51, 100, 7));
    assert_eq!(repr.protocol, IpProtocol::UDP);
    assert_eq!(repr.tos, 10 << 2 | 1);
    assert_eq!(repr.ttl, 33);
    assert_eq!(repr.ident, 0xbeef);
    assert!(!repr.dont_frag && repr.more_frags);
    assert_eq!(repr.frag_offset, 185 * 8);
    assert_eq!(repr.options_len, 8);
    assert_eq!(repr.payload_len, 13);
    assert_eq!(p.options(), &[1, 1, 148, 4, 0, 0, 0, 0]);
    let theirs = etherparse::Ipv4HeaderSlice::from_slice(&frame[14..]).unwrap();
    assert_eq!(p.checksum(), theirs.header_checksum());
    assert_eq!(p.checksum(), theirs.to_header().calc_header_checksum());
}

fn options_strategy() -> impl Strategy<Value = Vec<u8>> {
    let word = prop_oneof![
        Just(vec![1u8, 1, 1, 1]),
        Just(vec![148u8, 4, 0, 0]),
        any::<[u8; 2]>().prop_map(|d| vec![30u8, 4, d[0], d[1]]),
        Just(vec![7u8, 7, 4, 0, 0, 0, 0, 0]),
    ];
    proptest::collection::vec(word, 0..=5).prop_map(|words| {
        let mut out: Vec<u8> = words.concat();
        out.truncate(MAX_OPTIONS_LEN);
        // Keep whole options only: cut at a 4-byte boundary that ends one.
        while check_options(&out).is_err() || !out.len().is_multiple_of(4) {
            out.truncate(out.len() - 4);
        }
        out
    })
}

prop_compose! {
    fn repr_strategy()(
        src in any::<u32>(), dst in any::<u32>(), protocol in any::<u8>(), tos in any::<u8>(),
        ttl in any::<u8>(), ident in any::<u16>(), dont_frag in any::<bool>(),
        more_frags in any::<bool>(), frag_units in 0u16..=0x1fff,
        payload_len in 0usize..2000, options in options_strategy(),
    ) -> (Ipv4Repr, Vec<u8>) {
        (Ipv4Repr {
            src_addr: Ipv4Addr::from(src),
            dst_addr: Ipv4Addr::from(dst),
            protocol: IpProtocol(protocol),
            tos, ttl, ident, dont_frag, more_frags,
            frag_offset: frag_units * 8,
            options_len: options.len(),
            payload_len,
        }, options)
    }
}

proptest! {
    #[test]
    fn roundtrip((repr, options) in repr_strategy()) {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]), &options);
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(Ipv4Repr::parse(&p, ChecksumCheck::Verify), Ok(repr));
        prop_assert_eq!(p.options(), &options[..]);

        // etherparse agrees on every field and on the checksum.
        let (eh, _) = etherparse::Ipv4Header::from_slice(&buf).unwrap();
        prop_assert_eq!(eh.source, repr.src_addr.octets());
        prop_assert_eq!(eh.destination, repr.dst_addr.octets());
        prop_assert_eq!(eh.protocol.0, repr.protocol.0);
        prop_assert_eq!(eh.dscp.value() << 2 | eh.ecn.value(), repr.tos);
        prop_assert_eq!(eh.time_to_live, repr.ttl);
        prop_assert_eq!(eh.identification, repr.ident);
        prop_assert_eq!(eh.dont_fragment, repr.dont_frag);
        prop_assert_eq!(eh.more_fragments, repr.more_frags);
        prop_assert_eq!(eh.fragment_offset.value() * 8, repr.frag_offset);
        prop_assert_eq!(usize::from(eh.total_len), repr.buffer_len());
        prop_assert_eq!(eh.options.as_slice(), &options[..]);
        prop_assert_eq!(eh.header_checksum, eh.calc_header_checksum());
        prop_assert_eq!(u16::from_be_bytes(internet_checksum::checksum(&buf[..repr.header_len()])), 0);
    }

    #[test]
    fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..80)) {
        let p = Ipv4Packet::new_unchecked(&data[..]);
        let _ = Ipv4Repr::parse(&p, ChecksumCheck::Verify);
        if let Ok(p) = Ipv4Packet::new_checked(&data[..]) {
            let _ = (p.options(), p.payload(), p.verify_checksum());
            let _ = Ipv4Repr::parse(&p, ChecksumCheck::Ignore);
        }
    }
}

proptest! {
    /// `set_len_and_check` (the fresh-header form of `__ip_local_out`'s
    /// length and checksum) writes what setting the length and
    /// `fill_checksum` write, whatever the other fields and the old
    /// checksum hold.
    #[test]
    fn set_len_and_check_is_fill_checksum(
        mut h in proptest::array::uniform20(any::<u8>()),
        tot_len in any::<u16>(),
    ) {
        h[0] = 0x45;
        let mut fresh = h;
        set_len_and_check(&mut fresh, tot_len);
        let mut full = Ipv4Packet::new_unchecked(h);
        full.set_total_len(tot_len);
        full.fill_checksum();
        prop_assert_eq!(fresh, full.into_inner());
        prop_assert!(Ipv4Packet::new_unchecked(&fresh[..]).verify_checksum());
    }

    /// A header's sum taken without its ID and the ID added later (what
    /// the batch builder leaves in `Meta::hdr_sum`) completes the header
    /// as reading it back does.
    #[test]
    fn set_len_and_check_from_a_sum_is_fill_checksum(
        mut h in proptest::array::uniform20(any::<u8>()),
        tot_len in any::<u16>(),
    ) {
        h[0] = 0x45;
        let id = u16::from_ne_bytes([h[4], h[5]]);
        let sum = header_sum_ne(&h, false) + u32::from(id);
        prop_assert_eq!(sum, header_sum_ne(&h, true));
        let mut from_sum = h;
        set_len_and_check_from(&mut from_sum, sum, tot_len);
        let mut full = Ipv4Packet::new_unchecked(h);
        full.set_total_len(tot_len);
        full.fill_checksum();
        prop_assert_eq!(from_sum, full.into_inner());
    }

    /// `send_check`'s option-less fast sum is the generic one.
    #[test]
    fn send_check_fast_is_generic(mut h in proptest::array::uniform20(any::<u8>())) {
        h[0] = 0x45;
        let mut fast = h;
        send_check(&mut fast);
        h[10] = 0;
        h[11] = 0;
        let c = Csum::of(&h).finish();
        h[10..12].copy_from_slice(&c.to_be_bytes());
        prop_assert_eq!(fast, h);
    }
}
