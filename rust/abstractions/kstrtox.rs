// SPDX-License-Identifier: GPL-2.0

//! The kernel's integer parsers, with their exact semantics.
//!
//! Later kernels parse in Rust (`kernel::str::parse_int`); copen must accept
//! exactly what `kstrtoul`/`kstrtol` accept, so the C functions are called.
//!
//! C header: [`include/linux/kstrtox.h`](srctree/include/linux/kstrtox.h)

use kernel::{bindings, prelude::*};

use super::{cstr::CStrMut, error::to_result};

/// `kstrtoul()`: an unsigned long (64-bit here), optional leading `+`, one
/// optional trailing newline; base 0 detects `0x` (hex) and `0` (octal).
///
/// Errors: `EINVAL` (not a number), `ERANGE` (overflow).
pub(crate) fn kstrtoul(s: &CStrMut<'_>, base: u32) -> Result<u64> {
    const _: () = assert!(core::mem::size_of::<kernel::ffi::c_ulong>() == 8);
    let mut res: u64 = 0;
    // SAFETY: `s` is NUL-terminated; `res` is valid for writes.
    to_result(unsafe { bindings::kstrtoull(s.as_char_ptr(), base, &mut res) })?;
    Ok(res)
}

/// `kstrtol()`: a signed long (64-bit here), as [`kstrtoul`] but with an
/// optional leading `-` too.
pub(crate) fn kstrtol(s: &CStrMut<'_>, base: u32) -> Result<i64> {
    let mut res: i64 = 0;
    // SAFETY: `s` is NUL-terminated; `res` is valid for writes.
    to_result(unsafe { bindings::kstrtoll(s.as_char_ptr(), base, &mut res) })?;
    Ok(res)
}
