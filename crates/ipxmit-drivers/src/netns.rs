//! Network namespaces: create and delete named ones, run code inside one.
//!
//! What `ip netns add|del|exec` does (`net/core/net_namespace.c`, `setns(2)`
//! with `CLONE_NEWNET`), for tests and tools that put a real peer — the kernel
//! of another namespace — on the far side of a TAP device or a veth pair.
//!
//! A network namespace is per thread, so [`Netns::run`] enters it on a fresh
//! scoped thread and leaves the caller's thread where it was. Sockets and tun
//! fds opened there stay in that namespace for their whole life and may be used
//! from any thread: open the [`TapDevice`](crate::tap::TapDevice) or
//! [`PacketLink`](crate::packet::PacketLink) inside `run`, use it outside.
//!
//! Safety rules this module keeps: it only ever deletes namespaces it created
//! (a [`Netns`] is removed on drop, which also removes the links inside), and
//! touches no interface outside them.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs `ip ARGS...`; its stderr becomes the error.
pub fn ip(args: &[&str]) -> io::Result<String> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Why namespaces cannot be used here (`None`: they can): not root, or
/// `ip netns` does not work.
pub fn unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not running as root".into());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Some(format!(
                "`ip netns list` failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Err(e) => return Some(format!("cannot run `ip`: {e}")),
    }
    if File::open("/proc/thread-self/ns/net").is_err() {
        return Some("no /proc/thread-self/ns/net".into());
    }
    None
}

/// A named network namespace this process created; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    handle: File,
}

impl Netns {
    /// Creates the namespace `name` (`ip netns add`), with `lo` up.
    pub fn create(name: &str) -> io::Result<Netns> {
        ip(&["netns", "add", name])?;
        let ns = match File::open(format!("/run/netns/{name}")) {
            Ok(handle) => Netns {
                name: name.to_string(),
                handle,
            },
            Err(e) => {
                let _ = ip(&["netns", "del", name]);
                return Err(e);
            }
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Creates a namespace named `ipxmit-<tag>-<pid>-<n>`, unique in this
    /// process and among concurrent processes. Namespaces of that form left
    /// by a process that no longer exists (killed before its cleanup ran) are
    /// deleted first.
    pub fn unique(tag: &str) -> io::Result<Netns> {
        sweep_stale();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Netns::create(&format!("ipxmit-{tag}-{}-{n}", std::process::id()))
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS...`.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        let mut v = vec!["-n", self.name.as_str()];
        v.extend_from_slice(args);
        ip(&v)
    }

    /// Runs `f` on a new thread inside the namespace and returns its result.
    /// A panic in `f` is passed on to the caller.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> io::Result<R> {
        let handle = &self.handle;
        std::thread::scope(|s| {
            let t = s.spawn(move || -> io::Result<R> {
                rustix::thread::move_into_link_name_space(
                    handle.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )?;
                Ok(f())
            });
            match t.join() {
                Ok(r) => r,
                Err(p) => std::panic::resume_unwind(p),
            }
        })
    }

    /// Writes a sysctl of the namespace (`sysctl -w`), e.g.
    /// `net/ipv6/conf/all/disable_ipv6`.
    pub fn sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        let path = format!("/proc/sys/{key}");
        self.run(|| std::fs::write(&path, value))?
    }

    /// The hardware address of `dev` inside the namespace.
    pub fn link_mac(&self, dev: &str) -> io::Result<[u8; 6]> {
        let out = self.ip(&["-o", "link", "show", "dev", dev])?;
        let bad = || io::Error::other(format!("no link/ether address for {dev} in {}", self.name));
        let mut words = out.split_whitespace();
        words.find(|w| *w == "link/ether").ok_or_else(bad)?;
        parse_mac(words.next().ok_or_else(bad)?).ok_or_else(bad)
    }
}

/// The pid in a name of the form `ipxmit-<tag>-<pid>-<n>`.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("ipxmit-")?;
    let mut parts = rest.rsplit('-');
    parts.next()?.parse::<u32>().ok()?;
    let pid = parts.next()?.parse::<u32>().ok()?;
    parts.next().filter(|tag| !tag.is_empty())?;
    Some(pid)
}

/// Deletes `ipxmit-<tag>-<pid>-<n>` namespaces whose process is gone.
fn sweep_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = owner_pid(&name) {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = ip(&["netns", "del", &name]);
            }
        }
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_names_are_recognised_strictly() {
        assert_eq!(owner_pid("ipxmit-tap-123-0"), Some(123));
        assert_eq!(owner_pid("ipxmit-veth-a-99-12"), Some(99));
        assert_eq!(owner_pid("ipxmit-bench-123"), None);
        assert_eq!(owner_pid("ipxmit-bench-123-rx"), None);
        assert_eq!(owner_pid("other-tap-1-2"), None);
        assert_eq!(owner_pid("ipxmit--1-2"), None);
    }

    #[test]
    fn macs_round_trip() {
        let m = [0x02, 0xab, 0, 0x10, 0xff, 1];
        assert_eq!(parse_mac(&format_mac(m)), Some(m));
        assert_eq!(parse_mac("02:ab:00"), None);
        assert_eq!(parse_mac("02:ab:00:10:ff:01:07"), None);
    }
}
