//! ICMPv4 messages (RFC 792, RFC 1191 for "fragmentation needed").
//!
//! Kernel: `struct icmphdr` and the `ICMP_*` type and code numbers,
//! include/uapi/linux/icmp.h.
//!
//! ```text
//!  0               1               2               3
//! +---------------+---------------+-------------------------------+
//! |     type      |     code      |           checksum            |
//! +---------------+---------------+-------------------------------+
//! |  rest of header (echo: id, seq; frag needed: 0, next-hop MTU) |
//! +---------------------------------------------------------------+
//! |  data (errors: the offending IP header and 8 bytes after it)  |
//! +---------------------------------------------------------------+
//! ```

use super::checksum;
use super::{get_u16, put_u16, Error, Result};

/// Length of the ICMP header.
pub const HEADER_LEN: usize = 8;

/// `ICMP_ECHOREPLY`.
pub const ECHO_REPLY: u8 = 0;
/// `ICMP_DEST_UNREACH`.
pub const DEST_UNREACH: u8 = 3;
/// `ICMP_SOURCE_QUENCH`.
pub const SOURCE_QUENCH: u8 = 4;
/// `ICMP_REDIRECT`.
pub const REDIRECT: u8 = 5;
/// `ICMP_ECHO`.
pub const ECHO: u8 = 8;
/// `ICMP_TIME_EXCEEDED`.
pub const TIME_EXCEEDED: u8 = 11;
/// `ICMP_PARAMETERPROB`.
pub const PARAMETERPROB: u8 = 12;
/// `NR_ICMP_TYPES`: the largest type the kernel knows.
pub const NR_ICMP_TYPES: u8 = 18;

/// `ICMP_PORT_UNREACH` (code of [`DEST_UNREACH`]).
pub const PORT_UNREACH: u8 = 3;
/// `ICMP_FRAG_NEEDED` (code of [`DEST_UNREACH`]).
pub const FRAG_NEEDED: u8 = 4;
/// `NR_ICMP_UNREACH`: the largest unreachable code.
pub const NR_ICMP_UNREACH: u8 = 15;
/// `ICMP_EXC_FRAGTIME` (code of [`TIME_EXCEEDED`]).
pub const EXC_FRAGTIME: u8 = 1;

/// A view of an ICMP message. See the [module documentation](super) for
/// the length and panic contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Wraps `buffer` without checking it.
    pub const fn new_unchecked(buffer: T) -> IcmpPacket<T> {
        IcmpPacket { buffer }
    }

    /// Wraps `buffer`, failing unless [`check_len`](Self::check_len) passes.
    pub fn new_checked(buffer: T) -> Result<IcmpPacket<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` when the buffer is shorter than the 8-byte header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// The code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 2)
    }

    /// The rest of the header as one number (`icmph->un.gateway`).
    pub fn rest(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]])
    }

    /// The next-hop MTU of a "fragmentation needed" (`icmph->un.frag.mtu`).
    pub fn next_hop_mtu(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 6)
    }

    /// The data after the header (for an error: the quoted datagram).
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Whether the checksum over the whole buffer verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    /// Sets the type.
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[0] = t;
    }

    /// Sets the code.
    pub fn set_code(&mut self, c: u8) {
        self.buffer.as_mut()[1] = c;
    }

    /// Sets the rest of the header.
    pub fn set_rest(&mut self, v: u32) {
        self.buffer.as_mut()[4..8].copy_from_slice(&v.to_be_bytes());
    }

    /// The data after the header, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Computes the checksum over the whole buffer and stores it.
    pub fn fill_checksum(&mut self) {
        put_u16(self.buffer.as_mut(), 2, 0);
        let sum = checksum::checksum(self.buffer.as_ref());
        put_u16(self.buffer.as_mut(), 2, sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "fragmentation needed", MTU 1400, quoting nothing, as Wireshark
    /// shows it: 03 04 checksum 00 00 05 78.
    #[test]
    fn frag_needed_fields_and_checksum() {
        let mut b = [0u8; 8];
        let mut p = IcmpPacket::new_unchecked(&mut b[..]);
        p.set_msg_type(DEST_UNREACH);
        p.set_code(FRAG_NEEDED);
        p.set_rest(1400);
        p.fill_checksum();
        assert_eq!(b, [3, 4, 0xf7, 0x83, 0, 0, 0x05, 0x78]);
        let p = IcmpPacket::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!((p.next_hop_mtu(), p.rest()), (1400, 1400));
        assert_eq!(IcmpPacket::new_checked(&b[..7]), Err(Error::Truncated));
    }
}
