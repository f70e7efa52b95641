//! The receive side of a stack: the loopback device and its backlog, the
//! link-layer demultiplexing of a received frame, and local delivery to the
//! transport protocols.
//!
//! Stands for `loopback_net_init()` (every namespace has `lo`, ifindex 1,
//! 127.0.0.1/8), `process_backlog()` (net/core/dev.c: the frames `lo` fed
//! to `netif_rx()`, handled in the receive softirq, here
//! [`Stack::poll`]), `__netif_receive_skb_core()`'s dispatch by
//! EtherType with `eth_type_trans()`'s packet type, and
//! `ip_local_deliver_finish()` / `ip_protocol_deliver_rcu()`
//! (net/ipv4/ip_input.c): ICMP to [`crate::ipv4::icmp`], UDP to
//! [`crate::socket::udp::input`], errors to the socket that sent the
//! quoted datagram, and the ICMP errors the host sends back.

use std::sync::Arc;

use crate::buf::GsoType;
use crate::dev::loopback::{LoopbackDriver, LOOPBACK_MTU};
use crate::dev::{DevConfig, Features, LinkType, NetDevice};
use crate::ipv4::icmp;
use crate::ipv4::input::{self, Local, PktType};
use crate::nft::conntrack::RcvNat;
use crate::sched::Noqueue;
use crate::socket::udp::input as udp_input;
use crate::stack::Stack;
use crate::stats::{DevCounter, DropSite, Mib};
use crate::wire::{EtherType, EthernetAddress, EthernetFrame};

thread_local! {
    /// The copy a received datagram is translated in (taken while in use,
    /// so a nested receive gets a buffer of its own).
    static RCV_SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// `lo`'s interface index, the first of every namespace.
pub const LOOPBACK_IFINDEX: u32 = 1;

/// Frames one pass of [`Stack::poll`] takes from the backlog
/// (`net.core.netdev_budget`).
pub const NETDEV_BUDGET: usize = 300;

impl Stack {
    /// Kernel: `loopback_net_init()` and `inetdev_event()`'s address for
    /// it: registers `lo` (ifindex 1, `noqueue`, an all-zero Ethernet
    /// address, MTU 65536, up) and adds 127.0.0.1/8 to it as `ip addr add`
    /// does ([`Stack::add_addr`]: the local table's routes with it). Its
    /// features are scatter-gather and UDP GSO, of `loopback_setup()`'s
    /// `NETIF_F_SG | NETIF_F_GSO_SOFTWARE | NETIF_F_HW_CSUM`: a UDP GSO
    /// packet crosses `lo` whole (one packet in its counters and captures)
    /// and the receiving socket splits it. Checksums are completed on
    /// transmit rather than left partial (`NETIF_F_HW_CSUM`), so a capture
    /// on `lo` shows the full UDP checksum where Linux's shows the
    /// pseudo-header sum; the receive path, which sees bytes, verifies it.
    pub(crate) fn add_loopback(&self) {
        let mut cfg = DevConfig::ethernet("lo", EthernetAddress([0; 6]));
        cfg.txqueuelen = 1000;
        cfg.features = Features::SG | Features::GSO_UDP_L4;
        let drv = LoopbackDriver::new(
            LOOPBACK_IFINDEX,
            self.backlog.clone(),
            self.lo_drops.clone(),
        );
        let made = NetDevice::new(
            LOOPBACK_IFINDEX,
            cfg,
            vec![Box::new(drv)],
            &|_| Box::new(Noqueue::new()),
            self.notify.clone(),
            self.counters.clone(),
        );
        let Ok(dev) = made else { return };
        let dev = Arc::new(dev.into_loopback());
        debug_assert_eq!(dev.mtu(), LOOPBACK_MTU);
        self.devices.write().insert(0, dev);
        if let Ok(net) = "127.0.0.1/8".parse() {
            let _ = self.add_addr("lo", net);
        }
    }

    /// The loopback device.
    pub fn loopback(&self) -> Option<Arc<NetDevice>> {
        self.device_by_index(LOOPBACK_IFINDEX)
    }

    /// Kernel: `process_backlog()`, net/core/dev.c. Hands up to
    /// [`NETDEV_BUDGET`] frames `lo` queued to the receive path; raises the
    /// pending mark again when more wait. Returns the number handled.
    pub(crate) fn process_backlog(&self) -> usize {
        if let Some(lo) = self.loopback() {
            self.lo_drops.settle(&self.counters, &lo);
        }
        let mut n = 0;
        while n < NETDEV_BUDGET {
            let Some((ifindex, pkt)) = self.backlog.dequeue() else {
                break;
            };
            n += 1;
            let Some(dev) = self.device_by_index(ifindex) else {
                continue;
            };
            let whole;
            let frame = if pkt.data_len() == 0 && pkt.chain().is_empty() {
                pkt.linear()
            } else {
                whole = pkt.to_vec();
                &whole
            };
            if dev.is_loopback() {
                self.receive_lo(&dev, frame, udp_gso_size(&pkt));
            } else {
                // A copy `dev_loopback_xmit()` looped: no device counted it.
                self.receive_looped(&dev, frame);
            }
        }
        if !self.backlog.is_empty() {
            self.notify.raise();
        }
        n
    }

    /// Kernel: `dev_loopback_xmit()` and `netif_rx()`: `frame`, a copy of
    /// a broadcast or multicast datagram sent out of `dev`, queued for the
    /// host's own receive path (`PACKET_LOOPBACK`); a full backlog drops
    /// it (`CPU_BACKLOG`).
    pub(crate) fn loop_to_host(&self, dev: &NetDevice, frame: crate::PacketBuf) {
        if self.backlog.enqueue(dev.ifindex(), frame).is_err() {
            self.counters.drop_at(DropSite::Backlog);
            dev.stats.add(crate::stats::DevCounter::RxDropped, 1);
        }
    }

    /// The receive path of a looped copy (`PACKET_LOOPBACK`): it carries
    /// its output route, whose input is local delivery (`RTCF_LOCAL`).
    fn receive_looped(&self, dev: &NetDevice, frame: &[u8]) {
        let Some(ip) = frame.get(crate::wire::ethernet::HEADER_LEN..) else {
            return;
        };
        if let Some(l) = input::rcv(self, dev, ip, PktType::Loopback) {
            self.local_deliver(&l);
        }
    }

    /// Kernel: `__netif_receive_skb()` of a frame `lo` took, counted in its
    /// receive statistics without its link header (as `loopback_xmit()`
    /// counts it, after `eth_type_trans()`); a UDP GSO
    /// packet (`gso_size` payload bytes a segment, 0: none) stays whole
    /// through IP and is split by UDP (`udp_rcv_segment()`).
    fn receive_lo(&self, dev: &NetDevice, frame: &[u8], gso_size: u16) {
        dev.stats.add(DevCounter::RxPackets, 1);
        let ip_len = frame
            .len()
            .saturating_sub(crate::wire::ethernet::HEADER_LEN);
        dev.stats.add(DevCounter::RxBytes, ip_len as u64);
        self.receive_frame_gso(dev, frame, gso_size);
    }

    /// The dispatch of [`Stack::receive`]: ARP to the neighbour layer,
    /// IPv4 to `ip_rcv()` and what is for the host to local delivery.
    pub(crate) fn receive_frame(&self, dev: &NetDevice, frame: &[u8]) {
        self.receive_frame_gso(dev, frame, 0);
    }

    /// [`Stack::receive_frame`] of a frame that may be a UDP GSO packet of
    /// `gso_size` payload bytes a segment (0: an ordinary frame).
    fn receive_frame_gso(&self, dev: &NetDevice, frame: &[u8], gso_size: u16) {
        let (ip, pt) = match dev.link() {
            LinkType::L3 => {
                if frame.first().is_none_or(|b| b >> 4 != 4) {
                    return;
                }
                (frame, PktType::Host)
            }
            LinkType::Ethernet => {
                let Ok(eth) = EthernetFrame::new_checked(frame) else {
                    return;
                };
                match eth.ethertype() {
                    EtherType::Arp => return crate::neigh::arp_rcv(self, dev, frame),
                    EtherType::Ipv4 => (&frame[14..], pkt_type(dev, eth.dst_addr())),
                    _ => return,
                }
            }
        };
        if self.conntrack.active() {
            return self.receive_tracked(dev, ip, pt, gso_size);
        }
        self.receive_ip(dev, ip, pt, gso_size);
    }

    /// `ip_rcv()` and local delivery of an IPv4 datagram `ip`.
    fn receive_ip(&self, dev: &NetDevice, ip: &[u8], pt: PktType, gso_size: u16) {
        if let Some(mut l) = input::rcv(self, dev, ip, pt) {
            l.gso_size = gso_size;
            self.local_deliver(&l);
        }
    }

    /// Kernel: PRE_ROUTING's and LOCAL_IN's conntrack and NAT hooks
    /// (`ipv4_conntrack_in`, `nf_nat_ipv4_pre_routing`,
    /// `nf_nat_ipv4_local_in`) around `ip_rcv()`: a datagram whose header
    /// `ip_rcv_core()` accepts is tracked (a reply marks its flow
    /// replied); one its flow translates is rewritten in a copy (this
    /// thread's scratch buffer: nothing allocated once it has grown) and
    /// received as rewritten. See [`crate::nft::nat_rcv`].
    fn receive_tracked(&self, dev: &NetDevice, ip: &[u8], pt: PktType, gso_size: u16) {
        let nat = match input::check_header(ip) {
            Ok(whole) if pt != PktType::OtherHost => self
                .conntrack
                .track_in(whole.into_inner(), self.now().as_nanos()),
            _ => RcvNat::default(),
        };
        if nat.is_none() {
            return self.receive_ip(dev, ip, pt, gso_size);
        }
        let mut copy = RCV_SCRATCH.take();
        copy.clear();
        copy.extend_from_slice(ip);
        crate::nft::nat_rcv::rcv_manip(&mut copy, &nat);
        self.receive_ip(dev, &copy, pt, gso_size);
        RCV_SCRATCH.set(copy);
    }

    /// Kernel: `ip_protocol_deliver_rcu()`, net/ipv4/ip_input.c. ICMP and
    /// UDP are handled and counted `IpInDelivers` whatever they make of
    /// the datagram (a UDP datagram for no socket is answered with a port
    /// unreachable); any other protocol is `IpInUnknownProtos`
    /// (`IP_NOPROTO`) and answered with a protocol unreachable.
    fn local_deliver(&self, l: &Local<'_>) {
        let c = &self.counters;
        match l.ip.protocol().0 {
            1 => {
                if let Some(e) = icmp::rcv(self, l) {
                    crate::socket::raw_err::icmp_error(self, &e);
                    if e.quoted.protocol().0 == 17 {
                        udp_input::err(self, &e);
                    }
                }
            }
            17 => {
                if udp_input::rcv(self, l) == udp_input::Rcv::NoPort {
                    icmp::send(self, l, 3, 3, 0);
                }
            }
            _ => {
                c.inc(Mib::IpInUnknownProtos);
                icmp::send(self, l, 3, 2, 0);
                c.drop_at(DropSite::RcvNoProto);
                return;
            }
        }
        c.inc(Mib::IpInDelivers);
    }
}

/// The segment size of a UDP GSO packet (`SKB_GSO_UDP_L4`), 0 for any
/// other.
fn udp_gso_size(pkt: &crate::PacketBuf) -> u16 {
    match pkt.meta.gso_type {
        GsoType::UdpL4 => pkt.meta.gso_size,
        _ => 0,
    }
}

/// Kernel: `eth_type_trans()`'s `skb->pkt_type` for a frame to `dst` on
/// `dev`.
fn pkt_type(dev: &NetDevice, dst: EthernetAddress) -> PktType {
    if dst.is_broadcast() {
        PktType::Broadcast
    } else if dst.0[0] & 1 != 0 {
        PktType::Multicast
    } else if dst == dev.hw_addr() {
        PktType::Host
    } else {
        PktType::OtherHost
    }
}
