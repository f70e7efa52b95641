//! Broadcast, multicast and a down link through the script language:
//! `sockopt NAME so_broadcast 1`, `ip_multicast_ttl`/`_if`/`_loop`, and
//! `link set eth0 down` before a `send`, answered with the kernel's errnos
//! and frames (checked in a capture).

mod common;

use common::{json_lines, pcap_frames, run_script, tmpdir};

const HOST: &str = "link add eth0 type mem peer 10.0.0.2
addr add 10.0.0.1/24 dev eth0
capture dev eth0 file eth0.pcap
";

/// The `errno` of each result line of op `op`, or `ok` for a success (a
/// successful `sockopt` prints no line).
fn results(stdout: &str, op: &str) -> Vec<String> {
    json_lines(stdout)
        .into_iter()
        .filter(|v| v["op"] == op)
        .map(|v| match v["errno"].as_str() {
            Some(e) => e.to_string(),
            None => "ok".to_string(),
        })
        .collect()
}

#[test]
fn script_broadcast_needs_so_broadcast_and_multicast_maps_the_group() {
    let d = tmpdir("bcast-mcast");
    let script = format!(
        "{HOST}socket s1 udp
send s1 to 10.0.0.255:9 len 10
send s1 to 224.0.0.1:9 len 10
sockopt s1 so_broadcast 1
send s1 to 10.0.0.255:9 len 10
sockopt s1 ip_multicast_if 10.0.0.1
sockopt s1 ip_multicast_ttl 5
sockopt s1 ip_multicast_loop 0
sockopt s1 ip_multicast_if 10.9.9.9
sockopt s1 ip_multicast_if nosuch0
send s1 to 239.1.2.3:9 len 10
"
    );
    let r = run_script(&d, &script, &["--json", "--no-stats"]);
    assert_eq!(
        results(&r.stdout, "send"),
        ["EACCES", "ENETUNREACH", "ok", "ok"],
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(
        results(&r.stdout, "sockopt"),
        ["EADDRNOTAVAIL", "EADDRNOTAVAIL"],
        "{}",
        r.stdout
    );
    let frames: Vec<Vec<u8>> = pcap_frames(&d.join("eth0.pcap"))
        .into_iter()
        .map(|(_, f)| f)
        .collect();
    assert_eq!(frames.len(), 2, "no ARP request, two datagrams");
    assert_eq!(frames[0][..6], [0xff; 6]);
    assert_eq!(frames[0][14 + 8], 64, "unicast TTL for a broadcast");
    assert_eq!(frames[1][..6], [0x01, 0x00, 0x5e, 0x01, 0x02, 0x03]);
    assert_eq!(frames[1][14 + 8], 5, "ip_multicast_ttl");
}

#[test]
fn script_send_on_a_down_link_is_enetunreach() {
    let d = tmpdir("link-down-send");
    let script = format!(
        "{HOST}socket s1 udp
link set eth0 down
send s1 to 10.0.0.7:9 len 10
link set eth0 up
send s1 to 10.0.0.2:9 len 10
"
    );
    let r = run_script(&d, &script, &["--json", "--no-stats"]);
    assert_eq!(
        results(&r.stdout, "send"),
        ["ENETUNREACH", "ok"],
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    let frames = pcap_frames(&d.join("eth0.pcap"));
    let arp_for = |ip: [u8; 4]| {
        frames
            .iter()
            .filter(|(_, f)| f[12..14] == [0x08, 0x06] && f[38..42] == ip)
            .count()
    };
    assert_eq!(arp_for([10, 0, 0, 7]), 0, "no ARP on the down link");
    assert_eq!(arp_for([10, 0, 0, 2]), 1, "the send after up resolves");
}
