//! Filter hooks on the output path.
//!
//! Stands for `nf_hook(NFPROTO_IPV4, NF_INET_LOCAL_OUT, ...)` in `__ip_local_out`
//! and `NF_HOOK_COND(..., NF_INET_POST_ROUTING, ...)` in `ip_output`
//! (`include/linux/netfilter.h`). A [`Hook`] sees each packet at its point and
//! returns a [`Verdict`]; the first DROP wins and the packet is counted under
//! `NETFILTER_DROP` and the send fails with `EPERM`, as in the kernel. With no hook
//! registered the check costs one atomic load.

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
}

/// A hook's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `NF_ACCEPT`: continue.
    Accept,
    /// `NF_DROP`: drop the packet.
    Drop,
}

/// A filter function at a hook point.
pub trait Hook: Send + Sync {
    /// Decides on `pkt` (its data starts at the IP header), leaving through `out`.
    fn hook(&self, point: HookPoint, pkt: &mut PacketBuf, out: &NetDevice) -> Verdict;
}

/// The registered hooks of a stack.
#[derive(Default)]
pub struct Hooks {
    local_out: RwLock<Vec<Arc<dyn Hook>>>,
    post_routing: RwLock<Vec<Arc<dyn Hook>>>,
    any: [AtomicBool; 2],
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("local_out", &self.local_out.read().len())
            .field("post_routing", &self.post_routing.read().len())
            .finish()
    }
}

impl Hooks {
    fn list(&self, p: HookPoint) -> &RwLock<Vec<Arc<dyn Hook>>> {
        match p {
            HookPoint::LocalOut => &self.local_out,
            HookPoint::PostRouting => &self.post_routing,
        }
    }

    /// Registers a hook at `point` (after those already there).
    pub fn register(&self, point: HookPoint, hook: Arc<dyn Hook>) {
        self.list(point).write().push(hook);
        self.any[point as usize].store(true, Ordering::Release);
    }

    /// Removes every hook at `point`.
    pub fn clear(&self, point: HookPoint) {
        self.list(point).write().clear();
        self.any[point as usize].store(false, Ordering::Release);
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
        if !self.any[point as usize].load(Ordering::Acquire) {
            return Verdict::Accept;
        }
        for h in self.list(point).read().iter() {
            if h.hook(point, pkt, out) == Verdict::Drop {
                return Verdict::Drop;
            }
        }
        Verdict::Accept
    }
}
