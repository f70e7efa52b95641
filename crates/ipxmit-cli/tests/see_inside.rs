//! Seeing inside the path through the real binary: the dropwatch-like
//! summary (`run --drops`, `send --drops`), per-message fates of
//! `sendmmsg`, and pcapng captures with per-frame comments.

mod common;

use common::{ipxmit, json_lines, run_script, tmpdir};

const HOST: &str = "link add eth0 type mem peer 10.0.0.2
addr add 10.0.0.1/24 dev eth0
";

/// A datagram over the MTU with DF and one to a neighbour that never
/// answers: two sites, each with its reason and kernel function.
const DROPS: &str = "socket s1 udp bind 10.0.0.1:5000
send s1 to 10.0.0.9:9000 len 100
send s1 to 10.0.0.9:9000 len 100
sleep 4s
sockopt s1 ip_mtu_discover do
send s1 to 10.0.0.2:9000 len 3000
";

#[test]
fn run_drops_names_each_site_reason_and_kernel_function() {
    let d = tmpdir("drops-text");
    let r = run_script(&d, &format!("{HOST}{DROPS}"), &["--no-stats", "--drops"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let tail: Vec<&str> = r
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("ipxmit drops"))
        .collect();
    assert_eq!(
        tail,
        [
            "ipxmit drops (dropwatch):",
            "       2 drops at neigh_invalidate()         NEIGH_FAILED      ipxmit neigh::invalidate",
            "       1 drops at __ip_append_data()         PKT_TOO_BIG       ipxmit socket::cork::Cork::append",
            "       3 drops in all",
        ],
        "{}",
        r.stdout
    );
}

#[test]
fn run_drops_json_is_one_line_of_rows() {
    let d = tmpdir("drops-json");
    let r = run_script(
        &d,
        &format!("{HOST}{DROPS}"),
        &["--no-stats", "--json", "--drops"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines = json_lines(&r.stdout);
    let last = lines.last().unwrap();
    assert_eq!(last["op"], "drops");
    let rows = last["drops"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["reason"], "NEIGH_FAILED");
    assert_eq!(rows[0]["count"], 2);
    assert_eq!(rows[0]["kernel"], "neigh_invalidate()");
    assert_eq!(rows[1]["function"], "socket::cork::Cork::append");
}

#[test]
fn send_drops_prints_the_summary() {
    let d = tmpdir("drops-send");
    let r = ipxmit(
        &d,
        &[
            "send",
            "-n",
            "20",
            "-l",
            "100",
            "-c",
            "10.0.0.2:9",
            "--drops",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("ipxmit drops (dropwatch):\n       0 drops in all\n"),
        "{}",
        r.stdout
    );
}

/// A 1 Mbit/s wire behind `pfifo limit 2`, the neighbour resolved: the
/// first datagram leaves, two wait, four are dropped by the qdisc (which
/// `sendmmsg` counts as sent), one waits for its neighbour, one fails
/// (`EINVAL`, port 0: the errno `sendmmsg` loses) and the last is not
/// sent.
const FATES: &str = "link add eth0 type mem peer 10.0.0.2 rate 1mbit
addr add 10.0.0.1/24 dev eth0
tc qdisc replace dev eth0 root pfifo limit 2
socket s1 udp bind 10.0.0.1:5000
send s1 to 10.0.0.2:9000 len 10
sleep 100ms
sendmmsg s1 to 10.0.0.2:9000 len 1000 to 10.0.0.2:9000 len 1000 to 10.0.0.2:9000 len 1000 \
to 10.0.0.2:9000 len 1000 to 10.0.0.2:9000 len 1000 to 10.0.0.2:9000 len 1000 \
to 10.0.0.2:9000 len 1000 to 10.0.0.9:9000 len 100 to 10.0.0.2:0 len 5 to 10.0.0.2:9000 len 1 fates
";

#[test]
fn sendmmsg_fates_in_text_and_json() {
    let d = tmpdir("fates");
    let r = run_script(&d, FATES, &["--no-stats"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout.lines().nth(1).unwrap(),
        "line 7: sendmmsg s1 = 8 [1000, 1000, 1000, 1000, 1000, 1000, 1000, 100] fates \
         [sent, queued, queued, dropped(QDISC_DROP), dropped(QDISC_DROP), dropped(QDISC_DROP), \
         dropped(QDISC_DROP), queued, failed(EINVAL), not-sent]"
    );
    let r = run_script(&d, FATES, &["--no-stats", "--json"]);
    let v = &json_lines(&r.stdout)[1];
    let msgs = v["msgs"].as_array().unwrap();
    let fates: Vec<&str> = msgs.iter().map(|m| m["fate"].as_str().unwrap()).collect();
    assert_eq!(
        fates,
        [
            "sent", "queued", "queued", "dropped", "dropped", "dropped", "dropped", "queued",
            "failed", "not-sent"
        ]
    );
    assert_eq!(msgs[3]["reason"], "QDISC_DROP");
    assert_eq!(msgs[8]["errno"], "EINVAL");
    assert_eq!(v["ret"], 8);
}

#[test]
fn sendmmsg_without_fates_prints_as_before() {
    let d = tmpdir("no-fates");
    let script = FATES.replace(" fates\n", "\n");
    let r = run_script(&d, &script, &["--no-stats"]);
    assert_eq!(
        r.stdout.lines().nth(1).unwrap(),
        "line 7: sendmmsg s1 = 8 [1000, 1000, 1000, 1000, 1000, 1000, 1000, 100]"
    );
}

/// The README's example: a pcapng capture whose frames tshark shows with
/// their comments (socket, queue time, qdisc, the drop and its place).
#[test]
fn capture_pcapng_comments_as_tshark_shows_them() {
    let Some(tshark) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("tshark"))
            .find(|t| t.is_file())
    }) else {
        eprintln!("SKIPPED (tshark not installed): capture_pcapng_comments_as_tshark_shows_them");
        return;
    };
    let d = tmpdir("pcapng-comments");
    let script = "link add eth0 type mem peer 10.0.0.2 rate 1mbit
addr add 10.0.0.1/24 dev eth0
tc qdisc replace dev eth0 root handle 1: pfifo limit 2
capture dev eth0 file see.pcapng
socket s1 udp bind 10.0.0.1:5000
send s1 to 10.0.0.2:9000 len 10
sleep 100ms
sendmmsg s1 to 10.0.0.2:9000 len 1000 to 10.0.0.2:9000 len 1000 to 10.0.0.2:9000 len 1000 \
to 10.0.0.2:9000 len 1000 to 10.0.0.9:9000 len 100 to 10.0.0.2:0 len 5 to 10.0.0.2:9000 len 1 fates
sleep 4s
";
    let r = run_script(&d, script, &["--no-stats", "--drops"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = std::process::Command::new(tshark)
        .args(["-r", "see.pcapng", "-T", "fields", "-e", "frame.comment"])
        .current_dir(&d)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let drop = "drop QDISC_DROP at qdisc_drop() (ipxmit sched::Qdisc::enqueue)";
    let want = [
        "sock 0 queue 0 ns qdisc bypass".to_string(),
        "sock 1 queue 0 ns qdisc bypass".into(),
        "sock 1 queue 0 ns qdisc bypass".into(),
        format!("sock 1 queue 0 ns qdisc 1: {drop}"),
        format!("sock 0 queue 0 ns qdisc 1: {drop}"),
        "sock 1 queue 8336000 ns qdisc 1:".into(),
        "sock 1 queue 8336000 ns qdisc 1:".into(),
        "sock 0 queue 0 ns qdisc bypass".into(),
        "sock 0 queue 0 ns qdisc bypass".into(),
        "sock 1 drop NEIGH_FAILED at neigh_invalidate() (ipxmit neigh::invalidate)".into(),
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), want, "{text}");
}

/// A capture names the class a classful qdisc put each frame in, and shows
/// the packets dropped above the device — by a POST_ROUTING rule, by a
/// neighbour that failed — as IP packets behind a link header with no
/// destination, each with its drop's reason and place.
#[test]
fn capture_pcapng_names_the_class_and_drops_above_the_device() {
    let Some(tshark) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("tshark"))
            .find(|t| t.is_file())
    }) else {
        eprintln!(
            "SKIPPED (tshark not installed): capture_pcapng_names_the_class_and_drops_above_the_device"
        );
        return;
    };
    let d = tmpdir("pcapng-class-drops");
    let script = "link add eth0 type mem peer 10.0.0.2
addr add 10.0.0.1/24 dev eth0
tc qdisc replace dev eth0 root handle 1: htb default 10
tc class add dev eth0 parent 1: classid 1:10 htb rate 1mbit
capture dev eth0 file c.pcapng
nft add table ip t
nft add chain ip t post { type filter hook postrouting priority 0 \\; }
nft add rule ip t post udp dport 7 drop
socket s1 udp bind 10.0.0.1:5000
send s1 to 10.0.0.2:9000 len 10
send s1 to 10.0.0.2:7 len 10
send s1 to 10.0.0.9:9000 len 10
sleep 4s
";
    let r = run_script(&d, script, &["--no-stats"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let fields = ["eth.dst", "ip.dst", "udp.dstport", "frame.comment"];
    let mut args = vec!["-r", "c.pcapng", "-T", "fields"];
    for f in fields {
        args.extend(["-e", f]);
    }
    let out = std::process::Command::new(tshark)
        .args(args)
        .current_dir(&d)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let arp = "ff:ff:ff:ff:ff:ff\t\t\tsock 0 queue 0 ns qdisc 1: class 1:10";
    let want = [
        arp.to_string(),
        "02:00:00:00:00:fe\t10.0.0.2\t9000\tsock 1 queue 0 ns qdisc 1: class 1:10".into(),
        "00:00:00:00:00:00\t10.0.0.2\t7\tsock 1 drop NETFILTER_DROP at nf_hook_slow() \
         (ipxmit ipv4::output::OutputBatch::filter)"
            .into(),
        arp.into(),
        arp.into(),
        arp.into(),
        "00:00:00:00:00:00\t10.0.0.9\t9000\tsock 1 drop NEIGH_FAILED at neigh_invalidate() \
         (ipxmit neigh::invalidate)"
            .into(),
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), want, "{text}");
}
