// SPDX-License-Identifier: GPL-2.0

//! Per-cache state: the request queue and the allocator of object ids.
//!
//! The queue ([`Queue`]) is an XArray indexed by msg_id. Requests the daemon
//! has not read yet carry the NEW mark. Everything here that looks at the
//! queue does it under the queue lock; requests taken out are completed
//! after it is dropped (a [`Taken`] or a [`Batch`] is only ever returned out
//! of the critical section).
//!
//! Failing many requests at once (the cache dies, an object is withdrawn, an
//! anonymous fd is released) is one pass over the queue: each critical
//! section takes out up to [`BATCH`] requests into a [`Batch`], walking the
//! queue with the XArray's cursor, and the walk resumes at the first request
//! not taken, so failing k of n queued requests costs O(n), with the
//! completions done between critical sections.
//!
//! [`Batch`]: crate::request::queue::Batch
//! [`BATCH`]: crate::request::queue::BATCH

use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
use kernel::prelude::*;

use crate::{
    abstractions::{error, slim_arc::SlimArc, xarray::IdAllocator},
    object::{OndemandObject, ReopenCount},
    request::{
        queue::{Cancelled, Queue, QueueGuard},
        CopiedMsg, Identity, Opcode, ReqBorrow, ReqHandle, ReqRef, Taken, Waiter,
    },
    stats::CacheStats,
    Object, ObjectView,
};

/// What a daemon `read()` is to deliver.
pub(crate) enum Selected {
    /// An OPEN, with its msg_id: its message is written with an anonymous
    /// fd made outside the lock, so the request is held.
    Open(u32, ReqRef),
    /// A READ or a CLOSE, with its msg_id: its message, and what
    /// recognises the request if it must be completed after the copy.
    Copied(u32, CopiedMsg, Identity),
}

/// State under the queue lock.
pub(crate) struct QueueState {
    /// Where the next daemon read starts looking (fair, cyclic selection).
    read_next: usize,
    /// Set by `flush`: nothing may be queued any more.
    dead: bool,
}

type Guard<'a> = QueueGuard<'a, QueueState>;

/// The on-demand backend's state of a cache (the data of a [`Cache`]).
#[pin_data]
pub(crate) struct OndemandCache {
    #[pin]
    reqs: Queue<QueueState>,
    /// Object ids handed to the daemon: 1..=INT_MAX, cyclic.
    #[pin]
    ids: IdAllocator,
    /// A copy of the queue's `dead` flag, read without the lock where a
    /// stale answer only costs work the locked check then undoes.
    dead_hint: AtomicBool,
    /// How many of the cache's objects are reopening.
    reopening: ReopenCount,
}

impl OndemandCache {
    /// Creates the state of a cache being bound, with its counters.
    pub(crate) fn new() -> Result<Pin<KBox<Self>>> {
        let stats = CacheStats::new()?;
        KBox::pin_init(
            pin_init!(Self {
                reqs <- Queue::new(
                    QueueState {
                        read_next: 0,
                        dead: false,
                    },
                    stats
                ),
                ids <- IdAllocator::new(1, i32::MAX as u32),
                dead_hint: AtomicBool::new(false),
                reopening: ReopenCount::new(),
            }),
            GFP_KERNEL,
        )
    }

    /// Returns the allocator of the object ids handed to the daemon.
    pub(crate) fn ids(&self) -> &IdAllocator {
        &self.ids
    }

    /// Returns whether some request is NEW, without the lock (see
    /// [`Queue::has_new`]).
    pub(crate) fn has_new(&self) -> bool {
        self.reqs.has_new()
    }

    /// Returns the count of the cache's objects that are reopening, which
    /// every change of an object's state updates.
    pub(crate) fn reopening(&self) -> &ReopenCount {
        &self.reopening
    }

    /// Queues `waiter`'s request, `queued` being the queue's reference to it,
    /// under a new msg_id (cyclic, so a freed id is not reused at once) and
    /// marks it NEW; returns the msg_id.
    ///
    /// Fails with `EIO` if the cache is dead or the object refuses the
    /// request; the check and the store are one critical section, so nothing
    /// is queued after `flush` or `drop_object` went through the queue.
    #[inline(always)]
    pub(crate) fn enqueue(&self, waiter: &Waiter<'_>, queued: ReqRef) -> Result<u32> {
        let mut q = self.reqs.lock();
        let inserted = q.insert(queued)?;
        // `insert` may have dropped the lock before storing: check now, in
        // the critical section of the store.
        let refused = inserted.data().dead || {
            let req = waiter.request();
            !req.object().data().accepts(req)
        };
        if refused {
            // Still ours: nobody saw it. The queue's reference is dropped
            // under the lock, the sender's, the last, when its loan ends.
            inserted.withdraw();
            return Err(EIO);
        }
        Ok(inserted.publish())
    }

    /// Takes `waiter`'s request `id` back out of the queue, uncompleted, if
    /// it is still there (see [`QueueGuard::cancel`]); else gives `waiter`
    /// back, to wait for its completion.
    #[inline(always)]
    pub(crate) fn cancel<'w>(
        &self,
        id: u32,
        waiter: Waiter<'w>,
    ) -> core::result::Result<Cancelled, Waiter<'w>> {
        self.reqs.lock().cancel(id as usize, waiter)
    }

    /// Takes request `id` out of the queue if it is still `req`.
    pub(crate) fn take_if_same(&self, id: u32, req: &ReqRef) -> Option<Taken<'_>> {
        self.take_if(id as usize, |r| SlimArc::ptr_eq(req, r))
    }

    /// Takes request `id` out of the queue if `pred` accepts it.
    pub(crate) fn take_if(
        &self,
        id: usize,
        pred: impl FnOnce(&ReqBorrow<'_>) -> bool,
    ) -> Option<Taken<'_>> {
        let mut q = self.reqs.lock();
        if !q.get(id).is_some_and(|r| pred(&r)) {
            return None;
        }
        q.take(id)
    }

    /// Takes out every request (only NEW ones if `ONLY_NEW`) that `pred`
    /// accepts, in one pass, and completes them with `result` outside the
    /// lock. `first` runs at the start of the first critical section, so
    /// that a state change and the first batch are atomic.
    ///
    /// In line up to the first request found: most drains find none (an fd
    /// released after its CLOSE was read, an object withdrawn with nothing
    /// queued), and then build no batch and no frame for one.
    #[inline(always)]
    fn drain<const ONLY_NEW: bool>(
        &self,
        pred: impl Fn(&ReqBorrow<'_>) -> bool,
        first: impl FnOnce(&mut Guard<'_>),
        result: i32,
    ) {
        let mut q = self.reqs.lock();
        first(&mut q);
        if let Some((at, _)) = find_first(&q, 0, usize::MAX, ONLY_NEW, &pred) {
            self.drain_from::<ONLY_NEW>(q, at, &pred, result);
        }
    }

    /// The rest of [`Self::drain`], from request `at`, which `pred` accepts,
    /// in the critical section `q` of the drain's start.
    ///
    /// Each critical section takes up to [`BATCH`] requests into a batch,
    /// walking the queue with one cursor, which completes them once the lock
    /// is dropped; the next one takes up the walk where the last stopped.
    ///
    /// [`BATCH`]: crate::request::queue::BATCH
    #[inline(never)]
    fn drain_from<'a, const ONLY_NEW: bool>(
        &'a self,
        mut q: Guard<'a>,
        mut at: usize,
        pred: &impl Fn(&ReqBorrow<'_>) -> bool,
        result: i32,
    ) {
        let mut batch = q.batch();
        loop {
            let resume = q.take_into::<ONLY_NEW>(at, pred, &mut batch);
            drop(q);
            batch.finish(result);
            // Requests may leave or come meanwhile: the walk goes on from
            // where the full batch stopped, and finds what is there then.
            let Some(from) = resume else {
                batch.dismiss();
                return;
            };
            at = from;
            q = self.reqs.lock();
        }
    }

    /// Picks the request for a daemon `read()` of `buflen` bytes: the first
    /// NEW one from where the last read stopped, cyclically, skipping READs
    /// on objects being reopened (and starting the reopening of closed ones).
    ///
    /// `EMSGSIZE` if it does not fit; it then stays NEW. Takes the queue
    /// lock: the caller first skips it if nothing is NEW ([`Self::has_new`]).
    #[inline(always)]
    pub(crate) fn select(&self, buflen: usize) -> Result<Option<Selected>> {
        let mut q = self.reqs.lock();
        let next = q.data().read_next;
        let reopening = &self.reopening;
        let found = find_ready(&q, next, usize::MAX, reopening).or_else(|| {
            next.checked_sub(1)
                .and_then(|max| find_ready(&q, 0, max, reopening))
        });
        let Some((id, req)) = found else {
            return Ok(None);
        };
        if req.msg_len() > buflen {
            return Err(error::emsgsize());
        }
        q.clear_new(id);
        // msg_ids are allocated in `0..=u32::MAX`.
        let msg_id = id as u32;
        let object_id = req.object().data().ondemand_id() as u32;
        let selected = match req.copy_msg(msg_id, object_id) {
            Some(msg) => Selected::Copied(msg_id, msg, req.identity()),
            None => Selected::Open(msg_id, req.into()),
        };
        q.data_mut().read_next = id.saturating_add(1);
        Ok(Some(selected))
    }

    /// Returns whether a daemon `read()` would find something (for `poll()`).
    ///
    /// Without the queue lock unless an object is reopening: then any NEW
    /// request would do. The answer may be out of date when it is used,
    /// as with the lock: whatever changes it after this wakes the daemon.
    pub(crate) fn has_ready(&self) -> bool {
        if !self.reqs.has_new() {
            return false;
        }
        self.reopening.is_zero() || self.has_ready_locked()
    }

    /// `has_ready` while an object is reopening: a walk under the lock, out
    /// of line so that the common case builds no frame for it.
    #[inline(never)]
    fn has_ready_locked(&self) -> bool {
        let q = self.reqs.lock();
        find_first(&q, 0, usize::MAX, true, |r| {
            r.opcode() != Opcode::Read || !r.object().data().is_reopening()
        })
        .is_some()
    }

    /// Marks every queued request NEW again (daemon failover).
    pub(crate) fn restore(&self) {
        let q = self.reqs.lock();
        let mut start = 0;
        while let Some((i, _)) = q.find(start, usize::MAX, false) {
            q.mark_new(i);
            let Some(next) = i.checked_add(1) else { break };
            start = next;
        }
    }

    /// Returns whether `flush` ran: the cache is dead.
    ///
    /// cachefiles flushes right after it marks the cache dead (devnode
    /// release, I/O error), so this is its own dead flag as seen here.
    /// Without the queue lock: a request made just after a concurrent
    /// `flush` is refused when it is queued, under the lock.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead_hint.load(Relaxed)
    }

    /// Refuses new requests and fails queued ones with `EIO`: the cache is dead.
    ///
    /// Never sleeps, and may be called any number of times, concurrently:
    /// the requests it completes are woken, and their waiters, not this,
    /// drop the last references to them.
    pub(crate) fn flush(&self) {
        self.drain::<false>(
            |_| true,
            |q| {
                q.data_mut().dead = true;
                self.dead_hint.store(true, Relaxed);
            },
            EIO.to_errno(),
        );
    }

    /// Refuses `object`'s new requests and fails its queued ones with `EIO`:
    /// it is withdrawn.
    pub(crate) fn drop_object(&self, object: ObjectView<'_>) {
        let target: &Object = &object;
        self.drain::<false>(
            move |r| r.is_for(target),
            |_| object.data().set_dropping(&self.reopening),
            EIO.to_errno(),
        );
    }

    /// Closes `object` and completes the CLOSE made for its anonymous fd
    /// `object_id`, if the daemon has not read it, in one critical section:
    /// that fd is released. A CLOSE for a later fd of the same object (after
    /// a reopen) is left alone.
    ///
    /// In line: it runs in the fd's release (`anon_fd::release_id`, in line
    /// there too, and in the cold `release_unmade`).
    #[inline(always)]
    pub(crate) fn release_fd(&self, object: ObjectView<'_>, object_id: u32) {
        let target: &Object = &object;
        self.drain::<true>(
            move |r| r.close_id() == Some(object_id) && r.is_for(target),
            |_| object.data().release_id(&self.reopening),
            0,
        );
    }
}

/// Returns the first request in `start..=max` (only NEW ones if `only_new`)
/// that `pred` accepts, with its index: every search of the queue walks
/// it this way.
#[inline(always)]
fn find_first<'q>(
    q: &'q Guard<'_>,
    start: usize,
    max: usize,
    only_new: bool,
    pred: impl Fn(&ReqBorrow<'_>) -> bool,
) -> Option<(usize, ReqBorrow<'q>)> {
    let mut at = start;
    while let Some((i, r)) = q.find(at, max, only_new) {
        if pred(&r) {
            return Some((i, r));
        }
        at = i.checked_add(1)?;
    }
    None
}

/// Returns the first NEW request in `start..=max` the daemon may be given;
/// `reopening` is the cache's count.
// Inline: the two call sites in `select` are the daemon's every read.
#[inline(always)]
fn find_ready<'q>(
    q: &'q Guard<'_>,
    start: usize,
    max: usize,
    reopening: &ReopenCount,
) -> Option<(usize, ReqBorrow<'q>)> {
    find_first(q, start, max, true, |r| {
        r.opcode() != Opcode::Read || OndemandObject::ready_for_read(r.object().view(), reopening)
    })
}
