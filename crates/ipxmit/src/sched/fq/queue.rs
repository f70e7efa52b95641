//! A flow's packets in departure-time order: the kernel's per-flow list
//! (`head`/`tail`) for packets that come in time order, and its red-black
//! tree (`t_root`) for those that come earlier than the list's tail.
//!
//! A packet joins the list when the list is empty or its time is not before
//! the tail's; otherwise the tree, after the packets of the same time already
//! there. The next packet is the tree's earliest when strictly earlier than
//! the list's head, else the list's head. Both keep their memory when
//! emptied, so a reused flow allocates nothing per packet.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

use super::Queued;

/// A packet of the tree, ordered by its time then its arrival.
#[derive(Debug)]
struct Timed {
    time: u64,
    seq: u64,
    qd: Queued,
}

impl PartialEq for Timed {
    fn eq(&self, o: &Timed) -> bool {
        (self.time, self.seq) == (o.time, o.seq)
    }
}

impl Eq for Timed {}

impl PartialOrd for Timed {
    fn partial_cmp(&self, o: &Timed) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Timed {
    fn cmp(&self, o: &Timed) -> Ordering {
        (self.time, self.seq).cmp(&(o.time, o.seq))
    }
}

/// A flow's queue (see the module documentation).
#[derive(Debug, Default)]
pub(super) struct FlowQueue {
    /// Packets in time order as they came.
    list: VecDeque<Queued>,
    /// Packets that came earlier than the list's tail.
    tree: BinaryHeap<Reverse<Timed>>,
    /// Arrivals into the tree so far (orders equal times).
    seq: u64,
}

impl FlowQueue {
    /// An empty queue with room for `n` packets in time order.
    pub(super) fn with_capacity(n: usize) -> FlowQueue {
        FlowQueue {
            list: VecDeque::with_capacity(n),
            ..FlowQueue::default()
        }
    }

    /// Packets queued (`f->qlen`).
    pub(super) fn len(&self) -> usize {
        self.list.len() + self.tree.len()
    }

    /// True when no packet is queued.
    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty() && self.tree.is_empty()
    }

    /// Kernel: `flow_queue_add()`.
    pub(super) fn push(&mut self, qd: Queued) {
        match self.list.back() {
            Some(tail) if qd.time_to_send < tail.time_to_send => {
                let time = qd.time_to_send;
                self.tree.push(Reverse(Timed {
                    time,
                    seq: self.seq,
                    qd,
                }));
                self.seq += 1;
            }
            _ => self.list.push_back(qd),
        }
    }

    /// True when the tree's earliest packet leaves before the list's head.
    fn tree_first(&self) -> bool {
        match (self.tree.peek(), self.list.front()) {
            (Some(Reverse(t)), Some(h)) => t.time < h.time_to_send,
            (t, _) => t.is_some(),
        }
    }

    /// Kernel: `fq_peek()`.
    pub(super) fn peek(&self) -> Option<&Queued> {
        if self.tree_first() {
            return self.tree.peek().map(|Reverse(t)| &t.qd);
        }
        self.list.front()
    }

    /// Kernel: `fq_erase_head()` of what [`FlowQueue::peek`] shows.
    pub(super) fn pop(&mut self) -> Option<Queued> {
        if self.tree_first() {
            return self.tree.pop().map(|Reverse(t)| t.qd);
        }
        self.list.pop_front()
    }

    /// Kernel: `fq_flow_purge()`: every packet to `f` (memory kept).
    pub(super) fn purge(&mut self, mut f: impl FnMut(Queued)) {
        self.list.drain(..).for_each(&mut f);
        self.tree.drain().for_each(|Reverse(t)| f(t.qd));
    }
}
