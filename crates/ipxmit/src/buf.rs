//! `PacketBuf`: the socket buffer, and the pool its storage comes from.
//!
//! Stands for the kernel's `struct sk_buff` (`include/linux/skbuff.h`): a linear
//! area with headroom in front for every header a lower layer will push
//! (`skb_reserve`, `skb_push`, `skb_put`, `skb_pull`, `skb_trim`), paged fragments
//! after it (`skb_shinfo(skb)->frags`, here shared [`Bytes`]), a chain of further
//! buffers (`frag_list`), and metadata ([`Meta`]).
//!
//! A buffer is one pointer to a pooled [`BufInner`] (storage and metadata
//! together), so passing it down the layers moves eight bytes.
//! Storage comes from a [`BufPool`] and goes back to it when the buffer is dropped,
//! so steady-state transmission does not touch the heap. A buffer may be charged to a
//! socket's [`SendBudget`] (the kernel's `skb_set_owner_w`); dropping it releases
//! the charge (`sock_wfree`): ownership does the accounting.
//!
//! Offsets kept in [`Meta`] (network and transport header) are absolute positions in
//! the storage, like the kernel's `skb->network_header`, so pushing and pulling
//! headers does not move them.

use std::fmt;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;

use crate::route::Dst;
use crate::wire::checksum::Csum;

/// The kernel's `MAX_SKB_FRAGS`: at most this many paged fragments per buffer.
pub const MAX_FRAGS: usize = 17;

/// Overhead charged per buffer on top of its data, like `SKB_TRUESIZE` (the
/// `sk_buff` and `skb_shared_info` structures).
pub const BUF_OVERHEAD: usize = 576;

/// `SKB_DATA_ALIGN(sizeof(struct skb_shared_info))`.
const SHINFO: usize = 320;
/// `SKB_DATA_ALIGN(sizeof(struct sk_buff))`.
const SKB_STRUCT: usize = 256;
/// The small-head slab (`SKB_SMALL_HEAD_CACHE_SIZE`) of this machine's kernel.
const SMALL_HEAD: usize = 576;

/// The `skb->truesize` the kernel gives a buffer whose head was allocated with
/// `size` bytes (`__alloc_skb`: `SKB_DATA_ALIGN(size)` plus the shared info,
/// rounded up to the slab or page size it comes from, plus the `sk_buff`).
/// Charging the same amounts makes `SO_SNDBUF` limits bite where the kernel's do.
pub fn kernel_truesize(size: usize) -> usize {
    let want = size.div_ceil(64) * 64 + SHINFO;
    let slab = if want <= SMALL_HEAD {
        SMALL_HEAD
    } else {
        want.next_power_of_two().max(1024)
    };
    slab + SKB_STRUCT
}

/// Checksum state of an outgoing buffer (the kernel's `skb->ip_summed`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CsumState {
    /// `CHECKSUM_NONE`: the checksum (if any) is already in the packet.
    #[default]
    None,
    /// `CHECKSUM_PARTIAL`: the device (or `validate_xmit`) must sum from `start`
    /// (absolute storage offset) to the end and store the result at
    /// `start + offset`; the pseudo-header sum is already in that field.
    Partial {
        /// Absolute storage offset where summing starts (`csum_start`).
        start: u16,
        /// Offset of the checksum field from `start` (`csum_offset`).
        offset: u16,
    },
    /// `CHECKSUM_UNNECESSARY`: no checksum to compute.
    Unnecessary,
}

impl CsumState {
    /// The state `__ip_append_data` gives a new buffer (`csummode`):
    /// `CHECKSUM_PARTIAL` (its start and offset filled in by the transport)
    /// when the device will sum, else `CHECKSUM_NONE`.
    #[inline]
    pub fn for_append(partial: bool) -> CsumState {
        if partial {
            CsumState::Partial {
                start: 0,
                offset: 0,
            }
        } else {
            CsumState::None
        }
    }
}

/// Segmentation offload type (`skb_shinfo(skb)->gso_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GsoType {
    /// Not a GSO packet.
    #[default]
    None,
    /// `SKB_GSO_UDP_L4`: split into independent UDP datagrams of `gso_size`.
    UdpL4,
    /// `SKB_GSO_UDP` (UFO): one UDP datagram over the MTU, cut into IP
    /// fragments of `gso_size` data bytes each (the UDP header counted in
    /// the first's), all with the datagram's IP ID.
    Udp,
}

/// Flags of the kernel's `IPCB(skb)->flags`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpCbFlags {
    /// `IPSKB_REROUTED`: skip POST_ROUTING (already traversed).
    pub rerouted: bool,
    /// `IPSKB_FRAG_PMTU`: fragment with the path MTU even if DF.
    pub frag_pmtu: bool,
    /// The socket may fragment locally regardless of DF (`ip_sk_ignore_df`).
    pub ignore_df: bool,
    /// The route is a broadcast one (`RTCF_BROADCAST`): each packet is
    /// counted `IpExtOutBcastPkts`, and a copy of the datagram is looped
    /// to the host (`ip_mc_output()`).
    pub bcast: bool,
    /// The route is a multicast one (`RTCF_MULTICAST`): each packet is
    /// counted `IpExtOutMcastPkts`; with [`IpCbFlags::mc_loop`] a copy is
    /// looped to the host; a TTL of 0 never leaves it.
    pub mcast: bool,
    /// The sending socket's `IP_MULTICAST_LOOP` (`sk_mc_loop()`).
    pub mc_loop: bool,
    /// No `IPCB` flag: what `__ip_append_data`'s UFO test read of the socket
    /// (`sk_protocol == IPPROTO_UDP`, `sk_type == SOCK_DGRAM`,
    /// `!sk_no_check_tx`). A UDP socket that sums its datagrams sets it; a
    /// datagram with it may leave a UFO device whole
    /// ([`Features::UFO`](crate::offload::Features::UFO)).
    pub udp_dgram: bool,
}

/// A zero-copy send's completion token (`struct ubuf_info_msgzc`): every
/// buffer carrying the send's data holds it (fragments and segments copy it
/// with the metadata); when the last one is freed the owner is notified with the
/// send ids `lo..=hi` and whether the data had to be copied after all.
pub struct ZcUarg {
    /// First send id (`uarg->id`).
    pub lo: u32,
    len: std::sync::atomic::AtomicU32,
    copied: std::sync::atomic::AtomicBool,
    notify: Box<dyn Fn(u32, u32, bool) + Send + Sync>,
}

impl fmt::Debug for ZcUarg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZcUarg")
            .field("lo", &self.lo)
            .field("len", &self.len())
            .field("copied", &self.copied())
            .finish()
    }
}

impl ZcUarg {
    /// A token for send id `lo`; `notify(lo, hi, copied)` runs when it is freed.
    pub fn new(lo: u32, notify: Box<dyn Fn(u32, u32, bool) + Send + Sync>) -> Arc<ZcUarg> {
        Arc::new(ZcUarg {
            lo,
            len: std::sync::atomic::AtomicU32::new(1),
            copied: std::sync::atomic::AtomicBool::new(false),
            notify,
        })
    }

    /// Sends covered (`uarg->len`).
    pub fn len(&self) -> u32 {
        self.len.load(Ordering::Relaxed)
    }

    /// Never empty: a token covers at least its first send.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Covers one more send (`msg_zerocopy_realloc` extending a corked one).
    pub fn extend(&self) {
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes back the last send covered (`msg_zerocopy_put_abort`: the send
    /// failed); a token that covers nothing notifies nobody.
    pub fn abort_one(&self) {
        let _ = self
            .len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1));
    }

    /// The data was copied (`uarg->zerocopy = 0`): the notification says so.
    pub fn set_copied(&self) {
        self.copied.store(true, Ordering::Relaxed);
    }

    /// Whether the data was copied.
    pub fn copied(&self) -> bool {
        self.copied.load(Ordering::Relaxed)
    }
}

impl Drop for ZcUarg {
    fn drop(&mut self) {
        let len = self.len();
        if len > 0 {
            (self.notify)(self.lo, self.lo.wrapping_add(len - 1), self.copied());
        }
    }
}

/// Metadata carried with a buffer (the `sk_buff` fields outside the data).
#[derive(Clone, Debug, Default)]
pub struct Meta {
    /// Absolute offset of the network (IP) header.
    pub network_header: u16,
    /// Absolute offset of the transport header.
    pub transport_header: u16,
    /// Link-layer protocol (`skb->protocol`), an EtherType.
    pub protocol: u16,
    /// Checksum state.
    pub ip_summed: CsumState,
    /// Partial sum of the data appended so far (`skb->csum`).
    pub csum: Csum,
    /// Queueing priority (`skb->priority`, `SO_PRIORITY`).
    pub priority: u32,
    /// Firewall mark (`skb->mark`, `SO_MARK`).
    pub mark: u32,
    /// Transmit queue chosen for the buffer (`skb->queue_mapping`).
    pub queue_mapping: u16,
    /// Flow hash (`skb->hash`); 0 when not computed.
    pub hash: u32,
    /// GSO segment payload size, 0 when not GSO.
    pub gso_size: u16,
    /// Number of GSO segments.
    pub gso_segs: u16,
    /// GSO type.
    pub gso_type: GsoType,
    /// Transmit timestamp key (`skb_shinfo(skb)->tskey`). ipxmit numbers
    /// with it the datagrams of a `send_batch` that reports each message's
    /// fate ([`crate::stats::fate`]); 0 (the default) for none.
    pub tskey: u32,
    /// When the frame was enqueued on a qdisc (the time codel keeps as
    /// `enqueue_time`), in nanoseconds on the stack's clock; 0 when it
    /// bypassed it. A capture's queue time is its transmit time less this.
    pub enqueued: u64,
    /// The handle of the qdisc the frame waited in (`1:` is
    /// `0x0001_0000`), `None` when it bypassed the qdisc.
    pub qdisc: Option<u32>,
    /// The class of that qdisc the frame was classified into (`1:10`
    /// is `0x0001_0010`; the qdisc's own handle for HTB's direct queue),
    /// 0 when it has no classes or was not classified. The root qdisc
    /// says it; a classful qdisc below it does not overwrite it.
    pub class: u32,
    /// The route the buffer follows (`skb_dst`).
    pub dst: Option<Arc<Dst>>,
    /// `IPCB(skb)` flags.
    pub ip_flags: IpCbFlags,
    /// `IPCB(skb)->frag_max_size`.
    pub frag_max_size: u16,
    /// Length of the IP options built by the stack (`IPCB(skb)->opt.optlen`);
    /// 0 for headers given by the user (`IP_HDRINCL`), whose options are then not
    /// rewritten on fragmentation, as in the kernel.
    pub ip_optlen: u8,
    /// Use the device MTU rather than the path MTU (`!ip_sk_use_pmtu`).
    pub use_dev_mtu: bool,
    /// Zero-copy completion token (`skb_zcopy`).
    pub zc: Option<Arc<ZcUarg>>,
    /// Confirm the neighbour on transmit (`MSG_CONFIRM`, `skb_set_dst_pending_confirm`).
    pub confirm_neigh: bool,
    /// The ones'-complement sum (unfolded, of the words as they lie in
    /// memory) of the option-less IPv4 header's words other than `tot_len`
    /// and the checksum, left by the socket layer that just wrote the
    /// header; 0 for none. `__ip_local_out` then completes the checksum
    /// from it without reading the header back
    /// ([`crate::wire::ipv4::set_len_and_check_from`]), and takes it away:
    /// it says nothing of the header after the LOCAL_OUT hook.
    pub hdr_sum: u32,
    /// The earliest departure time (`skb->tstamp` on transmit, set from
    /// `SCM_TXTIME`), in nanoseconds on the stack's clock; 0 for none.
    pub tstamp: u64,
    /// What a qdisc reads of the sending socket through `skb->sk`.
    pub sk: SockMeta,
    /// The packet's tracked flow (`skb->_nfct`); `None`: not tracked.
    pub nfct: Option<crate::nft::conntrack::CtRef>,
}

/// What a qdisc reads of a buffer's socket (`skb->sk`): who it is, whether
/// it is connected, its pacing rate and whether `SO_MAX_PACING_RATE` is
/// set. The socket writes it on each buffer it sends (the rate as it is at
/// the send, where the kernel reads it at the dequeue).
///
/// Two words, zero for no socket: the socket's identity with the two flags
/// in its low bits, and `sk_pacing_rate`, which means nothing without a
/// socket (the kernel reads it only through a non-null `skb->sk`). A
/// buffer's is copied on every datagram and reset with every buffer, so it
/// is kept small and its default all zeros.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockMeta {
    /// `id << 2 | connected << 1 | max_pacing_rate_set`; 0 for no socket.
    key: u64,
    /// `sk_pacing_rate`, bytes per second; `u64::MAX` (`~0UL`) unlimited.
    pacing_rate: u64,
}

impl SockMeta {
    const CONNECTED: u64 = 1 << 1;
    const MAX_RATE: u64 = 1 << 0;

    /// The socket `id` (not 0, below 2^62), connected or not (`sk_state
    /// != TCP_CLOSE`), pacing at `pacing_rate` (`sk_pacing_rate`, bytes per
    /// second, `u64::MAX` unlimited), with `SO_MAX_PACING_RATE` set
    /// (`sk_max_pacing_rate != ~0UL`) or not.
    pub const fn new(id: u64, connected: bool, pacing_rate: u64, max_rate_set: bool) -> SockMeta {
        debug_assert!(id != 0 && id < 1 << 62);
        SockMeta {
            key: id << 2 | (connected as u64) << 1 | max_rate_set as u64,
            pacing_rate,
        }
    }

    /// The socket's identity (the kernel's socket pointer); 0 for none.
    #[inline(always)]
    pub const fn id(&self) -> u64 {
        self.key >> 2
    }

    /// A socket is there (`skb->sk != NULL`).
    #[inline(always)]
    pub const fn is_some(&self) -> bool {
        self.key != 0
    }

    /// The socket is connected (`sk_state != TCP_CLOSE`).
    #[inline(always)]
    pub const fn connected(&self) -> bool {
        self.key & SockMeta::CONNECTED != 0
    }

    /// The socket's `sk_max_pacing_rate` is not `~0UL`
    /// (`SO_MAX_PACING_RATE` set to a limit).
    #[inline(always)]
    pub const fn max_pacing_rate_set(&self) -> bool {
        self.key & SockMeta::MAX_RATE != 0
    }

    /// The socket's `sk_pacing_rate`, bytes per second (`u64::MAX`
    /// unlimited); `u64::MAX` without a socket.
    #[inline(always)]
    pub const fn pacing_rate(&self) -> u64 {
        if self.is_some() {
            self.pacing_rate
        } else {
            u64::MAX
        }
    }
}

/// What a fragment takes from its datagram — `ip_copy_metadata()`, and
/// `IPCB(to)->flags = IPCB(from)->flags`: the protocol, priority, mark,
/// flow hash, IP control-block flags and a pending neighbour
/// confirmation, the datagram's payload sum, its departure time
/// (`ip_do_fragment()` gives each fragment the datagram's `tstamp`) and
/// its socket (`skb_set_owner_w()` on each fragment). The route, the zero-copy
/// token, the checksum state and the header offsets are the fragment's
/// own; so are its queue (the device layer sets it) and its GSO fields (a
/// fragmented datagram is not a GSO packet).
#[derive(Clone, Copy, Debug, Default)]
pub struct FragMeta {
    protocol: u16,
    priority: u32,
    mark: u32,
    hash: u32,
    csum: Csum,
    ip_flags: IpCbFlags,
    confirm_neigh: bool,
    tstamp: u64,
    sk: SockMeta,
    tskey: u32,
}

impl Meta {
    /// What a fragment of this datagram takes from it.
    #[inline(always)]
    pub fn frag_meta(&self) -> FragMeta {
        FragMeta {
            protocol: self.protocol,
            priority: self.priority,
            mark: self.mark,
            hash: self.hash,
            csum: self.csum,
            ip_flags: self.ip_flags,
            confirm_neigh: self.confirm_neigh,
            tstamp: self.tstamp,
            sk: self.sk,
            tskey: self.tskey,
        }
    }

    /// Kernel: `ip_copy_metadata()`: takes `m` (field by field: no
    /// reference counts touched, nothing dropped).
    #[inline(always)]
    pub fn set_frag_meta(&mut self, m: &FragMeta) {
        self.protocol = m.protocol;
        self.priority = m.priority;
        self.mark = m.mark;
        self.hash = m.hash;
        self.csum = m.csum;
        self.ip_flags = m.ip_flags;
        self.confirm_neigh = m.confirm_neigh;
        self.tstamp = m.tstamp;
        self.sk = m.sk;
        self.tskey = m.tskey;
    }
}

/// A socket's send budget: bytes charged by its buffers (`sk_wmem_alloc`) against
/// `SO_SNDBUF`.
///
/// Buffers do not hold a reference count on it, as the kernel's do not on
/// the socket: while anything is charged (`alloc > 0`) one strong reference
/// of its `Arc` is held on the charges' behalf, taken when the count leaves
/// zero and given back when it returns there. A socket's budget counts the
/// socket itself as one unit (the kernel's `sk_wmem_alloc` starts at 1), so
/// while the socket lives no charge or release touches more than the count.
///
/// Charges point at the budget with a pointer from `Arc::as_ptr`, which
/// carries the whole `Arc` allocation's provenance: the charges' reference
/// is given back through it (`Arc::decrement_strong_count`), never through
/// a pointer made from a `&SendBudget` (which covers only the budget, not
/// the `Arc`'s counts: undefined behaviour under Stacked and Tree Borrows).
#[derive(Debug)]
pub struct SendBudget {
    /// Bytes charged plus `base`.
    alloc: AtomicUsize,
    /// 1 for a socket's budget while the socket holds it, else 0.
    base: usize,
    limit: AtomicUsize,
    /// Threads sleeping in [`SendBudget::wait`] (a release wakes them only
    /// when there are some: one load per release otherwise).
    waiters: AtomicUsize,
    /// Counts the releases that had waiters, for the sleepers to see.
    epoch: parking_lot::Mutex<u64>,
    /// Where blocked senders sleep (`sk_sleep`).
    wake: parking_lot::Condvar,
    /// `SO_SNDTIMEO` in nanoseconds, 0 for none (wait for ever).
    sndtimeo_ns: std::sync::atomic::AtomicU64,
    /// `sk_tx_queue_mapping`: the transmit queue a connected socket's
    /// frames keep (+1, 0 for none). Kept here because the budget is the
    /// socket state a buffer reaches (`skb->sk`).
    tx_queue: std::sync::atomic::AtomicU16,
}

impl SendBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<SendBudget> {
        Arc::new(SendBudget {
            alloc: AtomicUsize::new(0),
            base: 0,
            ..SendBudget::fields(limit)
        })
    }

    /// A socket's budget, counting the socket as one unit until
    /// [`SendBudget::close`] (`sk_wmem_alloc` starting at 1).
    pub(crate) fn for_socket(limit: usize) -> Arc<SendBudget> {
        let b = Arc::new(SendBudget {
            alloc: AtomicUsize::new(1),
            base: 1,
            ..SendBudget::fields(limit)
        });
        // SAFETY: `b` is a live `Arc`; this is the reference held while the
        // count is above zero (here: the socket's unit).
        unsafe { Arc::increment_strong_count(Arc::as_ptr(&b)) };
        b
    }

    /// A budget's fields with nothing charged.
    fn fields(limit: usize) -> SendBudget {
        SendBudget {
            alloc: AtomicUsize::new(0),
            base: 0,
            limit: AtomicUsize::new(limit),
            waiters: AtomicUsize::new(0),
            epoch: parking_lot::Mutex::new(0),
            wake: parking_lot::Condvar::new(),
            sndtimeo_ns: std::sync::atomic::AtomicU64::new(0),
            tx_queue: std::sync::atomic::AtomicU16::new(0),
        }
    }

    /// Kernel: `sk_tx_queue_get()`. The transmit queue recorded for the
    /// socket's frames, if any.
    #[inline]
    pub fn tx_queue(&self) -> Option<usize> {
        match self.tx_queue.load(Ordering::Relaxed) {
            0 => None,
            q => Some(q as usize - 1),
        }
    }

    /// Kernel: `sk_tx_queue_set()`. Records queue `q` for the socket's
    /// frames.
    #[inline]
    pub fn set_tx_queue(&self, q: usize) {
        let v = u16::try_from(q + 1).unwrap_or(0);
        if self.tx_queue.load(Ordering::Relaxed) != v {
            self.tx_queue.store(v, Ordering::Relaxed);
        }
    }

    /// Kernel: `sk_tx_queue_clear()`, as `__sk_dst_set()` and
    /// `sk_dst_reset()` call it: the socket's route changed, so does the
    /// choice of queue.
    #[inline]
    pub fn clear_tx_queue(&self) {
        if self.tx_queue.load(Ordering::Relaxed) != 0 {
            self.tx_queue.store(0, Ordering::Relaxed);
        }
    }

    /// `SO_SNDTIMEO`: how long a blocking send waits for room (`None`:
    /// for ever, the kernel's default).
    pub fn sndtimeo(&self) -> Option<std::time::Duration> {
        match self.sndtimeo_ns.load(Ordering::Relaxed) {
            0 => None,
            n => Some(std::time::Duration::from_nanos(n)),
        }
    }

    /// Sets `SO_SNDTIMEO` (`None` or zero: wait for ever).
    pub fn set_sndtimeo(&self, t: Option<std::time::Duration>) {
        let n = t.map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64);
        self.sndtimeo_ns.store(n, Ordering::Relaxed);
    }

    /// The wake-up count a sleeper compares against ([`SendBudget::wait`]).
    pub fn epoch(&self) -> u64 {
        *self.epoch.lock()
    }

    /// Kernel: `sock_wait_for_wmem()`. Sleeps until a release after
    /// `epoch` was seen, or `at_most` passes; true when woken by a release.
    pub fn wait(&self, epoch: u64, at_most: std::time::Duration) -> bool {
        let mut g = self.epoch.lock();
        self.waiters.fetch_add(1, Ordering::AcqRel);
        if *g == epoch {
            let _ = self.wake.wait_for(&mut g, at_most);
        }
        self.waiters.fetch_sub(1, Ordering::AcqRel);
        *g != epoch
    }

    /// Wakes the sleepers (`sk_write_space()`).
    fn wake_waiters(&self) {
        *self.epoch.lock() += 1;
        self.wake.notify_all();
    }

    /// The socket lets go of its unit (`sk_free`'s `sk_wmem_alloc` drop).
    /// Call once, when the socket is dropped.
    pub(crate) fn close(self: &Arc<Self>) {
        // SAFETY: the pointer is the `Arc`'s own, and the socket's unit
        // (`base`) is still in the count: this releases it, once.
        unsafe { SendBudget::release(whole(self), self.base) };
    }

    /// Bytes currently charged (`sk_wmem_alloc`, less the socket's unit).
    pub fn allocated(&self) -> usize {
        self.alloc.load(Ordering::Acquire).saturating_sub(self.base)
    }

    /// The limit (`sk_sndbuf`).
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Sets the limit.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Bytes still free (`sock_wspace`), zero when over the limit.
    pub fn space(&self) -> usize {
        self.limit().saturating_sub(self.allocated())
    }

    /// Adds `n` (> 0) through a live `Arc` (`this`), taking the charges'
    /// reference when the count leaves zero.
    fn charge(this: &Arc<SendBudget>, n: usize) {
        if this.alloc.fetch_add(n, Ordering::AcqRel) == 0 {
            // SAFETY: `this` is a live `Arc`.
            unsafe { Arc::increment_strong_count(Arc::as_ptr(this)) };
        }
    }

    /// Charges `n` bytes at once for buffers about to be made, which then
    /// take their part with [`BufInner::set_owner_precharged`]; what is not
    /// taken goes back with [`SendBudget::release_unused`].
    pub(crate) fn precharge(this: &Arc<SendBudget>, n: usize) {
        if n > 0 {
            SendBudget::charge(this, n);
        }
    }

    /// Gives back `n` bytes of a [`SendBudget::precharge`] no buffer took.
    pub(crate) fn release_unused(self: &Arc<Self>, n: usize) {
        // SAFETY: the pointer is the `Arc`'s own, and the caller precharged
        // at least `n` bytes no buffer took (see `precharge`).
        unsafe { SendBudget::release(whole(self), n) };
    }

    /// Gathers the releases of this budget's charges by buffers freed on this
    /// thread until the guard is dropped, then applies them at once: one
    /// atomic step for a batch whose driver frees each frame as it goes.
    /// Only for a socket's budget (its unit keeps the count above zero, so
    /// the budget stays alive and nothing waits on the gathered bytes) while
    /// the caller holds the socket, so no one reads the count meanwhile;
    /// otherwise the guard does nothing.
    pub(crate) fn gather_releases(this: &Arc<SendBudget>) -> GatheredReleases {
        if this.base == 0 {
            return GatheredReleases {
                budget: None,
                prev: (0, 0),
            };
        }
        let key = Arc::as_ptr(this) as usize;
        let prev = RELEASES_GATHERED.with(|g| g.replace((key, 0)));
        GatheredReleases {
            budget: Some(this.clone()),
            prev,
        }
    }

    /// Adds `n` (> 0) to a count already above zero (a charged buffer's).
    fn charge_more(&self, n: usize) {
        self.alloc.fetch_add(n, Ordering::AcqRel);
    }

    /// Takes `n` back; at zero, gives back the charges' reference (which may
    /// free the budget: nothing may touch it after this call).
    ///
    /// # Safety
    /// `this` comes from [`whole`] (an `Arc`'s pointer, with the whole
    /// allocation's provenance), and at least `n` charged bytes are the
    /// caller's to give back (so the charges' reference is held).
    unsafe fn release(this: NonNull<SendBudget>, n: usize) {
        if n == 0 {
            return;
        }
        // SAFETY: the caller's `n` bytes are still in the count, so the
        // charges' reference keeps the budget alive until the `fetch_sub`
        // below; `b` is not used after it unless a reference is held.
        let b = unsafe { this.as_ref() };
        if b.waiters.load(Ordering::Acquire) != 0 {
            // SAFETY: as above (the budget is alive, `this` is an `Arc`'s).
            unsafe { SendBudget::release_and_wake(this, n) };
            return;
        }
        if b.alloc.fetch_sub(n, Ordering::AcqRel) == n {
            // SAFETY: the count was above zero, so the charges' reference
            // (taken when it left zero) is held; this gives it back, through
            // the `Arc`'s own pointer. `b` is dead by now.
            unsafe { Arc::decrement_strong_count(this.as_ptr()) };
        }
    }

    /// [`SendBudget::release`] with sleepers to wake: holds a reference of
    /// its own across the wake-up, since once its bytes are off the count
    /// another thread's release may give back the charges' reference.
    ///
    /// # Safety
    /// As [`SendBudget::release`].
    #[cold]
    #[inline(never)]
    unsafe fn release_and_wake(this: NonNull<SendBudget>, n: usize) {
        // SAFETY: the caller's bytes keep the budget alive now; the pointer
        // is an `Arc`'s (see `whole`), so this takes a real reference.
        unsafe { Arc::increment_strong_count(this.as_ptr()) };
        // SAFETY: alive: the reference just taken is held until the end.
        let b = unsafe { this.as_ref() };
        if b.alloc.fetch_sub(n, Ordering::AcqRel) == n {
            // SAFETY: the count was above zero: the charges' reference is
            // held and is given back here (ours still keeps it alive).
            unsafe { Arc::decrement_strong_count(this.as_ptr()) };
        }
        b.wake_waiters();
        // SAFETY: gives back the reference taken above; `b` is dead now.
        unsafe { Arc::decrement_strong_count(this.as_ptr()) };
    }
}

/// The budget's pointer as its `Arc` holds it, with the whole allocation's
/// provenance (counts and budget), for a [`Charge`] to keep.
#[inline(always)]
fn whole(budget: &Arc<SendBudget>) -> NonNull<SendBudget> {
    // SAFETY: an `Arc`'s data pointer is never null.
    unsafe { NonNull::new_unchecked(Arc::as_ptr(budget).cast_mut()) }
}

/// A buffer's charge on a budget: the budget outlives it (see
/// [`SendBudget`]), so a plain pointer, made by [`whole`].
struct Charge {
    budget: NonNull<SendBudget>,
    amount: usize,
}

// SAFETY: `Charge` only reads the budget's atomics through the pointer,
// which stays valid while the charge exists (the budget is `Sync`).
unsafe impl Send for Charge {}
// SAFETY: as above; shared access only touches atomics.
unsafe impl Sync for Charge {}

impl Charge {
    fn budget(&self) -> &SendBudget {
        // SAFETY: the charge holds part of the count, so the charges'
        // reference keeps the budget alive (see `SendBudget`).
        unsafe { self.budget.as_ref() }
    }

    /// Gives the charge back to its budget (into this thread's gathered
    /// releases when they are that budget's).
    fn release(self) {
        if !defer_release(self.budget.as_ptr() as usize, self.amount) {
            // SAFETY: `budget` came from `whole`, and the charge's `amount`
            // is in the count; `self` is consumed, so it is given back once.
            unsafe { SendBudget::release(self.budget, self.amount) };
        }
    }
}

/// A buffer's send-budget charge taken off it but not yet released
/// ([`BufInner::detach_owner`]): released when dropped, or put back with
/// [`BufInner::reattach_owner`]. For a driver that orphans a frame
/// (`skb_orphan`) only once it has really taken it: a frame it refuses
/// goes back to be requeued still charged, as the kernel's does.
#[must_use = "dropping the detached charge releases it"]
pub struct DetachedCharge(Option<Charge>);

impl std::fmt::Debug for DetachedCharge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DetachedCharge")
            .field(&self.0.as_ref().map(|c| c.amount))
            .finish()
    }
}

impl Drop for DetachedCharge {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.release();
        }
    }
}

/// Size classes of pooled storage, in bytes.
const CLASSES: [usize; 4] = [512, 2048, 16384, 66048];

/// [`BufInner::class`] of storage that is not of a class size.
const NO_CLASS: u8 = u8::MAX;

/// The smallest class holding `size` bytes.
#[inline]
fn class_for(size: usize) -> Option<usize> {
    CLASSES.iter().position(|&c| c >= size)
}

/// True when buffers of `a` and `b` bytes come from the same pool class.
pub(crate) fn same_class(a: usize, b: usize) -> bool {
    class_for(a) == class_for(b)
}

/// The class of storage of exactly `len` bytes, else [`NO_CLASS`]: only
/// such storage goes back to the pool.
fn class_of(len: usize) -> u8 {
    CLASSES
        .iter()
        .position(|&c| c == len)
        .map_or(NO_CLASS, |i| i as u8)
}

/// A pool of buffer storage in a few size classes (the kernel's slab caches for
/// `skb->head`). Clones share the pool.
#[derive(Clone)]
pub struct BufPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    /// The process-wide pool ([`BufPool::shared`]): its buffers find it
    /// without holding a reference.
    shared: bool,
    /// Most free storages of each class a thread's cache keeps.
    cache_max: [usize; 4],
    classes: [ArrayQueue<Box<BufInner>>; 4],
    /// Emptied chain vectors, kept for their capacity.
    chains: ArrayQueue<Vec<PacketBuf>>,
    misses: AtomicUsize,
}

impl fmt::Debug for BufPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufPool")
            .field("free", &self.free_counts())
            .field("misses", &self.misses())
            .finish()
    }
}

impl Default for BufPool {
    fn default() -> Self {
        BufPool::new(4096)
    }
}

impl BufPool {
    /// A pool keeping up to `per_class` free storages in each size class
    /// (a quarter of that for 16 KiB, a sixteenth for 64 KiB storages), up to
    /// half of them in the cache of the thread that freed them.
    pub fn new(per_class: usize) -> BufPool {
        BufPool::build(per_class, false)
    }

    /// The process-wide pool every [`crate::Stack`] allocates from (as the
    /// kernel's slab caches serve every namespace). Its buffers go back to it
    /// without a reference count per buffer.
    pub fn shared() -> BufPool {
        shared_pool().clone()
    }

    fn build(per_class: usize, shared: bool) -> BufPool {
        let per = per_class.max(1);
        let caps = [per, per, per / 4, per / 16].map(|n| n.max(1));
        // Of each class's bound, up to half (and CACHE_PER_CLASS) may sit in
        // a thread's cache; the shared queue holds the rest.
        let cache_max: [usize; 4] = std::array::from_fn(|i| (caps[i] / 2).min(CACHE_PER_CLASS[i]));
        BufPool {
            inner: Arc::new(PoolInner {
                shared,
                cache_max,
                classes: caps.map(|c| ArrayQueue::new(c - c / 2)),
                chains: ArrayQueue::new((per / 16).max(1)),
                misses: AtomicUsize::new(0),
            }),
        }
    }

    /// Free storages per size class: the shared ones and those cached by
    /// the calling thread.
    pub fn free_counts(&self) -> [usize; 4] {
        let c = &self.inner.classes;
        let mut n = [c[0].len(), c[1].len(), c[2].len(), c[3].len()];
        let key = self.key();
        let _ = CACHE.try_with(|t| {
            let t = t.borrow();
            if t.owner == key {
                n.iter_mut().zip(&t.free).for_each(|(n, f)| *n += f.len());
            }
        });
        if self.inner.shared {
            let _ = HOT.try_with(|h| {
                for (i, n) in n.iter_mut().enumerate() {
                    *n += h.len(i);
                }
            });
        }
        n
    }

    /// Identity of the pool for the thread caches.
    #[inline]
    fn key(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    /// A free storage of class `i`: the thread's cache first, then the
    /// shared queue.
    #[inline(always)]
    fn take_free(&self, i: usize) -> Option<Box<BufInner>> {
        if self.inner.shared {
            if let Some(s) = HOT.try_with(|h| h.pop(i)).ok().flatten() {
                return Some(s);
            }
        }
        let key = self.key();
        let cached = CACHE
            .try_with(|t| {
                let mut t = t.borrow_mut();
                if t.owner == key {
                    t.free[i].pop()
                } else {
                    None
                }
            })
            .ok()
            .flatten();
        cached.or_else(|| self.take_shared(i))
    }

    /// A free storage of class `i` from the shared queue.
    #[inline(never)]
    fn take_shared(&self, i: usize) -> Option<Box<BufInner>> {
        self.inner.classes[i].pop()
    }

    /// How many allocations found no free storage and went to the heap.
    pub fn misses(&self) -> usize {
        self.inner.misses.load(Ordering::Relaxed)
    }

    /// A buffer whose linear storage holds at least `size` bytes, empty, with all
    /// of it as headroom-free tailroom (call [`BufInner::reserve`] next).
    #[inline(always)]
    pub fn alloc(&self, size: usize) -> PacketBuf {
        self.alloc_truesize(size, kernel_truesize(size))
    }

    /// [`BufPool::alloc`] with its truesize (`kernel_truesize(size)`)
    /// already known to the caller.
    #[inline(always)]
    pub(crate) fn alloc_truesize(&self, size: usize, truesize: usize) -> PacketBuf {
        debug_assert_eq!(truesize, kernel_truesize(size));
        self.alloc_charged(size, truesize)
    }

    /// A buffer whose linear storage holds at least `size` bytes, charged
    /// `truesize` (`skb->truesize`, when set to an owner): for a buffer
    /// that stands for a kernel buffer charged otherwise, e.g. one holding
    /// in its linear part what the kernel's holds partly in page fragments
    /// (charged as the kernel charges them: its head's allocation plus the
    /// fragment bytes).
    #[inline(always)]
    pub(crate) fn alloc_charged(&self, size: usize, truesize: usize) -> PacketBuf {
        let class = class_for(size);
        let inner = match class.and_then(|i| self.take_free(i)) {
            Some(b) => b,
            None => self.alloc_miss(class, size),
        };
        let home = if self.inner.shared {
            Home::Shared
        } else {
            Home::Pool(self.clone())
        };
        PacketBuf::from_inner(inner, home, truesize)
    }

    /// [`BufPool::alloc_charged`] for a buffer owned by `budget` with a
    /// charge already part of a [`SendBudget::precharge`] on it
    /// (`skb_set_owner_w` without touching the count): the charge is
    /// recorded, the count left alone. The caller must have precharged at
    /// least `truesize` and not yet handed it to another buffer (the count
    /// keeps the budget alive for the charge).
    #[inline(always)]
    pub(crate) fn alloc_precharged(
        &self,
        size: usize,
        truesize: usize,
        budget: &Arc<SendBudget>,
    ) -> PacketBuf {
        let mut b = self.alloc_charged(size, truesize);
        // Storage comes back without a charge (dropping a buffer releases
        // it), and a fresh buffer's truesize is its head's.
        debug_assert!(b.charge.is_none() && truesize != 0);
        b.charge = Some(Charge {
            budget: whole(budget),
            amount: truesize,
        });
        b
    }

    /// [`BufPool::alloc`] finding no free storage: counted, and from the heap.
    #[cold]
    #[inline(never)]
    fn alloc_miss(&self, class: Option<usize>, size: usize) -> Box<BufInner> {
        self.inner.misses.fetch_add(1, Ordering::Relaxed);
        BufInner::boxed(class.map_or(size, |i| CLASSES[i]))
    }

    /// Keeps an emptied chain vector for [`BufInner::chain_push`] to reuse:
    /// this thread's spare first (no shared memory touched), else the pool's.
    #[inline]
    pub fn put_chain(&self, mut v: Vec<PacketBuf>) {
        v.clear();
        if v.capacity() == 0 {
            return;
        }
        let v = match SPARE_CHAIN.try_with(|c| c.replace(v)) {
            Ok(prev) => prev,
            Err(_) => return,
        };
        if v.capacity() > 0 {
            let _ = self.inner.chains.push(v);
        }
    }

    /// Takes back a buffer's storage: emptied, its metadata (and with it
    /// the route and any zero-copy token) dropped now.
    fn recycle(&self, mut s: Box<BufInner>) {
        if let Some(i) = reset(&mut s) {
            self.keep_free(s, i);
        }
    }

    /// Keeps the emptied storage `s` of class `i`: in the thread's cache, else
    /// in the shared queue, else (both full) freed.
    fn keep_free(&self, s: Box<BufInner>, i: usize) {
        let key = self.key();
        let max = self.inner.cache_max[i];
        let s = match CACHE.try_with(move |t| t.borrow_mut().keep(key, i, s, max)) {
            Ok(None) => return,
            Ok(Some(s)) => s,
            // The thread is exiting: its cache is gone.
            Err(_) => return,
        };
        let _ = self.inner.classes[i].push(s);
    }
}

/// Empties storage for reuse (the route and any zero-copy token are dropped
/// now); its class, or `None` when it is of no class (then freed).
#[inline(always)]
fn reset(s: &mut BufInner) -> Option<usize> {
    if !s.frags.is_empty() || !s.chain.is_empty() {
        clear_parts(s);
    }
    s.meta = Meta::default();
    let i = s.class as usize;
    (i < CLASSES.len()).then_some(i)
}

/// [`reset`]'s part for storage with page fragments or a chain, out of
/// line: freeing a chain drops buffers in turn, and inlined it made the
/// common free (neither) save and restore registers it does not use.
#[cold]
#[inline(never)]
fn clear_parts(s: &mut BufInner) {
    s.frags.clear();
    s.chain.clear();
}

/// Storage of the process-wide pool going back to it: onto this thread's
/// hot stack of its class (what the next allocations of the class on this
/// thread take first, the common free-then-allocate rhythm of a sender
/// whose driver frees at once, a datagram's fragments included), else,
/// the stack full, to the cache.
fn recycle_shared(mut s: Box<BufInner>) {
    let Some(i) = reset(&mut s) else {
        return;
    };
    match HOT.try_with(|h| h.push(i, s)) {
        Ok(None) => {}
        Ok(Some(s)) => keep_shared(s, i),
        // The thread is exiting: its stacks are gone (the storage was freed).
        Err(_) => {}
    }
}

/// Storage of class `i` a full hot stack handed back: to the cache.
#[cold]
#[inline(never)]
fn keep_shared(s: Box<BufInner>, i: usize) {
    shared_pool().keep_free(s, i);
}

/// Storages a thread's hot stack keeps below its top for the two small
/// classes: with the top, the 45 buffers of a 65,507-byte datagram cut
/// for a 1500-byte MTU, and more. Its buffers are all allocated before
/// the first is freed (the datagram's chain is built, then fragmented),
/// so a shallower stack sends most of them through the thread cache both
/// ways, about 40 instructions a buffer more (measured with a depth of 8:
/// 37,089 instructions per 65000 B datagram; with 47, 34,831;
/// `scripts/callgrind.sh 65000B`).
const HOT_DEPTH: usize = 63;

/// Storages kept below the top per class: the two large classes (whole
/// 16 and 64 KiB datagrams, one buffer each) need few, and hold a lot of
/// memory each. Less than [`HOT_SLOTS`].
const HOT_KEEP: [usize; 4] = [HOT_DEPTH, HOT_DEPTH, 8, 8];

/// Slots per class below the top: a power of two, so that a slot's index,
/// masked, needs no bounds check.
const HOT_SLOTS: usize = 64;

type Slot = std::cell::Cell<Option<Box<BufInner>>>;

/// A few free storages per class of the process-wide pool, last freed
/// first out: a free and an allocation are a few instructions each. Each
/// class's top is a slot of its own, the four side by side, so a free
/// followed by an allocation (one datagram, one frame) touches nothing
/// else.
struct HotStacks {
    top: [Slot; 4],
    /// Per class, how many of `below` are full (the lowest first).
    n: [std::cell::Cell<usize>; 4],
    below: [[Slot; HOT_SLOTS]; 4],
}

impl HotStacks {
    /// Keeps `s` of class `i`; hands back a storage when the stack is full.
    #[inline(always)]
    fn push(&self, i: usize, s: Box<BufInner>) -> Option<Box<BufInner>> {
        let prev = self.top[i].replace(Some(s))?;
        self.push_below(i, prev)
    }

    /// Keeps `s` of class `i` under the top.
    #[inline]
    fn push_below(&self, i: usize, s: Box<BufInner>) -> Option<Box<BufInner>> {
        let n = self.n[i].get();
        if n >= HOT_KEEP[i] {
            return Some(s);
        }
        let slot = &self.below[i][n % HOT_SLOTS];
        self.n[i].set(n + 1);
        // Slots at and above `n` are empty: nothing is replaced.
        std::mem::forget(slot.replace(Some(s)));
        None
    }

    /// The storage of class `i` freed last, if any.
    #[inline(always)]
    fn pop(&self, i: usize) -> Option<Box<BufInner>> {
        self.top[i].take().or_else(|| self.pop_below(i))
    }

    /// The storage of class `i` freed last under the top, if any.
    #[inline]
    fn pop_below(&self, i: usize) -> Option<Box<BufInner>> {
        let n = self.n[i].get().checked_sub(1)?;
        self.n[i].set(n);
        self.below[i][n % HOT_SLOTS].take()
    }

    /// How many storages of class `i` it holds.
    fn len(&self, i: usize) -> usize {
        let top = self.top[i].take();
        let n = usize::from(top.is_some()) + self.n[i].get();
        self.top[i].set(top);
        n
    }
}

thread_local! {
    /// An emptied chain vector this thread keeps for the next datagram
    /// built with a chain ([`BufPool::put_chain`], [`BufInner::chain_push`]).
    static SPARE_CHAIN: std::cell::Cell<Vec<PacketBuf>> = const { std::cell::Cell::new(Vec::new()) };
}

thread_local! {
    /// This thread's hot stacks of the process-wide pool ([`recycle_shared`]).
    static HOT: HotStacks = const {
        HotStacks {
            top: [const { std::cell::Cell::new(None) }; 4],
            n: [const { std::cell::Cell::new(0) }; 4],
            below: [const { [const { std::cell::Cell::new(None) }; HOT_SLOTS] }; 4],
        }
    };
}

/// The process-wide pool.
fn shared_pool() -> &'static BufPool {
    static SHARED: std::sync::LazyLock<BufPool> =
        std::sync::LazyLock::new(|| BufPool::build(4096, true));
    &SHARED
}

/// Where a buffer's storage goes when the buffer is dropped.
enum Home {
    /// Nowhere: freed (unpooled buffers).
    None,
    /// The process-wide pool.
    Shared,
    /// A pool of its own.
    Pool(BufPool),
}

impl Home {
    fn pool(&self) -> Option<&BufPool> {
        match self {
            Home::None => None,
            Home::Shared => Some(shared_pool()),
            Home::Pool(p) => Some(p),
        }
    }
}

/// Free storages kept per size class by each thread, in front of the
/// shared queues: a buffer freed on the thread that allocates the next one
/// (the common case: a sender whose driver frees at once) goes round
/// without touching shared memory. Bounded (half a class's bound at most,
/// per thread); the rest go to the shared queue.
const CACHE_PER_CLASS: [usize; 4] = [256, 256, 32, 8];

struct ThreadCache {
    /// The pool the cached storages belong to (its address); 0 for none.
    owner: usize,
    /// Boxed on purpose: buffers are these very boxes, handed out as they are.
    #[allow(clippy::vec_box)]
    free: [Vec<Box<BufInner>>; 4],
}

impl ThreadCache {
    /// Keeps `s` if the cache is this pool's (or empty) and holds fewer
    /// than `max`; else hands it back for the shared queue.
    fn keep(
        &mut self,
        key: usize,
        i: usize,
        s: Box<BufInner>,
        max: usize,
    ) -> Option<Box<BufInner>> {
        if self.owner != key {
            if self.free.iter().any(|f| !f.is_empty()) {
                return Some(s);
            }
            self.owner = key;
        }
        if self.free[i].len() >= max {
            return Some(s);
        }
        if self.free[i].capacity() == 0 {
            self.free[i].reserve_exact(CACHE_PER_CLASS[i]);
        }
        self.free[i].push(s);
        None
    }
}

thread_local! {
    static CACHE: std::cell::RefCell<ThreadCache> = const {
        std::cell::RefCell::new(ThreadCache {
            owner: 0,
            free: [Vec::new(), Vec::new(), Vec::new(), Vec::new()],
        })
    };
}

/// The socket buffer. See the module documentation.
///
/// One pointer wide: the contents and metadata live in a pooled [`BufInner`]
/// it dereferences to, so handing a buffer down the layers moves eight bytes.
pub struct PacketBuf {
    /// Never empty until `drop` takes it.
    b: ManuallyDrop<Box<BufInner>>,
}

/// What a [`PacketBuf`] holds: the storage (linear area, paged fragments,
/// chain), the data bounds in it, the metadata and the accounting. Reached
/// through the buffer (`pkt.len()`, `pkt.meta.priority`).
pub struct BufInner {
    data: Vec<u8>,
    frags: Vec<Bytes>,
    chain: Vec<PacketBuf>,
    head: usize,
    tail: usize,
    frag_len: usize,
    chain_len: usize,
    /// What the head is charged (`kernel_truesize` of the requested size).
    head_truesize: u32,
    /// Size class of `data` ([`class_of`] its length), kept so a recycled
    /// storage needs no lookup.
    class: u8,
    /// Metadata.
    pub meta: Meta,
    charge: Option<Charge>,
    home: Home,
}

impl std::ops::Deref for PacketBuf {
    type Target = BufInner;
    #[inline(always)]
    fn deref(&self) -> &BufInner {
        &self.b
    }
}

impl std::ops::DerefMut for PacketBuf {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut BufInner {
        &mut self.b
    }
}

impl fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self.b, f)
    }
}

impl fmt::Debug for BufInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketBuf")
            .field("len", &self.len())
            .field("headroom", &self.headroom())
            .field("linear", &self.linear_len())
            .field("frags", &self.frags.len())
            .field("chain", &self.chain.len())
            .field("meta", &self.meta)
            .finish()
    }
}

impl BufInner {
    fn boxed(size: usize) -> Box<BufInner> {
        Box::new(BufInner {
            data: vec![0; size],
            frags: Vec::new(),
            chain: Vec::new(),
            head: 0,
            tail: 0,
            frag_len: 0,
            chain_len: 0,
            head_truesize: (size + BUF_OVERHEAD) as u32,
            class: class_of(size),
            meta: Meta::default(),
            charge: None,
            home: Home::None,
        })
    }
}

impl BufInner {
    /// Storage around an existing vector (given back to the pool).
    fn boxed_from(data: Vec<u8>) -> Box<BufInner> {
        let mut b = BufInner::boxed(0);
        b.class = class_of(data.len());
        b.data = data;
        b
    }
}

impl PacketBuf {
    /// An empty buffer on storage `b`, charged `head_truesize` for its head.
    #[inline(always)]
    fn from_inner(mut b: Box<BufInner>, home: Home, head_truesize: usize) -> PacketBuf {
        b.head = 0;
        b.tail = 0;
        b.frag_len = 0;
        b.chain_len = 0;
        b.head_truesize = head_truesize as u32;
        // Free storage has no home (dropping a buffer takes it, and new
        // storage starts without): nothing to drop, which lets the compiler
        // keep what was just written across this store.
        let old = std::mem::replace(&mut b.home, home);
        debug_assert!(matches!(old, Home::None));
        std::mem::forget(old);
        PacketBuf {
            b: ManuallyDrop::new(b),
        }
    }

    /// An unpooled buffer of `size` bytes of storage (tests, slow paths).
    pub fn with_capacity(size: usize) -> PacketBuf {
        PacketBuf::from_inner(BufInner::boxed(size), Home::None, size + BUF_OVERHEAD)
    }

    /// An unpooled buffer holding a copy of `data` after `headroom` bytes.
    pub fn from_slice(headroom: usize, data: &[u8]) -> PacketBuf {
        let mut b = PacketBuf::with_capacity(headroom + data.len());
        b.reserve(headroom);
        b.put(data.len()).copy_from_slice(data);
        b
    }
}

impl BufInner {
    /// Total length: linear part, fragments and chain (`skb->len`).
    pub fn len(&self) -> usize {
        self.tail - self.head + self.frag_len + self.chain_len
    }

    /// True when the buffer holds no data.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes outside the linear part (`skb->data_len`).
    pub fn data_len(&self) -> usize {
        self.frag_len + self.chain_len
    }

    /// Length of the buffer's own data, linear part and fragments, its chain
    /// left out (`skb_pagelen`).
    #[inline]
    pub fn page_len(&self) -> usize {
        self.tail - self.head + self.frag_len
    }

    /// Length of the linear part (`skb_headlen`).
    pub fn linear_len(&self) -> usize {
        self.tail - self.head
    }

    /// Free bytes in front of the data (`skb_headroom`).
    pub fn headroom(&self) -> usize {
        self.head
    }

    /// Free bytes after the linear data (`skb_tailroom`); zero once fragments exist.
    pub fn tailroom(&self) -> usize {
        if self.frag_len + self.chain_len > 0 {
            0
        } else {
            self.data.len() - self.tail
        }
    }

    /// Absolute storage offset of the data start (`skb->data - skb->head`).
    pub fn data_offset(&self) -> usize {
        self.head
    }

    /// Moves an empty buffer's data start `n` bytes in (`skb_reserve`).
    ///
    /// # Panics
    /// If the buffer is not empty or the storage is too small.
    pub fn reserve(&mut self, n: usize) {
        assert!(self.is_empty() && self.head + n <= self.data.len());
        self.head += n;
        self.tail = self.head;
    }

    /// Extends the linear data at the tail by `n` bytes and returns them (`skb_put`).
    ///
    /// # Panics
    /// If the tailroom is smaller than `n` (a caller bug, as in the kernel).
    pub fn put(&mut self, n: usize) -> &mut [u8] {
        assert!(n <= self.tailroom(), "skb_put over tailroom");
        let old = self.tail;
        self.tail += n;
        &mut self.data[old..self.tail]
    }

    /// Prepends `n` bytes in the headroom and returns them (`skb_push`).
    ///
    /// # Panics
    /// If the headroom is smaller than `n`.
    pub fn push(&mut self, n: usize) -> &mut [u8] {
        assert!(n <= self.head, "skb_push under headroom");
        self.head -= n;
        &mut self.data[self.head..self.head + n]
    }

    /// [`BufInner::push`] of a fixed `N` bytes, as an array.
    ///
    /// # Panics
    /// If the headroom is less than `N`.
    #[inline(always)]
    pub fn push_array<const N: usize>(&mut self) -> &mut [u8; N] {
        let old = self.head;
        // The last N bytes of the headroom: one check that the headroom lies
        // within the storage, one that it holds N bytes.
        let Some(h) = self.data[..old].last_chunk_mut::<N>() else {
            panic!("skb_push under headroom");
        };
        self.head = old - N;
        h
    }

    /// Removes `n` bytes from the front of the linear data (`skb_pull`).
    ///
    /// # Panics
    /// If the linear part is shorter than `n`.
    pub fn pull(&mut self, n: usize) {
        assert!(n <= self.linear_len(), "skb_pull past linear data");
        self.head += n;
    }

    /// Cuts the buffer to `len` bytes (`pskb_trim`), dropping fragments and chain
    /// entries past it.
    pub fn trim(&mut self, len: usize) {
        if len >= self.len() {
            return;
        }
        let lin = self.linear_len();
        if len <= lin {
            self.tail = self.head + len;
            self.frags.clear();
            self.chain.clear();
            self.frag_len = 0;
            self.chain_len = 0;
            return;
        }
        let mut left = len - lin;
        self.trim_frags(&mut left);
        self.trim_chain(left);
    }

    fn trim_frags(&mut self, left: &mut usize) {
        let mut keep = 0;
        for f in self.frags.iter_mut() {
            if *left == 0 {
                break;
            }
            if f.len() > *left {
                f.truncate(*left);
            }
            *left -= f.len();
            keep += 1;
        }
        self.frags.truncate(keep);
        self.frag_len = self.frags.iter().map(Bytes::len).sum();
    }

    fn trim_chain(&mut self, mut left: usize) {
        let mut keep = 0;
        for c in self.chain.iter_mut() {
            if left == 0 {
                break;
            }
            c.trim(left);
            left -= c.len();
            keep += 1;
        }
        self.chain.truncate(keep);
        self.chain_len = self.chain.iter().map(|b| b.len()).sum();
    }

    /// The linear data.
    pub fn linear(&self) -> &[u8] {
        &self.data[self.head..self.tail]
    }

    /// The linear data, writable.
    pub fn linear_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.head..self.tail]
    }

    /// The storage from absolute offset `off` to the end of the linear data.
    pub fn from_offset(&self, off: usize) -> &[u8] {
        &self.data[off..self.tail]
    }

    /// Writable storage from absolute offset `off` to the end of the linear data.
    pub fn from_offset_mut(&mut self, off: usize) -> &mut [u8] {
        &mut self.data[off..self.tail]
    }

    /// The linear data from the network header on.
    pub fn network_header(&self) -> &[u8] {
        self.from_offset(self.meta.network_header as usize)
    }

    /// The first `N` bytes of the network header, writable, when the
    /// storage holds them (a fixed-size view: no length to check per field).
    #[inline(always)]
    pub fn network_header_array<const N: usize>(&mut self) -> Option<&mut [u8; N]> {
        let off = self.meta.network_header as usize;
        self.data.get_mut(off..)?.first_chunk_mut::<N>()
    }

    /// Writable linear data from the network header on.
    pub fn network_header_mut(&mut self) -> &mut [u8] {
        let off = self.meta.network_header as usize;
        self.from_offset_mut(off)
    }

    /// Sets the network header at the current data start (`skb_reset_network_header`).
    pub fn reset_network_header(&mut self) {
        self.meta.network_header = self.head as u16;
    }

    /// Paged fragments.
    pub fn frags(&self) -> &[Bytes] {
        &self.frags
    }

    /// Appends a paged fragment (`skb_fill_page_desc`). Callers that extend the
    /// last fragment in place (the kernel's `skb_can_coalesce` case) replace it with
    /// [`BufInner::extend_last_frag`] instead.
    ///
    /// Returns `Err(frag)` when the buffer already has [`MAX_FRAGS`] fragments.
    pub fn add_frag(&mut self, frag: Bytes) -> Result<(), Bytes> {
        if self.frags.len() >= MAX_FRAGS {
            return Err(frag);
        }
        self.frag_len += frag.len();
        self.frags.push(frag);
        Ok(())
    }

    /// Replaces the last fragment with `frag`, which must start with the same
    /// bytes and be longer (a coalesced fragment); returns the bytes added.
    ///
    /// # Panics
    /// If there is no fragment or `frag` is shorter than the last one.
    pub fn extend_last_frag(&mut self, frag: Bytes) -> usize {
        let last = self.frags.last_mut().expect("no fragment to extend");
        let added = frag.len() - last.len();
        *last = frag;
        self.frag_len += added;
        added
    }

    /// Chained buffers (`skb_shinfo(skb)->frag_list`).
    pub fn chain(&self) -> &[PacketBuf] {
        &self.chain
    }

    /// Appends a buffer to the chain.
    #[inline(always)]
    pub fn chain_push(&mut self, b: PacketBuf) {
        if self.chain.capacity() == 0 {
            self.take_spare_chain();
        }
        self.chain_len += b.len();
        self.chain.push(b);
    }

    /// Gives the buffer `v` (emptied, with room) for its chain, when it has
    /// no chain vector of its own.
    #[inline]
    pub fn set_chain_vec(&mut self, v: Vec<PacketBuf>) {
        debug_assert!(v.is_empty());
        if self.chain.capacity() == 0 {
            self.chain = v;
        }
    }

    /// A chain vector with room, for a buffer without one: this thread's
    /// spare, else one kept by the pool ([`BufPool::put_chain`]).
    #[cold]
    fn take_spare_chain(&mut self) {
        let spare = SPARE_CHAIN
            .try_with(std::cell::Cell::take)
            .unwrap_or_default();
        if spare.capacity() > 0 {
            self.chain = spare;
        } else if let Some(v) = self.home.pool().and_then(|p| p.inner.chains.pop()) {
            self.chain = v;
        }
    }

    /// The buffer's own bytes from absolute offset `off` to its end, and its
    /// chained buffers, both writable (filling a datagram built whole).
    #[inline]
    pub fn split_chain_mut(&mut self, off: usize) -> (&mut [u8], &mut [PacketBuf]) {
        let tail = self.tail;
        (&mut self.data[off..tail], &mut self.chain)
    }

    /// Takes the chain out of the buffer, leaving only its own data.
    pub fn take_chain(&mut self) -> Vec<PacketBuf> {
        self.chain_len = 0;
        std::mem::take(&mut self.chain)
    }

    /// Calls `f` with each contiguous segment of the packet in order: the linear
    /// part, the fragments, then each chained buffer's segments.
    pub fn for_each_segment<'a>(&'a self, f: &mut dyn FnMut(&'a [u8])) {
        if self.linear_len() > 0 {
            f(self.linear());
        }
        for frag in &self.frags {
            if !frag.is_empty() {
                f(frag);
            }
        }
        for c in &self.chain {
            c.for_each_segment(f);
        }
    }

    /// Copies the whole packet into `out` (which must be at least `len()` long);
    /// returns the number of bytes copied.
    pub fn copy_to(&self, out: &mut [u8]) -> usize {
        let mut n = 0;
        self.for_each_segment(&mut |s| {
            out[n..n + s.len()].copy_from_slice(s);
            n += s.len();
        });
        n
    }

    /// Copies `out.len()` bytes starting `off` bytes into the packet data
    /// (`skb_copy_bits`). Returns false when the packet is too short.
    pub fn copy_bits(&self, off: usize, out: &mut [u8]) -> bool {
        if off + out.len() > self.len() {
            return false;
        }
        let (mut pos, mut done) = (0usize, 0usize);
        self.for_each_segment(&mut |s| {
            let end = pos + s.len();
            if done < out.len() && end > off + done {
                let from = off + done - pos;
                let n = (s.len() - from).min(out.len() - done);
                out[done..done + n].copy_from_slice(&s[from..from + n]);
                done += n;
            }
            pos = end;
        });
        done == out.len()
    }

    /// The whole packet as one vector (tests and slow paths).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.len()];
        self.copy_to(&mut v);
        v
    }

    /// Makes the packet linear (`skb_linearize`, `__skb_linearize`): fragments and
    /// chain are copied into the storage, reallocating when it is too small.
    pub fn linearize(&mut self) {
        if self.data_len() == 0 {
            return;
        }
        let total = self.len();
        let need = self.head + total;
        if need > self.data.len() {
            let mut data = vec![0; need];
            data[self.head..self.tail].copy_from_slice(&self.data[self.head..self.tail]);
            let old = std::mem::replace(&mut self.data, data);
            self.class = class_of(need);
            if let Some(pool) = self.home.pool() {
                pool.recycle(BufInner::boxed_from(old));
            }
        }
        let mut at = self.tail;
        let frags = std::mem::take(&mut self.frags);
        for f in &frags {
            self.data[at..at + f.len()].copy_from_slice(f);
            at += f.len();
        }
        self.frags = frags;
        self.frags.clear();
        for c in self.take_chain() {
            at += c.copy_to(&mut self.data[at..]);
        }
        self.tail = at;
        self.frag_len = 0;
    }

    /// Size charged to the owner (`skb->truesize`).
    pub fn truesize(&self) -> usize {
        self.head_truesize as usize + self.frag_len
    }

    /// Charges the buffer to `budget` (`skb_set_owner_w`); the charge is released
    /// when the buffer is dropped. Replaces any previous owner.
    pub fn set_owner(&mut self, budget: &Arc<SendBudget>) {
        self.release_owner();
        let amount = self.truesize();
        if amount == 0 {
            return;
        }
        SendBudget::charge(budget, amount);
        self.charge = Some(Charge {
            budget: whole(budget),
            amount,
        });
    }

    /// Adds `n` bytes to the charge (fragments appended after `set_owner`).
    pub fn grow_charge(&mut self, n: usize) {
        if let Some(c) = &mut self.charge {
            c.budget().charge_more(n);
            c.amount += n;
        }
    }

    /// The send budget this buffer is charged to.
    pub fn owner(&self) -> Option<&SendBudget> {
        self.charge.as_ref().map(Charge::budget)
    }

    /// Releases the charge now (`skb_orphan`).
    pub fn release_owner(&mut self) {
        if let Some(c) = self.charge.take() {
            c.release();
        }
    }

    /// Takes the charge off the buffer without releasing it yet: the
    /// returned [`DetachedCharge`] releases it when dropped.
    pub fn detach_owner(&mut self) -> DetachedCharge {
        DetachedCharge(self.charge.take())
    }

    /// Puts back a charge [`BufInner::detach_owner`] took off (releasing
    /// any the buffer got meanwhile).
    pub fn reattach_owner(&mut self, mut charge: DetachedCharge) {
        self.release_owner();
        self.charge = charge.0.take();
    }
}

thread_local! {
    /// The budget (its address) whose releases this thread gathers, and the
    /// bytes gathered ([`SendBudget::gather_releases`]).
    static RELEASES_GATHERED: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}

/// Adds a release of `amount` on the budget at `addr` to this thread's
/// gathered releases when they are that budget's; false otherwise.
#[inline]
fn defer_release(addr: usize, amount: usize) -> bool {
    RELEASES_GATHERED
        .try_with(|g| {
            let (k, n) = g.get();
            if k == addr {
                g.set((k, n + amount));
            }
            k == addr
        })
        .unwrap_or(false)
}

/// While it lives, buffers charged to its budget and freed on this thread
/// release into a thread-local sum instead of the shared count; dropping it
/// applies the sum in one step. See [`SendBudget::gather_releases`].
pub(crate) struct GatheredReleases {
    budget: Option<Arc<SendBudget>>,
    prev: (usize, usize),
}

impl Drop for GatheredReleases {
    fn drop(&mut self) {
        let Some(b) = self.budget.take() else {
            return;
        };
        let (_, n) = RELEASES_GATHERED.with(|g| g.replace(self.prev));
        // SAFETY: the pointer is `b`'s own; the `n` bytes gathered are the
        // charges released on this thread, not yet taken off the count.
        unsafe { SendBudget::release(whole(&b), n) };
    }
}

impl Drop for PacketBuf {
    fn drop(&mut self) {
        self.release_owner();
        // SAFETY: `b` is taken exactly once, here, and never used again.
        let mut inner = unsafe { ManuallyDrop::take(&mut self.b) };
        if let Home::Shared = inner.home {
            inner.home = Home::None;
            return recycle_shared(inner);
        }
        free_unshared(inner);
    }
}

/// A dropped buffer's storage that is not the process-wide pool's: back
/// to its own pool, or freed (no pool). Out of line, so the common drop
/// (the shared pool's) keeps to the registers it needs.
#[cold]
#[inline(never)]
fn free_unshared(mut inner: Box<BufInner>) {
    match std::mem::replace(&mut inner.home, Home::None) {
        Home::None | Home::Shared => {}
        Home::Pool(p) => p.recycle(inner),
    }
}

#[cfg(test)]
mod tests {
    use super::{BufInner, HotStacks, HOT_DEPTH, HOT_SLOTS};

    /// A fresh set of hot stacks (not the thread's).
    fn stacks() -> HotStacks {
        HotStacks {
            top: [const { std::cell::Cell::new(None) }; 4],
            n: [const { std::cell::Cell::new(0) }; 4],
            below: [const { [const { std::cell::Cell::new(None) }; HOT_SLOTS] }; 4],
        }
    }

    #[test]
    fn hot_stack_is_last_in_first_out_and_bounded_per_class() {
        let h = stacks();
        let boxes: Vec<Box<BufInner>> = (0..HOT_DEPTH + 2).map(|_| BufInner::boxed(512)).collect();
        let addrs: Vec<*const BufInner> = boxes.iter().map(|b| &**b as *const BufInner).collect();
        let mut refused = Vec::new();
        for b in boxes {
            refused.extend(h.push(1, b));
        }
        // The top and HOT_DEPTH below it are kept; one more is handed back.
        assert_eq!(h.len(1), HOT_DEPTH + 1);
        assert_eq!(refused.len(), 1);
        assert_eq!(h.len(0), 0, "other classes untouched");
        assert!(h.pop(0).is_none());
        // With the stack full below, the top's previous occupant was the
        // one handed back.
        assert_eq!(&*refused[0] as *const BufInner, addrs[HOT_DEPTH]);
        // Popped last freed first.
        let mut popped = Vec::new();
        while let Some(b) = h.pop(1) {
            popped.push(&*b as *const BufInner);
        }
        let mut kept: Vec<_> = addrs.clone();
        kept.retain(|a| !std::ptr::eq(*a, &*refused[0]));
        kept.reverse();
        assert_eq!(popped, kept);
        assert_eq!(h.len(1), 0);
    }

    /// The release path with sleepers (`release_and_wake`) wakes them and
    /// frees a budget nothing else holds with the last charge, through the
    /// `Arc`'s own pointer (Miri checks the provenance and the free).
    #[test]
    fn a_release_with_sleepers_wakes_them_and_the_last_frees_the_budget() {
        use super::{PacketBuf, SendBudget};
        use std::sync::atomic::Ordering;
        let budget = SendBudget::new(10_000);
        let weak = std::sync::Arc::downgrade(&budget);
        let mut a = PacketBuf::with_capacity(200);
        let mut b = PacketBuf::with_capacity(300);
        a.set_owner(&budget);
        b.set_owner(&budget);
        // As if a blocked sender slept in `wait`.
        budget.waiters.store(1, Ordering::Release);
        let epoch = budget.epoch();
        drop(budget);
        drop(a);
        let owner = b.owner().map(|o| (o.epoch(), o.allocated()));
        assert_eq!(owner, Some((epoch + 1, 300 + super::BUF_OVERHEAD)));
        drop(b);
        assert!(weak.upgrade().is_none(), "freed with the last charge");
    }
}
