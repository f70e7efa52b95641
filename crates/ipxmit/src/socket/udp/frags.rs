//! One-pass fragments: a plain UDP datagram over the MTU built directly as
//! the fragments the kernel sends, for [`UdpSocket::send_batch`].
//!
//! Stands for what `udp_sendmsg`'s lockless path does to such a datagram:
//! `ip_make_skb` → `__ip_append_data` (one buffer per `maxfraglen` of data,
//! the UDP header in the first), `__ip_make_skb` (IP header, ID),
//! `udp_send_skb` (software checksum: a datagram that fragments is never
//! `CHECKSUM_PARTIAL`), `ip_send_skb` → `ip_local_out` → `ip_output`, the
//! fast path of `ip_do_fragment` (`ip_fraglist_init`/`ip_fraglist_prepare`:
//! every buffer becomes one fragment, its header a copy of the first's with
//! its own length, offset and MF bit) and `ip_finish_output2` with a
//! connected neighbour (`net/ipv4/udp.c`, `net/ipv4/ip_output.c`).
//!
//! Done in one pass instead of four: each buffer is allocated with the size
//! `__ip_append_data` gives it (and charged so; up to 63 bytes more headroom
//! put its data at a cache-line boundary, see [`DATA_ALIGN`]) and given its
//! fragment header and the metadata `ip_copy_metadata` would copy at once;
//! then the whole payload is copied into the buffers, from one message or
//! several, while its sum is taken ([`Csum::copy_and_sum_scatter`]: one set
//! of running sums for the datagram, not one per buffer or per piece). The
//! buffers are not chained, unchained and walked again. The train then
//! goes down with the same drops and errors as the general path's when a
//! driver or qdisc refuses a fragment: in a run on a queueless device
//! (`batch.rs`), or on its own as the general path's train does. The frames,
//! buffer charges, metadata, IP ID and counters are those of the general
//! path; `crates/ipxmit-drivers/tests/send_batch.rs` compares them, and the
//! kernel-differential suite compares the frames with the kernel's.
//!
//! A corked datagram — messages of one batch, all but the last with
//! `MSG_MORE` — is made the same way, its data gathered from the messages.
//! The kernel's cork keeps such a datagram's later pieces in page fragments
//! (scatter-gather) or in buffers opened with a whole MTU of room (without);
//! here every fragment is one linear buffer, but each is charged what the
//! kernel's buffer for the same bytes is charged (its head's allocation, plus
//! the page bytes), so the send budget moves exactly as there. The buffer
//! layout (linear or page fragments) and the unfolded `skb->csum` partial
//! sums are not part of that sameness — neither is on the wire — and the
//! socket's page fragment (`sk_page_frag`) is not used, so a later datagram
//! that does go through the cork finds it where the earlier ones left it.
//! This needs the
//! MTU's data space to be a multiple of 8 (so at MTU 1500, not at 576 or
//! 9000): else the cork's buffers overflow and move bytes (`fraggap`) and
//! the general path sends the datagram.
//!
//! Taken for a datagram [`UdpSocket::send_batch`]'s fast runs would take but
//! for its size (see `batch.rs`), that may be fragmented (`IP_PMTUDISC_WANT`,
//! `DONT` or `OMIT`), whose length `__ip_append_data` accepts, whose fragment size
//! is the MTU `ip_fragment` will use, and whose buffers all pass the
//! send-budget checks without waiting (else the general path decides, as the
//! kernel does: wait, `EAGAIN` or `ENOBUFS`).

use super::batch::{BatchMsg, Flow, IdSource};
use super::{write_check, write_udp_header, UdpSocket, UDP_HLEN};
use crate::buf::{kernel_truesize, same_class, CsumState, PacketBuf, SendBudget};
use crate::error::SendError;
use crate::ipv4::output::send_fragments;
use crate::offload::Features;
use crate::route::IP_MAX_MTU;
use crate::socket::cork::datagram_df;
use crate::socket::{MsgFlags, PmtuDisc};
use crate::stack::Stack;
use crate::wire::checksum::{CopySeg, Csum};

/// The send-budget checks a datagram's buffers meet with `allocated`
/// already charged: `sock_alloc_send_skb`'s for the first (`sk_wmem_alloc <
/// sk_sndbuf`, else wait or `EAGAIN`) and `__ip_append_data`'s for the
/// others (`< 2 * sk_sndbuf`, else `ENOBUFS`), the last checked with all
/// the others (`before_last`) charged.
pub(super) fn budget_allows(allocated: usize, limit: usize, before_last: usize) -> bool {
    allocated < limit && allocated.saturating_add(before_last) < limit.saturating_mul(2)
}

/// `IP_MF`, "more fragments".
const IP_MF: u16 = 0x2000;

/// How `__ip_append_data` cuts a datagram of `length` bytes (UDP header
/// included) that exceeds the fragment size: `full` buffers of `maxdata`
/// bytes (`maxfraglen` less the IP header), then one of `last` bytes (at
/// most the MTU's data space).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cut {
    maxdata: usize,
    full: usize,
    last: usize,
}

impl Cut {
    /// The cut for fragment size `mtu`; `None` when the datagram fits.
    fn new(mtu: usize, length: usize) -> Option<Cut> {
        let space = mtu - 20;
        let maxdata = space & !7;
        if length <= space || maxdata == 0 {
            return None;
        }
        let full = (length - space).div_ceil(maxdata);
        Some(Cut {
            maxdata,
            full,
            last: length - full * maxdata,
        })
    }

    /// The IP bytes of all the fragments, headers included (what
    /// `ip_output` counts as sent, `IpExtOutOctets`).
    pub(super) fn ip_bytes(&self) -> usize {
        (self.full + 1) * 20 + self.full * self.maxdata + self.last
    }

    /// Bytes (IP header excluded) of buffer `i`.
    fn datalen(&self, i: usize) -> usize {
        if i < self.full {
            self.maxdata
        } else {
            self.last
        }
    }
}

/// The sizes of the buffers: what `__ip_append_data` adds to a buffer's
/// data (`hh_len + 15`, and the trailer where the data reaches the end of the
/// piece being appended), and the geometry the charges depend on.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sizes {
    mtu: usize,
    extra: usize,
    trailer: usize,
    /// The device takes page fragments (`NETIF_F_SG`).
    sg: bool,
}

impl Sizes {
    /// The allocation of buffer `i`: room for all its data in the linear
    /// part.
    fn alloc(&self, cut: &Cut, i: usize) -> usize {
        let t = if i == cut.full { self.trailer } else { 0 };
        20 + cut.datalen(i) + self.extra + t
    }

    /// What the cork's buffer `k` is charged (`skb->truesize`). It was
    /// opened while `p` (the piece holding its first byte) was appended,
    /// with `r` bytes of that piece left: `__ip_append_data` put at most a
    /// fragment's data of them in its linear part (a whole MTU of room under
    /// `MSG_MORE` without scatter-gather) and, with scatter-gather, later
    /// pieces' bytes into page fragments, charged byte for byte.
    fn charge(&self, cut: &Cut, k: usize, c: &mut PieceCursor<'_>) -> usize {
        let (r, more) = c.seek(k * cut.maxdata);
        let lin = r.min(cut.maxdata);
        let alloclen = if more && !self.sg { self.mtu } else { 20 + lin };
        let trailer = if lin == r { self.trailer } else { 0 };
        let paged = if self.sg { cut.datalen(k) - lin } else { 0 };
        kernel_truesize(alloclen + self.extra + trailer) + paged
    }

    /// The charges of all buffers together, and of all but the last; for a
    /// corked group, each buffer's also into `each` when it has room for
    /// them all (else `each` is left alone).
    fn charges(&self, cut: &Cut, pieces: &[BatchMsg<'_>], each: &mut [u32]) -> (usize, usize) {
        if pieces.len() == 1 {
            // A datagram sent whole: each buffer is charged its allocation.
            let full = kernel_truesize(self.alloc(cut, 0)) * cut.full;
            return (full + kernel_truesize(self.alloc(cut, cut.full)), full);
        }
        let mut c = PieceCursor::new(pieces);
        let keep = each.len() > cut.full;
        let (mut all, mut before_last) = (0, 0);
        for k in 0..=cut.full {
            let t = self.charge(cut, k, &mut c);
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
/// ([`Csum::copy_and_sum_scatter`]): each buffer's data room (after its IP
/// header, and the UDP header in the first) filled from the pieces in turn,
/// a segment wherever both go on; the head's last one marked.
struct FragSegments<'f, 'a> {
    bufs: std::slice::IterMut<'f, PacketBuf>,
    /// What is left of the current buffer's data room.
    room: &'f mut [u8],
    /// The current room is the head's.
    head: bool,
    /// A room was taken.
    started: bool,
    /// The pieces after the current one, and what is left of it.
    pieces: std::slice::Iter<'a, BatchMsg<'a>>,
    piece: &'a [u8],
}

impl<'f, 'a> FragSegments<'f, 'a> {
    fn new(bufs: &'f mut [PacketBuf], pieces: &'a [BatchMsg<'a>]) -> Self {
        FragSegments {
            bufs: bufs.iter_mut(),
            room: &mut [],
            head: false,
            started: false,
            pieces: pieces.iter(),
            piece: &[],
        }
    }
}

impl<'f, 'a> Iterator for FragSegments<'f, 'a> {
    type Item = CopySeg<'a, 'f>;

    #[inline(always)]
    fn next(&mut self) -> Option<CopySeg<'a, 'f>> {
        while self.room.is_empty() {
            let skb = self.bufs.next()?;
            // The first buffer's room starts after the UDP header.
            (self.head, self.started) = (!self.started, true);
            let hdr = if self.head { UDP_HLEN } else { 0 };
            let th = usize::from(skb.meta.transport_header);
            self.room = skb.from_offset_mut(th + hdr);
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
/// a corked group), how it is cut when it fragments, what its buffers are
/// charged, and what all but its last buffer are.
#[derive(Clone, Copy, Debug)]
pub(super) struct Unit {
    pub(super) msgs: usize,
    pub(super) frags: Option<(Cut, Sizes)>,
    pub(super) charge: usize,
    pub(super) before_last: usize,
    /// For a corked group, the [`UnitMemo`] generation that holds each of
    /// its buffers' charges; 0 for none.
    pub(super) memo: u32,
}

/// Pieces a [`UnitMemo`] remembers the lengths of (longer groups are not
/// remembered).
const MEMO_PIECES: usize = 16;

/// Buffers a [`UnitMemo`] remembers the charges of.
const MEMO_FRAGS: usize = 48;

/// The last fragmenting datagram a run planned, by the lengths of its
/// pieces: the next one of the same lengths is cut and charged the same
/// (the flow, the flags and `MSG_MORE` on all but the last piece being the
/// run's), so a batch of like datagrams plans the cut and the cork's
/// charges once, each buffer's included.
#[derive(Debug)]
pub(super) struct UnitMemo {
    lens: [u16; MEMO_PIECES],
    unit: Option<Unit>,
    /// Counts the units remembered (the first is 1).
    gen: u32,
    /// Each buffer's charge, for a corked group of at most
    /// [`MEMO_FRAGS`] buffers.
    each: [u32; MEMO_FRAGS],
    /// What the remembered plans depend on besides the pieces: they hold
    /// while a run's flow gives the same key.
    key: Option<MemoKey>,
}

impl Default for UnitMemo {
    fn default() -> Self {
        UnitMemo {
            lens: [0; MEMO_PIECES],
            unit: None,
            gen: 0,
            each: [0; MEMO_FRAGS],
            key: None,
        }
    }
}

/// Everything of a run's flow that the cut and the charges of a corked
/// group depend on (see [`UdpSocket::fragment_geometry`] and
/// [`Sizes::charges`]), besides the pieces' lengths and flags: the flags of
/// the call and of the run, the fragment size, the PMTU mode and both MTUs,
/// and what `__ip_append_data` adds to a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct MemoKey {
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

impl MemoKey {
    /// The key of `flow` for messages sent with `flags`, the run's own
    /// flags being `base`.
    pub(super) fn of(flow: &Flow, flags: MsgFlags, base: MsgFlags) -> MemoKey {
        let p = &flow.params;
        MemoKey {
            flags,
            base,
            max_payload: flow.max_payload,
            pmtudisc: p.pmtudisc,
            path_mtu: p.dst.mtu(),
            dev_mtu: p.dst.dev.mtu(),
            extra: p.dst.dev.ll_reserved_space(),
            trailer: u32::from(p.dst.trailer_len),
            sg: p.dst.dev.features().contains(Features::SG),
        }
    }
}

impl UnitMemo {
    /// The remembered unit when the messages `msgs` starts with are its
    /// group again: as many, of the remembered lengths, each with the
    /// run's flags (`flags` and its own: `base`, with `MSG_MORE` on all but
    /// the last). One pass over the group, before any other scan.
    #[inline]
    fn get(&self, msgs: &[BatchMsg<'_>], flags: MsgFlags, base: MsgFlags) -> Option<Unit> {
        let u = self.unit?;
        let group = msgs.get(..u.msgs)?;
        let more = base.with(MsgFlags::MORE);
        let last = u.msgs - 1;
        let same = group
            .iter()
            .zip(&self.lens)
            .enumerate()
            .all(|(k, (m, &l))| {
                let want = if k < last { more } else { base };
                m.data.len() == usize::from(l) && flags | m.flags == want
            });
        same.then_some(u)
    }

    /// Keeps what is remembered for a run whose flow gives `key` when an
    /// earlier run's gave the same; forgets it otherwise (a changed MTU,
    /// PMTU mode, device or flags), the generation going on.
    pub(super) fn keep_for(&mut self, key: MemoKey) {
        if self.key != Some(key) {
            (self.key, self.unit) = (Some(key), None);
        }
    }

    /// Remembers `u` as the unit of `group` (pieces of at most 65535
    /// bytes), when it has few enough pieces.
    fn set(&mut self, group: &[BatchMsg<'_>], u: Unit) {
        if group.len() > MEMO_PIECES {
            return;
        }
        for (l, m) in self.lens.iter_mut().zip(group) {
            *l = m.data.len() as u16;
        }
        self.unit = Some(u);
    }

    /// The charges of the buffers of the unit planned with generation
    /// `memo`, while they are still the ones remembered.
    fn each(&self, memo: u32) -> Option<&[u32; MEMO_FRAGS]> {
        (memo != 0 && memo == self.gen).then_some(&self.each)
    }
}

impl UdpSocket {
    /// The datagram `msgs` starts with, when a fast run can send it (see
    /// `batch.rs` and the module documentation): a plain message to the
    /// flow's destination with the run's flags (`base`) that fits one frame
    /// or fragments, or a corked group — messages with `MSG_MORE` (their
    /// flags otherwise `base`) up to one without — that fragments.
    #[inline(always)]
    pub(super) fn unit(
        &self,
        flow: &Flow,
        msgs: &[BatchMsg<'_>],
        flags: MsgFlags,
        base: MsgFlags,
    ) -> Option<Unit> {
        let m = msgs.first().filter(|m| m.dest == flow.dest)?;
        if flags | m.flags == base && m.data.len() <= flow.max_payload {
            // The common case first: a datagram that fits one frame.
            let charge = flow.truesize(20 + UDP_HLEN + m.data.len() + flow.alloc_extra);
            return Some(Unit {
                msgs: 1,
                frags: None,
                charge,
                before_last: 0,
                memo: 0,
            });
        }
        self.fragmenting_unit(flow, msgs, flags, base)
    }

    /// [`UdpSocket::unit`] for a datagram that does not fit one frame.
    fn fragmenting_unit(
        &self,
        flow: &Flow,
        msgs: &[BatchMsg<'_>],
        flags: MsgFlags,
        base: MsgFlags,
    ) -> Option<Unit> {
        let known = flow
            .unit_memo
            .borrow()
            .as_deref()
            .and_then(|m| m.get(msgs, flags, base));
        if let Some(u) = known {
            return Some(u);
        }
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
        let (cut, sizes) = self.fragment_geometry(flow, group)?;
        let mut lent = flow.unit_memo.borrow_mut();
        let memo = lent.get_or_insert_with(Box::default);
        let (charge, before_last) = sizes.charges(&cut, group, &mut memo.each);
        let remembered = n > 1 && n <= MEMO_PIECES && cut.full < MEMO_FRAGS;
        // Never 0 ("none"), even after 2^32 plans on one socket.
        memo.gen = memo.gen.wrapping_add(1).max(1);
        let u = Unit {
            msgs: n,
            frags: Some((cut, sizes)),
            charge,
            before_last,
            memo: if remembered { memo.gen } else { 0 },
        };
        memo.set(group, u);
        Some(u)
    }

    /// Sends the datagram of `pieces` (one message, or a corked group whose
    /// last alone lacks `MSG_MORE`) to the flow's destination as fragments
    /// made in one pass (see the module documentation). `None` when it does
    /// not qualify: [`UdpSocket::sendmsg`] then sends the first message.
    pub(super) fn send_fragmented(
        &mut self,
        flow: &Flow,
        pieces: &[BatchMsg<'_>],
    ) -> Option<Result<(), SendError>> {
        let (cut, sizes) = self.fragment_geometry(flow, pieces)?;
        let (total, before_last) = sizes.charges(&cut, pieces, &mut []);
        let b = &self.inet.budget;
        if !budget_allows(b.allocated(), b.limit(), before_last) {
            return None;
        }
        SendBudget::precharge(b, total);
        let stack = self.inet.stack.clone();
        let p = &flow.params;
        // A fragmented datagram never carries DF: its ID is never 0.
        let bucket = match flow.ids {
            IdSource::Bucket => stack.idents.reserve(p.daddr, p.saddr, p.protocol, 1),
            IdSource::Socket | IdSource::Zero => 0,
        };
        let id = self.unit_id(flow, bucket);
        let mut frags = std::mem::take(&mut self.frags);
        let src = (pieces, sizes, 0);
        self.build_fragments(&stack, flow, &cut, src, id, &mut frags);
        let r = {
            let _gathered = SendBudget::gather_releases(&self.inet.budget);
            send_fragments(&stack, &flow.params.dst.dev, frags.drain(..), &flow.hh)
        };
        self.frags = frags;
        let r = self.udp_sent(r);
        self.count_sndbuf_error(&r);
        Some(r)
    }

    /// How the datagram of `pieces` is cut, when it fragments and may: a
    /// mode that fragments locally, a length `__ip_append_data` accepts, the
    /// cork's fragment size equal to the MTU `ip_fragment` uses, and for a
    /// corked datagram an MTU whose data space is a multiple of 8.
    fn fragment_geometry(&self, flow: &Flow, pieces: &[BatchMsg<'_>]) -> Option<(Cut, Sizes)> {
        let p = &flow.params;
        let mtu = flow.max_payload + 20 + UDP_HLEN;
        let length = UDP_HLEN + pieces.iter().map(|m| m.data.len()).sum::<usize>();
        let ip_mtu = if p.pmtudisc.use_pmtu() {
            p.dst.mtu()
        } else {
            p.dst.dev.mtu().min(IP_MAX_MTU)
        };
        let corked = pieces.len() > 1;
        if !p.pmtudisc.ignore_df()
            || length > IP_MAX_MTU as usize - 20
            || ip_mtu as usize != mtu
            || (corked && !(mtu - 20).is_multiple_of(8))
            || datagram_df(p, 20 + length)
        {
            return None;
        }
        let sizes = Sizes {
            mtu,
            extra: p.dst.dev.ll_reserved_space() + 15,
            trailer: p.dst.trailer_len as usize,
            sg: p.dst.dev.features().contains(Features::SG),
        };
        Some((Cut::new(mtu, length)?, sizes))
    }

    /// The fragments of the datagram of `src`'s pieces, in order, into
    /// `frags`: buffers charged out of the precharge, data copied and summed,
    /// IP headers complete, the UDP header and checksum in the first. Link
    /// headers are pushed on the way down.
    pub(super) fn build_fragments(
        &self,
        stack: &Stack,
        flow: &Flow,
        cut: &Cut,
        (pieces, sizes, memo_gen): (&[BatchMsg<'_>], Sizes, u32),
        id: u16,
        frags: &mut Vec<PacketBuf>,
    ) {
        let (template, tsum) = flow.frag_template;
        let memo = flow.unit_memo.borrow();
        let mut f = FragBuild {
            cut,
            sizes,
            each: memo.as_deref().and_then(|m| m.each(memo_gen)),
            corked: pieces.len() > 1,
            shapes: [
                Shape::of(sizes.alloc(cut, 0)),
                Shape::of(sizes.alloc(cut, cut.full)),
            ],
            ll_rs: flow.params.dst.dev.ll_reserved_space(),
            template,
            tsum: tsum.add_u16(id),
            id,
            pieces: PieceCursor::new(pieces),
        };
        for i in 0..=cut.full {
            let mut skb = f.buffer(stack, i);
            // `ip_copy_metadata`: the others carry the head's metadata,
            // its payload sum included (no route or token to copy here).
            self.head_meta(&mut skb, flow);
            f.headers(&mut skb, i);
            skb.set_owner_precharged(&self.inet.budget);
            frags.push(skb);
        }
        // The data of all buffers in one pass; the head's own sum is
        // `skb->csum` of the head, and the others carry a copy of it.
        let (head, sum) = Csum::copy_and_sum_scatter(FragSegments::new(frags, pieces));
        for skb in frags.iter_mut() {
            skb.meta.csum = head;
        }
        self.finish_head(&mut frags[0], flow, cut, sum);
    }

    /// The metadata of the first buffer as the general path leaves it when
    /// it fragments (`ip_copy_metadata` gives the others a copy), on a
    /// buffer fresh from the pool (its metadata the default).
    fn head_meta(&self, skb: &mut PacketBuf, flow: &Flow) {
        let p = &flow.params;
        let m = &mut skb.meta;
        m.ip_summed = CsumState::None;
        m.protocol = 0x0800;
        m.ip_flags.ignore_df = flow.ignore_df;
        m.use_dev_mtu = flow.use_dev_mtu;
        m.priority = p.priority;
        m.mark = p.mark;
        m.hash = flow.hash;
    }

    /// `udp_send_skb` on the first fragment: the UDP header and the checksum
    /// of the whole datagram (`sum` is its payload's sum).
    fn finish_head(&self, head: &mut PacketBuf, flow: &Flow, cut: &Cut, sum: Csum) {
        let th = head.meta.transport_header as usize;
        let len = cut.full * cut.maxdata + cut.last;
        write_udp_header(head, th, self.inet.local.port(), flow.dport, len);
        // The UDP header's words (its checksum still zero) and the
        // pseudo-header's, the length counted in both.
        let (sport, len) = (self.inet.local.port(), len as u16);
        let words = Csum::from_u16(sport).add_u16(flow.dport).add_u16(len);
        let pseudo = flow.pseudo.add_u16(len);
        write_check(head, th, words.add(sum).add(pseudo).finish());
    }
}

/// How a buffer of `__ip_append_data`'s size is allocated: with the slack
/// that aligns its data ([`DATA_ALIGN`], where it keeps the pool class),
/// and the charge of that size.
#[derive(Clone, Copy)]
struct Shape {
    /// The size asked of the pool, slack included.
    size: usize,
    slack: usize,
    /// `kernel_truesize` of the size without the slack.
    truesize: usize,
}

impl Shape {
    fn of(size: usize) -> Shape {
        let slack = if same_class(size, size + DATA_ALIGN) {
            DATA_ALIGN
        } else {
            0
        };
        Shape {
            size: size + slack,
            slack,
            truesize: kernel_truesize(size),
        }
    }
}

/// What [`UdpSocket::build_fragments`] knows of one datagram while it
/// makes its buffers: the cut, the sizes, the buffers' charges when
/// planned ahead (else where the pieces lie, to work them out), the two
/// buffer shapes (full and last) and the fragment IP header template.
struct FragBuild<'d, 'a> {
    cut: &'d Cut,
    sizes: Sizes,
    each: Option<&'d [u32; MEMO_FRAGS]>,
    corked: bool,
    shapes: [Shape; 2],
    ll_rs: usize,
    template: [u8; 20],
    tsum: Csum,
    id: u16,
    pieces: PieceCursor<'a>,
}

impl FragBuild<'_, '_> {
    /// Buffer `i`, fresh from the pool with its charge set (the kernel's
    /// for the same buffer), its headroom reserved so its data starts at a
    /// [`DATA_ALIGN`] boundary where the slack allows, and the room of its
    /// IP header and data put.
    #[inline]
    fn buffer(&mut self, stack: &Stack, i: usize) -> PacketBuf {
        let hdr = if i == 0 { UDP_HLEN } else { 0 };
        let shape = self.shapes[usize::from(i == self.cut.full)];
        let truesize = match self.each {
            Some(each) => each[i] as usize,
            None if self.corked => self.sizes.charge(self.cut, i, &mut self.pieces),
            None => shape.truesize,
        };
        let mut skb = stack.pool.alloc_charged(shape.size, truesize);
        let pad = if shape.slack == 0 {
            0
        } else {
            align_pad(&skb, self.ll_rs + 20 + hdr)
        };
        skb.reserve(self.ll_rs + pad);
        skb.put(20 + self.cut.datalen(i));
        skb
    }

    /// Buffer `i`'s header offsets and IP header (its data is copied
    /// later).
    #[inline]
    fn headers(&self, skb: &mut PacketBuf, i: usize) {
        let datalen = self.cut.datalen(i);
        let nh = skb.data_offset();
        skb.meta.network_header = nh as u16;
        skb.meta.transport_header = (nh + 20) as u16;
        let more = if i < self.cut.full { IP_MF } else { 0 };
        let off = ((i * self.cut.maxdata) >> 3) as u16 | more;
        let h = &mut skb.from_offset_mut(nh)[..20];
        h.copy_from_slice(&self.template);
        write_len_off(h, self.tsum, self.id, 20 + datalen, off);
    }
}

/// Where each fragment's data starts: a multiple of this many bytes (a
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

/// A fragment's `tot_len`, ID, `frag_off` and header checksum over the
/// template (whose other words sum to `tsum`, the ID included).
#[inline]
fn write_len_off(h: &mut [u8], tsum: Csum, id: u16, len: usize, off: u16) {
    let len = len as u16;
    h[2..4].copy_from_slice(&len.to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6..8].copy_from_slice(&off.to_be_bytes());
    let check = tsum.add_u16(len).add_u16(off).finish();
    h[10..12].copy_from_slice(&check.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::Cut;

    #[test]
    fn cut_matches_append_data() {
        // 65000 bytes of payload at MTU 1500: 43 buffers of 1480, then 1368.
        assert_eq!(
            Cut::new(1500, 65008),
            Some(Cut {
                maxdata: 1480,
                full: 43,
                last: 1368
            })
        );
        // MTU 1501: data space 1481, so the last buffer may hold 1481 bytes.
        assert_eq!(
            Cut::new(1501, 2961),
            Some(Cut {
                maxdata: 1480,
                full: 1,
                last: 1481
            })
        );
        assert_eq!(Cut::new(1500, 1480), None);
        assert_eq!(Cut::new(1500, 1481).map(|c| (c.full, c.last)), Some((1, 1)));
    }
}
