//! Tables at Internet scale: `Stack::poll` and `next_wakeup` with a million
//! neighbours whose timers are armed but none due (the timer queue answers
//! without a scan), and route lookups in a table of a million prefixes
//! (lengths spread as in a full IPv4 table: mostly /24, then /22, /23, /20,
//! /21, /19, /16). The time each table takes to load is printed as it is
//! built (`load:` lines).
//!
//! Run: `cargo bench -p ipxmit --bench tables`. `TABLE_SIZE=N` changes the
//! million (a quicker look).

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant as WallInstant;

use criterion::{criterion_group, criterion_main, Criterion};
use ipnet::Ipv4Net;
use ipxmit::dev::{DevConfig, Driver, TxStatus};
use ipxmit::neigh::NudState;
use ipxmit::route::Fib;
use ipxmit::stack::RouteSpec;
use ipxmit::wire::EthernetAddress;
use ipxmit::{PacketBuf, Stack};

/// A driver that frees what it is given.
struct Sink;

impl Driver for Sink {
    fn start_xmit(&mut self, pkt: PacketBuf, _more: bool) -> TxStatus {
        drop(pkt);
        TxStatus::Ok
    }
}

/// Entries per table (`TABLE_SIZE`, default one million).
fn table_size() -> u32 {
    std::env::var("TABLE_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

/// A stack with one Ethernet device on a [`Sink`], 10.0.0.1/8.
fn stack() -> Arc<Stack> {
    let stack = Stack::new();
    let cfg = DevConfig::ethernet("eth0", EthernetAddress([2, 0, 0, 0, 0, 1]));
    let sink: Box<dyn Driver> = Box::new(Sink);
    stack.add_device(cfg, vec![sink]).expect("device");
    stack
        .add_addr("eth0", "10.0.0.1/8".parse().expect("net"))
        .expect("addr");
    stack
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// `n` REACHABLE neighbours (each with its timer armed, tens of seconds
/// ahead) in 10/8.
fn neighbours(n: u32) -> Arc<Stack> {
    let stack = stack();
    let t = WallInstant::now();
    for i in 0..n {
        let addr = Ipv4Addr::from(0x0a00_0002 + i);
        let b = (i + 2).to_be_bytes();
        let mac = EthernetAddress([2, 1, b[0], b[1], b[2], b[3]]);
        stack
            .add_neigh("eth0", addr, mac, NudState::Reachable)
            .expect("neigh");
    }
    eprintln!("load: {n} neighbours in {:.2?}", t.elapsed());
    stack
}

fn neigh_poll(c: &mut Criterion) {
    let n = table_size();
    let stack = neighbours(n);
    assert!(stack.next_wakeup().is_some_and(|t| t > stack.now()));
    let mut g = c.benchmark_group(format!("neigh-{n}"));
    g.bench_function("poll, no timer due", |b| b.iter(|| black_box(stack.poll())));
    g.bench_function("next_wakeup", |b| b.iter(|| black_box(stack.next_wakeup())));
    g.finish();
}

/// A prefix length drawn as in a full IPv4 table (RIPE/APNIC histograms:
/// about 60% /24, 10% /22, 9% /23, 5% /20, 5% /21, 4% /19, and the rest
/// spread over /8../18).
fn prefix_len(r: u64) -> u8 {
    match r % 100 {
        0..=59 => 24,
        60..=69 => 22,
        70..=78 => 23,
        79..=83 => 20,
        84..=88 => 21,
        89..=92 => 19,
        93..=94 => 16,
        95 => 18,
        96 => 17,
        97 => 15,
        98 => 14,
        _ => 8 + (r / 100 % 6) as u8,
    }
}

/// This process's resident set size (`/proc/self/statm`), 0 when unknown.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// `n` distinct unicast routes on `eth0`, outside 10/8, and the time taken.
fn routes(n: u32) -> Arc<Stack> {
    let stack = stack();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let rss = rss_bytes();
    let t = WallInstant::now();
    let mut added = 0;
    while added < n {
        let r = rng.next();
        let len = prefix_len(r);
        let addr = Ipv4Addr::from(((r >> 32) as u32 & 0xdfff_ffff) | 0x0100_0000);
        let Ok(net) = Ipv4Net::new(addr, len) else {
            continue;
        };
        let net = net.trunc();
        if net.contains(&Ipv4Addr::new(10, 0, 0, 0)) || net.addr().octets()[0] == 127 {
            continue;
        }
        if stack.add_route(RouteSpec::new(net, "eth0")).is_ok() {
            added += 1;
        }
    }
    let took = t.elapsed();
    let mib = rss_bytes().saturating_sub(rss) as f64 / (1 << 20) as f64;
    eprintln!("load: {n} routes in {took:.2?}, resident memory +{mib:.1} MiB");
    stack
}

fn route_lookup(c: &mut Criterion) {
    let n = table_size();
    let stack = routes(n);
    let rib = stack.rib();
    let main = rib.table(254).expect("main table");
    // What a route add costs while a reader holds the snapshot: the
    // table is copied once (`Arc::make_mut`).
    let t = WallInstant::now();
    let copy = black_box(Fib::clone(main));
    eprintln!("copy: table of {n} routes cloned in {:.2?}", t.elapsed());
    drop(copy);
    let mut rng = Rng(42);
    let addrs: Vec<Ipv4Addr> = (0..4096)
        .map(|_| Ipv4Addr::from((rng.next() >> 32) as u32 | 0x0100_0000))
        .collect();
    let mut g = c.benchmark_group(format!("routes-{n}"));
    let mut i = 0;
    g.bench_function("fib lookup (table main)", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(main.lookup(addrs[i]).is_some())
        })
    });
    g.bench_function("route_output (rules, fib, dst)", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(stack.route_output(addrs[i]).is_ok())
        })
    });
    g.finish();
}

criterion_group!(benches, neigh_poll, route_lookup);
criterion_main!(benches);
