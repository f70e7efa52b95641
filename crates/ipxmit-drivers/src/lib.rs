//! Drivers for ipxmit: the edge of the stack, where frames leave.
//!
//! Stands for the `ndo_start_xmit` implementations of the kernel's drivers:
//! [`mem`] (an in-memory ring with a consumer, like a NIC's TX ring), [`null`]
//! (`dummy`), [`capture`] (AF_PACKET taps and a capture-file device), [`pcap`]
//! (our own pcap/pcapng writer) and [`peer`] (a strict in-process receiver that
//! verifies what arrives).
#![warn(missing_docs)]

pub mod capture;
pub mod mem;
pub mod netns;
pub mod null;
pub mod packet;
pub mod pcap;
pub mod peer;
pub mod runner;
mod sys;
pub mod tap;
