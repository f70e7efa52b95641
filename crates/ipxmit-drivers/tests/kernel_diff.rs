//! Kernel-differential suite: ipxmit's `ip_append_data`/`ip_make_skb`,
//! fragmentation, UDP and raw sockets against the Linux kernel this machine
//! runs, frame by frame.
//!
//! The kernel side runs in a pair of network namespaces joined by a veth
//! (offloads off on the sender, a static neighbour, IPv6 off, no IPv4 address
//! on the capturing end so nothing answers); real sockets in `A` send each
//! scenario and an `AF_PACKET` socket in `B` captures what arrives, up to an
//! end-of-scenario marker datagram. The ipxmit side builds a stack with the
//! same geometry (MAC, addresses, MTU, neighbour, `Features::NONE`) on an
//! in-memory wire and runs the same sends through `UdpSocket`/`RawSocket`.
//! Return values, `setsockopt` results, error-queue entries and every frame
//! (all header fields, options, UDP header, payload; the IP ID by its rules)
//! must match. The zero-ID rule (DF datagrams of a socket without a peer
//! whose PMTU mode does not ignore DF) is compared only where the kernel
//! applies it; elsewhere a zero ID is a counter's one-in-65536 chance. A
//! mismatching scenario is also run once more before it counts.
//!
//! `KDIFF_FILTER=substring` runs only the scenarios whose name contains it;
//! `KDIFF_VERBOSE=1` prints every scenario's outcome.
//!
//! Needs root and network namespaces; elsewhere it prints
//! `SKIPPED (needs root and network namespaces): kernel_diff` and passes.

#[path = "kernel_diff/compare.rs"]
mod compare;
#[path = "kernel_diff/kernel.rs"]
mod kernel;
#[path = "kernel_diff/model.rs"]
mod model;
#[path = "kernel_diff/netns.rs"]
mod netns;
#[path = "kernel_diff/scenario.rs"]
mod scenario;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::SocketAddrV4;
use std::time::Instant;

use kernel::{Capture, KSock};
use netns::{in_netns, NetnsPair};
use scenario::{hdrincl_bytes, payload, Kind, Outcome, Scenario, Step};

/// Mismatches accepted, each with why the kernel cannot be matched there:
/// (substring of the scenario name, reason). Keep this list tiny; it is empty
/// now that buffers are charged the kernel's `truesize` (buf.rs,
/// `kernel_truesize`).
const EXCEPTIONS: &[(&str, &str)] = &[];

const DPORT: u16 = 7777;
const IP_TOS: i32 = 1;
const IP_TTL: i32 = 2;
const IP_HDRINCL: i32 = 3;
const IP_OPTIONS: i32 = 4;
const IP_MTU_DISCOVER: i32 = 10;
const IP_RECVERR: i32 = 11;
const SO_NO_CHECK: i32 = 11;
const SO_SNDBUFFORCE: i32 = 32;
const SOL_UDP: i32 = 17;
const UDP_CORK: i32 = 1;
const UDP_SEGMENT: i32 = 103;

/// Writes straight to stdout, past the test harness's capture, so the summary
/// shows in a plain `cargo test`.
fn say(s: &str) {
    let mut o = io::stdout().lock();
    let _ = writeln!(o, "{s}");
    let _ = o.flush();
}

struct Env {
    pair: NetnsPair,
    cap: Capture,
}

impl Env {
    fn new() -> io::Result<Env> {
        let pair = NetnsPair::new()?;
        let marker = in_netns(&pair.ns_a, || KSock::new(libc::SOCK_DGRAM, 0))??;
        let cap = in_netns(&pair.ns_b, || {
            Capture::open(netns::DEV_B, marker, pair.addr_a, pair.addr_b)
        })??;
        Ok(Env { pair, cap })
    }
}

fn run_kernel(env: &mut Env, idx: usize, s: &Scenario, sport: u16) -> io::Result<Outcome> {
    env.pair.set_mtu(s.mtu)?;
    let (src, dst) = (env.pair.addr_a, env.pair.addr_b);
    let (ty, proto) = match s.kind {
        Kind::Udp => (libc::SOCK_DGRAM, 0),
        Kind::Raw(p) | Kind::Hdrincl(p) => (libc::SOCK_RAW, i32::from(p)),
    };
    let sock = in_netns(&env.pair.ns_a, || KSock::new(ty, proto))??;
    let mut out = Outcome::default();
    let sol_ip = libc::SOL_IP;
    match s.kind {
        Kind::Udp => sock
            .bind(SocketAddrV4::new(src, sport))
            .map_err(io::Error::from_raw_os_error)?,
        Kind::Hdrincl(p) if p != 255 => out
            .setup
            .push(("IP_HDRINCL", sock.set_int(sol_ip, IP_HDRINCL, 1))),
        _ => {}
    }
    let o = &s.opts;
    if let Some(b) = o.sndbuf {
        out.setup.push((
            "SO_SNDBUF",
            sock.set_int(libc::SOL_SOCKET, libc::SO_SNDBUF, b),
        ));
    } else if !o.default_sndbuf {
        sock.set_int(
            libc::SOL_SOCKET,
            SO_SNDBUFFORCE,
            (model::BIG_SNDBUF / 2) as i32,
        )
        .map_err(io::Error::from_raw_os_error)?;
    }
    if o.recverr {
        out.setup
            .push(("IP_RECVERR", sock.set_int(sol_ip, IP_RECVERR, 1)));
    }
    if let Some(m) = o.pmtu {
        out.setup.push((
            "IP_MTU_DISCOVER",
            sock.set_int(sol_ip, IP_MTU_DISCOVER, i32::from(m)),
        ));
    }
    if let Some(t) = o.tos {
        out.setup
            .push(("IP_TOS", sock.set_int(sol_ip, IP_TOS, i32::from(t))));
    }
    if let Some(t) = o.ttl {
        out.setup
            .push(("IP_TTL", sock.set_int(sol_ip, IP_TTL, i32::from(t))));
    }
    if let Some(raw) = &o.ip_options {
        let raw = scenario::fix_options(raw, dst);
        out.setup
            .push(("IP_OPTIONS", sock.set_bytes(sol_ip, IP_OPTIONS, &raw)));
    }
    if o.no_check {
        out.setup.push((
            "SO_NO_CHECK",
            sock.set_int(libc::SOL_SOCKET, SO_NO_CHECK, 1),
        ));
    }
    if let Some(g) = o.gso {
        out.setup.push((
            "UDP_SEGMENT",
            sock.set_int(SOL_UDP, UDP_SEGMENT, i32::from(g)),
        ));
    }
    let to = SocketAddrV4::new(
        scenario::destination(s, dst),
        if s.kind == Kind::Udp { DPORT } else { 0 },
    );
    if o.connect {
        out.setup.push(("connect", sock.connect(to)));
    }
    let dest = if o.connect { None } else { Some(to) };
    for (k, step) in s.steps.iter().enumerate() {
        let r = match step {
            Step::Send { len, flags } => sock.send(&payload(idx, k, *len), dest, *flags),
            Step::SendTo { len, flags } => sock.send(&payload(idx, k, *len), Some(to), *flags),
            Step::Hdr { flags, .. } => {
                sock.send(&hdrincl_bytes(idx, k, step, src, dst), dest, *flags)
            }
            Step::Mmsg { lens, flags } => {
                let bufs: Vec<Vec<u8>> = lens
                    .iter()
                    .enumerate()
                    .map(|(j, &n)| scenario::mmsg_payload(idx, k, j, n))
                    .collect();
                sock.sendmmsg(&bufs, dest, *flags)
            }
            Step::Pieces { msgs, flags } => {
                // The kernel's sendmmsg has one flags value: one by one.
                let mut sent = 0;
                let mut err = None;
                for (j, &(n, more)) in msgs.iter().enumerate() {
                    let f = *flags | if more { libc::MSG_MORE as u32 } else { 0 };
                    match sock.send(&scenario::mmsg_payload(idx, k, j, n), dest, f) {
                        Ok(_) => sent += 1,
                        Err(e) => {
                            err = Some(e);
                            break;
                        }
                    }
                }
                match err {
                    Some(e) if sent == 0 => Err(e),
                    _ => Ok(sent),
                }
            }
            Step::Cork(on) => sock.set_int(SOL_UDP, UDP_CORK, i32::from(*on)).map(|()| 0),
            Step::Gso(g) => sock
                .set_int(SOL_UDP, UDP_SEGMENT, i32::from(*g))
                .map(|()| 0),
        };
        out.returns.push(r);
    }
    while let Some(e) = sock.recv_err() {
        out.errq.push(e);
    }
    out.frames = env.cap.collect()?;
    drop(sock);
    Ok(out)
}

/// Pins the calling thread to the CPU it runs on (so the veth's per-CPU
/// backlog keeps the capture in send order) and restores the mask on drop.
struct Pin(libc::cpu_set_t);

impl Pin {
    fn here() -> Pin {
        // SAFETY: plain data and the calling thread's own affinity.
        unsafe {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old);
            let cpu = libc::sched_getcpu().max(0) as usize;
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one);
            Pin(old)
        }
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        // SAFETY: restoring the mask read before.
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0);
        }
    }
}

fn exception(name: &str) -> Option<&'static str> {
    EXCEPTIONS
        .iter()
        .find(|(pat, _)| name.contains(pat))
        .map(|(_, why)| *why)
}

#[test]
fn kernel_diff() {
    if let Some(why) = netns::unavailable() {
        say(&format!(
            "SKIPPED (needs root and network namespaces): kernel_diff ({why})"
        ));
        return;
    }
    let mut env = match Env::new() {
        Ok(e) => e,
        Err(e) => {
            say(&format!(
                "SKIPPED (needs root and network namespaces): kernel_diff ({e})"
            ));
            return;
        }
    };
    let filter = std::env::var("KDIFF_FILTER").ok();
    let verbose = std::env::var_os("KDIFF_VERBOSE").is_some();
    let mut all = scenario::all();
    // Group by MTU so the kernel device's MTU changes rarely; keep the order
    // otherwise.
    all.sort_by_key(|s| s.mtu);
    let started = Instant::now();
    let _pin = Pin::here();
    let (src, dst) = (env.pair.addr_a, env.pair.addr_b);
    let mut groups: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut excused = Vec::new();
    let (mut total, mut matched, mut frames) = (0, 0, 0);
    for (idx, s) in all.iter().enumerate() {
        if let Some(f) = &filter {
            if !s.name.contains(f.as_str()) {
                continue;
            }
        }
        total += 1;
        let sport = 20000 + (idx % 30000) as u16;
        let mut last = Vec::new();
        for _attempt in 0..2 {
            let k = run_kernel(&mut env, idx, s, sport)
                .unwrap_or_else(|e| panic!("kernel side of {:?}: {e}", s.name));
            let x = model::run(idx, s, src, dst, sport, DPORT);
            if verbose {
                say(&format!(
                    "{}\n  kernel: setup={:?} returns={:?} errq={:?} frames={}\n  ipxmit: setup={:?} returns={:?} errq={:?} frames={}",
                    s.name, k.setup, k.returns, k.errq, k.frames.len(), x.setup, x.returns, x.errq, x.frames.len()
                ));
            }
            if verbose && std::env::var("KDIFF_VERBOSE").as_deref() == Ok("2") {
                for (side, o) in [("kernel", &k), ("ipxmit", &x)] {
                    for f in &o.frames {
                        let hl = f.get(14).map_or(0, |b| ((b & 0xf) as usize) * 4);
                        let n = (14 + hl + 8).min(f.len());
                        say(&format!("  {side} frame {}: {:02x?}", f.len(), &f[14..n]));
                    }
                }
            }
            last = compare::diff(s, &k, &x);
            if last.is_empty() {
                frames += k.frames.len();
                break;
            }
        }
        let g = groups.entry(s.group).or_default();
        g.1 += 1;
        if last.is_empty() {
            matched += 1;
            g.0 += 1;
        } else if let Some(why) = exception(&s.name) {
            excused.push((s.name.clone(), why, last));
        } else {
            failures.push((s.name.clone(), last));
        }
    }
    let elapsed = started.elapsed();
    for (g, (m, n)) in &groups {
        say(&format!("kernel-diff: {g}: {m} of {n} matched"));
    }
    for (name, why, d) in &excused {
        say(&format!(
            "kernel-diff: documented exception {name:?} ({why}): {}",
            d.join("; ")
        ));
    }
    for (name, d) in failures.iter().take(40) {
        say(&format!("MISMATCH {name}"));
        for line in d {
            say(&format!("    {line}"));
        }
    }
    if failures.len() > 40 {
        say(&format!(
            "... and {} more mismatching scenarios",
            failures.len() - 40
        ));
    }
    say(&format!(
        "kernel-diff: {matched} of {total} scenarios matched ({frames} frames identical, {:.1} s)",
        elapsed.as_secs_f64()
    ));
    assert!(
        failures.is_empty(),
        "{} scenarios differ from the kernel (see MISMATCH lines above)",
        failures.len()
    );
}
