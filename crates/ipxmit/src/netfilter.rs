//! Filter hooks on the output path.
//!
//! Stands for `nf_hook(NFPROTO_IPV4, NF_INET_LOCAL_OUT, ...)` in `__ip_local_out`,
//! `NF_HOOK_COND(..., NF_INET_POST_ROUTING, ...)` in `ip_output`
//! (`include/linux/netfilter.h`) and `nf_hook_egress()` in `__dev_queue_xmit`
//! (`include/linux/netfilter_netdev.h`). A [`Hook`] sees each packet at its point
//! and returns a [`Verdict`]; the first DROP wins and the packet is counted under
//! `NETFILTER_DROP`. At LOCAL_OUT and POST_ROUTING the send fails with `EPERM`;
//! at egress the frame's `dev_queue_xmit` returns `NET_XMIT_DROP` (`ENOBUFS`), as
//! in the kernel. With no hook registered the check costs one atomic load.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::buf::PacketBuf;
use crate::dev::NetDevice;

/// Where a hook sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookPoint {
    /// `NF_INET_LOCAL_OUT`: after the IP header is complete, before routing output.
    LocalOut,
    /// `NF_INET_POST_ROUTING`: after routing, before fragmentation.
    PostRouting,
    /// `NF_NETDEV_EGRESS`: each frame (each fragment) in `dev_queue_xmit`,
    /// its link header in place, before the qdisc; a hook there is asked
    /// about every device's frames and picks its own by `out`.
    Egress,
}

/// A hook's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `NF_ACCEPT`: continue.
    Accept,
    /// `NF_DROP`: drop the packet (the send fails with `EPERM`).
    Drop,
    /// `NF_DROP_ERR(err)`: drop the packet, and the send fails with this
    /// errno instead (a failed `ip_route_me_harder` after a `route` chain
    /// or a destination NAT changed the routing keys).
    DropErr(crate::error::Errno),
}

impl Verdict {
    /// True for [`Verdict::Drop`] and [`Verdict::DropErr`].
    #[inline]
    pub fn is_drop(self) -> bool {
        !matches!(self, Verdict::Accept)
    }
}

/// A filter function at a hook point.
///
/// A hook runs inside the output path of a batch of datagrams, which may
/// hold the output device's transmit lock: it must not transmit on that
/// device itself (it may change the packet, count, or decide).
pub trait Hook: Send + Sync {
    /// Decides on `pkt` leaving through `out`: its data starts at the IP
    /// header, except at [`HookPoint::Egress`], where it starts at the
    /// link header (`skb->protocol` says what follows it).
    fn hook(&self, point: HookPoint, pkt: &mut PacketBuf, out: &NetDevice) -> Verdict;
}

/// A filter that accepts every packet (a chain whose one rule is
/// `accept`): what the benchmarks register to measure a hook's cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct AcceptAll;

impl Hook for AcceptAll {
    fn hook(&self, _point: HookPoint, _pkt: &mut PacketBuf, _out: &NetDevice) -> Verdict {
        Verdict::Accept
    }
}

/// The registered hooks of a stack.
#[derive(Default)]
pub struct Hooks {
    local_out: RwLock<Vec<Arc<dyn Hook>>>,
    post_routing: RwLock<Vec<Arc<dyn Hook>>>,
    egress: RwLock<Vec<Arc<dyn Hook>>>,
    any: [AtomicBool; 3],
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("local_out", &self.local_out.read().len())
            .field("post_routing", &self.post_routing.read().len())
            .field("egress", &self.egress.read().len())
            .finish()
    }
}

impl Hooks {
    fn hooks_at(&self, p: HookPoint) -> &RwLock<Vec<Arc<dyn Hook>>> {
        match p {
            HookPoint::LocalOut => &self.local_out,
            HookPoint::PostRouting => &self.post_routing,
            HookPoint::Egress => &self.egress,
        }
    }

    /// Registers a hook at `point` (after those already there).
    pub fn register(&self, point: HookPoint, hook: Arc<dyn Hook>) {
        self.hooks_at(point).write().push(hook);
        self.any[point as usize].store(true, Ordering::Release);
    }

    /// Puts `new` in the place of the hook `old` at `point` (its order
    /// kept), or after the others when `old` is not there: how a new
    /// generation of a ruleset takes over without a lock per packet.
    pub fn replace(&self, point: HookPoint, old: Option<&Arc<dyn Hook>>, new: Arc<dyn Hook>) {
        let mut l = self.hooks_at(point).write();
        match old.and_then(|o| l.iter().position(|h| Arc::ptr_eq(h, o))) {
            Some(i) => l[i] = new,
            None => l.push(new),
        }
        self.any[point as usize].store(true, Ordering::Release);
    }

    /// Removes every hook at `point`.
    pub fn clear(&self, point: HookPoint) {
        self.hooks_at(point).write().clear();
        self.any[point as usize].store(false, Ordering::Release);
    }

    /// How many hook functions are registered at `point`.
    pub fn count(&self, point: HookPoint) -> usize {
        self.hooks_at(point).read().len()
    }

    /// True when no hook is registered at `point` (the kernel's static key
    /// for an empty hook list).
    #[inline]
    pub fn is_empty(&self, point: HookPoint) -> bool {
        !self.any[point as usize].load(Ordering::Acquire)
    }

    /// Kernel: `nf_hook()`. Runs the hooks at `point`; the first DROP wins.
    #[inline]
    pub fn run(&self, point: HookPoint, pkt: &mut PacketBuf, out: &NetDevice) -> Verdict {
        match self.list(point) {
            Some(l) => l.run(point, pkt, out),
            None => Verdict::Accept,
        }
    }

    /// The hooks registered at `point`, read once for a batch of packets
    /// (registering waits until the list is let go); `None` when there are
    /// none (the kernel's static key for an empty hook list).
    #[inline]
    pub fn list(&self, point: HookPoint) -> Option<HookList<'_>> {
        if !self.any[point as usize].load(Ordering::Acquire) {
            return None;
        }
        Some(HookList(self.hooks_at(point).read_recursive()))
    }
}

/// The hooks at one point, as a batch reads them ([`Hooks::list`]).
pub struct HookList<'a>(parking_lot::RwLockReadGuard<'a, Vec<Arc<dyn Hook>>>);

impl HookList<'_> {
    /// Kernel: `nf_hook_slow()`. Runs the hooks in order on `pkt`; the first
    /// DROP wins (with its errno, if it has one).
    #[inline]
    pub fn run(&self, point: HookPoint, pkt: &mut PacketBuf, out: &NetDevice) -> Verdict {
        match &self.0[..] {
            // One hook (the common case): its verdict is the list's.
            [h] => h.hook(point, pkt, out),
            hooks => run_each(hooks, point, pkt, out),
        }
    }
}

/// [`HookList::run`] of more than one hook (or none), out of line.
#[inline(never)]
fn run_each(
    hooks: &[Arc<dyn Hook>],
    point: HookPoint,
    pkt: &mut PacketBuf,
    out: &NetDevice,
) -> Verdict {
    for h in hooks {
        let v = h.hook(point, pkt, out);
        if v.is_drop() {
            return v;
        }
    }
    Verdict::Accept
}
