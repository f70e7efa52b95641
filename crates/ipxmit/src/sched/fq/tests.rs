//! Tests of `fq`, on a manual clock (nanoseconds).

use super::flows::hash_ptr;
use super::parse::FQ_USAGE;
use super::*;
use crate::wire::ipv4::send_check;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// The line `tc qdisc show` prints after `fq 1: root refcnt 2 ` for a
/// default fq on a 1500-byte Ethernet device.
const DEFAULT_LINE: &str = "limit 10000p flow_limit 100p buckets 1024 orphan_mask 1023 \
quantum 3028b initial_quantum 15140b low_rate_threshold 550Kbit refill_delay 40ms \
timer_slack 10us horizon 10s horizon_drop ";

/// A packet of `len` bytes of flow `flow` (its hash) at priority `prio`.
fn pkt(flow: u32, len: usize, prio: u32) -> PacketBuf {
    let mut p = PacketBuf::from_slice(0, &vec![0u8; len]);
    p.meta.hash = flow;
    p.meta.priority = prio;
    p
}

/// An IPv4 packet of flow `flow` with ECN field `ecn` (band 0).
fn ip_pkt(flow: u32, ecn: u8) -> PacketBuf {
    let mut b = vec![0u8; 100];
    b[0] = 0x45;
    b[1] = ecn;
    send_check(&mut b[..20]);
    let mut p = PacketBuf::from_slice(0, &b);
    p.meta.protocol = 0x0800;
    p.meta.hash = flow;
    p.meta.priority = 6;
    p
}

/// An fq made by `tc qdisc add ... fq WORDS` on a 1514-byte `psched_mtu`.
fn fq(words: &[&str]) -> Fq {
    let spec = parse_fq(words).expect("parses");
    Fq::new(&spec, 1514, 1000).expect("the kernel takes it")
}

/// `nopacing maxrate 1gbit` keeps the fast path off (a `maxrate` is set)
/// without pacing anything: every packet goes to its flow.
fn fq_no_fastpath(words: &[&str]) -> Fq {
    let mut w = vec!["nopacing", "maxrate", "1gbit"];
    w.extend_from_slice(words);
    fq(&w)
}

fn enq(q: &mut Fq, p: PacketBuf, t: u64) -> NetXmit {
    q.enqueue(p, Instant::from_nanos(t), &mut ToFree::default())
}

/// The flows of the packets dequeued at `t` until nothing is sent.
fn drain(q: &mut Fq, t: u64) -> Vec<u32> {
    std::iter::from_fn(|| match q.dequeue(Instant::from_nanos(t)) {
        Dequeued::Packet(p) => Some(p.meta.hash),
        _ => None,
    })
    .collect()
}

/// What a dequeue at `t` gives: `Ok(flow)` or `Err(Some(throttled until))`
/// or `Err(None)` when empty.
fn deq(q: &mut Fq, t: u64) -> Result<u32, Option<u64>> {
    match q.dequeue(Instant::from_nanos(t)) {
        Dequeued::Packet(p) => Ok(p.meta.hash),
        Dequeued::Throttled(t) => Err(Some(t.as_nanos())),
        Dequeued::Empty => Err(None),
    }
}

#[test]
fn the_fast_path_takes_the_first_packets_of_an_idle_qdisc() {
    let mut q = fq(&[]);
    for _ in 0..10 {
        assert_eq!(enq(&mut q, pkt(1, 1000, 0), 0), NetXmit::Success);
    }
    // Eight go to the internal queue; then a flow is made, and once a
    // flow is active nothing more takes the fast path.
    assert_eq!(q.internal.len(), 8);
    assert_eq!(q.fq_stats().fastpath_packets, 8);
    enq(&mut q, pkt(2, 1000, 0), 0);
    assert_eq!(q.internal.len(), 8);
    assert_eq!((q.nflows, q.inactive_flows), (2, 0));
    assert_eq!(q.stats().qlen, 11);
    assert_eq!(drain(&mut q, 0), [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]);
    assert_eq!(q.stats().packets, 11);
    assert_eq!(q.stats().backlog, 0);
}

#[test]
fn flows_take_turns_a_quantum_each() {
    let mut q = fq_no_fastpath(&["quantum", "1000", "initial_quantum", "1000"]);
    for f in [1, 2] {
        for _ in 0..6 {
            enq(&mut q, pkt(f, 500, 6), 0);
        }
    }
    // 1000 bytes of credit a turn: two 500-byte packets, then the other
    // flow (the new flows in order, then both as old flows).
    assert_eq!(drain(&mut q, 0), [1, 1, 2, 2, 1, 1, 2, 2, 1, 1, 2, 2]);
}

#[test]
fn a_turn_may_overdraw_and_the_next_is_shorter() {
    let mut q = fq_no_fastpath(&["quantum", "1500", "initial_quantum", "1500"]);
    for f in [1, 2] {
        for _ in 0..5 {
            enq(&mut q, pkt(f, 1000, 6), 0);
        }
    }
    // 1500: two packets (500, -500); then +1500 = 1000: one (0); then
    // 1500 again: two.
    assert_eq!(drain(&mut q, 0), [1, 1, 2, 2, 1, 2, 1, 1, 2, 2]);
}

#[test]
fn a_new_flow_is_served_first_with_its_initial_quantum() {
    let mut q = fq_no_fastpath(&["quantum", "1000", "initial_quantum", "2000"]);
    for _ in 0..10 {
        enq(&mut q, pkt(1, 500, 6), 0);
    }
    // Flow 1's initial quantum lets four go, then a quantum two more.
    assert_eq!(
        (0..6).map(|_| deq(&mut q, 0)).collect::<Vec<_>>(),
        [Ok(1); 6]
    );
    for _ in 0..6 {
        enq(&mut q, pkt(7, 500, 6), 0);
    }
    // The new flow goes first, for its initial quantum (four packets);
    // flow 1, its credit spent, gets a quantum and goes behind it.
    assert_eq!(drain(&mut q, 0), [7, 7, 7, 7, 7, 7, 1, 1, 1, 1]);
}

#[test]
fn an_idle_flow_gets_a_quantum_back_after_refill_delay() {
    let mut q = fq_no_fastpath(&["quantum", "1000", "initial_quantum", "500"]);
    enq(&mut q, pkt(1, 400, 6), 0);
    enq(&mut q, pkt(2, 400, 6), 0);
    enq(&mut q, pkt(2, 400, 6), 0);
    enq(&mut q, pkt(2, 400, 6), 0);
    assert_eq!(drain(&mut q, 0), [1, 2, 2, 2]);
    // Flow 1 (credit 100) was emptied and moved to the old flows; it is
    // detached when next visited empty.
    enq(&mut q, pkt(2, 400, 6), MS);
    assert_eq!(drain(&mut q, MS), [2]);
    let f1 = q.lookup((1 << 1) | 1, MS);
    assert_eq!(q.flows[f1 as usize].link, Link::Detached { age: 1 });
    assert_eq!(q.flows[f1 as usize].credit, 100);
    // Back within 40 ms: its credit stays; after: raised to a quantum.
    enq(&mut q, pkt(1, 400, 6), 41 * MS);
    assert_eq!(q.flows[f1 as usize].credit, 100);
    let mut q2 = fq_no_fastpath(&["quantum", "1000", "initial_quantum", "500"]);
    let f = q2.lookup(3, 0);
    q2.flows[f as usize].credit = 100;
    enq(&mut q2, pkt(1, 400, 6), 42 * MS);
    assert_eq!(q2.flows[f as usize].credit, 1000);
}

#[test]
fn a_negative_credit_is_not_refilled() {
    // `max_t(u32, credit, quantum)` reads a negative credit as huge.
    let mut q = fq_no_fastpath(&["quantum", "1000"]);
    let f = q.lookup(3, 0);
    q.flows[f as usize].credit = -300;
    enq(&mut q, pkt(1, 400, 6), SEC);
    assert_eq!(q.flows[f as usize].credit, -300);
}

#[test]
fn a_fresh_flow_joins_band_0_and_moves_to_its_band_after_a_turn() {
    // Kernel 6.18's `fq_enqueue()` links a detached flow before it sets
    // `f->band`: a new flow of a band-1 packet starts on band 0's lists.
    let mut q = fq_no_fastpath(&["quantum", "1000", "initial_quantum", "1000"]);
    for _ in 0..3 {
        enq(&mut q, pkt(1, 600, 0), 0);
    }
    assert_eq!(q.list_iter(0, true).count(), 1);
    assert_eq!(q.list_iter(1, true).count(), 0);
    assert_eq!(q.band_pkt_count, [0, 3, 0]);
    // Two packets on band 0's credit (1000, 400, -200)...
    assert_eq!(drain_n(&mut q, 2), [1, 1]);
    assert_eq!(q.band_nr, 0);
    // ...then, its credit spent, the flow goes to band 1's old flows.
    assert_eq!(drain_n(&mut q, 1), [1]);
    assert_eq!(q.band_nr, 1);
    assert_eq!(q.list_iter(1, false).count(), 1);
    assert_eq!(q.band_pkt_count, [0, 0, 0]);
}

/// The flows of `n` packets dequeued at 0.
fn drain_n(q: &mut Fq, n: usize) -> Vec<u32> {
    (0..n).filter_map(|_| deq(q, 0).ok()).collect()
}

#[test]
fn the_flow_limit_drops_and_counts() {
    let mut q = fq_no_fastpath(&["flow_limit", "3"]);
    let mut tf = ToFree::default();
    let r: Vec<_> = (0..5)
        .map(|_| q.enqueue(pkt(1, 100, 0), Instant::ZERO, &mut tf))
        .collect();
    assert_eq!(r[2..], [NetXmit::Success, NetXmit::Drop, NetXmit::Drop]);
    assert_eq!(q.stats().drops, 2);
    assert_eq!(q.stats().qlen, 3);
    assert_eq!(q.fq_stats().flows_plimit, 2);
    let reasons: Vec<_> = tf.drain().map(|(_, r)| r).collect();
    assert_eq!(reasons, [DropReason::QdiscOverlimit; 2]);
    assert_eq!(
        q.xstats(Instant::ZERO).as_deref(),
        Some("  flows 1 (inactive 0 throttled 0)\n  gc 0 highprio 0 throttled 0 flows_plimit 2")
    );
}

#[test]
fn the_limit_is_per_band_and_the_fast_path_is_outside_it() {
    let mut q = fq(&["limit", "4"]);
    // The first eight take the fast path, which no band counts.
    for _ in 0..8 {
        assert_eq!(enq(&mut q, pkt(9, 100, 6), 0), NetXmit::Success);
    }
    let r: Vec<_> = (0..5).map(|_| enq(&mut q, pkt(1, 100, 6), 0)).collect();
    assert_eq!(r[4], NetXmit::Drop);
    // Band 1 (priority 0) has its own four.
    let r: Vec<_> = (0..5).map(|i| enq(&mut q, pkt(2 + i, 100, 0), 0)).collect();
    assert_eq!(r[4], NetXmit::Drop);
    assert_eq!(q.fq_stats().band_drops, [1, 1, 0]);
    assert_eq!((q.stats().qlen, q.stats().drops), (16, 2));
}

#[test]
fn maxrate_paces_each_quantum_to_the_nanosecond() {
    // 1 Mbit/s = 125000 bytes/s; quantum 3028, initial quantum 15140.
    let mut q = fq(&["maxrate", "1mbit"]);
    for _ in 0..23 {
        enq(&mut q, pkt(1, 1000, 0), 0);
    }
    // Fifteen packets within the initial quantum, then the sixteenth
    // overdraws (-860): the flow waits a quantum's time,
    // 3028 * 10^9 / 125000 = 24224000 ns.
    assert!((0..16).all(|_| deq(&mut q, 0) == Ok(1)));
    assert_eq!(deq(&mut q, 0), Err(Some(24_224_000)));
    assert_eq!(deq(&mut q, 24_223_999), Err(Some(24_224_000)));
    // Then a quantum each time (2168 of credit: three packets).
    let t1 = 24_224_000;
    assert_eq!(
        (0..3).map(|_| deq(&mut q, t1)).collect::<Vec<_>>(),
        [Ok(1); 3]
    );
    assert_eq!(deq(&mut q, t1), Err(Some(2 * t1)));
    // Served 1 ms late, the next wait is 1 ms shorter (drift).
    let late = 2 * t1 + MS;
    assert_eq!(
        (0..3).map(|_| deq(&mut q, late)).collect::<Vec<_>>(),
        [Ok(1); 3]
    );
    assert_eq!(deq(&mut q, late), Err(Some(late + t1 - MS)));
    assert_eq!(q.unthrottle_latency_ns, MS >> 3);
    assert_eq!(q.fq_stats().throttled, 3);
    assert_eq!(
        q.xstats(Instant::from_nanos(late)).as_deref(),
        Some("  flows 1 (inactive 0 throttled 1) next_packet_delay 23.2ms\n  gc 0 highprio 0 throttled 3 latency 125us")
    );
}

#[test]
fn below_low_rate_threshold_every_packet_is_paced() {
    // 240 kbit/s = 30000 bytes/s: at most 550 kbit/s, so each packet waits
    // 1000 * 10^9 / 30000 = 33333333 ns (truncated).
    let mut q = fq(&["maxrate", "240kbit"]);
    for _ in 0..4 {
        enq(&mut q, pkt(1, 1000, 0), 0);
    }
    let (mut t, mut sent) = (0, Vec::new());
    loop {
        match deq(&mut q, t) {
            Ok(_) => sent.push(t),
            Err(Some(next)) => t = next,
            Err(None) => break,
        }
    }
    assert_eq!(sent, [0, 33_333_333, 66_666_666, 99_999_999]);
}

#[test]
fn a_wait_above_a_second_is_cut_and_counted() {
    // 8 bit/s: 1000 bytes would take 1000 s.
    let mut q = fq(&["maxrate", "8bit"]);
    enq(&mut q, pkt(1, 1000, 0), 0);
    enq(&mut q, pkt(1, 1000, 0), 0);
    assert_eq!(deq(&mut q, 0), Ok(1));
    assert_eq!(deq(&mut q, 0), Err(Some(SEC)));
    assert_eq!(q.fq_stats().pkts_too_long, 1);
    let x = q.xstats(Instant::from_nanos(SEC + 20_000)).expect("xstats");
    assert_eq!(
        x,
        "  flows 1 (inactive 0 throttled 1)\n  gc 0 highprio 0 throttled 1\n pkts_too_long 1"
    );
}

#[test]
fn nopacing_ignores_maxrate() {
    let mut q = fq(&["maxrate", "8bit", "nopacing"]);
    for _ in 0..40 {
        enq(&mut q, pkt(1, 1000, 0), 0);
    }
    assert_eq!(drain(&mut q, 0).len(), 40);
}

#[test]
fn a_packet_that_waited_past_ce_threshold_is_marked() {
    let mut q = fq_no_fastpath(&["ce_threshold", "1ms"]);
    enq(&mut q, ip_pkt(1, 2), 0);
    enq(&mut q, ip_pkt(1, 2), 0);
    assert!(
        matches!(q.dequeue(Instant::from_nanos(MS)), Dequeued::Packet(p) if p.linear()[1] == 2)
    );
    let Dequeued::Packet(p) = q.dequeue(Instant::from_nanos(MS + 1)) else {
        panic!("a packet")
    };
    assert_eq!(p.linear()[1] & 3, 3);
    assert_eq!(q.fq_stats().ce_mark, 1);
}

#[test]
fn old_detached_flows_are_collected_from_their_bucket() {
    // Two buckets; flows 1, a, c and d share one, `other` is in the other.
    let mut q = fq_no_fastpath(&["buckets", "2", "quantum", "256", "initial_quantum", "0"]);
    let bucket = |h: u32| hash_ptr((u64::from(h) << 1) | 1, 1);
    let mut mates = (2..).filter(|&h| bucket(h) == bucket(1));
    let [a, c, d] = [(); 3].map(|()| mates.next().expect("a flow"));
    let other = (2..).find(|&h| bucket(h) != bucket(1)).expect("a flow");
    enq(&mut q, pkt(1, 1000, 6), 0);
    enq(&mut q, pkt(a, 1000, 6), 0);
    for _ in 0..8 {
        enq(&mut q, pkt(other, 1000, 6), 0);
    }
    drain(&mut q, 0);
    // Flows 1 and a were visited empty while `other` still sent: detached.
    let detached = |q: &Fq| {
        let d = |f: &&Flow| matches!(f.link, Link::Detached { .. });
        q.flows.iter().filter(d).count()
    };
    assert_eq!((q.nflows, detached(&q)), (3, 2));
    // Within 3 s they stay; after, a look-up passing them frees them.
    enq(&mut q, pkt(c, 100, 6), 3 * SEC);
    assert_eq!((q.nflows, q.fq_stats().gc_flows), (4, 0));
    enq(&mut q, pkt(d, 100, 6), 4 * SEC);
    assert_eq!((q.nflows, q.fq_stats().gc_flows), (3, 2));
    // Their slots are reused: d took one, the next flow takes the other.
    assert_eq!((q.flows.len(), q.free.len()), (4, 1));
    enq(&mut q, pkt(other + 2, 100, 6), 4 * SEC);
    assert_eq!((q.flows.len(), q.free.len()), (4, 0));
    assert!(q
        .xstats(Instant::from_nanos(4 * SEC))
        .is_some_and(|x| x.contains("  gc 2 highprio 0")));
}

#[test]
fn the_horizon_drops_or_caps_a_departure_time() {
    let mut q = fq(&[]);
    assert_eq!(q.departure(0, 5), Some(5));
    assert_eq!(q.departure(10 * SEC, 0), Some(10 * SEC));
    assert_eq!(q.departure(10 * SEC + 1, 0), None);
    q.cfg.horizon_drop = false;
    assert_eq!(q.departure(11 * SEC, 0), Some(10 * SEC));
    assert_eq!(
        q.xstats(Instant::ZERO).as_deref(),
        Some("  flows 0 (inactive 0 throttled 0)\n  gc 0 highprio 0 throttled 0\n horizon_drops 1  horizon_caps 1")
    );
}

#[test]
fn reset_frees_every_packet_and_flow() {
    let mut q = fq(&[]);
    for f in 0..12 {
        enq(&mut q, pkt(f + 1, 100, 0), 0);
    }
    let mut tf = ToFree::default();
    q.reset(&mut tf);
    assert_eq!(tf.len(), 12);
    assert_eq!((q.stats().qlen, q.stats().backlog), (0, 0));
    assert_eq!(
        q.xstats(Instant::ZERO).as_deref(),
        Some("  flows 0 (inactive 0 throttled 0)\n  gc 0 highprio 0 throttled 0")
    );
    assert_eq!(deq(&mut q, 0), Err(None));
}

#[test]
fn a_change_applies_and_trims_to_the_new_limit() {
    let mut q = fq(&["limit", "10"]);
    // Eight packets take the fast path, two go to flow 1.
    for _ in 0..10 {
        enq(&mut q, pkt(1, 100, 0), 0);
    }
    let mut tf = ToFree::default();
    let spec = parse_fq(&["limit", "2", "quantum", "100"]).expect("parses");
    q.change(&spec, &mut tf).expect("changes");
    // Trimmed through the dequeue: the fast path's eight, counted as sent.
    assert_eq!(tf.len(), 8);
    assert_eq!((q.stats().qlen, q.stats().packets), (2, 8));
    // The quantum is raised to 256; untouched options keep their values.
    assert_eq!(
        q.params(),
        DEFAULT_LINE
            .replace("limit 10000p", "limit 2p")
            .replace("quantum 3028b", "quantum 256b")
    );
    // A bad bucket count is refused after the others were applied.
    let spec = parse_fq(&["limit", "7", "buckets", "1"]).expect("parses");
    assert_eq!(spec.buckets_log, Some(0));
    assert_eq!(q.change(&spec, &mut tf), Err(SpecError::KernelInvalid));
    assert_eq!(q.config().limit, 7);
    // A new table size keeps the flows.
    let spec = parse_fq(&["buckets", "64"]).expect("parses");
    q.change(&spec, &mut tf).expect("changes");
    assert_eq!(
        (q.config().buckets_log, q.buckets.len(), q.nflows),
        (6, 64, 1)
    );
    assert_eq!(drain(&mut q, 0), [1, 1]);
}

#[test]
fn the_kernel_refuses_what_it_refuses() {
    let refused = |w: &[&str]| Fq::new(&parse_fq(w).expect("parses"), 1514, 1000).err();
    assert_eq!(
        refused(&["initial_quantum", "0x80000000"]),
        Some(SpecError::Refused(
            "RTNETLINK answers: Numerical result out of range".into()
        ))
    );
    assert_eq!(refused(&["buckets", "1"]), Some(SpecError::KernelInvalid));
    assert_eq!(
        refused(&["buckets", "524288"]),
        Some(SpecError::KernelInvalid)
    );
    assert_eq!(refused(&["buckets", "262144"]), None);
    assert_eq!(refused(&["initial_quantum", "1048576"]), None);
}

#[test]
fn tc_prints_fq_as_tc_6_1_does() {
    let line = |w: &[&str]| fq(w).params();
    let with = |from: &str, to: &str| DEFAULT_LINE.replace(from, to);
    let cases: Vec<(&[&str], String)> = vec![
        (&[], DEFAULT_LINE.to_owned()),
        (&["limit", "3000"], with("limit 10000p", "limit 3000p")),
        (&["limit", "5000"], with("limit 10000p", "limit 5000p")),
        (
            &["flow_limit", "300"],
            with("flow_limit 100p", "flow_limit 300p"),
        ),
        (&["quantum", "9000"], with("quantum 3028b", "quantum 9000b")),
        (&["initial_quantum", "900000"], with("15140b", "900000b")),
        (
            &["maxrate", "100000"],
            with("15140b ", "15140b maxrate 100Kbit "),
        ),
        (&["nopacing"], with("1023 ", "1023 nopacing ")),
        (&["refill_delay", "100ms"], with("40ms", "100ms")),
        (&["low_rate_threshold", "10000"], with("550Kbit", "10Kbit")),
        (&["orphan_mask", "255"], with("mask 1023", "mask 255")),
        (&["timer_slack", "100"], with("10us", "100ns")),
        (
            &["ce_threshold", "100"],
            with("40ms ", "40ms ce_threshold 100us "),
        ),
        (&["horizon", "100"], with("horizon 10s", "horizon 100us")),
        (&["horizon_cap"], with("horizon_drop", "horizon_cap")),
        (&["buckets", "100"], with("buckets 1024", "buckets 128")),
        (
            &["low_rate_threshold", "0"],
            with("low_rate_threshold 550Kbit ", ""),
        ),
    ];
    for (words, want) in cases {
        assert_eq!(line(words), want, "{words:?}");
    }
    // The kernel's jiffies: 1500 us is two jiffies at HZ=1000.
    assert_eq!(line(&["refill_delay", "1500us"]), with("40ms", "2ms"));
    // A change of the limit, as `tc qdisc change ... fq limit 100`.
    let mut q = fq(&[]);
    let spec = parse_fq(&["limit", "100"]).expect("parses");
    q.change(&spec, &mut ToFree::default()).expect("changes");
    assert_eq!(q.params(), with("limit 10000p", "limit 100p"));
    let mut q = fq(&["limit", "10"]);
    let spec = parse_fq(&["limit", "1"]).expect("parses");
    q.change(&spec, &mut ToFree::default()).expect("changes");
    assert_eq!(q.params(), with("limit 10000p", "limit 1p"));
    assert_eq!(q.params_details(), q.params());
}

#[test]
fn tc_json_gives_fq_options_as_tc_6_1_does() {
    let q = fq(&[
        "nopacing",
        "maxrate",
        "1mbit",
        "ce_threshold",
        "2ms",
        "horizon_cap",
    ]);
    let n = OptValue::Num;
    assert_eq!(
        q.options(),
        vec![
            ("limit", n(10000)),
            ("flow_limit", n(100)),
            ("buckets", n(1024)),
            ("orphan_mask", n(1023)),
            ("pacing", OptValue::Bool(false)),
            ("quantum", n(3028)),
            ("initial_quantum", n(15140)),
            ("maxrate", n(125_000)),
            ("low_rate_threshold", n(68750)),
            ("refill_delay", n(40000)),
            ("ce_threshold", n(2000)),
            ("timer_slack", n(10000)),
            ("horizon", n(10_000_000)),
            ("horizon_cap", OptValue::Bool(true)),
        ]
    );
}

#[test]
fn tc_parses_fq_options_as_tc_6_1_does() {
    let s = parse_fq(&[
        "limit",
        "0x10",
        "flow_limit",
        "010",
        "quantum",
        "9000",
        "initial_quantum",
        "1000",
        "maxrate",
        "1.5mbit",
        "defrate",
        "8",
        "buckets",
        "1000",
        "orphan_mask",
        "255",
        "low_rate_threshold",
        "1kbps",
        "refill_delay",
        "1s",
        "timer_slack",
        "2us",
        "ce_threshold",
        "5",
        "horizon",
        "2s",
        "horizon_cap",
        "pacing",
    ])
    .expect("parses");
    let want = FqSpec {
        limit: Some(16),
        flow_limit: Some(8),
        quantum: Some(9000),
        initial_quantum: Some(1000),
        maxrate: Some(187_500),
        defrate: Some(1),
        buckets_log: Some(10),
        orphan_mask: Some(255),
        low_rate_threshold: Some(1000),
        refill_delay_us: Some(1_000_000),
        timer_slack_ns: Some(2000),
        ce_threshold_us: Some(5),
        horizon_us: Some(2_000_000),
        horizon_drop: Some(false),
        pacing: Some(true),
    };
    assert_eq!(s, want);
    // Printed back as tc syntax, it parses to the same.
    let text = s.to_string();
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(parse_fq(&words), Ok(s));
    // The last of a repeated keyword counts; `buckets 0` sends nothing.
    let s = parse_fq(&["buckets", "64", "buckets", "0", "nopacing", "pacing"]).expect("parses");
    assert_eq!((s.buckets_log, s.pacing), (None, Some(true)));
    assert_eq!(parse_fq(&[]), Ok(FqSpec::default()));
}

#[test]
fn tc_refuses_fq_options_as_tc_6_1_does() {
    let err = |w: &[&str]| match parse_fq(w) {
        Err(SpecError::Refused(m)) => m,
        other => panic!("{w:?}: {other:?}"),
    };
    assert_eq!(err(&["limit", "x"]), "Illegal \"limit\"");
    assert_eq!(err(&["limit", "-1"]), "Illegal \"limit\"");
    assert_eq!(err(&["flow_limit", "1k"]), "Illegal \"flow_limit\"");
    assert_eq!(err(&["orphan_mask", "m"]), "Illegal \"initial_quantum\"");
    assert_eq!(err(&["maxrate", "fast"]), "Illegal \"maxrate\"");
    assert_eq!(err(&["maxrate", "40gbit"]), "Illegal \"maxrate\"");
    assert_eq!(err(&["maxrate", "10%"]), "Illegal \"maxrate\"");
    assert_eq!(
        err(&["low_rate_threshold", "x"]),
        "Illegal \"low_rate_threshold\""
    );
    assert_eq!(
        err(&["refill_delay", "1parsec"]),
        "Illegal \"refill_delay\""
    );
    assert_eq!(err(&["timer_slack", "x"]), "Illegal \"timer_slack\"");
    assert_eq!(
        err(&["timer_slack", "5s"]),
        "Illegal (out of range) \"timer_slack\""
    );
    assert_eq!(
        err(&["timer_slack", "-1"]),
        "Illegal (out of range) \"timer_slack\""
    );
    assert_eq!(
        err(&["limit"]),
        "Command line is not complete. Try option \"help\""
    );
    assert_eq!(err(&["help"]), FQ_USAGE);
    assert_eq!(
        err(&["bands", "3"]),
        format!("What is \"bands\"?\n{FQ_USAGE}")
    );
    assert_eq!(
        err(&["Limit", "3"]),
        format!("What is \"Limit\"?\n{FQ_USAGE}")
    );
    assert!(FQ_USAGE.contains("[ maxrate RATE  ] [ buckets NUMBER ]"));
    assert_eq!(
        parse_fq(&["timer_slack", "4294967295ns"]).map(|s| s.timer_slack_ns),
        Ok(Some(u32::MAX))
    );
}

#[test]
fn xstats_are_printed_as_tc_6_1_does() {
    let q = fq(&[]);
    assert_eq!(
        q.xstats(Instant::from_nanos(5 * SEC)).as_deref(),
        Some("  flows 0 (inactive 0 throttled 0)\n  gc 0 highprio 0 throttled 0")
    );
}

#[test]
fn peek_shows_what_dequeue_gives() {
    let mut q = fq_no_fastpath(&[]);
    assert!(q.peek().is_none());
    enq(&mut q, pkt(3, 100, 6), 0);
    assert_eq!(q.peek().map(|p| p.meta.hash), Some(3));
    let mut q = fq(&[]);
    enq(&mut q, pkt(4, 100, 6), 0);
    assert_eq!(q.peek().map(|p| p.meta.hash), Some(4));
    assert_eq!(q.kind(), "fq");
    assert!(!q.can_bypass());
}

/// A packet of `len` bytes of flow `flow` (band 1) sent by socket `id`
/// (unconnected) with pacing rate `rate` (`SO_MAX_PACING_RATE` `rate`).
fn sk_pkt(flow: u32, len: usize, id: u64, rate: u64) -> PacketBuf {
    let mut p = pkt(flow, len, 0);
    p.meta.sk = SockMeta::new(id, false, rate, rate != u64::MAX);
    p
}

/// A packet of `len` bytes of flow 1 (band 1) leaving not before `tstamp`.
fn at_pkt(len: usize, tstamp: u64) -> PacketBuf {
    let mut p = pkt(1, len, 0);
    p.meta.tstamp = tstamp;
    p
}

/// The times packets leave when each dequeue happens as soon as the
/// qdisc allows, from `t`: (time, length).
fn departures(q: &mut Fq, mut t: u64) -> Vec<(u64, usize)> {
    let mut out = Vec::new();
    loop {
        match q.dequeue(Instant::from_nanos(t)) {
            Dequeued::Packet(p) => out.push((t, p.len())),
            Dequeued::Throttled(next) => t = next.as_nanos(),
            Dequeued::Empty => return out,
        }
    }
}

#[test]
fn a_socket_pacing_rate_below_maxrate_paces_as_maxrate_would() {
    // The socket's 125000 bytes/s under a 10 Mbit/s maxrate: the same
    // schedule as `maxrate 1mbit` alone (see
    // maxrate_paces_each_quantum_to_the_nanosecond): fifteen packets on
    // the initial quantum, then three a quantum, 3028 * 10^9 / 125000 =
    // 24224000 ns apart.
    for words in [&["maxrate", "10mbit"][..], &[][..]] {
        let mut q = fq(words);
        for _ in 0..22 {
            enq(&mut q, sk_pkt(1, 1000, 7, 125_000), 0);
        }
        assert_eq!(q.fq_stats().fastpath_packets, 0, "SO_MAX_PACING_RATE");
        let times: Vec<u64> = departures(&mut q, 0).iter().map(|d| d.0).collect();
        let t1 = 24_224_000;
        let mut want = vec![0; 16];
        want.extend([t1; 3]);
        want.extend([2 * t1; 3]);
        assert_eq!(times, want);
    }
}

#[test]
fn maxrate_below_the_socket_pacing_rate_wins() {
    // 1 Mbit/s maxrate, a socket at 10 Mbit/s: paced at maxrate.
    let mut q = fq(&["maxrate", "1mbit"]);
    for _ in 0..17 {
        enq(&mut q, sk_pkt(1, 1000, 7, 1_250_000), 0);
    }
    let times: Vec<u64> = departures(&mut q, 0).iter().map(|d| d.0).collect();
    assert_eq!(times[15..], [0, 24_224_000]);
}

#[test]
fn a_low_socket_pacing_rate_paces_every_packet() {
    // 30000 bytes/s (240 kbit/s, under low_rate_threshold): each 1000-byte
    // packet waits 1000 * 10^9 / 30000 ns, credit or not.
    let mut q = fq(&[]);
    for _ in 0..4 {
        enq(&mut q, sk_pkt(1, 1000, 7, 30_000), 0);
    }
    let times: Vec<u64> = departures(&mut q, 0).iter().map(|d| d.0).collect();
    assert_eq!(times, [0, 33_333_333, 66_666_666, 99_999_999]);
}

#[test]
fn a_pacing_rate_without_a_max_rate_takes_the_fast_path() {
    // The rate stays lowered after SO_MAX_PACING_RATE went back to
    // unlimited: the fast path is open again (unpaced), a flow is not.
    let mut q = fq(&[]);
    let mut p = sk_pkt(1, 1000, 7, 30_000);
    p.meta.sk = SockMeta::new(7, false, 30_000, false);
    enq(&mut q, p, 0);
    assert_eq!(q.fq_stats().fastpath_packets, 1);
}

#[test]
fn a_connected_socket_is_one_flow_whatever_the_hash() {
    let mut q = fq_no_fastpath(&[]);
    for h in 1..=3 {
        let mut p = sk_pkt(h, 100, 9, u64::MAX);
        p.meta.sk = SockMeta::new(9, true, u64::MAX, false);
        enq(&mut q, p, 0);
    }
    assert_eq!(q.nflows, 1);
    // Unconnected, the same socket's packets go by their hashes.
    for h in 1..=3 {
        enq(&mut q, sk_pkt(h, 100, 9, u64::MAX), 0);
    }
    assert_eq!(q.nflows, 4);
}

#[test]
fn packets_leave_at_their_departure_times_in_time_order() {
    let mut q = fq(&[]);
    // Out of order within one flow; 102 and 104 share a time (they keep
    // their order), 105 is in the past on arrival but behind 101's tail.
    for (len, t) in [
        (101, 30 * MS),
        (102, 10 * MS),
        (103, 20 * MS),
        (104, 10 * MS),
    ] {
        enq(&mut q, at_pkt(len, t), MS);
    }
    enq(&mut q, at_pkt(105, MS / 2), MS);
    assert_eq!(q.fq_stats().fastpath_packets, 0, "none due on arrival");
    assert_eq!(deq(&mut q, MS), Ok(1), "the past one at once");
    assert_eq!(deq(&mut q, MS), Err(Some(10 * MS)));
    assert_eq!(deq(&mut q, 10 * MS - 1), Err(Some(10 * MS)));
    assert_eq!(
        departures(&mut q, 10 * MS),
        [
            (10 * MS, 102),
            (10 * MS, 104),
            (20 * MS, 103),
            (30 * MS, 101)
        ]
    );
}

#[test]
fn a_departure_time_is_paced_at_maxrate_alone_by_packet() {
    // maxrate 1 Mbit/s: 1000 bytes take 8 ms; the initial quantum does
    // not let packets with a departure time go together, and the
    // socket's (lower) pacing rate is not looked at.
    let mut q = fq(&["maxrate", "1mbit"]);
    for _ in 0..3 {
        let mut p = sk_pkt(1, 1000, 7, 1000);
        p.meta.tstamp = 1;
        enq(&mut q, p, 0);
    }
    let times: Vec<u64> = departures(&mut q, 1).iter().map(|d| d.0).collect();
    assert_eq!(times, [1, 1 + 8 * MS, 1 + 16 * MS]);
}

#[test]
fn a_due_departure_time_takes_the_fast_path_in_time_order() {
    let mut q = fq(&[]);
    enq(&mut q, at_pkt(101, 5), 10);
    enq(&mut q, at_pkt(102, 3), 10);
    enq(&mut q, at_pkt(103, 0), 10);
    assert_eq!(q.fq_stats().fastpath_packets, 3);
    let lens: Vec<usize> = departures(&mut q, 10).iter().map(|d| d.1).collect();
    assert_eq!(lens, [102, 101, 103]);
}

#[test]
fn beyond_the_horizon_a_packet_is_dropped_or_capped() {
    let mut q = fq(&["horizon", "1s"]);
    let mut to_free = ToFree::default();
    let r = q.enqueue(
        at_pkt(100, 2 * SEC + 1),
        Instant::from_nanos(SEC),
        &mut to_free,
    );
    assert_eq!(r, NetXmit::Drop);
    assert_eq!((q.fq_stats().horizon_drops, q.stats().drops), (1, 1));
    assert_eq!(q.stats().qlen, 0);
    assert_eq!(enq(&mut q, at_pkt(100, 2 * SEC), SEC), NetXmit::Success);
    let mut q = fq(&["horizon", "1s", "horizon_cap"]);
    assert_eq!(enq(&mut q, at_pkt(100, 5 * SEC), SEC), NetXmit::Success);
    assert_eq!((q.fq_stats().horizon_caps, q.stats().drops), (1, 0));
    assert_eq!(deq(&mut q, SEC), Err(Some(2 * SEC)));
    let Dequeued::Packet(p) = q.dequeue(Instant::from_nanos(2 * SEC)) else {
        panic!("the capped packet leaves at the horizon");
    };
    assert_eq!(p.meta.tstamp, 2 * SEC);
}
