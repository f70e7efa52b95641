//! IPv4 output: from a built datagram to the device layer.
//!
//! Stands for `net/ipv4/ip_output.c` below `ip_append_data`: [`output`]
//! (`ip_send_skb`, `ip_local_out`, `ip_output`, `ip_finish_output`,
//! `ip_finish_output2`, `ip_queue_xmit`), [`fragment`] (`ip_fragment`,
//! `ip_do_fragment`)
//! and [`ident`] (`ip_select_ident`, `net/ipv4/route.c`).

pub mod fragment;
pub mod ident;
pub mod output;

pub use fragment::{FragError, Fragmenter};
pub use output::{local_out, send_skb, OutputError};
