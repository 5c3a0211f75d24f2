// SPDX-License-Identifier: GPL-2.0

//! Completions: one-shot "done" events a thread can wait for.
//!
//! Mirrors later kernels' `kernel::sync::Completion` (`new`,
//! `wait_for_completion`), with the single-waiter `complete`, the killable
//! wait, and a hand-over of the completer's reference the backend needs.
//!
//! C header: [`include/linux/completion.h`](srctree/include/linux/completion.h)

use core::{
    marker::PhantomData,
    ptr,
    sync::atomic::{AtomicPtr, Ordering},
};
use kernel::{bindings, error::Result, prelude::*, sync::Arc, types::Opaque};

use super::helpers;

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

    /// Marks the completion done, waking one waiter (`complete()`).
    pub(crate) fn complete(&self) {
        // SAFETY: `inner` is initialised (type invariant).
        unsafe { bindings::complete(self.inner.get()) };
    }

    /// Waits until the completion is done or a fatal signal is pending.
    ///
    /// Returns `Err(ERESTARTSYS)` if interrupted.
    pub(crate) fn wait_for_completion_killable(&self) -> Result {
        // SAFETY: `inner` is initialised (type invariant).
        let ret = unsafe { bindings::wait_for_completion_killable(self.inner.get()) };
        if ret == 0 {
            Ok(())
        } else {
            Err(ERESTARTSYS)
        }
    }

    /// Waits, uninterruptibly, until the completion is done.
    pub(crate) fn wait_for_completion(&self) {
        // SAFETY: `inner` is initialised (type invariant).
        unsafe { bindings::wait_for_completion(self.inner.get()) };
    }

    /// Completes the completion `done` of `*this` and hands the caller's
    /// reference `this` over to the waiter, through `parked` (also a field of
    /// `*this`), instead of dropping it.
    ///
    /// The waiter takes the parked reference once its wait returned, so the
    /// last reference to `T`, and whatever dropping `T` does, is dropped by
    /// the waiter, never by the completer: the completer may be in a context
    /// that must not sleep.
    pub(crate) fn complete_handing_over<T: Send + Sync>(
        this: Arc<T>,
        done: impl for<'a> FnOnce(&'a T) -> &'a Completion,
        parked: impl for<'a> FnOnce(&'a T) -> &'a ArcSlot<T>,
    ) {
        let ptr = Arc::into_raw(this);
        // SAFETY: `ptr` comes from `into_raw`, whose reference is held until
        // it is given back just below, and then by `parked`.
        let t = unsafe { &*ptr };
        // SAFETY: `ptr` comes from `into_raw` above and is given back once.
        let old = parked(t).put(unsafe { Arc::from_raw(ptr) });
        // Only one completer: `old` is `None`, and if not, it is not the last
        // reference (the parked one is another).
        drop(old);
        // `t` stays valid through `complete`: the waiter holds a reference
        // and drops it (and the parked one) only after its wait returned,
        // which it does only once `complete` has released the completion's
        // internal lock, the last thing `complete` touches.
        done(t).complete();
    }
}

/// A slot for one `Arc<T>` reference, handed from one thread to another
/// with an atomic exchange, no lock.
///
/// # Invariants
///
/// `ptr` is null or a pointer from `Arc::into_raw` whose reference the slot
/// owns.
pub(crate) struct ArcSlot<T> {
    ptr: AtomicPtr<T>,
    _owns: PhantomData<Arc<T>>,
}

// SAFETY: The slot only moves `Arc<T>`s between threads, which `Arc<T>`
// allows for these `T`.
unsafe impl<T: Send + Sync> Send for ArcSlot<T> {}
// SAFETY: As above; every access is one atomic exchange.
unsafe impl<T: Send + Sync> Sync for ArcSlot<T> {}

impl<T> ArcSlot<T> {
    /// Creates an empty slot.
    pub(crate) const fn new() -> Self {
        // INVARIANT: Null.
        Self {
            ptr: AtomicPtr::new(ptr::null_mut()),
            _owns: PhantomData,
        }
    }

    /// Stores `arc`; returns the reference the slot held, if any.
    pub(crate) fn put(&self, arc: Arc<T>) -> Option<Arc<T>> {
        // INVARIANT: The slot now owns `arc`'s reference.
        let old = self
            .ptr
            .swap(Arc::into_raw(arc).cast_mut(), Ordering::AcqRel);
        // SAFETY: `old` was the slot's (type invariant), and the exchange
        // took it out: it is given back exactly once.
        (!old.is_null()).then(|| unsafe { Arc::from_raw(old) })
    }

    /// Takes the reference the slot holds, if any.
    pub(crate) fn take(&self) -> Option<Arc<T>> {
        let old = self.ptr.swap(ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: As in `put`.
        (!old.is_null()).then(|| unsafe { Arc::from_raw(old) })
    }
}

impl<T> Drop for ArcSlot<T> {
    fn drop(&mut self) {
        drop(self.take());
    }
}
