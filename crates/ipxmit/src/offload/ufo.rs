//! Software UDP fragmentation offload (UFO) for devices without
//! `NETIF_F_UFO`.
//!
//! Stands for `skb_gso_segment` → `inet_gso_segment` → `udp4_ufo_fragment`
//! (`net/core/gso.c`, `net/ipv4/af_inet.c`, `net/ipv4/udp_offload.c`) on a
//! `SKB_GSO_UDP` packet: one UDP datagram over the MTU, its UDP checksum
//! complete, becomes IP fragments of `gso_size` data bytes each (the last
//! the rest), every one with the datagram's IP ID, its own total length,
//! offset and MF bit, DF clear, and a copy of the link header. The kernel
//! does it with `skb_segment` and fixes the headers in `inet_gso_segment`;
//! ipxmit cuts with its one fragment planner ([`Fragmenter`] at an MTU of
//! the IP header plus `gso_size`), which makes the same frames: a UFO
//! datagram carries no options (see `ipv4::output`), so the fragments'
//! headers differ only where `inet_gso_segment` writes them.

use std::collections::VecDeque;

use crate::buf::{BufPool, GsoType, PacketBuf};
use crate::ipv4::fragment::Fragmenter;

/// Link headers this module copies onto each fragment (Ethernet's, or none).
const MAX_LL: usize = 32;

/// Kernel: `udp4_ufo_fragment()` as `skb_gso_segment` reaches it. Cuts the
/// UFO packet `pkt` (data starting at its link header) into IP fragments,
/// each with a copy of the link header, appended to `out` in order, in
/// buffers from `pool` where the packet's own chain does not serve (no heap
/// allocation in steady state). Returns false (the packet freed, for the
/// caller to count) when it is not a well-formed UFO packet. A checksum
/// left to the device is completed first, as `udp4_ufo_fragment` does
/// (the fragmenter's `skb_checksum_help`).
pub fn fragment_into(mut pkt: PacketBuf, pool: &BufPool, out: &mut VecDeque<PacketBuf>) -> bool {
    let l2 = usize::from(pkt.meta.network_header).saturating_sub(pkt.data_offset());
    let lin = pkt.linear();
    let seg = usize::from(pkt.meta.gso_size);
    let ok = pkt.meta.gso_type == GsoType::Udp && seg >= 8 && seg % 8 == 0;
    if !ok || l2 > MAX_LL || lin.len() < l2 + 20 || lin[l2 + 9] != 17 {
        return false;
    }
    let ihl = usize::from(lin[l2] & 0xf) * 4;
    let mut ll = [0u8; MAX_LL];
    ll[..l2].copy_from_slice(&lin[..l2]);
    pkt.pull(l2);
    let dev_meta = (pkt.meta.queue_mapping, pkt.meta.enqueued, pkt.meta.qdisc);
    let class = pkt.meta.class;
    (pkt.meta.gso_type, pkt.meta.gso_size, pkt.meta.gso_segs) = (GsoType::None, 0, 0);
    let Ok(frags) = Fragmenter::new(pkt, (ihl + seg) as u32, l2, pool) else {
        return false;
    };
    for mut f in frags {
        f.push(l2).copy_from_slice(&ll[..l2]);
        (f.meta.queue_mapping, f.meta.enqueued, f.meta.qdisc) = dev_meta;
        f.meta.class = class;
        out.push_back(f);
    }
    true
}
