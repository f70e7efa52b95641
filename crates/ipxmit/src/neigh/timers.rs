//! The neighbour table's timer queue: a min-heap of (due time, entry key)
//! with lazy deletion, so finding and running due timers costs
//! O(expired timers · log n), not a scan of every entry.
//!
//! Stands for the per-entry `timer_list` of `struct neighbour`
//! (`neigh_add_timer`, `neigh_del_timer` in `net/core/neighbour.c`), which
//! the kernel's timer wheel runs (`kernel/time/timer.c`). An entry arming
//! its timer pushes an item; a timer stopped or moved leaves its old item
//! behind, recognised as stale when it reaches the top (the entry is gone,
//! or its armed time differs) and discarded then. Every item leaves the heap
//! once its time passes, so the heap holds at most the entries plus the
//! re-arms of one timer horizon (`base_reachable_time` · 1.5).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::Ipv4Addr;

use parking_lot::Mutex;

use crate::time::Instant;

/// A neighbour entry's key: interface index and address.
pub(crate) type Key = (u32, Ipv4Addr);

/// Due times of armed neighbour timers (some stale), earliest first.
#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    heap: Mutex<BinaryHeap<Reverse<(Instant, Key)>>>,
}

impl TimerQueue {
    /// Kernel: `neigh_add_timer()`. Records that `key`'s timer fires at `at`.
    pub(crate) fn arm(&self, at: Instant, key: Key) {
        self.heap.lock().push(Reverse((at, key)));
    }

    /// The earliest item, stale or not.
    pub(crate) fn peek(&self) -> Option<(Instant, Key)> {
        self.heap.lock().peek().map(|r| r.0)
    }

    /// Discards the earliest item if it still is `(at, key)` (found stale).
    pub(crate) fn discard(&self, at: Instant, key: Key) {
        let mut h = self.heap.lock();
        if h.peek().is_some_and(|r| r.0 == (at, key)) {
            h.pop();
        }
    }

    /// Takes every item due at `now` and returns their keys, each once, in
    /// key order (the order the table's scan ran them in).
    pub(crate) fn take_due(&self, now: Instant) -> Vec<Key> {
        let mut keys = Vec::new();
        {
            let mut h = self.heap.lock();
            while h.peek().is_some_and(|r| r.0 .0 <= now) {
                if let Some(Reverse((_, k))) = h.pop() {
                    keys.push(k);
                }
            }
        }
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Items held, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.heap.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ns: u64) -> Instant {
        Instant::from_nanos(ns)
    }

    #[test]
    fn due_items_come_out_once_in_key_order_and_later_ones_stay() {
        let q = TimerQueue::default();
        let a = (2, Ipv4Addr::new(10, 0, 0, 1));
        let b = (1, Ipv4Addr::new(10, 0, 0, 9));
        q.arm(at(30), a);
        q.arm(at(10), a);
        q.arm(at(20), b);
        q.arm(at(50), b);
        assert_eq!(q.take_due(at(5)), vec![]);
        assert_eq!(q.take_due(at(30)), vec![b, a]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.peek(), Some((at(50), b)));
    }

    #[test]
    fn discard_pops_only_the_named_top() {
        let q = TimerQueue::default();
        let a = (1, Ipv4Addr::new(10, 0, 0, 1));
        q.arm(at(10), a);
        q.discard(at(11), a);
        assert_eq!(q.len(), 1);
        q.discard(at(10), a);
        assert_eq!(q.peek(), None);
    }
}
