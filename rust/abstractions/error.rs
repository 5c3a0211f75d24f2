// SPDX-License-Identifier: GPL-2.0

//! Error codes the 6.12 `kernel` crate does not name, `MAX_ERRNO`, and
//! in-line `to_result` and `from_err_ptr`.
//!
//! Later kernels name more codes in `kernel::error::code` (as constants; the
//! 6.12 crate offers no `const` way to build an [`Error`] from outside it,
//! hence functions here).
//!
//! C header: [`include/uapi/asm-generic/errno.h`](srctree/include/uapi/asm-generic/errno.h)

use kernel::{bindings, ffi::c_int, prelude::*};

/// The largest errno value (`MAX_ERRNO`, `include/linux/err.h`).
pub(crate) const MAX_ERRNO: u32 = bindings::MAX_ERRNO;

/// Returns `EMSGSIZE` ("Message too long").
pub(crate) fn emsgsize() -> Error {
    Error::from_errno(-(bindings::EMSGSIZE as i32))
}

/// Returns `EBADFD` ("File descriptor in bad state").
pub(crate) fn ebadfd() -> Error {
    Error::from_errno(-(bindings::EBADFD as i32))
}

/// `kernel::error::to_result`, in line: the 6.12 function is a call, made
/// on every OPEN (its keys) and copen (its two numbers).
#[inline(always)]
pub(crate) fn to_result(ret: c_int) -> Result {
    if ret < 0 {
        Err(Error::from_errno(ret))
    } else {
        Ok(())
    }
}

/// `kernel::error::from_err_ptr`, in line: the 6.12 function tests the
/// pointer with the `IS_ERR()` helper, a call, made on every OPEN (its
/// anonymous file).
///
/// An error pointer is one of the last [`MAX_ERRNO`] addresses, as
/// `IS_ERR_VALUE()` says; its errno is the address read as a signed number.
#[inline(always)]
pub(crate) fn from_err_ptr<T>(ptr: *mut T) -> Result<*mut T> {
    let addr = ptr as isize;
    if addr < 0 && addr >= -(MAX_ERRNO as isize) {
        // In `-MAX_ERRNO..0`: the cast keeps the value.
        Err(Error::from_errno(addr as c_int))
    } else {
        Ok(ptr)
    }
}
