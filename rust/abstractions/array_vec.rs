// SPDX-License-Identifier: GPL-2.0

//! A vector of at most `N` values, stored in place: no allocation, and no
//! initialisation of the slots not in use.
//!
//! Shaped like the `arrayvec` crate's `ArrayVec` (`new`, `push` as its
//! `try_push`, `is_full`, `is_empty`), with one way out of it for all values at
//! once, [`ArrayVec::take_each`]. The `kernel` crate has no equivalent.

use core::mem::MaybeUninit;

/// A vector of at most `N` values of type `T`, in place.
///
/// # Invariants
///
/// `len <= N`, and `slots[..len]` are initialised: they own their values.
pub(crate) struct ArrayVec<T, const N: usize> {
    slots: [MaybeUninit<T>; N],
    len: usize,
}

impl<T, const N: usize> ArrayVec<T, N> {
    /// Returns an empty vector; its slots are not written.
    #[inline(always)]
    pub(crate) fn new() -> Self {
        // INVARIANT: No slot is in use.
        Self {
            slots: [const { MaybeUninit::uninit() }; N],
            len: 0,
        }
    }

    /// Returns whether it holds no value.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns whether it holds `N` values: [`Self::push`] would fail.
    #[inline(always)]
    pub(crate) fn is_full(&self) -> bool {
        self.len >= N
    }

    /// Appends `value`, or gives it back if the vector is full.
    #[inline(always)]
    pub(crate) fn push(&mut self, value: T) -> Result<(), T> {
        let len = self.len;
        let Some(slot) = self.slots.get_mut(len) else {
            return Err(value);
        };
        slot.write(value);
        // INVARIANT: The slot at `len` was just initialised. `len < N`, so
        // this does not overflow.
        self.len = len + 1;
        Ok(())
    }

    /// Moves every value out into `f`, the last pushed first; the vector is
    /// empty after it.
    ///
    /// Backwards, so that the loop counts down to zero: one instruction a
    /// value fewer than counting up to the length.
    #[inline(always)]
    pub(crate) fn take_each(&mut self, mut f: impl FnMut(T)) {
        // INVARIANT: Emptied before any value is moved out: should `f` not
        // return, the values not reached yet are leaked, never dropped twice.
        let len = core::mem::replace(&mut self.len, 0);
        let Some(used) = self.slots.get(..len) else {
            return;
        };
        for slot in used.iter().rev() {
            // SAFETY: `slot` is one of the first `len` slots, initialised by
            // the type invariant, and read once: `len` is 0 already, so
            // nothing reads it again before it is written anew.
            f(unsafe { slot.assume_init_read() });
        }
    }
}

impl<T, const N: usize> Drop for ArrayVec<T, N> {
    #[inline(always)]
    fn drop(&mut self) {
        self.take_each(drop);
    }
}
