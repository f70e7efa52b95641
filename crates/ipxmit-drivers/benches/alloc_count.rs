//! Zero heap allocations per datagram in steady state, on the in-memory path.
//!
//! A counting global allocator counts what the sending thread allocates while
//! it sends datagrams of 18, 1472, 8000 and 65000 bytes and 8 x 1000 B with
//! `MSG_MORE` to the null device and to the in-memory wire (drained after
//! every send), after a warm-up, and `send_batch` of 64 datagrams with a root
//! `pfifo limit 1000` (18 and 1472 B) and with an accept-all `LocalOut` hook
//! (18 B), as the bench's `-pfifo` and `-hook` cases. Prints the counts and
//! exits non-zero unless every count is zero. `IPXMIT_ALLOC_TRACE=1` prints
//! where they come from. The same probe runs in `cargo test`
//! (`tests/alloc_count.rs`). Then the AF_XDP driver over a veth pair in
//! namespaces (`support/xdp_probe.rs`), when root and AF_XDP are there.
//!
//! Run: `cargo bench -p ipxmit-drivers --bench alloc_count`.

#[path = "support/alloc_probe.rs"]
mod alloc_probe;
#[path = "support/host.rs"]
#[allow(dead_code)]
mod host;
#[path = "support/xdp_probe.rs"]
mod xdp_probe;

#[global_allocator]
static ALLOC: alloc_probe::CountingAlloc = alloc_probe::CountingAlloc;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // special either way: the probe is quick, so it always runs.
    let mut probes = alloc_probe::probe_all();
    match xdp_probe::probe_xdp() {
        Ok(p) => probes.extend(p),
        Err(why) => println!("alloc_count: AF_XDP cases SKIPPED ({why})"),
    }
    let bad = alloc_probe::report(&probes);
    if bad.is_empty() {
        println!(
            "alloc_count: zero allocations per datagram in steady state ({} cases)",
            probes.len()
        );
    } else {
        println!(
            "alloc_count: FAILED: {} of {} cases allocate in steady state",
            bad.len(),
            probes.len()
        );
        std::process::exit(1);
    }
}
