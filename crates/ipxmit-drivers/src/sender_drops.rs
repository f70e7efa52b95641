//! The sender's word to the verifying peer: a device tap that records the
//! IP headers of the IPv4 fragments the neighbour layer, the device layer
//! and its qdiscs drop on the device (what
//! `dropwatch` or `perf` on `skb:kfree_skb` sees), each with its place in
//! the in-memory wire's frame order, for [`crate::peer::Peer::sender_dropped`].
//!
//! No kernel function stands for it: a Linux receiver has no such word. It
//! lets the peer tell the datagrams the sender cut short, and IP IDs reused
//! while their fragments linger (RFC 4963), from faults.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use ipxmit::dev::Tap;
use ipxmit::stats::DropSite;
use ipxmit::{Instant, NetDevice, PacketBuf};

use crate::mem::MemWire;

/// The header of a dropped packet the peer needs: the fixed IPv4 header.
pub const HEADERS: usize = 20;

/// Drops held between two [`SenderDrops::take`] calls at most; more are
/// counted as [`SenderDrops::overflowed`].
const CAPACITY: usize = 1 << 16;

/// One dropped fragment: the wire's frame count when it was dropped, and
/// its IP header.
pub type SenderDrop = (u64, [u8; HEADERS]);

/// A tap for the sending device of a [`MemWire`] (see the module
/// documentation). Lock-free: the sending threads never wait for the
/// reader.
pub struct SenderDrops {
    q: ArrayQueue<SenderDrop>,
    overflowed: AtomicU64,
    wire: Arc<MemWire>,
}

impl std::fmt::Debug for SenderDrops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderDrops")
            .field("held", &self.q.len())
            .field("overflowed", &self.overflowed())
            .finish()
    }
}

impl SenderDrops {
    /// A tap whose drops are placed in `wire`'s frame order.
    pub fn new(wire: Arc<MemWire>) -> Arc<SenderDrops> {
        Arc::new(SenderDrops {
            q: ArrayQueue::new(CAPACITY),
            overflowed: AtomicU64::new(0),
            wire,
        })
    }

    /// The oldest drop not yet taken.
    pub fn take(&self) -> Option<SenderDrop> {
        self.q.pop()
    }

    /// Drops not recorded because the reader fell behind by more than
    /// 65,536 of them.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }
}

impl Tap for SenderDrops {
    fn tap(&self, _dev: &NetDevice, _pkt: &PacketBuf, _now: Instant) {}

    fn drop_point(&self, _dev: &NetDevice, pkt: &PacketBuf, _site: DropSite, _now: Instant) {
        // An IPv4 packet (with its link header or still without, as one a
        // neighbour queue held) with MF set or a fragment offset.
        let Some(h) = pkt.network_header().get(..HEADERS) else {
            return;
        };
        if h[0] >> 4 != 4 || u16::from_be_bytes([h[6], h[7]]) & 0x3fff == 0 {
            return;
        }
        let mut copy = [0u8; HEADERS];
        copy.copy_from_slice(h);
        if self.q.push((self.wire.frames(), copy)).is_err() {
            self.overflowed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
