//! Policy routing rules (`ip rule`).
//!
//! Stands for `net/core/fib_rules.c` (`fib_rules_lookup()`,
//! `fib_rule_match()`) and `net/ipv4/fib_rules.c` (`fib4_rule_match()`,
//! `fib4_rule_action()`). Rules are kept in priority order; a lookup walks
//! them, and for each rule whose selectors match the flow takes its action:
//! consult a table (a table that has no match, or answers `throw`, passes
//! the flow on to the next rule), or fail with the action's errno. When no
//! rule answers, the lookup fails with `ENETUNREACH`.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{FlowKey, RouteError};

/// The TOS bits a lookup compares (`IPTOS_RT_MASK`): a socket's TOS 0x10,
/// 0x11 and 0x30 all match a `tos 0x10` rule; ECN bits and precedence are
/// ignored.
pub const RT_MASK: u8 = 0x1c;

/// The device index of `lo`: every locally generated flow comes from it
/// (`flowi4_iif = LOOPBACK_IFINDEX`), so `iif lo` matches output flows.
pub const LOOPBACK_IFINDEX: u32 = 1;

/// What a rule does when it matches (`FR_ACT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAction {
    /// `lookup N` / `table N` (`FR_ACT_TO_TBL`).
    Table(u32),
    /// `blackhole`: `EINVAL` (`FR_ACT_BLACKHOLE`).
    Blackhole,
    /// `unreachable`: `ENETUNREACH` (`FR_ACT_UNREACHABLE`).
    Unreachable,
    /// `prohibit`: `EACCES` (`FR_ACT_PROHIBIT`).
    Prohibit,
    /// `nop` (`FR_ACT_NOP`): matches, does nothing.
    Nop,
}

/// One policy rule (`struct fib4_rule`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FibRule {
    /// `priority N` (`pref`).
    pub priority: u32,
    /// `not`: the selectors' result is inverted (`FIB_RULE_INVERT`).
    pub invert: bool,
    /// `from PREFIX` (`None`: all).
    pub from: Option<Ipv4Net>,
    /// `to PREFIX` (`None`: all).
    pub to: Option<Ipv4Net>,
    /// `tos T` (0: any), DSCP bits.
    pub tos: u8,
    /// `fwmark M[/MASK]`: (mark, mask); mask 0 means none.
    pub fwmark: (u32, u32),
    /// `iif NAME`, with its index when the device exists.
    pub iif: Option<(String, u32)>,
    /// `oif NAME`, with its index when the device exists.
    pub oif: Option<(String, u32)>,
    /// `ipproto P` (0: any).
    pub ipproto: u8,
    /// `sport A[-B]`.
    pub sport: Option<(u16, u16)>,
    /// `dport A[-B]`.
    pub dport: Option<(u16, u16)>,
    /// The action.
    pub action: RuleAction,
    /// `proto` of the rule (`kernel` for the three default rules).
    pub kernel: bool,
}

impl FibRule {
    /// A rule at `priority` that sends every flow to `table`.
    pub fn lookup(priority: u32, table: u32) -> FibRule {
        FibRule {
            priority,
            invert: false,
            from: None,
            to: None,
            tos: 0,
            fwmark: (0, 0),
            iif: None,
            oif: None,
            ipproto: 0,
            sport: None,
            dport: None,
            action: RuleAction::Table(table),
            kernel: false,
        }
    }

    /// Kernel: `fib_rule_match()` and `fib4_rule_match()`. True when the
    /// flow matches every selector (inverted under `not`). An `iif`/`oif`
    /// naming a device that does not exist matches nothing.
    #[inline]
    pub fn matches(&self, k: &FlowKey) -> bool {
        self.selectors(k) != self.invert
    }

    fn selectors(&self, k: &FlowKey) -> bool {
        let dev_ok =
            |d: &Option<(String, u32)>, idx: u32| d.as_ref().is_none_or(|(_, i)| *i == idx);
        let in_net = |n: &Option<Ipv4Net>, a: Ipv4Addr| n.is_none_or(|n| n.contains(&a));
        let in_range =
            |r: Option<(u16, u16)>, p: u16| r.is_none_or(|(lo, hi)| (lo..=hi).contains(&p));
        dev_ok(&self.iif, LOOPBACK_IFINDEX)
            && dev_ok(&self.oif, k.oif)
            && (self.fwmark.0 ^ k.mark) & self.fwmark.1 == 0
            && in_net(&self.from, k.saddr)
            && in_net(&self.to, k.daddr)
            && (self.tos == 0 || self.tos == k.tos & RT_MASK)
            && (self.ipproto == 0 || self.ipproto == k.proto)
            && in_range(self.sport, k.sport)
            && in_range(self.dport, k.dport)
    }

    /// Kernel: `fib4_rule_action()` for the actions other than a table.
    pub fn action_error(&self, daddr: Ipv4Addr) -> Option<RouteError> {
        match self.action {
            RuleAction::Table(_) | RuleAction::Nop => None,
            RuleAction::Unreachable => Some(RouteError::NetUnreachable(daddr)),
            RuleAction::Prohibit => Some(RouteError::Prohibited(daddr)),
            RuleAction::Blackhole => Some(RouteError::Blackhole(daddr)),
        }
    }
}

/// A table's name as ip(8) prints it (`rtnl_rttable_n2a`).
pub fn table_name(id: u32) -> String {
    match id {
        255 => "local".into(),
        254 => "main".into(),
        253 => "default".into(),
        n => n.to_string(),
    }
}

/// The table id of an ip(8) table word: a name or a number.
pub fn table_id(s: &str) -> Option<u32> {
    match s {
        "local" => Some(255),
        "main" => Some(254),
        "default" => Some(253),
        _ => {
            let v = if let Some(h) = s.strip_prefix("0x") {
                u32::from_str_radix(h, 16).ok()?
            } else {
                s.parse().ok()?
            };
            (v != 0).then_some(v)
        }
    }
}

fn prefix_word(n: &Ipv4Net) -> String {
    if n.prefix_len() == 32 {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}

impl fmt::Display for FibRule {
    /// As `ip rule show` prints it: `PRIO:\tSELECTORS ACTION`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:\t", self.priority)?;
        if self.invert {
            write!(f, "not ")?;
        }
        match &self.from {
            Some(n) => write!(f, "from {}", prefix_word(n))?,
            None => write!(f, "from all")?,
        }
        if let Some(n) = &self.to {
            write!(f, " to {}", prefix_word(n))?;
        }
        if self.tos != 0 {
            write!(f, " tos 0x{:02x}", self.tos)?;
        }
        match self.fwmark {
            (0, 0) => {}
            (m, 0xffff_ffff) => write!(f, " fwmark 0x{m:x}")?,
            (m, mask) => write!(f, " fwmark 0x{m:x}/0x{mask:x}")?,
        }
        if let Some((n, _)) = &self.iif {
            write!(f, " iif {n}")?;
        }
        if let Some((n, _)) = &self.oif {
            write!(f, " oif {n}")?;
        }
        if self.ipproto != 0 {
            write!(f, " ipproto {}", proto_name(self.ipproto))?;
        }
        write_range(f, "sport", self.sport)?;
        write_range(f, "dport", self.dport)?;
        match self.action {
            RuleAction::Table(t) => write!(f, " lookup {}", table_name(t)),
            RuleAction::Blackhole => write!(f, " blackhole"),
            RuleAction::Unreachable => write!(f, " unreachable"),
            RuleAction::Prohibit => write!(f, " prohibit"),
            RuleAction::Nop => write!(f, " nop"),
        }
    }
}

fn write_range(f: &mut fmt::Formatter<'_>, what: &str, r: Option<(u16, u16)>) -> fmt::Result {
    match r {
        Some((a, b)) if a == b => write!(f, " {what} {a}"),
        Some((a, b)) => write!(f, " {what} {a}-{b}"),
        None => Ok(()),
    }
}

/// The name ip(8) prints for an IP protocol number.
pub fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        n => format!("ipproto-{n}"),
    }
}

/// The kernel's three rules of a new namespace: `0 lookup local`,
/// `32766 lookup main`, `32767 lookup default`.
pub fn default_rules() -> Vec<FibRule> {
    [(0, 255), (32766, 254), (32767, 253)]
        .into_iter()
        .map(|(p, t)| FibRule {
            kernel: true,
            ..FibRule::lookup(p, t)
        })
        .collect()
}
