//! The typed form of an nft rule, as the user wrote it: what the ruleset
//! keeps, lists, and compiles ([`super::compile`]).

use std::sync::Arc;

/// A packet field or meta key a rule can match (the left side of a match).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// `ip saddr`.
    IpSaddr,
    /// `ip daddr`.
    IpDaddr,
    /// `ip protocol`.
    IpProtocol,
    /// `ip dscp` (the TOS byte's upper six bits).
    IpDscp,
    /// `ip ttl`.
    IpTtl,
    /// `ip version` (the first byte's upper four bits).
    IpVersion,
    /// `ip hdrlength` (the first byte's lower four bits, in 32-bit words).
    IpHdrlength,
    /// `ip ecn` (the TOS byte's lower two bits).
    IpEcn,
    /// `ip length` (`tot_len`).
    IpLength,
    /// `ip id`.
    IpId,
    /// `ip frag-off` (the whole 16-bit flags and offset field).
    IpFragOff,
    /// `ip checksum`.
    IpChecksum,
    /// `udp length`.
    UdpLength,
    /// `udp checksum`.
    UdpChecksum,
    /// `udp sport`.
    UdpSport,
    /// `udp dport`.
    UdpDport,
    /// `tcp sport`.
    TcpSport,
    /// `tcp dport`.
    TcpDport,
    /// `tcp sequence`.
    TcpSequence,
    /// `tcp ackseq`.
    TcpAckseq,
    /// `tcp window`.
    TcpWindow,
    /// `tcp checksum`.
    TcpChecksum,
    /// `tcp urgptr`.
    TcpUrgptr,
    /// `meta l4proto`.
    MetaL4proto,
    /// `meta mark` (`skb->mark`).
    MetaMark,
    /// `meta length` (`skb->len`).
    MetaLength,
    /// `meta priority` (`skb->priority`, printed `MAJOR:MINOR`).
    MetaPriority,
    /// `oif` (the output device's index).
    Oif,
    /// `oifname` (the output device's name).
    Oifname,
    /// `iifname` (the input device's name: empty for a locally generated
    /// packet, which has none).
    Iifname,
    /// `ct state` (a bit of `invalid` 1, `established` 2, `related` 4,
    /// `new` 8, `untracked` 64).
    CtState,
    /// `ct direction` (`original` 0, `reply` 1).
    CtDirection,
    /// `ct mark` (the flow's mark).
    CtMark,
    /// `th sport`: the first 16 bits of the transport header, whatever
    /// the protocol (no `meta l4proto` dependency).
    ThSport,
    /// `th dport`: bits 16..32 of the transport header.
    ThDport,
}

impl Key {
    /// Every bit of the key's width set (`|` and `^` work within it).
    pub fn width_mask(self) -> u64 {
        match self.bits() {
            b if b >= 64 => u64::MAX,
            b => (1 << b) - 1,
        }
    }

    /// The width of the key's value in bits (a set's key of this type).
    pub fn bits(self) -> u32 {
        match self {
            Key::IpSaddr | Key::IpDaddr => 32,
            Key::IpProtocol | Key::IpDscp | Key::IpTtl | Key::MetaL4proto => 8,
            Key::IpVersion | Key::IpHdrlength | Key::IpEcn => 8,
            Key::UdpSport | Key::UdpDport | Key::UdpLength | Key::UdpChecksum => 16,
            Key::TcpSport | Key::TcpDport | Key::TcpWindow | Key::TcpChecksum => 16,
            Key::TcpUrgptr => 16,
            Key::TcpSequence | Key::TcpAckseq => 32,
            Key::IpLength | Key::IpId | Key::IpFragOff | Key::IpChecksum => 16,
            Key::MetaMark | Key::MetaLength | Key::MetaPriority | Key::Oif => 32,
            Key::Oifname | Key::Iifname => 128,
            Key::CtState => 32,
            Key::CtDirection => 8,
            Key::CtMark => 32,
            Key::ThSport | Key::ThDport => 16,
        }
    }
}

/// A relational operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `==` (implicit).
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `>`.
    Gt,
    /// `<=`.
    Le,
    /// `>=`.
    Ge,
}

/// One element of a set: a value (`lo == hi`) or a closed interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Elem {
    /// The first value.
    pub lo: u64,
    /// The last value.
    pub hi: u64,
}

impl Elem {
    /// A single value.
    pub fn one(v: u64) -> Elem {
        Elem { lo: v, hi: v }
    }

    /// The two parts of an element of a two-key concatenation whose
    /// second key fills the low `low_bits` bits (16 for a port, else 32):
    /// each part's first and last value.
    pub fn split_concat(&self, low_bits: u32) -> (Elem, Elem) {
        let m = (1u64 << low_bits) - 1;
        let a = Elem {
            lo: self.lo >> low_bits,
            hi: self.hi >> low_bits,
        };
        let b = Elem {
            lo: self.lo & m,
            hi: self.hi & m,
        };
        (a, b)
    }
}

/// The right side of a match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rhs {
    /// A value of the key's type (an address as a `u32`, ...).
    Value(u64),
    /// An address prefix: `A.B.C.D/LEN`.
    Prefix(u32, u8),
    /// A closed range `LO-HI`.
    Range(u64, u64),
    /// An anonymous set `{ a, b, c-d }`, with the handle nft gave it.
    Set(Vec<Elem>),
    /// A named set `@NAME` of the rule's table.
    Named(String),
    /// A device: its name, and its index when the rule was added (`oif`).
    Dev(String, u32),
    /// A device name (`oifname`).
    Ifname(String),
    /// An anonymous set of device names (`oifname { "eth0", "veth*" }`;
    /// a trailing `*` matches every name it starts).
    IfnameSet(Vec<String>),
    /// Bits of a bitmask type (`ct state new,established`): the match
    /// holds when any is set (`!=`: when none is).
    Flags(u64),
    /// `vmap { ... }` or `vmap @NAME`: the verdict of the element found
    /// (none found: the rule does not match).
    Vmap(MapRef),
    /// `KEY & MASK OP V`, `KEY | BITS OP V`: the key goes through
    /// `nft_bitwise`'s boolean form, `(key & mask) ^ xor`, before the
    /// comparison `rhs` (a value, range, prefix or anonymous set).
    Masked {
        /// The bits kept.
        mask: u64,
        /// The bits flipped after (`|`: the bits set, with `mask` their
        /// complement).
        xor: u64,
        /// The comparison of the result.
        rhs: Box<Rhs>,
    },
}

/// A map's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapValue {
    /// A number (`mark`).
    Num(u64),
    /// A verdict (`verdict`).
    Verdict(RuleVerdict),
    /// A NAT target (`snat to KEY map { K : ADDR[-ADDR][ . PORT[-PORT]] }`).
    Nat(NatTo),
}

/// What a NAT map's element maps to (the registers `nft_nat` loads its
/// range from): addresses, first and last (a prefix is its range), and
/// ports, first and last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NatTo {
    /// The addresses (none for `redirect to :KEY map`).
    pub addr: Option<(u32, u32)>,
    /// The ports (`NF_NAT_RANGE_PROTO_SPECIFIED`).
    pub ports: Option<(u16, u16)>,
}

/// A NAT statement whose target a map decides (`snat ip to ip saddr map
/// { ... }`, `redirect to :tcp dport map { ... }`): the key's element's
/// [`NatTo`]; no element, the rule does not match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatMap {
    /// The statement (its `addr` and `ports` unused).
    pub nat: Nat,
    /// The key, or keys of a concatenation.
    pub keys: Vec<Key>,
    /// The map (values [`MapValue::Nat`]).
    pub map: MapRef,
    /// `prefix` (`NF_NAT_RANGE_NETMAP`): the packet's address keeps its
    /// host bits and takes the network bits of the element's prefix.
    pub netmap: bool,
}

/// The elements of an anonymous map: key, value; `* : V` the default
/// (`NFT_SET_ELEM_CATCHALL`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapElems {
    /// The elements, sorted by key.
    pub elems: Vec<(Elem, MapValue)>,
    /// The catch-all element's value.
    pub default: Option<MapValue>,
}

/// The map a lookup reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapRef {
    /// `{ K : V, ... }`.
    Anon(MapElems),
    /// `@NAME`, a map of the rule's table.
    Named(String),
}

/// A match: `KEY [. KEY] [OP] RHS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    /// The key, or keys of a concatenation (`ip daddr . udp dport`).
    pub keys: Vec<Key>,
    /// The operator.
    pub op: Op,
    /// The value(s) matched.
    pub rhs: Rhs,
}

/// A rule's counter (`nft_counter`): packets and bytes seen, shared by the
/// rule as listed and its compiled form. Split per thread as the kernel's
/// per-CPU `nft_counter_percpu_priv` ([`crate::stats::Sharded`]): threads
/// sending through the same rule do not contend on one cache line; a read
/// sums the shards. A thread of its own for each of the machine's CPUs (as
/// the kernel has a copy per possible CPU): 128 bytes a CPU plus one shared,
/// not [`crate::stats::SHARDS`] of them, so a ruleset of many counters
/// stays small.
#[derive(Debug)]
pub struct Counter(crate::stats::Sharded<2>);

impl Default for Counter {
    fn default() -> Self {
        Counter(crate::stats::Sharded::with_owners(cpus()))
    }
}

/// The machine's CPUs (`std::thread::available_parallelism`), read once.
fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

impl Counter {
    /// A counter starting at `packets`/`bytes` (`counter packets N bytes M`).
    pub fn new(packets: u64, bytes: u64) -> Arc<Counter> {
        let c = Counter::default();
        c.0.add(0, packets);
        c.0.add(1, bytes);
        Arc::new(c)
    }

    /// Kernel: `nft_counter_do_eval()`, net/netfilter/nft_counter.c
    /// (`this_cpu_ptr` of the counter, updated without a lock).
    #[inline]
    pub fn add(&self, bytes: usize) {
        self.0.add(0, 1);
        self.0.add(1, bytes as u64);
    }

    /// Packets and bytes counted (`nft_counter_fetch`: the sum over the
    /// shards).
    pub fn get(&self) -> (u64, u64) {
        (self.0.get(0), self.0.get(1))
    }
}

/// A verdict a rule ends with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleVerdict {
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
    /// `continue`.
    Continue,
    /// `return`.
    Return,
    /// `jump CHAIN`.
    Jump(String),
    /// `goto CHAIN`.
    Goto(String),
}

/// Which NAT statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatKind {
    /// `snat to ADDR[:PORT[-PORT]]`.
    Snat,
    /// `dnat to ADDR[:PORT[-PORT]]`.
    Dnat,
    /// `masquerade [to :PORT[-PORT]]`: the output device's address.
    Masquerade,
    /// `redirect [to :PORT[-PORT]]`: to the host itself (127.0.0.1 for a
    /// locally generated packet).
    Redirect,
}

/// A NAT statement (`nft_nat`, `nft_masq`): terminal, it binds the flow
/// and accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nat {
    /// The statement.
    pub kind: NatKind,
    /// The addresses, first and last (none for `masquerade`).
    pub addr: Option<(u32, u32)>,
    /// The port range, inclusive.
    pub ports: Option<(u16, u16)>,
    /// [`NAT_RANDOM`], [`NAT_FULLY_RANDOM`], [`NAT_PERSISTENT`].
    pub flags: u8,
}

/// `random` (`NF_NAT_RANGE_PROTO_RANDOM`): the port is picked at random,
/// even when the flow's own is free.
pub const NAT_RANDOM: u8 = 1;
/// `fully-random` (`NF_NAT_RANGE_PROTO_RANDOM_FULLY`): likewise.
pub const NAT_FULLY_RANDOM: u8 = 2;
/// `persistent` (`NF_NAT_RANGE_PERSISTENT`): the same address for a
/// client (one address here: no effect).
pub const NAT_PERSISTENT: u8 = 4;

/// `limit rate [over] N/UNIT [burst M packets]` or `limit rate [over] N
/// BYTES/UNIT [burst M BYTES]` (`struct nft_limit_priv`): a token bucket
/// of nanoseconds, full when the rule is added.
#[derive(Debug)]
pub struct Limit {
    /// Packets, or bytes, per `unit`.
    pub rate: u64,
    /// The period in seconds (`second` 1 ... `week` 604800).
    pub unit: u64,
    /// The burst: packets (nft sends 5 when none is given), or bytes.
    pub burst: u64,
    /// A byte rate (`NFT_LIMIT_PKT_BYTES`).
    pub bytes: bool,
    /// `over` (`NFT_LIMIT_F_INV`): matches beyond the rate.
    pub over: bool,
    tokens_max: u64,
    /// (`last`, `tokens`): `None` until the first packet (the bucket is
    /// full then, as at the rule's creation).
    state: parking_lot::Mutex<Option<(u64, u64)>>,
}

const NSEC_PER_SEC: u64 = 1_000_000_000;

impl Limit {
    /// Kernel: `nft_limit_init()`, net/netfilter/nft_limit.c: the bucket
    /// holds `nsecs / rate * burst` ns for packets, `(rate + burst) *
    /// nsecs / rate` for bytes; a rate of 0 is `EINVAL`, an overflow
    /// `EOVERFLOW`.
    pub fn new(
        rate: u64,
        unit: u64,
        burst: u64,
        bytes: bool,
        over: bool,
    ) -> Result<Arc<Limit>, super::NftError> {
        use super::NftError::{Inval, Overflow};
        let nsecs = unit.checked_mul(NSEC_PER_SEC).ok_or(Overflow)?;
        if rate == 0 {
            return Err(Inval("limit rate 0"));
        }
        rate.checked_add(burst).ok_or(Overflow)?;
        let tokens_max = if bytes {
            let t = (rate + burst).checked_mul(nsecs).ok_or(Overflow)?;
            t / rate
        } else {
            (nsecs / rate).checked_mul(burst).ok_or(Overflow)?
        };
        Ok(Arc::new(Limit {
            rate,
            unit,
            burst,
            bytes,
            over,
            tokens_max,
            state: parking_lot::Mutex::new(None),
        }))
    }

    /// Kernel: `nft_limit_eval()` with the cost of `nft_limit_pkts_eval()`
    /// (`nsecs / rate`) or `nft_limit_bytes_eval()` (`nsecs * len /
    /// rate`): whether the rule goes on (within the rate; `over`: beyond
    /// it) for a packet of `len` bytes at `now` (ns). A dry run takes no
    /// tokens.
    pub fn eval(&self, len: usize, now: u64, dry: bool) -> bool {
        let nsecs = self.unit * NSEC_PER_SEC;
        let cost = if self.bytes {
            ((u128::from(nsecs) * len as u128) / u128::from(self.rate)).min(u128::from(u64::MAX))
                as u64
        } else {
            nsecs / self.rate
        };
        let mut st = self.state.lock();
        let (last, tokens) = st.unwrap_or((now, self.tokens_max));
        let tokens = tokens
            .saturating_add(now.saturating_sub(last))
            .min(self.tokens_max);
        let ok = tokens >= cost;
        if !dry {
            *st = Some((now.max(last), if ok { tokens - cost } else { tokens }));
        }
        ok != self.over
    }
}

/// `log`'s levels (syslog's, and `audit`), by number.
pub const LOG_LEVELS: &[(&str, u8)] = &[
    ("emerg", 0),
    ("alert", 1),
    ("crit", 2),
    ("err", 3),
    ("warn", 4),
    ("notice", 5),
    ("info", 6),
    ("debug", 7),
    ("audit", 8),
];

/// `log flags tcp sequence` (`NF_LOG_TCPSEQ`).
pub const LOG_TCPSEQ: u8 = 0x01;
/// `log flags tcp options` (`NF_LOG_TCPOPT`).
pub const LOG_TCPOPT: u8 = 0x02;
/// `log flags ip options` (`NF_LOG_IPOPT`).
pub const LOG_IPOPT: u8 = 0x04;
/// `log flags skuid` (`NF_LOG_UID`).
pub const LOG_UID: u8 = 0x08;
/// `log flags ether` (`NF_LOG_MACDECODE`).
pub const LOG_MACDECODE: u8 = 0x20;
/// `log flags all` (`NF_LOG_MASK`).
pub const LOG_ALL: u8 = 0x2f;

/// A `log` statement (`struct nft_log`): the kernel log (`level`, default
/// `warn`) or, with `group`, nflog.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Log {
    /// `prefix "..."`.
    pub prefix: Option<String>,
    /// `level L` (index in [`LOG_LEVELS`]); `None`: not given (warn).
    pub level: Option<u8>,
    /// `group N` (nflog).
    pub group: Option<u16>,
    /// `snaplen N`.
    pub snaplen: Option<u32>,
    /// `queue-threshold N`.
    pub qthreshold: Option<u16>,
    /// `flags ...` ([`LOG_ALL`] and its bits).
    pub flags: u8,
}

/// What a `reject` sends (`enum nft_reject_types`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// `NFT_REJECT_ICMP_UNREACH`: a destination unreachable of this code
    /// (`reject` alone: port unreachable, 3).
    Icmp(u8),
    /// `NFT_REJECT_TCP_RST` (`with tcp reset`): nft adds `meta l4proto
    /// tcp`, so a UDP datagram does not match it.
    TcpReset,
}

/// The ICMP codes `reject with icmp NAME` takes (nft's `icmp_code`
/// type), by code.
pub const ICMP_CODES: &[(&str, u8)] = &[
    ("net-unreachable", 0),
    ("host-unreachable", 1),
    ("prot-unreachable", 2),
    ("port-unreachable", 3),
    ("frag-needed", 4),
    ("net-prohibited", 9),
    ("host-prohibited", 10),
    ("admin-prohibited", 13),
];

/// One statement of a rule, in the order written.
#[derive(Clone, Debug)]
pub enum Stmt {
    /// A match: the rule goes on only when it holds.
    Match(Match),
    /// `counter`.
    Counter(Arc<Counter>),
    /// `meta mark set N`.
    MarkSet(u32),
    /// `meta mark set KEY map { ... }` / `map @NAME` (a key not in the
    /// map: the rule does not match).
    MarkSetMap(Vec<Key>, MapRef),
    /// `meta priority set MAJOR:MINOR`.
    PrioritySet(u32),
    /// `ip dscp set N`.
    DscpSet(u8),
    /// `ip ttl set N`.
    TtlSet(u8),
    /// `KEY set V` of another header field (`ip daddr set`, `udp dport
    /// set`, ...).
    FieldSet(Key, u32),
    /// `snat`, `dnat`, `masquerade`.
    Nat(Nat),
    /// `snat`, `dnat`, `redirect` to the target a map gives.
    NatMap(NatMap),
    /// `reject [with icmp CODE | with tcp reset]`: terminal, drops.
    Reject(Reject),
    /// `limit rate [over] ...`: its token bucket, kept across changes.
    Limit(Arc<Limit>),
    /// `log [prefix "..."] [level L] [group N] ...`.
    Log(Arc<Log>),
    /// `add @set { KEY [. KEY] [timeout T] }`, `update @set { ... }`.
    SetUpdate(SetUpdate),
    /// A verdict.
    Verdict(RuleVerdict),
}

/// Kernel: `nft_dynset` (`NFT_DYNSET_OP_ADD`, `NFT_DYNSET_OP_UPDATE`): the
/// key built from the packet goes into a named set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetUpdate {
    /// `update` (refreshes an element's timeout) rather than `add`.
    pub update: bool,
    /// The set's name.
    pub set: String,
    /// The key's parts.
    pub keys: Vec<Key>,
    /// `timeout T` in ms, in whole jiffies (0: none).
    pub timeout: u64,
}

/// A rule of a chain.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Its handle (`-a`).
    pub handle: u64,
    /// Its statements.
    pub stmts: Vec<Stmt>,
}

#[cfg(test)]
mod counter_tests {
    use super::Counter;

    #[test]
    fn a_counter_sums_what_threads_add_to_their_shards() {
        let c = Counter::new(5, 500);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| (0..1000).for_each(|_| c.add(10)));
            }
        });
        c.add(1);
        assert_eq!(c.get(), (5 + 4000 + 1, 500 + 40_000 + 1));
    }
}
