//! An in-memory wire with a line rate: frames leave one after another at
//! the rate; byte queue limits stop the queue while more bytes are in
//! flight than the limit, which grows from 0 as the line starves; the
//! queue wakes on completions; on the virtual clock `next_wakeup` steps to
//! each frame's end.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use ipxmit::time::{Clock, Instant, ManualClock};
use ipxmit::{MsgFlags, UdpSocket};
use ipxmit_drivers::mem::MemWire;

/// 8 Mbit/s: a byte a microsecond.
const RATE: u64 = 8_000_000;
/// The transmit ring: four frames.
const RING: usize = 4;

#[test]
fn frames_leave_at_the_line_rate_and_the_ring_backs_up_into_the_qdisc() {
    let clock = Arc::new(ManualClock::new());
    let (stack, wire) =
        common::clocked_host(clock.clone(), |s| MemWire::with_rate(RING, RATE, s.clock()));
    let mut s = UdpSocket::new(&stack);
    s.bind(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5000))
        .unwrap();
    let dst = SocketAddrV4::new(common::PEER, 9);
    for k in 0..7 {
        s.send_to(&common::payload(1000, k), dst, MsgFlags::NONE)
            .unwrap();
    }
    // BQL starts at a limit of 0: one frame on the line, the rest behind
    // the stopped queue.
    let d = stack.device("eth0").unwrap();
    assert_eq!(wire.len(), 1);
    assert!(d.queues()[0].ctl().is_stopped());
    let qlen = d.queues()[0].with_qdisc(|q| q.stats().qlen);
    assert_eq!(qlen, 6);
    // Each 1042-byte frame takes 1042 us; the far end sees each at its end.
    let mut seen = Vec::new();
    while let Some(t) = stack.next_wakeup() {
        clock.set(t);
        wire.drain(|f| seen.push((clock.now().as_nanos(), f.len())));
        stack.poll();
        if seen.len() == 7 {
            break;
        }
    }
    let want: Vec<(u64, usize)> = (1..=7).map(|k| (k * 1_042_000, 1042)).collect();
    assert_eq!(seen, want);
    assert_eq!(wire.next_completion(), None);
    assert!(!d.queues()[0].ctl().is_stopped());
    // dql_completed by hand: at 1042 us the line ran dry over a limit of
    // 0 (limit 1042); at 3126 us everything queued before the previous
    // completion had completed with an overshoot of 1042 (limit 2084);
    // after that the queue never starves over its limit again.
    let bql = d.queues()[0].ctl().bql().unwrap();
    assert_eq!((bql.limit(), bql.inflight()), (2084, 0));
    // One requeue: the second datagram took the bypass and found the
    // queue stopped (`sch_direct_xmit` requeues it, as the kernel's). No
    // more: a bulk dequeue takes no more than the room BQL leaves
    // (`qdisc_avail_bulklimit`), where a frame past it would stop the
    // queue mid-batch and be requeued (9 were, before).
    let requeues = d.queues()[0].with_qdisc(|q| q.stats().requeues);
    assert_eq!(requeues, 1);
    assert_eq!(wire.rate(), Some(RATE));
    assert_eq!(
        stack
            .next_wakeup()
            .filter(|t| *t > Instant::from_nanos(7_294_000)),
        None
    );
}
