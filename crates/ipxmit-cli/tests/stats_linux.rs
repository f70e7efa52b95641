//! The statistics ipxmit prints, held against what ip(8), tc(8) and nstat(8)
//! print on this machine: the same counter names, columns, JSON field names,
//! order and nesting, so that one parser reads both. Tests that need a
//! network namespace print a SKIPPED line without root; the nstat tests skip
//! when `nstat` is not installed.

mod common;

use std::process::Command;

use common::{ipxmit, run_script, tmpdir};
use ipxmit_drivers::netns::Netns;
use serde_json::Value;

/// A host with a verifying peer on a two-queue link, a pfifo on a second
/// link, a fragmented send and a failing one (a drop reason).
const SCRIPT: &str = "link add eth0 type mem peer 10.0.0.2 txqueues 2
link add dummy0 type null
addr add 10.0.0.1/24 dev eth0
addr add 172.16.0.1/16 dev dummy0
qdisc replace dev dummy0 root pfifo limit 10
socket s1 udp bind 10.0.0.1:5000
send s1 to 10.0.0.2:9000 len 3000
sockopt s1 ip_mtu_discover do
send s1 to 10.0.0.2:9000 len 3000
sleep 1s
";

/// Why a root-only test cannot run here (and says so), else `None`.
fn skip(test: &str) -> bool {
    match ipxmit_drivers::netns::unavailable() {
        None => false,
        Some(why) => {
            eprintln!("SKIPPED (needs root and network namespaces): {test} [{why}]");
            true
        }
    }
}

/// Runs `cmd ARGS` (in namespace `ns` when given); `None` when the program
/// is missing.
fn tool(ns: Option<&Netns>, cmd: &str, args: &[&str]) -> Option<String> {
    let mut c = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns.name(), cmd]);
            c
        }
        None => Command::new(cmd),
    };
    let out = c.args(args).output().ok()?;
    assert!(out.status.success(), "{cmd} {args:?}: {out:?}");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when `nstat` is installed (else prints a SKIPPED line).
fn have_nstat(test: &str) -> bool {
    let ok = Command::new("nstat").arg("-V").output().is_ok();
    if !ok {
        eprintln!("SKIPPED (nstat is not installed): {test}");
    }
    ok
}

/// The lines of the `#kernel` block of `text` (up to a blank line).
fn kernel_block(text: &str) -> Vec<&str> {
    let at = text.find("#kernel\n").expect("an nstat block") + "#kernel\n".len();
    text[at..].lines().take_while(|l| !l.is_empty()).collect()
}

/// True when `sub` appears in `all` in the same order.
fn is_subsequence(sub: &[&str], all: &[&str]) -> bool {
    let mut it = all.iter();
    sub.iter().all(|s| it.any(|a| a == s))
}

/// Object keys, in order.
fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .expect("an object")
        .keys()
        .map(|k| k.as_str())
        .collect()
}

/// Every MIB name ipxmit prints is one `nstat -az` knows, in nstat's order;
/// with every counter at zero, each of ipxmit's lines is, byte for byte, the
/// line nstat prints in a fresh namespace (columns `%-32s%-16llu%6.1f`).
#[test]
fn nstat_names_order_and_columns_are_nstats() {
    let test = "nstat_names_order_and_columns_are_nstats";
    if !have_nstat(test) {
        return;
    }
    let d = tmpdir("stats-linux-nstat");
    let zero = run_script(&d, "", &["--all"]);
    assert_eq!(zero.code, 0, "{}", zero.stderr);
    let ours = kernel_block(&zero.stdout);
    let names: Vec<&str> = ours.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert!(names.contains(&"IpOutTransmits"), "{names:?}");
    // -a: ignore history, -s: do not update it, -z: zeros too.
    let here = tool(None, "nstat", &["-asz"]).unwrap();
    let known: Vec<&str> = kernel_block(&here)
        .iter()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert!(
        is_subsequence(&names, &known),
        "{names:?} not in nstat's order"
    );
    if skip(test) {
        return;
    }
    let ns = Netns::unique("nstat").unwrap();
    let fresh = tool(Some(&ns), "nstat", &["-asz"]).unwrap();
    let theirs = kernel_block(&fresh);
    for l in &ours {
        assert!(theirs.contains(l), "{l:?} is not a line of nstat -az");
    }
}

/// `nstat -j`: `{"kernel": {NAME: n}}`, ipxmit's names a subsequence of the
/// kernel's; `--all` zeros equal the fresh namespace's zeros.
#[test]
fn nstat_json_is_nstats() {
    let test = "nstat_json_is_nstats";
    if !have_nstat(test) {
        return;
    }
    let d = tmpdir("stats-linux-nstat-json");
    let r = run_script(&d, "", &["--all", "--json"]);
    let v: Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    let here: Value = serde_json::from_str(&tool(None, "nstat", &["-jasz"]).unwrap()).unwrap();
    assert_eq!(keys(&v["nstat"]), keys(&here));
    let ours = keys(&v["nstat"]["kernel"]);
    assert!(is_subsequence(&ours, &keys(&here["kernel"])), "{ours:?}");
    if skip(test) {
        return;
    }
    let ns = Netns::unique("nstatj").unwrap();
    let fresh: Value =
        serde_json::from_str(&tool(Some(&ns), "nstat", &["-jasz"]).unwrap()).unwrap();
    for k in ours {
        assert_eq!(v["nstat"]["kernel"][k], fresh["kernel"][k], "{k}");
    }
}

/// The text summary: the nstat block ends at a blank line; ipxmit's own
/// blocks (drop reasons, peer) come after it, each on a line beginning
/// `ipxmit `, never as `#` sections an nstat parser would read.
#[test]
fn ipxmit_blocks_follow_the_tools_blocks() {
    let d = tmpdir("stats-linux-blocks");
    let r = run_script(&d, SCRIPT, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let at = r.stdout.find("#kernel\n").unwrap();
    let rest = &r.stdout[at..];
    let (nstat, own) = rest.split_once("\n\n").expect("a blank line after nstat");
    assert!(nstat
        .lines()
        .skip(1)
        .all(|l| l.split_whitespace().count() == 3));
    assert!(!own.contains('#'), "{own}");
    let heads: Vec<&str> = own.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(heads.len(), 2, "{own}");
    assert_eq!(heads[0], "ipxmit drop reasons:");
    assert!(heads[1].starts_with("ipxmit peer 10.0.0.2 "), "{own}");
    assert!(own.contains("    PKT_TOO_BIG"), "{own}");
}

/// The entries of a JSON list that are not `lo`'s (ipxmit lists the
/// loopback device first, as the kernel numbers it 1; the kernel side of
/// these tests is filtered by device).
fn not_lo(v: &Value) -> Vec<Value> {
    let all = v.as_array().expect("a list").iter();
    all.filter(|x| x["dev"] != "lo" && x["ifname"] != "lo")
        .cloned()
        .collect()
}

/// `send --json` and `run --json` end with the same statistics keys, and
/// their link objects have the same fields.
#[test]
fn send_and_run_json_have_one_shape() {
    let d = tmpdir("stats-linux-shape");
    let s = ipxmit(&d, &["send", "-n", "10", "--json"]);
    assert_eq!(s.code, 0, "{s:?}");
    let s: Value = serde_json::from_str(s.stdout.trim()).unwrap();
    let r = run_script(&d, SCRIPT, &["--json"]);
    let r: Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    for k in ["links", "qdiscs", "nstat", "ipxmit", "ok"] {
        assert!(s.get(k).is_some() && r.get(k).is_some(), "{k}");
    }
    assert_eq!(keys(&s["links"][0]), keys(&r["links"][0]));
    // send's pfifo_fast root and run's pfifo root (dummy0); `lo`'s
    // noqueue comes first in both.
    let (sq, rq) = (not_lo(&s["qdiscs"]), not_lo(&r["qdiscs"]));
    assert_eq!(keys(&sq[0]), keys(&rq[3]), "roots");
    assert_eq!(keys(&s["nstat"]), ["kernel"]);
    assert_eq!(keys(&s["ipxmit"]), ["drop_reasons", "send_batch"]);
    assert_eq!(keys(&r["ipxmit"]), ["drop_reasons", "send_batch", "links"]);
}

/// `ip -j -s link show dev X` of an up veth (less its `link`, the peer
/// device) and of ipxmit's Ethernet link: the same fields in the same order
/// and nesting, the same flags and states; the text's statistics headers
/// are the same lines.
#[test]
fn ip_link_matches_iproute2() {
    if skip("ip_link_matches_iproute2") {
        return;
    }
    let ns = Netns::unique("iplink").unwrap();
    ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"])
        .unwrap();
    ns.ip(&["link", "set", "v1", "up"]).unwrap();
    ns.ip(&["link", "set", "v0", "up"]).unwrap();
    let real: Value =
        serde_json::from_str(&ns.ip(&["-j", "-s", "link", "show", "dev", "v0"]).unwrap()).unwrap();
    let mut real = real[0].clone();
    real.as_object_mut().unwrap().shift_remove("link");
    let d = tmpdir("stats-linux-iplink");
    let r = run_script(&d, SCRIPT, &["--json"]);
    let v: Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    let ours = &not_lo(&v["links"])[0];
    assert_eq!(keys(ours), keys(&real));
    for k in ["rx", "tx"] {
        assert_eq!(keys(&ours["stats64"][k]), keys(&real["stats64"][k]), "{k}");
    }
    for k in [
        "flags",
        "operstate",
        "linkmode",
        "group",
        "link_type",
        "broadcast",
    ] {
        assert_eq!(ours[k], real[k], "{k}");
    }
    let text = ns.ip(&["-s", "link", "show", "dev", "v0"]).unwrap();
    let real_lines: Vec<&str> = text.lines().collect();
    let t = run_script(&d, SCRIPT, &[]).stdout;
    let ours: Vec<&str> = t[t.find("2: eth0:").unwrap()..].lines().take(6).collect();
    assert_eq!(ours[2], real_lines[2]);
    assert_eq!(ours[4], real_lines[4]);
    let words = |l: &str| -> Vec<String> {
        l.split_whitespace()
            .skip(3)
            .step_by(2)
            .map(String::from)
            .collect()
    };
    assert_eq!(
        words(ours[0]),
        words(real_lines[0]),
        "mtu qdisc state mode group qlen"
    );
}

/// `tc -s -j qdisc show` (no device named, so each object has `dev`): a
/// `pfifo` root and an `mq` with `pfifo_fast` children have the fields tc
/// prints, in its order; options are objects.
#[test]
fn tc_json_matches_tc() {
    if skip("tc_json_matches_tc") {
        return;
    }
    let ns = Netns::unique("tcjson").unwrap();
    ns.ip(&[
        "link",
        "add",
        "v0",
        "numtxqueues",
        "2",
        "type",
        "veth",
        "peer",
        "name",
        "v1",
    ])
    .unwrap();
    ns.ip(&["link", "set", "v0", "up"]).unwrap();
    let tc = |args: &[&str]| tool(Some(&ns), "tc", args).expect("tc is installed");
    tc(&["qdisc", "replace", "dev", "v0", "root", "mq"]);
    tc(&[
        "qdisc", "replace", "dev", "v1", "root", "pfifo", "limit", "10",
    ]);
    let real: Value = serde_json::from_str(&tc(&["-s", "-j", "qdisc", "show"])).unwrap();
    let real_of = |dev: &str| -> Vec<Value> {
        let all = real.as_array().unwrap().iter();
        all.filter(|q| q["dev"] == dev).cloned().collect()
    };
    let d = tmpdir("stats-linux-tc");
    let r = run_script(&d, SCRIPT, &["--json"]);
    let v: Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    let ours = not_lo(&v["qdiscs"]);
    let (mq, pfifo) = (real_of("v0"), real_of("v1"));
    assert_eq!(mq.len(), 3, "{mq:?}");
    for (o, t) in ours[..3].iter().zip(&mq) {
        assert_eq!(o["kind"], t["kind"]);
        assert_eq!(keys(o), keys(t), "{}", t["kind"]);
        assert_eq!(keys(&o["options"]), keys(&t["options"]), "{}", t["kind"]);
    }
    assert_eq!(keys(&ours[3]), keys(&pfifo[0]), "pfifo");
    assert_eq!(ours[3]["options"], pfifo[0]["options"]);
}
