// SPDX-License-Identifier: GPL-2.0

//! A C string that C code lends for writing, split the way C splits it.
//!
//! cachefiles hands a devnode command's arguments to the backend as a
//! writable `char *` (no NUL inside: the devnode refuses a command with
//! one), and `ondemand.c` splits them in place with `strchr()`. Building
//! `&CStr`s from byte slices would scan each part again for an inner NUL;
//! [`CStrMut::split_once`] makes both halves from the one `strchr()`.
//!
//! C header: [`include/linux/string.h`](srctree/include/linux/string.h)

use core::{marker::PhantomData, ptr::NonNull};
use kernel::{bindings, ffi::c_char, prelude::*};

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
    pub(crate) fn split_once(self, sep: u8) -> Option<(&'a CStr, &'a CStr)> {
        if sep == 0 {
            return None;
        }
        let s = self.ptr.as_ptr();
        // SAFETY: `s` is a NUL-terminated string (type invariant).
        let at = unsafe { bindings::strchr(s, kernel::ffi::c_int::from(sep)) };
        if at.is_null() {
            return None;
        }
        // SAFETY: `at` points into the string (`strchr`'s result), after
        // or at its start.
        let first_len = unsafe { at.offset_from(s) } as usize;
        // SAFETY: `at` points to a `sep` byte of the string, not its NUL
        // (`sep` is not 0), so a NUL-terminated rest starts after it.
        let rest = unsafe { at.add(1) };
        // SAFETY: `rest` is NUL-terminated (above).
        let rest_len = unsafe { bindings::strlen(rest) };
        // With their NULs; neither sum can overflow for a string in memory.
        let (first_len, rest_len) = (first_len.checked_add(1)?, rest_len.checked_add(1)?);
        // SAFETY: `at` is writable (type invariant); the NUL written there
        // ends the first part, which had no NUL before it (`strchr` found
        // none), and the second part ends at the string's own NUL, with
        // none before it (`strlen`). Each slice is its part with its NUL.
        // Both are only read from now on, for `'a`: `self` is consumed.
        unsafe {
            *at = 0;
            Some((
                CStr::from_bytes_with_nul_unchecked(core::slice::from_raw_parts(
                    s.cast::<u8>(),
                    first_len,
                )),
                CStr::from_bytes_with_nul_unchecked(core::slice::from_raw_parts(
                    rest.cast::<u8>(),
                    rest_len,
                )),
            ))
        }
    }
}
