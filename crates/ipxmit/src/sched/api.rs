//! Adding, replacing, changing and deleting a device's root qdisc, as
//! `tc qdisc add|replace|change|del dev D root` asks the kernel to.
//!
//! Stands for the root case of `tc_modify_qdisc()` and `tc_get_qdisc()`
//! (`net/sched/sch_api.c`) and `qdisc_alloc_handle()`.
//!
//! # The decision
//!
//! tc sends `add` as `NLM_F_CREATE|NLM_F_EXCL`, `replace` as
//! `NLM_F_CREATE|NLM_F_REPLACE`, `change` with no flag. The device's
//! default root (handle `0:`) counts as no root. Then:
//!
//! - A handle was given and differs from the root's: without `REPLACE`
//!   over an existing root, `NLM_F_REPLACE needed to override`; a minor
//!   number, `Invalid minor handle`; else a new qdisc of that handle (with
//!   `CREATE`; without it, `Qdisc not found. To create specify
//!   NLM_F_CREATE flag`).
//! - No handle, and no root: a new qdisc (with `CREATE`, else the same
//!   "not found").
//! - No handle, a root of another kind: a new one in its place, whatever
//!   the flags (Linux 6.x; `change` creates too).
//! - Otherwise the root is changed in place (its queue and counters kept):
//!   refused under `EXCL` (`add`) with the same message, and for another
//!   kind (`Invalid qdisc name: must match existing qdisc`).
//!
//! A new qdisc without a handle gets the next automatic one, `8001:`,
//! `8002:`, ... (`qdisc_alloc_handle`; the kernel's counter is global,
//! here it is the stack's). Deleting needs a root that is not the default
//! (`Cannot delete qdisc with handle of zero`) and, when a handle is given,
//! that handle (`Invalid handle`); the default root comes back.

use std::fmt;

/// What a tc command asks of a root qdisc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QdiscOp {
    /// `tc qdisc add`: `NLM_F_CREATE | NLM_F_EXCL`.
    Add,
    /// `tc qdisc replace`: `NLM_F_CREATE | NLM_F_REPLACE`.
    Replace,
    /// `tc qdisc change`: no flag.
    Change,
}

impl QdiscOp {
    fn create(self) -> bool {
        matches!(self, QdiscOp::Add | QdiscOp::Replace)
    }

    fn replace(self) -> bool {
        self == QdiscOp::Replace
    }

    fn exclusive(self) -> bool {
        self == QdiscOp::Add
    }
}

/// What the kernel answers a tc request with, when it refuses it (its
/// extended-ack message; tc prints `Error: <message>.`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TcError {
    /// `ENODEV`, before the request: tc prints `Cannot find device "D"`.
    #[error("Cannot find device \"{0}\"")]
    NoDevice(String),
    /// A root exists and the handle differs, without `NLM_F_REPLACE`.
    #[error("NLM_F_REPLACE needed to override")]
    ReplaceNeeded,
    /// A handle with a minor number.
    #[error("Invalid minor handle")]
    InvalidMinor,
    /// Nothing to change, and no `NLM_F_CREATE`.
    #[error("Qdisc not found. To create specify NLM_F_CREATE flag")]
    NotFound,
    /// `add` over an existing root.
    #[error("Exclusivity flag on, cannot modify")]
    Exclusive,
    /// A change of a root of another kind.
    #[error("Invalid qdisc name: must match existing qdisc")]
    KindMismatch,
    /// Deleting the default root.
    #[error("Cannot delete qdisc with handle of zero")]
    DeleteDefault,
    /// Deleting with a handle that is not the root's.
    #[error("Invalid handle")]
    InvalidHandle,
    /// A change by handle without one (`EINVAL`).
    #[error("Handle cannot be zero")]
    HandleZero,
    /// No qdisc of the handle given (`ENOENT`).
    #[error("Specified qdisc not found")]
    QdiscNotFound,
    /// Deleting by handle without a parent (`EINVAL`).
    #[error("Classid cannot be zero")]
    ClassidZero,
    /// Deleting by a handle no qdisc has (`ENOENT`).
    #[error("Failed to find qdisc with specified handle")]
    HandleNotFound,
    /// No qdisc of the parent's major (`ENOENT`).
    #[error("Failed to find specified qdisc")]
    ParentNotFound,
    /// The parent qdisc has no such class (`ENOENT`).
    #[error("Specified class not found")]
    ClassNotFound,
    /// The parent qdisc has no classes (`EOPNOTSUPP`).
    #[error("Parent qdisc is not classful")]
    NotClassful,
    /// `noqueue` under a class (`EINVAL`).
    #[error("Cannot assign noqueue to a class")]
    NoqueueOnClass,
    /// A tree deeper than 8 qdiscs (`E2BIG`).
    #[error("Qdisc hierarchy is too deep")]
    TooDeep,
    /// `add` with the handle of a qdisc that exists elsewhere (`EEXIST`).
    #[error("Exclusivity flag on, cannot override")]
    ExclusiveOverride,
    /// Deleting under a parent no qdisc has (`ENOENT`).
    #[error("Failed to find qdisc with specified classid")]
    DeleteParentNotFound,
    /// Deleting where only a default qdisc is (`ENOENT`).
    #[error("Cannot find specified qdisc on specified device")]
    DeleteNotFound,
    /// The parameters are refused (by tc, or the kernel's `EINVAL`).
    #[error(transparent)]
    Spec(#[from] super::SpecError),
    /// A class request refused (its own message).
    #[error(transparent)]
    Class(#[from] super::ClassError),
    /// A filter request refused (its own message).
    #[error(transparent)]
    Filter(#[from] super::cls::FilterError),
}

/// What to do with the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootAction {
    /// Put a new qdisc in its place, with this handle (`None`: the next
    /// automatic one).
    Create(Option<u32>),
    /// Change the root's parameters in place.
    Change,
}

/// The root as the decision sees it: its handle (major number, 16 bits
/// up) and kind; `None` for the device's default root.
#[derive(Clone, Copy, Debug)]
pub struct Root<'a> {
    /// The handle (`0x0001_0000` is `1:`).
    pub handle: u32,
    /// The qdisc kind.
    pub kind: &'a str,
}

/// Kernel: the root branch of `tc_modify_qdisc()`. See the module
/// documentation.
pub fn decide(
    root: Option<Root<'_>>,
    op: QdiscOp,
    handle: Option<u32>,
    kind: &str,
) -> Result<RootAction, TcError> {
    let create = |h| {
        if op.create() {
            Ok(RootAction::Create(h))
        } else {
            Err(TcError::NotFound)
        }
    };
    match (root, handle) {
        (r, Some(h)) if r.is_none_or(|r| r.handle != h) => {
            if r.is_some() && !op.replace() {
                return Err(TcError::ReplaceNeeded);
            }
            if h & 0xffff != 0 {
                return Err(TcError::InvalidMinor);
            }
            create(Some(h))
        }
        (None, _) => create(None),
        // 6.x: a kind that differs always means create and graft (even
        // for `change`, which has no NLM_F_CREATE).
        (Some(r), None) if r.kind != kind => Ok(RootAction::Create(None)),
        (Some(r), _) => {
            if op.exclusive() {
                return Err(TcError::Exclusive);
            }
            if r.kind != kind {
                return Err(TcError::KindMismatch);
            }
            Ok(RootAction::Change)
        }
    }
}

/// Kernel: the root branch of `tc_get_qdisc()` for `RTM_DELQDISC`.
pub fn check_delete(root_handle: u32, handle: Option<u32>) -> Result<(), TcError> {
    if handle.is_some_and(|h| h != root_handle) {
        return Err(TcError::InvalidHandle);
    }
    if root_handle == 0 {
        return Err(TcError::DeleteDefault);
    }
    Ok(())
}

/// Kernel: `qdisc_alloc_handle()`'s counter: majors `8001`, `8002`, ...,
/// `ffff`, then `8000` again (kept by the stack).
#[derive(Debug, Default)]
pub struct AutoHandle(std::sync::atomic::AtomicU32);

impl AutoHandle {
    /// The next automatic handle that `in_use` does not take.
    pub fn next(&self, in_use: impl Fn(u32) -> bool) -> u32 {
        use std::sync::atomic::Ordering;
        for _ in 0..0x8000 {
            let n = self.0.fetch_add(1, Ordering::Relaxed);
            let h = (0x8001 + n % 0x7fff) << 16;
            if !in_use(h) {
                return h;
            }
        }
        0x8000 << 16
    }
}

/// A handle as tc prints it: `1:`, `8001:`.
pub struct Handle(pub u32);

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}:", self.0 >> 16)?;
        if self.0 & 0xffff != 0 {
            write!(f, "{:x}", self.0 & 0xffff)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(handle: u32, kind: &str) -> Option<Root<'_>> {
        Some(Root { handle, kind })
    }

    /// The cases the real tc and kernel were seen to answer (iproute2 6.1,
    /// Linux 6.18).
    #[test]
    fn decisions_are_the_kernels() {
        use QdiscOp::{Add, Change as Chg, Replace};
        use RootAction::{Change, Create};
        let h1 = 1 << 16;
        assert_eq!(decide(None, Add, None, "pfifo"), Ok(Create(None)));
        assert_eq!(decide(None, Chg, None, "tbf"), Err(TcError::NotFound));
        assert_eq!(
            decide(root(h1, "tbf"), Add, Some(h1), "tbf"),
            Err(TcError::Exclusive)
        );
        assert_eq!(
            decide(root(h1, "tbf"), Add, None, "tbf"),
            Err(TcError::Exclusive)
        );
        assert_eq!(
            decide(root(h1, "tbf"), Add, None, "pfifo"),
            Ok(Create(None))
        );
        assert_eq!(
            decide(root(h1, "tbf"), Chg, None, "pfifo"),
            Ok(Create(None))
        );
        assert_eq!(
            decide(root(h1, "tbf"), Chg, Some(2 << 16), "tbf"),
            Err(TcError::ReplaceNeeded)
        );
        assert_eq!(decide(root(h1, "tbf"), Chg, Some(h1), "tbf"), Ok(Change));
        assert_eq!(
            decide(root(0x8078 << 16, "pfifo"), Replace, None, "pfifo"),
            Ok(Change)
        );
        assert_eq!(
            decide(root(0x8078 << 16, "pfifo"), Replace, None, "bfifo"),
            Ok(Create(None))
        );
        assert_eq!(
            decide(root(0x808b << 16, "pfifo"), Replace, Some(h1), "tbf"),
            Ok(Create(Some(h1)))
        );
        assert_eq!(
            decide(None, Add, Some(h1 | 1), "tbf"),
            Err(TcError::InvalidMinor)
        );
        assert_eq!(check_delete(0, None), Err(TcError::DeleteDefault));
        assert_eq!(check_delete(h1, Some(2 << 16)), Err(TcError::InvalidHandle));
        assert_eq!(check_delete(h1, None), Ok(()));
    }

    #[test]
    fn automatic_handles_count_from_8001_and_skip_those_in_use() {
        let a = AutoHandle::default();
        assert_eq!(a.next(|_| false), 0x8001 << 16);
        assert_eq!(a.next(|h| h == 0x8002 << 16), 0x8003 << 16);
        assert_eq!(Handle(0x8003 << 16).to_string(), "8003:");
        assert_eq!(Handle((1 << 16) | 1).to_string(), "1:1");
    }
}
