//! The Internet checksum (RFC 1071) with partial sums that combine.
//!
//! Kernel: `include/net/checksum.h`, `lib/checksum.c`,
//! `arch/x86/include/asm/checksum_64.h`.
//!
//! The checksum of a datagram is the ones'-complement of the ones'-complement
//! sum of its 16-bit big-endian words. Because ones'-complement addition is
//! associative and commutative, the sum of a buffer can be built from the sums of
//! its pieces, in any order, as long as a piece that starts at an odd byte offset
//! has its sum byte-swapped (its bytes sit in the other half of every 16-bit
//! word). That is what lets the transmit path checksum data while copying it in
//! (`csum_partial_copy`), keep one running sum per fragment or per corked
//! datagram (`csum_block_add`), and patch a header field without re-reading the
//! payload (`csum_sub`, `csum_replace2`).
//!
//! [`Csum`] is the kernel's `__wsum`: a 32-bit *unfolded* sum. Two `Csum`s that
//! fold to the same 16 bits are the same checksum even when their `u32`s differ,
//! so compare `fold()` results, not `Csum`s. [`Csum::fold`] gives the 16-bit sum
//! (`~csum_fold()` in the kernel, whose `csum_fold` complements), [`Csum::finish`]
//! the value to store in a header.

use std::net::Ipv4Addr;

/// Bytes summed per inner-loop run before the 64-bit accumulator is folded.
/// Each 8-byte step adds less than 2^33, so 2^30 bytes (2^27 steps) cannot
/// overflow; the block is even, so blocks combine without byte rotation.
const ACC_BLOCK: usize = 1 << 30;

/// Chunk size of [`Csum::copy_and_sum`] without AVX2: small enough that
/// the bytes just copied are still in L1 when they are summed.
const COPY_CHUNK: usize = 4096;

/// An unfolded ones'-complement partial sum (the kernel's `__wsum`).
///
/// The value represents the sum of the 16-bit big-endian words of some bytes,
/// held in 32 bits with end-around carry. Combine sums with [`add`](Csum::add),
/// [`add_at`](Csum::add_at) and [`sub`](Csum::sub); turn one into a header
/// value with [`finish`](Csum::finish).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use = "Csum operations return a new sum; they do not modify `self`"]
pub struct Csum(u32);

impl Csum {
    /// The empty sum.
    pub const ZERO: Csum = Csum(0);

    /// A sum holding the raw 32-bit value `raw` (as stored by [`Csum::raw`]).
    #[inline]
    pub const fn from_raw(raw: u32) -> Csum {
        Csum(raw)
    }

    /// The raw unfolded 32-bit value, e.g. to keep in packet metadata.
    #[inline]
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// The sum of a single 16-bit word `v` (host order, as it would be read
    /// big-endian from the wire).
    #[inline]
    pub const fn from_u16(v: u16) -> Csum {
        Csum(v as u32)
    }

    /// The sum of `data`, padded with a zero byte if its length is odd.
    ///
    /// Kernel: `csum_partial()`, lib/checksum.c (with a zero initial sum).
    ///
    /// Reads eight bytes at a time in native byte order and adds their two
    /// 32-bit halves into a 64-bit accumulator (no carry to propagate inside
    /// the loop, so it vectorises); the result is converted to big-endian word
    /// order once at the end.
    pub fn of(data: &[u8]) -> Csum {
        if data.len() < 32 {
            // A header: eight bytes at a time, no lanes to set up or add.
            return Csum(native_to_be(fold64(sum_native_words(data))));
        }
        let mut total = Csum::ZERO;
        for block in data.chunks(ACC_BLOCK) {
            total = total.add(Csum(native_to_be(fold64(sum_native(block)))));
        }
        total
    }

    /// Ones'-complement addition of two sums (the bytes of `other` are taken to
    /// start at an even offset).
    ///
    /// Kernel: `csum_add()`, include/net/checksum.h.
    #[inline]
    #[allow(clippy::should_implement_trait)]
    pub const fn add(self, other: Csum) -> Csum {
        let (sum, carry) = self.0.overflowing_add(other.0);
        // On overflow `sum` is at most u32::MAX - 1, so adding the carry back
        // cannot overflow again.
        Csum(sum + carry as u32)
    }

    /// Ones'-complement subtraction: removes `other` from the sum, so that
    /// `a.add(b).sub(b)` folds to the same value as `a`.
    ///
    /// Kernel: `csum_sub()`, include/net/checksum.h.
    #[inline]
    #[allow(clippy::should_implement_trait)]
    pub const fn sub(self, other: Csum) -> Csum {
        self.add(Csum(!other.0))
    }

    /// Adds `block`, the sum of bytes that start at byte `offset` of the data
    /// `self` covers. At an odd offset the block's bytes occupy the other half
    /// of every 16-bit word, so its sum is byte-rotated first.
    ///
    /// Kernel: `csum_block_add()`, include/net/checksum.h.
    #[inline]
    pub const fn add_at(self, block: Csum, offset: usize) -> Csum {
        if offset & 1 == 1 {
            self.add(Csum(block.0.rotate_right(8)))
        } else {
            self.add(block)
        }
    }

    /// Adds one 16-bit word (host order of the big-endian wire value).
    #[inline]
    pub const fn add_u16(self, v: u16) -> Csum {
        self.add(Csum(v as u32))
    }

    /// Adds a 32-bit big-endian value, i.e. its two 16-bit words (an IPv4
    /// address is `u32::from(addr)`).
    #[inline]
    pub const fn add_u32(self, v: u32) -> Csum {
        self.add(Csum(v))
    }

    /// Copies `src` into `dst` and returns the sum of the bytes copied.
    ///
    /// Kernel: `csum_partial_copy_nocheck()`, include/net/checksum.h.
    ///
    /// From 128 bytes on, with AVX2, in one pass (each 32-byte block loaded
    /// once, stored and summed from the register); otherwise in 4 KiB
    /// chunks, summing each right after copying it while it is still in
    /// cache.
    ///
    /// # Panics
    ///
    /// If `dst.len() != src.len()`.
    pub fn copy_and_sum(src: &[u8], dst: &mut [u8]) -> Csum {
        assert_eq!(src.len(), dst.len(), "copy_and_sum: length mismatch");
        if src.len() >= 128 && has_avx2() {
            let mut total = Csum::ZERO;
            for (s, d) in src.chunks(ACC_BLOCK).zip(dst.chunks_mut(ACC_BLOCK)) {
                // SAFETY: the CPU supports AVX2 (checked just above), the
                // only requirement of a `#[target_feature(enable = "avx2")]`
                // function.
                let acc = unsafe { copy_sum_native_avx2(s, d) };
                // Every block but the last is even-sized: offsets stay even.
                total = total.add(Csum(native_to_be(fold64(acc))));
            }
            return total;
        }
        let mut total = Csum::ZERO;
        for (s, d) in src.chunks(COPY_CHUNK).zip(dst.chunks_mut(COPY_CHUNK)) {
            d.copy_from_slice(s);
            // Every chunk but the last is even-sized, so offsets stay even.
            total = total.add(Csum::of(d));
        }
        total
    }

    /// Copies each segment's `src` into its `dst` and sums the bytes as one
    /// run of data, segment after segment (each segment's first byte at the
    /// offset the lengths of the ones before it add up to): a copy that
    /// gathers and scatters at once, e.g. a datagram's payload from several
    /// messages into the data rooms of its fragments. Returns the sum of the
    /// bytes up to the end of the first segment marked ([`CopySeg::mark`];
    /// [`Csum::ZERO`] when none is) and the sum of all. The bytes copied
    /// add up to less than 16 GiB.
    ///
    /// With AVX2, one set of running sums in registers takes every segment
    /// that starts at an even offset of the run (a segment of odd length
    /// closes the set; the next starts a new one, its sum byte-rotated), and
    /// is reduced and folded once per set and at the mark, not per segment
    /// or per destination.
    ///
    /// # Panics
    ///
    /// If a segment's `src` and `dst` differ in length.
    pub fn copy_and_sum_scatter<'s, 'd>(
        segs: impl IntoIterator<Item = CopySeg<'s, 'd>>,
    ) -> (Csum, Csum) {
        if has_avx2() {
            // SAFETY: the CPU supports AVX2 (checked just above), the only
            // requirement of a `#[target_feature(enable = "avx2")]`
            // function.
            return unsafe { copy_sum_scatter_avx2(segs.into_iter()) };
        }
        let (mut mark, mut total, mut at) = (None, Csum::ZERO, 0);
        for seg in segs {
            let len = seg.src.len();
            total = total.add_at(Csum::copy_and_sum(seg.src, seg.dst), at);
            at += len;
            if seg.mark && mark.is_none() {
                mark = Some(total);
            }
        }
        (mark.unwrap_or(Csum::ZERO), total)
    }

    /// Folds the sum to 16 bits. Not complemented: the sum of a header whose
    /// checksum field is correct folds to `0xffff`.
    #[inline]
    pub const fn fold(self) -> u16 {
        let s = (self.0 & 0xffff) + (self.0 >> 16);
        let s = (s & 0xffff) + (s >> 16);
        s as u16
    }

    /// The checksum to store in a header: the complement of [`fold`](Csum::fold).
    ///
    /// Kernel: `csum_fold()`, include/asm-generic/checksum.h.
    #[inline]
    pub const fn finish(self) -> u16 {
        !self.fold()
    }
}

/// One stretch of a [`Csum::copy_and_sum_scatter`]: `src` copied into
/// `dst` (as long).
#[derive(Debug)]
pub struct CopySeg<'s, 'd> {
    /// The bytes to copy.
    pub src: &'s [u8],
    /// Where they go.
    pub dst: &'d mut [u8],
    /// The sum up to the end of this segment is wanted too.
    pub mark: bool,
}

/// Sum of `data` as native-endian 32-bit words (zero-padded at the end), in a
/// 64-bit accumulator. `data` must be shorter than 16 GiB. Uses the CPU's
/// 256-bit vectors where it has them (AVX2, checked once at run time).
#[inline]
fn sum_native(data: &[u8]) -> u64 {
    if data.len() >= 128 && has_avx2() {
        // SAFETY: the CPU supports AVX2 (checked just above), the only
        // requirement of a `#[target_feature(enable = "avx2")]` function.
        return unsafe { sum_native_avx2(data) };
    }
    sum_native_lanes(data)
}

/// True when the CPU has AVX2 (`is_x86_feature_detected!` caches it).
#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx2() -> bool {
    std::is_x86_feature_detected!("avx2")
}

/// No AVX2 off x86-64.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn has_avx2() -> bool {
    false
}

/// [`sum_native_lanes`] compiled for AVX2: the eight lanes become two
/// 256-bit vectors (two widening loads and two adds per 32 bytes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sum_native_avx2(data: &[u8]) -> u64 {
    sum_native_lanes(data)
}

/// Never called off x86-64 (`has_avx2` is false there).
///
/// # Safety
///
/// None: `unsafe` only so its caller reads as on x86-64, where the
/// function needs AVX2 (the SAFETY note at the call).
#[cfg(not(target_arch = "x86_64"))]
unsafe fn sum_native_avx2(data: &[u8]) -> u64 {
    sum_native_lanes(data)
}

/// Copy and sum in one pass, for AVX2: per 32-byte block one unaligned
/// 256-bit load, one unaligned 256-bit store into `dst`, and the block's
/// eight 32-bit words added into 64-bit lanes held in registers
/// ([`WordSums`]), four blocks per step; the last `len % 32` bytes are
/// copied and summed by the portable code. Returns the same sum as
/// `sum_native_lanes(src)` (the sum of `src`'s native-endian 32-bit words).
/// `src` is below 16 GiB. (The same loop as [`copy_sum_into`], kept apart:
/// sharing it costs this, the single-segment copy, about 1 ns in 22.)
///
/// # Panics
///
/// If `dst.len() != src.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn copy_sum_native_avx2(src: &[u8], dst: &mut [u8]) -> u64 {
    assert_eq!(
        src.len(),
        dst.len(),
        "copy_sum_native_avx2: length mismatch"
    );
    let mut sums = WordSums::new();
    let mut src4 = src.chunks_exact(128);
    let mut dst4 = dst.chunks_exact_mut(128);
    for (s, d) in (&mut src4).zip(&mut dst4) {
        sums.add2(copy_block(s, d, 0), copy_block(s, d, 32));
        sums.add2(copy_block(s, d, 64), copy_block(s, d, 96));
    }
    let mut src1 = src4.remainder().chunks_exact(32);
    let mut dst1 = dst4.into_remainder().chunks_exact_mut(32);
    for (s, d) in (&mut src1).zip(&mut dst1) {
        sums.add2(copy_block(s, d, 0), WordSums::zero());
    }
    // The last `len % 32` bytes: copied by copying the last 32 bytes of
    // `src` again (the first of them are already in `dst`, and get the same
    // bytes; no call to memcpy), summed by the portable code.
    let at = src.len() - src.len() % 32;
    if src.len() < 32 {
        dst.copy_from_slice(src);
    } else if at < src.len() {
        let _ = copy_block(src, dst, src.len() - 32);
    }
    sums.total() + sum_native_lanes(&src[at..])
}

/// [`Csum::copy_and_sum_scatter`] with AVX2. The iterator's `next` is
/// inlined here, so the running sums stay in registers from the first
/// segment to the last (a call per segment stores and reloads them: 2 to 9
/// ns a call, measured).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn copy_sum_scatter_avx2<'s, 'd>(segs: impl Iterator<Item = CopySeg<'s, 'd>>) -> (Csum, Csum) {
    let mut sums = WordSums::new();
    let (mut tails, mut set_at, mut at) = (0u64, 0, 0);
    let (mut total, mut mark) = (Csum::ZERO, None);
    for seg in segs {
        let len = seg.src.len();
        tails += copy_sum_into(&mut sums, seg.src, seg.dst);
        at += len;
        let odd = len % 2 == 1;
        if odd || (seg.mark && mark.is_none()) {
            // The sum so far: the sets closed, and this one at its offset.
            let set = Csum(native_to_be(fold64(sums.total() + tails)));
            let upto = total.add_at(set, set_at);
            if seg.mark && mark.is_none() {
                mark = Some(upto);
            }
            if odd {
                (total, sums, tails, set_at) = (upto, WordSums::new(), 0, at);
            }
        }
    }
    let set = Csum(native_to_be(fold64(sums.total() + tails)));
    (mark.unwrap_or(Csum::ZERO), total.add_at(set, set_at))
}

/// The one-pass copy of `src` into `dst` with its 32-bit words added into
/// `sums`, four blocks per step, then one block at a time. The last `len %
/// 32` bytes are copied by copying the last 32 bytes of `src` again (the
/// first of them already in `dst` get the same bytes; no call to memcpy).
/// When `src` is at least 32 bytes long and even, those last 32 bytes,
/// the ones already summed masked to zero, are added as one more block (a
/// byte's place moves by a multiple of 2, so its word half is the same);
/// otherwise the portable code sums the tail, returned.
///
/// # Panics
///
/// If `dst.len() != src.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn copy_sum_into(sums: &mut WordSums, src: &[u8], dst: &mut [u8]) -> u64 {
    assert_eq!(src.len(), dst.len(), "copy_sum_into: length mismatch");
    let mut src4 = src.chunks_exact(128);
    let mut dst4 = dst.chunks_exact_mut(128);
    for (s, d) in (&mut src4).zip(&mut dst4) {
        sums.add2(copy_block(s, d, 0), copy_block(s, d, 32));
        sums.add2(copy_block(s, d, 64), copy_block(s, d, 96));
    }
    // At most three whole blocks are left: unrolled (as a loop here, LLVM
    // makes their copy a call to memcpy, and the sums leave the registers
    // around it).
    let (s, d) = (src4.remainder(), dst4.into_remainder());
    for at in [0, 32, 64] {
        if at + 32 <= s.len() {
            sums.add2(copy_block(s, d, at), WordSums::zero());
        }
    }
    let len = src.len();
    let at = len - len % 32;
    if at == len {
        return 0;
    }
    if len < 32 {
        dst.copy_from_slice(src);
        return sum_native_lanes(src);
    }
    let last = copy_block(src, dst, len - 32);
    if len % 2 == 1 {
        return sum_native_lanes(&src[at..]);
    }
    sums.add2(keep_last(last, len - at), WordSums::zero());
    0
}

/// Bytes `32 - n` to 32 of `TAIL_MASK`: zeros, then `n` bytes of ones.
static TAIL_MASK: [u8; 64] = {
    let mut m = [0u8; 64];
    let mut i = 32;
    while i < 64 {
        m[i] = 0xff;
        i += 1;
    }
    m
};

/// `v` with all but its last `n` bytes (`n` at most 32) zeroed.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn keep_last(v: std::arch::x86_64::__m256i, n: usize) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::{__m256i, _mm256_and_si256, _mm256_loadu_si256};
    let m: &[u8; 32] = TAIL_MASK[n..n + 32].try_into().expect("32-byte mask");
    // SAFETY: `m` is 32 bytes (checked by the slicing above), the size of
    // one `__m256i`; `loadu` accepts any alignment.
    let mask = unsafe { _mm256_loadu_si256(m.as_ptr().cast::<__m256i>()) };
    _mm256_and_si256(v, mask)
}

/// Copies the 32-byte block `src[at..at + 32]` to `dst[at..at + 32]` with
/// one unaligned 256-bit load and one unaligned 256-bit store, and returns
/// it.
///
/// # Panics
///
/// If the block does not fit in `src` or in `dst` (the callers' loop
/// bounds rule that out, so the checks compile away).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn copy_block(src: &[u8], dst: &mut [u8], at: usize) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::{__m256i, _mm256_loadu_si256, _mm256_storeu_si256};
    let s: &[u8; 32] = src[at..at + 32].try_into().expect("32-byte block");
    let d: &mut [u8; 32] = (&mut dst[at..at + 32]).try_into().expect("32-byte block");
    // SAFETY: `s` and `d` are 32 bytes (checked by the slicing above), the
    // size of one `__m256i`, so the load reads only `s` and the store writes
    // only `d`; `loadu`/`storeu` accept any alignment.
    unsafe {
        let v = _mm256_loadu_si256(s.as_ptr().cast::<__m256i>());
        _mm256_storeu_si256(d.as_mut_ptr().cast::<__m256i>(), v);
        v
    }
}

/// Running sums of 32-bit words in AVX2 registers, two blocks' worth of
/// accumulators (so consecutive blocks add in parallel).
///
/// A 32-byte block is four 64-bit lanes, each two native-endian 32-bit
/// words `lo + hi * 2^32`. Adding the lanes as they are (`wrapped`, mod
/// 2^64) gives `L + H * 2^32` where `L` and `H` are the lane's sums of low
/// and high words; `high` keeps `H` exactly (the lane shifted right by 32).
/// Then `L = wrapped - H * 2^32` (mod 2^64, exact because `L < 2^64`), and
/// the lane's word sum is `L + H`: one shift and two adds per block, no
/// shuffles.
#[cfg(target_arch = "x86_64")]
struct WordSums {
    /// Per lane, the lanes added as 64-bit integers (mod 2^64).
    wrapped: [std::arch::x86_64::__m256i; 2],
    /// Per lane, the sum of the high 32-bit words.
    high: [std::arch::x86_64::__m256i; 2],
}

#[cfg(target_arch = "x86_64")]
impl WordSums {
    /// All-zero vector (also a block that adds nothing).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn zero() -> std::arch::x86_64::__m256i {
        std::arch::x86_64::_mm256_setzero_si256()
    }

    /// Empty sums.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn new() -> WordSums {
        let z = Self::zero();
        WordSums {
            wrapped: [z; 2],
            high: [z; 2],
        }
    }

    /// Adds the words of blocks `a` and `b`.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn add2(&mut self, a: std::arch::x86_64::__m256i, b: std::arch::x86_64::__m256i) {
        use std::arch::x86_64::{_mm256_add_epi64, _mm256_srli_epi64};
        self.wrapped[0] = _mm256_add_epi64(self.wrapped[0], a);
        self.wrapped[1] = _mm256_add_epi64(self.wrapped[1], b);
        self.high[0] = _mm256_add_epi64(self.high[0], _mm256_srli_epi64::<32>(a));
        self.high[1] = _mm256_add_epi64(self.high[1], _mm256_srli_epi64::<32>(b));
    }

    /// The sum of all words added (exact below 2^64).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn total(&self) -> u64 {
        use std::arch::x86_64::{
            _mm256_add_epi64, _mm256_extract_epi64, _mm256_slli_epi64, _mm256_sub_epi64,
        };
        let wrapped = _mm256_add_epi64(self.wrapped[0], self.wrapped[1]);
        let high = _mm256_add_epi64(self.high[0], self.high[1]);
        let low = _mm256_sub_epi64(wrapped, _mm256_slli_epi64::<32>(high));
        let t = _mm256_add_epi64(low, high);
        let lanes = [
            _mm256_extract_epi64::<0>(t),
            _mm256_extract_epi64::<1>(t),
            _mm256_extract_epi64::<2>(t),
            _mm256_extract_epi64::<3>(t),
        ];
        lanes.iter().map(|&l| l as u64).sum()
    }
}

/// Never called off x86-64 (`has_avx2` is false there).
///
/// # Safety
///
/// None: `unsafe` only so its caller reads as on x86-64, where the
/// function needs AVX2 (the SAFETY note at the call).
#[cfg(not(target_arch = "x86_64"))]
unsafe fn copy_sum_scatter_avx2<'s, 'd>(
    _segs: impl Iterator<Item = CopySeg<'s, 'd>>,
) -> (Csum, Csum) {
    unreachable!("copy_sum_scatter_avx2 off x86-64")
}

/// Never called off x86-64 (`has_avx2` is false there).
///
/// # Safety
///
/// None: `unsafe` only so its caller reads as on x86-64, where the
/// function needs AVX2 (the SAFETY note at the call).
#[cfg(not(target_arch = "x86_64"))]
unsafe fn copy_sum_native_avx2(src: &[u8], dst: &mut [u8]) -> u64 {
    dst.copy_from_slice(src);
    sum_native_lanes(src)
}

/// The portable sum: 32 bytes per step, eight 32-bit words widened into
/// eight independent 64-bit lanes (no lane can overflow below 16 GiB), then
/// the tail word by word.
#[inline(always)]
fn sum_native_lanes(data: &[u8]) -> u64 {
    let mut lanes = [0u64; 8];
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        let b: &[u8; 32] = b.try_into().expect("32-byte block");
        for (i, lane) in lanes.iter_mut().enumerate() {
            let w = [b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]];
            *lane += u64::from(u32::from_ne_bytes(w));
        }
    }
    lanes.iter().sum::<u64>() + sum_native_words(blocks.remainder())
}

/// [`sum_native_lanes`] of fewer than 32 bytes: eight bytes at a time,
/// the last few zero-padded (a byte at a time: no call to memcpy).
#[inline]
fn sum_native_words(data: &[u8]) -> u64 {
    let mut acc = 0;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let w = u64::from_ne_bytes(chunk.try_into().expect("8-byte word"));
        acc += (w & 0xffff_ffff) + (w >> 32);
    }
    let mut word = [0u8; 8];
    for (w, &b) in word.iter_mut().zip(chunks.remainder()) {
        *w = b;
    }
    let w = u64::from_ne_bytes(word);
    acc + (w & 0xffff_ffff) + (w >> 32)
}

/// Folds a 64-bit accumulator to 32 bits with end-around carry.
#[inline]
const fn fold64(acc: u64) -> u32 {
    let s = (acc & 0xffff_ffff) + (acc >> 32); // at most 2^33 - 2
    let s = (s & 0xffff_ffff) + (s >> 32); // at most 2^32 - 1
    s as u32
}

/// Converts a sum of native-endian words to a sum of big-endian words.
/// Swapping every byte of the 32-bit sum swaps both of its 16-bit halves,
/// and a byte-swapped sum is the sum of the byte-swapped words.
#[inline]
const fn native_to_be(sum: u32) -> u32 {
    if cfg!(target_endian = "little") {
        sum.swap_bytes()
    } else {
        sum
    }
}

/// The sum of the IPv4 pseudo-header that TCP and UDP checksums cover
/// (source, destination, zero byte, protocol, transport length). Add the
/// transport header and payload sums, then [`Csum::finish`].
///
/// Kernel: `csum_tcpudp_nofold()`; `csum_tcpudp_magic()` is this followed by
/// `add` and `finish`.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> Csum {
    Csum::ZERO
        .add_u32(u32::from(src))
        .add_u32(u32::from(dst))
        .add_u16(u16::from(protocol))
        .add_u16(len)
}

/// The Internet checksum of `data`: `Csum::of(data).finish()`.
///
/// Kernel: `ip_compute_csum()`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    Csum::of(data).finish()
}

/// Whether `data`, which includes its own checksum field, verifies: its sum
/// folds to `0xffff`.
///
/// Kernel: `ip_fast_csum(iph, ihl) == 0`.
#[inline]
pub fn verify(data: &[u8]) -> bool {
    Csum::of(data).fold() == 0xffff
}

/// Updates checksum `check` for one 16-bit field changing from `old` to `new`
/// without re-summing the data (RFC 1624, eqn. 3).
///
/// Kernel: `csum_replace2()`, include/net/checksum.h.
#[inline]
pub fn replace_u16(check: u16, old: u16, new: u16) -> u16 {
    Csum::from_u16(!check)
        .sub(Csum::from_u16(old))
        .add_u16(new)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Byte-at-a-time reference: big-endian words, zero pad, fold.
    fn reference_fold(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        for pair in data.chunks(2) {
            let hi = u64::from(pair[0]) << 8;
            let lo = pair.get(1).copied().map_or(0, u64::from);
            acc += hi | lo;
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    fn oracle(data: &[u8]) -> u16 {
        u16::from_be_bytes(internet_checksum::checksum(data))
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(Csum::of(&data).fold(), 0xddf2);
        assert_eq!(checksum(&data), 0x220d);
        assert_eq!(oracle(&data), 0x220d);
    }

    #[test]
    fn known_ipv4_header() {
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0xb861);
        assert!(!verify(&hdr));
        hdr[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert!(verify(&hdr));
    }

    #[test]
    fn empty_and_odd() {
        assert_eq!(Csum::of(&[]).fold(), 0);
        assert_eq!(checksum(&[]), 0xffff);
        assert_eq!(Csum::of(&[0xab]).fold(), 0xab00);
        assert_eq!(Csum::of(&[1, 2, 3]).fold(), 0x0402);
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37) ^ 0xa5).collect();
            assert_eq!(Csum::of(&data).fold(), reference_fold(&data), "len {len}");
        }
    }

    /// Divides the proptests' input lengths: Miri interprets every byte.
    #[cfg(not(miri))]
    const MIRI_SHRINK: usize = 1;
    /// See above.
    #[cfg(miri)]
    const MIRI_SHRINK: usize = 10;

    /// Bytes of `all_ones_carries`: 1 MiB, or 4 KiB under Miri, which
    /// interprets every byte (still eight 32-byte blocks per lane fold).
    #[cfg(not(miri))]
    const ALL_ONES: usize = 1 << 20;
    /// See above.
    #[cfg(miri)]
    const ALL_ONES: usize = 1 << 12;

    #[test]
    fn all_ones_carries() {
        // Maximal words stress the end-around carry of every stage.
        let data = vec![0xffu8; ALL_ONES];
        assert_eq!(Csum::of(&data).fold(), 0xffff);
        assert_eq!(reference_fold(&data), 0xffff);
        assert_eq!(checksum(&data), oracle(&data));
        let mut dst = vec![0u8; data.len()];
        assert_eq!(Csum::copy_and_sum(&data, &mut dst), Csum::of(&data));
        assert_eq!(dst, data);
    }

    #[test]
    fn pseudo_header() {
        let src = Ipv4Addr::new(192, 168, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let bytes = [192, 168, 0, 1, 10, 0, 0, 2, 0, 17, 0x01, 0x2c];
        assert_eq!(
            pseudo_header_v4(src, dst, 17, 300).fold(),
            Csum::of(&bytes).fold()
        );
    }

    #[test]
    fn add_u16_u32_helpers() {
        let bytes = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc];
        let built = Csum::ZERO.add_u32(0x1234_5678).add_u16(0x9abc);
        assert_eq!(built.fold(), Csum::of(&bytes).fold());
        assert_eq!(Csum::from_u16(0x1234).fold(), 0x1234);
        assert_eq!(Csum::from_raw(0xdead_beef).raw(), 0xdead_beef);
    }

    #[test]
    #[should_panic(expected = "length mismatch")]
    fn copy_and_sum_length_mismatch_panics() {
        let mut dst = [0u8; 3];
        let _ = Csum::copy_and_sum(&[1, 2], &mut dst);
    }

    proptest! {
        #[test]
        fn matches_oracles(data in proptest::collection::vec(any::<u8>(), 0..3000 / MIRI_SHRINK)) {
            prop_assert_eq!(Csum::of(&data).fold(), reference_fold(&data));
            prop_assert_eq!(checksum(&data), oracle(&data));
        }

        #[test]
        fn split_and_combine(
            data in proptest::collection::vec(any::<u8>(), 0..2000 / MIRI_SHRINK),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            points.push(0);
            points.push(data.len());
            points.sort_unstable();
            let mut total = Csum::ZERO;
            for w in points.windows(2) {
                total = total.add_at(Csum::of(&data[w[0]..w[1]]), w[0]);
            }
            prop_assert_eq!(total.fold(), Csum::of(&data).fold());
        }

        #[test]
        fn copy_and_sum_matches(data in proptest::collection::vec(any::<u8>(), 0..5000 / MIRI_SHRINK)) {
            let mut dst = vec![0u8; data.len()];
            let sum = Csum::copy_and_sum(&data, &mut dst);
            prop_assert_eq!(&dst, &data);
            prop_assert_eq!(sum.fold(), Csum::of(&data).fold());
            prop_assert_eq!(sum.finish(), oracle(&data));
        }

        #[test]
        fn copy_and_sum_scatter_matches(
            data in proptest::collection::vec(any::<u8>(), 0..4000 / MIRI_SHRINK),
            src_cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
            dst_cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
            mark in any::<prop::sample::Index>(),
            dst_at in 0usize..67,
        ) {
            // The data cut into source pieces and, elsewhere, into
            // destination rooms (empty ones, odd lengths and odd offsets
            // among them); a segment wherever both go on. The rooms lie in
            // one buffer at any alignment, one guard byte between each, and
            // the bytes around them are left alone.
            let cuts = |c: &[prop::sample::Index]| {
                let mut at: Vec<usize> = c.iter().map(|c| c.index(data.len() + 1)).collect();
                at.extend([0, data.len()]);
                at.sort_unstable();
                at
            };
            let (src_at, dst_rooms) = (cuts(&src_cuts), cuts(&dst_cuts));
            let mut all: Vec<usize> = src_at.iter().chain(&dst_rooms).copied().collect();
            all.sort_unstable();
            all.dedup();
            let gap = |room: usize| dst_at + room; // room `k` starts `k` bytes later
            let mut buf = vec![0xa5u8; dst_at + data.len() + dst_rooms.len() + 67];
            let mut segs = Vec::new();
            let mut rest: &mut [u8] = &mut buf[..];
            let mut used = 0;
            let marked = mark.index(all.len().max(1));
            for (n, w) in all.windows(2).enumerate() {
                // The room of the segment's first byte, and where it lies.
                let room = dst_rooms.partition_point(|&r| r <= w[0]) - 1;
                let start = gap(room) + w[0];
                let tail = std::mem::take(&mut rest);
                let (_, tail) = tail.split_at_mut(start - used);
                let (dst, tail) = tail.split_at_mut(w[1] - w[0]);
                (rest, used) = (tail, start + w[1] - w[0]);
                segs.push(CopySeg { src: &data[w[0]..w[1]], dst, mark: n >= marked });
            }
            let upto = all.windows(2).nth(marked).map_or(0, |w| w[1]);
            let (at_mark, sum) = Csum::copy_and_sum_scatter(segs);
            prop_assert_eq!(sum.finish(), oracle(&data));
            prop_assert_eq!(at_mark.finish(), oracle(&data[..upto]));
            for (k, w) in dst_rooms.windows(2).enumerate() {
                prop_assert_eq!(&buf[gap(k) + w[0]..gap(k) + w[1]], &data[w[0]..w[1]]);
                prop_assert_eq!(buf[gap(k) + w[1]], 0xa5, "guard after room {}", k);
            }
            prop_assert!(buf[..dst_at].iter().all(|&b| b == 0xa5));
        }

        #[test]
        fn copy_and_sum_unaligned(
            data in proptest::collection::vec(any::<u8>(), 0..5000 / MIRI_SHRINK),
            src_at in 0usize..67,
            dst_at in 0usize..67,
        ) {
            // `src` and `dst` at arbitrary offsets inside larger buffers, so
            // the 32-byte loads and stores start at every alignment; the
            // bytes around `dst` must be left alone.
            let mut src_buf = vec![0x5au8; src_at + data.len() + 67];
            src_buf[src_at..src_at + data.len()].copy_from_slice(&data);
            let src = &src_buf[src_at..src_at + data.len()];
            let mut dst_buf = vec![0xa5u8; dst_at + data.len() + 67];
            let sum = Csum::copy_and_sum(src, &mut dst_buf[dst_at..dst_at + data.len()]);
            prop_assert_eq!(&dst_buf[dst_at..dst_at + data.len()], &data[..]);
            prop_assert!(dst_buf[..dst_at].iter().all(|&b| b == 0xa5));
            prop_assert!(dst_buf[dst_at + data.len()..].iter().all(|&b| b == 0xa5));
            prop_assert_eq!(sum.finish(), oracle(&data));
            // The one-pass path returns exactly the unfolded sum `of` does.
            if data.len() <= COPY_CHUNK || has_avx2() {
                prop_assert_eq!(sum, Csum::of(&data));
            }
            if has_avx2() {
                // And its AVX2 core (at any length) exactly the portable
                // 64-bit sum of native-endian words.
                let dst = &mut dst_buf[dst_at..dst_at + data.len()];
                dst.fill(0);
                // SAFETY: the CPU supports AVX2 (checked just above).
                let acc = unsafe { copy_sum_native_avx2(src, dst) };
                prop_assert_eq!(acc, sum_native_lanes(&data));
                prop_assert_eq!(&dst[..], &data[..]);
            }
        }

        #[test]
        fn sub_undoes_add(a in any::<u32>(), b in any::<u32>()) {
            let (a, b) = (Csum::from_raw(a), Csum::from_raw(b));
            prop_assert_eq!(a.add(b).sub(b).fold() % 0xffff, a.fold() % 0xffff);
        }

        #[test]
        fn sub_removes_block(
            head in proptest::collection::vec(any::<u8>(), 0..200 / MIRI_SHRINK),
            tail in proptest::collection::vec(any::<u8>(), 0..200 / MIRI_SHRINK),
        ) {
            let mut whole = head.clone();
            whole.extend_from_slice(&tail);
            let rotated = Csum::ZERO.add_at(Csum::of(&tail), head.len());
            let without = Csum::of(&whole).sub(rotated);
            prop_assert_eq!(without.fold() % 0xffff, Csum::of(&head).fold() % 0xffff);
        }

        #[test]
        fn replace_matches_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 2..64),
            at in any::<prop::sample::Index>(),
            new in any::<u16>(),
        ) {
            if data.len() % 2 == 1 { data.pop(); }
            let i = at.index(data.len() / 2) * 2;
            let old = u16::from_be_bytes([data[i], data[i + 1]]);
            let before = checksum(&data);
            data[i..i + 2].copy_from_slice(&new.to_be_bytes());
            let after = checksum(&data);
            prop_assert_eq!(replace_u16(before, old, new) % 0xffff, after % 0xffff);
        }
    }
}
