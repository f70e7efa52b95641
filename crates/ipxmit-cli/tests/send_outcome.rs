//! `ipxmit send` accounts for every datagram, through the real binary:
//! each IP packet it sent left the device, was dropped (by reason) or is
//! still queued at exit; the exit status follows, and a failure says why on
//! stderr. The verifying peer answers ARP for its own address only (or
//! stands for the gateway of routed destinations) and does the NIC's part
//! of checksum and GSO offload. Ctrl-C prints the summary and exits 130.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bin, ipxmit, tmpdir, Run};
use serde_json::Value;

fn json(r: &Run) -> Value {
    serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {r:?}"))
}

/// sent + dropped + queued at exit = packets, nothing unaccounted.
fn assert_balanced(o: &Value) {
    let q = &o["queued_at_exit"];
    let sum = o["sent"].as_u64().unwrap()
        + o["dropped"].as_u64().unwrap()
        + q["neighbour"].as_u64().unwrap()
        + q["qdisc"].as_u64().unwrap();
    assert_eq!(sum, o["packets"].as_u64().unwrap(), "{o}");
    assert_eq!(o["unaccounted"], 0, "{o}");
}

/// `pfifo limit 0` drops the ARP request; the unresolved queue fills and
/// drops the rest. Today: 91 datagrams in no counter, exit 1 without a word.
#[test]
fn qdisc_limit_0_accounts_every_packet_and_says_why() {
    let d = tmpdir("outcome-pfifo0");
    let r = ipxmit(
        &d,
        &[
            "send",
            "-n",
            "1000",
            "--qdisc",
            "pfifo limit 0",
            "--linger",
            "100ms",
            "--json",
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    let v = json(&r);
    assert_eq!(v["ok"], false);
    let o = &v["outcome"];
    assert_balanced(o);
    assert_eq!(o["packets"], 1000);
    assert_eq!(o["sent"], 0);
    assert_eq!(o["drop_reasons"]["NEIGH_QUEUEFULL"], o["dropped"]);
    assert!(
        o["queued_at_exit"]["neighbour"].as_u64().unwrap() > 0,
        "{o}"
    );
    assert_eq!(o["other_dropped"], 1, "the ARP request: {o}");
    assert!(
        r.stderr
            .contains("IP packets dropped (QDISC_DROP 1, NEIGH_QUEUEFULL"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("still queued after waiting"),
        "{}",
        r.stderr
    );
}

/// A mistyped on-link destination: nobody answers its ARP, so nothing is
/// verified and the run fails (today the peer answers and it "verifies").
/// Within the wait the datagrams are still queued; after it the neighbour
/// failed and they are dropped as `NEIGH_FAILED`.
#[test]
fn unanswered_neighbour_is_not_success() {
    let d = tmpdir("outcome-noneigh");
    let r = ipxmit(
        &d,
        &[
            "send", "-n", "10", "-c", "10.0.0.7", "--linger", "50ms", "--json",
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    let v = json(&r);
    assert_eq!(v["peer"]["verified"], 0);
    assert_eq!(v["outcome"]["queued_at_exit"]["neighbour"], 10);
    assert_balanced(&v["outcome"]);
    assert!(
        r.stderr.contains("10 IP packets still queued"),
        "{}",
        r.stderr
    );

    let r = ipxmit(
        &d,
        &["send", "-n", "10", "-c", "10.0.0.7", "--linger", "5s"],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains("result: 10 IP packets: 0 sent, 10 dropped (NEIGH_FAILED 10), 0 queued"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr
            .contains("10 of 10 IP packets dropped (NEIGH_FAILED 10)"),
        "{}",
        r.stderr
    );
}

/// A routed destination reaches the peer standing for the gateway; every
/// packet sent, exit 0, nothing on stderr.
#[test]
fn routed_destination_through_the_gateway_peer() {
    let d = tmpdir("outcome-routed");
    let r = ipxmit(&d, &["send", "-n", "50", "-c", "192.168.1.1", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = json(&r);
    assert_eq!(v["ok"], true);
    assert_eq!(v["peer"]["verified"], 50);
    assert_eq!(v["outcome"]["sent"], 50);
    assert_balanced(&v["outcome"]);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

/// The default device with checksum offload, and with UDP GSO: the far end
/// does the NIC's part, so every datagram (every segment) verifies.
#[test]
fn offloads_on_the_default_device_verify() {
    let d = tmpdir("outcome-offload");
    let r = ipxmit(&d, &["send", "-n", "50", "--offload", "csum", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = json(&r);
    assert_eq!(v["peer"]["verified"], 50);
    assert_eq!(v["peer"]["drops"], 0);

    let args = ["send", "-n", "20", "-l", "8000", "--gso", "1000", "--json"];
    let mut hw = args.to_vec();
    hw.extend(["--offload", "sg,csum,gso"]);
    for a in [&args[..], &hw[..]] {
        let r = ipxmit(&d, a);
        assert_eq!(r.code, 0, "{a:?}: {r:?}");
        let v = json(&r);
        assert_eq!(v["peer"]["verified"], 160, "{a:?}");
        assert_balanced(&v["outcome"]);
    }
}

/// Ctrl-C: the summary so far, a word on stderr, exit 130.
#[test]
fn ctrl_c_prints_the_summary_and_exits_130() {
    let d = tmpdir("outcome-sigint");
    let child = Command::new(bin())
        .args(["send", "-n", "1000000000", "-l", "100"])
        .current_dir(&d)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let r: Run = child.wait_with_output().unwrap().into();
    assert_eq!(r.code, 130, "{r:?}");
    assert!(r.stdout.contains("result: "), "{}", r.stdout);
    assert!(r.stdout.contains("; interrupted"), "{}", r.stdout);
    assert!(r.stderr.contains("interrupted (Ctrl-C)"), "{}", r.stderr);
}
