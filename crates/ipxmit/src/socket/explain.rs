//! What a UDP send will do, decided before it is made: the plan behind
//! `ipxmit explain`.
//!
//! Stands for no single kernel function but for the decisions of
//! `udp_sendmsg()` as the kernel takes them, each asked of the function the
//! send itself calls: the route (`ip_route_output_flow()`: the rules walked
//! by `fib_rules_lookup()`, the table's answer, `__mkroute_output()`'s
//! destination entry and its path-MTU exception), the neighbour
//! (`ip_neigh_for_gw()`/`neigh_output()`), the fragment geometry
//! (`ip_setup_cork()`'s `fragsize`, `__ip_append_data()`'s `maxfraglen`
//! and `ip_do_fragment()`'s cuts), the checksum (`__ip_append_data()`'s
//! `CHECKSUM_PARTIAL` test), UDP GSO (`udp_send_skb()`), the IP ID
//! (`ip_select_ident_segs()`), the netfilter hooks, and the transmit queue
//! and qdisc path (`netdev_pick_tx()`, `__dev_xmit_skb()`), and the class
//! a classful qdisc puts the first frame in (its own classification, on a
//! frame built as the send builds it: `htb_classify()`, `prio_classify()`).
//!
//! Asking is not sending, with one exception the kernel shares: an unbound
//! socket is bound to an ephemeral port (`inet_send_prepare()`), as the
//! send would bind it. Nothing is queued, counted or put on a wire, except
//! that a refused route counts `IpOutNoRoutes` as the send would.

use std::net::{Ipv4Addr, SocketAddrV4};

use ipnet::Ipv4Net;

use crate::buf::PacketBuf;
use crate::error::SendError;
use crate::ipv4::fragment::FragPlan;
use crate::ipv4::output::plan_xmit;
pub use crate::ipv4::output::{QdiscPath, QdiscPlan};
use crate::netfilter::HookPoint;
use crate::route::rules::{FibRule, RuleAction};
use crate::route::{Dst, Lookup, RouteType, IP_MAX_MTU};
use crate::socket::cork::{cork_fragsize, datagram_df, CorkParams};
use crate::socket::udp::UdpSocket;
use crate::socket::MsgFlags;
use crate::stack::Stack;
use crate::wire::ipv4::HEADER_LEN;

/// The UDP header's length.
const UDP_HLEN: usize = 8;

/// The largest UDP payload (`0xffff` less the IP and UDP headers).
const UDP_MAX_PAYLOAD: usize = 0xffff - HEADER_LEN - UDP_HLEN;

/// What a send of some length to some destination will do.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The route.
    pub route: RoutePlan,
    /// The next hop's link address.
    pub neigh: NeighPlan,
    /// The datagram's size and how it is cut.
    pub geometry: Geometry,
    /// Who computes the UDP checksum, and why.
    pub csum: CsumPlan,
    /// UDP GSO, when the socket asks for it and the datagram is larger
    /// than one segment.
    pub gso: Option<GsoPlan>,
    /// How the IP ID is chosen.
    pub ident: IdentRule,
    /// The netfilter hooks the datagram passes.
    pub hooks: Vec<HookPlan>,
    /// The transmit queue and the qdisc path.
    pub qdisc: QdiscPlan,
    /// The datagram as the hooks would see it (LOCAL_OUT and POST_ROUTING
    /// take it whole, before fragmentation): its header as the send writes
    /// it (IP ID 0), the UDP header, a zero payload; for asking a hook
    /// what it would do with it ([`crate::nft::Nft::would_match`]).
    pub datagram: Probe,
}

/// A datagram built as a send builds it, not sent.
#[derive(Clone, Debug)]
pub struct Probe {
    /// The IP datagram's bytes.
    pub bytes: Vec<u8>,
    /// `skb->mark` (`SO_MARK`).
    pub mark: u32,
    /// `skb->priority` (`SO_PRIORITY`).
    pub priority: u32,
}

impl Probe {
    /// The datagram in a buffer, its metadata set.
    pub fn to_packet(&self) -> PacketBuf {
        let mut pkt = PacketBuf::from_slice(0, &self.bytes);
        pkt.reset_network_header();
        pkt.meta.protocol = 0x0800;
        (pkt.meta.mark, pkt.meta.priority) = (self.mark, self.priority);
        pkt
    }
}

/// One rule `fib_rules_lookup()` found matching, and what it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSeen {
    /// The rule's priority.
    pub priority: u32,
    /// The table it names (`None`: its action decided alone). Until a
    /// rule is added the kernel keeps `local` merged into `main`; the
    /// rule still names `local` here, as `ip rule show` does.
    pub table: Option<u32>,
    /// What came of it: `route PREFIX`, `no route` (the next rule is
    /// asked), an error route's type, or the rule's own action.
    pub answer: String,
}

/// The route a send takes (`ip_route_output_flow()`).
#[derive(Clone, Debug)]
pub struct RoutePlan {
    /// The rules walked, in order (empty when no table was consulted: an
    /// output device taken as on link, `0.0.0.0`, a link-local group).
    pub rules: Vec<RuleSeen>,
    /// The table whose route decided, as `ip route get` names it.
    pub table: Option<u32>,
    /// The route's prefix.
    pub prefix: Option<Ipv4Net>,
    /// The route type.
    pub kind: RouteType,
    /// The header's destination (a source route's first hop).
    pub daddr: Ipv4Addr,
    /// The source address.
    pub saddr: Ipv4Addr,
    /// The output device.
    pub dev: String,
    /// The gateway, `None` on link.
    pub gateway: Option<Ipv4Addr>,
    /// The route's MTU (`dst_mtu()`: a learned path MTU, the route's `mtu`
    /// metric, else the device's).
    pub mtu: u32,
    /// A learned path MTU (a next-hop exception), if any.
    pub pmtu: Option<u32>,
    /// The TTL the datagram gets.
    pub ttl: u8,
}

/// The state of the neighbour a frame goes to (`neigh_output()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NeighPlan {
    /// No link header to fill: `lo`, or a link without one (TUN).
    NotNeeded,
    /// A link-layer address made from the destination: broadcast
    /// (`ff:ff:ff:ff:ff:ff`) or a multicast group's MAC (`ip_eth_mc_map()`).
    Mapped(String),
    /// An entry exists for the next hop.
    Entry {
        /// The next hop.
        addr: Ipv4Addr,
        /// Its NUD state (`REACHABLE`, `STALE`, `INCOMPLETE`, ...).
        state: &'static str,
        /// Its link address, when known.
        lladdr: Option<String>,
        /// Frames go out at once (a connected state); else they wait in
        /// the entry's queue while it resolves.
        connected: bool,
    },
    /// No entry: one is created `INCOMPLETE`, an ARP request goes out
    /// and the datagram waits (`__neigh_event_send()`).
    Missing(Ipv4Addr),
}

/// The datagram's size and cuts (`ip_setup_cork()`, `__ip_append_data()`,
/// `ip_fragment()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// The IP datagram's length (header, options, UDP header and payload).
    pub ip_len: usize,
    /// `cork->fragsize`: the MTU the datagram is cut for.
    pub fragsize: u32,
    /// `fragheaderlen`: the IP header with options.
    pub hlen: usize,
    /// `maxfraglen`: the length of every fragment but the last.
    pub maxfraglen: usize,
    /// DF in the header.
    pub df: bool,
    /// The frames: each fragment's offset (bytes of IP payload before it)
    /// and IP length; one entry for a datagram that is not fragmented.
    pub frames: Vec<(usize, usize)>,
}

/// The UDP checksum's mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CsumPlan {
    /// `CHECKSUM_PARTIAL`: the device (or its software fallback at
    /// transmit) sums the datagram.
    Partial,
    /// Summed by the stack as the data is copied (`CHECKSUM_NONE`), for
    /// the reason given.
    Software(&'static str),
    /// `SO_NO_CHECK`: the checksum field is 0.
    Off,
}

/// UDP GSO (`UDP_SEGMENT`): one datagram the device cuts into segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GsoPlan {
    /// The segment's payload size.
    pub size: usize,
    /// How many segments.
    pub segs: usize,
}

/// How the IP ID is chosen (`ip_select_ident_segs()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentRule {
    /// A connected socket's own counter (`inet->inet_id`).
    Socket,
    /// 0: DF set and the datagram may not be fragmented on the way.
    Zero,
    /// The per-destination counters (`ip_idents_reserve()`).
    PerDestination,
}

/// A hook point and what is registered there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookPlan {
    /// The hook.
    pub point: HookPoint,
    /// How many hook functions run there (0: none).
    pub hooks: usize,
}

impl UdpSocket {
    /// The plan of `sendto(len bytes, dest, flags)` (`None`: the
    /// connected peer) without sending: the errors the send would return
    /// before any data is taken, else each decision it would take. A
    /// datagram pending under cork is not looked at (the plan is of a new
    /// datagram, as the first call of a cork: `MSG_MORE` leaves its
    /// checksum to software).
    pub fn explain(
        &mut self,
        len: usize,
        dest: Option<SocketAddrV4>,
        flags: MsgFlags,
    ) -> Result<Plan, SendError> {
        if len > UDP_MAX_PAYLOAD {
            return Err(SendError::TooLong {
                max: UDP_MAX_PAYLOAD,
            });
        }
        let (daddr, dport, connected) = match dest {
            Some(d) if d.port() == 0 => return Err(SendError::Inval("destination port 0")),
            Some(d) => (*d.ip(), d.port(), false),
            None => {
                let p = self.peer_addr().ok_or(SendError::DestAddrRequired)?;
                (*p.ip(), p.port(), true)
            }
        };
        let p = self.cork_params(daddr, dport, connected)?;
        let fragsize = cork_fragsize(&p)?;
        let geometry = geometry(&p, fragsize, len + UDP_HLEN)?;
        let hash = super::udp::flow_hash(p.saddr, p.daddr, self.local_addr().port(), dport);
        Ok(Plan {
            route: self.route_plan(&p, dport),
            neigh: neigh_plan(&self.stack, &p),
            csum: self.csum_plan(&p, &geometry, len, flags),
            gso: gso_plan(&p, len),
            ident: ident_rule(&p, geometry.df),
            hooks: hook_plans(&self.stack),
            qdisc: plan_xmit(
                &p.dst,
                hash,
                &self.probe_frame(&p, dport, &geometry, true),
                // A connected socket's frames keep the queue recorded.
                p.sk.connected().then(|| self.budget.tx_queue()).flatten(),
            ),
            datagram: Probe {
                bytes: self.probe_frame(&p, dport, &geometry, false).to_vec(),
                mark: p.mark,
                priority: p.priority,
            },
            geometry,
        })
    }

    /// The route part: the rules walked for the socket's flow (the lookup
    /// the send made, asked again with an observer) and the destination
    /// entry the send got.
    fn route_plan(&self, p: &CorkParams, dport: u16) -> RoutePlan {
        let oif = match self.opts().bound_dev_if {
            0 if p.daddr.is_multicast() => self.opts().mc_if.0,
            b => b,
        };
        let key = self.flow_key(p.daddr, dport, oif);
        let rib = self.stack.rib();
        let mut rules = Vec::new();
        let found = rib.lookup_seen(&key, |rule, answer| {
            rules.push(RuleSeen {
                priority: rule.priority,
                table: match rule.action {
                    RuleAction::Table(t) => Some(t),
                    _ => None,
                },
                answer: answer_text(rule, answer),
            })
        });
        let prefix = found.ok().map(|r| r.prefix);
        // The send's own lookup (`ip_route_output_key_hash_rcu()`), asked
        // again: it answered once, so it answers now.
        let out = self.stack.route_get(&key).ok();
        let d: &Dst = &p.dst;
        RoutePlan {
            rules,
            table: out.as_ref().and_then(|o| o.table),
            prefix: out.as_ref().and_then(|o| o.table).and(prefix),
            kind: out.map_or(RouteType::Unicast, |o| o.kind),
            daddr: p.daddr,
            saddr: p.saddr,
            dev: d.dev.name().to_string(),
            gateway: d.gateway,
            mtu: d.mtu(),
            pmtu: (d.pmtu() != 0).then(|| d.pmtu()),
            ttl: p.ttl,
        }
    }

    /// The datagram's `first` frame as the qdisc's filters see it, or the
    /// whole datagram as the hooks see it: the IP header the send writes
    /// (ID 0, checksum left out), the UDP header (checksum left out) and
    /// the payload's room zeroed, with the socket's priority and mark.
    fn probe_frame(&self, p: &CorkParams, dport: u16, g: &Geometry, first: bool) -> PacketBuf {
        let len = if first { g.frames[0].1 } else { g.ip_len };
        let mut pkt = self.stack.pool.alloc(len);
        let b = pkt.put(len);
        b.fill(0);
        crate::socket::cork::write_header_bytes(&mut b[..g.hlen], p, g.df, 0);
        b[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        if first && g.frames.len() > 1 {
            b[6] |= 0x20;
        }
        let udp_len = (g.ip_len - g.hlen) as u16;
        let u = &mut b[g.hlen..];
        u[..2].copy_from_slice(&self.local_addr().port().to_be_bytes());
        u[2..4].copy_from_slice(&dport.to_be_bytes());
        u[4..6].copy_from_slice(&udp_len.to_be_bytes());
        pkt.reset_network_header();
        pkt.meta.transport_header = pkt.meta.network_header + g.hlen as u16;
        pkt.meta.protocol = 0x0800;
        (pkt.meta.priority, pkt.meta.mark) = (p.priority, p.mark);
        pkt
    }

    /// `__ip_append_data()`'s `CHECKSUM_PARTIAL` test for a datagram
    /// appended whole by one call, and `udp_send_skb()`'s `SO_NO_CHECK`.
    fn csum_plan(&self, p: &CorkParams, g: &Geometry, len: usize, flags: MsgFlags) -> CsumPlan {
        if self.opts().no_check && p.gso_size == 0 {
            return CsumPlan::Off;
        }
        if !p.dst.dev.features().can_csum() {
            return CsumPlan::Software("the device has no checksum offload");
        }
        if p.dst.header_len != 0 {
            return CsumPlan::Software("a transform's header comes first");
        }
        if flags.contains(MsgFlags::MORE) && p.gso_size == 0 {
            return CsumPlan::Software("MSG_MORE: more data may follow (corked)");
        }
        let space = FragPlan::new(plan_mtu(p, g.fragsize), g.hlen).space();
        if len + UDP_HLEN > space {
            return CsumPlan::Software("the datagram is fragmented");
        }
        CsumPlan::Partial
    }
}

/// The MTU `__ip_append_data()` cuts for: `IP_MAX_MTU` under GSO, else
/// the cork's `fragsize`.
fn plan_mtu(p: &CorkParams, fragsize: u32) -> usize {
    if p.gso_size != 0 {
        IP_MAX_MTU as usize
    } else {
        fragsize as usize
    }
}

/// The datagram's geometry, and `EMSGSIZE` where `__ip_append_data()`
/// refuses it (larger than the MTU and not to be fragmented).
fn geometry(p: &CorkParams, fragsize: u32, length: usize) -> Result<Geometry, SendError> {
    let hlen = HEADER_LEN + p.options.len();
    let plan = FragPlan::new(plan_mtu(p, fragsize), hlen);
    let maxnonfragsize = if p.pmtudisc.ignore_df() {
        IP_MAX_MTU as usize
    } else {
        plan.mtu()
    };
    if length > maxnonfragsize - hlen {
        return Err(SendError::MsgSize {
            mtu: (plan.mtu() - p.options.len()) as u32,
        });
    }
    let ip_len = hlen + length;
    let df = datagram_df(p, ip_len);
    let mut frames = Vec::new();
    let (mut off, mut left) = (0, length);
    while left > plan.space() {
        frames.push((off, plan.maxfraglen()));
        off += plan.maxdata();
        left -= plan.maxdata();
    }
    frames.push((off, hlen + left));
    Ok(Geometry {
        ip_len,
        fragsize,
        hlen,
        maxfraglen: plan.maxfraglen(),
        df,
        frames,
    })
}

/// A rule's outcome as `explain` prints it.
fn answer_text(rule: &FibRule, answer: Option<&Lookup<'_>>) -> String {
    match (answer, &rule.action) {
        (Some(Lookup::Found(r)), _) => format!("route {}", r.prefix),
        (Some(Lookup::Error(r, _)), _) => format!("{} route {}", r.kind.name(), r.prefix),
        (Some(Lookup::Continue), _) => "no route".to_string(),
        (None, RuleAction::Table(_)) => "no such table".to_string(),
        (None, RuleAction::Nop) => "nop".to_string(),
        (None, RuleAction::Blackhole) => "blackhole".to_string(),
        (None, RuleAction::Unreachable) => "unreachable".to_string(),
        (None, RuleAction::Prohibit) => "prohibit".to_string(),
    }
}

/// The neighbour the frames go to: none on `lo` or a link without
/// headers, a mapped address for broadcast and multicast, else the
/// table's entry for the next hop.
fn neigh_plan(stack: &Stack, p: &CorkParams) -> NeighPlan {
    let dev = &p.dst.dev;
    // No link header (`lo`, a TUN-like link): no neighbour to resolve.
    if dev.is_loopback() || dev.link().header_len() == 0 {
        return NeighPlan::NotNeeded;
    }
    let nh = p.dst.nexthop(p.daddr);
    if let Some(mac) = crate::neigh::arp::constructor(dev, nh) {
        return NeighPlan::Mapped(mac.to_string());
    }
    match stack.neighbours().lookup(dev.ifindex(), nh) {
        Some(n) => {
            let state = n.state();
            NeighPlan::Entry {
                addr: nh,
                state: state.name(),
                lladdr: n.lladdr().map(|m| m.to_string()),
                connected: state.is_connected(),
            }
        }
        None => NeighPlan::Missing(nh),
    }
}

/// UDP GSO when the socket sets a segment size and the payload exceeds it.
fn gso_plan(p: &CorkParams, len: usize) -> Option<GsoPlan> {
    let size = p.gso_size as usize;
    (size != 0 && len > size).then(|| GsoPlan {
        size,
        segs: len.div_ceil(size),
    })
}

/// Kernel: `ip_select_ident_segs()`'s choice (see
/// [`crate::socket::cork::select_ident`]).
fn ident_rule(p: &CorkParams, df: bool) -> IdentRule {
    if p.connected {
        IdentRule::Socket
    } else if df && !p.pmtudisc.ignore_df() {
        IdentRule::Zero
    } else {
        IdentRule::PerDestination
    }
}

/// The two hooks of the output path and how many functions each runs.
fn hook_plans(stack: &Stack) -> Vec<HookPlan> {
    [HookPoint::LocalOut, HookPoint::PostRouting]
        .into_iter()
        .map(|point| HookPlan {
            point,
            hooks: stack.hooks.count(point),
        })
        .collect()
}
