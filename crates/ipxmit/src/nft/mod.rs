//! nftables on the IPv4 output path: tables, chains, rules and sets, and
//! the engine that runs them at the filter hooks.
//!
//! Stands for the kernel's `net/netfilter/nf_tables_api.c` (the objects and
//! the commands that change them, [`Ruleset`]), `nf_tables_core.c`
//! (`nft_do_chain`: the rule walk, jumps and the chain policy,
//! [`do_chain`]), and the expressions it runs ([`expr`]): `nft_payload.c`
//! (loads and mangling with incremental checksum), `nft_meta.c` (meta keys
//! and `meta mark set`), `nft_cmp.c`, `nft_range.c`, `nft_bitwise.c`,
//! `nft_lookup.c` (sets), `nft_counter.c` and `nft_immediate.c` (verdicts),
//! `nft_dynset.c` (`add @set { KEY }` / `update @set { KEY timeout T }`:
//! the packet path adds to a named set, [`dynset`]).
//!
//! Rules are kept as typed statements ([`rule`]) and compiled once per
//! change into a register-machine [`Program`] ([`compile`]); the hooks run
//! that program without string handling or allocation. Base chains of family
//! `ip`, types `filter` and `route`, at `output` (LOCAL_OUT) and `postrouting`
//! (POST_ROUTING), run in priority order; both hooks see each datagram once,
//! whole, before fragmentation (`ipv4::output`). A drop is counted under
//! `NETFILTER_DROP` and fails the send with `EPERM`.
//!
//! Base chains of family `netdev` at `egress` on a device ([`NftEgressHook`],
//! `nft_do_chain_netdev` from `nf_hook_egress`) see each frame the device
//! is given, its link header in place: each fragment, ARP requests too
//! (network header fields carry nft's `meta protocol ip` dependency,
//! transport fields match only in a first fragment); `meta length` and
//! counters count the link header. A drop there is the frame's
//! `NET_XMIT_DROP`: the rest of a fragmented datagram is not made
//! (`IpFragFails`) and the send is `ENOBUFS`, which UDP reports only with
//! `IP_RECVERR` (else it succeeds and counts `UdpSndbufErrors`).
//!
//! A `route` chain that changes the mark, an address or the TOS reroutes
//! the datagram ([`route_me_harder`]): the output path sends it by its new
//! route.
//!
//! A ruleset that matches on `ct` or has a `nat` chain tracks connections
//! ([`conntrack`], [`nat`]): conntrack at LOCAL_OUT priority -200, the
//! `nat` chains on a flow's first packet at the NAT hooks (-100 at output
//! for `dnat`, which reroutes; 100 at postrouting for `snat` and
//! `masquerade`), the confirmation at the end of POST_ROUTING (a tuple
//! clash there drops: `EPERM`).
//!
//! A `reject` drops (`EPERM`) and the host sends itself the ICMP
//! destination unreachable ([`send_unreach`]), which reaches the sending
//! socket through `lo` as any ICMP error does. A `limit` is the kernel's
//! token bucket on the stack's clock ([`Limit`]); `log` is a `tracing`
//! event ([`log`]); sets, maps and verdict maps look up in a hash (single
//! values, O(1)) or by binary search (intervals, O(log n)).
//! [`Nft::would_match`] evaluates without effects (for `ipxmit explain`).
//!
//! A failed reroute fails the send with the lookup's errno
//! ([`Verdict::DropErr`]), counted as a `NETFILTER_DROP` and in
//! `IpOutDiscards`, as the kernel's `NF_DROP_ERR`.
//!
//! Not yet: `devices = { ... }` (one device per egress chain); in set
//! statements, `delete @set` and stateful expressions (`add @s { ip daddr
//! counter }`); `add element ... timeout T`; `gc-interval`;
//! `icmp_send`'s rate limit for `reject`; named maps in NAT statements
//! (anonymous ones, `snat ip [prefix] to KEY map { ... }`, are taken),
//! bitwise `and`/`or`/`xor` in statements, TCP matches. Conntrack knows UDP, ICMP queries and other protocols
//! generically (TCP without its state machine); no RELATED flows (an ICMP
//! error is `invalid`); flows are made on the output path only (a
//! received reply marks its flow replied, it is not translated back); no
//! `ct mark set` (`ct mark` reads a flow's mark, 0) or `ct` timeouts by
//! sysctl.

pub mod compile;
pub mod conntrack;
pub mod dynset;
pub mod expr;
pub mod jhash;
pub mod log;
pub mod nat;
pub mod nat_rcv;
pub mod rule;
pub mod ruleset;

use std::sync::{Arc, Weak};

use crate::buf::PacketBuf;
use crate::dev::NetDevice;
use crate::netfilter::{Hook, HookPoint, Verdict};
use crate::stack::Stack;

pub use compile::{CompileError, Program};
pub use expr::{Code, Insn, PktInfo, Step};
pub use rule::{
    Counter, Elem, Key, Limit, Log, MapElems, MapRef, MapValue, Match, Nat, NatKind, NatMap, NatTo,
    Op, Reject, Rhs, Rule, RuleVerdict, SetUpdate, Stmt, ICMP_CODES, LOG_ALL, LOG_IPOPT,
    LOG_LEVELS, LOG_MACDECODE, LOG_TCPOPT, LOG_TCPSEQ, LOG_UID, NAT_FULLY_RANDOM, NAT_PERSISTENT,
    NAT_RANDOM,
};
pub use ruleset::{
    BaseChain, Chain, ChainHook, ChainType, DataType, Family, MapData, Policy, Position, RuleRef,
    Ruleset, Set, SetOpts, Table,
};

/// Why a command was refused: the kernel's errno, as nft reports it
/// (`Could not process rule: ...`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NftError {
    /// `ENOENT`: no such table, chain, set or rule.
    #[error("No such file or directory")]
    NoEntry,
    /// `EEXIST` (`create` of an existing object).
    #[error("File exists")]
    Exists,
    /// `EBUSY`: a chain with rules or referred to.
    #[error("Device or resource busy")]
    Busy,
    /// `EOPNOTSUPP`: a chain type or hook the family does not have.
    #[error("Operation not supported")]
    NotSupported,
    /// `EINVAL`.
    #[error("Invalid argument")]
    Inval(&'static str),
    /// A set's key type differs from the match's.
    #[error("datatype mismatch")]
    DatatypeMismatch,
    /// `EPROTO`: conntrack in a family it does not serve (`ct` in a
    /// netdev table).
    #[error("Protocol error")]
    Protocol,
    /// A device that does not exist (`oif "x"`).
    #[error("Interface does not exist")]
    NoDevice,
    /// `EOVERFLOW` (a `limit` whose bucket does not fit 64 bits).
    #[error("Value too large for defined data type")]
    Overflow,
    /// A rule the engine cannot run.
    #[error(transparent)]
    Compile(#[from] CompileError),
}

/// Depth of the jump stack (`NFT_JUMP_STACK_SIZE`).
pub const JUMP_STACK: usize = 16;

/// Kernel: `nft_do_chain()`, net/netfilter/nf_tables_core.c. Walks base
/// chain `chain` of `prog` for the packet, as one loop over the program's
/// flat instructions ([`compile::CompiledChain`]): a rule that does not
/// match (`NFT_BREAK`) goes on at the next rule's first instruction; a
/// verdict ends the walk, `jump` pushes the return point (at most
/// [`JUMP_STACK`] deep: deeper drops), `goto` does not, `return` or the end
/// of a chain pops it, and the end of the base chain (or a `return` in it)
/// applies its policy.
#[inline]
pub fn do_chain(prog: &Program, chain: u32, p: &mut PktInfo<'_>) -> Verdict {
    walk(prog, chain, p)
}

/// [`do_chain`]'s walk, inlined into the filter hook's
/// ([`NftHook::base_chain`]): one call and frame less per packet.
#[inline(always)]
fn walk(prog: &Program, chain: u32, p: &mut PktInfo<'_>) -> Verdict {
    let start = |c: u32| prog.chains.get(c as usize).map_or(u32::MAX, |c| c.start);
    let mut regs = [0u64; expr::NREGS];
    let mut stack = [0u32; JUMP_STACK];
    let mut depth = 0;
    let mut pc = start(chain);
    loop {
        let Some(insn) = prog.insns.get(pc as usize) else {
            return Verdict::Drop;
        };
        let code = match *insn {
            Insn::Verdict(v) => matched(prog, p, pc, v),
            Insn::Vmap { reg, map } => match vmap(prog, map, regs[usize::from(reg)]) {
                Some(Code::Continue) => {
                    pc += 1;
                    continue;
                }
                Some(c) => matched(prog, p, pc, c),
                // No element: the rule does not match (NFT_BREAK).
                None => Code::Continue,
            },
            Insn::RuleEnd => matched(prog, p, pc, Code::Continue),
            Insn::Block(b) => {
                pc = block_entry(prog, b, p);
                continue;
            }
            Insn::ChainEnd => Code::Return,
            ref i => match expr::eval(i, &mut regs, p, prog) {
                Step::Next => {
                    pc += 1;
                    continue;
                }
                Step::Break => Code::Continue,
            },
        };
        pc = match code {
            Code::Continue => prog.next[pc as usize],
            Code::Accept => return Verdict::Accept,
            Code::Drop => return Verdict::Drop,
            Code::Return if depth == 0 => return policy(prog.chains[chain as usize].policy),
            Code::Return => {
                depth -= 1;
                stack[depth]
            }
            Code::Jump(_) if depth == JUMP_STACK => return Verdict::Drop,
            Code::Jump(to) => {
                stack[depth] = prog.next[pc as usize];
                depth += 1;
                start(to)
            }
            Code::Goto(to) => start(to),
        };
    }
}

/// [`expr::block_entry`] of the program's block `b` (out of line, as
/// the other table lookups: [`expr::eval`]).
#[inline(never)]
fn block_entry(prog: &Program, b: u16, p: &PktInfo<'_>) -> u32 {
    expr::block_entry(&prog.blocks[usize::from(b)], p)
}

/// Kernel: `nft_lookup_eval()` of a verdict map: the verdict of `v`'s
/// element (or the catch-all's); `None` when there is none.
#[inline(never)]
fn vmap(prog: &Program, map: u16, v: u64) -> Option<Code> {
    match prog.maps[usize::from(map)].get(v) {
        Some(compile::MapOut::Code(c)) => Some(c),
        _ => None,
    }
}

fn policy(p: Policy) -> Verdict {
    match p {
        Policy::Accept => Verdict::Accept,
        Policy::Drop => Verdict::Drop,
    }
}

/// A rule that matched (instruction `pc`, its verdict or its end), with
/// its verdict `c`: noted in a dry run.
#[inline]
fn matched(prog: &Program, p: &mut PktInfo<'_>, pc: u32, c: Code) -> Code {
    if p.dry {
        note(prog, p, pc);
    }
    c
}

/// A dry run's note of the rule instruction `pc` belongs to.
#[cold]
fn note(prog: &Program, p: &mut PktInfo<'_>, pc: u32) {
    if let Some(m) = p.matched.as_deref_mut() {
        m.push(compile::rule_at(prog, pc));
    }
}

/// One generation of the compiled ruleset at one hook point: the base
/// chains there, run in priority order (the kernel registers one
/// `nf_hook_ops` per base chain, sorted by priority). A change makes a new
/// one that replaces it in the hook list ([`crate::netfilter::Hooks::replace`]),
/// so a packet reads its program without a lock.
pub struct NftHook {
    prog: Arc<Program>,
    /// The stack a `route` chain reroutes in.
    stack: Weak<Stack>,
    /// The stack's connection tracking.
    ct: Arc<conntrack::Conntrack>,
    /// The stack's clock, and its address (for its frozen time).
    clock: Arc<dyn crate::time::Clock>,
    owner: usize,
}

impl std::fmt::Debug for NftHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NftHook").field("prog", &self.prog).finish()
    }
}

impl NftHook {
    /// The hook running `prog` (a `route` chain's changes reroute in
    /// `stack`, whose connections it tracks when `prog` needs it).
    pub fn new(prog: Arc<Program>, stack: Weak<Stack>) -> NftHook {
        let st = stack.upgrade();
        let (ct, clock) = match &st {
            Some(s) => (s.conntrack.clone(), s.clock.clone()),
            None => (
                Arc::default(),
                Arc::new(crate::time::MonotonicClock::new()) as Arc<dyn crate::time::Clock>,
            ),
        };
        NftHook {
            prog,
            owner: stack.as_ptr() as usize,
            stack,
            ct,
            clock,
        }
    }

    /// The stack's time now, in ns ([`Stack::now`]).
    #[inline]
    fn now(&self) -> u64 {
        crate::stack::now_of(self.owner, &*self.clock).as_nanos()
    }

    /// [`NftHook::run_chains`] for the conntrack hook's runs of chains
    /// (often none), out of line: the chain walk is inlined once, into
    /// the filter hook.
    #[inline]
    fn chains(&self, chains: &[u32], pkt: &mut PacketBuf, out: &NetDevice) -> Verdict {
        if chains.is_empty() {
            return Verdict::Accept;
        }
        self.chains_outlined(chains, pkt, out)
    }

    #[inline(never)]
    fn chains_outlined(&self, chains: &[u32], pkt: &mut PacketBuf, out: &NetDevice) -> Verdict {
        self.run_chains(chains, pkt, out)
    }

    /// Runs the base chains `chains` in order; a `route` chain that changed
    /// the routing keys reroutes (a failed lookup drops with its errno).
    #[inline(always)]
    fn run_chains(&self, chains: &[u32], pkt: &mut PacketBuf, out: &NetDevice) -> Verdict {
        let prog = &*self.prog;
        for &c in chains {
            let route = prog.chains[c as usize].route;
            let before = route.then(|| RouteKeys::of(pkt));
            if self.base_chain(c, pkt, out).0 == Verdict::Drop {
                return Verdict::Drop;
            }
            if before.is_some_and(|b| b != RouteKeys::of(pkt)) {
                if let Err(e) = self.reroute(pkt) {
                    return Verdict::DropErr(e);
                }
            }
        }
        Verdict::Accept
    }
}

impl NftHook {
    /// Runs base chain `c` ([`do_chain`]) and carries out what its verdict
    /// asked of the hook: a `reject`'s ICMP ([`send_unreach`]). Returns the
    /// verdict and the NAT statement a `nat` chain's rule bound.
    #[inline(always)]
    pub(super) fn base_chain(
        &self,
        c: u32,
        pkt: &mut PacketBuf,
        out: &NetDevice,
    ) -> (Verdict, Option<Nat>) {
        let mut p = PktInfo::new(pkt, out);
        p.clock = Some(self);
        let v = walk(&self.prog, c, &mut p);
        let (nat, reject) = (p.nat, p.reject);
        if let (Verdict::Drop, Some(code)) = (v, reject) {
            if let Some(st) = self.stack.upgrade() {
                send_unreach(&st, pkt.network_header(), code);
            }
        }
        (v, nat)
    }
}

/// Kernel: `nf_send_unreach()`, net/ipv4/netfilter/nf_reject_ipv4.c (from
/// `nft_reject_ipv4_eval()` at LOCAL_OUT): nothing for a later fragment;
/// else `icmp_send()` of a destination unreachable of `code` about the
/// datagram, which the host sends itself ([`crate::ipv4::icmp::unreach_self`]).
/// The checksum check it makes first passes for a datagram the host built.
#[cold]
pub fn send_unreach(stack: &Stack, datagram: &[u8], code: u8) -> bool {
    crate::ipv4::icmp::unreach_self(stack, datagram, code)
}

/// What a `route` chain's changes are judged by (`nf_route_table_hook4`):
/// mark, source, destination and TOS before the chain.
#[derive(Clone, Copy, PartialEq, Eq)]
struct RouteKeys(u32, [u8; 4], [u8; 4], u8);

impl RouteKeys {
    fn of(pkt: &PacketBuf) -> RouteKeys {
        let h = pkt.network_header();
        let a = |o: usize| h.get(o..o + 4).map_or([0; 4], |s| [s[0], s[1], s[2], s[3]]);
        RouteKeys(pkt.meta.mark, a(12), a(16), h.get(1).copied().unwrap_or(0))
    }
}

/// Kernel: `ip_route_me_harder()`, net/ipv4/netfilter.c. Routes the
/// datagram again by its header and mark (the source kept, as for
/// `RTN_UNSPEC` with a local source); the new route goes in `skb_dst`,
/// where the output path finds it. A failed lookup is an error.
pub fn route_me_harder(stack: &Stack, pkt: &mut PacketBuf) -> Result<(), crate::route::RouteError> {
    let h = pkt.network_header();
    let Some(hdr) = h.get(..20) else {
        return Ok(());
    };
    let ihl = usize::from(hdr[0] & 0xf) * 4;
    let port = |o: usize| {
        h.get(ihl + o..ihl + o + 2)
            .map_or(0, |p| u16::from_be_bytes([p[0], p[1]]))
    };
    let key = crate::route::FlowKey {
        daddr: std::net::Ipv4Addr::new(hdr[16], hdr[17], hdr[18], hdr[19]),
        saddr: std::net::Ipv4Addr::new(hdr[12], hdr[13], hdr[14], hdr[15]),
        tos: hdr[1],
        mark: pkt.meta.mark,
        oif: 0,
        proto: hdr[9],
        sport: port(0),
        dport: port(2),
    };
    let (dst, _) = stack.route_output_key(&key)?;
    pkt.meta.dst = Some(dst);
    Ok(())
}

impl NftHook {
    /// `nf_route_table_hook4`'s reroute after a `route` chain changed the
    /// mark, an address or the TOS (and `nf_nat_ipv4_local_fn`'s after a
    /// destination NAT); a failed lookup's errno is the drop's
    /// (`NF_DROP_ERR(err)`): `ENETUNREACH`, `EHOSTUNREACH`, `EACCES`,
    /// `EINVAL`.
    #[cold]
    fn reroute(&self, pkt: &mut PacketBuf) -> Result<(), crate::error::Errno> {
        match self.stack.upgrade() {
            Some(st) => route_me_harder(&st, pkt).map_err(|e| e.errno()),
            None => Ok(()),
        }
    }
}

impl expr::NftClock for NftHook {
    fn now_ns(&self) -> u64 {
        self.now()
    }
}

impl Hook for NftHook {
    #[inline]
    fn hook(&self, point: HookPoint, pkt: &mut PacketBuf, out: &NetDevice) -> Verdict {
        let prog = &*self.prog;
        match prog.bases.get(point as usize) {
            Some(bases) if !bases.is_empty() => self.run_chains(bases, pkt, out),
            // Egress is [`NftEgressHook`]'s.
            _ => Verdict::Accept,
        }
    }
}

/// Kernel: `nft_do_chain_netdev()` at `NF_NETDEV_EGRESS`,
/// net/netfilter/nft_chain_filter.c. The hook of a ruleset's netdev
/// `egress` chains, registered at [`HookPoint::Egress`]: a frame leaving
/// by a device runs that device's chains in priority order (none: accept);
/// the first drop wins.
#[derive(Debug)]
pub struct NftEgressHook(pub NftHook);

impl Hook for NftEgressHook {
    #[inline]
    fn hook(&self, _point: HookPoint, pkt: &mut PacketBuf, out: &NetDevice) -> Verdict {
        let h = &self.0;
        let prog = &*h.prog;
        for &c in prog.egress_chains(out.name()) {
            let mut p = PktInfo::netdev(pkt, out);
            p.clock = Some(h);
            if do_chain(prog, c, &mut p) == Verdict::Drop {
                return Verdict::Drop;
            }
        }
        Verdict::Accept
    }
}

/// The hook points a ruleset's hooks sit at, by index of [`Nft`]'s hooks.
const POINTS: [HookPoint; 3] = [
    HookPoint::LocalOut,
    HookPoint::PostRouting,
    HookPoint::Egress,
];

/// The nftables of one stack: the ruleset and its compiled generation at
/// the hooks. Each change recompiles the ruleset and puts the new program
/// at each hook point that has (or had) a base chain.
#[derive(Default)]
pub struct Nft {
    /// The tables.
    pub ruleset: Ruleset,
    prog: Arc<Program>,
    hooks: [Option<Arc<dyn Hook>>; 3],
}

impl std::fmt::Debug for Nft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nft")
            .field("ruleset", &self.ruleset)
            .finish()
    }
}

impl Nft {
    /// No tables.
    pub fn new() -> Nft {
        Nft::default()
    }

    /// The program the hooks run.
    pub fn program(&self) -> &Arc<Program> {
        &self.prog
    }

    /// The rules that would match `pkt` at hook `point` going out of `out`,
    /// in the order evaluated: the base chains there (`nat` chains
    /// included, as for a flow's first packet) in priority order, jumps
    /// followed, until a chain drops. Side-effect free: the packet is not
    /// changed (statements act on a copy, and later rules see their
    /// changes, as they would), no counter, limit, log, `reject` or
    /// conntrack entry is touched. `ct` keys read the packet's own
    /// conntrack reference (none: as the kernel without a flow).
    pub fn would_match(&self, point: HookPoint, pkt: &PacketBuf, out: &NetDevice) -> Vec<RuleRef> {
        let mut copy = PacketBuf::from_slice(0, &pkt.to_vec());
        copy.reset_network_header();
        copy.meta.mark = pkt.meta.mark;
        copy.meta.priority = pkt.meta.priority;
        copy.meta.ip_summed = pkt.meta.ip_summed;
        copy.meta.nfct = pkt.meta.nfct;
        self.would_match_on(point, &mut copy, out)
    }

    /// [`Nft::would_match`] on a packet that is the caller's copy: the
    /// statements' changes (marks, fields) stay in it, for the next hook
    /// to see as a send's datagram would carry them there (LOCAL_OUT's
    /// mark in POST_ROUTING). Nothing else is touched.
    pub fn would_match_on(
        &self,
        point: HookPoint,
        copy: &mut PacketBuf,
        out: &NetDevice,
    ) -> Vec<RuleRef> {
        let prog = &*self.prog;
        let i = point as usize;
        let mut chains: Vec<u32> = match point {
            HookPoint::Egress => prog.egress_chains(out.name()).to_vec(),
            _ => prog.bases[i].iter().chain(&prog.nat[i]).copied().collect(),
        };
        chains.sort_by_key(|&c| prog.chains[c as usize].priority);
        let mut seen = Vec::new();
        for c in chains {
            let mut p = match point {
                HookPoint::Egress => PktInfo::netdev(copy, out),
                _ => PktInfo::new(copy, out),
            };
            p.dry = true;
            p.matched = Some(&mut seen);
            if do_chain(prog, c, &mut p) == Verdict::Drop {
                break;
            }
        }
        let names = self.ruleset.rule_refs();
        seen.iter()
            .filter_map(|&(c, r)| names.get(c as usize)?.get(r as usize).cloned())
            .collect()
    }

    /// Applies `change` to a copy of the ruleset; when it succeeds and
    /// compiles, the copy becomes the ruleset and its program goes to the
    /// hooks (a failed command changes nothing, as a refused nft
    /// transaction; `nf_tables_commit`).
    pub fn commit<T>(
        &mut self,
        stack: &Arc<Stack>,
        change: impl FnOnce(&mut Ruleset) -> Result<T, NftError>,
    ) -> Result<T, NftError> {
        let mut next = self.ruleset.clone();
        let r = change(&mut next)?;
        let prog = Arc::new(Program::compile(&next)?);
        for (i, point) in POINTS.into_iter().enumerate() {
            let wanted = match point {
                HookPoint::Egress => !prog.egress.is_empty(),
                _ => !prog.bases[i].is_empty() || prog.needs_ct,
            };
            if !wanted && self.hooks[i].is_none() {
                continue;
            }
            let hook = NftHook::new(prog.clone(), Arc::downgrade(stack));
            let new: Arc<dyn Hook> = match point {
                HookPoint::Egress => Arc::new(NftEgressHook(hook)),
                _ if prog.needs_ct => Arc::new(nat::NftCtHook(hook)),
                _ => Arc::new(hook),
            };
            stack
                .hooks
                .replace(point, self.hooks[i].as_ref(), new.clone());
            self.hooks[i] = Some(new);
        }
        stack.conntrack.set_active(prog.needs_ct);
        self.prog = prog;
        self.ruleset = next;
        Ok(r)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_dynset;
#[cfg(test)]
mod tests_flat;
