//! What the receive side hands a socket: its receive queue, its error
//! queue and its pending error, behind one shared handle.
//!
//! A socket is owned by one thread, but the stack's receive path (another
//! thread, or the same one inside [`crate::Stack::poll`]) must reach it, as
//! the kernel's softirq reaches a `struct sock` found in the UDP hash
//! table. The [`SockInbox`] is that reachable part: the port table finds
//! it by the socket's identity, and it carries a copy of what the lookup
//! and the error handlers read (`inet_rcv_saddr`, `inet_daddr`,
//! `inet_dport`, `sk_bound_dev_if`, `sk_mark`, `IP_RECVERR`, the PMTU
//! mode), which the socket's setters keep current. It stands for
//! `sk_receive_queue` with `sk_rmem_alloc`/`sk_rcvbuf`
//! (`__udp_enqueue_schedule_skb()`), `sk_error_queue` and `sk_err`
//! (`sock_error()`).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::Errno;
use crate::ipv4::PmtuDisc;
use crate::socket::{ErrOrigin, ErrQueue, ErrQueueEntry};

/// `net.core.rmem_default`: the initial `SO_RCVBUF`.
pub const RMEM_DEFAULT: usize = 212_992;
/// `net.core.rmem_max`: the largest `SO_RCVBUF` a user may ask for.
pub const RMEM_MAX: usize = 212_992;
/// `SOCK_MIN_RCVBUF`: the smallest `SO_RCVBUF` (`2048 + SKB_TRUESIZE(256)`
/// on x86-64, rounded as the kernel's `sk_setsockopt()` doubles).
pub const SOCK_MIN_RCVBUF: usize = 2304;

/// What the receive side reads of a socket (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockView {
    /// The bound address and port (`inet_rcv_saddr`, `inet_num`).
    pub local: SocketAddrV4,
    /// The connected peer (`inet_daddr`, `inet_dport`), if any.
    pub peer: Option<SocketAddrV4>,
    /// `IP_RECVERR`.
    pub recverr: bool,
    /// `IP_MTU_DISCOVER`.
    pub pmtudisc: PmtuDisc,
    /// `SO_MARK`.
    pub mark: u32,
    /// `IP_TOS`.
    pub tos: u8,
    /// `SO_BINDTODEVICE` (`sk_bound_dev_if`), 0 for none.
    pub bound_dev: u32,
    /// The IP protocol (`inet_num` of a raw socket).
    pub protocol: u8,
    /// A raw socket (found by protocol, not by port).
    pub raw: bool,
}

impl Default for SockView {
    fn default() -> Self {
        SockView {
            local: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            peer: None,
            recverr: false,
            pmtudisc: PmtuDisc::Want,
            mark: 0,
            tos: 0,
            bound_dev: 0,
            protocol: 0,
            raw: false,
        }
    }
}

impl SockView {
    /// Kernel: `compute_score()`, net/ipv4/udp.c. How well a datagram
    /// from `saddr:sport` to `daddr:dport` arriving on device `dif` matches
    /// this socket: `None` when it does not, else 2, plus 4 for each of a
    /// bound address, a connected address, a connected port and a bound
    /// device that it matches.
    pub fn score(
        &self,
        (saddr, sport): (Ipv4Addr, u16),
        (daddr, dport): (Ipv4Addr, u16),
        dif: u32,
    ) -> Option<u32> {
        if self.local.port() != dport {
            return None;
        }
        let mut score = 2;
        if !self.local.ip().is_unspecified() {
            if *self.local.ip() != daddr {
                return None;
            }
            score += 4;
        }
        if let Some(p) = self.peer {
            if *p.ip() != saddr || p.port() != sport {
                return None;
            }
            score += 8;
        }
        if self.bound_dev != 0 {
            if self.bound_dev != dif {
                return None;
            }
            score += 4;
        }
        Some(score)
    }
}

/// A datagram waiting on a receive queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Its source address and port (`msg_name`).
    pub from: SocketAddrV4,
    /// The address it was sent to (`IP_PKTINFO`'s `ipi_addr`).
    pub to: Ipv4Addr,
    /// The payload.
    pub data: Vec<u8>,
}

#[derive(Debug)]
struct RecvQueue {
    q: VecDeque<(Datagram, usize)>,
    /// `sk_rmem_alloc`: the truesize of what waits.
    rmem: usize,
    /// `sk_rcvbuf`.
    rcvbuf: usize,
}

/// The receive side's handle on a socket. See the module documentation.
#[derive(Debug)]
pub struct SockInbox {
    id: u64,
    view: Mutex<SockView>,
    /// `sk_err`: an errno number, 0 for none.
    sk_err: AtomicI32,
    errq: Arc<Mutex<ErrQueue>>,
    rcvq: Mutex<RecvQueue>,
}

impl SockInbox {
    /// The inbox of socket `id`, sharing its error queue `errq`.
    pub fn new(id: u64, errq: Arc<Mutex<ErrQueue>>) -> SockInbox {
        SockInbox {
            id,
            view: Mutex::new(SockView::default()),
            sk_err: AtomicI32::new(0),
            errq,
            rcvq: Mutex::new(RecvQueue {
                q: VecDeque::new(),
                rmem: 0,
                rcvbuf: RMEM_DEFAULT,
            }),
        }
    }

    /// The socket's identity.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// What the receive side reads of the socket.
    pub fn view(&self) -> SockView {
        *self.view.lock()
    }

    /// Changes what the receive side reads (the socket's setters).
    pub fn update(&self, f: impl FnOnce(&mut SockView)) {
        f(&mut self.view.lock());
    }

    /// Kernel: `sk->sk_err = err; sk_error_report(sk)`.
    pub fn set_error(&self, e: Errno) {
        self.sk_err.store(e.code(), Ordering::Release);
    }

    /// Kernel: `sock_error()`: the pending error, cleared.
    pub fn take_error(&self) -> Option<Errno> {
        // Read first: a send checks on every datagram, and a swap would
        // write the line each time.
        if self.sk_err.load(Ordering::Acquire) == 0 {
            return None;
        }
        let code = self.sk_err.swap(0, Ordering::AcqRel);
        if code == 0 {
            None
        } else {
            Errno::from_code(code)
        }
    }

    /// Kernel: `sock_dequeue_err_skb()`, net/core/skbuff.c: after `e` was
    /// read off the error queue, an ICMP entry next in line becomes the
    /// pending error; else reading an ICMP entry clears it (so a socket
    /// that reads its error queue does not see the error again on its next
    /// call).
    pub fn err_dequeued(&self, e: &ErrQueueEntry, next: Option<&ErrQueueEntry>) {
        match next {
            Some(n) if n.origin == ErrOrigin::Icmp => self.set_error(n.errno),
            _ if e.origin == ErrOrigin::Icmp => self.sk_err.store(0, Ordering::Release),
            _ => {}
        }
    }

    /// Kernel: `sock_queue_err_skb()`: queues an error-queue entry
    /// (dropped when the queue is full).
    pub fn queue_err(&self, e: ErrQueueEntry) -> bool {
        self.errq.lock().push(e)
    }

    /// Kernel: `__udp_enqueue_schedule_skb()`. Queues `d`, charged
    /// `truesize`, unless what waits already exceeds `SO_RCVBUF`; then the
    /// datagram is refused (`-ENOMEM`).
    pub fn enqueue(&self, d: Datagram, truesize: usize) -> Result<(), Datagram> {
        let mut q = self.rcvq.lock();
        if q.rmem > q.rcvbuf {
            return Err(d);
        }
        q.rmem += truesize;
        q.q.push_back((d, truesize));
        Ok(())
    }

    /// Takes the oldest datagram waiting, uncharging it.
    pub fn dequeue(&self) -> Option<Datagram> {
        let mut q = self.rcvq.lock();
        let (d, t) = q.q.pop_front()?;
        q.rmem -= t;
        Some(d)
    }

    /// Datagrams waiting.
    pub fn queued(&self) -> usize {
        self.rcvq.lock().q.len()
    }

    /// `SO_RCVBUF` as the kernel stores it.
    pub fn rcvbuf(&self) -> usize {
        self.rcvq.lock().rcvbuf
    }

    /// Kernel: `sk_setsockopt()`'s `SO_RCVBUF`: doubled, capped by
    /// `rmem_max`, at least `SOCK_MIN_RCVBUF`.
    pub fn set_rcvbuf(&self, bytes: usize) {
        let v = bytes.min(RMEM_MAX).saturating_mul(2).max(SOCK_MIN_RCVBUF);
        self.rcvq.lock().rcvbuf = v;
    }
}

impl SockView {
    /// Kernel: `ipv4_sk_update_pmtu()`. A "fragmentation needed" for this
    /// socket's datagram from `saddr` to `daddr` of `proto`: unless the
    /// socket's mode ignores path MTUs (`ip_sk_accept_pmtu()`: `interface`,
    /// `omit`), the route to `daddr` learns `mtu` with the socket's TOS,
    /// mark and bound device ([`Stack::update_pmtu`]); a socket with a
    /// cached route (a connected one) looks it up again at once, binding
    /// the new exception (`ip route show cache` lists it).
    pub(crate) fn update_pmtu(
        &self,
        stack: &crate::stack::Stack,
        (saddr, daddr): (Ipv4Addr, Ipv4Addr),
        proto: u8,
        mtu: u32,
    ) {
        if matches!(self.pmtudisc, PmtuDisc::Interface | PmtuDisc::Omit) {
            return;
        }
        let key = crate::route::FlowKey {
            saddr,
            tos: self.tos,
            mark: self.mark,
            oif: self.bound_dev,
            proto,
            ..crate::route::FlowKey::to(daddr)
        };
        stack.update_pmtu(&key, mtu);
        if self.peer.is_some() {
            let _ = stack.route_output_key(&key);
        }
    }
}

impl crate::socket::inet::InetSock {
    /// Kernel: `do_ip_getsockopt()`'s `IP_MTU`: the path MTU of the
    /// connected socket's route (with what the path taught it);
    /// `ENOTCONN` when the socket is not connected.
    pub fn ip_mtu(&mut self) -> Result<u32, crate::error::SendError> {
        let peer = self.peer.ok_or(crate::error::SendError::NotConnected)?;
        Ok(self.route(*peer.ip())?.mtu())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const P: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    #[test]
    fn score_prefers_connected_and_bound_sockets() {
        let mut v = SockView {
            local: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 53),
            ..SockView::default()
        };
        assert_eq!(v.score((P, 9), (A, 53), 2), Some(2));
        assert_eq!(v.score((P, 9), (A, 54), 2), None);
        v.local = SocketAddrV4::new(A, 53);
        assert_eq!(v.score((P, 9), (A, 53), 2), Some(6));
        assert_eq!(v.score((P, 9), (P, 53), 2), None);
        v.peer = Some(SocketAddrV4::new(P, 9));
        assert_eq!(v.score((P, 9), (A, 53), 2), Some(14));
        assert_eq!(v.score((P, 10), (A, 53), 2), None);
        v.bound_dev = 3;
        assert_eq!(v.score((P, 9), (A, 53), 2), None);
        assert_eq!(v.score((P, 9), (A, 53), 3), Some(18));
    }

    #[test]
    fn receive_buffer_refuses_once_exceeded_and_error_is_taken_once() {
        let ib = SockInbox::new(1, Arc::default());
        ib.set_rcvbuf(1);
        assert_eq!(ib.rcvbuf(), SOCK_MIN_RCVBUF);
        let d = Datagram {
            from: SocketAddrV4::new(P, 9),
            to: A,
            data: vec![1; 10],
        };
        assert!(ib.enqueue(d.clone(), 2000).is_ok());
        assert!(ib.enqueue(d.clone(), 2000).is_ok(), "2000 <= rcvbuf: taken");
        assert!(ib.enqueue(d.clone(), 2000).is_err(), "4000 > rcvbuf");
        assert_eq!(ib.dequeue(), Some(d.clone()));
        assert!(ib.enqueue(d, 2000).is_ok());
        ib.set_error(Errno::ECONNREFUSED);
        assert_eq!(ib.take_error(), Some(Errno::ECONNREFUSED));
        assert_eq!(ib.take_error(), None);
    }
}
