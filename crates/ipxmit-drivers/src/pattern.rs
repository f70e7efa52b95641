//! Test payloads that name their datagram: every 8-byte word of datagram
//! `k`'s UDP payload holds `k`, the word's place and a check byte, so any
//! fragment of it (but a last one shorter than 8 bytes) tells which
//! datagram it belongs to. The verifying peer uses that to recognise
//! fragments of two datagrams that share an IP ID (RFC 4963) instead of
//! reassembling them into one, and the tap of the sender's drops
//! ([`crate::sender_drops`]) to record which datagrams lost a fragment.
//!
//! No kernel function stands for it: it is a test workload's payload, as
//! a traffic generator's sequence stamp is.
//!
//! A word is big-endian `(k mod 2^40) << 24 | (w mod 2^16) << 8 | check`,
//! XORed with a constant, `w` the word's index in the UDP payload; a
//! payload's tail shorter than a word is that word's first bytes. A payload
//! shorter than one word names no datagram: it is a fixed byte sequence.

use ipxmit::PacketBuf;

/// Bits of the datagram number a word holds.
const K_BITS: u32 = 40;
/// XORed into every word, so that zeros are no valid word.
const MASK: u64 = 0x5a3c_96e1_0f78_d2b4;
/// A payload shorter than a word: a prefix of these bytes.
const TINY: [u8; 8] = [0x07, 0x0e, 0x15, 0x1c, 0x23, 0x2a, 0x31, 0x38];
/// Length of the UDP header before the payload.
const UDP_HEADER: usize = 8;

/// The bytes of `x` XORed together.
const fn fold(x: u64) -> u8 {
    let x = x ^ (x >> 32);
    let x = x ^ (x >> 16);
    (x ^ (x >> 8)) as u8
}

/// The check byte of word `w` of datagram `k`: its other bytes' XOR,
/// turned (a word of equal bytes is no valid word).
const fn check_byte(k: u64, w: u64) -> u8 {
    fold(k) ^ fold(w).rotate_left(3) ^ 0xa5
}

/// Word `w` of datagram `k`'s payload, as a number (big-endian on the
/// wire).
const fn word_u64(k: u64, w: usize) -> u64 {
    let k = k & ((1 << K_BITS) - 1);
    let w = w as u64 & 0xffff;
    (k << 24 | w << 8 | check_byte(k, w) as u64) ^ MASK
}

/// Word `w` of datagram `k`'s payload.
pub const fn word(k: u64, w: usize) -> [u8; 8] {
    word_u64(k, w).to_be_bytes()
}

/// The datagram number `bytes` names when it is word `w` of a payload
/// (modulo 2^40); `None` when it is no such word.
pub fn decode(bytes: [u8; 8], w: usize) -> Option<u64> {
    let x = u64::from_be_bytes(bytes) ^ MASK;
    let (k, ww) = (x >> 24, (x >> 8) & 0xffff);
    (ww == w as u64 & 0xffff && check_byte(k, ww) == x as u8).then_some(k)
}

/// Fills `out` with datagram `k`'s payload of `out.len()` bytes.
pub fn fill(k: u64, out: &mut [u8]) {
    if out.len() < 8 {
        out.copy_from_slice(&TINY[..out.len()]);
        return;
    }
    let mut words = out.chunks_exact_mut(8);
    let mut w = 0;
    for chunk in &mut words {
        chunk.copy_from_slice(&word(k, w));
        w += 1;
    }
    let tail = words.into_remainder();
    let n = tail.len();
    tail.copy_from_slice(&word(k, w)[..n]);
}

/// What a delivered payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Datagram `k`'s payload (`None`: shorter than a word), intact.
    Intact(Option<u64>),
    /// Every word is a valid word at its place, but they name more than
    /// one datagram: fragments of datagrams that shared an IP ID,
    /// reassembled into one.
    Mixed,
    /// Some bytes are no pattern's.
    Corrupt,
}

/// Judges a delivered UDP payload: a datagram's whole payload, or a
/// piece of one from any byte offset (a UDP GSO segment). A payload that
/// need not hold a whole word (under 15 bytes: a datagram shorter than a
/// word, or a short GSO piece) and matches none passes unjudged as
/// `Intact(None)`: only its UDP checksum verified it.
pub fn check(p: &[u8]) -> Check {
    let mut best = Check::Corrupt;
    for shift in 0..8.min(p.len().saturating_sub(7)) {
        let Some((k, w)) = decode_any(first_word(&p[shift..])) else {
            continue;
        };
        match check_at(p, shift, k, w) {
            Check::Intact(k) => return Check::Intact(k),
            Check::Mixed => best = Check::Mixed,
            Check::Corrupt => {}
        }
    }
    if best == Check::Corrupt && p.len() < 15 {
        return Check::Intact(None);
    }
    best
}

/// The datagram number and word index `bytes` names as some word, if any.
fn decode_any(bytes: [u8; 8]) -> Option<(u64, usize)> {
    let x = u64::from_be_bytes(bytes) ^ MASK;
    let w = ((x >> 8) & 0xffff) as usize;
    decode(bytes, w).map(|k| (k, w))
}

/// Judges `p` as the bytes of datagram `k`'s payload whose word `w`
/// starts at `p[shift]`.
fn check_at(p: &[u8], shift: usize, k: u64, w: usize) -> Check {
    if shift > 8 * w {
        return Check::Corrupt;
    }
    if shift > 0 && p[..shift] != word(k, w - 1)[8 - shift..] {
        return Check::Corrupt;
    }
    let mut mixed = false;
    let mut words = p[shift..].chunks_exact(8);
    let mut at = w;
    for chunk in &mut words {
        let got = first_word(chunk);
        if u64::from_be_bytes(got) != word_u64(k, at) {
            if decode(got, at).is_none() {
                return Check::Corrupt;
            }
            mixed = true;
        }
        at += 1;
    }
    let tail = words.remainder();
    if tail != &word(k, at)[..tail.len()] {
        return Check::Corrupt;
    }
    if mixed {
        Check::Mixed
    } else {
        Check::Intact(Some(k))
    }
}

/// The first 8 bytes of `p` (at least 8 long).
fn first_word(p: &[u8]) -> [u8; 8] {
    let mut b = [0; 8];
    b.copy_from_slice(&p[..8]);
    b
}

/// The datagram an IP fragment of a UDP datagram belongs to: `ip_payload`
/// is the fragment's IP payload, `offset` its place in the datagram's (a
/// multiple of 8; the UDP header is at 0). `None` when the fragment holds
/// no whole word at a word's place.
pub fn of_fragment(offset: usize, ip_payload: &[u8]) -> Option<u64> {
    let (at, w) = word_place(offset)?;
    let b = ip_payload.get(at..at + 8)?;
    decode(first_word(b), w)
}

/// [`of_fragment`] of a fragment in a packet buffer (its network header
/// set; its payload may sit in page fragments). Copies 8 bytes, allocates
/// nothing.
pub fn of_packet(pkt: &PacketBuf) -> Option<u64> {
    let h = pkt.network_header();
    let ihl = usize::from(*h.first()? & 0x0f) * 4;
    let frag = u16::from_be_bytes([*h.get(6)?, *h.get(7)?]);
    let (at, w) = word_place(usize::from(frag & 0x1fff) * 8)?;
    let net = usize::from(pkt.meta.network_header).checked_sub(pkt.data_offset())?;
    let mut b = [0; 8];
    pkt.copy_bits(net + ihl + at, &mut b).then_some(())?;
    decode(b, w)
}

/// Where in a fragment's IP payload at `offset` its first whole word is,
/// and that word's index in the UDP payload.
fn word_place(offset: usize) -> Option<(usize, usize)> {
    match offset {
        0 => Some((UDP_HEADER, 0)),
        o if o % 8 == 0 => Some((0, (o - UDP_HEADER) / 8)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_names_its_datagram_and_place() {
        let mut p = vec![0; 8000];
        fill(123_456_789, &mut p);
        assert_eq!(check(&p), Check::Intact(Some(123_456_789)));
        assert_eq!(decode(first_word(&p[800..]), 100), Some(123_456_789));
        assert_eq!(decode(first_word(&p[800..]), 101), None);
        // IP payload offset 1480: the UDP header is 8 bytes before.
        let mut ip = vec![0; 8];
        ip.extend_from_slice(&p);
        assert_eq!(of_fragment(1480, &ip[1480..]), Some(123_456_789));
        assert_eq!(of_fragment(0, &ip[..1480]), Some(123_456_789));
    }

    #[test]
    fn a_mix_of_two_datagrams_is_told_from_corruption() {
        let (mut a, mut b) = (vec![0; 64], vec![0; 64]);
        fill(5, &mut a);
        fill(65_541, &mut b);
        let mut mix = a.clone();
        mix[24..].copy_from_slice(&b[24..]);
        assert_eq!(check(&mix), Check::Mixed);
        let mut bad = a.clone();
        bad[30] ^= 0x10;
        assert_eq!(check(&bad), Check::Corrupt);
        assert_eq!(check(&[0; 15]), Check::Corrupt);
    }

    #[test]
    fn a_gso_piece_from_any_offset_is_its_datagram_s() {
        let mut p = vec![0; 3000];
        fill(77, &mut p);
        for (from, to) in [(1000, 2000), (1001, 2002), (2996, 3000), (13, 40)] {
            assert!(
                matches!(check(&p[from..to]), Check::Intact(_)),
                "{from}..{to}"
            );
        }
        assert_eq!(check(&p[1001..2002]), Check::Intact(Some(77)));
        let mut bad = p[1001..2002].to_vec();
        bad[500] ^= 1;
        assert_eq!(check(&bad), Check::Corrupt);
    }
}
