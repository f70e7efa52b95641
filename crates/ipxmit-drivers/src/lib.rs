//! Drivers for ipxmit: the edge of the stack, where frames leave.
//!
//! Stands for the `ndo_start_xmit` implementations of the kernel's drivers:
//! [`mem`] (an in-memory ring with a consumer, like a NIC's TX ring), [`null`]
//! (`dummy`), [`capture`] (AF_PACKET taps and a capture-file device), [`pcap`]
//! (our own pcap/pcapng writer), [`tap`] (TAP/TUN with `virtio_net_hdr`
//! offloads, `drivers/net/tun.c`'s user side), [`packet`] (AF_PACKET with
//! `sendmmsg` batches or a TX ring, `net/packet/af_packet.c`'s user side),
//! [`xdp`] (AF_XDP sockets with a UMEM and TX/completion rings,
//! `net/xdp/xsk.c`'s user side) and
//! [`peer`] (a strict in-process receiver that verifies what arrives). [`runner`]
//! is the thread that does the stack's deferred work (the NET_TX softirq, timers,
//! the receive side); [`netns`] makes the network namespaces tests and
//! benchmarks use.
#![warn(missing_docs)]

pub mod capture;
pub mod mem;
pub mod netns;
pub mod null;
pub mod packet;
pub mod pattern;
pub mod pcap;
pub mod peer;
pub mod runner;
pub mod sender_drops;
mod sys;
pub mod tap;
mod txring;
pub mod vnet;
pub mod xdp;
