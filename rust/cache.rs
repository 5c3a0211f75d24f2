// SPDX-License-Identifier: GPL-2.0

//! Per-cache state: the request queue and the allocator of object ids.
//!
//! The queue is an XArray indexed by msg_id. Requests the daemon has not read
//! yet carry the NEW mark. Everything here that looks at the queue does it
//! under the queue lock; requests taken out are completed after it is
//! dropped (a [`Taken`] is only ever returned out of the critical section).
//!
//! Failing many requests at once (the cache dies, an object is withdrawn, an
//! anonymous fd is released) is one pass over the queue: each critical
//! section takes out up to [`DRAIN_BATCH`] requests and the scan resumes
//! after the last index seen, so failing k of n queued requests costs O(n),
//! with the completions done between critical sections.

use kernel::{prelude::*, sync::Arc};

/// How a cache's state is kept in the cache.
pub(crate) type CacheData = Pin<KBox<CacheState>>;

use crate::{
    errno,
    object::ObjectInfo,
    request::{Opcode, Request, Taken},
    stats::{CacheStats, Stats},
    xarray::{Guard, IdAllocator, Mark, XArray},
    CacheRef, Obj,
};

/// Requests not read by the daemon yet.
const NEW: Mark = Mark::MARK_1;

/// How many requests one critical section of a drain takes out at most.
const DRAIN_BATCH: usize = 16;

/// State under the queue lock.
pub(crate) struct QueueState {
    /// Where the next daemon read starts looking (fair, cyclic selection).
    read_next: usize,
    /// Set by `flush`: nothing may be queued any more.
    dead: bool,
}

type Queue<'a> = Guard<'a, Arc<Request>, QueueState>;

/// The backend state of a cache.
#[pin_data]
pub(crate) struct CacheState {
    #[pin]
    reqs: XArray<Arc<Request>, QueueState>,
    /// Object ids handed to the daemon: 1..=INT_MAX, cyclic.
    #[pin]
    ids: IdAllocator,
    /// This cache's statistics.
    stats: CacheStats,
}

impl CacheState {
    pub(crate) fn new() -> Result<CacheData> {
        let stats = CacheStats::new()?;
        KBox::pin_init(
            pin_init!(Self {
                reqs <- XArray::new(QueueState {
                    read_next: 0,
                    dead: false,
                }),
                ids <- IdAllocator::new(1, i32::MAX as u32),
                stats,
            }),
            GFP_KERNEL,
        )
    }

    pub(crate) fn ids(&self) -> &IdAllocator {
        &self.ids
    }

    pub(crate) fn stats(&self) -> &Stats {
        self.stats.get()
    }

    /// Queues `req` under a new msg_id (cyclic, so a freed id is not reused
    /// at once) and marks it NEW.
    ///
    /// Fails with `EIO` if the cache is dead or the object refuses the
    /// request; the check and the store are one critical section, so nothing
    /// is queued after `flush` or `drop_object` went through the queue.
    pub(crate) fn enqueue(&self, cache: &CacheRef, req: &Arc<Request>) -> Result<u32> {
        let mut q = self.reqs.lock();
        let id = match q.alloc_cyclic(req.clone(), 0, u32::MAX) {
            Ok(id) => id,
            // Not the last reference (the caller holds `req`): fine to drop here.
            Err((_clone, e)) => return Err(e),
        };
        // `alloc_cyclic` may have dropped the lock before storing: check now,
        // in the critical section of the store.
        let refused = q.data().dead || cache.is_dead() || !req.object().data().accepts(req);
        if refused {
            // Still ours: nobody saw it. Not the last reference either.
            let _clone = q.remove(id as usize);
            return Err(EIO);
        }
        q.set_mark(id as usize, NEW);
        self.stats().request_queued(req.opcode());
        Ok(id)
    }

    /// Takes request `id` out of the queue if it is still `req`.
    pub(crate) fn take_if_same(&self, id: u32, req: &Arc<Request>) -> Option<Taken> {
        self.take_if(id as usize, |r| core::ptr::eq::<Request>(r, &**req))
    }

    /// Takes request `id` out of the queue if `pred` accepts it.
    pub(crate) fn take_if(&self, id: usize, pred: impl FnOnce(&Request) -> bool) -> Option<Taken> {
        let mut q = self.reqs.lock();
        if !q.get(id).is_some_and(|r| pred(&r)) {
            return None;
        }
        q.remove(id).map(Taken::new)
    }

    /// Takes out every request (only NEW ones if `only_new`) that `pred`
    /// accepts, in one pass, and completes them with `result` outside the
    /// lock. `first` runs at the start of the first critical section, so
    /// that a state change and the first batch are atomic.
    fn drain(
        &self,
        only_new: bool,
        pred: impl Fn(&Request) -> bool,
        first: impl FnOnce(&mut Queue<'_>),
        result: i32,
    ) {
        let mark = only_new.then_some(NEW);
        let mut first = Some(first);
        let mut start = Some(0usize);
        while let Some(from) = start {
            let mut batch: [Option<Taken>; DRAIN_BATCH] = Default::default();
            {
                let mut q = self.reqs.lock();
                if let Some(first) = first.take() {
                    first(&mut q);
                }
                start = None;
                let mut at = from;
                let mut n = 0;
                while let Some((i, r)) = q.find(at, usize::MAX, mark) {
                    if pred(&r) {
                        let Some(slot) = batch.get_mut(n) else {
                            // Full: the next critical section goes on from here.
                            start = Some(i);
                            break;
                        };
                        *slot = q.remove(i).map(Taken::new);
                        n += 1;
                    }
                    let Some(next) = i.checked_add(1) else { break };
                    at = next;
                }
            }
            for taken in batch.iter_mut().filter_map(Option::take) {
                taken.finish(result);
            }
        }
    }

    /// Picks the request for a daemon `read()` of `buflen` bytes: the first
    /// NEW one from where the last read stopped, cyclically, skipping READs
    /// on objects being reopened (and starting the reopening of closed ones).
    ///
    /// `EMSGSIZE` if it does not fit; it then stays NEW.
    pub(crate) fn select(&self, buflen: usize) -> Result<Option<(u32, Arc<Request>)>> {
        let mut q = self.reqs.lock();
        let next = q.data().read_next;
        let found = find_ready(&q, next, usize::MAX)
            .or_else(|| next.checked_sub(1).and_then(|max| find_ready(&q, 0, max)));
        let Some((id, req)) = found else {
            return Ok(None);
        };
        if req.msg_len() > buflen {
            // Not the last reference: the queue holds one.
            return Err(errno::emsgsize());
        }
        q.clear_mark(id, NEW);
        q.data_mut().read_next = id.saturating_add(1);
        Ok(Some((id as u32, req)))
    }

    /// Whether a daemon `read()` would find something (for `poll()`).
    pub(crate) fn has_ready(&self) -> bool {
        let q = self.reqs.lock();
        let mut start = 0;
        while let Some((i, r)) = q.find(start, usize::MAX, Some(NEW)) {
            if r.opcode() != Opcode::Read || !r.object().data().is_reopening() {
                return true;
            }
            let Some(next) = i.checked_add(1) else { break };
            start = next;
        }
        false
    }

    /// Marks every queued request NEW again (daemon failover).
    pub(crate) fn restore(&self) {
        let q = self.reqs.lock();
        let mut start = 0;
        while let Some((i, _)) = q.find(start, usize::MAX, None) {
            q.set_mark(i, NEW);
            let Some(next) = i.checked_add(1) else { break };
            start = next;
        }
    }

    /// The cache is dead: refuse new requests, fail queued ones with `EIO`.
    ///
    /// Never sleeps, and may be called any number of times, concurrently:
    /// the requests it completes are woken, and their waiters, not this,
    /// drop the last references to them.
    pub(crate) fn flush(&self) {
        self.drain(
            false,
            |_| true,
            |q| q.data_mut().dead = true,
            EIO.to_errno(),
        );
    }

    /// `object` is withdrawn: refuse its new requests, fail its queued ones
    /// with `EIO`.
    pub(crate) fn drop_object(&self, object: &Obj) {
        self.drain(
            false,
            |r| r.is_for(object),
            |_| object.data().set_dropping(),
            EIO.to_errno(),
        );
    }

    /// The anonymous fd `object_id` of `object` is released: the object is
    /// closed and the CLOSE made for that fd, if the daemon has not read it,
    /// is complete, in one critical section; a CLOSE for a later fd of the
    /// same object (after a reopen) is left alone.
    pub(crate) fn release_fd(&self, object: &Obj, object_id: u32) {
        self.drain(
            true,
            |r| r.close_id() == Some(object_id) && r.is_for(object),
            |_| object.data().release_id(),
            0,
        );
    }
}

/// The first NEW request in `start..=max` the daemon may be given.
fn find_ready(q: &Queue<'_>, start: usize, max: usize) -> Option<(usize, Arc<Request>)> {
    let mut at = start;
    while let Some((i, r)) = q.find(at, max, Some(NEW)) {
        if r.opcode() != Opcode::Read || ObjectInfo::ready_for_read(r.object()) {
            return Some((i, r.into()));
        }
        at = i.checked_add(1)?;
    }
    None
}
