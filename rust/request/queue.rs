// SPDX-License-Identifier: GPL-2.0

//! A cache's request queue: an XArray of requests indexed by msg_id, the NEW
//! mark on those the daemon has not read yet, data of the cache's own under
//! the same lock, and the cache's counters.
//!
//! A request leaves the queue only in a handle that completes it, and only
//! this module can make one: a [`Taken`] ([`QueueGuard::take`], and the
//! queue's `drop` for those still queued then) or a place in a [`Batch`]
//! ([`QueueGuard::take_into`]). The one other way out is its own waiter's,
//! [`QueueGuard::cancel`], which leaves nobody to complete it for.

use core::mem::ManuallyDrop;
use kernel::prelude::*;

use super::{Opcode, ReqBorrow, ReqHandle, ReqRef, Request, Stamp, Stats, Waiter};
use crate::{
    abstractions::{
        array_vec::ArrayVec,
        slim_arc::SlimArc,
        xarray::{Guard, Mark, XArray},
    },
    stats::CacheStats,
    ObjectLoan,
};

/// Requests not read by the daemon yet.
const NEW: Mark = Mark::MARK_1;

/// The requests of a cache, with the cache's data `D` under the queue lock.
#[pin_data(PinnedDrop)]
pub(crate) struct Queue<D> {
    #[pin]
    reqs: XArray<ReqRef, D>,
    /// The cache's counters: requests queued and completed here.
    stats: CacheStats,
}

impl<D> Queue<D> {
    /// Creates an empty queue, counting in `stats`.
    pub(crate) fn new(data: D, stats: CacheStats) -> impl PinInit<Self> {
        pin_init!(Self {
            reqs <- XArray::new(data),
            stats,
        })
    }

    /// Returns whether some request is NEW (not read by the daemon yet),
    /// without the lock: an answer that may be stale, for the daemon's
    /// `read()` and `poll()` to return at once when there is nothing to hand
    /// out (a request queued or restored meanwhile wakes the daemon after it
    /// is marked).
    pub(crate) fn has_new(&self) -> bool {
        self.reqs.is_marked_unlocked(NEW)
    }

    /// Takes the queue lock.
    pub(crate) fn lock(&self) -> QueueGuard<'_, D> {
        QueueGuard {
            q: self.reqs.lock(),
            stats: self.stats.get(),
        }
    }
}

#[pinned_drop]
impl<D> PinnedDrop for Queue<D> {
    /// Completes with `EIO` whatever is still queued (nothing, in practice:
    /// a request holds its object, and a cache outlives its objects), one at
    /// a time, outside the lock, so that no waiter is left asleep.
    fn drop(self: Pin<&mut Self>) {
        loop {
            let taken = {
                let mut q = self.lock();
                let first = q.find(0, usize::MAX, false).map(|(i, _)| i);
                first.and_then(|i| q.take(i))
            };
            match taken {
                Some(taken) => taken.finish(EIO.to_errno()),
                None => break,
            }
        }
    }
}

/// The queue lock, held.
pub(crate) struct QueueGuard<'a, D> {
    q: Guard<'a, ReqRef, D>,
    stats: &'a Stats,
}

impl<'a, D> QueueGuard<'a, D> {
    /// Returns the cache's data under the lock.
    pub(crate) fn data(&self) -> &D {
        self.q.data()
    }

    /// Returns the cache's data under the lock, mutably.
    pub(crate) fn data_mut(&mut self) -> &mut D {
        self.q.data_mut()
    }

    /// Returns request `id`, if queued.
    pub(crate) fn get(&self, id: usize) -> Option<ReqBorrow<'_>> {
        self.q.get(id)
    }

    /// Returns the first request with an id in `start..=max` (NEW only if
    /// `only_new`).
    pub(crate) fn find(
        &self,
        start: usize,
        max: usize,
        only_new: bool,
    ) -> Option<(usize, ReqBorrow<'_>)> {
        self.q.find(start, max, only_new.then_some(NEW))
    }

    /// Marks request `id` NEW: the daemon is to read it (again).
    pub(crate) fn mark_new(&self, id: usize) {
        self.q.set_mark(id, NEW);
    }

    /// Marks request `id` read by the daemon.
    pub(crate) fn clear_new(&self, id: usize) {
        self.q.clear_mark(id, NEW);
    }

    /// Takes request `id` out of the queue: the returned handle completes it.
    pub(crate) fn take(&mut self, id: usize) -> Option<Taken<'a>> {
        let req = self.q.remove(id)?;
        // INVARIANT: `req` was just removed from its queue; nobody else has it
        // as a `Taken`.
        Some(Taken {
            req: Some(req),
            stats: self.stats,
        })
    }

    /// Takes `waiter`'s request, `id`, back out of the queue without
    /// completing it: its waiter, the caller, gives up waiting (a fatal
    /// signal), and nobody else waits for a request. Counted as failed with
    /// `EINTR`. Gives `waiter` back if `id` is not its request any more:
    /// somebody took it out, and completes it.
    #[inline(always)]
    pub(crate) fn cancel<'w>(
        &mut self,
        id: usize,
        waiter: Waiter<'w>,
    ) -> Result<Cancelled, Waiter<'w>> {
        let mine = self
            .q
            .get(id)
            .is_some_and(|r| SlimArc::ptr_eq(waiter.0, &r));
        if !mine {
            return Err(waiter);
        }
        let Some(queued) = self.q.remove(id) else {
            return Err(waiter);
        };
        let (opcode, stamp) = (queued.opcode(), Request::stamp(&queued));
        let read_len = || queued.read_len();
        self.stats
            .request_done(opcode, EINTR.to_errno(), stamp, read_len);
        // INVARIANT: Removed by its waiter, which is not to wait for it again
        // (`Cancelled` took the `Waiter`).
        Ok(Cancelled { queued })
    }

    /// Returns an empty batch, to take requests out of this queue into with
    /// [`Self::take_into`].
    #[inline(always)]
    pub(crate) fn batch(&self) -> Batch<'a> {
        // INVARIANT: Empty.
        Batch {
            reqs: ArrayVec::new(),
            stats: self.stats,
        }
    }

    /// Takes requests out of the queue into `batch`, in index order from
    /// `start` (NEW ones only if `ONLY_NEW`): each that `pred` accepts, until
    /// `batch` is full or no request is left. Returns where to go on when
    /// `batch` filled up: the index of the first request `pred` accepts that
    /// it could not take.
    #[inline(always)]
    pub(crate) fn take_into<const ONLY_NEW: bool>(
        &mut self,
        start: usize,
        pred: impl Fn(&ReqBorrow<'_>) -> bool,
        batch: &mut Batch<'a>,
    ) -> Option<usize> {
        let mut cursor = self.q.cursor(start);
        loop {
            let found = cursor.next(usize::MAX, ONLY_NEW.then_some(NEW))?;
            if !pred(&found.get()) {
                continue;
            }
            if batch.reqs.is_full() {
                return Some(found.index());
            }
            // INVARIANT: Just removed from its queue, into `batch` and nowhere
            // else.
            if let Err(req) = batch.reqs.push(found.take()) {
                // Not full, as checked: never here. Completed all the same,
                // as a `Taken` would be.
                Request::complete(req, EIO.to_errno(), batch.stats);
            }
        }
    }

    /// Stores `req` under a new msg_id (cyclic, so a freed id is not reused
    /// at once), not visible to the daemon until [`Inserted::publish`].
    ///
    /// This may drop and retake the lock to allocate memory: anything checked
    /// under the lock before this call must be checked again after it, with
    /// [`Inserted::data`].
    pub(crate) fn insert(&mut self, req: ReqRef) -> Result<Inserted<'_, 'a, D>> {
        let (opcode, stamp) = (req.opcode(), Request::stamp(&req));
        match self.q.alloc_cyclic(req, 0, u32::MAX) {
            // INVARIANT: Stored under `id`, in this critical section.
            Ok(id) => Ok(Inserted {
                guard: self,
                id,
                opcode,
                stamp,
            }),
            // Not the last reference (the caller holds one): fine to drop here.
            Err((_req, e)) => Err(e),
        }
    }
}

/// A request just stored, in the current critical section, and seen by
/// nobody yet: published or withdrawn (never completed) before the lock is
/// released.
///
/// # Invariants
///
/// Entry `id` of the locked queue is the request [`QueueGuard::insert`]
/// stored, not marked NEW, and `opcode` and `stamp` are its own.
pub(crate) struct Inserted<'g, 'a, D> {
    guard: &'g mut QueueGuard<'a, D>,
    id: u32,
    opcode: Opcode,
    stamp: Stamp,
}

impl<D> Inserted<'_, '_, D> {
    /// Returns the cache's data under the lock.
    pub(crate) fn data(&self) -> &D {
        self.guard.data()
    }

    /// Marks the request NEW and counts it; returns its msg_id.
    pub(crate) fn publish(self) -> u32 {
        self.guard.mark_new(self.id as usize);
        self.guard.stats.request_queued(self.opcode, self.stamp);
        self.id
    }

    /// Takes the request back out; it was never queued, so it is not
    /// completed.
    pub(crate) fn withdraw(self) {
        // Not the last reference either: the caller holds one.
        let _req = self.guard.q.remove(self.id as usize);
    }
}

/// A request taken out of its queue: completed when dropped, with `EIO`
/// unless [`Taken::finish`] says otherwise.
///
/// # Invariants
///
/// `req` was removed from its queue by the code that made this handle, the
/// only handle for it, and is `Some` until the request is completed, in
/// `finish` or `drop`; `stats` are the counters of that queue.
pub(crate) struct Taken<'a> {
    req: Option<ReqRef>,
    stats: &'a Stats,
}

impl Taken<'_> {
    /// Returns the request's object.
    pub(crate) fn object(&self) -> Option<&ObjectLoan> {
        self.req.as_ref().map(|r| r.object())
    }

    /// Completes the request with `result`: 0 or a negative errno.
    #[inline]
    pub(crate) fn finish(self, result: i32) {
        // Completed here rather than by `drop`, which is then not called: the
        // caller's frame gets no drop of a field it cannot see is empty.
        // Nothing else in `self` needs dropping.
        let mut this = ManuallyDrop::new(self);
        if let Some(req) = this.req.take() {
            Request::complete(req, result, this.stats);
        }
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if let Some(req) = self.req.take() {
            Request::complete(req, EIO.to_errno(), self.stats);
        }
    }
}

/// A request its waiter took back out of the queue ([`QueueGuard::cancel`]),
/// never to be completed: the queue's reference.
pub(crate) struct Cancelled {
    queued: ReqRef,
}

impl Cancelled {
    /// Hands the queue's reference back to the sender, which drops it with
    /// its own when the request's loan ends, usually the last two, in one
    /// go; returns the waiter's error, `EINTR`.
    #[inline(always)]
    pub(crate) fn finish(self) -> Error {
        SlimArc::hand_back(self.queued);
        EINTR
    }
}

/// How many requests a [`Batch`] holds.
///
/// Each full batch costs the drain a critical section more (an unlock, a
/// lock and a new cursor, about 40 instructions): 64 spreads that over
/// twice as many requests as 32 did, for 512 bytes of the drain's frame
/// (`drain_from`'s is 616 bytes in all, a function that calls only the
/// XArray's, the lock's, `complete()` and the counters').
pub(crate) const BATCH: usize = 64;

/// Requests taken out of their queue in one critical section, to be
/// completed together after it: with `EIO` when dropped, unless
/// [`Batch::finish`] says otherwise.
///
/// # Invariants
///
/// `reqs` are requests removed from the queue whose counters are `stats`,
/// each by [`QueueGuard::take_into`], which put it here and nowhere else.
pub(crate) struct Batch<'a> {
    reqs: ArrayVec<ReqRef, BATCH>,
    stats: &'a Stats,
}

impl Batch<'_> {
    /// Completes every request of the batch with `result` (0 or a negative
    /// errno), which leaves it empty.
    #[inline(always)]
    pub(crate) fn finish(&mut self, result: i32) {
        let stats = self.stats;
        self.reqs
            .take_each(|req| Request::complete(req, result, stats));
    }

    /// Lets go of a batch, which [`Self::finish`] has emptied.
    ///
    /// The drop's own test would cost an out-of-line call that the compiler
    /// keeps after the drain's loop; this test is in line. A batch that is
    /// not empty is dropped, and so completed, as any other.
    #[inline(always)]
    pub(crate) fn dismiss(self) {
        if self.reqs.is_empty() {
            core::mem::forget(self);
        }
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if !self.reqs.is_empty() {
            self.finish(EIO.to_errno());
        }
    }
}
