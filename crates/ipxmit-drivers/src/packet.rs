//! The AF_PACKET driver: frames sent on an existing interface through packet
//! sockets, batched into one system call.
//!
//! Stands for the user-space half of `net/packet/af_packet.c`: `packet_sendmsg`
//! -> `packet_snd` for each message of a `sendmmsg` (a batch is built from the
//! stack's `xmit_more` hint: frames are held while `more` is true, up to
//! [`PacketConfig::batch`], and sent with the last one or on `flush`; each
//! frame's segments are its own iovecs, no flattening copy), or `tpacket_snd`
//! draining a `PACKET_TX_RING` that frames are copied into, one `send` per
//! batch. The ring's slots carry `TPACKET_V3` headers (the default; transmit
//! since Linux 4.11, frame-based as `TPACKET_V2`'s, `tp_next_offset` 0) or
//! `TPACKET_V2` headers ([`PacketConfig::version`]). `PACKET_QDISC_BYPASS`
//! makes the kernel hand frames straight to the interface's driver
//! (`packet_direct_xmit`) instead of its qdisc — ours already ran.
//!
//! Offloads: with [`PacketConfig::vnet_hdr`] (`PACKET_VNET_HDR`) every frame,
//! in a `sendmmsg` message or a ring slot, starts with the
//! [`virtio_net_hdr`](crate::vnet) the TAP driver writes too, and the kernel
//! applies it (`virtio_net_hdr_to_skb` in `packet_snd` and `tpacket_snd`):
//! a partial checksum is completed where the interface cannot (or travels
//! as `CHECKSUM_PARTIAL` to a veth peer, which trusts it), a UDP GSO
//! super-frame is segmented by the interface or in software
//! (`validate_xmit_skb`) — or, on a veth, handed whole to the peer, whose
//! UDP socket splits it into datagrams. The link then advertises `HW_CSUM`
//! and `GSO_UDP_L4` ([`PacketLink::features`]); a ring's slots are sized
//! for 64 KiB super-frames unless a smaller `frame_size` is given (then
//! only checksum offload is granted). With `PACKET_QDISC_BYPASS` the kernel
//! cannot segment in software (`__dev_direct_xmit` drops what
//! `validate_xmit_skb` would split), so UDP GSO is granted there only when
//! the interface has `tx-udp-segmentation` on (as a veth has, and NICs with
//! USO); without the bypass the kernel's qdisc path segments.
//! UFO (a UDP datagram over the MTU in one `VIRTIO_NET_HDR_GSO_UDP` frame)
//! is taken by `packet_snd` too; no interface has UFO any more, so the
//! kernel always cuts it in software (`udp4_ufo_fragment`: the fragments
//! `ip_fragment` makes) and [`Features::UFO`] is granted only without the
//! bypass, in a ring only with 64 KiB slots.
//!
//! Flow control: when the socket has no room (`EAGAIN` from
//! `sock_alloc_send_skb` over `SO_SNDBUF`, a full ring) or the device refused a
//! frame (`ENOBUFS`), the frames already accepted stay in the driver, the queue
//! is stopped, and a frame offered while full is handed back
//! ([`TxStatus::Busy`]). Transmit completion — `POLLOUT` on the socket seen by
//! the [`runner`](crate::runner::Runner) (or a short retry timer after `ENOBUFS`) —
//! sends what is held and wakes the queue. Nothing is lost — save a frame
//! the device refuses (`ENOBUFS`) for [`REFUSED_DROP`] with nothing sent
//! meanwhile: the kernel hands a frame its device dropped back to be
//! offered again, for ever if the device never takes it (a veth whose
//! peer's MTU is below it), so it is dropped then and counted
//! ([`PacketStats::tx_dropped`]); a ring slot is made for `tpacket_snd` to
//! skip (`tp_len` 0).
//!
//! Frames the kernel refuses: `packet_snd` answers a `sendmmsg` frame over
//! the interface's MTU with `EMSGSIZE` (counted in `tx_errors`). In a ring,
//! `tpacket_snd` would skip such a slot (`PACKET_LOSS`, set so that a
//! refused slot cannot hold the ring's head: it marks the slot
//! `TP_STATUS_AVAILABLE` and nothing else), so the driver refuses it first,
//! against the MTU it last read, and one shorter than an Ethernet header
//! (`PacketStats::tx_oversize`, `tx_runt`). A slot skipped all the same —
//! the MTU lowered after the slot was filled — looks like a slot sent
//! (same status, `tp_len` untouched, no timestamp bits: those come from
//! `tpacket_destruct_skb`, which a skipped slot's skb never reaches, and
//! a veth frees a sent one before any stamp; nothing on the error queue,
//! no `PACKET_STATISTICS` count): only `send`'s return tells it, the bytes
//! of the frames handed to the device. The driver compares it with the
//! slots the kernel took, counts what is missing (`tx_skipped`), and reads
//! the MTU again (see `Ring::account`).
//!
//! Byte queue limits (the kernel's `dql`, see [`ipxmit::dev::dql`]) apply in
//! [`PacketMode::TxRing`], where the analogy with a NIC holds: the ring is the
//! descriptor ring, `send` is the doorbell, and the kernel hands a slot back
//! (`TP_STATUS_AVAILABLE`, from `tpacket_destruct_skb`) once the frame's buffer
//! is freed — a transmit completion that comes later, in the kernel's
//! context. A frame copied into a slot is reported with
//! [`TxQueueCtl::sent_queue`] (`netdev_tx_sent_queue`; over the limit the
//! queue stops with `STACK_XOFF` and the doorbell rings at once, as
//! `__netdev_tx_sent_queue` tells a driver to). Released slots are found by
//! scanning from the oldest outstanding one and reported with
//! [`TxQueueCtl::completed_queue`] (`netdev_tx_completed_queue`), which
//! adapts the limit and wakes the queue: when the driver next runs (as
//! drivers that clean their ring in `ndo_start_xmit` do), and from the
//! stack's receive poll and the [`runner`](crate::runner::Runner) (the
//! completion interrupt and NAPI poll), which comes back after
//! [`RING_RETRY`] while the limit holds the queue and after [`RING_REAP`]
//! while frames are otherwise in flight.
//!
//! A caveat of the kernel's TX ring, not of this driver: `tpacket_snd` maps
//! a slot's data into the skb (page fragments, no copy) and the slot comes
//! back when the skb is orphaned, which a veth does when it forwards the
//! skb into the peer's namespace. Data still referenced there — IP
//! fragments waiting for reassembly — is then rewritten when the slot is
//! reused, so a receiver behind a veth can get a corrupted fragmented
//! datagram from a small, busy ring. A real NIC orphans after its DMA.
//! Use [`PacketMode::Sendmmsg`] (which copies) for fragmented traffic to a
//! veth, or a ring large enough that slots rest longer than reassembly, or
//! the vnet header: with it a slot's frame (unless GSO) is asked linear
//! whole (`hdr_len`), so `tpacket_snd` copies it into the skb and no page
//! of the ring is referenced once `send` returns.
//!
//! [`PacketMode::Sendmmsg`] has no byte queue limits. A `sendmmsg` returns
//! when the kernel has taken (or refused) each frame; no later event says
//! that a frame left, so nothing could be reported as completed except at
//! once, which would only make the limit chase the largest frame and cut
//! batches short. The socket's send budget (`SO_SNDBUF`, `EAGAIN`, then
//! `POLLOUT`) is the back-pressure there, as it is for the kernel's own
//! virtual devices without a completion (veth, tun and loopback keep no
//! `byte_queue_limits` in sysfs).
//!
//! Receive (for ARP replies): a second packet socket bound to the interface
//! (`packet_rcv`), frames read with `recvfrom`; our own outgoing frames
//! (`PACKET_OUTGOING`) are ignored, by `PACKET_IGNORE_OUTGOING` and by
//! checking `sll_pkttype`.

use std::io::IoSlice;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipxmit::dev::{DevConfig, Driver, Features, TxQueueCtl, TxStatus};
use ipxmit::time::Instant;
use ipxmit::wire::EthernetAddress;
use ipxmit::PacketBuf;
use rustix::io::Errno;
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags};

use crate::runner::{self, recycle, WaitFd, WaitSource};
pub use crate::sys::TpacketVersion;
use crate::sys::{self, TxRingMap, TP_STATUS_KERNEL};
use crate::txring::{
    self, Flow, LiveMtu, Misfit, MisfitCounts, Policy, Reaped, RingQueue, RingTx, RxCounters,
};
use crate::vnet::{vnet_header, VNET_HDR_LEN};

/// Default largest batch of one `sendmmsg`.
pub const DEFAULT_BATCH: usize = 64;
/// Retry time after the device refused a frame (`ENOBUFS`): there is no
/// `POLLOUT` to wait for then.
const NOBUFS_RETRY: Duration = Duration::from_millis(1);
/// How long the device may refuse the same frame (`ENOBUFS`: it dropped
/// it, `NET_XMIT_DROP`, or was busy), with nothing sent meanwhile, before
/// the driver drops it ([`PacketStats::tx_dropped`]). Congestion clears in
/// far less; a frame the device will never take — over a veth peer's MTU —
/// would otherwise be offered again for ever, and everything behind it
/// wait.
pub const REFUSED_DROP: Duration = Duration::from_millis(100);
/// Retry time when `POLLOUT` fired but the ring slot is still in flight,
/// and while byte queue limits hold a ring's queue stopped.
pub const RING_RETRY: Duration = Duration::from_micros(100);
/// How soon the runner looks for released slots while ring frames are in
/// flight and the queue runs, so that the byte queue limits' `inflight`
/// falls to 0 once the kernel is done (while frames keep coming, the driver
/// finds completions itself).
pub const RING_REAP: Duration = Duration::from_millis(10);

/// When a ring queue's completions are seen: by scanning the ring (at
/// every poll while stopped, every [`RING_RETRY`] while the byte queue
/// limits hold it, every [`RING_REAP`] while frames are in flight).
const RING_POLICY: Policy = Policy {
    reap: RING_REAP,
    retry: RING_RETRY,
    pollout_fallback: None,
    in_memory: true,
    any_stop: true,
};

/// When a `sendmmsg` queue's completions are seen: `POLLOUT` when the
/// socket was full, [`NOBUFS_RETRY`] after the device refused.
const MMSG_POLICY: Policy = Policy {
    reap: RING_REAP,
    retry: NOBUFS_RETRY,
    pollout_fallback: None,
    in_memory: false,
    any_stop: true,
};

/// The time of transmit completions: `CLOCK_MONOTONIC_COARSE`, a few
/// nanoseconds to read and ticking with the kernel's jiffies, which is what
/// the kernel's `dql` measures its hold time in.
fn completion_time() -> Instant {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    Instant::from_nanos(t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
}

/// How frames reach the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketMode {
    /// One `sendmmsg` per batch, each frame's segments as iovecs.
    Sendmmsg,
    /// A `PACKET_TX_RING` ([`PacketConfig::version`]) of `frames` slots of
    /// `frame_size` bytes (a multiple of 16; frame data starts 32 bytes in
    /// with `TPACKET_V2`, 48 with `TPACKET_V3`), one `send` per batch, with
    /// byte queue limits (see the module documentation).
    TxRing {
        /// Slots in the ring.
        frames: usize,
        /// Bytes per slot; 0: the smallest that holds a frame of the
        /// interface's MTU (and its vnet header), or with UDP GSO granted a
        /// 64 KiB super-frame.
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
    /// The TX ring's `PACKET_VERSION` (with [`PacketMode::TxRing`]).
    pub version: TpacketVersion,
    /// `PACKET_VNET_HDR`: a `virtio_net_hdr` in front of each frame; needed
    /// for any offload.
    pub vnet_hdr: bool,
    /// Offloads wanted (with `vnet_hdr`): [`Features::HW_CSUM`] (or
    /// `IP_CSUM`), [`Features::GSO_UDP_L4`] and [`Features::UFO`]; what is granted is in
    /// [`PacketLink::features`].
    pub offload: Features,
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
    /// `ifname` with one queue, sendmmsg batches of 64 (a ring would be
    /// `TPACKET_V3`), no vnet header, qdisc bypass, ARP receive.
    pub fn new(ifname: &str) -> PacketConfig {
        PacketConfig {
            ifname: ifname.to_string(),
            queues: 1,
            mode: PacketMode::Sendmmsg,
            version: TpacketVersion::V3,
            vnet_hdr: false,
            offload: Features::NONE,
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
    /// Frames dropped on an error: refused before the ring
    /// ([`PacketStats::tx_oversize`], [`PacketStats::tx_runt`]), skipped by
    /// the kernel ([`PacketStats::tx_skipped`]), or refused by a system call.
    pub tx_errors: u64,
    /// Ring frames refused for being over the interface's MTU plus its
    /// Ethernet header (`EMSGSIZE`, as `tpacket_snd` refuses them; without
    /// the vnet header), never put in a slot.
    pub tx_oversize: u64,
    /// Ring frames refused for being shorter than an Ethernet header
    /// (`EINVAL`, as `dev_validate_header` in `tpacket_snd` refuses them).
    pub tx_runt: u64,
    /// Ring slots the kernel skipped (`PACKET_LOSS`) for a reason the driver
    /// could not see when it filled them — the interface's MTU lowered
    /// since. Found from `send`'s return, the bytes of the frames
    /// `tpacket_snd` handed to the device: short of the slots it took, the
    /// difference was skipped. Counted in `tx_errors` too (`EMSGSIZE`, or
    /// `EINVAL` when no slot is over the MTU read again), and taken back
    /// from `tx_frames` and `tx_bytes`.
    pub tx_skipped: u64,
    /// Frames dropped after the device refused them (`ENOBUFS`) for
    /// [`REFUSED_DROP`] with nothing sent meanwhile (the kernel hands such
    /// a frame back to be offered again: `tpacket_snd` puts its slot back,
    /// `packet_snd` returns the error). A veth drops a frame over its
    /// peer's MTU so, and counts each offer in its TX `dropped`.
    pub tx_dropped: u64,
    /// Frames received and handed up.
    pub rx_frames: u64,
    /// Our own outgoing frames seen and ignored.
    pub rx_outgoing: u64,
    /// The errno of the last failure, 0 if none.
    pub last_errno: i32,
}

#[derive(Default)]
struct Counters {
    /// The interface's MTU as ring frames are checked against it.
    mtu: LiveMtu,
    /// The stack's flow control of a queue (the last attached): where
    /// frames dropped after `start_xmit` took them are reported, for the
    /// device's `tx_dropped` and drop reasons.
    late: txring::CtlSlot,
    tx_frames: AtomicU64,
    tx_bytes: AtomicU64,
    tx_syscalls: AtomicU64,
    tx_busy: AtomicU64,
    tx_errors: AtomicU64,
    misfits: MisfitCounts,
    tx_skipped: AtomicU64,
    tx_dropped: AtomicU64,
    rx_frames: AtomicU64,
    rx_outgoing: AtomicU64,
    last_errno: AtomicI32,
}

impl Counters {
    fn error(&self, e: Errno) {
        self.tx_errors.fetch_add(1, Ordering::Relaxed);
        self.last_errno.store(e.raw_os_error(), Ordering::Relaxed);
    }

    /// Counts a frame of `len` bytes dropped after the device kept
    /// refusing it, here and for the stack; `counted`: it was counted as
    /// sent (a ring slot), taken back.
    fn dropped(&self, len: u64, counted: bool) {
        self.tx_dropped.fetch_add(1, Ordering::Relaxed);
        self.last_errno
            .store(Errno::NOBUFS.raw_os_error(), Ordering::Relaxed);
        if counted {
            self.tx_frames.fetch_sub(1, Ordering::Relaxed);
            self.tx_bytes.fetch_sub(len, Ordering::Relaxed);
        }
        self.late.late_drop(1, len);
    }

    /// Counts a frame refused before the ring, under its reason.
    fn refuse(&self, m: Misfit) {
        self.misfits.count(m);
        self.error(m.errno());
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
    /// Slots filled and not yet taken by the kernel (still
    /// `TP_STATUS_SEND_REQUEST`): the newest ones, before `head`.
    pending: usize,
    /// The bytes of their frames.
    pending_bytes: u64,
    /// Frames follow a vnet header: no MTU limit.
    vnet: bool,
    /// Since when the device refuses the first pending slot with nothing
    /// sent meanwhile ([`refused_too_long`]).
    refused_since: u64,
    /// The first pending slot, made for the kernel to skip after the
    /// device refused it for [`REFUSED_DROP`] ([`Ring::refused`]).
    dropping: Option<usize>,
    /// The last slot filled.
    last: usize,
    /// The oldest slot handed to the kernel and not yet seen released.
    tail: usize,
    /// Slots from `tail` to `head`: filled, not yet seen released.
    outstanding: usize,
    /// The frame length in each slot, for its completion.
    lens: Box<[u32]>,
    /// The clock's reading at the last completion (the time
    /// [`TxQueueCtl::sent_queue`] starts the limit's hold time from).
    stamp: Instant,
}

impl Ring {
    fn new(map: TxRingMap, now: Instant, vnet: bool) -> Ring {
        let lens = vec![0; map.frames()].into_boxed_slice();
        Ring {
            map,
            head: 0,
            pending: 0,
            pending_bytes: 0,
            vnet,
            refused_since: 0,
            dropping: None,
            last: 0,
            tail: 0,
            outstanding: 0,
            lens,
            stamp: now,
        }
    }

    /// True when the slot at `head` is ours (all filled slots not yet seen
    /// released are counted in `outstanding`).
    fn has_free_slot(&self) -> bool {
        self.outstanding < self.map.frames()
    }

    /// Copies `pkt` (after its vnet header, with `vnet`) into the slot at
    /// `head` and hands it to the kernel; false when it does not fit.
    fn put(&mut self, pkt: &PacketBuf, vnet: bool) -> bool {
        let hdr = if vnet {
            ring_vnet_header(pkt)
        } else {
            [0; VNET_HDR_LEN]
        };
        let hdr = if vnet { &hdr[..] } else { &[][..] };
        if !self.map.fill(self.head, hdr, pkt) {
            return false;
        }
        self.lens[self.head] = pkt.len() as u32;
        self.last = self.head;
        self.head = (self.head + 1) % self.map.frames();
        self.pending += 1;
        self.pending_bytes += pkt.len() as u64;
        self.outstanding += 1;
        true
    }

    /// Kernel: the slots `tpacket_snd` took in the `send` just made — it
    /// takes them in order, and none it took is `TP_STATUS_SEND_REQUEST`
    /// any more — and their frames' bytes. The last pending slot alone
    /// tells when it took them all.
    fn taken(&self) -> (usize, u64) {
        if self.pending == 0 {
            return (0, 0);
        }
        if self.map.status(self.last) != libc::TP_STATUS_SEND_REQUEST {
            return (self.pending, self.pending_bytes);
        }
        let n = self.map.frames();
        let first = (self.head + n - self.pending) % n;
        let (mut k, mut bytes) = (0, 0u64);
        while k < self.pending {
            let i = (first + k) % n;
            if self.map.status(i) == libc::TP_STATUS_SEND_REQUEST {
                break;
            }
            bytes += u64::from(self.lens[i]);
            k += 1;
        }
        (k, bytes)
    }

    /// Accounts a `send` that took `taken` slots (count, bytes) and
    /// handed `sent` bytes of them to the device (`None`: not known). The
    /// kernel's `tpacket_snd` returns the sum of the lengths of the frames
    /// it handed on (`len_sum`); a slot it skipped under `PACKET_LOSS`
    /// (`tpacket_error`: marked `TP_STATUS_AVAILABLE`, nothing else
    /// written) is left out of it, and nothing else tells it from a slot
    /// sent: the difference is what was skipped ([`Ring::skipped`]).
    /// A slot made to be skipped ([`Ring::refused`]) is the first taken:
    /// counted as dropped, not as skipped.
    fn account(&mut self, fd: &OwnedFd, c: &Counters, taken: (usize, u64), sent: Option<u64>) {
        let (k, bytes) = taken;
        if k == 0 {
            return;
        }
        self.refused_since = 0;
        let (mut from, mut expected) = (0, bytes);
        if let Some(i) = self.dropping.take() {
            let len = u64::from(self.lens[i]);
            c.dropped(len, true);
            (from, expected) = (1, bytes - len);
        }
        if let Some(sent) = sent.filter(|&s| s < expected) {
            self.skipped(fd, c, from..k, expected - sent);
        }
        self.pending -= k;
        self.pending_bytes -= bytes;
    }

    /// Kernel: `tpacket_snd` put the first pending slot back (`ENOBUFS`:
    /// the device dropped its frame or was busy) to offer it again at the
    /// next `send`. Refused so for [`REFUSED_DROP`] with nothing sent, it
    /// is made for the kernel to skip ([`TxRingMap::poison`]) and counted
    /// as dropped when it is.
    fn refused(&mut self) {
        if self.pending == 0 || self.dropping.is_some() {
            return;
        }
        if refused_too_long(&mut self.refused_since) {
            let n = self.map.frames();
            let first = (self.head + n - self.pending) % n;
            self.map.poison(first);
            self.dropping = Some(first);
        }
    }

    /// Counts the slots of the pending ones in `slots` (from the oldest)
    /// that the kernel skipped, `missing` bytes in all: the interface's MTU
    /// is read again (what the driver could not see: it was lowered), and
    /// the slots over it are the skipped ones (`EMSGSIZE`); none over it,
    /// one is counted (`EINVAL`). They were counted as sent: taken back.
    fn skipped(&self, fd: &OwnedFd, c: &Counters, slots: Range<usize>, missing: u64) {
        c.mtu.refresh(fd.as_fd());
        let n = self.map.frames();
        let first = (self.head + n - self.pending) % n;
        let over = slots
            .filter(|j| {
                let len = self.lens[(first + j) % n] as usize;
                c.mtu.misfit(len, self.vnet).is_some()
            })
            .count() as u64;
        let (count, errno) = match over {
            0 => (1, Errno::INVAL),
            n => (n, Errno::MSGSIZE),
        };
        c.tx_skipped.fetch_add(count, Ordering::Relaxed);
        c.tx_errors.fetch_add(count, Ordering::Relaxed);
        c.last_errno.store(errno.raw_os_error(), Ordering::Relaxed);
        c.tx_frames.fetch_sub(count, Ordering::Relaxed);
        c.tx_bytes.fetch_sub(missing, Ordering::Relaxed);
        c.late.late_drop(count, missing);
    }

    /// Kernel: the descriptor scan of a NIC's transmit-completion poll.
    /// Walks from the oldest outstanding slot while the kernel has handed
    /// slots back, and returns their bytes. A slot the kernel rejected
    /// (`TP_STATUS_WRONG_FORMAT`, not sent) is counted as an error, made
    /// available again, and completes too: its bytes leave the queue. (With
    /// `PACKET_LOSS`, set on every ring, the kernel skips such a slot and
    /// hands it back available itself; [`Ring::account`] counts it.)
    fn reap(&mut self, c: &Counters) -> u64 {
        let mut bytes = 0u64;
        while self.outstanding > 0 {
            let st = self.map.status(self.tail);
            if st & TP_STATUS_KERNEL != 0 {
                break;
            }
            if st & libc::TP_STATUS_WRONG_FORMAT != 0 {
                c.error(Errno::INVAL);
                self.map.set_available(self.tail);
            }
            bytes += u64::from(self.lens[self.tail]);
            self.tail = (self.tail + 1) % self.map.frames();
            self.outstanding -= 1;
        }
        bytes
    }
}

/// True when a refusal that began at `since` (0: none yet; set now) has
/// lasted [`REFUSED_DROP`]; then `since` starts again.
fn refused_too_long(since: &mut u64) -> bool {
    let now = txring::coarse_nanos();
    if *since == 0 {
        *since = now;
        return false;
    }
    if now.saturating_sub(*since) < REFUSED_DROP.as_nanos() as u64 {
        return false;
    }
    *since = 0;
    true
}

/// Kernel: the `hdr_len` of a ring slot's vnet header as `tpacket_snd` reads
/// it: how much of the slot it copies into the skb's linear part; the rest
/// of the slot's pages it maps into the skb (no copy), which a veth then
/// copies again (`skb_orphan_frags`, the pages are the ring's) and which
/// keeps the slot's data referenced meanwhile. A frame that is not GSO is
/// asked linear whole: one copy into a plain buffer, and nothing of the
/// slot is used once `send` returns. GSO super-frames keep their header
/// length (a 64 KiB linear buffer is an order-4 allocation).
fn ring_vnet_header(pkt: &PacketBuf) -> [u8; VNET_HDR_LEN] {
    let mut h = vnet_header(pkt);
    if h[1] == crate::vnet::VIRTIO_NET_HDR_GSO_NONE {
        // `pkt.len()` fits: the slot holds it.
        h[2..4].copy_from_slice(&(pkt.len() as u16).to_ne_bytes());
    }
    h
}

/// Transmit state of one queue, under its lock.
struct TxState {
    held: Vec<PacketBuf>,
    /// With `PACKET_VNET_HDR`: the held frames' vnet headers, rebuilt for
    /// each `sendmmsg` (the first iovec of each message).
    hdrs: Option<Vec<[u8; VNET_HDR_LEN]>>,
    iov: Vec<IoSlice<'static>>,
    bounds: Vec<(usize, usize)>,
    anc: Vec<SendAncillaryBuffer<'static, 'static, 'static>>,
    msgs: MsgStore,
    ring: Option<Ring>,
    batch: usize,
    /// Since when the device refuses the first held frame with nothing
    /// sent meanwhile ([`refused_too_long`]).
    refused_since: u64,
}

type Queue = RingQueue<TxState>;

struct Shared {
    ifname: String,
    ifindex: u32,
    hw_addr: EthernetAddress,
    mtu: u32,
    ring: bool,
    /// When completions are seen ([`RING_POLICY`] or [`MMSG_POLICY`]).
    policy: Policy,
    vnet: bool,
    /// Offloads granted (with the vnet header).
    offload: Features,
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
    sys::packet_socket(proto).map_err(|e| match e {
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

/// Largest UDP GSO super-frame: a 64 KiB IP packet and its link header.
const GSO_FRAME: usize = 65535 + 14;

/// Bytes in front of each frame: the vnet header, if any.
fn vnet_len(cfg: &PacketConfig) -> usize {
    if cfg.vnet_hdr {
        VNET_HDR_LEN
    } else {
        0
    }
}

/// The offloads a configuration gets: checksum offload (`HW_CSUM`) when
/// asked for any offload, UDP GSO when asked for, a ring slot (if any)
/// holds a 64 KiB super-frame and `gso_ok` (see [`gso_reaches`]), UFO
/// likewise without the bypass; nothing without the vnet header.
fn granted(cfg: &PacketConfig, slot: Option<usize>, gso_ok: bool) -> Features {
    let want = cfg.offload;
    let gso = want.contains(Features::GSO_UDP_L4);
    let ufo = want.contains(Features::UFO);
    if !cfg.vnet_hdr || !(want.can_csum() || gso || ufo) {
        return Features::NONE;
    }
    let room = cfg.version.data_offset() + VNET_HDR_LEN + GSO_FRAME;
    let fits = slot.is_none_or(|s| s >= room);
    let mut f = Features::HW_CSUM;
    if gso && gso_ok && fits {
        f = f | Features::GSO_UDP_L4;
    }
    if ufo && !cfg.qdisc_bypass && fits {
        f = f | Features::UFO;
    }
    f
}

/// Whether a UDP GSO super-frame reaches the interface whole. Through the
/// qdisc (`dev_queue_xmit`) the kernel segments what the interface cannot;
/// but `PACKET_QDISC_BYPASS`'s `__dev_direct_xmit` drops a frame that
/// `validate_xmit_skb` had to segment (it sends no segment lists), so with
/// the bypass GSO needs the interface's own `tx-udp-segmentation` (a veth
/// has it, and hands the super-frame whole to its peer).
fn gso_reaches(cfg: &PacketConfig, probe: &OwnedFd) -> bool {
    !cfg.qdisc_bypass
        || sys::if_feature_active(probe.as_fd(), &cfg.ifname, "tx-udp-segmentation")
            .unwrap_or(false)
}

/// Slot and block geometry of a ring: (block size, blocks, frame size). A
/// slot holds the slot header, the vnet header and a frame of the MTU (with
/// `frame_size` 0 and UDP GSO wanted: a 64 KiB super-frame).
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
    let off = cfg.version.data_offset() + vnet_len(cfg);
    let need = mtu as usize + 14 + off;
    let big = Features::GSO_UDP_L4 | Features::UFO;
    let gso = cfg.vnet_hdr && cfg.offload.intersects(big);
    let frame_size = match frame_size {
        0 if gso => (GSO_FRAME + off).next_multiple_of(16),
        0 => need.next_multiple_of(16),
        n => n,
    };
    if !frame_size.is_multiple_of(16) || frame_size < 64 || frames == 0 {
        return Err(bad(format!(
            "ring frame size {frame_size} must be a multiple of 16 and at least 64, with at least one frame"
        )));
    }
    if need > frame_size {
        return Err(bad(format!(
            "ring frame size {frame_size} holds frames up to {} bytes, but MTU {mtu} needs {}",
            frame_size - off,
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
    if cfg.vnet_hdr {
        // Before the ring: the kernel refuses it once a ring exists.
        sys::set_packet_vnet_hdr(fd.as_fd()).map_err(sys_err("PACKET_VNET_HDR", name))?;
    }
    let ring = match cfg.mode {
        PacketMode::Sendmmsg => None,
        PacketMode::TxRing { frames, frame_size } => {
            let (block, nr, fsz) = ring_geometry(cfg, frames, frame_size, mtu)?;
            // A slot the kernel refuses (`tpacket_snd`: over the interface's
            // MTU, say) is skipped and handed back, not left
            // `TP_STATUS_WRONG_FORMAT` with the kernel's head stuck on it:
            // the slots after it would wait until the ring wrapped round to
            // it, and a queue stopped on them would never wake.
            sys::setsockopt_int(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_LOSS, 1)
                .map_err(sys_err("PACKET_LOSS", name))?;
            let map = TxRingMap::setup(fd.as_fd(), cfg.version, block, nr, fsz)
                .map_err(sys_err("PACKET_TX_RING", name))?;
            Some(Ring::new(map, completion_time(), cfg.vnet_hdr))
        }
    };
    let batch = cfg.batch.clamp(1, 1024);
    Ok(RingQueue::new(
        fd,
        TxState {
            held: Vec::with_capacity(batch),
            hdrs: cfg.vnet_hdr.then(|| Vec::with_capacity(batch)),
            iov: Vec::new(),
            bounds: Vec::with_capacity(batch),
            anc: (0..batch).map(|_| SendAncillaryBuffer::default()).collect(),
            msgs: MsgStore::default(),
            ring,
            batch,
            refused_since: 0,
        },
    ))
}

/// Opens the receive socket, or none.
fn open_rx(cfg: &PacketConfig, ifindex: u32) -> Result<Option<OwnedFd>, PacketError> {
    let proto = match cfg.rx {
        PacketRx::None => return Ok(None),
        PacketRx::Arp => libc::ETH_P_ARP as u16,
        PacketRx::All => libc::ETH_P_ALL as u16,
    };
    let fd = packet_socket(proto, &cfg.ifname)?;
    sys::bind_rx(fd.as_fd(), proto, ifindex).map_err(sys_err("bind(AF_PACKET)", &cfg.ifname))?;
    Ok(Some(fd))
}

impl PacketLink {
    /// Opens packet sockets on the existing interface `cfg.ifname` (in the
    /// network namespace of the calling thread, see [`crate::netns`]).
    pub fn open(cfg: &PacketConfig) -> Result<PacketLink, PacketError> {
        let bad = |reason: String| PacketError::Config {
            ifname: cfg.ifname.clone(),
            reason,
        };
        if cfg.queues == 0 || cfg.queues > 256 {
            return Err(bad(format!("queues must be 1..=256, not {}", cfg.queues)));
        }
        let offloads = Features::HW_CSUM | Features::IP_CSUM | Features::GSO_UDP_L4 | Features::UFO;
        if !cfg.vnet_hdr && cfg.offload.intersects(offloads) {
            return Err(bad("offloads need the vnet header".into()));
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
        let gso_ok = cfg.offload.contains(Features::GSO_UDP_L4) && gso_reaches(cfg, &probe);
        let slot = match cfg.mode {
            PacketMode::TxRing { frames, frame_size } => {
                Some(ring_geometry(cfg, frames, frame_size, mtu)?.2)
            }
            PacketMode::Sendmmsg => None,
        };
        let ring = matches!(cfg.mode, PacketMode::TxRing { .. });
        Ok(PacketLink {
            shared: Arc::new(Shared {
                ifname: cfg.ifname.clone(),
                ifindex,
                hw_addr: EthernetAddress(hw_addr),
                mtu,
                ring,
                policy: if ring { RING_POLICY } else { MMSG_POLICY },
                vnet: cfg.vnet_hdr,
                offload: granted(cfg, slot, gso_ok),
                queues: queues.into_boxed_slice(),
                rx,
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

    /// Features for `DevConfig::features`: scatter-gather (iovecs per frame,
    /// or gathered into the ring), and with the vnet header the offloads
    /// granted (checksum offload, UDP GSO).
    pub fn features(&self) -> Features {
        let f = Features::SG | Features::FRAGLIST | self.shared.offload;
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
            tx_oversize: c.misfits.oversize(),
            tx_runt: c.misfits.runt(),
            tx_skipped: g(&c.tx_skipped),
            tx_dropped: g(&c.tx_dropped),
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
            hdrs,
            iov,
            bounds,
            anc,
            msgs,
            ..
        } = self;
        if let Some(h) = hdrs.as_mut() {
            h.clear();
            h.extend(held.iter().map(vnet_header));
        }
        let mut v: Vec<IoSlice<'_>> = recycle(std::mem::take(iov));
        bounds.clear();
        for (k, p) in held.iter().enumerate() {
            let start = v.len();
            if let Some(h) = hdrs.as_ref().and_then(|h| h.get(k)) {
                v.push(IoSlice::new(h));
            }
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
                    self.refused_since = 0;
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
                Err(Errno::NOBUFS) if !refused_too_long(&mut self.refused_since) => {
                    return Flow::Refused;
                }
                Err(Errno::NOBUFS) => {
                    // Refused for `REFUSED_DROP`: the device will not take it.
                    c.dropped(self.held[0].len() as u64, false);
                    self.held.remove(0);
                }
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
        let taken = ring.taken();
        let sent = match r {
            Ok(n) => Some(n as u64),
            // `EAGAIN` (no skb: over `SO_SNDBUF`) is returned only when
            // nothing was handed on in this call: what it took, it skipped.
            Err(Errno::AGAIN) => Some(0),
            // A frame the device dropped is put back (`ENOBUFS`); what the
            // call handed on before it is not told.
            Err(_) => None,
        };
        ring.account(fd, c, taken, sent);
        match r {
            Err(Errno::NOBUFS) => {
                ring.refused();
                return Flow::Refused;
            }
            Err(Errno::AGAIN) => return Flow::Full,
            Err(e) => c.error(e),
            Ok(_) => {}
        }
        if ring.pending > 0 {
            Flow::Full
        } else {
            Flow::Clear
        }
    }

    /// True when the next ring slot is free (after a completion scan).
    fn ring_slot_free(&self) -> bool {
        self.ring.as_ref().is_none_or(Ring::has_free_slot)
    }
}

impl RingTx for TxState {
    type Counters = Counters;

    /// Sends or kicks whatever is waiting.
    fn push_out(&mut self, fd: &OwnedFd, c: &Counters) -> Flow {
        if self.ring.is_some() {
            self.kick(fd, c)
        } else {
            self.send_held(fd, c)
        }
    }

    /// The ring slots released since the last scan, and what is still in
    /// flight; nothing in [`PacketMode::Sendmmsg`].
    fn reap(&mut self, c: &Counters) -> Option<Reaped> {
        let ring = self.ring.as_mut()?;
        let bytes = ring.reap(c);
        Some(Reaped {
            in_flight: ring.outstanding,
            bytes,
        })
    }

    /// Kernel: `netdev_tx_completed_queue()` from a NIC's completion poll.
    /// Reports the bytes of the ring slots the kernel released; the limit
    /// adapts and a queue it stopped wakes.
    fn completed(&mut self, bytes: u64, ctl: Option<&TxQueueCtl>) {
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        ring.stamp = completion_time();
        if let Some(ctl) = ctl {
            // A ring holds far less than 4 GiB.
            ctl.completed_queue(u32::try_from(bytes).unwrap_or(u32::MAX), ring.stamp);
        }
    }

    /// True when a new frame can be taken.
    fn has_room(&mut self) -> bool {
        if self.ring.is_some() {
            self.ring_slot_free()
        } else {
            self.held.len() < self.batch
        }
    }

    /// Every stop counts as busy: the socket or ring had no room.
    fn count_block(c: &Counters) {
        c.tx_busy.fetch_add(1, Ordering::Relaxed);
    }
}

impl WaitSource for Shared {
    fn wait_fds<'a>(&'a self, out: &mut Vec<WaitFd<'a>>) -> Option<Duration> {
        txring::wait_fds(self.rx.as_ref(), self.queues.iter(), &self.policy, out)
    }

    fn complete_tx(&self) {
        for q in self.queues.iter() {
            q.service(&self.c, &self.policy, || true);
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
        let Some(mut tx) = q.make_room(q.tx.lock(), &sh.c) else {
            return TxStatus::Busy(pkt);
        };
        tx.held.push(pkt);
        if !more || tx.held.len() >= tx.batch {
            q.doorbell(tx, &sh.c);
        }
        TxStatus::Ok
    }

    /// Copies `pkt` into the next ring slot, kicking the kernel when the batch
    /// ends or byte queue limits stopped the queue. Slots released since the
    /// last call are reported first.
    fn xmit_ring(&mut self, pkt: PacketBuf, more: bool) -> TxStatus {
        let sh = &*self.shared;
        let q = &sh.queues[self.index];
        let mut tx = q.tx.lock();
        q.reap(&mut tx, &sh.c);
        let Some(mut tx) = q.make_room(tx, &sh.c) else {
            return TxStatus::Busy(pkt);
        };
        let batch = tx.batch;
        let Some(ring) = tx.ring.as_mut() else {
            return TxStatus::Error;
        };
        if let Some(m) = sh.c.mtu.misfit_fresh(pkt.len(), sh.vnet, q.fd.as_fd()) {
            // tpacket_snd() refuses a frame over the interface's MTU (its
            // `size_max` without a vnet header), as packet_snd() does
            // with EMSGSIZE, and one shorter than the Ethernet header
            // (`dev_validate_header`): refused here, counted, never put in
            // a slot.
            sh.c.refuse(m);
            return TxStatus::Error;
        }
        if !ring.put(&pkt, sh.vnet) {
            sh.c.error(Errno::MSGSIZE);
            return TxStatus::Error;
        }
        q.set_in_flight(ring.outstanding);
        sh.c.tx_frames.fetch_add(1, Ordering::Relaxed);
        sh.c.tx_bytes.fetch_add(pkt.len() as u64, Ordering::Relaxed);
        let stopped = q.with_ctl(|ctl| {
            ctl.is_some_and(|c| {
                c.sent_queue(pkt.len() as u32, ring.stamp);
                c.is_stopped()
            })
        });
        // `__netdev_tx_sent_queue`: ring the doorbell at the end of a batch,
        // or now if the queue just stopped (no more frames come to end it).
        if !more || ring.pending >= batch || stopped {
            q.doorbell(tx, &sh.c);
        }
        TxStatus::Ok
    }
}

impl Driver for PacketQueue {
    fn attach(&mut self, ctl: Arc<TxQueueCtl>) {
        self.shared.c.late.attach(ctl.clone());
        self.shared.queues[self.index].attach(ctl);
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
        q.doorbell(q.tx.lock(), &sh.c);
    }

    /// Reads up to `budget` frames from the receive socket, skipping our own
    /// outgoing ones, and completes stopped queues that have room again.
    fn poll_rx(&mut self, budget: usize, rx: &mut dyn FnMut(&[u8])) -> usize {
        runner::announce(&self.source);
        let sh = self.shared.clone();
        for q in sh.queues.iter() {
            q.service(&sh.c, &sh.policy, || sys::writable_now(&q.fd));
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
