//! Policy routing held against this machine's kernel (issue 15): the same
//! `ip`/`sysctl` lines and UDP sends applied to a network namespace and to
//! an `ipxmit run` host, and every answer compared.
//!
//! Each scenario is a list of lines after a common host: the kernel's
//! namespace A has `veth0` whose peer `veth1` (10.9.0.2/24, up) sits in a
//! namespace B with a UDP socket on port 9 (so the peer answers ARP and
//! sends no port unreachable); ipxmit's host has `link add veth0 type mem
//! peer 10.9.0.2`. IPv6 is off in both namespaces (so `table all` is IPv4
//! only), `lo` is up. Then both sides run the scenario's lines, starting
//! with `ip addr add 10.9.0.1/24 dev veth0` and `ip link set veth0 up`:
//!
//! - `ip ...` and `sysctl ...` lines run verbatim in namespace A. When the
//!   tool prints something, ipxmit's `--json` result line for that line
//!   must carry the same text, byte for byte, in `out`. When the tool fails,
//!   ipxmit must refuse the line with the tool's message (stderr
//!   `line L: MESSAGE`, exit 2, the message equal to the tool's stderr up to
//!   trailing white space) or give a result line whose `err` is that
//!   message; a refused line is then commented out and the script run
//!   again, so later lines are still compared.
//! - Socket lines are ipxmit's script syntax (`socket NAME udp`, `sockopt
//!   NAME so_mark|ip_tos|so_bindtodevice|ip_mtu_discover|ip_recverr V`,
//!   `bind`, `connect`, `send NAME [to A:P] len N`, `getsockopt NAME
//!   ip_mtu|so_error`, `close`) and are made with the same system calls on
//!   sockets created in namespace A. Results are compared as ipxmit reports
//!   them: a send's `ret` or `errno`, a failing `sockopt`/`bind`/`connect`'s
//!   `errno` (nothing when they succeed), a `getsockopt`'s `value`.
//! - At the end the deltas of some MIB counters (`IpOutNoRoutes` above all)
//!   are compared with ipxmit's `nstat` statistics (`--all`).
//!
//! Without root (or without `ip netns`) each test prints `SKIPPED (needs
//! root and network namespaces): NAME` and passes. Set `ROUTE_KERNEL_DUMP=1`
//! to print the kernel's answers.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::Command;

use common::{json_lines, run_script, tmpdir};
use ipxmit_cli::diff::frames::csum;
use ipxmit_cli::diff::sys::{self, sockaddr_in, SIN_LEN};
use ipxmit_drivers::netns::Netns;
use serde_json::Value;

/// ipxmit's side of the common host, before the scenario's lines.
const IPXMIT_PRELUDE: &str = "link add veth0 type mem peer 10.9.0.2";

/// The first lines of every scenario (both sides).
const HOST: &str = "ip addr add 10.9.0.1/24 dev veth0
ip link set veth0 up";

/// The MIB counters compared at the end of each scenario.
const COUNTERS: &[&str] = &[
    "IpOutRequests",
    "IpOutNoRoutes",
    "UdpOutDatagrams",
    "UdpNoPorts",
    "IpInReceives",
    "IpInDelivers",
    "IpOutDiscards",
];

/// The routing tables right after an address is added and the link is up.
const TABLES_AFTER_ADDRESS: &str = "
ip route show
ip route show table main
ip route show table local
ip route show table all
ip -j route show table local
ip rule show
ip -j rule show
";

/// Every rule selector and action, every route type, route attributes,
/// and how they are printed.
const RULES_AND_ROUTE_TYPES: &str = "
ip rule add from 10.9.0.1 table 100 prio 100
ip rule add fwmark 0x5/0xff table 200
ip rule add to 10.20.0.0/16 prohibit
ip rule add iif lo ipproto udp dport 53 table 300
ip rule add tos 0x10 lookup 100
ip rule add oif veth0 table 100
ip rule add not from all table 5
ip rule add to 10.21.0.0/16 unreachable prio 50
ip rule add to 10.22.0.0/16 blackhole prio 51
ip route add 10.30.0.0/16 via 10.9.0.2 table 100
ip route add blackhole 10.40.0.0/16
ip route add unreachable 10.41.0.0/16
ip route add prohibit 10.42.0.0/16
ip route add throw 10.43.0.0/16 table 100
ip route add 10.44.0.0/16 via 10.9.0.2 mtu lock 1300 hoplimit 5 metric 7 src 10.9.0.1
ip route add 10.45.0.0/16 dev veth0 mtu 1400
ip route add default via 10.9.0.2
ip rule show
ip -j rule show
ip route show
ip route show table main
ip route show table 100
ip route show table all
ip -j route show table main
ip -j route show table 100
";

/// `ip route get` through rules (from, fwmark, tos, oif), tables, throw,
/// the failing route types and rule actions, and no route at all.
const ROUTE_GET: &str = "
ip rule add from 10.9.0.1 table 100 prio 100
ip rule add fwmark 0x5/0xff table 200
ip rule add to 10.20.0.0/16 prohibit
ip rule add tos 0x10 lookup 100
ip rule add oif veth0 table 100
ip rule add to 10.21.0.0/16 unreachable prio 50
ip rule add to 10.22.0.0/16 blackhole prio 51
ip route add 10.30.0.0/16 via 10.9.0.2 table 100
ip route add blackhole 10.40.0.0/16
ip route add unreachable 10.41.0.0/16
ip route add prohibit 10.42.0.0/16
ip route add throw 10.43.0.0/16 table 100
ip route add 10.44.0.0/16 via 10.9.0.2 mtu lock 1300 hoplimit 5 metric 7 src 10.9.0.1
ip route add 10.45.0.0/16 dev veth0 mtu 1400
ip route add default via 10.9.0.2
ip route get 10.9.0.2
ip route get 10.9.0.7
ip route get 10.30.1.1
ip route get 10.30.1.1 from 10.9.0.1
ip route get 10.30.1.1 mark 5
ip route get 10.30.1.1 tos 0x10
ip route get 10.30.1.1 oif veth0
ip route get 10.43.1.1
ip route get 10.43.1.1 from 10.9.0.1
ip route get 10.44.1.1
ip route get 10.45.1.1
ip route get 10.99.1.1 from 10.9.0.1 mark 5 tos 0x10
ip -j route get 10.9.0.2
ip -j route get 10.44.1.1
ip route get 10.40.1.1
ip route get 10.41.1.1
ip route get 10.42.1.1
ip route get 10.20.1.1
ip route get 10.21.1.1
ip route get 10.22.1.1
ip route del default
ip route get 10.99.1.1
ip route get 10.43.1.1 from 10.9.0.1
ip route get 10.99.1.1 mark 5
ip route get 10.99.1.1 oif veth0
ip route get 10.9.0.2 from 10.9.0.7
ip -j route get 10.99.1.1
";

/// `ip route get` of the host's own, loopback, broadcast and multicast
/// addresses, and `oif lo`.
const ROUTE_GET_LOCAL: &str = "
ip route add default via 10.9.0.2
ip route get 10.9.0.1
ip route get 127.0.0.1
ip route get 127.1.2.3
ip route get 10.9.0.255
ip route get 255.255.255.255
ip route get 224.0.0.5
ip route get 10.9.0.0
ip route get 10.9.0.2 oif lo
ip route get 8.8.8.8 oif lo
ip -j route get 10.9.0.1
ip -j route get 10.9.0.255
ip -j route get 224.0.0.5
";

/// A UDP send's errno for each route type and rule action, and which of
/// them count `IpOutNoRoutes` (only `ENETUNREACH`).
const SEND_ROUTE_TYPES: &str = "
ip route add blackhole 10.40.0.0/16
ip route add unreachable 10.41.0.0/16
ip route add prohibit 10.42.0.0/16
ip route add throw 10.43.0.0/16 table 100
ip rule add from 10.9.0.1 table 100 prio 100
ip rule add to 10.20.0.0/16 prohibit
ip rule add to 10.21.0.0/16 unreachable
ip rule add to 10.22.0.0/16 blackhole
socket s udp
send s to 10.40.1.1:9 len 10
send s to 10.41.1.1:9 len 10
send s to 10.42.1.1:9 len 10
send s to 10.99.1.1:9 len 10
send s to 10.43.1.1:9 len 10
send s to 10.20.1.1:9 len 10
send s to 10.21.1.1:9 len 10
send s to 10.22.1.1:9 len 10
send s to 10.9.0.2:9 len 10
socket b udp
bind b 10.9.0.1
send b to 10.43.1.1:9 len 10
send b to 10.41.1.1:9 len 10
send b to 10.9.0.2:9 len 10
";

/// `SO_MARK` against a `fwmark V/M` rule.
const SEND_SO_MARK: &str = "
ip rule add fwmark 0x5/0xff table 200
ip route add prohibit 10.99.0.0/16 table 200
socket m udp
send m to 10.99.1.1:9 len 10
sockopt m so_mark 5
send m to 10.99.1.1:9 len 10
send m to 10.9.0.2:9 len 10
sockopt m so_mark 0x105
send m to 10.99.1.1:9 len 10
sockopt m so_mark 6
send m to 10.99.1.1:9 len 10
ip route get 10.99.1.1 mark 5
ip route get 10.99.1.1 mark 0x105
ip route get 10.99.1.1 mark 6
";

/// `IP_TOS` against a `tos` rule: only the bits of `IPTOS_RT_MASK` (0x1c)
/// are compared.
const SEND_IP_TOS: &str = "
ip rule add tos 0x10 lookup 100
ip route add 10.98.0.0/16 via 10.9.0.2 table 100
socket t udp
send t to 10.98.1.1:9 len 10
sockopt t ip_tos 0x10
send t to 10.98.1.1:9 len 10
sockopt t ip_tos 0x12
send t to 10.98.1.1:9 len 10
sockopt t ip_tos 0x11
send t to 10.98.1.1:9 len 10
sockopt t ip_tos 0x30
send t to 10.98.1.1:9 len 10
sockopt t ip_tos 0x14
send t to 10.98.1.1:9 len 10
sockopt t ip_tos 0xb8
send t to 10.98.1.1:9 len 10
ip route get 10.98.1.1 tos 0x10
ip route get 10.98.1.1 tos 0x14
";

/// `SO_BINDTODEVICE`: with an output device every failed lookup (no
/// route, a failing route type or rule) becomes an on-link route; `lo`
/// loops the datagram back.
/// Path MTUs learned from an ICMP "fragmentation needed": `ip route show
/// cache` (a connected socket's exception at once, an unconnected one's
/// after the next lookup), `ip route get`'s `cache expires 599sec mtu
/// 1300` line, `IP_MTU`, the pending `EMSGSIZE`, the sizes that fit after;
/// below `min_pmtu` the value is clamped to 552 and locked; a `mtu lock`
/// route learns nothing.
const PMTU: &str = "
ip route add default via 10.9.0.2
ip route add 10.46.0.0/16 via 10.9.0.2 mtu lock 1400
socket c udp
connect c 10.9.0.2:9
sockopt c ip_mtu_discover do
send c len 100
inject dev veth0 icmp frag-needed mtu 1300 from 10.9.0.2
ip route show cache
ip route get 10.9.0.2
getsockopt c ip_mtu
send c len 1400
send c len 100
send c len 1272
send c len 1273
socket u udp
sockopt u ip_mtu_discover do
send u to 10.50.1.1:9 len 100
inject dev veth0 icmp frag-needed mtu 500 from 10.9.0.2
ip route show cache
ip route get 10.50.1.1
ip route show cache
send u to 10.50.1.1:9 len 525
send u to 10.50.1.1:9 len 524
socket l udp
sockopt l ip_mtu_discover do
send l to 10.46.1.1:9 len 100
inject dev veth0 icmp frag-needed mtu 1300 from 10.9.0.2
ip route get 10.46.1.1
send l to 10.46.1.1:9 len 1372
send l to 10.46.1.1:9 len 1373
";

/// `sendmmsg`: the count of messages sent when at least one left, the
/// first message's errno when none did (a later error is lost), each
/// message to its own destination; `getsockopt` of `SO_ERROR`/`SO_SNDBUF`.
const SENDMMSG: &str = "
ip route add blackhole 10.40.0.0/16
socket m udp
sendmmsg m to 10.9.0.2:9 len 10 to 10.9.0.2:9 len 20
sendmmsg m to 10.40.1.1:9 len 10 to 10.9.0.2:9 len 20
sendmmsg m to 10.9.0.2:9 len 10 to 10.40.1.1:9 len 20 to 10.9.0.2:9 len 5
sendmmsg m to 10.99.1.1:9 len 10
sendmmsg m to 10.9.0.2:9 len 1 to 10.99.1.1:9 len 2
getsockopt m so_error
getsockopt m so_sndbuf
connect m 10.9.0.2:9
sendmmsg m len 10 len 20 len 30
getsockopt m ip_mtu
";

/// A `type route` chain's changed mark or destination reroutes
/// (`ip_route_me_harder`), and a failed lookup is the send's errno
/// (`NF_DROP_ERR`): an `unreachable` route `EHOSTUNREACH`, `prohibit`
/// `EACCES`, `blackhole` `EINVAL`, an `unreachable` rule `ENETUNREACH`
/// (without `IpOutNoRoutes`: that is the socket's own lookup's), each in
/// `IpOutDiscards`; under `IP_RECVERR` the same, nothing queued; a
/// `sendmmsg` stops at the failed message. (nft's `{ ...; }` needs no
/// shell quoting: nft joins its arguments.)
const REROUTE_ERRORS: &str = "
ip route add default via 10.9.0.2
ip rule add fwmark 0x1 table 101
ip rule add fwmark 0x2 table 102
ip rule add fwmark 0x3 table 103
ip rule add fwmark 0x4 unreachable
ip route add unreachable default table 101
ip route add prohibit default table 102
ip route add blackhole default table 103
ip route add unreachable 10.41.0.0/16
nft add table ip t
nft add chain ip t r { type route hook output priority -150; }
nft add rule ip t r udp dport 7001 meta mark set 0x1 counter
nft add rule ip t r udp dport 7002 meta mark set 0x2 counter
nft add rule ip t r udp dport 7003 meta mark set 0x3 counter
nft add rule ip t r udp dport 7004 meta mark set 0x4 counter
nft add rule ip t r udp dport 7005 ip daddr set 10.41.1.1 counter
socket s udp
send s to 10.50.1.1:7001 len 10
send s to 10.50.1.1:7002 len 10
send s to 10.50.1.1:7003 len 10
send s to 10.50.1.1:7004 len 10
send s to 10.50.1.1:7005 len 10
send s to 10.50.1.1:7000 len 10
sockopt s ip_recverr 1
send s to 10.50.1.1:7002 len 10
sendmmsg s to 10.50.1.1:7000 len 10 to 10.50.1.1:7001 len 10 to 10.50.1.1:7000 len 5
sendmmsg s to 10.50.1.1:7003 len 10
getsockopt s so_error
nft list ruleset
";

/// A `route` chain's mark reroutes an `IP_PMTUDISC_DO` datagram sized
/// for the main route (MTU 1500) onto table 100's MTU 1000 route:
/// `ip_fragment` refuses it (`EMSGSIZE`) and the host sends itself the
/// ICMP "fragmentation needed", whose PMTU exception lands on the route
/// its own lookup finds (main's, without the mark): from then on sends
/// without the mark are refused too, `IP_MTU` is 1000, and the ICMP
/// counts in `IpOutRequests` and `IpInReceives`.
const REROUTE_PMTU: &str = "
ip route add default via 10.9.0.2
ip rule add fwmark 0x1 table 100
ip route add 10.50.0.0/16 via 10.9.0.2 mtu 1000 table 100
nft add table ip t
nft add chain ip t r { type route hook output priority -150; }
nft add rule ip t r udp dport 7777 meta mark set 0x1 counter
socket s udp
sockopt s ip_mtu_discover do
send s to 10.50.1.1:7777 len 1200
send s to 10.50.1.1:7777 len 900
ip route show cache
ip route get 10.50.1.1 mark 1
send s to 10.50.1.1:9 len 1200
send s to 10.50.1.1:7777 len 1200
socket c udp
sockopt c ip_mtu_discover do
sockopt c ip_recverr 1
connect c 10.50.1.1:7777
send c len 1200
getsockopt c ip_mtu
send c len 1200
nft list ruleset
";

const SEND_SO_BINDTODEVICE: &str = "
ip route add blackhole 10.40.0.0/16
ip route add unreachable 10.41.0.0/16
ip route add prohibit 10.42.0.0/16
ip rule add to 10.20.0.0/16 prohibit
ip rule add oif veth0 table 100
ip route add 10.98.0.0/16 via 10.9.0.2 table 100
socket d udp
send d to 10.97.1.1:9 len 10
send d to 10.98.1.1:9 len 10
sockopt d so_bindtodevice veth0
send d to 10.97.1.1:9 len 10
send d to 10.98.1.1:9 len 10
send d to 10.40.1.1:9 len 10
send d to 10.41.1.1:9 len 10
send d to 10.42.1.1:9 len 10
send d to 10.20.1.1:9 len 10
ip route get 10.97.1.1 oif veth0
ip route get 10.98.1.1 oif veth0
ip route get 10.40.1.1 oif veth0
socket l udp
sockopt l so_bindtodevice lo
send l to 10.97.1.1:9 len 10
";

/// `connect` of an unbound socket looks up twice: the second time from
/// the source address the first chose, so a `from` rule applies to it but
/// not to an unconnected send.
const CONNECT_TWO_STEP: &str = "
ip route add default via 10.9.0.2
ip rule add from 10.9.0.1 lookup 100 prio 100
ip route add prohibit 10.96.0.0/16 table 100
socket u udp
send u to 10.96.1.1:9 len 10
send u to 10.96.1.1:9 len 10
socket c udp
connect c 10.96.1.1:9
socket b udp
bind b 10.9.0.1
send b to 10.96.1.1:9 len 10
socket n udp
connect n 10.95.1.1:9
send n len 10
ip route get 10.96.1.1
ip route get 10.96.1.1 from 10.9.0.1
ip route del default
socket x udp
connect x 10.95.1.1:9
";

/// Route MTUs (locked and not), metrics, and what a DF send may carry.
const ROUTE_ATTRIBUTES: &str = "
ip route add 10.44.0.0/16 via 10.9.0.2 mtu lock 1300 hoplimit 5 metric 7 src 10.9.0.1
ip route add 10.45.0.0/16 dev veth0 mtu 1400
ip route add 10.61.0.0/16 dev veth0 metric 5
ip route add 10.61.0.0/16 dev veth0 metric 6
ip route add 10.56.0.0/16 dev veth0 mtu 65535
ip route show
ip route del 10.61.0.0/16
ip route show
ip -j route show
ip route get 10.44.1.1
ip route get 10.45.1.1
ip route get 10.56.1.1
socket s udp
sockopt s ip_mtu_discover do
send s to 10.44.1.1:9 len 1272
send s to 10.44.1.1:9 len 1273
send s to 10.45.1.1:9 len 1372
send s to 10.45.1.1:9 len 1373
connect s 10.44.1.1:9
getsockopt s ip_mtu
socket w udp
connect w 10.45.1.1:9
getsockopt w ip_mtu
";

/// Rule priorities chosen by the kernel, and `ip rule del`.
const RULE_PRIORITIES: &str = "
ip rule add from 10.9.0.1 table 100
ip rule add from 10.9.0.0/16 table 7
ip rule add fwmark 0x5 table 200 prio 100
ip rule add from 10.9.1.1/16 table 7
ip rule add to 10.9.1.1/16 table 7
ip rule show
ip rule add fwmark 0x5 table 200 prio 100
ip rule del prio 100
ip rule del from 10.9.0.1 table 100
ip rule del prio 12345
ip rule show
ip -j rule show
";

/// Lines ip or the kernel refuse, with their messages.
const BAD_LINES: &str = "
ip rule add tos 0x03 table 5
ip rule add tos 0x1e table 5
ip rule add tos 0xfc table 5
ip route add 10.0.0.0/8 tos 0x03 dev veth0
ip route add 10.50.0.0/16 via 10.99.0.1
ip route add 10.50.0.0/16 via 10.99.0.1 dev veth0
ip route add 10.50.0.0/16 dev nosuch
ip rule add table foo
ip route add 10.50.0.0/16 via 10.9.0.2 table foo
ip route add 10.50.0.0/16 mtu foo dev veth0
ip route add blackhole 10.40.0.0/16
ip route add blackhole 10.40.0.0/16
ip route del 10.99.0.0/16
ip route del default
ip rule del prio 12345
ip route add 10.1.2.3/16 dev veth0
ip route add 10.60.0.0/16
ip route add 10.60.0.0/16 foo
ip route show
ip rule show
ip link set veth0 down
ip route add 10.62.0.0/16 dev veth0
ip route show
ip link set veth0 up
ip route show
";

/// `sysctl -w` of the keys the stack models: what it prints, what it
/// refuses.
const SYSCTL_LINES: &str = "
sysctl -w net.ipv4.ip_default_ttl=32
sysctl -w net.ipv4.ip_default_ttl=0
sysctl -w net.ipv4.ip_default_ttl=256
sysctl -w net.ipv4.route.min_pmtu=67
sysctl -w net.ipv4.route.min_pmtu=600
sysctl -w net.ipv4.route.mtu_expires=300
sysctl -w net.ipv4.ip_no_pmtu_disc=1
sysctl -w net.ipv4.ip_no_pmtu_disc=0
";

/// Why these tests cannot run here (printed as a SKIPPED line), or `None`.
fn skip(name: &str) -> bool {
    match ipxmit_drivers::netns::unavailable() {
        None => false,
        Some(why) => {
            eprintln!("SKIPPED (needs root and network namespaces): {name} [{why}]");
            true
        }
    }
}

/// What the kernel side answered to one line.
#[derive(Debug, Clone)]
enum Answer {
    /// A tool (`ip`, `sysctl`): its stdout, stderr and exit status.
    Tool { out: String, err: String, code: i32 },
    /// A socket line, in ipxmit's terms.
    Sock(SockResult),
}

/// A socket line's result, as ipxmit's JSON reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SockResult {
    /// Succeeded without a value (`socket`, `sockopt`, `bind`, `connect`,
    /// `close`: no result line).
    Done,
    /// A send's return value.
    Ret(i64),
    /// A getsockopt's value.
    Value(i64),
    /// Failed with this errno.
    Errno(String),
}

impl std::fmt::Display for SockResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SockResult::Done => write!(f, "ok (no result line)"),
            SockResult::Ret(n) => write!(f, "= {n}"),
            SockResult::Value(v) => write!(f, "value {v}"),
            SockResult::Errno(e) => write!(f, "= -1 {e}"),
        }
    }
}

/// The last OS error as a result.
fn last_errno() -> SockResult {
    SockResult::Errno(sys::last_errno())
}

/// A number as the script writes it (decimal or `0x` hex).
fn number(s: &str) -> Option<i64> {
    match s.strip_prefix("0x") {
        Some(h) => i64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `A.B.C.D[:PORT]`.
fn sockaddr(s: &str) -> Option<SocketAddrV4> {
    let (a, p) = s.split_once(':').unwrap_or((s, "0"));
    Some(SocketAddrV4::new(
        a.parse::<Ipv4Addr>().ok()?,
        p.parse().ok()?,
    ))
}

/// A call that returns nothing, as a result.
fn done(r: Result<(), String>) -> SockResult {
    r.map_or_else(SockResult::Errno, |()| SockResult::Done)
}

/// `setsockopt` of an int.
fn set_int(fd: RawFd, level: i32, opt: i32, v: i32) -> SockResult {
    done(sys::set_int(fd, level, opt, v))
}

/// `getsockopt` of an int.
fn get_int(fd: RawFd, level: i32, opt: i32) -> SockResult {
    sys::get_int(fd, level, opt).map_or_else(SockResult::Errno, SockResult::Value)
}

/// An ICMP "fragmentation needed" (3/4, next-hop MTU `mtu`) quoting a UDP
/// datagram from `src` to `dst`: its IP header (DF) and 8 bytes.
fn frag_needed(mtu: u16, src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
    let mut ip = vec![0x45, 0, 0x05, 0xdc, 0, 1, 0x40, 0, 64, 17, 0, 0];
    ip.extend(src.ip().octets());
    ip.extend(dst.ip().octets());
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend(src.port().to_be_bytes());
    ip.extend(dst.port().to_be_bytes());
    ip.extend([0x05, 0xc8, 0, 0]);
    let mut m = vec![3, 4, 0, 0, 0, 0];
    m.extend(mtu.to_be_bytes());
    m.extend(ip);
    let c = csum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// A socket's address (`getsockname`) or peer (`getpeername`).
fn sock_name(fd: RawFd, peer: bool) -> Option<SocketAddrV4> {
    // SAFETY: an all-zero sockaddr_in, filled by the call.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = SIN_LEN;
    let p = (&mut sa as *mut libc::sockaddr_in).cast();
    // SAFETY: a valid sockaddr_in and its size.
    let r = unsafe {
        if peer {
            libc::getpeername(fd, p, &mut len)
        } else {
            libc::getsockname(fd, p, &mut len)
        }
    };
    (r == 0).then(|| {
        let ip = std::net::Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
        SocketAddrV4::new(ip, u16::from_be(sa.sin_port))
    })
}

/// A socket line the test does not know: a mistake in a scenario.
fn bad(w: &[&str]) -> ! {
    panic!("socket line not understood by the test: {w:?}")
}

/// The kernel side of one scenario: namespaces A and B, the peer's socket,
/// the scenario's sockets.
struct Kernel {
    a: Netns,
    // Kept for the scenario's life (deleted on drop, after `_sink`).
    b: Netns,
    _sink: UdpSocket,
    socks: BTreeMap<String, OwnedFd>,
    /// The last datagram A sent: (source, destination), for `inject`.
    last: Option<(SocketAddrV4, SocketAddrV4)>,
}

impl Kernel {
    fn new() -> Result<Kernel, String> {
        let e = |what: &str, err: std::io::Error| format!("kernel setup: {what}: {err}");
        let a = Netns::unique("rt-a").map_err(|x| e("netns A", x))?;
        let b = Netns::unique("rt-b").map_err(|x| e("netns B", x))?;
        for ns in [&a, &b] {
            for k in ["all", "default"] {
                ns.sysctl(&format!("net/ipv6/conf/{k}/disable_ipv6"), "1")
                    .map_err(|x| e("disable IPv6", x))?;
            }
        }
        a.ip(&[
            "link",
            "add",
            "veth0",
            "type",
            "veth",
            "peer",
            "name",
            "veth1",
            "netns",
            b.name(),
        ])
        .map_err(|x| e("veth", x))?;
        b.ip(&["addr", "add", "10.9.0.2/24", "dev", "veth1"])
            .map_err(|x| e("peer address", x))?;
        b.ip(&["link", "set", "veth1", "up"])
            .map_err(|x| e("peer up", x))?;
        let sink = b
            .run(|| UdpSocket::bind("0.0.0.0:9"))
            .and_then(|r| r)
            .map_err(|x| e("peer socket", x))?;
        Ok(Kernel {
            a,
            b,
            _sink: sink,
            socks: BTreeMap::new(),
            last: None,
        })
    }

    /// The namespace's IP and UDP MIB counters (`/proc/net/snmp`).
    fn snmp(&self) -> BTreeMap<String, i64> {
        let text = self
            .a
            .run(|| std::fs::read_to_string("/proc/thread-self/net/snmp"))
            .and_then(|r| r)
            .expect("read /proc/net/snmp in the namespace");
        let mut m = BTreeMap::new();
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks(2) {
            let [names, values] = pair else { continue };
            let (Some((p, names)), Some((_, values))) =
                (names.split_once(": "), values.split_once(": "))
            else {
                continue;
            };
            for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
                m.insert(format!("{p}{n}"), v.parse().unwrap_or(0));
            }
        }
        m
    }

    /// Runs one line.
    fn line(&mut self, line: &str) -> Answer {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w[0] {
            "ip" | "sysctl" | "nft" => {
                let o = Command::new("ip")
                    .args(["netns", "exec", self.a.name()])
                    .args(&w)
                    .output()
                    .expect("run ip netns exec");
                Answer::Tool {
                    out: String::from_utf8_lossy(&o.stdout).into_owned(),
                    err: String::from_utf8_lossy(&o.stderr).into_owned(),
                    code: o.status.code().unwrap_or(-1),
                }
            }
            "inject" => Answer::Sock(self.inject(&w)),
            _ => Answer::Sock(self.sock(&w)),
        }
    }

    /// `inject dev veth0 icmp frag-needed mtu N from 10.9.0.2`: B sends A
    /// an ICMP 3/4 quoting the last datagram A sent (its addresses, ports
    /// and protocol: what the kernel matches), then A has a moment to
    /// take it in.
    fn inject(&mut self, w: &[&str]) -> SockResult {
        let ["inject", "dev", _, "icmp", "frag-needed", "mtu", mtu, "from", _] = w else {
            bad(w)
        };
        let mtu: u16 = mtu.parse().unwrap_or_else(|_| bad(w));
        let (src, dst) = self.last.expect("inject after a send");
        let msg = frag_needed(mtu, src, dst);
        let r = self.b.run(|| {
            // SAFETY: socket(2), sendto(2) of a live buffer, close(2).
            unsafe {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
                assert!(fd >= 0, "raw socket in B");
                let to = sockaddr_in(SocketAddrV4::new(*src.ip(), 0));
                let p = (&to as *const libc::sockaddr_in).cast();
                let n = libc::sendto(fd, msg.as_ptr().cast(), msg.len(), 0, p, SIN_LEN);
                libc::close(fd);
                n
            }
        });
        assert_eq!(r.ok(), Some(msg.len() as isize), "ICMP sent from B");
        std::thread::sleep(std::time::Duration::from_millis(50));
        SockResult::Done
    }

    fn fd(&self, name: &str) -> RawFd {
        self.socks
            .get(name)
            .unwrap_or_else(|| panic!("scenario uses unknown socket {name}"))
            .as_raw_fd()
    }

    /// A socket line (ipxmit's syntax) made with the same system calls.
    fn sock(&mut self, w: &[&str]) -> SockResult {
        match w {
            ["socket", name, "udp"] => {
                // SAFETY: plain socket(2); the fd is owned at once.
                let fd = self
                    .a
                    .run(|| unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) })
                    .expect("enter namespace A");
                if fd < 0 {
                    return last_errno();
                }
                // SAFETY: a new descriptor nothing else owns.
                self.socks
                    .insert(name.to_string(), unsafe { OwnedFd::from_raw_fd(fd) });
                SockResult::Done
            }
            ["close", name] => {
                self.socks.remove(*name);
                SockResult::Done
            }
            ["sockopt", name, opt, val] => {
                let fd = self.fd(name);
                let int = || number(val).unwrap_or_else(|| bad(w)) as i32;
                match *opt {
                    "so_mark" => set_int(fd, libc::SOL_SOCKET, libc::SO_MARK, int()),
                    "ip_tos" => set_int(fd, libc::IPPROTO_IP, libc::IP_TOS, int()),
                    "ip_recverr" => set_int(fd, libc::IPPROTO_IP, libc::IP_RECVERR, int()),
                    "ip_mtu_discover" => {
                        let m = ["dont", "want", "do", "probe", "interface", "omit"]
                            .iter()
                            .position(|m| m == val)
                            .unwrap_or_else(|| bad(w));
                        set_int(fd, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, m as i32)
                    }
                    "so_bindtodevice" => {
                        // SAFETY: the name's bytes and their length.
                        let r = unsafe {
                            libc::setsockopt(
                                fd,
                                libc::SOL_SOCKET,
                                libc::SO_BINDTODEVICE,
                                val.as_ptr().cast(),
                                val.len() as libc::socklen_t,
                            )
                        };
                        if r == 0 {
                            SockResult::Done
                        } else {
                            last_errno()
                        }
                    }
                    _ => bad(w),
                }
            }
            ["getsockopt", name, opt] => {
                let fd = self.fd(name);
                match *opt {
                    "ip_mtu" => get_int(fd, libc::IPPROTO_IP, libc::IP_MTU),
                    "so_error" => get_int(fd, libc::SOL_SOCKET, libc::SO_ERROR),
                    "so_sndbuf" => get_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF),
                    _ => bad(w),
                }
            }
            ["bind" | "connect", name, addr] => {
                let fd = self.fd(name);
                let sa = sockaddr_in(sockaddr(addr).unwrap_or_else(|| bad(w)));
                let p = (&sa as *const libc::sockaddr_in).cast::<libc::sockaddr>();
                // SAFETY: a valid sockaddr_in and its size.
                let r = unsafe {
                    if w[0] == "bind" {
                        libc::bind(fd, p, SIN_LEN)
                    } else {
                        libc::connect(fd, p, SIN_LEN)
                    }
                };
                if r == 0 {
                    SockResult::Done
                } else {
                    last_errno()
                }
            }
            ["send", name, rest @ ..] => {
                let fd = self.fd(name);
                let (to, len) = match rest {
                    ["to", a, "len", n] => (Some(sockaddr(a).unwrap_or_else(|| bad(w))), n),
                    ["len", n] => (None, n),
                    _ => bad(w),
                };
                let buf = vec![0u8; len.parse().unwrap_or_else(|_| bad(w))];
                // SAFETY: a valid buffer and (when given) sockaddr_in.
                let r = unsafe {
                    match to {
                        Some(a) => {
                            let sa = sockaddr_in(a);
                            libc::sendto(
                                fd,
                                buf.as_ptr().cast(),
                                buf.len(),
                                0,
                                (&sa as *const libc::sockaddr_in).cast(),
                                SIN_LEN,
                            )
                        }
                        None => libc::send(fd, buf.as_ptr().cast(), buf.len(), 0),
                    }
                };
                if r < 0 {
                    return last_errno();
                }
                let dest = to.or_else(|| sock_name(fd, true));
                // An unbound socket's datagram left from A's address.
                let src = sock_name(fd, false).map(|a| match a.ip().is_unspecified() {
                    true => SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 1), a.port()),
                    false => a,
                });
                self.last = src.zip(dest);
                SockResult::Ret(r as i64)
            }
            ["sendmmsg", name, rest @ ..] => sendmmsg(self.fd(name), rest, w),
            _ => bad(w),
        }
    }
}

/// `sendmmsg(2)` of the messages `[to A:P] len N ...` names.
fn sendmmsg(fd: RawFd, rest: &[&str], w: &[&str]) -> SockResult {
    let (mut msgs, mut to) = (Vec::new(), None);
    let mut it = rest.iter();
    while let Some(&k) = it.next() {
        let v = *it.next().unwrap_or_else(|| bad(w));
        match k {
            "to" => to = Some(sockaddr_in(sockaddr(v).unwrap_or_else(|| bad(w)))),
            "len" => msgs.push((to.take(), vec![0u8; v.parse().unwrap_or_else(|_| bad(w))])),
            _ => bad(w),
        }
    }
    sys::sendmmsg(fd, &mut msgs, 0).map_or_else(SockResult::Errno, SockResult::Ret)
}

/// What ipxmit did with a scenario: its result lines by line number, the
/// lines it refused (scenario index → message), the statistics object and
/// the last exit status.
struct Ipxmit {
    results: BTreeMap<u64, Value>,
    refused: BTreeMap<usize, String>,
    stats: Option<Value>,
    code: i32,
    /// Set when the run could not be followed (a prelude line refused, a
    /// message without a line number, ...).
    broken: Option<String>,
}

/// Lines of the prelude before the scenario's (line numbers in ipxmit's
/// messages count them).
fn prelude_lines() -> usize {
    IPXMIT_PRELUDE.lines().count()
}

/// Runs the scenario's lines through `ipxmit run --json --all`, taking
/// each refused line out (as a comment, keeping the numbering) and running
/// again, until the script runs to its end.
fn run_ipxmit(name: &str, lines: &[String]) -> Ipxmit {
    let dir = tmpdir(&format!("route-kernel-{name}"));
    let mut script: Vec<String> = lines.to_vec();
    let mut refused = BTreeMap::new();
    let pre = prelude_lines();
    loop {
        let text = format!("{IPXMIT_PRELUDE}\n{}\n", script.join("\n"));
        let r = run_script(&dir, &text, &["--json", "--all"]);
        if r.code == 2 {
            let found = r.stderr.lines().find_map(|l| {
                let rest = l.strip_prefix("line ")?;
                let (n, msg) = rest.split_once(": ")?;
                Some((n.parse::<usize>().ok()?, msg.to_string()))
            });
            let Some((n, first)) = found else {
                return Ipxmit {
                    results: BTreeMap::new(),
                    refused,
                    stats: None,
                    code: 2,
                    broken: Some(format!(
                        "exit 2 without a `line L:` message: {:?}",
                        r.stderr
                    )),
                };
            };
            if n <= pre || n > pre + script.len() {
                return Ipxmit {
                    results: BTreeMap::new(),
                    refused,
                    stats: None,
                    code: 2,
                    broken: Some(format!("ipxmit refused prelude line {n}: {:?}", r.stderr)),
                };
            }
            // The message may go on over more lines (ip's own do).
            let at = r.stderr.find(&first).unwrap_or(0);
            let msg = r.stderr[at..].trim_end().to_string();
            refused.insert(n - pre - 1, msg);
            script[n - pre - 1] = format!("# refused: {}", script[n - pre - 1]);
            continue;
        }
        let mut results = BTreeMap::new();
        let mut stats = None;
        for v in json_lines(&r.stdout) {
            if v["op"] == "stats" {
                stats = Some(v);
            } else if let Some(l) = v["line"].as_u64() {
                results.insert(l, v);
            }
        }
        return Ipxmit {
            results,
            refused,
            stats,
            code: r.code,
            broken: None,
        };
    }
}

/// ipxmit's socket result for a line: `errno`, `ret` or `value`, or no
/// result line at all.
fn ipxmit_sock(v: Option<&Value>) -> SockResult {
    let Some(v) = v else {
        return SockResult::Done;
    };
    if let Some(e) = v["errno"].as_str() {
        SockResult::Errno(e.to_string())
    } else if let Some(n) = v["ret"].as_i64() {
        SockResult::Ret(n)
    } else if let Some(n) = v["value"].as_i64() {
        SockResult::Value(n)
    } else {
        SockResult::Done
    }
}

/// Text shown in a difference: quoted, so trailing spaces and newlines are
/// visible.
fn shown(s: &str) -> String {
    format!("{s:?}")
}

/// Runs scenario `name` on both sides and panics with every difference.
fn scenario(name: &str, body: &str) {
    if skip(name) {
        return;
    }
    let lines: Vec<String> = HOST
        .lines()
        .chain(body.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();

    let mut k = Kernel::new().unwrap_or_else(|e| panic!("[{name}] {e}"));
    let before = k.snmp();
    let answers: Vec<Answer> = lines.iter().map(|l| k.line(l)).collect();
    let after = k.snmp();
    drop(k);
    if std::env::var_os("ROUTE_KERNEL_DUMP").is_some() {
        for (l, a) in lines.iter().zip(&answers) {
            eprintln!("[{name}] {l}\n    {a:?}");
        }
    }

    let x = run_ipxmit(name, &lines);
    let mut diffs: Vec<String> = Vec::new();
    if let Some(b) = &x.broken {
        diffs.push(b.clone());
    }
    let pre = prelude_lines();
    for (i, (line, ans)) in lines.iter().zip(&answers).enumerate() {
        let n = (pre + i + 1) as u64;
        let at = format!("line {n} `{line}`");
        let res = x.results.get(&n);
        let refused = x.refused.get(&i);
        match ans {
            Answer::Tool { out, err, code } if *code == 0 => {
                if let Some(m) = refused {
                    diffs.push(format!(
                        "{at}: kernel accepted it (exit 0, stdout {}), ipxmit refused it: {}",
                        shown(out),
                        shown(m)
                    ));
                    continue;
                }
                let got = res.and_then(|v| v["out"].as_str()).unwrap_or("");
                if !same_output(got, out) {
                    diffs.push(format!(
                        "{at}: output differs\n      kernel: {}\n      ipxmit: {}{}",
                        shown(out),
                        shown(got),
                        if err.is_empty() {
                            String::new()
                        } else {
                            format!("\n      (kernel stderr {})", shown(err))
                        }
                    ));
                }
            }
            Answer::Tool { out, err, code } => {
                let want = err.trim_end();
                let got_err = res.and_then(|v| v["err"].as_str()).map(str::trim_end);
                let ok = refused.map(|m| m.trim_end()) == Some(want) || got_err == Some(want);
                if !ok {
                    let what = match (refused, got_err, res) {
                        (Some(m), _, _) => format!("refused it with {}", shown(m)),
                        (None, Some(e), _) => format!("answered err {}", shown(e)),
                        (None, None, Some(v)) => format!("accepted it: {v}"),
                        (None, None, None) => "accepted it (no result line)".to_string(),
                    };
                    diffs.push(format!(
                        "{at}: kernel refused it (exit {code}) with {}{}, ipxmit {what}",
                        shown(want),
                        if out.is_empty() {
                            String::new()
                        } else {
                            format!(" (stdout {})", shown(out))
                        }
                    ));
                }
            }
            Answer::Sock(want) => {
                if let Some(m) = refused {
                    diffs.push(format!(
                        "{at}: kernel {want}, ipxmit refused the line: {}",
                        shown(m)
                    ));
                    continue;
                }
                let got = ipxmit_sock(res);
                if &got != want {
                    diffs.push(format!("{at}: kernel {want}, ipxmit {got}"));
                }
            }
        }
    }

    if x.broken.is_none() {
        if x.code != 0 {
            diffs.push(format!(
                "ipxmit exited {} (1: a verifying peer dropped a frame)",
                x.code
            ));
        }
        match &x.stats {
            None => diffs.push("ipxmit printed no statistics object".into()),
            Some(s) => {
                let kernel_mib = &s["nstat"]["kernel"];
                for c in COUNTERS {
                    let delta =
                        after.get(*c).copied().unwrap_or(0) - before.get(*c).copied().unwrap_or(0);
                    match kernel_mib[*c].as_i64() {
                        Some(v) if v == delta => {}
                        Some(v) => diffs.push(format!("counter {c}: kernel +{delta}, ipxmit {v}")),
                        None if delta != 0 => {
                            diffs.push(format!("counter {c}: kernel +{delta}, ipxmit has none"))
                        }
                        None => {}
                    }
                }
            }
        }
    }

    if !diffs.is_empty() {
        panic!(
            "[{name}] {} difference(s) between the kernel and ipxmit:\n  [{name}] {}",
            diffs.len(),
            diffs.join(&format!("\n  [{name}] "))
        );
    }
}

macro_rules! scenarios {
    ($($test:ident => $body:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                scenario(stringify!($test), $body);
            }
        )*
    };
}

scenarios! {
    tables_after_address => TABLES_AFTER_ADDRESS,
    rules_and_route_types => RULES_AND_ROUTE_TYPES,
    route_get => ROUTE_GET,
    route_get_local => ROUTE_GET_LOCAL,
    send_route_types => SEND_ROUTE_TYPES,
    send_so_mark => SEND_SO_MARK,
    send_ip_tos => SEND_IP_TOS,
    send_so_bindtodevice => SEND_SO_BINDTODEVICE,
    sendmmsg_results => SENDMMSG,
    reroute_errors => REROUTE_ERRORS,
    reroute_pmtu => REROUTE_PMTU,
    pmtu_learned => PMTU,
    connect_two_step => CONNECT_TWO_STEP,
    route_attributes => ROUTE_ATTRIBUTES,
    rule_priorities => RULE_PRIORITIES,
    bad_lines => BAD_LINES,
    sysctl_lines => SYSCTL_LINES,
}

/// Equal outputs, but for a route cache entry's `expires Nsec`, which may
/// be one second apart: the kernel prints the jiffies left, so the same
/// exception shows 600 shown within the jiffy it was made and 599 after
/// (the two sides show it after different delays, neither of them ours to
/// fix). Any other difference, or two seconds, is a difference.
fn same_output(ours: &str, kernel: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (ours.split(' ').collect(), kernel.split(' ').collect());
    let secs = |w: &str| w.strip_suffix("sec").and_then(|n| n.parse::<i64>().ok());
    a.len() == b.len()
        && (0..a.len()).all(|i| {
            let expires = i > 0 && a[i - 1] == "expires" && b[i - 1] == "expires";
            a[i] == b[i]
                || (expires
                    && matches!((secs(a[i]), secs(b[i])), (Some(p), Some(q)) if (p - q).abs() <= 1))
        })
}
