//! `nft` lines in scripts without root: listings as nft 1.0.6 printed them
//! for the same commands on this machine (captured in a namespace), and
//! refusals (`line L: Error: ...`, exit 2). `nft_kernel` compares the same
//! against the live kernel when run as root.

mod common;

use common::{run_script, tmpdir};

const SETUP: &str = "link add eth0 type null
ip addr add 10.0.0.1/24 dev eth0
nft add table ip t
nft add chain ip t out '{ type filter hook output priority 0; policy accept; }'
nft add chain ip t o2 '{ type filter hook output priority 10; policy drop; }'
nft add chain ip t o6 '{ type filter hook output priority mangle - 5; }'
nft add chain ip t o4 '{ type filter hook postrouting priority srcnat; }'
nft add chain ip t sub
nft add set ip t s2 '{ type inet_service; flags interval; }'
nft add element ip t s2 '{ 1000-2000, 53 }'
nft add rule ip t out ip dscp 0x22 ip dscp 5 ip dscp != ef ip dscp { cs1, 7 }
nft add rule ip t out ip protocol { udp, 6, 132, 50 } meta l4proto 1
nft add rule ip t out meta mark 5 mark != 0x3 meta mark { 1, 2 } meta mark 1-5
nft add rule ip t out meta priority none meta priority root meta priority 1:fff
nft add rule ip t out ip saddr 10.0.0.0/24 ip daddr != 10.0.0.1-10.0.0.9 ip saddr { 10.0.0.0/8, 1.1.1.1, 2.2.2.2-2.2.2.5 }
nft add rule ip t out udp sport != { 53, 1000-2000 } udp dport @s2 jump sub
nft add rule ip t out ip ttl set 3 ip dscp set cs1 meta mark set 0x10 meta priority set 1:2
";

const LISTED: &str = "table ip t {
\tset s2 {
\t\ttype inet_service
\t\tflags interval
\t\telements = { 53, 1000-2000 }
\t}

\tchain out {
\t\ttype filter hook output priority filter; policy accept;
\t\tip dscp af41 ip dscp 0x05 ip dscp != ef ip dscp { 0x07, cs1 }
\t\tip protocol { tcp, udp, esp, sctp } meta l4proto icmp
\t\tmeta mark 0x00000005 meta mark != 0x00000003 meta mark { 0x00000001, 0x00000002 } meta mark 0x00000001-0x00000005
\t\tmeta priority none meta priority root meta priority 1:fff
\t\tip saddr 10.0.0.0/24 ip daddr != 10.0.0.1-10.0.0.9 ip saddr { 1.1.1.1, 2.2.2.2-2.2.2.5, 10.0.0.0/8 }
\t\tudp sport != { 53, 1000-2000 } udp dport @s2 jump sub
\t\tip ttl set 3 ip dscp set cs1 meta mark set 0x00000010 meta priority set 1:2
\t}

\tchain o2 {
\t\ttype filter hook output priority filter + 10; policy drop;
\t}

\tchain o6 {
\t\ttype filter hook output priority mangle - 5; policy accept;
\t}

\tchain o4 {
\t\ttype filter hook postrouting priority srcnat; policy accept;
\t}

\tchain sub {
\t}
}
";

#[test]
fn a_ruleset_is_listed_as_nft_lists_it() {
    let dir = tmpdir("nft_lines_list");
    let r = run_script(&dir, &format!("{SETUP}nft list ruleset\n"), &["--no-stats"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, LISTED);
}

#[test]
fn refusals_carry_nfts_message_and_the_line() {
    let cases = [
        (
            "nft add rule ip t nochain accept",
            "Error: Could not process rule: No such file or directory\nadd rule ip t nochain accept\n              ^^^^^^^",
        ),
        (
            "nft add rule ip t out ip dscp 64",
            "Error: Value 64 exceeds valid range 0-63\nadd rule ip t out ip dscp 64\n                          ^^",
        ),
        (
            "nft create table ip t",
            "Error: Could not process rule: File exists\ncreate table ip t\n                ^",
        ),
        (
            "nft delete rule ip t out handle 99",
            "Error: Could not process rule: No such file or directory\ndelete rule ip t out handle 99\n                            ^^",
        ),
        ("nft add rule ip t out foo bar", "Error: syntax error, unexpected foo"),
        ("nft add rule ip t out udp dport foo", "Error: Could not resolve service"),
        (
            "nft add rule ip t out udp dport 12 reject with tcp reset",
            "Error: you cannot use tcp reset with this protocol",
        ),
        (
            "nft add rule ip t out reject with icmp no-route",
            "Error: Could not parse icmp code",
        ),
        (
            "nft add rule ip t out reject with icmpx port-unreachable",
            "Error: abstracted ICMP unreachable not supported",
        ),
        (
            "nft add rule ip t out reject counter",
            "Error: Statement after terminal statement has no effect",
        ),
    ];
    for (line, want) in cases {
        let dir = tmpdir("nft_lines_refusal");
        let r = run_script(&dir, &format!("{SETUP}{line}\n"), &["--no-stats"]);
        let n = SETUP.lines().count() + 1;
        assert_eq!(r.code, 2, "{line}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!("line {n}: {want}")),
            "{line}:\n{}",
            r.stderr
        );
    }
}

#[test]
fn a_drop_rule_fails_the_send_with_eperm() {
    let dir = tmpdir("nft_lines_drop");
    let script = "link add eth0 type mem peer 10.0.0.2
ip addr add 10.0.0.1/24 dev eth0
nft add table ip t
nft add chain ip t out '{ type filter hook output priority 0; }'
nft add rule ip t out udp dport 9 counter drop
socket s udp
send s to 10.0.0.2:9 len 10
send s to 10.0.0.2:8 len 10
nft list chain ip t out
";
    let r = run_script(&dir, script, &["--no-stats"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("line 7: send s = -1 EPERM"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("line 8: send s = 10"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("udp dport 9 counter packets 1 bytes 38 drop"),
        "{}",
        r.stdout
    );
}

#[test]
fn log_writes_the_kernels_line_at_its_level_and_lists_as_nft() {
    let dir = tmpdir("nft_lines_log");
    let script = "link add eth0 type mem peer 10.0.0.2
ip addr add 10.0.0.1/24 dev eth0
ip link set eth0 up
nft add table ip t
nft add chain ip t out '{ type filter hook output priority 0; }'
nft add rule ip t out udp dport 9 log prefix '\"out: \"' counter
nft add rule ip t out udp dport 9 log level debug
nft add rule ip t out log group 2 prefix '\"nft-test: \"'
nft add rule ip t out log level warn flags ip options flags ether flags skuid flags tcp sequence,options
nft add rule ip t out log level debug flags ip options flags skuid
socket s udp
sockopt s so_mark 5
send s to 10.0.0.2:9 len 10
nft list chain ip t out
";
    let r = run_script(&dir, script, &["--no-stats"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(
            "\t\tudp dport 9 log prefix \"out: \" counter packets 1 bytes 38
\t\tudp dport 9 log level debug
\t\tlog prefix \"nft-test: \" group 2
\t\tlog flags all
\t\tlog level debug flags ip options flags skuid
"
        ),
        "{}",
        r.stdout
    );
    // warn (the default) and above reach stderr without -v.
    let warn: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("ipxmit::nft"))
        .collect();
    assert_eq!(warn.len(), 2, "{}", r.stderr);
    assert!(warn[0].contains(
        "out: IN= OUT=eth0 SRC=10.0.0.1 DST=10.0.0.2 LEN=38 TOS=0x00 PREC=0x00 TTL=64 ID="
    ));
    assert!(warn[0].contains(" DF PROTO=UDP SPT=") && warn[0].ends_with(" DPT=9 LEN=18 MARK=0x5"));
    let r = run_script(&dir, script, &["--no-stats", "-vv"]);
    let all = r
        .stderr
        .lines()
        .filter(|l| l.contains("ipxmit::nft"))
        .count();
    assert_eq!(all, 5, "{}", r.stderr);
    assert!(r.stderr.contains("nflog group 2: nft-test: IN= OUT=eth0"));
    for (bad, why) in [
        (
            "log level emerg group 2",
            "level and group are mutually exclusive",
        ),
        (
            "log flags all group 2",
            "flags and group are mutually exclusive",
        ),
        (
            "log level audit prefix foo",
            "log level audit doesn't support any further options",
        ),
    ] {
        let s = format!(
            "{}nft add rule ip t out {bad}\n",
            &script[..script.find("nft add rule").unwrap()]
        );
        let r = run_script(&dir, &s, &["--no-stats"]);
        assert_eq!(r.code, 2, "{bad}");
        assert!(
            r.stderr.contains(&format!("line 6: Error: {why}")),
            "{bad}: {}",
            r.stderr
        );
    }
}
