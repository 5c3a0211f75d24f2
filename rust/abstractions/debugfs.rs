// SPDX-License-Identifier: GPL-2.0

//! debugfs directories, read-only `seq_file` files and `u32` settings.
//!
//! Later kernels' `kernel::debugfs` has a [`Dir`] too, with files that own
//! or borrow their data; [`DataDir`] is the owning kind for 6.12.
//!
//! C headers: [`include/linux/debugfs.h`](srctree/include/linux/debugfs.h),
//! [`include/linux/seq_file.h`](srctree/include/linux/seq_file.h)

use core::{fmt, marker::PhantomData, sync::atomic::AtomicU32};
use kernel::{bindings, prelude::*, sync::Arc, types::Opaque, ThisModule};

use super::helpers;

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

    /// Creates the read-only file `name` in this directory, showing `data`.
    pub(crate) fn create_file<T: ShowData>(
        &self,
        name: &CStr,
        fops: &'static DataFops<T>,
        data: &'static T,
    ) {
        let ptr: *const T = data;
        // SAFETY: `name` is valid, `fops` and `data` are static, the parent
        // is ours (an error pointer makes debugfs fail gracefully).
        unsafe {
            bindings::debugfs_create_file(
                name.as_char_ptr(),
                0o444,
                self.dentry,
                ptr.cast_mut().cast(),
                &fops.0,
            )
        };
    }
}

impl Dir {
    /// Creates the file `name` in this directory, mode 0644, reading and
    /// writing `value` as a decimal number.
    pub(crate) fn create_u32(&self, name: &CStr, value: &'static AtomicU32) {
        self.u32_file(name, 0o644, value);
    }

    /// Creates the file `name` in this directory, mode 0444, reading `value`
    /// as a decimal number.
    pub(crate) fn create_u32_ro(&self, name: &CStr, value: &'static AtomicU32) {
        self.u32_file(name, 0o444, value);
    }

    fn u32_file(&self, name: &CStr, mode: u16, value: &'static AtomicU32) {
        // SAFETY: `name` is valid and the parent is ours. `value` is static,
        // so it outlives the file; debugfs reads (and, with mode 0644,
        // writes) it as a plain `u32`, which `AtomicU32` has the layout of.
        unsafe {
            bindings::debugfs_create_u32(name.as_char_ptr(), mode, self.dentry, value.as_ptr())
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

/// The contents of a read-only debugfs file that shows a `T`.
pub(crate) trait ShowData: Send + Sync + 'static {
    /// Writes the file's contents.
    fn show(&self, m: &mut SeqFile) -> fmt::Result;
}

/// The `file_operations` of a file showing a [`ShowData`].
///
/// # Invariants
///
/// The table's `open` is `data_open_tramp::<T>`; the rest are seq_file's.
#[repr(transparent)]
pub(crate) struct DataFops<T: ShowData>(bindings::file_operations, PhantomData<T>);

// SAFETY: The table is immutable.
unsafe impl<T: ShowData> Sync for DataFops<T> {}

impl<T: ShowData> DataFops<T> {
    /// Builds the table; `owner` is pinned while the file is open.
    pub(crate) const fn new(owner: &'static ThisModule) -> Self {
        // SAFETY: All-zeroes is a valid `file_operations`.
        let mut fops: bindings::file_operations = unsafe { core::mem::zeroed() };
        fops.owner = owner.as_ptr();
        fops.open = Some(data_open_tramp::<T>);
        fops.read = Some(bindings::seq_read);
        fops.llseek = Some(bindings::seq_lseek);
        fops.release = Some(bindings::single_release);
        Self(fops, PhantomData)
    }
}

/// The `show` function of a file made by [`DataDir::new`] or
/// [`Dir::create_file`].
///
/// # Safety
///
/// Called by seq_file with a valid seq_file whose `private` is the inode's
/// `i_private`: a static `T`, or one kept alive by the [`DataDir`] that owns
/// the file.
unsafe extern "C" fn data_show_tramp<T: ShowData>(
    m: *mut bindings::seq_file,
    _v: *mut kernel::ffi::c_void,
) -> kernel::ffi::c_int {
    // SAFETY: `m` is valid for the call; `private` was set by `single_open`
    // in `data_open_tramp`.
    let data = unsafe { (*m).private }.cast::<T>();
    // SAFETY: Either `data` is static, or debugfs proxies `read` (which calls
    // `show`) with the file's active reference: `debugfs_remove` in
    // `DataDir::drop` waits for it to be released before the `Arc<T>` it holds
    // is dropped. So `data` is alive.
    let data = unsafe { &*data };
    // SAFETY: seq_file calls `show` with a valid seq_file, ours for the call.
    let m = unsafe { &mut *m.cast::<SeqFile>() };
    match data.show(m) {
        Ok(()) => 0,
        Err(_) => EINVAL.to_errno(),
    }
}

/// `open` of a file made by [`DataDir::new`] or [`Dir::create_file`].
///
/// # Safety
///
/// Called by the VFS (through debugfs' proxy) with a valid inode and a file
/// being opened with `DataFops<T>`.
unsafe extern "C" fn data_open_tramp<T: ShowData>(
    inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> kernel::ffi::c_int {
    // SAFETY: `inode` is valid; its `i_private` is the `T` (see
    // `Dir::create_file` and `DataDir`).
    let data = unsafe { (*inode).i_private };
    // SAFETY: `file` is being opened; `single_open` sets up its seq_file.
    unsafe { bindings::single_open(file, Some(data_show_tramp::<T>), data) }
}

/// A debugfs directory `parent/name` holding one read-only file that shows a
/// shared `T`; removed on drop, before its reference to the `T` is dropped.
///
/// # Invariants
///
/// `dentry` is a debugfs directory we hold a reference to, whose file's
/// `i_private` points to the `T` in `_data`.
pub(crate) struct DataDir<T: ShowData> {
    dentry: *mut bindings::dentry,
    /// Dropped after the file is removed (see `drop`).
    _data: Arc<T>,
}

// SAFETY: debugfs entries may be removed from any thread; `T` is `Send + Sync`.
unsafe impl<T: ShowData> Send for DataDir<T> {}
// SAFETY: `&DataDir` offers nothing but `&T`, and `T: Sync`.
unsafe impl<T: ShowData> Sync for DataDir<T> {}

impl<T: ShowData> DataDir<T> {
    /// Creates `parent/name/file` showing `data`, where `parent` is a
    /// top-level debugfs directory. `None` if `parent` does not exist (any
    /// more) or debugfs fails: statistics are optional.
    pub(crate) fn new(
        parent: &CStr,
        name: &CStr,
        file: &CStr,
        fops: &'static DataFops<T>,
        data: Arc<T>,
    ) -> Option<Self> {
        // SAFETY: `parent` is a valid string; a null parent means the root.
        // The result, if any, is a referenced dentry.
        let top = unsafe { bindings::debugfs_lookup(parent.as_char_ptr(), core::ptr::null_mut()) };
        if top.is_null() {
            return None;
        }
        // SAFETY: `top` is referenced, so it cannot be freed under us; if it
        // was removed meanwhile, debugfs refuses to create in it.
        let dir = unsafe { bindings::debugfs_create_dir(name.as_char_ptr(), top) };
        // SAFETY: We are done with `top`; `dput` balances `debugfs_lookup`.
        unsafe { bindings::dput(top) };
        if dir.is_null() || kernel::error::from_err_ptr(dir).is_err() {
            return None;
        }
        // SAFETY: `dir` was just created; our own reference keeps the dentry
        // valid even if its parent is removed (with it) before we are dropped.
        let dentry = unsafe { helpers::cfod_dget(dir) };
        let ptr: *const T = &*data;
        let ptr = ptr.cast_mut().cast::<kernel::ffi::c_void>();
        // SAFETY: `file` is valid, `fops` is static, `dentry` is a directory.
        // `ptr` stays valid until `drop` has removed the file (invariant).
        unsafe { bindings::debugfs_create_file(file.as_char_ptr(), 0o444, dentry, ptr, &fops.0) };
        // INVARIANT: `dentry` is referenced and its file shows `data`.
        Some(Self {
            dentry,
            _data: data,
        })
    }
}

impl<T: ShowData> Drop for DataDir<T> {
    fn drop(&mut self) {
        // SAFETY: `dentry` is ours (invariant). `debugfs_remove` removes the
        // directory and its file and waits until no `read` of the file is
        // running; later reads fail. Only then is `_data` dropped.
        unsafe { bindings::debugfs_remove(self.dentry) };
        // SAFETY: Balances the `dget` in `new`.
        unsafe { bindings::dput(self.dentry) };
    }
}
