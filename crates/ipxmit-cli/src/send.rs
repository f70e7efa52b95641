//! `ipxmit send`: a UDP workload on a one-device host.
//!
//! The embedded default host is `eth0` (10.0.0.1/24, 02:00:00:00:00:01) on an
//! in-memory wire whose far end is a verifying peer (10.0.0.2, 02:00:00:00:00:02)
//! that reassembles fragments and checks every checksum and payload byte.
//! Payloads are deterministic: byte `i` of datagram `k` is `(7*i + k) mod 256`.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as WallInstant};

use anyhow::{bail, Context, Result};
use ipxmit::dev::DevConfig;
use ipxmit::neigh::NudState;
use ipxmit::sched::QdiscSpec;
use ipxmit::wire::EthernetAddress;
use ipxmit::{BatchMsg, Features, MsgFlags, PmtuDisc, RouteSpec, SendError, Stack, UdpSocket};
use ipxmit_drivers::capture::{PcapDriver, PcapTap};
use ipxmit_drivers::mem::MemWire;
use ipxmit_drivers::null::NullCounters;
use ipxmit_drivers::pattern::{self, Check};
use ipxmit_drivers::peer::{Peer, PeerConfig, Received};
use serde_json::json;
use verify::Verifier;

use crate::progress::Progress;
use crate::report;
use crate::values;

/// Our address on the embedded host.
pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The embedded peer's address.
pub const PEER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const HOST_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const PEER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

mod outcome;
mod verify;

/// Options of `ipxmit send`.
#[derive(clap::Args, Debug, Clone)]
pub struct SendArgs {
    /// Destination `ADDR[:PORT]` (port 9000 when absent).
    #[arg(short = 'c', long, default_value = "10.0.0.2:9000", value_parser = dst_arg)]
    pub dst: SocketAddrV4,
    /// UDP payload bytes per datagram (0..=65535), or a mix used in turn
    /// ("18,1472,8000").
    #[arg(short = 'l', long, default_value = "1472", allow_hyphen_values = true)]
    pub size: String,
    /// Datagrams to send (ignored with -t).
    #[arg(short = 'n', long, default_value_t = 10_000)]
    pub count: u64,
    /// Send for this long instead of a count: seconds, as iperf3's `-t`
    /// (`10`, `2.5`), or with tc's time units (`300ms`, `2s`).
    #[arg(short = 't', long, value_parser = values::run_time)]
    pub time: Option<Duration>,
    /// Payload rate limit (tc rate units: 100mbit, 1gbit): each datagram
    /// leaves when the payload before it is due, one at a time.
    #[arg(short = 'b', long)]
    pub rate: Option<String>,
    /// Send each datagram in pieces with MSG_MORE: "8x1000" or "500,500,472".
    #[arg(long)]
    pub more: Option<String>,
    /// Datagrams per call: more than 1 sends them with `send_batch` (the
    /// library's sendmmsg), 1..=1024.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Device MTU.
    #[arg(long, default_value_t = 1500)]
    pub mtu: u32,
    /// Root qdisc, tc syntax ("pfifo limit 100", "noqueue").
    #[arg(long)]
    pub qdisc: Option<String>,
    /// IP_TOS (e.g. 0xb8).
    #[arg(long)]
    pub tos: Option<String>,
    /// IP_TTL: 1..=255.
    #[arg(long, value_parser = values::ttl)]
    pub ttl: Option<u8>,
    /// IP_MTU_DISCOVER: dont|want|do|probe|interface|omit.
    #[arg(long)]
    pub pmtudisc: Option<String>,
    /// UDP_SEGMENT (GSO) segment size.
    #[arg(long)]
    pub gso: Option<u32>,
    /// Number of sockets (flows), used in turn: 1..=65536.
    #[arg(long, default_value = "1", value_parser = values::sockets)]
    pub sockets: usize,
    /// Sender threads, each with its own share of the sockets and of the
    /// datagrams, all sharing the one stack (the wire's consumer and the peer
    /// run on the main thread): 1..=256.
    #[arg(long, default_value = "1", value_parser = values::threads)]
    pub threads: usize,
    /// Transmit queues of the device: 1..=4096 (the kernel's bound).
    /// Default: one per sender thread (`--threads`) on a device ipxmit
    /// makes (mem, null, pcap); one on a Linux device (tap:, packet:,
    /// xdp:), whose queues exist already (a single-queue TAP cannot be
    /// opened multi-queue). With several threads
    /// and queues each thread sends on a queue of its own (XPS: thread `i`
    /// on queue `i % N`, as multi-queue drivers map CPUs).
    #[arg(long, value_parser = values::txqueues)]
    pub txqueues: Option<usize>,
    /// Device offloads: comma list of sg,csum,gso,ufo (tap:NAME asks the
    /// kernel with TUNSETOFFLOAD; packet:IFACE turns on PACKET_VNET_HDR).
    #[arg(long)]
    pub offload: Option<String>,
    /// Device: mem (in-memory wire with the verifying peer), null (counts and
    /// frees), pcap:FILE (frames only to a capture file), tap:NAME (a Linux TAP
    /// device), packet:IFACE (a Linux interface through AF_PACKET),
    /// xdp:IFACE[:QUEUE] (a Linux interface through AF_XDP, from hardware
    /// queue QUEUE on, zero-copy where its driver has it).
    #[arg(long, default_value = "mem")]
    pub dev: String,
    /// With --dev packet:IFACE: send through a PACKET_TX_RING of this many
    /// slots (with byte queue limits) instead of sendmmsg batches. With
    /// --dev xdp:IFACE: the TX ring's entries (a power of two).
    #[arg(long, value_name = "FRAMES", value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub tx_ring: Option<u32>,
    /// With --tx-ring and --dev packet:IFACE: the ring's slot headers,
    /// TPACKET_V2 or TPACKET_V3 (2 or 3).
    #[arg(long, value_name = "2|3", default_value = "3", value_parser = crate::script::parse::tpacket_version)]
    pub tpacket: ipxmit_drivers::packet::TpacketVersion,
    /// Also capture every frame the device sends (pcap, or pcapng by extension).
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// Print every MIB counter, not only the non-zero ones.
    #[arg(long)]
    pub all: bool,
    /// Machine-readable output: one JSON object.
    #[arg(long)]
    pub json: bool,
    /// At the end, a dropwatch-like summary: each place packets were
    /// dropped, how many, the reason and the kernel function it mirrors
    /// (`"drops"` in the JSON object).
    #[arg(long)]
    pub drops: bool,
    /// After the last send, wait at most this long (tc time units) for
    /// neighbours to resolve and queues to drain before the summary.
    #[arg(long, default_value = "2s", value_name = "TIME")]
    pub linger: String,
}

impl SendArgs {
    /// The embedded default (what `ipxmit` with no arguments runs): the defaults
    /// plus a capture in `ipxmit.pcap`.
    pub fn default_args() -> SendArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct W {
            #[command(flatten)]
            a: SendArgs,
        }
        let mut a = W::parse_from(["ipxmit"]).a;
        a.pcap = Some(PathBuf::from("ipxmit.pcap"));
        a
    }
}

/// The parsed workload.
struct Plan {
    dst: SocketAddrV4,
    sizes: Vec<usize>,
    pieces: Option<Vec<usize>>,
    count: u64,
    duration: Option<Duration>,
    rate_bps: Option<u64>,
    batch: usize,
}

/// `-l`: sizes of 0..=65535 bytes (above 65,507 each send answers
/// `EMSGSIZE`, as the kernel's `udp_sendmsg` does).
fn parse_sizes(s: &str) -> Result<Vec<usize>> {
    s.split(',')
        .map(|x| {
            values::number_in(x, 0, 65_535)
                .map(|n| n as usize)
                .map_err(|e| anyhow::anyhow!("-l: invalid payload size {}: {e}", values::quote(x)))
        })
        .collect()
}

/// "8x1000" or "500,500,472".
fn parse_pieces(s: &str) -> Result<Vec<usize>> {
    if let Some((n, sz)) = s.split_once('x') {
        let n: usize = n
            .parse()
            .with_context(|| format!("invalid piece count in {s:?}"))?;
        let sz: usize = sz
            .parse()
            .with_context(|| format!("invalid piece size in {s:?}"))?;
        if n == 0 || n > 1024 {
            bail!("piece count must be 1..=1024 in {s:?}");
        }
        return Ok(vec![sz; n]);
    }
    parse_sizes(s)
}

/// `-c ADDR[:PORT]`, port 9000 when absent.
fn dst_arg(s: &str) -> Result<SocketAddrV4, values::ValueError> {
    values::sockaddr(s, 9000)
}

fn plan(a: &SendArgs) -> Result<Plan> {
    let pieces = a.more.as_deref().map(parse_pieces).transpose()?;
    let sizes = match &pieces {
        Some(p) => vec![p.iter().sum()],
        None => parse_sizes(&a.size)?,
    };
    let duration = a.time;
    let rate_bps = a
        .rate
        .as_deref()
        .map(|r| ipxmit::units::parse_rate(r).map_err(|e| anyhow::anyhow!("-b: {e}")))
        .transpose()?;
    if !(1..=1024).contains(&a.batch) {
        bail!("--batch {}: must be 1..=1024", a.batch);
    }
    if a.batch > 1 && pieces.is_some() {
        bail!("--batch and --more do not go together (a batch is of whole datagrams)");
    }
    Ok(Plan {
        batch: a.batch,
        dst: a.dst,
        sizes,
        pieces,
        count: a.count,
        duration,
        rate_bps,
    })
}

fn parse_features(s: &str) -> Result<Features> {
    let mut f = Features::NONE;
    for w in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let (_, v) = Features::NAMES
            .iter()
            .find(|(n, _)| *n == w)
            .with_context(|| {
                format!("unknown offload {w:?} (sg, csum, ipcsum, gso, fraglist, ufo)")
            })?;
        f = f | *v;
    }
    Ok(f)
}

/// A capture tap writing to a file.
type FileTap = PcapTap<io::BufWriter<std::fs::File>>;

/// The embedded host: its stack, its wire, its capture.
type Host = (Arc<Stack>, Wire, Option<Arc<FileTap>>);

/// The wire the device sends onto.
enum Wire {
    Mem(Arc<MemWire>, Box<Verifier>),
    Null,
    File,
    /// A Linux device: the kernel is the far end.
    Os,
}

/// `tap:NAME`, `packet:IFACE` or `xdp:IFACE[:QUEUE]`.
fn os_device(dev: &str) -> Option<(crate::script::parse::LinkKind, &str)> {
    use crate::script::parse::LinkKind;
    if let Some(n) = dev.strip_prefix("tap:") {
        return Some((LinkKind::Tap, n));
    }
    if let Some(n) = dev.strip_prefix("xdp:") {
        return Some((LinkKind::Xdp, n));
    }
    dev.strip_prefix("packet:").map(|n| (LinkKind::Packet, n))
}

/// The drivers of the `--dev` device and what is at its far end.
fn make_wire(
    a: &SendArgs,
    p: &Plan,
    stack: &Stack,
    n: usize,
    features: &mut Features,
) -> Result<(Vec<Box<dyn ipxmit::Driver>>, Wire)> {
    if a.tx_ring.is_some() && !a.dev.starts_with("packet:") && !a.dev.starts_with("xdp:") {
        bail!(
            "--tx-ring needs --dev packet:IFACE or xdp:IFACE, not {:?}",
            a.dev
        );
    }
    Ok(if a.dev == "mem" {
        // The kernel's in-memory link, a veth, hands each frame to the
        // receiving CPU's backlog, `netdev_max_backlog` (1000) frames per
        // CPU: so many per transmit queue here. (8192 let a descheduled
        // drain leave up to 16 MiB of frames on the wire, freed and taken
        // again: the soak's RSS swung by 13 MiB.)
        let w = MemWire::new(ipxmit::dev::loopback::NETDEV_MAX_BACKLOG * n);
        // The peer is 10.0.0.2 and answers ARP for it alone (a mistyped
        // on-link destination stays unresolved); it stands for the gateway
        // of routed destinations, whose datagrams reach its MAC.
        let mut cfg = PeerConfig::new(PEER_ADDR, PEER_MAC);
        cfg.gateway = (u32::from(*p.dst.ip()) >> 8) != (u32::from(HOST_ADDR) >> 8);
        // `ipfrag_max_dist` off (sysctl 0): the transmit queues interleave
        // their frames on the one wire, and a sender thread descheduled in
        // the middle of a fragment train lets any number of other frames
        // come between two of its fragments: at 1024 (and at 64), 3 of
        // 40,000 datagrams of `tests/send.rs` threads_share_the_stack
        // (4 threads, nothing dropped) were emptied as too far and judged
        // unexplained. The payload pattern's signatures guard against IP
        // ID reuse instead (see `verify`).
        cfg.max_dist = 0;
        let v = Verifier::new(Peer::new(cfg));
        (w.drivers(n), Wire::Mem(w, Box::new(v)))
    } else if a.dev == "null" {
        let c = NullCounters::new();
        (c.drivers(n), Wire::Null)
    } else if let Some(path) = a.dev.strip_prefix("pcap:") {
        let d = PcapDriver::create(
            path.as_ref(),
            ipxmit::LinkType::Ethernet,
            "eth0",
            n,
            stack.clock(),
        )
        .with_context(|| format!("cannot create capture file {path}"))?;
        (d, Wire::File)
    } else if let Some((kind, name)) = os_device(&a.dev) {
        let ring = a.tx_ring.map(|r| r as usize);
        let (d, granted) =
            crate::script::links::os_drivers(&kind, name, n, *features, ring, Some(a.tpacket))?;
        *features = granted;
        (d, Wire::Os)
    } else {
        bail!(
            "unknown device {:?} (mem, null, pcap:FILE, tap:NAME, packet:IFACE, xdp:IFACE[:QUEUE])",
            a.dev
        );
    })
}

/// Builds the embedded host: device, address, route to the destination,
/// static neighbour for the peer, qdisc, capture.
fn build_host(a: &SendArgs, p: &Plan) -> Result<Host> {
    let stack = Stack::new();
    let mut cfg = DevConfig::ethernet("eth0", HOST_MAC);
    cfg.mtu = a.mtu;
    cfg.features = a
        .offload
        .as_deref()
        .map(parse_features)
        .transpose()?
        .unwrap_or(Features::NONE);
    let own = os_device(&a.dev).is_none();
    let n = a.txqueues.unwrap_or(if own { a.threads.max(1) } else { 1 });
    let (drivers, wire) = make_wire(a, p, &stack, n, &mut cfg.features)?;
    stack.add_device(cfg, drivers)?;
    if let Wire::Mem(_, v) = &wire {
        v.attach(&*stack.device("eth0")?);
    }
    if n > 1 && a.threads > 1 {
        stack.device("eth0")?.set_xps_default();
    }
    stack.add_addr("eth0", "10.0.0.1/24".parse()?)?;
    let nexthop = if (u32::from(*p.dst.ip()) >> 8) == (u32::from(HOST_ADDR) >> 8) {
        *p.dst.ip()
    } else {
        let mut r = RouteSpec::new("0.0.0.0/0".parse()?, "eth0");
        r.via = Some(PEER_ADDR);
        stack.add_route(r)?;
        PEER_ADDR
    };
    if matches!(wire, Wire::Null | Wire::File) {
        // No peer answers ARP on these devices: a static entry, as `ip neigh
        // add ... nud permanent` would give.
        stack.add_neigh("eth0", nexthop, PEER_MAC, NudState::Permanent)?;
    }
    if let Some(q) = &a.qdisc {
        let spec: QdiscSpec = q.parse().map_err(|e| anyhow::anyhow!("--qdisc: {e}"))?;
        stack.replace_qdisc("eth0", &spec)?;
    }
    let tap = match &a.pcap {
        Some(path) => {
            let dev = stack.device("eth0")?;
            let t = PcapTap::create(path, &dev, stack.now())
                .with_context(|| format!("cannot create {}", path.display()))?;
            dev.add_tap(t.clone());
            Some(t)
        }
        None => None,
    };
    Ok((stack, wire, tap))
}

fn open_sockets(stack: &Arc<Stack>, a: &SendArgs, n: usize) -> Result<Vec<UdpSocket>> {
    let mut v = Vec::new();
    for _ in 0..n.clamp(1, 4096) {
        let mut s = UdpSocket::new(stack);
        s.bind(SocketAddrV4::new(HOST_ADDR, 0))?;
        if let Some(t) = &a.tos {
            let v = crate::script::parse::parse_num(t)
                .ok()
                .and_then(|v| u8::try_from(v).ok())
                .with_context(|| format!("invalid --tos {t:?} (0..255, or hex 0xb8)"))?;
            s.set_tos(v);
        }
        s.set_ttl(a.ttl)?;
        if let Some(m) = &a.pmtudisc {
            s.set_mtu_discover(m.parse::<PmtuDisc>().map_err(anyhow::Error::msg)?);
        }
        if let Some(g) = a.gso {
            s.set_gso_size(g)?;
        }
        v.push(s);
    }
    Ok(v)
}

/// Counts of one run.
#[derive(Default)]
struct Tally {
    datagrams: u64,
    payload: u64,
    errors: std::collections::BTreeMap<&'static str, u64>,
    verified: u64,
    bad_payload: u64,
    /// Delivered payloads of two datagrams that shared an IP ID.
    mixed: u64,
    reassembled: u64,
    elapsed: Duration,
    /// `--gso` segment size (0: none).
    gso: usize,
    /// Datagrams the sent ones become on the wire (GSO segments each).
    segments: u64,
    /// IPv4 frames taken off the in-memory wire.
    wire_ip: u64,
    /// The drain wait: how long, and whether everything drained.
    wait: (Duration, bool),
}

impl Tally {
    /// Counts a refused send under its errno's name.
    fn error(&mut self, e: &SendError) {
        *self.errors.entry(e.errno().name()).or_default() += 1;
    }

    /// Counts a sent datagram of `len` payload bytes.
    fn sent(&mut self, len: usize) {
        self.datagrams += 1;
        self.payload += len as u64;
        self.segments += if self.gso > 0 && len > self.gso {
            len.div_ceil(self.gso) as u64
        } else {
            1
        };
    }

    /// Adds a sender thread's counts.
    fn add(&mut self, o: Tally) {
        self.datagrams += o.datagrams;
        self.segments += o.segments;
        self.payload += o.payload;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

/// Payload bytes: datagram `k`'s is [`pattern::fill`]'s (every 8-byte
/// word names `k` and its place, so that the peer tells fragments of
/// datagrams sharing an IP ID apart), written for each datagram of a batch
/// into a buffer of its own, allocated once.
struct Pattern {
    buf: Vec<u8>,
    max: usize,
}

impl Pattern {
    /// Room for `batch` datagrams of up to `max` bytes.
    fn new(max: usize, batch: usize) -> Pattern {
        Pattern {
            buf: vec![0; max * batch.max(1)],
            max,
        }
    }

    /// Writes datagram `k`'s payload of `len` bytes into place `i`.
    fn write(&mut self, i: usize, k: u64, len: usize) {
        let at = i * self.max;
        pattern::fill(k, &mut self.buf[at..at + len]);
    }

    /// The payload of `len` bytes written into place `i`.
    fn get(&self, i: usize, len: usize) -> &[u8] {
        &self.buf[i * self.max..i * self.max + len]
    }
}

fn send_one(s: &mut UdpSocket, p: &Plan, data: &[u8]) -> Result<(), SendError> {
    let Some(pieces) = &p.pieces else {
        return s.send_to(data, p.dst, MsgFlags::NONE).map(|_| ());
    };
    let mut at = 0;
    for (i, &n) in pieces.iter().enumerate() {
        let flags = if i + 1 < pieces.len() {
            MsgFlags::MORE
        } else {
            MsgFlags::NONE
        };
        s.send_to(&data[at..at + n], p.dst, flags)?;
        at += n;
    }
    Ok(())
}

fn drain_wire(wire: &mut Wire, stack: &Stack, t: &mut Tally) {
    let Wire::Mem(w, v) = wire else {
        if matches!(wire, Wire::Os) {
            stack.poll_rx(64);
        }
        return;
    };
    if w.is_empty() {
        return;
    }
    let now = stack.now();
    let dev = stack.device_by_index(2);
    w.drain(|f| {
        let peer = &mut v.peer;
        t.wire_ip += u64::from(f.linear().get(12..14) == Some(&[8, 0]));
        // The NIC's part (GSO, checksum offload) first, as on a script's
        // `mem` link.
        peer.receive_packet(f, now, |r| match r {
            Received::Datagram(d) => {
                match pattern::check(&d.payload) {
                    Check::Intact(_) => t.verified += 1,
                    Check::Mixed => t.mixed += 1,
                    Check::Corrupt => t.bad_payload += 1,
                }
                if d.fragments > 1 {
                    t.reassembled += 1;
                }
            }
            Received::ArpRequest { reply } => {
                if let Some(dev) = &dev {
                    stack.receive(dev, &reply);
                }
            }
            _ => {}
        });
    });
}

/// What one sender sends: every `stride`-th datagram starting at `first`.
#[derive(Clone, Copy)]
struct Share {
    first: u64,
    stride: u64,
    count: u64,
    rate_bps: Option<u64>,
}

impl Share {
    /// The `j`-th datagram of the share: its index in the plan, its size.
    fn nth(&self, p: &Plan, j: u64) -> (u64, usize) {
        let k = self.first + j * self.stride;
        (k, p.sizes[(k % p.sizes.len() as u64) as usize])
    }

    /// Share `i` of `n` of the plan.
    fn of(p: &Plan, i: u64, n: u64) -> Share {
        Share {
            first: i,
            stride: n,
            count: p.count / n + u64::from(i < p.count % n),
            rate_bps: p.rate_bps.map(|r| r / n),
        }
    }
}

/// Sends the `j`-th datagram of a share (and, with `--batch`, the ones after
/// it in one call); returns how many of the share's datagrams were used, 0
/// when the share is done.
fn send_next(
    p: &Plan,
    sh: &Share,
    j: u64,
    socks: &mut [UdpSocket],
    pat: &mut Pattern,
    t: &mut Tally,
    start: WallInstant,
) -> u64 {
    if outcome::interrupted()
        || p.duration.map_or(j >= sh.count, |d| {
            j % 256 < p.batch as u64 && start.elapsed() >= d
        })
    {
        return 0;
    }
    if let Some(rate) = sh.rate_bps.filter(|&r| r > 0) {
        // `-b`: each datagram when the payload before it is due, one at a
        // time (a batch would leave as a burst).
        pace_until(rate, t, start);
    } else if p.batch > 1 {
        return send_batch(p, sh, j, socks, pat, t);
    }
    let (k, len) = sh.nth(p, j);
    let n = socks.len() as u64;
    pat.write(0, k, len);
    match send_one(&mut socks[(j % n) as usize], p, pat.get(0, len)) {
        Ok(()) => t.sent(len),
        Err(e) => t.error(&e),
    }
    1
}

/// Up to `--batch` datagrams of a share in one `send_batch` on one socket.
/// A failure after the first ends the call early; the failing datagram then
/// leads the next call, which reports its error.
fn send_batch(
    p: &Plan,
    sh: &Share,
    j: u64,
    socks: &mut [UdpSocket],
    pat: &mut Pattern,
    t: &mut Tally,
) -> u64 {
    let left = if p.duration.is_some() {
        p.batch as u64
    } else {
        (sh.count - j).min(p.batch as u64)
    };
    for i in j..j + left {
        let (k, len) = sh.nth(p, i);
        pat.write((i - j) as usize, k, len);
    }
    let mut msgs = Vec::with_capacity(left as usize);
    for i in j..j + left {
        let len = sh.nth(p, i).1;
        msgs.push(BatchMsg::new(pat.get((i - j) as usize, len), Some(p.dst)));
    }
    let n = socks.len() as u64;
    match socks[((j / p.batch as u64) % n) as usize].send_batch(&msgs, MsgFlags::NONE) {
        Ok(m) => {
            msgs[..m].iter().for_each(|m| t.sent(m.data.len()));
            m as u64
        }
        Err(e) => {
            t.error(&e);
            1
        }
    }
}

/// The send loop on one thread: round-robin over sockets, pacing, draining
/// the wire after every datagram.
fn workload(
    a: &SendArgs,
    p: &Plan,
    stack: &Stack,
    socks: &mut [UdpSocket],
    wire: &mut Wire,
) -> Tally {
    let mut pat = Pattern::new(p.sizes.iter().copied().max().unwrap_or(0), p.batch);
    let mut t = Tally {
        gso: a.gso.unwrap_or(0) as usize,
        ..Tally::default()
    };
    let mut prog = Progress::new(a.json, p.count, p.duration);
    let start = WallInstant::now();
    let sh = Share::of(p, 0, 1);
    let (mut j, mut next_report) = (0u64, 256u64);
    loop {
        let used = send_next(p, &sh, j, socks, &mut pat, &mut t, start);
        if used == 0 {
            break;
        }
        j += used;
        drain_wire(wire, stack, &mut t);
        if j == used {
            // Resolve the first datagram's neighbour (bounded) before the
            // rest overflow its queue: a TAP's ARP reply takes a moment.
            outcome::linger(stack, FIRST_NEIGH_WAIT, || drain_wire(wire, stack, &mut t));
        }
        if j >= next_report {
            next_report = j + 256;
            pace(sh.rate_bps, &t, start);
            prog.update(t.datagrams, t.payload);
        }
    }
    t.elapsed = start.elapsed();
    prog.finish();
    let limit = linger_limit(a);
    t.wait = outcome::linger(stack, limit, || drain_wire(wire, stack, &mut t));
    t
}

/// True when a neighbour entry is connected: sender 0's first datagram
/// resolved its next hop (on a TAP, the kernel answered the ARP request).
fn neigh_resolved(stack: &Stack) -> bool {
    let n = stack.neighbours().entries();
    n.iter()
        .any(|e| e.state().is_connected() && e.queued() == 0)
}

/// How long the first datagram may wait for its neighbour before the rest:
/// long enough for the second probe (1 s after the first; a TAP just
/// attached may lose the first exchange, the kernel activating its side's
/// qdisc up to a second later), short of the third (failure at 3 s).
const FIRST_NEIGH_WAIT: Duration = Duration::from_secs(2);

/// `--linger` (an unparsable value was refused before the run).
fn linger_limit(a: &SendArgs) -> Duration {
    ipxmit::units::parse_time(&a.linger).unwrap_or(Duration::from_secs(2))
}

/// One sender thread: its own sockets, its share of the datagrams.
fn sender(
    a: &SendArgs,
    p: &Plan,
    stack: &Arc<Stack>,
    sh: Share,
    sent: &[AtomicU64; 2],
    gate: &AtomicBool,
    start: WallInstant,
) -> Result<Tally> {
    let mut pat = Pattern::new(p.sizes.iter().copied().max().unwrap_or(0), p.batch);
    let mut socks = open_sockets(stack, a, (a.sockets / sh.stride as usize).max(1))?;
    let mut t = Tally {
        gso: a.gso.unwrap_or(0) as usize,
        ..Tally::default()
    };
    let (mut j, mut reported, mut sent_dg) = (0u64, 0u64, 0u64);
    // Sender 0 sends one datagram; everybody waits until it resolved the
    // neighbour, so the others do not overflow its unresolved queue.
    if sh.first != 0 {
        wait_gate(gate);
    }
    let mut next_report = 64u64;
    loop {
        let used = send_next(p, &sh, j, &mut socks, &mut pat, &mut t, start);
        if used == 0 {
            break;
        }
        if j == 0 {
            wait_gate(gate);
        }
        j += used;
        if j >= next_report {
            next_report = j + 64;
            sent[0].fetch_add(t.datagrams - sent_dg, Ordering::Relaxed);
            sent_dg = t.datagrams;
            sent[1].fetch_add(t.payload - reported, Ordering::Relaxed);
            reported = t.payload;
            pace(sh.rate_bps, &t, start);
        }
    }
    Ok(t)
}

fn wait_gate(gate: &AtomicBool) {
    // Sleep, not spin: on a busy machine spinning senders starve the thread
    // that reads the ARP reply and opens the gate.
    while !gate.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_micros(20));
    }
}

/// `--threads N`: N sender threads share the stack; this thread drains the
/// wire into the peer and runs the stack's deferred work until they are done.
fn threaded(a: &SendArgs, p: &Plan, stack: &Arc<Stack>, wire: &mut Wire) -> Result<Tally> {
    let n = a.threads.clamp(1, 256) as u64;
    // Datagrams and payload bytes sent so far, for the progress display.
    let sent = [AtomicU64::new(0), AtomicU64::new(0)];
    // Static neighbours need no wait; the peer or the kernel must answer.
    let gate = AtomicBool::new(matches!(wire, Wire::Null | Wire::File));
    let start = WallInstant::now();
    let mut prog = Progress::new(a.json, p.count, p.duration);
    let mut t = Tally::default();
    let results: Vec<Result<Tally>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let (sent, gate, sh) = (&sent, &gate, Share::of(p, i, n));
                sc.spawn(move || sender(a, p, stack, sh, sent, gate, start))
            })
            .collect();
        while !hs.iter().all(|h| h.is_finished()) {
            let before = t.verified + t.bad_payload;
            stack.poll();
            drain_wire(wire, stack, &mut t);
            if t.verified + t.bad_payload > 0
                || start.elapsed() > FIRST_NEIGH_WAIT
                || (!gate.load(Ordering::Relaxed) && neigh_resolved(stack))
            {
                gate.store(true, Ordering::Release);
            }
            if t.verified + t.bad_payload == before {
                std::thread::sleep(Duration::from_micros(50));
            }
            prog.update(
                sent[0].load(Ordering::Relaxed),
                sent[1].load(Ordering::Relaxed),
            );
        }
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("a sender thread panicked"))
            })
            .collect()
    });
    for r in results {
        t.add(r?);
    }
    t.elapsed = start.elapsed();
    prog.finish();
    let limit = linger_limit(a);
    t.wait = outcome::linger(stack, limit, || drain_wire(wire, stack, &mut t));
    Ok(t)
}

/// Waits until the payload sent so far is due at `rate` (bits of payload
/// per second): sleeps while well ahead, then yields the last tens of
/// microseconds (a sleep overshoots by about that much), so each datagram
/// leaves within a fraction of its own time at the rate.
fn pace_until(rate: u64, t: &Tally, start: WallInstant) {
    const SPIN: Duration = Duration::from_micros(60);
    let due = Duration::from_secs_f64(t.payload as f64 * 8.0 / rate as f64);
    loop {
        let el = start.elapsed();
        if el >= due || outcome::interrupted() {
            return;
        }
        match due - el {
            ahead if ahead > SPIN => std::thread::sleep(ahead - SPIN),
            _ => std::thread::yield_now(),
        }
    }
}

/// Sleeps while ahead of `rate` (bits of payload per second).
fn pace(rate: Option<u64>, t: &Tally, start: WallInstant) {
    let Some(rate) = rate.filter(|&r| r > 0) else {
        return;
    };
    let due = Duration::from_secs_f64(t.payload as f64 * 8.0 / rate as f64);
    let el = start.elapsed();
    if due > el + Duration::from_millis(1) {
        std::thread::sleep(due - el);
    }
}

/// Runs `ipxmit send`.
pub fn run(a: SendArgs) -> Result<ExitCode> {
    let p = plan(&a)?;
    let limit = ipxmit::units::parse_time(&a.linger)
        .map_err(|e| anyhow::anyhow!("--linger {:?}: {e}", a.linger))?;
    let (stack, mut wire, tap) = build_host(&a, &p)?;
    let non_ip = outcome::NonIpFrames::new();
    if matches!(wire, Wire::Os) {
        stack.device("eth0")?.add_tap(non_ip.clone());
    }
    outcome::catch_sigint();
    let t = if a.threads > 1 {
        threaded(&a, &p, &stack, &mut wire)?
    } else {
        let mut socks = open_sockets(&stack, &a, a.sockets)?;
        workload(&a, &p, &stack, &mut socks, &mut wire)
    };
    if let Some(tap) = &tap {
        tap.flush().context("writing the capture file")?;
    }
    let o = account(&stack, &wire, &t, limit, non_ip.get())?;
    let failures = fail_reasons(&t, &o, &wire);
    print_report(&a, &p, &stack, &wire, &t, &o)?;
    if o.interrupted {
        eprintln!("ipxmit send: interrupted (Ctrl-C); the summary is of what was sent until then");
        return Ok(ExitCode::from(outcome::EXIT_INTERRUPTED));
    }
    for f in &failures {
        eprintln!("ipxmit send: {f}");
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Where the run's IP packets ended (see [`outcome`]); `non_ip` is the
/// frames other than IPv4 an OS device was given.
fn account(
    stack: &Stack,
    wire: &Wire,
    t: &Tally,
    limit: Duration,
    non_ip: u64,
) -> Result<outcome::Outcome> {
    let dev = stack.device("eth0")?;
    let tx = dev.stats.snapshot().tx_packets;
    let sent = match wire {
        Wire::Mem(..) => t.wire_ip,
        Wire::Null | Wire::File => tx,
        Wire::Os => tx.saturating_sub(non_ip),
    };
    // Segments the device cut in software leave as frames of their own.
    let soft_gso = !dev.features().contains(Features::GSO_UDP_L4);
    let extra = if soft_gso {
        t.segments - t.datagrams
    } else {
        0
    };
    let wait = (t.wait.0, limit, t.wait.1);
    Ok(outcome::Outcome::account(stack, sent, extra, wait))
}

/// Why a run failed, one line each; empty when every datagram left the
/// device and, with the verifying peer, was verified.
fn fail_reasons(t: &Tally, o: &outcome::Outcome, wire: &Wire) -> Vec<String> {
    let mut v = o.failures();
    if !t.errors.is_empty() {
        let n: u64 = t.errors.values().sum();
        v.push(format!("{n} sends refused ({:?})", t.errors));
    }
    if let Wire::Mem(_, ver) = wire {
        // With drops on the way, the datagrams the peer did not verify are
        // the stack's drops (failed above) and those the peer attributes.
        let missing = t.verified != t.segments && o.dropped_total == 0;
        if missing || t.bad_payload > 0 || ver.faults() > 0 {
            v.push(format!(
                "the peer verified {} of {} datagrams ({} bad payload, {} frames it dropped, {})",
                t.verified,
                t.segments,
                t.bad_payload,
                ver.peer.stats().frame_drops(),
                ver.unassembled_text()
            ));
        }
    }
    v
}

fn rate_line(t: &Tally, frames: u64) -> String {
    let secs = t.elapsed.as_secs_f64().max(1e-9);
    use crate::human::{bytes, count, si};
    format!(
        "{}, {}, {} payload in {:.3} s: {}bit/s, {} datagrams/s",
        count(t.datagrams, "datagram"),
        count(frames, "frame"),
        bytes(t.payload),
        secs,
        si(t.payload as f64 * 8.0 / secs),
        si(t.datagrams as f64 / secs).trim_end()
    )
}

fn print_report(
    a: &SendArgs,
    p: &Plan,
    stack: &Stack,
    wire: &Wire,
    t: &Tally,
    o: &outcome::Outcome,
) -> Result<bool> {
    let dev = stack.device("eth0")?;
    let frames = dev.stats.snapshot().tx_packets;
    let ver = match wire {
        Wire::Mem(_, v) => Some(v),
        _ => None,
    };
    let ok = fail_reasons(t, o, wire).is_empty();
    let mut out = io::stdout().lock();
    if a.json {
        let mut v = json!({
            "dst": p.dst.to_string(), "sizes": p.sizes, "dev": a.dev, "mtu": a.mtu,
            "datagrams": t.datagrams, "frames": frames, "payload_bytes": t.payload,
            "elapsed_s": t.elapsed.as_secs_f64(),
            "gbit_per_s": t.payload as f64 * 8.0 / t.elapsed.as_secs_f64().max(1e-9) / 1e9,
            "errors": t.errors, "outcome": o.json(),
            "peer": ver.map(|v| json!({"verified": t.verified, "bad_payload": t.bad_payload,
                "mixed": t.mixed,
                "reassembled": t.reassembled, "drops": v.peer.stats().drops_total(),
                "frame_drops": v.peer.stats().frame_drops(),
                "unassembled": v.unassembled_json(), "faults": v.faults()})),
        });
        // The statistics in the shape `run --json` ends with.
        let stats = report::stats_json(std::slice::from_ref(&dev), stack, a.all);
        v.as_object_mut().expect("object").extend(stats);
        v["ok"] = json!(ok);
        if a.drops {
            v["drops"] = report::drop_summary_json(stack);
        }
        writeln!(out, "{v}")?;
        return Ok(ok);
    }
    let qd = dev.queues()[0].with_qdisc(|q| q.kind());
    writeln!(
        out,
        "ipxmit send: {:?} B to {} via eth0 ({}, mtu {}, qdisc {qd})",
        p.sizes, p.dst, a.dev, a.mtu
    )?;
    writeln!(out, "sent:   {}", rate_line(t, frames))?;
    if !t.errors.is_empty() {
        writeln!(out, "errors: {:?}", t.errors)?;
    }
    if let Some(v) = ver {
        writeln!(
            out,
            "peer:   {} of {} datagrams verified ({} reassembled, {} bad payload, {} mixed by IP ID reuse, {} frames dropped by the peer; {})",
            t.verified, t.segments, t.reassembled, t.bad_payload, t.mixed, v.peer.stats().frame_drops(),
            v.unassembled_text()
        )?;
    }
    writeln!(out, "{}", o.text())?;
    writeln!(out)?;
    write!(out, "{}", report::ip_link(&dev))?;
    writeln!(out)?;
    write!(out, "{}", report::tc_qdisc(&dev, stack.now()))?;
    writeln!(out)?;
    write!(out, "{}", report::nstat(stack, a.all))?;
    let own = report::ipxmit_counters(stack, a.all);
    if !own.is_empty() {
        writeln!(out)?;
        write!(out, "{own}")?;
    }
    if a.drops {
        writeln!(out)?;
        write!(out, "{}", report::drop_summary(stack))?;
    }
    Ok(ok)
}
