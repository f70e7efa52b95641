//! nftables held against this machine's kernel (issue 16): the same `nft`
//! lines applied to a network namespace this test creates (`nft` 1.0.6 run
//! in it) and to an `ipxmit run` host, then the same UDP sends, compared:
//! `nft list ruleset` (and `-a`) text, the errno of each send (a drop at
//! output is `EPERM`), and the rule counters listed after the sends.
//!
//! Kernel side: namespace `ipxmit-nft-PID` with `veth0` 10.9.0.1/24 and
//! `veth2` 10.8.0.1/24 (their peers up beside them, 10.9.0.2 a permanent
//! neighbour on both: every send that passes the hooks succeeds), and
//! `fwmark 0x1` routed to 10.9.0.0/24 through `veth2`, so a route chain's
//! `meta mark set 0x1` reroutes (postrouting counters by `oifname` show
//! which link it left by). ipxmit: `mem` links, the same `ip` lines.
//! ipxmit side: `link add veth0 type mem peer 10.9.0.2`, the same address.
//! Without root (or `ip netns`) the test prints `SKIPPED (needs root and
//! network namespaces): NAME` and passes.

mod common;

use common::{replay_as_kernel, run_script, sh, tmpdir, Ns};

/// The ruleset: an output chain with counters, a named interval set, a
/// jump to a regular chain, a drop, a postrouting chain and a route chain.
const RULES: &[&str] = &[
    "nft add table ip t",
    "nft add chain ip t out '{ type filter hook output priority 0; policy accept; }'",
    "nft add chain ip t post '{ type filter hook postrouting priority mangle + 3; }'",
    "nft add chain ip t rtc '{ type route hook output priority -150; }'",
    "nft add chain ip t sub",
    "nft add set ip t ports '{ type inet_service; flags interval; }'",
    "nft add element ip t ports '{ 7000-7999, 53 }'",
    "nft add set ip t pairs '{ type ipv4_addr . inet_service; }'",
    "nft add element ip t pairs '{ 10.9.0.2 . 9001 }'",
    "nft add rule ip t out udp dport @ports counter jump sub",
    "nft add rule ip t out ip daddr . udp dport @pairs counter drop",
    "nft add rule ip t out ip daddr 10.9.0.0/24 udp dport != { 9, 10, 7000-7999 } meta length 30-40 counter",
    "nft insert rule ip t out ip protocol udp counter",
    "nft add rule ip t sub udp dport 7500-7599 counter drop",
    "nft add rule ip t sub counter return",
    "nft add rule ip t post oifname \"veth0\" ip dscp cs0 ip ttl 64 counter",
    "nft add rule ip t rtc meta mark 0x2a counter drop",
    "nft add rule ip t rtc udp dport 7777 meta mark set 0x1 counter",
    "nft add rule ip t post oifname \"veth2\" counter",
    "nft add rule ip t post oif \"veth0\" counter",
    "nft add rule ip t out tcp dport { 22, 9 } tcp sequence 1 counter",
    "nft add rule ip t out iifname != \"veth0\" counter",
    "nft add rule ip t out meta iifname \"veth0\" counter",
    "nft add rule ip t out meta mark and 0x03 == 0x02 counter",
    "nft add rule ip t out meta mark or 0x01 == 0x2b counter",
    "nft add rule ip t out meta mark xor 0x2a != 0 counter",
    "nft add rule ip t out ip daddr '& 0.0.0.255 < 0.0.0.3' counter",
    "nft add rule ip t out ip daddr '&' 0xffffff00 == 10.9.0.0 counter",
    "nft add rule ip t out meta mark 0x00000020/27 counter",
    "nft add set ip t z '{ type time; }'",
    "nft add set ip t any '{ type ipv4_addr; }'",
    "nft add element ip t any '{ 10.9.0.7, * }'",
    "nft add rule ip t out ip daddr @any counter",
    "nft add rule ip t post oifname '{ \"veth2\", \"lo*\" }' counter",
    "nft add rule ip t post oifname != '{ \"veth2\", \"x\" }' counter",
    "nft add rule ip t out ip saddr . udp dport '{ 10.9.0.0-10.9.0.5 . 7000-7600, 10.9.0.1 . 9 }' counter",
    "nft add rule ip t out ip daddr . udp dport vmap '{ 10.9.0.2-10.9.0.3 . 9002-9003 : drop }'",
    "nft add rule ip t nochain accept",
    "nft add rule ip t out jump nochain",
    "nft add rule ip t out ip dscp 64",
];

/// The sends after the rules: (destination port, payload length, mark).
const SENDS: &[(u16, usize, u32)] = &[
    (9, 10, 0),
    (7000, 10, 0),
    (7550, 10, 0),
    (9001, 10, 0),
    (9002, 5, 0),
    (9003, 100, 0),
    (9, 10, 42),
    (7777, 10, 0),
    (7777, 1000, 0),
];

/// Both sides after their links: a second link `veth2` and a policy rule
/// that routes mark 1 to 10.9.0.0/24 through it (the route chain's
/// reroute).
const ROUTES: &str = "ip addr add 10.9.0.1/24 dev veth0
ip link set veth0 up
ip addr add 10.8.0.1/24 dev veth2
ip link set veth2 up
ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:fe dev veth0 nud permanent
ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:fe dev veth2 nud permanent
ip rule add fwmark 0x1 table 100
ip route add 10.9.0.0/24 dev veth2 table 100
";

/// A send in the namespace: "ret N" or the errno's name.
fn kernel_send(ns: &str, port: u16, len: usize, mark: u32) -> String {
    let py = format!(
        "import socket,errno\ns=socket.socket(2,2)\ns.setsockopt(1,36,{mark})\n\
         try:\n print('ret',s.sendto(b'x'*{len},('10.9.0.2',{port})))\n\
         except OSError as e:\n print(errno.errorcode[e.errno])"
    );
    sh(ns, &format!("python3 -c \"{py}\"")).0.trim().to_string()
}

#[test]
fn nft_rules_listing_drops_and_counters_match_the_kernel() {
    if let Some(why) = ipxmit_drivers::netns::unavailable() {
        eprintln!("SKIPPED (needs root and network namespaces): nft_kernel [{why}]");
        return;
    }
    let ns = Ns::add(format!("ipxmit-nft-{}", std::process::id()));
    sh(
        &ns.0,
        "ip link set lo up; ip link add veth0 type veth peer name veth1; \
         ip link add veth2 type veth peer name veth3; ip link set veth1 up; ip link set veth3 up",
    );
    for l in ROUTES.lines() {
        let (_, err, code) = sh(&ns.0, l);
        assert_eq!(code, 0, "{l}: {err}");
    }
    let mut script = format!("link add veth0 type mem\nlink add veth2 type mem\n{ROUTES}");
    // A line nft refuses, ipxmit must refuse with nft's first message line.
    replay_as_kernel(&ns.0, &mut script, RULES, "nft_kernel_refusal");
    let listing = |s: &str| {
        let dir = tmpdir("nft_kernel");
        let r = run_script(&dir, s, &["--no-stats"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
    };
    let k = sh(&ns.0, "nft list ruleset; nft -a list ruleset").0;
    let i = listing(&format!("{script}nft list ruleset\nnft -a list ruleset\n"));
    assert_eq!(i, k, "listings differ");
    // The sends, then the counters.
    script.push_str("socket s udp\n");
    for (n, &(port, len, mark)) in SENDS.iter().enumerate() {
        let want = kernel_send(&ns.0, port, len, mark);
        let mut s = script.clone();
        s.push_str(&format!(
            "sockopt s so_mark {mark}\nsend s to 10.9.0.2:{port} len {len}\n"
        ));
        let out = listing(&s);
        let got = out.lines().last().unwrap_or("").to_string();
        let ok = match want.strip_prefix("ret ") {
            Some(r) => got.ends_with(&format!("= {r}")),
            None => got.contains(&format!("-1 {want}")),
        };
        assert!(ok, "send {n} to port {port}: kernel {want}, ipxmit {got}");
        script = s;
    }
    let k = sh(&ns.0, "nft list ruleset").0;
    let i = listing(&format!("{script}nft list ruleset\n"));
    let i: String = i
        .lines()
        .filter(|l| !l.starts_with("line "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(i, k, "counters differ");
    assert!(
        k.contains("oifname \"veth2\" counter packets 2 bytes 1066"),
        "the route chain's mark rerouted both 7777 sends through veth2:\n{k}"
    );
}
