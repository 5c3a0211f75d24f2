// SPDX-License-Identifier: GPL-2.0

//! A cachefiles object, as seen by its on-demand backend: reference counted,
//! with the backend's data and a work item in its private data.

use core::{
    marker::PhantomData,
    pin::Pin,
    ptr::NonNull,
    sync::atomic::{AtomicUsize, Ordering},
};
use kernel::{
    bindings,
    error::Result,
    prelude::*,
    types::{ARef, AlwaysRefCounted, ForeignOwnable, Opaque},
};

use super::{uapi, Cache, Operations};
use crate::abstractions::{
    error::{from_err_ptr, to_result},
    file::File,
    helpers,
    slim_arc::{Loan, SlimArc},
    slim_box::SlimBox,
    workqueue::RawWork,
};

/// Returns whether cachefiles' tracepoint `$tp` is on: always `false`, and
/// no code, without `CONFIG_TRACEPOINTS`, as for the built-in code.
macro_rules! tracing {
    ($tp:ident) => {{
        #[cfg(CONFIG_TRACEPOINTS)]
        // SAFETY: cachefiles, built in, defines the tracepoint, which lives
        // as long as the kernel; its start has the layout of `Tracepoint`
        // (checked in `helpers.c`), and it is only read, atomically.
        let on = unsafe { &helpers::$tp }.is_on();
        #[cfg(not(CONFIG_TRACEPOINTS))]
        let on = false;
        on
    }};
}

/// What the backend keeps in an object's private data.
///
/// # Invariants
///
/// `object` is the object whose private data this slot is, `cache` its cache
/// (bound to `B`) and `cache_data` that cache's backend data; `work` runs
/// [`object_work_fn`] for `B`.
#[pin_data]
pub(super) struct ObjectSlot<B: Operations> {
    object: *mut bindings::cachefiles_object,
    cache: *mut bindings::cachefiles_cache,
    cache_data: *mut kernel::ffi::c_void,
    #[pin]
    work: RawWork,
    #[pin]
    data: B::ObjectData,
}

// SAFETY: `object` is only used to rebuild the reference a queued work owns,
// which may happen on any thread, and `cache` to reach the cache, which is
// thread-safe; the rest is `Send`/`Sync` by the bounds.
unsafe impl<B: Operations> Send for ObjectSlot<B> {}
// SAFETY: As above.
unsafe impl<B: Operations> Sync for ObjectSlot<B> {}

impl<B: Operations> ObjectSlot<B> {
    /// Initialises the slot of `object` of `cache`, whose backend data is
    /// `cache_data`, with the backend's data of the object from `data`.
    ///
    /// # Safety
    ///
    /// `cache` is bound to `B`, and `cache_data` is its data.
    pub(super) unsafe fn new(
        object: *mut bindings::cachefiles_object,
        cache: *mut bindings::cachefiles_cache,
        cache_data: *mut kernel::ffi::c_void,
        data: impl PinInit<B::ObjectData, Error>,
    ) -> impl PinInit<Self, Error> {
        // INVARIANT: The slot is `object`'s, of `cache`, whose data is
        // `cache_data` until it is unbound, after all its objects are freed;
        // its work runs `object_work_fn::<B>`.
        try_pin_init!(Self {
            object,
            cache,
            cache_data,
            work <- RawWork::new(object_work_fn::<B>),
            data <- data,
        })
    }

    /// Returns the backend's data of the object.
    #[inline(always)]
    fn data(self: Pin<&Self>) -> Pin<&B::ObjectData> {
        // SAFETY: Projection of a structurally pinned field.
        unsafe { self.map_unchecked(|s| &s.data) }
    }
}

/// A cachefiles object of a cache bound to backend `B`.
///
/// # Invariants
///
/// A `&Object<B>` only exists while the object is alive (someone holds a
/// reference) and its private data is a `SlimBox<ObjectSlot<B>>` from
/// `into_raw`. Objects are all freed before their cache is unbound.
#[repr(transparent)]
pub(crate) struct Object<B: Operations>(Opaque<bindings::cachefiles_object>, PhantomData<B>);

// SAFETY: The accessors used through `&Object` are thread-safe.
unsafe impl<B: Operations> Sync for Object<B> {}
// SAFETY: Object references may be dropped on any thread.
unsafe impl<B: Operations> Send for Object<B> {}

// SAFETY: `cachefiles_object_get`/`put` manage the object's reference count
// (traced as the backend's); the last put frees it (after the backend's
// `deinit_obj_info`).
unsafe impl<B: Operations> AlwaysRefCounted for Object<B> {
    fn inc_ref(&self) {
        // SAFETY: The object is alive, so its count is not zero.
        unsafe { bindings::cachefiles_object_get(self.as_ptr()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller owns a reference.
        unsafe { bindings::cachefiles_object_put(obj.as_ptr().cast()) };
    }
}

impl<B: Operations> Object<B> {
    /// Wraps an object pointer given by cachefiles.
    ///
    /// # Safety
    ///
    /// `ptr` must be an object of a cache bound to `B`, with its private data
    /// set, on which the caller holds a reference for `'a`.
    pub(super) unsafe fn from_raw<'a>(ptr: *const bindings::cachefiles_object) -> &'a Self {
        // SAFETY: `Object` is a transparent wrapper; the caller guarantees validity.
        unsafe { &*ptr.cast() }
    }

    fn as_ptr(&self) -> *mut bindings::cachefiles_object {
        self.0.get()
    }

    fn slot(&self) -> Pin<&ObjectSlot<B>> {
        // SAFETY: By the type invariant the private data is a pinned
        // `ObjectSlot<B>`, freed only when the object is.
        unsafe {
            SlimBox::<ObjectSlot<B>>::borrow(bindings::cachefiles_object_backend_priv(
                self.as_ptr(),
            ))
        }
    }

    /// Returns the backend's data of the cache of this object.
    pub(crate) fn cache_data(&self) -> <B::CacheData as ForeignOwnable>::Borrowed<'_> {
        self.view().cache_data()
    }

    /// Returns the volume key (NUL-terminated, the NUL counted) and the
    /// cookie key that an OPEN carries.
    ///
    /// Fails with `EINVAL` if the netfs did not ask for
    /// `FSCACHE_ADV_WANT_CACHE_SIZE`, which on-demand mode needs.
    pub(crate) fn keys(&self) -> Result<(&[u8], &[u8])> {
        let (mut vkey, mut vlen) = (core::ptr::null(), 0usize);
        let (mut ckey, mut clen) = (core::ptr::null(), 0usize);
        // SAFETY: The object is alive; the four outputs are valid for writes.
        to_result(unsafe {
            bindings::cachefiles_object_keys(
                self.as_ptr(),
                &mut vkey,
                &mut vlen,
                &mut ckey,
                &mut clen,
            )
        })?;
        // SAFETY: The keys just returned for this object, which outlives the
        // borrow of `self`.
        Ok(unsafe { (key_slice(vkey, vlen), key_slice(ckey, clen)) })
    }

    /// Records the size the daemon gave in copen `msg_id` (0: nothing to
    /// read) and emits `cachefiles_ondemand_copen`; for `copen` only.
    pub(crate) fn set_size(&self, msg_id: u32, size: i64) {
        // SAFETY: The object is alive.
        unsafe { bindings::cachefiles_object_set_size(self.as_ptr(), msg_id, size) };
    }

    /// Makes the anonymous file handed to the daemon for this object.
    ///
    /// The file uses the backend's [`FdOperations`](super::fd::FdOperations);
    /// it holds the object and pins the cache until it is released.
    pub(crate) fn create_anon_fd(&self) -> Result<ARef<File>> {
        // SAFETY: The object is alive, its cache bound to `B`, whose table
        // names the fd operations.
        let file = from_err_ptr(unsafe { bindings::cachefiles_anon_fd_create(self.as_ptr()) })?;
        // SAFETY: `cachefiles_anon_fd_create` returned a new file with one
        // reference, which is ours; it is not an error pointer.
        Ok(unsafe { File::from_raw_owned(NonNull::new_unchecked(file)) })
    }

    /// Emits `cachefiles_ondemand_open` with these fields, if it is on.
    #[inline]
    pub(crate) fn trace_open(&self, msg_id: u32, object_id: u32, fd: u32) {
        if !tracing!(__tracepoint_cachefiles_ondemand_open) {
            return;
        }
        let mut msg = uapi::Msg::new(uapi::Opcode::Open, msg_id, object_id);
        let mut open = uapi::Open {
            volume_key_size: 0,
            cookie_key_size: 0,
            fd,
            flags: 0,
        };
        // SAFETY: The object is alive; `Msg` and `Open` have the layout of
        // the UAPI structures the tracepoint reads (checked in `uapi`), and
        // it reads none of their flexible arrays.
        unsafe {
            helpers::cfod_trace_ondemand_open(
                self.as_ptr(),
                core::ptr::from_mut(&mut msg).cast(),
                core::ptr::from_mut(&mut open).cast(),
            )
        };
    }

    /// Emits `cachefiles_ondemand_read` with these fields, if it is on.
    #[inline]
    pub(crate) fn trace_read(&self, msg_id: u32, object_id: u32, off: u64, len: u64) {
        if !tracing!(__tracepoint_cachefiles_ondemand_read) {
            return;
        }
        let mut msg = uapi::Msg::new(uapi::Opcode::Read, msg_id, object_id);
        let mut read = uapi::Read { off, len };
        // SAFETY: As in `trace_open`.
        unsafe {
            helpers::cfod_trace_ondemand_read(
                self.as_ptr(),
                core::ptr::from_mut(&mut msg).cast(),
                core::ptr::from_mut(&mut read).cast(),
            )
        };
    }

    /// Emits `cachefiles_ondemand_close` with these fields, if it is on.
    #[inline]
    pub(crate) fn trace_close(&self, msg_id: u32, object_id: u32) {
        if !tracing!(__tracepoint_cachefiles_ondemand_close) {
            return;
        }
        let mut msg = uapi::Msg::new(uapi::Opcode::Close, msg_id, object_id);
        // SAFETY: As in `trace_open`.
        unsafe {
            helpers::cfod_trace_ondemand_close(self.as_ptr(), core::ptr::from_mut(&mut msg).cast())
        };
    }

    /// Emits `cachefiles_ondemand_cread`, if it is on.
    #[inline]
    pub(crate) fn trace_cread(&self, msg_id: u32) {
        if !tracing!(__tracepoint_cachefiles_ondemand_cread) {
            return;
        }
        // SAFETY: The object is alive.
        unsafe { helpers::cfod_trace_ondemand_cread(self.as_ptr(), msg_id) };
    }

    /// Queues the object's work on fscache's workqueue; the work owns a
    /// reference to the object until it runs or is cancelled.
    ///
    /// Returns `false` if the work was already pending.
    pub(crate) fn queue_work(&self) -> bool {
        let slot = self.slot();
        // SAFETY: The object is alive; this reference is the work's.
        unsafe { bindings::cachefiles_object_get(self.as_ptr()) };
        // SAFETY: The work's reference keeps the object, hence its private
        // data and the work in it, alive until `object_work_fn` or
        // `cancel_work_sync` drops it. `fscache_wq` is set up before any
        // cache can be bound and never changes.
        let queued = unsafe { slot.work.queue(bindings::fscache_wq) };
        if !queued {
            // SAFETY: The work was not queued: its reference is still ours,
            // and not the last one (`self` is borrowed from another).
            unsafe { bindings::cachefiles_object_put(self.as_ptr()) };
        }
        queued
    }
}

/// A borrowed object of a cache bound to `B` whose private data was found
/// once: it reaches the backend's data, and its cache's, without calling
/// into cachefiles again.
///
/// # Invariants
///
/// `slot` is the private data of `object`.
pub(crate) struct ObjectView<'a, B: Operations> {
    object: &'a Object<B>,
    slot: Pin<&'a ObjectSlot<B>>,
}

impl<B: Operations> Clone for ObjectView<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Operations> Copy for ObjectView<'_, B> {}

impl<B: Operations> Object<B> {
    /// Returns a view of this object that reaches its data directly.
    pub(crate) fn view(&self) -> ObjectView<'_, B> {
        // INVARIANT: `slot()` is this object's private data.
        ObjectView {
            object: self,
            slot: self.slot(),
        }
    }
}

impl<'a, B: Operations> ObjectView<'a, B> {
    /// Wraps an object pointer given by cachefiles, and its backend data.
    ///
    /// # Safety
    ///
    /// `ptr` must be an object of a cache bound to `B`, on which the caller
    /// holds a reference for `'a`, and `data` its private data.
    pub(super) unsafe fn from_raw(
        ptr: *const bindings::cachefiles_object,
        data: *const kernel::ffi::c_void,
    ) -> Self {
        // INVARIANT: `data` is the object's private data (the caller's
        // guarantee).
        ObjectView {
            // SAFETY: The object is alive and its private data set, for `'a`.
            object: unsafe { Object::from_raw(ptr) },
            // SAFETY: By the type invariant of `Object` the private data is
            // a pinned `ObjectSlot<B>`, freed only when the object is.
            slot: unsafe { SlimBox::<ObjectSlot<B>>::borrow(data) },
        }
    }

    /// Returns the backend's data of the object.
    pub(crate) fn data(&self) -> Pin<&'a B::ObjectData> {
        self.slot.data()
    }

    /// Returns the backend's data of the object's cache.
    pub(crate) fn cache_data(&self) -> <B::CacheData as ForeignOwnable>::Borrowed<'a> {
        kernel::build_assert!(B::HAS_BIND);
        // SAFETY: By the slot's invariant `cache_data` is the data of the
        // object's cache, a `B::CacheData` from `into_foreign` that stays
        // until `unbind`, which cannot happen while the object lives, and it
        // lives for `'a`.
        unsafe { B::CacheData::borrow(self.slot.cache_data) }
    }

    /// Returns the cache of the object.
    pub(crate) fn cache(&self) -> Cache<'a, B> {
        // SAFETY: By the type invariant of the slot, it names the object's
        // cache and that cache's data, which outlive the object, alive for
        // `'a`.
        unsafe { Cache::from_raw(self.slot.cache, self.slot.cache_data) }
    }

    /// Makes a `T` initialised by `init`, with this object lent to it in
    /// its [`SlimArc`]'s header, and runs `f` with two references to it, as
    /// [`SlimArc::lend`] does: the lender's, borrowed, and one `f` owns.
    ///
    /// No reference on the object is taken for the value unless the value
    /// outlives `f`: the loan is then secured, which takes one.
    #[inline(always)]
    pub(crate) fn lend<T, R>(
        &self,
        init: impl PinInit<T>,
        mark: u32,
        f: impl FnOnce(&SlimArc<T, ObjectLoan<B>>, SlimArc<T, ObjectLoan<B>>) -> R,
    ) -> Result<R> {
        // INVARIANT: The object's slot (type invariant), not counted: the
        // caller holds a reference on the object for `'a`, beyond this call,
        // and the loan goes straight into the header of a value that
        // `SlimArc::lend` frees, or secures the loan of, before it returns.
        let loan = ObjectLoan {
            slot: AtomicUsize::new(core::ptr::from_ref(self.slot.get_ref()) as usize),
            _p: PhantomData,
        };
        SlimArc::lend(loan, init, mark, f)
    }

    /// Cancels the object's work if queued and waits for it if running.
    pub(crate) fn cancel_work_sync(&self) {
        if self.slot.work.cancel_sync() {
            // SAFETY: The work was pending, so it owned a reference (taken in
            // `queue_work`) that nobody will drop now. It is not the last
            // one: our caller holds one.
            unsafe { bindings::cachefiles_object_put(self.object.as_ptr()) };
        }
    }
}

impl<B: Operations> core::ops::Deref for ObjectView<'_, B> {
    type Target = Object<B>;

    fn deref(&self) -> &Object<B> {
        self.object
    }
}

/// An object lent to a value by a scope that holds a reference on it
/// ([`ObjectView::lend`]), counted only if the value outlives that scope.
/// Like [`ObjectView`], it reaches the object's backend data, and its
/// cache's, without a call into cachefiles.
///
/// Only [`ObjectView::lend`] makes one, into the header of a [`SlimArc`]:
/// it is only ever reached through a reference to that value.
///
/// # Invariants
///
/// `slot` is the address of the private data of an object, with
/// [`COUNTED`] set if this holds a reference on it. If it does not, this is
/// the loan of a value made by [`SlimArc::lend`], called by
/// [`ObjectView::lend`] in a scope that holds a reference on the object
/// until the loan ends; and it is secured, which takes a reference, before
/// the value outlives that scope.
pub(crate) struct ObjectLoan<B: Operations> {
    slot: AtomicUsize,
    _p: PhantomData<ObjectSlot<B>>,
}

/// The bit of [`ObjectLoan::slot`] set when the loan holds a reference on
/// the object: slots are aligned to pointers.
const COUNTED: usize = 1;

const _: () = assert!(core::mem::align_of::<*const ()>() > COUNTED);

impl<B: Operations> ObjectLoan<B> {
    /// Returns the object's slot: one load of the loan's word, as each
    /// accessor below makes.
    #[inline(always)]
    fn slot(&self) -> Pin<&ObjectSlot<B>> {
        let slot = self.slot.load(Ordering::Relaxed) & !COUNTED;
        // SAFETY: The slot is the private data of an object that is alive
        // while the loan is (type invariant), pinned there by `into_foreign`.
        unsafe { Pin::new_unchecked(&*(slot as *const ObjectSlot<B>)) }
    }

    /// Returns a view of the object, which reaches its data directly.
    #[inline(always)]
    pub(crate) fn view(&self) -> ObjectView<'_, B> {
        let slot = self.slot();
        // INVARIANT: The slot is the private data of the object it names.
        ObjectView {
            // SAFETY: The slot names its object (type invariant of
            // `ObjectSlot`), alive while the loan is, whose private data is
            // the slot.
            object: unsafe { Object::from_raw(slot.object) },
            slot,
        }
    }

    /// Returns the backend's data of the object.
    #[inline(always)]
    pub(crate) fn data(&self) -> Pin<&B::ObjectData> {
        self.slot().data()
    }
}

// SAFETY: `secure` takes a reference on the object, which the loan holds
// from then on (`COUNTED`) until it is dropped.
unsafe impl<B: Operations> Loan for ObjectLoan<B> {
    fn secure(&self) {
        let slot = self.slot.load(Ordering::Relaxed);
        if slot & COUNTED != 0 {
            return;
        }
        self.inc_ref();
        // INVARIANT: Counted just above. (The loan is secured by its lender
        // before it drops its references, and whoever drops the last one
        // and this loan with it, which reads the bit, sees it set.)
        self.slot.store(slot | COUNTED, Ordering::Relaxed);
    }
}

// SAFETY: Like `ARef<Object<B>>`: the loan may be reached from and dropped
// on any thread, and `Object<B>` and the backend data are `Sync`.
unsafe impl<B: Operations> Send for ObjectLoan<B> {}
// SAFETY: As above.
unsafe impl<B: Operations> Sync for ObjectLoan<B> {}

impl<B: Operations> core::ops::Deref for ObjectLoan<B> {
    type Target = Object<B>;

    #[inline(always)]
    fn deref(&self) -> &Object<B> {
        self.view().object
    }
}

impl<B: Operations> Drop for ObjectLoan<B> {
    fn drop(&mut self) {
        let slot = *self.slot.get_mut();
        if slot & COUNTED != 0 {
            // SAFETY: The reference this holds (type invariant), dropped once.
            unsafe { bindings::cachefiles_object_put(self.slot().object) };
        }
    }
}

/// Returns the `len` bytes of a key at `p` (empty if there are none).
///
/// # Safety
///
/// `p` and `len` are a key `cachefiles_object_keys` returned for an object
/// that outlives `'a`.
unsafe fn key_slice<'a>(p: *const kernel::ffi::c_void, len: usize) -> &'a [u8] {
    // Never null from cachefiles (a volume key is inline in its buffer, a
    // cookie key inline in or owned by its cookie); tested all the same,
    // while a key of length 0 needs no test of its own.
    if p.is_null() {
        return &[];
    }
    // SAFETY: The key is `len` bytes that the object's cookie or volume owns,
    // alive as long as the object (the caller's guarantee).
    unsafe { core::slice::from_raw_parts(p.cast::<u8>(), len) }
}

/// Runs [`Operations::object_work`]: the function of every object's work item.
///
/// # Safety
///
/// Only called by the workqueue for the `work` of an `ObjectSlot<B>` queued
/// by [`Object::queue_work`].
unsafe extern "C" fn object_work_fn<B: Operations>(work: *mut bindings::work_struct) {
    // SAFETY: `work` is the `work` field of an `ObjectSlot<B>` (the only user
    // of this function); `RawWork` is a transparent wrapper of the work_struct.
    let slot = unsafe { kernel::container_of!(work.cast::<RawWork>(), ObjectSlot<B>, work) };
    // SAFETY: The slot is alive: the queued work owns a reference to its
    // object (see `Object::queue_work`).
    let raw = unsafe { (*slot).object };
    // SAFETY: As above: the object is alive while we hold the work's reference.
    let object: ARef<Object<B>> = unsafe { Object::<B>::from_raw(raw) }.into();
    // SAFETY: The work's reference, now replaced by `object`'s.
    unsafe { bindings::cachefiles_object_put(raw) };
    B::object_work(object);
}
