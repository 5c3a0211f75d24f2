// SPDX-License-Identifier: GPL-2.0

//! Sleeping for a while.
//!
//! Later kernels have `kernel::time::delay::fsleep`; the backend keeps
//! `msleep`'s exact behaviour.
//!
//! C header: [`include/linux/delay.h`](srctree/include/linux/delay.h)

use super::helpers;

/// Sleeps for at least `ms` milliseconds. Process context only.
pub(crate) fn msleep(ms: u32) {
    // SAFETY: `msleep` has no precondition but being allowed to sleep, which
    // it checks itself (`might_sleep`).
    unsafe { helpers::cfod_msleep(ms) }
}
