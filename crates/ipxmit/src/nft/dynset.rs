//! Sets updated from the packet path: the kernel's `nft_dynset.c`
//! (`add @set { KEY }`, `update @set { KEY timeout T }`).
//!
//! A named set keeps the elements the packet path adds in a [`LiveSet`]
//! shared by every compiled generation of the ruleset and by the ruleset
//! itself (its listing shows them), as the kernel's set backend is one
//! object that the rules and `nft list set` both reach. An insert takes
//! the set's lock briefly (the kernel's `nft_rhash_update` takes the
//! bucket lock); a lookup of a set that holds no packet-added element
//! takes no lock. Elements with a timeout expire on the stack's clock:
//! an expired element is not found, and is collected when the set would
//! otherwise be full (the kernel's set GC frees it at its next run).
//!
//! Timeouts are kept in jiffies of [`HZ`], as the kernel keeps them
//! (`nf_msecs_to_jiffies64()`), so a timeout lists back as nft lists it
//! on this machine (`5ms` is one jiffy, `4ms`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The kernel's `CONFIG_HZ` on the oracle machine (6.18, 250 Hz): a
/// timeout's granularity.
pub const HZ: u64 = 250;

/// Nanoseconds of one jiffy.
const JIFFY_NS: u64 = 1_000_000_000 / HZ;

/// The kernel's set size a dynamic set gets when it was made without one
/// (`nft_dynset_init()`: 0xffff).
pub const DEFAULT_SIZE: u32 = 0xffff;

/// Kernel: `nf_msecs_to_jiffies64()`: a timeout in ms as the kernel keeps
/// it (whole jiffies, rounded down), back in ms.
pub fn timeout_ms(ms: u64) -> u64 {
    ms.saturating_mul(HZ) / 1000 * 1000 / HZ
}

/// One element added from the packet path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveElem {
    /// Its timeout in ns (`NFT_SET_EXT_TIMEOUT`; 0: none, it never
    /// expires).
    pub timeout: u64,
    /// When it expires, on the stack's clock in ns (`NFT_SET_EXT_EXPIRATION`).
    pub expires: u64,
}

impl LiveElem {
    /// Kernel: `nft_set_elem_expired()`: expired once the clock reaches
    /// its expiration.
    #[inline]
    pub fn expired(&self, now: u64) -> bool {
        self.timeout != 0 && now >= self.expires
    }
}

/// The elements of a named set that rules added (see the module doc).
#[derive(Debug, Default)]
pub struct LiveSet {
    /// How many elements `elems` holds (read without the lock).
    n: AtomicUsize,
    elems: Mutex<HashMap<u64, LiveElem>>,
}

/// What a set update does with one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Update {
    /// `update` (refresh an element's expiration) rather than `add`.
    pub update: bool,
    /// The timeout a new element gets, in ns (the statement's, else the
    /// set's; 0: none).
    pub timeout: u64,
    /// The statement's own timeout in ns (0: the element's own, on
    /// refresh).
    pub refresh: u64,
    /// How many elements the set may hold, counting `fixed` (0: no limit).
    pub size: u32,
    /// Elements the set holds besides these (`add element`).
    pub fixed: u32,
}

impl LiveSet {
    /// Whether a live (unexpired) element holds `v`.
    #[inline]
    pub fn contains(&self, v: u64, now: u64) -> bool {
        if self.n.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.lock().get(&v).is_some_and(|e| !e.expired(now))
    }

    /// Whether the set may hold elements (a lookup must look here).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.n.load(Ordering::Relaxed) == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, LiveElem>> {
        self.elems.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Kernel: `nft_dynset_eval()` → the backend's `update` and
    /// `nft_dynset_new()`: finds `v` or inserts it with `u.timeout`; on
    /// `update`, an element with a timeout gets a new expiration. `false`
    /// when the set is full (the rule stops, `NFT_BREAK`).
    pub fn update(&self, v: u64, u: &Update, now: u64) -> bool {
        let mut m = self.lock();
        if let Some(e) = m.get_mut(&v).filter(|e| !e.expired(now)) {
            if u.update && e.timeout != 0 {
                let t = if u.refresh != 0 { u.refresh } else { e.timeout };
                e.expires = now + t;
            }
            return true;
        }
        let limit = u.size as usize;
        if limit != 0 && m.len() + u.fixed as usize >= limit {
            // What the set's garbage collector frees before it fills.
            m.retain(|_, e| !e.expired(now));
            if m.len() + u.fixed as usize >= limit {
                self.n.store(m.len(), Ordering::Relaxed);
                return false;
            }
        }
        let e = LiveElem {
            timeout: u.timeout,
            expires: now + u.timeout,
        };
        m.insert(v, e);
        self.n.store(m.len(), Ordering::Relaxed);
        true
    }

    /// The unexpired elements at `now`, sorted by key (for listing).
    pub fn elems(&self, now: u64) -> Vec<(u64, LiveElem)> {
        let mut v: Vec<(u64, LiveElem)> = self
            .lock()
            .iter()
            .filter(|(_, e)| !e.expired(now))
            .map(|(k, e)| (*k, *e))
            .collect();
        v.sort_unstable_by_key(|&(k, _)| k);
        v
    }

    /// Reserves room for `n` more elements, so that inserts up to that
    /// many do not allocate.
    pub fn reserve(&self, n: usize) {
        self.lock().reserve(n);
    }
}

/// Rounds a timeout in ns down to whole jiffies.
pub fn jiffies_ns(ns: u64) -> u64 {
    ns / JIFFY_NS * JIFFY_NS
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn add(timeout: u64, size: u32) -> Update {
        Update {
            update: false,
            timeout,
            refresh: 0,
            size,
            fixed: 0,
        }
    }

    #[test]
    fn add_inserts_once_and_a_full_set_refuses() {
        let s = LiveSet::default();
        assert!(s.is_empty());
        assert!(s.update(1, &add(0, 2), 0));
        assert!(s.update(1, &add(0, 2), 0));
        assert!(s.update(2, &add(0, 2), 0));
        assert!(!s.update(3, &add(0, 2), 0));
        assert!(s.contains(1, 0) && s.contains(2, 0) && !s.contains(3, 0));
        let fixed = Update {
            fixed: 1,
            ..add(0, 3)
        };
        assert!(!s.update(3, &fixed, 0));
    }

    #[test]
    fn elements_expire_and_update_refreshes_only_with_update() {
        let s = LiveSet::default();
        assert!(s.update(7, &add(10 * S, 0), 0));
        // add does not refresh.
        assert!(s.update(7, &add(10 * S, 0), 5 * S));
        assert!(!s.contains(7, 10 * S));
        assert!(s.elems(10 * S).is_empty());
        let up = Update {
            update: true,
            refresh: 20 * S,
            ..add(10 * S, 0)
        };
        assert!(s.update(8, &up, 0));
        let e8 = LiveElem {
            timeout: 10 * S,
            expires: 10 * S,
        };
        assert_eq!(s.elems(0)[1], (8, e8));
        assert!(s.update(8, &up, 5 * S));
        assert_eq!(s.elems(0)[1].1.expires, 25 * S);
        assert!(s.contains(8, 24 * S) && !s.contains(8, 25 * S));
    }

    #[test]
    fn a_full_set_collects_expired_elements_first() {
        let s = LiveSet::default();
        assert!(s.update(1, &add(S, 1), 0));
        assert!(!s.update(2, &add(S, 1), S - 1));
        assert!(s.update(2, &add(S, 1), S));
        assert_eq!(s.elems(S).len(), 1);
    }

    #[test]
    fn timeouts_are_whole_jiffies() {
        assert_eq!(timeout_ms(5), 4);
        assert_eq!(timeout_ms(90_000), 90_000);
        assert_eq!(jiffies_ns(5_000_000), 4_000_000);
    }
}
