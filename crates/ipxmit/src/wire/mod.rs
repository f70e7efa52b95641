//! Wire formats: the bytes ipxmit reads and writes, and the Internet checksum.
//!
//! This module stands in for the kernel's header structures in
//! `include/uapi/linux/if_ether.h` (`struct ethhdr`), `include/uapi/linux/if_arp.h`
//! (`struct arphdr`), `include/uapi/linux/ip.h` (`struct iphdr`, the `IPOPT_*`
//! option numbers) and `include/uapi/linux/udp.h` (`struct udphdr`), and for the
//! checksum helpers of `include/net/checksum.h` and `lib/checksum.c`
//! (`csum_partial`, `csum_block_add`, `csum_fold`, `csum_tcpudp_magic`, ...).
//!
//! Every format comes in two layers:
//!
//! * a *view* over a byte buffer (`EthernetFrame<T>`, `ArpPacket<T>`,
//!   `Ipv4Packet<T>`, `UdpPacket<T>`) with a getter for each field and, when the
//!   buffer is writable (`T: AsMut<[u8]>`), a setter. Views do no validation
//!   beyond what is needed to find the fields; they are what the hot path uses
//!   to write headers in place into headroom;
//! * a *representation* (`EthernetRepr`, `ArpRepr`, `Ipv4Repr`, `UdpRepr`): the
//!   meaningful fields as plain Rust values, built from a view by `parse` (which
//!   validates everything: version, lengths, checksum, options) and written into
//!   one by `emit`.
//!
//! # Length and panic contract
//!
//! * `View::new_unchecked(buf)` wraps any buffer. Its accessors index the buffer
//!   directly and **panic** if it is too short for the field they touch
//!   (for variable-length parts, as the length fields inside the buffer say).
//! * `View::check_len()` returns `Err` unless every accessor is safe to call;
//!   `View::new_checked(buf)` is `new_unchecked` followed by `check_len`. Neither
//!   ever panics, whatever the bytes are.
//! * `Repr::parse` calls `check_len` itself, so it never panics on malformed
//!   input either: every problem is an [`Error`].
//! * `Repr::emit` and the setters panic only when the buffer is shorter than the
//!   representation's `buffer_len()` / `header_len()`, which the caller sized.
//!
//! All multi-byte fields are big-endian on the wire; getters and setters take and
//! return host-order values. Checksums returned as `u16` are host-order numbers
//! whose big-endian bytes (`to_be_bytes`) are what goes on the wire.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod ipv4_options;
pub mod udp;

pub use self::arp::{ArpOperation, ArpPacket, ArpRepr};
pub use self::checksum::{checksum, pseudo_header_v4, verify, Csum};
pub use self::ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr};
pub use self::icmp::IcmpPacket;
pub use self::ipv4::{emit_header, ChecksumCheck, IpProtocol, Ipv4Packet, Ipv4Repr};
pub use self::ipv4_options::{
    option_copied, options_fragment, Ipv4Option, Ipv4OptionsIter, OptionProblem,
};
pub use self::udp::{udp_checksum, udp_checksum_with_payload_sum, UdpChecksum, UdpPacket, UdpRepr};

/// Why bytes could not be parsed as a wire format.
///
/// Returned by `check_len`, `new_checked` and `parse`; never by a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer ends before the header, or before the length its own
    /// length fields announce (the kernel's `IPSTATS_MIB_INTRUNCATEDPKTS`).
    #[error("buffer truncated")]
    Truncated,
    /// The IP version nibble is not 4.
    #[error("IP version {0}, expected 4")]
    BadVersion(u8),
    /// The IPv4 IHL is below 5 (a header shorter than 20 bytes).
    #[error("IPv4 header length below 20 bytes")]
    BadHeaderLength,
    /// The IPv4 total length is smaller than the header length.
    #[error("IPv4 total length smaller than its header")]
    BadTotalLength,
    /// A length field other than IPv4's is inconsistent (e.g. UDP length < 8).
    #[error("length field inconsistent")]
    BadLength,
    /// The checksum does not verify.
    #[error("checksum mismatch")]
    BadChecksum,
    /// An IPv4 option is malformed.
    #[error("malformed IPv4 option {kind} at offset {offset}: {problem}")]
    MalformedOption {
        /// The option's type byte.
        kind: u8,
        /// Offset of the option within the options area.
        offset: usize,
        /// What is wrong with it.
        problem: OptionProblem,
    },
    /// A well-formed packet of a kind this module does not handle
    /// (e.g. ARP for a hardware type other than Ethernet).
    #[error("unsupported packet format")]
    Unsupported,
    /// A textual address could not be parsed.
    #[error("malformed address")]
    BadAddress,
}

/// Result type of this module.
pub type Result<T> = core::result::Result<T, Error>;

/// Read a big-endian `u16` at `at`. Panics if out of bounds.
#[inline]
pub(crate) fn get_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// Write a big-endian `u16` at `at`. Panics if out of bounds.
#[inline]
pub(crate) fn put_u16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}
