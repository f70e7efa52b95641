//! Choosing a transmit queue, and what the transmit path carries.
//!
//! Stands for `netdev_core_pick_tx`/`netdev_pick_tx` and `skb_tx_hash`
//! (`net/core/dev.c`): a frame goes to the queue its socket recorded, else
//! the one its flow hash picks. The transmit itself is
//! [`crate::dev::batch`].

use crate::buf::{PacketBuf, SendBudget};
use crate::dev::NetDevice;
use crate::stats::Counters;
use crate::time::Instant;

pub use crate::dev::batch::queue_xmit;

/// What the transmit path needs from the stack: counters, the time and
/// the egress hooks.
#[derive(Clone, Copy, Debug)]
pub struct XmitCtx<'a> {
    /// Where drops are counted.
    pub counters: &'a Counters,
    /// The stack's filter hooks: those at [`crate::netfilter::HookPoint::Egress`]
    /// see each frame (`nf_hook_egress`).
    pub hooks: &'a crate::netfilter::Hooks,
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
    /// The qdisc or an egress hook dropped the packet (`NET_XMIT_DROP`,
    /// reported as `ENOBUFS`).
    #[error("no buffer space available (dropped by qdisc)")]
    Dropped,
}

impl From<QueueXmitError> for crate::error::SendError {
    /// `net_xmit_errno` and the `ENETDOWN` of a queueless device.
    fn from(e: QueueXmitError) -> Self {
        match e {
            QueueXmitError::Dropped => crate::error::SendError::NoBufs,
            QueueXmitError::NetDown => crate::error::SendError::NetDown,
        }
    }
}

/// `reciprocal_scale`: maps a 32-bit hash onto `0..n` without a division.
#[inline]
pub fn reciprocal_scale(hash: u32, n: u32) -> u32 {
    ((hash as u64 * n as u64) >> 32) as u32
}

/// The transmit queue `netdev_pick_tx` chooses among `n` for a buffer with
/// this `queue_mapping` (+1, 0 meaning unset, as `sk_tx_queue_mapping`) and
/// flow hash: the only queue, else the recorded one, else one chosen by
/// the hash (`skb_tx_hash`).
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

/// Kernel: `netdev_pick_tx()`, net/core/dev.c. The queue of `dev` for a
/// frame with this `queue_mapping` (+1, 0 unset) and flow hash: the only
/// one, else the recorded one, else the queue its socket `sk` recorded
/// (`sk_tx_queue_get`, valid while below the device's queue count), else
/// the calling thread's (XPS, [`NetDevice::xps_queue`]), else one chosen by
/// the hash (`skb_tx_hash`). A connected socket (`sk_dst_cache` set: pass
/// `sk` only for one) records the queue chosen (`sk_tx_queue_set`), so its
/// frames stay on one queue wherever its sender runs: UDP never sets
/// `ooo_okay`, which would let it choose again.
#[inline]
pub fn pick_tx(dev: &NetDevice, queue_mapping: u16, hash: u32, sk: Option<&SendBudget>) -> usize {
    let n = dev.queues().len();
    if n == 1 || queue_mapping != 0 {
        return queue_index(n, queue_mapping, hash);
    }
    if let Some(q) = sk.and_then(SendBudget::tx_queue).filter(|&q| q < n) {
        return q;
    }
    let q = match dev.xps_queue(hash) {
        Some(q) => q,
        None => queue_index(n, 0, hash),
    };
    if let Some(sk) = sk {
        sk.set_tx_queue(q);
    }
    q
}

/// The transmit queue and the qdisc path (`netdev_pick_tx()`,
/// `__dev_xmit_skb()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QdiscPlan {
    /// The device's transmit queues.
    pub queues: usize,
    /// The queue chosen (0-based).
    pub txq: usize,
    /// The queue's qdisc kind.
    pub kind: &'static str,
    /// Its handle (`major:`), 0 for the default.
    pub handle: u32,
    /// The class its classification puts the first frame in (`Some(0)`:
    /// HTB's direct queue; `None`: classless, or not reported).
    pub class: Option<u32>,
    /// Packets waiting in it now.
    pub qlen: u64,
    /// What happens to the frames.
    pub path: QdiscPath,
}

/// What `__dev_xmit_skb()` does with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QdiscPath {
    /// `noqueue`: straight to the driver.
    NoQueue,
    /// An empty qdisc that may be bypassed (`TCQ_F_CAN_BYPASS`): straight
    /// to the driver, counted as the qdisc's.
    Bypass,
    /// Enqueued, then dequeued by the qdisc's run.
    Enqueue,
    /// The device is down: the frames are dropped (`ENETDOWN`).
    Down,
}

/// Kernel: `netdev_pick_tx()` and `__dev_xmit_skb()`'s choice, asked
/// without sending (`ipxmit explain`): the queue picked for the flow
/// hash — or `recorded`, the queue a connected socket's earlier frames were
/// given (`sk_tx_queue_get()`), when it has one of the device's — what its
/// qdisc does with a frame now, and the class its own classification puts
/// `first` in. Nothing is recorded.
pub fn xmit_plan(
    dev: &NetDevice,
    hash: u32,
    first: &PacketBuf,
    recorded: Option<usize>,
) -> QdiscPlan {
    let n = dev.queues().len();
    let txq = match recorded.filter(|&q| n > 1 && q < n) {
        Some(q) => q,
        None => pick_tx(dev, 0, hash, None),
    };
    let q = &dev.queues()[txq];
    let handle = q.qdisc_handle();
    let (kind, qlen, noqueue, bypass, class) = q.with_qdisc(|qd| {
        let qlen = qd.stats().qlen;
        let b = qd.can_bypass() && qlen == 0;
        (qd.kind(), qlen, qd.is_noqueue(), b, qd.class_of(first))
    });
    let path = match (dev.is_up(), noqueue, bypass && q.requeued_len() == 0) {
        (false, _, _) => QdiscPath::Down,
        (true, true, _) => QdiscPath::NoQueue,
        (true, false, true) => QdiscPath::Bypass,
        (true, false, false) => QdiscPath::Enqueue,
    };
    QdiscPlan {
        queues: n,
        txq,
        kind,
        handle,
        class,
        qlen,
        path,
    }
}
