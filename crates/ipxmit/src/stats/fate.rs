//! Per-message fate of a `send_batch` call: sent, queued, dropped (with
//! the reason) or failed (with the error `sendmmsg` would not report).
//!
//! The kernel has no counterpart: `sendmmsg()` (`net/socket.c`) returns a
//! count, loses the error of any message after the first, and a datagram a
//! qdisc drops is "sent" for UDP without `IP_RECVERR` (`udp_send_skb()`
//! ignores `ENOBUFS`). What `perf trace` and `dropwatch` would have to be
//! combined for, ipxmit records as it goes — only when asked.
//!
//! How: the datagrams of a call that asks are numbered in their
//! `skb_shinfo(skb)->tskey` (the timestamp key `SOF_TIMESTAMPING_OPT_ID`
//! numbers datagrams with; fragments copy it) with a call generation and
//! the message's index. A datagram counts as a frame made when it is
//! numbered, and each fragment past the first when it is cut (the
//! fragmenter's slow path and fraglist, not per frame on the way down).
//! Two places on every frame's way look at its key and do nothing more
//! when it is 0, as it is for every frame of a call that did not ask (one
//! load and a branch each): the driver hand-off (`xmit_one`: a frame is
//! sent) and the drop sites (a frame is dropped, with its reason). The
//! record is this thread's; the call reads it back at its end.
//!
//! **What the fates mean** — the state at the return of the call, as this
//! thread saw it: `Sent` when every frame of the datagram was handed to a
//! driver during the call; `Queued` when one or more still waited at the
//! return (in a qdisc, a driver's requeue or a neighbour's resolution
//! queue: it may still leave, or be dropped later, which the fate does not
//! follow); `Dropped` when one was dropped (the first reason); `Failed`
//! when the call failed on this message (its error); `NotSent` for the
//! messages after the one the call stopped at. A frame another thread's
//! qdisc run sends meanwhile is reported `Queued`.

use std::cell::RefCell;

use super::DropReason;
use crate::error::SendError;

/// Most messages one call tracks (`UIO_MAXIOV`, which also caps the
/// kernel's `sendmmsg`).
pub const MAX_TRACKED: usize = 1024;
/// Bits of a key that number the message (1-based; 0 is "untracked").
const INDEX_BITS: u32 = 11;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;

/// What became of one message of a `send_batch` call; see the module
/// documentation for when each holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MsgFate {
    /// Not attempted: the call stopped at an earlier message.
    #[default]
    NotSent,
    /// Every frame handed to a driver before the call returned.
    Sent,
    /// Taken by the stack, and at the return still waiting (qdisc,
    /// requeue, neighbour resolution).
    Queued,
    /// Dropped in the stack, for this reason (the call may still have
    /// counted it sent, as UDP without `IP_RECVERR` does).
    Dropped(DropReason),
    /// The call failed on this message with this error.
    Failed(SendError),
}

impl MsgFate {
    /// A short name: `sent`, `queued`, `dropped`, `failed`, `not-sent`.
    pub const fn name(&self) -> &'static str {
        match self {
            MsgFate::NotSent => "not-sent",
            MsgFate::Sent => "sent",
            MsgFate::Queued => "queued",
            MsgFate::Dropped(_) => "dropped",
            MsgFate::Failed(_) => "failed",
        }
    }
}

/// One tracked message's frames.
#[derive(Clone, Copy, Debug, Default)]
struct Track {
    made: u32,
    sent: u32,
    drop: Option<DropReason>,
}

/// This thread's record of the call being tracked.
#[derive(Debug, Default)]
struct Log {
    gen: u32,
    active: bool,
    tracks: Vec<Track>,
}

thread_local! {
    static LOG: RefCell<Log> = RefCell::new(Log::default());
}

/// Starts tracking a call of `n` messages (at most [`MAX_TRACKED`]) on
/// this thread; returns the key base: message `i` is keyed `base | (i + 1)`.
/// The record's room is kept from call to call.
pub(crate) fn begin(n: usize) -> u32 {
    LOG.with(|l| {
        let mut l = l.borrow_mut();
        l.gen = (l.gen + 1) & (u32::MAX >> INDEX_BITS);
        l.gen = l.gen.max(1);
        l.active = true;
        l.tracks.clear();
        l.tracks.resize(n.min(MAX_TRACKED), Track::default());
        l.gen << INDEX_BITS
    })
}

/// Ends tracking: `fates[i]` becomes what message `i`'s frames came to
/// (messages with no frame keep theirs).
pub(crate) fn end(fates: &mut [MsgFate]) {
    LOG.with(|l| {
        let mut l = l.borrow_mut();
        l.active = false;
        for (f, t) in fates.iter_mut().zip(&l.tracks) {
            if let Some(r) = t.drop {
                *f = MsgFate::Dropped(r);
            } else if t.made > 0 || t.sent > 0 {
                *f = if t.sent >= t.made {
                    MsgFate::Sent
                } else {
                    MsgFate::Queued
                };
            }
        }
    });
}

/// The key of message `i` of the call whose base is `base`; 0 (untracked)
/// past [`MAX_TRACKED`].
pub(crate) fn key(base: u32, i: usize) -> u32 {
    if i < MAX_TRACKED {
        base | (i as u32 + 1)
    } else {
        0
    }
}

/// The track of `key` in this thread's active record, if it is one.
fn with_track(key: u32, f: impl FnOnce(&mut Track)) {
    LOG.with(|l| {
        let Ok(mut l) = l.try_borrow_mut() else {
            return;
        };
        if !l.active || key >> INDEX_BITS != l.gen {
            return;
        }
        let i = (key & INDEX_MASK) as usize;
        if let Some(t) = i.checked_sub(1).and_then(|i| l.tracks.get_mut(i)) {
            f(t);
        }
    });
}

/// A frame keyed `key` was made: the datagram when it is numbered, each
/// fragment past the first when it is cut.
#[inline(always)]
pub fn made(key: u32) {
    made_n(key, 1);
}

/// `n` frames keyed `key` were made.
#[inline(always)]
pub fn made_n(key: u32, n: u32) {
    if key != 0 && n != 0 {
        with_track(key, |t| t.made += n);
    }
}

/// A frame keyed `key` was handed to a driver.
#[inline(always)]
pub fn sent(key: u32) {
    if key != 0 {
        with_track(key, |t| t.sent += 1);
    }
}

/// A frame (or what was left of a datagram) keyed `key` was dropped.
#[inline(always)]
pub fn dropped(key: u32, reason: DropReason) {
    if key != 0 {
        with_track(key, |t| {
            t.drop.get_or_insert(reason);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_an_old_call_are_ignored_and_fates_follow_the_frames() {
        let old = key(begin(2), 0);
        end(&mut []);
        let base = begin(4);
        made(old);
        sent(old);
        made(key(base, 0));
        sent(key(base, 0));
        made(key(base, 1));
        made(key(base, 2));
        dropped(key(base, 2), DropReason::QdiscDrop);
        let mut f = vec![MsgFate::NotSent; 4];
        end(&mut f);
        assert_eq!(
            f,
            [
                MsgFate::Sent,
                MsgFate::Queued,
                MsgFate::Dropped(DropReason::QdiscDrop),
                MsgFate::NotSent
            ]
        );
        sent(key(base, 1));
        assert_eq!(key(base, MAX_TRACKED), 0);
    }
}
