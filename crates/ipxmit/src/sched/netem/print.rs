//! `netem` as `tc qdisc show` prints it.
//!
//! Stands for the kernel's `netem_dump()` (what it reports: ticks for
//! the delay, `INT_MAX` slot budgets as 0, the slot only when set) and
//! iproute2 6.1's `netem_print_opt()`, text and JSON.

use std::fmt::Write;
use std::time::Duration;

use super::num::{fraction_value, percent_value, ticks_to_time};
use crate::units::{format_g, format_rate, format_time, format_time_us};

/// What `netem_dump()` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dump {
    /// `qopt.limit`.
    pub limit: u32,
    /// `qopt.latency`, psched ticks.
    pub latency: u32,
    /// `qopt.jitter`, psched ticks.
    pub jitter: u32,
    /// `qopt.loss`.
    pub loss: u32,
    /// `qopt.gap`.
    pub gap: u32,
    /// `qopt.duplicate`.
    pub duplicate: u32,
    /// `TCA_NETEM_CORR`: delay, loss, duplicate.
    pub corr: [u32; 3],
    /// `TCA_NETEM_REORDER`: probability, correlation.
    pub reorder: [u32; 2],
    /// `TCA_NETEM_CORRUPT`: probability, correlation.
    pub corrupt: [u32; 2],
    /// Bytes per second (`TCA_NETEM_RATE`/`RATE64`).
    pub rate: u64,
    /// `packet_overhead`, `cell_size`, `cell_overhead`.
    pub rate_extra: (i32, u32, i32),
    /// `TCA_NETEM_ECN`.
    pub ecn: bool,
    /// `NETEM_LOSS_GI`: p13, p31, p32, p23, p14.
    pub gi: Option<[u32; 5]>,
    /// `NETEM_LOSS_GE`: p, r, h, k1.
    pub ge: Option<[u32; 4]>,
    /// `TCA_NETEM_SLOT`: min, max, packets, bytes, dist delay, dist jitter.
    pub slot: Option<(i64, i64, i32, i32, i64, i64)>,
}

/// `sprint_ticks()`.
fn ticks(t: u32) -> String {
    format_time_us(u64::from(ticks_to_time(t)))
}

/// `sprint_time64()`.
fn time64(ns: i64) -> String {
    if ns < 0 {
        return format!("{ns}ns");
    }
    format_time(Duration::from_nanos(ns as u64))
}

/// A percentage as text (`1%`).
fn pct(p: u32) -> String {
    format!("{}%", format_g(percent_value(p), 6))
}

/// tc's text: `limit 1000 delay 100ms  10ms loss 1%`.
pub fn text(d: &Dump) -> String {
    let mut o = format!("limit {}", d.limit);
    if d.latency != 0 {
        let _ = write!(o, " delay {}", ticks(d.latency));
        if d.jitter != 0 {
            let _ = write!(o, "  {}", ticks(d.jitter));
            if d.corr[0] != 0 {
                let _ = write!(o, " {}", pct(d.corr[0]));
            }
        }
    }
    let with_corr = |o: &mut String, key: &str, p: u32, c: u32| {
        let _ = write!(o, " {key} {}", pct(p));
        if c != 0 {
            let _ = write!(o, " {}", pct(c));
        }
    };
    if d.loss != 0 {
        with_corr(&mut o, "loss", d.loss, d.corr[1]);
    }
    if let Some([p13, p31, p32, p23, p14]) = d.gi {
        let _ = write!(
            o,
            " loss state p13 {} p31 {} p32 {} p23 {} p14 {}",
            pct(p13),
            pct(p31),
            pct(p32),
            pct(p23),
            pct(p14)
        );
    }
    if let Some([p, r, h, k1]) = d.ge {
        let _ = write!(
            o,
            " loss gemodel p {} r {} 1-h {} 1-k {}",
            pct(p),
            pct(r),
            pct(u32::MAX - h),
            pct(k1)
        );
    }
    if d.duplicate != 0 {
        with_corr(&mut o, "duplicate", d.duplicate, d.corr[2]);
    }
    for (key, [p, c]) in [("reorder", d.reorder), ("corrupt", d.corrupt)] {
        if p != 0 {
            with_corr(&mut o, key, p, c);
        }
    }
    text_rate_slot(&mut o, d);
    if d.ecn {
        o += " ecn ";
    }
    if d.gap != 0 {
        let _ = write!(o, " gap {}", d.gap);
    }
    o
}

/// The rate and slot parts of the text.
fn text_rate_slot(o: &mut String, d: &Dump) {
    if d.rate != 0 {
        let (po, cs, co) = d.rate_extra;
        let _ = write!(o, " rate {}", format_rate(d.rate.saturating_mul(8)));
        for (key, v) in [
            ("packetoverhead", i64::from(po)),
            ("cellsize", i64::from(cs)),
        ] {
            if v != 0 {
                let _ = write!(o, " {key} {v}");
            }
        }
        if co != 0 {
            let _ = write!(o, " celloverhead {co}");
        }
    }
    if let Some((min, max, packets, bytes, dd, dj)) = d.slot {
        if dj > 0 {
            let _ = write!(o, " slot distribution {} {}", time64(dd), time64(dj));
        } else {
            let _ = write!(o, " slot {} {}", time64(min), time64(max));
        }
        for (key, v) in [("packets", packets), ("bytes", bytes)] {
            if v != 0 {
                let _ = write!(o, " {key} {v}");
            }
        }
    }
}

/// A JSON number as tc's `print_float` writes it (`%g`).
fn jf(v: f64) -> String {
    format_g(v, 6)
}

/// tc's `-j` object: `{"limit":1000,"delay":{...},...,"ecn":false,"gap":0}`.
pub fn json(d: &Dump) -> String {
    let mut o = format!("{{\"limit\":{}", d.limit);
    if d.latency != 0 {
        let secs = |t: u32| jf(f64::from(ticks_to_time(t)) / 1e6);
        let _ = write!(
            o,
            ",\"delay\":{{\"delay\":{},\"jitter\":{},\"correlation\":{}}}",
            secs(d.latency),
            secs(d.jitter),
            jf(fraction_value(d.corr[0]))
        );
    }
    let pair = |o: &mut String, obj: &str, key: &str, p: u32, c: u32| {
        let _ = write!(
            o,
            ",\"{obj}\":{{\"{key}\":{},\"correlation\":{}}}",
            jf(fraction_value(p)),
            jf(fraction_value(c))
        );
    };
    if d.loss != 0 {
        pair(&mut o, "loss-random", "loss", d.loss, d.corr[1]);
    }
    json_loss_models(&mut o, d);
    if d.duplicate != 0 {
        pair(&mut o, "duplicate", "duplicate", d.duplicate, d.corr[2]);
    }
    for (key, [p, c]) in [("reorder", d.reorder), ("corrupt", d.corrupt)] {
        if p != 0 {
            pair(&mut o, key, key, p, c);
        }
    }
    json_rate_slot(&mut o, d);
    let _ = write!(o, ",\"ecn\":{},\"gap\":{}}}", d.ecn, d.gap);
    o
}

/// The `loss-state` and `loss-gemodel` objects.
fn json_loss_models(o: &mut String, d: &Dump) {
    let obj = |o: &mut String, name: &str, kv: &[(&str, u32)]| {
        let fields: Vec<String> = kv
            .iter()
            .map(|(k, v)| format!("\"{k}\":{}", jf(fraction_value(*v))))
            .collect();
        let _ = write!(o, ",\"{name}\":{{{}}}", fields.join(","));
    };
    if let Some([p13, p31, p32, p23, p14]) = d.gi {
        let kv = [
            ("p13", p13),
            ("p31", p31),
            ("p32", p32),
            ("p23", p23),
            ("p14", p14),
        ];
        obj(o, "loss-state", &kv);
    }
    if let Some([p, r, h, k1]) = d.ge {
        let kv = [("p", p), ("r", r), ("1-h", u32::MAX - h), ("1-k", k1)];
        obj(o, "loss-gemodel", &kv);
    }
}

/// The `rate` and `slot` objects.
fn json_rate_slot(o: &mut String, d: &Dump) {
    if d.rate != 0 {
        let (po, cs, co) = d.rate_extra;
        let _ = write!(
            o,
            ",\"rate\":{{\"rate\":{},\"packetoverhead\":{po},\"cellsize\":{cs},\"celloverhead\":{co}}}",
            d.rate
        );
    }
    if let Some((min, max, packets, bytes, dd, dj)) = d.slot {
        let secs = |ns: i64| jf(ns as f64 / 1e9);
        let (k1, v1, k2, v2) = if dj > 0 {
            ("distribution", dd, "jitter", dj)
        } else {
            ("min-delay", min, "max-delay", max)
        };
        let _ = write!(
            o,
            ",\"slot\":{{\"{k1}\":{},\"{k2}\":{},\"packets\":{packets},\"bytes\":{bytes}}}",
            secs(v1),
            secs(v2)
        );
    }
}
