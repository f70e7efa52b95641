//! `ipxmit diff` (issue 20, item 5) through the real binary, as root: a
//! script both sides agree on (fragments, DF, a gateway, an unresolved
//! neighbour, EMSGSIZE, ENETUNREACH, a broadcast, a tool's output and its
//! refusal, a datagram an nft output chain drops: `EPERM`, counted in
//! `IpOutRequests` and `IpOutDiscards`) reports no difference and exits 0; a line ipxmit refuses and
//! the kernel takes is reported with both answers and exits 1; a link
//! without a kernel counterpart exits 2. Without root it must exit 2
//! saying why (and the rest prints SKIPPED).

mod common;

use common::{ipxmit, tmpdir};

fn skip(test: &str) -> bool {
    match ipxmit_drivers::netns::unavailable() {
        None => false,
        Some(why) => {
            eprintln!("SKIPPED (needs root and network namespaces): {test} [{why}]");
            true
        }
    }
}

/// Writes `script` and runs `ipxmit diff` on it.
fn diff(name: &str, script: &str) -> common::Run {
    let d = tmpdir(name);
    std::fs::write(d.join("s.ipx"), script).unwrap();
    ipxmit(&d, &["diff", "s.ipx"])
}

/// Runs `ipxmit diff` on `script` (as root) and asserts that the kernel and
/// ipxmit agree on every one of its `lines` compared lines, its frames and
/// the counters.
fn assert_agrees(test: &str, script: &str, lines: usize) {
    if skip(test) {
        return;
    }
    let r = diff(test, script);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let end =
        format!("{lines} lines compared, frames on every link, 23 counters: no differences\n");
    assert!(r.stdout.ends_with(&end), "{}", r.stdout);
}

const AGREED: &str = "link add eth0 type mem peer 10.0.0.2
addr add 10.0.0.1/24 dev eth0
ip route add 10.9.0.0/16 via 10.0.0.2
ip route add 10.8.0.0/16 via 10.5.0.3
ip route get 10.9.1.1
ip -j route show
socket s1 udp bind 10.0.0.1:5000
send s1 to 10.0.0.2:9 len 3000
send s1 to 10.9.1.1:9 len 100
sockopt s1 ip_mtu_discover do
send s1 to 10.0.0.2:9 len 3000
send s1 to 10.0.0.2:9 len 1472
socket s2 udp
send s2 to 10.0.0.255:9 len 10
sockopt s2 so_broadcast 1
send s2 to 10.0.0.255:9 len 10
send s2 to 10.20.0.1:53 len 10
sendmmsg s2 to 10.0.0.2:9 len 10 len 2000
getsockopt s1 so_error
nft add table ip t
nft add chain ip t out '{ type filter hook output priority 0; policy accept; }'
nft add rule ip t out udp dport 7 counter drop
send s2 to 10.0.0.2:7 len 10
";

#[test]
fn a_script_both_agree_on_has_no_differences() {
    let r = diff("diff-agreed", AGREED);
    if skip("a_script_both_agree_on_has_no_differences") {
        assert_eq!(r.code, 2, "{}", r.stdout);
        assert!(r.stderr.contains("needs root"), "{}", r.stderr);
        return;
    }
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .ends_with("23 lines compared, frames on every link, 23 counters: no differences\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_refused_line_the_kernel_takes_is_a_difference() {
    if skip("a_refused_line_the_kernel_takes_is_a_difference") {
        return;
    }
    let script = "link add eth0 type mem peer 10.0.0.2
addr add 10.0.0.1/24 dev eth0
ip addr add 10.0.0.5/24 dev eth0 label eth0:1
ip route add 10.9.0.0/16 via 10.0.0.99 dev nosuch
";
    let r = diff("diff-refused", script);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let want = "1 lines differ:
line 3: ip addr add 10.0.0.5/24 dev eth0 label eth0:1
  kernel: done, no output
  ipxmit: refused: Error: \"label\" is not supported by ipxmit.
";
    assert!(r.stdout.starts_with(want), "{}", r.stdout);
    // Line 4 is refused by both, with ip's own message: no difference.
    assert!(
        r.stdout
            .ends_with("4 lines compared, frames on every link, 23 counters: 1 differences\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_link_without_a_kernel_counterpart_is_refused() {
    if skip("a_link_without_a_kernel_counterpart_is_refused") {
        return;
    }
    let r = diff("diff-null", "link add n0 type null\n");
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr
            .contains("line 1: diff cannot compare a link of type null"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "{}", r.stdout);
}

/// A neighbour that never answers: the kernel's `arp_error_report()`
/// sends the host an ICMP host unreachable for each datagram queued (a
/// first fragment only), which reaches an `IP_RECVERR` socket's
/// `SO_ERROR`; ipxmit must count and deliver the same.
#[test]
fn a_failed_neighbour_reports_host_unreachable_to_the_sender() {
    let script = "link add eth0 type mem peer 10.0.0.2
addr add 10.0.0.1/24 dev eth0
socket s udp
sockopt s ip_recverr 1
send s to 10.0.0.77:8 len 10
send s to 10.0.0.77:8 len 3000
sleep 4s
getsockopt s so_error
getsockopt s so_error
socket c udp connect 10.0.0.78:9
send c len 10
sleep 4s
getsockopt c so_error
send c len 10
";
    assert_agrees(
        "a_failed_neighbour_reports_host_unreachable_to_the_sender",
        script,
        12,
    );
}

/// Two links, a mark rule, multicast with and without `IP_MULTICAST_IF`,
/// broadcasts, IP options, a connected socket, and a link taken down and
/// up (the kernel forgets the link's neighbours: `arp_ifdown()`).
#[test]
fn two_links_multicast_options_and_a_link_going_down() {
    assert_agrees(
        "two_links_multicast_options_and_a_link_going_down",
        TWO_LINKS,
        37,
    );
}

const TWO_LINKS: &str = "link add eth0 type mem peer 10.0.0.2
link add eth1 type mem peer 10.1.0.2
addr add 10.0.0.1/24 dev eth0
addr add 10.1.0.1/24 dev eth1
ip route add default via 10.0.0.2
ip rule add fwmark 7 table 70
ip route add default via 10.1.0.2 table 70
socket m udp
sockopt m ip_multicast_ttl 3
send m to 224.0.0.9:9 len 10
send m to 239.1.2.3:9 len 10
sockopt m ip_multicast_if 10.1.0.1
send m to 239.1.2.3:9 len 10
socket k udp
sockopt k so_mark 7
send k to 192.0.2.8:53 len 20
sockopt k so_bindtodevice eth0
send k to 192.0.2.8:53 len 20
sockopt k so_bindtodevice \"\"
sockopt k so_broadcast 1
send k to 10.1.0.255:9 len 5
send k to 255.255.255.255:9 len 5
socket o udp
sockopt o ip_options 07070400000000ff
send o to 10.0.0.2:9 len 40
send o to 10.0.0.2:9 len 3000
socket z udp
connect z 10.0.0.2:9
send z len 10
send z len 10
getsockopt z ip_mtu
ip link set eth1 down
send k to 10.1.0.255:9 len 5
ip link set eth1 up
send k to 10.1.0.255:9 len 5
ip neigh show
ip route show table all
";

/// Raw sockets: a protocol of their own, `IP_HDRINCL` (given, implied by
/// `IPPROTO_RAW`, set later), fragments, and ICMP (counted in
/// `IcmpOutMsgs` by `__ip_make_skb()`).
#[test]
fn raw_sockets_with_and_without_ip_hdrincl() {
    let script = "link add eth0 type mem peer 10.0.0.2
addr add 10.0.0.1/24 dev eth0
socket r raw 253
send r to 10.0.0.2:0 len 30
send r to 10.0.0.2:0 len 3000
socket h rawhdrincl 253
send h to 10.0.0.2:0 len 30
send h to 10.0.0.2:0 len 3000
socket x raw 255
send x to 10.0.0.2:0 len 40
send x to 10.0.0.2:0 len 10
sockopt r ip_hdrincl 1
send r to 10.0.0.2:0 len 30
socket i raw 1
send i to 10.0.0.2:0 len 8
";
    assert_agrees("raw_sockets_with_and_without_ip_hdrincl", script, 15);
}

/// Broadcast and multicast from a bound source with no route for them:
/// they leave by the source's device (`ip_route_output_key_hash_rcu()`'s
/// shortcut); a copy of each broadcast, and of each multicast to a group
/// the host is in while `IP_MULTICAST_LOOP` is on, comes back to the
/// host's own sockets (`ip_mc_output()`), a multicast of TTL 0 to such a
/// group stays in; the In/Out broadcast and multicast counters agree.
#[test]
fn broadcast_and_multicast_loop_back_to_the_host() {
    let script = "link add eth0 type mem peer 10.0.0.2
addr add 10.0.0.1/24 dev eth0
socket r udp bind 0.0.0.0:9000
socket s udp bind 10.0.0.1:5000
sockopt s so_broadcast 1
send s to 10.0.0.255:9000 len 100
send s to 255.255.255.255:9000 len 3000
send s to 10.0.0.255:9001 len 10
send s to 224.0.0.1:9000 len 20
send s to 224.1.2.3:9000 len 20
sockopt s ip_multicast_loop 0
send s to 224.0.0.1:9000 len 30
sockopt s ip_multicast_loop 1
sockopt s ip_multicast_ttl 0
send s to 224.0.0.1:9000 len 40
send s to 224.1.2.3:9000 len 40
sleep 1s
";
    assert_agrees("broadcast_and_multicast_loop_back_to_the_host", script, 16);
}

/// A socket bound to `eth0` sending to 127.0.0.1 with a default route: the
/// kernel's lookup, bound to `eth0`, skips the local table's 127/8 route on
/// `lo` and sends the datagram to the gateway; so does ipxmit (the fuzz
/// target `socket_ops` allows it after `SO_BINDTODEVICE`).
#[test]
fn a_bound_socket_sends_loopback_destinations_by_its_device() {
    let script = "link add eth0 type mem peer 10.0.0.2
addr add 10.0.0.1/24 dev eth0
ip route add default via 10.0.0.2
neigh add 10.0.0.2 lladdr 02:00:00:00:00:fe dev eth0
socket s udp
sockopt s so_bindtodevice eth0
send s to 127.0.0.1:9 len 10
sleep 100ms
";
    assert_agrees(
        "a_bound_socket_sends_loopback_destinations_by_its_device",
        script,
        7,
    );
}

/// A `UDP_SEGMENT` send of 3500 bytes to the host itself: Linux's `lo`
/// (`NETIF_F_GSO_SOFTWARE`) takes the GSO packet whole, one packet of 3528
/// bytes in its counters (no link header), one `IpInReceives`; the
/// receiving socket gets four datagrams (1000, 1000, 1000, 500) and counts
/// four `UdpInDatagrams`; to a closed port, one `UdpNoPorts` and one port
/// unreachable. ipxmit's `lo` did the segmentation in software before
/// (four packets, four `IpInReceives`, four port unreachables).
#[test]
fn a_udp_gso_send_to_the_host_crosses_lo_whole() {
    let script = "socket r udp bind 127.0.0.1:9000
socket s udp
sockopt s udp_segment 1000
send s to 127.0.0.1:9000 len 3500
recv r
recv r
recv r
recv r
recv r
send s to 127.0.0.1:9001 len 3500
ip -s link show lo
";
    assert_agrees("a_udp_gso_send_to_the_host_crosses_lo_whole", script, 11);
}
