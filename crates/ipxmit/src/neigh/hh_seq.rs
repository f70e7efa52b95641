//! The cached header of a connected entry, readable without the entry's
//! lock.
//!
//! Stands for the sequence lock of `struct hh_cache` (`hh_lock`,
//! `include/net/neighbour.h`): `neigh_hh_output` copies the header between
//! `read_seqbegin` and `read_seqretry`, and `neigh_update` rewrites it
//! under the write side. The transmit path so reads an entry and writes
//! nothing to it: threads sending to one next hop share its lines for
//! reading only, where a lock taken per batch moved the line from core to
//! core at each batch.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use super::HhCache;

/// An `Option<HhCache>` behind a sequence count: one writer at a time
/// (the holder of the entry's lock), any number of readers.
#[derive(Debug, Default)]
pub(super) struct HhSeq {
    /// Odd while a write is under way.
    seq: AtomicU32,
    /// The header's 14 bytes, then a zero byte and a byte that is 1 when
    /// there is a header (`Some`).
    words: [AtomicU64; 2],
}

/// The two words that hold `hh`.
fn encode(hh: Option<HhCache>) -> [u64; 2] {
    let mut b = [0u8; 16];
    if let Some(h) = hh {
        b[..14].copy_from_slice(&h.hdr);
        b[15] = 1;
    }
    let (lo, hi) = b.split_at(8);
    let word = |s: &[u8]| u64::from_ne_bytes(s.try_into().unwrap_or([0; 8]));
    [word(lo), word(hi)]
}

/// The header two words hold.
fn decode(w: [u64; 2]) -> Option<HhCache> {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&w[0].to_ne_bytes());
    b[8..].copy_from_slice(&w[1].to_ne_bytes());
    let mut hdr = [0u8; 14];
    hdr.copy_from_slice(&b[..14]);
    (b[15] == 1).then_some(HhCache { hdr })
}

impl HhSeq {
    /// Holding `hh`.
    pub(super) fn new(hh: Option<HhCache>) -> HhSeq {
        let s = HhSeq::default();
        s.publish(hh);
        s
    }

    /// Kernel: `write_seqlock()`/`write_sequnlock()` around the header's
    /// rewrite. The caller holds the entry's lock (one writer); an
    /// unchanged value writes nothing, so readers keep their cached line.
    pub(super) fn publish(&self, hh: Option<HhCache>) {
        let w = encode(hh);
        let now = [0, 1].map(|i| self.words[i].load(Ordering::Relaxed));
        if now == w {
            return;
        }
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        for (word, v) in self.words.iter().zip(w) {
            word.store(v, Ordering::Relaxed);
        }
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// Kernel: `neigh_hh_output()`'s `read_seqbegin`/`read_seqretry`
    /// loop: the header as one writer left it, never half of two.
    #[inline]
    pub(super) fn read(&self) -> Option<HhCache> {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            let w = [0, 1].map(|i| self.words[i].load(Ordering::Relaxed));
            fence(Ordering::Acquire);
            if s1 & 1 == 0 && self.seq.load(Ordering::Relaxed) == s1 {
                return decode(w);
            }
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    fn hh(b: u8) -> HhCache {
        HhCache { hdr: [b; 14] }
    }

    #[test]
    fn what_is_published_is_read_back() {
        let s = HhSeq::new(None);
        assert_eq!(s.read(), None);
        for v in [Some(hh(0)), Some(hh(0xff)), None, Some(hh(7))] {
            s.publish(v);
            assert_eq!(s.read(), v);
        }
    }

    #[test]
    fn an_unchanged_header_is_not_written_again() {
        let s = HhSeq::new(Some(hh(3)));
        let seq = s.seq.load(Ordering::Relaxed);
        s.publish(Some(hh(3)));
        assert_eq!(s.seq.load(Ordering::Relaxed), seq);
        s.publish(None);
        assert_eq!(s.seq.load(Ordering::Relaxed), seq.wrapping_add(2));
    }

    /// A reader racing a writer that flips between two headers and none
    /// sees one of the three, never a mix of two.
    #[test]
    fn a_reader_never_sees_half_of_two_headers() {
        let s = HhSeq::new(Some(hh(1)));
        let done = AtomicBool::new(false);
        let values = [Some(hh(1)), Some(hh(2)), None];
        std::thread::scope(|sc| {
            sc.spawn(|| {
                for i in 0..200_000 {
                    s.publish(values[i % 3]);
                }
                done.store(true, Ordering::Release);
            });
            let mut reads = 0u64;
            while !done.load(Ordering::Acquire) || reads < 1000 {
                let v = s.read();
                assert!(values.contains(&v), "torn read {v:?}");
                reads += 1;
            }
        });
    }
}
