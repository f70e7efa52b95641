//! The whole transmit path: `UdpSocket::send_to` -> cork -> IP output ->
//! fragmentation -> neighbour -> qdisc -> driver, into the null device (counts
//! and frees) and into the in-memory wire (drained after every send), for the
//! workloads of the side-by-side benchmark. The device has the offloads of the
//! kernel's `ifb`/`dummy` sink (SG, checksum, UDP GSO) unless the name says
//! `nooffload`.
//!
//! Run: `cargo bench -p ipxmit-drivers --bench path`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipxmit::Features;

#[path = "support/host.rs"]
#[allow(dead_code)]
mod host;

use host::{Host, Sink, WORKLOADS};

/// The sink's offloads (what `ifb` and `dummy` advertise).
const OFFLOADS: Features = Features::SG
    .union(Features::HW_CSUM)
    .union(Features::GSO_UDP_L4);

fn bench_sink(c: &mut Criterion, sink: Sink) {
    let mut g = c.benchmark_group(format!("path_{}", sink.name()));
    let cases = WORKLOADS
        .iter()
        .map(|w| (w.name.to_string(), OFFLOADS, *w))
        .chain([("1472B_nooffload".to_string(), Features::NONE, WORKLOADS[1])]);
    for (name, feats, work) in cases {
        let mut host = Host::new(sink, feats, work).expect("host");
        g.throughput(Throughput::Elements(work.batch as u64));
        g.bench_function(name, |b| b.iter(|| host.send_one().expect("send")));
        black_box(host.frames());
    }
    g.finish();
}

fn path_null(c: &mut Criterion) {
    bench_sink(c, Sink::Null);
}

fn path_mem(c: &mut Criterion) {
    bench_sink(c, Sink::Mem);
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
    targets = path_null, path_mem
}
criterion_main!(benches);
