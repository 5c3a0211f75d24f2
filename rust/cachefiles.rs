// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the cachefiles on-demand backend API.
//!
//! A [`Backend`] implementation is registered with [`Registration`]; the
//! operations table's trampolines turn the C pointers into [`Cache`] and
//! [`Object`] references and call the backend. The backend's per-cache data is
//! stored in the cache, its per-object data (with a work item that runs
//! [`Backend::object_work`]) in the object.
//!
//! C header: [`include/linux/cachefiles_backend.h`](srctree/include/linux/cachefiles_backend.h)

use core::{marker::PhantomData, pin::Pin, ptr::NonNull};
use kernel::{
    bindings,
    error::{to_result, Result},
    prelude::*,
    types::{ARef, AlwaysRefCounted, ForeignOwnable, Opaque},
    uaccess::UserSlice,
    ThisModule,
};

use crate::{
    file::{File, IovIter},
    work::RawWork,
};

/// An on-demand backend.
pub(crate) trait Backend: Sized + Send + Sync + 'static {
    /// Per-cache data, created at bind and dropped at unbind.
    type CacheData: ForeignOwnable + Send + Sync;
    /// Per-object data, pinned in the object for the object's lifetime.
    type ObjectData: Send + Sync;

    /// A cache is being bound: create its data.
    fn bind() -> Result<Self::CacheData>;
    /// `read()` on the devnode.
    fn daemon_read(cache: &Cache<Self>, buf: UserSlice, len: usize) -> Result<usize>;
    /// Whether the devnode is readable.
    fn daemon_poll(cache: &Cache<Self>) -> bool;
    /// The `copen` command; `args` is the argument string with its trailing NUL.
    fn copen(cache: &Cache<Self>, args: &mut [u8]) -> Result;
    /// The `restore` command.
    fn restore(cache: &Cache<Self>) -> Result;
    /// The cache is dead: fail everything pending.
    fn flush(cache: &Cache<Self>);
    /// The data of a new object.
    fn new_object_data() -> impl PinInit<Self::ObjectData, Error>;
    /// The object is being looked up.
    fn init_object(object: &Object<Self>) -> Result;
    /// The object is being withdrawn.
    fn clean_object(object: &Object<Self>);
    /// Cache miss on `[pos, pos + len)`.
    fn read(object: &Object<Self>, pos: i64, len: usize) -> Result;
    /// The object's work item, queued with [`Object::queue_work`], runs.
    fn object_work(object: ARef<Object<Self>>);
}

/// A cache bound to backend `B`.
///
/// # Invariants
///
/// A `&Cache<B>` only exists while the cache is bound to `B` and its backend
/// private data is a `B::CacheData` from `into_foreign` (between the `bind`
/// and `unbind` operations).
#[repr(transparent)]
pub(crate) struct Cache<B: Backend>(Opaque<bindings::cachefiles_cache>, PhantomData<B>);

// SAFETY: The accessors used through `&Cache` are thread-safe.
unsafe impl<B: Backend> Sync for Cache<B> {}
// SAFETY: As above.
unsafe impl<B: Backend> Send for Cache<B> {}

impl<B: Backend> Cache<B> {
    /// # Safety
    ///
    /// `ptr` must be a cache bound to `B`, with its data set, that stays so
    /// for `'a`.
    unsafe fn from_raw<'a>(ptr: *const bindings::cachefiles_cache) -> &'a Self {
        // SAFETY: `Cache` is a transparent wrapper; the caller guarantees validity.
        unsafe { &*ptr.cast() }
    }

    fn as_ptr(&self) -> *mut bindings::cachefiles_cache {
        self.0.get()
    }

    /// The backend's data of this cache.
    pub(crate) fn data(&self) -> <B::CacheData as ForeignOwnable>::Borrowed<'_> {
        // SAFETY: By the type invariant the private data is a `B::CacheData`,
        // which stays until `unbind`, which cannot happen while `self` lives.
        unsafe { B::CacheData::borrow(bindings::cachefiles_cache_backend_priv(self.as_ptr())) }
    }

    /// Whether the devnode was released or an I/O error killed the cache.
    pub(crate) fn is_dead(&self) -> bool {
        // SAFETY: The cache is valid.
        unsafe { bindings::cachefiles_cache_is_dead(self.as_ptr()) }
    }

    /// Wakes the daemon's `poll()`.
    pub(crate) fn wake_daemon(&self) {
        // SAFETY: The cache is valid.
        unsafe { bindings::cachefiles_cache_wake_daemon(self.as_ptr()) };
    }

    /// Keeps the cache bound until the returned pin is dropped.
    pub(crate) fn pin(&self) -> CachePin<B> {
        // SAFETY: The cache is valid.
        unsafe { bindings::cachefiles_cache_pin(self.as_ptr()) };
        // INVARIANT: We just took a pin.
        CachePin {
            cache: NonNull::from(&self.0).cast(),
            _p: PhantomData,
        }
    }
}

/// A pin on a cache: it stays bound (and so alive) while this exists.
///
/// Dropping the last pin may unbind the cache and call the backend's unbind:
/// the borrow checker ensures no `&Cache` obtained from the pin survives it;
/// callers must also not hold an object reference or a backend lock then.
///
/// # Invariants
///
/// `cache` is a cache bound to `B` on which this value owns a pin.
pub(crate) struct CachePin<B: Backend> {
    cache: NonNull<bindings::cachefiles_cache>,
    _p: PhantomData<B>,
}

// SAFETY: Pins may be dropped from any thread.
unsafe impl<B: Backend> Send for CachePin<B> {}
// SAFETY: `&CachePin` only gives `&Cache`, which is `Sync`.
unsafe impl<B: Backend> Sync for CachePin<B> {}

impl<B: Backend> core::ops::Deref for CachePin<B> {
    type Target = Cache<B>;

    fn deref(&self) -> &Cache<B> {
        // SAFETY: The pin keeps the cache bound with its data (type invariant).
        unsafe { Cache::from_raw(self.cache.as_ptr()) }
    }
}

impl<B: Backend> Drop for CachePin<B> {
    fn drop(&mut self) {
        // SAFETY: We own a pin (type invariant).
        unsafe { bindings::cachefiles_cache_unpin(self.cache.as_ptr()) };
    }
}

/// What the backend keeps in an object's private data.
///
/// # Invariants
///
/// `object` is the object whose private data this slot is; `work` runs
/// [`object_work_fn`] for `B`.
#[pin_data]
struct ObjectSlot<B: Backend> {
    object: *mut bindings::cachefiles_object,
    #[pin]
    work: RawWork,
    #[pin]
    data: B::ObjectData,
}

// SAFETY: `object` is only used to rebuild the reference a queued work owns,
// which may happen on any thread; the rest is `Send`/`Sync` by the bounds.
unsafe impl<B: Backend> Send for ObjectSlot<B> {}
// SAFETY: As above.
unsafe impl<B: Backend> Sync for ObjectSlot<B> {}

/// A cachefiles object of a cache bound to backend `B`.
///
/// # Invariants
///
/// A `&Object<B>` only exists while the object is alive (someone holds a
/// reference) and its private data is a `Pin<KBox<ObjectSlot<B>>>` from
/// `into_foreign`. Objects are all freed before their cache is unbound.
#[repr(transparent)]
pub(crate) struct Object<B: Backend>(Opaque<bindings::cachefiles_object>, PhantomData<B>);

// SAFETY: The accessors used through `&Object` are thread-safe.
unsafe impl<B: Backend> Sync for Object<B> {}
// SAFETY: Object references may be dropped on any thread.
unsafe impl<B: Backend> Send for Object<B> {}

// SAFETY: `cachefiles_object_get`/`put` manage the object's reference count;
// the last put frees it (after the backend's `deinit_obj_info`).
unsafe impl<B: Backend> AlwaysRefCounted for Object<B> {
    fn inc_ref(&self) {
        // SAFETY: The object is alive, so its count is not zero.
        unsafe { bindings::cachefiles_object_get(self.as_ptr()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller owns a reference.
        unsafe { bindings::cachefiles_object_put(obj.as_ptr().cast()) };
    }
}

/// The type of `cachefiles_object_volume_key` and `cachefiles_object_cookie_key`.
type KeyFn = unsafe extern "C" fn(
    *const bindings::cachefiles_object,
    *mut usize,
) -> *const kernel::ffi::c_void;

impl<B: Backend> Object<B> {
    /// # Safety
    ///
    /// `ptr` must be an object of a cache bound to `B`, with its private data
    /// set, on which the caller holds a reference for `'a`.
    unsafe fn from_raw<'a>(ptr: *const bindings::cachefiles_object) -> &'a Self {
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
            <Pin<KBox<ObjectSlot<B>>>>::borrow(bindings::cachefiles_object_backend_priv(
                self.as_ptr(),
            ))
        }
    }

    /// The backend's data of this object.
    pub(crate) fn data(&self) -> Pin<&B::ObjectData> {
        let slot = self.slot();
        // SAFETY: Projection of a structurally pinned field.
        unsafe { slot.map_unchecked(|s| &s.data) }
    }

    /// The cache of this object (alive: objects go before their cache).
    pub(crate) fn cache(&self) -> &Cache<B> {
        // SAFETY: The object is alive, so its cache is bound with its data
        // set, and stays so at least as long as the object.
        unsafe { Cache::from_raw(bindings::cachefiles_object_cache(self.as_ptr())) }
    }

    /// The object's debug id.
    pub(crate) fn debug_id(&self) -> u32 {
        // SAFETY: The object is alive.
        unsafe { bindings::cachefiles_object_get_debug_id(self.as_ptr()) }
    }

    fn key(&self, f: KeyFn) -> &[u8] {
        let mut len = 0usize;
        // SAFETY: The object is alive; `len` is valid for writes.
        let p = unsafe { f(self.as_ptr(), &mut len) };
        if p.is_null() || len == 0 {
            return &[];
        }
        // SAFETY: The key is `len` bytes owned by the object's cookie/volume,
        // which live at least as long as the object.
        unsafe { core::slice::from_raw_parts(p.cast::<u8>(), len) }
    }

    /// The volume key, NUL-terminated (the length counts the NUL).
    pub(crate) fn volume_key(&self) -> &[u8] {
        self.key(bindings::cachefiles_object_volume_key)
    }

    /// The cookie key (binary).
    pub(crate) fn cookie_key(&self) -> &[u8] {
        self.key(bindings::cachefiles_object_cookie_key)
    }

    /// Whether the netfs asked for `FSCACHE_ADV_WANT_CACHE_SIZE`.
    pub(crate) fn wants_cache_size(&self) -> bool {
        // SAFETY: The object is alive.
        unsafe { bindings::cachefiles_object_wants_cache_size(self.as_ptr()) }
    }

    /// Records the object size given by the daemon (0: nothing to read).
    pub(crate) fn set_size(&self, size: i64) {
        // SAFETY: The object is alive.
        unsafe { bindings::cachefiles_object_set_size(self.as_ptr(), size) };
    }

    /// The backing file, if the object has one.
    pub(crate) fn backing_file(&self) -> Option<File> {
        // SAFETY: The object is alive.
        let file = unsafe { bindings::cachefiles_object_get_file(self.as_ptr()) };
        // SAFETY: `cachefiles_object_get_file` gave us a reference.
        NonNull::new(file).map(|f| unsafe { File::from_raw(f) })
    }

    /// Writes `iter` into the backing `file` at `pos` (page aligned).
    pub(crate) fn write(&self, file: &File, pos: i64, iter: &mut IovIter) -> Result<usize> {
        // SAFETY: The object is alive, `file` is a referenced file and `iter`
        // a valid iterator.
        let ret = unsafe {
            bindings::cachefiles_object_write(self.as_ptr(), file.as_ptr(), pos, iter.as_ptr())
        };
        if ret < 0 {
            return Err(Error::from_errno(ret as i32));
        }
        Ok(ret as usize)
    }

    /// Queues the object's work on the backend workqueue; the work owns a
    /// reference to the object until it runs or is cancelled.
    ///
    /// Returns `false` if the work was already pending.
    pub(crate) fn queue_work(this: &ARef<Self>) -> bool {
        let slot = this.slot();
        let leaked = ARef::into_raw(this.clone());
        // SAFETY: The leaked reference keeps the object, hence its private
        // data and the work in it, alive until `object_work_fn` or
        // `cancel_work_sync` takes the reference back.
        let queued = unsafe { slot.work.queue(bindings::cachefiles_backend_wq()) };
        if !queued {
            // SAFETY: The work was not queued: the leaked reference is still ours.
            drop(unsafe { ARef::from_raw(leaked) });
        }
        queued
    }

    /// Cancels the object's work if queued and waits for it if running.
    pub(crate) fn cancel_work_sync(&self) {
        if self.slot().work.cancel_sync() {
            // SAFETY: The work was pending, so it owned a reference (taken in
            // `queue_work`) that nobody will take back now. It is not the last
            // one: our caller holds one.
            drop(unsafe { ARef::from_raw(NonNull::from(self)) });
        }
    }
}

/// The function of every object's work item.
///
/// # Safety
///
/// Only called by the workqueue for the `work` of an `ObjectSlot<B>` queued
/// by [`Object::queue_work`].
unsafe extern "C" fn object_work_fn<B: Backend>(work: *mut bindings::work_struct) {
    // SAFETY: `work` is the `work` field of an `ObjectSlot<B>` (the only user
    // of this function); `RawWork` is a transparent wrapper of the work_struct.
    let slot = unsafe { kernel::container_of!(work.cast::<RawWork>(), ObjectSlot<B>, work) };
    // SAFETY: The slot is alive: the queued work owns a reference to its
    // object (see `Object::queue_work`), which we take back here.
    let object =
        unsafe { ARef::from_raw(NonNull::new_unchecked((*slot).object.cast::<Object<B>>())) };
    B::object_work(object);
}

/// A `struct cachefiles_ondemand_ops` table calling into `B`.
///
/// # Invariants
///
/// Every operation is set, to the trampoline for `B`.
#[repr(transparent)]
pub(crate) struct OndemandOps<B: Backend>(bindings::cachefiles_ondemand_ops, PhantomData<B>);

// SAFETY: The table is immutable.
unsafe impl<B: Backend> Sync for OndemandOps<B> {}

impl<B: Backend> OndemandOps<B> {
    /// Builds the table for `owner`, shown as `name`.
    pub(crate) const fn new(owner: &'static ThisModule, name: &'static CStr) -> Self {
        Self(
            bindings::cachefiles_ondemand_ops {
                owner: owner.as_ptr(),
                name: name.as_char_ptr(),
                bind: Some(bind_tramp::<B>),
                unbind: Some(unbind_tramp::<B>),
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

/// `bind`.
///
/// # Safety
///
/// Called by cachefiles with a cache being bound to `B`.
unsafe extern "C" fn bind_tramp<B: Backend>(
    cache: *mut bindings::cachefiles_cache,
) -> kernel::ffi::c_int {
    match B::bind() {
        Ok(data) => {
            // SAFETY: The cache is being bound to `B`; nothing else uses its
            // private data. From now on it is a `B::CacheData` (see `Cache`).
            unsafe {
                bindings::cachefiles_cache_set_backend_priv(cache, data.into_foreign() as *mut _)
            };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// `unbind`.
///
/// # Safety
///
/// Called by cachefiles with a cache bound to `B` that is being freed.
unsafe extern "C" fn unbind_tramp<B: Backend>(cache: *mut bindings::cachefiles_cache) {
    // SAFETY: The cache is being freed: no `&Cache` exists any more.
    let priv_ = unsafe { bindings::cachefiles_cache_backend_priv(cache) };
    if priv_.is_null() {
        return;
    }
    // SAFETY: As above.
    unsafe { bindings::cachefiles_cache_set_backend_priv(cache, core::ptr::null_mut()) };
    // SAFETY: The private data came from `into_foreign` in `bind_tramp` and no
    // borrow of it remains.
    drop(unsafe { B::CacheData::from_foreign(priv_) });
}

/// `daemon_read`.
///
/// # Safety
///
/// Called by cachefiles with a bound cache and a user buffer of `buflen` bytes.
unsafe extern "C" fn daemon_read_tramp<B: Backend>(
    cache: *mut bindings::cachefiles_cache,
    buffer: *mut kernel::ffi::c_char,
    buflen: usize,
) -> isize {
    // SAFETY: cachefiles calls us on a bound cache, which the devnode keeps alive.
    let cache = unsafe { Cache::<B>::from_raw(cache) };
    let buf = UserSlice::new(buffer as usize, buflen);
    match B::daemon_read(cache, buf, buflen) {
        Ok(n) => n as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// `daemon_poll`.
///
/// # Safety
///
/// Called by cachefiles with a bound cache.
unsafe extern "C" fn daemon_poll_tramp<B: Backend>(
    cache: *mut bindings::cachefiles_cache,
) -> bindings::__poll_t {
    // SAFETY: As in `daemon_read_tramp`.
    let cache = unsafe { Cache::<B>::from_raw(cache) };
    /// `EPOLLIN` (UAPI, `include/uapi/linux/eventpoll.h`).
    const EPOLLIN: bindings::__poll_t = 0x1;
    if B::daemon_poll(cache) {
        EPOLLIN
    } else {
        0
    }
}

/// `copen`.
///
/// # Safety
///
/// Called by cachefiles with a bound cache and a writable NUL-terminated string.
unsafe extern "C" fn copen_tramp<B: Backend>(
    cache: *mut bindings::cachefiles_cache,
    args: *mut kernel::ffi::c_char,
) -> kernel::ffi::c_int {
    // SAFETY: As in `daemon_read_tramp`.
    let cache = unsafe { Cache::<B>::from_raw(cache) };
    // SAFETY: `args` is a NUL-terminated string owned by the caller for the call.
    let len = unsafe { bindings::strlen(args) };
    let Some(len) = len.checked_add(1) else {
        return EINVAL.to_errno();
    };
    // SAFETY: The `len` bytes (with the NUL) are writable and ours for the call.
    let args = unsafe { core::slice::from_raw_parts_mut(args.cast::<u8>(), len) };
    to_c_int(B::copen(cache, args))
}

/// `restore`.
///
/// # Safety
///
/// Called by cachefiles with a bound cache.
unsafe extern "C" fn restore_tramp<B: Backend>(
    cache: *mut bindings::cachefiles_cache,
    _args: *mut kernel::ffi::c_char,
) -> kernel::ffi::c_int {
    // SAFETY: As in `daemon_read_tramp`.
    let cache = unsafe { Cache::<B>::from_raw(cache) };
    to_c_int(B::restore(cache))
}

/// `flush`.
///
/// # Safety
///
/// Called by cachefiles with a bound cache.
unsafe extern "C" fn flush_tramp<B: Backend>(cache: *mut bindings::cachefiles_cache) {
    // SAFETY: `flush` is called on a bound cache that its caller keeps alive.
    let cache = unsafe { Cache::<B>::from_raw(cache) };
    B::flush(cache);
}

/// `init_obj_info`.
///
/// # Safety
///
/// Called by cachefiles with an object being created in a cache bound to `B`.
unsafe extern "C" fn init_obj_info_tramp<B: Backend>(
    object: *mut bindings::cachefiles_object,
    _volume: *mut bindings::cachefiles_volume,
) -> kernel::ffi::c_int {
    let slot = KBox::pin_init(
        try_pin_init!(ObjectSlot::<B> {
            object,
            work <- RawWork::new(object_work_fn::<B>),
            data <- B::new_object_data(),
        }),
        GFP_KERNEL,
    );
    match slot {
        Ok(slot) => {
            // SAFETY: The object is being created; nobody else uses its private
            // data. From now on it is our slot (see `Object`).
            unsafe {
                bindings::cachefiles_object_set_backend_priv(object, slot.into_foreign() as *mut _)
            };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// `deinit_obj_info`.
///
/// # Safety
///
/// Called by cachefiles with an object being freed, whose data `init_obj_info_tramp` set.
unsafe extern "C" fn deinit_obj_info_tramp<B: Backend>(object: *mut bindings::cachefiles_object) {
    // SAFETY: The object is being freed: no `&Object` exists any more.
    let priv_ = unsafe { bindings::cachefiles_object_backend_priv(object) };
    if priv_.is_null() {
        return;
    }
    // SAFETY: As above.
    unsafe { bindings::cachefiles_object_set_backend_priv(object, core::ptr::null_mut()) };
    // SAFETY: The private data came from `into_foreign` in
    // `init_obj_info_tramp`, and no borrow of it remains. Its work is not
    // pending: a pending work owns a reference to the object.
    drop(unsafe { <Pin<KBox<ObjectSlot<B>>>>::from_foreign(priv_) });
}

/// `init_object`.
///
/// # Safety
///
/// Called by cachefiles with a referenced object of a cache bound to `B`.
unsafe extern "C" fn init_object_tramp<B: Backend>(
    object: *mut bindings::cachefiles_object,
) -> kernel::ffi::c_int {
    // SAFETY: cachefiles holds a reference for the call; the object has data.
    let object = unsafe { Object::<B>::from_raw(object) };
    to_c_int(B::init_object(object))
}

/// `clean_object`.
///
/// # Safety
///
/// Called by cachefiles with a referenced object of a cache bound to `B`.
unsafe extern "C" fn clean_object_tramp<B: Backend>(object: *mut bindings::cachefiles_object) {
    // SAFETY: As in `init_object_tramp`.
    let object = unsafe { Object::<B>::from_raw(object) };
    B::clean_object(object);
}

/// `read`.
///
/// # Safety
///
/// Called by cachefiles with a referenced object of a cache bound to `B`.
unsafe extern "C" fn read_tramp<B: Backend>(
    object: *mut bindings::cachefiles_object,
    pos: bindings::loff_t,
    len: usize,
) -> kernel::ffi::c_int {
    // SAFETY: As in `init_object_tramp`.
    let object = unsafe { Object::<B>::from_raw(object) };
    to_c_int(B::read(object, pos, len))
}

/// The registration of backend `B` with cachefiles.
///
/// # Invariants
///
/// `ops` is registered.
pub(crate) struct Registration<B: Backend> {
    ops: &'static OndemandOps<B>,
}

impl<B: Backend> Registration<B> {
    /// Registers `ops`: caches bound in on-demand mode from now on use `B`.
    pub(crate) fn register(ops: &'static OndemandOps<B>) -> Result<Self> {
        // SAFETY: `ops` is a complete, static table.
        to_result(unsafe { bindings::cachefiles_register_ondemand_backend(&ops.0) })?;
        Ok(Self { ops })
    }
}

impl<B: Backend> Drop for Registration<B> {
    fn drop(&mut self) {
        // SAFETY: `ops` is registered (type invariant). Caches still using it
        // pin the module, so this only runs when none is.
        unsafe { bindings::cachefiles_unregister_ondemand_backend(&self.ops.0) };
    }
}
