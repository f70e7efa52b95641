//! Progress of a running workload, on stderr.
//!
//! When stderr is a terminal: a bar redrawn in place with the rate (indicatif).
//! Otherwise: one plain line per second (`[  2.0s] 123456 datagrams  1.234
//! Gbit/s`), no escape sequences and no carriage returns, so logs stay
//! readable. Nothing at all with `--json` or when the run is silent.

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
        }
    }

    /// Shows `datagrams` sent and `payload` bytes so far.
    pub fn update(&mut self, datagrams: u64, payload: u64) {
        let el = self.start.elapsed();
        match &mut self.mode {
            Mode::Bar(b) => {
                b.set_position(self.duration.map_or(datagrams, |_| el.as_millis() as u64));
                b.set_message(format!("{}, {datagrams} datagrams", gbit(payload, el)));
            }
            Mode::Plain { next } if Instant::now() >= *next => {
                *next += PLAIN_INTERVAL;
                let _ = writeln!(
                    io::stderr(),
                    "[{:>6.1}s] {datagrams} datagrams  {}",
                    el.as_secs_f64(),
                    gbit(payload, el)
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

fn gbit(payload: u64, el: Duration) -> String {
    format!(
        "{:.3} Gbit/s",
        payload as f64 * 8.0 / el.as_secs_f64().max(1e-9) / 1e9
    )
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
