// SPDX-License-Identifier: GPL-2.0

//! The file operations of the anonymous fds cachefiles makes for a backend.
//!
//! cachefiles creates the file ([`Object::create_anon_fd`]) with the object
//! as its private data, holding the object and pinning the cache until the
//! file's `release` hands them back. Writes and seeks go straight to the
//! built-in functions, which write into the object's backing file with the
//! cache's credentials; the backend sees the ioctl and the release.

use core::marker::PhantomData;
use kernel::{bindings, ThisModule};

use super::{Object, Operations};

/// The `struct file_operations` of the anonymous fds of backend `B`.
///
/// # Invariants
///
/// `unlocked_ioctl` and `release` are the trampolines below for `B`,
/// `write_iter` and `llseek` are cachefiles' own; the table is only used for files
/// made by `cachefiles_anon_fd_create()` for objects of caches bound to `B`,
/// whose private data is their object until `release`.
#[repr(transparent)]
pub(crate) struct FdOperations<B: Operations>(bindings::file_operations, PhantomData<B>);

// SAFETY: The table is immutable.
unsafe impl<B: Operations> Sync for FdOperations<B> {}

impl<B: Operations> FdOperations<B> {
    /// Builds the table; `owner` is pinned while a file uses it.
    pub(crate) const fn new(owner: &'static ThisModule) -> Self {
        // SAFETY: All-zeroes is a valid `file_operations`: null pointers and
        // `None` functions.
        let mut fops: bindings::file_operations = unsafe { core::mem::zeroed() };
        fops.owner = owner.as_ptr();
        fops.write_iter = Some(bindings::cachefiles_ondemand_fd_write_iter);
        fops.llseek = Some(bindings::cachefiles_ondemand_fd_llseek);
        fops.unlocked_ioctl = Some(ioctl_tramp::<B>);
        fops.release = Some(release_tramp::<B>);
        // INVARIANT: Set as the invariant says; cachefiles uses the table
        // only for the files it makes for `B`'s objects.
        Self(fops, PhantomData)
    }

    /// Returns the raw table, for the operations table of `B`.
    pub(super) const fn as_raw(&'static self) -> *const bindings::file_operations {
        &self.0
    }
}

/// Borrows the object of an anonymous fd.
///
/// # Safety
///
/// `file` must be a live file using an [`FdOperations<B>`] table, whose
/// `release` has not returned; the object then lives at least as long as the
/// file holds it, which covers `'a`.
unsafe fn fd_object<'a, B: Operations>(file: *mut bindings::file) -> &'a Object<B> {
    // SAFETY: Per the table's invariant the private data is the object, held
    // by the file, of a cache bound to `B`.
    unsafe { Object::from_raw((*file).private_data.cast()) }
}

/// Calls [`Operations::fd_ioctl`] for `unlocked_ioctl`.
///
/// # Safety
///
/// Called by the VFS with a live file using `FdOperations<B>`.
unsafe extern "C" fn ioctl_tramp<B: Operations>(
    file: *mut bindings::file,
    cmd: kernel::ffi::c_uint,
    arg: kernel::ffi::c_ulong,
) -> kernel::ffi::c_long {
    // SAFETY: The file is live and uses our table.
    let object = unsafe { fd_object::<B>(file) };
    match B::fd_ioctl(object, cmd, arg) {
        Ok(r) => r as _,
        Err(e) => e.to_errno() as _,
    }
}

/// Calls [`Operations::fd_release`], then lets cachefiles drop the object
/// reference and the cache pin the file held.
///
/// # Safety
///
/// Called by the VFS once, when the last reference to a file using
/// `FdOperations<B>` is gone.
unsafe extern "C" fn release_tramp<B: Operations>(
    _inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> kernel::ffi::c_int {
    let object_id = {
        // SAFETY: The file is being released; it holds its object until
        // `cachefiles_anon_fd_release` below, after this borrow ends.
        let object = unsafe { fd_object::<B>(file) };
        B::fd_release(object)
    };
    // SAFETY: The file was made by `cachefiles_anon_fd_create` (type
    // invariant) and is in its `release`; nothing uses its object after this.
    unsafe { bindings::cachefiles_anon_fd_release(file, object_id) };
    0
}
