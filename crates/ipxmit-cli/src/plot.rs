//! `ipxmit run --plot FILE.svg`: each qdisc's and class's throughput and
//! backlog over the clock, drawn as SVG.
//!
//! The runner samples the cumulative bytes sent and the backlog of every
//! qdisc in each device's tree (root and grafted) and of every class, each
//! time the host settles (after each line, and at every step of a `sleep`
//! on the virtual clock). The drawing bins the run into equal intervals:
//! throughput is the bytes sent in a bin over its width, backlog the last
//! value seen by the bin's end.

use std::collections::BTreeMap;
use std::path::Path;

use ipxmit::sched::api::Handle;
use ipxmit::sched::Qdisc;
use ipxmit::Stack;
use plotters::prelude::*;

/// Bins across the run.
const BINS: usize = 200;

/// One series' samples: (time ns, bytes sent so far, backlog bytes).
type Samples = Vec<(u64, u64, u64)>;
/// A binned point: (bin end in ms, Mbit/s in the bin, backlog at its end).
type Point = (f64, f64, f64);
/// A named binned series.
type Binned<'a> = (&'a String, Vec<Point>);

/// The samples of a run, by series name (`eth0 1: htb`, `eth0 class 1:10`).
#[derive(Debug, Default)]
pub struct Sampler {
    series: BTreeMap<String, Samples>,
    /// The first and last times sampled.
    span: Option<(u64, u64)>,
}

impl Sampler {
    /// Records every qdisc's and class's counters at the stack's clock.
    pub fn sample(&mut self, stack: &Stack) {
        let now = stack.now().as_nanos();
        self.span = Some(
            self.span
                .map_or((now, now), |(a, b)| (a.min(now), b.max(now))),
        );
        for d in stack.devices() {
            let txq = &d.queues()[0];
            let h = txq.qdisc_handle();
            let name = d.name().to_owned();
            txq.with_qdisc(|q| {
                self.qdisc(&name, h, q, now);
                for (_, ch, c) in crate::script::tc::grafted(q) {
                    self.qdisc(&name, ch, c, now);
                }
            });
        }
    }

    /// One qdisc and its classes.
    fn qdisc(&mut self, dev: &str, h: u32, q: &dyn Qdisc, now: u64) {
        let s = q.stats();
        self.push(
            format!("{dev} {} {}", Handle(h), q.kind()),
            now,
            s.bytes,
            s.backlog,
        );
        for minor in q.classes() {
            let id = (h & 0xffff_0000) | minor;
            if let Some(c) = q.class_show(id, false) {
                let name = format!("{dev} class {}", Handle(id));
                self.push(name, now, c.stats.bytes, c.stats.backlog);
            }
        }
    }

    /// Adds a sample unless it repeats the last one's values.
    fn push(&mut self, name: String, t: u64, bytes: u64, backlog: u64) {
        let v = self.series.entry(name).or_default();
        if v.last()
            .is_some_and(|&(_, b, q)| (b, q) == (bytes, backlog))
        {
            return;
        }
        v.push((t, bytes, backlog));
    }

    /// Draws throughput (Mbit/s) and backlog (bytes) over time (ms) into
    /// `path`.
    pub fn write_svg(&self, path: &Path) -> anyhow::Result<()> {
        let (t0, t1) = self.span();
        let width = ((t1 - t0) / BINS as u64).max(1);
        let binned: Vec<Binned<'_>> = self
            .series
            .iter()
            .map(|(n, s)| (n, bin(s, t0, width)))
            .collect();
        let root = SVGBackend::new(path, (1000, 800)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(400);
        let xmax = (t1 - t0) as f64 / 1e6;
        let max_of = |f: fn(&(f64, f64, f64)) -> f64| {
            binned
                .iter()
                .flat_map(|(_, v)| v.iter().map(f))
                .fold(0.0f64, f64::max)
                .max(1e-9)
        };
        let rate_max = max_of(|p| p.1) * 1.1;
        let backlog_max = max_of(|p| p.2) * 1.1;
        chart(&top, "throughput", "Mbit/s", xmax, rate_max, &binned, |p| {
            p.1
        })?;
        chart(
            &bottom,
            "backlog",
            "bytes",
            xmax,
            backlog_max,
            &binned,
            |p| p.2,
        )?;
        root.present()?;
        Ok(())
    }

    /// The first and last sample times (at least 1 ns apart).
    fn span(&self) -> (u64, u64) {
        let (lo, hi) = self.span.unwrap_or((0, 1));
        (lo, hi.max(lo + 1))
    }
}

/// A series in bins of `width` ns from `t0`: (bin end in ms, Mbit/s in the
/// bin, backlog at its end).
fn bin(s: &Samples, t0: u64, width: u64) -> Vec<(f64, f64, f64)> {
    let at = |t: u64| {
        let i = s.partition_point(|x| x.0 <= t);
        if i == 0 {
            (0, 0)
        } else {
            (s[i - 1].1, s[i - 1].2)
        }
    };
    (1..=BINS as u64)
        .map(|k| {
            let (a, b) = (t0 + (k - 1) * width, t0 + k * width);
            let (bytes_a, _) = at(a);
            let (bytes_b, backlog) = at(b);
            let mbps = (bytes_b - bytes_a) as f64 * 8.0 / (width as f64 / 1e9) / 1e6;
            ((b - t0) as f64 / 1e6, mbps, backlog as f64)
        })
        .collect()
}

/// One chart: every series' `y` over time.
fn chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    unit: &str,
    xmax: f64,
    ymax: f64,
    series: &[Binned<'_>],
    y: fn(&Point) -> f64,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let mut c = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..xmax, 0.0..ymax)?;
    c.configure_mesh().x_desc("ms").y_desc(unit).draw()?;
    for (i, (name, v)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        c.draw_series(LineSeries::new(v.iter().map(|p| (p.0, y(p))), color))?
            .label(name.as_str())
            .legend(move |(x, yy)| PathElement::new(vec![(x, yy), (x + 15, yy)], color));
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_turn_cumulative_bytes_into_rates_and_keep_the_backlog() {
        // 1250 bytes in each millisecond (10 Mbit/s) for 4 ms, backlog
        // 3000 until 2 ms then 0; bins of 1 ms from 0.
        let s: Samples = vec![
            (0, 0, 3000),
            (1_000_000, 1250, 3000),
            (2_000_000, 2500, 0),
            (3_000_000, 3750, 0),
            (4_000_000, 5000, 0),
        ];
        let b = bin(&s, 0, 1_000_000);
        assert_eq!(b[0], (1.0, 10.0, 3000.0));
        assert_eq!(b[1], (2.0, 10.0, 0.0));
        assert_eq!(b[3], (4.0, 10.0, 0.0));
        assert_eq!(b[4], (5.0, 0.0, 0.0));
    }

    #[test]
    fn a_sampled_run_draws_every_qdisc_and_class() {
        let dir = std::env::temp_dir().join(format!("ipxmit-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.svg");
        let mut s = Sampler::default();
        s.push("eth0 1: htb".into(), 0, 0, 0);
        s.push("eth0 1: htb".into(), 5_000_000, 6250, 100);
        s.push("eth0 class 1:10".into(), 5_000_000, 6250, 100);
        s.span = Some((0, 5_000_000));
        s.write_svg(&path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        for want in ["throughput", "backlog", "eth0 1: htb", "eth0 class 1:10"] {
            assert!(svg.contains(want), "{want}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
