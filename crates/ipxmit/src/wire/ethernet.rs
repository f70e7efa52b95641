//! Ethernet II frames.
//!
//! Kernel: `struct ethhdr`, include/uapi/linux/if_ether.h.
//!
//! ```text
//!  0                   6                  12      14
//! +-------------------+-------------------+-------+----------
//! | destination (6)   | source (6)        | type  | payload
//! +-------------------+-------------------+-------+----------
//! ```

use core::fmt;
use core::str::FromStr;
use std::net::Ipv4Addr;

use super::{get_u16, put_u16, Error, Result};

/// A 48-bit Ethernet (MAC) address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// The address held in the first six bytes of `bytes`.
    ///
    /// # Panics
    ///
    /// If `bytes` is shorter than six bytes.
    pub fn from_bytes(bytes: &[u8]) -> EthernetAddress {
        let mut a = [0u8; 6];
        a.copy_from_slice(&bytes[..6]);
        EthernetAddress(a)
    }

    /// The six address bytes.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// Whether this is the all-ones broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Whether the group bit (least significant bit of the first byte) is set;
    /// broadcast is multicast too.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this is an individual (unicast) address.
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// Whether the locally administered bit is set.
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// The multicast MAC an IPv4 multicast group maps to: `01:00:5e` followed by
    /// the low 23 bits of the group address.
    ///
    /// Kernel: `ip_eth_mc_map()`, include/net/ip.h.
    pub const fn from_ipv4_multicast(group: Ipv4Addr) -> EthernetAddress {
        let o = group.octets();
        EthernetAddress([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for EthernetAddress {
    type Err = Error;

    /// Parses six colon-separated groups of one or two hex digits
    /// (`02:00:00:00:00:01`, case-insensitive).
    fn from_str(s: &str) -> Result<EthernetAddress> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or(Error::BadAddress)?;
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(Error::BadAddress);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| Error::BadAddress)?;
        }
        if parts.next().is_some() {
            return Err(Error::BadAddress);
        }
        Ok(EthernetAddress(out))
    }
}

impl From<[u8; 6]> for EthernetAddress {
    fn from(bytes: [u8; 6]) -> Self {
        EthernetAddress(bytes)
    }
}

/// The EtherType field: what the payload of a frame is.
///
/// Kernel: the `ETH_P_*` constants, include/uapi/linux/if_ether.h.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EtherType {
    /// `ETH_P_IP`, 0x0800.
    Ipv4,
    /// `ETH_P_ARP`, 0x0806.
    Arp,
    /// `ETH_P_IPV6`, 0x86dd.
    Ipv6,
    /// Any other value.
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        match v {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x86dd => EtherType::Ipv6,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(t: EtherType) -> u16 {
        match t {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Unknown(other) => other,
        }
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtherType::Ipv4 => f.write_str("IPv4"),
            EtherType::Arp => f.write_str("ARP"),
            EtherType::Ipv6 => f.write_str("IPv6"),
            EtherType::Unknown(v) => write!(f, "0x{v:04x}"),
        }
    }
}

mod field {
    use core::ops::{Range, RangeFrom};

    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: RangeFrom<usize> = 14..;
}

/// Length of the Ethernet II header (`ETH_HLEN`).
pub const HEADER_LEN: usize = 14;

/// A view of an Ethernet II frame in a byte buffer.
///
/// See the [module contract](super) on lengths and panics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` without checking its length.
    pub const fn new_unchecked(buffer: T) -> EthernetFrame<T> {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer`, failing if it is shorter than the header.
    pub fn new_checked(buffer: T) -> Result<EthernetFrame<T>> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// `Err(Truncated)` if the buffer cannot hold the 14-byte header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The destination address.
    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::DESTINATION])
    }

    /// The source address.
    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SOURCE])
    }

    /// The EtherType.
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(get_u16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// Everything after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        put_u16(self.buffer.as_mut(), field::ETHERTYPE, ethertype.into());
    }

    /// Everything after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// The fields of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Source MAC.
    pub src_addr: EthernetAddress,
    /// Destination MAC.
    pub dst_addr: EthernetAddress,
    /// What the payload is.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Length of the header this emits (14).
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Reads the header of `frame`.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes: 14.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into `frame` (the payload is left alone).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
    }

    /// The header as bytes, e.g. for a cached hardware header
    /// (the kernel's `hh_cache`).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        self.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // dst 02:00:00:00:00:02, src 02:00:00:00:00:01, ARP, 4 payload bytes.
    const FRAME: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0xaa,
        0xbb, 0xcc, 0xdd,
    ];

    fn mac(last: u8) -> EthernetAddress {
        EthernetAddress([0x02, 0, 0, 0, 0, last])
    }

    #[test]
    fn address_display_and_parse() {
        let a = EthernetAddress([0x02, 0x00, 0x00, 0xab, 0xcd, 0x01]);
        assert_eq!(a.to_string(), "02:00:00:ab:cd:01");
        assert_eq!(format!("{a:?}"), "02:00:00:ab:cd:01");
        assert_eq!("02:00:00:AB:cd:1".parse::<EthernetAddress>(), Ok(a));
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "02:00:00:00:00:g1",
            "02::00:00:00:01",
            "002:00:00:00:00:01",
            "+2:00:00:00:00:01",
        ] {
            assert_eq!(
                bad.parse::<EthernetAddress>(),
                Err(Error::BadAddress),
                "{bad}"
            );
        }
    }

    #[test]
    fn address_classes() {
        assert!(EthernetAddress::BROADCAST.is_broadcast());
        assert!(EthernetAddress::BROADCAST.is_multicast());
        assert!(!mac(1).is_multicast());
        assert!(mac(1).is_unicast());
        assert!(mac(1).is_local());
        let m = EthernetAddress::from_ipv4_multicast(Ipv4Addr::new(239, 129, 2, 3));
        assert_eq!(m.to_string(), "01:00:5e:01:02:03");
        assert!(m.is_multicast() && !m.is_broadcast());
    }

    #[test]
    fn ethertype_roundtrip() {
        for v in [0x0800u16, 0x0806, 0x86dd, 0x88cc] {
            assert_eq!(u16::from(EtherType::from(v)), v);
        }
        assert_eq!(EtherType::from(0x0800), EtherType::Ipv4);
        assert_eq!(EtherType::from(0x88cc), EtherType::Unknown(0x88cc));
    }

    #[test]
    fn parse_fixture() {
        let frame = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(frame.dst_addr(), mac(2));
        assert_eq!(frame.src_addr(), mac(1));
        assert_eq!(frame.ethertype(), EtherType::Arp);
        assert_eq!(frame.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        let repr = EthernetRepr::parse(&frame).unwrap();
        assert_eq!(
            repr,
            EthernetRepr {
                src_addr: mac(1),
                dst_addr: mac(2),
                ethertype: EtherType::Arp
            }
        );
    }

    #[test]
    fn emit_fixture() {
        let repr = EthernetRepr {
            src_addr: mac(1),
            dst_addr: mac(2),
            ethertype: EtherType::Arp,
        };
        let mut buf = [0u8; 18];
        buf[14..].copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        repr.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        assert_eq!(buf, FRAME);
        assert_eq!(repr.to_bytes()[..], FRAME[..14]);
        assert_eq!(repr.buffer_len(), 14);
    }

    #[test]
    fn truncated() {
        for len in 0..14 {
            assert_eq!(
                EthernetFrame::new_checked(&FRAME[..len]).err(),
                Some(Error::Truncated)
            );
        }
        let unchecked = EthernetFrame::new_unchecked(&FRAME[..3]);
        assert_eq!(EthernetRepr::parse(&unchecked), Err(Error::Truncated));
    }

    #[test]
    fn etherparse_reads_ours() {
        let repr = EthernetRepr {
            src_addr: mac(1),
            dst_addr: EthernetAddress::BROADCAST,
            ethertype: EtherType::Unknown(0x88b5),
        };
        let bytes = repr.to_bytes();
        let hdr = etherparse::Ethernet2HeaderSlice::from_slice(&bytes).unwrap();
        assert_eq!(hdr.source(), mac(1).0);
        assert_eq!(hdr.destination(), [0xff; 6]);
        assert_eq!(hdr.ether_type().0, 0x88b5);
    }

    proptest! {
        #[test]
        fn roundtrip(src in any::<[u8; 6]>(), dst in any::<[u8; 6]>(), et in any::<u16>()) {
            let repr = EthernetRepr {
                src_addr: EthernetAddress(src),
                dst_addr: EthernetAddress(dst),
                ethertype: EtherType::from(et),
            };
            let bytes = repr.to_bytes();
            prop_assert_eq!(EthernetRepr::parse(&EthernetFrame::new_checked(&bytes[..]).unwrap()), Ok(repr));
            let text = repr.src_addr.to_string();
            prop_assert_eq!(text.parse::<EthernetAddress>(), Ok(repr.src_addr));
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..32)) {
            if let Ok(frame) = EthernetFrame::new_checked(&data[..]) {
                let _ = EthernetRepr::parse(&frame);
                let _ = frame.payload();
            }
        }
    }
}
