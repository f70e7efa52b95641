//! Building a UDP datagram in one pass, for [`UdpSocket::send_batch`].
//!
//! Stands for what `udp_sendmsg`'s lockless path does to a datagram:
//! `ip_make_skb` → `__ip_append_data` (buffers cut by the fragment plan,
//! the UDP header in the first) → `__ip_make_skb` (the later buffers
//! chained behind the first as its `frag_list`, the IP header and ID) →
//! `udp_send_skb` (UDP header and checksum) (`net/ipv4/udp.c`,
//! `net/ipv4/ip_output.c`). The datagram then goes down the one output
//! path, `ip_send_skb` → [`OutputBatch`](crate::ipv4::output::OutputBatch),
//! which runs the hooks on it, fragments it (`ip_do_fragment`'s fast path:
//! each chained buffer becomes a fragment) and hands it to the device.
//!
//! Done in one pass instead of one per piece: each buffer is allocated with
//! the size `__ip_append_data` gives it for the same data (and charged what
//! the kernel's is charged; up to 63 bytes more headroom put its data at a
//! cache-line boundary, see [`DATA_ALIGN`]), then the whole payload is copied
//! into the buffers, from one message or several, while its sum is taken
//! ([`Csum::copy_and_sum_scatter`]: one set of running sums for the
//! datagram, not one per buffer or per piece).
//!
//! A corked datagram — messages of one batch, all but the last with
//! `MSG_MORE` — is made the same way, its data gathered from the messages.
//! The kernel's cork keeps such a datagram's later pieces in page fragments
//! (scatter-gather) or in buffers opened with a whole MTU of room (without);
//! here every buffer is linear, but each is charged what the kernel's buffer
//! for the same bytes is charged (its head's allocation, plus the page
//! bytes), so the send budget moves exactly as there. The buffer layout
//! (linear or page fragments) and the unfolded `skb->csum` partial sums are
//! not part of that sameness — neither is on the wire — and the socket's
//! page fragment (`sk_page_frag`) is not used, so a later datagram that does
//! go through the cork finds it where the earlier ones left it. This needs
//! the MTU's data space to be a multiple of 8 (so at MTU 1500, not at 576 or
//! 9000): else the cork's buffers overflow and move bytes (`fraggap`) and the
//! cork builds the datagram.
//!
//! The one-pass build takes a datagram whose length `__ip_append_data`
//! accepts, that may be fragmented (`IP_PMTUDISC_WANT`, `DONT` or `OMIT`)
//! when it does not fit, whose fragment size is the MTU `ip_fragment` will
//! use, and whose buffers all pass the send-budget checks without waiting
//! (else the cork decides, as the kernel does: wait, `EAGAIN` or `ENOBUFS`).

use super::batch::{BatchCork, BatchMsg};
use super::{write_check, UdpSocket, UDP_HLEN};
use crate::buf::{kernel_truesize, same_class, CsumState, PacketBuf, SendBudget};
use crate::ipv4::fragment::{FragLayout, FragPlan};
use crate::ipv4::output::ip_mtu;
use crate::offload::Features;
use crate::route::IP_MAX_MTU;
use crate::socket::cork::datagram_df;
use crate::socket::{MsgFlags, PmtuDisc};
use crate::stack::Stack;
use crate::wire::checksum::{CopySeg, Csum};
use crate::wire::ipv4::HEADER_LEN;
use crate::wire::udp::mangle_zero;
use std::sync::Arc;

/// The send-budget checks a datagram's buffers meet with `allocated`
/// already charged: `sock_alloc_send_skb`'s for the first (`sk_wmem_alloc <
/// sk_sndbuf`, else wait or `EAGAIN`) and `__ip_append_data`'s for the
/// others (`< 2 * sk_sndbuf`, else `ENOBUFS`), the last checked with all
/// the others (`before_last`) charged.
pub(super) fn budget_allows(allocated: usize, limit: usize, before_last: usize) -> bool {
    allocated < limit && allocated.saturating_add(before_last) < limit.saturating_mul(2)
}

/// The sizes of a datagram's buffers: what `__ip_append_data` adds to a
/// buffer's data (`hh_len + 15`, and the trailer where the data reaches the
/// end of the piece being appended), and the geometry the charges depend on.
#[derive(Clone, Copy, Debug)]
pub(super) struct BufSizes {
    mtu: usize,
    extra: usize,
    trailer: usize,
    /// The device takes page fragments (`NETIF_F_SG`).
    sg: bool,
}

impl BufSizes {
    /// The allocation of buffer `i`: room for its IP header and all its
    /// data in the linear part.
    fn alloc(&self, l: &FragLayout, i: usize) -> usize {
        let t = if i == l.full { self.trailer } else { 0 };
        HEADER_LEN + l.datalen(i) + self.extra + t
    }

    /// What the cork's buffer `k` is charged (`skb->truesize`). It was
    /// opened while `p` (the piece holding its first byte) was appended,
    /// with `r` bytes of that piece left: `__ip_append_data` put at most a
    /// fragment's data of them in its linear part (a whole MTU of room under
    /// `MSG_MORE` without scatter-gather) and, with scatter-gather, later
    /// pieces' bytes into page fragments, charged byte for byte.
    fn charge(&self, l: &FragLayout, k: usize, c: &mut PieceCursor<'_>) -> usize {
        let (r, more) = c.seek(k * l.maxdata);
        let lin = r.min(l.maxdata);
        let alloclen = if more && !self.sg {
            self.mtu
        } else {
            HEADER_LEN + lin
        };
        let trailer = if lin == r { self.trailer } else { 0 };
        let paged = if self.sg { l.datalen(k) - lin } else { 0 };
        kernel_truesize(alloclen + self.extra + trailer) + paged
    }

    /// The charges of all buffers together, and of all but the last; for a
    /// corked group, each buffer's also into `each` when it has room for
    /// them all (else `each` is left alone).
    fn charges(&self, l: &FragLayout, pieces: &[BatchMsg<'_>], each: &mut [u32]) -> (usize, usize) {
        if pieces.len() == 1 {
            // A datagram sent whole: each buffer is charged its allocation.
            let full = kernel_truesize(self.alloc(l, 0)) * l.full;
            return (full + kernel_truesize(self.alloc(l, l.full)), full);
        }
        let mut c = PieceCursor::new(pieces);
        let keep = each.len() > l.full;
        let (mut all, mut before_last) = (0, 0);
        for k in 0..=l.full {
            let t = self.charge(l, k, &mut c);
            if let Some(e) = each.get_mut(k).filter(|_| keep) {
                *e = t as u32;
            }
            (before_last, all) = (all, all + t);
        }
        (all, before_last)
    }
}

/// Where the pieces of a datagram lie in it (offsets count the UDP header,
/// which belongs to the first piece, as `transhdrlen` of its append).
struct PieceCursor<'a> {
    pieces: &'a [BatchMsg<'a>],
    i: usize,
    /// The end of piece `i`.
    end: usize,
}

impl<'a> PieceCursor<'a> {
    fn new(pieces: &'a [BatchMsg<'a>]) -> PieceCursor<'a> {
        let end = UDP_HLEN + pieces.first().map_or(0, |m| m.data.len());
        PieceCursor { pieces, i: 0, end }
    }

    /// For datagram offset `b` (not before the last one asked): the bytes
    /// of its piece from `b` on, and whether that piece has `MSG_MORE` (is
    /// not the last).
    fn seek(&mut self, b: usize) -> (usize, bool) {
        while self.end <= b && self.i + 1 < self.pieces.len() {
            self.i += 1;
            self.end += self.pieces[self.i].data.len();
        }
        (self.end.saturating_sub(b), self.i + 1 < self.pieces.len())
    }
}

/// The stretches of a datagram's payload copy
/// ([`Csum::copy_and_sum_scatter`]): each buffer's data room (after the
/// IP and UDP headers in the first, all of it in the chained ones) filled
/// from the pieces in turn, a stretch wherever both go on; the head's last
/// one marked.
struct CopyStretches<'f, 'a> {
    /// The chained buffers after the current one.
    bufs: std::slice::IterMut<'f, PacketBuf>,
    /// What is left of the current buffer's data room.
    room: &'f mut [u8],
    /// The current room is the head's.
    head: bool,
    /// The pieces after the current one, and what is left of it.
    pieces: std::slice::Iter<'a, BatchMsg<'a>>,
    piece: &'a [u8],
}

impl<'f, 'a> CopyStretches<'f, 'a> {
    /// The stretches of `head_room` (the head's payload room) and then of
    /// the buffers `chain`, filled from `pieces`.
    fn new(
        head_room: &'f mut [u8],
        chain: &'f mut [PacketBuf],
        pieces: &'a [BatchMsg<'a>],
    ) -> Self {
        CopyStretches {
            bufs: chain.iter_mut(),
            room: head_room,
            head: true,
            pieces: pieces.iter(),
            piece: &[],
        }
    }
}

impl<'f, 'a> Iterator for CopyStretches<'f, 'a> {
    type Item = CopySeg<'a, 'f>;

    #[inline(always)]
    fn next(&mut self) -> Option<CopySeg<'a, 'f>> {
        while self.room.is_empty() {
            let skb = self.bufs.next()?;
            self.head = false;
            let at = skb.data_offset();
            self.room = skb.from_offset_mut(at);
        }
        while self.piece.is_empty() {
            self.piece = self.pieces.next()?.data;
        }
        let n = self.piece.len().min(self.room.len());
        let (src, piece) = self.piece.split_at(n);
        let (dst, room) = std::mem::take(&mut self.room).split_at_mut(n);
        let mark = self.head && room.is_empty();
        (self.piece, self.room) = (piece, room);
        Some(CopySeg { src, dst, mark })
    }
}

/// One datagram of a `send_batch` run: how many messages it takes (one, or
/// a corked group), how it is cut into buffers when it does not fit one
/// frame, what its buffers are charged, and what all but its last are.
#[derive(Clone, Copy, Debug)]
pub(super) struct Datagram {
    pub(super) msgs: usize,
    pub(super) layout: Option<(FragLayout, BufSizes)>,
    pub(super) charge: usize,
    pub(super) before_last: usize,
    /// For a corked group, the [`PlanMemo`] generation that holds each of
    /// its buffers' charges; 0 for none.
    pub(super) memo: u32,
}

/// Pieces a [`PlanMemo`] remembers the lengths of (longer groups are not
/// remembered).
const MEMO_PIECES: usize = 16;

/// Buffers a [`PlanMemo`] remembers the charges of.
const MEMO_BUFS: usize = 48;

/// The last datagram over the MTU a run planned, by the lengths of its
/// pieces: the next one of the same lengths is cut and charged the same
/// (the cork, the flags and `MSG_MORE` on all but the last piece being the
/// run's), so a batch of like datagrams plans the cut and the cork's
/// charges once, each buffer's included. Kept in the socket from call to
/// call while the run's [`PlanKey`] stays the same.
#[derive(Debug)]
pub(super) struct PlanMemo {
    lens: [u16; MEMO_PIECES],
    datagram: Option<Datagram>,
    /// Counts the datagrams remembered (the first is 1).
    gen: u32,
    /// Each buffer's charge, for a corked group of at most [`MEMO_BUFS`]
    /// buffers.
    each: [u32; MEMO_BUFS],
    /// What the remembered plans depend on besides the pieces: they hold
    /// while a run's cork gives the same key.
    key: Option<PlanKey>,
}

impl Default for PlanMemo {
    fn default() -> Self {
        PlanMemo {
            lens: [0; MEMO_PIECES],
            datagram: None,
            gen: 0,
            each: [0; MEMO_BUFS],
            key: None,
        }
    }
}

/// Everything of a run's cork that the cut and the charges of a corked
/// group depend on (see [`UdpSocket::layout_of`] and
/// [`BufSizes::charges`]), besides the pieces' lengths and flags: the flags
/// of the call and of the run, the fragment size, the PMTU mode and both
/// MTUs, and what `__ip_append_data` adds to a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PlanKey {
    flags: MsgFlags,
    base: MsgFlags,
    max_payload: usize,
    pmtudisc: PmtuDisc,
    path_mtu: u32,
    dev_mtu: u32,
    extra: usize,
    trailer: u32,
    sg: bool,
}

impl PlanKey {
    /// The key of `cork` for messages sent with `flags`, the run's own
    /// flags being `base`.
    pub(super) fn of(cork: &BatchCork, flags: MsgFlags, base: MsgFlags) -> PlanKey {
        let p = &cork.params;
        PlanKey {
            flags,
            base,
            max_payload: cork.max_payload,
            pmtudisc: p.pmtudisc,
            path_mtu: p.dst.mtu(),
            dev_mtu: p.dst.dev.mtu(),
            extra: p.dst.dev.ll_reserved_space(),
            trailer: u32::from(p.dst.trailer_len),
            sg: p.dst.dev.features().contains(Features::SG),
        }
    }
}

impl PlanMemo {
    /// The remembered datagram when the messages `msgs` starts with are its
    /// group again: as many, of the remembered lengths, each with the
    /// run's flags (`flags` and its own: `base`, with `MSG_MORE` on all but
    /// the last). One pass over the group, before any other scan.
    #[inline]
    fn get(&self, msgs: &[BatchMsg<'_>], flags: MsgFlags, base: MsgFlags) -> Option<&Datagram> {
        let d = self.datagram.as_ref()?;
        let (last, init) = msgs.get(..d.msgs)?.split_last()?;
        let (last_len, lens) = self.lens.get(..d.msgs)?.split_last()?;
        let more = base.with(MsgFlags::MORE);
        let same = |m: &BatchMsg<'_>, l: u16, want: MsgFlags| {
            m.data.len() == usize::from(l) && flags | m.flags == want
        };
        let init_same = init.iter().zip(lens).all(|(m, &l)| same(m, l, more));
        (init_same && same(last, *last_len, base)).then_some(d)
    }

    /// Keeps what is remembered for a run whose cork gives `key` when an
    /// earlier run's gave the same; forgets it otherwise (a changed MTU,
    /// PMTU mode, device or flags), the generation going on.
    pub(super) fn keep_for(&mut self, key: PlanKey) {
        if self.key != Some(key) {
            (self.key, self.datagram) = (Some(key), None);
        }
    }

    /// Remembers `d` as the datagram of `group` (pieces of at most 65535
    /// bytes), when it has few enough pieces.
    fn set(&mut self, group: &[BatchMsg<'_>], d: Datagram) {
        if group.len() > MEMO_PIECES {
            return;
        }
        for (l, m) in self.lens.iter_mut().zip(group) {
            *l = m.data.len() as u16;
        }
        self.datagram = Some(d);
    }

    /// The charges of the buffers of the datagram planned with generation
    /// `memo`, while they are still the ones remembered.
    fn each(&self, memo: u32) -> Option<&[u32; MEMO_BUFS]> {
        (memo != 0 && memo == self.gen).then_some(&self.each)
    }
}

impl UdpSocket {
    /// The datagram `msgs` starts with, when the one-pass build takes it
    /// (see the module documentation): a plain message to the run's
    /// destination with the run's flags (`base`) that fits one frame or
    /// fragments, or a corked group — messages with `MSG_MORE` (their
    /// flags otherwise `base`) up to one without — that fragments.
    /// The datagram is pushed onto `plan` (straight from the memo when it
    /// is the memo's); `None` pushes nothing.
    #[inline(always)]
    pub(super) fn datagram(
        &self,
        cork: &BatchCork,
        msgs: &[BatchMsg<'_>],
        (flags, base): (MsgFlags, MsgFlags),
        plan: &mut Vec<Datagram>,
    ) -> Option<()> {
        let m = msgs.first().filter(|m| m.dest == cork.dest)?;
        if flags | m.flags == base && m.data.len() <= cork.max_payload {
            // The common case first: a datagram that fits one frame.
            let charge = cork.truesize(HEADER_LEN + UDP_HLEN + m.data.len() + cork.alloc_extra);
            plan.push(Datagram {
                msgs: 1,
                layout: None,
                charge,
                before_last: 0,
                memo: 0,
            });
            return Some(());
        }
        let lent = cork.plan_memo.borrow();
        if let Some(d) = lent.as_deref().and_then(|m| m.get(msgs, flags, base)) {
            plan.push(*d);
            return Some(());
        }
        drop(lent);
        plan.push(self.fragmenting_datagram(cork, msgs, flags, base)?);
        Some(())
    }

    /// [`UdpSocket::datagram`] for one that does not fit one frame and is
    /// not the memo's.
    fn fragmenting_datagram(
        &self,
        cork: &BatchCork,
        msgs: &[BatchMsg<'_>],
        flags: MsgFlags,
        base: MsgFlags,
    ) -> Option<Datagram> {
        let own = |m: &BatchMsg<'_>| flags | m.flags;
        let n = if own(&msgs[0]).contains(MsgFlags::MORE) {
            1 + msgs.iter().position(|m| !own(m).contains(MsgFlags::MORE))?
        } else {
            1
        };
        let group = &msgs[..n];
        if group
            .iter()
            .any(|m| own(m).without(MsgFlags::MORE) != base || m.data.len() > 0xffff)
        {
            return None;
        }
        let (layout, sizes) = self.layout_of(cork, group)?;
        let mut lent = cork.plan_memo.borrow_mut();
        let memo = lent.get_or_insert_with(Box::default);
        let (charge, before_last) = sizes.charges(&layout, group, &mut memo.each);
        let remembered = n > 1 && n <= MEMO_PIECES && layout.full < MEMO_BUFS;
        // Never 0 ("none"), even after 2^32 plans on one socket.
        memo.gen = memo.gen.wrapping_add(1).max(1);
        let d = Datagram {
            msgs: n,
            layout: Some((layout, sizes)),
            charge,
            before_last,
            memo: if remembered { memo.gen } else { 0 },
        };
        memo.set(group, d);
        Some(d)
    }

    /// How the datagram of `pieces` is cut, when it fragments and the
    /// one-pass build may make it: a mode that fragments locally, a length
    /// `__ip_append_data` accepts, the cork's fragment size equal to the MTU
    /// `ip_fragment` uses, and for a corked datagram an MTU whose data space
    /// is a multiple of 8.
    fn layout_of(
        &self,
        cork: &BatchCork,
        pieces: &[BatchMsg<'_>],
    ) -> Option<(FragLayout, BufSizes)> {
        let p = &cork.params;
        let mtu = cork.max_payload + HEADER_LEN + UDP_HLEN;
        let length = UDP_HLEN + pieces.iter().map(|m| m.data.len()).sum::<usize>();
        let ip_mtu = ip_mtu(&p.dst, !p.pmtudisc.use_pmtu());
        let corked = pieces.len() > 1;
        if !p.pmtudisc.ignore_df()
            || length > IP_MAX_MTU as usize - HEADER_LEN
            || ip_mtu as usize != mtu
            || (corked && !(mtu - HEADER_LEN).is_multiple_of(8))
            || datagram_df(p, HEADER_LEN + length)
        {
            return None;
        }
        let sizes = BufSizes {
            mtu,
            extra: p.dst.dev.ll_reserved_space() + 15,
            trailer: p.dst.trailer_len as usize,
            sg: p.dst.dev.features().contains(Features::SG),
        };
        Some((FragPlan::new(mtu, HEADER_LEN).layout(length)?, sizes))
    }

    /// One datagram that fits one frame, as `__ip_append_data` (one buffer),
    /// `__ip_make_skb` and `udp_send_skb` leave it, charged to the send
    /// budget out of the run's precharge; `id` is its IP ID. Its headers
    /// and payload are written through one view of the buffer's data.
    #[inline(always)]
    pub(super) fn build_one(
        &self,
        stack: &Stack,
        c: &BatchCork,
        data: &[u8],
        id: u16,
    ) -> PacketBuf {
        let hh_len = c.params.dst.dev.ll_reserved_space();
        const HDRS: usize = HEADER_LEN + UDP_HLEN;
        let fraglen = HDRS + data.len();
        let size = c.fitting_alloc(data.len());
        let truesize = c.truesize(size);
        let mut skb = stack
            .pool
            .alloc_precharged(size, truesize, &self.inet.budget);
        skb.reserve(hh_len);
        skb.put(fraglen);
        let nh = skb.data_offset();
        skb.meta.network_header = nh as u16;
        skb.meta.transport_header = (nh + HEADER_LEN) as u16;
        c.datagram_meta(&mut skb.meta);
        let bytes = skb.from_offset_mut(nh);
        let Some((hdrs, payload)) = bytes.split_first_chunk_mut::<HDRS>() else {
            unreachable!("a buffer put for its headers holds them");
        };
        let (iph, uh) = hdrs.split_at_mut(HEADER_LEN);
        let hdr_sum = c.write_ip_header(iph, id);
        // `ip_generic_getfrag` (summing unless the device will) and
        // `udp_send_skb` (the header, and the checksum or its seed).
        let len = (UDP_HLEN + data.len()) as u16;
        let pseudo = c.pseudo.add_u16(len);
        let mut sum = Csum::ZERO;
        let check = if c.partial {
            copy_payload(&mut payload[..data.len()], data);
            pseudo.fold()
        } else {
            sum = Csum::copy_and_sum(data, &mut payload[..data.len()]);
            let words = Csum::from_u16(self.inet.local.port())
                .add_u16(c.dport)
                .add_u16(len);
            mangle_zero(words.add(sum).add(pseudo).finish())
        };
        super::udp_header(uh, (self.inet.local.port(), c.dport), len, check);
        skb.meta.csum = sum;
        skb.meta.hdr_sum = hdr_sum;
        skb.meta.ip_summed = if c.partial {
            CsumState::Partial {
                start: (nh + HEADER_LEN) as u16,
                offset: 6,
            }
        } else {
            CsumState::None
        };
        skb
    }

    /// The datagram of `pieces` (one message, or a corked group whose last
    /// alone lacks `MSG_MORE`) cut as `layout` says: the first buffer with
    /// the IP header (ID `id`), the UDP header and checksum, the others
    /// chained behind it (`frag_list`) with room for their fragment
    /// headers, each charged out of the precharge (the remembered charges
    /// of plan `memo` when given), the data copied and summed in one pass;
    /// `chain` holds them (a vector to reuse, or an empty one).
    pub(super) fn build_whole(
        &self,
        stack: &Stack,
        c: &BatchCork,
        (layout, sizes): (&FragLayout, BufSizes),
        (pieces, memo_gen): (&[BatchMsg<'_>], u32),
        id: u16,
        chain: Vec<PacketBuf>,
    ) -> PacketBuf {
        let memo = c.plan_memo.borrow();
        let mut b = WholeBuild {
            layout,
            sizes,
            each: memo.as_deref().and_then(|m| m.each(memo_gen)),
            corked: pieces.len() > 1,
            shapes: c.shapes([sizes.alloc(layout, 0), sizes.alloc(layout, layout.full)]),
            ll_rs: c.params.dst.dev.ll_reserved_space(),
            pieces: PieceCursor::new(pieces),
            budget: &self.inet.budget,
        };
        let mut head = b.buffer(stack, 0, b.cut(0));
        let nh = head.data_offset();
        head.meta.network_header = nh as u16;
        head.meta.transport_header = (nh + HEADER_LEN) as u16;
        let iph = &mut head.from_offset_mut(nh)[..HEADER_LEN];
        let sum = c.write_ip_header(iph, id);
        head.meta.hdr_sum = without_df(iph, sum);
        c.datagram_meta(&mut head.meta);
        head.meta.ip_summed = CsumState::None;
        head.set_chain_vec(chain);
        let full = (b.shapes[0], layout.maxdata);
        for i in 1..layout.full {
            head.chain_push(b.buffer(stack, i, full));
        }
        if layout.full > 0 {
            head.chain_push(b.buffer(stack, layout.full, b.cut(layout.full)));
        }
        drop(memo);
        let th = nh + HEADER_LEN;
        let (room, chain) = head.split_chain_mut(th + UDP_HLEN);
        let (head_sum, sum) = Csum::copy_and_sum_scatter(CopyStretches::new(room, chain, pieces));
        head.meta.csum = head_sum;
        self.finish_whole(&mut head, c, layout, sum);
        head
    }

    /// `udp_send_skb` on a datagram built whole: the UDP header and the
    /// checksum, in software (a datagram of several buffers is never
    /// `CHECKSUM_PARTIAL`); `sum` is its payload's sum.
    fn finish_whole(&self, head: &mut PacketBuf, c: &BatchCork, layout: &FragLayout, sum: Csum) {
        let th = head.meta.transport_header as usize;
        let len = layout.length();
        super::write_udp_header(head, th, self.inet.local.port(), c.dport, len);
        // The UDP header's words (its checksum still zero) and the
        // pseudo-header's, the length counted in both.
        let (sport, len) = (self.inet.local.port(), len as u16);
        let words = Csum::from_u16(sport).add_u16(c.dport).add_u16(len);
        let pseudo = c.pseudo.add_u16(len);
        write_check(head, th, words.add(sum).add(pseudo).finish());
    }
}

/// `__ip_make_skb`'s DF for a datagram over the path MTU: clear (the run's
/// header template, made for datagrams that fit, may have it set). Clears
/// it in the header `h` whose [`Meta::hdr_sum`](crate::buf::Meta::hdr_sum)
/// is `sum`; returns the sum without it. The fragments never showed the
/// difference (the fragmenter's fast path clears DF), but a device that
/// takes the datagram whole (UFO) sees this header.
fn without_df(h: &mut [u8], sum: u32) -> u32 {
    if h[6] & 0x40 == 0 {
        return sum;
    }
    h[6] &= !0x40;
    sum - u32::from(u16::from_ne_bytes([0x40, 0]))
}

/// How a buffer of `__ip_append_data`'s size is allocated: with the slack
/// that aligns its data ([`DATA_ALIGN`], where it keeps the pool class),
/// and the charge of that size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BufShape {
    /// The size asked of the pool, slack included.
    size: usize,
    slack: usize,
    /// `kernel_truesize` of the size without the slack.
    truesize: usize,
}

impl BatchCork {
    /// The shapes of buffers of the allocation sizes `sizes`, worked out
    /// once for a run of like datagrams.
    fn shapes(&self, sizes: [usize; 2]) -> [BufShape; 2] {
        match self.shape_memo.get() {
            Some((s, shapes)) if s == sizes => shapes,
            _ => {
                let shapes = sizes.map(BufShape::of);
                self.shape_memo.set(Some((sizes, shapes)));
                shapes
            }
        }
    }
}

impl BufShape {
    fn of(size: usize) -> BufShape {
        let slack = if same_class(size, size + DATA_ALIGN) {
            DATA_ALIGN
        } else {
            0
        };
        BufShape {
            size: size + slack,
            slack,
            truesize: kernel_truesize(size),
        }
    }
}

/// What [`UdpSocket::build_whole`] knows of one datagram while it makes
/// its buffers: the layout, the sizes, the buffers' charges when planned
/// ahead (else where the pieces lie, to work them out) and the two buffer
/// shapes (full and last).
struct WholeBuild<'d, 'a> {
    layout: &'d FragLayout,
    sizes: BufSizes,
    each: Option<&'d [u32; MEMO_BUFS]>,
    corked: bool,
    shapes: [BufShape; 2],
    ll_rs: usize,
    pieces: PieceCursor<'a>,
    /// The socket's send budget, which the buffers are charged to.
    budget: &'d Arc<SendBudget>,
}

impl WholeBuild<'_, '_> {
    /// Buffer `i`, fresh from the pool with its charge set (the kernel's
    /// for the same buffer), its headroom reserved so its data starts at a
    /// [`DATA_ALIGN`] boundary where the slack allows, and the room of its
    /// data put: after the IP header in the first (whose data starts with
    /// the UDP header), all of it in the others (their fragment headers go
    /// in front, into the headroom, when the datagram is fragmented).
    /// `cut` is the buffer's shape and data bytes ([`WholeBuild::cut`]).
    #[inline(always)]
    fn buffer(&mut self, stack: &Stack, i: usize, cut: (BufShape, usize)) -> PacketBuf {
        let (shape, datalen) = cut;
        let (hdr, room) = if i == 0 {
            (HEADER_LEN + UDP_HLEN, HEADER_LEN)
        } else {
            (HEADER_LEN, 0)
        };
        let truesize = match self.each {
            Some(each) => each[i] as usize,
            None if self.corked => self.sizes.charge(self.layout, i, &mut self.pieces),
            None => shape.truesize,
        };
        let mut skb = stack
            .pool
            .alloc_precharged(shape.size, truesize, self.budget);
        let pad = if shape.slack == 0 {
            0
        } else {
            align_pad(&skb, self.ll_rs + hdr)
        };
        skb.reserve(self.ll_rs + HEADER_LEN - room + pad);
        skb.put(room + datalen);
        skb
    }

    /// The shape and data bytes of buffer `i`: the last's own, the others'
    /// alike.
    fn cut(&self, i: usize) -> (BufShape, usize) {
        let last = i == self.layout.full;
        (self.shapes[usize::from(last)], self.layout.datalen(i))
    }
}

/// Where each buffer's data starts: a multiple of this many bytes (a
/// cache line) in memory. The copy's 32-byte AVX2 stores then never split
/// a cache line, which is worth about a tenth of a 64 KiB datagram's send
/// time with its data in L2 (measured: 177 -> 194 Gbit/s at a 32-byte
/// boundary); a whole line, two stores per line, gained another 2-4% (8000
/// B: 302 -> 287 ns, 8 x 1000 B: 392 -> 377 ns, 65000 B: 2626 -> 2580 ns
/// per datagram, `ipxmit bench`). The buffer gets up to 63 bytes
/// more headroom than `LL_RESERVED_SPACE` for it; nothing on the wire
/// changes, and the buffer is charged what the kernel's is. Where the slack
/// would take the buffer into a larger pool class, the data is left where
/// it falls.
const DATA_ALIGN: usize = 64;

/// The extra headroom that puts the byte `off` bytes after the start of
/// `skb`'s (empty) storage at a [`DATA_ALIGN`] boundary.
fn align_pad(skb: &PacketBuf, off: usize) -> usize {
    let at = skb.from_offset(0).as_ptr() as usize + off;
    at.wrapping_neg() % DATA_ALIGN
}

/// Copies `src` into `dst` (as long): a payload of 8 to 64 bytes as two
/// overlapping fixed-size moves, inline (a `copy_from_slice` of a length
/// unknown at compile time is a call to `memcpy`, about 20 instructions
/// for an 18-byte datagram: `N=5120 DEV=null scripts/callgrind.sh 18B`),
/// anything else by `copy_from_slice`.
#[inline(always)]
pub(super) fn copy_payload(dst: &mut [u8], src: &[u8]) {
    /// The first and the last `K` bytes of `src` into `dst`: all of it
    /// when `K <= src.len() <= 2 * K`.
    #[inline(always)]
    fn ends<const K: usize>(dst: &mut [u8], src: &[u8]) {
        let n = src.len();
        dst[..K].copy_from_slice(&src[..K]);
        dst[n - K..].copy_from_slice(&src[n - K..]);
    }
    assert_eq!(dst.len(), src.len(), "copy_payload: length mismatch");
    match src.len() {
        8..=16 => ends::<8>(dst, src),
        17..=32 => ends::<16>(dst, src),
        33..=64 => ends::<32>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

#[cfg(test)]
mod tests {
    use super::copy_payload;

    /// Every length, those of the overlapping moves and their edges
    /// included, copies exactly the bytes of `src` and nothing around.
    #[test]
    fn copy_payload_copies_every_length_exactly() {
        let src: Vec<u8> = (0..100u8)
            .map(|b| b.wrapping_mul(37).wrapping_add(1))
            .collect();
        for len in 0..=src.len() {
            let mut room = vec![0xee_u8; len + 8];
            copy_payload(&mut room[4..4 + len], &src[..len]);
            assert_eq!(&room[4..4 + len], &src[..len], "length {len}");
            assert!(room[..4].iter().chain(&room[4 + len..]).all(|&b| b == 0xee));
        }
    }
}
