// SPDX-License-Identifier: GPL-2.0

//! Files, fd reservations, and the I/O argument types of file operations.
//!
//! Mirrors later kernels' `kernel::fs::file` ([`File`],
//! [`FileDescriptorReservation`], [`flags`]), `kernel::fs::Kiocb` and
//! `kernel::iov::IovIterSource`, with the few methods the backend needs.
//!
//! C headers: [`include/linux/fs.h`](srctree/include/linux/fs.h),
//! [`include/linux/file.h`](srctree/include/linux/file.h),
//! [`include/linux/uio.h`](srctree/include/linux/uio.h)

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

    /// Repositions the file with `vfs_llseek()`.
    pub(crate) fn llseek(&self, pos: i64, whence: i32) -> Result<i64> {
        // SAFETY: The file is live (type invariant).
        let ret = unsafe { bindings::vfs_llseek(self.as_ptr(), pos, whence) };
        if ret < 0 {
            return Err(Error::from_errno(ret as i32));
        }
        Ok(ret)
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

/// The `struct kiocb` of a `write_iter` call.
///
/// # Invariants
///
/// Only handed out by reference, for the duration of the call, wrapping the
/// valid kiocb the VFS passed.
#[repr(transparent)]
pub(crate) struct Kiocb(Opaque<bindings::kiocb>);

impl Kiocb {
    /// Wraps the kiocb of a file operation.
    ///
    /// # Safety
    ///
    /// `ptr` must be a valid kiocb, exclusively the caller's for `'a`.
    pub(super) unsafe fn from_raw<'a>(ptr: *mut bindings::kiocb) -> &'a mut Self {
        // SAFETY: `Kiocb` is a transparent wrapper; the caller guarantees validity.
        unsafe { &mut *ptr.cast() }
    }

    /// Returns the file the I/O is on.
    pub(super) fn file_ptr(&self) -> *mut bindings::file {
        // SAFETY: `self` wraps a valid kiocb for the duration of the call.
        unsafe { (*self.0.get()).ki_filp }
    }

    /// Returns the file position of the I/O.
    pub(crate) fn ki_pos(&self) -> i64 {
        // SAFETY: `self` wraps a valid kiocb for the duration of the call.
        unsafe { (*self.0.get()).ki_pos }
    }

    /// Returns the file position of the I/O, for updating it.
    pub(crate) fn ki_pos_mut(&mut self) -> &mut i64 {
        // SAFETY: As above; we have exclusive access during the call.
        unsafe { &mut (*self.0.get()).ki_pos }
    }
}

/// The `struct iov_iter` a `write_iter` call reads its data from.
///
/// # Invariants
///
/// Only handed out by reference, for the duration of the call, wrapping the
/// valid iterator the VFS passed.
#[repr(transparent)]
pub(crate) struct IovIterSource(Opaque<bindings::iov_iter>);

impl IovIterSource {
    /// Wraps the iterator of a file operation.
    ///
    /// # Safety
    ///
    /// `ptr` must be a valid iterator, exclusively the caller's for `'a`.
    pub(super) unsafe fn from_raw<'a>(ptr: *mut bindings::iov_iter) -> &'a mut Self {
        // SAFETY: `IovIterSource` is a transparent wrapper; the caller
        // guarantees validity.
        unsafe { &mut *ptr.cast() }
    }

    /// Returns the number of bytes left in the iterator.
    pub(crate) fn len(&self) -> usize {
        // SAFETY: `self` wraps a valid iterator for the duration of the call.
        unsafe { helpers::cfod_iov_iter_count(self.0.get()) }
    }

    /// Returns the raw iterator pointer.
    pub(crate) fn as_raw(&mut self) -> *mut bindings::iov_iter {
        self.0.get()
    }
}
