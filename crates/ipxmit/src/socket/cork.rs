//! The cork: `ip_append_data` and `ip_make_skb`.
//!
//! Stands for `ip_setup_cork`, `__ip_append_data`, `ip_generic_getfrag`,
//! `__ip_make_skb`, `ip_flush_pending_frames` (`net/ipv4/ip_output.c`).
//!
//! Data is appended piece by piece into buffers already shaped as the fragments
//! they will become: each buffer holds at most `maxfraglen = ((mtu - fragheaderlen)
//! & !7) + fragheaderlen` bytes (IP header space included) unless the whole
//! datagram fits the MTU; when a buffer overflows, the bytes past `maxfraglen`
//! (`fraggap`) move to the next buffer with their partial checksum. The geometry
//! (fragment size, TTL, TOS, options, GSO size) is fixed when the cork opens.
//! Without scatter-gather data is copied into the linear area (a buffer opened
//! under `MSG_MORE` gets a whole MTU of room); with it, later pieces go to page
//! fragments that coalesce while contiguous, up to [`MAX_FRAGS`]. The checksum is
//! left to the device (`CHECKSUM_PARTIAL`) exactly when the seed's condition says.
//! [`Cork::make`] chains the buffers behind the first (`frag_list`) and writes the
//! IP header: the datagram then takes the fragmentation fast path.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::buf::{CsumState, PacketBuf, SendBudget, SockMeta, ZcUarg, MAX_FRAGS};
use crate::error::SendError;
use crate::ipv4::fragment::FragPlan;
use crate::ipv4::options::IpOptions;
use crate::ipv4::output::{build_header, HeaderFields};
use crate::route::{Dst, RouteType, IP_MAX_MTU, IP_MIN_MTU};
use crate::socket::{MsgFlags, PmtuDisc};
use crate::stack::Stack;
use crate::stats::Mib;
use crate::wire::checksum::Csum;
use crate::wire::ipv4::HEADER_LEN;

/// Size of a socket's page fragment (`SKB_FRAG_PAGE_ORDER`: 32 KiB).
pub const PAGE_FRAG_SIZE: usize = 32768;

/// What the cork fixes when it opens (`struct inet_cork` + `ipcm_cookie`).
#[derive(Clone, Debug)]
pub struct CorkParams {
    /// The route.
    pub dst: Arc<Dst>,
    /// Destination address of the header (`fl4->daddr`): a source route's
    /// first hop, else the destination.
    pub daddr: Ipv4Addr,
    /// The destination the user named (`cork->addr`), written into a source
    /// route's last slot.
    pub final_daddr: Ipv4Addr,
    /// Source address.
    pub saddr: Ipv4Addr,
    /// IP protocol number.
    pub protocol: u8,
    /// TTL.
    pub ttl: u8,
    /// TOS.
    pub tos: u8,
    /// IP options as compiled (a multiple of 4 bytes, and what to fill in).
    pub options: IpOptions,
    /// GSO segment size, 0 for none.
    pub gso_size: u16,
    /// PMTU discovery mode.
    pub pmtudisc: PmtuDisc,
    /// Priority for the buffers.
    pub priority: u32,
    /// Mark for the buffers.
    pub mark: u32,
    /// The socket is connected (its own IP ID counter is used).
    pub connected: bool,
    /// The departure time of the datagram (`cork->transmit_time`, from
    /// the `SCM_TXTIME` of the send that opened the cork); 0 for none.
    pub transmit_time: u64,
    /// The socket as the buffers carry it (`skb->sk`).
    pub sk: SockMeta,
    /// The timestamp key the buffers carry (`skb_shinfo(skb)->tskey`).
    pub tskey: u32,
    /// The route's type (its `RTCF_BROADCAST`/`RTCF_MULTICAST` flags).
    pub kind: RouteType,
    /// `IP_MULTICAST_LOOP`.
    pub mc_loop: bool,
}

/// Marks a datagram's buffer with what its route's type means on the way
/// out (`rt->rt_flags`, which `ip_mc_output()` and `ip_finish_output2()`
/// read): broadcast, multicast and whether the socket loops multicast.
pub fn set_route_flags(f: &mut crate::buf::IpCbFlags, kind: RouteType, mc_loop: bool) {
    f.bcast = kind == RouteType::Broadcast;
    f.mcast = kind == RouteType::Multicast;
    f.mc_loop = mc_loop;
}

/// Kernel: `ip_setup_cork()` fragment size: the path MTU, or the device MTU for
/// modes that do not use it; refused below 68 (`inetdev_valid_mtu`).
pub fn cork_fragsize(p: &CorkParams) -> Result<u32, SendError> {
    let mtu = if p.pmtudisc.use_pmtu() {
        p.dst.mtu()
    } else {
        p.dst.dev.mtu()
    };
    if mtu < IP_MIN_MTU {
        return Err(SendError::NetUnreachable(p.daddr));
    }
    Ok(mtu)
}

/// The pending datagram of a socket. See the module documentation.
#[derive(Debug, Default)]
pub struct Cork {
    params: Option<CorkParams>,
    fragsize: u32,
    /// The pending buffers (`sk_write_queue`), in order.
    queue: Vec<PacketBuf>,
    /// Bytes appended (`cork->length`), transport header included.
    length: usize,
    /// The socket's page fragment (`sk_page_frag`). Bytes written since the last
    /// split belong to the tail buffer's last fragment, still open for
    /// coalescing (`open`).
    page: BytesMut,
    /// Pages filled earlier, kept so one whose fragments have all been freed
    /// is reused instead of allocating (`sk_page_frag_refill`).
    spare_pages: VecDeque<BytesMut>,
    open: bool,
    /// The next append is a `MSG_ZEROCOPY` send with this token (and, when the
    /// caller can lend it, the data to reference).
    zc: Option<Arc<ZcUarg>>,
    zc_src: Option<Bytes>,
    /// Set when an append failed with the error `ip_local_error` reports.
    local_error: Option<u32>,
    /// The socket's pending error (`sk_err`), which the first buffer of a
    /// datagram checks as `sock_alloc_send_skb()` does.
    inbox: Option<Arc<crate::socket::inbox::SockInbox>>,
}

/// One append call's progress (the locals of `__ip_append_data`).
struct Append<'a> {
    data: &'a [u8],
    offset: usize,
    length: usize,
    transhdrlen: usize,
    exthdrlen: usize,
    partial: bool,
    flags: MsgFlags,
    /// `MSG_ZEROCOPY` completion token for the buffers this call creates.
    zc: Option<Arc<ZcUarg>>,
    /// The user's data, referenced by fragments when `zc_paged`.
    zc_src: Option<Bytes>,
    /// Zero-copy really happens (scatter-gather and checksum offload).
    zc_paged: bool,
}

/// Geometry of the cork for one append call: the fragment plan (`mtu`,
/// `fragheaderlen`, `maxfraglen`) and what the device asks of a buffer.
#[derive(Clone, Copy)]
struct Geom {
    plan: FragPlan,
    hh_len: usize,
    sg: bool,
    paged: bool,
    trailer_len: usize,
}

/// `SKB_MAX_ALLOC`: the largest linear allocation before the paged layout is
/// preferred on a scatter-gather device (order-2 pages less `skb_shared_info`).
pub const SKB_MAX_ALLOC: usize = 16384 - 320;

impl Cork {
    /// True when nothing is pending (`skb_queue_empty(&sk->sk_write_queue)`).
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes appended so far, transport header included (`cork->length`).
    pub fn length(&self) -> usize {
        self.length
    }

    /// The fragment size fixed when the cork opened (`cork->fragsize`).
    pub fn fragsize(&self) -> u32 {
        self.fragsize
    }

    /// The parameters the cork was opened with.
    pub fn params(&self) -> Option<&CorkParams> {
        self.params.as_ref()
    }

    /// Buffers pending.
    pub fn pending(&self) -> &[PacketBuf] {
        &self.queue
    }

    /// Kernel: `ip_setup_cork()`. Fixes the geometry for the datagram.
    pub fn setup(&mut self, params: CorkParams) -> Result<(), SendError> {
        self.fragsize = cork_fragsize(&params)?;
        self.params = Some(params);
        self.length = 0;
        Ok(())
    }

    /// Kernel: `ip_flush_pending_frames()`. Discards the pending datagram.
    pub fn flush(&mut self) {
        self.queue.clear();
        self.params = None;
        self.length = 0;
    }

    fn geom(&self, p: &CorkParams) -> Geom {
        let feats = p.dst.dev.features();
        let mtu = if p.gso_size != 0 {
            IP_MAX_MTU
        } else {
            self.fragsize
        } as usize;
        Geom {
            plan: FragPlan::new(mtu, HEADER_LEN + p.options.len()),
            hh_len: p.dst.dev.ll_reserved_space(),
            sg: feats.contains(crate::offload::Features::SG),
            paged: p.gso_size != 0,
            trailer_len: p.dst.trailer_len as usize,
        }
    }

    /// Kernel: `__ip_append_data()`. Appends `data` (after `transhdrlen` bytes
    /// of transport header to be filled in by the transport when the cork is
    /// opened by this call) to the pending datagram. On error the bytes of this
    /// call are taken back from `length` and `IpOutDiscards` is counted; the
    /// The socket whose pending error the first buffer of a datagram
    /// checks (see [`Cork::append`]).
    pub(crate) fn set_inbox(&mut self, inbox: Arc<crate::socket::inbox::SockInbox>) {
        self.inbox = Some(inbox);
    }

    /// caller flushes. `EMSGSIZE` carries the MTU less the option length.
    pub fn append(
        &mut self,
        stack: &Stack,
        budget: &Arc<SendBudget>,
        data: &[u8],
        transhdrlen: usize,
        flags: MsgFlags,
    ) -> Result<(), SendError> {
        let (g, header_len, ignore_df, optlen, can_csum, gso) = {
            let p = self
                .params
                .as_ref()
                .ok_or(SendError::Inval("cork not set up"))?;
            (
                self.geom(p),
                p.dst.header_len as usize,
                p.pmtudisc.ignore_df(),
                p.options.len(),
                p.dst.dev.features().can_csum(),
                p.gso_size,
            )
        };
        let first = self.queue.is_empty();
        let transhdrlen = if first { transhdrlen } else { 0 };
        let exthdrlen = if first { header_len } else { 0 };
        let length = data.len() + transhdrlen;
        let maxnonfragsize = if ignore_df {
            IP_MAX_MTU as usize
        } else {
            g.plan.mtu()
        };
        if self.length + length > maxnonfragsize - g.plan.hlen() {
            let mtu = (g.plan.mtu() - optlen) as u32;
            self.local_error = Some(mtu);
            // No buffer exists yet; the refused send is counted under the reason
            // the kernel uses for datagrams over the MTU.
            stack.counters.drop_at(crate::stats::DropSite::CorkTooBig);
            if maxnonfragsize == IP_MAX_MTU as usize {
                // Not the path's MTU but IPv4's own limit (the error queue
                // still reports the MTU, as the kernel's ip_local_error).
                let max = maxnonfragsize - g.plan.hlen() - self.length - transhdrlen;
                return Err(SendError::TooLong { max });
            }
            return Err(SendError::MsgSize { mtu });
        }
        let partial = transhdrlen > 0
            && length <= g.plan.space()
            && can_csum
            && (!flags.contains(MsgFlags::MORE) || gso != 0)
            && exthdrlen == 0;
        self.length += length;
        let (zc, zc_src) = (self.zc.take(), self.zc_src.take());
        let zc_paged = zc.is_some() && g.sg && partial && zc_src.is_some();
        if let (Some(u), false) = (&zc, zc_paged) {
            u.set_copied();
        }
        let mut g = g;
        g.paged |= zc_paged;
        let mut a = Append {
            data,
            offset: 0,
            length,
            transhdrlen,
            exthdrlen,
            partial,
            flags,
            zc,
            zc_src,
            zc_paged,
        };
        match self.append_loop(stack, budget, &g, &mut a) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.length -= a.length;
                stack.counters.inc(Mib::IpOutDiscards);
                Err(e)
            }
        }
    }

    fn append_loop(
        &mut self,
        stack: &Stack,
        budget: &Arc<SendBudget>,
        g: &Geom,
        a: &mut Append<'_>,
    ) -> Result<(), SendError> {
        if self.queue.is_empty() {
            self.alloc_new(stack, budget, g, a, 0)?;
        }
        while a.length > 0 {
            let skb_len = self.tail_len();
            let mut copy = g.plan.mtu() as isize - skb_len as isize;
            if copy < a.length as isize {
                copy = g.plan.maxfraglen() as isize - skb_len as isize;
            }
            if copy <= 0 {
                self.alloc_new(stack, budget, g, a, skb_len)?;
                continue;
            }
            let copy = (copy as usize).min(a.length);
            let n = self.append_to_tail(g, a, copy)?;
            a.offset += n;
            a.length -= n;
        }
        Ok(())
    }
}

impl Cork {
    /// Makes the next [`Cork::append`] a `MSG_ZEROCOPY` send: its buffers carry
    /// `uarg`; with `src` (the same bytes as the data) and a device that can
    /// take fragments and finish the checksum, fragments reference `src`
    /// instead of copying; otherwise the token is marked copied.
    pub fn prepare_zerocopy(&mut self, uarg: Arc<ZcUarg>, src: Option<Bytes>) {
        self.zc = Some(uarg);
        self.zc_src = src;
    }

    /// The zero-copy token of the pending datagram's last buffer.
    pub fn pending_zerocopy(&self) -> Option<Arc<ZcUarg>> {
        self.queue.last().and_then(|b| b.meta.zc.clone())
    }

    /// Takes the `ee_info` of an `EMSGSIZE` that `ip_local_error` reports.
    pub fn take_local_error(&mut self) -> Option<u32> {
        self.local_error.take()
    }

    /// Length of the tail buffer, its open fragment included.
    fn tail_len(&self) -> usize {
        let open = if self.open { self.page.len() } else { 0 };
        self.queue.last().map_or(0, |b| b.len()) + open
    }

    /// Kernel: `sk_page_frag_refill()`. Retires the full page and takes a spare
    /// one whose fragments have all been freed, or a new one.
    fn refill_page(&mut self) {
        const SPARES: usize = 4;
        if self.spare_pages.capacity() == 0 {
            self.spare_pages.reserve_exact(SPARES + 1);
        }
        let full = std::mem::take(&mut self.page);
        if self.spare_pages.len() == SPARES {
            self.spare_pages.pop_front();
        }
        self.spare_pages.push_back(full);
        for _ in 0..self.spare_pages.len() {
            let Some(mut p) = self.spare_pages.pop_front() else {
                break;
            };
            if p.try_reclaim(PAGE_FRAG_SIZE) {
                self.page = p;
                return;
            }
            self.spare_pages.push_back(p);
        }
        self.page = BytesMut::with_capacity(PAGE_FRAG_SIZE);
    }

    /// Closes the open page fragment into the tail buffer.
    #[inline]
    fn close_open(&mut self) {
        if self.open {
            self.close_open_frag();
        }
    }

    /// [`Cork::close_open`] when a fragment is open.
    fn close_open_frag(&mut self) {
        self.open = false;
        if self.page.is_empty() {
            return;
        }
        let frag = self.page.split().freeze();
        if let Some(tail) = self.queue.last_mut() {
            // The count was checked when the fragment was opened.
            let _ = tail.add_frag(frag);
        }
    }

    /// Moves the bytes past `maxfraglen` of the previous buffer into `skb` at
    /// absolute offset `at`, moving their partial sum too.
    fn move_fraggap(&mut self, skb: &mut PacketBuf, at: usize, fraggap: usize, maxfraglen: usize) {
        let Some(prev) = self.queue.last_mut() else {
            return;
        };
        let dst = &mut skb.from_offset_mut(at)[..fraggap];
        prev.copy_bits(maxfraglen, dst);
        let sum = Csum::of(dst);
        skb.meta.csum = sum;
        prev.meta.csum = prev.meta.csum.sub(sum);
        prev.trim(maxfraglen);
    }

    /// The new-buffer branch of `__ip_append_data`: `prev_len` is the length
    /// of the tail buffer (its open fragment included), 0 when there is none;
    /// the bytes past `maxfraglen` in it move to the new buffer (`fraggap`).
    fn alloc_new(
        &mut self,
        stack: &Stack,
        budget: &Arc<SendBudget>,
        g: &Geom,
        a: &mut Append<'_>,
        prev_len: usize,
    ) -> Result<(), SendError> {
        self.close_open();
        let fraggap = g.plan.fraggap(prev_len);
        let datalen = g.plan.datalen(a.length + fraggap);
        let fraglen = datalen + g.plan.hlen();
        let mut alloc_extra = g.hh_len + 15 + a.exthdrlen;
        if datalen == a.length + fraggap {
            alloc_extra += g.trailer_len;
        }
        let (alloclen, pagedlen) = if a.flags.contains(MsgFlags::MORE) && !g.sg {
            (g.plan.mtu(), 0)
        } else if !g.paged && (fraglen + alloc_extra < SKB_MAX_ALLOC || !g.sg) {
            (fraglen, 0)
        } else {
            let lin = g.plan.hlen() + a.transhdrlen + fraggap;
            (lin, datalen - a.transhdrlen - fraggap)
        };
        if a.transhdrlen > 0 {
            // sock_alloc_send_pskb(): a pending error fails the datagram's
            // first buffer (after the size check), and is cleared.
            if let Some(e) = self.inbox.as_ref().and_then(|ib| ib.take_error()) {
                return Err(SendError::SockErr(e));
            }
        }
        check_budget(stack, budget, a)?;
        let mut skb = stack.pool.alloc(alloclen + alloc_extra);
        skb.meta.ip_summed = CsumState::for_append(a.partial);
        skb.reserve(g.hh_len);
        skb.put(fraglen + a.exthdrlen - pagedlen);
        skb.meta.network_header = (skb.data_offset() + a.exthdrlen) as u16;
        skb.meta.transport_header = skb.meta.network_header + g.plan.hlen() as u16;
        let data = skb.meta.transport_header as usize;
        if fraggap > 0 {
            self.move_fraggap(&mut skb, data + a.transhdrlen, fraggap, g.plan.maxfraglen());
        }
        let copy = datalen - a.transhdrlen - fraggap - pagedlen;
        if copy > 0 {
            let at = data + a.transhdrlen + fraggap;
            getfrag(&mut skb, at, &a.data[a.offset..a.offset + copy], fraggap);
        }
        a.offset += copy;
        a.length -= copy + a.transhdrlen;
        if a.flags.contains(MsgFlags::CONFIRM) && self.queue.is_empty() {
            skb.meta.confirm_neigh = true;
        }
        (a.transhdrlen, a.exthdrlen, a.partial) = (0, 0, false);
        skb.meta.zc = a.zc.clone();
        skb.set_owner(budget);
        self.queue.push(skb);
        Ok(())
    }

    /// Appends up to `copy` bytes to the tail buffer; returns how many went in.
    fn append_to_tail(
        &mut self,
        g: &Geom,
        a: &Append<'_>,
        copy: usize,
    ) -> Result<usize, SendError> {
        let src = &a.data[a.offset..a.offset + copy];
        let tail = self
            .queue
            .last_mut()
            .ok_or(SendError::Inval("no pending buffer"))?;
        if !g.sg && tail.tailroom() >= copy {
            let off = tail.len();
            let at = tail.data_offset() + off;
            tail.put(copy);
            getfrag(tail, at, src, off);
            return Ok(copy);
        }
        if let (true, Some(user)) = (a.zc_paged, &a.zc_src) {
            // skb_zerocopy_iter_dgram: the fragment references the user's data.
            let frag = user.slice(a.offset..a.offset + copy);
            return tail
                .add_frag(frag)
                .map(|()| copy)
                .map_err(|_| SendError::MsgSize { mtu: 0 });
        }
        self.append_to_page(src)
    }

    /// The scatter-gather branch: copy into the page fragment, coalescing with the
    /// tail's last fragment while the page continues it.
    fn append_to_page(&mut self, src: &[u8]) -> Result<usize, SendError> {
        if self.page.capacity() == self.page.len() {
            self.close_open();
            self.refill_page();
        }
        let odd = self.tail_len();
        let tail = self
            .queue
            .last_mut()
            .ok_or(SendError::Inval("no pending buffer"))?;
        if !self.open {
            if tail.frags().len() >= MAX_FRAGS {
                return Err(SendError::MsgSize { mtu: 0 });
            }
            self.open = true;
        }
        let copy = src.len().min(self.page.capacity() - self.page.len());
        let start = self.page.len();
        self.page.extend_from_slice(&src[..copy]);
        if tail.meta.ip_summed == CsumState::None {
            let sum = Csum::of(&self.page[start..start + copy]);
            tail.meta.csum = tail.meta.csum.add_at(sum, odd);
        }
        tail.grow_charge(copy);
        Ok(copy)
    }
}

/// How long a blocked send sleeps between looks at the stack (its deferred
/// work and timers run from the sender when no runner thread does).
const WAIT_SLICE: std::time::Duration = std::time::Duration::from_millis(5);

/// How long nothing may move — no buffer released, no deferred work done,
/// no timer ahead on a clock that runs — before a blocked send gives up:
/// then nothing can ever free the budget (a wire nobody drains, a stopped
/// clock), and the kernel's sleep for ever would be a hang here.
const STALL: std::time::Duration = std::time::Duration::from_secs(1);

/// The send-budget checks of `sock_alloc_send_skb` (first buffer: wait or
/// `EAGAIN` while `sk_wmem_alloc >= sk_sndbuf`) and of the later buffers
/// (`ENOBUFS` past twice the budget).
fn check_budget(stack: &Stack, budget: &SendBudget, a: &Append<'_>) -> Result<(), SendError> {
    if a.transhdrlen == 0 {
        // `refcount_read(&sk->sk_wmem_alloc) <= 2 * sk_sndbuf`, and the refcount
        // is one more than what is charged.
        return if budget.allocated() < budget.limit().saturating_mul(2) {
            Ok(())
        } else {
            Err(SendError::NoBufs)
        };
    }
    if budget.allocated() < budget.limit() {
        return Ok(());
    }
    if a.flags.contains(MsgFlags::DONTWAIT) {
        return Err(SendError::Again);
    }
    wait_for_wmem(stack, budget)
}

/// Kernel: `sock_wait_for_wmem()` in `sock_alloc_send_pskb()`. A blocking
/// send sleeps until the budget has room: woken by a release (a driver
/// freeing a frame), or every [`WAIT_SLICE`] to run the stack's deferred
/// work and due timers itself (`Stack::poll`). `SO_SNDTIMEO` ends the wait
/// with `EAGAIN`, as the kernel; when nothing has moved for [`STALL`] and
/// nothing can (no timer ahead, or a clock that does not run), the send
/// fails with [`SendError::Stalled`] instead of sleeping for ever.
fn wait_for_wmem(stack: &Stack, budget: &SendBudget) -> Result<(), SendError> {
    let start = std::time::Instant::now();
    let timeout = budget.sndtimeo();
    let mut idle: Option<(std::time::Instant, crate::time::Instant)> = None;
    loop {
        let epoch = budget.epoch();
        let worked = stack.poll() > 0;
        if budget.allocated() < budget.limit() {
            return Ok(());
        }
        let now = std::time::Instant::now();
        let left = timeout.map(|t| t.saturating_sub(now - start));
        if left.is_some_and(|l| l.is_zero()) {
            return Err(SendError::Again);
        }
        if worked || budget.epoch() != epoch {
            idle = None;
        } else {
            let (since, clock) = *idle.get_or_insert((now, stack.now()));
            if now - since >= STALL && !can_progress(stack, clock) {
                return Err(SendError::Stalled);
            }
        }
        let slice = left.map_or(WAIT_SLICE, |l| l.min(WAIT_SLICE));
        budget.wait(epoch, slice);
    }
}

/// True when the stack has a timer ahead on a clock that has moved since
/// `then` (a qdisc's watchdog, a neighbour timer will run and may free
/// the budget).
fn can_progress(stack: &Stack, then: crate::time::Instant) -> bool {
    let now = stack.now();
    now != then && stack.next_wakeup().is_some_and(|t| t > now)
}

/// Kernel: `ip_generic_getfrag()`. Copies user data into the buffer at absolute
/// offset `at`, adding its sum at `odd` unless the device will checksum.
pub(crate) fn getfrag(skb: &mut PacketBuf, at: usize, src: &[u8], odd: usize) {
    let sw = skb.meta.ip_summed == CsumState::None;
    let dst = &mut skb.from_offset_mut(at)[..src.len()];
    if sw {
        let sum = Csum::copy_and_sum(src, dst);
        skb.meta.csum = skb.meta.csum.add_at(sum, odd);
    } else {
        dst.copy_from_slice(src);
    }
}

/// The DF bit `__ip_make_skb` gives a datagram of `len` bytes (IP header
/// included): always under `IP_PMTUDISC_DO`/`PROBE`, under `WANT` when it fits
/// the path MTU and the route's MTU is not locked (`ip_dont_fragment()`).
pub(crate) fn datagram_df(p: &CorkParams, len: usize) -> bool {
    matches!(p.pmtudisc, PmtuDisc::Do | PmtuDisc::Probe)
        || (len as u32 <= p.dst.mtu() && p.pmtudisc.dont_fragment_on(&p.dst))
}

impl Cork {
    /// Kernel: `__ip_make_skb()`. Takes the pending buffers as one datagram: the
    /// first with the rest chained behind it (`frag_list`), the IP header written
    /// (all but `tot_len` and the checksum, which `ip_local_out` fills) and the
    /// ID chosen. `sock_id` is a connected socket's own ID counter. Returns `None`
    /// when nothing is pending.
    pub fn make(&mut self, stack: &Stack, sock_id: Option<&mut u16>) -> Option<PacketBuf> {
        self.close_open();
        let p = self.params.take()?;
        self.length = 0;
        let mut pending = self.queue.drain(..);
        let mut skb = pending.next()?;
        let nh = skb.meta.network_header as usize;
        let off = skb.data_offset();
        if off < nh {
            skb.pull(nh - off);
        }
        let hlen = skb.meta.transport_header as usize - nh;
        for mut t in pending {
            t.pull(hlen);
            t.meta.dst = None;
            skb.chain_push(t);
        }
        let df = datagram_df(&p, skb.len());
        skb.meta.ip_flags.ignore_df = p.pmtudisc.ignore_df();
        set_route_flags(&mut skb.meta.ip_flags, p.kind, p.mc_loop);
        let id = select_ident(stack, &p, df, sock_id);
        write_header(&mut skb, &p, df, id);
        if p.protocol == 1 {
            // The ICMP type is the first byte after the IP header (a raw
            // socket's own data: the kernel's `fl4_icmp_type`).
            let t = skb.linear().get(hlen).copied().unwrap_or(0);
            crate::ipv4::icmp::out_count(stack, t);
        }
        skb.meta.ip_optlen = p.options.len() as u8;
        skb.meta.use_dev_mtu = !p.pmtudisc.use_pmtu();
        skb.meta.priority = p.priority;
        skb.meta.mark = p.mark;
        skb.meta.tstamp = p.transmit_time;
        skb.meta.sk = p.sk;
        skb.meta.tskey = p.tskey;
        crate::stats::fate::made(p.tskey);
        skb.meta.dst = Some(p.dst);
        Some(skb)
    }
}

/// Kernel: `ip_select_ident_segs()`. A connected socket uses its own counter; a
/// DF datagram that may not be fragmented locally gets 0; others draw from the
/// per-destination counters.
pub(crate) fn select_ident(
    stack: &Stack,
    p: &CorkParams,
    df: bool,
    sock_id: Option<&mut u16>,
) -> u16 {
    if let Some(id) = sock_id.filter(|_| p.connected) {
        *id = id.wrapping_add(1);
        return *id;
    }
    if df && !p.pmtudisc.ignore_df() {
        return 0;
    }
    stack.select_ident((p.daddr, p.saddr, p.protocol), 1)
}

/// Writes the IP header fields `__ip_make_skb` sets, and the options
/// (`ip_options_build`).
pub(crate) fn write_header(skb: &mut PacketBuf, p: &CorkParams, df: bool, id: u16) {
    write_header_bytes(skb.network_header_mut(), p, df, id);
}

/// [`write_header`] into the bytes of the header (at least `20 + optlen`).
pub(crate) fn write_header_bytes(h: &mut [u8], p: &CorkParams, df: bool, id: u16) {
    let fields = HeaderFields {
        tos: p.tos,
        ident: id,
        df,
        ttl: p.ttl,
        protocol: p.protocol,
        saddr: p.saddr,
        daddr: p.daddr,
        options: &p.options,
        final_daddr: p.final_daddr,
    };
    build_header(h, &fields);
}
