// SPDX-License-Identifier: GPL-2.0

//! Error codes the 6.12 `kernel` crate does not name, and `MAX_ERRNO`.
//!
//! Later kernels name more codes in `kernel::error::code` (as constants; the
//! 6.12 crate offers no `const` way to build an [`Error`] from outside it,
//! hence functions here).
//!
//! C header: [`include/uapi/asm-generic/errno.h`](srctree/include/uapi/asm-generic/errno.h)

use kernel::{bindings, error::Error};

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
