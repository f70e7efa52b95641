//! netdev `egress` chains held against this machine's kernel (issue 16,
//! item 4): the same `ip` and `nft` lines in a network namespace this test
//! creates and in an `ipxmit run` host, the same UDP sends (single and
//! `sendmmsg`, with and without `IP_RECVERR`), compared: each send's result
//! (a drop at egress is `ENOBUFS` only under `IP_RECVERR`, else the send
//! succeeds), `SO_ERROR` and the error queue after, the frames on the wire
//! (captured on the veth peer in the kernel's namespace, `capture` of the
//! `mem` link in ipxmit; IP ids and checksums masked), the nft counters
//! (`meta length` and byte counts include the link header; a transport
//! match sees first fragments only), the IPv4/UDP MIBs (`IpFragFails` for
//! the datagram whose second fragment was dropped, `IpOutDiscards`,
//! `UdpSndbufErrors`) and the device's transmit counters.
//!
//! The namespace has IPv6 off, so only these sends leave by its link.
//! Needs root, `ip netns`, `tcpdump`, `nft` and `python3`; without them the
//! test prints `SKIPPED (...)` and passes.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use common::{pcap_frames, run_script, sh, tmpdir, Ns};

const SETUP: &str = "ip addr add 10.9.0.1/24 dev veth0
ip link set veth0 up
ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:fe dev veth0 nud permanent
";

/// Two egress chains on `veth0` (the one of lower priority first, which
/// counts later fragments by a mask); the second fragment of a 3000-byte
/// datagram (offset 185, MF: frag-off 8377) is dropped, as is every frame
/// of mark 7.
const RULES: &[&str] = &[
    "nft add table netdev t",
    "nft add chain netdev t eg '{ type filter hook egress device \"veth0\" priority 0; }'",
    "nft add chain netdev t first '{ type filter hook egress device \"veth0\" priority -5; }'",
    "nft add chain netdev t other '{ type filter hook egress device \"lo\" priority 0; }'",
    "nft add rule netdev t first meta length 1514 counter",
    "nft add rule netdev t first oifname \"veth0\" counter",
    "nft add rule netdev t first 'ip frag-off & 0x1fff != 0' counter",
    "nft add rule netdev t eg ip frag-off 8377 counter drop",
    "nft add rule netdev t eg udp dport 9 counter",
    "nft add rule netdev t eg meta mark 0x7 counter drop",
    "nft add rule netdev t eg ip protocol udp counter",
    "nft add rule netdev t other counter drop",
];

/// The sends, in ipxmit's script syntax; the kernel's side makes the same
/// calls ([`KERNEL_PY`]).
const SENDS: &str = "socket s udp
send s to 10.9.0.2:9 len 3000
send s to 10.9.0.2:9 len 100
sockopt s so_mark 7
send s to 10.9.0.2:9 len 100
sockopt s so_mark 0
sockopt s ip_recverr 1
send s to 10.9.0.2:9 len 3000
send s to 10.9.0.2:9 len 2000
sockopt s so_mark 7
send s to 10.9.0.2:9 len 100
sockopt s so_mark 0
errqueue s
sendmmsg s to 10.9.0.2:9 len 100 to 10.9.0.2:9 len 3000 to 10.9.0.2:9 len 100
getsockopt s so_error
sendmmsg s to 10.9.0.2:9 len 3000 to 10.9.0.2:9 len 100
sockopt s ip_recverr 0
sendmmsg s to 10.9.0.2:9 len 100 to 10.9.0.2:9 len 3000 to 10.9.0.2:9 len 100
getsockopt s so_error
";

/// The same calls through the kernel (`sendmmsg` by ctypes); the n-th
/// message carries bytes (7i + n) mod 256, as ipxmit's (a `sendmmsg`
/// counts the messages it sent, a `send` counts itself). Prints one line
/// per result, then the IPv4 and UDP MIBs (`/proc/net/snmp`).
const KERNEL_PY: &str = r#"import socket,errno,ctypes,struct
libc=ctypes.CDLL(None,use_errno=True)
N=[0]
def pl(n):
  N[0]+=1; return bytes((7*i+N[0]-1)&255 for i in range(n))
def tr(f):
  try: print("ret", f())
  except OSError as e: print(errno.errorcode[e.errno])
class iov(ctypes.Structure): _fields_=[("b",ctypes.c_void_p),("n",ctypes.c_size_t)]
class mh(ctypes.Structure): _fields_=[("name",ctypes.c_void_p),("nl",ctypes.c_uint32),("iov",ctypes.POINTER(iov)),("iovlen",ctypes.c_size_t),("c",ctypes.c_void_p),("cl",ctypes.c_size_t),("f",ctypes.c_int)]
class mm(ctypes.Structure): _fields_=[("h",mh),("len",ctypes.c_uint)]
TO=struct.pack("<H",2)+struct.pack(">H",9)+socket.inet_aton("10.9.0.2")+bytes(8)
def mmsg(s,lens):
  keep=[]; v=(mm*len(lens))(); base=N[0]
  a=ctypes.create_string_buffer(TO,16); keep.append(a)
  for k,n in enumerate(lens):
    b=ctypes.create_string_buffer(bytes((7*i+base+k)&255 for i in range(n)),n); keep.append(b)
    io=iov(ctypes.addressof(b),n); keep.append(io)
    v[k].h=mh(ctypes.addressof(a),16,ctypes.pointer(io),1,None,0,0)
  r=libc.sendmmsg(s.fileno(),v,len(lens),0); N[0]=base+max(r,0)
  print("ret",r) if r>=0 else print(errno.errorcode[ctypes.get_errno()])
def soerr(s): print("so_error", s.getsockopt(1,4))
s=socket.socket(2,2); D=("10.9.0.2",9)
tr(lambda: s.sendto(pl(3000),D)); tr(lambda: s.sendto(pl(100),D))
s.setsockopt(1,36,7); tr(lambda: s.sendto(pl(100),D)); s.setsockopt(1,36,0)
s.setsockopt(0,11,1)
tr(lambda: s.sendto(pl(3000),D)); tr(lambda: s.sendto(pl(2000),D))
s.setsockopt(1,36,7); tr(lambda: s.sendto(pl(100),D)); s.setsockopt(1,36,0)
try: print("ee", s.recvmsg(100,1024,socket.MSG_ERRQUEUE))
except OSError as e: print("ee", errno.errorcode[e.errno])
mmsg(s,[100,3000,100]); soerr(s)
mmsg(s,[3000,100])
s.setsockopt(0,11,0)
mmsg(s,[100,3000,100]); soerr(s)
t=open("/proc/net/snmp").read().split("\n")
for h,v in zip(t[0::2],t[1::2]):
  if not h: continue
  p,names=h.split(": "); vals=v.split(": ")[1]
  for n,x in zip(names.split(),vals.split()): print("mib",p+n,x)
"#;

/// The MIB counters compared.
const MIBS: &[&str] = &[
    "IpOutRequests",
    "IpOutDiscards",
    "IpFragOKs",
    "IpFragFails",
    "IpFragCreates",
    "UdpOutDatagrams",
    "UdpSndbufErrors",
];

/// A frame as compared: the IP datagram with its id, checksums and the
/// ephemeral source port masked (the kernel's fragment ids and ports are
/// random; veth leaves the UDP checksum to the device).
fn masked(frame: &[u8]) -> String {
    let mut p = frame.get(14..).unwrap_or_default().to_vec();
    if p.len() < 20 {
        return format!("short: {p:02x?}");
    }
    p[4..6].fill(0);
    p[10..12].fill(0);
    let first = u16::from_be_bytes([p[6], p[7]]) & 0x1fff == 0;
    if p[9] == 17 && first && p.len() >= 28 {
        p[20..22].fill(0);
        p[26..28].fill(0);
    }
    p.iter().map(|b| format!("{b:02x}")).collect()
}

/// What one side did: the results in order, the frames, the listing, the
/// MIBs and the device's transmit (packets, bytes).
#[derive(Debug, PartialEq)]
struct Side {
    results: Vec<String>,
    frames: Vec<String>,
    rules: String,
    mibs: BTreeMap<String, i64>,
    tx: (i64, i64),
}

/// `(packets, bytes)` of `ip -s -j link show`'s first link.
fn tx_of(json: &serde_json::Value) -> (i64, i64) {
    let tx = &json["stats64"]["tx"];
    (
        tx["packets"].as_i64().unwrap_or(-1),
        tx["bytes"].as_i64().unwrap_or(-1),
    )
}

fn kernel(ns: &str, dir: &std::path::Path) -> Side {
    assert!(Command::new("ip")
        .args(["netns", "add", ns])
        .status()
        .unwrap()
        .success());
    let (_, err, code) = sh(
        ns,
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 && \
         ip link set lo up && ip link add veth0 type veth peer name veth1 && ip link set veth1 up",
    );
    assert_eq!(code, 0, "{err}");
    for l in SETUP.lines().chain(RULES.iter().copied()) {
        let (_, err, code) = sh(ns, l);
        assert_eq!(code, 0, "{l}: {err}");
    }
    let cap = dir.join("k_veth1.pcap");
    let mut dump = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "tcpdump",
            "--immediate-mode",
            "-U",
            "-n",
        ])
        .arg("--time-stamp-precision=nano")
        .args(["-i", "veth1", "-w"])
        .arg(&cap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump");
    let mut r = std::io::BufReader::new(dump.stderr.take().expect("tcpdump's stderr"));
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(&mut r, &mut line);
    assert!(line.contains("listening on"), "tcpdump: {line}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::fs::write(dir.join("send.py"), KERNEL_PY).unwrap();
    let (out, err, code) = sh(ns, &format!("python3 {}", dir.join("send.py").display()));
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Ends the tcpdump this test started (by its handle).
    let _ = dump.kill();
    let _ = dump.wait();
    let mut side = Side {
        results: Vec::new(),
        frames: pcap_frames(&cap).iter().map(|(_, f)| masked(f)).collect(),
        rules: sh(ns, "nft list ruleset").0,
        mibs: BTreeMap::new(),
        tx: (0, 0),
    };
    for l in out.lines() {
        match l.split_whitespace().collect::<Vec<_>>()[..] {
            ["mib", name, v] if MIBS.contains(&name) => {
                side.mibs.insert(name.to_string(), v.parse().unwrap_or(-1));
            }
            ["mib", ..] => {}
            ["ee", "EAGAIN"] => side.results.push("errqueue empty".into()),
            _ => side.results.push(l.to_string()),
        }
    }
    let link = sh(ns, "ip -s -j link show veth0").0;
    let v: serde_json::Value = serde_json::from_str(&link).expect("ip -j");
    side.tx = tx_of(&v[0]);
    side
}

fn ours(dir: &std::path::Path) -> Side {
    let cap = dir.join("i_veth0.pcap");
    let mut script = format!(
        "link add veth0 type mem\n{SETUP}capture dev veth0 file {}\n",
        cap.display()
    );
    for l in RULES {
        script.push_str(l);
        script.push('\n');
    }
    script.push_str(SENDS);
    script.push_str("nft list ruleset\n");
    let r = run_script(dir, &script, &["--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut side = Side {
        results: Vec::new(),
        frames: pcap_frames(&cap).iter().map(|(_, f)| masked(f)).collect(),
        rules: String::new(),
        mibs: BTreeMap::new(),
        tx: (0, 0),
    };
    for v in common::json_lines(&r.stdout) {
        match v["op"].as_str() {
            Some("send" | "sendmmsg") => side.results.push(match v["errno"].as_str() {
                Some(e) => e.to_string(),
                None => format!("ret {}", v["ret"]),
            }),
            Some("getsockopt") => side.results.push(format!("so_error {}", v["value"])),
            Some("errqueue") if v["entries"].as_array().is_some_and(|e| e.is_empty()) => {
                side.results.push("errqueue empty".into())
            }
            Some("errqueue") => side.results.push(format!("ee {}", v["entries"])),
            Some("nft") => side.rules.push_str(v["out"].as_str().unwrap_or("")),
            Some("stats") => {
                for m in MIBS {
                    let n = v["nstat"]["kernel"][*m].as_i64().unwrap_or(0);
                    side.mibs.insert(m.to_string(), n);
                }
                let links = v["links"].as_array().cloned().unwrap_or_default();
                if let Some(l) = links.iter().find(|l| l["ifname"] == "veth0") {
                    side.tx = tx_of(l);
                }
            }
            _ => {}
        }
    }
    side
}

#[test]
fn egress_chains_see_each_frame_as_the_kernels_do() {
    if let Some(why) = common::missing_tools(&["tcpdump", "nft", "python3"]) {
        eprintln!("SKIPPED (needs root, network namespaces, tcpdump, nft): nft_egress [{why}]");
        return;
    }
    let dir = tmpdir("nft_egress_kernel");
    let ns = Ns(format!("nft-egress-{}", std::process::id()));
    let k = kernel(&ns.0, &dir);
    let i = ours(&dir);
    assert_eq!(i.results, k.results, "send results");
    assert_eq!(
        &k.results[..6],
        ["ret 3000", "ret 100", "ret 100", "ENOBUFS", "ret 2000", "ENOBUFS"],
        "the kernel's egress drops: ENOBUFS only under IP_RECVERR"
    );
    assert_eq!(i.rules, k.rules, "nft list ruleset (counters)");
    assert_eq!(i.mibs, k.mibs, "MIBs");
    assert!(
        k.mibs["IpFragFails"] >= 2,
        "the aborted datagrams: {:?}",
        k.mibs
    );
    assert_eq!(i.tx, k.tx, "veth0's transmit packets and bytes");
    assert_eq!(i.frames.len(), k.frames.len(), "frame count");
    for (n, (a, b)) in i.frames.iter().zip(&k.frames).enumerate() {
        assert!(
            a == b,
            "frame {n} differs:\nipxmit {a:.120}\nkernel {b:.120}"
        );
    }
}
