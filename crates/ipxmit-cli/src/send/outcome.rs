//! Where every datagram of a `send` run ended: the wait for neighbours and
//! queues to drain, the accounting (sent / dropped by reason / queued at
//! exit), the exit status, and Ctrl-C.
//!
//! The unit of the accounting is the IP packet the sends handed to the
//! neighbour layer (`IpOutTransmits`: a datagram, a fragment, or a GSO packet;
//! segments of a GSO packet the device segments in software counted each).
//! Every such packet either left the device, was dropped (the stack's drop
//! reasons), or is still queued at exit (waiting for its neighbour, or in a
//! qdisc). Drop reasons count every frame, so a dropped ARP request shows up
//! in them too: the surplus over the IP packets is reported as
//! `other_dropped`. A shortfall (a packet in none of the three) is a bug and
//! fails the run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as WallInstant};

use ipxmit::dev::Tap;
use ipxmit::stats::DropReason;
use ipxmit::{Instant, NetDevice, PacketBuf, Stack};
use serde_json::{json, Value};

/// Set by the SIGINT handler; the send loops stop when they see it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The exit status of a run stopped by Ctrl-C (128 + SIGINT), as a shell
/// reports it.
pub const EXIT_INTERRUPTED: u8 = 130;

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Installs the SIGINT handler: the first Ctrl-C stops the run, which then
/// prints its summary and exits 130; a second one kills it (the handler is
/// reset to the default when it runs).
pub fn catch_sigint() {
    // SAFETY: `sigaction` with a zeroed, then filled, struct; the handler
    // only stores to an atomic, which is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESETHAND;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
    }
}

/// True once Ctrl-C was pressed.
#[inline]
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// A tap counting the frames that are not IPv4 (ARP) given to a driver,
/// for devices whose wire we do not read ourselves.
#[derive(Default)]
pub struct NonIpFrames(AtomicU64);

impl NonIpFrames {
    /// A counter, to be added to the device with `add_tap`.
    pub fn new() -> Arc<NonIpFrames> {
        Arc::new(NonIpFrames::default())
    }

    /// Frames counted so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Tap for NonIpFrames {
    fn tap(&self, _dev: &NetDevice, pkt: &PacketBuf, _now: Instant) {
        if pkt.linear().get(12..14) != Some(&[0x08, 0x00]) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Packets still queued in the stack: waiting for a neighbour, and in the
/// qdiscs (requeued ones included: a qdisc's `qlen` counts them, as
/// `dev_requeue_skb` adds them to the kernel's `q.qlen`).
pub fn queued(stack: &Stack) -> (u64, u64) {
    let neigh = stack
        .neighbours()
        .entries()
        .iter()
        .map(|n| n.queued() as u64)
        .sum();
    let qdisc = stack
        .devices()
        .iter()
        .flat_map(|d| d.queues().iter())
        .map(|q| q.with_qdisc(|q| q.stats().qlen))
        .sum();
    (neigh, qdisc)
}

/// Runs the stack's deferred work and `drain` (which reads the wire) until
/// nothing is queued, `limit` has passed, or Ctrl-C; returns how long it
/// waited and whether everything drained.
pub fn linger(stack: &Stack, limit: Duration, mut drain: impl FnMut()) -> (Duration, bool) {
    let start = WallInstant::now();
    loop {
        stack.poll();
        drain();
        let (n, q) = queued(stack);
        if n + q == 0 {
            return (start.elapsed(), true);
        }
        if start.elapsed() >= limit || interrupted() {
            return (start.elapsed(), false);
        }
        ipxmit_drivers::runner::wait_rx(stack, Duration::from_micros(200));
    }
}

/// Frames `lo` sent: IP packets of the run that never reach a wire.
fn loopback_tx(stack: &Stack) -> u64 {
    stack
        .devices()
        .iter()
        .filter(|d| d.is_loopback())
        .map(|d| d.stats.get(ipxmit::stats::DevCounter::TxPackets))
        .sum()
}

/// The IP packets a run's sends produced, and where each ended.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// IP packets handed to the neighbour layer.
    pub packets: u64,
    /// IP packets that left the device, and `lo`.
    pub sent: u64,
    /// Of them, those through `lo`: ICMP errors the host sent itself (a
    /// neighbour that failed: `arp_error_report()`).
    pub through_lo: u64,
    /// Drop reasons and counts (every frame, non-zero only).
    pub dropped: Vec<(&'static str, u64)>,
    /// IP packets dropped (the drop reasons' total less `other_dropped`).
    pub dropped_total: u64,
    /// Frames in the drop reasons that were not IP packets of the run
    /// (ARP requests, datagrams refused before output).
    pub other_dropped: u64,
    /// Packets waiting for a neighbour at exit.
    pub queued_neigh: u64,
    /// Packets in qdiscs at exit.
    pub queued_qdisc: u64,
    /// Packets in none of the above (a bug if ever non-zero).
    pub unaccounted: u64,
    /// How long the run waited for the queues to drain.
    pub waited: Duration,
    /// The wait's bound.
    pub limit: Duration,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
}

impl Outcome {
    /// Accounts the run: `sent` is what left the device (counted on the
    /// wire or by the device less its non-IP frames), `extra_segments` the
    /// segments the device made in software beyond one per GSO packet.
    pub fn account(
        stack: &Stack,
        sent: u64,
        extra_segments: u64,
        wait: (Duration, Duration, bool),
    ) -> Outcome {
        let c = stack.counters();
        let transmits = c
            .mib_snapshot()
            .iter()
            .find(|(m, _)| matches!(m.name(), "IpOutTransmits" | "IpExtOutPkts"))
            .map_or(0, |(_, v)| *v);
        let dropped: Vec<_> = c
            .drop_snapshot()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n): (DropReason, u64)| (r.name(), n))
            .collect();
        let reasons: u64 = dropped.iter().map(|(_, n)| n).sum();
        let (queued_neigh, queued_qdisc) = queued(stack);
        let through_lo = loopback_tx(stack);
        let sent = sent + through_lo;
        let packets = transmits + extra_segments;
        let found = sent + reasons + queued_neigh + queued_qdisc;
        let other_dropped = found.saturating_sub(packets).min(reasons);
        Outcome {
            packets,
            sent,
            through_lo,
            dropped,
            dropped_total: reasons - other_dropped,
            other_dropped,
            queued_neigh,
            queued_qdisc,
            unaccounted: packets.saturating_sub(found),
            waited: wait.0,
            limit: wait.1,
            interrupted: interrupted(),
        }
    }

    /// The summary line.
    pub fn text(&self) -> String {
        let reasons: Vec<String> = self
            .dropped
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let mut s = format!(
            "result: {}: {} sent{}, {} dropped{}, {} queued at exit ({} awaiting a neighbour, {} in qdiscs)",
            crate::human::count(self.packets, "IP packet"),
            self.sent,
            match self.through_lo {
                0 => String::new(),
                n => format!(" ({n} through lo: ICMP errors to the host itself)"),
            },
            self.dropped_total,
            if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) },
            self.queued_neigh + self.queued_qdisc,
            self.queued_neigh,
            self.queued_qdisc,
        );
        if self.other_dropped > 0 {
            s += &format!(
                "; {} other frames (ARP) among the drops",
                self.other_dropped
            );
        }
        if self.unaccounted > 0 {
            s += &format!("; {} unaccounted", self.unaccounted);
        }
        s += &format!(
            "; waited {:.3} s of {:.3} s for queues to drain",
            self.waited.as_secs_f64(),
            self.limit.as_secs_f64()
        );
        if self.interrupted {
            s += "; interrupted";
        }
        s
    }

    /// The same as JSON.
    pub fn json(&self) -> Value {
        json!({
            "packets": self.packets, "sent": self.sent, "through_lo": self.through_lo,
            "dropped": self.dropped_total,
            "drop_reasons": self.dropped.iter().map(|(r, n)| (r.to_string(), json!(n)))
                .collect::<serde_json::Map<_, _>>(),
            "other_dropped": self.other_dropped,
            "queued_at_exit": {"neighbour": self.queued_neigh, "qdisc": self.queued_qdisc},
            "unaccounted": self.unaccounted,
            "waited_s": self.waited.as_secs_f64(), "wait_limit_s": self.limit.as_secs_f64(),
            "interrupted": self.interrupted,
        })
    }

    /// Why the run failed, for stderr (empty when every packet left).
    pub fn failures(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.dropped_total > 0 {
            let r: Vec<String> = self
                .dropped
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            v.push(format!(
                "{} of {} dropped ({})",
                self.dropped_total,
                crate::human::count(self.packets, "IP packet"),
                r.join(", ")
            ));
        }
        let q = self.queued_neigh + self.queued_qdisc;
        if q > 0 {
            v.push(format!(
                "{} still queued after waiting {:.3} s ({} awaiting a neighbour, {} in qdiscs)",
                crate::human::count(q, "IP packet"),
                self.waited.as_secs_f64(),
                self.queued_neigh,
                self.queued_qdisc
            ));
        }
        if self.unaccounted > 0 {
            v.push(format!("{} IP packets unaccounted for", self.unaccounted));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::{queued, Outcome};
    use ipxmit::dev::{Driver, TxQueueCtl, TxStatus};
    use ipxmit::neigh::NudState;
    use ipxmit::wire::EthernetAddress;
    use ipxmit::PacketBuf;
    use ipxmit::{DevConfig, MsgFlags, Stack, UdpSocket};
    use ipxmit_drivers::mem::MemWire;
    use std::sync::Arc;
    use std::time::Duration;

    /// Regression: a frame a busy driver handed back is in its qdisc's
    /// `qlen` as well as in the requeue list; it was counted twice, so a
    /// run's accounting found a packet too many (and called it an ARP
    /// frame among the drops).
    /// A stack with `eth0` (10.0.0.1/24) on `drivers`, a permanent
    /// neighbour 10.0.0.2, and the address of its port 9.
    fn eth0_host(drivers: Vec<Box<dyn Driver>>) -> (Arc<Stack>, std::net::SocketAddrV4) {
        let stack = Stack::new();
        let mac = EthernetAddress([2, 0, 0, 0, 0, 1]);
        stack
            .add_device(DevConfig::ethernet("eth0", mac), drivers)
            .unwrap();
        stack
            .add_addr("eth0", "10.0.0.1/24".parse().unwrap())
            .unwrap();
        let peer = std::net::Ipv4Addr::new(10, 0, 0, 2);
        let peer_mac = EthernetAddress([2, 0, 0, 0, 0, 2]);
        stack
            .add_neigh("eth0", peer, peer_mac, NudState::Permanent)
            .unwrap();
        (stack, std::net::SocketAddrV4::new(peer, 9))
    }

    #[test]
    fn a_requeued_packet_is_queued_once() {
        let wire = MemWire::new(1);
        let (stack, dst) = eth0_host(wire.drivers(1));
        let mut s = UdpSocket::new(&stack);
        for _ in 0..3 {
            s.send_to(&[0; 100], dst, MsgFlags::DONTWAIT).unwrap();
        }
        let dev = stack.device("eth0").unwrap();
        assert_eq!((wire.len(), dev.queues()[0].requeued_len()), (1, 1));
        assert_eq!(queued(&stack), (0, 2), "one on the wire, two queued");
    }

    /// A driver whose device drops every second frame after the driver
    /// took it (as a ring driver learns from the kernel).
    #[derive(Default)]
    struct DropsEverySecond(Option<Arc<TxQueueCtl>>, u64);

    impl Driver for DropsEverySecond {
        fn attach(&mut self, ctl: Arc<TxQueueCtl>) {
            self.0 = Some(ctl);
        }

        fn start_xmit(&mut self, pkt: PacketBuf, _more: bool) -> TxStatus {
            self.1 += 1;
            if let Some(ctl) = self.0.as_ref().filter(|_| self.1.is_multiple_of(2)) {
                ctl.late_drop(1, pkt.len() as u64);
            }
            TxStatus::Ok
        }
    }

    /// Frames a device dropped after its driver took them are dropped in
    /// the run's result (`DRIVER_LATE_DROP`), not sent, and fail the run.
    #[test]
    fn frames_the_device_dropped_late_are_dropped_not_sent() {
        let (stack, dst) = eth0_host(vec![Box::new(DropsEverySecond::default())]);
        let mut s = UdpSocket::new(&stack);
        for _ in 0..4 {
            s.send_to(&[0; 100], dst, MsgFlags::DONTWAIT).unwrap();
        }
        let d = stack.device("eth0").unwrap().stats.snapshot();
        assert_eq!((d.tx_packets, d.tx_dropped), (2, 2), "{d:?}");
        let z = Duration::ZERO;
        let o = Outcome::account(&stack, d.tx_packets, 0, (z, z, true));
        assert_eq!((o.packets, o.sent, o.dropped_total), (4, 2, 2), "{o:?}");
        assert_eq!(o.dropped, [("DRIVER_LATE_DROP", 2)]);
        assert_eq!((o.other_dropped, o.unaccounted), (0, 0));
        assert_eq!(o.failures().len(), 1, "{:?}", o.failures());
    }
}
