//! Qdisc descriptions in tc's syntax, and building qdiscs from them.
//!
//! Stands for the user-space half of `tc qdisc add|replace`: iproute2's
//! `tc/tc_qdisc.c` (find the kind, hand the remaining words to its parser) and the
//! per-kind option parsers (`tc/q_fifo.c`), together with the kernel defaults
//! applied when an option is absent (`__fifo_init`, `pfifo_fast_init`).
//!
//! A [`QdiscSpec`] is what follows `root`/`handle` on a tc command line, e.g.
//! `pfifo limit 100` in `tc qdisc replace dev eth0 root pfifo limit 100`:
//!
//! | kind              | options          | tc's parser           |
//! |-------------------|------------------|-----------------------|
//! | `pfifo_fast`      | none             | (no option parsing)   |
//! | `pfifo`           | `limit PACKETS`  | `fifo_parse_opt`      |
//! | `pfifo_head_drop` | `limit PACKETS`  | `fifo_parse_opt`      |
//! | `bfifo`           | `limit BYTES`    | `fifo_parse_opt`      |
//! | `noqueue`         | none             | (no option parsing)   |
//!
//! Kinds and keywords match exactly (case-sensitive), as in tc. Like tc, every
//! FIFO limit is read with `get_size`, so `pfifo limit 1k` means 1024 packets and
//! `bfifo limit 32kb` 32768 bytes, and values above `u32::MAX` are refused; a
//! repeated keyword takes its last value.
//!
//! The parser is a table of kinds (`KINDS`), each with its own option parser
//! built on a small keyword reader; a new qdisc adds a variant, a parser and a
//! table row.

use std::fmt;
use std::str::FromStr;

use super::codel::{CodelParams, CodelQdisc};
use super::fifo::{Bfifo, Pfifo, PfifoHeadDrop};
use super::fq::{Fq, FqSpec};
use super::fq_codel::{FqCodel, FqCodelConfig};
use super::htb::Htb;
use super::netem::{Netem, NetemSpec};
use super::prio::Prio;
use super::rate::{LinkLayer, RateCfg};
use super::red::{Red, RedConfig};
use super::sfq::{Sfq, SfqConfig};
use super::tbf::{Tbf, TbfConfig};
use super::ToFree;
use super::{Noqueue, PfifoFast, Qdisc};
use crate::units::{format_size, parse_rate, parse_size, parse_time, UnitError};

/// A parsed tc qdisc description (kind and options). `None` options take the
/// kernel's defaults in [`QdiscSpec::build`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QdiscSpec {
    /// `pfifo_fast`: three strict-priority bands of `txqueuelen` packets each.
    PfifoFast,
    /// `pfifo [limit PACKETS]`: default `txqueuelen`.
    Pfifo {
        /// Packet limit.
        limit: Option<u32>,
    },
    /// `pfifo_head_drop [limit PACKETS]`: default `txqueuelen`.
    PfifoHeadDrop {
        /// Packet limit.
        limit: Option<u32>,
    },
    /// `bfifo [limit BYTES]`: default `txqueuelen * psched_mtu`.
    Bfifo {
        /// Byte limit (at most `u32::MAX`, the kernel's `sch->limit`).
        limit: Option<u64>,
    },
    /// `noqueue`: no queue; packets go straight to the driver.
    Noqueue,
    /// `tbf rate R burst B (limit L | latency T) [peakrate P mtu M] [mpu N]
    /// [overhead N] [linklayer atm|ethernet]`: what tc sends for it.
    Tbf(TbfSpec),
    /// `codel [limit PACKETS] [target TIME] [interval TIME] [ecn|noecn]
    /// [ce_threshold TIME]`: what tc sends (absent: the kernel's default,
    /// or on a change the value kept).
    Codel(CodelSpec),
    /// `fq_codel [limit PACKETS] [flows N] [quantum BYTES] [target TIME]
    /// [interval TIME] [memory_limit BYTES] [ecn|noecn] [ce_threshold TIME]
    /// [ce_threshold_selector V/M] [drop_batch N]`: what tc sends.
    FqCodel(FqCodelSpec),
    /// `prio [bands N] [priomap P0 P1 ...]`: what tc sends (bands 3 and
    /// `pfifo_fast`'s map unless given; a partial map replaces the first
    /// entries).
    Prio {
        /// Bands.
        bands: u32,
        /// Priority to band.
        priomap: [u8; 16],
    },
    /// `mq`: the root of a multi-queue device, a child per transmit queue
    /// (the default qdisc); not a qdisc of one queue itself.
    Mq,
    /// `red limit BYTES [min BYTES] [max BYTES] avpkt BYTES [burst N]
    /// [probability P] [bandwidth RATE] [ecn] [harddrop] [nodrop]
    /// [adaptive]`: the words with tc's defaults applied.
    Red(RedSpec),
    /// `sfq [limit N] [perturb SECS] [quantum BYTES] [divisor N] [flows N]
    /// [depth N] [headdrop]`: what tc sends (`None`: no options at all).
    Sfq(Option<SfqSpec>),
    /// `htb [default MINOR] [r2q N] [direct_qlen P]`: what tc sends.
    Htb(HtbSpec),
    /// `netem [limit N] [delay ...] [loss ...] [duplicate ...] ...`: what
    /// tc sends ([`NetemSpec`]).
    Netem(NetemSpec),
    /// `fq [limit N] [flow_limit N] [quantum B] [maxrate R] ...`: what tc
    /// sends ([`FqSpec`]).
    Fq(FqSpec),
}

/// The options of an `htb` as tc sends them (`struct tc_htb_glob`,
/// `TCA_HTB_DIRECT_QLEN`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HtbSpec {
    /// The default class's minor (`default`, hexadecimal in tc).
    pub defcls: u32,
    /// `r2q`: quanta are `rate / r2q` (10).
    pub r2q: u32,
    /// `direct_qlen` (absent: the device's `tx_queue_len`).
    pub direct_qlen: Option<u32>,
}

/// The options of an `sfq` as tc sends them (0: not given).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SfqSpec {
    /// Packets.
    pub limit: u32,
    /// Bytes.
    pub quantum: u32,
    /// Seconds.
    pub perturb: i32,
    /// Buckets.
    pub divisor: u32,
    /// Slots.
    pub flows: u32,
    /// Packets per flow.
    pub depth: u32,
    /// Head drop.
    pub headdrop: bool,
    /// Per-flow RED (`redflowlimit`, `min`, `max`, ...) as tc works it out.
    pub red: Option<SfqRed>,
}

/// Per-flow RED of an `sfq` as tc sends it (`struct tc_sfq_qopt_v1`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SfqRed {
    /// `redflowlimit`, bytes (tc requires it; the kernel keeps it not).
    pub limit: u32,
    /// Thresholds, bytes.
    pub qth_min: u32,
    /// See `qth_min`.
    pub qth_max: u32,
    /// EWMA weight `2^-Wlog`.
    pub wlog: u8,
    /// See [`RedConfig::plog`].
    pub plog: u8,
    /// `probability * 2^32`.
    pub max_p: u32,
    /// `TC_RED_ECN`, `TC_RED_HARDDROP`.
    pub flags: u8,
}

impl SfqRed {
    /// What the kernel's `red_set_parms()` is given.
    pub fn config(&self) -> RedConfig {
        RedConfig {
            limit: self.limit,
            qth_min: self.qth_min,
            qth_max: self.qth_max,
            wlog: self.wlog,
            plog: self.plog,
            scell_log: 0,
            stab: [0; 256],
            max_p: self.max_p,
            flags: self.flags,
        }
    }
}

impl SfqSpec {
    /// Kernel: `sfq_change()` at creation: the checks, then the defaults
    /// adjusted (flows within the divisor and the limit, the limit within
    /// depth times flows).
    fn config(spec: Option<&SfqSpec>, psched_mtu: u32) -> Result<SfqConfig, SpecError> {
        use super::sfq::{DEFAULT_DIVISOR, DEFAULT_FLOWS, MAX_DEPTH, MAX_FLOWS};
        let mut c = SfqConfig {
            limit: MAX_DEPTH,
            quantum: psched_mtu.clamp(256, 1 << 20),
            depth: MAX_DEPTH,
            divisor: DEFAULT_DIVISOR,
            flows: DEFAULT_FLOWS,
            headdrop: false,
            perturb: 0,
            red: None,
        };
        let Some(s) = spec else {
            return Ok(c);
        };
        c.red = s.red.map(|r| r.config());
        if s.divisor != 0 && (!s.divisor.is_power_of_two() || s.divisor > 65536) {
            return Err(SpecError::KernelInvalid);
        }
        if s.quantum > 1 << 20 {
            return Err(SpecError::Refused(
                "Error: sch_sfq: quantum too large.".into(),
            ));
        }
        if s.perturb < 0 || s.perturb > i32::MAX / 1000 {
            return Err(SpecError::Refused(
                "Error: sch_sfq: invalid perturb period.".into(),
            ));
        }
        if s.quantum != 0 {
            c.quantum = s.quantum.max(256);
        }
        if s.flows != 0 {
            c.flows = s.flows.min(MAX_FLOWS);
        }
        if s.divisor != 0 {
            c.divisor = s.divisor;
            c.flows = c.flows.min(s.divisor);
        }
        if s.depth != 0 {
            c.depth = s.depth.min(MAX_DEPTH);
        }
        c.headdrop = s.headdrop;
        c.perturb = s.perturb;
        if s.limit != 0 {
            c.limit = s.limit.min(c.depth * c.flows);
            c.flows = c.flows.min(c.limit);
        }
        if c.limit == 1 {
            return Err(SpecError::Refused("Error: sch_sfq: invalid limit.".into()));
        }
        Ok(c)
    }
}

/// A `red` as tc reads it, its defaults applied; [`RedSpec::config`] is
/// what tc then works out and sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedSpec {
    /// Bytes of the inner queue.
    pub limit: u32,
    /// Thresholds, bytes.
    pub min: u32,
    /// See `min`.
    pub max: u32,
    /// Average packet size, bytes.
    pub avpkt: u32,
    /// Packets of burst the average follows.
    pub burst: u32,
    /// `probability`, as the bits of its `f64`.
    pub probability_bits: u64,
    /// Bandwidth, bytes per second (for the idle table).
    pub rate: u64,
    /// `FLAG_*` of [`super::red`].
    pub flags: u8,
}

impl RedSpec {
    /// `Wlog`, `Plog`, `Scell_log`, the idle table and `max_P` as `tc_red.c`
    /// computes them.
    pub fn config(&self) -> Result<RedConfig, SpecError> {
        let refused = |m: &str| SpecError::Refused(m.to_owned());
        let prob = f64::from_bits(self.probability_bits);
        let wlog = red_eval_ewma(self.min, self.burst, self.avpkt)?;
        let plog = red_eval_p(self.min, self.max, prob)
            .ok_or_else(|| refused("RED: failed to calculate probability."))?;
        let mut stab = [0u8; 256];
        let scell_log = red_eval_idle_damping(wlog, self.avpkt, self.rate, &mut stab)
            .ok_or_else(|| refused("RED: failed to calculate idle damping table."))?;
        Ok(RedConfig {
            limit: self.limit,
            qth_min: self.min,
            qth_max: self.max,
            wlog,
            plog,
            scell_log,
            stab,
            max_p: (prob * 4_294_967_296.0) as u32,
            flags: self.flags,
        })
    }
}

/// An `fq_codel` as tc's `fq_codel_parse_opt()` leaves it (absent: not
/// sent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FqCodelSpec {
    /// The CoDel part.
    pub codel: CodelSpec,
    /// Flow queues (only at creation).
    pub flows: Option<u32>,
    /// DRR quantum, bytes.
    pub quantum: Option<u32>,
    /// Buffer bytes.
    pub memory_limit: Option<u32>,
    /// Packets dropped per overflow.
    pub drop_batch: Option<u32>,
    /// `ce_threshold_selector VALUE/MASK`.
    pub ce_selector: Option<(u8, u8)>,
}

impl FqCodelSpec {
    /// Kernel: `fq_codel_change()`: checks, then the attributes applied to
    /// `c`; `exists` for a change of a qdisc whose flows are allocated.
    fn apply(&self, c: &mut FqCodelConfig, exists: bool) -> Result<(), SpecError> {
        use super::fq_codel::{FLOWS_MAX, QUANTUM_MAX, QUANTUM_MIN};
        if let Some(f) = self.flows {
            if exists || f == 0 || f > FLOWS_MAX {
                return Err(SpecError::KernelInvalid);
            }
        }
        let quantum = self.quantum.map(|q| q.max(QUANTUM_MIN));
        if quantum.is_some_and(|q| q > QUANTUM_MAX) {
            return Err(SpecError::Refused("Error: Invalid quantum.".into()));
        }
        if let Some(f) = self.flows {
            c.flows = f;
        }
        self.codel.apply(&mut c.limit, &mut c.codel);
        if let Some((v, m)) = self.ce_selector {
            (c.codel.ce_threshold_selector, c.codel.ce_threshold_mask) = (v, m);
        }
        if let Some(q) = quantum {
            c.quantum = q;
        }
        if let Some(b) = self.drop_batch {
            c.drop_batch = b.max(1);
        }
        if let Some(m) = self.memory_limit {
            c.memory_limit = m.min(1 << 31);
        }
        Ok(())
    }
}

/// A `codel` as tc's `codel_parse_opt()` leaves it; times in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodelSpec {
    /// Packets (`TCA_CODEL_LIMIT`, not sent when 0).
    pub limit: Option<u32>,
    /// Target delay.
    pub target_us: Option<u32>,
    /// Interval.
    pub interval_us: Option<u32>,
    /// CE-marking threshold.
    pub ce_threshold_us: Option<u32>,
    /// ECN marking.
    pub ecn: Option<bool>,
}

impl CodelSpec {
    /// Kernel: `codel_change()`'s attributes applied to `limit` and `p`.
    fn apply(&self, limit: &mut u32, p: &mut CodelParams) {
        use super::codel::us_to_codel;
        if let Some(v) = self.target_us {
            p.target = us_to_codel(v);
        }
        if let Some(v) = self.ce_threshold_us {
            p.ce_threshold = us_to_codel(v);
        }
        if let Some(v) = self.interval_us {
            p.interval = us_to_codel(v);
        }
        if let Some(v) = self.limit {
            *limit = v;
        }
        if let Some(v) = self.ecn {
            p.ecn = v;
        }
    }
}

/// A `tbf` as tc's `tbf_parse_opt()` leaves it: the values it sends
/// (`TCA_TBF_PARMS`, `TCA_TBF_RATE64`, `TCA_TBF_BURST`, `TCA_TBF_PBURST`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TbfSpec {
    /// Rate, bytes per second.
    pub rate: u64,
    /// Peak rate, bytes per second; 0 for none.
    pub peakrate: u64,
    /// Bucket size, bytes.
    pub burst: u32,
    /// Peak bucket size (`mtu`/`minburst`), bytes; 0 for none.
    pub mtu: u32,
    /// Inner queue limit, bytes (from `limit`, or worked out from
    /// `latency`: `rate * latency + burst`, the peak's when smaller).
    pub limit: u32,
    /// Minimum packet unit, bytes.
    pub mpu: u16,
    /// Per-packet overhead, bytes.
    pub overhead: u16,
    /// Link layer.
    pub linklayer: LinkLayer,
}

impl TbfSpec {
    /// The qdisc's configuration (what the kernel makes of the request).
    pub fn config(&self) -> TbfConfig {
        let cfg = |rate| RateCfg::new(rate, self.overhead, self.mpu, self.linklayer);
        TbfConfig {
            rate: cfg(self.rate),
            peak: (self.peakrate != 0).then(|| cfg(self.peakrate)),
            burst: self.burst,
            pburst: self.mtu,
            limit: self.limit,
        }
    }
}

/// Why a qdisc description could not be parsed. Each variant names the word.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// No words at all.
    #[error("empty qdisc description")]
    Empty,
    /// The first word is not a qdisc kind ipxmit knows.
    #[error("unknown qdisc kind \"{0}\" (known: {known})", known = kind_names())]
    UnknownKind(String),
    /// A word the kind does not take.
    #[error("{kind}: unknown parameter \"{word}\"")]
    UnknownKeyword {
        /// The qdisc kind.
        kind: &'static str,
        /// The word.
        word: String,
    },
    /// A keyword was the last word, without its value.
    #[error("{kind}: missing value for \"{keyword}\"")]
    MissingValue {
        /// The qdisc kind.
        kind: &'static str,
        /// The keyword.
        keyword: &'static str,
    },
    /// A keyword's value could not be parsed.
    #[error("{kind}: illegal value for \"{keyword}\": {source}")]
    BadValue {
        /// The qdisc kind.
        kind: &'static str,
        /// The keyword.
        keyword: &'static str,
        /// What was wrong with the value (names the value).
        source: UnitError,
    },
    /// A value tc cannot read (`explain1`): `tbf: illegal value for "rate": "xyz"`.
    #[error("{kind}: illegal value for \"{keyword}\": \"{value}\"")]
    Illegal {
        /// The qdisc kind.
        kind: &'static str,
        /// The keyword.
        keyword: String,
        /// The value as given.
        value: String,
    },
    /// A keyword given twice where tc refuses that.
    #[error("{kind}: duplicate \"{what}\" specification")]
    Duplicate {
        /// The qdisc kind.
        kind: &'static str,
        /// The keyword(s), as tc names them (`buffer/burst/maxburst`).
        what: &'static str,
    },
    /// Options that exclude each other, or are missing: tc's own lines
    /// (several, one per problem, as tc prints them all at once).
    #[error("{0}")]
    Refused(String),
    /// What the kernel refuses (`tc` prints the netlink error).
    #[error("RTNETLINK answers: Invalid argument")]
    KernelInvalid,
    /// What the kernel cannot do (`EOPNOTSUPP`: `mq` on a device of one
    /// queue).
    #[error("RTNETLINK answers: Operation not supported")]
    NotSupported,
    /// A keyword's value parsed but is outside the range the kernel accepts.
    #[error("{kind}: illegal value for \"{keyword}\": \"{value}\" is above {max}")]
    OutOfRange {
        /// The qdisc kind.
        kind: &'static str,
        /// The keyword.
        keyword: &'static str,
        /// The value as given.
        value: String,
        /// The largest value allowed.
        max: u64,
    },
}

/// One qdisc kind: its tc name and its option parser.
struct Kind {
    name: &'static str,
    parse: fn(&mut Options<'_>) -> Result<QdiscSpec, SpecError>,
}

/// The names of every kind [`QdiscSpec::parse`] knows, comma-separated.
pub fn kind_names() -> String {
    KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

/// Every kind [`QdiscSpec::parse`] knows.
const KINDS: &[Kind] = &[
    Kind {
        name: "pfifo_fast",
        parse: parse_pfifo_fast,
    },
    Kind {
        name: "pfifo",
        parse: parse_pfifo,
    },
    Kind {
        name: "pfifo_head_drop",
        parse: parse_pfifo_head_drop,
    },
    Kind {
        name: "bfifo",
        parse: parse_bfifo,
    },
    Kind {
        name: "noqueue",
        parse: parse_noqueue,
    },
    Kind {
        name: "tbf",
        parse: parse_tbf,
    },
    Kind {
        name: "codel",
        parse: parse_codel,
    },
    Kind {
        name: "fq_codel",
        parse: parse_fq_codel,
    },
    Kind {
        name: "prio",
        parse: parse_prio,
    },
    Kind {
        name: "mq",
        parse: parse_mq,
    },
    Kind {
        name: "red",
        parse: parse_red,
    },
    Kind {
        name: "sfq",
        parse: parse_sfq,
    },
    Kind {
        name: "htb",
        parse: parse_htb,
    },
    Kind {
        name: "netem",
        parse: parse_netem_words,
    },
    Kind {
        name: "fq",
        parse: parse_fq_words,
    },
];

/// The words after the kind, read keyword by keyword (tc's `NEXT_ARG`).
struct Options<'a> {
    kind: &'static str,
    words: std::slice::Iter<'a, &'a str>,
}

impl<'a> Options<'a> {
    /// The next keyword, or `None` at the end.
    fn next_keyword(&mut self) -> Option<&'a str> {
        self.words.next().copied()
    }

    /// The value following `keyword`.
    fn value(&mut self, keyword: &'static str) -> Result<&'a str, SpecError> {
        self.words.next().copied().ok_or(SpecError::MissingValue {
            kind: self.kind,
            keyword,
        })
    }

    /// The error for a word the kind does not take.
    fn unknown(&self, word: &str) -> SpecError {
        SpecError::UnknownKeyword {
            kind: self.kind,
            word: word.to_owned(),
        }
    }

    /// The value of `keyword` read as tc's `get_size` does (a 32-bit size).
    fn size_u32(&mut self, keyword: &'static str) -> Result<u32, SpecError> {
        let word = self.value(keyword)?;
        let kind = self.kind;
        let v = parse_size(word).map_err(|source| SpecError::BadValue {
            kind,
            keyword,
            source,
        })?;
        u32::try_from(v).map_err(|_| SpecError::OutOfRange {
            kind,
            keyword,
            value: word.to_owned(),
            max: u64::from(u32::MAX),
        })
    }
}

/// Options of kinds that take none (tc: "does not support option parsing").
fn parse_no_options(o: &mut Options<'_>, spec: QdiscSpec) -> Result<QdiscSpec, SpecError> {
    match o.next_keyword() {
        Some(word) => Err(o.unknown(word)),
        None => Ok(spec),
    }
}

fn parse_pfifo_fast(o: &mut Options<'_>) -> Result<QdiscSpec, SpecError> {
    parse_no_options(o, QdiscSpec::PfifoFast)
}

fn parse_noqueue(o: &mut Options<'_>) -> Result<QdiscSpec, SpecError> {
    parse_no_options(o, QdiscSpec::Noqueue)
}

/// tc's `fifo_parse_opt()`: `[limit SIZE]`, shared by the three FIFOs.
fn parse_fifo_limit(o: &mut Options<'_>) -> Result<Option<u32>, SpecError> {
    let mut limit = None;
    while let Some(word) = o.next_keyword() {
        match word {
            "limit" => limit = Some(o.size_u32("limit")?),
            _ => return Err(o.unknown(word)),
        }
    }
    Ok(limit)
}

fn parse_pfifo(o: &mut Options<'_>) -> Result<QdiscSpec, SpecError> {
    Ok(QdiscSpec::Pfifo {
        limit: parse_fifo_limit(o)?,
    })
}

fn parse_pfifo_head_drop(o: &mut Options<'_>) -> Result<QdiscSpec, SpecError> {
    Ok(QdiscSpec::PfifoHeadDrop {
        limit: parse_fifo_limit(o)?,
    })
}

fn parse_bfifo(o: &mut Options<'_>) -> Result<QdiscSpec, SpecError> {
    Ok(QdiscSpec::Bfifo {
        limit: parse_fifo_limit(o)?.map(u64::from),
    })
}

/// tc's `codel_parse_opt()`: exact keywords, any order, the last value
/// of a repeated one kept; `limit`/`target`/`interval` of 0 are not sent.
fn parse_codel(o: &mut Options<'_>) -> Result<QdiscSpec, SpecError> {
    let mut c = CodelSpec::default();
    while let Some(word) = o.next_keyword() {
        match word {
            "limit" => {
                let v = o.value("limit")?;
                let n = parse_unsigned(v).ok_or_else(|| codel_illegal("limit"))?;
                c.limit = (n != 0).then_some(n);
            }
            "target" => c.target_us = codel_time_us(o, "target")?.filter(|&us| us != 0),
            "interval" => c.interval_us = codel_time_us(o, "interval")?.filter(|&us| us != 0),
            "ce_threshold" => c.ce_threshold_us = codel_time_us(o, "ce_threshold")?,
            "ecn" => c.ecn = Some(true),
            "noecn" => c.ecn = Some(false),
            "help" => return Err(SpecError::Refused(CODEL_USAGE.into())),
            other => {
                return Err(SpecError::Refused(format!(
                    "What is \"{other}\"?\n{CODEL_USAGE}"
                )))
            }
        }
    }
    Ok(QdiscSpec::Codel(c))
}

/// tc's `fq_codel_parse_opt()`: as `codel`'s, with `flows`, `quantum`,
/// `memory_limit`, `drop_batch` and `ce_threshold_selector`.
fn parse_fq_codel(o: &mut Options<'_>) -> Result<QdiscSpec, SpecError> {
    let mut q = FqCodelSpec::default();
    let mut rest = Vec::new();
    while let Some(word) = o.next_keyword() {
        let slot = match word {
            "flows" => &mut q.flows,
            "quantum" => &mut q.quantum,
            "drop_batch" => &mut q.drop_batch,
            "memory_limit" => {
                let v = o.value("memory_limit")?;
                let m = parse_size(v).ok().and_then(|m| u32::try_from(m).ok());
                q.memory_limit = Some(m.ok_or_else(|| codel_illegal("memory_limit"))?);
                continue;
            }
            "ce_threshold_selector" => {
                q.ce_selector = Some(ce_selector(o.value("ce_threshold_selector")?)?);
                continue;
            }
            "help" => return Err(SpecError::Refused(FQ_CODEL_USAGE.into())),
            "limit" | "target" | "interval" | "ce_threshold" | "ecn" | "noecn" => {
                rest.push(word);
                if !matches!(word, "ecn" | "noecn") {
                    rest.push(o.value("limit")?);
                }
                continue;
            }
            other => {
                return Err(SpecError::Refused(format!(
                    "What is \"{other}\"?\n{FQ_CODEL_USAGE}"
                )))
            }
        };
        let key = word;
        let v = o.value("flows")?;
        let n = parse_unsigned(v).ok_or_else(|| codel_illegal(key))?;
        *slot = (n != 0).then_some(n);
    }
    let mut sub = Options {
        kind: "fq_codel",
        words: rest.iter(),
    };
    if let QdiscSpec::Codel(c) = parse_codel(&mut sub)? {
        q.codel = c;
    }
    Ok(QdiscSpec::FqCodel(q))
}

/// `ce_threshold_selector VALUE/MASK` (the mask read first, as tc does).
fn ce_selector(v: &str) -> Result<(u8, u8), SpecError> {
    let (value, mask) = v
        .split_once('/')
        .ok_or_else(|| SpecError::Refused("Missing mask for \"ce_threshold_selector\"".into()))?;
    let byte = |s: &str| parse_unsigned(s).and_then(|n| u8::try_from(n).ok());
    let mask = byte(mask)
        .ok_or_else(|| SpecError::Refused("Illegal mask for \"ce_threshold_selector\"".into()))?;
    let value = byte(value).ok_or_else(|| codel_illegal("ce_threshold_selector"))?;
    Ok((value, mask))
}

/// tc's `explain()` for `fq_codel`.
const FQ_CODEL_USAGE: &str = "Usage: ... fq_codel\t[ limit PACKETS ] [ flows NUMBER ]\n[ memory_limit BYTES ]\n[ target TIME ] [ interval TIME ]\n[ quantum BYTES ] [ [no]ecn ]\n[ ce_threshold TIME ]\n[ ce_threshold_selector VALUE/MASK ]\n[ drop_batch SIZE ]";

/// tc's `prio_parse_opt()`: `bands N`, `priomap` then up to 16 bands,
/// `multiqueue` (refused here: one root per queue is not modelled).
fn parse_prio(o: &mut Options<'_>) -> Result<QdiscSpec, SpecError> {
    let (mut bands, mut priomap) = (3u32, super::prio::DEFAULT_PRIOMAP);
    let (mut pmap, mut idx) = (false, 0usize);
    let refused = |m: &str| SpecError::Refused(m.to_owned());
    while let Some(word) = o.next_keyword() {
        match word {
            "bands" => {
                let v = o.value("bands")?;
                bands = v
                    .parse::<i32>()
                    .ok()
                    .and_then(|b| u32::try_from(b).ok())
                    .ok_or_else(|| refused("Illegal \"bands\""))?;
            }
            "priomap" if pmap => return Err(refused("Error: duplicate priomap")),
            "priomap" => pmap = true,
            "help" => return Err(refused(PRIO_USAGE)),
            w if !pmap => return Err(refused(&format!("What is \"{w}\"?\n{PRIO_USAGE}"))),
            w => {
                let band = w
                    .parse::<u32>()
                    .map_err(|_| refused("Illegal \"priomap\" element"))?;
                if band >= bands {
                    return Err(refused("\"priomap\" element is out of bands"));
                }
                let slot = priomap
                    .get_mut(idx)
                    .ok_or_else(|| refused("\"priomap\" index > TC_PRIO_MAX=15"))?;
                *slot = band as u8;
                idx += 1;
            }
        }
    }
    Ok(QdiscSpec::Prio { bands, priomap })
}

/// tc's `explain()` for `prio`.
const PRIO_USAGE: &str = "Usage: ... prio bands NUMBER priomap P1 P2...[multiqueue]";

/// Kernel: `prio_tune()`'s checks: 2 to 16 bands, every map entry a band.
fn prio_check(bands: u32, priomap: &[u8; 16]) -> Result<(), SpecError> {
    use super::prio::{MAX_BANDS, MIN_BANDS};
    if !(MIN_BANDS..=MAX_BANDS).contains(&bands) || priomap.iter().any(|&b| u32::from(b) >= bands) {
        return Err(SpecError::KernelInvalid);
    }
    Ok(())
}

/// What tc's `red_parse_opt()` reads before working out the rest.
#[derive(Default)]
struct RedWords {
    limit: u32,
    min: u32,
    max: u32,
    avpkt: u32,
    burst: u32,
    probability: Option<f64>,
    rate: u64,
    flags: u8,
}

/// tc's `red_parse_opt()`: the words, then the defaults (`max` = 3 `min`
/// or a quarter of `limit`, `min` = a third of `max`, `burst` = (2 `min` +
/// `max`) / 3 `avpkt`, 10 Mbit/s), then `Wlog`, `Plog`, `Scell_log` and
/// the idle table as `tc_red.c` computes them.
fn parse_red(o: &mut Options<'_>) -> Result<QdiscSpec, SpecError> {
    use super::red::{FLAG_ADAPTIVE, FLAG_ECN, FLAG_HARDDROP, FLAG_NODROP};
    let mut w = RedWords::default();
    while let Some(word) = o.next_keyword() {
        match word {
            "limit" | "min" | "max" | "avpkt" => {
                let v = o.value("limit")?;
                let n = parse_size(v)
                    .ok()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| codel_illegal(word))?;
                *match word {
                    "limit" => &mut w.limit,
                    "min" => &mut w.min,
                    "max" => &mut w.max,
                    _ => &mut w.avpkt,
                } = n;
            }
            "burst" => {
                w.burst = parse_unsigned(o.value("burst")?).ok_or_else(|| codel_illegal("burst"))?
            }
            "probability" => {
                let v = o.value("probability")?;
                w.probability = Some(v.parse().map_err(|_| codel_illegal("probability"))?);
            }
            "bandwidth" => {
                let v = o.value("bandwidth")?;
                w.rate = parse_rate(v).map_err(|_| codel_illegal("bandwidth"))? / 8;
            }
            "ecn" => w.flags |= FLAG_ECN,
            "harddrop" => w.flags |= FLAG_HARDDROP,
            "nodrop" => w.flags |= FLAG_NODROP,
            "adaptive" | "adaptative" => w.flags |= FLAG_ADAPTIVE,
            "help" => return Err(SpecError::Refused(RED_USAGE.into())),
            other => {
                return Err(SpecError::Refused(format!(
                    "What is \"{other}\"?\n{RED_USAGE}"
                )))
            }
        }
    }
    red_config(w).map(QdiscSpec::Red)
}

/// tc's `explain()` for `red`.
const RED_USAGE: &str = "Usage: ... red\tlimit BYTES [min BYTES] [max BYTES] avpkt BYTES [burst PACKETS]\n\t\t[adaptive] [probability PROBABILITY] [bandwidth KBPS]\n\t\t[ecn] [harddrop] [nodrop]\n\t\t[qevent early_drop block IDX] [qevent mark block IDX]";

/// The defaults of `red_parse_opt()` applied to the words; the constants
/// worked out once to refuse what tc refuses.
fn red_config(mut w: RedWords) -> Result<RedSpec, SpecError> {
    if w.limit == 0 || w.avpkt == 0 {
        return Err(SpecError::Refused(
            "RED: Required parameter (limit, avpkt) is missing".into(),
        ));
    }
    if w.max == 0 {
        w.max = if w.min != 0 {
            w.min.wrapping_mul(3)
        } else {
            w.limit / 4
        };
    }
    if w.min == 0 {
        w.min = w.max / 3;
    }
    if w.burst == 0 {
        w.burst = (2 * w.min + w.max) / (3 * w.avpkt);
    }
    let spec = RedSpec {
        limit: w.limit,
        min: w.min,
        max: w.max,
        avpkt: w.avpkt,
        burst: w.burst,
        probability_bits: w.probability.unwrap_or(0.02).to_bits(),
        rate: if w.rate == 0 { 1_250_000 } else { w.rate },
        flags: w.flags,
    };
    spec.config()?;
    Ok(spec)
}

/// The words of a [`RedSpec`] as tc takes them.
fn fmt_red(f: &mut fmt::Formatter<'_>, r: &RedSpec) -> fmt::Result {
    use super::red::{FLAG_ADAPTIVE, FLAG_ECN, FLAG_HARDDROP, FLAG_NODROP};
    write!(
        f,
        " limit {} min {} max {} avpkt {} burst {} probability {:?} bandwidth {}bit",
        r.limit,
        r.min,
        r.max,
        r.avpkt,
        r.burst,
        f64::from_bits(r.probability_bits),
        r.rate * 8
    )?;
    for (flag, w) in [
        (FLAG_ECN, "ecn"),
        (FLAG_HARDDROP, "harddrop"),
        (FLAG_ADAPTIVE, "adaptive"),
        (FLAG_NODROP, "nodrop"),
    ] {
        if r.flags & flag != 0 {
            write!(f, " {w}")?;
        }
    }
    Ok(())
}

/// tc's `tc_red_eval_ewma()`: the smallest `Wlog` whose average reaches
/// `burst` packets of `avpkt` above `qmin`.
fn red_eval_ewma(qmin: u32, burst: u32, avpkt: u32) -> Result<u8, SpecError> {
    let a = f64::from(burst) + 1.0 - f64::from(qmin) / f64::from(avpkt);
    if a < 1.0 {
        let try_burst = 1 + qmin / avpkt;
        return Err(SpecError::Refused(format!(
            "tc_red_eval_ewma() burst {burst} is too small ? Try burst {try_burst}\nRED: failed to calculate EWMA constant."
        )));
    }
    for wlog in 1..32u8 {
        let w = 1.0 / f64::from(1u32 << wlog);
        if a <= (1.0 - (1.0 - w).powf(f64::from(burst))) / w {
            return Ok(wlog);
        }
    }
    Err(SpecError::Refused(
        "RED: failed to calculate EWMA constant.".into(),
    ))
}

/// tc's `tc_red_eval_P()`: the smallest `Plog` with `prob * 2^Plog / (qmax -
/// qmin) > 1`.
fn red_eval_p(qmin: u32, qmax: u32, prob: f64) -> Option<u8> {
    let i = qmax.wrapping_sub(qmin) as i32;
    if i == 0 {
        return Some(0);
    }
    if i < 0 {
        return None;
    }
    let mut p = prob / f64::from(i);
    for plog in 0..32u8 {
        if p > 1.0 {
            return Some(plog);
        }
        p *= 2.0;
    }
    None
}

/// tc's `tc_red_eval_idle_damping()`: `Scell_log` and the idle table, in
/// psched ticks of 64 ns (15.625 per microsecond).
fn red_eval_idle_damping(wlog: u8, avpkt: u32, rate: u64, stab: &mut [u8; 256]) -> Option<u8> {
    let xmit = ((1e6 * f64::from(avpkt) / rate as f64) as u32 as f64 * 15.625) as u32;
    let lw = -(1.0 - 1.0 / f64::from(1u32 << wlog)).ln() / f64::from(xmit);
    let maxtime = 31.0 / lw;
    let clog = (0..32u8).find(|&c| maxtime / f64::from(1u32 << c) < 512.0)?;
    stab[0] = 0;
    for (i, s) in stab.iter_mut().enumerate().take(255).skip(1) {
        let v = (((i as u64) << clog) as f64 * lw) as u64;
        *s = v.min(31) as u8;
    }
    stab[255] = 31;
    Some(clog)
}

/// The kernel's checks of a `red` (`red_check_params`, and `nodrop`
/// only with `ecn`).
fn red_kernel_check(c: &RedConfig) -> Result<RedConfig, SpecError> {
    use super::red::{check_params, FLAG_ECN, FLAG_NODROP};
    if !check_params(c) {
        return Err(SpecError::KernelInvalid);
    }
    if c.flags & FLAG_NODROP != 0 && c.flags & FLAG_ECN == 0 {
        return Err(SpecError::Refused(
            "Error: nodrop mode is only meaningful with ECN.".into(),
        ));
    }
    Ok(*c)
}

/// tc's `sfq_parse_opt()` (without per-flow RED): exact keywords, each
/// value as tc reads it, its messages (`depth` and `quantum` carry tc's own
/// wrong names).
fn parse_sfq(o: &mut Options<'_>) -> Result<QdiscSpec, SpecError> {
    let mut s = SfqSpec::default();
    let mut red: Option<SfqRedWords> = None;
    let mut any = false;
    let illegal = |k: &str| SpecError::Refused(format!("Illegal \"{k}\""));
    while let Some(word) = o.next_keyword() {
        any = true;
        match word {
            "quantum" => {
                let v = o.value("quantum")?;
                s.quantum = parse_size(v)
                    .ok()
                    .and_then(|q| u32::try_from(q).ok())
                    .ok_or_else(|| illegal("limit"))?;
            }
            "perturb" => {
                let v = o.value("perturb")?;
                s.perturb = v.parse().map_err(|_| illegal("perturb"))?;
            }
            "limit" => {
                s.limit = parse_unsigned(o.value("limit")?).ok_or_else(|| illegal("limit"))?;
                if s.limit < 2 {
                    return Err(SpecError::Refused("Illegal \"limit\", must be > 1".into()));
                }
            }
            "divisor" => {
                s.divisor = parse_unsigned(o.value("divisor")?).ok_or_else(|| illegal("divisor"))?
            }
            "flows" => {
                s.flows = parse_unsigned(o.value("flows")?).ok_or_else(|| illegal("flows"))?
            }
            "depth" => {
                s.depth = parse_unsigned(o.value("depth")?).ok_or_else(|| illegal("flows"))?
            }
            "headdrop" => s.headdrop = true,
            "redflowlimit" | "min" | "max" | "burst" | "avpkt" | "probability" | "ecn"
            | "harddrop" => sfq_red_word(o, word, &mut red)?,
            "help" => return Err(SpecError::Refused(SFQ_USAGE.into())),
            other => {
                return Err(SpecError::Refused(format!(
                    "What is \"{other}\"?\n{SFQ_USAGE}"
                )))
            }
        }
    }
    if let Some(r) = red {
        s.red = Some(sfq_red(r)?);
    }
    Ok(QdiscSpec::Sfq(any.then_some(s)))
}

/// The per-flow RED words of an `sfq` line, as tc reads them.
#[derive(Clone, Copy, Debug)]
struct SfqRedWords {
    limit: u32,
    qth_min: u32,
    qth_max: u32,
    burst: u32,
    avpkt: u32,
    probability: f64,
    flags: u8,
}

/// One per-flow RED word of `sfq_parse_opt()` (`word`, its value next).
fn sfq_red_word(
    o: &mut Options<'_>,
    word: &str,
    red: &mut Option<SfqRedWords>,
) -> Result<(), SpecError> {
    let r = red.get_or_insert(SfqRedWords {
        limit: 0,
        qth_min: 0,
        qth_max: 0,
        burst: 0,
        avpkt: 1000,
        probability: 0.02,
        flags: 0,
    });
    let illegal = |k: &str| SpecError::Refused(format!("Illegal \"{k}\""));
    let mut num = |k: &'static str| -> Result<u32, SpecError> {
        parse_unsigned(o.value(k)?).ok_or_else(|| illegal(k))
    };
    match word {
        "redflowlimit" => r.limit = num("redflowlimit")?,
        "min" => r.qth_min = num("min")?,
        "max" => r.qth_max = num("max")?,
        "burst" => r.burst = num("burst")?,
        "avpkt" => {
            let v = o.value("avpkt")?;
            let a = parse_size(v).ok().and_then(|a| u32::try_from(a).ok());
            r.avpkt = a.ok_or_else(|| illegal("avpkt"))?;
        }
        "probability" => {
            let v = o.value("probability")?;
            r.probability = v.parse().map_err(|_| illegal("probability"))?;
        }
        "ecn" => r.flags |= super::red::FLAG_ECN,
        _ => r.flags |= super::red::FLAG_HARDDROP,
    }
    Ok(())
}

/// What `sfq_parse_opt()` works out for per-flow RED: Floyd's default
/// thresholds, the burst, `Wlog`, `Plog`, `max_P`, and its refusals.
fn sfq_red(mut r: SfqRedWords) -> Result<SfqRed, SpecError> {
    let refused = |m: &str| SpecError::Refused(m.into());
    if r.limit == 0 {
        return Err(refused("Required parameter (redflowlimit) is missing"));
    }
    if r.qth_max == 0 {
        r.qth_max = r.limit / 4;
    }
    if r.qth_min == 0 {
        r.qth_min = r.qth_max / 3;
    }
    if r.burst == 0 {
        r.burst = (2 * r.qth_min + r.qth_max) / (3 * r.avpkt.max(1));
    }
    if r.qth_max > r.limit {
        return Err(refused("\"max\" is larger than \"limit\""));
    }
    if r.qth_min >= r.qth_max {
        return Err(refused("\"min\" is not smaller than \"max\""));
    }
    let wlog = red_eval_ewma(r.qth_min, r.burst, r.avpkt)
        .map_err(|_| refused("SFQ: failed to calculate EWMA constant."))?;
    let plog = red_eval_p(r.qth_min, r.qth_max, r.probability)
        .ok_or_else(|| refused("SFQ: failed to calculate probability."))?;
    Ok(SfqRed {
        limit: r.limit,
        qth_min: r.qth_min,
        qth_max: r.qth_max,
        wlog,
        plog,
        max_p: (r.probability * 4_294_967_296.0) as u32,
        flags: r.flags,
    })
}

/// tc's `explain()` for `sfq`.
const SFQ_USAGE: &str = "Usage: ... sfq\t[ limit NUMBER ] [ perturb SECS ] [ quantum BYTES ]\n\t\t[ divisor NUMBER ] [ flows NUMBER] [ depth NUMBER ]\n\t\t[ headdrop ]\n\t\t[ redflowlimit BYTES ] [ min BYTES ] [ max BYTES ]\n\t\t[ avpkt BYTES ] [ burst PACKETS ] [ probability P ]\n\t\t[ ecn ] [ harddrop ]";

/// The options of an [`SfqSpec`] as tc takes them.
fn fmt_sfq(f: &mut fmt::Formatter<'_>, s: &SfqSpec) -> fmt::Result {
    for (k, v) in [
        ("limit", s.limit),
        ("quantum", s.quantum),
        ("divisor", s.divisor),
        ("flows", s.flows),
        ("depth", s.depth),
    ] {
        if v != 0 {
            write!(f, " {k} {v}")?;
        }
    }
    if s.perturb != 0 {
        write!(f, " perturb {}", s.perturb)?;
    }
    if s.headdrop {
        write!(f, " headdrop")?;
    }
    if let Some(r) = &s.red {
        let p = f64::from(r.max_p) / 4_294_967_296.0;
        write!(
            f,
            " redflowlimit {} min {} max {} probability {p}",
            r.limit, r.qth_min, r.qth_max
        )?;
        if r.flags & super::red::FLAG_ECN != 0 {
            write!(f, " ecn")?;
        }
        if r.flags & super::red::FLAG_HARDDROP != 0 {
            write!(f, " harddrop")?;
        }
    }
    Ok(())
}

/// `mq` takes no option (tc's generic "does not support option parsing").
/// tc's `htb_parse_opt()`: `default` in hexadecimal, `r2q` and
/// `direct_qlen` in decimal, each a prefix; `debug` taken and ignored.
fn parse_htb(o: &mut Options<'_>) -> Result<QdiscSpec, SpecError> {
    let mut h = HtbSpec {
        defcls: 0,
        r2q: 10,
        direct_qlen: None,
    };
    while let Some(word) = o.next_keyword() {
        let illegal = |k: &str| SpecError::Refused(format!("Illegal \"{k}\"\n{HTB_USAGE}"));
        let mut num = |k: &'static str, radix| {
            let v = o.value(k).map_err(|_| incomplete())?;
            u32::from_str_radix(v.strip_prefix("0x").unwrap_or(v), radix).map_err(|_| illegal(k))
        };
        if matches(word, "r2q") {
            h.r2q = num("r2q", 10)?;
        } else if matches(word, "default") {
            h.defcls = num("default", 16)?;
        } else if matches(word, "direct_qlen") {
            h.direct_qlen = Some(num("direct_qlen", 10)?);
        } else if matches(word, "debug") {
            o.value("debug").map_err(|_| incomplete())?;
        } else if matches(word, "offload") {
            return Err(SpecError::Refused(
                "Error: hw-tc-offload ethtool feature flag must be on.".into(),
            ));
        } else {
            return Err(SpecError::Refused(format!(
                "What is \"{word}\"?\n{HTB_USAGE}"
            )));
        }
    }
    Ok(QdiscSpec::Htb(h))
}

/// tc's `netem_parse_opt()` ([`super::netem::parse_netem`]).
fn parse_netem_words(o: &mut Options<'_>) -> Result<QdiscSpec, SpecError> {
    let words: Vec<&str> = o.words.by_ref().copied().collect();
    super::netem::parse_netem(&words).map(QdiscSpec::Netem)
}

/// tc's `fq_parse_opt()` ([`super::fq::parse_fq`]).
fn parse_fq_words(o: &mut Options<'_>) -> Result<QdiscSpec, SpecError> {
    let words: Vec<&str> = o.words.by_ref().copied().collect();
    super::fq::parse_fq(&words).map(QdiscSpec::Fq)
}

/// tc's message for a keyword without its value.
fn incomplete() -> SpecError {
    SpecError::Refused("Command line is not complete. Try option \"help\"".into())
}

/// The usage tc prints after a refused htb option.
const HTB_USAGE: &str = "Usage: ... qdisc add ... htb [default N] [r2q N]\n\
     \x20                     [direct_qlen P] [offload]";

fn parse_mq(o: &mut Options<'_>) -> Result<QdiscSpec, SpecError> {
    parse_no_options(o, QdiscSpec::Mq)
}

/// tc's `Illegal "keyword"`.
fn codel_illegal(keyword: &str) -> SpecError {
    SpecError::Refused(format!("Illegal \"{keyword}\""))
}

/// The time after `keyword` in whole microseconds (tc's `get_time`).
fn codel_time_us(o: &mut Options<'_>, keyword: &'static str) -> Result<Option<u32>, SpecError> {
    let v = o.value(keyword)?;
    let d = parse_time(v).map_err(|_| codel_illegal(keyword))?;
    Ok(Some(d.as_micros() as u32))
}

/// tc's `explain()` for `codel`.
const CODEL_USAGE: &str = "Usage: ... codel [ limit PACKETS ] [ target TIME ]\n\t\t [ interval TIME ] [ ecn | noecn ]\n\t\t [ ce_threshold TIME ]";

/// tc's `get_unsigned()`: decimal, `0x` hexadecimal or `0` octal, at most
/// `u32::MAX`.
pub(super) fn parse_unsigned(v: &str) -> Option<u32> {
    let (digits, radix) = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None if v.len() > 1 && v.starts_with('0') => (&v[1..], 8),
        None => (v, 10),
    };
    u32::from_str_radix(digits, radix).ok()
}

/// tc's `matches()`: `word` is a non-empty prefix of `keyword`.
pub(super) fn matches(word: &str, keyword: &str) -> bool {
    !word.is_empty() && keyword.starts_with(word)
}

/// What `tbf_parse_opt()` collects before it checks and computes.
#[derive(Default)]
struct TbfWords {
    limit: u32,
    latency_us: u32,
    burst: u32,
    mtu: u32,
    mpu: u32,
    rate: u64,
    peakrate: u64,
    overhead: u16,
    linklayer: LinkLayer,
}

/// tc's `tbf_parse_opt()`: the options, each once, then the mandatory
/// ones checked together (every problem printed), then the limit worked
/// out from the latency. The kernel's refusal of a peak rate not above
/// the rate is checked here too.
fn parse_tbf(o: &mut Options<'_>) -> Result<QdiscSpec, SpecError> {
    let mut t = TbfWords::default();
    while let Some(word) = o.next_keyword() {
        tbf_option(o, word, &mut t)?;
    }
    tbf_check(&t)?;
    if t.peakrate != 0 && t.peakrate <= t.rate {
        return Err(SpecError::KernelInvalid);
    }
    let limit = if t.limit != 0 {
        t.limit
    } else {
        // `rate * latency / TIME_UNITS_PER_SEC + buffer` in doubles, the
        // peak's when smaller, truncated to the u32 tc sends.
        let lat = f64::from(t.latency_us) / 1e6;
        let mut lim = t.rate as f64 * lat + f64::from(t.burst);
        if t.peakrate != 0 {
            lim = lim.min(t.peakrate as f64 * lat + f64::from(t.mtu));
        }
        lim as u32
    };
    Ok(QdiscSpec::Tbf(TbfSpec {
        rate: t.rate,
        peakrate: t.peakrate,
        burst: t.burst,
        mtu: if t.peakrate != 0 { t.mtu } else { 0 },
        limit,
        mpu: t.mpu as u16,
        overhead: t.overhead,
        linklayer: t.linklayer,
    }))
}

/// One `tbf` option (`word`, its value next).
fn tbf_option(o: &mut Options<'_>, word: &str, t: &mut TbfWords) -> Result<(), SpecError> {
    let dup = |what| SpecError::Duplicate { kind: "tbf", what };
    let refused = |m: &str| SpecError::Refused(format!("tbf: {m}"));
    if matches(word, "limit") {
        let v = o.value("limit")?;
        if t.limit != 0 {
            return Err(dup("limit"));
        }
        if t.latency_us != 0 {
            return Err(refused(
                "specifying both \"latency\" and \"limit\" is not allowed",
            ));
        }
        t.limit = tc_value(o.kind, "limit", v, parse_size)
            .and_then(|l| fits_u32(o.kind, "limit", v, l))?;
    } else if matches(word, "latency") {
        let v = o.value("latency")?;
        if t.latency_us != 0 {
            return Err(dup("latency"));
        }
        if t.limit != 0 {
            return Err(refused(
                "specifying both \"limit\" and \"/latency\" is not allowed",
            ));
        }
        // tc's `get_time` into an unsigned int: microseconds, wrapping.
        t.latency_us = tc_value(o.kind, "latency", v, parse_time)?.as_micros() as u32;
    } else {
        return tbf_sizes_and_rates(o, word, t);
    }
    Ok(())
}

/// The `tbf` options that are sizes, rates and link parameters.
fn tbf_sizes_and_rates(o: &mut Options<'_>, word: &str, t: &mut TbfWords) -> Result<(), SpecError> {
    let dup = |what| SpecError::Duplicate { kind: "tbf", what };
    let kind = o.kind;
    if matches(word, "burst") || word == "buffer" || word == "maxburst" {
        let v = o.value("burst")?;
        if t.burst != 0 {
            return Err(dup("buffer/burst/maxburst"));
        }
        t.burst = size_and_cell(kind, word, v)?;
    } else if word == "mtu" || word == "minburst" {
        let v = o.value("mtu")?;
        if t.mtu != 0 {
            return Err(dup("mtu/minburst"));
        }
        t.mtu = size_and_cell(kind, word, v)?;
    } else if word == "mpu" {
        let v = o.value("mpu")?;
        if t.mpu != 0 {
            return Err(dup("mpu"));
        }
        t.mpu = tc_value(kind, "mpu", v, parse_size).and_then(|m| fits_u32(kind, "mpu", v, m))?;
    } else if word == "rate" || matches(word, "peakrate") {
        let key = if word == "rate" { "rate" } else { "peakrate" };
        let v = o.value(key)?;
        let slot = if key == "rate" {
            &mut t.rate
        } else {
            &mut t.peakrate
        };
        if *slot != 0 {
            return Err(dup(key));
        }
        // tc's `get_rate64`: bits per second in, bytes per second out.
        *slot = tc_value(kind, key, v, parse_rate)? / 8;
    } else if matches(word, "overhead") {
        let v = o.value("overhead")?;
        if t.overhead != 0 {
            return Err(dup("overhead"));
        }
        t.overhead = v.parse::<u16>().map_err(|_| illegal(kind, "overhead", v))?;
    } else if matches(word, "linklayer") {
        let v = o.value("linklayer")?;
        t.linklayer = linklayer(v).ok_or_else(|| illegal(kind, "linklayer", v))?;
    } else if word == "help" {
        return Err(SpecError::Refused(TBF_USAGE.into()));
    } else {
        return Err(o.unknown(word));
    }
    Ok(())
}

/// tc's `explain()` for `tbf`.
const TBF_USAGE: &str = "Usage: ... tbf limit BYTES burst BYTES[/BYTES] rate KBPS [ mtu BYTES[/BYTES] ]\n\t[ peakrate KBPS ] [ latency TIME ] [ overhead BYTES ] [ linklayer TYPE ]";

/// The checks `tbf_parse_opt()` makes once every option is read, all of
/// them reported together.
fn tbf_check(t: &TbfWords) -> Result<(), SpecError> {
    let mut lines = Vec::new();
    if t.rate == 0 {
        lines.push("tbf: the \"rate\" parameter is mandatory.");
    }
    if t.burst == 0 {
        lines.push("tbf: the \"burst\" parameter is mandatory.");
    }
    if t.peakrate != 0 && t.mtu == 0 {
        lines.push("tbf: when \"peakrate\" is specified, \"mtu\" must also be specified.");
    }
    if t.limit == 0 && t.latency_us == 0 {
        lines.push("tbf: either \"limit\" or \"latency\" is required.");
    }
    if lines.is_empty() {
        return Ok(());
    }
    Err(SpecError::Refused(lines.join("\n")))
}

/// tc's `explain1()` error.
fn illegal(kind: &'static str, keyword: &str, value: &str) -> SpecError {
    SpecError::Illegal {
        kind,
        keyword: keyword.to_owned(),
        value: value.to_owned(),
    }
}

/// `value` read by `parse`, or tc's "illegal value" error.
fn tc_value<T>(
    kind: &'static str,
    keyword: &str,
    value: &str,
    parse: fn(&str) -> Result<T, UnitError>,
) -> Result<T, SpecError> {
    parse(value).map_err(|_| illegal(kind, keyword, value))
}

/// A 32-bit size, or tc's "illegal value" error.
fn fits_u32(kind: &'static str, keyword: &str, value: &str, v: u64) -> Result<u32, SpecError> {
    u32::try_from(v).map_err(|_| illegal(kind, keyword, value))
}

/// tc's `get_size_and_cell()`: `BYTES[/CELL]`, the cell a power of two
/// (it only shapes the rate table, which the kernel does not use here).
pub(super) fn size_and_cell(
    kind: &'static str,
    keyword: &str,
    value: &str,
) -> Result<u32, SpecError> {
    let (size, cell) = match value.split_once('/') {
        Some((s, c)) => (s, Some(c)),
        None => (value, None),
    };
    let bad = || illegal(kind, keyword, value);
    if let Some(c) = cell {
        let c = parse_size(c).map_err(|_| bad())?;
        if !c.is_power_of_two() {
            return Err(bad());
        }
    }
    let v = parse_size(size).map_err(|_| bad())?;
    u32::try_from(v).map_err(|_| bad())
}

/// tc's `get_linklayer()`: `ethernet`, `atm` or `adsl` (prefixes too).
pub(super) fn linklayer(v: &str) -> Option<LinkLayer> {
    if matches(v, "ethernet") {
        Some(LinkLayer::Ethernet)
    } else if matches(v, "atm") || matches(v, "adsl") {
        Some(LinkLayer::Atm)
    } else {
        None
    }
}

impl QdiscSpec {
    /// Parses a description given as words: the kind, then its options
    /// (`["pfifo", "limit", "100"]`).
    pub fn parse(words: &[&str]) -> Result<QdiscSpec, SpecError> {
        let (first, rest) = words.split_first().ok_or(SpecError::Empty)?;
        let kind = KINDS
            .iter()
            .find(|k| k.name == *first)
            .ok_or_else(|| SpecError::UnknownKind((*first).to_owned()))?;
        let mut options = Options {
            kind: kind.name,
            words: rest.iter(),
        };
        (kind.parse)(&mut options)
    }

    /// The tc kind (`pfifo_fast`, `bfifo`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            QdiscSpec::PfifoFast => "pfifo_fast",
            QdiscSpec::Pfifo { .. } => "pfifo",
            QdiscSpec::PfifoHeadDrop { .. } => "pfifo_head_drop",
            QdiscSpec::Bfifo { .. } => "bfifo",
            QdiscSpec::Noqueue => "noqueue",
            QdiscSpec::Tbf(_) => "tbf",
            QdiscSpec::Codel(_) => "codel",
            QdiscSpec::FqCodel(_) => "fq_codel",
            QdiscSpec::Prio { .. } => "prio",
            QdiscSpec::Mq => "mq",
            QdiscSpec::Red(_) => "red",
            QdiscSpec::Sfq(_) => "sfq",
            QdiscSpec::Htb(_) => "htb",
            QdiscSpec::Netem(_) => "netem",
            QdiscSpec::Fq(_) => "fq",
        }
    }

    /// Builds the qdisc for one transmit queue of a device whose `tx_queue_len`
    /// is `txqueuelen` and whose `psched_mtu` — MTU plus link-layer header
    /// (`hard_header_len`: 14 on Ethernet, 0 on an L3 device) — is `psched_mtu`,
    /// applying the kernel's defaults for absent options.
    ///
    /// The kernel's `tx_queue_len == 0` cases are the caller's: `qdisc_create()`
    /// turns 0 into 1000 on `IFF_NO_QUEUE` devices, and `pfifo_fast` refuses 0
    /// otherwise (here it then drops every packet; see [`PfifoFast`]).
    pub fn build(&self, txqueuelen: u32, psched_mtu: u32) -> Result<Box<dyn Qdisc>, SpecError> {
        Ok(match *self {
            QdiscSpec::Tbf(t) => {
                Box::new(Tbf::new(t.config(), psched_mtu).map_err(|_| SpecError::KernelInvalid)?)
            }
            QdiscSpec::Codel(c) => {
                let (mut limit, mut params) = (1000, CodelParams::new(psched_mtu));
                c.apply(&mut limit, &mut params);
                Box::new(CodelQdisc::new(limit, params))
            }
            QdiscSpec::FqCodel(f) => {
                let mut cfg = FqCodelConfig::new(psched_mtu);
                f.apply(&mut cfg, false)?;
                Box::new(FqCodel::new(cfg))
            }
            QdiscSpec::Prio { bands, priomap } => {
                prio_check(bands, &priomap)?;
                Box::new(Prio::new(bands, priomap, txqueuelen))
            }
            // `mq` is grafted by the device layer, never built for a queue.
            QdiscSpec::Mq => return Err(SpecError::NotSupported),
            QdiscSpec::Red(r) => Box::new(Red::new(red_kernel_check(&r.config()?)?, psched_mtu)),
            QdiscSpec::Sfq(s) => Box::new(Sfq::new(SfqSpec::config(s.as_ref(), psched_mtu)?)),
            QdiscSpec::Netem(n) => Box::new(Netem::new(&n, txqueuelen)?),
            QdiscSpec::Fq(f) => Box::new(Fq::new(&f, psched_mtu, txqueuelen)?),
            QdiscSpec::Htb(h) => Box::new(Htb::new(
                h.defcls,
                h.r2q,
                h.direct_qlen.unwrap_or(txqueuelen),
                txqueuelen,
            )),
            QdiscSpec::PfifoFast => Box::new(PfifoFast::new(txqueuelen)),
            QdiscSpec::Pfifo { limit } => Box::new(Pfifo::new(limit.unwrap_or(txqueuelen))),
            QdiscSpec::PfifoHeadDrop { limit } => {
                Box::new(PfifoHeadDrop::new(limit.unwrap_or(txqueuelen)))
            }
            QdiscSpec::Bfifo { limit } => {
                // Kernel: u32 `tx_queue_len * psched_mtu`; we saturate instead of wrapping.
                let limit = match limit {
                    Some(l) => u32::try_from(l).unwrap_or(u32::MAX),
                    None => txqueuelen.saturating_mul(psched_mtu),
                };
                Box::new(Bfifo::new(limit, psched_mtu))
            }
            QdiscSpec::Noqueue => Box::new(Noqueue::new()),
        })
    }
}

impl QdiscSpec {
    /// Kernel: `qdisc_change()` with this description on `q`, a qdisc of
    /// the same kind: its parameters changed in place, its queue and
    /// counters kept (a FIFO without `limit` takes the default again);
    /// packets a lower limit trims go to `to_free`. False when `q` is not
    /// of this kind.
    pub fn change(
        &self,
        q: &mut dyn Qdisc,
        txqueuelen: u32,
        psched_mtu: u32,
        to_free: &mut ToFree,
    ) -> Result<bool, SpecError> {
        let any = q.as_any_mut();
        let done = match *self {
            QdiscSpec::Pfifo { limit } => any
                .downcast_mut::<Pfifo>()
                .map(|p| p.set_limit(limit.unwrap_or(txqueuelen))),
            QdiscSpec::PfifoHeadDrop { limit } => any
                .downcast_mut::<PfifoHeadDrop>()
                .map(|p| p.set_limit(limit.unwrap_or(txqueuelen))),
            QdiscSpec::Bfifo { limit } => any.downcast_mut::<Bfifo>().map(|b| {
                let l = limit.map_or(txqueuelen.saturating_mul(psched_mtu), |l| {
                    u32::try_from(l).unwrap_or(u32::MAX)
                });
                b.set_limit(l)
            }),
            QdiscSpec::PfifoFast => any.downcast_mut::<PfifoFast>().map(|_| ()),
            QdiscSpec::Noqueue => any.downcast_mut::<Noqueue>().map(|_| ()),
            QdiscSpec::Mq => Some(()),
            QdiscSpec::Prio { bands, priomap } => match any.downcast_mut::<Prio>() {
                Some(q) => {
                    prio_check(bands, &priomap)?;
                    q.tune(bands, priomap, txqueuelen, to_free);
                    Some(())
                }
                None => None,
            },
            _ => self.change_shaper(any, to_free)?,
        };
        // What a change trimmed into the qdisc's own list (an AQM's) is
        // counted and freed now, not at the next dequeue.
        q.take_dropped(to_free);
        Ok(done.is_some())
    }

    /// [`QdiscSpec::change`] for the shapers and AQMs.
    fn change_shaper(
        &self,
        any: &mut dyn std::any::Any,
        to_free: &mut ToFree,
    ) -> Result<Option<()>, SpecError> {
        let unsupported = || {
            SpecError::Refused("Error: Change operation not supported by specified qdisc.".into())
        };
        Ok(match *self {
            QdiscSpec::Tbf(t) => match any.downcast_mut::<Tbf>() {
                Some(tbf) => Some(
                    tbf.change(t.config())
                        .map_err(|_| SpecError::KernelInvalid)?,
                ),
                None => None,
            },
            QdiscSpec::Codel(c) => any
                .downcast_mut::<CodelQdisc>()
                .map(|q| q.change_with(|l, p| c.apply(l, p))),
            QdiscSpec::FqCodel(f) => match any.downcast_mut::<FqCodel>() {
                Some(q) => {
                    let mut cfg = *q.config();
                    f.apply(&mut cfg, true)?;
                    q.change_with(|c| *c = cfg, to_free);
                    Some(())
                }
                None => None,
            },
            // sfq has no change operation: only a bare `sfq` passes.
            QdiscSpec::Sfq(s) => match any.downcast_mut::<Sfq>() {
                Some(_) if s.is_some() => return Err(unsupported()),
                x => x.map(|_| ()),
            },
            QdiscSpec::Netem(n) => match any.downcast_mut::<Netem>() {
                Some(q) => Some(q.change(&n)?),
                None => None,
            },
            QdiscSpec::Fq(f) => match any.downcast_mut::<Fq>() {
                Some(q) => Some(q.change(&f, to_free)?),
                None => None,
            },
            // htb has no change operation (tc always sends options).
            QdiscSpec::Htb(_) => match any.downcast_mut::<Htb>() {
                Some(_) => return Err(unsupported()),
                None => None,
            },
            QdiscSpec::Red(r) => match any.downcast_mut::<Red>() {
                Some(q) => {
                    q.change(red_kernel_check(&r.config()?)?, to_free);
                    Some(())
                }
                None => None,
            },
            _ => None,
        })
    }
}

impl FromStr for QdiscSpec {
    type Err = SpecError;

    /// Parses a description from a string, splitting it on white space.
    fn from_str(s: &str) -> Result<QdiscSpec, SpecError> {
        let words: Vec<&str> = s.split_whitespace().collect();
        QdiscSpec::parse(&words)
    }
}

impl fmt::Display for QdiscSpec {
    /// The description as a tc command line takes it (`pfifo limit 100`,
    /// `bfifo limit 32Kb`); parsing it gives the same spec back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())?;
        match *self {
            QdiscSpec::Pfifo { limit: Some(l) } | QdiscSpec::PfifoHeadDrop { limit: Some(l) } => {
                write!(f, " limit {l}")
            }
            QdiscSpec::Bfifo { limit: Some(l) } => write!(f, " limit {}", exact_size(l)),
            QdiscSpec::Tbf(t) => fmt_tbf(f, &t),
            QdiscSpec::Codel(c) => fmt_codel(f, &c),
            QdiscSpec::FqCodel(q) => fmt_fq_codel(f, &q),
            QdiscSpec::Red(r) => fmt_red(f, &r),
            QdiscSpec::Sfq(Some(s)) => fmt_sfq(f, &s),
            QdiscSpec::Netem(n) => write!(f, "{n}"),
            QdiscSpec::Fq(q) => write!(f, "{q}"),
            QdiscSpec::Htb(h) => {
                write!(f, " default {:x} r2q {}", h.defcls, h.r2q)?;
                h.direct_qlen
                    .map_or(Ok(()), |q| write!(f, " direct_qlen {q}"))
            }
            QdiscSpec::Prio { bands, priomap } => {
                write!(f, " bands {bands} priomap")?;
                priomap.iter().try_for_each(|b| write!(f, " {b}"))
            }
            _ => Ok(()),
        }
    }
}

/// The options of a [`TbfSpec`] as tc takes them (the limit as worked out).
fn fmt_tbf(f: &mut fmt::Formatter<'_>, t: &TbfSpec) -> fmt::Result {
    write!(
        f,
        " rate {}bit burst {} limit {}",
        t.rate * 8,
        t.burst,
        t.limit
    )?;
    if t.peakrate != 0 {
        write!(f, " peakrate {}bit mtu {}", t.peakrate * 8, t.mtu)?;
    }
    if t.mpu != 0 {
        write!(f, " mpu {}", t.mpu)?;
    }
    if t.overhead != 0 {
        write!(f, " overhead {}", t.overhead)?;
    }
    if t.linklayer != LinkLayer::Ethernet {
        write!(f, " linklayer {}", t.linklayer)?;
    }
    Ok(())
}

/// The options of a [`CodelSpec`] as tc takes them.
fn fmt_codel(f: &mut fmt::Formatter<'_>, c: &CodelSpec) -> fmt::Result {
    if let Some(v) = c.limit {
        write!(f, " limit {v}")?;
    }
    for (k, v) in [
        ("target", c.target_us),
        ("interval", c.interval_us),
        ("ce_threshold", c.ce_threshold_us),
    ] {
        if let Some(v) = v {
            write!(f, " {k} {v}us")?;
        }
    }
    match c.ecn {
        Some(true) => write!(f, " ecn"),
        Some(false) => write!(f, " noecn"),
        None => Ok(()),
    }
}

/// The options of an [`FqCodelSpec`] as tc takes them.
fn fmt_fq_codel(f: &mut fmt::Formatter<'_>, q: &FqCodelSpec) -> fmt::Result {
    for (k, v) in [
        ("flows", q.flows),
        ("quantum", q.quantum),
        ("memory_limit", q.memory_limit),
        ("drop_batch", q.drop_batch),
    ] {
        if let Some(v) = v {
            write!(f, " {k} {v}")?;
        }
    }
    if let Some((v, m)) = q.ce_selector {
        write!(f, " ce_threshold_selector {v}/{m}")?;
    }
    fmt_codel(f, &q.codel)
}

/// `l` as tc's `sprint_size` prints it when that reads back exactly, else in bytes.
fn exact_size(l: u64) -> String {
    let pretty = format_size(l);
    if parse_size(&pretty) == Ok(l) {
        pretty
    } else {
        l.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::PacketBuf;
    use crate::sched::{NetXmit, ToFree};
    use crate::time::Instant;
    use proptest::prelude::*;

    fn p(s: &str) -> Result<QdiscSpec, SpecError> {
        s.parse()
    }

    #[test]
    fn parses_every_kind() {
        assert_eq!(p("pfifo_fast"), Ok(QdiscSpec::PfifoFast));
        assert_eq!(p("noqueue"), Ok(QdiscSpec::Noqueue));
        assert_eq!(p("pfifo"), Ok(QdiscSpec::Pfifo { limit: None }));
        assert_eq!(
            p("pfifo limit 100"),
            Ok(QdiscSpec::Pfifo { limit: Some(100) })
        );
        assert_eq!(
            p("pfifo_head_drop limit 5"),
            Ok(QdiscSpec::PfifoHeadDrop { limit: Some(5) })
        );
        assert_eq!(p("bfifo"), Ok(QdiscSpec::Bfifo { limit: None }));
        assert_eq!(
            p("  bfifo   limit 32kb "),
            Ok(QdiscSpec::Bfifo { limit: Some(32768) })
        );
        assert_eq!(
            QdiscSpec::parse(&["bfifo", "limit", "1mbit"]),
            Ok(QdiscSpec::Bfifo {
                limit: Some(131_072)
            })
        );
    }

    #[test]
    fn tc_quirks() {
        // tc reads every FIFO limit with get_size, and the last keyword wins.
        assert_eq!(
            p("pfifo limit 32k"),
            Ok(QdiscSpec::Pfifo { limit: Some(32768) })
        );
        assert_eq!(
            p("pfifo limit 1e3"),
            Ok(QdiscSpec::Pfifo { limit: Some(1000) })
        );
        assert_eq!(
            p("pfifo limit 0x10"),
            Ok(QdiscSpec::Pfifo { limit: Some(16) })
        );
        assert_eq!(
            p("pfifo limit 10 limit 20"),
            Ok(QdiscSpec::Pfifo { limit: Some(20) })
        );
        assert_eq!(
            p("bfifo limit 4294967295"),
            Ok(QdiscSpec::Bfifo {
                limit: Some(u64::from(u32::MAX))
            })
        );
    }

    #[test]
    fn errors_name_the_word() {
        assert_eq!(p(""), Err(SpecError::Empty));
        assert_eq!(QdiscSpec::parse(&[]), Err(SpecError::Empty));
        assert_eq!(p("hfsc"), Err(SpecError::UnknownKind("hfsc".into())));
        assert_eq!(p("PFIFO"), Err(SpecError::UnknownKind("PFIFO".into())));
        assert_eq!(
            p("pfifo foo 1").unwrap_err().to_string(),
            "pfifo: unknown parameter \"foo\""
        );
        assert_eq!(
            p("pfifo_fast bands 3").unwrap_err().to_string(),
            "pfifo_fast: unknown parameter \"bands\""
        );
        assert_eq!(
            p("noqueue limit 1").unwrap_err().to_string(),
            "noqueue: unknown parameter \"limit\""
        );
        assert_eq!(
            p("pfifo limit"),
            Err(SpecError::MissingValue {
                kind: "pfifo",
                keyword: "limit"
            })
        );
        assert_eq!(
            p("pfifo limit").unwrap_err().to_string(),
            "pfifo: missing value for \"limit\""
        );
        assert_eq!(
            p("bfifo limit 32kq").unwrap_err().to_string(),
            "bfifo: illegal value for \"limit\": invalid size \"32kq\": unknown unit \"kq\""
        );
        assert_eq!(
            p("pfifo limit -1").unwrap_err().to_string(),
            "pfifo: illegal value for \"limit\": invalid size \"-1\": negative"
        );
        assert_eq!(
            p("bfifo limit 4gb").unwrap_err().to_string(),
            "bfifo: illegal value for \"limit\": \"4gb\" is above 4294967295"
        );
        assert!(matches!(
            p("pfifo_head_drop limit abc"),
            Err(SpecError::BadValue {
                kind: "pfifo_head_drop",
                keyword: "limit",
                source: UnitError::NotANumber { .. }
            })
        ));
    }

    #[test]
    fn display_is_tc_syntax() {
        let cases = [
            (QdiscSpec::PfifoFast, "pfifo_fast"),
            (QdiscSpec::Noqueue, "noqueue"),
            (QdiscSpec::Pfifo { limit: None }, "pfifo"),
            (QdiscSpec::Pfifo { limit: Some(100) }, "pfifo limit 100"),
            (
                QdiscSpec::PfifoHeadDrop { limit: Some(7) },
                "pfifo_head_drop limit 7",
            ),
            (QdiscSpec::PfifoHeadDrop { limit: None }, "pfifo_head_drop"),
            (QdiscSpec::Bfifo { limit: Some(32768) }, "bfifo limit 32Kb"),
            (QdiscSpec::Bfifo { limit: Some(1514) }, "bfifo limit 1514b"),
            (QdiscSpec::Bfifo { limit: Some(32770) }, "bfifo limit 32770"),
            (QdiscSpec::Bfifo { limit: None }, "bfifo"),
        ];
        for (spec, want) in cases {
            assert_eq!(spec.to_string(), want);
            assert_eq!(p(want), Ok(spec.clone()), "{want}");
        }
        // The kinds with many options print back as themselves.
        for line in [
            "htb default 10 r2q 5",
            "netem delay 100ms 10ms loss 1% duplicate 2%",
            "fq maxrate 1mbit flow_limit 50",
        ] {
            let spec = p(line).unwrap();
            let shown = spec.to_string();
            assert!(shown.starts_with(&format!("{} ", spec.kind())), "{shown}");
            assert_eq!(p(&shown), Ok(spec), "{shown}");
        }
    }

    #[test]
    fn build_applies_kernel_defaults() {
        let q = QdiscSpec::PfifoFast.build(1000, 1514).expect("builds");
        assert_eq!(
            (q.kind(), q.params().as_str(), q.can_bypass()),
            (
                "pfifo_fast",
                "bands 3 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1",
                true
            )
        );
        let q = QdiscSpec::Pfifo { limit: None }
            .build(1000, 1514)
            .expect("builds");
        assert_eq!((q.kind(), q.params()), ("pfifo", "limit 1000p".into()));
        let q = QdiscSpec::Pfifo { limit: Some(3) }
            .build(1000, 1514)
            .expect("builds");
        assert_eq!(q.params(), "limit 3p");
        let q = QdiscSpec::PfifoHeadDrop { limit: None }
            .build(10, 1514)
            .expect("builds");
        assert_eq!(
            (q.kind(), q.params()),
            ("pfifo_head_drop", "limit 10p".into())
        );
        // tc shows `limit 1514000b` for a default bfifo on 1500-MTU Ethernet.
        let q = QdiscSpec::Bfifo { limit: None }
            .build(1000, 1514)
            .expect("builds");
        assert_eq!(
            (q.kind(), q.params(), q.can_bypass()),
            ("bfifo", "limit 1514000b".into(), true)
        );
        let q = QdiscSpec::Bfifo { limit: Some(1000) }
            .build(1000, 1514)
            .expect("builds");
        assert!(!q.can_bypass());
        let q = QdiscSpec::Bfifo {
            limit: Some(1 << 40),
        }
        .build(1000, 1514)
        .expect("builds");
        assert_eq!(q.params(), "limit 4096Mb");
        let q = QdiscSpec::Bfifo { limit: None }
            .build(u32::MAX, 1514)
            .expect("builds");
        assert_eq!(
            q.params(),
            format!("limit {}", format_size(u64::from(u32::MAX)))
        );
        let q = QdiscSpec::Noqueue.build(1000, 1514).expect("builds");
        assert!(q.is_noqueue());
        // pfifo with txqueuelen 0: limit 0, no bypass, everything dropped.
        let mut q = QdiscSpec::Pfifo { limit: None }
            .build(0, 1514)
            .expect("builds");
        assert!(!q.can_bypass());
        let mut tf = ToFree::default();
        let pkt = PacketBuf::from_slice(0, &[0; 10]);
        assert_eq!(q.enqueue(pkt, Instant::ZERO, &mut tf), NetXmit::Drop);
    }

    #[test]
    fn a_tbf_prints_back_as_itself() {
        for text in [
            "tbf rate 1mbit burst 10kb latency 50ms",
            "tbf rate 500kbit burst 5k limit 20k peakrate 1mbit mtu 2000 mpu 64 overhead 24",
            "tbf rate 1.5mbit burst 3000 latency 70ms linklayer atm",
        ] {
            let spec: QdiscSpec = text.parse().unwrap();
            assert_eq!(spec.to_string().parse::<QdiscSpec>(), Ok(spec), "{text}");
        }
    }

    #[test]
    fn table_and_kind_agree() {
        for k in KINDS {
            // The least each kind takes.
            let words: &[&str] = match k.name {
                "tbf" => &["tbf", "rate", "1mbit", "burst", "10k", "limit", "10k"],
                "red" => &["red", "limit", "1M", "avpkt", "1500"],
                name => &[name][..],
            };
            let spec = QdiscSpec::parse(words).unwrap();
            assert_eq!(spec.kind(), k.name);
            if spec == QdiscSpec::Mq {
                // Grafted by the device layer, never built for a queue.
                assert_eq!(spec.build(100, 1514).err(), Some(SpecError::NotSupported));
                continue;
            }
            assert_eq!(spec.build(100, 1514).expect("builds").kind(), k.name);
        }
    }

    proptest! {
        #[test]
        fn packet_fifo_roundtrip(limit in any::<u32>(), head in any::<bool>()) {
            let spec = if head {
                QdiscSpec::PfifoHeadDrop { limit: Some(limit) }
            } else {
                QdiscSpec::Pfifo { limit: Some(limit) }
            };
            prop_assert_eq!(spec.to_string().parse::<QdiscSpec>(), Ok(spec));
        }

        #[test]
        fn bfifo_roundtrip(limit in any::<u32>()) {
            let spec = QdiscSpec::Bfifo { limit: Some(u64::from(limit)) };
            prop_assert_eq!(spec.to_string().parse::<QdiscSpec>(), Ok(spec));
        }

        #[test]
        fn parse_never_panics(s in "[a-z_ 0-9.kmgbit-]{0,24}") {
            let _ = s.parse::<QdiscSpec>();
        }
    }
}
