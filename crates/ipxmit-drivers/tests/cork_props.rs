//! Properties of the cork (`ip_append_data` / `ip_make_skb`) and the
//! fragmentation fast path it feeds, end to end onto the in-memory wire: UDP
//! datagrams sent in pieces (`MSG_MORE`, `UDP_CORK`) over random MTUs, device
//! features and PMTU discovery modes arrive as frames that etherparse parses,
//! that reassemble to the concatenated pieces with a verifying UDP checksum, and
//! whose geometry is the kernel's.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use etherparse::{Ipv4HeaderSlice, SlicedPacket};
use ipxmit::buf::CsumState;
use ipxmit::socket::ErrOrigin;
use ipxmit::stats::Mib;
use ipxmit::wire::EthernetAddress;
use ipxmit::{Errno, Features, MsgFlags, PacketBuf, PmtuDisc, SendError, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;
use proptest::prelude::*;

const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SPORT: u16 = 5000;
const DPORT: u16 = 6000;

fn mac(last: u8) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, 0, last])
}

/// A stack with eth0 (10.0.0.1/24, `mtu`, `features`) on a memory wire large
/// enough for the most fragments a test makes, and a static neighbour.
fn host(mtu: u32, features: Features) -> (Arc<Stack>, Arc<MemWire>) {
    let mut cfg = common::eth0();
    cfg.txqueuelen = 16384;
    let (stack, wire) = common::mem_host(cfg, 1, 16384);
    let dev = stack.device("eth0").unwrap();
    dev.set_mtu(mtu).unwrap();
    dev.set_features(features);
    (stack, wire)
}

fn socket(stack: &Arc<Stack>, mode: PmtuDisc) -> UdpSocket {
    let mut s = UdpSocket::new(stack);
    s.bind(SocketAddrV4::new(SRC, SPORT)).unwrap();
    s.set_mtu_discover(mode);
    s
}

fn to() -> SocketAddrV4 {
    SocketAddrV4::new(DST, DPORT)
}

fn piece(len: usize, k: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(131) ^ (k * 29 + 7)) as u8)
        .collect()
}

/// One frame as the peer sees it.
#[derive(Debug)]
struct Frag {
    id: u16,
    hlen: usize,
    options: Vec<u8>,
    tot_len: usize,
    offset: usize,
    mf: bool,
    df: bool,
    payload: Vec<u8>,
}

/// The frame's bytes, with a checksum left to the device (`CHECKSUM_PARTIAL`
/// on a device with `HW_CSUM`) completed as the hardware would.
fn wire_bytes(p: &PacketBuf) -> Vec<u8> {
    let mut v = p.to_vec();
    if let CsumState::Partial { start, offset } = p.meta.ip_summed {
        let s = start as usize - p.data_offset();
        let c = internet_checksum::checksum(&v[s..]);
        let f = s + offset as usize;
        v[f..f + 2].copy_from_slice(&c);
    }
    v
}

fn parse_frame(frame: &[u8], mtu: usize) -> Frag {
    let p = SlicedPacket::from_ethernet(frame).expect("etherparse parses the frame");
    assert!(p.net.is_some(), "an IP packet");
    assert_eq!(&frame[0..6], &mac(2).0);
    assert_eq!(&frame[6..12], &mac(1).0);
    assert_eq!(&frame[12..14], &[0x08, 0x00]);
    let ip = Ipv4HeaderSlice::from_slice(&frame[14..]).expect("IPv4 header");
    let hlen = ip.ihl() as usize * 4;
    assert_eq!(
        internet_checksum::checksum(&frame[14..14 + hlen]),
        [0, 0],
        "IP header checksum verifies"
    );
    assert_eq!(ip.source_addr(), SRC);
    assert_eq!(ip.destination_addr(), DST);
    assert_eq!(ip.protocol(), etherparse::IpNumber::UDP);
    let tot_len = ip.total_len() as usize;
    assert_eq!(frame.len(), 14 + tot_len, "frame is exactly the datagram");
    assert!(tot_len <= mtu, "IP total length {tot_len} over MTU {mtu}");
    Frag {
        id: ip.identification(),
        hlen,
        options: ip.options().to_vec(),
        tot_len,
        offset: ip.fragments_offset().byte_offset() as usize,
        mf: ip.more_fragments(),
        df: ip.dont_fragment(),
        payload: frame[14 + hlen..].to_vec(),
    }
}

fn drain(wire: &MemWire, mtu: usize) -> Vec<Frag> {
    let mut v = Vec::new();
    wire.drain(|p| v.push(parse_frame(&wire_bytes(&p), mtu)));
    v
}

/// Checks a UDP datagram (header included) and returns its payload.
fn check_udp(d: &[u8]) -> Vec<u8> {
    assert!(d.len() >= 8);
    assert_eq!(u16::from_be_bytes([d[0], d[1]]), SPORT);
    assert_eq!(u16::from_be_bytes([d[2], d[3]]), DPORT);
    assert_eq!(
        u16::from_be_bytes([d[4], d[5]]) as usize,
        d.len(),
        "UDP length"
    );
    assert_ne!(u16::from_be_bytes([d[6], d[7]]), 0, "checksum present");
    let mut c = internet_checksum::Checksum::new();
    c.add_bytes(&SRC.octets());
    c.add_bytes(&DST.octets());
    c.add_bytes(&[0, 17]);
    c.add_bytes(&(d.len() as u16).to_be_bytes());
    c.add_bytes(d);
    assert_eq!(c.checksum(), [0, 0], "UDP checksum verifies");
    d[8..].to_vec()
}

/// The fragments' payload sizes the kernel makes for a datagram of `len` bytes
/// after an `hlen`-byte IP header: pieces of `(mtu - hlen) & !7`, the last
/// whatever is left (at most `mtu - hlen`); one piece when it fits.
fn kernel_geometry(len: usize, mtu: usize, hlen: usize) -> Vec<usize> {
    let space = mtu - hlen;
    let step = space & !7;
    let mut v = Vec::new();
    let mut left = len;
    while left > space {
        v.push(step);
        left -= step;
    }
    v.push(left);
    v
}

/// Reassembles by IP ID (datagrams in the order their first fragment came);
/// checks every fragment rule and the geometry; returns the UDP payloads.
fn reassemble(frags: &[Frag], mtu: usize) -> Vec<Vec<u8>> {
    let mut by_id: BTreeMap<u16, Vec<&Frag>> = BTreeMap::new();
    let mut order = Vec::new();
    for f in frags {
        if !by_id.contains_key(&f.id) {
            order.push(f.id);
        }
        by_id.entry(f.id).or_default().push(f);
    }
    let mut out = Vec::new();
    for id in order {
        let mut parts = by_id.remove(&id).unwrap();
        parts.sort_by_key(|f| f.offset);
        let mut d = Vec::new();
        for (i, f) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            assert_eq!(f.offset, d.len(), "id {id}: no hole or overlap");
            assert_eq!(f.mf, !last, "id {id}: MF on all but the last");
            if !last {
                assert_eq!(f.payload.len() % 8, 0, "id {id}: non-last multiple of 8");
            }
            d.extend_from_slice(&f.payload);
        }
        let hlen = parts[0].hlen;
        assert!(
            parts.iter().all(|f| f.hlen == hlen),
            "id {id}: same header length"
        );
        let sizes: Vec<usize> = parts.iter().map(|f| f.tot_len - hlen).collect();
        assert_eq!(
            sizes,
            kernel_geometry(d.len(), mtu, hlen),
            "id {id}: kernel geometry"
        );
        if parts.len() > 1 {
            assert!(parts.iter().all(|f| !f.df), "fragments go without DF");
        }
        out.push(check_udp(&d));
    }
    out
}

fn features() -> impl Strategy<Value = Features> {
    prop_oneof![
        Just(Features::NONE),
        Just(Features::SG),
        Just(Features::SG | Features::HW_CSUM),
        Just(Features::HW_CSUM),
    ]
}

fn mode() -> impl Strategy<Value = PmtuDisc> {
    prop_oneof![Just(PmtuDisc::Dont), Just(PmtuDisc::Want)]
}

/// A piece size: anything below 3000, with the small sizes (empty, odd,
/// below 8) more likely than uniform.
fn piece_size() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0usize..3000, 1 => 0usize..16]
}

fn pieces() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(piece_size(), 1..8)
        .prop_filter("total at most 65000", |v| v.iter().sum::<usize>() <= 65000)
}

/// Checks one datagram made of `sizes` on the wire; returns nothing, asserts.
fn check_one_datagram(
    stack: &Stack,
    s: &UdpSocket,
    wire: &MemWire,
    sizes: &[usize],
    mtu: u32,
    mode: PmtuDisc,
) -> Result<(), TestCaseError> {
    let want: Vec<u8> = sizes
        .iter()
        .enumerate()
        .flat_map(|(k, &n)| piece(n, k))
        .collect();
    let frags = drain(wire, mtu as usize);
    let got = reassemble(&frags, mtu as usize);
    prop_assert_eq!(got.len(), 1, "one datagram");
    prop_assert!(got[0] == want, "payload is the concatenated pieces");
    let udp_len = 8 + want.len();
    let fits = udp_len + 20 <= mtu as usize;
    prop_assert_eq!(frags.len() == 1, fits);
    if fits {
        prop_assert_eq!(
            frags[0].df,
            mode == PmtuDisc::Want,
            "DF per IP_MTU_DISCOVER"
        );
    }
    prop_assert_eq!(
        s.budget().allocated(),
        0,
        "every buffer returned its charge"
    );
    prop_assert_eq!(s.pending_len(), 0);
    let c = stack.counters();
    prop_assert_eq!(c.dropped_total(), 0);
    prop_assert_eq!(c.get(Mib::UdpOutDatagrams), 1);
    prop_assert_eq!(
        c.get(Mib::IpFragCreates),
        if fits { 0 } else { frags.len() as u64 }
    );
    Ok(())
}

/// Router alert (copied into every fragment).
const RA: [u8; 4] = [0x94, 4, 0, 0];

/// Record route (not copied) with `k` empty slots, pointer at the first.
fn record_route(k: usize) -> Vec<u8> {
    let mut v = vec![0x07, (3 + 4 * k) as u8, 4];
    v.resize(3 + 4 * k, 0);
    v
}

/// `IP_OPTIONS` values, as lists of options: none, a copied one, a copied
/// and a not-copied one in either order, up to the 40-byte maximum.
fn ip_options() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop_oneof![
        Just(vec![]),
        Just(vec![RA.to_vec()]),
        Just(vec![RA.to_vec(), record_route(1)]),
        Just(vec![record_route(2), RA.to_vec()]),
        Just(vec![vec![1], record_route(8)]),
        Just(vec![RA.to_vec(), record_route(8)]),
    ]
}

/// Option bytes padded to a multiple of 4 with End of Options (`ip_options_get`).
fn padded(raw: &[u8]) -> Vec<u8> {
    let mut v = raw.to_vec();
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
    v
}

/// Checks a fragment's options against the socket's: copied options and NOPs
/// unchanged in every fragment; record route present (its pointer and slots
/// are the stack's to fill) in the first and NOPs in the others
/// (`ip_options_fragment`); the padding unchanged.
fn check_options(got: &[u8], opts: &[Vec<u8>], first: bool, what: &str) {
    let want = padded(&opts.concat());
    assert_eq!(got.len(), want.len(), "{what}: header length");
    let mut pos = 0;
    for o in opts {
        let g = &got[pos..pos + o.len()];
        if o[0] == 0x07 {
            if first {
                assert_eq!(
                    &g[..2],
                    &o[..2],
                    "{what}: record route kept in the first fragment"
                );
            } else {
                assert!(
                    g.iter().all(|&b| b == 1),
                    "{what}: record route becomes NOPs: {g:?}"
                );
            }
        } else {
            assert_eq!(g, &o[..], "{what}: option {:#x} kept", o[0]);
        }
        pos += o.len();
    }
    assert_eq!(&got[pos..], &want[pos..], "{what}: padding");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn msg_more_pieces_arrive_with_kernel_geometry(
        mtu in 68u32..=9000,
        sizes in pieces(),
        mode in mode(),
        feats in features(),
    ) {
        let (stack, wire) = host(mtu, feats);
        let mut s = socket(&stack, mode);
        for (k, &n) in sizes.iter().enumerate() {
            let last = k + 1 == sizes.len();
            let flags = if last { MsgFlags::NONE } else { MsgFlags::MORE };
            prop_assert_eq!(s.send_to(&piece(n, k), to(), flags), Ok(n));
            if !last {
                prop_assert!(wire.is_empty(), "nothing leaves while corked");
            }
        }
        check_one_datagram(&stack, &s, &wire, &sizes, mtu, mode)?;
    }

    #[test]
    fn udp_cork_pieces_arrive_with_kernel_geometry(
        mtu in 68u32..=9000,
        sizes in pieces(),
        mode in mode(),
        feats in features(),
        more in any::<bool>(),
    ) {
        let (stack, wire) = host(mtu, feats);
        let mut s = socket(&stack, mode);
        s.set_cork(true).unwrap();
        for (k, &n) in sizes.iter().enumerate() {
            let flags = if more { MsgFlags::MORE } else { MsgFlags::NONE };
            prop_assert_eq!(s.send_to(&piece(n, k), to(), flags), Ok(n));
        }
        prop_assert!(wire.is_empty(), "nothing leaves while corked");
        prop_assert_eq!(s.pending_len(), 8 + sizes.iter().sum::<usize>());
        s.set_cork(false).unwrap();
        check_one_datagram(&stack, &s, &wire, &sizes, mtu, mode)?;
    }

    #[test]
    fn flush_discards_the_pending_datagram(
        mtu in 68u32..=9000,
        sizes in pieces(),
        feats in features(),
        mode in mode(),
    ) {
        let (stack, wire) = host(mtu, feats);
        let mut s = socket(&stack, mode);
        s.set_cork(true).unwrap();
        for (k, &n) in sizes.iter().enumerate() {
            prop_assert_eq!(s.send_to(&piece(n, k), to(), MsgFlags::NONE), Ok(n));
        }
        prop_assert!(s.budget().allocated() > 0, "pending buffers are charged");
        s.flush();
        prop_assert_eq!(s.budget().allocated(), 0, "flush releases every charge");
        prop_assert_eq!(s.pending_len(), 0);
        s.set_cork(false).unwrap();
        prop_assert!(wire.is_empty(), "flushed data is never sent");
        prop_assert_eq!(stack.counters().get(Mib::IpOutRequests), 0);

        // The socket starts afresh: the next datagram is only its own data.
        let last = sizes.len();
        prop_assert_eq!(s.send_to(&piece(100, last), to(), MsgFlags::NONE), Ok(100));
        let got = reassemble(&drain(&wire, mtu as usize), mtu as usize);
        prop_assert_eq!(got, vec![piece(100, last)]);
    }

    #[test]
    fn pmtudisc_do_refuses_a_corked_datagram_over_the_mtu(
        mtu in 68u32..=9000,
        sizes in prop::collection::vec(piece_size(), 1..8),
        feats in features(),
        cork in any::<bool>(),
        opts in ip_options(),
    ) {
        let optlen = padded(&opts.concat()).len();
        let hlen = 20 + optlen;
        let total = 8 + sizes.iter().sum::<usize>();
        prop_assume!(total + hlen > mtu as usize);
        let (stack, wire) = host(mtu, feats);
        let mut s = socket(&stack, PmtuDisc::Do);
        s.set_ip_options(&opts.concat()).unwrap();
        s.set_recverr(true);
        if cork {
            s.set_cork(true).unwrap();
        }
        // The append that takes the datagram past the MTU fails; the ones
        // before it are taken.
        let mut acc = 8;
        let mut failed = false;
        for (k, &n) in sizes.iter().enumerate() {
            let flags = if cork || k + 1 < sizes.len() { MsgFlags::MORE } else { MsgFlags::NONE };
            let r = s.send_to(&piece(n, k), to(), flags);
            acc += n;
            if acc + hlen > mtu as usize {
                let info = mtu - optlen as u32;
                prop_assert_eq!(r.clone(), Err(SendError::MsgSize { mtu: info }));
                prop_assert_eq!(r.unwrap_err().errno(), Errno::EMSGSIZE);
                failed = true;
                break;
            }
            prop_assert_eq!(r, Ok(n));
        }
        prop_assert!(failed);
        prop_assert!(wire.is_empty(), "nothing sent");
        prop_assert_eq!(s.pending_len(), 0, "the pending datagram was flushed");
        prop_assert_eq!(s.budget().allocated(), 0);
        let ee = s.recv_err().expect("IP_RECVERR entry");
        prop_assert_eq!(ee.errno, Errno::EMSGSIZE);
        prop_assert_eq!(ee.origin, ErrOrigin::Local);
        prop_assert_eq!(ee.info, mtu - optlen as u32, "ee_info is the MTU less the options");
        prop_assert_eq!(ee.addr, DST);
        prop_assert!(s.recv_err().is_none(), "one entry");
        prop_assert_eq!(stack.counters().get(Mib::IpOutRequests), 0);
        if cork {
            s.set_cork(false).unwrap();
            prop_assert!(wire.is_empty());
        }
        // The socket goes on: the next datagram holds only its own data.
        prop_assert_eq!(s.send_to(&[], to(), MsgFlags::NONE), Ok(0));
        let frags = drain(&wire, mtu as usize);
        prop_assert_eq!(frags.len(), 1);
        prop_assert!(frags[0].df);
        prop_assert_eq!(reassemble(&frags, mtu as usize), vec![Vec::<u8>::new()]);
    }
}

#[test]
fn pmtudisc_do_sends_a_datagram_that_fits_with_df() {
    for feats in [
        Features::NONE,
        Features::SG,
        Features::SG | Features::HW_CSUM,
    ] {
        let (stack, wire) = host(1000, feats);
        let mut s = socket(&stack, PmtuDisc::Do);
        s.set_cork(true).unwrap();
        for k in 0..4 {
            s.send_to(&piece(240, k), to(), MsgFlags::NONE).unwrap();
        }
        s.send_to(&piece(12, 4), to(), MsgFlags::NONE).unwrap();
        s.set_cork(false).unwrap();
        let frags = drain(&wire, 1000);
        assert_eq!(frags.len(), 1);
        assert_eq!(frags[0].tot_len, 1000);
        assert!(frags[0].df && !frags[0].mf);
        assert_eq!(frags[0].id, 0, "DF and not fragmentable: IP ID 0");
        let want: Vec<u8> = (0..5)
            .flat_map(|k| piece(if k < 4 { 240 } else { 12 }, k))
            .collect();
        assert_eq!(reassemble(&frags, 1000), vec![want]);
        assert_eq!(stack.counters().dropped_total(), 0);
    }
}

#[test]
fn fraggap_moves_when_a_piece_fills_the_mtu_exactly() {
    // MTU 1501: data space 1481, fragment step 1480. The first piece fills
    // the buffer to the MTU (1481 bytes of UDP), the next one pushes the
    // odd byte into a new buffer (fraggap = 1).
    for feats in [Features::NONE, Features::SG] {
        let (stack, wire) = host(1501, feats);
        let mut s = socket(&stack, PmtuDisc::Want);
        s.send_to(&piece(1473, 0), to(), MsgFlags::MORE).unwrap();
        s.send_to(&piece(1, 1), to(), MsgFlags::NONE).unwrap();
        let frags = drain(&wire, 1501);
        let lens: Vec<usize> = frags.iter().map(|f| f.tot_len).collect();
        assert_eq!(lens, [1500, 22], "{feats}");
        let want: Vec<u8> = piece(1473, 0).into_iter().chain(piece(1, 1)).collect();
        assert_eq!(reassemble(&frags, 1501), vec![want]);
    }
}

/// What `ip_copy_metadata` gives every fragment: the datagram's priority,
/// mark, protocol and flow hash (so every fragment also takes the same
/// transmit queue).
fn check_fragment_metadata(frames: &[PacketBuf], what: &str) {
    assert!(frames.len() > 1, "{what}: the datagram was fragmented");
    let first = &frames[0].meta;
    assert_ne!(first.hash, 0, "{what}: the UDP flow hash is set");
    for (i, f) in frames.iter().enumerate() {
        let m = &f.meta;
        assert_eq!(m.priority, 6, "{what}: fragment {i} keeps SO_PRIORITY");
        assert_eq!(m.mark, 0x1234, "{what}: fragment {i} keeps SO_MARK");
        assert_eq!(m.protocol, 0x0800, "{what}: fragment {i} skb->protocol");
        assert_eq!(
            m.hash, first.hash,
            "{what}: fragment {i} keeps the flow hash"
        );
        assert_eq!(
            m.queue_mapping, first.queue_mapping,
            "{what}: fragment {i} goes out on the datagram's queue"
        );
    }
}

#[test]
fn every_fragment_keeps_the_datagrams_metadata() {
    for feats in [
        Features::NONE,
        Features::SG,
        Features::SG | Features::HW_CSUM,
    ] {
        for corked in [false, true] {
            let (stack, wire) = common::mem_host(common::eth0(), 4, 1024);
            stack.device("eth0").unwrap().set_features(feats);
            let mut s = socket(&stack, PmtuDisc::Want);
            s.set_priority(6);
            s.set_mark(0x1234);
            let what = format!("{feats} corked={corked}");
            if corked {
                // Built by the cork: the fast path over its chain.
                s.send_to(&piece(2000, 0), to(), MsgFlags::MORE).unwrap();
                s.send_to(&piece(2000, 1), to(), MsgFlags::NONE).unwrap();
            } else {
                // One send: also built by the cork in pieces of the MTU.
                s.send_to(&piece(4000, 0), to(), MsgFlags::NONE).unwrap();
            }
            let mut frames = Vec::new();
            wire.drain(|p| frames.push(p));
            assert_eq!(frames.len(), 3, "{what}");
            check_fragment_metadata(&frames, &what);
            let parsed: Vec<Frag> = frames
                .iter()
                .map(|p| parse_frame(&wire_bytes(p), 1500))
                .collect();
            assert_eq!(reassemble(&parsed, 1500).len(), 1);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn ip_options_go_in_the_first_fragment_and_copied_ones_in_all(
        mtu in 68u32..=9000,
        sizes in pieces(),
        mode in mode(),
        feats in features(),
        opts in ip_options(),
    ) {
        let (stack, wire) = host(mtu, feats);
        let mut s = socket(&stack, mode);
        // The property is where options go. At MTU 68 with 40 option bytes a
        // buffer carries 8 data bytes, so a few KB take hundreds of buffers:
        // more than twice the default SO_SNDBUF, which the kernel refuses
        // with ENOBUFS too. Room enough for any generated datagram:
        s.budget().set_limit(1 << 30);
        s.set_ip_options(&opts.concat()).unwrap();
        for (k, &n) in sizes.iter().enumerate() {
            let flags = if k + 1 == sizes.len() { MsgFlags::NONE } else { MsgFlags::MORE };
            prop_assert_eq!(s.send_to(&piece(n, k), to(), flags), Ok(n));
        }
        let frags = drain(&wire, mtu as usize);
        let want: Vec<u8> = sizes.iter().enumerate().flat_map(|(k, &n)| piece(n, k)).collect();
        let got = reassemble(&frags, mtu as usize);
        prop_assert!(got == vec![want], "payload is the concatenated pieces");
        for f in &frags {
            check_options(&f.options, &opts, f.offset == 0, &format!("offset {}", f.offset));
        }
        prop_assert_eq!(stack.counters().dropped_total(), 0);
    }
}

#[test]
fn record_route_option_records_the_source_address() {
    // ip_options_compile (at IP_OPTIONS time) moves the pointer past the first
    // slot and ip_options_build (in __ip_make_skb) writes the outgoing address
    // there: the datagram leaves with RR = [7, 11, 8, 10.0.0.1, 0.0.0.0].
    let (stack, wire) = host(1500, Features::NONE);
    let mut s = socket(&stack, PmtuDisc::Want);
    s.set_ip_options(&record_route(2)).unwrap();
    s.send_to(b"hello", to(), MsgFlags::NONE).unwrap();
    let frags = drain(&wire, 1500);
    assert_eq!(frags.len(), 1);
    assert_eq!(
        frags[0].options,
        [7, 11, 8, 10, 0, 0, 1, 0, 0, 0, 0, 0],
        "record route as the kernel sends it"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Several datagrams in a row, some left on the wire while the next ones
    /// are built: page fragments still referenced by frames in flight are
    /// never overwritten (`sk_page_frag_refill` only reuses a page nobody else
    /// holds), and each datagram arrives intact.
    #[test]
    fn back_to_back_datagrams_do_not_share_page_bytes(
        mtu in 576u32..=9000,
        datagrams in prop::collection::vec(
            (prop::collection::vec(0usize..9000, 1..8), any::<bool>()),
            2..9,
        ),
        feats in prop_oneof![Just(Features::SG), Just(Features::SG | Features::HW_CSUM)],
        mode in mode(),
    ) {
        let (stack, wire) = host(mtu, feats);
        let mut s = socket(&stack, mode);
        let mut frags = Vec::new();
        let mut want = Vec::new();
        for (d, (sizes, drain_now)) in datagrams.iter().enumerate() {
            let mut w = Vec::new();
            for (k, &n) in sizes.iter().enumerate() {
                let data = piece(n, 10 * d + k);
                w.extend_from_slice(&data);
                let flags = if k + 1 == sizes.len() { MsgFlags::NONE } else { MsgFlags::MORE };
                prop_assert_eq!(s.send_to(&data, to(), flags), Ok(n));
            }
            want.push(w);
            if *drain_now {
                frags.extend(drain(&wire, mtu as usize));
            }
        }
        frags.extend(drain(&wire, mtu as usize));
        let got = reassemble(&frags, mtu as usize);
        prop_assert_eq!(got.len(), want.len());
        for (d, (g, w)) in got.iter().zip(&want).enumerate() {
            prop_assert!(g == w, "datagram {} intact", d);
        }
        prop_assert_eq!(s.budget().allocated(), 0);
        prop_assert_eq!(stack.counters().dropped_total(), 0);
    }
}

#[test]
fn emsgsize_error_queue_entry_names_the_connected_port() {
    // __ip_append_data: ip_local_error(sk, EMSGSIZE, fl4->daddr,
    // inet->inet_dport, mtu - optlen): the port is the socket's connected
    // peer port, 0 on an unconnected socket, whatever sendto named.
    let (stack, wire) = host(1500, Features::NONE);
    let mut s = socket(&stack, PmtuDisc::Do);
    s.set_recverr(true);
    let e = s.send_to(&piece(1473, 0), to(), MsgFlags::NONE);
    assert_eq!(e, Err(SendError::MsgSize { mtu: 1500 }));
    let ee = s.recv_err().expect("IP_RECVERR entry");
    assert_eq!((ee.errno, ee.info, ee.addr), (Errno::EMSGSIZE, 1500, DST));
    assert_eq!(ee.port, 0, "unconnected: inet_dport is 0");
    drop(s); // frees the port for the next socket (no SO_REUSEADDR)

    let mut c = socket(&stack, PmtuDisc::Do);
    c.set_recverr(true);
    c.connect(to()).unwrap();
    assert!(c.send(&piece(1473, 0), MsgFlags::NONE).is_err());
    let ee = c.recv_err().expect("IP_RECVERR entry");
    assert_eq!(
        (ee.addr, ee.port),
        (DST, DPORT),
        "connected: the peer's port"
    );
    assert!(wire.is_empty());
}

/// Sends one datagram of `n` bytes with `mode` on a path whose learned MTU
/// (1280) is below the device's (1500); returns the frames or the error.
fn send_on_reduced_path(mode: PmtuDisc, n: usize) -> Result<Vec<Frag>, SendError> {
    let (stack, wire) = host(1500, Features::SG);
    stack.route_output(DST).unwrap().set_pmtu(1280);
    let mut s = socket(&stack, mode);
    s.send_to(&piece(n, 0), to(), MsgFlags::NONE)?;
    let frags = drain(&wire, 1500);
    let mtu = frags.iter().map(|f| f.tot_len).max().unwrap();
    assert_eq!(reassemble(&frags, mtu.max(1280)), vec![piece(n, 0)]);
    Ok(frags)
}

#[test]
fn every_pmtu_mode_uses_the_kernels_mtu_and_df() {
    use PmtuDisc::*;
    let lens = |f: &[Frag]| f.iter().map(|f| f.tot_len).collect::<Vec<_>>();
    let dfs = |f: &[Frag]| f.iter().map(|f| f.df).collect::<Vec<_>>();
    // Modes below PROBE follow the path MTU (ip_sk_use_pmtu).
    for mode in [Dont, Want] {
        let f = send_on_reduced_path(mode, 1400).unwrap();
        assert_eq!(lens(&f), [1276, 172], "{mode:?}: fragments of the path MTU");
        assert_eq!(dfs(&f), [false, false], "{mode:?}");
        let f = send_on_reduced_path(mode, 1200).unwrap();
        assert_eq!(dfs(&f), [mode == Want], "{mode:?}: DF only for WANT");
    }
    assert_eq!(
        send_on_reduced_path(Do, 1400).unwrap_err(),
        SendError::MsgSize { mtu: 1280 }
    );
    let f = send_on_reduced_path(Do, 1252).unwrap();
    assert_eq!((lens(&f), dfs(&f)), (vec![1280], vec![true]));
    // PROBE and above use the device MTU; PROBE always sets DF.
    let f = send_on_reduced_path(Probe, 1400).unwrap();
    assert_eq!((lens(&f), dfs(&f)), (vec![1428], vec![true]));
    assert_eq!(
        send_on_reduced_path(Probe, 1473).unwrap_err(),
        SendError::MsgSize { mtu: 1500 }
    );
    for mode in [Interface, Omit] {
        let f = send_on_reduced_path(mode, 1400).unwrap();
        assert_eq!((lens(&f), dfs(&f)), (vec![1428], vec![false]), "{mode:?}");
    }
    // INTERFACE does not fragment locally (ip_sk_ignore_df is false); OMIT,
    // its weaker version, does, at the device MTU.
    assert_eq!(
        send_on_reduced_path(Interface, 2000).unwrap_err(),
        SendError::MsgSize { mtu: 1500 }
    );
    let f = send_on_reduced_path(Omit, 2000).unwrap();
    assert_eq!(lens(&f), [1500, 548], "OMIT: fragments of the device MTU");
    assert_eq!(dfs(&f), [false, false]);
}
