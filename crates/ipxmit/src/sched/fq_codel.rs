//! `fq_codel`: fair queueing with CoDel on every flow (RFC 8290).
//!
//! Stands for `net/sched/sch_fq_codel.c`.
//!
//! # Algorithm
//!
//! Packets are hashed by flow into `flows` queues (the packet's flow hash
//! scaled to the number of flows); a priority `H:N` naming the qdisc picks
//! flow N, and with filters attached their class's minor does (a packet
//! no filter places is dropped, as the kernel does). Each queue runs CoDel
//! ([`super::codel`]) with the shared parameters and its own state; the
//! queues are served by deficit round robin with a `quantum` of bytes.
//!
//! - **Enqueue.** The packet is stamped and queued on its flow. A flow that
//!   is on no list joins the tail of the *new* flows with a full quantum
//!   (a flow still on a list, even empty, is not promoted again: the
//!   sparse-flow rule). Past `limit` packets, or `memory_limit` bytes of
//!   buffer, the fattest flow (the largest byte backlog, the first of
//!   equals) loses packets from its head: up to `drop_batch`, stopping
//!   once half its backlog is gone; its CoDel `count` grows by as many, so
//!   it signals harder. When that flow is the one just enqueued to, the
//!   enqueue reports congestion.
//! - **Dequeue.** The first new flow is served, else the first old one. A
//!   flow whose deficit is spent gets another quantum and goes to the tail
//!   of the old flows. Otherwise CoDel dequeues from it (dropping what it
//!   drops; the one-MTU rule looks at the whole qdisc's backlog); an empty
//!   new flow goes to the tail of the old flows when there are any (so
//!   that new flows cannot starve old ones), an empty old flow leaves the
//!   lists. A packet sent costs its flow its length in deficit.

use super::cls::FilterChain;
use std::collections::VecDeque;
use std::fmt::Write as _;

use super::codel::{
    codel_time, codel_to_us, fmt_codel_time, Codel, CodelParams, CodelQueue, CodelStats, CodelVars,
    CODEL_DISABLED_THRESHOLD,
};
use super::{Dequeued, NetXmit, OptValue, Qdisc, QdiscStats, ToFree};
use crate::buf::PacketBuf;
use crate::stats::DropReason;
use crate::time::Instant;
use crate::units::format_size;

/// The largest `flows` the kernel takes (`65536`).
pub const FLOWS_MAX: u32 = 65536;
/// `FQ_CODEL_QUANTUM_MAX`.
pub const QUANTUM_MAX: u32 = 1 << 20;
/// The smallest quantum (smaller ones are raised to it).
pub const QUANTUM_MIN: u32 = 256;

/// The tunables (`fq_codel_change`'s attributes, applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FqCodelConfig {
    /// Packets queued at most.
    pub limit: u32,
    /// Flow queues (fixed at creation).
    pub flows: u32,
    /// Bytes a flow may send per round.
    pub quantum: u32,
    /// Packets dropped at most per overflow.
    pub drop_batch: u32,
    /// Buffer bytes queued at most.
    pub memory_limit: u32,
    /// CoDel's parameters, shared by the flows.
    pub codel: CodelParams,
}

impl FqCodelConfig {
    /// Kernel: `fq_codel_init()`'s defaults on a device whose `psched_mtu`
    /// is `psched_mtu`: 10240 packets, 1024 flows, a quantum of one MTU,
    /// batches of 64, 32 MiB, CoDel with ECN.
    pub fn new(psched_mtu: u32) -> FqCodelConfig {
        let mut codel = CodelParams::new(psched_mtu);
        codel.ecn = true;
        FqCodelConfig {
            limit: 10 * 1024,
            flows: 1024,
            quantum: psched_mtu.clamp(QUANTUM_MIN, QUANTUM_MAX),
            drop_batch: 64,
            memory_limit: 32 << 20,
            codel,
        }
    }
}

/// One flow queue.
#[derive(Debug, Default)]
struct Flow {
    q: VecDeque<(PacketBuf, u32)>,
    deficit: i32,
    cvars: CodelVars,
    /// On the new or the old list.
    linked: bool,
    /// Bytes queued (`backlogs[]`).
    backlog: u32,
}

/// The `fq_codel` qdisc. See the module documentation.
#[derive(Debug)]
pub struct FqCodel {
    cfg: FqCodelConfig,
    flows: Vec<Flow>,
    new_flows: VecDeque<u32>,
    old_flows: VecDeque<u32>,
    cstats: CodelStats,
    memory_usage: u32,
    drop_overlimit: u32,
    drop_overmemory: u32,
    new_flow_count: u32,
    stats: QdiscStats,
    /// Packets CoDel dropped, to hand over after the dequeue.
    dropped: Vec<PacketBuf>,
    /// The clock at the last operation (a change trims at it).
    last_now: Instant,
    /// The qdisc's handle (a priority `H:N` picks flow N).
    handle: u32,
    /// The qdisc's filters.
    filters: FilterChain,
}

impl FqCodel {
    /// Kernel: `fq_codel_init()` with `cfg` (its flows allocated).
    pub fn new(cfg: FqCodelConfig) -> FqCodel {
        let n = cfg.flows.clamp(1, FLOWS_MAX) as usize;
        FqCodel {
            cfg,
            flows: (0..n).map(|_| Flow::default()).collect(),
            new_flows: VecDeque::with_capacity(n),
            old_flows: VecDeque::with_capacity(n),
            cstats: CodelStats::default(),
            memory_usage: 0,
            drop_overlimit: 0,
            drop_overmemory: 0,
            new_flow_count: 0,
            stats: QdiscStats::default(),
            dropped: Vec::with_capacity(64),
            last_now: Instant::ZERO,
            handle: 0,
            filters: FilterChain::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FqCodelConfig {
        &self.cfg
    }

    /// Kernel: `fq_codel_change()` once `f` has set the tunables: packets
    /// beyond a lowered limit (or memory limit) leave through the normal
    /// dequeue, counted as sent and freed, as the kernel does.
    pub fn change_with(&mut self, f: impl FnOnce(&mut FqCodelConfig), to_free: &mut ToFree) {
        f(&mut self.cfg);
        while self.stats.qlen > u64::from(self.cfg.limit)
            || self.memory_usage > self.cfg.memory_limit
        {
            match self.dequeue(self.last_now) {
                Dequeued::Packet(p) => to_free.push(p, DropReason::QueuePurge),
                _ => break,
            }
        }
    }

    /// Kernel: `fq_codel_classify()`: a priority `H:N` (the qdisc's
    /// handle, N a flow) picks flow N; else without filters the packet's
    /// flow hash scaled to the flows (`reciprocal_scale`); with filters the
    /// minor of their class id (`None`: no match, or out of range, and the
    /// kernel drops the packet).
    fn classify(&self, pkt: &PacketBuf) -> Option<usize> {
        let n = self.flows.len();
        let (major, minor) = (
            pkt.meta.priority & 0xffff_0000,
            (pkt.meta.priority & 0xffff) as usize,
        );
        if major == self.handle && self.handle != 0 && (1..=n).contains(&minor) {
            return Some(minor - 1);
        }
        if !self.filters.is_empty() {
            let c = self.filters.classify(pkt, self.handle)?;
            let m = (c & 0xffff) as usize;
            return (1..=n).contains(&m).then(|| m - 1);
        }
        let hash = if pkt.meta.hash != 0 {
            pkt.meta.hash
        } else {
            header_hash(pkt)
        };
        Some(((u64::from(hash) * n as u64) >> 32) as usize)
    }

    /// Kernel: `fq_codel_drop()`: up to `max` packets from the head of the
    /// fattest flow, stopping at half its backlog. Returns the flow and how
    /// many went.
    fn drop_fattest(&mut self, max: u32, to_free: &mut ToFree) -> (usize, u32) {
        let (mut idx, mut most) = (0, 0);
        for (i, f) in self.flows.iter().enumerate() {
            if f.backlog > most {
                (idx, most) = (i, f.backlog);
            }
        }
        let threshold = most >> 1;
        let (mut len, mut mem, mut n) = (0u32, 0u32, 0u32);
        let flow = &mut self.flows[idx];
        while let Some((p, _)) = flow.q.pop_front() {
            len += p.len() as u32;
            mem += mem_usage(&p);
            to_free.push(p, DropReason::QdiscOverlimit);
            n += 1;
            if n >= max || len >= threshold {
                break;
            }
        }
        flow.cvars.count = flow.cvars.count.wrapping_add(n);
        flow.backlog -= len;
        self.memory_usage -= mem;
        self.stats.drops += u64::from(n);
        self.stats.backlog -= u64::from(len);
        self.stats.qlen -= u64::from(n);
        (idx, n)
    }

    /// One round of the dequeue loop over the flow at the head of `new`
    /// (or old) flows: `Err(())` to go round again.
    fn serve(&mut self, now: Instant) -> Option<Result<PacketBuf, ()>> {
        let from_new = !self.new_flows.is_empty();
        let list = if from_new {
            &mut self.new_flows
        } else {
            &mut self.old_flows
        };
        let idx = *list.front()? as usize;
        let flow = &mut self.flows[idx];
        if flow.deficit <= 0 {
            flow.deficit += self.cfg.quantum as i32;
            list.pop_front();
            self.old_flows.push_back(idx as u32);
            return Some(Err(()));
        }
        let Flow {
            q, cvars, backlog, ..
        } = &mut self.flows[idx];
        let mut fq = FlowQueue {
            q,
            backlog,
            memory_usage: &mut self.memory_usage,
            stats: &mut self.stats,
            dropped: &mut self.dropped,
        };
        let pkt = Codel {
            params: &self.cfg.codel,
            vars: cvars,
            stats: &mut self.cstats,
        }
        .dequeue(&mut fq, now);
        match pkt {
            Some(p) => {
                self.flows[idx].deficit -= p.len() as i32;
                Some(Ok(p))
            }
            None => {
                let list = if from_new {
                    &mut self.new_flows
                } else {
                    &mut self.old_flows
                };
                list.pop_front();
                if from_new && !self.old_flows.is_empty() {
                    self.old_flows.push_back(idx as u32);
                } else {
                    self.flows[idx].linked = false;
                }
                Some(Err(()))
            }
        }
    }
}

/// A flow's queue as CoDel dequeues from it, the qdisc's counters kept.
struct FlowQueue<'a> {
    q: &'a mut VecDeque<(PacketBuf, u32)>,
    backlog: &'a mut u32,
    memory_usage: &'a mut u32,
    stats: &'a mut QdiscStats,
    dropped: &'a mut Vec<PacketBuf>,
}

impl CodelQueue for FlowQueue<'_> {
    fn dequeue(&mut self) -> Option<(PacketBuf, u32)> {
        let (p, t) = self.q.pop_front()?;
        let len = p.len() as u32;
        *self.backlog -= len;
        *self.memory_usage -= mem_usage(&p);
        self.stats.unqueued(len as usize);
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

/// What a packet costs the memory limit (`skb->truesize`).
fn mem_usage(p: &PacketBuf) -> u32 {
    u32::try_from(p.truesize()).unwrap_or(u32::MAX)
}

/// A flow hash from the headers, for a packet that carries none: the IPv4
/// addresses, protocol and the first four bytes after the header (ports).
pub(crate) fn header_hash(p: &PacketBuf) -> u32 {
    let h = p.network_header();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let hlen = h.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
    for &b in h
        .get(9..10)
        .into_iter()
        .chain(h.get(12..20))
        .chain(h.get(hlen..hlen + 4))
        .flatten()
    {
        x = (x ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (x ^ (x >> 32)) as u32
}

impl Qdisc for FqCodel {
    fn kind(&self) -> &'static str {
        "fq_codel"
    }

    /// Kernel: `fq_codel_enqueue()`. See the module documentation.
    fn enqueue(&mut self, pkt: PacketBuf, now: Instant, to_free: &mut ToFree) -> NetXmit {
        self.last_now = now;
        let Some(idx) = self.classify(&pkt) else {
            // Kernel: a filter that gives no flow: `qdisc_qstats_drop` and
            // `__qdisc_drop`.
            self.stats.drops += 1;
            to_free.push(pkt, DropReason::QdiscDrop);
            return NetXmit::Drop;
        };
        let (len, mem) = (pkt.len() as u32, mem_usage(&pkt));
        let flow = &mut self.flows[idx];
        flow.q.push_back((pkt, codel_time(now)));
        flow.backlog += len;
        self.stats.queued(len as usize);
        if !flow.linked {
            flow.linked = true;
            flow.deficit = self.cfg.quantum as i32;
            self.new_flows.push_back(idx as u32);
            self.new_flow_count += 1;
        }
        self.memory_usage += mem;
        let over_memory = self.memory_usage > self.cfg.memory_limit;
        if self.stats.qlen <= u64::from(self.cfg.limit) && !over_memory {
            return NetXmit::Success;
        }
        let (victim, n) = self.drop_fattest(self.cfg.drop_batch, to_free);
        self.drop_overlimit += n;
        if over_memory {
            self.drop_overmemory += n;
        }
        if victim == idx {
            NetXmit::Congested
        } else {
            NetXmit::Success
        }
    }

    /// Kernel: `fq_codel_dequeue()`.
    fn dequeue(&mut self, now: Instant) -> Dequeued {
        self.last_now = now;
        loop {
            match self.serve(now) {
                None => return Dequeued::Empty,
                Some(Ok(p)) => {
                    self.stats.sent(p.len());
                    return Dequeued::Packet(p);
                }
                Some(Err(())) => {}
            }
        }
    }

    /// The head of the flow that would be served first (a parent's look).
    fn peek(&self) -> Option<&PacketBuf> {
        let idx = *self.new_flows.front().or(self.old_flows.front())?;
        self.flows[idx as usize].q.front().map(|(p, _)| p)
    }

    /// Kernel: `fq_codel_reset()`.
    fn reset(&mut self, to_free: &mut ToFree) {
        for f in &mut self.flows {
            for (p, _) in f.q.drain(..) {
                to_free.push(p, DropReason::QueuePurge);
            }
            *f = Flow::default();
        }
        self.new_flows.clear();
        self.old_flows.clear();
        self.memory_usage = 0;
        self.stats.backlog = 0;
        self.stats.qlen = 0;
    }

    fn stats(&self) -> &QdiscStats {
        &self.stats
    }

    fn stats_mut(&mut self) -> &mut QdiscStats {
        &mut self.stats
    }

    fn take_dropped(&mut self, to_free: &mut ToFree) {
        self.cstats.drop_count = 0;
        self.cstats.drop_len = 0;
        for p in self.dropped.drain(..) {
            to_free.push(p, DropReason::QdiscCongested);
        }
    }

    /// `TCQ_F_CAN_BYPASS` when the limit is at least one packet.
    fn can_bypass(&self) -> bool {
        self.cfg.limit >= 1
    }

    /// tc's `fq_codel_print_opt()`.
    fn params(&self) -> String {
        print_fq_codel(&self.cfg)
    }

    fn options(&self) -> Vec<(&'static str, OptValue)> {
        fq_codel_options(&self.cfg)
    }

    /// tc's `fq_codel_print_xstats()` for the qdisc.
    fn xstats(&self, _now: Instant) -> Option<String> {
        let s = &self.cstats;
        let mut o = format!(
            "  maxpacket {} drop_overlimit {} new_flow_count {} ecn_mark {}",
            s.maxpacket, self.drop_overlimit, self.new_flow_count, s.ecn_mark
        );
        for (k, v) in [
            ("ce_mark", s.ce_mark),
            ("memory_used", self.memory_usage),
            ("drop_overmemory", self.drop_overmemory),
        ] {
            if v != 0 {
                let _ = write!(o, " {k} {v}");
            }
        }
        let _ = write!(
            o,
            "\n  new_flows_len {} old_flows_len {}",
            self.new_flows.len(),
            self.old_flows.len()
        );
        Some(o)
    }

    fn set_handle(&mut self, handle: u32) {
        self.handle = handle;
    }

    fn filters(&self) -> Option<&FilterChain> {
        Some(&self.filters)
    }

    fn filters_mut(&mut self) -> Option<&mut FilterChain> {
        Some(&mut self.filters)
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// tc's `fq_codel_print_opt()`: `limit 10240p flows 1024 quantum 1514
/// target 5ms interval 100ms memory_limit 32Mb ecn drop_batch 64 `.
fn print_fq_codel(c: &FqCodelConfig) -> String {
    let p = &c.codel;
    let mut o = format!(
        "limit {}p flows {} quantum {} target {} ",
        c.limit,
        c.flows,
        c.quantum,
        fmt_codel_time(p.target)
    );
    if p.ce_threshold != CODEL_DISABLED_THRESHOLD {
        let _ = write!(o, "ce_threshold {} ", fmt_codel_time(p.ce_threshold));
        if p.ce_threshold_selector != 0 || p.ce_threshold_mask != 0 {
            let _ = write!(
                o,
                "ce_threshold_selector {}/{} ",
                c_hash_x(p.ce_threshold_selector),
                c_hash_x(p.ce_threshold_mask)
            );
        }
    }
    let _ = write!(
        o,
        "interval {} memory_limit {} ",
        fmt_codel_time(p.interval),
        format_size(u64::from(c.memory_limit))
    );
    if p.ecn {
        o += "ecn ";
    }
    if c.drop_batch != 0 {
        let _ = write!(o, "drop_batch {} ", c.drop_batch);
    }
    o
}

/// C's `%#x`: `0`, or `0x` and lower-case hex digits.
fn c_hash_x(v: u8) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("{v:#x}")
    }
}

/// `tc -j`'s options of `fq_codel` (times in microseconds as dumped).
fn fq_codel_options(c: &FqCodelConfig) -> Vec<(&'static str, OptValue)> {
    let p = &c.codel;
    let us = |t| OptValue::Num(u64::from(codel_to_us(t)));
    let mut o = vec![
        ("limit", OptValue::Num(u64::from(c.limit))),
        ("flows", OptValue::Num(u64::from(c.flows))),
        ("quantum", OptValue::Num(u64::from(c.quantum))),
        ("target", us(p.target)),
    ];
    if p.ce_threshold != CODEL_DISABLED_THRESHOLD {
        o.push(("ce_threshold", us(p.ce_threshold)));
        if p.ce_threshold_selector != 0 || p.ce_threshold_mask != 0 {
            o.push((
                "ce_threshold_selector",
                OptValue::Num(u64::from(p.ce_threshold_selector)),
            ));
            o.push((
                "ce_threshold_mask",
                OptValue::Num(u64::from(p.ce_threshold_mask)),
            ));
        }
    }
    o.push(("interval", us(p.interval)));
    o.push(("memory_limit", OptValue::Num(u64::from(c.memory_limit))));
    if p.ecn {
        o.push(("ecn", OptValue::Bool(true)));
    }
    if c.drop_batch != 0 {
        o.push(("drop_batch", OptValue::Num(u64::from(c.drop_batch))));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// A 1000-byte frame of flow `flow` (its hash chosen so that flows 0..
    /// land in different queues of 1024).
    fn pkt(flow: u32, len: usize) -> PacketBuf {
        let mut p = PacketBuf::from_slice(0, &vec![0u8; len]);
        p.meta.hash = flow.wrapping_mul(1 << 22) | 1;
        p
    }

    fn fq(limit: u32) -> FqCodel {
        let mut c = FqCodelConfig::new(1514);
        c.limit = limit;
        FqCodel::new(c)
    }

    fn flow_of(p: &PacketBuf) -> u32 {
        p.meta.hash >> 22
    }

    fn drain(q: &mut FqCodel, t: u64) -> Vec<u32> {
        std::iter::from_fn(|| match q.dequeue(Instant::from_nanos(t)) {
            Dequeued::Packet(p) => Some(flow_of(&p)),
            _ => None,
        })
        .collect()
    }

    #[test]
    fn a_priority_or_a_filter_picks_the_flow() {
        use crate::sched::cls::{parse_filter, FilterSpec, ETH_P_ALL};
        let mut q = fq(10_240);
        q.set_handle(1 << 16);
        let mut tf = ToFree::default();
        // Priority 1:5 goes to flow 5 (index 4), whatever the hash.
        let mut p = pkt(7, 100);
        p.meta.priority = (1 << 16) | 5;
        assert_eq!(q.classify(&p), Some(4));
        // With a filter, its class's minor; no match: dropped and counted.
        let (kind, (matcher, classid, handle)) = parse_filter(
            "basic",
            None,
            &["match", "meta(nf_mark", "eq", "3)", "classid", "1:9"],
        )
        .unwrap();
        let spec = FilterSpec {
            pref: 1,
            protocol: ETH_P_ALL,
            kind,
            handle,
            matcher,
            classid,
        };
        q.filters.add(&spec).unwrap();
        let mut m = pkt(7, 100);
        m.meta.mark = 3;
        assert_eq!(q.classify(&m), Some(8));
        assert_eq!(
            q.enqueue(pkt(7, 100), Instant::ZERO, &mut tf),
            NetXmit::Drop
        );
        assert_eq!((q.stats().drops, q.stats().qlen, tf.len()), (1, 0, 1));
    }

    #[test]
    fn flows_are_served_in_turn_a_quantum_each() {
        let mut q = fq(10_240);
        let mut tf = ToFree::default();
        // Flow 1 sends 6 packets of 1000 bytes, then flow 2 sends 6.
        for f in [1, 2] {
            for _ in 0..6 {
                q.enqueue(pkt(f, 1000), Instant::ZERO, &mut tf);
            }
        }
        let order = drain(&mut q, MS);
        // A quantum of 1514 bytes: a flow sends while its deficit is
        // positive (1514, then 1028 after going 486 below, then 542...),
        // the flows alternating.
        assert_eq!(order, [1, 1, 2, 2, 1, 1, 2, 2, 1, 2, 1, 2]);
    }

    #[test]
    fn a_sparse_flow_goes_before_a_backlogged_one() {
        let mut q = fq(10_240);
        let mut tf = ToFree::default();
        for _ in 0..20 {
            q.enqueue(pkt(1, 1000), Instant::ZERO, &mut tf);
        }
        // Flow 1 has had its first turn and is now an old flow.
        assert_eq!(drain_n(&mut q, 3), [1, 1, 1]);
        // A new, sparse flow is served first.
        q.enqueue(pkt(7, 100), Instant::ZERO, &mut tf);
        assert_eq!(drain_n(&mut q, 1), [7]);
    }

    fn drain_n(q: &mut FqCodel, n: usize) -> Vec<u32> {
        (0..n)
            .filter_map(|_| match q.dequeue(Instant::from_nanos(MS)) {
                Dequeued::Packet(p) => Some(flow_of(&p)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn over_the_limit_the_fattest_flow_loses_from_its_head() {
        let mut q = fq(10);
        let mut tf = ToFree::default();
        for _ in 0..8 {
            q.enqueue(pkt(1, 1000), Instant::ZERO, &mut tf);
        }
        q.enqueue(pkt(2, 1000), Instant::ZERO, &mut tf);
        q.enqueue(pkt(2, 1000), Instant::ZERO, &mut tf);
        // The 11th packet: flow 1 (8000 bytes) loses packets until half
        // of its backlog (4000 bytes) is gone.
        assert_eq!(
            q.enqueue(pkt(2, 1000), Instant::ZERO, &mut tf),
            NetXmit::Success
        );
        assert_eq!(tf.len(), 4);
        assert_eq!(q.stats().drops, 4);
        assert_eq!(q.stats().qlen, 7);
        assert_eq!(q.drop_overlimit, 4);
        assert_eq!(q.flows[q.classify(&pkt(1, 1)).unwrap()].cvars.count, 4);
        // When the fattest flow is the one enqueued to: congestion.
        let mut q = fq(3);
        for _ in 0..4 {
            let r = q.enqueue(pkt(5, 1000), Instant::ZERO, &mut tf);
            assert_eq!(r == NetXmit::Congested, q.drop_overlimit > 0);
        }
    }

    #[test]
    fn each_flow_runs_its_own_codel() {
        let mut q = fq(100_000);
        let mut tf = ToFree::default();
        for _ in 0..3000 {
            q.enqueue(pkt(1, 1000), Instant::ZERO, &mut tf);
        }
        // A flow that keeps a standing queue is dropped from (ECN off for
        // these not-ECT packets) after an interval above target...
        q.cfg.codel.ecn = false;
        let mut t = 6 * MS;
        while q.stats().drops == 0 && t < 400 * MS {
            let _ = q.dequeue(Instant::from_nanos(t));
            t += MS;
        }
        assert_eq!(t, 108 * MS, "first drop at 107 ms");
        let mut dropped = ToFree::default();
        q.take_dropped(&mut dropped);
        assert_eq!(
            dropped.drain().next().map(|(_, r)| r),
            Some(DropReason::QdiscCongested)
        );
        // ...while a sparse flow's packets, each leaving at once, are not.
        let flow2 = q.classify(&pkt(2, 1)).unwrap();
        for i in 0..50 {
            let now = Instant::from_nanos(t + i * MS);
            q.enqueue(pkt(2, 100), now, &mut tf);
            let _ = q.dequeue(now);
        }
        assert!(!q.flows[flow2].cvars.dropping);
    }

    #[test]
    fn tc_prints_fq_codel_as_tc_does() {
        let c = FqCodelConfig::new(1514);
        assert_eq!(
            print_fq_codel(&c),
            "limit 10240p flows 1024 quantum 1514 target 5ms interval 100ms memory_limit 32Mb ecn drop_batch 64 "
        );
        let q = fq(10_240);
        assert_eq!(
            q.xstats(Instant::ZERO).as_deref(),
            Some("  maxpacket 0 drop_overlimit 0 new_flow_count 0 ecn_mark 0\n  new_flows_len 0 old_flows_len 0")
        );
    }
}
