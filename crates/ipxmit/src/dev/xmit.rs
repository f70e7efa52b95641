//! `dev_hard_start_xmit`: the last steps before the driver.
//!
//! Stands for `validate_xmit_skb` (software checksum and segmentation when the
//! device lacks the offload, linearizing for a device without scatter-gather),
//! `dev_hard_start_xmit`, `xmit_one` and `dev_queue_xmit_nit` (taps) in
//! `net/core/dev.c`.

use std::collections::VecDeque;

use crate::buf::{CsumState, GsoType, PacketBuf};
use crate::dev::queue::XmitCtx;
use crate::dev::{Driver, NetDevice, TxQueue, TxStatus};
use crate::offload::checksum_help;
use crate::offload::Features;
use crate::stats::{DevCounter, DropReason};

/// Kernel: `validate_xmit_skb()`, net/core/dev.c. Segments GSO packets the device
/// cannot, completes checksums it cannot, and linearizes for a device without
/// scatter-gather. The resulting frames are appended to `out`.
pub fn validate_xmit(
    ctx: XmitCtx<'_>,
    dev: &NetDevice,
    mut pkt: PacketBuf,
    out: &mut VecDeque<PacketBuf>,
) {
    let feats = dev.features();
    if pkt.meta.gso_type != GsoType::None && !feats.contains(Features::GSO_UDP_L4) {
        if !crate::offload::gso::segment_udp_into(pkt, feats, ctx.pool, out) {
            ctx.counters.drop(DropReason::SkbGsoSeg);
            dev.stats.add(DevCounter::TxDropped, 1);
        }
        return;
    }
    finish_frame(&mut pkt, feats);
    out.push_back(pkt);
}

/// The per-frame part of validation: checksum and linearization.
#[inline(always)]
pub(crate) fn finish_frame(pkt: &mut PacketBuf, feats: Features) {
    if pkt.meta.ip_summed != CsumState::None && !feats.can_csum() {
        checksum_help(pkt);
    }
    if pkt.data_len() > 0 && !feats.contains(Features::SG) {
        pkt.linearize();
    }
}

/// Counts and frees a frame dropped on the way to the driver.
pub fn drop_frame(ctx: XmitCtx<'_>, dev: &NetDevice, pkt: PacketBuf, reason: DropReason) {
    ctx.counters.drop(reason);
    dev.stats.add(DevCounter::TxDropped, 1);
    drop(pkt);
}

/// Frames and bytes a driver took, added to the device's `tx_packets` and
/// `tx_bytes` once per batch or qdisc run (the kernel's per-CPU
/// `dev_sw_netstats_tx_add`): the one place those counters are counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxCount {
    /// Frames.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

impl TxCount {
    /// Counts one frame of `len` bytes.
    #[inline(always)]
    pub fn add(&mut self, len: usize) {
        self.packets += 1;
        self.bytes += len as u64;
    }

    /// Adds what was counted to `dev`'s statistics and starts over.
    pub fn settle(&mut self, dev: &NetDevice) {
        if self.packets != 0 {
            dev.stats.add(DevCounter::TxPackets, self.packets);
            dev.stats.add(DevCounter::TxBytes, self.bytes);
        }
        *self = TxCount::default();
    }
}

/// Kernel: `xmit_one()`, net/core/dev.c. Shows the frame to the taps
/// (`dev_queue_xmit_nit`), then gives it to the driver; a frame the driver
/// took is counted in `tx` (with `len`, its length), one it dropped on an
/// error in `tx_errors`.
#[inline(always)]
pub fn xmit_one(
    ctx: &XmitCtx<'_>,
    dev: &NetDevice,
    driver: &mut dyn Driver,
    (pkt, len): (PacketBuf, usize),
    more: bool,
    tx: &mut TxCount,
) -> TxStatus {
    if dev.nit_active() {
        queue_xmit_nit(ctx, dev, &pkt);
    }
    let st = driver.start_xmit(pkt, more);
    match &st {
        TxStatus::Ok => tx.add(len),
        TxStatus::Error => {
            dev.stats.add(DevCounter::TxErrors, 1);
            ctx.counters.drop(DropReason::FullRing);
        }
        TxStatus::Busy(_) => {}
    }
    st
}

/// Kernel: `dev_queue_xmit_nit()`, net/core/dev.c. Every tap sees the frame.
#[cold]
fn queue_xmit_nit(ctx: &XmitCtx<'_>, dev: &NetDevice, pkt: &PacketBuf) {
    for tap in dev.taps.read().iter() {
        tap.tap(dev, pkt, ctx.now);
    }
}

/// Kernel: `dev_hard_start_xmit()`, net/core/dev.c. Gives the frames to the
/// driver in order with `more` set while frames follow; stops at a busy driver or
/// a stopped queue and leaves the frames not sent in `frames` (the refused one
/// first).
pub fn hard_start_xmit(
    ctx: XmitCtx<'_>,
    dev: &NetDevice,
    txq: &TxQueue,
    driver: &mut dyn Driver,
    frames: &mut VecDeque<PacketBuf>,
) {
    let mut tx = TxCount::default();
    while let Some(pkt) = frames.pop_front() {
        let more = !frames.is_empty();
        let len = pkt.len();
        if let TxStatus::Busy(p) = xmit_one(&ctx, dev, driver, (pkt, len), more, &mut tx) {
            // The driver stopped its queue (`netif_stop_queue`) and wakes
            // it; stopping it here as well could undo a wake-up that came
            // in between, and the queue would sleep for good.
            frames.push_front(p);
            driver.flush();
            break;
        }
        if txq.ctl().is_stopped() && !frames.is_empty() {
            driver.flush();
            break;
        }
    }
    tx.settle(dev);
}
