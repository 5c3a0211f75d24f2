// SPDX-License-Identifier: GPL-2.0

//! Completions: one-shot "done" events a thread can wait for.
//!
//! C header: [`include/linux/completion.h`](srctree/include/linux/completion.h)

use kernel::{bindings, error::Result, prelude::*, types::Opaque};

use crate::helpers;

/// A `struct completion`.
///
/// # Invariants
///
/// `inner` is an initialised completion.
#[pin_data]
pub(crate) struct Completion {
    #[pin]
    inner: Opaque<bindings::completion>,
}

// SAFETY: A completion may be completed and waited for from any thread.
unsafe impl Send for Completion {}
// SAFETY: All operations on a completion are internally synchronised.
unsafe impl Sync for Completion {}

impl Completion {
    /// Creates a completion that is not done.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `slot` is valid for writes; `init_completion` initialises it.
            inner <- Opaque::ffi_init(|slot| unsafe { helpers::cfod_init_completion(slot) }),
        })
    }

    /// Marks the completion done, waking a waiter.
    pub(crate) fn complete(&self) {
        // SAFETY: `inner` is initialised (type invariant).
        unsafe { bindings::complete(self.inner.get()) };
    }

    /// Waits until the completion is done or a fatal signal is pending.
    ///
    /// Returns `Err(ERESTARTSYS)` if interrupted.
    pub(crate) fn wait_killable(&self) -> Result {
        // SAFETY: `inner` is initialised (type invariant).
        let ret = unsafe { bindings::wait_for_completion_killable(self.inner.get()) };
        if ret == 0 {
            Ok(())
        } else {
            Err(ERESTARTSYS)
        }
    }

    /// Waits, uninterruptibly, until the completion is done.
    pub(crate) fn wait(&self) {
        // SAFETY: `inner` is initialised (type invariant).
        unsafe { bindings::wait_for_completion(self.inner.get()) };
    }
}
