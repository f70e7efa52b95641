//! Values that both `ipxmit send`'s options and script lines take, checked
//! once here so that the two refuse the same things with the same words,
//! and the quoting every message uses for what the user wrote.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// The kernel's bound on a device's transmit queues (`rtnl_create_link`:
/// "Invalid number of transmit queues" outside 1..=4096).
pub const MAX_TXQUEUES: u64 = 4096;
/// Sender threads of `send --threads`.
pub const MAX_THREADS: u64 = 256;
/// Sockets of `send --sockets`.
pub const MAX_SOCKETS: u64 = 65_536;
/// Longest quoted input in a message, in characters.
const QUOTE_MAX: usize = 40;

/// Why a value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not a number at all (the message quotes the value already).
    #[error("not a number")]
    NotANumber,
    /// A number outside what is accepted.
    #[error("out of range {lo}..={hi}")]
    OutOfRange {
        /// The lowest accepted.
        lo: u64,
        /// The highest accepted.
        hi: u64,
    },
    /// A UDP port above 65535.
    #[error("port {0} out of range 0..=65535")]
    Port(String),
    /// Not `A.B.C.D[:PORT]`.
    #[error("{0} is not ADDR[:PORT] (e.g. 10.0.0.2:9000)")]
    SockAddr(String),
    /// Not a time in tc's units.
    #[error("{0}")]
    Time(String),
}

/// `s` for a message: in double quotes, control and non-ASCII characters
/// escaped as Rust escapes them, at most 40 characters of it, with the
/// length said when cut.
pub fn quote(s: &str) -> String {
    let n = s.chars().count();
    let head: String = s.chars().take(QUOTE_MAX).collect();
    let esc: String = head.chars().flat_map(char::escape_debug).collect();
    if n > QUOTE_MAX {
        format!("\"{esc}\"... ({n} characters)")
    } else {
        format!("\"{esc}\"")
    }
}

/// A whole number, decimal or `0x` hexadecimal, within `lo..=hi`; a
/// negative number is out of range, not "not a number".
pub fn number_in(s: &str, lo: u64, hi: u64) -> Result<u64, ValueError> {
    let t = s.trim();
    let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => t.parse::<u64>().ok(),
    };
    let out = || ValueError::OutOfRange { lo, hi };
    match v {
        Some(v) if (lo..=hi).contains(&v) => Ok(v),
        Some(_) => Err(out()),
        // Too big for u64, or negative: a number, but out of range.
        None if t.trim_start_matches('-').parse::<u128>().is_ok() => Err(out()),
        None => Err(ValueError::NotANumber),
    }
}

/// Transmit queues of a device: 1..=4096, the kernel's bound.
pub fn txqueues(s: &str) -> Result<usize, ValueError> {
    number_in(s, 1, MAX_TXQUEUES).map(|n| n as usize)
}

/// `send --sockets`: 1..=65536.
pub fn sockets(s: &str) -> Result<usize, ValueError> {
    number_in(s, 1, MAX_SOCKETS).map(|n| n as usize)
}

/// `send --threads`: 1..=256.
pub fn threads(s: &str) -> Result<usize, ValueError> {
    number_in(s, 1, MAX_THREADS).map(|n| n as usize)
}

/// `IP_TTL`: 1..=255 (the kernel's `setsockopt` refuses 0 and 256 alike
/// with `EINVAL`).
pub fn ttl(s: &str) -> Result<u8, ValueError> {
    number_in(s, 1, 255).map(|n| n as u8)
}

/// `A.B.C.D[:PORT]`, `default_port` when the port is absent; a port above
/// 65535 is named as such.
pub fn sockaddr(s: &str, default_port: u16) -> Result<SocketAddrV4, ValueError> {
    let (ip, port) = match s.rsplit_once(':') {
        Some((ip, p)) => (ip, Some(p)),
        None => (s, None),
    };
    let ip: Ipv4Addr = ip.parse().map_err(|_| ValueError::SockAddr(quote(s)))?;
    let port = match port {
        None => default_port,
        Some(p) => match number_in(p, 0, 65_535) {
            Ok(v) => v as u16,
            Err(ValueError::OutOfRange { .. }) => return Err(ValueError::Port(quote(p))),
            Err(_) => return Err(ValueError::SockAddr(quote(s))),
        },
    };
    Ok(SocketAddrV4::new(ip, port))
}

/// A run time as iperf3's `-t` takes it: a bare number is seconds
/// (`10`, `2.5`); tc's time units are accepted too (`300ms`, `2s`).
pub fn run_time(s: &str) -> Result<Duration, ValueError> {
    let t = s.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return ipxmit::units::parse_time(&format!("{t}s"))
            .map_err(|e| ValueError::Time(e.to_string()));
    }
    ipxmit::units::parse_time(t).map_err(|e| ValueError::Time(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_and_cuts() {
        assert_eq!(quote("a\u{1}b"), "\"a\\u{1}b\"");
        let long = "x".repeat(1000);
        let q = quote(&long);
        assert!(q.len() < 80 && q.ends_with("(1000 characters)"), "{q}");
    }

    #[test]
    fn numbers_name_their_range() {
        assert_eq!(txqueues("64"), Ok(64));
        assert!(txqueues("0").unwrap_err().to_string().contains("1..=4096"));
        assert!(ttl("-1").unwrap_err().to_string().contains("1..=255"));
        assert_eq!(ttl("x"), Err(ValueError::NotANumber));
        for bad in ["0", "256"] {
            assert!(ttl(bad)
                .unwrap_err()
                .to_string()
                .contains("out of range 1..=255"));
        }
    }

    #[test]
    fn ports_and_times() {
        assert_eq!(
            sockaddr("10.0.0.2:99999", 9000).unwrap_err(),
            ValueError::Port("\"99999\"".into())
        );
        assert_eq!(sockaddr("10.0.0.2", 9000).unwrap().port(), 9000);
        assert_eq!(run_time("5"), Ok(Duration::from_secs(5)));
        assert_eq!(run_time("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(run_time("1.5"), Ok(Duration::from_millis(1500)));
    }
}
