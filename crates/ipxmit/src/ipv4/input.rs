//! IPv4 input: from a received frame's IP header to local delivery.
//!
//! Stands for `ip_rcv()` / `ip_rcv_core()` (header checks and their MIB
//! counters and drop reasons), `ip_rcv_finish_core()` with the input route
//! decision of `ip_route_input_slow()` (net/ipv4/route.c: a martian source,
//! the host's own addresses and broadcasts delivered locally, everything
//! else refused as the kernel does with forwarding off: `ip_error()`'s
//! `IpInAddrErrors`), and the fragment test of `ip_local_deliver()`
//! (net/ipv4/ip_input.c). What is delivered locally goes back to the caller
//! as a [`Local`], which the stack hands to its transport protocols
//! (`ip_protocol_deliver_rcu()`): this layer imports nothing from sockets.
//!
//! Not done: reassembly (`ip_defrag()`). A fragment addressed to the host
//! is counted in `IpReasmReqds` and dropped as `FRAG_REASM_TIMEOUT` (what
//! the kernel's queue would come to were the other fragments never to
//! come); IP options of received datagrams are not processed
//! (`ip_rcv_options()`), only skipped.

use std::net::Ipv4Addr;

use crate::dev::NetDevice;
use crate::stack::Stack;
use crate::stats::{DropReason, DropSite, Mib};
use crate::wire::Ipv4Packet;

/// Who a received frame's link-layer destination was (`skb->pkt_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PktType {
    /// `PACKET_HOST`: this device's address (or an L3 device).
    Host,
    /// `PACKET_BROADCAST`.
    Broadcast,
    /// `PACKET_MULTICAST`.
    Multicast,
    /// `PACKET_OTHERHOST`: another host's address.
    OtherHost,
    /// `PACKET_LOOPBACK`: the host's own broadcast or multicast, looped by
    /// `dev_loopback_xmit()` with its output route.
    Loopback,
}

/// What the input route made of a datagram for the host (`rt_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalKind {
    /// `RTN_LOCAL`: one of the host's addresses.
    Unicast,
    /// `RTN_BROADCAST`: the limited or a subnet broadcast.
    Broadcast,
    /// `RTN_MULTICAST`: a group the host is in (all-hosts, 224.0.0.1).
    Multicast,
}

/// A datagram delivered to the host: its header view (trimmed to its total
/// length), the kind of address it came to, and the device it came on.
#[derive(Debug)]
pub struct Local<'a> {
    /// The datagram, exactly `total_len` bytes.
    pub ip: Ipv4Packet<&'a [u8]>,
    /// What the destination is to the host.
    pub kind: LocalKind,
    /// The receiving device's index (`skb->dev`, `inet_iif()`).
    pub dif: u32,
    /// A UDP GSO packet's segment size (`skb_shinfo(skb)->gso_size`, one
    /// that crossed `lo` whole), 0 for an ordinary datagram.
    pub gso_size: u16,
}

/// All-hosts, the group every IPv4 host is in (`IGMP_ALL_HOSTS`).
pub(crate) const ALL_HOSTS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 1);

/// Kernel: `ip_rcv()` and `ip_rcv_core()`, net/ipv4/ip_input.c. Checks the
/// header of `bytes` (the frame after its link header) received on `dev`:
/// a frame for another host is dropped (`OTHERHOST`) before any count;
/// then `IpInReceives`, and a short buffer, a version other than 4, an IHL
/// below 5 or beyond the buffer, or a total length below the header are
/// `IpInHdrErrors` (`IP_INHDR`), a bad checksum `IpExtInCsumErrors` and
/// `IpInHdrErrors` (`IP_CSUM`), a buffer shorter than the total length
/// `IpExtInTruncatedPkts` (`PKT_TOO_SMALL`). A good datagram goes on to
/// [`route_input`]; what is for the host comes back, fragments excepted
/// (see the module documentation).
pub fn rcv<'a>(stack: &Stack, dev: &NetDevice, bytes: &'a [u8], pt: PktType) -> Option<Local<'a>> {
    let c = &stack.counters;
    if pt == PktType::OtherHost {
        c.drop_at(DropSite::RcvOtherHost);
        return None;
    }
    c.inc(Mib::IpInReceives);
    c.add(Mib::IpExtInOctets, bytes.len() as u64);
    let ip = match check_header(bytes) {
        Ok(ip) => ip,
        Err(reason) => {
            match reason {
                DropReason::IpCsum => {
                    c.inc(Mib::IpExtInCsumErrors);
                    c.inc(Mib::IpInHdrErrors);
                }
                DropReason::PktTooSmall => c.inc(Mib::IpExtInTruncatedPkts),
                _ => c.inc(Mib::IpInHdrErrors),
            }
            c.drop_at(match reason {
                DropReason::IpCsum => DropSite::RcvChecksum,
                DropReason::PktTooSmall => DropSite::RcvTruncated,
                _ => DropSite::RcvHeader,
            });
            return None;
        }
    };
    let kind = match pt {
        PktType::Loopback => looped_kind(&ip),
        _ => route_input(stack, dev, &ip)?,
    };
    match kind {
        LocalKind::Broadcast => {
            c.inc(Mib::IpExtInBcastPkts);
            c.add(Mib::IpExtInBcastOctets, bytes.len() as u64);
        }
        LocalKind::Multicast => {
            c.inc(Mib::IpExtInMcastPkts);
            c.add(Mib::IpExtInMcastOctets, bytes.len() as u64);
        }
        LocalKind::Unicast => {}
    }
    if ip.is_fragment() {
        c.inc(Mib::IpReasmReqds);
        c.drop_at(DropSite::RcvFragment);
        return None;
    }
    Some(Local {
        ip,
        kind,
        dif: dev.ifindex(),
        gso_size: 0,
    })
}

/// The checks of `ip_rcv_core()` in its order; the datagram trimmed to
/// its total length (`pskb_trim_rcsum()`), or the drop reason.
pub(crate) fn check_header(bytes: &[u8]) -> Result<Ipv4Packet<&[u8]>, DropReason> {
    if bytes.len() < 20 {
        return Err(DropReason::IpInhdr);
    }
    let ip = Ipv4Packet::new_unchecked(bytes);
    let hlen = ip.header_len();
    if hlen < 20 || ip.version() != 4 || bytes.len() < hlen {
        return Err(DropReason::IpInhdr);
    }
    if !ip.verify_checksum() {
        return Err(DropReason::IpCsum);
    }
    let total = usize::from(ip.total_len());
    if bytes.len() < total {
        return Err(DropReason::PktTooSmall);
    }
    if total < hlen {
        return Err(DropReason::IpInhdr);
    }
    Ok(Ipv4Packet::new_unchecked(&bytes[..total]))
}

/// Kernel: `ip_rcv_finish_core()` of a looped copy, whose output route is
/// still attached (`skb_valid_dst()`: no input route lookup): a broadcast
/// or a group the host is in (only those loop), whose input is local
/// delivery (`RTCF_LOCAL`).
fn looped_kind(ip: &Ipv4Packet<&[u8]>) -> LocalKind {
    match ip.dst_addr().is_multicast() {
        true => LocalKind::Multicast,
        false => LocalKind::Broadcast,
    }
}

/// Kernel: `ip_route_input_slow()` and `ip_route_input_mc()` as far as a
/// host without forwarding goes. A source that is multicast, the limited
/// broadcast or (but for 0.0.0.0 to the limited broadcast) in 0/8 is
/// martian (`IP_INVALID_SOURCE`); so are loopback addresses either way on a
/// device other than `lo`. The limited broadcast, a subnet broadcast of the
/// host and all-hosts are delivered; other groups are not (no membership:
/// dropped unspecified); the host's own addresses are; anything else is
/// `IpInAddrErrors` (`IP_INADDRERRORS`: forwarding is off). A unicast
/// frame that came through `lo` is the host's whatever its address.
pub fn route_input(stack: &Stack, dev: &NetDevice, ip: &Ipv4Packet<&[u8]>) -> Option<LocalKind> {
    let (saddr, daddr) = (ip.src_addr(), ip.dst_addr());
    let c = &stack.counters;
    let lo = dev.is_loopback();
    let zero_to_bcast = saddr.is_unspecified() && daddr.is_broadcast();
    let martian_src = saddr.is_multicast()
        || saddr.is_broadcast()
        || (saddr.octets()[0] == 0 && !zero_to_bcast)
        || (!lo && saddr.is_loopback());
    if martian_src {
        c.drop_at(DropSite::RcvMartian);
        return None;
    }
    if daddr.is_broadcast() {
        return Some(LocalKind::Broadcast);
    }
    if daddr.is_multicast() {
        if daddr == ALL_HOSTS {
            return Some(LocalKind::Multicast);
        }
        c.drop_at(DropSite::RcvNoGroup);
        return None;
    }
    // A frame looped through `lo` carries the output route it was sent on
    // (`RTCF_LOCAL`, whose input is `ip_local_deliver()`): it is the
    // host's, whatever its address (a send bound to `lo`, `oif lo`).
    if lo && daddr.octets()[0] != 0 {
        return Some(LocalKind::Unicast);
    }
    if daddr.octets()[0] == 0 || (!lo && daddr.is_loopback()) {
        c.drop_at(DropSite::RcvBadDest);
        return None;
    }
    if daddr.is_loopback() || stack.is_local_addr(daddr) {
        return Some(LocalKind::Unicast);
    }
    if stack.route_type(daddr) == crate::route::RouteType::Broadcast {
        return Some(LocalKind::Broadcast);
    }
    c.inc(Mib::IpInAddrErrors);
    c.drop_at(DropSite::RcvNotLocal);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(total: u16) -> [u8; 20] {
        let mut h = [0u8; 20];
        let mut ip = Ipv4Packet::new_unchecked(&mut h[..]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_total_len(total);
        ip.set_ttl(64);
        ip.set_protocol(crate::wire::IpProtocol::UDP);
        ip.set_src_addr(Ipv4Addr::new(10, 0, 0, 2));
        ip.set_dst_addr(Ipv4Addr::new(10, 0, 0, 1));
        ip.fill_checksum();
        h
    }

    #[test]
    fn header_checks_in_the_kernels_order() {
        let h = header(20);
        assert!(check_header(&h).is_ok());
        assert_eq!(check_header(&h[..19]).err(), Some(DropReason::IpInhdr));
        let mut bad = h;
        bad[0] = 0x65;
        assert_eq!(check_header(&bad).err(), Some(DropReason::IpInhdr));
        let mut bad = h;
        bad[0] = 0x44;
        assert_eq!(check_header(&bad).err(), Some(DropReason::IpInhdr));
        let mut bad = h;
        bad[8] ^= 1;
        assert_eq!(check_header(&bad).err(), Some(DropReason::IpCsum));
        let long = header(28);
        assert_eq!(check_header(&long).err(), Some(DropReason::PktTooSmall));
        let short = header(10);
        assert_eq!(check_header(&short).err(), Some(DropReason::IpInhdr));
        let mut padded = [0u8; 30];
        padded[..20].copy_from_slice(&h);
        assert_eq!(check_header(&padded).unwrap().as_bytes().len(), 20);
    }
}
