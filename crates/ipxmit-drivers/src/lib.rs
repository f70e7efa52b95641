//! Drivers for ipxmit (placeholder; being written).
pub mod pcap;
