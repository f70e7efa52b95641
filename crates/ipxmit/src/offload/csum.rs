//! Checksums in software: what a device without checksum offload needs done.
//!
//! Stands for `skb_checksum()` (`net/core/skbuff.c`) and
//! `skb_checksum_help()` (`net/core/dev.c`).

use crate::buf::{CsumState, PacketBuf};
use crate::wire::checksum::Csum;

/// Sum of the packet's bytes from absolute storage offset `start` (in the linear
/// part) to the end, fragments and chain included (`skb_checksum`).
pub fn checksum_from(pkt: &PacketBuf, start: usize) -> Csum {
    let mut sum = Csum::of(pkt.from_offset(start));
    let mut at = pkt.from_offset(start).len();
    let mut first = true;
    pkt.for_each_segment(&mut |s| {
        if first {
            first = false;
            return;
        }
        sum = sum.add_at(Csum::of(s), at);
        at += s.len();
    });
    sum
}

/// Sum of the head buffer's own bytes (linear part and fragments, not the
/// chain) from absolute offset `start`.
pub fn checksum_linear_from(pkt: &PacketBuf, start: usize) -> Csum {
    let mut sum = Csum::of(pkt.from_offset(start));
    let mut at = pkt.from_offset(start).len();
    for f in pkt.frags() {
        sum = sum.add_at(Csum::of(f), at);
        at += f.len();
    }
    sum
}

/// Kernel: `skb_checksum_help()`, net/core/dev.c. Completes a `CHECKSUM_PARTIAL`
/// checksum in software: sums from `csum_start` to the end (the field holds the
/// pseudo-header sum) and stores the result, 0 sent as 0xffff.
pub fn checksum_help(pkt: &mut PacketBuf) {
    let CsumState::Partial { start, offset } = pkt.meta.ip_summed else {
        return;
    };
    let (start, field) = (start as usize, start as usize + offset as usize);
    let mut c = checksum_from(pkt, start).finish();
    if c == 0 {
        c = 0xffff;
    }
    pkt.from_offset_mut(field)[..2].copy_from_slice(&c.to_be_bytes());
    pkt.meta.ip_summed = CsumState::None;
}
