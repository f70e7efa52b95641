//! IPv4 fragmentation: the fragment geometry, and cutting a datagram into
//! its fragments.
//!
//! Stands for the geometry `__ip_append_data` computes (`maxfraglen`,
//! `fraggap`, each buffer's `datalen`), `ip_fragment`, `ip_do_fragment`,
//! `ip_fraglist_init`/`prepare` (fast path), `ip_frag_init`/`ip_frag_next`
//! (slow path) and `ip_options_fragment` (`net/ipv4/ip_output.c`,
//! `net/ipv4/ip_options.c`).
//!
//! [`FragPlan`] is the one fragment planner: the cork sizes its buffers with
//! it as it appends, the one-pass build of a whole datagram cuts it with
//! [`FragPlan::layout`] into the same buffers, and the slow path below copies
//! pieces of [`FragPlan::datalen`] bytes. Every fragment but the last carries
//! `(mtu - hlen) & !7` data bytes (a multiple of 8, as offsets are counted in
//! 8-byte units); the last carries the rest, at most `mtu - hlen`.
//!
//! Fast path: a datagram built by the cork or in one pass already carries its
//! fragments as a chain whose geometry fits (head payload and every chained
//! buffer but the last a multiple of 8 and at most the MTU's data space,
//! headroom for a header): each fragment only gets a copy of the previous
//! fragment's header with its own length, offset and MF bit (its checksum
//! updated for those two words, RFC 1624); DF is cleared, as the kernel does.
//! Slow path: the datagram is copied out in pieces, each with a copy of the
//! original header (DF kept, MF set on all but the last unless the original
//! had MF, offsets continuing the original's).
//!
//! After the first fragment is made, options whose "copied" flag is clear are
//! replaced by NOPs in the headers that follow (`ip_options_fragment`) — only for
//! options the stack built (`IPCB(skb)->opt.optlen`), as in the kernel.
//! The [`Fragmenter`] is an iterator of ready fragments; errors are counted
//! per reason by the caller.

use crate::buf::{BufPool, FragMeta, PacketBuf};
use crate::wire::ipv4::{send_check, Ipv4Packet, FLAG_DF, FLAG_MF, HEADER_LEN, OFFSET_MASK};

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

/// The fragment geometry of datagrams with `hlen`-byte IP headers on a path
/// of `mtu` bytes (`fragheaderlen` and `cork->fragsize` in
/// `__ip_append_data`). See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragPlan {
    mtu: usize,
    hlen: usize,
}

impl FragPlan {
    /// The plan for `mtu` and `hlen` (`hlen + 8 <= mtu`).
    #[inline]
    pub const fn new(mtu: usize, hlen: usize) -> FragPlan {
        FragPlan { mtu, hlen }
    }

    /// The MTU.
    #[inline]
    pub const fn mtu(&self) -> usize {
        self.mtu
    }

    /// The IP header length (`fragheaderlen`).
    #[inline]
    pub const fn hlen(&self) -> usize {
        self.hlen
    }

    /// Data bytes one frame holds: `mtu - fragheaderlen`.
    #[inline]
    pub const fn space(&self) -> usize {
        self.mtu - self.hlen
    }

    /// Data bytes of every fragment but the last: the space rounded down
    /// to a multiple of 8.
    #[inline]
    pub const fn maxdata(&self) -> usize {
        self.space() & !7
    }

    /// `maxfraglen`: the length (header included) of every fragment but the
    /// last.
    #[inline]
    pub const fn maxfraglen(&self) -> usize {
        self.maxdata() + self.hlen
    }

    /// The data bytes a fragment (or a cork buffer) opened with `left` bytes
    /// still to place takes: all of them when they fit one frame, else
    /// [`FragPlan::maxdata`] (`__ip_append_data`'s `datalen`,
    /// `ip_frag_next`'s `len`).
    #[inline]
    pub const fn datalen(&self, left: usize) -> usize {
        if left > self.space() {
            self.maxdata()
        } else {
            left
        }
    }

    /// `fraggap`: the bytes past `maxfraglen` in a buffer of `len` bytes
    /// (header included), which move to the next buffer.
    #[inline]
    pub const fn fraggap(&self, len: usize) -> usize {
        len.saturating_sub(self.maxfraglen())
    }

    /// How a datagram of `length` data bytes (transport header included),
    /// appended whole, is cut into buffers; `None` when it fits one frame
    /// (or no 8 bytes of data fit a fragment).
    #[inline]
    pub fn layout(&self, length: usize) -> Option<FragLayout> {
        let (space, maxdata) = (self.space(), self.maxdata());
        if length <= space || maxdata == 0 {
            return None;
        }
        let full = (length - space).div_ceil(maxdata);
        Some(FragLayout {
            hlen: self.hlen,
            maxdata,
            full,
            last: length - full * maxdata,
        })
    }
}

/// How [`FragPlan::layout`] cuts a datagram: `full` buffers of `maxdata` data
/// bytes, then one of `last` (at most the MTU's data space).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragLayout {
    /// The IP header length.
    pub hlen: usize,
    /// Data bytes of every buffer but the last.
    pub maxdata: usize,
    /// Buffers before the last.
    pub full: usize,
    /// Data bytes of the last buffer.
    pub last: usize,
}

impl FragLayout {
    /// Data bytes (IP header excluded) of buffer `i`.
    #[inline]
    pub fn datalen(&self, i: usize) -> usize {
        if i < self.full {
            self.maxdata
        } else {
            self.last
        }
    }

    /// The datagram's data bytes.
    #[inline]
    pub fn length(&self) -> usize {
        self.full * self.maxdata + self.last
    }

    /// The IP bytes of all the fragments, headers included (what
    /// `ip_finish_output2` counts as sent, `IpExtOutOctets`).
    #[inline]
    pub fn ip_bytes(&self) -> usize {
        (self.full + 1) * self.hlen + self.length()
    }
}

/// The flags-and-offset word of the header `h`.
fn frag_off(h: &[u8]) -> u16 {
    Ipv4Packet::new_unchecked(h).frag_word()
}

/// Writes a fragment's total length and flags-and-offset word (`off`, in
/// the header's own units), then its checksum.
fn set_len_off(h: &mut [u8], tot_len: usize, off: u16) {
    let mut ip = Ipv4Packet::new_unchecked(&mut *h);
    ip.set_total_len(tot_len as u16);
    ip.set_frag_word(off);
    send_check(h);
}

/// The ones'-complement sum of the 16-bit words of the header `h`, with
/// `tot_len`, `frag_off` and the checksum counted as zero: what every
/// fast-path fragment's header sums to before its own length and offset are
/// added. The words are read as they lie in memory (native-endian: a ones'
/// complement sum does not depend on the byte order, only its result is
/// swapped, once, by [`set_len_off_from`]). At most 30 words, so no carry
/// leaves the `u32`.
#[inline(always)]
fn header_base(h: &[u8]) -> u32 {
    let w = |i: usize| u32::from(u16::from_ne_bytes([h[2 * i], h[2 * i + 1]]));
    if let Some(h20) = h
        .first_chunk::<HEADER_LEN>()
        .filter(|_| h.len() == HEADER_LEN)
    {
        // The option-less header: its seven other words, at fixed places.
        let w = |i: usize| u32::from(u16::from_ne_bytes([h20[2 * i], h20[2 * i + 1]]));
        return w(0) + w(2) + w(4) + w(6) + w(7) + w(8) + w(9);
    }
    (0..h.len() / 2)
        .filter(|i| !matches!(i, 1 | 3 | 5))
        .map(w)
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
    // The two words as they will lie in memory, summed as the others were.
    let sum = base + u32::from(tot_len.to_be()) + u32::from(off.to_be());
    let (s16, c) = (sum as u16).overflowing_add((sum >> 16) as u16);
    let s16 = s16.wrapping_add(u16::from(c));
    let mut ip = Ipv4Packet::new_unchecked(h);
    ip.set_total_len(tot_len);
    ip.set_frag_word(off);
    ip.set_checksum(u16::from_be(!s16));
}

/// The fields of the option-less header `h` that the fragments' headers
/// share, into `t` (length, offset and checksum are each fragment's own).
/// Read as the words they were written in (the header was just written
/// field by field: one wide load over those narrow stores would wait for
/// them to reach the cache).
#[inline(always)]
fn template_from(t: &mut [u8; HEADER_LEN], h: &[u8; HEADER_LEN]) {
    for i in [0, 4, 8] {
        t[i..i + 2].copy_from_slice(&u16::from_ne_bytes([h[i], h[i + 1]]).to_ne_bytes());
    }
    for i in [12, 16] {
        let w = u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        t[i..i + 4].copy_from_slice(&w.to_ne_bytes());
    }
}

/// Copies the first `dst.len()` bytes of `hdr` (a header) into `dst`; the
/// common option-less header is a fixed-size copy.
#[inline]
fn copy_header(dst: &mut [u8], hdr: &[u8]) {
    if dst.len() == HEADER_LEN {
        if let (Some(d), Some(h)) = (
            dst.first_chunk_mut::<HEADER_LEN>(),
            hdr.first_chunk::<HEADER_LEN>(),
        ) {
            *d = *h;
            return;
        }
    }
    let n = dst.len();
    dst.copy_from_slice(&hdr[..n]);
}

/// Kernel: `ip_options_fragment()` on the `optlen` option bytes the stack built.
fn options_fragment(h: &mut [u8], optlen: usize) {
    let end = (HEADER_LEN + optlen).min(h.len());
    if end > HEADER_LEN {
        crate::wire::options_fragment(&mut h[HEADER_LEN..end]);
    }
}

/// Kernel: the fast path of `ip_do_fragment` (`struct ip_fraglist_iter`):
/// a datagram whose chained buffers are its fragments as they stand. Its
/// head becomes the first fragment ([`FragList::init`]); each chained
/// buffer, in order, gets the header template with its own length, offset
/// and MF bit and the datagram's metadata ([`FragList::prepare`]).
pub struct FragList {
    /// The header of the fragments after the first (options not copied
    /// into fragments made NOPs).
    hdr: [u8; 60],
    hlen: usize,
    /// [`header_base`] of `hdr`.
    base: u32,
    /// Data bytes before the next fragment.
    offset: usize,
    /// What every fragment takes from the datagram (`ip_copy_metadata`),
    /// and its zero-copy token.
    meta: FragMeta,
    zc: Option<std::sync::Arc<crate::buf::ZcUarg>>,
}

impl Default for FragList {
    fn default() -> Self {
        FragList::new()
    }
}

impl FragList {
    /// An iterator with no datagram yet ([`FragList::init`] starts one, in
    /// place: the iterator, a header template among its fields, is not
    /// moved).
    pub fn new() -> FragList {
        FragList {
            hdr: [0; 60],
            hlen: 0,
            base: 0,
            offset: 0,
            meta: FragMeta::default(),
            zc: None,
        }
    }

    /// Kernel: `ip_fraglist_init()`. Makes the datagram's head (of an
    /// `hlen`-byte header, `optlen` of it options the stack built) its first
    /// fragment — the head's length and MF, DF cleared — and takes its
    /// chain, the other fragments in order.
    #[inline(always)]
    pub fn init(&mut self, head: &mut PacketBuf, hlen: usize, optlen: usize) -> Vec<PacketBuf> {
        let rest = head.take_chain();
        let len = head.len();
        let list = self;
        list.hlen = hlen;
        list.offset = len - hlen;
        list.meta = head.meta.frag_meta();
        list.zc = head.meta.zc.clone();
        let lin = head.linear_mut();
        match (
            lin.first_chunk_mut::<HEADER_LEN>(),
            list.hdr.first_chunk_mut::<HEADER_LEN>(),
        ) {
            // The option-less header, as fixed-size arrays.
            (Some(h), Some(t)) if hlen == HEADER_LEN => {
                list.base = header_base(h);
                template_from(t, h);
                set_len_off_from(h, list.base, len, FLAG_MF);
            }
            _ => {
                list.base = header_base(&lin[..hlen]);
                set_len_off_from(&mut lin[..hlen], list.base, len, FLAG_MF);
                copy_header(&mut list.hdr[..hlen], lin);
                if optlen != 0 {
                    options_fragment(&mut list.hdr[..hlen], optlen);
                    list.base = header_base(&list.hdr[..hlen]);
                }
            }
        }
        rest
    }

    /// Kernel: `ip_fraglist_prepare()` and `ip_copy_metadata()`. Makes the
    /// chained buffer `f` (its data only, headroom for the header) the
    /// next fragment; `last` when no other follows.
    #[inline(always)]
    pub fn prepare(&mut self, f: &mut PacketBuf, last: bool) -> usize {
        let hlen = self.hlen;
        let data_len = f.len();
        let off = (self.offset >> 3) as u16 | if last { 0 } else { FLAG_MF };
        if hlen == HEADER_LEN {
            let h = f.push_array::<HEADER_LEN>();
            if let Some(t) = self.hdr.first_chunk::<HEADER_LEN>() {
                *h = *t;
            }
            set_len_off_from(h, self.base, data_len + hlen, off);
        } else {
            let h = f.push(hlen);
            copy_header(h, &self.hdr);
            set_len_off_from(h, self.base, data_len + hlen, off);
        }
        f.meta.set_frag_meta(&self.meta);
        if self.zc.is_some() {
            // The last fragment takes the token itself.
            f.meta.zc = if last {
                self.zc.take()
            } else {
                self.zc.clone()
            };
        }
        f.reset_network_header();
        f.meta.transport_header = f.meta.network_header + hlen as u16;
        self.offset += data_len;
        data_len + hlen
    }
}

/// The start of `ip_do_fragment`: the datagram's header checked (an IPv4
/// header within the buffer, at least 8 data bytes per fragment at `mtu`)
/// and a checksum left to the device completed (`skb_checksum_help`, as
/// `ip_fragment` does: fragments are never `CHECKSUM_PARTIAL`). Returns the
/// fragment plan and the length of the options the stack built.
#[inline]
pub(crate) fn prepare(pkt: &mut PacketBuf, mtu: u32) -> Result<(FragPlan, usize), FragError> {
    let lin = pkt.linear();
    if lin.len() < HEADER_LEN || lin[0] >> 4 != 4 {
        return Err(FragError::Malformed);
    }
    let hlen = Ipv4Packet::new_unchecked(lin).header_len();
    if hlen > lin.len() {
        return Err(FragError::Malformed);
    }
    if (mtu as usize) < hlen + 8 {
        return Err(FragError::MtuTooSmall { mtu, hlen });
    }
    let optlen = (pkt.meta.ip_optlen as usize).min(hlen - HEADER_LEN);
    if pkt.meta.ip_summed != crate::buf::CsumState::None {
        crate::offload::checksum_help(pkt);
    }
    Ok((FragPlan::new(mtu as usize, hlen), optlen))
}

/// Fragments of one datagram, in order. See the module documentation.
pub struct Fragmenter<'p> {
    mode: Mode,
    /// The slow path's header template.
    hdr: [u8; 60],
    hlen: usize,
    optlen: usize,
    ll_rs: usize,
    created: usize,
    pool: &'p BufPool,
}

impl Drop for Fragmenter<'_> {
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
        /// The first fragment (the datagram's head, its header done).
        head: Option<PacketBuf>,
        list: FragList,
        /// The chain, reversed so fragments are popped off the end in order.
        rest: Vec<PacketBuf>,
    },
    Slow {
        src: PacketBuf,
        plan: FragPlan,
        ptr: usize,
        left: usize,
        offset: usize,
        df: bool,
        not_last: bool,
    },
}

impl<'p> Fragmenter<'p> {
    /// Prepares to fragment `pkt` (data starting at its IP header) for `mtu`, with
    /// `ll_rs` bytes of link-layer headroom in each fragment. Buffers for the slow
    /// path come from `pool`. On error the packet is freed; the caller counts it.
    pub fn new(
        mut pkt: PacketBuf,
        mtu: u32,
        ll_rs: usize,
        pool: &'p BufPool,
    ) -> Result<Fragmenter<'p>, FragError> {
        let (plan, optlen) = prepare(&mut pkt, mtu)?;
        if !fast_path_ok(&pkt, plan, ll_rs) {
            return Ok(Fragmenter::slow(pkt, (plan, optlen), ll_rs, pool));
        }
        let hlen = plan.hlen();
        let mut list = FragList::new();
        let mut rest = list.init(&mut pkt, hlen, optlen);
        rest.reverse();
        let mode = Mode::Fast {
            head: Some(pkt),
            list,
            rest,
        };
        Ok(Fragmenter {
            mode,
            hdr: [0; 60],
            hlen,
            optlen,
            ll_rs,
            created: 0,
            pool,
        })
    }

    /// `ip_do_fragment`'s slow path for `pkt`, which `prepare` gave
    /// `plan` and `optlen` and the fast path does not take: each fragment
    /// a fresh buffer from `pool` with `ll_rs` bytes of headroom.
    pub fn slow(
        pkt: PacketBuf,
        (plan, optlen): (FragPlan, usize),
        ll_rs: usize,
        pool: &'p BufPool,
    ) -> Fragmenter<'p> {
        let hlen = plan.hlen();
        let mut hdr = [0; 60];
        copy_header(&mut hdr[..hlen], pkt.linear());
        Fragmenter {
            mode: slow_mode(pkt, plan),
            hdr,
            hlen,
            optlen,
            ll_rs,
            created: 0,
            pool,
        }
    }

    /// True when every fragment has been made.
    pub fn is_done(&self) -> bool {
        match &self.mode {
            Mode::Fast { head, rest, .. } => head.is_none() && rest.is_empty(),
            Mode::Slow { left, .. } => *left == 0,
        }
    }

    /// Fragments made so far.
    pub fn created(&self) -> usize {
        self.created
    }

    /// True when the fast path (the datagram's own chain) is used.
    pub fn is_fast_path(&self) -> bool {
        matches!(self.mode, Mode::Fast { .. })
    }

    /// What `ip_do_fragment` frees when a fragment fails to go down, the
    /// next one already `prepared` or not: the fragments not yet sent
    /// (`kfree_skb_list`, fast path), or the datagram (`kfree_skb`, slow
    /// path, whose fragments are cut from it one at a time).
    pub fn unsent(&self, prepared: bool) -> u64 {
        match &self.mode {
            Mode::Fast { rest, .. } => rest.len() as u64 + u64::from(prepared),
            Mode::Slow { .. } => 1,
        }
    }

    #[inline]
    fn next_fast(&mut self) -> Option<PacketBuf> {
        let Mode::Fast { head, list, rest } = &mut self.mode else {
            return None;
        };
        if let Some(h) = head.take() {
            return Some(h);
        }
        let mut f = rest.pop()?;
        list.prepare(&mut f, rest.is_empty());
        Some(f)
    }

    #[inline(never)]
    fn next_slow(&mut self) -> Option<PacketBuf> {
        let Mode::Slow {
            src,
            plan,
            ptr,
            left,
            offset,
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
        let len = plan.datalen(*left);
        let mut f = self.pool.alloc(self.ll_rs + hlen + len);
        f.reserve(self.ll_rs);
        f.meta.set_frag_meta(&src.meta.frag_meta());
        f.meta.zc = src.meta.zc.clone();
        f.reset_network_header();
        f.meta.transport_header = f.meta.network_header + hlen as u16;
        let out = f.put(hlen + len);
        out[..hlen].copy_from_slice(&self.hdr[..hlen]);
        src.copy_bits(*ptr, &mut out[hlen..]);
        *left -= len;
        let more = *left > 0 || *not_last;
        let word =
            (*offset >> 3) as u16 | if *df { FLAG_DF } else { 0 } | if more { FLAG_MF } else { 0 };
        set_len_off(&mut out[..hlen], len + hlen, word);
        if first_frag {
            options_fragment(&mut self.hdr[..hlen], self.optlen);
        }
        *ptr += len;
        *offset += len;
        Some(f)
    }
}

/// `ip_do_fragment`'s test for the fast path: the chain's buffers are
/// fragments as they stand.
#[inline]
pub(crate) fn fast_path_ok(pkt: &PacketBuf, plan: FragPlan, ll_rs: usize) -> bool {
    let Some((last, rest)) = pkt.chain().split_last() else {
        return false;
    };
    let (hlen, space) = (plan.hlen(), plan.space());
    let first = pkt.page_len();
    let is_frag = frag_off(pkt.linear()) & (FLAG_MF | OFFSET_MASK) != 0;
    if first - hlen > space || (first - hlen) & 7 != 0 || is_frag || pkt.headroom() < ll_rs {
        return false;
    }
    // Every fragment but the last a multiple of 8 bytes; each at most the
    // data space, with room for its header and not a chain itself.
    let fits =
        |f: &PacketBuf| f.len() <= space && f.headroom() >= hlen + ll_rs && f.chain().is_empty();
    rest.iter().all(|f| f.len() & 7 == 0 && fits(f)) && fits(last)
}

fn slow_mode(mut pkt: PacketBuf, plan: FragPlan) -> Mode {
    let frag_pmtu = pkt.meta.ip_flags.frag_pmtu;
    let fo = frag_off(pkt.linear());
    // The chain's buffers hold only payload: make the datagram contiguous in
    // meaning (copy_bits walks linear part, fragments and chain in order).
    let hlen = plan.hlen();
    let left = pkt.len() - hlen;
    pkt.meta.ip_summed = crate::buf::CsumState::None;
    Mode::Slow {
        src: pkt,
        plan,
        ptr: hlen,
        left,
        offset: ((fo & OFFSET_MASK) as usize) << 3,
        // ip_frag_init(..., IPCB(skb)->flags & IPSKB_FRAG_PMTU, ...): the DF of
        // the pieces comes from the flag, not from the original header.
        df: frag_pmtu,
        not_last: fo & FLAG_MF != 0,
    }
}

impl Iterator for Fragmenter<'_> {
    type Item = PacketBuf;

    #[inline]
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

    #[test]
    fn cut_matches_append_data() {
        let plan = FragPlan::new(1500, 20);
        // 65000 bytes of payload at MTU 1500: 43 buffers of 1480, then 1368.
        let c = plan.layout(65008).unwrap();
        assert_eq!((c.maxdata, c.full, c.last), (1480, 43, 1368));
        assert_eq!(c.ip_bytes(), 44 * 20 + 65008);
        // MTU 1501: data space 1481, so the last buffer may hold 1481 bytes.
        let c = FragPlan::new(1501, 20).layout(2961).unwrap();
        assert_eq!((c.maxdata, c.full, c.last), (1480, 1, 1481));
        assert_eq!(plan.layout(1480), None);
        assert_eq!(plan.layout(1481).map(|c| (c.full, c.last)), Some((1, 1)));
        // The cork's rule for a buffer and the slow path's for a piece.
        assert_eq!((plan.datalen(1480), plan.datalen(1481)), (1480, 1480));
        assert_eq!(FragPlan::new(1501, 20).datalen(1481), 1481);
        assert_eq!(plan.maxfraglen(), 1500);
        // 553 bytes of space with 4 option bytes: fragments of 552.
        assert_eq!(FragPlan::new(577, 24).maxfraglen(), 576);
        assert_eq!(FragPlan::new(577, 24).fraggap(577), 1);
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

        /// Cutting a datagram whole gives the buffers appending it piece
        /// by piece with the same plan gives: every one but the last of
        /// `datalen` of what is left, which is `maxdata`.
        #[test]
        fn cut_is_datalen_applied_in_turn(mtu in 68usize..=9000, opt in 0usize..=10, length in 0usize..=65535) {
            let plan = FragPlan::new(mtu, 20 + 4 * opt);
            prop_assume!(plan.hlen() + 8 <= mtu);
            let mut left = length;
            let mut bufs = Vec::new();
            loop {
                let d = plan.datalen(left);
                bufs.push(d);
                left -= d;
                if left == 0 { break; }
            }
            match plan.layout(length) {
                None => prop_assert_eq!(bufs.len(), 1),
                Some(c) => {
                    prop_assert_eq!(bufs.len(), c.full + 1);
                    for (i, d) in bufs.iter().enumerate() {
                        prop_assert_eq!(*d, c.datalen(i));
                    }
                }
            }
        }
    }
}
