//! The real-wire table: datagrams into a kernel UDP receiver in another
//! namespace (`<ns>-rx`, 10.98.0.2:9, pinned to another CPU when there is
//! one) — the kernel's own socket over veth (A), ipxmit over AF_PACKET on the
//! same veth and over a TAP whose kernel side sits in the receiver's namespace
//! with vnet_hdr checksum/GSO offloads (B).
//!
//! Side B needs the TAP and AF_PACKET drivers (`ipxmit_drivers::tap`,
//! `ipxmit_drivers::packet`), which do not exist yet: those rows say so
//! rather than show a number.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::cases::{self, Case};
use super::kernel::{self, KernelSender, Mode};
use super::measure::{median, Sample};
use super::netns::{self, VETH, WIRE_DEST};
use super::sink::Plan;
use super::sys;

/// Payload sizes of the real-wire table.
const SIZES: [&str; 4] = ["18B", "1472B", "8000B", "65000B"];
/// Why side B has no rows yet.
pub const NO_DRIVERS: &str =
    "not measured: drivers not available (ipxmit_drivers has no tap/packet driver yet)";

/// One run into the receiver.
#[derive(Clone, Copy, Debug, Default)]
pub struct WireSample {
    /// The sender's side (`datagrams` = datagrams sent).
    pub sent: Sample,
    /// Datagrams the receiver read.
    pub delivered: u64,
    /// Payload bytes the receiver read.
    pub delivered_bytes: u64,
}

/// One row of the real-wire table.
#[derive(Clone, Debug)]
pub struct WireRow {
    /// Payload case.
    pub case: &'static str,
    /// Who sends over what.
    pub sender: &'static str,
    /// One sample per round, or why there are none.
    pub result: Result<Vec<WireSample>, String>,
}

impl WireRow {
    /// Median delivered datagrams/s.
    pub fn delivered_rate(&self) -> Option<f64> {
        let v = self.result.as_ref().ok().filter(|v| !v.is_empty())?;
        let rates: Vec<f64> = v
            .iter()
            .map(|w| w.delivered as f64 / (w.sent.wall_ns.max(1) as f64 / 1e9))
            .collect();
        Some(super::measure::median_of(rates))
    }

    /// Median of `f` over the sender's samples.
    pub fn sent(&self, f: impl Fn(&Sample) -> f64) -> Option<f64> {
        let v = self.result.as_ref().ok().filter(|v| !v.is_empty())?;
        let s: Vec<Sample> = v.iter().map(|w| w.sent).collect();
        Some(median(&s, f))
    }

    /// Median delivered payload Gbit/s.
    pub fn delivered_gbps(&self) -> Option<f64> {
        let v = self.result.as_ref().ok().filter(|v| !v.is_empty())?;
        let g: Vec<f64> = v
            .iter()
            .map(|w| w.delivered_bytes as f64 * 8.0 / (w.sent.wall_ns.max(1) as f64))
            .collect();
        Some(super::measure::median_of(g))
    }
}

/// The cases of the wire table that the plan selected.
fn wire_cases(plan: &Plan) -> Vec<Case> {
    cases::CASES
        .iter()
        .filter(|c| SIZES.contains(&c.name) && plan.cases.contains(c))
        .copied()
        .collect()
}

/// Rows for side B (not measurable in this build) and, when `a` fails, A.
fn rows(case: &'static str, a: Result<Vec<WireSample>, String>) -> Vec<WireRow> {
    let b = |sender| WireRow {
        case,
        sender,
        result: Err(NO_DRIVERS.to_string()),
    };
    vec![
        WireRow {
            case,
            sender: "A: kernel sendmmsg over veth",
            result: a,
        },
        b("B: ipxmit AF_PACKET over veth"),
        b("B: ipxmit TAP (vnet_hdr csum+GSO)"),
    ]
}

/// Runs the table from the calling thread (already in the sender's
/// namespace and pinned); `rx` is the receiver's namespace.
pub fn run(plan: &Plan, rx: Option<&Path>, rx_cpu: usize) -> Vec<WireRow> {
    let cases = wire_cases(plan);
    let Some(rx) = rx else {
        let why = plan.kernel_skipped.clone();
        return cases
            .iter()
            .flat_map(|c| rows(c.name, Err(why.clone())))
            .collect();
    };
    let done = AtomicBool::new(false);
    let counts = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        let (tx, ready) = mpsc::channel();
        let (d, c) = (&done, &counts);
        s.spawn(move || {
            let r = receiver(rx, rx_cpu, d, c, &tx);
            let _ = tx.send(r.map_err(|e| format!("receiver: {e:#}")));
        });
        let up = ready
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| Err("receiver did not start".into()));
        let out = cases
            .iter()
            .flat_map(|c| {
                let a = up.clone().and_then(|()| {
                    measure_case(plan, *c, &counts).map_err(|e| format!("error: {e:#}"))
                });
                rows(c.name, a)
            })
            .collect();
        done.store(true, Ordering::Relaxed);
        out
    })
}

fn measure_case(
    plan: &Plan,
    case: Case,
    counts: &(AtomicU64, AtomicU64),
) -> Result<Vec<WireSample>> {
    let k = KernelSender::new(case, WIRE_DEST).context("kernel socket")?;
    let _ = k.run(Mode::SendMmsg, plan.dur / 5);
    std::thread::sleep(Duration::from_millis(50));
    let mut out = Vec::new();
    for _ in 0..plan.rounds.max(1) {
        if sys::stopped() {
            break;
        }
        let (d0, b0) = (
            counts.0.load(Ordering::Relaxed),
            counts.1.load(Ordering::Relaxed),
        );
        let f0 = netns::dev_counter(VETH, 9)?;
        let mut sent = k.run(Mode::SendMmsg, plan.dur)?;
        // Let the receiver read what is still queued for it.
        std::thread::sleep(Duration::from_millis(50));
        sent.frames = netns::dev_counter(VETH, 9)? - f0;
        sent.frames_expected = sent.sends * case.frames_per_send(false);
        out.push(WireSample {
            sent,
            delivered: counts.0.load(Ordering::Relaxed) - d0,
            delivered_bytes: counts.1.load(Ordering::Relaxed) - b0,
        });
    }
    Ok(out)
}

/// The kernel UDP receiver: enters `ns`, binds, reads with `recvmmsg` until
/// `done`, counting datagrams and bytes. Reports readiness on `ready`.
fn receiver(
    ns: &Path,
    cpu: usize,
    done: &AtomicBool,
    counts: &(AtomicU64, AtomicU64),
    ready: &mpsc::Sender<Result<(), String>>,
) -> Result<()> {
    sys::enter_netns(ns).context("setns")?;
    sys::pin_current_thread(cpu).context("pinning")?;
    let fd = kernel::udp_socket()?;
    kernel::set_int_opt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 64 << 20)?;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 20_000,
    };
    kernel::set_opt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
    kernel::bind(&fd, WIRE_DEST)?;
    let _ = ready.send(Ok(()));
    const N: usize = 64;
    let mut bufs = vec![0u8; N * 65536];
    let mut iov: Vec<libc::iovec> = bufs
        .chunks_mut(65536)
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut msgs = kernel::msgs_for(&mut iov, None);
    while !done.load(Ordering::Relaxed) && !sys::stopped() {
        // SAFETY: msgs point into iov and bufs, alive and unmoved here.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                N as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            let bytes: u64 = msgs[..n as usize]
                .iter()
                .map(|m| u64::from(m.msg_len))
                .sum();
            counts.0.fetch_add(n as u64, Ordering::Relaxed);
            counts.1.fetch_add(bytes, Ordering::Relaxed);
        }
    }
    Ok(())
}
