//! Tracepoints: `tracing` events where the kernel has its tracepoints.
//!
//! Stands for the kernel's tracepoints of the transmit path
//! (`include/trace/events/net.h`, `qdisc.h`, `skb.h`, `fib.h`, `neigh.h`),
//! which `perf trace -e net:net_dev_xmit` shows. Each fires where the kernel
//! fires its namesake; the event's name is the tracepoint's, its target
//! `ipxmit::SYSTEM` after the kernel's trace system, its message the
//! tracepoint's name again (so a plain formatter prints it), and its fields
//! the tracepoint's, as far as ipxmit has them (no `skbaddr`):
//!
//! | event | target | level | fires in | fields |
//! |---|---|---|---|---|
//! | `fib_table_lookup` | `ipxmit::fib` | INFO | [`crate::route::Rib::lookup`], per table looked up (`fib_table_lookup()`) | `tb_id`, `oif`, `proto`, `src`, `sport`, `dst`, `dport`, `tos`, `dev`, `gw`, `err` |
//! | `neigh_update` | `ipxmit::neigh` | INFO | [`crate::neigh::Neighbour::update`] (`__neigh_update()`) | `ifindex`, `primary_key4`, `lladdr`, `nud_state`, `new_lladdr`, `new_state`, `admin` |
//! | `kfree_skb` | `ipxmit::skb` | INFO | [`crate::stats::Counters::drop`] and `drop_n`, the one place drops are counted (`kfree_skb_reason()`) | `reason`, `packets`, `location` |
//! | `qdisc_dequeue` | `ipxmit::qdisc` | DEBUG | the qdisc run's dequeue (`dequeue_skb()`) | `dev`, `ifindex`, `handle`, `parent`, `txq_state`, `packets` |
//! | `net_dev_queue` | `ipxmit::net` | TRACE | [`crate::dev::batch::XmitBatch::xmit_sized`] (`__dev_queue_xmit()`) | `dev`, `len` |
//! | `net_dev_start_xmit` | `ipxmit::net` | TRACE | [`crate::dev::xmit::xmit_one`], before the driver | `dev`, `queue_mapping`, `protocol`, `ip_summed`, `len`, `data_len`, `network_offset`, `transport_offset`, `gso_size`, `gso_segs`, `gso_type` |
//! | `net_dev_xmit` | `ipxmit::net` | TRACE | [`crate::dev::xmit::xmit_one`], after the driver | `dev`, `len`, `rc` |
//!
//! So `ipxmit -v` shows the slow path (route lookups, neighbour updates,
//! drops), `-vv` adds the qdisc runs, `-vvv` every packet; `RUST_LOG`
//! (`ipxmit::net=trace`, `ipxmit::skb=info`) picks by system.
//!
//! Off, a site costs what `tracing`'s level check costs: one relaxed load
//! of the global maximum level and a branch (`tracing::level_enabled!`;
//! the callsite's cached interest is asked only past it); the fields are
//! computed, and anything formatted, only for a subscriber that wants the
//! event. The events sit in `#[cold]` functions beside their sites. The
//! per-packet ones go further: the level is read once per transmit batch
//! or qdisc run ([`crate::dev::batch::XmitBatch`], `hard_start_xmit`) and a
//! frame tests that flag once, so a subscriber that arrives mid-batch sees
//! the frames from the next batch on.

/// Target of the `net` system's events (`net_dev_queue`, `net_dev_start_xmit`,
/// `net_dev_xmit`).
pub const NET: &str = "ipxmit::net";
/// Target of the `qdisc` system's events (`qdisc_dequeue`).
pub const QDISC: &str = "ipxmit::qdisc";
/// Target of the `skb` system's events (`kfree_skb`).
pub const SKB: &str = "ipxmit::skb";
/// Target of the `fib` system's events (`fib_table_lookup`).
pub const FIB: &str = "ipxmit::fib";
/// Target of the `neigh` system's events (`neigh_update`).
pub const NEIGH: &str = "ipxmit::neigh";
