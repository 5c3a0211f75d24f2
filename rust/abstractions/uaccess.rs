// SPDX-License-Identifier: GPL-2.0

//! A user buffer written to in line: the devnode's `read()` buffer.
//!
//! Shaped like `kernel::uaccess::UserSlice` and its `UserSliceWriter`, with
//! only the writes. The 6.12 crate's `write_slice` is a call, which copies
//! through the `copy_to_user()` helper, a second call: made for every OPEN
//! (its keys). Here both writes are in line and copy with `_copy_to_user()`,
//! as the crate's `write` does; a slice goes through `copy_to_user()`'s check
//! of the kernel object ([`write_slice`](UserSliceWriter::write_slice)).
//!
//! C header: [`include/linux/uaccess.h`](srctree/include/linux/uaccess.h)

use core::mem::size_of;
use kernel::{bindings, ffi::c_void, prelude::*, types::AsBytes};

/// A range of user memory (`kernel::uaccess::UserSlice`, writes only).
///
/// Making one checks nothing: each copy checks the addresses it touches.
pub(crate) struct UserSlice {
    ptr: usize,
    length: usize,
}

impl UserSlice {
    /// The `length` bytes of user memory at address `ptr`.
    #[inline(always)]
    pub(crate) fn new(ptr: usize, length: usize) -> Self {
        Self { ptr, length }
    }

    /// Returns a writer that fills the range from its start.
    #[inline(always)]
    pub(crate) fn writer(self) -> UserSliceWriter {
        UserSliceWriter {
            ptr: self.ptr,
            length: self.length,
        }
    }
}

/// Writes a [`UserSlice`] from its start (`kernel::uaccess::UserSliceWriter`).
///
/// A write that fails may have modified the user memory.
pub(crate) struct UserSliceWriter {
    ptr: usize,
    length: usize,
}

impl UserSliceWriter {
    /// Writes `value`'s bytes; `EFAULT` if they do not fit or the memory
    /// cannot be written.
    #[inline(always)]
    pub(crate) fn write<T: AsBytes>(&mut self, value: &T) -> Result {
        let len = size_of::<T>();
        if len > self.length {
            return Err(EFAULT);
        }
        // SAFETY: `value` is valid for reading `size_of::<T>()` bytes, all
        // initialised (`T: AsBytes`). The size is a constant: C's
        // `copy_to_user()` skips the object check for those, and so does
        // this call.
        let left = unsafe {
            bindings::_copy_to_user(
                self.ptr as *mut c_void,
                core::ptr::from_ref(value).cast::<c_void>(),
                len,
            )
        };
        self.advance(left, len)
    }

    /// Writes `data`; `EFAULT` if it does not fit or the memory cannot be
    /// written.
    ///
    /// With `CONFIG_HARDENED_USERCOPY`, through `copy_to_user()`, which checks
    /// that `data` lies in one kernel object (its length is not a constant);
    /// without it, that check is empty and the copy is `_copy_to_user()`.
    #[inline(always)]
    pub(crate) fn write_slice(&mut self, data: &[u8]) -> Result {
        let len = data.len();
        if len > self.length {
            return Err(EFAULT);
        }
        let to = self.ptr as *mut c_void;
        let from = data.as_ptr().cast::<c_void>();
        let left = if cfg!(CONFIG_HARDENED_USERCOPY) {
            // SAFETY: `data` is valid for reading `len` bytes.
            unsafe { bindings::copy_to_user(to, from, len) }
        } else {
            // SAFETY: As above.
            unsafe { bindings::_copy_to_user(to, from, len) }
        };
        self.advance(left, len)
    }

    /// Moves past the `len` bytes just written if none was `left` unwritten.
    #[inline(always)]
    fn advance(&mut self, left: usize, len: usize) -> Result {
        if left != 0 {
            return Err(EFAULT);
        }
        self.ptr = self.ptr.wrapping_add(len);
        // `len <= self.length`, checked by the caller.
        self.length -= len;
        Ok(())
    }
}
