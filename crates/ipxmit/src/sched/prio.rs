//! `prio`: strict-priority bands, each a qdisc of its own.
//!
//! Stands for `net/sched/sch_prio.c`.
//!
//! # Algorithm
//!
//! `bands` classes (2 to 16), `1:1` first. A packet whose priority
//! (`SO_PRIORITY`) names one of this qdisc's classes (`major:minor` with
//! the qdisc's handle as major) goes to band `minor - 1` (band 0 when out
//! of range); any other priority is looked up in the `priomap` by its low
//! four bits (one of 16 bands, like `pfifo_fast`'s, given at creation).
//! Each band holds a child qdisc, a `pfifo` of the device's
//! `tx_queue_len` packets by default; its drops are counted here too.
//! Dequeue takes from the first band that has a packet, so a busy band
//! starves the ones after it.

use std::fmt::Write as _;

use super::cls::FilterChain;
use super::fifo::Pfifo;
use super::{ClassError, Dequeued, NetXmit, OptValue, Qdisc, QdiscStats, ToFree};
use crate::buf::PacketBuf;
use crate::time::Instant;

/// `TCQ_MIN_PRIO_BANDS`.
pub const MIN_BANDS: u32 = 2;
/// `TCQ_PRIO_BANDS`.
pub const MAX_BANDS: u32 = 16;
/// The default priomap (`sch_default_prio2band`, as `pfifo_fast`'s).
pub const DEFAULT_PRIOMAP: [u8; 16] = super::pfifo_fast::PRIO2BAND;

/// The `prio` qdisc. See the module documentation.
#[derive(Debug)]
pub struct Prio {
    priomap: [u8; 16],
    bands: Vec<Box<dyn Qdisc>>,
    /// Each band's grafted qdisc's handle (0: the default `pfifo`).
    band_handles: Vec<u32>,
    /// The device's `tx_queue_len`, the default `pfifo`s' limit.
    txqueuelen: u32,
    /// The qdisc's filters.
    filters: FilterChain,
    /// The qdisc's handle (the major of its classes).
    handle: u32,
    stats: QdiscStats,
}

impl Prio {
    /// Kernel: `prio_init()`/`prio_tune()`: `bands` bands (checked by the
    /// caller: 2 to 16, every priomap entry below it), each a `pfifo` of
    /// `txqueuelen` packets.
    pub fn new(bands: u32, priomap: [u8; 16], txqueuelen: u32) -> Prio {
        Prio {
            priomap,
            bands: (0..bands)
                .map(|_| Box::new(Pfifo::new(txqueuelen)) as Box<dyn Qdisc>)
                .collect(),
            band_handles: vec![0; bands as usize],
            txqueuelen,
            filters: FilterChain::default(),
            handle: 0,
            stats: QdiscStats::default(),
        }
    }

    /// Kernel: `prio_tune()` on a change: the new map, bands added as
    /// `pfifo`s, the ones beyond a lower count (and their packets) dropped.
    pub fn tune(&mut self, bands: u32, priomap: [u8; 16], txqueuelen: u32, to_free: &mut ToFree) {
        self.priomap = priomap;
        while self.bands.len() > bands as usize {
            if let Some(mut q) = self.bands.pop() {
                super::on_child(&mut self.stats, &mut *q, |q| q.reset(to_free));
                self.band_handles.pop();
            }
        }
        while self.bands.len() < bands as usize {
            self.bands.push(Box::new(Pfifo::new(txqueuelen)));
            self.band_handles.push(0);
        }
        self.txqueuelen = txqueuelen;
    }

    /// The number of bands.
    pub fn band_count(&self) -> usize {
        self.bands.len()
    }

    /// Kernel: `prio_classify()`: a priority naming one of its classes
    /// picks that band; else the filters' class (`1:N` is band `N - 1`,
    /// out of range the priomap's first); without a match the priomap of
    /// the priority's low four bits (a priority of another major counts
    /// as 0).
    fn band_of(&self, pkt: &PacketBuf) -> usize {
        let n = self.bands.len();
        let priority = pkt.meta.priority;
        let mut band = priority;
        if priority & 0xffff_0000 != self.handle || self.handle == 0 {
            let hit = match self.filters.is_empty() {
                true => None,
                false => self.filters.classify(pkt, self.handle),
            };
            match hit {
                Some(c) => band = c,
                None => {
                    let p = if priority & 0xffff_0000 != 0 {
                        0
                    } else {
                        priority
                    };
                    return usize::from(self.priomap[(p & 15) as usize]);
                }
            }
        }
        let minor = (band & 0xffff) as usize;
        if (1..=n).contains(&minor) {
            minor - 1
        } else {
            usize::from(self.priomap[0])
        }
    }
}

impl Qdisc for Prio {
    fn kind(&self) -> &'static str {
        "prio"
    }

    /// Kernel: `prio_enqueue()`.
    fn enqueue(&mut self, mut pkt: PacketBuf, now: Instant, to_free: &mut ToFree) -> NetXmit {
        let band = self.band_of(&pkt).min(self.bands.len() - 1);
        if pkt.meta.class == 0 {
            pkt.meta.class = (self.handle & 0xffff_0000) | (band as u32 + 1);
        }
        let q = &mut *self.bands[band];
        super::on_child(&mut self.stats, q, |q| q.enqueue(pkt, now, to_free))
    }

    /// Kernel: `prio_dequeue()`: the first band with a packet.
    fn dequeue(&mut self, now: Instant) -> Dequeued {
        let mut wait: Option<Instant> = None;
        for q in &mut self.bands {
            match super::on_child(&mut self.stats, &mut **q, |q| q.dequeue(now)) {
                Dequeued::Packet(p) => {
                    self.stats.sent(p.len());
                    return Dequeued::Packet(p);
                }
                Dequeued::Throttled(t) => wait = Some(wait.map_or(t, |w| w.min(t))),
                Dequeued::Empty => {}
            }
        }
        wait.map_or(Dequeued::Empty, Dequeued::Throttled)
    }

    fn peek(&self) -> Option<&PacketBuf> {
        self.bands.iter().find_map(|q| q.peek())
    }

    fn reset(&mut self, to_free: &mut ToFree) {
        for q in &mut self.bands {
            q.reset(to_free);
        }
        self.stats.backlog = 0;
        self.stats.qlen = 0;
    }

    fn stats(&self) -> &QdiscStats {
        &self.stats
    }

    fn stats_mut(&mut self) -> &mut QdiscStats {
        &mut self.stats
    }

    fn set_handle(&mut self, handle: u32) {
        self.handle = handle;
    }

    /// tc's `prio_print_opt()`: `bands 3 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1`.
    fn params(&self) -> String {
        let mut s = format!("bands {} priomap", self.bands.len());
        for b in self.priomap {
            let _ = write!(s, " {b}");
        }
        s
    }

    /// `{"bands":3,"priomap":[...],"multiqueue":false}`.
    fn options(&self) -> Vec<(&'static str, OptValue)> {
        vec![
            ("bands", OptValue::Num(self.bands.len() as u64)),
            (
                "priomap",
                OptValue::List(self.priomap.iter().map(|&b| u64::from(b)).collect()),
            ),
            ("multiqueue", OptValue::Bool(false)),
        ]
    }

    /// `class prio 1:N parent 1:` for each band (their default `pfifo`s
    /// have no handle of their own, so no `leaf`).
    fn classes(&self) -> Vec<u32> {
        (1..=self.bands.len() as u32).collect()
    }

    fn classful(&self) -> bool {
        true
    }

    /// Kernel: `prio_graft()`: a band's qdisc replaced (`None`: a new
    /// default `pfifo`), the old one's packets purged.
    fn graft(
        &mut self,
        classid: u32,
        new: Option<(u32, Box<dyn Qdisc>)>,
        to_free: &mut ToFree,
    ) -> Result<(), ClassError> {
        let band = self.band_index(classid).ok_or(ClassError::NotFound)?;
        let (h, new) = new.unwrap_or_else(|| (0, Box::new(Pfifo::new(self.txqueuelen))));
        super::on_child(&mut self.stats, &mut *self.bands[band], |q| {
            q.reset(to_free)
        });
        self.bands[band] = new;
        self.band_handles[band] = h;
        Ok(())
    }

    fn leaf_mut(&mut self, classid: u32) -> Option<(u32, &mut dyn Qdisc)> {
        let band = self.band_index(classid)?;
        Some((self.band_handles[band], &mut *self.bands[band]))
    }

    fn class_of(&self, pkt: &PacketBuf) -> Option<u32> {
        Some(self.handle | (self.band_of(pkt) as u32 + 1))
    }

    fn children(&self) -> Vec<(u32, u32, &dyn Qdisc)> {
        let major = self.handle & 0xffff_0000;
        (0..self.bands.len())
            .filter(|&b| self.band_handles[b] != 0)
            .map(|b| {
                (
                    major | (b as u32 + 1),
                    self.band_handles[b],
                    &*self.bands[b],
                )
            })
            .collect()
    }

    fn children_mut(&mut self) -> Vec<(u32, &mut dyn Qdisc)> {
        self.band_handles
            .iter()
            .zip(self.bands.iter_mut())
            .filter(|(h, _)| **h != 0)
            .map(|(h, q)| (*h, &mut **q as &mut dyn Qdisc))
            .collect()
    }

    fn filters(&self) -> Option<&FilterChain> {
        Some(&self.filters)
    }

    fn filters_mut(&mut self) -> Option<&mut FilterChain> {
        Some(&mut self.filters)
    }

    fn take_dropped(&mut self, to_free: &mut ToFree) {
        for q in &mut self.bands {
            q.take_dropped(to_free);
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl Prio {
    /// The band of class `classid` (`1:1` is band 0).
    fn band_index(&self, classid: u32) -> Option<usize> {
        let minor = (classid & 0xffff) as usize;
        (1..=self.bands.len()).contains(&minor).then(|| minor - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(priority: u32, len: usize) -> PacketBuf {
        let mut p = PacketBuf::from_slice(0, &vec![0u8; len]);
        p.meta.priority = priority;
        p
    }

    fn drain(q: &mut Prio) -> Vec<usize> {
        std::iter::from_fn(|| match q.dequeue(Instant::ZERO) {
            Dequeued::Packet(p) => Some(p.len()),
            _ => None,
        })
        .collect()
    }

    #[test]
    fn bands_are_served_in_strict_priority() {
        let mut q = Prio::new(3, DEFAULT_PRIOMAP, 100);
        let mut tf = ToFree::default();
        // Priority 0 -> band 1, 2 -> band 2, 6 -> band 0 (lengths tell them apart).
        for (prio, len) in [(0, 100), (2, 200), (6, 300), (0, 101), (6, 301)] {
            assert_eq!(
                q.enqueue(pkt(prio, len), Instant::ZERO, &mut tf),
                NetXmit::Success
            );
        }
        assert_eq!(drain(&mut q), [300, 301, 100, 101, 200]);
    }

    #[test]
    fn a_priority_naming_a_class_picks_its_band() {
        let mut q = Prio::new(4, [3; 16], 100);
        q.set_handle(1 << 16);
        let mut tf = ToFree::default();
        q.enqueue(pkt((1 << 16) | 2, 222), Instant::ZERO, &mut tf);
        q.enqueue(pkt(0, 333), Instant::ZERO, &mut tf);
        q.enqueue(pkt((5 << 16) | 1, 444), Instant::ZERO, &mut tf);
        // 1:2 -> band 1; priority 0 -> priomap -> band 3; another major
        // counts as priority 0 -> band 3.
        assert_eq!(drain(&mut q), [222, 333, 444]);
    }

    #[test]
    fn a_full_band_drops_and_counts_here() {
        let mut q = Prio::new(3, DEFAULT_PRIOMAP, 1);
        let mut tf = ToFree::default();
        assert_eq!(
            q.enqueue(pkt(0, 10), Instant::ZERO, &mut tf),
            NetXmit::Success
        );
        assert_eq!(q.enqueue(pkt(0, 10), Instant::ZERO, &mut tf), NetXmit::Drop);
        assert_eq!(
            q.enqueue(pkt(6, 10), Instant::ZERO, &mut tf),
            NetXmit::Success
        );
        assert_eq!((q.stats().drops, q.stats().qlen), (1, 2));
        assert_eq!(
            q.params(),
            "bands 3 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1"
        );
    }
}
