//! `UdpSocket::send_batch` (sendmmsg) against `send_to` one by one: for random
//! mixes of sizes (fitting the MTU, needing fragments), messages with
//! `MSG_MORE` of their own (corked datagrams), destinations (resolved
//! neighbour, unresolved, unroutable), socket states (connected, every PMTU
//! mode, options, GSO, small `SO_SNDBUF`), MTUs from 68 to 9004, device
//! offloads, qdiscs and a small wire that goes busy (and may keep its frames
//! charged to the socket until drained), both ways put the same frames on the wire — byte for byte, IP IDs compared
//! by their progression — return the same counts and errors, and leave the
//! same counters (every MIB and drop reason, device and qdisc statistics).

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use ipxmit::dev::DevConfig;
use ipxmit::neigh::NudState;
use ipxmit::sched::QdiscSpec;
use ipxmit::socket::udp::BatchMsg;
use ipxmit::stats::Mib;
use ipxmit::wire::EthernetAddress;
use ipxmit::{Features, MsgFlags, PmtuDisc, RouteSpec, SendError, Stack, UdpSocket};
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
    qdisc: &'static str,
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
}

/// SG + checksum offload, pfifo_fast, MTU 1500, a roomy wire, PMTU "want",
/// an unconnected socket with nothing else set.
fn plain_setup() -> Setup {
    Setup {
        features: Features::SG | Features::HW_CSUM,
        qdisc: "pfifo_fast",
        mtu: 1500,
        wire_cap: 1024,
        pmtu: PmtuDisc::Want,
        connected: false,
        options: false,
        gso: 0,
        sndbuf: None,
        keep: false,
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
/// until drained, and stops its queue when full (woken by the drain).
struct KeepWire {
    frames: parking_lot::Mutex<Vec<ipxmit::PacketBuf>>,
    cap: usize,
    stopped: parking_lot::Mutex<Option<Arc<ipxmit::dev::TxQueueCtl>>>,
}

impl KeepWire {
    fn drain(&self, mut f: impl FnMut(&[u8])) -> usize {
        let frames = std::mem::take(&mut *self.frames.lock());
        for p in &frames {
            f(&p.to_vec());
        }
        let n = frames.len();
        drop(frames);
        if let Some(ctl) = self.stopped.lock().take() {
            ctl.wake();
        }
        n
    }
}

/// The driver of a [`KeepWire`].
struct KeepDriver {
    wire: Arc<KeepWire>,
    ctl: Option<Arc<ipxmit::dev::TxQueueCtl>>,
}

impl ipxmit::dev::Driver for KeepDriver {
    fn attach(&mut self, ctl: Arc<ipxmit::dev::TxQueueCtl>) {
        self.ctl = Some(ctl);
    }

    fn start_xmit(&mut self, pkt: ipxmit::PacketBuf, _more: bool) -> ipxmit::dev::TxStatus {
        let mut frames = self.wire.frames.lock();
        if frames.len() >= self.wire.cap {
            if let Some(c) = &self.ctl {
                c.stop();
                *self.wire.stopped.lock() = Some(c.clone());
            }
            return ipxmit::dev::TxStatus::Busy(pkt);
        }
        frames.push(pkt);
        ipxmit::dev::TxStatus::Ok
    }
}

/// [`common::mem_host`] with a [`KeepWire`] of `cap` frames.
fn keep_host(cfg: DevConfig, cap: usize) -> (Arc<Stack>, Arc<KeepWire>) {
    let wire = Arc::new(KeepWire {
        frames: parking_lot::Mutex::new(Vec::new()),
        cap,
        stopped: parking_lot::Mutex::new(None),
    });
    let drv = KeepDriver {
        wire: wire.clone(),
        ctl: None,
    };
    (common::driver_stack(Box::new(drv), cfg, None), wire)
}

fn host(s: &Setup) -> (Arc<Stack>, Wire, UdpSocket) {
    let mut cfg = common::eth0();
    cfg.mtu = s.mtu;
    cfg.features = s.features;
    let (stack, wire) = if s.keep {
        let (st, w) = keep_host(cfg, s.wire_cap);
        (st, Wire::Keep(w))
    } else {
        let (st, w) = common::mem_host(cfg, 1, s.wire_cap);
        (st, Wire::Mem(w))
    };
    stack
        .replace_qdisc("eth0", &s.qdisc.parse::<QdiscSpec>().unwrap())
        .unwrap();
    let mut far = RouteSpec::new("10.9.0.0/16".parse().unwrap(), "eth0");
    far.via = Some(NEAR);
    stack.add_route(far).unwrap();
    let mac = EthernetAddress([2, 0, 0, 0, 0, 2]);
    stack
        .add_neigh("eth0", NEAR, mac, NudState::Permanent)
        .unwrap();
    let mut sock = UdpSocket::new(&stack);
    sock.bind(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 4000))
        .unwrap();
    sock.set_mtu_discover(s.pmtu);
    sock.set_gso_size(u32::from(s.gso)).unwrap();
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

fn payload(len: usize, k: usize) -> Vec<u8> {
    (0..len).map(|i| ((13 * i + 7 * k) % 251) as u8).collect()
}

/// Everything observable after a run.
#[derive(Debug, PartialEq)]
struct Outcome {
    results: Vec<Result<usize, SendError>>,
    frames: Vec<Vec<u8>>,
    id_steps: Vec<i32>,
    mibs: Vec<(Mib, u64)>,
    drops: Vec<(ipxmit::stats::DropReason, u64)>,
    dev: String,
    qdisc: String,
    budget_left: usize,
}

/// Frames with the IP ID and header checksum masked (the checksum verified
/// first); the IDs as steps from
/// the first of the same destination and DF bit (the per-destination
/// counters start at random points per stack, as in the kernel).
fn normalize(raw: Vec<Vec<u8>>) -> (Vec<Vec<u8>>, Vec<i32>) {
    let mut first = std::collections::HashMap::new();
    let mut steps = Vec::new();
    let frames = raw
        .into_iter()
        .map(|mut f| {
            if f.len() >= 34 && f[12..14] == [8, 0] {
                let hlen = usize::from(f[14] & 0x0f) * 4;
                let mut c = internet_checksum::Checksum::new();
                c.add_bytes(&f[14..14 + hlen]);
                assert_eq!(c.checksum(), [0, 0], "IP header checksum verifies");
                let id = i32::from(u16::from_be_bytes([f[18], f[19]]));
                let key = (f[30..34].to_vec(), f[20] & 0x40);
                let base = *first.entry(key).or_insert(id);
                steps.push((id - base).rem_euclid(65536));
                f[18..20].fill(0);
                f[24..26].fill(0);
            }
            f
        })
        .collect();
    (frames, steps)
}

fn outcome(
    stack: &Stack,
    wire: &Wire,
    sock: &UdpSocket,
    results: Vec<Result<usize, SendError>>,
    frames: Vec<Vec<u8>>,
) -> Outcome {
    let (frames, id_steps) = normalize(frames);
    let dev = stack.device("eth0").unwrap();
    let _ = wire;
    Outcome {
        results,
        frames,
        id_steps,
        mibs: stack.counters().mib_snapshot(),
        drops: stack.counters().drop_snapshot(),
        dev: format!("{:?}", dev.stats.snapshot()),
        qdisc: format!(
            "{:?}",
            dev.queues()[0].with_qdisc(|q| format!("{:?}", q.stats()))
        ),
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

fn one_by_one(s: &Setup, batches: &[Vec<Msg>]) -> Outcome {
    let (stack, wire, mut sock) = host(s);
    let (mut results, mut frames) = (Vec::new(), Vec::new());
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
        results.push(match err {
            Some(e) if sent == 0 => Err(e),
            _ => Ok(sent),
        });
        drain(&stack, &wire, &mut frames);
    }
    outcome(&stack, &wire, &sock, results, frames)
}

fn batched(s: &Setup, batches: &[Vec<Msg>]) -> Outcome {
    let (stack, wire, mut sock) = host(s);
    let (mut results, mut frames) = (Vec::new(), Vec::new());
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
        results.push(sock.send_batch(&msgs, MsgFlags::DONTWAIT));
        drain(&stack, &wire, &mut frames);
    }
    outcome(&stack, &wire, &sock, results, frames)
}

fn dest_strategy(connected: bool) -> impl Strategy<Value = Option<SocketAddrV4>> {
    let named = prop_oneof![
        8 => Just(NEAR),
        2 => Just(FAR),
        1 => Just(UNRESOLVED),
        1 => Just(UNROUTABLE),
    ]
    .prop_map(|a| Some(SocketAddrV4::new(a, 9)));
    if connected {
        prop_oneof![3 => Just(None), 1 => named].boxed()
    } else {
        named.boxed()
    }
}

fn msg_strategy(connected: bool) -> impl Strategy<Value = Msg> {
    let len = prop_oneof![
        4 => 0usize..=64,
        4 => 1400usize..=1472,
        1 => 1473usize..=9000,
    ];
    let piece = prop_oneof![3 => Just(false), 1 => Just(true)];
    (len, dest_strategy(connected), piece)
}

fn setup_strategy() -> impl Strategy<Value = Setup> {
    let features = prop_oneof![
        Just(Features::NONE),
        Just(Features::SG),
        Just(Features::HW_CSUM),
        Just(Features::SG | Features::HW_CSUM),
    ];
    let qdisc = prop_oneof![
        4 => Just("pfifo_fast"),
        1 => Just("pfifo limit 5"),
        1 => Just("noqueue"),
    ];
    let pmtu = prop_oneof![
        4 => Just(PmtuDisc::Want),
        2 => Just(PmtuDisc::Dont),
        2 => Just(PmtuDisc::Do),
        1 => Just(PmtuDisc::Probe),
        1 => Just(PmtuDisc::Interface),
        1 => Just(PmtuDisc::Omit),
    ];
    let mtu = prop_oneof![
        6 => Just(1500u32),
        2 => 576u32..=9000,
        1 => Just(9004u32),
        1 => 68u32..576,
    ];
    let wire_cap = prop_oneof![3 => Just(1024usize), 1 => 2usize..=8];
    let rare = prop_oneof![6 => Just(false), 1 => Just(true)];
    let gso = prop_oneof![6 => Just(0u16), 1 => Just(1000u16)];
    let sndbuf = prop_oneof![3 => Just(None), 1 => (2000usize..40_000).prop_map(Some)];
    let keep = prop_oneof![3 => Just(false), 1 => Just(true)];
    (
        (features, qdisc, mtu, wire_cap, keep),
        (pmtu, any::<bool>(), rare, gso, sndbuf),
    )
        .prop_map(
            |((features, qdisc, mtu, wire_cap, keep), (pmtu, connected, options, gso, sndbuf))| {
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
                }
            },
        )
}

fn case_strategy() -> impl Strategy<Value = (Setup, Vec<Vec<Msg>>)> {
    setup_strategy().prop_flat_map(|s| {
        let batch = prop::collection::vec(msg_strategy(s.connected), 1..=80);
        (Just(s), prop::collection::vec(batch, 1..=4))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn send_batch_equals_send_to_one_by_one((setup, batches) in case_strategy()) {
        let a = one_by_one(&setup, &batches);
        let b = batched(&setup, &batches);
        prop_assert_eq!(&a.results, &b.results);
        prop_assert_eq!(a.frames.len(), b.frames.len());
        for (i, (x, y)) in a.frames.iter().zip(&b.frames).enumerate() {
            prop_assert_eq!(x, y, "frame {} differs", i);
        }
        prop_assert_eq!(a, b);
    }
}

/// eth0 10.0.0.1/24 with `features` on the one queue of driver `drv`
/// (and root qdisc `qdisc` when given), 10.0.0.2 a permanent neighbour,
/// and an unbound socket.
fn driver_host(
    drv: Box<dyn ipxmit::dev::Driver>,
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

impl ipxmit::dev::Driver for Recorder {
    fn start_xmit(&mut self, pkt: ipxmit::PacketBuf, more: bool) -> ipxmit::dev::TxStatus {
        self.0.lock().push((pkt.len(), more));
        ipxmit::dev::TxStatus::Ok
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
        qdisc: "pfifo limit 100",
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
    ctl: Option<Arc<ipxmit::dev::TxQueueCtl>>,
    log: Arc<parking_lot::Mutex<(Vec<usize>, bool)>>,
}

impl ipxmit::dev::Driver for StopAfter {
    fn attach(&mut self, ctl: Arc<ipxmit::dev::TxQueueCtl>) {
        self.ctl = Some(ctl);
    }

    fn start_xmit(&mut self, pkt: ipxmit::PacketBuf, more: bool) -> ipxmit::dev::TxStatus {
        let mut log = self.log.lock();
        log.0.push(pkt.len());
        log.1 = more;
        self.left = self.left.saturating_sub(1);
        if let (0, Some(c)) = (self.left, &self.ctl) {
            c.stop();
        }
        ipxmit::dev::TxStatus::Ok
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
        qdisc: "noqueue",
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
        qdisc: "noqueue",
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
    (normalize(frames).0, results)
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
