//! The verifying peer of `send --dev mem` with the sender's word on what it
//! dropped: a [`SenderDrops`] tap on the sending device records the
//! fragments its device layer and qdiscs drop, and the peer is told of each
//! ([`Peer::sender_dropped`]) at its place among the frames it receives, so
//! it attributes the datagrams it cannot reassemble (the sender's drops, IP
//! IDs reused while their fragments linger, its own memory limit) apart
//! from faults (RFC 4963).
//!
//! No kernel function stands for this: a Linux receiver has no such word.

use std::sync::Arc;

use ipxmit::NetDevice;
use ipxmit_drivers::mem::MemWire;
use ipxmit_drivers::peer::{Peer, Unassembled};
use ipxmit_drivers::sender_drops::{SenderDrop, SenderDrops};
use serde_json::{json, Value};

/// The peer at the far end of the in-memory wire and the tap that tells it
/// what the sender dropped.
pub struct Verifier {
    /// The receiver.
    pub peer: Peer,
    drops: Arc<SenderDrops>,
    /// A drop taken from the tap that belongs after frames not yet received.
    next: Option<SenderDrop>,
    /// Frames taken off the wire so far.
    received: u64,
}

impl Verifier {
    /// A verifier around `peer` for frames from `wire`; [`attach`](Self::attach)
    /// its tap.
    pub fn new(peer: Peer, wire: &Arc<MemWire>) -> Verifier {
        Verifier {
            peer,
            drops: SenderDrops::new(wire.clone()),
            next: None,
            received: 0,
        }
    }

    /// Attaches the tap of drops to the sending device.
    pub fn attach(&self, dev: &NetDevice) {
        dev.add_tap(self.drops.clone());
    }

    /// Tells the peer of the drops that came before the next frame to be
    /// received (all of them when `all`), then counts that frame.
    pub fn before_frame(&mut self, all: bool) {
        while let Some(d) = self.next.take().or_else(|| self.drops.take()) {
            if !all && d.0 > self.received {
                self.next = Some(d);
                break;
            }
            self.peer.sender_dropped_ip(&d.1);
        }
        self.received += u64::from(!all);
    }

    /// Drops the tap could not record (the reader fell far behind): their
    /// datagrams may count as unexplained.
    pub fn overflowed(&self) -> u64 {
        self.drops.overflowed()
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
        m.insert("DropNotesLost".into(), json!(self.overflowed()));
        Value::Object(m)
    }

    /// The attribution in words, for the summary.
    pub fn unassembled_text(&self) -> String {
        let why = self.unassembled();
        let lost = match self.overflowed() {
            0 => String::new(),
            n => format!(" ({n} of the sender's drops not recorded)"),
        };
        format!(
            "not reassembled: {} with a fragment the sender dropped, {} mixed by IP ID reuse, \
             {} over the peer's memory limit, {} unexplained{lost}",
            why[0], why[1], why[2], why[3]
        )
    }
}
