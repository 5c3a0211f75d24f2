// SPDX-License-Identifier: GPL-2.0

//! Requests: the messages sent to the daemon, and how they are completed.
//!
//! A request is shared (`Arc`) by the thread waiting for it, the cache's queue
//! and, transiently, the daemon's `read()`. Whoever takes it out of the queue
//! gets a [`Taken`], the only way to complete a request: a request is
//! completed exactly once, and a taken request is always completed (with
//! `EIO` unless told otherwise) even on early returns.
//!
//! The waiter, not the completer, drops the last reference to a request it
//! was woken for (and so, possibly, the last reference to its object, which
//! may sleep): completing hands the completer's reference over to the waiter
//! ([`Completion::complete_handing_over`]). `flush`, which must not sleep,
//! relies on it.

use core::sync::atomic::{AtomicI32, Ordering};
use kernel::{
    new_spinlock,
    prelude::*,
    sync::{Arc, SpinLock},
    types::ARef,
    uaccess::UserSliceWriter,
};

use crate::{completion::Completion, stats, Obj};

/// `CACHEFILES_MSG_MAX_SIZE`: the largest message.
pub(crate) const MSG_MAX_SIZE: usize = 1024;
/// `struct cachefiles_msg`: msg_id, opcode, len, object_id.
const HDR_SIZE: usize = 16;
/// `struct cachefiles_open`: volume_key_size, cookie_key_size, fd, flags.
const OPEN_HDR_SIZE: usize = 16;
/// `struct cachefiles_read`: off, len.
const READ_SIZE: usize = 16;
/// Room for the keys of an OPEN: fscache limits a volume key to NAME_MAX
/// characters (plus its NUL) and a cookie key to 255 bytes.
pub(crate) const OPEN_KEYS_MAX: usize = 512;

const _: () = assert!(HDR_SIZE + OPEN_HDR_SIZE + OPEN_KEYS_MAX <= MSG_MAX_SIZE);
const _: () = assert!(OPEN_KEYS_MAX <= u16::MAX as usize);

/// `enum cachefiles_opcode`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Opcode {
    Open = 0,
    Close = 1,
    Read = 2,
}

/// The opcode-specific part of a request.
///
/// Inline, so that a request is a single allocation, bounded by the size of
/// the largest message.
#[allow(
    clippy::large_enum_variant,
    reason = "a request is one allocation of bounded size"
)]
pub(crate) enum Payload {
    /// The volume key (with its NUL) then the cookie key, in `keys`.
    Open {
        volume_key_size: u16,
        cookie_key_size: u16,
        keys: [u8; OPEN_KEYS_MAX],
    },
    /// The id of the anonymous fd open when the CLOSE was made: the one
    /// the daemon is to close, and the one whose release makes it moot.
    Close {
        object_id: u32,
    },
    Read {
        off: u64,
        len: u64,
    },
}

impl Payload {
    /// An OPEN carrying the object's keys; `EINVAL` if they do not fit in a message.
    pub(crate) fn open(volume_key: &[u8], cookie_key: &[u8]) -> Result<Self> {
        let vlen = volume_key.len();
        let total = vlen.checked_add(cookie_key.len()).ok_or(EINVAL)?;
        if total > OPEN_KEYS_MAX {
            return Err(EINVAL);
        }
        let mut keys = [0u8; OPEN_KEYS_MAX];
        keys[..vlen].copy_from_slice(volume_key);
        keys[vlen..total].copy_from_slice(cookie_key);
        Ok(Payload::Open {
            volume_key_size: vlen as u16,
            cookie_key_size: cookie_key.len() as u16,
            keys,
        })
    }

    fn opcode(&self) -> Opcode {
        match self {
            Payload::Open { .. } => Opcode::Open,
            Payload::Close { .. } => Opcode::Close,
            Payload::Read { .. } => Opcode::Read,
        }
    }
}

/// A request to the daemon about one object.
#[pin_data]
pub(crate) struct Request {
    object: ARef<Obj>,
    payload: Payload,
    #[pin]
    done: Completion,
    /// 0 or a negative errno, set before `done` is completed.
    result: AtomicI32,
    /// The completer's reference, handed over to the waiter.
    #[pin]
    parked: SpinLock<Option<Arc<Request>>>,
    /// When the request was created, for the latency statistics.
    created_ns: i64,
}

impl Request {
    /// A new request about `object`: the only allocation a request needs.
    pub(crate) fn new(object: ARef<Obj>, payload: Payload) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                object,
                payload,
                done <- Completion::new(),
                result: AtomicI32::new(0),
                parked <- new_spinlock!(None, "Request::parked"),
                created_ns: stats::now_ns(),
            }),
            GFP_KERNEL,
        )
    }

    pub(crate) fn opcode(&self) -> Opcode {
        self.payload.opcode()
    }

    pub(crate) fn object(&self) -> &ARef<Obj> {
        &self.object
    }

    /// For a CLOSE, the id of the anonymous fd it is about.
    pub(crate) fn close_id(&self) -> Option<u32> {
        match self.payload {
            Payload::Close { object_id } => Some(object_id),
            _ => None,
        }
    }

    /// Whether the request is about `object`.
    pub(crate) fn is_for(&self, object: &Obj) -> bool {
        core::ptr::eq::<Obj>(&*self.object, object)
    }

    /// The length of the message, header included.
    pub(crate) fn msg_len(&self) -> usize {
        HDR_SIZE
            + match &self.payload {
                Payload::Open {
                    volume_key_size,
                    cookie_key_size,
                    ..
                } => OPEN_HDR_SIZE + *volume_key_size as usize + *cookie_key_size as usize,
                Payload::Close { .. } => 0,
                Payload::Read { .. } => READ_SIZE,
            }
    }

    /// Writes the message, with the given ids (and anonymous fd for an
    /// OPEN); a CLOSE carries its own object id.
    pub(crate) fn write_msg(
        &self,
        w: &mut UserSliceWriter,
        msg_id: u32,
        object_id: u32,
        fd: u32,
    ) -> Result {
        let mut head = [0u8; HDR_SIZE + OPEN_HDR_SIZE];
        let mut put = |at: usize, v: &[u8]| head[at..at + v.len()].copy_from_slice(v);
        put(0, &msg_id.to_ne_bytes());
        put(4, &(self.opcode() as u32).to_ne_bytes());
        put(8, &(self.msg_len() as u32).to_ne_bytes());
        let object_id = self.close_id().unwrap_or(object_id);
        put(12, &object_id.to_ne_bytes());
        match &self.payload {
            Payload::Open {
                volume_key_size,
                cookie_key_size,
                keys,
            } => {
                put(16, &u32::from(*volume_key_size).to_ne_bytes());
                put(20, &u32::from(*cookie_key_size).to_ne_bytes());
                put(24, &fd.to_ne_bytes());
                // flags: 0.
                let n = *volume_key_size as usize + *cookie_key_size as usize;
                w.write_slice(&head)?;
                w.write_slice(keys.get(..n).ok_or(EINVAL)?)
            }
            Payload::Close { .. } => w.write_slice(&head[..HDR_SIZE]),
            Payload::Read { off, len } => {
                put(16, &off.to_ne_bytes());
                put(24, &len.to_ne_bytes());
                w.write_slice(&head)
            }
        }
    }

    /// Waits for the request to be completed, or a fatal signal.
    pub(crate) fn wait_killable(&self) -> Result {
        self.done.wait_killable()
    }

    /// Waits for the request to be completed.
    pub(crate) fn wait(&self) {
        self.done.wait()
    }

    /// After the wait: takes back the reference the completer handed over,
    /// so that the caller's is the last one (or the one before a daemon
    /// `read()`'s, which may sleep too).
    pub(crate) fn reclaim(&self) {
        let parked = self.parked.lock().take();
        drop(parked);
    }

    /// The outcome of a completed request.
    pub(crate) fn result(&self) -> Result {
        match self.result.load(Ordering::Acquire) {
            0 => Ok(()),
            err => Err(Error::from_errno(err)),
        }
    }
}

/// A request taken out of the queue: completed when dropped, with `EIO`
/// unless [`Taken::finish`] says otherwise.
///
/// # Invariants
///
/// `req` is `Some` until the request is completed, in `drop`.
pub(crate) struct Taken {
    req: Option<Arc<Request>>,
    result: i32,
}

impl Taken {
    /// Takes charge of `req`, just removed from the queue.
    pub(crate) fn new(req: Arc<Request>) -> Self {
        Self {
            req: Some(req),
            result: EIO.to_errno(),
        }
    }

    /// The request's object.
    pub(crate) fn object(&self) -> Option<&ARef<Obj>> {
        self.req.as_ref().map(|r| &r.object)
    }

    /// Completes the request with `result`: 0 or a negative errno.
    pub(crate) fn finish(mut self, result: i32) {
        self.result = result;
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        let Some(req) = self.req.take() else {
            return;
        };
        req.result.store(self.result, Ordering::Release);
        let cache = req.object.cache().data();
        cache
            .stats()
            .request_done(req.opcode(), self.result, req.created_ns);
        Completion::complete_handing_over(req, |r| &r.done, |r| &r.parked);
    }
}
