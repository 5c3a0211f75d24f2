// SPDX-License-Identifier: GPL-2.0

//! The anonymous fds handed to the daemon with each OPEN: the daemon writes
//! the data of the cache file through them and completes READs with an ioctl.
//!
//! cachefiles makes the file (holding the object and pinning the cache) and
//! writes through it; the backend gives each fd its object id, handles
//! `READ_COMPLETE` and, on release, closes the object.

use core::sync::atomic::{AtomicU32, Ordering};
use kernel::{prelude::*, types::ARef};

use crate::{
    abstractions::{
        cachefiles::uapi::IOC_READ_COMPLETE,
        delay,
        file::{flags, File, FileDescriptorReservation},
    },
    request::{Opcode, ReqHandle},
    Object, ObjectView,
};

/// Test hook (debugfs `release_delay_ms`, 0 by default): the release of an
/// anonymous fd, once its object is closed, waits while this is not 0, for
/// at most this many milliseconds, so that a test can make a reopen overlap
/// the release and end the window by writing 0 once its events happened.
/// The object is closed and its unread CLOSE swept in one critical section,
/// so the wait falls after both (before the id is freed).
pub(crate) static RELEASE_DELAY_MS: AtomicU32 = AtomicU32::new(0);

/// The step in which the release re-reads [`RELEASE_DELAY_MS`].
const RELEASE_DELAY_STEP_MS: u32 = 20;

/// A new anonymous fd for an OPEN: the file and its reserved number, not
/// installed yet. Dropping it releases both (file first).
pub(crate) struct OpenFd {
    file: ARef<File>,
    fd: FileDescriptorReservation,
    object_id: u32,
}

impl OpenFd {
    pub(crate) fn fd(&self) -> u32 {
        self.fd.reserved_fd()
    }

    pub(crate) fn object_id(&self) -> u32 {
        self.object_id
    }

    /// Makes the fd visible to the daemon: only once the message is copied.
    pub(crate) fn install(self) {
        let OpenFd { file, fd, .. } = self;
        fd.fd_install(file);
    }
}

/// Makes the anonymous fd for an OPEN of `object`: allocates its object id,
/// reserves an fd number and has cachefiles create the file.
pub(crate) fn open(object: ObjectView<'_>) -> Result<OpenFd> {
    let state = object.cache_data();
    let object_id = match state.ids().alloc() {
        Ok(id) => id,
        Err(e) => {
            object.data().open_failed(state.reopening());
            return Err(e);
        }
    };
    let fd = match FileDescriptorReservation::get_unused_fd_flags(flags::O_WRONLY) {
        Ok(fd) => fd,
        Err(e) => {
            state.ids().free(object_id);
            object.data().open_failed(state.reopening());
            return Err(e);
        }
    };
    if let Err(e) = object.data().claim_id(object_id, state.reopening()) {
        state.ids().free(object_id);
        return Err(e);
    }
    // From here on the id is the object's until the file is released, or
    // until `release_unmade` below if the file cannot be made.
    match object.create_anon_fd() {
        Ok(file) => Ok(OpenFd {
            file,
            fd,
            object_id,
        }),
        Err(e) => {
            release_unmade(object, object_id);
            Err(e)
        }
    }
}

/// [`release_id`] for an fd that could not be made: out of line, so that
/// the OPEN's delivery does not carry the release in its own code.
#[cold]
#[inline(never)]
fn release_unmade(object: ObjectView<'_>, object_id: u32) {
    release_id(object, object_id);
}

/// `READ_COMPLETE` on an anonymous fd of `object`: completes READ `arg`.
#[inline]
pub(crate) fn ioctl(object: &Object, cmd: u32, arg: usize) -> Result<i64> {
    if cmd != IOC_READ_COMPLETE {
        return Err(EINVAL);
    }
    let state = object.cache_data();
    let taken = state
        .take_if(arg, |r| r.opcode() == Opcode::Read && r.is_for(object))
        .ok_or(EINVAL)?;
    object.trace_cread(arg as u32);
    taken.finish(0);
    Ok(0)
}

/// The last reference to the anonymous fd of `object` is gone: closes the
/// object, completes the unread CLOSE made for the fd and frees its id,
/// which it returns.
///
/// In line, with [`release_id`]: the fd's release trampoline then saves the
/// registers once for the whole release.
#[inline(always)]
pub(crate) fn release(object: &Object) -> u32 {
    let object = object.view();
    // An object has one anonymous fd at a time (`claim_id`), whose id it
    // keeps until this release.
    let object_id = u32::try_from(object.data().ondemand_id()).unwrap_or(0);
    release_id(object, object_id);
    object_id
}

#[inline(always)]
fn release_id(object: ObjectView<'_>, object_id: u32) {
    let state = object.cache_data();
    state.release_fd(object, object_id);
    let mut waited = 0;
    while waited < RELEASE_DELAY_MS.load(Ordering::Relaxed) {
        delay::msleep(RELEASE_DELAY_STEP_MS);
        // Saturating: a limit near `u32::MAX` (debugfs) ends the wait
        // instead of overflowing.
        waited = waited.saturating_add(RELEASE_DELAY_STEP_MS);
    }
    if object_id > 0 {
        state.ids().free(object_id);
    }
}
