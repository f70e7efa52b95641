//! Byte queue limits: how many bytes a driver may hold in flight.
//!
//! Stands for `lib/dynamic_queue_limits.c` (`dql_queued`, `dql_avail`,
//! `dql_completed`, `dql_reset`, `dql_init`) and the BQL half of
//! `netdev_tx_sent_queue()` / `netdev_tx_completed_queue()`
//! (`include/linux/netdevice.h`).
//!
//! # Algorithm
//!
//! A driver that reports completions counts the bytes it is given
//! (`queued`) and the bytes the hardware finished (`completed`). The queue
//! is stopped (`__QUEUE_STATE_STACK_XOFF`) while more than `limit` bytes
//! are in flight, and woken by the completion that brings them under it.
//! The limit adapts at each completion:
//!
//! - **Starved**: the queue was over its limit and the hardware has now
//!   run dry (or ran dry since the last completion while everything queued
//!   before it completed): the limit grows by what was queued and completed
//!   since, plus the previous overshoot.
//! - **Busy all interval**: the *slack* — the limit plus the previous
//!   overshoot minus twice what completed, or the part of the last queuing
//!   above the overshoot — is tracked at its lowest; once `hold_time` (one
//!   second) has passed since the last change, the limit shrinks by that
//!   lowest slack.
//!
//! The limit stays within `limit_min` (0) and `limit_max`
//! (`DQL_MAX_LIMIT`). It starts at 0, so the first packet stops the queue
//! and the first completion starts the growth.

use crate::time::Instant;

/// `DQL_MAX_OBJECT`.
const MAX_OBJECT: u32 = u32::MAX / 16;
/// `DQL_MAX_LIMIT`: 1879048192 (sysfs `limit_max`).
pub const MAX_LIMIT: u32 = (u32::MAX / 2) - MAX_OBJECT;
/// `slack_hold_time`: one second (`HZ` jiffies).
const HOLD_TIME_NS: u64 = 1_000_000_000;

/// `POSDIFF(a, b)`: `a - b` when positive, else 0 (as signed 32-bit).
fn posdiff(a: u32, b: u32) -> u32 {
    let d = a.wrapping_sub(b) as i32;
    if d > 0 {
        d as u32
    } else {
        0
    }
}

/// A queue's byte limit state (`struct dql`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dql {
    num_queued: u32,
    adj_limit: u32,
    last_obj_cnt: u32,
    limit: u32,
    num_completed: u32,
    prev_ovlimit: u32,
    prev_num_queued: u32,
    prev_last_obj_cnt: u32,
    lowest_slack: u32,
    slack_start_time: u64,
    /// `limit_max`.
    pub max_limit: u32,
    /// `limit_min`.
    pub min_limit: u32,
}

impl Dql {
    /// Kernel: `dql_init()` then `dql_reset()` at `now`.
    pub fn new(now: Instant) -> Dql {
        Dql {
            num_queued: 0,
            adj_limit: 0,
            last_obj_cnt: 0,
            limit: 0,
            num_completed: 0,
            prev_ovlimit: 0,
            prev_num_queued: 0,
            prev_last_obj_cnt: 0,
            lowest_slack: u32::MAX,
            slack_start_time: now.as_nanos(),
            max_limit: MAX_LIMIT,
            min_limit: 0,
        }
    }

    /// Kernel: `dql_queued()`: `count` bytes handed to the hardware.
    pub fn queued(&mut self, count: u32) {
        self.last_obj_cnt = count;
        self.num_queued = self.num_queued.wrapping_add(count);
    }

    /// Kernel: `dql_avail()`: bytes that may still be queued (negative:
    /// over the limit).
    pub fn avail(&self) -> i32 {
        self.adj_limit.wrapping_sub(self.num_queued) as i32
    }

    /// Bytes in flight (sysfs `inflight`).
    pub fn inflight(&self) -> u32 {
        self.num_queued.wrapping_sub(self.num_completed)
    }

    /// The current limit (sysfs `limit`).
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Kernel: `dql_completed()`: `count` bytes finished at `now`; the
    /// limit adapts (see the module documentation).
    pub fn completed(&mut self, count: u32, now: Instant) {
        let num_queued = self.num_queued;
        let count = count.min(num_queued.wrapping_sub(self.num_completed));
        let completed = self.num_completed.wrapping_add(count);
        let mut limit = self.limit;
        let mut ovlimit = posdiff(num_queued.wrapping_sub(self.num_completed), limit);
        let inprogress = num_queued.wrapping_sub(completed);
        let prev_inprogress = self.prev_num_queued.wrapping_sub(self.num_completed);
        let all_prev_completed = completed.wrapping_sub(self.prev_num_queued) as i32 >= 0;
        let now = now.as_nanos();
        if (ovlimit != 0 && inprogress == 0) || (self.prev_ovlimit != 0 && all_prev_completed) {
            limit = limit
                .wrapping_add(posdiff(completed, self.prev_num_queued))
                .wrapping_add(self.prev_ovlimit);
            self.slack_start_time = now;
            self.lowest_slack = u32::MAX;
        } else if inprogress != 0 && prev_inprogress != 0 && !all_prev_completed {
            limit = self.shrink(limit, completed, now);
        }
        limit = limit.clamp(self.min_limit, self.max_limit);
        if limit != self.limit {
            self.limit = limit;
            ovlimit = 0;
        }
        self.adj_limit = limit.wrapping_add(completed);
        self.prev_ovlimit = ovlimit;
        self.prev_last_obj_cnt = self.last_obj_cnt;
        self.num_completed = completed;
        self.prev_num_queued = num_queued;
    }

    /// The busy-interval branch of `dql_completed()`: the lowest slack
    /// tracked, taken off the limit once the hold time has passed.
    fn shrink(&mut self, limit: u32, completed: u32, now: u64) -> u32 {
        let done = completed.wrapping_sub(self.num_completed);
        let slack = posdiff(limit.wrapping_add(self.prev_ovlimit), done.wrapping_mul(2));
        let slack_last_objs = if self.prev_ovlimit != 0 {
            posdiff(self.prev_last_obj_cnt, self.prev_ovlimit)
        } else {
            0
        };
        self.lowest_slack = self.lowest_slack.min(slack.max(slack_last_objs));
        if now > self.slack_start_time + HOLD_TIME_NS {
            let l = posdiff(limit, self.lowest_slack);
            self.slack_start_time = now;
            self.lowest_slack = u32::MAX;
            return l;
        }
        limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(us: u64) -> Instant {
        Instant::from_nanos(us * 1000)
    }

    #[test]
    fn the_limit_starts_at_zero_and_grows_when_the_hardware_starves() {
        let mut d = Dql::new(at(0));
        d.queued(1000);
        assert!(d.avail() < 0, "the first packet is over a limit of 0");
        d.completed(1000, at(10));
        // Over the limit and now empty: starved, the limit grows by what
        // completed.
        assert_eq!((d.limit(), d.inflight(), d.avail()), (1000, 0, 1000));
        d.queued(1000);
        d.queued(1000);
        assert!(d.avail() < 0);
        // Over again and empty again: plus what was queued and completed
        // since the last completion (2000).
        d.completed(2000, at(20));
        assert_eq!(d.limit(), 3000);
    }

    #[test]
    fn slack_is_taken_off_after_the_hold_time() {
        let mut d = Dql::new(at(0));
        d.limit = 10_000;
        d.adj_limit = 10_000;
        // Always about 2000 bytes in flight, 1000 completing at a time:
        // busy all along, the slack (10000 - 2 x 1000) is 8000.
        for _ in 0..3 {
            d.queued(1000);
        }
        let mut t = 0;
        for _ in 0..10 {
            t += 50_000;
            d.completed(1000, at(t));
            d.queued(1000);
        }
        assert_eq!(d.limit(), 10_000, "within the hold time");
        t += 1_000_000;
        d.completed(1000, at(t));
        assert_eq!(d.limit(), 2000, "less the lowest slack");
    }
}
