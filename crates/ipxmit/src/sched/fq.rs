//! `fq`: the Fair Queue packet scheduler, with per-flow pacing.
//!
//! Stands for net/sched/sch_fq.c (Linux 6.18); its tc side (parsing and
//! printing) is iproute2 6.1's `tc/q_fq.c`.
//!
//! # Algorithm
//!
//! Packets are grouped into *flows*, each a queue of at most `flow_limit`
//! packets in departure-time order, found through a hash table of
//! `buckets` chains. A flow is keyed by its socket when the socket is
//! connected (all its packets are one flow, whatever their destination);
//! a packet without a socket (forwarded, injected), or of a socket that is
//! not connected (`TCP_CLOSE`, e.g. a UDP socket sending with `sendto`), is
//! keyed by its flow hash masked with `orphan_mask`: `(skb_get_hash() &
//! orphan_mask) << 1 | 1` (the packet's hash, or a hash of its addresses,
//! protocol and ports as `fq_codel` computes it). A socket's key is even,
//! as the kernel's socket pointers are, so the two never meet; the bucket
//! is the kernel's `hash_ptr(key, log)`.
//!
//! Each packet's priority picks one of three *bands* (`prio2band`, the
//! `pfifo_fast` map); the bands are served by weighted round robin with
//! byte credits (589824, 196608 and 65536 bytes per turn), and at most
//! `limit` packets may wait in each band.
//!
//! - **Enqueue.** A band already holding `limit` packets drops the packet.
//!   The packet's departure time is its `tstamp` (`SO_TXTIME`'s
//!   `SCM_TXTIME`), or now when it has none; one beyond `now + horizon` is
//!   dropped (`horizon_drops`), or with `horizon_cap` moved back to the
//!   horizon (`horizon_caps`). When the packet is due now, nothing is
//!   eligible to be sent (the qdisc empty, or every flow idle or throttled,
//!   none of them due, with fewer than 8 packets in the fast path), its
//!   socket set no `SO_MAX_PACING_RATE` and no `maxrate` is set, the packet
//!   takes the *fast path*: an internal queue served before every flow,
//!   without credit or pacing. Otherwise its flow is found (or
//!   made, with `initial_quantum` of credit; up to 8 detached flows more
//!   than 3 s idle met on the way are freed: garbage collection), a flow
//!   already `flow_limit` deep drops it, and a flow that was on no list
//!   joins the *new* flows of its band (its credit raised to `quantum` if it
//!   has been idle longer than `refill_delay`).
//! - **Dequeue.** The fast path first. Then flows whose pacing time has
//!   come leave the throttled set for the tail of the old flows. Within the
//!   band being served, the first new flow, else the first old flow: a flow
//!   without credit gets `quantum` more and goes to the tail of the old
//!   flows; a flow whose head may not leave yet (`time_next_packet` in the
//!   future) becomes throttled; an empty new flow goes to the old flows, an
//!   empty old flow is detached. A packet sent costs its flow and its band
//!   its length; a packet that waited longer than `ce_threshold` is marked
//!   CE. A flow's next packet is its earliest (`queue.rs`: packets in time
//!   order in a list, earlier ones in a tree beside it), and it may leave
//!   at the later of its departure time and the flow's pacing time. When
//!   no band has an eligible flow the qdisc is throttled until the
//!   earliest such time.
//! - **Pacing** (unless `nopacing`). A packet without a departure time is
//!   paced at the lower of `maxrate` and its socket's pacing rate
//!   (`sk_pacing_rate`: for UDP and raw sockets unlimited until
//!   `SO_MAX_PACING_RATE` lowers it). At or below `low_rate_threshold`
//!   every packet is paced on its own length and the flow's credit is
//!   cleared; above it a flow sends freely until its credit is spent, then
//!   waits `max(len, quantum)` at the rate. A packet with a departure time
//!   is paced on its own length at `maxrate` alone, credit or not (its
//!   sender paces it already). The wait is `len * NSEC_PER_SEC / rate`
//!   nanoseconds (truncated, at most one second: `pkts_too_long`), less up
//!   to half of it for the lateness of the previous departure.
//!
//! The socket's pacing rates are those the socket had when it sent the
//! packet (`Meta::sk`); the kernel reads them through `skb->sk` at the
//! dequeue, so a rate changed while packets wait applies to them there,
//! not here.
//!
//! Jiffies (`refill_delay`, garbage collection) count at `HZ` = 1000.
//! Garbage collection is simplified: the kernel looks at the flows on the
//! search path of the bucket's red-black tree, ipxmit at the bucket's chain
//! before the flow looked for. The flow table is allocated up front and
//! grows only with the number of flows; freed flows (and their queues'
//! memory) are reused, so steady traffic allocates nothing per packet.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::codel::set_ce;
use super::{Dequeued, NetXmit, OptValue, Qdisc, QdiscStats, SpecError, ToFree};
use crate::buf::{Meta, PacketBuf, SockMeta};
use crate::stats::DropReason;
use crate::time::Instant;

mod flows;
mod parse;
mod print;
mod queue;
#[cfg(test)]
mod tests;

pub use parse::{parse_fq, FqSpec};
use queue::FlowQueue;

/// `FQ_BANDS`.
pub const BANDS: usize = 3;
/// `FQ_MIN_WEIGHT`: the smallest band weight the kernel takes.
pub const MIN_WEIGHT: i32 = 16384;
/// The largest `initial_quantum` (the netlink policy's range).
pub const INITIAL_QUANTUM_MAX: u32 = 1 << 20;
/// `NSEC_PER_SEC`.
const NSEC_PER_SEC: u64 = 1_000_000_000;
/// The kernel's `CONFIG_HZ` as modelled here.
const HZ: u64 = 1000;
/// `MAX_JIFFY_OFFSET`.
const MAX_JIFFY_OFFSET: u64 = ((i64::MAX as u64) >> 1) - 1;
/// `FQ_GC_AGE`: a detached flow idle this many jiffies may be freed.
const GC_AGE: u64 = 3 * HZ;
/// `FQ_GC_MAX`: flows freed at most per look-up.
const GC_MAX: usize = 8;
/// The fast path takes packets while fewer than this many wait in it.
const FASTPATH_MAX: usize = 8;
/// `~0UL`: no rate (no `maxrate`).
const NO_RATE: u64 = u64::MAX;
/// `~0ULL`: no throttled flow.
const NO_TIME: u64 = u64::MAX;
/// No flow (the kernel's `NULL`).
const NIL: u32 = u32::MAX;
/// `sch_default_prio2band`, the `pfifo_fast` map.
const DEFAULT_PRIO2BAND: [u8; 16] = [1, 2, 2, 2, 1, 2, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];

/// The tunables as the kernel holds them after `fq_init()`/`fq_change()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FqConfig {
    /// Packets per band at most (`sch->limit`).
    pub limit: u32,
    /// Packets per flow at most (`flow_plimit`).
    pub flow_limit: u32,
    /// Credit a flow gets per round, in bytes.
    pub quantum: u32,
    /// Credit of a new flow, in bytes.
    pub initial_quantum: u32,
    /// Idle time after which a flow's credit is refilled, in jiffies.
    pub refill_delay: u64,
    /// Pacing rate cap per flow in bytes per second (`u64::MAX`: none).
    pub maxrate: u64,
    /// At or below this rate (bytes per second) every packet is paced.
    pub low_rate_threshold: u32,
    /// Pacing on (`rate_enable`).
    pub pacing: bool,
    /// Log2 of the number of hash buckets (`fq_trees_log`).
    pub buckets_log: u32,
    /// Mask on the flow hash of packets without a (connected) socket.
    pub orphan_mask: u32,
    /// Sojourn above which packets are marked CE, in nanoseconds.
    pub ce_threshold: u64,
    /// Slack of the pacing timer, in nanoseconds.
    pub timer_slack: u32,
    /// Departure times further than this ahead are dropped or capped (ns).
    pub horizon: u64,
    /// Drop (rather than cap) packets beyond the horizon.
    pub horizon_drop: bool,
    /// Priority (`skb->priority & 15`) to band.
    pub prio2band: [u8; 16],
    /// Credit of each band per round (`band_flows[].quantum`).
    pub weights: [i32; BANDS],
}

impl FqConfig {
    /// Kernel: `fq_init()`'s defaults on a device whose `psched_mtu` is
    /// `psched_mtu`: quantum two MTUs, initial quantum ten.
    pub fn new(psched_mtu: u32) -> FqConfig {
        let mtu = psched_mtu.clamp(1, 1 << 20);
        FqConfig {
            limit: 10_000,
            flow_limit: 100,
            quantum: (2 * mtu).clamp(256, 1 << 20),
            initial_quantum: (10 * mtu).min(1 << 20),
            refill_delay: 40 * HZ / 1000,
            maxrate: NO_RATE,
            low_rate_threshold: 550_000 / 8,
            pacing: true,
            buckets_log: 10,
            orphan_mask: 1024 - 1,
            ce_threshold: 1000 * u64::from(u32::MAX),
            timer_slack: 10_000,
            horizon: 10 * NSEC_PER_SEC,
            horizon_drop: true,
            prio2band: DEFAULT_PRIO2BAND,
            weights: [9 << 16, 3 << 16, 1 << 16],
        }
    }
}

/// A packet waiting in a flow (`fq_skb_cb`).
#[derive(Debug)]
struct Queued {
    pkt: PacketBuf,
    time_to_send: u64,
    band: u8,
}

/// Where a flow is (the kernel's overloaded `age`/`tail` and `next`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// In the table, on no list; emptied at `age` (`jiffies | 1`).
    Detached { age: u64 },
    /// On a new or old list.
    Listed,
    /// In the throttled set.
    Throttled,
    /// A free slot of the table.
    Free,
}

/// One flow (`struct fq_flow`).
#[derive(Debug)]
struct Flow {
    /// The kernel's `sk`: the socket's (even) key, or `(hash << 1) | 1`.
    key: u64,
    q: FlowQueue,
    link: Link,
    credit: i32,
    band: u8,
    /// The next flow on its list.
    next: u32,
    time_next_packet: u64,
    /// The next flow in its bucket.
    bucket_next: u32,
}

/// A list of flows (`struct fq_flow_head`).
#[derive(Clone, Copy, Debug)]
struct FlowList {
    first: u32,
    last: u32,
}

/// One band's lists and credit (`struct fq_perband_flows`).
#[derive(Clone, Copy, Debug)]
struct Band {
    new_flows: FlowList,
    old_flows: FlowList,
    credit: i32,
}

/// The counters `tc -s` shows (`struct tc_fq_qd_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FqStats {
    /// Flows freed by garbage collection.
    pub gc_flows: u64,
    /// Packets sent through the fast path.
    pub fastpath_packets: u64,
    /// Times a flow became throttled.
    pub throttled: u64,
    /// Packets dropped because their flow was full.
    pub flows_plimit: u64,
    /// Packets whose pacing delay was cut to one second.
    pub pkts_too_long: u64,
    /// Flows that could not be allocated (never, here).
    pub allocation_errors: u64,
    /// Packets marked CE.
    pub ce_mark: u64,
    /// Packets dropped beyond the horizon.
    pub horizon_drops: u64,
    /// Departure times capped to the horizon.
    pub horizon_caps: u64,
    /// Packets dropped because their band was full.
    pub band_drops: [u64; BANDS],
}

/// The `fq` qdisc. See the module documentation.
#[derive(Debug)]
pub struct Fq {
    cfg: FqConfig,
    flows: Vec<Flow>,
    /// Free slots of `flows`.
    free: Vec<u32>,
    /// First flow of each bucket.
    buckets: Vec<u32>,
    bands: [Band; BANDS],
    /// The band being served (`band_nr`).
    band_nr: usize,
    /// The fast path queue (`q->internal`).
    internal: FlowQueue,
    /// Throttled flows by `time_next_packet`, then order of arrival.
    delayed: BinaryHeap<Reverse<(u64, u64, u32)>>,
    delayed_seq: u64,
    time_next_delayed_flow: u64,
    unthrottle_latency_ns: u64,
    band_pkt_count: [u32; BANDS],
    nflows: u32,
    inactive_flows: u32,
    throttled_flows: u32,
    xs: FqStats,
    stats: QdiscStats,
    /// The clock at the last operation (a change trims at it).
    last_now: u64,
}

/// Kernel: `jiffies` at `now` nanoseconds.
fn jiffies(now: u64) -> u64 {
    now / (NSEC_PER_SEC / HZ)
}

/// Kernel: `time_after(a, b)`.
fn time_after(a: u64, b: u64) -> bool {
    (b.wrapping_sub(a) as i64) < 0
}

/// Kernel: `jiffies_to_usecs()` (an `unsigned int`).
fn jiffies_to_usecs(j: u64) -> u32 {
    j.wrapping_mul(1_000_000 / HZ) as u32
}

/// Kernel: `usecs_to_jiffies()`, rounding up.
fn usecs_to_jiffies(us: u32) -> u64 {
    if us > jiffies_to_usecs(MAX_JIFFY_OFFSET) {
        return MAX_JIFFY_OFFSET;
    }
    let per = 1_000_000 / HZ;
    u64::from(us).div_ceil(per)
}

/// Kernel: `qdisc_pkt_len()`.
fn pkt_len(p: &PacketBuf) -> u32 {
    u32::try_from(p.len()).unwrap_or(u32::MAX)
}

impl Fq {
    /// Kernel: `fq_init()` then `fq_change()` with `spec`, on a device whose
    /// `psched_mtu` is `psched_mtu`. `txqueuelen` is not used: fq's limit
    /// defaults to 10000 packets whatever the device's queue length.
    pub fn new(spec: &FqSpec, psched_mtu: u32, txqueuelen: u32) -> Result<Fq, SpecError> {
        let _ = txqueuelen;
        let cfg = FqConfig::new(psched_mtu);
        let band = Band {
            new_flows: FlowList::EMPTY,
            old_flows: FlowList::EMPTY,
            credit: 0,
        };
        let mut q = Fq {
            cfg,
            flows: Vec::with_capacity(cfg.orphan_mask.min(4095) as usize + 1),
            free: Vec::new(),
            buckets: Vec::new(),
            bands: [band; BANDS],
            band_nr: 0,
            internal: FlowQueue::with_capacity(FASTPATH_MAX),
            delayed: BinaryHeap::new(),
            delayed_seq: 0,
            time_next_delayed_flow: NO_TIME,
            unthrottle_latency_ns: 0,
            band_pkt_count: [0; BANDS],
            nflows: 0,
            inactive_flows: 0,
            throttled_flows: 0,
            xs: FqStats::default(),
            stats: QdiscStats::default(),
            last_now: 0,
        };
        q.change(spec, &mut ToFree::default())?;
        Ok(q)
    }

    /// The tunables.
    pub fn config(&self) -> &FqConfig {
        &self.cfg
    }

    /// The counters of `tc -s` (`fq_dump_stats()`'s, without the clock).
    pub fn fq_stats(&self) -> &FqStats {
        &self.xs
    }

    /// Kernel: `fq_change()`. The netlink policy refuses an
    /// `initial_quantum` above 2^20 before anything is applied (`ERANGE`);
    /// a `buckets` log outside 1..=18 is refused (`EINVAL`) *after* the
    /// other options were applied, as in the kernel, and the table is then
    /// left as it was. Above a lowered limit, packets leave through the
    /// normal dequeue at the clock of the last enqueue or dequeue (counted
    /// as sent) into `to_free` (`QueuePurge`), as the kernel frees them; a
    /// throttled qdisc keeps the rest. A table resize frees detached flows
    /// idle for 3 s at that clock too.
    pub fn change(&mut self, spec: &FqSpec, to_free: &mut ToFree) -> Result<(), SpecError> {
        if spec
            .initial_quantum
            .is_some_and(|v| v > INITIAL_QUANTUM_MAX)
        {
            return Err(SpecError::Refused(
                "RTNETLINK answers: Numerical result out of range".into(),
            ));
        }
        let log = match spec.buckets_log {
            Some(l) if (1..=18).contains(&l) => Ok(l),
            Some(_) => Err(SpecError::KernelInvalid),
            None => Ok(self.cfg.buckets_log),
        };
        self.apply(spec);
        if let Ok(log) = log {
            self.resize(log);
        }
        let now = Instant::from_nanos(self.last_now);
        while self.stats.qlen > u64::from(self.cfg.limit) {
            match self.dequeue(now) {
                Dequeued::Packet(p) => to_free.push(p, DropReason::QueuePurge),
                _ => break,
            }
        }
        log.map(|_| ())
    }

    /// Kernel: `fq_change()`'s attribute assignments (`quantum` clamped to
    /// 256..=2^20, the refill delay in jiffies, `defrate` ignored).
    fn apply(&mut self, s: &FqSpec) {
        let c = &mut self.cfg;
        let set = |dst: &mut u32, v: Option<u32>| *dst = v.unwrap_or(*dst);
        set(&mut c.limit, s.limit);
        set(&mut c.flow_limit, s.flow_limit);
        c.quantum = s.quantum.map_or(c.quantum, |v| v.clamp(256, 1 << 20));
        set(&mut c.initial_quantum, s.initial_quantum);
        if let Some(r) = s.maxrate {
            c.maxrate = if r == u32::MAX { NO_RATE } else { u64::from(r) };
        }
        set(&mut c.low_rate_threshold, s.low_rate_threshold);
        c.pacing = s.pacing.unwrap_or(c.pacing);
        if let Some(us) = s.refill_delay_us {
            c.refill_delay = usecs_to_jiffies(us);
        }
        set(&mut c.orphan_mask, s.orphan_mask);
        if let Some(us) = s.ce_threshold_us {
            c.ce_threshold = 1000 * u64::from(us);
        }
        set(&mut c.timer_slack, s.timer_slack_ns);
        if let Some(us) = s.horizon_us {
            c.horizon = 1000 * u64::from(us);
        }
        c.horizon_drop = s.horizon_drop.unwrap_or(c.horizon_drop);
    }

    /// Kernel: `fq_enqueue()`'s departure time: `now` for a packet
    /// without `tstamp` (0); otherwise its `tstamp`, unless beyond
    /// `now + horizon` (`fq_packet_beyond_horizon()`): `None` (to drop,
    /// `horizon_drops`) with `horizon_drop`, else capped there
    /// (`horizon_caps`).
    fn departure(&mut self, tstamp: u64, now: u64) -> Option<u64> {
        if tstamp == 0 {
            return Some(now);
        }
        let limit = now.wrapping_add(self.cfg.horizon);
        if (tstamp as i64) <= (limit as i64) {
            return Some(tstamp);
        }
        if self.cfg.horizon_drop {
            self.xs.horizon_drops += 1;
            return None;
        }
        self.xs.horizon_caps += 1;
        Some(limit)
    }

    /// Kernel: `fq_fastpath_check()` for a packet due at `time_to_send`
    /// of socket `sk` (no `offload_horizon`: tc 6.1 does not set one).
    fn fastpath_ok(&self, time_to_send: u64, sk: &SockMeta, now: u64) -> bool {
        if time_to_send > now {
            return false;
        }
        if self.stats.qlen != 0
            && (self.nflows != self.inactive_flows + self.throttled_flows
                || self.internal.len() >= FASTPATH_MAX
                || self.time_next_delayed_flow <= now)
        {
            return false;
        }
        if sk.max_pacing_rate_set() {
            return false;
        }
        self.cfg.maxrate == NO_RATE
    }

    /// Kernel: `fq_classify()` for a packet due at `time_to_send`: `None`
    /// for the fast path, else the flow. A connected socket's packets are
    /// one flow, keyed by the socket (an even key, as a socket pointer
    /// is); others (no socket, or one not connected, which may send
    /// anywhere) by their flow hash: `(hash & orphan_mask) << 1 | 1`.
    fn classify(&mut self, pkt: &PacketBuf, time_to_send: u64, now: u64) -> Option<u32> {
        let sk = &pkt.meta.sk;
        let key = if sk.connected() {
            sk.id() << 1
        } else {
            let hash = if pkt.meta.hash != 0 {
                pkt.meta.hash
            } else {
                super::fq_codel::header_hash(pkt)
            };
            (u64::from(hash & self.cfg.orphan_mask) << 1) | 1
        };
        if self.fastpath_ok(time_to_send, sk, now) {
            self.xs.fastpath_packets += 1;
            return None;
        }
        Some(self.lookup(key, now))
    }

    /// Kernel: `qdisc_drop()`: drops `pkt` for `reason`.
    fn drop_packet(&mut self, pkt: PacketBuf, reason: DropReason, to_free: &mut ToFree) -> NetXmit {
        self.stats.drops += 1;
        to_free.push(pkt, reason);
        NetXmit::Drop
    }

    /// Kernel: `fq_enqueue()` for a flow of the table: its limit, its
    /// joining the new flows when detached, its band.
    fn enqueue_flow(&mut self, f: u32, qd: Queued, now: u64, to_free: &mut ToFree) -> NetXmit {
        if self.flows[f as usize].q.len() >= self.cfg.flow_limit as usize {
            self.xs.flows_plimit += 1;
            return self.drop_packet(qd.pkt, DropReason::QdiscOverlimit, to_free);
        }
        if let Link::Detached { age } = self.flows[f as usize].link {
            // The flow joins the new flows of its *previous* band, as the
            // kernel's `fq_flow_add_tail()` runs before `f->band = band`.
            self.add_tail(f, true);
            if time_after(jiffies(now), age.wrapping_add(self.cfg.refill_delay)) {
                let fl = &mut self.flows[f as usize];
                fl.credit = (fl.credit as u32).max(self.cfg.quantum) as i32;
            }
        }
        let fl = &mut self.flows[f as usize];
        fl.band = qd.band;
        self.band_pkt_count[qd.band as usize] += 1;
        if fl.q.is_empty() {
            self.inactive_flows -= 1;
        }
        self.stats.queued(qd.pkt.len());
        fl.q.push(qd);
        NetXmit::Success
    }

    /// Kernel: `fq_check_throttled()`: flows whose time has come go to the
    /// tail of the old flows; the unthrottle latency's moving average.
    fn check_throttled(&mut self, now: u64) {
        if self.time_next_delayed_flow > now {
            return;
        }
        let sample = now.wrapping_sub(self.time_next_delayed_flow);
        if (sample as i64) > 0 {
            let l = self.unthrottle_latency_ns;
            self.unthrottle_latency_ns = l.wrapping_sub(l >> 3).wrapping_add(sample >> 3);
        }
        self.time_next_delayed_flow = NO_TIME;
        while let Some(&Reverse((t, _, f))) = self.delayed.peek() {
            if t > now {
                self.time_next_delayed_flow = t;
                break;
            }
            self.delayed.pop();
            self.throttled_flows -= 1;
            self.add_tail(f, false);
        }
    }

    /// Kernel: `fq_flow_set_throttled()`.
    fn set_throttled(&mut self, f: u32) {
        let fl = &mut self.flows[f as usize];
        fl.link = Link::Throttled;
        let t = fl.time_next_packet;
        self.delayed.push(Reverse((t, self.delayed_seq, f)));
        self.delayed_seq += 1;
        self.throttled_flows += 1;
        self.xs.throttled += 1;
        self.time_next_delayed_flow = self.time_next_delayed_flow.min(t);
    }

    /// Kernel: `fq_pband_head_select()` on the band being served: `Some(true)`
    /// for its new flows, `Some(false)` for its old ones.
    fn head_select(&self) -> Option<bool> {
        let b = &self.bands[self.band_nr];
        if b.credit <= 0 {
            return None;
        }
        if b.new_flows.first != NIL {
            Some(true)
        } else {
            (b.old_flows.first != NIL).then_some(false)
        }
    }

    /// Kernel: `fq_dequeue()`'s band loop: the next band, its credit refilled
    /// (to at most its weight); false after three bands in a row had
    /// credit but no flow.
    fn next_band(&mut self, retry: &mut u32) -> bool {
        loop {
            *retry += 1;
            if *retry > BANDS as u32 {
                return false;
            }
            self.band_nr = (self.band_nr + 1) % BANDS;
            let w = self.cfg.weights[self.band_nr];
            let b = &mut self.bands[self.band_nr];
            b.credit = b.credit.wrapping_add(w).min(w);
            if b.credit > 0 {
                return true;
            }
            *retry = 0;
        }
    }

    /// Kernel: `fq_dequeue()`'s visit to the first flow of the band's new (or
    /// old) flows: the packet it sends, with its flow, if any.
    fn serve(&mut self, new: bool, now: u64) -> Option<(u32, Queued)> {
        let f = self.list(self.band_nr, new).first;
        let quantum = self.cfg.quantum;
        let fl = &mut self.flows[f as usize];
        if fl.credit <= 0 {
            fl.credit = fl.credit.wrapping_add(quantum as i32);
            self.pop_head(new);
            self.add_tail(f, false);
            return None;
        }
        let Some(head) = fl.q.peek() else {
            self.pop_head(new);
            if new {
                self.add_tail(f, false);
            } else {
                self.flows[f as usize].link = Link::Detached {
                    age: jiffies(now) | 1,
                };
            }
            return None;
        };
        let tnp = head.time_to_send.max(fl.time_next_packet);
        if now < tnp {
            fl.time_next_packet = tnp;
            self.pop_head(new);
            self.set_throttled(f);
            return None;
        }
        let mut qd = fl.q.pop()?;
        if fl.q.is_empty() {
            self.inactive_flows += 1;
        }
        if (now.wrapping_sub(tnp).wrapping_sub(self.cfg.ce_threshold) as i64) > 0 {
            set_ce(&mut qd.pkt);
            self.xs.ce_mark += 1;
        }
        self.band_pkt_count[qd.band as usize] -= 1;
        Some((f, qd))
    }

    /// Kernel: `fq_dequeue()`'s pacing, for flow `f` having sent a packet
    /// of `plen` bytes with metadata `m` at `now`. A packet without a
    /// departure time is paced at the lower of `maxrate` and its socket's
    /// pacing rate, by quantum (or by packet at low rates); one with a
    /// departure time only at `maxrate`, by packet, whatever the credit.
    fn pace(&mut self, f: u32, m: &Meta, plen: u32, now: u64) {
        let c = &self.cfg;
        let mut rate = c.maxrate;
        let fl = &mut self.flows[f as usize];
        let mut plen = plen;
        if m.tstamp == 0 {
            rate = rate.min(m.sk.pacing_rate());
            if rate <= u64::from(c.low_rate_threshold) {
                fl.credit = 0;
            } else {
                plen = plen.max(c.quantum);
                if fl.credit > 0 {
                    return;
                }
            }
        }
        if rate == NO_RATE {
            return;
        }
        let bytes_ns = u64::from(plen) * NSEC_PER_SEC;
        let mut len = bytes_ns.checked_div(rate).unwrap_or(bytes_ns);
        if len > NSEC_PER_SEC {
            len = NSEC_PER_SEC;
            self.xs.pkts_too_long += 1;
        }
        if fl.time_next_packet != 0 {
            let drift = now.wrapping_sub(fl.time_next_packet) as i64;
            if drift > 0 {
                len -= (len / 2).min(drift as u64);
            }
        }
        fl.time_next_packet = now + len;
    }

    /// Kernel: `fq_dequeue()` with nothing eligible: throttled until the
    /// earliest flow's time (`qdisc_watchdog_schedule_range_ns()`, whose
    /// `timer_slack` lets the timer fire up to that much later), or empty.
    fn idle(&self) -> Dequeued {
        match self.time_next_delayed_flow {
            NO_TIME => Dequeued::Empty,
            t => Dequeued::Throttled(Instant::from_nanos(t)),
        }
    }

    /// Kernel: `fq_dequeue()` past the fast path: the band loop and its
    /// visits, then the credits and the pacing.
    fn dequeue_flows(&mut self, now: u64) -> Result<Queued, Dequeued> {
        self.check_throttled(now);
        let mut retry = 0;
        loop {
            let Some(new) = self.head_select() else {
                if !self.next_band(&mut retry) {
                    return Err(self.idle());
                }
                continue;
            };
            retry = 0;
            let Some((f, qd)) = self.serve(new, now) else {
                continue;
            };
            let plen = pkt_len(&qd.pkt);
            let fl = &mut self.flows[f as usize];
            fl.credit = fl.credit.wrapping_sub(plen as i32);
            let b = &mut self.bands[self.band_nr];
            b.credit = b.credit.wrapping_sub(plen as i32);
            if self.cfg.pacing {
                self.pace(f, &qd.pkt.meta, plen, now);
            }
            return Ok(qd);
        }
    }
}

impl Qdisc for Fq {
    fn kind(&self) -> &'static str {
        "fq"
    }

    /// Kernel: `fq_enqueue()`. See the module documentation.
    fn enqueue(&mut self, mut pkt: PacketBuf, now: Instant, to_free: &mut ToFree) -> NetXmit {
        let now = now.as_nanos();
        self.last_now = now;
        let band = self.cfg.prio2band[(pkt.meta.priority & 15) as usize];
        if self.band_pkt_count[band as usize] >= self.cfg.limit {
            self.xs.band_drops[band as usize] += 1;
            return self.drop_packet(pkt, DropReason::QdiscOverlimit, to_free);
        }
        let Some(time_to_send) = self.departure(pkt.meta.tstamp, now) else {
            return self.drop_packet(pkt, DropReason::QdiscDrop, to_free);
        };
        if pkt.meta.tstamp != 0 {
            // A capped departure time is the packet's from now on.
            pkt.meta.tstamp = time_to_send;
        }
        let target = self.classify(&pkt, time_to_send, now);
        let qd = Queued {
            pkt,
            time_to_send,
            band,
        };
        match target {
            Some(f) => self.enqueue_flow(f, qd, now, to_free),
            None => {
                self.stats.queued(qd.pkt.len());
                self.internal.push(qd);
                NetXmit::Success
            }
        }
    }

    /// Kernel: `fq_dequeue()`.
    fn dequeue(&mut self, now: Instant) -> Dequeued {
        let now = now.as_nanos();
        self.last_now = now;
        if self.stats.qlen == 0 {
            return Dequeued::Empty;
        }
        let qd = match self.internal.pop() {
            Some(qd) => qd,
            None => match self.dequeue_flows(now) {
                Ok(qd) => qd,
                Err(d) => return d,
            },
        };
        self.stats.unqueued(qd.pkt.len());
        self.stats.sent(qd.pkt.len());
        Dequeued::Packet(qd.pkt)
    }

    /// The fast path's head, else the head of the first flow with a packet
    /// due, band by band from the one being served (new flows, then old).
    /// The kernel peeks by dequeueing (`qdisc_peek_dequeued`), which a
    /// shared reference cannot: credit is not looked at here.
    fn peek(&self) -> Option<&PacketBuf> {
        if let Some(qd) = self.internal.peek() {
            return Some(&qd.pkt);
        }
        (0..BANDS)
            .map(|i| (self.band_nr + i) % BANDS)
            .flat_map(|b| [true, false].map(|new| self.list_iter(b, new)))
            .flatten()
            .filter_map(|f| {
                let fl = &self.flows[f as usize];
                let head = fl.q.peek()?;
                (head.time_to_send.max(fl.time_next_packet) <= self.last_now).then_some(head)
            })
            .map(|qd| &qd.pkt)
            .next()
    }

    /// Kernel: `fq_reset()`: every packet dropped, every flow freed (the
    /// counters, the bands' credits and the next throttled time stay).
    fn reset(&mut self, to_free: &mut ToFree) {
        self.internal
            .purge(|qd| to_free.push(qd.pkt, DropReason::QueuePurge));
        self.free_all_flows(to_free);
        self.stats.qlen = 0;
        self.stats.backlog = 0;
    }

    fn stats(&self) -> &QdiscStats {
        &self.stats
    }

    fn stats_mut(&mut self) -> &mut QdiscStats {
        &mut self.stats
    }

    /// tc's `fq_print_opt()`.
    fn params(&self) -> String {
        print::print_opt(&self.cfg)
    }

    fn options(&self) -> Vec<(&'static str, OptValue)> {
        print::options(&self.cfg)
    }

    /// tc's `fq_print_xstats()` of `fq_dump_stats()` at `now`.
    fn xstats(&self, now: Instant) -> Option<String> {
        Some(print::print_xstats(self, now.as_nanos()))
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
