//! Per-case settings of the kernel's sink, made before a case and undone after
//! it, in the benchmark's namespace: the sink's checksum offload (`ethtool -K
//! sink0 tx off`), its root qdisc (`tc qdisc replace dev sink0 root pfifo
//! limit 1000`) and one accept-all nftables rule on the output hook (table
//! `ip ipxbench`, chain `out`). A qdisc or a hook the machine cannot give (no
//! `nft` binary, a kernel without the qdisc) makes that case's kernel rows say
//! why instead of measuring; ipxmit's row still runs.
//!
//! The checksum offload is switched with an ioctl from the calling thread,
//! which must be in the namespace; the commands name the namespace themselves
//! (`tc -n NS`, `ip netns exec NS nft`).

use std::io;
use std::process::Command;

use super::cases::Case;
use super::kernel::{self, Offloads};
use super::netns::SINK;

/// The nft commands that add the `-hook` cases' table `ip ipxbench`, its
/// `output` base chain and the one rule every packet is evaluated against.
pub const NFT_ADD: &str = "add table ip ipxbench; \
    add chain ip ipxbench out { type filter hook output priority 0; policy accept; }; \
    add rule ip ipxbench out accept";

/// The nft command that removes the table, its chain and its rule.
pub const NFT_DEL: &str = "delete table ip ipxbench";

/// What a kernel row says when there is no `nft` to install the hook with.
pub const NO_NFT: &str = "SKIPPED: no nft binary (apt-get install nftables)";

/// Why a setting could not be made or undone.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    /// A command could not be started.
    #[error("cannot run `{cmd}`")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A command ran and failed.
    #[error("`{cmd}` failed: {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The sink's checksum offload could not be switched.
    #[error("setting {SINK} tx checksumming {state}")]
    Csum {
        /// `on` or `off`.
        state: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The sink's offloads could not be read back.
    #[error("reading {SINK}'s offloads")]
    Offloads(#[source] io::Error),
}

impl SettingError {
    /// The error and its causes on one line (`a: b: c`).
    pub fn chain(&self) -> String {
        let mut s = self.to_string();
        let mut e: &dyn std::error::Error = self;
        while let Some(next) = e.source() {
            s.push_str(&format!(": {next}"));
            e = next;
        }
        s
    }
}

/// The sink as a case's settings left it: its offloads, whether the kernel
/// side can run, and what [`restore`] has to undo.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The sink's offloads, as the kernel reports them.
    pub offloads: Offloads,
    /// Why the kernel side cannot run this case, if it cannot.
    pub skip: Option<String>,
    qdisc_set: bool,
    hook_set: bool,
}

/// Runs `args` (the program first); a failure's stderr becomes the error.
fn run(args: &[&str]) -> Result<(), SettingError> {
    let cmd = args.join(" ");
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|source| SettingError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(SettingError::Failed { cmd, stderr });
    }
    Ok(())
}

/// `tc -n NS qdisc replace dev sink0 root SPEC`.
pub fn qdisc_command<'a>(ns: &'a str, spec: &'a str) -> Vec<&'a str> {
    let mut a = vec!["tc", "-n", ns, "qdisc", "replace", "dev", SINK, "root"];
    a.extend(spec.split_whitespace());
    a
}

/// `tc -n NS class add dev sink0 SPEC`.
pub fn class_command<'a>(ns: &'a str, spec: &'a str) -> Vec<&'a str> {
    let mut a = vec!["tc", "-n", ns, "class", "add", "dev", SINK];
    a.extend(spec.split_whitespace());
    a
}

/// `ip netns exec NS nft SCRIPT`.
pub fn nft_command<'a>(ns: &'a str, script: &'a str) -> [&'a str; 6] {
    ["ip", "netns", "exec", ns, "nft", script]
}

/// True when an `nft` binary runs.
pub fn nft_installed() -> bool {
    Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// Makes `case`'s settings on the sink of namespace `ns`: its checksum
/// offload, then its root qdisc and its output hook when it names them.
pub fn apply(ns: &str, case: Case) -> Result<Applied, SettingError> {
    let on = case.csum_offload;
    kernel::set_csum(SINK, on).map_err(|source| SettingError::Csum {
        state: on_off(on),
        source,
    })?;
    let mut a = Applied {
        offloads: kernel::offloads(SINK).map_err(SettingError::Offloads)?,
        skip: None,
        qdisc_set: false,
        hook_set: false,
    };
    if let Some(spec) = case.qdisc {
        let r = run(&qdisc_command(ns, spec)).and_then(|()| {
            a.qdisc_set = true;
            case.classes
                .iter()
                .try_for_each(|c| run(&class_command(ns, c)))
        });
        if let Err(e) = r {
            a.skip = Some(format!("SKIPPED: {}", e.chain()));
        }
    }
    if case.hook && a.skip.is_none() {
        if !nft_installed() {
            a.skip = Some(NO_NFT.to_string());
        } else {
            match run(&nft_command(ns, NFT_ADD)) {
                Ok(()) => a.hook_set = true,
                Err(e) => a.skip = Some(format!("SKIPPED: {}", e.chain())),
            }
        }
    }
    Ok(a)
}

/// Undoes what [`apply`] did: deletes the nftables table, puts the sink's own
/// root qdisc `sink_qdisc` back and turns the checksum offload back on.
pub fn restore(ns: &str, sink_qdisc: &str, case: Case, a: &Applied) -> Result<(), SettingError> {
    if a.hook_set {
        run(&nft_command(ns, NFT_DEL))?;
    }
    if a.qdisc_set {
        run(&qdisc_command(ns, sink_qdisc))?;
    }
    if !case.csum_offload {
        kernel::set_csum(SINK, true).map_err(|source| SettingError::Csum {
            state: "on",
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::cases::PFIFO;

    #[test]
    fn the_qdisc_command_is_tc_replace_of_the_root() {
        assert_eq!(
            qdisc_command("ns1", PFIFO),
            [
                "tc", "-n", "ns1", "qdisc", "replace", "dev", SINK, "root", "pfifo", "limit",
                "1000"
            ]
        );
        assert_eq!(qdisc_command("ns1", "noqueue").last(), Some(&"noqueue"));
    }

    #[test]
    fn the_hook_is_one_accept_rule_in_an_output_chain_of_our_table() {
        let [ip, netns, exec, ns, nft, script] = nft_command("ns1", NFT_ADD);
        assert_eq!(
            [ip, netns, exec, ns, nft],
            ["ip", "netns", "exec", "ns1", "nft"]
        );
        let cmds: Vec<&str> = script.split("; add ").collect();
        assert_eq!(cmds.len(), 3, "{script}");
        assert_eq!(cmds[0], "add table ip ipxbench");
        assert_eq!(
            cmds[1],
            "chain ip ipxbench out { type filter hook output priority 0; policy accept; }"
        );
        assert_eq!(cmds[2], "rule ip ipxbench out accept");
        assert_eq!(NFT_DEL, "delete table ip ipxbench");
    }

    #[test]
    fn errors_print_their_causes() {
        let e = SettingError::Csum {
            state: "off",
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert!(e.chain().starts_with("setting sink0 tx checksumming off: "));
        let e = run(&["/nonexistent/ipxmit-no-such-tool", "x"]).unwrap_err();
        assert!(matches!(e, SettingError::Spawn { .. }), "{e:?}");
        let e = run(&["sh", "-c", "echo nope >&2; exit 3"]).unwrap_err();
        assert_eq!(e.chain(), "`sh -c echo nope >&2; exit 3` failed: nope");
    }
}
