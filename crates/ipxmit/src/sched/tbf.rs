//! `tbf`: the token bucket filter, a shaper.
//!
//! Stands for `net/sched/sch_tbf.c` (`tbf_enqueue`, `tbf_segment`,
//! `tbf_dequeue`, `tbf_change`, `tbf_reset`).
//!
//! # Algorithm
//!
//! Tokens are time: a bucket holds up to `buffer` nanoseconds of sending at
//! the `rate` (the time `burst` bytes take), and fills at one nanosecond per
//! nanosecond. A packet of `len` bytes costs the time it takes at the rate
//! ([`RateCfg::l2t_ns`]). With a `peakrate` a second bucket of `mtu`
//! nanoseconds (the time `minburst` bytes take at the peak rate) bounds how
//! fast even a full first bucket empties.
//!
//! - **Enqueue.** A packet longer than `max_size` (the burst, or the
//!   minburst when smaller) could never be sent: dropped (a GSO packet whose
//!   segments each fit is cut into them, and they are queued instead). The
//!   others go to the inner queue, a `bfifo` of `limit` bytes; its drops are
//!   counted here too.
//! - **Dequeue.** The head of the inner queue is looked at. With `t_c` the
//!   time of the last departure, `toks = min(now - t_c, buffer) + tokens`,
//!   capped at `buffer`, less the packet's cost; `ptoks` likewise with the
//!   peak bucket (`min(now - t_c, buffer) + ptokens`, capped at `mtu`, less
//!   the cost at the peak rate). When neither is negative the packet leaves,
//!   and `t_c`, `tokens`, `ptokens` take the new values. Otherwise nothing
//!   leaves, `overlimits` counts one, and the watchdog is armed for `now +
//!   max(-toks, -ptoks)`: the earliest the head can go (the qdisc never
//!   reorders to send a shorter packet that would fit).
//!
//! All arithmetic is integer nanoseconds, as the kernel's, so departure
//! times on the virtual clock are the kernel's to the nanosecond. A fresh or
//! reset tbf starts with both buckets full.

use std::collections::VecDeque;

use super::fifo::Bfifo;
use super::rate::{LinkLayer, RateCfg};
use super::{Dequeued, NetXmit, OptValue, Qdisc, QdiscStats, ToFree};
use crate::buf::{BufPool, GsoType, PacketBuf};
use crate::offload::Features;
use crate::stats::DropReason;
use crate::time::Instant;
use crate::units::{format_rate, format_size, format_time_us};

/// What a `tbf` is configured with: what `tc qdisc add ... tbf` sends
/// (`TCA_TBF_PARMS` with `TCA_TBF_BURST` and `TCA_TBF_PBURST`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TbfConfig {
    /// The rate, with its overhead, minimum packet unit and link layer.
    pub rate: RateCfg,
    /// The peak rate, if any.
    pub peak: Option<RateCfg>,
    /// The bucket's size in bytes (`burst`).
    pub burst: u32,
    /// The peak bucket's size in bytes (`mtu`/`minburst`); used with a
    /// peak rate only.
    pub pburst: u32,
    /// The inner `bfifo`'s limit in bytes; 0 gives no inner queue (the
    /// kernel's `noop_qdisc`: every packet dropped).
    pub limit: u32,
}

/// Why a [`TbfConfig`] is refused (`tbf_change`'s `-EINVAL`s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TbfError {
    /// The peak rate is not above the rate.
    #[error("sch_tbf: peakrate {peak} is lower than or equals to rate {rate} !")]
    PeakNotAboveRate {
        /// The peak rate, bytes per second.
        peak: u64,
        /// The rate, bytes per second.
        rate: u64,
    },
    /// No packet could ever be sent (`max_size` 0).
    #[error("sch_tbf: burst is zero")]
    ZeroBurst,
}

/// The `tbf` qdisc. See the module documentation.
#[derive(Debug)]
pub struct Tbf {
    cfg: TbfConfig,
    /// The longest packet that can ever be sent.
    max_size: u32,
    /// The bucket's depth and the peak bucket's, in nanoseconds.
    buffer: i64,
    mtu: i64,
    tokens: i64,
    ptokens: i64,
    /// The last departure (`t_c`).
    t_c: Instant,
    /// The inner queue (`None`: the kernel's `noop_qdisc`).
    child: Option<Bfifo>,
    /// The device's `psched_mtu` (MTU plus link-layer header).
    psched_mtu: u32,
    stats: QdiscStats,
    /// Segments of a GSO packet being queued (kept for its capacity).
    segs: VecDeque<PacketBuf>,
}

impl Tbf {
    /// Kernel: `tbf_init()` and `tbf_change()`. A tbf on a device whose
    /// `psched_mtu` (MTU plus link-layer header) is `psched_mtu`.
    pub fn new(cfg: TbfConfig, psched_mtu: u32) -> Result<Tbf, TbfError> {
        let mut t = Tbf {
            cfg,
            max_size: 0,
            buffer: 0,
            mtu: 0,
            tokens: 0,
            ptokens: 0,
            t_c: Instant::ZERO,
            child: None,
            psched_mtu,
            stats: QdiscStats::default(),
            segs: VecDeque::new(),
        };
        t.change(cfg)?;
        Ok(t)
    }

    /// Kernel: `tbf_change()`. Takes a new configuration: the buckets
    /// start full again; the inner queue keeps its packets with its new
    /// limit (`fifo_set_limit`), or is made when there was none.
    pub fn change(&mut self, cfg: TbfConfig) -> Result<(), TbfError> {
        let rate = cfg.rate;
        let buffer = rate.l2t_ns(cfg.burst);
        let mut max_size = cfg.burst;
        let mut mtu = 0;
        if let Some(peak) = cfg.peak {
            if peak.bytes_per_sec() <= rate.bytes_per_sec() {
                return Err(TbfError::PeakNotAboveRate {
                    peak: peak.bytes_per_sec(),
                    rate: rate.bytes_per_sec(),
                });
            }
            max_size = max_size.min(cfg.pburst);
            mtu = peak.l2t_ns(cfg.pburst);
        }
        if max_size == 0 {
            return Err(TbfError::ZeroBurst);
        }
        match &mut self.child {
            Some(c) => c.set_limit(cfg.limit),
            None if cfg.limit > 0 => self.child = Some(Bfifo::new(cfg.limit, self.psched_mtu)),
            None => {}
        }
        self.cfg = cfg;
        self.max_size = max_size;
        // The kernel keeps these as s64 of a u32-bounded value.
        self.buffer = buffer.min(u64::from(u32::MAX)) as i64;
        self.mtu = mtu.min(u64::from(u32::MAX)) as i64;
        self.tokens = self.buffer;
        self.ptokens = self.mtu;
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &TbfConfig {
        &self.cfg
    }

    /// The inner queue's statistics (`tc -s class show`), if it has one.
    pub fn child_stats(&self) -> Option<&QdiscStats> {
        self.child.as_ref().map(|c| c.stats())
    }

    /// Kernel: `tbf_segment()`. Cuts a GSO packet whose segments each fit
    /// `max_size` and queues the segments; the packet counts as one that
    /// became as many as were queued.
    fn enqueue_segments(&mut self, pkt: PacketBuf, now: Instant, to_free: &mut ToFree) -> NetXmit {
        let mut segs = std::mem::take(&mut self.segs);
        if !crate::offload::gso::segment_into(pkt, Features::NONE, &BufPool::shared(), &mut segs) {
            self.segs = segs;
            self.stats.drops += 1;
            return NetXmit::Drop;
        }
        let mut queued = 0;
        for s in segs.drain(..) {
            let len = s.len();
            match self.enqueue_child(s, now, to_free) {
                NetXmit::Success => {
                    queued += 1;
                    self.stats.queued(len);
                }
                _ => self.stats.drops += 1,
            }
        }
        self.segs = segs;
        if queued > 0 {
            NetXmit::Success
        } else {
            NetXmit::Drop
        }
    }

    /// The inner queue's enqueue (`noop_enqueue` without one: dropped,
    /// `NET_XMIT_CN`, which is not one of this qdisc's drops).
    fn enqueue_child(&mut self, pkt: PacketBuf, now: Instant, to_free: &mut ToFree) -> NetXmit {
        match &mut self.child {
            Some(c) => c.enqueue(pkt, now, to_free),
            None => {
                to_free.push(pkt, DropReason::QdiscDrop);
                NetXmit::Congested
            }
        }
    }

    /// Does a GSO packet's every segment fit `max_size`
    /// (`skb_gso_validate_mac_len`)? A UFO fragment's `gso_size` counts the
    /// UDP header (`skb_gso_transport_seglen`), a UDP GSO segment's does not.
    fn segments_fit(&self, pkt: &PacketBuf) -> bool {
        let seg = usize::from(pkt.meta.gso_size);
        let th = usize::from(pkt.meta.transport_header).saturating_sub(pkt.data_offset());
        let hdrs = match pkt.meta.gso_type {
            GsoType::None => return false,
            GsoType::UdpL4 => th + 8,
            GsoType::Udp => th,
        };
        seg != 0 && hdrs + seg <= self.max_size as usize
    }
}

impl Qdisc for Tbf {
    fn kind(&self) -> &'static str {
        "tbf"
    }

    /// Kernel: `tbf_enqueue()`.
    fn enqueue(&mut self, pkt: PacketBuf, now: Instant, to_free: &mut ToFree) -> NetXmit {
        let len = pkt.len();
        if len > self.max_size as usize {
            if self.segments_fit(&pkt) {
                return self.enqueue_segments(pkt, now, to_free);
            }
            self.stats.drops += 1;
            to_free.push(pkt, DropReason::QdiscDrop);
            return NetXmit::Drop;
        }
        match self.enqueue_child(pkt, now, to_free) {
            NetXmit::Success => {
                self.stats.queued(len);
                NetXmit::Success
            }
            NetXmit::Drop => {
                self.stats.drops += 1;
                NetXmit::Drop
            }
            NetXmit::Congested => NetXmit::Congested,
        }
    }

    /// Kernel: `tbf_dequeue()`. See the module documentation.
    fn dequeue(&mut self, now: Instant) -> Dequeued {
        let Some(len) = self.child.as_ref().and_then(|c| c.peek()).map(|p| p.len()) else {
            return Dequeued::Empty;
        };
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        let elapsed =
            i64::try_from(now.as_nanos().saturating_sub(self.t_c.as_nanos())).unwrap_or(i64::MAX);
        let mut toks = elapsed.min(self.buffer);
        let mut ptoks = 0;
        if let Some(peak) = &self.cfg.peak {
            ptoks = (toks + self.ptokens).min(self.mtu);
            ptoks -= peak.l2t_ns(len) as i64;
        }
        toks = (toks + self.tokens).min(self.buffer);
        toks -= self.cfg.rate.l2t_ns(len) as i64;
        if (toks | ptoks) >= 0 {
            let Some(Dequeued::Packet(p)) = self.child.as_mut().map(|c| c.dequeue(now)) else {
                return Dequeued::Empty;
            };
            self.t_c = now;
            self.tokens = toks;
            self.ptokens = ptoks;
            self.stats.unqueued(p.len());
            self.stats.sent(p.len());
            return Dequeued::Packet(p);
        }
        self.stats.overlimits += 1;
        let wait = (-toks).max(-ptoks) as u64;
        Dequeued::Throttled(Instant::from_nanos(now.as_nanos().saturating_add(wait)))
    }

    /// The inner queue's head (what a parent looks at; the kernel's
    /// `qdisc_peek_dequeued` would also take the tokens into account).
    fn peek(&self) -> Option<&PacketBuf> {
        self.child.as_ref().and_then(|c| c.peek())
    }

    /// Kernel: `tbf_reset()`: the inner queue emptied, both buckets full.
    fn reset(&mut self, to_free: &mut ToFree) {
        if let Some(c) = &mut self.child {
            c.reset(to_free);
        }
        self.stats.backlog = 0;
        self.stats.qlen = 0;
        self.t_c = Instant::ZERO;
        self.tokens = self.buffer;
        self.ptokens = self.mtu;
    }

    fn stats(&self) -> &QdiscStats {
        &self.stats
    }

    fn stats_mut(&mut self) -> &mut QdiscStats {
        &mut self.stats
    }

    /// tc's `tbf_print_opt()`: `rate 1Mbit burst 10Kb lat 50ms `, or
    /// `limit 1000b ` in place of a negative latency; the peak rate and its
    /// minburst, a non-zero overhead and a link layer other than Ethernet
    /// when set. Trailing space included, as tc prints it.
    fn params(&self) -> String {
        self.print(false)
    }

    /// `tc -d`: the burst with its cell and `mpu`, the peak bucket as
    /// `mtu`, the link layer always.
    fn params_details(&self) -> String {
        self.print(true)
    }

    /// `tc -j`'s `options` (rate in bytes per second, sizes in bytes, the
    /// latency in microseconds).
    fn options(&self) -> Vec<(&'static str, OptValue)> {
        let d = self.dump();
        let mut o = vec![
            ("rate", OptValue::Num(d.rate)),
            ("burst", OptValue::Num(u64::from(d.burst))),
        ];
        if let Some((_, minburst)) = d.peak {
            o.push(("minburst", OptValue::Num(u64::from(minburst))));
        }
        match d.latency_us {
            Some(lat) => o.push(("lat", OptValue::Num(u64::from(lat)))),
            None => o.push(("limit", OptValue::Num(u64::from(self.cfg.limit)))),
        }
        if self.cfg.rate.overhead() != 0 {
            o.push((
                "overhead",
                OptValue::Num(u64::from(self.cfg.rate.overhead())),
            ));
        }
        if self.cfg.rate.linklayer() != LinkLayer::Ethernet {
            o.push((
                "linklayer",
                OptValue::Str(self.cfg.rate.linklayer().to_string()),
            ));
        }
        o
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    /// Its one class, `H:1`, holding the inner queue.
    fn classes(&self) -> Vec<u32> {
        vec![1]
    }
}

/// `PSCHED_SHIFT`: the kernel reports bucket sizes in ticks of 64 ns.
const PSCHED_SHIFT: u32 = 6;

/// tc's `tick_in_usec` from `/proc/net/psched` (`1000 64 1000000 ...`:
/// 1000 / 64 ticks per microsecond).
const TICKS_PER_USEC: f64 = 1000.0 / 64.0;

/// tc's `tc_core_tick2time()`: microseconds, truncated.
fn tick2time(ticks: u32) -> u32 {
    (f64::from(ticks) / TICKS_PER_USEC) as u32
}

/// tc's `tc_calc_xmitsize()`: the bytes `ticks` are at `rate` bytes/s.
fn xmitsize(rate: u64, ticks: u32) -> u32 {
    (rate as f64 * f64::from(tick2time(ticks)) / 1e6) as u32
}

/// What tc prints a tbf from: the kernel's dump, read back as tc does.
struct TbfDump {
    rate: u64,
    /// The bucket in bytes (from its ticks).
    burst: u32,
    /// The peak rate and its bucket in bytes.
    peak: Option<(u64, u32)>,
    /// The latency in microseconds, when not negative.
    latency_us: Option<u32>,
}

impl Tbf {
    /// Kernel: `tbf_dump()` (the buckets in ticks), then what tc's
    /// `tbf_print_opt()` computes from it.
    fn dump(&self) -> TbfDump {
        let c = &self.cfg;
        let ticks = |ns: i64| ((ns as u64) >> PSCHED_SHIFT) as u32;
        let (rate, buffer) = (c.rate.bytes_per_sec(), ticks(self.buffer));
        let secs = |rate: u64| 1e6 * (f64::from(c.limit) / rate as f64);
        let mut latency = secs(rate) - f64::from(tick2time(buffer));
        let peak = c.peak.map(|p| {
            let (prate, mtu) = (p.bytes_per_sec(), ticks(self.mtu));
            latency = latency.max(secs(prate) - f64::from(tick2time(mtu)));
            (prate, xmitsize(prate, mtu))
        });
        TbfDump {
            rate,
            burst: xmitsize(rate, buffer),
            peak,
            // tc's `sprint_time` takes a u32 of microseconds.
            latency_us: (latency >= 0.0).then_some(latency as u64 as u32),
        }
    }

    /// The text of `tbf_print_opt()`, `details` as `tc -d`.
    fn print(&self, details: bool) -> String {
        let d = self.dump();
        let c = &self.cfg;
        let mpu = |r: &RateCfg| format!("/1 mpu {}b", r.mpu());
        let mut o = format!(
            "rate {} burst {}",
            format_rate(d.rate * 8),
            format_size(u64::from(d.burst))
        );
        if details {
            o += &mpu(&c.rate);
        }
        o.push(' ');
        if let (Some((prate, minburst)), Some(p)) = (d.peak, &c.peak) {
            o += &format!("peakrate {} ", format_rate(prate * 8));
            match details {
                true => o += &format!("mtu {}{} ", format_size(u64::from(minburst)), mpu(p)),
                false => o += &format!("minburst {} ", format_size(u64::from(minburst))),
            }
        }
        match d.latency_us {
            Some(us) => o += &format!("lat {} ", format_time_us(u64::from(us))),
            None => o += &format!("limit {} ", format_size(u64::from(c.limit))),
        }
        if c.rate.overhead() != 0 {
            o += &format!("overhead {} ", c.rate.overhead());
        }
        if details || c.rate.linklayer() != LinkLayer::Ethernet {
            o += &format!("linklayer {} ", c.rate.linklayer());
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::rate::LinkLayer;

    fn pkt(len: usize) -> PacketBuf {
        PacketBuf::from_slice(0, &vec![0u8; len])
    }

    fn rate(bytes_ps: u64) -> RateCfg {
        RateCfg::new(bytes_ps, 0, 0, LinkLayer::Ethernet)
    }

    fn tbf(rate_bps: u64, burst: u32, limit: u32) -> Tbf {
        let cfg = TbfConfig {
            rate: rate(rate_bps),
            peak: None,
            burst,
            pburst: 0,
            limit,
        };
        Tbf::new(cfg, 1514).expect("valid tbf")
    }

    /// Runs the qdisc from `t0` as the generic layer does: dequeue while
    /// packets come, else sleep until the watchdog. Returns each departure
    /// time in nanoseconds.
    fn departures(q: &mut Tbf, t0: u64) -> Vec<u64> {
        let (mut now, mut out) = (t0, Vec::new());
        loop {
            match q.dequeue(Instant::from_nanos(now)) {
                Dequeued::Packet(_) => out.push(now),
                Dequeued::Throttled(t) => {
                    assert!(t.as_nanos() > now, "the watchdog is in the future");
                    now = t.as_nanos();
                }
                Dequeued::Empty => return out,
            }
        }
    }

    #[test]
    fn a_full_bucket_sends_its_burst_then_paces_at_the_rate() {
        // 1 Mbit/s, a bucket of 3000 bytes, 10 packets of 1000 bytes.
        let mut q = tbf(125_000, 3000, 100_000);
        let mut to_free = ToFree::default();
        for _ in 0..10 {
            assert_eq!(
                q.enqueue(pkt(1000), Instant::ZERO, &mut to_free),
                NetXmit::Success
            );
        }
        let start = 5_000_000_000;
        let d = departures(&mut q, start);
        let cost = rate(125_000).l2t_ns(1000) as i64;
        let buffer = rate(125_000).l2t_ns(3000) as i64;
        // The reference: a bucket of `buffer` ns, full at the start, each
        // packet leaving as soon as its cost is in it.
        let (mut level, mut t, mut want) = (buffer, start as i64, Vec::new());
        for _ in 0..10 {
            if level < cost {
                t += cost - level;
                level = cost;
            }
            want.push(t as u64);
            level -= cost;
        }
        assert_eq!(d, want);
        // Three leave at once (3000 bytes of burst), then one every 8 ms.
        assert_eq!(&d[..3], &[start; 3]);
        assert_eq!(d[4] - d[3], cost as u64);
        assert_eq!(q.stats().packets, 10);
        assert_eq!(q.stats().overlimits, 7);
        assert_eq!((q.stats().qlen, q.stats().backlog), (0, 0));
    }

    #[test]
    fn idle_time_refills_the_bucket_only_up_to_its_depth() {
        let mut q = tbf(125_000, 2000, 100_000);
        let mut tf = ToFree::default();
        for _ in 0..4 {
            q.enqueue(pkt(1000), Instant::ZERO, &mut tf);
        }
        assert_eq!(departures(&mut q, 0).len(), 4);
        // A long pause: the bucket holds 2000 bytes again, not more.
        for _ in 0..3 {
            q.enqueue(pkt(1000), Instant::ZERO, &mut tf);
        }
        let later = 60_000_000_000;
        let d = departures(&mut q, later);
        assert_eq!(&d[..2], &[later, later]);
        assert!(d[2] > later);
    }

    #[test]
    fn a_packet_longer_than_the_burst_is_dropped_at_enqueue() {
        let mut q = tbf(125_000, 1500, 100_000);
        let mut tf = ToFree::default();
        assert_eq!(q.enqueue(pkt(1501), Instant::ZERO, &mut tf), NetXmit::Drop);
        assert_eq!(
            q.enqueue(pkt(1500), Instant::ZERO, &mut tf),
            NetXmit::Success
        );
        assert_eq!(q.stats().drops, 1);
        assert_eq!(tf.len(), 1);
        assert_eq!((q.stats().qlen, q.stats().backlog), (1, 1500));
    }

    #[test]
    fn the_inner_bfifo_limit_drops_and_counts_here() {
        let mut q = tbf(125_000, 3000, 2500);
        let mut tf = ToFree::default();
        let r: Vec<_> = (0..3)
            .map(|_| q.enqueue(pkt(1000), Instant::ZERO, &mut tf))
            .collect();
        assert_eq!(r, [NetXmit::Success, NetXmit::Success, NetXmit::Drop]);
        assert_eq!(q.stats().drops, 1);
        assert_eq!(q.child_stats().map(|s| s.drops), Some(1));
    }

    #[test]
    fn a_peak_rate_spaces_even_a_full_bucket() {
        // Rate 1 Mbit/s with a 10000-byte bucket, peak 2 Mbit/s with a
        // 1000-byte peak bucket: packets of 1000 bytes leave 4 ms apart.
        let cfg = TbfConfig {
            rate: rate(125_000),
            peak: Some(rate(250_000)),
            burst: 10_000,
            pburst: 1000,
            limit: 100_000,
        };
        let mut q = Tbf::new(cfg, 1514).expect("valid");
        let mut tf = ToFree::default();
        for _ in 0..5 {
            q.enqueue(pkt(1000), Instant::ZERO, &mut tf);
        }
        let d = departures(&mut q, 1_000_000_000);
        let peak_cost = rate(250_000).l2t_ns(1000);
        assert_eq!(d[0], 1_000_000_000);
        for w in d.windows(2) {
            assert_eq!(w[1] - w[0], peak_cost);
        }
    }

    #[test]
    fn bad_configurations_are_refused() {
        let mut cfg = TbfConfig {
            rate: rate(125_000),
            peak: Some(rate(125_000)),
            burst: 10_000,
            pburst: 1500,
            limit: 10_000,
        };
        assert!(matches!(
            Tbf::new(cfg, 1514),
            Err(TbfError::PeakNotAboveRate { .. })
        ));
        cfg.peak = None;
        cfg.burst = 0;
        assert_eq!(Tbf::new(cfg, 1514).err(), Some(TbfError::ZeroBurst));
    }

    #[test]
    fn change_keeps_the_queue_and_refills_the_buckets() {
        let mut q = tbf(125_000, 1000, 10_000);
        let mut tf = ToFree::default();
        for _ in 0..3 {
            q.enqueue(pkt(1000), Instant::ZERO, &mut tf);
        }
        assert!(matches!(q.dequeue(Instant::ZERO), Dequeued::Packet(_)));
        assert!(matches!(q.dequeue(Instant::ZERO), Dequeued::Throttled(_)));
        let mut cfg = *q.config();
        cfg.burst = 2000;
        q.change(cfg).expect("valid");
        assert_eq!(q.stats().qlen, 2);
        assert!(matches!(q.dequeue(Instant::ZERO), Dequeued::Packet(_)));
        assert!(matches!(q.dequeue(Instant::ZERO), Dequeued::Packet(_)));
    }

    #[test]
    fn reset_empties_the_queue_and_fills_the_buckets() {
        let mut q = tbf(125_000, 1000, 10_000);
        let mut tf = ToFree::default();
        for _ in 0..3 {
            q.enqueue(pkt(1000), Instant::ZERO, &mut tf);
        }
        let _ = q.dequeue(Instant::ZERO);
        q.reset(&mut tf);
        assert_eq!((q.stats().qlen, q.stats().backlog), (0, 0));
        assert_eq!(tf.len(), 2);
        q.enqueue(pkt(1000), Instant::ZERO, &mut tf);
        assert!(matches!(q.dequeue(Instant::ZERO), Dequeued::Packet(_)));
    }
}

/// What tc prints for tbf, checked against the real tc (iproute2 6.1 on
/// Linux 6.18; the outputs below were taken from it).
#[cfg(test)]
mod tc_output {
    use crate::sched::QdiscSpec;

    /// (the words after `root`, `tc qdisc show`'s options, `tc -d`'s).
    const CASES: &[(&str, &str, &str)] = &[
        (
            "tbf rate 1mbit burst 10kb latency 50ms",
            "rate 1Mbit burst 10Kb lat 50ms ",
            "rate 1Mbit burst 10Kb/1 mpu 0b lat 50ms linklayer ethernet ",
        ),
        (
            "tbf limit 1000 burst 1500 rate 10000",
            "rate 10Kbit burst 1500b limit 1000b ",
            "rate 10Kbit burst 1500b/1 mpu 0b limit 1000b linklayer ethernet ",
        ),
        (
            "tbf limit 1000 burst 1500 rate 20000 mtu 1510 peakrate 30000",
            "rate 20Kbit burst 1500b peakrate 30Kbit minburst 1509b limit 1000b ",
            "rate 20Kbit burst 1500b/1 mpu 0b peakrate 30Kbit mtu 1509b/1 mpu 0b limit 1000b linklayer ethernet ",
        ),
        (
            "tbf burst 1500 rate 20000 latency 200ms",
            "rate 20Kbit burst 1500b lat 200ms ",
            "rate 20Kbit burst 1500b/1 mpu 0b lat 200ms linklayer ethernet ",
        ),
        (
            "tbf rate 100mbit burst 64kb limit 100kb overhead 24 mpu 64",
            "rate 100Mbit burst 64Kb lat 2.95ms overhead 24 ",
            "rate 100Mbit burst 64Kb/1 mpu 64b lat 2.95ms overhead 24 linklayer ethernet ",
        ),
        (
            "tbf rate 10gbit burst 1mb latency 1ms",
            "rate 10Gbit burst 1047500b lat 1ms ",
            "rate 10Gbit burst 1047500b/1 mpu 0b lat 1ms linklayer ethernet ",
        ),
        (
            "tbf rate 1.5mbit burst 3000 latency 70ms linklayer atm",
            "rate 1500Kbit burst 3338b lat 68.2ms linklayer atm ",
            "rate 1500Kbit burst 3338b/1 mpu 0b lat 68.2ms linklayer atm ",
        ),
        (
            "tbf rate 500kbit burst 5k limit 20k peakrate 1mbit mtu 2000",
            "rate 500Kbit burst 5Kb peakrate 1Mbit minburst 2000b lat 246ms ",
            "rate 500Kbit burst 5Kb/1 mpu 0b peakrate 1Mbit mtu 2000b/1 mpu 0b lat 246ms linklayer ethernet ",
        ),
        (
            "tbf rate 40gbit burst 100mb latency 10ms",
            "rate 40Gbit burst 104855000b lat 10ms ",
            "rate 40Gbit burst 104855000b/1 mpu 0b lat 10ms linklayer ethernet ",
        ),
        (
            "tbf rate 34359738368bit burst 10mb latency 10ms",
            "rate 34359Mbit burst 10484015b lat 10ms ",
            "rate 34359Mbit burst 10484015b/1 mpu 0b lat 10ms linklayer ethernet ",
        ),
        (
            "tbf rate 50gbit burst 100mb latency 10ms peakrate 60gbit mtu 9000",
            "rate 50Gbit burst 104856250b peakrate 60Gbit minburst 7500b lat 10ms ",
            "rate 50Gbit burst 104856250b/1 mpu 0b peakrate 60Gbit mtu 7500b/1 mpu 0b lat 10ms linklayer ethernet ",
        ),
        (
            "tbf rate 1mbit burst 10k latency 1000s",
            "rate 1Mbit burst 10Kb lat 1e+03s ",
            "rate 1Mbit burst 10Kb/1 mpu 0b lat 1e+03s linklayer ethernet ",
        ),
    ];

    #[test]
    fn show_prints_what_tc_prints() {
        for &(spec, text, details) in CASES {
            let q = spec
                .parse::<QdiscSpec>()
                .and_then(|s| s.build(1000, 1514))
                .unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(q.params(), text, "{spec}");
            assert_eq!(q.params_details(), details, "{spec}");
        }
    }

    #[test]
    fn refusals_are_tcs() {
        let err = |s: &str| s.parse::<QdiscSpec>().unwrap_err().to_string();
        assert_eq!(
            err("tbf rate xyz burst 10k limit 1000"),
            "tbf: illegal value for \"rate\": \"xyz\""
        );
        assert_eq!(
            err("tbf rate 1mbit burst 10k limit 1000 foo 3"),
            "tbf: unknown parameter \"foo\""
        );
        assert_eq!(
            err("tbf rate 1mbit burst 10k limit 1000 rate 2mbit"),
            "tbf: duplicate \"rate\" specification"
        );
        assert_eq!(
            err("tbf rate 1mbit burst 10k buffer 20k limit 1000"),
            "tbf: duplicate \"buffer/burst/maxburst\" specification"
        );
        assert_eq!(
            err("tbf rate 1mbit burst 10k limit 1000 latency 10ms"),
            "tbf: specifying both \"limit\" and \"/latency\" is not allowed"
        );
        assert_eq!(
            err("tbf"),
            "tbf: the \"rate\" parameter is mandatory.\ntbf: the \"burst\" parameter is mandatory.\ntbf: either \"limit\" or \"latency\" is required."
        );
        assert_eq!(
            err("tbf rate 1mbit burst 10k limit 1000 peakrate 2mbit"),
            "tbf: when \"peakrate\" is specified, \"mtu\" must also be specified."
        );
        assert_eq!(
            err("tbf rate 2mbit burst 10k limit 1000 peakrate 1mbit mtu 1500"),
            "RTNETLINK answers: Invalid argument"
        );
        assert_eq!(
            err("tbf rate 0 burst 10k limit 1000"),
            "tbf: the \"rate\" parameter is mandatory."
        );
        assert_eq!(
            err("tbf rate 1mbit burst 10k limit 1000 linklayer foo"),
            "tbf: illegal value for \"linklayer\": \"foo\""
        );
    }
}
