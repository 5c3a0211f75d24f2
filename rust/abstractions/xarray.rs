// SPDX-License-Identifier: GPL-2.0

//! XArray: an allocating array of owned pointers, and an id allocator.
//!
//! Shaped like later kernels' `kernel::xarray` (an `XArray` of
//! `ForeignOwnable` values, `lock` giving a `Guard` with `get` and `remove`),
//! plus what the backend's queue needs and upstream does not offer yet:
//! marks, `find`, cyclic allocation, and data of the user's kept under the
//! array's own lock.
//!
//! C header: [`include/linux/xarray.h`](srctree/include/linux/xarray.h)

use core::{cell::UnsafeCell, marker::PhantomData, ptr};
use kernel::{
    bindings,
    error::{Error, Result},
    prelude::*,
    types::{ForeignOwnable, Opaque},
};

use super::helpers;

/// A search mark of an XArray.
///
/// Mark 0 is the free-slot mark of allocating arrays, so only mark 1 is offered.
#[derive(Clone, Copy)]
pub(crate) struct Mark(bindings::xa_mark_t);

impl Mark {
    /// `XA_MARK_1`.
    pub(crate) const MARK_1: Mark = Mark(1);

    /// The flag of the array's root that says that some entry has the mark:
    /// `XA_FLAGS_MARK(mark)`, the marks being the flags right above the GFP
    /// ones (`__GFP_BITS_SHIFT`, which is `___GFP_LAST_BIT`; `helpers.c`
    /// asserts that this is the macro's value).
    const fn root_flag(self) -> bindings::gfp_t {
        (1 << bindings::___GFP_LAST_BIT) << self.0
    }
}

/// `XA_PRESENT`: the filter of `xa_find()` matching any present entry.
const XA_PRESENT: bindings::xa_mark_t = 8;

/// An allocating XArray owning values of type `T`, with data `D` protected by
/// the array's own lock.
///
/// # Invariants
///
/// - `xa` is an initialised allocating XArray (`XA_FLAGS_ALLOC`).
/// - Every entry of `xa` was returned by `T::into_foreign` and is owned by the
///   array until it is erased, at which point ownership goes to the eraser.
/// - `next` and `data` are only accessed with the lock of `xa` held.
#[pin_data(PinnedDrop)]
pub(crate) struct XArray<T: ForeignOwnable, D> {
    #[pin]
    xa: Opaque<bindings::xarray>,
    next: UnsafeCell<u32>,
    data: UnsafeCell<D>,
    _p: PhantomData<T>,
}

// SAFETY: The array owns values of type `T` and data of type `D`; both may be
// dropped or used from any thread if they are `Send` (and `Sync` for the
// borrowed values handed out by `get`/`find`).
unsafe impl<T: ForeignOwnable + Send + Sync, D: Send> Send for XArray<T, D> {}
// SAFETY: All access to the entries and to `D` happens with the array's lock
// held, through a `Guard`; borrowed entries are `Sync` because `T` is.
unsafe impl<T: ForeignOwnable + Send + Sync, D: Send> Sync for XArray<T, D> {}

impl<T: ForeignOwnable, D> XArray<T, D> {
    /// Creates an empty allocating array with `data` under its lock.
    pub(crate) fn new(data: D) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `slot` is valid for writes; `xa_init_flags` initialises it.
            xa <- Opaque::ffi_init(|slot| unsafe { helpers::cfod_xa_init_alloc(slot) }),
            next: UnsafeCell::new(0),
            data: UnsafeCell::new(data),
            _p: PhantomData,
        })
    }

    /// Returns whether some entry of the array has `mark`, read without the
    /// lock, as `xa_marked()` does: the answer may be out of date by the time
    /// it is used, so it can only spare a caller a locked search that a
    /// concurrent change of the marks would have raced with anyway.
    pub(crate) fn is_marked_unlocked(&self, mark: Mark) -> bool {
        // SAFETY: `self.xa` is initialised (type invariant). `xa_flags` is
        // read once, as `READ_ONCE()` would; the XArray updates it with
        // single word-sized writes, under its lock.
        let flags = unsafe { ptr::read_volatile(ptr::addr_of!((*self.xa.get()).xa_flags)) };
        flags & mark.root_flag() != 0
    }

    /// Takes the array's lock.
    pub(crate) fn lock(&self) -> Guard<'_, T, D> {
        // SAFETY: `self.xa` is initialised by the type invariant.
        unsafe { xa_lock(self.xa.get()) };
        // INVARIANT: The lock was just taken.
        Guard {
            xa: self,
            _not_send: PhantomData,
        }
    }
}

#[pinned_drop]
impl<T: ForeignOwnable, D> PinnedDrop for XArray<T, D> {
    fn drop(self: Pin<&mut Self>) {
        // Release whatever is still stored, one entry at a time and outside
        // the lock, then the internal nodes.
        loop {
            let entry = {
                let mut guard = self.lock();
                let index = guard.find(0, usize::MAX, None).map(|(index, _)| index);
                match index {
                    Some(index) => guard.remove(index),
                    None => break,
                }
            };
            drop(entry);
        }
        // SAFETY: `self.xa` is initialised and nobody else can use it any more.
        unsafe { bindings::xa_destroy(self.xa.get()) };
    }
}

/// The lock of an [`XArray`], held.
///
/// # Invariants
///
/// The lock of `xa.xa` is held by the current thread for the lifetime of the
/// guard, except while a `&mut self` method documented to do so drops and
/// retakes it.
pub(crate) struct Guard<'a, T: ForeignOwnable, D> {
    xa: &'a XArray<T, D>,
    _not_send: PhantomData<*mut ()>,
}

impl<T: ForeignOwnable, D> Guard<'_, T, D> {
    fn raw(&self) -> *mut bindings::xarray {
        self.xa.xa.get()
    }

    /// The data protected by the lock.
    pub(crate) fn data(&self) -> &D {
        // SAFETY: The lock is held (type invariant), so nobody mutates `data`.
        unsafe { &*self.xa.data.get() }
    }

    /// The data protected by the lock, mutably.
    pub(crate) fn data_mut(&mut self) -> &mut D {
        // SAFETY: The lock is held (type invariant) and `self` is borrowed
        // mutably, so this is the only reference to `data`.
        unsafe { &mut *self.xa.data.get() }
    }

    /// The entry at `index`, if any.
    pub(crate) fn get(&self, index: usize) -> Option<T::Borrowed<'_>> {
        // SAFETY: The array is initialised; `xa_load` may be called with the lock held.
        let p = unsafe { bindings::xa_load(self.raw(), index as _) };
        if p.is_null() {
            return None;
        }
        // SAFETY: Entries come from `T::into_foreign` (type invariant of
        // `XArray`). The entry cannot be erased while `self` is borrowed
        // shared, since erasing takes `&mut self`.
        Some(unsafe { T::borrow(p) })
    }

    /// The first entry at an index in `start..=max` (with `mark` set, if given).
    pub(crate) fn find(
        &self,
        start: usize,
        max: usize,
        mark: Option<Mark>,
    ) -> Option<(usize, T::Borrowed<'_>)> {
        if start > max {
            return None;
        }
        let filter = mark.map_or(XA_PRESENT, |m| m.0);
        let mut index = start as kernel::ffi::c_ulong;
        // SAFETY: The array is initialised; `index` is valid for writes.
        let p = unsafe { bindings::xa_find(self.raw(), &mut index, max as _, filter) };
        if p.is_null() {
            return None;
        }
        // SAFETY: As in `get`.
        Some((index as usize, unsafe { T::borrow(p) }))
    }

    /// Erases the entry at `index` and returns it.
    pub(crate) fn remove(&mut self, index: usize) -> Option<T> {
        // SAFETY: The array is initialised and its lock is held.
        let p = unsafe { bindings::__xa_erase(self.raw(), index as _) };
        if p.is_null() {
            return None;
        }
        // SAFETY: The entry came from `T::into_foreign`; erasing it transferred
        // its ownership to us, and no borrow of it exists (`&mut self`).
        Some(unsafe { T::from_foreign(p) })
    }

    /// Returns a cursor at index `start`, to walk the entries from there in
    /// index order and take them out of the array as it goes.
    #[inline(always)]
    pub(crate) fn cursor(&mut self, start: usize) -> Cursor<'_, T, D> {
        // INVARIANT: A walk state of this array that has not walked yet, as
        // `XA_STATE(xas, xa, start)` makes.
        Cursor {
            xas: bindings::xa_state {
                xa: self.raw(),
                xa_index: start as _,
                xa_shift: 0,
                xa_sibs: 0,
                xa_offset: 0,
                xa_pad: 0,
                xa_node: XAS_RESTART as *mut bindings::xa_node,
                xa_alloc: ptr::null_mut(),
                xa_update: None,
                xa_lru: ptr::null_mut(),
            },
            _guard: PhantomData,
        }
    }

    /// Sets `mark` on the entry at `index`.
    pub(crate) fn set_mark(&self, index: usize, mark: Mark) {
        // SAFETY: The array is initialised and its lock is held.
        unsafe { bindings::__xa_set_mark(self.raw(), index as _, mark.0) };
    }

    /// Clears `mark` on the entry at `index`.
    pub(crate) fn clear_mark(&self, index: usize, mark: Mark) {
        // SAFETY: The array is initialised and its lock is held.
        unsafe { bindings::__xa_clear_mark(self.raw(), index as _, mark.0) };
    }

    /// Stores `value` at a free index in `min..=max`, searching cyclically from
    /// just after the last index allocated, so that a freed index is not
    /// reused at once.
    ///
    /// This may drop and retake the lock to allocate memory: anything checked
    /// under the lock before this call must be checked again after it. The
    /// store itself happens in the critical section that is current when this
    /// returns.
    pub(crate) fn alloc_cyclic(&mut self, value: T, min: u32, max: u32) -> Result<u32, (T, Error)> {
        let p = value.into_foreign();
        let mut id: u32 = 0;
        let limit = bindings::xa_limit { max, min };
        // SAFETY: The array is initialised and its lock is held; `next` is
        // only used under that lock; `p` is a non-null, suitably aligned
        // pointer from `T::into_foreign`.
        let ret = unsafe {
            bindings::__xa_alloc_cyclic(
                self.raw(),
                &mut id,
                p as *mut _,
                limit,
                self.xa.next.get(),
                bindings::GFP_KERNEL,
            )
        };
        if ret < 0 {
            // SAFETY: The entry was not stored: we still own it.
            return Err((unsafe { T::from_foreign(p) }, Error::from_errno(ret)));
        }
        Ok(id)
    }
}

impl<T: ForeignOwnable, D> Drop for Guard<'_, T, D> {
    fn drop(&mut self) {
        // SAFETY: The lock is held (type invariant).
        unsafe { xa_unlock(self.raw()) };
    }
}

/// `XAS_RESTART`: the node of a walk state that has not walked yet
/// (`helpers.c` asserts the value).
const XAS_RESTART: usize = 3;

/// A walk in index order over a locked [`XArray`] that takes entries out
/// as it goes, as `xas_for_each()` with `xas_store(xas, NULL)` does: each
/// step goes on from where the last one stopped, without a search from the
/// root.
///
/// # Invariants
///
/// `xas` is a walk state of the array whose [`Guard`] this borrows mutably:
/// its lock is held, and nothing else changes the array while the cursor
/// lives. Nothing is stored through `xas` but `NULL`, so it never allocates.
pub(crate) struct Cursor<'g, T: ForeignOwnable, D> {
    xas: bindings::xa_state,
    _guard: PhantomData<&'g mut Guard<'g, T, D>>,
}

impl<T: ForeignOwnable, D> Cursor<'_, T, D> {
    /// Moves to the next entry at an index up to `max` (with `mark` set, if
    /// given) and returns it, to look at and maybe take out.
    #[inline(always)]
    pub(crate) fn next(&mut self, max: usize, mark: Option<Mark>) -> Option<Found<'_, T>> {
        let p = match mark {
            // SAFETY: `xas` is a walk state of the array, whose lock is held
            // (type invariant).
            None => unsafe { bindings::xas_find(&mut self.xas, max as _) },
            // SAFETY: As above.
            Some(m) => unsafe { bindings::xas_find_marked(&mut self.xas, max as _, m.0) },
        };
        if p.is_null() {
            return None;
        }
        // INVARIANT: `xas` is on the present entry `p`, from
        // `T::into_foreign` as every entry of the array is (type invariant of
        // `XArray`), never an internal one: the walk returns no node or
        // sibling, this type stores no reserved entry, and retry entries are
        // only seen without the lock.
        Some(Found {
            xas: &mut self.xas,
            entry: p,
            _t: PhantomData,
        })
    }
}

/// The entry a [`Cursor`] is on.
///
/// # Invariants
///
/// `xas` is the walk state of a cursor, on the present entry `entry`, which
/// came from `T::into_foreign`.
pub(crate) struct Found<'c, T: ForeignOwnable> {
    xas: &'c mut bindings::xa_state,
    entry: *mut kernel::ffi::c_void,
    _t: PhantomData<T>,
}

impl<T: ForeignOwnable> Found<'_, T> {
    /// Returns the entry's index.
    pub(crate) fn index(&self) -> usize {
        self.xas.xa_index as _
    }

    /// Returns the entry.
    pub(crate) fn get(&self) -> T::Borrowed<'_> {
        // SAFETY: From `T::into_foreign` (type invariant); it stays in the
        // array while `self` is borrowed, since taking it out consumes `self`.
        unsafe { T::borrow(self.entry) }
    }

    /// Takes the entry out of the array; the cursor goes on from its index.
    #[inline(always)]
    pub(crate) fn take(self) -> T {
        // SAFETY: The lock is held and `xas` is on the entry (type
        // invariant): storing `NULL` erases it (its marks too), allocating
        // nothing, and returns it.
        let p = unsafe { bindings::xas_store(self.xas, ptr::null_mut()) };
        // SAFETY: `p` is the entry just erased, from `T::into_foreign` (type
        // invariant): erasing it gave us its ownership, and no borrow of it is
        // left, since `get`'s borrows end with `self`.
        unsafe { T::from_foreign(p) }
    }
}

/// A cyclic allocator of integer ids, backed by an XArray of reserved entries.
///
/// # Invariants
///
/// `xa` is an initialised allocating XArray holding only reserved entries;
/// `next` is only accessed with its lock held.
#[pin_data(PinnedDrop)]
pub(crate) struct IdAllocator {
    #[pin]
    xa: Opaque<bindings::xarray>,
    next: UnsafeCell<u32>,
    min: u32,
    max: u32,
}

// SAFETY: The XArray is usable from any thread; `next` is protected by its lock.
unsafe impl Send for IdAllocator {}
// SAFETY: As above.
unsafe impl Sync for IdAllocator {}

impl IdAllocator {
    /// Creates an allocator of ids in `min..=max`.
    pub(crate) fn new(min: u32, max: u32) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `slot` is valid for writes; `xa_init_flags` initialises it.
            xa <- Opaque::ffi_init(|slot| unsafe { helpers::cfod_xa_init_alloc(slot) }),
            next: UnsafeCell::new(min),
            min,
            max,
        })
    }

    /// Allocates an id, cyclically.
    pub(crate) fn alloc(&self) -> Result<u32> {
        let xa = self.xa.get();
        let mut id: u32 = 0;
        let limit = bindings::xa_limit {
            max: self.max,
            min: self.min,
        };
        // SAFETY: `xa` is initialised.
        unsafe { xa_lock(xa) };
        // SAFETY: The lock is held, `next` is only used under it; a null entry
        // is stored as a reserved entry.
        let ret = unsafe {
            bindings::__xa_alloc_cyclic(
                xa,
                &mut id,
                ptr::null_mut(),
                limit,
                self.next.get(),
                bindings::GFP_KERNEL,
            )
        };
        // SAFETY: The lock is held (retaken by `__xa_alloc_cyclic` if dropped).
        unsafe { xa_unlock(xa) };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(id)
    }

    /// Frees `id`.
    pub(crate) fn free(&self, id: u32) {
        // SAFETY: `xa` is initialised; `xa_erase` takes the lock itself. The
        // entries are reserved entries: nothing to release.
        unsafe { bindings::xa_erase(self.xa.get(), id as _) };
    }
}

#[pinned_drop]
impl PinnedDrop for IdAllocator {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `xa` is initialised, unused from now on, and only holds
        // reserved entries.
        unsafe { bindings::xa_destroy(self.xa.get()) };
    }
}

/// `xa_lock(xa)`.
///
/// Without PREEMPT_RT, `spin_lock()` is `_raw_spin_lock()` on the spinlock's
/// raw lock, its first member: it is called directly here, one call where
/// the C helper made two, on every critical section of the request queue.
///
/// # Safety
///
/// `xa` is an initialised XArray, whose lock the caller does not hold.
#[cfg(not(CONFIG_PREEMPT_RT))]
unsafe fn xa_lock(xa: *mut bindings::xarray) {
    // SAFETY: `xa_lock` is a valid spinlock (the safety requirement), and its
    // raw lock is at its start.
    unsafe { bindings::_raw_spin_lock(ptr::addr_of_mut!((*xa).xa_lock).cast()) }
}

/// `xa_unlock(xa)`, as [`xa_lock`].
///
/// # Safety
///
/// `xa` is an initialised XArray whose lock the caller holds.
#[cfg(not(CONFIG_PREEMPT_RT))]
unsafe fn xa_unlock(xa: *mut bindings::xarray) {
    // SAFETY: As in `xa_lock`.
    unsafe { bindings::_raw_spin_unlock(ptr::addr_of_mut!((*xa).xa_lock).cast()) }
}

/// `xa_lock(xa)`, through the C helper: with PREEMPT_RT a spinlock is not a
/// raw spinlock.
///
/// # Safety
///
/// As the other `xa_lock`.
#[cfg(CONFIG_PREEMPT_RT)]
unsafe fn xa_lock(xa: *mut bindings::xarray) {
    // SAFETY: The caller's guarantee.
    unsafe { helpers::cfod_xa_lock(xa) }
}

/// `xa_unlock(xa)`, through the C helper.
///
/// # Safety
///
/// As the other `xa_unlock`.
#[cfg(CONFIG_PREEMPT_RT)]
unsafe fn xa_unlock(xa: *mut bindings::xarray) {
    // SAFETY: The caller's guarantee.
    unsafe { helpers::cfod_xa_unlock(xa) }
}
