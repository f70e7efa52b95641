//! `red`: Random Early Detection on a byte FIFO.
//!
//! Stands for `net/sched/sch_red.c` and `include/net/red.h`; the
//! parameters as tc works them out are in [`RedSpec`](super::spec::RedSpec).
//!
//! # Algorithm
//!
//! At each enqueue the average queue, in bytes scaled by `2^Wlog`, moves
//! towards the inner queue's backlog: `avg += backlog - avg >> Wlog`.
//! After an idle period the average decays instead, by a shift taken from
//! a 256-entry table indexed by the idle time (`Stab`, `Scell_log`).
//!
//! - Below `min` nothing happens. At or above `max` every packet is
//!   hard-marked. In between, packets counted since the last mark
//!   (`qcount`) raise the chance: a packet is marked once `qcount * (avg -
//!   min) >> Wlog` reaches a random `qR`, drawn uniformly below `2^32 /
//!   (max_P / (max - min))` after each mark (`max_P` a 0.32 fixed-point
//!   probability from tc's `probability`).
//! - A mark is a CE mark on an ECN-capable packet with `ecn` (also for
//!   hard marks unless `harddrop`), else a drop — unless `nodrop`, which
//!   then lets the packet in unmarked.
//! - The packets let in go to an inner `bfifo` of `limit` bytes (drops
//!   there are `pdrop`).
//!
//! The random numbers come from a generator of the qdisc's own with a fixed
//! seed, so a script gives the same drops every run.

use super::fifo::Bfifo;
use super::{Dequeued, NetXmit, OptValue, Qdisc, QdiscStats, ToFree};
use crate::buf::PacketBuf;
use crate::stats::DropReason;
use crate::time::Instant;
use crate::units::{format_g, format_size};

/// `TC_RED_ECN`.
pub const FLAG_ECN: u8 = 1;
/// `TC_RED_HARDDROP`.
pub const FLAG_HARDDROP: u8 = 2;
/// `TC_RED_ADAPTATIVE`.
pub const FLAG_ADAPTIVE: u8 = 4;
/// `TC_RED_NODROP`.
pub const FLAG_NODROP: u8 = 8;

/// What the kernel is given (`struct tc_red_qopt`, the table, `max_P`,
/// the flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedConfig {
    /// Inner bfifo limit, bytes (0: none, every packet dropped).
    pub limit: u32,
    /// Thresholds, bytes.
    pub qth_min: u32,
    /// See `qth_min`.
    pub qth_max: u32,
    /// EWMA weight `2^-Wlog`.
    pub wlog: u8,
    /// `max_P = (2^32 - 1 >> Plog) * (max - min)` when `max_p` is 0.
    pub plog: u8,
    /// Idle-time cell of the table, `2^Scell_log` microseconds.
    pub scell_log: u8,
    /// The idle-time table.
    pub stab: [u8; 256],
    /// `max_P` as given (`TCA_RED_MAX_P`), 0 for none.
    pub max_p: u32,
    /// `FLAG_*`.
    pub flags: u8,
}

/// Kernel: `red_check_params()`: false for what the kernel refuses.
pub fn check_params(c: &RedConfig) -> bool {
    let fls = |x: u32| 32 - x.leading_zeros();
    fls(c.qth_min) + u32::from(c.wlog) < 32
        && fls(c.qth_max) + u32::from(c.wlog) < 32
        && c.scell_log < 32
        && c.qth_max >= c.qth_min
        && c.stab.iter().all(|&s| s < 32)
}

/// What to do with a packet (`red_action`'s answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// `RED_DONT_MARK`.
    Pass,
    /// `RED_PROB_MARK`.
    Probable,
    /// `RED_HARD_MARK`.
    Hard,
}

/// The `red` qdisc. See the module documentation.
#[derive(Debug)]
pub struct Red {
    cfg: RedConfig,
    /// Scaled thresholds and the derived values (`red_parms`).
    parms: RedParms,
    /// `red_vars`.
    vars: RedVars,
    idle_start: Option<Instant>,
    child: Option<Bfifo>,
    psched_mtu: u32,
    stats: QdiscStats,
    prob_drop: u32,
    prob_mark: u32,
    forced_drop: u32,
    forced_mark: u32,
    pdrop: u32,
    rng: u64,
}

/// RED's parameters as the kernel keeps them (`struct red_parms`):
/// thresholds scaled by `2^Wlog`, `max_P` and its step per byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RedParms {
    qth_min: u32,
    qth_max: u32,
    max_p: u32,
    max_p_delta: u32,
    wlog: u8,
}

impl RedParms {
    /// Kernel: `red_set_parms()` from what tc sent.
    pub(crate) fn new(c: &RedConfig) -> RedParms {
        let delta = (c.qth_max.wrapping_sub(c.qth_min) as i32).max(1) as u32;
        let max_p = if c.max_p != 0 {
            c.max_p
        } else {
            let maxp = if c.plog < 32 {
                u32::MAX >> c.plog
            } else {
                u32::MAX
            };
            maxp.wrapping_mul(delta)
        };
        RedParms {
            qth_min: c.qth_min << c.wlog,
            qth_max: c.qth_max << c.wlog,
            max_p,
            max_p_delta: (max_p / delta).max(1),
            wlog: c.wlog,
        }
    }
}

/// RED's running state (`struct red_vars`): the average queue (scaled),
/// packets since the last mark, and the random threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RedVars {
    pub(crate) qavg: u64,
    qcount: i32,
    qr: u32,
}

impl Default for RedVars {
    /// Kernel: `red_set_vars()`.
    fn default() -> RedVars {
        RedVars {
            qavg: 0,
            qcount: -1,
            qr: 0,
        }
    }
}

impl RedVars {
    /// Kernel: `red_calc_qavg_no_idle_time()`: the average moved towards
    /// `backlog` by `2^-Wlog`.
    pub(crate) fn qavg_no_idle_time(&self, p: &RedParms, backlog: u32) -> u64 {
        (self.qavg + u64::from(backlog)).wrapping_sub(self.qavg >> p.wlog)
    }

    /// Kernel: `red_action()` for average `qavg`, `rng` the generator.
    pub(crate) fn action(&mut self, p: &RedParms, qavg: u64, rng: &mut u64) -> Action {
        if qavg < u64::from(p.qth_min) {
            self.qcount = -1;
            return Action::Pass;
        }
        if qavg >= u64::from(p.qth_max) {
            self.qcount = -1;
            return Action::Hard;
        }
        self.qcount += 1;
        if self.qcount != 0 {
            let over = (qavg - u64::from(p.qth_min)) >> p.wlog;
            if over * self.qcount as u64 >= u64::from(self.qr) {
                self.qcount = 0;
                self.qr = red_random(p, rng);
                return Action::Probable;
            }
        } else {
            self.qr = red_random(p, rng);
        }
        Action::Pass
    }
}

/// Kernel: `red_random()`: uniform below `2^32 / max_p_delta` (here an
/// xorshift64* of a fixed seed: the same decisions every run).
fn red_random(p: &RedParms, rng: &mut u64) -> u32 {
    *rng ^= *rng >> 12;
    *rng ^= *rng << 25;
    *rng ^= *rng >> 27;
    let r = (rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32;
    r / p.max_p_delta
}

impl Red {
    /// Kernel: `red_init()`/`__red_change()` with `cfg` (checked by the
    /// caller with [`check_params`]).
    pub fn new(cfg: RedConfig, psched_mtu: u32) -> Red {
        let mut r = Red {
            cfg,
            parms: RedParms::new(&cfg),
            vars: RedVars::default(),
            idle_start: None,
            child: None,
            psched_mtu,
            stats: QdiscStats::default(),
            prob_drop: 0,
            prob_mark: 0,
            forced_drop: 0,
            forced_mark: 0,
            pdrop: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
        };
        r.change(cfg, &mut ToFree::default());
        r
    }

    /// Kernel: `__red_change()`: a new inner bfifo when `limit` > 0 (the
    /// old one's packets purged), the parameters set, the average reset.
    pub fn change(&mut self, cfg: RedConfig, to_free: &mut ToFree) {
        if cfg.limit > 0 {
            if let Some(old) = &mut self.child {
                old.reset(to_free);
            }
            self.child = Some(Bfifo::new(cfg.limit, self.psched_mtu));
            self.stats.backlog = 0;
            self.stats.qlen = 0;
        }
        self.parms = RedParms::new(&cfg);
        self.cfg = cfg;
        self.vars = RedVars::default();
    }

    /// Kernel: `red_calc_qavg()` for a backlog of `backlog` bytes at `now`.
    fn calc_qavg(&self, backlog: u32, now: Instant) -> u64 {
        let Some(start) = self.idle_start else {
            return self.vars.qavg_no_idle_time(&self.parms, backlog);
        };
        let qavg = self.vars.qavg;
        let scell_max = 255u64 << self.cfg.scell_log;
        let us = (now.as_nanos().saturating_sub(start.as_nanos()) / 1000).min(scell_max);
        let shift = self.cfg.stab[((us >> self.cfg.scell_log) & 255) as usize];
        if shift != 0 {
            return qavg >> shift;
        }
        let t = qavg.wrapping_mul(us) >> self.cfg.scell_log;
        if t < qavg >> 1 {
            qavg - t
        } else {
            qavg >> 1
        }
    }

    /// Kernel: `red_action()` on the qdisc's own average.
    fn action(&mut self, qavg: u64) -> Action {
        self.vars.action(&self.parms, qavg, &mut self.rng)
    }

    fn flag(&self, f: u8) -> bool {
        self.cfg.flags & f != 0
    }

    /// What a mark does to `pkt`: `Ok` to queue it (CE-marked, or let in
    /// under `nodrop`), `Err` to drop it; `hard` for a hard mark.
    fn mark(&mut self, pkt: &mut PacketBuf, hard: bool) -> Result<(), ()> {
        self.stats.overlimits += 1;
        let ecn_ok = self.flag(FLAG_ECN) && !(hard && self.flag(FLAG_HARDDROP));
        if ecn_ok && super::codel::set_ce(pkt) {
            match hard {
                true => self.forced_mark += 1,
                false => self.prob_mark += 1,
            }
            return Ok(());
        }
        if ecn_ok && self.flag(FLAG_NODROP) {
            return Ok(());
        }
        match hard {
            true => self.forced_drop += 1,
            false => self.prob_drop += 1,
        }
        Err(())
    }

    /// The flags as tc prints them: `ecn harddrop adaptive nodrop`, in
    /// that order, each followed by a space.
    fn flag_words(&self) -> String {
        let mut o = String::new();
        for (f, w) in [
            (FLAG_ECN, "ecn"),
            (FLAG_HARDDROP, "harddrop"),
            (FLAG_ADAPTIVE, "adaptive"),
            (FLAG_NODROP, "nodrop"),
        ] {
            if self.flag(f) {
                o += w;
                o.push(' ');
            }
        }
        o
    }
}

impl Qdisc for Red {
    fn kind(&self) -> &'static str {
        "red"
    }

    /// Kernel: `red_enqueue()`.
    fn enqueue(&mut self, mut pkt: PacketBuf, now: Instant, to_free: &mut ToFree) -> NetXmit {
        let backlog = self.child.as_ref().map_or(0, |c| c.stats().backlog) as u32;
        self.vars.qavg = self.calc_qavg(backlog, now);
        self.idle_start = None;
        let verdict = match self.action(self.vars.qavg) {
            Action::Pass => Ok(()),
            Action::Probable => self.mark(&mut pkt, false),
            Action::Hard => self.mark(&mut pkt, true),
        };
        if verdict.is_err() {
            self.stats.drops += 1;
            to_free.push(pkt, DropReason::QdiscCongested);
            return NetXmit::Congested;
        }
        let len = pkt.len();
        let r = match &mut self.child {
            Some(c) => c.enqueue(pkt, now, to_free),
            None => {
                to_free.push(pkt, DropReason::QdiscDrop);
                NetXmit::Drop
            }
        };
        match r {
            NetXmit::Success => self.stats.queued(len),
            _ => {
                self.pdrop += 1;
                self.stats.drops += 1;
            }
        }
        r
    }

    /// Kernel: `red_dequeue()`: the inner queue's head; an empty queue
    /// starts the idle period.
    fn dequeue(&mut self, now: Instant) -> Dequeued {
        match self.child.as_mut().map(|c| c.dequeue(now)) {
            Some(Dequeued::Packet(p)) => {
                self.stats.unqueued(p.len());
                self.stats.sent(p.len());
                Dequeued::Packet(p)
            }
            _ => {
                if self.idle_start.is_none() {
                    self.idle_start = Some(now);
                }
                Dequeued::Empty
            }
        }
    }

    fn peek(&self) -> Option<&PacketBuf> {
        self.child.as_ref().and_then(|c| c.peek())
    }

    /// Kernel: `red_reset()`: the inner queue purged, the average reset.
    fn reset(&mut self, to_free: &mut ToFree) {
        if let Some(c) = &mut self.child {
            c.reset(to_free);
        }
        self.stats.backlog = 0;
        self.stats.qlen = 0;
        (self.vars, self.idle_start) = (RedVars::default(), None);
    }

    fn stats(&self) -> &QdiscStats {
        &self.stats
    }

    fn stats_mut(&mut self) -> &mut QdiscStats {
        &mut self.stats
    }

    /// tc's `red_print_opt()`: `limit 1Mb min 100Kb max 300Kb ecn `.
    fn params(&self) -> String {
        let c = &self.cfg;
        format!(
            "limit {} min {} max {} {}",
            format_size(u64::from(c.limit)),
            format_size(u64::from(c.qth_min)),
            format_size(u64::from(c.qth_max)),
            self.flag_words()
        )
    }

    /// `tc -d`: then `ewma W probability P Scell_log S`.
    fn params_details(&self) -> String {
        let p = f64::from(self.parms.max_p) / 4_294_967_296.0;
        format!(
            "{}ewma {} probability {} Scell_log {}",
            self.params(),
            self.cfg.wlog,
            format_g(p, 6),
            self.cfg.scell_log
        )
    }

    fn options(&self) -> Vec<(&'static str, OptValue)> {
        let c = &self.cfg;
        let mut o = vec![
            ("limit", OptValue::Num(u64::from(c.limit))),
            ("min", OptValue::Num(u64::from(c.qth_min))),
            ("max", OptValue::Num(u64::from(c.qth_max))),
        ];
        for (f, w) in [
            (FLAG_ECN, "ecn"),
            (FLAG_HARDDROP, "harddrop"),
            (FLAG_ADAPTIVE, "adaptive"),
            (FLAG_NODROP, "nodrop"),
        ] {
            o.push((w, OptValue::Bool(self.flag(f))));
        }
        o
    }

    /// tc's `red_print_xstats()`.
    fn xstats(&self, _now: Instant) -> Option<String> {
        Some(format!(
            "  marked {} early {} pdrop {} other 0 ",
            self.prob_mark + self.forced_mark,
            self.prob_drop + self.forced_drop,
            self.pdrop
        ))
    }

    /// Its one class, `H:1`, holding the inner queue.
    fn classes(&self) -> Vec<u32> {
        vec![1]
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::QdiscSpec;

    fn red(words: &str) -> Red {
        let Ok(QdiscSpec::Red(r)) = words.parse::<QdiscSpec>() else {
            panic!("{words}");
        };
        Red::new(r.config().unwrap(), 1514)
    }

    /// An Ethernet + IPv4 frame of `len` bytes with ECN field `ecn`.
    fn frame(len: usize, ecn: u8) -> PacketBuf {
        let mut b = vec![0u8; len];
        b[14] = 0x45;
        b[15] = ecn;
        crate::wire::ipv4::send_check(&mut b[14..34]);
        let mut p = PacketBuf::from_slice(0, &b);
        p.meta.network_header = 14;
        p.meta.protocol = 0x0800;
        p
    }

    /// Enqueues `n` frames without dequeuing; returns how many were let in.
    fn fill(q: &mut Red, n: usize, ecn: u8) -> usize {
        let mut tf = ToFree::default();
        (0..n)
            .filter(|_| q.enqueue(frame(1500, ecn), Instant::ZERO, &mut tf) == NetXmit::Success)
            .count()
    }

    #[test]
    fn tc_works_out_the_kernels_constants() {
        let q = red("red limit 1M avpkt 1500 min 100K max 300K");
        assert_eq!((q.cfg.wlog, q.cfg.plog, q.cfg.scell_log), (6, 24, 17));
        assert_eq!(q.cfg.max_p, 85_899_345);
        assert_eq!(q.params(), "limit 1Mb min 100Kb max 300Kb ");
        assert_eq!(
            q.params_details(),
            "limit 1Mb min 100Kb max 300Kb ewma 6 probability 0.02 Scell_log 17"
        );
    }

    #[test]
    fn a_short_queue_is_never_dropped_from() {
        let mut q = red("red limit 1M avpkt 1500 min 100K max 300K");
        let mut tf = ToFree::default();
        for _ in 0..10_000 {
            assert_eq!(
                q.enqueue(frame(1500, 0), Instant::ZERO, &mut tf),
                NetXmit::Success
            );
            let _ = q.dequeue(Instant::ZERO);
        }
        assert_eq!(q.stats().drops, 0);
    }

    #[test]
    fn a_standing_queue_is_dropped_early_then_forcibly() {
        let mut q = red("red limit 1M avpkt 1500 min 100K max 300K");
        let let_in = fill(&mut q, 600, 0);
        // The average lags the backlog (Wlog 6): the first drops come well
        // past 100 KB queued, and above the max every packet goes.
        assert!(let_in < 600 && let_in > 100, "{let_in}");
        assert!(q.prob_drop > 0, "early drops between min and max");
        assert!(q.forced_drop > 0, "forced drops above max");
        assert_eq!(q.stats().drops, u64::from(q.prob_drop + q.forced_drop));
        assert!(q.vars.qavg >> q.cfg.wlog >= u64::from(q.cfg.qth_max));
    }

    #[test]
    fn with_ecn_capable_packets_are_marked_not_dropped() {
        let mut q = red("red limit 1M avpkt 1500 min 100K max 300K ecn");
        let let_in = fill(&mut q, 600, 2);
        assert_eq!(let_in, 600);
        assert!(q.prob_mark > 0 && q.forced_mark > 0);
        // harddrop: hard marks drop even so.
        let mut q = red("red limit 1M avpkt 1500 min 100K max 300K ecn harddrop");
        fill(&mut q, 600, 2);
        assert!(q.prob_mark > 0 && q.forced_drop > 0 && q.forced_mark == 0);
        // nodrop lets non-ECT packets in unmarked.
        let mut q = red("red limit 1M avpkt 1500 min 100K max 300K ecn nodrop");
        assert_eq!(fill(&mut q, 600, 0), 600);
    }

    #[test]
    fn the_average_decays_while_idle() {
        let decayed = |idle_ns: u64| {
            let mut q = red("red limit 1M avpkt 1500 min 100K max 300K");
            fill(&mut q, 150, 0);
            while let Dequeued::Packet(_) = q.dequeue(Instant::ZERO) {}
            let before = q.vars.qavg;
            let mut tf = ToFree::default();
            q.enqueue(frame(1500, 0), Instant::from_nanos(idle_ns), &mut tf);
            (before, q.vars.qavg)
        };
        // The table's shift grows with the idle time (it was built in
        // ticks and is read in microseconds, as upstream).
        let (before, short) = decayed(50_000_000);
        let (_, long) = decayed(5_000_000_000);
        assert!(
            short < before && long < short / 8,
            "{before} {short} {long}"
        );
    }

    #[test]
    fn nodrop_needs_ecn() {
        let e = "red limit 1M avpkt 1500 min 100K max 300K nodrop"
            .parse::<QdiscSpec>()
            .and_then(|s| s.build(1000, 1514))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Error: nodrop mode is only meaningful with ECN."
        );
    }
}
