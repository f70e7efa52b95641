//! ARP (RFC 826) for IPv4 over Ethernet.
//!
//! Kernel: `struct arphdr`, include/uapi/linux/if_arp.h; `arp_create()`,
//! net/ipv4/arp.c.
//!
//! ```text
//!  0       2       4   5   6       8
//! +-------+-------+---+---+-------+----------+----------+----------+----------+
//! | htype | ptype |hln|pln|  op   | sha (hln)| spa (pln)| tha (hln)| tpa (pln)|
//! +-------+-------+---+---+-------+----------+----------+----------+----------+
//! ```

use core::ops::Range;
use std::net::Ipv4Addr;

use super::ethernet::EthernetAddress;
use super::{get_u16, put_u16, Error, Result};

/// `ARPHRD_ETHER`: the hardware type of Ethernet.
pub const HARDWARE_ETHERNET: u16 = 1;
/// `ETH_P_IP` as an ARP protocol type.
pub const PROTOCOL_IPV4: u16 = 0x0800;

/// What an ARP packet asks or answers.
///
/// Kernel: `ARPOP_*`, include/uapi/linux/if_arp.h.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// `ARPOP_REQUEST` (1): who has the target protocol address?
    Request,
    /// `ARPOP_REPLY` (2): the source hardware address has it.
    Reply,
    /// Any other operation code.
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    fn from(v: u16) -> Self {
        match v {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => ArpOperation::Unknown(other),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(op: ArpOperation) -> u16 {
        match op {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(other) => other,
        }
    }
}

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const ADDRS: usize = 8;
}

/// A view of an ARP packet (any hardware and protocol address sizes).
///
/// See the [module contract](super) on lengths and panics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` without checking its length.
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }

    /// Wraps `buffer`, failing if it cannot hold the fixed part and the four
    /// addresses its length bytes announce.
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` unless every accessor is in bounds.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < field::ADDRS || len < self.tpa().end {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn hln(&self) -> usize {
        usize::from(self.hardware_len())
    }

    fn pln(&self) -> usize {
        usize::from(self.protocol_len())
    }

    fn sha(&self) -> Range<usize> {
        field::ADDRS..field::ADDRS + self.hln()
    }

    fn spa(&self) -> Range<usize> {
        let start = self.sha().end;
        start..start + self.pln()
    }

    fn tha(&self) -> Range<usize> {
        let start = self.spa().end;
        start..start + self.hln()
    }

    fn tpa(&self) -> Range<usize> {
        let start = self.tha().end;
        start..start + self.pln()
    }

    /// Hardware type (1 for Ethernet).
    pub fn hardware_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type (0x0800 for IPv4).
    pub fn protocol_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PTYPE)
    }

    /// Hardware address length in bytes.
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length in bytes.
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// The operation.
    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(get_u16(self.buffer.as_ref(), field::OPER))
    }

    /// Sender hardware address.
    pub fn source_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.sha()]
    }

    /// Sender protocol address.
    pub fn source_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.spa()]
    }

    /// Target hardware address.
    pub fn target_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.tha()]
    }

    /// Target protocol address.
    pub fn target_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.tpa()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the hardware type.
    pub fn set_hardware_type(&mut self, v: u16) {
        put_u16(self.buffer.as_mut(), field::HTYPE, v);
    }

    /// Sets the protocol type.
    pub fn set_protocol_type(&mut self, v: u16) {
        put_u16(self.buffer.as_mut(), field::PTYPE, v);
    }

    /// Sets the hardware address length (set it before the addresses).
    pub fn set_hardware_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::HLEN] = v;
    }

    /// Sets the protocol address length (set it before the addresses).
    pub fn set_protocol_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::PLEN] = v;
    }

    /// Sets the operation.
    pub fn set_operation(&mut self, op: ArpOperation) {
        put_u16(self.buffer.as_mut(), field::OPER, op.into());
    }

    /// Sets the sender hardware address (`addr.len()` must equal `hardware_len`).
    pub fn set_source_hardware_addr(&mut self, addr: &[u8]) {
        let r = self.sha();
        self.buffer.as_mut()[r].copy_from_slice(addr);
    }

    /// Sets the sender protocol address (`addr.len()` must equal `protocol_len`).
    pub fn set_source_protocol_addr(&mut self, addr: &[u8]) {
        let r = self.spa();
        self.buffer.as_mut()[r].copy_from_slice(addr);
    }

    /// Sets the target hardware address (`addr.len()` must equal `hardware_len`).
    pub fn set_target_hardware_addr(&mut self, addr: &[u8]) {
        let r = self.tha();
        self.buffer.as_mut()[r].copy_from_slice(addr);
    }

    /// Sets the target protocol address (`addr.len()` must equal `protocol_len`).
    pub fn set_target_protocol_addr(&mut self, addr: &[u8]) {
        let r = self.tpa();
        self.buffer.as_mut()[r].copy_from_slice(addr);
    }
}

/// An ARP packet for IPv4 over Ethernet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Request or reply.
    pub operation: ArpOperation,
    /// Sender MAC.
    pub source_hardware_addr: EthernetAddress,
    /// Sender IPv4 address.
    pub source_protocol_addr: Ipv4Addr,
    /// Target MAC (all zeros in a request).
    pub target_hardware_addr: EthernetAddress,
    /// Target IPv4 address.
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Length of an Ethernet/IPv4 ARP packet.
    pub const BUFFER_LEN: usize = 28;

    /// A request asking who has `target`, as the kernel's `arp_solicit()` sends
    /// it: target hardware address zero.
    pub fn request(source_mac: EthernetAddress, source_ip: Ipv4Addr, target: Ipv4Addr) -> Self {
        ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: source_mac,
            source_protocol_addr: source_ip,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        }
    }

    /// Reads an Ethernet/IPv4 ARP packet; other hardware or protocol types
    /// are [`Error::Unsupported`].
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr> {
        packet.check_len()?;
        if packet.hardware_type() != HARDWARE_ETHERNET
            || packet.protocol_type() != PROTOCOL_IPV4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(Error::Unsupported);
        }
        Ok(ArpRepr {
            operation: packet.operation(),
            source_hardware_addr: EthernetAddress::from_bytes(packet.source_hardware_addr()),
            source_protocol_addr: ipv4(packet.source_protocol_addr()),
            target_hardware_addr: EthernetAddress::from_bytes(packet.target_hardware_addr()),
            target_protocol_addr: ipv4(packet.target_protocol_addr()),
        })
    }

    /// Bytes [`emit`](Self::emit) writes: 28.
    pub const fn buffer_len(&self) -> usize {
        Self::BUFFER_LEN
    }

    /// Writes the packet into the first 28 bytes of `packet`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_hardware_type(HARDWARE_ETHERNET);
        packet.set_protocol_type(PROTOCOL_IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(&self.source_hardware_addr.0);
        packet.set_source_protocol_addr(&self.source_protocol_addr.octets());
        packet.set_target_hardware_addr(&self.target_hardware_addr.0);
        packet.set_target_protocol_addr(&self.target_protocol_addr.octets());
    }
}

fn ipv4(bytes: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::{EtherType, EthernetFrame, EthernetRepr};
    use proptest::prelude::*;

    // who-has 10.0.0.2 tell 10.0.0.1 (02:00:00:00:00:01)
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 10, 0,
        0, 1, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 10, 0, 0, 2,
    ];

    fn repr() -> ArpRepr {
        ArpRepr::request(
            EthernetAddress([2, 0, 0, 0, 0, 1]),
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
        )
    }

    #[test]
    fn parse_fixture() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), 0x0800);
        assert_eq!(p.operation(), ArpOperation::Request);
        assert_eq!(p.target_protocol_addr(), &[10, 0, 0, 2]);
        assert_eq!(ArpRepr::parse(&p), Ok(repr()));
    }

    #[test]
    fn emit_fixture() {
        let mut buf = [0xeeu8; 28];
        repr().emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, REQUEST);
        assert_eq!(repr().buffer_len(), 28);
    }

    #[test]
    fn errors() {
        for len in 0..28 {
            assert_eq!(
                ArpPacket::new_checked(&REQUEST[..len]).err(),
                Some(Error::Truncated)
            );
            let p = ArpPacket::new_unchecked(&REQUEST[..len]);
            assert_eq!(ArpRepr::parse(&p), Err(Error::Truncated));
        }
        let mut other = REQUEST;
        other[1] = 6; // IEEE 802
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_unchecked(&other[..])),
            Err(Error::Unsupported)
        );
        let mut big = REQUEST;
        big[4] = 255; // hardware length beyond the buffer
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_unchecked(&big[..])),
            Err(Error::Truncated)
        );
        let mut op = REQUEST;
        op[7] = 9;
        let parsed = ArpRepr::parse(&ArpPacket::new_unchecked(&op[..])).unwrap();
        assert_eq!(parsed.operation, ArpOperation::Unknown(9));
        assert_eq!(u16::from(parsed.operation), 9);
    }

    #[test]
    fn etherparse_builds_we_parse() {
        let ep = etherparse::ArpEthIpv4Packet {
            operation: etherparse::ArpOperation::REPLY,
            sender_mac: [2, 0, 0, 0, 0, 9],
            sender_ipv4: [192, 0, 2, 9],
            target_mac: [2, 0, 0, 0, 0, 1],
            target_ipv4: [192, 0, 2, 1],
        };
        let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 1])
            .arp(ep.to_arp_packet());
        let mut frame = Vec::new();
        builder.write(&mut frame).unwrap();
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(EthernetRepr::parse(&eth).unwrap().ethertype, EtherType::Arp);
        let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
        assert_eq!(arp.operation, ArpOperation::Reply);
        assert_eq!(
            arp.source_hardware_addr,
            EthernetAddress([2, 0, 0, 0, 0, 9])
        );
        assert_eq!(arp.source_protocol_addr, Ipv4Addr::new(192, 0, 2, 9));
        assert_eq!(
            arp.target_hardware_addr,
            EthernetAddress([2, 0, 0, 0, 0, 1])
        );
        assert_eq!(arp.target_protocol_addr, Ipv4Addr::new(192, 0, 2, 1));
    }

    #[test]
    fn we_emit_etherparse_parses() {
        let mut buf = [0u8; 28];
        repr().emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
        let ep = etherparse::ArpPacket::from_slice(&buf)
            .unwrap()
            .try_eth_ipv4()
            .unwrap();
        assert_eq!(ep.operation, etherparse::ArpOperation::REQUEST);
        assert_eq!(ep.sender_mac, [2, 0, 0, 0, 0, 1]);
        assert_eq!(ep.sender_ipv4, [10, 0, 0, 1]);
        assert_eq!(ep.target_mac, [0; 6]);
        assert_eq!(ep.target_ipv4, [10, 0, 0, 2]);
    }

    proptest! {
        #[test]
        fn roundtrip(op in any::<u16>(), sha in any::<[u8; 6]>(), spa in any::<u32>(),
                     tha in any::<[u8; 6]>(), tpa in any::<u32>()) {
            let r = ArpRepr {
                operation: ArpOperation::from(op),
                source_hardware_addr: EthernetAddress(sha),
                source_protocol_addr: Ipv4Addr::from(spa),
                target_hardware_addr: EthernetAddress(tha),
                target_protocol_addr: Ipv4Addr::from(tpa),
            };
            let mut buf = [0u8; 28];
            r.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
            prop_assert_eq!(ArpRepr::parse(&ArpPacket::new_unchecked(&buf[..])), Ok(r));
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ArpRepr::parse(&ArpPacket::new_unchecked(&data[..]));
        }
    }
}
