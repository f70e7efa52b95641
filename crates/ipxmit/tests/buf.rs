//! `PacketBuf`, `BufPool` and `SendBudget`: the sk_buff operations
//! (`skb_reserve`/`push`/`pull`/`put`/`pskb_trim`/`skb_copy_bits`/`skb_linearize`),
//! pool recycling and the `sock_wfree` accounting, checked against a plain
//! `Vec<u8>` model of the packet contents.

use bytes::Bytes;
use ipxmit::buf::{kernel_truesize, SendBudget, BUF_OVERHEAD, MAX_FRAGS};
use ipxmit::{BufPool, PacketBuf};
use proptest::prelude::*;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A buffer of 10 linear bytes (headroom 16), fragments of 5 and 7 bytes, and a
/// chain of two buffers, the second with its own fragment and chain.
/// Returns the buffer and its expected contents.
fn layered() -> (PacketBuf, Vec<u8>) {
    let mut want = Vec::new();
    let lin = pattern(10, 1);
    let mut b = PacketBuf::from_slice(16, &lin);
    want.extend_from_slice(&lin);
    for (n, seed) in [(5usize, 2u8), (7, 3)] {
        let f = pattern(n, seed);
        b.add_frag(Bytes::from(f.clone())).unwrap();
        want.extend_from_slice(&f);
    }
    let c1 = pattern(9, 4);
    b.chain_push(PacketBuf::from_slice(8, &c1));
    want.extend_from_slice(&c1);

    let c2_lin = pattern(6, 5);
    let mut c2 = PacketBuf::from_slice(0, &c2_lin);
    want.extend_from_slice(&c2_lin);
    let c2_frag = pattern(4, 6);
    c2.add_frag(Bytes::from(c2_frag.clone())).unwrap();
    want.extend_from_slice(&c2_frag);
    let c2_chain = pattern(3, 7);
    c2.chain_push(PacketBuf::from_slice(4, &c2_chain));
    want.extend_from_slice(&c2_chain);
    b.chain_push(c2);
    (b, want)
}

fn segments(b: &PacketBuf) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    b.for_each_segment(&mut |s| v.push(s.to_vec()));
    v
}

#[test]
fn reserve_put_push_pull_keep_headroom_and_tailroom_consistent() {
    let mut b = PacketBuf::with_capacity(100);
    assert_eq!((b.len(), b.headroom(), b.tailroom()), (0, 0, 100));
    assert!(b.is_empty());
    b.reserve(32);
    assert_eq!((b.len(), b.headroom(), b.tailroom()), (0, 32, 68));
    assert_eq!(b.data_offset(), 32);

    b.put(20).copy_from_slice(&pattern(20, 9));
    assert_eq!((b.len(), b.headroom(), b.tailroom()), (20, 32, 48));
    assert_eq!(b.linear_len(), 20);
    assert_eq!(b.data_len(), 0);

    b.push(8).copy_from_slice(&[0xaa; 8]);
    assert_eq!((b.len(), b.headroom(), b.tailroom()), (28, 24, 48));
    let mut want = vec![0xaa; 8];
    want.extend_from_slice(&pattern(20, 9));
    assert_eq!(b.to_vec(), want);
    assert_eq!(b.linear(), &want[..]);

    b.pull(10);
    assert_eq!((b.len(), b.headroom(), b.tailroom()), (18, 34, 48));
    assert_eq!(b.to_vec(), &want[10..]);

    // Pushing back what was pulled restores the old view (the bytes stay).
    b.push(10);
    assert_eq!(b.to_vec(), want);

    // headroom + len + tailroom = storage size for a linear buffer.
    assert_eq!(b.headroom() + b.len() + b.tailroom(), 100);

    // Once fragments exist there is no tailroom (skb_tailroom of a nonlinear skb).
    b.add_frag(Bytes::from_static(b"xyz")).unwrap();
    assert_eq!(b.tailroom(), 0);
    assert_eq!(b.data_len(), 3);
    assert_eq!(b.len(), 31);
}

/// `push_array` takes the last N bytes of the headroom, as `push(N)` does,
/// down to a headroom of exactly N.
#[test]
fn push_array_takes_the_end_of_the_headroom() {
    let mut b = PacketBuf::with_capacity(64);
    b.reserve(14);
    b.put(4).copy_from_slice(&[1, 2, 3, 4]);
    *b.push_array::<14>() = [0xee; 14];
    assert_eq!((b.len(), b.headroom(), b.data_offset()), (18, 0, 0));
    let mut want = vec![0xee; 14];
    want.extend_from_slice(&[1, 2, 3, 4]);
    assert_eq!(b.to_vec(), want);
}

#[test]
#[should_panic(expected = "skb_push under headroom")]
fn push_array_under_headroom_panics() {
    let mut b = PacketBuf::with_capacity(64);
    b.reserve(13);
    b.push_array::<14>();
}

#[test]
#[should_panic]
fn put_past_tailroom_panics() {
    let mut b = PacketBuf::with_capacity(10);
    b.reserve(4);
    b.put(7);
}

#[test]
#[should_panic]
fn push_past_headroom_panics() {
    let mut b = PacketBuf::from_slice(4, b"abc");
    b.push(5);
}

#[test]
#[should_panic]
fn pull_past_linear_panics() {
    let mut b = PacketBuf::from_slice(4, b"abc");
    b.add_frag(Bytes::from_static(b"defg")).unwrap();
    b.pull(4);
}

#[test]
fn network_header_offsets_are_absolute() {
    let mut b = PacketBuf::from_slice(20, &pattern(30, 3));
    b.reset_network_header();
    assert_eq!(b.meta.network_header, 20);
    b.push(14);
    assert_eq!(b.meta.network_header, 20, "push does not move the header");
    assert_eq!(b.network_header(), &pattern(30, 3)[..]);
    b.pull(14);
    b.pull(4);
    assert_eq!(b.data_offset(), 24);
    assert_eq!(b.linear(), &pattern(30, 3)[4..]);
    assert_eq!(
        b.from_offset(20),
        &pattern(30, 3)[..],
        "absolute offsets see past data"
    );
}

#[test]
fn frags_are_limited_to_max_frags() {
    let mut b = PacketBuf::from_slice(0, b"h");
    for i in 0..MAX_FRAGS {
        b.add_frag(Bytes::from(vec![i as u8])).unwrap();
    }
    let extra = Bytes::from_static(b"over");
    assert_eq!(b.add_frag(extra.clone()), Err(extra));
    assert_eq!(b.len(), 1 + MAX_FRAGS);
    assert_eq!(b.frags().len(), MAX_FRAGS);
}

#[test]
fn extend_last_frag_grows_the_packet() {
    let mut b = PacketBuf::from_slice(0, b"ab");
    let page = Bytes::from_static(b"cdefgh");
    b.add_frag(page.slice(0..2)).unwrap();
    assert_eq!(b.to_vec(), b"abcd");
    assert_eq!(b.extend_last_frag(page.slice(0..5)), 3);
    assert_eq!(b.to_vec(), b"abcdefg");
    assert_eq!(b.len(), 7);
    assert_eq!(b.data_len(), 5);
}

#[test]
fn for_each_segment_visits_linear_frags_then_chain_in_order() {
    let (b, want) = layered();
    let segs = segments(&b);
    let lens: Vec<usize> = segs.iter().map(Vec::len).collect();
    assert_eq!(lens, [10, 5, 7, 9, 6, 4, 3]);
    assert_eq!(segs.concat(), want);
    assert_eq!(b.len(), want.len());
    assert_eq!(b.data_len(), want.len() - 10);
    assert_eq!(b.to_vec(), want);
}

#[test]
fn for_each_segment_skips_empty_parts() {
    let mut b = PacketBuf::with_capacity(8);
    b.add_frag(Bytes::new()).unwrap();
    b.add_frag(Bytes::from_static(b"x")).unwrap();
    b.chain_push(PacketBuf::with_capacity(4));
    assert_eq!(segments(&b), vec![b"x".to_vec()]);
}

#[test]
fn copy_bits_matches_to_vec_at_every_offset_and_length() {
    let (b, want) = layered();
    let n = want.len();
    for off in 0..=n {
        for len in 0..=n - off {
            let mut out = vec![0xee; len];
            assert!(b.copy_bits(off, &mut out), "copy_bits({off}, {len})");
            assert_eq!(out, &want[off..off + len], "copy_bits({off}, {len})");
        }
        let mut out = vec![0; n - off + 1];
        assert!(!b.copy_bits(off, &mut out), "past the end at {off}");
    }
}

#[test]
fn copy_to_returns_len() {
    let (b, want) = layered();
    let mut out = vec![0; want.len() + 5];
    assert_eq!(b.copy_to(&mut out), want.len());
    assert_eq!(&out[..want.len()], &want[..]);
}

#[test]
fn trim_at_every_length_across_linear_frags_and_chain() {
    let (b0, want) = layered();
    for len in 0..=want.len() + 2 {
        let (mut b, _) = layered();
        b.trim(len);
        let keep = len.min(want.len());
        assert_eq!(b.len(), keep, "trim({len})");
        assert_eq!(b.to_vec(), &want[..keep], "trim({len})");
        assert_eq!(segments(&b).concat(), &want[..keep]);
        let frag_sum: usize = b.frags().iter().map(Bytes::len).sum();
        let chain_sum: usize = b.chain().iter().map(|b| b.len()).sum();
        assert_eq!(b.data_len(), frag_sum + chain_sum, "trim({len}) data_len");
        assert_eq!(b.linear_len() + b.data_len(), b.len());
        if len <= 10 {
            assert!(b.frags().is_empty() && b.chain().is_empty());
            assert_eq!(b.linear_len(), len);
        } else {
            assert_eq!(b.linear_len(), 10);
        }
    }
    assert_eq!(b0.to_vec(), want);
}

#[test]
fn trim_to_linear_restores_tailroom() {
    let mut b = PacketBuf::with_capacity(64);
    b.reserve(8);
    b.put(10).copy_from_slice(&pattern(10, 0));
    b.add_frag(Bytes::from_static(b"abc")).unwrap();
    assert_eq!(b.tailroom(), 0);
    b.trim(6);
    assert_eq!(b.tailroom(), 64 - 8 - 6);
    b.put(2).copy_from_slice(b"zz");
    let mut want = pattern(6, 0);
    want.extend_from_slice(b"zz");
    assert_eq!(b.to_vec(), want);
}

#[test]
fn linearize_equals_to_vec_and_leaves_no_data_len() {
    let (mut b, want) = layered();
    let headroom = b.headroom();
    b.linearize();
    assert_eq!(b.data_len(), 0);
    assert!(b.frags().is_empty() && b.chain().is_empty());
    assert_eq!(b.linear_len(), want.len());
    assert_eq!(b.len(), want.len());
    assert_eq!(b.linear(), &want[..]);
    assert_eq!(b.to_vec(), want);
    assert_eq!(b.headroom(), headroom, "linearize keeps the headroom");
    // Linearizing a linear buffer changes nothing.
    b.linearize();
    assert_eq!(b.to_vec(), want);
}

#[test]
fn linearize_in_place_when_the_storage_is_big_enough() {
    let pool = BufPool::new(8);
    let mut b = pool.alloc(400);
    b.reserve(16);
    b.put(4).copy_from_slice(b"head");
    b.add_frag(Bytes::from_static(b"-frag")).unwrap();
    b.chain_push(PacketBuf::from_slice(0, b"-chain"));
    b.linearize();
    assert_eq!(b.linear(), b"head-frag-chain");
    assert_eq!(b.tailroom(), 512 - 16 - 15);
}

#[test]
fn pool_recycles_storage_by_size_class() {
    let pool = BufPool::new(16);
    assert_eq!(pool.free_counts(), [0; 4]);
    assert_eq!(pool.misses(), 0);

    let a = pool.alloc(100);
    let b = pool.alloc(1500);
    let c = pool.alloc(9000);
    let d = pool.alloc(60000);
    assert_eq!(pool.misses(), 4, "an empty pool goes to the heap");
    assert!(a.tailroom() >= 100 && b.tailroom() >= 1500);
    assert!(c.tailroom() >= 9000 && d.tailroom() >= 60000);
    drop((a, b, c, d));
    assert_eq!(pool.free_counts(), [1, 1, 1, 1]);

    // Re-allocating the same classes takes from the free lists.
    let a = pool.alloc(512);
    let b = pool.alloc(2048);
    let c = pool.alloc(16384);
    let d = pool.alloc(66048);
    assert_eq!(pool.misses(), 4, "no miss on re-allocation of a free class");
    assert_eq!(pool.free_counts(), [0; 4]);
    drop((a, b, c, d));
    assert_eq!(pool.free_counts(), [1, 1, 1, 1]);

    // A buffer larger than every class is not kept.
    let big = pool.alloc(70000);
    assert_eq!(pool.misses(), 5);
    drop(big);
    assert_eq!(pool.free_counts(), [1, 1, 1, 1]);
}

#[test]
fn recycled_buffers_start_empty() {
    let pool = BufPool::new(4);
    let mut b = pool.alloc(100);
    b.reserve(10);
    b.put(50).fill(7);
    b.add_frag(Bytes::from_static(b"frag")).unwrap();
    b.chain_push(pool.alloc(10));
    b.meta.mark = 99;
    drop(b);
    assert_eq!(pool.free_counts()[0], 2, "the chained buffer returned too");
    let b = pool.alloc(100);
    assert_eq!(pool.misses(), 2);
    assert_eq!((b.len(), b.headroom(), b.tailroom()), (0, 0, 512));
    assert!(b.frags().is_empty() && b.chain().is_empty());
    assert_eq!(b.meta.mark, 0);
}

#[test]
fn pool_keeps_at_most_per_class_free() {
    let pool = BufPool::new(2);
    let v: Vec<PacketBuf> = (0..5).map(|_| pool.alloc(64)).collect();
    assert_eq!(pool.misses(), 5);
    drop(v);
    assert_eq!(pool.free_counts()[0], 2);
}

#[test]
fn pool_clones_share_free_lists() {
    let pool = BufPool::new(8);
    let other = pool.clone();
    drop(other.alloc(1000));
    assert_eq!(pool.free_counts()[1], 1);
    let _b = pool.alloc(1000);
    assert_eq!(pool.misses(), 1);
    assert_eq!(other.free_counts()[1], 0);
}

#[test]
fn set_owner_charges_truesize_and_drop_releases_it() {
    let budget = SendBudget::new(100_000);
    let mut b = PacketBuf::with_capacity(1000);
    b.reserve(16);
    b.put(100);
    assert_eq!(b.truesize(), 1000 + BUF_OVERHEAD);
    b.set_owner(&budget);
    assert_eq!(budget.allocated(), 1000 + BUF_OVERHEAD);
    assert_eq!(budget.space(), 100_000 - 1000 - BUF_OVERHEAD);
    assert!(std::ptr::eq(b.owner().unwrap(), &*budget));

    b.add_frag(Bytes::from(vec![0; 300])).unwrap();
    assert_eq!(b.truesize(), 1300 + BUF_OVERHEAD);
    b.grow_charge(300);
    assert_eq!(budget.allocated(), 1300 + BUF_OVERHEAD);

    // Trimming or linearizing after the charge does not change what is released.
    b.trim(50);
    b.linearize();
    drop(b);
    assert_eq!(budget.allocated(), 0, "drop releases exactly the charge");
}

#[test]
fn a_budget_lives_while_charged_and_is_freed_with_the_last_charge() {
    let budget = SendBudget::new(10_000);
    let weak = std::sync::Arc::downgrade(&budget);
    let mut a = PacketBuf::with_capacity(200);
    let mut b = PacketBuf::with_capacity(300);
    a.set_owner(&budget);
    b.set_owner(&budget);
    drop(budget);
    assert!(weak.upgrade().is_some(), "the charges keep it");
    assert_eq!(b.owner().unwrap().allocated(), 500 + 2 * BUF_OVERHEAD);
    drop(a);
    assert_eq!(b.owner().unwrap().allocated(), 300 + BUF_OVERHEAD);
    drop(b);
    assert!(weak.upgrade().is_none(), "freed with the last charge");
}

#[test]
fn release_owner_orphans_once() {
    let budget = SendBudget::new(10_000);
    let mut b = PacketBuf::with_capacity(200);
    b.set_owner(&budget);
    assert_eq!(budget.allocated(), 200 + BUF_OVERHEAD);
    b.release_owner();
    assert_eq!(budget.allocated(), 0);
    assert!(b.owner().is_none());
    b.grow_charge(50);
    assert_eq!(budget.allocated(), 0, "no owner: nothing to grow");
    b.release_owner();
    drop(b);
    assert_eq!(budget.allocated(), 0);
}

#[test]
fn set_owner_replaces_the_previous_owner() {
    let a = SendBudget::new(10_000);
    let z = SendBudget::new(10_000);
    let mut b = PacketBuf::with_capacity(300);
    b.set_owner(&a);
    b.grow_charge(7);
    b.set_owner(&z);
    assert_eq!(a.allocated(), 0);
    assert_eq!(z.allocated(), 300 + BUF_OVERHEAD);
    drop(b);
    assert_eq!(z.allocated(), 0);
}

#[test]
fn chained_buffers_release_their_own_charges() {
    let budget = SendBudget::new(1 << 20);
    let pool = BufPool::new(8);
    let mut head = pool.alloc(100);
    head.set_owner(&budget);
    let mut total = head.truesize();
    for _ in 0..3 {
        let mut c = pool.alloc(2000);
        c.set_owner(&budget);
        total += c.truesize();
        head.chain_push(c);
    }
    assert_eq!(budget.allocated(), total);
    let chain = head.take_chain();
    assert_eq!(chain.len(), 3);
    drop(head);
    assert_eq!(budget.allocated(), total - kernel_truesize(100));
    drop(chain);
    assert_eq!(budget.allocated(), 0);
}

#[test]
fn send_budget_space_saturates() {
    let budget = SendBudget::new(1000);
    let mut b = PacketBuf::with_capacity(2000);
    b.set_owner(&budget);
    assert_eq!(budget.space(), 0);
    budget.set_limit(5000);
    assert_eq!(budget.limit(), 5000);
    assert_eq!(budget.space(), 5000 - 2000 - BUF_OVERHEAD);
}

/// One operation on a buffer, applied to the model when it is legal.
#[derive(Clone, Debug)]
enum Op {
    Put(usize, u8),
    Push(usize, u8),
    Pull(usize),
    Trim(usize),
    Frag(usize, u8),
    Chain(usize, usize, u8),
    Linearize,
    TakeChain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..200, any::<u8>()).prop_map(|(n, s)| Op::Put(n, s)),
        (0usize..40, any::<u8>()).prop_map(|(n, s)| Op::Push(n, s)),
        (0usize..60).prop_map(Op::Pull),
        (0usize..600).prop_map(Op::Trim),
        (0usize..100, any::<u8>()).prop_map(|(n, s)| Op::Frag(n, s)),
        (0usize..32, 0usize..150, any::<u8>()).prop_map(|(h, n, s)| Op::Chain(h, n, s)),
        Just(Op::Linearize),
        Just(Op::TakeChain),
    ]
}

proptest! {
    #[test]
    fn random_operations_keep_len_and_content(
        headroom in 0usize..64,
        init in 0usize..100,
        ops in prop::collection::vec(op(), 0..40),
        pooled in any::<bool>(),
    ) {
        let pool = BufPool::new(8);
        let budget = SendBudget::new(1 << 20);
        let first = pattern(init, 0x5a);
        let mut b = if pooled {
            let mut b = pool.alloc(headroom + init + 100);
            b.reserve(headroom);
            b.put(init).copy_from_slice(&first);
            b
        } else {
            PacketBuf::from_slice(headroom, &first)
        };
        b.set_owner(&budget);
        let mut model = first;
        for op in ops {
            match op {
                Op::Put(n, s) => {
                    if n <= b.tailroom() {
                        let d = pattern(n, s);
                        b.put(n).copy_from_slice(&d);
                        model.extend_from_slice(&d);
                    }
                }
                Op::Push(n, s) => {
                    if n <= b.headroom() {
                        let d = pattern(n, s);
                        b.push(n).copy_from_slice(&d);
                        model.splice(0..0, d);
                    }
                }
                Op::Pull(n) => {
                    if n <= b.linear_len() {
                        b.pull(n);
                        model.drain(..n);
                    }
                }
                Op::Trim(n) => {
                    b.trim(n);
                    model.truncate(n);
                }
                Op::Frag(n, s) => {
                    let d = pattern(n, s);
                    if b.chain().is_empty() && b.add_frag(Bytes::from(d.clone())).is_ok() {
                        model.extend_from_slice(&d);
                    }
                }
                Op::Chain(h, n, s) => {
                    let d = pattern(n, s);
                    b.chain_push(PacketBuf::from_slice(h, &d));
                    model.extend_from_slice(&d);
                }
                Op::Linearize => {
                    let hr = b.headroom();
                    b.linearize();
                    prop_assert_eq!(b.data_len(), 0);
                    prop_assert_eq!(b.headroom(), hr);
                }
                Op::TakeChain => {
                    let own = b.linear_len() + b.frags().iter().map(Bytes::len).sum::<usize>();
                    let chain = b.take_chain();
                    let tail: Vec<u8> = chain.iter().flat_map(|b| b.to_vec()).collect();
                    prop_assert_eq!(&tail[..], &model[own..]);
                    model.truncate(own);
                }
            }
            prop_assert_eq!(b.len(), b.to_vec().len());
            prop_assert_eq!(b.len(), model.len());
            prop_assert_eq!(b.linear_len() + b.data_len(), b.len());
            prop_assert_eq!(&b.to_vec(), &model);
            let mut segs = Vec::new();
            b.for_each_segment(&mut |s| segs.extend_from_slice(s));
            prop_assert_eq!(&segs, &model);
            if !model.is_empty() {
                let off = model.len() / 3;
                let mut out = vec![0; model.len() - off];
                prop_assert!(b.copy_bits(off, &mut out));
                prop_assert_eq!(&out[..], &model[off..]);
            }
        }
        drop(b);
        prop_assert_eq!(budget.allocated(), 0);
    }
}

#[test]
fn pooled_buffers_are_charged_the_kernels_truesize() {
    // __alloc_skb: SKB_DATA_ALIGN(size) + 320 rounded up to the small-head
    // slab (576) or the next power of two, plus 256 for the sk_buff.
    assert_eq!(kernel_truesize(100), 576 + 256);
    assert_eq!(kernel_truesize(256), 576 + 256);
    assert_eq!(kernel_truesize(257), 1024 + 256);
    assert_eq!(kernel_truesize(1531), 2048 + 256);
    assert_eq!(kernel_truesize(65535), 131072 + 256);
    let pool = BufPool::new(4);
    assert_eq!(pool.alloc(1531).truesize(), 2048 + 256);
}
