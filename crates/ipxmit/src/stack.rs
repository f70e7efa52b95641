//! `Stack`: one network namespace.
//!
//! Stands for `struct net`: its devices (`dev_base_head`), FIB, neighbour table,
//! netfilter hooks, sysctls and MIB counters, plus the deferred work the kernel
//! does in softirq context (`net_tx_action` for rescheduled queues, qdisc
//! watchdog timers), which here is [`Stack::poll`] with [`Stack::next_wakeup`].
//!
//! A stack is shared between threads (`Arc<Stack>`); sockets are owned by one
//! thread each. Tables that are read per packet are swapped whole on change and
//! cached by sockets, checked with a generation number.

use std::cell::Cell;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::buf::BufPool;
use crate::dev::queue::XmitCtx;
use crate::dev::{DevConfig, DevError, Driver, NetDevice, Notify, TxQueue};
use crate::ipv4::ident::IdentTable;
use crate::neigh::{NeighTable, NudState};
use crate::netfilter::Hooks;
use crate::route::{Rib, RouteError};
use crate::sched::{api, run, Qdisc, QdiscSpec, TcError};

mod input;
mod routing;
mod tc;
use crate::stats::Counters;
use crate::time::{Clock, Instant, MonotonicClock};
use crate::wire::EthernetAddress;
pub use routing::{OutRoute, RouteSpec};

thread_local! {
    /// The stack whose time is frozen on this thread (a time scope: one
    /// clock reading for a whole call), and that time.
    static FROZEN_TIME: Cell<(usize, u64)> = const { Cell::new((0, 0)) };
}

/// [`Stack::now`] of the stack at address `owner` on `clock`, for code that
/// holds no reference to the stack (a hook).
#[inline]
pub(crate) fn now_of(owner: usize, clock: &dyn Clock) -> Instant {
    let (who, t) = FROZEN_TIME.with(Cell::get);
    if who == owner {
        Instant::from_nanos(t)
    } else {
        clock.now()
    }
}

/// Restores the previous frozen time when dropped.
pub(crate) struct TimeScope {
    prev: (usize, u64),
}

impl Drop for TimeScope {
    fn drop(&mut self) {
        FROZEN_TIME.with(|c| c.set(self.prev));
    }
}

/// Tunables of a stack (`/proc/sys/net/...`).
#[derive(Clone, Debug)]
pub struct Sysctls {
    /// `net.ipv4.ip_default_ttl`.
    pub ip_default_ttl: u8,
    /// `net.core.wmem_default`: initial `SO_SNDBUF`.
    pub wmem_default: usize,
    /// `net.core.wmem_max`: largest `SO_SNDBUF` a user may set.
    pub wmem_max: usize,
    /// `net.ipv4.ip_no_pmtu_disc` (0..=3): new sockets start with
    /// `IP_PMTUDISC_DONT` when non-zero (`inet_create()`); 1 also keeps a
    /// "fragmentation needed" from teaching a path MTU (`icmp_unreach()`
    /// passes 0), 2 ignores it, 3 honours it only for protocols that validate it.
    pub ip_no_pmtu_disc: u8,
    /// `net.ipv4.route.min_pmtu`: a learned path MTU is never below this;
    /// a smaller one is clamped and locked (`__ip_rt_update_pmtu()`).
    pub min_pmtu: u32,
    /// `net.ipv4.route.mtu_expires`: how long a learned path MTU lives.
    pub mtu_expires: std::time::Duration,
    /// `net.core.default_qdisc` for new devices.
    pub default_qdisc: QdiscSpec,
    /// `net.ipv4.icmp_msgs_per_sec`: the host-wide ICMP error rate.
    pub icmp_msgs_per_sec: i32,
    /// `net.ipv4.icmp_msgs_burst`: the host-wide ICMP error burst.
    pub icmp_msgs_burst: i32,
    /// `net.ipv4.icmp_ratelimit`, held as the kernel holds it: in jiffies
    /// (`HZ` 250; the sysctl reads and writes milliseconds).
    pub icmp_ratelimit: u32,
    /// `net.ipv4.icmp_ratemask`: the ICMP types rate-limited (a bit per
    /// type; default 6168: destination unreachable, source quench, time
    /// exceeded, parameter problem).
    pub icmp_ratemask: i32,
}

impl Default for Sysctls {
    fn default() -> Self {
        Sysctls {
            ip_default_ttl: 64,
            wmem_default: 212_992,
            wmem_max: 212_992,
            ip_no_pmtu_disc: 0,
            min_pmtu: 552,
            mtu_expires: std::time::Duration::from_secs(600),
            default_qdisc: QdiscSpec::PfifoFast,
            icmp_msgs_per_sec: 1000,
            icmp_msgs_burst: 50,
            icmp_ratelimit: 250,
            icmp_ratemask: 6168,
        }
    }
}

/// Errors of stack configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A device error.
    #[error(transparent)]
    Dev(#[from] DevError),
    /// A routing error.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The named device does not exist.
    #[error("no such device: {0}")]
    NoDevice(String),
    /// A device with that name exists.
    #[error("device {0} already exists")]
    DeviceExists(String),
    /// A qdisc the kernel would refuse.
    #[error(transparent)]
    Qdisc(#[from] crate::sched::SpecError),
    /// A tc request the kernel refuses.
    #[error("{0}")]
    Tc(TcError),
    /// Neighbour entries need an Ethernet device.
    #[error("device {0} has no link-layer addresses (L3 device)")]
    NoLinkLayer(String),
}

/// One network namespace. See the module documentation.
///
/// Aligned to 128 bytes, so that in its `Arc` the fields start a line pair
/// after the reference counts: each socket's batch takes and drops a
/// reference, and the fields every batch reads (clock, pool, counters,
/// tables) would otherwise share the counts' line and miss whenever
/// another thread had just counted.
#[repr(align(128))]
pub struct Stack {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) pool: BufPool,
    pub(crate) counters: Arc<Counters>,
    devices: RwLock<Vec<Arc<NetDevice>>>,
    rib: RwLock<Arc<Rib>>,
    fib_gen: AtomicU64,
    pub(crate) neigh: NeighTable,
    pub(crate) hooks: Hooks,
    pub(crate) notify: Arc<Notify>,
    pub(crate) sysctl: RwLock<Sysctls>,
    pub(crate) idents: IdentTable,
    /// The rate limits on the ICMP errors the host sends.
    pub(crate) icmp_rate: crate::ipv4::icmp_rate::IcmpRateLimit,
    default_ttl: std::sync::atomic::AtomicU8,
    ports: parking_lot::Mutex<Ports>,
    /// The automatic qdisc handles (`qdisc_alloc_handle`).
    autohandle: api::AutoHandle,
    /// Rate estimators by device index ([`Stack::set_estimator`]).
    estimators: parking_lot::Mutex<Vec<(u32, crate::sched::est::Estimators)>>,
    /// When the next estimator sample is due (ns; `est::NEVER`: none).
    est_due: AtomicU64,
    /// The receive backlog `lo` feeds (`softnet_data.input_pkt_queue`).
    pub(crate) backlog: Arc<crate::dev::loopback::Backlog>,
    /// Frames `lo` dropped on a full backlog, not counted yet.
    lo_drops: Arc<crate::dev::loopback::LoopbackDrops>,
    /// Connection tracking (`net->ct`), on while a ruleset needs it.
    pub(crate) conntrack: Arc<crate::nft::conntrack::Conntrack>,
}

/// Bound UDP ports (with the ephemeral-port cursor) and the random state.
#[derive(Debug)]
struct Ports {
    table: crate::socket::ports::PortTable,
    rng: u64,
    /// The receive-side handles of bound sockets, by socket identity.
    inboxes: std::collections::HashMap<u64, Arc<crate::socket::inbox::SockInbox>>,
}

/// `net.ipv4.ip_local_port_range` default.
pub const EPHEMERAL_PORTS: std::ops::RangeInclusive<u16> = 32768..=60999;

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("devices", &self.devices.read().len())
            .field("tables", &self.rib.read().tables().count())
            .finish()
    }
}

/// [`Stack::poll_rx`]'s scratch space: the frames taken from a driver, back
/// to back in `bytes`, each ending at its entry of `ends`, and the devices
/// polled.
#[derive(Default)]
struct RxScratch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    devs: Vec<Arc<NetDevice>>,
}

thread_local! {
    /// This thread's [`RxScratch`], kept between [`Stack::poll_rx`] calls.
    static RX_SCRATCH: Cell<RxScratch> = const { Cell::new(RxScratch {
        bytes: Vec::new(),
        ends: Vec::new(),
        devs: Vec::new(),
    }) };
}

impl Stack {
    /// A stack on the real monotonic clock.
    pub fn new() -> Arc<Stack> {
        Stack::with_clock(Arc::new(MonotonicClock::new()))
    }

    /// A stack on `clock` (a [`crate::time::ManualClock`] in tests).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Arc<Stack> {
        let notify = Arc::new(Notify::default());
        let stack = Arc::new(Stack {
            clock,
            pool: BufPool::shared(),
            counters: Arc::default(),
            devices: RwLock::new(Vec::new()),
            rib: RwLock::new(Arc::new(Rib::new())),
            fib_gen: AtomicU64::new(1),
            neigh: NeighTable::default(),
            hooks: Hooks::default(),
            backlog: Arc::new(crate::dev::loopback::Backlog::new(notify.clone())),
            lo_drops: Arc::default(),
            notify,
            sysctl: RwLock::new(Sysctls::default()),
            idents: IdentTable::new(),
            icmp_rate: Default::default(),
            default_ttl: std::sync::atomic::AtomicU8::new(64),
            ports: parking_lot::Mutex::new(Ports {
                table: crate::socket::ports::PortTable::new(*EPHEMERAL_PORTS.start()),
                rng: seed(),
                inboxes: std::collections::HashMap::new(),
            }),
            autohandle: api::AutoHandle::default(),
            estimators: parking_lot::Mutex::new(Vec::new()),
            est_due: AtomicU64::new(crate::sched::est::NEVER),
            conntrack: Arc::default(),
        });
        stack.add_loopback();
        stack
    }

    /// The current time: the clock, or the time frozen by an enclosing
    /// time scope on this thread (one clock read per datagram on the output path).
    #[inline]
    pub fn now(&self) -> Instant {
        let (who, t) = FROZEN_TIME.with(Cell::get);
        if who == self as *const Stack as usize {
            Instant::from_nanos(t)
        } else {
            self.clock.now()
        }
    }

    /// Reads the clock once for a whole operation on this thread (one datagram
    /// through the output path, one poll): until the scope ends, [`Stack::now`]
    /// returns that time — as the kernel takes one timestamp per packet.
    pub(crate) fn time_scope(&self) -> TimeScope {
        let now = self.clock.now().as_nanos();
        let prev = FROZEN_TIME.with(|c| c.replace((self as *const Stack as usize, now)));
        TimeScope { prev }
    }

    /// Kernel: `__ip_select_ident()`. `segs` consecutive IDs from the
    /// per-destination counter of `(daddr, saddr, protocol)`; the first.
    pub(crate) fn select_ident(&self, key: (Ipv4Addr, Ipv4Addr, u8), segs: u16) -> u16 {
        self.idents.reserve(key, segs, || self.now().as_nanos())
    }

    /// The clock the stack runs on.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// MIB and drop counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The buffer pool.
    pub fn pool(&self) -> &BufPool {
        &self.pool
    }

    /// Filter hooks.
    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// Connection tracking.
    pub fn conntrack(&self) -> &Arc<crate::nft::conntrack::Conntrack> {
        &self.conntrack
    }

    /// The neighbour table.
    pub fn neighbours(&self) -> &NeighTable {
        &self.neigh
    }

    /// A copy of the sysctls.
    pub fn sysctls(&self) -> Sysctls {
        self.sysctl.read().clone()
    }

    /// Changes sysctls.
    pub fn set_sysctls(&self, f: impl FnOnce(&mut Sysctls)) {
        let mut s = self.sysctl.write();
        f(&mut s);
        self.default_ttl
            .store(s.ip_default_ttl, std::sync::atomic::Ordering::Relaxed);
    }

    /// `net.ipv4.ip_default_ttl`, read without a lock (per datagram).
    #[inline]
    pub fn default_ttl(&self) -> u8 {
        self.default_ttl.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn xmit_ctx(&self) -> XmitCtx<'_> {
        let now = self.now();
        // Estimator samples due are taken before the counters move on.
        if now.as_nanos() >= self.est_due.load(Ordering::Relaxed) {
            self.estimate(now);
        }
        XmitCtx {
            counters: &self.counters,
            hooks: &self.hooks,
            now,
            pool: &self.pool,
        }
    }

    /// Registers a device with one transmit queue per driver and the default
    /// qdisc on each (`register_netdevice`).
    pub fn add_device(
        &self,
        cfg: DevConfig,
        drivers: Vec<Box<dyn Driver>>,
    ) -> Result<Arc<NetDevice>, ConfigError> {
        let mut devs = self.devices.write();
        if devs.iter().any(|d| d.name() == cfg.name) {
            return Err(ConfigError::DeviceExists(cfg.name));
        }
        let ifindex = devs.iter().map(|d| d.ifindex()).max().unwrap_or(1) + 1;
        let spec = self.sysctl.read().default_qdisc.clone();
        let make = |c: &DevConfig| -> Box<dyn Qdisc> {
            // A default qdisc needs no parameters (the kernel's
            // `default_qdisc` names only such kinds); one that cannot be
            // built falls back to `pfifo_fast`.
            spec.build(c.txqueuelen, c.mtu + c.link.header_len() as u32)
                .unwrap_or_else(|_| Box::new(crate::sched::PfifoFast::new(c.txqueuelen)))
        };
        let dev = Arc::new(NetDevice::new(
            ifindex,
            cfg,
            drivers,
            &make,
            self.notify.clone(),
            self.counters.clone(),
        )?);
        devs.push(dev.clone());
        Ok(dev)
    }

    /// The device called `name`.
    pub fn device(&self, name: &str) -> Result<Arc<NetDevice>, ConfigError> {
        self.devices
            .read()
            .iter()
            .find(|d| d.name() == name)
            .cloned()
            .ok_or_else(|| ConfigError::NoDevice(name.to_string()))
    }

    /// Every device, in ifindex order.
    pub fn devices(&self) -> Vec<Arc<NetDevice>> {
        self.devices.read().clone()
    }

    /// Adds a static neighbour (`ip neigh replace ADDR lladdr LL dev DEV nud permanent`).
    pub fn add_neigh(
        &self,
        dev: &str,
        addr: Ipv4Addr,
        lladdr: EthernetAddress,
        state: NudState,
    ) -> Result<(), ConfigError> {
        let d = self.device(dev)?;
        if d.link() != crate::dev::LinkType::Ethernet {
            return Err(ConfigError::NoLinkLayer(dev.to_string()));
        }
        let now = self.now();
        let n = self.neigh.lookup_or_create(&d, addr, now);
        let a = n.update(state, Some(lladdr), true, now);
        let saddr = d.primary_addr().unwrap_or(Ipv4Addr::UNSPECIFIED);
        crate::neigh::arp::apply(self, &d, addr, saddr, a);
        Ok(())
    }

    /// Removes a neighbour entry (`ip neigh del`); its queued packets are
    /// dropped as `NEIGH_DEAD`.
    pub fn del_neigh(&self, dev: &str, addr: Ipv4Addr) -> Result<bool, ConfigError> {
        let d = self.device(dev)?;
        let Some(n) = self.neigh.remove(d.ifindex(), addr) else {
            return Ok(false);
        };
        self.neigh_dead(&n);
        Ok(true)
    }

    /// Kernel: `neigh_ifdown()` (from `arp_ifdown()` when a device goes
    /// down): every entry of device `ifindex` removed, permanent ones too,
    /// their queued packets dropped as `NEIGH_DEAD`.
    pub(crate) fn neigh_ifdown(&self, ifindex: u32) {
        for n in self.neigh.entries().iter().filter(|n| n.ifindex == ifindex) {
            if let Some(n) = self.neigh.remove(ifindex, n.addr) {
                self.neigh_dead(&n);
            }
        }
    }

    /// A removed entry's queue dropped (`NEIGH_DEAD`), each packet shown
    /// to the device's taps and its fate noted.
    fn neigh_dead(&self, n: &crate::neigh::Neighbour) {
        let now = self.now();
        let site = crate::stats::DropSite::NeighDead;
        let dev = self.device_by_index(n.ifindex);
        for (p, _) in n.update(NudState::Failed, None, true, now).drop {
            self.counters.drop_at(site);
            if let Some(dev) = &dev {
                crate::dev::xmit::tap_drop(dev, &p, site, now);
            }
            crate::stats::fate::dropped(p.meta.tskey, site.reason());
        }
    }

    /// The device with interface index `ifindex`.
    pub fn device_by_index(&self, ifindex: u32) -> Option<Arc<NetDevice>> {
        self.devices
            .read()
            .iter()
            .find(|d| d.ifindex() == ifindex)
            .cloned()
    }

    /// Kernel: `net_tx_action()` and the timers. Runs queues that were rescheduled
    /// (quota used, driver woke up) or whose throttle time has come. Returns the
    /// number of queues run.
    pub fn poll(&self) -> usize {
        let _t = self.time_scope();
        let pending = self.notify.take();
        let ctx = self.xmit_ctx();
        if self.neigh.next_timer().is_some_and(|t| t <= ctx.now) {
            crate::neigh::run_timers(self, ctx.now);
        }
        let mut ran = self.process_backlog();
        for dev in self.devices.read().iter() {
            for txq in dev.queues() {
                let due = txq.watchdog().is_some_and(|t| t <= ctx.now);
                if (pending && txq.ctl().take_scheduled()) || due {
                    if !run::try_run(ctx, dev, txq) {
                        txq.ctl().schedule();
                    }
                    ran += 1;
                }
            }
        }
        ran
    }

    /// Polls every device's receive side (queue 0's driver) and handles what
    /// arrived (`netif_receive_skb`: counted, ARP answered and learned). Returns
    /// the number of frames. The frames are copied out of the driver into
    /// this thread's scratch space first (handling them may transmit, an
    /// ARP reply, through the same queue's driver, whose lock is held while
    /// it gives frames), which is kept between calls: nothing is allocated
    /// per frame once it has grown.
    pub fn poll_rx(&self, budget: usize) -> usize {
        // Taken out while in use: a nested call (none is known) would
        // start an empty scratch of its own instead of sharing this one.
        let mut s = RX_SCRATCH.with(|c| c.take());
        let RxScratch { bytes, ends, devs } = &mut s;
        devs.extend(self.devices.read().iter().cloned());
        let mut n = 0;
        for dev in devs.iter() {
            bytes.clear();
            ends.clear();
            dev.queues()[0].driver.lock().poll_rx(budget, &mut |f| {
                bytes.extend_from_slice(f);
                ends.push(bytes.len());
            });
            n += ends.len();
            let mut start = 0;
            for &end in ends.iter() {
                self.receive(dev, &bytes[start..end]);
                start = end;
            }
        }
        devs.clear();
        RX_SCRATCH.with(|c| c.set(s));
        n
    }

    /// Kernel: `__netif_receive_skb_core()` for what this stack handles on
    /// receive: counts the frame, passes ARP to the neighbour layer and
    /// IPv4 to [`crate::ipv4::input`] (`ip_rcv()`), which delivers what is
    /// for the host to its sockets; anything else is ignored.
    pub fn receive(&self, dev: &NetDevice, frame: &[u8]) {
        dev.stats.add(crate::stats::DevCounter::RxPackets, 1);
        dev.stats
            .add(crate::stats::DevCounter::RxBytes, frame.len() as u64);
        self.receive_frame(dev, frame);
    }

    /// Runs deferred work until none is left or `max_rounds` passes were made
    /// (the kernel's softirq restart limit). Returns true when work remains.
    pub fn poll_until_idle(&self, max_rounds: usize) -> bool {
        for _ in 0..max_rounds {
            if !self.notify.is_pending() {
                return false;
            }
            self.poll();
        }
        self.notify.is_pending()
    }

    /// The earliest time deferred work is due: now when something is pending,
    /// a qdisc watchdog or neighbour timer, or `None` when idle.
    pub fn next_wakeup(&self) -> Option<Instant> {
        if self.notify.is_pending() {
            return Some(self.now());
        }
        let devices = self.devices.read();
        let qdisc = devices
            .iter()
            .flat_map(|d| d.queues().iter().filter_map(TxQueue::watchdog))
            .min();
        let drivers = devices
            .iter()
            .flat_map(|d| {
                d.queues()
                    .iter()
                    .filter_map(|q| q.driver.lock().next_event())
            })
            .min();
        [qdisc, drivers, self.neigh.next_timer()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Receive file descriptors of every device (queue 0's driver), for a
    /// runner thread to wait on.
    pub fn rx_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.devices
            .read()
            .iter()
            .filter_map(|d| d.queues()[0].driver.lock().rx_fd())
            .collect()
    }

    /// The notifier a runner thread waits on.
    pub fn notifier(&self) -> &Arc<Notify> {
        &self.notify
    }
}

fn seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0x1234_5678u64) | 1
}

impl Stack {
    /// Makes the stack's random choices follow `seed` (the IP ID hash key,
    /// `ip_idents_hashrnd`, and the generator of [`Stack::random_u16`],
    /// random at start otherwise): the same seed and the same sends give the
    /// same frames, byte for byte (`ipxmit run`, `--seed`).
    pub fn set_seed(&self, seed: u64) {
        let mix = |x: u64| {
            let mut h = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            h ^ (h >> 31)
        };
        self.idents.set_key(mix(seed));
        self.ports.lock().rng = mix(seed ^ 0x5eed) | 1;
    }

    /// A pseudo-random 16-bit value (`get_random_u16`), xorshift on a random seed.
    pub fn random_u16(&self) -> u16 {
        let mut p = self.ports.lock();
        p.rng ^= p.rng << 13;
        p.rng ^= p.rng >> 7;
        p.rng ^= p.rng << 17;
        (p.rng >> 24) as u16
    }

    /// Kernel: `udp_lib_get_port()`. Reserves UDP `port` for `me`, or an
    /// ephemeral one for 0, by the rules of [`crate::socket::ports`].
    pub(crate) fn bind_port(
        &self,
        port: u16,
        me: crate::socket::ports::PortOwner,
    ) -> Result<u16, crate::error::SendError> {
        self.ports.lock().table.get_port(port, me, &EPHEMERAL_PORTS)
    }

    /// Kernel: `sk_add_node_rcu()`: a bound socket's inbox becomes
    /// reachable from the receive path.
    pub(crate) fn hash_inbox(&self, inbox: Arc<crate::socket::inbox::SockInbox>) {
        self.ports.lock().inboxes.insert(inbox.id(), inbox);
    }

    /// Kernel: `sk_del_node_init_rcu()`: socket `id` is no longer reachable.
    pub(crate) fn unhash_inbox(&self, id: u64) {
        self.ports.lock().inboxes.remove(&id);
    }

    /// Kernel: `__udp4_lib_lookup()`, net/ipv4/udp.c. The socket a UDP
    /// datagram from `src` to `dst` arriving on device `dif` belongs to:
    /// among the holders of the destination port, the best
    /// [`crate::socket::inbox::SockView::score`], the newest on a tie.
    pub(crate) fn udp_lookup(
        &self,
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        dif: u32,
    ) -> Option<Arc<crate::socket::inbox::SockInbox>> {
        let p = self.ports.lock();
        let mut best: Option<(u32, &Arc<crate::socket::inbox::SockInbox>)> = None;
        for o in p.table.owners(dst.1).iter().rev() {
            let Some(ib) = p.inboxes.get(&o.id) else {
                continue;
            };
            if let Some(sc) = ib.view().score(src, dst, dif) {
                if best.is_none_or(|(b, _)| sc > b) {
                    best = Some((sc, ib));
                }
            }
        }
        best.map(|(_, ib)| ib.clone())
    }

    /// Every socket a broadcast UDP datagram from `src` to `dst` on `dif`
    /// reaches (`__udp4_lib_mcast_deliver()`'s walk).
    pub(crate) fn udp_lookup_all(
        &self,
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        dif: u32,
    ) -> Vec<Arc<crate::socket::inbox::SockInbox>> {
        let p = self.ports.lock();
        p.table
            .owners(dst.1)
            .iter()
            .rev()
            .filter_map(|o| p.inboxes.get(&o.id))
            .filter(|ib| ib.view().score(src, dst, dif).is_some())
            .cloned()
            .collect()
    }

    /// Kernel: `raw_v4_match()` over the raw hash table: the raw sockets of
    /// `protocol` that an ICMP error about a datagram from `laddr` to
    /// `raddr` concerns (a connected peer, a bound address and a bound
    /// device must match when set).
    pub(crate) fn raw_lookup(
        &self,
        protocol: u8,
        (raddr, laddr): (Ipv4Addr, Ipv4Addr),
        dif: u32,
    ) -> Vec<Arc<crate::socket::inbox::SockInbox>> {
        let p = self.ports.lock();
        p.inboxes
            .values()
            .filter(|ib| {
                let v = ib.view();
                v.raw
                    && v.protocol == protocol
                    && v.peer.is_none_or(|a| *a.ip() == raddr)
                    && (v.local.ip().is_unspecified() || *v.local.ip() == laddr)
                    && (v.bound_dev == 0 || v.bound_dev == dif)
            })
            .cloned()
            .collect()
    }

    /// Kernel: `udp_lib_unhash()`. Socket `id` releases `port`.
    pub(crate) fn release_port(&self, port: u16, id: u64) {
        if port != 0 {
            self.ports.lock().table.release(port, id);
        }
    }

    /// Kernel: `udp_v4_rehash()` and the `sk_reuse`/`sk_reuseport` stores:
    /// what the port table knows of a bound socket changes.
    pub(crate) fn update_port(&self, port: u16, owner: crate::socket::ports::PortOwner) {
        if port != 0 {
            self.ports.lock().table.update(port, owner);
        }
    }
}
