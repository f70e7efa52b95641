//! `reject`, `limit`, maps and verdict maps held against this machine's
//! kernel (issue 16): the same `ip`
//! and `nft` lines in a network namespace this test creates and in an
//! `ipxmit run` host, the same UDP sends, compared: each send's errno (a
//! `reject` fails the send with `EPERM`, and a port unreachable makes a
//! connected socket's next send `ECONNREFUSED`), the error queue of an
//! `IP_RECVERR` socket, the ICMP messages the host sends itself (captured
//! on `lo`: tcpdump in the namespace, `capture dev lo` in ipxmit; IP ids and
//! checksums masked), the nft counters and listing. The `limit` rules'
//! sends follow each other within milliseconds: a packet rate's bucket of
//! 5 and a byte rate's of 300 bytes decide which pass.
//!
//! Needs root, `ip netns`, `tcpdump` and `nft`; without them the test
//! prints `SKIPPED (...)` and passes.

mod common;

use std::process::{Command, Stdio};

use common::{pcap_frames, run_script, sh, tmpdir, Ns};

const SETUP: &str = "ip addr add 10.9.0.1/24 dev veth0
ip link set veth0 up
ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:fe dev veth0 nud permanent
";

const RULES: &[&str] = &[
    "nft add table ip t",
    "nft add chain ip t out '{ type filter hook output priority 0; }'",
    "nft add rule ip t out udp dport 9 counter reject",
    "nft add rule ip t out udp dport 10 counter reject with icmp host-unreachable",
    "nft add rule ip t out udp dport 11 counter reject with icmp type admin-prohibited",
    "nft add rule ip t out meta mark 0x7 counter reject with tcp reset",
    "nft add rule ip t out ip protocol icmp counter",
    "nft add rule ip t out meta mark 0x80000000 reject with tcp reset",
    "nft add rule ip t out udp dport 13 limit rate 1/minute counter accept",
    "nft add rule ip t out udp dport 13 counter drop",
    "nft add rule ip t out udp dport 14 limit rate over 100 bytes/second burst 200 bytes counter drop",
];

/// The sends: socket a connected to port 9 (three sends: `EPERM`,
/// `ECONNREFUSED`, `EPERM`); socket b with `IP_RECVERR` connected to port
/// 10 (a send, its error queue, a send); socket c unconnected to port 11
/// twice and, with mark 7, to port 12 once (`with tcp reset` does not
/// match UDP).
/// ipxmit's n-th send carries bytes (7i + n) mod 256; so do these.
const KERNEL_PY: &str = r#"import socket,errno,struct
N=[0]
def pl():
  N[0]+=1; return bytes((7*i+N[0]-1)&255 for i in range(10))
def tr(f):
  try: print("ret", f())
  except OSError as e: print(errno.errorcode[e.errno])
a=socket.socket(2,2); a.connect(("10.9.0.2",9))
for i in range(3): tr(lambda: a.send(pl()))
b=socket.socket(2,2); b.setsockopt(0,11,1); b.connect(("10.9.0.2",10))
tr(lambda: b.send(pl()))
try:
  m=b.recvmsg(100,1024,socket.MSG_ERRQUEUE)
  for l,t,d in m[1]:
    e=struct.unpack("IBBBB",d[:8]); print("ee",errno.errorcode[e[0]],e[2],e[3],socket.inet_ntoa(d[20:24]))
except OSError as e: print("ee", errno.errorcode[e.errno])
tr(lambda: b.send(pl()))
c=socket.socket(2,2)
for p in (11,11): tr(lambda: c.sendto(pl(),("10.9.0.2",p)))
c.setsockopt(1,36,7); tr(lambda: c.sendto(pl(),("10.9.0.2",12)))
d=socket.socket(2,2)
for p in [13]*7+[14]*10: tr(lambda: d.sendto(pl(),("10.9.0.2",p)))
"#;

const OURS: &str = "socket a udp
connect a 10.9.0.2:9
send a len 10
send a len 10
send a len 10
socket b udp
sockopt b ip_recverr 1
connect b 10.9.0.2:10
send b len 10
errqueue b
send b len 10
socket c udp
send c to 10.9.0.2:11 len 10
send c to 10.9.0.2:11 len 10
sockopt c so_mark 7
send c to 10.9.0.2:12 len 10
socket d udp
LIMITED
nft list ruleset
";

/// An ICMP message on `lo` as compared: the IP datagram with the ids and
/// checksums (outer, ICMP, quoted IP and UDP) and the quoted ephemeral
/// source port masked.
fn masked(frame: &[u8]) -> String {
    let mut p = frame.get(14..).unwrap_or_default().to_vec();
    if p.len() < 56 || p[9] != 1 {
        return format!("not ICMP: {p:02x?}");
    }
    for r in [4..6, 10..12, 22..24, 32..34, 38..40, 48..50, 54..56] {
        p[r].fill(0);
    }
    p.iter().map(|b| format!("{b:02x}")).collect()
}

/// The kernel's side: the results, the ICMP messages on `lo`, the listing.
fn kernel(ns: &str, dir: &std::path::Path) -> (Vec<String>, Vec<String>, String) {
    assert!(Command::new("ip")
        .args(["netns", "add", ns])
        .status()
        .unwrap()
        .success());
    let (_, err, code) = sh(
        ns,
        "ip link set lo up; ip link add veth0 type veth peer name veth1; ip link set veth1 up",
    );
    assert_eq!(code, 0, "{err}");
    for l in SETUP.lines().chain(RULES.iter().copied()) {
        let (_, err, code) = sh(ns, l);
        assert_eq!(code, 0, "{l}: {err}");
    }
    let cap = dir.join("k_lo.pcap");
    let mut dump = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "tcpdump",
            "--immediate-mode",
            "-U",
            "-n",
        ])
        .arg("--time-stamp-precision=nano")
        .args(["-i", "lo", "-w"])
        .arg(&cap)
        .arg("icmp")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump");
    let mut r = std::io::BufReader::new(dump.stderr.take().expect("tcpdump's stderr"));
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(&mut r, &mut line);
    assert!(line.contains("listening on"), "tcpdump: {line}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::fs::write(dir.join("send.py"), KERNEL_PY).unwrap();
    let (out, err, code) = sh(ns, &format!("python3 {}", dir.join("send.py").display()));
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Ends the tcpdump this test started (by its handle).
    let _ = dump.kill();
    let _ = dump.wait();
    let icmp = pcap_frames(&cap).iter().map(|(_, f)| masked(f)).collect();
    let rules = sh(ns, "nft list ruleset").0;
    (out.lines().map(str::to_string).collect(), icmp, rules)
}

/// ipxmit's side, from one script.
fn ours(dir: &std::path::Path) -> (Vec<String>, Vec<String>, String) {
    let cap = dir.join("i_lo.pcap");
    let mut script = format!(
        "link add veth0 type mem\n{SETUP}capture dev lo file {}\n",
        cap.display()
    );
    for l in RULES {
        script.push_str(l);
        script.push('\n');
    }
    let limited: Vec<String> = [13; 7]
        .iter()
        .chain(&[14; 10])
        .map(|p| format!("send d to 10.9.0.2:{p} len 10"))
        .collect();
    script.push_str(&OURS.replace("LIMITED", &limited.join("\n")));
    let r = run_script(dir, &script, &["--no-stats", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut results = Vec::new();
    let mut rules = String::new();
    for v in common::json_lines(&r.stdout) {
        match v["op"].as_str() {
            Some("send") => results.push(match v["errno"].as_str() {
                Some(e) => e.to_string(),
                None => format!("ret {}", v["ret"]),
            }),
            Some("errqueue") => {
                for e in v["entries"].as_array().into_iter().flatten() {
                    results.push(format!(
                        "ee {} {} {} {}",
                        e["ee_errno"].as_str().unwrap_or("?"),
                        e["ee_type"],
                        e["ee_code"],
                        e["offender"].as_str().unwrap_or("?")
                    ));
                }
            }
            Some("nft") => rules.push_str(v["out"].as_str().unwrap_or("")),
            _ => {}
        }
    }
    let icmp = pcap_frames(&cap)
        .iter()
        .filter(|(_, f)| f.len() > 23 && f[12..14] == [8, 0] && f[23] == 1)
        .map(|(_, f)| masked(f))
        .collect();
    (results, icmp, rules)
}

#[test]
fn reject_and_limit_match_the_kernel() {
    if let Some(why) = common::missing_tools(&["tcpdump", "nft", "python3"]) {
        eprintln!("SKIPPED (needs root, network namespaces, tcpdump, nft): nft_stmts [{why}]");
        return;
    }
    let dir = tmpdir("nft_stmts_kernel");
    let ns = Ns(format!("ipxmit-rej-{}", std::process::id()));
    let (kr, kicmp, krules) = kernel(&ns.0, &dir);
    let (ir, iicmp, irules) = ours(&dir);
    assert_eq!(ir, kr, "send results and error queue");
    assert_eq!(kicmp.len(), 6, "the kernel's ICMP messages on lo");
    assert_eq!(iicmp, kicmp, "ICMP messages on lo");
    assert_eq!(irules, krules, "nft list ruleset");
}

/// Named and anonymous maps and verdict maps: `meta mark set ... map`,
/// `vmap` with accept/drop/continue/jump, a catch-all, a concatenation,
/// intervals.
const MAP_RULES: &[&str] = &[
    "nft add table ip t",
    "nft add chain ip t out '{ type filter hook output priority 0; }'",
    "nft add chain ip t sub",
    "nft add map ip t marks '{ type ipv4_addr : mark; }'",
    "nft add element ip t marks '{ 10.9.0.2 : 0x7, 10.9.0.3 : 0x8 }'",
    "nft add map ip t verd '{ type inet_service : verdict; }'",
    "nft add element ip t verd '{ 20 : drop, 21 : jump sub, 22 : accept }'",
    "nft add rule ip t out meta mark set ip daddr map @marks counter",
    "nft add rule ip t out udp dport vmap { 53 : accept, 80 : drop, 81 : continue, 82 : jump sub } counter",
    "nft add rule ip t out 'meta mark set udp dport map { 81 : 0x00000051, 82 : 0x52, * : 0x1 }' counter",
    "nft add rule ip t out udp dport vmap @verd",
    "nft add rule ip t out ip daddr . udp dport vmap { 10.9.0.2 . 83 : drop } counter",
    "nft add rule ip t out ip hdrlength vmap { 0-4 : drop, 5 : continue, 6 : continue } counter",
    "nft add rule ip t sub meta mark 0x52 counter drop",
    "nft add rule ip t sub counter",
];

/// The map test's sends: (last address byte, destination port).
const MAP_SENDS: &[(u8, u16)] = &[
    (2, 53),
    (2, 80),
    (2, 81),
    (2, 82),
    (2, 20),
    (2, 21),
    (2, 83),
    (3, 84),
];

#[test]
fn maps_and_vmaps_match_the_kernel() {
    if let Some(why) = common::missing_tools(&["tcpdump", "nft", "python3"]) {
        eprintln!("SKIPPED (needs root, network namespaces, nft): nft_maps [{why}]");
        return;
    }
    let dir = tmpdir("nft_maps_kernel");
    let ns = Ns(format!("ipxmit-map-{}", std::process::id()));
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap()
        .success());
    let setup =
        format!("{SETUP}ip neigh add 10.9.0.3 lladdr 02:00:00:00:00:fe dev veth0 nud permanent\n");
    let (_, err, code) = sh(
        &ns.0,
        "ip link set lo up; ip link add veth0 type veth peer name veth1; ip link set veth1 up",
    );
    assert_eq!(code, 0, "{err}");
    for l in setup.lines().chain(MAP_RULES.iter().copied()) {
        let (_, err, code) = sh(&ns.0, l);
        assert_eq!(code, 0, "{l}: {err}");
    }
    let mut py = String::from("import socket,errno\ns=socket.socket(2,2)\n");
    let mut script = format!("link add veth0 type mem\n{setup}");
    for l in MAP_RULES {
        script.push_str(l);
        script.push('\n');
    }
    script.push_str("socket s udp\n");
    for (n, (a, port)) in MAP_SENDS.iter().enumerate() {
        py.push_str(&format!(
            "try: print('ret', s.sendto(bytes((7*i+{n})&255 for i in range(10)), ('10.9.0.{a}', {port})))\n\
             except OSError as e: print(errno.errorcode[e.errno])\n"
        ));
        script.push_str(&format!("send s to 10.9.0.{a}:{port} len 10\n"));
    }
    script.push_str("nft list ruleset\n");
    std::fs::write(dir.join("maps.py"), py).unwrap();
    let (out, err, code) = sh(&ns.0, &format!("python3 {}", dir.join("maps.py").display()));
    assert_eq!(code, 0, "{err}");
    let krules = sh(&ns.0, "nft list ruleset").0;
    let r = run_script(&dir, &script, &["--no-stats", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut ours = Vec::new();
    let mut irules = String::new();
    for v in common::json_lines(&r.stdout) {
        match v["op"].as_str() {
            Some("send") => ours.push(match v["errno"].as_str() {
                Some(e) => e.to_string(),
                None => format!("ret {}", v["ret"]),
            }),
            Some("nft") => irules.push_str(v["out"].as_str().unwrap_or("")),
            _ => {}
        }
    }
    let kernel: Vec<String> = out.lines().map(str::to_string).collect();
    assert_eq!(ours, kernel, "send results");
    assert_eq!(irules, krules, "nft list ruleset");
}

/// The rules `nft -j list ruleset` is compared on.
const JSON_RULES: &[&str] = &[
    "nft add table ip t",
    "nft add chain ip t out '{ type filter hook output priority 0; }'",
    "nft add chain ip t sub",
    "nft add chain ip t post '{ type nat hook postrouting priority srcnat; }'",
    "nft add set ip t s '{ type inet_service; flags interval; }'",
    "nft add element ip t s '{ 53, 1000-2000 }'",
    "nft add rule ip t out ip daddr 10.0.0.0/8 udp dport 9 counter accept",
    "nft add rule ip t out udp dport @s jump sub",
    "nft add rule ip t out meta mark set 0x5 ip ttl != 3 drop",
    "nft add rule ip t out ip saddr '{ 1.1.1.1, 2.2.2.2 }' reject",
    "nft add rule ip t out udp dport 13 limit rate 1/minute counter accept",
    "nft add rule ip t out udp dport 14 limit rate over 100 bytes/second burst 200 bytes counter drop",
    "nft add rule ip t out udp dport 10 counter reject with icmp host-unreachable",
    "nft add rule ip t out log prefix '\"x: \"' level info",
    "nft add rule ip t out ct state established,new ip dscp cs1 meta priority 1:2 counter",
    "nft add rule ip t out ct state new oifname \"eth0\" ip protocol udp",
    "nft add rule ip t post udp dport 9 snat to 10.9.0.7:5000-5001",
    "nft add rule ip t post masquerade",
    "nft add chain ip t nout '{ type nat hook output priority -100; }'",
    "nft add chain ip t out2",
    "nft add map ip t m '{ type ipv4_addr . inet_service : mark; }'",
    "nft add element ip t m '{ 10.0.0.1 . 53 : 0x1 }'",
    "nft add map ip t v '{ type inet_service : verdict; flags interval; }'",
    "nft add element ip t v '{ 1000-2000 : jump out2 }'",
    "nft add rule ip t out meta mark set ip daddr . udp dport map @m",
    "nft add rule ip t out udp dport vmap @v",
    "nft add rule ip t out udp dport vmap '{ 1-5 : accept, * : continue }'",
    "nft add rule ip t out meta mark set udp dport map '{ 80 : 0x3, * : 0x9 }'",
    "nft add rule ip t out tcp dport 22 iifname != \"eth0\" counter",
    "nft add rule ip t out meta mark and 0x03 == 0x01 ip saddr '& 0.0.0.255 < 0.0.0.127'",
    "nft add rule ip t out meta mark or 0x03 != 0x01 counter",
    "nft add rule ip t nout udp dport 53 redirect to :5353",
    "nft add rule ip t post udp dport 11 snat to 10.9.0.10-10.9.0.200",
    "nft add rule ip t post udp dport 12 snat to 10.0.0.0/8",
    "nft add rule ip t nout dnat ip to ip daddr . udp dport map '{ 10.1.1.1 . 53 : 10.9.0.3 . 5353-5360 }'",
    "nft add rule ip t nout udp dport 54 redirect to :udp dport map '{ 54 : 5354 }'",
    "nft add rule ip t post snat ip to ip saddr map '{ 10.9.0.1 : 10.9.0.10-10.9.0.20, 10.9.0.5 : 10.9.0.100/30 }'",
    "nft add rule ip t post snat ip prefix to ip saddr map '{ 10.9.0.0/24 : 10.7.0.0/24 }'",
    "nft add rule ip t post snat to ct mark map '{ 0x1 : 10.9.0.7, * : 10.9.0.8 }'",
    "nft add rule ip t post meta l4proto '{ 6, 17 }' snat ip to ip saddr . th dport map '{ 10.9.0.1 . 20 : 10.9.0.3 . 80 }'",
];

#[test]
fn json_listing_matches_nft_j() {
    if let Some(why) = common::missing_tools(&["tcpdump", "nft", "python3"]) {
        eprintln!("SKIPPED (needs root, network namespaces, nft): nft_json [{why}]");
        return;
    }
    let dir = tmpdir("nft_json_kernel");
    let ns = Ns(format!("ipxmit-json-{}", std::process::id()));
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap()
        .success());
    for l in JSON_RULES {
        let (_, err, code) = sh(&ns.0, l);
        assert_eq!(code, 0, "{l}: {err}");
    }
    let kernel: serde_json::Value =
        serde_json::from_str(&sh(&ns.0, "nft -j list ruleset").0).expect("nft's JSON");
    let script = format!(
        "link add eth0 type null\n{}\nnft -j list ruleset\n",
        JSON_RULES.join("\n")
    );
    let r = run_script(&dir, &script, &["--no-stats"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ours: serde_json::Value = serde_json::from_str(&r.stdout).expect("ipxmit's JSON");
    assert_eq!(ours, kernel);
}
