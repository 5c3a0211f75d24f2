// SPDX-License-Identifier: GPL-2.0

//! A spinlock whose lock and unlock are one call each.
//!
//! In 6.12, `kernel::sync::SpinLock` locks through two out-of-line calls
//! (its backend's `lock`, then the C helper for `spin_lock()`) before
//! `_raw_spin_lock()`, and unlocks the same way. [`SpinLock`] is the same
//! `kernel::sync::lock::Lock` with a backend whose lock and unlock are in
//! line and call `_raw_spin_lock()` and `_raw_spin_unlock()` directly, as
//! `spin_lock()` does without PREEMPT_RT (with it, the helpers are called).
//! [`xarray`](super::xarray) takes its lock the same way. Later kernels
//! inline the helpers, which makes this module unnecessary there.
//!
//! C header: [`include/linux/spinlock.h`](srctree/include/linux/spinlock.h)

use kernel::{
    bindings,
    sync::lock::{Backend, Guard, Lock},
};

/// A spinlock protecting a `T` (`kernel::sync::SpinLock`'s shape), made
/// with `SpinLock::new(value, c_str!(name), static_lock_class!())`, what
/// `kernel::new_spinlock!` expands to.
pub(crate) type SpinLock<T> = Lock<T, DirectSpinLockBackend>;

/// A guard of a [`SpinLock`].
pub(crate) type SpinLockGuard<'a, T> = Guard<'a, T, DirectSpinLockBackend>;

/// The backend of [`SpinLock`]: a `spinlock_t`.
pub(crate) struct DirectSpinLockBackend;

// SAFETY: `init`, `lock` and `unlock` are those of a `spinlock_t`, which
// gives mutual exclusion: the lock and unlock below are what `spin_lock()`
// and `spin_unlock()` do, on the raw lock at the spinlock's start.
unsafe impl Backend for DirectSpinLockBackend {
    type State = bindings::spinlock_t;
    type GuardState = ();

    unsafe fn init(
        ptr: *mut Self::State,
        name: *const kernel::ffi::c_char,
        key: *mut bindings::lock_class_key,
    ) {
        // SAFETY: `ptr` is valid for writes, `name` and `key` for reads
        // forever (the caller's guarantee).
        unsafe { bindings::__spin_lock_init(ptr, name, key) }
    }

    #[inline]
    unsafe fn lock(ptr: *mut Self::State) -> Self::GuardState {
        // SAFETY: `ptr` is an initialised spinlock (the caller's guarantee)
        // whose raw lock, without PREEMPT_RT, is its first member.
        #[cfg(not(CONFIG_PREEMPT_RT))]
        unsafe {
            bindings::_raw_spin_lock(ptr.cast())
        }
        // SAFETY: As above.
        #[cfg(CONFIG_PREEMPT_RT)]
        unsafe {
            bindings::spin_lock(ptr)
        }
    }

    #[inline]
    unsafe fn unlock(ptr: *mut Self::State, _guard_state: &Self::GuardState) {
        // SAFETY: The caller holds the lock at `ptr`; as in `lock`.
        #[cfg(not(CONFIG_PREEMPT_RT))]
        unsafe {
            bindings::_raw_spin_unlock(ptr.cast())
        }
        // SAFETY: As above.
        #[cfg(CONFIG_PREEMPT_RT)]
        unsafe {
            bindings::spin_unlock(ptr)
        }
    }
}
