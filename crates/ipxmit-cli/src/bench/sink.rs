//! The sink table: each case run A A B on one pinned core — the kernel's
//! `sendto` and `sendmmsg` into the namespace's sink (A), then ipxmit into its
//! null device with the same offloads (B) — for the configured rounds. A
//! case's checksum offload, root qdisc, output hook and policy rules are set
//! on the kernel's sink before it and undone after it (see [`settings`]); a
//! `-rules` case's kernel side runs in a namespace of its own.

use std::time::Duration;

use anyhow::{Context, Result};

use super::cases::Case;
use super::ipx::{DevSetup, IpxSender};
use super::kernel::{KernelSender, Mode, Offloads};
use super::measure::{self, Sample};
use super::netns::{self, Netns, SinkKind, DEST, SINK};
use super::settings::{self, Applied};
use super::sys;
use super::threads::{self, ScaleRow};
use super::wires::{self, WireRow};

/// How the run goes.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The cases.
    pub cases: Vec<Case>,
    /// Length of one measured run.
    pub dur: Duration,
    /// Rounds (each A A B: kernel `sendto`, kernel `sendmmsg`, ipxmit).
    pub rounds: usize,
    /// The CPU everything runs on.
    pub cpu: usize,
    /// What the kernel rows say when the kernel side does not run.
    pub kernel_skipped: String,
    /// The CPU of the real-wire receiver.
    pub rx_cpu: usize,
    /// The CPUs the process may use: the thread-scaling table's senders,
    /// thread `i` on the `i`-th (empty: no thread table).
    pub cpus: Vec<usize>,
}

/// What the kernel side runs against, when it runs.
#[derive(Clone, Debug)]
pub struct KernelEnv {
    /// The namespace's name (for `tc -n` and `ip netns exec`).
    pub ns: String,
    /// Its bind mount, to enter it again after a case run elsewhere.
    pub path: std::path::PathBuf,
    /// The sink's kind.
    pub kind: SinkKind,
    /// Its own root qdisc, put back after a case that sets another.
    pub qdisc: String,
    /// The real-wire receiver's namespace, or why there is none.
    pub rx: Result<std::path::PathBuf, String>,
}

/// The measurements of one sender on one case, or why there are none.
#[derive(Clone, Debug)]
pub enum Side {
    /// One sample per round.
    Measured(Vec<Sample>),
    /// Not run.
    Skipped(String),
}

impl Side {
    /// The samples, empty when skipped.
    pub fn samples(&self) -> &[Sample] {
        match self {
            Side::Measured(v) => v,
            Side::Skipped(_) => &[],
        }
    }
}

/// One case, both sides.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// The case.
    pub case: Case,
    /// The sink's offloads during the case, as the kernel reported them.
    pub offloads: Option<Offloads>,
    /// The device side B used.
    pub dev: DevSetup,
    /// Kernel `sendto`.
    pub sendto: Side,
    /// Kernel `sendmmsg`.
    pub sendmmsg: Side,
    /// ipxmit.
    pub ipxmit: Side,
}

/// The whole sink table.
#[derive(Clone, Debug)]
pub struct SinkTable {
    /// memcpy Gbit/s of this core for 65000-byte copies (median of rounds).
    pub memcpy_gbps: f64,
    /// Per case.
    pub cases: Vec<CaseResult>,
    /// The real-wire table.
    pub wires: Vec<WireRow>,
    /// The thread-scaling table.
    pub threads: Vec<ScaleRow>,
}

/// Runs the table on the calling thread: enters the namespace (when the
/// kernel side runs), pins to the CPU, measures.
pub fn run(plan: &Plan, ns: Option<(&std::path::Path, KernelEnv)>) -> Result<SinkTable> {
    let env = match ns {
        Some((path, env)) => {
            sys::enter_netns(path).with_context(|| format!("setns into {}", path.display()))?;
            Some(env)
        }
        None => None,
    };
    sys::pin_current_thread(plan.cpu).with_context(|| format!("pinning to CPU {}", plan.cpu))?;
    let memcpy: Vec<f64> = (0..plan.rounds.max(1))
        .map(|_| measure::memcpy_gbps(65000, plan.dur / 2))
        .collect();
    let mut cases = Vec::new();
    for case in &plan.cases {
        if sys::stopped() {
            break;
        }
        cases.push(run_case(plan, *case, env.as_ref())?);
    }
    let threads = thread_table(plan, env.is_some())?;
    let wires = match env.as_ref().map(|e| &e.rx) {
        Some(Ok(rx)) => wires::run(plan, Some(rx), plan.rx_cpu),
        Some(Err(why)) => wires::run(
            &Plan {
                kernel_skipped: why.clone(),
                ..plan.clone()
            },
            None,
            0,
        ),
        None => wires::run(plan, None, 0),
    };
    Ok(SinkTable {
        memcpy_gbps: measure::median_of(memcpy),
        cases,
        wires,
        threads,
    })
}

/// The thread-scaling table (18 B), the kernel rows when `kernel` runs.
fn thread_table(plan: &Plan, kernel: bool) -> Result<Vec<ScaleRow>> {
    let Some(case) = super::cases::CASES.iter().find(|c| c.name == "18B") else {
        return Ok(Vec::new());
    };
    if plan.cpus.is_empty() || sys::stopped() {
        return Ok(Vec::new());
    }
    let skip = (!kernel).then_some(plan.kernel_skipped.as_str());
    threads::run(*case, &plan.cpus, (plan.dur, plan.rounds), skip)
}

/// One case: the kernel sink set up for it, both sides measured, the sink
/// put back (also when measuring failed). A `-rules` case's kernel side
/// runs in a namespace of its own ([`run_in_own_netns`]).
fn run_case(plan: &Plan, case: Case, env: Option<&KernelEnv>) -> Result<CaseResult> {
    match env {
        Some(e) if case.rules => run_in_own_netns(plan, case, e),
        _ => run_case_in(plan, case, env),
    }
}

/// Runs `case` with the calling thread in a new namespace
/// `ipxmit-bench-<pid>-rules`, set up as `env`'s, then enters `env`'s again
/// and deletes the new one. The kernel keeps a namespace's lookups on the
/// rules path once a rule was added (`fib_has_custom_rules` is never
/// cleared): in the shared namespace every later case's kernel side would
/// pay for it.
fn run_in_own_netns(plan: &Plan, case: Case, env: &KernelEnv) -> Result<CaseResult> {
    let ns = Netns::create_sibling("rules").context("the -rules cases' namespace")?;
    sys::enter_netns(&ns.path()).with_context(|| format!("setns into {}", ns.name()))?;
    let own = KernelEnv {
        ns: ns.name().to_string(),
        path: ns.path(),
        kind: ns.kind,
        qdisc: ns.qdisc.clone(),
        rx: env.rx.clone(),
    };
    let r = run_case_in(plan, case, Some(&own));
    let back = sys::enter_netns(&env.path)
        .with_context(|| format!("setns back into {}", env.path.display()));
    drop(ns);
    back?;
    r
}

/// [`run_case`] in the namespace the calling thread is in (`env`'s).
fn run_case_in(plan: &Plan, case: Case, env: Option<&KernelEnv>) -> Result<CaseResult> {
    let applied = match env {
        Some(e) => Some(
            settings::apply(&e.ns, case)
                .with_context(|| format!("setting up {SINK} for {}", case.name))?,
        ),
        None => None,
    };
    let r = measure_case(plan, case, env, applied.as_ref());
    let restored = match (env, &applied) {
        (Some(e), Some(a)) => settings::restore(&e.ns, &e.qdisc, case, a)
            .with_context(|| format!("restoring {SINK} after {}", case.name)),
        _ => Ok(()),
    };
    let r = r?;
    restored?;
    Ok(r)
}

/// Measures one case on a sink already set up for it (`applied`, when the
/// kernel side runs).
fn measure_case(
    plan: &Plan,
    case: Case,
    env: Option<&KernelEnv>,
    applied: Option<&Applied>,
) -> Result<CaseResult> {
    let offloads = applied.map(|a| a.offloads);
    let sink_qdisc = env.map_or("noqueue", |e| e.qdisc.as_str());
    let dev = DevSetup::for_case(case, offloads, sink_qdisc);
    let mut ipx = IpxSender::new(case, &dev, false)
        .with_context(|| format!("ipxmit host for {}", case.name))?;
    let skip = match (env, applied) {
        (Some(_), Some(a)) => a.skip.clone(),
        _ => Some(plan.kernel_skipped.clone()),
    };
    let ks = match (env, &skip) {
        (Some(e), None) => Some((
            KernelSender::new(case, DEST).context("kernel socket")?,
            e.kind,
        )),
        _ => None,
    };
    let kside = || {
        skip.clone()
            .map_or(Side::Measured(Vec::new()), Side::Skipped)
    };
    let mut r = CaseResult {
        case,
        offloads,
        sendto: kside(),
        sendmmsg: kside(),
        ipxmit: Side::Measured(Vec::new()),
        dev,
    };
    warm_up(plan, &mut ipx, ks.as_ref())?;
    for _ in 0..plan.rounds.max(1) {
        if let Some((k, kind)) = &ks {
            record(
                &mut r.sendto,
                kernel_sample(k, *kind, case, Mode::SendTo, plan.dur),
            );
            record(
                &mut r.sendmmsg,
                kernel_sample(k, *kind, case, Mode::SendMmsg, plan.dur),
            );
        }
        let mut s = ipx.run(plan.dur)?;
        s.frames_expected = s.sends * case.frames_per_send(r.dev.gso);
        record(&mut r.ipxmit, Ok(s));
    }
    Ok(r)
}

/// A short unmeasured run of each sender: caches, pools, page tables.
fn warm_up(plan: &Plan, ipx: &mut IpxSender, ks: Option<&(KernelSender, SinkKind)>) -> Result<()> {
    let d = (plan.dur / 5).max(Duration::from_millis(10));
    ipx.run(d)?;
    if let Some((k, _)) = ks {
        // Errors show up in the measured runs.
        let _ = k.run(Mode::SendTo, d / 2);
        let _ = k.run(Mode::SendMmsg, d / 2);
    }
    Ok(())
}

/// One kernel run with the sink's frame count around it.
fn kernel_sample(
    k: &KernelSender,
    kind: SinkKind,
    case: Case,
    mode: Mode,
    dur: Duration,
) -> Result<Sample> {
    let f0 = netns::sink_frames(kind)?;
    let mut s = k
        .run(mode, dur)
        .with_context(|| format!("{} {}", mode.name(), case.name))?;
    s.frames = netns::sink_frames(kind)? - f0;
    s.frames_expected = s.sends * case.frames_per_send(true);
    Ok(s)
}

/// Adds a sample, or turns the side into the error that stopped it.
fn record(side: &mut Side, s: Result<Sample>) {
    match (side, s) {
        (Side::Measured(v), Ok(s)) => v.push(s),
        (side @ Side::Measured(_), Err(e)) => *side = Side::Skipped(format!("error: {e:#}")),
        (Side::Skipped(_), _) => {}
    }
}
