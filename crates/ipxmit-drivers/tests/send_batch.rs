//! `UdpSocket::send_batch` (sendmmsg) against `send_to` one by one: for random
//! mixes of sizes (fitting the MTU, needing fragments), messages with
//! `MSG_MORE` of their own (corked datagrams, some of more than 64 pieces),
//! destinations (resolved neighbour, unresolved, unroutable; two ports),
//! socket states (connected, every PMTU mode, options, GSO, small
//! `SO_SNDBUF`, `IP_RECVERR`), MTUs from 68 to 9004, device offloads,
//! Ethernet and bare-IP (L3) devices with one, two or four transmit queues,
//! qdiscs (pfifo_fast, pfifo and bfifo with small and large limits,
//! noqueue), a small wire that goes busy (and may keep its frames charged to
//! the socket until drained), drivers that refuse frames without stopping
//! their queues, and filter hooks at LOCAL_OUT and POST_ROUTING that drop
//! datagrams by destination port, both ways put the same frames on the wire
//! — byte for byte, IP IDs compared by their progression — return the same
//! counts and errors, queue the same socket errors and leave the same
//! counters (every MIB and drop reason, device statistics, every queue's
//! qdisc statistics).

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use ipxmit::dev::{DevConfig, Driver, LinkType, NetDevice, TxQueueCtl, TxStatus};
use ipxmit::neigh::NudState;
use ipxmit::netfilter::{Hook, HookPoint, Verdict};
use ipxmit::sched::{QdiscSpec, QdiscStats};
use ipxmit::socket::udp::BatchMsg;
use ipxmit::socket::ErrQueueEntry;
use ipxmit::stats::{DropReason, Mib};
use ipxmit::wire::EthernetAddress;
use ipxmit::{Features, MsgFlags, PacketBuf, PmtuDisc, RouteSpec, SendError, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;
use proptest::prelude::*;

const NEAR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const UNRESOLVED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const FAR: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const UNROUTABLE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// How the host and socket are set up for one case.
#[derive(Clone, Debug)]
struct Setup {
    features: Features,
    qdisc: String,
    mtu: u32,
    wire_cap: usize,
    pmtu: PmtuDisc,
    connected: bool,
    options: bool,
    gso: u16,
    /// `SO_SNDBUF`, when set.
    sndbuf: Option<usize>,
    /// The wire keeps its frames charged to the socket until drained (a
    /// driver that frees on completion), instead of releasing the charge
    /// when it takes a frame (`skb_orphan`, as the in-memory wire does).
    keep: bool,
    /// A bare-IP device (`LinkType::L3`, a TUN): no link header, no
    /// neighbours.
    l3: bool,
    /// Transmit queues of the device, one driver each, all on the one wire.
    queues: usize,
    /// The drivers refuse some frames without stopping their queues.
    busy: Option<Busy>,
    /// Filter hooks, registered in this order.
    hooks: Vec<(HookPoint, Filter)>,
    /// `IP_RECVERR`.
    recverr: bool,
    /// `SO_BROADCAST`, and a route to 224.0.0.0/4 on the device.
    bcast: bool,
}

/// SG + checksum offload, pfifo_fast, MTU 1500, a roomy wire, PMTU "want",
/// an unconnected socket with nothing else set, on an Ethernet device with
/// one queue, a driver that takes every frame and no hooks.
fn plain_setup() -> Setup {
    Setup {
        features: Features::SG | Features::HW_CSUM,
        qdisc: "pfifo_fast".into(),
        mtu: 1500,
        wire_cap: 1024,
        pmtu: PmtuDisc::Want,
        connected: false,
        options: false,
        gso: 0,
        sndbuf: None,
        keep: false,
        l3: false,
        queues: 1,
        busy: None,
        hooks: Vec::new(),
        recverr: false,
        bcast: false,
    }
}

impl Setup {
    /// The device's name: `eth0`, or `tun0` for an L3 device.
    fn dev_name(&self) -> &'static str {
        if self.l3 {
            "tun0"
        } else {
            "eth0"
        }
    }

    /// The link header's length: where the IP header starts in a frame.
    fn l2_len(&self) -> usize {
        if self.l3 {
            0
        } else {
            14
        }
    }
}

/// A filter hook: drops the datagrams for one UDP destination port, or
/// accepts everything. Stateless, so both hosts of a case decide alike.
#[derive(Clone, Copy, Debug)]
enum Filter {
    DropPort(u16),
    AcceptAll,
}

impl Hook for Filter {
    fn hook(&self, _point: HookPoint, pkt: &mut PacketBuf, _out: &NetDevice) -> Verdict {
        match *self {
            Filter::DropPort(port) if udp_dport(pkt) == port => Verdict::Drop,
            Filter::DropPort(_) | Filter::AcceptAll => Verdict::Accept,
        }
    }
}

/// The UDP destination port of a whole datagram as a hook sees it: its data
/// starts at the IP header and the UDP header follows in the linear part of
/// the first buffer (a datagram to be fragmented is one buffer whose later
/// fragments are chained).
fn udp_dport(pkt: &PacketBuf) -> u16 {
    let ip = pkt.network_header();
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    assert_eq!(ip[9], 17, "a hook sees UDP datagrams only here");
    let uh = ip
        .get(ihl..ihl + 4)
        .expect("the UDP header is in the first buffer's linear part");
    u16::from_be_bytes([uh[2], uh[3]])
}

/// Refusal pattern of a busy driver: of every `every` frames it is given it
/// refuses `streak` (`TxStatus::Busy`) without stopping its queue, as a
/// driver whose ring is short for a moment; the stack requeues them and
/// tries again (the next send, or deferred work).
#[derive(Clone, Copy, Debug)]
struct Busy {
    every: u32,
    streak: u32,
}

/// A driver that refuses frames by a [`Busy`] pattern (counted per queue)
/// and hands the others to the driver it wraps.
struct Refusing {
    inner: Box<dyn Driver>,
    busy: Busy,
    calls: u32,
}

impl Driver for Refusing {
    fn attach(&mut self, ctl: Arc<TxQueueCtl>) {
        self.inner.attach(ctl);
    }

    fn start_xmit(&mut self, pkt: PacketBuf, more: bool) -> TxStatus {
        self.calls += 1;
        if self.calls % self.busy.every < self.busy.streak {
            return TxStatus::Busy(pkt);
        }
        self.inner.start_xmit(pkt, more)
    }

    fn flush(&mut self) {
        self.inner.flush();
    }
}

/// The wire the frames leave on.
enum Wire {
    Mem(Arc<MemWire>),
    Keep(Arc<KeepWire>),
}

impl Wire {
    /// Hands every frame the wire holds to `f`; returns how many.
    fn drain(&self, mut f: impl FnMut(&[u8])) -> usize {
        match self {
            Wire::Mem(w) => w.drain(|p| f(&p.to_vec())),
            Wire::Keep(w) => w.drain(f),
        }
    }
}

/// A wire of `cap` frames that keeps them (and their send-budget charges)
/// until drained, and stops a queue that finds it full (woken by the
/// drain).
struct KeepWire {
    frames: parking_lot::Mutex<Vec<PacketBuf>>,
    cap: usize,
    stopped: parking_lot::Mutex<Vec<Arc<TxQueueCtl>>>,
}

impl KeepWire {
    /// An empty wire of `cap` frames.
    fn new(cap: usize) -> Arc<KeepWire> {
        Arc::new(KeepWire {
            frames: parking_lot::Mutex::new(Vec::new()),
            cap,
            stopped: parking_lot::Mutex::new(Vec::new()),
        })
    }

    /// A driver for one more queue on this wire.
    fn driver(self: &Arc<Self>) -> Box<dyn Driver> {
        Box::new(KeepDriver {
            wire: self.clone(),
            ctl: None,
        })
    }

    /// Hands every frame to `f` (then frees them), wakes the stopped
    /// queues; returns how many frames.
    fn drain(&self, mut f: impl FnMut(&[u8])) -> usize {
        let frames = std::mem::take(&mut *self.frames.lock());
        for p in &frames {
            f(&p.to_vec());
        }
        let n = frames.len();
        drop(frames);
        let stopped = std::mem::take(&mut *self.stopped.lock());
        for ctl in stopped {
            ctl.wake();
        }
        n
    }
}

/// The driver of one queue on a [`KeepWire`].
struct KeepDriver {
    wire: Arc<KeepWire>,
    ctl: Option<Arc<TxQueueCtl>>,
}

impl Driver for KeepDriver {
    fn attach(&mut self, ctl: Arc<TxQueueCtl>) {
        self.ctl = Some(ctl);
    }

    fn start_xmit(&mut self, pkt: PacketBuf, _more: bool) -> TxStatus {
        let mut frames = self.wire.frames.lock();
        if frames.len() >= self.wire.cap {
            if let Some(c) = &self.ctl {
                c.stop();
                self.wire.stopped.lock().push(c.clone());
            }
            return TxStatus::Busy(pkt);
        }
        frames.push(pkt);
        TxStatus::Ok
    }
}

/// The device `s` describes.
fn dev_config(s: &Setup) -> DevConfig {
    let mut cfg = common::eth0();
    cfg.name = s.dev_name().into();
    if s.l3 {
        cfg.link = LinkType::L3;
    }
    cfg.mtu = s.mtu;
    cfg.features = s.features;
    cfg
}

/// One driver per queue of `s` on its wire (the in-memory ring or a
/// [`KeepWire`]), each behind a [`Refusing`] driver when `s.busy`.
fn drivers(s: &Setup) -> (Vec<Box<dyn Driver>>, Wire) {
    let (drvs, wire) = if s.keep {
        let w = KeepWire::new(s.wire_cap);
        let drvs = (0..s.queues).map(|_| w.driver()).collect();
        (drvs, Wire::Keep(w))
    } else {
        let w = MemWire::new(s.wire_cap);
        (w.drivers(s.queues), Wire::Mem(w))
    };
    let Some(busy) = s.busy else {
        return (drvs, wire);
    };
    let wrap = |inner| -> Box<dyn Driver> {
        Box::new(Refusing {
            inner,
            busy,
            calls: 0,
        })
    };
    (drvs.into_iter().map(wrap).collect(), wire)
}

/// 10.0.0.1/24 on device `dev`, the route to 10.9.0.0/16 via [`NEAR`], and
/// [`NEAR`] as a permanent neighbour (unless the device is L3: no
/// neighbours there).
fn addresses(stack: &Stack, dev: &str, l3: bool) {
    stack.add_addr(dev, "10.0.0.1/24".parse().unwrap()).unwrap();
    let mut far = RouteSpec::new("10.9.0.0/16".parse().unwrap(), dev);
    far.via = Some(NEAR);
    stack.add_route(far).unwrap();
    if !l3 {
        let mac = EthernetAddress([2, 0, 0, 0, 0, 2]);
        stack
            .add_neigh(dev, NEAR, mac, NudState::Permanent)
            .unwrap();
    }
}

/// The socket `s` describes, bound to 10.0.0.1:4000.
fn socket(stack: &Arc<Stack>, s: &Setup) -> UdpSocket {
    let mut sock = UdpSocket::new(stack);
    sock.bind(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 4000))
        .unwrap();
    sock.set_mtu_discover(s.pmtu);
    sock.set_gso_size(u32::from(s.gso)).unwrap();
    sock.set_recverr(s.recverr);
    if s.options {
        // Record route, 3 slots.
        sock.set_ip_options(&[7, 15, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
            .unwrap();
    }
    if s.connected {
        sock.connect(SocketAddrV4::new(NEAR, 9)).unwrap();
    }
    if let Some(b) = s.sndbuf {
        sock.set_sndbuf(b);
    }
    sock.set_broadcast(s.bcast);
    sock
}

/// The root qdisc `s` names: one shared by every queue, or with `mq
/// CHILD` an `mq` root (handle 1:) and `CHILD` on each queue (on one
/// queue, `CHILD` as the root).
fn root_qdisc(stack: &Stack, s: &Setup) {
    use ipxmit::sched::QdiscOp;
    let mq = s.qdisc.strip_prefix("mq ");
    let Some(child) = mq.filter(|_| s.queues > 1) else {
        let spec = mq.unwrap_or(&s.qdisc).parse::<QdiscSpec>().unwrap();
        stack.replace_qdisc(s.dev_name(), &spec).unwrap();
        return;
    };
    let (dev, spec) = (s.dev_name(), child.parse::<QdiscSpec>().unwrap());
    stack
        .qdisc_modify(dev, QdiscOp::Replace, Some(1 << 16), &QdiscSpec::Mq)
        .unwrap();
    for i in 1..=s.queues as u32 {
        stack
            .qdisc_modify_at(dev, 1 << 16 | i, QdiscOp::Replace, None, &spec)
            .unwrap();
    }
}

/// A host as `s` describes it: device, wire and drivers, root qdisc,
/// addresses, hooks, and the socket.
fn host(s: &Setup) -> (Arc<Stack>, Wire, UdpSocket) {
    let (drvs, wire) = drivers(s);
    let stack = Stack::new();
    stack.add_device(dev_config(s), drvs).unwrap();
    root_qdisc(&stack, s);
    addresses(&stack, s.dev_name(), s.l3);
    if s.bcast {
        let mcast = RouteSpec::new("224.0.0.0/4".parse().unwrap(), s.dev_name());
        stack.add_route(mcast).unwrap();
    }
    for &(point, filter) in &s.hooks {
        stack.hooks().register(point, Arc::new(filter));
    }
    let sock = socket(&stack, s);
    (stack, wire, sock)
}

/// One message: payload length, destination (None = the connected peer),
/// and whether it carries `MSG_MORE` (a piece of a corked datagram).
type Msg = (usize, Option<SocketAddrV4>, bool);

/// The message's own flags.
fn more(m: bool) -> MsgFlags {
    if m {
        MsgFlags::MORE
    } else {
        MsgFlags::NONE
    }
}

/// A recognisable payload of `len` bytes for message `k`.
fn payload(len: usize, k: usize) -> Vec<u8> {
    (0..len).map(|i| ((13 * i + 7 * k) % 251) as u8).collect()
}

/// Everything observable after a run.
#[derive(Debug, PartialEq)]
struct Outcome {
    results: Vec<Result<usize, SendError>>,
    frames: Vec<Vec<u8>>,
    id_steps: Vec<i32>,
    errq: Vec<ErrQueueEntry>,
    mibs: Vec<(Mib, u64)>,
    drops: Vec<(DropReason, u64)>,
    dev: String,
    /// Each queue's qdisc statistics and frames left to requeue.
    qdiscs: Vec<(QdiscStats, usize)>,
    budget_left: usize,
}

/// Frames (their IP header at `l2`) with the IP ID and header checksum
/// masked (the checksum verified first); the IDs as steps from the first of
/// the same destination and DF bit (the per-destination counters start at
/// random points per stack, as in the kernel).
fn normalize(raw: Vec<Vec<u8>>, l2: usize) -> (Vec<Vec<u8>>, Vec<i32>) {
    let mut first = std::collections::HashMap::new();
    let mut steps = Vec::new();
    let is_ip = |f: &[u8]| match l2 {
        0 => f.len() >= 20 && f[0] >> 4 == 4,
        _ => f.len() >= l2 + 20 && f[l2 - 2..l2] == [8, 0],
    };
    let frames = raw
        .into_iter()
        .map(|mut f| {
            if is_ip(&f) {
                let ip = &mut f[l2..];
                let hlen = usize::from(ip[0] & 0x0f) * 4;
                let mut c = internet_checksum::Checksum::new();
                c.add_bytes(&ip[..hlen]);
                assert_eq!(c.checksum(), [0, 0], "IP header checksum verifies");
                let id = i32::from(u16::from_be_bytes([ip[4], ip[5]]));
                let key = (ip[16..20].to_vec(), ip[6] & 0x40);
                let base = *first.entry(key).or_insert(id);
                steps.push((id - base).rem_euclid(65536));
                ip[4..6].fill(0);
                ip[10..12].fill(0);
            }
            f
        })
        .collect();
    (frames, steps)
}

/// What a run collects as it goes: each call's result, the frames taken
/// off the wire and the socket's error-queue entries.
#[derive(Default)]
struct Log {
    results: Vec<Result<usize, SendError>>,
    frames: Vec<Vec<u8>>,
    errq: Vec<ErrQueueEntry>,
}

impl Log {
    /// After a call: drains the wire (letting stopped or refused queues run
    /// again) and the socket's error queue.
    fn settle(&mut self, stack: &Stack, wire: &Wire, sock: &mut UdpSocket) {
        drain(stack, wire, &mut self.frames);
        while let Some(e) = sock.recv_err() {
            self.errq.push(e);
        }
    }
}

/// The [`Outcome`] of a run of `s` that left `log`.
fn outcome(stack: &Stack, s: &Setup, sock: &UdpSocket, log: Log) -> Outcome {
    let (frames, id_steps) = normalize(log.frames, s.l2_len());
    let dev = stack.device(s.dev_name()).unwrap();
    let qdiscs = dev
        .queues()
        .iter()
        .map(|q| (q.with_qdisc(|q| *q.stats()), q.requeued_len()))
        .collect();
    Outcome {
        results: log.results,
        frames,
        id_steps,
        errq: log.errq,
        mibs: stack.counters().mib_snapshot(),
        drops: stack.counters().drop_snapshot(),
        dev: format!("{:?}", dev.stats.snapshot()),
        qdiscs,
        budget_left: sock.budget().allocated(),
    }
}

/// Drains the wire into `out`, letting a stopped queue run again.
fn drain(stack: &Stack, wire: &Wire, out: &mut Vec<Vec<u8>>) {
    for _ in 0..1000 {
        if wire.drain(|p| out.push(p.to_vec())) == 0 && stack.poll() == 0 {
            break;
        }
    }
}

/// Sends each batch message by message (`sendmsg`, stopping at the first
/// error as sendmmsg does), settling after each batch; the outcome.
fn one_by_one(s: &Setup, batches: &[Vec<Msg>]) -> Outcome {
    let (stack, wire, mut sock) = host(s);
    let mut log = Log::default();
    for (b, batch) in batches.iter().enumerate() {
        let mut sent = 0;
        let mut err = None;
        for (k, &(len, dest, m)) in batch.iter().enumerate() {
            let data = payload(len, b * 100 + k);
            match sock.sendmsg(&data, dest, MsgFlags::DONTWAIT | more(m)) {
                Ok(_) => sent += 1,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        log.results.push(match err {
            Some(e) if sent == 0 => Err(e),
            _ => Ok(sent),
        });
        log.settle(&stack, &wire, &mut sock);
    }
    outcome(&stack, s, &sock, log)
}

/// Sends each batch in one `send_batch` call, settling after each; the
/// outcome.
fn batched(s: &Setup, batches: &[Vec<Msg>]) -> Outcome {
    let (stack, wire, mut sock) = host(s);
    let mut log = Log::default();
    for (b, batch) in batches.iter().enumerate() {
        let datas: Vec<Vec<u8>> = (0..batch.len())
            .map(|k| payload(batch[k].0, b * 100 + k))
            .collect();
        let msgs: Vec<BatchMsg<'_>> = batch
            .iter()
            .zip(&datas)
            .map(|(&(_, dest, m), d)| BatchMsg {
                flags: more(m),
                ..BatchMsg::new(d, dest)
            })
            .collect();
        log.results.push(sock.send_batch(&msgs, MsgFlags::DONTWAIT));
        log.settle(&stack, &wire, &mut sock);
    }
    outcome(&stack, s, &sock, log)
}

/// Runs `batches` on `s` both ways and asserts the same outcome (results
/// and frames first, for a readable failure); returns it.
fn both_ways(s: &Setup, batches: &[Vec<Msg>]) -> Outcome {
    let a = one_by_one(s, batches);
    let b = batched(s, batches);
    assert_eq!(a.results, b.results, "results");
    assert_eq!(a.frames.len(), b.frames.len(), "frame count");
    for (i, (x, y)) in a.frames.iter().zip(&b.frames).enumerate() {
        assert_eq!(x, y, "frame {i} differs");
    }
    assert_eq!(a.errq, b.errq, "error queue");
    assert_eq!(a, b);
    a
}

/// Destinations: the connected peer (when connected), or a resolved,
/// gatewayed, unresolved or unroutable host at port 9 (mostly) or 10.
fn dest_strategy(connected: bool) -> impl Strategy<Value = Option<SocketAddrV4>> {
    let addr = prop_oneof![
        8 => Just(NEAR),
        2 => Just(FAR),
        1 => Just(UNRESOLVED),
        1 => Just(UNROUTABLE),
    ];
    let port = prop_oneof![6 => Just(9u16), 1 => Just(10u16)];
    let named = (addr, port).prop_map(|(a, p)| Some(SocketAddrV4::new(a, p)));
    if connected {
        prop_oneof![3 => Just(None), 1 => named].boxed()
    } else {
        named.boxed()
    }
}

/// Payload lengths: small, near the MTU, or needing fragments.
fn len_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..=64,
        4 => 1400usize..=1472,
        1 => 1473usize..=9000,
    ]
}

/// A message: length, destination, and `MSG_MORE` one time in four.
fn msg_strategy(connected: bool) -> impl Strategy<Value = Msg> {
    let piece = prop_oneof![3 => Just(false), 1 => Just(true)];
    (len_strategy(), dest_strategy(connected), piece)
}

/// A batch: a random mix of messages, or a corked group of more than 64
/// pieces (`MSG_MORE` on all but the last; mostly small ones) between two
/// short random mixes.
fn batch_strategy(connected: bool) -> impl Strategy<Value = Vec<Msg>> {
    let mix = prop::collection::vec(msg_strategy(connected), 1..=80);
    let piece_len = prop_oneof![
        8 => 0usize..=64,
        1 => 1400usize..=1472,
        1 => 1473usize..=3000,
    ];
    let long = (
        prop::collection::vec(msg_strategy(connected), 0..=6),
        prop::collection::vec(piece_len, 65..=90),
        dest_strategy(connected),
        prop::collection::vec(msg_strategy(connected), 0..=6),
    )
        .prop_map(|(head, lens, dest, tail)| {
            let n = lens.len();
            let group = lens
                .into_iter()
                .enumerate()
                .map(move |(i, len)| (len, dest, i + 1 < n));
            head.into_iter().chain(group).chain(tail).collect()
        });
    prop_oneof![4 => mix, 1 => long]
}

/// Qdiscs: pfifo_fast (most), pfifo with a small limit, bfifo with a
/// small (a few frames) and a large limit, noqueue.
fn qdisc_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("pfifo_fast".to_string()),
        2 => Just("mq pfifo_fast".to_string()),
        1 => Just("pfifo limit 5".to_string()),
        1 => Just("mq pfifo limit 5".to_string()),
        1 => (1000u32..=8000).prop_map(|n| format!("bfifo limit {n}")),
        1 => Just("bfifo limit 1000000".to_string()),
        1 => Just("noqueue".to_string()),
    ]
}

/// Filter hooks: none (most), or one or two at either point, accepting all
/// or dropping port 10 (often) or 9.
fn hooks_strategy() -> impl Strategy<Value = Vec<(HookPoint, Filter)>> {
    let point = prop_oneof![Just(HookPoint::LocalOut), Just(HookPoint::PostRouting)];
    let filter = prop_oneof![
        4 => Just(Filter::DropPort(10)),
        1 => Just(Filter::DropPort(9)),
        2 => Just(Filter::AcceptAll),
    ];
    prop_oneof![
        3 => Just(Vec::new()),
        2 => prop::collection::vec((point, filter), 1..=2),
    ]
}

/// The device and the way to the wire: features, MTU, L3, queues, qdisc,
/// wire capacity (a small one often: a queue builds behind it), a keeping
/// wire, a refusing driver.
type DevPart = (
    Features,
    u32,
    bool,
    usize,
    String,
    usize,
    bool,
    Option<Busy>,
);

/// The device part of a [`Setup`].
fn dev_strategy() -> impl Strategy<Value = DevPart> {
    let features = prop_oneof![
        Just(Features::NONE),
        Just(Features::SG),
        Just(Features::HW_CSUM),
        Just(Features::SG | Features::HW_CSUM),
    ];
    let mtu = prop_oneof![
        6 => Just(1500u32),
        2 => 576u32..=9000,
        1 => Just(9004u32),
        1 => 68u32..576,
    ];
    let l3 = prop_oneof![4 => Just(false), 1 => Just(true)];
    let queues = prop_oneof![4 => Just(1usize), 1 => Just(2usize), 1 => Just(4usize)];
    let wire_cap = prop_oneof![1 => Just(1024usize), 1 => 2usize..=8];
    let keep = prop_oneof![3 => Just(false), 1 => Just(true)];
    let busy = prop_oneof![
        3 => Just(None),
        1 => (2u32..=8, 1u32..=3).prop_map(|(every, streak)| Some(Busy {
            every,
            streak: streak.min(every - 1),
        })),
    ];
    (
        features,
        mtu,
        l3,
        queues,
        qdisc_strategy(),
        wire_cap,
        keep,
        busy,
    )
}

/// The socket: PMTU mode, connected, IP options, GSO size, `SO_SNDBUF`,
/// `IP_RECVERR`.
type SockPart = (PmtuDisc, bool, bool, u16, Option<usize>, bool);

/// The socket part of a [`Setup`].
fn sock_strategy() -> impl Strategy<Value = SockPart> {
    let pmtu = prop_oneof![
        4 => Just(PmtuDisc::Want),
        2 => Just(PmtuDisc::Dont),
        2 => Just(PmtuDisc::Do),
        1 => Just(PmtuDisc::Probe),
        1 => Just(PmtuDisc::Interface),
        1 => Just(PmtuDisc::Omit),
    ];
    let rare = prop_oneof![6 => Just(false), 1 => Just(true)];
    let gso = prop_oneof![6 => Just(0u16), 1 => Just(1000u16)];
    let sndbuf = prop_oneof![3 => Just(None), 1 => (2000usize..40_000).prop_map(Some)];
    (pmtu, any::<bool>(), rare, gso, sndbuf, any::<bool>())
}

/// A whole [`Setup`].
fn setup_strategy() -> impl Strategy<Value = Setup> {
    (dev_strategy(), sock_strategy(), hooks_strategy()).prop_map(|(d, k, hooks)| {
        let (features, mtu, l3, queues, qdisc, wire_cap, keep, busy) = d;
        let (pmtu, connected, options, gso, sndbuf, recverr) = k;
        Setup {
            features,
            qdisc,
            mtu,
            wire_cap,
            pmtu,
            connected,
            options,
            gso,
            sndbuf,
            keep,
            l3,
            queues,
            busy,
            hooks,
            recverr,
            bcast: false,
        }
    })
}

/// A setup and one to four batches for it.
fn case_strategy() -> impl Strategy<Value = (Setup, Vec<Vec<Msg>>)> {
    setup_strategy().prop_flat_map(|s| {
        let batches = prop::collection::vec(batch_strategy(s.connected), 1..=4);
        (Just(s), batches)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn send_batch_equals_send_to_one_by_one((setup, batches) in case_strategy()) {
        let a = one_by_one(&setup, &batches);
        let b = batched(&setup, &batches);
        prop_assert_eq!(&a.results, &b.results);
        prop_assert_eq!(a.frames.len(), b.frames.len());
        for (i, (x, y)) in a.frames.iter().zip(&b.frames).enumerate() {
            prop_assert_eq!(x, y, "frame {} differs", i);
        }
        prop_assert_eq!(&a.errq, &b.errq);
        prop_assert_eq!(a, b);
    }
}

/// eth0 10.0.0.1/24 with `features` on the one queue of driver `drv`
/// (and root qdisc `qdisc` when given), 10.0.0.2 a permanent neighbour,
/// and an unbound socket.
fn driver_host(
    drv: Box<dyn Driver>,
    features: Features,
    qdisc: Option<&str>,
) -> (Arc<Stack>, UdpSocket) {
    let mut cfg = common::eth0();
    cfg.features = features;
    let stack = common::driver_stack(drv, cfg, qdisc);
    let sock = UdpSocket::new(&stack);
    (stack, sock)
}

/// Records what the driver is given: length and the `xmit_more` hint.
struct Recorder(Arc<parking_lot::Mutex<Vec<(usize, bool)>>>);

impl Driver for Recorder {
    fn start_xmit(&mut self, pkt: PacketBuf, more: bool) -> TxStatus {
        self.0.lock().push((pkt.len(), more));
        TxStatus::Ok
    }
}

/// The common case really takes the batched way: 64 datagrams reach the
/// driver in one pass, all but the last flagged `xmit_more`; one by one,
/// none is.
#[test]
fn a_batch_reaches_the_driver_in_one_pass_with_xmit_more() {
    let log = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let features = Features::SG | Features::HW_CSUM;
    let (stack, mut sock) = driver_host(Box::new(Recorder(log.clone())), features, None);
    let data = payload(18, 0);
    let to = SocketAddrV4::new(NEAR, 9);
    let msgs = vec![BatchMsg::new(&data, Some(to)); 64];
    assert_eq!(sock.send_batch(&msgs, MsgFlags::NONE), Ok(64));
    let got = std::mem::take(&mut *log.lock());
    assert_eq!(got.len(), 64);
    assert!(got.iter().all(|&(len, _)| len == 14 + 20 + 8 + 18));
    let more = got.iter().filter(|&&(_, m)| m).count();
    assert_eq!(
        (more, got[63].1),
        (63, false),
        "63 frames with xmit_more, the last without"
    );
    assert_eq!(stack.counters().get(Mib::UdpOutDatagrams), 64);
    for _ in 0..3 {
        sock.send_to(&data, to, MsgFlags::NONE).unwrap();
    }
    assert!(
        log.lock().iter().all(|&(_, m)| !m),
        "single sends carry no xmit_more"
    );
}

/// Errors: the first message failing is the call's error; a later one ends
/// the call with the count so far.
#[test]
fn errors_follow_sendmmsg() {
    let s = Setup {
        features: Features::NONE,
        pmtu: PmtuDisc::Do,
        ..plain_setup()
    };
    let (_stack, _wire, mut sock) = host(&s);
    let small = payload(10, 0);
    let big = payload(3000, 0);
    let near = Some(SocketAddrV4::new(NEAR, 9));
    let nowhere = Some(SocketAddrV4::new(UNROUTABLE, 9));
    let first_bad = [BatchMsg::new(&small, nowhere)];
    assert_eq!(
        sock.send_batch(&first_bad, MsgFlags::NONE),
        Err(SendError::NetUnreachable(UNROUTABLE))
    );
    let later_bad = [
        BatchMsg::new(&small, near),
        BatchMsg::new(&small, near),
        BatchMsg::new(&big, near),
        BatchMsg::new(&small, near),
    ];
    assert_eq!(sock.send_batch(&later_bad, MsgFlags::NONE), Ok(2));
    assert_eq!(sock.send_batch(&[], MsgFlags::NONE), Ok(0));
}

/// Buffers still queued when their socket is dropped keep its send budget
/// alive (as `sk_wmem_alloc` keeps the kernel's socket) and release into it
/// when they leave; nothing dangles.
#[test]
fn queued_buffers_outlive_their_socket() {
    let s = Setup {
        features: Features::NONE,
        qdisc: "pfifo limit 100".into(),
        wire_cap: 2,
        ..plain_setup()
    };
    let (stack, wire, mut sock) = host(&s);
    let data = payload(100, 0);
    let to = Some(SocketAddrV4::new(NEAR, 9));
    let msgs = vec![BatchMsg::new(&data, to); 40];
    assert_eq!(sock.send_batch(&msgs, MsgFlags::NONE), Ok(40));
    let budget = std::sync::Arc::downgrade(sock.budget());
    assert!(sock.budget().allocated() > 0, "queued buffers are charged");
    drop(sock);
    assert!(
        budget.upgrade().is_some(),
        "the queued buffers keep the budget"
    );
    let mut frames = Vec::new();
    drain(&stack, &wire, &mut frames);
    assert_eq!(frames.len(), 40);
    assert!(
        budget.upgrade().is_none(),
        "freed once the last buffer left"
    );
}

/// A send budget that runs out mid-batch (frames held in the qdisc behind a
/// busy wire): both ways accept the same datagrams, then `EAGAIN`
/// (`MSG_DONTWAIT`) ends the call with the count so far.
#[test]
fn a_spent_send_budget_ends_the_batch_like_one_by_one() {
    let s = Setup {
        wire_cap: 2,
        sndbuf: Some(8000),
        ..plain_setup()
    };
    let batches = vec![vec![(1000, Some(SocketAddrV4::new(NEAR, 9)), false); 60]; 2];
    let a = one_by_one(&s, &batches);
    let b = batched(&s, &batches);
    let Ok(n) = a.results[0] else {
        panic!("the first batch sends some: {:?}", a.results);
    };
    assert!(n > 2 && n < 60, "the budget ends the batch early: {n}");
    assert_eq!(a, b);
}

/// IDs from the per-destination counters are reserved for a whole run; a
/// run the driver cuts short gives the unused ones back, so the datagrams
/// after it get the IDs they would have had one by one.
#[test]
fn a_run_cut_short_gives_its_unused_ids_back() {
    let s = Setup {
        wire_cap: 3,
        ..plain_setup()
    };
    let batches = vec![vec![(100, Some(SocketAddrV4::new(NEAR, 9)), false); 20]; 3];
    let a = one_by_one(&s, &batches);
    let b = batched(&s, &batches);
    assert_eq!(a.frames.len(), 60);
    assert!(
        a.id_steps.windows(2).all(|w| w[1] == w[0] + 1),
        "{:?}",
        a.id_steps
    );
    assert_eq!(a, b);
}

/// Takes frames, and stops its queue once it has taken `left` (a ring that
/// is full after the frame it took, `netif_stop_queue`); logs each frame's
/// length, and whether the last frame came with `xmit_more` and no flush
/// has followed (a frame a batching driver would still hold).
struct StopAfter {
    left: usize,
    ctl: Option<Arc<TxQueueCtl>>,
    log: Arc<parking_lot::Mutex<(Vec<usize>, bool)>>,
}

impl Driver for StopAfter {
    fn attach(&mut self, ctl: Arc<TxQueueCtl>) {
        self.ctl = Some(ctl);
    }

    fn start_xmit(&mut self, pkt: PacketBuf, more: bool) -> TxStatus {
        let mut log = self.log.lock();
        log.0.push(pkt.len());
        log.1 = more;
        self.left = self.left.saturating_sub(1);
        if let (0, Some(c)) = (self.left, &self.ctl) {
            c.stop();
        }
        TxStatus::Ok
    }

    fn flush(&mut self) {
        self.log.lock().1 = false;
    }
}

/// A `noqueue` host whose driver stops its queue after `left` frames; what
/// the driver got, the results and the counters after sending `lens`
/// (batched or one by one).
fn stop_after(left: usize, lens: &[usize], batched: bool) -> String {
    let log = Arc::new(parking_lot::Mutex::new((Vec::new(), false)));
    let drv = StopAfter {
        left,
        ctl: None,
        log: log.clone(),
    };
    let (stack, mut sock) = driver_host(Box::new(drv), Features::NONE, Some("noqueue"));
    let to = Some(SocketAddrV4::new(NEAR, 9));
    let datas: Vec<Vec<u8>> = lens.iter().map(|&n| payload(n, n)).collect();
    let results = if batched {
        let msgs: Vec<BatchMsg<'_>> = datas.iter().map(|d| BatchMsg::new(d, to)).collect();
        vec![sock.send_batch(&msgs, MsgFlags::NONE)]
    } else {
        let mut sent = 0;
        let mut first_err = None;
        for d in &datas {
            match sock.sendmsg(d, to, MsgFlags::NONE) {
                Ok(_) => sent += 1,
                Err(e) => {
                    first_err = Some(e);
                    break;
                }
            }
        }
        vec![match first_err {
            Some(e) if sent == 0 => Err(e),
            _ => Ok(sent),
        }]
    };
    let dev = stack.device("eth0").unwrap();
    let log = log.lock();
    assert!(
        !log.1,
        "a frame given with xmit_more was never flushed ({batched}, {left})"
    );
    format!(
        "{results:?} {:?} {:?} {:?} {:?}",
        log.0,
        stack.counters().mib_snapshot(),
        stack.counters().drop_snapshot(),
        dev.stats.snapshot()
    )
}

/// A queue stopped in the middle of a fragment train (the driver took a
/// fragment and is full): the rest of the datagram is dropped and it fails
/// (`ENETDOWN`), as `noqueue` does one by one; stopped right after a train,
/// the datagram is sent and the next message finds the queue stopped. No
/// frame given with `xmit_more` is left unflushed either way.
#[test]
fn a_queue_stopped_mid_train_drops_the_rest_like_one_by_one() {
    let lens = [3000, 18, 5000];
    for left in [1, 2, 3, 4, 5, 8] {
        let a = stop_after(left, &lens, false);
        let b = stop_after(left, &lens, true);
        assert_eq!(a, b, "driver stops after {left} frames");
    }
    let mid = stop_after(2, &lens, true);
    assert!(mid.starts_with("[Err(NetDown)] [1514, 1514]"), "{mid}");
    let after = stop_after(3, &lens, true);
    assert!(after.starts_with("[Ok(1)] [1514, 1514, 82]"), "{after}");
}

/// The folded `skb->csum` of each frame and its bytes, sending `groups`
/// (payload lengths of a datagram's pieces) one way or the other, on a
/// wire that keeps the buffers.
fn frame_sums(groups: &[&[usize]], batched: bool) -> Vec<(u16, Vec<u8>)> {
    let s = Setup {
        keep: true,
        wire_cap: 1000,
        ..plain_setup()
    };
    let (_stack, wire, mut sock) = host(&s);
    let Wire::Keep(keep) = &wire else {
        unreachable!("a keeping wire")
    };
    let to = Some(SocketAddrV4::new(NEAR, 9));
    for (g, lens) in groups.iter().enumerate() {
        let datas: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(k, &n)| payload(n, g * 10 + k))
            .collect();
        let msgs: Vec<BatchMsg<'_>> = datas
            .iter()
            .enumerate()
            .map(|(k, d)| BatchMsg {
                flags: more(k + 1 < lens.len()),
                ..BatchMsg::new(d, to)
            })
            .collect();
        if batched {
            assert_eq!(sock.send_batch(&msgs, MsgFlags::NONE), Ok(msgs.len()));
        } else {
            for m in &msgs {
                sock.sendmsg(m.data, to, m.flags).unwrap();
            }
        }
    }
    let frames = keep.frames.lock();
    frames
        .iter()
        .map(|p| (p.meta.csum.fold(), p.to_vec()))
        .collect()
}

/// A fragmented datagram's buffers carry the sum of the head's payload
/// (the UDP header excluded) as `skb->csum`, the same folded value the
/// general path leaves, whether the datagram was one message or corked
/// from several with pieces that straddle fragments (odd lengths too).
#[test]
fn fragments_carry_the_heads_payload_sum_like_one_by_one() {
    let groups: [&[usize]; 4] = [&[4000], &[1000; 8], &[999, 1, 2001, 7, 1500], &[31, 3000]];
    let a = frame_sums(&groups, false);
    let b = frame_sums(&groups, true);
    assert_eq!(a.len(), 3 + 6 + 4 + 3);
    let sums = |v: &[(u16, Vec<u8>)]| v.iter().map(|(s, _)| *s).collect::<Vec<_>>();
    assert_eq!(sums(&a), sums(&b), "the same folded sums both ways");
    for frames in [&a, &b] {
        let mut head = 0;
        for (sum, f) in frames {
            if f[20] & 0x1f == 0 && f[21] == 0 {
                // A first fragment: Ethernet, IP and UDP headers, then its
                // payload.
                head = ipxmit::wire::checksum::Csum::of(&f[14 + 20 + 8..]).fold();
                assert_eq!(*sum, head, "the head's sum is its payload's");
            } else {
                assert_eq!(*sum, head, "a later fragment carries the head's sum");
            }
        }
    }
}

/// Corked groups of the same piece lengths but not the same `MSG_MORE`
/// pattern follow one another in one call: each is cut where its own flags
/// say (a group remembered by its lengths is not taken for another), as one
/// by one.
#[test]
fn like_lengths_with_other_flags_are_other_groups() {
    // On a queueless device, where one run takes all the groups.
    let s = Setup {
        qdisc: "noqueue".into(),
        ..plain_setup()
    };
    let to = Some(SocketAddrV4::new(NEAR, 9));
    let m = |len, more| (len, to, more);
    let batches = vec![vec![
        // 3 pieces, then the same lengths as 2 pieces and a datagram.
        m(1000, true),
        m(1000, true),
        m(1000, false),
        m(1000, true),
        m(1000, false),
        m(1000, false),
        // And again as 3 pieces, then as 1 piece and 2.
        m(1000, true),
        m(1000, true),
        m(1000, false),
        m(1000, false),
        m(1000, true),
        m(1000, false),
    ]];
    let a = one_by_one(&s, &batches);
    let b = batched(&s, &batches);
    assert_eq!(a.results, vec![Ok(12)]);
    // 3000 B in 3 frames, 2000 B in 2, 1000 B in 1, 3, 1, 2.
    assert_eq!(a.frames.len(), 3 + 2 + 1 + 3 + 1 + 2);
    assert_eq!(a, b);
}

/// What a call of like corked groups leaves when the flow changes between
/// calls — the device's MTU, its features, the socket's PMTU mode — sent
/// batched or one by one: the plan a call remembers for the next is not
/// the one to use after such a change.
fn across_changes(batched: bool) -> (Vec<Vec<u8>>, Vec<Result<usize, SendError>>) {
    let s = Setup {
        qdisc: "noqueue".into(),
        ..plain_setup()
    };
    let (stack, wire, mut sock) = host(&s);
    let to = Some(SocketAddrV4::new(NEAR, 9));
    let datas: Vec<Vec<u8>> = (0..6).map(|k| payload(1000, k)).collect();
    let msgs: Vec<BatchMsg<'_>> = datas
        .iter()
        .enumerate()
        .map(|(k, d)| BatchMsg {
            flags: more(k % 3 != 2),
            ..BatchMsg::new(d, to)
        })
        .collect();
    let dev = stack.device("eth0").unwrap();
    let (mut frames, mut results) = (Vec::new(), Vec::new());
    for step in 0..5 {
        match step {
            1 => dev.set_mtu(1220).unwrap(),
            2 => dev.set_features(Features::SG | Features::IP_CSUM),
            3 => sock.set_mtu_discover(PmtuDisc::Dont),
            4 => dev.set_mtu(2020).unwrap(),
            _ => {}
        }
        if batched {
            results.push(sock.send_batch(&msgs, MsgFlags::NONE));
        } else {
            let r = msgs.iter().try_fold(0, |n, m| {
                sock.sendmsg(m.data, m.dest, m.flags).map(|_| n + 1)
            });
            results.push(r);
        }
        drain(&stack, &wire, &mut frames);
    }
    (normalize(frames, 14).0, results)
}

/// A corked group planned in one call and met again in the next after the
/// MTU, the device's features or the PMTU mode changed is planned anew:
/// the same frames and results as one by one.
#[test]
fn a_changed_flow_between_calls_is_planned_anew() {
    let (a, ra) = across_changes(false);
    let (b, rb) = across_changes(true);
    assert_eq!(ra, vec![Ok(6); 5]);
    assert_eq!(rb, ra);
    assert_eq!(a.len(), b.len());
    assert!(a == b, "the frames differ");
}

/// To [`NEAR`] at `port`.
fn near(port: u16) -> Option<SocketAddrV4> {
    Some(SocketAddrV4::new(NEAR, port))
}

/// The value of counter `key` in a snapshot (MIBs or drop reasons).
fn count<K: PartialEq>(snapshot: &[(K, u64)], key: K) -> u64 {
    snapshot
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(0, |&(_, n)| n)
}

/// A hook that drops port 10 (after one that accepts all) at either point
/// ends a batch at the first datagram it drops with `EPERM`, as sendmmsg
/// does: a datagram to be fragmented is judged whole (passing it sends all
/// its fragments), a corked group is judged by its first piece's
/// destination when it is pushed, and a drop on the first message is the
/// call's error.
#[test]
fn a_hook_drop_ends_the_batch_at_each_point() {
    for point in [HookPoint::LocalOut, HookPoint::PostRouting] {
        let s = Setup {
            hooks: vec![(point, Filter::AcceptAll), (point, Filter::DropPort(10))],
            recverr: true,
            ..plain_setup()
        };
        let batches = vec![
            vec![
                (100, near(9), false),
                (3000, near(9), false),
                (4000, near(10), false),
                (100, near(9), false),
            ],
            vec![
                (100, near(9), false),
                (100, near(10), true),
                (100, near(9), false),
                (100, near(9), false),
            ],
            vec![(50, near(10), false), (50, near(9), false)],
        ];
        let out = both_ways(&s, &batches);
        let perm = Err(SendError::Perm);
        assert_eq!(out.results, vec![Ok(2), Ok(2), perm], "{point:?}");
        // 100 B in one frame, 3000 B in three, 100 B in one.
        assert_eq!(out.frames.len(), 5, "{point:?}");
        assert_eq!(count(&out.drops, DropReason::NetfilterDrop), 3, "{point:?}");
    }
}

/// A pfifo_fast queue behind a small wire whose driver also refuses every
/// third frame without stopping its queue: the refused frames are requeued
/// and sent first on the next try, in the same order and with the same
/// counters as one by one (on the in-memory wire and on one that keeps the
/// frames charged to the socket).
#[test]
fn pfifo_fast_behind_a_refusing_driver_requeues_like_one_by_one() {
    for keep in [false, true] {
        let s = Setup {
            busy: Some(Busy {
                every: 3,
                streak: 1,
            }),
            wire_cap: 4,
            keep,
            ..plain_setup()
        };
        let batch = (0..30).map(|k| (200 + 50 * k, near(9), false)).collect();
        let out = both_ways(&s, &vec![batch; 3]);
        assert_eq!(out.results, vec![Ok(30); 3], "keep {keep}");
        // Payloads of 200 to 1650 B: the last four need two fragments.
        assert_eq!(out.frames.len(), 3 * (30 + 4), "keep {keep}");
        let (stats, left) = out.qdiscs[0];
        assert!(stats.requeues > 10, "refused frames requeued: {stats:?}");
        assert_eq!((stats.qlen, left), (0, 0), "all sent in the end");
    }
}

/// An L3 device (a TUN): frames are bare IP datagrams and no neighbour is
/// resolved (10.0.0.3, unresolved on Ethernet, is sent to at once);
/// fragments, corked datagrams and errors as one by one.
#[test]
fn an_l3_device_sends_bare_ip_like_one_by_one() {
    let s = Setup {
        l3: true,
        wire_cap: 5,
        ..plain_setup()
    };
    let to = |a| Some(SocketAddrV4::new(a, 9));
    let batch = vec![
        (100, to(NEAR), false),
        (3000, to(FAR), false),
        (20, to(UNRESOLVED), true),
        (1500, to(NEAR), false),
        (10, to(UNROUTABLE), false),
        (10, to(NEAR), false),
    ];
    let out = both_ways(&s, &[batch.clone(), batch]);
    assert_eq!(out.results, vec![Ok(4); 2]);
    // 100 B in one frame, 3000 B in three, 20 + 1500 B in two.
    assert_eq!(out.frames.len(), 2 * 6);
    assert!(out.frames.iter().all(|f| f[0] == 0x45), "bare IPv4");
}

/// Broadcast and multicast datagrams (the route's type flags a batch
/// sets up once per run) among unicast ones: frames, the
/// `IpExtOut{Bcast,Mcast}` counters and the copies looped to the host are
/// those of `sendmsg` one by one.
#[test]
fn broadcast_and_multicast_runs_go_like_one_by_one() {
    let s = Setup {
        bcast: true,
        ..plain_setup()
    };
    let to = |a: [u8; 4]| Some(SocketAddrV4::new(Ipv4Addr::from(a), 9));
    let batch = vec![
        (18, to([10, 0, 0, 255]), false),
        (18, to([10, 0, 0, 255]), false),
        (30, to([224, 0, 0, 1]), false),
        (30, to([224, 0, 0, 1]), false),
        (3000, to([224, 0, 0, 1]), false),
        (18, to([10, 0, 0, 2]), false),
        (18, to([255, 255, 255, 255]), false),
        (40, to([239, 1, 2, 3]), false),
    ];
    let out = both_ways(&s, &[batch.clone(), batch]);
    assert_eq!(out.results, vec![Ok(8); 2]);
    // 3000 B to a group in three frames, the others in one each.
    assert_eq!(out.frames.len(), 2 * 10);
    let mib = |m| count(&out.mibs, m);
    assert_eq!(mib(Mib::IpExtOutBcastPkts), 2 * 3);
    assert_eq!(mib(Mib::IpExtOutMcastPkts), 2 * 6);
}

/// Four transmit queues on one small wire under `mq`, flows to several
/// ports and hosts spread over them by their hash: every queue's qdisc
/// statistics are the same both ways.
#[test]
fn four_queues_keep_their_statistics_like_one_by_one() {
    let s = Setup {
        queues: 4,
        wire_cap: 3,
        qdisc: "mq pfifo_fast".into(),
        ..plain_setup()
    };
    let far = Some(SocketAddrV4::new(FAR, 9));
    let dests = [near(9), near(10), near(11), near(12), near(13), far];
    let batch: Vec<Msg> = (0..40)
        .map(|k| (100 + 37 * k, dests[k % 6], false))
        .collect();
    let out = both_ways(&s, &[batch.clone(), batch]);
    assert_eq!(out.results, vec![Ok(40); 2]);
    assert_eq!(out.qdiscs.len(), 4);
    let used = out.qdiscs.iter().filter(|(q, _)| q.packets > 0).count();
    assert!(used >= 2, "the flows use several queues: {:?}", out.qdiscs);
}

/// A corked datagram of 70 pieces (more than one batch run of 64) sent in
/// one call, with a datagram before and after it: one datagram of the 70
/// pieces' bytes, fragmented, as one by one.
#[test]
fn a_70_piece_corked_group_is_one_datagram_like_one_by_one() {
    for features in [Features::NONE, Features::SG | Features::HW_CSUM] {
        let s = Setup {
            features,
            ..plain_setup()
        };
        let mut batch = vec![(10, near(9), false)];
        batch.extend((0..70).map(|k| (20 + k, near(9), k < 69)));
        batch.push((10, near(9), false));
        let out = both_ways(&s, &[batch]);
        assert_eq!(out.results, vec![Ok(72)]);
        // 70 * 20 + (0 + ... + 69) = 3815 B: three fragments.
        assert_eq!(out.frames.len(), 1 + 3 + 1);
        assert_eq!(count(&out.mibs, Mib::UdpOutDatagrams), 3);
    }
}

/// A datagram that finds the send budget full is refused as one by one
/// when fragments of the datagram before are still queued behind a driver
/// that refuses without stopping its queue, on another transmit queue:
/// deferred work runs after each datagram (`local_bh_enable`), not before
/// a run that plans none. Found by the property test with a refusing
/// driver on several queues (the run before the one transmit path ran
/// deferred work before falling back to `sendmsg`: `Ok(2)` against
/// `Ok(1)`).
#[test]
fn a_full_send_budget_ends_the_batch_behind_a_refusing_driver() {
    let s = Setup {
        queues: 4,
        qdisc: "mq pfifo_fast".into(),
        busy: Some(Busy {
            every: 2,
            streak: 1,
        }),
        sndbuf: Some(30_000),
        ..plain_setup()
    };
    // 60000 B to 10.9.0.1:9 (queue 1), then 0 B to 10.0.0.2:9 (queue 2).
    let far = Some(SocketAddrV4::new(FAR, 9));
    let batches = vec![vec![(60_000, far, false), (0, near(9), false)]];
    both_ways(&s, &batches);
}

/// Deferred work pending on one queue runs between the datagrams sent on
/// another, as one by one (the kernel's `local_bh_enable` after each
/// `dev_queue_xmit`): the same frames in the same order on the wire. Found
/// by the property test with a refusing driver on several queues (the run
/// before the one transmit path ran deferred work once, at its end).
#[test]
fn deferred_work_runs_between_the_datagrams_of_a_run() {
    let s = Setup {
        queues: 4,
        qdisc: "mq pfifo_fast".into(),
        busy: Some(Busy {
            every: 2,
            streak: 1,
        }),
        ..plain_setup()
    };
    // 30000 B to 10.9.0.1:9 (queue 1), then twice 0 B to 10.0.0.2:9
    // (queue 2).
    let far = Some(SocketAddrV4::new(FAR, 9));
    let batches = vec![vec![
        (30_000, far, false),
        (0, near(9), false),
        (0, near(9), false),
    ]];
    both_ways(&s, &batches);
}

/// `send_batch_fates`: on a wire with room for one frame and a pfifo of
/// two packets, the first datagram leaves (sent), the second is refused by
/// the driver and requeued, the third waits in the qdisc (both queued),
/// the fourth is dropped by the qdisc (counted sent without
/// `IP_RECVERR`: the fate says what `sendmmsg` hides), a corked pair of
/// two messages and a datagram of fragments to an unresolved neighbour wait
/// for resolution (queued), and a datagram a LOCAL_OUT hook drops fails
/// the call there (`EPERM`, which `sendmmsg` loses); the message after it
/// was not sent. Without fates, the same call returns the same count.
#[test]
fn send_batch_fates_tell_what_became_of_each_message() {
    use ipxmit::stats::fate::MsgFate;
    let run = |fates: Option<&mut Vec<MsgFate>>| {
        let (stack, wire) = common::mem_host(common::eth0(), 1, 1);
        stack
            .replace_qdisc("eth0", &"pfifo limit 2".parse().unwrap())
            .unwrap();
        let hook = Arc::new(Filter::DropPort(53));
        stack.hooks().register(HookPoint::LocalOut, hook);
        let mut s = UdpSocket::new(&stack);
        let (a, b) = (vec![1u8; 100], vec![2u8; 3000]);
        let near = Some(SocketAddrV4::new(NEAR, 9));
        let unres = Some(SocketAddrV4::new(UNRESOLVED, 9));
        let dns = Some(SocketAddrV4::new(NEAR, 53));
        let mut corked = BatchMsg::new(&a, unres);
        corked.flags = MsgFlags::MORE;
        let msgs = [
            BatchMsg::new(&a, near),
            BatchMsg::new(&a, near),
            BatchMsg::new(&a, near),
            BatchMsg::new(&a, near),
            corked,
            BatchMsg::new(&a, unres),
            BatchMsg::new(&b, unres),
            BatchMsg::new(&a, dns),
            BatchMsg::new(&a, near),
        ];
        let r = match fates {
            Some(f) => s.send_batch_fates(&msgs, MsgFlags::NONE, f),
            None => s.send_batch(&msgs, MsgFlags::NONE),
        };
        (
            r,
            wire.len(),
            stack.counters().dropped(DropReason::QdiscDrop),
        )
    };
    let mut fates = vec![MsgFate::Sent; 9];
    let got = run(Some(&mut fates));
    assert_eq!(got, run(None), "fates change nothing of the call");
    // The fourth datagram and the neighbour's ARP request: QDISC_DROP.
    assert_eq!(got, (Ok(7), 1, 2));
    assert_eq!(
        fates,
        [
            MsgFate::Sent,
            MsgFate::Queued,
            MsgFate::Queued,
            MsgFate::Dropped(DropReason::QdiscDrop),
            MsgFate::Queued,
            MsgFate::Queued,
            MsgFate::Queued,
            MsgFate::Failed(SendError::Perm),
            MsgFate::NotSent,
        ]
    );
}

/// A batch borrows the socket's cached route and gives it back: between
/// batches the cache holds its reference (one more than the table's and
/// ours), a fitting run and a fragmenting one alike; a route replaced
/// under the socket is looked up anew and then held the same way.
#[test]
fn a_batch_gives_the_cached_route_back() {
    let (stack, wire, mut sock) = host(&plain_setup());
    let to = Some(SocketAddrV4::new(FAR, 9));
    let dst = stack.route_output(FAR).unwrap();
    let alone = Arc::strong_count(&dst);
    for len in [18, 3000, 18] {
        let data = payload(len, len);
        let msgs = vec![BatchMsg::new(&data, to); 8];
        assert_eq!(sock.send_batch(&msgs, MsgFlags::NONE), Ok(8));
        assert_eq!(
            Arc::strong_count(&dst),
            alone + 1,
            "after a {len}-byte batch"
        );
        drain(&stack, &wire, &mut Vec::new());
    }
    let via = RouteSpec::new("10.9.0.0/16".parse().unwrap(), "eth0");
    stack.replace_route(via).unwrap();
    let data = payload(18, 1);
    assert_eq!(
        sock.send_batch(&[BatchMsg::new(&data, to)], MsgFlags::NONE),
        Ok(1)
    );
    assert_eq!(
        Arc::strong_count(&dst),
        alone - 1,
        "the old route is let go"
    );
    let new = stack.route_output(FAR).unwrap();
    assert!(!Arc::ptr_eq(&new, &dst));
    assert_eq!(
        sock.send_batch(&[BatchMsg::new(&data, to)], MsgFlags::NONE),
        Ok(1)
    );
    drain(&stack, &wire, &mut Vec::new());
    assert!(
        Arc::strong_count(&new) >= 3,
        "held by the table, the socket and us"
    );
}
