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
//! `__ip_append_data` gives it, filled while its sum is taken, and given its
//! fragment header and the metadata `ip_copy_metadata` would copy at once;
//! the buffers are not chained, unchained and walked again. The train then
//! goes down exactly as the general path's fragment train does (one queue
//! choice and qdisc decision, `xmit_more` within it, the same drops and
//! errors when a driver or qdisc refuses a fragment). The frames, buffer
//! sizes, metadata, IP ID, send-budget charges and counters are those of the
//! general path; `crates/ipxmit-drivers/tests/send_batch.rs` compares them.
//!
//! Taken for a datagram [`UdpSocket::send_batch`]'s fast runs would take but
//! for its size (see `batch.rs`), that may be fragmented (`IP_PMTUDISC_WANT`
//! or `DONT`), whose length `__ip_append_data` accepts, whose fragment size
//! is the MTU `ip_fragment` will use, and whose buffers all pass the
//! send-budget checks without waiting (else the general path decides, as the
//! kernel does: wait, `EAGAIN` or `ENOBUFS`).

use super::batch::{header_template, Flow, IdSource};
use super::{write_check, write_udp_header, UdpSocket, UDP_HLEN};
use crate::buf::{kernel_truesize, CsumState, PacketBuf, SendBudget};
use crate::error::SendError;
use crate::ipv4::output::send_fragments;
use crate::neigh::HhCache;
use crate::route::IP_MAX_MTU;
use crate::socket::cork::datagram_df;
use crate::stack::Stack;
use crate::wire::checksum::{pseudo_header_v4, Csum};

/// `IP_MF`, "more fragments".
const IP_MF: u16 = 0x2000;

/// How `__ip_append_data` cuts a datagram of `length` bytes (UDP header
/// included) that exceeds the fragment size: `full` buffers of `maxdata`
/// bytes (`maxfraglen` less the IP header), then one of `last` bytes (at
/// most the MTU's data space).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cut {
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

    /// Bytes (IP header excluded) of buffer `i`.
    fn datalen(&self, i: usize) -> usize {
        if i < self.full {
            self.maxdata
        } else {
            self.last
        }
    }
}

/// The sizes of the buffers: each one's allocation less its trailer, and
/// the trailer the last one gets (`alloclen + hh_len + 15` of
/// `__ip_append_data`).
#[derive(Clone, Copy)]
struct Sizes {
    extra: usize,
    trailer: usize,
}

impl Sizes {
    fn alloc(&self, cut: &Cut, i: usize) -> usize {
        let t = if i == cut.full { self.trailer } else { 0 };
        20 + cut.datalen(i) + self.extra + t
    }

    /// Truesize of every buffer together, and of all but the last.
    fn charges(&self, cut: &Cut) -> (usize, usize) {
        let full = kernel_truesize(self.alloc(cut, 0)) * cut.full;
        (full + kernel_truesize(self.alloc(cut, cut.full)), full)
    }
}

impl UdpSocket {
    /// Sends `data` to the flow's destination as fragments made in one pass
    /// (see the module documentation). `None` when the datagram does not
    /// qualify: [`UdpSocket::sendmsg`] then sends it.
    pub(super) fn send_fragmented(
        &mut self,
        flow: &Flow,
        data: &[u8],
    ) -> Option<Result<(), SendError>> {
        let p = &flow.params;
        let mtu = flow.max_payload + 20 + UDP_HLEN;
        let length = data.len() + UDP_HLEN;
        let ip_mtu = if p.pmtudisc.use_pmtu() {
            p.dst.mtu()
        } else {
            p.dst.dev.mtu().min(IP_MAX_MTU)
        };
        if !p.pmtudisc.ignore_df() || length > IP_MAX_MTU as usize - 20 || ip_mtu as usize != mtu {
            return None;
        }
        let cut = Cut::new(mtu, length)?;
        if datagram_df(p, 20 + length) {
            return None;
        }
        let sizes = Sizes {
            extra: p.dst.dev.ll_reserved_space() + 15,
            trailer: p.dst.trailer_len as usize,
        };
        let (total, before_last) = sizes.charges(&cut);
        let b = &self.inet.budget;
        let start = b.allocated();
        // sock_alloc_send_skb for the first buffer, the `2 * sk_sndbuf`
        // check of `__ip_append_data` for the others (the last is checked
        // with all the others charged).
        if start >= b.limit() || start + before_last >= 2 * b.limit() {
            return None;
        }
        SendBudget::precharge(b, total);
        let stack = self.inet.stack.clone();
        let id = self.datagram_id(&stack, flow);
        let mut frags = std::mem::take(&mut self.frags);
        self.build_fragments(&stack, flow, &cut, sizes, data, id, &mut frags);
        let hh = HhCache { hdr: flow.hh };
        let r = {
            let _gathered = SendBudget::gather_releases(&self.inet.budget);
            send_fragments(&stack, &p.dst.dev, frags.drain(..), &hh)
        };
        self.frags = frags;
        let r = self.udp_sent(r);
        self.count_sndbuf_error(&r);
        Some(r)
    }

    /// The datagram's IP ID (`ip_select_ident_segs` of `__ip_make_skb`): a
    /// fragmented datagram never carries DF, so never ID 0.
    fn datagram_id(&mut self, stack: &Stack, flow: &Flow) -> u16 {
        let p = &flow.params;
        match flow.ids {
            IdSource::Socket => {
                self.inet.inet_id = self.inet.inet_id.wrapping_add(1);
                self.inet.inet_id
            }
            IdSource::Zero | IdSource::Bucket => {
                stack.idents.reserve(p.daddr, p.saddr, p.protocol, 1)
            }
        }
    }

    /// The fragments of `data`, in order, into `frags`: buffers charged out
    /// of the precharge, data copied and summed, IP headers complete, the
    /// UDP header and checksum in the first. Link headers are pushed on the
    /// way down.
    #[allow(clippy::too_many_arguments)]
    fn build_fragments(
        &self,
        stack: &Stack,
        flow: &Flow,
        cut: &Cut,
        sizes: Sizes,
        data: &[u8],
        id: u16,
        frags: &mut Vec<PacketBuf>,
    ) {
        let (template, tsum) = header_template(&flow.params, false);
        let tsum = tsum.add_u16(id);
        let mut sum = Csum::ZERO;
        let mut at = 0;
        for i in 0..=cut.full {
            let mut skb = stack.pool.alloc(sizes.alloc(cut, i));
            let datalen = cut.datalen(i);
            skb.reserve(flow.params.dst.dev.ll_reserved_space());
            skb.put(20 + datalen);
            let nh = skb.data_offset();
            let hdr = if i == 0 { UDP_HLEN } else { 0 };
            match frags.first() {
                None => self.head_meta(&mut skb, flow),
                Some(head) => skb.meta = head.meta.clone(),
            }
            skb.meta.network_header = nh as u16;
            skb.meta.transport_header = (nh + 20) as u16;
            let n = datalen - hdr;
            let dst = &mut skb.from_offset_mut(nh + 20 + hdr)[..n];
            let s = Csum::copy_and_sum(&data[at..at + n], dst);
            at += n;
            // Every buffer's data starts at an even offset of the datagram.
            sum = sum.add(s);
            if i == 0 {
                // `skb->csum` of the head; the others carry a copy of it.
                skb.meta.csum = s;
            }
            skb.set_owner_precharged(&self.inet.budget);
            let more = if i < cut.full { IP_MF } else { 0 };
            let off = ((i * cut.maxdata) >> 3) as u16 | more;
            let h = &mut skb.from_offset_mut(nh)[..20];
            h.copy_from_slice(&template);
            write_len_off(h, tsum, id, 20 + datalen, off);
            frags.push(skb);
        }
        self.finish_head(&mut frags[0], flow, cut, sum);
    }

    /// The metadata of the first buffer as the general path leaves it when
    /// it fragments (`ip_copy_metadata` gives the others a copy).
    fn head_meta(&self, skb: &mut PacketBuf, flow: &Flow) {
        let p = &flow.params;
        let m = &mut skb.meta;
        m.ip_summed = CsumState::None;
        m.protocol = 0x0800;
        m.ip_flags.ignore_df = p.pmtudisc.ignore_df();
        m.use_dev_mtu = !p.pmtudisc.use_pmtu();
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
        let p = &flow.params;
        let pseudo = pseudo_header_v4(p.saddr, p.daddr, 17, len as u16);
        let udp = Csum::of(&head.from_offset(th)[..UDP_HLEN]);
        write_check(head, th, udp.add(sum).add(pseudo).finish());
    }
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
