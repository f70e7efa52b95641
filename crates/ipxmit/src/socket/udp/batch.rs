//! `sendmmsg` for UDP: many datagrams in one call, down the one output path.
//!
//! Stands for `__sys_sendmmsg()` (`net/socket.c`) looping over `udp_sendmsg()`
//! with its lockless `ip_make_skb` path (`net/ipv4/udp.c`).
//!
//! The messages are sent in runs: the longest stretch of messages to one
//! destination with the same flags. A run sets up once what the kernel sets
//! up per message — the route and source address (`ip_route_output_flow`),
//! the cork (`ip_setup_cork`: fragment size, TTL, TOS, PMTU mode), the IP
//! header template and the pseudo-header sum, the IP IDs (drawn from the
//! per-destination counter in one step), the send-budget charge (taken in one
//! step) and the clock reading — and opens one
//! [`OutputBatch`](crate::ipv4::output::OutputBatch) that takes each datagram
//! down the same layers a single `send` takes it: LOCAL_OUT and POST_ROUTING
//! hooks per datagram, fragmentation, the neighbour's cached header, the
//! qdisc (bypassed when empty, else enqueued and run) and the driver with
//! `xmit_more` set while another datagram follows. What a run cut short did
//! not use (IDs, charge) is given back, so the datagrams after it see what
//! they would have seen one by one.
//!
//! Each datagram is built in one pass (`build.rs`): one that fits a frame as
//! one buffer, one over the MTU as the buffers the cork would have made,
//! chained, and a corked one — messages of the batch with `MSG_MORE` of
//! their own ([`BatchMsg::flags`]) — the same way. Its frames, return value,
//! error-queue entries, counters and send-budget charge are those of
//! `sendmsg` one by one (`crates/ipxmit-drivers/tests/send_batch.rs`
//! compares them, the kernel-differential suite compares the frames with the
//! kernel's `sendmmsg`).
//!
//! A message the one-pass build does not take goes through
//! [`UdpSocket::sendmsg`] (the cork) on its own, in order, and is counted
//! under the reason in the stack's [`BatchPath`] counters: a datagram
//! pending from an earlier call or `UDP_CORK`, IP options, UDP GSO,
//! `SO_NO_CHECK`, a flag other than `MSG_DONTWAIT`/`MSG_MORE`, a datagram
//! the one-pass build does not cut, or a send budget that would make it wait
//! or fail.

use std::cell::{Cell, RefCell};
use std::net::SocketAddrV4;

use super::build::{budget_allows, BufShape, Datagram, PlanKey, PlanMemo};
use super::{flow_hash, UdpCount, UdpSocket, UDP_HLEN};
use crate::buf::{kernel_truesize, IpCbFlags, Meta, SendBudget, SockMeta};
use crate::error::SendError;
use crate::ipv4::output::OutputBatch;
use crate::socket::cork::{
    cork_fragsize, datagram_df, write_header_bytes, CorkParams, SKB_MAX_ALLOC,
};
use crate::socket::inet::Hold;
use crate::socket::{Cmsg, MsgFlags};
use crate::stats::fate::{self, MsgFate};
use crate::stats::BatchPath;
use crate::time::Instant;
use crate::wire::checksum::{pseudo_header_v4, Csum};
use crate::wire::ipv4::{header_sum_ne, Ipv4Packet, HEADER_LEN};

/// Most datagrams one run sends (the kernel's `UIO_MAXIOV`-bounded
/// `sendmmsg` batches are usually this size).
pub const BATCH_MAX: usize = 64;

/// One message of [`UdpSocket::send_batch`] (a `struct mmsghdr`): the data,
/// the destination (`None` for the connected peer), the message's own
/// flags and its departure time (`SCM_TXTIME`).
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
    /// The message's `SCM_TXTIME` (its control message): the datagram's
    /// earliest departure time; refused (`EINVAL`) without `SO_TXTIME`.
    /// Read, as by `sendmsg`, only on a message that opens a datagram.
    pub txtime: Option<Instant>,
}

impl<'a> BatchMsg<'a> {
    /// A message of `data` to `dest` with no flags of its own.
    pub const fn new(data: &'a [u8], dest: Option<SocketAddrV4>) -> BatchMsg<'a> {
        BatchMsg {
            data,
            dest,
            flags: MsgFlags::NONE,
            txtime: None,
        }
    }

    /// This message with the departure time `t` (`SCM_TXTIME`).
    pub const fn at(self, t: Instant) -> BatchMsg<'a> {
        BatchMsg {
            txtime: Some(t),
            ..self
        }
    }

    /// The message's control messages.
    fn cmsg(&self) -> Cmsg {
        Cmsg {
            txtime: self.txtime,
        }
    }

    /// Gives the datagram it opens, a fresh buffer (`tstamp` 0: none),
    /// its departure time, if it has one.
    #[inline(always)]
    fn set_tstamp(&self, m: &mut Meta) {
        if let Some(t) = self.txtime {
            m.tstamp = t.as_nanos();
        }
    }
}

/// What the datagrams of a run share: the cork `ip_make_skb` sets up for
/// each of them (`ip_setup_cork`), set up once for the run, and what
/// follows from it — the UDP ports and flow hash, the IP header template,
/// the pseudo-header sum, where the IP IDs come from.
pub(super) struct BatchCork {
    pub(super) params: CorkParams,
    pub(super) dest: Option<SocketAddrV4>,
    pub(super) dport: u16,
    /// Largest payload that fits one frame (`fragsize` less the headers).
    pub(super) max_payload: usize,
    /// `LL_RESERVED_SPACE` + 15 + trailer: what `__ip_append_data` adds to
    /// a buffer's `fraglen`.
    pub(super) alloc_extra: usize,
    /// The device finishes the checksum (`CHECKSUM_PARTIAL`).
    pub(super) partial: bool,
    /// The metadata every datagram of the run carries: PMTU flags,
    /// priority, mark, flow hash, socket.
    meta: DatagramMeta,
    /// The IP header every datagram of the run gets (`__ip_make_skb`), ID,
    /// total length and checksum zero (`ip_local_out` fills the last two).
    ip_template: [u8; HEADER_LEN],
    /// The template's [`header_sum_ne`] without the ID.
    ip_template_sum: u32,
    /// Where the datagrams' IDs come from (`ip_select_ident_segs`).
    pub(super) ids: IdSource,
    /// The socket's plan memo, lent for a run that may fragment.
    pub(super) plan_memo: RefCell<Option<Box<PlanMemo>>>,
    /// The pseudo-header sum without the length.
    pub(super) pseudo: Csum,
    /// The last allocation size whose truesize was computed, and that
    /// truesize (batches are mostly of one size).
    truesize_memo: Cell<(usize, usize)>,
    /// The allocation sizes of the last fragmenting datagram's first and
    /// last buffers, and their shapes (a run's datagrams are mostly alike).
    pub(super) shape_memo: Cell<Option<([usize; 2], [BufShape; 2])>>,
}

/// The metadata `__ip_make_skb` and `udp_send_skb` give every datagram of a
/// run.
#[derive(Clone, Copy, Debug)]
struct DatagramMeta {
    /// The control-block flags of a fresh buffer as the datagram's: may be
    /// fragmented locally (`skb->ignore_df`), the route's type flags and
    /// `IP_MULTICAST_LOOP`, a UDP datagram its socket sums — set up once
    /// for the run, stored with one write per datagram.
    ip_flags: IpCbFlags,
    /// The device's MTU, not the path's, bounds it (`!ip_sk_use_pmtu`).
    use_dev_mtu: bool,
    priority: u32,
    mark: u32,
    hash: u32,
    sk: SockMeta,
}

impl BatchCork {
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

    /// The allocation size of the one buffer of a datagram of `len` bytes
    /// of payload that fits one frame.
    #[inline(always)]
    pub(super) fn fitting_alloc(&self, len: usize) -> usize {
        HEADER_LEN + UDP_HLEN + len + self.alloc_extra
    }

    /// The header of `__ip_make_skb`: the run's template with the ID `id`
    /// (`ip_local_out` completes the length and checksum). Returns its
    /// [`Meta::hdr_sum`].
    #[inline(always)]
    pub(super) fn write_ip_header(&self, h: &mut [u8], id: u16) -> u32 {
        h.copy_from_slice(&self.ip_template);
        Ipv4Packet::new_unchecked(h).set_ident(id);
        self.ip_template_sum + u32::from(id.to_be())
    }

    /// Numbers the datagram that opens with the run's `i`-th message
    /// when the call tracks fates (the run's key is its first message's).
    #[inline(always)]
    pub(super) fn set_tskey(&self, m: &mut Meta, i: usize) {
        if self.params.tskey != 0 {
            m.tskey = self.params.tskey + i as u32;
            fate::made(m.tskey);
        }
    }

    /// The metadata of a fresh buffer (its fields the defaults) as
    /// `__ip_make_skb` and `udp_send_skb` leave the datagram's.
    #[inline(always)]
    pub(super) fn datagram_meta(&self, m: &mut Meta) {
        let d = &self.meta;
        m.ip_flags = d.ip_flags;
        m.use_dev_mtu = d.use_dev_mtu;
        m.priority = d.priority;
        m.mark = d.mark;
        m.hash = d.hash;
        m.sk = d.sk;
    }
}

/// Where a run's IP IDs come from (`ip_select_ident_segs`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum IdSource {
    /// A connected socket's own counter (`inet_id`).
    Socket,
    /// 0: DF datagrams of a socket without a peer that may not fragment.
    Zero,
    /// The per-destination counters, reserved for the whole run at once.
    Bucket,
}

/// How a run ended.
enum RunEnd {
    /// It sent this many messages; the next one starts a new run.
    Sent(usize),
    /// It sent this many, then the next failed with this error.
    Failed(usize, SendError),
    /// The first message does not take the one-pass build, for this reason.
    Unbatched(BatchPath),
}

impl UdpSocket {
    /// Kernel: `__sys_sendmmsg()` over `udp_sendmsg()`. Sends the messages in
    /// order, each as [`UdpSocket::sendmsg`] would with `flags` and its own
    /// ([`BatchMsg::flags`]), and returns how many were sent. An error on the
    /// first message is returned; an error on a later one ends the call with
    /// the count so far (as the kernel does, the error itself is then not
    /// reported).
    pub fn send_batch(
        &mut self,
        msgs: &[BatchMsg<'_>],
        flags: MsgFlags,
    ) -> Result<usize, SendError> {
        match self.send_batch_keyed(msgs, flags, 0) {
            (0, Some(e)) => Err(e),
            (sent, _) => Ok(sent),
        }
    }

    /// [`UdpSocket::send_batch`] that also tells what became of each
    /// message: `fates[i]` is message `i`'s fate at the return of the call
    /// (see [`crate::stats::fate`] for what each means), the failed one's
    /// error included, which `sendmmsg` loses. At most `fates.len()` and
    /// [`fate::MAX_TRACKED`] messages are sent (`UIO_MAXIOV` caps the
    /// kernel's call too). Without this call nothing is tracked.
    pub fn send_batch_fates(
        &mut self,
        msgs: &[BatchMsg<'_>],
        flags: MsgFlags,
        fates: &mut [MsgFate],
    ) -> Result<usize, SendError> {
        let n = msgs.len().min(fates.len()).min(fate::MAX_TRACKED);
        let fates = &mut fates[..n];
        fates.fill(MsgFate::NotSent);
        let base = fate::begin(n);
        let (sent, err) = self.send_batch_keyed(&msgs[..n], flags, base);
        fate::end(fates);
        // The messages of a corked datagram share its fate (its key is
        // its first message's).
        for i in 1..sent.min(n) {
            if fates[i] == MsgFate::NotSent {
                fates[i] = fates[i - 1].clone();
            }
        }
        if let (Some(e), Some(f)) = (err.clone(), fates.get_mut(sent)) {
            *f = MsgFate::Failed(e);
        }
        match (sent, err) {
            (0, Some(e)) => Err(e),
            (sent, _) => Ok(sent),
        }
    }

    /// [`UdpSocket::send_batch`]'s loop, the datagrams keyed from `base`
    /// (0: not tracked): the count sent and the error that stopped the
    /// call, if one did.
    fn send_batch_keyed(
        &mut self,
        msgs: &[BatchMsg<'_>],
        flags: MsgFlags,
        base: u32,
    ) -> (usize, Option<SendError>) {
        let mut sent = 0;
        while sent < msgs.len() {
            if base != 0 {
                self.inet.tskey = fate::key(base, sent);
            }
            // A pending error (an ICMP message's) fails the next message,
            // as each `udp_sendmsg` of `sendmmsg` checks it.
            let pending = self.inet.check_sock_error().err();
            let failed = match pending.map_or_else(
                || self.send_run(&msgs[sent..], flags),
                |e| RunEnd::Failed(0, e),
            ) {
                RunEnd::Sent(n) => {
                    sent += n;
                    continue;
                }
                RunEnd::Failed(n, e) => {
                    sent += n;
                    e
                }
                RunEnd::Unbatched(why) => {
                    self.inet.stack.counters.batch_path_add(why, 1);
                    let m = &msgs[sent];
                    match self.sendmsg_cmsg(m.data, m.dest, flags | m.flags, &m.cmsg()) {
                        Ok(_) => {
                            sent += 1;
                            continue;
                        }
                        Err(e) => e,
                    }
                }
            };
            self.inet.tskey = 0;
            return (sent, Some(failed));
        }
        self.inet.tskey = 0;
        (sent, None)
    }

    /// Sends the run `msgs` starts with (see the module documentation).
    #[inline(never)]
    fn send_run(&mut self, msgs: &[BatchMsg<'_>], flags: MsgFlags) -> RunEnd {
        let base = (flags | msgs[0].flags).without(MsgFlags::MORE);
        let cork = match self.batch_cork(&msgs[0], base) {
            Ok(Ok(c)) => c,
            Ok(Err(why)) => return RunEnd::Unbatched(why),
            Err(e) => return RunEnd::Failed(0, e),
        };
        let r = self.send_corked(&cork, msgs, (flags, base));
        // The route the cork borrowed goes back to the socket's cache.
        self.inet.give_back_route(cork.params.dst);
        r
    }

    /// [`UdpSocket::send_run`] once its cork is set up.
    fn send_corked(
        &mut self,
        cork: &BatchCork,
        msgs: &[BatchMsg<'_>],
        (flags, base): (MsgFlags, MsgFlags),
    ) -> RunEnd {
        if flags | msgs[0].flags == base && msgs[0].data.len() <= cork.max_payload {
            // Datagrams that fit one frame, the common case, on their own.
            let (n, charge) = self.precharge(cork, msgs);
            if n == 0 {
                return RunEnd::Unbatched(BatchPath::SendBuffer);
            }
            return self.run(cork, (n, charge), |this, out, ids| {
                this.send_fitting(cork, (&msgs[..n], charge), out, ids)
            });
        }
        // The socket's memo, lent to the cork for the run (made once, with
        // the socket's first such run).
        let mut memo = self.plan_memo.take().unwrap_or_default();
        memo.keep_for(PlanKey::of(cork, flags, base));
        *cork.plan_memo.borrow_mut() = Some(memo);
        let r = self.planned_run(cork, msgs, (flags, base));
        self.plan_memo = cork.plan_memo.take();
        r
    }

    /// A run whose first datagram does not fit one frame: its datagrams
    /// planned ([`UdpSocket::plan`]) and sent.
    fn planned_run(
        &mut self,
        cork: &BatchCork,
        msgs: &[BatchMsg<'_>],
        flags: (MsgFlags, MsgFlags),
    ) -> RunEnd {
        let mut plan = std::mem::take(&mut self.plan);
        let charge = match self.plan(cork, msgs, flags, &mut plan) {
            Ok(c) => c,
            Err(why) => {
                self.plan = plan;
                return RunEnd::Unbatched(why);
            }
        };
        let r = self.run(cork, (plan.len(), charge), |this, out, ids| {
            this.send_planned(cork, msgs, &plan, out, ids)
        });
        self.plan = plan;
        r
    }

    /// What every run does around its datagrams: the time read once, the
    /// IDs of its `n` datagrams reserved at once (and the unused given
    /// back), the send-budget charge `charge` taken beforehand (and the
    /// unused released), the budget releases of buffers freed meanwhile
    /// gathered, the output batch begun and finished, the UDP counters
    /// added once. `body` sends the datagrams and returns how many messages
    /// were sent, how many datagrams got an ID, the charge their buffers
    /// took, and the error of the one that failed.
    fn run(
        &mut self,
        cork: &BatchCork,
        (n, charge): (usize, usize),
        body: impl FnOnce(&mut Self, &mut OutputBatch<'_>, RunIds) -> RunDone,
    ) -> RunEnd {
        // The stack borrowed for the call, not counted: an `Arc` clone and
        // drop here wrote, at every batch, the one line every thread
        // sending through the stack shares (the kernel's `sock_net()` is a
        // plain pointer too). SAFETY: the socket holds `inet.stack` for its
        // whole life and nothing replaces it; `self` outlives this call.
        let stack: &crate::Stack = unsafe { &*std::sync::Arc::as_ptr(&self.inet.stack) };
        let t = stack.time_scope();
        let p = &cork.params;
        let reserved = (cork.ids == IdSource::Bucket).then(|| {
            let now = || stack.now().as_nanos();
            let key = (p.daddr, p.saddr, p.protocol);
            stack.idents.reserve_run(key, n as u32, now)
        });
        let ids = match cork.ids {
            IdSource::Bucket => RunIds {
                first: reserved.map_or(0, |r| r.first as u16),
                step: 1,
            },
            IdSource::Socket => RunIds {
                first: self.inet.inet_id.wrapping_add(1),
                step: 1,
            },
            IdSource::Zero => RunIds { first: 0, step: 0 },
        };
        let mut out = OutputBatch::begin(stack, &p.dst, p.daddr);
        let done = {
            let _gathered = SendBudget::gather_releases(&self.inet.budget);
            body(self, &mut out, ids)
        };
        if cork.ids == IdSource::Socket {
            // The socket's own counter moved on by the datagrams numbered.
            let n = done.numbered as u16;
            self.inet.inet_id = self.inet.inet_id.wrapping_add(n);
        }
        drop(t);
        out.finish();
        self.inet.budget.release_unused(charge - done.charged);
        if let Some(r) = reserved {
            stack.idents.give_back(r, done.numbered as u32);
        }
        done.count.settle(stack);
        stack
            .counters
            .batch_path_add(BatchPath::OnePass, done.sent as u64);
        match done.failed {
            None => RunEnd::Sent(done.sent),
            Some(e) => RunEnd::Failed(done.sent, e),
        }
    }

    /// The datagrams of a run that fit one frame each, `charge` their
    /// buffers' truesize as [`UdpSocket::precharge`] charged it.
    fn send_fitting(
        &mut self,
        cork: &BatchCork,
        (msgs, charge): (&[BatchMsg<'_>], usize),
        out: &mut OutputBatch<'_>,
        ids: RunIds,
    ) -> RunDone {
        // SAFETY: as in `run`: the socket's stack, held for its life.
        let stack: &crate::Stack = unsafe { &*std::sync::Arc::as_ptr(&self.inet.stack) };
        let mut done = RunDone::default();
        let n = msgs.len();
        for (i, m) in msgs.iter().enumerate() {
            let id = ids.nth(i);
            let mut skb = self.build_one(stack, cork, m.data, id);
            m.set_tstamp(&mut skb.meta);
            cork.set_tskey(&mut skb.meta, i);
            done.numbered += 1;
            match out.send_skb(skb, i + 1 < n) {
                Ok(()) => done.sent_one(1),
                Err(e) => {
                    if !done.failed(self, e, 1) {
                        break;
                    }
                }
            }
        }
        // Each buffer took the charge precharged for its message; a run
        // that ended early took that of the messages it built.
        done.charged = if done.numbered == n {
            charge
        } else {
            msgs[..done.numbered]
                .iter()
                .map(|m| cork.truesize(cork.fitting_alloc(m.data.len())))
                .sum()
        };
        done
    }

    /// The planned datagrams of a run (`plan`, from the start of `msgs`):
    /// each built in one pass, one buffer or chained buffers.
    fn send_planned(
        &mut self,
        cork: &BatchCork,
        msgs: &[BatchMsg<'_>],
        plan: &[Datagram],
        out: &mut OutputBatch<'_>,
        ids: RunIds,
    ) -> RunDone {
        // SAFETY: as in `run`: the socket's stack, held for its life.
        let stack: &crate::Stack = unsafe { &*std::sync::Arc::as_ptr(&self.inet.stack) };
        let mut done = RunDone::default();
        let mut at = 0;
        for (i, d) in plan.iter().enumerate() {
            let id = ids.nth(i);
            let group = &msgs[at..at + d.msgs];
            let mut skb = match &d.layout {
                None => self.build_one(stack, cork, group[0].data, id),
                Some((l, sizes)) => {
                    let chain = out.chain_vec();
                    self.build_whole(stack, cork, (l, *sizes), (group, d.memo), id, chain)
                }
            };
            // The cork's departure time: the first message's.
            group[0].set_tstamp(&mut skb.meta);
            cork.set_tskey(&mut skb.meta, at);
            done.charged += d.charge;
            done.numbered += 1;
            at += d.msgs;
            match out.send_skb(skb, i + 1 < plan.len()) {
                Ok(()) => done.sent_one(d.msgs),
                Err(e) => {
                    if !done.failed(self, e, d.msgs) {
                        break;
                    }
                }
            }
        }
        done
    }

    /// The run of datagrams that fit one frame: the first messages (at most
    /// [`BATCH_MAX`]) to the run's destination with the first's flags that
    /// fit one frame and pass `sock_alloc_send_skb`'s check (`sk_wmem_alloc
    /// < sk_sndbuf`) with every earlier one of them still charged; returns
    /// how many and their buffers' truesize, charged now in one step (see
    /// [`UdpSocket::plan`] for why that is exact).
    ///
    /// Not inlined: its loop keeps its values in registers on its own.
    #[inline(never)]
    fn precharge(&self, c: &BatchCork, msgs: &[BatchMsg<'_>]) -> (usize, usize) {
        let b = &self.inet.budget;
        // `sk_wmem_alloc < sk_sndbuf` with `sum` more charged.
        let room = b.limit().saturating_sub(b.allocated());
        let (mut sum, mut n) = (0, 0);
        // The last length seen and its buffer's truesize, in registers
        // (a run's messages are mostly of one length).
        let (mut len, mut truesize) = (usize::MAX, 0);
        for m in &msgs[..msgs.len().min(BATCH_MAX)] {
            if m.dest != c.dest
                || m.flags != msgs[0].flags
                || m.data.len() > c.max_payload
                || !self.cmsg_ok(m)
                || sum >= room
            {
                break;
            }
            if m.data.len() != len {
                len = m.data.len();
                truesize = c.truesize(c.fitting_alloc(len));
            }
            sum += truesize;
            n += 1;
        }
        SendBudget::precharge(b, sum);
        (n, sum)
    }

    /// The run: the datagrams (at most [`BATCH_MAX`] messages) from the
    /// start of `msgs` that the one-pass build takes
    /// ([`UdpSocket::datagram`]) and that pass the send-budget checks with
    /// every earlier one of them still charged: `sock_alloc_send_skb`'s
    /// (`sk_wmem_alloc < sk_sndbuf`) for a first buffer, `__ip_append_data`'s
    /// (`< 2 * sk_sndbuf`) for the others. Fills `plan`; returns their
    /// buffers' truesize, charged now in one step, or why the first is not
    /// taken. Buffers freed meanwhile only make more room, so each would pass
    /// the checks at its own turn too; a run ends where the next would not,
    /// and `sendmsg` then decides (waiting, `EAGAIN` or `ENOBUFS`) as the
    /// kernel does.
    fn plan(
        &self,
        c: &BatchCork,
        msgs: &[BatchMsg<'_>],
        flags: (MsgFlags, MsgFlags),
        plan: &mut Vec<Datagram>,
    ) -> Result<usize, BatchPath> {
        plan.clear();
        let b = &self.inet.budget;
        let (start, limit) = (b.allocated(), b.limit());
        let (mut sum, mut at) = (0, 0);
        while at < msgs.len() && self.cmsg_ok(&msgs[at]) {
            let Some(d) = self.datagram(c, &msgs[at..], flags, plan).and(plan.last()) else {
                break;
            };
            let fits_budget = budget_allows(start.saturating_add(sum), limit, d.before_last);
            if at + d.msgs > BATCH_MAX.max(d.msgs) || !fits_budget {
                plan.pop();
                if at == 0 && !fits_budget {
                    return Err(BatchPath::SendBuffer);
                }
                break;
            }
            (sum, at) = (sum + d.charge, at + d.msgs);
        }
        if plan.is_empty() {
            return Err(BatchPath::Fragments);
        }
        SendBudget::precharge(b, sum);
        Ok(sum)
    }

    /// The once-per-run part: what the one-pass build needs of the socket
    /// and the message, the route and the cork. `Ok(Err(why))` sends the
    /// message through `sendmsg`; an error is the message's own (`sendmsg`
    /// fails there too, with nothing else done).
    fn batch_cork(
        &mut self,
        m: &BatchMsg<'_>,
        flags: MsgFlags,
    ) -> Result<Result<BatchCork, BatchPath>, SendError> {
        if let Err(why) = self.plain_send(m, flags) {
            return Ok(Err(why));
        }
        let (daddr, dport, connected) = match (m.dest, self.inet.peer) {
            (Some(d), _) if d.port() != 0 => (*d.ip(), d.port(), false),
            (None, Some(p)) => (*p.ip(), p.port(), true),
            _ => return Ok(Err(BatchPath::Invalid)),
        };
        let params = self
            .inet
            .cork_params_held(daddr, dport, connected, Hold::Lend)?;
        let dst = &params.dst;
        let alloc_extra = dst.dev.ll_reserved_space() + 15 + dst.trailer_len as usize;
        let fragsize = match cork_fragsize(&params) {
            Ok(f) if dst.header_len == 0 && f as usize + alloc_extra < SKB_MAX_ALLOC => f as usize,
            r => {
                // An error, a transform, or the paged layout of big linear
                // allocations: the route goes back unused.
                self.inet.give_back_route(params.dst);
                return r.map(|_| Err(BatchPath::Layout));
            }
        };
        Ok(Ok(self.cork_for(
            params,
            m.dest,
            dport,
            fragsize,
            alloc_extra,
        )))
    }

    /// The run's [`BatchCork`] from the cork's parameters.
    fn cork_for(
        &self,
        params: CorkParams,
        dest: Option<SocketAddrV4>,
        dport: u16,
        fragsize: usize,
        alloc_extra: usize,
    ) -> BatchCork {
        let sport = self.inet.local.port();
        let hash = flow_hash(params.saddr, params.daddr, sport, dport);
        // Fitting datagrams are at most the path MTU under WANT (the cork's
        // fragment size is the path MTU), so DF is the same for all of them.
        let df = datagram_df(&params, fragsize);
        let mut ip_template = [0u8; HEADER_LEN];
        write_header_bytes(&mut ip_template, &params, df, 0);
        let ids = if params.connected {
            IdSource::Socket
        } else if df && !params.pmtudisc.ignore_df() {
            IdSource::Zero
        } else {
            IdSource::Bucket
        };
        let mut ip_flags = IpCbFlags {
            ignore_df: params.pmtudisc.ignore_df(),
            // A run's socket sums its datagrams (`SO_NO_CHECK` takes
            // `sendmsg`).
            udp_dgram: true,
            ..IpCbFlags::default()
        };
        crate::socket::cork::set_route_flags(&mut ip_flags, params.kind, params.mc_loop);
        BatchCork {
            meta: DatagramMeta {
                ip_flags,
                use_dev_mtu: !params.pmtudisc.use_pmtu(),
                priority: params.priority,
                mark: params.mark,
                hash,
                sk: params.sk,
            },
            plan_memo: RefCell::new(None),
            truesize_memo: Cell::new((usize::MAX, 0)),
            shape_memo: Cell::new(None),
            ids,
            pseudo: pseudo_header_v4(params.saddr, params.daddr, 17, 0),
            ip_template_sum: header_sum_ne(&ip_template, false),
            ip_template,
            max_payload: fragsize - HEADER_LEN - UDP_HLEN,
            partial: params.dst.dev.features().can_csum(),
            params,
            dest,
            dport,
            alloc_extra,
        }
    }

    /// The socket and the flags ask for nothing but a plain datagram: no
    /// pending or corked datagram, no `SO_NO_CHECK`, GSO or IP options, no
    /// flag but `MSG_DONTWAIT`, a length `sendmsg` accepts; else why not.
    fn plain_send(&self, m: &BatchMsg<'_>, flags: MsgFlags) -> Result<(), BatchPath> {
        let o = &self.inet.opts;
        let why = if self.pending || o.cork {
            BatchPath::Pending
        } else if !o.options.is_empty() {
            BatchPath::Options
        } else if o.gso_size != 0 {
            BatchPath::Gso
        } else if o.no_check {
            BatchPath::NoCheck
        } else if flags.bits() & !MsgFlags::DONTWAIT.bits() != 0 {
            BatchPath::Flags
        } else if m.data.len() > 0xffff || !self.cmsg_ok(m) {
            BatchPath::Invalid
        } else {
            return Ok(());
        };
        Err(why)
    }

    /// The control messages of `m` pass `__sock_cmsg_send` (an
    /// `SCM_TXTIME` needs `SO_TXTIME`): a message whose do not ends a run
    /// and fails through `sendmsg`.
    #[inline(always)]
    fn cmsg_ok(&self, m: &BatchMsg<'_>) -> bool {
        m.txtime.is_none() || self.inet.opts.txtime.is_some()
    }
}

/// The IP IDs of a run's datagrams (`ip_select_ident_segs`): the `i`-th
/// gets `first + i * step` — consecutive from the socket's own counter or
/// from the per-destination counter's reservation, or all 0.
#[derive(Clone, Copy, Debug)]
struct RunIds {
    first: u16,
    step: u16,
}

impl RunIds {
    /// The ID of the run's `i`-th datagram.
    #[inline(always)]
    fn nth(self, i: usize) -> u16 {
        self.first.wrapping_add((i as u16).wrapping_mul(self.step))
    }
}

/// What a run's datagrams came to.
#[derive(Debug, Default)]
struct RunDone {
    /// Messages sent.
    sent: usize,
    /// Datagrams that got an IP ID (sent or failed on the way).
    numbered: usize,
    /// The charge of the buffers built.
    charged: usize,
    /// The error of the datagram that failed.
    failed: Option<SendError>,
    /// The UDP counters of the datagrams.
    count: UdpCount,
}

impl RunDone {
    /// A datagram of `msgs` messages sent (`udp_send_skb`'s
    /// `UdpOutDatagrams`).
    #[inline(always)]
    fn sent_one(&mut self, msgs: usize) {
        self.count.sent_one();
        self.sent += msgs;
    }

    /// Takes the error `e` of a datagram of `msgs` messages as
    /// `udp_send_skb` and `udp_sendmsg` do; false when it failed (the run
    /// ends there), true when it counts as sent (a drop for lack of
    /// buffers without `IP_RECVERR`).
    #[cold]
    fn failed(&mut self, sock: &UdpSocket, e: SendError, msgs: usize) -> bool {
        match self.count.sent(sock.inet.opts.recverr, Err(e)) {
            Ok(()) => {
                self.sent += msgs;
                true
            }
            Err(e) => {
                self.count.sendmsg_failed(&e);
                // The messages of a corked group before its last were
                // taken (appended) before the datagram failed.
                self.sent += msgs - 1;
                self.failed = Some(e);
                false
            }
        }
    }
}
