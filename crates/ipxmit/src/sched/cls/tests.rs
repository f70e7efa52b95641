//! The classifiers against what tc and the kernel were seen to do
//! (iproute2 6.1, Linux 6.18, u32 on an ifb in a namespace).

use super::*;

fn spec(pref: u32, words: &str) -> FilterSpec {
    let w: Vec<&str> = words.split_whitespace().collect();
    let (kind, (matcher, classid, handle)) = parse_filter(w[0], None, &w[1..]).unwrap();
    FilterSpec {
        pref,
        protocol: ETH_P_IP,
        kind,
        handle,
        matcher,
        classid,
    }
}

/// A UDP/IPv4 frame (Ethernet header first) from `src:sport` to
/// `dst:dport`, with a mark.
fn frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, mark: u32) -> PacketBuf {
    let mut b = vec![0u8; 14 + 28];
    b[14] = 0x45;
    b[15] = 0x10;
    b[14 + 9] = 17;
    b[14 + 12..14 + 16].copy_from_slice(&src);
    b[14 + 16..14 + 20].copy_from_slice(&dst);
    b[34..36].copy_from_slice(&sport.to_be_bytes());
    b[36..38].copy_from_slice(&dport.to_be_bytes());
    let mut p = PacketBuf::from_slice(0, &b);
    p.meta.network_header = 14;
    p.meta.protocol = ETH_P_IP;
    p.meta.mark = mark;
    p
}

const SHOWN: &str = "filter parent 1: protocol ip pref 1 u32 chain 0 
filter parent 1: protocol ip pref 1 u32 chain 0 fh 800: ht divisor 1 
filter parent 1: protocol ip pref 1 u32 chain 0 fh 800::800 order 2048 key ht 800 bkt 0 *flowid 1:10 not_in_hw 
  match 0a000002/ffffffff at 16
filter parent 1: protocol ip pref 1 u32 chain 0 fh 800::801 order 2049 key ht 800 bkt 0 *flowid 1:20 not_in_hw 
  match 0a010000/ffff0000 at 12
  match 00100000/00ff0000 at 0
filter parent 1: protocol ip pref 2 u32 chain 0 
filter parent 1: protocol ip pref 2 u32 chain 0 fh 801: ht divisor 1 
filter parent 1: protocol ip pref 2 u32 chain 0 fh 801::800 order 2048 key ht 801 bkt 0 *flowid 1:20 not_in_hw 
  match 00110000/00ff0000 at 8
  match 00002328/0000ffff at 20
";

fn chain() -> FilterChain {
    let mut c = FilterChain::default();
    c.add(&spec(1, "u32 match ip dst 10.0.0.2/32 flowid 1:10"))
        .unwrap();
    c.add(&spec(
        2,
        "u32 match ip protocol 17 0xff match ip dport 9000 0xffff flowid 1:20",
    ))
    .unwrap();
    c.add(&spec(
        1,
        "u32 match ip src 10.1.0.0/16 match ip tos 0x10 0xff classid 1:20",
    ))
    .unwrap();
    c
}

#[test]
fn u32_filters_print_as_tc() {
    let how = FilterShow {
        parent: Some(1 << 16),
        pref: None,
    };
    assert_eq!(chain().show(&how), SHOWN);
    let j = chain().show_json(&how);
    assert_eq!(j[2], "{\"parent\":\"1:\",\"protocol\":\"ip\",\"pref\":1,\"kind\":\"u32\",\"chain\":0,\"options\":{\"fh\":\"800::800\",\"order\":2048,\"key_ht\":\"800\",\"bkt\":\"0\",\"flowid\":\"1:10\",\"not_in_hw\":true,\"match\":{\"value\":\"a000002\",\"mask\":\"ffffffff\",\"offmask\":\"\",\"off\":16}}}");
}

#[test]
fn keys_merge_and_contradictions_are_refused() {
    let s = spec(
        1,
        "u32 match ip sport 53 0xffff match ip dport 80 0xffff match ip dst 1.2.3.4/24 flowid 1:10",
    );
    let Match::U32(keys) = &s.matcher else {
        panic!()
    };
    assert_eq!(
        keys,
        &[
            U32Key {
                val: 0x0035_0050,
                mask: u32::MAX,
                off: 20
            },
            U32Key {
                val: 0x0102_0300,
                mask: 0xffff_ff00,
                off: 16
            }
        ]
    );
    let w = [
        "match", "ip", "sport", "53", "0xffff", "match", "ip", "sport", "54", "0xffff",
    ];
    assert_eq!(
        parse_filter("u32", None, &w).unwrap_err(),
        "Illegal \"match\""
    );
    let s = spec(
        1,
        "u32 match u16 0x1 0xffff at 22 match u8 5 0xf at 0 flowid 1:10",
    );
    let Match::U32(keys) = &s.matcher else {
        panic!()
    };
    assert_eq!(
        keys[0],
        U32Key {
            val: 1,
            mask: 0xffff,
            off: 20
        }
    );
    assert_eq!(
        keys[1],
        U32Key {
            val: 0x0500_0000,
            mask: 0x0f00_0000,
            off: 0
        }
    );
}

#[test]
fn packets_take_the_first_matching_filter_by_preference() {
    let c = chain();
    let h = 1 << 16;
    // tos 0x10 from 10.1/16: pref 1's second node -> 1:20.
    assert_eq!(
        c.classify(&frame([10, 1, 2, 3], [10, 9, 9, 9], 1, 2, 0), h),
        Some(h | 0x20)
    );
    // To 10.0.0.2: pref 1's first node.
    assert_eq!(
        c.classify(&frame([10, 1, 2, 3], [10, 0, 0, 2], 1, 2, 0), h),
        Some(h | 0x10)
    );
    // UDP to port 9000 from elsewhere: pref 2.
    let mut p = frame([192, 168, 0, 1], [10, 9, 9, 9], 1, 9000, 0);
    p.network_header_mut()[1] = 0;
    assert_eq!(c.classify(&p, h), Some(h | 0x20));
    // Nothing else; an ARP frame never meets a `protocol ip` filter.
    let mut p = frame([192, 168, 0, 1], [10, 9, 9, 9], 1, 53, 0);
    p.network_header_mut()[1] = 0;
    assert_eq!(c.classify(&p, h), None);
    p.meta.protocol = 0x0806;
    p.network_header_mut()[23] = 0x28;
    assert_eq!(c.classify(&p, h), None);
}

#[test]
fn fw_matchall_and_the_chain_rules() {
    let h = 1 << 16;
    let mut c = FilterChain::default();
    let mut fw = spec(3, "fw classid 1:5");
    fw.handle = 6;
    c.add(&fw).unwrap();
    c.add(&spec(9, "matchall classid 1:9")).unwrap();
    assert_eq!(c.classify(&frame([1; 4], [2; 4], 1, 2, 6), h), Some(h | 5));
    assert_eq!(c.classify(&frame([1; 4], [2; 4], 1, 2, 7), h), Some(h | 9));
    assert_eq!(
        c.add(&spec(9, "matchall classid 1:8")),
        Err(FilterError::Exists)
    );
    assert_eq!(
        c.add(&spec(3, "u32 match u32 0 0 flowid 1:1")),
        Err(FilterError::KindMismatch)
    );
    let mut all = spec(3, "fw classid 1:6");
    all.protocol = ETH_P_ALL;
    assert_eq!(c.add(&all), Err(FilterError::ProtocolMismatch));
    // Automatic preferences: 49152 on an empty chain, then one below the first.
    let mut c = FilterChain::default();
    c.add(&spec(0, "u32 match ip dst 1.1.1.1 flowid 1:10"))
        .unwrap();
    c.add(&spec(0, "u32 match ip dst 1.1.1.2 flowid 1:10"))
        .unwrap();
    let shown = c.show(&FilterShow::default());
    assert!(
        shown.starts_with("filter protocol ip pref 49151 u32 chain 0 \n"),
        "{shown}"
    );
    assert!(
        shown.contains("pref 49152 u32 chain 0 fh 800::800"),
        "{shown}"
    );
    c.delete(49151, 0).unwrap();
    assert_eq!(c.delete(7, 0), Err(FilterError::NotFound));
}

#[test]
fn basic_meta_ematches_pick_by_priority_and_mark() {
    let h = 1 << 16;
    let mut c = FilterChain::default();
    let w = [
        "match",
        "meta(priority",
        "eq",
        "6)",
        "and",
        "not",
        "meta(nf_mark",
        "gt",
        "10)",
        "classid",
        "1:6",
    ];
    let (kind, (matcher, classid, handle)) = parse_filter("basic", None, &w).unwrap();
    let first = FilterSpec {
        pref: 5,
        protocol: ETH_P_ALL,
        kind,
        handle,
        matcher,
        classid,
    };
    c.add(&first).unwrap();
    c.add(&spec(
        6,
        "basic match meta(nf_mark mask 0xff eq 7) or meta(pktlen lt 50) classid 1:7",
    ))
    .unwrap();
    let mut p = frame([1; 4], [2; 4], 1, 2, 3);
    p.meta.priority = 6;
    assert_eq!(c.classify(&p, h), Some(h | 6));
    p.meta.mark = 0x107;
    // Mark above 10: the first fails; 0x107 & 0xff == 7: the second.
    assert_eq!(c.classify(&p, h), Some(h | 7));
    p.meta.priority = 0;
    p.meta.mark = 0;
    assert_eq!(c.classify(&p, h), Some(h | 7), "42 bytes: pktlen lt 50");
    let shown = c.show(&FilterShow {
        parent: Some(h),
        pref: None,
    });
    assert!(
        shown.contains("basic chain 0 handle 0x1 flowid 1:6 \n  meta(priority eq 6) AND NOT meta(nf_mark gt 10) \n"),
        "{shown}"
    );
    assert_eq!(
        parse_filter("basic", None, &["match", "meta(foo", "eq", "1)"]).unwrap_err(),
        "Illegal \"ematch\""
    );
}
