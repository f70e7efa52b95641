//! Classes of classful qdiscs, as `tc class add|change|replace|del` asks
//! the kernel for them.
//!
//! Stands for the user-space half of `tc class` (iproute2's
//! `tc/tc_class.c` and the class parser of `tc/q_htb.c`) and the generic
//! kernel half, `tc_ctl_tclass()` in `net/sched/sch_api.c`.
//!
//! # The decision (`tc_ctl_tclass`)
//!
//! tc sends `add` as `NLM_F_CREATE|NLM_F_EXCL`, `replace` as
//! `NLM_F_CREATE`, `change` with no flag. The qdisc addressed is the one
//! whose handle is the major of `parent` or of `classid` (they must agree:
//! `EINVAL`), the root when neither has one; none of that handle:
//! `ENOENT`; a classless qdisc: `EINVAL`. The class id takes the qdisc's
//! major. A class that exists: `add` gets `EEXIST`, `del` deletes it; one
//! that does not: only a create may go on (else `ENOENT`). Then the
//! qdisc's own `change` decides (`EOPNOTSUPP` for qdiscs whose classes are
//! fixed, such as `prio`'s bands).
//!
//! Only `htb` takes class options in tc: for any other kind tc itself
//! says `Error: Qdisc "KIND" is classless.`

use super::rate::{LinkLayer, RateCfg};
use super::spec::{linklayer, matches, size_and_cell, SpecError};
use super::QdiscStats;
use crate::units::parse_rate;

/// What a tc command asks of a class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassOp {
    /// `tc class add`: `NLM_F_CREATE | NLM_F_EXCL`.
    Add,
    /// `tc class replace`: `NLM_F_CREATE`.
    Replace,
    /// `tc class change`: no flag.
    Change,
}

impl ClassOp {
    /// May the class be created?
    pub fn create(self) -> bool {
        self != ClassOp::Change
    }
}

/// The kernel's answer when it refuses a class request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClassError {
    /// `ENOENT`: no such qdisc or class.
    #[error("RTNETLINK answers: No such file or directory")]
    NotFound,
    /// `EEXIST`: `add` of a class that exists.
    #[error("RTNETLINK answers: File exists")]
    Exists,
    /// `EINVAL`: handles that disagree, a classless qdisc, a bad class id.
    #[error("RTNETLINK answers: Invalid argument")]
    Invalid,
    /// `EOPNOTSUPP`: the qdisc's classes cannot be added or changed.
    #[error("RTNETLINK answers: Operation not supported")]
    NotSupported,
    /// An extended-ack refusal of the qdisc (`Error: sch_htb: tree is too
    /// deep.`, `Error: HTB class in use.`).
    #[error("Error: {0}.")]
    Refused(&'static str),
    /// What tc itself refuses (the class options).
    #[error(transparent)]
    Spec(#[from] SpecError),
}

/// A class's parameters as tc's `htb_parse_class_opt()` sends them
/// (`struct tc_htb_opt` with the 64-bit rates); bucket depths in psched
/// ticks of 64 ns, as tc computes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HtbClassConfig {
    /// Rate (with the overhead, mpu and link layer).
    pub rate: RateCfg,
    /// Ceiling (the rate unless given).
    pub ceil: RateCfg,
    /// Depth of the rate bucket, ticks.
    pub buffer_ticks: u32,
    /// Depth of the ceiling bucket, ticks.
    pub cbuffer_ticks: u32,
    /// Priority as given (the kernel keeps at most 7).
    pub prio: u32,
    /// DRR quantum, bytes; 0: `rate / r2q`.
    pub quantum: u32,
}

impl HtbClassConfig {
    /// A class of `rate` bytes per second with tc's defaults (ceil = rate,
    /// bursts from an MTU of 1600, prio 0, quantum from `r2q`).
    pub fn with_rate(rate: u64) -> HtbClassConfig {
        let r = RateCfg::new(rate, 0, 0, LinkLayer::Ethernet);
        let ticks = xmittime(rate, default_buffer(rate, DEFAULT_MTU));
        HtbClassConfig {
            rate: r,
            ceil: r,
            buffer_ticks: ticks,
            cbuffer_ticks: ticks,
            prio: 0,
            quantum: 0,
        }
    }

    /// The same with ceiling `ceil` bytes per second.
    pub fn with_ceil(mut self, ceil: u64) -> HtbClassConfig {
        self.ceil = RateCfg::new(ceil, 0, 0, LinkLayer::Ethernet);
        self.cbuffer_ticks = xmittime(ceil, default_buffer(ceil, DEFAULT_MTU));
        self
    }
}

/// A class description (what follows the class id on a tc line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassSpec {
    /// `htb rate R [ceil R] [burst B] [cburst B] [prio P] [quantum Q]
    /// [mtu M] [mpu M] [overhead O] [linklayer L]`.
    Htb(HtbClassConfig),
}

/// A class request: `tc class OP dev D [parent P] [classid C] SPEC`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassRequest {
    /// What is asked.
    pub op: ClassOp,
    /// `parent` (`TC_H_ROOT` is `0xffff_ffff`; 0 when absent).
    pub parent: u32,
    /// `classid` (0 when absent).
    pub classid: u32,
    /// The class's parameters.
    pub spec: ClassSpec,
}

/// `TC_H_ROOT`.
pub const TC_H_ROOT: u32 = 0xffff_ffff;

/// A class as `tc class show` prints it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassShow {
    /// Everything after `class KIND ID ` on the line (`root prio 0 rate
    /// ...`, `parent 1: `).
    pub text: String,
    /// Its statistics (`-s`).
    pub stats: QdiscStats,
    /// The kind's statistics lines (`-s`), if any.
    pub xstats: Option<String>,
}

/// tc's MTU for rate tables and default bursts.
const DEFAULT_MTU: u32 = 1600;
/// `get_hz()` on a kernel with high-resolution timers (`/proc/net/psched`).
const HZ: u64 = 1_000_000_000;
/// Psched ticks per microsecond (`tick_in_usec`: 1000 ns / 64 ns).
const TICKS_PER_US: f64 = 15.625;

/// tc's default burst: `rate / get_hz() + mtu` bytes (an `unsigned`).
fn default_buffer(rate: u64, mtu: u32) -> u32 {
    ((rate / HZ) as u32).wrapping_add(mtu)
}

/// tc's `tc_calc_xmittime()`: the time of `size` bytes at `rate` bytes per
/// second, in whole microseconds (`tc_core_time2tick` takes an
/// `unsigned`), then in ticks.
pub fn xmittime(rate: u64, size: u32) -> u32 {
    let us = (1e6 * f64::from(size) / rate as f64) as u32;
    (f64::from(us) * TICKS_PER_US) as u32
}

/// tc's `tc_calc_xmitsize()`: the bytes `ticks` hold at `rate` (the ticks
/// back in whole microseconds).
pub fn xmitsize(rate: u64, ticks: u32) -> u32 {
    let us = (f64::from(ticks) / TICKS_PER_US) as u32;
    (rate as f64 * f64::from(us) / 1e6) as u32
}

impl ClassSpec {
    /// Parses the kind and its options (`["htb", "rate", "1mbit"]`).
    pub fn parse(words: &[&str]) -> Result<ClassSpec, SpecError> {
        match words.split_first() {
            Some((&"htb", rest)) => parse_htb(rest).map(ClassSpec::Htb),
            Some((kind, _)) => Err(SpecError::Refused(format!(
                "Error: Qdisc \"{kind}\" is classless."
            ))),
            None => Err(SpecError::Empty),
        }
    }
}

/// What `htb_parse_class_opt()` collects.
#[derive(Default)]
struct HtbWords {
    rate: u64,
    ceil: u64,
    buffer: u32,
    cbuffer: u32,
    mtu: Option<u32>,
    mpu: u16,
    overhead: u16,
    linklayer: LinkLayer,
    prio: u32,
    quantum: u32,
}

/// tc's `htb_parse_class_opt()`.
fn parse_htb(words: &[&str]) -> Result<HtbClassConfig, SpecError> {
    let mut w = HtbWords::default();
    let mut it = words.iter().copied();
    while let Some(word) = it.next() {
        let value = it.next();
        htb_option(&mut w, word, value)?;
    }
    if w.rate == 0 {
        return Err(SpecError::Refused("\"rate\" is required.".into()));
    }
    let ceil = if w.ceil == 0 { w.rate } else { w.ceil };
    let mtu = w.mtu.unwrap_or(DEFAULT_MTU);
    let buffer = if w.buffer == 0 {
        default_buffer(w.rate, mtu)
    } else {
        w.buffer
    };
    let cbuffer = if w.cbuffer == 0 {
        default_buffer(ceil, mtu)
    } else {
        w.cbuffer
    };
    let cfg = |r| RateCfg::new(r, w.overhead, w.mpu, w.linklayer);
    Ok(HtbClassConfig {
        rate: cfg(w.rate),
        ceil: cfg(ceil),
        buffer_ticks: xmittime(w.rate, buffer),
        cbuffer_ticks: xmittime(ceil, cbuffer),
        prio: w.prio,
        quantum: w.quantum,
    })
}

/// One option of an htb class and its value.
fn htb_option(w: &mut HtbWords, word: &str, value: Option<&str>) -> Result<(), SpecError> {
    if word == "help" {
        return Err(SpecError::Refused(HTB_CLASS_USAGE.into()));
    }
    let known = [
        "prio",
        "mtu",
        "mpu",
        "overhead",
        "linklayer",
        "quantum",
        "burst",
        "cburst",
    ]
    .iter()
    .any(|k| matches(word, k))
        || ["buffer", "maxburst", "cbuffer", "cmaxburst", "ceil", "rate"].contains(&word);
    if !known {
        return Err(SpecError::Refused(format!(
            "What is \"{word}\"?\n{HTB_CLASS_USAGE}"
        )));
    }
    let v = value.ok_or_else(|| {
        SpecError::Refused("Command line is not complete. Try option \"help\"".into())
    })?;
    let bad = || SpecError::Refused(format!("Illegal \"{word}\"\n{HTB_CLASS_USAGE}"));
    let u32_of = |v: &str| super::spec::parse_unsigned(v).ok_or_else(bad);
    let u16_of = |v: &str| u32_of(v).and_then(|x| u16::try_from(x).map_err(|_| bad()));
    if word == "rate" || word == "ceil" {
        let slot = if word == "rate" {
            &mut w.rate
        } else {
            &mut w.ceil
        };
        if *slot != 0 {
            return Err(SpecError::Refused(format!("Double \"{word}\" spec")));
        }
        *slot = parse_rate(v).map_err(|_| bad())? / 8;
    } else if matches(word, "prio") {
        w.prio = u32_of(v)?;
    } else if matches(word, "mtu") {
        w.mtu = Some(u32_of(v)?);
    } else if matches(word, "mpu") {
        w.mpu = u16_of(v)?;
    } else if matches(word, "overhead") {
        w.overhead = u16_of(v)?;
    } else if matches(word, "linklayer") {
        w.linklayer = linklayer(v).ok_or_else(bad)?;
    } else if matches(word, "quantum") {
        w.quantum = u32_of(v)?;
    } else if matches(word, "cburst") || word == "cbuffer" || word == "cmaxburst" {
        w.cbuffer = size_and_cell("htb", word, v).map_err(|_| bad())?;
    } else {
        w.buffer = size_and_cell("htb", word, v).map_err(|_| bad())?;
    }
    Ok(())
}

/// The usage tc prints after a refused htb class option.
const HTB_CLASS_USAGE: &str =
    "Usage: ... class add ... htb rate R1 [burst B1] [mpu B] [overhead O]\n\
     \x20                     [prio P] [slot S] [pslot PS]\n\
     \x20                     [ceil R2] [cburst B2] [mtu MTU] [quantum Q]";

/// Kernel: the first half of `tc_ctl_tclass()`: the handle of the qdisc
/// addressed by `parent` and `classid`, and the full class id (0: none
/// given). `root` is the device's root handle.
pub fn address(root: u32, parent: u32, classid: u32) -> Result<(u32, u32), ClassError> {
    let mut qid = classid & 0xffff_0000;
    if parent != TC_H_ROOT {
        let qid1 = parent & 0xffff_0000;
        if qid != 0 && qid1 != 0 && qid != qid1 {
            return Err(ClassError::Invalid);
        }
        if qid1 != 0 {
            qid = qid1;
        } else if qid == 0 {
            qid = root;
        }
    } else if qid == 0 {
        qid = root;
    }
    let clid = match classid {
        0 if parent == TC_H_ROOT => qid,
        0 => 0,
        c => qid | (c & 0xffff),
    };
    Ok((qid, clid))
}

/// Kernel: the second half of `tc_ctl_tclass()` on qdisc `q`: a class
/// `clid` that exists is refused to `add`; one that does not may only be
/// created; then the qdisc's own `change`. Gives the kernel's warning.
pub fn modify(
    q: &mut dyn super::Qdisc,
    req: &ClassRequest,
    clid: u32,
    now: crate::time::Instant,
    to_free: &mut super::ToFree,
) -> Result<Option<String>, ClassError> {
    if !q.classful() {
        return Err(ClassError::Invalid);
    }
    let exists = clid != 0 && q.class_find(clid);
    if exists && req.op == ClassOp::Add {
        return Err(ClassError::Exists);
    }
    if !exists && !req.op.create() {
        return Err(ClassError::NotFound);
    }
    q.class_change(req.parent, clid, &req.spec, now, to_free)
}

/// Kernel: `tc_ctl_tclass()` for `RTM_DELTCLASS` on qdisc `q`.
pub fn delete(
    q: &mut dyn super::Qdisc,
    clid: u32,
    now: crate::time::Instant,
    to_free: &mut super::ToFree,
) -> Result<(), ClassError> {
    if !q.classful() {
        return Err(ClassError::Invalid);
    }
    if clid == 0 || !q.class_find(clid) {
        return Err(ClassError::NotFound);
    }
    q.class_delete(clid, now, to_free)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<ClassSpec, SpecError> {
        ClassSpec::parse(&s.split_whitespace().collect::<Vec<_>>())
    }

    fn htb(s: &str) -> HtbClassConfig {
        match p(s).unwrap() {
            ClassSpec::Htb(c) => c,
        }
    }

    /// The ticks tc 6.1 sent on this machine (`tc -r class show`).
    #[test]
    fn bursts_are_tcs_ticks() {
        for (rate, ticks) in [
            ("100mbit", 2000),
            ("1gbit", 187),
            ("2gbit", 93),
            ("4gbit", 46),
            ("10gbit", 15),
        ] {
            let c = htb(&format!("htb rate {rate}"));
            assert_eq!((c.buffer_ticks, c.cbuffer_ticks), (ticks, ticks), "{rate}");
        }
        let c = htb("htb rate 20kbit burst 1000");
        assert_eq!(xmitsize(c.rate.bytes_per_sec(), c.buffer_ticks), 1000);
        assert_eq!(xmitsize(c.ceil.bytes_per_sec(), c.cbuffer_ticks), 1600);
        let c = htb("htb rate 20Kbit mtu 2048");
        assert_eq!(xmitsize(2500, c.buffer_ticks), 2048);
        assert_eq!(xmitsize(1_250_000_000, 15), 0);
        assert_eq!(xmitsize(125_000_000, 187), 1375);
    }

    #[test]
    fn options_and_refusals_are_tcs() {
        let c = htb("htb rate 1mbit ceil 0.5mbit burst 10k/8 cburst 3k mpu 64 overhead 4 linklayer atm prio 9 quantum 2048");
        assert_eq!(
            (c.rate.bytes_per_sec(), c.ceil.bytes_per_sec()),
            (125_000, 62_500)
        );
        assert_eq!(
            (c.rate.mpu(), c.rate.overhead(), c.ceil.linklayer()),
            (64, 4, LinkLayer::Atm)
        );
        assert_eq!((c.prio, c.quantum), (9, 2048));
        assert_eq!(xmitsize(125_000, c.buffer_ticks), 10240);
        let err = |s: &str| p(s).unwrap_err().to_string();
        assert_eq!(err("htb ceil 1mbit"), "\"rate\" is required.");
        assert_eq!(err("htb rate 0"), "\"rate\" is required.");
        assert!(err("htb rate 1mbit foo 1").starts_with("What is \"foo\"?\n"));
        assert!(err("htb rate 1mbit prio x").starts_with("Illegal \"prio\"\n"));
        assert_eq!(err("htb rate 1mbit rate 2mbit"), "Double \"rate\" spec");
        assert_eq!(err("tbf rate 1mbit"), "Error: Qdisc \"tbf\" is classless.");
    }

    #[test]
    fn addresses_are_tc_ctl_tclass_s() {
        let h1 = 1 << 16;
        assert_eq!(address(h1, h1, h1 | 5), Ok((h1, h1 | 5)));
        assert_eq!(address(h1, h1, 2 << 16 | 1), Err(ClassError::Invalid));
        assert_eq!(address(h1, 2 << 16, h1 | 1), Err(ClassError::Invalid));
        assert_eq!(address(h1, 0, h1 | 6), Ok((h1, h1 | 6)));
        assert_eq!(address(h1, h1 | 1, 0), Ok((h1, 0)));
        assert_eq!(address(h1, TC_H_ROOT, 0), Ok((h1, h1)));
        assert_eq!(address(h1, 0, 7), Ok((h1, h1 | 7)));
    }
}
