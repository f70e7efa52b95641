//! Software UDP segmentation (GSO) for devices without `NETIF_F_GSO_UDP_L4`.
//!
//! Stands for `skb_gso_segment` → `inet_gso_segment` → `__udp_gso_segment`
//! (`net/core/gso.c`, `net/ipv4/af_inet.c`, `net/ipv4/udp_offload.c`). A UDP GSO
//! super-datagram (one IP header, one UDP header, payload of many `gso_size`
//! pieces) becomes independent datagrams: each gets a copy of the link, IP and UDP
//! headers, its own IP total length, an IP ID one more than the previous one,
//! its own UDP length and checksum (left `CHECKSUM_PARTIAL` when the device can
//! finish it, computed here otherwise).

use std::collections::VecDeque;

use crate::buf::{BufPool, CsumState, GsoType, PacketBuf};
use crate::offload::Features;
use crate::wire::checksum::pseudo_header_v4;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::udp::UdpPacket;

/// Kernel: `skb_gso_ok()`/`net_gso_ok()`. Whether a device of features
/// `feats` takes a packet of GSO type `t` as it is (a packet that is not
/// GSO always).
#[inline(always)]
pub fn gso_ok(t: GsoType, feats: Features) -> bool {
    match t {
        GsoType::None => true,
        GsoType::UdpL4 => feats.contains(Features::GSO_UDP_L4),
        GsoType::Udp => feats.contains(Features::UFO),
    }
}

/// Kernel: `skb_gso_segment()`. Segments a GSO packet (data starting at
/// its link header) into frames appended to `out`: UDP datagrams for UDP
/// GSO ([`segment_udp_into`]), IP fragments for UFO
/// ([`crate::offload::ufo::fragment_into`]). Returns false (the packet
/// freed, for the caller to count) when it is not a well-formed one.
pub fn segment_into(
    pkt: PacketBuf,
    feats: Features,
    pool: &BufPool,
    out: &mut VecDeque<PacketBuf>,
) -> bool {
    match pkt.meta.gso_type {
        GsoType::Udp => crate::offload::ufo::fragment_into(pkt, pool, out),
        _ => segment_udp_into(pkt, feats, pool, out),
    }
}

/// Splits a UDP GSO packet (data starting at its link header) into datagrams.
/// Returns `None` (the packet freed, for the caller to count) when it is not a
/// well-formed UDP GSO packet. Convenience form of [`segment_udp_into`].
pub fn segment_udp(pkt: PacketBuf, feats: Features) -> Option<Vec<PacketBuf>> {
    let mut out = std::collections::VecDeque::new();
    let pool = BufPool::new(64);
    segment_udp_into(pkt, feats, &pool, &mut out).then(|| out.into())
}

/// Splits a UDP GSO packet into datagrams appended to `out`, in buffers from
/// `pool` (no heap allocation in steady state). Returns false (the packet freed)
/// when it is not a well-formed UDP GSO packet.
pub fn segment_udp_into(
    pkt: PacketBuf,
    feats: Features,
    pool: &BufPool,
    out: &mut VecDeque<PacketBuf>,
) -> bool {
    let l2 = pkt.meta.network_header as usize - pkt.data_offset();
    let lin = pkt.linear();
    if lin.len() < l2 + 20 || pkt.meta.gso_type != GsoType::UdpL4 || pkt.meta.gso_size == 0 {
        return false;
    }
    let hlen = ((lin[l2] & 0xf) as usize) * 4;
    let hdrs = l2 + hlen + 8;
    if lin.len() < hdrs || lin[l2 + 9] != 17 {
        return false;
    }
    let mss = pkt.meta.gso_size as usize;
    let total = pkt.len() - hdrs;
    let headroom = pkt.headroom();
    let id0 = u16::from_be_bytes([lin[l2 + 4], lin[l2 + 5]]);
    let (mut off, mut i) = (0usize, 0u16);
    while off < total {
        let seg = mss.min(total - off);
        let mut s = pool.alloc(headroom + hdrs + seg);
        s.reserve(headroom);
        s.meta = pkt.meta.clone();
        s.meta.gso_type = GsoType::None;
        s.meta.gso_size = 0;
        s.meta.gso_segs = 0;
        s.meta.network_header = (headroom + l2) as u16;
        s.meta.transport_header = (headroom + l2 + hlen) as u16;
        let buf = s.put(hdrs + seg);
        buf[..hdrs].copy_from_slice(&pkt.linear()[..hdrs]);
        pkt.copy_bits(hdrs + off, &mut buf[hdrs..]);
        fix_segment(&mut s, l2, hlen, seg, id0.wrapping_add(i), feats);
        out.push_back(s);
        off += seg;
        i = i.wrapping_add(1);
    }
    true
}

/// Kernel: the per-segment header fixes of `__udp_gso_segment` and
/// `inet_gso_segment`: the segment's IP total length, ID and header
/// checksum, its UDP length, and its UDP checksum (left to the device as
/// `CHECKSUM_PARTIAL` with the pseudo-header in the field when it can
/// finish it, computed here otherwise).
fn fix_segment(s: &mut PacketBuf, l2: usize, hlen: usize, seg: usize, id: u16, feats: Features) {
    let start = s.meta.transport_header as usize;
    let partial = feats.can_csum() && s.meta.ip_summed != CsumState::None;
    let (ip, udp) = s.linear_mut()[l2..].split_at_mut(hlen);
    let mut iph = Ipv4Packet::new_unchecked(ip);
    iph.set_total_len((hlen + 8 + seg) as u16);
    iph.set_ident(id);
    iph.fill_checksum();
    let (src, dst) = (iph.src_addr(), iph.dst_addr());
    let ulen = (8 + seg) as u16;
    let udp = &mut udp[..usize::from(ulen)];
    let mut uh = UdpPacket::new_unchecked(&mut *udp);
    uh.set_len(ulen);
    if partial {
        uh.set_checksum(pseudo_header_v4(src, dst, 17, ulen).fold());
        s.meta.ip_summed = CsumState::Partial {
            start: start as u16,
            offset: 6,
        };
        return;
    }
    uh.fill_checksum(src, dst);
    s.meta.ip_summed = CsumState::None;
}
