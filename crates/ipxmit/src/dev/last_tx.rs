//! The last IPv4 datagram a device sent, kept for building an ICMP error
//! about it (what a router on the path would quote: the IP header and the
//! first 8 bytes of its data, RFC 792).
//!
//! ipxmit's own (the kernel keeps nothing of the kind): a tap
//! ([`crate::dev::Tap`]) that copies, per frame, at most 82 bytes into a
//! fixed buffer, so nothing is allocated per packet. It is attached only
//! when asked for ([`crate::NetDevice::remember_tx`]); a device without it
//! spends nothing.

use parking_lot::Mutex;

use crate::buf::PacketBuf;
use crate::dev::{LinkType, NetDevice, Tap};
use crate::time::Instant;
use crate::wire::Ipv4Packet;

/// Most bytes of a datagram kept: a 60-byte header and 8 bytes of data.
pub const QUOTE_MAX: usize = 68;

/// The start of one sent IPv4 datagram (its first fragment) and the link
/// header it went with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    link: [u8; 14],
    link_len: u8,
    quote: [u8; QUOTE_MAX],
    quote_len: u8,
}

impl Sent {
    /// The link header (14 bytes on Ethernet, none on an L3 device).
    pub fn link_header(&self) -> &[u8] {
        &self.link[..self.link_len as usize]
    }

    /// The IP header and the first (up to) 8 bytes of data after it.
    pub fn quote(&self) -> &[u8] {
        &self.quote[..self.quote_len as usize]
    }

    /// The datagram's IP header.
    pub fn header(&self) -> Ipv4Packet<&[u8]> {
        Ipv4Packet::new_unchecked(self.quote())
    }
}

/// The tap that keeps [`Sent`]. See the module documentation.
#[derive(Debug, Default)]
pub struct LastTx {
    last: Mutex<Option<Sent>>,
}

impl LastTx {
    /// The last datagram kept, if any.
    pub fn get(&self) -> Option<Sent> {
        *self.last.lock()
    }
}

/// The [`Sent`] of frame `pkt` on a link of `link`, when it is the first
/// fragment of an IPv4 datagram (the one carrying the transport header).
fn sent_of(link: LinkType, pkt: &PacketBuf) -> Option<Sent> {
    let hlen = link.header_len();
    let mut s = Sent {
        link: [0; 14],
        link_len: hlen as u8,
        quote: [0; QUOTE_MAX],
        quote_len: 0,
    };
    if !pkt.copy_bits(0, &mut s.link[..hlen]) {
        return None;
    }
    if link == LinkType::Ethernet && s.link[12..14] != [0x08, 0x00] {
        return None;
    }
    let mut first = [0u8; 20];
    if !pkt.copy_bits(hlen, &mut first) {
        return None;
    }
    let ip = Ipv4Packet::new_unchecked(&first[..]);
    let ihl = usize::from(first[0] & 0x0f) * 4;
    if first[0] >> 4 != 4 || ihl < 20 || ip.frag_offset() != 0 {
        return None;
    }
    let avail = (pkt.len() - hlen).min(usize::from(ip.total_len()));
    let n = (ihl + 8).min(avail).min(QUOTE_MAX);
    if !pkt.copy_bits(hlen, &mut s.quote[..n]) {
        return None;
    }
    s.quote_len = n as u8;
    Some(s)
}

impl Tap for LastTx {
    fn tap(&self, dev: &NetDevice, pkt: &PacketBuf, _now: Instant) {
        if let Some(s) = sent_of(dev.link(), pkt) {
            *self.last.lock() = Some(s);
        }
    }
}
