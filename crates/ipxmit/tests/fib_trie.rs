//! `route::Fib`'s trie against a plain linear-scan reference of
//! `fib_table_lookup()`: random tables (prefixes clustered so they nest
//! across the trie's 16/24-bit node boundaries, every length 0..=32, TOS
//! keys, metrics, error types, two devices one of which may go down),
//! random adds and deletes interleaved, and lookups by flow (TOS, `oif`)
//! at random addresses and at every route's edges.

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use ipxmit::dev::{DevConfig, Driver, NetDevice, TxStatus};
use ipxmit::route::{Dst, Fib, FlowKey, Lookup, Route, RouteError, RtnType};
use ipxmit::wire::EthernetAddress;
use ipxmit::{PacketBuf, Stack};
use proptest::prelude::*;

/// A driver that drops every frame.
struct Sink;

impl Driver for Sink {
    fn start_xmit(&mut self, _pkt: PacketBuf, _more: bool) -> TxStatus {
        TxStatus::Ok
    }
}

fn devices() -> (Arc<Stack>, [Arc<NetDevice>; 2]) {
    let stack = Stack::new();
    let dev = |name: &str, last: u8| {
        let mac = EthernetAddress([2, 0, 0, 0, 0, last]);
        let sink: Box<dyn Driver> = Box::new(Sink);
        stack
            .add_device(DevConfig::ethernet(name, mac), vec![sink])
            .unwrap()
    };
    let devs = [dev("dum0", 1), dev("dum1", 2)];
    (stack, devs)
}

/// One route to add: address, length, metric, TOS, type (0..4: unicast,
/// unicast, local, unreachable, throw) and device.
type Spec = (u32, u8, u32, u8, u8, bool);

fn make(devs: &[Arc<NetDevice>; 2], (addr, len, metric, tos, kind, on_b): Spec) -> Route {
    let net = Ipv4Net::new(Ipv4Addr::from(addr), len).unwrap().trunc();
    let dst = Arc::new(Dst::new(devs[usize::from(on_b)].clone(), None));
    let mut r = Route::unicast(net, metric, dst);
    r.tos = tos;
    r.kind = [
        RtnType::Unicast,
        RtnType::Unicast,
        RtnType::Local,
        RtnType::Unreachable,
        RtnType::Throw,
    ][usize::from(kind % 5)];
    if r.kind.is_error() {
        r.dst = None;
    }
    r
}

/// A route's identity: prefix, TOS, metric.
type Id = (Ipv4Net, u8, u32);

fn id(r: &Route) -> Id {
    (r.prefix, r.tos, r.metric)
}

/// What a lookup answered, comparable.
fn outcome(l: Lookup<'_>) -> Option<(Id, Option<RouteError>)> {
    match l {
        Lookup::Found(r) => Some((id(r), None)),
        Lookup::Error(r, e) => Some((id(r), Some(e))),
        Lookup::Continue => None,
    }
}

/// The reference: every route covering the address, longest prefix first,
/// then the kernel's alias order (higher TOS, lower metric), the same
/// per-route test as the kernel's.
fn reference(all: &[Route], key: &FlowKey) -> Option<(Id, Option<RouteError>)> {
    let tos = key.tos & 0x1c;
    let mut cands: Vec<&Route> = all
        .iter()
        .filter(|r| r.prefix.contains(&key.daddr))
        .collect();
    cands.sort_by_key(|r| {
        (
            std::cmp::Reverse(r.prefix.prefix_len()),
            std::cmp::Reverse(r.tos),
            r.metric,
        )
    });
    for r in cands.into_iter().filter(|r| r.tos == 0 || r.tos == tos) {
        match r.kind.error(key.daddr) {
            Some(Ok(())) => return None,
            Some(Err(e)) => return Some((id(r), Some(e))),
            None => {}
        }
        let d = r.dst.as_ref().unwrap();
        if d.dev.is_up() && (key.oif == 0 || key.oif == d.dev.ifindex()) {
            return Some((id(r), None));
        }
    }
    None
}

/// Addresses in a few nested neighbourhoods around 10.1.2.0, or anywhere.
fn address() -> impl Strategy<Value = u32> {
    prop_oneof![
        any::<u32>(),
        (0u32..=0x3ffff).prop_map(|x| 0x0a00_0000 | x),
        (0u32..=0x3ff).prop_map(|x| 0x0a01_0000 | x),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    let len = prop_oneof![
        0u8..=32,
        Just(16u8),
        Just(24),
        Just(8),
        15u8..=17,
        23u8..=25
    ];
    let tos = prop_oneof![Just(0u8), Just(0u8), Just(0x04), Just(0x08)];
    (address(), len, 0u32..3, tos, 0u8..5, any::<bool>())
}

/// Edges of every route: network, broadcast, one past each end.
fn probes(all: &[Route], random: &[u32]) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = random.iter().map(|&a| Ipv4Addr::from(a)).collect();
    for r in all {
        let (n, b) = (
            u32::from(r.prefix.network()),
            u32::from(r.prefix.broadcast()),
        );
        v.extend([n, b, n.wrapping_sub(1), b.wrapping_add(1)].map(Ipv4Addr::from));
    }
    v
}

fn check(
    fib: &Fib,
    all: &[Route],
    probes: &[Ipv4Addr],
    oifs: [u32; 2],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(fib.len(), all.len());
    for &a in probes {
        for (tos, oif) in [(0, 0), (0x04, 0), (0x0b, oifs[1]), (0, oifs[0])] {
            let key = FlowKey {
                tos,
                oif,
                ..FlowKey::to(a)
            };
            prop_assert_eq!(
                outcome(fib.lookup_flow(&key)),
                reference(all, &key),
                "{:?}",
                key
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn trie_lookups_equal_a_linear_scan(
        ops in prop::collection::vec((spec(), any::<prop::sample::Index>(), 0u8..4), 1..300),
        random in prop::collection::vec(any::<u32>(), 0..64),
        down in any::<bool>(),
    ) {
        let (_stack, devs) = devices();
        let mut fib = Fib::new();
        let mut all: Vec<Route> = Vec::new();
        for (s, ix, what) in ops {
            if what == 0 && !all.is_empty() {
                // Delete a route that exists, by its identity.
                let r = all.remove(ix.index(all.len()));
                let key = ipxmit::route::DelKey {
                    tos: r.tos,
                    metric: Some(r.metric),
                    ..Default::default()
                };
                prop_assert_eq!(fib.delete_matching(r.prefix, &key).map(|x| id(&x)), Ok(id(&r)));
                continue;
            }
            let r = make(&devs, s);
            let exists = all.iter().any(|o| id(o) == id(&r));
            let got = fib.add(make(&devs, s));
            prop_assert_eq!(got.is_err(), exists);
            if !exists {
                all.push(r);
            }
        }
        let oifs = [devs[0].ifindex(), devs[1].ifindex()];
        let probes = probes(&all, &random);
        check(&fib, &all, &probes, oifs)?;
        devs[1].set_up(!down);
        check(&fib, &all, &probes, oifs)?;
        fib.flush_dev(oifs[0]);
        all.retain(|r| r.dst.as_ref().is_none_or(|d| d.dev.ifindex() != oifs[0]));
        check(&fib, &all, &probes, oifs)?;
    }
}

/// A full-table shape (mostly /24 under /16s) removed again leaves the
/// table answering nothing, in any order of removal.
#[test]
fn removing_every_route_leaves_nothing_behind() {
    let (_stack, devs) = devices();
    let mut fib = Fib::new();
    let mut nets = Vec::new();
    for i in 0..2000u32 {
        let len = [24, 16, 20, 32, 8][(i % 5) as usize];
        let a = Ipv4Addr::from(0x0a00_0000 | (i.wrapping_mul(0x9e37_79b9) >> 8));
        let net = Ipv4Net::new(a, len).unwrap().trunc();
        let dst = Arc::new(Dst::new(devs[0].clone(), None));
        if fib.add(Route::unicast(net, 0, dst)).is_ok() {
            nets.push(net);
        }
    }
    let empty = Fib::new().bytes();
    assert!(fib.bytes() > empty);
    for (i, net) in nets.iter().enumerate() {
        fib.delete(*net, None).unwrap();
        if i % 97 == 0 {
            for n in &nets[i + 1..] {
                assert_eq!(
                    fib.lookup(n.network())
                        .map(|r| r.prefix.contains(&n.network())),
                    Some(true)
                );
            }
        }
    }
    assert!(fib.is_empty());
    for net in &nets {
        assert!(fib.lookup(net.network()).is_none());
    }
}
