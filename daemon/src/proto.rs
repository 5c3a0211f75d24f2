//! The cachefiles on-demand wire format (`include/uapi/linux/cachefiles.h`).
//!
//! Messages are read from the devnode one per `read(2)`: a 16-byte header
//! `{u32 msg_id, u32 opcode, u32 len, u32 object_id}` in native (little)
//! endianness, followed by an opcode-specific payload. Everything here is pure
//! parsing and formatting: no I/O, and no panics on any input.

use std::fmt;

/// `CACHEFILES_MSG_MAX_SIZE`: the largest message the kernel sends.
pub const MSG_MAX_SIZE: usize = 1024;
/// Size of `struct cachefiles_msg` without its payload.
pub const HEADER_SIZE: usize = 16;
/// Size of the fixed part of `struct cachefiles_open`.
pub const OPEN_FIXED_SIZE: usize = 16;
/// Size of `struct cachefiles_read`.
pub const READ_SIZE: usize = 16;

/// `CACHEFILES_OP_OPEN`.
pub const OP_OPEN: u32 = 0;
/// `CACHEFILES_OP_CLOSE`.
pub const OP_CLOSE: u32 = 1;
/// `CACHEFILES_OP_READ`.
pub const OP_READ: u32 = 2;

/// `CACHEFILES_IOC_READ_COMPLETE = _IOW(0x98, 1, int)`. The argument is the
/// READ msg_id passed by value (not a pointer). Built with libc's `_IOW`,
/// which knows each architecture's `_IOC` layout (powerpc, mips and sparc
/// put a 3-bit direction field at bit 29 and have a 13-bit size field).
pub const IOC_READ_COMPLETE: u32 = libc::_IOW::<libc::c_int>(0x98, 1) as u32;

/// The value `<linux/cachefiles.h>` gives on this architecture, written out
/// independently of libc so a wrong layout is a build error, not a silent
/// EINVAL/ENOTTY at run time. Architectures not listed here do not build.
#[cfg(any(
    target_arch = "x86",
    target_arch = "x86_64",
    target_arch = "arm",
    target_arch = "aarch64",
    target_arch = "riscv32",
    target_arch = "riscv64",
    target_arch = "s390x",
    target_arch = "loongarch64",
    target_arch = "csky",
    target_arch = "hexagon",
    target_arch = "m68k",
))]
const EXPECTED_READ_COMPLETE: u32 = 0x4004_9801;
#[cfg(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "mips32r6",
    target_arch = "mips64r6",
    target_arch = "sparc",
    target_arch = "sparc64",
))]
const EXPECTED_READ_COMPLETE: u32 = 0x8004_9801;
const _: () = assert!(
    IOC_READ_COMPLETE == EXPECTED_READ_COMPLETE,
    "CACHEFILES_IOC_READ_COMPLETE does not match this architecture's layout"
);

/// Human readable opcode name for logs.
pub fn opcode_name(op: u32) -> &'static str {
    match op {
        OP_OPEN => "OPEN",
        OP_CLOSE => "CLOSE",
        OP_READ => "READ",
        _ => "UNKNOWN",
    }
}

/// `struct cachefiles_msg` without the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub msg_id: u32,
    pub opcode: u32,
    pub len: u32,
    pub object_id: u32,
}

/// A decoded OPEN payload (`struct cachefiles_open`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReq {
    /// Volume key without its terminating NUL, e.g. `erofs,img.blob`.
    pub volume_key: Vec<u8>,
    /// Cookie key (binary; for erofs the blob name).
    pub cookie_key: Vec<u8>,
    /// Anonymous fd the kernel installed in this process for the cache file.
    pub fd: u32,
    pub flags: u32,
}

/// A decoded READ payload (`struct cachefiles_read`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadReq {
    pub off: u64,
    pub len: u64,
}

/// Opcode-specific part of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Open(OpenReq),
    Close,
    Read(ReadReq),
}

/// Why a message could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Fewer bytes than a header.
    ShortHeader { have: usize },
    /// `len` in the header disagrees with what `read(2)` returned.
    LengthMismatch { header: u32, read: usize },
    /// An opcode this daemon does not know.
    UnknownOpcode(u32),
    /// The payload is too short for its opcode.
    ShortPayload {
        opcode: u32,
        need: usize,
        have: usize,
    },
    /// The OPEN key sizes point past the end of the message.
    KeysOverflow {
        volume: u32,
        cookie: u32,
        have: usize,
    },
    /// The volume key is empty or not NUL-terminated.
    BadVolumeKey,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::ShortHeader { have } => {
                write!(
                    f,
                    "message of {have} bytes is shorter than the {HEADER_SIZE}-byte header"
                )
            }
            ParseError::LengthMismatch { header, read } => {
                write!(f, "header says {header} bytes but read() returned {read}")
            }
            ParseError::UnknownOpcode(op) => write!(f, "unknown opcode {op}"),
            ParseError::ShortPayload { opcode, need, have } => write!(
                f,
                "{} payload of {have} bytes, need at least {need}",
                opcode_name(*opcode)
            ),
            ParseError::KeysOverflow {
                volume,
                cookie,
                have,
            } => write!(
                f,
                "OPEN key sizes {volume}+{cookie} exceed the {have}-byte key area"
            ),
            ParseError::BadVolumeKey => write!(f, "OPEN volume key is empty or not NUL-terminated"),
        }
    }
}

impl std::error::Error for ParseError {}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_ne_bytes(a))
}

/// Decodes the header fields without validating them (for error answers).
pub fn peek_header(buf: &[u8]) -> Option<Header> {
    Some(Header {
        msg_id: u32_at(buf, 0)?,
        opcode: u32_at(buf, 4)?,
        len: u32_at(buf, 8)?,
        object_id: u32_at(buf, 12)?,
    })
}

/// Decodes the header of a message of `buf.len()` bytes as returned by `read(2)`.
pub fn parse_header(buf: &[u8]) -> Result<Header, ParseError> {
    let hdr = peek_header(buf).ok_or(ParseError::ShortHeader { have: buf.len() })?;
    if hdr.len as usize != buf.len() {
        return Err(ParseError::LengthMismatch {
            header: hdr.len,
            read: buf.len(),
        });
    }
    Ok(hdr)
}

/// The payload of a message whose header parsed (never panics).
pub fn payload(buf: &[u8]) -> &[u8] {
    buf.get(HEADER_SIZE..).unwrap_or(&[])
}

/// Decodes the payload of a message whose header was already validated.
pub fn parse_request(hdr: &Header, payload: &[u8]) -> Result<Request, ParseError> {
    match hdr.opcode {
        OP_OPEN => parse_open(payload).map(Request::Open),
        OP_CLOSE => Ok(Request::Close),
        OP_READ => {
            let short = || ParseError::ShortPayload {
                opcode: OP_READ,
                need: READ_SIZE,
                have: payload.len(),
            };
            Ok(Request::Read(ReadReq {
                off: u64_at(payload, 0).ok_or_else(short)?,
                len: u64_at(payload, 8).ok_or_else(short)?,
            }))
        }
        op => Err(ParseError::UnknownOpcode(op)),
    }
}

/// Extracts the anonymous fd of an OPEN payload even when the rest of it is
/// malformed, so the daemon can still release the fd after failing the open.
pub fn open_fd_hint(payload: &[u8]) -> Option<u32> {
    u32_at(payload, 8)
}

fn parse_open(p: &[u8]) -> Result<OpenReq, ParseError> {
    let short = || ParseError::ShortPayload {
        opcode: OP_OPEN,
        need: OPEN_FIXED_SIZE,
        have: p.len(),
    };
    let volume_size = u32_at(p, 0).ok_or_else(short)?;
    let cookie_size = u32_at(p, 4).ok_or_else(short)?;
    let fd = u32_at(p, 8).ok_or_else(short)?;
    let flags = u32_at(p, 12).ok_or_else(short)?;
    let keys = p.get(OPEN_FIXED_SIZE..).unwrap_or(&[]);
    let overflow = || ParseError::KeysOverflow {
        volume: volume_size,
        cookie: cookie_size,
        have: keys.len(),
    };
    let vend = volume_size as usize;
    let cend = vend
        .checked_add(cookie_size as usize)
        .ok_or_else(overflow)?;
    let volume = keys.get(..vend).ok_or_else(overflow)?;
    let cookie = keys.get(vend..cend).ok_or_else(overflow)?;
    let (last, volume_key) = volume.split_last().ok_or(ParseError::BadVolumeKey)?;
    if *last != 0 {
        return Err(ParseError::BadVolumeKey);
    }
    Ok(OpenReq {
        volume_key: volume_key.to_vec(),
        cookie_key: cookie.to_vec(),
        fd,
        flags,
    })
}

/// `copen <id>,<size>`: a successful OPEN answer.
pub fn copen_ok(msg_id: u32, size: u64) -> String {
    format!("copen {msg_id},{size}")
}

/// `copen <id>,-<errno>`: fails the OPEN with `errno` (a positive errno value).
pub fn copen_err(msg_id: u32, errno: i32) -> String {
    format!("copen {},-{}", msg_id, errno.unsigned_abs())
}

/// The failover command: mark every pending request unread again.
pub const RESTORE: &str = "restore";

/// Why a setup command cannot be sent to the devnode.
#[derive(Debug, PartialEq, Eq)]
pub struct BadArgument(pub &'static str);

impl fmt::Display for BadArgument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

fn check_arg(arg: &str) -> Result<(), BadArgument> {
    if arg.is_empty() {
        return Err(BadArgument("empty argument"));
    }
    if arg.contains(['\0', '\n']) {
        return Err(BadArgument("argument contains a NUL or a newline"));
    }
    if arg.starts_with(char::is_whitespace) {
        return Err(BadArgument(
            "argument starts with white space (the kernel strips it)",
        ));
    }
    // Commands are limited to PAGE_SIZE - 1 bytes; stay well below.
    if arg.len() > 3000 {
        return Err(BadArgument("argument too long"));
    }
    Ok(())
}

/// `dir <path>`.
pub fn dir_cmd(path: &str) -> Result<String, BadArgument> {
    check_arg(path)?;
    Ok(format!("dir {path}"))
}

/// `tag <name>`: names the cache (the kernel's default is `CacheFiles`).
pub fn tag_cmd(tag: &str) -> Result<String, BadArgument> {
    check_arg(tag)?;
    if tag.contains(char::is_whitespace) {
        return Err(BadArgument("tag contains white space"));
    }
    Ok(format!("tag {tag}"))
}

/// `bind ondemand`.
pub const BIND_ONDEMAND: &str = "bind ondemand";

/// Builders for raw messages, used by tests and the fake devnode.
#[cfg(test)]
pub mod encode {
    use super::*;

    fn header(msg_id: u32, opcode: u32, object_id: u32, payload: &[u8]) -> Vec<u8> {
        let len = (HEADER_SIZE + payload.len()) as u32;
        let mut v = Vec::with_capacity(len as usize);
        for x in [msg_id, opcode, len, object_id] {
            v.extend_from_slice(&x.to_ne_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    /// An OPEN message with a NUL-terminated `volume` key.
    pub fn open(msg_id: u32, object_id: u32, fd: u32, volume: &str, cookie: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&((volume.len() + 1) as u32).to_ne_bytes());
        p.extend_from_slice(&(cookie.len() as u32).to_ne_bytes());
        p.extend_from_slice(&fd.to_ne_bytes());
        p.extend_from_slice(&0u32.to_ne_bytes());
        p.extend_from_slice(volume.as_bytes());
        p.push(0);
        p.extend_from_slice(cookie);
        header(msg_id, OP_OPEN, object_id, &p)
    }

    pub fn read(msg_id: u32, object_id: u32, off: u64, len: u64) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&off.to_ne_bytes());
        p.extend_from_slice(&len.to_ne_bytes());
        header(msg_id, OP_READ, object_id, &p)
    }

    pub fn close(msg_id: u32, object_id: u32) -> Vec<u8> {
        header(msg_id, OP_CLOSE, object_id, &[])
    }

    pub fn raw(msg_id: u32, opcode: u32, object_id: u32, payload: &[u8]) -> Vec<u8> {
        header(msg_id, opcode, object_id, payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> Result<(Header, Request), ParseError> {
        let h = parse_header(buf)?;
        Ok((h, parse_request(&h, payload(buf))?))
    }

    #[test]
    fn ioctl_number_matches_uapi() {
        // _IOW(0x98, 1, int) on x86_64.
        assert_eq!(IOC_READ_COMPLETE, 0x4004_9801);
    }

    #[test]
    fn parses_open() {
        let m = encode::open(7, 3, 42, "erofs,img.blob", b"img.blob");
        let (h, r) = parse(&m).unwrap();
        assert_eq!(
            h,
            Header {
                msg_id: 7,
                opcode: OP_OPEN,
                len: m.len() as u32,
                object_id: 3
            }
        );
        assert_eq!(
            r,
            Request::Open(OpenReq {
                volume_key: b"erofs,img.blob".to_vec(),
                cookie_key: b"img.blob".to_vec(),
                fd: 42,
                flags: 0
            })
        );
        assert_eq!(open_fd_hint(payload(&m)), Some(42));
    }

    #[test]
    fn parses_read_and_close() {
        let m = encode::read(9, 4, 8192, 4096);
        assert_eq!(
            parse(&m).unwrap().1,
            Request::Read(ReadReq {
                off: 8192,
                len: 4096
            })
        );
        let m = encode::close(10, 4);
        assert_eq!(
            parse(&m).unwrap(),
            (parse_header(&m).unwrap(), Request::Close)
        );
    }

    #[test]
    fn rejects_short_and_mismatched() {
        assert_eq!(parse(&[1, 2, 3]), Err(ParseError::ShortHeader { have: 3 }));
        let mut m = encode::close(1, 1);
        m.push(0);
        assert_eq!(
            parse(&m),
            Err(ParseError::LengthMismatch {
                header: 16,
                read: 17
            })
        );
        let m = encode::raw(1, OP_READ, 1, &[0; 8]);
        assert!(matches!(
            parse(&m),
            Err(ParseError::ShortPayload {
                need: 16,
                have: 8,
                ..
            })
        ));
        let m = encode::raw(1, OP_OPEN, 1, &[0; 12]);
        assert!(matches!(parse(&m), Err(ParseError::ShortPayload { .. })));
        let m = encode::raw(1, 77, 1, &[]);
        assert_eq!(parse(&m), Err(ParseError::UnknownOpcode(77)));
    }

    #[test]
    fn rejects_bad_open_keys() {
        // Key sizes larger than the message, including u32 overflow.
        for (vs, cs) in [(100u32, 0u32), (u32::MAX, u32::MAX), (3, u32::MAX)] {
            let mut p = Vec::new();
            for x in [vs, cs, 5, 0] {
                p.extend_from_slice(&x.to_ne_bytes());
            }
            p.extend_from_slice(b"ab\0cd");
            let m = encode::raw(1, OP_OPEN, 1, &p);
            assert!(
                matches!(parse(&m), Err(ParseError::KeysOverflow { .. })),
                "{vs} {cs}"
            );
            assert_eq!(open_fd_hint(payload(&m)), Some(5));
        }
        // Volume key not NUL-terminated, and empty.
        for (vs, keys) in [(2u32, &b"ab"[..]), (0, &b""[..])] {
            let mut p = Vec::new();
            for x in [vs, 0, 5, 0] {
                p.extend_from_slice(&x.to_ne_bytes());
            }
            p.extend_from_slice(keys);
            let m = encode::raw(1, OP_OPEN, 1, &p);
            assert_eq!(parse(&m), Err(ParseError::BadVolumeKey));
        }
    }

    #[test]
    fn never_panics_on_garbage() {
        // Deterministic pseudo-random fuzz of short buffers.
        let mut x: u64 = 0x1234_5678;
        for n in 0..4000usize {
            let len = n % 64;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push((x & 0xff) as u8);
            }
            if len >= HEADER_SIZE {
                buf[8..12].copy_from_slice(&(len as u32).to_ne_bytes());
                buf[4..8].copy_from_slice(&((x % 4) as u32).to_ne_bytes());
            }
            let _ = parse(&buf);
            let _ = open_fd_hint(payload(&buf));
        }
    }

    #[test]
    fn formats_commands() {
        assert_eq!(copen_ok(5, 4096), "copen 5,4096");
        assert_eq!(copen_err(5, 2), "copen 5,-2");
        assert_eq!(copen_err(5, -5), "copen 5,-5");
        assert_eq!(
            dir_cmd("/var/cache/fscache").unwrap(),
            "dir /var/cache/fscache"
        );
        assert!(dir_cmd("a\nb").is_err());
        assert!(dir_cmd("").is_err());
        assert!(dir_cmd(" x").is_err());
        assert_eq!(tag_cmd("mytag").unwrap(), "tag mytag");
        assert!(tag_cmd("a b").is_err());
    }
}
