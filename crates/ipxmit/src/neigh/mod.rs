//! Neighbours: next-hop link addresses, their resolution over ARP, and the
//! cached hardware header.
//!
//! Stands for `struct neighbour` and the neighbour state machine
//! (`net/core/neighbour.c`: `__neigh_event_send`, `neigh_timer_handler`,
//! `neigh_update`, `neigh_invalidate`, `neigh_resolve_output`), the ARP side
//! (`net/ipv4/arp.c`: `arp_solicit`, `arp_process`, `arp_send_dst`) and
//! `struct hh_cache` (`neigh_hh_output`, `include/net/neighbour.h`).
//!
//! The NUD state machine, with the kernel's default `arp_tbl` parameters:
//!
//! * A send to an unknown next hop creates the entry and makes it INCOMPLETE:
//!   the packet waits on the entry's queue (at most `unres_qlen_bytes`, 212992
//!   bytes of truesize; the oldest are dropped as `NEIGH_QUEUEFULL`), a broadcast
//!   ARP request goes out at once and again every `retrans_time` (1 s) — three in
//!   all (`mcast_solicit`) — and then the entry is FAILED: the queue is dropped
//!   as `NEIGH_FAILED`. A later send starts over.
//! * A reply makes it REACHABLE: the cached Ethernet header is built and the
//!   queued packets leave in order. REACHABLE lasts a random 0.5–1.5 ×
//!   `base_reachable_time` (30 s) after the last confirmation, then STALE.
//! * A send through a STALE entry uses the old address and moves it to DELAY;
//!   `delay_first_probe_time` (5 s) later, unless confirmed meanwhile, it is
//!   PROBE: unicast requests every second, three (`ucast_solicit`), then FAILED.
//! * Requests for one of our addresses are answered, and their sender is
//!   learned as STALE; gratuitous ARP updates an existing entry.
//! * PERMANENT (static) and NOARP entries never change.
//!
//! Timers are driven by the injected clock through [`crate::stack::Stack::poll`];
//! armed timers wait in a heap (`timers`), so a poll with none due costs
//! O(1) and running them O(expired · log n), whatever the table's size.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
use parking_lot::{Mutex, MutexGuard};

use crate::buf::PacketBuf;
use crate::dev::NetDevice;
use crate::stats::DropReason;
use crate::time::Instant;
use crate::wire::EthernetAddress;

pub mod arp;
mod hh_seq;
mod timers;

use hh_seq::HhSeq;
use timers::TimerQueue;

pub use arp::{arp_rcv, neigh_output, run_timers};

/// Neighbour table parameters (`struct neigh_parms`, `net.ipv4.neigh.*`).
#[derive(Clone, Debug)]
pub struct NeighParms {
    /// `mcast_solicit`: broadcast requests while INCOMPLETE.
    pub mcast_probes: u32,
    /// `ucast_solicit`: unicast requests while PROBE.
    pub ucast_probes: u32,
    /// `app_solicit`.
    pub app_probes: u32,
    /// `retrans_time_ms`.
    pub retrans_time: Duration,
    /// `base_reachable_time_ms`.
    pub base_reachable_time: Duration,
    /// `delay_first_probe_time`.
    pub delay_probe_time: Duration,
    /// `unres_qlen_bytes`.
    pub queue_len_bytes: usize,
}

impl Default for NeighParms {
    fn default() -> Self {
        NeighParms {
            mcast_probes: 3,
            ucast_probes: 3,
            app_probes: 0,
            retrans_time: Duration::from_secs(1),
            base_reachable_time: Duration::from_secs(30),
            delay_probe_time: Duration::from_secs(5),
            queue_len_bytes: 212_992,
        }
    }
}

/// Neighbour Unreachability Detection state (`NUD_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NudState {
    /// `NUD_NONE`: just created.
    None,
    /// `NUD_INCOMPLETE`: resolution in progress.
    Incomplete,
    /// `NUD_REACHABLE`: confirmed recently.
    Reachable,
    /// `NUD_STALE`: usable, confirmation due.
    Stale,
    /// `NUD_DELAY`: waiting before probing.
    Delay,
    /// `NUD_PROBE`: probing.
    Probe,
    /// `NUD_FAILED`: resolution failed.
    Failed,
    /// `NUD_NOARP`: no resolution needed.
    Noarp,
    /// `NUD_PERMANENT`: static.
    Permanent,
}

impl NudState {
    /// `NUD_CONNECTED`: the cached header may be used without events.
    pub fn is_connected(self) -> bool {
        matches!(
            self,
            NudState::Permanent | NudState::Noarp | NudState::Reachable
        )
    }

    /// `NUD_VALID`: the link address is usable.
    pub fn is_valid(self) -> bool {
        self.is_connected() || matches!(self, NudState::Stale | NudState::Delay | NudState::Probe)
    }

    /// As `ip neigh` prints it.
    pub fn name(self) -> &'static str {
        match self {
            NudState::None => "NONE",
            NudState::Incomplete => "INCOMPLETE",
            NudState::Reachable => "REACHABLE",
            NudState::Stale => "STALE",
            NudState::Delay => "DELAY",
            NudState::Probe => "PROBE",
            NudState::Failed => "FAILED",
            NudState::Noarp => "NOARP",
            NudState::Permanent => "PERMANENT",
        }
    }
}

impl std::str::FromStr for NudState {
    type Err = String;
    fn from_str(s: &str) -> Result<NudState, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "permanent" => NudState::Permanent,
            "noarp" => NudState::Noarp,
            "reachable" => NudState::Reachable,
            "stale" => NudState::Stale,
            "delay" => NudState::Delay,
            "probe" => NudState::Probe,
            "incomplete" => NudState::Incomplete,
            "failed" => NudState::Failed,
            "none" => NudState::None,
            _ => return Err(format!("invalid nud state {s:?}")),
        })
    }
}

/// The cached hardware header (`struct hh_cache`): an Ethernet header for IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HhCache {
    /// The header bytes: destination, source, EtherType 0x0800.
    pub hdr: [u8; 14],
}

impl HhCache {
    /// The header from `src` to `dst` carrying IPv4.
    pub fn ethernet_ipv4(dst: EthernetAddress, src: EthernetAddress) -> HhCache {
        let eth = crate::wire::EthernetRepr {
            src_addr: src,
            dst_addr: dst,
            ethertype: crate::wire::EtherType::Ipv4,
        };
        HhCache {
            hdr: eth.to_bytes(),
        }
    }
}

/// How an ARP request is addressed (`arp_solicit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Broadcast, while INCOMPLETE.
    Broadcast,
    /// Unicast to the address we have, while PROBE.
    Unicast(EthernetAddress),
}

/// What the caller must do after a state change, outside the entry's lock.
#[derive(Debug, Default)]
pub struct Actions {
    /// Send an ARP request for the entry.
    pub probe: Option<Probe>,
    /// Packets to transmit now with this header, in order.
    pub release: Vec<PacketBuf>,
    /// The header for the released packets.
    pub hh: Option<HhCache>,
    /// Packets to drop, with the reason.
    pub drop: Vec<(PacketBuf, DropReason)>,
}

/// What a send through an entry that is not connected leads to.
#[derive(Debug)]
pub enum Resolved {
    /// Send now with this header (STALE, DELAY, PROBE: the old address).
    Send(PacketBuf, HhCache),
    /// Queued until resolution; maybe with an ARP request to send and older
    /// packets dropped to make room.
    Queued(Actions),
}

/// One neighbour entry.
pub struct Neighbour {
    /// The neighbour's IPv4 address.
    pub addr: Ipv4Addr,
    /// Interface index it is reached through.
    pub ifindex: u32,
    /// Our hardware address on that interface.
    dev_addr: EthernetAddress,
    inner: Mutex<NeighInner>,
    /// What [`Neighbour::connected_hh`] gives — the header while the entry
    /// is connected and not releasing its queue — published under `inner`
    /// whenever a change goes, read without it (`hh_cache`'s seqlock).
    hh_fast: HhSeq,
    /// The armed timer's time in nanoseconds ([`NOT_ARMED`] for none), as
    /// `inner.timer`, readable without the lock (to tell stale heap items).
    armed: AtomicU64,
    /// The table's timer queue, where arming the timer records it.
    timers: Arc<TimerQueue>,
}

/// [`Neighbour::armed`] with no timer.
const NOT_ARMED: u64 = u64::MAX;

/// The entry's lock, for a change that may arm its timer: when the guard
/// goes, a timer armed at a new time is recorded in the table's queue
/// (`neigh_add_timer`), and [`Neighbour::armed`] follows `timer`.
struct Armed<'a> {
    n: &'a Neighbour,
    i: MutexGuard<'a, NeighInner>,
    /// The timer as recorded in the queue; a timer differing from it when
    /// the guard goes is recorded anew.
    recorded: Option<Instant>,
}

impl std::ops::Deref for Armed<'_> {
    type Target = NeighInner;
    fn deref(&self) -> &NeighInner {
        &self.i
    }
}

impl std::ops::DerefMut for Armed<'_> {
    fn deref_mut(&mut self) -> &mut NeighInner {
        &mut self.i
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.n.publish_hh(&self.i);
        let t = self.i.timer;
        if t == self.recorded {
            return;
        }
        let ns = t.map_or(NOT_ARMED, Instant::as_nanos);
        self.n.armed.store(ns, Ordering::Release);
        if let Some(t) = t {
            self.n.timers.arm(t, (self.n.ifindex, self.n.addr));
        }
    }
}

#[derive(Debug)]
struct NeighInner {
    state: NudState,
    lladdr: Option<EthernetAddress>,
    hh: Option<HhCache>,
    updated: Instant,
    confirmed: Instant,
    used: Instant,
    probes: u32,
    timer: Option<Instant>,
    reachable_time: Duration,
    queue: VecDeque<PacketBuf>,
    queue_bytes: usize,
    /// Queued packets are being handed out after resolution: later packets
    /// queue behind them so none overtakes (the kernel sends them under the
    /// entry's lock).
    releasing: bool,
}

impl fmt::Debug for Neighbour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.inner.lock();
        f.debug_struct("Neighbour")
            .field("addr", &self.addr)
            .field("ifindex", &self.ifindex)
            .field("state", &i.state)
            .field("lladdr", &i.lladdr)
            .field("queued", &i.queue.len())
            .finish()
    }
}

/// `neigh_rand_reach_time`: uniformly in [base/2, 3·base/2).
fn rand_reach_time(base: Duration, seed: u64) -> Duration {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    let frac = (x % 1_000_000) as f64 / 1_000_000.0;
    base.mul_f64(0.5 + frac)
}

impl Neighbour {
    fn new(
        addr: Ipv4Addr,
        ifindex: u32,
        dev_addr: EthernetAddress,
        now: Instant,
        parms: &NeighParms,
        noarp: Option<EthernetAddress>,
        timers: Arc<TimerQueue>,
    ) -> Neighbour {
        let seed = u64::from(u32::from(addr)) ^ now.as_nanos();
        let hh = noarp.map(|ll| HhCache::ethernet_ipv4(ll, dev_addr));
        Neighbour {
            addr,
            ifindex,
            dev_addr,
            inner: Mutex::new(NeighInner {
                state: if noarp.is_some() {
                    NudState::Noarp
                } else {
                    NudState::None
                },
                lladdr: noarp,
                hh,
                updated: now,
                confirmed: now,
                used: now,
                probes: 0,
                timer: None,
                reachable_time: rand_reach_time(parms.base_reachable_time, seed),
                queue: VecDeque::new(),
                queue_bytes: 0,
                releasing: false,
            }),
            hh_fast: HhSeq::new(hh),
            armed: AtomicU64::new(NOT_ARMED),
            timers,
        }
    }

    /// Publishes what [`Neighbour::connected_hh`] gives for the entry as
    /// `i` (its locked state) now is.
    fn publish_hh(&self, i: &NeighInner) {
        let connected = i.state.is_connected() && !i.releasing;
        self.hh_fast.publish(if connected { i.hh } else { None });
    }

    /// The entry's lock for a change that may arm the timer ([`Armed`]).
    fn lock_armed(&self) -> Armed<'_> {
        let i = self.inner.lock();
        let recorded = i.timer;
        Armed {
            n: self,
            i,
            recorded,
        }
    }

    /// The armed timer as the table's queue sees it, without the lock.
    fn armed_at(&self) -> Option<Instant> {
        match self.armed.load(Ordering::Acquire) {
            NOT_ARMED => None,
            ns => Some(Instant::from_nanos(ns)),
        }
    }

    /// Current state.
    pub fn state(&self) -> NudState {
        self.inner.lock().state
    }

    /// Link address, when known.
    pub fn lladdr(&self) -> Option<EthernetAddress> {
        self.inner.lock().lladdr
    }

    /// Packets waiting for resolution.
    pub fn queued(&self) -> usize {
        self.inner.lock().queue.len()
    }

    /// When the entry's timer fires next.
    pub fn timer(&self) -> Option<Instant> {
        self.inner.lock().timer
    }

    /// Kernel: `neigh_hh_output()`'s read of the header. The cached header
    /// when the entry is connected and not releasing its queue
    /// (`neigh_output` fast path), read without the entry's lock.
    #[inline]
    pub fn connected_hh(&self) -> Option<HhCache> {
        self.hh_fast.read()
    }

    /// `dst_confirm_neigh` (`MSG_CONFIRM`): the peer is known to be reachable.
    pub fn confirm(&self, now: Instant) {
        self.inner.lock().confirmed = now;
    }
}

impl Neighbour {
    /// Kernel: `neigh_resolve_output()` with `__neigh_event_send()`. For an entry
    /// that is not connected: send with the old address (STALE moves to DELAY),
    /// or queue and start (or continue) resolution.
    pub fn resolve(&self, pkt: PacketBuf, now: Instant, parms: &NeighParms) -> Resolved {
        let mut i = self.lock_armed();
        i.used = now;
        let started = matches!(i.state, NudState::None | NudState::Failed);
        match i.state {
            NudState::Stale => {
                i.state = NudState::Delay;
                i.updated = now;
                i.timer = Some(now + parms.delay_probe_time);
            }
            NudState::None | NudState::Failed => {
                i.state = NudState::Incomplete;
                i.updated = now;
                i.probes = parms.ucast_probes;
                i.timer = Some(now + parms.retrans_time);
            }
            _ => {}
        }
        if let (true, Some(hh), false) = (i.state.is_valid(), i.hh, i.releasing) {
            return Resolved::Send(pkt, hh);
        }
        let mut a = Actions::default();
        let truesize = pkt.truesize();
        while i.queue_bytes + truesize > parms.queue_len_bytes {
            let Some(old) = i.queue.pop_front() else {
                break;
            };
            i.queue_bytes -= old.truesize();
            a.drop.push((old, DropReason::NeighQueueFull));
        }
        i.queue_bytes += truesize;
        i.queue.push_back(pkt);
        if started {
            a.probe = Some(solicit(&mut i, parms));
        }
        Resolved::Queued(a)
    }

    /// Kernel: `neigh_update()`. A new state (and address) learned from ARP or
    /// set by the administrator; releases the queue when the entry becomes
    /// valid, drops it when it fails.
    pub fn update(
        &self,
        state: NudState,
        lladdr: Option<EthernetAddress>,
        admin: bool,
        now: Instant,
    ) -> Actions {
        let mut i = self.lock_armed();
        if tracing::level_enabled!(tracing::Level::INFO) {
            self.trace_update(&i, (state, lladdr), admin);
        }
        let mut a = Actions::default();
        let old = i.state;
        if !admin && matches!(old, NudState::Permanent | NudState::Noarp) {
            return a;
        }
        let changed = lladdr.is_some() && lladdr != i.lladdr;
        let mut new = state;
        if !admin && !changed && new == NudState::Stale && old.is_valid() {
            new = old;
        }
        if lladdr.is_some() {
            i.lladdr = lladdr;
        }
        i.hh = i.lladdr.map(|ll| HhCache::ethernet_ipv4(ll, self.dev_addr));
        if new.is_connected() {
            i.confirmed = now;
        }
        if new != old || changed {
            i.updated = now;
        }
        i.state = new;
        i.timer = match new {
            NudState::Reachable => Some(now + i.reachable_time),
            NudState::Delay => i.timer,
            _ => None,
        };
        if !old.is_valid() && new.is_valid() {
            a.hh = i.hh;
            a.release = i.queue.drain(..).collect();
            i.queue_bytes = 0;
            i.releasing = !a.release.is_empty();
        } else if new == NudState::Failed {
            invalidate(&mut i, &mut a);
        }
        a
    }

    /// Tracepoint `neigh_update` (`include/trace/events/neigh.h`), fired
    /// as `__neigh_update()` begins: the entry as it is (`lladdr`,
    /// `nud_state`) and what is asked (`new_lladdr`, `new_state`; `admin`
    /// for the kernel's `NEIGH_UPDATE_F_ADMIN`). States as `ip neigh`
    /// prints them; no link address prints as `-`.
    #[cold]
    #[inline(never)]
    fn trace_update(
        &self,
        i: &NeighInner,
        (new_state, new_lladdr): (NudState, Option<EthernetAddress>),
        admin: bool,
    ) {
        let ll = |a: Option<EthernetAddress>| a.map_or_else(|| "-".to_string(), |a| a.to_string());
        tracing::info!(
            name: "neigh_update",
            target: crate::trace::NEIGH,
            ifindex = self.ifindex,
            primary_key4 = %self.addr,
            lladdr = %ll(i.lladdr),
            nud_state = %i.state.name(),
            new_lladdr = %ll(new_lladdr),
            new_state = %new_state.name(),
            admin,
            "neigh_update"
        );
    }

    /// Packets queued while the released ones were being sent, with their
    /// header; `None` (and the entry back to normal sending) when there are none.
    pub fn release_more(&self) -> Option<(Vec<PacketBuf>, HhCache)> {
        let mut i = self.inner.lock();
        match (i.queue.is_empty(), i.hh) {
            (false, Some(hh)) if i.state.is_valid() => {
                i.queue_bytes = 0;
                Some((i.queue.drain(..).collect(), hh))
            }
            _ => {
                i.releasing = false;
                self.publish_hh(&i);
                None
            }
        }
    }

    /// Kernel: `neigh_timer_handler()`. Runs the entry's timer if due.
    pub fn run_timer(&self, now: Instant, parms: &NeighParms) -> Actions {
        let mut i = self.lock_armed();
        let mut a = Actions::default();
        let Some(t) = i.timer else { return a };
        if t > now {
            return a;
        }
        // The queue's item for `t` was taken to get here: whatever timer
        // this leaves armed (even at `t` again) is recorded anew.
        i.recorded = None;
        i.timer = None;
        match i.state {
            NudState::Reachable => reachable_expired(&mut i, now, parms),
            NudState::Delay => delay_expired(&mut i, now, parms),
            NudState::Incomplete | NudState::Probe => i.timer = Some(now + parms.retrans_time),
            _ => return a,
        }
        if matches!(i.state, NudState::Incomplete | NudState::Probe) {
            if i.probes >= max_probes(i.state, parms) {
                i.state = NudState::Failed;
                i.updated = now;
                i.timer = None;
                invalidate(&mut i, &mut a);
                return a;
            }
            a.probe = Some(solicit(&mut i, parms));
        }
        a
    }
}

fn reachable_expired(i: &mut NeighInner, now: Instant, parms: &NeighParms) {
    if now <= i.confirmed + i.reachable_time {
        i.timer = Some(i.confirmed + i.reachable_time);
    } else if now <= i.used + parms.delay_probe_time {
        i.state = NudState::Delay;
        i.updated = now;
        i.timer = Some(now + parms.delay_probe_time);
    } else {
        i.state = NudState::Stale;
        i.updated = now;
    }
}

fn delay_expired(i: &mut NeighInner, now: Instant, parms: &NeighParms) {
    if now <= i.confirmed + parms.delay_probe_time {
        i.state = NudState::Reachable;
        i.updated = now;
        i.timer = Some(i.confirmed + i.reachable_time);
    } else {
        i.state = NudState::Probe;
        i.updated = now;
        i.probes = 0;
        i.timer = Some(now + parms.retrans_time);
    }
}

/// `neigh_max_probes`.
fn max_probes(state: NudState, p: &NeighParms) -> u32 {
    let base = p.ucast_probes + p.app_probes;
    if state == NudState::Probe {
        base
    } else {
        base + p.mcast_probes
    }
}

/// `neigh_probe` + `arp_solicit`: unicast while probes are below the unicast
/// count and the address is known, broadcast otherwise.
fn solicit(i: &mut NeighInner, p: &NeighParms) -> Probe {
    let probe = match i.lladdr {
        Some(ll) if i.probes < p.ucast_probes => Probe::Unicast(ll),
        _ => Probe::Broadcast,
    };
    i.probes += 1;
    probe
}

/// `neigh_invalidate`: every queued packet is dropped as `NEIGH_FAILED`.
fn invalidate(i: &mut NeighInner, a: &mut Actions) {
    a.drop
        .extend(i.queue.drain(..).map(|p| (p, DropReason::NeighFailed)));
    i.queue_bytes = 0;
}

/// A fast hasher for small fixed keys (the kernel's `arp_hashfn` is a multiply
/// and shift too); the table is not exposed to untrusted key choice beyond
/// what routes allow.
pub type FastHash = std::hash::BuildHasherDefault<MulHasher>;

/// Multiply-rotate hasher over the key's integers.
#[derive(Default, Clone, Copy, Debug)]
pub struct MulHasher(u64);

impl std::hash::Hasher for MulHasher {
    /// The state turned so its best-mixed bits come first: a multiply
    /// carries only upwards, so its low bits depend on the input's low
    /// bits alone, and the table picks buckets by the hash's low bits
    /// (rustc-hash's `finish` turns its state the same way). Unturned,
    /// keys differing in their last byte shared those bits: 100,000
    /// neighbours made one probe run, 8 µs per lookup.
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(23) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The entries of a [`NeighTable`].
type NeighMap = HashMap<(u32, Ipv4Addr), Arc<Neighbour>, FastHash>;

/// The neighbour table (`arp_tbl`), keyed by interface and address.
#[derive(Debug, Default)]
pub struct NeighTable {
    /// The entries, read-locked at each batch's lookup: a lock sharded per
    /// thread (a reader locks its own shard, on its own cache line; a
    /// change locks them all), so that readers on several threads write
    /// no line in common, as the kernel's RCU hash lookup
    /// (`__ipv4_neigh_lookup_noref`) writes none.
    map: ShardedLock<NeighMap>,
    parms: NeighParms,
    /// The entries' armed timers, earliest first (some stale).
    timers: Arc<TimerQueue>,
}

impl NeighTable {
    /// The table's parameters.
    pub fn parms(&self) -> &NeighParms {
        &self.parms
    }

    /// The entries, read-locked (a lock poisoned by a panic elsewhere is
    /// taken all the same: the map is never left half-changed).
    #[inline]
    fn read(&self) -> ShardedLockReadGuard<'_, NeighMap> {
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The entries, locked for a change.
    fn write(&self) -> ShardedLockWriteGuard<'_, NeighMap> {
        self.map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Finds the entry for `addr` on `ifindex` (`__ipv4_neigh_lookup_noref`).
    #[inline]
    pub fn lookup(&self, ifindex: u32, addr: Ipv4Addr) -> Option<Arc<Neighbour>> {
        self.read().get(&(ifindex, addr)).cloned()
    }

    /// The cached header of a connected entry, without taking a reference to
    /// the entry (`__ipv4_neigh_lookup_noref` + `neigh_hh_output`).
    #[inline]
    pub fn connected_hh(&self, ifindex: u32, addr: Ipv4Addr) -> Option<HhCache> {
        self.read()
            .get(&(ifindex, addr))
            .and_then(|n| n.connected_hh())
    }

    /// Finds or creates the entry (`__neigh_create`, state NONE; a multicast
    /// or broadcast address is NOARP at once with its mapped link address,
    /// see [`arp::constructor`]).
    pub fn lookup_or_create(
        &self,
        dev: &NetDevice,
        addr: Ipv4Addr,
        now: Instant,
    ) -> Arc<Neighbour> {
        if let Some(n) = self.lookup(dev.ifindex(), addr) {
            return n;
        }
        self.write()
            .entry((dev.ifindex(), addr))
            .or_insert_with(|| {
                Arc::new(Neighbour::new(
                    addr,
                    dev.ifindex(),
                    dev.hw_addr(),
                    now,
                    &self.parms,
                    arp::constructor(dev, addr),
                    self.timers.clone(),
                ))
            })
            .clone()
    }

    /// Removes an entry; returns whether it existed. Its queue is dropped.
    pub fn remove(&self, ifindex: u32, addr: Ipv4Addr) -> Option<Arc<Neighbour>> {
        self.write().remove(&(ifindex, addr))
    }

    /// Every entry (for `ip neigh show`).
    pub fn entries(&self) -> Vec<Arc<Neighbour>> {
        let mut v: Vec<_> = self.read().values().cloned().collect();
        v.sort_by_key(|n| (n.ifindex, n.addr));
        v
    }

    /// The earliest timer of any entry: the timer queue's first item that
    /// is not stale (stale ones ahead of it are discarded).
    pub fn next_timer(&self) -> Option<Instant> {
        loop {
            let (t, key) = self.timers.peek()?;
            let live = self.read().get(&key).map(|n| n.armed_at());
            if live == Some(Some(t)) {
                return Some(t);
            }
            self.timers.discard(t, key);
        }
    }

    /// Kernel: the timer wheel's expiry of `neigh_timer_handler` timers.
    /// Takes the timers due at `now` off the queue and returns their
    /// entries (each once, in key order) whose timer is still due; the
    /// caller runs them ([`Neighbour::run_timer`]).
    pub fn due(&self, now: Instant) -> Vec<Arc<Neighbour>> {
        let keys = self.timers.take_due(now);
        if keys.is_empty() {
            return Vec::new();
        }
        let map = self.read();
        keys.iter()
            .filter_map(|k| map.get(k))
            .filter(|n| n.timer().is_some_and(|t| t <= now))
            .cloned()
            .collect()
    }

    /// Items in the timer queue, stale ones included (for tests).
    pub fn timer_items(&self) -> usize {
        self.timers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    /// The header read without the lock follows every change as the
    /// locked state says: none while resolving, the header once
    /// REACHABLE, none while the queue is being released (later packets
    /// queue behind it), again once released, none when STALE.
    #[test]
    fn the_lockless_header_follows_the_entry_state() {
        let parms = NeighParms::default();
        let me = EthernetAddress([2, 0, 0, 0, 0, 1]);
        let peer = EthernetAddress([2, 0, 0, 0, 0, 2]);
        let t0 = Instant::from_nanos(1);
        let addr = Ipv4Addr::new(10, 0, 0, 2);
        let n = Neighbour::new(addr, 1, me, t0, &parms, None, Arc::default());
        assert_eq!(n.connected_hh(), None);
        let pkt = PacketBuf::from_slice(64, &[0u8; 28]);
        assert!(matches!(n.resolve(pkt, t0, &parms), Resolved::Queued(_)));
        assert_eq!(n.connected_hh(), None, "INCOMPLETE");
        let a = n.update(NudState::Reachable, Some(peer), false, t0);
        assert_eq!(a.release.len(), 1);
        assert_eq!(n.connected_hh(), None, "releasing its queue");
        assert!(n.release_more().is_none());
        let hh = HhCache::ethernet_ipv4(peer, me);
        assert_eq!(n.connected_hh(), Some(hh), "REACHABLE");
        let late = t0 + parms.base_reachable_time * 2 + parms.delay_probe_time;
        let _ = n.run_timer(late, &parms);
        assert_eq!(n.state(), NudState::Stale);
        assert_eq!(n.connected_hh(), None, "STALE");
    }

    /// Consecutive addresses (a neighbour table's usual keys) spread over
    /// the low bits the table takes for its bucket.
    #[test]
    fn consecutive_keys_spread_over_the_bucket_bits() {
        let b = FastHash::default();
        let mut buckets: Vec<u64> = (0..4096u32)
            .map(|i| b.hash_one((2u32, Ipv4Addr::from(0x0a00_0002 + i))) & 0xffff)
            .collect();
        buckets.sort_unstable();
        buckets.dedup();
        assert!(buckets.len() > 3500, "{} distinct of 4096", buckets.len());
    }
}
