// SPDX-License-Identifier: GPL-2.0

//! Rust implementation of the on-demand read mode of cachefiles.
//!
//! Once loaded, the module registers itself as the on-demand backend of
//! cachefiles; every cache bound with `bind ondemand` from then on is served by
//! it until the cache is unbound.
//!
//! # Layout
//!
//! - Abstractions (the only `unsafe` code): `helpers` (the C helpers),
//!   `xarray`, `completion`, `work`, `file`, `kstrtox`, `debugfs` and
//!   `cachefiles` (the backend API: [`cachefiles::Cache`],
//!   [`cachefiles::Object`], the operations table).
//! - On-demand logic: `request` (messages, completion), `cache` (the request
//!   queue), `object` (object states, OPEN/READ/CLOSE), `daemon` (devnode
//!   read/poll, copen, restore), `anon_fd` (the daemon's anonymous fds),
//!   `stats`.
//!
//! # Lifetimes
//!
//! - A request is an `Arc<Request>` held by its waiter, by the queue while
//!   queued, and by a daemon `read()` while it is being delivered; it holds a
//!   reference to its object. Only whoever removes it from the queue can
//!   complete it (`request::Taken`), so it is completed exactly once. The
//!   completer hands its reference over to the waiter, which drops the last
//!   one: `flush` never drops an object.
//! - An anonymous fd holds a reference to its object and pins the cache.
//! - Queued reopen work holds a reference to its object; `clean_object`
//!   cancels it and waits for it.
//!
//! # Locking order
//!
//! 1. the cache's daemon mutex (cachefiles, around `copen` and `restore`);
//! 2. the request queue lock (the lock of `CacheState::reqs`);
//! 3. an object's state lock (`ObjectInfo::inner`).
//!
//! The object id allocator's lock and the C object's own lock (taken by
//! `cachefiles_object_get_file`) are leaves, never held with another lock.
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

use kernel::{c_str, prelude::*, types::ARef};

mod anon_fd;
mod cache;
mod cachefiles;
mod completion;
mod daemon;
mod debugfs;
mod delay;
mod file;
mod helpers;
mod kstrtox;
mod object;
mod request;
mod stats;
mod work;
mod xarray;

use cachefiles::{Backend, OndemandOps, Registration};

module! {
    type: CachefilesOndemand,
    name: "cachefiles_ondemand_rs",
    author: "cachefiles-ondemand-rs developers",
    description: "Rust on-demand read backend for cachefiles",
    license: "GPL",
}

/// The on-demand backend.
pub(crate) struct Ondemand;

/// An object of a cache using this backend.
pub(crate) type Obj = cachefiles::Object<Ondemand>;
/// A cache using this backend.
pub(crate) type CacheRef = cachefiles::Cache<Ondemand>;

impl Backend for Ondemand {
    type CacheData = cache::CacheData;
    type ObjectData = object::ObjectInfo;

    fn bind() -> Result<Self::CacheData> {
        cache::CacheState::new()
    }

    fn daemon_read(cache: &CacheRef, buf: kernel::uaccess::UserSlice, len: usize) -> Result<usize> {
        daemon::daemon_read(cache, buf, len)
    }

    fn daemon_poll(cache: &CacheRef) -> bool {
        daemon::daemon_poll(cache)
    }

    fn copen(cache: &CacheRef, args: &mut [u8]) -> Result {
        daemon::copen(cache, args)
    }

    fn restore(cache: &CacheRef) -> Result {
        daemon::restore(cache)
    }

    fn flush(cache: &CacheRef) {
        daemon::flush(cache)
    }

    fn new_object_data() -> impl PinInit<Self::ObjectData, Error> {
        object::ObjectInfo::new()
    }

    fn init_object(object: &Obj) -> Result {
        object::init_object(object)
    }

    fn clean_object(object: &Obj) {
        object::clean_object(object)
    }

    fn read(object: &Obj, pos: i64, len: usize) -> Result {
        object::read(object, pos, len)
    }

    fn object_work(object: ARef<Obj>) {
        object::reopen(object)
    }
}

/// Error codes the kernel crate does not name.
mod errno {
    use kernel::{bindings, error::Error};

    pub(crate) fn emsgsize() -> Error {
        Error::from_errno(-(bindings::EMSGSIZE as i32))
    }

    pub(crate) fn enobufs() -> Error {
        Error::from_errno(-(bindings::ENOBUFS as i32))
    }

    pub(crate) fn ebadfd() -> Error {
        Error::from_errno(-(bindings::EBADFD as i32))
    }
}

static OPS: OndemandOps<Ondemand> = OndemandOps::new(&THIS_MODULE, c_str!("rust"));

struct CachefilesOndemand {
    // Unregistered before the statistics go away.
    _registration: Registration<Ondemand>,
    _debugfs: debugfs::Dir,
}

impl kernel::Module for CachefilesOndemand {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let dir = debugfs::Dir::new(c_str!("cachefiles_ondemand_rs"));
        dir.create_file(c_str!("stats"), &stats::TOTALS_FOPS, &stats::TOTALS);
        dir.create_u32(c_str!("release_delay_ms"), &anon_fd::RELEASE_DELAY_MS);
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
