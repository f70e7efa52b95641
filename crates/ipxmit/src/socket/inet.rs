//! The state every IPv4 socket shares (`struct inet_sock` embedded in
//! `struct udp_sock` and `struct raw_sock`): addresses, options, the cork, the
//! send budget, the error queue, the own IP ID counter and the cached route.
//!
//! Stands for `inet_sock` fields and the generic parts of `ip4_datagram_connect`,
//! `ip_local_error` (`net/ipv4/ip_sockglue.c`) and the `IP_*`/`SO_*` options of
//! `do_ip_setsockopt`/`sk_setsockopt`. UDP and raw sockets dereference to it, as
//! the kernel's protocol socket structures begin with it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::buf::{SendBudget, SockMeta};
use crate::error::{Errno, SendError};
use crate::ipv4::options::{self, AddrType};
use crate::ipv4::output::{queue_xmit, XmitParams};
use crate::route::{Dst, FlowKey, RouteType};
use crate::socket::cork::{Cork, CorkParams};
use crate::socket::inbox::SockInbox;
use crate::socket::ports::PortOwner;
use crate::socket::{
    Cmsg, ErrOrigin, ErrQueue, ErrQueueEntry, PmtuDisc, SockOpts, SockTxtime, CLOCK_MONOTONIC,
    CLOCK_REALTIME, CLOCK_TAI, SOF_TXTIME_DEADLINE_MODE, SOF_TXTIME_FLAGS_MASK,
    SOF_TXTIME_REPORT_ERRORS,
};
use crate::stack::Stack;

/// `rt_tos2priority`: the priority `IP_TOS` implies (`ip_tos2prio`).
pub fn tos_to_priority(tos: u8) -> u32 {
    const MAP: [u32; 16] = [0, 0, 0, 0, 2, 2, 2, 2, 6, 6, 6, 6, 4, 4, 4, 4];
    MAP[((tos & 0x1e) >> 1) as usize]
}

/// The identity of the next socket made (never 0, never reused).
static NEXT_SOCKET_ID: AtomicU64 = AtomicU64::new(1);

/// Kernel: `inet_addr_type()`, as far as the stack knows its addresses: the
/// zero network and limited broadcast, multicast, its own and loopback
/// addresses, the broadcast addresses of its subnets; anything else is remote.
fn addr_type(stack: &Stack, a: Ipv4Addr) -> AddrType {
    if a.octets()[0] == 0 || a.is_broadcast() {
        AddrType::Broadcast
    } else if a.is_multicast() {
        AddrType::Multicast
    } else if a.is_loopback() || stack.is_local_addr(a) {
        AddrType::Local
    } else if stack
        .devices()
        .iter()
        .any(|d| d.any_addr(|n| n.prefix_len() < 31 && n.broadcast() == a))
    {
        AddrType::Broadcast
    } else {
        AddrType::Unicast
    }
}

/// The shared state of an IPv4 socket. See the module documentation.
pub struct InetSock {
    pub(crate) stack: Arc<Stack>,
    pub(crate) opts: SockOpts,
    pub(crate) local: SocketAddrV4,
    pub(crate) peer: Option<SocketAddrV4>,
    pub(crate) cork: Cork,
    pub(crate) budget: Arc<SendBudget>,
    pub(crate) errq: Arc<parking_lot::Mutex<ErrQueue>>,
    /// Next zero-copy send id (`sk->sk_zckey`).
    pub(crate) zckey: u32,
    /// The key the datagrams built now carry (`skb_shinfo(skb)->tskey`;
    /// set only while a `send_batch` tracks fates, else 0).
    pub(crate) tskey: u32,
    pub(crate) inet_id: u16,
    dst_cache: Option<RouteCache>,
    /// IP protocol number (`sk->sk_protocol`).
    pub(crate) protocol: u8,
    /// A port was reserved in the stack's table (UDP).
    uses_ports: bool,
    /// `SO_REUSEADDR` (`sk->sk_reuse`).
    reuseaddr: bool,
    /// `SO_REUSEPORT` (`sk->sk_reuseport`).
    reuseport: bool,
    /// The socket's identity, as qdiscs see it (`skb->sk`).
    id: u64,
    /// What the receive side reaches: receive and error queues, `sk_err`.
    pub(crate) inbox: Arc<SockInbox>,
    /// The inbox is in the stack's socket table (the socket is hashed).
    hashed: bool,
}

impl std::fmt::Debug for InetSock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InetSock")
            .field("protocol", &self.protocol)
            .field("local", &self.local)
            .field("peer", &self.peer)
            .finish()
    }
}

impl Drop for InetSock {
    fn drop(&mut self) {
        self.budget.close();
        if self.uses_ports {
            self.stack.release_port(self.local.port(), self.id);
        }
        if self.hashed {
            self.stack.unhash_inbox(self.id);
        }
    }
}

impl InetSock {
    /// An unbound socket of `protocol`; `uses_ports` for port-based protocols.
    pub(crate) fn new(stack: &Arc<Stack>, protocol: u8, uses_ports: bool) -> InetSock {
        let sys = stack.sysctls();
        let sndbuf = sys.wmem_default;
        let mut opts = SockOpts::default();
        if sys.ip_no_pmtu_disc != 0 {
            opts.pmtudisc = PmtuDisc::Dont;
        }
        let errq: Arc<parking_lot::Mutex<ErrQueue>> = Arc::default();
        let id = NEXT_SOCKET_ID.fetch_add(1, Ordering::Relaxed);
        let inbox = Arc::new(SockInbox::new(id, errq.clone()));
        inbox.update(|v| {
            v.pmtudisc = opts.pmtudisc;
            v.protocol = protocol;
            v.raw = !uses_ports;
        });
        if !uses_ports {
            // A raw socket is hashed by protocol when made (`raw_hash_sk`).
            stack.hash_inbox(inbox.clone());
        }
        let mut cork = Cork::default();
        cork.set_inbox(inbox.clone());
        InetSock {
            stack: stack.clone(),
            opts,
            local: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            peer: None,
            cork,
            budget: SendBudget::for_socket(sndbuf),
            errq,
            zckey: 0,
            tskey: 0,
            inet_id: 0,
            dst_cache: None,
            protocol,
            uses_ports,
            reuseaddr: false,
            reuseport: false,
            id,
            inbox,
            hashed: !uses_ports,
        }
    }

    /// The socket's receive-side handle (receive and error queues, the
    /// pending error).
    pub fn inbox(&self) -> &Arc<SockInbox> {
        &self.inbox
    }

    /// Kernel: `sock_error()` (`getsockopt(SO_ERROR)`): the pending error
    /// an ICMP message left (`sk_err`), cleared; `None` when there is none.
    pub fn take_error(&mut self) -> Option<Errno> {
        self.inbox.take_error()
    }

    /// Kernel: the `sock_error()` of `sock_alloc_send_pskb()`: a send that
    /// opens a datagram fails with the pending error, and clears it.
    pub(crate) fn check_sock_error(&self) -> Result<(), SendError> {
        match self.inbox.take_error() {
            Some(e) => Err(SendError::SockErr(e)),
            None => Ok(()),
        }
    }

    /// `SO_RCVBUF` (doubled, capped by `rmem_max`, as the kernel stores it).
    pub fn set_rcvbuf(&mut self, bytes: usize) {
        self.inbox.set_rcvbuf(bytes);
    }

    /// `SO_RCVBUF`, as `getsockopt` reads it.
    pub fn rcvbuf(&self) -> usize {
        self.inbox.rcvbuf()
    }

    /// The addresses the receive side matches against, after a change.
    fn sync_addrs(&self) {
        let (local, peer) = (self.local, self.peer);
        self.inbox.update(|v| {
            v.local = local;
            v.peer = peer;
        });
        if self.local.port() != 0 && !self.hashed && self.uses_ports {
            // Hashed once bound (`udp_lib_get_port()` -> `sk_add_node_rcu`).
            self.stack.hash_inbox(self.inbox.clone());
        }
    }

    /// The stack the socket sends through.
    pub fn stack(&self) -> &Arc<Stack> {
        &self.stack
    }

    /// The local address (`getsockname`).
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// The connected peer (`getpeername`).
    pub fn peer_addr(&self) -> Option<SocketAddrV4> {
        self.peer
    }

    /// The socket's options.
    pub fn opts(&self) -> &SockOpts {
        &self.opts
    }

    /// The options, writable (`setsockopt` without side effects).
    pub fn opts_mut(&mut self) -> &mut SockOpts {
        &mut self.opts
    }

    /// The send budget (`SO_SNDBUF`, `sk_wmem_alloc`).
    pub fn budget(&self) -> &Arc<SendBudget> {
        &self.budget
    }

    /// Bytes of the pending (corked) datagram.
    pub fn pending_len(&self) -> usize {
        self.cork.length()
    }

    /// The final destination of the pending (corked) datagram, if any.
    pub fn pending_daddr(&self) -> Option<Ipv4Addr> {
        self.cork.params().map(|p| p.final_daddr)
    }

    /// Kernel: `__inet_bind()`. Binds to `addr`: the address must be
    /// 0.0.0.0 or one of the stack's (else `EADDRNOTAVAIL`), the socket not
    /// bound yet (else `EINVAL`); for port-based protocols the port is taken
    /// by the rules of [`crate::socket::ports`] (`EADDRINUSE`), port 0 picks
    /// an ephemeral port.
    pub fn bind(&mut self, addr: SocketAddrV4) -> Result<(), SendError> {
        let ip = *addr.ip();
        if !ip.is_unspecified() && !self.stack.is_local_addr(ip) {
            return Err(SendError::AddrNotAvail(ip));
        }
        if self.local.port() != 0 || (!self.uses_ports && !self.local.ip().is_unspecified()) {
            return Err(SendError::Inval("socket already bound"));
        }
        let port = if self.uses_ports {
            self.stack.bind_port(addr.port(), self.port_owner(ip))?
        } else {
            0
        };
        self.local = SocketAddrV4::new(ip, port);
        self.sync_addrs();
        self.hashed |= self.uses_ports;
        Ok(())
    }

    pub(crate) fn autobind(&mut self) -> Result<(), SendError> {
        if self.uses_ports && self.local.port() == 0 {
            self.bind(SocketAddrV4::new(*self.local.ip(), 0))?;
        }
        Ok(())
    }

    /// Connects to `peer` (`ip4_datagram_connect`): routes (a broadcast
    /// peer without `SO_BROADCAST` is `EACCES`), picks the source address,
    /// seeds the socket's own IP ID counter.
    pub fn connect(&mut self, peer: SocketAddrV4) -> Result<(), SendError> {
        if self.uses_ports && peer.port() == 0 {
            return Err(SendError::Inval("destination port 0"));
        }
        // inet_dgram_connect(): bound to a port before the lookup.
        self.autobind()?;
        let (dst, _, mc_src) = self.route_for_send(*peer.ip(), peer.port(), Hold::Clone)?;
        if self.local.ip().is_unspecified() {
            let src = mc_src.unwrap_or_else(|| self.stack.source_for(&dst));
            // ip_route_connect: the route is looked up again with the
            // source it chose (a `from` rule may now match and refuse).
            let port = self.local.port();
            self.local = SocketAddrV4::new(src, port);
            if let Err(e) = self.route_for_send(*peer.ip(), peer.port(), Hold::Clone) {
                self.local = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
                return Err(e);
            }
            if self.uses_ports {
                // udp_v4_rehash: the socket is now found under its source.
                self.stack.update_port(port, self.port_owner(src));
            }
        }
        self.peer = Some(peer);
        // sk_dst_set(): a new route, no queue recorded yet.
        self.budget.clear_tx_queue();
        self.inet_id = self.stack.random_u16();
        self.sync_addrs();
        Ok(())
    }

    /// The route to `daddr`, cached while the table does not change.
    pub(crate) fn route(&mut self, daddr: Ipv4Addr) -> Result<Arc<Dst>, SendError> {
        self.route_typed(daddr).map(|(d, _)| d)
    }

    /// The route to `daddr` with its type; a broadcast route without
    /// `SO_BROADCAST` is `EACCES` (`raw_sendmsg()`'s `RTCF_BROADCAST` check,
    /// which a header-including send passes too).
    pub(crate) fn route_typed(
        &mut self,
        daddr: Ipv4Addr,
    ) -> Result<(Arc<Dst>, RouteType), SendError> {
        let key = self.flow_key(daddr, 0, self.opts.bound_dev_if);
        let r = route_cached(
            &self.stack,
            &mut self.dst_cache,
            (&key, Hold::Clone),
            &self.budget,
        );
        let (dst, kind) = count_no_route(&self.stack, r)?;
        if kind == RouteType::Broadcast && !self.opts.broadcast {
            return Err(SendError::Access(daddr));
        }
        Ok((dst, kind))
    }

    /// Kernel: `flowi4_init_output()` as `udp_sendmsg()`/`raw_sendmsg()`
    /// fill it: the destination and its port, the socket's bound address and
    /// port, TOS, mark and protocol, and the output device `oif`.
    pub(crate) fn flow_key(&self, daddr: Ipv4Addr, dport: u16, oif: u32) -> FlowKey {
        FlowKey {
            daddr,
            saddr: *self.local.ip(),
            tos: self.opts.tos,
            mark: self.opts.mark,
            oif,
            proto: self.protocol,
            sport: self.local.port(),
            dport,
        }
    }

    /// Kernel: `ip_queue_xmit()` for this connected socket: sends a
    /// transport segment (`skb` starts at the transport header, with
    /// headroom for the IP header and the link layer) to the peer with the
    /// socket's parameters, routed through the socket's route cache and
    /// numbered from its own ID counter (see
    /// [`crate::ipv4::output::queue_xmit`]).
    pub fn queue_xmit(&mut self, skb: crate::buf::PacketBuf) -> Result<(), SendError> {
        let Some(peer) = self.peer else {
            return Err(SendError::DestAddrRequired);
        };
        let key = self.flow_key(*peer.ip(), peer.port(), self.opts.bound_dev_if);
        // Borrowed field by field: the route closure takes the route
        // cache while the parameters lend the options (no copy per segment).
        let (stack, opts, cache) = (&self.stack, &self.opts, &mut self.dst_cache);
        let budget = &self.budget;
        let p = XmitParams {
            peer: *peer.ip(),
            saddr: *self.local.ip(),
            protocol: self.protocol,
            tos: opts.tos,
            ttl: opts.ttl,
            pmtudisc: opts.pmtudisc,
            options: &opts.options,
            priority: opts.priority,
            mark: opts.mark,
        };
        let route = &mut |daddr| {
            let key = FlowKey { daddr, ..key };
            route_cached(stack, cache, (&key, Hold::Clone), budget)
                .ok()
                .map(|(d, _)| d)
        };
        let mut skb = skb;
        skb.meta.sk = sk_meta(self.id, Some(peer), opts);
        queue_xmit(stack, &p, route, &mut self.inet_id, skb)
    }

    /// Routes and fixes what the cork keeps for a datagram to `daddr`
    /// (`ipcm_cookie` + `ip_setup_cork` inputs).
    pub(crate) fn cork_params(
        &mut self,
        daddr: Ipv4Addr,
        dport: u16,
        connected: bool,
    ) -> Result<CorkParams, SendError> {
        self.cork_params_held(daddr, dport, connected, Hold::Clone)
    }

    /// [`InetSock::cork_params`] with the route held as `hold` says: a
    /// batch's run borrows the cached route ([`Hold::Lend`]) and gives it
    /// back ([`InetSock::give_back_route`]) when it ends.
    pub(crate) fn cork_params_held(
        &mut self,
        daddr: Ipv4Addr,
        dport: u16,
        connected: bool,
        hold: Hold,
    ) -> Result<CorkParams, SendError> {
        // A source route is routed to its first hop (`faddr`); the final
        // destination goes into the option's last slot (`cork->addr`).
        let faddr = self.opts.options.faddr.unwrap_or(daddr);
        // inet_send_prepare(): the socket is bound to a port before
        // udp_sendmsg() builds the flow, so the lookup sees its port.
        self.autobind()?;
        let (dst, kind, mc_src) = self.route_for_send(faddr, dport, hold)?;
        let saddr = match (self.local.ip().is_unspecified(), mc_src) {
            (false, _) => *self.local.ip(),
            (true, Some(a)) => a,
            (true, None) => self.stack.source_for(&dst),
        };
        let ttl = match kind {
            RouteType::Multicast => self.opts.mc_ttl,
            _ => select_ttl(&self.stack, self.opts.ttl, &dst),
        };
        Ok(CorkParams {
            dst,
            daddr: faddr,
            final_daddr: daddr,
            saddr,
            protocol: self.protocol,
            ttl,
            tos: self.opts.tos,
            options: self.opts.options.clone(),
            gso_size: self.opts.gso_size,
            pmtudisc: self.opts.pmtudisc,
            priority: self.opts.priority,
            mark: self.opts.mark,
            // ip_select_ident_segs: a socket with a peer (`inet_daddr`) numbers
            // its datagrams itself, whatever address this send names.
            connected: connected || self.peer.is_some(),
            transmit_time: 0,
            sk: self.sk_meta(),
            tskey: self.tskey,
            kind,
            mc_loop: self.opts.mc_loop,
        })
    }

    /// Kernel: the route part of `udp_sendmsg()`/`raw_sendmsg()`: a
    /// multicast destination is routed out of `IP_MULTICAST_IF`'s device
    /// when set (and takes its address as source when the socket is not
    /// bound to one); a broadcast route without `SO_BROADCAST` is `EACCES`
    /// (after the lookup, as the kernel checks `RTCF_BROADCAST`). Returns
    /// the route, its type and the multicast source address, if any.
    fn route_for_send(
        &mut self,
        faddr: Ipv4Addr,
        dport: u16,
        hold: Hold,
    ) -> Result<(Arc<Dst>, RouteType, Option<Ipv4Addr>), SendError> {
        let (mc_index, mc_addr) = self.opts.mc_if;
        let mc = faddr.is_multicast();
        // udp_sendmsg: the bound device, else IP_MULTICAST_IF's for multicast.
        let oif = match self.opts.bound_dev_if {
            0 if mc => mc_index,
            b => b,
        };
        let key = self.flow_key(faddr, dport, oif);
        let r = route_cached(&self.stack, &mut self.dst_cache, (&key, hold), &self.budget);
        let (dst, kind) = count_no_route(&self.stack, r)?;
        if kind == RouteType::Broadcast && !self.opts.broadcast {
            return Err(SendError::Access(faddr));
        }
        let mc_src = (mc && !mc_addr.is_unspecified()).then_some(mc_addr);
        Ok((dst, kind, mc_src))
    }

    /// Takes back a route [`Hold::Lend`] lent: into the cache entry it came
    /// from while that entry is still the socket's and still lent; dropped
    /// when the entry was reset or replaced meanwhile. (Lends do not nest:
    /// a run holds the socket exclusively until it gives its route back.)
    pub(crate) fn give_back_route(&mut self, dst: Arc<Dst>) {
        if let Some(c) = self.dst_cache.as_mut().filter(|c| c.dst.is_none()) {
            c.dst = Some(dst);
        }
    }

    /// Kernel: `sock_setbindtodevice()`: `SO_BINDTODEVICE`. Binds the
    /// socket to device `name` (every route lookup goes out of it; with no
    /// route it is taken as on link there); `""` unbinds; a device that
    /// does not exist is `ENODEV`.
    pub fn set_bindtodevice(&mut self, name: &str) -> Result<(), SendError> {
        let index = if name.is_empty() {
            0
        } else {
            let d = self.stack.device(name).map_err(|_| {
                SendError::Route(crate::route::RouteError::NoDevice(name.to_string()))
            })?;
            d.ifindex()
        };
        self.opts.bound_dev_if = index;
        self.inbox.update(|v| v.bound_dev = index);
        // sk_dst_reset(): the route and the recorded queue are forgotten.
        self.dst_cache = None;
        self.budget.clear_tx_queue();
        Ok(())
    }

    /// `SO_BROADCAST`: allow sends to broadcast addresses.
    pub fn set_broadcast(&mut self, on: bool) {
        self.opts.broadcast = on;
    }

    /// `IP_MULTICAST_TTL`: the TTL of multicast datagrams, 0..=255 (the
    /// kernel's -1, the default 1, is `None`).
    pub fn set_multicast_ttl(&mut self, ttl: Option<u8>) {
        self.opts.mc_ttl = ttl.unwrap_or(1);
    }

    /// `IP_MULTICAST_LOOP`: stored; ipxmit has no local delivery yet, so
    /// no multicast datagram is looped back whatever the setting.
    pub fn set_multicast_loop(&mut self, on: bool) {
        self.opts.mc_loop = on;
    }

    /// Kernel: `do_ip_setsockopt()`'s `IP_MULTICAST_IF` (`struct ip_mreqn`):
    /// the device with index `ifindex`, or when 0 the device holding the
    /// local address `addr`; both 0 clears the setting. An address that is
    /// not the stack's, or an index of no device, is `EADDRNOTAVAIL`.
    pub fn set_multicast_if(&mut self, addr: Ipv4Addr, ifindex: u32) -> Result<(), SendError> {
        if ifindex == 0 && addr.is_unspecified() {
            self.opts.mc_if = (0, Ipv4Addr::UNSPECIFIED);
            return Ok(());
        }
        let dev = if ifindex != 0 {
            self.stack.device_by_index(ifindex)
        } else {
            let devs = self.stack.devices();
            devs.into_iter().find(|d| d.any_addr(|n| n.addr() == addr))
        };
        let dev = dev.ok_or(SendError::AddrNotAvail(addr))?;
        self.opts.mc_if = (dev.ifindex(), addr);
        Ok(())
    }

    /// The socket as its buffers carry it (`skb->sk`, for qdiscs).
    pub fn sk_meta(&self) -> SockMeta {
        sk_meta(self.id, self.peer, &self.opts)
    }

    /// Kernel: `__sock_cmsg_send()`: the departure time of a send's
    /// control messages `c` (0 for none); an `SCM_TXTIME` on a socket
    /// without `SO_TXTIME` is `EINVAL`.
    pub(crate) fn cmsg_send(&self, c: &Cmsg) -> Result<u64, SendError> {
        match c.txtime {
            None => Ok(0),
            Some(_) if self.opts.txtime.is_none() => {
                Err(SendError::Inval("SCM_TXTIME without SO_TXTIME"))
            }
            Some(t) => Ok(t.as_nanos()),
        }
    }

    /// Kernel: `ip_local_error()`: queue an error for `IP_RECVERR` readers.
    pub(crate) fn local_error(&mut self, errno: Errno, daddr: Ipv4Addr, port: u16, info: u32) {
        if !self.opts.recverr {
            return;
        }
        self.errq.lock().push(ErrQueueEntry {
            errno,
            origin: ErrOrigin::Local,
            ee_type: 0,
            ee_code: 0,
            info,
            data: 0,
            addr: daddr,
            port,
            offender: Ipv4Addr::UNSPECIFIED,
        });
    }

    /// Reads one error-queue entry (`recvmsg(MSG_ERRQUEUE)`), and sets the
    /// pending error as `sock_dequeue_err_skb()` does (see
    /// [`SockInbox::err_dequeued`]).
    pub fn recv_err(&mut self) -> Option<ErrQueueEntry> {
        let mut q = self.errq.lock();
        let e = q.pop()?;
        self.inbox.err_dequeued(&e, q.peek());
        Some(e)
    }

    /// Entries waiting on the error queue.
    pub fn err_queue_len(&self) -> usize {
        self.errq.lock().len()
    }

    /// `SO_ZEROCOPY`.
    pub fn set_zerocopy(&mut self, on: bool) {
        self.opts.zerocopy = on;
    }

    /// Kernel: `msg_zerocopy_realloc()`. The completion token for a
    /// `MSG_ZEROCOPY` send: the pending datagram's own, extended, when it was
    /// the previous send; else a new one with the next id.
    pub(crate) fn zerocopy_uarg(
        &mut self,
        pending: Option<&Arc<crate::buf::ZcUarg>>,
    ) -> Arc<crate::buf::ZcUarg> {
        if let Some(u) = pending {
            if u.lo.wrapping_add(u.len()) == self.zckey {
                u.extend();
                self.zckey = self.zckey.wrapping_add(1);
                return u.clone();
            }
        }
        let id = self.zckey;
        self.zckey = self.zckey.wrapping_add(1);
        let q = Arc::downgrade(&self.errq);
        crate::buf::ZcUarg::new(
            id,
            Box::new(move |lo, hi, copied| {
                if let Some(q) = q.upgrade() {
                    q.lock().push_zerocopy(lo, hi, copied);
                }
            }),
        )
    }

    /// The socket as the port table holds it, bound to `addr`.
    fn port_owner(&self, addr: Ipv4Addr) -> PortOwner {
        PortOwner {
            id: self.id,
            addr,
            reuseaddr: self.reuseaddr,
            reuseport: self.reuseport,
        }
    }

    /// Kernel: `sk_setsockopt()`'s `SO_REUSEADDR` (`sk->sk_reuse`): a UDP
    /// socket may share its port with overlapping sockets that set it too.
    /// Takes effect on a bound socket as well (for later binds of others).
    pub fn set_reuseaddr(&mut self, on: bool) {
        self.reuseaddr = on;
        self.update_port_flags();
    }

    /// Kernel: `sk_setsockopt()`'s `SO_REUSEPORT` (`sk->sk_reuseport`): a
    /// UDP socket may share its port with overlapping sockets that set it
    /// too (same owner: always, in one process).
    pub fn set_reuseport(&mut self, on: bool) {
        self.reuseport = on;
        self.update_port_flags();
    }

    /// `SO_REUSEADDR`, as `getsockopt` reads it.
    pub fn reuseaddr(&self) -> bool {
        self.reuseaddr
    }

    /// `SO_REUSEPORT`, as `getsockopt` reads it.
    pub fn reuseport(&self) -> bool {
        self.reuseport
    }

    fn update_port_flags(&self) {
        if self.uses_ports && self.local.port() != 0 {
            let owner = self.port_owner(*self.local.ip());
            self.stack.update_port(self.local.port(), owner);
        }
    }

    /// `IP_TOS`: also sets the priority it implies (`rt_tos2priority`).
    pub fn set_tos(&mut self, tos: u8) {
        self.opts.tos = tos;
        self.opts.priority = tos_to_priority(tos);
        self.inbox.update(|v| v.tos = tos);
    }

    /// `IP_TTL`: 1..=255, or `None` for the default.
    pub fn set_ttl(&mut self, ttl: Option<u8>) -> Result<(), SendError> {
        if ttl == Some(0) {
            return Err(SendError::Inval("IP_TTL must be 1..255"));
        }
        self.opts.ttl = ttl;
        Ok(())
    }

    /// `IP_MTU_DISCOVER`.
    pub fn set_mtu_discover(&mut self, mode: PmtuDisc) {
        self.opts.pmtudisc = mode;
        self.inbox.update(|v| v.pmtudisc = mode);
    }

    /// `IP_RECVERR`; turning it off purges the error queue.
    pub fn set_recverr(&mut self, on: bool) {
        self.opts.recverr = on;
        self.inbox.update(|v| v.recverr = on);
        if !on {
            while self.errq.lock().pop().is_some() {}
        }
    }

    /// `SO_NO_CHECK`.
    pub fn set_no_check(&mut self, on: bool) {
        self.opts.no_check = on;
    }

    /// `SO_PRIORITY`.
    pub fn set_priority(&mut self, prio: u32) {
        self.opts.priority = prio;
    }

    /// `SO_MARK`.
    pub fn set_mark(&mut self, mark: u32) {
        self.opts.mark = mark;
        self.inbox.update(|v| v.mark = mark);
    }

    /// `IP_OPTIONS` (`ip_options_get`): validated and prepared as
    /// [`crate::ipv4::options::compile`] describes; on
    /// error (`EINVAL`) the previous options stay.
    pub fn set_ip_options(&mut self, raw: &[u8]) -> Result<(), SendError> {
        let stack = &self.stack;
        self.opts.options = options::compile(raw, |a| addr_type(stack, a))?;
        Ok(())
    }

    /// Kernel: `sk_setsockopt()`'s `SO_MAX_PACING_RATE` with a 64-bit
    /// value: the socket's pacing rate cap, bytes per second (`u64::MAX`:
    /// none; the 32-bit form's `u32::MAX` means none as well, see
    /// [`max_pacing_rate_u32`]). The pacing rate is lowered to it when
    /// above; it is never raised.
    pub fn set_max_pacing_rate(&mut self, rate: u64) {
        self.opts.max_pacing_rate = rate;
        self.opts.pacing_rate = self.opts.pacing_rate.min(rate);
    }

    /// `SO_MAX_PACING_RATE` (`getsockopt`, 64-bit).
    pub fn max_pacing_rate(&self) -> u64 {
        self.opts.max_pacing_rate
    }

    /// `sk_pacing_rate`: what `fq` paces the socket's packets at.
    pub fn pacing_rate(&self) -> u64 {
        self.opts.pacing_rate
    }

    /// Kernel: `sk_setsockopt()`'s `SO_TXTIME` (`struct sock_txtime`): a
    /// flag outside `SOF_TXTIME_FLAGS_MASK` or a clock other than
    /// `CLOCK_REALTIME`, `CLOCK_MONOTONIC` and `CLOCK_TAI` is `EINVAL` (the
    /// other clocks' `CAP_NET_ADMIN` check passes: the stack's owner holds
    /// it). A refused request leaves the previous setting; once set,
    /// `SO_TXTIME` stays set.
    pub fn set_txtime(&mut self, clockid: i32, flags: u32) -> Result<(), SendError> {
        if flags & !SOF_TXTIME_FLAGS_MASK != 0 {
            return Err(SendError::Inval("SO_TXTIME flag unknown"));
        }
        if ![CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_TAI].contains(&clockid) {
            return Err(SendError::Inval(
                "SO_TXTIME clock not REALTIME, MONOTONIC or TAI",
            ));
        }
        self.opts.txtime = Some(SockTxtime {
            clockid,
            deadline_mode: flags & SOF_TXTIME_DEADLINE_MODE != 0,
            report_errors: flags & SOF_TXTIME_REPORT_ERRORS != 0,
        });
        Ok(())
    }

    /// `SO_SNDTIMEO`: how long a blocking send waits for room in the send
    /// buffer before `EAGAIN` (`None` or zero: for ever, the default).
    pub fn set_sndtimeo(&mut self, t: Option<std::time::Duration>) {
        self.budget.set_sndtimeo(t.filter(|d| !d.is_zero()));
    }

    /// `SO_SNDBUF`: the kernel doubles the value (for overhead), capped by
    /// `wmem_max`, at least `SOCK_MIN_SNDBUF`.
    pub fn set_sndbuf(&mut self, bytes: usize) {
        let max = self.stack.sysctls().wmem_max;
        let v = bytes.min(max).saturating_mul(2).max(4608);
        self.budget.set_limit(v);
    }
}

/// Kernel: `sk_setsockopt()`'s reading of a 32-bit `SO_MAX_PACING_RATE`:
/// `u32::MAX` is no cap (`~0UL`), anything else that many bytes per second.
pub fn max_pacing_rate_u32(v: u32) -> u64 {
    if v == u32::MAX {
        u64::MAX
    } else {
        u64::from(v)
    }
}

/// The socket `id` with peer `peer` and options `o` as its buffers carry
/// it.
fn sk_meta(id: u64, peer: Option<SocketAddrV4>, o: &SockOpts) -> SockMeta {
    SockMeta::new(
        id,
        peer.is_some(),
        o.pacing_rate,
        o.max_pacing_rate != u64::MAX,
    )
}

/// Kernel: `ip_select_ttl()`. The socket's `IP_TTL`, else the route's
/// `hoplimit`, else `net.ipv4.ip_default_ttl`.
#[inline]
pub(crate) fn select_ttl(stack: &Stack, ttl: Option<u8>, dst: &Dst) -> u8 {
    ttl.or(dst.hoplimit).unwrap_or_else(|| stack.default_ttl())
}

/// Kernel: `sk_dst_check()` and `ip_route_output_flow()`. The route for
/// `key` from `cache` while the routing state has not changed since it was
/// looked up (and a learned path MTU it carries has not expired), else
/// looked up in `stack` and kept there. A route made obsolete by a change
/// of the routing state is reset (`sk_dst_reset()`), which forgets the
/// transmit queue recorded in `budget` (`sk_tx_queue_clear()`).
///
/// With [`Hold::Lend`] the cache's own reference is moved out (the entry
/// stays, marked lent) instead of cloned: the caller gives it back with
/// [`InetSock::give_back_route`]. A batch holds its route that way: the
/// count of a route every sender to a destination shares is not written
/// per call (a clone and a drop per `send_batch` moved its cache line
/// between the threads sending).
fn route_cached(
    stack: &Stack,
    cache: &mut Option<RouteCache>,
    (key, hold): (&FlowKey, Hold),
    budget: &SendBudget,
) -> Result<(Arc<Dst>, RouteType), SendError> {
    let gen = stack.fib_generation();
    if let Some(c) = cache {
        let fresh = |d: &Arc<Dst>| d.expires_ns == 0 || live(stack, d);
        if c.gen == gen && c.key == *key && c.dst.as_ref().is_some_and(fresh) {
            let held = match hold {
                Hold::Clone => c.dst.clone(),
                Hold::Lend => c.dst.take(),
            };
            if let Some(dst) = held {
                return Ok((dst, c.kind));
            }
        }
        if c.gen != gen {
            budget.clear_tx_queue();
        }
    }
    let (dst, kind) = stack
        .route_output_key(key)
        .map_err(|e| SendError::from_route(&e))?;
    *cache = Some(RouteCache {
        gen,
        key: *key,
        dst: (hold == Hold::Clone).then(|| dst.clone()),
        kind,
    });
    Ok((dst, kind))
}

/// How a route taken from a socket's cache is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// A reference of its own (`dst_clone()`).
    Clone,
    /// The cache's reference, lent until given back.
    Lend,
}

/// Kernel: `udp_sendmsg()`/`ip4_datagram_connect()`/`raw_sendmsg()` on a
/// failed route lookup: only `ENETUNREACH` counts as `IpOutNoRoutes`.
fn count_no_route<T>(stack: &Stack, r: Result<T, SendError>) -> Result<T, SendError> {
    if let Err(SendError::NetUnreachable(_)) = &r {
        stack.counters.inc(crate::stats::Mib::IpOutNoRoutes);
    }
    r
}

/// True while the path MTU `dst` carries has not expired.
fn live(stack: &Stack, dst: &Dst) -> bool {
    stack.now().as_nanos() < dst.expires_ns
}

/// A socket's cached route (`sk_dst_cache`): valid while the routing
/// state's generation and the flow are the same.
struct RouteCache {
    gen: u64,
    key: FlowKey,
    /// The route; `None` while lent ([`Hold::Lend`]).
    dst: Option<Arc<Dst>>,
    kind: RouteType,
}
