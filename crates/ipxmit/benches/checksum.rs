//! The Internet checksum: sum only (`csum_partial`) and sum while copying
//! (`csum_partial_copy_nocheck`), for a 1500-byte frame and a 64 KiB datagram,
//! with a plain `memcpy` of the same bytes as the yardstick.
//!
//! Run: `cargo bench -p ipxmit --bench checksum`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipxmit::wire::checksum::Csum;

/// Buffer sizes: one Ethernet MTU, and the largest IP datagram rounded to 64 KiB.
const SIZES: [(usize, &str); 2] = [(1500, "1500B"), (65536, "64KiB")];

/// Deterministic, non-trivial bytes (so no all-zero shortcut hides work).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

fn checksum(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum");
    for (len, name) in SIZES {
        let src = pattern(len);
        let mut dst = vec![0u8; len];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("sum/{name}"), |b| {
            b.iter(|| black_box(Csum::of(black_box(&src))))
        });
        g.bench_function(format!("copy_and_sum/{name}"), |b| {
            b.iter(|| black_box(Csum::copy_and_sum(black_box(&src), &mut dst)))
        });
        g.bench_function(format!("memcpy/{name}"), |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&src));
                black_box(&dst);
            })
        });
    }
    g.finish();
}

/// Short runs: the machine is small and shared; numbers are for trends.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = checksum
}
criterion_main!(benches);
