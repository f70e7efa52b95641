//! `-v`, `-vv`, `-vvv` and `RUST_LOG` through the real binary: the
//! library's tracepoint events on stderr, by level.

mod common;

use std::process::{Command, Stdio};

use common::{bin, tmpdir, Run};

/// A host with a static neighbour (one `neigh_update`) and one send: a
/// route lookup, then one frame through the default qdisc to the driver.
const SCRIPT: &str = "link add eth0 type mem peer 10.0.0.2
addr add 10.0.0.1/24 dev eth0
neigh add 10.0.0.2 lladdr 02:00:00:00:00:02 dev eth0 nud permanent
socket s1 udp bind 10.0.0.1:5000
send s1 to 10.0.0.2:9000 len 100
";

/// Runs `ipxmit ARGS run script.txt` with `RUST_LOG` set to `rust_log`
/// (or unset).
fn run(name: &str, args: &[&str], rust_log: Option<&str>) -> Run {
    let d = tmpdir(name);
    std::fs::write(d.join("script.txt"), SCRIPT).unwrap();
    let mut c = Command::new(bin());
    c.args(args)
        .args(["run", "script.txt"])
        .current_dir(&d)
        .stdin(Stdio::null());
    match rust_log {
        Some(v) => c.env("RUST_LOG", v),
        None => c.env_remove("RUST_LOG"),
    };
    let r: Run = c.output().expect("run ipxmit").into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    r
}

fn lines_with<'a>(stderr: &'a str, event: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|l| l.contains(&format!(" {event} ")) || l.ends_with(&format!(" {event}")))
        .collect()
}

#[test]
fn vvv_prints_every_packet_s_tracepoints() {
    let r = run("verbose-vvv", &["-vvv"], None);
    let x = lines_with(&r.stderr, "net_dev_xmit");
    assert_eq!(x.len(), 1, "one frame sent:\n{}", r.stderr);
    assert!(x[0].contains("TRACE ipxmit::net: net_dev_xmit"), "{}", x[0]);
    assert!(x[0].contains("dev=eth0 len=142 rc=0"), "{}", x[0]);
    for e in ["net_dev_queue", "net_dev_start_xmit", "fib_table_lookup"] {
        assert_eq!(lines_with(&r.stderr, e).len(), 1, "{e}:\n{}", r.stderr);
    }
    let n = lines_with(&r.stderr, "neigh_update");
    assert_eq!(n.len(), 1, "{}", r.stderr);
    assert!(n[0].contains("primary_key4=10.0.0.2"), "{}", n[0]);
    assert!(n[0].contains("new_state=PERMANENT"), "{}", n[0]);
}

#[test]
fn v_prints_the_slow_path_and_no_per_packet_events() {
    let r = run("verbose-v", &["-v"], None);
    let f = lines_with(&r.stderr, "fib_table_lookup");
    assert_eq!(f.len(), 1, "{}", r.stderr);
    assert!(f[0].contains("INFO ipxmit::fib"), "{}", f[0]);
    assert!(f[0].contains("dst=10.0.0.2"), "{}", f[0]);
    assert!(f[0].contains("dev=eth0"), "{}", f[0]);
    assert_eq!(lines_with(&r.stderr, "neigh_update").len(), 1);
    for e in ["net_dev_queue", "net_dev_start_xmit", "net_dev_xmit"] {
        assert!(lines_with(&r.stderr, e).is_empty(), "{e}:\n{}", r.stderr);
    }
}

#[test]
fn without_v_nothing_and_rust_log_decides_when_set() {
    let r = run("verbose-none", &[], None);
    assert_eq!(r.stderr, "", "no event without -v");
    let r = run("verbose-rust-log", &["-v"], Some("ipxmit::net=trace"));
    assert_eq!(
        lines_with(&r.stderr, "net_dev_xmit").len(),
        1,
        "{}",
        r.stderr
    );
    assert!(
        lines_with(&r.stderr, "fib_table_lookup").is_empty(),
        "RUST_LOG, not -v, chose:\n{}",
        r.stderr
    );
    let r = run("verbose-bad-rust-log", &[], Some("ipxmit=loud"));
    assert!(
        r.stderr
            .starts_with("ipxmit: ignoring RUST_LOG=\"ipxmit=loud\""),
        "{}",
        r.stderr
    );
}
