//! Connection tracking for the output path: flows by tuple, their state as
//! `ct state` sees it, timeouts on the stack's clock, and the NAT binding a
//! flow's first packet decides.
//!
//! Stands for the kernel's `net/netfilter/nf_conntrack_core.c` (the table:
//! `resolve_normal_ct`, `__nf_conntrack_confirm`, `early_drop`, the
//! garbage collection of expired entries), the per-protocol trackers
//! `nf_conntrack_proto_udp.c`, `nf_conntrack_proto_icmp.c` and
//! `nf_conntrack_proto_generic.c`, and `nf_nat_core.c` (`get_unique_tuple`,
//! `nf_nat_used_tuple`, `nf_nat_setup_info`, `nf_nat_packet`).
//!
//! Entries live in a slab; a hash map finds an entry by either of its
//! tuples (original or reply), so a packet's lookup is O(1) and a flow's
//! later packets allocate nothing. A flow's first packet makes an
//! unconfirmed entry at LOCAL_OUT; the end of POST_ROUTING confirms it (puts
//! both tuples in the map) unless a tuple clashes, which drops the packet
//! (`insert_failed`, `drop`). A packet dropped between the two frees its
//! unconfirmed entry ([`Conntrack::release`]); an entry left behind by a
//! datagram that failed elsewhere is freed by the next flow made on that
//! thread.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use parking_lot::Mutex;

/// `net.netfilter.nf_conntrack_udp_timeout` (seconds, as ns).
pub const UDP_TIMEOUT: u64 = 30_000_000_000;
/// `net.netfilter.nf_conntrack_udp_timeout_stream`.
pub const UDP_STREAM_TIMEOUT: u64 = 120_000_000_000;
/// `net.netfilter.nf_conntrack_icmp_timeout`.
pub const ICMP_TIMEOUT: u64 = 30_000_000_000;
/// `net.netfilter.nf_conntrack_generic_timeout`.
pub const GENERIC_TIMEOUT: u64 = 600_000_000_000;
/// A UDP flow that saw a reply becomes a stream (120 s, assured) when it
/// is still active this long after its first packet (`stream_ts`, 2 s).
const STREAM_DELAY: u64 = 2_000_000_000;
/// `net.netfilter.nf_conntrack_max` on a machine with 4 GiB or more.
pub const DEFAULT_MAX: u32 = 262_144;
/// `NF_NAT_MAX_ATTEMPTS`.
const NAT_MAX_ATTEMPTS: u32 = 128;

/// `IPS_SEEN_REPLY`.
pub const SEEN_REPLY: u16 = 1 << 1;
/// `IPS_ASSURED`.
pub const ASSURED: u16 = 1 << 2;
/// `IPS_CONFIRMED`.
pub const CONFIRMED: u16 = 1 << 3;
/// `IPS_SRC_NAT`.
pub const SRC_NAT: u16 = 1 << 4;
/// `IPS_DST_NAT`.
pub const DST_NAT: u16 = 1 << 5;
/// `IPS_SRC_NAT_DONE`.
pub const SRC_NAT_DONE: u16 = 1 << 7;
/// `IPS_DST_NAT_DONE`.
pub const DST_NAT_DONE: u16 = 1 << 8;

/// One direction of a flow (`struct nf_conntrack_tuple`): for UDP the
/// ports; for ICMP the echo id in `sport` and `type << 8 | code` in
/// `dport`; for other protocols no ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// Source address.
    pub src: u32,
    /// Destination address.
    pub dst: u32,
    /// Source port (ICMP: id).
    pub sport: u16,
    /// Destination port (ICMP: type and code).
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
}

/// The ICMP types a flow's tuple inverts to (`invmap` of
/// `nf_conntrack_proto_icmp.c`): the queries and their replies.
fn icmp_inverse(ty: u8) -> Option<u8> {
    Some(match ty {
        8 => 0,
        0 => 8,
        13 => 14,
        14 => 13,
        15 => 16,
        16 => 15,
        17 => 18,
        18 => 17,
        _ => return None,
    })
}

impl Tuple {
    /// Kernel: `nf_ct_invert_tuple()`: the tuple of the other direction.
    pub fn invert(&self) -> Tuple {
        let (sport, dport) = match self.proto {
            17 => (self.dport, self.sport),
            1 => {
                let ty = icmp_inverse((self.dport >> 8) as u8).unwrap_or(0);
                (self.sport, u16::from(ty) << 8 | (self.dport & 0xff))
            }
            _ => (0, 0),
        };
        Tuple {
            src: self.dst,
            dst: self.src,
            sport,
            dport,
            proto: self.proto,
        }
    }

    /// Kernel: `nf_ct_get_tuple()` on an IPv4 header (and the start of its
    /// transport header); `None` when the packet cannot be tracked (a short
    /// header, a later fragment, an ICMP type without a reply): `ct state
    /// invalid`.
    pub fn of(h: &[u8]) -> Option<Tuple> {
        let ihl = usize::from(*h.first()? & 0xf) * 4;
        let f = h.get(6..8)?;
        if ihl < 20 || h.len() < ihl || u16::from_be_bytes([f[0], f[1]]) & 0x1fff != 0 {
            return None;
        }
        let a = |o: usize| u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        let proto = h[9];
        let t = h.get(ihl..ihl + 8);
        let (sport, dport) = match (proto, t) {
            (17, Some(t)) => (
                u16::from_be_bytes([t[0], t[1]]),
                u16::from_be_bytes([t[2], t[3]]),
            ),
            (1, Some(t)) => {
                icmp_inverse(t[0])?;
                (
                    u16::from_be_bytes([t[4], t[5]]),
                    u16::from_be_bytes([t[0], t[1]]),
                )
            }
            (17 | 1, None) => return None,
            _ => (0, 0),
        };
        Some(Tuple {
            src: a(12),
            dst: a(16),
            sport,
            dport,
            proto,
        })
    }
}

/// `enum ip_conntrack_info` of a packet's flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtInfo {
    /// `IP_CT_ESTABLISHED`: original direction, a reply was seen.
    Established,
    /// `IP_CT_RELATED`.
    Related,
    /// `IP_CT_NEW`: original direction, no reply seen yet.
    New,
    /// `IP_CT_ESTABLISHED_REPLY`: the reply direction.
    EstablishedReply,
}

impl CtInfo {
    /// The `ct state` bit (`NF_CT_STATE_BIT`): established 2, related 4,
    /// new 8 (invalid is 1, untracked 64: no flow).
    pub fn state_bit(self) -> u32 {
        match self {
            CtInfo::Established | CtInfo::EstablishedReply => 2,
            CtInfo::Related => 4,
            CtInfo::New => 8,
        }
    }

    /// `ct direction`: 0 original, 1 reply.
    pub fn dir(self) -> usize {
        usize::from(self == CtInfo::EstablishedReply)
    }
}

/// A packet's flow (`skb->_nfct`): the entry and how the packet relates
/// to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtRef {
    /// The entry's slot.
    pub idx: u32,
    /// `ctinfo`.
    pub info: CtInfo,
    /// The entry was made for this packet (not confirmed yet).
    pub fresh: bool,
    /// The flow's mark (`ct mark`) as the packet found it.
    pub mark: u32,
    /// The flow's NAT bindings (destination, source) as the packet found
    /// them, read with its lookup: a bound side needs no second lookup.
    pub bound: [NatBinding; 2],
}

/// Which side a NAT binding rewrites (`enum nf_nat_manip_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Manip {
    /// `NF_NAT_MANIP_SRC` (POST_ROUTING: snat, masquerade).
    Src,
    /// `NF_NAT_MANIP_DST` (LOCAL_OUT: dnat).
    Dst,
}

impl Manip {
    /// Its index in [`CtRef::bound`].
    pub fn index(self) -> usize {
        usize::from(self == Manip::Src)
    }

    fn done_bit(self) -> u16 {
        match self {
            Manip::Src => SRC_NAT_DONE,
            Manip::Dst => DST_NAT_DONE,
        }
    }

    fn nat_bit(self) -> u16 {
        match self {
            Manip::Src => SRC_NAT,
            Manip::Dst => DST_NAT,
        }
    }
}

/// A NAT range (`struct nf_nat_range2`): `addr` `None` keeps the tuple's
/// (a null binding); `ports` is `NF_NAT_RANGE_PROTO_SPECIFIED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NatRange {
    /// The addresses mapped to, first and last.
    pub addr: Option<(u32, u32)>,
    /// The ports (ICMP: ids) mapped to, inclusive.
    pub ports: Option<(u16, u16)>,
    /// `NF_NAT_RANGE_PROTO_RANDOM_ALL`: a port picked at random even
    /// when the flow's own would do.
    pub random: bool,
    /// `NF_NAT_RANGE_PERSISTENT`: a client keeps its address of the range
    /// whatever the destination.
    pub persistent: bool,
}

/// Kernel: `find_best_ips_proto()` for IPv4: the address of `lo..=hi` for
/// a flow from `src` to `dst` (tuple addresses, host order): `jhash2()`
/// of the source as the kernel holds it (the address's bytes read as a
/// little-endian word, as on x86, then three zero words of the IPv6-sized
/// union), seeded with the destination the same way (0 when
/// `persistent`), scaled into the range.
fn best_ip(src: u32, dst: u32, (lo, hi): (u32, u32), persistent: bool) -> u32 {
    if lo == hi {
        return lo;
    }
    let seed = if persistent { 0 } else { dst.swap_bytes() };
    let j = super::jhash::jhash2(&[src.swap_bytes(), 0, 0, 0], seed);
    let dist = hi.wrapping_sub(lo).wrapping_add(1);
    lo.wrapping_add(super::jhash::reciprocal_scale(j, dist))
}

/// Why conntrack dropped a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CtError {
    /// `nf_conntrack_max` flows and none could be evicted ("nf_conntrack:
    /// table full, dropping packet").
    #[error("nf_conntrack: table full, dropping packet")]
    TableFull,
}

/// A flow's NAT binding of one side ([`Conntrack::nat_lookup`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatBinding {
    /// None yet: the `nat` chains decide on the flow's first packet.
    Unbound,
    /// Bound: the address and port the packet must carry (`None`: leave
    /// it as it is).
    Bound(Option<(u32, u16)>),
}

/// What a received datagram's flow writes into it ([`Conntrack::track_in`]):
/// the address and port of each side, indexed by [`Manip::index`]
/// (destination at PRE_ROUTING, source at LOCAL_IN); `inner`: those of
/// the datagram an ICMP error quotes (`RELATED`), whose own address then
/// follows in `outer` (its port is not used).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RcvNat {
    /// The datagram's destination and source to write.
    pub outer: [Option<(u32, u16)>; 2],
    /// An ICMP error's quoted destination and source to write.
    pub inner: [Option<(u32, u16)>; 2],
}

impl RcvNat {
    /// True when nothing is to be written.
    pub fn is_none(&self) -> bool {
        self.outer.iter().chain(&self.inner).all(Option::is_none)
    }
}

/// The ICMP error types (`icmp_is_err()`): destination unreachable,
/// source quench, redirect, time exceeded, parameter problem.
fn icmp_is_err(ty: u8) -> bool {
    matches!(ty, 3 | 4 | 5 | 11 | 12)
}

/// The datagram an ICMP error `h` (a whole IPv4 datagram) quotes, from its
/// IP header on; `None` for anything else.
pub fn icmp_error_quote(h: &[u8]) -> Option<&[u8]> {
    let ihl = usize::from(*h.first()? & 0xf) * 4;
    let frag = h.get(6..8)?;
    if ihl < 20 || *h.get(9)? != 1 || u16::from_be_bytes([frag[0], frag[1]]) & 0x1fff != 0 {
        return None;
    }
    if !icmp_is_err(*h.get(ihl)?) {
        return None;
    }
    h.get(ihl + 8..).filter(|q| q.len() >= 20)
}

/// Counters of `conntrack -S`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtStats {
    /// `found`: packets of a known flow.
    pub found: u64,
    /// `invalid`: packets that could not be tracked.
    pub invalid: u64,
    /// `insert_failed`: a new flow's tuple clashed at confirmation.
    pub insert_failed: u64,
    /// `drop`: packets dropped by conntrack (a full table, a clash).
    pub drop: u64,
    /// `early_drop`: unassured flows evicted for a new one.
    pub early_drop: u64,
}

/// A flow as `conntrack -L` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowView {
    /// The original and reply tuples.
    pub tuple: [Tuple; 2],
    /// `IPS_*` bits.
    pub status: u16,
    /// Seconds left (rounded down, as `nf_ct_expires() / HZ`).
    pub timeout_secs: u64,
    /// `ct mark`.
    pub mark: u32,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    tuple: [Tuple; 2],
    status: u16,
    live: bool,
    /// Absolute expiry (ns on the stack's clock).
    expires: u64,
    /// UDP: when a replied flow becomes a stream.
    stream_ts: u64,
    mark: u32,
}

/// Fx-style hasher for tuples: a multiply and rotate per word (the kernel
/// uses `jhash2` with a random seed; the keys here are not attacker-chosen
/// beyond what a local sender picks).
#[derive(Default, Clone, Copy)]
pub struct TupleHasher(u64);

impl Hasher for TupleHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type Map = HashMap<Tuple, u32, BuildHasherDefault<TupleHasher>>;

/// The table under its lock.
#[derive(Default)]
struct Table {
    slab: Vec<Entry>,
    free: Vec<u32>,
    /// Both tuples of each confirmed entry: `slot << 1 | direction`.
    map: Map,
    /// Live entries, confirmed or not (`nf_conntrack_count`).
    count: u32,
    gc_cursor: usize,
    rng: u64,
    stats: CtStats,
}

thread_local! {
    /// The entry this thread's last new flow made and has not confirmed
    /// yet, with its table: freed when the thread makes the next one (its
    /// datagram ended without reaching the end of POST_ROUTING).
    static PENDING: Cell<(usize, u32)> = const { Cell::new((0, u32::MAX)) };
}

/// A stack's connection tracking table. See the module documentation.
pub struct Conntrack {
    t: Mutex<Table>,
    max: std::sync::atomic::AtomicU32,
    active: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Conntrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conntrack")
            .field("count", &self.t.lock().count)
            .finish()
    }
}

impl Default for Conntrack {
    fn default() -> Self {
        Conntrack::new()
    }
}

fn timeout_of(proto: u8) -> u64 {
    match proto {
        17 => UDP_TIMEOUT,
        1 => ICMP_TIMEOUT,
        _ => GENERIC_TIMEOUT,
    }
}

impl Conntrack {
    /// An empty table (nothing allocated until a flow is tracked).
    pub fn new() -> Conntrack {
        Conntrack {
            t: Mutex::new(Table {
                rng: 0x9e37_79b9_7f4a_7c15,
                ..Table::default()
            }),
            max: std::sync::atomic::AtomicU32::new(DEFAULT_MAX),
            active: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// True while a ruleset needs tracking (the kernel's conntrack hooks
    /// are registered: `nf_ct_netns_get`).
    #[inline]
    pub fn active(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Turns tracking on or off (flows already tracked stay until they
    /// time out, as the kernel's).
    pub fn set_active(&self, on: bool) {
        self.active.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// `net.netfilter.nf_conntrack_max`.
    pub fn set_max(&self, max: u32) {
        self.max.store(max, std::sync::atomic::Ordering::Relaxed);
    }

    /// Live entries (`net.netfilter.nf_conntrack_count`).
    pub fn count(&self) -> u32 {
        self.t.lock().count
    }

    /// `conntrack -S` counters.
    pub fn stats(&self) -> CtStats {
        self.t.lock().stats
    }

    /// Kernel: `nf_conntrack_in()` at LOCAL_OUT (`resolve_normal_ct`, then
    /// the protocol's packet function). `Ok(None)`: not trackable (`ct
    /// state invalid`); an error drops the packet.
    pub fn track_out(&self, h: &[u8], now: u64) -> Result<Option<CtRef>, CtError> {
        let Some(tuple) = Tuple::of(h) else {
            self.t.lock().stats.invalid += 1;
            return Ok(None);
        };
        let mut t = self.t.lock();
        if let Some(r) = t.find(&tuple, now) {
            t.stats.found += 1;
            t.packet(r, now);
            return Ok(Some(r));
        }
        self.release_pending(&mut t);
        let max = self.max.load(std::sync::atomic::Ordering::Relaxed);
        let Some(idx) = t.alloc(tuple, now, max) else {
            t.stats.drop += 1;
            return Err(CtError::TableFull);
        };
        PENDING.with(|p| p.set((self as *const Conntrack as usize, idx)));
        Ok(Some(CtRef {
            idx,
            info: CtInfo::New,
            fresh: true,
            mark: 0,
            bound: [NatBinding::Unbound; 2],
        }))
    }

    /// Kernel: `nf_conntrack_in()` at PRE_ROUTING for a received datagram
    /// `h` (whole, its header checked), and what `nf_nat_packet()` at
    /// PRE_ROUTING and LOCAL_IN will write into it. A datagram of a known
    /// flow refreshes it (a reply marks it replied); an ICMP error quoting
    /// one of a flow's datagrams is `RELATED` to it
    /// (`Conntrack::related_in`). A datagram of no known flow is not
    /// tracked here (the receive path makes no flows).
    pub fn track_in(&self, h: &[u8], now: u64) -> RcvNat {
        let Some(tuple) = Tuple::of(h) else {
            return self.related_in(h, now);
        };
        let mut t = self.t.lock();
        let Some(r) = t.find(&tuple, now) else {
            return RcvNat::default();
        };
        t.stats.found += 1;
        t.packet(r, now);
        let e = &t.slab[r.idx as usize];
        RcvNat {
            outer: [target(e, r, Manip::Dst), target(e, r, Manip::Src)],
            inner: [None; 2],
        }
    }

    /// Kernel: `nf_conntrack_inet_error()` and
    /// `nf_nat_icmp_reply_translation()` at PRE_ROUTING and LOCAL_IN: an
    /// ICMP error `h` whose quoted datagram is one of a flow's (the inverse
    /// of its tuple is the flow's, and the error is addressed to the quoted
    /// datagram's source) is `RELATED`: where the flow is translated, the
    /// quoted datagram gets back the addresses and ports of the other
    /// direction's tuple and the error's own address follows. The flow's
    /// timeout is not refreshed.
    fn related_in(&self, h: &[u8], now: u64) -> RcvNat {
        let Some(inner) = icmp_error_quote(h) else {
            return RcvNat::default();
        };
        let Some(quoted) = Tuple::of(inner) else {
            return RcvNat::default();
        };
        let outer_dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
        if outer_dst != quoted.src {
            return RcvNat::default();
        }
        let mut t = self.t.lock();
        let Some(r) = t.find(&quoted.invert(), now) else {
            return RcvNat::default();
        };
        let e = &t.slab[r.idx as usize];
        let dir = r.info.dir();
        let other = e.tuple[1 - dir];
        let mut nat = RcvNat::default();
        for m in [Manip::Dst, Manip::Src] {
            let mut bit = m.nat_bit();
            if dir == 1 {
                bit ^= SRC_NAT | DST_NAT;
            }
            if e.status & bit != 0 {
                // The quoted datagram goes the other way: the inverse
                // manip, to the other direction's tuple.
                let inv = if m == Manip::Dst {
                    Manip::Src
                } else {
                    Manip::Dst
                };
                nat.inner[inv.index()] = Some(side(&other, inv));
                nat.outer[m.index()] = Some(side(&other.invert(), m));
            }
        }
        nat
    }

    /// Frees this thread's unconfirmed entry of an earlier datagram that
    /// never reached the end of POST_ROUTING.
    fn release_pending(&self, t: &mut Table) {
        let me = self as *const Conntrack as usize;
        let (who, idx) = PENDING.with(Cell::get);
        if who == me && idx != u32::MAX {
            t.free_unconfirmed(idx);
            PENDING.with(|p| p.set((0, u32::MAX)));
        }
    }

    /// Kernel: `nf_conntrack_put()` of a dropped packet: an unconfirmed
    /// entry goes with it.
    pub fn release(&self, r: CtRef) {
        let mut t = self.t.lock();
        t.free_unconfirmed(r.idx);
        PENDING.with(|p| {
            if p.get().1 == r.idx {
                p.set((0, u32::MAX));
            }
        });
    }

    /// Kernel: `__nf_conntrack_confirm()` at the end of POST_ROUTING: a new
    /// entry's tuples go in the table; false (the packet is dropped,
    /// `insert_failed` and `drop` counted) when either is taken.
    pub fn confirm(&self, r: CtRef, now: u64) -> bool {
        let mut t = self.t.lock();
        let Some(e) = t.slab.get(r.idx as usize).copied() else {
            return true;
        };
        if !e.live || e.status & CONFIRMED != 0 {
            return true;
        }
        PENDING.with(|p| {
            if p.get().1 == r.idx {
                p.set((0, u32::MAX));
            }
        });
        if t.taken(&e.tuple[0], u32::MAX, now) || t.taken(&e.tuple[1], u32::MAX, now) {
            t.free_unconfirmed(r.idx);
            t.stats.insert_failed += 1;
            t.stats.drop += 1;
            return false;
        }
        t.map.insert(e.tuple[0], r.idx << 1);
        t.map.insert(e.tuple[1], r.idx << 1 | 1);
        if let Some(s) = t.slab.get_mut(r.idx as usize) {
            s.status |= CONFIRMED;
        }
        true
    }

    /// True when the flow has a binding of `m` (`nf_nat_initialized`).
    pub fn nat_initialized(&self, r: CtRef, m: Manip) -> bool {
        let t = self.t.lock();
        t.slab
            .get(r.idx as usize)
            .is_some_and(|e| e.status & m.done_bit() != 0)
    }

    /// The flow's binding of `m` and, when bound, its
    /// [`Conntrack::nat_target`], under one lock.
    pub fn nat_lookup(&self, r: CtRef, m: Manip) -> NatBinding {
        let t = self.t.lock();
        match t.slab.get(r.idx as usize) {
            Some(e) => binding(e, r, m),
            None => NatBinding::Bound(None),
        }
    }

    /// Kernel: `nf_nat_setup_info()`: the flow's binding of `m` from
    /// `range` (a null binding when it has no address): its reply tuple
    /// becomes the inverse of the unique tuple `Table::unique_tuple`
    /// picks.
    pub fn setup_nat(&self, r: CtRef, m: Manip, range: NatRange, now: u64) {
        let mut t = self.t.lock();
        let Some(e) = t.slab.get(r.idx as usize).copied() else {
            return;
        };
        if e.status & m.done_bit() != 0 {
            return;
        }
        // The tuple as it is now: the reply's inverse (an earlier binding
        // of the other manip shows in it).
        let cur = e.tuple[1].invert();
        let new = t.unique_tuple(cur, range, m, r.idx, now);
        let s = &mut t.slab[r.idx as usize];
        if new != cur {
            s.tuple[1] = new.invert();
            s.status |= m.nat_bit();
        }
        s.status |= m.done_bit();
    }

    /// Kernel: `nf_nat_packet()`: where the flow's binding says so, the
    /// address and port (`m`'s side) the packet must carry; `None`: leave
    /// it.
    pub fn nat_target(&self, r: CtRef, m: Manip) -> Option<(u32, u16)> {
        let t = self.t.lock();
        target(t.slab.get(r.idx as usize)?, r, m)
    }

    /// The live confirmed flows (`conntrack -L`); expired ones are removed
    /// on the way, as the kernel's dump does.
    pub fn list(&self, now: u64) -> Vec<FlowView> {
        let mut t = self.t.lock();
        let mut out = Vec::new();
        for i in 0..t.slab.len() {
            let e = t.slab[i];
            if !e.live || e.status & CONFIRMED == 0 {
                continue;
            }
            if e.expires <= now {
                t.kill(i as u32);
                continue;
            }
            out.push(FlowView {
                tuple: e.tuple,
                status: e.status,
                timeout_secs: (e.expires - now) / 1_000_000_000,
                mark: e.mark,
            });
        }
        out
    }

    /// Removes every flow (`conntrack -F`).
    pub fn flush(&self) {
        let mut t = self.t.lock();
        let live: Vec<u32> = (0..t.slab.len() as u32)
            .filter(|&i| t.slab[i as usize].live && t.slab[i as usize].status & CONFIRMED != 0)
            .collect();
        for i in live {
            t.kill(i);
        }
    }
}

impl Table {
    /// The flow `tuple` belongs to, in either direction; an expired one is
    /// removed and not found (`nf_ct_gc_expired` in the lookup).
    #[inline]
    fn find(&mut self, tuple: &Tuple, now: u64) -> Option<CtRef> {
        let v = *self.map.get(tuple)?;
        let idx = v >> 1;
        let e = &self.slab[idx as usize];
        if e.expires <= now {
            self.kill(idx);
            return None;
        }
        let info = match (v & 1, e.status & SEEN_REPLY != 0) {
            (1, _) => CtInfo::EstablishedReply,
            (_, true) => CtInfo::Established,
            _ => CtInfo::New,
        };
        let mut r = CtRef {
            idx,
            info,
            fresh: false,
            mark: e.mark,
            bound: [NatBinding::Unbound; 2],
        };
        r.bound = [binding(e, r, Manip::Dst), binding(e, r, Manip::Src)];
        Some(r)
    }

    /// The protocol's packet function (`nf_conntrack_udp_packet`, ICMP's,
    /// generic's): refreshes the timeout; a reply marks the flow replied.
    #[inline]
    fn packet(&mut self, r: CtRef, now: u64) {
        let e = &mut self.slab[r.idx as usize];
        let proto = e.tuple[0].proto;
        let mut timeout = timeout_of(proto);
        if proto == 17 && e.status & SEEN_REPLY != 0 && now > e.stream_ts {
            timeout = UDP_STREAM_TIMEOUT;
            e.status |= ASSURED;
        }
        e.expires = now + timeout;
        if r.info == CtInfo::EstablishedReply {
            e.status |= SEEN_REPLY;
        }
    }

    /// Kernel: `__nf_conntrack_alloc()` and `init_conntrack()`: a new
    /// unconfirmed entry, after an eviction when the table is full
    /// (`early_drop`); `None` when nothing could be evicted.
    fn alloc(&mut self, tuple: Tuple, now: u64, max: u32) -> Option<u32> {
        self.gc_step(now, 8);
        if self.count >= max && !self.evict(now) {
            return None;
        }
        let e = Entry {
            tuple: [tuple, tuple.invert()],
            status: 0,
            live: true,
            expires: now + timeout_of(tuple.proto),
            stream_ts: now + STREAM_DELAY,
            mark: 0,
        };
        self.count += 1;
        Some(match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = e;
                i
            }
            None => {
                self.slab.push(e);
                (self.slab.len() - 1) as u32
            }
        })
    }

    /// Kernel: `gc_worker()`, a few slots at a time: expired flows go.
    fn gc_step(&mut self, now: u64, n: usize) {
        for _ in 0..n.min(self.slab.len()) {
            self.gc_cursor = (self.gc_cursor + 1) % self.slab.len();
            let e = self.slab[self.gc_cursor];
            if e.live && e.status & CONFIRMED != 0 && e.expires <= now {
                self.kill(self.gc_cursor as u32);
            }
        }
    }

    /// Kernel: `early_drop()`: an expired flow, else one not assured,
    /// leaves for a new one.
    #[cold]
    fn evict(&mut self, now: u64) -> bool {
        self.gc_step(now, self.slab.len());
        let victim = self
            .slab
            .iter()
            .position(|e| e.live && e.status & (CONFIRMED | ASSURED) == CONFIRMED);
        match victim {
            Some(i) => {
                self.kill(i as u32);
                self.stats.early_drop += 1;
                true
            }
            None => false,
        }
    }

    /// Removes a confirmed entry (`nf_ct_kill`).
    fn kill(&mut self, idx: u32) {
        let e = self.slab[idx as usize];
        if !e.live {
            return;
        }
        if e.status & CONFIRMED != 0 {
            for (d, t) in e.tuple.iter().enumerate() {
                if self.map.get(t) == Some(&(idx << 1 | d as u32)) {
                    self.map.remove(t);
                }
            }
        }
        self.slab[idx as usize].live = false;
        self.free.push(idx);
        self.count -= 1;
    }

    fn free_unconfirmed(&mut self, idx: u32) {
        if self
            .slab
            .get(idx as usize)
            .is_some_and(|e| e.live && e.status & CONFIRMED == 0)
        {
            self.kill(idx);
        }
    }

    /// Kernel: `nf_conntrack_tuple_taken()`: a live flow other than `me`
    /// has `tuple` in either direction.
    fn taken(&mut self, tuple: &Tuple, me: u32, now: u64) -> bool {
        let Some(&v) = self.map.get(tuple) else {
            return false;
        };
        if v >> 1 == me {
            return false;
        }
        if self.slab[(v >> 1) as usize].expires <= now {
            self.kill(v >> 1);
            return false;
        }
        true
    }

    /// Kernel: `nf_nat_used_tuple()`: the reply of `tuple` is taken.
    fn used(&mut self, tuple: &Tuple, me: u32, now: u64) -> bool {
        self.taken(&tuple.invert(), me, now)
    }

    fn random16(&mut self) -> u32 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 16) as u32 & 0xffff
    }

    /// Kernel: `get_unique_tuple()`: `cur` (the flow's tuple as it stands)
    /// mapped into `range` on `m`'s side, unique in the table.
    fn unique_tuple(&mut self, cur: Tuple, range: NatRange, m: Manip, me: u32, now: u64) -> Tuple {
        let in_range = |t: &Tuple| {
            let (a, p) = side(t, m);
            range.addr.is_none_or(|(lo, hi)| lo <= a && a <= hi)
                && range.ports.is_none_or(|(lo, hi)| lo <= p && p <= hi)
        };
        // 1) A source mapping keeps the tuple when it is in range and unique.
        if m == Manip::Src && !range.random && in_range(&cur) && !self.used(&cur, me, now) {
            return cur;
        }
        // 2) The address: by the hash of the flow's addresses.
        let mut t = cur;
        if let Some(r) = range.addr {
            let a = best_ip(cur.src, cur.dst, r, range.persistent);
            set_side(&mut t, m, Some(a), None);
        }
        // 3) The port, when it is not already in range and unique.
        let (_, p) = side(&t, m);
        match range.ports {
            _ if range.random => {}
            Some((lo, hi)) if lo <= p && p <= hi && (lo == hi || !self.used(&t, me, now)) => {
                return t
            }
            None if !self.used(&t, me, now) => return t,
            _ => {}
        }
        self.l4_unique(t, range, m, me, now)
    }

    /// Kernel: `nf_nat_l4proto_unique_tuple()`: the first unused port of the
    /// range from an offset (random for a source mapping), at most
    /// `NF_NAT_MAX_ATTEMPTS`, then rounds of half as many from a new random
    /// offset; the last port tried when none is free (the clash then fails
    /// the confirmation).
    fn l4_unique(&mut self, mut t: Tuple, range: NatRange, m: Manip, me: u32, now: u64) -> Tuple {
        if t.proto != 17 && t.proto != 1 {
            return t;
        }
        let (_, p) = side(&t, m);
        let (min, size) = match range.ports {
            Some((lo, hi)) => (u32::from(lo), u32::from(hi) - u32::from(lo) + 1),
            None if m == Manip::Dst => return t,
            None if t.proto == 1 => (0, 65536),
            None if p < 512 => (1, 511),
            None if p < 1024 => (600, 424),
            None => (1024, 65536 - 1024),
        };
        let mut off = if m == Manip::Src || range.random {
            self.random16()
        } else {
            0
        };
        let mut attempts = size.min(NAT_MAX_ATTEMPTS);
        loop {
            for _ in 0..attempts {
                let port = (min + off % size) as u16;
                set_side(&mut t, m, None, Some(port));
                if !self.used(&t, me, now) {
                    return t;
                }
                off = off.wrapping_add(1);
            }
            if attempts >= size || attempts < 16 {
                return t;
            }
            attempts /= 2;
            off = self.random16();
        }
    }
}

/// The binding of `m` of entry `e` for the packet `r`.
fn binding(e: &Entry, r: CtRef, m: Manip) -> NatBinding {
    if e.status & m.done_bit() == 0 {
        NatBinding::Unbound
    } else {
        NatBinding::Bound(target(e, r, m))
    }
}

/// Kernel: `nf_nat_packet()`'s test and `nf_nat_manip_pkt()`'s target.
fn target(e: &Entry, r: CtRef, m: Manip) -> Option<(u32, u16)> {
    let dir = r.info.dir();
    let mut bit = m.nat_bit();
    if dir == 1 {
        bit ^= SRC_NAT | DST_NAT;
    }
    if e.status & bit == 0 {
        return None;
    }
    let t = e.tuple[1 - dir].invert();
    Some(side(&t, m))
}

/// The address and port of `m`'s side of a tuple.
fn side(t: &Tuple, m: Manip) -> (u32, u16) {
    match (m, t.proto) {
        (Manip::Src, _) => (t.src, t.sport),
        (Manip::Dst, 1) => (t.dst, t.sport),
        (Manip::Dst, _) => (t.dst, t.dport),
    }
}

fn set_side(t: &mut Tuple, m: Manip, addr: Option<u32>, port: Option<u16>) {
    match m {
        Manip::Src => {
            t.src = addr.unwrap_or(t.src);
            t.sport = port.unwrap_or(t.sport);
        }
        Manip::Dst => {
            t.dst = addr.unwrap_or(t.dst);
            if t.proto == 1 {
                t.sport = port.unwrap_or(t.sport);
            } else {
                t.dport = port.unwrap_or(t.dport);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// An IPv4+UDP header from `src:sport` to `dst:dport`.
    fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0];
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(&sport.to_be_bytes());
        h.extend_from_slice(&dport.to_be_bytes());
        h.extend_from_slice(&[0, 8, 0, 0]);
        h
    }

    const A: [u8; 4] = [10, 0, 0, 1];
    const B: [u8; 4] = [10, 0, 0, 2];

    fn first(ct: &Conntrack, h: &[u8], now: u64) -> CtRef {
        let r = ct.track_out(h, now).unwrap().unwrap();
        assert_eq!((r.info, r.fresh), (CtInfo::New, true));
        assert!(ct.confirm(r, now));
        r
    }

    #[test]
    fn udp_states_and_timeouts_follow_the_kernel() {
        let ct = Conntrack::new();
        first(&ct, &udp(A, 5000, B, 9), 0);
        // No reply yet: every packet of the flow is still NEW.
        let r = ct.track_out(&udp(A, 5000, B, 9), S).unwrap().unwrap();
        assert_eq!((r.info, r.fresh), (CtInfo::New, false));
        assert_eq!(ct.list(S)[0].timeout_secs, 30);
        // The reply: ESTABLISHED in both directions from then on.
        ct.track_in(&udp(B, 9, A, 5000), S);
        let v = ct.list(S);
        assert_eq!(v[0].status & (SEEN_REPLY | ASSURED), SEEN_REPLY);
        let r = ct.track_out(&udp(A, 5000, B, 9), 3 * S).unwrap().unwrap();
        assert_eq!(r.info, CtInfo::Established);
        // Active past 2 s after a reply: a stream, assured, 120 s.
        let v = ct.list(3 * S);
        assert_eq!(v[0].status & ASSURED, ASSURED);
        assert_eq!(v[0].timeout_secs, 120);
        // Expired: gone, and the next packet starts a new flow.
        assert!(ct.list(124 * S).is_empty());
        let r = ct.track_out(&udp(A, 5000, B, 9), 124 * S).unwrap().unwrap();
        assert!(r.fresh);
    }

    #[test]
    fn an_unconfirmed_flow_goes_with_its_dropped_packet() {
        let ct = Conntrack::new();
        let r = ct.track_out(&udp(A, 5000, B, 9), 0).unwrap().unwrap();
        ct.release(r);
        assert_eq!(ct.count(), 0);
        assert!(ct.list(0).is_empty());
        // One left behind by a datagram that never reached POST_ROUTING
        // is freed by the next flow this thread makes.
        ct.track_out(&udp(A, 5001, B, 9), 0).unwrap().unwrap();
        first(&ct, &udp(A, 5002, B, 9), 0);
        assert_eq!(ct.count(), 1);
    }

    #[test]
    fn snat_keeps_a_unique_port_reallocates_a_taken_one_and_refuses_a_clash() {
        let ct = Conntrack::new();
        let range = NatRange {
            addr: Some((0x0a00_0007, 0x0a00_0007)),
            ports: Some((5000, 5001)),
            random: false,
            persistent: false,
        };
        let mut ports = Vec::new();
        for (i, src) in [[10, 0, 0, 1], [10, 0, 0, 5], [10, 0, 0, 6]]
            .iter()
            .enumerate()
        {
            let r = ct.track_out(&udp(*src, 5000, B, 9), 0).unwrap().unwrap();
            ct.setup_nat(r, Manip::Src, range, 0);
            let (addr, port) = ct.nat_target(r, Manip::Src).unwrap();
            assert_eq!(addr, range.addr.unwrap().0);
            ports.push(port);
            assert_eq!(ct.confirm(r, 0), i < 2, "flow {i}");
        }
        assert_eq!(ports[..2], [5000, 5001]);
        let st = ct.stats();
        assert_eq!((st.insert_failed, st.drop), (1, 1));
        assert_eq!(ct.list(0).len(), 2);
        // A null binding on a taken tuple moves the source port out of
        // the way (1024-65535).
        let r = ct
            .track_out(&udp([10, 0, 0, 7], 5000, B, 9), 0)
            .unwrap()
            .unwrap();
        ct.setup_nat(r, Manip::Src, NatRange::default(), 0);
        let (_, p) = ct.nat_target(r, Manip::Src).unwrap();
        assert!(p >= 1024 && p != 5000 && p != 5001, "{p}");
        assert!(ct.confirm(r, 0));
    }

    #[test]
    fn a_random_range_moves_even_a_free_port() {
        let ct = Conntrack::new();
        let range = NatRange {
            addr: None,
            ports: Some((5000, 5999)),
            random: true,
            persistent: false,
        };
        let moved = (0..20).any(|i| {
            let r = ct.track_out(&udp(A, 5000 + i, B, 9), 0).unwrap().unwrap();
            ct.setup_nat(r, Manip::Src, range, 0);
            let (_, p) = ct.nat_target(r, Manip::Src).unwrap_or((0, 5000 + i));
            assert!((5000..=5999).contains(&p));
            assert!(ct.confirm(r, 0));
            p != 5000 + i
        });
        assert!(moved, "random picks ports, not the flows' own");
    }

    #[test]
    fn a_full_table_evicts_an_unassured_flow_else_drops() {
        let ct = Conntrack::new();
        ct.set_max(1);
        first(&ct, &udp(A, 5000, B, 9), 0);
        first(&ct, &udp(A, 5001, B, 9), 0);
        assert_eq!(ct.stats().early_drop, 1);
        let v = ct.list(0);
        assert_eq!((v.len(), v[0].tuple[0].sport), (1, 5001));
        // An assured flow stays: the new one is dropped.
        ct.track_in(&udp(B, 9, A, 5001), 0);
        ct.track_out(&udp(A, 5001, B, 9), 3 * S).unwrap().unwrap();
        assert_eq!(
            ct.track_out(&udp(A, 5002, B, 9), 3 * S),
            Err(CtError::TableFull)
        );
        assert_eq!(ct.stats().drop, 1);
    }

    #[test]
    fn icmp_queries_are_tracked_and_errors_are_invalid() {
        let mut echo = udp(A, 0, B, 0);
        echo[9] = 1;
        echo[20..28].copy_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
        let t = Tuple::of(&echo).unwrap();
        assert_eq!((t.sport, t.dport), (0x1234, 8 << 8));
        assert_eq!(t.invert().dport, 0);
        echo[20] = 3;
        assert_eq!(Tuple::of(&echo), None);
    }

    /// An ICMP error from `from` to `to` quoting `quoted` (its first 28
    /// bytes), checksums left 0.
    fn icmp_error(from: [u8; 4], to: [u8; 4], ty: u8, quoted: &[u8]) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0];
        h.extend_from_slice(&from);
        h.extend_from_slice(&to);
        h.extend_from_slice(&[ty, 3, 0, 0, 0, 0, 0, 0]);
        h.extend_from_slice(&quoted[..28]);
        h
    }

    #[test]
    fn a_reply_and_an_error_of_a_translated_flow_are_translated_back() {
        let ct = Conntrack::new();
        let nat = [10, 0, 0, 7];
        let range = NatRange {
            addr: Some((0x0a00_0007, 0x0a00_0007)),
            ports: Some((6000, 6000)),
            ..NatRange::default()
        };
        let r = ct.track_out(&udp(A, 5000, B, 9), 0).unwrap().unwrap();
        ct.setup_nat(r, Manip::Src, range, 0);
        assert!(ct.confirm(r, 0));
        // The reply to 10.0.0.7:6000 is for 10.0.0.1:5000.
        let back = ct.track_in(&udp(B, 9, nat, 6000), S);
        assert_eq!(back.outer, [Some((0x0a00_0001, 5000)), None]);
        assert_eq!(back.inner, [None, None]);
        let st = ct.stats();
        assert_eq!(st.found, 1);
        // A port unreachable about the datagram as it left: its quote gets
        // the flow's own source back, the error's destination follows.
        let sent = udp(nat, 6000, B, 9);
        let err = ct.track_in(&icmp_error(B, nat, 3, &sent), S);
        assert_eq!(err.inner, [None, Some((0x0a00_0001, 5000))]);
        assert_eq!(err.outer, [Some((0x0a00_0001, 5000)), None]);
        assert_eq!(ct.stats().found, 1, "RELATED is not a lookup hit");
        // Not an error of the flow: to another address than the quoted
        // source, an echo, a quote of no flow.
        assert!(ct.track_in(&icmp_error(B, A, 3, &sent), S).is_none());
        assert!(ct.track_in(&icmp_error(B, nat, 8, &sent), S).is_none());
        let other = udp(nat, 6001, B, 9);
        assert!(ct.track_in(&icmp_error(B, nat, 11, &other), S).is_none());
        // An untranslated flow's reply needs nothing.
        first(&ct, &udp(A, 5001, B, 9), 0);
        assert!(ct.track_in(&udp(B, 9, A, 5001), S).is_none());
    }
}
