//! The real-wire fixture of the veth link tests (`packet*.rs`, `xdp.rs`,
//! `ufo.rs`): a [`VethPeer`] with a kernel [`Receiver`] on its `B` end, a
//! stack on a link of the `A` end (`eth0`, 10.10.0.1/24), the sockets it
//! sends from, and what the receiver must get.

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use ipxmit::dev::{DevConfig, Driver, NetDevice};
use ipxmit::neigh::NudState;
use ipxmit::stats::{DropReason, DropSite};
use ipxmit::{MsgFlags, Stack, UdpSocket};
use ipxmit_drivers::packet::PacketLink;
use ipxmit_drivers::runner::Runner;
use rustix::thread::{capabilities, set_capabilities, CapabilitySet};

use super::netns::{Receiver, VethPeer, DEV_A, VETH_OURS, VETH_PEER};
use super::payload;

/// How long a receiver waits for the next datagram before it gives up.
pub const QUIET: Duration = Duration::from_secs(2);

/// The pair `tag` and a kernel UDP receiver on its `B` end at
/// [`VETH_PEER`]`:port`, with a receive buffer of `rcvbuf` bytes.
pub fn veth_receiver(tag: &str, port: u16, rcvbuf: usize) -> (VethPeer, Receiver) {
    let peer = VethPeer::new(tag).unwrap();
    let rx = Receiver::bind(&peer.b, SocketAddrV4::new(VETH_PEER, port), rcvbuf).unwrap();
    (peer, rx)
}

/// A stack on the device `cfg` with `drivers` (a link on `peer`'s A end):
/// 10.10.0.1/24 on it, and the B end ([`VETH_PEER`]) a permanent neighbour
/// unless `resolve` (then it is found over ARP).
pub fn veth_stack(
    peer: &VethPeer,
    cfg: DevConfig,
    drivers: Vec<Box<dyn Driver>>,
    resolve: bool,
) -> (Arc<Stack>, Arc<NetDevice>) {
    let stack = Stack::new();
    let name = cfg.name.clone();
    let dev = stack.add_device(cfg, drivers).unwrap();
    stack
        .add_addr(&name, "10.10.0.1/24".parse().unwrap())
        .unwrap();
    if !resolve {
        let nud = NudState::Permanent;
        stack.add_neigh(&name, VETH_PEER, peer.mac_b, nud).unwrap();
    }
    (stack, dev)
}

/// [`veth_stack`] on the AF_PACKET link `link` (`eth0`), the B end a
/// permanent neighbour.
pub fn packet_stack(peer: &VethPeer, link: &PacketLink) -> (Arc<Stack>, Arc<NetDevice>) {
    veth_stack(peer, link.dev_config("eth0"), link.drivers(), false)
}

/// A stack from [`veth_stack`] and its runner.
pub struct VethHost {
    /// The runner of the stack's deferred work.
    pub runner: Runner,
    /// The stack.
    pub stack: Arc<Stack>,
    /// Its `eth0`.
    pub dev: Arc<NetDevice>,
}

impl VethHost {
    /// [`veth_stack`] (the B end a permanent neighbour) and a runner.
    pub fn new(peer: &VethPeer, cfg: DevConfig, drivers: Vec<Box<dyn Driver>>) -> VethHost {
        let (stack, dev) = veth_stack(peer, cfg, drivers, false);
        let runner = Runner::spawn(stack.clone());
        VethHost { runner, stack, dev }
    }

    /// Asserts that the stack counted `n` frames as dropped by the device
    /// after its driver took them (`eth0`'s `tx_dropped`, the
    /// `DRIVER_LATE_DROP` site and reason), and `sent` frames as sent
    /// (`tx_packets`: those the driver took, less those dropped late).
    /// The runner adds a qdisc run's frames to `tx_packets` when the run
    /// ends, which may be after the driver counted them: waited for.
    pub fn assert_late_drops(&self, n: u64, sent: u64) {
        let t = std::time::Instant::now();
        let mut d = self.dev.stats.snapshot();
        while (d.tx_dropped, d.tx_packets) != (n, sent) && t.elapsed() < QUIET {
            std::thread::sleep(Duration::from_millis(1));
            d = self.dev.stats.snapshot();
        }
        assert_eq!((d.tx_dropped, d.tx_packets), (n, sent), "eth0: {d:?}");
        let c = self.stack.counters();
        assert_eq!(c.dropped_at(DropSite::DriverLateDrop), n, "site");
        assert_eq!(c.dropped(DropReason::DriverLateDrop), n, "reason");
    }
}

/// A UDP socket of `stack` bound to [`VETH_OURS`]`:port`.
pub fn socket(stack: &Arc<Stack>, port: u16) -> UdpSocket {
    let mut s = UdpSocket::new(stack);
    s.bind(SocketAddrV4::new(VETH_OURS, port)).unwrap();
    s
}

/// Sends each payload from `s` to [`VETH_PEER`]`:port`, every one taken
/// whole.
pub fn send_from(s: &mut UdpSocket, port: u16, payloads: &[Vec<u8>]) {
    let to = SocketAddrV4::new(VETH_PEER, port);
    for p in payloads {
        assert_eq!(s.send_to(p, to, MsgFlags::NONE).unwrap(), p.len());
    }
}

/// [`send_from`] a socket of `stack` on port 5000.
pub fn send_all(stack: &Arc<Stack>, port: u16, payloads: &[Vec<u8>]) {
    send_from(&mut socket(stack, 5000), port, payloads);
}

/// Numbered payloads: 400 datagrams of 1472 B (the number in the first
/// two bytes), with an 8000 and a 65507 B one every 50 when `fragmented`.
pub fn numbered(fragmented: bool) -> Vec<Vec<u8>> {
    (0..400)
        .map(|k| {
            let n = match k % 50 {
                0 if fragmented => 8000,
                25 if fragmented => 65507,
                _ => 1472,
            };
            let mut p = payload(n, k);
            p[..2].copy_from_slice(&(k as u16).to_be_bytes());
            p
        })
        .collect()
}

/// No static entries on either side: `stack` (from [`veth_stack`] with
/// `resolve`) resolved the kernel over ARP while `payloads` went to
/// [`VETH_PEER`]`:port` and arrived intact at `rx`, and the kernel
/// resolves us.
pub fn check_arp_both_ways(
    peer: &VethPeer,
    (stack, dev): (&Arc<Stack>, &NetDevice),
    rx: &Receiver,
    port: u16,
    payloads: &[Vec<u8>],
) {
    send_all(stack, port, payloads);
    super::assert_same(&rx.recv_n(payloads.len(), QUIET), payloads);
    let n = stack
        .neighbours()
        .lookup(dev.ifindex(), VETH_PEER)
        .expect("we resolved the kernel");
    assert_eq!(n.lladdr(), Some(peer.mac_b));
    super::netns::kernel_resolves(&peer.b, "xb0", "10.10.0.2", "10.10.0.1", peer.mac_a);
}

/// Runs `f` on this thread (a namespace's) without `CAP_NET_RAW` in its
/// effective set.
pub fn without_net_raw<R>(f: impl FnOnce() -> R) -> R {
    let mut caps = capabilities(None).unwrap();
    caps.effective.remove(CapabilitySet::NET_RAW);
    set_capabilities(None, caps).unwrap();
    f()
}

/// A slow root qdisc on `peer`'s A end (tbf at 200 Mbit/s, 16 kB burst,
/// 2 s latency): a link without the qdisc bypass finds its socket full.
pub fn slow_qdisc(peer: &VethPeer) {
    let tbf = "tbf rate 200mbit burst 16kb latency 2s";
    let mut args = vec!["netns", "exec", peer.a.name(), "tc", "qdisc", "add"];
    args.extend(["dev", DEV_A, "root"]);
    args.extend(tbf.split(' '));
    ipxmit_drivers::netns::ip(&args).unwrap();
}

/// Turns the offload `feature` (`ethtool -K` spelling) of `peer`'s A end
/// off.
pub fn offload_off(peer: &VethPeer, feature: &str) {
    let args = [
        "netns",
        "exec",
        peer.a.name(),
        "ethtool",
        "-K",
        DEV_A,
        feature,
        "off",
    ];
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "ethtool: {out:?}");
}
