//! Offloads: what a device may do for the stack, and doing it in software
//! when it cannot.
//!
//! Stands for the device feature flags (`netdev_features_t`,
//! `include/linux/netdev_features.h`), the checksum helpers
//! `skb_checksum`/`skb_checksum_help` (`net/core/skbuff.c`, `net/core/dev.c`),
//! UDP segmentation `__udp_gso_segment` and UDP fragmentation
//! `udp4_ufo_fragment` (`net/ipv4/udp_offload.c`, reached through
//! `skb_gso_segment`). It sits below the device layer, which calls it from
//! `validate_xmit_skb`, and imports nothing from the layers above it but the
//! fragment planner ([`crate::ipv4::fragment`], itself built on `buf` and
//! `wire` only), so that a UFO datagram cut in software is cut as
//! `ip_fragment` cuts one.

use std::fmt;

pub mod csum;
pub mod gso;
pub mod ufo;

pub use csum::{checksum_from, checksum_help, checksum_linear_from};

/// Device feature flags (the kernel's `NETIF_F_*` that matter on transmit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Features(u32);

impl Features {
    /// No offloads.
    pub const NONE: Features = Features(0);
    /// `NETIF_F_SG`: scatter-gather (paged fragments).
    pub const SG: Features = Features(1 << 0);
    /// `NETIF_F_IP_CSUM`: checksum offload for TCP/UDP over IPv4.
    pub const IP_CSUM: Features = Features(1 << 1);
    /// `NETIF_F_HW_CSUM`: checksum offload for any protocol.
    pub const HW_CSUM: Features = Features(1 << 2);
    /// `NETIF_F_GSO_UDP_L4`: UDP segmentation offload.
    pub const GSO_UDP_L4: Features = Features(1 << 3);
    /// `NETIF_F_FRAGLIST`: the device takes chained buffers.
    pub const FRAGLIST: Features = Features(1 << 4);
    /// `NETIF_F_LLTX`/`NETIF_F_HIGHDMA`-free marker: the device copies data at once
    /// (so zero-copy completion may be reported at transmit).
    pub const COPY_AT_XMIT: Features = Features(1 << 5);
    /// `NETIF_F_UFO`: UDP fragmentation offload — the device takes a UDP
    /// datagram over its MTU whole (`SKB_GSO_UDP`) and sends it as IP
    /// fragments of `gso_size` data bytes each. Removed from the kernel's
    /// own devices in 4.14, but a TAP still takes such a datagram from its
    /// writer (`VIRTIO_NET_HDR_GSO_UDP`, see [`ufo`]).
    pub const UFO: Features = Features(1 << 6);

    /// Names, as `ethtool -k` abbreviations used in scripts (`sg,csum,gso`).
    pub const NAMES: &'static [(&'static str, Features)] = &[
        ("sg", Features::SG),
        ("csum", Features::HW_CSUM),
        ("ipcsum", Features::IP_CSUM),
        ("gso", Features::GSO_UDP_L4),
        ("fraglist", Features::FRAGLIST),
        ("ufo", Features::UFO),
    ];

    /// True when every flag of `other` is set.
    #[inline]
    pub const fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when some flag of `other` is set.
    #[inline]
    pub const fn intersects(self, other: Features) -> bool {
        self.0 & other.0 != 0
    }

    /// Union.
    pub const fn union(self, other: Features) -> Features {
        Features(self.0 | other.0)
    }

    /// `self` without the flags of `other`.
    pub const fn without(self, other: Features) -> Features {
        Features(self.0 & !other.0)
    }

    /// Raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// The flags of raw bits `b` (as [`Features::bits`] gives them).
    pub const fn from_bits(b: u32) -> Features {
        Features(b)
    }

    /// Either checksum offload flag: `NETIF_F_HW_CSUM | NETIF_F_IP_CSUM`.
    pub const fn can_csum(self) -> bool {
        self.intersects(Features(Self::HW_CSUM.0 | Self::IP_CSUM.0))
    }
}

impl std::ops::BitOr for Features {
    type Output = Features;
    fn bitor(self, rhs: Features) -> Features {
        self.union(rhs)
    }
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Features::NAMES
            .iter()
            .filter(|(_, v)| self.contains(*v))
            .map(|(n, _)| *n)
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}
