//! The ipxmit side: a stack with the sender's geometry (same MAC, addresses,
//! MTU, static neighbour, no offloads) on an in-memory wire, driven through
//! ipxmit's `UdpSocket` / `RawSocket` with the scenario's options and sends.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use ipxmit::dev::DevConfig;
use ipxmit::neigh::NudState;
use ipxmit::socket::{ErrOrigin, ErrQueueEntry, InetSock};
use ipxmit::wire::EthernetAddress;
use ipxmit::{BatchMsg, Features, MsgFlags, PmtuDisc, RawSocket, SendError, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;

use super::kernel::ErrEntry;
use super::netns::{DEV_A, MAC_A, MAC_B};
use super::scenario::{
    destination, fix_options, hdrincl_bytes, mmsg_payload, payload, Kind, Outcome, Scenario, Step,
    DONTWAIT, MORE, PROBE,
};

/// The send buffer both sides use unless a scenario keeps the default
/// (`SO_SNDBUFFORCE` of 16 MiB, which the kernel doubles).
pub const BIG_SNDBUF: usize = 32 << 20;

fn flags(bits: u32) -> MsgFlags {
    let mut f = MsgFlags::NONE;
    for (b, m) in [
        (MORE, MsgFlags::MORE),
        (PROBE, MsgFlags::PROBE),
        (DONTWAIT, MsgFlags::DONTWAIT),
    ] {
        if bits & b != 0 {
            f = f | m;
        }
    }
    f
}

fn errno(e: &SendError) -> i32 {
    e.errno().code()
}

fn mode(m: u8) -> PmtuDisc {
    [
        PmtuDisc::Dont,
        PmtuDisc::Want,
        PmtuDisc::Do,
        PmtuDisc::Probe,
        PmtuDisc::Interface,
        PmtuDisc::Omit,
    ][m as usize]
}

fn entry(e: ErrQueueEntry) -> ErrEntry {
    ErrEntry {
        errno: e.errno.code() as u32,
        origin: match e.origin {
            ErrOrigin::Local => 1,
            ErrOrigin::Icmp => 2,
            ErrOrigin::Zerocopy => 5,
        },
        ee_type: e.ee_type,
        ee_code: e.ee_code,
        info: e.info,
        data: e.data,
        addr: e.addr,
        port: e.port,
    }
}

enum Sock {
    Udp(UdpSocket),
    Raw(RawSocket),
}

impl Sock {
    fn inet(&mut self) -> &mut InetSock {
        match self {
            Sock::Udp(s) => s,
            Sock::Raw(s) => s,
        }
    }
}

/// Runs `s` (the `idx`-th scenario) through ipxmit.
pub fn run(
    idx: usize,
    s: &Scenario,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
) -> Outcome {
    let stack = Stack::new();
    let wire = MemWire::new(1 << 14);
    let mut cfg = DevConfig::ethernet(DEV_A, EthernetAddress(MAC_A));
    cfg.txqueuelen = 1 << 14;
    cfg.features = Features::NONE;
    stack.add_device(cfg, wire.drivers(1)).expect("device");
    stack.device(DEV_A).unwrap().set_mtu(s.mtu).expect("mtu");
    stack
        .add_addr(DEV_A, format!("{src}/24").parse().unwrap())
        .expect("address");
    stack
        .add_neigh(DEV_A, dst, EthernetAddress(MAC_B), NudState::Permanent)
        .expect("neighbour");
    let mut out = Outcome::default();
    let mut sock = socket(&stack, s, src, dst, sport, &mut out);
    let to = SocketAddrV4::new(
        destination(s, dst),
        if matches!(s.kind, Kind::Udp) {
            dport
        } else {
            0
        },
    );
    if s.opts.connect {
        let r = sock.inet().connect(to).map_err(|e| errno(&e));
        out.setup.push(("connect", r));
    }
    for (k, step) in s.steps.iter().enumerate() {
        let dest = if s.opts.connect { None } else { Some(to) };
        let r = match (step, &mut sock) {
            (Step::Send { len, flags: f }, Sock::Udp(u)) => {
                u.sendmsg(&payload(idx, k, *len), dest, flags(*f))
            }
            (Step::Send { len, flags: f }, Sock::Raw(r)) => {
                r.sendmsg(&payload(idx, k, *len), dest.map(|d| *d.ip()), flags(*f))
            }
            (Step::SendTo { len, flags: f }, Sock::Udp(u)) => {
                u.sendmsg(&payload(idx, k, *len), Some(to), flags(*f))
            }
            (Step::SendTo { len, flags: f }, Sock::Raw(r)) => {
                r.sendmsg(&payload(idx, k, *len), Some(*to.ip()), flags(*f))
            }
            (Step::Hdr { flags: f, .. }, Sock::Raw(r)) => {
                let data = hdrincl_bytes(idx, k, step, src, dst);
                r.sendmsg(&data, dest.map(|d| *d.ip()), flags(*f))
            }
            (Step::Mmsg { lens, flags: f }, Sock::Udp(u)) => {
                let bufs: Vec<Vec<u8>> = lens
                    .iter()
                    .enumerate()
                    .map(|(j, &n)| mmsg_payload(idx, k, j, n))
                    .collect();
                let msgs: Vec<BatchMsg<'_>> = bufs.iter().map(|b| BatchMsg::new(b, dest)).collect();
                u.send_batch(&msgs, flags(*f))
            }
            (Step::Pieces { msgs, flags: f }, Sock::Udp(u)) => {
                let bufs: Vec<Vec<u8>> = msgs
                    .iter()
                    .enumerate()
                    .map(|(j, &(n, _))| mmsg_payload(idx, k, j, n))
                    .collect();
                let batch: Vec<BatchMsg<'_>> = bufs
                    .iter()
                    .zip(msgs)
                    .map(|(b, &(_, more))| BatchMsg {
                        flags: if more { MsgFlags::MORE } else { MsgFlags::NONE },
                        ..BatchMsg::new(b, dest)
                    })
                    .collect();
                u.send_batch(&batch, flags(*f))
            }
            (Step::Cork(on), Sock::Udp(u)) => u.set_cork(*on).map(|()| 0),
            (Step::Gso(g), Sock::Udp(u)) => u.set_gso_size(u32::from(*g)).map(|()| 0),
            (st, _) => panic!("step {st:?} does not fit the socket"),
        };
        out.returns.push(r.map_err(|e| errno(&e)));
    }
    while let Some(e) = sock.inet().recv_err() {
        out.errq.push(entry(e));
    }
    stack.poll_until_idle(100);
    // What the capture keeps: IPv4 frames from the sender (no ARP).
    wire.drain(|p| {
        let f = p.to_vec();
        if f.len() >= 34 && f[12..14] == [0x08, 0x00] && f[26..30] == src.octets() {
            out.frames.push(f);
        }
    });
    drop(sock);
    out
}

fn socket(
    stack: &Arc<Stack>,
    s: &Scenario,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    out: &mut Outcome,
) -> Sock {
    let mut sock = match s.kind {
        Kind::Udp => {
            let mut u = UdpSocket::new(stack);
            u.bind(SocketAddrV4::new(src, sport)).expect("bind");
            Sock::Udp(u)
        }
        Kind::Raw(p) => Sock::Raw(RawSocket::new(stack, p)),
        Kind::Hdrincl(p) => {
            let mut r = RawSocket::new(stack, p);
            if p != 255 {
                r.set_hdrincl(true);
                out.setup.push(("IP_HDRINCL", Ok(())));
            }
            Sock::Raw(r)
        }
    };
    let o = &s.opts;
    let inet = sock.inet();
    if let Some(b) = o.sndbuf {
        inet.set_sndbuf(b as usize);
        out.setup.push(("SO_SNDBUF", Ok(())));
    } else if !o.default_sndbuf {
        inet.budget().set_limit(BIG_SNDBUF);
    }
    if o.recverr {
        inet.set_recverr(true);
        out.setup.push(("IP_RECVERR", Ok(())));
    }
    if let Some(m) = o.pmtu {
        inet.set_mtu_discover(mode(m));
        out.setup.push(("IP_MTU_DISCOVER", Ok(())));
    }
    if let Some(t) = o.tos {
        inet.set_tos(t);
        out.setup.push(("IP_TOS", Ok(())));
    }
    if let Some(t) = o.ttl {
        let r = inet.set_ttl(Some(t)).map_err(|e| errno(&e));
        out.setup.push(("IP_TTL", r));
    }
    if let Some(raw) = &o.ip_options {
        let r = inet
            .set_ip_options(&fix_options(raw, dst))
            .map_err(|e| errno(&e));
        out.setup.push(("IP_OPTIONS", r));
    }
    if o.no_check {
        inet.set_no_check(true);
        out.setup.push(("SO_NO_CHECK", Ok(())));
    }
    if let Some(g) = o.gso {
        let r = match &mut sock {
            Sock::Udp(u) => u.set_gso_size(u32::from(g)).map_err(|e| errno(&e)),
            Sock::Raw(_) => Err(92),
        };
        out.setup.push(("UDP_SEGMENT", r));
    }
    sock
}
