//! `ipxmit`: drive the user-space IPv4 transmit path from the command line.
//!
//! `ipxmit send` runs a workload on a one-device host — by default the embedded
//! in-memory wire with a verifying peer — and prints what was sent, what the peer
//! verified, and the statistics in the formats of `ip -s link`, `tc -s qdisc` and
//! `nstat`. `ipxmit run SCRIPT` builds a whole host and runs a sequence of
//! socket operations from a script.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod human;
mod progress;
mod send;

// The script language lives in the library target (for the fuzz targets).
use ipxmit_cli::{report, script, values};

/// The ipxmit command line.
#[derive(Parser, Debug)]
#[command(
    name = "ipxmit",
    version,
    about = "The Linux IPv4 transmit path in user space"
)]
struct Cli {
    /// Print the kernel's tracepoints as events on stderr: -v route lookups
    /// (fib_table_lookup), neighbour updates and drops (kfree_skb); -vv also
    /// qdisc dequeues; -vvv also every packet (net_dev_queue,
    /// net_dev_start_xmit, net_dev_xmit). RUST_LOG, when set, decides
    /// instead (e.g. RUST_LOG=ipxmit::net=trace,ipxmit::skb=info).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Send a UDP workload through the stack (default: in-memory wire with a
    /// verifying peer).
    Send(send::SendArgs),
    /// Build a host and run socket operations from a script file (`-` for
    /// stdin); see docs/script.md.
    Run(script::RunArgs),
    /// Print the plan a UDP send will follow, step by step, each step with
    /// the kernel function it mirrors (on the default host, or one a
    /// script builds); see docs/script.md's `explain`.
    Explain(script::explain::ExplainArgs),
    /// Run a script through the real kernel (in throwaway network
    /// namespaces; root) and through ipxmit, and print the first
    /// differences: return values, frames, counters.
    Diff(ipxmit_cli::diff::DiffArgs),
    /// Benchmark ipxmit against the kernel's own UDP send path on one pinned
    /// core (root for the kernel side; see the README's "Benchmarks").
    Bench(bench::BenchArgs),
}

/// Events to stderr: at the level `-v` counts (warnings without it), or as
/// `RUST_LOG` says when it is set (a malformed one is reported and the
/// `-v` level used). With neither, the library's tracepoints (all below
/// `warn`) are off and cost one load and a branch each.
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(&v).unwrap_or_else(|e| {
            let _ = writeln!(io::stderr(), "ipxmit: ignoring RUST_LOG={v:?}: {e}");
            EnvFilter::new(default)
        }),
        _ => EnvFilter::new(default),
    };
    // Colours only for a terminal: a log redirected to a file or a pipe is
    // plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .try_init();
}

/// True when `e` (anywhere in its chain) is a broken pipe: the reader went away,
/// which is not an error for a command-line tool.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let cmd = cli.cmd.unwrap_or_else(|| {
        // The main job captures too: say where, before anything else.
        let a = send::SendArgs::default_args();
        if let Some(p) = &a.pcap {
            let _ = writeln!(
                io::stderr(),
                "ipxmit: no command: running `ipxmit send --pcap {}` (every frame captured there)",
                p.display()
            );
        }
        Cmd::Send(a)
    });
    let r = match cmd {
        Cmd::Send(a) => send::run(a),
        Cmd::Run(a) => script::run(a),
        Cmd::Explain(a) => script::explain::run(a),
        Cmd::Diff(a) => ipxmit_cli::diff::run(a),
        Cmd::Bench(a) => bench::run(a),
    };
    match r {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "ipxmit: {e:#}");
            ExitCode::from(2)
        }
    }
}
