//! The benchmark's own network namespace with a sink interface.
//!
//! `ipxmit-bench-<pid>` holds `sink0`: a `dummy` device where the kernel has
//! the module, else an `ifb` device (whose transmit function counts every frame
//! it is given as received and frees it, since it was not redirected to it),
//! MTU 1500, qdisc `noqueue` when the kernel accepts it, 10.99.0.1/24 and a
//! route for 10.99.1.0/24 out of it. Both are `NOARP`, so no neighbour is
//! needed. `ipxmit-bench-<pid>-rules`, set up the same way, holds the kernel
//! side of the `-rules` cases (see [`super::settings::restore`] for why).
//! The namespace is deleted when the guard is dropped; namespaces left
//! by an earlier run that was killed (its pid gone) are deleted on creation.

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Interface name of the sink inside the namespace.
pub const SINK: &str = "sink0";
/// Our address on the sink.
pub const LOCAL_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// Our address and prefix on the sink.
pub const LOCAL: &str = "10.99.0.1/24";
/// The routed network of the destination.
pub const DEST_NET: &str = "10.99.1.0/24";
/// The routed destination every datagram goes to.
pub const DEST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 99, 1, 2), 9);
const PREFIX: &str = "ipxmit-bench-";

/// The kind of sink device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkKind {
    /// `dummy`: counts frames as transmitted.
    Dummy,
    /// `ifb`: counts frames as received, then drops them.
    Ifb,
}

impl SinkKind {
    /// The `ip link add ... type` name.
    pub fn name(self) -> &'static str {
        match self {
            SinkKind::Dummy => "dummy",
            SinkKind::Ifb => "ifb",
        }
    }
}

/// The veth of the real-wire table, in the sender's namespace.
pub const VETH: &str = "vb0";
/// The receiver's end, in `<name>-rx`.
pub const VETH_PEER: &str = "vb1";
/// The sender's address on the veth.
pub const WIRE_LOCAL: &str = "10.98.0.1/24";
/// The receiver's address and port.
pub const WIRE_DEST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 98, 0, 2), 9);

/// A namespace this process created; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    /// The receiver's namespace of the real-wire table, when set up.
    rx: Option<String>,
    /// Why the real-wire table cannot run, if it cannot.
    pub wire_note: Option<String>,
    /// The sink's kind.
    pub kind: SinkKind,
    /// The root qdisc the sink ended up with (`tc qdisc show`).
    pub qdisc: String,
    /// Why `noqueue` was not set, if it was not.
    pub qdisc_note: Option<String>,
}

/// Runs a command; its stderr becomes the error.
fn sh(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("cannot run {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deletes `ipxmit-bench-<pid>` namespaces whose process is gone.
fn remove_stale() {
    let Ok(dir) = fs::read_dir("/run/netns") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // ipxmit-bench-<pid>, -<pid>-rx, -<pid>-rules.
        let id = name.strip_prefix(PREFIX).and_then(|p| p.split('-').next());
        let Some(pid) = id.and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = sh(&["ip", "netns", "del", &name]);
        }
    }
}

impl Netns {
    /// Creates the namespace and its sink.
    pub fn create() -> Result<Netns> {
        remove_stale();
        Netns::create_named(format!("{PREFIX}{}", std::process::id()))
    }

    /// Another namespace of this process, `ipxmit-bench-<pid>-SUFFIX`, set
    /// up as [`Netns::create`] sets up its own (sink, address, route).
    pub fn create_sibling(suffix: &str) -> Result<Netns> {
        Netns::create_named(format!("{PREFIX}{}-{suffix}", std::process::id()))
    }

    fn create_named(name: String) -> Result<Netns> {
        sh(&["ip", "netns", "add", &name])?;
        let mut ns = Netns {
            name,
            rx: None,
            wire_note: None,
            kind: SinkKind::Dummy,
            qdisc: String::new(),
            qdisc_note: None,
        };
        ns.setup()?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind mount to `setns` into.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    fn ip(&self, rest: &[&str]) -> Result<String> {
        let mut a = vec!["ip", "-n", &self.name];
        a.extend_from_slice(rest);
        sh(&a)
    }

    fn setup(&mut self) -> Result<()> {
        if self.ip(&["link", "add", SINK, "type", "dummy"]).is_err() {
            self.ip(&["link", "add", SINK, "type", "ifb"])
                .context("neither a dummy nor an ifb device can be created")?;
            self.kind = SinkKind::Ifb;
        }
        // No IPv6 link-local address: no DAD or router solicitations counted.
        let _ = self.ip(&["link", "set", SINK, "addrgenmode", "none"]);
        self.ip(&["link", "set", SINK, "mtu", "1500", "up"])?;
        if let Err(e) = sh(&[
            "tc", "-n", &self.name, "qdisc", "replace", "dev", SINK, "root", "noqueue",
        ]) {
            self.qdisc_note = Some(format!("{e:#}"));
        }
        let shown = sh(&["tc", "-n", &self.name, "qdisc", "show", "dev", SINK])?;
        self.qdisc = shown.split_whitespace().nth(1).unwrap_or("?").to_string();
        self.ip(&["addr", "add", LOCAL, "dev", SINK])?;
        self.ip(&["route", "add", DEST_NET, "dev", SINK])?;
        Ok(())
    }
}

impl Netns {
    /// Adds the receiver's namespace `<name>-rx` and a veth pair between
    /// them: `vb0` (10.98.0.1/24) here, `vb1` (10.98.0.2/24) there.
    pub fn add_wire(&mut self) -> Result<()> {
        let rx = format!("{}-rx", self.name);
        sh(&["ip", "netns", "add", &rx])?;
        self.rx = Some(rx.clone());
        self.ip(&[
            "link", "add", VETH, "type", "veth", "peer", "name", VETH_PEER, "netns", &rx,
        ])?;
        self.ip(&["addr", "add", WIRE_LOCAL, "dev", VETH])?;
        self.ip(&["link", "set", VETH, "mtu", "1500", "up"])?;
        let peer_addr = format!("{}/24", WIRE_DEST.ip());
        sh(&["ip", "-n", &rx, "addr", "add", &peer_addr, "dev", VETH_PEER])?;
        sh(&[
            "ip", "-n", &rx, "link", "set", VETH_PEER, "mtu", "1500", "up",
        ])?;
        sh(&["ip", "-n", &rx, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// The receiver's namespace bind mount, when the wire is set up.
    pub fn rx_path(&self) -> Option<PathBuf> {
        self.rx
            .as_ref()
            .map(|n| PathBuf::from("/run/netns").join(n))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in self.rx.iter().chain(std::iter::once(&self.name)) {
            if let Err(e) = sh(&["ip", "netns", "del", n]) {
                eprintln!("ipxmit bench: could not delete namespace {n}: {e:#}");
            }
        }
    }
}

/// Frames the sink counted so far, read from `/proc/thread-self/net/dev`,
/// which shows the calling thread's namespace: received for `ifb`,
/// transmitted for `dummy`.
pub fn sink_frames(kind: SinkKind) -> Result<u64> {
    // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets ...
    let idx = match kind {
        SinkKind::Ifb => 1,
        SinkKind::Dummy => 9,
    };
    dev_counter(SINK, idx)
}

/// Field `idx` of `ifname`'s line in `/proc/thread-self/net/dev` (the calling
/// thread's namespace): 1 is rx packets, 9 tx packets.
pub fn dev_counter(ifname: &str, idx: usize) -> Result<u64> {
    let text = fs::read_to_string("/proc/thread-self/net/dev")
        .context("reading /proc/thread-self/net/dev")?;
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(&format!("{ifname}:")))
        .with_context(|| format!("{ifname} not in /proc/thread-self/net/dev"))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    f.get(idx).copied().context("short line in /proc/net/dev")
}
