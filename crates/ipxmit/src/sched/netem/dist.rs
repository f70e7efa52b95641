//! The delay distribution tables tc loads for `distribution NAME`.
//!
//! Stands for iproute2's table generators `netem/normal.c`,
//! `netem/pareto.c` and `netem/paretonormal.c` (NIST Net), whose output
//! tc reads from `/usr/lib/tc/NAME.dist`. The tables are not shipped
//! here: each is computed from the same arithmetic on first use — the
//! inverse cumulative distribution at 4096 evenly spaced points, in
//! units of `NETEM_DIST_SCALE` (8192 per standard deviation), clamped to
//! an `i16`.

use std::sync::OnceLock;

use super::rand::NETEM_DIST_SCALE;

/// The generators' resolution (`TABLESIZE`); every fourth point is kept.
const TABLESIZE: usize = 16384;

/// Pareto shape (`a`).
const PARETO_A: f64 = 3.0;

/// A distribution tc knows by name (a `.dist` file of iproute2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetemDist {
    /// `normal`.
    Normal,
    /// `pareto`.
    Pareto,
    /// `paretonormal`: a quarter normal, three quarters Pareto.
    ParetoNormal,
}

impl NetemDist {
    /// The distribution tc's `distribution NAME` names (the file name
    /// without `.dist`); `None` where tc finds no file.
    pub fn from_name(name: &str) -> Option<NetemDist> {
        match name {
            "normal" => Some(NetemDist::Normal),
            "pareto" => Some(NetemDist::Pareto),
            "paretonormal" => Some(NetemDist::ParetoNormal),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            NetemDist::Normal => "normal",
            NetemDist::Pareto => "pareto",
            NetemDist::ParetoNormal => "paretonormal",
        }
    }

    /// The table tc sends (`TCA_NETEM_DELAY_DIST`), built on first use.
    pub fn table(self) -> &'static [i16] {
        static NORMAL: OnceLock<Box<[i16]>> = OnceLock::new();
        static PARETO: OnceLock<Box<[i16]>> = OnceLock::new();
        static PARETONORMAL: OnceLock<Box<[i16]>> = OnceLock::new();
        match self {
            NetemDist::Normal => NORMAL.get_or_init(normal_table),
            NetemDist::Pareto => PARETO.get_or_init(pareto_table),
            NetemDist::ParetoNormal => PARETONORMAL.get_or_init(paretonormal_table),
        }
    }
}

/// The error function, to double precision: `2/√π e^{-z²} Σ 2ⁿ z^{2n+1} /
/// (1·3···(2n+1))`, a series of positive terms (no cancellation); 1 from
/// |z| = 6 on, where `erf` rounds to 1 in doubles.
fn erf(z: f64) -> f64 {
    let a = z.abs();
    if a >= 6.0 {
        return z.signum();
    }
    let (two_z2, mut term, mut sum) = (2.0 * a * a, a, a);
    let mut n = 0.0;
    while term > sum * 1e-18 {
        n += 1.0;
        term *= two_z2 / (2.0 * n + 1.0);
        sum += term;
    }
    let r = std::f64::consts::FRAC_2_SQRT_PI * (-a * a).exp() * sum;
    r.copysign(z)
}

/// The normal distribution function, as `normal.c` writes it.
fn normal_cdf(x: f64, mu: f64, sigma: f64) -> f64 {
    0.5 + 0.5 * erf((x - mu) / (std::f64::consts::SQRT_2 * sigma))
}

/// `normal.c`'s `table[]`: for each of `TABLESIZE + 1` quantiles, the
/// last x (stepping by 0.00005 from -10) whose distribution value rounds
/// to it.
fn normal_quantiles() -> Vec<f64> {
    let mut table = vec![0.0; TABLESIZE + 1];
    let mut x = -10.0f64;
    while x < 10.05 {
        let i = (TABLESIZE as f64 * normal_cdf(x, 0.0, 1.0)).round_ties_even() as usize;
        table[i.min(TABLESIZE)] = x;
        x += 0.00005;
    }
    table
}

/// `(int) rint(v)` clamped to a `short`.
fn to_i16(v: i32) -> i16 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

/// `normal.c`.
fn normal_table() -> Box<[i16]> {
    let q = normal_quantiles();
    (0..TABLESIZE)
        .step_by(4)
        .map(|i| to_i16((q[i] * NETEM_DIST_SCALE as f64).round_ties_even() as i32))
        .collect()
}

/// The Pareto quantile at `i / 65536` from the top, as `pareto.c`
/// computes it: shifted by -1.5 (the mean), scaled by 4/3 (the
/// deviation) and capped at 32767.
fn pareto_value(i: i32) -> i32 {
    let mut d = f64::from(i) / 65536.0;
    d = 1.0 / d.powf(1.0 / PARETO_A);
    d -= 1.5;
    d *= (4.0 / 3.0) * NETEM_DIST_SCALE as f64;
    if d > 32767.0 {
        d = 32767.0;
    }
    d.round_ties_even() as i32
}

/// `pareto.c`.
fn pareto_table() -> Box<[i16]> {
    (1..=4096)
        .rev()
        .map(|k| to_i16(pareto_value(k * 16)))
        .collect()
}

/// `paretonormal.c`: `(normal + 3 pareto) / 4` point by point.
fn paretonormal_table() -> Box<[i16]> {
    let q = normal_quantiles();
    (0..TABLESIZE)
        .step_by(4)
        .map(|i| {
            let norm = (q[i] * NETEM_DIST_SCALE as f64).round_ties_even() as i32;
            let par = pareto_value(65536 - 4 * i as i32);
            to_i16((norm + 3 * par) / 4)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (z, e) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.0, 0.999_977_909_503_001_4),
            (-1.0, -0.842_700_792_949_714_9),
        ] {
            assert!((erf(z) - e).abs() < 1e-15, "erf({z}) = {}", erf(z));
        }
    }

    #[test]
    fn tables_have_the_generators_shape() {
        for d in [
            NetemDist::Normal,
            NetemDist::Pareto,
            NetemDist::ParetoNormal,
        ] {
            let t = d.table();
            assert_eq!(t.len(), 4096, "{d:?}");
            assert!(t.windows(2).all(|w| w[0] <= w[1]), "{d:?} is monotonic");
        }
        let n = NetemDist::Normal.table();
        // Symmetric about the median, about four deviations at the ends.
        assert!(n[2048].abs() <= 4, "{}", n[2048]);
        assert!((-33_000..-32_000).contains(&i32::from(n[0])), "{}", n[0]);
        // pareto.c's first point: 1/1 - 1.5 scaled.
        assert_eq!(NetemDist::Pareto.table()[0], -5461);
        assert_eq!(NetemDist::Pareto.table()[4095], 32767);
    }
}
