//! The qdisc run loop.
//!
//! Stands for `__qdisc_run`, `qdisc_restart`, `dequeue_skb` (with bulk dequeue),
//! `sch_direct_xmit`, `dev_requeue_skb` (`net/sched/sch_generic.c`) and
//! `net_tx_action` (`net/core/dev.c`). One caller at a time owns a queue's run
//! (`qdisc_run_begin`, the `running` flag, taken and released under the qdisc
//! lock so an enqueuer that finds it taken can rely on the owner to send its
//! packet). The owner dequeues a batch under the lock, drops the lock, validates
//! the batch and hands it to the driver with `xmit_more` hints, puts back what
//! the driver refused (`requeues`) and reschedules the queue (the driver stops
//! its queue when it refuses, and wakes it: the run loop never stops a queue
//! itself, which could undo a wake-up that came in between), and repeats until
//! the qdisc is empty, throttled, stopped, or the quota of [`DEV_TX_WEIGHT`]
//! packets is used — then it reschedules the queue for deferred work
//! (`__netif_schedule`). A batch of frames enqueued one by one
//! (`crate::dev::batch`) starts each run under the lock of its enqueue and
//! keeps a run that emptied the qdisc until its next frame (`run_owned`):
//! one lock per frame, the same enqueues and dequeues.

use std::collections::VecDeque;

use crate::buf::PacketBuf;
use crate::dev::queue::XmitCtx;
use crate::dev::xmit::{drop_qdisc_frame, hard_start_xmit, validate_xmit, TxCount};
use crate::dev::{NetDevice, QdiscSlot, TxQueue};
use crate::sched::{Dequeued, ToFree};

/// Packets one qdisc run may send before yielding (`dev_tx_weight`, 64).
pub const DEV_TX_WEIGHT: usize = 64;

/// Counts and frees the packets a qdisc dropped (`kfree_skb_list_reason`).
pub(crate) fn free_dropped(ctx: XmitCtx<'_>, dev: &NetDevice, to_free: &mut ToFree) {
    for (pkt, reason) in to_free.drain() {
        drop_qdisc_frame(ctx, dev, pkt, reason);
    }
}

/// The end of a bypass (`qdisc_run_end` or going on with `__qdisc_run`):
/// with everything sent and the queue not stopped, run the qdisc for what
/// others queued meanwhile; otherwise give the run up (a stopped queue's
/// wake-up reschedules it).
pub(crate) fn end_bypass(
    ctx: XmitCtx<'_>,
    dev: &NetDevice,
    txq: &TxQueue,
    mut slot: parking_lot::MutexGuard<'_, QdiscSlot>,
    all_sent: bool,
) {
    if all_sent && !slot.is_empty() {
        let mut tx = TxCount::default();
        run_locked(ctx, (dev, txq), slot, &mut tx, None);
        tx.settle(dev);
    } else {
        slot.running = false;
    }
}

/// Kernel: `sch_direct_xmit()`, net/sched/sch_generic.c. Sends `frames`
/// through `txq`'s driver unless that queue is stopped; requeues what was
/// not sent on the qdisc of `root` (the queue whose qdisc they came from).
/// Counts what the driver took in `tx` (settled by the caller). Returns
/// true when the caller should keep running the qdisc (all sent and the
/// queue not stopped).
#[inline]
pub fn direct_xmit(
    ctx: XmitCtx<'_>,
    dev: &NetDevice,
    (root, txq): (&TxQueue, &TxQueue),
    frames: &mut VecDeque<PacketBuf>,
    tx: &mut TxCount,
) -> bool {
    if !txq.ctl().is_stopped() {
        let mut driver = txq.tx_lock();
        hard_start_xmit(ctx, dev, txq, &mut driver, frames, tx);
    }
    if frames.is_empty() {
        return !txq.ctl().is_stopped();
    }
    requeue(root, &mut root.q.lock(), frames);
    false
}

/// Kernel: `dev_requeue_skb()`. Puts refused frames back in front of
/// `txq`'s qdisc (its `slot`, locked), in order, and reschedules the queue:
/// a stopped queue ends the next run at once (its wake-up runs it again), a
/// busy one is tried again.
pub(crate) fn requeue(txq: &TxQueue, slot: &mut QdiscSlot, frames: &mut VecDeque<PacketBuf>) {
    while let Some(p) = frames.pop_back() {
        let st = slot.qdisc.stats_mut();
        st.requeues += 1;
        st.queued(p.len());
        slot.requeued.push_front(p);
    }
    txq.ctl().schedule();
}

/// Kernel: `dequeue_skb()` with bulk dequeue (`try_bulk_dequeue_skb`) for a
/// qdisc that serves one queue. Fills `frames` with up to `max` packets:
/// the requeued ones first, then from the qdisc, under byte queue limits
/// (`bytes`, `qdisc_avail_bulklimit`) only while the room left after the
/// first is not used up. Records a throttle time. (The kernel takes
/// requeued packets one per run, and from the qdisc of a driver without
/// byte queue limits one at a time; here they go to the driver together,
/// with `xmit_more`.)
fn dequeue_batch(
    slot: &mut QdiscSlot,
    ctx: XmitCtx<'_>,
    frames: &mut VecDeque<PacketBuf>,
    (max, bytes): (usize, Option<i64>),
) {
    let mut room = bytes.unwrap_or(i64::MAX);
    while frames.len() < max {
        if let Some(p) = slot.requeued.pop_front() {
            slot.qdisc.stats_mut().unqueued(p.len());
            room -= p.len() as i64;
            frames.push_back(p);
            continue;
        }
        if room <= 0 && !frames.is_empty() {
            break;
        }
        if !dequeue_one(slot, ctx, frames) {
            break;
        }
        room -= frames.back().map_or(0, |p| p.len() as i64);
    }
}

/// One packet from the qdisc into `frames`; false when it is empty or
/// throttled (the throttle time recorded).
#[inline]
fn dequeue_one(slot: &mut QdiscSlot, ctx: XmitCtx<'_>, frames: &mut VecDeque<PacketBuf>) -> bool {
    match slot.qdisc.dequeue(ctx.now) {
        Dequeued::Packet(p) => {
            frames.push_back(p);
            true
        }
        Dequeued::Empty => false,
        Dequeued::Throttled(t) => {
            slot.set_watchdog(Some(t));
            false
        }
    }
}

/// Packets one dequeue of a qdisc shared by several queues takes at most
/// (`try_bulk_dequeue_skb_slow()`'s 8).
const SHARED_BULK: usize = 8;

/// The transmit queue a frame was mapped to (`skb_get_tx_queue`).
fn txq_of<'a>(dev: &'a NetDevice, p: &PacketBuf) -> &'a TxQueue {
    let i = (p.meta.queue_mapping as usize).saturating_sub(1);
    dev.queues().get(i).unwrap_or(&dev.queues()[0])
}

/// Kernel: `dequeue_skb()` for a qdisc shared by several queues: a
/// requeued frame, else the one put aside for another queue
/// (`qdisc_dequeue_skb_bad_txq`), each only when its queue is not
/// stopped, else from the qdisc; then more while they are for the same
/// queue (`try_bulk_dequeue_skb_slow`), the first for another put aside.
fn dequeue_shared(
    slot: &mut QdiscSlot,
    ctx: XmitCtx<'_>,
    dev: &NetDevice,
    frames: &mut VecDeque<PacketBuf>,
) {
    if let Some(p) = slot.requeued.front() {
        let m = p.meta.queue_mapping;
        while let Some(p) = slot.requeued.pop_front() {
            if p.meta.queue_mapping != m
                || frames.len() >= SHARED_BULK
                || txq_of(dev, &p).ctl().is_stopped()
            {
                slot.requeued.push_front(p);
                break;
            }
            slot.qdisc.stats_mut().unqueued(p.len());
            frames.push_back(p);
        }
        return;
    }
    if let Some(p) = slot.bad_txq.take() {
        if txq_of(dev, &p).ctl().is_stopped() {
            slot.bad_txq = Some(p);
            return;
        }
        slot.qdisc.stats_mut().unqueued(p.len());
        frames.push_back(p);
    } else if !dequeue_one(slot, ctx, frames) {
        return;
    }
    let m = frames[0].meta.queue_mapping;
    while frames.len() < SHARED_BULK && dequeue_one(slot, ctx, frames) {
        if frames.back().is_some_and(|p| p.meta.queue_mapping != m) {
            // Kernel: `qdisc_enqueue_skb_bad_txq()`, still counted queued.
            let p = frames.pop_back().expect("just pushed");
            slot.qdisc.stats_mut().queued(p.len());
            slot.bad_txq = Some(p);
            break;
        }
    }
}

/// Tracepoint `qdisc_dequeue` (`include/trace/events/qdisc.h`): `packets`
/// dequeued (0: none) from the qdisc `handle` of `root`, whose parent is
/// the root (`TC_H_ROOT`) or, under `mq`, the queue's class of it.
#[cold]
#[inline(never)]
fn qdisc_dequeue(dev: &NetDevice, root: &TxQueue, handle: u32, packets: usize) {
    let parent = match dev.mq_root() {
        Some(mq) => mq | (u32::from(root.index()) + 1),
        None => u32::MAX,
    };
    tracing::debug!(
        name: "qdisc_dequeue",
        target: crate::trace::QDISC,
        dev = %dev.name(),
        ifindex = dev.ifindex(),
        handle = format_args!("{handle:#x}"),
        parent = format_args!("{parent:#x}"),
        txq_state = format_args!("{:#x}", root.ctl().state()),
        packets,
        "qdisc_dequeue"
    );
}

/// A locked qdisc slot (the kernel's root lock held).
type SlotGuard<'a> = parking_lot::MutexGuard<'a, QdiscSlot>;

/// Where a run's frame buffer goes when a restart empties the qdisc and
/// the driver takes every frame: `None`, back to the slot under the lock
/// that sees the qdisc empty (the run given up there); a batch's holder
/// ([`run_owned`]), kept with the run's ownership for the batch's next
/// frame.
type Keep<'k> = Option<&'k mut Option<VecDeque<PacketBuf>>>;

/// How a [`restart`] ended.
enum Restart<'a> {
    /// Packets were sent and more wait: the lock, held, for the next one.
    Again(usize, SlotGuard<'a>),
    /// The run is over: given up (false) or kept by the batch (true).
    Ended(bool),
}

/// `qdisc_restart()`'s dequeue, under the qdisc lock (`slot`, of
/// `root`): up to `budget` frames into the slot's frame buffer, and
/// what the qdisc dropped meanwhile counted and freed.
fn dequeue_locked(
    ctx: XmitCtx<'_>,
    (dev, root): (&NetDevice, &TxQueue),
    budget: usize,
    slot: &mut QdiscSlot,
) -> VecDeque<PacketBuf> {
    let mut frames = slot.take_batch();
    if slot.shared {
        dequeue_shared(slot, ctx, dev, &mut frames);
    } else {
        dequeue_batch(slot, ctx, &mut frames, (budget, root.ctl().bulk_limit()));
    }
    if tracing::level_enabled!(tracing::Level::DEBUG) {
        qdisc_dequeue(dev, root, slot.handle, frames.len());
    }
    let QdiscSlot { qdisc, to_free, .. } = slot;
    qdisc.take_dropped(to_free);
    if !to_free.is_empty() {
        free_dropped(ctx, dev, to_free);
    }
    frames
}

/// Kernel: `qdisc_restart()`. Dequeues a batch from the qdisc of `root`
/// (locked: `slot`) and sends it (on `root`, or under a shared qdisc on
/// the queue the frames were mapped to), counting what the driver took in
/// `tx`. On stop, run ownership is released under the same lock that saw
/// the queue empty — unless `keep` takes it (see [`Keep`]).
fn restart<'a>(
    ctx: XmitCtx<'_>,
    (dev, root): (&NetDevice, &'a TxQueue),
    budget: usize,
    mut slot: SlotGuard<'a>,
    (tx, keep): (&mut TxCount, Keep<'_>),
) -> Restart<'a> {
    let shared = slot.shared;
    if !shared && root.ctl().is_stopped() {
        slot.running = false;
        return Restart::Ended(false);
    }
    let mut frames = dequeue_locked(ctx, (dev, root), budget, &mut slot);
    let n = frames.len();
    if n == 0 {
        slot.put_batch(frames);
        slot.running = false;
        return Restart::Ended(false);
    }
    let drained = slot.is_empty();
    drop(slot);
    let txq = if shared {
        txq_of(dev, &frames[0])
    } else {
        root
    };
    for _ in 0..n {
        if let Some(p) = frames.pop_front() {
            validate_xmit(ctx, dev, p, &mut frames);
        }
    }
    let sent = direct_xmit(ctx, dev, (root, txq), &mut frames, tx);
    if let (Some(k), true) = (keep, sent && drained) {
        // Empty when dequeued from, everything sent: the owner's next
        // frame (or its end) runs the qdisc for what came meanwhile.
        *k = Some(frames);
        return Restart::Ended(true);
    }
    let mut slot = root.q.lock();
    slot.put_batch(frames);
    // Under the lock that puts the buffer back: an empty qdisc ends the run
    // here (the next restart would only find it empty); an enqueuer that
    // comes later finds the run free and starts its own.
    if sent && !slot.is_empty() {
        return Restart::Again(n, slot);
    }
    slot.running = false;
    Restart::Ended(false)
}

/// Kernel: `__qdisc_run()` from the lock `slot` of `txq`'s qdisc, whose
/// run the caller owns. Sends until the queue is empty, stopped or
/// throttled, or the quota is used (then reschedules). True when `keep`
/// kept the run.
fn run_locked<'a>(
    ctx: XmitCtx<'_>,
    (dev, txq): (&NetDevice, &'a TxQueue),
    mut slot: SlotGuard<'a>,
    tx: &mut TxCount,
    mut keep: Keep<'_>,
) -> bool {
    let mut quota = DEV_TX_WEIGHT;
    loop {
        let k = keep.as_deref_mut();
        match restart(ctx, (dev, txq), quota, slot, (tx, k)) {
            Restart::Ended(kept) => return kept,
            Restart::Again(n, s) => {
                slot = s;
                quota = quota.saturating_sub(n);
                if quota == 0 {
                    slot.running = false;
                    txq.ctl().schedule();
                    return false;
                }
            }
        }
    }
}

/// Kernel: `__qdisc_run()`. The caller owns the run of `txq`'s qdisc (`txq`
/// is the queue that holds it). Sends until the queue is
/// empty, stopped or throttled, or the quota is used (then reschedules).
pub fn run(ctx: XmitCtx<'_>, dev: &NetDevice, txq: &TxQueue) {
    let mut tx = TxCount::default();
    run_locked(ctx, (dev, txq), txq.q.lock(), &mut tx, None);
    tx.settle(dev);
}

/// `__qdisc_run()` for a batch that just enqueued under `slot` (the lock
/// of `txq`'s qdisc) and owns the run: the first dequeue under that same
/// lock, the frames the driver took counted in the batch's `tx`. When a
/// restart empties the qdisc and sends everything, the batch keeps the
/// run with its frame buffer in `held` (true returned): its next frame
/// runs the qdisc again, as an enqueue that finds the run free would, and
/// [`end_owned`] ends it. Otherwise the run ends as [`run`]'s does.
pub(crate) fn run_owned<'a>(
    ctx: XmitCtx<'_>,
    (dev, txq): (&NetDevice, &'a TxQueue),
    slot: SlotGuard<'a>,
    tx: &mut TxCount,
    held: &mut Option<VecDeque<PacketBuf>>,
) -> bool {
    run_locked(ctx, (dev, txq), slot, tx, Some(held))
}

/// The end of a run a batch kept ([`run_owned`]): its frame buffer back
/// in the slot, and the qdisc run for what others queued meanwhile, or
/// the run given up (`qdisc_run_end`).
pub(crate) fn end_owned(
    ctx: XmitCtx<'_>,
    (dev, txq): (&NetDevice, &TxQueue),
    frames: VecDeque<PacketBuf>,
    tx: &mut TxCount,
) {
    let mut slot = txq.q.lock();
    slot.put_batch(frames);
    if slot.is_empty() {
        slot.running = false;
        return;
    }
    run_locked(ctx, (dev, txq), slot, tx, None);
}

/// Runs a queue's qdisc if nobody else does (`qdisc_run`): used by
/// deferred work. Returns false when another owner is running it.
pub fn try_run(ctx: XmitCtx<'_>, dev: &NetDevice, txq: &TxQueue) -> bool {
    let root = {
        let (root, mut slot) = dev.root_slot(txq);
        if slot.running {
            return false;
        }
        if let Some(t) = slot.watchdog() {
            if t > ctx.now {
                return true;
            }
            slot.set_watchdog(None);
        }
        slot.running = true;
        root
    };
    run(ctx, dev, root);
    true
}
