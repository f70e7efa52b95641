//! Errors of the socket-facing API, each carrying the errno the kernel returns.
//!
//! Stands for the negative return values of `udp_sendmsg`, `raw_sendmsg`,
//! `ip_append_data`, `ip_send_skb` and friends (`include/uapi/asm-generic/errno*.h`).

use std::fmt;
use std::net::Ipv4Addr;

/// A Linux errno value with its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Errno {
    /// No error (`ee_errno` of a zero-copy completion).
    ZERO = 0,
    EPERM = 1,
    ESRCH = 3,
    EEXIST = 17,
    EACCES = 13,
    EFAULT = 14,
    EINTR = 4,
    EAGAIN = 11,
    ENOMEM = 12,
    EINVAL = 22,
    EMSGSIZE = 90,
    EDESTADDRREQ = 89,
    ENOPROTOOPT = 92,
    EOPNOTSUPP = 95,
    EADDRINUSE = 98,
    EADDRNOTAVAIL = 99,
    ENETDOWN = 100,
    ENETUNREACH = 101,
    ENOBUFS = 105,
    EISCONN = 106,
    ENOTCONN = 107,
    EHOSTUNREACH = 113,
    ENODEV = 19,
    ENONET = 64,
    EPROTO = 71,
    ECONNREFUSED = 111,
    EHOSTDOWN = 112,
}

impl Errno {
    /// The symbolic name (`EMSGSIZE`).
    pub fn name(self) -> &'static str {
        use Errno::*;
        match self {
            ZERO => "0",
            EPERM => "EPERM",
            ESRCH => "ESRCH",
            EEXIST => "EEXIST",
            EACCES => "EACCES",
            EFAULT => "EFAULT",
            EINTR => "EINTR",
            EAGAIN => "EAGAIN",
            ENOMEM => "ENOMEM",
            EINVAL => "EINVAL",
            EMSGSIZE => "EMSGSIZE",
            EDESTADDRREQ => "EDESTADDRREQ",
            ENOPROTOOPT => "ENOPROTOOPT",
            EOPNOTSUPP => "EOPNOTSUPP",
            EADDRINUSE => "EADDRINUSE",
            EADDRNOTAVAIL => "EADDRNOTAVAIL",
            ENETDOWN => "ENETDOWN",
            ENETUNREACH => "ENETUNREACH",
            ENOBUFS => "ENOBUFS",
            EISCONN => "EISCONN",
            ENOTCONN => "ENOTCONN",
            EHOSTUNREACH => "EHOSTUNREACH",
            ENODEV => "ENODEV",
            ENONET => "ENONET",
            EPROTO => "EPROTO",
            ECONNREFUSED => "ECONNREFUSED",
            EHOSTDOWN => "EHOSTDOWN",
        }
    }

    /// The number.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The errno whose number is `code`, when this type names it.
    pub fn from_code(code: i32) -> Option<Errno> {
        use Errno::*;
        const ALL: [Errno; 27] = [
            ZERO,
            ESRCH,
            EEXIST,
            EPERM,
            EACCES,
            EFAULT,
            EINTR,
            EAGAIN,
            ENOMEM,
            EINVAL,
            EMSGSIZE,
            EDESTADDRREQ,
            ENOPROTOOPT,
            EOPNOTSUPP,
            EADDRINUSE,
            EADDRNOTAVAIL,
            ENETDOWN,
            ENETUNREACH,
            ENOBUFS,
            EISCONN,
            ENOTCONN,
            EHOSTUNREACH,
            ENODEV,
            ENONET,
            EPROTO,
            ECONNREFUSED,
            EHOSTDOWN,
        ];
        ALL.into_iter().find(|e| e.code() == code)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a send failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Message too long for the path (`EMSGSIZE`); `mtu` is what the error queue
    /// reports (`ee_info`: the MTU less the option length).
    #[error("EMSGSIZE: message too long (mtu {mtu})")]
    MsgSize {
        /// The MTU the datagram exceeded.
        mtu: u32,
    },
    /// The datagram would exceed IPv4's 65,535 bytes (`EMSGSIZE`); `max` is
    /// the most payload this send could have carried (65,507 for a UDP
    /// datagram without options).
    #[error("EMSGSIZE: message too long: at most {max} bytes of payload fit an IPv4 datagram")]
    TooLong {
        /// The largest payload that fits.
        max: usize,
    },
    /// No route (`ENETUNREACH`).
    #[error("ENETUNREACH: network is unreachable (no route to {0})")]
    NetUnreachable(Ipv4Addr),
    /// No neighbour could be used (`EHOSTUNREACH`).
    #[error("EHOSTUNREACH: no route to host {0}")]
    HostUnreachable(Ipv4Addr),
    /// The route lookup failed other than with `ENETUNREACH`: an
    /// unreachable, prohibit or blackhole route or rule, a bad flow, a
    /// missing device (the route error's errno).
    #[error("{errno}: {0}", errno = .0.errno())]
    Route(crate::route::RouteError),
    /// A blocking send that nothing can ever unblock: the send buffer is
    /// full and for a second no frame was freed, no deferred work ran and
    /// no timer is ahead on a running clock (a wire nobody drains). The
    /// kernel would sleep for ever; this says so (`EAGAIN`).
    #[error("EAGAIN: send would block for ever (send buffer full, nothing frees it)")]
    Stalled,
    /// Send budget exhausted with `MSG_DONTWAIT` (`EAGAIN`).
    #[error("EAGAIN: resource temporarily unavailable (send buffer full)")]
    Again,
    /// No buffer space (`ENOBUFS`): memory or a queue dropped the packet.
    #[error("ENOBUFS: no buffer space available")]
    NoBufs,
    /// A filter hook dropped the packet (`EPERM`).
    #[error("EPERM: operation not permitted (dropped by filter)")]
    Perm,
    /// A broadcast destination without `SO_BROADCAST` (`EACCES`).
    #[error("EACCES: permission denied (broadcast to {0} without SO_BROADCAST)")]
    Access(Ipv4Addr),
    /// Device down (`ENETDOWN`).
    #[error("ENETDOWN: network is down")]
    NetDown,
    /// Invalid argument (`EINVAL`), with what was wrong.
    #[error("EINVAL: {0}")]
    Inval(&'static str),
    /// The data could not be read as needed (`EFAULT`), e.g. a raw ICMP send
    /// shorter than the type and code the route lookup reads.
    #[error("EFAULT: {0}")]
    Fault(&'static str),
    /// No destination on an unconnected socket (`EDESTADDRREQ`).
    #[error("EDESTADDRREQ: destination address required")]
    DestAddrRequired,
    /// The port is bound by another socket (`EADDRINUSE`).
    #[error("EADDRINUSE: address already in use (port {0})")]
    AddrInUse(u16),
    /// Address not usable as source (`EADDRNOTAVAIL`).
    #[error("EADDRNOTAVAIL: cannot assign requested address {0}")]
    AddrNotAvail(Ipv4Addr),
    /// Operation not supported in this state (`EOPNOTSUPP`).
    #[error("EOPNOTSUPP: {0}")]
    NotSupported(&'static str),
    /// Option not known (`ENOPROTOOPT`).
    #[error("ENOPROTOOPT: {0}")]
    NoProtoOpt(&'static str),
    /// A pending socket error (`sk->sk_err`, set by an ICMP error the
    /// socket received), reported and cleared by this call (`sock_error()`).
    #[error("{0}: pending socket error")]
    SockErr(Errno),
    /// The call needs a connected socket (`ENOTCONN`), e.g. `IP_MTU`.
    #[error("ENOTCONN: socket is not connected")]
    NotConnected,
}

impl SendError {
    /// A failed route lookup as a send's error.
    pub fn from_route(e: &crate::route::RouteError) -> SendError {
        match e {
            crate::route::RouteError::NetUnreachable(a) => SendError::NetUnreachable(*a),
            e => SendError::Route(e.clone()),
        }
    }

    /// The errno the kernel would return.
    pub fn errno(&self) -> Errno {
        match self {
            SendError::MsgSize { .. } | SendError::TooLong { .. } => Errno::EMSGSIZE,
            SendError::NetUnreachable(_) => Errno::ENETUNREACH,
            SendError::HostUnreachable(_) => Errno::EHOSTUNREACH,
            SendError::Route(e) => e.errno(),
            SendError::Again | SendError::Stalled => Errno::EAGAIN,
            SendError::NoBufs => Errno::ENOBUFS,
            SendError::Perm => Errno::EPERM,
            SendError::NetDown => Errno::ENETDOWN,
            SendError::Access(_) => Errno::EACCES,
            SendError::Inval(_) => Errno::EINVAL,
            SendError::Fault(_) => Errno::EFAULT,
            SendError::DestAddrRequired => Errno::EDESTADDRREQ,
            SendError::AddrNotAvail(_) => Errno::EADDRNOTAVAIL,
            SendError::AddrInUse(_) => Errno::EADDRINUSE,
            SendError::NotSupported(_) => Errno::EOPNOTSUPP,
            SendError::NoProtoOpt(_) => Errno::ENOPROTOOPT,
            SendError::SockErr(e) => *e,
            SendError::NotConnected => Errno::ENOTCONN,
        }
    }
}
