//! `explain` (issue 20, item 1) through the real binary: the plan it
//! prints for a send agrees with what the same send then does — the frames
//! captured on the wire (count, lengths, fragment offsets, DF, IP ID 0 or
//! not, MACs), the route the rules chose, the qdisc path, the errno, the
//! nft rules whose counters move.

mod common;

use common::{json_lines, pcap_frames, run_script, tmpdir};
use serde_json::Value;

/// The IP header fields of each captured IPv4 frame: (total length,
/// fragment offset in bytes, DF, MF, IP ID, destination MAC).
fn ip_frames(frames: &[(u64, Vec<u8>)]) -> Vec<(usize, usize, bool, bool, u16, Vec<u8>)> {
    frames
        .iter()
        .filter(|(_, f)| f[12..14] == [0x08, 0x00])
        .map(|(_, f)| {
            let ip = &f[14..];
            let frag = u16::from_be_bytes([ip[6], ip[7]]);
            (
                usize::from(u16::from_be_bytes([ip[2], ip[3]])),
                usize::from(frag & 0x1fff) * 8,
                frag & 0x4000 != 0,
                frag & 0x2000 != 0,
                u16::from_be_bytes([ip[4], ip[5]]),
                f[..6].to_vec(),
            )
        })
        .collect()
}

/// The `explain` results of a `--json` run, in order.
fn plans(stdout: &str) -> Vec<Value> {
    json_lines(stdout)
        .into_iter()
        .filter(|v| v["op"] == "explain")
        .collect()
}

/// The (offset, length) list of a plan's geometry.
fn planned_frames(p: &Value) -> Vec<(usize, usize)> {
    p["plan"]["geometry"]["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| {
            (
                f["offset"].as_u64().unwrap() as usize,
                f["length"].as_u64().unwrap() as usize,
            )
        })
        .collect()
}

/// A fragmented send through a policy rule and a gateway, explained, then
/// made: the frames on the wire are the plan's, and the route is the rule's.
#[test]
fn the_plan_is_what_the_send_does() {
    let d = tmpdir("explain-plan");
    let script = "link add eth0 type mem peer 10.0.0.2
addr add 10.0.0.1/24 dev eth0
ip route add 10.9.0.0/16 via 10.0.0.2 table 100
ip rule add to 10.9.0.0/16 table 100
tc qdisc add dev eth0 root pfifo limit 100
capture dev eth0 file out.pcap
socket s1 udp bind 10.0.0.1:5000
explain s1 to 10.9.1.1:9 len 3000
send s1 to 10.9.1.1:9 len 3000
sleep 10ms
explain s1 to 10.9.1.1:9 len 100
send s1 to 10.9.1.1:9 len 100
sockopt s1 ip_mtu_discover do
explain s1 to 10.9.1.1:9 len 100
send s1 to 10.9.1.1:9 len 100
explain s1 to 10.9.1.1:9 len 3000
send s1 to 10.9.1.1:9 len 3000
";
    let r = run_script(&d, script, &["--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let p = plans(&r.stdout);
    assert_eq!(p.len(), 4, "{}", r.stdout);

    // The route: rule 0 (local) had no route, the rule to table 100 did.
    let route = &p[0]["plan"]["route"];
    assert_eq!(route["table"], "100", "{route}");
    assert_eq!(route["prefix"], "10.9.0.0/16");
    assert_eq!(route["gateway"], "10.0.0.2");
    assert_eq!(route["dev"], "eth0");
    let rules: Vec<&Value> = route["rules"].as_array().unwrap().iter().collect();
    assert_eq!(rules[0]["answer"], "no route", "{route}");
    assert_eq!(rules.last().unwrap()["table"], "100");
    // The gateway was not resolved yet; then it was.
    let n0 = p[0]["plan"]["neighbour"].as_str().unwrap();
    assert!(n0.starts_with("10.0.0.2: no entry"), "{n0}");
    let n1 = p[1]["plan"]["neighbour"].as_str().unwrap();
    assert!(n1.contains("REACHABLE 02:00:00:00:00:fe"), "{n1}");
    assert_eq!(p[0]["plan"]["qdisc"]["kind"], "pfifo");
    assert_eq!(p[0]["plan"]["driver"], "mem");

    let wire = ip_frames(&pcap_frames(&d.join("out.pcap")));
    // Plan 0: 3028 bytes in fragments, no DF, a per-destination ID.
    let f0 = planned_frames(&p[0]);
    assert_eq!(f0, vec![(0, 1500), (1480, 1500), (2960, 68)]);
    assert_eq!(p[0]["plan"]["geometry"]["df"], false);
    // Plan 1: one frame, DF (fits the path MTU, IP_PMTUDISC_WANT), and
    // as WANT may be fragmented on the way (`ip_sk_ignore_df()`), an ID.
    assert_eq!(planned_frames(&p[1]), vec![(0, 128)]);
    assert_eq!(p[1]["plan"]["geometry"]["df"], true);
    let id1 = p[1]["plan"]["ip_id"].as_str().unwrap();
    assert!(id1.starts_with("the per-destination"), "{id1}");
    // Plan 2 (IP_PMTUDISC_DO): DF, ID 0; plan 3: EMSGSIZE, as the send.
    assert_eq!(planned_frames(&p[2]), vec![(0, 128)]);
    assert!(p[2]["plan"]["ip_id"].as_str().unwrap().starts_with("0:"));
    assert_eq!(p[3]["errno"], "EMSGSIZE", "{}", p[3]);
    let sends: Vec<Value> = json_lines(&r.stdout)
        .into_iter()
        .filter(|v| v["op"] == "send")
        .collect();
    assert_eq!(sends[3]["errno"], "EMSGSIZE");

    let planned: Vec<(usize, usize, bool)> = [&p[0], &p[1], &p[2]]
        .iter()
        .flat_map(|x| {
            let df = x["plan"]["geometry"]["df"].as_bool().unwrap();
            planned_frames(x).into_iter().map(move |(o, l)| (o, l, df))
        })
        .collect();
    let sent: Vec<(usize, usize, bool)> = wire.iter().map(|w| (w.1, w.0, w.2)).collect();
    assert_eq!(sent, planned, "wire {wire:?}");
    // The frames went to the gateway's MAC; the IDs follow the plans.
    assert!(wire.iter().all(|w| w.5 == [2, 0, 0, 0, 0, 0xfe]));
    assert!(wire[..4].iter().all(|w| w.4 != 0), "{wire:?}");
    assert_eq!(wire[4].4, 0);
}

/// The text form names each step with its kernel function; a raw socket
/// and a bad line are refused.
#[test]
fn text_names_each_step_and_its_kernel_function() {
    let d = tmpdir("explain-text");
    let script = "link add eth0 type mem peer 10.0.0.2 offload csum,sg
addr add 10.0.0.1/24 dev eth0
socket s1 udp
explain s1 to 10.0.0.2:9 len 1000
explain s1 to 10.0.0.255:9 len 10
sockopt s1 so_broadcast 1
explain s1 to 10.0.0.255:9 len 10
explain s1 to 10.0.0.2:9 len 70000
";
    let r = run_script(&d, script, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let out = &r.stdout;
    for step in [
        "route      ip_route_output_flow()",
        "neighbour  neigh_output()",
        "geometry   __ip_append_data()",
        "checksum   __ip_append_data()",
        "ip id      ip_select_ident_segs()",
        "hooks      nf_hook()",
        "qdisc      __dev_xmit_skb()",
        "driver     ndo_start_xmit()",
    ] {
        assert!(out.contains(step), "{step}\n{out}");
    }
    // Offload and one frame: CHECKSUM_PARTIAL; the broadcast needs
    // SO_BROADCAST, then maps to ff:ff:ff:ff:ff:ff without ARP.
    assert!(out.contains("CHECKSUM_PARTIAL"), "{out}");
    assert!(
        out.contains("line 5: explain s1\n  the send fails: -1 EACCES"),
        "{out}"
    );
    assert!(
        out.contains("ff:ff:ff:ff:ff:ff, mapped from the address, no ARP"),
        "{out}"
    );
    assert!(
        out.contains("line 8: explain s1\n  the send fails: -1 EMSGSIZE"),
        "{out}"
    );
    assert!(
        out.contains("enqueued") || out.contains("bypassed"),
        "{out}"
    );
}

/// `ipxmit explain` on the default host, and on a script's host: the
/// plan, exit 0; a send that would fail, exit 1; a wrong line, exit 2.
#[test]
fn the_command_explains_on_the_default_host_and_a_scripts() {
    let d = tmpdir("explain-cmd");
    let r = common::ipxmit(&d, &["explain", "s", "to", "10.0.0.2:9", "len", "3000"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("3 fragments"), "{}", r.stdout);
    assert!(r.stdout.contains("10.0.0.2: no entry"), "{}", r.stdout);

    let r = common::ipxmit(
        &d,
        &["explain", "--json", "s", "to", "10.0.0.2:9", "len", "1472"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = &json_lines(&r.stdout)[0];
    assert_eq!(v["plan"]["geometry"]["frames"].as_array().unwrap().len(), 1);
    assert_eq!(v["plan"]["route"]["table"], "main");

    let r = common::ipxmit(&d, &["explain", "s", "to", "10.0.0.2:9", "len", "70000"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("EMSGSIZE"), "{}", r.stdout);

    std::fs::write(
        d.join("host.ipx"),
        "link add eth0 type mem\naddr add 10.0.0.1/24 dev eth0\nlink set eth0 mtu 9000\n\
         socket u udp\nsockopt u ip_mtu_discover do\n",
    )
    .unwrap();
    let r = common::ipxmit(
        &d,
        &[
            "explain",
            "--script",
            "host.ipx",
            "u",
            "to",
            "10.0.0.7:9",
            "len",
            "8000",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("fragsize 9000") && r.stdout.contains("1 frame"),
        "{}",
        r.stdout
    );
    let r = common::ipxmit(
        &d,
        &["explain", "--script", "host.ipx", "nosuch", "len", "1"],
    );
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stderr.contains("line 6:"), "{}", r.stderr);
}

/// An HTB tree with a u32 filter: the plan names the class each send's
/// first frame takes, and the classes' counters after the sends agree.
#[test]
fn the_class_is_the_one_the_frames_take() {
    let d = tmpdir("explain-class");
    let script = "link add eth0 type mem peer 10.0.0.2
addr add 10.0.0.1/24 dev eth0
neigh add 10.0.0.2 lladdr 02:00:00:00:00:fe dev eth0
tc qdisc add dev eth0 root handle 1: htb default 20
tc class add dev eth0 parent 1: classid 1:10 htb rate 10mbit
tc class add dev eth0 parent 1: classid 1:20 htb rate 10mbit
tc filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dport 9 0xffff flowid 1:10
socket s udp
explain s to 10.0.0.2:9 len 100
explain s to 10.0.0.2:10 len 3000
send s to 10.0.0.2:9 len 100
send s to 10.0.0.2:10 len 3000
sleep 100ms
tc -s class show dev eth0
";
    let r = run_script(&d, script, &["--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let p = plans(&r.stdout);
    assert_eq!(p[0]["plan"]["qdisc"]["class"], "1:10", "{}", p[0]);
    assert_eq!(p[1]["plan"]["qdisc"]["class"], "1:20", "{}", p[1]);
    let shown = json_lines(&r.stdout)
        .into_iter()
        .find(|v| v["op"] == "tc")
        .expect("tc output");
    let out = shown["out"].as_str().unwrap();
    // 1:10 took the one frame to port 9, 1:20 the three fragments.
    let sent = |class: &str| {
        let at = out.find(&format!("class htb {class} ")).expect(class);
        out[at..].lines().nth(1).unwrap().to_string()
    };
    assert!(sent("1:10").contains(" 1 pkt "), "{out}");
    assert!(sent("1:20").contains(" 3 pkt "), "{out}");
}

/// The nft rules the plan says would match (a dry evaluation: nothing
/// counted, no mark set) are the ones whose counters the send then moves,
/// LOCAL_OUT's mark carried into POST_ROUTING as the datagram carries it.
#[test]
fn the_rules_that_would_match_are_the_ones_the_send_counts() {
    for (port, len) in [(9, 3000), (53, 10), (7, 100)] {
        let d = tmpdir(&format!("explain-nft-{port}"));
        let script = format!(
            "link add eth0 type mem peer 10.0.0.2
addr add 10.0.0.1/24 dev eth0
neigh add 10.0.0.2 lladdr 02:00:00:00:00:fe dev eth0
nft add table ip t
nft add chain ip t out {{ type filter hook output priority 0 \\; }}
nft add rule ip t out udp dport 53 counter accept
nft add rule ip t out meta length > 1000 counter
nft add rule ip t out ip daddr 10.0.0.0/24 counter meta mark set 7
nft add chain ip t post {{ type filter hook postrouting priority 0 \\; }}
nft add rule ip t post meta mark 7 counter
nft add rule ip t post udp dport 7 counter drop
nft add rule ip t post counter
socket s udp bind 10.0.0.1:5000
explain s to 10.0.0.2:{port} len {len}
nft -a list ruleset
send s to 10.0.0.2:{port} len {len}
nft -a list ruleset
"
        );
        let r = run_script(&d, &script, &["--json"]);
        let lines = json_lines(&r.stdout);
        let plan = plans(&r.stdout).remove(0);
        let mut said: Vec<u64> = plan["plan"]["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .flat_map(|h| h["match"].as_array().unwrap().clone())
            .map(|m| m["handle"].as_u64().unwrap())
            .collect();
        said.sort();
        let lists: Vec<&str> = lines
            .iter()
            .filter(|v| v["op"] == "nft")
            .map(|v| v["out"].as_str().unwrap())
            .collect();
        let counted = |list: &str| -> Vec<u64> {
            list.lines()
                .filter(|l| l.contains("counter packets") && !l.contains("counter packets 0 "))
                .map(|l| {
                    l.rsplit("# handle ")
                        .next()
                        .unwrap()
                        .trim()
                        .parse()
                        .unwrap()
                })
                .collect()
        };
        assert_eq!(
            counted(lists[0]),
            Vec::<u64>::new(),
            "explain counted:\n{}",
            lists[0]
        );
        assert_eq!(
            counted(lists[1]),
            said,
            "port {port} len {len}:\n{}\n{}",
            plan,
            lists[1]
        );
        assert!(!said.is_empty());
    }
}
