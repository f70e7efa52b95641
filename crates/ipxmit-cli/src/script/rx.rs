//! The receive-side lines of a script: `inject dev D frame HEX`,
//! `inject dev D icmp frag-needed mtu N from A` and `recv NAME` (parsed
//! here; `recv` is carried out with the sockets in [`super::exec`]).
//!
//! `inject` hands a frame to the device's receive path as its driver would
//! (`netif_receive_skb`): ARP, IPv4 input, local delivery to the script's
//! sockets. The ICMP form builds what a router on the path would send about
//! the last IPv4 datagram the device sent (its first fragment: the IP
//! header and 8 bytes, RFC 792), from `A` to that datagram's source, with
//! the next-hop MTU `N` (RFC 1191).

use std::net::Ipv4Addr;

use ipxmit::wire::icmp::{IcmpPacket, DEST_UNREACH, FRAG_NEEDED, HEADER_LEN};
use ipxmit::wire::{IpProtocol, Ipv4Packet};
use ipxmit::{LinkType, NetDevice, Stack};

use super::parse::{Command, ParseError};

/// What an `inject` line feeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inject {
    /// `frame HEX`: a whole frame (link header first on an Ethernet link).
    Frame(Vec<u8>),
    /// `icmp frag-needed mtu N from A`.
    FragNeeded {
        /// The next-hop MTU.
        mtu: u16,
        /// The router that sends it.
        from: Ipv4Addr,
    },
}

/// Why an `inject` could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// No IPv4 datagram to quote.
    #[error("inject: {0} has sent no IPv4 datagram to quote")]
    NothingSent(String),
}

fn missing(what: &'static str) -> ParseError {
    ParseError::Missing {
        cmd: "inject",
        what,
    }
}

fn invalid(what: &'static str, value: &str, hint: &str) -> ParseError {
    ParseError::Invalid {
        cmd: "inject",
        what,
        value: format!("\"{value}\""),
        hint: format!(": {hint}"),
    }
}

fn unexpected(w: &str) -> ParseError {
    ParseError::Unexpected {
        cmd: "inject",
        word: format!("\"{w}\""),
    }
}

/// `inject dev D frame HEX` / `inject dev D icmp frag-needed mtu N from A`.
pub fn parse_inject(rest: &[&str]) -> Result<Command, ParseError> {
    let mut it = rest.iter().copied();
    match it.next() {
        Some("dev") => {}
        Some(w) => return Err(unexpected(w)),
        None => return Err(missing("dev DEV")),
    }
    let dev = it.next().ok_or(missing("device name"))?.to_string();
    let what = match it.next() {
        Some("frame") => {
            let hex = it.next().ok_or(missing("frame bytes (hex)"))?;
            Inject::Frame(parse_hex(hex)?)
        }
        Some("icmp") => parse_frag_needed(&mut it)?,
        Some(w) => return Err(unexpected(w)),
        None => return Err(missing("frame HEX or icmp frag-needed")),
    };
    if let Some(w) = it.next() {
        return Err(unexpected(w));
    }
    Ok(Command::Inject { dev, what })
}

/// `frag-needed mtu N from A`.
fn parse_frag_needed<'a>(it: &mut impl Iterator<Item = &'a str>) -> Result<Inject, ParseError> {
    match it.next() {
        Some("frag-needed") => {}
        Some(w) => return Err(invalid("ICMP message", w, "only frag-needed")),
        None => return Err(missing("frag-needed")),
    }
    let (mut mtu, mut from) = (None, None);
    while mtu.is_none() || from.is_none() {
        match it.next() {
            Some("mtu") => {
                let v = it.next().ok_or(missing("MTU"))?;
                mtu = Some(v.parse().map_err(|_| invalid("MTU", v, "0..65535"))?);
            }
            Some("from") => {
                let v = it.next().ok_or(missing("sender address"))?;
                from = Some(v.parse().map_err(|_| invalid("address", v, "IPv4"))?);
            }
            Some(w) => return Err(unexpected(w)),
            None if mtu.is_none() => return Err(missing("mtu N")),
            None => return Err(missing("from A")),
        }
    }
    Ok(Inject::FragNeeded {
        mtu: mtu.unwrap_or_default(),
        from: from.unwrap_or(Ipv4Addr::UNSPECIFIED),
    })
}

/// Hex bytes, pairs of digits (`:` or `.` between bytes allowed).
fn parse_hex(s: &str) -> Result<Vec<u8>, ParseError> {
    let digits: Vec<u8> = s.bytes().filter(|b| !matches!(b, b':' | b'.')).collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return Err(invalid("frame", s, "an even number of hex digits"));
    }
    digits
        .chunks(2)
        .map(|p| {
            let t = std::str::from_utf8(p).unwrap_or("");
            u8::from_str_radix(t, 16).map_err(|_| invalid("frame", s, "hex digits"))
        })
        .collect()
}

/// Carries out an `inject` on `dev`: the frame handed to its receive path.
pub fn inject(stack: &Stack, dev: &NetDevice, what: &Inject) -> Result<(), InjectError> {
    let frame = match what {
        Inject::Frame(f) => f.clone(),
        Inject::FragNeeded { mtu, from } => frag_needed_frame(dev, *mtu, *from)?,
    };
    stack.receive(dev, &frame);
    Ok(())
}

/// The frame of an ICMP "fragmentation needed" from `from` with `mtu`
/// about the last IPv4 datagram `dev` sent: to the device's address from
/// the next hop the datagram went to, TOS 0xc0 and TTL 64 as a Linux
/// router sends it.
fn frag_needed_frame(dev: &NetDevice, mtu: u16, from: Ipv4Addr) -> Result<Vec<u8>, InjectError> {
    let sent = dev
        .last_tx()
        .ok_or_else(|| InjectError::NothingSent(dev.name().to_string()))?;
    let quote = sent.quote();
    let to = sent.header().src_addr();
    let mut f = Vec::with_capacity(14 + 20 + HEADER_LEN + quote.len());
    if dev.link() == LinkType::Ethernet {
        let l = sent.link_header();
        f.extend_from_slice(&l[6..12]);
        f.extend_from_slice(&l[..6]);
        f.extend_from_slice(&[0x08, 0x00]);
    }
    let ip_at = f.len();
    f.resize(ip_at + 20 + HEADER_LEN + quote.len(), 0);
    let mut icmp = IcmpPacket::new_unchecked(&mut f[ip_at + 20..]);
    icmp.set_msg_type(DEST_UNREACH);
    icmp.set_code(FRAG_NEEDED);
    icmp.set_rest(u32::from(mtu));
    icmp.data_mut().copy_from_slice(quote);
    icmp.fill_checksum();
    let total = (20 + HEADER_LEN + quote.len()) as u16;
    let mut ip = Ipv4Packet::new_unchecked(&mut f[ip_at..]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_tos(0xc0);
    ip.set_total_len(total);
    ip.set_ttl(64);
    ip.set_protocol(IpProtocol::ICMP);
    ip.set_src_addr(from);
    ip.set_dst_addr(to);
    ip.fill_checksum();
    Ok(f)
}

/// `recv NAME`.
pub fn parse_recv(rest: &[&str]) -> Result<Command, ParseError> {
    match rest {
        [name] => Ok(Command::Recv {
            sock: name.to_string(),
        }),
        [] => Err(ParseError::Missing {
            cmd: "recv",
            what: "socket name",
        }),
        [_, w, ..] => Err(ParseError::Unexpected {
            cmd: "recv",
            word: format!("\"{w}\""),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inject_lines_parse_and_refuse_as_documented() {
        let c = parse_inject(&["dev", "eth0", "frame", "00:01.ff"]).unwrap();
        let want = Command::Inject {
            dev: "eth0".into(),
            what: Inject::Frame(vec![0, 1, 0xff]),
        };
        assert_eq!(c, want);
        let c = parse_inject(&[
            "dev",
            "e",
            "icmp",
            "frag-needed",
            "from",
            "10.0.0.9",
            "mtu",
            "1200",
        ]);
        let want = Inject::FragNeeded {
            mtu: 1200,
            from: Ipv4Addr::new(10, 0, 0, 9),
        };
        assert_eq!(
            c.unwrap(),
            Command::Inject {
                dev: "e".into(),
                what: want
            }
        );
        assert!(parse_inject(&["dev", "e", "frame", "abc"]).is_err());
        assert!(parse_inject(&["dev", "e", "frame", "zz"]).is_err());
        assert!(parse_inject(&["dev", "e", "icmp", "frag-needed", "mtu", "1200"]).is_err());
        assert!(parse_inject(&["dev", "e", "icmp", "echo"]).is_err());
        assert!(parse_recv(&["a", "b"]).is_err());
    }
}
