//! Tests of `htb` on a manual clock, against the algorithm and what the
//! kernel was seen to do.

use super::*;

const H: u32 = 1 << 16;

fn pkt(priority: u32, len: usize) -> PacketBuf {
    let mut p = PacketBuf::from_slice(0, &vec![0u8; len]);
    p.meta.priority = priority;
    p
}

fn at(ms: u64) -> Instant {
    Instant::from_nanos(ms * 1_000_000)
}

fn htb(defcls: u32) -> Htb {
    let mut q = Htb::new(defcls, 10, 1000, 1000);
    q.set_handle(H);
    q
}

fn add(q: &mut Htb, parent: u32, minor: u32, cfg: HtbClassConfig) -> Option<String> {
    let parent = if parent == 0 { 0xffff_ffff } else { H | parent };
    q.class_change(
        parent,
        H | minor,
        &ClassSpec::Htb(cfg),
        at(0),
        &mut ToFree::default(),
    )
    .unwrap()
}

/// Dequeues at `now` until the qdisc has nothing it may send.
fn drain_at(q: &mut Htb, now: Instant) -> Vec<usize> {
    std::iter::from_fn(|| match q.dequeue(now) {
        Dequeued::Packet(p) => Some(p.len()),
        _ => None,
    })
    .collect()
}

#[test]
fn a_leaf_sends_its_burst_then_at_its_rate() {
    // 1000 B/s, a bucket of 2000 B: 3 packets of 1000 B go at once (a
    // class sends while its tokens are not negative), then one a second.
    let mut q = htb(0x10);
    let mut cfg = HtbClassConfig::with_rate(1000);
    cfg.buffer_ticks = super::super::class::xmittime(1000, 2000);
    cfg.cbuffer_ticks = cfg.buffer_ticks;
    add(&mut q, 0, 0x10, cfg);
    let mut tf = ToFree::default();
    for _ in 0..6 {
        assert_eq!(q.enqueue(pkt(0, 1000), at(0), &mut tf), NetXmit::Success);
    }
    assert_eq!(drain_at(&mut q, at(0)), [1000; 3]);
    match q.dequeue(at(0)) {
        Dequeued::Throttled(t) => assert_eq!(t.as_nanos(), 1_000_000_000),
        other => panic!("{other:?}"),
    }
    assert_eq!(drain_at(&mut q, at(999)), [] as [usize; 0]);
    assert_eq!(drain_at(&mut q, at(1000)), [1000]);
    assert_eq!(drain_at(&mut q, at(2000)), [1000]);
    // Each charge that leaves the class unable to send counts an overlimit.
    assert_eq!((q.stats().qlen, q.stats().overlimits), (1, 3));
    let s = q.class_show(H | 0x10, false).unwrap();
    assert_eq!(
        (s.stats.packets, s.stats.qlen, s.stats.overlimits),
        (5, 1, 3)
    );
}

#[test]
fn the_direct_queue_goes_first_and_unshaped() {
    let mut q = htb(0);
    add(&mut q, 0, 1, HtbClassConfig::with_rate(100));
    let mut tf = ToFree::default();
    // Priority 1:1 -> the leaf; 0 -> no default class -> direct; the
    // handle itself -> direct.
    q.enqueue(pkt(H | 1, 100), at(0), &mut tf);
    q.enqueue(pkt(0, 200), at(0), &mut tf);
    q.enqueue(pkt(H, 300), at(0), &mut tf);
    assert_eq!(drain_at(&mut q, at(0)), [200, 300, 100]);
    assert!(q.params().contains("direct_packets_stat 2"));
}

#[test]
fn borrowing_goes_to_the_lower_prio_first_and_each_keeps_its_rate() {
    // 1:1 80 kbit; 1:10 prio 0 and 1:20 prio 1, each 8 kbit ceil 80 kbit.
    let mut q = htb(0);
    add(&mut q, 0, 1, HtbClassConfig::with_rate(10_000));
    let leaf = HtbClassConfig::with_rate(1000).with_ceil(10_000);
    add(&mut q, 1, 0x10, HtbClassConfig { prio: 0, ..leaf });
    add(&mut q, 1, 0x20, HtbClassConfig { prio: 1, ..leaf });
    let mut tf = ToFree::default();
    for _ in 0..40 {
        q.enqueue(pkt(H | 0x20, 1000), at(0), &mut tf);
        q.enqueue(pkt(H | 0x10, 999), at(0), &mut tf);
    }
    let mut sent = Vec::new();
    for ms in (0..4000).step_by(10) {
        sent.extend(drain_at(&mut q, at(ms)));
    }
    let a = sent.iter().filter(|&&l| l == 999).count();
    let b = sent.len() - a;
    // 4 s at 10 kB/s plus the buckets: about 40 packets; B gets about its
    // own 1 kB/s (4 + its burst), A the rest.
    assert!((40..=44).contains(&sent.len()), "{sent:?}");
    assert!((4..=7).contains(&b), "B sent {b}: {sent:?}");
    assert!(a > 30, "A sent {a}");
    let x = q.class_show(H | 1, false).unwrap().xstats.unwrap();
    assert!(x.starts_with(" lended: "), "{x}");
}

#[test]
fn equal_leaves_share_by_quantum() {
    let mut q = htb(0);
    add(&mut q, 0, 1, HtbClassConfig::with_rate(1_000_000));
    let leaf = HtbClassConfig::with_rate(100).with_ceil(1_000_000);
    add(
        &mut q,
        1,
        0xa,
        HtbClassConfig {
            quantum: 1000,
            ..leaf
        },
    );
    add(
        &mut q,
        1,
        0xb,
        HtbClassConfig {
            quantum: 3000,
            ..leaf
        },
    );
    let mut tf = ToFree::default();
    for _ in 0..20 {
        q.enqueue(pkt(H | 0xa, 1000), at(0), &mut tf);
        q.enqueue(pkt(H | 0xb, 1001), at(0), &mut tf);
    }
    // Both leaves' own 1600-byte buckets go first (level 0: ABAB), then
    // they borrow from 1:1; deficits start at 0, so the first turns
    // alternate (ABAB), then one packet of A per three of B.
    let mut sent = Vec::new();
    for ms in 0..200 {
        sent.extend(drain_at(&mut q, at(ms)));
    }
    let borrowed: String = sent[9..25]
        .iter()
        .map(|&l| if l == 1000 { 'A' } else { 'B' })
        .collect();
    assert_eq!(borrowed, "ABBBABBBABBBABBB", "{sent:?}");
}

#[test]
fn classes_come_and_go_as_the_kernels() {
    let mut q = htb(0x10);
    let w = add(&mut q, 0, 1, HtbClassConfig::with_rate(2500));
    assert_eq!(
        w.as_deref(),
        Some("Warning: sch_htb: quantum of class 10001 is small. Consider r2q change.")
    );
    add(&mut q, 1, 0x10, HtbClassConfig::with_rate(1250));
    let mut tf = ToFree::default();
    let spec = ClassSpec::Htb(HtbClassConfig::with_rate(1));
    assert_eq!(
        q.class_change(H, 2 << 16 | 5, &spec, at(0), &mut tf),
        Err(ClassError::Invalid)
    );
    assert_eq!(
        q.class_delete(H | 1, at(0), &mut tf),
        Err(ClassError::Refused("HTB class in use"))
    );
    let show = |q: &Htb, id| q.class_show(H | id, true).unwrap().text;
    assert_eq!(
        show(&q, 1),
        "root rate 20Kbit ceil 20Kbit linklayer ethernet burst 1600b/1 mpu 0b cburst 1600b/1 mpu 0b level 7 "
    );
    assert_eq!(
        show(&q, 0x10),
        "parent 1:1 prio 0 quantum 1000 rate 10Kbit ceil 10Kbit linklayer ethernet burst 1600b/1 mpu 0b cburst 1600b/1 mpu 0b level 0 "
    );
    q.enqueue(pkt(0, 100), at(0), &mut tf);
    q.class_delete(H | 0x10, at(0), &mut tf).unwrap();
    assert_eq!((tf.len(), q.stats().qlen), (1, 0));
    assert!(show(&q, 1).ends_with("level 0 "));
    // Eight levels at most: 1:1 (7) > 1:2 (6) > ... > 1:7 (1) > 1:8 leaf.
    for id in 2..=8 {
        add(&mut q, id - 1, id, HtbClassConfig::with_rate(1000));
    }
    assert_eq!(
        q.class_change(H | 8, H | 9, &spec, at(0), &mut tf),
        Err(ClassError::Refused("sch_htb: tree is too deep"))
    );
    // An unknown parent makes a top class.
    add(&mut q, 0x77, 0x20, HtbClassConfig::with_rate(1000));
    assert!(show(&q, 0x20).starts_with("root prio 0 "));
}

#[test]
fn fifty_shaped_leaves_each_wait_for_their_own_tokens() {
    // 50 leaves of 1000 B/s with buckets of 1000 B, three 1000-byte
    // packets each: two go at once (the second leaves the bucket a
    // packet in debt), the third when the debt is paid, a second later.
    // Leaf 1:33 gets its third packet only at 1.5 s.
    let mut q = htb(0);
    let mut cfg = HtbClassConfig::with_rate(1000);
    cfg.buffer_ticks = super::super::class::xmittime(1000, 1000);
    cfg.cbuffer_ticks = cfg.buffer_ticks;
    let mut tf = ToFree::default();
    for minor in 1..=50 {
        add(&mut q, 0, minor, cfg);
        let n = if minor == 33 { 2 } else { 3 };
        for _ in 0..n {
            q.enqueue(pkt(H | minor, 1000), at(0), &mut tf);
        }
    }
    assert_eq!(drain_at(&mut q, at(0)).len(), 100);
    match q.dequeue(at(0)) {
        Dequeued::Throttled(t) => assert_eq!(t, at(1000)),
        other => panic!("{other:?}"),
    }
    assert_eq!(drain_at(&mut q, at(999)).len(), 0);
    assert_eq!(drain_at(&mut q, at(1000)).len(), 49);
    q.enqueue(pkt(H | 33, 1000), at(1500), &mut tf);
    // 1:33 paid its debt at 1 s and holds half a packet at 1.5 s: the
    // packet goes (the check comes before the charge), leaving half a
    // packet of debt, paid at 2 s.
    assert_eq!(drain_at(&mut q, at(1500)).len(), 1);
    q.enqueue(pkt(H | 33, 1000), at(1500), &mut tf);
    match q.dequeue(at(1500)) {
        Dequeued::Throttled(t) => assert_eq!(t, at(2000)),
        other => panic!("{other:?}"),
    }
    assert_eq!(drain_at(&mut q, at(2000)).len(), 1);
    assert_eq!(q.stats().qlen, 0);
}

#[test]
fn the_default_class_is_found_again_after_each_change_of_the_tree() {
    let mut q = htb(0x10);
    let mut tf = ToFree::default();
    let direct = |q: &Htb| q.options()[2].1.clone();
    // No 1:10 yet: the direct queue.
    q.enqueue(pkt(0, 100), at(0), &mut tf);
    assert_eq!(direct(&q), OptValue::Num(1));
    add(&mut q, 0, 0x10, HtbClassConfig::with_rate(1000));
    q.enqueue(pkt(0, 100), at(0), &mut tf);
    assert_eq!(direct(&q), OptValue::Num(1));
    // 1:10 inner (its packet purged): not a leaf, the direct queue again.
    add(&mut q, 0x10, 0x11, HtbClassConfig::with_rate(1000));
    q.enqueue(pkt(0, 100), at(0), &mut tf);
    assert_eq!(direct(&q), OptValue::Num(2));
    // 1:11 gone, 1:10 a leaf again.
    q.class_delete(H | 0x11, at(0), &mut tf).unwrap();
    q.enqueue(pkt(0, 100), at(0), &mut tf);
    assert_eq!(direct(&q), OptValue::Num(2));
    assert_eq!(q.class_show(H | 0x10, false).unwrap().stats.qlen, 1);
}
