//! `add @set` / `update @set` (`nft_dynset`) on the compiled engine: what
//! the packet path adds, what a later lookup sees, a full set, timeouts
//! on a manual clock.

use std::sync::Arc;
use std::time::Duration;

use super::tests::{ruleset, stack, udp};
use super::*;
use crate::time::ManualClock;

const S: u64 = 1_000_000_000;

fn upd(update: bool, set: &str, keys: &[Key], timeout: u64) -> Stmt {
    Stmt::SetUpdate(SetUpdate {
        update,
        set: set.into(),
        keys: keys.to_vec(),
        timeout,
    })
}

fn lookup(set: &str) -> Stmt {
    Stmt::Match(Match {
        keys: vec![Key::IpDaddr],
        op: Op::Eq,
        rhs: Rhs::Named(set.into()),
    })
}

fn add(rs: &mut Ruleset, stmts: Vec<Stmt>) -> Result<u64, NftError> {
    rs.add_rule(Family::Ip, "t", "out", stmts, Position::Append(None))
}

/// Runs chain `out` of `prog` on a datagram to `daddr` at the clock's time.
fn send(prog: &Program, clock: &ManualClock, daddr: [u8; 4]) -> Verdict {
    let (_stack, dev) = stack();
    let mut pkt = udp(daddr, 1000, 53, 10);
    // Owner 1: no stack froze the time on this thread.
    let clock = (clock as &dyn crate::time::Clock, 1);
    let mut p = PktInfo::new(&mut pkt, &dev);
    p.clock = Some(&clock);
    do_chain(prog, 0, &mut p)
}

fn live(rs: &Ruleset, set: &str, now: u64) -> Vec<u64> {
    let s = rs.table(Family::Ip, "t").unwrap().set(set).unwrap();
    s.live.elems(now).into_iter().map(|(k, _)| k).collect()
}

#[test]
fn add_puts_the_key_in_the_set_and_a_later_rule_sees_it() {
    let mut rs = ruleset(Policy::Accept);
    let two = vec![DataType::Ipv4Addr; 2];
    rs.add_set_with(Family::Ip, "t", "pair", (two, false), SetOpts::default())
        .unwrap();
    rs.add_set(Family::Ip, "t", "d", vec![DataType::Ipv4Addr], false)
        .unwrap();
    let c = Counter::new(0, 0);
    add(&mut rs, vec![lookup("d"), Stmt::Counter(c.clone())]).unwrap();
    add(&mut rs, vec![upd(false, "d", &[Key::IpDaddr], 0)]).unwrap();
    add(
        &mut rs,
        vec![upd(false, "pair", &[Key::IpSaddr, Key::IpDaddr], 0)],
    )
    .unwrap();
    let c2 = Counter::new(0, 0);
    add(&mut rs, vec![lookup("d"), Stmt::Counter(c2.clone())]).unwrap();
    // nft_dynset_init(): a set without a size gets 65535.
    let t = rs.table(Family::Ip, "t").unwrap();
    assert_eq!(t.set("d").unwrap().opts.size, 65535);
    let prog = Program::compile(&rs).unwrap();
    let clock = ManualClock::new();
    for d in [[10, 9, 0, 2], [10, 9, 0, 3], [10, 9, 0, 2]] {
        assert_eq!(send(&prog, &clock, d), Verdict::Accept);
    }
    assert_eq!(live(&rs, "d", 0), [0x0a09_0002, 0x0a09_0003]);
    let src = 0x0a00_0001u64 << 32;
    assert_eq!(live(&rs, "pair", 0), [src | 0x0a09_0002, src | 0x0a09_0003]);
    // The first rule saw the third datagram only; the last, all three.
    assert_eq!(c.get().0, 1);
    assert_eq!(c2.get().0, 3);
    // A new generation of the program shares the elements.
    let again = Program::compile(&rs).unwrap();
    send(&again, &clock, [10, 9, 0, 3]);
    assert_eq!(c.get().0, 2);
}

#[test]
fn a_full_set_stops_the_rule() {
    let mut rs = ruleset(Policy::Accept);
    let opts = SetOpts {
        size: 2,
        dynamic: true,
        ..SetOpts::default()
    };
    let ty = (vec![DataType::Ipv4Addr], false);
    rs.add_set_with(Family::Ip, "t", "s", ty, opts).unwrap();
    rs.add_elements(Family::Ip, "t", "s", &[Elem::one(0x0101_0101)])
        .unwrap();
    let c = Counter::new(0, 0);
    let rule = vec![
        upd(false, "s", &[Key::IpDaddr], 0),
        Stmt::Counter(c.clone()),
    ];
    add(&mut rs, rule).unwrap();
    let prog = Program::compile(&rs).unwrap();
    let clock = ManualClock::new();
    // An element `add element` made counts toward the size, and is found.
    send(&prog, &clock, [1, 1, 1, 1]);
    send(&prog, &clock, [10, 9, 0, 2]);
    send(&prog, &clock, [10, 9, 0, 3]);
    assert_eq!(live(&rs, "s", 0), [0x0a09_0002]);
    assert_eq!(c.get().0, 2);
}

#[test]
fn timeouts_expire_on_the_clock_and_update_refreshes() {
    let mut rs = ruleset(Policy::Accept);
    let opts = SetOpts {
        timeout: 10_000,
        ..SetOpts::default()
    };
    let ty = (vec![DataType::Ipv4Addr], false);
    rs.add_set_with(Family::Ip, "t", "s", ty, opts).unwrap();
    let c = Counter::new(0, 0);
    add(&mut rs, vec![lookup("s"), Stmt::Counter(c.clone())]).unwrap();
    add(&mut rs, vec![upd(false, "s", &[Key::IpDaddr], 0)]).unwrap();
    let prog = Program::compile(&rs).unwrap();
    let clock = ManualClock::new();
    send(&prog, &clock, [10, 9, 0, 2]);
    let s = rs.table(Family::Ip, "t").unwrap().set("s").unwrap();
    let e = s.live.elems(0)[0].1;
    assert_eq!((e.timeout, e.expires), (10 * S, 10 * S));
    clock.advance(Duration::from_nanos(10 * S - 1));
    send(&prog, &clock, [10, 9, 0, 2]);
    assert_eq!(c.get().0, 1);
    // Expired: not found, added again.
    clock.advance(Duration::from_nanos(1));
    send(&prog, &clock, [10, 9, 0, 2]);
    assert_eq!(c.get().0, 1);
    assert_eq!(s.live.elems(10 * S)[0].1.expires, 20 * S);
    // update with its own timeout refreshes the expiration only.
    let mut rs2 = rs.clone();
    add(&mut rs2, vec![upd(true, "s", &[Key::IpDaddr], 30_000)]).unwrap();
    let prog2 = Program::compile(&rs2).unwrap();
    clock.advance(Duration::from_nanos(S));
    send(&prog2, &clock, [10, 9, 0, 2]);
    let e = s.live.elems(11 * S)[0].1;
    assert_eq!((e.timeout, e.expires), (10 * S, 41 * S));
}

#[test]
fn refusals_are_the_kernels() {
    let mut rs = ruleset(Policy::Accept);
    let plain = |rs: &mut Ruleset, n: &str, ty: DataType, iv: bool, o: SetOpts| {
        rs.add_set_with(Family::Ip, "t", n, (vec![ty], iv), o)
            .unwrap()
    };
    let none = SetOpts::default();
    plain(&mut rs, "a", DataType::Ipv4Addr, false, none);
    plain(&mut rs, "iv", DataType::Ipv4Addr, true, none);
    plain(&mut rs, "port", DataType::InetService, false, none);
    let sized = SetOpts { size: 4, ..none };
    plain(&mut rs, "sized", DataType::Ipv4Addr, false, sized);
    let dynamic = SetOpts {
        dynamic: true,
        ..sized
    };
    plain(&mut rs, "dport", DataType::InetService, false, dynamic);
    let d = [Key::IpDaddr];
    let try_add = |rs: &mut Ruleset, s: Stmt| add(rs, vec![s]).map(|_| ());
    assert_eq!(
        try_add(&mut rs, upd(false, "x", &d, 0)),
        Err(NftError::NoEntry)
    );
    let port = [Key::UdpDport];
    let mismatch = Err(NftError::DatatypeMismatch);
    assert_eq!(try_add(&mut rs, upd(false, "port", &d, 0)), mismatch);
    let unsupported = Err(NftError::NotSupported);
    // nft_rbtree, nft_bitmap and the fixed nft_hash have no update.
    assert_eq!(try_add(&mut rs, upd(false, "iv", &d, 0)), unsupported);
    assert_eq!(try_add(&mut rs, upd(false, "port", &port, 0)), unsupported);
    assert_eq!(try_add(&mut rs, upd(true, "sized", &d, 0)), unsupported);
    // A timeout on a set without timeouts.
    assert_eq!(try_add(&mut rs, upd(false, "a", &d, 5000)), unsupported);
    assert_eq!(try_add(&mut rs, upd(true, "a", &d, 0)), Ok(()));
    assert_eq!(try_add(&mut rs, upd(false, "dport", &port, 0)), Ok(()));
    let t = rs.table(Family::Ip, "t").unwrap();
    assert_eq!(t.set("dport").unwrap().opts.size, 4);
}

#[test]
fn a_dry_run_adds_nothing() {
    let mut rs = ruleset(Policy::Accept);
    rs.add_set(Family::Ip, "t", "d", vec![DataType::Ipv4Addr], false)
        .unwrap();
    add(&mut rs, vec![upd(false, "d", &[Key::IpDaddr], 0)]).unwrap();
    let prog = Arc::new(Program::compile(&rs).unwrap());
    let (_stack, dev) = stack();
    let mut pkt = udp([10, 9, 0, 2], 1000, 53, 10);
    let mut p = PktInfo::new(&mut pkt, &dev);
    p.dry = true;
    do_chain(&prog, 0, &mut p);
    assert!(live(&rs, "d", 0).is_empty());
}

#[test]
fn only_a_set_rules_add_to_is_looked_up_in_its_live_elements() {
    let mut rs = ruleset(Policy::Accept);
    for n in ["a", "b"] {
        rs.add_set(Family::Ip, "t", n, vec![DataType::Ipv4Addr], false)
            .unwrap();
        add(&mut rs, vec![lookup(n)]).unwrap();
    }
    add(&mut rs, vec![upd(false, "b", &[Key::IpDaddr], 0)]).unwrap();
    let prog = Program::compile(&rs).unwrap();
    let live: Vec<bool> = prog.sets.iter().map(|s| s.live.is_some()).collect();
    // The lookups of a and b, then the update's own view of b.
    assert_eq!(live, [false, true, true]);
}
