//! The NAT of received datagrams: a reply of a translated flow gets back
//! the addresses and ports its socket knows, and an ICMP error about one
//! of a translated flow's datagrams is translated with the datagram it
//! quotes, so the error reaches the socket that sent it.
//!
//! Stands for the kernel's `nf_nat_ipv4_pre_routing()` and
//! `nf_nat_ipv4_local_in()` (net/netfilter/nf_nat_proto.c) with
//! `nf_nat_packet()` and `nf_nat_icmp_reply_translation()`: the
//! destination is written at PRE_ROUTING, before the input route, the
//! source at LOCAL_IN. Here both are written before the input route (no
//! rule runs between them on the receive path; the source check of the
//! input route sees the translated source).

use crate::wire::checksum::checksum;

use super::conntrack::{icmp_error_quote, Manip, RcvNat};
use super::nat::{manip_addr, manip_header};

/// Kernel: `nf_nat_packet()` and `nf_nat_icmp_reply_translation()` of a
/// received datagram `h` (whole, from its IP header on): what its flow's
/// [`RcvNat`] says, destination first. An ICMP error's quoted datagram is
/// rewritten (addresses, ports, its IP and UDP checksums incrementally),
/// then the ICMP checksum summed anew over the message, then the error's
/// own address.
pub fn rcv_manip(h: &mut [u8], nat: &RcvNat) {
    let ihl = usize::from(h.first().map_or(0, |b| b & 0xf)) * 4;
    let related = nat.inner.iter().any(Option::is_some);
    if related && icmp_error_quote(h).is_some() {
        let total = usize::from(u16::from_be_bytes([h[2], h[3]])).min(h.len());
        for m in [Manip::Src, Manip::Dst] {
            if let Some((a, p)) = nat.inner[m.index()] {
                manip_header(&mut h[ihl + 8..total], m, a, p, false);
            }
        }
        let icmp = &mut h[ihl..total];
        icmp[2..4].copy_from_slice(&[0, 0]);
        let c = checksum(icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        for m in [Manip::Dst, Manip::Src] {
            if let Some((a, _)) = nat.outer[m.index()] {
                manip_addr(h, m, a);
            }
        }
        return;
    }
    for m in [Manip::Dst, Manip::Src] {
        if let Some((a, p)) = nat.outer[m.index()] {
            manip_header(h, m, a, p, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::verify;

    /// An IPv4+UDP datagram `src:sport -> dst:dport` with `payload`, every
    /// checksum right.
    fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
        let len = 28 + payload.len() as u16;
        let mut h = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
        h[2..4].copy_from_slice(&len.to_be_bytes());
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(&sport.to_be_bytes());
        h.extend_from_slice(&dport.to_be_bytes());
        h.extend_from_slice(&(len - 20).to_be_bytes());
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(payload);
        let c = udp_sum(&h);
        h[26..28].copy_from_slice(&c.to_be_bytes());
        h
    }

    /// The UDP checksum of datagram `h` as it should be.
    fn udp_sum(h: &[u8]) -> u16 {
        let mut pseudo = h[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&h[24..26]);
        let mut all = pseudo;
        all.extend_from_slice(&h[20..]);
        all[18..20].copy_from_slice(&[0, 0]);
        match checksum(&all) {
            0 => 0xffff,
            c => c,
        }
    }

    const NAT: [u8; 4] = [10, 0, 0, 7];
    const ORIG: (u32, u16) = (0x0a00_0001, 5000);

    #[test]
    fn a_reply_gets_the_original_destination_with_right_checksums() {
        let mut h = udp([10, 0, 0, 2], 9, NAT, 6000, b"pong");
        let nat = RcvNat {
            outer: [Some(ORIG), None],
            inner: [None; 2],
        };
        rcv_manip(&mut h, &nat);
        assert_eq!(h, udp([10, 0, 0, 2], 9, [10, 0, 0, 1], 5000, b"pong"));
    }

    #[test]
    fn an_error_gets_its_quote_and_its_destination_translated() {
        let sent = udp(NAT, 6000, [10, 0, 0, 2], 9, b"ping");
        let mut h = vec![0x45, 0, 0, 60, 0, 2, 0, 0, 64, 1, 0, 0];
        h.extend_from_slice(&[10, 0, 0, 2]);
        h.extend_from_slice(&NAT);
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(&[3, 3, 0, 0, 0, 0, 0, 0]);
        h.extend_from_slice(&sent);
        let c = checksum(&h[20..]);
        h[22..24].copy_from_slice(&c.to_be_bytes());
        let nat = RcvNat {
            outer: [Some(ORIG), None],
            inner: [None, Some(ORIG)],
        };
        rcv_manip(&mut h, &nat);
        let want = udp([10, 0, 0, 1], 5000, [10, 0, 0, 2], 9, b"ping");
        assert_eq!(&h[28..], &want[..], "the quote, checksums and all");
        assert_eq!(&h[16..20], &[10, 0, 0, 1]);
        assert!(verify(&h[..20]), "the IP checksum");
        assert!(verify(&h[20..]), "the ICMP checksum");
    }
}
