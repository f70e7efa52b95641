//! `ipxmit bench --callgrind-case CASE --count N`: sends a fixed number of
//! datagrams of one case through the in-memory path (or the null device) and
//! nothing else, for counting instructions under `valgrind --tool=callgrind`.
//! The device is set up as the sink table's side B sets it up without a
//! kernel side: the case's checksum offload and root qdisc (`noqueue` when it
//! names none), for the `-hook` cases the accept-all `LocalOut` hook and
//! for the `-rules` cases the ten policy rules and five tables.
//! `scripts/callgrind.sh` runs it with N and N/2 datagrams and divides the
//! difference by N/2, which cancels start-up and warm-up.

use anyhow::{bail, Context, Result};

use super::cases;
use super::ipx::{DevSetup, IpxSender};
use super::measure::CHECK_EVERY;

/// Datagrams sent before the counted ones (fills the buffer pool); the same
/// in both runs of the script, so they cancel.
pub const WARMUP: u64 = 1024;

/// Runs the fixed-count workload; prints one line.
pub fn run(case: &str, count: u64, dev: &str, api: &str, json: bool) -> Result<()> {
    let case = cases::find_named(case.trim()).map_err(anyhow::Error::msg)?;
    let mem = match dev {
        "mem" => true,
        "null" => false,
        other => bail!("--callgrind-dev {other:?}: mem or null"),
    };
    let setup = DevSetup::for_case(case, None, "noqueue");
    let batch = match api {
        "batch" => true,
        "sendto" => false,
        other => bail!("--callgrind-api {other:?}: batch or sendto"),
    };
    let mut s = IpxSender::new(case, &setup, mem).context("building the host")?;
    let total = WARMUP + count;
    if batch && !total.is_multiple_of(CHECK_EVERY) {
        bail!("--count must be a multiple of {CHECK_EVERY} with --callgrind-api batch");
    }
    if batch {
        for _ in 0..total / CHECK_EVERY {
            if s.send_group()?.2 != 0 {
                bail!("a send was refused (ENOBUFS/EAGAIN)");
            }
        }
    } else {
        for _ in 0..total {
            if !s.send_datagram()? {
                bail!("a send was refused (ENOBUFS/EAGAIN)");
            }
        }
    }
    let frames = s.frames();
    if json {
        println!(
            "{}",
            serde_json::json!({"case": case.name, "dev": dev, "qdisc": setup.qdisc,
                "output_hook": case.hook, "policy_rules": case.rules, "datagrams": count, "warmup": WARMUP, "frames": frames})
        );
    } else {
        let hook = if case.hook { ", LocalOut hook" } else { "" };
        let rules = if case.rules {
            ", 10 rules, 5 tables"
        } else {
            ""
        };
        println!(
            "callgrind case {} on {dev} (qdisc {}{hook}{rules}): {count} datagrams \
             after {WARMUP} warm-up, {frames} frames",
            case.name, setup.qdisc
        );
    }
    Ok(())
}
