// SPDX-License-Identifier: GPL-2.0

//! Files: anonymous-inode files with Rust file operations, fd reservations,
//! and the I/O argument types of those operations.
//!
//! C headers: [`include/linux/fs.h`](srctree/include/linux/fs.h),
//! [`include/linux/file.h`](srctree/include/linux/file.h),
//! [`include/linux/anon_inodes.h`](srctree/include/linux/anon_inodes.h)

use core::{marker::PhantomData, ptr::NonNull};
use kernel::{
    bindings,
    error::{from_err_ptr, Result},
    prelude::*,
    types::{ForeignOwnable, Opaque},
    ThisModule,
};

use crate::helpers;

/// An owned reference to a `struct file`, dropped with `fput()`.
///
/// # Invariants
///
/// `0` points to a file on which this value owns a reference.
pub(crate) struct File(NonNull<bindings::file>);

// SAFETY: File references may be used and released from any thread.
unsafe impl Send for File {}
// SAFETY: The operations offered through `&File` are thread-safe.
unsafe impl Sync for File {}

impl File {
    /// Takes over a file reference.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a file on which the caller owns a reference, which
    /// is transferred to the returned value.
    pub(crate) unsafe fn from_raw(ptr: NonNull<bindings::file>) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self(ptr)
    }

    /// The raw file pointer.
    pub(crate) fn as_ptr(&self) -> *mut bindings::file {
        self.0.as_ptr()
    }

    /// Repositions the file with `vfs_llseek()`.
    pub(crate) fn llseek(&self, pos: i64, whence: i32) -> Result<i64> {
        // SAFETY: The file is valid while `self` holds a reference.
        let ret = unsafe { bindings::vfs_llseek(self.as_ptr(), pos, whence) };
        if ret < 0 {
            return Err(Error::from_errno(ret as i32));
        }
        Ok(ret)
    }
}

impl Drop for File {
    fn drop(&mut self) {
        // SAFETY: We own a reference (type invariant).
        unsafe { bindings::fput(self.as_ptr()) };
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
pub(crate) struct FdReservation {
    fd: u32,
    // The reservation belongs to the current task's fd table.
    _not_send: PhantomData<*mut ()>,
}

impl FdReservation {
    /// Reserves an fd number with `flags` (e.g. `O_WRONLY`).
    pub(crate) fn get(flags: u32) -> Result<Self> {
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

    /// The reserved fd number.
    pub(crate) fn fd(&self) -> u32 {
        self.fd
    }

    /// Installs `file` at the reserved number, handing both over to the fd table.
    pub(crate) fn install(self, file: File) {
        let me = core::mem::ManuallyDrop::new(self);
        let file = core::mem::ManuallyDrop::new(file);
        // SAFETY: `fd` is reserved in this task (type invariant) and we own a
        // reference on the file; `fd_install` consumes both.
        unsafe { bindings::fd_install(me.fd, file.as_ptr()) };
    }
}

impl Drop for FdReservation {
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
    /// The file position of the I/O.
    pub(crate) fn pos(&self) -> i64 {
        // SAFETY: `self` wraps a valid kiocb for the duration of the call.
        unsafe { (*self.0.get()).ki_pos }
    }

    /// Sets the file position of the I/O.
    pub(crate) fn set_pos(&mut self, pos: i64) {
        // SAFETY: As above; we have exclusive access during the call.
        unsafe { (*self.0.get()).ki_pos = pos };
    }
}

/// The `struct iov_iter` of a `write_iter` call.
///
/// # Invariants
///
/// Only handed out by reference, for the duration of the call, wrapping the
/// valid iterator the VFS passed.
#[repr(transparent)]
pub(crate) struct IovIter(Opaque<bindings::iov_iter>);

impl IovIter {
    /// The number of bytes left in the iterator.
    pub(crate) fn count(&self) -> usize {
        // SAFETY: `self` wraps a valid iterator for the duration of the call.
        unsafe { helpers::cfod_iov_iter_count(self.0.get()) }
    }

    /// The raw iterator pointer.
    pub(crate) fn as_ptr(&mut self) -> *mut bindings::iov_iter {
        self.0.get()
    }
}

/// The operations of an anonymous-inode file whose private data is a `Data`.
pub(crate) trait AnonFileOps: Sized + 'static {
    /// The private data of a file; given back to [`AnonFileOps::release`].
    type Data: ForeignOwnable + Send + Sync;

    /// `write_iter`: write `iter` at `kiocb`'s position.
    fn write_iter(
        data: <Self::Data as ForeignOwnable>::Borrowed<'_>,
        kiocb: &mut Kiocb,
        iter: &mut IovIter,
    ) -> Result<usize>;

    /// `llseek`.
    fn llseek(
        data: <Self::Data as ForeignOwnable>::Borrowed<'_>,
        pos: i64,
        whence: i32,
    ) -> Result<i64>;

    /// `unlocked_ioctl`.
    fn ioctl(
        data: <Self::Data as ForeignOwnable>::Borrowed<'_>,
        cmd: u32,
        arg: usize,
    ) -> Result<i64>;

    /// `release`: the last reference to the file is gone.
    fn release(data: Self::Data);
}

/// A `struct file_operations` table calling into `T`.
///
/// # Invariants
///
/// The table's functions are the trampolines below for `T`; files using it
/// have a `T::Data` from `into_foreign` as private data.
#[repr(transparent)]
pub(crate) struct FileOperations<T: AnonFileOps>(bindings::file_operations, PhantomData<T>);

// SAFETY: The table is immutable.
unsafe impl<T: AnonFileOps> Sync for FileOperations<T> {}

impl<T: AnonFileOps> FileOperations<T> {
    /// Builds the table; `owner` is pinned while a file uses it.
    pub(crate) const fn new(owner: &'static ThisModule) -> Self {
        // SAFETY: All-zeroes is a valid `file_operations`: null pointers and
        // `None` functions.
        let mut fops: bindings::file_operations = unsafe { core::mem::zeroed() };
        fops.owner = owner.as_ptr();
        fops.write_iter = Some(write_iter_tramp::<T>);
        fops.llseek = Some(llseek_tramp::<T>);
        fops.unlocked_ioctl = Some(ioctl_tramp::<T>);
        fops.release = Some(release_tramp::<T>);
        Self(fops, PhantomData)
    }
}

/// The private data of `file`, borrowed.
///
/// # Safety
///
/// `file` must be a live file opened with a [`FileOperations<T>`] table, and
/// not being released.
unsafe fn file_data<'a, T: AnonFileOps>(
    file: *mut bindings::file,
) -> <T::Data as ForeignOwnable>::Borrowed<'a> {
    // SAFETY: Per the table's invariant the private data came from
    // `T::Data::into_foreign`; `release` has not run yet.
    unsafe { T::Data::borrow((*file).private_data) }
}

/// `write_iter`.
///
/// # Safety
///
/// Called by the VFS with a valid kiocb of a file using `FileOperations<T>`
/// and a valid iterator.
unsafe extern "C" fn write_iter_tramp<T: AnonFileOps>(
    kiocb: *mut bindings::kiocb,
    iter: *mut bindings::iov_iter,
) -> isize {
    // SAFETY: The VFS passes a valid kiocb and iterator, exclusively ours for
    // the call; `Kiocb` and `IovIter` are transparent wrappers.
    let (kiocb, iter) = unsafe { (&mut *kiocb.cast::<Kiocb>(), &mut *iter.cast::<IovIter>()) };
    // SAFETY: The kiocb's file is live and uses our table.
    let data = unsafe { file_data::<T>((*kiocb.0.get()).ki_filp) };
    match T::write_iter(data, kiocb, iter) {
        Ok(n) => n as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// `llseek`.
///
/// # Safety
///
/// Called by the VFS with a live file using `FileOperations<T>`.
unsafe extern "C" fn llseek_tramp<T: AnonFileOps>(
    file: *mut bindings::file,
    pos: bindings::loff_t,
    whence: kernel::ffi::c_int,
) -> bindings::loff_t {
    // SAFETY: The file is live and uses our table.
    let data = unsafe { file_data::<T>(file) };
    match T::llseek(data, pos, whence) {
        Ok(p) => p,
        Err(e) => e.to_errno() as _,
    }
}

/// `unlocked_ioctl`.
///
/// # Safety
///
/// Called by the VFS with a live file using `FileOperations<T>`.
unsafe extern "C" fn ioctl_tramp<T: AnonFileOps>(
    file: *mut bindings::file,
    cmd: kernel::ffi::c_uint,
    arg: kernel::ffi::c_ulong,
) -> kernel::ffi::c_long {
    // SAFETY: The file is live and uses our table.
    let data = unsafe { file_data::<T>(file) };
    match T::ioctl(data, cmd, arg) {
        Ok(r) => r as _,
        Err(e) => e.to_errno() as _,
    }
}

/// `release`.
///
/// # Safety
///
/// Called by the VFS once, when the last reference to a file using
/// `FileOperations<T>` is gone.
unsafe extern "C" fn release_tramp<T: AnonFileOps>(
    _inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> kernel::ffi::c_int {
    // SAFETY: The file uses our table, so its private data came from
    // `T::Data::into_foreign`; this is the last use of it.
    let data = unsafe { T::Data::from_foreign((*file).private_data) };
    T::release(data);
    0
}

/// Creates an anonymous-inode file named `name` with `data` as private data.
///
/// The file is opened with `flags` and additionally allows `pwrite()` and
/// `lseek()`. If this fails, `data` is dropped.
pub(crate) fn anon_inode_getfile<T: AnonFileOps>(
    name: &'static CStr,
    fops: &'static FileOperations<T>,
    data: T::Data,
    flags: u32,
) -> Result<File> {
    let priv_ = data.into_foreign();
    // SAFETY: `name` and `fops` are static; `priv_` is handed to the file,
    // whose `release` gives it back to `T`.
    let file = unsafe {
        bindings::anon_inode_getfile(name.as_char_ptr(), &fops.0, priv_ as *mut _, flags as i32)
    };
    let file = match from_err_ptr(file) {
        Ok(file) => file,
        Err(e) => {
            // SAFETY: The file was not created, so we still own `priv_`.
            drop(unsafe { T::Data::from_foreign(priv_) });
            return Err(e);
        }
    };
    // SAFETY: The new file is not visible to anybody else yet.
    unsafe { helpers::cfod_file_set_pwrite_lseek(file) };
    // SAFETY: `anon_inode_getfile` returned a new file with one reference.
    Ok(unsafe { File::from_raw(NonNull::new_unchecked(file)) })
}
