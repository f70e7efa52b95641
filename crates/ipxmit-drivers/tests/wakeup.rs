//! A driver that refuses a frame stops its own queue (`netif_stop_queue`) and
//! wakes it when it has room (`netif_tx_wake_queue`); the room may come back
//! before the stack has even seen the refusal (a consumer on another thread
//! drains the ring in between). The stack must then requeue the frame and
//! run the queue again (`dev_requeue_skb` → `__netif_schedule`), never stop
//! the queue itself: a stop after the wake-up would leave the queue asleep
//! with frames and send-budget charges held for good. This is the lost
//! wake-up that hung `ipxmit send --threads 4` now and then.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use ipxmit::dev::{Driver, TxQueueCtl, TxStatus};
use ipxmit::socket::udp::BatchMsg;
use ipxmit::{Features, MsgFlags, PacketBuf, Stack, UdpSocket};

const NEAR: Ipv4Addr = common::PEER;

/// Refuses its first `refuse` frames; each time (when `stops`) it stops
/// its queue and, as a consumer that made room at once would, wakes it
/// again before it returns — or (not `stops`) just says "busy", as a
/// driver that leaves its queue alone does (the stack then tries again).
/// Counts the frames it takes.
struct WokenBeforeReturn {
    refuse: usize,
    stops: bool,
    ctl: Option<Arc<TxQueueCtl>>,
    taken: Arc<parking_lot::Mutex<Vec<usize>>>,
}

impl Driver for WokenBeforeReturn {
    fn attach(&mut self, ctl: Arc<TxQueueCtl>) {
        self.ctl = Some(ctl);
    }

    fn start_xmit(&mut self, pkt: PacketBuf, _more: bool) -> TxStatus {
        if self.refuse > 0 {
            self.refuse -= 1;
            let ctl = self.ctl.as_ref().expect("attached");
            if self.stops {
                ctl.stop();
                ctl.wake();
            }
            return TxStatus::Busy(pkt);
        }
        self.taken.lock().push(pkt.len());
        TxStatus::Ok
    }
}

/// A host whose one queue has that driver behind `qdisc`, and a socket.
fn host(
    (refuse, stops): (usize, bool),
    qdisc: &str,
) -> (Arc<Stack>, UdpSocket, Arc<parking_lot::Mutex<Vec<usize>>>) {
    let taken = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let drv = WokenBeforeReturn {
        refuse,
        stops,
        ctl: None,
        taken: taken.clone(),
    };
    let mut cfg = common::eth0();
    cfg.features = Features::NONE;
    let stack = common::driver_stack(Box::new(drv), cfg, Some(qdisc));
    let sock = UdpSocket::new(&stack);
    (stack, sock, taken)
}

/// Runs deferred work until nothing is left (bounded).
fn settle(stack: &Stack) {
    for _ in 0..100 {
        if stack.poll() == 0 {
            break;
        }
    }
}

/// The refused frames reach the driver after all, the queue awake, however
/// they were sent: one frame through the bypass (`sendmsg`), a fragment
/// train (a datagram over the MTU), and a `send_batch` run (the datagrams
/// after a refused one queue in the qdisc and go in its own runs); whether
/// the driver stopped its queue or not.
#[test]
fn a_wake_up_before_the_refusal_returns_is_not_lost() {
    let to = Some(SocketAddrV4::new(NEAR, 9));
    let drivers = [1, 2, 3].into_iter().flat_map(|n| [(n, true), (n, false)]);
    for (qdisc, refuse) in drivers.flat_map(|d| [("pfifo_fast", d), ("pfifo limit 100", d)]) {
        // One frame, the bypass.
        let (stack, mut sock, taken) = host(refuse, qdisc);
        sock.sendmsg(&[7; 100], to, MsgFlags::NONE).unwrap();
        settle(&stack);
        assert_eq!(*taken.lock(), vec![142], "{qdisc}, {refuse:?} refused");
        let dev = stack.device("eth0").unwrap();
        assert!(!dev.queues()[0].ctl().is_stopped(), "{qdisc}: awake");

        // A fragment train: 3000 bytes at MTU 1500.
        let (stack, mut sock, taken) = host(refuse, qdisc);
        sock.sendmsg(&[7; 3000], to, MsgFlags::NONE).unwrap();
        settle(&stack);
        assert_eq!(
            *taken.lock(),
            vec![1514, 1514, 82],
            "{qdisc}, {refuse:?} refused"
        );

        // send_batch runs of 1 (the refused frame is the run's last)
        // and 10 datagrams.
        for n in [1, 10] {
            let (stack, mut sock, taken) = host(refuse, qdisc);
            let data = [7u8; 100];
            let msgs = vec![BatchMsg::new(&data, to); n];
            assert_eq!(sock.send_batch(&msgs, MsgFlags::NONE), Ok(n));
            settle(&stack);
            assert_eq!(taken.lock().len(), n, "{qdisc}, {refuse:?} refused");
            assert_eq!(sock.budget().allocated(), 0, "{qdisc}, {refuse:?}");
        }
    }
}

/// The deferred work (`Stack::next_wakeup`, `Stack::poll`) learns when a
/// throttled qdisc may dequeue without taking the qdisc lock that senders
/// contend for: with the lock held elsewhere both return, and the time is
/// the watchdog's (the tbf's next token). On the virtual clock, so the
/// watchdog is not yet due when `poll` looks (a due one is run, under the
/// lock, as it must be).
#[test]
fn the_watchdog_time_is_read_without_the_qdisc_lock() {
    let clock = Arc::new(ipxmit::time::ManualClock::new());
    let (stack, _wire) = common::clocked_host(clock, |_| ipxmit_drivers::mem::MemWire::new(64));
    let tbf = "tbf rate 1mbit burst 1600 limit 100000".parse().unwrap();
    stack.replace_qdisc("eth0", &tbf).unwrap();
    let mut s = UdpSocket::new(&stack);
    let to = SocketAddrV4::new(NEAR, 9);
    for _ in 0..3 {
        s.send_to(&[0u8; 1000], to, MsgFlags::NONE).unwrap();
    }
    let want = stack.next_wakeup().expect("a throttled tbf has a watchdog");
    assert!(want > stack.now(), "the watchdog is ahead of now");
    let dev = stack.device("eth0").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|sc| {
        dev.queues()[0].with_qdisc(|_| {
            sc.spawn(|| {
                let t = stack.next_wakeup();
                stack.poll();
                tx.send(t).unwrap();
            });
            let got = rx.recv_timeout(std::time::Duration::from_secs(5));
            assert_eq!(got, Ok(Some(want)), "answered with the qdisc lock held");
        });
    });
}
