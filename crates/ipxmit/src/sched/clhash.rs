//! The order in which a qdisc lists its classes.
//!
//! Stands for `struct Qdisc_class_hash` with `qdisc_class_hash()`,
//! `qdisc_class_hash_insert()`, `qdisc_class_hash_remove()` and
//! `qdisc_class_hash_grow()` (`net/sched/sch_api.c`, `include/net/sch_generic.h`).
//!
//! # Algorithm
//!
//! Classes hang in buckets, 4 at first. A class id `id` goes to bucket
//! `h & mask` with `h = id ^ (id >> 8)`, then `h ^= h >> 4`, at the head of
//! the bucket. After an insertion that leaves more than 3/4 of a class per
//! bucket the table doubles; the classes are moved bucket by bucket, each
//! to the head of its new bucket. It never shrinks. `tc class show` walks
//! the buckets in order, each from its head: that is the listing order.

/// Class ids in the kernel's hash order. See the module documentation.
#[derive(Clone, Debug)]
pub struct ClassHash {
    buckets: Vec<Vec<u32>>,
    elems: usize,
}

impl Default for ClassHash {
    fn default() -> Self {
        ClassHash::new()
    }
}

/// Kernel: `qdisc_class_hash()`.
fn bucket(id: u32, mask: usize) -> usize {
    let mut h = id ^ (id >> 8);
    h ^= h >> 4;
    h as usize & mask
}

impl ClassHash {
    /// Kernel: `qdisc_class_hash_init()`: four empty buckets.
    pub fn new() -> ClassHash {
        ClassHash {
            buckets: vec![Vec::new(); 4],
            elems: 0,
        }
    }

    /// Kernel: `qdisc_class_hash_insert()` then `qdisc_class_hash_grow()`.
    pub fn insert(&mut self, id: u32) {
        let mask = self.buckets.len() - 1;
        // Buckets hold their head last, so a push is an insertion at the head.
        self.buckets[bucket(id, mask)].push(id);
        self.elems += 1;
        if self.elems * 4 > self.buckets.len() * 3 {
            self.grow();
        }
    }

    /// Doubles the table, moving each bucket's classes from its head.
    fn grow(&mut self) {
        let size = self.buckets.len() * 2;
        let mut new = vec![Vec::new(); size];
        for b in &self.buckets {
            for &id in b.iter().rev() {
                new[bucket(id, size - 1)].push(id);
            }
        }
        self.buckets = new;
    }

    /// Kernel: `qdisc_class_hash_remove()`.
    pub fn remove(&mut self, id: u32) {
        let mask = self.buckets.len() - 1;
        let b = &mut self.buckets[bucket(id, mask)];
        if let Some(i) = b.iter().position(|&x| x == id) {
            b.remove(i);
            self.elems -= 1;
        }
    }

    /// The class ids in listing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.buckets.iter().flat_map(|b| b.iter().rev().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(ids: &[u32]) -> Vec<u32> {
        let mut h = ClassHash::new();
        for &id in ids {
            h.insert(0x1_0000 | id);
        }
        h.iter().map(|id| id & 0xffff).collect()
    }

    /// Orders `tc class show` printed on Linux 6.18.
    #[test]
    fn listing_order_is_the_kernels() {
        assert_eq!(order(&[0x1, 0x10, 0x11]), [0x11, 0x10, 0x1]);
        assert_eq!(order(&[0x1, 0x10, 0x20]), [0x10, 0x1, 0x20]);
        assert_eq!(
            order(&[0x1, 0x10, 0x11, 0x12, 0x30]),
            [0x11, 0x1, 0x10, 0x30, 0x12]
        );
        let mut h = ClassHash::new();
        for id in [1, 0x10, 0x11] {
            h.insert(0x1_0000 | id);
        }
        h.remove(0x1_0010);
        assert_eq!(h.iter().collect::<Vec<_>>(), [0x1_0011, 0x1_0001]);
    }
}
