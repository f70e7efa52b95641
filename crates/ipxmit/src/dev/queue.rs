//! Choosing a transmit queue, and what the transmit path carries.
//!
//! Stands for `netdev_core_pick_tx`/`netdev_pick_tx` and `skb_tx_hash`
//! (`net/core/dev.c`): a frame goes to the queue its socket recorded, else
//! the one its flow hash picks. The transmit itself is
//! [`crate::dev::batch`].

use crate::stats::Counters;
use crate::time::Instant;

pub use crate::dev::batch::queue_xmit;

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
