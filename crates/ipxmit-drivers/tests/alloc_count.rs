//! Zero heap allocations per datagram in steady state (the `alloc_count`
//! benchmark as a test, so CI catches a regression), also with a root `pfifo
//! limit 1000`, with a root `tbf` that never throttles, with an accept-all
//! `LocalOut` hook and with ten policy rules over five numbered tables (the
//! datagrams routed from table 105; the socket's route cache hit). See
//! `benches/support/alloc_probe.rs`; `IPXMIT_ALLOC_TRACE=1` prints the sites.
//! The AF_XDP driver over a veth has its own probe
//! (`benches/support/xdp_probe.rs`; root, namespaces and AF_XDP, else
//! SKIPPED with the reason).

#[path = "../benches/support/alloc_probe.rs"]
mod alloc_probe;
#[path = "../benches/support/host.rs"]
#[allow(dead_code)]
mod host;
#[path = "../benches/support/xdp_probe.rs"]
mod xdp_probe;

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

/// The AF_XDP driver allocates nothing per datagram on the sending thread
/// (frames copied into UMEM frames, descriptors into the mapped ring; the
/// runner's thread completes).
#[test]
fn xdp_zero_allocations_per_datagram_in_steady_state() {
    let probes = match xdp_probe::probe_xdp() {
        Ok(p) => p,
        Err(why) => {
            let line =
                format!("SKIPPED ({why}): xdp_zero_allocations_per_datagram_in_steady_state\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            return;
        }
    };
    let bad = alloc_probe::report(&probes);
    assert_eq!(probes.len(), 6);
    assert!(bad.is_empty(), "heap allocations in steady state: {bad:#?}");
}

/// `send_batch_fates` allocates nothing per datagram either once warm: its
/// record keeps its room from call to call, fragments included.
#[test]
fn send_batch_fates_allocates_nothing_in_steady_state() {
    use ipxmit::dev::DevConfig;
    use ipxmit::neigh::NudState;
    use ipxmit::stats::fate::MsgFate;
    use ipxmit::wire::EthernetAddress;
    use ipxmit::{BatchMsg, MsgFlags, Stack, UdpSocket};
    use std::net::{Ipv4Addr, SocketAddrV4};
    let stack = Stack::new();
    let wire = ipxmit_drivers::mem::MemWire::new(4096);
    let mac = EthernetAddress([2, 0, 0, 0, 0, 1]);
    let dev = DevConfig::ethernet("eth0", mac);
    stack.add_device(dev, wire.drivers(1)).unwrap();
    stack
        .add_addr("eth0", "10.0.0.1/24".parse().unwrap())
        .unwrap();
    let peer = Ipv4Addr::new(10, 0, 0, 2);
    let peer_mac = EthernetAddress([2, 0, 0, 0, 0, 2]);
    stack
        .add_neigh("eth0", peer, peer_mac, NudState::Permanent)
        .unwrap();
    let mut s = UdpSocket::new(&stack);
    let (small, big) = (vec![1u8; 18], vec![2u8; 3000]);
    let to = Some(SocketAddrV4::new(peer, 9));
    let msgs: Vec<BatchMsg<'_>> = (0..64)
        .map(|i| BatchMsg::new(if i % 8 == 7 { &big } else { &small }, to))
        .collect();
    let mut fates = vec![MsgFate::NotSent; 64];
    let round = |s: &mut UdpSocket, fates: &mut Vec<MsgFate>| {
        assert_eq!(s.send_batch_fates(&msgs, MsgFlags::NONE, fates), Ok(64));
        wire.drain(drop);
    };
    for _ in 0..50 {
        round(&mut s, &mut fates);
    }
    let before = alloc_probe::allocations();
    for _ in 0..100 {
        round(&mut s, &mut fates);
    }
    assert_eq!(alloc_probe::allocations() - before, 0);
    assert!(fates.iter().all(|f| *f == MsgFate::Sent), "{fates:?}");
}

/// A pcapng tap annotates every frame (socket, queue time, qdisc) without
/// allocating: its comment is written into a string kept from frame to
/// frame, its options from a stack array.
#[test]
fn a_pcapng_tap_allocates_nothing_per_frame() {
    use ipxmit::dev::DevConfig;
    use ipxmit::neigh::NudState;
    use ipxmit::wire::EthernetAddress;
    use ipxmit::{MsgFlags, Stack, UdpSocket};
    use ipxmit_drivers::pcap::{CaptureFormat, CaptureWriter, LinkType};
    use std::net::{Ipv4Addr, SocketAddrV4};
    let stack = Stack::new();
    let wire = ipxmit_drivers::mem::MemWire::new(4096);
    let dev = DevConfig::ethernet("eth0", EthernetAddress([2, 0, 0, 0, 0, 1]));
    stack.add_device(dev, wire.drivers(1)).unwrap();
    stack
        .add_addr("eth0", "10.0.0.1/24".parse().unwrap())
        .unwrap();
    let peer = Ipv4Addr::new(10, 0, 0, 2);
    let mac = EthernetAddress([2, 0, 0, 0, 0, 2]);
    stack
        .add_neigh("eth0", peer, mac, NudState::Permanent)
        .unwrap();
    let w = CaptureWriter::new(
        std::io::sink(),
        CaptureFormat::PcapNg,
        LinkType::Ethernet,
        0,
        "eth0",
    )
    .unwrap();
    let tap = ipxmit_drivers::capture::PcapTap::new(w, stack.now());
    stack.device("eth0").unwrap().add_tap(tap.clone());
    let mut s = UdpSocket::new(&stack);
    let to = SocketAddrV4::new(peer, 9);
    let mut round = || {
        s.send_to(&[1u8; 18], to, MsgFlags::NONE).unwrap();
        s.send_to(&[2u8; 3000], to, MsgFlags::NONE).unwrap();
        wire.drain(drop);
    };
    for _ in 0..500 {
        round();
    }
    let before = alloc_probe::allocations();
    for _ in 0..1000 {
        round();
    }
    assert_eq!(alloc_probe::allocations() - before, 0);
    assert_eq!(tap.frames(), 1500 * 4);
    assert_eq!(tap.errors(), 0);
}

/// Two threads sending at once, each on its own queue of a null device
/// (`pfifo_fast` under the default `mq`, XPS mapping each thread's number
/// to its queue), and two on one queueless queue: neither allocates per
/// datagram once warm — the per-thread counter shards, buffer caches and
/// the neighbour table's read shards are set up by the warm-up.
#[test]
fn two_threads_sending_at_once_allocate_nothing_per_datagram() {
    use std::sync::Barrier;
    for (queues, qdisc) in [(2, None), (1, Some("noqueue"))] {
        let (stack, sink) = two_thread_host(queues, qdisc);
        let dev = stack.device("eth0").unwrap();
        let barrier = Barrier::new(2);
        let counts: Vec<u64> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..2)
                .map(|i| {
                    let (stack, dev, barrier) = (&stack, &dev, &barrier);
                    sc.spawn(move || {
                        // This thread's number on queue `i` alone (tests
                        // running in parallel hold other numbers).
                        let me = 1u64 << ipxmit::cpu::current();
                        dev.set_xps_cpus(i % queues, me).unwrap();
                        send_warm_then_count(stack, barrier)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(counts, [0, 0], "{queues} queue(s), {qdisc:?}");
        assert_eq!(sink.frames(), 2 * 2200 * 64);
    }
}

/// A stack whose `eth0` is a null device of `queues` queues, root `qdisc`
/// (None: the default), a permanent neighbour 10.0.0.2.
fn two_thread_host(
    queues: usize,
    qdisc: Option<&str>,
) -> (
    std::sync::Arc<ipxmit::Stack>,
    std::sync::Arc<ipxmit_drivers::null::NullCounters>,
) {
    use ipxmit::dev::DevConfig;
    use ipxmit::neigh::NudState;
    use ipxmit::wire::EthernetAddress;
    let stack = ipxmit::Stack::new();
    let sink = ipxmit_drivers::null::NullCounters::new();
    let dev = DevConfig::ethernet("eth0", EthernetAddress([2, 0, 0, 0, 0, 1]));
    stack.add_device(dev, sink.drivers(queues)).unwrap();
    if let Some(q) = qdisc {
        stack.replace_qdisc("eth0", &q.parse().unwrap()).unwrap();
    }
    stack
        .add_addr("eth0", "10.0.0.1/24".parse().unwrap())
        .unwrap();
    let mac = EthernetAddress([2, 0, 0, 0, 0, 2]);
    let peer = "10.0.0.2".parse().unwrap();
    stack
        .add_neigh("eth0", peer, mac, NudState::Permanent)
        .unwrap();
    (stack, sink)
}

/// 200 batches of 64 18-byte datagrams to warm up, then (the other thread
/// started too) 2000 more: the allocations this thread made in those.
fn send_warm_then_count(
    stack: &std::sync::Arc<ipxmit::Stack>,
    barrier: &std::sync::Barrier,
) -> u64 {
    use ipxmit::{BatchMsg, MsgFlags, UdpSocket};
    let mut s = UdpSocket::new(stack);
    let to = Some("10.0.0.2:9".parse().unwrap());
    let msgs = [BatchMsg::new(&[5u8; 18], to); 64];
    for _ in 0..200 {
        assert_eq!(s.send_batch(&msgs, MsgFlags::NONE), Ok(64));
    }
    barrier.wait();
    let before = alloc_probe::allocations();
    for _ in 0..2000 {
        assert_eq!(s.send_batch(&msgs, MsgFlags::NONE), Ok(64));
    }
    alloc_probe::allocations() - before
}

/// A driver whose receive side gives the same frames on every poll, and
/// whose transmit side drops what it is given (counted).
struct Feed {
    frames: Vec<Vec<u8>>,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl ipxmit::dev::Driver for Feed {
    fn start_xmit(&mut self, pkt: ipxmit::PacketBuf, _more: bool) -> ipxmit::dev::TxStatus {
        drop(pkt);
        self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ipxmit::dev::TxStatus::Ok
    }

    fn poll_rx(&mut self, budget: usize, rx: &mut dyn FnMut(&[u8])) -> usize {
        let n = self.frames.len().min(budget);
        self.frames[..n].iter().for_each(|f| rx(f));
        n
    }
}

/// Frames a host receives while it sends: an ARP reply from its
/// neighbour, an ARP request for its address (answered), a frame of
/// another protocol (ignored).
fn received_frames(ours: [u8; 6], peer: [u8; 6]) -> Vec<Vec<u8>> {
    let arp = |op: u8, tha: [u8; 6], dst: [u8; 6]| {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&peer);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, op]);
        f.extend_from_slice(&peer);
        f.extend_from_slice(&[10, 0, 0, 2]);
        f.extend_from_slice(&tha);
        f.extend_from_slice(&[10, 0, 0, 1]);
        f.resize(60, 0);
        f
    };
    let mut other = arp(2, ours, ours);
    other[12..14].copy_from_slice(&[0x88, 0xb5]);
    vec![arp(2, ours, ours), arp(1, [0; 6], [0xff; 6]), other]
}

/// `Stack::poll_rx` copies frames into a per-thread scratch space it
/// keeps: receiving (and answering an ARP request) allocates nothing per
/// frame once warm.
#[test]
fn receiving_frames_allocates_nothing_per_frame() {
    use ipxmit::dev::DevConfig;
    use ipxmit::neigh::NudState;
    use ipxmit::wire::EthernetAddress;
    use ipxmit::Stack;
    use std::sync::Arc;
    let (ours, peer) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let stack = Stack::new();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let feed = Feed {
        frames: received_frames(ours, peer),
        sent: sent.clone(),
    };
    let dev = DevConfig::ethernet("eth0", EthernetAddress(ours));
    stack.add_device(dev, vec![Box::new(feed)]).unwrap();
    stack
        .add_addr("eth0", "10.0.0.1/24".parse().unwrap())
        .unwrap();
    let addr = std::net::Ipv4Addr::new(10, 0, 0, 2);
    stack
        .add_neigh("eth0", addr, EthernetAddress(peer), NudState::Permanent)
        .unwrap();
    for _ in 0..500 {
        assert_eq!(stack.poll_rx(64), 3);
    }
    let before = alloc_probe::allocations();
    for _ in 0..1000 {
        assert_eq!(stack.poll_rx(64), 3);
    }
    let n = alloc_probe::allocations() - before;
    let sites = alloc_probe::sites_of(2, || {
        stack.poll_rx(64);
    });
    assert_eq!(
        n, 0,
        "allocations in 1000 polls; the first of one: {sites:#?}"
    );
    // Each poll answered the ARP request.
    assert_eq!(sent.load(std::sync::atomic::Ordering::Relaxed), 1501);
}
