//! Rate estimators: `tc qdisc|class ... estimator INTERVAL TIME_CONSTANT`.
//!
//! Stands for `net/core/gen_estimator.c` (`gen_new_estimator`,
//! `est_timer`, `gen_estimator_read`) and iproute2's `parse_estimator()` /
//! `tc_setup_estimator()`.
//!
//! # The algorithm
//!
//! tc turns the two times into an interval index `i` (the sampling period
//! is 250 ms << (i + 2) / 4: -2 is 250 ms, 0 is one second, 3 is eight) and
//! an EWMA weight `ewma_log` (the smallest `e` whose averaging window
//! `A / -ln(1 - 2^-e)` exceeds the time constant, less one). Every period
//! the estimator takes the counters' growth since the last sample, scaled
//! to a per-second rate times 256 (`delta << (10 - intvl_log)`, where
//! `intvl_log = i + 2`), and moves its averages by a `2^-ewma_log` share of
//! the difference: `av += (sample >> ewma_log) - (av >> ewma_log)`. A read
//! gives `av >> 8`, bytes and packets per second. A sample late by more
//! than a period is taken at once and the next one a period on (the
//! kernel's timer rearms from `jiffies` then).
//!
//! In ipxmit the samples are taken when the clock has passed their time
//! and the stack next acts (a batch begins, deferred work runs, a `tc
//! show` reads): counters change only when the stack acts, so each sample
//! sees what the kernel's timer would have seen.

use crate::time::Instant;
use crate::units::parse_time;

/// One second in tc's time units (microseconds, `TIME_UNITS_PER_SEC`).
const US_PER_SEC: f64 = 1e6;

/// The estimator a `tc` line asks for (`struct tc_estimator`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EstimatorSpec {
    /// Sampling interval index: the period is 2^(interval+2) quarter
    /// seconds (-2 to 3).
    pub interval: i8,
    /// Weight of a new sample: 2^-ewma_log (1 to 30).
    pub ewma_log: u8,
}

/// Why an estimator was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EstimatorError {
    /// A word is not a time (tc's `invarg()`, which names what was
    /// expected, not the word).
    #[error("Error: argument \"{1}\" is wrong: estimator")]
    BadTime(String, &'static str),
    /// A time is missing.
    #[error("Command line is not complete. Try option \"help\"")]
    Incomplete,
    /// The times give no valid interval or weight.
    #[error("Error: estimator parameters are out of range.")]
    OutOfRange,
}

impl EstimatorSpec {
    /// Kernel: iproute2 `parse_estimator()`: the words after `estimator`,
    /// an interval and a time constant (`1sec 8sec`).
    pub fn parse(interval: Option<&str>, time_const: Option<&str>) -> Result<Self, EstimatorError> {
        let us = |w: Option<&str>, what: &'static str| -> Result<u64, EstimatorError> {
            let w = w.ok_or(EstimatorError::Incomplete)?;
            let d = parse_time(w).map_err(|_| EstimatorError::BadTime(w.to_owned(), what))?;
            Ok(d.as_micros() as u64)
        };
        let a = us(interval, "invalid estimator interval")?;
        let t = us(time_const, "invalid estimator time constant")?;
        EstimatorSpec::setup(a, t).ok_or(EstimatorError::OutOfRange)
    }

    /// Kernel: iproute2 `tc_setup_estimator()`: interval `a` and time
    /// constant `t`, in microseconds.
    fn setup(a: u64, t: u64) -> Option<Self> {
        let i = (0..=5u32).find(|&i| a <= (1u64 << i) * (US_PER_SEC as u64 / 4))?;
        let mut e = 1u32;
        while e < 32 {
            let w = 1.0 - 1.0 / f64::from(1u32 << e.min(31));
            if a as f64 / -w.ln() > t as f64 {
                break;
            }
            e += 1;
        }
        let ewma_log = e - 1;
        if ewma_log == 0 || ewma_log >= 31 {
            return None;
        }
        Some(EstimatorSpec {
            interval: i as i8 - 2,
            ewma_log: ewma_log as u8,
        })
    }

    /// The kernel's checks in `gen_new_estimator()` (`EINVAL`).
    pub fn valid(&self) -> bool {
        (-2..=3).contains(&self.interval) && (1..31).contains(&self.ewma_log)
    }

    /// `intvl_log`: log2 of the period in quarter seconds.
    fn intvl_log(&self) -> u32 {
        (self.interval + 2) as u32
    }

    /// The sampling period, in nanoseconds.
    pub fn period_ns(&self) -> u64 {
        250_000_000u64 << self.intvl_log()
    }
}

/// A running estimator (`struct net_rate_estimator`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateEst {
    spec: EstimatorSpec,
    last_bytes: u64,
    last_packets: u64,
    /// Bytes per second, times 256.
    avbps: u64,
    /// Packets per second, times 256.
    avpps: u64,
    next: Instant,
}

impl RateEst {
    /// Kernel: `gen_new_estimator()`: started at `now` from the counters
    /// `bytes` and `packets`, its first sample a period on.
    pub fn new(spec: EstimatorSpec, now: Instant, bytes: u64, packets: u64) -> RateEst {
        RateEst {
            spec,
            last_bytes: bytes,
            last_packets: packets,
            avbps: 0,
            avpps: 0,
            next: Instant::from_nanos(now.as_nanos() + spec.period_ns()),
        }
    }

    /// When the next sample is due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// The estimator's parameters.
    pub fn spec(&self) -> EstimatorSpec {
        self.spec
    }

    /// Kernel: `est_timer()`: one sample of the counters, taken at the
    /// due time (`now` is when it is taken, for a late one's rearming).
    pub fn sample(&mut self, now: Instant, bytes: u64, packets: u64) {
        let shift = 10 - self.spec.intvl_log();
        let e = u32::from(self.spec.ewma_log);
        let step = |av: u64, delta: u64| {
            let sample = delta.wrapping_shl(shift);
            av.wrapping_add((sample >> e).wrapping_sub(av >> e))
        };
        self.avbps = step(self.avbps, bytes.wrapping_sub(self.last_bytes));
        self.avpps = step(self.avpps, packets.wrapping_sub(self.last_packets));
        (self.last_bytes, self.last_packets) = (bytes, packets);
        let period = self.spec.period_ns();
        let next = self.next.as_nanos() + period;
        // A timer late by a period or more rearms from now (one jiffy on).
        self.next = Instant::from_nanos(if next <= now.as_nanos() {
            now.as_nanos() + 1
        } else {
            next
        });
    }

    /// Kernel: `gen_estimator_read()`: bytes and packets per second.
    pub fn read(&self) -> (u64, u64) {
        (self.avbps >> 8, self.avpps >> 8)
    }
}

/// What an estimator measures: a qdisc (by handle) or a class (by id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EstTarget {
    /// The qdisc of this handle.
    Qdisc(u32),
    /// The class of this id.
    Class(u32),
}

/// The estimators of one device, and when the next sample is due.
#[derive(Debug, Default)]
pub struct Estimators {
    list: Vec<(EstTarget, RateEst)>,
}

/// No sample due (`next_due` of a device without estimators).
pub const NEVER: u64 = u64::MAX;

impl Estimators {
    /// The earliest due sample, in nanoseconds ([`NEVER`] for none).
    pub fn next_due(&self) -> u64 {
        self.list
            .iter()
            .map(|(_, e)| e.next().as_nanos())
            .min()
            .unwrap_or(NEVER)
    }

    /// Starts (or with `None` stops) the estimator of `target`, from its
    /// counters now (a new one replaces the old: `gen_replace_estimator`).
    pub fn set(
        &mut self,
        target: EstTarget,
        spec: Option<EstimatorSpec>,
        now: Instant,
        counters: (u64, u64),
    ) {
        self.list.retain(|(t, _)| *t != target);
        if let Some(spec) = spec {
            self.list
                .push((target, RateEst::new(spec, now, counters.0, counters.1)));
        }
    }

    /// Every estimate: its target, bytes and packets per second.
    pub fn all(&self) -> Vec<(EstTarget, (u64, u64))> {
        self.list.iter().map(|(t, e)| (*t, e.read())).collect()
    }

    /// The estimate of `target`: bytes and packets per second.
    pub fn read(&self, target: EstTarget) -> Option<(u64, u64)> {
        self.list
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, e)| e.read())
    }

    /// Takes every sample due by `now`, the counters of each target from
    /// `counters` (`None`: it is gone, and its estimator with it).
    pub fn catch_up(
        &mut self,
        now: Instant,
        mut counters: impl FnMut(EstTarget) -> Option<(u64, u64)>,
    ) {
        self.list.retain_mut(|(t, e)| {
            if e.next() > now {
                return true;
            }
            let Some((bytes, packets)) = counters(*t) else {
                return false;
            };
            while e.next() <= now {
                let at = e.next();
                e.sample(at, bytes, packets);
            }
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tc_turns_times_into_an_interval_and_a_weight() {
        let p = |a, t| EstimatorSpec::parse(Some(a), Some(t));
        assert_eq!(
            p("1sec", "8sec").unwrap(),
            EstimatorSpec {
                interval: 0,
                ewma_log: 3
            }
        );
        assert_eq!(
            p("250ms", "1sec").unwrap(),
            EstimatorSpec {
                interval: -2,
                ewma_log: 2
            }
        );
        assert_eq!(
            p("8sec", "64sec").unwrap(),
            EstimatorSpec {
                interval: 3,
                ewma_log: 3
            }
        );
        assert_eq!(p("16sec", "64sec"), Err(EstimatorError::OutOfRange));
        assert_eq!(p("1sec", "1sec"), Err(EstimatorError::OutOfRange));
        assert!(matches!(p("x", "1sec"), Err(EstimatorError::BadTime(..))));
        assert_eq!(
            EstimatorSpec::parse(Some("1sec"), None),
            Err(EstimatorError::Incomplete)
        );
    }

    /// A steady 1000 bytes and 10 packets a second, sampled each second
    /// with weight 1/8: the averages approach the rate as 1 - (7/8)^n.
    #[test]
    fn a_steady_rate_is_approached_geometrically() {
        let spec = EstimatorSpec {
            interval: 0,
            ewma_log: 3,
        };
        let mut e = RateEst::new(spec, Instant::from_nanos(0), 0, 0);
        let mut want = 0.0f64;
        for n in 1..=40u64 {
            let t = Instant::from_nanos(n * 1_000_000_000);
            assert_eq!(e.next(), t, "a sample each second");
            e.sample(t, 1000 * n, 10 * n);
            want += (1000.0 - want) / 8.0;
            let (bps, pps) = e.read();
            assert!((bps as f64 - want).abs() <= 1.0, "n {n}: {bps} vs {want}");
            assert!(pps <= 10);
        }
    }

    #[test]
    fn a_late_sample_rearms_from_now() {
        let spec = EstimatorSpec {
            interval: -2,
            ewma_log: 2,
        };
        let mut e = RateEst::new(spec, Instant::from_nanos(0), 0, 0);
        e.sample(Instant::from_nanos(900_000_000), 100, 1);
        assert_eq!(e.next(), Instant::from_nanos(900_000_001));
    }
}
