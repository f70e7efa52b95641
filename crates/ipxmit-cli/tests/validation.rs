//! Issue 17, items 3, 7 and 8 through the real binary: `send -t` in
//! seconds, one validation per value shared by `send` and scripts, ip(8)'s
//! refusals, and messages that name the exact problem with the input quoted
//! short and escaped.

mod common;

use std::time::{Duration, Instant};

use common::{ipxmit, json_lines, run_script, tmpdir};
use serde_json::Value;

const HOST: &str = "link add eth0 type mem peer 10.0.0.2\naddr add 10.0.0.1/24 dev eth0\n";

/// The first line of stderr of a failed `ipxmit ARGS`, asserting exit 2.
fn refused(args: &[&str]) -> String {
    let d = tmpdir(&format!("refused-{}", args.join("_").replace('/', "_")));
    let r = ipxmit(&d, args);
    assert_eq!(r.code, 2, "{args:?}: {r:?}");
    r.stderr.lines().next().unwrap_or_default().to_string()
}

/// The first line of stderr of a script that stops (exit 2).
fn script_refused(name: &str, script: &str) -> String {
    let d = tmpdir(name);
    let r = run_script(&d, script, &["--no-stats"]);
    assert_eq!(r.code, 2, "{script:?}: {r:?}");
    r.stderr.lines().next().unwrap_or_default().to_string()
}

/// Item 3: `-t 1` runs for a second (iperf3's rule), not a microsecond;
/// tc units still work. Scripts' `sleep 5` stays 5 µs of virtual time.
#[test]
fn send_t_is_seconds() {
    let d = tmpdir("t-seconds");
    let start = Instant::now();
    let r = ipxmit(&d, &["send", "-t", "1", "-l", "18", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(start.elapsed() >= Duration::from_millis(900), "-t 1 is 1 s");
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert!(v["elapsed_s"].as_f64().unwrap() >= 0.9, "{v}");
    let r = ipxmit(&d, &["send", "-t", "300ms", "-l", "18", "--json"]);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let s = v["elapsed_s"].as_f64().unwrap();
    assert!((0.25..1.0).contains(&s), "-t 300ms: {s}");
    assert!(refused(&["send", "-t", "5parsecs"]).contains("--time"));

    let r = run_script(&d, &format!("{HOST}sleep 5\n"), &["--json"]);
    assert_eq!(r.code, 0, "{r:?}");
}

/// Item 7: `send`'s numbers refused as scripts refuse them, with the range.
#[test]
fn send_options_are_checked_with_their_range() {
    for (args, want) in [
        (&["send", "--txqueues", "0"][..], "out of range 1..=4096"),
        (&["send", "--txqueues", "4097"], "out of range 1..=4096"),
        (&["send", "--sockets", "0"], "out of range 1..=65536"),
        (&["send", "--threads", "0"], "out of range 1..=256"),
        (&["send", "--ttl", "0"], "out of range 1..=255"),
        (&["send", "--ttl", "256"], "out of range 1..=255"),
    ] {
        let m = refused(args);
        assert!(m.contains(want), "{args:?}: {m}");
    }
    let s = script_refused("txq-0", "link add eth0 type mem txqueues 0\n");
    assert!(s.contains("out of range 1..=4096"), "{s}");
    let s = script_refused("txq-4097", "link add eth0 type mem txqueues 4097\n");
    assert!(s.contains("out of range 1..=4096"), "{s}");
    // 65 queues, as the kernel allows (veth numtxqueues 65).
    let d = tmpdir("txq-65");
    let r = ipxmit(&d, &["send", "--txqueues", "65", "-n", "100", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
}

/// Item 7: what ip(8) refuses, with ip's words (checked against iproute2
/// 6.1 on a veth in a namespace).
#[test]
fn ip_refusals() {
    let s = script_refused(
        "dup-addr",
        &format!("{HOST}addr add 10.0.0.1/24 dev eth0\n"),
    );
    assert_eq!(s, "line 3: Error: ipv4: Address already assigned.");
    let s = script_refused(
        "offlink-gw",
        &format!("{HOST}route add default via 10.9.0.1 dev eth0\n"),
    );
    assert_eq!(s, "line 3: Error: Nexthop has invalid gateway.");
    // The host's own address as a gateway is accepted, as the kernel
    // accepts it (6.18: `ip route add 10.52.0.0/16 via 10.9.0.1`, exit 0).
    let d = tmpdir("own-gw");
    let r = run_script(
        &d,
        &format!("{HOST}route add default via 10.0.0.1 dev eth0\n"),
        &["--no-stats"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    // ip accepts a broadcast or zero lladdr (iproute2 6.1: exit 0, the
    // entry PERMANENT), and so does ipxmit; an on-link gateway is fine.
    let d = tmpdir("ip-accepts");
    let script = format!(
        "{HOST}neigh add 10.0.0.5 lladdr ff:ff:ff:ff:ff:ff dev eth0\n\
         neigh add 10.0.0.6 lladdr 00:00:00:00:00:00 dev eth0\n\
         route add 10.9.0.0/16 via 10.0.0.2 dev eth0\n"
    );
    let r = run_script(&d, &script, &["--no-stats"]);
    assert_eq!(r.code, 0, "{r:?}");
}

/// Item 8: `send`'s messages name the problem and the range.
#[test]
fn send_messages_name_the_problem() {
    let m = refused(&["send", "-c", "10.0.0.2:99999"]);
    assert!(m.contains("port \"99999\" out of range 0..=65535"), "{m}");
    let m = refused(&["send", "-c", "10.0.0:9"]);
    assert!(m.contains("is not ADDR[:PORT]"), "{m}");
    let d = tmpdir("neg-size");
    let r = ipxmit(&d, &["send", "-l", "-1"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("invalid payload size \"-1\": out of range 0..=65535"),
        "{r:?}"
    );
    let r = ipxmit(&d, &["send", "--dev", "packet:nosuch0", "-n", "1"]);
    assert_ne!(r.code, 0);
    assert_eq!(r.stderr.matches("nosuch0").count(), 1, "{r:?}");
}

/// Item 8: a script `send` takes any length the kernel's `sendmsg` takes and
/// answers `EMSGSIZE` as a result line above 65,507 bytes of UDP payload.
#[test]
fn long_sends_are_answered_emsgsize() {
    let d = tmpdir("long-send");
    let script = format!(
        "{HOST}socket s udp\nsend s to 10.0.0.2:9 len 65507\nsend s to 10.0.0.2:9 len 65508\n\
         send s to 10.0.0.2:9 len 65536\nsend s to 10.0.0.2:9 len 1000000\n"
    );
    let r = run_script(&d, &script, &["--json", "--no-stats"]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = json_lines(&r.stdout);
    assert_eq!(v[0]["ret"], 65507);
    for e in &v[1..4] {
        assert_eq!(e["errno"], "EMSGSIZE", "{e}");
    }
    // Item 8: the message names the limit, not the device's MTU.
    let t = run_script(&d, &script, &["--no-stats"]).stdout;
    let lines: Vec<&str> = t.lines().collect();
    for l in &lines[1..4] {
        assert!(l.contains("at most 65507 bytes of payload"), "{l}");
        assert!(!l.contains("mtu 1500"), "{l}");
    }
}

/// Item 8: script messages: a missing `root`, the qdisc kinds listed, input
/// quoted short and escaped.
#[test]
fn script_messages_quote_and_list() {
    let s = script_refused(
        "no-root",
        "link add eth0 type mem\nqdisc replace dev eth0 pfifo\n",
    );
    assert!(s.contains("missing \"root\""), "{s}");
    assert!(s.ends_with("before \"pfifo\""), "{s}");
    let s = script_refused(
        "kinds",
        "link add eth0 type mem\nqdisc replace dev eth0 root frob\n",
    );
    assert!(
        s.contains("(known: pfifo_fast, pfifo,") && s.contains("htb"),
        "{s}"
    );
    let s = script_refused("ctl", "link add eth0 type mem\nfoo\x01\x1b[31m\n");
    assert!(s.contains(r#""foo\u{1}\u{1b}[31m""#), "{s}");
    assert!(!s.contains('\x1b'), "{s:?}");
    let big = format!("link add eth0 type mem mtu {}\n", "9".repeat(1 << 20));
    let s = script_refused("big-token", &big);
    assert!(s.len() < 200 && s.contains("(1048576 characters)"), "{s}");
}

/// Item 17: the summary's units scale (no "16122.0k", no "27601.81 MB"),
/// a count of one is singular, and the main job says where it captures.
#[test]
fn summary_units_and_the_main_jobs_capture() {
    let d = tmpdir("units");
    let r = ipxmit(&d, &["send", "-n", "1", "-l", "100"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("sent:   1 datagram, 2 frames, 100 B payload in "),
        "{}",
        r.stdout
    );
    let r = ipxmit(&d, &["send", "-n", "2000", "-l", "1000", "--dev", "null"]);
    let sent = r.stdout.lines().find(|l| l.starts_with("sent:")).unwrap();
    assert!(
        sent.contains("2000 datagrams, 2000 frames, 2.00 MB payload"),
        "{sent}"
    );
    let rate = sent.rsplit(", ").next().unwrap();
    let number: f64 = rate.split(' ').next().unwrap().parse().unwrap();
    assert!(number < 1000.0 && rate.ends_with(" datagrams/s"), "{sent}");
    let r = ipxmit(&d, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr
            .starts_with("ipxmit: no command: running `ipxmit send --pcap ipxmit.pcap`"),
        "{}",
        r.stderr
    );
}
