// SPDX-License-Identifier: GPL-2.0

//! A raw work item, for abstractions that manage the lifetime of what the
//! work refers to themselves.
//!
//! Later kernels' `kernel::workqueue` offers typed work items (`Work`,
//! `WorkItem`) for `Arc` and `KBox` owners; a work item embedded in a C
//! object's private data and owning a reference to that object, cancelled
//! with `cancel_work_sync`, needs this lower-level one.
//!
//! C header: [`include/linux/workqueue.h`](srctree/include/linux/workqueue.h)

use kernel::{bindings, prelude::*, types::Opaque};

use super::helpers;

/// A `struct work_struct` with a fixed function.
///
/// # Invariants
///
/// `work` is an initialised work item.
#[pin_data]
#[repr(transparent)]
pub(crate) struct RawWork {
    #[pin]
    work: Opaque<bindings::work_struct>,
}

// SAFETY: Work items may be queued and cancelled from any thread.
unsafe impl Send for RawWork {}
// SAFETY: All work item operations are internally synchronised.
unsafe impl Sync for RawWork {}

impl RawWork {
    /// Creates a work item that runs `func` when queued.
    pub(crate) fn new(
        func: unsafe extern "C" fn(*mut bindings::work_struct),
    ) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `slot` is valid for writes; `INIT_WORK` initialises it.
            work <- Opaque::ffi_init(|slot| unsafe { helpers::cfod_init_work(slot, Some(func)) }),
        })
    }

    /// Queues the work on `wq`; returns `false` if it was already pending.
    ///
    /// # Safety
    ///
    /// `wq` must be a valid workqueue, and `self` must stay alive and valid
    /// for the function given to [`RawWork::new`] until that function has run
    /// or the work has been cancelled.
    pub(crate) unsafe fn queue(&self, wq: *mut bindings::workqueue_struct) -> bool {
        // SAFETY: `work` is initialised; the caller guarantees the rest.
        unsafe { helpers::cfod_queue_work(wq, self.work.get()) }
    }

    /// Cancels the work if pending and waits for a running instance to finish.
    ///
    /// Returns `true` if the work was pending (and so will not run).
    pub(crate) fn cancel_sync(&self) -> bool {
        // SAFETY: `work` is initialised (type invariant).
        unsafe { bindings::cancel_work_sync(self.work.get()) }
    }
}
