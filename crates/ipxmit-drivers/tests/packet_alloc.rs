//! Zero heap allocations per datagram in steady state on the AF_PACKET
//! driver, in each of its ways of reaching the kernel: `sendmmsg` batches
//! and a `TPACKET_V3` TX ring, each with and without `PACKET_VNET_HDR`
//! (checksum offload and UDP GSO), with 18, 1472, 8000 and 65000-byte
//! datagrams in `send_batch` calls of 64 (and a UDP GSO super-datagram of
//! 44 x 1472 B where the link grants GSO) into a kernel receiver over a
//! veth. The counting allocator counts the sending thread's allocations
//! (see `benches/support/alloc_probe.rs`); the runner's thread, which only
//! wakes stopped queues, is not counted.
//!
//! Needs root and network namespaces; without them it prints `SKIPPED`.

#[path = "../benches/support/alloc_probe.rs"]
#[allow(dead_code)]
mod alloc_probe;
mod common;
#[path = "../benches/support/host.rs"]
#[allow(dead_code)]
mod host;

use std::net::SocketAddrV4;
use std::time::Duration;

use common::netns::{DEV_A, VETH_OURS, VETH_PEER};
use common::veth::{packet_stack, veth_receiver};
use common::{payload, report, skip};
use ipxmit::{BatchMsg, Features, MsgFlags, SendError, UdpSocket};
use ipxmit_drivers::packet::{PacketConfig, PacketMode, TpacketVersion};
use ipxmit_drivers::runner::Runner;

#[global_allocator]
static ALLOC: alloc_probe::CountingAlloc = alloc_probe::CountingAlloc;

/// Sends `rounds` batches of 64 `msgs`, retrying a batch the device had no
/// room for; returns the datagrams sent.
fn send_rounds(s: &mut UdpSocket, msgs: &[BatchMsg<'_>], rounds: usize) -> u64 {
    let mut sent = 0u64;
    for _ in 0..rounds {
        let mut at = 0;
        while at < msgs.len() {
            match s.send_batch(&msgs[at..], MsgFlags::NONE) {
                Ok(n) => at += n,
                Err(SendError::NoBufs | SendError::Again) => {
                    std::thread::sleep(Duration::from_micros(200))
                }
                Err(e) => panic!("send_batch: {e:?}"),
            }
        }
        sent += msgs.len() as u64;
    }
    sent
}

/// Allocations of the sending thread per case, after a warm-up, for a link
/// configured by `set`.
fn probe(tag: &str, set: impl FnOnce(&mut PacketConfig)) -> Vec<(String, u64, u64)> {
    let (peer, _rx) = veth_receiver(tag, 9, 8 << 20);
    let mut cfg = PacketConfig::new(DEV_A);
    set(&mut cfg);
    let link = peer.open(&cfg).unwrap();
    let (stack, _) = packet_stack(&peer, &link);
    let _runner = Runner::spawn(stack.clone());
    let to = Some(SocketAddrV4::new(VETH_PEER, 9));
    let mut out = Vec::new();
    let mut cases: Vec<(usize, u32)> = vec![(18, 0), (1472, 0), (8000, 0), (65000, 0)];
    if link.features().contains(Features::GSO_UDP_L4) {
        cases.push((44 * 1472, 1472));
    }
    for (len, gso) in cases {
        let mut s = UdpSocket::new(&stack);
        s.bind(SocketAddrV4::new(VETH_OURS, 0)).unwrap();
        s.set_gso_size(gso).unwrap();
        let p = payload(len, len);
        let msgs = vec![BatchMsg::new(&p, to); 64];
        let rounds = if len > 8000 { 8 } else { 40 };
        send_rounds(&mut s, &msgs, rounds);
        alloc_probe::prefill_pool(stack.pool());
        alloc_probe::warm_parking();
        let before = alloc_probe::allocations();
        let mut n = 0;
        let sites = alloc_probe::sites_of(1, || n = send_rounds(&mut s, &msgs, rounds * 2));
        let allocs = alloc_probe::allocations() - before;
        let case = format!("{tag}/{len}B/gso{gso}");
        if let Some(site) = sites.first() {
            report(&format!("{case}: first allocation at\n{site}"));
        }
        out.push((case, n, allocs));
    }
    report(&format!("{tag}: {:?}", link.stats()));
    out
}

#[test]
fn packet_link_allocates_nothing_per_datagram_in_steady_state() {
    if skip("packet_link_allocates_nothing_per_datagram_in_steady_state") {
        return;
    }
    let ring = PacketMode::TxRing {
        frames: 256,
        frame_size: 0,
    };
    let vnet = |c: &mut PacketConfig| {
        c.vnet_hdr = true;
        c.offload = Features::HW_CSUM | Features::GSO_UDP_L4;
    };
    let mut all = probe("pkam", |_| {});
    all.extend(probe("pkav", vnet));
    all.extend(probe("pkar", |c| {
        c.mode = ring;
        c.version = TpacketVersion::V3;
    }));
    all.extend(probe("pkarv", |c| {
        c.mode = ring;
        vnet(c);
    }));
    for (case, n, a) in &all {
        report(&format!("{case:<28} {n:>8} datagrams {a:>6} allocations"));
    }
    assert_eq!(all.len(), 4 * 4 + 2, "cases (GSO on both vnet links)");
    let bad: Vec<_> = all.iter().filter(|c| c.2 > 0).collect();
    assert!(bad.is_empty(), "allocations in steady state: {bad:?}");
}
