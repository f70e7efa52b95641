//! The key of an output route lookup.
//!
//! Stands for the kernel's `struct flowi4` (include/net/flow.h) as
//! `ip_route_output_flow()` and the FIB rules (`fib4_rule_match()`) read it:
//! destination and source, TOS, the socket's mark and bound device, and the
//! transport protocol and ports.

use std::net::Ipv4Addr;

/// What an output route lookup matches on (`struct flowi4`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Destination address (`daddr`).
    pub daddr: Ipv4Addr,
    /// Source address, `0.0.0.0` when the route is to choose it (`saddr`).
    pub saddr: Ipv4Addr,
    /// TOS byte as the socket set it (`flowi4_tos`; the lookup uses its
    /// DSCP bits, `IPTOS_RT_MASK`).
    pub tos: u8,
    /// The socket's `SO_MARK` (`flowi4_mark`).
    pub mark: u32,
    /// Output device index, 0 for any (`flowi4_oif`: `SO_BINDTODEVICE`,
    /// `IP_MULTICAST_IF`, `ip route get ... oif`).
    pub oif: u32,
    /// Transport protocol (`flowi4_proto`).
    pub proto: u8,
    /// Source port (`fl4_sport`), 0 when none.
    pub sport: u16,
    /// Destination port (`fl4_dport`), 0 when none.
    pub dport: u16,
}

impl FlowKey {
    /// A key for `daddr` with every other field unset.
    pub fn to(daddr: Ipv4Addr) -> FlowKey {
        FlowKey {
            daddr,
            saddr: Ipv4Addr::UNSPECIFIED,
            tos: 0,
            mark: 0,
            oif: 0,
            proto: 0,
            sport: 0,
            dport: 0,
        }
    }
}
