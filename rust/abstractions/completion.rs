// SPDX-License-Identifier: GPL-2.0

//! Completions: one-shot "done" events a thread can wait for.
//!
//! Mirrors later kernels' `kernel::sync::Completion` (`new`,
//! `wait_for_completion`), with the single-waiter `complete`, the killable
//! wait, and a hand-over of the completer's reference the backend needs.
//!
//! C header: [`include/linux/completion.h`](srctree/include/linux/completion.h)

use core::sync::atomic::{AtomicU32, Ordering};
use kernel::{bindings, error::Result, prelude::*, types::Opaque};

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
}

/// The outcome of a job a [`Completion`] reports the end of, in one 32-bit
/// atomic word: a mark (any 30-bit value, such as when the job was made)
/// while it is pending; then its result, and whether the completer's
/// reference to the value was handed over to the waiter.
///
/// Kept by a [`SlimArc`] beside its count, in the room its alignment leaves
/// there: [`SlimArc::complete_handing_over`] writes the result and the
/// hand-over, the waiter reads the result, and [`SlimArc::lend`] the
/// hand-over when its loan ends.
///
/// [`SlimArc`]: super::slim_arc::SlimArc
/// [`SlimArc::complete_handing_over`]: super::slim_arc::SlimArc::complete_handing_over
/// [`SlimArc::lend`]: super::slim_arc::SlimArc::lend
pub(crate) struct Outcome(AtomicU32);

/// Set once the job is done; bits 2 and up are then its result.
const DONE: u32 = 1;
/// Set while a reference handed over by the completer waits to be taken.
const HANDED: u32 = 2;

/// The largest mark: 30 bits.
pub(crate) const MARK_MAX: u32 = u32::MAX >> 2;

impl Outcome {
    /// A pending outcome marked with `mark`, of which the low 30 bits are
    /// kept.
    pub(super) const fn pending(mark: u32) -> Self {
        Self(AtomicU32::new(mark << 2))
    }

    /// Returns the mark, while the job is pending (once it is done, the
    /// bits of its result).
    #[inline]
    pub(crate) fn mark(&self) -> u32 {
        self.0.load(Ordering::Relaxed) >> 2
    }

    /// Returns the result recorded in `word`, if it is done: a 30-bit
    /// signed value (an errno fits).
    fn result_of(word: u32) -> Option<i32> {
        (word & DONE != 0).then_some((word as i32) >> 2)
    }

    /// Records the result, and a reference handed over with it; returns
    /// the mark it replaces (one exchange).
    #[inline]
    pub(super) fn hand_over(&self, result: i32) -> u32 {
        let word = ((result as u32) << 2) | DONE | HANDED;
        self.0.swap(word, Ordering::AcqRel) >> 2
    }

    /// Records a reference handed over without a result: the job is not
    /// done, and will not be (one `lock or`).
    #[inline]
    pub(super) fn hand_back(&self) {
        self.0.fetch_or(HANDED, Ordering::Release);
    }

    /// Returns whether a reference was handed over (with the result, or
    /// without one).
    ///
    /// For the waiter, once its wait returned: then nothing changes the
    /// word any more.
    #[inline]
    pub(super) fn handed(&self) -> bool {
        self.0.load(Ordering::Relaxed) & HANDED != 0
    }

    /// Returns the result, if the job is done.
    ///
    /// For the waiter, once its wait returned: the completion orders the
    /// completer's exchange before it.
    #[inline]
    pub(crate) fn result(&self) -> Option<i32> {
        Self::result_of(self.0.load(Ordering::Acquire))
    }
}
