//! Thin safe wrappers over the few raw Linux interfaces the daemon needs:
//! epoll, eventfd, signalfd, fd flags, resource limits and read-only file
//! mappings.
//!
//! Every `unsafe` block here is a plain syscall on file descriptors this
//! module owns (or that the caller passes by value) and on buffers whose
//! sizes are passed alongside them, or on a mapping this module owns.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::time::Duration;

/// `Err(last OS error)` when a syscall returned -1.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The system page size (at least 4096, always a power of two).
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    match u64::try_from(v) {
        Ok(p) if p >= 4096 && p.is_power_of_two() => p,
        _ => 4096,
    }
}

/// Whether `fd` is an open descriptor of this process.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only inspects the descriptor table.
    fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0
}

/// Sets or clears FD_CLOEXEC on `fd`.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD only change descriptor flags.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    let new = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    if new != flags {
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, new) })?;
    }
    Ok(())
}

/// Sets O_NONBLOCK on `fd` (a file status flag, shared by every process
/// holding the same open file description).
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL only change file status flags.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    }
    Ok(())
}

/// The target of `/proc/self/fd/<fd>` (e.g. `anon_inode:[cachefiles]`), if
/// /proc is available.
pub fn fd_link(fd: RawFd) -> Option<String> {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Whether `fd` refers to a character device.
pub fn is_char_device(fd: RawFd) -> io::Result<bool> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat writes at most one `struct stat` into `st`.
    cvt(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so `st` is initialised (and it was zeroed).
    let st = unsafe { st.assume_init() };
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFCHR)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit: every OPEN installs an fd
/// in this process, and running out makes the kernel fail the OPEN (EMFILE).
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `struct rlimit`.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) })?;
    if rl.rlim_cur < rl.rlim_max {
        rl.rlim_cur = rl.rlim_max;
        // SAFETY: setrlimit reads one `struct rlimit`.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) })?;
    }
    Ok(rl.rlim_cur)
}

/// Sends `sig` to process `pid`.
pub fn kill(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: kill has no memory-safety preconditions.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// An epoll instance with level-triggered registrations.
pub struct Epoll {
    fd: OwnedFd,
}

/// One ready event: the registration token.
#[derive(Clone, Copy, Debug)]
pub struct Ready {
    pub token: u64,
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 returns a new fd or -1.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches `fd` for readability, reporting `token`.
    pub fn add_readable(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })
            .map(drop)
    }

    /// Waits up to `timeout` for events; an interrupted wait returns no events.
    pub fn wait(&self, timeout: Duration) -> io::Result<Vec<Ready>> {
        const MAX: usize = 16;
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; MAX];
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `evs` has room for MAX events.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), evs.as_mut_ptr(), MAX as _, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(Vec::new())
            } else {
                Err(e)
            };
        }
        Ok(evs
            .iter()
            .take(n as usize)
            .map(|e| Ready { token: e.u64 })
            .collect())
    }
}

/// A non-blocking eventfd used to wake the event loop from other threads.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd returns a new fd or -1.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(EventFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Makes the eventfd readable.
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64. A full counter (EAGAIN) is
        // still readable, which is all a notification needs.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Resets the eventfd to not readable.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64; EAGAIN when already empty.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Signals delivered through a signalfd instead of asynchronous handlers.
///
/// Creating one blocks the signals in the calling thread; create it before
/// spawning threads so every thread inherits the mask. Children started with
/// `std::process::Command` get an empty mask again.
pub struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    pub fn new(signals: &[libc::c_int]) -> io::Result<SignalFd> {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::zeroed();
        // SAFETY: sigemptyset/sigaddset initialise and modify the set in place;
        // pthread_sigmask and signalfd read it.
        unsafe {
            cvt(libc::sigemptyset(set.as_mut_ptr()))?;
            for &s in signals {
                cvt(libc::sigaddset(set.as_mut_ptr(), s))?;
            }
            let r = libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
            let fd = cvt(libc::signalfd(
                -1,
                set.as_ptr(),
                libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
            ))?;
            Ok(SignalFd {
                fd: OwnedFd::from_raw_fd(fd),
            })
        }
    }

    /// Returns the next pending signal number, if any.
    pub fn next(&self) -> Option<libc::c_int> {
        let mut info = std::mem::MaybeUninit::<libc::signalfd_siginfo>::zeroed();
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reads at most `size` bytes into `info`.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
        if n != size as isize {
            return None;
        }
        // SAFETY: the kernel filled the whole structure.
        let info = unsafe { info.assume_init() };
        libc::c_int::try_from(info.ssi_signo).ok()
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A short name for a signal number, for logs.
pub fn signal_name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        _ => "signal",
    }
}

/// The id of the mount that `fd`'s file is on (`statx(2)`'s
/// `stx_mnt_id`), as in the first field of `/proc/self/mountinfo`.
pub fn mount_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut st = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: statx writes at most one `struct statx` into `st`; the empty
    // path with AT_EMPTY_PATH names the file `fd` refers to.
    let r = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            st.as_mut_ptr(),
        )
    };
    cvt(r)?;
    // SAFETY: zeroed, then filled by statx: every field is an integer, for
    // which any bytes are a value.
    let st = unsafe { st.assume_init() };
    if st.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    Ok(st.stx_mnt_id)
}

/// The filesystem type of mount `id` (`ext4`, `9p`, ...), from
/// `/proc/self/mountinfo`; `None` if no mount has that id.
pub fn mount_fs_type(id: u64) -> io::Result<Option<String>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(mountinfo_fs_type(&info, id))
}

/// [`mount_fs_type`] on the text of a mountinfo file: each line is
/// `ID PARENT MAJ:MIN ROOT POINT OPTIONS [TAGS...] - TYPE SOURCE OPTIONS`.
fn mountinfo_fs_type(info: &str, id: u64) -> Option<String> {
    info.lines().find_map(|line| {
        let mut fields = line.split(' ');
        if fields.next()?.parse::<u64>().ok()? != id {
            return None;
        }
        fields.by_ref().find(|&f| f == "-")?;
        fields.next().map(str::to_string)
    })
}

/// A read-only shared mapping of the first bytes of a file, whose bytes are
/// written to other files without passing through a buffer of the daemon.
///
/// The daemon never reads the mapped bytes itself: if the file shrinks
/// under the mapping, reading a page past its new end would raise
/// `SIGBUS`, while the kernel reading it for [`Mapped::write_to`] makes
/// `pwrite(2)` fail with `EFAULT` instead.
///
/// # Invariants
///
/// `ptr` is the start of a live mapping of `len` bytes (`len > 0`), made by
/// [`Mapped::new`] and unmapped only by `drop`.
pub struct Mapped {
    ptr: NonNull<libc::c_void>,
    len: usize,
}

// SAFETY: the mapping is read-only and its bytes are only handed to the
// kernel, which may do so from any thread; `munmap` may run on any thread.
unsafe impl Send for Mapped {}
// SAFETY: as above: no method writes through the mapping.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps the first `len` bytes of `fd`, a file opened for reading.
    pub fn new(fd: BorrowedFd<'_>, len: u64) -> io::Result<Mapped> {
        let len = match usize::try_from(len) {
            Ok(n) if n > 0 => n,
            _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        // SAFETY: a new mapping at an address the kernel chooses; no memory
        // of this process is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p).ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?;
        // INVARIANT: `ptr` starts the `len`-byte mapping just made.
        Ok(Mapped { ptr, len })
    }

    /// The mapping's length in bytes.
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// `pwrite(2)` of the mapped bytes `[off, off + len)` to `fd` at the
    /// same offset `off`. `EINVAL` if that range is not inside the mapping;
    /// `EFAULT` if the file has shrunk below a page of it.
    pub fn write_to(&self, fd: BorrowedFd<'_>, off: u64, len: usize) -> io::Result<usize> {
        let start = self.check(off, len)?;
        let pos =
            libc::off64_t::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: `[start, start + len)` lies inside the live mapping
        // (`check`, and the type's invariant), and `write(2)` only reads it.
        let r = unsafe {
            libc::pwrite64(
                fd.as_raw_fd(),
                self.ptr.as_ptr().cast::<u8>().add(start).cast(),
                len,
                pos,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }

    /// The offset of `[off, off + len)` in the mapping, if it lies inside.
    fn check(&self, off: u64, len: usize) -> io::Result<usize> {
        usize::try_from(off)
            .ok()
            .filter(|&s| s <= self.len && len <= self.len - s)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
    }

    /// A copy of the mapped bytes `[off, off + len)`, for the tests' fake
    /// cache files; the tests never shrink a mapped file.
    #[cfg(test)]
    pub fn to_vec(&self, off: u64, len: usize) -> io::Result<Vec<u8>> {
        let start = self.check(off, len)?;
        // SAFETY: the range lies inside the live mapping (`check`), and the
        // tests keep the file at least that long while it is mapped.
        let bytes =
            unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>().add(start), len) };
        Ok(bytes.to_vec())
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping is live (the type's invariant) and nothing
        // borrows it any more.
        unsafe { libc::munmap(self.ptr.as_ptr(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_wakes_epoll() {
        let ep = Epoll::new().unwrap();
        let ev = EventFd::new().unwrap();
        ep.add_readable(ev.raw_fd(), 7).unwrap();
        assert!(ep.wait(Duration::from_millis(0)).unwrap().is_empty());
        ev.notify();
        let r = ep.wait(Duration::from_millis(100)).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].token, 7);
        ev.drain();
        assert!(ep.wait(Duration::from_millis(0)).unwrap().is_empty());
    }

    #[test]
    fn fd_helpers() {
        let ev = EventFd::new().unwrap();
        assert!(fd_is_open(ev.raw_fd()));
        assert!(!fd_is_open(-1));
        set_cloexec(ev.raw_fd(), false).unwrap();
        set_cloexec(ev.raw_fd(), true).unwrap();
        assert!(!is_char_device(ev.raw_fd()).unwrap());
        let null = std::fs::File::open("/dev/null").unwrap();
        assert!(is_char_device(null.as_raw_fd()).unwrap());
        assert!(page_size().is_power_of_two());
        if let Some(l) = fd_link(ev.raw_fd()) {
            assert_eq!(l, "anon_inode:[eventfd]");
        }
    }

    #[test]
    fn mount_types() {
        let info = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                    35 1 8:1 / / rw,relatime shared:1 master:2 - ext4 /dev/sda1 rw\n\
                    40 35 0:40 / /host rw - 9p cfod rw,cache=none\n";
        assert_eq!(mountinfo_fs_type(info, 35).as_deref(), Some("ext4"));
        assert_eq!(mountinfo_fs_type(info, 40).as_deref(), Some("9p"));
        assert_eq!(mountinfo_fs_type(info, 3), None);
        assert_eq!(mountinfo_fs_type("35 1 8:1 / / rw\n", 35), None);
        // This process's own files are on some mount it can name.
        let f = std::fs::File::open("/proc/self/mountinfo").unwrap();
        use std::os::fd::AsFd;
        let id = mount_id(f.as_fd()).unwrap();
        assert_eq!(mount_fs_type(id).unwrap().as_deref(), Some("proc"));
    }

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("odd-sys-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn mapped_bytes_reach_another_file() {
        use std::os::fd::AsFd;
        use std::os::unix::fs::FileExt;
        let d = scratch("map");
        let data: Vec<u8> = (0..3 * 4096 + 100).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(d.join("src"), &data).unwrap();
        let src = std::fs::File::open(d.join("src")).unwrap();
        let m = Mapped::new(src.as_fd(), data.len() as u64).unwrap();
        assert_eq!(m.len(), data.len() as u64);
        assert_eq!(m.to_vec(4096, 10).unwrap(), &data[4096..4106]);
        let dst = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(d.join("dst"))
            .unwrap();
        // The page at 4096 and the unaligned tail, at their own offsets.
        assert_eq!(m.write_to(dst.as_fd(), 4096, 4096).unwrap(), 4096);
        let tail = data.len() - 3 * 4096;
        assert_eq!(m.write_to(dst.as_fd(), 3 * 4096, tail).unwrap(), tail);
        let mut got = vec![0u8; data.len()];
        assert_eq!(dst.read_at(&mut got, 0).unwrap(), data.len());
        assert_eq!(&got[4096..8192], &data[4096..8192]);
        assert_eq!(&got[3 * 4096..], &data[3 * 4096..]);
        assert!(got[..4096].iter().all(|&b| b == 0));
        // Past the mapping: EINVAL, nothing written.
        for (off, len) in [(0, data.len() + 1), (data.len() as u64, 1), (u64::MAX, 1)] {
            let e = m.write_to(dst.as_fd(), off, len).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{off} +{len}");
        }
        assert!(Mapped::new(src.as_fd(), 0).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A file shrunk under its mapping: writing its lost pages fails with
    /// EFAULT (no SIGBUS), its kept pages still write.
    #[test]
    fn shrunk_mapping_gives_efault() {
        use std::os::fd::AsFd;
        let d = scratch("shrink");
        std::fs::write(d.join("src"), vec![5u8; 4 * 4096]).unwrap();
        let src = std::fs::File::open(d.join("src")).unwrap();
        let m = Mapped::new(src.as_fd(), 4 * 4096).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("src"))
            .unwrap()
            .set_len(4096)
            .unwrap();
        let dst = std::fs::File::create(d.join("dst")).unwrap();
        assert_eq!(m.write_to(dst.as_fd(), 0, 4096).unwrap(), 4096);
        let e = m.write_to(dst.as_fd(), 2 * 4096, 4096).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EFAULT));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
