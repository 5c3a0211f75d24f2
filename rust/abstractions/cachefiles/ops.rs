// SPDX-License-Identifier: GPL-2.0

//! The operations table of an on-demand backend, and its registration.

use core::{marker::PhantomData, ptr::NonNull};
use kernel::{
    bindings,
    error::{to_result, Result},
    prelude::*,
    types::{ARef, ForeignOwnable},
    ThisModule,
};

use super::{fd::FdOperations, object::ObjectSlot, Cache, Object, ObjectView};
use crate::abstractions::{cstr::CStrMut, slim_box::SlimBox, uaccess::UserSlice};

/// An on-demand backend: the operations of `struct cachefiles_ondemand_ops`.
///
/// `bind` and `unbind` are optional, as in C; the others are required.
#[vtable]
pub(crate) trait Operations: Sized + Send + Sync + 'static {
    /// Per-cache data, created by `bind` and dropped at unbind.
    type CacheData: ForeignOwnable + Send + Sync;
    /// Per-object data, pinned in the object for the object's lifetime.
    type ObjectData: Send + Sync;

    /// Creates the data of a cache being bound.
    ///
    /// Without it, caches have no data and [`Cache::data`] must not be used.
    fn bind() -> Result<Self::CacheData> {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }
    /// Takes back the data of a cache about to be freed (by default, drops it).
    fn unbind(_data: Self::CacheData) {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }
    /// Hands one request to the daemon: `read()` on the devnode.
    fn daemon_read(cache: Cache<'_, Self>, buf: UserSlice, len: usize) -> Result<usize>;
    /// Returns whether the devnode is readable.
    fn daemon_poll(cache: Cache<'_, Self>) -> bool;
    /// Runs the `copen` command with its argument string.
    fn copen(cache: Cache<'_, Self>, args: CStrMut<'_>) -> Result;
    /// Runs the `restore` command.
    fn restore(cache: Cache<'_, Self>) -> Result;
    /// Fails everything pending: the cache is dead.
    fn flush(cache: Cache<'_, Self>);
    /// Initialises the data of a new object.
    fn new_object_data() -> impl PinInit<Self::ObjectData, Error>;
    /// Looks the object up (sends the OPEN).
    fn init_object(object: ObjectView<'_, Self>) -> Result;
    /// Withdraws the object.
    fn clean_object(object: ObjectView<'_, Self>);
    /// Fetches `[pos, pos + len)`: a cache miss.
    fn read(object: ObjectView<'_, Self>, pos: i64, len: usize) -> Result;
    /// Runs the object's work item, queued with [`Object::queue_work`].
    fn object_work(object: ARef<Object<Self>>);
    /// Handles an ioctl on an anonymous fd of `object`.
    fn fd_ioctl(object: &Object<Self>, cmd: u32, arg: usize) -> Result<i64>;
    /// The last reference to an anonymous fd of `object` is gone; returns
    /// the object id the fd was made for (traced by cachefiles).
    fn fd_release(object: &Object<Self>) -> u32;
}

/// A `struct cachefiles_ondemand_ops` table calling into `B`.
///
/// # Invariants
///
/// Every required operation is set, to the trampoline for `B`; `bind` and
/// `unbind` are set if and only if `B` has `bind`.
#[repr(transparent)]
pub(crate) struct OndemandOps<B: Operations>(bindings::cachefiles_ondemand_ops, PhantomData<B>);

// SAFETY: The table is immutable.
unsafe impl<B: Operations> Sync for OndemandOps<B> {}

impl<B: Operations> OndemandOps<B> {
    /// Builds the table for `owner`, whose anonymous fds use `fd_fops`.
    pub(crate) const fn new(owner: &'static ThisModule, fd_fops: &'static FdOperations<B>) -> Self {
        let (bind, unbind) = if B::HAS_BIND {
            (
                Some(bind_tramp::<B> as unsafe extern "C" fn(_) -> _),
                Some(unbind_tramp::<B> as unsafe extern "C" fn(_, _)),
            )
        } else {
            (None, None)
        };
        Self(
            bindings::cachefiles_ondemand_ops {
                owner: owner.as_ptr(),
                fd_fops: fd_fops.as_raw(),
                bind,
                unbind,
                daemon_read: Some(daemon_read_tramp::<B>),
                daemon_poll: Some(daemon_poll_tramp::<B>),
                copen: Some(copen_tramp::<B>),
                restore: Some(restore_tramp::<B>),
                flush: Some(flush_tramp::<B>),
                init_obj_info: Some(init_obj_info_tramp::<B>),
                deinit_obj_info: Some(deinit_obj_info_tramp::<B>),
                init_object: Some(init_object_tramp::<B>),
                clean_object: Some(clean_object_tramp::<B>),
                read: Some(read_tramp::<B>),
            },
            PhantomData,
        )
    }
}

fn to_c_int(r: Result) -> kernel::ffi::c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// Calls [`Operations::bind`]; returns the cache's data for cachefiles to keep.
///
/// # Safety
///
/// Called by cachefiles with a cache being bound to `B`.
unsafe extern "C" fn bind_tramp<B: Operations>(
    _cache: *mut bindings::cachefiles_cache,
) -> *mut kernel::ffi::c_void {
    match B::bind() {
        // From now on the cache's private data is a `B::CacheData` (see `Cache`).
        Ok(data) => data.into_foreign() as *mut _,
        Err(e) => e.to_ptr(),
    }
}

/// Takes the cache's data back and gives it to [`Operations::unbind`].
///
/// # Safety
///
/// Called by cachefiles with a cache bound to `B` that is being freed, or
/// whose bind failed, and its private data, which cachefiles forgets after
/// this call; no [`Cache`] of it exists any more.
unsafe extern "C" fn unbind_tramp<B: Operations>(
    _cache: *mut bindings::cachefiles_cache,
    priv_: *mut kernel::ffi::c_void,
) {
    if priv_.is_null() {
        return;
    }
    // SAFETY: The private data came from `into_foreign` in `bind_tramp` and no
    // borrow of it remains.
    let data = unsafe { B::CacheData::from_foreign(priv_) };
    if B::HAS_UNBIND {
        B::unbind(data);
    } else {
        drop(data);
    }
}

/// Calls [`Operations::daemon_read`].
///
/// # Safety
///
/// Called by cachefiles with a bound cache, its private data and a user
/// buffer of `buflen` bytes.
unsafe extern "C" fn daemon_read_tramp<B: Operations>(
    cache: *mut bindings::cachefiles_cache,
    priv_: *mut kernel::ffi::c_void,
    buffer: *mut kernel::ffi::c_char,
    buflen: usize,
) -> isize {
    // SAFETY: cachefiles calls us on a bound cache, with its private data,
    // and the devnode keeps it alive.
    let cache = unsafe { Cache::<B>::from_raw(cache, priv_) };
    let buf = UserSlice::new(buffer as usize, buflen);
    match B::daemon_read(cache, buf, buflen) {
        Ok(n) => n as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// Calls [`Operations::daemon_poll`].
///
/// # Safety
///
/// Called by cachefiles with a bound cache and its private data.
unsafe extern "C" fn daemon_poll_tramp<B: Operations>(
    cache: *mut bindings::cachefiles_cache,
    priv_: *mut kernel::ffi::c_void,
) -> bindings::__poll_t {
    // SAFETY: As in `daemon_read_tramp`.
    let cache = unsafe { Cache::<B>::from_raw(cache, priv_) };
    /// `EPOLLIN` (UAPI, `include/uapi/linux/eventpoll.h`).
    const EPOLLIN: bindings::__poll_t = 0x1;
    if B::daemon_poll(cache) {
        EPOLLIN
    } else {
        0
    }
}

/// Calls [`Operations::copen`].
///
/// # Safety
///
/// Called by cachefiles with a bound cache, its private data and a writable
/// NUL-terminated string.
unsafe extern "C" fn copen_tramp<B: Operations>(
    cache: *mut bindings::cachefiles_cache,
    priv_: *mut kernel::ffi::c_void,
    args: *mut kernel::ffi::c_char,
) -> kernel::ffi::c_int {
    // SAFETY: As in `daemon_read_tramp`.
    let cache = unsafe { Cache::<B>::from_raw(cache, priv_) };
    let Some(args) = NonNull::new(args) else {
        return EINVAL.to_errno();
    };
    // SAFETY: `args` is a writable NUL-terminated string that the caller
    // lends for the call.
    let args = unsafe { CStrMut::from_raw(args) };
    to_c_int(B::copen(cache, args))
}

/// Calls [`Operations::restore`].
///
/// # Safety
///
/// Called by cachefiles with a bound cache and its private data.
unsafe extern "C" fn restore_tramp<B: Operations>(
    cache: *mut bindings::cachefiles_cache,
    priv_: *mut kernel::ffi::c_void,
    _args: *mut kernel::ffi::c_char,
) -> kernel::ffi::c_int {
    // SAFETY: As in `daemon_read_tramp`.
    let cache = unsafe { Cache::<B>::from_raw(cache, priv_) };
    to_c_int(B::restore(cache))
}

/// Calls [`Operations::flush`].
///
/// # Safety
///
/// Called by cachefiles with a bound cache and its private data.
unsafe extern "C" fn flush_tramp<B: Operations>(
    cache: *mut bindings::cachefiles_cache,
    priv_: *mut kernel::ffi::c_void,
) {
    // SAFETY: `flush` is called on a bound cache, with its private data,
    // that its caller keeps alive.
    let cache = unsafe { Cache::<B>::from_raw(cache, priv_) };
    B::flush(cache);
}

/// Creates the object's slot, with [`Operations::new_object_data`], for
/// cachefiles to keep as the object's private data.
///
/// # Safety
///
/// Called by cachefiles with an object being created in `cache`, bound to `B`,
/// and the cache's private data.
unsafe extern "C" fn init_obj_info_tramp<B: Operations>(
    object: *mut bindings::cachefiles_object,
    cache: *mut bindings::cachefiles_cache,
    cache_priv: *mut kernel::ffi::c_void,
) -> *mut kernel::ffi::c_void {
    // SAFETY: `cache` is bound to `B` (the caller's guarantee), and its data,
    // set by `bind` before any of its objects is created, is `cache_priv`.
    let slot = unsafe { ObjectSlot::<B>::new(object, cache, cache_priv, B::new_object_data()) };
    match SlimBox::pin_init(slot) {
        // From now on the object's private data is our slot (see `Object`).
        Ok(slot) => slot.into_raw(),
        Err(e) => e.to_ptr(),
    }
}

/// Frees the object's slot.
///
/// # Safety
///
/// Called by cachefiles with an object being freed, whose data
/// `init_obj_info_tramp` made, and that data; no `&Object` exists any more.
unsafe extern "C" fn deinit_obj_info_tramp<B: Operations>(
    _object: *mut bindings::cachefiles_object,
    priv_: *mut kernel::ffi::c_void,
) {
    if priv_.is_null() {
        return;
    }
    // SAFETY: The private data came from `into_raw` in
    // `init_obj_info_tramp`, and no borrow of it remains. Its work is not
    // pending: a pending work owns a reference to the object.
    drop(unsafe { SlimBox::<ObjectSlot<B>>::from_raw(priv_) });
}

/// Calls [`Operations::init_object`].
///
/// # Safety
///
/// Called by cachefiles with a referenced object of a cache bound to `B`,
/// and the object's private data.
unsafe extern "C" fn init_object_tramp<B: Operations>(
    object: *mut bindings::cachefiles_object,
    priv_: *mut kernel::ffi::c_void,
) -> kernel::ffi::c_int {
    // SAFETY: cachefiles holds a reference for the call, and passes the
    // object's private data.
    let object = unsafe { ObjectView::<B>::from_raw(object, priv_) };
    to_c_int(B::init_object(object))
}

/// Calls [`Operations::clean_object`].
///
/// # Safety
///
/// Called by cachefiles with a referenced object of a cache bound to `B`,
/// and the object's private data.
unsafe extern "C" fn clean_object_tramp<B: Operations>(
    object: *mut bindings::cachefiles_object,
    priv_: *mut kernel::ffi::c_void,
) {
    // SAFETY: As in `init_object_tramp`.
    let object = unsafe { ObjectView::<B>::from_raw(object, priv_) };
    B::clean_object(object);
}

/// Calls [`Operations::read`].
///
/// # Safety
///
/// Called by cachefiles with a referenced object of a cache bound to `B`,
/// and the object's private data.
unsafe extern "C" fn read_tramp<B: Operations>(
    object: *mut bindings::cachefiles_object,
    priv_: *mut kernel::ffi::c_void,
    pos: bindings::loff_t,
    len: usize,
) -> kernel::ffi::c_int {
    // SAFETY: As in `init_object_tramp`.
    let object = unsafe { ObjectView::<B>::from_raw(object, priv_) };
    to_c_int(B::read(object, pos, len))
}

/// The registration of backend `B` with cachefiles.
///
/// # Invariants
///
/// `ops` is registered.
pub(crate) struct Registration<B: Operations> {
    ops: &'static OndemandOps<B>,
}

impl<B: Operations> Registration<B> {
    /// Registers `ops`: caches bound in on-demand mode from now on use `B`.
    pub(crate) fn register(ops: &'static OndemandOps<B>) -> Result<Self> {
        // SAFETY: `ops` is a complete, static table.
        to_result(unsafe { bindings::cachefiles_register_ondemand_backend(&ops.0) })?;
        // INVARIANT: Just registered.
        Ok(Self { ops })
    }
}

impl<B: Operations> Drop for Registration<B> {
    fn drop(&mut self) {
        // SAFETY: `ops` is registered (type invariant). Caches still using it
        // pin the module, so this only runs when none is.
        unsafe { bindings::cachefiles_unregister_ondemand_backend(&self.ops.0) };
    }
}
