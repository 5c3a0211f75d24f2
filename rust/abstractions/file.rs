// SPDX-License-Identifier: GPL-2.0

//! Files and fd reservations.
//!
//! Mirrors later kernels' `kernel::fs::file` ([`File`],
//! [`FileDescriptorReservation`], [`flags`]), with the few methods the
//! backend needs.
//!
//! C headers: [`include/linux/fs.h`](srctree/include/linux/fs.h),
//! [`include/linux/file.h`](srctree/include/linux/file.h)

use core::{marker::PhantomData, ptr::NonNull};
use kernel::{
    bindings,
    error::Result,
    prelude::*,
    types::{ARef, AlwaysRefCounted, Opaque},
};

use super::helpers;

/// Flags for opening files, as in later kernels' `kernel::fs::file::flags`.
pub(crate) mod flags {
    use kernel::bindings;

    /// File is opened write-only.
    pub(crate) const O_WRONLY: u32 = bindings::O_WRONLY;
}

/// A `struct file`, reference counted: owned as an [`ARef<File>`].
///
/// # Invariants
///
/// Instances are only created by reference to a live file, on which the
/// reference count (`f_count`) is above zero while the reference exists.
#[repr(transparent)]
pub(crate) struct File {
    inner: Opaque<bindings::file>,
}

// SAFETY: File references may be used and released from any thread.
unsafe impl Send for File {}
// SAFETY: The operations offered through `&File` are thread-safe.
unsafe impl Sync for File {}

// SAFETY: `get_file` and `fput` manage the file's reference count; the last
// `fput` frees it.
unsafe impl AlwaysRefCounted for File {
    fn inc_ref(&self) {
        // SAFETY: The file is live (type invariant), so its count is not zero.
        unsafe { helpers::cfod_get_file(self.as_ptr()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller owns a reference, which it gives up.
        unsafe { bindings::fput(obj.as_ptr().cast()) };
    }
}

impl File {
    /// Takes over a file reference.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a file on which the caller owns a reference, which
    /// is transferred to the returned value.
    pub(crate) unsafe fn from_raw_owned(ptr: NonNull<bindings::file>) -> ARef<Self> {
        // SAFETY: `File` is a transparent wrapper of `struct file`; the caller
        // transfers its reference (type invariant of `ARef`).
        unsafe { ARef::from_raw(ptr.cast()) }
    }

    /// Returns the raw file pointer.
    pub(crate) fn as_ptr(&self) -> *mut bindings::file {
        self.inner.get()
    }
}

/// An fd number reserved in the current task's fd table, not yet installed.
///
/// Dropping it releases the number with `put_unused_fd()`.
///
/// # Invariants
///
/// `fd` was returned by `get_unused_fd_flags()` in the current task and has
/// been neither installed nor put.
pub(crate) struct FileDescriptorReservation {
    fd: u32,
    // The reservation belongs to the current task's fd table.
    _not_send: PhantomData<*mut ()>,
}

impl FileDescriptorReservation {
    /// Reserves an fd number with `flags` (e.g. [`flags::O_WRONLY`]).
    pub(crate) fn get_unused_fd_flags(flags: u32) -> Result<Self> {
        // SAFETY: No safety requirements.
        let fd = unsafe { bindings::get_unused_fd_flags(flags) };
        if fd < 0 {
            return Err(Error::from_errno(fd));
        }
        // INVARIANT: Just reserved.
        Ok(Self {
            fd: fd as u32,
            _not_send: PhantomData,
        })
    }

    /// Returns the reserved fd number.
    pub(crate) fn reserved_fd(&self) -> u32 {
        self.fd
    }

    /// Installs `file` at the reserved number, handing both over to the fd table.
    pub(crate) fn fd_install(self, file: ARef<File>) {
        let me = core::mem::ManuallyDrop::new(self);
        let file = ARef::into_raw(file);
        // SAFETY: `fd` is reserved in this task (type invariant) and we own a
        // reference on the file; `fd_install` consumes both.
        unsafe { bindings::fd_install(me.fd, file.as_ptr().cast()) };
    }
}

impl Drop for FileDescriptorReservation {
    fn drop(&mut self) {
        // SAFETY: `fd` is reserved in this task and was not installed.
        unsafe { bindings::put_unused_fd(self.fd) };
    }
}
