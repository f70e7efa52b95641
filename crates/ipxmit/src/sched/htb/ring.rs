//! The two orders `htb`'s dequeue keeps: a round robin of classes sorted
//! by class id (the kernel's rows and feeds, rb-trees with a `ptr` and a
//! `last_ptr_id`), and the queue of classes waiting for a change of mode
//! (the kernel's `wait_pq`).
//!
//! Both are sorted vectors: a class set is small, an insertion is a
//! binary search and a short move, and once a vector has held its most
//! classes it never allocates again (no allocation per packet).

/// The classes of one row or feed, by class id, with the one whose turn
/// it is. See the module documentation.
#[derive(Debug, Default)]
pub(super) struct Ring {
    /// `(classid, slot)`, ascending by class id.
    members: Vec<(u32, usize)>,
    /// The index of the class whose turn it is; `None` past the end (the
    /// kernel's `ptr` of `NULL`).
    ptr: Option<usize>,
    /// When `ptr` is `None`: the id of the class that was removed while it
    /// had the turn, to resume at it or the next one up (`last_ptr_id`).
    last_id: u32,
}

impl Ring {
    /// Is no class in the ring?
    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Kernel: `htb_add_to_id_tree()`: class `id` (in `slot`) joins; the
    /// turn stays with the class that had it.
    #[inline]
    pub(super) fn insert(&mut self, id: u32, slot: usize) {
        let pos = match self.members.last() {
            Some(&(last, _)) if last > id => self.members.partition_point(|&(c, _)| c < id),
            _ => self.members.len(),
        };
        if pos == self.members.len() {
            self.members.push((id, slot));
        } else {
            self.members.insert(pos, (id, slot));
        }
        if let Some(p) = self.ptr.as_mut() {
            if pos <= *p {
                *p += 1;
            }
        }
    }

    /// Removes class `id` from a row (`htb_remove_class_from_row()`): if
    /// it had the turn, the turn passes to the next class.
    #[inline]
    pub(super) fn remove_from_row(&mut self, id: u32) {
        let Some(pos) = self.take(id) else { return };
        if let Some(p) = self.ptr {
            if pos < p {
                self.ptr = Some(p - 1);
            } else if pos == p && p == self.members.len() {
                self.ptr = None;
            }
        }
    }

    /// Removes class `id` from a feed (`htb_deactivate_prios()`): if it
    /// had the turn, the turn is lost but its id kept, to resume there.
    pub(super) fn remove_from_feed(&mut self, id: u32) {
        let Some(pos) = self.take(id) else { return };
        match self.ptr {
            Some(p) if pos < p => self.ptr = Some(p - 1),
            Some(p) if pos == p => {
                self.ptr = None;
                self.last_id = id;
            }
            _ => {}
        }
    }

    /// Takes class `id` out, returning where it was.
    #[inline]
    fn take(&mut self, id: u32) -> Option<usize> {
        let pos = match self.members.last() {
            Some(&(last, _)) if last == id => self.members.len() - 1,
            _ => self.members.binary_search_by_key(&id, |&(c, _)| c).ok()?,
        };
        if pos + 1 == self.members.len() {
            self.members.pop();
        } else {
            self.members.remove(pos);
        }
        Some(pos)
    }

    /// The turn passes to the next class (`htb_next_rb_node()`), `None`
    /// past the last.
    pub(super) fn advance(&mut self) {
        if let Some(p) = self.ptr {
            self.ptr = (p + 1 < self.members.len()).then_some(p + 1);
        }
    }

    /// One step of `htb_lookup_leaf()` on this ring: the slot of the class
    /// whose turn it is, recovered from `last_id` when the pointer was
    /// lost (that class or the next one up). `None` when the pointer is
    /// past the end: it is then rewound to the first class, and the caller
    /// goes up a ring.
    #[inline]
    pub(super) fn turn(&mut self) -> Option<usize> {
        if self.ptr.is_none() && self.last_id != 0 {
            let up = self.members.partition_point(|&(c, _)| c < self.last_id);
            self.ptr = (up < self.members.len()).then_some(up);
        }
        self.last_id = 0;
        match self.ptr {
            Some(p) => Some(self.members[p].1),
            None => {
                self.ptr = Some(0);
                None
            }
        }
    }

    /// Empties the ring and forgets the turn (`htb_reset()`).
    pub(super) fn clear(&mut self) {
        self.members.clear();
        self.ptr = None;
        self.last_id = 0;
    }
}

/// The classes that are not `CanSend`, each with the time its mode
/// changes: the kernel's `wait_pq` (one queue for all levels here).
/// Equal times keep the order of insertion.
#[derive(Debug, Default)]
pub(super) struct WaitQueue {
    /// `(time, sequence, slot)`, descending: the earliest is last.
    entries: Vec<(u64, u64, usize)>,
    /// Insertions so far, the tie-break of equal times.
    seq: u64,
}

impl WaitQueue {
    /// Kernel: `htb_add_to_wait_tree()`: `slot` changes mode at `at`.
    /// Returns the key to remove it by.
    pub(super) fn insert(&mut self, at: u64, slot: usize) -> (u64, u64) {
        self.seq += 1;
        let key = (at, self.seq);
        let pos = self.entries.partition_point(|&(t, s, _)| (t, s) > key);
        self.entries.insert(pos, (at, self.seq, slot));
        key
    }

    /// Removes the entry of `key` (`htb_safe_rb_erase()` of a `pq_node`).
    pub(super) fn remove(&mut self, key: (u64, u64)) {
        let pos = self.entries.partition_point(|&(t, s, _)| (t, s) > key);
        if self
            .entries
            .get(pos)
            .is_some_and(|&(t, s, _)| (t, s) == key)
        {
            self.entries.remove(pos);
        }
    }

    /// Takes out the earliest class whose time is at most `now`.
    pub(super) fn pop_due(&mut self, now: u64) -> Option<usize> {
        match self.entries.last() {
            Some(&(t, _, slot)) if t <= now => {
                self.entries.pop();
                Some(slot)
            }
            _ => None,
        }
    }

    /// The earliest time among the classes `pick` accepts.
    pub(super) fn earliest(&self, mut pick: impl FnMut(usize) -> bool) -> Option<u64> {
        let mut it = self.entries.iter().rev();
        it.find(|&&(_, _, slot)| pick(slot)).map(|&(t, _, _)| t)
    }
}
