// SPDX-License-Identifier: GPL-2.0

//! Rust implementation of the on-demand read mode of cachefiles.
//!
//! Once loaded, the module registers itself as the on-demand backend of
//! cachefiles; every cache bound with `bind ondemand` from then on is served by
//! it until the cache is unbound.
//!
//! # Layout
//!
//! - `abstractions`: the kernel APIs the 6.12 `kernel` crate lacks, shaped
//!   like later kernels' where they have one (`xarray`, `completion`,
//!   `workqueue`, `file`, `debugfs`, `kstrtox`, `delay`, `error`), and the
//!   backend API of the kernel patch (`cachefiles`: the [`Cache`] and
//!   [`Object`] wrappers, the operations tables, the UAPI messages). All of
//!   the crate's FFI is there.
//! - The driver, the on-demand logic: `request` (messages, completion) and
//!   its `queue` (the only place a request is completed), `cache` (the
//!   per-cache state, [`OndemandCache`]), `object` (the per-object state,
//!   [`OndemandObject`], and OPEN/READ/CLOSE), `daemon` (devnode read/poll,
//!   copen, restore), `anon_fd` (the daemon's anonymous fds), `stats`.
//!
//! # Lifetimes
//!
//! - A request is a `SlimArc<Request>` held by its waiter, by the queue while
//!   queued, and by a daemon `read()` while it is being delivered; it holds a
//!   reference to its object. Only whoever removes it from the queue can
//!   complete it (`request::queue::Taken`, which only the queue can make), so
//!   it is completed exactly once. The
//!   completer hands its reference over to the waiter, which drops the last
//!   one: `flush` never drops an object.
//! - An anonymous fd holds a reference to its object and pins the cache;
//!   cachefiles takes both when it makes the file and drops them when the
//!   backend's release is done.
//! - Queued reopen work holds a reference to its object; `clean_object`
//!   cancels it and waits for it.
//!
//! # Locking order
//!
//! 1. the cache's daemon mutex (cachefiles, around `copen` and `restore`);
//! 2. the request queue lock (the lock of `OndemandCache::reqs`).
//!
//! The object id allocator's lock and the cookie lock that
//! `cachefiles_object_set_size` takes (in `copen`) are leaves, never held
//! with another lock. An object's state has no lock: it is one atomic word,
//! changed by compare-and-exchange (`OndemandObject`).
//! Requests taken out of the queue are completed, object references dropped
//! and the daemon woken only after the queue lock is released (except for
//! non-last reference drops, which are noted where they happen).
//!
//! # Differences from `fs/cachefiles/ondemand.c`
//!
//! Same errnos and side effects as seen from user space, except where the C
//! code is racy or relies on luck:
//!
//! - A CLOSE carries the id of the anonymous fd it was made for; releasing
//!   that fd closes the object and completes that CLOSE if unread, in one
//!   critical section. The C code matches on the message's object id, which
//!   is only set once a request has been read, so it misses never-read
//!   CLOSEs.
//! - Dropping is final: releasing an anonymous fd does not turn a dropping
//!   object back into a closed one.
//! - `clean_object` always marks the object dropping, fails its requests and
//!   cancels its work, even if it never had an anonymous fd.
//! - A killed waiter whose request was already taken by someone else waits
//!   (uninterruptibly, briefly) for that party to complete it instead of
//!   spinning on a killable wait that returns at once.
//! - An OPEN whose keys do not fit a message fails with `EINVAL` (fscache's
//!   key limits make that impossible).
//! - A copen wakes the daemon only if the object it opens was reopening:
//!   only then can a queued request become ready (C wakes it every time).

use core::sync::atomic::{AtomicU32, Ordering};
use kernel::{c_str, prelude::*, types::ARef};

mod abstractions;
mod anon_fd;
mod cache;
mod daemon;
mod object;
mod request;
mod stats;

use abstractions::{
    cachefiles::{self, FdOperations, OndemandOps, Operations, Registration},
    cstr::CStrMut,
    debugfs,
    uaccess::UserSlice,
};
use cache::OndemandCache;
use object::OndemandObject;

module! {
    type: CachefilesOndemand,
    name: "cachefiles_ondemand_rs",
    author: "cachefiles-ondemand-rs developers",
    description: "Rust on-demand read backend for cachefiles",
    license: "GPL",
}

/// The on-demand backend.
pub(crate) struct Ondemand;

/// A cachefiles object of a cache using this backend; its data is an [`OndemandObject`].
pub(crate) type Object = cachefiles::Object<Ondemand>;
/// An [`Object`] lent to a request by its sender, with direct access to its
/// data.
pub(crate) type ObjectLoan = cachefiles::ObjectLoan<Ondemand>;
/// An [`Object`] borrowed with direct access to its data.
pub(crate) type ObjectView<'a> = cachefiles::ObjectView<'a, Ondemand>;
/// A cachefiles cache using this backend, with its data, an [`OndemandCache`].
pub(crate) type Cache<'a> = cachefiles::Cache<'a, Ondemand>;

#[vtable]
impl Operations for Ondemand {
    type CacheData = Pin<KBox<OndemandCache>>;
    type ObjectData = OndemandObject;

    fn bind() -> Result<Self::CacheData> {
        BINDS.fetch_add(1, Ordering::Relaxed);
        let cache = OndemandCache::new()?;
        BOUND.fetch_add(1, Ordering::Relaxed);
        pr_info!("cache bound to the Rust on-demand backend\n");
        Ok(cache)
    }

    fn unbind(data: Self::CacheData) {
        drop(data);
        BOUND.fetch_sub(1, Ordering::Relaxed);
    }

    #[inline]
    fn daemon_read(cache: Cache<'_>, buf: UserSlice, len: usize) -> Result<usize> {
        daemon::daemon_read(cache, buf, len)
    }

    fn daemon_poll(cache: Cache<'_>) -> bool {
        daemon::daemon_poll(cache)
    }

    fn copen(cache: Cache<'_>, args: CStrMut<'_>) -> Result {
        daemon::copen(cache, args)
    }

    fn restore(cache: Cache<'_>) -> Result {
        daemon::restore(cache)
    }

    fn flush(cache: Cache<'_>) {
        daemon::flush(cache)
    }

    fn new_object_data() -> impl PinInit<Self::ObjectData, Error> {
        OndemandObject::new()
    }

    fn init_object(object: ObjectView<'_>) -> Result {
        object::init_object(object)
    }

    fn clean_object(object: ObjectView<'_>) {
        object::clean_object(object)
    }

    fn read(object: ObjectView<'_>, pos: i64, len: usize) -> Result {
        object::read(object, pos, len)
    }

    fn object_work(object: ARef<Object>) {
        object::reopen(object)
    }

    #[inline]
    fn fd_ioctl(object: &Object, cmd: u32, arg: usize) -> Result<i64> {
        anon_fd::ioctl(object, cmd, arg)
    }

    #[inline(always)]
    fn fd_release(object: &Object) -> u32 {
        anon_fd::release(object)
    }
}

/// The number of caches bound to this backend (debugfs `bound`): 0 or 1, as
/// cachefiles has one cache at a time.
static BOUND: AtomicU32 = AtomicU32::new(0);

/// The number of calls of `bind` since the module was loaded (debugfs `binds`).
static BINDS: AtomicU32 = AtomicU32::new(0);

static FD_FOPS: FdOperations<Ondemand> = FdOperations::new(&THIS_MODULE);
static OPS: OndemandOps<Ondemand> = OndemandOps::new(&THIS_MODULE, &FD_FOPS);

struct CachefilesOndemand {
    // Unregistered before the statistics go away.
    _registration: Registration<Ondemand>,
    _debugfs: debugfs::Dir,
}

impl kernel::Module for CachefilesOndemand {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let dir = debugfs::Dir::new(c_str!("cachefiles_ondemand_rs"));
        dir.create_file(c_str!("stats"), &stats::TOTALS_FOPS, &stats::TOTALS);
        dir.create_u32(c_str!("stats_enabled"), &stats::ENABLED);
        dir.create_u32(c_str!("release_delay_ms"), &anon_fd::RELEASE_DELAY_MS);
        dir.create_u32_ro(c_str!("bound"), &BOUND);
        dir.create_u32_ro(c_str!("binds"), &BINDS);
        let registration = Registration::register(&OPS)?;
        pr_info!("loaded\n");
        Ok(CachefilesOndemand {
            _registration: registration,
            _debugfs: dir,
        })
    }
}

impl Drop for CachefilesOndemand {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}
