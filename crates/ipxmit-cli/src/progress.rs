//! Progress of a running workload, on stderr.
//!
//! When stderr is a terminal: a bar redrawn in place with the rate (indicatif).
//! Otherwise: one plain line per second (`[  2.0s] 123456 datagrams  1.234
//! Gbit/s`), no escape sequences and no carriage returns, so logs stay
//! readable. Nothing at all with `--json` or when the run is silent. The rate
//! is the last interval's (as iperf3's per-interval lines), not the average
//! since the start, so a change of pace shows at once.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a plain progress line is printed.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(1);

/// What the display shows.
enum Mode {
    Bar(indicatif::ProgressBar),
    Plain { next: Instant },
    Off,
}

/// A progress display for a run of `count` datagrams or of `duration`.
pub struct Progress {
    mode: Mode,
    start: Instant,
    duration: Option<Duration>,
    /// The rate over the last interval.
    rate: IntervalRate,
}

/// Kept for the rate of the last interval: when it began and the payload
/// sent by then, and the rate the interval before it ended with.
#[derive(Clone, Copy, Debug)]
struct IntervalRate {
    mark: (Duration, u64),
    shown: Option<f64>,
}

/// The shortest interval a terminal bar's rate is taken over.
const BAR_INTERVAL: Duration = Duration::from_millis(250);

impl IntervalRate {
    /// At `el` with `payload` bytes sent: the rate (bit/s) of the interval
    /// that ends now when it is at least `min` long, else the last one's
    /// (at first, the average since the start).
    fn at(&mut self, el: Duration, payload: u64, min: Duration) -> f64 {
        let dt = el.saturating_sub(self.mark.0);
        if dt >= min || self.shown.is_none() {
            let bits = payload.saturating_sub(self.mark.1) as f64 * 8.0;
            self.shown = Some(bits / dt.as_secs_f64().max(1e-9));
            if dt >= min {
                self.mark = (el, payload);
            }
        }
        self.shown.unwrap_or(0.0)
    }
}

impl Progress {
    /// A display chosen by whether stderr is a terminal; `quiet` turns it off.
    pub fn new(quiet: bool, count: u64, duration: Option<Duration>) -> Progress {
        let start = Instant::now();
        let mode = if quiet {
            Mode::Off
        } else if io::stderr().is_terminal() {
            Mode::Bar(bar(count, duration))
        } else {
            Mode::Plain {
                next: start + PLAIN_INTERVAL,
            }
        };
        Progress {
            mode,
            start,
            duration,
            rate: IntervalRate {
                mark: (Duration::ZERO, 0),
                shown: None,
            },
        }
    }

    /// Shows `datagrams` sent and `payload` bytes so far.
    pub fn update(&mut self, datagrams: u64, payload: u64) {
        let el = self.start.elapsed();
        match &mut self.mode {
            Mode::Bar(b) => {
                let r = self.rate.at(el, payload, BAR_INTERVAL);
                b.set_position(self.duration.map_or(datagrams, |_| el.as_millis() as u64));
                b.set_message(format!("{}, {datagrams} datagrams", gbit(r)));
            }
            Mode::Plain { next } if Instant::now() >= *next => {
                *next += PLAIN_INTERVAL;
                let r = self.rate.at(el, payload, Duration::ZERO);
                let _ = writeln!(
                    io::stderr(),
                    "[{:>6.1}s] {datagrams} datagrams  {}",
                    el.as_secs_f64(),
                    gbit(r)
                );
            }
            _ => {}
        }
    }

    /// Removes the bar.
    pub fn finish(self) {
        if let Mode::Bar(b) = self.mode {
            b.finish_and_clear();
        }
    }
}

fn gbit(bits_per_sec: f64) -> String {
    format!("{:.3} Gbit/s", bits_per_sec / 1e9)
}

fn bar(count: u64, duration: Option<Duration>) -> indicatif::ProgressBar {
    let (len, unit) = match duration {
        Some(d) => (d.as_millis() as u64, "ms"),
        None => (count, "datagrams"),
    };
    let b = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let tpl = format!("{{bar:40}} {{pos}}/{{len}} {unit}  {{msg}}");
    b.set_style(
        indicatif::ProgressStyle::with_template(&tpl)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1 Gbit/s for two seconds, then 0.1 Gbit/s: the third line shows
    /// 0.1 (the average since the start would show 0.7).
    #[test]
    fn the_rate_is_the_last_intervals() {
        let mut r = IntervalRate {
            mark: (Duration::ZERO, 0),
            shown: None,
        };
        let s = Duration::from_secs;
        let gb = 125_000_000u64;
        assert_eq!(r.at(s(1), gb, Duration::ZERO), 1e9);
        assert_eq!(r.at(s(2), 2 * gb, Duration::ZERO), 1e9);
        let third = r.at(s(3), 2 * gb + gb / 10, Duration::ZERO);
        assert!((third - 1e8).abs() < 1.0, "{third}");
        // A bar's update within its interval keeps the last rate shown.
        let mut b = r;
        assert_eq!(
            b.at(s(3) + Duration::from_millis(100), 3 * gb, BAR_INTERVAL),
            third
        );
    }
}
