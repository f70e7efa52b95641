//! `dev_queue_xmit` for a batch: the frames of one flow, in order, through
//! one transmit queue.
//!
//! Stands for `__dev_queue_xmit` and `__dev_xmit_skb` (`net/core/dev.c`): the
//! `q->enqueue == NULL` branch of a queueless device, the bypass of an empty
//! qdisc (`TCQ_F_CAN_BYPASS`, `qdisc_run_begin`, `sch_direct_xmit`), and
//! enqueue followed by `qdisc_run`, after the netdev egress hook
//! (`nf_hook_egress`, which sees every frame: each fragment, a GSO frame
//! whole; its drop is `NET_XMIT_DROP`, the caller's `ENOBUFS`). Each frame
//! is handled as the kernel
//! handles one call, in order; what is the same for every frame of a batch
//! is done once: the queue choice (`netdev_pick_tx`, by the flow's hash),
//! the device state and the qdisc decision, the clock reading, the transmit
//! lock (`HARD_TX_LOCK`) held across the frames that go straight to the
//! driver — `xmit_more` set while the caller says another frame follows, so
//! a driver writes them with one syscall — and the device's and qdisc's
//! counters, added once when the batch ends. [`queue_xmit`] of one frame is a
//! batch of one: there is no other way to the driver.
//!
//! The three ways, as the kernel takes them per frame:
//!
//! * **noqueue**: straight to the driver. A stopped queue or a driver that
//!   refuses drops the frame (`tx_dropped`, `ENETDOWN`).
//! * **bypass**: the qdisc is empty, may be bypassed and nobody runs it, so
//!   the batch owns its run and hands frames to the driver, each counted as
//!   sent by the qdisc. A frame the queue cannot take (stopped) or the driver
//!   refuses is requeued (`dev_requeue_skb`, which reschedules the queue) and
//!   the run given up; the qdisc is no longer empty, so the frames after it
//!   are enqueued.
//! * **enqueue**: each frame is enqueued under the qdisc lock and the queue
//!   is run when nobody runs it (`qdisc_run`, whose dequeues are bulk:
//!   quota-sized batches handed to the driver with `xmit_more`). The verdict
//!   of every enqueue is the frame's own (a qdisc drop is `ENOBUFS`), known
//!   before the next frame comes, so a caller that must stop at an error
//!   (`sendmmsg` under `IP_RECVERR`) stops where one-by-one sends would;
//!   and since the queue is run after each enqueue as one by one, drops,
//!   requeues and overlimits come out the same.
//!
//! While the batch owns a bypass run, frames other threads enqueue wait for
//! its end (then the run goes on for them), as they would behind one long
//! `sch_direct_xmit`. The caller must not send on the same transmit queue
//! from inside a batch (a filter hook that transmits, neighbour resolution):
//! the transmit lock is held; finish the batch first.

use std::collections::VecDeque;

use crate::buf::{GsoType, PacketBuf};
use crate::dev::queue::{pick_tx, QueueXmitError, XmitCtx};
use crate::dev::xmit::{drop_frame, finish_frame, freed, validate_xmit, xmit_one, TxCount};
use crate::dev::{NetDevice, QdiscSlot, TxLock, TxQueue, TxQueueCtl, TxStatus};
use crate::netfilter::{HookList, HookPoint};
use crate::offload::Features;
use crate::sched::run::{self, end_bypass, requeue};
use crate::sched::NetXmit;
use crate::stats::DropSite;

/// How the batch's frames reach the driver (the branches of
/// `__dev_queue_xmit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// Not begun: the first frame begins the batch.
    Idle,
    /// The device is down: every frame is dropped (`ENETDOWN`).
    Down,
    /// A queueless device: straight to the driver.
    NoQueue,
    /// An empty qdisc bypassed, its run owned by the batch.
    Bypass,
    /// Enqueue, then run the queue if nobody does.
    Enqueue,
}

/// A batch of frames on their way through one transmit queue. See the
/// module documentation.
pub struct XmitBatch<'a> {
    ctx: XmitCtx<'a>,
    dev: &'a NetDevice,
    txq: &'a TxQueue,
    /// The queue whose qdisc serves `txq` (itself, or queue 0 under a root
    /// shared by several queues).
    root: &'a TxQueue,
    /// The queue's flow control (stopped by its driver).
    ctl: &'a TxQueueCtl,
    /// `queue_mapping` of the frames: the queue's index + 1.
    mapping: u16,
    feats: Features,
    /// The device cannot finish a checksum (`skb_checksum_help` is due
    /// for a `CHECKSUM_PARTIAL` frame) or take page fragments
    /// (`skb_linearize`): `validate_xmit_skb`'s two questions, asked of
    /// the device once.
    csum_help: bool,
    linearize: bool,
    path: Path,
    /// The transmit lock, held while frames go straight to the driver
    /// (none for an LLTX driver).
    driver: Option<TxLock<'a>>,
    /// The last frame given to the driver went with `xmit_more`: a flush is
    /// owed if no frame follows.
    owed_flush: bool,
    /// Frames and bytes the driver took.
    tx: TxCount,
    /// Frames and bytes that bypassed the qdisc (its "sent" count).
    bypassed: TxCount,
    /// Per-packet tracepoints may be wanted (`tracing::level_enabled!` at
    /// TRACE), read when the batch is made and at each end: a test of a
    /// field per frame when they are off (a subscriber that comes
    /// mid-batch sees the next batch).
    traced: bool,
    /// The hooks at [`HookPoint::Egress`], read once for the batch (`None`:
    /// none, the kernel's `egress_needed_key` off).
    egress: Option<HookList<'a>>,
    /// `traced` or an egress hook: each frame takes [`XmitBatch::xmit_slow`].
    slow: bool,
    /// Segments of a GSO frame, or frames to requeue: the queue's reusable
    /// frame buffer, taken from its slot when first needed.
    frames: Option<VecDeque<PacketBuf>>,
    /// The queue's run, kept by the batch between its enqueued frames
    /// (`Some`: owned, with the run's frame buffer; see
    /// [`XmitBatch::enqueue`]).
    held: Option<VecDeque<PacketBuf>>,
}

impl<'a> XmitBatch<'a> {
    /// A batch on `dev`, begun by its first frame ([`XmitBatch::xmit`]).
    pub fn new(ctx: XmitCtx<'a>, dev: &'a NetDevice) -> Self {
        let txq = &dev.queues()[0];
        let traced = tracing::level_enabled!(tracing::Level::TRACE);
        let egress = ctx.hooks.list(HookPoint::Egress);
        XmitBatch {
            ctx,
            dev,
            txq,
            root: txq,
            ctl: txq.ctl(),
            mapping: 1,
            feats: dev.features(),
            csum_help: false,
            linearize: false,
            path: Path::Idle,
            driver: None,
            owed_flush: false,
            tx: TxCount::default(),
            bypassed: TxCount::default(),
            traced,
            slow: traced || egress.is_some(),
            egress,
            frames: None,
            held: None,
        }
    }

    /// Begins the batch for frames like `first` (`netdev_pick_tx` by its
    /// `queue_mapping`, flow hash and socket): reads the device state and
    /// the qdisc once, claims the queue's run for a bypass, and takes the
    /// transmit lock when frames will go straight to the driver.
    fn begin(&mut self, first: &PacketBuf) {
        let dev = self.dev;
        // A connected socket's frames consult and record its queue.
        let sk = first.owner().filter(|_| first.meta.sk.connected());
        let idx = pick_tx(dev, first.meta.queue_mapping, first.meta.hash, sk);
        let txq = &dev.queues()[idx];
        (self.txq, self.ctl, self.mapping) = (txq, txq.ctl(), idx as u16 + 1);
        self.feats = dev.features();
        self.csum_help = !self.feats.can_csum();
        self.linearize = !self.feats.contains(Features::SG);
        if !dev.is_up() {
            self.path = Path::Down;
            return;
        }
        if txq.is_noqueue() {
            // `q->enqueue == NULL`, read without the qdisc lock.
            (self.root, self.path) = (txq, Path::NoQueue);
            self.driver = Some(txq.tx_lock());
            return;
        }
        let (root, mut slot) = dev.root_slot(txq);
        self.root = root;
        self.path = if slot.qdisc.is_noqueue() {
            Path::NoQueue
        } else if slot.can_bypass_now() {
            slot.running = true;
            Path::Bypass
        } else {
            Path::Enqueue
        };
        drop(slot);
        if self.path != Path::Enqueue {
            self.driver = Some(txq.tx_lock());
        }
    }

    /// True once the first frame began the batch (and until it ends).
    #[inline]
    pub fn is_begun(&self) -> bool {
        self.path != Path::Idle
    }

    /// Kernel: `__dev_queue_xmit()` for one frame (link header in place).
    /// `more` says another frame of the batch follows at once (the driver's
    /// `xmit_more`). The frame is consumed either way; an error is the one
    /// `dev_queue_xmit` returns for it.
    #[inline(always)]
    pub fn xmit(&mut self, mut pkt: PacketBuf, more: bool) -> Result<(), QueueXmitError> {
        // IFF_XMIT_DST_RELEASE: nothing below needs the route.
        pkt.meta.dst = None;
        let len = pkt.len();
        self.xmit_sized(pkt, len, more)
    }

    /// [`XmitBatch::xmit`] of a frame of `len` bytes that carries no route
    /// (its output batch took it).
    #[inline(always)]
    pub fn xmit_sized(
        &mut self,
        pkt: PacketBuf,
        len: usize,
        more: bool,
    ) -> Result<(), QueueXmitError> {
        debug_assert!(pkt.meta.dst.is_none() && pkt.len() == len);
        if self.slow {
            return self.xmit_slow(pkt, len, more);
        }
        self.xmit_queued(pkt, len, more, false)
    }

    /// [`XmitBatch::xmit_sized`] with an egress hook or the per-packet
    /// tracepoints: the hook's verdict (`nf_hook_egress`: a drop ends the
    /// frame), `net_dev_queue`, then the frame's way (whose `xmit_one`
    /// fires the other tracepoints).
    #[cold]
    #[inline(never)]
    fn xmit_slow(
        &mut self,
        mut pkt: PacketBuf,
        len: usize,
        more: bool,
    ) -> Result<(), QueueXmitError> {
        if let Some(h) = &self.egress {
            if h.run(HookPoint::Egress, &mut pkt, self.dev).is_drop() {
                return Err(self.egress_drop(pkt));
            }
        }
        if self.traced {
            net_dev_queue(self.dev, len);
        }
        self.xmit_queued(pkt, len, more, self.traced)
    }

    /// Kernel: `nf_hook_slow()`'s `NF_DROP` under `nf_hook_egress()`: the
    /// frame freed (`NETFILTER_DROP`, not a device drop) and
    /// `NET_XMIT_DROP` returned.
    #[cold]
    fn egress_drop(&mut self, pkt: PacketBuf) -> QueueXmitError {
        self.ctx.counters.drop_at(DropSite::EgressHookDrop);
        freed(&self.ctx, self.dev, pkt, DropSite::EgressHookDrop);
        QueueXmitError::Dropped
    }

    /// [`XmitBatch::xmit_sized`] after its `net_dev_queue` event: the frame
    /// down the batch's path; `traced` is `self.traced`, passed as a
    /// constant so the untraced path tests nothing more.
    #[inline(always)]
    fn xmit_queued(
        &mut self,
        mut pkt: PacketBuf,
        len: usize,
        more: bool,
        traced: bool,
    ) -> Result<(), QueueXmitError> {
        match self.path {
            Path::Bypass => {
                pkt.meta.queue_mapping = self.mapping;
                self.bypass(pkt, len, more, traced);
                Ok(())
            }
            Path::NoQueue => {
                pkt.meta.queue_mapping = self.mapping;
                self.noqueue(pkt, len, more, traced)
            }
            _ => self.xmit_other(pkt, len, more),
        }
    }

    /// [`XmitBatch::xmit`] for a batch not begun, enqueueing or on a device
    /// that is down.
    #[inline(never)]
    fn xmit_other(
        &mut self,
        mut pkt: PacketBuf,
        len: usize,
        more: bool,
    ) -> Result<(), QueueXmitError> {
        if self.path == Path::Idle {
            self.begin(&pkt);
            if matches!(self.path, Path::Bypass | Path::NoQueue) {
                return self.xmit_queued(pkt, len, more, self.traced);
            }
        }
        pkt.meta.queue_mapping = self.mapping;
        match self.path {
            Path::Down => {
                drop_frame(self.ctx, self.dev, pkt, DropSite::DevDown);
                Err(QueueXmitError::NetDown)
            }
            _ => self.enqueue(pkt),
        }
    }

    /// The queueless branch: validate and hand to the driver; a stopped
    /// queue or a refusal drops the frame (and the rest of its segments).
    #[inline(always)]
    fn noqueue(
        &mut self,
        mut pkt: PacketBuf,
        len: usize,
        more: bool,
        traced: bool,
    ) -> Result<(), QueueXmitError> {
        if self.ctl.is_stopped() {
            self.flush_owed();
            drop_frame(self.ctx, self.dev, pkt, DropSite::NoqueueStopped);
            return Err(QueueXmitError::NetDown);
        }
        if pkt.meta.gso_type != GsoType::None {
            return self.noqueue_segments(pkt, more);
        }
        self.finish_frame(&mut pkt);
        match self.direct(pkt, len, more, traced) {
            Ok(()) => Ok(()),
            Err(p) => {
                drop_frame(self.ctx, self.dev, p, DropSite::NoqueueBusy);
                Err(QueueXmitError::NetDown)
            }
        }
    }

    /// [`XmitBatch::noqueue`] for a GSO frame: segmented in software when
    /// the device cannot, each segment to the driver.
    #[cold]
    fn noqueue_segments(&mut self, pkt: PacketBuf, more: bool) -> Result<(), QueueXmitError> {
        let mut frames = self.take_frames();
        validate_xmit(self.ctx, self.dev, pkt, &mut frames);
        let mut r = Ok(());
        while let Some(p) = frames.pop_front() {
            if r.is_err() {
                drop_frame(self.ctx, self.dev, p, DropSite::NoqueueBusy);
                continue;
            }
            let next = more || !frames.is_empty();
            let len = p.len();
            if let Err(p) = self.direct(p, len, next, self.traced) {
                drop_frame(self.ctx, self.dev, p, DropSite::NoqueueBusy);
                r = Err(QueueXmitError::NetDown);
            }
        }
        self.frames = Some(frames);
        r
    }

    /// The bypass (`qdisc_bstats_update`, `sch_direct_xmit`): the frame is
    /// counted as sent by the qdisc and given to the driver; one the queue
    /// cannot take now is requeued, and the batch enqueues from then on.
    #[inline(always)]
    fn bypass(&mut self, mut pkt: PacketBuf, len: usize, more: bool, traced: bool) {
        self.bypassed.add(len);
        if pkt.meta.gso_type != GsoType::None {
            return self.bypass_segments(pkt, more);
        }
        self.finish_frame(&mut pkt);
        if self.ctl.is_stopped() {
            return self.give_up_bypass(Some(pkt));
        }
        if let Err(p) = self.direct(pkt, len, more, traced) {
            self.give_up_bypass(Some(p));
        }
    }

    /// [`XmitBatch::bypass`] for a GSO frame: its segments go in order; the
    /// first the queue cannot take is requeued with those after it.
    #[cold]
    fn bypass_segments(&mut self, pkt: PacketBuf, more: bool) {
        let mut frames = self.take_frames();
        validate_xmit(self.ctx, self.dev, pkt, &mut frames);
        while let Some(p) = frames.pop_front() {
            let next = more || !frames.is_empty();
            let refused = if self.ctl.is_stopped() {
                Some(p)
            } else {
                let len = p.len();
                self.direct(p, len, next, self.traced).err()
            };
            if let Some(p) = refused {
                frames.push_front(p);
                self.frames = Some(frames);
                return self.give_up_bypass(None);
            }
        }
        self.frames = Some(frames);
    }

    /// `validate_xmit_skb` for a frame that is not a GSO packet: checksum
    /// help and linearizing, when the device needs them.
    #[inline(always)]
    fn finish_frame(&self, pkt: &mut PacketBuf) {
        if self.csum_help | self.linearize {
            finish_frame(pkt, self.feats);
        }
    }

    /// Hands one validated frame to the driver (`xmit_one`, with its
    /// tracepoints when `traced`) under the held transmit lock; gives back a
    /// frame the driver refused (after flushing what it held back).
    #[inline(always)]
    fn direct(
        &mut self,
        pkt: PacketBuf,
        len: usize,
        more: bool,
        traced: bool,
    ) -> Result<(), PacketBuf> {
        let Some(driver) = self.driver.as_mut() else {
            return Err(pkt);
        };
        match xmit_one(
            &self.ctx,
            self.dev,
            driver,
            (pkt, len),
            more,
            &mut self.tx,
            traced,
        ) {
            TxStatus::Ok | TxStatus::Error => {
                self.owed_flush = more;
                Ok(())
            }
            TxStatus::Busy(p) => {
                driver.flush();
                self.owed_flush = false;
                Err(p)
            }
        }
    }

    /// The end of a bypass run cut short: `refused` (or the frames held,
    /// the refused first) requeued, the queue rescheduled, the run given up
    /// (`qdisc_run_end`); the batch enqueues from now on.
    #[cold]
    fn give_up_bypass(&mut self, refused: Option<PacketBuf>) {
        self.flush_owed();
        self.driver = None;
        let mut frames = self.take_frames();
        if let Some(p) = refused {
            frames.push_front(p);
        }
        let mut slot = self.root.q.lock();
        self.settle_bypassed(&mut slot);
        for p in frames.iter_mut() {
            // They wait from now on, in front of the qdisc.
            p.meta.enqueued = self.ctx.now.as_nanos();
            p.meta.qdisc = Some(slot.handle);
            p.meta.class = 0;
        }
        requeue(self.root, &mut slot, &mut frames);
        slot.running = false;
        slot.put_batch(frames);
        self.path = Path::Enqueue;
    }

    /// Adds the frames that bypassed the qdisc to its "sent" counts
    /// (`qdisc_bstats_update`) and starts counting over.
    fn settle_bypassed(&mut self, slot: &mut QdiscSlot) {
        let b = std::mem::take(&mut self.bypassed);
        let st = slot.qdisc.stats_mut();
        st.packets += b.packets;
        st.bytes += b.bytes;
    }

    /// Enqueue and `qdisc_run` (`__dev_xmit_skb` when the qdisc is not
    /// bypassed): the qdisc's verdict is the frame's. The run starts under
    /// the lock of the enqueue when nobody else runs the queue. A run that
    /// empties the qdisc and sends everything stays the batch's until its
    /// next frame or its end (as a bypass run does): the next frame's
    /// enqueue runs the qdisc as one that found the run free would, one
    /// lock per frame where enqueue, dequeue and the end of the run took
    /// three; others' frames queued meanwhile go with the batch's next
    /// run.
    #[inline]
    fn enqueue(&mut self, mut pkt: PacketBuf) -> Result<(), QueueXmitError> {
        let (ctx, dev, root) = (self.ctx, self.dev, self.root);
        let mut slot = root.q.lock();
        let owned = match self.held.take() {
            Some(f) => {
                slot.put_batch(f);
                true
            }
            None => !slot.running,
        };
        let s = &mut *slot;
        // What a capture shows of the wait (a bypassed frame waited in none).
        pkt.meta.enqueued = ctx.now.as_nanos();
        pkt.meta.qdisc = Some(s.handle);
        pkt.meta.class = 0;
        let rc = s.qdisc.enqueue(pkt, ctx.now, &mut s.to_free);
        if !s.to_free.is_empty() {
            run::free_dropped(ctx, dev, &mut s.to_free);
        }
        if owned {
            s.running = true;
            run::run_owned(ctx, (dev, root), slot, &mut self.tx, &mut self.held);
        }
        match rc {
            NetXmit::Drop => Err(QueueXmitError::Dropped),
            NetXmit::Success | NetXmit::Congested => Ok(()),
        }
    }

    /// The queue's reusable frame buffer (taken from its slot once).
    fn take_frames(&mut self) -> VecDeque<PacketBuf> {
        match self.frames.take() {
            Some(f) => f,
            None => self.root.q.lock().take_batch(),
        }
    }

    /// Flushes the driver when the last frame went with `xmit_more`.
    #[inline]
    fn flush_owed(&mut self) {
        if std::mem::take(&mut self.owed_flush) {
            if let Some(d) = self.driver.as_mut() {
                d.flush();
            }
        }
    }

    /// Ends the batch: the driver flushed if owed and the transmit lock
    /// released, the device's counters added, and for a bypass the qdisc's
    /// "sent" and the end of its run (`qdisc_run_end`, or running on for
    /// frames others queued meanwhile). The next frame begins it anew.
    pub fn end(&mut self) {
        self.flush_owed();
        self.driver = None;
        if let Some(f) = self.held.take() {
            run::end_owned(self.ctx, (self.dev, self.root), f, &mut self.tx);
        }
        self.tx.settle(self.dev);
        self.traced = tracing::level_enabled!(tracing::Level::TRACE);
        self.slow = self.traced || self.egress.is_some();
        let frames = self.frames.take();
        let path = std::mem::replace(&mut self.path, Path::Idle);
        if path != Path::Bypass {
            if let Some(f) = frames {
                self.root.q.lock().put_batch(f);
            }
            return;
        }
        let mut slot = self.root.q.lock();
        self.settle_bypassed(&mut slot);
        if let Some(f) = frames {
            slot.put_batch(f);
        }
        let all_sent = !self.ctl.is_stopped();
        end_bypass(self.ctx, self.dev, self.root, slot, all_sent);
    }
}

impl Drop for XmitBatch<'_> {
    fn drop(&mut self) {
        if self.path != Path::Idle {
            self.end();
        }
    }
}

/// Tracepoint `net_dev_queue` (`include/trace/events/net.h`): a frame of
/// `len` bytes handed to the device layer.
#[cold]
#[inline(never)]
fn net_dev_queue(dev: &NetDevice, len: usize) {
    tracing::trace!(
        name: "net_dev_queue",
        target: crate::trace::NET,
        dev = %dev.name(),
        len,
        "net_dev_queue"
    );
}

/// Kernel: `__dev_queue_xmit()`, net/core/dev.c. Transmits `pkt` (its link
/// header already in place) on `dev`: a batch of one.
pub fn queue_xmit(ctx: XmitCtx<'_>, dev: &NetDevice, pkt: PacketBuf) -> Result<(), QueueXmitError> {
    let mut b = XmitBatch::new(ctx, dev);
    let r = b.xmit(pkt, false);
    b.end();
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::{DevConfig, Driver, TxStatus};
    use crate::wire::EthernetAddress;
    use crate::Stack;

    /// Takes every frame.
    struct Sink;

    impl Driver for Sink {
        fn start_xmit(&mut self, _pkt: PacketBuf, _more: bool) -> TxStatus {
            TxStatus::Ok
        }
    }

    /// A batch ended mid-way (deferred work, neighbour resolution) and
    /// begun again bypasses anew: the qdisc counts each frame it let by
    /// once, as the kernel's `qdisc_bstats_update` does per frame.
    #[test]
    fn a_batch_ended_and_begun_again_counts_each_bypassed_frame_once() {
        let stack = Stack::new();
        let eth = DevConfig::ethernet("eth0", EthernetAddress([2, 0, 0, 0, 0, 1]));
        stack.add_device(eth, vec![Box::new(Sink)]).unwrap();
        let dev = stack.device("eth0").unwrap();
        let mut b = XmitBatch::new(stack.xmit_ctx(), &dev);
        for _ in 0..3 {
            b.xmit(PacketBuf::from_slice(64, &[0u8; 60]), false)
                .unwrap();
            assert_eq!(b.path, Path::Bypass, "an empty qdisc is bypassed");
            b.end();
        }
        let q = dev.queues()[0].with_qdisc(|q| *q.stats());
        assert_eq!((q.packets, q.bytes), (3, 180));
        assert_eq!(dev.stats.get(crate::stats::DevCounter::TxPackets), 3);
    }

    /// A batch keeps the run of a queue it emptied between its frames: a
    /// frame another sender enqueues meanwhile waits (the run is taken),
    /// and goes out with the batch's next frame or at its end, counted
    /// once by the qdisc and the device; then the run is free again.
    #[test]
    fn a_kept_run_sends_what_others_queued_at_the_batch_end() {
        let stack = Stack::new();
        let eth = DevConfig::ethernet("eth0", EthernetAddress([2, 0, 0, 0, 0, 1]));
        stack.add_device(eth, vec![Box::new(Sink)]).unwrap();
        let dev = stack.device("eth0").unwrap();
        let spec: crate::sched::QdiscSpec = "tbf rate 1gbit burst 100k limit 100k".parse().unwrap();
        let tbf = spec.build(1000, 1514).unwrap();
        dev.replace_qdisc(0, tbf, 0x1_0000).unwrap();
        let frame = || PacketBuf::from_slice(64, &[0u8; 60]);
        let mut b = XmitBatch::new(stack.xmit_ctx(), &dev);
        b.xmit(frame(), true).unwrap();
        assert_eq!(b.path, Path::Enqueue, "tbf is not bypassed");
        assert!(b.held.is_some(), "the emptied run is kept");
        let mut other = XmitBatch::new(stack.xmit_ctx(), &dev);
        other.xmit(frame(), false).unwrap();
        other.end();
        let q = |dev: &NetDevice| dev.queues()[0].with_qdisc(|q| *q.stats());
        assert_eq!((q(&dev).qlen, q(&dev).packets), (1, 1), "it waits");
        b.end();
        assert_eq!((q(&dev).qlen, q(&dev).packets), (0, 2));
        assert_eq!(dev.stats.get(crate::stats::DevCounter::TxPackets), 2);
        assert!(!dev.queues()[0].q.lock().running, "the run is given up");
    }
}
