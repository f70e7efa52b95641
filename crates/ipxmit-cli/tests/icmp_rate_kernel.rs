//! The rate limits on the ICMP errors a host sends, held against this
//! machine's kernel: the same `ip` and `sysctl` lines in a network
//! namespace this test creates and in an `ipxmit run` host, then a burst
//! of UDP datagrams from a peer (10.9.0.2, and more peers) to a port
//! nobody holds, injected on the link (AF_PACKET on the veth's far end;
//! `inject` in ipxmit, all at one instant of the virtual clock). Compared:
//! `UdpNoPorts`, `IcmpOutDestUnreachs`, `IcmpOutRateLimitHost` and
//! `IcmpOutRateLimitGlobal` (`nstat -saz -j` in the fresh namespace; the
//! JSON statistics of `ipxmit run`).
//!
//! The per-destination limit is deterministic (six at once, then one a
//! second) and compared exactly. The host-wide one takes 0-2 credits per
//! message at random (`icmp_global_consume()`), so with it in play both
//! sides are held to what its burst of 50 allows: between 25 and 110
//! errors, the rest counted as refused.
//!
//! Needs root, `ip netns`, `nstat` and python3; without them the test
//! prints `SKIPPED (...)` and passes.

mod common;

use common::{json_lines, run_script, sh, tmpdir, Ns};
use serde_json::Value;

const SETUP: &str = "ip link set veth0 up
ip addr add 10.9.0.1/24 dev veth0
";

/// The counters compared, in this order.
const MIBS: [&str; 4] = [
    "UdpNoPorts",
    "IcmpOutDestUnreachs",
    "IcmpOutRateLimitHost",
    "IcmpOutRateLimitGlobal",
];

/// A UDP datagram from `src`:7 to 10.9.0.1:9999 in an Ethernet frame to
/// veth0's address (02:00:00:00:00:01, as both sides have it) from the
/// peer's (02:00:00:00:00:fe), as hex.
fn frame(src: [u8; 4]) -> String {
    let mut ip = vec![0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&[10, 9, 0, 1]);
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&[0, 7, 0x27, 0x0f, 0, 12, 0, 0]);
    ip.extend_from_slice(b"ping");
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0xfe, 8, 0];
    f.extend_from_slice(&ip);
    f.iter().map(|b| format!("{b:02x}")).collect()
}

/// The frames of a burst: `n` from each of `peers` (10.9.0.2, .3, ...).
fn burst(n: usize, peers: u8) -> Vec<String> {
    (0..n)
        .flat_map(|_| (0..peers).map(|p| frame([10, 9, 0, 2 + p])))
        .collect()
}

/// The kernel's counters after `sysctls` and the burst.
fn kernel(name: &str, sysctls: &[&str], frames: &[String]) -> Vec<u64> {
    let ns = Ns::add(format!("ipxmit-icmprate-{name}-{}", std::process::id()));
    let (_, err, code) = sh(
        &ns.0,
        "ip link add veth0 address 02:00:00:00:00:01 type veth peer name veth1 && \
         ip link set veth1 up && sysctl -qw net.ipv6.conf.all.disable_ipv6=1",
    );
    assert_eq!(code, 0, "{err}");
    for l in SETUP.lines().chain(sysctls.iter().copied()) {
        let (_, err, code) = sh(&ns.0, l);
        assert_eq!(code, 0, "{l}: {err}");
    }
    let (_, err, code) = sh(
        &ns.0,
        "ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:fe dev veth0 nud permanent",
    );
    assert_eq!(code, 0, "{err}");
    let dir = tmpdir(&format!("icmp_rate_{name}"));
    let py = format!(
        "import socket,time\np=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n\
         p.bind(('veth1',0))\nfor h in {frames:?}:\n p.send(bytes.fromhex(h))\ntime.sleep(0.3)\n"
    );
    std::fs::write(dir.join("inject.py"), py).unwrap();
    let (_, err, code) = sh(
        &ns.0,
        &format!("python3 {}", dir.join("inject.py").display()),
    );
    assert_eq!(code, 0, "{err}");
    let (out, err, code) = sh(&ns.0, "nstat -saz -j");
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("nstat -j");
    MIBS.iter()
        .map(|m| v["kernel"][m].as_u64().unwrap_or(0))
        .collect()
}

/// ipxmit's counters after the same lines and burst.
fn ours(name: &str, sysctls: &[&str], frames: &[String]) -> Vec<u64> {
    let dir = tmpdir(&format!("icmp_rate_ours_{name}"));
    let mut script = format!("link add veth0 type mem\n{SETUP}");
    for l in sysctls {
        script.push_str(l);
        script.push('\n');
    }
    script.push_str("ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:fe dev veth0 nud permanent\n");
    for f in frames {
        script.push_str(&format!("inject dev veth0 frame {f}\n"));
    }
    let r = run_script(&dir, &script, &["--json", "--all"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json_lines(&r.stdout);
    let stats = v.iter().find(|e| e["op"] == "stats").expect("statistics");
    MIBS.iter()
        .map(|m| stats["nstat"]["kernel"][m].as_u64().unwrap_or(0))
        .collect()
}

#[test]
fn a_peer_gets_six_errors_at_once_as_from_the_kernel() {
    if let Some(why) = common::missing_tools(&["nstat", "python3"]) {
        eprintln!("SKIPPED (needs root, network namespaces, nstat): icmp_rate_kernel [{why}]");
        return;
    }
    let frames = burst(20, 1);
    let k = kernel("peer", &[], &frames);
    assert_eq!(k, [20, 6, 14, 0], "the kernel (the test's premise)");
    assert_eq!(ours("peer", &[], &frames), k);
    // icmp_ratelimit 1001 ms is 251 jiffies; 0 lifts the peer's limit
    // (20 messages take at most 40 of the 50 host-wide credits).
    let off = ["sysctl -w net.ipv4.icmp_ratelimit=0"];
    let k = kernel("off", &off, &frames);
    assert_eq!(k, [20, 20, 0, 0], "the kernel, icmp_ratelimit 0");
    assert_eq!(ours("off", &off, &frames), k);
}

#[test]
fn the_host_wide_burst_holds_as_the_kernels() {
    if let Some(why) = common::missing_tools(&["nstat", "python3"]) {
        eprintln!("SKIPPED (needs root, network namespaces, nstat): icmp_rate_kernel [{why}]");
        return;
    }
    // Without the per-peer limit, 200 errors meet the host-wide one.
    let frames = burst(200, 1);
    let off = ["sysctl -w net.ipv4.icmp_ratelimit=0"];
    for (side, c) in [
        ("kernel", kernel("global", &off, &frames)),
        ("ipxmit", ours("global", &off, &frames)),
    ] {
        eprintln!("host-wide limit, 200 errors: {side} {MIBS:?} = {c:?}");
        assert_eq!((c[0], c[2]), (200, 0), "{side}: {c:?}");
        assert_eq!(c[1] + c[3], 200, "{side}: sent + refused: {c:?}");
        assert!((25..=110).contains(&c[1]), "{side}: sent {c:?}");
    }
    // A ratemask without destination unreachable lifts both limits.
    let mask = ["sysctl -w net.ipv4.icmp_ratemask=6160"];
    let k = kernel("mask", &mask, &frames);
    assert_eq!(k, [200, 200, 0, 0], "the kernel, ratemask 6160");
    assert_eq!(ours("mask", &mask, &frames), k);
}
