// SPDX-License-Identifier: GPL-2.0

//! The messages of the on-demand protocol, as laid out by the UAPI.
//!
//! bindgen binds `uapi/linux/cachefiles.h` (`kernel::uapi::cachefiles_msg`
//! and friends), but those types end in flexible arrays and cannot be given
//! [`AsBytes`] outside the `kernel` crate, so they are mirrored here without
//! the flexible arrays; the `const` assertions below check that every field
//! has the bound type's offset and that the sizes match. A message is one of
//! these headers, then the opcode's structure, then (for an OPEN) the keys.
//!
//! C header: [`include/uapi/linux/cachefiles.h`](srctree/include/uapi/linux/cachefiles.h)

use core::mem::{offset_of, size_of};
use kernel::{ioctl::_IOW, types::AsBytes, uapi};

/// The largest message (`CACHEFILES_MSG_MAX_SIZE`).
pub(crate) const MSG_MAX_SIZE: usize = uapi::CACHEFILES_MSG_MAX_SIZE as usize;

/// The ioctl that completes a READ on an anonymous fd (`CACHEFILES_IOC_READ_COMPLETE`).
pub(crate) const IOC_READ_COMPLETE: u32 = _IOW::<kernel::ffi::c_int>(0x98, 1);

/// `enum cachefiles_opcode`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub(crate) enum Opcode {
    /// `CACHEFILES_OP_OPEN`.
    Open = uapi::cachefiles_opcode_CACHEFILES_OP_OPEN,
    /// `CACHEFILES_OP_CLOSE`.
    Close = uapi::cachefiles_opcode_CACHEFILES_OP_CLOSE,
    /// `CACHEFILES_OP_READ`.
    Read = uapi::cachefiles_opcode_CACHEFILES_OP_READ,
}

/// The header of every message (`struct cachefiles_msg` without `data[]`).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Msg {
    /// The id the daemon answers with (`copen`, `READ_COMPLETE`).
    pub(crate) msg_id: u32,
    /// An [`Opcode`].
    pub(crate) opcode: u32,
    /// The length of the whole message.
    pub(crate) len: u32,
    /// The object's id: its anonymous fd's id.
    pub(crate) object_id: u32,
}

impl Msg {
    /// A header with these fields and no length (for tracing).
    pub(crate) fn new(opcode: Opcode, msg_id: u32, object_id: u32) -> Self {
        Self {
            msg_id,
            opcode: opcode as u32,
            len: 0,
            object_id,
        }
    }
}

/// The body of an OPEN (`struct cachefiles_open` without `data[]`, which
/// holds the volume key then the cookie key).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Open {
    /// The volume key's length, its NUL included.
    pub(crate) volume_key_size: u32,
    /// The cookie key's length.
    pub(crate) cookie_key_size: u32,
    /// The anonymous fd installed for the daemon.
    pub(crate) fd: u32,
    /// Flags: none defined.
    pub(crate) flags: u32,
}

/// The body of a READ (`struct cachefiles_read`).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Read {
    /// Where the range to fetch starts.
    pub(crate) off: u64,
    /// How long it is.
    pub(crate) len: u64,
}

/// A whole READ message: the header, then the body, so that it is written
/// to the daemon in one copy.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ReadMsg {
    /// The header.
    pub(crate) msg: Msg,
    /// The body.
    pub(crate) read: Read,
}

/// The start of an OPEN message: the header, then the body, so that both
/// are written to the daemon in one copy (the keys follow).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct OpenHead {
    /// The header.
    pub(crate) msg: Msg,
    /// The body.
    pub(crate) open: Open,
}

// SAFETY: `ReadMsg` is a `repr(C)` pair of the two structures below, whose
// sizes (16, a multiple of both alignments) leave no padding between or
// after them (asserted below).
unsafe impl AsBytes for ReadMsg {}
// SAFETY: As for `ReadMsg` (`Open`'s size is also 16).
unsafe impl AsBytes for OpenHead {}
// SAFETY: `Msg`, `Open` and `Read` are `repr(C)` structures of integers with
// no padding (their sizes are the sums of their fields', asserted below), so
// all their bytes are initialised.
unsafe impl AsBytes for Msg {}
// SAFETY: As above.
unsafe impl AsBytes for Open {}
// SAFETY: As above.
unsafe impl AsBytes for Read {}

const _: () = {
    assert!(size_of::<ReadMsg>() == size_of::<Msg>() + size_of::<Read>());
    assert!(offset_of!(ReadMsg, read) == size_of::<Msg>());
    assert!(size_of::<OpenHead>() == size_of::<Msg>() + size_of::<Open>());
    assert!(offset_of!(OpenHead, open) == size_of::<Msg>());
    assert!(size_of::<Msg>() == 16 && size_of::<Msg>() == size_of::<uapi::cachefiles_msg>());
    assert!(offset_of!(Msg, msg_id) == offset_of!(uapi::cachefiles_msg, msg_id));
    assert!(offset_of!(Msg, opcode) == offset_of!(uapi::cachefiles_msg, opcode));
    assert!(offset_of!(Msg, len) == offset_of!(uapi::cachefiles_msg, len));
    assert!(offset_of!(Msg, object_id) == offset_of!(uapi::cachefiles_msg, object_id));
    assert!(offset_of!(uapi::cachefiles_msg, data) == size_of::<Msg>());

    assert!(size_of::<Open>() == 16 && size_of::<Open>() == size_of::<uapi::cachefiles_open>());
    assert!(
        offset_of!(Open, volume_key_size) == offset_of!(uapi::cachefiles_open, volume_key_size)
    );
    assert!(
        offset_of!(Open, cookie_key_size) == offset_of!(uapi::cachefiles_open, cookie_key_size)
    );
    assert!(offset_of!(Open, fd) == offset_of!(uapi::cachefiles_open, fd));
    assert!(offset_of!(Open, flags) == offset_of!(uapi::cachefiles_open, flags));
    assert!(offset_of!(uapi::cachefiles_open, data) == size_of::<Open>());

    assert!(size_of::<Read>() == 16 && size_of::<Read>() == size_of::<uapi::cachefiles_read>());
    assert!(offset_of!(Read, off) == offset_of!(uapi::cachefiles_read, off));
    assert!(offset_of!(Read, len) == offset_of!(uapi::cachefiles_read, len));
};
