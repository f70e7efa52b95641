//! ICMP errors for raw sockets.
//!
//! Stands for `raw_icmp_error()` and `raw_err()` (net/ipv4/raw.c): every
//! raw socket of the quoted datagram's protocol that the datagram could
//! have come from (`raw_v4_match()`) learns of the error, before the
//! protocol's own handler runs (`icmp_socket_deliver()`).

use crate::error::Errno;
use crate::ipv4::icmp::{err_convert, IcmpError};
use crate::ipv4::PmtuDisc;
use crate::socket::inbox::SockInbox;
use crate::socket::{ErrOrigin, ErrQueueEntry};
use crate::stack::Stack;
use crate::wire::icmp as wicmp;

/// Kernel: `raw_icmp_error()`, net/ipv4/raw.c: `raw_err` for each raw
/// socket that matches the quoted datagram.
pub fn icmp_error(stack: &Stack, e: &IcmpError<'_>) {
    let q = &e.quoted;
    let addrs = (q.dst_addr(), q.src_addr());
    for sk in stack.raw_lookup(q.protocol().0, addrs, e.dif) {
        raw_err(stack, &sk, e);
    }
}

/// Kernel: `raw_err()`, net/ipv4/raw.c. A "fragmentation needed" teaches
/// the path MTU (unless the socket's mode ignores it); then, for a socket
/// with `IP_RECVERR` or a connected one: "fragmentation needed" is
/// `EMSGSIZE` (hard unless `IP_PMTUDISC_DONT`), other unreachable codes
/// as `icmp_err_convert`, a code beyond 15 `EHOSTUNREACH`, a parameter
/// problem `EPROTO` (hard), time exceeded and the rest `EHOSTUNREACH`; a
/// source quench nothing. With `IP_RECVERR` the error is queued (port 0),
/// and it becomes the pending error when `IP_RECVERR` is on or it is hard.
fn raw_err(stack: &Stack, sk: &SockInbox, e: &IcmpError<'_>) {
    let v = sk.view();
    let frag_needed = e.icmp_type == wicmp::DEST_UNREACH && e.code == wicmp::FRAG_NEEDED;
    if frag_needed {
        let q = &e.quoted;
        v.update_pmtu(stack, (q.src_addr(), q.dst_addr()), v.protocol, e.info);
    }
    if !v.recverr && v.peer.is_none() {
        return;
    }
    let (errno, hard) = if frag_needed {
        (Errno::EMSGSIZE, v.pmtudisc != PmtuDisc::Dont)
    } else if e.icmp_type == wicmp::DEST_UNREACH && e.code > wicmp::NR_ICMP_UNREACH {
        (Errno::EHOSTUNREACH, false)
    } else {
        match err_convert(e.icmp_type, e.code) {
            Some(x) => x,
            None => return,
        }
    };
    if v.recverr {
        sk.queue_err(ErrQueueEntry {
            errno,
            origin: ErrOrigin::Icmp,
            ee_type: e.icmp_type,
            ee_code: e.code,
            info: e.info,
            data: 0,
            addr: e.quoted.dst_addr(),
            port: 0,
            offender: e.from,
        });
    }
    if v.recverr || hard {
        sk.set_error(errno);
    }
}
