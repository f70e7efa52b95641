//! Printing the results: the tables (comfy-table), the targets (issue 6's,
//! those of the qdisc and hook cases, and the rules case's against ipxmit's
//! own 18B) with how far each is from being met, and one JSON object for
//! `--json`.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde_json::{json, Value};

use super::measure::{median, Sample};
use super::sink::{CaseResult, Side, SinkTable};
use super::wires::{self, WireRow};

/// Medians of one sender over its rounds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Medians {
    /// Datagrams per second.
    pub dps: f64,
    /// Frames per second at the sink.
    pub fps: f64,
    /// Payload Gbit/s.
    pub gbps: f64,
    /// CPU nanoseconds per datagram.
    pub cpu_ns: f64,
    /// Share of wall time on the CPU.
    pub busy: f64,
    /// Every round's frame count matched the expectation.
    pub frames_ok: bool,
    /// Refused sends over all rounds.
    pub errors: u64,
}

/// Medians of a measured side.
pub fn medians(side: &Side) -> Option<Medians> {
    let s = side.samples();
    if s.is_empty() {
        return None;
    }
    Some(Medians {
        dps: median(s, Sample::datagram_rate),
        fps: median(s, Sample::frame_rate),
        gbps: median(s, Sample::gbps),
        cpu_ns: median(s, Sample::cpu_ns_per_datagram),
        busy: median(s, Sample::cpu_share),
        frames_ok: s.iter().all(Sample::frames_ok),
        errors: s.iter().map(|x| x.errors).sum(),
    })
}

/// The faster kernel sender of a case.
pub fn best_kernel(c: &CaseResult) -> Option<Medians> {
    [medians(&c.sendto), medians(&c.sendmmsg)]
        .into_iter()
        .flatten()
        .max_by(|a, b| a.dps.total_cmp(&b.dps))
}

/// "12.35M", "612.3k".
pub fn si(x: f64) -> String {
    match x {
        x if x >= 1e9 => format!("{:.2}G", x / 1e9),
        x if x >= 1e6 => format!("{:.2}M", x / 1e6),
        x if x >= 1e3 => format!("{:.1}k", x / 1e3),
        x => format!("{x:.1}"),
    }
}

fn side_row(t: &mut Table, case: &str, who: &str, side: &Side, ratio: Option<f64>) {
    let Some(m) = medians(side) else {
        let why = match side {
            Side::Skipped(w) => w.clone(),
            Side::Measured(_) => "no samples".to_string(),
        };
        t.add_row(vec![case.to_string(), who.to_string(), why]);
        return;
    };
    let check = match (m.frames_ok, m.errors) {
        (true, 0) => "ok".to_string(),
        (true, e) => format!("ok, {e} refused"),
        (false, _) => "MISMATCH".to_string(),
    };
    t.add_row(vec![
        case.to_string(),
        who.to_string(),
        si(m.dps),
        si(m.fps),
        format!("{:.2}", m.gbps),
        format!("{:.0}", m.cpu_ns),
        format!("{:.0}%", m.busy * 100.0),
        ratio.map_or_else(String::new, |r| format!("{r:.2}x")),
        check,
    ]);
}

/// What the B row's device has beyond its offloads: a root qdisc the case
/// sets, the output hook, the policy rules.
fn extras(c: &CaseResult) -> String {
    let mut s = String::new();
    if c.case.qdisc.is_some() {
        s.push_str(&format!(", {}", c.dev.qdisc));
    }
    if c.case.hook {
        s.push_str(", LocalOut hook");
    }
    if c.case.rules {
        s.push_str(", 10 rules, 5 tables");
    }
    if c.case.snat {
        s.push_str(", SNAT'd flow");
    }
    match c.case.nft {
        super::cases::NftCase::None => {}
        super::cases::NftCase::Rules20 => s.push_str(", nft: 20 rules + accept"),
        super::cases::NftCase::Set1000 => s.push_str(", nft: set of 1000 ports"),
    }
    s
}

/// The sink table as text.
pub fn sink_table(st: &SinkTable) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "case",
        "sender",
        "datagrams/s",
        "frames/s",
        "payload Gbit/s",
        "CPU ns/datagram",
        "CPU busy",
        "B/A",
        "sink count",
    ]);
    for c in &st.cases {
        let ratio = best_kernel(c)
            .zip(medians(&c.ipxmit))
            .map(|(a, b)| b.dps / a.dps);
        side_row(&mut t, c.case.name, "A: kernel sendto", &c.sendto, None);
        side_row(&mut t, c.case.name, "A: kernel sendmmsg", &c.sendmmsg, None);
        let api = if c.case.pieces > 1 {
            "send_batch (MSG_MORE per piece)"
        } else {
            "send_batch"
        };
        let who = format!(
            "B: ipxmit {api} -> null ({}{})",
            c.dev.features(),
            extras(c)
        );
        side_row(&mut t, c.case.name, &who, &c.ipxmit, ratio);
    }
    t.to_string()
}

/// The real-wire table as text.
pub fn wire_table(rows: &[WireRow]) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "case",
        "sender",
        "sent datagrams/s",
        "delivered datagrams/s",
        "delivered Gbit/s",
        "sender CPU ns/datagram",
        "delivered",
        "B/A delivered",
    ]);
    for r in rows {
        let (Some(sent), Some(dl), Some(g), Some(cpu)) = (
            r.sent(Sample::datagram_rate),
            r.delivered_rate(),
            r.delivered_gbps(),
            r.sent(Sample::cpu_ns_per_datagram),
        ) else {
            let why = r
                .result
                .as_ref()
                .err()
                .cloned()
                .unwrap_or_else(|| "no samples".into());
            t.add_row(vec![r.case.to_string(), r.sender.to_string(), why]);
            continue;
        };
        t.add_row(vec![
            r.case.to_string(),
            r.sender.to_string(),
            si(sent),
            si(dl),
            format!("{g:.2}"),
            format!("{cpu:.0}"),
            format!("{:.0}%", dl / sent.max(1e-9) * 100.0),
            wires::ratio(rows, r.case, r.sender).map_or_else(String::new, |x| format!("{x:.2}x")),
        ]);
    }
    t.to_string()
}

/// The real-wire table as JSON.
pub fn wires_json(rows: &[WireRow]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| match &r.result {
                Err(why) => json!({"case": r.case, "sender": r.sender, "skipped": why}),
                Ok(v) => json!({
                    "case": r.case, "sender": r.sender,
                    "sent_datagrams_per_s": r.sent(Sample::datagram_rate),
                    "delivered_datagrams_per_s": r.delivered_rate(),
                    "delivered_gbit_per_s": r.delivered_gbps(),
                    "sender_cpu_ns_per_datagram": r.sent(Sample::cpu_ns_per_datagram),
                    "ratio_delivered_datagrams_per_s": wires::ratio(rows, r.case, r.sender),
                    "rounds": v.iter().map(|w| json!({
                        "sent": sample_json(&w.sent), "delivered": w.delivered,
                        "delivered_bytes": w.delivered_bytes,
                    })).collect::<Vec<_>>(),
                }),
            })
            .collect(),
    )
}

/// One target of the issue.
#[derive(Clone, Debug)]
pub struct Target {
    /// What is compared.
    pub what: String,
    /// The factor required.
    pub want: f64,
    /// The factor measured, if measured.
    pub got: Option<f64>,
}

impl Target {
    /// "met", "MISSED by 1.12x", or "not measured" (two decimals: a miss
    /// of a few percent must not read as "by 1.0x").
    pub fn verdict(&self) -> String {
        match self.got {
            None => "not measured".to_string(),
            Some(g) if g >= self.want => "met".to_string(),
            Some(g) => format!("MISSED by {:.2}x", self.want / g.max(1e-12)),
        }
    }
}

fn case<'a>(st: &'a SinkTable, name: &str) -> Option<&'a CaseResult> {
    st.cases.iter().find(|c| c.case.name == name)
}

/// `f` of ipxmit's medians over `f` of the kernel's best sender's in case
/// `name`.
fn ratio(st: &SinkTable, name: &str, f: fn(&Medians) -> f64) -> Option<f64> {
    ratio_over(st, name, f, best_kernel)
}

/// `f` of ipxmit's medians over `f` of the `kernel` side's in case `name`.
fn ratio_over(
    st: &SinkTable,
    name: &str,
    f: fn(&Medians) -> f64,
    kernel: fn(&CaseResult) -> Option<Medians>,
) -> Option<f64> {
    let c = case(st, name)?;
    let (a, b) = (kernel(c)?, medians(&c.ipxmit)?);
    Some(f(&b) / f(&a))
}

/// The cases whose target is against the kernel's `sendmmsg`, with the
/// factor: the root `pfifo`, output-hook, root `tbf` and `htb` tree
/// variants of 18 B and 1472 B, and the SNAT'd flow of 18 B.
pub const SENDMMSG_TARGETS: [(&str, f64); 10] = [
    ("18B-pfifo", 15.0),
    ("1472B-pfifo", 15.0),
    ("18B-hook", 15.0),
    ("18B-tbf", 10.0),
    ("1472B-tbf", 10.0),
    ("18B-htb", 10.0),
    ("1472B-htb", 10.0),
    ("18B-snat", 10.0),
    ("18B-nft20", 10.0),
    ("18B-nftset", 10.0),
];

/// ipxmit's datagrams/s over the kernel's `sendmmsg` in case `name`.
fn ratio_sendmmsg(st: &SinkTable, name: &str) -> Option<f64> {
    ratio_over(st, name, |m| m.dps, |c| medians(&c.sendmmsg))
}

/// The cases whose target is against ipxmit's own figure in a base case
/// of the same run (issue 15: ten rules and five tables keep ipxmit within
/// 10% of a host with none), with the factor.
pub const SELF_TARGETS: [(&str, &str, f64); 1] = [("18B-rules", "18B", 0.90)];

/// `f(name's, base's)` of ipxmit's medians in cases `name` and `base`.
fn ratio_self(
    st: &SinkTable,
    name: &str,
    base: &str,
    f: fn(&Medians, &Medians) -> f64,
) -> Option<f64> {
    let m = |n| case(st, n).and_then(|c| medians(&c.ipxmit));
    Some(f(&m(name)?, &m(base)?))
}

/// The targets, evaluated on this run: issue 6's, then one per case of
/// [`SENDMMSG_TARGETS`], then two per case of [`SELF_TARGETS`]: its
/// datagrams/s over the base case's, and the base case's CPU time per
/// datagram over its own (robust to a busy machine).
pub fn targets(st: &SinkTable) -> Vec<Target> {
    let mut v = issue6_targets(st);
    v.extend(SENDMMSG_TARGETS.iter().map(|&(name, want)| Target {
        what: format!("{name}: ipxmit datagrams/s over the kernel's sendmmsg"),
        want,
        got: ratio_sendmmsg(st, name),
    }));
    for &(name, base, want) in &SELF_TARGETS {
        v.push(Target {
            what: format!("{name}: ipxmit datagrams/s over ipxmit's in {base}"),
            want,
            got: ratio_self(st, name, base, |b, a| b.dps / a.dps),
        });
        v.push(Target {
            what: format!("{name}: ipxmit's CPU ns/datagram in {base} over {name}'s"),
            want,
            got: ratio_self(st, name, base, |b, a| a.cpu_ns / b.cpu_ns.max(1e-9)),
        });
    }
    v
}

/// The targets of issue 6.
fn issue6_targets(st: &SinkTable) -> Vec<Target> {
    let dps = |m: &Medians| m.dps;
    let gbps = |m: &Medians| m.gbps;
    let t = |what: &str, want, got| Target {
        what: what.to_string(),
        want,
        got,
    };
    let memcpy = case(st, "65000B")
        .and_then(|c| medians(&c.ipxmit))
        .map(|m| m.gbps / st.memcpy_gbps.max(1e-9));
    vec![
        t(
            "18B: ipxmit datagrams/s over the kernel's best",
            20.0,
            ratio(st, "18B", dps),
        ),
        t(
            "1472B: ipxmit datagrams/s over the kernel's best",
            10.0,
            ratio(st, "1472B", dps),
        ),
        t(
            "65000B: ipxmit payload Gbit/s over the kernel's best",
            4.0,
            ratio(st, "65000B", gbps),
        ),
        t(
            "65000B: ipxmit payload Gbit/s over half this core's memcpy",
            1.0,
            memcpy.map(|r| r * 2.0),
        ),
        t(
            "8x1000B MSG_MORE: ipxmit datagrams/s over the kernel's best",
            10.0,
            ratio(st, "8x1000B-more", dps),
        ),
        t(
            "real wire 1472B: ipxmit TAP+GSO datagrams/s over kernel veth",
            1.5,
            wires::ratio(&st.wires, "1472B", wires::B_TAP_GSO),
        ),
        t(
            "real wire 8000B: ipxmit TAP+UFO datagrams/s over kernel veth",
            1.2,
            wires::ratio(&st.wires, "8000B", wires::B_TAP_UFO),
        ),
        t(
            "real wire 65000B: ipxmit TAP+UFO datagrams/s over kernel veth",
            1.2,
            wires::ratio(&st.wires, "65000B", wires::B_TAP_UFO),
        ),
    ]
}

/// The targets as text.
pub fn target_lines(ts: &[Target]) -> String {
    let mut s = String::new();
    for t in ts {
        let got = t
            .got
            .map_or_else(|| "-".to_string(), |g| format!("{g:.2}x"));
        s.push_str(&format!(
            "  {:<62} want >= {:>5.1}x  got {:>8}  {}\n",
            t.what,
            t.want,
            got,
            t.verdict()
        ));
    }
    s
}

fn sample_json(s: &Sample) -> Value {
    json!({
        "calls": s.calls, "sends": s.sends, "datagrams": s.datagrams, "frames": s.frames,
        "frames_expected": s.frames_expected, "payload_bytes": s.payload_bytes, "errors": s.errors,
        "wall_ns": s.wall_ns, "cpu_ns": s.cpu_ns,
    })
}

fn side_json(side: &Side) -> Value {
    match (side, medians(side)) {
        (Side::Skipped(why), _) => json!({ "skipped": why }),
        (Side::Measured(v), Some(m)) => json!({
            "datagrams_per_s": m.dps, "frames_per_s": m.fps, "payload_gbit_per_s": m.gbps,
            "cpu_ns_per_datagram": m.cpu_ns, "cpu_busy": m.busy, "frames_ok": m.frames_ok,
            "errors": m.errors, "rounds": v.iter().map(sample_json).collect::<Vec<_>>(),
        }),
        (Side::Measured(_), None) => json!({ "skipped": "no samples" }),
    }
}

/// The sink table's cases as JSON.
pub fn cases_json(st: &SinkTable) -> Value {
    let cases: Vec<Value> = st
        .cases
        .iter()
        .map(|c| {
            let ratio = best_kernel(c).zip(medians(&c.ipxmit));
            json!({
                "case": c.case.name, "payload": c.case.payload, "pieces": c.case.pieces,
                "gso_size": c.case.gso, "csum_offload": c.case.csum_offload,
                "kernel_sink_offloads": c.offloads.map(|o| json!({"tx_csum": o.csum, "sg": o.sg, "gso": o.gso})),
                "ipxmit_features": c.dev.features().to_string(), "qdisc": c.dev.qdisc,
                "output_hook": c.case.hook, "policy_rules": c.case.rules,
                "kernel_sendto": side_json(&c.sendto), "kernel_sendmmsg": side_json(&c.sendmmsg),
                "ipxmit": side_json(&c.ipxmit),
                "ratio_datagrams_per_s": ratio.map(|(a, b)| b.dps / a.dps),
                "ratio_cpu_ns_per_datagram": ratio.map(|(a, b)| a.cpu_ns / b.cpu_ns.max(1e-9)),
            })
        })
        .collect();
    Value::Array(cases)
}

/// The targets as JSON.
pub fn targets_json(ts: &[Target]) -> Value {
    Value::Array(
        ts.iter()
            .map(|t| json!({"what": t.what, "want": t.want, "got": t.got, "verdict": t.verdict()}))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::cases;
    use crate::bench::ipx::DevSetup;

    fn target(want: f64, got: Option<f64>) -> Target {
        Target {
            what: "x".to_string(),
            want,
            got,
        }
    }

    #[test]
    fn verdicts_say_by_how_much_with_two_decimals() {
        assert_eq!(target(10.0, Some(10.0)).verdict(), "met");
        assert_eq!(target(10.0, Some(9.8)).verdict(), "MISSED by 1.02x");
        assert_eq!(target(10.0, Some(8.9)).verdict(), "MISSED by 1.12x");
        assert_eq!(target(4.0, None).verdict(), "not measured");
    }

    /// One round of `datagrams` in one second.
    fn measured(datagrams: u64) -> Side {
        Side::Measured(vec![Sample {
            datagrams,
            wall_ns: 1_000_000_000,
            ..Sample::default()
        }])
    }

    fn result(name: &str, sendto: Side, sendmmsg: Side, ipx: u64) -> CaseResult {
        let case = cases::find(name).unwrap();
        CaseResult {
            case,
            offloads: None,
            dev: DevSetup::for_case(case, None, "noqueue"),
            sendto,
            sendmmsg,
            ipxmit: measured(ipx),
        }
    }

    #[test]
    fn pfifo_and_hook_targets_are_15x_the_kernels_sendmmsg() {
        let skipped = || Side::Skipped(crate::bench::settings::NO_NFT.to_string());
        let st = SinkTable {
            memcpy_gbps: 10.0,
            cases: vec![
                // sendto faster than sendmmsg: the target still takes sendmmsg.
                result(
                    "18B-pfifo",
                    measured(2_000_000),
                    measured(1_000_000),
                    16_000_000,
                ),
                result(
                    "1472B-pfifo",
                    measured(500_000),
                    measured(1_000_000),
                    14_900_000,
                ),
                result("18B-hook", skipped(), skipped(), 30_000_000),
                result("18B", measured(1_000_000), measured(1_000_000), 25_000_000),
            ],
            wires: Vec::new(),
            threads: Vec::new(),
        };
        let ts = targets(&st);
        assert_eq!(ts.len(), 20);
        assert_eq!(ts[0].what, "18B: ipxmit datagrams/s over the kernel's best");
        assert_eq!(
            ts[7].what,
            "real wire 65000B: ipxmit TAP+UFO datagrams/s over kernel veth"
        );
        assert_eq!((ts[0].got, ts[0].verdict().as_str()), (Some(25.0), "met"));
        let new: Vec<(&str, f64, Option<f64>, String)> = ts[8..]
            .iter()
            .map(|t| (t.what.as_str(), t.want, t.got, t.verdict()))
            .collect();
        let what = |n: &str| format!("{n}: ipxmit datagrams/s over the kernel's sendmmsg");
        assert_eq!(new[0].0, what("18B-pfifo"));
        assert_eq!(
            (new[0].1, new[0].2, new[0].3.as_str()),
            (15.0, Some(16.0), "met")
        );
        assert_eq!(new[1].0, what("1472B-pfifo"));
        assert_eq!(new[1].3, "MISSED by 1.01x");
        assert_eq!(new[2].0, what("18B-hook"));
        assert_eq!((new[2].2, new[2].3.as_str()), (None, "not measured"));
        assert!(
            target_lines(&ts).contains("18B-hook: ipxmit datagrams/s over the kernel's sendmmsg")
        );
        assert_eq!(new[7].0, what("18B-snat"));
        assert_eq!(new[7].1, 10.0);
        assert_eq!(new[8].0, what("18B-nft20"));
        assert_eq!(new[9].0, what("18B-nftset"));
    }

    /// One round of `datagrams` in one second, at `cpu_ns` CPU each.
    fn measured_cpu(datagrams: u64, cpu_ns: u64) -> Side {
        Side::Measured(vec![Sample {
            datagrams,
            wall_ns: 1_000_000_000,
            cpu_ns: datagrams * cpu_ns,
            ..Sample::default()
        }])
    }

    #[test]
    fn the_rules_targets_are_within_10_percent_of_ipxmits_own_18b() {
        let row = |n, d, c| CaseResult {
            ipxmit: measured_cpu(d, c),
            ..result(n, measured(1), measured(1), 0)
        };
        let st = |rules| SinkTable {
            memcpy_gbps: 1.0,
            cases: vec![row("18B", 10_000_000, 100), rules],
            wires: Vec::new(),
            threads: Vec::new(),
        };
        let got = |t: &SinkTable| {
            let ts = targets(t);
            let v: Vec<(String, f64, Option<f64>, String)> = ts[18..]
                .iter()
                .map(|t| (t.what.clone(), t.want, t.got, t.verdict()))
                .collect();
            v
        };
        let v = got(&st(row("18B-rules", 9_500_000, 125)));
        assert_eq!(v[0].0, "18B-rules: ipxmit datagrams/s over ipxmit's in 18B");
        assert_eq!((v[0].1, v[0].2, v[0].3.as_str()), (0.9, Some(0.95), "met"));
        assert_eq!(
            v[1].0,
            "18B-rules: ipxmit's CPU ns/datagram in 18B over 18B-rules's"
        );
        assert_eq!((v[1].2, v[1].3.as_str()), (Some(0.8), "MISSED by 1.12x"));
        let t = SinkTable {
            cases: vec![row("18B-rules", 1, 1)],
            ..st(row("18B-rules", 1, 1))
        };
        assert_eq!(got(&t)[0].3, "not measured");
    }

    #[test]
    fn the_b_row_names_the_cases_qdisc_and_hook() {
        let row = |n: &str| {
            let st = SinkTable {
                memcpy_gbps: 1.0,
                cases: vec![result(n, measured(1), measured(1), 1)],
                wires: Vec::new(),
                threads: Vec::new(),
            };
            sink_table(&st)
        };
        assert!(row("1472B-pfifo").contains(", pfifo limit 1000)"));
        assert!(row("18B-hook").contains(", LocalOut hook)"));
        assert!(row("18B-rules").contains(", 10 rules, 5 tables)"));
        assert!(!row("18B").contains("LocalOut"));
        assert!(!row("18B").contains("pfifo"));
    }
}
