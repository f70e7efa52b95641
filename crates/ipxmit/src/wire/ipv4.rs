//! IPv4 headers (RFC 791).
//!
//! Kernel: `struct iphdr`, include/uapi/linux/ip.h; the header writing of
//! `__ip_make_skb()` / `ip_queue_xmit()` and `ip_send_check()`,
//! net/ipv4/ip_output.c.
//!
//! ```text
//!  0               1               2               3
//! +-------+-------+---------------+-------------------------------+
//! |version|  IHL  |   DSCP | ECN  |          total length         |
//! +-------+-------+---------------+-----+-------------------------+
//! |        identification         |0|D|M|  fragment offset (/8)   |
//! +---------------+---------------+-----+-------------------------+
//! |      TTL      |   protocol    |        header checksum        |
//! +---------------+---------------+-------------------------------+
//! |                        source address                         |
//! +---------------------------------------------------------------+
//! |                      destination address                      |
//! +---------------------------------------------------------------+
//! |                options (IHL * 4 - 20 bytes)                   |
//! +---------------------------------------------------------------+
//! ```

use core::fmt;
use std::net::Ipv4Addr;

use super::checksum::{self, Csum};
use super::ipv4_options::check_options;
use super::{get_u16, put_u16, Error, Result};

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;
/// Most option bytes a header can carry (IHL 15).
pub const MAX_OPTIONS_LEN: usize = 40;
/// Largest header, options included.
pub const MAX_HEADER_LEN: usize = HEADER_LEN + MAX_OPTIONS_LEN;

/// Don't Fragment, in the flags-and-offset word (the kernel's `IP_DF`).
pub const FLAG_DF: u16 = 0x4000;
/// More Fragments (`IP_MF`).
pub const FLAG_MF: u16 = 0x2000;
/// The fragment offset bits, in units of 8 bytes (`IP_OFFSET`).
pub const OFFSET_MASK: u16 = 0x1fff;

/// The IP protocol number: what the payload is.
///
/// Kernel: the `IPPROTO_*` constants, include/uapi/linux/in.h.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// `IPPROTO_ICMP`.
    pub const ICMP: IpProtocol = IpProtocol(1);
    /// `IPPROTO_IGMP`.
    pub const IGMP: IpProtocol = IpProtocol(2);
    /// `IPPROTO_IPIP` (IPv4 in IPv4).
    pub const IPIP: IpProtocol = IpProtocol(4);
    /// `IPPROTO_TCP`.
    pub const TCP: IpProtocol = IpProtocol(6);
    /// `IPPROTO_UDP`.
    pub const UDP: IpProtocol = IpProtocol(17);
    /// `IPPROTO_GRE`.
    pub const GRE: IpProtocol = IpProtocol(47);
    /// `IPPROTO_ESP`.
    pub const ESP: IpProtocol = IpProtocol(50);
    /// `IPPROTO_UDPLITE`.
    pub const UDPLITE: IpProtocol = IpProtocol(136);
    /// `IPPROTO_RAW`: raw socket that supplies its own IP header.
    pub const RAW: IpProtocol = IpProtocol(255);
}

impl From<u8> for IpProtocol {
    fn from(v: u8) -> Self {
        IpProtocol(v)
    }
}

impl From<IpProtocol> for u8 {
    fn from(p: IpProtocol) -> u8 {
        p.0
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IpProtocol::ICMP => f.write_str("ICMP"),
            IpProtocol::IGMP => f.write_str("IGMP"),
            IpProtocol::TCP => f.write_str("TCP"),
            IpProtocol::UDP => f.write_str("UDP"),
            IpProtocol::GRE => f.write_str("GRE"),
            IpProtocol::ESP => f.write_str("ESP"),
            IpProtocol::RAW => f.write_str("RAW"),
            IpProtocol(other) => write!(f, "{other}"),
        }
    }
}

/// Whether [`Ipv4Repr::parse`] verifies the header checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChecksumCheck {
    /// Reject a header whose checksum does not verify.
    #[default]
    Verify,
    /// Accept any checksum (e.g. the device verified it, or it is not final).
    Ignore,
}

mod field {
    use core::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// A view of an IPv4 packet in a byte buffer.
///
/// See the [module contract](super) on lengths and panics: `options()` and
/// `payload()` trust the IHL and total length fields, so call them only after
/// [`check_len`](Self::check_len) succeeded or on a header you wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without checking it.
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer`, failing unless [`check_len`](Self::check_len) passes.
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header and the total length fit the buffer:
    /// `Truncated` if the buffer is shorter than 20 bytes, than the header,
    /// or than the total length; `BadHeaderLength` if IHL < 5;
    /// `BadTotalLength` if the total length is below the header length.
    /// Bytes beyond the total length (link-layer padding) are allowed.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(Error::BadHeaderLength);
        }
        if header_len > len {
            return Err(Error::Truncated);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(Error::BadTotalLength);
        }
        if total_len > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole wrapped buffer.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The version nibble (4).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The type-of-service byte (DSCP << 2 | ECN).
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Differentiated services code point (upper six bits of TOS).
    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    /// Explicit congestion notification (lower two bits of TOS).
    pub fn ecn(&self) -> u8 {
        self.tos() & 0x03
    }

    /// Total length of the datagram (header and payload) in bytes.
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// The flags-and-offset word as it is on the wire: [`FLAG_DF`],
    /// [`FLAG_MF`] and the offset in 8-byte units ([`OFFSET_MASK`]).
    #[inline]
    pub fn frag_word(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLG_OFF)
    }

    /// The Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.frag_word() & FLAG_DF != 0
    }

    /// The More Fragments flag.
    pub fn more_frags(&self) -> bool {
        self.frag_word() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (always a multiple of 8).
    pub fn frag_offset(&self) -> u16 {
        (self.frag_word() & OFFSET_MASK) << 3
    }

    /// Whether this is a fragment: MF set or a non-zero offset
    /// (the kernel's `ip_is_fragment()`).
    pub fn is_fragment(&self) -> bool {
        self.frag_word() & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// Header checksum as stored.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::SRC_ADDR.start)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::DST_ADDR.start)
    }

    /// The option bytes: header bytes 20 to `header_len()`.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The whole header, options included.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The payload: bytes `header_len()` to `total_len()`.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// Whether the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.header())
    }
}

fn ipv4_at(buf: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(buf[at], buf[at + 1], buf[at + 2], buf[at + 3])
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version nibble.
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the header length in bytes (a multiple of 4, 20 to 60).
    pub fn set_header_len(&mut self, len: usize) {
        debug_assert!(len.is_multiple_of(4) && (HEADER_LEN..=MAX_HEADER_LEN).contains(&len));
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    /// Sets the type-of-service byte.
    pub fn set_tos(&mut self, tos: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = tos;
    }

    /// Sets the DSCP, keeping the ECN bits.
    pub fn set_dscp(&mut self, dscp: u8) {
        let tos = (dscp << 2) | self.ecn();
        self.set_tos(tos);
    }

    /// Sets the ECN bits, keeping the DSCP.
    pub fn set_ecn(&mut self, ecn: u8) {
        let tos = (self.tos() & !0x03) | (ecn & 0x03);
        self.set_tos(tos);
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, len: u16) {
        put_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, ident: u16) {
        put_u16(self.buffer.as_mut(), field::IDENT, ident);
    }

    /// Sets the flags-and-offset word as it goes on the wire: [`FLAG_DF`],
    /// [`FLAG_MF`] and the offset in 8-byte units ([`OFFSET_MASK`]), in one
    /// store (`iph->frag_off = htons(...)`).
    #[inline]
    pub fn set_frag_word(&mut self, word: u16) {
        put_u16(self.buffer.as_mut(), field::FLG_OFF, word);
    }

    /// Sets or clears Don't Fragment.
    pub fn set_dont_frag(&mut self, on: bool) {
        let v = self.frag_word() & !FLAG_DF;
        self.set_frag_word(v | if on { FLAG_DF } else { 0 });
    }

    /// Sets or clears More Fragments.
    pub fn set_more_frags(&mut self, on: bool) {
        let v = self.frag_word() & !FLAG_MF;
        self.set_frag_word(v | if on { FLAG_MF } else { 0 });
    }

    /// Sets the fragment offset in bytes (a multiple of 8), keeping the flags.
    pub fn set_frag_offset(&mut self, offset: u16) {
        debug_assert_eq!(offset % 8, 0, "fragment offset must be a multiple of 8");
        let v = self.frag_word() & !OFFSET_MASK;
        self.set_frag_word(v | (offset >> 3));
    }

    /// Clears all three flag bits and the fragment offset.
    pub fn clear_flags(&mut self) {
        self.set_frag_word(0);
    }

    /// Sets the time to live.
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol.
    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol.0;
    }

    /// Stores `checksum` in the checksum field as is.
    pub fn set_checksum(&mut self, checksum: u16) {
        put_u16(self.buffer.as_mut(), field::CHECKSUM, checksum);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// The option bytes, writable (their length follows the IHL).
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }

    /// Computes the header checksum and stores it.
    ///
    /// Kernel: `ip_send_check()`, net/ipv4/ip_output.c.
    pub fn fill_checksum(&mut self) {
        send_check(self.buffer.as_mut());
    }
}

/// The fields of an IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: IpProtocol,
    /// Type of service (DSCP << 2 | ECN).
    pub tos: u8,
    /// Time to live.
    pub ttl: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
    /// More Fragments.
    pub more_frags: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: u16,
    /// Bytes of options (a multiple of 4, at most 40).
    pub options_len: usize,
    /// Bytes of payload after the header.
    pub payload_len: usize,
}

impl Default for Ipv4Repr {
    /// Unspecified addresses, protocol 0, TTL 64 (the kernel's default
    /// `ip_default_ttl`), everything else zero.
    fn default() -> Self {
        Ipv4Repr {
            src_addr: Ipv4Addr::UNSPECIFIED,
            dst_addr: Ipv4Addr::UNSPECIFIED,
            protocol: IpProtocol(0),
            tos: 0,
            ttl: 64,
            ident: 0,
            dont_frag: false,
            more_frags: false,
            frag_offset: 0,
            options_len: 0,
            payload_len: 0,
        }
    }
}

impl Ipv4Repr {
    /// Reads and validates the header of `packet`: length checks (see
    /// [`Ipv4Packet::check_len`]), version 4, the checksum unless `check` is
    /// [`ChecksumCheck::Ignore`], and the options' syntax.
    ///
    /// The payload length is the one the total length field says; link-layer
    /// padding after it is not payload.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>, check: ChecksumCheck) -> Result<Ipv4Repr> {
        if packet.as_bytes().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if packet.version() != 4 {
            return Err(Error::BadVersion(packet.version()));
        }
        packet.check_len()?;
        if check == ChecksumCheck::Verify && !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        check_options(packet.options())?;
        let header_len = packet.header_len();
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            tos: packet.tos(),
            ttl: packet.ttl(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
            options_len: header_len - HEADER_LEN,
            payload_len: usize::from(packet.total_len()) - header_len,
        })
    }

    /// Header length in bytes, options included.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len
    }

    /// Header plus payload: the total length field.
    pub const fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Writes the header, `options` and the checksum into `packet`
    /// (see [`emit_header`]); the payload is left alone.
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>, options: &[u8]) {
        emit_header(packet.buffer.as_mut(), self, options);
    }
}

/// Writes an IPv4 header for `repr` with `options` into the first
/// `20 + options.len()` bytes of `buf`, checksum included. The hot-path
/// version of [`Ipv4Repr::emit`]: one pass of stores and one checksum.
///
/// `options.len()` decides the header length (it should equal
/// `repr.options_len` and be a multiple of 4; both are debug-asserted), and
/// the total length is that header length plus `repr.payload_len`, which must
/// fit in 16 bits. `repr.frag_offset` must be a multiple of 8.
///
/// Kernel: the `iph->... =` stores of `__ip_make_skb()` followed by
/// `ip_send_check()`.
///
/// # Panics
///
/// If `buf` is shorter than the header.
pub fn emit_header(buf: &mut [u8], repr: &Ipv4Repr, options: &[u8]) {
    debug_assert_eq!(options.len() % 4, 0, "options must be padded to 4 bytes");
    debug_assert!(options.len() <= MAX_OPTIONS_LEN);
    debug_assert_eq!(options.len(), repr.options_len);
    debug_assert_eq!(repr.frag_offset % 8, 0);
    let header_len = HEADER_LEN + options.len();
    let total_len = header_len + repr.payload_len;
    debug_assert!(
        total_len <= usize::from(u16::MAX),
        "datagram longer than 65535"
    );
    let hdr = &mut buf[..header_len];
    let flags =
        if repr.dont_frag { FLAG_DF } else { 0 } | if repr.more_frags { FLAG_MF } else { 0 };
    hdr[field::VER_IHL] = 0x40 | (header_len / 4) as u8;
    hdr[field::DSCP_ECN] = repr.tos;
    put_u16(hdr, field::LENGTH, total_len as u16);
    put_u16(hdr, field::IDENT, repr.ident);
    put_u16(hdr, field::FLG_OFF, flags | (repr.frag_offset >> 3));
    hdr[field::TTL] = repr.ttl;
    hdr[field::PROTOCOL] = repr.protocol.0;
    put_u16(hdr, field::CHECKSUM, 0);
    hdr[field::SRC_ADDR].copy_from_slice(&repr.src_addr.octets());
    hdr[field::DST_ADDR].copy_from_slice(&repr.dst_addr.octets());
    hdr[HEADER_LEN..].copy_from_slice(options);
    let sum = Csum::of(hdr).finish();
    put_u16(hdr, field::CHECKSUM, sum);
}

/// Kernel: `ip_send_check()`, include/net/ip.h. Recomputes the header
/// checksum of the IPv4 header at the start of `h` (its IHL gives the
/// length); the hot-path form of [`Ipv4Packet::fill_checksum`] on raw bytes.
#[inline(always)]
pub fn send_check(h: &mut [u8]) {
    let hlen = usize::from(h[field::VER_IHL] & 0x0f) * 4;
    put_u16(h, field::CHECKSUM, 0);
    let c = match <&[u8; HEADER_LEN]>::try_from(&h[..HEADER_LEN]) {
        Ok(w) if hlen == HEADER_LEN => fast_csum20(w),
        _ => Csum::of(&h[..hlen]).finish(),
    };
    put_u16(h, field::CHECKSUM, c);
}

/// `iph->tot_len = htons(len); ip_send_check(iph)` (`__ip_local_out()`)
/// for an option-less header that was just written: the total length and
/// the checksum. The other fields are read back as 16-bit words, each
/// lying within one earlier store (a wide load over several recent narrow
/// stores cannot take their data from the store buffer and waits for them
/// to reach the cache, some ten cycles a header), the length taken as the
/// value it is and the checksum as the zero it is about to replace.
#[inline(always)]
pub fn set_len_and_check(h: &mut [u8; HEADER_LEN], tot_len: u16) {
    set_len_and_check_from(h, header_sum_ne(h, true), tot_len);
}

/// [`set_len_and_check`] for a header whose other words' sum is known
/// (`sum`, as [`header_sum_ne`] gives it): the length and the checksum
/// written, nothing read.
#[inline(always)]
pub fn set_len_and_check_from(h: &mut [u8; HEADER_LEN], sum: u32, tot_len: u16) {
    let sum = sum + u32::from(tot_len.to_be());
    let (s16, c) = (sum as u16).overflowing_add((sum >> 16) as u16);
    let s16 = s16.wrapping_add(u16::from(c));
    let mut ip = Ipv4Packet::new_unchecked(h);
    ip.set_total_len(tot_len);
    ip.set_checksum(u16::from_be(!s16));
}

/// The unfolded ones'-complement sum of the option-less header `h`'s
/// 16-bit words as they lie in memory (native-endian reads: the sum's byte
/// order is undone when the checksum is written), `tot_len` and the
/// checksum left out, and the ID too unless `with_id`.
#[inline(always)]
pub fn header_sum_ne(h: &[u8; HEADER_LEN], with_id: bool) -> u32 {
    let w = |i: usize| u32::from(u16::from_ne_bytes([h[i], h[i + 1]]));
    let id = if with_id { w(4) } else { 0 };
    w(0) + id + w(6) + w(8) + w(12) + w(14) + w(16) + w(18)
}

/// `ip_fast_csum()` for an option-less header: its five 32-bit words
/// summed as they lie in memory (a ones' complement sum does not depend on
/// the byte order its words are read in, only its result is swapped),
/// folded to 16 bits and complemented, returned as the number whose
/// big-endian bytes go on the wire.
#[inline(always)]
fn fast_csum20(h: &[u8; HEADER_LEN]) -> u16 {
    let w = |i: usize| u64::from(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    let sum = w(0) + w(4) + w(8) + w(12) + w(16);
    // 64 -> 32 -> 16 bits, each fold adding its carry back (end-around).
    let (s32, c) = (sum as u32).overflowing_add((sum >> 32) as u32);
    let s32 = s32.wrapping_add(u32::from(c));
    let (s16, c) = (s32 as u16).overflowing_add((s32 >> 16) as u16);
    let s16 = s16.wrapping_add(u16::from(c));
    u16::from_be(!s16)
}

#[cfg(test)]
mod tests;
