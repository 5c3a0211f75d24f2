// SPDX-License-Identifier: GPL-2.0

//! The kernel APIs the backend needs that the 6.12 `kernel` crate lacks.
//!
//! This is the only place with `unsafe` code and `bindings::`; the driver
//! (the crate's other modules) is written against these safe APIs alone.
//! Where a later kernel's `kernel` crate has the same API, the module is
//! shaped like it (same names and signatures where practical) and says
//! which one it mirrors, so that moving to that kernel is mostly a matter of
//! deleting the module and changing a `use`:
//!
//! | module | later upstream equivalent |
//! | --- | --- |
//! | [`xarray`] | `kernel::xarray` (plus marks, `find`, a cursor, cyclic allocation) |
//! | [`completion`] | `kernel::sync::Completion` (plus killable waits) |
//! | [`workqueue`] | `kernel::workqueue` (a raw work item with `cancel_sync`) |
//! | [`file`] | `kernel::fs::file` (`File`, `FileDescriptorReservation`, `flags`) |
//! | [`debugfs`] | `kernel::debugfs` (directories and read-only files) |
//! | [`kstrtox`] | none: the C parsers, for their exact semantics |
//! | [`cstr`] | none: a writable `char *` split in place with `strchr()` |
//! | [`slim_arc`] | `kernel::sync::Arc` with an inline count and plain `kmalloc` |
//! | [`slim_box`] | `kernel::alloc::KBox`, pinned, with plain `kmalloc` and a byte tail |
//! | [`delay`] | `kernel::time::delay` |
//! | [`error`] | `kernel::error` (the codes 6.12 does not name, in-line helpers) |
//! | [`tracepoint`] | `kernel::tracepoint` (only whether one is on) |
//! | [`uaccess`] | `kernel::uaccess` (the writer, with in-line writes) |
//! | [`array_vec`] | none: a vector of at most `N` values, in place |
//! | [`cachefiles`] | none: the backend API of the kernel patch |
//!
//! `helpers` declares the C helpers of `helpers.c` (static inline functions
//! and macros bindgen cannot bind); later kernels have them in `rust/helpers/`.

pub(crate) mod array_vec;
pub(crate) mod cachefiles;
pub(crate) mod completion;
pub(crate) mod cstr;
pub(crate) mod debugfs;
pub(crate) mod delay;
pub(crate) mod error;
pub(crate) mod file;
mod helpers;
pub(crate) mod kstrtox;
pub(crate) mod slim_arc;
pub(crate) mod slim_box;
#[cfg(CONFIG_TRACEPOINTS)]
mod tracepoint;
pub(crate) mod uaccess;
pub(crate) mod workqueue;
pub(crate) mod xarray;
