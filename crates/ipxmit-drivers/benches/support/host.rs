//! A one-device host for the whole-path benchmarks and the allocation probe:
//! `eth0` (10.0.0.1/24, MTU 1500) on a null device or an in-memory wire, a
//! static neighbour for 10.0.0.2, and one bound UDP socket; optionally
//! another root qdisc, an accept-all `LocalOut` hook or ten policy rules
//! over five numbered tables ([`Tweak`]).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use ipxmit::dev::DevConfig;
use ipxmit::neigh::NudState;
use ipxmit::netfilter::{AcceptAll, HookPoint};
use ipxmit::sched::QdiscSpec;
use ipxmit::wire::EthernetAddress;
use ipxmit::{BatchMsg, Features, MsgFlags, SendError, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;
use ipxmit_drivers::null::NullCounters;

/// Where the device's frames go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// The null device (`dummy`): counted and freed.
    Null,
    /// The in-memory wire, drained after every send.
    Mem,
}

impl Sink {
    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Sink::Null => "null",
            Sink::Mem => "mem",
        }
    }
}

/// What one send is: a datagram of `len` bytes, in `pieces` with `MSG_MORE`
/// between them (1 = a plain send), with `UDP_SEGMENT` `gso` (0 = off).
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Name for reports.
    pub name: &'static str,
    /// Payload bytes per datagram (per GSO super-datagram).
    pub len: usize,
    /// Pieces written with `MSG_MORE`.
    pub pieces: usize,
    /// GSO segment size, 0 for none.
    pub gso: u32,
    /// Datagrams per call: 1 sends with `send_to`, more with one
    /// `send_batch` (sendmmsg) of that many.
    pub batch: usize,
}

/// The standard workloads of the issue, then the same with `send_batch`
/// (as the kernel side's `sendmmsg`): 64 small datagrams per call, fewer
/// large ones (what the default `SO_SNDBUF` holds while the in-memory wire
/// keeps the frames until the call returns: a blocking send would wait
/// for room forever, as the kernel's would), 8 datagrams of 8 pieces (each
/// piece but the last with `MSG_MORE` of its own).
pub const WORKLOADS: [Workload; 11] = [
    Workload {
        name: "18B",
        len: 18,
        pieces: 1,
        gso: 0,
        batch: 1,
    },
    Workload {
        name: "1472B",
        len: 1472,
        pieces: 1,
        gso: 0,
        batch: 1,
    },
    Workload {
        name: "8000B",
        len: 8000,
        pieces: 1,
        gso: 0,
        batch: 1,
    },
    Workload {
        name: "65000B",
        len: 65000,
        pieces: 1,
        gso: 0,
        batch: 1,
    },
    Workload {
        name: "8x1000B_more",
        len: 8000,
        pieces: 8,
        gso: 0,
        batch: 1,
    },
    Workload {
        name: "gso64k_1472",
        len: 44 * 1472,
        pieces: 1,
        gso: 1472,
        batch: 1,
    },
    Workload {
        name: "18B_batch64",
        len: 18,
        pieces: 1,
        gso: 0,
        batch: 64,
    },
    Workload {
        name: "1472B_batch64",
        len: 1472,
        pieces: 1,
        gso: 0,
        batch: 64,
    },
    Workload {
        name: "8000B_batch8",
        len: 8000,
        pieces: 1,
        gso: 0,
        batch: 8,
    },
    Workload {
        name: "65000B_batch2",
        len: 65000,
        pieces: 1,
        gso: 0,
        batch: 2,
    },
    Workload {
        name: "8x1000B_more_batch8",
        len: 8000,
        pieces: 8,
        gso: 0,
        batch: 8,
    },
];

/// A change to the host's default output path (root `noqueue`, no hooks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tweak {
    /// `tc qdisc replace dev eth0 root SPEC`.
    RootQdisc(&'static str),
    /// An [`AcceptAll`] hook at `LocalOut`.
    AcceptAllHook,
    /// `tc qdisc replace dev eth0 root handle 1: htb default 1`, `tc
    /// class add dev eth0 parent 1: classid 1:1 htb SPEC` and a u32 filter
    /// to 1:1 that every packet matches.
    HtbLeaf(&'static str),
    /// As [`Tweak::HtbLeaf`] with the leaf 1:2 under an inner class 1:1
    /// (`PARENT`), the leaf's own rate spent at once (`LEAF`): every
    /// packet borrows (the leaf in its parent's feed, in the wait queue).
    HtbBorrow(&'static str, &'static str),
    /// Ten `ip rule`s and five numbered tables (101..=105), the flow
    /// routed from table 105 after failing eight rules' selectors and
    /// passing through table 104 (as `ipxmit bench`'s `18B-rules`).
    PolicyRules,
}

impl Tweak {
    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Tweak::RootQdisc(spec) => spec.split_whitespace().next().unwrap_or(spec),
            Tweak::AcceptAllHook => "hook",
            Tweak::HtbLeaf(_) => "htb",
            Tweak::HtbBorrow(..) => "htb-borrow",
            Tweak::PolicyRules => "rules",
        }
    }
}

/// The destination every send goes to.
pub const DEST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 9000);

/// A host: stack, device sink, socket.
pub struct Host {
    /// The stack.
    pub stack: Arc<Stack>,
    /// The socket.
    pub sock: UdpSocket,
    /// Set for [`Sink::Mem`].
    pub wire: Option<Arc<MemWire>>,
    /// Set for [`Sink::Null`].
    pub null: Option<Arc<NullCounters>>,
    payload: Vec<u8>,
    work: Workload,
}

impl Host {
    /// Builds the host for `work` on `sink` with device `features`.
    pub fn new(
        sink: Sink,
        features: Features,
        work: Workload,
    ) -> Result<Host, Box<dyn std::error::Error>> {
        let stack = Stack::new();
        let mut cfg = DevConfig::ethernet("eth0", EthernetAddress([2, 0, 0, 0, 0, 1]));
        cfg.features = features;
        let (drivers, wire, null) = match sink {
            Sink::Null => {
                let c = NullCounters::new();
                (c.drivers(1), None, Some(c))
            }
            Sink::Mem => {
                let w = MemWire::new(1024);
                (w.drivers(1), Some(w), None)
            }
        };
        stack.add_device(cfg, drivers)?;
        stack.add_addr("eth0", "10.0.0.1/24".parse()?)?;
        let mac = EthernetAddress([2, 0, 0, 0, 0, 2]);
        stack.add_neigh("eth0", *DEST.ip(), mac, NudState::Permanent)?;
        let mut sock = UdpSocket::new(&stack);
        sock.bind(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 0))?;
        sock.set_gso_size(work.gso)?;
        let payload = (0..work.len).map(|i| (i * 7) as u8).collect();
        Ok(Host {
            stack,
            sock,
            wire,
            null,
            payload,
            work,
        })
    }

    /// Applies `t` to the host.
    pub fn tweak(&mut self, t: Tweak) -> Result<(), Box<dyn std::error::Error>> {
        match t {
            Tweak::RootQdisc(spec) => {
                let spec: QdiscSpec = spec.parse()?;
                self.stack.replace_qdisc("eth0", &spec)?;
            }
            Tweak::AcceptAllHook => {
                self.stack
                    .hooks()
                    .register(HookPoint::LocalOut, Arc::new(AcceptAll));
            }
            Tweak::HtbLeaf(class) => self.htb_leaf(&[(0, 1, class)])?,
            Tweak::HtbBorrow(parent, leaf) => self.htb_leaf(&[(0, 1, parent), (1, 2, leaf)])?,
            Tweak::PolicyRules => self.policy_rules()?,
        }
        Ok(())
    }

    /// [`Tweak::PolicyRules`]: the tables' routes, the rules, and a check
    /// that the socket's flow now takes table 105.
    fn policy_rules(&self) -> Result<(), Box<dyn std::error::Error>> {
        use ipxmit::route::FlowKey;
        self.policy_tables()?;
        for rule in policy_rule_list()? {
            self.stack.add_rule(rule)?;
        }
        let local = self.sock.local_addr();
        let key = FlowKey {
            saddr: *local.ip(),
            proto: 17,
            sport: local.port(),
            dport: DEST.port(),
            ..FlowKey::to(*DEST.ip())
        };
        match self.stack.route_get(&key)?.table {
            Some(105) => Ok(()),
            t => Err(format!("the flow is routed from table {t:?}, not 105").into()),
        }
    }

    /// Tables 101..=105, two routes each; only 105 has one for [`DEST`].
    fn policy_tables(&self) -> Result<(), Box<dyn std::error::Error>> {
        use ipxmit::route::RtnType;
        use ipxmit::RouteSpec;
        let gw = Some(Ipv4Addr::new(10, 0, 0, 254));
        let routes = [
            (101, "10.7.0.0/24", None, RtnType::Unicast),
            (101, "10.6.0.0/24", None, RtnType::Unreachable),
            (102, "10.8.0.0/24", gw, RtnType::Unicast),
            (102, "10.11.0.0/24", None, RtnType::Blackhole),
            (103, "10.12.0.0/24", None, RtnType::Unicast),
            (103, "10.13.0.0/24", None, RtnType::Prohibit),
            (104, "10.15.0.0/24", None, RtnType::Unicast),
            (104, "10.16.0.0/24", gw, RtnType::Unicast),
            (105, "10.0.0.0/24", None, RtnType::Unicast),
            (105, "10.18.0.0/24", gw, RtnType::Unicast),
        ];
        for (table, net, via, kind) in routes {
            let mut r = RouteSpec::new(net.parse()?, "eth0");
            (r.table, r.via, r.kind) = (table, via, kind);
            if kind.is_error() {
                r.dev = None;
            }
            self.stack.add_route(r)?;
        }
        Ok(())
    }

    /// An htb root with `classes` (parent minor, 0 for the root; minor;
    /// options after `htb`), the last its default class and a leaf.
    fn htb_leaf(&self, classes: &[(u32, u32, &str)]) -> Result<(), Box<dyn std::error::Error>> {
        use ipxmit::sched::{ClassOp, ClassRequest, ClassSpec, QdiscOp};
        let leaf = classes.last().map_or(1, |c| c.1);
        let root: QdiscSpec = format!("htb default {leaf:x}").parse()?;
        self.stack
            .qdisc_modify("eth0", QdiscOp::Replace, Some(1 << 16), &root)?;
        for &(parent, minor, class) in classes {
            let words: Vec<&str> = std::iter::once("htb")
                .chain(class.split_whitespace())
                .collect();
            let req = ClassRequest {
                op: ClassOp::Add,
                parent: (1 << 16) | parent,
                classid: (1 << 16) | minor,
                spec: ClassSpec::parse(&words)?,
            };
            self.stack.class_modify("eth0", &req)?;
        }
        let flowid = format!("1:{leaf:x}");
        // And a u32 filter every packet passes (`match ip dst D/32`).
        use ipxmit::sched::cls::{parse_filter, FilterSpec, ETH_P_IP};
        let dst = format!("{}/32", DEST.ip());
        let w = [
            "match",
            "ip",
            "dst",
            dst.as_str(),
            "flowid",
            flowid.as_str(),
        ];
        let (kind, (matcher, classid, handle)) = parse_filter("u32", None, &w)?;
        let spec = FilterSpec {
            pref: 1,
            protocol: ETH_P_IP,
            kind,
            handle,
            matcher,
            classid,
        };
        self.stack.filter_add("eth0", 1 << 16, &spec)?;
        Ok(())
    }

    /// `batch` datagrams of `pieces` pieces in one `send_batch` (at most 64
    /// messages), `MSG_MORE` on each piece but a datagram's last.
    fn send_pieces_batch(&mut self) -> Result<(), SendError> {
        let w = self.work;
        let step = w.len / w.pieces;
        let mut msgs = [BatchMsg::new(&[], Some(DEST)); 64];
        let n = (w.batch * w.pieces).min(64);
        for (k, m) in msgs[..n].iter_mut().enumerate() {
            let i = k % w.pieces;
            let end = if i + 1 == w.pieces {
                w.len
            } else {
                (i + 1) * step
            };
            m.data = &self.payload[i * step..end];
            if i + 1 < w.pieces {
                m.flags = MsgFlags::MORE;
            }
        }
        let sent = self.sock.send_batch(&msgs[..n], MsgFlags::NONE)?;
        assert_eq!(sent, n, "the whole batch was sent");
        Ok(())
    }

    /// One datagram (in its pieces), then the wire drained.
    #[inline]
    pub fn send_one(&mut self) -> Result<(), SendError> {
        let w = self.work;
        if w.batch > 1 && w.pieces > 1 {
            self.send_pieces_batch()?;
        } else if w.batch > 1 {
            let m = BatchMsg::new(&self.payload, Some(DEST));
            let msgs = [m; 64];
            let n = self
                .sock
                .send_batch(&msgs[..w.batch.min(64)], MsgFlags::NONE)?;
            assert_eq!(n, w.batch.min(64), "the whole batch was sent");
        } else if w.pieces <= 1 {
            self.sock.send_to(&self.payload, DEST, MsgFlags::NONE)?;
        } else {
            let step = w.len / w.pieces;
            for i in 0..w.pieces {
                let (at, end) = (
                    i * step,
                    if i + 1 == w.pieces {
                        w.len
                    } else {
                        (i + 1) * step
                    },
                );
                let f = if i + 1 == w.pieces {
                    MsgFlags::NONE
                } else {
                    MsgFlags::MORE
                };
                self.sock.send_to(&self.payload[at..end], DEST, f)?;
            }
        }
        if let Some(w) = &self.wire {
            w.drain(drop);
        }
        Ok(())
    }

    /// Frames that reached the sink.
    pub fn frames(&self) -> u64 {
        match (&self.wire, &self.null) {
            (Some(w), _) => w.frames(),
            (_, Some(n)) => n.frames(),
            _ => 0,
        }
    }
}

/// The ten rules of [`Tweak::PolicyRules`]: eight whose selectors the flow
/// fails, one it matches whose table (104) has no route for it, and the one
/// that routes it from table 105.
fn policy_rule_list() -> Result<Vec<ipxmit::route::rules::FibRule>, Box<dyn std::error::Error>> {
    use ipxmit::route::rules::FibRule;
    let r = FibRule::lookup;
    let to = |s: &str| s.parse().map(Some);
    Ok(vec![
        FibRule {
            from: to("10.7.0.0/24")?,
            ..r(100, 101)
        },
        FibRule {
            to: to("10.8.0.0/24")?,
            ..r(101, 102)
        },
        FibRule {
            fwmark: (1, u32::MAX),
            ..r(102, 103)
        },
        FibRule {
            tos: 0x10,
            ..r(103, 104)
        },
        FibRule {
            iif: Some(("lo".into(), 1)),
            ipproto: 17,
            dport: Some((53, 53)),
            ..r(104, 101)
        },
        FibRule {
            from: to("10.0.0.0/24")?,
            to: to("10.9.0.0/24")?,
            ..r(105, 102)
        },
        FibRule {
            fwmark: (2, 0xff),
            ..r(106, 103)
        },
        FibRule {
            ipproto: 6,
            ..r(107, 101)
        },
        FibRule {
            to: to("10.0.0.0/16")?,
            ..r(108, 104)
        },
        FibRule {
            to: to("10.0.0.0/24")?,
            ..r(109, 105)
        },
    ])
}
