//! The real-wire table: datagrams into one kernel UDP receiver in another
//! namespace (`<ns>-rx`, bound to 0.0.0.0:9, pinned to another CPU when there
//! is one) — the kernel's own socket over veth (A), ipxmit over AF_PACKET on
//! the same veth and over a TAP whose kernel side sits in the receiver's
//! namespace with vnet_hdr checksum/GSO offloads (B).
//!
//! Side B runs an ipxmit stack in this process on the measuring thread (in the
//! sender's namespace, pinned to the same CPU as A's sender), with a
//! [`Runner`] for receive and transmit wake-ups (its threads are not pinned
//! and their CPU time is not in the sender's column):
//! - AF_PACKET: a [`PacketLink`] on `vb0`, 10.98.0.1/24 as A's kernel has,
//!   a static neighbour for 10.98.0.2 -> `vb1`'s MAC (and one in B for us);
//!   one row per way of reaching the kernel: `sendmmsg` batches, a
//!   `TPACKET_V3` TX ring of [`RING_FRAMES`] slots with `PACKET_VNET_HDR`,
//!   and `sendmmsg` with `PACKET_VNET_HDR`, both with checksum/UDP GSO
//!   offloads (the extra row "AF_PACKET + UDP GSO 1472" sends the GSO case
//!   through the latter), and `sendmmsg` with `PACKET_VNET_HDR` checksum and
//!   UFO offloads through `vb0`'s qdisc (no bypass: the kernel cuts UFO in
//!   software, into the fragments the receiver reassembles);
//! - AF_XDP: an [`XdpLink`] on `vb0` (copy mode, the only one a veth has;
//!   one XDP socket on queue 0, a TX ring of [`XDP_RING`] entries), with
//!   the AF_PACKET rows' addresses and neighbours;
//! - TAP: a [`TapDevice`] created from a thread inside `<ns>-rx`, so its
//!   kernel side `tap*` is there with 10.97.0.2/24; we are 10.97.0.1 with a
//!   static neighbour both ways; offloads `HW_CSUM | SG | GSO_UDP_L4`
//!   requested. The extra row "TAP + UDP GSO 1472" sends 64768-byte
//!   super-datagrams with `UDP_SEGMENT` 1472 (44 datagrams each, counted one
//!   by one at the receiver);
//! - TAP with UFO: a second TAP as the first (kernel side 10.96.0.2/24, we
//!   are 10.96.0.1) that also asks for `UFO` (`TUN_F_UFO`): a datagram over
//!   the MTU leaves as one `VIRTIO_NET_HDR_GSO_UDP` frame instead of its
//!   fragments, and the receiver's kernel, delivering it locally, reads it
//!   whole (no reassembly).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ipxmit::neigh::NudState;
use ipxmit::wire::EthernetAddress;
use ipxmit::{BatchMsg, Features, MsgFlags, SendError, Stack, UdpSocket};
use ipxmit_drivers::netns::{format_mac, parse_mac};
use ipxmit_drivers::packet::{PacketConfig, PacketLink, PacketMode};
use ipxmit_drivers::runner::Runner;
use ipxmit_drivers::tap::{TapConfig, TapDevice};
use ipxmit_drivers::xdp::{XdpConfig, XdpLink, XdpMode};

use super::cases::{self, Case};
use super::kernel::{self, KernelSender, Mode};
use super::measure::{self, median, Sample, CHECK_EVERY};
use super::netns::{self, VETH, VETH_PEER, WIRE_DEST, WIRE_LOCAL};
use super::sink::Plan;
use super::sys;

/// Payload sizes of the real-wire table.
const SIZES: [&str; 4] = ["18B", "1472B", "8000B", "65000B"];
/// The UDP GSO case of the extra TAP row (64768 bytes, `UDP_SEGMENT` 1472).
const GSO_CASE: &str = "gso-64k/1472";
/// The A row.
pub const A_VETH: &str = "A: kernel sendmmsg over veth";
/// ipxmit over AF_PACKET, `sendmmsg` batches.
pub const B_PACKET: &str = "B: ipxmit AF_PACKET over veth";
/// ipxmit over AF_PACKET, a `TPACKET_V3` TX ring with `PACKET_VNET_HDR`.
pub const B_PACKET_RING: &str = "B: ipxmit AF_PACKET V3 ring + vnet_hdr";
/// ipxmit over AF_PACKET with `PACKET_VNET_HDR` offloads.
pub const B_PACKET_VNET: &str = "B: ipxmit AF_PACKET vnet_hdr (csum+GSO)";
/// ipxmit over AF_PACKET with `PACKET_VNET_HDR` UFO, through the veth's
/// qdisc (the kernel cuts UFO in software, which the bypass cannot).
pub const B_PACKET_UFO: &str = "B: ipxmit AF_PACKET vnet_hdr (csum+UFO)";
/// ipxmit over AF_PACKET with UDP GSO super-datagrams (1472B only).
pub const B_PACKET_GSO: &str = "B: ipxmit AF_PACKET + UDP GSO 1472";
/// Slots of the AF_PACKET row's TX ring.
pub const RING_FRAMES: usize = 4096;
/// ipxmit over AF_XDP (copy mode).
pub const B_XDP: &str = "B: ipxmit AF_XDP (copy) over veth";
/// TX ring entries of the AF_XDP row.
pub const XDP_RING: usize = 2048;
/// ipxmit over the TAP, same datagrams as A.
pub const B_TAP: &str = "B: ipxmit TAP (vnet_hdr csum+GSO)";
/// ipxmit over a TAP that also fragments UDP (UFO): datagrams over the MTU
/// leave whole.
pub const B_TAP_UFO: &str = "B: ipxmit TAP (vnet_hdr csum+GSO+UFO)";
/// ipxmit over the TAP with UDP GSO super-datagrams (1472B only).
pub const B_TAP_GSO: &str = "B: ipxmit TAP + UDP GSO 1472";
/// ipxmit's device names.
const PKT_DEV: &str = "pkt0";
const TAP_DEV: &str = "tap0";
const XDP_DEV: &str = "xdp0";
/// Our address on the TAP's user side, and the kernel side's (in B).
const TAP_LOCAL: &str = "10.97.0.1/24";
const TAP_PEER: &str = "10.97.0.2/24";
/// The receiver as reached over the TAP.
const TAP_DEST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 97, 0, 2), 9);
/// Our MAC on the TAP (must differ from the kernel side's).
const TAP_MAC: EthernetAddress = EthernetAddress([0x02, 0x69, 0x70, 0x78, 0x62, 0x01]);
/// The UFO TAP's addresses and our MAC on it, as the TAP's.
const UFO_LOCAL: &str = "10.96.0.1/24";
const UFO_PEER: &str = "10.96.0.2/24";
const UFO_DEST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 2), 9);
const UFO_MAC: EthernetAddress = EthernetAddress([0x02, 0x69, 0x70, 0x78, 0x62, 0x02]);
const UFO_DEV: &str = "tapu0";

/// One run into the receiver.
#[derive(Clone, Copy, Debug, Default)]
pub struct WireSample {
    /// The sender's side (`datagrams` = datagrams sent).
    pub sent: Sample,
    /// Datagrams the receiver read.
    pub delivered: u64,
    /// Payload bytes the receiver read.
    pub delivered_bytes: u64,
}

/// One row of the real-wire table.
#[derive(Clone, Debug)]
pub struct WireRow {
    /// Payload case.
    pub case: &'static str,
    /// Who sends over what.
    pub sender: &'static str,
    /// One sample per round, or why there are none.
    pub result: Result<Vec<WireSample>, String>,
}

impl WireRow {
    /// Median delivered datagrams/s.
    pub fn delivered_rate(&self) -> Option<f64> {
        let v = self.result.as_ref().ok().filter(|v| !v.is_empty())?;
        let rates: Vec<f64> = v
            .iter()
            .map(|w| w.delivered as f64 / (w.sent.wall_ns.max(1) as f64 / 1e9))
            .collect();
        Some(super::measure::median_of(rates))
    }

    /// Median of `f` over the sender's samples.
    pub fn sent(&self, f: impl Fn(&Sample) -> f64) -> Option<f64> {
        let v = self.result.as_ref().ok().filter(|v| !v.is_empty())?;
        let s: Vec<Sample> = v.iter().map(|w| w.sent).collect();
        Some(median(&s, f))
    }

    /// Median delivered payload Gbit/s.
    pub fn delivered_gbps(&self) -> Option<f64> {
        let v = self.result.as_ref().ok().filter(|v| !v.is_empty())?;
        let g: Vec<f64> = v
            .iter()
            .map(|w| w.delivered_bytes as f64 * 8.0 / (w.sent.wall_ns.max(1) as f64))
            .collect();
        Some(super::measure::median_of(g))
    }
}

/// The cases of the wire table that the plan selected.
fn wire_cases(plan: &Plan) -> Vec<Case> {
    cases::CASES
        .iter()
        .filter(|c| SIZES.contains(&c.name) && plan.cases.contains(c))
        .copied()
        .collect()
}

/// B's results for one case.
type Measured = Result<Vec<WireSample>, String>;

/// The B rows: who sends, and the host (by index into the hosts [`run`]
/// sets up: the AF_PACKET variants, the TAP, the AF_XDP link, then the
/// UFO TAP) and
/// case that do it —
/// the GSO rows only for 1472B, with the GSO case.
const B_ROWS: [(&str, usize, bool); 9] = [
    (B_PACKET, 0, false),
    (B_PACKET_RING, 1, false),
    (B_PACKET_VNET, 2, false),
    (B_PACKET_UFO, 3, false),
    (B_XDP, 5, false),
    (B_TAP, 4, false),
    (B_TAP_UFO, 6, false),
    (B_PACKET_GSO, 2, true),
    (B_TAP_GSO, 4, true),
];

/// The AF_PACKET configurations on `vb0`, in [`B_ROWS`]' host order.
fn packet_configs() -> [PacketConfig; 4] {
    let mmsg = PacketConfig::new(VETH);
    let mut vnet = PacketConfig::new(VETH);
    vnet.vnet_hdr = true;
    vnet.offload = Features::HW_CSUM | Features::GSO_UDP_L4;
    // Slots of an MTU's frame (with 64 KiB GSO slots the ring would be
    // 17 pages a slot); checksum offload only.
    let mut ring = vnet.clone();
    ring.mode = PacketMode::TxRing {
        frames: RING_FRAMES,
        frame_size: 2048,
    };
    // UFO goes through the qdisc: the bypass cannot cut it.
    let mut ufo = vnet.clone();
    ufo.offload = Features::HW_CSUM | Features::UFO;
    ufo.qdisc_bypass = false;
    [mmsg, ring, vnet, ufo]
}

/// The rows of one case: A, then each B row (GSO rows for 1472B only).
fn rows(case: &'static str, a: Measured, b: impl Fn(usize, bool) -> Measured) -> Vec<WireRow> {
    let row = |sender, result| WireRow {
        case,
        sender,
        result,
    };
    let mut v = vec![row(A_VETH, a)];
    for (sender, host, gso) in B_ROWS {
        if !gso || case == "1472B" {
            v.push(row(sender, b(host, gso)));
        }
    }
    v
}

/// Delivered datagrams/s of row `sender` over the A row of `case` (none for
/// the A row itself).
pub fn ratio(rows: &[WireRow], case: &str, sender: &str) -> Option<f64> {
    if sender == A_VETH {
        return None;
    }
    let find = |who: &str| rows.iter().find(|r| r.case == case && r.sender == who);
    let a = find(A_VETH)?.delivered_rate()?;
    let b = find(sender)?.delivered_rate()?;
    Some(b / a.max(1e-9))
}

/// Runs the table from the calling thread (already in the sender's
/// namespace and pinned); `rx` is the receiver's namespace.
pub fn run(plan: &Plan, rx: Option<&Path>, rx_cpu: usize) -> Vec<WireRow> {
    let cases = wire_cases(plan);
    let Some(rx) = rx else {
        let why = plan.kernel_skipped.clone();
        let e = || Err(why.clone());
        return cases
            .iter()
            .flat_map(|c| rows(c.name, e(), |_, _| e()))
            .collect();
    };
    if cases.is_empty() {
        return Vec::new();
    }
    let done = AtomicBool::new(false);
    let counts = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        let (tx, ready) = mpsc::channel();
        let (d, c) = (&done, &counts);
        s.spawn(move || {
            let r = receiver(rx, rx_cpu, d, c, &tx);
            let _ = tx.send(r.map_err(|e| format!("receiver: {e:#}")));
        });
        let up = ready
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| Err("receiver did not start".into()));
        let mut hosts: Vec<Result<WireHost, String>> = packet_configs()
            .iter()
            .map(|cfg| {
                up.clone().and_then(|()| {
                    WireHost::packet(rx, cfg).map_err(|e| format!("AF_PACKET set-up: {e:#}"))
                })
            })
            .collect();
        hosts.push(
            up.clone()
                .and_then(|()| WireHost::tap(rx, false).map_err(|e| format!("TAP set-up: {e:#}"))),
        );
        hosts.push(
            up.clone()
                .and_then(|()| WireHost::xdp(rx).map_err(|e| format!("AF_XDP set-up: {e:#}"))),
        );
        hosts.push(up.clone().and_then(|()| {
            WireHost::tap(rx, true).map_err(|e| format!("TAP (UFO) set-up: {e:#}"))
        }));
        let gso_case = cases::CASES.iter().find(|c| c.name == GSO_CASE).copied();
        let out = cases
            .iter()
            .flat_map(|c| {
                let a = up.clone().and_then(|()| {
                    measure_case(plan, *c, &counts).map_err(|e| format!("error: {e:#}"))
                });
                let b = |host: usize, gso: bool| -> Measured {
                    let h = hosts[host].as_ref().map_err(Clone::clone)?;
                    let case = if gso { gso_case } else { Some(*c) };
                    let case = case.ok_or_else(|| format!("no case {GSO_CASE}"))?;
                    h.measure(plan, case, &counts)
                        .map_err(|e| format!("error: {e:#}"))
                };
                rows(c.name, a, b)
            })
            .collect();
        // Devices and runners go before the receiver's namespace does.
        drop(hosts);
        done.store(true, Ordering::Relaxed);
        out
    })
}

fn measure_case(
    plan: &Plan,
    case: Case,
    counts: &(AtomicU64, AtomicU64),
) -> Result<Vec<WireSample>> {
    let k = KernelSender::new(case, WIRE_DEST).context("kernel socket")?;
    let _ = k.run(Mode::SendMmsg, plan.dur / 5);
    let mut out = Vec::new();
    for _ in 0..plan.rounds.max(1) {
        if sys::stopped() {
            break;
        }
        // Nothing of an earlier run still on its way to the receiver.
        settle(counts);
        let (d0, b0) = (
            counts.0.load(Ordering::Relaxed),
            counts.1.load(Ordering::Relaxed),
        );
        let f0 = netns::dev_counter(VETH, 9)?;
        let mut sent = k.run(Mode::SendMmsg, plan.dur)?;
        // Let the receiver read what is still queued for it.
        settle_until(counts, d0 + sent.datagrams);
        sent.frames = netns::dev_counter(VETH, 9)? - f0;
        sent.frames_expected = sent.sends * case.frames_per_send(false);
        out.push(WireSample {
            sent,
            delivered: counts.0.load(Ordering::Relaxed) - d0,
            delivered_bytes: counts.1.load(Ordering::Relaxed) - b0,
        });
    }
    Ok(out)
}

/// Waits until the receiver's count stays still for 50 ms (at most 2 s):
/// what a run sent is read before its count is taken, and none of it leaks
/// into the next run's.
fn settle(counts: &(AtomicU64, AtomicU64)) {
    settle_until(counts, u64::MAX);
}

/// [`settle`] that also ends as soon as the receiver's count reaches
/// `target` (all a run sent), and otherwise waits for 250 ms without a
/// datagram: on a loaded machine the receiver may sit descheduled for more
/// than 50 ms with a full queue, and what it reads after the count is
/// taken would be counted to the next run (seen: a kernel row "delivering"
/// 304% after a UFO row).
fn settle_until(counts: &(AtomicU64, AtomicU64), target: u64) {
    let t0 = std::time::Instant::now();
    let quiet = match target {
        u64::MAX => Duration::from_millis(50),
        _ => Duration::from_millis(250),
    };
    let (mut last, mut since) = (counts.0.load(Ordering::Relaxed), t0);
    while t0.elapsed() < Duration::from_secs(2) && !sys::stopped() {
        std::thread::sleep(Duration::from_millis(10));
        let now = counts.0.load(Ordering::Relaxed);
        if now >= target {
            return;
        }
        if now != last {
            (last, since) = (now, std::time::Instant::now());
        } else if since.elapsed() >= quiet {
            return;
        }
    }
}

/// The device behind an ipxmit host (kept open for the host's life).
enum WireDev {
    Packet(PacketLink),
    Tap(TapDevice),
    Xdp(XdpLink),
}

/// An ipxmit stack with one real device and its runner.
struct WireHost {
    /// Stopped (joined) before the rest is dropped.
    runner: Option<Runner>,
    stack: Arc<Stack>,
    dev: WireDev,
    local: Ipv4Addr,
    dest: SocketAddrV4,
    gso: bool,
    /// The device takes datagrams over the MTU whole (one frame each).
    ufo: bool,
}

impl Drop for WireHost {
    fn drop(&mut self) {
        if let Some(r) = self.runner.take() {
            r.stop();
        }
    }
}

/// `ip -n NS ARGS...`.
fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut v = vec!["-n", ns];
    v.extend_from_slice(args);
    Ok(ipxmit_drivers::netns::ip(&v)?)
}

/// The namespace name of a `/run/netns/NAME` path.
fn ns_name(path: &Path) -> Result<&str> {
    path.file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("bad namespace path {}", path.display()))
}

fn link_mac(ns: &str, dev: &str) -> Result<EthernetAddress> {
    let out = ip_in(ns, &["-o", "link", "show", "dev", dev])?;
    let mut words = out.split_whitespace();
    words
        .find(|w| *w == "link/ether")
        .and_then(|_| words.next())
        .and_then(parse_mac)
        .map(EthernetAddress)
        .ok_or_else(|| anyhow!("no link/ether address for {dev} in {ns}"))
}

impl WireHost {
    /// AF_PACKET on `vb0` configured as `cfg`: the calling thread is in the
    /// sender's namespace.
    fn packet(rx: &Path, cfg: &PacketConfig) -> Result<WireHost> {
        let ns = ns_name(rx)?;
        let link = PacketLink::open(cfg).with_context(|| format!("AF_PACKET on {VETH}"))?;
        let peer = link_mac(ns, VETH_PEER)?;
        let local: ipnet::Ipv4Net = WIRE_LOCAL.parse()?;
        ip_in(
            ns,
            &[
                "neigh",
                "replace",
                &local.addr().to_string(),
                "lladdr",
                &format_mac(link.hw_addr().0),
                "dev",
                VETH_PEER,
                "nud",
                "permanent",
            ],
        )?;
        let stack = Stack::new();
        stack.add_device(link.dev_config(PKT_DEV), link.drivers())?;
        stack.add_addr(PKT_DEV, local)?;
        stack.add_neigh(PKT_DEV, *WIRE_DEST.ip(), peer, NudState::Permanent)?;
        let runner = Runner::try_spawn(stack.clone()).context("runner")?;
        Ok(WireHost {
            runner: Some(runner),
            gso: link.features().contains(Features::GSO_UDP_L4),
            ufo: link.features().contains(Features::UFO),
            stack,
            dev: WireDev::Packet(link),
            local: local.addr(),
            dest: WIRE_DEST,
        })
    }

    /// AF_XDP on `vb0` in copy mode: the calling thread is in the sender's
    /// namespace.
    fn xdp(rx: &Path) -> Result<WireHost> {
        let ns = ns_name(rx)?;
        let mut cfg = XdpConfig::new(VETH);
        cfg.mode = XdpMode::Copy;
        cfg.ring = XDP_RING;
        let link = XdpLink::open(&cfg).with_context(|| format!("AF_XDP on {VETH}"))?;
        let peer = link_mac(ns, VETH_PEER)?;
        let local: ipnet::Ipv4Net = WIRE_LOCAL.parse()?;
        let (ours, mac) = (local.addr().to_string(), format_mac(link.hw_addr().0));
        let neigh = ["neigh", "replace", &ours, "lladdr", &mac, "dev", VETH_PEER];
        ip_in(ns, &[&neigh[..], &["nud", "permanent"]].concat())?;
        let stack = Stack::new();
        stack.add_device(link.dev_config(XDP_DEV), link.drivers())?;
        stack.add_addr(XDP_DEV, local)?;
        stack.add_neigh(XDP_DEV, *WIRE_DEST.ip(), peer, NudState::Permanent)?;
        let runner = Runner::try_spawn(stack.clone()).context("runner")?;
        Ok(WireHost {
            runner: Some(runner),
            gso: false,
            ufo: false,
            stack,
            dev: WireDev::Xdp(link),
            local: local.addr(),
            dest: WIRE_DEST,
        })
    }

    /// A TAP created from a thread inside the receiver's namespace `rx`;
    /// with `ufo`, the UFO TAP (its own addresses, `UFO` asked for too).
    fn tap(rx: &Path, ufo: bool) -> Result<WireHost> {
        let ns = ns_name(rx)?;
        let mut cfg = TapConfig::tap("ipxb%d");
        let mut want = Features::HW_CSUM | Features::SG | Features::GSO_UDP_L4;
        let (dev, mac, local, peer, dest) = match ufo {
            false => (TAP_DEV, TAP_MAC, TAP_LOCAL, TAP_PEER, TAP_DEST),
            true => (UFO_DEV, UFO_MAC, UFO_LOCAL, UFO_PEER, UFO_DEST),
        };
        if ufo {
            want = want | Features::UFO;
        }
        cfg.offload = want;
        let tap = std::thread::scope(|s| {
            s.spawn(|| -> Result<TapDevice> {
                sys::enter_netns(rx).context("setns")?;
                Ok(TapDevice::open(&cfg)?)
            })
            .join()
            .unwrap_or_else(|_| bail!("the TAP thread panicked"))
        })?;
        let got = tap.features();
        if !got.contains(want) {
            bail!("the kernel granted {got}, not {want}");
        }
        let name = tap.name().to_string();
        let _ = ip_in(ns, &["link", "set", &name, "addrgenmode", "none"]);
        ip_in(ns, &["addr", "add", peer, "dev", &name])?;
        ip_in(ns, &["link", "set", &name, "mtu", "1500", "up"])?;
        let local: ipnet::Ipv4Net = local.parse()?;
        let (ours, macs) = (local.addr().to_string(), format_mac(mac.0));
        let neigh = ["neigh", "replace", &ours, "lladdr", &macs, "dev", &name];
        ip_in(ns, &[&neigh[..], &["nud", "permanent"]].concat())?;
        let kmac = tap.kernel_mac()?;
        let stack = Stack::new();
        stack.add_device(tap.dev_config(dev, mac), tap.drivers())?;
        stack.add_addr(dev, local)?;
        stack.add_neigh(dev, *dest.ip(), kmac, NudState::Permanent)?;
        let runner = Runner::try_spawn(stack.clone()).context("runner")?;
        Ok(WireHost {
            runner: Some(runner),
            stack,
            dev: WireDev::Tap(tap),
            local: local.addr(),
            dest,
            gso: true,
            ufo,
        })
    }

    /// Frames the device wrote so far.
    fn frames(&self) -> u64 {
        match &self.dev {
            WireDev::Packet(l) => l.stats().tx_frames,
            WireDev::Tap(t) => t.stats().tx_frames,
            WireDev::Xdp(l) => l.stats().tx_frames,
        }
    }

    /// `case`'s datagrams (a `UDP_SEGMENT` super-datagram for a GSO case)
    /// for `dur`, timed as the kernel's sender is.
    fn run(
        &self,
        sock: &mut UdpSocket,
        case: Case,
        payload: &[u8],
        dur: Duration,
    ) -> Result<Sample> {
        let f0 = self.frames();
        let msg = BatchMsg::new(payload, Some(self.dest));
        let msgs = [msg; CHECK_EVERY as usize];
        let mut s = measure::timed(dur, || {
            // sendmmsg of 64, as the kernel's sender.
            let ok = match sock.send_batch(&msgs, MsgFlags::NONE) {
                Ok(n) => n as u64,
                Err(SendError::NoBufs | SendError::Again) => 0,
                Err(e) => return Err(e),
            };
            Ok((1, ok, CHECK_EVERY - ok))
        })
        .context("ipxmit send")?;
        s.frames = self.frames() - f0;
        s.frames_expected = match self.ufo && case.gso == 0 {
            // A datagram over the MTU leaves whole: one frame each.
            true => s.sends,
            false => s.sends * case.frames_per_send(self.gso),
        };
        s.datagrams = s.sends * case.datagrams_per_send();
        s.payload_bytes = s.sends * case.payload as u64;
        Ok(s)
    }

    /// Rounds of `case` into the receiver, as [`measure_case`] does for A.
    fn measure(
        &self,
        plan: &Plan,
        case: Case,
        counts: &(AtomicU64, AtomicU64),
    ) -> Result<Vec<WireSample>> {
        let mut sock = UdpSocket::new(&self.stack);
        sock.bind(SocketAddrV4::new(self.local, 0))?;
        sock.set_gso_size(u32::from(case.gso))
            .context("UDP_SEGMENT")?;
        let payload = case.payload_bytes();
        let _ = self.run(&mut sock, case, &payload, plan.dur / 5);
        let mut out = Vec::new();
        for _ in 0..plan.rounds.max(1) {
            if sys::stopped() {
                break;
            }
            // Nothing of an earlier run still on its way to the receiver.
            settle(counts);
            let (d0, b0) = (
                counts.0.load(Ordering::Relaxed),
                counts.1.load(Ordering::Relaxed),
            );
            let sent = self.run(&mut sock, case, &payload, plan.dur)?;
            settle_until(counts, d0 + sent.datagrams);
            out.push(WireSample {
                sent,
                delivered: counts.0.load(Ordering::Relaxed) - d0,
                delivered_bytes: counts.1.load(Ordering::Relaxed) - b0,
            });
        }
        Ok(out)
    }
}

/// The kernel UDP receiver: enters `ns`, binds, reads with `recvmmsg` until
/// `done`, counting datagrams and bytes. Reports readiness on `ready`.
fn receiver(
    ns: &Path,
    cpu: usize,
    done: &AtomicBool,
    counts: &(AtomicU64, AtomicU64),
    ready: &mpsc::Sender<Result<(), String>>,
) -> Result<()> {
    sys::enter_netns(ns).context("setns")?;
    sys::pin_current_thread(cpu).context("pinning")?;
    let fd = kernel::udp_socket()?;
    kernel::set_int_opt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 64 << 20)?;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 20_000,
    };
    kernel::set_opt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
    // Any address: A and AF_PACKET send to 10.98.0.2, the TAP to 10.97.0.2.
    kernel::bind(
        &fd,
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, WIRE_DEST.port()),
    )?;
    let _ = ready.send(Ok(()));
    const N: usize = 64;
    let mut bufs = vec![0u8; N * 65536];
    let mut iov: Vec<libc::iovec> = bufs
        .chunks_mut(65536)
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut msgs = kernel::msgs_for(&mut iov, None);
    while !done.load(Ordering::Relaxed) && !sys::stopped() {
        // SAFETY: msgs point into iov and bufs, alive and unmoved here.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                N as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            let bytes: u64 = msgs[..n as usize]
                .iter()
                .map(|m| u64::from(m.msg_len))
                .sum();
            counts.0.fetch_add(n as u64, Ordering::Relaxed);
            counts.1.fetch_add(bytes, Ordering::Relaxed);
        }
    }
    Ok(())
}
