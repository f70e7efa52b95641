//! `ip` and `sysctl` lines in scripts, held against ip(8) and sysctl(8):
//! the same lines run in a network namespace of the test's own and through
//! `ipxmit run` print the same text and JSON, and a line either tool
//! refuses is refused with the same message. Tests that need a namespace
//! print a SKIPPED line without root.

mod common;

use std::process::Command;

use common::{run_script, tmpdir};
use ipxmit_drivers::netns::Netns;
use serde_json::Value;

/// Why a root-only test cannot run here (and says so).
fn skip(test: &str) -> bool {
    match ipxmit_drivers::netns::unavailable() {
        None => false,
        Some(why) => {
            eprintln!("SKIPPED (needs root and network namespaces): {test} [{why}]");
            true
        }
    }
}

/// Runs `words` in `ns` (through the shell's word rules of the test's
/// own split); its stdout, or its stderr when it fails.
fn in_ns(ns: &Netns, line: &str) -> Result<String, String> {
    let words = shell_words(line);
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .args(&words)
        .output()
        .expect("run ip netns exec");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if out.status.success() && out.stderr.is_empty() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr).trim_end().to_string())
    }
}

/// Blank-separated words, `"..."` keeping blanks (enough for these lines).
fn shell_words(line: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    v.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        v.push(cur);
    }
    v
}

/// The real host: `eth0` a veth (one queue, pfifo_fast, MAC
/// 02:00:00:00:00:01) whose peer `v1` is up, IPv6 off.
fn real_host(tag: &str) -> Netns {
    let ns = Netns::unique(tag).unwrap();
    for l in [
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1",
        "sysctl -qw net.ipv6.conf.default.disable_ipv6=1",
        "ip link add eth0 numtxqueues 1 type veth peer name v1",
        "ip link set eth0 address 02:00:00:00:00:01",
        "ip link set v1 up",
        "ip link set eth0 up",
        "tc qdisc replace dev eth0 root pfifo_fast",
    ] {
        in_ns(&ns, l).unwrap_or_else(|e| panic!("{l}: {e}"));
    }
    ns
}

/// The same host in ipxmit.
const HOST: &str = "link add eth0 type mem lladdr 02:00:00:00:00:01\n";

/// What ipxmit prints for the last of `lines` (each line's output is a
/// result: `--json` gives it as `out`), or its message when it refuses.
fn ipxmit_last(lines: &[&str]) -> Result<String, String> {
    // One directory per run: the tests run in parallel.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = tmpdir(&format!("ip-lines-{n}"));
    let script = format!("{HOST}{}\n", lines.join("\n"));
    let r = run_script(&d, &script, &["--json", "--no-stats"]);
    if r.code != 0 {
        let first = r.stderr.lines().next().unwrap_or_default();
        let msg = first.split_once(": ").map_or(first, |(_, m)| m);
        return Err(msg.to_string());
    }
    let last_line = (lines.len() + 1) as u64;
    let outs: Vec<String> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["line"] == last_line)
        .map(|v| v["out"].as_str().unwrap_or_default().to_string())
        .collect();
    Ok(outs.concat())
}

/// ip's text with the veth's peer (`eth0@v1`) and interface numbers taken
/// out; ip's JSON without `ifindex` and `link`.
fn normalize(s: &str) -> String {
    if s.starts_with('[') {
        let mut v: Value = serde_json::from_str(s).unwrap();
        for o in v.as_array_mut().unwrap() {
            let o = o.as_object_mut().unwrap();
            o.shift_remove("ifindex");
            o.shift_remove("link");
        }
        return v.to_string();
    }
    s.lines()
        .map(|l| {
            let l = l.replace("eth0@v1:", "eth0:");
            match l.split_once(": ") {
                Some((n, rest)) if n.bytes().all(|b| b.is_ascii_digit()) => rest.to_string(),
                _ => l,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The lines of `s` (the elements of a JSON array), sorted.
fn sorted(s: &str) -> String {
    let mut v: Vec<String> = match serde_json::from_str::<Value>(s) {
        Ok(Value::Array(a)) => a.iter().map(Value::to_string).collect(),
        _ => s.lines().map(String::from).collect(),
    };
    v.sort();
    v.join("\n")
}

/// Configuration lines both hosts take, then the queries compared.
const SETUP: &[&str] = &[
    "ip addr add 10.0.0.1/24 dev eth0",
    "ip address add 10.0.0.5/24 dev eth0",
    "ip a add 1.2.3 dev eth0",
    "ip addr add 192.168.7.1/16 dev eth0",
    "ip neigh add 10.0.0.20 lladdr 02:00:00:00:00:20 dev eth0 nud stale",
    "ip neigh replace 10.0.0.21 lladdr 02:00:00:00:00:21 dev eth0 nud permanent",
    "ip neigh add 10.0.0.22 lladdr 02:00:00:00:00:22 dev eth0 nud noarp",
    "ip link set dev eth0 mtu 1400",
    "ip addr del 192.168.7.1/16 dev eth0",
];

const QUERIES: &[&str] = &[
    "ip addr show dev eth0",
    "ip -j addr show dev eth0",
    "ip -4 addr show eth0",
    "ip -j -4 addr show dev eth0",
    "ip -s addr show dev eth0",
    "ip link show eth0",
    "ip -j link show dev eth0",
    "ip neigh show dev eth0",
    "ip -j neigh show dev eth0",
    "ip neigh show dev eth0 nud noarp",
    "ip neigh show 10.0.0.20 dev eth0",
];

/// Each query prints, after the same configuration, what ip prints
/// (interface numbers and the veth's peer aside; `-s` counters zeroed:
/// the veth has sent frames of its own).
#[test]
fn queries_print_what_ip_prints() {
    let test = "queries_print_what_ip_prints";
    if skip(test) {
        return;
    }
    let ns = real_host("iplines");
    for l in SETUP {
        in_ns(&ns, l).unwrap_or_else(|e| panic!("{l}: {e}"));
    }
    for q in QUERIES {
        let real = in_ns(&ns, q).unwrap_or_else(|e| panic!("{q}: {e}"));
        let mut lines: Vec<&str> = SETUP.to_vec();
        lines.push(q);
        let ours = ipxmit_last(&lines).unwrap_or_else(|e| panic!("{q}: {e}"));
        let (mut real, mut ours) = (normalize(&real), normalize(&ours));
        if q.contains("neigh") {
            // The kernel lists neighbours in the order of its hash table,
            // keyed at random per boot: compare them as sets.
            (real, ours) = (sorted(&real), sorted(&ours));
        }
        if q.contains("-s") {
            let cut = |s: &str| s.lines().take(8).collect::<Vec<_>>().join("\n");
            (real, ours) = (cut(&real), cut(&ours));
        }
        assert_eq!(ours, real, "{q}");
    }
}

/// Lines ip refuses: the same message (ipxmit names the line).
const WRONG: &[&str] = &[
    "ip foo",
    "ip addr foo",
    "ip addr add 10.0.0.300/24 dev eth0",
    "ip addr add 10.0.0.5/24",
    "ip addr add 10.0.0.5/24 dev eth0 foo",
    "ip addr del 10.0.0.9/24 dev eth0",
    "ip addr add 10.0.0.1/24 dev eth9",
    "ip addr show dev eth9",
    "ip link set eth0 mtu x",
    "ip link set eth0 mtu 67",
    "ip link set eth0 mtu 70000",
    "ip link set eth0 mtu 1500 mtu 1400",
    "ip link set eth0 foo",
    "ip link set eth9 up",
    "ip link show eth9",
    "ip link foo",
    "ip neigh add 10.0.0.9 lladdr 02:00 dev eth0",
    "ip neigh add 10.0.0.9 lladdr zz:00:00:00:00:00 dev eth0",
    "ip neigh add 10.0.0.9 dev eth0",
    "ip neigh add 10.0.0.9 lladdr 02:00:00:00:00:09",
    "ip neigh add 10.0.0.9 lladdr 02:00:00:00:00:09 dev eth0 nud foo",
    "ip neigh add 10.0.0.9 lladdr 02:00:00:00:00:09 dev eth0 foo",
    "ip neigh add 300.0.0.1 lladdr 02:00:00:00:00:09 dev eth0",
    "ip neigh del 10.0.0.77 dev eth0",
    "ip neigh show dev eth9",
    "ip -x addr show",
];

#[test]
fn refused_lines_say_what_ip_says() {
    let test = "refused_lines_say_what_ip_says";
    if skip(test) {
        return;
    }
    let ns = real_host("ipwrong");
    in_ns(&ns, "ip addr add 10.0.0.1/24 dev eth0").unwrap();
    for l in WRONG {
        let real = in_ns(&ns, l).expect_err(l);
        let ours = ipxmit_last(&["ip addr add 10.0.0.1/24 dev eth0", l]).expect_err(l);
        assert_eq!(ours, real, "{l}");
    }
    // A neighbour that exists: `add` is refused, `replace` is not.
    let add = "ip neigh add 10.0.0.2 lladdr 02:00:00:00:00:09 dev eth0";
    in_ns(&ns, add).unwrap();
    let real = in_ns(&ns, add).expect_err(add);
    assert_eq!(ipxmit_last(&[add, add]).expect_err(add), real);
}

/// sysctl lines: what sysctl prints for reads and writes, and its
/// message for a value the kernel refuses or a key it does not have.
const SYSCTL: &[&str] = &[
    "sysctl net.ipv4.ip_default_ttl",
    "sysctl -w net.ipv4.ip_default_ttl=65",
    "sysctl -w net.ipv4.ip_default_ttl=0x10",
    "sysctl -w net.ipv4.ip_default_ttl=0",
    "sysctl -w net.ipv4.ip_default_ttl=256",
    "sysctl -w net.ipv4.ip_default_ttl=abc",
    "sysctl -w net.ipv4.ip_default_ttl=+13",
    "sysctl -w net.ipv4.foo=1",
    "sysctl net.ipv4.foo",
    "sysctl -w net.ipv4.ip_no_pmtu_disc=4",
    "sysctl -w net.ipv4.ip_no_pmtu_disc=-1",
    "sysctl -w net.ipv4.route.min_pmtu=67",
    "sysctl -w net.ipv4.route.min_pmtu=68",
    "sysctl -w net.ipv4.route.min_pmtu=70000",
    "sysctl -w net.ipv4.route.mtu_expires=5",
    "sysctl -w net.ipv4.route.mtu_expires=9999999999",
    "sysctl net.ipv4.route.mtu_expires",
    "sysctl -w net.ipv4.ip_default_ttl=10 net.ipv4.ip_no_pmtu_disc=1",
    "sysctl -n net.ipv4.ip_no_pmtu_disc",
    "sysctl net/ipv4/ip_default_ttl",
    "sysctl net.ipv4.ip_default_ttl=5",
    "sysctl -q -w net.ipv4.ip_default_ttl=9",
    "sysctl -w net.ipv4.ip_default_ttl",
];

/// Each sysctl line, after the ones before it, prints what sysctl prints
/// in a fresh namespace (text or message).
#[test]
fn sysctl_lines_print_what_sysctl_prints() {
    let test = "sysctl_lines_print_what_sysctl_prints";
    if skip(test) {
        return;
    }
    let ns = Netns::unique("sysctl").unwrap();
    let mut done: Vec<&str> = Vec::new();
    for l in SYSCTL {
        let real = in_ns(&ns, l);
        let mut lines = done.clone();
        lines.push(l);
        let ours = ipxmit_last(&lines);
        assert_eq!(ours, real, "{l}");
        if real.is_ok() {
            done.push(l);
        }
    }
}

/// Without root: the JSON result of a query (`line`, `op`, `out`), a
/// refused sysctl line's message and exit status.
#[test]
fn query_results_in_json() {
    let d = tmpdir("ip-lines-json");
    let script = format!(
        "{HOST}ip addr add 10.0.0.1/24 dev eth0\nip -j addr show\nsysctl net.ipv4.ip_default_ttl\n"
    );
    let r = run_script(&d, &script, &["--json", "--no-stats"]);
    assert_eq!(r.code, 0, "{r:?}");
    let v: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(
        (v[0]["line"].as_u64(), v[0]["op"].as_str()),
        (Some(3), Some("ip"))
    );
    let shown: Value = serde_json::from_str(v[0]["out"].as_str().unwrap()).unwrap();
    let eth0 = shown
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["ifname"] == "eth0")
        .unwrap();
    assert_eq!(eth0["addr_info"][0]["local"], "10.0.0.1");
    assert_eq!(v[1]["op"], "sysctl");
    assert_eq!(v[1]["out"], "net.ipv4.ip_default_ttl = 64\n");
    let r = run_script(&d, "sysctl -w net.ipv4.ip_default_ttl=0\n", &[]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr.lines().next().unwrap(),
        "line 1: sysctl: setting key \"net.ipv4.ip_default_ttl\": Invalid argument"
    );
}
