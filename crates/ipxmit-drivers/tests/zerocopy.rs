//! `MSG_ZEROCOPY` with `SO_ZEROCOPY`: user data referenced by the frames when
//! the device can take fragments and finish the checksum, copied otherwise;
//! completions on the error queue once every buffer is freed
//! (`SO_EE_ORIGIN_ZEROCOPY`, ids in `ee_info..=ee_data`, `ee_code` 1 when
//! copied), consecutive ranges merged.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use bytes::Bytes;
use ipxmit::dev::Features;
use ipxmit::socket::{ErrOrigin, SO_EE_CODE_ZEROCOPY_COPIED};
use ipxmit::{Errno, MsgFlags, PacketBuf, Stack, UdpSocket};
use ipxmit_drivers::mem::MemWire;

const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn host(features: Features) -> (Arc<Stack>, Arc<MemWire>, UdpSocket) {
    let mut cfg = common::eth0();
    cfg.features = features;
    let (stack, wire) = common::mem_host(cfg, 1, 64);
    let mut s = UdpSocket::new(&stack);
    s.set_zerocopy(true);
    (stack, wire, s)
}

fn to() -> SocketAddrV4 {
    SocketAddrV4::new(DST, 9)
}

fn frames(wire: &MemWire) -> Vec<PacketBuf> {
    let mut v = Vec::new();
    wire.drain(|p| v.push(p));
    v
}

fn data(n: usize) -> Bytes {
    Bytes::from((0..n).map(|i| (i * 7) as u8).collect::<Vec<u8>>())
}

#[test]
fn frames_reference_the_data_and_completion_follows_the_free() {
    let (_stack, wire, mut s) = host(Features::SG | Features::HW_CSUM);
    let d = data(1000);
    assert_eq!(
        s.send_to_zerocopy(d.clone(), to(), MsgFlags::NONE).unwrap(),
        1000
    );
    let f = frames(&wire);
    assert_eq!(f.len(), 1);
    assert!(
        f[0].frags()
            .iter()
            .any(|fr| fr.as_ptr() == d.as_ptr() && fr.len() == 1000),
        "the frame's fragment is the caller's bytes, not a copy"
    );
    assert_eq!(f[0].to_vec()[42..], d[..], "payload");
    assert!(
        s.recv_err().is_none(),
        "no completion while the frame is alive"
    );
    drop(f);
    let e = s.recv_err().expect("completion");
    assert_eq!((e.errno, e.origin), (Errno::ZERO, ErrOrigin::Zerocopy));
    assert_eq!((e.info, e.data, e.ee_code), (0, 0, 0));
}

#[test]
fn without_offloads_the_data_is_copied_and_the_completion_says_so() {
    let (_stack, wire, mut s) = host(Features::NONE);
    let d = data(500);
    s.send_to_zerocopy(d.clone(), to(), MsgFlags::NONE).unwrap();
    let f = frames(&wire);
    assert!(f[0].frags().is_empty(), "copied into the linear area");
    drop(f);
    let e = s.recv_err().expect("completion");
    assert_eq!(
        (e.info, e.data, e.ee_code),
        (0, 0, SO_EE_CODE_ZEROCOPY_COPIED)
    );
}

#[test]
fn consecutive_completions_merge_and_fragments_hold_the_completion() {
    let (_stack, wire, mut s) = host(Features::SG | Features::HW_CSUM);
    s.send_to_zerocopy(data(100), to(), MsgFlags::NONE).unwrap();
    s.send_to_zerocopy(data(100), to(), MsgFlags::NONE).unwrap();
    drop(frames(&wire));
    let e = s.recv_err().expect("merged completion");
    assert_eq!((e.info, e.data), (0, 1), "ids 0..=1 in one entry");
    assert!(s.recv_err().is_none());
    // A fragmented datagram cannot use checksum offload: copied, and its
    // completion waits for the last fragment.
    s.send_to_zerocopy(data(3000), to(), MsgFlags::NONE)
        .unwrap();
    let mut f = frames(&wire);
    assert_eq!(f.len(), 3);
    let last = f.pop();
    drop(f);
    assert!(s.recv_err().is_none(), "one fragment still alive");
    drop(last);
    let e = s.recv_err().expect("completion");
    assert_eq!(
        (e.info, e.data, e.ee_code),
        (2, 2, SO_EE_CODE_ZEROCOPY_COPIED)
    );
}

#[test]
fn corked_sends_share_one_token_and_plain_sockets_get_nothing() {
    let (_stack, wire, mut s) = host(Features::SG | Features::HW_CSUM);
    s.send_to_zerocopy(data(100), to(), MsgFlags::MORE).unwrap();
    s.send_to_zerocopy(data(100), to(), MsgFlags::NONE).unwrap();
    drop(frames(&wire));
    let e = s.recv_err().expect("completion");
    assert_eq!((e.info, e.data), (0, 1), "one datagram, two send ids");
    assert_eq!(
        e.ee_code, SO_EE_CODE_ZEROCOPY_COPIED,
        "corked data is copied"
    );
    let (_stack, wire, mut p) = host(Features::SG | Features::HW_CSUM);
    p.set_zerocopy(false);
    p.send_to_zerocopy(data(100), to(), MsgFlags::NONE).unwrap();
    drop(frames(&wire));
    assert!(p.recv_err().is_none(), "no SO_ZEROCOPY, no completion");
}
