//! Properties of `ipv4::fragment::Fragmenter` (`ip_do_fragment`) over hand-built
//! IPv4 datagrams with well-formed options, checked with independent tools:
//! etherparse parses every fragment, internet-checksum verifies every header
//! checksum, and the geometry is the kernel's (`ip_frag_next`: pieces of
//! `(mtu - hlen) & !7`, the last one whatever is left, up to `mtu - hlen`).

use etherparse::Ipv4HeaderSlice;
use ipxmit::buf::BufPool;
use ipxmit::ipv4::fragment::Fragmenter;
use ipxmit::PacketBuf;
use proptest::prelude::*;

const LL_RS: usize = 16;
const IP_DF: u16 = 0x4000;
const IP_MF: u16 = 0x2000;

/// Deterministic pseudo-random payload (xorshift), so a case is described by
/// its length and seed and shrinks cheaply.
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Router alert (copied), 4 bytes.
fn router_alert() -> Vec<u8> {
    vec![0x94, 4, 0, 0]
}

/// Loose source route (copied) with one address.
fn lsrr() -> Vec<u8> {
    vec![0x83, 7, 4, 192, 0, 2, 9]
}

/// Record route (not copied) with `k` empty slots.
fn record_route(k: usize) -> Vec<u8> {
    let mut v = vec![0x07, (3 + 4 * k) as u8, 4];
    v.resize(3 + 4 * k, 0);
    v
}

/// Timestamp (not copied), timestamps only, `k` empty slots.
fn timestamp(k: usize) -> Vec<u8> {
    let mut v = vec![0x44, (4 + 4 * k) as u8, 5, 0];
    v.resize(4 + 4 * k, 0);
    v
}

/// A list of options: at least one copied and one not copied, plus extras
/// (NOPs and more options), shuffled, at most 40 bytes once padded.
fn options() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let copied = prop_oneof![Just(router_alert()), Just(lsrr())];
    let not_copied = prop_oneof![
        (1usize..=3).prop_map(record_route),
        (1usize..=3).prop_map(timestamp)
    ];
    let extra = prop::collection::vec(
        prop_oneof![
            Just(vec![1u8]),
            Just(router_alert()),
            Just(record_route(1)),
            Just(timestamp(1)),
        ],
        0..4,
    );
    (copied, not_copied, extra)
        .prop_map(|(c, n, mut e)| {
            let mut v = vec![c, n];
            v.append(&mut e);
            while v.iter().map(Vec::len).sum::<usize>().div_ceil(4) * 4 > 40 {
                v.pop();
            }
            v
        })
        .prop_shuffle()
}

/// Option bytes padded to a multiple of 4 with End of Options.
fn option_bytes(opts: &[Vec<u8>]) -> Vec<u8> {
    let mut v = opts.concat();
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

/// What `ip_options_fragment` leaves for the fragments after the first: options
/// whose copied flag is clear become NOPs; the length does not change.
fn fragmented_option_bytes(opts: &[Vec<u8>]) -> Vec<u8> {
    let nopped: Vec<Vec<u8>> = opts
        .iter()
        .map(|o| {
            if o[0] & 0x80 != 0 || o[0] == 1 {
                o.clone()
            } else {
                vec![1; o.len()]
            }
        })
        .collect();
    option_bytes(&nopped)
}

/// An IPv4 header (with checksum) + `opts` + `data`.
fn datagram(opts: &[u8], data: &[u8], id: u16, frag_off: u16) -> Vec<u8> {
    let hlen = 20 + opts.len();
    let mut h = vec![0u8; hlen];
    h[0] = 0x40 | (hlen / 4) as u8;
    h[1] = 0x28;
    h[2..4].copy_from_slice(&((hlen + data.len()) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6..8].copy_from_slice(&frag_off.to_be_bytes());
    h[8] = 33;
    h[9] = 17;
    h[12..16].copy_from_slice(&[10, 1, 2, 3]);
    h[16..20].copy_from_slice(&[10, 9, 8, 7]);
    h[20..].copy_from_slice(opts);
    let c = internet_checksum::checksum(&h);
    h[10..12].copy_from_slice(&c);
    h.extend_from_slice(data);
    h
}

/// The kernel's slow-path fragment payload sizes (`ip_frag_next`).
fn kernel_geometry(mut left: usize, mtu: usize, hlen: usize) -> Vec<usize> {
    let space = mtu - hlen;
    let mut v = Vec::new();
    while left > 0 {
        let mut len = left.min(space);
        if len < left {
            len &= !7;
        }
        v.push(len);
        left -= len;
    }
    v
}

/// One fragment as parsed by etherparse.
struct Piece {
    bytes: Vec<u8>,
    hlen: usize,
    offset: usize,
    mf: bool,
    df: bool,
    id: u16,
}

/// The head's metadata a test sets, which `ip_copy_metadata` gives every
/// fragment (priority, mark, protocol, flow hash).
fn set_meta(p: &mut PacketBuf) {
    p.meta.priority = 5;
    p.meta.mark = 0x77;
    p.meta.protocol = 0x0800;
    p.meta.hash = 0xdead_beef;
}

fn check_meta(frags: &[PacketBuf]) {
    for (i, f) in frags.iter().enumerate() {
        let m = &f.meta;
        assert_eq!(
            (m.priority, m.mark, m.protocol, m.hash),
            (5, 0x77, 0x0800, 0xdead_beef),
            "fragment {i}: priority, mark, protocol, hash copied from the datagram"
        );
    }
}

/// Parses and checks what holds for every fragment of `input`.
fn parse_piece(f: &PacketBuf, input: &[u8], mtu: usize) -> Piece {
    let bytes = f.to_vec();
    assert!(
        bytes.len() <= mtu,
        "fragment {} over mtu {mtu}",
        bytes.len()
    );
    let ip = Ipv4HeaderSlice::from_slice(&bytes).expect("etherparse parses the fragment");
    let hlen = ip.ihl() as usize * 4;
    let in_ip = Ipv4HeaderSlice::from_slice(input).unwrap();
    assert_eq!(hlen, in_ip.ihl() as usize * 4, "same header length");
    assert_eq!(
        ip.total_len() as usize,
        bytes.len(),
        "tot_len is the fragment length"
    );
    assert_eq!(
        internet_checksum::checksum(&bytes[..hlen]),
        [0, 0],
        "header checksum verifies"
    );
    assert_eq!(ip.identification(), in_ip.identification());
    assert_eq!(ip.ttl(), in_ip.ttl());
    assert_eq!(ip.protocol(), in_ip.protocol());
    assert_eq!(ip.source(), in_ip.source());
    assert_eq!(ip.destination(), in_ip.destination());
    assert_eq!(bytes[1], input[1], "TOS");
    assert!(f.headroom() >= LL_RS, "link-layer headroom reserved");
    assert_eq!(f.meta.network_header as usize, f.data_offset());
    assert_eq!(f.meta.transport_header as usize, f.data_offset() + hlen);
    Piece {
        hlen,
        offset: ip.fragments_offset().byte_offset() as usize,
        mf: ip.more_fragments(),
        df: ip.dont_fragment(),
        id: ip.identification(),
        bytes,
    }
}

/// Checks contiguity, MF, the 8-byte rule and reassembly; returns the pieces.
fn check_sequence(pieces: &[Piece], data: &[u8], start_offset: usize, last_mf: bool) -> Vec<usize> {
    let mut next = start_offset;
    let mut reassembled = Vec::new();
    let mut lens = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let n = p.bytes.len() - p.hlen;
        assert_eq!(p.offset, next, "fragment {i}: offsets contiguous");
        assert_eq!(p.mf, !last || last_mf, "fragment {i}: MF");
        if !last {
            assert_eq!(n % 8, 0, "fragment {i}: payload a multiple of 8");
        }
        assert_eq!(p.id, pieces[0].id);
        reassembled.extend_from_slice(&p.bytes[p.hlen..]);
        next += n;
        lens.push(n);
    }
    assert_eq!(reassembled, data, "reassembly equals the input payload");
    lens
}

fn fragment_all(pkt: PacketBuf, mtu: u32, pool: &BufPool) -> (Vec<PacketBuf>, bool) {
    let mut fr = Fragmenter::new(pkt, mtu, LL_RS, pool).expect("fragmenter");
    let fast = fr.is_fast_path();
    let frags: Vec<PacketBuf> = fr.by_ref().collect();
    assert_eq!(fr.created(), frags.len());
    (frags, fast)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn slow_path_fragments_fit_verify_and_reassemble(
        opts in options(),
        len in 0usize..20000,
        seed in any::<u64>(),
        mtu in 68u32..=9000,
        id in any::<u16>(),
    ) {
        let ob = option_bytes(&opts);
        let data = payload(len, seed);
        let input = datagram(&ob, &data, id, 0);
        let hlen = 20 + ob.len();
        let mut pkt = PacketBuf::from_slice(16, &input);
        pkt.reset_network_header();
        pkt.meta.transport_header = (16 + hlen) as u16;
        pkt.meta.ip_optlen = ob.len() as u8;
        set_meta(&mut pkt);
        let pool = BufPool::default();
        let (frags, fast) = fragment_all(pkt, mtu, &pool);
        prop_assert!(!fast, "a linear datagram takes the slow path");
        check_meta(&frags);

        let pieces: Vec<Piece> = frags.iter().map(|f| parse_piece(f, &input, mtu as usize)).collect();
        let lens = check_sequence(&pieces, &data, 0, false);
        prop_assert_eq!(lens, kernel_geometry(len, mtu as usize, hlen), "kernel geometry");
        let later = fragmented_option_bytes(&opts);
        for (i, p) in pieces.iter().enumerate() {
            prop_assert!(!p.df);
            let o = &p.bytes[20..p.hlen];
            if i == 0 {
                prop_assert_eq!(o, &ob[..], "first fragment keeps every option");
            } else {
                prop_assert_eq!(o, &later[..], "fragment {}: not-copied options become NOPs", i);
            }
        }
    }

    #[test]
    fn user_built_options_are_not_rewritten(
        opts in options(),
        len in 1usize..6000,
        seed in any::<u64>(),
        mtu in 68u32..=1500,
    ) {
        // ip_optlen 0: the header came from the user (IP_HDRINCL), and the kernel
        // only rewrites options it built itself (IPCB(skb)->opt.optlen).
        let ob = option_bytes(&opts);
        let data = payload(len, seed);
        let input = datagram(&ob, &data, 7, 0);
        let pkt = PacketBuf::from_slice(16, &input);
        let (frags, _) = fragment_all(pkt, mtu, &BufPool::new(64));
        let pieces: Vec<Piece> = frags.iter().map(|f| parse_piece(f, &input, mtu as usize)).collect();
        check_sequence(&pieces, &data, 0, false);
        for p in &pieces {
            prop_assert_eq!(&p.bytes[20..p.hlen], &ob[..]);
        }
    }

    #[test]
    fn fragment_of_a_fragment_keeps_mf_and_continues_offsets(
        opts in options(),
        len in 1usize..12000,
        seed in any::<u64>(),
        mtu in 68u32..=9000,
        mf in any::<bool>(),
    ) {
        let ob = option_bytes(&opts);
        let data = payload(len, seed);
        let fo = (800 / 8) | if mf { IP_MF } else { 0 };
        let input = datagram(&ob, &data, 0x4242, fo);
        let hlen = 20 + ob.len();
        let mut pkt = PacketBuf::from_slice(16, &input);
        pkt.meta.ip_optlen = ob.len() as u8;
        let (frags, fast) = fragment_all(pkt, mtu, &BufPool::default());
        prop_assert!(!fast);
        let pieces: Vec<Piece> = frags.iter().map(|f| parse_piece(f, &input, mtu as usize)).collect();
        let lens = check_sequence(&pieces, &data, 800, mf);
        prop_assert_eq!(lens, kernel_geometry(len, mtu as usize, hlen));
        for p in &pieces {
            // Not the first fragment of the datagram: its options were fixed
            // when it was made, and ip_frag_ipcb does not touch them again.
            prop_assert_eq!(&p.bytes[20..p.hlen], &ob[..]);
            prop_assert!(!p.df);
        }
    }

    #[test]
    fn fast_path_over_a_prepared_chain(
        opts in options(),
        mtu in 68u32..=9000,
        nchunks in 1usize..12,
        last_len in 1usize..9000,
        first_units in 1usize..1200,
        seed in any::<u64>(),
    ) {
        let ob = option_bytes(&opts);
        let hlen = 20 + ob.len();
        let step = (mtu as usize - hlen) & !7;
        let first = (first_units * 8).min(step);
        let last = last_len.min(mtu as usize - hlen);
        let mids = (nchunks - 1).min((65535 - hlen - first - last) / step);
        let mut sizes = vec![first];
        sizes.extend(std::iter::repeat_n(step, mids));
        sizes.push(last);
        let total: usize = sizes.iter().sum();
        prop_assert!(total + hlen <= 65535);
        let data = payload(total, seed);

        // The head holds the header and the first piece; each chained buffer
        // holds a later piece with headroom for a header and the link header,
        // as __ip_make_skb leaves them. DF set: the fast path clears it.
        let input = datagram(&ob, &data, 0x1234, IP_DF);
        let mut head = PacketBuf::from_slice(LL_RS, &input[..hlen + first]);
        head.reset_network_header();
        head.meta.transport_header = (LL_RS + hlen) as u16;
        head.meta.ip_optlen = ob.len() as u8;
        let mut at = first;
        for &n in &sizes[1..] {
            head.chain_push(PacketBuf::from_slice(LL_RS + hlen, &data[at..at + n]));
            at += n;
        }
        let (frags, fast) = fragment_all(head, mtu, &BufPool::default());
        prop_assert!(fast, "a chain with fitting geometry takes the fast path");
        prop_assert_eq!(frags.len(), sizes.len());
        let pieces: Vec<Piece> = frags.iter().map(|f| parse_piece(f, &input, mtu as usize)).collect();
        let lens = check_sequence(&pieces, &data, 0, false);
        prop_assert_eq!(lens, sizes, "the chain's own geometry");
        let later = fragmented_option_bytes(&opts);
        for (i, p) in pieces.iter().enumerate() {
            prop_assert!(!p.df, "ip_fraglist_init/prepare clear DF");
            let o = &p.bytes[20..p.hlen];
            if i == 0 {
                prop_assert_eq!(o, &ob[..]);
            } else {
                prop_assert_eq!(o, &later[..], "fragment {}", i);
            }
        }
    }

    #[test]
    fn bad_chain_geometry_falls_back_to_the_slow_path(
        mtu in 100u32..=3000,
        odd in 1usize..8,
        seed in any::<u64>(),
        which in 0usize..3,
    ) {
        let hlen = 24;
        let ob = router_alert();
        let step = (mtu as usize - hlen) & !7;
        // A middle chunk that is not a multiple of 8, one over the data space,
        // or one without headroom for the header.
        let (mid, headroom) = match which {
            0 => (step - odd, LL_RS + hlen),
            1 => (step + 8, LL_RS + hlen),
            _ => (step, hlen),
        };
        let sizes = [step, mid, 100];
        let total: usize = sizes.iter().sum();
        let data = payload(total, seed);
        let input = datagram(&ob, &data, 99, 0);
        let mut head = PacketBuf::from_slice(LL_RS, &input[..hlen + step]);
        head.meta.ip_optlen = 4;
        head.chain_push(PacketBuf::from_slice(headroom, &data[step..step + mid]));
        head.chain_push(PacketBuf::from_slice(LL_RS + hlen, &data[step + mid..]));
        let (frags, fast) = fragment_all(head, mtu, &BufPool::default());
        prop_assert!(!fast);
        let pieces: Vec<Piece> = frags.iter().map(|f| parse_piece(f, &input, mtu as usize)).collect();
        let lens = check_sequence(&pieces, &data, 0, false);
        prop_assert_eq!(lens, kernel_geometry(total, mtu as usize, hlen));
    }
}

#[test]
fn every_fragment_of_a_large_datagram_at_the_minimum_mtu() {
    // 60-byte header at MTU 68: 8 data bytes per fragment, the smallest legal.
    let opts = vec![router_alert(), record_route(8)];
    let ob = option_bytes(&opts);
    assert_eq!(ob.len(), 40);
    let data = payload(20000, 3);
    let input = datagram(&ob, &data, 1, 0);
    let mut pkt = PacketBuf::from_slice(16, &input);
    pkt.meta.ip_optlen = 40;
    let (frags, _) = fragment_all(pkt, 68, &BufPool::default());
    assert_eq!(frags.len(), 2500);
    let pieces: Vec<Piece> = frags.iter().map(|f| parse_piece(f, &input, 68)).collect();
    check_sequence(&pieces, &data, 0, false);
    assert!(pieces.iter().all(|p| p.bytes.len() == 68));
    let later = fragmented_option_bytes(&opts);
    assert_eq!(&pieces[0].bytes[20..60], &ob[..]);
    assert_eq!(&pieces[1].bytes[20..24], &[0x94, 4, 0, 0]);
    assert!(pieces[1..].iter().all(|p| p.bytes[20..60] == later[..]));
}

#[test]
fn malformed_or_too_small_is_refused() {
    let pool = BufPool::default();
    let not_ip = PacketBuf::from_slice(16, &[0x60; 40]);
    assert!(Fragmenter::new(not_ip, 1500, LL_RS, &pool).is_err());
    let short = PacketBuf::from_slice(16, &[0x45; 10]);
    assert!(Fragmenter::new(short, 1500, LL_RS, &pool).is_err());
    // IHL says 60 bytes but only 40 are there.
    let mut h = datagram(&[1; 20], &[], 0, 0);
    h[0] = 0x4f;
    assert!(Fragmenter::new(PacketBuf::from_slice(16, &h), 1500, LL_RS, &pool).is_err());
    // A 60-byte header leaves no 8 bytes at MTU 67.
    let input = datagram(&[1; 40], &[0; 100], 0, 0);
    assert!(Fragmenter::new(PacketBuf::from_slice(16, &input), 67, LL_RS, &pool).is_err());
}

#[test]
fn fast_path_fragments_copy_the_datagrams_metadata() {
    // ip_fraglist_prepare -> ip_copy_metadata(frag, skb): every fragment made
    // from the chain gets the head's priority, mark, protocol and hash (and
    // dst), so it is queued in the same band and on the same TX queue.
    let ob = router_alert();
    let hlen = 24;
    let data = payload(3000, 11);
    let input = datagram(&ob, &data, 5, 0);
    let mut head = PacketBuf::from_slice(LL_RS, &input[..hlen + 1472]);
    head.reset_network_header();
    head.meta.transport_header = (LL_RS + hlen) as u16;
    head.meta.ip_optlen = 4;
    set_meta(&mut head);
    head.chain_push(PacketBuf::from_slice(LL_RS + hlen, &data[1472..2944]));
    head.chain_push(PacketBuf::from_slice(LL_RS + hlen, &data[2944..]));
    let (frags, fast) = fragment_all(head, 1500, &BufPool::default());
    assert!(fast);
    assert_eq!(frags.len(), 3);
    let pieces: Vec<Piece> = frags.iter().map(|f| parse_piece(f, &input, 1500)).collect();
    check_sequence(&pieces, &data, 0, false);
    check_meta(&frags);
}

#[test]
fn slow_path_df_comes_from_frag_pmtu_not_from_the_header() {
    // ip_do_fragment: ip_frag_init(skb, ..., IPCB(skb)->flags & IPSKB_FRAG_PMTU,
    // &state), and ip_frag_next writes frag_off = offset | (state->DF ? IP_DF : 0)
    // | MF: the original DF bit is not carried over; only IPSKB_FRAG_PMTU sets DF
    // on the fragments.
    let data = payload(3000, 5);
    for header_df in [false, true] {
        for frag_pmtu in [false, true] {
            let input = datagram(&[], &data, 77, if header_df { IP_DF } else { 0 });
            let mut pkt = PacketBuf::from_slice(16, &input);
            pkt.meta.ip_flags.ignore_df = true;
            pkt.meta.ip_flags.frag_pmtu = frag_pmtu;
            let (frags, fast) = fragment_all(pkt, 1500, &BufPool::default());
            assert!(!fast);
            let pieces: Vec<Piece> = frags.iter().map(|f| parse_piece(f, &input, 1500)).collect();
            check_sequence(&pieces, &data, 0, false);
            for (i, p) in pieces.iter().enumerate() {
                assert_eq!(
                    p.df, frag_pmtu,
                    "header DF {header_df}, IPSKB_FRAG_PMTU {frag_pmtu}: fragment {i} DF"
                );
            }
        }
    }
}
