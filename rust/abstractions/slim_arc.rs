// SPDX-License-Identifier: GPL-2.0

//! A reference-counted allocation for hot paths: `kernel::sync::Arc`'s
//! shape, with its count inline and its memory straight from `kmalloc`.
//!
//! In 6.12 every `Arc` is allocated and freed through the kernel crate's
//! `krealloc` wrapper and counts through out-of-line `refcount_t` helpers;
//! a request to the daemon is created, shared and freed a few times per
//! cache miss, and those calls were a tenth of its cost
//! (`Documentation/benchmarks.md`). [`SlimArc`] calls `kmalloc` and `kfree`
//! directly and counts with atomics the compiler inlines, keeping
//! `refcount_t`'s rules: a count that would overflow saturates (the object
//! is then leaked, never freed early), and a put on a saturated count
//! changes nothing.
//!
//! Later kernels inline the helpers (`rust/helpers/`, LTO), which makes this
//! module unnecessary there.

use core::{
    marker::PhantomData,
    mem::{size_of, ManuallyDrop},
    ops::Deref,
    ptr::{self, NonNull},
    sync::atomic::{fence, AtomicU32, Ordering},
};
use kernel::{bindings, ffi::c_void, prelude::*, types::ForeignOwnable};

use super::{
    completion::{Completion, Outcome},
    slim_box::{kmalloc_pin_init, Headed},
};

/// A count at or above this is saturated: it no longer counts.
const SATURATED: u32 = 0xc000_0000;

/// The largest count that still counts (`refcount_t`'s `INT_MAX`).
const MAX: u32 = i32::MAX as u32;

/// The header of the allocation: the count, and an outcome in the room the
/// value's alignment leaves beside it.
///
/// # Invariants
///
/// While the outcome's "handed" bit is set, the count includes one
/// reference that no `SlimArc` holds: the completer's, handed over
/// ([`SlimArc::complete_handing_over`]) until [`SlimArc::reclaim`] clears
/// the bit and drops it.
struct ArcHead {
    refs: AtomicU32,
    outcome: Outcome,
}

// The outcome takes no room: the count alone would be padded to 8 bytes
// before any value that needs them.
const _: () = assert!(size_of::<ArcHead>() == 8);

/// The allocation: the header, then the value.
type Inner<T> = Headed<ArcHead, T>;

/// A pointer to a `T` shared by reference counting, like `Arc<T>`.
///
/// # Invariants
///
/// `ptr` points to an `Inner<T>` allocated with `kmalloc` whose `data` is
/// initialised and never moved (it is pinned), and whose count includes
/// this reference.
pub(crate) struct SlimArc<T> {
    ptr: NonNull<Inner<T>>,
    _owns: PhantomData<Inner<T>>,
}

// SAFETY: As for `Arc<T>`: the value is shared between threads and dropped
// by whichever drops the last reference.
unsafe impl<T: Send + Sync> Send for SlimArc<T> {}
// SAFETY: As above.
unsafe impl<T: Send + Sync> Sync for SlimArc<T> {}

impl<T> SlimArc<T> {
    /// Allocates a `T` (`GFP_KERNEL`: this may sleep) and initialises it in
    /// place with `init`, pinned, counted twice: returns two references to
    /// the one value, made without an atomic increment (the backend's one
    /// user, a request, is always shared at once with its queue). Its
    /// [`Outcome`] is pending, marked with `mark`.
    ///
    /// (6.12's `Flags` does not give its bits to other crates, hence no
    /// flags argument.)
    #[inline]
    pub(crate) fn pin_init_pair<E>(init: impl PinInit<T, E>, mark: u32) -> Result<(Self, Self)>
    where
        Error: From<E>,
    {
        let head = ArcHead {
            refs: AtomicU32::new(2),
            outcome: Outcome::pending(mark),
        };
        // SAFETY: Nothing is written after the value (no extra bytes).
        let ptr = unsafe { kmalloc_pin_init(head, 0, |_| {}, init)? };
        // INVARIANT: Allocated, initialised, counted once for each.
        Ok((
            Self {
                ptr,
                _owns: PhantomData,
            },
            Self {
                ptr,
                _owns: PhantomData,
            },
        ))
    }

    fn inner(&self) -> &Inner<T> {
        // SAFETY: The allocation lives while this reference counts (type
        // invariant).
        unsafe { self.ptr.as_ref() }
    }

    /// Returns the value's outcome.
    pub(crate) fn outcome(&self) -> &Outcome {
        &self.inner().head.outcome
    }

    /// Returns whether two references are to the same value.
    pub(crate) fn ptr_eq(a: &Self, b: &T) -> bool {
        ptr::eq(&a.inner().data, b)
    }
}

/// Adds a reference to the count at `refs` (`refcount_inc()`'s rules).
#[inline]
fn get(refs: &AtomicU32) {
    let old = refs.fetch_add(1, Ordering::Relaxed);
    if old == 0 || old >= MAX {
        // Not reachable while a caller holds a reference (its own counts)
        // unless the count overflowed: saturate, never free.
        refs.store(SATURATED, Ordering::Relaxed);
        kernel::pr_warn!("SlimArc: reference count saturated, leaking\n");
    }
}

impl<T> Clone for SlimArc<T> {
    fn clone(&self) -> Self {
        get(&self.inner().head.refs);
        // INVARIANT: Counted just above.
        Self {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T> Drop for SlimArc<T> {
    // Inline, as the call sites mostly drop a reference that is not the last
    // (or an empty `Option`); the last one's work is out of line.
    #[inline]
    fn drop(&mut self) {
        let refs = &self.inner().head.refs;
        let old = refs.fetch_sub(1, Ordering::Release);
        if old != 1 {
            if old == 0 || old > MAX {
                // Saturated (or an underflow, which a saturated count
                // covers): keep it saturated, free nothing.
                refs.store(SATURATED, Ordering::Relaxed);
            }
            return;
        }
        // SAFETY: This was the last reference.
        unsafe { self.drop_last() };
    }
}

impl<T> SlimArc<T> {
    /// Drops two references, with one change of the count if they are to
    /// the same value; freeing it, in line, if they were the last two.
    ///
    /// For a caller that gets back a reference it handed out, and usually
    /// drops the last ones.
    #[inline(always)]
    pub(crate) fn drop_both(a: Self, b: Self) {
        if a.ptr != b.ptr {
            drop(a);
            drop(b);
            return;
        }
        let mut a = ManuallyDrop::new(a);
        // Counted in the one change below.
        let _ = ManuallyDrop::new(b);
        let old = a.inner().head.refs.fetch_sub(2, Ordering::Release);
        if old != 2 {
            if !(2..=MAX).contains(&old) {
                // Saturated, or an underflow: as in `drop`.
                a.inner().head.refs.store(SATURATED, Ordering::Relaxed);
            }
            return;
        }
        // SAFETY: These were the last two references, both dropped now.
        unsafe { a.free() };
    }

    /// Returns whether `field` lies within the value.
    ///
    /// For a field borrowed from the value, the offset is a constant and
    /// the test compiles to nothing.
    #[inline(always)]
    fn holds<F>(&self, field: *const F) -> bool {
        let start = ptr::addr_of!(self.inner().data) as usize;
        let offset = (field as usize).wrapping_sub(start);
        size_of::<F>() <= size_of::<T>() && offset <= size_of::<T>() - size_of::<F>()
    }

    /// Records `result` in the value's [`Outcome`], calls `last` with the
    /// value and the outcome's mark, completes `done` (a field of the value)
    /// and hands this reference over to the waiter, instead of dropping it.
    ///
    /// The waiter takes the reference back with [`Self::reclaim`] once its
    /// wait returned, so the last reference to `T`, and whatever dropping
    /// `T` does, is dropped by the waiter, never by the completer: the
    /// completer may be in a context that must not sleep.
    ///
    /// If `done` is not a field of the value, nothing is handed over:
    /// `last` gets 0, `done` is completed and this reference is leaked.
    #[inline]
    pub(crate) fn complete_handing_over(
        this: Self,
        result: i32,
        done: impl for<'a> FnOnce(&'a T) -> &'a Completion,
        last: impl FnOnce(&T, u32),
    ) {
        let done: *const Completion = done(&this);
        let field = this.holds(done);
        // The reference is handed over (or, on a misuse, leaked): never
        // dropped here.
        let this = ManuallyDrop::new(this);
        let mark = if field {
            this.outcome().hand_over(result)
        } else {
            0
        };
        // Still alive: the waiter returns from its wait, and may drop the
        // value, only once `done` is completed below.
        last(&this, mark);
        // SAFETY: `done` was borrowed from the value. If it is a field of the
        // value, the reference handed over keeps it alive until the waiter
        // takes that reference back and drops it, which it does only once
        // its wait on `done` returned, so only after `complete` released the
        // completion's internal lock, the last thing `complete` touches;
        // else the leaked reference keeps it alive.
        unsafe { (*done).complete() };
    }

    /// Drops this reference and, if the completer handed its own over
    /// ([`Self::complete_handing_over`]), that one too, with one change of
    /// the count; returns the result the completer recorded, if it did.
    ///
    /// For the waiter, once its wait on the completion returned.
    #[inline(always)]
    pub(crate) fn reclaim(this: Self) -> Option<i32> {
        let (handed, result) = this.outcome().take_handed();
        if handed {
            // INVARIANT: The completer's reference to this same value, handed
            // over through its header and taken out of it just above, once.
            let other = Self {
                ptr: this.ptr,
                _owns: PhantomData,
            };
            Self::drop_both(this, other);
        } else {
            drop(this);
        }
        result
    }

    /// Drops the value and frees the allocation.
    ///
    /// # Safety
    ///
    /// The count just went from one to zero, by dropping `self`: this was the
    /// last reference.
    #[inline(never)]
    unsafe fn drop_last(&mut self) {
        // SAFETY: The caller's guarantee.
        unsafe { self.free() }
    }

    /// The body of [`Self::drop_last`].
    ///
    /// # Safety
    ///
    /// As for [`Self::drop_last`].
    #[inline(always)]
    unsafe fn free(&mut self) {
        // Every other reference's uses happen before the free.
        fence(Ordering::Acquire);
        let p = self.ptr.as_ptr();
        // SAFETY: This was the last reference (the safety requirement):
        // nothing else can reach the value, which is initialised (type
        // invariant) and dropped once.
        unsafe { ptr::drop_in_place(ptr::addr_of_mut!((*p).data)) };
        // SAFETY: Allocated with `kmalloc` (type invariant), freed once.
        unsafe { bindings::kfree(p.cast::<c_void>()) };
    }
}

impl<T> Deref for SlimArc<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner().data
    }
}

/// A reference to the value of a [`SlimArc`] that does not count, valid for
/// `'a`.
///
/// # Invariants
///
/// A counted reference keeps `ptr`'s allocation alive for `'a`.
pub(crate) struct SlimArcBorrow<'a, T> {
    ptr: NonNull<Inner<T>>,
    _p: PhantomData<&'a T>,
}

impl<T> Clone for SlimArcBorrow<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SlimArcBorrow<'_, T> {}

impl<T> Deref for SlimArcBorrow<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: Alive for `'a` (type invariant).
        unsafe { &self.ptr.as_ref().data }
    }
}

impl<T> From<SlimArcBorrow<'_, T>> for SlimArc<T> {
    /// Takes a counted reference to a borrowed value.
    fn from(b: SlimArcBorrow<'_, T>) -> Self {
        // SAFETY: Alive while `b` is (type invariant).
        get(unsafe { &b.ptr.as_ref().head.refs });
        // INVARIANT: Counted just above.
        Self {
            ptr: b.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T: 'static> ForeignOwnable for SlimArc<T> {
    type Borrowed<'a> = SlimArcBorrow<'a, T>;

    fn into_foreign(self) -> *const c_void {
        let p = self.ptr.as_ptr();
        core::mem::forget(self);
        p.cast_const().cast()
    }

    unsafe fn borrow<'a>(ptr: *const c_void) -> SlimArcBorrow<'a, T> {
        // INVARIANT: The foreign owner's reference keeps the allocation alive
        // until `from_foreign`, after every borrow (the safety requirement).
        SlimArcBorrow {
            // SAFETY: `ptr` comes from `into_foreign`: not null.
            ptr: unsafe { NonNull::new_unchecked(ptr.cast_mut().cast()) },
            _p: PhantomData,
        }
    }

    unsafe fn from_foreign(ptr: *const c_void) -> Self {
        // INVARIANT: The reference `into_foreign` gave up, taken back once
        // (the safety requirement).
        Self {
            // SAFETY: `ptr` comes from `into_foreign`: not null.
            ptr: unsafe { NonNull::new_unchecked(ptr.cast_mut().cast()) },
            _owns: PhantomData,
        }
    }
}
