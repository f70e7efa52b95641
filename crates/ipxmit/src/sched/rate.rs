//! Rates as the packet schedulers use them: the time a packet of some
//! length takes at a rate, in nanoseconds.
//!
//! Stands for `struct psched_ratecfg` with `psched_ratecfg_precompute()`
//! and `psched_l2t_ns()` (`net/sched/sch_generic.c`,
//! `include/net/sch_generic.h`), shared by `tbf` and `htb`.
//!
//! # Algorithm
//!
//! A rate of `r` bytes per second is kept as a multiplier and a shift such
//! that the time of `len` bytes is `len * mult >> shift` nanoseconds:
//! `mult = (NSEC_PER_SEC << shift) / r`, with `shift` the smallest that
//! makes `mult` use bit 31 (or that would overflow the shifted second).
//! Integer arithmetic, so a qdisc's token arithmetic is the kernel's to the
//! nanosecond. Before the conversion the length gets the configured
//! per-packet `overhead`, is raised to the minimum packet unit `mpu`, and
//! on an ATM link layer is counted in 53-byte cells of 48 payload bytes.

use std::fmt;

/// Nanoseconds in a second (`NSEC_PER_SEC`).
const NSEC_PER_SEC: u64 = 1_000_000_000;

/// How lengths are counted on the wire (`TC_LINKLAYER_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinkLayer {
    /// Bytes as they are (`TC_LINKLAYER_ETHERNET`).
    #[default]
    Ethernet,
    /// 48 payload bytes per 53-byte cell (`TC_LINKLAYER_ATM`).
    Atm,
}

impl fmt::Display for LinkLayer {
    /// tc's `sprint_linklayer`: `ethernet`, `atm`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkLayer::Ethernet => "ethernet",
            LinkLayer::Atm => "atm",
        })
    }
}

/// A rate and how packets are measured against it (`struct
/// psched_ratecfg`). See the module documentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateCfg {
    rate_bytes_ps: u64,
    mult: u32,
    shift: u8,
    overhead: u16,
    mpu: u16,
    linklayer: LinkLayer,
}

impl RateCfg {
    /// Kernel: `psched_ratecfg_precompute()`. `rate_bytes_ps` bytes per
    /// second, `overhead` bytes added to each packet, packets counted as at
    /// least `mpu` bytes.
    pub fn new(rate_bytes_ps: u64, overhead: u16, mpu: u16, linklayer: LinkLayer) -> RateCfg {
        let (mult, shift) = precompute(rate_bytes_ps);
        RateCfg {
            rate_bytes_ps,
            mult,
            shift,
            overhead,
            mpu,
            linklayer,
        }
    }

    /// The rate in bytes per second.
    pub fn bytes_per_sec(&self) -> u64 {
        self.rate_bytes_ps
    }

    /// The per-packet overhead in bytes.
    pub fn overhead(&self) -> u16 {
        self.overhead
    }

    /// The minimum packet unit in bytes.
    pub fn mpu(&self) -> u16 {
        self.mpu
    }

    /// The link layer lengths are counted for.
    pub fn linklayer(&self) -> LinkLayer {
        self.linklayer
    }

    /// Kernel: `psched_l2t_ns()`. Nanoseconds `len` bytes take at the rate.
    #[inline]
    pub fn l2t_ns(&self, len: u32) -> u64 {
        let mut len = len.wrapping_add(u32::from(self.overhead));
        if len < u32::from(self.mpu) {
            len = u32::from(self.mpu);
        }
        let units = match self.linklayer {
            LinkLayer::Ethernet => u64::from(len),
            LinkLayer::Atm => u64::from(len.div_ceil(48)) * 53,
        };
        // The kernel's u64 product (wrapping only for ATM lengths near 4 GiB).
        units.wrapping_mul(u64::from(self.mult)) >> self.shift
    }
}

/// Kernel: `psched_ratecfg_precompute__()`. The multiplier and shift of
/// `rate` bytes per second (1 and 0 for a zero rate).
fn precompute(rate: u64) -> (u32, u8) {
    if rate == 0 {
        return (1, 0);
    }
    let (mut factor, mut shift) = (NSEC_PER_SEC, 0u8);
    loop {
        // At most NSEC_PER_SEC << 63 / 1: the quotient is below 2^64 only
        // while it is taken from a factor below 2^63.
        let mult = factor / rate;
        if mult & (1 << 31) != 0 || factor & (1 << 63) != 0 {
            return (mult as u32, shift);
        }
        factor <<= 1;
        shift += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_of_bytes_takes_a_second() {
        for rate in [
            1u64,
            1250,
            125_000,
            12_500_000,
            1_250_000_000,
            6_250_000_000,
        ] {
            let r = RateCfg::new(rate, 0, 0, LinkLayer::Ethernet);
            let len = u32::try_from(rate.min(u64::from(u32::MAX))).unwrap();
            let ns = r.l2t_ns(len);
            let want = u64::from(len) * NSEC_PER_SEC / rate;
            // The truncated multiplier is at most one part in 2^31 short.
            assert!(
                ns <= want && want - ns <= want / (1 << 30) + 1,
                "{rate}: {ns} vs {want}"
            );
        }
    }

    #[test]
    fn multiplier_uses_bit_31() {
        let (mult, shift) = precompute(1250);
        assert!(mult & (1 << 31) != 0);
        assert_eq!(u64::from(mult), (NSEC_PER_SEC << shift) / 1250);
        assert_eq!(precompute(0), (1, 0));
    }

    #[test]
    fn overhead_mpu_and_atm_cells_count() {
        let plain = RateCfg::new(1_000_000, 0, 0, LinkLayer::Ethernet);
        let over = RateCfg::new(1_000_000, 24, 0, LinkLayer::Ethernet);
        assert_eq!(over.l2t_ns(100), plain.l2t_ns(124));
        let mpu = RateCfg::new(1_000_000, 0, 64, LinkLayer::Ethernet);
        assert_eq!(mpu.l2t_ns(10), plain.l2t_ns(64));
        let atm = RateCfg::new(1_000_000, 0, 0, LinkLayer::Atm);
        // 100 bytes are 3 cells of 53 bytes.
        assert_eq!(atm.l2t_ns(100), plain.l2t_ns(159));
        assert_eq!(atm.l2t_ns(96), plain.l2t_ns(106));
    }
}
