//! `sfq`: stochastic fairness queueing.
//!
//! Stands for `net/sched/sch_sfq.c` (Linux 6.13 and later: byte credits).
//!
//! # Algorithm
//!
//! Packets are hashed by flow into `divisor` buckets; a bucket in use holds
//! one of at most `flows` slots, each a FIFO of at most `depth` packets,
//! and the whole qdisc at most `limit` packets.
//!
//! - **Enqueue.** A packet for a bucket without a slot takes a free one
//!   (none free: dropped). A slot already `depth` deep drops the arriving
//!   packet, or with `headdrop` its oldest one to make room. A slot that
//!   becomes active joins the end of the round with a credit of one
//!   `quantum`. Past `limit`, the longest slot loses a packet (its newest,
//!   or its oldest with `headdrop`; among equally long ones the one that got
//!   there last); when every slot holds one packet, the next slot in the
//!   round loses its only one.
//! - **Dequeue.** Round robin over the active slots with byte credits: the
//!   slot to serve is the one after the round's tail; while its credit is
//!   spent it gets another quantum and becomes the tail. A packet sent costs
//!   its length; a slot left empty leaves the round and its bucket is freed.
//! - **Per-flow RED** (`redflowlimit ...`): a packet for a flow that
//!   already has a slot updates that flow's average backlog (`qavg`, EWMA
//!   of `2^-Wlog`, no idle time); between `min` and `max` RED's probable
//!   mark, past `max` a hard one (each an overlimit): with `ecn` the packet
//!   (or with `headdrop` the flow's oldest) is CE-marked when it can be,
//!   else — and for hard marks under `harddrop` — it is a congestion drop
//!   as if the flow were full. Counted as prob/forced mark, mark_head,
//!   drop, printed under `tc -s`.
//! - **Perturbation** (`perturb SECS`): every period the flows' hash gets
//!   a new key (`sfq_perturbation`) and, unless the qdisc is empty, every
//!   queued packet is taken out and put back under the new hashing, slot
//!   by slot, oldest first (`sfq_rehash`): flows that shared a bucket
//!   come apart, each flow's order is kept, and a packet that finds no
//!   free slot, or a slot `depth` deep, is dropped (not counted as the
//!   qdisc's drop, as the kernel's). Without `perturb` the key stays 0
//!   (the hash's low bits pick the bucket). The keys come from a
//!   generator of fixed seed, so runs repeat; the period starts with the
//!   first packet (the kernel's timer starts with the qdisc).

use std::collections::VecDeque;

use super::red::{Action, RedConfig, RedParms, RedVars, FLAG_ECN, FLAG_HARDDROP};
use super::{Dequeued, NetXmit, OptValue, Qdisc, QdiscStats, ToFree};
use crate::buf::PacketBuf;
use crate::stats::DropReason;
use crate::time::Instant;
use crate::units::format_size;

/// `SFQ_MAX_DEPTH`.
pub const MAX_DEPTH: u32 = 127;
/// `SFQ_MAX_FLOWS`.
pub const MAX_FLOWS: u32 = 0x10000 - MAX_DEPTH - 1;
/// `SFQ_DEFAULT_FLOWS`.
pub const DEFAULT_FLOWS: u32 = 128;
/// `SFQ_DEFAULT_HASH_DIVISOR`.
pub const DEFAULT_DIVISOR: u32 = 1024;
/// No slot (`SFQ_EMPTY_SLOT`).
const EMPTY: u16 = u16::MAX;

/// The configuration after the kernel's adjustments (`sfq_change`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SfqConfig {
    /// Packets queued at most.
    pub limit: u32,
    /// Byte credit per round.
    pub quantum: u32,
    /// Packets per flow at most.
    pub depth: u32,
    /// Hash buckets (a power of two).
    pub divisor: u32,
    /// Slots (active flows) at most.
    pub flows: u32,
    /// Drop a full flow's oldest packet instead of the arriving one.
    pub headdrop: bool,
    /// Rehash period in seconds (0: none).
    pub perturb: i32,
    /// Per-flow RED (`redflowlimit ...`), if any.
    pub red: Option<RedConfig>,
}

/// One flow slot.
#[derive(Debug, Default)]
struct Slot {
    q: VecDeque<PacketBuf>,
    backlog: u32,
    allot: i32,
    bucket: u32,
    /// The next active slot in the round.
    next: u16,
    /// Links in the list of slots of its depth.
    dep_prev: u16,
    dep_next: u16,
    /// The flow's RED state (`slot->vars`).
    vars: RedVars,
}

/// The `sfq` qdisc. See the module documentation.
#[derive(Debug)]
pub struct Sfq {
    cfg: SfqConfig,
    slots: Vec<Slot>,
    /// Bucket to slot.
    ht: Vec<u16>,
    /// Per depth (0: the free slots), the slot that got there last.
    dep_head: Vec<u16>,
    /// The depth of the longest slot.
    cur_depth: u32,
    /// The last slot of the round; the one after it is served next.
    tail: Option<u16>,
    /// Per-flow RED's parameters and generator.
    red: Option<RedParms>,
    rng: u64,
    /// `prob_mark`, `prob_mark_head`, `prob_drop`, `forced_mark`,
    /// `forced_mark_head`, `forced_drop`.
    red_stats: [u32; 6],
    /// The hash key (`q->perturbation`; 0: the hash as it is).
    key: u32,
    /// When the key next changes, once the period has started.
    next_perturb: Option<Instant>,
    /// The generator of the keys.
    key_rng: u64,
    /// Packets a rehash at a dequeue dropped, for `take_dropped`.
    rehash_drops: ToFree,
    stats: QdiscStats,
}

/// The seed of the perturbation keys (a fixed one: runs repeat).
const KEY_SEED: u64 = 0x5f0f_5eed_0000_0001;

impl Sfq {
    /// Kernel: `sfq_init()` with the configuration as `sfq_change` left it.
    pub fn new(cfg: SfqConfig) -> Sfq {
        let n = cfg.flows.clamp(1, MAX_FLOWS) as usize;
        let mut q = Sfq {
            cfg,
            slots: (0..n).map(|_| Slot::default()).collect(),
            ht: vec![EMPTY; cfg.divisor.max(1) as usize],
            dep_head: vec![EMPTY; MAX_DEPTH as usize + 1],
            cur_depth: 0,
            tail: None,
            red: cfg.red.as_ref().map(RedParms::new),
            rng: 0x9e37_79b9_7f4a_7c15,
            red_stats: [0; 6],
            key: 0,
            next_perturb: None,
            key_rng: KEY_SEED,
            rehash_drops: ToFree::default(),
            stats: QdiscStats::default(),
        };
        for i in 0..n as u16 {
            q.dep_link(i, 0);
        }
        q
    }

    /// The configuration.
    pub fn config(&self) -> &SfqConfig {
        &self.cfg
    }

    /// Links slot `x` at the head of the list of depth `d`.
    fn dep_link(&mut self, x: u16, d: usize) {
        let head = self.dep_head[d];
        let s = &mut self.slots[x as usize];
        (s.dep_prev, s.dep_next) = (EMPTY, head);
        if head != EMPTY {
            self.slots[head as usize].dep_prev = x;
        }
        self.dep_head[d] = x;
    }

    /// Unlinks slot `x` from the list of depth `d`.
    fn dep_unlink(&mut self, x: u16, d: usize) {
        let (p, n) = (
            self.slots[x as usize].dep_prev,
            self.slots[x as usize].dep_next,
        );
        match p {
            EMPTY => self.dep_head[d] = n,
            p => self.slots[p as usize].dep_next = n,
        }
        if n != EMPTY {
            self.slots[n as usize].dep_prev = p;
        }
    }

    /// Kernel: `sfq_inc()`: the slot one packet deeper.
    fn inc(&mut self, x: u16) {
        let d = self.slots[x as usize].q.len();
        self.dep_unlink(x, d - 1);
        self.dep_link(x, d);
        self.cur_depth = self.cur_depth.max(d as u32);
    }

    /// Kernel: `sfq_dec()`: the slot one packet shallower.
    fn dec(&mut self, x: u16) {
        let d = self.slots[x as usize].q.len();
        self.dep_unlink(x, d + 1);
        if self.dep_head[d + 1] == EMPTY && self.cur_depth == (d + 1) as u32 {
            self.cur_depth -= 1;
        }
        self.dep_link(x, d);
    }

    /// Kernel: `sfq_classify()` without filters.
    fn bucket(&self, pkt: &PacketBuf) -> u32 {
        let hash = if pkt.meta.hash != 0 {
            pkt.meta.hash
        } else {
            super::fq_codel::header_hash(pkt)
        };
        let hash = match self.key {
            0 => hash,
            k => fmix32(hash ^ k),
        };
        hash & (self.cfg.divisor - 1)
    }

    /// Kernel: `sfq_perturbation()` for each period ended by `now`: a new
    /// key, and the queued packets rehashed under it (drops to `to_free`).
    fn perturb(&mut self, now: Instant, to_free: &mut ToFree) {
        if self.cfg.perturb <= 0 {
            return;
        }
        let period = u64::from(self.cfg.perturb as u32) * 1_000_000_000;
        let due = *self
            .next_perturb
            .get_or_insert(Instant::from_nanos(now.as_nanos() + period));
        if now < due {
            return;
        }
        let mut next = due.as_nanos();
        while next <= now.as_nanos() {
            self.key = self.new_key();
            next += period;
        }
        self.next_perturb = Some(Instant::from_nanos(next));
        if self.tail.is_some() {
            self.rehash(to_free);
        }
    }

    /// A new key (`get_random_bytes`), never 0.
    fn new_key(&mut self) -> u32 {
        // xorshift64*
        let mut x = self.key_rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.key_rng = x;
        ((x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32).max(1)
    }

    /// Kernel: `sfq_rehash()`: every queued packet, slot by slot and
    /// oldest first, put back under the current key; one that finds no
    /// free slot or a full one is dropped.
    fn rehash(&mut self, to_free: &mut ToFree) {
        let mut all = Vec::with_capacity(self.stats.qlen as usize);
        for x in 0..self.slots.len() as u16 {
            if self.slots[x as usize].q.is_empty() {
                continue;
            }
            while let Some(p) = self.slots[x as usize].q.pop_front() {
                self.dec(x);
                all.push(p);
            }
            let s = &mut self.slots[x as usize];
            (s.backlog, s.vars) = (0, RedVars::default());
            self.ht[s.bucket as usize] = EMPTY;
        }
        self.tail = None;
        for p in all {
            self.requeue_rehashed(p, to_free);
        }
    }

    /// One packet of [`Sfq::rehash`] into the slot of its new bucket.
    fn requeue_rehashed(&mut self, p: PacketBuf, to_free: &mut ToFree) {
        let h = self.bucket(&p);
        let mut x = self.ht[h as usize];
        if x == EMPTY {
            x = self.dep_head[0];
            if x != EMPTY {
                self.ht[h as usize] = x;
                self.slots[x as usize].bucket = h;
            }
        }
        if x == EMPTY || self.slots[x as usize].q.len() as u32 >= self.cfg.depth {
            self.stats.unqueued(p.len());
            to_free.push(p, DropReason::QdiscDrop);
            return;
        }
        let s = &mut self.slots[x as usize];
        if let Some(rp) = &self.red {
            s.vars.qavg = s.vars.qavg_no_idle_time(rp, s.backlog);
        }
        s.backlog += p.len() as u32;
        s.q.push_back(p);
        self.inc(x);
        if self.slots[x as usize].q.len() == 1 {
            self.activate(x);
        }
    }

    /// Takes the packet off slot `x`'s tail (or head), with the counters.
    fn take(&mut self, x: u16, head: bool) -> Option<PacketBuf> {
        let s = &mut self.slots[x as usize];
        let p = if head {
            s.q.pop_front()
        } else {
            s.q.pop_back()
        }?;
        s.backlog -= p.len() as u32;
        self.dec(x);
        self.stats.unqueued(p.len());
        Some(p)
    }

    /// Kernel: `sfq_drop()`: a packet of the longest slot. Returns its
    /// length.
    fn drop_one(&mut self, to_free: &mut ToFree) -> usize {
        let x = match self.cur_depth {
            0 => return 0,
            1 => {
                let Some(t) = self.tail else { return 0 };
                let x = self.slots[t as usize].next;
                self.unlink_ring(t, x);
                x
            }
            d => self.dep_head[d as usize],
        };
        let Some(p) = self.take(x, self.cfg.headdrop) else {
            return 0;
        };
        if self.slots[x as usize].q.is_empty() {
            self.ht[self.slots[x as usize].bucket as usize] = EMPTY;
        }
        let len = p.len();
        self.stats.drops += 1;
        to_free.push(p, DropReason::QdiscOverlimit);
        len
    }

    /// Takes slot `x`, the one after `t`, out of the round.
    fn unlink_ring(&mut self, t: u16, x: u16) {
        if self.slots[x as usize].next == x {
            self.tail = None;
        } else {
            self.slots[t as usize].next = self.slots[x as usize].next;
        }
    }

    /// Makes slot `x` active: at the end of the round, a quantum of credit.
    fn activate(&mut self, x: u16) {
        match self.tail {
            None => self.slots[x as usize].next = x,
            Some(t) => {
                self.slots[x as usize].next = self.slots[t as usize].next;
                self.slots[t as usize].next = x;
            }
        }
        self.tail = Some(x);
        self.slots[x as usize].allot = self.cfg.quantum as i32;
    }
}

impl Sfq {
    /// Kernel: `sfq_enqueue()`: a new flow takes a free slot; a known one
    /// passes per-flow RED (when set) and its depth limit.
    fn enqueue_flow(&mut self, pkt: PacketBuf, to_free: &mut ToFree) -> NetXmit {
        let h = self.bucket(&pkt);
        let mut x = self.ht[h as usize];
        if x == EMPTY {
            x = self.dep_head[0];
            if x == EMPTY {
                self.stats.drops += 1;
                to_free.push(pkt, DropReason::QdiscDrop);
                return NetXmit::Drop;
            }
            self.ht[h as usize] = x;
            self.slots[x as usize].bucket = h;
            self.slots[x as usize].backlog = 0;
            self.slots[x as usize].vars = RedVars::default();
        } else {
            let mut pkt = pkt;
            match self.red_verdict(x, &mut pkt) {
                Ok(()) if self.slots[x as usize].q.len() as u32 >= self.cfg.depth => {
                    return self.full_flow(x, pkt, to_free)
                }
                Ok(()) => return self.enqueue_in(x, pkt, to_free),
                Err(()) => return self.full_flow(x, pkt, to_free),
            }
        }
        self.enqueue_in(x, pkt, to_free)
    }
}

impl Sfq {
    /// Kernel: the per-flow RED part of `sfq_enqueue()` for a packet of
    /// flow `x`: `Err` for a congestion drop (the arriving packet, or with
    /// `headdrop` the flow's oldest); marks set CE, on the flow's head
    /// with `headdrop`.
    fn red_verdict(&mut self, x: u16, pkt: &mut PacketBuf) -> Result<(), ()> {
        let Some(p) = self.red else { return Ok(()) };
        let flags = self.cfg.red.map_or(0, |r| r.flags);
        let s = &mut self.slots[x as usize];
        s.vars.qavg = s.vars.qavg_no_idle_time(&p, s.backlog);
        let hard = match s.vars.action(&p, s.vars.qavg, &mut self.rng) {
            Action::Pass => return Ok(()),
            Action::Probable => false,
            Action::Hard => true,
        };
        self.stats.overlimits += 1;
        let ecn = flags & FLAG_ECN != 0;
        let may_mark = if hard {
            ecn && flags & FLAG_HARDDROP == 0
        } else {
            ecn
        };
        let base = if hard { 3 } else { 0 };
        if may_mark {
            let head = self.slots[x as usize].q.front_mut();
            if self.cfg.headdrop && head.is_some_and(super::codel::set_ce) {
                self.red_stats[base + 1] += 1;
                return Ok(());
            }
            if super::codel::set_ce(pkt) {
                self.red_stats[base] += 1;
                return Ok(());
            }
        }
        self.red_stats[base + 2] += 1;
        Err(())
    }

    /// Queues `pkt` on flow `x` (the rest of `sfq_enqueue()`).
    fn enqueue_in(&mut self, x: u16, pkt: PacketBuf, to_free: &mut ToFree) -> NetXmit {
        let len = pkt.len();
        self.stats.queued(len);
        let s = &mut self.slots[x as usize];
        s.backlog += len as u32;
        s.q.push_back(pkt);
        self.inc(x);
        if self.slots[x as usize].q.len() == 1 {
            self.activate(x);
        }
        if self.stats.qlen <= u64::from(self.cfg.limit) {
            return NetXmit::Success;
        }
        let before = self.slots[x as usize].q.len();
        self.drop_one(to_free);
        if self.slots[x as usize].q.len() != before {
            NetXmit::Congested
        } else {
            NetXmit::Success
        }
    }
}

impl Qdisc for Sfq {
    fn kind(&self) -> &'static str {
        "sfq"
    }

    fn enqueue(&mut self, pkt: PacketBuf, now: Instant, to_free: &mut ToFree) -> NetXmit {
        self.perturb(now, to_free);
        self.enqueue_flow(pkt, to_free)
    }

    /// Kernel: `sfq_dequeue()`.
    fn dequeue(&mut self, now: Instant) -> Dequeued {
        if self.next_perturb.is_some_and(|t| t <= now) {
            let mut drops = std::mem::take(&mut self.rehash_drops);
            self.perturb(now, &mut drops);
            self.rehash_drops = drops;
        }
        let Some(mut t) = self.tail else {
            return Dequeued::Empty;
        };
        let mut a = self.slots[t as usize].next;
        while self.slots[a as usize].allot <= 0 {
            t = a;
            self.tail = Some(a);
            self.slots[a as usize].allot += self.cfg.quantum as i32;
            a = self.slots[a as usize].next;
        }
        let Some(p) = self.take(a, true) else {
            return Dequeued::Empty;
        };
        self.stats.sent(p.len());
        if self.slots[a as usize].q.is_empty() {
            self.ht[self.slots[a as usize].bucket as usize] = EMPTY;
            self.unlink_ring(t, a);
        } else {
            self.slots[a as usize].allot -= p.len() as i32;
        }
        Dequeued::Packet(p)
    }

    fn peek(&self) -> Option<&PacketBuf> {
        let t = self.tail?;
        self.slots[self.slots[t as usize].next as usize].q.front()
    }

    fn take_dropped(&mut self, to_free: &mut ToFree) {
        for (p, why) in self.rehash_drops.drain() {
            to_free.push(p, why);
        }
    }

    /// Kernel: `sfq_reset()`: everything dequeued and freed.
    fn reset(&mut self, to_free: &mut ToFree) {
        self.take_dropped(to_free);
        while let Dequeued::Packet(p) = self.dequeue(Instant::ZERO) {
            to_free.push(p, DropReason::QueuePurge);
        }
    }

    fn stats(&self) -> &QdiscStats {
        &self.stats
    }

    fn stats_mut(&mut self) -> &mut QdiscStats {
        &mut self.stats
    }

    /// `TCQ_F_CAN_BYPASS` (the limit is always at least 2).
    fn can_bypass(&self) -> bool {
        true
    }

    /// tc's `sfq_print_opt()`: `limit 127p quantum 1514b depth 127
    /// divisor 1024 `.
    fn params(&self) -> String {
        self.print(false)
    }

    fn params_stats(&self) -> String {
        self.print_stats()
    }

    /// `tc -d`: `flows N` before the divisor.
    fn params_details(&self) -> String {
        self.print(true)
    }

    fn options(&self) -> Vec<(&'static str, OptValue)> {
        let c = &self.cfg;
        let mut o = vec![
            ("limit", OptValue::Num(u64::from(c.limit))),
            ("quantum", OptValue::Num(u64::from(c.quantum))),
            ("depth", OptValue::Num(u64::from(c.depth))),
        ];
        if c.headdrop {
            o.push(("headdrop", OptValue::Bool(true)));
        }
        o.push(("divisor", OptValue::Num(u64::from(c.divisor))));
        if c.perturb != 0 {
            o.push(("perturb", OptValue::Num(c.perturb as u64)));
        }
        o
    }

    /// The active buckets, `bucket + 1` each (`tc class show`).
    fn classes(&self) -> Vec<u32> {
        (0..self.ht.len() as u32)
            .filter(|&b| self.ht[b as usize] != EMPTY)
            .map(|b| b + 1)
            .collect()
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl Sfq {
    /// The arriving packet for a slot `depth` deep: dropped, or with
    /// `headdrop` put in place of the slot's oldest.
    fn full_flow(&mut self, x: u16, pkt: PacketBuf, to_free: &mut ToFree) -> NetXmit {
        self.stats.drops += 1;
        if !self.cfg.headdrop {
            to_free.push(pkt, DropReason::QdiscDrop);
            return NetXmit::Drop;
        }
        let s = &mut self.slots[x as usize];
        let Some(old) = s.q.pop_front() else {
            to_free.push(pkt, DropReason::QdiscDrop);
            return NetXmit::Drop;
        };
        let delta = old.len() as i64 - pkt.len() as i64;
        s.backlog = (i64::from(s.backlog) - delta) as u32;
        s.q.push_back(pkt);
        self.stats.backlog = (self.stats.backlog as i64 - delta) as u64;
        to_free.push(old, DropReason::QdiscDrop);
        NetXmit::Congested
    }

    /// The text of `sfq_print_opt()`, `details` as `tc -d`.
    fn print(&self, details: bool) -> String {
        let c = &self.cfg;
        let mut o = format!(
            "limit {}p quantum {} depth {} ",
            c.limit,
            format_size(u64::from(c.quantum)),
            c.depth
        );
        if c.headdrop {
            o += "headdrop ";
        }
        if details {
            o += &format!("flows {} ", c.flows);
        }
        o += &format!("divisor {} ", c.divisor);
        if c.perturb != 0 {
            o += &format!("perturb {}sec ", c.perturb);
        }
        if let Some(r) = c.red.as_ref().filter(|r| r.qth_min != 0) {
            let p = f64::from(r.max_p) / 4_294_967_296.0;
            o += &format!(
                "ewma {} min {} max {} probability {} ",
                r.wlog,
                format_size(u64::from(r.qth_min)),
                format_size(u64::from(r.qth_max)),
                crate::units::format_g(p, 6)
            );
            if r.flags & FLAG_ECN != 0 {
                o += "ecn ";
            }
            if r.flags & FLAG_HARDDROP != 0 {
                o += "harddrop ";
            }
        }
        o
    }

    /// tc's `sfq_print_opt()` under `-s`: the per-flow RED counters.
    fn print_stats(&self) -> String {
        if self.cfg.red.is_none_or(|r| r.qth_min == 0) {
            return String::new();
        }
        let s = &self.red_stats;
        format!(
            "\n  prob_mark {} prob_mark_head {} prob_drop {}\n  forced_mark {} forced_mark_head {} forced_drop {}",
            s[0], s[1], s[2], s[3], s[4], s[5]
        )
    }
}

/// MurmurHash3's 32-bit finalizer: the flow hash and the key mixed so
/// that a new key moves every flow (the kernel's keyed flow hash).
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SfqConfig {
        SfqConfig {
            limit: 127,
            quantum: 1514,
            depth: 127,
            divisor: 1024,
            flows: 128,
            headdrop: false,
            perturb: 0,
            red: None,
        }
    }

    fn pkt(flow: u32, len: usize) -> PacketBuf {
        let mut p = PacketBuf::from_slice(0, &vec![0u8; len]);
        p.meta.hash = flow;
        p
    }

    fn flows_out(q: &mut Sfq) -> Vec<u32> {
        std::iter::from_fn(|| match q.dequeue(Instant::ZERO) {
            Dequeued::Packet(p) => Some(p.meta.hash),
            _ => None,
        })
        .collect()
    }

    #[test]
    fn per_flow_red_drops_a_flow_over_its_thresholds() {
        use crate::sched::QdiscSpec;
        // tc's own example, its output as the kernel's tc_testing expects.
        let line = "sfq redflowlimit 100000 min 8000 max 60000 probability 0.20 ecn headdrop";
        let spec: QdiscSpec = line.parse().unwrap();
        let q = spec.build(1000, 1514).unwrap();
        assert_eq!(
            q.params(),
            "limit 127p quantum 1514b depth 127 headdrop divisor 1024 ewma 6 min 8000b max 60000b probability 0.2 ecn "
        );
        // Without ECN: a flow whose average backlog passes max (Wlog 0:
        // the average is the backlog) has every further packet dropped,
        // a RED forced drop; another flow is untouched.
        let mut c = cfg();
        let mut red = spec_red(&spec);
        red.flags = 0;
        red.wlog = 0;
        c.red = Some(red);
        let mut q = Sfq::new(c);
        let mut tf = ToFree::default();
        let mut results = Vec::new();
        for _ in 0..80 {
            results.push(q.enqueue(pkt(1, 1000), Instant::ZERO, &mut tf));
        }
        let queued = results.iter().filter(|r| **r == NetXmit::Success).count();
        assert!((9..=61).contains(&queued), "{queued} queued");
        assert_eq!(
            q.red_stats[5] as usize + q.red_stats[2] as usize,
            80 - queued
        );
        assert!(q.red_stats[5] > 0, "forced drops past max");
        assert_eq!(
            q.enqueue(pkt(2, 1000), Instant::ZERO, &mut tf),
            NetXmit::Success
        );
        assert_eq!(q.stats().overlimits as usize, 80 - queued);
        // tc -s prints the counters after the parameters (sfq_print_opt).
        let st = &q.red_stats;
        assert_eq!(
            q.params_stats(),
            format!(
                "\n  prob_mark 0 prob_mark_head 0 prob_drop {}\n  forced_mark 0 forced_mark_head 0 forced_drop {}",
                st[2], st[5]
            )
        );
        assert_eq!(Sfq::new(cfg()).params_stats(), "", "without RED none");
    }

    fn spec_red(spec: &crate::sched::QdiscSpec) -> RedConfig {
        match spec {
            crate::sched::QdiscSpec::Sfq(Some(s)) => s.red.unwrap().config(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flows_take_turns_a_quantum_each() {
        let mut q = Sfq::new(cfg());
        let mut tf = ToFree::default();
        for f in [1, 2] {
            for _ in 0..4 {
                q.enqueue(pkt(f, 1000), Instant::ZERO, &mut tf);
            }
        }
        // 1514 bytes of credit: two 1000-byte packets (514, then -486),
        // then the other flow; next round 1028 lets two go again.
        assert_eq!(flows_out(&mut q), [1, 1, 2, 2, 1, 1, 2, 2]);
        assert!(q.classes().is_empty());
    }

    #[test]
    fn a_full_flow_drops_its_arrival_or_with_headdrop_its_oldest() {
        let mut c = cfg();
        c.depth = 2;
        let mut q = Sfq::new(c);
        let mut tf = ToFree::default();
        let r: Vec<_> = (0..3)
            .map(|i| q.enqueue(pkt(1, 100 + i), Instant::ZERO, &mut tf))
            .collect();
        assert_eq!(r, [NetXmit::Success, NetXmit::Success, NetXmit::Drop]);
        c.headdrop = true;
        let mut q = Sfq::new(c);
        for i in 0..3 {
            q.enqueue(pkt(1, 100 + i), Instant::ZERO, &mut tf);
        }
        let lens: Vec<usize> = std::iter::from_fn(|| match q.dequeue(Instant::ZERO) {
            Dequeued::Packet(p) => Some(p.len()),
            _ => None,
        })
        .collect();
        assert_eq!(lens, [101, 102]);
    }

    #[test]
    fn over_the_limit_the_longest_flow_loses_its_newest() {
        let mut c = cfg();
        c.limit = 4;
        let mut q = Sfq::new(c);
        let mut tf = ToFree::default();
        for _ in 0..3 {
            q.enqueue(pkt(1, 100), Instant::ZERO, &mut tf);
        }
        q.enqueue(pkt(2, 100), Instant::ZERO, &mut tf);
        // The fifth packet (flow 2) puts the qdisc over: flow 1 (3 deep) loses one.
        assert_eq!(
            q.enqueue(pkt(2, 100), Instant::ZERO, &mut tf),
            NetXmit::Success
        );
        assert_eq!(q.stats().drops, 1);
        // Flow 1's two left go first (100-byte packets well within one
        // quantum), then flow 2's.
        assert_eq!(flows_out(&mut q), [1, 1, 2, 2]);
    }

    #[test]
    fn tc_prints_sfq_as_tc_does() {
        let mut q = Sfq::new(cfg());
        assert_eq!(
            q.params(),
            "limit 127p quantum 1514b depth 127 divisor 1024 "
        );
        assert_eq!(
            q.params_details(),
            "limit 127p quantum 1514b depth 127 flows 128 divisor 1024 "
        );
        q.cfg.perturb = 10;
        q.cfg.headdrop = true;
        assert_eq!(
            q.params(),
            "limit 127p quantum 1514b depth 127 headdrop divisor 1024 perturb 10sec "
        );
    }

    /// Six packets of flows 1 and 17 (one bucket of 16) queued at 0 s,
    /// `perturb 10`: at 10 s a dequeue finds a new key, and the rehash
    /// puts the flows in two slots; each flow's order is kept.
    #[test]
    fn a_perturbation_parts_flows_that_shared_a_bucket() {
        let mut q = Sfq::new(SfqConfig {
            divisor: 16,
            perturb: 10,
            ..cfg()
        });
        let mut tf = ToFree::default();
        for k in 0..6 {
            let flow = if k % 2 == 0 { 1 } else { 17 };
            q.enqueue(pkt(flow, 100 + k), Instant::ZERO, &mut tf);
        }
        let active = |q: &Sfq| q.slots.iter().filter(|s| !s.q.is_empty()).count();
        assert_eq!(active(&q), 1, "one bucket, one slot");
        assert_eq!(q.next_perturb, Some(Instant::from_nanos(10_000_000_000)));
        let before = q.dequeue(Instant::from_nanos(9_999_999_999));
        assert!(matches!(before, Dequeued::Packet(_)));
        assert_eq!((q.key, active(&q)), (0, 1), "not yet");
        let Dequeued::Packet(p) = q.dequeue(Instant::from_nanos(10_000_000_000)) else {
            panic!("a packet")
        };
        assert_ne!(q.key, 0);
        assert_eq!(active(&q), 2, "rehashed into two slots");
        let mut seen: Vec<(u32, usize)> = vec![(p.meta.hash, p.len())];
        seen.extend(std::iter::from_fn(|| {
            match q.dequeue(Instant::from_nanos(10_000_000_000)) {
                Dequeued::Packet(p) => Some((p.meta.hash, p.len())),
                _ => None,
            }
        }));
        for f in [1, 17] {
            let lens: Vec<usize> = seen.iter().filter(|x| x.0 == f).map(|x| x.1).collect();
            assert!(
                lens.windows(2).all(|w| w[0] < w[1]),
                "flow {f} in order: {lens:?}"
            );
        }
        assert_eq!(seen.len(), 5);
        assert_eq!(q.next_perturb, Some(Instant::from_nanos(20_000_000_000)));
    }

    /// With one slot, a rehash that parts two flows has room for one:
    /// the other's packets are dropped, handed over by `take_dropped`,
    /// and leave the queue's counts.
    #[test]
    fn a_rehash_without_a_free_slot_drops_and_hands_over() {
        let mut q = Sfq::new(SfqConfig {
            divisor: 16,
            flows: 1,
            perturb: 1,
            ..cfg()
        });
        let mut tf = ToFree::default();
        for k in 0..4 {
            let flow = if k % 2 == 0 { 1 } else { 17 };
            q.enqueue(pkt(flow, 100), Instant::ZERO, &mut tf);
        }
        assert!(tf.is_empty());
        assert!(matches!(
            q.dequeue(Instant::from_nanos(1_000_000_000)),
            Dequeued::Packet(_)
        ));
        q.take_dropped(&mut tf);
        let dropped = tf.drain().count() as u64;
        assert!(dropped > 0, "one flow had no slot");
        assert_eq!(q.stats.qlen + 1 + dropped, 4, "sent + queued + dropped");
        assert_eq!(q.stats.backlog, q.stats.qlen * 100);
    }

    /// Without `perturb` the key never changes.
    #[test]
    fn without_perturb_the_key_stays() {
        let mut q = Sfq::new(cfg());
        let mut tf = ToFree::default();
        q.enqueue(pkt(1, 100), Instant::ZERO, &mut tf);
        let _ = q.dequeue(Instant::from_nanos(1_000_000_000_000));
        assert_eq!((q.key, q.next_perturb), (0, None));
    }
}
