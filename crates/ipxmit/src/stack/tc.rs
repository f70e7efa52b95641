//! The traffic-control half of [`Stack`]: what `tc qdisc` and `tc class`
//! ask of the kernel, on a device's tree of qdiscs.
//!
//! Stands for `tc_modify_qdisc()`, `tc_get_qdisc()` and `tc_ctl_tclass()`
//! (`net/sched/sch_api.c`); the decisions are in [`crate::sched::api`],
//! [`crate::sched::graft`] and [`crate::sched::class`].

use std::sync::Arc;

use super::{ConfigError, Stack};
use crate::dev::NetDevice;
use crate::sched::api::{self, RootAction};
use crate::sched::cls::{FilterChain, FilterError, FilterSpec};
use crate::sched::est::{self, EstTarget, EstimatorSpec, Estimators};
use crate::sched::{
    class, graft, run, ClassError, ClassRequest, Qdisc, QdiscOp, QdiscSpec, TcError,
};
use crate::time::Instant;

impl Stack {
    /// `tc qdisc replace dev DEV root SPEC` ([`Stack::qdisc_modify`]): on a
    /// multi-queue device one qdisc serves every queue, as in the kernel
    /// (`mq` gives each its own).
    pub fn replace_qdisc(&self, dev: &str, spec: &QdiscSpec) -> Result<(), ConfigError> {
        match self.qdisc_modify(dev, QdiscOp::Replace, None, spec) {
            Ok(()) => Ok(()),
            Err(TcError::NoDevice(d)) => Err(ConfigError::NoDevice(d)),
            Err(TcError::Spec(e)) => Err(ConfigError::Qdisc(e)),
            Err(e) => Err(ConfigError::Tc(e)),
        }
    }

    /// Kernel: `tc_modify_qdisc()` for `dev`'s root: `tc qdisc
    /// add|replace|change dev DEV root [handle H:] SPEC` (see
    /// [`crate::sched::api`]). A new root replaces the old on every
    /// transmit queue (whose packets are dropped and counted): one qdisc
    /// shared by all of them, or under `mq` each queue's default; a change
    /// keeps the packets.
    pub fn qdisc_modify(
        &self,
        dev: &str,
        op: QdiscOp,
        handle: Option<u32>,
        spec: &QdiscSpec,
    ) -> Result<(), TcError> {
        let d = self
            .device(dev)
            .map_err(|_| TcError::NoDevice(dev.to_owned()))?;
        let (cur, kind) = d.root_qdisc();
        let root = (cur != 0).then_some(api::Root { handle: cur, kind });
        let (txqlen, psched_mtu) = (d.txqueuelen(), d.mtu() + d.link().header_len() as u32);
        let mq = *spec == QdiscSpec::Mq;
        if mq && d.queues().len() < 2 {
            return Err(TcError::Spec(crate::sched::SpecError::NotSupported));
        }
        match api::decide(root, op, handle, spec.kind())? {
            RootAction::Change if mq => Ok(()),
            RootAction::Change => {
                for q in d.trees() {
                    let mut to_free = crate::sched::ToFree::default();
                    let r = q.with_qdisc_mut(|qd| {
                        graft::netem_check(qd, cur, Some(cur), spec)?;
                        spec.change(qd, txqlen, psched_mtu, &mut to_free)
                            .map_err(TcError::Spec)
                    });
                    run::free_dropped(self.xmit_ctx(), &d, &mut to_free);
                    r?;
                }
                Ok(())
            }
            RootAction::Create(h) => {
                let h = h.unwrap_or_else(|| self.autohandle.next(|x| x == cur));
                if mq {
                    // Kernel: `mq_init()`: the default qdisc on every queue.
                    self.graft_root(&d, 0, |_| Ok(self.default_qdisc(txqlen, psched_mtu)))?;
                    d.set_mq_root(Some(h));
                    return Ok(());
                }
                let mut new = spec.build(txqlen, psched_mtu)?;
                new.set_handle(h);
                d.set_mq_root(None);
                let mut to_free = d.share_root(new, h);
                run::free_dropped(self.xmit_ctx(), &d, &mut to_free);
                Ok(())
            }
        }
    }

    /// Kernel: `tc_ctl_tclass()`: `tc class add|change|replace dev DEV
    /// [parent P] [classid C] SPEC` on the root qdisc (on a multi-queue
    /// device, on each queue's). Gives the kernel's warning, if any.
    pub fn class_modify(&self, dev: &str, req: &ClassRequest) -> Result<Option<String>, TcError> {
        let now = self.now();
        self.with_class_qdisc(dev, req.parent, req.classid, |q, clid, to_free| {
            class::modify(q, req, clid, now, to_free)
        })
    }

    /// Kernel: `tc_ctl_tclass()` for `RTM_DELTCLASS`: `tc class del dev
    /// DEV [parent P] classid C`; the class's packets dropped and counted.
    pub fn class_delete(&self, dev: &str, parent: u32, classid: u32) -> Result<(), TcError> {
        let now = self.now();
        self.with_class_qdisc(dev, parent, classid, |q, clid, to_free| {
            class::delete(q, clid, now, to_free)
        })
    }

    /// Runs `f` on the qdisc a class request addresses, anywhere in the
    /// tree (`qdisc_lookup()`; what it drops leaves every qdisc above it
    /// too), on every tree (the first answer is the result), freeing what
    /// it drops.
    fn with_class_qdisc<R>(
        &self,
        dev: &str,
        parent: u32,
        classid: u32,
        f: impl Fn(&mut dyn Qdisc, u32, &mut crate::sched::ToFree) -> Result<R, ClassError>,
    ) -> Result<R, TcError> {
        let d = self
            .device(dev)
            .map_err(|_| TcError::NoDevice(dev.to_owned()))?;
        let (root, _) = d.root_qdisc();
        let (qid, clid) = class::address(root, parent, classid)?;
        if d.mq_root().is_some() {
            return Err(ClassError::NotSupported.into());
        }
        let mut first = None;
        for txq in d.trees() {
            let mut to_free = crate::sched::ToFree::default();
            let rh = txq.qdisc_handle();
            let r = txq.with_qdisc_mut(|q| {
                let mut op = |q: &mut dyn Qdisc, _| f(q, clid, &mut to_free);
                graft::on_path(q, rh, qid, 0, &mut op).unwrap_or(Err(ClassError::NotFound))
            });
            run::free_dropped(self.xmit_ctx(), &d, &mut to_free);
            txq.ctl().schedule();
            match r {
                Err(e) => return Err(e.into()),
                Ok(v) if first.is_none() => first = Some(v),
                Ok(_) => {}
            }
        }
        first.ok_or(ClassError::NotFound.into())
    }

    /// The default qdisc of a queue (`net.core.default_qdisc`, else
    /// `pfifo_fast`).
    fn default_qdisc(&self, txqlen: u32, psched_mtu: u32) -> Box<dyn Qdisc> {
        let spec = self.sysctl.read().default_qdisc.clone();
        spec.build(txqlen, psched_mtu)
            .unwrap_or_else(|_| Box::new(crate::sched::PfifoFast::new(txqlen)))
    }

    /// Kernel: `tc_get_qdisc()` deleting `dev`'s root (`tc qdisc del dev
    /// DEV root [handle H:]`): the default qdisc comes back.
    pub fn qdisc_delete(&self, dev: &str, handle: Option<u32>) -> Result<(), TcError> {
        let d = self
            .device(dev)
            .map_err(|_| TcError::NoDevice(dev.to_owned()))?;
        api::check_delete(d.root_qdisc().0, handle)?;
        let (txqlen, psched_mtu) = (d.txqueuelen(), d.mtu() + d.link().header_len() as u32);
        self.graft_root(&d, 0, |_| Ok(self.default_qdisc(txqlen, psched_mtu)))?;
        d.set_mq_root((d.queues().len() > 1).then_some(0));
        Ok(())
    }

    /// Kernel: `qdisc_graft()` at the root: on every transmit queue the
    /// qdisc `make` builds, of handle `handle`; the packets of the old one
    /// dropped and counted.
    fn graft_root(
        &self,
        d: &Arc<NetDevice>,
        handle: u32,
        make: impl Fn(usize) -> Result<Box<dyn Qdisc>, crate::sched::SpecError>,
    ) -> Result<(), TcError> {
        // Built first, so that a refused one leaves the device as it was.
        let mut new = (0..d.queues().len())
            .map(&make)
            .collect::<Result<Vec<_>, _>>()?;
        for q in &mut new {
            q.set_handle(handle);
        }
        for (i, q) in new.into_iter().enumerate() {
            // `i` is one of the device's queues: the replacement is made.
            if let Ok(mut to_free) = d.replace_qdisc(i, q, handle) {
                run::free_dropped(self.xmit_ctx(), d, &mut to_free);
            }
        }
        Ok(())
    }

    /// Kernel: `tc_modify_qdisc()` anywhere in the tree: `parent` is
    /// `TC_H_ROOT` for the root ([`Stack::qdisc_modify`]), a class (`tc
    /// qdisc add dev D parent 1:10 handle 10: fq_codel`), or 0 with a
    /// handle: the qdisc of that handle, changed in place.
    pub fn qdisc_modify_at(
        &self,
        dev: &str,
        parent: u32,
        op: QdiscOp,
        handle: Option<u32>,
        spec: &QdiscSpec,
    ) -> Result<(), TcError> {
        if parent == class::TC_H_ROOT {
            return self.qdisc_modify(dev, op, handle, spec);
        }
        let d = self
            .device(dev)
            .map_err(|_| TcError::NoDevice(dev.to_owned()))?;
        if parent == 0 {
            return self.change_by_handle(&d, op, handle, spec);
        }
        let root = d.root_qdisc().0;
        if d.mq_root().is_some() && parent & 0xffff_0000 == root {
            return self.mq_graft(&d, parent, op, handle, spec);
        }
        let req = graft::GraftReq {
            clid: parent,
            op,
            handle,
            spec,
            txqlen: d.txqueuelen(),
            psched_mtu: d.mtu() + d.link().header_len() as u32,
            auto: self.autohandle.next(|x| x == root),
        };
        self.on_trees(&d, |q, h, to_free| graft::modify(q, h, &req, to_free))
    }

    /// Kernel: `tc_get_qdisc()` deleting anywhere in the tree: the root
    /// ([`Stack::qdisc_delete`]) or the qdisc on class `parent` (the
    /// class's default comes back).
    pub fn qdisc_delete_at(
        &self,
        dev: &str,
        parent: u32,
        handle: Option<u32>,
    ) -> Result<(), TcError> {
        if parent == class::TC_H_ROOT {
            return self.qdisc_delete(dev, handle);
        }
        let d = self
            .device(dev)
            .map_err(|_| TcError::NoDevice(dev.to_owned()))?;
        if parent == 0 {
            // Kernel: found by handle, then refused for want of a parent.
            let h = handle.unwrap_or(0);
            return self.on_trees(&d, |q, rh, _| match graft::find(q, rh, h, 0) {
                Some(_) => Err(TcError::ClassidZero),
                None => Err(TcError::HandleNotFound),
            });
        }
        if d.mq_root().is_some_and(|h| parent & 0xffff_0000 == h) {
            return self.mq_ungraft(&d, parent, handle);
        }
        self.on_trees(&d, |q, h, to_free| {
            graft::delete(q, h, parent, handle, to_free)
        })
    }

    /// Kernel: the by-handle branch of `tc_modify_qdisc()`: the qdisc of
    /// `handle`, its parameters changed.
    fn change_by_handle(
        &self,
        d: &Arc<NetDevice>,
        op: QdiscOp,
        handle: Option<u32>,
        spec: &QdiscSpec,
    ) -> Result<(), TcError> {
        let h = handle.ok_or(TcError::HandleZero)?;
        let (txqlen, psched_mtu) = (d.txqueuelen(), d.mtu() + d.link().header_len() as u32);
        self.on_trees(d, |root, rh, to_free| {
            graft::netem_check(root, rh, Some(h), spec)?;
            let mut change = |q: &mut dyn Qdisc, _| {
                if op == QdiscOp::Add {
                    return Err(TcError::Exclusive);
                }
                if q.kind() != spec.kind() {
                    return Err(TcError::KindMismatch);
                }
                spec.change(q, txqlen, psched_mtu, to_free)?;
                Ok(())
            };
            graft::on_path(root, rh, h, 0, &mut change).ok_or(TcError::QdiscNotFound)?
        })
    }

    /// Under an `mq` root: the qdisc of queue `minor - 1`, as a root of
    /// its own (`mq_graft()`).
    fn mq_graft(
        &self,
        d: &Arc<NetDevice>,
        parent: u32,
        op: QdiscOp,
        handle: Option<u32>,
        spec: &QdiscSpec,
    ) -> Result<(), TcError> {
        let i = (parent & 0xffff) as usize;
        let txq = d
            .queues()
            .get(i.wrapping_sub(1))
            .ok_or(TcError::ClassNotFound)?;
        let cur = txq.qdisc_handle();
        let kind = txq.with_qdisc(|q| q.kind());
        let root = (cur != 0).then_some(api::Root { handle: cur, kind });
        let (txqlen, psched_mtu) = (d.txqueuelen(), d.mtu() + d.link().header_len() as u32);
        match api::decide(root, op, handle, spec.kind())? {
            RootAction::Change => {
                let mut to_free = crate::sched::ToFree::default();
                let r = txq.with_qdisc_mut(|q| spec.change(q, txqlen, psched_mtu, &mut to_free));
                run::free_dropped(self.xmit_ctx(), d, &mut to_free);
                r.map(|_| ()).map_err(TcError::Spec)
            }
            RootAction::Create(h) => {
                let h = h.unwrap_or_else(|| self.autohandle.next(|x| x == cur));
                let mut new = spec.build(txqlen, psched_mtu)?;
                new.set_handle(h);
                if let Ok(mut to_free) = d.replace_qdisc(i - 1, new, h) {
                    run::free_dropped(self.xmit_ctx(), d, &mut to_free);
                }
                Ok(())
            }
        }
    }

    /// Under an `mq` root: deleting queue `minor - 1`'s qdisc. (The
    /// kernel leaves `noop_qdisc` there, which drops every packet; here
    /// the default qdisc comes back.)
    fn mq_ungraft(
        &self,
        d: &Arc<NetDevice>,
        parent: u32,
        handle: Option<u32>,
    ) -> Result<(), TcError> {
        let i = (parent & 0xffff) as usize;
        let txq = d
            .queues()
            .get(i.wrapping_sub(1))
            .ok_or(TcError::ClassNotFound)?;
        api::check_delete(txq.qdisc_handle(), handle)?;
        let (txqlen, psched_mtu) = (d.txqueuelen(), d.mtu() + d.link().header_len() as u32);
        if let Ok(mut to_free) = d.replace_qdisc(i - 1, self.default_qdisc(txqlen, psched_mtu), 0) {
            run::free_dropped(self.xmit_ctx(), d, &mut to_free);
        }
        Ok(())
    }

    /// Runs `f` on every tree of the device (root qdisc and its handle:
    /// the shared root, or under `mq` each queue's); the first answer is
    /// the result. What it drops is counted
    /// and freed, and the queue is run again.
    fn on_trees<R>(
        &self,
        d: &Arc<NetDevice>,
        f: impl Fn(&mut dyn Qdisc, u32, &mut crate::sched::ToFree) -> Result<R, TcError>,
    ) -> Result<R, TcError> {
        let mut first = None;
        for txq in d.trees() {
            let h = txq.qdisc_handle();
            let mut to_free = crate::sched::ToFree::default();
            let r = txq.with_qdisc_mut(|q| f(q, h, &mut to_free));
            run::free_dropped(self.xmit_ctx(), d, &mut to_free);
            txq.ctl().schedule();
            match r {
                Err(e) => return Err(e),
                Ok(v) if first.is_none() => first = Some(v),
                Ok(_) => {}
            }
        }
        first.ok_or(TcError::QdiscNotFound)
    }

    /// Kernel: `tc_new_tfilter()`: `tc filter add dev DEV [parent P]
    /// ... KIND ...` on the filters of the qdisc `parent` names (0 or
    /// `TC_H_ROOT`: the root), or of its class `parent` (`1:1`: an htb
    /// class's own filters).
    pub fn filter_add(&self, dev: &str, parent: u32, spec: &FilterSpec) -> Result<(), TcError> {
        self.on_filters(dev, parent, |c| c.add(spec))
    }

    /// Kernel: `tc_del_tfilter()`: the filters of preference `pref` (all
    /// of them for 0), or the one of `handle`, on the qdisc `parent` names.
    pub fn filter_delete(
        &self,
        dev: &str,
        parent: u32,
        pref: u32,
        handle: u32,
    ) -> Result<(), TcError> {
        self.on_filters(dev, parent, |c| c.delete(pref, handle))
    }

    /// Kernel: `tcf_block_find()`: runs `f` on the filter chain `parent`
    /// names (a qdisc's, or a class's), in every tree of the device.
    fn on_filters(
        &self,
        dev: &str,
        parent: u32,
        f: impl Fn(&mut FilterChain) -> Result<(), FilterError>,
    ) -> Result<(), TcError> {
        let d = self
            .device(dev)
            .map_err(|_| TcError::NoDevice(dev.to_owned()))?;
        self.on_trees(&d, |root, rh, _| {
            let (h, cl) = match parent {
                0 | class::TC_H_ROOT => (rh, 0),
                p => (p & 0xffff_0000, p & 0xffff),
            };
            let (q, _) = graft::find(root, rh, h, 0).ok_or(FilterError::NoParent)?;
            f(block_of(q, h | cl, cl != 0)?).map_err(TcError::Filter)
        })
    }
}

/// Kernel: `__tcf_qdisc_find()`, `__tcf_qdisc_cl_find()` and
/// `cops->tcf_block()`: the filters of qdisc `q`, or (`class`) of its
/// class `id`.
fn block_of(q: &mut dyn Qdisc, id: u32, class: bool) -> Result<&mut FilterChain, FilterError> {
    if !q.classful() {
        return Err(FilterError::NotClassful);
    }
    if q.filters().is_none() {
        return Err(FilterError::NoBlock);
    }
    if !class {
        return q.filters_mut().ok_or(FilterError::NoBlock);
    }
    if !q.class_find(id) {
        return Err(FilterError::NoClass);
    }
    q.class_filters_mut(id).ok_or(FilterError::ClassNoBlock)
}

impl Stack {
    /// Kernel: `gen_replace_estimator()` / `gen_kill_estimator()`: starts
    /// (or with `None` stops) the rate estimator of a qdisc or class on
    /// `dev` (`tc ... estimator 1sec 8sec`), from its counters now.
    pub fn set_estimator(
        &self,
        dev: &str,
        target: EstTarget,
        spec: Option<EstimatorSpec>,
    ) -> Result<(), TcError> {
        let d = self
            .device(dev)
            .map_err(|_| TcError::NoDevice(dev.to_owned()))?;
        let now = self.now();
        let counters = est_counters(&d, target);
        if spec.is_some() && counters.is_none() {
            return Err(TcError::QdiscNotFound);
        }
        let mut all = self.estimators.lock();
        let i = match all.iter().position(|(ix, _)| *ix == d.ifindex()) {
            Some(i) => i,
            None => {
                all.push((d.ifindex(), Default::default()));
                all.len() - 1
            }
        };
        all[i]
            .1
            .set(target, spec, now, counters.unwrap_or_default());
        self.est_rearm(&all);
        Ok(())
    }

    /// The handle of the qdisc on class `parent` of `dev` (under `mq`, on
    /// queue `parent`'s minor), `None` when there is no such class.
    pub fn leaf_handle(&self, dev: &str, parent: u32) -> Option<u32> {
        let d = self.device(dev).ok()?;
        if d.mq_root().is_some_and(|h| h == parent & 0xffff_0000) {
            let i = ((parent & 0xffff) as usize).checked_sub(1)?;
            return d.queues().get(i).map(|q| q.qdisc_handle());
        }
        let r = self.on_trees(&d, |root, rh, _| {
            let (q, _) =
                graft::find(root, rh, parent & 0xffff_0000, 0).ok_or(TcError::QdiscNotFound)?;
            q.leaf_mut(parent)
                .map(|(h, _)| h)
                .ok_or(TcError::QdiscNotFound)
        });
        r.ok()
    }

    /// The rate estimates of `dev`'s qdiscs and classes, as of now: each
    /// target with its bytes and packets per second (`gen_estimator_read`).
    pub fn rate_estimates(&self, dev: &NetDevice) -> Vec<(EstTarget, (u64, u64))> {
        let _ = self.xmit_ctx();
        let all = self.estimators.lock();
        all.iter()
            .find(|(ix, _)| *ix == dev.ifindex())
            .map(|(_, e)| e.all())
            .unwrap_or_default()
    }

    /// Takes every estimator sample due by `now` (`est_timer`).
    pub(crate) fn estimate(&self, now: Instant) {
        // Another thread taking them is as good.
        let Some(mut all) = self.estimators.try_lock() else {
            return;
        };
        for (ix, ests) in all.iter_mut() {
            let dev = self
                .devices
                .read()
                .iter()
                .find(|d| d.ifindex() == *ix)
                .cloned();
            match dev {
                Some(d) => ests.catch_up(now, |t| est_counters(&d, t)),
                None => *ests = Default::default(),
            }
        }
        self.est_rearm(&all);
    }

    /// Records when the next estimator sample is due.
    fn est_rearm(&self, all: &[(u32, Estimators)]) {
        let due = all
            .iter()
            .map(|(_, e)| e.next_due())
            .min()
            .unwrap_or(est::NEVER);
        self.est_due
            .store(due, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The byte and packet counters an estimator of `target` samples: the
/// qdisc's (an `mq` root's: its queues' summed), or the class's; `None`
/// when `d` has no such qdisc or class.
fn est_counters(d: &NetDevice, target: EstTarget) -> Option<(u64, u64)> {
    let (h, cl) = match target {
        EstTarget::Qdisc(h) => (h, None),
        EstTarget::Class(c) => (c & 0xffff_0000, Some(c)),
    };
    if d.mq_root() == Some(h) {
        let trees = d.trees().iter();
        let stats: Vec<_> = trees.map(|q| q.with_qdisc(|q| *q.stats())).collect();
        return match cl {
            None => Some(
                stats
                    .iter()
                    .fold((0, 0), |a, s| (a.0 + s.bytes, a.1 + s.packets)),
            ),
            Some(c) => stats
                .get(((c & 0xffff) as usize).wrapping_sub(1))
                .map(|s| (s.bytes, s.packets)),
        };
    }
    d.trees().iter().find_map(|txq| {
        let rh = txq.qdisc_handle();
        txq.with_qdisc_mut(|root| {
            let (q, _) = graft::find(root, rh, h, 0)?;
            match cl {
                None => Some((q.stats().bytes, q.stats().packets)),
                Some(c) => q
                    .class_show(c, false)
                    .map(|s| (s.stats.bytes, s.stats.packets)),
            }
        })
    })
}
