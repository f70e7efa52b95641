//! `route::Fib` against an independent longest-prefix-match oracle
//! (`prefix_trie::PrefixMap`): random prefixes of every length, random metrics,
//! lookups, deletes and device flushes; plus the table's refusals (duplicate
//! prefix and metric, route MTU out of range).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use ipxmit::dev::{DevConfig, Driver, NetDevice, TxStatus};
use ipxmit::route::{Dst, Fib, Route, RouteError, IP_MAX_MTU, IP_MIN_MTU};
use ipxmit::wire::EthernetAddress;
use ipxmit::{PacketBuf, Stack};
use prefix_trie::PrefixMap;
use proptest::prelude::*;

/// A driver that accepts and drops every frame.
struct Sink;

impl Driver for Sink {
    fn start_xmit(&mut self, _pkt: PacketBuf, _more: bool) -> TxStatus {
        TxStatus::Ok
    }
}

/// Two devices on a fresh stack.
fn devices() -> (Arc<Stack>, Arc<NetDevice>, Arc<NetDevice>) {
    let stack = Stack::new();
    let a = stack
        .add_device(
            DevConfig::ethernet("dum0", EthernetAddress([2, 0, 0, 0, 0, 1])),
            vec![Box::new(Sink)],
        )
        .unwrap();
    let b = stack
        .add_device(
            DevConfig::ethernet("dum1", EthernetAddress([2, 0, 0, 0, 0, 2])),
            vec![Box::new(Sink)],
        )
        .unwrap();
    (stack, a, b)
}

/// A route whose gateway names it (`id`), so lookups can be compared.
fn route(dev: &Arc<NetDevice>, net: Ipv4Net, metric: u32, id: u32) -> Route {
    Route::unicast(
        net,
        metric,
        Arc::new(Dst::new(dev.clone(), Some(Ipv4Addr::from(id)))),
    )
}

fn id_of(r: &Route) -> u32 {
    let d = r.dst.as_ref().expect("test routes have a next hop");
    u32::from(d.gateway.expect("test routes have a gateway"))
}

/// The oracle: per prefix, metric -> (route id, device index).
type Oracle = PrefixMap<Ipv4Net, BTreeMap<u32, (u32, usize)>>;

fn oracle_lookup(o: &Oracle, a: Ipv4Addr) -> Option<u32> {
    let host = Ipv4Net::new(a, 32).unwrap();
    o.get_lpm(&host)
        .and_then(|(_, m)| m.values().next().map(|&(id, _)| id))
}

fn oracle_len(o: &Oracle) -> usize {
    o.iter().map(|(_, m)| m.len()).sum()
}

/// Addresses worth looking up: random ones, each route's network, and
/// neighbours of it that differ in the host part or just past the prefix.
fn probes(adds: &[(u32, u8, u32, bool)], random: &[u32]) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = random.iter().map(|&a| Ipv4Addr::from(a)).collect();
    for &(addr, len, _, _) in adds {
        let net = Ipv4Net::new(Ipv4Addr::from(addr), len).unwrap().trunc();
        let n = u32::from(net.network());
        v.push(net.network());
        v.push(net.broadcast());
        v.push(Ipv4Addr::from(
            n ^ (addr.rotate_left(7) & !u32::from(net.netmask())),
        ));
        if len > 0 {
            v.push(Ipv4Addr::from(n ^ (1 << (32 - len as u32))));
        }
        if len < 32 {
            v.push(Ipv4Addr::from(n | 1));
        }
    }
    v
}

/// Prefix lengths concentrated on a few values so equal prefixes collide,
/// with every length 0..=32 possible.
fn prefix_len() -> impl Strategy<Value = u8> {
    prop_oneof![0u8..=32, Just(8u8), Just(16), Just(24), Just(32)]
}

/// Addresses from a small neighbourhood (so prefixes nest) or anywhere.
fn address() -> impl Strategy<Value = u32> {
    prop_oneof![
        any::<u32>(),
        (0u32..=0xffff).prop_map(|x| 0x0a00_0000 | x),
        (0u32..=0xff).prop_map(|x| 0xc0a8_0100 | x),
    ]
}

fn add_both(
    fib: &mut Fib,
    o: &mut Oracle,
    devs: &[Arc<NetDevice>; 2],
    (addr, len, metric, on_b): (u32, u8, u32, bool),
    id: u32,
) -> Result<(), TestCaseError> {
    let net = Ipv4Net::new(Ipv4Addr::from(addr), len).unwrap();
    let dev = usize::from(on_b);
    let r = fib.add(route(&devs[dev], net, metric, id));
    let slot = o.get(&net.trunc());
    if slot.is_some_and(|m| m.contains_key(&metric)) {
        prop_assert_eq!(r, Err(RouteError::Exists(net.trunc(), metric)));
    } else {
        prop_assert_eq!(r, Ok(()));
        match o.get_mut(&net.trunc()) {
            Some(m) => {
                m.insert(metric, (id, dev));
            }
            None => {
                o.insert(net.trunc(), BTreeMap::from([(metric, (id, dev))]));
            }
        }
    }
    Ok(())
}

fn check_all(fib: &Fib, o: &Oracle, probes: &[Ipv4Addr]) -> Result<(), TestCaseError> {
    for &a in probes {
        let got = fib.lookup(a).map(id_of);
        prop_assert_eq!(got, oracle_lookup(o, a), "lookup {}", a);
        if let Some(r) = fib.lookup(a) {
            prop_assert!(r.prefix.contains(&a));
            prop_assert_eq!(r.prefix, r.prefix.trunc(), "stored prefix is truncated");
        }
    }
    prop_assert_eq!(fib.len(), oracle_len(o));
    prop_assert_eq!(fib.is_empty(), oracle_len(o) == 0);
    let routes = fib.routes();
    prop_assert_eq!(routes.len(), fib.len());
    for w in routes.windows(2) {
        // The kernel's trie dump: by address, the longer prefix first
        // under one address, then metric.
        let k = |r: &Route| {
            (
                r.prefix.network(),
                std::cmp::Reverse(r.prefix.prefix_len()),
                r.metric,
            )
        };
        prop_assert!(
            k(w[0]) < k(w[1]),
            "routes() by address, then longest first, then metric"
        );
    }
    for r in routes {
        let m = o.get(&r.prefix).expect("route in oracle");
        prop_assert_eq!(m.get(&r.metric).map(|x| x.0), Some(id_of(r)));
    }
    Ok(())
}

proptest! {
    #[test]
    fn lookups_match_the_prefix_trie_oracle(
        adds in prop::collection::vec((address(), prefix_len(), 0u32..4, any::<bool>()), 0..60),
        dels in prop::collection::vec((any::<prop::sample::Index>(), prop::option::of(0u32..4)), 0..30),
        random in prop::collection::vec(any::<u32>(), 0..40),
        flush in any::<bool>(),
    ) {
        let (_stack, a, b) = devices();
        let devs = [a, b];
        let mut fib = Fib::new();
        let mut o: Oracle = PrefixMap::new();
        for (id, &add) in adds.iter().enumerate() {
            add_both(&mut fib, &mut o, &devs, add, id as u32 + 1)?;
        }
        let probes = probes(&adds, &random);
        check_all(&fib, &o, &probes)?;

        // Deletes: of a prefix that was added (or a random one when none
        // was), with a given metric or the best route.
        for (ix, metric) in &dels {
            let (addr, len) = if adds.is_empty() {
                (ix.index(1 << 32) as u32, (ix.index(33)) as u8)
            } else {
                let (addr, len, _, _) = adds[ix.index(adds.len())];
                (addr, len)
            };
            let net = Ipv4Net::new(Ipv4Addr::from(addr), len).unwrap().trunc();
            let want = o.get(&net).and_then(|m| match metric {
                Some(x) => m.get(x).map(|v| (*x, v.0)),
                None => m.iter().next().map(|(k, v)| (*k, v.0)),
            });
            let r = fib.delete(net, *metric);
            match want {
                Some((m, id)) => {
                    let got = r.map(|r| (r.metric, id_of(&r)));
                    prop_assert_eq!(got, Ok((m, id)));
                    let slot = o.get_mut(&net).unwrap();
                    slot.remove(&m);
                    if slot.is_empty() {
                        o.remove(&net);
                    }
                }
                None => prop_assert_eq!(r.map(|_| ()), Err(RouteError::NotFound(net))),
            }
        }
        check_all(&fib, &o, &probes)?;

        if flush {
            fib.flush_dev(devs[0].ifindex());
            let mut kept: Oracle = PrefixMap::new();
            for (p, m) in o.iter() {
                let m: BTreeMap<u32, (u32, usize)> =
                    m.iter().filter(|(_, v)| v.1 == 1).map(|(k, v)| (*k, *v)).collect();
                if !m.is_empty() {
                    kept.insert(p, m);
                }
            }
            check_all(&fib, &kept, &probes)?;
            prop_assert!(fib.routes().iter().all(|r| r.dst.as_ref().is_some_and(|d| d.dev.ifindex() == devs[1].ifindex())));
        }
    }
}

#[test]
fn lower_metric_wins_among_equal_prefixes() {
    let (_s, dev, _) = devices();
    let mut fib = Fib::new();
    let net: Ipv4Net = "10.1.0.0/16".parse().unwrap();
    fib.add(route(&dev, net, 300, 1)).unwrap();
    fib.add(route(&dev, net, 100, 2)).unwrap();
    fib.add(route(&dev, net, 200, 3)).unwrap();
    let a = Ipv4Addr::new(10, 1, 2, 3);
    assert_eq!(fib.lookup(a).map(id_of), Some(2));
    // A longer prefix wins whatever its metric.
    fib.add(route(&dev, "10.1.2.0/24".parse().unwrap(), 9999, 4))
        .unwrap();
    assert_eq!(fib.lookup(a).map(id_of), Some(4));
    assert_eq!(fib.lookup(Ipv4Addr::new(10, 1, 9, 9)).map(id_of), Some(2));
    // Deleting the best exposes the next.
    assert_eq!(fib.delete(net, None).map(|r| r.metric), Ok(100));
    assert_eq!(fib.lookup(Ipv4Addr::new(10, 1, 9, 9)).map(id_of), Some(3));
    assert_eq!(fib.delete(net, Some(300)).map(|r| id_of(&r)), Ok(1));
    assert_eq!(fib.lookup(Ipv4Addr::new(10, 1, 9, 9)).map(id_of), Some(3));
    assert_eq!(
        fib.delete(net, Some(300)).map(|_| ()),
        Err(RouteError::NotFound(net))
    );
}

#[test]
fn duplicate_prefix_and_metric_is_exists() {
    let (_s, dev, _) = devices();
    let mut fib = Fib::new();
    fib.add(route(&dev, "192.168.7.0/24".parse().unwrap(), 5, 1))
        .unwrap();
    // Host bits are ignored: the same prefix.
    let e = fib.add(route(&dev, "192.168.7.99/24".parse().unwrap(), 5, 2));
    assert_eq!(
        e,
        Err(RouteError::Exists("192.168.7.0/24".parse().unwrap(), 5))
    );
    assert_eq!(fib.len(), 1);
    assert_eq!(
        fib.lookup(Ipv4Addr::new(192, 168, 7, 1)).map(id_of),
        Some(1)
    );
    // replace swaps the route with the same prefix and metric.
    fib.replace(route(&dev, "192.168.7.0/24".parse().unwrap(), 5, 3))
        .unwrap();
    assert_eq!(fib.len(), 1);
    assert_eq!(
        fib.lookup(Ipv4Addr::new(192, 168, 7, 1)).map(id_of),
        Some(3)
    );
}

#[test]
fn default_route_and_host_route() {
    let (_s, dev, _) = devices();
    let mut fib = Fib::new();
    assert!(fib.lookup(Ipv4Addr::new(1, 2, 3, 4)).is_none());
    fib.add(route(&dev, "0.0.0.0/0".parse().unwrap(), 0, 1))
        .unwrap();
    fib.add(route(&dev, "1.2.3.4/32".parse().unwrap(), 0, 2))
        .unwrap();
    assert_eq!(fib.lookup(Ipv4Addr::new(1, 2, 3, 4)).map(id_of), Some(2));
    assert_eq!(fib.lookup(Ipv4Addr::new(1, 2, 3, 5)).map(id_of), Some(1));
    assert_eq!(fib.lookup(Ipv4Addr::BROADCAST).map(id_of), Some(1));
    assert_eq!(fib.lookup(Ipv4Addr::UNSPECIFIED).map(id_of), Some(1));
}

#[test]
fn route_mtu_is_taken_as_the_kernel_takes_it() {
    // The kernel stores any `mtu` metric (`ip route add ... mtu 10` is
    // accepted and shown as `mtu 10`); the path never goes below 68.
    let (_s, dev, _) = devices();
    let mut fib = Fib::new();
    let net: Ipv4Net = "10.0.0.0/8".parse().unwrap();
    for (i, mtu) in [1, IP_MIN_MTU - 1, IP_MIN_MTU, 1500, IP_MAX_MTU]
        .into_iter()
        .enumerate()
    {
        let mut d = Dst::new(dev.clone(), None);
        d.mtu_metric = Some(mtu);
        assert_eq!(
            fib.add(Route::unicast(net, i as u32, Arc::new(d))),
            Ok(()),
            "mtu {mtu}"
        );
    }
    assert_eq!(fib.len(), 5);
    let best = fib.lookup(Ipv4Addr::new(10, 0, 0, 1)).unwrap();
    assert_eq!(best.dst.as_ref().unwrap().mtu_metric, Some(1));
    assert_eq!(best.dst.as_ref().unwrap().mtu(), IP_MIN_MTU);
    let dup = Route::unicast(net, 0, Arc::new(Dst::new(dev.clone(), None)));
    assert_eq!(fib.add(dup), Err(RouteError::Exists(net, 0)));
}

#[test]
fn dst_mtu_prefers_learned_pmtu_then_metric_then_device() {
    let (_s, dev, _) = devices();
    let mut d = Dst::new(dev.clone(), None);
    assert_eq!(d.mtu(), 1500);
    dev.set_mtu(9000).unwrap();
    assert_eq!(d.mtu(), 9000, "follows the device");
    d.mtu_metric = Some(1400);
    assert_eq!(d.mtu(), 1400);
    d.set_pmtu(1280);
    assert_eq!(d.mtu(), 1280);
    d.set_pmtu(0);
    assert_eq!(d.mtu(), 1400);
    assert_eq!(
        d.nexthop(Ipv4Addr::new(1, 1, 1, 1)),
        Ipv4Addr::new(1, 1, 1, 1)
    );
    let g = Dst::new(dev, Some(Ipv4Addr::new(10, 0, 0, 254)));
    assert_eq!(
        g.nexthop(Ipv4Addr::new(1, 1, 1, 1)),
        Ipv4Addr::new(10, 0, 0, 254)
    );
}
