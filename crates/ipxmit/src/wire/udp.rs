//! UDP headers (RFC 768) over IPv4.
//!
//! Kernel: `struct udphdr`, include/uapi/linux/udp.h; `udp_send_skb()` and
//! `udp4_hwcsum()`, net/ipv4/udp.c.
//!
//! ```text
//!  0               2               4               6               8
//! +---------------+---------------+---------------+---------------+---------
//! |  source port  |   dest port   |    length     |   checksum    | payload
//! +---------------+---------------+---------------+---------------+---------
//! ```
//!
//! The checksum covers the IPv4 pseudo-header, the UDP header and the payload.
//! Over IPv4 a checksum of 0 means "none"; a computed checksum of 0 is therefore
//! sent as `0xffff` (its ones'-complement twin; the kernel's `CSUM_MANGLED_0`).

use std::net::Ipv4Addr;

use super::checksum::{pseudo_header_v4, Csum};
use super::ipv4::IpProtocol;
use super::{get_u16, put_u16, Error, Result};

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// What the kernel sends instead of a computed checksum of 0.
pub const CSUM_MANGLED_0: u16 = 0xffff;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// A view of a UDP datagram in a byte buffer.
///
/// See the [module contract](super) on lengths and panics: `payload()` trusts
/// the length field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` without checking it.
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Wraps `buffer`, failing unless [`check_len`](Self::check_len) passes.
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if the buffer is shorter than the header or than the length
    /// field; `BadLength` if the length field is below 8. Bytes past the
    /// length field are allowed.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let field_len = usize::from(self.len());
        if field_len < HEADER_LEN {
            Err(Error::BadLength)
        } else if field_len > len {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header plus payload, in bytes.
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Whether the length field says there is no payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// The checksum field (0: none).
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The datagram: header and payload, as long as the length field says.
    pub fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    /// The payload: bytes 8 to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// Whether the checksum verifies for this source and destination; a zero
    /// checksum field (none sent) verifies.
    pub fn verify_checksum(&self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let datagram = self.datagram();
        let pseudo = pseudo_header_v4(src_addr, dst_addr, IpProtocol::UDP.0, self.len());
        pseudo.add(Csum::of(datagram)).fold() == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, port: u16) {
        put_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        put_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the length field.
    pub fn set_len(&mut self, len: u16) {
        put_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Stores `checksum` in the checksum field as is.
    pub fn set_checksum(&mut self, checksum: u16) {
        put_u16(self.buffer.as_mut(), field::CHECKSUM, checksum);
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Computes the checksum over the pseudo-header and the datagram (as long
    /// as the length field says) and stores it, 0 becoming `0xffff`.
    pub fn fill_checksum(&mut self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) {
        let end = usize::from(self.len());
        let sum = udp_checksum(src_addr, dst_addr, &self.buffer.as_ref()[..end]);
        self.set_checksum(sum);
    }
}

/// How [`UdpRepr::emit`] fills the checksum field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpChecksum {
    /// Write 0: no checksum (the kernel's `sk_no_check_tx`, `SO_NO_CHECK`).
    None,
    /// Compute the checksum over the pseudo-header, the header and the payload
    /// that is already in the buffer.
    Compute {
        /// IPv4 source address.
        src_addr: Ipv4Addr,
        /// IPv4 destination address.
        dst_addr: Ipv4Addr,
    },
    /// The payload's sum is already known (it was summed while being copied,
    /// `CHECKSUM_COMPLETE` style); only the header is summed here.
    PayloadSum {
        /// IPv4 source address.
        src_addr: Ipv4Addr,
        /// IPv4 destination address.
        dst_addr: Ipv4Addr,
        /// Sum of the payload bytes.
        sum: Csum,
    },
    /// Checksum offload (`CHECKSUM_PARTIAL`): store the folded pseudo-header
    /// sum, not complemented, so that whoever sums the datagram from the UDP
    /// header on and stores the complement at offset 6 gets the right checksum.
    ///
    /// Kernel: `udp4_hwcsum()`: `uh->check = ~csum_tcpudp_magic(...)`.
    Partial {
        /// IPv4 source address.
        src_addr: Ipv4Addr,
        /// IPv4 destination address.
        dst_addr: Ipv4Addr,
    },
}

/// The fields of a UDP header that are not derived from the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Length of the header this emits (8).
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Reads the header of `packet`, checking lengths and, when
    /// `verify_checksum` is set and the field is not 0, the checksum.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &UdpPacket<T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        verify_checksum: bool,
    ) -> Result<UdpRepr> {
        packet.check_len()?;
        if verify_checksum && !packet.verify_checksum(src_addr, dst_addr) {
            return Err(Error::BadChecksum);
        }
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
        })
    }

    /// Header length: 8.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus `payload_len`: the length field.
    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    /// Writes the header for a payload of `payload_len` bytes, the checksum as
    /// `checksum` says. For [`UdpChecksum::Compute`] the payload must already
    /// be in the buffer.
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than 8 bytes (or, for `Compute`, than
    /// `8 + payload_len`).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        payload_len: usize,
        checksum: UdpChecksum,
    ) {
        let len = self.buffer_len(payload_len);
        debug_assert!(
            len <= usize::from(u16::MAX),
            "UDP datagram longer than 65535"
        );
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len as u16);
        packet.set_checksum(0);
        let value = match checksum {
            UdpChecksum::None => 0,
            UdpChecksum::Compute { src_addr, dst_addr } => {
                udp_checksum(src_addr, dst_addr, &packet.buffer.as_ref()[..len])
            }
            UdpChecksum::PayloadSum {
                src_addr,
                dst_addr,
                sum,
            } => {
                let mut header = [0u8; HEADER_LEN];
                header.copy_from_slice(&packet.buffer.as_ref()[..HEADER_LEN]);
                udp_checksum_with_payload_sum(src_addr, dst_addr, &header, sum)
            }
            UdpChecksum::Partial { src_addr, dst_addr } => {
                pseudo_header_v4(src_addr, dst_addr, IpProtocol::UDP.0, len as u16).fold()
            }
        };
        packet.set_checksum(value);
    }
}

/// The checksum a UDP datagram `udp_bytes` (header and payload) sent from
/// `src` to `dst` should carry, with 0 sent as `0xffff`. The checksum field
/// inside `udp_bytes` is ignored (treated as 0); the pseudo-header length is
/// `udp_bytes.len()`.
///
/// Kernel: `udp_csum()` + `csum_tcpudp_magic()` in `udp_send_skb()`.
pub fn udp_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp_bytes: &[u8]) -> u16 {
    debug_assert!(udp_bytes.len() >= HEADER_LEN && udp_bytes.len() <= usize::from(u16::MAX));
    let body = Csum::of(&udp_bytes[..field::CHECKSUM]).add(Csum::of(&udp_bytes[HEADER_LEN..]));
    let pseudo = pseudo_header_v4(src, dst, IpProtocol::UDP.0, udp_bytes.len() as u16);
    mangle_zero(pseudo.add(body).finish())
}

/// Like [`udp_checksum`] when the payload's sum is already known (computed
/// while copying it in): only the 8 header bytes are read. The pseudo-header
/// length is taken from the header's length field; its checksum field is
/// ignored.
pub fn udp_checksum_with_payload_sum(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    header: &[u8; HEADER_LEN],
    payload_sum: Csum,
) -> u16 {
    let len = get_u16(header, field::LENGTH);
    let pseudo = pseudo_header_v4(src, dst, IpProtocol::UDP.0, len);
    let sum = pseudo
        .add(Csum::of(&header[..field::CHECKSUM]))
        .add(payload_sum);
    mangle_zero(sum.finish())
}

/// RFC 768: a computed 0 is transmitted as all ones.
#[inline]
pub(crate) const fn mangle_zero(check: u16) -> u16 {
    if check == 0 {
        CSUM_MANGLED_0
    } else {
        check
    }
}

#[cfg(test)]
mod tests;
