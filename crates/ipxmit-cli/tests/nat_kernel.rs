//! Connection tracking and NAT held against this machine's kernel (issue
//! 16): each scenario applies the same `ip` and `nft` lines to a network
//! namespace this test creates and to an `ipxmit run` host, makes the same
//! UDP sends from sockets bound to the same addresses, and compares the
//! errno of each send, the IP datagrams on each link (captured with tcpdump
//! on the veth peer in the kernel's namespace; `capture` of the `mem` link
//! in ipxmit), `conntrack -L` (timeouts masked, lines sorted) and the nft
//! counters.
//!
//! Both sides: `veth0` 10.9.0.1/24 with secondaries 10.9.0.5 and 10.9.0.6,
//! `veth2` 10.8.0.1/24, permanent neighbours 10.9.0.2, 10.9.0.3 and
//! 10.8.0.2 (every datagram that passes the hooks leaves at once), a
//! default route through 10.9.0.2. The scenarios are deterministic: where
//! the kernel picks a port at random, only one is free. A scenario may have
//! the peer reply (a frame injected on the link: AF_PACKET on the kernel's
//! veth peer, `inject` in ipxmit) to make its flow established.
//!
//! Needs root, `ip netns`, `tcpdump` and `conntrack` (conntrack-tools);
//! without them the test prints `SKIPPED (...)` and passes.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{run_script, sh, tmpdir, Ns};

const SETUP: &str = "ip addr add 10.9.0.1/24 dev veth0
ip addr add 10.9.0.5/24 dev veth0
ip addr add 10.9.0.6/24 dev veth0
ip link set veth0 up
ip addr add 10.8.0.1/24 dev veth2
ip link set veth2 up
ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:fe dev veth0 nud permanent
ip neigh add 10.9.0.3 lladdr 02:00:00:00:00:fd dev veth0 nud permanent
ip neigh add 10.8.0.2 lladdr 02:00:00:00:00:fc dev veth2 nud permanent
ip route add default via 10.9.0.2
";

/// A scenario: its nft lines and its sends (source address and port,
/// destination address and port, payload length); with `reply_after`
/// the peer's [`Answer`] to one send arrives right after it, and the
/// sending socket's `recv` (without waiting) is one more result.
struct Scenario {
    name: &'static str,
    rules: &'static [&'static str],
    sends: &'static [(&'static str, u16, &'static str, u16, usize)],
    reply_after: Option<Answer>,
}

/// The peer's answer to send `after`: to `to`, the send's source as
/// translated; from `from` (`None`: the send's destination as sent).
#[derive(Clone, Copy)]
struct Answer {
    after: usize,
    to: &'static str,
    from: Option<(&'static str, u16)>,
    kind: AnswerKind,
}

#[derive(Clone, Copy, PartialEq)]
enum AnswerKind {
    /// A UDP datagram of 4 bytes.
    Data,
    /// An ICMP port unreachable quoting the datagram as the peer got it;
    /// the socket has `IP_RECVERR` on (set right before).
    PortUnreachable,
}

/// [`Answer`] with the defaults: data from the send's destination.
const fn data_to(after: usize, to: &'static str) -> Option<Answer> {
    Some(Answer {
        after,
        to,
        from: None,
        kind: AnswerKind::Data,
    })
}

const NAT_CHAINS: &[&str] = &[
    "nft add table ip t",
    "nft add chain ip t out '{ type filter hook output priority 0; }'",
    "nft add chain ip t nout '{ type nat hook output priority -100; }'",
    "nft add chain ip t post '{ type nat hook postrouting priority srcnat; }'",
];

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "snat_to_an_address",
        rules: &[
            "nft add rule ip t post udp dport 9 counter snat to 10.9.0.7",
            "nft add rule ip t out ct state new counter",
        ],
        sends: &[
            ("10.9.0.1", 5000, "10.9.0.2", 9, 10),
            ("10.9.0.1", 5000, "10.9.0.2", 9, 20),
            ("10.9.0.1", 5001, "10.9.0.2", 10, 10),
            ("10.9.0.1", 5000, "10.9.0.2", 9, 3000),
        ],
        reply_after: None,
    },
    Scenario {
        name: "snat_port_range_clash",
        rules: &["nft add rule ip t post udp dport 9 counter snat to 10.9.0.7:5000-5001"],
        sends: &[
            ("10.9.0.1", 5000, "10.9.0.2", 9, 10),
            ("10.9.0.5", 5000, "10.9.0.2", 9, 10),
            ("10.9.0.6", 5000, "10.9.0.2", 9, 10),
            ("10.9.0.5", 5000, "10.9.0.2", 9, 30),
        ],
        reply_after: None,
    },
    Scenario {
        name: "masquerade",
        rules: &[
            "nft add rule ip t post udp dport 9 counter masquerade",
            "nft add rule ip t post udp dport 10 counter masquerade to :6000",
            "nft add rule ip t post udp dport 11 masquerade persistent,random",
            "nft add rule ip t post ip protocol udp snat to 10.9.0.9:7-8 fully-random",
        ],
        sends: &[
            ("10.9.0.5", 5000, "10.9.0.2", 9, 10),
            ("10.9.0.5", 5000, "10.9.0.2", 10, 10),
            ("10.9.0.5", 5001, "10.9.0.2", 10, 10),
            ("10.9.0.1", 5002, "10.8.0.2", 9, 10),
        ],
        reply_after: None,
    },
    Scenario {
        name: "dnat_at_output",
        rules: &[
            "nft add rule ip t nout udp dport 99 counter dnat to 10.9.0.3:9",
            "nft add rule ip t nout ip daddr 10.1.1.1 counter dnat to 10.8.0.2",
            "nft add rule ip t out ip daddr 10.8.0.2 counter",
        ],
        sends: &[
            ("10.9.0.1", 5000, "10.9.0.2", 99, 10),
            ("10.9.0.1", 5000, "10.9.0.2", 99, 10),
            ("10.9.0.1", 5001, "10.1.1.1", 53, 10),
            ("10.9.0.1", 5000, "10.9.0.2", 99, 2000),
        ],
        reply_after: None,
    },
    Scenario {
        name: "snat_to_an_address_range",
        rules: &[
            "nft add rule ip t post udp dport 9 counter snat to 10.9.0.10-10.9.0.200",
            "nft add rule ip t post udp dport 10 counter snat to 10.9.0.10-10.9.0.200 persistent",
            "nft add rule ip t post udp dport 11 counter snat to 10.0.0.0-10.255.255.255:7000",
        ],
        sends: &[
            ("10.9.0.1", 5000, "10.9.0.2", 9, 10),
            ("10.9.0.5", 5000, "10.9.0.3", 9, 10),
            ("10.9.0.6", 5000, "10.8.0.2", 9, 10),
            ("10.9.0.1", 5001, "10.9.0.3", 10, 10),
            ("10.9.0.5", 5001, "10.8.0.2", 10, 10),
            ("10.9.0.6", 5002, "10.9.0.2", 11, 10),
            ("10.9.0.6", 7000, "10.9.0.3", 11, 10),
        ],
        reply_after: None,
    },
    Scenario {
        name: "redirect_at_output",
        rules: &[
            "nft add rule ip t nout udp dport 53 counter redirect",
            "nft add rule ip t nout udp dport 54 counter redirect to :5353",
            "nft add rule ip t out oif lo counter",
            "nft add rule ip t out iifname \"veth0\" counter",
            "nft add rule ip t out iifname != \"veth0\" counter",
        ],
        sends: &[
            ("10.9.0.1", 5000, "10.9.0.2", 53, 10),
            ("10.9.0.1", 5000, "10.9.0.2", 54, 10),
            ("10.9.0.1", 5000, "10.9.0.2", 9, 10),
            ("10.9.0.1", 5000, "10.9.0.2", 54, 10),
        ],
        reply_after: None,
    },
    Scenario {
        name: "nat_maps",
        rules: &[
            "nft add rule ip t nout udp dport 53 counter dnat ip to ip daddr . udp dport map { 10.1.1.1 . 53 : 10.9.0.3 . 5353, 10.1.1.2 . 53 : 10.8.0.2 . 53 }",
            "nft add rule ip t post udp dport 9 counter snat ip to ip saddr map { 10.9.0.1 : 10.9.0.10-10.9.0.200, 10.9.0.5 : 10.9.0.100/30 }",
            "nft add rule ip t post udp dport 10 counter snat ip prefix to ip saddr map { 10.9.0.0/24 : 10.7.0.0/24 }",
            "nft add rule ip t post udp dport 11 counter snat to ip saddr map '{ 10.9.0.1 : 10.9.0.7, * : 10.9.0.8 }'",
            "nft add rule ip t post udp dport 12 snat ip to udp dport map { 12 : 10.9.0.9 . 7000 }",
        ],
        sends: &[
            ("10.9.0.1", 5000, "10.1.1.1", 53, 10),
            ("10.9.0.1", 5000, "10.1.1.2", 53, 10),
            ("10.9.0.1", 5001, "10.9.0.2", 9, 10),
            ("10.9.0.5", 5001, "10.9.0.2", 9, 10),
            ("10.9.0.5", 5002, "10.9.0.2", 10, 10),
            ("10.9.0.1", 5003, "10.9.0.2", 11, 10),
            ("10.9.0.6", 5003, "10.9.0.2", 11, 10),
            ("10.9.0.6", 5004, "10.9.0.2", 12, 10),
            ("10.9.0.6", 5004, "10.9.0.2", 13, 10),
        ],
        reply_after: None,
    },
    Scenario {
        name: "ct_state_new_drop",
        rules: &[
            "nft add rule ip t out udp dport 7 ct state new counter drop",
            "nft add rule ip t out ct state established counter accept",
            "nft add rule ip t out ct state != new counter",
            "nft add rule ip t out ct direction original ct state new counter",
            "nft add rule ip t out ct state 3 counter",
        ],
        sends: &[
            ("10.9.0.1", 5000, "10.9.0.2", 7, 10),
            ("10.9.0.1", 5000, "10.9.0.2", 7, 10),
            ("10.9.0.1", 5000, "10.9.0.2", 8, 10),
            ("10.9.0.1", 5000, "10.9.0.2", 8, 10),
        ],
        reply_after: None,
    },
    Scenario {
        name: "ct_state_established",
        rules: &[
            "nft add rule ip t out ct state established counter accept",
            "nft add rule ip t out ct state new counter",
            "nft add rule ip t out ct direction reply counter",
            "nft add rule ip t post udp dport 9 counter snat to 10.9.0.7",
        ],
        sends: &[
            ("10.9.0.1", 5000, "10.9.0.2", 9, 10),
            ("10.9.0.1", 5000, "10.9.0.2", 9, 10),
            ("10.9.0.1", 5000, "10.9.0.2", 9, 10),
            ("10.9.0.1", 5001, "10.9.0.2", 9, 10),
        ],
        reply_after: data_to(0, "10.9.0.7"),
    },
    Scenario {
        name: "snat_error_reaches_the_socket",
        rules: &["nft add rule ip t post udp dport 9 counter snat to 10.9.0.7"],
        sends: &[
            ("10.9.0.1", 5000, "10.9.0.2", 9, 10),
            ("10.9.0.1", 5000, "10.9.0.2", 9, 10),
        ],
        reply_after: Some(Answer {
            after: 0,
            to: "10.9.0.7",
            from: None,
            kind: AnswerKind::PortUnreachable,
        }),
    },
    Scenario {
        name: "dnat_reply_from_the_new_destination",
        rules: &["nft add rule ip t nout udp dport 99 counter dnat to 10.9.0.3:9"],
        sends: &[
            ("10.9.0.1", 5000, "10.9.0.2", 99, 10),
            ("10.9.0.1", 5000, "10.9.0.2", 99, 10),
        ],
        reply_after: Some(Answer {
            after: 0,
            to: "10.9.0.1",
            from: Some(("10.9.0.3", 9)),
            kind: AnswerKind::Data,
        }),
    },
];

/// The peer's answer `a` to send `send` (from `_:sport` to `dst:dport`):
/// an Ethernet broadcast frame, as hex; its IP datagram is from
/// `a.from` (else `dst:dport`) to `a.to:sport`. Data is UDP with no
/// checksum, 4 bytes; a port unreachable quotes the datagram as the peer
/// got it (its header and 8 bytes of UDP, checksums 0).
fn reply_frame(send: &(&str, u16, &str, u16, usize), a: &Answer) -> String {
    let (_, sport, dst, dport, len) = *send;
    let (from, fport) = a.from.unwrap_or((dst, dport));
    let body = match a.kind {
        AnswerKind::Data => {
            let mut u = fport.to_be_bytes().to_vec();
            u.extend_from_slice(&sport.to_be_bytes());
            u.extend_from_slice(&[0, 12, 0, 0]);
            u.extend_from_slice(b"pong");
            u
        }
        AnswerKind::PortUnreachable => {
            let mut q = ip_header(a.to, from, 17, 28 + len as u16);
            q.extend_from_slice(&sport.to_be_bytes());
            q.extend_from_slice(&fport.to_be_bytes());
            q.extend_from_slice(&(8 + len as u16).to_be_bytes());
            q.extend_from_slice(&[0, 0]);
            let mut m = vec![3, 3, 0, 0, 0, 0, 0, 0];
            m.extend_from_slice(&q);
            let sum = !fold(sum16(&m, 0));
            m[2..4].copy_from_slice(&sum.to_be_bytes());
            m
        }
    };
    let proto = if a.kind == AnswerKind::Data { 17 } else { 1 };
    let mut ip = ip_header(from, a.to, proto, 20 + body.len() as u16);
    ip.extend_from_slice(&body);
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 0xfe, 8, 0]);
    f.extend_from_slice(&ip);
    f.iter().map(|b| format!("{b:02x}")).collect()
}

/// An IPv4 header from `src` to `dst`, TTL 64, DF, its checksum right.
fn ip_header(src: &str, dst: &str, proto: u8, total: u16) -> Vec<u8> {
    let a = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap().octets();
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&a(src));
    ip.extend_from_slice(&a(dst));
    let sum = fold(sum16(&ip, 0));
    ip[10..12].copy_from_slice(&(!sum).to_be_bytes());
    ip
}

/// The IP datagrams of a pcap file (microsecond or nanosecond, Ethernet).
fn ip_packets(path: &Path) -> Vec<Vec<u8>> {
    let b = std::fs::read(path).unwrap_or_default();
    let mut v = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let incl = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
        let f = &b[at + 16..(at + 16 + incl).min(b.len())];
        // The peer's injected answers (from its MAC) are not compared.
        if f.len() > 34 && f[12..14] == [8, 0] && f[6..12] != [2, 0, 0, 0, 0, 0xfe] {
            v.push(f[14..].to_vec());
        }
        at += 16 + incl;
    }
    v
}

/// A datagram as compared: its IP id and header checksum masked (the
/// kernel picks ids of fragments at random), and its UDP checksum (veth
/// leaves it to the device: the capture holds the partial sum).
fn masked(p: &[u8]) -> String {
    let mut p = p.to_vec();
    p[4..6].fill(0);
    p[10..12].fill(0);
    let ihl = usize::from(p[0] & 0xf) * 4;
    let first = u16::from_be_bytes([p[6], p[7]]) & 0x1fff == 0;
    if p[9] == 17 && first && p.len() >= ihl + 8 {
        p[ihl + 6..ihl + 8].fill(0);
    }
    p.iter().map(|b| format!("{b:02x}")).collect()
}

fn sum16(b: &[u8], mut acc: u32) -> u32 {
    for c in b.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// ipxmit's datagrams carry right checksums: the IP header's, and a whole
/// (unfragmented) UDP datagram's over its pseudo-header.
fn assert_sums(name: &str, pkts: &[Vec<u8>]) {
    for p in pkts {
        let ihl = usize::from(p[0] & 0xf) * 4;
        assert_eq!(fold(sum16(&p[..ihl], 0)), 0xffff, "{name}: IP checksum");
        let whole = u16::from_be_bytes([p[6], p[7]]) & 0x3fff == 0;
        if p[9] == 17 && whole && u16::from_be_bytes([p[ihl + 6], p[ihl + 7]]) != 0 {
            let pseudo = sum16(&p[12..20], 17 + (p.len() - ihl) as u32);
            assert_eq!(
                fold(sum16(&p[ihl..], pseudo)),
                0xffff,
                "{name}: UDP checksum"
            );
        }
    }
}

/// `conntrack -L` lines with the timeout masked, sorted.
fn flows(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("udp ") || l.starts_with("icmp "))
        .map(|l| {
            let mut w: Vec<&str> = l.split_whitespace().collect();
            w[2] = "T";
            w.join(" ")
        })
        .collect();
    v.sort();
    v
}

/// The kernel's side of a scenario: send results, datagrams on veth1 and
/// veth3, `conntrack -L`, `nft list ruleset`.
fn kernel(s: &Scenario, ns: &str, dir: &Path) -> (Vec<String>, [Vec<Vec<u8>>; 2], String, String) {
    assert!(Command::new("ip")
        .args(["netns", "add", ns])
        .status()
        .unwrap()
        .success());
    let (_, err, code) = sh(
        ns,
        "ip link set lo up; ip link add veth0 type veth peer name veth1; \
         ip link add veth2 type veth peer name veth3; ip link set veth1 up; ip link set veth3 up; \
         sysctl -qw net.ipv6.conf.all.disable_ipv6=1",
    );
    assert_eq!(code, 0, "{err}");
    for l in SETUP
        .lines()
        .chain(NAT_CHAINS.iter().copied())
        .chain(s.rules.iter().copied())
    {
        let (_, err, code) = sh(ns, l);
        assert_eq!(code, 0, "{l}: {err}");
    }
    let caps = [dir.join("k1.pcap"), dir.join("k3.pcap")];
    let mut dumps: Vec<_> = ["veth1", "veth3"]
        .iter()
        .zip(&caps)
        .map(|(d, f)| {
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    ns,
                    "tcpdump",
                    "--immediate-mode",
                    "-U",
                    "-n",
                    "-i",
                    d,
                    "-w",
                ])
                .arg(f)
                .arg("ip")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("tcpdump")
        })
        .collect();
    // tcpdump says "listening on DEV" once it captures (its stderr kept
    // open until it ends).
    let mut errs = Vec::new();
    for d in &mut dumps {
        let mut r = std::io::BufReader::new(d.stderr.take().expect("tcpdump's stderr"));
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut r, &mut line);
        assert!(line.contains("listening on"), "tcpdump: {line}");
        errs.push(r);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut py = String::from("import socket,errno,time\nsocks={}\n");
    // The payload of ipxmit's n-th send: byte i is (7i + n) mod 256.
    for (n, (src, sport, dst, dport, len)) in s.sends.iter().enumerate() {
        py.push_str(&format!(
            "k=('{src}',{sport})\nif k not in socks:\n s=socket.socket(2,2)\n s.bind(k)\n socks[k]=s\n\
             d=bytes((7*i+{n})&255 for i in range({len}))\n\
             try:\n print('ret',socks[k].sendto(d,('{dst}',{dport})))\n\
             except OSError as e:\n print(errno.errorcode[e.errno])\n"
        ));
        if let Some(a) = s.reply_after.filter(|r| r.after == n) {
            if a.kind == AnswerKind::PortUnreachable {
                py.push_str("socks[k].setsockopt(0,11,1)\n");
            }
            py.push_str(&format!(
                "p=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\np.bind(('veth1',0))\n\
                 p.send(bytes.fromhex('{}'))\ntime.sleep(0.05)\n\
                 try:\n d,a=socks[k].recvfrom(2048,socket.MSG_DONTWAIT)\n \
                 print('recv',len(d),'from','%s:%d'%a)\n\
                 except OSError as e:\n print(errno.errorcode[e.errno])\n",
                reply_frame(&s.sends[n], &a)
            ));
        }
    }
    std::fs::write(dir.join("send.py"), &py).unwrap();
    let (out, err, code) = sh(ns, &format!("python3 {}", dir.join("send.py").display()));
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    for d in &mut dumps {
        // Ends the tcpdump this test started (by its handle).
        let _ = d.kill();
        let _ = d.wait();
    }
    drop(errs);
    let results = out.lines().map(str::to_string).collect();
    let ct = sh(ns, "conntrack -L").0;
    let rules = sh(ns, "nft list ruleset").0;
    (results, caps.map(|c| ip_packets(&c)), ct, rules)
}

/// ipxmit's side: the same, from one script.
fn ours(s: &Scenario, dir: &Path) -> (Vec<String>, [Vec<Vec<u8>>; 2], String, String) {
    let caps = [dir.join("i0.pcap"), dir.join("i2.pcap")];
    let mut script = format!(
        "link add veth0 type mem\nlink add veth2 type mem\n{SETUP}capture dev veth0 file {}\n\
         capture dev veth2 file {}\n",
        caps[0].display(),
        caps[1].display()
    );
    for l in NAT_CHAINS.iter().chain(s.rules) {
        script.push_str(l);
        script.push('\n');
    }
    let mut names = Vec::new();
    for (i, (src, sport, dst, dport, len)) in s.sends.iter().enumerate() {
        let k = format!("{src}:{sport}");
        let n = match names.iter().position(|x| *x == k) {
            Some(i) => i,
            None => {
                names.push(k.clone());
                script.push_str(&format!(
                    "socket s{0} udp\nbind s{0} {k}\n",
                    names.len() - 1
                ));
                names.len() - 1
            }
        };
        script.push_str(&format!("send s{n} to {dst}:{dport} len {len}\n"));
        if let Some(a) = s.reply_after.filter(|r| r.after == i) {
            if a.kind == AnswerKind::PortUnreachable {
                script.push_str(&format!("sockopt s{n} ip_recverr 1\n"));
            }
            let f = reply_frame(&s.sends[i], &a);
            script.push_str(&format!("inject dev veth0 frame {f}\nrecv s{n}\n"));
        }
    }
    script.push_str("conntrack -L\nnft list ruleset\n");
    let r = run_script(dir, &script, &["--no-stats"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let results = r
        .stdout
        .lines()
        .filter(|l| l.contains(": send ") || l.contains(": recv "))
        .map(|l| match l.split_once(" = ") {
            Some((_, v)) if v.starts_with("-1 ") => {
                v[3..].split(':').next().unwrap_or("").to_string()
            }
            Some((_, v)) if l.contains(": recv ") => format!("recv {v}"),
            Some((_, v)) => format!("ret {v}"),
            None => l.to_string(),
        })
        .collect();
    let rules_at = r.stdout.find("table ip t").unwrap_or(r.stdout.len());
    let (head, rules) = r.stdout.split_at(rules_at);
    assert!(
        r.stderr.contains("(conntrack-tools): ")
            && r.stderr.contains("flow entries have been shown."),
        "{}",
        r.stderr
    );
    (
        results,
        caps.map(|c| ip_packets(&c)),
        head.to_string(),
        rules.to_string(),
    )
}

#[test]
fn nat_and_conntrack_match_the_kernel() {
    if let Some(why) = common::missing_tools(&["tcpdump", "conntrack", "nft"]) {
        eprintln!(
            "SKIPPED (needs root, network namespaces, tcpdump, conntrack): nat_kernel [{why}]"
        );
        return;
    }
    for (i, s) in SCENARIOS.iter().enumerate() {
        let dir = tmpdir(&format!("nat_kernel_{}", s.name));
        let ns = Ns(format!("ipxmit-nat-{}-{i}", std::process::id()));
        let (kr, kf, kct, krules) = kernel(s, &ns.0, &dir);
        let (ir, if_, ict, irules) = ours(s, &dir);
        assert_eq!(ir, kr, "{}: send results", s.name);
        assert!(!kf[0].is_empty(), "{}: the kernel sent nothing", s.name);
        for (l, (k, o)) in kf.iter().zip(&if_).enumerate() {
            let hx = |v: &Vec<Vec<u8>>| -> Vec<String> { v.iter().map(|p| masked(p)).collect() };
            assert_eq!(hx(o), hx(k), "{}: datagrams on link {l}", s.name);
            assert_sums(s.name, o);
        }
        assert_eq!(flows(&ict), flows(&kct), "{}: conntrack -L", s.name);
        assert_eq!(irules, krules, "{}: nft list ruleset", s.name);
    }
}
