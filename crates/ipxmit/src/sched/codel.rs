//! CoDel, the controlled-delay AQM (RFC 8289), as the kernel runs it, and
//! the `codel` qdisc on it.
//!
//! Stands for `include/net/codel.h`, `include/net/codel_impl.h` and
//! `net/sched/sch_codel.c`.
//!
//! # Algorithm
//!
//! Time is counted in units of 1024 ns (`codel_time_t`, wrapping `u32`).
//! Every packet is stamped when it is queued; at dequeue its sojourn time
//! (`ldelay`) is now minus that stamp.
//!
//! - **Should it drop?** Not while the sojourn time is below `target` or
//!   the queue holds at most one MTU (`backlog <= mtu`): then the
//!   "above" clock is cleared. The first time it is above, the clock is
//!   armed for `now + interval`; once that has passed with the delay still
//!   above, dropping is allowed.
//! - **Dropping state.** Entered when dropping is allowed: the packet is
//!   dropped (or, with `ecn` and an ECN-capable packet, marked CE and
//!   sent) and the next drop is scheduled by the control law `drop_next =
//!   t + interval / sqrt(count)`. `count` restarts at 1, unless the state
//!   was left less than 16 intervals ago, when it resumes from the drops
//!   made then (`count - lastcount`). While in the state, each time
//!   `drop_next` comes the packet is dropped, `count` grows by one and the
//!   next drop comes sooner (several in one dequeue if the schedule is
//!   behind). The state is left as soon as a packet's delay is below
//!   `target` (or the queue is short).
//! - `1/sqrt(count)` is kept as a 16-bit fixed-point reciprocal updated
//!   by one Newton step per increment of `count` (`rec_inv_sqrt`).
//! - With `ce_threshold`, a packet whose delay is above it is marked CE
//!   whether or not CoDel drops (optionally only packets whose DS field,
//!   masked, equals a selector).
//!
//! The `codel` qdisc is one FIFO of at most `limit` packets (beyond it a
//! packet is dropped at enqueue, `drop_overlimit`) with CoDel at its head.

use std::collections::VecDeque;
use std::fmt::Write as _;

use super::{Dequeued, NetXmit, OptValue, Qdisc, QdiscStats, ToFree};
use crate::buf::PacketBuf;
use crate::stats::DropReason;
use crate::time::Instant;
use crate::units::format_time_us;
use crate::wire::ipv4::{send_check, Ipv4Packet};

/// `CODEL_SHIFT`: a CoDel time unit is 2^10 ns.
pub const CODEL_SHIFT: u32 = 10;

/// `CODEL_DISABLED_THRESHOLD`: no `ce_threshold`.
pub const CODEL_DISABLED_THRESHOLD: u32 = i32::MAX as u32;

/// Bits of the reciprocal square root (`REC_INV_SQRT_BITS`).
const REC_INV_SQRT_BITS: u32 = 16;
/// `REC_INV_SQRT_SHIFT`.
const REC_INV_SQRT_SHIFT: u32 = 32 - REC_INV_SQRT_BITS;

/// A time in CoDel units (`codel_get_time`).
pub fn codel_time(now: Instant) -> u32 {
    (now.as_nanos() >> CODEL_SHIFT) as u32
}

/// A duration in CoDel units, from microseconds (`(us * NSEC_PER_USEC) >>
/// CODEL_SHIFT`, as `codel_change` converts tc's values).
pub fn us_to_codel(us: u32) -> u32 {
    ((u64::from(us) * 1000) >> CODEL_SHIFT) as u32
}

/// A duration in CoDel units as microseconds (`codel_time_to_us`).
pub fn codel_to_us(t: u32) -> u32 {
    ((u64::from(t) << CODEL_SHIFT) / 1000) as u32
}

/// `a` after `b`, modulo the wrap (`codel_time_after`).
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// `a` after or equal to `b` (`codel_time_after_eq`).
fn after_eq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// `struct codel_params`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodelParams {
    /// Acceptable standing delay, CoDel units.
    pub target: u32,
    /// Delay above which packets are CE-marked, CoDel units.
    pub ce_threshold: u32,
    /// Width of the moving window, CoDel units.
    pub interval: u32,
    /// A queue of at most this many bytes is never dropped from.
    pub mtu: u32,
    /// Mark ECN-capable packets instead of dropping them.
    pub ecn: bool,
    /// `ce_threshold` applies to packets whose DS field & `ce_threshold_mask`
    /// equals this (with a non-zero mask).
    pub ce_threshold_selector: u8,
    /// See `ce_threshold_selector`.
    pub ce_threshold_mask: u8,
}

impl CodelParams {
    /// Kernel: `codel_params_init()`: target 5 ms, interval 100 ms, no
    /// `ce_threshold`, no ECN, for a device whose `psched_mtu` is `mtu`.
    pub fn new(mtu: u32) -> CodelParams {
        CodelParams {
            target: us_to_codel(5_000),
            ce_threshold: CODEL_DISABLED_THRESHOLD,
            interval: us_to_codel(100_000),
            mtu,
            ecn: false,
            ce_threshold_selector: 0,
            ce_threshold_mask: 0,
        }
    }
}

/// `struct codel_vars`: the state of one CoDel instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodelVars {
    /// Drops (or marks) since entering the dropping state.
    pub count: u32,
    /// `count` when the dropping state was last entered.
    pub lastcount: u32,
    /// In the dropping state.
    pub dropping: bool,
    /// `1/sqrt(count)` as a 0.16 fixed-point number.
    pub rec_inv_sqrt: u16,
    /// When the delay may be declared persistently above target (0: not).
    pub first_above_time: u32,
    /// When the next drop is due.
    pub drop_next: u32,
    /// The sojourn time of the last packet looked at.
    pub ldelay: u32,
}

/// `struct codel_stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodelStats {
    /// The largest packet seen.
    pub maxpacket: u32,
    /// Packets dropped by CoDel and not yet reported to the parents.
    pub drop_count: u32,
    /// Their bytes.
    pub drop_len: u32,
    /// Packets CE-marked instead of dropped.
    pub ecn_mark: u32,
    /// Packets CE-marked above `ce_threshold`.
    pub ce_mark: u32,
}

/// What CoDel dequeues from: timestamped packets (the stamp in CoDel
/// units), and how a dropped one is freed.
pub trait CodelQueue {
    /// The head packet and its enqueue stamp, taken off the queue.
    fn dequeue(&mut self) -> Option<(PacketBuf, u32)>;
    /// Frees a packet CoDel dropped (and counts it).
    fn drop_packet(&mut self, pkt: PacketBuf);
    /// Bytes still queued.
    fn backlog(&self) -> u32;
}

/// Kernel: `codel_Newton_step()`: one Newton iteration of `1/sqrt(count)`.
fn newton_step(v: &mut CodelVars) {
    let invsqrt = u32::from(v.rec_inv_sqrt) << REC_INV_SQRT_SHIFT;
    let invsqrt2 = ((u64::from(invsqrt) * u64::from(invsqrt)) >> 32) as u32;
    let mut val = (3u64 << 32).wrapping_sub(u64::from(v.count) * u64::from(invsqrt2));
    val >>= 2;
    val = (val.wrapping_mul(u64::from(invsqrt))) >> (32 - 2 + 1);
    v.rec_inv_sqrt = (val >> REC_INV_SQRT_SHIFT) as u16;
}

/// Kernel: `codel_control_law()`: `t + interval / sqrt(count)`.
fn control_law(t: u32, interval: u32, rec_inv_sqrt: u16) -> u32 {
    let scale = u64::from(rec_inv_sqrt) << REC_INV_SQRT_SHIFT;
    t.wrapping_add(((u64::from(interval) * scale) >> 32) as u32)
}

/// One CoDel instance: its parameters are the caller's (shared by the
/// flows of `fq_codel`).
pub struct Codel<'a> {
    /// Parameters.
    pub params: &'a CodelParams,
    /// State.
    pub vars: &'a mut CodelVars,
    /// Statistics.
    pub stats: &'a mut CodelStats,
}

impl Codel<'_> {
    /// Kernel: `codel_should_drop()` for `pkt` (stamped `stamp`), `None`
    /// for an empty queue.
    fn should_drop(&mut self, pkt: Option<&(PacketBuf, u32)>, backlog: u32, now: u32) -> bool {
        let Some((p, stamp)) = pkt else {
            self.vars.first_above_time = 0;
            return false;
        };
        let len = p.len() as u32;
        self.vars.ldelay = now.wrapping_sub(*stamp);
        self.stats.maxpacket = self.stats.maxpacket.max(len);
        if !after_eq(self.vars.ldelay, self.params.target) || backlog <= self.params.mtu {
            self.vars.first_above_time = 0;
            return false;
        }
        if self.vars.first_above_time == 0 {
            self.vars.first_above_time = now.wrapping_add(self.params.interval);
            false
        } else {
            after(now, self.vars.first_above_time)
        }
    }

    /// Drops `pkt` (counted in `drop_count`/`drop_len`) and takes the next.
    fn drop_and_next<Q: CodelQueue>(
        &mut self,
        q: &mut Q,
        pkt: PacketBuf,
    ) -> Option<(PacketBuf, u32)> {
        self.stats.drop_len += pkt.len() as u32;
        q.drop_packet(pkt);
        self.stats.drop_count += 1;
        q.dequeue()
    }

    /// Kernel: `codel_dequeue()`. The next packet to send from `q`, at
    /// `now`, after what CoDel drops. See the module documentation.
    pub fn dequeue<Q: CodelQueue>(&mut self, q: &mut Q, now: Instant) -> Option<PacketBuf> {
        let mut item = q.dequeue();
        if item.is_none() {
            self.vars.dropping = false;
            return None;
        }
        let now = codel_time(now);
        let drop = self.should_drop(item.as_ref(), q.backlog(), now);
        if self.vars.dropping {
            if !drop {
                self.vars.dropping = false;
            } else {
                item = self.drop_schedule(q, item, now);
            }
        } else if drop {
            item = self.enter_dropping(q, item, now);
        }
        let (mut pkt, _) = item?;
        if after(self.vars.ldelay, self.params.ce_threshold)
            && self.ce_selected(&pkt)
            && set_ce(&mut pkt)
        {
            self.stats.ce_mark += 1;
        }
        Some(pkt)
    }

    /// The dropping state's schedule: every drop that is due now.
    fn drop_schedule<Q: CodelQueue>(
        &mut self,
        q: &mut Q,
        mut item: Option<(PacketBuf, u32)>,
        now: u32,
    ) -> Option<(PacketBuf, u32)> {
        while self.vars.dropping && after_eq(now, self.vars.drop_next) {
            let (mut pkt, stamp) = item?;
            self.vars.count = self.vars.count.wrapping_add(1);
            newton_step(self.vars);
            if self.params.ecn && set_ce(&mut pkt) {
                self.stats.ecn_mark += 1;
                self.vars.drop_next = control_law(
                    self.vars.drop_next,
                    self.params.interval,
                    self.vars.rec_inv_sqrt,
                );
                return Some((pkt, stamp));
            }
            item = self.drop_and_next(q, pkt);
            if !self.should_drop(item.as_ref(), q.backlog(), now) {
                self.vars.dropping = false;
            } else {
                self.vars.drop_next = control_law(
                    self.vars.drop_next,
                    self.params.interval,
                    self.vars.rec_inv_sqrt,
                );
            }
        }
        item
    }

    /// Entering the dropping state: the head dropped (or marked), `count`
    /// restarted or resumed, the first drop scheduled.
    fn enter_dropping<Q: CodelQueue>(
        &mut self,
        q: &mut Q,
        item: Option<(PacketBuf, u32)>,
        now: u32,
    ) -> Option<(PacketBuf, u32)> {
        let (mut pkt, stamp) = item?;
        let item = if self.params.ecn && set_ce(&mut pkt) {
            self.stats.ecn_mark += 1;
            Some((pkt, stamp))
        } else {
            let next = self.drop_and_next(q, pkt);
            self.should_drop(next.as_ref(), q.backlog(), now);
            next
        };
        self.vars.dropping = true;
        let delta = self.vars.count.wrapping_sub(self.vars.lastcount);
        let since = now.wrapping_sub(self.vars.drop_next);
        if delta > 1 && !after_eq(since, self.params.interval.wrapping_mul(16)) {
            self.vars.count = delta;
            newton_step(self.vars);
        } else {
            self.vars.count = 1;
            self.vars.rec_inv_sqrt = (u32::MAX >> REC_INV_SQRT_SHIFT) as u16;
        }
        self.vars.lastcount = self.vars.count;
        self.vars.drop_next = control_law(now, self.params.interval, self.vars.rec_inv_sqrt);
        item
    }

    /// `ce_threshold_mask`/`selector`: is `pkt`'s DS field selected?
    fn ce_selected(&self, pkt: &PacketBuf) -> bool {
        if self.params.ce_threshold_mask == 0 {
            return true;
        }
        dsfield(pkt).is_some_and(|ds| {
            ds & self.params.ce_threshold_mask == self.params.ce_threshold_selector
        })
    }
}

/// The IPv4 DS field (`skb_get_dsfield`), `None` for a non-IPv4 packet.
fn dsfield(pkt: &PacketBuf) -> Option<u8> {
    let h = pkt.network_header();
    (pkt.meta.protocol == 0x0800 && h.len() >= 20 && h[0] >> 4 == 4)
        .then(|| Ipv4Packet::new_unchecked(h).tos())
}

/// Kernel: `INET_ECN_set_ce()`: an ECN-capable IPv4 packet gets CE (and
/// its checksum); true for those and for one already CE.
pub fn set_ce(pkt: &mut PacketBuf) -> bool {
    let Some(tos) = dsfield(pkt) else {
        return false;
    };
    match tos & 3 {
        0 => false,
        3 => true,
        _ => {
            let h = pkt.network_header_mut();
            Ipv4Packet::new_unchecked(&mut *h).set_ecn(3);
            send_check(h);
            true
        }
    }
}

/// The `codel` qdisc: a FIFO of `limit` packets with CoDel at its head.
#[derive(Debug)]
pub struct CodelQdisc {
    q: StampedFifo,
    limit: u32,
    params: CodelParams,
    vars: CodelVars,
    cstats: CodelStats,
    /// Packets refused at enqueue for the limit.
    drop_overlimit: u32,
}

/// A FIFO of stamped packets with the qdisc's counters (`sch->q`).
#[derive(Debug, Default)]
struct StampedFifo {
    q: VecDeque<(PacketBuf, u32)>,
    stats: QdiscStats,
    /// Packets CoDel dropped, to free after the operation.
    dropped: Vec<PacketBuf>,
}

impl CodelQueue for StampedFifo {
    fn dequeue(&mut self) -> Option<(PacketBuf, u32)> {
        let (p, t) = self.q.pop_front()?;
        self.stats.unqueued(p.len());
        Some((p, t))
    }

    fn drop_packet(&mut self, pkt: PacketBuf) {
        self.stats.drops += 1;
        self.dropped.push(pkt);
    }

    fn backlog(&self) -> u32 {
        u32::try_from(self.stats.backlog).unwrap_or(u32::MAX)
    }
}

impl CodelQdisc {
    /// Kernel: `codel_init()` and `codel_change()`: `limit` packets and
    /// `params`.
    pub fn new(limit: u32, params: CodelParams) -> CodelQdisc {
        CodelQdisc {
            q: StampedFifo {
                q: VecDeque::with_capacity(limit.min(super::fifo::PRESIZE_MAX as u32) as usize),
                stats: QdiscStats::default(),
                dropped: Vec::with_capacity(64),
            },
            limit,
            params,
            vars: CodelVars::default(),
            cstats: CodelStats::default(),
            drop_overlimit: 0,
        }
    }

    /// Kernel: `codel_change()`: `f` changes the limit and parameters,
    /// the state is kept; packets beyond a lowered limit are dropped from
    /// the head (counted as drops, freed with the next dequeue's).
    pub fn change_with(&mut self, f: impl FnOnce(&mut u32, &mut CodelParams)) {
        f(&mut self.limit, &mut self.params);
        while self.q.stats.qlen > u64::from(self.limit) {
            match self.q.dequeue() {
                Some((p, _)) => self.q.drop_packet(p),
                None => break,
            }
        }
    }

    /// The CoDel state (`tc -s`).
    pub fn xstats_vars(&self) -> &CodelVars {
        &self.vars
    }

    /// The CoDel state and statistics (`tc -s`).
    pub fn xstats(&self) -> (&CodelVars, &CodelStats, u32) {
        (&self.vars, &self.cstats, self.drop_overlimit)
    }
}

impl Qdisc for CodelQdisc {
    fn kind(&self) -> &'static str {
        "codel"
    }

    /// Kernel: `codel_qdisc_enqueue()`.
    fn enqueue(&mut self, pkt: PacketBuf, now: Instant, to_free: &mut ToFree) -> NetXmit {
        if self.q.stats.qlen < u64::from(self.limit) {
            self.q.stats.queued(pkt.len());
            self.q.q.push_back((pkt, codel_time(now)));
            return NetXmit::Success;
        }
        self.drop_overlimit += 1;
        self.q.stats.drops += 1;
        to_free.push(pkt, DropReason::QdiscOverlimit);
        NetXmit::Drop
    }

    /// Kernel: `codel_qdisc_dequeue()`.
    fn dequeue(&mut self, now: Instant) -> Dequeued {
        let mut c = Codel {
            params: &self.params,
            vars: &mut self.vars,
            stats: &mut self.cstats,
        };
        let pkt = c.dequeue(&mut self.q, now);
        // What CoDel dropped was counted; its parents would be told here
        // (`qdisc_tree_reduce_backlog`); a root has none.
        self.cstats.drop_count = 0;
        self.cstats.drop_len = 0;
        match pkt {
            Some(p) => {
                self.q.stats.sent(p.len());
                Dequeued::Packet(p)
            }
            None => Dequeued::Empty,
        }
    }

    fn peek(&self) -> Option<&PacketBuf> {
        self.q.q.front().map(|(p, _)| p)
    }

    fn reset(&mut self, to_free: &mut ToFree) {
        for (p, _) in self.q.q.drain(..) {
            to_free.push(p, DropReason::QueuePurge);
        }
        self.q.stats.backlog = 0;
        self.q.stats.qlen = 0;
        self.vars = CodelVars::default();
    }

    fn stats(&self) -> &QdiscStats {
        &self.q.stats
    }

    fn stats_mut(&mut self) -> &mut QdiscStats {
        &mut self.q.stats
    }

    fn take_dropped(&mut self, to_free: &mut ToFree) {
        for p in self.q.dropped.drain(..) {
            to_free.push(p, DropReason::QdiscCongested);
        }
    }

    /// tc's `codel_print_opt()`.
    fn params(&self) -> String {
        print_codel(self.limit, &self.params)
    }

    fn options(&self) -> Vec<(&'static str, OptValue)> {
        codel_options(self.limit, &self.params)
    }

    fn xstats(&self, now: Instant) -> Option<String> {
        Some(print_codel_xstats(
            &self.vars,
            &self.cstats,
            self.drop_overlimit,
            codel_time(now),
        ))
    }

    /// `TCQ_F_CAN_BYPASS` when the limit is at least one packet.
    fn can_bypass(&self) -> bool {
        self.limit >= 1
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// A CoDel duration as tc prints it (`sprint_time` of microseconds).
pub fn fmt_codel_time(t: u32) -> String {
    format_time_us(u64::from(codel_to_us(t)))
}

/// tc's `codel_print_opt()`: `limit 1000p target 5ms [ce_threshold T]
/// interval 100ms [ecn] `, each piece followed by a space.
fn print_codel(limit: u32, p: &CodelParams) -> String {
    let mut o = format!("limit {limit}p target {} ", fmt_codel_time(p.target));
    if p.ce_threshold != CODEL_DISABLED_THRESHOLD {
        let _ = write!(o, "ce_threshold {} ", fmt_codel_time(p.ce_threshold));
    }
    let _ = write!(o, "interval {} ", fmt_codel_time(p.interval));
    if p.ecn {
        o += "ecn ";
    }
    o
}

/// `tc -j`'s options of `codel` (times in microseconds as the kernel
/// dumps them: 5 ms is 4999 after the round trip through CoDel units).
fn codel_options(limit: u32, p: &CodelParams) -> Vec<(&'static str, OptValue)> {
    let mut o = vec![
        ("limit", OptValue::Num(u64::from(limit))),
        ("target", OptValue::Num(u64::from(codel_to_us(p.target)))),
    ];
    if p.ce_threshold != CODEL_DISABLED_THRESHOLD {
        o.push((
            "ce_threshold",
            OptValue::Num(u64::from(codel_to_us(p.ce_threshold))),
        ));
    }
    o.push((
        "interval",
        OptValue::Num(u64::from(codel_to_us(p.interval))),
    ));
    if p.ecn {
        o.push(("ecn", OptValue::Bool(true)));
    }
    o
}

/// `drop_next` as the kernel reports it: the signed time to it, in
/// microseconds, while dropping; else 0.
fn drop_next_us(v: &CodelVars, now: u32) -> i64 {
    if !v.dropping {
        return 0;
    }
    let d = v.drop_next.wrapping_sub(now) as i32;
    (i64::from(d) << CODEL_SHIFT) / 1000
}

/// tc's `codel_print_xstats()` (two lines).
fn print_codel_xstats(v: &CodelVars, s: &CodelStats, drop_overlimit: u32, now: u32) -> String {
    let mut o = format!(
        "  count {} lastcount {} ldelay {}",
        v.count,
        v.lastcount,
        fmt_codel_time(v.ldelay)
    );
    if v.dropping {
        o += " dropping";
    }
    let dn = drop_next_us(v, now);
    let sign = if dn < 0 { "-" } else { "" };
    let _ = write!(o, " drop_next {sign}{}", format_time_us(dn.unsigned_abs()));
    let _ = write!(
        o,
        "\n  maxpacket {} ecn_mark {} drop_overlimit {}",
        s.maxpacket, s.ecn_mark, drop_overlimit
    );
    if s.ce_mark != 0 {
        let _ = write!(o, " ce_mark {}", s.ce_mark);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// A frame of `len` bytes: Ethernet, then an IPv4 header with ECN
    /// field `ecn`, at `network_header` 14.
    fn frame(len: usize, ecn: u8) -> PacketBuf {
        let mut b = vec![0u8; len.max(34)];
        b[14] = 0x45;
        b[15] = ecn;
        send_check(&mut b[14..34]);
        let mut p = PacketBuf::from_slice(0, &b);
        p.meta.network_header = 14;
        p.meta.protocol = 0x0800;
        p
    }

    fn codel(limit: u32, ecn: bool) -> CodelQdisc {
        let mut params = CodelParams::new(1514);
        params.ecn = ecn;
        CodelQdisc::new(limit, params)
    }

    /// Dequeues one packet every `step` ns from `t0` until the queue is
    /// empty; returns (times of dequeues that dropped, packets sent).
    fn drain(q: &mut CodelQdisc, t0: u64, step: u64) -> (Vec<u64>, usize) {
        let (mut t, mut drops, mut sent) = (t0, Vec::new(), 0);
        loop {
            let before = q.stats().drops;
            match q.dequeue(Instant::from_nanos(t)) {
                Dequeued::Packet(_) => sent += 1,
                _ => return (drops, sent),
            }
            let mut tf = ToFree::default();
            q.take_dropped(&mut tf);
            for _ in before..q.stats().drops {
                drops.push(t);
            }
            t += step;
        }
    }

    #[test]
    fn a_delay_below_target_is_never_dropped() {
        let mut q = codel(1000, false);
        let mut tf = ToFree::default();
        for i in 0..200u64 {
            q.enqueue(frame(1000, 0), Instant::from_nanos(i * MS), &mut tf);
            // Each leaves 4 ms after it came: below the 5 ms target.
            assert!(matches!(
                q.dequeue(Instant::from_nanos(i * MS + 4 * MS)),
                Dequeued::Packet(_)
            ));
        }
        assert_eq!(q.stats().drops, 0);
    }

    #[test]
    fn a_standing_queue_is_dropped_from_after_an_interval_then_faster() {
        let mut q = codel(10_000, false);
        let mut tf = ToFree::default();
        for _ in 0..3000 {
            q.enqueue(frame(1000, 0), Instant::ZERO, &mut tf);
        }
        // One dequeue per millisecond from 6 ms: above target from the
        // start, so dropping may begin once 100 ms have passed above it.
        let (drops, _) = drain(&mut q, 6 * MS, MS);
        assert_eq!(
            drops[0],
            107 * MS,
            "first drop one interval after 6 ms, strictly after"
        );
        // Then the control law, next = previous + 100 ms * x(count), x
        // approaching 1/sqrt(count) by one Newton step per drop as the
        // kernel does (x1 = 1, x2 = 0.5, x3 = 0.5625, ...), each drop at
        // the first dequeue at or after its time.
        let (mut x, mut next) = (1.0f64, 107.0 + 100.0);
        for (n, &t) in drops.iter().enumerate().skip(1).take(12) {
            let t = t as f64 / MS as f64;
            assert!(
                t >= next - 0.01 && t < next + 1.01,
                "drop {n} at {t} ms, due {next}"
            );
            let count = (n + 1) as f64;
            x = x * (3.0 - count * x * x) / 2.0;
            next += 100.0 * x;
        }
        assert!(drops.len() > 20);
    }

    #[test]
    fn dropping_ends_when_the_delay_falls_below_target() {
        let mut q = codel(10_000, false);
        let mut tf = ToFree::default();
        for _ in 0..300 {
            q.enqueue(frame(1000, 0), Instant::ZERO, &mut tf);
        }
        let (drops, _) = drain(&mut q, 6 * MS, MS);
        assert!(!drops.is_empty());
        assert!(
            !q.xstats_vars().dropping,
            "an empty queue leaves the dropping state"
        );
        // New packets that wait less than the target are not dropped.
        for i in 0..50u64 {
            let t = 10_000 * MS + i * MS;
            q.enqueue(frame(1000, 0), Instant::from_nanos(t), &mut tf);
            assert!(matches!(
                q.dequeue(Instant::from_nanos(t + MS)),
                Dequeued::Packet(_)
            ));
        }
        assert_eq!(q.stats().drops as usize, drops.len());
    }

    #[test]
    fn with_ecn_capable_packets_are_marked_instead_of_dropped() {
        let mut q = codel(10_000, true);
        let mut tf = ToFree::default();
        for _ in 0..500 {
            q.enqueue(frame(1000, 2), Instant::ZERO, &mut tf);
        }
        let (drops, sent) = drain(&mut q, 6 * MS, MS);
        assert!(drops.is_empty());
        assert_eq!(sent, 500);
        assert!(q.xstats().1.ecn_mark > 5);
    }

    #[test]
    fn a_queue_of_one_mtu_is_never_dropped() {
        let mut q = codel(10_000, false);
        let mut tf = ToFree::default();
        // Packets queued one at a time, each waiting 50 ms, never more
        // than one MTU queued behind the one taken.
        for i in 0..400u64 {
            q.enqueue(frame(1000, 0), Instant::from_nanos(i * 60 * MS), &mut tf);
            assert!(matches!(
                q.dequeue(Instant::from_nanos(i * 60 * MS + 50 * MS)),
                Dequeued::Packet(_)
            ));
        }
        assert_eq!(q.stats().drops, 0);
    }

    #[test]
    fn the_limit_drops_at_enqueue() {
        let mut q = codel(2, false);
        let mut tf = ToFree::default();
        let r: Vec<_> = (0..3)
            .map(|_| q.enqueue(frame(100, 0), Instant::ZERO, &mut tf))
            .collect();
        assert_eq!(r, [NetXmit::Success, NetXmit::Success, NetXmit::Drop]);
        assert_eq!(q.xstats().2, 1);
        assert_eq!(
            tf.drain().next().map(|(_, r)| r),
            Some(DropReason::QdiscOverlimit)
        );
    }

    #[test]
    fn newton_steps_follow_one_over_sqrt_count() {
        let mut v = CodelVars {
            count: 1,
            rec_inv_sqrt: u16::MAX,
            ..CodelVars::default()
        };
        for count in 2..200u32 {
            v.count = count;
            newton_step(&mut v);
            let got = f64::from(v.rec_inv_sqrt) / 65536.0;
            let want = 1.0 / f64::from(count).sqrt();
            if count == 2 {
                // One step from 1: 1 * (3 - 2) / 2.
                assert!((got - 0.5).abs() < 0.001, "{got}");
            } else if count >= 8 {
                assert!(
                    (got - want).abs() < 0.01 * want + 0.001,
                    "count {count}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn set_ce_marks_ect_and_keeps_the_checksum_right() {
        for (ecn, marked) in [(0u8, false), (1, true), (2, true), (3, true)] {
            let mut p = frame(100, ecn);
            assert_eq!(set_ce(&mut p), marked, "ecn {ecn}");
            let h = Ipv4Packet::new_unchecked(p.network_header());
            assert_eq!(h.ecn(), if marked { 3 } else { 0 });
            assert!(h.verify_checksum());
        }
    }

    #[test]
    fn tc_prints_codel_as_tc_does() {
        let mut p = CodelParams::new(1514);
        assert_eq!(
            print_codel(1000, &p),
            "limit 1000p target 5ms interval 100ms "
        );
        p.ecn = true;
        p.ce_threshold = us_to_codel(20_000);
        assert_eq!(
            print_codel(1000, &p),
            "limit 1000p target 5ms ce_threshold 20ms interval 100ms ecn "
        );
        // The round trip through CoDel units: 5 ms is dumped as 4999 us.
        assert_eq!(codel_to_us(us_to_codel(5000)), 4999);
        assert_eq!(codel_to_us(us_to_codel(100_000)), 99999);
    }
}
