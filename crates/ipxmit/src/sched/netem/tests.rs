//! Tests of the `netem` qdisc, on a manual clock (times are passed in).

use super::rand::{get_crandom, tabledist, CrndState, RndState};
use super::*;
use crate::sched::Pfifo;

const MS: u64 = 1_000_000;

fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

fn spec(s: &str) -> NetemSpec {
    parse_netem(&words(s)).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn netem(s: &str) -> Netem {
    Netem::new(&spec(s), 1000).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn err(s: &str) -> String {
    match parse_netem(&words(s)) {
        Ok(sp) => panic!("{s} parsed: {sp:?}"),
        Err(e) => e.to_string(),
    }
}

fn at(ns: u64) -> Instant {
    Instant::from_nanos(ns)
}

/// A packet of `len` bytes whose first byte is `id`.
fn pkt(id: u8, len: usize) -> PacketBuf {
    let mut b = vec![0u8; len];
    b[0] = id;
    PacketBuf::from_slice(16, &b)
}

/// An Ethernet + IPv4 frame with ECN field `ecn`.
fn frame(ecn: u8) -> PacketBuf {
    let mut b = vec![0u8; 64];
    b[14] = 0x45;
    b[15] = ecn;
    crate::wire::ipv4::send_check(&mut b[14..34]);
    let mut p = PacketBuf::from_slice(0, &b);
    p.meta.network_header = 14;
    p.meta.protocol = 0x0800;
    p
}

fn enqueue(q: &mut Netem, id: u8, len: usize, now: u64) -> NetXmit {
    q.enqueue(pkt(id, len), at(now), &mut ToFree::default())
}

/// The ids of the packets a dequeue at `now` hands out, until it stops.
fn drain_at(q: &mut Netem, now: u64) -> (Vec<u8>, Dequeued) {
    let mut ids = Vec::new();
    loop {
        match q.dequeue(at(now)) {
            Dequeued::Packet(p) => ids.push(p.linear()[0]),
            other => return (ids, other),
        }
    }
}

/// `n` delays drawn by the enqueue path (time to send from time 0).
fn delays(q: &mut Netem, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| q.time_to_send(100, 1_000 * MS) as f64 - (1_000 * MS) as f64)
        .collect()
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
    (m, var.sqrt())
}

/// The fraction of `n` packets lost.
fn loss_rate(q: &mut Netem, n: usize) -> f64 {
    let mut tf = ToFree::default();
    for _ in 0..n {
        q.enqueue(pkt(0, 60), at(0), &mut tf);
        let _ = q.dequeue(at(0));
    }
    q.stats().drops as f64 / n as f64
}

#[test]
fn the_delay_is_exact() {
    let mut q = netem("delay 100ms");
    assert_eq!(enqueue(&mut q, 1, 100, 5_000), NetXmit::Success);
    let due = 5_000 + 100 * MS;
    assert!(matches!(q.dequeue(at(due - 1)), Dequeued::Throttled(t) if t == at(due)));
    assert!(matches!(q.dequeue(at(due)), Dequeued::Packet(_)));
    assert!(matches!(q.dequeue(at(due)), Dequeued::Empty));
    let s = q.stats();
    assert_eq!((s.packets, s.bytes, s.qlen, s.backlog), (1, 100, 0, 0));
}

#[test]
fn a_delay_is_kept_in_whole_ticks_as_tc_61_sends_it() {
    // 1us is 15 ticks of 64 ns: 960 ns, and tc prints it back as 0us.
    let mut q = netem("delay 1us");
    enqueue(&mut q, 1, 100, 0);
    assert!(matches!(q.dequeue(at(0)), Dequeued::Throttled(t) if t == at(960)));
    assert_eq!(q.params(), "limit 1000 delay 0us");
    assert_eq!(netem("delay 1.5s").params(), "limit 1000 delay 1.5s");
}

#[test]
fn jitter_is_uniform_within_its_bounds() {
    let mut q = netem("delay 10ms 2ms");
    let d = delays(&mut q, 100_000);
    let (lo, hi) = d
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    assert!(lo >= (8 * MS) as f64 && hi < (12 * MS) as f64, "{lo} {hi}");
    let (m, sd) = mean_sd(&d);
    // Uniform on [8ms, 12ms): mean 10ms, deviation 4ms/sqrt(12).
    assert!((m - 1e7).abs() < 2e4, "{m}");
    assert!((sd / (4e6 / 12f64.sqrt()) - 1.0).abs() < 0.01, "{sd}");
}

#[test]
fn the_normal_table_gives_the_mean_and_deviation() {
    let mut q = netem("delay 100ms 10ms distribution normal");
    let (m, sd) = mean_sd(&delays(&mut q, 100_000));
    assert!((m - 1e8).abs() < 1e5, "mean {m}");
    assert!((sd / 1e7 - 1.0).abs() < 0.02, "sd {sd}");
}

#[test]
fn the_pareto_table_is_sampled_as_tabulated() {
    let t = NetemDist::Pareto.table();
    // The median of a Pareto of shape 3 is 2^(1/3), shifted by the mean
    // 1.5 and scaled by 4/3.
    let median = (2f64.powf(1.0 / 3.0) - 1.5) * 4.0 / 3.0 * 8192.0;
    assert!((f64::from(t[2048]) - median).abs() < 8.0, "{}", t[2048]);
    let tab: Vec<f64> = t.iter().map(|&v| f64::from(v) / 8192.0).collect();
    let (tm, tsd) = mean_sd(&tab);
    let mut q = netem("delay 100ms 10ms distribution pareto");
    let d: Vec<f64> = delays(&mut q, 100_000)
        .iter()
        .map(|x| (x - 1e8) / 1e7)
        .collect();
    let (m, sd) = mean_sd(&d);
    assert!(
        (m - tm).abs() < 0.02 && (sd / tsd - 1.0).abs() < 0.03,
        "{m} {sd} vs {tm} {tsd}"
    );
    // The right tail is long: far more mass above +2 deviations than below -2.
    let (above, below) = (
        d.iter().filter(|&&x| x > 2.0).count(),
        d.iter().filter(|&&x| x < -2.0).count(),
    );
    assert!(above > 1000 && below == 0, "{above} {below}");
}

#[test]
fn tabledist_rounds_as_the_kernel() {
    let mut prng = RndState::seeded(1);
    let mut p2 = prng;
    let table = [-8192i16, 4096];
    for _ in 0..100 {
        let rnd = p2.next_u32();
        let t = i64::from(table[rnd as usize % 2]);
        let sigma = 10_000i64;
        let x = sigma % 8192 * t;
        let x = if x >= 0 { x + 4096 } else { x - 4096 };
        let want = x / 8192 + sigma / 8192 * t + 7;
        assert_eq!(tabledist(7, 10_000, None, &mut prng, Some(&table)), want);
    }
    assert_eq!(tabledist(5, 0, None, &mut prng, None), 5);
}

#[test]
fn correlation_pulls_towards_the_last_value() {
    let mut z = RndState::seeded(0);
    // A correlation of 100% repeats the previous value.
    let mut c = CrndState {
        last: 1234,
        rho: u32::MAX,
    };
    assert_eq!(get_crandom(Some(&mut c), &mut z), 1234);
    // None: the plain draw.
    let mut w = z;
    assert_eq!(get_crandom(None, &mut z), w.next_u32());
    // 50%: halfway between the draw and the last value.
    let mut c = CrndState {
        last: 0,
        rho: u32::MAX / 2,
    };
    let mut w = z;
    let v = u64::from(w.next_u32());
    let got = u64::from(get_crandom(Some(&mut c), &mut z));
    assert!(got.abs_diff(v / 2) <= 1, "{got} {v}");
}

#[test]
fn random_loss_is_near_its_probability() {
    let mut q = netem("loss 10%");
    let r = loss_rate(&mut q, 100_000);
    assert!((r - 0.10).abs() < 0.005, "{r}");
    // Lost packets are reported as sent (the kernel's bypass).
    assert_eq!(enqueue(&mut netem("loss 100%"), 1, 60, 0), NetXmit::Success);
}

#[test]
fn the_same_seed_loses_the_same_packets() {
    let pattern = |s: &str| {
        let mut q = netem(s);
        (0..200)
            .map(|_| {
                let before = q.stats().drops;
                enqueue(&mut q, 0, 60, 0);
                let _ = q.dequeue(at(0));
                q.stats().drops > before
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(pattern("loss 30% seed 7"), pattern("loss 30% seed 7"));
    assert_ne!(pattern("loss 30% seed 7"), pattern("loss 30% seed 8"));
    assert_eq!(netem("seed 7").seed(), 7);
    assert_eq!(netem("").seed(), DEFAULT_SEED);
}

#[test]
fn gilbert_elliott_loses_at_its_stationary_rate() {
    // p = 1%, r = 10%, 1-h = 70%, 1-k = 0.1%.
    let mut q = netem("loss gemodel 1% 10% 70% 0.1%");
    let (p, r, bad_loss, good_loss) = (0.01, 0.10, 0.70, 0.001);
    let bad = p / (p + r);
    let want = (1.0 - bad) * good_loss + bad * bad_loss;
    let got = loss_rate(&mut q, 300_000);
    assert!((got - want).abs() < 0.006, "{got} vs {want}");
}

/// The stationary loss rate of the 4-state chain as the kernel steps it.
fn four_state_loss(p13: f64, p31: f64, p32: f64, p23: f64, p14: f64) -> f64 {
    // States 1 (sent, gap), 2 (sent, burst), 3 (lost, burst), 4 (lost, gap).
    let m = [
        [1.0 - p13 - p14, 0.0, p13, p14],
        [0.0, 1.0 - p23, p23, 0.0],
        [p31, p32, 1.0 - p31 - p32, 0.0],
        [1.0, 0.0, 0.0, 0.0],
    ];
    let mut pi = [0.25; 4];
    for _ in 0..100_000 {
        let mut n = [0.0; 4];
        for (i, row) in m.iter().enumerate() {
            for (j, &pij) in row.iter().enumerate() {
                n[j] += pi[i] * pij;
            }
        }
        pi = n;
    }
    pi[2] + pi[3]
}

#[test]
fn the_four_state_model_loses_at_its_stationary_rate() {
    let mut q = netem("loss state 2% 30% 10% 40% 1%");
    let want = four_state_loss(0.02, 0.30, 0.10, 0.40, 0.01);
    let got = loss_rate(&mut q, 300_000);
    assert!((got - want).abs() < 0.006, "{got} vs {want}");
    // The defaults: isolated bursts of one loss (p31 = 1 - p13).
    let mut q = netem("loss state 5");
    let want = four_state_loss(0.05, 0.95, 0.0, 1.0, 0.0);
    let got = loss_rate(&mut q, 200_000);
    assert!((got - want).abs() < 0.005, "{got} vs {want}");
}

#[test]
fn ecn_marks_instead_of_dropping() {
    let mut q = netem("loss 100% ecn");
    let mut tf = ToFree::default();
    for _ in 0..10 {
        assert_eq!(q.enqueue(frame(2), at(0), &mut tf), NetXmit::Success);
    }
    assert_eq!((q.stats().qlen, q.stats().drops, tf.len()), (10, 10, 0));
    let Dequeued::Packet(p) = q.dequeue(at(0)) else {
        panic!("queued");
    };
    assert_eq!(p.network_header()[1] & 3, 3, "CE");
    // Not ECN-capable: dropped.
    q.enqueue(frame(0), at(0), &mut tf);
    assert_eq!(tf.len(), 1);
}

#[test]
fn duplicates_are_queued_and_not_duplicated_again() {
    let mut q = netem("duplicate 100%");
    assert!(q.duplicates());
    for id in 0..10 {
        enqueue(&mut q, id, 100, 0);
    }
    let (ids, _) = drain_at(&mut q, 0);
    assert_eq!(ids.len(), 20);
    assert!(
        ids.chunks(2)
            .enumerate()
            .all(|(i, c)| c == [i as u8, i as u8]),
        "{ids:?}"
    );
    let mut q = netem("limit 100000 duplicate 50%");
    for _ in 0..10_000 {
        enqueue(&mut q, 0, 100, 0);
    }
    let n = q.stats().qlen;
    assert!((14_500..15_500).contains(&n), "{n}");
    assert!(!netem("").duplicates());
}

#[test]
fn a_netem_below_the_root_hands_its_duplicates_over() {
    let mut q = netem("duplicate 100%");
    q.set_root(false);
    enqueue(&mut q, 3, 100, 0);
    let d: Vec<PacketBuf> = q.take_duplicates().collect();
    assert_eq!((d.len(), d[0].to_vec()), (1, pkt(3, 100).to_vec()));
    assert_eq!(d[0].headroom(), 16);
    assert_eq!(q.stats().qlen, 1);
}

#[test]
fn corruption_flips_one_bit() {
    let mut q = netem("corrupt 100%");
    for _ in 0..50 {
        enqueue(&mut q, 0, 100, 0);
        let Dequeued::Packet(p) = q.dequeue(at(0)) else {
            panic!("sent");
        };
        let ones: u32 = p.linear().iter().map(|b| b.count_ones()).sum();
        assert_eq!(ones, 1);
    }
}

#[test]
fn reorder_with_a_gap_sends_every_gapth_packet_at_once() {
    let mut q = netem("delay 10ms reorder 100% gap 5");
    for id in 1..=10 {
        enqueue(&mut q, id, 100, 0);
    }
    // Each goes to the head of the queue: the later first.
    let (now, rest) = drain_at(&mut q, 0);
    assert_eq!(now, [10, 5]);
    assert!(matches!(rest, Dequeued::Throttled(t) if t == at(10 * MS)));
    let (later, _) = drain_at(&mut q, 10 * MS);
    assert_eq!(later, [1, 2, 3, 4, 6, 7, 8, 9]);
    assert_eq!(q.stats().requeues, 2);
}

#[test]
fn reorder_alone_takes_gap_1_and_its_probability() {
    assert_eq!(
        netem("delay 10ms reorder 25%").params(),
        "limit 1000 delay 10ms reorder 25% gap 1"
    );
    let mut q = netem("limit 20000 delay 10ms reorder 25%");
    for _ in 0..10_000 {
        enqueue(&mut q, 0, 100, 0);
    }
    let r = q.stats().requeues;
    assert!((2_300..2_700).contains(&r), "{r}");
}

#[test]
fn the_time_queue_sends_by_time_keeping_ties_in_order() {
    let mut t = super::tfifo::Tfifo::with_capacity(8);
    for (id, tts) in [10u64, 20, 5, 20, 5, 15, 10].into_iter().enumerate() {
        t.enqueue(pkt(id as u8, 60), tts);
    }
    assert_eq!(t.last_tts(), Some(20));
    let order: Vec<u8> = std::iter::from_fn(|| t.pop())
        .map(|p| p.linear()[0])
        .collect();
    assert_eq!(order, [2, 4, 0, 6, 5, 1, 3]);
    assert_eq!(t.last_tts(), None);
    // With jitter, departures come out in time order.
    let mut q = netem("delay 10ms 5ms");
    for id in 0..200u8 {
        enqueue(&mut q, id, 100, 0);
    }
    let mut sent = 0;
    let mut now = 0;
    while sent < 200 {
        match q.dequeue(at(now)) {
            Dequeued::Packet(_) => sent += 1,
            Dequeued::Throttled(t) => {
                assert!(t.as_nanos() > now && (5 * MS..15 * MS).contains(&t.as_nanos()));
                now = t.as_nanos();
            }
            Dequeued::Empty => panic!("{sent} sent"),
        }
    }
}

#[test]
fn rate_spaces_departures_by_the_transmission_time() {
    // 1mbit = 125000 bytes/s: 1000 bytes take 8ms.
    let mut q = netem("rate 1mbit");
    for id in 0..3 {
        enqueue(&mut q, id, 1000, 0);
    }
    for (k, id) in (0..3u8).enumerate() {
        let due = 8 * MS * (k as u64 + 1);
        assert!(matches!(q.dequeue(at(due - 1)), Dequeued::Throttled(t) if t == at(due)));
        let Dequeued::Packet(p) = q.dequeue(at(due)) else {
            panic!("due");
        };
        assert_eq!(p.linear()[0], id);
    }
    // After an idle period the next starts from now.
    enqueue(&mut q, 9, 1000, 100 * MS);
    assert!(matches!(q.dequeue(at(0)), Dequeued::Throttled(t) if t == at(108 * MS)));
}

#[test]
fn rate_counts_overhead_and_whole_cells() {
    // 1000 + 20 bytes in 64-byte cells: 16 cells of 64 + 5 bytes.
    let q = netem("rate 1mbit 20 64 5");
    assert_eq!(q.packet_time_ns(1000), 16 * 69 * 1_000_000_000 / 125_000);
    assert_eq!(q.packet_time_ns(1000), 8_832_000);
    let q = netem("rate 1mbit -20");
    assert_eq!(q.packet_time_ns(1020), 8 * MS);
    assert_eq!(q.params(), "limit 1000 rate 1Mbit packetoverhead -20");
    // The rate follows a delayed packet: delay, then serialisation.
    let mut q = netem("delay 10ms rate 1mbit");
    enqueue(&mut q, 0, 1000, 0);
    enqueue(&mut q, 1, 1000, 0);
    assert_eq!(q.tfifo.last_tts(), Some(26 * MS));
}

#[test]
fn slots_let_their_packet_budget_through() {
    let mut q = netem("slot 1ms 1ms packets 2");
    for id in 0..6 {
        enqueue(&mut q, id, 1000, 0);
    }
    let (ids, rest) = drain_at(&mut q, 0);
    assert_eq!(ids, [0, 1]);
    assert!(matches!(rest, Dequeued::Throttled(t) if t == at(MS)));
    assert_eq!(drain_at(&mut q, MS).0, [2, 3]);
    assert_eq!(drain_at(&mut q, 2 * MS).0, [4, 5]);
}

#[test]
fn slots_let_their_byte_budget_through() {
    let mut q = netem("slot 2ms 2ms bytes 3000");
    for id in 0..7 {
        enqueue(&mut q, id, 1000, 0);
    }
    assert_eq!(drain_at(&mut q, 0).0, [0, 1, 2]);
    assert_eq!(drain_at(&mut q, MS).0, []);
    assert_eq!(drain_at(&mut q, 2 * MS).0, [3, 4, 5]);
    // Uniform intervals stay within their bounds.
    let mut q = netem("slot 1ms 3ms packets 1");
    for id in 0..50 {
        enqueue(&mut q, id, 100, 0);
    }
    let mut now = 0;
    for _ in 0..49 {
        let _ = drain_at(&mut q, now);
        let Dequeued::Throttled(t) = q.dequeue(at(now)) else {
            panic!("throttled");
        };
        let gap = t.as_nanos() - now;
        assert!((MS..=3 * MS).contains(&gap), "{gap}");
        now = t.as_nanos();
    }
}

#[test]
fn the_limit_drops_and_counts() {
    let mut q = netem("limit 3 delay 1ms");
    let mut tf = ToFree::default();
    let r: Vec<NetXmit> = (0..5)
        .map(|i| q.enqueue(pkt(i, 100), at(0), &mut tf))
        .collect();
    assert_eq!(r[3..], [NetXmit::Drop, NetXmit::Drop]);
    let s = q.stats();
    assert_eq!((s.drops, s.qlen, s.backlog), (2, 3, 300));
    let reasons: Vec<DropReason> = tf.drain().map(|(_, r)| r).collect();
    assert_eq!(reasons, [DropReason::QdiscDrop, DropReason::QdiscDrop]);
    let mut tf = ToFree::default();
    q.reset(&mut tf);
    assert_eq!((tf.len(), q.stats().qlen, q.stats().backlog), (3, 0, 0));
}

#[test]
fn a_change_keeps_the_queue_and_what_tc_did_not_send() {
    let mut q = netem("delay 10ms corrupt 1% ecn loss 1%");
    enqueue(&mut q, 0, 100, 0);
    q.change(&spec("delay 20ms loss 2%")).unwrap();
    assert_eq!(q.stats().qlen, 1);
    assert_eq!(q.params(), "limit 1000 delay 20ms loss 2% corrupt 1% ecn ");
}

#[test]
fn prints_as_the_conformance_tests_expect() {
    for (opts, shown) in [
        ("", "limit 1000"),
        ("limit 200", "limit 200"),
        ("delay 100ms", "limit 1000 delay 100ms"),
        (
            "delay 100ms 10ms distribution normal corrupt 1%",
            "limit 1000 delay 100ms  10ms corrupt 1%",
        ),
        (
            "delay 100ms 10ms distribution normal duplicate 1%",
            "limit 1000 delay 100ms  10ms duplicate 1%",
        ),
        (
            "delay 100ms 10ms distribution pareto loss 1%",
            "limit 1000 delay 100ms  10ms loss 1%",
        ),
        (
            "delay 100ms 10ms distribution paretonormal loss state 1",
            "limit 1000 delay 100ms  10ms loss state p13 1% p31 99% p32 0% p23 100% p14 0%",
        ),
        (
            "loss gemodel 1%",
            "limit 1000 loss gemodel p 1% r 99% 1-h 100% 1-k 0%",
        ),
        (
            "delay 100ms 10ms reorder 2% gap 100",
            "limit 1000 delay 100ms  10ms reorder 2% gap 100",
        ),
        ("rate 20000", "limit 1000 rate 20Kbit"),
        (
            "slot 10 200 packets 2000 bytes 9000",
            "limit 1000 slot 10ns 200ns packets 2000 bytes 9000",
        ),
        (
            "slot distribution pareto 1ms 0.1ms",
            "limit 1000 slot distribution 1ms 100us",
        ),
        ("delay 200ms 10ms", "limit 1000 delay 200ms  10ms"),
        (
            "delay 100ms 10ms 25% loss random 1% 50% duplicate 2% 10%",
            "limit 1000 delay 100ms  10ms 25% loss 1% 50% duplicate 2% 10%",
        ),
        ("corrupt 0.5 seed 3", "limit 1000 corrupt 0.5%"),
    ] {
        let q = netem(opts);
        assert_eq!(q.params(), shown, "{opts}");
        assert_eq!(q.params_details(), shown, "{opts}");
    }
}

#[test]
fn a_change_prints_the_new_values() {
    let mut q = netem("delay 100ms 10ms distribution normal loss 1%");
    q.change(&spec("delay 100ms 10ms distribution normal loss 2%"))
        .unwrap();
    assert_eq!(q.params(), "limit 1000 delay 100ms  10ms loss 2%");
}

#[test]
fn json_is_tcs_object() {
    assert_eq!(
        netem("delay 100ms 10ms 25% loss 1%").options_json(),
        "{\"limit\":1000,\"delay\":{\"delay\":0.1,\"jitter\":0.01,\"correlation\":0.25},\
         \"loss-random\":{\"loss\":0.01,\"correlation\":0},\"ecn\":false,\"gap\":0}"
    );
    assert_eq!(
        netem("rate 20000 slot 10 200 packets 5").options_json(),
        "{\"limit\":1000,\"rate\":{\"rate\":2500,\"packetoverhead\":0,\"cellsize\":0,\
         \"celloverhead\":0},\"slot\":{\"min-delay\":1e-08,\"max-delay\":2e-07,\
         \"packets\":5,\"bytes\":0},\"ecn\":false,\"gap\":0}"
    );
    assert_eq!(
        netem("loss gemodel 1%").options_json(),
        "{\"limit\":1000,\"loss-gemodel\":{\"p\":0.01,\"r\":0.99,\"1-h\":1,\"1-k\":0},\
         \"ecn\":false,\"gap\":0}"
    );
    let o = netem("limit 5").options();
    assert_eq!(o[0], ("limit", OptValue::Num(5)));
}

#[test]
fn parse_errors_are_tcs() {
    let usage = |m: &str| format!("{m}\n{NETEM_USAGE}");
    assert_eq!(err("foo"), usage("What is \"foo\"?"));
    assert_eq!(err("help"), NETEM_USAGE);
    assert_eq!(
        err("limit"),
        "Command line is not complete. Try option \"help\""
    );
    assert_eq!(err("limit x"), "Illegal \"limit\"");
    assert_eq!(err("delay x"), "Illegal \"latency\"");
    assert_eq!(
        err("delay 300s"),
        "Illegal 300000000 time (too large)\nIllegal \"latency\""
    );
    assert_eq!(
        err("loss 1% loss 2%"),
        "Illegal \"duplicate loss argument\n\""
    );
    assert_eq!(err("loss 200%"), "Illegal \"loss percent\"");
    assert_eq!(err("loss foo"), "Unknown loss parameter: foo");
    assert_eq!(err("loss state 1 x"), usage("What is \"x\"?"));
    assert_eq!(err("loss gemodel 101"), "Illegal \"loss gemodel p\"");
    assert_eq!(
        err("gap 5"),
        usage("gap specified without reorder probability")
    );
    assert_eq!(
        err("reorder 10%"),
        usage("reordering not possible without specifying some delay")
    );
    assert_eq!(err("ecn"), usage("ecn requested without loss model"));
    assert_eq!(
        err("delay 10ms distribution normal"),
        usage("distribution specified but no latency and jitter values")
    );
    assert_eq!(
        err("distribution uniform"),
        "No distribution data for uniform (/usr/lib/tc/uniform.dist: No such file or directory)"
    );
    assert_eq!(err("slot foo"), "Unknown slot parameter: foo");
    assert_eq!(err("slot 10 5"), "Illegal \"slot max_delay\"");
    assert_eq!(err("slot 10 packets"), "Illegal \"slot packets\"");
    assert_eq!(err("slot distribution normal 1ms 0"), "Non-positive jitter");
    assert_eq!(err("rate 10%"), "Illegal \"rate\"");
    assert_eq!(err("rate 1mbit 0x"), "Illegal \"rate\"");
}

#[test]
fn parsing_follows_tcs_keywords_and_defaults() {
    let s = spec("l 5 d 1ms 1ms 5 dr 1 du 2 r 3 c 4 e");
    assert_eq!(s.limit, 5);
    assert_eq!(
        (s.latency_us, s.jitter_us, s.latency_ticks()),
        (1000, 1000, 15625)
    );
    assert_eq!(s.gap, 1);
    assert!(s.ecn);
    assert_eq!(s.corr.map(|c| c.delay), Some(super::num::set_percent(0.05)));
    // A duplicate correlation alone is not sent (tc does not count it).
    assert_eq!(spec("duplicate 1% 5%").corr, None);
    let pc = |s: &str| super::num::get_percent(s).unwrap();
    assert_eq!(
        spec("loss gemodel 10% 20% 30% 40%").loss_model,
        Some(NetemLoss::Gemodel {
            p: 429_496_730,
            r: pc("20%"),
            h: u32::MAX - pc("30%"),
            k1: pc("40%"),
        })
    );
    let r = spec("rate 1gbit -4 0x40 3").rate.unwrap();
    assert_eq!(
        (r.rate, r.packet_overhead, r.cell_size, r.cell_overhead),
        (125_000_000, -4, 64, 3)
    );
    let sl = spec("slot 1ms p 3 b 1k").slot.unwrap();
    assert_eq!(
        (sl.min_delay, sl.max_delay, sl.max_packets, sl.max_bytes),
        (1_000_000, 1_000_000, 3, 1024)
    );
}

#[test]
fn the_kernel_refuses_bad_slots() {
    let e = Netem::new(&spec("slot distribution normal -1ms 1ms"), 1000).unwrap_err();
    assert_eq!(e.to_string(), "Error: negative dist delay.");
    let e = Netem::new(&spec("slot 1ms packets -1"), 1000).unwrap_err();
    assert_eq!(e.to_string(), "Error: negative slot limit.");
}

#[test]
fn display_gives_the_spec_back() {
    for s in [
        "",
        "limit 7 delay 100ms 10ms 25% distribution paretonormal",
        "delay 1ms loss random 0.3% 5% duplicate 1% 2% reorder 5% 1% gap 3 corrupt 0.1%",
        "loss state 1 2 3 4 5 ecn",
        "loss gemodel 1% 10% 70% 0.1%",
        "duplicate 33% 5%",
        "rate 12345bit -3 48 2 slot 1ms 2ms packets 3 bytes 9000",
        "slot distribution normal 1ms 100us seed 42",
        "reorder 0% corrupt 1%",
    ] {
        let a = spec(s);
        let shown = a.to_string();
        assert_eq!(parse_netem(&words(&shown)).unwrap(), a, "{s} -> {shown}");
    }
}

#[test]
fn a_grafted_child_takes_the_due_packets() {
    let mut q = netem("delay 1ms");
    q.set_handle(1 << 16);
    assert!(q.classful() && q.classes().is_empty() && q.class_find(0x1_0001));
    let mut tf = ToFree::default();
    q.graft(1 << 16, Some((2 << 16, Box::new(Pfifo::new(2)))), &mut tf)
        .unwrap();
    assert_eq!(q.classes(), [1]);
    assert_eq!(q.children()[0].0, (1 << 16) | 1);
    assert_eq!(q.leaf_mut(0).map(|(h, _)| h), Some(2 << 16));
    for id in 0..3 {
        enqueue(&mut q, id, 100, 0);
    }
    assert!(matches!(q.dequeue(at(0)), Dequeued::Throttled(_)));
    // Due: into the child (room for 2: one refused, counted), then out.
    let (ids, rest) = drain_at(&mut q, MS);
    assert_eq!(ids, [0, 1]);
    assert!(matches!(rest, Dequeued::Empty));
    let s = *q.stats();
    assert_eq!((s.qlen, s.backlog, s.drops, s.packets), (0, 0, 1, 2));
    q.graft(1 << 16, None, &mut tf).unwrap();
    assert!(q.classes().is_empty() && q.leaf_mut(0).is_none());
}

#[test]
fn grafting_over_a_busy_child_purges_it() {
    let mut q = netem("");
    let mut tf = ToFree::default();
    q.graft(0, Some((2 << 16, Box::new(Pfifo::new(10)))), &mut tf)
        .unwrap();
    for id in 0..3 {
        enqueue(&mut q, id, 100, 0);
    }
    // All due at once: moved into the child, the first out again.
    assert!(matches!(q.dequeue(at(0)), Dequeued::Packet(_)));
    assert_eq!((q.stats().qlen, q.stats().backlog), (2, 200));
    q.graft(0, Some((3 << 16, Box::new(Pfifo::new(10)))), &mut tf)
        .unwrap();
    assert_eq!((tf.len(), q.stats().qlen, q.stats().backlog), (2, 0, 0));
    assert_eq!(q.leaf_mut(0).map(|(h, _)| h), Some(3 << 16));
}
