//! The AF_XDP driver: frames sent on an existing interface through XDP
//! sockets, one per transmit queue, each with its own UMEM.
//!
//! Stands for the user-space half of `net/xdp/xsk.c` and `net/xdp/xsk_queue.h`
//! as `Documentation/networking/af_xdp.rst` describes it. Per queue: a UMEM
//! of frames (anonymous memory registered with `XDP_UMEM_REG`), a TX ring
//! and a completion ring (sized with `setsockopt`, mapped at the offsets
//! `XDP_MMAP_OFFSETS` gives; a fill ring of two entries is set up because
//! the kernel's bind asks for one, and never filled), and a socket bound to
//! `(ifindex, queue)` with `XDP_USE_NEED_WAKEUP` and the copy mode asked
//! for: [`XdpMode::Copy`] (`XDP_COPY`, `xsk_generic_xmit`: the kernel builds
//! an skb from the frame and hands it to the interface's driver — works on
//! any interface, veth included), [`XdpMode::ZeroCopy`] (`XDP_ZEROCOPY`: the
//! NIC's driver reads the UMEM itself; refused by drivers without AF_XDP
//! support) or [`XdpMode::Auto`] (neither flag: zero-copy where the driver
//! has it, else copy; [`XdpLink::zerocopy`] says which).
//!
//! Transmit (`ndo_start_xmit`): completions are reaped first (the
//! completion ring's addresses go back on the free-frame stack); the frame
//! is copied into a free UMEM frame — the stack's buffer pool cannot hand
//! out UMEM-backed buffers (its buffers are heap allocations owned by the
//! core crate, which does no I/O), so this is one copy, the same one the
//! AF_PACKET ring makes — and its descriptor written into the TX ring. The
//! producer index is published, and the kernel kicked with a zero-length
//! `sendto` only when the ring's `XDP_RING_NEED_WAKEUP` flag says so, once
//! per batch: when `more` (`xmit_more`) is false, when [`XdpConfig::batch`]
//! frames wait, or when the ring or the UMEM ran out of room. In copy mode
//! one `sendto` drains at most the socket's TX budget (32 descriptors by
//! default); the driver raises it to the ring size with
//! `XDP_MAX_TX_SKB_BUDGET` where the kernel has it (6.17).
//!
//! Flow control, as the AF_PACKET driver does it: when neither a ring slot
//! nor a frame is free after a kick and a completion scan, the queue is
//! stopped and the frame handed back ([`TxStatus::Busy`]); frames the
//! kernel did not take (`EAGAIN`: budget or completion ring full; the
//! device busy; `ENETDOWN`: the interface is down) stay in the ring, in
//! order. Completion — `POLLOUT` on the XDP socket seen by the
//! [`runner`](crate::runner::Runner) (`xsk_poll` also drives copy-mode
//! transmit), or a retry timer ([`RETRY`]) when the kernel refused outright
//! or frames are still in flight — kicks again, reaps the completion ring
//! and wakes the queue. Nothing is lost. No byte queue limits yet.
//!
//! Frames the kernel will not send. Copy mode (`__xsk_generic_xmit`)
//! checks no MTU: `xsk_build_skb` copies whatever the descriptor holds and
//! `__dev_direct_xmit` hands it to the device. What the device drops
//! (`NET_XMIT_DROP`: a veth drops a frame over its peer's MTU + 18,
//! `is_skb_forwardable`, or shorter than an Ethernet header, and counts it
//! in its TX `dropped`) ends that kick with `EBUSY`; the descriptor is
//! consumed and its frame comes back on the completion ring. The driver
//! counts each in [`XdpStats::tx_dropped`] and kicks on at once (a drop is
//! progress, not a refusal), so a run of drops holds nothing up. A
//! descriptor the ring itself finds invalid (`xp_aligned_validate_desc`:
//! length 0, or past its UMEM frame) is counted in `tx_invalid_descs`
//! (`XDP_STATISTICS`); `xskq_cons_read_desc` steps over it before any
//! completion slot is reserved, so by that code its frame never comes
//! back (Linux 6.18 hands it back on the completion ring all the same, as
//! `tests/xdp.rs` saw). So the driver refuses before the ring what
//! the kernel's own stack would never send — a frame over the interface's
//! MTU plus its Ethernet header (or over a UMEM frame) and one shorter than
//! that header — and counts it under its reason
//! ([`XdpStats::tx_oversize`], [`XdpStats::tx_runt`]); the MTU is read
//! again from the completion side at most every 10 ms and before a frame
//! is refused as over it, so `ip link set ... mtu` on the open link is
//! followed.
//!
//! Receive (ARP replies, ICMP errors for the stack): no XDP program is
//! loaded — a transmit-only XDP socket needs none. A packet socket bound to
//! the interface (`ETH_P_ARP` or `ETH_P_ALL`) receives, as the AF_PACKET
//! driver's does, through the same `crate::sys` calls; frames the kernel
//! reports as our own (`PACKET_OUTGOING`) are ignored.

mod ring;

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipxmit::dev::{DevConfig, Driver, Features, TxQueueCtl, TxStatus};
use ipxmit::wire::EthernetAddress;
use ipxmit::PacketBuf;
use rustix::io::Errno;

use crate::runner::{self, WaitFd, WaitSource};
use crate::sys;
use crate::txring::{
    self, Flow, LiveMtu, Misfit, MisfitCounts, Policy, Reaped, RingQueue, RingTx, RxCounters,
};
use ring::{CompRing, TxRing, Umem};

/// Default TX ring entries per queue.
pub const DEFAULT_RING: usize = 1024;
/// Default largest batch before the doorbell rings.
pub const DEFAULT_BATCH: usize = 64;
/// Retry time when the kernel refused a kick outright (`ENOBUFS`,
/// `ENETDOWN`) or frames are still in flight after a completion scan.
pub const RETRY: Duration = Duration::from_micros(200);
/// How long a queue waiting for `POLLOUT` waits at most before it looks
/// again (the kernel's `xsk_poll` reports `POLLOUT` by the TX ring's fill
/// level only; completions that free UMEM frames need not wake it).
pub const POLLOUT_FALLBACK: Duration = Duration::from_millis(1);
/// How soon the runner reaps the completion ring while frames are in
/// flight and the queue runs (so the frames and [`XdpStats::tx_completed`]
/// come back when the sender has stopped; while frames keep coming, the
/// driver reaps itself).
pub const REAP: Duration = Duration::from_millis(10);
/// How long `bind` retries `EBUSY` (a queue still being released).
pub const BIND_BUSY_WAIT: Duration = Duration::from_millis(200);
/// Entries of the fill ring the kernel's bind requires (never filled:
/// nothing is received on the XDP socket).
const FILL_RING: u32 = 2;

/// When completions are seen: `POLLOUT` (at most [`POLLOUT_FALLBACK`]
/// apart) on a full ring, a timer ([`RETRY`]) after a refusal, a scan
/// every [`REAP`] while frames are in flight; only the driver stops a
/// queue.
const POLICY: Policy = Policy {
    reap: REAP,
    retry: RETRY,
    pollout_fallback: Some(POLLOUT_FALLBACK),
    in_memory: false,
    any_stop: false,
};

/// How the socket is bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// `XDP_COPY`: the kernel copies each frame into an skb (any interface).
    Copy,
    /// `XDP_ZEROCOPY`: the NIC reads the UMEM; an error where the driver
    /// lacks AF_XDP support.
    ZeroCopy,
    /// Neither flag: zero-copy where the driver supports it, else copy.
    Auto,
}

/// What the receive socket takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpRx {
    /// No receive socket.
    None,
    /// ARP only (`ETH_P_ARP`): what the stack handles on receive.
    Arp,
    /// Every frame (`ETH_P_ALL`).
    All,
}

/// What to open. See [`XdpLink::open`].
#[derive(Clone, Debug)]
pub struct XdpConfig {
    /// The existing interface to send on.
    pub ifname: String,
    /// The first hardware queue to bind; queue `i` of the device binds
    /// `first_queue + i`.
    pub first_queue: u32,
    /// Transmit queues, one XDP socket each.
    pub queues: usize,
    /// TX ring entries per queue (a power of two, 2..=32768); the UMEM has
    /// twice as many frames and the completion ring holds them all.
    pub ring: usize,
    /// Most frames written before the doorbell rings.
    pub batch: usize,
    /// Copy, zero-copy or either.
    pub mode: XdpMode,
    /// The receive socket.
    pub rx: XdpRx,
}

impl XdpConfig {
    /// `ifname` queue 0, one queue, rings of [`DEFAULT_RING`], batches of
    /// [`DEFAULT_BATCH`], copy mode, ARP receive.
    pub fn new(ifname: &str) -> XdpConfig {
        XdpConfig {
            ifname: ifname.to_string(),
            first_queue: 0,
            queues: 1,
            ring: DEFAULT_RING,
            batch: DEFAULT_BATCH,
            mode: XdpMode::Copy,
            rx: XdpRx::Arp,
        }
    }
}

/// Errors of opening an AF_XDP link; each names the missing privilege or
/// kernel feature where the errno tells it.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// `ENODEV`: no interface of that name (in this network namespace).
    #[error("no such interface {0}")]
    NoSuchInterface(String),
    /// `EPERM` from `socket(AF_XDP, ...)` (`xsk_create` checks
    /// `CAP_NET_RAW`) or from `socket(AF_PACKET, ...)`.
    #[error("{what} needs CAP_NET_RAW (run as root)")]
    NeedsCapNetRaw {
        /// The socket (`AF_XDP`, `AF_PACKET`).
        what: &'static str,
    },
    /// `EAFNOSUPPORT` from `socket(AF_XDP, ...)`.
    #[error("this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS is off)")]
    NoAfXdp,
    /// `XDP_MMAP_OFFSETS` without the rings' flags words (before 5.4).
    #[error("this kernel's AF_XDP has no need_wakeup flags (Linux 5.4 or newer needed)")]
    NoNeedWakeup,
    /// `ENOBUFS`/`EPERM` from `XDP_UMEM_REG`: the pinned pages are over
    /// `RLIMIT_MEMLOCK` and the process lacks `CAP_IPC_LOCK`.
    #[error("UMEM of {bytes} bytes on {ifname} exceeds RLIMIT_MEMLOCK: needs CAP_IPC_LOCK (root) or `ulimit -l` above it ({errno})")]
    MemLock {
        /// The interface.
        ifname: String,
        /// The UMEM's size.
        bytes: usize,
        /// The errno.
        errno: Errno,
    },
    /// `bind` refused the mode asked for.
    #[error("{ifname} queue {queue}: {reason} ({errno})")]
    Bind {
        /// The interface.
        ifname: String,
        /// The queue.
        queue: u32,
        /// What the errno means here.
        reason: &'static str,
        /// The errno.
        errno: Errno,
    },
    /// An invalid configuration.
    #[error("invalid AF_XDP configuration for {ifname}: {reason}")]
    Config {
        /// The interface.
        ifname: String,
        /// What is wrong.
        reason: String,
    },
    /// Any other failing system call.
    #[error("{what} on {ifname}: {errno}")]
    Sys {
        /// The call.
        what: &'static str,
        /// The interface.
        ifname: String,
        /// The error.
        errno: Errno,
    },
}

/// Counters of a link (all queues).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStats {
    /// Frames written into the TX ring.
    pub tx_frames: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Kicks (`sendto`) made.
    pub tx_kicks: u64,
    /// Doorbells that needed no kick (`XDP_RING_NEED_WAKEUP` clear).
    pub tx_kicks_skipped: u64,
    /// Frames the completion ring handed back.
    pub tx_completed: u64,
    /// Times the ring or the UMEM was full mid-batch (doorbell rung early).
    pub ring_full: u64,
    /// Times a frame was handed back (`Busy`) and the queue stopped.
    pub tx_busy: u64,
    /// Frames the interface's driver dropped after taking them (`EBUSY`:
    /// `NET_XMIT_DROP`, one frame per kick; a veth drops a frame over its
    /// peer's MTU so, and counts it in its `ip -s link` TX `dropped`).
    /// Their descriptors come back on the completion ring.
    pub tx_dropped: u64,
    /// Frames dropped on an error: refused before the ring
    /// ([`XdpStats::tx_oversize`], [`XdpStats::tx_runt`]) or a kick's hard
    /// failure.
    pub tx_errors: u64,
    /// Frames refused for being over the interface's MTU plus its Ethernet
    /// header (`EMSGSIZE`), or over a UMEM frame; never written to the
    /// ring. The kernel's copy-mode transmit checks no MTU: the device
    /// would drop it, or send a frame the link cannot carry.
    pub tx_oversize: u64,
    /// Frames refused for being shorter than an Ethernet header
    /// (`EINVAL`): a descriptor of length 0 is one the kernel finds
    /// invalid (`tx_invalid_descs`), a shorter frame one a veth drops.
    pub tx_runt: u64,
    /// Frames received and handed up.
    pub rx_frames: u64,
    /// Our own outgoing frames seen and ignored.
    pub rx_outgoing: u64,
    /// The errno of the last failure, 0 if none.
    pub last_errno: i32,
}

#[derive(Default)]
struct Counters {
    /// The interface's MTU as frames are checked against it.
    mtu: LiveMtu,
    /// The stack's flow control of a queue (the last attached): where
    /// frames the device dropped after `start_xmit` took them are
    /// reported, for the device's `tx_dropped` and drop reasons.
    late: txring::CtlSlot,
    tx_frames: AtomicU64,
    tx_bytes: AtomicU64,
    tx_kicks: AtomicU64,
    tx_kicks_skipped: AtomicU64,
    tx_completed: AtomicU64,
    ring_full: AtomicU64,
    tx_busy: AtomicU64,
    tx_dropped: AtomicU64,
    tx_errors: AtomicU64,
    misfits: MisfitCounts,
    rx_frames: AtomicU64,
    rx_outgoing: AtomicU64,
    last_errno: AtomicI32,
}

impl Counters {
    fn error(&self, e: Errno) {
        self.tx_errors.fetch_add(1, Ordering::Relaxed);
        self.last_errno.store(e.raw_os_error(), Ordering::Relaxed);
    }

    /// Counts a frame the device dropped after the driver took it (a kick
    /// that returned `EBUSY`), here and for the stack. Which frame went is
    /// not known, so its bytes stay in the device's `tx_bytes`.
    fn dropped(&self) {
        self.tx_dropped.fetch_add(1, Ordering::Relaxed);
        self.late.late_drop(1, 0);
    }

    /// Counts a frame refused before the ring, under its reason.
    fn refuse(&self, m: Misfit) {
        self.misfits.count(m);
        self.error(m.errno());
    }
}

/// The transmit state of one queue, under its lock.
struct XskTx {
    tx: TxRing,
    cq: CompRing,
    umem: Umem,
    /// UMEM addresses of free frames.
    free: Vec<u64>,
    /// Descriptors written since the last doorbell.
    pending: usize,
    /// Frames in the UMEM.
    frames: usize,
    batch: usize,
}

/// One queue: its socket and ring ([`RingQueue`]), and what the link
/// reports of it.
struct XskQueue {
    ring: RingQueue<XskTx>,
    /// `XDP_MAX_TX_SKB_BUDGET` took: one kick drains the whole ring.
    budget_raised: bool,
    /// Frames written into this queue's ring.
    frames: AtomicU64,
}

struct Shared {
    ifname: String,
    ifindex: u32,
    hw_addr: EthernetAddress,
    mtu: u32,
    zerocopy: bool,
    queues: Box<[XskQueue]>,
    rx: Option<OwnedFd>,
    /// An unbound packet socket for interface ioctls (`SIOCGIFMTU`).
    probe: OwnedFd,
    c: Counters,
}

/// XDP sockets on one interface: one per transmit queue, and a packet
/// socket to receive. See the module documentation.
pub struct XdpLink {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for XdpLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpLink")
            .field("ifname", &self.shared.ifname)
            .field("ifindex", &self.shared.ifindex)
            .field("queues", &self.shared.queues.len())
            .field("zerocopy", &self.shared.zerocopy)
            .finish()
    }
}

fn sys_err<'a>(what: &'static str, ifname: &'a str) -> impl FnOnce(Errno) -> XdpError + 'a {
    move |errno| XdpError::Sys {
        what,
        ifname: ifname.to_string(),
        errno,
    }
}

/// [`sys_err`] for the `std::io::Error`s of `crate::sys`.
fn io_err<'a>(what: &'static str, ifname: &'a str) -> impl FnOnce(std::io::Error) -> XdpError + 'a {
    move |e| sys_err(what, ifname)(Errno::from_io_error(&e).unwrap_or(Errno::IO))
}

/// `socket(AF_PACKET, SOCK_RAW, htons(proto))`, non-blocking.
fn packet_socket(proto: u16, ifname: &str) -> Result<OwnedFd, XdpError> {
    sys::packet_socket(proto).map_err(|e| match e {
        Errno::PERM | Errno::ACCESS => XdpError::NeedsCapNetRaw { what: "AF_PACKET" },
        e => sys_err("socket(AF_PACKET)", ifname)(e),
    })
}

/// `socket(AF_XDP, ...)`, its errors named.
fn xdp_socket(ifname: &str) -> Result<OwnedFd, XdpError> {
    ring::xsk_socket().map_err(|e| match e {
        Errno::PERM | Errno::ACCESS => XdpError::NeedsCapNetRaw { what: "AF_XDP" },
        Errno::AFNOSUPPORT => XdpError::NoAfXdp,
        e => sys_err("socket(AF_XDP)", ifname)(e),
    })
}

/// The UMEM frame size for `mtu`: 2048 bytes, or 4096 for frames above
/// 2048 (aligned chunks are at most a page).
fn chunk_size(cfg: &XdpConfig, mtu: u32) -> Result<usize, XdpError> {
    let frame = mtu as usize + 14;
    let page = rustix::param::page_size();
    match frame {
        0..=2048 => Ok(2048),
        f if f <= page => Ok(page),
        _ => Err(XdpError::Config {
            ifname: cfg.ifname.clone(),
            reason: format!(
                "MTU {mtu} needs frames above the page size ({page} B); \
                 AF_XDP multi-buffer (XDP_USE_SG) is not implemented"
            ),
        }),
    }
}

/// What a refused `bind` means, for the mode asked.
fn bind_reason(mode: XdpMode, e: Errno) -> &'static str {
    match (mode, e) {
        (XdpMode::ZeroCopy, Errno::OPNOTSUPP | Errno::INVAL) => {
            "the interface's driver has no AF_XDP zero-copy support (XDP_ZEROCOPY)"
        }
        (_, Errno::BUSY) => "the queue already has an XDP socket or UMEM bound",
        (_, Errno::INVAL) => {
            "no such queue on the interface, or XDP_COPY not supported on this device"
        }
        (_, Errno::OPNOTSUPP) => "the interface does not support AF_XDP",
        (_, Errno::PERM) => "binding needs CAP_NET_RAW (run as root)",
        _ => "bind(AF_XDP) failed",
    }
}

/// Sets up the UMEM and rings of one socket `fd`: `ring` TX entries,
/// `frames` frames of `chunk` bytes, a completion ring holding all frames.
fn setup_rings(
    fd: &OwnedFd,
    cfg: &XdpConfig,
    frames: usize,
    chunk: usize,
) -> Result<XskTx, XdpError> {
    let name = cfg.ifname.as_str();
    let umem = Umem::new(frames, chunk).map_err(sys_err("mmap(UMEM)", name))?;
    umem.register(fd.as_fd()).map_err(|errno| match errno {
        Errno::NOBUFS | Errno::PERM | Errno::NOMEM => XdpError::MemLock {
            ifname: name.to_string(),
            bytes: umem.len(),
            errno,
        },
        e => sys_err("XDP_UMEM_REG", name)(e),
    })?;
    let cq_size = frames.next_power_of_two() as u32;
    let set = |opt, n, what| ring::set_xdp_u32(fd.as_fd(), opt, n).map_err(sys_err(what, name));
    set(libc::XDP_UMEM_FILL_RING, FILL_RING, "XDP_UMEM_FILL_RING")?;
    set(
        libc::XDP_UMEM_COMPLETION_RING,
        cq_size,
        "XDP_UMEM_COMPLETION_RING",
    )?;
    set(libc::XDP_TX_RING, cfg.ring as u32, "XDP_TX_RING")?;
    let off = ring::mmap_offsets(fd.as_fd())
        .map_err(sys_err("XDP_MMAP_OFFSETS", name))?
        .ok_or(XdpError::NoNeedWakeup)?;
    let tx =
        TxRing::map(fd.as_fd(), &off, cfg.ring as u32).map_err(sys_err("mmap(TX ring)", name))?;
    let cq =
        CompRing::map(fd.as_fd(), &off, cq_size).map_err(sys_err("mmap(completion ring)", name))?;
    let free = (0..frames as u64).rev().map(|i| i * chunk as u64).collect();
    Ok(XskTx {
        tx,
        cq,
        umem,
        free,
        pending: 0,
        frames,
        batch: cfg.batch.clamp(1, 1024),
    })
}

/// Kernel: `xsk_bind()`. A queue whose last XDP socket was just closed
/// stays taken until the kernel's deferred pool release has run
/// (`xp_release_deferred`, a work item): `EBUSY` is retried for up to
/// [`BIND_BUSY_WAIT`] before it is believed.
fn bind_retrying(fd: &OwnedFd, ifindex: u32, queue: u32, flags: u16) -> Result<(), Errno> {
    let t0 = std::time::Instant::now();
    loop {
        match ring::bind_xsk(fd.as_fd(), ifindex, queue, flags) {
            Err(Errno::BUSY) if t0.elapsed() < BIND_BUSY_WAIT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            r => return r,
        }
    }
}

/// Opens, sets up and binds the XDP socket of queue `queue`; returns it
/// and whether it is bound zero-copy.
fn open_queue(
    cfg: &XdpConfig,
    ifindex: u32,
    queue: u32,
    chunk: usize,
) -> Result<(XskQueue, bool), XdpError> {
    let name = cfg.ifname.as_str();
    let fd = xdp_socket(name)?;
    let tx = setup_rings(&fd, cfg, cfg.ring * 2, chunk)?;
    let mode = match cfg.mode {
        XdpMode::Copy => libc::XDP_COPY,
        XdpMode::ZeroCopy => libc::XDP_ZEROCOPY,
        XdpMode::Auto => 0,
    };
    bind_retrying(&fd, ifindex, queue, mode | libc::XDP_USE_NEED_WAKEUP).map_err(|errno| {
        XdpError::Bind {
            ifname: name.to_string(),
            queue,
            reason: bind_reason(cfg.mode, errno),
            errno,
        }
    })?;
    // Kernels before 6.17 lack it and keep the budget of 32 per kick.
    let budget = ring::set_xdp_u32(fd.as_fd(), ring::XDP_MAX_TX_SKB_BUDGET, cfg.ring as u32);
    let zc = ring::is_zerocopy(fd.as_fd()).map_err(sys_err("XDP_OPTIONS", name))?;
    let q = XskQueue {
        ring: RingQueue::new(fd, tx),
        budget_raised: budget.is_ok(),
        frames: AtomicU64::new(0),
    };
    Ok((q, zc))
}

/// Opens the receive socket, or none.
fn open_rx(cfg: &XdpConfig, ifindex: u32) -> Result<Option<OwnedFd>, XdpError> {
    let proto = match cfg.rx {
        XdpRx::None => return Ok(None),
        XdpRx::Arp => libc::ETH_P_ARP as u16,
        XdpRx::All => libc::ETH_P_ALL as u16,
    };
    let fd = packet_socket(proto, &cfg.ifname)?;
    sys::bind_rx(fd.as_fd(), proto, ifindex).map_err(io_err("bind(AF_PACKET)", &cfg.ifname))?;
    Ok(Some(fd))
}

/// Checks the configuration's numbers.
fn check_config(cfg: &XdpConfig) -> Result<(), XdpError> {
    let bad = |reason: String| {
        Err(XdpError::Config {
            ifname: cfg.ifname.clone(),
            reason,
        })
    };
    if cfg.queues == 0 || cfg.queues > 256 {
        return bad(format!("queues must be 1..=256, not {}", cfg.queues));
    }
    if !cfg.ring.is_power_of_two() || !(2..=32768).contains(&cfg.ring) {
        return bad(format!(
            "ring must be a power of two in 2..=32768, not {}",
            cfg.ring
        ));
    }
    Ok(())
}

/// The interface's index, address and MTU, read through a packet socket,
/// and the socket (unbound: it receives nothing), kept to read the MTU
/// again — an XDP socket answers no interface ioctl.
fn interface(cfg: &XdpConfig) -> Result<(u32, [u8; 6], u32, OwnedFd), XdpError> {
    let name = cfg.ifname.as_str();
    if name.is_empty() || name.len() >= sys::IFNAMSIZ {
        return Err(XdpError::NoSuchInterface(name.to_string()));
    }
    let probe = packet_socket(0, name)?;
    let ifindex = rustix::net::netdevice::name_to_index(&probe, name).map_err(|e| match e {
        Errno::NODEV | Errno::NXIO => XdpError::NoSuchInterface(name.to_string()),
        e => sys_err("SIOCGIFINDEX", name)(e),
    })?;
    let hw = sys::if_hwaddr(probe.as_fd(), name).map_err(io_err("SIOCGIFHWADDR", name))?;
    let mtu = sys::if_mtu(probe.as_fd(), name).map_err(io_err("SIOCGIFMTU", name))?;
    Ok((ifindex, hw, mtu, probe))
}

impl XdpLink {
    /// Opens XDP sockets on the existing interface `cfg.ifname` (in the
    /// network namespace of the calling thread, see [`crate::netns`]),
    /// queues `cfg.first_queue ..` of it.
    pub fn open(cfg: &XdpConfig) -> Result<XdpLink, XdpError> {
        check_config(cfg)?;
        // AF_XDP first: a kernel without it says so before anything else.
        drop(xdp_socket(&cfg.ifname)?);
        let (ifindex, hw_addr, mtu, probe) = interface(cfg)?;
        let chunk = chunk_size(cfg, mtu)?;
        let mut queues = Vec::with_capacity(cfg.queues);
        let mut zerocopy = true;
        for i in 0..cfg.queues {
            let (q, zc) = open_queue(cfg, ifindex, cfg.first_queue + i as u32, chunk)?;
            zerocopy &= zc;
            queues.push(q);
        }
        let rx = open_rx(cfg, ifindex)?;
        Ok(XdpLink {
            shared: Arc::new(Shared {
                ifname: cfg.ifname.clone(),
                ifindex,
                hw_addr: EthernetAddress(hw_addr),
                mtu,
                zerocopy,
                queues: queues.into_boxed_slice(),
                rx,
                probe,
                c: Counters {
                    mtu: LiveMtu::new(&cfg.ifname, mtu),
                    ..Counters::default()
                },
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

    /// True when every queue's socket is bound in zero-copy mode.
    pub fn zerocopy(&self) -> bool {
        self.shared.zerocopy
    }

    /// Features for `DevConfig::features`: scatter-gather and chained
    /// buffers (gathered into the UMEM frame), copied at transmit.
    pub fn features(&self) -> Features {
        Features::SG | Features::FRAGLIST | Features::COPY_AT_XMIT
    }

    /// A device configuration for the stack: `name`, the interface's
    /// address, MTU and this link's features.
    pub fn dev_config(&self, name: &str) -> DevConfig {
        let mut cfg = DevConfig::ethernet(name, self.hw_addr());
        cfg.mtu = self.mtu().clamp(ipxmit::dev::MIN_MTU, ipxmit::dev::MAX_MTU);
        cfg.features = self.features();
        cfg
    }

    /// One driver per queue, for `Stack::add_device` (queue 0's also
    /// receives).
    pub fn drivers(&self) -> Vec<Box<dyn Driver>> {
        (0..self.shared.queues.len())
            .map(|i| -> Box<dyn Driver> {
                let source: Arc<dyn WaitSource> = self.shared.clone();
                Box::new(XdpQueue {
                    shared: self.shared.clone(),
                    source,
                    index: i,
                    rx_buf: Vec::new(),
                })
            })
            .collect()
    }

    /// The counters so far.
    pub fn stats(&self) -> XdpStats {
        let c = &self.shared.c;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        XdpStats {
            tx_frames: g(&c.tx_frames),
            tx_bytes: g(&c.tx_bytes),
            tx_kicks: g(&c.tx_kicks),
            tx_kicks_skipped: g(&c.tx_kicks_skipped),
            tx_completed: g(&c.tx_completed),
            ring_full: g(&c.ring_full),
            tx_busy: g(&c.tx_busy),
            tx_dropped: g(&c.tx_dropped),
            tx_errors: g(&c.tx_errors),
            tx_oversize: c.misfits.oversize(),
            tx_runt: c.misfits.runt(),
            rx_frames: g(&c.rx_frames),
            rx_outgoing: g(&c.rx_outgoing),
            last_errno: c.last_errno.load(Ordering::Relaxed),
        }
    }

    /// True when the kernel took `XDP_MAX_TX_SKB_BUDGET` (Linux 6.17) on
    /// every queue: one copy-mode kick sends the whole ring, not 32 frames.
    pub fn tx_budget_raised(&self) -> bool {
        self.shared.queues.iter().all(|q| q.budget_raised)
    }

    /// Frames written into each queue's ring, by queue.
    pub fn queue_frames(&self) -> Vec<u64> {
        let q = self.shared.queues.iter();
        q.map(|q| q.frames.load(Ordering::Relaxed)).collect()
    }

    /// Descriptors the kernel found invalid on the TX rings
    /// (`XDP_STATISTICS`), all queues.
    pub fn tx_invalid_descs(&self) -> u64 {
        let q = self.shared.queues.iter();
        q.filter_map(|q| ring::tx_invalid_descs(q.ring.fd.as_fd()).ok())
            .sum()
    }

    /// The link as a [`WaitSource`], for [`crate::runner::Runner::watch`]
    /// when queue 0's driver is not polled by a stack.
    pub fn wait_source(&self) -> Arc<dyn WaitSource> {
        self.shared.clone()
    }
}

impl XskTx {
    /// Kernel: the completion-ring half of a NIC's TX clean-up. Returns
    /// the frames the kernel is done with to the free stack.
    fn reap_cq(&mut self, c: &Counters) {
        let free = &mut self.free;
        let n = self.cq.drain(|addr| free.push(addr));
        if n > 0 {
            c.tx_completed.fetch_add(u64::from(n), Ordering::Relaxed);
        }
    }

    /// Copies `pkt` into a free frame and writes its descriptor; false
    /// (frame kept) when it does not fit a frame.
    fn put(&mut self, pkt: &PacketBuf) -> bool {
        let Some(&addr) = self.free.last() else {
            return false;
        };
        let Some(len) = self.umem.fill(addr, pkt) else {
            return false;
        };
        self.free.pop();
        self.tx.push(addr, len);
        self.pending += 1;
        true
    }
}

impl RingTx for XskTx {
    type Counters = Counters;

    /// Kernel: the doorbell — `xskq_prod_submit` then, only when the ring
    /// asks for it (`XDP_RING_NEED_WAKEUP`), `sendto`. Copy mode sends up
    /// to the TX budget per kick: kicks again while the kernel takes more
    /// (a few times at most). A frame the device dropped ends the kick
    /// (`EBUSY`, its descriptor consumed): kicking again then is no retry
    /// and spends none of the few, so a run of drops holds nothing up.
    fn push_out(&mut self, fd: &OwnedFd, c: &Counters) -> Flow {
        self.tx.submit();
        self.pending = 0;
        let mut tries = 4;
        // Each drop consumed a descriptor: no more drops than the ring holds.
        let mut drops = self.tx.unsent();
        while tries > 0 {
            let unsent = self.tx.unsent();
            if unsent == 0 {
                return Flow::Clear;
            }
            if !self.tx.needs_wakeup() {
                c.tx_kicks_skipped.fetch_add(1, Ordering::Relaxed);
                return Flow::Clear;
            }
            c.tx_kicks.fetch_add(1, Ordering::Relaxed);
            tries -= 1;
            match ring::kick(fd.as_fd()) {
                Ok(()) => {}
                Err(Errno::BUSY) if drops > 0 => {
                    c.dropped();
                    drops -= 1;
                    tries += 1;
                }
                Err(Errno::BUSY) => c.dropped(),
                Err(Errno::AGAIN) => {
                    // Budget spent, completion ring full or the device
                    // busy: reap, and go on while the kernel progresses.
                    self.reap_cq(c);
                    if self.tx.unsent() == unsent {
                        return Flow::Full;
                    }
                }
                Err(Errno::NOBUFS | Errno::NETDOWN) => return Flow::Refused,
                Err(e) => {
                    c.error(e);
                    return Flow::Refused;
                }
            }
        }
        if self.tx.unsent() == 0 {
            Flow::Clear
        } else {
            Flow::Full
        }
    }

    fn reap(&mut self, c: &Counters) -> Option<Reaped> {
        self.reap_cq(c);
        Some(Reaped {
            in_flight: self.frames - self.free.len(),
            bytes: 0,
        })
    }

    /// True when a frame and a ring slot are free.
    fn has_room(&mut self) -> bool {
        !self.free.is_empty() && self.tx.free() > 0
    }

    fn count_full(c: &Counters) {
        c.ring_full.fetch_add(1, Ordering::Relaxed);
    }

    fn count_busy(c: &Counters) {
        c.tx_busy.fetch_add(1, Ordering::Relaxed);
    }
}

impl WaitSource for Shared {
    fn wait_fds<'a>(&'a self, out: &mut Vec<WaitFd<'a>>) -> Option<Duration> {
        let queues = self.queues.iter().map(|q| &q.ring);
        txring::wait_fds(self.rx.as_ref(), queues, &POLICY, out)
    }

    fn complete_tx(&self) {
        self.c.mtu.refresh_if_stale(self.probe.as_fd());
        for q in self.queues.iter() {
            q.ring.service(&self.c, &POLICY, || true);
        }
    }
}

/// The driver of one queue of an [`XdpLink`].
struct XdpQueue {
    shared: Arc<Shared>,
    source: Arc<dyn WaitSource>,
    index: usize,
    rx_buf: Vec<u8>,
}

impl Driver for XdpQueue {
    fn attach(&mut self, ctl: Arc<TxQueueCtl>) {
        self.shared.c.late.attach(ctl.clone());
        self.shared.queues[self.index].ring.attach(ctl);
    }

    /// Kernel: a NIC's `ndo_start_xmit` on an XDP-socket-like ring. Reaps
    /// completions, copies `pkt` into a free frame and the ring, rings the
    /// doorbell at the end of the batch; hands `pkt` back (`Busy`) when no
    /// room returns after a kick. A frame over the interface's MTU or
    /// shorter than an Ethernet header is refused and counted
    /// ([`XdpStats::tx_oversize`], [`XdpStats::tx_runt`]).
    fn start_xmit(&mut self, pkt: PacketBuf, more: bool) -> TxStatus {
        let sh = &*self.shared;
        let q = &sh.queues[self.index];
        if let Some(m) = sh.c.mtu.misfit_fresh(pkt.len(), false, sh.probe.as_fd()) {
            sh.c.refuse(m);
            return TxStatus::Error;
        }
        let mut tx = q.ring.tx.lock();
        tx.reap_cq(&sh.c);
        let Some(mut tx) = q.ring.make_room(tx, &sh.c) else {
            return TxStatus::Busy(pkt);
        };
        if !tx.put(&pkt) {
            // Over a UMEM frame: the MTU was raised past it.
            sh.c.refuse(Misfit::Oversize);
            return TxStatus::Error;
        }
        sh.c.tx_frames.fetch_add(1, Ordering::Relaxed);
        q.frames.fetch_add(1, Ordering::Relaxed);
        q.ring.set_in_flight(tx.frames - tx.free.len());
        sh.c.tx_bytes.fetch_add(pkt.len() as u64, Ordering::Relaxed);
        if !more || tx.pending >= tx.batch {
            q.ring.doorbell(tx, &sh.c);
        }
        TxStatus::Ok
    }

    fn flush(&mut self) {
        let sh = &*self.shared;
        let q = &sh.queues[self.index];
        q.ring.doorbell(q.ring.tx.lock(), &sh.c);
    }

    /// Reads up to `budget` frames from the receive socket, skipping our
    /// own outgoing ones, and completes stopped queues.
    fn poll_rx(&mut self, budget: usize, rx: &mut dyn FnMut(&[u8])) -> usize {
        runner::announce(&self.source);
        let sh = self.shared.clone();
        for q in sh.queues.iter() {
            if q.ring.needs_completion(&POLICY) {
                q.ring.complete(&sh.c, &POLICY);
            }
        }
        let Some(fd) = &sh.rx else {
            return 0;
        };
        let c = RxCounters {
            frames: &sh.c.rx_frames,
            outgoing: &sh.c.rx_outgoing,
        };
        txring::recv_frames(fd, &mut self.rx_buf, budget, c, rx)
    }

    fn rx_fd(&self) -> Option<RawFd> {
        self.shared.rx.as_ref().map(|f| f.as_raw_fd())
    }
}
