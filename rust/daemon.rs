// SPDX-License-Identifier: GPL-2.0

//! The daemon's side of the devnode: `read()`, `poll()`, and the `copen` and
//! `restore` commands.

use kernel::prelude::*;

use crate::{
    abstractions::{
        cstr::CStrMut,
        error::MAX_ERRNO,
        kstrtox::{kstrtol, kstrtoul},
        uaccess::UserSlice,
    },
    anon_fd,
    cache::{OndemandCache, Selected},
    request::{Identity, Opcode, ReqHandle, ReqRef},
    Cache,
};

/// `read()` on the devnode: hand one request to the daemon.
///
/// Returns 0 if nothing is pending, `EMSGSIZE` if `buflen` is too small (the
/// request stays pending). A failed delivery completes the request with the
/// error; a CLOSE is complete once delivered.
///
/// In line, with [`deliver`], in the devnode's `read()`: the result then
/// leaves in a register, and a read that finds nothing NEW still returns
/// before the delivery's frame is built.
#[inline(always)]
pub(crate) fn daemon_read(cache: Cache<'_>, buf: UserSlice, buflen: usize) -> Result<usize> {
    let state = cache.data();
    // A daemon reads until it gets 0, once a request: that read builds no
    // frame for the delivery.
    if !state.has_new() {
        return Ok(0);
    }
    deliver(&state, buf, buflen)
}

/// The rest of [`daemon_read`], once some request is NEW.
#[inline(always)]
fn deliver(state: &OndemandCache, buf: UserSlice, buflen: usize) -> Result<usize> {
    let (id, res) = match state.select(buflen)? {
        None => return Ok(0),
        Some(Selected::Open(id, req)) => (id, deliver_open(state, id, req, buf)),
        Some(Selected::Copied(id, msg, which)) => {
            let res = msg.write(&mut buf.writer()).map(|()| msg.len());
            let done = match &res {
                Err(e) => Some(e.to_errno()),
                Ok(_) if msg.is_close() => Some(0),
                Ok(_) => None,
            };
            if let Some(result) = done {
                finish_copied(state, id, which, result);
            }
            (id, res)
        }
    };
    pr_debug!("msg {} read: {:?}\n", id, res);
    res
}

/// Completes copied request `id` with `result` once its message was
/// written (a CLOSE) or could not be (a fault), unless somebody (flush,
/// restore + another reader...) took it first: it is recognised by its
/// address, as no reference to it was kept.
///
/// Out of line, as the OPEN's delivery: a READ's, the common case, needs
/// neither, and its frame stays small.
#[inline(never)]
fn finish_copied(state: &OndemandCache, id: u32, which: Identity, result: i32) {
    if let Some(taken) = state.take_if(id as usize, |r| r.identity() == which) {
        taken.finish(result);
    }
}

/// Writes OPEN `id` to the daemon, with a new anonymous fd installed only
/// once the copy succeeded; a failed delivery completes the OPEN with the
/// error, unless somebody (flush, restore + another reader...) took it
/// first.
#[inline(never)]
fn deliver_open(state: &OndemandCache, id: u32, req: ReqRef, buf: UserSlice) -> Result<usize> {
    let res = write_open(id, &req, buf);
    if let Err(e) = &res {
        if let Some(taken) = state.take_if_same(id, &req) {
            taken.finish(e.to_errno());
        }
    }
    res
}

/// Writes OPEN `id` to the daemon, with a new anonymous fd installed only
/// once the copy succeeded.
fn write_open(id: u32, req: &ReqRef, buf: UserSlice) -> Result<usize> {
    let mut w = buf.writer();
    let open = anon_fd::open(req.object().view())?;
    // Traced with the ids of the OPEN's previous delivery (0 if none),
    // as the built-in code, which sets them after tracing, shows them.
    let (last_id, last_object_id) = req.delivered(id, open.object_id());
    req.object().trace_open(last_id, last_object_id, open.fd());
    req.write_open_msg(&mut w, id, open.object_id(), open.fd())?;
    open.install();
    Ok(req.msg_len())
}

/// `poll()`: readable iff some NEW request is not a READ on an object being
/// reopened.
pub(crate) fn daemon_poll(cache: Cache<'_>) -> bool {
    cache.data().has_ready()
}

/// `copen <id>,<size>`: complete OPEN request `id`.
///
/// A size >= 0 opens the object; a negative errno fails the OPEN (and the
/// command succeeds); anything else fails both.
pub(crate) fn copen(cache: Cache<'_>, args: CStrMut<'_>) -> Result {
    if args.is_empty() {
        pr_err!("Empty id specified\n");
        return Err(EINVAL);
    }
    let Some((id_str, size_str)) = args.split_once(b',') else {
        pr_err!("Cache size is not specified\n");
        return Err(EINVAL);
    };

    let id = kstrtoul(&id_str, 0)?;
    let state = cache.data();
    // The OPEN must have been read by the daemon: the object has an id.
    let taken = usize::try_from(id)
        .ok()
        .and_then(|id| {
            state.take_if(id, |r| {
                r.opcode() == Opcode::Open && r.object().data().ondemand_id() != 0
            })
        })
        .ok_or(EINVAL)?;
    // Borrowed from the request, which `taken` keeps until `finish`.
    let object = taken.object().ok_or(EINVAL)?;
    let info = object.data();

    let (result, ret) = match kstrtol(&size_str, 0) {
        Err(e) => (e.to_errno(), Err(e)),
        Ok(size) if size < 0 => {
            if size < -(MAX_ERRNO as i64) {
                (EINVAL.to_errno(), Err(EINVAL))
            } else {
                (size as i32, Ok(()))
            }
        }
        Ok(size) => match info.copen(object, id as u32, size, state.reopening()) {
            // A READ of the object, held back while it reopened, is ready.
            Ok(true) => {
                cache.wake_daemon();
                (0, Ok(()))
            }
            // Nothing queued waited for this object to open: the OPEN's
            // own waiter is woken by its completion.
            Ok(false) => (0, Ok(())),
            // The anonymous fd was closed before copen: fail the OPEN only.
            Err(e) => (e.to_errno(), Ok(())),
        },
    };
    if result != 0 {
        info.copen_failed(state.reopening());
    }
    pr_debug!("copen msg {}: {}\n", id, result);
    taken.finish(result);
    ret
}

/// `restore`: resend every pending request (daemon failover).
pub(crate) fn restore(cache: Cache<'_>) -> Result {
    cache.data().restore();
    cache.wake_daemon();
    Ok(())
}

/// The cache is dead: fail every pending request, refuse new ones.
pub(crate) fn flush(cache: Cache<'_>) {
    cache.data().flush();
}
