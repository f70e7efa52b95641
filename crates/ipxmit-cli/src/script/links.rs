//! Devices of a script host and what sits at the far end of each.
//!
//! * `mem`: an in-memory wire. Without `peer` the far end takes every frame and
//!   discards it (a cable into a switch port nobody listens on): frames are still
//!   counted by the device and seen by `capture`. With `peer ADDR` a verifying
//!   peer is the far end: it answers ARP for ADDR, reassembles fragments and
//!   checks every checksum of every IP datagram on the wire (promiscuously: any
//!   destination MAC or address). With `offload gso,csum` the device hands the
//!   wire unsegmented GSO packets and unfinished checksums, as a NIC is given
//!   them (and as `capture` records them); the far end then does the NIC's
//!   part (segments, completes checksums) before the peer receives.
//! * `null`: counts and frees every frame (the kernel's `dummy`).
//! * `pcap file PATH`: the wire is a capture file.
//! * `tap`, `packet`: a Linux TAP device or interface (AF_PACKET); the kernel is
//!   the far end. `packet ... ring N` sends through a `PACKET_TX_RING` of N
//!   slots (`TPACKET_V3`, or `tpacket 2`), whose queues keep byte queue
//!   limits (the kernel hands a slot back when it is done with the frame: a
//!   transmit completion). `packet ... offload csum,gso` puts a
//!   `virtio_net_hdr` in front of each frame (`PACKET_VNET_HDR`), so the
//!   kernel completes checksums and segments UDP GSO super-frames.
//! * `xdp`: a Linux interface through AF_XDP sockets (one per transmit
//!   queue, on hardware queues `queue N` on; `ring N` TX ring entries;
//!   `zerocopy on|off`, else zero-copy where the driver has it).

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipxmit::buf::GsoType;
use ipxmit::dev::{DevConfig, Driver};
use ipxmit::offload::checksum_help;
use ipxmit::offload::gso::segment_udp;
use ipxmit::wire::EthernetAddress;
use ipxmit::{Features, NetDevice, PacketBuf, Stack};
use ipxmit_drivers::capture::PcapDriver;
use ipxmit_drivers::mem::MemWire;
use ipxmit_drivers::null::NullCounters;
use ipxmit_drivers::peer::{Peer, PeerConfig, PeerStats, Received};

use super::parse::{LinkKind, LinkSpec};

/// Frames an in-memory wire holds before the device's queue stops.
pub const MEM_WIRE_FRAMES: usize = 8192;
/// The transmit ring of a `mem` link with a `rate`: frames the device
/// holds while the line sends them (a NIC's 256 descriptors).
pub const RATED_RING_FRAMES: usize = 256;

/// The default MAC of a `mem` link's peer.
pub const PEER_LLADDR: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xfe]);

/// Why a link could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The stack refused the device.
    #[error(transparent)]
    Config(#[from] ipxmit::stack::ConfigError),
    /// A file or OS device could not be opened.
    #[error("cannot open {what}: {source}")]
    Io {
        /// What was opened.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A TAP device or AF_PACKET socket could not be opened: the driver's
    /// message, which names the interface (said once, not again as a cause).
    #[error("cannot open {what}: {reason}")]
    Os {
        /// What was opened (`tap NAME`, `packet socket`).
        what: String,
        /// The driver's error.
        reason: String,
    },
}

/// What is at the far end of a device.
pub enum FarEnd {
    /// An in-memory wire, optionally with a verifying peer.
    Mem {
        /// The wire.
        wire: Arc<MemWire>,
        /// The peer, when the script asked for one.
        peer: Option<Box<Peer>>,
    },
    /// The null device's counters.
    Null(Arc<NullCounters>),
    /// A capture file.
    File,
    /// A Linux device (the kernel is the far end).
    Os,
}

/// A device of the host and its far end.
pub struct Link {
    /// The device.
    pub dev: Arc<NetDevice>,
    /// The link type.
    pub kind: LinkKind,
    /// Its far end.
    pub far: FarEnd,
}

/// The MAC of the `i`-th link of a host (0-based): `02:00:00:00:00:(i+1)`.
pub fn default_lladdr(i: usize) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, 0, (i + 1) as u8])
}

/// Drivers for a Linux device of type `kind` (`tap` or `packet`) called
/// `ifname`, `n` transmit queues, asking for the `offload` features (and for
/// `packet`, a TX ring of `ring` slots with `tpacket` slot headers instead
/// of `sendmmsg`, and the vnet header when offloads are asked for); returns
/// them with the features actually granted (TAP: what `TUNSETOFFLOAD`
/// accepted; AF_PACKET: scatter-gather, and with the vnet header checksum
/// offload and UDP GSO where the interface takes it).
pub fn os_drivers(
    kind: &LinkKind,
    ifname: &str,
    n: usize,
    offload: Features,
    ring: Option<usize>,
    tpacket: Option<ipxmit_drivers::packet::TpacketVersion>,
) -> Result<(Vec<Box<dyn Driver>>, Features), LinkError> {
    let io = |what: String, reason: String| LinkError::Os { what, reason };
    match kind {
        LinkKind::Tap => {
            let mut c = ipxmit_drivers::tap::TapConfig::tap(ifname);
            c.queues = n;
            c.vnet_hdr = true;
            c.offload = offload;
            let t = ipxmit_drivers::tap::TapDevice::open(&c)
                .map_err(|e| io(format!("tap {ifname}"), e.to_string()))?;
            Ok((t.drivers(), t.features()))
        }
        LinkKind::Xdp => {
            // `IFACE[:QUEUE]`, as `--dev xdp:IFACE[:QUEUE]` gives it.
            let (name, queue) = match ifname.rsplit_once(':') {
                Some((n, q)) => {
                    let q = q
                        .parse()
                        .map_err(|_| io(format!("xdp {ifname}"), format!("invalid queue {q:?}")))?;
                    (n, Some(q))
                }
                None => (ifname, None),
            };
            xdp_drivers(name, n, ring, queue, None)
        }
        _ => {
            let mut c = ipxmit_drivers::packet::PacketConfig::new(ifname);
            c.queues = n;
            let offloads = Features::HW_CSUM | Features::IP_CSUM | Features::GSO_UDP_L4;
            c.vnet_hdr = offload.intersects(offloads);
            c.offload = offload;
            c.version = tpacket.unwrap_or(c.version);
            if let Some(frames) = ring {
                c.mode = ipxmit_drivers::packet::PacketMode::TxRing {
                    frames,
                    frame_size: 0,
                };
            }
            let l = ipxmit_drivers::packet::PacketLink::open(&c)
                .map_err(|e| io("packet socket".into(), e.to_string()))?;
            Ok((l.drivers(), l.features()))
        }
    }
}

/// Drivers for the Linux interface `ifname` through AF_XDP: `n` transmit
/// queues bound to its hardware queues `queue` (default 0) on, TX rings of
/// `ring` entries (default [`ipxmit_drivers::xdp::DEFAULT_RING`]),
/// `zerocopy` forced on or off (default: zero-copy where the driver has
/// it); returns them with the features granted (scatter-gather, copied).
pub fn xdp_drivers(
    ifname: &str,
    n: usize,
    ring: Option<usize>,
    queue: Option<u32>,
    zerocopy: Option<bool>,
) -> Result<(Vec<Box<dyn Driver>>, Features), LinkError> {
    use ipxmit_drivers::xdp::{XdpConfig, XdpLink, XdpMode};
    let mut c = XdpConfig::new(ifname);
    c.queues = n;
    c.first_queue = queue.unwrap_or(0);
    c.ring = ring.unwrap_or(c.ring);
    c.mode = match zerocopy {
        None => XdpMode::Auto,
        Some(true) => XdpMode::ZeroCopy,
        Some(false) => XdpMode::Copy,
    };
    let l = XdpLink::open(&c).map_err(|e| LinkError::Os {
        what: "AF_XDP socket".into(),
        reason: e.to_string(),
    })?;
    Ok((l.drivers(), l.features()))
}

/// Creates the device a `link add` line describes, as the `index`-th link.
pub fn build_link(stack: &Stack, spec: &LinkSpec, index: usize) -> Result<Link, LinkError> {
    let mut cfg = DevConfig::ethernet(&spec.name, spec.lladdr.unwrap_or(default_lladdr(index)));
    if let Some(m) = spec.mtu {
        cfg.mtu = m;
    }
    if let Some(q) = spec.txqueuelen {
        cfg.txqueuelen = q;
    }
    cfg.features = spec.offload.unwrap_or(Features::NONE);
    let n = spec.txqueues.unwrap_or(1);
    let (drivers, far) = match spec.kind {
        LinkKind::Mem => {
            let wire = match spec.rate {
                Some(r) => MemWire::with_rate(RATED_RING_FRAMES, r, stack.clock()),
                None => MemWire::new(MEM_WIRE_FRAMES),
            };
            let peer = spec.peer.map(|a| {
                let mut pc = PeerConfig::new(a, spec.peer_lladdr.unwrap_or(PEER_LLADDR));
                pc.promiscuous = true;
                Box::new(Peer::new(pc))
            });
            (wire.drivers(n), FarEnd::Mem { wire, peer })
        }
        LinkKind::Null => {
            let c = NullCounters::new();
            (c.drivers(n), FarEnd::Null(c))
        }
        LinkKind::Pcap => {
            let path = spec.file.clone().unwrap_or_default();
            let d = PcapDriver::create(&path, cfg.link, &spec.name, n, stack.clock()).map_err(
                |source| LinkError::Io {
                    what: path.display().to_string(),
                    source,
                },
            )?;
            (d, FarEnd::File)
        }
        LinkKind::Xdp => {
            let ifname = spec.ifname.as_deref().unwrap_or(&spec.name);
            let (d, granted) = xdp_drivers(ifname, n, spec.ring, spec.queue, spec.zerocopy)?;
            cfg.features = granted;
            (d, FarEnd::Os)
        }
        LinkKind::Tap | LinkKind::Packet => {
            let ifname = spec.ifname.as_deref().unwrap_or(&spec.name);
            let (ring, tpacket) = (spec.ring, spec.tpacket);
            let (d, granted) = os_drivers(&spec.kind, ifname, n, cfg.features, ring, tpacket)?;
            cfg.features = granted;
            (d, FarEnd::Os)
        }
    };
    let dev = stack.add_device(cfg, drivers)?;
    Ok(Link {
        dev,
        kind: spec.kind.clone(),
        far,
    })
}

/// What a NIC puts on the wire for a frame it was given: a UDP GSO packet is
/// segmented and a `CHECKSUM_PARTIAL` checksum completed (the offloads a
/// `mem` link with `offload gso,csum` advertises). A malformed GSO packet
/// yields nothing (the NIC drops it).
fn on_the_wire(f: PacketBuf) -> Vec<PacketBuf> {
    let mut v = if f.meta.gso_type == GsoType::None {
        vec![f]
    } else {
        segment_udp(f, Features::NONE).unwrap_or_default()
    };
    for p in &mut v {
        checksum_help(p);
    }
    v
}

impl Link {
    /// Takes every frame off an in-memory wire: the peer (if any) receives
    /// each, and its ARP replies go back into the stack. Returns the frames
    /// taken.
    pub fn drain(&mut self, stack: &Stack) -> usize {
        let FarEnd::Mem { wire, peer } = &mut self.far else {
            return 0;
        };
        if wire.is_empty() {
            return 0;
        }
        let now = stack.now();
        let mut replies = Vec::new();
        let n = wire.drain(|f| {
            let Some(peer) = peer.as_mut() else { return };
            for f in on_the_wire(f) {
                let r = if f.data_len() == 0 {
                    peer.receive(f.linear(), now)
                } else {
                    peer.receive(&f.to_vec(), now)
                };
                if let Received::ArpRequest { reply } = r {
                    replies.push(reply);
                }
            }
        });
        for r in replies {
            stack.receive(&self.dev, &r);
        }
        n
    }

    /// Expires the peer's reassembly queues at `now`.
    pub fn expire(&mut self, now: ipxmit::Instant) {
        if let FarEnd::Mem {
            peer: Some(peer), ..
        } = &mut self.far
        {
            peer.expire(now);
        }
    }

    /// Frames and bytes the far end took (in-memory wire, null device).
    pub fn wire_counts(&self) -> Option<(u64, u64)> {
        match &self.far {
            FarEnd::Mem { wire, .. } => Some((wire.frames(), wire.bytes())),
            FarEnd::Null(c) => Some((c.frames(), c.bytes())),
            FarEnd::File | FarEnd::Os => None,
        }
    }

    /// The peer's address and counters, when there is a peer.
    pub fn peer(&self) -> Option<(Ipv4Addr, EthernetAddress, PeerStats)> {
        match &self.far {
            FarEnd::Mem { peer: Some(p), .. } => Some((p.config().addr, p.config().mac, p.stats())),
            _ => None,
        }
    }
}
