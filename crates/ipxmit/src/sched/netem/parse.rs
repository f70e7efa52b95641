//! `netem`'s options as tc reads them: [`NetemSpec`] and [`parse_netem`].
//!
//! Stands for iproute2 6.1's `netem_parse_opt()` (`tc/q_netem.c`): the
//! keywords (prefixes allowed, first match in tc's order), the
//! positional values that follow some of them (taken while the next word
//! starts with a digit), tc's defaults, its checks once every word is
//! read, and its messages. [`NetemSpec`]'s `Display` gives words that
//! parse back to the same spec.

use std::fmt;

use super::dist::NetemDist;
use super::num::{
    get_percent, get_s32, get_time64, get_time_us, get_u32, is_number, is_signed_number,
    parse_percent, percent_value, set_percent, time_to_ticks, time_too_big,
};
use crate::sched::spec::matches;
use crate::sched::SpecError;
use crate::units::{format_g, parse_rate, parse_size};

/// A probability and its correlation, both scaled to `u32::MAX` (tc's
/// `get_percent`): `struct tc_netem_reorder`, `struct tc_netem_corrupt`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetemProb {
    /// The probability.
    pub probability: u32,
    /// Its correlation.
    pub correlation: u32,
}

/// `struct tc_netem_corr`: the correlations of the delay, the random
/// loss and the duplication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetemCorr {
    /// Delay correlation.
    pub delay: u32,
    /// Random loss correlation.
    pub loss: u32,
    /// Duplication correlation.
    pub duplicate: u32,
}

/// A correlated loss model (`TCA_NETEM_LOSS`), probabilities scaled to
/// `u32::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetemLoss {
    /// `loss state`: the 4-state Markov model (`struct tc_netem_gimodel`).
    State {
        /// Gap (1) to burst loss (3).
        p13: u32,
        /// Burst loss (3) to gap (1).
        p31: u32,
        /// Burst loss (3) to burst transmission (2).
        p32: u32,
        /// Burst transmission (2) to burst loss (3).
        p23: u32,
        /// Gap (1) to isolated loss (4).
        p14: u32,
    },
    /// `loss gemodel`: Gilbert-Elliott (`struct tc_netem_gemodel`).
    Gemodel {
        /// Good to bad.
        p: u32,
        /// Bad to good.
        r: u32,
        /// Success in the bad state (tc reads `1-h`).
        h: u32,
        /// Loss in the good state (`1-k`).
        k1: u32,
    },
}

/// `struct tc_netem_rate` with `TCA_NETEM_RATE64`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetemRate {
    /// Bytes per second.
    pub rate: u64,
    /// Bytes added to each packet.
    pub packet_overhead: i32,
    /// Link cell size, 0 for none.
    pub cell_size: u32,
    /// Bytes added to each cell.
    pub cell_overhead: i32,
}

/// `struct tc_netem_slot`: times in nanoseconds, budgets 0 for none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetemSlot {
    /// Shortest slot interval.
    pub min_delay: i64,
    /// Longest slot interval.
    pub max_delay: i64,
    /// Packets per slot.
    pub max_packets: i32,
    /// Bytes per slot.
    pub max_bytes: i32,
    /// Interval mean with a distribution.
    pub dist_delay: i64,
    /// Interval deviation with a distribution.
    pub dist_jitter: i64,
}

/// What tc 6.1's `netem_parse_opt()` sends: `struct tc_netem_qopt` and
/// the attributes it adds (`None`: not sent, so a change keeps the
/// qdisc's value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetemSpec {
    /// Packets (tc's default 1000).
    pub limit: u32,
    /// Delay in whole microseconds (`get_time`); tc 6.1 sends it in psched
    /// ticks, [`NetemSpec::latency_ticks`].
    pub latency_us: u32,
    /// Jitter, likewise.
    pub jitter_us: u32,
    /// Random loss probability.
    pub loss: u32,
    /// Reorder gap (tc makes it 1 when `reorder` is given alone).
    pub gap: u32,
    /// Duplication probability.
    pub duplicate: u32,
    /// `TCA_NETEM_CORR`.
    pub corr: Option<NetemCorr>,
    /// `TCA_NETEM_REORDER`.
    pub reorder: Option<NetemProb>,
    /// `TCA_NETEM_CORRUPT`.
    pub corrupt: Option<NetemProb>,
    /// `TCA_NETEM_ECN` (sent only when given).
    pub ecn: bool,
    /// `TCA_NETEM_LOSS` (absent: the random model).
    pub loss_model: Option<NetemLoss>,
    /// `TCA_NETEM_RATE`.
    pub rate: Option<NetemRate>,
    /// `TCA_NETEM_SLOT`.
    pub slot: Option<NetemSlot>,
    /// `TCA_NETEM_DELAY_DIST`.
    pub delay_dist: Option<NetemDist>,
    /// `TCA_NETEM_SLOT_DIST`.
    pub slot_dist: Option<NetemDist>,
    /// `TCA_NETEM_PRNG_SEED` (`seed N`; tc 6.6 and later, an extension
    /// here).
    pub seed: Option<u64>,
}

impl Default for NetemSpec {
    /// A bare `netem`: `limit 1000` and nothing else.
    fn default() -> NetemSpec {
        NetemSpec {
            limit: 1000,
            latency_us: 0,
            jitter_us: 0,
            loss: 0,
            gap: 0,
            duplicate: 0,
            corr: None,
            reorder: None,
            corrupt: None,
            ecn: false,
            loss_model: None,
            rate: None,
            slot: None,
            delay_dist: None,
            slot_dist: None,
            seed: None,
        }
    }
}

impl NetemSpec {
    /// `tc_netem_qopt.latency`: psched ticks (64 ns).
    pub fn latency_ticks(&self) -> u32 {
        time_to_ticks(self.latency_us)
    }

    /// `tc_netem_qopt.jitter`: psched ticks.
    pub fn jitter_ticks(&self) -> u32 {
        time_to_ticks(self.jitter_us)
    }
}

/// tc's `explain()` for netem.
pub const NETEM_USAGE: &str = "Usage: ... netem\t[ limit PACKETS ]\n\
\t\t\t[ delay TIME [ JITTER [CORRELATION]]]\n\
\t\t\t[ distribution {uniform|normal|pareto|paretonormal} ]\n\
\t\t\t[ corrupt PERCENT [CORRELATION]]\n\
\t\t\t[ duplicate PERCENT [CORRELATION]]\n\
\t\t\t[ loss random PERCENT [CORRELATION]]\n\
\t\t\t[ loss state P13 [P31 [P32 [P23 P14]]]\n\
\t\t\t[ loss gemodel PERCENT [R [1-H [1-K]]]\n\
\t\t\t[ ecn ]\n\
\t\t\t[ reorder PERCENT [CORRELATION] [ gap DISTANCE ]]\n\
\t\t\t[ rate RATE [PACKETOVERHEAD] [CELLSIZE] [CELLOVERHEAD]]\n\
\t\t\t[ slot MIN_DELAY [MAX_DELAY] [packets MAX_PACKETS] [bytes MAX_BYTES]]\n\
\t\t[ slot distribution {uniform|normal|pareto|paretonormal|custom} DELAY JITTER [packets MAX_PACKETS] [bytes MAX_BYTES]]";

/// tc's `explain1()`: `Illegal "what"`.
fn illegal(what: &str) -> SpecError {
    SpecError::Refused(format!("Illegal \"{what}\""))
}

/// A message followed by the usage (tc's `explain()` after it).
fn with_usage(msg: &str) -> SpecError {
    SpecError::Refused(format!("{msg}\n{NETEM_USAGE}"))
}

/// The words being read (tc's `argc`/`argv`).
struct Args<'a> {
    words: &'a [&'a str],
    at: usize,
}

impl<'a> Args<'a> {
    /// tc's `NEXT_ARG()`: the next word, or tc's message for a missing one.
    fn next(&mut self) -> Result<&'a str, SpecError> {
        self.at += 1;
        self.words.get(self.at).copied().ok_or_else(|| {
            SpecError::Refused("Command line is not complete. Try option \"help\"".into())
        })
    }

    /// The word after the current one (`argv[1]` when `NEXT_ARG_OK()`).
    fn peek(&self) -> Option<&'a str> {
        self.words.get(self.at + 1).copied()
    }

    /// `NEXT_IS_NUMBER()`.
    fn next_is_number(&self) -> bool {
        self.peek().is_some_and(is_number)
    }

    /// `NEXT_IS_SIGNED_NUMBER()`.
    fn next_is_signed(&self) -> bool {
        self.peek().is_some_and(is_signed_number)
    }

    /// The next word as a percentage when it is a number (an optional
    /// correlation), or `Ok(None)`.
    fn optional_percent(&mut self, what: &str) -> Result<Option<u32>, SpecError> {
        if !self.next_is_number() {
            return Ok(None);
        }
        get_percent(self.next()?)
            .map(Some)
            .ok_or_else(|| illegal(what))
    }
}

/// What the parser collects beyond the spec (tc's locals).
#[derive(Default)]
struct Words {
    /// `present[TCA_NETEM_CORR]`.
    corr_present: bool,
    corr: NetemCorr,
    loss_type_set: bool,
}

/// tc 6.1's `netem_parse_opt()`: the words after `netem`, read as tc
/// reads them, into what it sends; tc's messages as
/// [`SpecError::Refused`].
pub fn parse_netem(words: &[&str]) -> Result<NetemSpec, SpecError> {
    let mut spec = NetemSpec::default();
    let mut w = Words::default();
    let mut a = Args { words, at: 0 };
    while let Some(&word) = words.get(a.at) {
        option(&mut a, word, &mut spec, &mut w)?;
        a.at += 1;
    }
    if w.corr_present {
        spec.corr = Some(w.corr);
    }
    final_checks(&mut spec, &w)?;
    Ok(spec)
}

/// One option, `word`, and its values.
fn option(a: &mut Args<'_>, word: &str, s: &mut NetemSpec, w: &mut Words) -> Result<(), SpecError> {
    if matches(word, "limit") {
        let v = a.next()?;
        s.limit = parse_size(v)
            .ok()
            .and_then(|l| u32::try_from(l).ok())
            .ok_or_else(|| illegal("limit"))?;
    } else if matches(word, "latency") || matches(word, "delay") {
        delay(a, s, w)?;
    } else if matches(word, "loss") || matches(word, "drop") {
        loss(a, s, w)?;
    } else if matches(word, "ecn") {
        s.ecn = true;
    } else if matches(word, "reorder") || matches(word, "corrupt") {
        let key = if matches(word, "reorder") {
            "reorder"
        } else {
            "corrupt"
        };
        let probability = get_percent(a.next()?).ok_or_else(|| illegal(key))?;
        let correlation = a.optional_percent(key)?;
        w.corr_present |= correlation.is_some();
        let p = NetemProb {
            probability,
            correlation: correlation.unwrap_or(0),
        };
        *(if key == "reorder" {
            &mut s.reorder
        } else {
            &mut s.corrupt
        }) = Some(p);
    } else if matches(word, "gap") {
        s.gap = get_u32(a.next()?).ok_or_else(|| illegal("gap"))?;
    } else if matches(word, "duplicate") {
        s.duplicate = get_percent(a.next()?).ok_or_else(|| illegal("duplicate"))?;
        // tc does not count this correlation as present.
        if let Some(c) = a.optional_percent("duplicate")? {
            w.corr.duplicate = c;
        }
    } else if matches(word, "distribution") {
        s.delay_dist = Some(distribution(a.next()?)?);
    } else if matches(word, "rate") {
        rate(a, s)?;
    } else if matches(word, "slot") {
        slot(a, s)?;
    } else if matches(word, "seed") {
        s.seed = Some(a.next()?.parse().map_err(|_| illegal("seed"))?);
    } else if word == "help" {
        return Err(SpecError::Refused(NETEM_USAGE.into()));
    } else {
        return Err(with_usage(&format!("What is \"{word}\"?")));
    }
    Ok(())
}

/// `get_ticks()` of `v`: its microseconds, refused (as `latency`) when its
/// ticks do not fit in 32 bits.
fn ticks_us(v: &str) -> Result<u32, SpecError> {
    let us = get_time_us(v).ok_or_else(|| illegal("latency"))?;
    if time_too_big(us) {
        return Err(SpecError::Refused(format!(
            "Illegal {us} time (too large)\nIllegal \"latency\""
        )));
    }
    Ok(us)
}

/// `delay TIME [JITTER [CORRELATION]]`.
fn delay(a: &mut Args<'_>, s: &mut NetemSpec, w: &mut Words) -> Result<(), SpecError> {
    s.latency_us = ticks_us(a.next()?)?;
    if a.next_is_number() {
        s.jitter_us = ticks_us(a.next()?)?;
        if a.next_is_number() {
            w.corr_present = true;
            w.corr.delay = get_percent(a.next()?).ok_or_else(|| illegal("latency"))?;
        }
    }
    Ok(())
}

/// `loss [random] P [C]`, `loss state P13 [P31 [P32 [P23 [P14]]]]`,
/// `loss gemodel P [R [1-H [1-K]]]`.
fn loss(a: &mut Args<'_>, s: &mut NetemSpec, w: &mut Words) -> Result<(), SpecError> {
    if s.loss > 0 || w.loss_type_set {
        return Err(illegal("duplicate loss argument\n"));
    }
    let mut v = a.next()?;
    if !is_number(v) {
        match v {
            "random" => v = a.next()?,
            "state" => return loss_state(a, s, w),
            "gemodel" => return loss_gemodel(a, s, w),
            _ => return Err(SpecError::Refused(format!("Unknown loss parameter: {v}"))),
        }
    }
    s.loss = get_percent(v).ok_or_else(|| illegal("loss percent"))?;
    if a.next_is_number() {
        w.corr_present = true;
        w.corr.loss = get_percent(a.next()?).ok_or_else(|| illegal("loss correllation"))?;
    }
    Ok(())
}

/// The optional positional percentages after a loss model's first one,
/// into `slots` in order, each refused under its own name.
fn loss_params(a: &mut Args<'_>, slots: &mut [(&mut u32, &str)]) -> Result<(), SpecError> {
    for (slot, name) in slots.iter_mut() {
        if !a.next_is_number() {
            break;
        }
        **slot = get_percent(a.next()?).ok_or_else(|| illegal(name))?;
    }
    Ok(())
}

/// `loss state P13 [P31 [P32 [P23 [P14]]]]`: defaults 1-P13, 0, 1, 0.
fn loss_state(a: &mut Args<'_>, s: &mut NetemSpec, w: &mut Words) -> Result<(), SpecError> {
    let p = parse_percent(a.next()?).ok_or_else(|| illegal("loss p13"))?;
    let (p13, mut p31, mut p32, mut p23, mut p14) =
        (set_percent(p), set_percent(1.0 - p), 0, set_percent(1.0), 0);
    w.loss_type_set = true;
    let r = loss_params(
        a,
        &mut [
            (&mut p31, "loss p31"),
            (&mut p32, "loss p32"),
            (&mut p23, "loss p23"),
            (&mut p14, "loss p14"),
        ],
    );
    s.loss_model = Some(NetemLoss::State {
        p13,
        p31,
        p32,
        p23,
        p14,
    });
    r
}

/// `loss gemodel P [R [1-H [1-K]]]`: defaults 1-P, 1-H = 100%, 0.
fn loss_gemodel(a: &mut Args<'_>, s: &mut NetemSpec, w: &mut Words) -> Result<(), SpecError> {
    let pv = parse_percent(a.next()?).ok_or_else(|| illegal("loss gemodel p"))?;
    let (p, mut r, mut one_h, mut k1) = (set_percent(pv), set_percent(1.0 - pv), u32::MAX, 0);
    w.loss_type_set = true;
    let res = loss_params(
        a,
        &mut [
            (&mut r, "loss gemodel r"),
            (&mut one_h, "loss gemodel h"),
            (&mut k1, "loss gemodel k"),
        ],
    );
    s.loss_model = Some(NetemLoss::Gemodel {
        p,
        r,
        h: u32::MAX - one_h,
        k1,
    });
    res
}

/// tc's `get_distribution()`: the table named `name`.
fn distribution(name: &str) -> Result<NetemDist, SpecError> {
    NetemDist::from_name(name).ok_or_else(|| {
        SpecError::Refused(format!(
            "No distribution data for {name} (/usr/lib/tc/{name}.dist: No such file or directory)"
        ))
    })
}

/// `rate RATE [PACKETOVERHEAD [CELLSIZE [CELLOVERHEAD]]]`.
fn rate(a: &mut Args<'_>, s: &mut NetemSpec) -> Result<(), SpecError> {
    let v = a.next()?;
    // `RATE%` is a share of the device's speed, which tc reads from sysfs.
    if v.contains('%') {
        return Err(illegal("rate"));
    }
    let mut r = NetemRate {
        rate: parse_rate(v).map_err(|_| illegal("rate"))? / 8,
        ..NetemRate::default()
    };
    if a.next_is_signed() {
        r.packet_overhead = get_s32(a.next()?).ok_or_else(|| illegal("rate"))?;
    }
    if a.next_is_number() {
        r.cell_size = get_u32(a.next()?).ok_or_else(|| illegal("rate"))?;
    }
    if a.next_is_signed() {
        r.cell_overhead = get_s32(a.next()?).ok_or_else(|| illegal("rate"))?;
    }
    s.rate = Some(r);
    Ok(())
}

/// `slot MIN [MAX] [packets N] [bytes N]` or `slot distribution NAME
/// DELAY JITTER [packets N] [bytes N]`.
fn slot(a: &mut Args<'_>, s: &mut NetemSpec) -> Result<(), SpecError> {
    let mut sl = s.slot.unwrap_or_default();
    if a.next_is_number() {
        sl.min_delay = get_time64(a.next()?).ok_or_else(|| illegal("slot min_delay"))?;
        sl.max_delay = sl.min_delay;
        if a.next_is_number() {
            sl.max_delay = get_time64(a.next()?)
                .filter(|&m| m >= sl.min_delay)
                .ok_or_else(|| illegal("slot max_delay"))?;
        }
    } else {
        let v = a.next()?;
        if v != "distribution" {
            return Err(SpecError::Refused(format!("Unknown slot parameter: {v}")));
        }
        s.slot_dist = Some(distribution(a.next()?)?);
        sl.dist_delay = get_time64(a.next()?).ok_or_else(|| illegal("slot delay"))?;
        sl.dist_jitter = get_time64(a.next()?).ok_or_else(|| illegal("slot jitter"))?;
        if sl.dist_jitter <= 0 {
            return Err(SpecError::Refused("Non-positive jitter".into()));
        }
    }
    s.slot = Some(sl);
    slot_budgets(a, s.slot.as_mut().expect("just set"))
}

/// The optional `packets N` and `bytes N` after a slot.
fn slot_budgets(a: &mut Args<'_>, sl: &mut NetemSlot) -> Result<(), SpecError> {
    if a.peek().is_some_and(|w| matches(w, "packets")) {
        a.next()?;
        sl.max_packets = a
            .peek()
            .and_then(get_s32)
            .ok_or_else(|| illegal("slot packets"))?;
        a.next()?;
    }
    if a.peek().is_some_and(|w| matches(w, "bytes")) {
        a.next()?;
        let b = a
            .peek()
            .and_then(|v| parse_size(v).ok())
            .and_then(|b| u32::try_from(b).ok())
            .ok_or_else(|| illegal("slot bytes"))?;
        sl.max_bytes = b as i32;
        a.next()?;
    }
    Ok(())
}

/// The checks tc makes once every word is read.
fn final_checks(s: &mut NetemSpec, w: &Words) -> Result<(), SpecError> {
    if s.reorder.is_some_and(|r| r.probability != 0) {
        if s.latency_ticks() == 0 {
            return Err(with_usage(
                "reordering not possible without specifying some delay",
            ));
        }
        if s.gap == 0 {
            s.gap = 1;
        }
    } else if s.gap > 0 {
        return Err(with_usage("gap specified without reorder probability"));
    }
    if s.ecn && s.loss == 0 && !w.loss_type_set {
        return Err(with_usage("ecn requested without loss model"));
    }
    if s.delay_dist.is_some() && (s.latency_ticks() == 0 || s.jitter_ticks() == 0) {
        return Err(with_usage(
            "distribution specified but no latency and jitter values",
        ));
    }
    Ok(())
}

/// The shortest `%g` of a percentage that tc reads back as the same
/// scaled value.
fn exact_percent(p: u32) -> String {
    let v = percent_value(p);
    (1..=17)
        .map(|prec| format_g(v, prec))
        .find(|s| super::num::get_percent(s) == Some(p))
        .unwrap_or_else(|| format!("{v}"))
        + "%"
}

impl fmt::Display for NetemSpec {
    /// The options as tc takes them, each after a space (` limit 1000
    /// delay 100000us 10000us 25%`): parsing them gives this spec back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pc = exact_percent;
        write!(f, " limit {}", self.limit)?;
        if self.latency_us != 0 || self.jitter_us != 0 || self.corr.is_some() {
            write!(f, " delay {}us {}us", self.latency_us, self.jitter_us)?;
            if let Some(c) = self.corr {
                write!(f, " {}", pc(c.delay))?;
            }
        }
        if let Some(d) = self.delay_dist {
            write!(f, " distribution {}", d.name())?;
        }
        // A correlation is written only where `TCA_NETEM_CORR` is sent
        // (the delay's, written above, makes it so): tc counts every
        // other one given as making it so, and then they are all zero.
        let corr = |v: u32| self.corr.map(|_| format!(" {}", pc(v))).unwrap_or_default();
        let c = self.corr.unwrap_or_default();
        if self.loss != 0 || c.loss != 0 {
            write!(f, " loss random {}{}", pc(self.loss), corr(c.loss))?;
        }
        fmt_loss_model(f, self.loss_model)?;
        if self.duplicate != 0 || c.duplicate != 0 {
            write!(f, " duplicate {}{}", pc(self.duplicate), corr(c.duplicate))?;
        }
        for (k, p) in [("reorder", self.reorder), ("corrupt", self.corrupt)] {
            if let Some(p) = p {
                write!(f, " {k} {}{}", pc(p.probability), corr(p.correlation))?;
            }
        }
        if self.gap != 0 && self.reorder.is_some_and(|r| r.probability != 0) {
            write!(f, " gap {}", self.gap)?;
        }
        if self.ecn {
            f.write_str(" ecn")?;
        }
        fmt_rate_slot(f, self)?;
        self.seed.map_or(Ok(()), |s| write!(f, " seed {s}"))
    }
}

/// A loss model's words.
fn fmt_loss_model(f: &mut fmt::Formatter<'_>, m: Option<NetemLoss>) -> fmt::Result {
    let pc = exact_percent;
    match m {
        Some(NetemLoss::State {
            p13,
            p31,
            p32,
            p23,
            p14,
        }) => write!(
            f,
            " loss state {} {} {} {} {}",
            pc(p13),
            pc(p31),
            pc(p32),
            pc(p23),
            pc(p14)
        ),
        Some(NetemLoss::Gemodel { p, r, h, k1 }) => write!(
            f,
            " loss gemodel {} {} {} {}",
            pc(p),
            pc(r),
            pc(u32::MAX - h),
            pc(k1)
        ),
        None => Ok(()),
    }
}

/// The rate and slot words.
fn fmt_rate_slot(f: &mut fmt::Formatter<'_>, s: &NetemSpec) -> fmt::Result {
    if let Some(r) = s.rate {
        write!(
            f,
            " rate {}bit {} {} {}",
            u128::from(r.rate) * 8,
            r.packet_overhead,
            r.cell_size,
            r.cell_overhead
        )?;
    }
    if let Some(sl) = s.slot {
        match s.slot_dist {
            Some(d) => write!(
                f,
                " slot distribution {} {}ns {}ns",
                d.name(),
                sl.dist_delay,
                sl.dist_jitter
            )?,
            None => write!(f, " slot {}ns {}ns", sl.min_delay, sl.max_delay)?,
        }
        write!(
            f,
            " packets {} bytes {}",
            sl.max_packets, sl.max_bytes as u32
        )?;
    }
    Ok(())
}
