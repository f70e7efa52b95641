//! ipxmit — the Linux IPv4 transmit path, rebuilt in user space.
//!
//! Data enters through a socket-like API ([`socket`]), is corked and built into
//! IP datagrams and fragments ([`socket::cork`], [`ipv4`]), passes filter hooks
//! ([`netfilter`]), routing ([`route`]) and neighbour resolution ([`neigh`]),
//! waits in queueing disciplines ([`sched`]) on a multi-queue device ([`dev`]) and
//! leaves through a [`dev::Driver`]. The kernel (`net/ipv4/ip_output.c`,
//! `net/core/dev.c`, `net/sched/`) is the reference for every behaviour; each
//! mirrored function's documentation starts with the kernel function it stands for.
#![warn(missing_docs)]

pub mod buf;
pub mod cpu;
pub mod dev;
pub mod error;
pub mod ipv4;
pub mod neigh;
pub mod netfilter;
pub mod nft;
pub mod offload;
pub mod route;
pub mod sched;
pub mod socket;
pub mod stack;
pub mod stats;
pub mod time;
pub mod trace;
pub mod units;
pub mod wire;

pub use buf::{BufPool, PacketBuf};
pub use dev::{DevConfig, Driver, Features, LinkType, NetDevice, Tap, TxStatus};
pub use error::{Errno, SendError};
pub use socket::udp::BatchMsg;
pub use socket::{MsgFlags, PmtuDisc, RawSocket, UdpSocket};
pub use stack::{OutRoute, RouteSpec, Stack};
pub use time::{Clock, Instant, ManualClock, MonotonicClock};

/// The sockets and the stack can be shared across threads (`Send + Sync`):
/// checked at compile time, as a cell in a socket would silently take
/// `Sync` away.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<UdpSocket>();
    shareable::<RawSocket>();
    shareable::<Stack>();
};
