//! The flat form of compiled chains ([`compile::CompiledChain`]): rule
//! ends, where a rule that does not match goes on, the fused tests, and
//! that they decide as the instructions they stand for.

use std::net::Ipv4Addr;
use std::sync::{Arc, Weak};

use super::*;
use crate::dev::{DevConfig, Driver, TxStatus};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet};
use crate::wire::EthernetAddress;

struct Sink;

impl Driver for Sink {
    fn start_xmit(&mut self, _pkt: PacketBuf, _more: bool) -> TxStatus {
        TxStatus::Ok
    }
}

fn dev() -> (Arc<Stack>, Arc<NetDevice>) {
    let stack = Stack::new();
    let eth = DevConfig::ethernet("eth0", EthernetAddress([2, 0, 0, 0, 0, 1]));
    let dev = stack.add_device(eth, vec![Box::new(Sink)]).unwrap();
    (stack, dev)
}

/// An IPv4 datagram of protocol `proto` 10.0.0.1 -> 10.0.0.2 whose
/// transport header is `th` (ports first).
fn datagram(proto: u8, th: &[u8]) -> PacketBuf {
    let mut b = vec![0u8; 20 + th.len()];
    let mut ip = Ipv4Packet::new_unchecked(&mut b[..]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_total_len((20 + th.len()) as u16);
    ip.set_ttl(64);
    ip.set_protocol(IpProtocol(proto));
    ip.set_src_addr(Ipv4Addr::new(10, 0, 0, 1));
    ip.set_dst_addr(Ipv4Addr::new(10, 0, 0, 2));
    ip.fill_checksum();
    b[20..].copy_from_slice(th);
    let mut p = PacketBuf::from_slice(64, &b);
    p.reset_network_header();
    p
}

fn m(key: Key, op: Op, rhs: Rhs) -> Stmt {
    Stmt::Match(Match {
        keys: vec![key],
        op,
        rhs,
    })
}

/// Table `t`, output chain `out` (policy accept) with `rules`, each
/// followed by a counter: the counters.
fn chain(rules: Vec<Vec<Stmt>>) -> (Ruleset, Vec<Arc<Counter>>) {
    let mut rs = Ruleset::default();
    rs.add_table(Family::Ip, "t", false).unwrap();
    let base = BaseChain {
        ty: ChainType::Filter,
        hook: ChainHook::Output,
        device: None,
        priority: 0,
        policy: Policy::Accept,
    };
    rs.add_chain(Family::Ip, "t", "out", Some(base), false)
        .unwrap();
    let mut counters = Vec::new();
    for mut r in rules {
        let c = Counter::new(0, 0);
        r.push(Stmt::Counter(c.clone()));
        counters.push(c);
        rs.add_rule(Family::Ip, "t", "out", r, Position::Append(None))
            .unwrap();
    }
    (rs, counters)
}

/// Which of the counters the packet passed (rule by rule).
fn passed(rs: &Ruleset, counters: &[Arc<Counter>], mut pkt: PacketBuf) -> Vec<bool> {
    let (_s, dev) = dev();
    let hook = NftHook::new(Arc::new(Program::compile(rs).unwrap()), Weak::new());
    assert_eq!(
        hook.hook(HookPoint::LocalOut, &mut pkt, &dev),
        Verdict::Accept
    );
    counters.iter().map(|c| c.get().0 == 1).collect()
}

#[test]
fn rules_lie_in_one_array_with_their_ends_and_successors() {
    let (rs, _) = chain(vec![
        vec![m(Key::UdpDport, Op::Eq, Rhs::Value(1000))],
        vec![m(Key::IpSaddr, Op::Eq, Rhs::Prefix(0xc633_6400, 24))],
        vec![m(Key::MetaMark, Op::Eq, Rhs::Value(7))],
    ]);
    let prog = Program::compile(&rs).unwrap();
    let c = &prog.chains[0];
    let at = |i: u32| prog.insns[i as usize];
    // Each rule: its test fused into one instruction, then the counter.
    for r in &c.rules {
        assert_eq!(r.end - r.start, 2, "{:?}", &prog.insns);
        assert_eq!(at(r.end), Insn::RuleEnd);
        for pc in r.start..=r.end {
            assert_eq!(prog.next[pc as usize], r.end + 1);
        }
    }
    assert!(matches!(
        at(c.rules[0].start),
        Insn::Test {
            at: 22,
            end: 24,
            proto: Some(17),
            data: 1000,
            ..
        }
    ));
    assert!(matches!(
        at(c.rules[1].start),
        Insn::Test {
            at: 12,
            end: 16,
            proto: None,
            mask: 0xffff_ff00,
            ..
        }
    ));
    assert!(matches!(
        at(c.rules[2].start),
        Insn::MetaCmp { data: 7, .. }
    ));
    assert_eq!(at(c.rules[2].end + 1), Insn::ChainEnd);
    assert_eq!(c.start, 0);
}

#[test]
fn fused_tests_decide_as_the_kernels_expressions() {
    let udp = |dport: u16| {
        let mut th = [0u8; 8];
        th[..2].copy_from_slice(&53u16.to_be_bytes());
        th[2..4].copy_from_slice(&dport.to_be_bytes());
        th
    };
    let rules = || {
        chain(vec![
            vec![m(Key::UdpDport, Op::Eq, Rhs::Value(9))],
            vec![m(Key::UdpDport, Op::Ne, Rhs::Value(9))],
            vec![m(Key::UdpDport, Op::Lt, Rhs::Value(10))],
            vec![m(Key::IpDaddr, Op::Eq, Rhs::Prefix(0x0a00_0000, 8))],
            vec![m(Key::IpDaddr, Op::Ne, Rhs::Prefix(0x0a00_0000, 8))],
            vec![m(Key::IpProtocol, Op::Eq, Rhs::Value(17))],
            vec![Stmt::TtlSet(5)],
            vec![m(Key::IpTtl, Op::Eq, Rhs::Value(5))],
            vec![Stmt::MarkSet(3)],
            vec![m(Key::MetaMark, Op::Eq, Rhs::Value(3))],
        ])
    };
    let yes = |v: &[usize]| (0..10).map(|i| v.contains(&i)).collect::<Vec<_>>();
    let run = |pkt| {
        let (rs, c) = rules();
        passed(&rs, &c, pkt)
    };
    // UDP to port 9; the TTL and mark tests see the statements before.
    assert_eq!(run(datagram(17, &udp(9))), yes(&[0, 2, 3, 5, 6, 7, 8, 9]));
    assert_eq!(run(datagram(17, &udp(99))), yes(&[1, 3, 5, 6, 7, 8, 9]));
    // The same bytes in a TCP header: no UDP field (the l4proto dependency).
    let mut tcp = [0u8; 20];
    tcp[..8].copy_from_slice(&udp(9));
    assert_eq!(run(datagram(6, &tcp)), yes(&[3, 6, 7, 8, 9]));
    // A UDP header cut after the source port: `!=` does not hold either.
    assert_eq!(run(datagram(17, &udp(9)[..3])), yes(&[3, 5, 6, 7, 8, 9]));
}

#[test]
fn a_block_of_guarded_rules_skips_to_the_first_whose_guard_holds() {
    let udp = |dport: u16| {
        let mut th = [0u8; 8];
        th[2..4].copy_from_slice(&dport.to_be_bytes());
        th
    };
    let rules = || {
        chain(vec![
            vec![m(Key::UdpDport, Op::Eq, Rhs::Value(1))],
            vec![m(Key::MetaMark, Op::Eq, Rhs::Value(5))],
            vec![
                m(Key::UdpDport, Op::Eq, Rhs::Value(9)),
                m(Key::IpTtl, Op::Eq, Rhs::Value(1)),
            ],
            vec![m(Key::IpDaddr, Op::Eq, Rhs::Value(0x0a00_0002))],
            vec![m(Key::UdpDport, Op::Eq, Rhs::Value(9)), Stmt::MarkSet(5)],
            vec![m(Key::MetaMark, Op::Eq, Rhs::Value(5))],
            vec![m(Key::UdpDport, Op::Eq, Rhs::Value(9))],
            vec![],
        ])
    };
    let (rs, _) = rules();
    let prog = Program::compile(&rs).unwrap();
    assert_eq!(prog.insns[0], Insn::Block(0), "{:?}", prog.insns);
    let b = &prog.blocks[0];
    assert_eq!(b.starts.len(), 7);
    assert_eq!(b.end, prog.chains[0].rules[7].start);
    let yes = |v: &[usize]| (0..8).map(|i| v.contains(&i)).collect::<Vec<_>>();
    let run = |pkt| {
        let (rs, c) = rules();
        passed(&rs, &c, pkt)
    };
    // Port 9 to 10.0.0.2: rule 2's guard holds, its TTL test does not;
    // the rules after run one by one and see rule 4's mark.
    assert_eq!(run(datagram(17, &udp(9))), yes(&[3, 4, 5, 6, 7]));
    // No guard holds but the address: the walk goes on at rule 3.
    assert_eq!(run(datagram(17, &udp(7))), yes(&[3, 7]));
    // TCP: no UDP field, no mark; only the address.
    assert_eq!(run(datagram(6, &[0u8; 20])), yes(&[3, 7]));
}
