//! The compiled engine on packets built with the wire views.

use std::net::Ipv4Addr;
use std::sync::{Arc, Weak};

use super::*;
use crate::dev::{DevConfig, Driver, TxStatus};
use crate::wire::ipv4::{Ipv4Packet, Ipv4Repr};
use crate::wire::udp::UdpPacket;
use crate::wire::EthernetAddress;

struct Sink;

impl Driver for Sink {
    fn start_xmit(&mut self, _pkt: PacketBuf, _more: bool) -> crate::dev::TxStatus {
        TxStatus::Ok
    }
}

pub(super) fn stack() -> (Arc<Stack>, Arc<NetDevice>) {
    let stack = Stack::new();
    let eth = DevConfig::ethernet("eth0", EthernetAddress([2, 0, 0, 0, 0, 1]));
    let dev = stack.add_device(eth, vec![Box::new(Sink)]).unwrap();
    (stack, dev)
}

/// A UDP datagram 10.0.0.1:sport -> daddr:dport, TTL 64, TOS 0, with a
/// correct header checksum.
pub(super) fn udp(daddr: [u8; 4], sport: u16, dport: u16, payload: usize) -> PacketBuf {
    let mut b = vec![0u8; 28 + payload];
    let mut ip = Ipv4Packet::new_unchecked(&mut b[..]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_total_len((28 + payload) as u16);
    ip.set_ttl(64);
    ip.set_protocol(crate::wire::ipv4::IpProtocol(17));
    ip.set_src_addr(Ipv4Addr::new(10, 0, 0, 1));
    ip.set_dst_addr(Ipv4Addr::from(daddr));
    ip.fill_checksum();
    let mut u = UdpPacket::new_unchecked(&mut b[20..]);
    u.set_src_port(sport);
    u.set_dst_port(dport);
    u.set_len((8 + payload) as u16);
    let mut p = PacketBuf::from_slice(64, &b);
    p.reset_network_header();
    p
}

fn m(keys: &[Key], op: Op, rhs: Rhs) -> Stmt {
    Stmt::Match(Match {
        keys: keys.to_vec(),
        op,
        rhs,
    })
}

fn v(v: RuleVerdict) -> Stmt {
    Stmt::Verdict(v)
}

/// A table `t` with base chain `out` (output, policy `policy`) and a
/// regular chain `sub`.
pub(super) fn ruleset(policy: Policy) -> Ruleset {
    let mut rs = Ruleset::default();
    rs.add_table(Family::Ip, "t", false).unwrap();
    let base = BaseChain {
        ty: ChainType::Filter,
        hook: ChainHook::Output,
        device: None,
        priority: 0,
        policy,
    };
    rs.add_chain(Family::Ip, "t", "out", Some(base), false)
        .unwrap();
    rs.add_chain(Family::Ip, "t", "sub", None, false).unwrap();
    rs
}

fn add(rs: &mut Ruleset, chain: &str, stmts: Vec<Stmt>) {
    rs.add_rule(Family::Ip, "t", chain, stmts, Position::Append(None))
        .unwrap();
}

fn verdict(rs: &Ruleset, pkt: &mut PacketBuf, dev: &NetDevice) -> Verdict {
    let e = NftHook::new(Arc::new(Program::compile(rs).unwrap()), Weak::new());
    e.hook(HookPoint::LocalOut, pkt, dev)
}

#[test]
fn addresses_prefixes_ranges_and_negation() {
    let (_s, dev) = stack();
    let mut rs = ruleset(Policy::Accept);
    let net = u32::from(Ipv4Addr::new(192, 168, 0, 0));
    add(
        &mut rs,
        "out",
        vec![
            m(&[Key::IpDaddr], Op::Eq, Rhs::Prefix(net, 16)),
            v(RuleVerdict::Drop),
        ],
    );
    let lo = u64::from(u32::from(Ipv4Addr::new(10, 9, 0, 1)));
    add(
        &mut rs,
        "out",
        vec![
            m(&[Key::IpDaddr], Op::Eq, Rhs::Range(lo, lo + 9)),
            v(RuleVerdict::Drop),
        ],
    );
    assert_eq!(
        verdict(&rs, &mut udp([192, 168, 3, 4], 1, 2, 0), &dev),
        Verdict::Drop
    );
    assert_eq!(
        verdict(&rs, &mut udp([192, 169, 3, 4], 1, 2, 0), &dev),
        Verdict::Accept
    );
    assert_eq!(
        verdict(&rs, &mut udp([10, 9, 0, 10], 1, 2, 0), &dev),
        Verdict::Drop
    );
    assert_eq!(
        verdict(&rs, &mut udp([10, 9, 0, 11], 1, 2, 0), &dev),
        Verdict::Accept
    );
    let mut rs = ruleset(Policy::Accept);
    let one = u64::from(u32::from(Ipv4Addr::new(1, 1, 1, 1)));
    add(
        &mut rs,
        "out",
        vec![
            m(&[Key::IpDaddr], Op::Ne, Rhs::Value(one)),
            v(RuleVerdict::Drop),
        ],
    );
    assert_eq!(
        verdict(&rs, &mut udp([1, 1, 1, 1], 1, 2, 0), &dev),
        Verdict::Accept
    );
    assert_eq!(
        verdict(&rs, &mut udp([1, 1, 1, 2], 1, 2, 0), &dev),
        Verdict::Drop
    );
}

#[test]
fn ports_sets_named_and_concatenated() {
    let (_s, dev) = stack();
    let mut rs = ruleset(Policy::Accept);
    rs.add_set(Family::Ip, "t", "ports", vec![DataType::InetService], true)
        .unwrap();
    rs.add_elements(
        Family::Ip,
        "t",
        "ports",
        &[Elem::one(53), Elem { lo: 1000, hi: 2000 }],
    )
    .unwrap();
    rs.add_set(
        Family::Ip,
        "t",
        "pairs",
        vec![DataType::Ipv4Addr, DataType::InetService],
        false,
    )
    .unwrap();
    let pair = u64::from(u32::from(Ipv4Addr::new(10, 0, 0, 2))) << 16 | 7;
    rs.add_elements(Family::Ip, "t", "pairs", &[Elem::one(pair)])
        .unwrap();
    add(
        &mut rs,
        "out",
        vec![
            m(&[Key::UdpDport], Op::Eq, Rhs::Named("ports".into())),
            v(RuleVerdict::Drop),
        ],
    );
    add(
        &mut rs,
        "out",
        vec![
            m(
                &[Key::IpDaddr, Key::UdpDport],
                Op::Eq,
                Rhs::Named("pairs".into()),
            ),
            v(RuleVerdict::Drop),
        ],
    );
    add(
        &mut rs,
        "out",
        vec![
            m(
                &[Key::UdpSport],
                Op::Ne,
                Rhs::Set(vec![Elem::one(1), Elem::one(2)]),
            ),
            v(RuleVerdict::Drop),
        ],
    );
    let d = [10, 0, 0, 3];
    assert_eq!(verdict(&rs, &mut udp(d, 1, 53, 0), &dev), Verdict::Drop);
    assert_eq!(verdict(&rs, &mut udp(d, 1, 1500, 0), &dev), Verdict::Drop);
    assert_eq!(verdict(&rs, &mut udp(d, 1, 2001, 0), &dev), Verdict::Accept);
    assert_eq!(
        verdict(&rs, &mut udp([10, 0, 0, 2], 2, 7, 0), &dev),
        Verdict::Drop
    );
    assert_eq!(
        verdict(&rs, &mut udp([10, 0, 0, 2], 2, 8, 0), &dev),
        Verdict::Accept
    );
    assert_eq!(verdict(&rs, &mut udp(d, 3, 9, 0), &dev), Verdict::Drop);
}

#[test]
fn jump_return_goto_and_policy() {
    let (_s, dev) = stack();
    let mut rs = ruleset(Policy::Drop);
    // out: jump sub; accept port 1.  sub: port 2 -> return; port 3 -> accept.
    add(&mut rs, "out", vec![v(RuleVerdict::Jump("sub".into()))]);
    add(
        &mut rs,
        "out",
        vec![
            m(&[Key::UdpDport], Op::Eq, Rhs::Value(1)),
            v(RuleVerdict::Accept),
        ],
    );
    add(
        &mut rs,
        "out",
        vec![
            m(&[Key::UdpDport], Op::Eq, Rhs::Value(2)),
            v(RuleVerdict::Accept),
        ],
    );
    add(
        &mut rs,
        "sub",
        vec![
            m(&[Key::UdpDport], Op::Eq, Rhs::Value(2)),
            v(RuleVerdict::Return),
        ],
    );
    add(
        &mut rs,
        "sub",
        vec![
            m(&[Key::UdpDport], Op::Eq, Rhs::Value(3)),
            v(RuleVerdict::Accept),
        ],
    );
    let d = [10, 0, 0, 3];
    assert_eq!(
        verdict(&rs, &mut udp(d, 9, 1, 0), &dev),
        Verdict::Accept,
        "falls back from sub"
    );
    assert_eq!(
        verdict(&rs, &mut udp(d, 9, 2, 0), &dev),
        Verdict::Accept,
        "return"
    );
    assert_eq!(
        verdict(&rs, &mut udp(d, 9, 3, 0), &dev),
        Verdict::Accept,
        "accept in sub"
    );
    assert_eq!(
        verdict(&rs, &mut udp(d, 9, 4, 0), &dev),
        Verdict::Drop,
        "policy"
    );
    // goto: the end of sub is the end of the base chain (policy drop).
    let mut rs = ruleset(Policy::Drop);
    add(&mut rs, "out", vec![v(RuleVerdict::Goto("sub".into()))]);
    add(&mut rs, "out", vec![v(RuleVerdict::Accept)]);
    assert_eq!(verdict(&rs, &mut udp(d, 9, 1, 0), &dev), Verdict::Drop);
}

#[test]
fn counters_and_meta_keys() {
    let (_s, dev) = stack();
    let mut rs = ruleset(Policy::Accept);
    let c = Counter::new(0, 0);
    add(
        &mut rs,
        "out",
        vec![
            m(&[Key::MetaL4proto], Op::Eq, Rhs::Value(17)),
            m(&[Key::MetaLength], Op::Ge, Rhs::Value(100)),
            m(&[Key::Oifname], Op::Eq, Rhs::Ifname("eth0".into())),
            m(&[Key::Oif], Op::Eq, Rhs::Dev("eth0".into(), dev.ifindex())),
            Stmt::Counter(c.clone()),
        ],
    );
    add(
        &mut rs,
        "out",
        vec![
            m(&[Key::MetaMark], Op::Eq, Rhs::Value(7)),
            v(RuleVerdict::Drop),
        ],
    );
    let d = [10, 0, 0, 3];
    assert_eq!(verdict(&rs, &mut udp(d, 1, 2, 72), &dev), Verdict::Accept);
    assert_eq!(verdict(&rs, &mut udp(d, 1, 2, 71), &dev), Verdict::Accept);
    assert_eq!(c.get(), (1, 100), "only the 100-byte datagram counted");
    let mut p = udp(d, 1, 2, 0);
    p.meta.mark = 7;
    assert_eq!(verdict(&rs, &mut p, &dev), Verdict::Drop);
}

#[test]
fn mangling_keeps_the_header_checksum_right() {
    let (_s, dev) = stack();
    let mut rs = ruleset(Policy::Accept);
    add(
        &mut rs,
        "out",
        vec![Stmt::DscpSet(46), Stmt::TtlSet(3), Stmt::MarkSet(0x10)],
    );
    add(
        &mut rs,
        "out",
        vec![
            m(&[Key::IpDscp], Op::Eq, Rhs::Value(46)),
            m(&[Key::IpTtl], Op::Eq, Rhs::Value(3)),
            Stmt::MarkSet(0x20),
        ],
    );
    let mut p = udp([10, 0, 0, 3], 1, 2, 5);
    assert_eq!(verdict(&rs, &mut p, &dev), Verdict::Accept);
    let ip = Ipv4Packet::new_unchecked(p.network_header());
    assert_eq!((ip.dscp(), ip.ttl()), (46, 3));
    assert!(ip.verify_checksum(), "incremental checksum");
    Ipv4Repr::parse(&ip, crate::wire::ipv4::ChecksumCheck::Verify).unwrap();
    assert_eq!(p.meta.mark, 0x20, "later rules see the new values");
}

#[test]
fn a_later_fragment_has_no_transport_header() {
    // `nft_set_pktinfo_ipv4`: the protocol is known in every fragment, the
    // transport header only in the first.
    let (_s, dev) = stack();
    let mut rs = ruleset(Policy::Accept);
    let (c1, c2) = (Counter::new(0, 0), Counter::new(0, 0));
    add(
        &mut rs,
        "out",
        vec![
            m(&[Key::UdpDport], Op::Eq, Rhs::Value(2)),
            Stmt::Counter(c1.clone()),
        ],
    );
    add(
        &mut rs,
        "out",
        vec![
            m(&[Key::MetaL4proto], Op::Eq, Rhs::Value(17)),
            Stmt::Counter(c2.clone()),
        ],
    );
    let mut p = udp([10, 0, 0, 3], 1, 2, 0);
    Ipv4Packet::new_unchecked(p.network_header_mut()).set_frag_offset(8);
    assert_eq!(verdict(&rs, &mut p, &dev), Verdict::Accept);
    assert_eq!((c1.get().0, c2.get().0), (0, 1));
}

#[test]
fn base_chains_run_in_priority_order_and_the_first_drop_wins() {
    let (_s, dev) = stack();
    let mut rs = ruleset(Policy::Accept);
    let early = BaseChain {
        ty: ChainType::Filter,
        hook: ChainHook::Output,
        device: None,
        priority: -150,
        policy: Policy::Accept,
    };
    rs.add_chain(Family::Ip, "t", "early", Some(early), false)
        .unwrap();
    add(&mut rs, "early", vec![Stmt::MarkSet(5)]);
    add(
        &mut rs,
        "out",
        vec![
            m(&[Key::MetaMark], Op::Eq, Rhs::Value(5)),
            v(RuleVerdict::Drop),
        ],
    );
    let prog = Program::compile(&rs).unwrap();
    assert_eq!(prog.bases[0].len(), 2);
    assert_eq!(
        verdict(&rs, &mut udp([10, 0, 0, 3], 1, 2, 0), &dev),
        Verdict::Drop
    );
}

#[test]
fn refusals() {
    let mut rs = ruleset(Policy::Accept);
    let r = rs.add_rule(Family::Ip, "t", "nope", vec![], Position::Append(None));
    assert_eq!(r, Err(NftError::NoEntry));
    let r = rs.add_rule(
        Family::Ip,
        "t",
        "out",
        vec![v(RuleVerdict::Jump("x".into()))],
        Position::Append(None),
    );
    assert_eq!(r, Err(NftError::NoEntry));
    assert_eq!(rs.add_table(Family::Ip, "t", true), Err(NftError::Exists));
    add(&mut rs, "sub", vec![v(RuleVerdict::Accept)]);
    assert_eq!(rs.delete_chain(Family::Ip, "t", "sub"), Err(NftError::Busy));
}

#[test]
fn a_drop_fails_the_send_with_eperm_counted_as_netfilter_drop() {
    let (stack, _dev) = stack();
    stack
        .add_addr("eth0", "10.0.0.1/24".parse().unwrap())
        .unwrap();
    let mut nft = Nft::new();
    nft.commit(&stack, |rs| {
        *rs = ruleset(Policy::Accept);
        rs.add_rule(
            Family::Ip,
            "t",
            "out",
            vec![
                m(&[Key::UdpDport], Op::Eq, Rhs::Value(9)),
                v(RuleVerdict::Drop),
            ],
            Position::Append(None),
        )
    })
    .unwrap();
    let mut s = crate::UdpSocket::new(&stack);
    let to = std::net::SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 9);
    let r = s.send_to(b"x", to, crate::MsgFlags::default());
    assert!(matches!(r, Err(crate::SendError::Perm)), "{r:?}");
    let to = std::net::SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 8);
    let r = s.send_to(b"x", to, crate::MsgFlags::default());
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn field_sets_update_the_ip_and_udp_checksums() {
    let (_s, dev) = stack();
    let mut rs = ruleset(Policy::Accept);
    let to = u32::from(Ipv4Addr::new(192, 0, 2, 77));
    let fields = vec![
        Stmt::FieldSet(Key::IpDaddr, to),
        Stmt::FieldSet(Key::UdpDport, 4242),
        Stmt::FieldSet(Key::IpId, 0x1234),
        Stmt::FieldSet(Key::IpEcn, 3),
    ];
    add(&mut rs, "out", fields);
    for with_udp_sum in [true, false] {
        let mut p = udp([10, 0, 0, 3], 1, 2, 11);
        if with_udp_sum {
            let (s, d) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 3));
            UdpPacket::new_unchecked(&mut p.network_header_mut()[20..]).fill_checksum(s, d);
        }
        assert_eq!(verdict(&rs, &mut p, &dev), Verdict::Accept);
        let ip = Ipv4Packet::new_unchecked(p.network_header());
        assert!(ip.verify_checksum());
        assert_eq!(
            (ip.dst_addr(), ip.ident(), ip.ecn()),
            (Ipv4Addr::from(to), 0x1234, 3)
        );
        let u = UdpPacket::new_unchecked(&p.network_header()[20..]);
        assert_eq!(u.dst_port(), 4242);
        if with_udp_sum {
            assert!(
                u.verify_checksum(ip.src_addr(), ip.dst_addr()),
                "incremental UDP sum"
            );
        } else {
            assert_eq!(u.checksum(), 0, "no UDP checksum stays none");
        }
    }
}

#[test]
fn nat_rewrites_address_and_port_with_every_checksum_state() {
    use super::conntrack::Manip;
    use crate::wire::checksum::pseudo_header_v4;
    let (s, d) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 3));
    let to = Ipv4Addr::new(192, 0, 2, 7);
    // A full UDP checksum stays right; a computed 0 would go as 0xffff.
    let mut p = udp([10, 0, 0, 3], 5000, 9, 11);
    UdpPacket::new_unchecked(&mut p.network_header_mut()[20..]).fill_checksum(s, d);
    super::nat::manip(&mut p, Manip::Src, u32::from(to), 40001);
    let ip = Ipv4Packet::new_unchecked(p.network_header());
    assert!(ip.verify_checksum());
    assert_eq!(ip.src_addr(), to);
    let u = UdpPacket::new_unchecked(&p.network_header()[20..]);
    assert_eq!(u.src_port(), 40001);
    assert!(u.verify_checksum(to, d), "incremental UDP sum");
    // No UDP checksum stays none; the destination side too.
    let mut p = udp([10, 0, 0, 3], 5000, 9, 11);
    super::nat::manip(&mut p, Manip::Dst, u32::from(to), 53);
    let ip = Ipv4Packet::new_unchecked(p.network_header());
    assert!(ip.verify_checksum());
    assert_eq!(ip.dst_addr(), to);
    let u = UdpPacket::new_unchecked(&p.network_header()[20..]);
    assert_eq!((u.dst_port(), u.checksum()), (53, 0));
    // CHECKSUM_PARTIAL: the field holds the pseudo-header's sum, which
    // follows the address (not the port: the device sums the header).
    let mut p = udp([10, 0, 0, 3], 5000, 9, 11);
    let pseudo = |a| !pseudo_header_v4(a, d, 17, 19).finish();
    p.network_header_mut()[26..28].copy_from_slice(&pseudo(s).to_be_bytes());
    p.meta.ip_summed = crate::buf::CsumState::Partial {
        start: 0,
        offset: 6,
    };
    super::nat::manip(&mut p, Manip::Src, u32::from(to), 40001);
    let u = UdpPacket::new_unchecked(&p.network_header()[20..]);
    assert_eq!(u.checksum(), pseudo(to));
}

#[test]
fn limit_is_nft_limits_token_bucket() {
    const S: u64 = 1_000_000_000;
    // 20/second, burst 5: 5 at once, then one each 50 ms.
    let l = Limit::new(20, 1, 5, false, false).unwrap();
    let pass: Vec<bool> = (0..7).map(|_| l.eval(40, 0, false)).collect();
    assert_eq!(pass, [true, true, true, true, true, false, false]);
    assert!(!l.eval(40, S / 20 - 1, false));
    assert!(l.eval(40, S / 20, false));
    assert!(!l.eval(40, S / 20, false));
    // A dry run takes nothing.
    assert!(l.eval(40, 2 * S / 20, true));
    assert!(l.eval(40, 2 * S / 20, false));
    // A long pause fills the bucket to its burst only.
    let got = (0..8).filter(|_| l.eval(40, 100 * S, false)).count();
    assert_eq!(got, 5);
    // `over` matches beyond the rate.
    let o = Limit::new(1, 60, 5, false, true).unwrap();
    let over: Vec<bool> = (0..6).map(|_| o.eval(40, 0, false)).collect();
    assert_eq!(over, [false, false, false, false, false, true]);
    // 100 bytes/second, burst 200 bytes: a bucket of 3 s, 0.38 s a 38-byte
    // packet; 7 pass.
    let b = Limit::new(100, 1, 200, true, false).unwrap();
    assert_eq!((0..10).filter(|_| b.eval(38, 0, false)).count(), 7);
    assert!(b.eval(38, 380_000_000, false));
    // nft_limit_init's refusals.
    assert_eq!(
        Limit::new(1023000 << 20, 1, 0, true, false).unwrap_err(),
        NftError::Overflow
    );
    assert!(Limit::new(0, 1, 5, false, false).is_err());
}

#[test]
fn big_hashed_sets_and_maps_find_every_element_and_nothing_else() {
    let (_stack, dev) = stack();
    let mut rs = ruleset(Policy::Accept);
    rs.add_set(Family::Ip, "t", "big", vec![DataType::Ipv4Addr], false)
        .unwrap();
    let addr = |i: u32| 0x0a00_0000 + i * 7;
    let elems: Vec<Elem> = (0..10_000).map(|i| Elem::one(u64::from(addr(i)))).collect();
    rs.add_elements(Family::Ip, "t", "big", &elems).unwrap();
    add(
        &mut rs,
        "out",
        vec![
            m(&[Key::IpDaddr], Op::Eq, Rhs::Named("big".into())),
            v(RuleVerdict::Drop),
        ],
    );
    let marks = MapElems {
        elems: (0..1000u32)
            .map(|i| (Elem::one(u64::from(i)), MapValue::Num(u64::from(i) + 1)))
            .collect(),
        default: None,
    };
    let set_mark = Stmt::MarkSetMap(vec![Key::UdpDport], MapRef::Anon(marks));
    add(&mut rs, "out", vec![set_mark]);
    for i in (0..10_000).step_by(97) {
        let mut p = udp(addr(i).to_be_bytes(), 1, 1, 0);
        assert_eq!(verdict(&rs, &mut p, &dev), Verdict::Drop, "element {i}");
    }
    for i in [1u32, 2, 3, 70_001, 123_456] {
        let mut p = udp((addr(0) + i).to_be_bytes(), 1, 999, 0);
        assert_eq!(verdict(&rs, &mut p, &dev), Verdict::Accept, "not {i}");
        assert_eq!(p.meta.mark, 1000);
    }
    let mut p = udp([1, 1, 1, 1], 1, 5000, 0);
    verdict(&rs, &mut p, &dev);
    assert_eq!(p.meta.mark, 0, "no element, no catch-all: no mark");
}

#[test]
fn would_match_names_the_rules_and_changes_nothing() {
    let (stack, dev) = stack();
    let mut nft = Nft::new();
    let counter = Counter::new(0, 0);
    let limit = Limit::new(1, 60, 1, false, false).unwrap();
    nft.commit(&stack, |rs| {
        *rs = ruleset(Policy::Accept);
        let mut h = Vec::new();
        let mut add = |chain: &str, stmts: Vec<Stmt>| {
            h.push(rs.add_rule(Family::Ip, "t", chain, stmts, Position::Append(None))?);
            Ok::<_, NftError>(())
        };
        add(
            "out",
            vec![Stmt::Counter(counter.clone()), Stmt::MarkSet(7)],
        )?;
        add(
            "out",
            vec![
                m(&[Key::UdpDport], Op::Eq, Rhs::Value(9)),
                v(RuleVerdict::Drop),
            ],
        )?;
        add(
            "out",
            vec![
                m(&[Key::MetaMark], Op::Eq, Rhs::Value(7)),
                v(RuleVerdict::Jump("sub".into())),
            ],
        )?;
        add(
            "sub",
            vec![Stmt::Limit(limit.clone()), Stmt::Counter(counter.clone())],
        )?;
        add(
            "out",
            vec![
                m(&[Key::UdpDport], Op::Eq, Rhs::Value(10)),
                Stmt::Reject(Reject::Icmp(3)),
            ],
        )?;
        Ok(h)
    })
    .unwrap();
    let handles = |refs: &[RuleRef]| {
        refs.iter()
            .map(|r| (r.chain.clone(), r.handle))
            .collect::<Vec<_>>()
    };
    let pkt = udp([10, 0, 0, 2], 1, 11, 0);
    let before = pkt.to_vec();
    let got = nft.would_match(HookPoint::LocalOut, &pkt, &dev);
    let h = |c: &str, i| (c.to_string(), i);
    assert_eq!(handles(&got), [h("out", 3), h("out", 5), h("sub", 6)]);
    // Twice: the limit's one token was not taken.
    assert_eq!(nft.would_match(HookPoint::LocalOut, &pkt, &dev).len(), 3);
    assert_eq!(counter.get(), (0, 0));
    assert_eq!(pkt.meta.mark, 0);
    assert_eq!(pkt.to_vec(), before);
    // A drop ends the walk; a reject sends nothing.
    let got = nft.would_match(HookPoint::LocalOut, &udp([10, 0, 0, 2], 1, 9, 0), &dev);
    assert_eq!(handles(&got), [h("out", 3), h("out", 4)]);
    let got = nft.would_match(HookPoint::LocalOut, &udp([10, 0, 0, 2], 1, 10, 0), &dev);
    assert_eq!(got.last().map(|r| r.handle), Some(7));
    assert_eq!(stack.counters.get(crate::stats::Mib::IcmpOutMsgs), 0);
    assert!(nft
        .would_match(HookPoint::PostRouting, &pkt, &dev)
        .is_empty());
}

#[test]
fn an_interval_overlapping_a_sets_is_refused() {
    let mut rs = ruleset(Policy::Accept);
    rs.add_set(Family::Ip, "t", "s", vec![DataType::Ipv4Addr], true)
        .unwrap();
    let net = |a: u64, len: u32| Elem {
        lo: a,
        hi: a + (1 << (32 - len)) - 1,
    };
    rs.add_elements(Family::Ip, "t", "s", &[net(0xc0a8_0100, 24)])
        .unwrap();
    rs.add_elements(
        Family::Ip,
        "t",
        "s",
        &[net(0xc0a8_0200, 24), net(0xc0a8_0100, 24)],
    )
    .unwrap();
    let one = Elem::one(0xc0a8_0101);
    assert_eq!(
        rs.add_elements(Family::Ip, "t", "s", &[one]),
        Err(NftError::Exists)
    );
}

/// A netdev table with egress chains on `eth0` (priority 0) and `eth1`.
fn egress_ruleset(rules: Vec<Vec<Stmt>>) -> Nft {
    let (stack, _) = stack();
    let mut nft = Nft::new();
    nft.commit(&stack, |rs| {
        rs.add_table(Family::Netdev, "n", false)?;
        for (name, dev) in [("eg", "eth0"), ("other", "eth1")] {
            let b = BaseChain {
                ty: ChainType::Filter,
                hook: ChainHook::Egress,
                device: Some(dev.into()),
                priority: 0,
                policy: Policy::Accept,
            };
            rs.add_chain(Family::Netdev, "n", name, Some(b), false)?;
        }
        for r in rules {
            rs.add_rule(Family::Netdev, "n", "eg", r, Position::Append(None))?;
        }
        rs.add_rule(
            Family::Netdev,
            "n",
            "other",
            vec![v(RuleVerdict::Drop)],
            Position::Append(None),
        )?;
        Ok(())
    })
    .unwrap();
    nft
}

/// The frame of `pkt` as `dev_queue_xmit` holds it: an Ethernet header in
/// front of the IP header, `skb->protocol` the EtherType.
fn framed(mut pkt: PacketBuf, proto: u16) -> PacketBuf {
    pkt.push(14).fill(0);
    pkt.meta.protocol = proto;
    pkt
}

#[test]
fn egress_rules_see_the_frame_and_ip_fields_need_an_ipv4_frame() {
    let counted = Counter::new(0, 0);
    let nft = egress_ruleset(vec![
        vec![
            Stmt::Counter(counted.clone()),
            m(&[Key::IpDaddr], Op::Eq, Rhs::Value(0x0a00_0002)),
            v(RuleVerdict::Drop),
        ],
        vec![
            m(&[Key::UdpDport], Op::Eq, Rhs::Value(9)),
            v(RuleVerdict::Drop),
        ],
    ]);
    let prog = nft.program();
    let eg = prog.egress_chains("eth0");
    assert_eq!(eg.len(), 1);
    let first = &prog.insns[prog.chains[eg[0] as usize].rules[0].start as usize..];
    assert!(
        matches!(first[1], Insn::ProtocolIs(0x0800)),
        "nft's `meta protocol ip` after the counter, before the load: {first:?}"
    );
    let (stack, dev) = stack();
    let hook = NftEgressHook(NftHook::new(prog.clone(), Arc::downgrade(&stack)));
    let run = |mut p: PacketBuf| hook.hook(HookPoint::Egress, &mut p, &dev);
    assert_eq!(
        run(framed(udp([10, 0, 0, 2], 1, 9, 7), 0x0800)),
        Verdict::Drop
    );
    // The same bytes as an ARP frame: counted, no IP field matches.
    assert_eq!(
        run(framed(udp([10, 0, 0, 2], 1, 9, 7), 0x0806)),
        Verdict::Accept
    );
    assert_eq!(
        counted.get(),
        (2, 2 * (14 + 28 + 7)),
        "frame lengths, link header in"
    );
    // A later fragment has no transport header.
    let mut frag = udp([10, 0, 0, 3], 1, 9, 7);
    frag.network_header_mut()[6..8].copy_from_slice(&185u16.to_be_bytes());
    assert_eq!(run(framed(frag, 0x0800)), Verdict::Accept);
    assert_eq!(
        run(framed(udp([10, 0, 0, 3], 1, 9, 7), 0x0800)),
        Verdict::Drop
    );
    // eth1's chain (drop all) is not eth0's.
    let (stack1, _) = stack_named("eth1");
    let dev1 = stack1.device("eth1").unwrap();
    let mut p = framed(udp([10, 0, 0, 3], 1, 10, 7), 0x0800);
    assert_eq!(hook.hook(HookPoint::Egress, &mut p, &dev1), Verdict::Drop);
}

fn stack_named(name: &str) -> (Arc<Stack>, Arc<NetDevice>) {
    let stack = Stack::new();
    let eth = DevConfig::ethernet(name, EthernetAddress([2, 0, 0, 0, 0, 2]));
    let dev = stack.add_device(eth, vec![Box::new(Sink)]).unwrap();
    (stack, dev)
}

/// `ct` in a netdev table: conntrack does not serve the family (`EPROTO`,
/// nft's "Protocol error"), and the ruleset stays as it was.
#[test]
fn ct_in_a_netdev_table_is_a_protocol_error() {
    let mut nft = egress_ruleset(Vec::new());
    let ct = m(&[Key::CtState], Op::Eq, Rhs::Flags(8));
    let r = nft
        .ruleset
        .add_rule(Family::Netdev, "n", "eg", vec![ct], Position::Append(None));
    assert_eq!(r, Err(NftError::Protocol));
    assert_eq!(nft.ruleset.tables[0].chains[0].rules.len(), 0);
}

/// A `route` chain whose rewritten destination has an `unreachable`
/// route: the send fails with the reroute's `EHOSTUNREACH` (the kernel's
/// `NF_DROP_ERR`), not `EPERM`, counted as a netfilter drop and in
/// `IpOutDiscards`.
#[test]
fn a_failed_reroute_is_the_sends_errno() {
    let (stack, _dev) = stack();
    stack
        .add_addr("eth0", "10.0.0.1/24".parse().unwrap())
        .unwrap();
    let mut spec = crate::stack::RouteSpec::new("10.41.0.0/16".parse().unwrap(), "eth0");
    (spec.kind, spec.dev) = (crate::route::RtnType::Unreachable, None);
    stack.add_route(spec).unwrap();
    let mut nft = Nft::new();
    nft.commit(&stack, |rs| {
        rs.add_table(Family::Ip, "t", false)?;
        let b = BaseChain {
            ty: ChainType::Route,
            hook: ChainHook::Output,
            device: None,
            priority: -150,
            policy: Policy::Accept,
        };
        rs.add_chain(Family::Ip, "t", "r", Some(b), false)?;
        let set = Stmt::FieldSet(Key::IpDaddr, u32::from(Ipv4Addr::new(10, 41, 1, 1)));
        let r = vec![m(&[Key::UdpDport], Op::Eq, Rhs::Value(9)), set];
        rs.add_rule(Family::Ip, "t", "r", r, Position::Append(None))
    })
    .unwrap();
    let mut s = crate::UdpSocket::new(&stack);
    let to = std::net::SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 9);
    let r = s.send_to(b"x", to, crate::MsgFlags::default());
    let e = r.expect_err("rerouted into an unreachable route");
    assert_eq!(e.errno(), crate::error::Errno::EHOSTUNREACH, "{e:?}");
    let c = stack.counters();
    assert_eq!(c.get(crate::stats::Mib::IpOutDiscards), 1);
    assert_eq!(c.dropped(crate::stats::DropReason::NetfilterDrop), 1);
}

/// A NAT map statement `snat to KEYS map { ... }` (`netmap`: `snat ip
/// prefix to`).
fn nat_map(keys: &[Key], elems: &[(Elem, NatTo)], default: Option<NatTo>, netmap: bool) -> Stmt {
    let map = MapElems {
        elems: elems.iter().map(|(e, t)| (*e, MapValue::Nat(*t))).collect(),
        default: default.map(MapValue::Nat),
    };
    Stmt::NatMap(NatMap {
        nat: Nat {
            kind: NatKind::Snat,
            addr: None,
            ports: None,
            flags: 0,
        },
        keys: keys.to_vec(),
        map: MapRef::Anon(map),
        netmap,
    })
}

#[test]
fn nat_maps_give_the_range_of_the_element_found() {
    let (_s, dev) = stack();
    let a = |s: &str| u64::from(u32::from(s.parse::<Ipv4Addr>().unwrap()));
    let to = |lo: &str, hi: &str, ports: Option<(u16, u16)>| NatTo {
        addr: Some((a(lo) as u32, a(hi) as u32)),
        ports,
    };
    let mut rs = ruleset(Policy::Accept);
    let post = BaseChain {
        ty: ChainType::Nat,
        hook: ChainHook::Postrouting,
        device: None,
        priority: 100,
        policy: Policy::Accept,
    };
    rs.add_chain(Family::Ip, "t", "post", Some(post), false)
        .unwrap();
    let dport = |p| m(&[Key::UdpDport], Op::Eq, Rhs::Value(p));
    let ranged = (
        Elem::one(9),
        to("10.9.0.10", "10.9.0.20", Some((7000, 7000))),
    );
    add(
        &mut rs,
        "post",
        vec![nat_map(&[Key::UdpDport], &[ranged], None, false)],
    );
    let net = Elem {
        lo: a("10.0.0.0"),
        hi: a("10.0.0.255"),
    };
    let prefix = to("192.168.2.0", "192.168.2.255", None);
    let netmap = nat_map(&[Key::IpSaddr], &[(net, prefix)], None, true);
    add(&mut rs, "post", vec![dport(10), netmap]);
    let one = (Elem::one(a("1.1.1.1")), to("2.2.2.2", "2.2.2.2", None));
    let catch_all = Some(to("3.3.3.3", "3.3.3.3", None));
    add(
        &mut rs,
        "post",
        vec![
            dport(11),
            nat_map(&[Key::IpDaddr], &[one], catch_all, false),
        ],
    );
    let prog = Program::compile(&rs).unwrap();
    let chain = prog.nat[1][0];
    let run = |daddr: [u8; 4], dport: u16| {
        let mut pkt = udp(daddr, 5000, dport, 4);
        let mut p = PktInfo::new(&mut pkt, &dev);
        let verdict = do_chain(&prog, chain, &mut p);
        assert_eq!(verdict, Verdict::Accept);
        p.nat.map(|n| (n.addr, n.ports))
    };
    let addr = |s: &str| Some((a(s) as u32, a(s) as u32));
    let range = (a("10.9.0.10") as u32, a("10.9.0.20") as u32);
    assert_eq!(
        run([9, 9, 9, 9], 9),
        Some((Some(range), Some((7000, 7000))))
    );
    assert_eq!(run([9, 9, 9, 9], 10), Some((addr("192.168.2.1"), None)));
    assert_eq!(run([1, 1, 1, 1], 11), Some((addr("2.2.2.2"), None)));
    assert_eq!(run([4, 4, 4, 4], 11), Some((addr("3.3.3.3"), None)));
    // No element: the rule does not match, the chain goes on to its end.
    assert_eq!(run([9, 9, 9, 9], 12), None);
}
