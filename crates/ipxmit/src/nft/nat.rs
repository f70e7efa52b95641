//! The hooks of a ruleset that tracks connections: conntrack at LOCAL_OUT
//! (priority -200), the NAT hooks (-100 at LOCAL_OUT for `dnat`, 100 at
//! POST_ROUTING for `snat` and `masquerade`) and the confirmation at the
//! end of POST_ROUTING, around the ruleset's other base chains in priority
//! order; and the rewrite of a datagram by its flow's binding.
//!
//! Stands for the kernel's `nf_conntrack_proto.c` (`ipv4_conntrack_local`,
//! `ipv4_confirm`), `nf_nat_proto.c` (`nf_nat_ipv4_local_fn`,
//! `nf_nat_ipv4_out`, `nf_nat_ipv4_manip_pkt`, `udp_manip_pkt`,
//! `icmp_manip_pkt`), `nf_nat_core.c` (`nf_nat_inet_fn`: the `nat` chains
//! run, in their priority order, on a flow's first packet until one binds;
//! else a null binding) and `nf_nat_masquerade.c`.

use crate::buf::PacketBuf;
use crate::dev::NetDevice;
use crate::netfilter::{HookPoint, Verdict};
use crate::wire::checksum::replace_u16;

use super::conntrack::{CtInfo, Manip, NatBinding, NatRange};
use super::rule::{Nat, NatKind};
use super::NftHook;

/// `NF_IP_PRI_CONNTRACK`.
pub const PRI_CONNTRACK: i32 = -200;
/// `NF_IP_PRI_NAT_DST`.
pub const PRI_NAT_DST: i32 = -100;
/// `NF_IP_PRI_NAT_SRC`.
pub const PRI_NAT_SRC: i32 = 100;

/// The hook of a ruleset that needs conntrack (registered instead of the
/// plain [`NftHook`], whose path stays as it is).
#[derive(Debug)]
pub struct NftCtHook(pub NftHook);

impl crate::netfilter::Hook for NftCtHook {
    #[inline]
    fn hook(&self, point: HookPoint, pkt: &mut PacketBuf, out: &NetDevice) -> Verdict {
        self.0.hook_ct(point, pkt, out)
    }
}

impl NftHook {
    /// The hook of a ruleset that needs conntrack. A drop frees the
    /// packet's unconfirmed flow (`nf_conntrack_put`).
    pub(super) fn hook_ct(
        &self,
        point: HookPoint,
        pkt: &mut PacketBuf,
        out: &NetDevice,
    ) -> Verdict {
        let v = match point {
            HookPoint::LocalOut => self.local_out_ct(pkt, out),
            HookPoint::PostRouting => self.post_routing_ct(pkt, out),
            // Egress is [`super::NftEgressHook`]'s.
            HookPoint::Egress => Verdict::Accept,
        };
        if v.is_drop() {
            if let Some(r) = pkt.meta.nfct.filter(|r| r.fresh) {
                self.ct.release(r);
            }
        }
        v
    }

    /// LOCAL_OUT: chains before conntrack, conntrack, chains before the NAT
    /// hook, the destination NAT, the rest.
    fn local_out_ct(&self, pkt: &mut PacketBuf, out: &NetDevice) -> Verdict {
        let prog = &*self.prog;
        let bases = &prog.bases[0];
        let at = |p: i32| bases.partition_point(|&c| prog.chains[c as usize].priority < p);
        let (a, b) = (at(PRI_CONNTRACK), at(PRI_NAT_DST));
        pkt.meta.nfct = None;
        let v = self.chains(&bases[..a], pkt, out);
        if v.is_drop() {
            return v;
        }
        match self.ct.track_out(pkt.network_header(), self.now()) {
            Ok(r) => pkt.meta.nfct = r,
            Err(_) => return Verdict::Drop,
        }
        let v = self.chains(&bases[a..b], pkt, out);
        if v.is_drop() {
            return v;
        }
        let v = self.nat_hook(Manip::Dst, pkt, out);
        if v.is_drop() {
            return v;
        }
        self.chains(&bases[b..], pkt, out)
    }

    /// POST_ROUTING: chains before the NAT hook, the source NAT, the rest,
    /// then the confirmation of a new flow.
    fn post_routing_ct(&self, pkt: &mut PacketBuf, out: &NetDevice) -> Verdict {
        let prog = &*self.prog;
        let bases = &prog.bases[1];
        let b = bases.partition_point(|&c| prog.chains[c as usize].priority < PRI_NAT_SRC);
        if self.chains(&bases[..b], pkt, out).is_drop()
            || self.nat_hook(Manip::Src, pkt, out).is_drop()
            || self.chains(&bases[b..], pkt, out).is_drop()
        {
            // No route chain or destination NAT here: no errno.
            return Verdict::Drop;
        }
        match pkt.meta.nfct {
            Some(r) if r.fresh && !self.ct.confirm(r, self.now()) => {
                pkt.meta.nfct = None;
                Verdict::Drop
            }
            _ => Verdict::Accept,
        }
    }

    /// Kernel: `nf_nat_inet_fn()` and `nf_nat_packet()`: a new flow without
    /// a binding of `m` runs the `nat` chains of this hook (the first NAT
    /// statement binds; none: a null binding); then the packet is
    /// rewritten by the binding. A changed destination reroutes
    /// (`nf_nat_ipv4_local_fn`).
    fn nat_hook(&self, m: Manip, pkt: &mut PacketBuf, out: &NetDevice) -> Verdict {
        let prog = &*self.prog;
        let Some(r) = pkt.meta.nfct else {
            return Verdict::Accept;
        };
        if prog.nat.iter().all(|n| n.is_empty()) {
            return Verdict::Accept;
        }
        let bound = match r.bound[m.index()] {
            NatBinding::Unbound => self.ct.nat_lookup(r, m),
            b => b,
        };
        let target = match bound {
            NatBinding::Bound(t) => t,
            NatBinding::Unbound if matches!(r.info, CtInfo::New | CtInfo::Related) => {
                let range = match self.run_nat_chains(m, pkt, out) {
                    Ok(range) => range,
                    Err(()) => return Verdict::Drop,
                };
                self.ct.setup_nat(r, m, range, self.now());
                self.ct.nat_target(r, m)
            }
            NatBinding::Unbound => None,
        };
        let Some((addr, port)) = target else {
            return Verdict::Accept;
        };
        let daddr_before = daddr(pkt);
        manip(pkt, m, addr, port);
        if m == Manip::Dst && daddr(pkt) != daddr_before {
            if let Err(e) = self.reroute(pkt) {
                return Verdict::DropErr(e);
            }
        }
        Verdict::Accept
    }

    /// The `nat` chains of `m`'s hook in priority order, until a rule
    /// binds: its range (`masquerade`: the output device's address;
    /// `Err`: it has none, or a chain dropped).
    #[inline(never)]
    fn run_nat_chains(
        &self,
        m: Manip,
        pkt: &mut PacketBuf,
        out: &NetDevice,
    ) -> Result<NatRange, ()> {
        let prog = &*self.prog;
        let chains = &prog.nat[usize::from(m == Manip::Src)];
        for &c in chains {
            let (v, nat) = self.base_chain(c, pkt, out);
            if v == Verdict::Drop {
                return Err(());
            }
            if let Some(n) = nat {
                return range_of(n, out);
            }
        }
        Ok(NatRange::default())
    }
}

/// The range of a NAT statement: `masquerade` takes the output device's
/// primary address (`inet_select_addr`); none is a drop ("ate my IP
/// address"); `redirect` the loopback address.
fn range_of(n: Nat, out: &NetDevice) -> Result<NatRange, ()> {
    let addr = match n.kind {
        NatKind::Masquerade => {
            let a = u32::from(out.primary_addr().ok_or(())?);
            Some((a, a))
        }
        // nf_nat_redirect_ipv4(): at LOCAL_OUT the new destination is
        // 127.0.0.1.
        NatKind::Redirect => {
            let a = u32::from(std::net::Ipv4Addr::LOCALHOST);
            Some((a, a))
        }
        NatKind::Snat | NatKind::Dnat => n.addr,
    };
    Ok(NatRange {
        addr,
        ports: n.ports,
        random: n.flags & (super::NAT_RANDOM | super::NAT_FULLY_RANDOM) != 0,
        persistent: n.flags & super::NAT_PERSISTENT != 0,
    })
}

fn daddr(pkt: &PacketBuf) -> u32 {
    let h = pkt.network_header();
    h.get(16..20)
        .map_or(0, |a| u32::from_be_bytes([a[0], a[1], a[2], a[3]]))
}

/// Kernel: `nf_nat_ipv4_manip_pkt()` with `udp_manip_pkt()` or
/// `icmp_manip_pkt()`: `m`'s address and port (ICMP: the id) become
/// `addr`/`port`, the IP checksum and the transport's updated
/// incrementally (`csum_replace4`, `inet_proto_csum_replace4/2`): a UDP
/// checksum of 0 stays 0 and a computed 0 is sent as `0xffff`
/// (`CSUM_MANGLED_0`); one the device completes (`CHECKSUM_PARTIAL`)
/// changes by the pseudo-header's address only. A later fragment has no
/// transport header: only its address changes.
pub fn manip(pkt: &mut PacketBuf, m: Manip, addr: u32, port: u16) {
    let partial = matches!(pkt.meta.ip_summed, crate::buf::CsumState::Partial { .. });
    manip_header(pkt.network_header_mut(), m, addr, port, partial);
}

/// [`manip`] on the bytes of a datagram from its IP header on (`partial`:
/// the UDP checksum is the device's to complete).
pub(crate) fn manip_header(h: &mut [u8], m: Manip, addr: u32, port: u16, partial: bool) {
    let Some(old_a) = manip_addr(h, m, addr) else {
        return;
    };
    let (ihl, proto) = (usize::from(h[0] & 0xf) * 4, h[9]);
    let first = u16::from_be_bytes([h[6], h[7]]) & 0x1fff == 0;
    let Some(t) = h.get_mut(ihl..ihl + 8).filter(|_| first && ihl >= 20) else {
        return;
    };
    match proto {
        17 => udp_manip(t, m, (old_a, addr), port, partial),
        1 => icmp_id(t, port),
        _ => {}
    }
}

/// Kernel: `nf_nat_ipv4_manip_pkt()`'s address part: `m`'s address of
/// the IPv4 header `h` becomes `addr`, its checksum updated; the address
/// it had (`None`: no header).
pub(crate) fn manip_addr(h: &mut [u8], m: Manip, addr: u32) -> Option<u32> {
    if h.len() < 20 {
        return None;
    }
    let ao = if m == Manip::Src { 12 } else { 16 };
    let old_a = u32::from_be_bytes([h[ao], h[ao + 1], h[ao + 2], h[ao + 3]]);
    if old_a != addr {
        h[ao..ao + 4].copy_from_slice(&addr.to_be_bytes());
        let c = replace_u32(word(h, 10), old_a, addr);
        h[10..12].copy_from_slice(&c.to_be_bytes());
    }
    Some(old_a)
}

fn word(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// `csum_replace4()`: a 32-bit field changed from `old` to `new`.
fn replace_u32(check: u16, old: u32, new: u32) -> u16 {
    let c = replace_u16(check, (old >> 16) as u16, (new >> 16) as u16);
    replace_u16(c, old as u16, new as u16)
}

/// `__udpv4_manip_pkt()` on the 8-byte UDP header `t`: the port of `m`'s
/// side, and the checksum for it and the address change `a` (old, new).
fn udp_manip(t: &mut [u8], m: Manip, a: (u32, u32), port: u16, partial: bool) {
    let po = if m == Manip::Src { 0 } else { 2 };
    let old_p = word(t, po);
    t[po..po + 2].copy_from_slice(&port.to_be_bytes());
    let check = word(t, 6);
    let next = if partial {
        // The device sums the data: only the pseudo-header's address moves.
        !replace_u32(!check, a.0, a.1)
    } else if check == 0 {
        return;
    } else {
        match replace_u16(replace_u32(check, a.0, a.1), old_p, port) {
            0 => 0xffff,
            v => v,
        }
    };
    t[6..8].copy_from_slice(&next.to_be_bytes());
}

/// `icmp_manip_pkt()` on the first 8 bytes of an ICMP query `t`: its id,
/// the ICMP checksum updated.
fn icmp_id(t: &mut [u8], id: u16) {
    let old = word(t, 4);
    if old == id {
        return;
    }
    t[4..6].copy_from_slice(&id.to_be_bytes());
    let c = replace_u16(word(t, 2), old, id);
    t[2..4].copy_from_slice(&c.to_be_bytes());
}
