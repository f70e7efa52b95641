//! ARP: requests and replies for the neighbour layer, and the neighbour output
//! path.
//!
//! Stands for `arp_solicit`/`arp_send_dst`/`arp_create` (requests, 42-byte frames
//! sent through the device's qdisc with `TC_PRIO_CONTROL`), `arp_rcv`/
//! `arp_process` (learning from replies and requests, answering requests for our
//! addresses) in `net/ipv4/arp.c`, and `neigh_output`/`neigh_resolve_output`
//! (`include/net/neighbour.h`, `net/core/neighbour.c`).

use std::net::Ipv4Addr;

use crate::buf::PacketBuf;
use crate::dev::queue::queue_xmit;
use crate::dev::NetDevice;
use crate::error::SendError;
use crate::neigh::{Actions, HhCache, NudState, Probe, Resolved};
use crate::stack::Stack;
use crate::stats::DropSite;
use crate::time::Instant;
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
};

/// `TC_PRIO_CONTROL`: the priority of ARP frames (band 0 of pfifo_fast).
const TC_PRIO_CONTROL: u32 = 7;

/// Builds and queues an ARP frame on `dev` (`arp_create` + `arp_xmit`).
fn arp_send(stack: &Stack, dev: &NetDevice, eth_dst: EthernetAddress, repr: &ArpRepr) {
    let hh = dev.ll_reserved_space();
    let mut pkt = stack.pool.alloc(hh + 42);
    pkt.reserve(hh);
    let buf = pkt.put(42);
    let eth = EthernetRepr {
        src_addr: dev.hw_addr(),
        dst_addr: eth_dst,
        ethertype: EtherType::Arp,
    };
    buf[..14].copy_from_slice(&eth.to_bytes());
    repr.emit(&mut ArpPacket::new_unchecked(&mut buf[14..]));
    pkt.meta.protocol = 0x0806;
    pkt.meta.priority = TC_PRIO_CONTROL;
    let _ = queue_xmit(stack.xmit_ctx(), dev, pkt);
}

/// Kernel: `arp_solicit()`. A request for `target` from `saddr` (our address
/// on the device), broadcast or unicast.
pub fn solicit(stack: &Stack, dev: &NetDevice, target: Ipv4Addr, saddr: Ipv4Addr, probe: Probe) {
    let dst = match probe {
        Probe::Broadcast => EthernetAddress::BROADCAST,
        Probe::Unicast(ll) => ll,
    };
    let repr = ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: dev.hw_addr(),
        source_protocol_addr: saddr,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    arp_send(stack, dev, dst, &repr);
}

/// Carries out what a neighbour state change asks: the ARP request, the
/// release of queued packets, the drops (a failed neighbour's datagrams
/// first report "host unreachable" to their source, `arp_error_report()`).
pub fn apply(stack: &Stack, dev: &NetDevice, target: Ipv4Addr, saddr: Ipv4Addr, a: Actions) {
    for (mut p, reason) in a.drop {
        if reason == crate::stats::DropReason::NeighFailed {
            // arp_error_report(): the datagram's source hears of it.
            p.linearize();
            crate::ipv4::icmp::link_failure(stack, p.network_header());
        }
        match DropSite::of_neigh(reason) {
            Some(site) => {
                stack.counters.drop_at(site);
                crate::dev::xmit::tap_drop(dev, &p, site, stack.now());
            }
            None => stack.counters().drop(reason),
        }
        dev.stats.add(crate::stats::DevCounter::TxDropped, 1);
        crate::stats::fate::dropped(p.meta.tskey, reason);
        drop(p);
    }
    if let Some(probe) = a.probe {
        solicit(stack, dev, target, saddr, probe);
    }
    let Some(hh) = a.hh else { return };
    for p in a.release {
        let _ = xmit_with(stack, dev, p, &hh);
    }
    // Packets that queued behind the released ones go next, in order.
    if let Some(n) = stack.neigh.lookup(dev.ifindex(), target) {
        while let Some((more, hh)) = n.release_more() {
            for p in more {
                let _ = xmit_with(stack, dev, p, &hh);
            }
        }
    }
}

fn xmit_with(
    stack: &Stack,
    dev: &NetDevice,
    mut pkt: PacketBuf,
    hh: &HhCache,
) -> Result<(), SendError> {
    if pkt.headroom() < hh.hdr.len() {
        stack.counters.drop_at(DropSite::NeighNoHeadroom);
        crate::dev::xmit::tap_drop(dev, &pkt, DropSite::NeighNoHeadroom, stack.now());
        crate::stats::fate::dropped(pkt.meta.tskey, DropSite::NeighNoHeadroom.reason());
        return Err(SendError::NoBufs);
    }
    pkt.push(14).copy_from_slice(&hh.hdr);
    queue_xmit(stack.xmit_ctx(), dev, pkt).map_err(SendError::from)
}

/// Kernel: `ip_eth_mc_map()`, include/net/ip.h. The Ethernet address of
/// IPv4 multicast group `a`: 01:00:5e and the group's low 23 bits.
pub fn mc_map(a: Ipv4Addr) -> EthernetAddress {
    let o = a.octets();
    EthernetAddress([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
}

/// Kernel: `arp_constructor()`, net/ipv4/arp.c. The link address a new
/// neighbour entry for `addr` on `dev` takes without ARP (NUD_NOARP):
/// multicast maps to its group address (`arp_mc_map()`), anything on the
/// loopback device to the device's own address (`IFF_LOOPBACK`: all
/// zeros), the limited broadcast and the broadcast of a subnet of `dev` to
/// ff:ff:ff:ff:ff:ff; `None` for an address to resolve.
pub fn constructor(dev: &NetDevice, addr: Ipv4Addr) -> Option<EthernetAddress> {
    if addr.is_multicast() {
        return Some(mc_map(addr));
    }
    if dev.is_loopback() {
        return Some(dev.hw_addr());
    }
    let bcast =
        addr.is_broadcast() || dev.any_addr(|n| n.prefix_len() < 31 && n.broadcast() == addr);
    bcast.then_some(EthernetAddress::BROADCAST)
}

/// The source address for requests about a packet: its IP source when it is
/// ours, else the device's primary address (`arp_solicit`'s choice).
fn probe_source(dev: &NetDevice, pkt: Option<&PacketBuf>) -> Ipv4Addr {
    let from_pkt = pkt.and_then(|p| {
        let h = p.network_header();
        (h.len() >= 20).then(|| Ipv4Addr::new(h[12], h[13], h[14], h[15]))
    });
    match from_pkt {
        Some(a) if dev.any_addr(|n| n.addr() == a) => a,
        _ => dev.primary_addr().unwrap_or(Ipv4Addr::UNSPECIFIED),
    }
}

/// Kernel: `neigh_output()`. Sends `pkt` (data at its IP header) to `nexthop` on
/// an Ethernet device: the cached header when the entry is connected, else
/// through resolution (queued while INCOMPLETE; success is reported, as in
/// the kernel).
pub fn neigh_output(
    stack: &Stack,
    dev: &NetDevice,
    nexthop: Ipv4Addr,
    pkt: PacketBuf,
) -> Result<(), SendError> {
    if !pkt.meta.confirm_neigh {
        if let Some(hh) = stack.neigh.connected_hh(dev.ifindex(), nexthop) {
            return xmit_with(stack, dev, pkt, &hh);
        }
    }
    let now = stack.now();
    let n = stack.neigh.lookup_or_create(dev, nexthop, now);
    if pkt.meta.confirm_neigh {
        n.confirm(now);
    }
    if let Some(hh) = n.connected_hh() {
        return xmit_with(stack, dev, pkt, &hh);
    }
    let saddr = probe_source(dev, Some(&pkt));
    match n.resolve(pkt, now, stack.neigh.parms()) {
        Resolved::Send(p, hh) => xmit_with(stack, dev, p, &hh),
        Resolved::Queued(a) => {
            apply(stack, dev, nexthop, saddr, a);
            Ok(())
        }
    }
}

/// Runs every due neighbour timer (probes, FAILED, REACHABLE → STALE),
/// taken off the table's timer queue: O(expired), not a scan of the table.
pub fn run_timers(stack: &Stack, now: Instant) {
    let parms = stack.neigh.parms();
    for n in stack.neigh.due(now) {
        let a = n.run_timer(now, parms);
        if a.probe.is_none() && a.drop.is_empty() {
            continue;
        }
        if let Some(dev) = stack.device_by_index(n.ifindex) {
            let saddr = probe_source(&dev, None);
            apply(stack, &dev, n.addr, saddr, a);
        }
    }
}

/// Kernel: `arp_rcv()` and `arp_process()`.
pub fn arp_rcv(stack: &Stack, dev: &NetDevice, frame: &[u8]) {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return;
    };
    if eth.ethertype() != EtherType::Arp {
        return;
    }
    let to_us = eth.dst_addr() == dev.hw_addr();
    if !to_us && !eth.dst_addr().is_broadcast() {
        return;
    }
    let Ok(pkt) = ArpPacket::new_checked(eth.payload()) else {
        return;
    };
    let Ok(arp) = ArpRepr::parse(&pkt) else {
        return;
    };
    let (sip, sha, tip) = (
        arp.source_protocol_addr,
        arp.source_hardware_addr,
        arp.target_protocol_addr,
    );
    let now = stack.now();
    let ours = dev.any_addr(|n| n.addr() == tip);
    if arp.operation == ArpOperation::Request && ours {
        let n = stack.neigh.lookup_or_create(dev, sip, now);
        let a = n.update(NudState::Stale, Some(sha), false, now);
        apply(stack, dev, sip, tip, a);
        reply(stack, dev, &arp);
        return;
    }
    if let Some(n) = stack.neigh.lookup(dev.ifindex(), sip) {
        let reachable = arp.operation == ArpOperation::Reply && to_us;
        let state = if reachable {
            NudState::Reachable
        } else {
            NudState::Stale
        };
        let a = n.update(state, Some(sha), false, now);
        apply(stack, dev, sip, probe_source(dev, None), a);
    }
}

/// Answers a request for one of our addresses (`arp_send(ARPOP_REPLY, ...)`).
fn reply(stack: &Stack, dev: &NetDevice, req: &ArpRepr) {
    let repr = ArpRepr {
        operation: ArpOperation::Reply,
        source_hardware_addr: dev.hw_addr(),
        source_protocol_addr: req.target_protocol_addr,
        target_hardware_addr: req.source_hardware_addr,
        target_protocol_addr: req.source_protocol_addr,
    };
    arp_send(stack, dev, req.source_hardware_addr, &repr);
}
