//! Frames into a host's receive path (`Stack::receive`, the kernel's
//! `__netif_receive_skb_core` → `ip_rcv` → `udp_rcv`/`icmp_rcv`, ARP to the
//! neighbour layer). The host: `eth0` (10.0.0.1/24) on an in-memory wire, a
//! permanent neighbour 10.0.0.2, a default route via it, a UDP socket bound
//! to 0.0.0.0:5000 and one connected to 10.0.0.2:7000 with `IP_RECVERR` that
//! has sent a datagram (so a quoting ICMP error can find it).
//!
//! Each input is a few frames; per frame a flags byte may fix what a
//! fuzzer cannot guess (our MAC, the EtherType, the IP destination, the IP
//! header and UDP/ICMP checksums), choose `lo` instead of `eth0`, or move
//! the clock. Invariants after every frame: no panic; every MIB counter,
//! drop reason and device counter is at least what it was; every IPv4 frame
//! the host answered with (port unreachable, echo reply, ARP) has a header
//! checksum that verifies and fits the device's MTU.

#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;
use ipxmit::dev::DevConfig;
use ipxmit::neigh::NudState;
use ipxmit::wire::{checksum, EthernetAddress};
use ipxmit::{ManualClock, MsgFlags, RouteSpec, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;
use libfuzzer_sys::fuzz_target;

const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const MAC_ME: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_PEER: [u8; 6] = [2, 0, 0, 0, 0, 2];

#[derive(Arbitrary, Debug)]
struct Frame {
    flags: u8,
    bytes: Vec<u8>,
}

const FIX_MAC: u8 = 0x01;
const FIX_ETHERTYPE: u8 = 0x02;
const FIX_IP_DST: u8 = 0x04;
const FIX_IP_CSUM: u8 = 0x08;
const FIX_L4_CSUM: u8 = 0x10;
const BROADCAST: u8 = 0x20;
const ON_LO: u8 = 0x40;
const TICK: u8 = 0x80;

/// Makes `f` (an Ethernet frame) what `flags` ask for.
fn fix(f: &mut [u8], flags: u8) {
    if f.len() < 14 {
        return;
    }
    if flags & FIX_MAC != 0 {
        let mac = if flags & BROADCAST != 0 {
            [0xff; 6]
        } else {
            MAC_ME
        };
        f[..6].copy_from_slice(&mac);
    }
    if flags & FIX_ETHERTYPE != 0 {
        f[12..14].copy_from_slice(&[0x08, 0x00]);
    }
    let ip = &mut f[14..];
    if ip.len() < 20 {
        return;
    }
    if flags & FIX_IP_DST != 0 {
        ip[0] = 0x40 | (ip[0] & 0x0f).max(5);
        ip[16..20].copy_from_slice(&ME.octets());
    }
    let hl = usize::from(ip[0] & 0x0f) * 4;
    if flags & FIX_L4_CSUM != 0 && hl >= 20 && hl <= ip.len() {
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).clamp(hl, ip.len());
        let (src, dst, proto) = (
            Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            ip[9],
        );
        let l4 = &mut ip[hl..total];
        match proto {
            17 if l4.len() >= 8 => {
                let ulen = usize::from(u16::from_be_bytes([l4[4], l4[5]])).clamp(8, l4.len());
                let c = ipxmit::wire::udp_checksum(src, dst, &l4[..ulen]);
                l4[6..8].copy_from_slice(&c.to_be_bytes());
            }
            1 if l4.len() >= 4 => {
                l4[2..4].fill(0);
                let c = checksum::checksum(l4);
                l4[2..4].copy_from_slice(&c.to_be_bytes());
            }
            _ => {}
        }
    }
    if flags & FIX_IP_CSUM != 0 && hl >= 20 && hl <= ip.len() {
        ip[10..12].fill(0);
        let c = checksum::checksum(&ip[..hl]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

struct Host {
    clock: Arc<ManualClock>,
    stack: Arc<Stack>,
    wire: Arc<MemWire>,
    bound: UdpSocket,
    connected: UdpSocket,
}

fn host() -> Host {
    let clock = Arc::new(ManualClock::new());
    let stack = Stack::with_clock(clock.clone());
    stack.set_seed(0);
    let wire = MemWire::new(64);
    let cfg = DevConfig::ethernet("eth0", EthernetAddress(MAC_ME));
    stack.add_device(cfg, wire.drivers(1)).unwrap();
    stack
        .add_addr("eth0", "10.0.0.1/24".parse().unwrap())
        .unwrap();
    stack
        .add_neigh("eth0", PEER, EthernetAddress(MAC_PEER), NudState::Permanent)
        .unwrap();
    let mut dflt = RouteSpec::new("0.0.0.0/0".parse().unwrap(), "eth0");
    dflt.via = Some(PEER);
    stack.add_route(dflt).unwrap();
    let mut bound = UdpSocket::new(&stack);
    bound
        .bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5000))
        .unwrap();
    let mut connected = UdpSocket::new(&stack);
    connected.set_recverr(true);
    connected.connect(SocketAddrV4::new(PEER, 7000)).unwrap();
    connected.send(&[7; 100], MsgFlags::NONE).unwrap();
    stack.poll_until_idle(16);
    wire.drain(|_| {});
    Host {
        clock,
        stack,
        wire,
        bound,
        connected,
    }
}

/// Every counter the host keeps, in a fixed order.
fn counters(h: &Host) -> Vec<u64> {
    let c = h.stack.counters();
    let mut v: Vec<u64> = c.mib_snapshot().into_iter().map(|(_, n)| n).collect();
    v.extend(c.drop_snapshot().into_iter().map(|(_, n)| n));
    for d in h.stack.devices() {
        let s = d.stats.snapshot();
        v.extend([
            s.tx_packets,
            s.tx_bytes,
            s.tx_errors,
            s.tx_dropped,
            s.rx_packets,
            s.rx_bytes,
            s.rx_dropped,
        ]);
    }
    v
}

fuzz_target!(|frames: Vec<Frame>| {
    let mut h = host();
    let eth0 = h.stack.device("eth0").unwrap();
    let lo = h.stack.device("lo").unwrap();
    let mtu = eth0.mtu() as usize;
    let mut before = counters(&h);
    for Frame { flags, mut bytes } in frames.into_iter().take(16) {
        fix(&mut bytes, flags);
        if flags & TICK != 0 {
            h.clock.advance(Duration::from_millis(1500));
        }
        let dev = if flags & ON_LO != 0 { &lo } else { &eth0 };
        h.stack.receive(dev, &bytes);
        h.stack.poll_until_idle(16);
        h.wire.drain(|p| {
            let f = p.to_vec();
            assert!(f.len() <= 14 + mtu, "frame of {} bytes", f.len());
            if f.len() >= 34 && f[12..14] == [0x08, 0x00] {
                let hl = usize::from(f[14] & 0x0f) * 4;
                assert!(checksum::verify(&f[14..14 + hl]), "IP header checksum");
                let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
                assert!(total <= f.len() - 14, "total length past the frame");
            }
        });
        while h.bound.recv_from().is_ok() {}
        while h.connected.recv_err().is_some() {}
        let _ = h.connected.take_error();
        let now = counters(&h);
        assert_eq!(now.len(), before.len());
        for (i, (a, b)) in before.iter().zip(&now).enumerate() {
            assert!(b >= a, "counter {i} went from {a} to {b}");
        }
        before = now;
    }
});
