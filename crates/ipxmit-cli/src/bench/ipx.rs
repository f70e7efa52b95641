//! Side B: ipxmit's full path — `UdpSocket::send_batch` (sendmmsg, 64
//! datagrams per call, as the kernel side's `sendmmsg`; datagrams written in
//! pieces go 64 pieces per call, `MSG_MORE` on each piece but a datagram's
//! last) — through cork, IP output,
//! fragmentation, neighbour output and the qdisc layer — into a `null` device
//! (counts and frees every frame) or the in-memory wire, configured like the
//! kernel's sink: Ethernet, MTU 1500, the same offloads and root qdisc, the
//! same addresses and route, for the `-hook` cases the kernel side's one
//! nftables `accept` rule compiled by [`ipxmit::nft`] at `LocalOut`, and
//! for the `-rules` cases the kernel side's ten rules and five tables
//! ([`policy::configure`]), and for the `-snat` cases its nat table.

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use ipxmit::dev::DevConfig;
use ipxmit::neigh::NudState;
#[cfg(test)]
use ipxmit::netfilter::{AcceptAll, HookPoint};
use ipxmit::socket::udp::BATCH_MAX;
use ipxmit::wire::EthernetAddress;
use ipxmit::{BatchMsg, Features, MsgFlags, RouteSpec, SendError, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;
use ipxmit_drivers::null::NullCounters;

use super::cases::{Case, MTU};
use super::kernel::Offloads;
use super::measure::{self, Sample, CHECK_EVERY};
use super::netns::{DEST, DEST_NET, LOCAL, LOCAL_ADDR, SINK};
use super::policy;

/// The device configuration of side B.
#[derive(Clone, Debug)]
pub struct DevSetup {
    /// Scatter-gather.
    pub sg: bool,
    /// Checksum offload.
    pub csum: bool,
    /// UDP GSO.
    pub gso: bool,
    /// Root qdisc, tc syntax.
    pub qdisc: String,
    /// Its classes (the words after `tc class add dev D`).
    pub classes: Vec<String>,
}

impl DevSetup {
    /// Side B's device for `case`: the offloads the kernel reported for its
    /// sink (without a kernel side: scatter-gather, UDP GSO and the case's
    /// checksum offload), and the case's root qdisc, or `sink_qdisc` (the
    /// kernel sink's own) when the case names none.
    pub fn for_case(case: Case, offloads: Option<Offloads>, sink_qdisc: &str) -> DevSetup {
        DevSetup {
            sg: offloads.is_none_or(|o| o.sg),
            csum: offloads.map_or(case.csum_offload, |o| o.csum),
            gso: true,
            qdisc: case.qdisc.unwrap_or(sink_qdisc).to_string(),
            classes: case.classes.iter().map(|c| c.to_string()).collect(),
        }
    }

    /// The device's feature flags.
    pub fn features(&self) -> Features {
        let mut f = Features::NONE;
        if self.sg {
            f = f | Features::SG;
        }
        if self.csum {
            f = f | Features::HW_CSUM;
        }
        if self.gso {
            f = f | Features::GSO_UDP_L4;
        }
        f
    }
}

/// Where the device's frames go.
enum Sink {
    Null(Arc<NullCounters>),
    Mem(Arc<MemWire>),
}

/// A one-device ipxmit host and a socket, set up for one case.
pub struct IpxSender {
    _stack: Arc<Stack>,
    sock: UdpSocket,
    sink: Sink,
    payload: Vec<u8>,
    lens: Vec<usize>,
    case: Case,
}

impl IpxSender {
    /// A host whose device sends into a null device (`mem = false`) or the
    /// in-memory wire, drained after every datagram (`mem = true`), with an
    /// nftables output chain of one `accept` rule when the case asks for a
    /// hook, and the
    /// policy rules and tables when it asks for them.
    pub fn new(case: Case, dev: &DevSetup, mem: bool) -> Result<IpxSender> {
        let stack = Stack::new();
        let mut cfg = DevConfig::ethernet(SINK, EthernetAddress([2, 0, 0, 0, 0, 1]));
        cfg.mtu = MTU as u32;
        cfg.features = dev.features();
        let (drivers, sink) = if mem {
            let w = MemWire::new(1024);
            (w.drivers(1), Sink::Mem(w))
        } else {
            let c = NullCounters::new();
            (c.drivers(1), Sink::Null(c))
        };
        stack.add_device(cfg, drivers)?;
        configure_tc(&stack, dev)?;
        stack.add_addr(SINK, LOCAL.parse()?)?;
        stack.add_route(RouteSpec::new(DEST_NET.parse()?, SINK))?;
        let mac = EthernetAddress([2, 0, 0, 0, 0, 2]);
        stack.add_neigh(SINK, *DEST.ip(), mac, NudState::Permanent)?;
        if case.rules {
            policy::configure(&stack)?;
        }
        if case.hook {
            accept_chain(&stack)?;
        }
        if case.snat {
            snat_chain(&stack)?;
        }
        if case.nft != super::cases::NftCase::None {
            nft_lines(&stack, &case.nft.commands())?;
        }
        let mut sock = UdpSocket::new(&stack);
        sock.bind(SocketAddrV4::new(LOCAL_ADDR, 0))?;
        sock.set_gso_size(u32::from(case.gso))
            .context("UDP_SEGMENT")?;
        Ok(IpxSender {
            _stack: stack,
            sock,
            sink,
            payload: case.payload_bytes(),
            lens: case.piece_lens(),
            case,
        })
    }

    /// Frames the device's sink took so far.
    pub fn frames(&self) -> u64 {
        match &self.sink {
            Sink::Null(c) => c.frames(),
            Sink::Mem(w) => w.frames(),
        }
    }

    /// One datagram (its pieces with `MSG_MORE`); false when refused with
    /// `ENOBUFS`/`EAGAIN`.
    #[inline]
    pub fn send_datagram(&mut self) -> Result<bool, SendError> {
        let last = self.lens.len() - 1;
        let mut at = 0;
        for (i, &n) in self.lens.iter().enumerate() {
            let flags = if i < last {
                MsgFlags::MORE
            } else {
                MsgFlags::NONE
            };
            match self.sock.send_to(&self.payload[at..at + n], DEST, flags) {
                Ok(_) => {}
                Err(SendError::NoBufs | SendError::Again) => return Ok(false),
                Err(e) => return Err(e),
            }
            at += n;
        }
        if let Sink::Mem(w) = &self.sink {
            w.drain(drop);
        }
        Ok(true)
    }

    /// [`CHECK_EVERY`] datagrams: one `send_batch` of them when each is one
    /// piece; datagrams in pieces go in `send_batch` calls of up to 64
    /// messages, every piece but a datagram's last with `MSG_MORE` of its
    /// own. Returns (calls, sent, refused).
    pub fn send_group(&mut self) -> Result<(u64, u64, u64), SendError> {
        if self.lens.len() > 1 {
            return self.send_pieces();
        }
        let msg = BatchMsg::new(&self.payload, Some(DEST));
        let msgs = [msg; CHECK_EVERY as usize];
        let ok = match self.sock.send_batch(&msgs, MsgFlags::NONE) {
            Ok(n) => n as u64,
            Err(SendError::NoBufs | SendError::Again) => 0,
            Err(e) => return Err(e),
        };
        if let Sink::Mem(w) = &self.sink {
            w.drain(drop);
        }
        Ok((1, ok, CHECK_EVERY - ok))
    }

    /// [`IpxSender::send_group`] for datagrams in pieces. A call cut short
    /// leaves no datagram half-corked: the rest of it is flushed.
    fn send_pieces(&mut self) -> Result<(u64, u64, u64), SendError> {
        let pieces = self.lens.len();
        let per_call = (BATCH_MAX / pieces).max(1);
        let mut msgs = [BatchMsg::new(&[], Some(DEST)); BATCH_MAX];
        let mut k = 0;
        for _ in 0..per_call {
            let mut at = 0;
            for (i, &n) in self.lens.iter().enumerate() {
                let flags = if i + 1 < pieces {
                    MsgFlags::MORE
                } else {
                    MsgFlags::NONE
                };
                msgs[k % BATCH_MAX] = BatchMsg {
                    flags,
                    ..BatchMsg::new(&self.payload[at..at + n], Some(DEST))
                };
                (at, k) = (at + n, k + 1);
            }
        }
        if k > BATCH_MAX {
            // More pieces than one call takes: one send_to each.
            let ok = u64::from(self.send_datagram()?);
            return Ok((pieces as u64, ok, 1 - ok));
        }
        let (mut calls, mut ok) = (0, 0);
        for _ in 0..CHECK_EVERY.div_ceil(per_call as u64) {
            calls += 1;
            let n = match self.sock.send_batch(&msgs[..k], MsgFlags::NONE) {
                Ok(n) => n,
                Err(SendError::NoBufs | SendError::Again) => 0,
                Err(e) => return Err(e),
            };
            if n % pieces != 0 {
                self.sock.flush();
            }
            ok += (n / pieces) as u64;
            if let Sink::Mem(w) = &self.sink {
                w.drain(drop);
            }
        }
        let all = CHECK_EVERY.div_ceil(per_call as u64) * per_call as u64;
        Ok((calls, ok, all - ok))
    }

    /// Sends for `dur`; frames counted at the sink.
    pub fn run(&mut self, dur: Duration) -> Result<Sample> {
        let f0 = self.frames();
        let mut s = measure::timed(dur, || self.send_group()).context("ipxmit send")?;
        s.frames = self.frames() - f0;
        s.datagrams = s.sends * self.case.datagrams_per_send();
        s.payload_bytes = s.sends * self.case.payload as u64;
        Ok(s)
    }
}

/// The device's root qdisc and classes, through the same tc lines a
/// script takes (`tc qdisc replace dev D root ...`, `tc class add dev D
/// ...`).
fn configure_tc(stack: &Stack, dev: &DevSetup) -> anyhow::Result<()> {
    let mut lines = vec![format!("qdisc replace dev {SINK} root {}", dev.qdisc)];
    lines.extend(
        dev.classes
            .iter()
            .map(|c| format!("class add dev {SINK} {c}")),
    );
    for line in lines {
        let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        let cmd = crate::script::tc::parse(&words).map_err(|e| anyhow!("tc {line}: {e}"))?;
        crate::script::tc::run(stack, &cmd).map_err(|e| anyhow!("tc {line}: {e}"))?;
    }
    Ok(())
}

/// The kernel side's ruleset, compiled: `table ip bench`, an output
/// chain (priority 0, policy accept) whose one rule is `accept`.
fn accept_chain(stack: &Arc<Stack>) -> anyhow::Result<()> {
    use ipxmit::nft::{BaseChain, ChainHook, ChainType, Family, Nft, Policy, Position};
    use ipxmit::nft::{RuleVerdict, Stmt};
    let base = BaseChain {
        ty: ChainType::Filter,
        hook: ChainHook::Output,
        device: None,
        priority: 0,
        policy: Policy::Accept,
    };
    let rule = vec![Stmt::Verdict(RuleVerdict::Accept)];
    Nft::new().commit(stack, |rs| {
        rs.add_table(Family::Ip, "bench", false)?;
        rs.add_chain(Family::Ip, "bench", "out", Some(base), false)?;
        rs.add_rule(Family::Ip, "bench", "out", rule, Position::Append(None))
    })?;
    Ok(())
}

/// nft commands through the script's nft parser, on one ruleset.
fn nft_lines(stack: &Arc<Stack>, cmds: &[String]) -> anyhow::Result<()> {
    let mut nft = ipxmit::nft::Nft::new();
    for cmd in cmds {
        let words: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
        let c = crate::script::nft::parse(&words).map_err(|e| anyhow!("nft {cmd}: {e}"))?;
        crate::script::nft::run(stack, &mut nft, &c).map_err(|e| anyhow!("nft {cmd}: {e}"))?;
    }
    Ok(())
}

/// The `-snat` cases' table as the kernel side's
/// ([`super::settings::NFT_SNAT_ADD`]), through the script's nft lines.
fn snat_chain(stack: &Arc<Stack>) -> anyhow::Result<()> {
    let cmds = super::settings::NFT_SNAT_ADD.map(String::from);
    nft_lines(stack, &cmds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::cases::{find, PFIFO};
    use ipxmit::netfilter::{Hook, Verdict};
    use ipxmit::{NetDevice, PacketBuf};

    #[test]
    fn a_case_names_its_own_qdisc_else_the_sinks_is_taken() {
        let on = Offloads {
            csum: false,
            sg: true,
            gso: true,
        };
        let d = DevSetup::for_case(find("18B-pfifo").unwrap(), Some(on), "pfifo_fast");
        assert_eq!((d.qdisc.as_str(), d.csum, d.sg), (PFIFO, false, true));
        let d = DevSetup::for_case(find("18B").unwrap(), Some(on), "pfifo_fast");
        assert_eq!(d.qdisc, "pfifo_fast");
        let d = DevSetup::for_case(find("1472B-swcsum").unwrap(), None, "noqueue");
        assert_eq!(
            (d.qdisc.as_str(), d.csum, d.sg, d.gso),
            ("noqueue", false, true, true)
        );
        let d = DevSetup::for_case(find("18B-hook").unwrap(), None, "noqueue");
        assert_eq!((d.qdisc.as_str(), d.csum), ("noqueue", true));
    }

    /// Sends one group of `name` into the null device; returns the host.
    fn one_group(name: &str) -> IpxSender {
        let case = find(name).unwrap();
        let mut s =
            IpxSender::new(case, &DevSetup::for_case(case, None, "noqueue"), false).expect("host");
        assert_eq!(s.send_group().unwrap(), (1, CHECK_EVERY, 0));
        assert_eq!(
            s.frames(),
            CHECK_EVERY,
            "every frame reached the null device"
        );
        s
    }

    /// Counts the packets it sees at `LocalOut`.
    #[derive(Default)]
    struct Seen(std::sync::atomic::AtomicU64);

    impl Hook for Seen {
        fn hook(&self, p: HookPoint, pkt: &mut PacketBuf, out: &NetDevice) -> Verdict {
            assert_eq!(p, HookPoint::LocalOut);
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            AcceptAll.hook(p, pkt, out)
        }
    }

    #[test]
    fn the_hook_case_registers_an_accept_all_local_out_hook() {
        let mut s = one_group("18B-hook");
        let hooks = s._stack.hooks();
        assert!(!hooks.is_empty(HookPoint::LocalOut));
        assert!(hooks.is_empty(HookPoint::PostRouting));
        assert!(one_group("18B")
            ._stack
            .hooks()
            .is_empty(HookPoint::LocalOut));
        // The batch path runs LocalOut hooks once per datagram, after ours.
        let seen = Arc::new(Seen::default());
        hooks.register(HookPoint::LocalOut, seen.clone());
        assert_eq!(s.send_group().unwrap(), (1, CHECK_EVERY, 0));
        assert_eq!(
            seen.0.load(std::sync::atomic::Ordering::Relaxed),
            CHECK_EVERY
        );
        assert_eq!(s.frames(), 2 * CHECK_EVERY);
    }

    /// The route `s`'s socket's flow gets: the table it came from.
    fn flow_table(s: &IpxSender) -> Option<u32> {
        let key = ipxmit::route::FlowKey {
            saddr: LOCAL_ADDR,
            proto: 17,
            sport: s.sock.local_addr().port(),
            dport: DEST.port(),
            ..ipxmit::route::FlowKey::to(*DEST.ip())
        };
        s._stack.route_get(&key).ok()?.table
    }

    #[test]
    fn the_snat_case_translates_its_one_flow() {
        let s = one_group("18B-snat");
        let st = &s._stack;
        let flows = st.conntrack().list(st.now().as_nanos());
        assert_eq!(flows.len(), 1, "one tracked flow");
        let reply = flows[0].tuple[1];
        assert_eq!(reply.dst, u32::from_be_bytes([10, 99, 0, 7]));
        assert!((40000..=40010).contains(&reply.dport), "{}", reply.dport);
    }

    #[test]
    fn the_rules_case_routes_the_datagrams_from_table_105() {
        let mut s = one_group("18B-rules");
        let plain = one_group("18B");
        assert_eq!(plain._stack.rib().rules().len(), 3);
        assert_eq!(flow_table(&plain), Some(ipxmit::route::RT_TABLE_MAIN));
        let stack = s._stack.clone();
        assert_eq!(stack.rib().rules().len(), 13);
        assert_eq!(stack.rib().tables().count(), 7, "local, main, 101..=105");
        assert_eq!(flow_table(&s), Some(policy::FLOW_TABLE));
        // Sending changes no routing state: the socket's cached route holds.
        let gen = stack.fib_generation();
        assert_eq!(s.send_group().unwrap(), (1, CHECK_EVERY, 0));
        assert_eq!(stack.fib_generation(), gen);
        // Without main's route the datagrams still go (table 105's) ...
        stack.del_route(DEST_NET.parse().unwrap(), None).unwrap();
        assert_eq!(s.send_group().unwrap(), (1, CHECK_EVERY, 0));
        // ... and without table 105's too, none does.
        let key = ipxmit::route::DelKey::default();
        let net = DEST_NET.parse().unwrap();
        stack
            .del_route_matching(policy::FLOW_TABLE, net, &key)
            .unwrap();
        assert!(s.send_group().is_err());
        assert_eq!(s.frames(), 3 * CHECK_EVERY);
    }

    #[test]
    fn the_pfifo_cases_send_everything_through_the_qdisc() {
        for name in ["18B-pfifo", "1472B-pfifo"] {
            let s = one_group(name);
            let dev = s._stack.device(SINK).unwrap();
            let q = dev.queues()[0].with_qdisc(|q| (q.kind(), q.stats().packets, q.stats().qlen));
            assert_eq!(q, ("pfifo", CHECK_EVERY, 0), "{name}");
        }
    }
}
