//! `ipxmit bench`: ipxmit against the kernel's own UDP send path, same work,
//! same core, same run.
//!
//! The kernel side (A) needs root: the benchmark creates its own network
//! namespace `ipxmit-bench-<pid>` with a sink interface (`dummy`, or `ifb` where
//! there is no `dummy` module) and sends to an address routed out of it with
//! `sendto` and with `sendmmsg` (64 per call) from a thread that entered the
//! namespace and pinned itself to one CPU. ipxmit (B) sends the same datagrams
//! through its full path to its `null` device, configured with the offloads the
//! kernel reports for the sink, on the same thread. The `-pfifo` cases give
//! both sinks a root `pfifo limit 1000`, the `-hook` case both stacks one
//! accept-all filter on the output hook (an nftables rule; a `LocalOut` hook),
//! the `-rules` case both stacks ten policy rules and five numbered tables
//! (`ip rule`/`ip route ... table N`; `Stack::add_rule`/`add_route`).
//! Each case runs A A B, round after round; the tables show medians. Without
//! root only B runs, and the kernel rows say why. See the README's
//! "Benchmarks" section for the columns.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;

mod callgrind;
mod cases;
mod ipx;
mod kernel;
mod measure;
mod netns;
mod output;
mod policy;
mod settings;
mod sink;
mod sys;
mod threads;
mod wires;

use netns::Netns;
use sink::{KernelEnv, Plan, SinkTable};

/// Options of `ipxmit bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Length of each measured run (tc time units: 300ms, 1s).
    #[arg(short = 't', long, default_value = "300ms")]
    pub time: String,
    /// Rounds per case (A A B, repeated); medians are reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// CPU to pin the sending thread to (default: the last one allowed).
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Only these cases, comma-separated (18B, 1472B, 8000B, 65000B,
    /// 8x1000B-more, gso-64k/1472, 1472B-swcsum, 65000B-swcsum, 18B-pfifo,
    /// 1472B-pfifo, 18B-hook, 18B-tbf, 1472B-tbf, 18B-htb, 1472B-htb,
    /// 18B-rules, 18B-snat).
    #[arg(long)]
    pub cases: Option<String>,
    /// Do not run the kernel side (no namespace, no root needed).
    #[arg(long)]
    pub no_kernel: bool,
    /// Leave out the thread-scaling table (18 B from 1 and N threads,
    /// N = the CPUs this process may use).
    #[arg(long)]
    pub no_threads: bool,
    /// Machine-readable output: one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Instead of the tables: send --count datagrams of this case through the
    /// in-memory path and exit (for scripts/callgrind.sh).
    #[arg(long, value_name = "CASE")]
    pub callgrind_case: Option<String>,
    /// Datagrams for --callgrind-case.
    #[arg(long, default_value_t = 20_000)]
    pub count: u64,
    /// Device for --callgrind-case: mem (in-memory wire, drained) or null.
    #[arg(long, default_value = "mem")]
    pub callgrind_dev: String,
    /// API for --callgrind-case: batch (send_batch of 64, as the sink table's
    /// side B) or sendto (one send_to per datagram).
    #[arg(long, default_value = "batch")]
    pub callgrind_api: String,
}

/// Why the kernel side does not run, or the namespace it runs in.
enum KernelSide {
    Runs(Netns),
    Skipped(String),
}

fn kernel_side(a: &BenchArgs) -> KernelSide {
    if a.no_kernel {
        return KernelSide::Skipped("SKIPPED: --no-kernel".to_string());
    }
    if !sys::is_root() {
        return KernelSide::Skipped(
            "SKIPPED: not root (creating the benchmark's network namespace needs CAP_SYS_ADMIN)"
                .to_string(),
        );
    }
    match Netns::create() {
        Ok(mut ns) => {
            if let Err(e) = ns.add_wire() {
                ns.wire_note = Some(format!("SKIPPED: cannot set up the veth pair: {e:#}"));
            }
            KernelSide::Runs(ns)
        }
        Err(e) => KernelSide::Skipped(format!("SKIPPED: cannot set up the namespace: {e:#}")),
    }
}

fn plan(a: &BenchArgs) -> Result<Plan> {
    let dur = ipxmit::units::parse_time(&a.time).map_err(|e| anyhow::anyhow!("--time: {e}"))?;
    if dur.is_zero() || dur > Duration::from_secs(60) {
        bail!("--time must be between 1us and 60s");
    }
    if a.rounds == 0 || a.rounds > 100 {
        bail!("--rounds must be 1..=100");
    }
    let allowed = sys::allowed_cpus().context("sched_getaffinity")?;
    let cpu = match a.cpu {
        Some(c) if allowed.contains(&c) => c,
        Some(c) => bail!("--cpu {c}: not among the CPUs this process may use ({allowed:?})"),
        None => *allowed.last().context("no CPU allowed")?,
    };
    let rx_cpu = allowed.iter().copied().find(|&c| c != cpu).unwrap_or(cpu);
    Ok(Plan {
        cases: cases::select(a.cases.as_deref()).map_err(anyhow::Error::msg)?,
        dur,
        rounds: a.rounds,
        cpu,
        kernel_skipped: String::new(),
        rx_cpu,
        cpus: if a.no_threads { Vec::new() } else { allowed },
    })
}

/// Runs `ipxmit bench`.
pub fn run(a: BenchArgs) -> Result<ExitCode> {
    if let Some(c) = &a.callgrind_case {
        callgrind::run(c, a.count, &a.callgrind_dev, &a.callgrind_api, a.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut plan = plan(&a)?;
    sys::install_stop_handler().context("installing the signal handler")?;
    let date = sys::utc_now();
    let side = kernel_side(&a);
    if let KernelSide::Skipped(why) = &side {
        plan.kernel_skipped.clone_from(why);
    }
    let table = measure_on_worker(&plan, &side);
    let (env_note, qdisc_note) = describe(&side);
    drop(side); // deletes the namespace before anything else can fail
    let table = table?;
    if sys::stopped() {
        eprintln!("ipxmit bench: interrupted; namespace removed");
        return Ok(ExitCode::from(130));
    }
    print(&a, &plan, &date, &env_note, qdisc_note.as_deref(), &table)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the sink table on a new thread (it enters the namespace; this thread
/// stays outside to delete it).
fn measure_on_worker(plan: &Plan, side: &KernelSide) -> Result<SinkTable> {
    let ns = match side {
        KernelSide::Runs(ns) => Some((
            ns.path(),
            KernelEnv {
                ns: ns.name().to_string(),
                path: ns.path(),
                kind: ns.kind,
                qdisc: ns.qdisc.clone(),
                rx: ns
                    .rx_path()
                    .ok_or_else(|| ns.wire_note.clone().unwrap_or_default()),
            },
        )),
        KernelSide::Skipped(_) => None,
    };
    std::thread::scope(|s| {
        s.spawn(|| sink::run(plan, ns.as_ref().map(|(p, e)| (p.as_path(), e.clone()))))
            .join()
            .unwrap_or_else(|_| bail!("the measuring thread panicked"))
    })
}

/// A line on the kernel side's set-up, and the qdisc note.
fn describe(side: &KernelSide) -> (String, Option<String>) {
    match side {
        KernelSide::Skipped(why) => (format!("kernel side {why}"), None),
        KernelSide::Runs(ns) => (
            format!(
                "kernel sink: {} device {} in namespace {} (mtu 1500, qdisc {}), route {} dev {}",
                ns.kind.name(),
                netns::SINK,
                ns.name(),
                ns.qdisc,
                netns::DEST_NET,
                netns::SINK
            ),
            ns.qdisc_note.clone(),
        ),
    }
}

fn print(
    a: &BenchArgs,
    plan: &Plan,
    date: &str,
    env: &str,
    qnote: Option<&str>,
    t: &SinkTable,
) -> Result<()> {
    let mut targets = output::targets(t);
    targets.extend(threads::targets(&t.threads));
    let wires = &t.wires;
    let mut out = io::stdout().lock();
    if a.json {
        let v = json!({
            "date": date, "cpu": plan.cpu, "rounds": plan.rounds,
            "run_ms": plan.dur.as_secs_f64() * 1e3, "kernel": env, "qdisc_note": qnote,
            "memcpy_65000_gbit_per_s": t.memcpy_gbps, "sink": output::cases_json(t),
            "wires": output::wires_json(wires), "threads": threads::json(&t.threads),
            "targets": output::targets_json(&targets),
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(
        out,
        "ipxmit bench, {date}: CPU {}, {} rounds of {:?} per sender",
        plan.cpu, plan.rounds, plan.dur
    )?;
    writeln!(out, "{env}")?;
    if let Some(n) = qnote {
        writeln!(out, "note: noqueue refused: {n}")?;
    }
    writeln!(
        out,
        "\nSink table (medians; B/A = ipxmit datagrams/s over the faster kernel sender):"
    )?;
    writeln!(out, "{}", output::sink_table(t))?;
    writeln!(
        out,
        "memcpy on CPU {} for 65000-byte copies: {:.2} Gbit/s",
        plan.cpu, t.memcpy_gbps
    )?;
    writeln!(out, "\nReal-wire table:\n{}", output::wire_table(wires))?;
    if !t.threads.is_empty() {
        writeln!(
            out,
            "\nThread-scaling table (medians; thread i pinned to CPU i; load average {}):\n{}",
            threads::load_average(),
            threads::table(&t.threads)
        )?;
    }
    writeln!(out, "\nTargets:\n{}", output::target_lines(&targets))?;
    Ok(())
}
