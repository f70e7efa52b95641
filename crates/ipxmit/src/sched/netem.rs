//! `netem`: the network emulator — delay, jitter, loss, duplication,
//! corruption, reordering, rate and transmission slots.
//!
//! Stands for net/sched/sch_netem.c (Linux 6.18); the options as tc 6.1
//! reads and prints them are [`NetemSpec`] ([`parse_netem`]) and
//! `params()`.
//!
//! # Algorithm
//!
//! Each packet that arrives goes through, in this order:
//!
//! - **Duplication** (`duplicate P [C]`): with probability P a copy is
//!   made; it is queued like any arriving packet (its own loss, delay...)
//!   but never duplicated again.
//! - **Loss**: the random model (`loss P [C]`), the 4-state Markov model
//!   (`loss state`: gap and burst periods, each with lost and sent states)
//!   or Gilbert-Elliott (`loss gemodel`: a good and a bad state, each with
//!   its own loss probability). A lost packet is dropped (counted, and
//!   reported as sent, as the kernel does) unless `ecn` can mark it CE
//!   instead. A duplicated packet that is lost is simply not duplicated.
//! - **Corruption** (`corrupt P [C]`): one random bit of one random byte
//!   of the linear data is flipped (a pending checksum is completed
//!   first, so the damage is seen by the receiver).
//! - **Limit**: with `limit` packets already held (in the time queue, the
//!   head queue and a child qdisc), the packet is dropped.
//! - **Reordering** (`reorder P [C] gap G`): with a gap, packets are
//!   counted; from the G-th on, each is sent at once with probability P
//!   (put at the head of the queue, counted as a requeue) and the count
//!   restarts. Otherwise:
//! - **Delay**: `latency + tabledist(jitter)`: without a distribution
//!   uniform in `[latency - jitter, latency + jitter)`, with one the
//!   table's value (a 4096-point inverse distribution function in units
//!   of 1/8192 of the deviation). With **rate** emulation the packet is
//!   also serialised after the last one queued: its time to send is that
//!   packet's time (or now) plus the delay left plus its transmission
//!   time, `(len + packet_overhead)` rounded up to cells of `cell_size +
//!   cell_overhead`, over the rate.
//!
//! Packets wait in a queue ordered by time to send (equal times keep
//! their order). A dequeue takes the head queue first, then the time
//! queue's head once it is due — and, with **slots** (`slot MIN MAX
//! packets N bytes B`, or a distribution of slot intervals), only within
//! a slot, each slot allowing N packets and B bytes before the next one
//! starts after a random interval. Not yet due, the qdisc reports when
//! it will be. With a child qdisc grafted on its class, due packets go
//! into the child and dequeues take from it.
//!
//! Random numbers come from the kernel's seeded generator (LFSR113,
//! `prandom_u32_state`), seeded with `seed N` or else with
//! [`DEFAULT_SEED`], so a script behaves the same every run. Correlated
//! draws mix each draw with the previous one. Where the kernel draws
//! from its entropy pool instead (the first value of a correlated
//! sequence, uniform slot intervals, the corrupted byte and bit), a
//! second generator of fixed seed ([`ENTROPY_SEED`]) stands in: with the
//! same seed, the seeded draws are the kernel's.
//!
//! Not emulated: a GSO packet chosen for corruption is corrupted whole
//! (the kernel segments it first), and a netem that is not the root
//! hands its duplicates to the caller ([`Netem::take_duplicates`]) where
//! the kernel enqueues them at the root itself.

mod dist;
mod num;
mod parse;
mod print;
mod rand;
#[cfg(test)]
mod tests;
mod tfifo;

use std::collections::VecDeque;

pub use dist::NetemDist;
pub use parse::{
    parse_netem, NetemCorr, NetemLoss, NetemProb, NetemRate, NetemSlot, NetemSpec, NETEM_USAGE,
};

use self::num::PSCHED_SHIFT;
use self::print::Dump;
use self::rand::{get_crandom, tabledist, CrndState, RndState};
use self::tfifo::{Tfifo, Timed};
use super::{ClassError, Dequeued, NetXmit, OptValue, Qdisc, QdiscStats, SpecError, ToFree};
use crate::buf::{CsumState, PacketBuf};
use crate::stats::DropReason;
use crate::time::Instant;

/// The seed of the packet generator when `seed` is not given (the kernel
/// takes a random one).
pub const DEFAULT_SEED: u64 = 0x6e65_7465_6d5f_7365;

/// The seed of the generator standing in for the kernel's entropy pool.
pub const ENTROPY_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Packets of room preallocated in each queue (at most `limit`).
const PREALLOC: u32 = 4096;

/// `NETEM_DIST_MAX`: the largest table the kernel takes.
const DIST_MAX: usize = 16384;

/// `loss_model`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LossModel {
    /// `CLG_RANDOM`.
    Random,
    /// `CLG_4_STATES`.
    FourStates,
    /// `CLG_GILB_ELL`.
    GilbertElliott,
}

/// `TX_IN_GAP_PERIOD`.
const TX_IN_GAP_PERIOD: u8 = 1;
/// `TX_IN_BURST_PERIOD`.
const TX_IN_BURST_PERIOD: u8 = 2;
/// `LOST_IN_GAP_PERIOD`.
const LOST_IN_GAP_PERIOD: u8 = 3;
/// `LOST_IN_BURST_PERIOD`.
const LOST_IN_BURST_PERIOD: u8 = 4;
/// `GOOD_STATE`.
const GOOD_STATE: u8 = 1;
/// `BAD_STATE`.
const BAD_STATE: u8 = 2;

/// `struct clgstate`: the loss model's state and parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Clg {
    state: u8,
    /// p13 (4 states) or p (GE).
    a1: u32,
    /// p31 or r.
    a2: u32,
    /// p32 or h.
    a3: u32,
    /// p14 or 1-k.
    a4: u32,
    /// p23 (4 states only).
    a5: u32,
}

/// The correlated sequences (`delay_cor`, `loss_cor`, ...).
#[derive(Clone, Copy, Debug, Default)]
struct Cors {
    delay: CrndState,
    loss: CrndState,
    dup: CrndState,
    reorder: CrndState,
    corrupt: CrndState,
}

/// `struct slotstate`.
#[derive(Clone, Copy, Debug, Default)]
struct SlotState {
    /// `slot_next`, meaningful while `active` (the kernel's non-zero).
    next: u64,
    active: bool,
    packets_left: i32,
    bytes_left: i32,
}

/// The parameters (the settings of `struct netem_sched_data`).
#[derive(Clone, Copy, Debug)]
struct Config {
    limit: u32,
    latency: i64,
    jitter: i64,
    loss: u32,
    ecn: bool,
    gap: u32,
    duplicate: u32,
    reorder: u32,
    corrupt: u32,
    rate: u64,
    packet_overhead: i32,
    cell_size: u32,
    cell_overhead: i32,
    loss_model: LossModel,
    slot: NetemSlot,
    delay_dist: Option<NetemDist>,
    slot_dist: Option<NetemDist>,
}

/// The `netem` qdisc. See the module documentation.
#[derive(Debug)]
pub struct Netem {
    cfg: Config,
    clg: Clg,
    cors: Cors,
    seed: u64,
    prng: RndState,
    entropy: RndState,
    slot: SlotState,
    counter: u32,
    /// `sch->q`: reordered packets, sent before the time queue.
    head: VecDeque<Timed>,
    tfifo: Tfifo,
    /// The child qdisc on class 1 and its handle.
    child: Option<(u32, Box<dyn Qdisc>)>,
    handle: u32,
    root: bool,
    dups: Vec<PacketBuf>,
    /// What the child dropped when given packets (the kernel frees them
    /// at once), for [`Qdisc::take_dropped`].
    dropped: ToFree,
    stats: QdiscStats,
}

/// A copy of `pkt` for its duplicate (the kernel's `skb_clone()`): the
/// same headroom, bytes (made linear) and metadata.
fn copy_packet(pkt: &PacketBuf) -> PacketBuf {
    let (room, n) = (pkt.headroom(), pkt.len());
    let mut d = PacketBuf::with_capacity(room + n);
    d.reserve(room);
    pkt.copy_to(d.put(n));
    d.meta = pkt.meta.clone();
    d
}

/// Kernel: `loss_4state()`: one step of the 4-state chain; true when the
/// packet is lost.
fn loss_4state(clg: &mut Clg, prng: &mut RndState) -> bool {
    let rnd = prng.next_u32();
    let (next, lost) = match clg.state {
        TX_IN_GAP_PERIOD if rnd < clg.a4 => (LOST_IN_GAP_PERIOD, true),
        TX_IN_GAP_PERIOD if rnd < clg.a1.wrapping_add(clg.a4) => (LOST_IN_BURST_PERIOD, true),
        TX_IN_BURST_PERIOD if rnd < clg.a5 => (LOST_IN_BURST_PERIOD, true),
        LOST_IN_BURST_PERIOD if rnd < clg.a3 => (TX_IN_BURST_PERIOD, false),
        LOST_IN_BURST_PERIOD if rnd < clg.a2.wrapping_add(clg.a3) => (TX_IN_GAP_PERIOD, false),
        LOST_IN_BURST_PERIOD => (LOST_IN_BURST_PERIOD, true),
        LOST_IN_GAP_PERIOD => (TX_IN_GAP_PERIOD, false),
        s => (s, false),
    };
    clg.state = next;
    lost
}

/// Kernel: `loss_gilb_ell()`: the state may change, then a second draw
/// decides the loss by the state the step began in.
fn loss_gilb_ell(clg: &mut Clg, prng: &mut RndState) -> bool {
    match clg.state {
        GOOD_STATE => {
            if prng.next_u32() < clg.a1 {
                clg.state = BAD_STATE;
            }
            prng.next_u32() < clg.a4
        }
        BAD_STATE => {
            if prng.next_u32() < clg.a2 {
                clg.state = GOOD_STATE;
            }
            prng.next_u32() > clg.a3
        }
        _ => false,
    }
}

/// Kernel: `validate_slot()` and the table checks of `netem_change()`.
fn validate(spec: &NetemSpec) -> Result<(), SpecError> {
    for d in [spec.delay_dist, spec.slot_dist].into_iter().flatten() {
        if d.table().is_empty() || d.table().len() > DIST_MAX {
            return Err(SpecError::KernelInvalid);
        }
    }
    let Some(s) = spec.slot else {
        return Ok(());
    };
    let refuse = |m: &str| Err(SpecError::Refused(format!("Error: {m}.")));
    if s.min_delay < 0 || s.max_delay < 0 {
        return refuse("negative slot delay");
    }
    if s.min_delay > s.max_delay {
        return refuse("slot min delay greater than max delay");
    }
    if s.dist_delay < 0 || s.dist_jitter < 0 {
        return refuse("negative dist delay");
    }
    if s.max_packets < 0 || s.max_bytes < 0 {
        return refuse("negative slot limit");
    }
    Ok(())
}

impl Netem {
    /// Kernel: `netem_init()`: the generator seeded with [`DEFAULT_SEED`],
    /// then [`Netem::change`]. `txqueuelen` is unused (tc gives the
    /// limit, 1000 by default).
    pub fn new(spec: &NetemSpec, txqueuelen: u32) -> Result<Netem, SpecError> {
        let _ = txqueuelen;
        let cap = spec.limit.min(PREALLOC) as usize;
        let cfg = Config {
            limit: 0,
            latency: 0,
            jitter: 0,
            loss: 0,
            ecn: false,
            gap: 0,
            duplicate: 0,
            reorder: 0,
            corrupt: 0,
            rate: 0,
            packet_overhead: 0,
            cell_size: 0,
            cell_overhead: 0,
            loss_model: LossModel::Random,
            slot: NetemSlot::default(),
            delay_dist: None,
            slot_dist: None,
        };
        let mut q = Netem {
            cfg,
            clg: Clg::default(),
            cors: Cors::default(),
            seed: DEFAULT_SEED,
            prng: RndState::seeded(DEFAULT_SEED),
            entropy: RndState::seeded(ENTROPY_SEED),
            slot: SlotState::default(),
            counter: 0,
            head: VecDeque::with_capacity(cap),
            tfifo: Tfifo::with_capacity(cap),
            child: None,
            handle: 0,
            root: true,
            dups: Vec::new(),
            dropped: ToFree::default(),
            stats: QdiscStats::default(),
        };
        q.change(spec)?;
        Ok(q)
    }

    /// Kernel: `netem_change()`: the options tc sent. What tc always sends
    /// (limit, delay, jitter, loss, gap, duplicate) is replaced; an
    /// attribute it did not send keeps its value (except the loss model,
    /// which falls back to random loss). The queue is kept.
    pub fn change(&mut self, spec: &NetemSpec) -> Result<(), SpecError> {
        validate(spec)?;
        self.set_loss_model(spec.loss_model);
        let c = &mut self.cfg;
        c.delay_dist = spec.delay_dist.or(c.delay_dist);
        c.slot_dist = spec.slot_dist.or(c.slot_dist);
        c.limit = spec.limit;
        c.latency = i64::from(spec.latency_ticks()) << PSCHED_SHIFT;
        c.jitter = i64::from(spec.jitter_ticks()) << PSCHED_SHIFT;
        c.gap = spec.gap;
        c.loss = spec.loss;
        c.duplicate = spec.duplicate;
        self.counter = 0;
        if c.gap != 0 {
            c.reorder = u32::MAX;
        }
        self.set_correlated(spec);
        let c = &mut self.cfg;
        if let Some(r) = spec.rate {
            c.rate = r.rate;
            c.packet_overhead = r.packet_overhead;
            c.cell_size = r.cell_size;
            c.cell_overhead = r.cell_overhead;
        }
        c.ecn |= spec.ecn;
        if let Some(s) = spec.slot {
            self.get_slot(s);
        }
        self.cfg.jitter = self.cfg.jitter.abs().min(i64::from(i32::MAX));
        if let Some(seed) = spec.seed {
            self.seed = seed;
            self.prng = RndState::seeded(seed);
        }
        Ok(())
    }

    /// Kernel: `get_loss_clg()`, or the random model without one.
    fn set_loss_model(&mut self, m: Option<NetemLoss>) {
        let (model, clg) = match m {
            None => (LossModel::Random, self.clg),
            Some(NetemLoss::State {
                p13,
                p31,
                p32,
                p23,
                p14,
            }) => (
                LossModel::FourStates,
                Clg {
                    state: TX_IN_GAP_PERIOD,
                    a1: p13,
                    a2: p31,
                    a3: p32,
                    a4: p14,
                    a5: p23,
                },
            ),
            Some(NetemLoss::Gemodel { p, r, h, k1 }) => (
                LossModel::GilbertElliott,
                Clg {
                    state: GOOD_STATE,
                    a1: p,
                    a2: r,
                    a3: h,
                    a4: k1,
                    a5: self.clg.a5,
                },
            ),
        };
        self.cfg.loss_model = model;
        self.clg = clg;
    }

    /// Kernel: `get_correlation()`, `get_reorder()`, `get_corrupt()`.
    fn set_correlated(&mut self, spec: &NetemSpec) {
        let e = &mut self.entropy;
        if let Some(c) = spec.corr {
            self.cors.delay = CrndState::init(c.delay, e);
            self.cors.loss = CrndState::init(c.loss, e);
            self.cors.dup = CrndState::init(c.duplicate, e);
        }
        if let Some(r) = spec.reorder {
            self.cfg.reorder = r.probability;
            self.cors.reorder = CrndState::init(r.correlation, e);
        }
        if let Some(r) = spec.corrupt {
            self.cfg.corrupt = r.probability;
            self.cors.corrupt = CrndState::init(r.correlation, e);
        }
    }

    /// Kernel: `get_slot()`: budgets of 0 mean unlimited; slots run when
    /// any interval is set, the first one already open.
    fn get_slot(&mut self, s: NetemSlot) {
        let mut s = s;
        if s.max_packets == 0 {
            s.max_packets = i32::MAX;
        }
        if s.max_bytes == 0 {
            s.max_bytes = i32::MAX;
        }
        s.dist_jitter = s.dist_jitter.abs().min(i64::from(i32::MAX));
        self.cfg.slot = s;
        self.slot = SlotState {
            next: 0,
            active: (s.min_delay | s.max_delay | s.dist_jitter) != 0,
            packets_left: s.max_packets,
            bytes_left: s.max_bytes,
        };
    }

    /// True when it duplicates packets (for the kernel's refusal to mix a
    /// duplicating netem with other netems in one tree).
    pub fn duplicates(&self) -> bool {
        self.cfg.duplicate != 0
    }

    /// The seed of its generator (`TCA_NETEM_PRNG_SEED`, which tc 6.1
    /// does not print).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Tells it whether it is the root of its tree (the default). A root
    /// queues its duplicates itself, as the kernel's root enqueue does;
    /// any other keeps them for [`Netem::take_duplicates`].
    pub fn set_root(&mut self, root: bool) {
        self.root = root;
    }

    /// The duplicates made since the last call, for the caller to enqueue
    /// at the root of the tree (a netem that is not the root).
    pub fn take_duplicates(&mut self) -> std::vec::Drain<'_, PacketBuf> {
        self.dups.drain(..)
    }

    /// The parameters as `tc -j qdisc show` gives them (`"options"`), a
    /// JSON object in tc 6.1's order, nested objects included.
    pub fn options_json(&self) -> String {
        print::json(&self.dump())
    }
}

impl Netem {
    /// Kernel: `netem_enqueue()`; `first` is false for a duplicate (the
    /// kernel's `tc_depth`), which is not duplicated again.
    fn enqueue_one(
        &mut self,
        mut pkt: PacketBuf,
        now: Instant,
        to_free: &mut ToFree,
        first: bool,
    ) -> NetXmit {
        let mut count = 1;
        if self.cfg.duplicate != 0
            && first
            && self.cfg.duplicate >= get_crandom(Some(&mut self.cors.dup), &mut self.prng)
        {
            count += 1;
        }
        if self.loss_event() {
            if self.cfg.ecn && super::codel::set_ce(&mut pkt) {
                self.stats.drops += 1; // counted, though only marked
            } else {
                count -= 1;
            }
        }
        if count == 0 {
            self.stats.drops += 1;
            to_free.push(pkt, DropReason::QdiscDrop);
            // NET_XMIT_SUCCESS | __NET_XMIT_BYPASS: the sender sees success.
            return NetXmit::Success;
        }
        let c = &self.cfg;
        if c.latency != 0 || c.jitter != 0 || c.rate != 0 {
            pkt.release_owner(); // skb_orphan_partial()
        }
        let dup = (count > 1).then(|| copy_packet(&pkt));
        if self.cfg.corrupt != 0
            && self.cfg.corrupt >= get_crandom(Some(&mut self.cors.corrupt), &mut self.prng)
        {
            self.corrupt(&mut pkt);
        }
        if self.stats.qlen >= u64::from(self.cfg.limit) {
            self.stats.drops += 1;
            to_free.push(pkt, DropReason::QdiscDrop);
            if let Some(d) = dup {
                to_free.push(d, DropReason::QdiscDrop);
            }
            return NetXmit::Drop;
        }
        if let Some(d) = dup {
            if self.root {
                self.enqueue_one(d, now, to_free, false);
            } else {
                self.dups.push(d);
            }
        }
        self.queue(pkt, now.as_nanos());
        NetXmit::Success
    }

    /// Kernel: `loss_event()`.
    fn loss_event(&mut self) -> bool {
        match self.cfg.loss_model {
            LossModel::Random => {
                self.cfg.loss != 0
                    && self.cfg.loss >= get_crandom(Some(&mut self.cors.loss), &mut self.prng)
            }
            LossModel::FourStates => loss_4state(&mut self.clg, &mut self.prng),
            LossModel::GilbertElliott => loss_gilb_ell(&mut self.clg, &mut self.prng),
        }
    }

    /// The corruption of `netem_enqueue()`: a pending checksum completed
    /// (`skb_checksum_help()`), then one bit of one byte of the linear
    /// data flipped.
    fn corrupt(&mut self, pkt: &mut PacketBuf) {
        if matches!(pkt.meta.ip_summed, CsumState::Partial { .. }) {
            crate::offload::csum::checksum_help(pkt);
        }
        let headlen = pkt.linear_len();
        if headlen == 0 {
            return;
        }
        let i = self.entropy.below(headlen as u32) as usize;
        let bit = self.entropy.below(8);
        pkt.linear_mut()[i] ^= 1 << bit;
    }

    /// The end of `netem_enqueue()`: to the head queue (reordered, sent
    /// at once) or to the time queue at its time to send.
    fn queue(&mut self, pkt: PacketBuf, now: u64) {
        let c = self.cfg;
        self.stats.queued(pkt.len());
        if c.gap == 0
            || self.counter < c.gap - 1
            || c.reorder < get_crandom(Some(&mut self.cors.reorder), &mut self.prng)
        {
            let tts = self.time_to_send(pkt.len() as u64, now);
            self.counter = self.counter.wrapping_add(1);
            self.tfifo.enqueue(pkt, tts);
        } else {
            self.counter = 0;
            self.head.push_front(Timed { tts: now, pkt });
            self.stats.requeues += 1;
        }
    }

    /// The time to send of a packet of `len` bytes arriving at `now`: the
    /// delay drawn, and with rate emulation its serialisation after the
    /// last packet queued.
    fn time_to_send(&mut self, len: u64, now: u64) -> u64 {
        let c = self.cfg;
        let dist = c.delay_dist.map(NetemDist::table);
        let mut delay = tabledist(
            c.latency,
            c.jitter as i32,
            Some(&mut self.cors.delay),
            &mut self.prng,
            dist,
        );
        let mut base = now;
        if c.rate != 0 {
            if let Some(last) = self.last_tts() {
                // The last packet's time is the reference: the delay left.
                delay = delay.wrapping_sub(last.wrapping_sub(now) as i64).max(0);
                base = last;
            }
            delay = delay.wrapping_add(self.packet_time_ns(len) as i64);
        }
        base.saturating_add_signed(delay)
    }

    /// The latest time to send queued (the head queue's tail, the time
    /// queue's last), the reference of rate emulation.
    fn last_tts(&self) -> Option<u64> {
        let head = self.head.back().map(|t| t.tts);
        match (head, self.tfifo.last_tts()) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Kernel: `packet_time_ns()`: the packet's bytes and overhead, in
    /// whole cells when cells are set, at the rate.
    fn packet_time_ns(&self, len: u64) -> u64 {
        let c = &self.cfg;
        let mut len = len.wrapping_add(c.packet_overhead as i64 as u64);
        if let Some(mut cells) = (len as u32).checked_div(c.cell_size) {
            if len > u64::from(cells.wrapping_mul(c.cell_size)) {
                cells = cells.wrapping_add(1);
            }
            let cell = c.cell_size.wrapping_add(c.cell_overhead as u32);
            len = u64::from(cells.wrapping_mul(cell));
        }
        len.wrapping_mul(1_000_000_000) / c.rate
    }

    /// Kernel: `get_slot_next()`: the next slot starts after a random
    /// interval (uniform between the bounds, or from the slot
    /// distribution), with fresh budgets.
    fn get_slot_next(&mut self, now: u64) {
        let s = self.cfg.slot;
        let next_delay = match self.cfg.slot_dist {
            None => {
                let span = u128::from(s.max_delay.wrapping_sub(s.min_delay) as u64);
                let r = u128::from(self.entropy.next_u32());
                s.min_delay.wrapping_add(((span * r) >> 32) as i64)
            }
            Some(d) => tabledist(
                s.dist_delay,
                s.dist_jitter as i32,
                None,
                &mut self.prng,
                Some(d.table()),
            ),
        };
        self.slot.next = now.saturating_add_signed(next_delay);
        self.slot.packets_left = s.max_packets;
        self.slot.bytes_left = s.max_bytes;
    }

    /// A packet of `len` bytes sent in the current slot: its budgets
    /// charged, the next slot drawn once one is spent.
    fn slot_charge(&mut self, len: usize, now: u64) {
        if !self.slot.active {
            return;
        }
        self.slot.packets_left = self.slot.packets_left.wrapping_sub(1);
        self.slot.bytes_left = self.slot.bytes_left.wrapping_sub(len as i32);
        if self.slot.packets_left <= 0 || self.slot.bytes_left <= 0 {
            self.get_slot_next(now);
        }
    }

    /// The delivery of `netem_dequeue()`: a packet leaving the qdisc.
    fn deliver(&mut self, pkt: PacketBuf) -> Dequeued {
        self.stats.unqueued(pkt.len());
        self.stats.sent(pkt.len());
        Dequeued::Packet(pkt)
    }

    /// A due packet into the child (`qdisc_enqueue()` in
    /// `netem_dequeue()`): one the child refuses leaves the counts, and
    /// what the child drops of its own accord is carried up.
    fn give_child(&mut self, pkt: PacketBuf, now: Instant) {
        let len = pkt.len() as u64;
        let Some((_, c)) = self.child.as_mut() else {
            return;
        };
        let before = *c.stats();
        let r = c.enqueue(pkt, now, &mut self.dropped);
        let after = *c.stats();
        let st = &mut self.stats;
        if r == NetXmit::Success {
            // Queued (we count it already): beyond one more packet, what
            // the child holds less it dropped (`qdisc_tree_reduce_backlog`).
            st.qlen = (st.qlen + after.qlen).saturating_sub(before.qlen + 1);
            st.backlog = (st.backlog + after.backlog).saturating_sub(before.backlog + len);
            st.drops += after.drops.saturating_sub(before.drops);
        } else {
            st.drops += 1;
            st.backlog = st.backlog.saturating_sub(len);
            st.qlen = st.qlen.saturating_sub(1);
        }
    }

    /// The child's next packet (`q->qdisc->ops->dequeue()`), its counts
    /// carried into ours.
    fn child_dequeue(&mut self, now: Instant) -> Dequeued {
        let Some((_, c)) = self.child.as_mut() else {
            return Dequeued::Empty;
        };
        match super::on_child(&mut self.stats, &mut **c, |q| q.dequeue(now)) {
            Dequeued::Packet(p) => {
                self.stats.sent(p.len());
                Dequeued::Packet(p)
            }
            d => d,
        }
    }

    /// What `netem_dump()` reports.
    fn dump(&self) -> Dump {
        let (c, g) = (&self.cfg, &self.clg);
        let ticks = |ns: i64| (ns >> PSCHED_SHIFT).clamp(0, i64::from(u32::MAX)) as u32;
        let unset = |v: i32| if v == i32::MAX { 0 } else { v };
        let s = c.slot;
        Dump {
            limit: c.limit,
            latency: ticks(c.latency),
            jitter: ticks(c.jitter),
            loss: c.loss,
            gap: c.gap,
            duplicate: c.duplicate,
            corr: [self.cors.delay.rho, self.cors.loss.rho, self.cors.dup.rho],
            reorder: [c.reorder, self.cors.reorder.rho],
            corrupt: [c.corrupt, self.cors.corrupt.rho],
            rate: c.rate,
            rate_extra: (c.packet_overhead, c.cell_size, c.cell_overhead),
            ecn: c.ecn,
            gi: (c.loss_model == LossModel::FourStates).then_some([g.a1, g.a2, g.a3, g.a5, g.a4]),
            ge: (c.loss_model == LossModel::GilbertElliott).then_some([g.a1, g.a2, g.a3, g.a4]),
            slot: ((s.min_delay | s.max_delay | s.dist_jitter) != 0).then_some((
                s.min_delay,
                s.max_delay,
                unset(s.max_packets),
                unset(s.max_bytes),
                s.dist_delay,
                s.dist_jitter,
            )),
        }
    }
}

impl Qdisc for Netem {
    fn options_json(&self) -> Option<String> {
        Some(Netem::options_json(self))
    }

    fn duplicating_netem(&self) -> bool {
        self.duplicates()
    }

    fn kind(&self) -> &'static str {
        "netem"
    }

    /// Kernel: `netem_enqueue()`. See the module documentation.
    fn enqueue(&mut self, pkt: PacketBuf, now: Instant, to_free: &mut ToFree) -> NetXmit {
        self.enqueue_one(pkt, now, to_free, true)
    }

    /// Kernel: `netem_dequeue()`: the head queue, then the time queue's
    /// head once due (and within a slot) — into the child when there is
    /// one — then the child.
    fn dequeue(&mut self, now: Instant) -> Dequeued {
        let t = now.as_nanos();
        loop {
            if let Some(h) = self.head.pop_front() {
                return self.deliver(h.pkt);
            }
            let Some(tts) = self.tfifo.peek_tts() else {
                break;
            };
            if self.slot.active && self.slot.next < tts {
                self.get_slot_next(t);
            }
            if tts > t || self.slot.next > t {
                let wait = Instant::from_nanos(tts.max(self.slot.next));
                return match self.child_dequeue(now) {
                    Dequeued::Empty => Dequeued::Throttled(wait),
                    Dequeued::Throttled(w) => Dequeued::Throttled(w.min(wait)),
                    p => p,
                };
            }
            let Some(pkt) = self.tfifo.pop() else {
                break;
            };
            self.slot_charge(pkt.len(), t);
            if self.child.is_none() {
                return self.deliver(pkt);
            }
            self.give_child(pkt, now);
        }
        self.child_dequeue(now)
    }

    /// The packet a dequeue would consider first: the head queue's, the
    /// child's, else the time queue's head (due or not: the kernel's
    /// `qdisc_peek_dequeued()` would dequeue to know).
    fn peek(&self) -> Option<&PacketBuf> {
        if let Some(h) = self.head.front() {
            return Some(&h.pkt);
        }
        let child = self.child.as_ref().and_then(|(_, c)| c.peek());
        child.or_else(|| self.tfifo.peek())
    }

    /// Kernel: `netem_reset()`: both queues and the child purged.
    fn reset(&mut self, to_free: &mut ToFree) {
        for t in self.head.drain(..) {
            to_free.push(t.pkt, DropReason::QueuePurge);
        }
        self.tfifo.reset(to_free);
        if let Some((_, c)) = &mut self.child {
            c.reset(to_free);
        }
        self.stats.qlen = 0;
        self.stats.backlog = 0;
    }

    fn stats(&self) -> &QdiscStats {
        &self.stats
    }

    fn stats_mut(&mut self) -> &mut QdiscStats {
        &mut self.stats
    }

    /// tc 6.1's `netem_print_opt()`: `limit 1000 delay 100ms  10ms loss 1%`.
    fn params(&self) -> String {
        print::text(&self.dump())
    }

    /// The JSON object's scalar members; the nested ones (`delay`,
    /// `loss-random`, `rate`, `slot`...) are in [`Netem::options_json`].
    fn options(&self) -> Vec<(&'static str, OptValue)> {
        vec![
            ("limit", OptValue::Num(u64::from(self.cfg.limit))),
            ("ecn", OptValue::Bool(self.cfg.ecn)),
            ("gap", OptValue::Num(u64::from(self.cfg.gap))),
        ]
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn take_dropped(&mut self, to_free: &mut ToFree) {
        for (p, r) in self.dropped.drain() {
            to_free.push(p, r);
        }
        if let Some((_, c)) = &mut self.child {
            c.take_dropped(to_free);
        }
    }

    fn set_handle(&mut self, handle: u32) {
        self.handle = handle;
    }

    /// Kernel: `netem_walk()`/`netem_dump_class()`: class 1, shown only
    /// while a qdisc is grafted on it.
    fn classes(&self) -> Vec<u32> {
        match self.child {
            Some(_) => vec![1],
            None => Vec::new(),
        }
    }

    fn classful(&self) -> bool {
        true
    }

    /// Kernel: `netem_find()`: every class id names its one class.
    fn class_find(&self, _classid: u32) -> bool {
        true
    }

    /// Kernel: `netem_graft()` (`qdisc_replace()`): the old child's packets
    /// purged; `None` leaves the class without a qdisc.
    fn graft(
        &mut self,
        _classid: u32,
        new: Option<(u32, Box<dyn Qdisc>)>,
        to_free: &mut ToFree,
    ) -> Result<(), ClassError> {
        if let Some((_, old)) = &mut self.child {
            super::on_child(&mut self.stats, &mut **old, |q| q.reset(to_free));
        }
        self.child = new;
        Ok(())
    }

    /// Kernel: `netem_leaf()`.
    fn leaf_mut(&mut self, _classid: u32) -> Option<(u32, &mut dyn Qdisc)> {
        let (h, q) = self.child.as_mut()?;
        Some((*h, &mut **q))
    }

    fn children(&self) -> Vec<(u32, u32, &dyn Qdisc)> {
        let major = self.handle & 0xffff_0000;
        self.child
            .iter()
            .map(|(h, q)| (major | 1, *h, &**q))
            .collect()
    }

    fn children_mut(&mut self) -> Vec<(u32, &mut dyn Qdisc)> {
        self.child
            .iter_mut()
            .map(|(h, q)| (*h, &mut **q as &mut dyn Qdisc))
            .collect()
    }
}
