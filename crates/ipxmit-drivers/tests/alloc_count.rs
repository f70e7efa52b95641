//! Zero heap allocations per datagram in steady state (the `alloc_count`
//! benchmark as a test, so CI catches a regression), also with a root `pfifo
//! limit 1000`, with a root `tbf` that never throttles, with an accept-all
//! `LocalOut` hook and with ten policy rules over five numbered tables (the
//! datagrams routed from table 105; the socket's route cache hit). See
//! `benches/support/alloc_probe.rs`; `IPXMIT_ALLOC_TRACE=1` prints the sites.

#[path = "../benches/support/alloc_probe.rs"]
mod alloc_probe;
#[path = "../benches/support/host.rs"]
#[allow(dead_code)]
mod host;

#[global_allocator]
static ALLOC: alloc_probe::CountingAlloc = alloc_probe::CountingAlloc;

#[test]
fn zero_allocations_per_datagram_in_steady_state() {
    let probes = alloc_probe::probe_all();
    let bad = alloc_probe::report(&probes);
    let names: Vec<String> = bad
        .iter()
        .map(|p| {
            format!(
                "{} ({} allocations in {} datagrams)",
                p.case, p.allocations, p.datagrams
            )
        })
        .collect();
    assert!(
        names.is_empty(),
        "heap allocations in steady state: {names:#?}"
    );
}
