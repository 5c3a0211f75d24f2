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
    mem::ManuallyDrop,
    ops::Deref,
    ptr::{self, NonNull},
    sync::atomic::{fence, AtomicU32, Ordering},
};
use kernel::{bindings, ffi::c_void, prelude::*, types::ForeignOwnable};

use super::slim_box::{kmalloc_pin_init, Headed};

/// A count at or above this is saturated: it no longer counts.
const SATURATED: u32 = 0xc000_0000;

/// The largest count that still counts (`refcount_t`'s `INT_MAX`).
const MAX: u32 = i32::MAX as u32;

/// The allocation: the count, then the value.
type Inner<T> = Headed<AtomicU32, T>;

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
    /// user, a request, is always shared at once with its queue).
    ///
    /// (6.12's `Flags` does not give its bits to other crates, hence no
    /// flags argument.)
    #[inline]
    pub(crate) fn pin_init_pair<E>(init: impl PinInit<T, E>) -> Result<(Self, Self)>
    where
        Error: From<E>,
    {
        // SAFETY: Nothing is written after the value (no extra bytes).
        let ptr = unsafe { kmalloc_pin_init(AtomicU32::new(2), 0, |_| {}, init)? };
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
        get(&self.inner().head);
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
        let refs = &self.inner().head;
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
        let old = a.inner().head.fetch_sub(2, Ordering::Release);
        if old != 2 {
            if !(2..=MAX).contains(&old) {
                // Saturated, or an underflow: as in `drop`.
                a.inner().head.store(SATURATED, Ordering::Relaxed);
            }
            return;
        }
        // SAFETY: These were the last two references, both dropped now.
        unsafe { a.free() };
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
        get(unsafe { &b.ptr.as_ref().head });
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
