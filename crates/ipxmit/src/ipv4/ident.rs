//! IP identification selection.
//!
//! Stands for `ip_select_ident_segs`/`__ip_select_ident` and `ip_idents_reserve`
//! (`include/net/ip.h`, `net/ipv4/route.c`): a datagram that may be fragmented
//! draws its ID from one of 2048 counters picked by a keyed hash of (destination,
//! source, protocol), so IDs are per-destination sequences; a DF datagram from a
//! connected socket uses the socket's own counter, and from an unconnected one
//! may carry 0. All fragments of a datagram share its ID (they copy the header).
//!
//! Per-thread reservations. The kernel adds to the bucket's atomic counter
//! for every datagram; a batch reserves the IDs of all its datagrams with one
//! add (`IdentTable::reserve_run`) and gives back what it did not use. When
//! several threads send to one destination at once, that one add per batch
//! still moves the bucket's cache line between them (measured: two threads
//! each paid ~2 ns a datagram more than two threads on separate stacks). So a
//! thread notices contention — the bucket moved between two of its own
//! reservations, so another sender drew from it — and from then on reserves
//! [`CHUNK`] IDs at a time and serves its next runs from them, until a refill
//! finds the bucket where its last chunk ended (nobody else drew: exact
//! reservations again) or the chunk is [`HOLD_NS`] old (its rest skipped).
//! A thread that sends alone to a destination gets exactly the kernel's
//! sequence; concurrent senders get unique IDs from the same counter,
//! interleaved by chunks instead of by datagrams (the kernel's interleaving
//! depends on timing as well).

use std::cell::Cell;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// IDs a contended thread reserves at once: 16 batches of 64. At the
/// ~40 M datagrams/s of one sending thread they last ~25 us, well inside
/// [`HOLD_NS`].
pub const CHUNK: u32 = 1024;

/// How long a thread may keep the rest of a chunk. An ID it holds is used at
/// most this long after it was drawn, while other senders move the bucket
/// on: for them to wrap it (65,536 IDs) within 100 us takes 655 M
/// datagrams/s to one destination, so a held ID never meets its own reuse;
/// the kernel's sequence itself wraps every 65,536 datagrams.
pub const HOLD_NS: u64 = 100_000;

/// Numbers the tables, so a thread's holder never takes a new table (at a
/// freed one's address) for the old.
static TABLES: AtomicU64 = AtomicU64::new(1);

/// Number of ID buckets (`IP_IDENTS_SZ`).
pub const IDENTS: usize = 2048;

/// The per-destination ID counters of a stack.
#[derive(Debug)]
pub struct IdentTable {
    buckets: Box<[AtomicU32]>,
    key: AtomicU64,
    /// This table's number ([`TABLES`]).
    id: u64,
}

/// One reservation of [`IdentTable::reserve_run`]: where its IDs came
/// from and the first of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reservation {
    bucket: usize,
    /// The first ID (the counter's value; the header takes its low 16 bits).
    pub(crate) first: u32,
    n: u32,
    /// Served from the thread's chunk, not the bucket.
    held: bool,
}

/// What a thread knows of the bucket it reserved from last.
#[derive(Clone, Copy, Debug)]
struct Holder {
    /// The table ([`IdentTable::id`]; 0: none) and the bucket.
    table: u64,
    bucket: usize,
    /// Where the thread's last reservation from the bucket ended.
    end: u32,
    /// The rest of its chunk, `next..chunk_end` (empty when not chunked).
    next: u32,
    chunk_end: u32,
    /// When the chunk was drawn.
    drawn_ns: u64,
    /// Reserving by chunks (the bucket is contended).
    chunked: bool,
}

thread_local! {
    static HOLDER: Cell<Holder> = const {
        Cell::new(Holder {
            table: 0,
            bucket: 0,
            end: 0,
            next: 0,
            chunk_end: 0,
            drawn_ns: 0,
            chunked: false,
        })
    };
}

impl Default for IdentTable {
    fn default() -> Self {
        IdentTable::new()
    }
}

impl IdentTable {
    /// A table with a fresh random-ish key.
    pub fn new() -> IdentTable {
        let key = std::collections::hash_map::RandomState::new();
        use std::hash::BuildHasher;
        let key = key.hash_one(0x6970_786d_6974u64);
        IdentTable {
            buckets: (0..IDENTS)
                .map(|i| AtomicU32::new(i as u32 * 7919))
                .collect(),
            key: AtomicU64::new(key),
            id: TABLES.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Sets the hash key (the kernel's `ip_idents_hashrnd`, random at boot):
    /// the same key, the same IDs for the same sends.
    pub fn set_key(&self, key: u64) {
        self.key.store(key, Ordering::Relaxed);
    }

    fn bucket(&self, daddr: Ipv4Addr, saddr: Ipv4Addr, proto: u8) -> usize {
        let x = (u32::from(daddr) as u64) << 32 | u32::from(saddr) as u64;
        let key = self.key.load(Ordering::Relaxed);
        let mut h = (x ^ key ^ proto as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
        (h as usize) & (IDENTS - 1)
    }

    /// Kernel: `ip_idents_reserve()`. Reserves `segs` consecutive IDs for a
    /// datagram to `daddr` and returns the first; `now_ns` reads the
    /// stack's clock (only a held chunk asks it).
    #[inline]
    pub fn reserve(
        &self,
        (daddr, saddr, proto): (Ipv4Addr, Ipv4Addr, u8),
        segs: u16,
        now_ns: impl FnOnce() -> u64,
    ) -> u16 {
        let n = u32::from(segs.max(1));
        self.reserve_run((daddr, saddr, proto), n, now_ns).first as u16
    }

    /// [`IdentTable::reserve`] for `n` datagrams at once (a batch): `n`
    /// consecutive IDs, from the thread's chunk when it holds one of this
    /// bucket (see the module documentation).
    pub(crate) fn reserve_run(
        &self,
        (daddr, saddr, proto): (Ipv4Addr, Ipv4Addr, u8),
        n: u32,
        now_ns: impl FnOnce() -> u64,
    ) -> Reservation {
        let bucket = self.bucket(daddr, saddr, proto);
        let mut h = HOLDER.with(Cell::get);
        let same = h.table == self.id && h.bucket == bucket;
        if same && h.chunked {
            let now = now_ns();
            if h.chunk_end.wrapping_sub(h.next) >= n && now.saturating_sub(h.drawn_ns) < HOLD_NS {
                let r = Self::take_held(&mut h, bucket, n);
                HOLDER.with(|c| c.set(h));
                return r;
            }
            h.drawn_ns = now;
        }
        let r = self.draw(&mut h, (bucket, same), n);
        HOLDER.with(|c| c.set(h));
        r
    }

    /// `n` IDs from the thread's chunk `h`.
    fn take_held(h: &mut Holder, bucket: usize, n: u32) -> Reservation {
        let first = h.next;
        h.next = first.wrapping_add(n);
        h.end = h.next;
        Reservation {
            bucket,
            first,
            n,
            held: true,
        }
    }

    /// `n` IDs drawn from the bucket (`same`: the one `h` knows): exactly
    /// `n` while uncontended, else a chunk whose rest `h` keeps.
    fn draw(&self, h: &mut Holder, (bucket, same): (usize, bool), n: u32) -> Reservation {
        let b = &self.buckets[bucket];
        if !(same && h.chunked) {
            let first = b.fetch_add(n, Ordering::Relaxed);
            // Another sender drew between this thread's two reservations.
            let contended = same && first != h.end;
            let end = first.wrapping_add(n);
            // An empty chunk ending here: the first refill is "alone" when
            // nobody drew after this reservation.
            *h = Holder {
                table: self.id,
                bucket,
                end,
                next: end,
                chunk_end: end,
                drawn_ns: 0,
                chunked: contended,
            };
            return Reservation {
                bucket,
                first,
                n,
                held: false,
            };
        }
        let size = CHUNK.max(n);
        let first = b.fetch_add(size, Ordering::Relaxed);
        // Nobody drew since the last chunk: the rest goes back at once and
        // reservations are exact again (this one included).
        let alone = first == h.chunk_end;
        (h.next, h.chunk_end) = (first, first.wrapping_add(size));
        let mut r = Self::take_held(h, bucket, n);
        if alone {
            let _ = b.compare_exchange(h.chunk_end, h.next, Ordering::Relaxed, Ordering::Relaxed);
            h.chunk_end = h.next;
            h.chunked = false;
            r.held = false;
        }
        r
    }

    /// Returns the last `r.n - used` IDs of `r`: to the thread's chunk when
    /// they came from it, else to the bucket unless it moved on since (then
    /// they stay skipped, as another sender's IDs would have interleaved
    /// anyway). The next datagram gets the ID it would have had, sent one
    /// by one.
    pub(crate) fn give_back(&self, r: Reservation, used: u32) {
        if used >= r.n {
            return;
        }
        let (end, back) = (r.first.wrapping_add(r.n), r.first.wrapping_add(used));
        HOLDER.with(|c| {
            let mut h = c.get();
            if h.table != self.id || h.bucket != r.bucket || h.end != end {
                return;
            }
            if r.held {
                h.next = back;
                h.end = back;
            } else if self.buckets[r.bucket]
                .compare_exchange(end, back, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                h.end = back;
            }
            c.set(h);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const S: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const KEY: (Ipv4Addr, Ipv4Addr, u8) = (D, S, 17);

    /// The bucket's counter as the next exact reservation would see it.
    fn counter(t: &IdentTable) -> u32 {
        t.buckets[t.bucket(D, S, 17)].load(Ordering::Relaxed)
    }

    /// On another thread: one reservation of `n` from `t`, all used.
    fn elsewhere(t: &IdentTable, n: u32) -> u32 {
        std::thread::scope(|s| {
            s.spawn(|| t.reserve_run(KEY, n, || 0).first)
                .join()
                .unwrap()
        })
    }

    #[test]
    fn a_lone_thread_gets_consecutive_ids_and_unused_ones_back() {
        let t = IdentTable::new();
        let a = t.reserve_run(KEY, 64, || 0);
        assert!(!a.held);
        t.give_back(a, 10);
        let b = t.reserve_run(KEY, 64, || 0);
        assert_eq!(b.first, a.first.wrapping_add(10));
        assert_eq!(
            t.reserve(KEY, 1, || 0) as u32,
            b.first.wrapping_add(64) & 0xffff
        );
        assert_eq!(counter(&t), b.first.wrapping_add(65));
    }

    #[test]
    fn a_contended_thread_reserves_chunks_and_serves_runs_from_them() {
        let t = IdentTable::new();
        let a = t.reserve_run(KEY, 64, || 0);
        let other = elsewhere(&t, 64);
        assert_eq!(other, a.first.wrapping_add(64));
        // The bucket moved between this thread's reservations: noticed
        // now, chunks from the next on.
        let b = t.reserve_run(KEY, 64, || 0);
        assert_eq!((b.first, b.held), (other.wrapping_add(64), false));
        let other = elsewhere(&t, 64);
        let c = t.reserve_run(KEY, 64, || 1_000);
        assert!(c.held);
        assert_eq!(c.first, other.wrapping_add(64));
        assert_eq!(counter(&t), c.first.wrapping_add(CHUNK));
        // Served from the chunk: the bucket does not move; unused IDs go
        // back to the chunk.
        let d = t.reserve_run(KEY, 64, || 2_000);
        t.give_back(d, 3);
        let e = t.reserve_run(KEY, 64, || 3_000);
        assert_eq!((d.first.wrapping_add(3), true), (e.first, e.held));
        assert_eq!(counter(&t), c.first.wrapping_add(CHUNK));
        // Another thread draws past the chunk: no ID twice.
        let f = elsewhere(&t, 64);
        assert_eq!(f, c.first.wrapping_add(CHUNK));
    }

    #[test]
    fn a_chunk_past_its_hold_time_is_left_and_a_lone_refill_is_exact_again() {
        let t = IdentTable::new();
        t.reserve_run(KEY, 64, || 0);
        elsewhere(&t, 64);
        t.reserve_run(KEY, 64, || 0);
        elsewhere(&t, 64);
        let c = t.reserve_run(KEY, 64, || 0);
        assert!(c.held);
        // Too old: a new draw. Nobody else drew since, so its rest goes
        // back and this reservation is an exact one.
        let late = t.reserve_run(KEY, 64, || HOLD_NS);
        assert_eq!(late.first, c.first.wrapping_add(CHUNK));
        assert!(!late.held);
        assert_eq!(counter(&t), late.first.wrapping_add(64));
        let next = t.reserve_run(KEY, 64, || HOLD_NS);
        assert_eq!(
            (next.first, next.held),
            (late.first.wrapping_add(64), false)
        );
    }

    #[test]
    fn concurrent_senders_never_share_an_id() {
        let t = IdentTable::new();
        let runs: Vec<Vec<u32>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|k| {
                    let t = &t;
                    s.spawn(move || {
                        let mut ids = Vec::new();
                        for i in 0..150u32 {
                            let n = 1 + (i * 7 + k) % 64;
                            let r = t.reserve_run(KEY, n, || u64::from(i) * 1_000);
                            let used = n - (i % 3).min(n - 1);
                            ids.extend((0..used).map(|j| r.first.wrapping_add(j)));
                            t.give_back(r, used);
                        }
                        ids
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<u32> = runs.into_iter().flatten().collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "an ID was given twice");
    }
}
