//! Snapshots of the statistics `ipxmit run` prints: `ip -s link`, `tc -s
//! qdisc`, the peer and `nstat`, in text and JSON. Scripts bind explicit ports
//! and run on the virtual clock, so the output is the same on every run.

mod common;

use common::{run_script, tmpdir};

/// Two links (one with two queues and a peer, one null with a pfifo),
/// fragments, an unresolved neighbour that fails, a failed send.
const SCRIPT: &str = "link add eth0 type mem peer 10.0.0.2 txqueues 2
link add dummy0 type null mtu 9000
addr add 10.0.0.1/24 dev eth0
addr add 172.16.0.1/16 dev dummy0
neigh add 172.16.0.2 lladdr 02:00:00:00:00:aa dev dummy0
qdisc replace dev dummy0 root pfifo limit 10
socket s1 udp bind 10.0.0.1:5000
socket s2 udp bind 172.16.0.1:6000
send s1 to 10.0.0.2:9000 len 8000
send s1 to 10.0.0.2:9000 len 1472
sockopt s1 ip_mtu_discover do
send s1 to 10.0.0.2:9000 len 1473
send s2 to 172.16.0.2:53 len 20000
send s2 to 172.16.0.9:53 len 100
sleep 5s
";

#[test]
fn text_statistics() {
    let d = tmpdir("stats-text");
    let r = run_script(&d, SCRIPT, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    insta::assert_snapshot!("text_statistics", r.stdout);
}

#[test]
fn text_statistics_all_counters() {
    let d = tmpdir("stats-all");
    let r = run_script(&d, SCRIPT, &["--all"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let nstat = &r.stdout[r.stdout.find("#kernel").expect("nstat section")..];
    insta::assert_snapshot!("nstat_all", nstat);
}

#[test]
fn json_statistics() {
    let d = tmpdir("stats-json");
    let r = run_script(&d, SCRIPT, &["--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let last = r.stdout.lines().last().expect("statistics line");
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    insta::assert_snapshot!("json_statistics", serde_json::to_string_pretty(&v).unwrap());
}
