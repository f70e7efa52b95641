//! IP identification selection.
//!
//! Stands for `ip_select_ident_segs`/`__ip_select_ident` and `ip_idents_reserve`
//! (`include/net/ip.h`, `net/ipv4/route.c`): a datagram that may be fragmented
//! draws its ID from one of 2048 counters picked by a keyed hash of (destination,
//! source, protocol), so IDs are per-destination sequences; a DF datagram from a
//! connected socket uses the socket's own counter, and from an unconnected one
//! may carry 0. All fragments of a datagram share its ID (they copy the header).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Number of ID buckets (`IP_IDENTS_SZ`).
pub const IDENTS: usize = 2048;

/// The per-destination ID counters of a stack.
#[derive(Debug)]
pub struct IdentTable {
    buckets: Box<[AtomicU32]>,
    key: AtomicU64,
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
    /// datagram to `daddr` and returns the first.
    #[inline]
    pub fn reserve(&self, daddr: Ipv4Addr, saddr: Ipv4Addr, proto: u8, segs: u16) -> u16 {
        self.reserve_run(daddr, saddr, proto, u32::from(segs.max(1)))
            .1 as u16
    }

    /// [`IdentTable::reserve`] for `n` datagrams at once (a batch): the
    /// bucket and the first of the `n` consecutive IDs.
    pub(crate) fn reserve_run(
        &self,
        daddr: Ipv4Addr,
        saddr: Ipv4Addr,
        proto: u8,
        n: u32,
    ) -> (usize, u32) {
        let i = self.bucket(daddr, saddr, proto);
        (i, self.buckets[i].fetch_add(n, Ordering::Relaxed))
    }

    /// Returns the last `n - used` IDs of a [`IdentTable::reserve_run`] that
    /// started at `first`, unless the bucket moved on since (then they stay
    /// skipped, as another sender's IDs would have interleaved anyway): the
    /// next datagram gets the ID it would have had, sent one by one.
    pub(crate) fn give_back(&self, i: usize, first: u32, n: u32, used: u32) {
        if used < n {
            let _ = self.buckets[i].compare_exchange(
                first.wrapping_add(n),
                first.wrapping_add(used),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}
