//! The compiled form of rules: a small register machine, as the kernel's
//! expressions (`struct nft_expr` with `nft_regs`): loads put a packet field
//! or meta key into a register, comparisons break out of the rule when they
//! fail, statements change the packet or count, and an immediate sets the
//! verdict. Nothing here allocates or looks at a string.

use crate::buf::PacketBuf;
use crate::dev::NetDevice;
use crate::wire::checksum::replace_u16;

/// A register.
pub type Reg = u8;

/// Number of registers (`NFT_REG32_NUM` is 20 of 32 bits; 4 of 64 suffice
/// for the keys taken here: a concatenation has at most two, 64 bits).
pub const NREGS: usize = 4;

/// Where a payload load starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// `NFT_PAYLOAD_NETWORK_HEADER`.
    Network,
    /// `NFT_PAYLOAD_TRANSPORT_HEADER` (not in a later fragment).
    Transport,
}

/// A meta key (`enum nft_meta_keys`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKey {
    /// `NFT_META_LEN`.
    Len,
    /// `NFT_META_MARK`.
    Mark,
    /// `NFT_META_PRIORITY`.
    Priority,
    /// `NFT_META_L4PROTO`.
    L4proto,
    /// `NFT_META_OIF`.
    Oif,
}

/// A conntrack key (`enum nft_ct_keys`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtKey {
    /// `NFT_CT_STATE`.
    State,
    /// `NFT_CT_DIRECTION`.
    Direction,
    /// `NFT_CT_MARK`.
    Mark,
}

/// A comparison (`enum nft_cmp_ops`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `NFT_CMP_EQ`.
    Eq,
    /// `NFT_CMP_NEQ`.
    Ne,
    /// `NFT_CMP_LT`.
    Lt,
    /// `NFT_CMP_LTE`.
    Le,
    /// `NFT_CMP_GT`.
    Gt,
    /// `NFT_CMP_GTE`.
    Ge,
}

/// A verdict as the program holds it (chains by index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// `NF_ACCEPT`.
    Accept,
    /// `NF_DROP`.
    Drop,
    /// `NFT_CONTINUE`.
    Continue,
    /// `NFT_RETURN`.
    Return,
    /// `NFT_JUMP` to a chain.
    Jump(u32),
    /// `NFT_GOTO` to a chain.
    Goto(u32),
}

/// One instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insn {
    /// Kernel: `nft_payload_eval()`: `len` bytes at `off`, big-endian.
    Payload {
        /// Header.
        base: Base,
        /// Offset in it.
        off: u8,
        /// Bytes (1, 2 or 4).
        len: u8,
        /// Destination.
        dreg: Reg,
    },
    /// A payload load and its comparison fused (the kernel's
    /// `nft_cmp_fast` after `nft_payload_fast`): breaks unless `len`
    /// bytes at `off` compare `op` with `data`.
    PayloadCmp {
        /// Header.
        base: Base,
        /// Offset in it.
        off: u8,
        /// Bytes (1, 2 or 4).
        len: u8,
        /// Operator.
        op: CmpOp,
        /// Value.
        data: u64,
    },
    /// A rule's test of a header field, fused from its load, a mask and
    /// the comparison, with the `meta l4proto` dependency before it (the
    /// kernel's `nft_payload_fast` + `nft_bitwise_fast` + `nft_cmp_fast`):
    /// breaks unless the packet's protocol is `proto` (when given) and
    /// `(field & mask) op data`, the field the bytes `at..end` of
    /// [`PktInfo`]'s header copy (the network header at 0, the transport
    /// header at 20), none of them beyond the packet.
    Test {
        /// The first byte.
        at: u8,
        /// After the last byte (1, 2 or 4 after `at`).
        end: u8,
        /// The protocol the packet must have (`meta l4proto`).
        proto: Option<u8>,
        /// Operator.
        op: CmpOp,
        /// The bits compared.
        mask: u32,
        /// Value.
        data: u32,
    },
    /// Kernel: none (the kernel walks every rule). The start of a run of
    /// guarded rules, block `.0` of the program
    /// ([`super::compile::Block`]): goes on at the first rule whose guard
    /// holds, or after the run.
    Block(u16),
    /// A meta key and its comparison, fused: breaks unless `key op data`.
    MetaCmp {
        /// Key.
        key: MetaKey,
        /// Operator.
        op: CmpOp,
        /// Value.
        data: u64,
    },
    /// `meta l4proto` compared equal with a protocol, fused (the
    /// dependency nft puts before a transport field).
    L4protoIs(u8),
    /// `meta protocol` (`skb->protocol`, an EtherType) compared equal,
    /// fused: the dependency nft puts before a network header field in a
    /// netdev table.
    ProtocolIs(u16),
    /// Kernel: `nft_meta_get_eval()`.
    Meta {
        /// Key.
        key: MetaKey,
        /// Destination.
        dreg: Reg,
    },
    /// Kernel: `nft_bitwise_eval()`: `(reg & mask) >> shr`.
    Bitwise {
        /// Register.
        reg: Reg,
        /// Mask.
        mask: u64,
        /// Right shift after the mask.
        shr: u8,
    },
    /// Kernel: `nft_bitwise_eval()`'s boolean form: `(reg & mask) ^ xor`.
    MaskXor {
        /// Register.
        reg: Reg,
        /// Mask.
        mask: u64,
        /// Xor after the mask.
        xor: u64,
    },
    /// Concatenation: `dreg = dreg << shl | sreg` (the kernel lays
    /// concatenated keys in consecutive registers).
    Concat {
        /// Destination (the first key).
        dreg: Reg,
        /// The second key.
        sreg: Reg,
        /// Width of the second key.
        shl: u8,
    },
    /// Kernel: `nft_cmp_eval()`.
    Cmp {
        /// Register.
        reg: Reg,
        /// Operator.
        op: CmpOp,
        /// Value.
        data: u64,
    },
    /// Kernel: `nft_range_eval()`.
    Range {
        /// Register.
        reg: Reg,
        /// First value.
        lo: u64,
        /// Last value.
        hi: u64,
        /// `!=`.
        neg: bool,
    },
    /// Kernel: `nft_lookup_eval()`: in set `set` of the program.
    Lookup {
        /// Register.
        reg: Reg,
        /// Set index.
        set: u16,
        /// `!=`.
        neg: bool,
    },
    /// Kernel: `nft_lookup_eval()` with a destination register: the value
    /// of `reg`'s element of map `map` into `reg`; none: break.
    MapLoad {
        /// Key, then value.
        reg: Reg,
        /// Map index.
        map: u16,
    },
    /// A verdict map: the verdict of `reg`'s element of map `map` (none:
    /// break; `continue`: the rule goes on).
    Vmap {
        /// Key.
        reg: Reg,
        /// Map index.
        map: u16,
    },
    /// Kernel: `nft_meta_set_eval()` of `NFT_META_MARK` from a register.
    MarkSetReg {
        /// Register.
        reg: Reg,
    },
    /// `oifname` or `iifname` compared with a name (`meta oifname` loads
    /// 16 bytes).
    CmpIfname {
        /// Name, NUL padded.
        name: [u8; 16],
        /// `!=`.
        neg: bool,
        /// `iifname`: the input device's name, empty on the output path
        /// (`nft_meta_store_ifname()` of no device).
        iif: bool,
    },
    /// `oifname { ... }` (`iifname`): the device's name looked up in the
    /// program's name set `set` ([`super::compile::IfnameSet`]).
    LookupIfname {
        /// Name set index.
        set: u16,
        /// `!=`.
        neg: bool,
        /// `iifname`: the input device's name, empty on the output path.
        iif: bool,
    },
    /// Kernel: `nft_counter_eval()`: counter `idx` of the program.
    Counter {
        /// Counter index.
        idx: u16,
    },
    /// Kernel: `nft_meta_set_eval()`, `NFT_META_MARK`.
    MarkSet(u32),
    /// Kernel: `nft_meta_set_eval()`, `NFT_META_PRIORITY`.
    PrioritySet(u32),
    /// Kernel: `nft_payload_set_eval()` of the TOS byte's DSCP bits, the
    /// header checksum updated (`csum_replace2`).
    DscpSet(u8),
    /// Kernel: `nft_payload_set_eval()` of the TTL, checksum updated.
    TtlSet(u8),
    /// Kernel: `nft_payload_set_eval()` of a field: the bits `mask << shl`
    /// of the `len` bytes at `off` become `value`; then the checksums
    /// (`nft_payload_csum_inet`, `nft_payload_l4csum_update`).
    FieldSet {
        /// Header.
        base: Base,
        /// Offset in it.
        off: u8,
        /// Bytes (1, 2 or 4).
        len: u8,
        /// For one byte: the bits written (else `0xff`).
        mask: u8,
        /// The value (shifted into `mask` for one byte).
        value: u32,
        /// The IP header checksum covers the field.
        l3: bool,
        /// The UDP checksum covers it (`pseudo`: through the pseudo-header,
        /// so also when the checksum is left to the device).
        l4: bool,
        /// The field is in the UDP pseudo-header (an address).
        pseudo: bool,
    },
    /// Kernel: `nft_ct_get_eval()`.
    Ct {
        /// Key.
        key: CtKey,
        /// Destination.
        dreg: Reg,
    },
    /// Kernel: `nft_nat_eval()`, `nft_masq_eval()`: the binding the flow
    /// gets ([`PktInfo::nat`]); an accept follows it.
    Nat(super::rule::Nat),
    /// Kernel: `nft_nat_eval()` after a map lookup: the statement `nat`
    /// with the range of `reg`'s element of map `map` (none: break);
    /// `netmap`: `nft_nat_setup_netmap()`. An accept follows it.
    NatMap {
        /// Key.
        reg: Reg,
        /// Map index.
        map: u16,
        /// The statement (its own range unused).
        nat: super::rule::Nat,
        /// `NF_NAT_RANGE_NETMAP`.
        netmap: bool,
    },
    /// Kernel: `nft_limit_pkts_eval()`, `nft_limit_bytes_eval()`: limit
    /// `idx` of the program; breaks when the rate says no.
    Limit {
        /// Limit index.
        idx: u16,
    },
    /// Kernel: `nft_log_eval()`: log `idx` of the program
    /// ([`super::log::log_packet`]).
    Log {
        /// Log index.
        idx: u16,
    },
    /// Kernel: `nft_reject_ipv4_eval()`: the ICMP destination unreachable
    /// of this code the hook sends the host ([`PktInfo::reject`]); a drop
    /// follows it.
    Reject(u8),
    /// Kernel: `nft_dynset_eval()`: the key in `reg` into the set of
    /// [`super::compile::Program::dynsets`]`[idx]`; a full set stops the
    /// rule (`NFT_BREAK`).
    Dynset {
        /// The key.
        reg: Reg,
        /// The update.
        idx: u16,
    },
    /// Kernel: `nft_immediate_eval()` of a verdict.
    Verdict(Code),
    /// The end of a rule whose statements all ran: `NFT_CONTINUE` with
    /// the next rule (the kernel's `nft_rule_dp` `is_last` walk moves to
    /// the next rule blob).
    RuleEnd,
    /// The end of a chain (`NFT_RETURN`, as the kernel's jump back at a
    /// chain's last rule).
    ChainEnd,
}

/// What an instruction decided.
pub enum Step {
    /// Go on with the rule.
    Next,
    /// `NFT_BREAK`: the rule does not match.
    Break,
}

/// Where the expressions read the stack's time ([`PktInfo::clock`]): a
/// hook (one pointer to set per packet), or a clock and the address of
/// the stack that owns it (for its frozen time).
pub trait NftClock {
    /// The time now, in ns.
    fn now_ns(&self) -> u64;
}

impl NftClock for (&dyn crate::time::Clock, usize) {
    fn now_ns(&self) -> u64 {
        crate::stack::now_of(self.1, self.0).as_nanos()
    }
}

/// Bytes of each header [`PktInfo`] keeps a copy of: the IPv4 header
/// without options, and as much of the transport header (every field a
/// key names lies within them).
const HDR: usize = 20;

/// The packet as the expressions see it (`struct nft_pktinfo`): the
/// transport offset and protocol read once (`nft_set_pktinfo_ipv4`), and
/// a copy of the first `HDR` bytes of the network and of the transport
/// header, so a payload load reads a fixed array, not the buffer; a
/// statement that writes the header refreshes it.
pub struct PktInfo<'a> {
    /// The packet; its data starts at the IP header.
    pub pkt: &'a mut PacketBuf,
    /// The output device.
    pub out: &'a NetDevice,
    /// The NAT statement a `nat` chain's rule ended with.
    pub nat: Option<super::rule::Nat>,
    /// The code of the ICMP destination unreachable a `reject` asked for
    /// (sent by the hook after the drop, `nf_send_unreach`).
    pub reject: Option<u8>,
    /// A dry run ([`super::Nft::would_match`]'s evaluation): no
    /// counter, limit, log or reject has an effect, and each rule that
    /// matched is noted in `matched`.
    pub dry: bool,
    /// The rules that matched in a dry run: (chain, rule) of the program.
    pub matched: Option<&'a mut Vec<(u32, u32)>>,
    /// The stack's time, for `limit` and set timeouts.
    pub clock: Option<&'a dyn NftClock>,
    /// The transport header's offset ([`PktInfo::thoff`]).
    th: Option<usize>,
    /// The IP protocol ([`PktInfo::l4proto`]).
    proto: u8,
    /// The network header's first `HDR` bytes, then the transport
    /// header's.
    hdr: [u8; 2 * HDR + 4],
    /// How many of each are the packet's (the rest: beyond its data, or
    /// no transport header).
    have: [u8; 2],
    /// An IPv4 packet (at egress, `skb->protocol` says so).
    ip: bool,
}

impl<'a> PktInfo<'a> {
    /// Kernel: `nft_set_pktinfo_ipv4()`: the transport offset and the
    /// protocol read once.
    #[inline]
    pub fn new(pkt: &'a mut PacketBuf, out: &'a NetDevice) -> PktInfo<'a> {
        PktInfo::with(pkt, out, true)
    }

    /// Kernel: `nft_do_chain_netdev()`'s packet info for a frame at
    /// egress: an IPv4 one's (`nft_set_pktinfo_ipv4_validate`), else none
    /// (`nft_set_pktinfo_unspec`: no transport header, `l4proto` 0).
    #[inline]
    pub fn netdev(pkt: &'a mut PacketBuf, out: &'a NetDevice) -> PktInfo<'a> {
        let ip = pkt.meta.protocol == 0x0800;
        PktInfo::with(pkt, out, ip)
    }

    #[inline]
    fn with(pkt: &'a mut PacketBuf, out: &'a NetDevice, ip: bool) -> PktInfo<'a> {
        let mut hdr = [0; 2 * HDR + 4];
        let (th, proto, have) = read_header(pkt.network_header(), ip, &mut hdr);
        PktInfo {
            pkt,
            out,
            nat: None,
            reject: None,
            dry: false,
            matched: None,
            clock: None,
            th,
            proto,
            hdr,
            have,
            ip,
        }
    }

    /// After a statement wrote the header: read it again.
    fn reread_header(&mut self) {
        (self.th, self.proto, self.have) =
            read_header(self.pkt.network_header(), self.ip, &mut self.hdr);
    }

    /// Kernel: `nft_payload_eval()`'s load: `len` bytes at `off` of the
    /// network or transport header, big-endian; `None` beyond the
    /// packet's data or without a transport header (a later fragment).
    #[inline]
    pub fn load(&self, base: Base, off: u8, len: u8) -> Option<u64> {
        let (at, have) = match base {
            Base::Network => (0, self.have[0]),
            Base::Transport => (HDR, self.have[1]),
        };
        let (off, len) = (usize::from(off), usize::from(len));
        if off + len > HDR {
            return self.load_far(base, off, len);
        }
        if off + len > usize::from(have) {
            return None;
        }
        let b = &self.hdr[at + off..];
        Some(match len {
            1 => u64::from(b[0]),
            2 => u64::from(u16::from_be_bytes([b[0], b[1]])),
            4 => u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            _ => load_be(b, 0, len)?,
        })
    }

    /// [`Insn::Test`]'s field: bytes `at..end` of the header copy, masked;
    /// `None` when the packet's protocol is not `proto` or the bytes are
    /// not the packet's.
    #[inline(always)]
    fn test(&self, at: u8, end: u8, proto: Option<u8>, mask: u32) -> Option<u32> {
        if proto.is_some_and(|x| x != self.proto) {
            return None;
        }
        let (at, end) = (usize::from(at), usize::from(end));
        let have = match at < HDR {
            true => usize::from(self.have[0]),
            false => HDR + usize::from(self.have[1]),
        };
        let w = self.hdr.get(at..at + 4)?;
        let w = u32::from_be_bytes([w[0], w[1], w[2], w[3]]);
        let shift = 8 * (4 - (end - at).min(4)) as u32;
        (end <= have).then_some((w >> shift) & mask)
    }

    /// [`PktInfo::load`] of bytes beyond the copies, from the buffer.
    #[cold]
    fn load_far(&self, base: Base, off: usize, len: usize) -> Option<u64> {
        let start = match base {
            Base::Network => 0,
            Base::Transport => self.th?,
        };
        load_be(self.pkt.network_header(), start + off, len)
    }

    /// The stack's time in ns (0 without a clock).
    #[inline]
    pub fn now(&self) -> u64 {
        self.clock.map_or(0, |c| c.now_ns())
    }

    /// The transport header's offset: `None` in a later fragment or a
    /// short packet (`pkt->fragoff`, `ip_hdrlen`).
    #[inline]
    pub fn thoff(&self) -> Option<usize> {
        self.th
    }

    /// The IP protocol (`pkt->tprot`), known in every fragment.
    #[inline]
    pub fn l4proto(&self) -> u8 {
        self.proto
    }
}

/// Reads the IP header `h`'s transport offset and protocol, and copies
/// the headers into `hdr` ([`PktInfo`]'s fields `th`, `proto`, `hdr`,
/// `have`); `ip`: an IPv4 packet, else no transport header and protocol
/// 0 (the network header's bytes are copied either way, as a netdev
/// table's loads read them).
#[inline(always)]
fn read_header(h: &[u8], ip: bool, hdr: &mut [u8; 2 * HDR + 4]) -> (Option<usize>, u8, [u8; 2]) {
    // The common case at once: no options, not a later fragment, and
    // both copies whole.
    if let (true, Some(b)) = (ip, h.first_chunk::<{ 2 * HDR }>()) {
        if b[0] & 0xf == 5 && (b[6] & 0x1f) | b[7] == 0 {
            if let Some(to) = hdr.first_chunk_mut::<{ 2 * HDR }>() {
                *to = *b;
            }
            return (Some(HDR), b[9], [HDR as u8; 2]);
        }
    }
    let (th, proto) = if ip { pktinfo(h) } else { (None, 0) };
    let (net, tr) = hdr.split_at_mut(HDR);
    let have0 = copy_head(net, h);
    let have1 = match th.and_then(|t| h.get(t..)) {
        Some(t) => copy_head(tr, t),
        None => 0,
    };
    (th, proto, [have0, have1])
}

/// Copies the first bytes of `from` (at most `to.len()`) into `to`; how
/// many.
#[inline]
fn copy_head(to: &mut [u8], from: &[u8]) -> u8 {
    match (to.first_chunk_mut::<HDR>(), from.first_chunk::<HDR>()) {
        (Some(t), Some(f)) => *t = *f,
        _ => {
            let n = HDR.min(from.len());
            to[..n].copy_from_slice(&from[..n]);
            return n as u8;
        }
    }
    HDR as u8
}

/// The transport offset (none in a later fragment or a short packet) and
/// the protocol of the IP header `h`.
#[inline]
fn pktinfo(h: &[u8]) -> (Option<usize>, u8) {
    let proto = h.get(9).copied().unwrap_or(0);
    let th = (|| {
        let (vihl, f) = (*h.first()?, h.get(6..8)?);
        let ihl = usize::from(vihl & 0xf) * 4;
        let frag_off = u16::from_be_bytes([f[0], f[1]]) & 0x1fff;
        (frag_off == 0 && ihl >= 20 && h.len() >= ihl).then_some(ihl)
    })();
    (th, proto)
}

#[inline]
fn load_be(b: &[u8], off: usize, len: usize) -> Option<u64> {
    let s = b.get(off..off + len)?;
    Some(s.iter().fold(0u64, |a, &x| a << 8 | u64::from(x)))
}

#[inline(always)]
fn cmp32(op: CmpOp, a: u32, b: u32) -> bool {
    cmp(op, u64::from(a), u64::from(b))
}

#[inline(always)]
fn cmp(op: CmpOp, a: u64, b: u64) -> bool {
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    }
}

#[inline]
fn step_if(ok: bool) -> Step {
    if ok {
        Step::Next
    } else {
        Step::Break
    }
}

/// Runs one non-verdict instruction (`expr_call_ops_eval`).
#[inline]
pub fn eval(
    insn: &Insn,
    regs: &mut [u64; NREGS],
    p: &mut PktInfo<'_>,
    prog: &super::compile::Program,
) -> Step {
    match *insn {
        Insn::Payload {
            base,
            off,
            len,
            dreg,
        } => match p.load(base, off, len) {
            Some(v) => regs[usize::from(dreg)] = v,
            None => return Step::Break,
        },
        Insn::PayloadCmp {
            base,
            off,
            len,
            op,
            data,
        } => {
            let v = p.load(base, off, len);
            return step_if(v.is_some_and(|v| cmp(op, v, data)));
        }
        Insn::Test {
            at,
            end,
            proto,
            op,
            mask,
            data,
        } => {
            return step_if(
                p.test(at, end, proto, mask)
                    .is_some_and(|v| cmp32(op, v, data)),
            )
        }
        Insn::MetaCmp { key, op, data } => return step_if(cmp(op, meta(key, p), data)),
        Insn::L4protoIs(proto) => return step_if(p.l4proto() == proto),
        Insn::ProtocolIs(proto) => return step_if(p.pkt.meta.protocol == proto),
        Insn::Meta { key, dreg } => regs[usize::from(dreg)] = meta(key, p),
        Insn::Bitwise { reg, mask, shr } => {
            let r = &mut regs[usize::from(reg)];
            *r = (*r & mask) >> shr;
        }
        Insn::MaskXor { reg, mask, xor } => {
            let r = &mut regs[usize::from(reg)];
            *r = (*r & mask) ^ xor;
        }
        Insn::Concat { dreg, sreg, shl } => {
            regs[usize::from(dreg)] = regs[usize::from(dreg)] << shl | regs[usize::from(sreg)];
        }
        Insn::Cmp { reg, op, data } => return step_if(cmp(op, regs[usize::from(reg)], data)),
        Insn::Range { reg, lo, hi, neg } => {
            let v = regs[usize::from(reg)];
            return step_if((lo <= v && v <= hi) != neg);
        }
        Insn::Lookup { .. }
        | Insn::Dynset { .. }
        | Insn::MapLoad { .. }
        | Insn::NatMap { .. }
        | Insn::LookupIfname { .. }
        | Insn::Log { .. }
        | Insn::Limit { .. } => return eval_tables(insn, regs, p, prog),
        Insn::MarkSetReg { reg } => p.pkt.meta.mark = regs[usize::from(reg)] as u32,
        Insn::CmpIfname { name, neg, iif } => {
            let dev = if iif { "" } else { p.out.name() };
            return step_if(ifname_eq(dev, &name) != neg);
        }
        Insn::Counter { idx } if !p.dry => prog.counters[usize::from(idx)].add(p.pkt.len()),
        Insn::Counter { .. } => {}
        Insn::MarkSet(m) => p.pkt.meta.mark = m,
        Insn::PrioritySet(v) => p.pkt.meta.priority = v,
        Insn::DscpSet(d) => {
            set_byte(p.pkt, 1, 0x03, d << 2);
            p.reread_header();
        }
        Insn::TtlSet(t) => {
            set_byte(p.pkt, 8, 0x00, t);
            p.reread_header();
        }
        Insn::FieldSet { .. } => return field_set(insn, p),
        Insn::Ct { key, dreg } => {
            let ct = p.pkt.meta.nfct;
            regs[usize::from(dreg)] = match (key, ct) {
                (CtKey::State, Some(c)) => u64::from(c.info.state_bit()),
                (CtKey::State, None) => 1,
                (CtKey::Direction, Some(c)) => c.info.dir() as u64,
                (CtKey::Mark, Some(c)) => u64::from(c.mark),
                (CtKey::Direction | CtKey::Mark, None) => return Step::Break,
            };
        }
        Insn::Nat(n) => p.nat = Some(n),
        Insn::Reject(code) => p.reject = Some(code),
        Insn::Verdict(_) | Insn::Vmap { .. } | Insn::RuleEnd | Insn::ChainEnd => {}
        Insn::Block(_) => {}
    }
    Step::Next
}

/// The instructions of [`eval`] that look in the program's tables (sets,
/// maps, device name sets, logs, limits, set updates): out of line, so a
/// chain's walk does not load every table before its first instruction.
#[inline(never)]
fn eval_tables(
    insn: &Insn,
    regs: &mut [u64; NREGS],
    p: &mut PktInfo<'_>,
    prog: &super::compile::Program,
) -> Step {
    match *insn {
        Insn::Lookup { reg, set, neg } => {
            let v = regs[usize::from(reg)];
            let found = prog.sets[usize::from(set)].contains_at(v, || p.now());
            step_if(found != neg)
        }
        Insn::Dynset { .. } if p.dry => Step::Next,
        Insn::Dynset { reg, idx } => {
            let d = &prog.dynsets[usize::from(idx)];
            step_if(d.eval(prog, regs[usize::from(reg)], p.now()))
        }
        Insn::MapLoad { reg, map } => match prog.maps[usize::from(map)].get(regs[usize::from(reg)])
        {
            Some(super::compile::MapOut::Num(v)) => {
                regs[usize::from(reg)] = v;
                Step::Next
            }
            _ => Step::Break,
        },
        Insn::NatMap {
            reg,
            map,
            nat,
            netmap,
        } => match prog.maps[usize::from(map)].get(regs[usize::from(reg)]) {
            Some(super::compile::MapOut::Nat(to)) => {
                p.nat = Some(nat_of(nat, to, netmap, p));
                Step::Next
            }
            _ => Step::Break,
        },
        Insn::LookupIfname { set, neg, iif } => {
            let dev = if iif { "" } else { p.out.name() };
            step_if(prog.ifnames[usize::from(set)].contains(dev) != neg)
        }
        Insn::Log { idx } => {
            if !p.dry {
                super::log::log_packet(&prog.logs[usize::from(idx)], p.pkt, p.out);
            }
            Step::Next
        }
        Insn::Limit { idx } => {
            let now = p.now();
            let l = &prog.limits[usize::from(idx)];
            step_if(l.eval(p.pkt.len(), now, p.dry))
        }
        _ => Step::Next,
    }
}

/// [`Insn::Block`] `b`: where the walk goes on, the first rule of the
/// block whose guard holds for the packet (at most one lookup per field
/// the guards test), or the end of the block.
#[inline]
pub fn block_entry(b: &super::compile::Block, p: &PktInfo<'_>) -> u32 {
    use super::compile::GuardKey;
    let mut rules = 0u64;
    for (key, values) in &b.keys {
        let v = match *key {
            GuardKey::Header(at, end, proto, mask) => p.test(at, end, proto, mask),
            GuardKey::Meta(k) => u32::try_from(meta(k, p)).ok(),
        };
        if let Some(i) = v.and_then(|v| values.binary_search_by_key(&v, |e| e.0).ok()) {
            rules |= values[i].1;
        }
    }
    match rules {
        0 => b.end,
        r => b.starts[r.trailing_zeros() as usize],
    }
}

/// [`Insn::FieldSet`]: writes the field, then updates each checksum that
/// covers it word by word (`csum_replace2`); a UDP checksum of 0 (none)
/// stays 0, a computed 0 is sent as `0xffff` (`CSUM_MANGLED_0`), and a
/// checksum left to the device (`CHECKSUM_PARTIAL`) changes only for
/// pseudo-header fields. A transport field in a later fragment breaks.
fn field_set(insn: &Insn, p: &mut PktInfo<'_>) -> Step {
    let Insn::FieldSet {
        base,
        off,
        len,
        mask,
        value,
        l3,
        l4,
        pseudo,
    } = *insn
    else {
        return Step::Next;
    };
    let thoff = p.thoff();
    let start = match (base, thoff) {
        (Base::Network, _) => 0,
        (Base::Transport, Some(t)) => t,
        (Base::Transport, None) => return Step::Break,
    };
    let partial = matches!(p.pkt.meta.ip_summed, crate::buf::CsumState::Partial { .. });
    let udp = p.l4proto() == 17;
    let h = p.pkt.network_header_mut();
    let (at, n) = (start + usize::from(off), usize::from(len));
    if h.len() < 20 || at + n > h.len() {
        return Step::Break;
    }
    let (w0, w1) = (at & !1, (at + n + 1) & !1);
    let mut old = [0u16; 3];
    for (k, i) in (w0..w1).step_by(2).enumerate() {
        old[k] = word(h, i);
    }
    if n == 1 {
        h[at] = (h[at] & !mask) | (value as u8 & mask);
    } else {
        h[at..at + n].copy_from_slice(&value.to_be_bytes()[4 - n..]);
    }
    let ucheck = thoff
        .map(|t| t + 6)
        .filter(|&c| udp && l4 && c + 2 <= h.len());
    fix_sums(h, (w0, w1), &old, l3, ucheck, (partial, pseudo));
    p.reread_header();
    Step::Next
}

/// The NAT statement `nat` with the range `to` a map gave; `netmap`
/// (Kernel: `nft_nat_setup_netmap()`): the packet's address (the source
/// for `snat`, else the destination) keeps the bits where the range's
/// first and last differ and takes the others from the first.
fn nat_of(
    mut nat: super::rule::Nat,
    to: super::rule::NatTo,
    netmap: bool,
    p: &PktInfo<'_>,
) -> super::rule::Nat {
    nat.addr = to.addr;
    nat.ports = to.ports;
    if let (true, Some((lo, hi))) = (netmap, to.addr) {
        let off = if nat.kind == super::rule::NatKind::Snat {
            12
        } else {
            16
        };
        let a = load_be(p.pkt.network_header(), off, 4).unwrap_or(0) as u32;
        let mask = !(lo ^ hi);
        let a = (a & !mask) | (lo & mask);
        nat.addr = Some((a, a));
    }
    nat
}

#[inline]
fn meta(key: MetaKey, p: &PktInfo<'_>) -> u64 {
    match key {
        MetaKey::Len => p.pkt.len() as u64,
        MetaKey::Mark => u64::from(p.pkt.meta.mark),
        MetaKey::Priority => u64::from(p.pkt.meta.priority),
        MetaKey::L4proto => u64::from(p.l4proto()),
        MetaKey::Oif => u64::from(p.out.ifindex()),
    }
}

#[inline]
fn ifname_eq(dev: &str, name: &[u8; 16]) -> bool {
    let d = dev.as_bytes();
    d.len() <= 16 && name[..d.len()] == *d && name[d.len()..].iter().all(|&b| b == 0)
}

/// Writes byte `off` of the IP header as `(old & keep) | new` and updates
/// the header checksum incrementally (`csum_replace2` on its 16-bit word).
fn set_byte(pkt: &mut PacketBuf, off: usize, keep: u8, new: u8) {
    let h = pkt.network_header_mut();
    if h.len() < 20 {
        return;
    }
    let w = off & !1;
    let old_word = u16::from_be_bytes([h[w], h[w + 1]]);
    h[off] = (h[off] & keep) | new;
    let new_word = u16::from_be_bytes([h[w], h[w + 1]]);
    let check = u16::from_be_bytes([h[10], h[11]]);
    let c = replace_u16(check, old_word, new_word);
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

fn word(h: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([h[i], *h.get(i + 1).unwrap_or(&0)])
}

/// The checksum updates of [`field_set`] for the changed words `w0..w1`
/// (their old values in `old`): the IP header's (`l3`), the UDP one at
/// `ucheck`, given whether the device sums it (`partial`) and whether the
/// field is in the pseudo-header.
fn fix_sums(
    h: &mut [u8],
    (w0, w1): (usize, usize),
    old: &[u16; 3],
    l3: bool,
    ucheck: Option<usize>,
    (partial, pseudo): (bool, bool),
) {
    for (k, i) in (w0..w1).step_by(2).enumerate() {
        let new = word(h, i);
        if l3 {
            let c = replace_u16(word(h, 10), old[k], new);
            h[10..12].copy_from_slice(&c.to_be_bytes());
        }
        if let Some(c) = ucheck {
            let check = word(h, c);
            let next = match (partial, pseudo) {
                (true, true) => !replace_u16(!check, old[k], new),
                (true, false) => continue,
                (false, _) if check == 0 => continue,
                (false, _) => match replace_u16(check, old[k], new) {
                    0 => 0xffff,
                    v => v,
                },
            };
            h[c..c + 2].copy_from_slice(&next.to_be_bytes());
        }
    }
}
