//! Shared helpers of the tests: the in-memory host most of them send from
//! ([`mem_host`]), and for the real-wire tests (`tap.rs`, `packet.rs`) the
//! skip rule, payloads and the namespace topologies in [`netns`], the veth
//! link fixture in [`veth`].
#![allow(dead_code)]

pub mod conserve;
pub mod netns;
pub mod veth;

use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipxmit::dev::DevConfig;
use ipxmit::neigh::NudState;
use ipxmit::wire::EthernetAddress;
use ipxmit::Stack;
use ipxmit_drivers::mem::MemWire;

/// The in-memory hosts' neighbour: 10.0.0.2 at 02:00:00:00:00:02.
pub const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// `eth0` at 02:00:00:00:00:01 with the default configuration, for
/// [`mem_host`] (set MTU, features, queue length on it first).
pub fn eth0() -> DevConfig {
    DevConfig::ethernet("eth0", EthernetAddress([2, 0, 0, 0, 0, 1]))
}

/// A host on the one queue of driver `drv`: the device `cfg`, with root
/// qdisc `qdisc` when given, 10.0.0.1/24 on it and [`PEER`] as a static
/// (permanent) neighbour.
pub fn driver_stack(
    drv: Box<dyn ipxmit::dev::Driver>,
    cfg: DevConfig,
    qdisc: Option<&str>,
) -> Arc<Stack> {
    let stack = Stack::new();
    let name = cfg.name.clone();
    stack.add_device(cfg, vec![drv]).unwrap();
    if let Some(q) = qdisc {
        let spec = q.parse::<ipxmit::sched::QdiscSpec>().unwrap();
        stack.replace_qdisc(&name, &spec).unwrap();
    }
    address(&stack, &name);
    stack
}

/// 10.0.0.1/24 on device `name`, and [`PEER`] as a static (permanent)
/// neighbour there.
fn address(stack: &Stack, name: &str) {
    stack
        .add_addr(name, "10.0.0.1/24".parse().unwrap())
        .unwrap();
    let mac = EthernetAddress([2, 0, 0, 0, 0, 2]);
    stack
        .add_neigh(name, PEER, mac, NudState::Permanent)
        .unwrap();
}

/// The host most tests send from: the device `cfg` with `queues` transmit
/// queues on an in-memory wire of `cap` frames, 10.0.0.1/24 on it, and
/// [`PEER`] as a static (permanent) neighbour.
pub fn mem_host(cfg: DevConfig, queues: usize, cap: usize) -> (Arc<Stack>, Arc<MemWire>) {
    let stack = Stack::new();
    let wire = MemWire::new(cap);
    let name = cfg.name.clone();
    stack.add_device(cfg, wire.drivers(queues)).unwrap();
    address(&stack, &name);
    (stack, wire)
}

/// A host on a clock of its own (tests on the virtual clock): `eth0` on
/// the wire `make` builds for the stack (one queue), 10.0.0.1/24, and
/// [`PEER`] as a static neighbour.
pub fn clocked_host(
    clock: Arc<ipxmit::time::ManualClock>,
    make: impl FnOnce(&Stack) -> Arc<MemWire>,
) -> (Arc<Stack>, Arc<MemWire>) {
    let stack = Stack::with_clock(clock);
    let wire = make(&stack);
    stack.add_device(eth0(), wire.drivers(1)).unwrap();
    address(&stack, "eth0");
    (stack, wire)
}

/// Runs `cmd args`, its stdout, or an error with its stderr.
pub fn run_cmd(cmd: &str, args: &[&str]) -> std::io::Result<String> {
    let out = std::process::Command::new(cmd).args(args).output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Packets each `mq` child of `dev` in namespace `ns` counted, in queue
/// order (`queues` of them), from `tc -s qdisc show`, which lists the
/// children in its hash table's order: each is found by its `parent 1:N`.
pub fn mq_child_packets(ns: &str, dev: &str, queues: usize) -> std::io::Result<Vec<u64>> {
    let out = run_cmd("tc", &["-n", ns, "-s", "qdisc", "show", "dev", dev])?;
    let mut queue = None;
    let mut v = vec![0; queues];
    for line in out.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.first().copied() {
            Some("qdisc") => {
                let at = w.iter().position(|&x| x == "parent");
                queue = at.and_then(|i| w[i + 1].strip_prefix("1:"));
            }
            Some("Sent") => {
                let n = queue.and_then(|q| q.parse::<usize>().ok());
                if let Some(slot) = n.and_then(|n| v.get_mut(n.wrapping_sub(1))) {
                    *slot = w[3].parse().unwrap_or(0);
                }
            }
            _ => {}
        }
    }
    Ok(v)
}

/// True (after printing the SKIPPED line) when the test cannot run here: it
/// needs root and working network namespaces. The line goes straight to the
/// process's stderr, past the test harness's capture, so a skip never passes
/// silently.
pub fn skip(test: &str) -> bool {
    match ipxmit_drivers::netns::unavailable() {
        None => false,
        Some(why) => {
            let line = format!("SKIPPED (needs root and network namespaces): {test} [{why}]\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            true
        }
    }
}

/// A recognisable payload: `len` bytes depending on `k`.
pub fn payload(len: usize, k: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((7 * i + 13 * k + 1) % 251) as u8)
        .collect()
}

/// One [`payload`] of each size, numbered by position.
pub fn payloads(sizes: &[usize]) -> Vec<Vec<u8>> {
    sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| payload(n, k))
        .collect()
}

/// `got` is `sent`: as many datagrams, each the same bytes, in order.
pub fn assert_same(got: &[Vec<u8>], sent: &[Vec<u8>]) {
    let lens: Vec<usize> = got.iter().map(Vec::len).collect();
    assert_eq!(
        got.len(),
        sent.len(),
        "datagrams received (lengths {lens:?})"
    );
    for (i, (g, s)) in got.iter().zip(sent).enumerate() {
        assert!(
            g == s,
            "datagram {i} ({} bytes) differs from what was sent",
            s.len()
        );
    }
}

/// Prints a line past the harness's capture (for figures worth seeing).
pub fn report(line: &str) {
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

/// Two flows on the virtual clock, as the kernel-differential tests run
/// them: each socket of `socks` sends `sends` datagrams of `len` bytes in
/// turn at the clock's time; then the stack runs at each wake-up time
/// (until `max` frames, or idle). Returns, per frame on `wire`, the flow
/// `flow_of` names for its source port and the time (µs from the first).
pub fn run_flows(
    clock: &ipxmit::time::ManualClock,
    (stack, wire): (&Stack, &MemWire),
    socks: &mut [ipxmit::UdpSocket],
    (sends, len, max): (usize, usize, usize),
    flow_of: impl Fn(u16) -> char,
) -> (String, Vec<i64>) {
    use ipxmit::time::Clock;
    let dst = std::net::SocketAddrV4::new(PEER, 9);
    for k in 0..sends {
        for s in socks.iter_mut() {
            s.send_to(&payload(len, k), dst, ipxmit::MsgFlags::NONE)
                .unwrap();
        }
    }
    let (mut order, mut times) = (String::new(), Vec::new());
    loop {
        let now = clock.now().as_nanos();
        wire.drain(|f| {
            let b = f.to_vec();
            order.push(flow_of(u16::from_be_bytes([b[34], b[35]])));
            times.push(now);
        });
        match stack.next_wakeup() {
            Some(t) if times.len() < max => {
                clock.set(t);
                stack.poll();
            }
            _ => break,
        }
    }
    let s0 = times.first().copied().unwrap_or(0);
    let us = times.iter().map(|t| ((t - s0) / 1000) as i64).collect();
    (order, us)
}

/// How much earlier than ours a kernel departure may be (µs): timer
/// granularity and stamping (seen under 30 µs). More would be our
/// shaping holding a packet too long.
pub const KERNEL_EARLY_US: i64 = 200;
/// How much later than ours a kernel departure may be (µs): the kernel's
/// qdisc watchdog (an hrtimer) fires late, by tens of microseconds on a
/// quiet machine and by milliseconds on a loaded one (3.8 ms seen with a
/// build beside the tests on 2 cores).
pub const KERNEL_LATE_US: i64 = 10_000;

/// How many times [`kernel_in_bounds`] runs the kernel side at most.
pub const KERNEL_TRIES: usize = 3;

/// True when every kernel departure is within the bounds
/// [`assert_departures`] holds it to.
pub fn in_bounds(ours: &[i64], kernel: &[i64]) -> bool {
    ours.len() == kernel.len()
        && ours
            .iter()
            .zip(kernel)
            .all(|(o, k)| (-KERNEL_EARLY_US..=KERNEL_LATE_US).contains(&(k - o)))
}

/// Runs the kernel side until its departure times (`times` of what `run`
/// returns) are within [`in_bounds`] of `ours`, [`KERNEL_TRIES`] times
/// at most, and returns the last run, which the caller then asserts on.
/// The kernel's times are stamped by its receive path, which on a loaded
/// machine can wait a whole scheduler slice (11.9 ms late, every burst of
/// one run, with four builds beside the tests on 2 cores): a run that late
/// says nothing of either side's shaping, so the kernel is measured again;
/// ipxmit's times (the virtual clock) are never re-run, and a departure
/// out of bounds in every try still fails.
pub fn kernel_in_bounds<T>(
    ours: &[i64],
    times: impl Fn(&T) -> &[i64],
    mut run: impl FnMut() -> T,
) -> T {
    let mut k = run();
    for _ in 1..KERNEL_TRIES {
        if in_bounds(ours, times(&k)) {
            break;
        }
        report(&format!(
            "the kernel's departures {:?} us are out of bounds of ours {ours:?}: measured again",
            times(&k)
        ));
        k = run();
    }
    k
}

/// The largest difference between two sides' departure times (µs).
pub fn worst_gap(ours: &[i64], kernel: &[i64]) -> i64 {
    ours.iter()
        .zip(kernel)
        .map(|(a, b)| (a - b).abs())
        .max()
        .unwrap_or(0)
}

/// Asserts each kernel departure (µs from the first, which leaves at
/// once on both sides) is within [`KERNEL_EARLY_US`] before ours and
/// [`KERNEL_LATE_US`] after: the kernel's timers are late, never early.
pub fn assert_departures(ours: &[i64], kernel: &[i64]) {
    assert_eq!(ours.len(), kernel.len(), "datagrams that left");
    for (i, (o, k)) in ours.iter().zip(kernel).enumerate() {
        let d = k - o;
        assert!(
            (-KERNEL_EARLY_US..=KERNEL_LATE_US).contains(&d),
            "departure {i}: the kernel's at {k} us, ours at {o} us"
        );
    }
}
