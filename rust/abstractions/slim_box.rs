// SPDX-License-Identifier: GPL-2.0

//! An owned, pinned allocation for hot paths: `KBox`'s shape, its memory
//! straight from `kmalloc`, with room for a byte tail after the value.
//!
//! In 6.12 every `KBox` and `KVec` is allocated and freed through the kernel
//! crate's `krealloc` wrapper (`ReallocFunc::call`), about 16 instructions a
//! call before `kmalloc`/`kfree`'s own; an OPEN made three such
//! allocations and freed them the same way (`Documentation/benchmarks.md`,
//! "Sixth round"). [`SlimBox`] calls `kmalloc` and `kfree` directly, and
//! keeps a value and the bytes that go with it (an OPEN's keys) in one
//! allocation, as the C code does.
//!
//! A `SlimBox` never moves its value and gives no `&mut` to it: it is
//! always pinned, so a value with pinned fields (a work item) is built in
//! place with [`SlimBox::pin_init`].

use core::{
    marker::PhantomData,
    mem::{align_of, size_of},
    ops::Deref,
    pin::Pin,
    ptr::{self, NonNull},
};
use kernel::{bindings, ffi::c_void, prelude::*};

// `kmalloc` aligns every allocation to at least 8 bytes.
const KMALLOC_MIN_ALIGN: usize = 8;

/// A `kmalloc` allocation of [`SlimBox`] or `SlimArc`: a header (the
/// tail's length, the reference count), the value, then any tail bytes.
#[repr(C)]
pub(super) struct Headed<H, T> {
    pub(super) head: H,
    pub(super) data: T,
}

/// Allocates a `Headed<H, T>` with `extra` bytes after it (`GFP_KERNEL`:
/// this may sleep), writes `head`, lets `fill` write the `extra` bytes
/// (given their start), then initialises the value in place with `init`,
/// pinned: it is never moved until it is dropped in place before the
/// allocation is freed with `kfree`.
///
/// Errors: `ENOMEM`, also if the size does not fit a `usize`; `init`'s.
///
/// # Safety
///
/// `fill` writes no byte outside the `extra` it is given.
#[inline(always)]
pub(super) unsafe fn kmalloc_pin_init<H, T, E>(
    head: H,
    extra: usize,
    fill: impl FnOnce(*mut u8),
    init: impl PinInit<T, E>,
) -> Result<NonNull<Headed<H, T>>>
where
    Error: From<E>,
{
    const { assert!(align_of::<Headed<H, T>>() <= KMALLOC_MIN_ALIGN) };
    let size = size_of::<Headed<H, T>>().checked_add(extra).ok_or(ENOMEM)?;
    // SAFETY: `__kmalloc_noprof` may be called with any size, and with
    // `GFP_KERNEL` where sleeping is allowed, as this function's callers are.
    let raw = unsafe { bindings::__kmalloc_noprof(size, bindings::GFP_KERNEL) };
    let ptr = NonNull::new(raw.cast::<Headed<H, T>>()).ok_or(ENOMEM)?;
    let p = ptr.as_ptr();
    // SAFETY: `p` is valid for writes of a `Headed<H, T>` and aligned for it
    // (the assertion above); `extra` bytes follow it in the allocation.
    unsafe {
        ptr::addr_of_mut!((*p).head).write(head);
        fill(p.add(1).cast::<u8>());
    }
    // SAFETY: `data` is valid for writes, uninitialised, and never moved
    // again: the allocation is freed only after the value is dropped in
    // place.
    if let Err(e) = unsafe { init.__pinned_init(ptr::addr_of_mut!((*p).data)) } {
        // SAFETY: Allocated above; the initialiser left nothing to drop, and
        // the header and tail need no drop (their owners' types say so).
        unsafe { bindings::kfree(raw) };
        return Err(e.into());
    }
    Ok(ptr)
}

/// The allocation of a [`SlimBox`]: the tail's length, the value, then the
/// tail's bytes.
type Inner<T> = Headed<usize, T>;

/// A `T` owned through a pointer, pinned, with `tail_len` bytes after it.
///
/// # Invariants
///
/// `ptr` points to an `Inner<T>` allocated with `kmalloc`, followed by as
/// many initialised bytes as its header says, in the same allocation; its
/// `data` is initialised, owned by this box and never moved.
pub(crate) struct SlimBox<T> {
    ptr: NonNull<Inner<T>>,
    _owns: PhantomData<Inner<T>>,
}

// SAFETY: As for `KBox<T>`: the box owns its `T` and the bytes after it.
unsafe impl<T: Send> Send for SlimBox<T> {}
// SAFETY: As above; `&SlimBox` gives only `&T` and `&[u8]`.
unsafe impl<T: Sync> Sync for SlimBox<T> {}

impl<T> SlimBox<T> {
    /// Allocates a `T` with `tail` bytes after it (`GFP_KERNEL`: this may
    /// sleep), initialises the value in place with `init` and copies the
    /// parts of `tail` after it, one after the other.
    ///
    /// Errors: `ENOMEM`, also if the size does not fit a `usize`; `init`'s.
    #[inline]
    pub(crate) fn pin_init_with_tail<E>(init: impl PinInit<T, E>, tail: [&[u8]; 2]) -> Result<Self>
    where
        Error: From<E>,
    {
        let tail_len = tail[0].len().checked_add(tail[1].len()).ok_or(ENOMEM)?;
        let fill = |dst: *mut u8| {
            // SAFETY: `dst` starts the `tail_len` bytes after the header and
            // value, where the two parts go one after the other; they are
            // the caller's slices, which cannot overlap a new allocation.
            unsafe {
                ptr::copy_nonoverlapping(tail[0].as_ptr(), dst, tail[0].len());
                ptr::copy_nonoverlapping(tail[1].as_ptr(), dst.add(tail[0].len()), tail[1].len());
            }
        };
        // SAFETY: `fill` writes exactly the `tail_len` bytes it is given.
        let ptr = unsafe { kmalloc_pin_init(tail_len, tail_len, fill, init)? };
        // INVARIANT: Allocated, with its tail and its value initialised.
        Ok(Self {
            ptr,
            _owns: PhantomData,
        })
    }

    /// Allocates `value` with `tail` bytes after it, as
    /// [`Self::pin_init_with_tail`] does.
    #[inline]
    pub(crate) fn new_with_tail(value: T, tail: [&[u8]; 2]) -> Result<Self> {
        Self::pin_init_with_tail::<core::convert::Infallible>(value, tail)
    }

    /// Allocates a `T` (`GFP_KERNEL`: this may sleep) and initialises it in
    /// place with `init`, pinned.
    #[inline]
    pub(crate) fn pin_init<E>(init: impl PinInit<T, E>) -> Result<Self>
    where
        Error: From<E>,
    {
        Self::pin_init_with_tail(init, [&[], &[]])
    }

    /// Returns the bytes after the value.
    pub(crate) fn tail(&self) -> &[u8] {
        let p = self.ptr.as_ptr();
        // SAFETY: The allocation holds as many initialised bytes after the
        // `Inner<T>` as its header says, alive as long as `self` (type
        // invariant).
        unsafe { core::slice::from_raw_parts(p.add(1).cast::<u8>(), (*p).head) }
    }

    /// Gives up ownership, for C code to keep as a `void *`; see
    /// [`Self::from_raw`].
    pub(crate) fn into_raw(self) -> *mut c_void {
        let p = self.ptr.as_ptr();
        core::mem::forget(self);
        p.cast()
    }

    /// Borrows the value of a box given up with [`Self::into_raw`].
    ///
    /// # Safety
    ///
    /// `raw` came from `into_raw` on a `SlimBox<T>`, and is not passed to
    /// [`Self::from_raw`] while the borrow lasts.
    pub(crate) unsafe fn borrow<'a>(raw: *const c_void) -> Pin<&'a T> {
        let p = raw.cast::<Inner<T>>();
        // SAFETY: `raw` points to a live `Inner<T>` whose value is never
        // moved (the caller's guarantee and the type invariant).
        unsafe { Pin::new_unchecked(&(*p).data) }
    }

    /// Takes back ownership of a box given up with [`Self::into_raw`].
    ///
    /// # Safety
    ///
    /// `raw` came from `into_raw` on a `SlimBox<T>`, is taken back once,
    /// and no borrow of it remains.
    pub(crate) unsafe fn from_raw(raw: *mut c_void) -> Self {
        // INVARIANT: The allocation `into_raw` gave up, whole (the caller's
        // guarantee).
        Self {
            // SAFETY: `into_raw` returned a non-null pointer.
            ptr: unsafe { NonNull::new_unchecked(raw.cast()) },
            _owns: PhantomData,
        }
    }
}

impl<T> Deref for SlimBox<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: The value is initialised and lives as long as `self` (type
        // invariant).
        unsafe { &self.ptr.as_ref().data }
    }
}

impl<T> Drop for SlimBox<T> {
    #[inline]
    fn drop(&mut self) {
        let p = self.ptr.as_ptr();
        // SAFETY: The box owns the value, initialised (type invariant), which
        // is dropped once; nothing can reach it afterwards.
        unsafe { ptr::drop_in_place(ptr::addr_of_mut!((*p).data)) };
        // SAFETY: Allocated with `kmalloc` (type invariant), freed once.
        unsafe { bindings::kfree(p.cast::<c_void>()) };
    }
}
