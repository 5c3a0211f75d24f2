// SPDX-License-Identifier: GPL-2.0

//! Declarations of the C helpers in `helpers.c`.
//!
//! They wrap static inline functions and macros of the kernel headers that
//! `bindgen` cannot bind. Only the abstraction modules use them (the module
//! is private to `abstractions`).

use kernel::{bindings, uapi};

#[cfg(CONFIG_TRACEPOINTS)]
use super::tracepoint::Tracepoint;

// The kernel structures are bound as `bindgen` sees them (some contain empty
// structs), exactly as in the `bindings` crate, which allows this lint too.
#[allow(improper_ctypes)]
extern "C" {
    /// `xa_init_flags(xa, XA_FLAGS_ALLOC)`.
    pub(crate) fn cfod_xa_init_alloc(xa: *mut bindings::xarray);
    /// `xa_lock(xa)` (PREEMPT_RT only: `xarray` calls the raw lock otherwise).
    #[cfg(CONFIG_PREEMPT_RT)]
    pub(crate) fn cfod_xa_lock(xa: *mut bindings::xarray);
    /// `xa_unlock(xa)` (PREEMPT_RT only).
    #[cfg(CONFIG_PREEMPT_RT)]
    pub(crate) fn cfod_xa_unlock(xa: *mut bindings::xarray);
    /// `INIT_WORK(work, func)`.
    pub(crate) fn cfod_init_work(
        work: *mut bindings::work_struct,
        func: Option<unsafe extern "C" fn(*mut bindings::work_struct)>,
    );
    /// `queue_work(wq, work)`.
    pub(crate) fn cfod_queue_work(
        wq: *mut bindings::workqueue_struct,
        work: *mut bindings::work_struct,
    ) -> bool;
    /// `get_file(file)`.
    pub(crate) fn cfod_get_file(file: *mut bindings::file) -> *mut bindings::file;
    /// `dget(dentry)`.
    pub(crate) fn cfod_dget(dentry: *mut bindings::dentry) -> *mut bindings::dentry;
    /// `msleep(msecs)`.
    pub(crate) fn cfod_msleep(msecs: u32);
    /// `trace_cachefiles_ondemand_open(obj, msg, load)`.
    pub(crate) fn cfod_trace_ondemand_open(
        obj: *mut bindings::cachefiles_object,
        msg: *mut uapi::cachefiles_msg,
        load: *mut uapi::cachefiles_open,
    );
    /// `trace_cachefiles_ondemand_read(obj, msg, load)`.
    pub(crate) fn cfod_trace_ondemand_read(
        obj: *mut bindings::cachefiles_object,
        msg: *mut uapi::cachefiles_msg,
        load: *mut uapi::cachefiles_read,
    );
    /// `trace_cachefiles_ondemand_close(obj, msg)`.
    pub(crate) fn cfod_trace_ondemand_close(
        obj: *mut bindings::cachefiles_object,
        msg: *mut uapi::cachefiles_msg,
    );
    /// `trace_cachefiles_ondemand_cread(obj, msg_id)`.
    pub(crate) fn cfod_trace_ondemand_cread(obj: *mut bindings::cachefiles_object, msg_id: u32);

    /// cachefiles' tracepoint `cachefiles_ondemand_open` (its start).
    #[cfg(CONFIG_TRACEPOINTS)]
    pub(crate) static __tracepoint_cachefiles_ondemand_open: Tracepoint;
    /// cachefiles' tracepoint `cachefiles_ondemand_read` (its start).
    #[cfg(CONFIG_TRACEPOINTS)]
    pub(crate) static __tracepoint_cachefiles_ondemand_read: Tracepoint;
    /// cachefiles' tracepoint `cachefiles_ondemand_close` (its start).
    #[cfg(CONFIG_TRACEPOINTS)]
    pub(crate) static __tracepoint_cachefiles_ondemand_close: Tracepoint;
    /// cachefiles' tracepoint `cachefiles_ondemand_cread` (its start).
    #[cfg(CONFIG_TRACEPOINTS)]
    pub(crate) static __tracepoint_cachefiles_ondemand_cread: Tracepoint;
}
