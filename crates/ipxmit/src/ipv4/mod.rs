//! IPv4: output, from a built datagram to the device layer, and input,
//! from a received frame to local delivery.
//!
//! Receiving: [`input`] (`ip_rcv`, the input route of a host that does not
//! forward, `net/ipv4/ip_input.c`) and [`icmp`] (`icmp_rcv`,
//! `icmp_unreach`, `icmp_send`, `net/ipv4/icmp.c`).
//!
//! Sending stands for `net/ipv4/ip_output.c` below `ip_append_data`: [`output`]
//! (`ip_send_skb`, `ip_local_out`, `ip_output`, `ip_finish_output`,
//! `ip_finish_output2`, `ip_queue_xmit`), [`fragment`] (`ip_fragment`,
//! `ip_do_fragment`), [`options`] (`ip_options_compile`, `ip_options_build`,
//! `net/ipv4/ip_options.c`), [`ident`] (`ip_select_ident`,
//! `net/ipv4/route.c`) and the path-MTU discovery modes ([`PmtuDisc`],
//! `include/net/ip.h`).

pub mod fragment;
pub mod icmp;
pub mod icmp_rate;
pub mod ident;
pub mod input;
pub mod options;
pub mod output;

pub use fragment::{FragError, Fragmenter};
pub use output::{local_out, send_skb, OutputError};

/// `IP_MTU_DISCOVER` modes (`IP_PMTUDISC_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PmtuDisc {
    /// Never set DF; fragment locally.
    Dont = 0,
    /// Set DF when the datagram fits the path MTU, fragment otherwise (default).
    #[default]
    Want = 1,
    /// Always set DF; larger sends fail with `EMSGSIZE`.
    Do = 2,
    /// Set DF, use the device MTU, ignore learned path MTU.
    Probe = 3,
    /// Use the device MTU; ignore path MTU updates; fragment locally.
    Interface = 4,
    /// Like Interface, but DF is never set and fragmentation is local.
    Omit = 5,
}

impl PmtuDisc {
    /// `ip_sk_use_pmtu`: the path MTU (rather than the device's) is used.
    pub fn use_pmtu(self) -> bool {
        self < PmtuDisc::Probe
    }

    /// Kernel: `ip_dont_fragment()` for an unlocked route MTU: the
    /// datagram goes with DF set.
    pub fn dont_fragment(self) -> bool {
        matches!(self, PmtuDisc::Do | PmtuDisc::Want)
    }

    /// Kernel: `ip_dont_fragment()`: DF under `IP_PMTUDISC_DO`, and under
    /// `WANT` unless the route's MTU is locked (`mtu lock`).
    #[inline]
    pub fn dont_fragment_on(self, dst: &crate::route::Dst) -> bool {
        self == PmtuDisc::Do || (self == PmtuDisc::Want && !dst.mtu_locked)
    }

    /// `ip_sk_ignore_df`: the stack may fragment locally even with DF set.
    pub fn ignore_df(self) -> bool {
        self < PmtuDisc::Do || self == PmtuDisc::Omit
    }

    /// The name used in scripts (`dont`, `want`, ...).
    pub fn name(self) -> &'static str {
        match self {
            PmtuDisc::Dont => "dont",
            PmtuDisc::Want => "want",
            PmtuDisc::Do => "do",
            PmtuDisc::Probe => "probe",
            PmtuDisc::Interface => "interface",
            PmtuDisc::Omit => "omit",
        }
    }
}

impl std::str::FromStr for PmtuDisc {
    type Err = String;
    fn from_str(s: &str) -> Result<PmtuDisc, String> {
        Ok(match s {
            "dont" | "0" => PmtuDisc::Dont,
            "want" | "1" => PmtuDisc::Want,
            "do" | "2" => PmtuDisc::Do,
            "probe" | "3" => PmtuDisc::Probe,
            "interface" | "4" => PmtuDisc::Interface,
            "omit" | "5" => PmtuDisc::Omit,
            _ => {
                return Err(format!(
                    "invalid ip_mtu_discover mode {s:?} (dont|want|do|probe|interface|omit)"
                ))
            }
        })
    }
}
