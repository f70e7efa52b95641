//! `tc` lines in scripts through the real binary: what tc prints and what
//! it refuses, checked against the real tc (iproute2 6.1 on Linux 6.18, an
//! ifb device in a throwaway namespace; the expected texts were taken
//! from it, the automatic handles renumbered from 8001:), and a tbf
//! shaping sends on the virtual clock.

mod common;

use common::{pcap_frames, run_script, tmpdir};

const DEV: &str = "link add t0 type null\nlink set t0 up\n";

/// The stdout of a script that must run to its end, without statistics.
fn out(name: &str, lines: &str) -> String {
    let d = tmpdir(name);
    let r = run_script(&d, &format!("{DEV}{lines}"), &["--no-stats"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout
}

/// The stderr of a script that must stop at a refused line.
fn refused(name: &str, lines: &str) -> String {
    let d = tmpdir(name);
    let r = run_script(&d, &format!("{DEV}{lines}"), &["--no-stats"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    r.stderr
}

#[test]
fn show_prints_what_tc_prints() {
    let o = out(
        "tc-show",
        "tc qdisc show dev t0
tc qdisc add dev t0 root tbf rate 1mbit burst 10kb latency 50ms
tc qdisc show dev t0
tc -s qdisc show dev t0
tc -d qdisc show dev t0
tc -j qdisc show dev t0
tc -s -j qdisc show dev t0
tc class show dev t0
tc qdisc replace dev t0 root handle 5: bfifo limit 3000
tc qdisc show dev t0
tc -j qdisc show dev t0
",
    );
    let want = "qdisc pfifo_fast 0: root refcnt 2 bands 3 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1
qdisc tbf 8001: root refcnt 2 rate 1Mbit burst 10Kb lat 50ms 
qdisc tbf 8001: root refcnt 2 rate 1Mbit burst 10Kb lat 50ms 
 Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) 
 backlog 0b 0p requeues 0
qdisc tbf 8001: root refcnt 2 rate 1Mbit burst 10Kb/1 mpu 0b lat 50ms linklayer ethernet 
[{\"kind\":\"tbf\",\"handle\":\"8001:\",\"root\":true,\"refcnt\":2,\"options\":{\"rate\":125000,\"burst\":10240,\"lat\":50000}}]
[{\"kind\":\"tbf\",\"handle\":\"8001:\",\"root\":true,\"refcnt\":2,\"options\":{\"rate\":125000,\"burst\":10240,\"lat\":50000},\"bytes\":0,\"packets\":0,\"drops\":0,\"overlimits\":0,\"requeues\":0,\"backlog\":0,\"qlen\":0}]
class tbf 8001:1 parent 8001: 
qdisc bfifo 5: root refcnt 2 limit 3000b
[{\"kind\":\"bfifo\",\"handle\":\"5:\",\"root\":true,\"refcnt\":2,\"options\":{\"limit\":3000}}]
";
    assert_eq!(o, want);
}

#[test]
fn handles_follow_the_kernels_rules() {
    let o = out(
        "tc-handles",
        "tc qdisc add dev t0 root pfifo
tc qdisc show dev t0
tc qdisc replace dev t0 root pfifo limit 5
tc qdisc show dev t0
tc qdisc replace dev t0 root bfifo
tc qdisc show dev t0
tc qdisc replace dev t0 root tbf rate 1mbit burst 10k latency 10ms
tc qdisc change dev t0 root tbf rate 2mbit burst 10k latency 10ms
tc qdisc show dev t0
tc qdisc del dev t0 root
tc qdisc show dev t0
tc qdisc replace dev t0 root handle 9: pfifo
tc qdisc replace dev t0 root pfifo
tc qdisc show dev t0
",
    );
    let want = "qdisc pfifo 8001: root refcnt 2 limit 1000p
qdisc pfifo 8001: root refcnt 2 limit 5p
qdisc bfifo 8002: root refcnt 2 limit 1514000b
qdisc tbf 8003: root refcnt 2 rate 2Mbit burst 10Kb lat 10ms 
qdisc pfifo_fast 0: root refcnt 2 bands 3 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1
qdisc pfifo 9: root refcnt 2 limit 1000p
";
    assert_eq!(o, want);
}

#[test]
fn refusals_are_tcs_messages() {
    let cases = [
        (
            "tc qdisc del dev t0 root",
            "Error: Cannot delete qdisc with handle of zero.",
        ),
        (
            "tc qdisc change dev t0 root tbf rate 1mbit burst 10k latency 10ms",
            "Error: Qdisc not found. To create specify NLM_F_CREATE flag.",
        ),
        (
            "tc qdisc add dev t0 root pfifo\ntc qdisc add dev t0 root pfifo",
            "Error: Exclusivity flag on, cannot modify.",
        ),
        (
            "tc qdisc add dev t0 root handle 1: pfifo\ntc qdisc change dev t0 root handle 2: pfifo",
            "Error: NLM_F_REPLACE needed to override.",
        ),
        (
            "tc qdisc add dev t0 root handle 1: pfifo\ntc qdisc del dev t0 root handle 2:",
            "Error: Invalid handle.",
        ),
        (
            "tc qdisc add dev t0 root tbf rate 2mbit burst 10k limit 1000 peakrate 1mbit mtu 1500",
            "RTNETLINK answers: Invalid argument",
        ),
        (
            "tc qdisc show dev nosuchdev",
            "Cannot find device \"nosuchdev\"",
        ),
        (
            "tc qdisc add dev t0 root tbf rate 1mbit burst 10k",
            "tbf: either \"limit\" or \"latency\" is required.",
        ),
    ];
    for (i, (lines, msg)) in cases.iter().enumerate() {
        let e = refused(&format!("tc-refused-{i}"), lines);
        let line = 2 + lines.lines().count();
        assert_eq!(e.trim_end(), format!("line {line}: {msg}"), "{lines}");
    }
}

#[test]
fn prio_bands_and_classes_print_as_tc() {
    let o = out(
        "tc-prio",
        "tc qdisc add dev t0 handle 1: root prio bands 4 priomap 1 1 2 2 3 3 0 0 1 2 3 0 0 0 0 0
tc qdisc show dev t0
tc class show dev t0
tc qdisc replace dev t0 handle 1: root prio bands 8 priomap 1 1 2 2 3 3 4 4 5 5 6 6 7 7 0 0
tc -j qdisc show dev t0
",
    );
    let want = "qdisc prio 1: root refcnt 2 bands 4 priomap 1 1 2 2 3 3 0 0 1 2 3 0 0 0 0 0
class prio 1:1 parent 1: 
class prio 1:2 parent 1: 
class prio 1:3 parent 1: 
class prio 1:4 parent 1: 
[{\"kind\":\"prio\",\"handle\":\"1:\",\"root\":true,\"refcnt\":2,\"options\":{\"bands\":8,\"priomap\":[1,1,2,2,3,3,4,4,5,5,6,6,7,7,0,0],\"multiqueue\":false}}]
";
    assert_eq!(o, want);
    let e = refused("tc-prio-bad", "tc qdisc add dev t0 root prio bands 2");
    assert_eq!(e.trim_end(), "line 3: RTNETLINK answers: Invalid argument");
}

/// tbf on the virtual clock, 1 Mbit/s with a 3000-byte bucket and a
/// 6000-byte queue, nine 1000-byte datagrams (1042 bytes at the qdisc):
/// the kernel, over a veth with the same lines, sent two at once, the
/// third about 1 ms later, then one every 8.33 ms, and refused what did
/// not fit with ENOBUFS (`IP_RECVERR`).
#[test]
fn tbf_shapes_sends_as_the_kernel_does() {
    let d = tmpdir("tc-tbf-shape");
    let cap = d.join("tbf.pcap");
    let mut s = format!(
        "link add eth0 type mem peer 10.0.0.2
addr add 10.0.0.1/24 dev eth0
neigh add 10.0.0.2 lladdr 02:00:00:00:00:02 dev eth0
tc qdisc add dev eth0 root tbf rate 1mbit burst 3000 limit 6000
capture dev eth0 file {}
socket s1 udp bind 10.0.0.1:5000
sockopt s1 ip_recverr 1
",
        cap.display()
    );
    for _ in 0..9 {
        s += "send s1 to 10.0.0.2:9 len 1000\n";
    }
    s += "sleep 200ms\ntc -s qdisc show dev eth0\n";
    let r = run_script(&d, &s, &["--no-stats"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let enobufs = r.stdout.matches("ENOBUFS").count();
    assert_eq!(enobufs, 2, "{}", r.stdout);
    assert!(
        r.stdout.contains(" Sent 7294 bytes 7 pkt (dropped 2, "),
        "{}",
        r.stdout
    );
    let t: Vec<u64> = pcap_frames(&cap).iter().map(|(ts, _)| *ts).collect();
    assert_eq!(t.len(), 7);
    let gaps: Vec<u64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    // Nanoseconds: the 3rd waits for 126 bytes (1.008 ms), then 1042
    // bytes take 8.336 ms each (8 us a byte at 1 Mbit/s).
    assert_eq!(
        gaps,
        [0, 1_008_000, 8_336_000, 8_336_000, 8_336_000, 8_336_000]
    );
}

/// A device of two queues: `mq` by default, a root of another kind shared;
/// the queues' qdiscs listed as the kernel's hash table holds them (all
/// of handle 0 in one bucket, the newest first).
#[test]
fn a_multi_queue_device_has_an_mq_root() {
    let d = tmpdir("tc-mq");
    let script = "link add m0 type null txqueues 2
tc qdisc show dev m0
tc qdisc add dev m0 root handle 1: mq
tc qdisc show dev m0
tc qdisc replace dev m0 root pfifo limit 10
tc qdisc show dev m0
tc qdisc del dev m0 root
tc qdisc show dev m0
";
    let r = run_script(&d, script, &["--no-stats"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pf = "bands 3 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1";
    let want = format!(
        "qdisc mq 0: root 
qdisc pfifo_fast 0: parent :2 {pf}
qdisc pfifo_fast 0: parent :1 {pf}
qdisc mq 1: root 
qdisc pfifo_fast 0: parent 1:2 {pf}
qdisc pfifo_fast 0: parent 1:1 {pf}
qdisc pfifo 8001: root refcnt 3 limit 10p
qdisc mq 0: root 
qdisc pfifo_fast 0: parent :2 {pf}
qdisc pfifo_fast 0: parent :1 {pf}
"
    );
    assert_eq!(r.stdout, want);
    let e = refused("tc-mq-one", "tc qdisc add dev t0 root mq");
    assert_eq!(
        e.trim_end(),
        "line 3: RTNETLINK answers: Operation not supported"
    );
}

/// An htb tree with qdiscs grafted on its leaves (changed in place, by
/// parent and by handle, replaced, deleted): the real tc's output on an
/// ifb of txqueuelen 32, byte for byte.
#[test]
fn qdiscs_on_classes_print_as_tc() {
    let d = tmpdir("tc-graft");
    let lines = "link add t0 type null txqueuelen 32\nlink set t0 up\ntc qdisc add dev t0 root handle 1: htb default 10
tc class add dev t0 parent 1: classid 1:1 htb rate 1mbit
tc class add dev t0 parent 1:1 classid 1:10 htb rate 500kbit
tc class add dev t0 parent 1:1 classid 1:20 htb rate 500kbit
tc qdisc add dev t0 parent 1:10 handle 10: pfifo limit 5
tc qdisc add dev t0 parent 1:20 handle 20: tbf rate 1mbit burst 10k latency 1ms
tc qdisc replace dev t0 parent 1:10 handle 11: bfifo limit 3000
tc qdisc change dev t0 parent 1:10 handle 11: bfifo limit 4000
tc qdisc change dev t0 handle 11: bfifo limit 5000
tc qdisc replace dev t0 parent 1:20 handle 20: tbf rate 2mbit burst 10k latency 1ms
tc qdisc show dev t0
tc -s qdisc show dev t0
tc -j qdisc show dev t0
tc class show dev t0
tc -d class show dev t0 classid 1:10
tc qdisc del dev t0 parent 1:10
tc class add dev t0 parent 1:20 classid 1:21 htb rate 100kbit
tc qdisc add dev t0 parent 1:21 handle 21: pfifo
tc qdisc show dev t0
tc class show dev t0
";
    let r = run_script(&d, lines, &["--no-stats"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let want = r#"qdisc htb 1: root refcnt 2 r2q 10 default 0x10 direct_packets_stat 0 direct_qlen 32
qdisc tbf 20: parent 1:20 rate 2Mbit burst 10Kb lat 1ms 
qdisc bfifo 11: parent 1:10 limit 5000b
qdisc htb 1: root refcnt 2 r2q 10 default 0x10 direct_packets_stat 0 direct_qlen 32
 Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) 
 backlog 0b 0p requeues 0
qdisc tbf 20: parent 1:20 rate 2Mbit burst 10Kb lat 1ms 
 Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) 
 backlog 0b 0p requeues 0
qdisc bfifo 11: parent 1:10 limit 5000b
 Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) 
 backlog 0b 0p requeues 0
[{"kind":"htb","handle":"1:","root":true,"refcnt":2,"options":{"r2q":10,"default":"0x10","direct_packets_stat":0,"direct_qlen":32}},{"kind":"tbf","handle":"20:","parent":"1:20","options":{"rate":250000,"burst":10240,"lat":1000}},{"kind":"bfifo","handle":"11:","parent":"1:10","options":{"limit":5000}}]
class htb 1:10 parent 1:1 leaf 11: prio 0 rate 500Kbit ceil 500Kbit burst 1600b cburst 1600b 
class htb 1:1 root rate 1Mbit ceil 1Mbit burst 1600b cburst 1600b 
class htb 1:20 parent 1:1 leaf 20: prio 0 rate 500Kbit ceil 500Kbit burst 1600b cburst 1600b 
class tbf 20:1 parent 20: 
class htb 1:10 parent 1:1 leaf 11: prio 0 quantum 6250 rate 500Kbit ceil 500Kbit linklayer ethernet burst 1600b/1 mpu 0b cburst 1600b/1 mpu 0b level 0 
qdisc htb 1: root refcnt 2 r2q 10 default 0x10 direct_packets_stat 0 direct_qlen 32
qdisc pfifo 21: parent 1:21 limit 32p
class htb 1:1 root rate 1Mbit ceil 1Mbit burst 1600b cburst 1600b 
class htb 1:10 parent 1:1 prio 0 rate 500Kbit ceil 500Kbit burst 1600b cburst 1600b 
class htb 1:20 parent 1:1 rate 500Kbit ceil 500Kbit burst 1600b cburst 1600b 
class htb 1:21 parent 1:20 leaf 21: prio 0 rate 100Kbit ceil 100Kbit burst 1600b cburst 1600b 
"#;
    assert_eq!(r.stdout, want);
}

/// u32 filters on an htb root: added (automatic preferences, keys
/// merged), deleted by node and by preference, shown in text and JSON
/// (tc repeats the `match` key): the real tc's output on an ifb, byte for
/// byte.
#[test]
fn u32_filters_print_as_tc() {
    let d = tmpdir("tc-u32");
    let lines = "link add t0 type null txqueuelen 32\nlink set t0 up\ntc qdisc add dev t0 root handle 1: htb default 20
tc class add dev t0 parent 1: classid 1:10 htb rate 1mbit
tc class add dev t0 parent 1: classid 1:20 htb rate 1mbit
tc filter add dev t0 parent 1: protocol ip prio 1 u32 match ip dst 10.0.0.2/32 flowid 1:10
tc filter add dev t0 parent 1: protocol ip prio 2 u32 match ip protocol 17 0xff match ip dport 9000 0xffff flowid 1:20
tc filter add dev t0 parent 1: protocol ip prio 1 u32 match ip src 10.1.0.0/16 match ip tos 0x10 0xff classid 1:20
tc filter add dev t0 parent 1: prio 4 protocol ip u32 match u16 0x1 0xffff at 22 match u8 5 0xf at 0 flowid 1:10
tc filter add dev t0 parent 1: protocol all prio 5 u32 match u32 0 0 flowid 1:20
tc filter add dev t0 parent 1: protocol ip u32 match ip dst 10.0.0.0/8 flowid 1:10
tc filter add dev t0 parent 1: protocol ip u32 match ip sport 53 0xffff match ip dport 80 0xffff flowid 1:10
tc filter del dev t0 parent 1: prio 1 handle 800::800 u32
tc filter show dev t0
tc -j filter show dev t0
tc filter show dev t0 parent 1: prio 2
tc filter del dev t0 parent 1: prio 2
tc filter show dev t0 prio 1
";
    let r = run_script(&d, lines, &["--no-stats"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let want = r#"filter parent 1: protocol ip pref 1 u32 chain 0 
filter parent 1: protocol ip pref 1 u32 chain 0 fh 800: ht divisor 1 
filter parent 1: protocol ip pref 1 u32 chain 0 fh 800::801 order 2049 key ht 800 bkt 0 *flowid 1:20 not_in_hw 
  match 0a010000/ffff0000 at 12
  match 00100000/00ff0000 at 0
filter parent 1: protocol ip pref 2 u32 chain 0 
filter parent 1: protocol ip pref 2 u32 chain 0 fh 801: ht divisor 1 
filter parent 1: protocol ip pref 2 u32 chain 0 fh 801::800 order 2048 key ht 801 bkt 0 *flowid 1:20 not_in_hw 
  match 00110000/00ff0000 at 8
  match 00002328/0000ffff at 20
filter parent 1: protocol ip pref 4 u32 chain 0 
filter parent 1: protocol ip pref 4 u32 chain 0 fh 802: ht divisor 1 
filter parent 1: protocol ip pref 4 u32 chain 0 fh 802::800 order 2048 key ht 802 bkt 0 *flowid 1:10 not_in_hw 
  match 00000001/0000ffff at 20
  match 05000000/0f000000 at 0
filter parent 1: protocol all pref 5 u32 chain 0 
filter parent 1: protocol all pref 5 u32 chain 0 fh 803: ht divisor 1 
filter parent 1: protocol all pref 5 u32 chain 0 fh 803::800 order 2048 key ht 803 bkt 0 *flowid 1:20 not_in_hw 
  match 00000000/00000000 at 0
filter parent 1: protocol ip pref 49151 u32 chain 0 
filter parent 1: protocol ip pref 49151 u32 chain 0 fh 805: ht divisor 1 
filter parent 1: protocol ip pref 49151 u32 chain 0 fh 805::800 order 2048 key ht 805 bkt 0 *flowid 1:10 not_in_hw 
  match 00350050/ffffffff at 20
filter parent 1: protocol ip pref 49152 u32 chain 0 
filter parent 1: protocol ip pref 49152 u32 chain 0 fh 804: ht divisor 1 
filter parent 1: protocol ip pref 49152 u32 chain 0 fh 804::800 order 2048 key ht 804 bkt 0 *flowid 1:10 not_in_hw 
  match 0a000000/ff000000 at 16
[{"parent":"1:","protocol":"ip","pref":1,"kind":"u32","chain":0},{"parent":"1:","protocol":"ip","pref":1,"kind":"u32","chain":0,"options":{"fh":"800:","ht_divisor":1}},{"parent":"1:","protocol":"ip","pref":1,"kind":"u32","chain":0,"options":{"fh":"800::801","order":2049,"key_ht":"800","bkt":"0","flowid":"1:20","not_in_hw":true,"match":{"value":"a010000","mask":"ffff0000","offmask":"","off":12},"match":{"value":"100000","mask":"ff0000","offmask":"","off":0}}},{"parent":"1:","protocol":"ip","pref":2,"kind":"u32","chain":0},{"parent":"1:","protocol":"ip","pref":2,"kind":"u32","chain":0,"options":{"fh":"801:","ht_divisor":1}},{"parent":"1:","protocol":"ip","pref":2,"kind":"u32","chain":0,"options":{"fh":"801::800","order":2048,"key_ht":"801","bkt":"0","flowid":"1:20","not_in_hw":true,"match":{"value":"110000","mask":"ff0000","offmask":"","off":8},"match":{"value":"2328","mask":"ffff","offmask":"","off":20}}},{"parent":"1:","protocol":"ip","pref":4,"kind":"u32","chain":0},{"parent":"1:","protocol":"ip","pref":4,"kind":"u32","chain":0,"options":{"fh":"802:","ht_divisor":1}},{"parent":"1:","protocol":"ip","pref":4,"kind":"u32","chain":0,"options":{"fh":"802::800","order":2048,"key_ht":"802","bkt":"0","flowid":"1:10","not_in_hw":true,"match":{"value":"1","mask":"ffff","offmask":"","off":20},"match":{"value":"5000000","mask":"f000000","offmask":"","off":0}}},{"parent":"1:","protocol":"all","pref":5,"kind":"u32","chain":0},{"parent":"1:","protocol":"all","pref":5,"kind":"u32","chain":0,"options":{"fh":"803:","ht_divisor":1}},{"parent":"1:","protocol":"all","pref":5,"kind":"u32","chain":0,"options":{"fh":"803::800","order":2048,"key_ht":"803","bkt":"0","flowid":"1:20","not_in_hw":true,"match":{"value":"0","mask":"0","offmask":"","off":0}}},{"parent":"1:","protocol":"ip","pref":49151,"kind":"u32","chain":0},{"parent":"1:","protocol":"ip","pref":49151,"kind":"u32","chain":0,"options":{"fh":"805:","ht_divisor":1}},{"parent":"1:","protocol":"ip","pref":49151,"kind":"u32","chain":0,"options":{"fh":"805::800","order":2048,"key_ht":"805","bkt":"0","flowid":"1:10","not_in_hw":true,"match":{"value":"350050","mask":"ffffffff","offmask":"","off":20}}},{"parent":"1:","protocol":"ip","pref":49152,"kind":"u32","chain":0},{"parent":"1:","protocol":"ip","pref":49152,"kind":"u32","chain":0,"options":{"fh":"804:","ht_divisor":1}},{"parent":"1:","protocol":"ip","pref":49152,"kind":"u32","chain":0,"options":{"fh":"804::800","order":2048,"key_ht":"804","bkt":"0","flowid":"1:10","not_in_hw":true,"match":{"value":"a000000","mask":"ff000000","offmask":"","off":16}}}]
filter protocol ip u32 chain 0 
filter protocol ip u32 chain 0 fh 801: ht divisor 1 
filter protocol ip u32 chain 0 fh 801::800 order 2048 key ht 801 bkt 0 *flowid 1:20 not_in_hw 
  match 00110000/00ff0000 at 8
  match 00002328/0000ffff at 20
filter parent 1: protocol ip u32 chain 0 
filter parent 1: protocol ip u32 chain 0 fh 800: ht divisor 1 
filter parent 1: protocol ip u32 chain 0 fh 800::801 order 2049 key ht 800 bkt 0 *flowid 1:20 not_in_hw 
  match 0a010000/ffff0000 at 12
  match 00100000/00ff0000 at 0
"#;
    assert_eq!(r.stdout, want);
}

/// Qdiscs grafted on `mq`'s classes, and the classes: the real tc's
/// output on a veth of two queues (`numtxqueues 2`), byte for byte; a
/// replace of the `mq` by a root of another kind with its handle is
/// refused as the kernel refuses it.
#[test]
fn mq_children_and_classes_print_as_tc() {
    let d = tmpdir("tc-mq-graft");
    let lines = "link add xa0 type mem txqueues 2
tc qdisc replace dev xa0 root handle 1: mq
tc qdisc replace dev xa0 parent 1:1 handle 10: pfifo
tc -s qdisc show dev xa0
tc class show dev xa0
tc -s class show dev xa0
";
    let r = run_script(&d, lines, &["--no-stats"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let z = " Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) \n backlog 0b 0p requeues 0";
    let pf = "bands 3 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1";
    let want = format!(
        "qdisc mq 1: root \n{z}
qdisc pfifo_fast 0: parent 1:2 {pf}\n{z}
qdisc pfifo 10: parent 1:1 limit 1000p\n{z}
class mq 1:1 root leaf 10: 
class mq 1:2 root 
class mq 1:1 root leaf 10: \n{z}
class mq 1:2 root \n{z}
"
    );
    assert_eq!(r.stdout, want);
    let e = refused(
        "tc-mq-same-handle",
        "link add xa0 type mem txqueues 2\ntc qdisc replace dev xa0 root handle 1: mq\ntc qdisc replace dev xa0 root handle 1: tbf rate 1mbit burst 3000 limit 3000",
    );
    assert!(
        e.contains("line 5: Error: Invalid qdisc name: must match existing qdisc."),
        "{e}"
    );
}

/// `tc -s qdisc show` of a root shared by two queues: one qdisc, its own
/// counters (it once locked the first queue twice and hung).
#[test]
fn stats_of_a_multi_queue_root_are_summed() {
    let d = tmpdir("tc-mq-stats");
    let lines = "link add m0 type null txqueues 2\nlink set m0 up\ntc qdisc replace dev m0 root pfifo limit 10\ntc -s qdisc show dev m0\ntc -s -j qdisc show dev m0\n";
    let r = run_script(&d, lines, &["--no-stats"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("qdisc pfifo 8001: root refcnt 3 limit 10p\n Sent 0 bytes 0 pkt"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("\"kind\":\"pfifo\""), "{}", r.stdout);
}

/// Filters on an htb class (`parent 1:1`): added, shown (the root's
/// without a parent, the class's by its id, text and JSON; u32 hash
/// tables numbered across the qdisc's blocks: the class's first is
/// 801:), deleted; the real tc's output on a veth, byte for byte, and
/// the kernel's refusals.
#[test]
fn filters_on_classes_print_as_tc() {
    let lines = "tc qdisc add dev t0 root handle 1: htb default 20\ntc class add dev t0 parent 1: classid 1:1 htb rate 1mbit\ntc class add dev t0 parent 1:1 classid 1:10 htb rate 500kbit\ntc class add dev t0 parent 1:1 classid 1:20 htb rate 500kbit\ntc filter add dev t0 parent 1: protocol ip prio 1 u32 match ip sport 5001 0xffff flowid 1:1\ntc filter add dev t0 parent 1:1 protocol ip prio 2 u32 match ip dport 9 0xffff flowid 1:10\ntc filter show dev t0\ntc filter show dev t0 parent 1:1\ntc -j filter show dev t0 parent 1:1\ntc filter show dev t0 parent 1:\ntc filter del dev t0 parent 1:1 prio 2\ntc filter show dev t0 parent 1:1\ntc filter show dev t0\n";
    let want = r#"filter parent 1: protocol ip pref 1 u32 chain 0 
filter parent 1: protocol ip pref 1 u32 chain 0 fh 800: ht divisor 1 
filter parent 1: protocol ip pref 1 u32 chain 0 fh 800::800 order 2048 key ht 800 bkt 0 *flowid 1:1 not_in_hw 
  match 13890000/ffff0000 at 20
filter protocol ip pref 2 u32 chain 0 
filter protocol ip pref 2 u32 chain 0 fh 801: ht divisor 1 
filter protocol ip pref 2 u32 chain 0 fh 801::800 order 2048 key ht 801 bkt 0 *flowid 1:10 not_in_hw 
  match 00000009/0000ffff at 20
[{"protocol":"ip","pref":2,"kind":"u32","chain":0},{"protocol":"ip","pref":2,"kind":"u32","chain":0,"options":{"fh":"801:","ht_divisor":1}},{"protocol":"ip","pref":2,"kind":"u32","chain":0,"options":{"fh":"801::800","order":2048,"key_ht":"801","bkt":"0","flowid":"1:10","not_in_hw":true,"match":{"value":"9","mask":"ffff","offmask":"","off":20}}}]
filter protocol ip pref 1 u32 chain 0 
filter protocol ip pref 1 u32 chain 0 fh 800: ht divisor 1 
filter protocol ip pref 1 u32 chain 0 fh 800::800 order 2048 key ht 800 bkt 0 *flowid 1:1 not_in_hw 
  match 13890000/ffff0000 at 20
filter parent 1: protocol ip pref 1 u32 chain 0 
filter parent 1: protocol ip pref 1 u32 chain 0 fh 800: ht divisor 1 
filter parent 1: protocol ip pref 1 u32 chain 0 fh 800::800 order 2048 key ht 800 bkt 0 *flowid 1:1 not_in_hw 
  match 13890000/ffff0000 at 20
"#;
    assert_eq!(out("tc-cls-filters", lines), want);
    let tree = "tc qdisc add dev t0 root handle 1: htb default 20\ntc class add dev t0 parent 1: classid 1:1 htb rate 1mbit\ntc class add dev t0 parent 1:1 classid 1:10 htb rate 500kbit\n";
    let u32 = "protocol ip prio 1 u32 match ip dport 9 0xffff flowid 1:10";
    for (parent, msg) in [
        ("1:99", "Error: Specified class doesn't exist."),
        ("3:", "Error: Parent Qdisc doesn't exists."),
    ] {
        let e = refused(
            "tc-cls-filter-bad",
            &format!("{tree}tc filter add dev t0 parent {parent} {u32}"),
        );
        assert!(
            e.contains(&format!(
                "line 6: {msg}\nWe have an error talking to the kernel"
            )),
            "{e}"
        );
    }
    let e = refused(
        "tc-cls-filter-in-use",
        &format!("{tree}tc filter add dev t0 parent 1:1 {u32}\ntc class del dev t0 classid 1:10"),
    );
    assert!(e.contains("line 7: Error: HTB class in use."), "{e}");
    let e = refused(
        "tc-cls-filter-pfifo",
        &format!("tc qdisc add dev t0 root handle 2: pfifo\ntc filter add dev t0 parent 2: {u32}"),
    );
    assert!(
        e.contains("line 4: Error: Qdisc not classful.\nWe have an error talking to the kernel"),
        "{e}"
    );
}

/// `estimator 1sec 8sec` on the virtual clock: seven datagrams leave
/// through a tbf at once (7294 bytes), and the sample a second later
/// moves the average by 1/8 of the rate: 7294 << 8 >> 3 >> 8 = 911
/// bytes/s (7288bit), 7 << 8 >> 3 >> 8 = 0 pps; the line as tc prints
/// it (before `backlog`), and in JSON between `requeues` and `backlog`.
/// A class's estimator prints the same way; bad times are refused as tc
/// refuses them.
#[test]
fn estimators_print_as_tc() {
    let d = tmpdir("tc-est");
    let mut s = "link add eth0 type mem peer 10.0.0.2
addr add 10.0.0.1/24 dev eth0
neigh add 10.0.0.2 lladdr 02:00:00:00:00:02 dev eth0
tc qdisc add dev eth0 root handle 2: estimator 1sec 8sec tbf rate 1mbit burst 3000 limit 6000
tc -s qdisc show dev eth0
socket s1 udp bind 10.0.0.1:5000
"
    .to_string();
    for _ in 0..9 {
        s += "send s1 to 10.0.0.2:9 len 1000\n";
    }
    s += "sleep 1s\ntc -s qdisc show dev eth0\ntc -s -j qdisc show dev eth0\n";
    s += "link add t1 type null\ntc qdisc add dev t1 root handle 1: htb\n";
    s += "tc class add dev t1 parent 1: classid 1:20 estimator 1sec 8sec htb rate 500kbit\n";
    s += "tc -s class show dev t1\n";
    let r = run_script(&d, &s, &["--no-stats"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let tbf = "qdisc tbf 2: root refcnt 2 rate 1Mbit burst 3000b lat 24ms \n";
    let zero = " Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) \n rate 0bit 0pps backlog 0b 0p requeues 0\n";
    assert!(
        r.stdout.starts_with(&format!("{tbf}{zero}")),
        "{}",
        r.stdout
    );
    let after = " rate 7288bit 0pps backlog 0b 0p requeues 0\n";
    assert!(r.stdout.contains(after), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("\"requeues\":0,\"rate\":911,\"pps\":0,\"backlog\":0"),
        "{}",
        r.stdout
    );
    let class = "class htb 1:20 root prio 0 rate 500Kbit ceil 500Kbit burst 1600b cburst 1600b \n";
    assert!(r.stdout.contains(&format!("{class}{zero}")), "{}", r.stdout);
    for (times, msg) in [
        ("1sec 1sec", "Error: estimator parameters are out of range."),
        (
            "16sec 64sec",
            "Error: estimator parameters are out of range.",
        ),
        (
            "x 1sec",
            "Error: argument \"invalid estimator interval\" is wrong: estimator",
        ),
        (
            "1sec pfifo",
            "Error: argument \"invalid estimator time constant\" is wrong: estimator",
        ),
    ] {
        let e = refused(
            "tc-est-bad",
            &format!("tc qdisc add dev t0 root estimator {times} pfifo"),
        );
        assert!(e.contains(&format!("line 3: {msg}")), "{e}");
    }
}
