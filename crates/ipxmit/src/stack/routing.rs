//! A stack's routing: addresses and the routes they imply, `ip route` and
//! `ip rule` changes, and the output route lookup.
//!
//! Stands for `net/ipv4/fib_frontend.c` (`fib_add_ifaddr()`,
//! `fib_del_ifaddr()`, `fib_netdev_event()`, `inet_rtm_newroute()`),
//! `fib_semantics.c` (`fib_create_info()`, `fib_check_nh_v4_gw()`) and
//! `net/ipv4/route.c` (`ip_route_output_key_hash_rcu()`, `__mkroute_output()`,
//! `__ip_rt_update_pmtu()`, `inet_select_addr()` through
//! `fib_result_prefsrc()`). The [`Rib`] is changed in place once no lookup
//! holds it, and its generation bumped; sockets cache their route and look
//! it up again when the generation moves or a learned path MTU expires.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ipnet::Ipv4Net;

use super::{ConfigError, Stack};
use crate::dev::NetDevice;
use crate::route::pmtu::Fnhe;
use crate::route::rules::{FibRule, LOOPBACK_IFINDEX};
use crate::route::{
    DelKey, Dst, Fib, FlowKey, Rib, Route, RouteError, RouteProto, RouteType, RtnType,
    RT_TABLE_LOCAL, RT_TABLE_MAIN,
};

/// How many times a routing change yields to lookups holding the routing
/// state before it copies the state instead ([`Stack::update_rib`]): a
/// lookup preempted on a loaded machine can hold it for a timeslice
/// (~4 ms), which 10,000 yields outlast; a caller keeping a snapshot for
/// longer gets the state it took, and the change a copy.
const RIB_WAIT_YIELDS: u32 = 10_000;

/// A route to add, as `ip route add` takes it.
#[derive(Clone, Debug)]
pub struct RouteSpec {
    /// Destination prefix (`default` is 0.0.0.0/0).
    pub prefix: Ipv4Net,
    /// The route's type (`unicast` unless named).
    pub kind: RtnType,
    /// Gateway.
    pub via: Option<Ipv4Addr>,
    /// Output device name (`None`: the gateway's, or none for the types
    /// without a next hop).
    pub dev: Option<String>,
    /// Preferred source address.
    pub src: Option<Ipv4Addr>,
    /// MTU metric.
    pub mtu: Option<u32>,
    /// `mtu lock`.
    pub mtu_lock: bool,
    /// `hoplimit N`.
    pub hoplimit: Option<u8>,
    /// Metric (preference, lower wins).
    pub metric: u32,
    /// `tos T` (DSCP bits).
    pub tos: u8,
    /// `table N` (main unless named).
    pub table: u32,
    /// `proto` (boot unless named).
    pub proto: RouteProto,
}

impl RouteSpec {
    /// A unicast route to `prefix` out of `dev`, in table main.
    pub fn new(prefix: Ipv4Net, dev: &str) -> RouteSpec {
        RouteSpec {
            prefix,
            kind: RtnType::Unicast,
            via: None,
            dev: Some(dev.to_string()),
            src: None,
            mtu: None,
            mtu_lock: false,
            hoplimit: None,
            metric: 0,
            tos: 0,
            table: RT_TABLE_MAIN,
            proto: RouteProto::Boot,
        }
    }
}

/// A route of `kind` installed by the kernel for an address on `d`.
fn kernel_route(d: &Arc<NetDevice>, prefix: Ipv4Net, kind: RtnType, src: Ipv4Addr) -> Route {
    let mut dst = Dst::new(d.clone(), None);
    dst.prefsrc = Some(src);
    Route {
        prefix,
        metric: 0,
        tos: 0,
        kind,
        proto: RouteProto::Kernel,
        table: if kind == RtnType::Unicast {
            RT_TABLE_MAIN
        } else {
            RT_TABLE_LOCAL
        },
        dst: Some(Arc::new(dst)),
    }
}

/// Kernel: `fib_add_ifaddr()`. The routes an address implies: `local A` in
/// table local, the subnet's `broadcast` there (for prefixes shorter than
/// /31), and the prefix route in main (`proto kernel scope link src A`;
/// none for /32, and for loopback the prefix is local too).
fn ifaddr_routes(d: &Arc<NetDevice>, net: Ipv4Net) -> Vec<Route> {
    let a = net.addr();
    let mut v = vec![kernel_route(d, Ipv4Net::from(a), RtnType::Local, a)];
    if net.prefix_len() < 32 {
        if d.is_loopback() {
            v.push(kernel_route(d, net.trunc(), RtnType::Local, a));
        } else {
            v.push(kernel_route(d, net.trunc(), RtnType::Unicast, a));
        }
    }
    if net.prefix_len() < 31 {
        let b = Ipv4Net::from(net.broadcast());
        v.push(kernel_route(d, b, RtnType::Broadcast, a));
    }
    v
}

impl Stack {
    /// Kernel: `inet_rtm_newaddr()` and `fib_add_ifaddr()`: `ip addr add`.
    /// Adds an address to a device and the routes it implies; on a device
    /// that is down only its `local` route.
    pub fn add_addr(&self, dev: &str, net: Ipv4Net) -> Result<(), ConfigError> {
        let d = self.device(dev)?;
        if d.add_addr(net) {
            let mut routes = ifaddr_routes(&d, net);
            if !d.is_up() {
                routes.truncate(1);
            }
            self.update_rib(|rib| {
                routes
                    .into_iter()
                    .try_for_each(|r| rib.table_mut(r.table).replace(r))
            })?;
        }
        Ok(())
    }

    /// Kernel: `inet_rtm_deladdr()` and `fib_del_ifaddr()`: `ip addr del`.
    /// Removes `net` from the device (a primary with the secondaries of its
    /// subnet, [`NetDevice::del_addr`]) and the routes it implied; a prefix
    /// route goes only when no address left on the device has that prefix.
    /// False when the device has no such address.
    pub fn del_addr(&self, dev: &str, net: Ipv4Net) -> Result<bool, ConfigError> {
        let d = self.device(dev)?;
        let removed = d.del_addr(net);
        if removed.is_empty() {
            return Ok(false);
        }
        let left = d.addrs();
        let gone: Vec<Route> = removed
            .iter()
            .flat_map(|n| ifaddr_routes(&d, *n))
            .filter(|r| {
                !left
                    .iter()
                    .any(|l| ifaddr_routes(&d, *l).iter().any(|o| same(o, r)))
            })
            .collect();
        let ifindex = d.ifindex();
        self.update_rib(|rib| {
            for r in gone {
                let key = DelKey {
                    kind: Some(r.kind),
                    ifindex: Some(ifindex),
                    ..DelKey::default()
                };
                let _ = rib.table_mut(r.table).delete_matching(r.prefix, &key);
            }
            Ok(())
        })?;
        Ok(true)
    }

    /// Kernel: `dev_change_flags()` with `IFF_UP` and the FIB's answer to it
    /// (`fib_netdev_event()`): `ip link set DEV up|down`. Down removes every
    /// route through the device from every table (`fib_disable_ip()`: its
    /// next hops are dead and flushed, so a later send finds no route,
    /// `ENETUNREACH`, or a route through another device) and its neighbour
    /// entries (`arp_ifdown()`, permanent ones too); up again restores
    /// only the routes of its addresses (`fib_add_ifaddr()`), as the kernel.
    pub fn set_link_up(&self, dev: &str, up: bool) -> Result<(), ConfigError> {
        let d = self.device(dev)?;
        if d.is_up() == up {
            return Ok(());
        }
        d.set_up(up);
        let ifindex = d.ifindex();
        if !up {
            self.neigh_ifdown(ifindex);
            return self.update_rib(|rib| {
                rib.tables_mut().for_each(|f| f.flush_dev(ifindex));
                Ok(())
            });
        }
        let routes: Vec<Route> = d
            .addrs()
            .into_iter()
            .flat_map(|n| ifaddr_routes(&d, n))
            .collect();
        self.update_rib(|rib| {
            routes
                .into_iter()
                .try_for_each(|r| rib.table_mut(r.table).replace(r))
        })
    }

    /// Kernel: `inet_rtm_newroute()` with `NLM_F_EXCL`: `ip route add`.
    pub fn add_route(&self, spec: RouteSpec) -> Result<(), ConfigError> {
        let r = self.build_route(spec)?;
        self.update_rib(|rib| rib.table_mut(r.table).add(r))
    }

    /// Kernel: `inet_rtm_newroute()` with `NLM_F_REPLACE`: `ip route replace`.
    pub fn replace_route(&self, spec: RouteSpec) -> Result<(), ConfigError> {
        let r = self.build_route(spec)?;
        self.update_rib(|rib| rib.table_mut(r.table).replace(r))
    }

    /// Deletes a route of table main (`ip route del PREFIX [metric M]`).
    pub fn del_route(&self, prefix: Ipv4Net, metric: Option<u32>) -> Result<(), ConfigError> {
        let key = DelKey {
            metric,
            ..DelKey::default()
        };
        self.del_route_matching(RT_TABLE_MAIN, prefix, &key)
    }

    /// Kernel: `inet_rtm_delroute()`: deletes the first route of `table`
    /// for `prefix` that `key` matches (`ESRCH` when none).
    pub fn del_route_matching(
        &self,
        table: u32,
        prefix: Ipv4Net,
        key: &DelKey,
    ) -> Result<(), ConfigError> {
        self.update_rib(|rib| {
            if rib.table(table).is_none() {
                return Err(RouteError::NotFound(prefix));
            }
            rib.table_mut(table)
                .delete_matching(prefix, key)
                .map(|_| ())
        })
    }

    /// Kernel: `fib_nl_newrule()`: `ip rule add`.
    pub fn add_rule(&self, rule: FibRule) -> Result<(), ConfigError> {
        self.update_rib(|rib| rib.add_rule(rule))
    }

    /// Kernel: `fib_nl_delrule()`: `ip rule del`; removes the first rule
    /// `pred` selects, `false` when none does.
    pub fn del_rule(&self, pred: impl Fn(&FibRule) -> bool) -> bool {
        let mut hit = false;
        let _ = self.update_rib(|rib| {
            hit = rib.del_rule(pred).is_some();
            Ok(())
        });
        hit
    }

    /// Kernel: `fib_create_info()`. The route `spec` describes, checked as
    /// the kernel checks it.
    fn build_route(&self, spec: RouteSpec) -> Result<Route, ConfigError> {
        if spec.kind.is_error() {
            if spec.via.is_some() || spec.dev.is_some() {
                return Err(RouteError::Invalid(
                    "Gateway, device and multipath can not be specified for this route type",
                )
                .into());
            }
            return Ok(Route {
                prefix: spec.prefix,
                metric: spec.metric,
                tos: spec.tos,
                kind: spec.kind,
                proto: spec.proto,
                table: spec.table,
                dst: None,
            });
        }
        let dev = match &spec.dev {
            Some(name) => Some(self.device(name)?),
            None => None,
        };
        let dev = match spec.via {
            Some(gw) => self.gateway_dev(gw, dev)?,
            None => dev.ok_or(RouteError::NoDevice(String::new()))?,
        };
        // fib_check_nh_nongw(): a next hop's device must be up.
        if !dev.is_up() {
            return Err(RouteError::Invalid("Device for nexthop is not up").into());
        }
        let mut dst = Dst::new(dev, spec.via);
        dst.prefsrc = spec.src;
        // `mtu 0` is no metric; above 65520 the kernel stores 65520.
        dst.mtu_metric = spec.mtu.filter(|&m| m != 0).map(|m| m.min(65520));
        dst.mtu_locked = spec.mtu_lock;
        dst.hoplimit = spec.hoplimit;
        Ok(Route {
            prefix: spec.prefix,
            metric: spec.metric,
            tos: spec.tos,
            kind: spec.kind,
            proto: spec.proto,
            table: spec.table,
            dst: Some(Arc::new(dst)),
        })
    }

    /// Kernel: `fib_check_nh_v4_gw()`. The device a gateway is reached
    /// through: a route of link or host scope (no gateway of its own) in
    /// the tables the rules give, through `dev` when named; else "Nexthop
    /// has invalid gateway".
    fn gateway_dev(
        &self,
        gw: Ipv4Addr,
        dev: Option<Arc<NetDevice>>,
    ) -> Result<Arc<NetDevice>, ConfigError> {
        const BAD: RouteError = RouteError::Invalid("Nexthop has invalid gateway");
        let rib = self.rib();
        let oif = dev.as_ref().map_or(0, |d| d.ifindex());
        let found = rib
            .tables()
            .filter_map(|(_, f)| f.lookup_link(gw, oif))
            .max_by_key(|r| r.prefix.prefix_len());
        match (found.and_then(|r| r.dst.clone()), dev) {
            (Some(_), Some(d)) => Ok(d),
            (Some(d), None) => Ok(d.dev.clone()),
            (None, _) => Err(BAD.into()),
        }
    }

    /// Kernel: what RTNL and RCU give `fib_table_insert()`: a change is
    /// made in place, published to readers without copying the table.
    /// Each change checks before it mutates, so a refusal leaves the state
    /// as it was.
    fn update_rib(
        &self,
        f: impl FnOnce(&mut Rib) -> Result<(), RouteError>,
    ) -> Result<(), ConfigError> {
        let mut guard = self.rib_exclusive();
        // Copies only when a snapshot outlived the wait (a caller holding
        // `Stack::rib()`): that reader keeps the state it took.
        f(Arc::make_mut(&mut guard))?;
        self.fib_gen.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// The routing state locked for change, once no lookup holds a
    /// snapshot of it. A lookup holds its snapshot for well under a
    /// microsecond (the readers' side of RCU); the writer lets such
    /// readers finish, as `synchronize_rcu()` would, for up to
    /// [`RIB_WAIT_YIELDS`] yields, instead of copying the table for them
    /// (292 ms at 1M routes).
    fn rib_exclusive(&self) -> parking_lot::RwLockWriteGuard<'_, Arc<Rib>> {
        for _ in 0..RIB_WAIT_YIELDS {
            let mut guard = self.rib.write();
            if Arc::get_mut(&mut guard).is_some() {
                return guard;
            }
            drop(guard);
            std::thread::yield_now();
        }
        self.rib.write()
    }

    /// The routing state: tables and rules (shared; never locked per
    /// packet by sockets).
    pub fn rib(&self) -> Arc<Rib> {
        self.rib.read().clone()
    }

    /// Table main.
    pub fn fib(&self) -> Arc<Fib> {
        self.rib
            .read()
            .table(RT_TABLE_MAIN)
            .cloned()
            .unwrap_or_default()
    }

    /// Generation of the routing state; changes whenever it does, and when
    /// a path MTU is learned.
    #[inline]
    pub fn fib_generation(&self) -> u64 {
        self.fib_gen.load(Ordering::Acquire)
    }

    /// Kernel: `ip_route_output_key()`: the destination entry for `daddr`
    /// with no other key; see [`Stack::route_output_key`].
    pub fn route_output(&self, daddr: Ipv4Addr) -> Result<Arc<Dst>, RouteError> {
        self.route_output_key(&FlowKey::to(daddr)).map(|(d, _)| d)
    }

    /// The destination entry for `daddr` out of device `oif` (0: any).
    pub fn route_output_oif(
        &self,
        daddr: Ipv4Addr,
        oif: u32,
    ) -> Result<(Arc<Dst>, RouteType), RouteError> {
        self.route_output_key(&FlowKey {
            oif,
            ..FlowKey::to(daddr)
        })
    }

    /// The type of an output route to `daddr` (with no other key).
    pub fn route_type(&self, daddr: Ipv4Addr) -> RouteType {
        self.route_output_key(&FlowKey::to(daddr))
            .map_or(RouteType::Unicast, |(_, k)| k)
    }
}

/// Kernel: `__ip_dev_find()` through the local table, which holds a
/// `local` route for every address of the host (its devices down or up)
/// and for 127/8: one lookup, no allocation.
fn is_local_in(rib: &Rib, addr: Ipv4Addr) -> bool {
    let local = rib.table(RT_TABLE_LOCAL).and_then(|f| f.lookup(addr));
    local.is_some_and(|r| r.kind == RtnType::Local)
}

/// Kernel: `__ip_dev_find()`'s device: the one the `local` route of the
/// host's address `addr` leads to.
fn dev_of_local(rib: &Rib, addr: Ipv4Addr) -> Option<Arc<NetDevice>> {
    let r = rib.table(RT_TABLE_LOCAL)?.lookup(addr)?;
    if r.kind != RtnType::Local {
        return None;
    }
    r.dst.as_ref().map(|d| d.dev.clone())
}

/// True when two kernel routes are the same entry.
fn same(a: &Route, b: &Route) -> bool {
    a.table == b.table && a.prefix == b.prefix && a.kind == b.kind
}

impl Stack {
    /// Kernel: `ip_route_output_key_hash_rcu()` and `__mkroute_output()`,
    /// net/ipv4/route.c. The destination entry for the flow `key` and its
    /// type. A source address that is multicast, limited broadcast or zero
    /// is `EINVAL`; a multicast or limited broadcast destination from a
    /// source of the host and without an output device leaves by the
    /// source's device, no lookup made. With an output device (`oif`: `SO_BINDTODEVICE`,
    /// `IP_MULTICAST_IF`) it must exist (`ENODEV`) and be up
    /// (`ENETUNREACH`); a link-local multicast or limited broadcast goes
    /// straight out of it, and when the rules find nothing the destination
    /// is taken as on link there ("routing tables are wrong"). Destination
    /// 0.0.0.0 is the source, or 127.0.0.1, through `lo`. Otherwise the
    /// rules decide ([`Rib::lookup`]); their errors are returned as they
    /// are (the sending socket counts `ENETUNREACH` as `IpOutNoRoutes`,
    /// as `udp_sendmsg()` does; an ICMP reply does not). A local route goes out
    /// of `lo`; a broadcast, and a multicast matched by a prefix shorter
    /// than /4, on link; a unicast route through its next hop, bound to the
    /// destination's path-MTU exception when there is one.
    pub fn route_output_key(&self, key: &FlowKey) -> Result<(Arc<Dst>, RouteType), RouteError> {
        self.output_route(key).map(|o| (o.dst, o.kind))
    }

    /// Kernel: `inet_rtm_getroute()`: what `ip route get` shows for the flow
    /// `key` — [`Stack::route_output_key`]'s answer with the table the route
    /// came from.
    pub fn route_get(&self, key: &FlowKey) -> Result<OutRoute, RouteError> {
        self.output_route(key)
    }

    fn output_route(&self, key: &FlowKey) -> Result<OutRoute, RouteError> {
        let s = key.saddr;
        if s.is_multicast() || s.is_broadcast() || (s.octets()[0] == 0 && !s.is_unspecified()) {
            return Err(RouteError::Blackhole(key.daddr));
        }
        let rib = self.rib.read().clone();
        if !s.is_unspecified() && !is_local_in(&rib, s) {
            return Err(RouteError::NetUnreachable(key.daddr));
        }
        let d = key.daddr;
        if !s.is_unspecified() && key.oif == 0 && (d.is_broadcast() || d.is_multicast()) {
            // The source's device, without a lookup ("it is equivalent to
            // inet_addr_type(saddr) == RTN_LOCAL").
            if let Some(dev) = dev_of_local(&rib, s) {
                let dst = Arc::new(Dst::new(dev, None));
                return Ok(OutRoute::new(dst, dest_kind(d), None));
            }
        }
        if key.daddr.is_unspecified() {
            let daddr = if s.is_unspecified() {
                Ipv4Addr::LOCALHOST
            } else {
                s
            };
            let dst = self.local_dst(daddr, None)?;
            return Ok(OutRoute::new(dst, RouteType::Local, None));
        }
        let oif_dev = match key.oif {
            0 => None,
            i => Some(self.oif_device(i, key.daddr)?),
        };
        if let Some(dev) = &oif_dev {
            let d = key.daddr;
            if d.is_broadcast() || (d.is_multicast() && d.octets()[..3] == [224, 0, 0]) {
                let dst = Arc::new(Dst::new(dev.clone(), None));
                return Ok(OutRoute::new(dst, dest_kind(d), None));
            }
        }
        match rib.lookup(key) {
            Ok(r) => self
                .mkroute(r, key)
                .map(|(dst, kind)| OutRoute::new(dst, kind, Some(rib.answer_table(r.table)))),
            Err(e) => match oif_dev {
                Some(dev) => {
                    let dst = Arc::new(Dst::new(dev, None));
                    Ok(OutRoute::new(dst, dest_kind(key.daddr), None))
                }
                None => Err(e),
            },
        }
    }

    /// The output device a flow names: it must exist and be up.
    fn oif_device(&self, oif: u32, daddr: Ipv4Addr) -> Result<Arc<NetDevice>, RouteError> {
        let dev = self
            .device_by_index(oif)
            .ok_or_else(|| RouteError::NoDevice(oif.to_string()))?;
        if !dev.is_up() {
            return Err(RouteError::NetUnreachable(daddr));
        }
        Ok(dev)
    }

    /// Kernel: `__mkroute_output()` for the route `r` the rules chose.
    fn mkroute(&self, r: &Route, key: &FlowKey) -> Result<(Arc<Dst>, RouteType), RouteError> {
        let Some(nh) = &r.dst else {
            return Err(RouteError::NetUnreachable(key.daddr));
        };
        let daddr = key.daddr;
        match r.kind {
            RtnType::Local => {
                let src = nh.prefsrc.unwrap_or(daddr);
                return self.local_dst(src, Some(nh)).map(|d| (d, RouteType::Local));
            }
            RtnType::Broadcast => return Ok((on_link(nh), RouteType::Broadcast)),
            _ => {}
        }
        let kind = dest_kind(daddr);
        let drop_gw = match kind {
            RouteType::Broadcast => true,
            RouteType::Multicast => r.prefix.prefix_len() < 4,
            _ => false,
        };
        if drop_gw {
            return Ok((on_link(nh), kind));
        }
        if !nh.exceptions.is_empty() {
            if let Some(d) = nh.exceptions.route_for(nh, daddr, self.now().as_nanos()) {
                return Ok((d, kind));
            }
        }
        Ok((nh.clone(), kind))
    }

    /// The entry out of `lo` for a local destination, with source `src`
    /// (the local route's metrics kept).
    fn local_dst(&self, src: Ipv4Addr, nh: Option<&Arc<Dst>>) -> Result<Arc<Dst>, RouteError> {
        let lo = self
            .device_by_index(LOOPBACK_IFINDEX)
            .filter(|d| d.is_loopback())
            .ok_or(RouteError::NetUnreachable(src))?;
        let mut d = match nh {
            Some(nh) => nh.on_link(),
            None => Dst::new(lo.clone(), None),
        };
        d.dev = lo;
        d.prefsrc = Some(src);
        Ok(Arc::new(d))
    }
}

/// An output route as a lookup built it.
#[derive(Clone, Debug)]
pub struct OutRoute {
    /// The destination entry.
    pub dst: Arc<Dst>,
    /// Its type.
    pub kind: RouteType,
    /// The table whose route it came from (`None`: not a table's answer,
    /// e.g. an output device taken as on link).
    pub table: Option<u32>,
}

impl OutRoute {
    fn new(dst: Arc<Dst>, kind: RouteType, table: Option<u32>) -> OutRoute {
        OutRoute { dst, kind, table }
    }
}

/// An entry without its gateway (`fi = NULL`): the frame goes to the
/// destination's own link address.
fn on_link(nh: &Arc<Dst>) -> Arc<Dst> {
    if nh.gateway.is_some() {
        Arc::new(nh.on_link())
    } else {
        nh.clone()
    }
}

/// The type `__mkroute_output()` gives a destination by its address alone.
fn dest_kind(daddr: Ipv4Addr) -> RouteType {
    if daddr.is_broadcast() {
        RouteType::Broadcast
    } else if daddr.is_multicast() {
        RouteType::Multicast
    } else {
        RouteType::Unicast
    }
}

impl Stack {
    /// Kernel: `ipv4_update_pmtu()` / `ipv4_sk_update_pmtu()` and
    /// `__ip_rt_update_pmtu()`, net/ipv4/route.c. A "fragmentation needed"
    /// for the flow `key` (built from the quoted header, and the socket's
    /// mark and bound device when a socket matched) says the path takes at
    /// most `mtu` bytes. Nothing is learned when the route's MTU is locked
    /// or the path MTU is already lower; a value below `route.min_pmtu` is
    /// raised to it (or the current MTU, if lower) and locked; the same
    /// value again is not refreshed until half its lifetime is gone.
    /// Otherwise the next hop's exception for `key.daddr` records it for
    /// `route.mtu_expires`, and every socket looks its route up again.
    pub fn update_pmtu(&self, key: &FlowKey, mtu: u32) {
        let Ok((dst, RouteType::Unicast)) = self.route_output_key(key) else {
            return;
        };
        if dst.mtu_is_locked() {
            return;
        }
        let old = dst.mtu();
        if old < mtu {
            return;
        }
        let sys = self.sysctls();
        let expires = sys.mtu_expires.as_nanos() as u64;
        let now = self.now().as_nanos();
        let (mtu, lock) = if mtu < sys.min_pmtu {
            (old.min(sys.min_pmtu), true)
        } else {
            (mtu, false)
        };
        if dst.pmtu() == mtu && !lock && now < dst.expires_ns.saturating_sub(expires / 2) {
            return;
        }
        let rib = self.rib.read().clone();
        let Some(nh) = rib.lookup(key).ok().and_then(|r| r.dst.clone()) else {
            return;
        };
        nh.exceptions
            .update(key.daddr, mtu, lock, now.saturating_add(expires));
        self.fib_gen.fetch_add(1, Ordering::Release);
    }

    /// Every live path-MTU exception with a cached route, with the next hop
    /// it hangs off (`ip route show cache`: `fnhe_dump_bucket()`), in table
    /// then destination order.
    pub fn route_cache(&self) -> Vec<(Fnhe, Arc<Dst>)> {
        let now = self.now().as_nanos();
        let rib = self.rib();
        let mut out = Vec::new();
        for (_, fib) in rib.tables() {
            for r in fib.routes() {
                let Some(nh) = &r.dst else { continue };
                if nh.exceptions.is_empty() {
                    continue;
                }
                out.extend(nh.exceptions.dump(now).into_iter().map(|f| (f, nh.clone())));
            }
        }
        out
    }

    /// Kernel: `__ip_dev_find()`: `addr` is one of the host's (a `local`
    /// route of table local covers it: an address of a device, 127.1.2.3).
    pub fn is_local_dest(&self, addr: Ipv4Addr) -> bool {
        is_local_in(&self.rib.read(), addr)
    }

    /// True when `addr` is configured on some device.
    pub fn is_local_addr(&self, addr: Ipv4Addr) -> bool {
        self.devices
            .read()
            .iter()
            .any(|d| d.any_addr(|n| n.addr() == addr))
    }

    /// Kernel: `fib_result_prefsrc()` and `inet_select_addr()`. The source
    /// address for a route: its `src`, else the device's first address of
    /// link scope or wider (127/8 is host scope), else the first such
    /// address of another device, else 0.0.0.0.
    pub fn source_for(&self, dst: &Dst) -> Ipv4Addr {
        if let Some(a) = dst.prefsrc {
            return a;
        }
        let wide = |a: Ipv4Addr| !a.is_loopback();
        if let Some(a) = dst.dev.find_addr(wide) {
            return a;
        }
        self.devices
            .read()
            .iter()
            .find_map(|d| d.find_addr(wide))
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    }
}
