//! IPv4 fragmentation.
//!
//! Stands for `ip_fragment`, `ip_do_fragment`, `ip_fraglist_init`/`prepare` (fast
//! path), `ip_frag_init`/`ip_frag_next` (slow path) and `ip_options_fragment`
//! (`net/ipv4/ip_output.c`, `net/ipv4/ip_options.c`).
//!
//! Fast path: a datagram built by the cork already carries its fragments as a
//! chain whose geometry fits (head payload and every chained buffer but the last
//! a multiple of 8 and at most the MTU's data space, headroom for a header): each
//! fragment only gets a copy of the previous fragment's header with its own
//! length, offset and MF bit; DF is cleared, as the kernel does. Slow path: the
//! datagram is copied out in pieces of `(mtu - hlen) & !7` bytes, each with a
//! copy of the original header (DF kept, MF set on all but the last unless the
//! original had MF, offsets continuing the original's).
//!
//! After the first fragment is made, options whose "copied" flag is clear are
//! replaced by NOPs in the headers that follow (`ip_options_fragment`) — only for
//! options the stack built (`IPCB(skb)->opt.optlen`), as in the kernel.
//! The [`Fragmenter`] is an iterator of ready fragments; errors are counted
//! per reason by the caller.

use std::net::Ipv4Addr;

use crate::buf::{BufPool, PacketBuf};
use crate::wire::checksum::Csum;
use crate::wire::ipv4::{send_check, FLAG_DF as IP_DF, FLAG_MF as IP_MF, OFFSET_MASK as IP_OFFSET};

/// Why a datagram could not be fragmented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FragError {
    /// DF set (and fragmentation not allowed locally) or `frag_max_size` over the
    /// MTU: the kernel sends ICMP "fragmentation needed" locally and returns
    /// `EMSGSIZE`.
    #[error("fragmentation needed and DF set (mtu {mtu})")]
    NeedFrag {
        /// The MTU that was exceeded.
        mtu: u32,
    },
    /// The MTU leaves less than 8 bytes of data per fragment.
    #[error("mtu {mtu} too small for a {hlen}-byte header")]
    MtuTooSmall {
        /// The MTU.
        mtu: u32,
        /// The header length.
        hlen: usize,
    },
    /// The packet does not start with a valid IPv4 header.
    #[error("malformed IPv4 header")]
    Malformed,
}

fn frag_off(h: &[u8]) -> u16 {
    u16::from_be_bytes([h[6], h[7]])
}

fn set_len_off(h: &mut [u8], tot_len: usize, off: u16) {
    h[2..4].copy_from_slice(&(tot_len as u16).to_be_bytes());
    h[6..8].copy_from_slice(&off.to_be_bytes());
    send_check(h);
}

/// The ones'-complement sum of the 16-bit words of the header `h`, with
/// `tot_len`, `frag_off` and the checksum counted as zero: what every
/// fast-path fragment's header sums to before its own length and offset are
/// added. At most 30 words, so no carry leaves the `u32`.
fn header_base(h: &[u8]) -> u32 {
    h.chunks_exact(2)
        .enumerate()
        .filter(|&(i, _)| !matches!(i, 1 | 3 | 5))
        .map(|(_, w)| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum()
}

/// Writes `tot_len`, `frag_off` and the header checksum of a fragment header
/// whose other words sum to `base` ([`header_base`]): the incremental form of
/// `ip_send_check` (RFC 1624), only the two fields differing from the template.
/// The folded sum is the same representative in `1..=0xffff` a full
/// recomputation gives (the version byte makes it nonzero), so the bytes are
/// those [`send_check`] would write.
#[inline]
fn set_len_off_from(h: &mut [u8], base: u32, tot_len: usize, off: u16) {
    let tot_len = tot_len as u16;
    let check = Csum::from_raw(base).add_u16(tot_len).add_u16(off).finish();
    h[2..4].copy_from_slice(&tot_len.to_be_bytes());
    h[6..8].copy_from_slice(&off.to_be_bytes());
    h[10..12].copy_from_slice(&check.to_be_bytes());
}

/// Copies the header template into a fragment; the common option-less
/// header is a fixed-size copy.
#[inline]
fn copy_header(dst: &mut [u8], hdr: &[u8]) {
    if dst.len() == 20 {
        dst.copy_from_slice(&hdr[..20]);
    } else {
        dst.copy_from_slice(&hdr[..dst.len()]);
    }
}

/// `ip_copy_metadata()`: gives the fragment `to` the metadata `m` (a copy of
/// the datagram's), swapped in whole — a byte copy, cheaper than assigning a
/// clone field by field — and drops what it had.
#[inline]
fn set_meta(to: &mut crate::buf::Meta, mut m: crate::buf::Meta) {
    std::mem::swap(to, &mut m);
}

/// Kernel: `ip_options_fragment()` on the `optlen` option bytes the stack built.
fn options_fragment(h: &mut [u8], optlen: usize) {
    let end = (20 + optlen).min(h.len());
    if end > 20 {
        crate::wire::options_fragment(&mut h[20..end]);
    }
}

/// Fragments of one datagram, in order. See the module documentation.
pub struct Fragmenter {
    mode: Mode,
    hdr: [u8; 60],
    /// [`header_base`] of `hdr` once the fast path's template is final.
    base: u32,
    hlen: usize,
    optlen: usize,
    ll_rs: usize,
    created: usize,
    pool: BufPool,
}

impl Drop for Fragmenter {
    fn drop(&mut self) {
        if let Mode::Fast { rest, .. } = &mut self.mode {
            // Keep the chain's capacity for the next datagram: no allocation per
            // fragmented datagram in steady state.
            self.pool.put_chain(std::mem::take(rest));
        }
    }
}

enum Mode {
    Fast {
        head: Option<PacketBuf>,
        /// The datagram's metadata, copied to every fragment (`ip_copy_metadata`).
        meta: crate::buf::Meta,
        /// The chain, reversed so fragments are popped off the end in order.
        rest: Vec<PacketBuf>,
        offset: usize,
    },
    Slow {
        src: PacketBuf,
        pool: BufPool,
        ptr: usize,
        left: usize,
        offset: usize,
        mtu: usize,
        df: bool,
        not_last: bool,
    },
}

impl Fragmenter {
    /// Prepares to fragment `pkt` (data starting at its IP header) for `mtu`, with
    /// `ll_rs` bytes of link-layer headroom in each fragment. Buffers for the slow
    /// path come from `pool`. On error the packet is freed; the caller counts it.
    pub fn new(
        mut pkt: PacketBuf,
        mtu: u32,
        ll_rs: usize,
        pool: &BufPool,
    ) -> Result<Fragmenter, FragError> {
        let lin = pkt.linear();
        if lin.len() < 20 || lin[0] >> 4 != 4 || ((lin[0] & 0xf) as usize) * 4 > lin.len() {
            return Err(FragError::Malformed);
        }
        let hlen = ((lin[0] & 0xf) as usize) * 4;
        if (mtu as usize) < hlen + 8 {
            return Err(FragError::MtuTooSmall { mtu, hlen });
        }
        let mut hdr = [0u8; 60];
        hdr[..hlen].copy_from_slice(&lin[..hlen]);
        let data_mtu = mtu as usize - hlen;
        let optlen = (pkt.meta.ip_optlen as usize).min(hlen - 20);
        crate::offload::checksum_help(&mut pkt);
        let mode = if fast_path_ok(&pkt, hlen, data_mtu, ll_rs) {
            let mut rest = pkt.take_chain();
            rest.reverse();
            let mut meta = pkt.meta.clone();
            // Fragments after the first are handed down with the route as an
            // argument, and `dev_queue_xmit` releases a buffer's route anyway
            // (IFF_XMIT_DST_RELEASE): no reference per fragment.
            meta.dst = None;
            Mode::Fast {
                meta,
                head: Some(pkt),
                rest,
                offset: 0,
            }
        } else {
            slow_mode(pkt, pool, hlen, data_mtu)
        };
        Ok(Fragmenter {
            mode,
            hdr,
            base: 0,
            hlen,
            optlen,
            ll_rs,
            created: 0,
            pool: pool.clone(),
        })
    }

    /// The datagram's destination address.
    pub fn daddr(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.hdr[16], self.hdr[17], self.hdr[18], self.hdr[19])
    }

    /// Fragments made so far.
    pub fn created(&self) -> usize {
        self.created
    }

    /// True when the fast path (the datagram's own chain) is used.
    pub fn is_fast_path(&self) -> bool {
        matches!(self.mode, Mode::Fast { .. })
    }

    fn next_fast(&mut self) -> Option<PacketBuf> {
        let Mode::Fast {
            head,
            rest,
            offset,
            meta,
        } = &mut self.mode
        else {
            return None;
        };
        let hlen = self.hlen;
        if let Some(mut h) = head.take() {
            let len = h.len();
            *offset = len - hlen;
            set_len_off(&mut h.linear_mut()[..hlen], len, IP_MF);
            self.hdr[..hlen].copy_from_slice(&h.linear()[..hlen]);
            options_fragment(&mut self.hdr[..hlen], self.optlen);
            self.base = header_base(&self.hdr[..hlen]);
            return Some(h);
        }
        let mut f = rest.pop()?;
        let more = !rest.is_empty();
        let data_len = f.len();
        let off = (*offset >> 3) as u16 | if more { IP_MF } else { 0 };
        let h = f.push(hlen);
        copy_header(h, &self.hdr);
        set_len_off_from(h, self.base, data_len + hlen, off);
        // The last fragment takes the datagram's metadata itself: its
        // references are released no later than with a copy for each.
        set_meta(
            &mut f.meta,
            if more {
                meta.clone()
            } else {
                std::mem::take(meta)
            },
        );
        f.reset_network_header();
        f.meta.transport_header = f.meta.network_header + hlen as u16;
        *offset += data_len;
        Some(f)
    }

    fn next_slow(&mut self) -> Option<PacketBuf> {
        let Mode::Slow {
            src,
            pool,
            ptr,
            left,
            offset,
            mtu,
            df,
            not_last,
        } = &mut self.mode
        else {
            return None;
        };
        if *left == 0 {
            return None;
        }
        let hlen = self.hlen;
        let first_frag = *offset == 0;
        let mut len = (*left).min(*mtu);
        if len < *left {
            len &= !7;
        }
        let mut f = pool.alloc(self.ll_rs + hlen + len);
        f.reserve(self.ll_rs);
        f.meta = src.meta.clone();
        f.meta.ip_summed = crate::buf::CsumState::None;
        f.reset_network_header();
        f.meta.transport_header = f.meta.network_header + hlen as u16;
        let out = f.put(hlen + len);
        out[..hlen].copy_from_slice(&self.hdr[..hlen]);
        src.copy_bits(*ptr, &mut out[hlen..]);
        *left -= len;
        let mut fo = (*offset >> 3) as u16;
        if *df {
            fo |= IP_DF;
        }
        if *left > 0 || *not_last {
            fo |= IP_MF;
        }
        set_len_off(&mut out[..hlen], len + hlen, fo);
        if first_frag {
            options_fragment(&mut self.hdr[..hlen], self.optlen);
        }
        *ptr += len;
        *offset += len;
        Some(f)
    }
}

fn fast_path_ok(pkt: &PacketBuf, hlen: usize, data_mtu: usize, ll_rs: usize) -> bool {
    if pkt.chain().is_empty() {
        return false;
    }
    let first = pkt.page_len();
    let h = pkt.linear();
    let is_frag = frag_off(h) & (IP_MF | IP_OFFSET) != 0;
    if first - hlen > data_mtu || (first - hlen) & 7 != 0 || is_frag || pkt.headroom() < ll_rs {
        return false;
    }
    let n = pkt.chain().len();
    pkt.chain().iter().enumerate().all(|(i, f)| {
        f.len() <= data_mtu
            && (f.len() & 7 == 0 || i + 1 == n)
            && f.headroom() >= hlen + ll_rs
            && f.chain().is_empty()
    })
}

fn slow_mode(mut pkt: PacketBuf, pool: &BufPool, hlen: usize, data_mtu: usize) -> Mode {
    let frag_pmtu = pkt.meta.ip_flags.frag_pmtu;
    let fo = frag_off(pkt.linear());
    // The chain's buffers hold only payload: make the datagram contiguous in
    // meaning (copy_bits walks linear part, fragments and chain in order).
    let left = pkt.len() - hlen;
    pkt.meta.ip_summed = crate::buf::CsumState::None;
    Mode::Slow {
        src: pkt,
        pool: pool.clone(),
        ptr: hlen,
        left,
        offset: ((fo & IP_OFFSET) as usize) << 3,
        mtu: data_mtu,
        // ip_frag_init(..., IPCB(skb)->flags & IPSKB_FRAG_PMTU, ...): the DF of
        // the pieces comes from the flag, not from the original header.
        df: frag_pmtu,
        not_last: fo & IP_MF != 0,
    }
}

impl Iterator for Fragmenter {
    type Item = PacketBuf;

    fn next(&mut self) -> Option<PacketBuf> {
        let f = match self.mode {
            Mode::Fast { .. } => self.next_fast(),
            Mode::Slow { .. } => self.next_slow(),
        };
        if f.is_some() {
            self.created += 1;
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A header whose words sum to 0xffff: the checksum is 0x0000, never 0xffff.
    #[test]
    fn incremental_check_of_a_zero_checksum() {
        let mut h = [0u8; 20];
        h[0] = 0x45;
        h[8..10].copy_from_slice(&0xbaffu16.to_be_bytes());
        for (tot_len, off) in [(0u16, 0u16), (0x1000, 0xf000 - 1)] {
            let mut inc = h;
            let base = header_base(&inc);
            set_len_off_from(&mut inc, base, tot_len as usize, off);
            let mut full = h;
            full[2..4].copy_from_slice(&tot_len.to_be_bytes());
            full[6..8].copy_from_slice(&off.to_be_bytes());
            send_check(&mut full);
            assert_eq!(inc, full);
            assert_eq!(&inc[10..12], &[0, 0]);
        }
    }

    proptest! {
        /// The incremental checksum writes exactly what `send_check` does,
        /// options or not (0x0000 and 0xffff are not interchangeable).
        #[test]
        fn incremental_check_is_send_check(
            words in proptest::collection::vec(any::<u8>(), 60),
            optwords in 0usize..=10,
            tot_len in any::<u16>(),
            off in any::<u16>(),
        ) {
            let hlen = 20 + 4 * optwords;
            let mut h = words;
            h.truncate(hlen);
            h[0] = 0x40 | (hlen / 4) as u8;
            let base = header_base(&h);
            let mut inc = h.clone();
            set_len_off_from(&mut inc, base, tot_len as usize, off);
            let mut full = h;
            full[2..4].copy_from_slice(&tot_len.to_be_bytes());
            full[6..8].copy_from_slice(&off.to_be_bytes());
            send_check(&mut full);
            prop_assert_eq!(inc, full);
        }
    }
}
