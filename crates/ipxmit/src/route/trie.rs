//! A multibit trie that maps an IPv4 address to its longest matching prefix.
//!
//! # Algorithm
//!
//! The kernel's table (`net/ipv4/fib_trie.c`) is an LC-trie: a binary trie
//! whose one-child chains are skipped (path compression, a node records how
//! many bits it skips) and whose dense subtrees are replaced by one node of
//! 2^k children (level compression; `inflate()` doubles a node, `halve()`
//! shrinks it, `resize()` decides from the fill ratio). A lookup
//! (`fib_table_lookup()`) walks down to a leaf, checks it, and backtracks
//! to shorter prefixes when the leaf's routes do not answer.
//!
//! This index keeps what makes that fast — a handful of dependent memory
//! reads per lookup, independent of the number of routes — with a fixed
//! shape whose updates are local: three levels of strides 16, 8 and 8
//! (the "DIR-16-8-8" layout of multibit tries). A level at depth `d` with
//! stride `s` holds prefixes of length `d+1 ..= d+s`; a prefix of length
//! `l` there is expanded over the `2^(d+s-l)` slots it covers (controlled
//! prefix expansion), and a slot keeps the longest prefix expanded onto it.
//! A slot also points to the child node for the next 8 bits when a longer
//! prefix lies below it. The default route (length 0) sits beside the
//! root.
//!
//! * **Lookup** reads the root slot for the top 16 bits, then at most two
//!   child slots, remembering the last prefix seen: at most three slot
//!   reads (8 bytes each) and no allocation.
//! * **Insert** touches one node: at most `2^15` slots for a /1, 256 for a
//!   /16 or /24, one for a /32 — independent of the table's size — plus
//!   the nodes on its path that do not exist yet.
//! * **Delete** puts back, on the slots that held the prefix, the longest
//!   remaining prefix of the same node that covers it (the caller finds it
//!   in its exact-match index); a node left without prefixes and children
//!   is freed and unlinked from its parent.
//!
//! The trie stores an opaque `u32` per prefix (the table's leaf number);
//! which routes a prefix holds, and the backtracking of `fib_table_lookup()`
//! past a prefix whose routes do not answer, stay with the table
//! ([`super::fib`]).

/// What [`Trie::lookup`] answers when no prefix covers the address.
pub(super) const NONE: u32 = u32::MAX;

/// One slot: `[LEAF]`, the longest prefix expanded onto it (its value + 1,
/// 0 for none), and `[CHILD]`, the node below (0 for none: the root is
/// nobody's child). A plain array of zeros: a new table's root is zeroed
/// memory, or a dropped table's with the pages it wrote cleared.
type Slot = [u32; 2];
const LEAF: usize = 0;
const CHILD: usize = 1;

/// "No prefix" and "no child" inside a slot.
const NIL: u32 = 0;
const EMPTY: Slot = [NIL, NIL];

/// The root's stride: its slots are the top 16 bits of an address.
const ROOT_BITS: u8 = 16;
/// The stride of every node below the root.
const NODE_BITS: u8 = 8;
const ROOT_SLOTS: usize = 1 << ROOT_BITS;
const NODE_SLOTS: usize = 1 << NODE_BITS;

/// Book-keeping of one node below the root.
#[derive(Clone, Copy, Debug, Default)]
struct NodeMeta {
    /// Prefixes stored at this node plus children linked from it.
    used: u32,
    /// The node holding the slot that points here (0: the root).
    parent: u32,
    /// That slot's index in the arena.
    parent_slot: u32,
}

/// Where a prefix of some length is stored: the node, its first slot in
/// the arena, its depth and stride.
#[derive(Clone, Copy, Debug)]
struct Place {
    node: u32,
    base: usize,
    depth: u8,
    stride: u8,
}

impl Place {
    const ROOT: Place = Place {
        node: 0,
        base: 0,
        depth: 0,
        stride: ROOT_BITS,
    };

    /// The slot index (within the node) that address `a` falls in.
    #[inline]
    fn index(self, a: u32) -> usize {
        ((a << self.depth) >> (32 - self.stride)) as usize
    }
}

/// The first arena slot of node `n` (0 is the root).
#[inline]
fn base(n: u32) -> usize {
    if n == 0 {
        0
    } else {
        ROOT_SLOTS + (n as usize - 1) * NODE_SLOTS
    }
}

/// The first slot of node `n` (> 0) in [`Arena::nodes`].
#[inline]
fn node_base(n: u32) -> usize {
    (n as usize - 1) * NODE_SLOTS
}

/// Every slot: the root's apart, so a node added never moves (or touches)
/// the root's 512 KiB. Indexed by arena address ([`base`]).
#[derive(Clone, Debug)]
struct Arena {
    root: Vec<Slot>,
    nodes: Vec<Slot>,
    /// The root's 4 KiB pages written to since it was all [`EMPTY`] (bit
    /// `p`: slots `p * PAGE_SLOTS ..`): what a dropped root must clear
    /// before a new table takes it ([`spare_root`]).
    dirty: u128,
}

/// Root slots per 4 KiB page: 128 pages, one bit each of [`Arena::dirty`].
const PAGE_SLOTS: usize = ROOT_SLOTS / 128;

/// Zeroed roots a thread keeps for its next tables, at most.
const SPARE_ROOTS: usize = 4;

std::thread_local! {
    /// Roots of dropped tables, cleared, for the next [`Trie::new`] on
    /// this thread: a new table does not zero 512 KiB again (the
    /// allocator's `calloc` clears a reused block in full).
    static SPARE: std::cell::RefCell<Vec<Vec<Slot>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Kernel: `kmem_cache_zalloc()` from a cache of freed objects (here the
/// thread's spare roots, else fresh zeroed memory): a root of
/// [`ROOT_SLOTS`] slots, all [`EMPTY`].
fn spare_root() -> Vec<Slot> {
    SPARE
        .try_with(|s| s.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| vec![EMPTY; ROOT_SLOTS])
}

impl Drop for Arena {
    /// Clears the root's written pages and keeps it for the thread's next
    /// table (while it has fewer than [`SPARE_ROOTS`]).
    fn drop(&mut self) {
        let mut root = std::mem::take(&mut self.root);
        if root.len() != ROOT_SLOTS {
            return;
        }
        let mut dirty = self.dirty;
        while dirty != 0 {
            let p = dirty.trailing_zeros() as usize;
            root[p * PAGE_SLOTS..(p + 1) * PAGE_SLOTS].fill(EMPTY);
            dirty &= dirty - 1;
        }
        let _ = SPARE.try_with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < SPARE_ROOTS {
                s.push(root);
            }
        });
    }
}

impl std::ops::Index<usize> for Arena {
    type Output = Slot;

    #[inline]
    fn index(&self, i: usize) -> &Slot {
        match i.checked_sub(ROOT_SLOTS) {
            None => &self.root[i],
            Some(j) => &self.nodes[j],
        }
    }
}

impl std::ops::IndexMut<usize> for Arena {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut Slot {
        match i.checked_sub(ROOT_SLOTS) {
            None => {
                self.dirty |= 1 << (i / PAGE_SLOTS);
                &mut self.root[i]
            }
            Some(j) => &mut self.nodes[j],
        }
    }
}

/// The longest-prefix index. See the module documentation.
#[derive(Clone, Debug)]
pub(super) struct Trie {
    /// The root's slots, then each node's 256 (node `n` at [`base`]`(n)`).
    slots: Arena,
    /// Per node (index 0, the root, unused).
    meta: Vec<NodeMeta>,
    /// Nodes freed for reuse.
    free: Vec<u32>,
    /// The default route's value + 1 (0: none).
    zero: u32,
}

impl Default for Trie {
    fn default() -> Self {
        Trie::new()
    }
}

impl Trie {
    /// An empty trie (the root's 65,536 slots, 512 KiB: a dropped
    /// table's, cleared, when this thread has one).
    pub(super) fn new() -> Trie {
        Trie {
            slots: Arena {
                root: spare_root(),
                nodes: Vec::new(),
                dirty: 0,
            },
            meta: vec![NodeMeta::default()],
            free: Vec::new(),
            zero: NIL,
        }
    }

    /// Kernel: `fib_table_lookup()`'s descent (without the backtracking):
    /// the value of the longest prefix that covers `a`, or [`NONE`].
    #[inline]
    pub(super) fn lookup(&self, a: u32) -> u32 {
        let s = self.slots.root[(a >> 16) as usize];
        let mut best = s[LEAF];
        if s[CHILD] != NIL {
            let s = self.slots.nodes[node_base(s[CHILD]) + ((a >> 8) & 0xff) as usize];
            if s[LEAF] != NIL {
                best = s[LEAF];
            }
            if s[CHILD] != NIL {
                let s = self.slots.nodes[node_base(s[CHILD]) + (a & 0xff) as usize];
                if s[LEAF] != NIL {
                    best = s[LEAF];
                }
            }
        }
        if best == NIL {
            best = self.zero;
        }
        // NIL (0) becomes NONE (u32::MAX).
        best.wrapping_sub(1)
    }

    /// Kernel: `fib_insert_node()` (with `tnode_new()` for the nodes on the
    /// way). Stores `leaf` for the prefix `net/len` (`net` truncated);
    /// `len_of` gives the prefix length of a value already stored, so a
    /// longer prefix keeps its slots.
    pub(super) fn insert(&mut self, net: u32, len: u8, leaf: u32, len_of: impl Fn(u32) -> u8) {
        debug_assert!(leaf != NONE);
        if len == 0 {
            self.zero = leaf + 1;
            return;
        }
        let at = self.place_or_grow(net, len);
        for s in self.span(at, net, len) {
            let cur = self.slots[s][LEAF];
            if cur == NIL || len_of(cur - 1) <= len {
                self.slots[s][LEAF] = leaf + 1;
            }
        }
        self.meta[at.node as usize].used += 1;
    }

    /// Kernel: `fib_remove_alias()`'s trie part (`put_child()`,
    /// `resize()`'s freeing of an empty node). Takes `leaf` (the prefix
    /// `net/len`) out; its slots get `repl`, the longest remaining prefix
    /// covering it (value and length), when that lies in the same node.
    pub(super) fn remove(&mut self, net: u32, len: u8, leaf: u32, repl: Option<(u32, u8)>) {
        if len == 0 {
            self.zero = NIL;
            return;
        }
        let Some(at) = self.place(net, len) else {
            return;
        };
        let with = repl
            .filter(|&(_, l)| l > at.depth)
            .map_or(NIL, |(v, _)| v + 1);
        for s in self.span(at, net, len) {
            if self.slots[s][LEAF] == leaf + 1 {
                self.slots[s][LEAF] = with;
            }
        }
        self.meta[at.node as usize].used -= 1;
        self.prune(at.node);
    }

    /// Bytes the index holds (slots and node book-keeping).
    pub(super) fn bytes(&self) -> usize {
        (self.slots.root.capacity() + self.slots.nodes.capacity()) * std::mem::size_of::<Slot>()
            + self.meta.capacity() * std::mem::size_of::<NodeMeta>()
            + self.free.capacity() * 4
    }

    /// The arena slots the prefix `net/len` is expanded over in `at`.
    fn span(&self, at: Place, net: u32, len: u8) -> std::ops::Range<usize> {
        let first = at.base + at.index(net);
        first..first + (1usize << (at.depth + at.stride - len))
    }

    /// The node a prefix of length `len` (> 0) belongs in, if it exists.
    fn place(&self, net: u32, len: u8) -> Option<Place> {
        let mut at = Place::ROOT;
        while len > at.depth + at.stride {
            let child = self.slots[at.base + at.index(net)][CHILD];
            if child == NIL {
                return None;
            }
            at = Place {
                node: child,
                base: base(child),
                depth: at.depth + at.stride,
                stride: NODE_BITS,
            };
        }
        Some(at)
    }

    /// Kernel: `tnode_new()` for each missing node on the way. The node a
    /// prefix of length `len` (> 0) belongs in, created (with its
    /// ancestors) when missing.
    fn place_or_grow(&mut self, net: u32, len: u8) -> Place {
        let mut at = Place::ROOT;
        while len > at.depth + at.stride {
            let slot = at.base + at.index(net);
            let mut child = self.slots[slot][CHILD];
            if child == NIL {
                child = self.new_node(at.node, slot);
                self.slots[slot][CHILD] = child;
                self.meta[at.node as usize].used += 1;
            }
            at = Place {
                node: child,
                base: base(child),
                depth: at.depth + at.stride,
                stride: NODE_BITS,
            };
        }
        at
    }

    /// An empty node whose parent slot is `parent_slot` of node `parent`.
    fn new_node(&mut self, parent: u32, parent_slot: usize) -> u32 {
        let meta = NodeMeta {
            used: 0,
            parent,
            parent_slot: parent_slot as u32,
        };
        if let Some(n) = self.free.pop() {
            self.meta[n as usize] = meta;
            return n;
        }
        let n = self.meta.len() as u32;
        self.meta.push(meta);
        let len = self.slots.nodes.len();
        self.slots.nodes.resize(len + NODE_SLOTS, EMPTY);
        n
    }

    /// Frees `node` and then its ancestors while they hold nothing.
    fn prune(&mut self, mut node: u32) {
        while node != 0 && self.meta[node as usize].used == 0 {
            let m = self.meta[node as usize];
            let b = node_base(node);
            debug_assert!(self.slots.nodes[b..b + NODE_SLOTS]
                .iter()
                .all(|s| *s == EMPTY));
            self.slots[m.parent_slot as usize][CHILD] = NIL;
            self.free.push(node);
            self.meta[m.parent as usize].used -= 1;
            node = m.parent;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(a: [u8; 4], len: u8) -> (u32, u8) {
        let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        (u32::from_be_bytes(a) & m, len)
    }

    #[test]
    fn longest_prefix_at_every_level_and_the_default() {
        let lens = [0u8, 8, 16, 20, 24, 28, 32];
        let mut t = Trie::new();
        let len_of = |v: u32| lens[v as usize];
        for (i, &l) in lens.iter().enumerate() {
            let (n, l) = net([10, 1, 2, 3], l);
            t.insert(n, l, i as u32, len_of);
        }
        assert_eq!(t.lookup(u32::from_be_bytes([10, 1, 2, 3])), 6);
        assert_eq!(t.lookup(u32::from_be_bytes([10, 1, 2, 4])), 5);
        assert_eq!(t.lookup(u32::from_be_bytes([10, 1, 2, 99])), 4);
        assert_eq!(t.lookup(u32::from_be_bytes([10, 1, 9, 0])), 3);
        assert_eq!(t.lookup(u32::from_be_bytes([10, 1, 99, 0])), 2);
        assert_eq!(t.lookup(u32::from_be_bytes([10, 9, 0, 0])), 1);
        assert_eq!(t.lookup(u32::from_be_bytes([11, 0, 0, 0])), 0);
    }

    #[test]
    fn removing_everything_frees_every_node() {
        let mut t = Trie::new();
        let (n, l) = net([192, 168, 1, 77], 32);
        t.insert(n, l, 7, |_| 32);
        assert_eq!(t.meta.len(), 3, "root and two nodes");
        t.remove(n, l, 7, None);
        assert_eq!(t.free.len(), 2);
        assert!(t.slots.root.iter().all(|s| *s == EMPTY));
        assert!(t.slots.nodes.iter().all(|s| *s == EMPTY));
        assert_eq!(t.lookup(n), NONE);
        // Freed nodes are reused.
        t.insert(n, l, 8, |_| 32);
        assert_eq!(t.meta.len(), 3);
        assert_eq!(t.lookup(n), 8);
    }

    #[test]
    fn a_dropped_root_comes_back_cleared_for_the_next_table() {
        let prefixes = [
            net([128, 0, 0, 0], 1),
            net([10, 0, 0, 0], 8),
            net([192, 168, 0, 0], 16),
            net([192, 168, 1, 77], 32),
        ];
        let mut t = Trie::new();
        for (i, &(n, l)) in prefixes.iter().enumerate() {
            t.insert(n, l, i as u32, |v| prefixes[v as usize].1);
        }
        let copy = t.clone();
        let roots = [t.slots.root.as_ptr(), copy.slots.root.as_ptr()];
        drop(t);
        drop(copy);
        let mut held = Vec::new();
        for _ in 0..2 {
            let fresh = Trie::new();
            assert!(roots.contains(&fresh.slots.root.as_ptr()), "not reused");
            assert_eq!(fresh.slots.root.len(), ROOT_SLOTS);
            assert!(fresh.slots.root.iter().all(|s| *s == EMPTY));
            for &(n, _) in &prefixes {
                assert_eq!(fresh.lookup(n), NONE);
            }
            held.push(fresh);
        }
    }

    #[test]
    fn a_thread_keeps_a_bounded_number_of_spare_roots() {
        let tries: Vec<Trie> = (0..SPARE_ROOTS + 3).map(|_| Trie::new()).collect();
        drop(tries);
        assert_eq!(SPARE.with(|s| s.borrow().len()), SPARE_ROOTS);
    }

    #[test]
    fn a_shorter_prefix_takes_back_the_slots_of_a_removed_longer_one() {
        let mut t = Trie::new();
        let lens = [17u8, 20];
        let len_of = |v: u32| lens[v as usize];
        let (a, la) = net([10, 0, 0, 0], 17);
        let (b, lb) = net([10, 0, 16, 0], 20);
        t.insert(b, lb, 1, len_of);
        t.insert(a, la, 0, len_of);
        assert_eq!(t.lookup(b), 1, "the longer prefix keeps its slots");
        t.remove(b, lb, 1, Some((0, 17)));
        assert_eq!(t.lookup(b), 0);
        t.remove(a, la, 0, None);
        assert_eq!(t.lookup(b), NONE);
    }
}
