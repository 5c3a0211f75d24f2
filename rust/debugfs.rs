// SPDX-License-Identifier: GPL-2.0

//! debugfs directories and read-only `seq_file` files.
//!
//! C headers: [`include/linux/debugfs.h`](srctree/include/linux/debugfs.h),
//! [`include/linux/seq_file.h`](srctree/include/linux/seq_file.h)

use core::{fmt, marker::PhantomData};
use kernel::{bindings, prelude::*, types::Opaque, ThisModule};

/// A `struct seq_file` being filled by a `show` function.
///
/// # Invariants
///
/// Only handed out by reference, for the duration of a `show` call, wrapping
/// the seq_file seq_file passed.
#[repr(transparent)]
pub(crate) struct SeqFile(Opaque<bindings::seq_file>);

impl fmt::Write for SeqFile {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // SAFETY: `self` wraps the seq_file of the current `show` call. An
        // overflow is recorded in the seq_file, which then retries with a
        // larger buffer.
        unsafe { bindings::seq_write(self.0.get(), s.as_ptr().cast(), s.len()) };
        Ok(())
    }
}

/// The contents of a read-only debugfs file.
pub(crate) trait ShowFile: 'static {
    /// Writes the file's contents.
    fn show(m: &mut SeqFile) -> fmt::Result;
}

/// The `file_operations` of a [`ShowFile`] (a `single_open` seq_file).
///
/// # Invariants
///
/// The table's `open` is `open_tramp::<T>`; the rest are seq_file's.
#[repr(transparent)]
pub(crate) struct ShowFops<T: ShowFile>(bindings::file_operations, PhantomData<T>);

// SAFETY: The table is immutable.
unsafe impl<T: ShowFile> Sync for ShowFops<T> {}

impl<T: ShowFile> ShowFops<T> {
    /// Builds the table; `owner` is pinned while the file is open.
    pub(crate) const fn new(owner: &'static ThisModule) -> Self {
        // SAFETY: All-zeroes is a valid `file_operations`.
        let mut fops: bindings::file_operations = unsafe { core::mem::zeroed() };
        fops.owner = owner.as_ptr();
        fops.open = Some(open_tramp::<T>);
        fops.read = Some(bindings::seq_read);
        fops.llseek = Some(bindings::seq_lseek);
        fops.release = Some(bindings::single_release);
        Self(fops, PhantomData)
    }
}

/// The `show` function of a `single_open` seq_file.
///
/// # Safety
///
/// Called by seq_file with a valid seq_file.
unsafe extern "C" fn show_tramp<T: ShowFile>(
    m: *mut bindings::seq_file,
    _v: *mut kernel::ffi::c_void,
) -> kernel::ffi::c_int {
    // SAFETY: seq_file calls `show` with a valid seq_file, ours for the call.
    let m = unsafe { &mut *m.cast::<SeqFile>() };
    match T::show(m) {
        Ok(()) => 0,
        Err(_) => EINVAL.to_errno(),
    }
}

/// `open`.
///
/// # Safety
///
/// Called by the VFS with a file being opened with `ShowFops<T>`.
unsafe extern "C" fn open_tramp<T: ShowFile>(
    _inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> kernel::ffi::c_int {
    // SAFETY: `file` is being opened; `single_open` sets up its seq_file.
    unsafe { bindings::single_open(file, Some(show_tramp::<T>), core::ptr::null_mut()) }
}

/// A debugfs directory, removed (with its contents) on drop.
///
/// # Invariants
///
/// `dentry` is a debugfs dentry or an error pointer (debugfs errors are
/// ignored by design: the module works without its statistics).
pub(crate) struct Dir {
    dentry: *mut bindings::dentry,
}

// SAFETY: debugfs entries may be removed from any thread.
unsafe impl Send for Dir {}
// SAFETY: `&Dir` offers nothing but creating files, which is thread-safe.
unsafe impl Sync for Dir {}

impl Dir {
    /// Creates the top-level directory `name`.
    pub(crate) fn new(name: &CStr) -> Self {
        // SAFETY: `name` is a valid string; a null parent means the debugfs root.
        let dentry =
            unsafe { bindings::debugfs_create_dir(name.as_char_ptr(), core::ptr::null_mut()) };
        Self { dentry }
    }

    /// Creates the read-only file `name` in this directory.
    pub(crate) fn create_file<T: ShowFile>(&self, name: &CStr, fops: &'static ShowFops<T>) {
        // SAFETY: `name` is valid, `fops` is static, the parent is ours (an
        // error pointer makes debugfs fail gracefully).
        unsafe {
            bindings::debugfs_create_file(
                name.as_char_ptr(),
                0o444,
                self.dentry,
                core::ptr::null_mut(),
                &fops.0,
            )
        };
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: `dentry` is ours; `debugfs_remove` accepts error pointers
        // and removes the directory recursively.
        unsafe { bindings::debugfs_remove(self.dentry) };
    }
}
