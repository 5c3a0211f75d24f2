// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the cachefiles on-demand backend API of the kernel patch.
//!
//! An [`Operations`] implementation is registered with [`Registration`]; the
//! operations table's trampolines ([`ops`]) turn the C pointers into [`Cache`]
//! and [`Object`] references and call the backend. The backend's per-cache
//! data is stored in the cache ([`cache`]), its per-object data (with a work
//! item that runs [`Operations::object_work`]) in the object ([`object`]).
//! The messages of the UAPI are mirrored in [`uapi`].
//!
//! C header: [`include/linux/cachefiles_backend.h`](srctree/include/linux/cachefiles_backend.h)

pub(crate) mod cache;
pub(crate) mod object;
pub(crate) mod ops;
pub(crate) mod uapi;

pub(crate) use cache::{Cache, CachePin};
pub(crate) use object::Object;
pub(crate) use ops::{OndemandOps, Operations, Registration};
