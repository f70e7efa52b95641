//! The thread-scaling table: 18-byte datagrams from 1 and from N threads
//! (N = the CPUs this process may use, thread `i` pinned to the `i`-th),
//! each thread with a socket of its own, `sendmmsg`/`send_batch` of 64:
//!
//! * the kernel's `sendmmsg` into the namespace's sink;
//! * ipxmit's `send_batch` into one shared stack's null device (scatter-gather,
//!   checksum and UDP GSO offloads, as the sink table's side B) with one
//!   transmit queue and `noqueue` (the null driver is lockless, LLTX);
//! * the same with N transmit queues, `pfifo_fast` each under the default
//!   `mq` root, XPS mapping thread `i` to queue `i`;
//! * for reference, the noqueue set-up with a stack of its own per thread:
//!   nothing shared but the process and the machine, so its scaling is
//!   the most the shared-stack rows can reach here (the machine's cores,
//!   caches, memory and hypervisor; 1.94x-1.96x on this 2-CPU VM when the
//!   row was added). It has no target.
//!
//! The rows of a round run one after the other (kernel 1, kernel N, then
//! each ipxmit set-up 1 and N), round after round, so that load from
//! elsewhere on the machine weighs on all of them alike; the table shows
//! medians, and each ipxmit row checks that the device counted exactly
//! the datagrams the threads were told were sent.

use std::net::SocketAddrV4;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use anyhow::{Context, Result};
use ipxmit::dev::DevConfig;
use ipxmit::neigh::NudState;
use ipxmit::wire::EthernetAddress;
use ipxmit::{BatchMsg, MsgFlags, RouteSpec, SendError, Stack, UdpSocket};
use ipxmit_drivers::null::NullCounters;

use super::cases::{Case, MTU};
use super::ipx::DevSetup;
use super::kernel::{KernelSender, Mode};
use super::measure::{self, Sample, CHECK_EVERY};
use super::netns::{DEST, DEST_NET, LOCAL, LOCAL_ADDR, SINK};
use super::sys;

/// One row: a sender at a thread count, one aggregate sample per round.
#[derive(Clone, Debug)]
pub struct ScaleRow {
    /// "kernel sendmmsg", "ipxmit noqueue, 1 queue", ...
    pub who: String,
    /// Sender threads.
    pub threads: usize,
    /// Datagrams/s of all threads together, per round (empty: skipped).
    pub rates: Vec<f64>,
    /// CPU ns per datagram over all threads, per round.
    pub cpu_ns: Vec<f64>,
    /// The device counted exactly what was sent, every round (ipxmit).
    pub exact: bool,
    /// Why the row did not run.
    pub skipped: Option<String>,
}

impl ScaleRow {
    fn new(who: &str, threads: usize) -> ScaleRow {
        ScaleRow {
            who: who.to_string(),
            threads,
            rates: Vec::new(),
            cpu_ns: Vec::new(),
            exact: true,
            skipped: None,
        }
    }

    /// The median rate (0 when skipped).
    pub fn median(&self) -> f64 {
        measure::median_of(self.rates.clone())
    }

    /// Lowest and highest rate of the rounds.
    pub fn spread(&self) -> (f64, f64) {
        let lo = self.rates.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.rates.iter().copied().fold(0.0, f64::max);
        (if lo.is_finite() { lo } else { 0.0 }, hi)
    }
}

/// The reference row (see the module documentation).
const OWN_STACKS: &str = "(reference) ipxmit noqueue, a stack per thread";

/// An ipxmit host: one stack, its null device with `queues` queues and
/// root `qdisc`, XPS on when several.
struct Host {
    stack: Arc<Stack>,
    sink: Arc<NullCounters>,
}

impl Host {
    /// The device has the offloads of the sink table's side B for `case`
    /// without a kernel side (scatter-gather, checksum, UDP GSO; the
    /// kernel's sink, an ifb device, finishes checksums too). Without
    /// them every datagram was summed in software, which the sink table's
    /// side B does not do: the 1-thread noqueue row cost 39.8 CPU ns a
    /// datagram against the sink table's 25 for the same `send_batch` of
    /// 64 to one destination, and 25.4 with them (one run each, load 7.7).
    fn new(case: Case, queues: usize, qdisc: Option<&str>) -> Result<Host> {
        let stack = Stack::new();
        let mut cfg = DevConfig::ethernet(SINK, EthernetAddress([2, 0, 0, 0, 0, 1]));
        cfg.mtu = MTU as u32;
        cfg.features = DevSetup::for_case(case, None, "noqueue").features();
        let sink = NullCounters::new();
        stack.add_device(cfg, sink.drivers(queues))?;
        if let Some(q) = qdisc {
            stack.replace_qdisc(SINK, &q.parse().map_err(|e| anyhow::anyhow!("{q}: {e}"))?)?;
        }
        if queues > 1 {
            stack.device(SINK)?.set_xps_default();
        }
        stack.add_addr(SINK, LOCAL.parse()?)?;
        stack.add_route(RouteSpec::new(DEST_NET.parse()?, SINK))?;
        let mac = EthernetAddress([2, 0, 0, 0, 0, 2]);
        stack.add_neigh(SINK, *DEST.ip(), mac, NudState::Permanent)?;
        Ok(Host { stack, sink })
    }
}

/// One thread's `send_batch` run on `host` for `dur`, after a warm-up
/// (the thread's buffer cache and counter shard): the run's sample and
/// the datagrams the warm-up sent.
fn ipx_thread(host: &Host, payload: &[u8], dur: Duration) -> Result<(Sample, u64)> {
    let mut sock = UdpSocket::new(&host.stack);
    sock.bind(SocketAddrV4::new(LOCAL_ADDR, 0))?;
    let msgs = [BatchMsg::new(payload, Some(DEST)); CHECK_EVERY as usize];
    let warm = measure::timed(dur / 10, || send64(&mut sock, &msgs))?;
    let mut s = measure::timed(dur, || send64(&mut sock, &msgs))?;
    s.datagrams = s.sends;
    Ok((s, warm.sends))
}

fn send64(sock: &mut UdpSocket, msgs: &[BatchMsg<'_>]) -> Result<(u64, u64, u64), SendError> {
    let ok = match sock.send_batch(msgs, MsgFlags::NONE) {
        Ok(n) => n as u64,
        Err(SendError::NoBufs | SendError::Again) => 0,
        Err(e) => return Err(e),
    };
    Ok((1, ok, msgs.len() as u64 - ok))
}

/// Runs `f` on `n` threads pinned to `cpus[i]`, started together; the
/// samples in thread order.
fn on_threads<T: Send, F>(cpus: &[usize], n: usize, f: F) -> Result<Vec<T>>
where
    F: Fn() -> Result<T> + Sync,
{
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let (f, barrier, cpu) = (&f, &barrier, cpus[i % cpus.len()]);
                s.spawn(move || {
                    sys::pin_current_thread(cpu).with_context(|| format!("pin to CPU {cpu}"))?;
                    barrier.wait();
                    f()
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| anyhow::bail!("a sender panicked"))
            })
            .collect()
    })
}

/// Adds the aggregate of `samples` (threads run together) to `row`.
fn record(row: &mut ScaleRow, samples: &[Sample]) {
    let dg: u64 = samples.iter().map(|s| s.datagrams).sum();
    let wall = samples.iter().map(|s| s.wall_ns).max().unwrap_or(1).max(1);
    let cpu: u64 = samples.iter().map(|s| s.cpu_ns).sum();
    row.rates.push(dg as f64 / (wall as f64 / 1e9));
    row.cpu_ns.push(cpu as f64 / dg.max(1) as f64);
}

/// One round of an ipxmit row: its threads on `host`; checks that the
/// device counted every datagram sent (warm-ups included).
fn ipx_round(row: &mut ScaleRow, host: &Host, cpus: &[usize], dur: Duration) -> Result<()> {
    let payload = vec![0x5a; 18];
    let f0 = host.sink.frames();
    let runs = on_threads(cpus, row.threads, || ipx_thread(host, &payload, dur))?;
    let sent: u64 = runs.iter().map(|(s, warm)| s.sends + warm).sum();
    row.exact &= host.sink.frames() - f0 == sent;
    let samples: Vec<Sample> = runs.into_iter().map(|(s, _)| s).collect();
    record(row, &samples);
    Ok(())
}

/// One round of the reference row: each thread on a host of its own,
/// made on the thread before it measures; checks each host's count.
fn own_stacks_round(row: &mut ScaleRow, case: Case, cpus: &[usize], dur: Duration) -> Result<()> {
    let payload = vec![0x5a; 18];
    let runs = on_threads(cpus, row.threads, || {
        let host = Host::new(case, 1, Some("noqueue")).context("ipxmit host of a thread")?;
        let (s, warm) = ipx_thread(&host, &payload, dur)?;
        Ok((s, host.sink.frames() == s.sends + warm))
    })?;
    row.exact &= runs.iter().all(|(_, exact)| *exact);
    let samples: Vec<Sample> = runs.into_iter().map(|(s, _)| s).collect();
    record(row, &samples);
    Ok(())
}

/// One round of the kernel row: `n` threads, a socket each, `sendmmsg`.
fn kernel_round(row: &mut ScaleRow, case: Case, cpus: &[usize], dur: Duration) -> Result<()> {
    let samples = on_threads(cpus, row.threads, || {
        let k = KernelSender::new(case, DEST).context("kernel socket")?;
        let _ = k.run(Mode::SendMmsg, dur / 10);
        Ok(k.run(Mode::SendMmsg, dur)?)
    })?;
    record(row, &samples);
    Ok(())
}

/// The table: `rounds` rounds of `dur` per row; the kernel rows run when
/// `kernel_skip` is `None` (the calling thread is in the namespace).
pub fn run(
    case: Case,
    cpus: &[usize],
    (dur, rounds): (Duration, usize),
    kernel_skip: Option<&str>,
) -> Result<Vec<ScaleRow>> {
    let n = cpus.len().max(1);
    let mut rows = vec![
        ScaleRow::new("kernel sendmmsg", 1),
        ScaleRow::new("kernel sendmmsg", n),
        ScaleRow::new("ipxmit noqueue, 1 queue", 1),
        ScaleRow::new("ipxmit noqueue, 1 queue", n),
        ScaleRow::new(&format!("ipxmit pfifo_fast, {n} queues"), 1),
        ScaleRow::new(&format!("ipxmit pfifo_fast, {n} queues"), n),
        ScaleRow::new(OWN_STACKS, 1),
        ScaleRow::new(OWN_STACKS, n),
    ];
    let one = Host::new(case, 1, Some("noqueue")).context("ipxmit host, 1 queue")?;
    let many = Host::new(case, n, None).context("ipxmit host, N queues")?;
    for _ in 0..rounds.max(1) {
        for r in rows.iter_mut() {
            if sys::stopped() {
                return Ok(rows);
            }
            let res = match (r.who.starts_with("kernel"), kernel_skip) {
                (true, Some(why)) => {
                    r.skipped = Some(why.to_string());
                    Ok(())
                }
                (true, None) => kernel_round(r, case, cpus, dur),
                (false, _) if r.who == OWN_STACKS => own_stacks_round(r, case, cpus, dur),
                (false, _) if r.who.contains("noqueue") => ipx_round(r, &one, cpus, dur),
                (false, _) => ipx_round(r, &many, cpus, dur),
            };
            if let Err(e) = res {
                r.skipped = Some(format!("error: {e:#}"));
            }
        }
    }
    Ok(rows)
}

/// The row of `who` at `threads`, when it ran.
fn row<'a>(rows: &'a [ScaleRow], who: &str, threads: usize) -> Option<&'a ScaleRow> {
    rows.iter().find(|r| {
        r.who == who && r.threads == threads && r.skipped.is_none() && !r.rates.is_empty()
    })
}

/// The table as text: median datagrams/s, the spread over rounds, CPU ns
/// per datagram, the scaling over the same sender's 1-thread median.
pub fn table(rows: &[ScaleRow]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "sender (18 B, 64 per call)",
        "threads",
        "datagrams/s",
        "min..max",
        "CPU ns/datagram",
        "CPU busy",
        "over 1 thread",
        "CPU-bound scaling",
        "device count",
    ]);
    for r in rows {
        if let Some(why) = &r.skipped {
            t.add_row(vec![r.who.clone(), r.threads.to_string(), why.clone()]);
            continue;
        }
        let (lo, hi) = r.spread();
        let one = row(rows, &r.who, 1);
        let scale = one.map(|one| r.median() / one.median().max(1e-9));
        let cpu = measure::median_of(r.cpu_ns.clone());
        // What the rate would scale by were every thread on a CPU all the
        // time: N times the 1-thread CPU cost per datagram over this one.
        let bound =
            one.map(|o| r.threads as f64 * measure::median_of(o.cpu_ns.clone()) / cpu.max(1e-9));
        let busy = r.median() * cpu / 1e9 / r.threads as f64;
        let exact = match (r.who.contains("ipxmit"), r.exact) {
            (false, _) => "",
            (true, true) => "exact",
            (true, false) => "MISMATCH",
        };
        t.add_row(vec![
            r.who.clone(),
            r.threads.to_string(),
            super::output::si(r.median()),
            format!("{}..{}", super::output::si(lo), super::output::si(hi)),
            format!("{cpu:.1}"),
            format!("{:.0}%", busy * 100.0),
            scale.map_or_else(String::new, |x| format!("{x:.2}x")),
            bound.map_or_else(String::new, |x| format!("{x:.2}x")),
            exact.to_string(),
        ]);
    }
    t.to_string()
}

/// The table as JSON.
pub fn json(rows: &[ScaleRow]) -> serde_json::Value {
    serde_json::Value::Array(
        rows.iter()
            .map(|r| {
                serde_json::json!({
                    "sender": r.who, "threads": r.threads, "skipped": r.skipped,
                    "datagrams_per_s": r.rates, "median": r.median(),
                    "cpu_ns_per_datagram": r.cpu_ns, "device_count_exact": r.exact,
                })
            })
            .collect(),
    )
}

/// Issue 18's thread targets: each ipxmit set-up at N threads over 0.9·N
/// times its own 1-thread rate, and over 10 times the kernel's N-thread
/// `sendmmsg`.
pub fn targets(rows: &[ScaleRow]) -> Vec<super::output::Target> {
    let n = rows.iter().map(|r| r.threads).max().unwrap_or(1);
    let mut v = Vec::new();
    let kernel = row(rows, "kernel sendmmsg", n).map(ScaleRow::median);
    let whos: Vec<&str> = rows
        .iter()
        .filter(|r| r.who.starts_with("ipxmit") && r.threads == 1)
        .map(|r| r.who.as_str())
        .collect();
    for who in whos {
        let (one, many) = (row(rows, who, 1), row(rows, who, n));
        let scale = one
            .zip(many)
            .map(|(o, m)| m.median() / o.median().max(1e-9));
        v.push(super::output::Target {
            what: format!("threads: {who}, {n} threads over 1 thread"),
            want: 0.9 * n as f64,
            got: scale,
        });
        v.push(super::output::Target {
            what: format!("threads: {who}, {n} threads over kernel's {n}"),
            want: 10.0,
            got: many.zip(kernel).map(|(m, k)| m.median() / k.max(1e-9)),
        });
    }
    v
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`), "?" when
/// unreadable: the table's figures depend on what else runs.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".to_string())
}
