// SPDX-License-Identifier: GPL-2.0

//! Per-object state, and the requests sent on the netfs side: OPEN when an
//! object is looked up (or reopened), READ on a cache miss, CLOSE when it is
//! withdrawn.
//!
//! States: closed (initial, or anonymous fd released) -> open (copen
//! succeeded) -> closed -> reopening (a READ met it closed; work re-sends the
//! OPEN) -> open ...; dropping (withdrawn) is final.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use kernel::{prelude::*, types::ARef};

use crate::{
    abstractions::error,
    cache::OndemandCache,
    request::{Opcode, Payload, Request, Waiter},
    Object, ObjectView,
};

/// The object id of an object whose anonymous fd was released.
pub(crate) const ID_CLOSED: i32 = -1;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ObjState {
    Close = 0,
    Open = 1,
    Reopening = 2,
    Dropping = 3,
}

#[derive(Clone, Copy)]
struct Inner {
    state: ObjState,
    /// 0: no anonymous fd yet; > 0: the id of the open anonymous fd;
    /// `ID_CLOSED`: the anonymous fd was released.
    id: i32,
}

impl Inner {
    /// Where the state sits in the packed word: above the id.
    const STATE_SHIFT: u32 = 32;

    /// The same id in state `state`.
    fn with_state(self, state: ObjState) -> Self {
        Inner { state, ..self }
    }

    fn pack(self) -> u64 {
        ((self.state as u64) << Self::STATE_SHIFT) | u64::from(self.id as u32)
    }

    /// Returns whether the packed `word` is of an open object, without
    /// unpacking the rest.
    fn packed_is_open(word: u64) -> bool {
        word >> Self::STATE_SHIFT == ObjState::Open as u64
    }

    fn unpack(word: u64) -> Self {
        Inner {
            state: match word >> Self::STATE_SHIFT {
                0 => ObjState::Close,
                1 => ObjState::Open,
                2 => ObjState::Reopening,
                // 3: only `pack` writes the word.
                _ => ObjState::Dropping,
            },
            id: word as u32 as i32,
        }
    }
}

/// How many of a cache's objects are reopening.
///
/// While none is, every NEW request may be handed out, so the daemon's
/// `poll()` answers from the queue's NEW mark alone, without the queue lock
/// or a walk. It is changed with an object's state ([`OndemandObject`]'s
/// `update`), raised before a state entering reopening shows and lowered
/// after one leaving it shows, so it never stays below the number of
/// objects reopening: a `poll()` that reads it as 0 while one is reopening
/// raced with the change, and the daemon's `read()` that follows finds out
/// under the queue lock.
pub(crate) struct ReopenCount(AtomicUsize);

impl ReopenCount {
    pub(crate) const fn new() -> Self {
        ReopenCount(AtomicUsize::new(0))
    }

    /// Whether no object of the cache is reopening.
    pub(crate) fn is_zero(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }

    fn up(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }

    fn down(&self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// The on-demand backend's state of an object (the data of an [`Object`]).
///
/// The state and the anonymous fd's id live packed in one word. Every
/// change is one compare-and-exchange of the whole word ([`Self::update`]),
/// so each is a read-modify-write of both, as under a lock, and the hot
/// paths (queueing a request, the daemon's `read()` and `poll()`) read it
/// with one load.
#[pin_data]
pub(crate) struct OndemandObject {
    word: AtomicU64,
}

impl OndemandObject {
    pub(crate) fn new() -> impl PinInit<Self, Error> {
        let initial = Inner {
            state: ObjState::Close,
            id: 0,
        };
        try_pin_init!(Self {
            word: AtomicU64::new(initial.pack()),
        })
    }

    /// Changes the state with `f`, atomically: `f` is given the state and
    /// returns the new one, or `None` to leave it. Returns the state `f` was
    /// last given. `reopening` is the count of the object's cache.
    ///
    /// `f` may be called again if the state changed meanwhile: it only
    /// computes.
    #[inline(always)]
    fn update(&self, reopening: &ReopenCount, f: impl Fn(Inner) -> Option<Inner>) -> Inner {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let old = Inner::unpack(word);
            let Some(new) = f(old) else {
                return old;
            };
            let was = old.state == ObjState::Reopening;
            let is = new.state == ObjState::Reopening;
            // Counted before the state shows, uncounted after: never below
            // the number of objects reopening.
            if is && !was {
                reopening.up();
            }
            match self
                .word
                .compare_exchange(word, new.pack(), Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if was && !is {
                        reopening.down();
                    }
                    return old;
                }
                Err(now) => {
                    if is && !was {
                        reopening.down();
                    }
                    word = now;
                }
            }
        }
    }

    /// The state as of the last change.
    fn peek(&self) -> Inner {
        Inner::unpack(self.word.load(Ordering::Acquire))
    }

    pub(crate) fn is_open(&self) -> bool {
        // The state alone, compared packed: the daemon's every `read()`
        // asks this of each READ it meets (`ready_for_read`).
        Inner::packed_is_open(self.word.load(Ordering::Acquire))
    }

    pub(crate) fn is_reopening(&self) -> bool {
        self.peek().state == ObjState::Reopening
    }

    /// The object id, as put in messages.
    pub(crate) fn ondemand_id(&self) -> i32 {
        self.peek().id
    }

    /// Whether `req` may be queued: never once dropping, and a CLOSE only
    /// while open with the anonymous fd it was made for.
    pub(crate) fn accepts(&self, req: &Request) -> bool {
        let s = self.peek();
        match req.close_id() {
            Some(id) => s.state == ObjState::Open && i64::from(s.id) == i64::from(id),
            None => s.state != ObjState::Dropping,
        }
    }

    pub(crate) fn set_dropping(&self, reopening: &ReopenCount) {
        self.update(reopening, |s| Some(s.with_state(ObjState::Dropping)));
    }

    /// An OPEN could not be queued: back to closed (unless dropping).
    pub(crate) fn open_not_sent(&self, reopening: &ReopenCount) {
        self.update(reopening, |s| {
            (s.state != ObjState::Dropping).then_some(s.with_state(ObjState::Close))
        });
    }

    /// An OPEN failed before an anonymous fd was made: back to closed, unless
    /// the object has an open anonymous fd (or is dropping).
    pub(crate) fn open_failed(&self, reopening: &ReopenCount) {
        self.update(reopening, |s| {
            (s.id <= 0 && s.state != ObjState::Dropping).then_some(s.with_state(ObjState::Close))
        });
    }

    /// Called under the queue lock when the daemon's read meets a READ for
    /// `object`: whether it may be handed out. A closed object is switched to
    /// reopening and its work queued to send a new OPEN.
    #[inline]
    pub(crate) fn ready_for_read(object: ObjectView<'_>, reopening: &ReopenCount) -> bool {
        let info = object.data();
        // The common case: open (or dropping), or already reopening. A
        // change racing with this read is ordered after it.
        if info.is_open() {
            return true;
        }
        match info.peek().state {
            ObjState::Open | ObjState::Dropping => true,
            ObjState::Reopening => false,
            ObjState::Close => Self::start_reopen(object, reopening),
        }
    }

    /// [`Self::ready_for_read`] for an object seen closed: out of line, as it
    /// is rare and every daemon `read()` checks the state.
    #[inline(never)]
    fn start_reopen(object: ObjectView<'_>, reopening: &ReopenCount) -> bool {
        let old = object.data().update(reopening, |s| {
            (s.state == ObjState::Close).then_some(s.with_state(ObjState::Reopening))
        });
        match old.state {
            ObjState::Close => {
                // The request's sender holds a reference, so the one the
                // queue attempt may drop here is never the last.
                object.queue_work();
                false
            }
            ObjState::Reopening => false,
            ObjState::Open | ObjState::Dropping => true,
        }
    }

    /// Records `id` as the object's anonymous fd; `EEXIST` if it has one.
    pub(crate) fn claim_id(&self, id: u32, reopening: &ReopenCount) -> Result {
        let old = self.update(reopening, |s| {
            (s.id <= 0).then_some(Inner { id: id as i32, ..s })
        });
        if old.id > 0 {
            return Err(EEXIST);
        }
        Ok(())
    }

    /// The anonymous fd is gone: the object is closed (unless dropping).
    /// Called under the queue lock, with the sweep of its CLOSEs.
    pub(crate) fn release_id(&self, reopening: &ReopenCount) {
        self.update(reopening, |s| {
            Some(Inner {
                id: ID_CLOSED,
                state: match s.state {
                    ObjState::Dropping => ObjState::Dropping,
                    _ => ObjState::Close,
                },
            })
        });
    }

    /// A successful copen `msg_id`: record (and trace) the size and open
    /// the object, unless the anonymous fd was closed in the meantime
    /// (`EBADFD`).
    ///
    /// The size is recorded before the object shows open. A release of the
    /// fd racing with this copen between the two can fail the copen after
    /// the size is recorded: the object is closed then, and the copen of
    /// its reopen records the size again.
    ///
    /// Returns whether the object was reopening: only then can the copen
    /// make a queued request ready (a READ of a reopening object waits for
    /// it), and only then does the daemon need waking.
    pub(crate) fn copen(
        &self,
        object: &Object,
        msg_id: u32,
        size: i64,
        reopening: &ReopenCount,
    ) -> Result<bool> {
        if self.peek().id == ID_CLOSED {
            return Err(error::ebadfd());
        }
        object.set_size(msg_id, size);
        let old = self.update(reopening, |s| {
            (s.id != ID_CLOSED && s.state != ObjState::Dropping)
                .then_some(s.with_state(ObjState::Open))
        });
        if old.id == ID_CLOSED {
            return Err(error::ebadfd());
        }
        Ok(old.state == ObjState::Reopening)
    }

    /// After a copen that did not open the object: if the anonymous fd is
    /// gone, the object is closed, not left reopening. (After one that did,
    /// the fd's release, if any, closed it.)
    pub(crate) fn copen_failed(&self, reopening: &ReopenCount) {
        self.update(reopening, |s| {
            (s.id == ID_CLOSED && s.state != ObjState::Dropping)
                .then_some(s.with_state(ObjState::Close))
        });
    }
}

/// Queues a request built by `make` and waits for it to be completed.
///
/// A fatal signal ends the wait with `EINTR` if the request can still be
/// taken back out of the queue; otherwise whoever took it is completing it,
/// and its result is returned.
fn send(object: ObjectView<'_>, opcode: Opcode, make: impl FnOnce() -> Result<Payload>) -> Result {
    let state = object.cache_data();
    // An OPEN that is not sent leaves its object closed (unless dropping).
    let not_sent = |e: Error| {
        if opcode == Opcode::Open {
            object.data().open_not_sent(state.reopening());
        }
        e
    };
    if state.is_dead() {
        return Err(not_sent(EIO));
    }
    let payload = make().map_err(not_sent)?;
    // The built-in code traces a READ or CLOSE as it makes it, before the
    // message has its ids.
    match &payload {
        Payload::Read { off, len } => object.trace_read(0, 0, *off, u64::from(*len)),
        Payload::Close { .. } => object.trace_close(0, 0),
        Payload::Open(_) => {}
    }
    let sent = Request::send(object, payload, |waiter, queued| {
        let id = state.enqueue(&waiter, queued).map_err(not_sent)?;
        pr_debug!("{:?} queued as msg {}\n", opcode, id);
        object.cache().wake_daemon();
        wait(&state, id, waiter)
    });
    let result = sent.map_err(not_sent)?;
    pr_debug!("{:?} done: {:?}\n", opcode, result);
    result
}

/// Waits for request `id`, `waiter`'s, to be completed, or for a fatal
/// signal; returns its result, or `EINTR` if the request could then be
/// taken back out of the queue (otherwise whoever took it is completing
/// it, and is waited for).
#[inline(always)]
fn wait(state: &OndemandCache, id: u32, waiter: Waiter<'_>) -> Result {
    if waiter.wait_killable().is_err() {
        match state.cancel(id, waiter) {
            // Never completed: nobody else waits for it.
            Ok(cancelled) => {
                pr_debug!("msg {} cancelled\n", id);
                return Err(cancelled.finish());
            }
            // Somebody took it out and completes it.
            Err(waiter) => {
                waiter.wait();
                return waiter.result();
            }
        }
    }
    waiter.result()
}

/// `init_object`: send an OPEN and wait for the daemon's copen.
pub(crate) fn init_object(object: ObjectView<'_>) -> Result {
    // A lookup that falls back to a new tmpfile keeps the open object.
    if object.data().is_open() {
        return Ok(());
    }
    send(object, Opcode::Open, || {
        let (volume_key, cookie_key) = object.keys().inspect_err(|_| {
            pr_err!("WANT_CACHE_SIZE is needed for on-demand mode\n");
        })?;
        Payload::open(volume_key, cookie_key)
    })
}

/// `clean_object`: send a CLOSE if open, fail the object's requests, stop
/// its reopen work.
pub(crate) fn clean_object(object: ObjectView<'_>) {
    if object.data().is_open() {
        // Only fails if the object or the cache is going away, or the
        // anonymous fd was released meanwhile: nothing to do.
        let _ = send(object, Opcode::Close, || {
            let object_id = u32::try_from(object.data().ondemand_id()).map_err(|_| EBADF)?;
            Ok(Payload::Close { object_id })
        });
    }
    object.cache_data().drop_object(object);
    object.cancel_work_sync();
}

/// `read`: cache miss on `[pos, pos + len)`.
pub(crate) fn read(object: ObjectView<'_>, pos: i64, len: usize) -> Result {
    send(object, Opcode::Read, || Payload::read(pos as u64, len))
}

/// The reopen work: send a new OPEN for an object whose READs are waiting.
pub(crate) fn reopen(object: ARef<Object>) {
    // The work's object comes without its data: one call into cachefiles.
    let result = init_object(object.view());
    pr_debug!("reopen: {:?}\n", result);
}
