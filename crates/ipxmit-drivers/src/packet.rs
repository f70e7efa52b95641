//! The AF_PACKET driver: frames sent on an existing interface through packet
//! sockets, batched into one system call.
//!
//! Stands for the user-space half of `net/packet/af_packet.c`: `packet_sendmsg`
//! -> `packet_snd` for each message of a `sendmmsg` (a batch is built from the
//! stack's `xmit_more` hint: frames are held while `more` is true, up to
//! [`PacketConfig::batch`], and sent with the last one or on `flush`; each
//! frame's segments are its own iovecs, no flattening copy), or `tpacket_snd`
//! draining a `PACKET_TX_RING` (`TPACKET_V2`) that frames are copied into, one
//! `send` per batch. `PACKET_QDISC_BYPASS` makes the kernel hand frames straight
//! to the interface's driver (`packet_direct_xmit`) instead of its qdisc — ours
//! already ran.
//!
//! Flow control: when the socket has no room (`EAGAIN` from
//! `sock_alloc_send_skb` over `SO_SNDBUF`, a full ring) or the device refused a
//! frame (`ENOBUFS`), the frames already accepted stay in the driver, the queue
//! is stopped, and a frame offered while full is handed back
//! ([`TxStatus::Busy`]). Transmit completion — `POLLOUT` on the socket seen by
//! the [`runner`](crate::runner::Runner) (or a short retry timer after `ENOBUFS`) —
//! sends what is held and wakes the queue. Nothing is lost.
//!
//! Receive (for ARP replies): a second packet socket bound to the interface
//! (`packet_rcv`), frames read with `recvfrom`; our own outgoing frames
//! (`PACKET_OUTGOING`) are ignored, by `PACKET_IGNORE_OUTGOING` and by
//! checking `sll_pkttype`.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ipxmit::dev::{DevConfig, Driver, Features, TxQueueCtl, TxStatus};
use ipxmit::wire::EthernetAddress;
use ipxmit::PacketBuf;
use parking_lot::Mutex;
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, MMsgHdr, SendAncillaryBuffer, SendFlags, SocketFlags, SocketType,
};

use crate::runner::{self, recycle, WaitFd, WaitSource};
use crate::sys::{self, TxRingMap, TPACKET2_DATA_OFF};

/// Default largest batch of one `sendmmsg`.
pub const DEFAULT_BATCH: usize = 64;
/// Retry time after the device refused a frame (`ENOBUFS`): there is no
/// `POLLOUT` to wait for then.
const NOBUFS_RETRY: Duration = Duration::from_millis(1);
/// Retry time when `POLLOUT` fired but the ring slot is still in flight.
const RING_RETRY: Duration = Duration::from_micros(100);

/// How frames reach the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketMode {
    /// One `sendmmsg` per batch, each frame's segments as iovecs.
    Sendmmsg,
    /// A `PACKET_TX_RING` (`TPACKET_V2`) of `frames` slots of `frame_size`
    /// bytes (a multiple of 16; frame data starts 32 bytes in), one `send` per
    /// batch.
    TxRing {
        /// Slots in the ring.
        frames: usize,
        /// Bytes per slot.
        frame_size: usize,
    },
}

/// What the receive socket takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketRx {
    /// No receive socket.
    None,
    /// ARP only (`ETH_P_ARP`): what the stack handles on receive.
    Arp,
    /// Every frame (`ETH_P_ALL`).
    All,
}

/// What to open. See [`PacketLink::open`].
#[derive(Clone, Debug)]
pub struct PacketConfig {
    /// The existing interface to send on.
    pub ifname: String,
    /// Transmit queues, one socket each.
    pub queues: usize,
    /// Sendmmsg batches or a TX ring.
    pub mode: PacketMode,
    /// `PACKET_QDISC_BYPASS`.
    pub qdisc_bypass: bool,
    /// Most frames held before a system call.
    pub batch: usize,
    /// `SO_SNDBUF` of each transmit socket (the kernel doubles it).
    pub sndbuf: Option<usize>,
    /// The receive socket.
    pub rx: PacketRx,
}

impl PacketConfig {
    /// `ifname` with one queue, sendmmsg batches of 64, qdisc bypass, ARP receive.
    pub fn new(ifname: &str) -> PacketConfig {
        PacketConfig {
            ifname: ifname.to_string(),
            queues: 1,
            mode: PacketMode::Sendmmsg,
            qdisc_bypass: true,
            batch: DEFAULT_BATCH,
            sndbuf: None,
            rx: PacketRx::Arp,
        }
    }
}

/// Errors of opening an AF_PACKET link.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// `ENODEV`: no interface of that name (in this network namespace).
    #[error("no such interface {0}")]
    NoSuchInterface(String),
    /// `EPERM` from `socket(AF_PACKET, ...)`.
    #[error("AF_PACKET needs CAP_NET_RAW")]
    NeedsCapNetRaw,
    /// An invalid configuration.
    #[error("invalid AF_PACKET configuration for {ifname}: {reason}")]
    Config {
        /// The interface.
        ifname: String,
        /// What is wrong.
        reason: String,
    },
    /// Any other failing system call.
    #[error("{what} on {ifname}: {source}")]
    Sys {
        /// The call.
        what: &'static str,
        /// The interface.
        ifname: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Counters of a link (all queues).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketStats {
    /// Frames the kernel took.
    pub tx_frames: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Transmit system calls (`sendmmsg`, or `send` kicking the ring).
    pub tx_syscalls: u64,
    /// Times the socket or ring had no room.
    pub tx_busy: u64,
    /// Frames dropped on an error.
    pub tx_errors: u64,
    /// Frames received and handed up.
    pub rx_frames: u64,
    /// Our own outgoing frames seen and ignored.
    pub rx_outgoing: u64,
    /// The errno of the last failure, 0 if none.
    pub last_errno: i32,
}

#[derive(Default)]
struct Counters {
    tx_frames: AtomicU64,
    tx_bytes: AtomicU64,
    tx_syscalls: AtomicU64,
    tx_busy: AtomicU64,
    tx_errors: AtomicU64,
    rx_frames: AtomicU64,
    rx_outgoing: AtomicU64,
    last_errno: AtomicI32,
}

impl Counters {
    fn error(&self, e: Errno) {
        self.tx_errors.fetch_add(1, Ordering::Relaxed);
        self.last_errno.store(e.raw_os_error(), Ordering::Relaxed);
    }
}

/// Reused `mmsghdr` storage, empty between calls.
#[derive(Default)]
struct MsgStore(Vec<MMsgHdr<'static>>);

// SAFETY: `MMsgHdr` is `!Send` only because it holds raw pointers into the
// buffers it describes. A `MsgStore` is always empty when it is stored (it is
// filled and emptied within one call of `TxState::sendmmsg`), so it carries no
// pointer across threads, only an allocation.
unsafe impl Send for MsgStore {}

/// The ring of a queue in [`PacketMode::TxRing`].
struct Ring {
    map: TxRingMap,
    /// Next slot to fill.
    head: usize,
    /// Slots filled since the last successful kick.
    pending: usize,
    /// The last slot filled.
    last: usize,
}

/// Transmit state of one queue, under its lock.
struct TxState {
    held: Vec<PacketBuf>,
    iov: Vec<IoSlice<'static>>,
    bounds: Vec<(usize, usize)>,
    anc: Vec<SendAncillaryBuffer<'static, 'static, 'static>>,
    msgs: MsgStore,
    ring: Option<Ring>,
    batch: usize,
}

/// Whether frames are still waiting for room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    /// Everything handed to the kernel.
    Clear,
    /// The socket was full: wait for `POLLOUT`.
    Full,
    /// The device refused frames: retry after a while.
    Refused,
}

struct Queue {
    fd: OwnedFd,
    /// Stopped for lack of room; waiting for completion.
    waiting: AtomicBool,
    /// Waiting on a timer rather than `POLLOUT`.
    backoff: AtomicBool,
    ctl: OnceLock<Arc<TxQueueCtl>>,
    tx: Mutex<TxState>,
}

impl Queue {
    /// Stopped for lack of room (by the driver's `block` before a busy
    /// return, or by anyone else holding the queue's flow control): either
    /// way a completion must wake it.
    fn needs_completion(&self) -> bool {
        self.waiting.load(Ordering::Acquire) || self.ctl.get().is_some_and(|c| c.is_stopped())
    }
}

struct Shared {
    ifname: String,
    ifindex: u32,
    hw_addr: EthernetAddress,
    mtu: u32,
    ring: bool,
    queues: Box<[Queue]>,
    rx: Option<OwnedFd>,
    c: Counters,
}

/// Packet sockets on one interface: one per transmit queue, and one to
/// receive. See the module documentation.
pub struct PacketLink {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PacketLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketLink")
            .field("ifname", &self.shared.ifname)
            .field("ifindex", &self.shared.ifindex)
            .field("queues", &self.shared.queues.len())
            .finish()
    }
}

fn sys_err<'a>(
    what: &'static str,
    ifname: &'a str,
) -> impl FnOnce(std::io::Error) -> PacketError + 'a {
    move |source| PacketError::Sys {
        what,
        ifname: ifname.to_string(),
        source,
    }
}

/// `socket(AF_PACKET, SOCK_RAW, htons(proto))`, non-blocking.
fn packet_socket(proto: u16, ifname: &str) -> Result<OwnedFd, PacketError> {
    let p = rustix::net::RawProtocol::new(u32::from(proto.to_be()))
        .map(rustix::net::Protocol::from_raw);
    rustix::net::socket_with(
        AddressFamily::PACKET,
        SocketType::RAW,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        p,
    )
    .map_err(|e| match e {
        Errno::PERM | Errno::ACCESS => PacketError::NeedsCapNetRaw,
        e => PacketError::Sys {
            what: "socket(AF_PACKET)",
            ifname: ifname.to_string(),
            source: e.into(),
        },
    })
}

/// The interface index of `ifname`, in the socket's network namespace.
fn ifindex_of(fd: &OwnedFd, ifname: &str) -> Result<u32, PacketError> {
    if ifname.is_empty() || ifname.len() >= sys::IFNAMSIZ {
        return Err(PacketError::NoSuchInterface(ifname.to_string()));
    }
    rustix::net::netdevice::name_to_index(fd, ifname).map_err(|e| match e {
        Errno::NODEV | Errno::NXIO => PacketError::NoSuchInterface(ifname.to_string()),
        e => sys_err("SIOCGIFINDEX", ifname)(e.into()),
    })
}

/// Slot and block geometry of a ring: (block size, blocks, frame size).
fn ring_geometry(
    cfg: &PacketConfig,
    frames: usize,
    frame_size: usize,
    mtu: u32,
) -> Result<(usize, usize, usize), PacketError> {
    let bad = |reason: String| PacketError::Config {
        ifname: cfg.ifname.clone(),
        reason,
    };
    if !frame_size.is_multiple_of(16) || frame_size < 64 || frames == 0 {
        return Err(bad(format!(
            "ring frame size {frame_size} must be a multiple of 16 and at least 64, with at least one frame"
        )));
    }
    let need = mtu as usize + 14 + TPACKET2_DATA_OFF;
    if need > frame_size {
        return Err(bad(format!(
            "ring frame size {frame_size} holds frames up to {} bytes, but MTU {mtu} needs {}",
            frame_size - TPACKET2_DATA_OFF,
            mtu + 14
        )));
    }
    let page = rustix::param::page_size();
    let block = frame_size.div_ceil(page) * page;
    let per_block = block / frame_size;
    Ok((block, frames.div_ceil(per_block), frame_size))
}

/// Opens and configures the transmit socket of one queue.
fn open_tx(cfg: &PacketConfig, ifindex: u32, mtu: u32) -> Result<Queue, PacketError> {
    let name = cfg.ifname.as_str();
    let fd = packet_socket(0, name)?;
    sys::bind_packet(fd.as_fd(), 0, ifindex).map_err(sys_err("bind(AF_PACKET)", name))?;
    if cfg.qdisc_bypass {
        sys::setsockopt_int(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)
            .map_err(sys_err("PACKET_QDISC_BYPASS", name))?;
    }
    if let Some(b) = cfg.sndbuf {
        rustix::net::sockopt::set_socket_send_buffer_size(&fd, b)
            .map_err(|e| sys_err("SO_SNDBUF", name)(e.into()))?;
    }
    let ring = match cfg.mode {
        PacketMode::Sendmmsg => None,
        PacketMode::TxRing { frames, frame_size } => {
            let (block, nr, fsz) = ring_geometry(cfg, frames, frame_size, mtu)?;
            let map = TxRingMap::setup(fd.as_fd(), block, nr, fsz)
                .map_err(sys_err("PACKET_TX_RING", name))?;
            Some(Ring {
                map,
                head: 0,
                pending: 0,
                last: 0,
            })
        }
    };
    let batch = cfg.batch.clamp(1, 1024);
    Ok(Queue {
        fd,
        waiting: AtomicBool::new(false),
        backoff: AtomicBool::new(false),
        ctl: OnceLock::new(),
        tx: Mutex::new(TxState {
            held: Vec::with_capacity(batch),
            iov: Vec::new(),
            bounds: Vec::with_capacity(batch),
            anc: (0..batch).map(|_| SendAncillaryBuffer::default()).collect(),
            msgs: MsgStore::default(),
            ring,
            batch,
        }),
    })
}

/// Opens the receive socket, or none.
fn open_rx(cfg: &PacketConfig, ifindex: u32) -> Result<Option<OwnedFd>, PacketError> {
    let proto = match cfg.rx {
        PacketRx::None => return Ok(None),
        PacketRx::Arp => libc::ETH_P_ARP as u16,
        PacketRx::All => libc::ETH_P_ALL as u16,
    };
    let fd = packet_socket(proto, &cfg.ifname)?;
    sys::bind_packet(fd.as_fd(), proto, ifindex)
        .map_err(sys_err("bind(AF_PACKET)", &cfg.ifname))?;
    // Older kernels lack it; `poll_rx` checks `sll_pkttype` as well.
    let _ = sys::setsockopt_int(
        fd.as_fd(),
        libc::SOL_PACKET,
        libc::PACKET_IGNORE_OUTGOING,
        1,
    );
    Ok(Some(fd))
}

impl PacketLink {
    /// Opens packet sockets on the existing interface `cfg.ifname` (in the
    /// network namespace of the calling thread, see [`crate::netns`]).
    pub fn open(cfg: &PacketConfig) -> Result<PacketLink, PacketError> {
        if cfg.queues == 0 || cfg.queues > 256 {
            return Err(PacketError::Config {
                ifname: cfg.ifname.clone(),
                reason: format!("queues must be 1..=256, not {}", cfg.queues),
            });
        }
        let probe = packet_socket(0, &cfg.ifname)?;
        let ifindex = ifindex_of(&probe, &cfg.ifname)?;
        let name = cfg.ifname.as_str();
        let hw_addr =
            sys::if_hwaddr(probe.as_fd(), name).map_err(sys_err("SIOCGIFHWADDR", name))?;
        let mtu = sys::if_mtu(probe.as_fd(), name).map_err(sys_err("SIOCGIFMTU", name))?;
        let queues = (0..cfg.queues)
            .map(|_| open_tx(cfg, ifindex, mtu))
            .collect::<Result<Vec<_>, _>>()?;
        let rx = open_rx(cfg, ifindex)?;
        Ok(PacketLink {
            shared: Arc::new(Shared {
                ifname: cfg.ifname.clone(),
                ifindex,
                hw_addr: EthernetAddress(hw_addr),
                mtu,
                ring: matches!(cfg.mode, PacketMode::TxRing { .. }),
                queues: queues.into_boxed_slice(),
                rx,
                c: Counters::default(),
            }),
        })
    }

    /// The interface name.
    pub fn ifname(&self) -> &str {
        &self.shared.ifname
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.shared.ifindex
    }

    /// The interface's hardware address (our source address).
    pub fn hw_addr(&self) -> EthernetAddress {
        self.shared.hw_addr
    }

    /// The interface's MTU.
    pub fn mtu(&self) -> u32 {
        self.shared.mtu
    }

    /// Features for `DevConfig::features`: scatter-gather (iovecs per frame,
    /// or gathered into the ring).
    pub fn features(&self) -> Features {
        let f = Features::SG | Features::FRAGLIST;
        if self.shared.ring {
            f | Features::COPY_AT_XMIT
        } else {
            f
        }
    }

    /// A device configuration for the stack: `name`, the interface's address,
    /// MTU and this link's features.
    pub fn dev_config(&self, name: &str) -> DevConfig {
        let mut cfg = DevConfig::ethernet(name, self.hw_addr());
        cfg.mtu = self.mtu().clamp(ipxmit::dev::MIN_MTU, ipxmit::dev::MAX_MTU);
        cfg.features = self.features();
        cfg
    }

    /// One driver per queue, for `Stack::add_device` (queue 0's also receives).
    pub fn drivers(&self) -> Vec<Box<dyn Driver>> {
        (0..self.shared.queues.len())
            .map(|i| -> Box<dyn Driver> {
                let source: Arc<dyn WaitSource> = self.shared.clone();
                Box::new(PacketQueue {
                    shared: self.shared.clone(),
                    source,
                    index: i,
                    rx_buf: Vec::new(),
                })
            })
            .collect()
    }

    /// The counters so far.
    pub fn stats(&self) -> PacketStats {
        let c = &self.shared.c;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PacketStats {
            tx_frames: g(&c.tx_frames),
            tx_bytes: g(&c.tx_bytes),
            tx_syscalls: g(&c.tx_syscalls),
            tx_busy: g(&c.tx_busy),
            tx_errors: g(&c.tx_errors),
            rx_frames: g(&c.rx_frames),
            rx_outgoing: g(&c.rx_outgoing),
            last_errno: c.last_errno.load(Ordering::Relaxed),
        }
    }

    /// The link as a [`WaitSource`], for [`crate::runner::Runner::watch`] when
    /// queue 0's driver is not polled by a stack.
    pub fn wait_source(&self) -> Arc<dyn WaitSource> {
        self.shared.clone()
    }
}

impl TxState {
    /// One `sendmmsg` of the held frames; returns how many the kernel took.
    fn sendmmsg(&mut self, fd: &OwnedFd) -> rustix::io::Result<usize> {
        let TxState {
            held,
            iov,
            bounds,
            anc,
            msgs,
            ..
        } = self;
        let mut v: Vec<IoSlice<'_>> = recycle(std::mem::take(iov));
        bounds.clear();
        for p in held.iter() {
            let start = v.len();
            p.for_each_segment(&mut |s| v.push(IoSlice::new(s)));
            bounds.push((start, v.len()));
        }
        let mut m: Vec<MMsgHdr<'_>> = recycle(std::mem::take(&mut msgs.0));
        for (&(a, b), c) in bounds.iter().zip(anc.iter_mut()) {
            m.push(MMsgHdr::new(&v[a..b], c));
        }
        let r = loop {
            match rustix::net::sendmmsg(fd, &mut m, SendFlags::DONTWAIT) {
                Err(Errno::INTR) => continue,
                r => break r,
            }
        };
        msgs.0 = recycle(m);
        *iov = recycle(v);
        r
    }

    /// Kernel: the `sendmmsg` -> `packet_snd` path. Sends the held frames,
    /// dropping (and counting) one the kernel rejects outright.
    fn send_held(&mut self, fd: &OwnedFd, c: &Counters) -> Flow {
        while !self.held.is_empty() {
            match self.sendmmsg(fd) {
                Ok(0) => return Flow::Full,
                Ok(n) => {
                    c.tx_syscalls.fetch_add(1, Ordering::Relaxed);
                    let bytes: usize = self
                        .held
                        .drain(..n.min(self.held.len()))
                        .map(|p| p.len())
                        .sum();
                    c.tx_frames.fetch_add(n as u64, Ordering::Relaxed);
                    c.tx_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                }
                Err(Errno::AGAIN) => return Flow::Full,
                Err(Errno::NOBUFS) => return Flow::Refused,
                Err(e) => {
                    c.error(e);
                    self.held.remove(0);
                }
            }
        }
        Flow::Clear
    }

    /// Kernel: `tpacket_snd` via `send`. Asks the kernel to send the filled
    /// slots; `Full` when some are still waiting.
    fn kick(&mut self, fd: &OwnedFd, c: &Counters) -> Flow {
        let Some(ring) = self.ring.as_mut() else {
            return Flow::Clear;
        };
        if ring.pending == 0 {
            return Flow::Clear;
        }
        let r = loop {
            match rustix::net::send(fd, &[], SendFlags::DONTWAIT) {
                Err(Errno::INTR) => continue,
                r => break r,
            }
        };
        c.tx_syscalls.fetch_add(1, Ordering::Relaxed);
        match r {
            Err(Errno::NOBUFS) => return Flow::Refused,
            Err(Errno::AGAIN) => return Flow::Full,
            Err(e) => c.error(e),
            Ok(_) => {}
        }
        if ring.map.status(ring.last) == libc::TP_STATUS_SEND_REQUEST {
            return Flow::Full;
        }
        ring.pending = 0;
        Flow::Clear
    }

    /// True when the next ring slot is free (resetting one the kernel marked
    /// `TP_STATUS_WRONG_FORMAT`, counted as an error).
    fn ring_slot_free(&mut self, c: &Counters) -> bool {
        let Some(ring) = self.ring.as_mut() else {
            return true;
        };
        let st = ring.map.status(ring.head);
        if st & libc::TP_STATUS_WRONG_FORMAT != 0 {
            c.error(Errno::INVAL);
            ring.map.set_available(ring.head);
            return true;
        }
        st == libc::TP_STATUS_AVAILABLE
    }

    /// Sends or kicks whatever is waiting.
    fn push_out(&mut self, fd: &OwnedFd, c: &Counters) -> Flow {
        if self.ring.is_some() {
            self.kick(fd, c)
        } else {
            self.send_held(fd, c)
        }
    }

    /// True when a new frame can be taken.
    fn has_room(&mut self, c: &Counters) -> bool {
        if self.ring.is_some() {
            self.ring_slot_free(c)
        } else {
            self.held.len() < self.batch
        }
    }
}

impl Shared {
    /// Stops queue `q` until completion: `POLLOUT` when the socket was full, a
    /// timer when the device refused frames.
    fn block(&self, q: &Queue, flow: Flow) {
        self.c.tx_busy.fetch_add(1, Ordering::Relaxed);
        q.backoff.store(flow == Flow::Refused, Ordering::Release);
        // Stop first: a completion that sees `waiting` must find the queue
        // stopped, or its wake-up would be lost.
        if let Some(ctl) = q.ctl.get() {
            ctl.stop();
        }
        q.waiting.store(true, Ordering::Release);
        if let Some(ctl) = q.ctl.get() {
            // Raise the stack's deferred work so a runner re-collects its
            // descriptors, now with this one's completion.
            ctl.schedule();
        }
    }

    /// Transmit completion for queue `q`: push out what waits; wake the queue
    /// when there is room again.
    fn complete(&self, q: &Queue) {
        let mut tx = q.tx.lock();
        let flow = tx.push_out(&q.fd, &self.c);
        if flow == Flow::Clear && tx.has_room(&self.c) {
            q.waiting.store(false, Ordering::Release);
            q.backoff.store(false, Ordering::Release);
            drop(tx);
            if let Some(ctl) = q.ctl.get() {
                ctl.wake();
            }
        } else {
            // In flight (ring) or refused: retry on a timer, not on POLLOUT,
            // which may already be set.
            q.backoff
                .store(flow != Flow::Full || self.ring, Ordering::Release);
        }
    }
}

impl WaitSource for Shared {
    fn wait_fds<'a>(&'a self, out: &mut Vec<WaitFd<'a>>) -> Option<Duration> {
        if let Some(rx) = &self.rx {
            out.push(WaitFd {
                fd: rx.as_fd(),
                readable: true,
                writable: false,
            });
        }
        let mut retry = None;
        for q in self.queues.iter().filter(|q| q.needs_completion()) {
            if q.backoff.load(Ordering::Acquire) {
                let t = if self.ring { RING_RETRY } else { NOBUFS_RETRY };
                retry = Some(retry.map_or(t, |r: Duration| r.min(t)));
            } else {
                out.push(WaitFd {
                    fd: q.fd.as_fd(),
                    readable: false,
                    writable: true,
                });
            }
        }
        retry
    }

    fn complete_tx(&self) {
        for q in self.queues.iter().filter(|q| q.needs_completion()) {
            self.complete(q);
        }
    }
}

/// The driver of one queue of a [`PacketLink`].
struct PacketQueue {
    shared: Arc<Shared>,
    source: Arc<dyn WaitSource>,
    index: usize,
    rx_buf: Vec<u8>,
}

impl PacketQueue {
    /// Holds `pkt` for the next `sendmmsg`, sending when the batch ends.
    fn xmit_mmsg(&mut self, pkt: PacketBuf, more: bool) -> TxStatus {
        let sh = &*self.shared;
        let q = &sh.queues[self.index];
        let mut tx = q.tx.lock();
        if tx.held.len() >= tx.batch {
            let flow = tx.send_held(&q.fd, &sh.c);
            if tx.held.len() >= tx.batch {
                drop(tx);
                sh.block(q, flow);
                return TxStatus::Busy(pkt);
            }
        }
        tx.held.push(pkt);
        if !more || tx.held.len() >= tx.batch {
            let flow = tx.send_held(&q.fd, &sh.c);
            drop(tx);
            if flow != Flow::Clear {
                sh.block(q, flow);
            }
        }
        TxStatus::Ok
    }

    /// Copies `pkt` into the next ring slot, kicking the kernel when the batch
    /// ends.
    fn xmit_ring(&mut self, pkt: PacketBuf, more: bool) -> TxStatus {
        let sh = &*self.shared;
        let q = &sh.queues[self.index];
        let mut tx = q.tx.lock();
        if !tx.ring_slot_free(&sh.c) {
            let flow = tx.kick(&q.fd, &sh.c);
            if !tx.ring_slot_free(&sh.c) {
                drop(tx);
                sh.block(
                    q,
                    if flow == Flow::Refused {
                        flow
                    } else {
                        Flow::Full
                    },
                );
                return TxStatus::Busy(pkt);
            }
        }
        let batch = tx.batch;
        let Some(ring) = tx.ring.as_mut() else {
            return TxStatus::Error;
        };
        if !ring.map.fill(ring.head, &pkt) {
            sh.c.error(Errno::MSGSIZE);
            return TxStatus::Error;
        }
        ring.last = ring.head;
        ring.head = (ring.head + 1) % ring.map.frames();
        ring.pending += 1;
        sh.c.tx_frames.fetch_add(1, Ordering::Relaxed);
        sh.c.tx_bytes.fetch_add(pkt.len() as u64, Ordering::Relaxed);
        if !more || ring.pending >= batch {
            let flow = tx.kick(&q.fd, &sh.c);
            drop(tx);
            if flow != Flow::Clear {
                sh.block(q, flow);
            }
        }
        TxStatus::Ok
    }
}

impl Driver for PacketQueue {
    fn attach(&mut self, ctl: Arc<TxQueueCtl>) {
        let _ = self.shared.queues[self.index].ctl.set(ctl);
    }

    fn start_xmit(&mut self, pkt: PacketBuf, more: bool) -> TxStatus {
        if self.shared.ring {
            self.xmit_ring(pkt, more)
        } else {
            self.xmit_mmsg(pkt, more)
        }
    }

    fn flush(&mut self) {
        let sh = &*self.shared;
        let q = &sh.queues[self.index];
        let flow = q.tx.lock().push_out(&q.fd, &sh.c);
        if flow != Flow::Clear {
            sh.block(q, flow);
        }
    }

    /// Reads up to `budget` frames from the receive socket, skipping our own
    /// outgoing ones, and completes stopped queues that have room again.
    fn poll_rx(&mut self, budget: usize, rx: &mut dyn FnMut(&[u8])) -> usize {
        runner::announce(&self.source);
        let sh = self.shared.clone();
        for q in sh.queues.iter().filter(|q| q.needs_completion()) {
            if sys::writable_now(&q.fd) {
                sh.complete(q);
            }
        }
        let Some(fd) = &sh.rx else {
            return 0;
        };
        if self.rx_buf.len() < 65536 {
            self.rx_buf.resize(65536, 0);
        }
        let mut got = 0;
        while got < budget {
            match sys::recv_ll(fd.as_fd(), &mut self.rx_buf) {
                Ok((_, t)) if t == libc::PACKET_OUTGOING => {
                    sh.c.rx_outgoing.fetch_add(1, Ordering::Relaxed);
                }
                Ok((n, _)) => {
                    sh.c.rx_frames.fetch_add(1, Ordering::Relaxed);
                    rx(&self.rx_buf[..n.min(self.rx_buf.len())]);
                    got += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        got
    }

    fn rx_fd(&self) -> Option<RawFd> {
        self.shared.rx.as_ref().map(|f| f.as_raw_fd())
    }
}
