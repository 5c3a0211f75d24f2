// SPDX-License-Identifier: GPL-2.0

//! Requests: the messages sent to the daemon, and how they are completed.
//!
//! A request is shared (`SlimArc`) by the thread waiting for it, the cache's queue
//! and, transiently, the daemon's `read()` of an OPEN. Its sender lends it
//! the object it is about ([`Request::send`]): the request takes no
//! reference on the object unless it outlives its sender's wait. Whoever
//! takes it out of the queue
//! gets a [`Taken`] or puts it in a [`Batch`], the only ways to complete a
//! request, which only the queue ([`queue`]) can make: a request is
//! completed exactly once, and a taken request is always completed (with
//! `EIO` unless told otherwise) even on early returns. The one exception is
//! the waiter's own: a waiter given up by a fatal signal takes its request
//! back out with its [`Waiter`], which no one else has, and nobody is then
//! left to wake ([`queue::QueueGuard::cancel`]).
//!
//! [`Batch`]: queue::Batch
//!
//! The waiter, not the completer, drops the last reference to a request it
//! was woken for (and so, possibly, the last reference to its object, which
//! may sleep): completing hands the completer's reference over to the waiter
//! ([`SlimArc::complete_handing_over`]). `flush`, which must not sleep,
//! relies on it.
//!
//! Messages are the UAPI's structures ([`uapi`]), written to the daemon's
//! buffer one after the other with the user-slice writer.

pub(crate) mod queue;

use core::{
    mem::size_of,
    ops::Deref,
    sync::atomic::{AtomicU64, Ordering},
};
use kernel::prelude::*;

pub(crate) use crate::abstractions::cachefiles::uapi::Opcode;
use crate::{
    abstractions::{
        cachefiles::uapi,
        completion::Completion,
        slim_arc::{SlimArc, SlimArcBorrow},
        slim_box::SlimBox,
        uaccess::UserSliceWriter,
    },
    stats::{Stamp, Stats},
    Object, ObjectLoan, ObjectView,
};

/// A counted reference to a request; its header holds the object the
/// request is about, lent by its sender.
pub(crate) type ReqRef = SlimArc<Request, ObjectLoan>;

/// A reference to a request that does not count, valid for `'a`.
pub(crate) type ReqBorrow<'a> = SlimArcBorrow<'a, Request, ObjectLoan>;

/// A reference to a request, counted or not, which reaches the object the
/// request is about.
pub(crate) trait ReqHandle: Deref<Target = Request> {
    /// Returns the object the request is about.
    fn object(&self) -> &ObjectLoan;

    /// Returns whether the request is about `object`.
    fn is_for(&self, object: &Object) -> bool {
        core::ptr::eq::<Object>(&**self.object(), object)
    }
}

impl ReqHandle for ReqRef {
    fn object(&self) -> &ObjectLoan {
        SlimArc::loan(self)
    }
}

impl ReqHandle for ReqBorrow<'_> {
    fn object(&self) -> &ObjectLoan {
        SlimArcBorrow::loan(self)
    }
}

/// Room for the keys of an OPEN: fscache limits a volume key to NAME_MAX
/// characters (plus its NUL) and a cookie key to 255 bytes.
pub(crate) const OPEN_KEYS_MAX: usize = 512;

const _: () =
    assert!(size_of::<uapi::Msg>() + size_of::<uapi::Open>() + OPEN_KEYS_MAX <= uapi::MSG_MAX_SIZE);
const _: () = assert!(OPEN_KEYS_MAX <= u16::MAX as usize);

/// An OPEN's message body, apart from the request so that READs and
/// CLOSEs are not made as large; its box's tail holds the volume key (with
/// its NUL) then the cookie key, in the same allocation.
pub(crate) struct OpenMsg {
    /// The body; its fd is set when the message is written.
    open: uapi::Open,
    /// The msg_id (high half) and object id of the last delivery.
    delivered: AtomicU64,
}

/// The opcode-specific part of a request.
pub(crate) enum Payload {
    /// An OPEN.
    Open(SlimBox<OpenMsg>),
    /// The id of the anonymous fd open when the CLOSE was made: the one
    /// the daemon is to close, and the one whose release makes it moot.
    Close { object_id: u32 },
    /// A READ of `[off, off + len)`: its length fits 32 bits, so that the
    /// payload is 16 bytes.
    Read { off: u64, len: u32 },
}

const _: () = assert!(size_of::<Payload>() <= 16);

impl Payload {
    /// Returns an OPEN carrying the object's keys; `EINVAL` if they do not
    /// fit in a message.
    pub(crate) fn open(volume_key: &[u8], cookie_key: &[u8]) -> Result<Self> {
        let vlen = volume_key.len();
        let total = vlen.checked_add(cookie_key.len()).ok_or(EINVAL)?;
        if total > OPEN_KEYS_MAX {
            return Err(EINVAL);
        }
        let msg = OpenMsg {
            open: uapi::Open {
                volume_key_size: vlen as u32,
                cookie_key_size: cookie_key.len() as u32,
                fd: 0,
                flags: 0,
            },
            delivered: AtomicU64::new(0),
        };
        Ok(Payload::Open(SlimBox::new_with_tail(
            msg,
            [volume_key, cookie_key],
        )?))
    }

    /// Returns a READ of `[off, off + len)`; `EINVAL` if `len` does not
    /// fit 32 bits (erofs never asks for 4 GiB at once).
    pub(crate) fn read(off: u64, len: usize) -> Result<Self> {
        let len = u32::try_from(len).map_err(|_| EINVAL)?;
        Ok(Payload::Read { off, len })
    }

    fn opcode(&self) -> Opcode {
        match self {
            Payload::Open(_) => Opcode::Open,
            Payload::Close { .. } => Opcode::Close,
            Payload::Read { .. } => Opcode::Read,
        }
    }
}

/// The whole message of a READ or a CLOSE, copied out of the request under
/// the queue lock, so that the daemon's `read()` writes it without holding
/// a reference to the request.
///
/// Either is kept as a READ's header and body, a CLOSE's body zero and not
/// written, so that the message is built where it is written from, with no
/// variant to move between the two.
pub(crate) struct CopiedMsg(uapi::ReadMsg);

impl CopiedMsg {
    /// A READ's message.
    fn read(msg: uapi::Msg, read: uapi::Read) -> Self {
        CopiedMsg(uapi::ReadMsg { msg, read })
    }

    /// A CLOSE's message: its header.
    fn close(msg: uapi::Msg) -> Self {
        CopiedMsg(uapi::ReadMsg {
            msg,
            read: uapi::Read { off: 0, len: 0 },
        })
    }

    /// Returns whether this is a CLOSE's message.
    pub(crate) fn is_close(&self) -> bool {
        self.0.msg.opcode == Opcode::Close as u32
    }

    /// Returns the length of the message, as its header says.
    pub(crate) fn len(&self) -> usize {
        self.0.msg.len as usize
    }

    /// Writes the message, in one copy.
    pub(crate) fn write(&self, w: &mut UserSliceWriter) -> Result {
        if self.is_close() {
            w.write(&self.0.msg)
        } else {
            w.write(&self.0)
        }
    }
}

/// The sender's reference to its request, borrowed: the one that waits for
/// it.
///
/// Not cloneable, and made only by [`Request::send`]: the only reference
/// that may take its request back out of the queue without completing it
/// ([`queue::QueueGuard::cancel`]), as nobody else waits for it.
pub(crate) struct Waiter<'a>(&'a ReqRef);

impl Waiter<'_> {
    /// Returns the request.
    pub(crate) fn request(&self) -> &ReqRef {
        self.0
    }

    /// Waits for the request to be completed, or a fatal signal.
    pub(crate) fn wait_killable(&self) -> Result {
        self.0.done.wait_for_completion_killable()
    }

    /// Waits for the request to be completed.
    pub(crate) fn wait(&self) {
        self.0.done.wait_for_completion()
    }

    /// Returns the outcome of the completed request, once a wait returned.
    #[inline(always)]
    pub(crate) fn result(self) -> Result {
        match self.0.outcome().result() {
            Some(0) => Ok(()),
            // The errno that fails requests in bulk (the cache's death, a
            // withdrawal), in line: each of those waiters takes this path.
            Some(err) if err == EIO.to_errno() => Err(EIO),
            Some(err) => Err(failure(err)),
            // Not completed: not reached, as the wait returned.
            None => Err(EIO),
        }
    }
}

/// The address of a request: only ever compared, never followed.
///
/// A request found again in its queue under the same msg_id and at the same
/// address is the one that was there before, unless it was completed, freed,
/// and another one allocated at its address under the same msg_id in the
/// meantime, which needs the cyclic msg_ids to wrap around in between.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity(usize);

/// A request to the daemon about one object, which its [`SlimArc`]'s
/// header holds ([`ReqHandle::object`]).
///
/// # Invariants
///
/// - The request's outcome (kept by its [`SlimArc`]) is given the result
///   and the completer's reference, and `done` completed, once, by the
///   [`Taken`] or [`queue::Batch`] that removed the request from its queue
///   (the only code that can), and the waiter drops that reference when its
///   loan of the object ends ([`Request::send`]); or never, if the waiter
///   itself removed it ([`queue::Cancelled`]), after which it waits no
///   more. Until then the outcome holds the request's [`Stamp`].
/// - The message is at most [`uapi::MSG_MAX_SIZE`] bytes.
#[pin_data]
pub(crate) struct Request {
    payload: Payload,
    #[pin]
    done: Completion,
}

// A request is allocated in 64 bytes with its header (`SlimArc`, with the
// lent object), where locks carry no debugging state: `kmalloc-64`, the
// class of the built-in code's CLOSE (`struct cachefiles_req`, 64 bytes),
// one below its READ's (80 bytes with the message's body, `kmalloc-96`).
#[cfg(not(any(CONFIG_DEBUG_SPINLOCK, CONFIG_DEBUG_LOCK_ALLOC)))]
const _: () = assert!(ReqRef::alloc_size() <= 64);

impl Request {
    /// Makes a request about `object` carrying `payload`, lent the object,
    /// and runs `f` with the sender's [`Waiter`] and the reference the queue
    /// is to hold ([`OndemandCache::enqueue`]); returns what `f` returned,
    /// or `ENOMEM` if the request could not be made.
    ///
    /// [`OndemandCache::enqueue`]: crate::cache::OndemandCache::enqueue
    #[inline(always)]
    pub(crate) fn send(
        object: ObjectView<'_>,
        payload: Payload,
        f: impl FnOnce(Waiter<'_>, ReqRef) -> Result,
    ) -> Result<Result> {
        // INVARIANT: Not completed; an OPEN's keys fit (`Payload::open`).
        let init = pin_init!(Request {
            payload,
            done <- Completion::new(),
        });
        // The reference a completer hands over is dropped with the sender's
        // when the loan ends, in a context that may sleep.
        object.lend(init, Stamp::new().mark(), |req, queued| {
            f(Waiter(req), queued)
        })
    }

    /// Returns the request's opcode.
    pub(crate) fn opcode(&self) -> Opcode {
        self.payload.opcode()
    }

    /// Returns whether and when the request is counted (statistics).
    pub(crate) fn stamp(this: &ReqRef) -> Stamp {
        // Pending: in its queue, or just made.
        Stamp::from_mark(this.outcome().mark())
    }

    /// Returns, for a CLOSE, the id of the anonymous fd it is about.
    pub(crate) fn close_id(&self) -> Option<u32> {
        match self.payload {
            Payload::Close { object_id } => Some(object_id),
            _ => None,
        }
    }

    /// Records a delivery of an OPEN with these ids; returns those of the
    /// previous one (zeroes if none, or if this is not an OPEN).
    pub(crate) fn delivered(&self, msg_id: u32, object_id: u32) -> (u32, u32) {
        let Payload::Open(msg) = &self.payload else {
            return (0, 0);
        };
        let now = (u64::from(msg_id) << 32) | u64::from(object_id);
        let last = msg.delivered.swap(now, Ordering::Relaxed);
        ((last >> 32) as u32, last as u32)
    }

    /// Returns the bytes a READ asks for; 0 for another request.
    fn read_len(&self) -> u64 {
        match &self.payload {
            Payload::Read { len, .. } => u64::from(*len),
            _ => 0,
        }
    }

    /// Returns the length of the message, header included.
    ///
    /// At most [`uapi::MSG_MAX_SIZE`] (the type invariant), so the sums never
    /// saturate; if one did, `usize::MAX` fits no daemon buffer, and the
    /// message would be refused (`EMSGSIZE`), never sent with a wrong length.
    pub(crate) fn msg_len(&self) -> usize {
        size_of::<uapi::Msg>().saturating_add(match &self.payload {
            Payload::Open(msg) => size_of::<uapi::Open>().saturating_add(msg.tail().len()),
            Payload::Close { .. } => 0,
            Payload::Read { .. } => size_of::<uapi::Read>(),
        })
    }

    /// Returns the message of a READ or a CLOSE with these ids (a CLOSE
    /// carries its own object id); `None` for an OPEN, whose message is
    /// written with its anonymous fd ([`Request::write_open_msg`]).
    pub(crate) fn copy_msg(&self, msg_id: u32, object_id: u32) -> Option<CopiedMsg> {
        match &self.payload {
            Payload::Read { off, len } => Some(CopiedMsg::read(
                self.header(msg_id, object_id),
                uapi::Read {
                    off: *off,
                    len: u64::from(*len),
                },
            )),
            Payload::Close { object_id } => Some(CopiedMsg::close(self.header(msg_id, *object_id))),
            Payload::Open(_) => None,
        }
    }

    /// Writes the message of an OPEN with its ids and anonymous fd; nothing
    /// for another request.
    pub(crate) fn write_open_msg(
        &self,
        w: &mut UserSliceWriter,
        msg_id: u32,
        object_id: u32,
        fd: u32,
    ) -> Result {
        let Payload::Open(open) = &self.payload else {
            return Ok(());
        };
        w.write(&uapi::OpenHead {
            msg: self.header(msg_id, object_id),
            open: uapi::Open { fd, ..open.open },
        })?;
        w.write_slice(open.tail())
    }

    /// Returns the message's header with these ids.
    fn header(&self, msg_id: u32, object_id: u32) -> uapi::Msg {
        uapi::Msg {
            len: self.msg_len() as u32,
            ..uapi::Msg::new(self.opcode(), msg_id, object_id)
        }
    }

    /// Returns what tells this request from the others in its queue, to
    /// recognise it later without holding a reference to it.
    pub(crate) fn identity(&self) -> Identity {
        Identity(core::ptr::from_ref(self) as usize)
    }

    /// Completes the request with `result` and wakes its waiter.
    ///
    /// Private to this module and its child [`queue`]: only a [`Taken`] or a
    /// [`queue::Batch`] calls it, once a request, from its `finish` or its
    /// `drop`.
    #[inline]
    fn complete(this: ReqRef, result: i32, stats: &Stats) {
        SlimArc::complete_handing_over(
            this,
            result,
            |r| &r.done,
            |r, mark| {
                let stamp = Stamp::from_mark(mark);
                stats.request_done(r.opcode(), result, stamp, || r.read_len());
            },
        );
    }
}

/// The error of a request completed with errno `err`, other than `EIO`.
///
/// Out of line, so that the success path tests the result alone. `EIO`,
/// the errno that fails requests in bulk, is tested in line before
/// ([`Waiter::result`]): `Error::from_errno` is an out-of-line call in
/// 6.12.
#[cold]
#[inline(never)]
fn failure(err: i32) -> Error {
    Error::from_errno(err)
}

pub(crate) use queue::Taken;
