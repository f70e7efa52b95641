//! `add @set` / `update @set` (the kernel's `nft_dynset`) held against this
//! machine's kernel: the same `nft` lines in a network namespace this test
//! creates and in an `ipxmit run` host, the same UDP sends (to three
//! destinations, then the first again), compared: the refusals' first
//! message line, the rule listing before the sends, and after them the
//! listing with the counters (`ip daddr @s counter` before and after the
//! `add` rule, a full set stopping its rule) and each set's elements, in
//! text and `-j` JSON (elements in any order, as the kernel lists them in
//! hash order; `expires` masked, the time left depends on when each side
//! lists).
//!
//! Needs root, `ip netns`, `nft` and `python3`; without them the test
//! prints `SKIPPED (...)` and passes.

mod common;

use common::{missing_tools, replay_as_kernel, run_script, sh, tmpdir, Ns};

const SETUP: &str = "ip addr add 10.9.0.1/24 dev veth0
ip link set veth0 up
ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:fe dev veth0 nud permanent
ip neigh add 10.9.0.3 lladdr 02:00:00:00:00:fe dev veth0 nud permanent
ip neigh add 10.9.0.4 lladdr 02:00:00:00:00:fe dev veth0 nud permanent
";

const RULES: &[&str] = &[
    "nft add table ip t",
    "nft add chain ip t out '{ type filter hook output priority 0; }'",
    "nft add set ip t s '{ type ipv4_addr; }'",
    "nft add set ip t tm '{ type ipv4_addr; timeout 1m; }'",
    "nft add set ip t two '{ type ipv4_addr . inet_service; size 2; flags dynamic; }'",
    "nft add set ip t port '{ type inet_service; }'",
    "nft add set ip t iv '{ type ipv4_addr; flags interval; }'",
    "nft add set ip t fixed '{ type ipv4_addr; size 4; }'",
    "nft add rule ip t out ip daddr @s counter",
    "nft add rule ip t out add @s '{ ip daddr }'",
    "nft add rule ip t out ip daddr @s counter",
    "nft add rule ip t out update @tm '{ ip daddr timeout 30s }' counter",
    "nft add rule ip t out add @two '{ ip daddr . udp dport }' counter",
    "nft add rule ip t out add @nosuch '{ ip daddr }'",
    "nft add rule ip t out add @port '{ ip daddr }'",
    "nft add rule ip t out add @port '{ udp dport }'",
    "nft add rule ip t out add @iv '{ ip daddr }'",
    "nft add rule ip t out add @fixed '{ ip daddr }'",
    "nft add rule ip t out add @s '{ ip daddr timeout 5s }'",
    "nft add rule ip t out add @s '{ ip daddr . ip saddr }'",
];

const DESTS: &[&str] = &["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.2"];

/// `expires 29s996ms` -> `expires X`; each set's `elements = { ... }`
/// (one or more lines) -> its elements sorted, one line.
fn normalized(listing: &str) -> String {
    let mut out = String::new();
    let mut elems: Option<String> = None;
    for line in listing.lines() {
        let mut l = line.to_string();
        if let Some(at) = l.find("elements = {") {
            out.push_str(&l[..at]);
            elems = Some(String::new());
            l = l[at + "elements = {".len()..].to_string();
        }
        let Some(e) = elems.as_mut() else {
            out.push_str(&l);
            out.push('\n');
            continue;
        };
        e.push_str(&l);
        e.push(' ');
        if l.trim_end().ends_with('}') {
            let body = e.trim().trim_end_matches('}');
            let mut parts: Vec<String> = body
                .split(',')
                .map(|p| {
                    let w: Vec<&str> = p.split_whitespace().collect();
                    let mut w: Vec<String> = w.iter().map(|s| s.to_string()).collect();
                    if let Some(i) = w.iter().position(|s| s == "expires") {
                        if i + 1 < w.len() {
                            w[i + 1] = "X".into();
                        }
                    }
                    w.join(" ")
                })
                .collect();
            parts.sort();
            out.push_str(&format!("elements = {{ {} }}\n", parts.join(", ")));
            elems = None;
        }
    }
    out
}

/// A `-j` listing with each set's `elem` sorted and `expires` dropped.
fn json_normalized(s: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(s.trim()).expect("nft -j output");
    for o in v["nftables"].as_array_mut().unwrap() {
        let Some(e) = o.pointer_mut("/set/elem").and_then(|e| e.as_array_mut()) else {
            continue;
        };
        for x in e.iter_mut() {
            if let Some(m) = x.pointer_mut("/elem").and_then(|m| m.as_object_mut()) {
                m.remove("expires");
            }
        }
        e.sort_by_key(|x| x.to_string());
    }
    v
}

fn kernel_sends(ns: &str) {
    let dests: Vec<String> = DESTS.iter().map(|d| format!("'{d}'")).collect();
    let py = format!(
        "import socket\ns=socket.socket(2,2)\nfor d in [{}]: s.sendto(b'x'*10,(d,9))",
        dests.join(",")
    );
    let (_, err, code) = sh(ns, &format!("python3 -c \"{py}\""));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn set_updates_from_the_packet_path_match_the_kernel() {
    if let Some(why) = missing_tools(&["nft", "python3"]) {
        eprintln!("SKIPPED ({why}): nft_dynset_kernel");
        return;
    }
    let ns = Ns::add(format!("ipxmit-dynset-{}", std::process::id()));
    let (_, err, code) = sh(
        &ns.0,
        "ip link set lo up; ip link add veth0 type veth peer name veth1; ip link set veth1 up",
    );
    assert_eq!(code, 0, "{err}");
    let mut script = format!("link add veth0 type mem\n{SETUP}");
    for l in SETUP.lines() {
        let (_, err, code) = sh(&ns.0, l);
        assert_eq!(code, 0, "{l}: {err}");
    }
    let refused = replay_as_kernel(&ns.0, &mut script, RULES, "nft_dynset_refusal");
    assert_eq!(refused, 7, "the kernel refused the bad lines");
    let run = |s: &str| {
        let dir = tmpdir("nft_dynset");
        let r = run_script(&dir, s, &["--no-stats"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let out: String = r
            .stdout
            .lines()
            .filter(|l| !l.starts_with("line "))
            .map(|l| format!("{l}\n"))
            .collect();
        out
    };
    let k = sh(&ns.0, "nft list ruleset").0;
    let i = run(&format!("{script}nft list ruleset\n"));
    assert_eq!(i, k, "listings before the sends differ");

    kernel_sends(&ns.0);
    script.push_str("socket a udp\n");
    for d in DESTS {
        script.push_str(&format!("send a to {d}:9 len 10\n"));
    }
    let k = sh(&ns.0, "nft list ruleset").0;
    let i = run(&format!("{script}nft list ruleset\n"));
    assert_eq!(
        normalized(&i),
        normalized(&k),
        "listings after the sends differ"
    );
    assert!(
        k.contains("ip daddr @s counter packets 1 bytes 38")
            && k.contains("ip daddr @s counter packets 4 bytes 152")
            && k.contains("add @two { ip daddr . udp dport } counter packets 3 bytes 114"),
        "the first lookup saw the repeat only, the second every send, the full set stopped its rule for 10.9.0.4 only:\n{k}"
    );
    for set in ["s", "tm", "two"] {
        let cmd = format!("nft list set ip t {set}");
        let k = sh(&ns.0, &cmd).0;
        let i = run(&format!("{script}{cmd}\n"));
        assert_eq!(normalized(&i), normalized(&k), "{cmd}");
        let cmd = format!("nft -j list set ip t {set}");
        let k = sh(&ns.0, &cmd).0;
        let i = run(&format!("{script}{cmd}\n"));
        assert_eq!(json_normalized(&i), json_normalized(&k), "{cmd}");
    }
    let k = sh(&ns.0, "nft list set ip t s").0;
    assert!(
        k.contains("10.9.0.2") && k.contains("10.9.0.3") && k.contains("10.9.0.4"),
        "{k}"
    );
}
