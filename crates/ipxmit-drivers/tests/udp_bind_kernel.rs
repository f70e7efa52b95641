//! UDP port binding against the kernel: the same sequence of sockets,
//! `SO_REUSEADDR`/`SO_REUSEPORT`, binds, connects and closes, run on kernel
//! sockets in a namespace of our own (a veth end with 10.0.0.1/24 and
//! 10.1.0.1/24) and on ipxmit sockets of a stack with the same addresses;
//! every call's errno must match (`udp_lib_get_port`/`udp_lib_lport_inuse`).

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};

use ipxmit::{SendError, UdpSocket};
use ipxmit_drivers::netns::Netns;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const ANY: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
const NOT_OURS: Ipv4Addr = Ipv4Addr::new(10, 9, 9, 9);

/// One step: socket index and what it does.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// `setsockopt(SO_REUSEADDR, 1)`.
    ReuseAddr(usize),
    /// `setsockopt(SO_REUSEPORT, 1)`.
    ReusePort(usize),
    /// `bind`.
    Bind(usize, Ipv4Addr, u16),
    /// `connect` (a UDP connect sends nothing).
    Connect(usize, Ipv4Addr, u16),
    /// `close`.
    Close(usize),
}

const SOCKS: usize = 20;

fn script() -> Vec<Op> {
    use Op::*;
    vec![
        // Distinct addresses share a port; the wildcard overlaps both.
        Bind(0, A, 5000),
        Bind(1, B, 5000),
        Bind(2, ANY, 5000),
        Bind(3, A, 5000),
        Bind(2, NOT_OURS, 5000),
        // SO_REUSEADDR on both sides only.
        ReuseAddr(4),
        Bind(4, ANY, 5001),
        ReuseAddr(5),
        Bind(5, A, 5001),
        Bind(6, B, 5001),
        // SO_REUSEPORT on both sides only.
        ReusePort(7),
        Bind(7, A, 5002),
        ReusePort(8),
        Bind(8, A, 5002),
        ReusePort(9),
        ReuseAddr(9),
        Bind(9, ANY, 5002),
        Bind(10, A, 5002),
        Bind(10, B, 5002),
        // Close releases: 3 can now have A:5000.
        Close(0),
        Bind(3, A, 5000),
        // A connect picks the wildcard socket's address (udp_v4_rehash).
        Bind(11, ANY, 5003),
        Bind(12, B, 5003),
        Connect(11, Ipv4Addr::new(10, 0, 0, 2), 9),
        Bind(12, B, 5003),
        Bind(13, A, 5003),
        // SO_REUSEADDR set after the bind counts for later binds.
        Bind(14, A, 5004),
        ReuseAddr(14),
        ReuseAddr(15),
        Bind(15, ANY, 5004),
        // A bound socket cannot bind again.
        Bind(14, A, 5005),
        // Ephemeral ports skip only overlapping holders.
        Bind(16, A, 0),
        Bind(17, ANY, 0),
        Connect(18, Ipv4Addr::new(10, 1, 0, 2), 9),
        Bind(19, NOT_OURS, 0),
    ]
}

/// Runs the script on kernel sockets; each step's errno (0: success).
fn on_kernel(ops: &[Op]) -> Vec<i32> {
    let fds: Vec<i32> = (0..SOCKS)
        // SAFETY: plain socket(2); the fds are closed below.
        .map(|_| unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) })
        .collect();
    assert!(fds.iter().all(|&f| f >= 0));
    let mut closed = [false; SOCKS];
    let errs = ops
        .iter()
        .map(|op| {
            let r = match *op {
                Op::ReuseAddr(i) => setopt(fds[i], libc::SO_REUSEADDR),
                Op::ReusePort(i) => setopt(fds[i], libc::SO_REUSEPORT),
                Op::Bind(i, a, p) => addr_call(fds[i], a, p, libc::bind),
                Op::Connect(i, a, p) => addr_call(fds[i], a, p, libc::connect),
                Op::Close(i) => {
                    closed[i] = true;
                    // SAFETY: an fd of ours, closed once.
                    unsafe { libc::close(fds[i]) }
                }
            };
            if r == 0 {
                0
            } else {
                std::io::Error::last_os_error().raw_os_error().unwrap()
            }
        })
        .collect();
    for (i, &f) in fds.iter().enumerate() {
        if !closed[i] {
            // SAFETY: an fd of ours, closed once.
            unsafe { libc::close(f) };
        }
    }
    errs
}

fn setopt(fd: i32, opt: i32) -> i32 {
    let one: libc::c_int = 1;
    // SAFETY: a c_int option value of the right length.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    }
}

type AddrFn = unsafe extern "C" fn(i32, *const libc::sockaddr, libc::socklen_t) -> i32;

fn addr_call(fd: i32, a: Ipv4Addr, port: u16, f: AddrFn) -> i32 {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(a).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a valid sockaddr_in of the length given.
    unsafe {
        f(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    }
}

/// Runs the script on ipxmit sockets; each step's errno (0: success).
fn on_ipxmit(ops: &[Op]) -> Vec<i32> {
    let (stack, _wire) = common::mem_host(common::eth0(), 1, 64);
    stack
        .add_addr("eth0", "10.1.0.1/24".parse().unwrap())
        .unwrap();
    let mut socks: Vec<Option<UdpSocket>> =
        (0..SOCKS).map(|_| Some(UdpSocket::new(&stack))).collect();
    ops.iter()
        .map(|op| {
            let r: Result<(), SendError> = match *op {
                Op::ReuseAddr(i) => {
                    socks[i].as_mut().unwrap().set_reuseaddr(true);
                    Ok(())
                }
                Op::ReusePort(i) => {
                    socks[i].as_mut().unwrap().set_reuseport(true);
                    Ok(())
                }
                Op::Bind(i, a, p) => socks[i].as_mut().unwrap().bind(SocketAddrV4::new(a, p)),
                Op::Connect(i, a, p) => socks[i].as_mut().unwrap().connect(SocketAddrV4::new(a, p)),
                Op::Close(i) => {
                    socks[i] = None;
                    Ok(())
                }
            };
            r.map_or_else(|e| e.errno() as i32, |()| 0)
        })
        .collect()
}

#[test]
fn udp_bind_errnos_match_the_kernel() {
    let ops = script();
    let ours = on_ipxmit(&ops);
    // What the kernel answers (checked below where it can run): the table
    // the comparison rests on, so a regression shows even without root.
    let (inuse, notavail, inval) = (libc::EADDRINUSE, libc::EADDRNOTAVAIL, libc::EINVAL);
    let want = [
        0, 0, inuse, inuse, notavail, // 5000
        0, 0, 0, 0, inuse, // 5001
        0, 0, 0, 0, 0, 0, 0, inuse, inuse, // 5002
        0, 0, // close
        0, inuse, 0, 0, inuse, // connect rehash
        0, 0, 0, 0, inval, // reuse after bind; rebind
        0, 0, 0, notavail, // ephemeral
    ];
    let show = |v: &[i32]| -> Vec<String> {
        ops.iter()
            .zip(v)
            .map(|(o, e)| format!("{o:?} = {e}"))
            .collect()
    };
    assert_eq!(show(&ours), show(&want));
    if common::skip("udp_bind_errnos_match_the_kernel") {
        return;
    }
    let ns = Netns::unique("udpbind").unwrap();
    ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"])
        .unwrap();
    ns.ip(&["link", "set", "d1", "up"]).unwrap();
    ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "d0"]).unwrap();
    ns.ip(&["addr", "add", "10.1.0.1/24", "dev", "d0"]).unwrap();
    ns.ip(&["link", "set", "d0", "up"]).unwrap();
    let kernel = ns.run(|| on_kernel(&ops)).unwrap();
    assert_eq!(show(&ours), show(&kernel));
}
