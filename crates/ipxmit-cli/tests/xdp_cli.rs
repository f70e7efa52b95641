//! The AF_XDP driver through the real binary: `ipxmit send --dev
//! xdp:IFACE` and a script's `link add ... type xdp`, run inside namespace
//! `A` of a veth pair whose `B` end (10.0.0.2/24) has a kernel UDP socket
//! counting what arrives. Our stack resolves 10.0.0.2 over ARP through the
//! packet socket that receives.
//!
//! Needs root, network namespaces and AF_XDP; otherwise each test prints
//! `SKIPPED (<reason>): <test>` and returns.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bin, tmpdir, Run};
use ipxmit_drivers::netns::{self, Netns};

/// Namespaces `A` (veth end `xa0`) and `B` (`xb0`, 10.0.0.2/24) and the
/// receiving thread, which returns the datagrams' lengths in order.
struct Veth {
    a: Netns,
    _b: Netns,
    rx: std::thread::JoinHandle<Vec<usize>>,
}

/// The pair and its receiver on 10.0.0.2:9000, or `None` after printing
/// why the test cannot run here.
fn veth(tag: &str, test: &str) -> Option<Veth> {
    if let Some(why) = netns::unavailable() {
        eprintln!("SKIPPED (needs root and network namespaces): {test} [{why}]");
        return None;
    }
    // SAFETY: plain socket(2) call; a descriptor we get is closed at once.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        eprintln!("SKIPPED (kernel without AF_XDP sockets: {e}): {test}");
        return None;
    }
    // SAFETY: `fd` is ours and not used after.
    unsafe { libc::close(fd) };
    let a = Netns::unique(&format!("{tag}-a")).unwrap();
    let b = Netns::unique(&format!("{tag}-b")).unwrap();
    let link = ["link", "add", "xa0", "netns", a.name(), "type", "veth"];
    netns::ip(&[&link[..], &["peer", "name", "xb0", "netns", b.name()]].concat()).unwrap();
    b.ip(&["addr", "add", "10.0.0.2/24", "dev", "xb0"]).unwrap();
    b.ip(&["link", "set", "xb0", "up"]).unwrap();
    a.ip(&["link", "set", "xa0", "up"]).unwrap();
    let sock = b.run(|| UdpSocket::bind("10.0.0.2:9000")).unwrap().unwrap();
    let big: libc::c_int = 64 << 20;
    // SAFETY: a valid socket and a live option value of the size passed.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&big as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_RCVBUFFORCE");
    sock.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    let rx = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut got = Vec::new();
        while let Ok(n) = sock.recv(&mut buf) {
            got.push(n);
        }
        got
    });
    Some(Veth { a, _b: b, rx })
}

/// `ip netns exec A ipxmit ARGS...` in `dir`.
fn ipxmit_in(ns: &Netns, dir: &std::path::Path, args: &[&str]) -> Run {
    Command::new("ip")
        .args(["netns", "exec", ns.name(), bin()])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .into()
}

/// `send --dev xdp:xa0`: 100 datagrams of 8000 bytes (6 fragments each)
/// all leave and all arrive.
#[test]
fn send_dev_xdp_delivers_every_datagram() {
    let Some(v) = veth("xdp-clis", "send_dev_xdp_delivers_every_datagram") else {
        return;
    };
    let d = tmpdir("xdp-cli-send");
    let args = [
        "send",
        "--dev",
        "xdp:xa0",
        "-c",
        "10.0.0.2:9000",
        "-n",
        "100",
        "-l",
        "8000",
        "--json",
    ];
    let r = ipxmit_in(&v.a, &d, &args);
    let got = v.rx.join().unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    let j: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let o = &j["outcome"];
    assert_eq!(o["sent"], 600, "{o}");
    assert_eq!(o["sent"], o["packets"], "{o}");
    assert_eq!(got, vec![8000; 100]);
}

/// A script with `link add eth0 type xdp ifname xa0 ring 64`: every size,
/// in order, after ARP; a queue the interface lacks is refused by name.
#[test]
fn script_link_type_xdp_sends_every_size_in_order() {
    let test = "script_link_type_xdp_sends_every_size_in_order";
    let Some(v) = veth("xdp-clir", test) else {
        return;
    };
    let d = tmpdir("xdp-cli-run");
    let mut script = String::from(
        "link add eth0 type xdp ifname xa0 ring 64\naddr add 10.0.0.1/24 dev eth0\n\
         socket s udp bind 10.0.0.1:5000\n",
    );
    let sizes = [0, 18, 1472, 1473, 8000, 65000];
    for n in sizes {
        script += &format!("send s to 10.0.0.2:9000 len {n}\n");
    }
    script += "sleep 500ms\n";
    std::fs::write(d.join("s.ipx"), &script).unwrap();
    let r = ipxmit_in(&v.a, &d, &["run", "--realtime", "s.ipx"]);
    let got = v.rx.join().unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(got, sizes.to_vec(), "{}", r.stdout);
    let bad = "link add eth1 type xdp ifname xa0 queue 5\n";
    std::fs::write(d.join("q.ipx"), bad).unwrap();
    let r = ipxmit_in(&v.a, &d, &["run", "q.ipx"]);
    assert_ne!(r.code, 0, "{r:?}");
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("xa0 queue 5: no such queue"), "{r:?}");
}
