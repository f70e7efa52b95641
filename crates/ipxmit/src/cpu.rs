//! The calling thread's "CPU": a small dense number per live thread.
//!
//! Stands for `smp_processor_id()` (`include/linux/smp.h`). The kernel's
//! per-CPU state — the SNMP MIBs (`SNMP_INC_STATS` on `this_cpu_ptr`), the
//! transmit queue a CPU maps to (XPS, `get_xps_queue`) — is indexed by the
//! CPU the code runs on. A user-space stack runs on threads, so a thread
//! takes the lowest free number the first time it asks and gives it back
//! when it exits: the numbers of the threads alive at once stay dense
//! (`0..threads`), as CPU numbers are, however many threads came and went
//! before (a benchmark that starts senders again and again keeps the same
//! few numbers, so per-thread shards and queue maps stay one per thread).

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use parking_lot::Mutex;

/// Not asked yet.
const UNSET: usize = usize::MAX;
/// Asked while the thread was exiting (its number already given back):
/// such late callers share [`RETIRED`], which no live thread has.
pub const RETIRED: usize = usize::MAX - 1;

/// Numbers given back by exited threads, and the next never given.
struct Ids {
    free: BinaryHeap<Reverse<usize>>,
    next: usize,
}

static IDS: Mutex<Ids> = Mutex::new(Ids {
    free: BinaryHeap::new(),
    next: 0,
});

thread_local! {
    static ID: Cell<usize> = const { Cell::new(UNSET) };
    static GIVE_BACK: GiveBack = const { GiveBack };
}

/// Gives the thread's number back when the thread exits.
struct GiveBack;

impl Drop for GiveBack {
    fn drop(&mut self) {
        let id = ID.with(|c| c.replace(RETIRED));
        if id != UNSET && id != RETIRED {
            IDS.lock().free.push(Reverse(id));
        }
    }
}

/// Kernel: `smp_processor_id()`. The calling thread's number: the lowest
/// one no live thread holds, taken at its first call and kept until it
/// exits ([`RETIRED`] during its exit, after it was given back).
#[inline]
pub fn current() -> usize {
    let id = ID.with(Cell::get);
    if id != UNSET {
        return id;
    }
    take()
}

/// The first call of a thread: takes a number and arranges its return.
#[cold]
fn take() -> usize {
    // A thread already exiting (its `GIVE_BACK` gone) gets no number.
    if GIVE_BACK.try_with(|_| ()).is_err() {
        ID.with(|c| c.set(RETIRED));
        return RETIRED;
    }
    let id = {
        let mut ids = IDS.lock();
        match ids.free.pop() {
            Some(Reverse(id)) => id,
            None => {
                ids.next += 1;
                ids.next - 1
            }
        }
    };
    ID.with(|c| c.set(id));
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_threads_hold_distinct_numbers_and_exited_ones_give_theirs_back() {
        let barrier = std::sync::Barrier::new(4);
        let ids: Vec<usize> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let id = current();
                        assert_eq!(current(), id, "a thread keeps its number");
                        barrier.wait();
                        id
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 4, "four live threads, four numbers: {ids:?}");
        // Those four exited: a new thread takes one of the numbers given
        // back (other tests' threads may hold lower ones meanwhile).
        let again = std::thread::spawn(current).join().unwrap();
        let max_now = IDS.lock().next;
        assert!(again < max_now, "a number handed out before is reused");
    }
}
