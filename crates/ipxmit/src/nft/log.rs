//! The `log` statement: the line the kernel's packet logger writes, as a
//! `tracing` event.
//!
//! Stands for `nft_log_eval()` (net/netfilter/nft_log.c) with the syslog
//! logger's `nf_log_ip_packet()` / `dump_ipv4_packet()`
//! (net/netfilter/nf_log_syslog.c): the event `nft_log` of target
//! [`TARGET`], at the level the statement asks (`emerg` to `err` ERROR,
//! `warn` WARN, `notice` and `info` INFO, `debug` DEBUG; `audit` and an
//! nflog `group` INFO), its message the kernel's line:
//! `PREFIXIN= OUT=eth0 SRC=10.0.0.1 DST=10.0.0.2 LEN=38 TOS=0x00
//! PREC=0x00 TTL=64 ID=1 DF PROTO=UDP SPT=5000 DPT=9 LEN=18 MARK=0x1`.
//! `ipxmit run` prints events at `warn` and above on stderr (the default
//! level of `log`), the others with `-v`/`-vv`. Unlike the kernel, which
//! logs from a namespace other than the first only under the sysctl
//! `nf_log_all_netns`, every stack logs.

use std::fmt::Write;

use crate::buf::PacketBuf;
use crate::dev::NetDevice;

use super::rule::Log;

/// Target of the `nft_log` event.
pub const TARGET: &str = "ipxmit::nft";

/// Kernel: `nft_log_eval()` → `nf_log_packet()`: the packet's line at the
/// statement's level; nothing formatted unless a subscriber wants it.
#[inline]
pub fn log_packet(log: &Log, pkt: &PacketBuf, out: &NetDevice) {
    let level = match log.level {
        _ if log.group.is_some() => tracing::Level::INFO,
        Some(0..=3) => tracing::Level::ERROR,
        None | Some(4) => tracing::Level::WARN,
        Some(7) => tracing::Level::DEBUG,
        Some(_) => tracing::Level::INFO,
    };
    if level_enabled(level) {
        emit(log, level, &line(log, pkt, out));
    }
}

fn level_enabled(level: tracing::Level) -> bool {
    match level {
        tracing::Level::ERROR => tracing::enabled!(target: TARGET, tracing::Level::ERROR),
        tracing::Level::WARN => tracing::enabled!(target: TARGET, tracing::Level::WARN),
        tracing::Level::INFO => tracing::enabled!(target: TARGET, tracing::Level::INFO),
        _ => tracing::enabled!(target: TARGET, tracing::Level::DEBUG),
    }
}

/// The event; an nflog `group`'s line starts `nflog group N: `.
#[cold]
#[inline(never)]
fn emit(log: &Log, level: tracing::Level, line: &str) {
    let group = log.group.map(|g| format!("nflog group {g}: "));
    let g = group.as_deref().unwrap_or("");
    match level {
        tracing::Level::ERROR => tracing::error!(name: "nft_log", target: TARGET, "{g}{line}"),
        tracing::Level::WARN => tracing::warn!(name: "nft_log", target: TARGET, "{g}{line}"),
        tracing::Level::INFO => tracing::info!(name: "nft_log", target: TARGET, "{g}{line}"),
        _ => tracing::debug!(name: "nft_log", target: TARGET, "{g}{line}"),
    }
}

/// Kernel: `dump_ipv4_packet()` after the prefix and `IN= OUT=`: the IP
/// header's fields, UDP's ports and length, the mark.
pub fn line(log: &Log, pkt: &PacketBuf, out: &NetDevice) -> String {
    let mut s = format!(
        "{}IN= OUT={} ",
        log.prefix.as_deref().unwrap_or(""),
        out.name()
    );
    let h = pkt.network_header();
    let Some(ip) = h.get(..20) else {
        let _ = write!(s, "TRUNCATED");
        return s;
    };
    let w = |o: usize| u16::from_be_bytes([ip[o], ip[o + 1]]);
    let a = |o: usize| std::net::Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]);
    let _ = write!(
        s,
        "SRC={} DST={} LEN={} TOS=0x{:02X} PREC=0x{:02X} TTL={} ID={} ",
        a(12),
        a(16),
        w(2),
        ip[1] & 0x1e,
        ip[1] & 0xe0,
        ip[8],
        w(4)
    );
    let frag = w(6);
    for (bit, name) in [(0x8000, "CE "), (0x4000, "DF "), (0x2000, "MF ")] {
        if frag & bit != 0 {
            s.push_str(name);
        }
    }
    if frag & 0x1fff != 0 {
        let _ = write!(s, "FRAG:{} ", frag & 0x1fff);
    }
    transport(&mut s, h, ip[9], frag & 0x1fff == 0);
    if pkt.meta.mark != 0 {
        let _ = write!(s, "MARK=0x{:x} ", pkt.meta.mark);
    }
    s.truncate(s.trim_end().len());
    s
}

/// `PROTO=UDP SPT= DPT= LEN=`, `PROTO=ICMP TYPE= CODE=`, else `PROTO=N`.
fn transport(s: &mut String, h: &[u8], proto: u8, first: bool) {
    let ihl = usize::from(h[0] & 0xf) * 4;
    let t = h.get(ihl..).filter(|_| first).unwrap_or(&[]);
    match (proto, t) {
        (17, [a, b, c, d, e, f, ..]) => {
            let w = |x: u8, y: u8| u16::from_be_bytes([x, y]);
            let _ = write!(
                s,
                "PROTO=UDP SPT={} DPT={} LEN={} ",
                w(*a, *b),
                w(*c, *d),
                w(*e, *f)
            );
        }
        (17, _) => s.push_str("PROTO=UDP "),
        (1, [ty, code, ..]) => {
            let _ = write!(s, "PROTO=ICMP TYPE={ty} CODE={code} ");
        }
        (1, _) => s.push_str("PROTO=ICMP "),
        (p, _) => {
            let _ = write!(s, "PROTO={p} ");
        }
    }
}
