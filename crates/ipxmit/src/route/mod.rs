//! Routing: tables, policy rules, route types and destination entries.
//!
//! Stands for the kernel's FIB (`net/ipv4/fib_trie.c`, `fib_frontend.c`,
//! `fib_rules.c`), the output route lookup (`ip_route_output_key_hash_rcu()`,
//! `net/ipv4/route.c`), the destination cache entry (`struct rtable`) with
//! its MTU (`ipv4_mtu()`), and the next-hop exceptions that hold learned path
//! MTUs (`struct fib_nh_exception`).
//!
//! A [`Rib`] is one namespace's routing state: numbered tables ([`Fib`], with
//! `local` 255, `main` 254 and `default` 253) and the policy rules ([`rules`])
//! that say which tables a flow consults, in priority order. Each unicast
//! route carries a prebuilt [`Dst`] (the kernel's per-nexthop cached
//! `rtable`), so a lookup hands out a shared reference and never allocates.
//! The stack swaps the whole `Rib` on change; sockets cache their route and
//! recheck it by generation, so the per-packet path takes no lock.

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use ipnet::Ipv4Net;

use crate::dev::NetDevice;

mod fib;
mod flow;
pub mod pmtu;
mod rib;
pub mod rules;
mod trie;
pub use fib::{DelKey, Fib, Lookup};
pub use flow::FlowKey;
pub use rib::{Rib, RT_TABLE_DEFAULT, RT_TABLE_LOCAL, RT_TABLE_MAIN};

/// Largest IPv4 MTU (`IP_MAX_MTU`).
pub const IP_MAX_MTU: u32 = 0xFFFF;

/// Smallest IPv4 MTU a device or route may have (RFC 791, the kernel's 68).
pub const IP_MIN_MTU: u32 = 68;

/// Errors of route operations and lookups, each with the kernel's errno.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No route matches the destination (`ENETUNREACH`).
    #[error("network is unreachable: no route to {0}")]
    NetUnreachable(Ipv4Addr),
    /// An `unreachable` route (`EHOSTUNREACH`).
    #[error("no route to host {0}")]
    HostUnreachable(Ipv4Addr),
    /// A `prohibit` route or rule (`EACCES`).
    #[error("permission denied: route to {0} is prohibited")]
    Prohibited(Ipv4Addr),
    /// A `blackhole` route or rule, or an invalid flow (`EINVAL`).
    #[error("invalid argument: route to {0} is a blackhole")]
    Blackhole(Ipv4Addr),
    /// The named device does not exist (`ENODEV`).
    #[error("no such device: {0}")]
    NoDevice(String),
    /// The same prefix, TOS and metric already exist (`EEXIST`).
    #[error("route {0} metric {1} already exists")]
    Exists(Ipv4Net, u32),
    /// No such route to delete (`ESRCH`).
    #[error("no such route {0}")]
    NotFound(Ipv4Net),
    /// A request the kernel refuses with a message of its own (`EINVAL`).
    #[error("{0}")]
    Invalid(&'static str),
}

impl RouteError {
    /// The errno the kernel returns.
    pub fn errno(&self) -> crate::error::Errno {
        use crate::error::Errno;
        match self {
            RouteError::NetUnreachable(_) => Errno::ENETUNREACH,
            RouteError::HostUnreachable(_) => Errno::EHOSTUNREACH,
            RouteError::Prohibited(_) => Errno::EACCES,
            RouteError::Blackhole(_) | RouteError::Invalid(_) => Errno::EINVAL,
            RouteError::NoDevice(_) => Errno::ENODEV,
            RouteError::Exists(..) => Errno::EEXIST,
            RouteError::NotFound(_) => Errno::ESRCH,
        }
    }
}

/// The type of a route as configured (`rtm_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RtnType {
    /// A gateway or direct route (`RTN_UNICAST`).
    Unicast,
    /// One of the host's own addresses (`RTN_LOCAL`).
    Local,
    /// A broadcast address, sent on link (`RTN_BROADCAST`).
    Broadcast,
    /// Silently discarded: `EINVAL` (`RTN_BLACKHOLE`).
    Blackhole,
    /// Unreachable: `EHOSTUNREACH` (`RTN_UNREACHABLE`).
    Unreachable,
    /// Administratively prohibited: `EACCES` (`RTN_PROHIBIT`).
    Prohibit,
    /// Not in this table: the lookup goes on with the next rule (`RTN_THROW`).
    Throw,
}

impl RtnType {
    /// The keyword ip(8) prints and takes.
    pub fn name(self) -> &'static str {
        match self {
            RtnType::Unicast => "unicast",
            RtnType::Local => "local",
            RtnType::Broadcast => "broadcast",
            RtnType::Blackhole => "blackhole",
            RtnType::Unreachable => "unreachable",
            RtnType::Prohibit => "prohibit",
            RtnType::Throw => "throw",
        }
    }

    /// The type named `s` (ip(8)'s `TYPE` word).
    pub fn from_name(s: &str) -> Option<RtnType> {
        Some(match s {
            "unicast" => RtnType::Unicast,
            "local" => RtnType::Local,
            "broadcast" => RtnType::Broadcast,
            "blackhole" => RtnType::Blackhole,
            "unreachable" => RtnType::Unreachable,
            "prohibit" => RtnType::Prohibit,
            "throw" => RtnType::Throw,
            _ => return None,
        })
    }

    /// True for the types without a next hop (`fib_props[type].error`).
    pub fn is_error(self) -> bool {
        matches!(
            self,
            RtnType::Blackhole | RtnType::Unreachable | RtnType::Prohibit | RtnType::Throw
        )
    }

    /// Kernel: `fib_props[]`. The lookup's answer for a route of this type
    /// to `daddr`: `None` for a usable route, `Some(Ok(()))` for throw (go on
    /// with the next rule), else the error.
    pub fn error(self, daddr: Ipv4Addr) -> Option<Result<(), RouteError>> {
        match self {
            RtnType::Blackhole => Some(Err(RouteError::Blackhole(daddr))),
            RtnType::Unreachable => Some(Err(RouteError::HostUnreachable(daddr))),
            RtnType::Prohibit => Some(Err(RouteError::Prohibited(daddr))),
            RtnType::Throw => Some(Ok(())),
            _ => None,
        }
    }
}

/// Who installed a route (`rtm_protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteProto {
    /// By the kernel for an address (`RTPROT_KERNEL`).
    Kernel,
    /// By `ip route` without `proto` (`RTPROT_BOOT`).
    Boot,
    /// `proto static` (`RTPROT_STATIC`).
    Static,
}

impl RouteProto {
    /// The keyword ip(8) prints (`boot` is not printed).
    pub fn name(self) -> &'static str {
        match self {
            RouteProto::Kernel => "kernel",
            RouteProto::Boot => "boot",
            RouteProto::Static => "static",
        }
    }
}

/// The type of an output route (`rt_type`: `RTN_UNICAST`, `RTN_LOCAL`,
/// `RTN_BROADCAST`, `RTN_MULTICAST`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteType {
    /// A unicast destination.
    Unicast,
    /// Limited (255.255.255.255) or directed (a subnet's) broadcast
    /// (`RTCF_BROADCAST`).
    Broadcast,
    /// A multicast group, 224.0.0.0/4 (`RTCF_MULTICAST`).
    Multicast,
    /// One of the host's own addresses: out through `lo` (`RTCF_LOCAL`).
    Local,
}

/// A destination entry: where packets of a route go (`struct rtable`).
///
/// Aligned to 128 bytes, so that in its `Arc` the fields start a line pair
/// after the reference counts: every sender through the route takes and
/// drops a reference at each batch, and the fields read per datagram
/// (device, MTU, expiry) would otherwise share the counts' line and miss
/// whenever another thread had just counted — the kernel keeps
/// `dst_entry.__rcuref` off the lines of the fields it reads for that.
#[repr(align(128))]
pub struct Dst {
    /// Output device.
    pub dev: Arc<NetDevice>,
    /// Gateway, or `None` when the destination is on link.
    pub gateway: Option<Ipv4Addr>,
    /// Preferred source address of the route (`src`), if configured.
    pub prefsrc: Option<Ipv4Addr>,
    /// The route's `mtu` metric, if configured.
    pub mtu_metric: Option<u32>,
    /// `mtu lock`: the MTU is not to be learned (`RTAX_MTU` locked), and DF
    /// is not set for `IP_PMTUDISC_WANT` sockets (`ip_dont_fragment()`).
    pub mtu_locked: bool,
    /// The route's `hoplimit` metric (`RTAX_HOPLIMIT`), the TTL of sockets
    /// that set none.
    pub hoplimit: Option<u8>,
    /// Learned path MTU, 0 when none (`rt_pmtu`).
    pmtu: AtomicU32,
    /// The learned path MTU was clamped to `min_pmtu` and is not to be
    /// learned again (`rt_mtu_locked`).
    pub pmtu_locked: bool,
    /// When the learned path MTU expires (ns on the stack clock; 0: never).
    pub expires_ns: u64,
    /// Extra header space a transform needs in front (`dst.header_len`).
    pub header_len: u16,
    /// Extra space a transform needs at the end (`dst.trailer_len`).
    pub trailer_len: u16,
    /// The next hop's path-MTU exceptions (`nh_exceptions`).
    pub(crate) exceptions: pmtu::Exceptions,
}

impl fmt::Debug for Dst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dst")
            .field("dev", &self.dev.name())
            .field("gateway", &self.gateway)
            .field("prefsrc", &self.prefsrc)
            .field("mtu", &self.mtu())
            .finish()
    }
}

impl Dst {
    /// A destination entry out of `dev`.
    pub fn new(dev: Arc<NetDevice>, gateway: Option<Ipv4Addr>) -> Dst {
        Dst {
            dev,
            gateway,
            prefsrc: None,
            mtu_metric: None,
            mtu_locked: false,
            hoplimit: None,
            pmtu: AtomicU32::new(0),
            pmtu_locked: false,
            expires_ns: 0,
            header_len: 0,
            trailer_len: 0,
            exceptions: pmtu::Exceptions::default(),
        }
    }

    /// A copy of this entry's configuration (device, gateway, metrics) with
    /// no learned state.
    pub fn fresh_copy(&self) -> Dst {
        Dst {
            prefsrc: self.prefsrc,
            mtu_metric: self.mtu_metric,
            mtu_locked: self.mtu_locked,
            hoplimit: self.hoplimit,
            header_len: self.header_len,
            trailer_len: self.trailer_len,
            ..Dst::new(self.dev.clone(), self.gateway)
        }
    }

    /// Kernel: `__mkroute_output()` for a broadcast, or a multicast route
    /// matched by a prefix shorter than /4: the entry without its gateway
    /// (`fi = NULL`), so the frame goes to the destination's own link address.
    pub fn on_link(&self) -> Dst {
        Dst {
            gateway: None,
            ..self.fresh_copy()
        }
    }

    /// Kernel: `ipv4_mtu()`. The path MTU: the learned PMTU when set, else
    /// the route's metric, else the device MTU (at most 576 through a
    /// gateway when the MTU is locked).
    #[inline]
    pub fn mtu(&self) -> u32 {
        let p = self.pmtu.load(Ordering::Relaxed);
        if p != 0 {
            return p;
        }
        if let Some(m) = self.mtu_metric {
            // The kernel takes a route `mtu` below 68 as it is; the path
            // here never goes below the IPv4 minimum.
            return m.max(IP_MIN_MTU);
        }
        let mtu = self.dev.mtu();
        if self.mtu_is_locked() && self.gateway.is_some() {
            return mtu.min(576);
        }
        mtu
    }

    /// Kernel: `ip_mtu_locked()`: the route's MTU metric is locked, or the
    /// learned one was clamped; either way no path MTU is learned.
    #[inline]
    pub fn mtu_is_locked(&self) -> bool {
        self.mtu_locked || self.pmtu_locked
    }

    /// The learned path MTU, 0 when none (`rt_pmtu`).
    pub fn pmtu(&self) -> u32 {
        self.pmtu.load(Ordering::Relaxed)
    }

    /// Records a learned path MTU (`update_pmtu`); 0 forgets it.
    pub fn set_pmtu(&self, mtu: u32) {
        self.pmtu.store(mtu, Ordering::Relaxed);
    }

    /// The next hop for `daddr` (`rt_nexthop`).
    #[inline]
    pub fn nexthop(&self, daddr: Ipv4Addr) -> Ipv4Addr {
        self.gateway.unwrap_or(daddr)
    }
}

/// A route as configured (`ip route add`): one `struct fib_alias` with its
/// `struct fib_info`.
#[derive(Clone, Debug)]
pub struct Route {
    /// Destination prefix.
    pub prefix: Ipv4Net,
    /// Preference among equal prefixes: lower wins.
    pub metric: u32,
    /// The route's `tos` key (0: any), DSCP bits only.
    pub tos: u8,
    /// The route's type.
    pub kind: RtnType,
    /// Who installed it.
    pub proto: RouteProto,
    /// The table it is in.
    pub table: u32,
    /// The destination entry packets take (`None` for the types without a
    /// next hop: blackhole, unreachable, prohibit, throw).
    pub dst: Option<Arc<Dst>>,
}

impl Route {
    /// A unicast route to `prefix` through `dst`, in table `main`, as
    /// `ip route add` installs it.
    pub fn unicast(prefix: Ipv4Net, metric: u32, dst: Arc<Dst>) -> Route {
        Route {
            prefix,
            metric,
            tos: 0,
            kind: RtnType::Unicast,
            proto: RouteProto::Boot,
            table: RT_TABLE_MAIN,
            dst: Some(dst),
        }
    }

    /// The route's scope as ip(8) prints it (`rtm_scope`): `host` for
    /// local routes, `link` for routes without a gateway, else global.
    pub fn scope(&self) -> Option<&'static str> {
        match (self.kind, &self.dst) {
            (RtnType::Local, _) => Some("host"),
            (RtnType::Broadcast, _) => Some("link"),
            (RtnType::Unicast, Some(d)) if d.gateway.is_none() => Some("link"),
            _ => None,
        }
    }

    /// The output device's name, if the route has one.
    pub fn dev_name(&self) -> Option<&str> {
        self.dst.as_ref().map(|d| d.dev.name())
    }

    /// True when the route's next hop is usable: no next hop at all, or a
    /// device that is up.
    pub fn alive(&self) -> bool {
        self.dst.as_ref().is_none_or(|d| d.dev.is_up())
    }
}

impl fmt::Display for Route {
    /// As `ip route show` prints it (without a trailing space).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind != RtnType::Unicast {
            write!(f, "{} ", self.kind.name())?;
        }
        if self.prefix.prefix_len() == 0 {
            write!(f, "default")?;
        } else if self.prefix.prefix_len() == 32 {
            write!(f, "{}", self.prefix.addr())?;
        } else {
            write!(f, "{}", self.prefix)?;
        }
        if self.tos != 0 {
            write!(f, " tos 0x{:x}", self.tos)?;
        }
        if let Some(d) = &self.dst {
            if let Some(gw) = d.gateway {
                write!(f, " via {gw}")?;
            }
            write!(f, " dev {}", d.dev.name())?;
        }
        if self.proto != RouteProto::Boot {
            write!(f, " proto {}", self.proto.name())?;
        }
        if let Some(scope) = self.scope() {
            write!(f, " scope {scope}")?;
        }
        if let Some(src) = self.dst.as_ref().and_then(|d| d.prefsrc) {
            write!(f, " src {src}")?;
        }
        if self.metric != 0 {
            write!(f, " metric {}", self.metric)?;
        }
        if let Some(d) = &self.dst {
            write_metrics(f, d)?;
        }
        if self.dst.as_ref().is_some_and(|d| !d.dev.is_up()) {
            write!(f, " linkdown")?;
        }
        Ok(())
    }
}

/// The metrics part of a route line: ` mtu [lock ]N hoplimit H`.
fn write_metrics(f: &mut fmt::Formatter<'_>, d: &Dst) -> fmt::Result {
    if let Some(mtu) = d.mtu_metric {
        let lock = if d.mtu_locked { "lock " } else { "" };
        write!(f, " mtu {lock}{mtu}")?;
    }
    if let Some(h) = d.hoplimit {
        write!(f, " hoplimit {h}")?;
    }
    Ok(())
}
