//! Helpers shared by the CLI tests: run the real `ipxmit` binary on scripts
//! in a per-test directory, read capture files back.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ipxmit")
}

/// A fresh, empty directory for one test.
pub fn tmpdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create test directory");
    d
}

/// What a run printed and returned.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `ipxmit ARGS` in `dir`.
pub fn ipxmit(dir: &Path, args: &[&str]) -> Run {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run ipxmit")
        .into()
}

/// Writes `script` to `dir/script.txt` and runs `ipxmit run ARGS script.txt`.
pub fn run_script(dir: &Path, script: &str, args: &[&str]) -> Run {
    std::fs::write(dir.join("script.txt"), script).expect("write script");
    let mut a = vec!["run"];
    a.extend_from_slice(args);
    a.push("script.txt");
    let r = ipxmit(dir, &a);
    assert!(
        !r.stderr.contains("panicked"),
        "ipxmit panicked: {}",
        r.stderr
    );
    r
}

/// The frames of a classic nanosecond little-endian pcap file (what ipxmit
/// writes), with their timestamps in nanoseconds.
pub fn pcap_frames(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let b = std::fs::read(path).expect("read capture");
    assert!(b.len() >= 24, "capture too short");
    assert_eq!(&b[..4], &[0x4d, 0x3c, 0xb2, 0xa1], "nanosecond pcap magic");
    let u32le = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let mut at = 24;
    let mut v = Vec::new();
    while at + 16 <= b.len() {
        let ts = u64::from(u32le(at)) * 1_000_000_000 + u64::from(u32le(at + 4));
        let incl = u32le(at + 8) as usize;
        v.push((ts, b[at + 16..at + 16 + incl].to_vec()));
        at += 16 + incl;
    }
    assert_eq!(at, b.len(), "trailing bytes in capture");
    v
}

/// Parses a hex string with spaces and newlines.
pub fn hex(s: &str) -> Vec<u8> {
    let h: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

/// The JSON lines of a `--json` run.
pub fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// `sh -c CMD` in network namespace `ns`: stdout, stderr, exit code.
pub fn sh(ns: &str, cmd: &str) -> (String, String, i32) {
    let o = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", cmd])
        .output()
        .expect("ip netns exec");
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

/// Runs each of `rules` in namespace `ns` with the real tool: a line the
/// kernel takes is appended to `script`; one it refuses must be refused by
/// ipxmit after `script` with the same first message line
/// ([`assert_refused_as`]). Returns how many the kernel refused.
pub fn replay_as_kernel(ns: &str, script: &mut String, rules: &[&str], tag: &str) -> usize {
    let mut refused = 0;
    for line in rules {
        let (_, err, code) = sh(ns, line);
        if code == 0 {
            script.push_str(line);
            script.push('\n');
            continue;
        }
        refused += 1;
        assert_refused_as(script, line, &err, tag);
    }
    refused
}

/// Asserts that ipxmit refuses `line` after `script` (exit status 2)
/// with the first line of the kernel tool's message `kernel_err`.
pub fn assert_refused_as(script: &str, line: &str, kernel_err: &str, tag: &str) {
    let dir = tmpdir(tag);
    let r = run_script(&dir, &format!("{script}{line}\n"), &["--no-stats"]);
    let first = kernel_err.lines().next().unwrap_or("");
    assert_eq!(r.code, 2, "{line}: {}", r.stderr);
    assert!(
        r.stderr.contains(first),
        "{line}:\nkernel: {kernel_err}\nipxmit: {}",
        r.stderr
    );
}

/// A network namespace a test made, deleted when dropped.
pub struct Ns(pub String);

impl Ns {
    /// Creates namespace `name` (`ip netns add`), deleted when dropped.
    pub fn add(name: String) -> Ns {
        let ns = Ns(name);
        let ok = Command::new("ip").args(["netns", "add", &ns.0]).status();
        assert!(ok.is_ok_and(|s| s.success()), "ip netns add {}", ns.0);
        ns
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Why a kernel-differential test cannot run here: no root or no network
/// namespaces, or one of `tools` not on the `PATH`; `None` when it can.
pub fn missing_tools(tools: &[&str]) -> Option<String> {
    if let Some(why) = ipxmit_drivers::netns::unavailable() {
        return Some(why.to_string());
    }
    tools.iter().find_map(|t| {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        (!ok).then(|| format!("{t} missing"))
    })
}
