//! The steady-state allocation probe on the AF_XDP driver: a veth pair
//! between two namespaces this probe creates (`ipxmit-xdp-alloc-*`), our
//! stack on the `A` end through an [`XdpLink`] in copy mode with its
//! runner, the kernel on the `B` end (10.10.0.2, which takes the datagrams
//! and drops them: nothing listens). The sending thread's allocations are
//! counted while it sends 18, 1472, 8000 and 65000-byte datagrams one by
//! one, and 18 and 1472-byte ones in `send_batch`es of 64, after a warm-up.
//! Needs root, network namespaces and AF_XDP; otherwise it says why.

use std::net::{Ipv4Addr, SocketAddrV4};

use ipxmit::neigh::NudState;
use ipxmit::wire::EthernetAddress;
use ipxmit::{BatchMsg, MsgFlags, Stack, UdpSocket};
use ipxmit_drivers::netns::{self, Netns};
use ipxmit_drivers::runner::Runner;
use ipxmit_drivers::xdp::{XdpConfig, XdpError, XdpLink};

use super::alloc_probe::{allocations, Probe, MEASURED, WARMUP};

/// The kernel's end of the veth.
const PEER: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
/// Datagram sizes sent one by one.
const SIZES: [usize; 4] = [18, 1472, 8000, 65000];
/// Datagram sizes sent in batches of 64.
const BATCHED: [usize; 2] = [18, 1472];

/// The namespaces and the link (the link goes first).
struct Wire {
    link: XdpLink,
    _a: Netns,
    _b: Netns,
}

/// Creates `A` and `B`, the veth pair, and opens the link inside `A`.
fn wire() -> Result<Wire, String> {
    let e = |e: std::io::Error| e.to_string();
    let a = Netns::unique("xdp-alloc-a").map_err(e)?;
    let b = Netns::unique("xdp-alloc-b").map_err(e)?;
    let (na, nb) = (a.name(), b.name());
    netns::ip(&[
        "link", "add", "xa0", "netns", na, "type", "veth", "peer", "name", "xb0", "netns", nb,
    ])
    .map_err(e)?;
    b.ip(&["addr", "add", "10.10.0.2/24", "dev", "xb0"])
        .map_err(e)?;
    b.ip(&["link", "set", "xb0", "up"]).map_err(e)?;
    a.ip(&["link", "set", "xa0", "up"]).map_err(e)?;
    let link = a
        .run(|| XdpLink::open(&XdpConfig::new("xa0")))
        .map_err(e)?
        .map_err(|e| match e {
            XdpError::NoAfXdp => format!("kernel without AF_XDP sockets: {e}"),
            e => e.to_string(),
        })?;
    Ok(Wire { link, _a: a, _b: b })
}

/// Counts the allocations of `measured` calls of `send` after `warmup`
/// (and the pool's growth to its depth: `alloc_probe::prefill_pool`).
fn count(pool: &ipxmit::BufPool, warmup: u64, measured: u64, mut send: impl FnMut()) -> u64 {
    for _ in 0..warmup {
        send();
    }
    super::alloc_probe::prefill_pool(pool);
    super::alloc_probe::warm_parking();
    let before = allocations();
    for _ in 0..measured {
        send();
    }
    allocations() - before
}

/// Runs the probe; `Err` says why it cannot run here.
pub fn probe_xdp() -> Result<Vec<Probe>, String> {
    if let Some(why) = netns::unavailable() {
        return Err(format!("needs root and network namespaces: {why}"));
    }
    let w = wire()?;
    let stack = Stack::new();
    stack
        .add_device(w.link.dev_config("eth0"), w.link.drivers())
        .map_err(|e| e.to_string())?;
    let mac = EthernetAddress([2, 0, 0, 0, 0, 2]);
    stack
        .add_addr("eth0", "10.10.0.1/24".parse().unwrap())
        .and_then(|_| stack.add_neigh("eth0", PEER, mac, NudState::Permanent))
        .map_err(|e| e.to_string())?;
    let runner = Runner::spawn(stack.clone());
    let mut s = UdpSocket::new(&stack);
    let to = SocketAddrV4::new(PEER, 9);
    let mut out = Vec::new();
    for n in SIZES {
        let p = vec![7u8; n];
        let allocs = count(stack.pool(), WARMUP, MEASURED, || {
            let _ = s.send_to(&p, to, MsgFlags::NONE);
        });
        out.push(probe(format!("xdp/send_to/{n}B"), MEASURED, allocs));
    }
    for n in BATCHED {
        let p = vec![7u8; n];
        let msgs = [BatchMsg::new(&p, Some(to)); 64];
        let allocs = count(stack.pool(), WARMUP / 64, MEASURED / 64, || {
            let _ = s.send_batch(&msgs, MsgFlags::NONE);
        });
        out.push(probe(
            format!("xdp/batch64/{n}B"),
            MEASURED / 64 * 64,
            allocs,
        ));
    }
    runner.stop();
    let st = w.link.stats();
    if st.tx_frames == 0 || st.tx_errors > 0 {
        return Err(format!("the link did not send cleanly: {st:?}"));
    }
    Ok(out)
}

fn probe(case: String, datagrams: u64, allocations: u64) -> Probe {
    Probe {
        case,
        datagrams,
        allocations,
        sites: Vec::new(),
    }
}
