//! `sysctl` command lines in scripts: sysctl(8)'s words, its messages and
//! its output, for the keys the stack models ([`ipxmit::stack::Sysctls`]).
//!
//! Stands for procps' `sysctl` (`-w`, `-n`, `-q`; `KEY=VALUE` writes, `KEY`
//! reads; `/` in a key is `.`) and for the kernel's `proc_handler`s of the
//! keys (`proc_dou8vec_minmax`, `proc_dointvec_minmax`,
//! `proc_dointvec_jiffies`): a value is read as `proc_get_long` reads it
//! (decimal, `0x` hexadecimal, `0` octal, up to a blank), and one out of
//! the key's range is `EINVAL` (`sysctl: setting key "K": Invalid
//! argument`). A key the stack does not model does not exist (`sysctl:
//! cannot stat /proc/sys/...: No such file or directory`).

use std::time::Duration;

use ipxmit::ipv4::icmp_rate::{jiffies_to_ms, ms_to_jiffies};
use ipxmit::sched::QdiscSpec;
use ipxmit::stack::Sysctls;
use ipxmit::Stack;

/// A `sysctl` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlCommand {
    /// `-w`: every argument is `KEY=VALUE`.
    pub write: bool,
    /// `-n`: print values only.
    pub values_only: bool,
    /// `-q`: print nothing for writes.
    pub quiet: bool,
    /// The keys (`.`-separated), each with the value to write.
    pub items: Vec<(String, Option<String>)>,
}

/// Parses the words after `sysctl`, as sysctl does (its messages).
pub fn parse(words: &[String]) -> Result<SysctlCommand, super::parse::ParseError> {
    let err = |m: String| super::parse::ParseError::Tool(m);
    let mut c = SysctlCommand {
        write: false,
        values_only: false,
        quiet: false,
        items: Vec::new(),
    };
    for w in words {
        match w.as_str() {
            "-w" | "--write" => c.write = true,
            "-n" | "--values" => c.values_only = true,
            "-q" | "--quiet" => c.quiet = true,
            o if o.starts_with('-') => {
                return Err(err(format!("sysctl: invalid option -- '{}'", &o[1..])))
            }
            kv => {
                let (k, v) = match kv.split_once('=') {
                    Some((k, v)) => (k, Some(v.to_string())),
                    None => (kv, None),
                };
                c.items.push((k.replace('/', "."), v));
            }
        }
    }
    if c.items.is_empty() {
        return Err(err("sysctl: no variables specified".into()));
    }
    if c.write && c.items.iter().any(|(_, v)| v.is_none()) {
        return Err(err(
            "sysctl: command line(0): invalid syntax, continuing...".into(),
        ));
    }
    Ok(c)
}

/// `proc_get_long`: an optional `-`, then digits in the base their prefix
/// says (`0x` hexadecimal, `0` octal, else decimal), ended by the end or
/// a blank (what follows is not read). Leading blanks are skipped.
pub fn proc_long(s: &str) -> Option<i64> {
    let s = s.trim_start();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    let digits = &s[..end];
    let (radix, d) = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, h)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if d.is_empty() || !d.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = i64::from_str_radix(d, radix).ok()?;
    Some(if neg { -v } else { v })
}

/// `SOCK_MIN_SNDBUF` (x86_64, 6.1): the least `wmem_default`/`wmem_max`.
const SOCK_MIN_SNDBUF: i64 = 4608;

/// The value of `key` as `/proc/sys` reads it; `None` for a key the stack
/// does not model.
pub fn read(s: &Sysctls, key: &str) -> Option<String> {
    Some(match key {
        "net.core.default_qdisc" => s.default_qdisc.kind().to_string(),
        "net.core.wmem_default" => s.wmem_default.to_string(),
        "net.core.wmem_max" => s.wmem_max.to_string(),
        "net.ipv4.ip_default_ttl" => s.ip_default_ttl.to_string(),
        "net.ipv4.ip_no_pmtu_disc" => s.ip_no_pmtu_disc.to_string(),
        "net.ipv4.icmp_msgs_per_sec" => s.icmp_msgs_per_sec.to_string(),
        "net.ipv4.icmp_msgs_burst" => s.icmp_msgs_burst.to_string(),
        "net.ipv4.icmp_ratelimit" => jiffies_to_ms(u64::from(s.icmp_ratelimit)).to_string(),
        "net.ipv4.icmp_ratemask" => s.icmp_ratemask.to_string(),
        "net.ipv4.route.min_pmtu" => s.min_pmtu.to_string(),
        "net.ipv4.route.mtu_expires" => s.mtu_expires.as_secs().to_string(),
        _ => return None,
    })
}

/// Why a write is refused: the errno's text, as sysctl prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteError {
    /// `EINVAL`: not a number, or out of the key's range.
    Invalid,
    /// `ENOENT`: `default_qdisc` names no qdisc.
    NoEnt,
}

/// Kernel: the key's `proc_handler` on a write. Sets `key` in `s` from
/// `v`, or says why not (`Ok(false)`: no such key).
fn write(s: &mut Sysctls, key: &str, v: &str) -> Result<bool, WriteError> {
    let num = |lo: i64, hi: i64| match proc_long(v) {
        Some(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(WriteError::Invalid),
    };
    const INT_MAX: i64 = i32::MAX as i64;
    match key {
        "net.core.default_qdisc" => {
            let name = v.split_whitespace().next().unwrap_or("");
            s.default_qdisc = QdiscSpec::parse(&[name]).map_err(|_| WriteError::NoEnt)?;
        }
        "net.core.wmem_default" => s.wmem_default = num(SOCK_MIN_SNDBUF, INT_MAX)? as usize,
        "net.core.wmem_max" => s.wmem_max = num(SOCK_MIN_SNDBUF, INT_MAX)? as usize,
        "net.ipv4.ip_default_ttl" => s.ip_default_ttl = num(1, 255)? as u8,
        "net.ipv4.ip_no_pmtu_disc" => s.ip_no_pmtu_disc = num(0, 255)? as u8,
        "net.ipv4.icmp_msgs_per_sec" => s.icmp_msgs_per_sec = num(0, INT_MAX)? as i32,
        "net.ipv4.icmp_msgs_burst" => s.icmp_msgs_burst = num(0, INT_MAX)? as i32,
        "net.ipv4.icmp_ratemask" => s.icmp_ratemask = num(-INT_MAX - 1, INT_MAX)? as i32,
        // proc_dointvec_ms_jiffies: kept in jiffies (1001 reads 1004).
        "net.ipv4.icmp_ratelimit" => {
            let ms = num(0, INT_MAX)? as u64;
            s.icmp_ratelimit = ms_to_jiffies(ms)
                .try_into()
                .map_err(|_| WriteError::Invalid)?;
        }
        "net.ipv4.route.min_pmtu" => s.min_pmtu = num(68, INT_MAX)? as u32,
        "net.ipv4.route.mtu_expires" => {
            // A negative time has passed at once: nothing learned lives.
            let secs = num(-INT_MAX - 1, INT_MAX)?;
            s.mtu_expires = Duration::from_secs(secs.max(0) as u64);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// `/proc/sys/...` of a key, for sysctl's "cannot stat" message.
fn proc_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// Carries out a `sysctl` line on `stack`: what sysctl prints, or its
/// message for the first key it cannot read or write (the keys before it
/// are written).
pub fn run(stack: &Stack, c: &SysctlCommand) -> Result<String, String> {
    let mut out = String::new();
    for (key, value) in &c.items {
        let cur = stack.sysctls();
        if read(&cur, key).is_none() {
            return Err(format!(
                "sysctl: cannot stat {}: No such file or directory",
                proc_path(key)
            ));
        }
        let shown = match value {
            None => read(&cur, key).unwrap_or_default(),
            Some(v) => {
                let mut next = cur.clone();
                match write(&mut next, key, v) {
                    Ok(_) => stack.set_sysctls(|s| *s = next),
                    Err(e) => {
                        let why = match e {
                            WriteError::Invalid => "Invalid argument",
                            WriteError::NoEnt => "No such file or directory",
                        };
                        return Err(format!("sysctl: setting key \"{key}\": {why}"));
                    }
                }
                if c.quiet {
                    continue;
                }
                v.clone()
            }
        };
        if c.values_only {
            out.push_str(&format!("{shown}\n"));
        } else {
            out.push_str(&format!("{key} = {shown}\n"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn values_are_read_as_the_kernel_reads_them() {
        assert_eq!(proc_long("64"), Some(64));
        assert_eq!(proc_long("0x10"), Some(16));
        assert_eq!(proc_long("012"), Some(10));
        assert_eq!(proc_long(" 12 13"), Some(12));
        assert_eq!(proc_long("-1"), Some(-1));
        assert_eq!(proc_long("+13"), None);
        assert_eq!(proc_long("12abc"), None);
        assert_eq!(proc_long(""), None);
        assert_eq!(proc_long("08"), None);
    }

    #[test]
    fn ranges_and_messages() {
        let st = Stack::new();
        let run_line = |l: &str| {
            parse(&words(l))
                .map_err(|e| e.to_string())
                .and_then(|c| run(&st, &c))
        };
        assert_eq!(
            run_line("-w net.ipv4.ip_default_ttl=65").unwrap(),
            "net.ipv4.ip_default_ttl = 65\n"
        );
        assert_eq!(st.default_ttl(), 65);
        assert_eq!(
            run_line("net/ipv4/ip_default_ttl").unwrap(),
            "net.ipv4.ip_default_ttl = 65\n"
        );
        for bad in ["0", "256", "abc", ""] {
            let l = format!("-w net.ipv4.ip_default_ttl={bad}");
            assert_eq!(
                run_line(&l).unwrap_err(),
                "sysctl: setting key \"net.ipv4.ip_default_ttl\": Invalid argument"
            );
        }
        assert_eq!(
            run_line("-w net.ipv4.foo=1").unwrap_err(),
            "sysctl: cannot stat /proc/sys/net/ipv4/foo: No such file or directory"
        );
        assert!(run_line("-w net.ipv4.route.min_pmtu=67").is_err());
        assert!(run_line("-w net.ipv4.route.min_pmtu=70000").is_ok());
        assert!(run_line("-w net.ipv4.icmp_ratelimit=1001").is_ok());
        assert_eq!(run_line("-n net.ipv4.icmp_ratelimit").unwrap(), "1004\n");
        assert!(run_line("-w net.ipv4.icmp_ratelimit=-1000").is_err());
        assert!(run_line("-w net.ipv4.icmp_msgs_burst=-1").is_err());
        assert!(run_line("-w net.ipv4.icmp_msgs_per_sec=2147483648").is_err());
        assert!(run_line("-w net.ipv4.icmp_ratemask=-5").is_ok());
        assert_eq!(run_line("-n net.ipv4.icmp_ratemask").unwrap(), "-5\n");
        assert!(run_line("-w net.ipv4.ip_no_pmtu_disc=-1").is_err());
        assert!(run_line("-w net.ipv4.ip_no_pmtu_disc=4").is_ok());
        assert_eq!(run_line("-n net.ipv4.ip_no_pmtu_disc").unwrap(), "4\n");
        assert_eq!(run_line("-q -w net.ipv4.route.mtu_expires=5").unwrap(), "");
        assert_eq!(st.sysctls().mtu_expires, Duration::from_secs(5));
        assert_eq!(
            run_line("-w net.core.default_qdisc=nosuch").unwrap_err(),
            "sysctl: setting key \"net.core.default_qdisc\": No such file or directory"
        );
        assert!(run_line("-w net.core.wmem_max=4607").is_err());
        assert!(run_line("-w net.core.wmem_max=4608").is_ok());
        assert_eq!(
            run_line("-w net.ipv4.ip_default_ttl").unwrap_err(),
            "sysctl: command line(0): invalid syntax, continuing..."
        );
    }
}
