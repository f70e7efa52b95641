//! The receive-side script lines: `inject dev D icmp frag-needed`, `inject
//! dev D frame HEX`, `recv NAME`, and a capture of `lo`.

mod common;

use common::{json_lines, pcap_frames, run_script, tmpdir};
use serde_json::Value;

fn op(v: &[Value], line: u64) -> &Value {
    v.iter()
        .find(|e| e["line"] == line)
        .unwrap_or_else(|| panic!("no result for line {line}"))
}

#[test]
fn injected_frag_needed_fails_the_next_send_and_lowers_the_fragments() {
    let d = tmpdir("rx-frag-needed");
    let script = "\
link add eth0 type mem peer 10.0.0.2
addr add 10.0.0.1/24 dev eth0
capture dev eth0 file eth0.pcap
socket s udp bind 10.0.0.1:4000
sockopt s ip_recverr 1
send s to 10.0.0.2:9 len 1400
inject dev eth0 icmp frag-needed mtu 1200 from 10.0.0.254
send s to 10.0.0.2:9 len 1400
errqueue s
send s to 10.0.0.2:9 len 1400
";
    let r = run_script(&d, script, &["--json"]);
    let v = json_lines(&r.stdout);
    assert_eq!(op(&v, 6)["ret"], 1400);
    assert_eq!(op(&v, 8)["errno"], "EMSGSIZE", "the pending error");
    let e = &op(&v, 9)["entries"][0];
    assert_eq!(
        (&e["ee_errno"], &e["ee_origin"]),
        (&"EMSGSIZE".into(), &"icmp".into())
    );
    assert_eq!(
        (&e["ee_type"], &e["ee_code"], &e["ee_info"]),
        (&3.into(), &4.into(), &1200.into())
    );
    assert_eq!(e["offender"], "10.0.0.254");
    assert_eq!(op(&v, 10)["ret"], 1400);
    let stats = v.last().unwrap();
    assert_eq!(stats["nstat"]["kernel"]["IcmpInDestUnreachs"], 1);
    let ip_lens: Vec<usize> = pcap_frames(&d.join("eth0.pcap"))
        .iter()
        .filter(|(_, f)| f[12..14] == [8, 0])
        .map(|(_, f)| usize::from(u16::from_be_bytes([f[16], f[17]])))
        .collect();
    assert_eq!(
        ip_lens,
        [1428, 1196, 252],
        "before, then at the new path MTU"
    );
}

#[test]
fn udp_over_lo_is_received_captured_and_refused_when_no_one_listens() {
    let d = tmpdir("rx-lo");
    let script = "\
capture dev lo file lo.pcap
socket r udp bind 127.0.0.1:5000
socket t udp
send t to 127.0.0.1:5000 len 100
recv r
recv r
connect t 127.0.0.1:5001
send t len 10
send t len 10
inject dev lo frame 00000000000000000000000008004500
";
    let r = run_script(&d, script, &["--json"]);
    let v = json_lines(&r.stdout);
    let got = op(&v, 5);
    assert_eq!(got["ret"], 100);
    assert!(got["from"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(op(&v, 6)["errno"], "EAGAIN");
    assert_eq!(op(&v, 8)["ret"], 10);
    assert_eq!(
        op(&v, 9)["errno"],
        "ECONNREFUSED",
        "port unreachable via lo"
    );
    let frames = pcap_frames(&d.join("lo.pcap"));
    assert_eq!(frames.len(), 3, "datagram, datagram, port unreachable");
    assert_eq!(frames[2].1[23], 1, "ICMP");
    let stats = v.last().unwrap();
    let k = &stats["nstat"]["kernel"];
    assert_eq!(
        (&k["UdpNoPorts"], &k["UdpInDatagrams"]),
        (&1.into(), &1.into())
    );
    assert_eq!(k["IpInHdrErrors"], 1, "the injected short frame");
}

#[test]
fn inject_without_a_datagram_to_quote_stops_the_script() {
    let d = tmpdir("rx-nothing");
    let script = "\
link add eth0 type null
inject dev eth0 icmp frag-needed mtu 1200 from 10.0.0.254
";
    std::fs::write(d.join("s.txt"), script).unwrap();
    let r = common::ipxmit(&d, &["run", "s.txt"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("line 2: inject: eth0 has sent no IPv4 datagram to quote"),
        "{}",
        r.stderr
    );
}
