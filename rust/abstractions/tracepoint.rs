// SPDX-License-Identifier: GPL-2.0

//! Whether a tracepoint is on, read without a call.
//!
//! A C caller of `trace_foo()` pays one test of the tracepoint's static key
//! (one patched jump with jump labels) when nobody listens, and nothing at
//! all without `CONFIG_TRACEPOINTS`. The backend emits cachefiles'
//! tracepoints through out-of-line helpers (`helpers.c`); it tests the key
//! first, so that a tracepoint nobody listens to costs it a load and a
//! branch, not the building of the event's arguments and a call. Later
//! kernels' `kernel::tracepoint::declare_trace!` does the test with a jump
//! label.
//!
//! C header: [`include/linux/tracepoint.h`](srctree/include/linux/tracepoint.h)

use core::sync::atomic::{AtomicI32, Ordering};
use kernel::ffi::c_char;

/// The start of a `struct tracepoint`: its name, then its static key, whose
/// first field counts the probes attached (`helpers.c` checks both offsets).
///
/// Only ever used as the type of a tracepoint defined in C.
#[repr(C)]
pub(crate) struct Tracepoint {
    _name: *const c_char,
    enabled: AtomicI32,
}

impl Tracepoint {
    /// Returns whether a probe is attached: `static_key_false()` without
    /// jump labels.
    #[inline(always)]
    pub(crate) fn is_on(&self) -> bool {
        self.enabled.load(Ordering::Relaxed) > 0
    }
}
