//! The two kernel objects the daemon talks to, behind traits so the protocol
//! logic can run against a fake in tests:
//!
//! * [`Devnode`]: `/dev/cachefiles`, read for requests, written for commands;
//! * [`CacheFile`]: the anonymous fd of one object, written with data and
//!   completed with the READ_COMPLETE ioctl.
//!
//! [`CachefilesDev`] and [`AnonFd`] are the real implementations.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::proto;
use crate::sys;
use crate::sys::Mapped;

/// The cachefiles control device.
pub trait Devnode: Send + Sync {
    /// Reads one message into `buf`; `Ok(0)` when nothing is pending.
    fn read_msg(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes one command with a single `write(2)`.
    fn write_cmd(&self, cmd: &str) -> io::Result<()>;
    /// Takes ownership of the anonymous fd announced by an OPEN message.
    fn adopt_anon_fd(&self, fd: u32) -> io::Result<Box<dyn CacheFile>>;
    /// A descriptor that polls readable while a request is pending.
    fn poll_fd(&self) -> RawFd;
}

/// The anonymous fd of one cache object. Dropping it closes the fd, which
/// the kernel treats as the daemon closing the object.
pub trait CacheFile: Send + Sync {
    /// `pwrite(2)`; `off` must be page aligned.
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<usize>;
    /// `pwrite(2)` of `map`'s bytes `[off, off + len)` at `off` (page
    /// aligned): see [`Mapped::write_to`].
    fn write_mapped(&self, map: &Mapped, off: u64, len: usize) -> io::Result<usize>;
    /// `ioctl(CACHEFILES_IOC_READ_COMPLETE, msg_id)`.
    fn read_complete(&self, msg_id: u32) -> io::Result<()>;
    /// `lseek(SEEK_DATA)`: the first data offset at or after `off`, `None`
    /// when there is none (ENXIO).
    fn seek_data(&self, off: u64) -> io::Result<Option<u64>>;
    /// `lseek(SEEK_HOLE)`: the first hole at or after `off`.
    fn seek_hole(&self, off: u64) -> io::Result<u64>;
    /// Descriptor number, for logs.
    fn describe(&self) -> String;
    /// The descriptor, to hand to a new daemon at upgrade (`None` for fakes).
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }
}

/// A cache file from an anonymous fd received from another `odd` (takeover).
pub fn anon_fd_from_owned(fd: OwnedFd) -> Box<dyn CacheFile> {
    Box::new(AnonFd {
        file: File::from(fd),
    })
}

/// Why the devnode could not be opened or bound, with advice for the log.
#[derive(Debug)]
pub struct SetupError {
    pub what: String,
    pub source: io::Error,
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for SetupError {}

fn setup_err(what: String, source: io::Error) -> SetupError {
    SetupError { what, source }
}

/// `/dev/cachefiles` opened by this process or inherited from a supervisor.
#[derive(Debug)]
pub struct CachefilesDev {
    file: File,
}

impl CachefilesDev {
    /// Opens the devnode read-write, close-on-exec and non-blocking. The
    /// cachefiles devnode never blocks anyway (read() returns 0 when idle);
    /// O_NONBLOCK keeps the event loop responsive on anything else.
    pub fn open(path: &Path) -> Result<CachefilesDev, SetupError> {
        match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(file) => Ok(CachefilesDev { file }),
            Err(e) => {
                let advice = match e.raw_os_error() {
                    Some(libc::EBUSY) => "another daemon already holds it (one opener at a time)",
                    Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
                        "is the cachefiles module loaded (CONFIG_CACHEFILES, CONFIG_CACHEFILES_ONDEMAND)?"
                    }
                    Some(libc::EPERM) | Some(libc::EACCES) => "needs root (CAP_SYS_ADMIN)",
                    _ => "cannot open",
                };
                Err(setup_err(format!("open {}: {}", path.display(), advice), e))
            }
        }
    }

    /// Adopts a devnode descriptor inherited from a supervisor (`--fd N`).
    ///
    /// The descriptor must be open and a character device; it is marked
    /// close-on-exec so it does not leak further.
    pub fn from_inherited_fd(fd: RawFd) -> Result<CachefilesDev, SetupError> {
        let what = || format!("inherited devnode fd {fd}");
        if !sys::fd_is_open(fd) {
            return Err(setup_err(what(), io::Error::from_raw_os_error(libc::EBADF)));
        }
        match sys::is_char_device(fd) {
            Ok(true) => {}
            Ok(false) => {
                return Err(setup_err(
                    format!("{} is not a character device", what()),
                    io::Error::from_raw_os_error(libc::ENOTTY),
                ))
            }
            Err(e) => return Err(setup_err(what(), e)),
        }
        sys::set_cloexec(fd, true).map_err(|e| setup_err(what(), e))?;
        sys::set_nonblocking(fd).map_err(|e| setup_err(what(), e))?;
        // SAFETY: the caller hands this descriptor over (it was inherited for
        // exactly this purpose, and we checked that it is open); nothing else
        // in this process owns it.
        let file = unsafe { File::from_raw_fd(fd) };
        Ok(CachefilesDev { file })
    }

    /// Adopts a devnode descriptor received over a socket (takeover, fd
    /// holder, systemd's fd store): the same checks as an inherited one.
    pub fn from_owned(fd: OwnedFd) -> Result<CachefilesDev, SetupError> {
        let raw = fd.as_raw_fd();
        let dev = CachefilesDev::from_inherited_fd(raw)?;
        // `from_inherited_fd` took ownership of `raw`.
        std::mem::forget(fd);
        Ok(dev)
    }

    /// Writes the cache limits (cachefilesd's `brun`..`fstop`); before
    /// `bind`, which turns the percentages into block and file counts.
    pub fn set_limits(&self, limits: &crate::cull::Limits) -> Result<(), SetupError> {
        for cmd in limits.commands() {
            self.write_cmd(&cmd)
                .map_err(|e| setup_err(format!("'{cmd}' failed"), e))?;
        }
        Ok(())
    }

    /// Sends `dir`, the optional `tag`, and `bind ondemand`.
    pub fn bind(&self, dir: &Path, tag: Option<&str>) -> Result<(), SetupError> {
        let dir_s = dir.to_str().ok_or_else(|| {
            setup_err(
                format!("cache directory {}", dir.display()),
                io::Error::new(io::ErrorKind::InvalidInput, "not UTF-8"),
            )
        })?;
        let bad = |what: String, e: proto::BadArgument| {
            setup_err(
                what,
                io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
            )
        };
        let cmd =
            proto::dir_cmd(dir_s).map_err(|e| bad(format!("cache directory {dir_s:?}"), e))?;
        self.write_cmd(&cmd)
            .map_err(|e| setup_err(format!("'{cmd}' failed"), e))?;
        if let Some(tag) = tag {
            let cmd = proto::tag_cmd(tag).map_err(|e| bad(format!("tag {tag:?}"), e))?;
            self.write_cmd(&cmd)
                .map_err(|e| setup_err(format!("'{cmd}' failed"), e))?;
        }
        self.write_cmd(proto::BIND_ONDEMAND).map_err(|e| {
            let advice = match e.raw_os_error() {
                Some(libc::EBUSY) => "the cache is already bound",
                Some(libc::EINVAL) => {
                    "kernel without CONFIG_CACHEFILES_ONDEMAND, or a bad cache directory"
                }
                Some(libc::EOPNOTSUPP) => {
                    "the cache directory's filesystem is unsupported (tmpfs?)"
                }
                Some(libc::ENOENT) => "cache directory missing",
                _ => "bind failed",
            };
            setup_err(format!("'{}': {advice}", proto::BIND_ONDEMAND), e)
        })
    }

    /// The raw descriptor, to hand to a child process.
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl Devnode for CachefilesDev {
    fn read_msg(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match (&self.file).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                r => return r,
            }
        }
    }

    fn write_cmd(&self, cmd: &str) -> io::Result<()> {
        loop {
            match (&self.file).write(cmd.as_bytes()) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(n) if n == cmd.len() => return Ok(()),
                Ok(n) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("devnode took {n} of {} bytes", cmd.len()),
                    ))
                }
            }
        }
    }

    fn adopt_anon_fd(&self, fd: u32) -> io::Result<Box<dyn CacheFile>> {
        let raw = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        if raw <= 2 || raw == self.file.as_raw_fd() || !sys::fd_is_open(raw) {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        // Make sure it really is a cachefiles anonymous fd before owning (and
        // later closing) it; skip the check when /proc is not mounted.
        if let Some(link) = sys::fd_link(raw) {
            if link != "anon_inode:[cachefiles]" {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("fd {raw} is {link}, not a cachefiles anonymous fd"),
                ));
            }
        }
        // The kernel installs it without O_CLOEXEC; keep it out of children.
        sys::set_cloexec(raw, true)?;
        // SAFETY: the kernel installed this descriptor for us while we read
        // the OPEN message; it is open, it is a cachefiles anonymous fd, and
        // no other object in this process owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Box::new(AnonFd {
            file: File::from(fd),
        }))
    }

    fn poll_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// A real cachefiles anonymous fd.
#[derive(Debug)]
pub struct AnonFd {
    file: File,
}

impl AnonFd {
    fn lseek(&self, off: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
        let off =
            libc::off64_t::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: lseek64 has no memory-safety preconditions.
        let r = unsafe { libc::lseek64(self.file.as_raw_fd(), off, whence) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENXIO) {
                Ok(None)
            } else {
                Err(e)
            };
        }
        Ok(Some(r as u64))
    }
}

impl CacheFile for AnonFd {
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<usize> {
        self.file.write_at(buf, off)
    }

    fn write_mapped(&self, map: &Mapped, off: u64, len: usize) -> io::Result<usize> {
        map.write_to(self.file.as_fd(), off, len)
    }

    fn read_complete(&self, msg_id: u32) -> io::Result<()> {
        // SAFETY: READ_COMPLETE takes the msg_id by value; no memory is passed.
        let r = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                proto::IOC_READ_COMPLETE as _,
                libc::c_ulong::from(msg_id),
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn seek_data(&self, off: u64) -> io::Result<Option<u64>> {
        self.lseek(off, libc::SEEK_DATA)
    }

    fn seek_hole(&self, off: u64) -> io::Result<u64> {
        // SEEK_HOLE never reports ENXIO below EOF; treat it as "hole here".
        Ok(self.lseek(off, libc::SEEK_HOLE)?.unwrap_or(off))
    }

    fn describe(&self) -> String {
        format!("anon fd {}", self.file.as_raw_fd())
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.file.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_missing_devnode_is_a_clear_error() {
        let e = CachefilesDev::open(Path::new("/nonexistent/cachefiles")).unwrap_err();
        assert!(e.to_string().contains("cachefiles module"), "{e}");
    }

    #[test]
    fn inherited_fd_must_be_a_char_device() {
        assert!(CachefilesDev::from_inherited_fd(987_654).is_err());
        let f = File::open("/proc/self/exe").unwrap();
        let e = CachefilesDev::from_inherited_fd(f.as_raw_fd()).unwrap_err();
        assert!(e.to_string().contains("not a character device"), "{e}");
    }

    #[test]
    fn refuses_foreign_fds() {
        // /dev/null stands in for the devnode; the "anonymous fd" is a plain file.
        let dev = CachefilesDev {
            file: OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .unwrap(),
        };
        let f = File::open("/proc/self/exe").unwrap();
        let raw = f.as_raw_fd() as u32;
        assert!(dev.adopt_anon_fd(raw).is_err());
        assert!(dev.adopt_anon_fd(dev.poll_fd() as u32).is_err());
        assert!(dev.adopt_anon_fd(1).is_err());
        assert!(dev.adopt_anon_fd(u32::MAX).is_err());
        // `f` is still ours and open.
        assert!(sys::fd_is_open(f.as_raw_fd()));
    }
}
