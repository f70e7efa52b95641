//! The workloads both sides run: one UDP send is `payload` bytes, written in
//! `pieces` with `MSG_MORE` between them, optionally a UDP GSO super-datagram
//! (`UDP_SEGMENT`), with the sink's checksum offload on or off, its own root
//! qdisc or another one, with or without an accept-all filter on the
//! output hook, with or without ten policy rules and five numbered
//! tables ([`super::policy`]), and with or without an SNAT'd flow.

/// The MTU of both sinks.
pub const MTU: usize = 1500;
/// IPv4 header without options.
const IP_HLEN: usize = 20;
/// UDP header.
const UDP_HLEN: usize = 8;
/// The root qdisc of the `-pfifo` cases on both sinks, tc syntax.
pub const PFIFO: &str = "pfifo limit 1000";
/// The root qdisc of the `-tbf` cases on both sinks: a rate far above what
/// either side offers (a terabit), so that the shaper works on every
/// packet (tokens, checks, its inner bfifo) but never throttles.
pub const TBF: &str = "tbf rate 1tbit burst 1mb limit 10mb";
/// The root of the `-htb` cases: an htb whose default class is its one
/// leaf, a terabit with a megabyte bucket, so that every packet is
/// classified, queued in the leaf's pfifo, dequeued by the leaf's level
/// and prio and charged, but none waits.
pub const HTB: &str = "handle 1: htb default 1";
/// The classes of the `-htb` cases (after `tc class add dev D`).
pub const HTB_CLASSES: &[&str] =
    &["parent 1: classid 1:1 htb rate 1tbit burst 1mb cburst 1mb quantum 60000"];

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
    /// Root qdisc of both sinks for this case (tc syntax, `handle H:`
    /// first if it needs one); `None` keeps the sink's own (`noqueue`
    /// where the kernel accepts it).
    pub qdisc: Option<&'static str>,
    /// Classes of that root, each the words after `tc class add dev D`.
    pub classes: &'static [&'static str],
    /// One accept-all filter on the output hook: an nftables `accept` rule
    /// in an `output` chain on the kernel side, a `LocalOut` hook returning
    /// `Verdict::Accept` on ipxmit's.
    pub hook: bool,
    /// The ten `ip rule`s and five numbered tables of [`super::policy`],
    /// with the datagrams routed from table 105 by the tenth rule: `ip rule
    /// add` / `ip route add ... table N` on the kernel side (in a namespace
    /// of its own), `Stack::add_rule` / `Stack::add_route` on ipxmit's.
    pub rules: bool,
    /// An SNAT'd flow: a `nat` chain at postrouting whose rule
    /// ([`super::settings::NFT_SNAT_ADD`]) rewrites the datagrams' source
    /// address and port (connection tracking on), the same nft lines on
    /// both sides.
    pub snat: bool,
    /// An nftables ruleset on the output hook ([`NftCase`]), the same nft
    /// commands on both sides.
    pub nft: NftCase,
}

/// The rulesets of the `-nft` cases: table `ip ipxbenchnft`, an `output`
/// filter chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NftCase {
    /// None.
    None,
    /// Twenty rules that do not match the flow (ports, addresses, marks,
    /// a length), then `accept`: each datagram is evaluated by all 21.
    Rules20,
    /// A named set of 1,000 ports (the flow's among them) matched once:
    /// `udp dport @ports accept`.
    Set1000,
}

/// The table of the `-nft` cases.
pub const NFT_TABLE: &str = "ipxbenchnft";

impl NftCase {
    /// The nft commands (the words after `nft`), in order.
    pub fn commands(self) -> Vec<String> {
        let t = NFT_TABLE;
        let mut v = vec![
            format!("add table ip {t}"),
            format!(
                "add chain ip {t} out {{ type filter hook output priority 0; policy accept; }}"
            ),
        ];
        let rule = |r: String| format!("add rule ip {t} out {r}");
        match self {
            NftCase::None => return Vec::new(),
            NftCase::Rules20 => {
                for i in 0..20u32 {
                    v.push(rule(match i % 4 {
                        0 => format!("udp dport {} counter drop", 1000 + i),
                        1 => format!("ip daddr 192.0.2.{i} drop"),
                        2 => format!("meta mark 0x{:x} drop", 100 + i),
                        _ => format!("ip saddr 198.51.100.0/24 udp sport {} drop", 2000 + i),
                    }));
                }
                v.push(rule("accept".into()));
            }
            NftCase::Set1000 => {
                v.push(format!("add set ip {t} ports {{ type inet_service; }}"));
                let ports: Vec<String> = std::iter::once(9)
                    .chain(20000..20999)
                    .map(|p: u32| p.to_string())
                    .collect();
                v.push(format!(
                    "add element ip {t} ports {{ {} }}",
                    ports.join(", ")
                ));
                v.push(rule("udp dport @ports accept".into()));
            }
        }
        v
    }
}

const fn case(name: &'static str, payload: usize) -> Case {
    Case {
        name,
        payload,
        pieces: 1,
        gso: 0,
        csum_offload: true,
        qdisc: None,
        classes: &[],
        hook: false,
        rules: false,
        snat: false,
        nft: NftCase::None,
    }
}

/// The cases of the sink table, in order.
pub const CASES: [Case; 19] = [
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
    Case {
        qdisc: Some(PFIFO),
        ..case("18B-pfifo", 18)
    },
    Case {
        qdisc: Some(PFIFO),
        ..case("1472B-pfifo", 1472)
    },
    Case {
        hook: true,
        ..case("18B-hook", 18)
    },
    Case {
        qdisc: Some(TBF),
        ..case("18B-tbf", 18)
    },
    Case {
        qdisc: Some(TBF),
        ..case("1472B-tbf", 1472)
    },
    Case {
        qdisc: Some(HTB),
        classes: HTB_CLASSES,
        ..case("18B-htb", 18)
    },
    Case {
        qdisc: Some(HTB),
        classes: HTB_CLASSES,
        ..case("1472B-htb", 1472)
    },
    Case {
        rules: true,
        ..case("18B-rules", 18)
    },
    Case {
        snat: true,
        ..case("18B-snat", 18)
    },
    Case {
        nft: NftCase::Rules20,
        ..case("18B-nft20", 18)
    },
    Case {
        nft: NftCase::Set1000,
        ..case("18B-nftset", 18)
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

/// The case named `name` (ASCII case ignored).
pub fn find(name: &str) -> Option<Case> {
    CASES
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(name))
        .copied()
}

/// [`find`], or the error that names the cases there are.
pub fn find_named(name: &str) -> Result<Case, String> {
    find(name).ok_or_else(|| {
        let names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
        format!("unknown case {name:?} (one of {})", names.join(", "))
    })
}

/// Selects cases by a comma list of names (all when `None`).
pub fn select(filter: Option<&str>) -> Result<Vec<Case>, String> {
    let Some(f) = filter else {
        return Ok(CASES.to_vec());
    };
    let mut out = Vec::new();
    for w in f.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        out.push(find_named(w)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipxmit::sched::QdiscSpec;

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

    #[test]
    fn names_are_unique() {
        for (i, a) in CASES.iter().enumerate() {
            assert!(
                CASES[i + 1..].iter().all(|b| b.name != a.name),
                "{} twice",
                a.name
            );
        }
    }

    #[test]
    fn pfifo_and_hook_cases_are_their_base_case_plus_one_setting() {
        let base = |n: &str| find(n).unwrap();
        let pfifo = |n: &'static str| Case {
            name: n,
            qdisc: Some(PFIFO),
            ..base(n.trim_end_matches("-pfifo"))
        };
        assert_eq!(base("18B-pfifo"), pfifo("18B-pfifo"));
        assert_eq!(base("1472B-pfifo"), pfifo("1472B-pfifo"));
        let hook = Case {
            name: "18B-hook",
            hook: true,
            ..base("18B")
        };
        assert_eq!(base("18B-hook"), hook);
        let with_qdisc: Vec<&str> = CASES
            .iter()
            .filter(|c| c.qdisc.is_some())
            .map(|c| c.name)
            .collect();
        assert_eq!(
            with_qdisc,
            [
                "18B-pfifo",
                "1472B-pfifo",
                "18B-tbf",
                "1472B-tbf",
                "18B-htb",
                "1472B-htb"
            ]
        );
        let tbf = |n: &'static str| Case {
            name: n,
            qdisc: Some(TBF),
            ..base(n.trim_end_matches("-tbf"))
        };
        assert_eq!(base("18B-tbf"), tbf("18B-tbf"));
        assert_eq!(base("1472B-tbf"), tbf("1472B-tbf"));
        assert_eq!(CASES.iter().filter(|c| c.hook).count(), 1);
        let rules = Case {
            name: "18B-rules",
            rules: true,
            ..base("18B")
        };
        assert_eq!(base("18B-rules"), rules);
        assert_eq!(CASES.iter().filter(|c| c.rules).count(), 1);
        let snat = Case {
            name: "18B-snat",
            snat: true,
            ..base("18B")
        };
        assert_eq!(base("18B-snat"), snat);
        assert_eq!(CASES.iter().filter(|c| c.snat).count(), 1);
        let nft = |n, nft| Case {
            name: n,
            nft,
            ..base("18B")
        };
        assert_eq!(base("18B-nft20"), nft("18B-nft20", NftCase::Rules20));
        assert_eq!(base("18B-nftset"), nft("18B-nftset", NftCase::Set1000));
        assert_eq!(NftCase::Rules20.commands().len(), 23);
        assert!(NftCase::Set1000.commands()[3].ends_with(", 20998 }"));
        assert_eq!(base("18B-pfifo").frames_per_send(true), 1);
        assert_eq!(base("1472B-pfifo").frames_per_send(false), 1);
        assert_eq!(base("18B-hook").datagrams_per_send(), 1);
    }

    #[test]
    fn the_new_cases_are_selected_by_name_in_order() {
        let names: Vec<&str> = select(Some("18b-HOOK,18B-pfifo, 1472b-pfifo,18B"))
            .unwrap()
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["18B-hook", "18B-pfifo", "1472B-pfifo", "18B"]);
        let names: Vec<&str> = select(Some("18B,18b-RULES"))
            .unwrap()
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["18B", "18B-rules"]);
        assert!(select(Some("18B-fifo")).is_err());
        assert_eq!(find("18B-fifo"), None);
    }

    #[test]
    fn the_pfifo_qdisc_is_one_ipxmit_accepts() {
        let spec: QdiscSpec = PFIFO.parse().unwrap();
        assert_eq!(spec, QdiscSpec::Pfifo { limit: Some(1000) });
        assert_eq!(spec.to_string(), PFIFO);
    }
}
