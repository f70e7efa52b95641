//! `htb`'s dequeue: the rows and feeds of active classes, the wait queue
//! of classes changing mode, the charge. See the algorithm in `htb.rs`.

use super::ring::Ring;
use super::{elapsed, min_instant, Htb, Mode, MAX_DEPTH, MAX_WAIT_NS, MBUFFER_NS};
use crate::buf::PacketBuf;
use crate::sched::{carry, Dequeued};
use crate::time::Instant;

/// The priorities set in `mask`, lowest first.
fn prios(mut mask: u8) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let prio = mask.trailing_zeros() as usize;
        mask &= mask.wrapping_sub(1);
        (prio < 8).then_some(prio)
    })
}

impl Htb {
    /// Kernel: `htb_change_class_mode()` of class `i` at `now`, with its
    /// place in the wait queue (re-keyed whenever its time moved, so the
    /// queue holds each waiting class's exact time of change).
    pub(super) fn change_mode(&mut self, i: usize, now: Instant) {
        let (new, wait) = self.mode(i, now);
        let c = self.slots[i].as_mut().expect("a live class index");
        if new == Mode::CanSend && c.cmode == Mode::CanSend {
            return;
        }
        let (old, active) = (c.cmode, c.activity != 0);
        if new != old {
            if new == Mode::CantSend {
                c.stats.overlimits += 1;
                self.stats.overlimits += 1;
            }
            if active && old != Mode::CantSend {
                self.deactivate_prios(i);
            }
            self.class_mut(i).cmode = new;
            if active && new != Mode::CantSend {
                self.activate_prios(i);
            }
        }
        if let Some(key) = self.class_mut(i).pq.take() {
            self.wait.remove(key);
        }
        if new != Mode::CanSend {
            let key = self.wait.insert(now.as_nanos() + wait as u64, i);
            self.class_mut(i).pq = Some(key);
        }
    }

    /// Kernel: `htb_do_events()`: every class whose time has come gets
    /// its mode at `now`.
    fn do_events(&mut self, now: Instant) {
        while let Some(i) = self.wait.pop_due(now.as_nanos()) {
            self.class_mut(i).pq = None;
            self.change_mode(i, now);
        }
    }

    /// Kernel: `htb_activate()`: backlogged leaf `i` joins at its prio
    /// (a leaf that can send: the row of level 0 directly).
    pub(super) fn activate(&mut self, i: usize) {
        let c = self.slots[i].as_mut().expect("a live class index");
        if c.activity != 0 {
            return;
        }
        c.activity = 1 << c.prio;
        if c.cmode == Mode::CanSend {
            let (prio, id) = (c.prio as usize, c.classid);
            self.row_mask[0] |= 1 << prio;
            self.rows[0][prio].insert(id, i);
        } else {
            self.activate_prios(i);
        }
    }

    /// Kernel: `htb_deactivate()`: leaf `i` leaves its row or feed.
    pub(super) fn deactivate(&mut self, i: usize) {
        let c = self.slots[i].as_mut().expect("a live class index");
        let (mask, id) = (c.activity, c.classid);
        if mask == 0 {
            return;
        }
        if c.cmode == Mode::CanSend {
            c.activity = 0;
            let prio = mask.trailing_zeros() as usize;
            let row = &mut self.rows[0][prio];
            row.remove_from_row(id);
            if row.is_empty() {
                self.row_mask[0] &= !(1 << prio);
            }
        } else {
            self.deactivate_prios(i);
            self.class_mut(i).activity = 0;
        }
    }

    /// Kernel: `htb_activate_prios()`: class `i` (active at the prios of
    /// its activity) joins its parent's feeds while it may borrow, the
    /// parent in turn its parent's for the prios it newly serves, and the
    /// first that can send joins the row of its level.
    fn activate_prios(&mut self, mut i: usize) {
        let c = self.class(i);
        let (mut mask, mut mode) = (c.activity, c.cmode);
        while mask != 0 && mode == Mode::MayBorrow {
            let c = self.class(i);
            let Some(p) = c.parent else { return };
            let id = c.classid;
            let pc = self.class_mut(p);
            for prio in prios(mask) {
                if !pc.feed[prio].is_empty() {
                    mask &= !(1 << prio);
                }
                pc.feed[prio].insert(id, i);
            }
            pc.activity |= mask;
            mode = pc.cmode;
            i = p;
        }
        if mask != 0 && mode == Mode::CanSend {
            let c = self.class(i);
            let (level, id) = (c.level as usize, c.classid);
            self.row_mask[level] |= mask;
            for prio in prios(mask) {
                self.rows[level][prio].insert(id, i);
            }
        }
    }

    /// Kernel: `htb_deactivate_prios()`: the reverse of
    /// [`Htb::activate_prios`], with the class's mode as it was.
    fn deactivate_prios(&mut self, mut i: usize) {
        let c = self.class(i);
        let (mut mask, mut mode) = (c.activity, c.cmode);
        while mask != 0 && mode == Mode::MayBorrow {
            let c = self.class(i);
            let Some(p) = c.parent else { return };
            let id = c.classid;
            let pc = self.class_mut(p);
            let m = std::mem::take(&mut mask);
            for prio in prios(m) {
                pc.feed[prio].remove_from_feed(id);
                if pc.feed[prio].is_empty() {
                    mask |= 1 << prio;
                }
            }
            pc.activity &= !mask;
            mode = pc.cmode;
            i = p;
        }
        if mask != 0 && mode == Mode::CanSend {
            let c = self.class(i);
            let (level, id) = (c.level as usize, c.classid);
            for prio in prios(mask) {
                let row = &mut self.rows[level][prio];
                row.remove_from_row(id);
                if row.is_empty() {
                    self.row_mask[level] &= !(1 << prio);
                }
            }
        }
    }

    /// The row of `level` (`owner` `None`) or the feed of class `owner`,
    /// at `prio`.
    fn ring(&mut self, owner: Option<usize>, level: usize, prio: usize) -> &mut Ring {
        match owner {
            None => &mut self.rows[level][prio],
            Some(s) => &mut self.class_mut(s).feed[prio],
        }
    }

    /// Kernel: `htb_lookup_leaf()`: the leaf whose turn it is in the row
    /// of `level` and `prio`, going down the turns of the feeds; a feed
    /// past its end starts again and passes its parent's turn on.
    #[inline(always)]
    fn lookup_leaf(&mut self, level: usize, prio: usize) -> Option<usize> {
        // The common case: a leaf has the row's turn (a row past its end
        // starts again at its first class).
        let row = &mut self.rows[level][prio];
        if row.is_empty() {
            return None;
        }
        let s = row.turn().or_else(|| row.turn())?;
        if self.class(s).level == 0 {
            return Some(s);
        }
        self.lookup_down(level, prio)
    }

    /// [`Htb::lookup_leaf`] when the row's turn is an inner class: down
    /// the feeds with a stack of the rings on the way.
    fn lookup_down(&mut self, level: usize, prio: usize) -> Option<usize> {
        let mut stack = [None; MAX_DEPTH as usize + 1];
        let mut sp = 0;
        // Each step goes down a ring or passes a turn on; the kernel's bound.
        for _ in 0..65535 {
            let ring = self.ring(stack[sp], level, prio);
            if ring.is_empty() {
                return None;
            }
            match ring.turn() {
                Some(s) if self.class(s).level == 0 => return Some(s),
                Some(s) if sp < MAX_DEPTH as usize => {
                    sp += 1;
                    stack[sp] = Some(s);
                }
                Some(_) => return None,
                None if sp > 0 => {
                    sp -= 1;
                    self.ring(stack[sp], level, prio).advance();
                }
                None => {}
            }
        }
        None
    }

    /// The turn passes from leaf `i` (served at `level`, `prio`) to the
    /// next in its parent's feed, or in the row at level 0.
    fn pass_turn(&mut self, i: usize, level: usize, prio: usize) {
        let owner = if level > 0 {
            self.class(i).parent
        } else {
            None
        };
        self.ring(owner, level, prio).advance();
    }

    /// Dequeues from leaf `i`'s qdisc, keeping the totals (its drops
    /// inside, an AQM's, leave the totals too); with the leaf's queue
    /// length before and after (no dequeue when it was empty).
    fn leaf_dequeue(&mut self, i: usize, now: Instant) -> (Dequeued, u64, u64) {
        let c = self.slots[i].as_mut().expect("a live class index");
        let Some(q) = c.leaf.as_mut() else {
            return (Dequeued::Empty, 0, 0);
        };
        let before = *q.stats();
        if before.qlen == 0 {
            return (Dequeued::Empty, 0, 0);
        }
        let r = q.dequeue(now);
        let after = q.stats();
        carry(&mut self.stats, &before, after);
        (r, before.qlen, after.qlen)
    }

    /// Kernel: `htb_dequeue_tree()`: a packet from the leaves of the row
    /// of `level` and `prio`, in their turns; leaves found empty leave the
    /// row, a leaf that gives nothing passes its turn (a throttled one's
    /// time goes to `child_wait`).
    fn dequeue_tree(
        &mut self,
        level: usize,
        prio: usize,
        now: Instant,
        child_wait: &mut Option<Instant>,
    ) -> Option<PacketBuf> {
        let mut start = self.lookup_leaf(level, prio)?;
        let mut i = start;
        // Every leaf is tried once; the bound only guards the loop.
        for _ in 0..2 * self.slots.len() + 2 {
            let (r, before, after) = self.leaf_dequeue(i, now);
            if before == 0 {
                self.deactivate(i);
                if self.row_mask[level] & (1 << prio) == 0 {
                    return None;
                }
                let next = self.lookup_leaf(level, prio)?;
                if i == start {
                    start = next;
                }
                i = next;
                continue;
            }
            match r {
                Dequeued::Packet(p) => return Some(self.sent(i, level, prio, p, after, now)),
                Dequeued::Throttled(t) => *child_wait = min_instant(*child_wait, Some(t)),
                Dequeued::Empty => {}
            }
            self.pass_turn(i, level, prio);
            i = self.lookup_leaf(level, prio)?;
            if i == start {
                return None;
            }
        }
        None
    }

    /// Packet `p` left leaf `i` (`left` packets still queued) at `level`:
    /// the deficit and the turn, the leaf leaves the row when empty, the
    /// charge up the tree.
    fn sent(
        &mut self,
        i: usize,
        level: usize,
        prio: usize,
        p: PacketBuf,
        left: u64,
        now: Instant,
    ) -> PacketBuf {
        let len = p.len();
        let c = self.class_mut(i);
        let d = &mut c.deficit[level];
        *d -= len as i32;
        if *d < 0 {
            *d += c.quantum;
            self.pass_turn(i, level, prio);
        }
        if left == 0 {
            self.deactivate(i);
        }
        self.charge(i, level as u8, len as u32, now);
        self.stats.sent(len);
        p
    }

    /// Kernel: `htb_charge_class()`: `bytes` sent by leaf `i` at `level`;
    /// each class on the way gets its mode anew.
    fn charge(&mut self, i: usize, level: u8, bytes: u32, now: Instant) {
        let mut k = Some(i);
        while let Some(j) = k {
            let c = self.class_mut(j);
            let diff = elapsed(c.t_c, now);
            if c.level >= level {
                if c.level == level {
                    c.lends += 1;
                }
                c.tokens = (diff + c.tokens).min(c.buffer) - c.rate.l2t_ns(bytes) as i64;
                c.tokens = c.tokens.max(1 - MBUFFER_NS);
            } else {
                c.borrows += 1;
                c.tokens += diff;
            }
            c.ctokens = (diff + c.ctokens).min(c.cbuffer) - c.ceil.l2t_ns(bytes) as i64;
            c.ctokens = c.ctokens.max(1 - MBUFFER_NS);
            c.t_c = now;
            c.stats.sent(bytes as usize);
            k = c.parent;
            // With t_c now, the mode stays `CanSend` while both buckets
            // hold tokens: the common case needs no more.
            if c.cmode != Mode::CanSend || c.tokens < 0 || c.ctokens < 0 {
                self.change_mode(j, now);
            }
        }
    }

    /// The qdisc's part of `htb_dequeue()` once the direct queue is empty:
    /// the events due, then the rows from the lowest level and prio; when
    /// none gives a packet, the earliest change of mode of an active class
    /// (at most 5 s away) or of a throttled leaf qdisc.
    #[inline(never)]
    pub(super) fn dequeue_classes(&mut self, now: Instant) -> Dequeued {
        self.do_events(now);
        let mut child_wait = None;
        for level in 0..MAX_DEPTH as usize {
            let mut m = self.row_mask[level];
            while m != 0 {
                let prio = m.trailing_zeros() as usize;
                m &= m - 1;
                if let Some(p) = self.dequeue_tree(level, prio, now, &mut child_wait) {
                    return Dequeued::Packet(p);
                }
            }
        }
        let t = now.as_nanos();
        let slots = &self.slots;
        let active = |s: usize| slots[s].as_ref().is_some_and(|c| c.activity != 0);
        let own = self.wait.earliest(active).map(|at| {
            let w = (at.saturating_sub(t) as i64).clamp(1, MAX_WAIT_NS);
            Instant::from_nanos(t + w as u64)
        });
        match min_instant(own, child_wait) {
            Some(t) => Dequeued::Throttled(t),
            None => Dequeued::Empty,
        }
    }
}
