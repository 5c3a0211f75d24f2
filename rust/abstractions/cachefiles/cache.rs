// SPDX-License-Identifier: GPL-2.0

//! A cachefiles cache, as seen by its on-demand backend.

use core::marker::PhantomData;
use kernel::{bindings, types::ForeignOwnable};

use super::Operations;

/// A cache bound to backend `B`, with the backend's data of it, both valid
/// for `'a`.
///
/// cachefiles passes the data to every operation on the cache, and an
/// object's slot keeps it, so reaching it takes no call into cachefiles.
///
/// # Invariants
///
/// For all of `'a`, `ptr` is a cache bound to `B` and `data` is its backend
/// private data, a `B::CacheData` from `into_foreign` (between the `bind` and
/// `unbind` operations).
pub(crate) struct Cache<'a, B: Operations> {
    ptr: *mut bindings::cachefiles_cache,
    data: *mut kernel::ffi::c_void,
    _p: PhantomData<(&'a bindings::cachefiles_cache, B)>,
}

impl<B: Operations> Clone for Cache<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Operations> Copy for Cache<'_, B> {}

impl<'a, B: Operations> Cache<'a, B> {
    /// Wraps a cache pointer given by cachefiles, and its backend data.
    ///
    /// # Safety
    ///
    /// `ptr` must be a cache bound to `B`, and `data` its backend private
    /// data, set by `bind`; both must stay so for `'a`.
    pub(super) unsafe fn from_raw(
        ptr: *mut bindings::cachefiles_cache,
        data: *mut kernel::ffi::c_void,
    ) -> Self {
        // INVARIANT: The caller's guarantee.
        Self {
            ptr,
            data,
            _p: PhantomData,
        }
    }

    /// Returns the backend's data of this cache.
    pub(crate) fn data(&self) -> <B::CacheData as ForeignOwnable>::Borrowed<'a> {
        // Only a backend with `bind` gives its caches data.
        kernel::build_assert!(B::HAS_BIND);
        // SAFETY: By the type invariant `data` is a `B::CacheData` from
        // `into_foreign`, which stays until `unbind`, after `'a`.
        unsafe { B::CacheData::borrow(self.data) }
    }

    /// Wakes the daemon's `poll()`.
    pub(crate) fn wake_daemon(&self) {
        // SAFETY: The cache is valid (type invariant).
        unsafe { bindings::cachefiles_cache_wake_daemon(self.ptr) };
    }
}
