//! A pair of network namespaces joined by a veth, for the kernel side of the
//! differential suite.
//!
//! `A` holds the sender end (`kda0`, 10.77.N.1/24, offloads off, a static
//! neighbour for 10.77.N.2); `B` holds the capturing end (`kdb0`) with no IPv4
//! address at all, so nothing in `B` ever answers (no ICMP port/protocol
//! unreachable could reach the sender's error queue) and IPv6 is off on both
//! sides, so the only frames on the link are the ones a scenario sends. The
//! namespaces are deleted when the [`NetnsPair`] is dropped, also on panic.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// MAC of the sender end (also the ipxmit device's).
pub const MAC_A: [u8; 6] = [0x02, 0x6b, 0x64, 0x00, 0x00, 0x01];
/// MAC of the capturing end (the static neighbour's).
pub const MAC_B: [u8; 6] = [0x02, 0x6b, 0x64, 0x00, 0x00, 0x02];
/// Interface name in `A`.
pub const DEV_A: &str = "kda0";
/// Interface name in `B`.
pub const DEV_B: &str = "kdb0";

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Why the suite cannot run here (not root, no `ip`, no namespaces).
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => {}
        _ => return Some("iproute2 `ip` not found".into()),
    }
    if File::open("/proc/thread-self/ns/net").is_err() {
        return Some("no /proc/thread-self/ns/net".into());
    }
    None
}

/// The two namespaces and the veth between them. See the module documentation.
pub struct NetnsPair {
    /// Name of the sender namespace.
    pub name_a: String,
    /// Name of the capture namespace.
    pub name_b: String,
    /// Open handle of `A` (for `setns`).
    pub ns_a: File,
    /// Open handle of `B`.
    pub ns_b: File,
    /// Sender address (10.77.N.1).
    pub addr_a: Ipv4Addr,
    /// Destination address (10.77.N.2), a static neighbour of `A`.
    pub addr_b: Ipv4Addr,
    mtu: u32,
}

impl NetnsPair {
    /// Creates the pair; on any failure what was made is removed again.
    pub fn new() -> io::Result<NetnsPair> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name_a = format!("kd-a-{pid}-{n}");
        let name_b = format!("kd-b-{pid}-{n}");
        let sub = (pid.wrapping_mul(7).wrapping_add(n) % 250 + 1) as u8;
        let mut guard = Cleanup(vec![]);
        ip(&["netns", "add", &name_a])?;
        guard.0.push(name_a.clone());
        ip(&["netns", "add", &name_b])?;
        guard.0.push(name_b.clone());
        let ns_a = File::open(format!("/var/run/netns/{name_a}"))?;
        let ns_b = File::open(format!("/var/run/netns/{name_b}"))?;
        for ns in [&ns_a, &ns_b] {
            in_netns(ns, || -> io::Result<()> {
                for f in [
                    "/proc/sys/net/ipv6/conf/all/disable_ipv6",
                    "/proc/sys/net/ipv6/conf/default/disable_ipv6",
                ] {
                    // IPv6 may be absent altogether: nothing to turn off then.
                    let _ = std::fs::write(f, "1");
                }
                Ok(())
            })??;
        }
        ip(&[
            "link", "add", DEV_A, "netns", &name_a, "type", "veth", "peer", "name", DEV_B, "netns",
            &name_b,
        ])?;
        let (a, b) = (mac_str(MAC_A), mac_str(MAC_B));
        ip(&["-n", &name_a, "link", "set", DEV_A, "address", &a])?;
        ip(&["-n", &name_b, "link", "set", DEV_B, "address", &b])?;
        ip(&["-n", &name_a, "link", "set", DEV_A, "addrgenmode", "none"])?;
        ip(&["-n", &name_b, "link", "set", DEV_B, "addrgenmode", "none"])?;
        // The capturing end accepts the largest frames any scenario makes.
        ip(&["-n", &name_b, "link", "set", DEV_B, "mtu", "65535"])?;
        let addr_a = Ipv4Addr::new(10, 77, sub, 1);
        let addr_b = Ipv4Addr::new(10, 77, sub, 2);
        ip(&[
            "-n",
            &name_a,
            "addr",
            "add",
            &format!("{addr_a}/24"),
            "dev",
            DEV_A,
        ])?;
        in_netns(&ns_a, || offloads_off(DEV_A))??;
        ip(&["-n", &name_a, "link", "set", "lo", "up"])?;
        ip(&["-n", &name_a, "link", "set", DEV_A, "up"])?;
        ip(&["-n", &name_b, "link", "set", DEV_B, "up"])?;
        ip(&[
            "-n",
            &name_a,
            "neigh",
            "replace",
            &addr_b.to_string(),
            "lladdr",
            &b,
            "dev",
            DEV_A,
            "nud",
            "permanent",
        ])?;
        guard.0.clear();
        Ok(NetnsPair {
            name_a,
            name_b,
            ns_a,
            ns_b,
            addr_a,
            addr_b,
            mtu: 1500,
        })
    }

    /// Sets the sender's MTU (`ip link set mtu`).
    pub fn set_mtu(&mut self, mtu: u32) -> io::Result<()> {
        if mtu != self.mtu {
            ip(&[
                "-n",
                &self.name_a,
                "link",
                "set",
                DEV_A,
                "mtu",
                &mtu.to_string(),
            ])?;
            self.mtu = mtu;
        }
        Ok(())
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name_a]);
        let _ = ip(&["netns", "del", &self.name_b]);
    }
}

/// Deletes namespaces made so far when construction fails half way.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = ip(&["netns", "del", n]);
        }
    }
}

/// Runs `f` with the calling thread in the network namespace `ns`, then moves
/// the thread back (also when `f` panics). Sockets made inside stay in `ns`.
pub fn in_netns<R>(ns: &File, f: impl FnOnce() -> R) -> io::Result<R> {
    struct Back(File);
    impl Drop for Back {
        fn drop(&mut self) {
            // SAFETY: a valid namespace fd; failure leaves the thread where it is.
            let r = unsafe { libc::setns(self.0.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns back to the original namespace");
        }
    }
    let back = Back(File::open("/proc/thread-self/ns/net")?);
    // SAFETY: a valid namespace fd.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let r = f();
    drop(back);
    Ok(r)
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GSG: u32 = 0x18;
const ETHTOOL_SSG: u32 = 0x19;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_SGSO: u32 = 0x24;
const ETHTOOL_SGRO: u32 = 0x2c;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn ethtool(fd: i32, dev: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let mut v = EthtoolValue { cmd, data };
    let mut ifr = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data: (&mut v as *mut EthtoolValue).cast(),
        _pad: [0; 16],
    };
    for (d, s) in ifr.name.iter_mut().zip(dev.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCETHTOOL with an ifreq pointing at a live ethtool_value.
    let r = unsafe { libc::ioctl(fd, SIOCETHTOOL as _, &mut ifr as *mut IfreqData) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v.data)
}

/// `ethtool -K dev tx off sg off tso off gso off gro off` with the legacy
/// ethtool ioctls (no ethtool binary needed): the kernel then checksums in
/// software, keeps data linear where it can and segments UDP GSO in software,
/// which is what an ipxmit device with `Features::NONE` does.
fn offloads_off(dev: &str) -> io::Result<()> {
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let r = (|| {
        for cmd in [
            ETHTOOL_STXCSUM,
            ETHTOOL_SSG,
            ETHTOOL_STSO,
            ETHTOOL_SGSO,
            ETHTOOL_SGRO,
        ] {
            ethtool(fd, dev, cmd, 0)?;
        }
        if ethtool(fd, dev, ETHTOOL_GTXCSUM, 0)? != 0 || ethtool(fd, dev, ETHTOOL_GSG, 0)? != 0 {
            return Err(io::Error::other("tx checksum / sg still on after ethtool"));
        }
        Ok(())
    })();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    r
}
