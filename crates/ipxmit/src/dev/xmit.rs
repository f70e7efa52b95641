//! `dev_hard_start_xmit`: the last steps before the driver.
//!
//! Stands for `validate_xmit_skb` (software checksum and segmentation when the
//! device lacks the offload, linearizing for a device without scatter-gather),
//! `dev_hard_start_xmit`, `xmit_one` and `dev_queue_xmit_nit` (taps) in
//! `net/core/dev.c`.

use std::collections::VecDeque;

use crate::buf::{CsumState, PacketBuf};
use crate::dev::queue::XmitCtx;
use crate::dev::{NetDevice, TxLock, TxQueue, TxStatus};
use crate::offload::checksum_help;
use crate::offload::Features;
use crate::stats::{fate, DevCounter, DropReason, DropSite};
use crate::time::Instant;

/// Kernel: `validate_xmit_skb()`, net/core/dev.c. Segments GSO packets the device
/// cannot (UDP GSO into datagrams, UFO into IP fragments), completes checksums
/// it cannot, and linearizes for a device without scatter-gather. The
/// resulting frames are appended to `out`.
#[inline(always)]
pub fn validate_xmit(
    ctx: XmitCtx<'_>,
    dev: &NetDevice,
    mut pkt: PacketBuf,
    out: &mut VecDeque<PacketBuf>,
) {
    let feats = dev.features();
    if !crate::offload::gso::gso_ok(pkt.meta.gso_type, feats) {
        return segment(ctx, (dev, feats), pkt, out);
    }
    finish_frame(&mut pkt, feats);
    out.push_back(pkt);
}

/// [`validate_xmit`] of a GSO packet the device cannot take: segmented in
/// software (`skb_gso_segment`), or dropped when it cannot be. Out of
/// line, so the inlined check of every other frame stays small.
#[inline(never)]
fn segment(
    ctx: XmitCtx<'_>,
    (dev, feats): (&NetDevice, Features),
    pkt: PacketBuf,
    out: &mut VecDeque<PacketBuf>,
) {
    let tag = pkt.meta.tskey;
    if !crate::offload::gso::segment_into(pkt, feats, ctx.pool, out) {
        fate::dropped(tag, DropReason::SkbGsoSeg);
        ctx.counters.drop_at(DropSite::GsoSegFail);
        dev.stats.add(DevCounter::TxDropped, 1);
    }
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

/// Counts and frees a frame dropped at `site` on the way to the driver
/// (the `kfree_skb` event names the caller).
#[track_caller]
pub fn drop_frame(ctx: XmitCtx<'_>, dev: &NetDevice, pkt: PacketBuf, site: DropSite) {
    ctx.counters.drop_at(site);
    dev.stats.add(DevCounter::TxDropped, 1);
    freed(&ctx, dev, pkt, site);
}

/// The end of a dropped frame: shown to the device's taps at the drop
/// point, its fate noted, freed.
#[cold]
pub(crate) fn freed(ctx: &XmitCtx<'_>, dev: &NetDevice, pkt: PacketBuf, site: DropSite) {
    tap_drop(dev, &pkt, site, ctx.now);
    fate::dropped(pkt.meta.tskey, site.reason());
    drop(pkt);
}

/// Shows `pkt`, dropped at `site` on its way out through `dev`, to the
/// device's taps (what `dropwatch` or `perf` on `skb:kfree_skb` sees with
/// the packet, here written into a pcapng capture of the device). A site
/// above the device ([`DropSite::above_device`]) shows the IP packet
/// without a link header.
#[cold]
pub fn tap_drop(dev: &NetDevice, pkt: &PacketBuf, site: DropSite, now: Instant) {
    if dev.nit_active() {
        for tap in dev.taps.read().iter() {
            tap.drop_point(dev, pkt, site, now);
        }
    }
}

/// [`drop_frame`] for a frame a qdisc dropped for `reason` (its site
/// follows from the reason; one no qdisc site has is counted by reason).
#[track_caller]
pub fn drop_qdisc_frame(ctx: XmitCtx<'_>, dev: &NetDevice, pkt: PacketBuf, reason: DropReason) {
    let Some(site) = DropSite::of_qdisc(reason) else {
        ctx.counters.drop(reason);
        dev.stats.add(DevCounter::TxDropped, 1);
        fate::dropped(pkt.meta.tskey, reason);
        return;
    };
    drop_frame(ctx, dev, pkt, site);
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

    /// Adds what was counted to `dev`'s statistics and starts over. `lo`
    /// counts what `loopback_xmit()` sees, each frame after
    /// `eth_type_trans()` pulled its link header.
    pub fn settle(&mut self, dev: &NetDevice) {
        if self.packets != 0 {
            let link = if dev.is_loopback() {
                self.packets * crate::wire::ethernet::HEADER_LEN as u64
            } else {
                0
            };
            dev.stats.add(DevCounter::TxPackets, self.packets);
            dev.stats.add(DevCounter::TxBytes, self.bytes - link);
        }
        *self = TxCount::default();
    }
}

/// Kernel: `xmit_one()`, net/core/dev.c. Shows the frame to the taps
/// (`dev_queue_xmit_nit`), then gives it to the driver; a frame the driver
/// took is counted in `tx` (with `len`, its length), one it dropped on an
/// error in `tx_errors`. With `traced` (the caller's reading of
/// `tracing::level_enabled!(TRACE)`, once per batch or run) it fires
/// `net_dev_start_xmit` and `net_dev_xmit`.
#[inline(always)]
pub fn xmit_one(
    ctx: &XmitCtx<'_>,
    dev: &NetDevice,
    driver: &mut TxLock<'_>,
    (pkt, len): (PacketBuf, usize),
    more: bool,
    tx: &mut TxCount,
    traced: bool,
) -> TxStatus {
    if dev.nit_active() {
        queue_xmit_nit(ctx, dev, &pkt);
    }
    let tag = pkt.meta.tskey;
    let st = if traced {
        start_xmit_traced(dev, driver, (pkt, len), more)
    } else {
        driver.start_xmit(pkt, more)
    };
    match &st {
        TxStatus::Ok => {
            tx.add(len);
            fate::sent(tag);
        }
        TxStatus::Error => {
            dev.stats.add(DevCounter::TxErrors, 1);
            ctx.counters.drop_at(DropSite::DriverError);
            fate::dropped(tag, DropReason::FullRing);
        }
        TxStatus::Busy(_) => {}
    }
    st
}

/// The driver's `start_xmit` between the tracepoints `net_dev_start_xmit`
/// and `net_dev_xmit` (`netdev_start_xmit()` in `xmit_one()`): out of line,
/// so the untraced call keeps nothing alive across the driver's.
#[cold]
#[inline(never)]
fn start_xmit_traced(
    dev: &NetDevice,
    driver: &mut TxLock<'_>,
    (pkt, len): (PacketBuf, usize),
    more: bool,
) -> TxStatus {
    net_dev_start_xmit(dev, &pkt);
    let st = driver.start_xmit(pkt, more);
    net_dev_xmit(dev, len, &st);
    st
}

/// Tracepoint `net_dev_start_xmit` (`include/trace/events/net.h`): the
/// frame about to be given to the driver. `ip_summed` is the kernel's
/// number (`CHECKSUM_NONE` 0, `_UNNECESSARY` 1, `_PARTIAL` 3), offsets are from the
/// frame's start, `gso_type` is ipxmit's name.
#[cold]
#[inline(never)]
fn net_dev_start_xmit(dev: &NetDevice, pkt: &PacketBuf) {
    let m = &pkt.meta;
    let start = pkt.headroom();
    tracing::trace!(
        name: "net_dev_start_xmit",
        target: crate::trace::NET,
        dev = %dev.name(),
        queue_mapping = m.queue_mapping,
        protocol = format_args!("{:#06x}", m.protocol),
        ip_summed = match m.ip_summed {
            CsumState::None => 0u8,
            CsumState::Unnecessary => 1,
            CsumState::Partial { .. } => 3,
        },
        len = pkt.len(),
        data_len = pkt.data_len(),
        network_offset = usize::from(m.network_header).wrapping_sub(start) as isize,
        transport_offset = usize::from(m.transport_header).wrapping_sub(start) as isize,
        gso_size = m.gso_size,
        gso_segs = m.gso_segs,
        gso_type = ?m.gso_type,
        "net_dev_start_xmit"
    );
}

/// Tracepoint `net_dev_xmit` (`include/trace/events/net.h`): what the
/// driver answered for a frame of `len` bytes, as the kernel's `rc`:
/// `NETDEV_TX_OK` (0, also for a frame the driver dropped on an error,
/// which `kfree_skb` shows), `NETDEV_TX_BUSY` (0x10).
#[cold]
#[inline(never)]
fn net_dev_xmit(dev: &NetDevice, len: usize, st: &TxStatus) {
    let rc: i32 = match st {
        TxStatus::Ok | TxStatus::Error => 0,
        TxStatus::Busy(_) => 0x10,
    };
    tracing::trace!(
        name: "net_dev_xmit",
        target: crate::trace::NET,
        dev = %dev.name(),
        len,
        rc,
        "net_dev_xmit"
    );
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
/// first). What the driver took is counted in `tx`, which the caller
/// settles (once per run or batch).
#[inline]
pub fn hard_start_xmit(
    ctx: XmitCtx<'_>,
    dev: &NetDevice,
    txq: &TxQueue,
    driver: &mut TxLock<'_>,
    frames: &mut VecDeque<PacketBuf>,
    tx: &mut TxCount,
) {
    let traced = tracing::level_enabled!(tracing::Level::TRACE);
    while let Some(pkt) = frames.pop_front() {
        let more = !frames.is_empty();
        let len = pkt.len();
        let st = xmit_one(&ctx, dev, driver, (pkt, len), more, tx, traced);
        if let TxStatus::Busy(p) = st {
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
}
