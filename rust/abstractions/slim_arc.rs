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
//! Its header may also hold a [`Loan`]: something the value may use that
//! the scope which made the value lends it for as long as it lives, such as
//! an object the scope holds a reference on. [`SlimArc::lend`] makes such a
//! value and ends the loan before it returns: it frees the value if no other
//! reference to it is left, and secures the loan first if one is.
//!
//! Later kernels inline the helpers (`rust/helpers/`, LTO), which makes the
//! allocation and the count unnecessary there; not the loan.

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

/// What the header of a [`SlimArc`] holds for its value besides the count: a
/// loan from the scope that made the value ([`SlimArc::lend`]), or nothing
/// (`()`).
///
/// A loan is only reachable through a reference to its value, by `&`: it
/// cannot be moved out of the header. It is dropped with the value if it was
/// secured, or if the value outlived its lender; [`SlimArc::lend`] frees a
/// value whose loan it did not secure without dropping the loan, so a loan
/// that is never secured must not need dropping.
///
/// # Safety
///
/// Once [`Loan::secure`] has returned, what the loan gives access to stays
/// valid as long as the loan does, whichever scope drops it.
pub(crate) unsafe trait Loan: Send + Sync {
    /// Makes the loan independent of the scope that made it: called by
    /// [`SlimArc::lend`] while that scope is still running, if a reference
    /// to the value is left when it ends.
    fn secure(&self);
}

// SAFETY: Lends nothing.
unsafe impl Loan for () {
    fn secure(&self) {}
}

/// The header of the allocation: the count, an outcome in the room the
/// value's alignment leaves beside it, and the loan.
///
/// # Invariants
///
/// While the outcome's "handed" bit is set, the count includes one
/// reference that no `SlimArc` holds: the completer's, handed over
/// ([`SlimArc::complete_handing_over`]), or one handed back uncompleted
/// ([`SlimArc::hand_back`]), to the lender, which drops it when the loan
/// ends ([`SlimArc::lend`]).
///
/// The loan is valid for as long as it lives: a value that outlives the
/// scope that made it ([`SlimArc::lend`]) has had it secured.
struct ArcHead<L> {
    refs: AtomicU32,
    outcome: Outcome,
    loan: L,
}

// The outcome takes no room: the count alone would be padded to 8 bytes
// before any value that needs them.
const _: () = assert!(size_of::<ArcHead<()>>() == 8);

/// The allocation: the header, then the value.
type Inner<T, L> = Headed<ArcHead<L>, T>;

/// A pointer to a `T` shared by reference counting, like `Arc<T>`, whose
/// header holds a loan `L` ([`Loan`]).
///
/// # Invariants
///
/// `ptr` points to an `Inner<T, L>` allocated with `kmalloc` whose `data`
/// is initialised and never moved (it is pinned), and whose count includes
/// this reference.
pub(crate) struct SlimArc<T, L: Loan = ()> {
    ptr: NonNull<Inner<T, L>>,
    _owns: PhantomData<Inner<T, L>>,
}

// SAFETY: As for `Arc<T>`: the value and its loan are shared between threads
// and dropped by whichever drops the last reference.
unsafe impl<T: Send + Sync, L: Loan> Send for SlimArc<T, L> {}
// SAFETY: As above.
unsafe impl<T: Send + Sync, L: Loan> Sync for SlimArc<T, L> {}

impl<T, L: Loan> SlimArc<T, L> {
    /// Allocates a `T` (`GFP_KERNEL`: this may sleep), initialised in place
    /// with `init` and pinned, with `loan` in its header and a pending
    /// [`Outcome`] marked with `mark`; runs `f` with two references to it,
    /// counted together without an atomic increment: the lender's, borrowed,
    /// and one `f` owns. Then ends the loan.
    ///
    /// Ending the loan: if the references left are the lender's and the one
    /// handed over to it ([`Self::complete_handing_over`],
    /// [`Self::hand_back`]),
    /// nobody else can reach the value, which is freed here, loan included.
    /// Otherwise the loan is secured ([`Loan::secure`]) before those are
    /// dropped. So the value never outlives this call with a loan that is
    /// not secured, whatever `f` did with its references.
    ///
    /// Returns what `f` returned.
    ///
    /// (6.12's `Flags` does not give its bits to other crates, hence no
    /// flags argument.)
    #[inline(always)]
    pub(crate) fn lend<R>(
        loan: L,
        init: impl PinInit<T>,
        mark: u32,
        f: impl FnOnce(&Self, Self) -> R,
    ) -> Result<R> {
        let head = ArcHead {
            refs: AtomicU32::new(2),
            outcome: Outcome::pending(mark),
            loan,
        };
        // SAFETY: Nothing is written after the value (no extra bytes).
        let ptr = unsafe { kmalloc_pin_init(head, 0, |_| {}, init)? };
        // INVARIANT: Allocated, initialised, counted once for each. The
        // lender's is never dropped as a `SlimArc`: `end_loan` takes it.
        let lender = ManuallyDrop::new(Self {
            ptr,
            _owns: PhantomData,
        });
        let other = Self {
            ptr,
            _owns: PhantomData,
        };
        let ret = f(&lender, other);
        Self::end_loan(lender);
        Ok(ret)
    }

    /// Ends the loan of [`Self::lend`]: drops the lender's reference and the
    /// one handed over to it, if any, freeing the value if they are the last
    /// ones and securing the loan first if they are not.
    #[inline(always)]
    fn end_loan(mut lender: ManuallyDrop<Self>) {
        let ours = 1 + u32::from(lender.outcome().handed());
        let refs = &lender.inner().head.refs;
        if refs.load(Ordering::Relaxed) != ours {
            // Somebody else holds the value: the loan must outlive the
            // lender's scope, which is still running.
            lender.inner().head.loan.secure();
            let old = refs.fetch_sub(ours, Ordering::Release);
            if old != ours {
                if old < ours || old > MAX {
                    // Saturated, or an underflow: as in `drop`.
                    refs.store(SATURATED, Ordering::Relaxed);
                }
                return;
            }
            // The others were dropped meanwhile, and the loan is secured:
            // these were the last references.
            // SAFETY: As below.
            unsafe { lender.free() };
            return;
        }
        // SAFETY: No reference is counted but the lender's and the one
        // handed over to it, which are dropped here, together: they were
        // the last ones, and nobody can make another without holding one.
        // The loan was not secured, so it is not dropped (`Loan`).
        unsafe { lender.free_value() };
    }

    fn inner(&self) -> &Inner<T, L> {
        // SAFETY: The allocation lives while this reference counts (type
        // invariant).
        unsafe { self.ptr.as_ref() }
    }

    /// Returns the value's outcome.
    pub(crate) fn outcome(&self) -> &Outcome {
        &self.inner().head.outcome
    }

    /// Returns the value's loan.
    pub(crate) fn loan(this: &Self) -> &L {
        &this.inner().head.loan
    }

    /// Returns whether two references are to the same value.
    pub(crate) fn ptr_eq(a: &Self, b: &T) -> bool {
        ptr::eq(&a.inner().data, b)
    }

    /// Returns the size of the allocation of a value: its header and the
    /// value.
    // For build-time assertions, which lock debugging may switch off.
    #[allow(dead_code)]
    pub(crate) const fn alloc_size() -> usize {
        size_of::<Inner<T, L>>()
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

impl<T, L: Loan> Clone for SlimArc<T, L> {
    fn clone(&self) -> Self {
        get(&self.inner().head.refs);
        // INVARIANT: Counted just above.
        Self {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T, L: Loan> Drop for SlimArc<T, L> {
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

impl<T, L: Loan> SlimArc<T, L> {
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
    /// The waiter is the lender of [`Self::lend`], which drops the reference
    /// when the loan ends, after its wait returned: so the last reference to
    /// `T`, and whatever dropping `T` does, is dropped by the waiter, never
    /// by the completer, which may be in a context that must not sleep.
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
        // drops it, which it does only once its wait on `done` returned, so
        // only after `complete` released the completion's internal lock, the
        // last thing `complete` touches; else the leaked reference keeps it
        // alive.
        unsafe { (*done).complete() };
    }

    /// Hands this reference over to the lender without completing the value:
    /// for a reference whose value will never be completed, which the lender
    /// drops with its own when the loan ends ([`Self::lend`]), in one go,
    /// where dropping it here would be an atomic change of the count more.
    ///
    /// At most one reference is handed over per value, by this or by
    /// [`Self::complete_handing_over`]; one more is leaked, never freed.
    #[inline(always)]
    pub(crate) fn hand_back(this: Self) {
        // INVARIANT: The "handed" bit set, for this reference, which no
        // `SlimArc` holds any more.
        ManuallyDrop::new(this).outcome().hand_back();
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
    /// As for [`Self::drop_last`], or for the last references dropped
    /// together ([`Self::end_loan`]).
    #[inline(always)]
    unsafe fn free(&mut self) {
        // SAFETY: The caller's guarantee: nothing else can reach the loan,
        // which is dropped once, with the value below.
        unsafe { ptr::drop_in_place(ptr::addr_of_mut!((*self.ptr.as_ptr()).head.loan)) };
        // SAFETY: The caller's guarantee.
        unsafe { self.free_value() }
    }

    /// [`Self::free`] without dropping the loan.
    ///
    /// # Safety
    ///
    /// As for [`Self::free`]; the loan needs no drop (it was not secured,
    /// [`Loan`]) or was dropped.
    #[inline(always)]
    unsafe fn free_value(&mut self) {
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

impl<T, L: Loan> Deref for SlimArc<T, L> {
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
pub(crate) struct SlimArcBorrow<'a, T, L: Loan = ()> {
    ptr: NonNull<Inner<T, L>>,
    _p: PhantomData<&'a Inner<T, L>>,
}

impl<T, L: Loan> Clone for SlimArcBorrow<'_, T, L> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, L: Loan> Copy for SlimArcBorrow<'_, T, L> {}

impl<'a, T, L: Loan> SlimArcBorrow<'a, T, L> {
    fn inner(&self) -> &'a Inner<T, L> {
        // SAFETY: Alive for `'a` (type invariant).
        unsafe { self.ptr.as_ref() }
    }

    /// Returns the value's loan.
    pub(crate) fn loan(this: &Self) -> &'a L {
        &this.inner().head.loan
    }
}

impl<T, L: Loan> Deref for SlimArcBorrow<'_, T, L> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner().data
    }
}

impl<T, L: Loan> From<SlimArcBorrow<'_, T, L>> for SlimArc<T, L> {
    /// Takes a counted reference to a borrowed value.
    fn from(b: SlimArcBorrow<'_, T, L>) -> Self {
        get(&b.inner().head.refs);
        // INVARIANT: Counted just above.
        Self {
            ptr: b.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T: 'static, L: Loan + 'static> ForeignOwnable for SlimArc<T, L> {
    type Borrowed<'a> = SlimArcBorrow<'a, T, L>;

    fn into_foreign(self) -> *const c_void {
        let p = self.ptr.as_ptr();
        core::mem::forget(self);
        p.cast_const().cast()
    }

    unsafe fn borrow<'a>(ptr: *const c_void) -> SlimArcBorrow<'a, T, L> {
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
