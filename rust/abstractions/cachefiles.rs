// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the cachefiles on-demand backend API of the kernel patch.
//!
//! An [`Operations`] implementation is registered with [`Registration`]; the
//! operations table's trampolines ([`ops`]) turn the C pointers into [`Cache`]
//! and [`Object`] references and call the backend. The backend's per-cache
//! data is stored in the cache ([`cache`]), its per-object data (with a work
//! item that runs [`Operations::object_work`]) in the object ([`object`]).
//! cachefiles makes the anonymous fds the daemon writes through; their file
//! operations are the backend's ([`fd`]).
//! The messages of the UAPI are mirrored in [`uapi`].
//!
//! C header: [`include/linux/cachefiles_backend.h`](srctree/include/linux/cachefiles_backend.h)

pub(crate) mod cache;
pub(crate) mod fd;
pub(crate) mod object;
pub(crate) mod ops;
pub(crate) mod uapi;

pub(crate) use cache::Cache;
pub(crate) use fd::FdOperations;
pub(crate) use object::{Object, ObjectLoan, ObjectView};
pub(crate) use ops::{OndemandOps, Operations, Registration};

/// `MODULE_IMPORT_NS(CACHEFILES)`: the backend API is exported in the
/// `CACHEFILES` symbol namespace, which modpost and the module loader make a
/// module import. (The 6.12 `module!` macro has no field for it.)
#[link_section = ".modinfo"]
#[used]
static IMPORT_NS: [u8; 21] = *b"import_ns=CACHEFILES\0";
