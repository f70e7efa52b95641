//! netem's random numbers: the kernel's seeded generator, its correlated
//! draws and its table distribution.
//!
//! Stands for `prandom_u32_state()`/`prandom_seed_state()`
//! (`lib/random32.c`, `include/linux/prandom.h`) and `get_crandom()`,
//! `tabledist()` of `net/sched/sch_netem.c`.

/// `NETEM_DIST_SCALE`: a table entry of this value is one standard
/// deviation.
pub const NETEM_DIST_SCALE: i64 = 8192;

/// `struct rnd_state`: a maximally equidistributed combined Tausworthe
/// generator (L'Ecuyer's LFSR113), the kernel's `prandom_u32_state()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RndState {
    s1: u32,
    s2: u32,
    s3: u32,
    s4: u32,
}

impl RndState {
    /// Kernel: `prandom_seed_state()`: the four words from one 32-bit
    /// fold of `seed`, each raised above its component's minimum.
    pub fn seeded(seed: u64) -> RndState {
        let i = ((seed >> 32) ^ (seed << 10) ^ seed) as u32;
        // `__seed()`: s1 > 1, s2 > 7, s3 > 15, s4 > 127.
        let at_least = |m: u32| if i < m { i + m } else { i };
        RndState {
            s1: at_least(2),
            s2: at_least(8),
            s3: at_least(16),
            s4: at_least(128),
        }
    }

    /// Kernel: `prandom_u32_state()`.
    pub fn next_u32(&mut self) -> u32 {
        fn taus(s: u32, a: u32, b: u32, c: u32, d: u32) -> u32 {
            ((s & c) << d) ^ (((s << a) ^ s) >> b)
        }
        self.s1 = taus(self.s1, 6, 13, 4_294_967_294, 18);
        self.s2 = taus(self.s2, 2, 27, 4_294_967_288, 2);
        self.s3 = taus(self.s3, 13, 21, 4_294_967_280, 7);
        self.s4 = taus(self.s4, 3, 12, 4_294_967_168, 13);
        self.s1 ^ self.s2 ^ self.s3 ^ self.s4
    }

    /// Kernel: `get_random_u32_below()`: uniform in `0..ceil` by
    /// multiplication, rejecting the few draws that would bias it.
    pub fn below(&mut self, ceil: u32) -> u32 {
        if ceil == 0 {
            return self.next_u32();
        }
        let mut mult = u64::from(ceil) * u64::from(self.next_u32());
        if (mult as u32) < ceil {
            let bound = ceil.wrapping_neg() % ceil;
            while (mult as u32) < bound {
                mult = u64::from(ceil) * u64::from(self.next_u32());
            }
        }
        (mult >> 32) as u32
    }
}

/// `struct crndstate`: the last value of a correlated sequence and its
/// correlation (`rho`, scaled to `u32::MAX`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrndState {
    /// The previous value.
    pub last: u32,
    /// The correlation.
    pub rho: u32,
}

impl CrndState {
    /// Kernel: `init_crandom()`: correlation `rho`, the sequence started
    /// from a draw of `entropy` (the kernel's `get_random_u32()`).
    pub fn init(rho: u32, entropy: &mut RndState) -> CrndState {
        CrndState {
            last: entropy.next_u32(),
            rho,
        }
    }
}

/// Kernel: `get_crandom()`: a draw of `prng`, pulled towards the previous
/// one by the correlation (none without `state` or with `rho` 0).
pub fn get_crandom(state: Option<&mut CrndState>, prng: &mut RndState) -> u32 {
    let Some(state) = state.filter(|s| s.rho != 0) else {
        return prng.next_u32();
    };
    let value = u64::from(prng.next_u32());
    let rho = u64::from(state.rho) + 1;
    let answer = (value * ((1u64 << 32) - rho) + u64::from(state.last) * rho) >> 32;
    state.last = answer as u32;
    answer as u32
}

/// Kernel: `tabledist()`: a value of mean `mu` and deviation `sigma` —
/// uniform in `[mu - sigma, mu + sigma)` without a table, else the
/// table's entry (in `NETEM_DIST_SCALE` units of `sigma`) at a draw.
pub fn tabledist(
    mu: i64,
    sigma: i32,
    state: Option<&mut CrndState>,
    prng: &mut RndState,
    dist: Option<&[i16]>,
) -> i64 {
    if sigma == 0 {
        return mu;
    }
    let rnd = get_crandom(state, prng);
    let Some(table) = dist.filter(|t| !t.is_empty()) else {
        let span = 2 * sigma as u32;
        return (i64::from(rnd % span) + mu) - i64::from(sigma);
    };
    let t = i64::from(table[rnd as usize % table.len()]);
    let mut x = i64::from(sigma) % NETEM_DIST_SCALE * t;
    if x >= 0 {
        x += NETEM_DIST_SCALE / 2;
    } else {
        x -= NETEM_DIST_SCALE / 2;
    }
    x / NETEM_DIST_SCALE + i64::from(sigma) / NETEM_DIST_SCALE * t + mu
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeding_keeps_each_word_above_its_minimum() {
        // Seed 0 folds to 0: each word takes its minimum.
        let s = RndState::seeded(0);
        assert_eq!((s.s1, s.s2, s.s3, s.s4), (2, 8, 16, 128));
        // The fold, low 32 bits of (seed >> 32) ^ (seed << 10) ^ seed:
        // 1 ^ 0x400 ^ 1.
        let s = RndState::seeded(0x1_0000_0001);
        assert_eq!((s.s1, s.s4), (0x400, 0x400));
        let mut a = RndState::seeded(42);
        let mut b = RndState::seeded(42);
        assert!((0..1000).all(|_| a.next_u32() == b.next_u32()));
    }

    #[test]
    fn one_step_is_the_four_tausworthe_recurrences() {
        let mut s = RndState::seeded(0);
        let t = |s: u32, a: u32, b: u32, c: u32, d: u32| ((s & c) << d) ^ (((s << a) ^ s) >> b);
        let w = [2u32, 8, 16, 128].map(std::hint::black_box);
        let s1 = t(w[0], 6, 13, 0xffff_fffe, 18);
        let s2 = t(w[1], 2, 27, 0xffff_fff8, 2);
        let s3 = t(w[2], 13, 21, 0xffff_fff0, 7);
        let s4 = t(w[3], 3, 12, 0xffff_ff80, 13);
        assert_eq!(s.next_u32(), s1 ^ s2 ^ s3 ^ s4);
    }

    #[test]
    fn below_stays_below() {
        let mut s = RndState::seeded(9);
        assert!((0..10_000).all(|_| s.below(7) < 7));
        let hits = (0..80_000).filter(|_| s.below(8) == 3).count();
        assert!((9_000..11_000).contains(&hits), "{hits}");
    }
}
