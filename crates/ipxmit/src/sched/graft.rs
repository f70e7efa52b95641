//! Qdiscs on classes: `tc qdisc add|replace|change|del dev D parent X:Y`.
//!
//! Stands for the non-root branches of `tc_modify_qdisc()` and
//! `tc_get_qdisc()`, `qdisc_leaf()` and the class half of `qdisc_graft()`
//! (`net/sched/sch_api.c`).
//!
//! # The decision
//!
//! The parent is the qdisc whose handle is the major of `X:Y`, found
//! anywhere in the device's tree (`Failed to find specified qdisc`); it
//! must have classes (`Parent qdisc is not classful`) and the class
//! (`Specified class not found`). The qdisc on the class, unless it is
//! the class's default one, is then treated as the root is by
//! [`super::api::decide`]: changed in place, or replaced by a new one
//! grafted on the class (refused for `noqueue`, below a depth of 7, and
//! by the parent for a class that holds no qdisc: htb's inner classes).
//! Deleting puts the class's default qdisc back.

use super::api::{self, RootAction, TcError};
use super::{ClassError, Qdisc, QdiscOp, QdiscSpec, SpecError, ToFree};

/// The deepest a parent may be for a graft (`parent->depth >= 7`).
const MAX_PARENT_DEPTH: u32 = 7;

/// The qdisc of handle `h` in the tree under `q` (of handle `own`, at
/// `depth`), with its depth.
pub fn find(q: &mut dyn Qdisc, own: u32, h: u32, depth: u32) -> Option<(&mut dyn Qdisc, u32)> {
    if own == h {
        return Some((q, depth));
    }
    for (ch, c) in q.children_mut() {
        if let Some(found) = find(c, ch, h, depth + 1) {
            return Some(found);
        }
    }
    None
}

/// Kernel: `qdisc_lookup()` of handle `h` in the tree under `q` (of
/// handle `own`, at `depth`), `f` run on that qdisc (with its depth), and
/// `qdisc_tree_reduce_backlog()`: what its queue length, backlog and drops
/// changed by is carried into every qdisc above it. `None` when no qdisc
/// has that handle.
pub fn on_path<R>(
    q: &mut dyn Qdisc,
    own: u32,
    h: u32,
    depth: u32,
    f: &mut dyn FnMut(&mut dyn Qdisc, u32) -> R,
) -> Option<R> {
    if own == h {
        return Some(f(q, depth));
    }
    let mut done = None;
    for (ch, c) in q.children_mut() {
        if in_use(c, ch, h) {
            let before = *c.stats();
            let r = on_path(c, ch, h, depth + 1, f);
            done = Some((r, before, *c.stats()));
            break;
        }
    }
    let (r, before, after) = done?;
    super::carry(q.stats_mut(), &before, &after);
    r
}

/// Is handle `h` taken anywhere in the tree under `q` (of handle `own`)?
fn in_use(q: &dyn Qdisc, own: u32, h: u32) -> bool {
    own == h || q.children().iter().any(|&(_, ch, c)| in_use(c, ch, h))
}

/// Kernel: `check_netem_in_tree()` (Linux 6.18): a `netem` made or
/// changed to `spec` in the tree under `root` (of handle `root_h`), where
/// it has handle `own` (`None`: not yet in it), is refused when another
/// netem is in the tree and either of them duplicates.
pub fn netem_check(
    root: &dyn Qdisc,
    root_h: u32,
    own: Option<u32>,
    spec: &QdiscSpec,
) -> Result<(), TcError> {
    let QdiscSpec::Netem(n) = spec else {
        return Ok(());
    };
    let mut all = vec![(root_h, root)];
    let mut i = 0;
    while i < all.len() {
        let q = all[i].1;
        all.extend(q.children().into_iter().map(|(_, h, c)| (h, c)));
        i += 1;
    }
    let clash = all
        .iter()
        .filter(|(h, q)| q.kind() == "netem" && Some(*h) != own)
        .any(|(_, q)| n.duplicate != 0 || q.duplicating_netem());
    if clash {
        return Err(TcError::Spec(SpecError::Refused(
            "Error: netem: cannot mix duplicating netems with other netems in tree.".into(),
        )));
    }
    Ok(())
}

/// What a graft needs besides the tree: the request and how to build.
pub struct GraftReq<'a> {
    /// The class (`parent X:Y`).
    pub clid: u32,
    /// What is asked.
    pub op: QdiscOp,
    /// The handle given.
    pub handle: Option<u32>,
    /// The qdisc.
    pub spec: &'a QdiscSpec,
    /// The device's `tx_queue_len` and `psched_mtu`.
    pub txqlen: u32,
    /// See `txqlen`.
    pub psched_mtu: u32,
    /// The automatic handle a new qdisc without one gets.
    pub auto: u32,
}

/// Kernel: `tc_modify_qdisc()` with a parent class, on the tree under
/// `root` (of handle `root_h`).
pub fn modify(
    root: &mut dyn Qdisc,
    root_h: u32,
    req: &GraftReq<'_>,
    to_free: &mut ToFree,
) -> Result<(), TcError> {
    let taken = req.handle.is_some_and(|h| in_use(root, root_h, h));
    let own = req.handle.filter(|_| taken);
    netem_check(root, root_h, own, req.spec)?;
    let parent = req.clid & 0xffff_0000;
    on_path(root, root_h, parent, 0, &mut |p, depth| {
        modify_at(p, depth, req, taken, to_free)
    })
    .ok_or(TcError::ParentNotFound)?
}

/// [`modify`] at the parent `p` (at `depth`) found; `taken`: the handle
/// asked for is in the tree already.
fn modify_at(
    p: &mut dyn Qdisc,
    depth: u32,
    req: &GraftReq<'_>,
    taken: bool,
    to_free: &mut ToFree,
) -> Result<(), TcError> {
    if !p.classful() {
        return Err(TcError::NotClassful);
    }
    if !p.class_find(req.clid) {
        return Err(TcError::ClassNotFound);
    }
    let cur = p
        .leaf_mut(req.clid)
        .filter(|(h, _)| *h != 0)
        .map(|(h, q)| (h, q.kind()));
    let root = cur.map(|(handle, kind)| api::Root { handle, kind });
    match api::decide(root, req.op, req.handle, req.spec.kind())? {
        RootAction::Change => {
            let (_, q) = p.leaf_mut(req.clid).ok_or(TcError::ClassNotFound)?;
            let before = *q.stats();
            let changed = req.spec.change(q, req.txqlen, req.psched_mtu, to_free)?;
            // What a lower limit trimmed leaves the parent's totals too
            // (and, by `on_path`, every one above it).
            let after = *q.stats();
            super::carry(p.stats_mut(), &before, &after);
            if !changed {
                return Err(TcError::KindMismatch);
            }
            Ok(())
        }
        RootAction::Create(h) => {
            if taken && req.handle != cur.map(|c| c.0) {
                return Err(TcError::ExclusiveOverride);
            }
            if *req.spec == QdiscSpec::Noqueue {
                return Err(TcError::NoqueueOnClass);
            }
            if depth >= MAX_PARENT_DEPTH {
                return Err(TcError::TooDeep);
            }
            let mut new = req.spec.build(req.txqlen, req.psched_mtu)?;
            let h = h.unwrap_or(req.auto);
            new.set_handle(h);
            p.graft(req.clid, Some((h, new)), to_free)
                .map_err(TcError::Class)
        }
    }
}

/// Kernel: `tc_get_qdisc()` deleting the qdisc on class `clid` (of handle
/// `handle` when given): the class's default qdisc comes back.
pub fn delete(
    root: &mut dyn Qdisc,
    root_h: u32,
    clid: u32,
    handle: Option<u32>,
    to_free: &mut ToFree,
) -> Result<(), TcError> {
    on_path(root, root_h, clid & 0xffff_0000, 0, &mut |p, _| {
        delete_at(p, clid, handle, to_free)
    })
    .ok_or(TcError::DeleteParentNotFound)?
}

/// [`delete`] at the parent `p` found.
fn delete_at(
    p: &mut dyn Qdisc,
    clid: u32,
    handle: Option<u32>,
    to_free: &mut ToFree,
) -> Result<(), TcError> {
    if !p.classful() {
        return Err(TcError::Spec(SpecError::NotSupported));
    }
    if !p.class_find(clid) {
        return Err(TcError::ClassNotFound);
    }
    let (h, _) = p.leaf_mut(clid).ok_or(TcError::DeleteNotFound)?;
    if handle.is_some_and(|x| x != h) {
        return Err(TcError::InvalidHandle);
    }
    if h == 0 {
        return Err(TcError::DeleteDefault);
    }
    p.graft(clid, None, to_free).map_err(|e| match e {
        ClassError::NotSupported => TcError::Spec(SpecError::NotSupported),
        e => TcError::Class(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::PacketBuf;
    use crate::sched::{ClassSpec, Dequeued, HtbClassConfig, NetXmit};
    use crate::time::Instant;

    const H: u32 = 1 << 16;

    fn pkt(priority: u32, len: usize) -> PacketBuf {
        let mut p = PacketBuf::from_slice(0, &vec![0u8; len]);
        p.meta.priority = priority;
        p
    }

    fn req<'a>(clid: u32, op: QdiscOp, handle: u32, spec: &'a QdiscSpec) -> GraftReq<'a> {
        GraftReq {
            clid,
            op,
            handle: Some(handle),
            spec,
            txqlen: 1000,
            psched_mtu: 1514,
            auto: 0x8001 << 16,
        }
    }

    fn htb_with_leaf() -> Box<dyn Qdisc> {
        let mut q = QdiscSpec::parse(&["htb"])
            .unwrap()
            .build(1000, 1514)
            .unwrap();
        q.set_handle(H);
        let cfg = ClassSpec::Htb(HtbClassConfig::with_rate(1_000_000));
        q.class_change(H, H | 0x10, &cfg, Instant::ZERO, &mut ToFree::default())
            .unwrap();
        q
    }

    #[test]
    fn a_grafted_qdisc_queues_and_drops_for_its_class() {
        let mut q = htb_with_leaf();
        let spec: QdiscSpec = "pfifo limit 2".parse().unwrap();
        let mut tf = ToFree::default();
        modify(
            &mut *q,
            H,
            &req(H | 0x10, QdiscOp::Add, 0x10 << 16, &spec),
            &mut tf,
        )
        .unwrap();
        let results: Vec<NetXmit> = (0..5)
            .map(|_| q.enqueue(pkt(H | 0x10, 100), Instant::ZERO, &mut tf))
            .collect();
        assert_eq!(
            results.iter().filter(|r| **r == NetXmit::Success).count(),
            2
        );
        assert_eq!((q.stats().qlen, q.stats().drops, tf.len()), (2, 3, 3));
        let show = q.class_show(H | 0x10, false).unwrap();
        assert!(show.text.contains("leaf 10: "), "{}", show.text);
        assert_eq!(show.stats.drops, 3);
        // Deleting it purges its packets and puts a default pfifo back.
        delete(&mut *q, H, H | 0x10, None, &mut tf).unwrap();
        assert_eq!((q.stats().qlen, q.stats().backlog, tf.len()), (0, 0, 5));
        assert!(q.children().is_empty());
        assert_eq!(
            delete(&mut *q, H, H | 0x10, None, &mut tf),
            Err(TcError::DeleteDefault)
        );
    }

    #[test]
    fn a_throttled_child_throttles_its_parent() {
        let mut q = QdiscSpec::parse(&["prio"])
            .unwrap()
            .build(1000, 1514)
            .unwrap();
        q.set_handle(H);
        let spec: QdiscSpec = "tbf rate 8kbit burst 1600 limit 10000".parse().unwrap();
        let mut tf = ToFree::default();
        modify(
            &mut *q,
            H,
            &req(H | 2, QdiscOp::Add, 20 << 16, &spec),
            &mut tf,
        )
        .unwrap();
        // Priority 0 goes to band 1 (1:2): the tbf sends one 1000-byte
        // packet from its bucket, then waits a second for the next.
        for _ in 0..2 {
            q.enqueue(pkt(0, 1000), Instant::ZERO, &mut tf);
        }
        assert!(matches!(q.dequeue(Instant::ZERO), Dequeued::Packet(_)));
        match q.dequeue(Instant::ZERO) {
            Dequeued::Throttled(t) => assert!(t.as_nanos() > 0),
            other => panic!("{other:?}"),
        }
        assert_eq!(q.stats().qlen, 1);
    }

    #[test]
    fn refusals_are_the_kernels() {
        let mut q = htb_with_leaf();
        let spec: QdiscSpec = "pfifo".parse().unwrap();
        let mut tf = ToFree::default();
        let mut try_at =
            |clid, handle| modify(&mut *q, H, &req(clid, QdiscOp::Add, handle, &spec), &mut tf);
        assert_eq!(try_at(H | 0x99, 5 << 16), Err(TcError::ClassNotFound));
        assert_eq!(try_at(7 << 16 | 1, 5 << 16), Err(TcError::ParentNotFound));
        assert_eq!(try_at(H | 0x10, H), Err(TcError::ExclusiveOverride));
        let noq = QdiscSpec::Noqueue;
        assert_eq!(
            modify(
                &mut *q,
                H,
                &req(H | 0x10, QdiscOp::Add, 5 << 16, &noq),
                &mut tf
            ),
            Err(TcError::NoqueueOnClass)
        );
    }
}
