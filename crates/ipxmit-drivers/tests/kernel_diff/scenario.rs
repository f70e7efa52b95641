//! What a scenario is (a socket, its options and a list of sends), what running
//! one yields, and the generated scenario lists.

use std::net::Ipv4Addr;

use super::kernel::ErrEntry;

/// `MSG_PROBE`.
pub const PROBE: u32 = 0x10;
/// `MSG_DONTWAIT`.
pub const DONTWAIT: u32 = 0x40;
/// `MSG_MORE`.
pub const MORE: u32 = 0x8000;

/// `IP_PMTUDISC_*` values.
pub mod pmtu {
    /// Never DF.
    pub const DONT: u8 = 0;
    /// Always DF, no local fragmentation.
    pub const DO: u8 = 2;
    /// DF, device MTU.
    pub const PROBE: u8 = 3;
    /// Names.
    pub const NAMES: [&str; 6] = ["dont", "want", "do", "probe", "interface", "omit"];
}

/// The socket a scenario uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `socket(AF_INET, SOCK_DGRAM, 0)`.
    Udp,
    /// `socket(AF_INET, SOCK_RAW, proto)`.
    Raw(u8),
    /// A raw socket with `IP_HDRINCL` (set explicitly unless proto is 255).
    Hdrincl(u8),
}

/// Socket options, set in this order before the first step.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    /// `IP_RECVERR`.
    pub recverr: bool,
    /// `IP_MTU_DISCOVER`.
    pub pmtu: Option<u8>,
    /// `IP_TOS`.
    pub tos: Option<u8>,
    /// `IP_TTL`.
    pub ttl: Option<u8>,
    /// `IP_OPTIONS` bytes as given to setsockopt.
    pub ip_options: Option<Vec<u8>>,
    /// `SO_NO_CHECK`.
    pub no_check: bool,
    /// `UDP_SEGMENT`.
    pub gso: Option<u16>,
    /// Connect to the peer and send without a destination.
    pub connect: bool,
    /// Keep the default `SO_SNDBUF` (otherwise both sides get 32 MiB).
    pub default_sndbuf: bool,
    /// `SO_SNDBUF` (doubled by both stacks, at least 4608).
    pub sndbuf: Option<i32>,
    /// Send to 10.77.N.x instead of the peer's 10.77.N.2 (with a source route,
    /// whose first hop is the peer).
    pub dest_host: Option<u8>,
}

/// One step.
#[derive(Clone, Debug)]
pub enum Step {
    /// `sendto(len bytes, flags)` (`send` when connected).
    Send {
        /// Bytes.
        len: usize,
        /// `MSG_*`.
        flags: u32,
    },
    /// An `IP_HDRINCL` send: a user IPv4 header of `ihl` words, then payload up
    /// to `len` bytes in all.
    Hdr {
        /// Total bytes given to sendto.
        len: usize,
        /// IHL written in the header.
        ihl: u8,
        /// DF in the header.
        df: bool,
        /// ID in the header.
        id: u16,
        /// Leave the source address 0 (the kernel fills it in).
        saddr_zero: bool,
        /// `MSG_*`.
        flags: u32,
    },
    /// `sendto` naming the destination even on a connected socket.
    SendTo {
        /// Bytes.
        len: usize,
        /// `MSG_*`.
        flags: u32,
    },
    /// `sendmmsg` of messages of these lengths (to the destination, or
    /// without one when connected); ipxmit's side is `UdpSocket::send_batch`.
    Mmsg {
        /// Bytes of each message.
        lens: Vec<usize>,
        /// `MSG_*`.
        flags: u32,
    },
    /// Messages of these lengths, each with `MSG_MORE` when its flag is
    /// set, sent with `flags`: ipxmit's side is one `UdpSocket::send_batch`
    /// whose messages carry `MSG_MORE` of their own; the kernel's `sendmmsg`
    /// has one flags value for all messages, so its side is `sendmsg` one
    /// by one, the result taken as `sendmmsg` reports it (the count sent;
    /// the error when the first fails).
    Pieces {
        /// Bytes of each message and whether it carries `MSG_MORE`.
        msgs: Vec<(usize, bool)>,
        /// `MSG_*` of the call.
        flags: u32,
    },
    /// `setsockopt(UDP_CORK)`.
    Cork(bool),
    /// `setsockopt(UDP_SEGMENT)`.
    Gso(u16),
}

/// A scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Group name (for the report).
    pub group: &'static str,
    /// Unique name.
    pub name: String,
    /// Device MTU.
    pub mtu: u32,
    /// Socket type.
    pub kind: Kind,
    /// Options.
    pub opts: Opts,
    /// Steps.
    pub steps: Vec<Step>,
    /// Consecutive datagrams must have consecutive IDs (connected sockets, GSO
    /// segments of one send) on both sides.
    pub seq_ids: bool,
}

/// What running a scenario on one side gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Results of the option setup (name, errno).
    pub setup: Vec<(&'static str, Result<(), i32>)>,
    /// Result of each step: bytes sent or errno.
    pub returns: Vec<Result<usize, i32>>,
    /// The error queue after the last step.
    pub errq: Vec<ErrEntry>,
    /// Frames on the wire, in order.
    pub frames: Vec<Vec<u8>>,
}

/// The destination of a scenario: the peer, or another host of its subnet.
pub fn destination(s: &Scenario, peer: Ipv4Addr) -> Ipv4Addr {
    let o = peer.octets();
    Ipv4Addr::new(o[0], o[1], o[2], s.opts.dest_host.unwrap_or(o[3]))
}

/// Option bytes with the placeholder subnet 10.77.0.x replaced by the
/// namespace pair's 10.77.N.x (source routes name real hosts).
pub fn fix_options(raw: &[u8], peer: Ipv4Addr) -> Vec<u8> {
    let mut v = raw.to_vec();
    let o = peer.octets();
    let mut i = 0;
    while i + 4 <= v.len() {
        if v[i..i + 3] == [10, 77, 0] {
            v[i + 2] = o[2];
            i += 4;
        } else {
            i += 1;
        }
    }
    v
}

/// The payload bytes of step `step` of scenario `scn`.
pub fn payload(scn: usize, step: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i.wrapping_mul(31) ^ (i >> 7)) + step * 71 + scn * 13) as u8)
        .collect()
}

/// The data an `IP_HDRINCL` step gives to sendto.
pub fn hdrincl_bytes(scn: usize, step: usize, s: &Step, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let Step::Hdr {
        len,
        ihl,
        df,
        id,
        saddr_zero,
        ..
    } = *s
    else {
        unreachable!()
    };
    let mut v = payload(scn, step, len);
    if len >= 20 {
        v[0] = 0x40 | ihl;
        v[1] = 0;
        v[2..4].copy_from_slice(&0u16.to_be_bytes());
        v[4..6].copy_from_slice(&id.to_be_bytes());
        v[6..8].copy_from_slice(&(if df { 0x4000u16 } else { 0 }).to_be_bytes());
        v[8] = 64;
        v[9] = 253;
        v[10] = 0;
        v[11] = 0;
        let s = if saddr_zero { [0; 4] } else { src.octets() };
        v[12..16].copy_from_slice(&s);
        v[16..20].copy_from_slice(&dst.octets());
        let hl = (ihl as usize * 4).min(len);
        for b in v.iter_mut().take(hl).skip(20) {
            *b = 1; // NOPs as user options
        }
    } else if !v.is_empty() {
        v[0] = 0x45;
    }
    v
}

/// A small deterministic generator for piece lists.
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Next value.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Fragment payload unit at `mtu` with `optlen` option bytes.
pub fn frag_unit(mtu: u32, optlen: usize) -> usize {
    (mtu as usize - 20 - optlen) & !7
}

fn one(len: usize) -> Vec<Step> {
    vec![Step::Send { len, flags: 0 }]
}

fn dedup(mut v: Vec<usize>) -> Vec<usize> {
    v.sort_unstable();
    v.dedup();
    v
}

/// Every boundary size of a single datagram at `mtu`: around the MTU, around
/// multiples of the fragment unit, tiny and maximal ones. `hdr` is the
/// transport header length (8 for UDP, 0 for raw), `optlen` the options.
pub fn boundary_sizes(mtu: u32, hdr: usize, optlen: usize) -> Vec<usize> {
    let fit = mtu as usize - 20 - optlen - hdr;
    let fu = frag_unit(mtu, optlen);
    let max = 65535 - 20 - optlen - hdr;
    let mut v = vec![0, 1, 7, 8, 9, fit - 1, fit, fit + 1, max - 1, max, max + 1];
    for k in 2..=3 {
        for d in [-1isize, 0, 1] {
            let s = (k * fu) as isize - hdr as isize + d;
            if s > 0 {
                v.push(s as usize);
            }
        }
    }
    // A last fragment of exactly one byte and of exactly 8 bytes.
    v.push(2 * fu + 1 - hdr);
    v.push(2 * fu + 8 - hdr);
    dedup(v.into_iter().filter(|&s| s <= max + 1).collect())
}

const MTUS: [u32; 9] = [68, 69, 576, 1000, 1279, 1500, 1501, 4000, 9000];

fn scn(
    group: &'static str,
    name: String,
    mtu: u32,
    kind: Kind,
    opts: Opts,
    steps: Vec<Step>,
) -> Scenario {
    Scenario {
        group,
        name,
        mtu,
        kind,
        opts,
        steps,
        seq_ids: false,
    }
}

/// Single UDP sends of every boundary size at every MTU.
pub fn single_udp() -> Vec<Scenario> {
    let mut out = Vec::new();
    for mtu in MTUS {
        for len in boundary_sizes(mtu, 8, 0) {
            out.push(scn(
                "udp-single",
                format!("udp mtu={mtu} len={len}"),
                mtu,
                Kind::Udp,
                Opts::default(),
                one(len),
            ));
        }
        // Over 0xffff: refused before anything else.
        out.push(scn(
            "udp-single",
            format!("udp mtu={mtu} len=65536"),
            mtu,
            Kind::Udp,
            Opts::default(),
            one(65536),
        ));
    }
    out
}

fn pieces(rng: &mut Rng, mtu: u32, hdr: usize, optlen: usize) -> Vec<usize> {
    let fu = frag_unit(mtu, optlen);
    let fit = mtu as usize - 20 - optlen - hdr;
    let menu = [
        0,
        1,
        3,
        7,
        8,
        9,
        100,
        fu - 1,
        fu,
        fu + 1,
        fit,
        fit + 1,
        2 * fu - 5,
        1000,
        3000,
    ];
    let n = 2 + rng.below(7);
    let mut v: Vec<usize> = (0..n).map(|_| menu[rng.below(menu.len())]).collect();
    // Keep the datagram legal most of the time (the limit has its own cases).
    while v.iter().sum::<usize>() + hdr + optlen + 20 > 65535 {
        v.pop();
    }
    v
}

/// `MSG_MORE` sequences: 2..8 pieces, the last without `MSG_MORE` (sometimes
/// an empty one).
pub fn msg_more_udp() -> Vec<Scenario> {
    let mut out = Vec::new();
    let mut rng = Rng::new(7);
    for mtu in [68, 69, 76, 577, 1000, 1279, 1500, 1501, 4001, 9000] {
        for k in 0..24 {
            let mut p = pieces(&mut rng, mtu, 8, 0);
            if k % 4 == 0 {
                p.push(0);
            }
            let n = p.len();
            let steps = p
                .iter()
                .enumerate()
                .map(|(i, &len)| {
                    let mut flags = if i + 1 < n { MORE } else { 0 };
                    // Now and then a probe that sends nothing, or a
                    // non-blocking piece.
                    match rng.below(10) {
                        0 if i + 1 < n => flags |= PROBE,
                        1 => flags |= DONTWAIT,
                        _ => {}
                    }
                    Step::Send { len, flags }
                })
                .collect();
            out.push(scn(
                "udp-msg-more",
                format!("udp more mtu={mtu} pieces={p:?}"),
                mtu,
                Kind::Udp,
                Opts::default(),
                steps,
            ));
        }
    }
    // Growing past the limit while corked: the whole pending datagram is lost.
    for mtu in [576, 1500] {
        out.push(scn(
            "udp-msg-more",
            format!("udp more over limit mtu={mtu}"),
            mtu,
            Kind::Udp,
            Opts {
                recverr: true,
                ..Opts::default()
            },
            vec![
                Step::Send {
                    len: 40000,
                    flags: MORE,
                },
                Step::Send {
                    len: 25508,
                    flags: MORE,
                },
                Step::Send { len: 10, flags: 0 },
                Step::Send {
                    len: 40000,
                    flags: MORE,
                },
                Step::Send {
                    len: 25499,
                    flags: 0,
                },
            ],
        ));
    }
    out
}

/// `UDP_CORK` sequences.
pub fn cork_udp() -> Vec<Scenario> {
    let mut out = Vec::new();
    let mut rng = Rng::new(11);
    for mtu in [68, 71, 576, 1279, 1500, 1501, 9000] {
        for k in 0..9 {
            let p = pieces(&mut rng, mtu, 8, 0);
            let mut steps = vec![Step::Cork(true)];
            for (i, &len) in p.iter().enumerate() {
                let flags = if k % 2 == 1 && i % 2 == 0 { MORE } else { 0 };
                steps.push(Step::Send { len, flags });
            }
            steps.push(Step::Cork(false));
            if k % 3 == 0 {
                // A second datagram, then uncorking with nothing pending.
                steps.push(Step::Send { len: 33, flags: 0 });
                steps.push(Step::Cork(true));
                steps.push(Step::Cork(false));
            }
            out.push(scn(
                "udp-cork",
                format!("udp cork mtu={mtu} k={k} pieces={p:?}"),
                mtu,
                Kind::Udp,
                Opts::default(),
                steps,
            ));
        }
    }
    out
}

/// Every PMTU discovery mode, below and above the MTU, alone and corked, with
/// `IP_RECVERR` so refusals show in the error queue.
pub fn pmtudisc() -> Vec<Scenario> {
    let mut out = Vec::new();
    for mode in 0..6u8 {
        let mname = pmtu::NAMES[mode as usize];
        for mtu in [68, 576, 1500, 1501] {
            let fit = mtu as usize - 28;
            for len in [fit, fit + 1, 3 * frag_unit(mtu, 0), 65507] {
                for connect in [false, true] {
                    if connect && len != fit + 1 {
                        continue;
                    }
                    out.push(Scenario {
                        seq_ids: connect,
                        ..scn(
                            "pmtudisc",
                            format!("udp pmtu={mname} mtu={mtu} len={len} connect={connect}"),
                            mtu,
                            Kind::Udp,
                            Opts {
                                recverr: true,
                                pmtu: Some(mode),
                                connect,
                                ..Opts::default()
                            },
                            vec![
                                Step::Send { len, flags: 0 },
                                Step::Send { len: 10, flags: 0 },
                            ],
                        )
                    });
                }
            }
            // Corked past the MTU.
            out.push(scn(
                "pmtudisc",
                format!("udp pmtu={mname} mtu={mtu} corked"),
                mtu,
                Kind::Udp,
                Opts {
                    recverr: true,
                    pmtu: Some(mode),
                    ..Opts::default()
                },
                vec![
                    Step::Send {
                        len: fit - 12,
                        flags: MORE,
                    },
                    Step::Send {
                        len: 20,
                        flags: MORE,
                    },
                    Step::Send { len: 5, flags: 0 },
                    Step::Send { len: 7, flags: 0 },
                ],
            ));
            // Raw socket, same modes.
            let rfit = mtu as usize - 20;
            for len in [rfit, rfit + 1] {
                out.push(scn(
                    "pmtudisc",
                    format!("raw pmtu={mname} mtu={mtu} len={len}"),
                    mtu,
                    Kind::Raw(253),
                    Opts {
                        recverr: true,
                        pmtu: Some(mode),
                        ..Opts::default()
                    },
                    one(len),
                ));
            }
        }
    }
    out
}

/// TOS, TTL and `SO_NO_CHECK`.
pub fn tos_ttl_nocheck() -> Vec<Scenario> {
    let mut out = Vec::new();
    for (tos, ttl) in [(0x10u8, 1u8), (0x03, 255), (0xb8, 17), (0xff, 64)] {
        for len in [100, 3000] {
            out.push(scn(
                "tos-ttl",
                format!("udp tos={tos:#x} ttl={ttl} len={len}"),
                1500,
                Kind::Udp,
                Opts {
                    tos: Some(tos),
                    ttl: Some(ttl),
                    ..Opts::default()
                },
                one(len),
            ));
        }
        out.push(scn(
            "tos-ttl",
            format!("raw tos={tos:#x} ttl={ttl}"),
            576,
            Kind::Raw(253),
            Opts {
                tos: Some(tos),
                ttl: Some(ttl),
                ..Opts::default()
            },
            one(1200),
        ));
    }
    for mtu in [68, 1500] {
        for steps in [
            one(0),
            one(200),
            one(4000),
            vec![
                Step::Send {
                    len: 1000,
                    flags: MORE,
                },
                Step::Send {
                    len: 1000,
                    flags: 0,
                },
            ],
        ] {
            out.push(scn(
                "no-check",
                format!("udp no_check mtu={mtu} steps={steps:?}"),
                mtu,
                Kind::Udp,
                Opts {
                    no_check: true,
                    ..Opts::default()
                },
                steps,
            ));
        }
    }
    out
}

/// IP option sets as given to `IP_OPTIONS` (name, bytes).
pub fn option_sets() -> Vec<(&'static str, Vec<u8>)> {
    let mut rr3 = vec![7, 15, 4];
    rr3.resize(15, 0);
    let mut rr9 = vec![7, 39, 4];
    rr9.resize(39, 0);
    let mut ra_rr = vec![148, 4, 0, 0, 7, 11, 4];
    ra_rr.resize(15, 0);
    vec![
        ("ra", vec![148, 4, 0, 0]),
        ("rr3", rr3),
        ("ra+rr2", ra_rr),
        ("nop+rr1", vec![1, 7, 7, 4, 0, 0, 0, 0]),
        ("rr9-max", rr9),
        ("rr-full", vec![7, 7, 8, 10, 0, 0, 1]),
        ("ra-end-nops", vec![148, 4, 0, 0, 0, 1, 1, 1]),
        ("unknown-copied", vec![1, 0x99, 6, 1, 2, 3, 4]),
        ("unknown+ra", vec![0x1e, 3, 9, 148, 4, 0, 0]),
        ("odd-len-ra", vec![148, 4, 0, 1, 1]),
        ("ts-only", vec![68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        (
            "ts-addr",
            vec![68, 20, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            "ts-prespec-zero",
            vec![68, 12, 5, 3, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            "ts-prespec-remote",
            vec![68, 12, 5, 3, 8, 8, 8, 8, 0, 0, 0, 0],
        ),
        ("ts-full", vec![68, 8, 9, 0x20, 1, 2, 3, 4]),
        ("ts-flag2", vec![68, 8, 5, 2, 0, 0, 0, 0]),
        (
            "ra+ts+rr",
            vec![148, 4, 0, 0, 68, 8, 5, 0, 0, 0, 0, 0, 7, 7, 4, 0, 0, 0, 0],
        ),
    ]
}

/// Invalid option sets (setsockopt must fail the same way).
pub fn bad_option_sets() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("rr-len2", vec![7, 2, 4, 0]),
        ("rr-ptr3", vec![7, 7, 3, 0, 0, 0, 0, 0]),
        ("rr-short-slot", vec![7, 6, 4, 0, 0, 0, 0, 0]),
        ("len-past-end", vec![148, 6, 0, 0]),
        ("len-1", vec![148, 1, 0, 0]),
        ("two-rr", vec![7, 3, 4, 7, 3, 4, 0, 0]),
        ("41-bytes", vec![1; 41]),
        ("ts-ptr4", vec![68, 8, 4, 0, 0, 0, 0, 0]),
        ("ts-overflow15", vec![68, 8, 9, 0xf0, 1, 2, 3, 4]),
        ("ts-short-addr-slot", vec![68, 8, 5, 1, 0, 0, 0, 0]),
        (
            "two-ts",
            vec![68, 8, 5, 0, 0, 0, 0, 0, 68, 8, 5, 0, 0, 0, 0, 0],
        ),
    ]
}

/// Options with and without the copied flag, through fragmentation.
pub fn options() -> Vec<Scenario> {
    let mut out = Vec::new();
    for (oname, raw) in option_sets() {
        let optlen = raw.len().div_ceil(4) * 4;
        for mtu in [68, 576, 1500] {
            if 20 + optlen + 8 > mtu as usize {
                continue;
            }
            let fit = mtu as usize - 28 - optlen;
            let fu = frag_unit(mtu, optlen);
            for steps in [
                one(0),
                one(fit),
                one(fit + 1),
                one(3 * fu + 5),
                vec![
                    Step::Send {
                        len: fu,
                        flags: MORE,
                    },
                    Step::Send {
                        len: fu + 3,
                        flags: MORE,
                    },
                    Step::Send { len: 9, flags: 0 },
                ],
            ] {
                out.push(scn(
                    "ip-options",
                    format!("udp opts={oname} mtu={mtu} steps={steps:?}"),
                    mtu,
                    Kind::Udp,
                    Opts {
                        ip_options: Some(raw.clone()),
                        recverr: true,
                        ..Opts::default()
                    },
                    steps,
                ));
            }
            out.push(scn(
                "ip-options",
                format!("raw opts={oname} mtu={mtu}"),
                mtu,
                Kind::Raw(253),
                Opts {
                    ip_options: Some(raw.clone()),
                    ..Opts::default()
                },
                vec![
                    Step::Send {
                        len: 2 * fu + 3,
                        flags: MORE,
                    },
                    Step::Send { len: 1, flags: 0 },
                ],
            ));
        }
        // Options and PMTU discovery DO: the error queue reports MTU - optlen.
        out.push(scn(
            "ip-options",
            format!("udp opts={oname} pmtu=do over"),
            576,
            Kind::Udp,
            Opts {
                ip_options: Some(raw.clone()),
                recverr: true,
                pmtu: Some(pmtu::DO),
                ..Opts::default()
            },
            vec![
                Step::Send {
                    len: 1000,
                    flags: 0,
                },
                Step::Send { len: 10, flags: 0 },
            ],
        ));
    }
    for (oname, raw) in bad_option_sets() {
        out.push(scn(
            "ip-options",
            format!("udp bad opts={oname}"),
            1500,
            Kind::Udp,
            Opts {
                ip_options: Some(raw),
                ..Opts::default()
            },
            one(100),
        ));
    }
    out
}

/// `UDP_SEGMENT` (GSO) below and over its limits; the device has no UDP GSO, so
/// both stacks segment in software.
pub fn gso() -> Vec<Scenario> {
    let mut out = Vec::new();
    for mtu in [576, 1500, 9000] {
        let fit = mtu as usize - 28;
        for g in [1usize, 100, 536, 1400, fit, fit + 1] {
            if g > 65507 {
                continue;
            }
            let mut sizes = vec![
                g - 1,
                g,
                g + 1,
                3 * g,
                3 * g + 5,
                64 * g,
                128 * g,
                128 * g + 1,
            ];
            sizes.retain(|&s| s <= 65507 && s > 0);
            for len in dedup(sizes) {
                out.push(Scenario {
                    seq_ids: true,
                    ..scn(
                        "gso",
                        format!("udp gso={g} mtu={mtu} len={len}"),
                        mtu,
                        Kind::Udp,
                        Opts {
                            gso: Some(g as u16),
                            ..Opts::default()
                        },
                        one(len),
                    )
                });
            }
        }
        // Corked pieces become one GSO datagram.
        let g = 1000.min(fit);
        out.push(Scenario {
            seq_ids: true,
            ..scn(
                "gso",
                format!("udp gso={g} mtu={mtu} more"),
                mtu,
                Kind::Udp,
                Opts {
                    gso: Some(g as u16),
                    ..Opts::default()
                },
                vec![
                    Step::Send {
                        len: 2 * g + 7,
                        flags: MORE,
                    },
                    Step::Send {
                        len: g,
                        flags: MORE,
                    },
                    Step::Send { len: 3, flags: 0 },
                ],
            )
        });
        for mode in [pmtu::DO, pmtu::DONT, pmtu::PROBE] {
            out.push(Scenario {
                seq_ids: true,
                ..scn(
                    "gso",
                    format!("udp gso=500 mtu={mtu} pmtu={}", pmtu::NAMES[mode as usize]),
                    mtu,
                    Kind::Udp,
                    Opts {
                        gso: Some(500),
                        pmtu: Some(mode),
                        ..Opts::default()
                    },
                    one(5000),
                )
            });
        }
        out.push(Scenario {
            seq_ids: true,
            ..scn(
                "gso",
                format!("udp gso=500 mtu={mtu} connected"),
                mtu,
                Kind::Udp,
                Opts {
                    gso: Some(500),
                    connect: true,
                    ..Opts::default()
                },
                vec![
                    Step::Send {
                        len: 2222,
                        flags: 0,
                    },
                    Step::Send {
                        len: 1111,
                        flags: 0,
                    },
                ],
            )
        });
        out.push(scn(
            "gso",
            format!("udp gso=500 mtu={mtu} no_check"),
            mtu,
            Kind::Udp,
            Opts {
                gso: Some(500),
                no_check: true,
                ..Opts::default()
            },
            vec![
                Step::Send {
                    len: 2000,
                    flags: 0,
                },
                Step::Send { len: 300, flags: 0 },
            ],
        ));
        out.push(Scenario {
            seq_ids: true,
            ..scn(
                "gso",
                format!("udp gso toggled mtu={mtu}"),
                mtu,
                Kind::Udp,
                Opts::default(),
                vec![
                    Step::Gso(300),
                    Step::Send {
                        len: 1000,
                        flags: 0,
                    },
                    Step::Gso(0),
                    Step::Send {
                        len: 1000,
                        flags: 0,
                    },
                ],
            )
        });
        out.push(scn(
            "gso",
            format!("udp gso with options mtu={mtu}"),
            mtu,
            Kind::Udp,
            Opts {
                gso: Some(400),
                ip_options: Some(vec![148, 4, 0, 0]),
                ..Opts::default()
            },
            one(1700),
        ));
    }
    out
}

/// Raw sockets: protocol datagrams through the cork, and `IP_HDRINCL`.
pub fn raw() -> Vec<Scenario> {
    let mut out = Vec::new();
    for mtu in [68, 576, 1500, 1501, 9000] {
        for len in boundary_sizes(mtu, 0, 0) {
            out.push(scn(
                "raw",
                format!("raw mtu={mtu} len={len}"),
                mtu,
                Kind::Raw(253),
                Opts::default(),
                one(len),
            ));
        }
    }
    let mut rng = Rng::new(3);
    for mtu in [68, 576, 1500] {
        for _ in 0..6 {
            let p = pieces(&mut rng, mtu, 0, 0);
            let n = p.len();
            let steps = p
                .iter()
                .enumerate()
                .map(|(i, &len)| Step::Send {
                    len,
                    flags: if i + 1 < n { MORE } else { 0 },
                })
                .collect();
            out.push(scn(
                "raw",
                format!("raw more mtu={mtu} pieces={p:?}"),
                mtu,
                Kind::Raw(253),
                Opts::default(),
                steps,
            ));
        }
    }
    // Other protocols on raw sockets: ICMP (type and code read for the flow)
    // and UDP carried as raw payload.
    for proto in [1u8, 17, 6] {
        for mtu in [576, 1500] {
            out.push(scn(
                "raw",
                format!("raw proto={proto} mtu={mtu}"),
                mtu,
                Kind::Raw(proto),
                Opts::default(),
                vec![
                    Step::Send { len: 8, flags: 0 },
                    Step::Send {
                        len: 1200,
                        flags: 0,
                    },
                    Step::Send {
                        len: 300,
                        flags: MORE,
                    },
                    Step::Send { len: 2, flags: 0 },
                ],
            ));
        }
    }
    for kind in [Kind::Raw(1), Kind::Hdrincl(1)] {
        out.push(scn(
            "raw",
            format!("{kind:?} short sends"),
            1500,
            kind,
            Opts::default(),
            match kind {
                Kind::Raw(_) => vec![
                    Step::Send {
                        len: 300,
                        flags: MORE,
                    },
                    Step::Send { len: 0, flags: 0 },
                    Step::Send { len: 1, flags: 0 },
                    Step::Send { len: 2, flags: 0 },
                    Step::Send {
                        len: 1,
                        flags: PROBE,
                    },
                ],
                _ => vec![Step::Hdr {
                    len: 20,
                    ihl: 5,
                    df: false,
                    id: 3,
                    saddr_zero: true,
                    flags: 0,
                }],
            },
        ));
    }
    out.push(Scenario {
        seq_ids: true,
        ..scn(
            "raw",
            "raw connected".into(),
            576,
            Kind::Raw(253),
            Opts {
                connect: true,
                ..Opts::default()
            },
            vec![
                Step::Send {
                    len: 1000,
                    flags: 0,
                },
                Step::Send { len: 100, flags: 0 },
            ],
        )
    });
    for proto in [255u8, 253] {
        for mtu in [576, 1500] {
            let m = mtu as usize;
            let mut steps = Vec::new();
            for (len, ihl, df, id, z) in [
                (20, 5, false, 0, true),
                (100, 5, false, 0, true),
                (100, 5, true, 0, true),
                (100, 5, true, 0x1234, false),
                (100, 5, false, 0x4321, true),
                (m, 5, false, 7, true),
                (m, 5, true, 0, true),
                (m + 1, 5, false, 0, true),
                (19, 5, false, 0, true),
                (40, 15, false, 0, true),
                (100, 6, false, 0, true),
                (100, 4, false, 0, true),
                (60, 15, true, 0, true),
            ] {
                steps.push(Step::Hdr {
                    len,
                    ihl,
                    df,
                    id,
                    saddr_zero: z,
                    flags: 0,
                });
            }
            steps.push(Step::Hdr {
                len: 100,
                ihl: 5,
                df: false,
                id: 0,
                saddr_zero: true,
                flags: PROBE,
            });
            // MSG_MORE means nothing to a header-included send.
            steps.push(Step::Hdr {
                len: 200,
                ihl: 5,
                df: true,
                id: 9,
                saddr_zero: false,
                flags: MORE,
            });
            out.push(scn(
                "raw",
                format!("hdrincl proto={proto} mtu={mtu}"),
                mtu,
                Kind::Hdrincl(proto),
                Opts {
                    recverr: true,
                    ..Opts::default()
                },
                steps,
            ));
        }
    }
    // Options with IP_HDRINCL are refused.
    out.push(scn(
        "raw",
        "hdrincl with options".into(),
        1500,
        Kind::Hdrincl(253),
        Opts {
            ip_options: Some(vec![148, 4, 0, 0]),
            ..Opts::default()
        },
        vec![Step::Hdr {
            len: 100,
            ihl: 5,
            df: false,
            id: 1,
            saddr_zero: true,
            flags: 0,
        }],
    ));
    out
}

/// `MSG_PROBE`, connected sockets, the default send buffer.
pub fn misc() -> Vec<Scenario> {
    let mut out = Vec::new();
    let probe_steps: Vec<Vec<Step>> = vec![
        vec![Step::Send {
            len: 100,
            flags: PROBE,
        }],
        vec![Step::Send {
            len: 65508,
            flags: PROBE,
        }],
        vec![Step::Send {
            len: 70000,
            flags: PROBE,
        }],
        vec![
            Step::Send {
                len: 100,
                flags: MORE,
            },
            Step::Send {
                len: 0,
                flags: PROBE,
            },
        ],
        vec![
            Step::Send {
                len: 100,
                flags: MORE,
            },
            Step::Send {
                len: 50,
                flags: PROBE | MORE,
            },
            Step::Send { len: 10, flags: 0 },
        ],
        vec![
            Step::Send {
                len: 10,
                flags: PROBE | MORE,
            },
            Step::Send { len: 20, flags: 0 },
        ],
    ];
    for (k, steps) in probe_steps.into_iter().enumerate() {
        out.push(scn(
            "probe",
            format!("udp probe k={k}"),
            1500,
            Kind::Udp,
            Opts::default(),
            steps.clone(),
        ));
        out.push(scn(
            "probe",
            format!("raw probe k={k}"),
            1500,
            Kind::Raw(253),
            Opts::default(),
            steps,
        ));
    }
    for mtu in [68, 576, 1500] {
        out.push(Scenario {
            seq_ids: true,
            ..scn(
                "connected",
                format!("udp connected mtu={mtu}"),
                mtu,
                Kind::Udp,
                Opts {
                    connect: true,
                    ..Opts::default()
                },
                vec![
                    Step::Send { len: 10, flags: 0 },
                    Step::Send {
                        len: 3000,
                        flags: 0,
                    },
                    Step::Send {
                        len: 700,
                        flags: MORE,
                    },
                    Step::Send { len: 700, flags: 0 },
                    Step::Send { len: 0, flags: 0 },
                ],
            )
        });
    }
    for (mtu, len) in [(1500, 65507), (576, 65507), (1500, 30000), (9000, 65507)] {
        out.push(scn(
            "sndbuf-default",
            format!("udp default sndbuf mtu={mtu} len={len}"),
            mtu,
            Kind::Udp,
            Opts {
                default_sndbuf: true,
                ..Opts::default()
            },
            one(len),
        ));
    }
    out
}

/// Source routes (copied options that change where the datagram goes): the
/// first hop is routed to and written in the header, the destination named
/// fills the option's last slot. Addresses 10.77.0.x stand for the pair's
/// subnet.
pub fn source_route() -> Vec<Scenario> {
    let mut out = Vec::new();
    let sets: Vec<(&str, Vec<u8>)> = vec![
        ("lsrr1", vec![131, 7, 4, 10, 77, 0, 2]),
        ("lsrr2", vec![131, 11, 4, 10, 77, 0, 2, 10, 77, 0, 9]),
        ("ssrr1", vec![137, 7, 4, 10, 77, 0, 2]),
        (
            "lsrr1+rr2",
            vec![1, 131, 7, 4, 10, 77, 0, 2, 7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        ("lsrr-bad-ptr", vec![131, 7, 8, 10, 77, 0, 2]),
        ("lsrr-no-addr", vec![131, 3, 4]),
        ("lsrr-part-addr", vec![131, 9, 4, 10, 77, 0, 2, 1, 1]),
        (
            "two-srr",
            vec![131, 7, 4, 10, 77, 0, 2, 137, 7, 4, 10, 77, 0, 2],
        ),
    ];
    for (oname, raw) in sets {
        for mtu in [576, 1500] {
            for dest_host in [None, Some(3)] {
                for (sname, steps) in [
                    ("one", one(100)),
                    ("frag", one(3000)),
                    (
                        "more",
                        vec![
                            Step::Send {
                                len: 700,
                                flags: MORE,
                            },
                            Step::Send { len: 20, flags: 0 },
                        ],
                    ),
                ] {
                    for kind in [Kind::Udp, Kind::Raw(253)] {
                        out.push(scn(
                            "source-route",
                            format!("{kind:?} opts={oname} mtu={mtu} dest={dest_host:?} {sname}"),
                            mtu,
                            kind,
                            Opts {
                                ip_options: Some(raw.clone()),
                                dest_host,
                                recverr: true,
                                ..Opts::default()
                            },
                            steps.clone(),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// Connected sockets that also name a destination: the socket's own ID
/// counter numbers every datagram.
pub fn connected_sendto() -> Vec<Scenario> {
    let mut out = Vec::new();
    for kind in [Kind::Udp, Kind::Raw(253)] {
        for mtu in [576, 1500] {
            out.push(Scenario {
                seq_ids: true,
                ..scn(
                    "connected",
                    format!("{kind:?} connected sendto mtu={mtu}"),
                    mtu,
                    kind,
                    Opts {
                        connect: true,
                        pmtu: Some(pmtu::DO),
                        ..Opts::default()
                    },
                    vec![
                        Step::SendTo { len: 10, flags: 0 },
                        Step::Send { len: 20, flags: 0 },
                        Step::SendTo { len: 30, flags: 0 },
                    ],
                )
            });
        }
    }
    out
}

/// Datagrams just below and above what the send buffer allows
/// (`sk_wmem_alloc` against twice `SO_SNDBUF` for every buffer after the
/// first): the limit depends on what each buffer is charged (`truesize`).
pub fn sndbuf_limit() -> Vec<Scenario> {
    let mut out = Vec::new();
    // The kernel's limits here (4608-byte SO_SNDBUF): 12 buffers at MTU 68,
    // 8 at MTU 576, 4 at MTU 1500.
    for (mtu, bufs) in [(68u32, 12usize), (576, 8), (1500, 4)] {
        let fu = frag_unit(mtu, 0);
        for n in [bufs, bufs + 1] {
            out.push(scn(
                "sndbuf-limit",
                format!("udp sndbuf=4608 mtu={mtu} buffers={n}"),
                mtu,
                Kind::Udp,
                Opts {
                    sndbuf: Some(0),
                    ..Opts::default()
                },
                one(n * fu - 8),
            ));
        }
    }
    out
}

/// Random mixtures: MTU (68..=9000), socket type, PMTU mode, options, TOS,
/// GSO, connect, and 1..8 steps of sends (with `MSG_MORE`, `MSG_PROBE`,
/// `MSG_DONTWAIT`), `UDP_CORK` and `UDP_SEGMENT` changes. Deterministic.
pub fn random_mix(n: usize, seed: u64) -> Vec<Scenario> {
    let mut out = Vec::new();
    let mut rng = Rng::new(seed);
    let sets = option_sets();
    for k in 0..n {
        let mtu = match rng.below(4) {
            0 => 68 + rng.below(64) as u32,
            1 => 500 + rng.below(1100) as u32,
            2 => 1400 + rng.below(200) as u32,
            _ => 68 + rng.below(9000 - 67) as u32,
        };
        let udp = rng.below(4) != 0;
        let kind = if udp { Kind::Udp } else { Kind::Raw(253) };
        let hdr = if udp { 8 } else { 0 };
        let mut opts = Opts {
            recverr: true,
            pmtu: Some(rng.below(6) as u8),
            ..Opts::default()
        };
        let mut optlen = 0;
        if rng.below(4) == 0 {
            let (_, raw) = &sets[rng.below(sets.len())];
            if 20 + raw.len().div_ceil(4) * 4 + 8 <= mtu as usize {
                optlen = raw.len().div_ceil(4) * 4;
                opts.ip_options = Some(raw.clone());
            }
        }
        if rng.below(5) == 0 {
            opts.tos = Some(rng.below(256) as u8);
            opts.ttl = Some(1 + rng.below(255) as u8);
        }
        let fit = mtu as usize - 20 - optlen - hdr;
        if udp && rng.below(6) == 0 {
            opts.gso = Some([1, 100, 500, fit.max(1), fit + 1][rng.below(5)] as u16);
        }
        if udp && rng.below(12) == 0 {
            opts.no_check = true;
        }
        opts.connect = rng.below(8) == 0;
        let fu = frag_unit(mtu, optlen);
        let nsteps = 1 + rng.below(8);
        let mut steps = Vec::new();
        for i in 0..nsteps {
            let last = i + 1 == nsteps;
            if udp && !last && rng.below(10) == 0 {
                steps.push(Step::Cork(rng.below(2) == 0));
                continue;
            }
            if udp && !last && rng.below(20) == 0 {
                steps.push(Step::Gso([0, 200, 1000][rng.below(3)]));
                continue;
            }
            let len = match rng.below(12) {
                0 => rng.below(10),
                1 => fu.saturating_sub(1),
                2 => fu,
                3 => fu + 1,
                4 => fit,
                5 => fit + 1,
                6 => (2 * fu).saturating_sub(5),
                7 => rng.below(3000),
                8 => rng.below(20000),
                9 if rng.below(4) == 0 => 65535 - 20 - optlen - hdr + rng.below(2),
                _ => rng.below(1500),
            };
            let mut flags = if !last && rng.below(10) < 7 { MORE } else { 0 };
            if rng.below(20) == 0 {
                flags |= PROBE;
            }
            if rng.below(10) == 0 {
                flags |= DONTWAIT;
            }
            steps.push(Step::Send { len, flags });
        }
        if udp && steps.iter().any(|s| matches!(s, Step::Cork(true))) && rng.below(2) == 0 {
            steps.push(Step::Cork(false));
        }
        out.push(Scenario {
            seq_ids: opts.connect && opts.gso.is_none(),
            ..scn(
                "random-mix",
                format!("mix #{k} seed={seed} {kind:?} mtu={mtu} {opts:?} steps={steps:?}"),
                mtu,
                kind,
                opts,
                steps,
            )
        });
    }
    out
}

/// Probe of the send-buffer limit (exploration; not in `all`).
pub fn sndbuf_probe() -> Vec<Scenario> {
    let mut out = Vec::new();
    for mtu in [68u32, 576, 1500] {
        for sb in [0i32, 20000] {
            let mut len = 100;
            while len <= 65507 {
                out.push(scn(
                    "sndbuf-probe",
                    format!("udp sndbuf={sb} mtu={mtu} len={len}"),
                    mtu,
                    Kind::Udp,
                    Opts {
                        sndbuf: Some(sb),
                        ..Opts::default()
                    },
                    one(len),
                ));
                len += if mtu == 68 { 48 } else { 200 };
            }
        }
    }
    out
}

/// The payload of message `j` of a `sendmmsg` step `k`.
pub fn mmsg_payload(scn: usize, k: usize, j: usize, len: usize) -> Vec<u8> {
    payload(scn, k * 1000 + j, len)
}

/// `sendmmsg` (ipxmit: `send_batch`): batches of 1, 5 and 64 messages of one
/// size or mixed (18, 1472, 1473, 3000 bytes, empty), each PMTU mode the
/// batch path distinguishes, connected or not, two MTUs, and batches whose
/// later message fails (`EMSGSIZE` under `IP_PMTUDISC_DO`: the call returns
/// the count before it).
pub fn sendmmsg() -> Vec<Scenario> {
    let batches: [(&str, Vec<usize>); 6] = [
        ("1x18", vec![18]),
        ("5x1472", vec![1472; 5]),
        ("64x18", vec![18; 64]),
        ("mixed", vec![18, 1472, 0, 1473, 3000, 18, 1472, 100]),
        ("64x100", vec![100; 64]),
        ("big-last", vec![200, 200, 3000, 200]),
    ];
    batch_grid("sendmmsg", &[576, 1500], &batches, |lens, flags| {
        Step::Mmsg {
            lens: lens.clone(),
            flags,
        }
    })
}

/// For each MTU, named batch, PMTU mode (default, dont, do) and connected
/// or not: the batch step (flags 0), a plain 33-byte send, the batch step
/// again with `MSG_DONTWAIT`.
fn batch_grid<B>(
    group: &'static str,
    mtus: &[u32],
    batches: &[(&str, B)],
    step: impl Fn(&B, u32) -> Step,
) -> Vec<Scenario> {
    let mut out = Vec::new();
    for &mtu in mtus {
        for (bname, b) in batches {
            for pmtu in [None, Some(pmtu::DONT), Some(pmtu::DO)] {
                for connect in [false, true] {
                    let mode = pmtu.map_or("default", |m| pmtu::NAMES[m as usize]);
                    let opts = Opts {
                        pmtu,
                        connect,
                        ..Opts::default()
                    };
                    let steps = vec![step(b, 0), Step::Send { len: 33, flags: 0 }, step(b, 0x40)];
                    let name =
                        format!("udp {group} {bname} mtu={mtu} pmtu={mode} connect={connect}");
                    out.push(Scenario {
                        seq_ids: connect,
                        ..scn(group, name, mtu, Kind::Udp, opts, steps)
                    });
                }
            }
        }
    }
    out
}

/// Corked datagrams inside one batch (`BatchMsg::flags` with `MSG_MORE`):
/// 8 x 1000 B pieces, odd and empty pieces, two datagrams and a plain one in
/// one batch, a group that fits one frame, one left open at the end of the
/// batch, at MTUs whose data space is a multiple of 8 (576 - 20 is not:
/// the general path) or not, each PMTU mode, connected or not.
pub fn more_batch() -> Vec<Scenario> {
    let d = |lens: &[usize]| -> Vec<(usize, bool)> {
        let last = lens.len() - 1;
        lens.iter()
            .enumerate()
            .map(|(i, &n)| (n, i < last))
            .collect()
    };
    let batches: [(&str, Vec<(usize, bool)>); 6] = [
        ("8x1000", d(&[1000; 8])),
        ("odd", d(&[100, 2001, 1, 3000, 7, 0])),
        (
            "two+plain",
            [d(&[1400, 1400, 1400]), d(&[33]), d(&[999, 5000])].concat(),
        ),
        ("fits", d(&[100, 200, 300])),
        ("open-end", [d(&[1000, 1000]), vec![(500, true)]].concat()),
        ("big", d(&[30000, 30000, 5000])),
    ];
    batch_grid("more-batch", &[576, 1500, 1501], &batches, |msgs, flags| {
        Step::Pieces {
            msgs: msgs.clone(),
            flags,
        }
    })
}

/// Every scenario.
pub fn all() -> Vec<Scenario> {
    if std::env::var_os("KDIFF_SNDBUF_PROBE").is_some() {
        return sndbuf_probe();
    }
    let mut v = Vec::new();
    v.extend(single_udp());
    v.extend(msg_more_udp());
    v.extend(cork_udp());
    v.extend(pmtudisc());
    v.extend(tos_ttl_nocheck());
    v.extend(options());
    v.extend(gso());
    v.extend(raw());
    v.extend(misc());
    v.extend(source_route());
    v.extend(connected_sendto());
    v.extend(sndbuf_limit());
    v.extend(sendmmsg());
    v.extend(more_batch());
    v.extend(random_mix(1500, 42));
    v.extend(random_mix(1500, 4242));
    v
}
