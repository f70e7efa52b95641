//! Per-case settings of the kernel's sink, made before a case and undone after
//! it, in the benchmark's namespace: the sink's checksum offload (`ethtool -K
//! sink0 tx off`), its root qdisc (`tc qdisc replace dev sink0 root pfifo
//! limit 1000`), one accept-all nftables rule on the output hook (table
//! `ip ipxbench`, chain `out`) and the policy rules and tables of
//! [`super::policy`] (`ip -n NS rule add ...`, `ip -n NS route add ... table
//! N`, checked with `ip route get` to route the benchmark's flow from table
//! 105). A qdisc or a hook the machine cannot give (no `nft` binary, a kernel
//! without the qdisc) makes that case's kernel rows say why instead of
//! measuring; ipxmit's row still runs.
//!
//! The checksum offload is switched with an ioctl from the calling thread,
//! which must be in the namespace; the commands name the namespace themselves
//! (`tc -n NS`, `ip netns exec NS nft`).

use std::io;
use std::process::Command;

use super::cases::{Case, NftCase, NFT_TABLE};
use super::kernel::{self, Offloads};
use super::netns::{DEST, LOCAL_ADDR, SINK};
use super::policy::{self, FLOW_TABLE};

/// The nft commands that add the `-hook` cases' table `ip ipxbench`, its
/// `output` base chain and the one rule every packet is evaluated against.
pub const NFT_ADD: &str = "add table ip ipxbench; \
    add chain ip ipxbench out { type filter hook output priority 0; policy accept; }; \
    add rule ip ipxbench out accept";

/// The nft command that removes the table, its chain and its rule.
pub const NFT_DEL: &str = "delete table ip ipxbench";
/// The nft commands of the `-snat` cases' table, chain and rule, the same
/// on both sides (the kernel's runs them as one script, joined by `;`): the
/// sink's datagrams leave from 10.99.0.7 and a port of 40000-40010.
pub const NFT_SNAT_ADD: [&str; 3] = [
    "add table ip ipxbenchnat",
    "add chain ip ipxbenchnat post { type nat hook postrouting priority srcnat; }",
    "add rule ip ipxbenchnat post udp dport 9 snat to 10.99.0.7:40000-40010",
];
/// Deletes it.
pub const NFT_SNAT_DEL: &str = "delete table ip ipxbenchnat";

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
    /// The `-snat` nft table was added.
    snat_set: bool,
    /// The `-nft` cases' table was added.
    nft_set: bool,
    rules_set: bool,
}

/// Runs `args` (the program first); a failure's stderr becomes the error.
fn run(args: &[&str]) -> Result<(), SettingError> {
    run_out(args).map(drop)
}

/// [`run`], returning what the command printed on stdout.
fn run_out(args: &[&str]) -> Result<String, SettingError> {
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
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -n NS ARGS`.
pub fn ip_command<'a>(ns: &'a str, args: &'a [String]) -> Vec<&'a str> {
    let mut a = vec!["ip", "-n", ns];
    a.extend(args.iter().map(String::as_str));
    a
}

/// The words after `ip` that ask for the benchmark flow's route: `route
/// get 10.99.1.2 from 10.99.0.1 ipproto udp dport 9`.
pub fn flow_route_get() -> Vec<String> {
    let (d, s, p) = (DEST.ip().to_string(), LOCAL_ADDR.to_string(), DEST.port());
    let w = ["route", "get", &d, "from", &s, "ipproto", "udp", "dport"];
    let mut v: Vec<String> = w.iter().map(|x| x.to_string()).collect();
    v.push(p.to_string());
    v
}

/// Adds [`policy::ROUTES`] then [`policy::RULES`] in namespace `ns`, and
/// checks that the kernel now routes the benchmark's flow from
/// [`FLOW_TABLE`]; `Ok(Err(why))` when it does not.
fn add_policy(ns: &str) -> Result<Result<(), String>, SettingError> {
    let routes = policy::ROUTES.iter().map(|r| r.ip_args());
    for args in routes.chain(policy::RULES.iter().map(|r| r.ip_args())) {
        run(&ip_command(ns, &args))?;
    }
    let get = flow_route_get();
    let shown = run_out(&ip_command(ns, &get))?;
    if names_table(&shown, FLOW_TABLE) {
        return Ok(Ok(()));
    }
    Ok(Err(format!(
        "SKIPPED: `ip {}` does not name table {FLOW_TABLE}: {}",
        get.join(" "),
        shown.trim()
    )))
}

/// True when `ip route get`'s answer `shown` says `table T`.
fn names_table(shown: &str, table: u32) -> bool {
    let t = table.to_string();
    let w: Vec<&str> = shown.split_whitespace().collect();
    w.windows(2).any(|p| p == ["table", t.as_str()])
}

/// Deletes what [`add_policy`] added: the rules by priority, then the
/// tables' routes.
fn del_policy(ns: &str) -> Result<(), SettingError> {
    for r in &policy::RULES {
        run(&ip_command(ns, &r.ip_del_args()))?;
    }
    for args in policy::flush_args() {
        run(&ip_command(ns, &args))?;
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
/// offload, then its root qdisc, its output hook and its policy rules when
/// it names them.
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
        snat_set: false,
        nft_set: false,
        rules_set: false,
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
    if case.snat && a.skip.is_none() {
        if !nft_installed() {
            a.skip = Some(NO_NFT.to_string());
        } else {
            match run(&nft_command(ns, &NFT_SNAT_ADD.join("; "))) {
                Ok(()) => a.snat_set = true,
                Err(e) => a.skip = Some(format!("SKIPPED: {}", e.chain())),
            }
        }
    }
    if case.nft != NftCase::None && a.skip.is_none() {
        if !nft_installed() {
            a.skip = Some(NO_NFT.to_string());
        } else {
            match run(&nft_command(ns, &case.nft.commands().join("; "))) {
                Ok(()) => a.nft_set = true,
                Err(e) => a.skip = Some(format!("SKIPPED: {}", e.chain())),
            }
        }
    }
    if case.rules && a.skip.is_none() {
        match add_policy(ns) {
            Ok(r) => (a.rules_set, a.skip) = (true, r.err()),
            Err(e) => a.skip = Some(format!("SKIPPED: {}", e.chain())),
        }
    }
    Ok(a)
}

/// Undoes what [`apply`] did: deletes the policy rules and tables and the
/// nftables table, puts the sink's own root qdisc `sink_qdisc` back and
/// turns the checksum offload back on. (The kernel keeps its lookups on the
/// rules path once a rule was added, `fib_has_custom_rules`: the `-rules`
/// cases run in a namespace of their own.)
pub fn restore(ns: &str, sink_qdisc: &str, case: Case, a: &Applied) -> Result<(), SettingError> {
    if a.rules_set {
        del_policy(ns)?;
    }
    if a.hook_set {
        run(&nft_command(ns, NFT_DEL))?;
    }
    if a.snat_set {
        run(&nft_command(ns, NFT_SNAT_DEL))?;
    }
    if a.nft_set {
        run(&nft_command(ns, &format!("delete table ip {NFT_TABLE}")))?;
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
    fn the_snat_table_holds_the_snat_rule() {
        assert!(NFT_SNAT_ADD[2].ends_with("udp dport 9 snat to 10.99.0.7:40000-40010"));
        assert!(NFT_SNAT_ADD[1].contains("type nat hook postrouting"));
        assert_eq!(NFT_SNAT_DEL, "delete table ip ipxbenchnat");
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
    fn the_policy_is_added_with_ip_and_checked_with_route_get() {
        let args = policy::RULES[9].ip_args();
        assert_eq!(
            ip_command("ns1", &args)[..6],
            ["ip", "-n", "ns1", "rule", "add", "priority"]
        );
        assert_eq!(
            flow_route_get().join(" "),
            "route get 10.99.1.2 from 10.99.0.1 ipproto udp dport 9"
        );
        // iproute2 6.1's answer for a route from a numbered table.
        let shown = "10.99.1.2 from 10.99.0.1 dev sink0 table 105 uid 0 \n    cache \n";
        assert!(names_table(shown, 105));
        assert!(!names_table(
            "10.99.1.2 from 10.99.0.1 dev sink0 uid 0",
            105
        ));
        assert!(!names_table("10.99.1.2 dev sink0 table 1050", 105));
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
