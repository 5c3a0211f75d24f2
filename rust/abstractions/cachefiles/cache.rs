// SPDX-License-Identifier: GPL-2.0

//! A cachefiles cache, as seen by its on-demand backend.

use core::marker::PhantomData;
use kernel::{
    bindings,
    types::{ForeignOwnable, Opaque},
};

use super::Operations;

/// A cache bound to backend `B`.
///
/// # Invariants
///
/// A `&Cache<B>` only exists while the cache is bound to `B` and its backend
/// private data is a `B::CacheData` from `into_foreign` (between the `bind`
/// and `unbind` operations).
#[repr(transparent)]
pub(crate) struct Cache<B: Operations>(Opaque<bindings::cachefiles_cache>, PhantomData<B>);

// SAFETY: The accessors used through `&Cache` are thread-safe.
unsafe impl<B: Operations> Sync for Cache<B> {}
// SAFETY: As above.
unsafe impl<B: Operations> Send for Cache<B> {}

impl<B: Operations> Cache<B> {
    /// Wraps a cache pointer given by cachefiles.
    ///
    /// # Safety
    ///
    /// `ptr` must be a cache bound to `B`, with its data set, that stays so
    /// for `'a`.
    pub(super) unsafe fn from_raw<'a>(ptr: *const bindings::cachefiles_cache) -> &'a Self {
        // SAFETY: `Cache` is a transparent wrapper; the caller guarantees validity.
        unsafe { &*ptr.cast() }
    }

    fn as_ptr(&self) -> *mut bindings::cachefiles_cache {
        self.0.get()
    }

    /// Returns the backend's data of this cache.
    pub(crate) fn data(&self) -> <B::CacheData as ForeignOwnable>::Borrowed<'_> {
        // Only a backend with `bind` gives its caches data.
        kernel::build_assert!(B::HAS_BIND);
        // SAFETY: By the type invariant the private data is a `B::CacheData`,
        // which stays until `unbind`, which cannot happen while `self` lives.
        unsafe { B::CacheData::borrow(bindings::cachefiles_cache_backend_priv(self.as_ptr())) }
    }

    /// Wakes the daemon's `poll()`.
    pub(crate) fn wake_daemon(&self) {
        // SAFETY: The cache is valid.
        unsafe { bindings::cachefiles_cache_wake_daemon(self.as_ptr()) };
    }
}
