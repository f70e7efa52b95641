//! nftables evaluation per packet against the size of a set: an output
//! chain `ip daddr @s accept` (a hashed set of single addresses) and
//! `udp dport @p accept` (an interval set), with 10, 1,000 and 100,000
//! elements, a packet that is in the set and one that is not. The time
//! per packet should not grow with the set (hash: O(1); intervals: a
//! binary search, O(log n)).
//!
//! `cargo bench -p ipxmit --bench nft_sets`.

use std::net::Ipv4Addr;
use std::sync::{Arc, Weak};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ipxmit::dev::{DevConfig, Driver, TxStatus};
use ipxmit::netfilter::{Hook, HookPoint};
use ipxmit::nft::{
    BaseChain, ChainHook, ChainType, DataType, Elem, Family, Key, Match, NftHook, Op, Policy,
    Position, Program, Rhs, RuleVerdict, Ruleset, Stmt,
};
use ipxmit::wire::EthernetAddress;
use ipxmit::{NetDevice, PacketBuf, Stack};
use std::hint::black_box;

struct Sink;

impl Driver for Sink {
    fn start_xmit(&mut self, _pkt: PacketBuf, _more: bool) -> TxStatus {
        TxStatus::Ok
    }
}

/// A UDP datagram 10.0.0.1:1000 -> `daddr`:`dport`, 18 bytes of payload.
fn udp(daddr: Ipv4Addr, dport: u16) -> PacketBuf {
    let mut b = vec![0u8; 46];
    b[0] = 0x45;
    b[2..4].copy_from_slice(&46u16.to_be_bytes());
    b[8] = 64;
    b[9] = 17;
    b[12..16].copy_from_slice(&[10, 0, 0, 1]);
    b[16..20].copy_from_slice(&daddr.octets());
    b[20..22].copy_from_slice(&1000u16.to_be_bytes());
    b[22..24].copy_from_slice(&dport.to_be_bytes());
    b[24..26].copy_from_slice(&26u16.to_be_bytes());
    let mut p = PacketBuf::from_slice(64, &b);
    p.reset_network_header();
    p
}

/// The hook of a ruleset whose one rule matches `key` against a named
/// set of `elems` (`interval`: with `flags interval`).
fn hook(key: Key, ty: DataType, elems: &[Elem], interval: bool) -> NftHook {
    let f = Family::Ip;
    let mut rs = Ruleset::default();
    let base = BaseChain {
        ty: ChainType::Filter,
        hook: ChainHook::Output,
        device: None,
        priority: 0,
        policy: Policy::Drop,
    };
    rs.add_table(f, "t", false).expect("table");
    rs.add_chain(f, "t", "out", Some(base), false)
        .expect("chain");
    rs.add_set(f, "t", "s", vec![ty], interval).expect("set");
    rs.add_elements(f, "t", "s", elems).expect("elements");
    let rule = vec![
        Stmt::Match(Match {
            keys: vec![key],
            op: Op::Eq,
            rhs: Rhs::Named("s".into()),
        }),
        Stmt::Verdict(RuleVerdict::Accept),
    ];
    rs.add_rule(f, "t", "out", rule, Position::Append(None))
        .expect("rule");
    NftHook::new(
        Arc::new(Program::compile(&rs).expect("compile")),
        Weak::new(),
    )
}

fn device() -> (Arc<Stack>, Arc<NetDevice>) {
    let stack = Stack::new();
    let cfg = DevConfig::ethernet("eth0", EthernetAddress([2, 0, 0, 0, 0, 1]));
    let dev = stack.add_device(cfg, vec![Box::new(Sink)]).expect("device");
    (stack, dev)
}

fn sets(c: &mut Criterion) {
    let (_stack, dev) = device();
    let mut g = c.benchmark_group("nft_set_lookup");
    for n in [10u32, 1_000, 100_000] {
        let addr = |i: u32| 0x0a01_0000 + 3 * i;
        let elems: Vec<Elem> = (0..n).map(|i| Elem::one(u64::from(addr(i)))).collect();
        let h = hook(Key::IpDaddr, DataType::Ipv4Addr, &elems, false);
        for (what, a) in [("hash_hit", addr(n / 2)), ("hash_miss", addr(n / 2) + 1)] {
            let mut pkt = udp(Ipv4Addr::from(a), 9);
            g.bench_with_input(BenchmarkId::new(what, n), &n, |b, _| {
                b.iter(|| black_box(h.hook(HookPoint::LocalOut, &mut pkt, &dev)))
            });
        }
        // Port ranges of 1 apart (at most 65536 ports: 100,000 ranges of
        // addresses instead, as `ip daddr @s` with `flags interval`).
        let ranges: Vec<Elem> = (0..n)
            .map(|i| Elem {
                lo: u64::from(addr(i)),
                hi: u64::from(addr(i)) + 1,
            })
            .collect();
        let h = hook(Key::IpDaddr, DataType::Ipv4Addr, &ranges, true);
        let mut pkt = udp(Ipv4Addr::from(addr(n / 2) + 1), 9);
        g.bench_with_input(BenchmarkId::new("interval_hit", n), &n, |b, _| {
            b.iter(|| black_box(h.hook(HookPoint::LocalOut, &mut pkt, &dev)))
        });
    }
    g.finish();
}

criterion_group!(benches, sets);
criterion_main!(benches);
