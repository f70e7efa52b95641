//! `ipxmit::wire` over arbitrary bytes: every view (Ethernet, ARP, IPv4,
//! IPv4 options, UDP, ICMP) and every `Repr::parse` must return an error
//! rather than panic (the module's length and panic contract), a parsed
//! representation must emit the bytes it was parsed from, and the Internet
//! checksum must equal a plain RFC 1071 reference written here, whole, in
//! two parts combined at any offset, and while copying.

#![no_main]

use std::net::Ipv4Addr;

use ipxmit::wire::{
    checksum, ArpPacket, ArpRepr, ChecksumCheck, Csum, EthernetFrame, EthernetRepr, IcmpPacket,
    Ipv4OptionsIter, Ipv4Packet, Ipv4Repr, UdpChecksum, UdpPacket, UdpRepr,
};
use libfuzzer_sys::fuzz_target;

/// RFC 1071, the slow way: big-endian 16-bit words (an odd last byte padded
/// with zero) added with end-around carry, folded to 16 bits.
fn ref_fold(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for pair in data.chunks(2) {
        let hi = u64::from(pair[0]) << 8;
        let lo = pair.get(1).map_or(0, |&b| u64::from(b));
        sum += hi | lo;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The reference UDP checksum over `udp` (checksum field taken as zero),
/// with the pseudo-header; 0 is sent as 0xffff (RFC 768).
fn ref_udp(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let mut b = Vec::with_capacity(12 + udp.len());
    b.extend_from_slice(&src.octets());
    b.extend_from_slice(&dst.octets());
    b.extend_from_slice(&[0, 17]);
    b.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    b.extend_from_slice(udp);
    b[12 + 6] = 0;
    b[12 + 7] = 0;
    match !ref_fold(&b) {
        0 => 0xffff,
        c => c,
    }
}

fn checksums(data: &[u8]) {
    let want = ref_fold(data);
    assert_eq!(Csum::of(data).fold(), want, "Csum::of");
    assert_eq!(checksum::checksum(data), !want, "checksum()");
    assert_eq!(checksum::verify(data), want == 0xffff, "verify()");
    // Split at a point the data chooses; the second part's sum added at
    // its (possibly odd) offset.
    let k = data
        .first()
        .map_or(0, |&b| usize::from(b) * 7 % (data.len() + 1));
    let (a, b) = data.split_at(k);
    let joined = Csum::of(a).add_at(Csum::of(b), a.len());
    assert_eq!(joined.fold(), want, "add_at split at {k}");
    // sub undoes add (up to the two zeros of ones' complement).
    let back = joined.sub(Csum::of(b).rotate_at(a.len())).fold();
    let wa = ref_fold(a);
    assert!(
        back == wa || (back ^ wa) == 0xffff && (back == 0 || wa == 0),
        "sub"
    );
    let mut dst = vec![0u8; data.len()];
    let c = Csum::copy_and_sum(data, &mut dst);
    assert_eq!(dst, data, "copy_and_sum copies");
    assert_eq!(c.fold(), want, "copy_and_sum sums");
}

/// Rotation as `add_at` applies it, for the subtraction check.
trait RotateAt {
    fn rotate_at(self, offset: usize) -> Csum;
}

impl RotateAt for Csum {
    fn rotate_at(self, offset: usize) -> Csum {
        if offset & 1 == 1 {
            Csum::from_raw(self.raw().rotate_right(8))
        } else {
            self
        }
    }
}

fn ethernet(data: &[u8]) {
    let Ok(f) = EthernetFrame::new_checked(data) else {
        return;
    };
    let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload().len());
    let r = EthernetRepr::parse(&f).expect("checked frame parses");
    assert_eq!(&r.to_bytes()[..], &data[..14], "Ethernet round trip");
}

fn arp(data: &[u8]) {
    let Ok(p) = ArpPacket::new_checked(data) else {
        return;
    };
    let _ = (p.hardware_type(), p.protocol_type(), p.operation());
    let _ = (p.source_hardware_addr(), p.source_protocol_addr());
    let _ = (p.target_hardware_addr(), p.target_protocol_addr());
    if let Ok(r) = ArpRepr::parse(&p) {
        let mut out = [0u8; ArpRepr::BUFFER_LEN];
        r.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
        assert_eq!(&out[..], &data[..ArpRepr::BUFFER_LEN], "ARP round trip");
    }
}

fn ipv4(data: &[u8]) {
    let parsed = Ipv4Repr::parse(&Ipv4Packet::new_unchecked(data), ChecksumCheck::Ignore);
    let Ok(p) = Ipv4Packet::new_checked(data) else {
        assert!(parsed.is_err(), "parse accepted what check_len refused");
        return;
    };
    let _ = (
        p.version(),
        p.tos(),
        p.dscp(),
        p.ecn(),
        p.ident(),
        p.frag_word(),
    );
    let _ = (
        p.dont_frag(),
        p.more_frags(),
        p.frag_offset(),
        p.is_fragment(),
    );
    let _ = (
        p.ttl(),
        p.protocol(),
        p.checksum(),
        p.src_addr(),
        p.dst_addr(),
    );
    let hl = p.header_len();
    assert!(hl >= 20 && hl <= data.len(), "header length {hl}");
    assert!(usize::from(p.total_len()) <= data.len(), "total length");
    assert_eq!(p.header().len(), hl);
    assert_eq!(p.options().len(), hl - 20);
    assert_eq!(p.payload().len(), usize::from(p.total_len()) - hl);
    assert_eq!(
        p.verify_checksum(),
        ref_fold(&data[..hl]) == 0xffff,
        "IPv4 header checksum"
    );
    let checked = Ipv4Repr::parse(&p, ChecksumCheck::Verify);
    if p.verify_checksum() {
        assert_eq!(checked, parsed, "a good checksum changes nothing");
    } else {
        assert!(checked.is_err(), "a bad checksum is refused");
    }
    let mut opts = Ipv4OptionsIter::new(p.options());
    for _ in 0..64 {
        match opts.next() {
            Some(Ok(o)) => {
                let _ = (o.kind(), o.copied());
            }
            Some(Err(_)) | None => break,
        }
    }
    let Ok(r) = parsed else {
        return;
    };
    assert_eq!(r.header_len(), hl);
    assert_eq!(r.buffer_len(), usize::from(p.total_len()));
    // Emit the same header again: it equals the input, checksum recomputed.
    let mut out = vec![0u8; hl];
    r.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]), p.options());
    // The same header, but for the reserved flag bit (0x8000 of the
    // fragment word, not represented) and with the checksum recomputed.
    let mut want = data[..hl].to_vec();
    want[6] &= 0x7f;
    want[10..12].fill(0);
    let c = !ref_fold(&want);
    want[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(out, want, "IPv4 header round trip");
    let again = Ipv4Repr::parse(
        &Ipv4Packet::new_unchecked(&[&out[..], p.payload()].concat()[..]),
        ChecksumCheck::Verify,
    );
    assert_eq!(again, Ok(r), "the emitted header parses to the same");

    let l4 = p.payload();
    let (src, dst) = (p.src_addr(), p.dst_addr());
    if let Ok(u) = UdpPacket::new_checked(l4) {
        udp_view(&u, l4, src, dst);
    }
    if let Ok(m) = IcmpPacket::new_checked(l4) {
        icmp_view(&m, l4);
    }
}

fn udp_view(u: &UdpPacket<&[u8]>, bytes: &[u8], src: Ipv4Addr, dst: Ipv4Addr) {
    let len = usize::from(u.len());
    assert!(len >= 8 && len <= bytes.len(), "UDP length");
    let _ = (u.src_port(), u.dst_port(), u.checksum(), u.is_empty());
    assert_eq!(u.datagram().len(), len);
    assert_eq!(u.payload().len(), len - 8);
    let want = ref_udp(src, dst, &bytes[..len]);
    assert_eq!(
        ipxmit::wire::udp_checksum(src, dst, &bytes[..len]),
        want,
        "udp_checksum"
    );
    // A stored checksum verifies when the whole sum folds to 0xffff; zero
    // is "none sent".
    let mut b = Vec::new();
    b.extend_from_slice(&src.octets());
    b.extend_from_slice(&dst.octets());
    b.extend_from_slice(&[0, 17]);
    b.extend_from_slice(&(len as u16).to_be_bytes());
    b.extend_from_slice(&bytes[..len]);
    let verifies = u.checksum() == 0 || ref_fold(&b) == 0xffff;
    assert_eq!(u.verify_checksum(src, dst), verifies, "UDP verify");
    let r = UdpRepr::parse(u, src, dst, true);
    assert_eq!(r.is_ok(), verifies);
    let r = UdpRepr::parse(u, src, dst, false).expect("checked UDP parses");
    let mut out = bytes[..len].to_vec();
    r.emit(
        &mut UdpPacket::new_unchecked(&mut out[..]),
        len - 8,
        UdpChecksum::Compute {
            src_addr: src,
            dst_addr: dst,
        },
    );
    assert_eq!(&out[..4], &bytes[..4]);
    assert_eq!(&out[8..], &bytes[8..len]);
    assert_eq!(
        u16::from_be_bytes([out[6], out[7]]),
        want,
        "emitted checksum"
    );
    assert!(UdpPacket::new_unchecked(&out[..]).verify_checksum(src, dst));
}

fn icmp_view(m: &IcmpPacket<&[u8]>, bytes: &[u8]) {
    let _ = (
        m.msg_type(),
        m.code(),
        m.checksum(),
        m.rest(),
        m.next_hop_mtu(),
    );
    let _ = m.data().len();
    assert_eq!(
        m.verify_checksum(),
        ref_fold(bytes) == 0xffff,
        "ICMP verify"
    );
    let mut out = bytes.to_vec();
    let mut w = IcmpPacket::new_unchecked(&mut out[..]);
    w.fill_checksum();
    assert!(w.verify_checksum(), "filled ICMP checksum verifies");
    assert_eq!(ref_fold(&out), 0xffff);
}

fuzz_target!(|data: &[u8]| {
    checksums(data);
    ethernet(data);
    // Every layer at offset 0 (the bytes as that header) and, for a
    // frame, after the Ethernet header.
    arp(data);
    ipv4(data);
    let ip_src = Ipv4Addr::new(10, 0, 0, 2);
    let ip_dst = Ipv4Addr::new(10, 0, 0, 1);
    if let Ok(u) = UdpPacket::new_checked(data) {
        udp_view(&u, data, ip_src, ip_dst);
    }
    if let Ok(m) = IcmpPacket::new_checked(data) {
        icmp_view(&m, data);
    }
    if data.len() >= 14 {
        arp(&data[14..]);
        ipv4(&data[14..]);
    }
});
