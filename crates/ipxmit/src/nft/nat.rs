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
use super::expr::{Base, Insn, PktInfo};
use super::rule::{Nat, NatKind};
use super::{do_chain, NftHook};

/// `NF_IP_PRI_CONNTRACK`.
pub const PRI_CONNTRACK: i32 = -200;
/// `NF_IP_PRI_NAT_DST`.
pub const PRI_NAT_DST: i32 = -100;
/// `NF_IP_PRI_NAT_SRC`.
pub const PRI_NAT_SRC: i32 = 100;

impl NftHook {
    /// The hook of a ruleset that needs conntrack. A drop frees the
    /// packet's unconfirmed flow (`nf_conntrack_put`).
    #[inline(never)]
    pub(super) fn hook_ct(
        &self,
        point: HookPoint,
        pkt: &mut PacketBuf,
        out: &NetDevice,
    ) -> Verdict {
        let v = match point {
            HookPoint::LocalOut => self.local_out_ct(pkt, out),
            HookPoint::PostRouting => self.post_routing_ct(pkt, out),
        };
        if v == Verdict::Drop {
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
        if self.chains(&bases[..a], pkt, out) == Verdict::Drop {
            return Verdict::Drop;
        }
        match self.ct.track_out(pkt.network_header(), self.now()) {
            Ok(r) => pkt.meta.nfct = r,
            Err(_) => return Verdict::Drop,
        }
        if self.chains(&bases[a..b], pkt, out) == Verdict::Drop
            || self.nat_hook(Manip::Dst, pkt, out) == Verdict::Drop
        {
            return Verdict::Drop;
        }
        self.chains(&bases[b..], pkt, out)
    }

    /// POST_ROUTING: chains before the NAT hook, the source NAT, the rest,
    /// then the confirmation of a new flow.
    fn post_routing_ct(&self, pkt: &mut PacketBuf, out: &NetDevice) -> Verdict {
        let prog = &*self.prog;
        let bases = &prog.bases[1];
        let b = bases.partition_point(|&c| prog.chains[c as usize].priority < PRI_NAT_SRC);
        if self.chains(&bases[..b], pkt, out) == Verdict::Drop
            || self.nat_hook(Manip::Src, pkt, out) == Verdict::Drop
            || self.chains(&bases[b..], pkt, out) == Verdict::Drop
        {
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
        let target = match self.ct.nat_lookup(r, m) {
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
        manip(pkt, out, m, addr, port);
        if m == Manip::Dst && daddr(pkt) != daddr_before && !self.reroute(pkt) {
            return Verdict::Drop;
        }
        Verdict::Accept
    }

    /// The `nat` chains of `m`'s hook in priority order, until a rule
    /// binds: its range (`masquerade`: the output device's address;
    /// `Err`: it has none, or a chain dropped).
    fn run_nat_chains(
        &self,
        m: Manip,
        pkt: &mut PacketBuf,
        out: &NetDevice,
    ) -> Result<NatRange, ()> {
        let prog = &*self.prog;
        let chains = &prog.nat[usize::from(m == Manip::Src)];
        for &c in chains {
            let mut p = PktInfo::new(pkt, out);
            let v = do_chain(prog, c, &mut p);
            let nat = p.nat;
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
/// address").
fn range_of(n: Nat, out: &NetDevice) -> Result<NatRange, ()> {
    let addr = match n.kind {
        NatKind::Masquerade => Some(u32::from(out.primary_addr().ok_or(())?)),
        NatKind::Snat | NatKind::Dnat => n.addr,
    };
    Ok(NatRange {
        addr,
        ports: n.ports,
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
/// incrementally (a UDP checksum of 0 stays 0; one the device completes
/// changes by the pseudo-header only).
pub fn manip(pkt: &mut PacketBuf, out: &NetDevice, m: Manip, addr: u32, port: u16) {
    let proto = pkt.network_header().get(9).copied().unwrap_or(0);
    let (aoff, poff) = match m {
        Manip::Src => (12, 0),
        Manip::Dst => (16, 2),
    };
    let mut p = PktInfo::new(pkt, out);
    set(&mut p, Base::Network, aoff, 4, addr, true);
    match proto {
        17 => set(&mut p, Base::Transport, poff, 2, u32::from(port), false),
        1 => icmp_id(&mut p, port),
        _ => {}
    }
}

fn set(p: &mut PktInfo<'_>, base: Base, off: u8, len: u8, value: u32, addr: bool) {
    let start = match base {
        Base::Network => Some(0),
        Base::Transport => p.thoff(),
    };
    let cur = start.and_then(|s| {
        let at = s + usize::from(off);
        let h = p.pkt.network_header();
        h.get(at..at + usize::from(len))
            .map(|b| b.iter().fold(0u32, |a, &x| a << 8 | u32::from(x)))
    });
    if cur.is_none_or(|c| c == value) {
        return;
    }
    let insn = Insn::FieldSet {
        base,
        off,
        len,
        mask: 0xff,
        value,
        l3: base == Base::Network,
        l4: true,
        pseudo: addr,
    };
    super::expr::field_set(&insn, p);
}

/// `icmp_manip_pkt()`: the echo id, the ICMP checksum updated.
fn icmp_id(p: &mut PktInfo<'_>, id: u16) {
    let Some(t) = p.thoff() else {
        return;
    };
    let h = p.pkt.network_header_mut();
    if h.len() < t + 8 {
        return;
    }
    let old = u16::from_be_bytes([h[t + 4], h[t + 5]]);
    if old == id {
        return;
    }
    h[t + 4..t + 6].copy_from_slice(&id.to_be_bytes());
    let c = replace_u16(u16::from_be_bytes([h[t + 2], h[t + 3]]), old, id);
    h[t + 2..t + 4].copy_from_slice(&c.to_be_bytes());
}
