// SPDX-License-Identifier: GPL-2.0

//! The anonymous fds handed to the daemon with each OPEN: the daemon writes
//! the data of the cache file through them and completes READs with an ioctl.

use core::sync::atomic::{AtomicU32, Ordering};
use kernel::{c_str, prelude::*, types::ARef};

use crate::{
    abstractions::{
        anon_inode::{self, AnonFileOps, FileOperations},
        cachefiles::{uapi::IOC_READ_COMPLETE, CachePin},
        delay, error,
        file::{flags, File, FileDescriptorReservation, IovIterSource, Kiocb},
    },
    request::Opcode,
    Object, Ondemand,
};

static FOPS: FileOperations<AnonFd> = FileOperations::new(&crate::THIS_MODULE);

/// Test hook (debugfs `release_delay_ms`, 0 by default): the release of an
/// anonymous fd, once its object is closed, waits while this is not 0, for
/// at most this many milliseconds, so that a test can make a reopen overlap
/// the release and end the window by writing 0 once its events happened.
/// The object is closed and its unread CLOSE swept in one critical section,
/// so the wait falls after both (before the id is freed).
pub(crate) static RELEASE_DELAY_MS: AtomicU32 = AtomicU32::new(0);

/// The step in which the release re-reads [`RELEASE_DELAY_MS`].
const RELEASE_DELAY_STEP_MS: u32 = 20;

/// The state of an anonymous fd.
///
/// It owns the object's id and a reference to the object, and pins the
/// cache. Dropping it (on release, or if the file could not be made) closes
/// the object, completes the unread CLOSEs for it and frees the id.
pub(crate) struct AnonFd {
    /// Dropped before `_pin`: the last unpin may unbind the cache, which
    /// waits for every object to be freed.
    object: ARef<Object>,
    object_id: u32,
    _pin: CachePin<Ondemand>,
}

impl Drop for AnonFd {
    fn drop(&mut self) {
        let object = &self.object;
        let state = object.cache().data();
        state.release_fd(object, self.object_id);
        let mut waited = 0;
        while waited < RELEASE_DELAY_MS.load(Ordering::Relaxed) {
            delay::msleep(RELEASE_DELAY_STEP_MS);
            waited += RELEASE_DELAY_STEP_MS;
        }
        state.ids().free(self.object_id);
        pr_debug!(
            "o={:08x} anonymous fd for id {} released\n",
            object.debug_id(),
            self.object_id
        );
    }
}

impl AnonFileOps for AnonFd {
    type Data = KBox<AnonFd>;

    fn write_iter(this: &AnonFd, kiocb: &mut Kiocb, iter: &mut IovIterSource) -> Result<usize> {
        let file = this.object.backing_file().ok_or_else(error::enobufs)?;
        let pos = kiocb.ki_pos();
        let len = iter.len();
        let written = this.object.write(&file, pos, iter)?;
        *kiocb.ki_pos_mut() = pos.saturating_add(written as i64);
        this.object.cache().data().stats().bytes_written(written);
        pr_debug!(
            "o={:08x} write {}@{}: {}\n",
            this.object.debug_id(),
            len,
            pos,
            written
        );
        Ok(written)
    }

    fn llseek(this: &AnonFd, pos: i64, whence: i32) -> Result<i64> {
        let file = this.object.backing_file().ok_or_else(error::enobufs)?;
        file.llseek(pos, whence)
    }

    fn ioctl(this: &AnonFd, cmd: u32, arg: usize) -> Result<i64> {
        if cmd != IOC_READ_COMPLETE {
            return Err(EINVAL);
        }
        let state = this.object.cache().data();
        let taken = state
            .take_if(arg, |r| {
                r.opcode() == Opcode::Read && r.is_for(&this.object)
            })
            .ok_or(EINVAL)?;
        taken.finish(0);
        pr_debug!("o={:08x} read {} complete\n", this.object.debug_id(), arg);
        Ok(0)
    }

    fn release(data: KBox<AnonFd>) {
        drop(data);
    }
}

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
/// reserves an fd number and creates the file.
pub(crate) fn open(object: &ARef<Object>) -> Result<OpenFd> {
    let cache = object.cache();
    let state = cache.data();
    let object_id = match state.ids().alloc() {
        Ok(id) => id,
        Err(e) => {
            object.data().open_failed();
            return Err(e);
        }
    };
    let fd = match FileDescriptorReservation::get_unused_fd_flags(flags::O_WRONLY) {
        Ok(fd) => fd,
        Err(e) => {
            state.ids().free(object_id);
            object.data().open_failed();
            return Err(e);
        }
    };
    if let Err(e) = object.data().claim_id(object_id) {
        state.ids().free(object_id);
        return Err(e);
    }
    // From here on, dropping the `AnonFd` undoes the claim.
    let anon = AnonFd {
        object: object.clone(),
        object_id,
        _pin: cache.pin(),
    };
    let data = KBox::new(anon, GFP_KERNEL)?;
    let file =
        anon_inode::anon_inode_getfile(c_str!("[cachefiles]"), &FOPS, data, flags::O_WRONLY)?;
    Ok(OpenFd {
        file,
        fd,
        object_id,
    })
}
