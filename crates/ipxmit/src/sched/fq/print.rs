//! tc 6.1's `fq_print_opt()` and `fq_print_xstats()` of what the kernel's
//! `fq_dump()` and `fq_dump_stats()` send.
//!
//! The kernel also dumps `TCA_FQ_PRIOMAP`, `TCA_FQ_WEIGHTS` and
//! `TCA_FQ_OFFLOAD_HORIZON`, and the band counters in its statistics; tc
//! 6.1 does not know them and prints none.

use std::fmt::Write as _;
use std::time::Duration;

use super::{jiffies_to_usecs, Fq, FqConfig, NO_TIME};
use crate::sched::OptValue;
use crate::units::{format_rate, format_size, format_time, format_time_us};

/// The values `fq_dump()` sends, as tc reads them back.
struct Dump {
    maxrate: u32,
    refill_delay_us: u32,
    ce_threshold_us: u32,
    horizon_us: u32,
}

/// Kernel: `fq_dump()`'s conversions (rates capped to 32 bits, times in
/// microseconds).
fn dump(c: &FqConfig) -> Dump {
    Dump {
        maxrate: c.maxrate.min(u64::from(u32::MAX)) as u32,
        refill_delay_us: jiffies_to_usecs(c.refill_delay),
        ce_threshold_us: (c.ce_threshold / 1000) as u32,
        horizon_us: (c.horizon / 1000) as u32,
    }
}

/// tc 6.1's `fq_print_opt()`: `limit 10000p flow_limit 100p buckets 1024
/// orphan_mask 1023 quantum 3028b initial_quantum 15140b low_rate_threshold
/// 550Kbit refill_delay 40ms timer_slack 10us horizon 10s horizon_drop `.
pub(super) fn print_opt(c: &FqConfig) -> String {
    let d = dump(c);
    let mut o = format!(
        "limit {}p flow_limit {}p buckets {} orphan_mask {} ",
        c.limit,
        c.flow_limit,
        1u64 << c.buckets_log,
        c.orphan_mask
    );
    if !c.pacing {
        o += "nopacing ";
    }
    let _ = write!(
        o,
        "quantum {} initial_quantum {} ",
        format_size(u64::from(c.quantum)),
        format_size(u64::from(c.initial_quantum))
    );
    if d.maxrate != u32::MAX {
        let _ = write!(o, "maxrate {} ", format_rate(u64::from(d.maxrate) * 8));
    }
    if c.low_rate_threshold != 0 {
        let bits = u64::from(c.low_rate_threshold) * 8;
        let _ = write!(o, "low_rate_threshold {} ", format_rate(bits));
    }
    let _ = write!(
        o,
        "refill_delay {} ",
        format_time_us(d.refill_delay_us.into())
    );
    if d.ce_threshold_us != u32::MAX {
        let us = u64::from(d.ce_threshold_us);
        let _ = write!(o, "ce_threshold {} ", format_time_us(us));
    }
    let slack = Duration::from_nanos(c.timer_slack.into());
    let _ = write!(o, "timer_slack {} ", format_time(slack));
    let _ = write!(o, "horizon {} ", format_time_us(d.horizon_us.into()));
    o += if c.horizon_drop {
        "horizon_drop "
    } else {
        "horizon_cap "
    };
    o
}

/// `tc -j`'s options of `fq` (rates in bytes per second, times as dumped).
/// tc prints `horizon_drop`/`horizon_cap` as a JSON `null`, which
/// [`OptValue`] cannot say: they are given as `true`.
pub(super) fn options(c: &FqConfig) -> Vec<(&'static str, OptValue)> {
    let d = dump(c);
    let num = |v: u64| OptValue::Num(v);
    let mut o = vec![
        ("limit", num(c.limit.into())),
        ("flow_limit", num(c.flow_limit.into())),
        ("buckets", num(1u64 << c.buckets_log)),
        ("orphan_mask", num(c.orphan_mask.into())),
    ];
    if !c.pacing {
        o.push(("pacing", OptValue::Bool(false)));
    }
    o.push(("quantum", num(c.quantum.into())));
    o.push(("initial_quantum", num(c.initial_quantum.into())));
    if d.maxrate != u32::MAX {
        o.push(("maxrate", num(d.maxrate.into())));
    }
    if c.low_rate_threshold != 0 {
        o.push(("low_rate_threshold", num(c.low_rate_threshold.into())));
    }
    o.push(("refill_delay", num(d.refill_delay_us.into())));
    if d.ce_threshold_us != u32::MAX {
        o.push(("ce_threshold", num(d.ce_threshold_us.into())));
    }
    o.push(("timer_slack", num(c.timer_slack.into())));
    o.push(("horizon", num(d.horizon_us.into())));
    let horizon = if c.horizon_drop {
        "horizon_drop"
    } else {
        "horizon_cap"
    };
    o.push((horizon, OptValue::Bool(true)));
    o
}

/// Kernel: `fq_dump_stats()`'s `time_next_delayed_flow`: the next pacing
/// timer's expiry (with its slack) less `now`, when ahead. With no flow
/// throttled (`~0`) the kernel's sum wraps to a negative value at any
/// real uptime: nothing is printed.
fn next_packet_delay(q: &Fq, now: u64) -> Option<u64> {
    if q.time_next_delayed_flow == NO_TIME {
        return None;
    }
    let t = q
        .time_next_delayed_flow
        .wrapping_add(q.cfg.timer_slack.into())
        .wrapping_sub(now) as i64;
    (t > 0).then_some(t as u64)
}

/// tc 6.1's `fq_print_xstats()` at `now`: `  flows 2 (inactive 1 throttled
/// 0)` and `  gc 0 highprio 0 throttled 3`, then the counters tc prints
/// only when not zero.
pub(super) fn print_xstats(q: &Fq, now: u64) -> String {
    let s = &q.xs;
    let mut o = format!(
        "  flows {} (inactive {} throttled {})",
        q.nflows, q.inactive_flows, q.throttled_flows
    );
    if let Some(d) = next_packet_delay(q, now) {
        let _ = write!(
            o,
            " next_packet_delay {}",
            format_time(Duration::from_nanos(d))
        );
    }
    let _ = write!(
        o,
        "\n  gc {} highprio 0 throttled {}",
        s.gc_flows, s.throttled
    );
    let latency = q.unthrottle_latency_ns.min(u64::from(u32::MAX));
    if latency != 0 {
        let _ = write!(o, " latency {}", format_time(Duration::from_nanos(latency)));
    }
    for (k, v) in [(" ce_mark", s.ce_mark), (" flows_plimit", s.flows_plimit)] {
        if v != 0 {
            let _ = write!(o, "{k} {v}");
        }
    }
    let rare = [
        (" pkts_too_long", s.pkts_too_long),
        (" alloc_errors", s.allocation_errors),
        (" horizon_drops", s.horizon_drops),
        ("  horizon_caps", s.horizon_caps),
    ];
    if rare.iter().any(|&(_, v)| v != 0) {
        o.push('\n');
        for (k, v) in rare.into_iter().filter(|&(_, v)| v != 0) {
            let _ = write!(o, "{k} {v}");
        }
    }
    o
}
