//! The workloads both sides run: one UDP send is `payload` bytes, written in
//! `pieces` with `MSG_MORE` between them, optionally a UDP GSO super-datagram
//! (`UDP_SEGMENT`), with the sink's checksum offload on or off.

/// The MTU of both sinks.
pub const MTU: usize = 1500;
/// IPv4 header without options.
const IP_HLEN: usize = 20;
/// UDP header.
const UDP_HLEN: usize = 8;

/// One workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    /// Name in tables and `--cases`.
    pub name: &'static str,
    /// Payload bytes per send (a whole GSO super-datagram for GSO).
    pub payload: usize,
    /// Pieces per datagram written with `MSG_MORE` (1: one plain send).
    pub pieces: usize,
    /// `UDP_SEGMENT` size, 0 for none.
    pub gso: u16,
    /// The sink offloads the checksum (`NETIF_F_HW_CSUM` / `tx-checksumming`).
    pub csum_offload: bool,
}

const fn case(name: &'static str, payload: usize) -> Case {
    Case {
        name,
        payload,
        pieces: 1,
        gso: 0,
        csum_offload: true,
    }
}

/// The cases of the sink table, in order.
pub const CASES: [Case; 8] = [
    case("18B", 18),
    case("1472B", 1472),
    case("8000B", 8000),
    case("65000B", 65000),
    Case {
        pieces: 8,
        ..case("8x1000B-more", 8000)
    },
    Case {
        gso: 1472,
        ..case("gso-64k/1472", 44 * 1472)
    },
    Case {
        csum_offload: false,
        ..case("1472B-swcsum", 1472)
    },
    Case {
        csum_offload: false,
        ..case("65000B-swcsum", 65000)
    },
];

impl Case {
    /// UDP datagrams one send puts on the wire (GSO segments count one each).
    pub fn datagrams_per_send(&self) -> u64 {
        if self.gso == 0 {
            1
        } else {
            self.payload.div_ceil(usize::from(self.gso)).max(1) as u64
        }
    }

    /// Frames the sink sees per send: one per IP fragment, or one GSO frame
    /// when the sink takes UDP GSO.
    pub fn frames_per_send(&self, sink_gso: bool) -> u64 {
        if self.gso != 0 {
            return if sink_gso {
                1
            } else {
                self.datagrams_per_send()
            };
        }
        let l4 = UDP_HLEN + self.payload;
        if IP_HLEN + l4 <= MTU {
            1
        } else {
            l4.div_ceil((MTU - IP_HLEN) & !7) as u64
        }
    }

    /// The lengths of the pieces of one datagram (the last takes the rest).
    pub fn piece_lens(&self) -> Vec<usize> {
        let n = self.pieces.max(1);
        let step = self.payload / n;
        (0..n)
            .map(|i| {
                if i + 1 == n {
                    self.payload - step * (n - 1)
                } else {
                    step
                }
            })
            .collect()
    }

    /// A deterministic payload of the case's size.
    pub fn payload_bytes(&self) -> Vec<u8> {
        (0..self.payload).map(|i| (i * 7 + 1) as u8).collect()
    }
}

/// Selects cases by a comma list of names (all when `None`).
pub fn select(filter: Option<&str>) -> Result<Vec<Case>, String> {
    let Some(f) = filter else {
        return Ok(CASES.to_vec());
    };
    let mut out = Vec::new();
    for w in f.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match CASES.iter().find(|c| c.name.eq_ignore_ascii_case(w)) {
            Some(c) => out.push(*c),
            None => {
                let names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
                return Err(format!("unknown case {w:?} (one of {})", names.join(", ")));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_counts_at_mtu_1500() {
        let f = |n: &str| {
            CASES
                .iter()
                .find(|c| c.name == n)
                .unwrap()
                .frames_per_send(true)
        };
        assert_eq!(f("18B"), 1);
        assert_eq!(f("1472B"), 1);
        assert_eq!(f("8000B"), 6);
        assert_eq!(f("65000B"), 44);
        assert_eq!(f("8x1000B-more"), 6);
        assert_eq!(f("gso-64k/1472"), 1);
        assert_eq!(CASES[5].frames_per_send(false), 44);
        assert_eq!(CASES[5].datagrams_per_send(), 44);
    }

    #[test]
    fn pieces_add_up() {
        assert_eq!(CASES[4].piece_lens(), vec![1000; 8]);
        assert_eq!(CASES[0].piece_lens(), vec![18]);
    }

    #[test]
    fn select_by_name() {
        assert_eq!(select(Some("18b, 65000B")).unwrap().len(), 2);
        assert!(select(Some("nope")).is_err());
        assert_eq!(select(None).unwrap().len(), CASES.len());
    }
}
