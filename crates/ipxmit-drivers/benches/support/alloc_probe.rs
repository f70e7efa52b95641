//! A counting global allocator and the steady-state allocation probe.
//!
//! Every heap allocation (`alloc`, `alloc_zeroed`, `realloc`) made by the
//! current thread is counted in a thread-local counter, so tests running in
//! parallel threads do not see each other's allocations. With
//! `IPXMIT_ALLOC_TRACE=1` the first allocations made while a case is measured
//! are recorded with a backtrace, to find where they come from.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};

use ipxmit::Features;

use super::host::{Host, Sink, Tweak, Workload, WORKLOADS};

/// The counting allocator; install with `#[global_allocator]`.
pub struct CountingAlloc;

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
    static TRACING: Cell<usize> = const { Cell::new(0) };
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
    static SITES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn note() {
    let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    let left = TRACING.try_with(Cell::get).unwrap_or(0);
    if left == 0 || IN_TRACE.try_with(Cell::get).unwrap_or(true) {
        return;
    }
    // Capturing allocates: those allocations are neither counted nor traced.
    let _ = IN_TRACE.try_with(|t| t.set(true));
    let saved = COUNT.try_with(Cell::get).unwrap_or(0);
    let bt = std::backtrace::Backtrace::force_capture().to_string();
    let _ = SITES.try_with(|s| s.borrow_mut().push(bt));
    let _ = TRACING.try_with(|t| t.set(left - 1));
    let _ = COUNT.try_with(|c| c.set(saved));
    let _ = IN_TRACE.try_with(|t| t.set(false));
}

// SAFETY: forwards every call to the system allocator unchanged; the
// bookkeeping touches only const-initialised thread-locals.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations this thread made so far.
pub fn allocations() -> u64 {
    COUNT.with(Cell::get)
}

/// Parks the calling thread once, for a microsecond. A thread's first park
/// sets up parking_lot's per-thread data (registering its destructor, and
/// growing the global table of waiters as threads are added): allocations
/// made once in a thread's life, not per datagram. A probe whose sender
/// may first be parked in its measured part (a lock contended by a
/// runner thread, a blocking send under load) calls this in its warm-up,
/// or a loaded machine would have it count them now and then.
#[allow(dead_code)]
pub fn warm_parking() {
    let m = parking_lot::Mutex::new(());
    let c = parking_lot::Condvar::new();
    let _ = c.wait_for(&mut m.lock(), std::time::Duration::from_micros(1));
}

/// Grows `pool` to a steady-state depth in every size class: takes that
/// many storages of each class (1,024 of the two small ones, 256 of 16 KiB,
/// 128 of 64 KiB: above what a runner's caches can strand, within what the
/// pool keeps), each filled with [`ipxmit::buf::MAX_FRAGS`] page fragments
/// as a storage that carried a GSO datagram was (its fragment list keeps
/// that capacity), and frees them on this thread (the sender's caches keep
/// what they may, the pool's shared queue the rest).
///
/// Why a probe over a real link needs it: when the link backs up, the
/// runner thread transmits what waited in the qdisc and frees those
/// buffers into its own thread's caches (up to their bound: 320 storages of
/// a small class), where the sender cannot take them; the sender then
/// finds the shared queue empty and the pool grows, once, until the
/// runner's caches are full. On a loaded machine that can first happen in
/// a probe's measured part. Growing the pool first stands for the warm-up
/// that would have reached that depth: the count measured is then the
/// per-datagram steady state, not the pool's one-time growth.
#[allow(dead_code)]
pub fn prefill_pool(pool: &ipxmit::BufPool) {
    for (size, n) in [(512, 1024), (2048, 1024), (16384, 256), (66048, 128)] {
        let held: Vec<ipxmit::PacketBuf> = (0..n)
            .map(|_| {
                let mut b = pool.alloc(size);
                for _ in 0..ipxmit::buf::MAX_FRAGS {
                    let _ = b.add_frag(bytes::Bytes::from_static(b"x"));
                }
                b
            })
            .collect();
        drop(held);
    }
}

/// Runs `f` and returns the backtraces of the first `max` allocations it
/// made on this thread (for a test's failure message).
#[allow(dead_code)]
pub fn sites_of(max: usize, f: impl FnOnce()) -> Vec<String> {
    SITES.with(|s| s.borrow_mut().clear());
    TRACING.with(|t| t.set(max));
    f();
    TRACING.with(|t| t.set(0));
    SITES.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

/// One measured case.
#[derive(Debug)]
pub struct Probe {
    /// `sink/features/workload`, then `+pfifo`, `+tbf`, `+hook`, `+rules`
    /// ... for a [`Tweak`].
    pub case: String,
    /// Datagrams measured (after warm-up).
    pub datagrams: u64,
    /// Heap allocations during them.
    pub allocations: u64,
    /// Backtraces of the first allocations (with `IPXMIT_ALLOC_TRACE=1`).
    pub sites: Vec<String>,
}

/// Datagrams sent before measuring: fills the buffer pool, sizes the queues.
pub const WARMUP: u64 = 2_000;
/// Datagrams measured.
pub const MEASURED: u64 = 5_000;
/// Allocations recorded per case when tracing.
const TRACE_MAX: usize = 512;

/// The device feature sets probed: none (the `ipxmit send` default), the
/// kernel sink's offloads, and those with UDP fragmentation offload (a
/// datagram over the MTU leaves whole, as over a UFO TAP).
pub fn feature_sets() -> [(&'static str, Features); 3] {
    let off = Features::SG | Features::HW_CSUM | Features::GSO_UDP_L4;
    let ufo = ("sg+csum+gso+ufo", off | Features::UFO);
    [("none", Features::NONE), ("sg+csum+gso", off), ufo]
}

/// The configurations of the sink table's `18B-pfifo`, `1472B-pfifo`,
/// `18B-hook`, `18B-tbf` and `1472B-tbf` cases: a root `pfifo limit 1000`
/// with 18 B and 1472 B datagrams, an accept-all `LocalOut` hook with 18 B,
/// a root `tbf` that never throttles (every packet enqueued and dequeued
/// through it) with 18 B and 1472 B, a root `fq_codel` with 18 B and a
/// root `codel` with 1472 B, an htb tree of one leaf with 18 B and 1472 B
/// and one of a leaf that borrows from its parent with 18 B,
/// a root `netem` (no delay: its time-ordered queue on every packet),
/// all with `send_batch` of 64; then ten policy rules over five numbered
/// tables (`18B-rules`) with `send_batch` of 64 and with one `send_to`
/// per datagram.
pub const TWEAKED: [(&str, Tweak); 13] = [
    ("18B_batch64", Tweak::RootQdisc("pfifo limit 1000")),
    ("1472B_batch64", Tweak::RootQdisc("pfifo limit 1000")),
    ("18B_batch64", Tweak::AcceptAllHook),
    (
        "18B_batch64",
        Tweak::RootQdisc("tbf rate 1tbit burst 1mb limit 10mb"),
    ),
    (
        "1472B_batch64",
        Tweak::RootQdisc("tbf rate 1tbit burst 1mb limit 10mb"),
    ),
    ("18B_batch64", Tweak::RootQdisc("fq_codel")),
    ("1472B_batch64", Tweak::RootQdisc("codel")),
    ("18B_batch64", Tweak::HtbLeaf(HTB_LEAF)),
    ("18B_batch64", Tweak::RootQdisc("netem limit 10000")),
    ("1472B_batch64", Tweak::HtbLeaf(HTB_LEAF)),
    ("18B_batch64", Tweak::HtbBorrow(HTB_LEAF, HTB_BORROWER)),
    ("18B_batch64", Tweak::PolicyRules),
    ("18B", Tweak::PolicyRules),
];

/// The one leaf of the htb tweaks: a terabit, a megabyte bucket (never
/// throttles).
const HTB_LEAF: &str = "rate 1tbit burst 1mb cburst 1mb quantum 60000";
/// The leaf under [`HTB_LEAF`] in the borrowing tweak: 8 bit/s and a
/// bucket of a few bytes, so every packet borrows from its parent.
const HTB_BORROWER: &str = "rate 8bit ceil 1tbit burst 10 cburst 1mb quantum 60000";

/// The workload named `name`.
fn workload(name: &str) -> Workload {
    *WORKLOADS
        .iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("no workload {name}"))
}

/// Sends `WARMUP` then `MEASURED` datagrams of `work` (on a host changed by
/// `tweak`, if given) and counts the allocations made during the measured
/// ones.
pub fn probe(
    sink: Sink,
    (fname, feats): (&str, Features),
    work: Workload,
    tweak: Option<Tweak>,
) -> Probe {
    let mut case = format!("{}/{}/{}", sink.name(), fname, work.name);
    let mut host = Host::new(sink, feats, work).expect("host");
    if let Some(t) = tweak {
        host.tweak(t).expect("tweaking the host");
        case = format!("{case}+{}", t.name());
    }
    // Sends of a batch carry many datagrams: as many datagrams, about.
    let per = work.batch as u64;
    let (warmup, measured) = ((WARMUP / per).max(40), (MEASURED / per).max(100));
    for _ in 0..warmup {
        host.send_one().expect("warm-up send");
    }
    warm_parking();
    let trace = std::env::var_os("IPXMIT_ALLOC_TRACE").is_some_and(|v| v != "0");
    SITES.with(|s| s.borrow_mut().clear());
    TRACING.with(|t| t.set(if trace { TRACE_MAX } else { 0 }));
    let before = allocations();
    for _ in 0..measured {
        host.send_one().expect("measured send");
    }
    let allocs = allocations() - before;
    TRACING.with(|t| t.set(0));
    let sites = SITES.with(|s| std::mem::take(&mut *s.borrow_mut()));
    Probe {
        case,
        datagrams: measured * per,
        allocations: allocs,
        sites,
    }
}

/// The sizes the issue names (18, 1472, 8000 B) plus 65000 B, 8 x 1000 B
/// with `MSG_MORE` and UDP GSO of 44 x 1472 B (segmented in software on the
/// device without offloads), then the [`TWEAKED`] configurations, on both
/// sinks and both feature sets.
pub fn probe_all() -> Vec<Probe> {
    let mut out = Vec::new();
    for sink in [Sink::Null, Sink::Mem] {
        for fs in feature_sets() {
            for w in WORKLOADS {
                out.push(probe(sink, fs, w, None));
            }
            for (w, t) in TWEAKED {
                out.push(probe(sink, fs, workload(w), Some(t)));
            }
        }
    }
    out
}

/// Prints the results; returns the cases that allocated.
pub fn report(probes: &[Probe]) -> Vec<&Probe> {
    println!(
        "{:<42} {:>10} {:>12} {:>14}",
        "case", "datagrams", "allocations", "per datagram"
    );
    for p in probes {
        let per = p.allocations as f64 / p.datagrams as f64;
        println!(
            "{:<42} {:>10} {:>12} {:>14.3}",
            p.case, p.datagrams, p.allocations, per
        );
    }
    let bad: Vec<&Probe> = probes.iter().filter(|p| p.allocations > 0).collect();
    for p in &bad {
        for (n, site) in distinct_sites(&p.sites) {
            println!(
                "--- {}: {n} of the first {} recorded allocations at:\n{site}",
                p.case,
                p.sites.len()
            );
        }
    }
    if !bad.is_empty() && bad.iter().all(|p| p.sites.is_empty()) {
        println!("(set IPXMIT_ALLOC_TRACE=1 to print where the allocations come from)");
    }
    bad
}

/// Groups recorded backtraces by their trimmed text, most frequent first.
fn distinct_sites(sites: &[String]) -> Vec<(usize, String)> {
    let mut groups: Vec<(usize, String)> = Vec::new();
    for s in sites.iter().map(|s| trim_backtrace(s)) {
        match groups.iter_mut().find(|(_, g)| *g == s) {
            Some((n, _)) => *n += 1,
            None => groups.push((1, s)),
        }
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.0));
    groups
}

/// Keeps the frames of the backtrace between the allocator and the harness.
fn trim_backtrace(bt: &str) -> String {
    let lines: Vec<&str> = bt.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains("alloc_probe::note"))
        .map_or(0, |i| i + 1);
    let end = lines
        .iter()
        .position(|l| l.contains("host::Host::send_one"))
        .map_or(lines.len(), |i| i + 2);
    lines[start..end.min(lines.len())]
        .iter()
        .filter(|l| !l.trim_start().starts_with("at ") && !l.contains("alloc::alloc::"))
        .filter(|l| !l.contains("__rust") && !l.contains("raw_vec::"))
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}
