// SPDX-License-Identifier: GPL-2.0

//! Anonymous-inode files whose file operations are written in Rust.
//!
//! C header: [`include/linux/anon_inodes.h`](srctree/include/linux/anon_inodes.h)

use core::{marker::PhantomData, ptr::NonNull};
use kernel::{
    bindings,
    error::{from_err_ptr, Result},
    prelude::*,
    types::{ARef, ForeignOwnable},
    ThisModule,
};

use super::{
    file::{File, IovIterSource, Kiocb},
    helpers,
};

/// The operations of an anonymous-inode file whose private data is a `Data`.
pub(crate) trait AnonFileOps: Sized + 'static {
    /// The private data of a file; given back to [`AnonFileOps::release`].
    type Data: ForeignOwnable + Send + Sync;

    /// Writes `iter` at `kiocb`'s position (`write_iter`).
    fn write_iter(
        data: <Self::Data as ForeignOwnable>::Borrowed<'_>,
        kiocb: &mut Kiocb,
        iter: &mut IovIterSource,
    ) -> Result<usize>;

    /// Repositions the file (`llseek`).
    fn llseek(
        data: <Self::Data as ForeignOwnable>::Borrowed<'_>,
        pos: i64,
        whence: i32,
    ) -> Result<i64>;

    /// Handles an ioctl (`unlocked_ioctl`).
    fn ioctl(
        data: <Self::Data as ForeignOwnable>::Borrowed<'_>,
        cmd: u32,
        arg: usize,
    ) -> Result<i64>;

    /// Releases the file's data: the last reference to the file is gone.
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

/// Borrows the private data of `file`.
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

/// Calls [`AnonFileOps::write_iter`] for `write_iter`.
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
    // the call.
    let (kiocb, iter) = unsafe { (Kiocb::from_raw(kiocb), IovIterSource::from_raw(iter)) };
    // SAFETY: The kiocb's file is live and uses our table.
    let data = unsafe { file_data::<T>(kiocb.file_ptr()) };
    match T::write_iter(data, kiocb, iter) {
        Ok(n) => n as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// Calls [`AnonFileOps::llseek`] for `llseek`.
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

/// Calls [`AnonFileOps::ioctl`] for `unlocked_ioctl`.
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

/// Calls [`AnonFileOps::release`] for `release`.
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
) -> Result<ARef<File>> {
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
    Ok(unsafe { File::from_raw_owned(NonNull::new_unchecked(file)) })
}
