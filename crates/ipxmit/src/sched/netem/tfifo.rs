//! netem's time-ordered queue.
//!
//! Stands for the `t_root`/`t_head`/`t_tail` "tfifo" of
//! `net/sched/sch_netem.c`: packets in order of their time to send. A
//! packet due no earlier than the last one appended goes on a linear list
//! (the common case: no jitter); an earlier one goes into an ordered tree
//! (here a min-heap keyed by time and arrival, so equal times keep their
//! arrival order, as the kernel's rbtree does). The head is the earlier
//! of the two heads, the list's on a tie.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use crate::buf::PacketBuf;
use crate::sched::ToFree;
use crate::stats::DropReason;

/// A packet and its time to send (`netem_skb_cb`), in nanoseconds.
#[derive(Debug)]
pub struct Timed {
    /// Time to send.
    pub tts: u64,
    /// The packet.
    pub pkt: PacketBuf,
}

/// A packet in the tree: ordered by time, then arrival.
#[derive(Debug)]
struct TreeEntry {
    tts: u64,
    seq: u64,
    pkt: PacketBuf,
}

impl PartialEq for TreeEntry {
    fn eq(&self, o: &TreeEntry) -> bool {
        (self.tts, self.seq) == (o.tts, o.seq)
    }
}

impl Eq for TreeEntry {}

impl PartialOrd for TreeEntry {
    fn partial_cmp(&self, o: &TreeEntry) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for TreeEntry {
    /// Reversed: the heap's top is the earliest.
    fn cmp(&self, o: &TreeEntry) -> Ordering {
        (o.tts, o.seq).cmp(&(self.tts, self.seq))
    }
}

/// The tfifo. See the module documentation.
#[derive(Debug)]
pub struct Tfifo {
    list: VecDeque<Timed>,
    tree: BinaryHeap<TreeEntry>,
    /// The tree's latest time (`skb_rb_last()`), while it holds any.
    tree_max: u64,
    seq: u64,
}

impl Tfifo {
    /// An empty queue with room for `cap` packets in each part.
    pub fn with_capacity(cap: usize) -> Tfifo {
        Tfifo {
            list: VecDeque::with_capacity(cap),
            tree: BinaryHeap::with_capacity(cap),
            tree_max: 0,
            seq: 0,
        }
    }

    /// Kernel: `tfifo_enqueue()`.
    pub fn enqueue(&mut self, pkt: PacketBuf, tts: u64) {
        if self.list.back().is_none_or(|t| tts >= t.tts) {
            self.list.push_back(Timed { tts, pkt });
            return;
        }
        if self.tree.is_empty() || tts > self.tree_max {
            self.tree_max = tts;
        }
        self.seq += 1;
        self.tree.push(TreeEntry {
            tts,
            seq: self.seq,
            pkt,
        });
    }

    /// True when the tree's head goes before the list's
    /// (`netem_peek()`'s choice).
    fn tree_first(&self) -> bool {
        match (self.tree.peek(), self.list.front()) {
            (Some(t), Some(l)) => t.tts < l.tts,
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// Kernel: `netem_peek()`: the head's time to send.
    pub fn peek_tts(&self) -> Option<u64> {
        if self.tree_first() {
            self.tree.peek().map(|t| t.tts)
        } else {
            self.list.front().map(|t| t.tts)
        }
    }

    /// The head packet.
    pub fn peek(&self) -> Option<&PacketBuf> {
        if self.tree_first() {
            self.tree.peek().map(|t| &t.pkt)
        } else {
            self.list.front().map(|t| &t.pkt)
        }
    }

    /// Kernel: `netem_erase_head()`: takes the head.
    pub fn pop(&mut self) -> Option<PacketBuf> {
        if self.tree_first() {
            self.tree.pop().map(|t| t.pkt)
        } else {
            self.list.pop_front().map(|t| t.pkt)
        }
    }

    /// The latest time to send held: the tree's last and the list's tail
    /// (what the rate emulation follows).
    pub fn last_tts(&self) -> Option<u64> {
        let tree = (!self.tree.is_empty()).then_some(self.tree_max);
        let list = self.list.back().map(|t| t.tts);
        match (tree, list) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Kernel: `tfifo_reset()`: every packet into `to_free`.
    pub fn reset(&mut self, to_free: &mut ToFree) {
        for t in self.tree.drain() {
            to_free.push(t.pkt, DropReason::QueuePurge);
        }
        for t in self.list.drain(..) {
            to_free.push(t.pkt, DropReason::QueuePurge);
        }
    }
}
