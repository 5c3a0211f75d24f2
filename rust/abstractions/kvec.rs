// SPDX-License-Identifier: GPL-2.0

//! Filling a new `KVec<u8>` without the `KVec` methods that can panic.
//!
//! `KVec::extend_from_slice` and `KVec::push` are generic, so they are
//! compiled into this crate, with its overflow checks
//! (`CONFIG_RUST_OVERFLOW_CHECKS`): their `len + n` and `capacity - len`,
//! which the compiler cannot bound, make the module reference
//! `core::panicking` (which `make lint` refuses). Later kernels' `KVec` is
//! the same; this copies into the room `KVec::with_capacity` made instead.

use kernel::{alloc::Flags, prelude::*};

/// Returns a new vector holding `a` then `b`.
///
/// Errors: `ENOMEM`, also if the total length does not fit a `usize`.
pub(crate) fn concat(a: &[u8], b: &[u8], flags: Flags) -> Result<KVec<u8>> {
    let total = a.len().checked_add(b.len()).ok_or(ENOMEM)?;
    let mut v = KVec::with_capacity(total, flags)?;
    let dst = v.as_mut_ptr();
    // SAFETY: `v`'s buffer was just allocated with room for `total` bytes
    // (`with_capacity`; or, if `total` is 0, is dangling and no byte is
    // copied), so `a` and `b` cannot overlap it; `a` fills its first
    // `a.len()` bytes and `b` the `b.len()` after them, within `total`.
    unsafe {
        core::ptr::copy_nonoverlapping(a.as_ptr(), dst, a.len());
        core::ptr::copy_nonoverlapping(b.as_ptr(), dst.add(a.len()), b.len());
    }
    // SAFETY: `total` is at most the capacity, and the first `total` bytes
    // were initialised just above.
    unsafe { v.set_len(total) };
    Ok(v)
}
