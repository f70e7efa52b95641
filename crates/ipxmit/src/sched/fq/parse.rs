//! tc's side of `fq`: iproute2 6.1's `fq_parse_opt()` (`tc/q_fq.c`).
//!
//! tc 6.1 knows neither `bands`/`priomap`/`weights` (iproute2 6.7) nor
//! `offload_horizon` (6.13): they are unknown words here, as there.

use std::fmt;

use crate::sched::spec::parse_unsigned;
use crate::sched::SpecError;
use crate::units::{parse_rate, parse_time, parse_time64};

/// What tc 6.1's `fq_parse_opt()` sends (`TCA_FQ_*`): `None` for an option
/// not given (the kernel's default, or on a change the value kept).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FqSpec {
    /// `limit PACKETS` (`TCA_FQ_PLIMIT`).
    pub limit: Option<u32>,
    /// `flow_limit PACKETS` (`TCA_FQ_FLOW_PLIMIT`).
    pub flow_limit: Option<u32>,
    /// `quantum BYTES` (`TCA_FQ_QUANTUM`).
    pub quantum: Option<u32>,
    /// `initial_quantum BYTES` (`TCA_FQ_INITIAL_QUANTUM`).
    pub initial_quantum: Option<u32>,
    /// `maxrate RATE`, bytes per second (`TCA_FQ_FLOW_MAX_RATE`).
    pub maxrate: Option<u32>,
    /// `defrate RATE`, bytes per second (`TCA_FQ_FLOW_DEFAULT_RATE`; the
    /// kernel ignores it).
    pub defrate: Option<u32>,
    /// `buckets NUMBER` as tc sends it: the log2, rounded up
    /// (`TCA_FQ_BUCKETS_LOG`; `buckets 0` sends nothing).
    pub buckets_log: Option<u32>,
    /// `orphan_mask MASK` (`TCA_FQ_ORPHAN_MASK`).
    pub orphan_mask: Option<u32>,
    /// `low_rate_threshold RATE`, bytes per second.
    pub low_rate_threshold: Option<u32>,
    /// `refill_delay TIME`, microseconds.
    pub refill_delay_us: Option<u32>,
    /// `timer_slack TIME`, nanoseconds.
    pub timer_slack_ns: Option<u32>,
    /// `ce_threshold TIME`, microseconds.
    pub ce_threshold_us: Option<u32>,
    /// `horizon TIME`, microseconds.
    pub horizon_us: Option<u32>,
    /// `horizon_drop` (true) or `horizon_cap` (false).
    pub horizon_drop: Option<bool>,
    /// `pacing` (true) or `nopacing` (false) (`TCA_FQ_RATE_ENABLE`).
    pub pacing: Option<bool>,
}

/// tc 6.1's `explain()` for `fq`.
pub const FQ_USAGE: &str = "Usage: ... fq\t[ limit PACKETS ] [ flow_limit PACKETS ]\n\
\t\t[ quantum BYTES ] [ initial_quantum BYTES ]\n\
\t\t[ maxrate RATE  ] [ buckets NUMBER ]\n\
\t\t[ [no]pacing ] [ refill_delay TIME ]\n\
\t\t[ low_rate_threshold RATE ]\n\
\t\t[ orphan_mask MASK]\n\
\t\t[ timer_slack TIME]\n\
\t\t[ ce_threshold TIME ]\n\
\t\t[ horizon TIME ]\n\
\t\t[ horizon_{cap|drop} ]";

/// tc's `Illegal "keyword"`.
fn illegal(keyword: &str) -> SpecError {
    SpecError::Refused(format!("Illegal \"{keyword}\""))
}

/// tc's `incomplete_command()` (`NEXT_ARG` at the end of the line).
fn incomplete() -> SpecError {
    SpecError::Refused("Command line is not complete. Try option \"help\"".into())
}

/// tc's `ilog2()` of `q_fq.c`: the log2 of `val`, rounded up.
fn ilog2(val: u32) -> u32 {
    32 - val.wrapping_sub(1).leading_zeros()
}

/// tc's `get_rate()` in bytes per second (`None`: tc refuses it). A
/// percentage of the device's speed (`get_percent_rate`) is refused: ipxmit
/// devices have no speed to read.
fn rate_bytes(v: &str) -> Option<u32> {
    if v.contains('%') {
        return None;
    }
    u32::try_from(parse_rate(v).ok()? / 8).ok()
}

/// tc's `get_time()` in microseconds (stored as a C `unsigned int`).
fn time_us(v: &str) -> Option<u32> {
    parse_time(v).ok().map(|d| d.as_micros() as u32)
}

/// `timer_slack`'s `get_time64()` in nanoseconds, which must fit 32 bits.
fn timer_slack(v: &str) -> Result<u32, SpecError> {
    let out_of_range = || SpecError::Refused("Illegal (out of range) \"timer_slack\"".into());
    if let Some(rest) = v.strip_prefix('-') {
        // A negative time reads, but never fits an unsigned value (0 does).
        let d = parse_time64(rest).map_err(|_| illegal("timer_slack"))?;
        return if d.is_zero() {
            Ok(0)
        } else {
            Err(out_of_range())
        };
    }
    let d = parse_time64(v).map_err(|_| illegal("timer_slack"))?;
    u32::try_from(d.as_nanos()).map_err(|_| out_of_range())
}

/// Parses `fq`'s options (the words after `fq`) as tc 6.1's
/// `fq_parse_opt()`: exact keywords in any order, a repeated one's last
/// value kept, tc's messages on error (`orphan_mask`'s carries tc's wrong
/// name, `Illegal "initial_quantum"`).
pub fn parse_fq(words: &[&str]) -> Result<FqSpec, SpecError> {
    let mut s = FqSpec::default();
    let mut buckets = 0u32;
    let mut it = words.iter().copied();
    while let Some(word) = it.next() {
        let mut value = || it.next().ok_or_else(incomplete);
        let unsigned = |v: &str, k: &str| parse_unsigned(v).ok_or_else(|| illegal(k));
        let rate = |v: &str, k: &str| rate_bytes(v).ok_or_else(|| illegal(k));
        let time = |v: &str, k: &str| time_us(v).ok_or_else(|| illegal(k));
        match word {
            "limit" => s.limit = Some(unsigned(value()?, "limit")?),
            "flow_limit" => s.flow_limit = Some(unsigned(value()?, "flow_limit")?),
            "buckets" => buckets = unsigned(value()?, "buckets")?,
            "maxrate" => s.maxrate = Some(rate(value()?, "maxrate")?),
            "low_rate_threshold" => {
                let v = parse_rate(value()?).ok().map(|b| b / 8);
                let v = v.and_then(|b| u32::try_from(b).ok());
                s.low_rate_threshold = Some(v.ok_or_else(|| illegal(word))?);
            }
            "ce_threshold" => s.ce_threshold_us = Some(time(value()?, "ce_threshold")?),
            "timer_slack" => s.timer_slack_ns = Some(timer_slack(value()?)?),
            "horizon_drop" => s.horizon_drop = Some(true),
            "horizon_cap" => s.horizon_drop = Some(false),
            "horizon" => s.horizon_us = Some(time(value()?, "horizon")?),
            "defrate" => s.defrate = Some(rate(value()?, "defrate")?),
            "quantum" => s.quantum = Some(unsigned(value()?, "quantum")?),
            "initial_quantum" => s.initial_quantum = Some(unsigned(value()?, "initial_quantum")?),
            "orphan_mask" => s.orphan_mask = Some(unsigned(value()?, "initial_quantum")?),
            "refill_delay" => s.refill_delay_us = Some(time(value()?, "refill_delay")?),
            "pacing" => s.pacing = Some(true),
            "nopacing" => s.pacing = Some(false),
            "help" => return Err(SpecError::Refused(FQ_USAGE.into())),
            other => {
                return Err(SpecError::Refused(format!(
                    "What is \"{other}\"?\n{FQ_USAGE}"
                )))
            }
        }
    }
    s.buckets_log = (buckets != 0).then(|| ilog2(buckets));
    Ok(s)
}

impl fmt::Display for FqSpec {
    /// The options as a tc command line takes them, each after a space
    /// (` limit 3000 maxrate 800000bit`); [`parse_fq`] of them gives the
    /// same spec back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nums = [
            ("limit", self.limit),
            ("flow_limit", self.flow_limit),
            ("quantum", self.quantum),
            ("initial_quantum", self.initial_quantum),
            ("orphan_mask", self.orphan_mask),
        ];
        for (k, v) in nums {
            v.map_or(Ok(()), |v| write!(f, " {k} {v}"))?;
        }
        if let Some(l) = self.buckets_log {
            // tc's ilog2 rounds up: anything above 2^31 sends 32.
            let n = if l >= 32 {
                u64::from(u32::MAX)
            } else {
                1u64 << l
            };
            write!(f, " buckets {n}")?;
        }
        for (k, v) in [
            ("maxrate", self.maxrate),
            ("defrate", self.defrate),
            ("low_rate_threshold", self.low_rate_threshold),
        ] {
            v.map_or(Ok(()), |v| write!(f, " {k} {}bit", u64::from(v) * 8))?;
        }
        for (k, v) in [
            ("refill_delay", self.refill_delay_us),
            ("ce_threshold", self.ce_threshold_us),
            ("horizon", self.horizon_us),
        ] {
            v.map_or(Ok(()), |v| write!(f, " {k} {v}us"))?;
        }
        if let Some(ns) = self.timer_slack_ns {
            write!(f, " timer_slack {ns}ns")?;
        }
        match self.horizon_drop {
            Some(true) => write!(f, " horizon_drop")?,
            Some(false) => write!(f, " horizon_cap")?,
            None => {}
        }
        match self.pacing {
            Some(true) => write!(f, " pacing"),
            Some(false) => write!(f, " nopacing"),
            None => Ok(()),
        }
    }
}
