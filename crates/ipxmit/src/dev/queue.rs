//! `dev_queue_xmit`: choosing a transmit queue and handing a frame to its qdisc.
//!
//! Stands for `__dev_queue_xmit`, `netdev_core_pick_tx`/`netdev_pick_tx`,
//! `skb_tx_hash` and `__dev_xmit_skb` in `net/core/dev.c`: a frame goes to the
//! queue picked by its socket or flow hash; an empty qdisc that allows it is
//! bypassed (`TCQ_F_CAN_BYPASS`, straight to `sch_direct_xmit`), otherwise the frame
//! is enqueued and whoever wins `qdisc_run_begin` runs the queue. A `noqueue` device
//! transmits directly and drops what the driver refuses.

use std::collections::VecDeque;

use crate::buf::{GsoType, PacketBuf};
use crate::dev::{NetDevice, TxQueue, TxStatus};
use crate::sched::{run, NetXmit};
use crate::stats::{Counters, DropReason};
use crate::time::Instant;

/// What the transmit path needs from the stack: counters and the time.
#[derive(Clone, Copy, Debug)]
pub struct XmitCtx<'a> {
    /// Where drops are counted.
    pub counters: &'a Counters,
    /// The current time.
    pub now: Instant,
    /// Buffers for frames made on the way (software segmentation).
    pub pool: &'a crate::buf::BufPool,
}

/// Errors of `dev_queue_xmit` (the packet is consumed either way, as in the kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueXmitError {
    /// The device is down (`ENETDOWN`).
    #[error("network is down")]
    NetDown,
    /// The qdisc dropped the packet (`NET_XMIT_DROP`, reported as `ENOBUFS`).
    #[error("no buffer space available (dropped by qdisc)")]
    Dropped,
}

/// `reciprocal_scale`: maps a 32-bit hash onto `0..n` without a division.
#[inline]
pub fn reciprocal_scale(hash: u32, n: u32) -> u32 {
    ((hash as u64 * n as u64) >> 32) as u32
}

/// Picks the transmit queue (`netdev_pick_tx`): the only queue, else the one the
/// socket recorded in `queue_mapping` (+1, 0 meaning unset, as
/// `sk_tx_queue_mapping`), else one chosen by flow hash (`skb_tx_hash`).
#[inline]
pub fn pick_tx<'d>(dev: &'d NetDevice, pkt: &mut PacketBuf) -> &'d TxQueue {
    let queues = dev.queues();
    let idx = queue_index(queues.len(), pkt.meta.queue_mapping, pkt.meta.hash);
    pkt.meta.queue_mapping = idx as u16 + 1;
    &queues[idx]
}

/// The queue `pick_tx` chooses among `n` for a buffer with this
/// `queue_mapping` (+1, 0 unset) and flow hash.
#[inline]
pub(crate) fn queue_index(n: usize, queue_mapping: u16, hash: u32) -> usize {
    if n == 1 {
        0
    } else if queue_mapping != 0 && (queue_mapping as usize) <= n {
        queue_mapping as usize - 1
    } else {
        reciprocal_scale(hash, n as u32) as usize
    }
}

/// Kernel: `__dev_queue_xmit()`, net/core/dev.c. Transmits `pkt` (its link header
/// already in place) on `dev`.
pub fn queue_xmit(
    ctx: XmitCtx<'_>,
    dev: &NetDevice,
    mut pkt: PacketBuf,
) -> Result<NetXmit, QueueXmitError> {
    if !dev.is_up() {
        ctx.counters.drop(DropReason::DevReady);
        dev.stats.add(crate::stats::DevCounter::TxDropped, 1);
        return Err(QueueXmitError::NetDown);
    }
    // IFF_XMIT_DST_RELEASE: nothing below needs the route.
    pkt.meta.dst = None;
    let txq = pick_tx(dev, &mut pkt);
    let mut slot = txq.q.lock();
    if slot.qdisc.is_noqueue() {
        drop(slot);
        return noqueue_xmit(ctx, dev, txq, pkt);
    }
    if slot.can_bypass_now() {
        slot.running = true;
        slot.qdisc.stats_mut().sent(pkt.len());
        let frames = std::mem::take(&mut slot.batch);
        drop(slot);
        run::bypass(ctx, dev, txq, pkt, frames);
        return Ok(NetXmit::Success);
    }
    let s = &mut *slot;
    let rc = s.qdisc.enqueue(pkt, ctx.now, &mut s.to_free);
    run::free_dropped(ctx, dev, &mut s.to_free);
    let start = !s.running;
    s.running = true;
    drop(slot);
    if start {
        run::run(ctx, dev, txq);
    }
    match rc {
        NetXmit::Drop => Err(QueueXmitError::Dropped),
        other => Ok(other),
    }
}

/// The `q->enqueue == NULL` branch of `__dev_queue_xmit`: straight to the
/// driver; a busy driver on a queueless device means the frame is dropped.
fn noqueue_xmit(
    ctx: XmitCtx<'_>,
    dev: &NetDevice,
    txq: &TxQueue,
    pkt: PacketBuf,
) -> Result<NetXmit, QueueXmitError> {
    if txq.ctl().is_stopped() {
        ctx.counters.drop(DropReason::DevReady);
        dev.stats.add(crate::stats::DevCounter::TxDropped, 1);
        return Err(QueueXmitError::NetDown);
    }
    let mut frames = std::mem::take(&mut txq.q.lock().batch);
    crate::dev::xmit::validate_xmit(ctx, dev, pkt, &mut frames);
    let mut driver = txq.driver.lock();
    let mut busy = false;
    while let Some(p) = frames.pop_front() {
        let more = !frames.is_empty();
        if busy {
            crate::dev::xmit::drop_frame(ctx, dev, p, DropReason::DevReady);
            continue;
        }
        if let TxStatus::Busy(p) = crate::dev::xmit::xmit_one(ctx, dev, &mut **driver, p, more) {
            driver.flush();
            crate::dev::xmit::drop_frame(ctx, dev, p, DropReason::DevReady);
            busy = true;
        }
    }
    drop(driver);
    txq.q.lock().batch = frames;
    if busy {
        Err(QueueXmitError::NetDown)
    } else {
        Ok(NetXmit::Success)
    }
}

/// How a list of frames fared in [`queue_xmit_list`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListXmit {
    /// Frames accepted (sent or queued), from the front of the list.
    pub accepted: usize,
    /// Why the frame after them was refused, if one was; the ones after it
    /// were not offered (the kernel stops a fragment train at the first error).
    pub error: Option<QueueXmitError>,
}

/// `dev_queue_xmit` for a train of frames of one flow (the fragments of one
/// datagram, link headers in place), in order: one queue choice, one qdisc
/// decision and — when the qdisc can be bypassed — one pass through the driver
/// with `xmit_more` set on all but the last. Frames are taken from `frames`.
pub fn queue_xmit_list(
    ctx: XmitCtx<'_>,
    dev: &NetDevice,
    frames: &mut VecDeque<PacketBuf>,
) -> ListXmit {
    let Some(first) = frames.front_mut() else {
        return ListXmit {
            accepted: 0,
            error: None,
        };
    };
    if !dev.is_up() {
        return refuse_rest(ctx, dev, frames, 0, QueueXmitError::NetDown);
    }
    let txq = pick_tx(dev, first);
    let qm = first.meta.queue_mapping;
    let mut all_plain = true;
    for f in frames.iter_mut() {
        f.meta.queue_mapping = qm;
        f.meta.dst = None;
        all_plain &= f.meta.gso_type == GsoType::None;
    }
    let mut slot = txq.q.lock();
    if slot.qdisc.is_noqueue() && all_plain {
        drop(slot);
        return noqueue_list(ctx, dev, txq, frames);
    }
    if slot.qdisc.is_noqueue() || txq.ctl().is_stopped() {
        // Frame by frame, exactly as the kernel's per-fragment calls go (a
        // stopped queue requeues the first and queues the rest up to the limit).
        drop(slot);
        return one_by_one(ctx, dev, frames);
    }
    if slot.can_bypass_now() {
        slot.running = true;
        frames
            .iter()
            .for_each(|f| slot.qdisc.stats_mut().sent(f.len()));
        let batch = std::mem::take(&mut slot.batch);
        drop(slot);
        let accepted = frames.len();
        run::bypass_list(ctx, dev, txq, frames, batch);
        return ListXmit {
            accepted,
            error: None,
        };
    }
    let s = &mut *slot;
    let mut accepted = 0;
    let mut error = None;
    while let Some(f) = frames.pop_front() {
        if s.qdisc.enqueue(f, ctx.now, &mut s.to_free) == NetXmit::Drop {
            error = Some(QueueXmitError::Dropped);
            break;
        }
        accepted += 1;
    }
    run::free_dropped(ctx, dev, &mut s.to_free);
    let start = !s.running;
    s.running = true;
    drop(slot);
    if start {
        run::run(ctx, dev, txq);
    }
    match error {
        Some(e) => refuse_rest(ctx, dev, frames, accepted, e),
        None => ListXmit {
            accepted,
            error: None,
        },
    }
}

/// A train on a queueless device: what [`noqueue_xmit`] does frame by
/// frame, in one pass through the driver with `xmit_more` within the train.
/// A stopped queue or a busy driver drops that frame and the rest of the
/// train (`ENETDOWN`), as the per-frame calls would. No frame is a GSO packet
/// (the caller checked).
fn noqueue_list(
    ctx: XmitCtx<'_>,
    dev: &NetDevice,
    txq: &TxQueue,
    frames: &mut VecDeque<PacketBuf>,
) -> ListXmit {
    match frames.pop_front() {
        Some(first) => noqueue_train(ctx, dev, txq, first, &mut frames.drain(..)),
        None => ListXmit {
            accepted: 0,
            error: None,
        },
    }
}

/// `dev_queue_xmit` for a train produced frame by frame (the fragments of
/// one datagram, link headers in place), every frame of the first one's GSO
/// type: what [`queue_xmit_list`] does with the whole train, but on a
/// queueless device each frame goes to the driver as soon as the next one is
/// made (to know `xmit_more`), without gathering the train first. Otherwise
/// the frames are gathered in `list` (left empty) for [`queue_xmit_list`].
pub(crate) fn queue_xmit_train<I: Iterator<Item = PacketBuf>>(
    ctx: XmitCtx<'_>,
    dev: &NetDevice,
    mut train: I,
    list: &mut VecDeque<PacketBuf>,
) -> ListXmit {
    let Some(mut first) = train.next() else {
        return ListXmit {
            accepted: 0,
            error: None,
        };
    };
    if dev.is_up() && first.meta.gso_type == GsoType::None {
        let txq = pick_tx(dev, &mut first);
        if txq.q.lock().qdisc.is_noqueue() {
            return noqueue_train(ctx, dev, txq, first, &mut train);
        }
    }
    list.push_back(first);
    list.extend(train);
    queue_xmit_list(ctx, dev, list)
}

/// The driver pass of [`noqueue_list`] over `first` and the frames `rest`
/// yields, none a GSO packet: each gets the first's queue, loses its route
/// and is validated ([`finish_frame`]) on its way to the driver; the
/// device's `tx_packets`/`tx_bytes` are added once.
///
/// [`finish_frame`]: crate::dev::xmit::finish_frame
fn noqueue_train(
    ctx: XmitCtx<'_>,
    dev: &NetDevice,
    txq: &TxQueue,
    first: PacketBuf,
    rest: &mut impl Iterator<Item = PacketBuf>,
) -> ListXmit {
    let (feats, qm) = (dev.features(), first.meta.queue_mapping);
    let (mut accepted, mut tx_packets, mut tx_bytes) = (0, 0u64, 0u64);
    let (mut next, mut refused) = (Some(first), None);
    let mut driver = txq.driver.lock();
    while let Some(mut p) = next.take() {
        if txq.ctl().is_stopped() {
            if accepted > 0 {
                // The frame before went with `xmit_more`.
                driver.flush();
            }
            refused = Some(p);
            break;
        }
        next = rest.next();
        debug_assert_eq!(p.meta.gso_type, GsoType::None, "a GSO frame in a train");
        p.meta.queue_mapping = qm;
        p.meta.dst = None;
        crate::dev::xmit::finish_frame(&mut p, feats);
        let len = p.len() as u64;
        match crate::dev::xmit::xmit_one_uncounted(ctx, dev, &mut **driver, p, next.is_some()) {
            TxStatus::Ok => (tx_packets, tx_bytes) = (tx_packets + 1, tx_bytes + len),
            TxStatus::Error => {}
            TxStatus::Busy(p) => {
                driver.flush();
                refused = Some(p);
                break;
            }
        }
        accepted += 1;
    }
    drop(driver);
    dev.stats
        .add(crate::stats::DevCounter::TxPackets, tx_packets);
    dev.stats.add(crate::stats::DevCounter::TxBytes, tx_bytes);
    let Some(p) = refused else {
        return ListXmit {
            accepted,
            error: None,
        };
    };
    // kfree_skb_list of the refused frame and all after it.
    for f in std::iter::once(p).chain(next).chain(rest) {
        crate::dev::xmit::drop_frame(ctx, dev, f, DropReason::DevReady);
    }
    ListXmit {
        accepted,
        error: Some(QueueXmitError::NetDown),
    }
}

/// Drops what is left of a train after a refusal, counted as freed
/// (`kfree_skb_list` of the remaining fragments).
fn refuse_rest(
    ctx: XmitCtx<'_>,
    dev: &NetDevice,
    frames: &mut VecDeque<PacketBuf>,
    accepted: usize,
    error: QueueXmitError,
) -> ListXmit {
    let reason = match error {
        QueueXmitError::NetDown => DropReason::DevReady,
        QueueXmitError::Dropped => DropReason::NotSpecified,
    };
    for f in frames.drain(..) {
        crate::dev::xmit::drop_frame(ctx, dev, f, reason);
    }
    ListXmit {
        accepted,
        error: Some(error),
    }
}

fn one_by_one(ctx: XmitCtx<'_>, dev: &NetDevice, frames: &mut VecDeque<PacketBuf>) -> ListXmit {
    let mut accepted = 0;
    while let Some(f) = frames.pop_front() {
        if let Err(e) = queue_xmit(ctx, dev, f) {
            return refuse_rest(ctx, dev, frames, accepted, e);
        }
        accepted += 1;
    }
    ListXmit {
        accepted,
        error: None,
    }
}
