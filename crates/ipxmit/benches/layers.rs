//! One layer at a time: IPv4 + UDP header emit, the fragmenter (fast path on a
//! corked chain, slow path on a linear datagram), cork append of 8 x 1000 B with
//! `MSG_MORE`, `pfifo_fast` enqueue + dequeue, and `fq_codel` enqueue +
//! dequeue with 1024 active flows.
//!
//! Run: `cargo bench -p ipxmit --bench layers`. The whole path (socket to a
//! device) is in `ipxmit-drivers`' `path` bench.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ipxmit::dev::{DevConfig, Driver, TxStatus};
use ipxmit::ipv4::Fragmenter;
use ipxmit::neigh::NudState;
use ipxmit::sched::fq_codel::{FqCodel, FqCodelConfig};
use ipxmit::sched::{Dequeued, PfifoFast, Qdisc, ToFree};
use ipxmit::wire::checksum::Csum;
use ipxmit::wire::{
    emit_header, EthernetAddress, IpProtocol, Ipv4Repr, UdpChecksum, UdpPacket, UdpRepr,
};
use ipxmit::{BufPool, Features, Instant, MsgFlags, PacketBuf, Stack, UdpSocket};

const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// Link-layer headroom of an Ethernet device (`LL_RESERVED_SPACE`).
const LL_RS: usize = 16;
/// IPv4 header length without options.
const HLEN: usize = 20;
/// Data bytes per fragment at MTU 1500.
const FRAG_DATA: usize = 1480;

fn repr(payload_len: usize) -> Ipv4Repr {
    Ipv4Repr {
        src_addr: SRC,
        dst_addr: DST,
        protocol: IpProtocol::UDP,
        ident: 0x1234,
        payload_len,
        ..Ipv4Repr::default()
    }
}

fn header_emit(c: &mut Criterion) {
    let mut g = c.benchmark_group("header_emit");
    g.throughput(Throughput::Elements(1));
    let mut buf = [0u8; 64];
    let ip = repr(8 + 1472);
    let udp = UdpRepr {
        src_port: 40000,
        dst_port: 9000,
    };
    let sum = Csum::of(&[0x5a; 1472]);
    g.bench_function("ipv4", |b| {
        b.iter(|| emit_header(black_box(&mut buf), black_box(&ip), &[]))
    });
    g.bench_function("ipv4+udp", |b| {
        b.iter(|| {
            emit_header(&mut buf, black_box(&ip), &[]);
            let mut p = UdpPacket::new_unchecked(&mut buf[HLEN..HLEN + 8]);
            let ck = UdpChecksum::PayloadSum {
                src_addr: SRC,
                dst_addr: DST,
                sum: black_box(sum),
            };
            udp.emit(&mut p, 1472, ck);
            black_box(&buf);
        })
    });
    g.finish();
}

/// A UDP datagram of `payload` bytes as one linear buffer (IP header first).
fn linear_datagram(pool: &BufPool, payload: usize) -> PacketBuf {
    let len = HLEN + 8 + payload;
    let mut p = pool.alloc(LL_RS + len);
    p.reserve(LL_RS);
    let d = p.put(len);
    d.fill(0x5a);
    emit_header(d, &repr(8 + payload), &[]);
    p
}

/// The same datagram shaped as the cork builds it: a head of one fragment's
/// worth and a chain of 1480-byte buffers with headroom for their headers.
fn chained_datagram(pool: &BufPool, payload: usize) -> PacketBuf {
    let total = 8 + payload;
    let mut head = pool.alloc(LL_RS + HLEN + FRAG_DATA);
    head.reserve(LL_RS);
    let first = total.min(FRAG_DATA);
    let d = head.put(HLEN + first);
    d.fill(0x5a);
    emit_header(d, &repr(total), &[]);
    let mut left = total - first;
    while left > 0 {
        let n = left.min(FRAG_DATA);
        let mut f = pool.alloc(LL_RS + HLEN + n);
        f.reserve(LL_RS + HLEN);
        f.put(n).fill(0x5a);
        head.chain_push(f);
        left -= n;
    }
    head
}

fn fragmenter(c: &mut Criterion) {
    let mut g = c.benchmark_group("fragment");
    let pool = BufPool::new(4096);
    for payload in [8000usize, 65000] {
        g.throughput(Throughput::Bytes(payload as u64));
        let run = |pkt: PacketBuf| {
            let f = Fragmenter::new(pkt, 1500, LL_RS, &pool).expect("fragmentable");
            for frag in f {
                black_box(&frag);
            }
        };
        g.bench_function(format!("fast_path/{payload}B"), |b| {
            b.iter_batched(
                || chained_datagram(&pool, payload),
                run,
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("slow_path/{payload}B"), |b| {
            b.iter_batched(
                || linear_datagram(&pool, payload),
                run,
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// A driver that frees what it is given.
struct Sink;

impl Driver for Sink {
    fn start_xmit(&mut self, pkt: PacketBuf, _more: bool) -> TxStatus {
        drop(pkt);
        TxStatus::Ok
    }
}

/// A stack with one Ethernet device (MTU 1500, `features`) on a [`Sink`].
fn stack_with_sink(features: Features) -> Arc<Stack> {
    let stack = Stack::new();
    let mut cfg = DevConfig::ethernet("eth0", EthernetAddress([2, 0, 0, 0, 0, 1]));
    cfg.features = features;
    let sink: Box<dyn Driver> = Box::new(Sink);
    stack.add_device(cfg, vec![sink]).expect("device");
    stack
        .add_addr("eth0", "10.0.0.1/24".parse().expect("net"))
        .expect("addr");
    let mac = EthernetAddress([2, 0, 0, 0, 0, 2]);
    stack
        .add_neigh("eth0", DST, mac, NudState::Permanent)
        .expect("neigh");
    stack
}

/// `ip_append_data` of 8 x 1000 B through `udp_sendmsg` with `MSG_MORE`, then
/// `udp_flush_pending_frames` (the push is in the whole-path bench).
fn cork_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("cork_append_8x1000");
    g.throughput(Throughput::Bytes(8000));
    let piece = [0x5au8; 1000];
    let dest = SocketAddrV4::new(DST, 9000);
    for (name, feats) in [
        ("linear", Features::NONE),
        ("sg+csum", Features::SG | Features::HW_CSUM),
    ] {
        let stack = stack_with_sink(feats);
        let mut sock = UdpSocket::new(&stack);
        sock.bind(SocketAddrV4::new(SRC, 0)).expect("bind");
        g.bench_function(name, |b| {
            b.iter(|| {
                for _ in 0..8 {
                    let r = sock.send_to(black_box(&piece), dest, MsgFlags::MORE);
                    black_box(r.expect("append"));
                }
                sock.flush();
            })
        });
    }
    g.finish();
}

fn pfifo_fast(c: &mut Criterion) {
    let mut g = c.benchmark_group("pfifo_fast");
    let mut q = PfifoFast::new(1000);
    let mut to_free = ToFree::with_capacity(64);
    let now = Instant::ZERO;
    g.throughput(Throughput::Elements(1));
    let mut slot = Some(PacketBuf::from_slice(LL_RS, &[0x5a; 1514]));
    g.bench_function("enqueue+dequeue", |b| {
        b.iter(|| {
            let p = slot.take().expect("packet");
            black_box(q.enqueue(p, now, &mut to_free));
            if let Dequeued::Packet(p) = q.dequeue(now) {
                slot = Some(p);
            }
        })
    });
    let mut batch: Vec<PacketBuf> = (0..64)
        .map(|_| PacketBuf::from_slice(LL_RS, &[0x5a; 1514]))
        .collect();
    g.throughput(Throughput::Elements(64));
    g.bench_function("enqueue+dequeue/batch64", |b| {
        b.iter(|| {
            for p in batch.drain(..) {
                black_box(q.enqueue(p, now, &mut to_free));
            }
            while let Dequeued::Packet(p) = q.dequeue(now) {
                batch.push(p);
            }
        })
    });
    g.finish();
}

/// `fq_codel` with its 1024 flows all active (two packets queued in each),
/// one enqueue to the next flow and one dequeue per iteration: the
/// issue's "enqueue + dequeue <= 40 ns per packet".
fn fq_codel(c: &mut Criterion) {
    let mut g = c.benchmark_group("fq_codel");
    let mut q = FqCodel::new(FqCodelConfig::new(1514));
    let mut to_free = ToFree::with_capacity(64);
    let now = Instant::ZERO;
    let flow = |i: u32| {
        let mut p = PacketBuf::from_slice(LL_RS, &[0x5a; 1514]);
        p.meta.hash = (i % 1024) << 22 | 1;
        p
    };
    for i in 0..2048 {
        q.enqueue(flow(i), now, &mut to_free);
    }
    g.throughput(Throughput::Elements(1));
    let mut i = 0u32;
    g.bench_function("enqueue+dequeue/1024flows", |b| {
        b.iter(|| {
            let mut p = match q.dequeue(now) {
                Dequeued::Packet(p) => p,
                _ => flow(i),
            };
            i = i.wrapping_add(1);
            p.meta.hash = (i % 1024) << 22 | 1;
            black_box(q.enqueue(p, now, &mut to_free));
        })
    });
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
    targets = header_emit, fragmenter, cork_append, pfifo_fast, fq_codel
}
criterion_main!(benches);
