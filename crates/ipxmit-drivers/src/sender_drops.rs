//! The sender's word to the verifying peer: a device tap that records which
//! datagrams lost an IPv4 fragment to the neighbour layer, the device layer
//! or its qdiscs on the device (what `dropwatch` or `perf` on
//! `skb:kfree_skb` sees), for [`crate::peer::Peer::set_sender_record`].
//!
//! The datagrams carry the test pattern of [`crate::pattern`], so a dropped
//! fragment names its datagram. The record is a fixed table of atomic
//! slots, one per datagram number modulo its size: the sending threads
//! write it without waiting, nobody drains it, and the peer reads it when
//! it gives a datagram up (lazily, long after the drop), so no drop goes
//! unrecorded for a slow reader. A slot keeps the highest datagram number
//! that dropped there: a lookup of an older one that finds a newer one
//! says so ([`Record::Overwritten`]) instead of guessing.
//!
//! No kernel function stands for it: a Linux receiver has no such word. It
//! lets the peer tell the datagrams the sender cut short, and IP IDs reused
//! while their fragments linger (RFC 4963), from faults.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ipxmit::dev::Tap;
use ipxmit::stats::DropSite;
use ipxmit::{Instant, NetDevice, PacketBuf};

use crate::pattern;

/// Slots of the record: datagrams `k` and `k + SLOTS` share one (2 MiB).
/// With `n` sender threads each numbering every `n`-th datagram, a slot
/// is taken from a datagram once its thread sent `SLOTS / n` more; the
/// peer reads the record for the datagrams it holds far more often.
pub const SLOTS: usize = 1 << 18;

/// What the record says of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// The sender dropped a fragment of it.
    Dropped,
    /// The sender dropped none of its fragments.
    NotDropped,
    /// A later datagram's drop took its slot: unknown.
    Overwritten,
}

/// A tap for a sending device that records the datagrams it dropped
/// fragments of (see the module documentation). Lock-free.
pub struct SenderDrops {
    /// Per slot: 1 + the highest datagram number dropped there, 0 if none.
    slots: Box<[AtomicU64]>,
    recorded: AtomicU64,
    unsigned: AtomicU64,
}

impl std::fmt::Debug for SenderDrops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderDrops")
            .field("recorded", &self.recorded())
            .field("unsigned", &self.unsigned())
            .finish()
    }
}

impl SenderDrops {
    /// An empty record.
    pub fn new() -> Arc<SenderDrops> {
        Arc::new(SenderDrops {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            recorded: AtomicU64::new(0),
            unsigned: AtomicU64::new(0),
        })
    }

    /// Records that datagram `k` lost a fragment.
    pub fn record(&self, k: u64) {
        self.slots[k as usize % SLOTS].fetch_max(k + 1, Ordering::Release);
        self.recorded.fetch_add(1, Ordering::Relaxed);
    }

    /// What the record says of datagram `k`.
    pub fn lookup(&self, k: u64) -> Record {
        let v = self.slots[k as usize % SLOTS].load(Ordering::Acquire);
        match v.cmp(&(k + 1)) {
            std::cmp::Ordering::Equal => Record::Dropped,
            std::cmp::Ordering::Less => Record::NotDropped,
            std::cmp::Ordering::Greater => Record::Overwritten,
        }
    }

    /// Fragment drops recorded.
    pub fn recorded(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    /// Fragment drops not recorded: the fragment named no datagram (a last
    /// fragment shorter than 8 bytes, or a payload without the pattern).
    pub fn unsigned(&self) -> u64 {
        self.unsigned.load(Ordering::Relaxed)
    }
}

impl Tap for SenderDrops {
    fn tap(&self, _dev: &NetDevice, _pkt: &PacketBuf, _now: Instant) {}

    fn drop_point(&self, _dev: &NetDevice, pkt: &PacketBuf, _site: DropSite, _now: Instant) {
        // An IPv4 UDP fragment (with its link header or still without, as
        // one a neighbour queue held): MF set or a fragment offset.
        let h = pkt.network_header();
        let Some(h) = h.get(..20) else {
            return;
        };
        if h[0] >> 4 != 4 || h[9] != 17 || u16::from_be_bytes([h[6], h[7]]) & 0x3fff == 0 {
            return;
        }
        match pattern::of_packet(pkt) {
            Some(k) => self.record(k),
            None => {
                self.unsigned.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_keeps_the_newest_drop_and_says_when_an_older_is_gone() {
        let r = SenderDrops::new();
        assert_eq!(r.lookup(7), Record::NotDropped);
        r.record(7);
        assert_eq!(r.lookup(7), Record::Dropped);
        assert_eq!(r.lookup(7 + SLOTS as u64), Record::NotDropped);
        r.record(7 + SLOTS as u64);
        r.record(7);
        assert_eq!(r.lookup(7), Record::Overwritten);
        assert_eq!(r.lookup(7 + SLOTS as u64), Record::Dropped);
        assert_eq!(r.recorded(), 3);
    }
}
