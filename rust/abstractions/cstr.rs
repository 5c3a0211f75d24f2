// SPDX-License-Identifier: GPL-2.0

//! A C string that C code lends for writing, split the way C splits it.
//!
//! cachefiles hands a devnode command's arguments to the backend as a
//! writable `char *` (no NUL inside: the devnode refuses a command with
//! one), and `ondemand.c` splits them in place with `strchr()`. Building
//! `&CStr`s would measure each part again; [`CStrMut::split_once`] makes
//! both halves from the one `strchr()`, and the parsers read each up to its
//! NUL, as C's do.
//!
//! C header: [`include/linux/string.h`](srctree/include/linux/string.h)

use core::{marker::PhantomData, ptr::NonNull};
use kernel::{bindings, ffi::c_char};

/// A NUL-terminated string, writable, lent by C code for `'a`.
///
/// # Invariants
///
/// `ptr` points to a NUL-terminated string that is valid for reads and
/// writes, and used by nothing else, for `'a`.
pub(crate) struct CStrMut<'a> {
    ptr: NonNull<c_char>,
    _p: PhantomData<&'a mut [u8]>,
}

impl<'a> CStrMut<'a> {
    /// Wraps a string C code lends.
    ///
    /// # Safety
    ///
    /// `ptr` is a NUL-terminated string, valid for reads and writes and
    /// used by nothing else for `'a`.
    pub(crate) unsafe fn from_raw(ptr: NonNull<c_char>) -> Self {
        // INVARIANT: The caller's guarantee.
        Self {
            ptr,
            _p: PhantomData,
        }
    }

    /// Returns whether the string is empty.
    pub(crate) fn is_empty(&self) -> bool {
        // SAFETY: The string has at least its NUL (type invariant).
        unsafe { *self.ptr.as_ptr() == 0 }
    }

    /// Splits the string at the first `sep` (not NUL), which becomes the
    /// first part's NUL, as `strchr()` then a store of 0 do in C; `None`
    /// if there is no `sep`.
    ///
    /// Neither part is measured: each stays a string that ends at its NUL,
    /// as in C, for parsers that read up to it.
    pub(crate) fn split_once(self, sep: u8) -> Option<(CStrMut<'a>, CStrMut<'a>)> {
        if sep == 0 {
            return None;
        }
        let s = self.ptr.as_ptr();
        // SAFETY: `s` is a NUL-terminated string (type invariant).
        let at = unsafe { bindings::strchr(s, kernel::ffi::c_int::from(sep)) };
        let at = NonNull::new(at)?;
        // SAFETY: `at` points to a `sep` byte of the string, not its NUL
        // (`sep` is not 0), so the string goes on after it, and the byte
        // after it is not at address 0; it is writable (type invariant).
        let rest = unsafe {
            *at.as_ptr() = 0;
            NonNull::new_unchecked(at.as_ptr().add(1))
        };
        // INVARIANT: The NUL written at `at` ends the first part; the second
        // ends at the string's own NUL. The two do not overlap, and each is
        // writable and used by nothing else for `'a`: `self` is consumed.
        Some((
            CStrMut {
                ptr: self.ptr,
                _p: PhantomData,
            },
            CStrMut {
                ptr: rest,
                _p: PhantomData,
            },
        ))
    }

    /// Returns the string's address, for C functions that read it up to its
    /// NUL.
    pub(crate) fn as_char_ptr(&self) -> *const c_char {
        self.ptr.as_ptr()
    }
}
