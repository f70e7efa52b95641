//! The flow table of `fq` (the kernel's `fq_root[]` trees and flow slab)
//! and its round-robin lists.
//!
//! Each bucket is a chain of flows through `bucket_next`; flows live in one
//! vector whose free slots are reused, each keeping its queue's memory.

use super::queue::FlowQueue;
use super::{jiffies, time_after, Band, Flow, FlowList, Fq, Link, GC_AGE, GC_MAX, NIL};
use crate::sched::ToFree;
use crate::stats::DropReason;

/// `GOLDEN_RATIO_64` of `include/linux/hash.h`.
const GOLDEN_RATIO_64: u64 = 0x61C8_8646_80B5_83EB;

/// Kernel: `hash_ptr()` on a 64-bit machine (`hash_64()`): the bucket of
/// key `key` among `1 << bits`.
pub(super) fn hash_ptr(key: u64, bits: u32) -> usize {
    (key.wrapping_mul(GOLDEN_RATIO_64) >> (64 - bits)) as usize
}

impl FlowList {
    /// An empty list.
    pub(super) const EMPTY: FlowList = FlowList {
        first: NIL,
        last: NIL,
    };
}

impl Fq {
    /// The new (or old) flows of band `b`.
    pub(super) fn list(&self, b: usize, new: bool) -> &FlowList {
        let band: &Band = &self.bands[b];
        if new {
            &band.new_flows
        } else {
            &band.old_flows
        }
    }

    /// The new (or old) flows of band `b`, writable.
    fn list_mut(&mut self, b: usize, new: bool) -> &mut FlowList {
        let band = &mut self.bands[b];
        if new {
            &mut band.new_flows
        } else {
            &mut band.old_flows
        }
    }

    /// The flows of a list, in order.
    pub(super) fn list_iter(&self, b: usize, new: bool) -> impl Iterator<Item = u32> + '_ {
        let first = self.list(b, new).first;
        std::iter::successors((first != NIL).then_some(first), move |&f| {
            let n = self.flows[f as usize].next;
            (n != NIL).then_some(n)
        })
    }

    /// Kernel: `fq_flow_add_tail()`: flow `f` at the tail of the new (or
    /// old) flows of *its* band (`f->band`).
    pub(super) fn add_tail(&mut self, f: u32, new: bool) {
        let b = self.flows[f as usize].band as usize;
        let head = *self.list(b, new);
        if head.first != NIL {
            self.flows[head.last as usize].next = f;
        }
        let l = self.list_mut(b, new);
        if l.first == NIL {
            l.first = f;
        }
        l.last = f;
        let fl = &mut self.flows[f as usize];
        fl.next = NIL;
        fl.link = Link::Listed;
    }

    /// `head->first = f->next` on the served band's new (or old) flows.
    pub(super) fn pop_head(&mut self, new: bool) {
        let first = self.list(self.band_nr, new).first;
        let next = self.flows[first as usize].next;
        self.list_mut(self.band_nr, new).first = next;
    }

    /// Kernel: `fq_gc_candidate()`: detached for longer than `FQ_GC_AGE`.
    fn gc_candidate(&self, f: u32, now: u64) -> bool {
        match self.flows[f as usize].link {
            Link::Detached { age } => time_after(jiffies(now), age.wrapping_add(GC_AGE)),
            _ => false,
        }
    }

    /// Kernel: `fq_gc()` then the tree search of `fq_classify()`: the flow
    /// of `key`, found or made. Up to `FQ_GC_MAX` old detached flows met in
    /// the bucket before it are freed.
    pub(super) fn lookup(&mut self, key: u64, now: u64) -> u32 {
        let b = hash_ptr(key, self.cfg.buckets_log);
        let mut gc = [NIL; GC_MAX];
        let mut n = 0;
        let mut f = self.buckets[b];
        let found = loop {
            if f == NIL {
                break None;
            }
            if self.flows[f as usize].key == key {
                break Some(f);
            }
            if n < GC_MAX && self.gc_candidate(f, now) {
                gc[n] = f;
                n += 1;
            }
            f = self.flows[f as usize].bucket_next;
        };
        for &g in &gc[..n] {
            self.unlink_bucket(b, g);
            self.release(g);
        }
        self.nflows -= n as u32;
        self.inactive_flows -= n as u32;
        self.xs.gc_flows += n as u64;
        found.unwrap_or_else(|| self.create(b, key, now))
    }

    /// Takes flow `f` out of bucket `b`'s chain.
    fn unlink_bucket(&mut self, b: usize, f: u32) {
        let next = self.flows[f as usize].bucket_next;
        if self.buckets[b] == f {
            self.buckets[b] = next;
            return;
        }
        let mut p = self.buckets[b];
        while p != NIL {
            if self.flows[p as usize].bucket_next == f {
                self.flows[p as usize].bucket_next = next;
                return;
            }
            p = self.flows[p as usize].bucket_next;
        }
    }

    /// Puts slot `f` back on the free list.
    fn release(&mut self, f: u32) {
        let fl = &mut self.flows[f as usize];
        fl.link = Link::Free;
        fl.next = NIL;
        fl.bucket_next = NIL;
        self.free.push(f);
    }

    /// Kernel: `fq_classify()`'s allocation: a detached flow of `key`
    /// with `initial_quantum` of credit, at the head of bucket `b`.
    fn create(&mut self, b: usize, key: u64, now: u64) -> u32 {
        let flow = Flow {
            key,
            q: FlowQueue::default(),
            link: Link::Detached {
                age: jiffies(now) | 1,
            },
            credit: self.cfg.initial_quantum as i32,
            band: 0,
            next: NIL,
            time_next_packet: 0,
            bucket_next: self.buckets[b],
        };
        let f = match self.free.pop() {
            Some(f) => {
                let q = std::mem::take(&mut self.flows[f as usize].q);
                self.flows[f as usize] = Flow { q, ..flow };
                f
            }
            None => {
                self.flows.push(flow);
                (self.flows.len() - 1) as u32
            }
        };
        self.buckets[b] = f;
        self.nflows += 1;
        self.inactive_flows += 1;
        f
    }

    /// Kernel: `fq_resize()` and `fq_rehash()`: the flows spread over
    /// `1 << log` buckets, old detached ones freed on the way. Nothing to
    /// do when the size does not change.
    pub(super) fn resize(&mut self, log: u32) {
        if !self.buckets.is_empty() && log == self.cfg.buckets_log {
            return;
        }
        let old = std::mem::replace(&mut self.buckets, vec![NIL; 1 << log]);
        self.cfg.buckets_log = log;
        let mut freed = 0u32;
        for mut f in old {
            while f != NIL {
                let next = self.flows[f as usize].bucket_next;
                if self.gc_candidate(f, self.last_now) {
                    self.release(f);
                    freed += 1;
                } else {
                    let b = hash_ptr(self.flows[f as usize].key, log);
                    self.flows[f as usize].bucket_next = self.buckets[b];
                    self.buckets[b] = f;
                }
                f = next;
            }
        }
        self.nflows -= freed;
        self.inactive_flows -= freed;
        self.xs.gc_flows += u64::from(freed);
    }

    /// Kernel: `fq_reset()` of the flows: every flow's packets into `to_free`,
    /// every flow freed, the lists and the throttled set emptied.
    pub(super) fn free_all_flows(&mut self, to_free: &mut ToFree) {
        self.free.clear();
        for (i, fl) in self.flows.iter_mut().enumerate() {
            fl.q.purge(|qd| to_free.push(qd.pkt, DropReason::QueuePurge));
            fl.link = Link::Free;
            fl.next = NIL;
            fl.bucket_next = NIL;
            self.free.push(i as u32);
        }
        self.free.reverse();
        self.buckets.fill(NIL);
        for b in &mut self.bands {
            b.new_flows = FlowList::EMPTY;
            b.old_flows = FlowList::EMPTY;
        }
        self.band_pkt_count = [0; super::BANDS];
        self.delayed.clear();
        self.nflows = 0;
        self.inactive_flows = 0;
        self.throttled_flows = 0;
    }
}
