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
    ops::Deref,
    ptr,
    sync::atomic::{AtomicPtr, Ordering},
};
use kernel::{
    bindings,
    error::Result,
    ffi::c_void,
    prelude::*,
    types::{ForeignOwnable, Opaque},
};

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

/// The lockdep class of the wait queues of the completions made here, as
/// `init_completion()` makes one for each of its call sites.
struct ClassKey(Opaque<bindings::lock_class_key>);

// SAFETY: Only lockdep uses the key, which it synchronises itself.
unsafe impl Sync for ClassKey {}

// Static, as lockdep requires of a key: the module's data.
static WAIT_CLASS: ClassKey = ClassKey(Opaque::uninit());

impl Completion {
    /// Creates a completion that is not done.
    ///
    /// `init_completion()` is inline: this does what it does (`done` zero,
    /// then the wait queue initialised) with one call, to the function it
    /// calls, rather than two through a helper.
    #[inline]
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `slot` is valid for writes: `done` is written, then
            // the wait queue initialised with a static key and name.
            inner <- Opaque::ffi_init(|slot: *mut bindings::completion| unsafe {
                (&raw mut (*slot).done).write(0);
                bindings::__init_swait_queue_head(
                    &raw mut (*slot).wait,
                    c"&x->wait".as_ptr().cast(),
                    WAIT_CLASS.0.get(),
                )
            }),
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
    pub(crate) fn complete_handing_over<T, P>(
        this: P,
        done: impl for<'a> FnOnce(&'a T) -> &'a Completion,
        parked: impl for<'a> FnOnce(&'a T) -> &'a RefSlot<P>,
    ) where
        P: ForeignOwnable + Deref<Target = T>,
    {
        let t: *const T = &*this;
        // SAFETY: Moving `this` into the slot does not move `*t`, which `this`
        // keeps alive until it is parked, and the parked reference after
        // that. It stays valid through `complete` below: the waiter holds a
        // reference and drops it (and the parked one) only after its wait
        // returned, which it does only once `complete` has released the
        // completion's internal lock, the last thing `complete` touches.
        let t = unsafe { &*t };
        // Only one completer: the slot is empty.
        parked(t).put(this);
        done(t).complete();
    }
}

/// A slot for one counted reference `P` (an `Arc`-like pointer), handed
/// from one thread to another with an atomic store and exchange, no lock.
///
/// Made for a reference to the value the slot is in
/// ([`Completion::complete_handing_over`]): while the slot holds it, that
/// value cannot be dropped, so the slot is empty when it is dropped, and has
/// no `drop` to run. A reference left in it, or stored over another, is
/// leaked, never freed twice.
///
/// # Invariants
///
/// `ptr` is null or a pointer from `P::into_foreign` whose reference the
/// slot owns.
pub(crate) struct RefSlot<P: ForeignOwnable> {
    ptr: AtomicPtr<c_void>,
    _owns: PhantomData<P>,
}

// SAFETY: The slot only moves `P`s between threads.
unsafe impl<P: ForeignOwnable + Send> Send for RefSlot<P> {}
// SAFETY: As above; every access is one atomic exchange.
unsafe impl<P: ForeignOwnable + Send> Sync for RefSlot<P> {}

impl<P: ForeignOwnable> RefSlot<P> {
    /// Creates an empty slot.
    pub(crate) const fn new() -> Self {
        // INVARIANT: Null.
        Self {
            ptr: AtomicPtr::new(ptr::null_mut()),
            _owns: PhantomData,
        }
    }

    /// Stores `r` in the slot, which is empty (else what it held leaks).
    pub(crate) fn put(&self, r: P) {
        // INVARIANT: The slot now owns `r`'s reference.
        self.ptr
            .store(r.into_foreign().cast_mut(), Ordering::Release);
    }

    /// Takes the reference the slot holds, if any.
    pub(crate) fn take(&self) -> Option<P> {
        let old = self.ptr.swap(ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: `old` was the slot's (type invariant), and the exchange
        // took it out: it is given back exactly once.
        unsafe { P::try_from_foreign(old) }
    }
}
