//! The verifying peer of `send --dev mem` with the sender's word on what it
//! dropped: a [`SenderDrops`] tap on the sending device records which
//! datagrams lost a fragment to its device layer and qdiscs, and the peer
//! reads that record when it gives a datagram up ([`Peer::set_sender_record`]);
//! the datagrams' payloads name them ([`ipxmit_drivers::pattern`]), so the
//! peer also tells fragments of datagrams sharing an IP ID apart. It thus
//! attributes the datagrams it cannot reassemble (the sender's drops, its
//! own memory limit) apart from faults (RFC 4963), and nobody drains a
//! queue of drops.
//!
//! No kernel function stands for this: a Linux receiver has no such word.

use std::sync::Arc;

use ipxmit::NetDevice;
use ipxmit_drivers::peer::{Peer, Unassembled};
use ipxmit_drivers::sender_drops::SenderDrops;
use serde_json::{json, Value};

/// The peer at the far end of the in-memory wire and the tap that tells it
/// what the sender dropped.
pub struct Verifier {
    /// The receiver.
    pub peer: Peer,
    drops: Arc<SenderDrops>,
}

impl Verifier {
    /// A verifier around `peer`, reading a new record of drops;
    /// [`attach`](Self::attach) its tap.
    pub fn new(mut peer: Peer) -> Verifier {
        let drops = SenderDrops::new();
        peer.set_sender_record(drops.clone());
        Verifier { peer, drops }
    }

    /// Attaches the tap of drops to the sending device.
    pub fn attach(&self, dev: &NetDevice) {
        dev.add_tap(self.drops.clone());
    }

    /// Datagrams the peer could not attribute for want of a record: drops
    /// of fragments that named no datagram, and lookups that found a later
    /// datagram's drop in the slot.
    pub fn unrecorded(&self) -> u64 {
        self.drops.unsigned() + self.peer.record_overwritten()
    }

    /// The datagrams the peer did not reassemble, by attribution: given up
    /// so far plus the queues still held.
    pub fn unassembled(&self) -> [u64; Unassembled::COUNT] {
        let s = self.peer.stats();
        let mut why = self.peer.pending_unassembled();
        for (w, n) in why.iter_mut().zip(s.unassembled) {
            *w += n;
        }
        why
    }

    /// What the peer cannot explain: frames it dropped whole, datagrams it
    /// could not reassemble for no known reason.
    pub fn faults(&self) -> u64 {
        let s = self.peer.stats();
        s.frame_drops() + self.unassembled()[Unassembled::Unexplained as usize]
    }

    /// The attribution as JSON: `{"ReasmSenderDropped": n, ...}`.
    pub fn unassembled_json(&self) -> Value {
        let why = self.unassembled();
        let mut m: serde_json::Map<String, Value> = Unassembled::ALL
            .iter()
            .map(|u| (u.name().to_string(), json!(why[*u as usize])))
            .collect();
        m.insert("DropsRecorded".into(), json!(self.drops.recorded()));
        m.insert("DropsUnrecorded".into(), json!(self.unrecorded()));
        Value::Object(m)
    }

    /// The attribution in words, for the summary.
    pub fn unassembled_text(&self) -> String {
        let why = self.unassembled();
        let lost = match self.unrecorded() {
            0 => String::new(),
            n => format!(" ({n} of the sender's drops not recorded or read)"),
        };
        format!(
            "not reassembled: {} with a fragment the sender dropped, {} mixed by IP ID reuse, \
             {} over the peer's memory limit, {} unexplained{lost}",
            why[0], why[1], why[2], why[3]
        )
    }
}
