//! The TAP/TUN driver: frames written to `/dev/net/tun`, received by the kernel
//! as if they had arrived on a NIC.
//!
//! Stands for the user-space half of `drivers/net/tun.c`: our transmit is the
//! kernel's receive, `tun_chr_write_iter` -> `tun_get_user` (one frame per
//! `writev`, the `virtio_net_hdr` first, then the frame's segments gathered
//! straight from the buffer — no flattening copy); our receive is its transmit,
//! `tun_net_xmit` -> `tun_chr_read_iter`/`tun_put_user`. The device is created
//! or attached with `TUNSETIFF` (`tun_set_iff`: `IFF_TAP` or `IFF_TUN`,
//! `IFF_NO_PI`, `IFF_VNET_HDR`, `IFF_MULTI_QUEUE` with one fd per transmit
//! queue), offloads are negotiated with `TUNSETOFFLOAD` (`set_offload`).
//!
//! Offloads travel in the `virtio_net_hdr` of `include/uapi/linux/virtio_net.h`,
//! decoded by the kernel's `virtio_net_hdr_to_skb`: a `CHECKSUM_PARTIAL` buffer
//! becomes `VIRTIO_NET_HDR_F_NEEDS_CSUM` with `csum_start`/`csum_offset` relative
//! to the frame start, a UDP GSO buffer becomes `VIRTIO_NET_HDR_GSO_UDP_L4` with
//! `gso_size` and `hdr_len`, a UFO datagram becomes `VIRTIO_NET_HDR_GSO_UDP`
//! — the kernel then completes the checksum or segments the super-packet
//! itself. A UFO datagram is taken whole: delivered locally, the kernel's
//! UDP socket reads it as one datagram (no reassembly); forwarded out of a
//! device without UFO, `skb_gso_segment` (`udp4_ufo_fragment`) cuts it into
//! the fragments `ip_fragment` would make, one IP ID for all. Whether the
//! kernel takes it is probed with `TUNSETOFFLOAD` `TUN_F_UFO` (accepted
//! with `TUN_F_CSUM` by every kernel that takes the header from tun's
//! writer; refused alone), and only then [`Features::UFO`] is granted. Only offloads the kernel granted are
//! reported in [`TapDevice::features`]; the caller puts them in
//! `DevConfig::features`, and the stack does the rest in software
//! (`validate_xmit_skb`).
//!
//! Flow control: a write that finds no room (`EAGAIN`/`ENOBUFS` on the
//! non-blocking fd, e.g. over `TUNSETSNDBUF`) stops the queue and hands the frame
//! back ([`TxStatus::Busy`]); `POLLOUT` on the fd — seen by the
//! [`runner`](crate::runner::Runner) or re-checked in `poll_rx` — wakes it.
//!
//! No byte queue limits (`dql`): a `writev` to the TAP fd completes before it
//! returns — `tun_get_user` has built the buffer and handed it to the
//! kernel's receive path (`netif_rx`, or the device's NAPI) or dropped it —
//! so there is no later transmit completion to report, and bytes "in
//! flight" would always be 0. The kernel agrees for its own side: `tun.c`
//! calls neither `netdev_tx_sent_queue` nor `netdev_tx_completed_queue`
//! (`tun_net_xmit` only puts the buffer in the reader's ring or drops it),
//! and a tun/tap device has no `byte_queue_limits` directory in sysfs.
//! Back-pressure here is the send budget of the fd (`EAGAIN`, then `POLLOUT`).

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipxmit::dev::{DevConfig, Driver, Features, LinkType, TxQueueCtl, TxStatus};
use ipxmit::wire::EthernetAddress;
use ipxmit::PacketBuf;
use rustix::io::Errno;

use crate::runner::{self, recycle, WaitFd, WaitSource};
use crate::sys;
use crate::txring::CtlSlot;

pub use crate::vnet::{
    vnet_header, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_UDP,
    VIRTIO_NET_HDR_GSO_UDP_L4, VNET_HDR_LEN,
};
/// Largest frame read back: a 64 KiB datagram, its link header and the vnet header.
const RX_BUF: usize = VNET_HDR_LEN + 14 + 65535 + 64;

/// Whether the device carries Ethernet frames or bare IP packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunMode {
    /// `IFF_TAP`: Ethernet frames.
    Tap,
    /// `IFF_TUN`: IP packets, no link header.
    Tun,
}

/// What to open. See [`TapDevice::open`].
#[derive(Clone, Debug)]
pub struct TapConfig {
    /// Device name; an existing device of that name is attached, a `%d`
    /// pattern (or empty) lets the kernel pick.
    pub name: String,
    /// TAP or TUN.
    pub mode: TunMode,
    /// Transmit queues, one fd each (`IFF_MULTI_QUEUE` when more than one).
    pub queues: usize,
    /// Put a `virtio_net_hdr` in front of each frame (`IFF_VNET_HDR`); needed
    /// for any offload.
    pub vnet_hdr: bool,
    /// Offloads wanted: [`Features::HW_CSUM`] (or `IP_CSUM`),
    /// [`Features::GSO_UDP_L4`] and [`Features::UFO`]; what the kernel grants is in
    /// [`TapDevice::features`].
    pub offload: Features,
    /// `TUNSETSNDBUF` for each fd (bytes in flight before writes find no room).
    pub sndbuf: Option<i32>,
}

impl TapConfig {
    /// A TAP device `name` with one queue, a vnet header and no offloads.
    pub fn tap(name: &str) -> TapConfig {
        TapConfig {
            name: name.to_string(),
            mode: TunMode::Tap,
            queues: 1,
            vnet_hdr: true,
            offload: Features::NONE,
            sndbuf: None,
        }
    }

    /// A TUN (L3) device `name`, otherwise as [`TapConfig::tap`].
    pub fn tun(name: &str) -> TapConfig {
        TapConfig {
            mode: TunMode::Tun,
            ..TapConfig::tap(name)
        }
    }
}

/// Errors of opening a TAP/TUN device.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// `/dev/net/tun` could not be opened.
    #[error("cannot open /dev/net/tun (is the tun module loaded?): {0}")]
    OpenTun(#[source] std::io::Error),
    /// `EPERM` from `TUNSETIFF`.
    #[error("creating or attaching tun/tap device {0:?} needs CAP_NET_ADMIN")]
    Permission(String),
    /// `EBUSY` from `TUNSETIFF`.
    #[error(
        "tun/tap device {0:?} is busy (attached by another process, or its queues are all taken)"
    )]
    Busy(String),
    /// `EINVAL` from `TUNSETIFF`: the name is taken by something else.
    #[error("{0:?} exists and is not a tun/tap device with these flags (mode, vnet header, multi-queue)")]
    Mismatch(String),
    /// An invalid configuration.
    #[error("invalid tap configuration: {0}")]
    Config(String),
    /// Any other failing system call.
    #[error("{what} on tun/tap device {dev:?}: {source}")]
    Sys {
        /// The call.
        what: &'static str,
        /// The device.
        dev: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Counters of a TAP device (all queues).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Frames written to the kernel.
    pub tx_frames: u64,
    /// Their bytes (without the vnet header).
    pub tx_bytes: u64,
    /// Writes that found no room (`EAGAIN`/`ENOBUFS`): frames handed back.
    pub tx_busy: u64,
    /// Frames the kernel refused (dropped, counted as `tx_errors`).
    pub tx_errors: u64,
    /// Frames read from the kernel.
    pub rx_frames: u64,
    /// Their bytes (without the vnet header).
    pub rx_bytes: u64,
    /// Reads that failed or were too short.
    pub rx_errors: u64,
    /// The errno of the last failed write or read, 0 if none.
    pub last_errno: i32,
}

#[derive(Default)]
struct Counters {
    tx_frames: AtomicU64,
    tx_bytes: AtomicU64,
    tx_busy: AtomicU64,
    tx_errors: AtomicU64,
    rx_frames: AtomicU64,
    rx_bytes: AtomicU64,
    rx_errors: AtomicU64,
    last_errno: AtomicI32,
}

struct QueueState {
    fd: OwnedFd,
    /// Stopped for lack of room; waiting for `POLLOUT`.
    waiting: AtomicBool,
    /// The stack's flow control of the queue (the latest attached).
    ctl: CtlSlot,
}

impl QueueState {
    /// Stopped for lack of room (by the driver's `block` before a busy
    /// return, or by anyone else holding the queue's flow control): either
    /// way a completion must wake it.
    fn needs_completion(&self) -> bool {
        self.waiting.load(Ordering::Acquire) || self.ctl.is_stopped()
    }
}

struct Shared {
    name: String,
    mode: TunMode,
    vnet: bool,
    features: Features,
    queues: Box<[QueueState]>,
    c: Counters,
}

/// An open TAP/TUN device: one fd per transmit queue. See the module
/// documentation. The device lives as long as this value or a driver of it.
pub struct TapDevice {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TapDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapDevice")
            .field("name", &self.shared.name)
            .field("mode", &self.shared.mode)
            .field("queues", &self.shared.queues.len())
            .field("features", &self.shared.features)
            .finish()
    }
}

fn sys_err<'a>(what: &'static str, dev: &'a str) -> impl FnOnce(std::io::Error) -> TapError + 'a {
    move |source| TapError::Sys {
        what,
        dev: dev.to_string(),
        source,
    }
}

/// `TUNSETIFF` flags of a configuration.
fn iff_flags(cfg: &TapConfig) -> u16 {
    let mut f = match cfg.mode {
        TunMode::Tap => libc::IFF_TAP,
        TunMode::Tun => libc::IFF_TUN,
    } | libc::IFF_NO_PI;
    if cfg.vnet_hdr {
        f |= libc::IFF_VNET_HDR;
    }
    if cfg.queues > 1 {
        f |= libc::IFF_MULTI_QUEUE;
    }
    f as u16
}

/// Opens one queue fd and attaches it to `name` with `TUNSETIFF`.
fn open_queue(name: &str, flags: u16) -> Result<(OwnedFd, String), TapError> {
    let fd = rustix::fs::open(
        "/dev/net/tun",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| TapError::OpenTun(e.into()))?;
    match sys::tun_set_iff(fd.as_fd(), name, flags) {
        Ok(n) => Ok((fd, n)),
        Err(e) => Err(match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => TapError::Permission(name.to_string()),
            Some(libc::EBUSY) => TapError::Busy(name.to_string()),
            Some(libc::EINVAL) => TapError::Mismatch(name.to_string()),
            _ => sys_err("TUNSETIFF", name)(e),
        }),
    }
}

/// Kernel: `set_offload()`, drivers/net/tun.c. Asks for the wanted offloads,
/// falling back to fewer on `EINVAL` (an older kernel); returns what was granted.
fn negotiate_offload(fd: &OwnedFd, want: Features, dev: &str) -> Result<Features, TapError> {
    let csum = want.can_csum() || want.intersects(Features::GSO_UDP_L4 | Features::UFO);
    let uso = (libc::TUN_F_USO4 | libc::TUN_F_USO6, Features::GSO_UDP_L4);
    let ufo = (libc::TUN_F_UFO, Features::UFO);
    let none = (0, Features::NONE);
    let mut tries: Vec<(u32, Features)> = Vec::new();
    for (a, b) in [(uso, ufo), (uso, none), (none, ufo), (none, none)] {
        let wanted = want.contains(a.1) && want.contains(b.1);
        if csum && wanted {
            tries.push((libc::TUN_F_CSUM | a.0 | b.0, Features::HW_CSUM | a.1 | b.1));
        }
    }
    for (flags, granted) in tries {
        match sys::tun_set_offload(fd.as_fd(), flags) {
            Ok(()) => return Ok(granted),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => continue,
            Err(e) => return Err(sys_err("TUNSETOFFLOAD", dev)(e)),
        }
    }
    sys::tun_set_offload(fd.as_fd(), 0).map_err(sys_err("TUNSETOFFLOAD", dev))?;
    Ok(Features::NONE)
}

/// Rejects configurations the kernel would refuse less clearly.
fn check_config(cfg: &TapConfig) -> Result<(), TapError> {
    if cfg.queues == 0 || cfg.queues > 256 {
        return Err(TapError::Config(format!(
            "queues must be 1..=256, not {}",
            cfg.queues
        )));
    }
    if cfg.name.len() >= sys::IFNAMSIZ {
        return Err(TapError::Config(format!(
            "interface name {:?} longer than 15 bytes",
            cfg.name
        )));
    }
    let offloads = Features::HW_CSUM | Features::IP_CSUM | Features::GSO_UDP_L4 | Features::UFO;
    if !cfg.vnet_hdr && cfg.offload.intersects(offloads) {
        return Err(TapError::Config("offloads need the vnet header".into()));
    }
    Ok(())
}

impl TapDevice {
    /// Creates the device (or attaches to an existing one of that name) and
    /// negotiates offloads. The device is created in the network namespace of
    /// the calling thread (see [`crate::netns`]).
    pub fn open(cfg: &TapConfig) -> Result<TapDevice, TapError> {
        check_config(cfg)?;
        let flags = iff_flags(cfg);
        let (first, name) = open_queue(&cfg.name, flags)?;
        let mut fds = vec![first];
        for _ in 1..cfg.queues {
            fds.push(open_queue(&name, flags)?.0);
        }
        let granted = if cfg.vnet_hdr {
            sys::tun_set_vnet_hdr_sz(fds[0].as_fd(), VNET_HDR_LEN as i32)
                .map_err(sys_err("TUNSETVNETHDRSZ", &name))?;
            negotiate_offload(&fds[0], cfg.offload, &name)?
        } else {
            Features::NONE
        };
        if let Some(b) = cfg.sndbuf {
            for fd in &fds {
                sys::tun_set_sndbuf(fd.as_fd(), b).map_err(sys_err("TUNSETSNDBUF", &name))?;
            }
        }
        let queues = fds
            .into_iter()
            .map(|fd| QueueState {
                fd,
                waiting: AtomicBool::new(false),
                ctl: CtlSlot::default(),
            })
            .collect();
        let features = Features::SG | Features::FRAGLIST | Features::COPY_AT_XMIT | granted;
        Ok(TapDevice {
            shared: Arc::new(Shared {
                name,
                mode: cfg.mode,
                vnet: cfg.vnet_hdr,
                features,
                queues,
                c: Counters::default(),
            }),
        })
    }

    /// The kernel's name of the device.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// TAP or TUN.
    pub fn mode(&self) -> TunMode {
        self.shared.mode
    }

    /// The link type for `DevConfig::link`.
    pub fn link_type(&self) -> LinkType {
        match self.shared.mode {
            TunMode::Tap => LinkType::Ethernet,
            TunMode::Tun => LinkType::L3,
        }
    }

    /// Features for `DevConfig::features`: scatter-gather (frames are
    /// gathered by `writev`) and the offloads the kernel granted.
    pub fn features(&self) -> Features {
        self.shared.features
    }

    /// Number of transmit queues (fds).
    pub fn queues(&self) -> usize {
        self.shared.queues.len()
    }

    /// The kernel side's hardware address (`SIOCGIFHWADDR` on the tun fd): the
    /// destination of frames meant for the kernel.
    pub fn kernel_mac(&self) -> Result<EthernetAddress, TapError> {
        let fd = self.shared.queues[0].fd.as_fd();
        let mac = sys::if_hwaddr(fd, &self.shared.name)
            .map_err(sys_err("SIOCGIFHWADDR", &self.shared.name))?;
        Ok(EthernetAddress(mac))
    }

    /// A device configuration for the stack: `name`, our `hw_addr` (must differ
    /// from the kernel side's), this device's link type and features, MTU 1500.
    pub fn dev_config(&self, name: &str, hw_addr: EthernetAddress) -> DevConfig {
        let mut cfg = DevConfig::ethernet(name, hw_addr);
        cfg.link = self.link_type();
        cfg.features = self.features();
        cfg
    }

    /// One driver per queue, for `Stack::add_device` (queue 0's also receives).
    pub fn drivers(&self) -> Vec<Box<dyn Driver>> {
        (0..self.shared.queues.len())
            .map(|i| -> Box<dyn Driver> {
                let source: Arc<dyn WaitSource> = self.shared.clone();
                Box::new(TapQueue {
                    shared: self.shared.clone(),
                    source,
                    index: i,
                    iov: Vec::new(),
                    rx_buf: Vec::new(),
                    rx_next: 0,
                })
            })
            .collect()
    }

    /// The counters so far.
    pub fn stats(&self) -> TapStats {
        let c = &self.shared.c;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TapStats {
            tx_frames: g(&c.tx_frames),
            tx_bytes: g(&c.tx_bytes),
            tx_busy: g(&c.tx_busy),
            tx_errors: g(&c.tx_errors),
            rx_frames: g(&c.rx_frames),
            rx_bytes: g(&c.rx_bytes),
            rx_errors: g(&c.rx_errors),
            last_errno: c.last_errno.load(Ordering::Relaxed),
        }
    }

    /// The device as a [`WaitSource`], for [`crate::runner::Runner::watch`]
    /// when queue 0's driver is not polled by a stack.
    pub fn wait_source(&self) -> Arc<dyn WaitSource> {
        self.shared.clone()
    }
}

impl Shared {
    /// Wakes the stopped queues whose fd has room again.
    fn wake_ready(&self) {
        for q in self.queues.iter() {
            if q.needs_completion() && sys::writable_now(&q.fd) {
                q.waiting.store(false, Ordering::Release);
                if let Some(ctl) = q.ctl.get() {
                    ctl.wake();
                }
            }
        }
    }
}

impl WaitSource for Shared {
    fn wait_fds<'a>(&'a self, out: &mut Vec<WaitFd<'a>>) -> Option<Duration> {
        for q in self.queues.iter() {
            out.push(WaitFd {
                fd: q.fd.as_fd(),
                readable: true,
                writable: q.needs_completion(),
            });
        }
        None
    }

    fn complete_tx(&self) {
        self.wake_ready();
    }
}

/// The driver of one queue of a [`TapDevice`].
struct TapQueue {
    shared: Arc<Shared>,
    source: Arc<dyn WaitSource>,
    index: usize,
    /// Reused gather list (empty between calls).
    iov: Vec<IoSlice<'static>>,
    rx_buf: Vec<u8>,
    rx_next: usize,
}

impl TapQueue {
    /// Stops the queue until `POLLOUT` and makes sure a runner hears of it.
    fn block(&self) {
        let q = &self.shared.queues[self.index];
        // Stop first: a completion that sees `waiting` must find the queue
        // stopped, or its wake-up would be lost.
        if let Some(ctl) = q.ctl.get() {
            ctl.stop();
        }
        q.waiting.store(true, Ordering::Release);
        if let Some(ctl) = q.ctl.get() {
            // Raise the stack's deferred work so a runner re-collects its
            // descriptors, now with POLLOUT on this one.
            ctl.schedule();
        }
    }

    /// Writes one frame: the vnet header and every segment, one `writev`.
    fn write_frame(&mut self, pkt: &PacketBuf) -> rustix::io::Result<usize> {
        let hdr = vnet_header(pkt);
        let mut iov: Vec<IoSlice<'_>> = recycle(std::mem::take(&mut self.iov));
        if self.shared.vnet {
            iov.push(IoSlice::new(&hdr));
        }
        pkt.for_each_segment(&mut |s| iov.push(IoSlice::new(s)));
        let fd = &self.shared.queues[self.index].fd;
        let r = loop {
            match rustix::io::writev(fd, &iov) {
                Err(Errno::INTR) => continue,
                r => break r,
            }
        };
        self.iov = recycle(iov);
        r
    }

    fn read_one(&mut self, q: usize, rx: &mut dyn FnMut(&[u8])) -> Result<(), Errno> {
        let c = &self.shared.c;
        let hdr = if self.shared.vnet { VNET_HDR_LEN } else { 0 };
        match rustix::io::read(&self.shared.queues[q].fd, &mut self.rx_buf[..]) {
            Ok(n) if n > hdr => {
                c.rx_frames.fetch_add(1, Ordering::Relaxed);
                c.rx_bytes.fetch_add((n - hdr) as u64, Ordering::Relaxed);
                rx(&self.rx_buf[hdr..n]);
                Ok(())
            }
            Ok(_) => {
                c.rx_errors.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                if e != Errno::AGAIN && e != Errno::INTR {
                    c.rx_errors.fetch_add(1, Ordering::Relaxed);
                    c.last_errno.store(e.raw_os_error(), Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }
}

impl Driver for TapQueue {
    fn attach(&mut self, ctl: Arc<TxQueueCtl>) {
        self.shared.queues[self.index].ctl.attach(ctl);
    }

    fn start_xmit(&mut self, pkt: PacketBuf, _more: bool) -> TxStatus {
        let r = self.write_frame(&pkt);
        let c = &self.shared.c;
        match r {
            Ok(_) => {
                c.tx_frames.fetch_add(1, Ordering::Relaxed);
                c.tx_bytes.fetch_add(pkt.len() as u64, Ordering::Relaxed);
                TxStatus::Ok
            }
            Err(e) if e == Errno::AGAIN || e == Errno::NOBUFS => {
                c.tx_busy.fetch_add(1, Ordering::Relaxed);
                self.block();
                TxStatus::Busy(pkt)
            }
            Err(e) => {
                c.tx_errors.fetch_add(1, Ordering::Relaxed);
                c.last_errno.store(e.raw_os_error(), Ordering::Relaxed);
                TxStatus::Error
            }
        }
    }

    /// Reads up to `budget` frames from every queue's fd in turn (the kernel
    /// spreads what it sends over the queues), strips the vnet header, and
    /// re-checks stopped queues for room.
    fn poll_rx(&mut self, budget: usize, rx: &mut dyn FnMut(&[u8])) -> usize {
        runner::announce(&self.source);
        self.shared.wake_ready();
        if self.rx_buf.len() < RX_BUF {
            self.rx_buf.resize(RX_BUF, 0);
        }
        let nq = self.shared.queues.len();
        let (mut got, mut idle) = (0, 0);
        while got < budget && idle < nq {
            let q = self.rx_next % nq;
            self.rx_next = (q + 1) % nq;
            match self.read_one(q, rx) {
                Ok(()) => {
                    got += 1;
                    idle = 0;
                }
                Err(_) => idle += 1,
            }
        }
        got
    }

    fn rx_fd(&self) -> Option<RawFd> {
        Some(self.shared.queues[0].fd.as_raw_fd())
    }
}
