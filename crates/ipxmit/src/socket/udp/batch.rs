//! `sendmmsg` for UDP: many datagrams in one call, batched end to end.
//!
//! Stands for `__sys_sendmmsg()` (`net/socket.c`) looping over `udp_sendmsg()`
//! with its lockless `ip_make_skb` path, and for what the kernel does per
//! packet below it: `ip_send_skb`, `ip_local_out`, `ip_output`,
//! `ip_finish_output2` with a connected neighbour (`neigh_hh_output`), and
//! `__dev_xmit_skb` bypassing an empty qdisc into `sch_direct_xmit` (or a
//! queueless device's direct call of the driver).
//!
//! Each datagram becomes exactly the frames `send_to` makes, with the same
//! buffer sizes, header, IP ID, checksum state, metadata, send-budget charge
//! and counters. What is done once per run of datagrams to one destination
//! instead of once per datagram: the route and source address, the
//! neighbour's cached header, the filter-hook check, the time, the queue
//! choice, the qdisc decision, the IP header template and the pseudo-header
//! sum, the send-budget charge, the IP IDs drawn from the per-destination
//! counter, the counter updates and one pass through the driver with
//! `xmit_more` set on all but the last frame (so a driver writes them with one
//! syscall). The run's charge and IDs are taken in one step each and what a
//! run cut short did not use is given back, so the datagrams after it see
//! what they would have seen one by one.
//!
//! A datagram over the MTU is built directly as its fragments, and so is a
//! corked one whose pieces are messages of the batch with `MSG_MORE` of their
//! own ([`BatchMsg::flags`]; see `frags.rs`). On a queueless device they join
//! the run like the others (a stopped queue or busy driver drops the rest of
//! the datagram's fragments, as `noqueue` does); behind a qdisc each goes down
//! on its own, as the general path's fragment train does.
//!
//! A run takes the fast way only when the kernel's per-datagram path would do
//! nothing else: no pending (corked) datagram left by an earlier call, no
//! `MSG_PROBE`/`MSG_CONFIRM`/`MSG_ZEROCOPY`, no IP options, no UDP GSO,
//! checksums on, no transform header, no filter hooks, a connected neighbour
//! (or an L3 device), an idle queue whose qdisc may be bypassed (or a
//! `noqueue` device), a driver queue not stopped, and room in the send
//! budget. Any other message goes through [`UdpSocket::sendmsg`] on its own,
//! in order.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::frags::{budget_allows, MemoKey, Unit, UnitMemo};
use super::{
    flow_hash, hwcsum_pseudo, udp_csum, write_check, write_udp_header, UdpSocket, UDP_HLEN,
};
use crate::buf::{kernel_truesize, CsumState, PacketBuf, SendBudget};
use crate::dev::queue::{queue_index, XmitCtx};
use crate::dev::xmit::{drop_frame, finish_frame, xmit_one_uncounted};
use crate::dev::{Driver, Features, LinkType, NetDevice, TxQueue, TxStatus};
use crate::error::SendError;
use crate::ipv4::output::{push_link_header, softirq_on_exit, write_link_header};
use crate::neigh::HhCache;
use crate::netfilter::HookPoint;
use crate::sched::run::{end_bypass, requeue};
use crate::socket::cork::{
    cork_fragsize, datagram_df, getfrag, write_header_bytes, CorkParams, SKB_MAX_ALLOC,
};
use crate::socket::MsgFlags;
use crate::stack::Stack;
use crate::stats::{DevCounter, DropReason, Mib};
use crate::wire::checksum::{pseudo_header_v4, Csum};

/// Most datagrams handed to the driver in one pass (the kernel's
/// `UIO_MAXIOV`-bounded `sendmmsg` batches are usually this size).
pub const BATCH_MAX: usize = 64;

/// One message of [`UdpSocket::send_batch`] (a `struct mmsghdr`): the data,
/// the destination (`None` for the connected peer) and the message's own
/// flags.
#[derive(Clone, Copy, Debug)]
pub struct BatchMsg<'a> {
    /// The datagram's payload (or a piece of it, under `MSG_MORE`).
    pub data: &'a [u8],
    /// Where it goes (`msg_name`); `None` sends to the connected peer.
    pub dest: Option<SocketAddrV4>,
    /// Flags of this message alone, added to the call's. Unlike the
    /// kernel's `sendmmsg`, which gives every message the call's flags, a
    /// message may carry `MSG_MORE` here: it then stays pending and the
    /// messages after it add to the same datagram until one without it (the
    /// kernel does the same for the same messages sent one by one).
    pub flags: MsgFlags,
}

impl<'a> BatchMsg<'a> {
    /// A message of `data` to `dest` with no flags of its own.
    pub const fn new(data: &'a [u8], dest: Option<SocketAddrV4>) -> BatchMsg<'a> {
        BatchMsg {
            data,
            dest,
            flags: MsgFlags::NONE,
        }
    }
}

/// What a run of datagrams to one destination shares.
pub(super) struct Flow {
    pub(super) params: CorkParams,
    pub(super) dest: Option<SocketAddrV4>,
    pub(super) dport: u16,
    /// Largest payload that fits one frame (`fragsize` less the headers).
    pub(super) max_payload: usize,
    /// The neighbour's cached link header (empty on an L3 device).
    pub(super) hh: HhCache,
    hh_len: usize,
    /// `LL_RESERVED_SPACE` + 15 + trailer: what `alloc_new` adds to `fraglen`.
    pub(super) alloc_extra: usize,
    /// The device finishes the checksum (`CHECKSUM_PARTIAL`).
    partial: bool,
    /// The socket's PMTU mode as each buffer's metadata carries it, worked
    /// out once per run: the datagram may be fragmented locally
    /// (`skb->ignore_df`).
    pub(super) ignore_df: bool,
    /// The device's MTU, not the path's, bounds the fragments
    /// (`ip_sk_use_pmtu` false).
    pub(super) use_dev_mtu: bool,
    pub(super) hash: u32,
    queue: usize,
    /// The IP header every datagram of the run gets (`__ip_make_skb`), with
    /// ID, total length and checksum zero, and the sum of its words: per
    /// datagram only those three fields change.
    ip_template: [u8; 20],
    ip_sum: Csum,
    /// Where the datagrams' IDs come from (`ip_select_ident_segs`).
    pub(super) ids: IdSource,
    /// The socket's plan memo, lent for a run that may fragment.
    pub(super) unit_memo: std::cell::RefCell<Option<Box<UnitMemo>>>,
    /// The pseudo-header sum without the length.
    pub(super) pseudo: Csum,
    /// The IP header of the flow's fragments (no DF) with ID, length,
    /// offset and checksum zero, and its sum: `ip_template` without DF.
    pub(super) frag_template: ([u8; 20], Csum),
    /// The last allocation size whose truesize was computed, and that
    /// truesize (batches are mostly of one size).
    truesize_memo: std::cell::Cell<(usize, usize)>,
}

impl Flow {
    /// `kernel_truesize(size)`, computed once for a run of one size.
    #[inline(always)]
    pub(super) fn truesize(&self, size: usize) -> usize {
        let (s, t) = self.truesize_memo.get();
        if s == size {
            return t;
        }
        let t = kernel_truesize(size);
        self.truesize_memo.set((size, t));
        t
    }
}

impl UdpSocket {
    /// Kernel: `__sys_sendmmsg()` over `udp_sendmsg()`. Sends the messages in
    /// order, each as [`UdpSocket::sendmsg`] would with `flags` and its own
    /// ([`BatchMsg::flags`]), and returns how many were sent. An error on the first message is returned; an
    /// error on a later one ends the call with the count so far (as the
    /// kernel does, the error itself is then not reported).
    pub fn send_batch(
        &mut self,
        msgs: &[BatchMsg<'_>],
        flags: MsgFlags,
    ) -> Result<usize, SendError> {
        let mut sent = 0;
        while sent < msgs.len() {
            let (n, failed) = self.send_run(&msgs[sent..], flags);
            sent += n;
            match failed {
                Some(e) if sent == 0 => return Err(e),
                Some(_) => break,
                None if n > 0 => continue,
                None => {}
            }
            let Some(m) = msgs.get(sent) else {
                break;
            };
            match self.sendmsg(m.data, m.dest, flags | m.flags) {
                Ok(_) => sent += 1,
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(sent)
    }

    /// Sends the longest prefix of `msgs` that can take the fast way (see the
    /// module documentation); returns how many were sent (0 when the first
    /// cannot take it) and, when the message after them failed on the way,
    /// its error — a routing error of the first, or a frame a queueless
    /// device's driver refused (`ENETDOWN`, as `sendmsg` reports it).
    ///
    /// Each datagram goes to the driver as soon as it is built, `xmit_more`
    /// set while the next one will follow. A driver that refuses one ends the
    /// run there, as the bypass of one datagram would: the frame is requeued
    /// and the queue rescheduled (the driver stopped it, and wakes it), and
    /// the next messages take the general way (into the qdisc, with its
    /// limits).
    #[inline(never)]
    fn send_run(&mut self, msgs: &[BatchMsg<'_>], flags: MsgFlags) -> (usize, Option<SendError>) {
        let base = (flags | msgs[0].flags).without(MsgFlags::MORE);
        let flow = match self.fast_flow(&msgs[0], base) {
            Ok(Some(f)) => f,
            Ok(None) => return (0, None),
            Err(e) => return (0, Some(e)),
        };
        let txq = &flow.params.dst.dev.queues()[flow.queue];
        if flags | msgs[0].flags == base && msgs[0].data.len() <= flow.max_payload {
            // Datagrams that fit one frame, the common case, on their own.
            let Some(path) = claim_queue(txq) else {
                return (0, None);
            };
            let (n, charge) = self.precharge(&flow, msgs);
            return self.run_with(&flow, txq, path, (n, charge), |this, run, driver, ids| {
                this.xmit_fitting(&flow, &msgs[..n], run, driver, ids)
            });
        }
        // The socket's memo, lent to the flow for the run (made once, with
        // the socket's first such run).
        let mut memo = self.unit_memo.take().unwrap_or_default();
        memo.keep_for(MemoKey::of(&flow, flags, base));
        *flow.unit_memo.borrow_mut() = Some(memo);
        let r = self.fragmenting_run(&flow, msgs, (flags, base), txq);
        self.unit_memo = flow.unit_memo.take();
        r
    }

    /// The rest of [`UdpSocket::send_run`] for a first datagram that does
    /// not fit one frame: a run on a queueless device, or that datagram on
    /// its own behind a qdisc.
    fn fragmenting_run(
        &mut self,
        flow: &Flow,
        msgs: &[BatchMsg<'_>],
        (flags, base): (MsgFlags, MsgFlags),
        txq: &TxQueue,
    ) -> (usize, Option<SendError>) {
        let noqueue = txq.q.lock().qdisc.is_noqueue();
        match self.unit(flow, msgs, flags, base) {
            None => (0, None),
            Some(u) if !noqueue => {
                // Behind a qdisc a fragment train goes down on its own.
                match self.send_fragmented(flow, &msgs[..u.msgs]) {
                    Some(Ok(())) => (u.msgs, None),
                    Some(Err(e)) => (u.msgs - 1, Some(e)),
                    None => (0, None),
                }
            }
            Some(_) => self.run_units(flow, msgs, (flags, base), txq),
        }
    }

    /// A run of datagrams on a queueless device, fragment trains and
    /// corked groups among them ([`UdpSocket::plan`]). The caller found the
    /// device queueless (under the qdisc lock): no other claim is needed
    /// than a queue not stopped.
    fn run_units(
        &mut self,
        flow: &Flow,
        msgs: &[BatchMsg<'_>],
        flags: (MsgFlags, MsgFlags),
        txq: &TxQueue,
    ) -> (usize, Option<SendError>) {
        if txq.ctl().is_stopped() {
            return (0, None);
        }
        let mut units = std::mem::take(&mut self.units);
        let charge = self.plan(flow, msgs, flags, true, &mut units);
        let r = self.run_with(
            flow,
            txq,
            Path::NoQueue,
            (units.len(), charge),
            |this, run, driver, ids| this.xmit_units(flow, msgs, &units, run, driver, ids),
        );
        self.units = units;
        r
    }

    /// What every run does around its datagrams: the time, the IDs of its
    /// `n` datagrams reserved at once (and the unused given back), the
    /// send-budget charge `charge` taken at once (and the unused released),
    /// the gathered budget releases, the driver held, the counters once.
    /// `body` sends the datagrams and returns how many messages were sent
    /// and the charge their buffers took.
    fn run_with(
        &mut self,
        flow: &Flow,
        txq: &TxQueue,
        path: Path,
        (n, charge): (usize, usize),
        body: impl FnOnce(&mut Self, &mut Run<'_>, &mut dyn Driver, u32) -> (usize, usize),
    ) -> (usize, Option<SendError>) {
        let stack = self.inet.stack.clone();
        let t = stack.time_scope();
        let p = &flow.params;
        let (slot, first_id) = match flow.ids {
            IdSource::Bucket => stack
                .idents
                .reserve_run(p.daddr, p.saddr, p.protocol, n as u32),
            _ => (0, 0),
        };
        let mut run = Run::new(&stack, stack.xmit_ctx(), &p.dst.dev, txq, flow.hh_len, path);
        run.queue = flow.queue as u16;
        let (sent, used) = {
            let _gathered = SendBudget::gather_releases(&self.inet.budget);
            let mut driver = txq.driver.lock();
            body(self, &mut run, &mut **driver, first_id)
        };
        self.inet.budget.release_unused(charge - used);
        if flow.ids == IdSource::Bucket {
            stack
                .idents
                .give_back(slot, first_id, n as u32, run.datagrams as u32);
        }
        let failed = run.finish(&stack);
        drop(t);
        softirq_on_exit(&stack);
        (sent, failed)
    }

    /// The loop of a run of datagrams that fit one frame each.
    fn xmit_fitting(
        &mut self,
        flow: &Flow,
        msgs: &[BatchMsg<'_>],
        run: &mut Run<'_>,
        driver: &mut dyn Driver,
        first_id: u32,
    ) -> (usize, usize) {
        let stack = run.stack;
        let (n, mut used) = (msgs.len(), 0);
        for (i, m) in msgs.iter().enumerate() {
            let id = self.unit_id(flow, first_id.wrapping_add(i as u32) as u16);
            let skb = self.build(stack, flow, m.data, id);
            used += skb.truesize();
            if !run.xmit(driver, skb, i + 1 < n) {
                break;
            }
        }
        let sent = run.datagrams - u64::from(run.failed.is_some());
        (sent as usize, used)
    }

    /// The loop of a run of planned datagrams (`units`, from the start of
    /// `msgs`).
    fn xmit_units(
        &mut self,
        flow: &Flow,
        msgs: &[BatchMsg<'_>],
        units: &[Unit],
        run: &mut Run<'_>,
        driver: &mut dyn Driver,
        first_id: u32,
    ) -> (usize, usize) {
        let stack = run.stack;
        let (mut sent, mut at, mut used) = (0, 0, 0);
        for (i, u) in units.iter().enumerate() {
            let id = first_id.wrapping_add(i as u32) as u16;
            let unit = &msgs[at..at + u.msgs];
            used += u.charge;
            let more = i + 1 < units.len();
            let ok = self.xmit_unit(stack, flow, unit, u, id, run, driver, more);
            if run.failed.is_some() {
                sent += u.msgs - 1;
                break;
            }
            (sent, at) = (sent + u.msgs, at + u.msgs);
            if !ok {
                break;
            }
        }
        (sent, used)
    }

    /// One datagram of a run: built (one buffer, or its fragments) and given
    /// to the driver; false ends the run.
    #[allow(clippy::too_many_arguments)]
    fn xmit_unit(
        &mut self,
        stack: &Stack,
        flow: &Flow,
        unit: &[BatchMsg<'_>],
        u: &Unit,
        bucket_id: u16,
        run: &mut Run<'_>,
        driver: &mut dyn Driver,
        more: bool,
    ) -> bool {
        let id = self.unit_id(flow, bucket_id);
        let Some((cut, sizes)) = u.frags else {
            let skb = self.build(stack, flow, unit[0].data, id);
            return run.xmit(driver, skb, more);
        };
        let mut frags = std::mem::take(&mut self.frags);
        self.build_fragments(stack, flow, &cut, (unit, sizes, u.memo), id, &mut frags);
        let ok = run.xmit_train(driver, &mut frags, (&flow.hh, cut.ip_bytes()), more);
        self.frags = frags;
        ok
    }

    /// The run of datagrams that fit one frame: the first messages (at most
    /// [`BATCH_MAX`]) to the flow's destination with the first's flags that
    /// fit one frame and pass `sock_alloc_send_skb`'s check (`sk_wmem_alloc
    /// < sk_sndbuf`) with every earlier one of them still charged; returns
    /// how many and their buffers' truesize, charged now in one step (see
    /// [`UdpSocket::plan`] for why that is exact).
    fn precharge(&self, f: &Flow, msgs: &[BatchMsg<'_>]) -> (usize, usize) {
        let b = &self.inet.budget;
        let (start, limit) = (b.allocated(), b.limit());
        let (mut sum, mut n) = (0, 0);
        for m in msgs.iter().take(BATCH_MAX) {
            if m.dest != f.dest
                || m.flags != msgs[0].flags
                || m.data.len() > f.max_payload
                || start + sum >= limit
            {
                break;
            }
            sum += f.truesize(20 + UDP_HLEN + m.data.len() + f.alloc_extra);
            n += 1;
        }
        SendBudget::precharge(b, sum);
        (n, sum)
    }

    /// The run: the datagrams (at most [`BATCH_MAX`] messages) from the
    /// start of `msgs` that take the fast way ([`UdpSocket::unit`]; fragment
    /// trains only when `trains`, on a queueless device) and pass the
    /// send-budget checks with every earlier one of them still charged:
    /// `sock_alloc_send_skb`'s (`sk_wmem_alloc < sk_sndbuf`) for a first
    /// buffer, `__ip_append_data`'s (`< 2 * sk_sndbuf`) for the others.
    /// Fills `units`; returns their buffers' truesize, charged now in one
    /// step. Buffers freed meanwhile only make more room, so each would pass
    /// the checks at its own turn too; a run ends where the next would not,
    /// and the general path then decides (waiting, `EAGAIN` or `ENOBUFS`)
    /// as the kernel does.
    fn plan(
        &self,
        f: &Flow,
        msgs: &[BatchMsg<'_>],
        (flags, base): (MsgFlags, MsgFlags),
        trains: bool,
        units: &mut Vec<Unit>,
    ) -> usize {
        units.clear();
        let b = &self.inet.budget;
        let (start, limit) = (b.allocated(), b.limit());
        let (mut sum, mut at) = (0, 0);
        while at < msgs.len() {
            let Some(u) = self.unit(f, &msgs[at..], flags, base) else {
                break;
            };
            let fits_budget = budget_allows(start.saturating_add(sum), limit, u.before_last);
            if at + u.msgs > BATCH_MAX || (u.frags.is_some() && !trains) || !fits_budget {
                break;
            }
            (sum, at) = (sum + u.charge, at + u.msgs);
            units.push(u);
        }
        SendBudget::precharge(b, sum);
        sum
    }

    /// The once-per-run part: eligibility, route, neighbour, queue. `Ok(None)`
    /// sends the message the general way; an error is the message's own
    /// (`sendmsg` fails there too, with nothing else done).
    fn fast_flow(&mut self, m: &BatchMsg<'_>, flags: MsgFlags) -> Result<Option<Flow>, SendError> {
        let dest = m.dest;
        if !self.plain_send(m, flags) {
            return Ok(None);
        }
        let (daddr, dport, connected) = match (dest, self.inet.peer) {
            (Some(d), _) if d.port() != 0 => (*d.ip(), d.port(), false),
            (None, Some(p)) => (*p.ip(), p.port(), true),
            _ => return Ok(None),
        };
        let params = self.inet.cork_params(daddr, connected)?;
        let fragsize = cork_fragsize(&params)? as usize;
        let dev = &params.dst.dev;
        if params.dst.header_len != 0 || !dev.is_up() || !hooks_idle(&self.inet.stack) {
            return Ok(None);
        }
        let Some(hh) = link_header(&self.inet.stack, dev, params.dst.nexthop(daddr)) else {
            return Ok(None);
        };
        let hh_len = dev.link().header_len();
        let alloc_extra = dev.ll_reserved_space() + 15 + params.dst.trailer_len as usize;
        if fragsize + alloc_extra >= SKB_MAX_ALLOC {
            // The paged layout of big linear allocations: the general path.
            return Ok(None);
        }
        let sport = self.inet.local.port();
        let hash = flow_hash(params.saddr, params.daddr, sport, dport);
        // Fitting datagrams are at most the path MTU under WANT (the cork's
        // fragment size is the path MTU), so DF is the same for all of them.
        let df = datagram_df(&params, fragsize);
        let (ip_template, ip_sum) = header_template(&params, df);
        let ids = if params.connected {
            IdSource::Socket
        } else if df && !params.pmtudisc.ignore_df() {
            IdSource::Zero
        } else {
            IdSource::Bucket
        };
        let pseudo = pseudo_header_v4(params.saddr, params.daddr, 17, 0);
        Ok(Some(Flow {
            unit_memo: std::cell::RefCell::new(None),
            truesize_memo: std::cell::Cell::new((usize::MAX, 0)),
            frag_template: without_df(ip_template, ip_sum),
            ids,
            pseudo,
            ip_template,
            ip_sum,
            max_payload: fragsize - 20 - UDP_HLEN,
            partial: dev.features().can_csum(),
            ignore_df: params.pmtudisc.ignore_df(),
            use_dev_mtu: !params.pmtudisc.use_pmtu(),
            queue: queue_index(dev.queues().len(), 0, hash),
            params,
            dest,
            dport,
            hh: HhCache { hdr: hh },
            hh_len,
            alloc_extra,
            hash,
        }))
    }
}

impl UdpSocket {
    /// The socket and the flags ask for nothing but a plain datagram: no
    /// pending or corked datagram, no `SO_NO_CHECK`, GSO or IP options, no
    /// flag but `MSG_DONTWAIT`, a length `sendmsg` accepts.
    fn plain_send(&self, m: &BatchMsg<'_>, flags: MsgFlags) -> bool {
        let o = &self.inet.opts;
        m.data.len() <= 0xffff
            && !self.pending
            && !o.cork
            && !o.no_check
            && o.gso_size == 0
            && o.options.is_empty()
            && flags.bits() & !MsgFlags::DONTWAIT.bits() == 0
    }
}

/// The IP header of the flow's datagrams with ID, length and checksum zero,
/// and the sum of its 16-bit words.
fn header_template(params: &CorkParams, df: bool) -> ([u8; 20], Csum) {
    let mut t = [0u8; 20];
    write_header_bytes(&mut t, params, df, 0);
    (t, Csum::of(&t))
}

/// A header template (ID, length and checksum zero) and its sum, with the
/// DF bit cleared: a fragment's header.
fn without_df(mut t: [u8; 20], sum: Csum) -> ([u8; 20], Csum) {
    if t[6] & 0x40 == 0 {
        return (t, sum);
    }
    t[6] &= !0x40;
    (t, sum.sub(Csum::from_u16(0x4000)))
}

/// True when no filter hook would see the packets.
fn hooks_idle(stack: &Stack) -> bool {
    let h = stack.hooks();
    h.is_empty(HookPoint::LocalOut) && h.is_empty(HookPoint::PostRouting)
}

/// The link header for `nexthop`: the neighbour's cached one when connected,
/// none on an L3 device; `None` when resolution would be needed.
fn link_header(stack: &Stack, dev: &NetDevice, nexthop: Ipv4Addr) -> Option<[u8; 14]> {
    match dev.link() {
        LinkType::L3 => Some([0; 14]),
        LinkType::Ethernet => stack
            .neigh
            .connected_hh(dev.ifindex(), nexthop)
            .map(|h| h.hdr),
    }
}

/// How a run's frames reach the driver (the two direct branches of
/// `__dev_queue_xmit`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    /// An empty qdisc bypassed (`TCQ_F_CAN_BYPASS`), its run owned by us.
    Bypass,
    /// A queueless device (`noqueue`): straight to the driver.
    NoQueue,
}

/// `qdisc_run_begin` for the bypass of `__dev_xmit_skb`: the queue is ours
/// when its qdisc may be bypassed, is empty and is not running; a `noqueue`
/// device needs nothing. Either way the driver queue must not be stopped.
fn claim_queue(txq: &TxQueue) -> Option<Path> {
    let mut slot = txq.q.lock();
    if txq.ctl().is_stopped() {
        return None;
    }
    if slot.qdisc.is_noqueue() {
        return Some(Path::NoQueue);
    }
    if !slot.can_bypass_now() {
        return None;
    }
    slot.running = true;
    Some(Path::Bypass)
}

impl UdpSocket {
    /// One datagram as `__ip_append_data` (one buffer, the datagram fits),
    /// `__ip_make_skb`, `udp_send_skb`, `__ip_local_out` and
    /// `neigh_hh_output` leave it, charged to the send budget out of the
    /// run's precharge.
    /// `id` is the datagram's IP ID ([`UdpSocket::unit_id`]).
    #[inline(always)]
    fn build(&mut self, stack: &Stack, f: &Flow, data: &[u8], id: u16) -> PacketBuf {
        let budget = &self.inet.budget;
        let p = &f.params;
        let hh_len = p.dst.dev.ll_reserved_space();
        let fraglen = 20 + UDP_HLEN + data.len();
        let size = fraglen + f.alloc_extra;
        let mut skb = stack.pool.alloc_truesize(size, f.truesize(size));
        skb.meta.ip_summed = CsumState::for_append(f.partial);
        skb.reserve(hh_len);
        skb.put(fraglen);
        let nh = skb.data_offset();
        let th = nh + 20;
        skb.meta.network_header = nh as u16;
        skb.meta.transport_header = th as u16;
        getfrag(&mut skb, th + UDP_HLEN, data, 0);
        skb.set_owner_precharged(budget);
        skb.meta.ip_flags.ignore_df = f.ignore_df;
        write_ip_header(&mut skb.from_offset_mut(nh)[..20], f, id, fraglen);
        skb.meta.protocol = 0x0800;
        skb.meta.use_dev_mtu = f.use_dev_mtu;
        skb.meta.priority = p.priority;
        skb.meta.mark = p.mark;
        // `skb_dst`: released at `__dev_queue_xmit` (IFF_XMIT_DST_RELEASE)
        // before anything below could read it; never taken here.
        self.finish_udp(&mut skb, f, th);
        write_link_header(skb.push(f.hh_len), &f.hh.hdr);
        skb.meta.queue_mapping = f.queue as u16 + 1;
        skb
    }

    /// The IP ID of a run's datagram (`ip_select_ident_segs`): the socket's
    /// own counter, 0, or `bucket_id` reserved for it from the
    /// per-destination counters.
    pub(super) fn unit_id(&mut self, f: &Flow, bucket_id: u16) -> u16 {
        match f.ids {
            IdSource::Zero => 0,
            IdSource::Bucket => bucket_id,
            IdSource::Socket => {
                self.inet.inet_id = self.inet.inet_id.wrapping_add(1);
                self.inet.inet_id
            }
        }
    }

    /// `udp_send_skb` for one buffer: header, flow hash, checksum. Inlined
    /// into [`UdpSocket::build`], where the checksum state it tests was
    /// just set.
    #[inline(always)]
    fn finish_udp(&self, skb: &mut PacketBuf, f: &Flow, th: usize) {
        let len = skb.len() - (th - skb.data_offset());
        write_udp_header(skb, th, self.inet.local.port(), f.dport, len);
        skb.meta.hash = f.hash;
        // The flow's pseudo-header sum, completed with this length.
        let pseudo = f.pseudo.add_u16(len as u16);
        if skb.meta.ip_summed != CsumState::None {
            hwcsum_pseudo(skb, pseudo);
        } else {
            write_check(skb, th, udp_csum(skb, th).add(pseudo).finish());
        }
    }
}

/// The header of `__ip_make_skb` completed by `__ip_local_out` (`tot_len`,
/// `ip_send_check`): the run's template with the ID, the length and the
/// checksum of both filled in.
#[inline]
fn write_ip_header(h: &mut [u8], f: &Flow, id: u16, len: usize) {
    h.copy_from_slice(&f.ip_template);
    let len = len.min(0xffff) as u16;
    h[2..4].copy_from_slice(&len.to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    let check = f.ip_sum.add_u16(len).add_u16(id).finish();
    h[10..12].copy_from_slice(&check.to_be_bytes());
}

/// Where a flow's IP IDs come from (`ip_select_ident_segs`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum IdSource {
    /// A connected socket's own counter (`inet_id`).
    Socket,
    /// 0: DF datagrams of a socket without a peer that may not fragment.
    Zero,
    /// The per-destination counters, reserved for the whole run at once.
    Bucket,
}

/// One run through the bypass, and what it sent, counted once at its end.
struct Run<'a> {
    /// The stack the run sends through (its buffer pool for the builds).
    stack: &'a Stack,
    ctx: XmitCtx<'a>,
    dev: &'a NetDevice,
    txq: &'a TxQueue,
    hh_len: usize,
    path: Path,
    /// The queue's `queue_mapping` (its index; 0 means none chosen).
    queue: u16,
    /// The device's offloads (read once per run).
    feats: Features,
    /// Datagrams that reached IP output.
    datagrams: u64,
    /// Frames offered beyond one per datagram (the fragments after the
    /// first; `IpExtOutPkts` counts every frame).
    extra_frames: u64,
    /// Fragments taken (`IpFragCreates`), datagrams fragmented whole
    /// (`IpFragOKs`) or not (`IpFragFails`).
    frag_creates: u64,
    frag_oks: u64,
    frag_fails: u64,
    /// IP octets (`IpExtOutOctets`).
    octets: u64,
    /// Frame bytes given to the driver (qdisc "sent").
    frame_bytes: u64,
    /// Frames and bytes the driver took (`tx_packets`, `tx_bytes`).
    tx_packets: u64,
    tx_bytes: u64,
    /// The frame the driver refused, to requeue.
    refused: Option<PacketBuf>,
    /// The last datagram failed (its frame dropped by a queueless device).
    failed: Option<SendError>,
}

impl<'a> Run<'a> {
    fn new(
        stack: &'a Stack,
        ctx: XmitCtx<'a>,
        dev: &'a NetDevice,
        txq: &'a TxQueue,
        hh_len: usize,
        path: Path,
    ) -> Run<'a> {
        Run {
            stack,
            ctx,
            dev,
            txq,
            hh_len,
            path,
            queue: 0,
            feats: dev.features(),
            datagrams: 0,
            extra_frames: 0,
            frag_creates: 0,
            frag_oks: 0,
            frag_fails: 0,
            octets: 0,
            frame_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            refused: None,
            failed: None,
        }
    }

    /// `validate_xmit_skb` and `xmit_one` for one frame of the bypass; false
    /// ends the run (the driver refused it, or stopped the queue).
    #[inline(always)]
    fn xmit(&mut self, driver: &mut dyn Driver, mut skb: PacketBuf, more: bool) -> bool {
        let (dev, txq) = (self.dev, self.txq);
        let len = skb.len();
        self.datagrams += 1;
        self.octets += (len - self.hh_len) as u64;
        self.frame_bytes += len as u64;
        finish_frame(&mut skb, self.feats);
        let st = xmit_one_uncounted(self.ctx, dev, driver, skb, more);
        if let TxStatus::Ok = st {
            self.tx_packets += 1;
            self.tx_bytes += len as u64;
        }
        if let TxStatus::Busy(p) = st {
            driver.flush();
            if self.path == Path::NoQueue {
                // noqueue_xmit: a busy driver means the frame is dropped.
                drop_frame(self.ctx, dev, p, DropReason::DevReady);
                self.failed = Some(SendError::NetDown);
            } else {
                // Requeued by `finish`; the queue's state is the driver's.
                self.refused = Some(p);
            }
            return false;
        }
        if txq.ctl().is_stopped() {
            if more {
                driver.flush();
            }
            return false;
        }
        true
    }

    /// The fragment train of one datagram (IP headers complete), as
    /// `ip_do_fragment`'s fast path hands it to `ip_finish_output2` and a
    /// queueless device's `dev_queue_xmit` takes it: each frame gets the
    /// link header `hh` and goes to the driver, `xmit_more` set while
    /// another follows (in this train, or after it when `more`). A stopped
    /// queue or a busy driver drops that fragment and the rest (the datagram
    /// fails, `ENETDOWN`); false ends the run. `ip_bytes` is the train's
    /// IP length (headers and data), counted as sent whatever happens below.
    fn xmit_train(
        &mut self,
        driver: &mut dyn Driver,
        frags: &mut Vec<PacketBuf>,
        (hh, ip_bytes): (&HhCache, usize),
        more: bool,
    ) -> bool {
        let (dev, txq, n) = (self.dev, self.txq, frags.len());
        self.datagrams += 1;
        self.extra_frames += n as u64 - 1;
        self.octets += ip_bytes as u64;
        let mut it = frags.drain(..).enumerate();
        while let Some((i, mut f)) = it.next() {
            if txq.ctl().is_stopped() {
                if i > 0 {
                    // The fragment before went with `xmit_more`.
                    driver.flush();
                }
                self.fail_train(std::iter::once(f).chain(it.map(|(_, f)| f)));
                return false;
            }
            push_link_header(&mut f, hh, self.hh_len);
            f.meta.queue_mapping = self.queue + 1;
            finish_frame(&mut f, self.feats);
            let len = f.len();
            let next = i + 1 < n || more;
            match xmit_one_uncounted(self.ctx, dev, driver, f, next) {
                TxStatus::Ok => {
                    (self.tx_packets, self.tx_bytes) =
                        (self.tx_packets + 1, self.tx_bytes + len as u64)
                }
                TxStatus::Error => {}
                TxStatus::Busy(p) => {
                    driver.flush();
                    self.fail_train(std::iter::once(p).chain(it.map(|(_, f)| f)));
                    return false;
                }
            }
            self.frag_creates += 1;
        }
        self.frag_oks += 1;
        if txq.ctl().is_stopped() {
            if more {
                driver.flush();
            }
            return false;
        }
        true
    }

    /// The refused fragment and those after it, freed (`kfree_skb_list`):
    /// the datagram fails with `ENETDOWN`, as `noqueue`'s refusal reports.
    fn fail_train(&mut self, rest: impl Iterator<Item = PacketBuf>) {
        for f in rest {
            drop_frame(self.ctx, self.dev, f, DropReason::DevReady);
        }
        self.frag_fails += 1;
        self.failed = Some(SendError::NetDown);
    }

    /// The counters of `ip_output`, `ip_do_fragment`, `ip_finish_output2`
    /// and `udp_send_skb`, the qdisc's "sent", the requeue of a refused
    /// frame, and the end of the queue run (or running on, for packets
    /// others queued meanwhile). Returns the error of the datagram that
    /// failed.
    fn finish(mut self, stack: &Stack) -> Option<SendError> {
        let (ctx, dev, txq) = (self.ctx, self.dev, self.txq);
        let ctr = &stack.counters;
        let ok = self.datagrams - u64::from(self.failed.is_some());
        ctr.add(Mib::IpOutRequests, self.datagrams);
        ctr.add(Mib::IpExtOutPkts, self.datagrams + self.extra_frames);
        ctr.add(Mib::IpExtOutOctets, self.octets);
        ctr.add(Mib::UdpOutDatagrams, ok);
        if self.extra_frames != 0 {
            ctr.add(Mib::IpFragCreates, self.frag_creates);
            ctr.add(Mib::IpFragOKs, self.frag_oks);
            ctr.add(Mib::IpFragFails, self.frag_fails);
        }
        dev.stats.add(DevCounter::TxPackets, self.tx_packets);
        dev.stats.add(DevCounter::TxBytes, self.tx_bytes);
        if self.path == Path::NoQueue {
            return self.failed;
        }
        let mut slot = txq.q.lock();
        let st = slot.qdisc.stats_mut();
        st.packets += self.datagrams;
        st.bytes += self.frame_bytes;
        let all_sent = self.refused.is_none() && !txq.ctl().is_stopped();
        if let Some(p) = self.refused.take() {
            let mut one = std::mem::take(&mut slot.batch);
            one.push_back(p);
            requeue(&mut slot, &mut one);
            slot.batch = one;
            txq.ctl().schedule();
        }
        end_bypass(ctx, dev, txq, slot, all_sent);
        None
    }
}
