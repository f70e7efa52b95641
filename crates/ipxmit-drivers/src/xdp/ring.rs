//! The memory AF_XDP shares with the kernel: the UMEM (frames of packet
//! data, registered with `XDP_UMEM_REG`) and the single-producer,
//! single-consumer rings mapped at the offsets `XDP_MMAP_OFFSETS` gives —
//! the TX ring (we produce `struct xdp_desc`s) and the completion ring (the
//! kernel produces the addresses of frames it is done with).
//!
//! Stands for the user-space side of `include/uapi/linux/if_xdp.h`,
//! `net/xdp/xsk_queue.h` (the ring protocol: a free-running `u32` producer
//! and consumer index each, `index & (size - 1)` the slot; the producer
//! writes its entries, then publishes the producer index with release
//! ordering; the consumer reads the producer index with acquire ordering,
//! then the entries, then publishes its consumer index with release
//! ordering) and `net/xdp/xdp_umem.c` (registration). Every `unsafe` block
//! of the AF_XDP driver is in this file, each with its SAFETY argument.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, Ordering};

use ipxmit::PacketBuf;
use rustix::io::Errno;

/// `XDP_MAX_TX_SKB_BUDGET` (`include/uapi/linux/if_xdp.h`, Linux 6.17):
/// how many descriptors one `sendto` drains from the TX ring in copy mode
/// (32 by default, `TX_BATCH_SIZE` before it). Not in libc 0.2.191; older
/// kernels answer `ENOPROTOOPT`.
pub const XDP_MAX_TX_SKB_BUDGET: i32 = 9;

/// `socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0)`.
pub fn xsk_socket() -> Result<OwnedFd, Errno> {
    // SAFETY: plain socket(2) call with constant arguments; the result is
    // checked before it is used.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Errno::from_raw_os_error(last_errno()));
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn last_errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `setsockopt(fd, SOL_XDP, name, &value, sizeof value)` for a plain-data
/// value (`int`, `struct xdp_umem_reg`).
fn set_xdp_opt<T: Copy>(fd: BorrowedFd<'_>, name: i32, value: &T) -> Result<(), Errno> {
    // SAFETY: `value` points to a live `T` of the given size; the kernel
    // copies it in and keeps no reference. `T` is plain data.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(Errno::from_raw_os_error(last_errno()))
    } else {
        Ok(())
    }
}

/// `setsockopt(fd, SOL_XDP, name, u32)`: ring sizes (`XDP_TX_RING`,
/// `XDP_UMEM_FILL_RING`, `XDP_UMEM_COMPLETION_RING`) and budgets.
pub fn set_xdp_u32(fd: BorrowedFd<'_>, name: i32, value: u32) -> Result<(), Errno> {
    set_xdp_opt(fd, name, &value)
}

/// `getsockopt(fd, SOL_XDP, name)` into a plain-data `T`; returns it and
/// the length the kernel wrote.
fn get_xdp_opt<T: Copy>(fd: BorrowedFd<'_>, name: i32) -> Result<(T, usize), Errno> {
    // SAFETY: `T` is one of the if_xdp.h structs, plain integers, for which
    // all-zero is a valid value.
    let mut v: T = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `v` is a live, writable `T` and `len` holds its size; the
    // kernel writes at most `len` bytes and updates `len`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            name,
            (&mut v as *mut T).cast(),
            &mut len,
        )
    };
    if r < 0 {
        Err(Errno::from_raw_os_error(last_errno()))
    } else {
        Ok((v, len as usize))
    }
}

/// `XDP_MMAP_OFFSETS`: where producer, consumer, flags and descriptors sit
/// in each ring's mapping. `None` from a kernel older than 5.4, whose
/// offsets have no `flags` (no `need_wakeup`).
pub fn mmap_offsets(fd: BorrowedFd<'_>) -> Result<Option<libc::xdp_mmap_offsets>, Errno> {
    let (off, len) = get_xdp_opt::<libc::xdp_mmap_offsets>(fd, libc::XDP_MMAP_OFFSETS)?;
    Ok((len == std::mem::size_of::<libc::xdp_mmap_offsets>()).then_some(off))
}

/// `XDP_OPTIONS`: true when the socket is bound in zero-copy mode.
pub fn is_zerocopy(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    let (o, _) = get_xdp_opt::<libc::xdp_options>(fd, libc::XDP_OPTIONS)?;
    Ok(o.flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
}

/// `XDP_STATISTICS`: descriptors the kernel found invalid on the TX ring.
pub fn tx_invalid_descs(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    let (s, _) = get_xdp_opt::<libc::xdp_statistics>(fd, libc::XDP_STATISTICS)?;
    Ok(s.tx_invalid_descs)
}

/// `bind(fd, sockaddr_xdp{AF_XDP, flags, ifindex, queue_id})`.
pub fn bind_xsk(fd: BorrowedFd<'_>, ifindex: u32, queue: u32, flags: u16) -> Result<(), Errno> {
    let sxdp = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: flags,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: 0,
    };
    // SAFETY: `sxdp` is a live sockaddr_xdp and the length passed is its size.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sxdp as *const libc::sockaddr_xdp).cast(),
            std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(Errno::from_raw_os_error(last_errno()))
    } else {
        Ok(())
    }
}

/// Kernel: `xsk_sendmsg()` reached by `sendto(fd, NULL, 0, MSG_DONTWAIT,
/// NULL, 0)`: the TX doorbell (copy mode: `xsk_generic_xmit` sends what the
/// ring holds, up to the budget; zero-copy: `ndo_xsk_wakeup`).
pub fn kick(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    loop {
        // SAFETY: a zero-length send with no buffer and no address: the
        // kernel reads no memory of ours.
        let r = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if r >= 0 {
            return Ok(());
        }
        match last_errno() {
            libc::EINTR => continue,
            e => return Err(Errno::from_raw_os_error(e)),
        }
    }
}

/// The UMEM: `frames` chunks of `chunk` bytes of anonymous, populated
/// memory, registered with the socket that owns it.
pub struct Umem {
    base: NonNull<u8>,
    len: usize,
    chunk: usize,
}

// SAFETY: the mapping is owned by this value (unmapped on drop) and only
// written through `&mut self`; the kernel reads frames we handed it, which
// we do not touch until their completion.
unsafe impl Send for Umem {}

impl Umem {
    /// Maps `frames * chunk` bytes (`MAP_PRIVATE | MAP_ANONYMOUS |
    /// MAP_POPULATE`, so no page fault on the transmit path).
    pub fn new(frames: usize, chunk: usize) -> Result<Umem, Errno> {
        let len = frames * chunk;
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let p = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::POPULATE,
            )
        }?;
        let base = NonNull::new(p.cast::<u8>()).ok_or(Errno::NOMEM)?;
        Ok(Umem { base, len, chunk })
    }

    /// Kernel: `xdp_umem_reg()` via `XDP_UMEM_REG`: the kernel pins the
    /// pages (charged to `RLIMIT_MEMLOCK` without `CAP_IPC_LOCK`).
    pub fn register(&self, fd: BorrowedFd<'_>) -> Result<(), Errno> {
        let reg = libc::xdp_umem_reg {
            addr: self.base.as_ptr() as u64,
            len: self.len as u64,
            chunk_size: self.chunk as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        set_xdp_opt(fd, libc::XDP_UMEM_REG, &reg)
    }

    /// Bytes in the UMEM.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Copies `pkt`'s segments into the frame at UMEM offset `addr` (a
    /// frame we own: free, not handed to the kernel). Returns the length,
    /// or `None` when `pkt` does not fit a frame.
    pub fn fill(&mut self, addr: u64, pkt: &PacketBuf) -> Option<u32> {
        let len = pkt.len();
        let start = addr as usize;
        if len > self.chunk || start + self.chunk > self.len {
            return None;
        }
        let base = self.base.as_ptr();
        let mut at = 0usize;
        pkt.for_each_segment(&mut |s| {
            let n = s.len().min(len - at);
            // SAFETY: `start + at + n <= start + len <= start + chunk <=
            // self.len`: inside the mapping; the frame is ours until we put
            // it on the TX ring; `s` is the packet's memory, disjoint from
            // the UMEM.
            unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), base.add(start + at), n) };
            at += n;
        });
        Some(at as u32)
    }
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly the mapping made in `new`; the
        // socket that registered it is closed first (see `XskQueue`), and
        // no reference into it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// One ring's mapping: the producer, consumer and flags words and the
/// descriptor array, at the kernel's offsets.
struct RingMap {
    base: NonNull<u8>,
    len: usize,
    producer: usize,
    consumer: usize,
    flags: usize,
    desc: usize,
    /// Entries (a power of two).
    size: u32,
}

impl RingMap {
    /// Maps the ring of `size` entries of `entry` bytes at page offset `pgoff`.
    fn map(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_ring_offset,
        size: u32,
        entry: usize,
        pgoff: u64,
    ) -> Result<RingMap, Errno> {
        let len = off.desc as usize + size as usize * entry;
        // SAFETY: a fresh shared mapping of a ring the kernel allocated for
        // this socket (`setsockopt` of its size came first); no existing
        // memory is affected.
        let p = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED | rustix::mm::MapFlags::POPULATE,
                fd,
                pgoff,
            )
        }?;
        let base = NonNull::new(p.cast::<u8>()).ok_or(Errno::NOMEM)?;
        Ok(RingMap {
            base,
            len,
            producer: off.producer as usize,
            consumer: off.consumer as usize,
            flags: off.flags as usize,
            desc: off.desc as usize,
            size,
        })
    }

    fn word(&self, off: usize) -> &AtomicU32 {
        // SAFETY: the kernel's offsets of the producer, consumer and flags
        // words are 4-aligned and inside the mapping, which lives as long
        // as `self`; the kernel accesses them concurrently, which is why
        // they are only read and written atomically.
        unsafe { &*self.base.as_ptr().add(off).cast::<AtomicU32>() }
    }

    /// Pointer to entry `i` (any index; wrapped by the ring's mask).
    fn entry(&self, i: u32, size: usize) -> *mut u8 {
        let slot = (i & (self.size - 1)) as usize;
        // SAFETY: `desc + slot * size` is inside the mapping (`slot < size`
        // entries follow `desc`).
        unsafe { self.base.as_ptr().add(self.desc + slot * size) }
    }
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `map`; no reference into it
        // outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// The TX ring: we produce `struct xdp_desc`s, the kernel consumes them.
pub struct TxRing {
    map: RingMap,
    /// Our producer index: entries written, published or not.
    cached_prod: u32,
    /// The producer index last published.
    published: u32,
    /// The kernel's consumer index as last read.
    cached_cons: u32,
}

// SAFETY: the mapping is owned by the ring and only reached through `&mut
// self` (our side) or atomics (the shared words); moving it to another
// thread is sound.
unsafe impl Send for TxRing {}

impl TxRing {
    /// Maps the TX ring of `size` entries (`XDP_PGOFF_TX_RING`).
    pub fn map(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_mmap_offsets,
        size: u32,
    ) -> Result<TxRing, Errno> {
        let entry = std::mem::size_of::<libc::xdp_desc>();
        let map = RingMap::map(fd, &off.tx, size, entry, libc::XDP_PGOFF_TX_RING as u64)?;
        Ok(TxRing {
            map,
            cached_prod: 0,
            published: 0,
            cached_cons: 0,
        })
    }

    /// Kernel: `xskq_prod_nb_free()` from the producer's side. Free slots,
    /// reading the kernel's consumer index again (acquire: its reads of
    /// the entries it consumed are done) when the cached one shows none.
    pub fn free(&mut self) -> u32 {
        let free = self.map.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free > 0 {
            return free;
        }
        self.cached_cons = self.map.word(self.map.consumer).load(Ordering::Acquire);
        self.map.size - self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Writes the descriptor (`addr`, `len`) into the next slot (which
    /// [`TxRing::free`] said is free). Not seen by the kernel before
    /// [`TxRing::submit`].
    pub fn push(&mut self, addr: u64, len: u32) {
        debug_assert!(self.cached_prod.wrapping_sub(self.cached_cons) < self.map.size);
        let p = self
            .map
            .entry(self.cached_prod, std::mem::size_of::<libc::xdp_desc>());
        let d = libc::xdp_desc {
            addr,
            len,
            options: 0,
        };
        // SAFETY: `p` is a slot of the descriptor array, 16-byte entries at
        // the kernel's (8-aligned) offset; the slot is free (the kernel's
        // consumer index passed it, or it was never used), so the kernel
        // does not read it until the producer index is published.
        unsafe { p.cast::<libc::xdp_desc>().write_volatile(d) };
        self.cached_prod = self.cached_prod.wrapping_add(1);
    }

    /// Kernel: `xskq_prod_submit()` from the producer's side. Publishes the
    /// written descriptors (release: their contents, and the frames' data,
    /// are visible to the kernel before the index that covers them).
    pub fn submit(&mut self) {
        if self.published != self.cached_prod {
            self.map
                .word(self.map.producer)
                .store(self.cached_prod, Ordering::Release);
            self.published = self.cached_prod;
        }
    }

    /// Published descriptors the kernel has not consumed yet.
    pub fn unsent(&mut self) -> u32 {
        self.cached_cons = self.map.word(self.map.consumer).load(Ordering::Acquire);
        self.published.wrapping_sub(self.cached_cons)
    }

    /// `XDP_RING_NEED_WAKEUP` on the TX ring: the kernel will not look at
    /// the ring until kicked. A full fence first orders our producer store
    /// before this load, against the kernel setting the flag and then
    /// reading the producer index (else both could miss the other).
    pub fn needs_wakeup(&self) -> bool {
        fence(Ordering::SeqCst);
        self.map.word(self.map.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }
}

/// The completion ring: the kernel produces the UMEM addresses of frames it
/// is done with, we consume them.
pub struct CompRing {
    map: RingMap,
    /// Our consumer index.
    cached_cons: u32,
}

// SAFETY: as for `TxRing`.
unsafe impl Send for CompRing {}

impl CompRing {
    /// Maps the completion ring of `size` entries
    /// (`XDP_UMEM_PGOFF_COMPLETION_RING`).
    pub fn map(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_mmap_offsets,
        size: u32,
    ) -> Result<CompRing, Errno> {
        let pgoff = libc::XDP_UMEM_PGOFF_COMPLETION_RING;
        let map = RingMap::map(fd, &off.cr, size, 8, pgoff)?;
        Ok(CompRing {
            map,
            cached_cons: 0,
        })
    }

    /// Kernel: the consumer's `xskq_cons_peek_addr` loop and
    /// `xskq_cons_release`. Hands each completed frame's address to `f`,
    /// then returns the slots; returns how many.
    pub fn drain(&mut self, mut f: impl FnMut(u64)) -> u32 {
        // Acquire: the kernel's writes of the entries are seen.
        let prod = self.map.word(self.map.producer).load(Ordering::Acquire);
        let n = prod.wrapping_sub(self.cached_cons);
        for k in 0..n {
            let p = self.map.entry(self.cached_cons.wrapping_add(k), 8);
            // SAFETY: an 8-aligned `u64` slot of the completion ring that
            // the kernel published (it is below the producer index read
            // above) and does not rewrite before we release it.
            f(unsafe { p.cast::<u64>().read_volatile() });
        }
        if n > 0 {
            self.cached_cons = prod;
            // Release: our reads of the entries are done before the kernel
            // may reuse the slots.
            self.map
                .word(self.map.consumer)
                .store(prod, Ordering::Release);
        }
        n
    }
}
