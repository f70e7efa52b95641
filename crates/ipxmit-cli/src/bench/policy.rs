//! The policy routing of the `-rules` cases: ten `ip rule`s and five
//! numbered tables (101..=105) of three routes each, given once here and
//! rendered both as the ip(8) words the kernel side runs in its namespace
//! (`ip rule add ...`, `ip route add ... table N`) and as the library calls
//! ipxmit's host makes ([`Stack::add_rule`], [`Stack::add_route`]).
//!
//! The benchmark's flow (UDP from 10.99.0.1 to 10.99.1.2 port 9, TOS 0, no
//! mark) takes every rule: after `0 lookup local` it fails the selectors of
//! rules 100..=107 (source, destination, fwmark, TOS, `iif lo ipproto udp
//! dport 53`, protocol), matches rule 108 whose table 104 has no route for it
//! (the lookup goes on), and is routed by rule 109 from table 105. Table main
//! keeps its own route for 10.99.1.0/24, which rule 109 (before `32766
//! lookup main`) shadows.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use ipxmit::route::rules::{FibRule, LOOPBACK_IFINDEX};
use ipxmit::route::RtnType;
use ipxmit::{RouteSpec, Stack};

use super::netns::SINK;

/// The table whose route the benchmark's datagrams take.
pub const FLOW_TABLE: u32 = 105;

/// `IPPROTO_UDP`.
const UDP: u8 = 17;
/// `IPPROTO_TCP`.
const TCP: u8 = 6;

/// An IPv4 prefix as a constant: address and length.
pub type Prefix = (Ipv4Addr, u8);

/// The selectors of one rule; `None`/0 is "any".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selectors {
    /// `from PREFIX`.
    pub from: Option<Prefix>,
    /// `to PREFIX`.
    pub to: Option<Prefix>,
    /// `tos T`.
    pub tos: u8,
    /// `fwmark M/MASK`.
    pub fwmark: Option<(u32, u32)>,
    /// `iif lo`.
    pub iif_lo: bool,
    /// `ipproto P`.
    pub ipproto: u8,
    /// `dport N`.
    pub dport: Option<u16>,
}

const ANY: Selectors = Selectors {
    from: None,
    to: None,
    tos: 0,
    fwmark: None,
    iif_lo: false,
    ipproto: 0,
    dport: None,
};

/// One `ip rule add priority P SELECTORS lookup TABLE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyRule {
    /// `priority P`.
    pub priority: u32,
    /// The selectors.
    pub sel: Selectors,
    /// `lookup TABLE`.
    pub table: u32,
}

const fn rule(priority: u32, sel: Selectors, table: u32) -> PolicyRule {
    PolicyRule {
        priority,
        sel,
        table,
    }
}

const fn net(a: u8, b: u8, c: u8, len: u8) -> Prefix {
    (Ipv4Addr::new(10, a, b, c), len)
}

/// The ten rules, in priority order: nine the benchmark's flow fails (the
/// ninth matches it but its table has no route for it), then the one that
/// routes it from [`FLOW_TABLE`].
pub const RULES: [PolicyRule; 10] = [
    rule(
        100,
        Selectors {
            from: Some(net(99, 7, 0, 24)),
            ..ANY
        },
        101,
    ),
    rule(
        101,
        Selectors {
            to: Some(net(99, 8, 0, 24)),
            ..ANY
        },
        102,
    ),
    rule(
        102,
        Selectors {
            fwmark: Some((1, u32::MAX)),
            ..ANY
        },
        103,
    ),
    rule(103, Selectors { tos: 0x10, ..ANY }, 104),
    rule(
        104,
        Selectors {
            iif_lo: true,
            ipproto: UDP,
            dport: Some(53),
            ..ANY
        },
        101,
    ),
    rule(
        105,
        Selectors {
            from: Some(net(99, 0, 0, 24)),
            to: Some(net(99, 9, 0, 24)),
            ..ANY
        },
        102,
    ),
    rule(
        106,
        Selectors {
            fwmark: Some((2, 0xff)),
            ..ANY
        },
        103,
    ),
    rule(
        107,
        Selectors {
            ipproto: TCP,
            ..ANY
        },
        101,
    ),
    rule(
        108,
        Selectors {
            to: Some(net(99, 0, 0, 16)),
            ..ANY
        },
        104,
    ),
    rule(
        109,
        Selectors {
            from: Some(net(99, 0, 0, 24)),
            to: Some(net(99, 1, 0, 24)),
            ..ANY
        },
        FLOW_TABLE,
    ),
];

/// Where a route goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    /// `dev sink0`, on link.
    Link,
    /// `via GW dev sink0`.
    Via(Ipv4Addr),
    /// A route type without a next hop (`unreachable`, `blackhole`,
    /// `prohibit`).
    Kind(RtnType),
}

/// One `ip route add [TYPE] PREFIX [via GW] [dev sink0] table N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyRoute {
    /// `table N`.
    pub table: u32,
    /// The prefix.
    pub prefix: Prefix,
    /// Where it goes.
    pub hop: Hop,
}

const fn route(table: u32, prefix: Prefix, hop: Hop) -> PolicyRoute {
    PolicyRoute { table, prefix, hop }
}

const GW: Hop = Hop::Via(Ipv4Addr::new(10, 99, 0, 254));

/// The five tables' routes; none of tables 101..=104 has one for the
/// benchmark's destination, table 105 has [`super::netns::DEST_NET`].
pub const ROUTES: [PolicyRoute; 15] = [
    route(101, net(99, 7, 0, 24), Hop::Link),
    route(101, net(99, 8, 0, 24), GW),
    route(101, net(99, 6, 0, 24), Hop::Kind(RtnType::Unreachable)),
    route(102, net(99, 9, 0, 24), Hop::Link),
    route(102, net(99, 10, 0, 24), GW),
    route(102, net(99, 11, 0, 24), Hop::Kind(RtnType::Blackhole)),
    route(103, net(99, 12, 0, 24), Hop::Link),
    route(103, net(99, 13, 0, 24), Hop::Kind(RtnType::Prohibit)),
    route(103, net(99, 14, 0, 24), GW),
    route(104, net(99, 15, 0, 24), Hop::Link),
    route(104, net(99, 16, 0, 24), GW),
    route(104, net(99, 17, 0, 24), Hop::Kind(RtnType::Unreachable)),
    route(FLOW_TABLE, net(99, 1, 0, 24), Hop::Link),
    route(FLOW_TABLE, net(99, 18, 0, 24), Hop::Link),
    route(FLOW_TABLE, net(99, 19, 0, 24), GW),
];

fn ipnet(p: Prefix) -> Ipv4Net {
    // The constants above are valid prefixes (lengths up to 32).
    Ipv4Net::new(p.0, p.1).unwrap_or_default()
}

fn words(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl PolicyRule {
    /// The words after `ip`: `rule add priority P ... lookup T`.
    pub fn ip_args(&self) -> Vec<String> {
        let s = &self.sel;
        let mut v = words(&["rule", "add", "priority"]);
        v.push(self.priority.to_string());
        for (k, p) in [("from", s.from), ("to", s.to)] {
            if let Some(p) = p {
                v.extend([k.to_string(), ipnet(p).to_string()]);
            }
        }
        if s.tos != 0 {
            v.extend(["tos".into(), format!("0x{:02x}", s.tos)]);
        }
        if let Some((m, mask)) = s.fwmark {
            v.extend(["fwmark".into(), format!("0x{m:x}/0x{mask:x}")]);
        }
        if s.iif_lo {
            v.extend(words(&["iif", "lo"]));
        }
        if s.ipproto != 0 {
            let name = if s.ipproto == UDP { "udp" } else { "tcp" };
            v.extend(words(&["ipproto", name]));
        }
        if let Some(p) = s.dport {
            v.extend(["dport".into(), p.to_string()]);
        }
        v.extend(["lookup".into(), self.table.to_string()]);
        v
    }

    /// The words after `ip` that delete it: `rule del priority P`.
    pub fn ip_del_args(&self) -> Vec<String> {
        let mut v = words(&["rule", "del", "priority"]);
        v.push(self.priority.to_string());
        v
    }

    /// The rule as the library takes it.
    pub fn fib_rule(&self) -> FibRule {
        let s = &self.sel;
        FibRule {
            from: s.from.map(ipnet),
            to: s.to.map(ipnet),
            tos: s.tos,
            fwmark: s.fwmark.unwrap_or((0, 0)),
            iif: s.iif_lo.then(|| ("lo".to_string(), LOOPBACK_IFINDEX)),
            ipproto: s.ipproto,
            dport: s.dport.map(|p| (p, p)),
            ..FibRule::lookup(self.priority, self.table)
        }
    }
}

impl PolicyRoute {
    /// The words after `ip`: `route add [TYPE] PREFIX [via GW] [dev
    /// sink0] table N`.
    pub fn ip_args(&self) -> Vec<String> {
        let mut v = words(&["route", "add"]);
        if let Hop::Kind(k) = self.hop {
            v.push(k.name().to_string());
        }
        v.push(ipnet(self.prefix).to_string());
        if let Hop::Via(gw) = self.hop {
            v.extend(["via".into(), gw.to_string()]);
        }
        if !matches!(self.hop, Hop::Kind(_)) {
            v.extend(words(&["dev", SINK]));
        }
        v.extend(["table".into(), self.table.to_string()]);
        v
    }

    /// The route as the library takes it.
    pub fn spec(&self) -> RouteSpec {
        let mut r = RouteSpec::new(ipnet(self.prefix), SINK);
        r.table = self.table;
        match self.hop {
            Hop::Link => {}
            Hop::Via(gw) => r.via = Some(gw),
            Hop::Kind(k) => (r.kind, r.dev) = (k, None),
        }
        r
    }
}

/// The words after `ip` that empty the tables: `route flush table N`, one
/// per table.
pub fn flush_args() -> Vec<Vec<String>> {
    let mut tables: Vec<u32> = ROUTES.iter().map(|r| r.table).collect();
    tables.dedup();
    tables
        .into_iter()
        .map(|t| {
            let mut v = words(&["route", "flush", "table"]);
            v.push(t.to_string());
            v
        })
        .collect()
}

/// Installs the tables, then the rules, on ipxmit's host (its device
/// [`SINK`] up with its address, so that the gateways resolve).
pub fn configure(stack: &Stack) -> Result<()> {
    for r in &ROUTES {
        stack
            .add_route(r.spec())
            .with_context(|| format!("ip {}", r.ip_args().join(" ")))?;
    }
    for r in &RULES {
        stack
            .add_rule(r.fib_rule())
            .with_context(|| format!("ip {}", r.ip_args().join(" ")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::netns::{DEST, DEST_NET, LOCAL, LOCAL_ADDR};
    use crate::script::iproute;
    use crate::script::parse::Command;
    use ipxmit::dev::DevConfig;
    use ipxmit::route::rules::RuleAction;
    use ipxmit::route::{FlowKey, RT_TABLE_LOCAL, RT_TABLE_MAIN};
    use ipxmit::wire::EthernetAddress;

    /// A host with the sink and its address and main route, as the
    /// benchmark's.
    fn host() -> std::sync::Arc<Stack> {
        let stack = Stack::new();
        let cfg = DevConfig::ethernet(SINK, EthernetAddress([2, 0, 0, 0, 0, 1]));
        let c = ipxmit_drivers::null::NullCounters::new();
        stack.add_device(cfg, c.drivers(1)).unwrap();
        stack.add_addr(SINK, LOCAL.parse().unwrap()).unwrap();
        stack
            .add_route(RouteSpec::new(DEST_NET.parse().unwrap(), SINK))
            .unwrap();
        stack
    }

    /// Runs one `ip` line (the words after `ip`) as a script would.
    fn ip(stack: &Stack, args: &[String]) -> Option<String> {
        let w: Vec<&str> = args.iter().map(String::as_str).collect();
        match crate::script::ip::parse_object(&w, Default::default()) {
            Ok(Command::IpRoute(c)) => iproute::run(stack, &c).expect("ip line runs"),
            other => panic!("ip {}: {other:?}", args.join(" ")),
        }
    }

    fn show(stack: &Stack) -> (String, String) {
        let rules = ip(stack, &words(&["rule", "show"])).unwrap();
        let routes = ip(stack, &words(&["route", "show", "table", "all"])).unwrap();
        (rules, routes)
    }

    /// The flow of the benchmark's socket (its port autobound: any).
    fn flow(sport: u16) -> FlowKey {
        FlowKey {
            saddr: LOCAL_ADDR,
            proto: UDP,
            sport,
            dport: DEST.port(),
            ..FlowKey::to(*DEST.ip())
        }
    }

    #[test]
    fn ten_rules_and_five_tables_of_three_routes() {
        assert_eq!(RULES.len(), 10);
        assert!(RULES.windows(2).all(|w| w[0].priority < w[1].priority));
        let mut tables: Vec<u32> = ROUTES.iter().map(|r| r.table).collect();
        tables.dedup();
        assert_eq!(tables, [101, 102, 103, 104, FLOW_TABLE]);
        for t in &tables {
            assert_eq!(ROUTES.iter().filter(|r| r.table == *t).count(), 3);
            assert!(RULES.iter().any(|r| r.table == *t), "table {t} is used");
        }
        assert_eq!(flush_args().len(), 5);
        assert_eq!(flush_args()[4].join(" "), "route flush table 105");
    }

    #[test]
    fn the_ip_lines_are_what_the_kernel_side_runs() {
        let line = |a: Vec<String>| a.join(" ");
        assert_eq!(
            line(RULES[0].ip_args()),
            "rule add priority 100 from 10.99.7.0/24 lookup 101"
        );
        assert_eq!(
            line(RULES[4].ip_args()),
            "rule add priority 104 iif lo ipproto udp dport 53 lookup 101"
        );
        assert_eq!(
            line(RULES[6].ip_args()),
            "rule add priority 106 fwmark 0x2/0xff lookup 103"
        );
        assert_eq!(
            line(RULES[3].ip_args()),
            "rule add priority 103 tos 0x10 lookup 104"
        );
        assert_eq!(
            line(RULES[9].ip_args()),
            "rule add priority 109 from 10.99.0.0/24 to 10.99.1.0/24 lookup 105"
        );
        assert_eq!(line(RULES[9].ip_del_args()), "rule del priority 109");
        assert_eq!(
            line(ROUTES[1].ip_args()),
            "route add 10.99.8.0/24 via 10.99.0.254 dev sink0 table 101"
        );
        assert_eq!(
            line(ROUTES[2].ip_args()),
            "route add unreachable 10.99.6.0/24 table 101"
        );
        assert_eq!(
            line(ROUTES[12].ip_args()),
            "route add 10.99.1.0/24 dev sink0 table 105"
        );
    }

    #[test]
    fn the_library_calls_configure_what_the_ip_lines_do() {
        let (api, text) = (host(), host());
        configure(&api).unwrap();
        for r in &ROUTES {
            ip(&text, &r.ip_args());
        }
        for r in &RULES {
            ip(&text, &r.ip_args());
        }
        assert_eq!(api.rib().rules(), text.rib().rules());
        assert_eq!(show(&api), show(&text));
        let (rules, routes) = show(&api);
        assert_eq!(rules.lines().count(), 13, "{rules}");
        assert!(routes.contains("10.99.1.0/24 dev sink0 table 105 scope link"));
    }

    #[test]
    fn the_flow_passes_every_rule_and_takes_table_105() {
        let stack = host();
        let key = flow(40000);
        assert_eq!(stack.rib().lookup(&key).unwrap().table, RT_TABLE_MAIN);
        configure(&stack).unwrap();
        let rib = stack.rib();
        assert_eq!(rib.lookup(&key).unwrap().table, FLOW_TABLE);
        let matched: Vec<u32> = rib
            .rules()
            .iter()
            .filter(|r| r.matches(&key))
            .map(|r| r.priority)
            .collect();
        // local, then 108 (table 104 has no route: on) and 109; main and
        // default come after.
        assert_eq!(matched, [0, 108, 109, 32766, 32767]);
        assert_eq!(rib.rules()[0].action, RuleAction::Table(RT_TABLE_LOCAL));
        assert!(rib.table(104).unwrap().lookup(*DEST.ip()).is_none());
        // The rules it fails, it fails on a selector a flow could have.
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let near = [
            (
                100,
                FlowKey {
                    saddr: ip("10.99.7.1"),
                    ..key
                },
            ),
            (
                101,
                FlowKey {
                    daddr: ip("10.99.8.1"),
                    ..key
                },
            ),
            (102, FlowKey { mark: 1, ..key }),
            (103, FlowKey { tos: 0x10, ..key }),
            (104, FlowKey { dport: 53, ..key }),
            (
                105,
                FlowKey {
                    daddr: ip("10.99.9.1"),
                    ..key
                },
            ),
            (106, FlowKey { mark: 0x102, ..key }),
            (107, FlowKey { proto: TCP, ..key }),
        ];
        for (prio, k) in near {
            let r = rib.rules().iter().find(|r| r.priority == prio).unwrap();
            assert!(!r.matches(&key) && r.matches(&k), "rule {prio}");
        }
    }
}
