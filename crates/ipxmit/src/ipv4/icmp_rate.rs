//! The rate limits on the ICMP errors a host sends.
//!
//! Stands for net/ipv4/icmp.c's `icmp_global_allow()`,
//! `icmp_global_consume()`, `icmpv4_mask_allow()`,
//! `icmpv4_global_allow()` and `icmpv4_xrlim_allow()`, and
//! net/ipv4/inetpeer.c's `inet_peer_xrlim_allow()`. The algorithm:
//!
//! * **Host-wide** (`net.ipv4.icmp_msgs_per_sec`, `icmp_msgs_burst`): a
//!   token bucket of credits. While credits remain, a message may go. At
//!   none, the bucket is refilled by `msgs_per_sec × elapsed` (elapsed in
//!   jiffies, at most a second, refilled no more often than every 20 ms),
//!   up to the burst. A message that is sent then takes 0, 1 or 2 credits
//!   at random (on average one; the credit may go below zero). Refused:
//!   `IcmpOutRateLimitGlobal`. Not checked for an error about a datagram
//!   that came in on `lo`, nor for types outside `net.ipv4.icmp_ratemask`
//!   (destination unreachable, source quench, time exceeded and parameter
//!   problem by default) or "fragmentation needed"; such messages skip
//!   the per-destination limit too.
//! * **Per destination** (`net.ipv4.icmp_ratelimit`, ms): a token bucket
//!   per peer address, counted in jiffies: each message needs `ratelimit`
//!   tokens, one accrues per jiffy up to six messages' worth; a new peer
//!   starts full. Not for a route through `lo` (the host's errors to
//!   itself). Refused: `IcmpOutRateLimitHost`; allowed: the host-wide
//!   credit is consumed.
//!
//! The clock is the stack's, read as jiffies of this kernel's `HZ` (250).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::stack::Sysctls;
use crate::time::Instant;

/// The kernel's `HZ` (`CONFIG_HZ=250` on the reference kernel).
pub const HZ: u64 = 250;
/// Nanoseconds per jiffy.
const JIFFY_NS: u64 = 1_000_000_000 / HZ;
/// `XRLIM_BURST_FACTOR`: a peer's bucket holds six messages.
const XRLIM_BURST_FACTOR: u64 = 6;
/// `inet_peer_threshold`: peers kept before old ones are pruned.
const PEER_THRESHOLD: usize = 65_536 + 128;
/// `inet_peer_minttl`: a peer unused this long may be pruned (120 s).
const PEER_MIN_TTL: u64 = 120 * HZ;
/// The stamp of a bucket never refilled: the first refill is a full
/// second's (as on a host up for more than a second).
const NEVER: u64 = u64::MAX;

/// A peer's bucket (`inet_peer`'s `rate_tokens`, `rate_last`).
#[derive(Clone, Copy, Debug)]
struct Peer {
    tokens: u64,
    last: u64,
}

/// A stack's ICMP rate limits. See the module documentation.
#[derive(Debug)]
pub struct IcmpRateLimit {
    /// `icmp_global_credit`.
    credit: AtomicI64,
    /// `icmp_global_stamp`, in jiffies.
    stamp: AtomicU64,
    /// The state of `get_random_u32_below(3)`'s stand-in (xorshift).
    rng: AtomicU64,
    /// `net->ipv4.peers` as far as rate limits go.
    peers: Mutex<HashMap<Ipv4Addr, Peer>>,
}

impl Default for IcmpRateLimit {
    fn default() -> Self {
        IcmpRateLimit {
            credit: AtomicI64::new(0),
            stamp: AtomicU64::new(NEVER),
            rng: AtomicU64::new(0x2545_f491_4f6c_dd1d),
            peers: Mutex::new(HashMap::new()),
        }
    }
}

/// Jiffies of instant `now`.
fn jiffies(now: Instant) -> u64 {
    now.as_nanos() / JIFFY_NS
}

/// Kernel: `icmpv4_mask_allow()`: a message not subject to the host-wide
/// limit (an unknown type, "fragmentation needed", a type outside
/// `icmp_ratemask`).
pub fn mask_allows(sys: &Sysctls, icmp_type: u8, code: u8) -> bool {
    icmp_type > crate::wire::icmp::NR_ICMP_TYPES
        || (icmp_type == 3 && code == crate::wire::icmp::FRAG_NEEDED)
        || (1u64 << icmp_type) & (sys.icmp_ratemask as u32 as u64) == 0
}

/// What the host-wide check decided (`icmpv4_global_allow()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalVerdict {
    /// Send, without the per-destination limit (`apply_ratelimit` false).
    Unlimited,
    /// Send if the per-destination limit allows.
    Limited,
    /// Refused (`IcmpOutRateLimitGlobal`).
    Refused,
}

impl IcmpRateLimit {
    /// Kernel: `icmpv4_global_allow()`, skipped (unlimited) for an error
    /// about a datagram that came in on `lo` (`in_lo`).
    pub fn global(
        &self,
        sys: &Sysctls,
        (icmp_type, code): (u8, u8),
        in_lo: bool,
        now: Instant,
    ) -> GlobalVerdict {
        if in_lo || mask_allows(sys, icmp_type, code) {
            GlobalVerdict::Unlimited
        } else if self.global_allow(sys, jiffies(now)) {
            GlobalVerdict::Limited
        } else {
            GlobalVerdict::Refused
        }
    }

    /// Kernel: `icmp_global_allow()`.
    fn global_allow(&self, sys: &Sysctls, now: u64) -> bool {
        if self.credit.load(Ordering::Relaxed) > 0 {
            return true;
        }
        let old = self.stamp.load(Ordering::Relaxed);
        let delta = match old {
            NEVER => HZ,
            _ => now.wrapping_sub(old).min(HZ),
        };
        if delta < HZ / 50 {
            return false;
        }
        let incr = (sys.icmp_msgs_per_sec.max(0) as u64 * delta / HZ) as i64;
        if incr == 0 {
            return false;
        }
        let swapped = self
            .stamp
            .compare_exchange(old, now, Ordering::Relaxed, Ordering::Relaxed);
        if swapped.is_ok() {
            let burst = i64::from(sys.icmp_msgs_burst);
            let _ = self
                .credit
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                    Some((c + incr).min(burst))
                });
        }
        true
    }

    /// Kernel: `icmp_global_consume()`: 0, 1 or 2 credits at random.
    fn consume(&self) {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        let credits = ((x >> 32) % 3) as i64;
        if credits != 0 {
            self.credit.fetch_sub(credits, Ordering::Relaxed);
        }
    }

    /// Kernel: `icmpv4_xrlim_allow()` for a message `global` let through,
    /// to `daddr` on a route through `lo` or not: true to send (the
    /// host-wide credit consumed when limits apply).
    pub fn peer(
        &self,
        sys: &Sysctls,
        global: GlobalVerdict,
        (daddr, via_lo): (Ipv4Addr, bool),
        now: Instant,
    ) -> bool {
        if global != GlobalVerdict::Limited {
            return true;
        }
        let ok = via_lo || self.peer_allow(daddr, u64::from(sys.icmp_ratelimit), jiffies(now));
        if ok {
            self.consume();
        }
        ok
    }

    /// Kernel: `inet_getpeer_v4()` and `inet_peer_xrlim_allow()`.
    fn peer_allow(&self, daddr: Ipv4Addr, timeout: u64, now: u64) -> bool {
        let mut peers = self.peers.lock();
        if peers.len() >= PEER_THRESHOLD && !peers.contains_key(&daddr) {
            peers.retain(|_, p| now.wrapping_sub(p.last) < PEER_MIN_TTL);
        }
        let p = peers.entry(daddr).or_insert(Peer {
            tokens: 0,
            last: now.wrapping_sub(60 * HZ),
        });
        let delta = now.wrapping_sub(p.last);
        if delta != 0 {
            p.last = now;
            p.tokens = (p.tokens + delta).min(XRLIM_BURST_FACTOR * timeout);
        }
        if p.tokens >= timeout {
            p.tokens -= timeout;
            true
        } else {
            false
        }
    }
}

/// `msecs_to_jiffies()`.
pub fn ms_to_jiffies(ms: u64) -> u64 {
    (ms * HZ).div_ceil(1000)
}

/// `jiffies_to_msecs()`.
pub fn jiffies_to_ms(j: u64) -> u64 {
    j * 1000 / HZ
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    /// Messages of destination unreachable `code` 3 the limits let through
    /// out of `n` to `daddr` at `t_ms` (not via `lo`).
    fn sent(l: &IcmpRateLimit, sys: &Sysctls, n: usize, t_ms: u64, via_lo: bool) -> usize {
        (0..n)
            .filter(|_| {
                let g = l.global(sys, (3, 3), false, at_ms(t_ms));
                g != GlobalVerdict::Refused
                    && l.peer(sys, g, (Ipv4Addr::new(10, 0, 0, 2), via_lo), at_ms(t_ms))
            })
            .count()
    }

    #[test]
    fn a_peer_gets_six_then_one_per_ratelimit() {
        let (l, sys) = (IcmpRateLimit::default(), Sysctls::default());
        assert_eq!(sent(&l, &sys, 100, 10_000, false), 6);
        assert_eq!(sent(&l, &sys, 100, 10_500, false), 0);
        assert_eq!(sent(&l, &sys, 100, 11_000, false), 1);
        assert_eq!(sent(&l, &sys, 100, 14_000, false), 3);
        // Another peer has its own bucket.
        let g = l.global(&sys, (3, 3), false, at_ms(14_000));
        assert!(l.peer(&sys, g, (Ipv4Addr::new(10, 0, 0, 3), false), at_ms(14_000)));
    }

    #[test]
    fn the_host_wide_bucket_holds_about_its_burst() {
        let (l, sys) = (IcmpRateLimit::default(), Sysctls::default());
        // Through `lo` only the host-wide limit counts: ~50 (each message
        // takes 0-2 credits, one on average).
        let first = sent(&l, &sys, 1000, 10_000, true);
        assert!((25..=110).contains(&first), "{first}");
        // No refill within 20 ms; then a second's worth is capped at 50.
        assert_eq!(sent(&l, &sys, 1000, 10_010, true), 0);
        let next = sent(&l, &sys, 1000, 12_000, true);
        assert!((25..=110).contains(&next), "{next}");
    }

    #[test]
    fn unlimited_types_lo_and_an_empty_ratemask() {
        let (l, mut sys) = (IcmpRateLimit::default(), Sysctls::default());
        assert_eq!(
            l.global(&sys, (3, 4), false, at_ms(0)),
            GlobalVerdict::Unlimited
        );
        assert_eq!(
            l.global(&sys, (0, 0), false, at_ms(0)),
            GlobalVerdict::Unlimited
        );
        assert_eq!(
            l.global(&sys, (3, 3), true, at_ms(0)),
            GlobalVerdict::Unlimited
        );
        sys.icmp_ratemask = 0;
        assert_eq!(sent(&l, &sys, 1000, 0, false), 1000);
    }
}
