//! Bob Jenkins' lookup3 hash over 32-bit words, as the kernel's
//! `jhash2()` (`include/linux/jhash.h`) computes it: NAT picks an address
//! of a range by it (`find_best_ips_proto()`), so the same flow maps to
//! the address the kernel would give it.
//!
//! # Algorithm
//!
//! Three 32-bit state words start at `0xdeadbeef + 4·len + initval`. Each
//! full group of three input words is added in and stirred by `mix` (six
//! subtract/xor-rotate/add rounds); the last one to three words are added
//! and the state finished by `final` (seven xor/subtract-rotate rounds);
//! the hash is the third word. Zero words left over skip `final`.

/// `JHASH_INITVAL`: an arbitrary start.
const INITVAL: u32 = 0xdead_beef;

/// lookup3's `mix()`: reversible stirring of three words.
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    for (x, y, z, r) in [(0, 2, 1, 4), (1, 0, 2, 6), (2, 1, 0, 8)]
        .into_iter()
        .chain([(0, 2, 1, 16), (1, 0, 2, 19), (2, 1, 0, 4)])
    {
        let mut s = [*a, *b, *c];
        // s[x] -= s[y]; s[x] ^= rol(s[y], r); s[y] += s[z]
        s[x] = s[x].wrapping_sub(s[y]) ^ s[y].rotate_left(r);
        s[y] = s[y].wrapping_add(s[z]);
        [*a, *b, *c] = s;
    }
}

/// lookup3's `final()`: last mixing of three words into `c`.
fn finish(a: &mut u32, b: &mut u32, c: &mut u32) {
    for (x, y, r) in [(2, 1, 14), (0, 2, 11), (1, 0, 25), (2, 1, 16)]
        .into_iter()
        .chain([(0, 2, 4), (1, 0, 14), (2, 1, 24)])
    {
        let mut s = [*a, *b, *c];
        s[x] = (s[x] ^ s[y]).wrapping_sub(s[y].rotate_left(r));
        [*a, *b, *c] = s;
    }
}

/// Kernel: `jhash2()`: the hash of `k` with `initval`.
pub fn jhash2(k: &[u32], initval: u32) -> u32 {
    let start = INITVAL
        .wrapping_add((k.len() as u32) << 2)
        .wrapping_add(initval);
    let (mut a, mut b, mut c) = (start, start, start);
    let mut rest = k;
    while rest.len() > 3 {
        a = a.wrapping_add(rest[0]);
        b = b.wrapping_add(rest[1]);
        c = c.wrapping_add(rest[2]);
        mix(&mut a, &mut b, &mut c);
        rest = &rest[3..];
    }
    if rest.is_empty() {
        return c;
    }
    for (i, w) in rest.iter().enumerate() {
        match i {
            0 => a = a.wrapping_add(*w),
            1 => b = b.wrapping_add(*w),
            _ => c = c.wrapping_add(*w),
        }
    }
    finish(&mut a, &mut b, &mut c);
    c
}

/// Kernel: `reciprocal_scale()`: `val` scaled into `0..ep_ro`.
pub fn reciprocal_scale(val: u32, ep_ro: u32) -> u32 {
    ((u64::from(val) * u64::from(ep_ro)) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values themselves are checked against the kernel's choice of
    /// NAT address (`cli/tests/nat_kernel.rs`, address ranges); here the
    /// properties the algorithm states.
    #[test]
    fn empty_input_is_the_start_value_and_words_change_the_hash() {
        assert_eq!(jhash2(&[], 0), INITVAL);
        assert_eq!(jhash2(&[], 7), INITVAL.wrapping_add(7));
        let h = jhash2(&[1, 0, 0, 0], 0);
        assert_ne!(h, jhash2(&[2, 0, 0, 0], 0));
        assert_ne!(h, jhash2(&[1, 0, 0, 0], 1));
        assert_ne!(h, jhash2(&[0, 0, 0, 1], 0));
    }

    #[test]
    fn reciprocal_scale_spans_the_range() {
        assert_eq!(reciprocal_scale(0, 10), 0);
        assert_eq!(reciprocal_scale(u32::MAX, 10), 9);
        assert_eq!(reciprocal_scale(1 << 31, 10), 5);
    }
}
