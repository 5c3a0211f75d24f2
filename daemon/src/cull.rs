//! Cache space limits and culling, as cachefilesd does them.
//!
//! Before `bind`, `odd` sets the six limits (percentages of free blocks and
//! free files of the cache's filesystem): below `bcull`/`fcull` free, the
//! kernel enters the culling state and polls the devnode writable (EPOLLOUT);
//! below `bstop`/`fstop` it refuses new cache files and writes (ENOBUFS); it
//! leaves the culling state once free space is back above `brun`/`frun`.
//!
//! The culling thread waits for EPOLLOUT (and checks the free space itself
//! every few seconds), then removes the least recently used cache files that
//! are not in use until free space is back above the `run` limits: it scans
//! `<dir>/cache/<volume>/<fan-out>/<object>`, oldest access time first, and
//! for each candidate writes `inuse NAME` and `cull NAME` with that file's
//! directory as its current directory (the kernel resolves NAME against the
//! writer's working directory; this thread has its own, `unshare(CLONE_FS)`,
//! so the rest of the daemon is unaffected). The kernel refuses to cull an
//! object in use (EBUSY), so an open object is never removed. Directories
//! the kernel buries in `<dir>/graveyard` are deleted.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// The six limits, in percent of the cache filesystem's blocks and files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub brun: u8,
    pub bcull: u8,
    pub bstop: u8,
    pub frun: u8,
    pub fcull: u8,
    pub fstop: u8,
}

impl Default for Limits {
    /// cachefilesd's defaults.
    fn default() -> Self {
        Limits {
            brun: 10,
            bcull: 7,
            bstop: 3,
            frun: 10,
            fcull: 7,
            fstop: 3,
        }
    }
}

impl Limits {
    /// The kernel's rule: `0 <= stop < cull < run < 100`, for both kinds.
    pub fn validate(&self) -> Result<(), String> {
        for (k, run, cull, stop) in [
            ("b", self.brun, self.bcull, self.bstop),
            ("f", self.frun, self.fcull, self.fstop),
        ] {
            if !(stop < cull && cull < run && run < 100) {
                return Err(format!(
                    "cache limits must be 0 <= {k}stop < {k}cull < {k}run < 100 \
                     (got {k}run {run}%, {k}cull {cull}%, {k}stop {stop}%)"
                ));
            }
        }
        Ok(())
    }

    /// Commands that set the limits from any valid previous setting: the
    /// kernel checks each against the current others, so stop and cull are
    /// first lowered to 0% and 1%, then run, cull and stop set in that order.
    pub fn commands(&self) -> Vec<String> {
        let mut v = Vec::new();
        for (k, run, cull, stop) in [
            ("b", self.brun, self.bcull, self.bstop),
            ("f", self.frun, self.fcull, self.fstop),
        ] {
            v.push(format!("{k}stop 0%"));
            v.push(format!("{k}cull 1%"));
            v.push(format!("{k}run {run}%"));
            v.push(format!("{k}cull {cull}%"));
            v.push(format!("{k}stop {stop}%"));
        }
        v
    }
}

/// Free space of the cache's filesystem, as the kernel measures it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub blocks: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub block_size: u64,
}

impl Usage {
    pub fn of(path: &Path) -> io::Result<Usage> {
        let st = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
        Ok(Usage {
            blocks: st.blocks(),
            bavail: st.blocks_available(),
            files: st.files(),
            ffree: st.files_free(),
            block_size: st.fragment_size(),
        })
    }

    /// Whether free blocks and files are both at or above `b`%/`f`%.
    fn above(&self, b: u8, f: u8) -> bool {
        // The kernel compares f_bavail with f_blocks * pct / 100.
        let bmin = self.blocks.saturating_mul(u64::from(b)) / 100;
        let fmin = self.files.saturating_mul(u64::from(f)) / 100;
        self.bavail >= bmin && (self.files == 0 || self.ffree >= fmin)
    }

    /// Free blocks in percent of all blocks.
    pub fn free_block_pct(&self) -> f64 {
        if self.blocks == 0 {
            return 100.0;
        }
        self.bavail as f64 * 100.0 / self.blocks as f64
    }

    /// Free files in percent of all files.
    pub fn free_file_pct(&self) -> f64 {
        if self.files == 0 {
            return 100.0;
        }
        self.ffree as f64 * 100.0 / self.files as f64
    }
}

/// Counters of the culling thread, for metrics.
#[derive(Default)]
pub struct CullStats {
    pub passes: AtomicU64,
    pub culled: AtomicU64,
    pub culled_bytes: AtomicU64,
    pub in_use: AtomicU64,
    pub errors: AtomicU64,
    /// The devnode polled EPOLLOUT at the last look.
    pub culling: AtomicBool,
    pub graveyard_removed: AtomicU64,
}

/// One cache file that may be culled.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    dir: PathBuf,
    name: String,
    atime: i64,
    bytes: u64,
}

/// Cache files under `<root>/cache`, least recently accessed first.
fn candidates(root: &Path) -> Vec<Candidate> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("cache")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() {
                let Ok(name) = e.file_name().into_string() else {
                    continue;
                };
                out.push(Candidate {
                    dir: dir.clone(),
                    name,
                    atime: md.atime() * 1_000_000_000 + md.atime_nsec(),
                    bytes: md.blocks() * 512,
                });
            }
        }
    }
    out.sort_by(|a, b| a.atime.cmp(&b.atime).then_with(|| a.name.cmp(&b.name)));
    out
}

/// Deletes whatever the kernel buried in `<root>/graveyard`; returns how many.
fn clean_graveyard(root: &Path) -> u64 {
    let mut n = 0;
    let Ok(rd) = fs::read_dir(root.join("graveyard")) else {
        return 0;
    };
    for e in rd.flatten() {
        let p = e.path();
        let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        match r {
            Ok(()) => n += 1,
            Err(err) => warn!("cannot remove {}: {err}", p.display()),
        }
    }
    n
}

/// What the culler needs from the outside world.
pub trait CullIo: Send + Sync {
    /// Writes a devnode command (`inuse NAME`, `cull NAME`).
    fn command(&self, cmd: &str) -> io::Result<()>;
    /// Makes `dir` the directory the kernel resolves NAME against.
    fn enter(&self, dir: &Path) -> io::Result<()>;
    /// Current free space.
    fn usage(&self) -> io::Result<Usage>;
}

/// The culling logic, independent of threads and polling.
pub struct Culler {
    pub root: PathBuf,
    pub limits: Limits,
    pub stats: Arc<CullStats>,
}

impl Culler {
    /// Whether free space is below a cull limit (culling should start).
    pub fn needs_cull(&self, u: &Usage) -> bool {
        !u.above(self.limits.bcull, self.limits.fcull)
    }

    /// Whether free space is back at the run limits (culling can stop).
    pub fn satisfied(&self, u: &Usage) -> bool {
        u.above(self.limits.brun, self.limits.frun)
    }

    /// One culling pass: culls LRU objects not in use until the run limits
    /// are met or nothing is left to try. Returns the number culled.
    pub fn pass(&self, io: &dyn CullIo) -> u64 {
        self.stats.passes.fetch_add(1, Ordering::Relaxed);
        let mut culled = 0;
        let mut current: Option<PathBuf> = None;
        for c in candidates(&self.root) {
            match io.usage() {
                Ok(u) if self.satisfied(&u) => break,
                Ok(_) => {}
                Err(e) => {
                    warn!("statfs {}: {e}", self.root.display());
                    break;
                }
            }
            if current.as_deref() != Some(c.dir.as_path()) {
                if let Err(e) = io.enter(&c.dir) {
                    warn!("cannot enter {}: {e}", c.dir.display());
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                current = Some(c.dir.clone());
            }
            let r = io.command(&format!("inuse {}", c.name));
            if matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EBUSY)) {
                self.stats.in_use.fetch_add(1, Ordering::Relaxed);
                debug!("{}/{} is in use; kept", c.dir.display(), c.name);
                continue;
            }
            let r = r.and_then(|()| io.command(&format!("cull {}", c.name)));
            match r {
                Ok(()) => {
                    culled += 1;
                    self.stats.culled.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .culled_bytes
                        .fetch_add(c.bytes, Ordering::Relaxed);
                    debug!("culled {}/{} ({} bytes)", c.dir.display(), c.name, c.bytes);
                    let g = clean_graveyard(&self.root);
                    self.stats.graveyard_removed.fetch_add(g, Ordering::Relaxed);
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    self.stats.in_use.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ESTALE) | Some(libc::ENOENT)) => {
                    debug!("{}/{}: {e} (gone already)", c.dir.display(), c.name);
                }
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    warn!("cull {}/{}: {e}", c.dir.display(), c.name);
                }
            }
        }
        culled
    }
}

/// The real world: the devnode and this thread's own working directory.
struct DevIo {
    dev: Arc<dyn crate::devnode::Devnode>,
    root: PathBuf,
}

impl CullIo for DevIo {
    fn command(&self, cmd: &str) -> io::Result<()> {
        self.dev.write_cmd(cmd)
    }
    fn enter(&self, dir: &Path) -> io::Result<()> {
        std::env::set_current_dir(dir)
    }
    fn usage(&self) -> io::Result<Usage> {
        Usage::of(&self.root)
    }
}

/// How often free space is checked without a cull signal.
const CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Pause after a pass that could not get free space back above the run
/// limits (everything left is in use), so a lasting EPOLLOUT does not spin.
const STUCK_PAUSE: Duration = Duration::from_secs(1);

/// The culling thread.
pub struct CullThread {
    stop: Arc<crate::sys::EventFd>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl CullThread {
    /// Starts watching `dev` for the cull signal; culls under `root`.
    pub fn start(
        dev: Arc<dyn crate::devnode::Devnode>,
        root: PathBuf,
        limits: Limits,
        stats: Arc<CullStats>,
    ) -> io::Result<CullThread> {
        let stop = Arc::new(crate::sys::EventFd::new()?);
        let stop2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("odd-cull".into())
            .spawn(move || {
                // SAFETY: unshare(CLONE_FS) only gives this thread its own
                // working directory; no memory is passed.
                if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
                    error!(
                        "unshare(CLONE_FS): {}; culling disabled",
                        io::Error::last_os_error()
                    );
                    return;
                }
                let culler = Culler {
                    root: root.clone(),
                    limits,
                    stats,
                };
                let io = DevIo {
                    dev: dev.clone(),
                    root,
                };
                run(&culler, &io, dev.poll_fd(), &stop2);
            })?;
        Ok(CullThread {
            stop,
            handle: Some(handle),
        })
    }

    pub fn stop(mut self) {
        self.stop.notify();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Waits up to `timeout` for POLLOUT on `dev` (when `watch_dev`) or the stop
/// eventfd. Returns (cull signal seen, stop requested).
fn wait(dev: i32, stop: i32, watch_dev: bool, timeout: Duration) -> (bool, bool) {
    let mut fds = [
        libc::pollfd {
            fd: stop,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: if watch_dev { dev } else { -1 },
            events: libc::POLLOUT,
            revents: 0,
        },
    ];
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fds` is a valid array of two pollfds for the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
    if n <= 0 {
        return (false, false);
    }
    (
        fds[1].revents & libc::POLLOUT != 0,
        fds[0].revents & libc::POLLIN != 0,
    )
}

fn run(culler: &Culler, io: &dyn CullIo, dev: i32, stop: &crate::sys::EventFd) {
    info!(
        "culling {} with limits brun {}% bcull {}% bstop {}% frun {}% fcull {}% fstop {}%",
        culler.root.display(),
        culler.limits.brun,
        culler.limits.bcull,
        culler.limits.bstop,
        culler.limits.frun,
        culler.limits.fcull,
        culler.limits.fstop
    );
    loop {
        let (signal, stopped) = wait(dev, stop.raw_fd(), true, CHECK_INTERVAL);
        if stopped {
            return;
        }
        culler.stats.culling.store(signal, Ordering::Relaxed);
        let usage = match io.usage() {
            Ok(u) => u,
            Err(e) => {
                warn!("statfs {}: {e}", culler.root.display());
                continue;
            }
        };
        if !signal && !culler.needs_cull(&usage) {
            continue;
        }
        if !culler.satisfied(&usage) {
            let n = culler.pass(io);
            let after = io.usage().unwrap_or(usage);
            let level = if n > 0 {
                ::log::Level::Info
            } else {
                ::log::Level::Debug
            };
            ::log::log!(
                level,
                "cull pass{}: {n} objects culled; free {:.1}% blocks, {:.1}% files",
                if signal { " (kernel cull signal)" } else { "" },
                after.free_block_pct(),
                after.free_file_pct()
            );
            if n > 0 && culler.satisfied(&after) {
                continue;
            }
        }
        // Space is back above the run limits but the kernel has not looked
        // again yet (it leaves its culling state at its next allocation), or
        // everything left is in use: EPOLLOUT is level-triggered, so pause
        // instead of spinning on it.
        if wait(dev, stop.raw_fd(), false, STUCK_PAUSE).1 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn limits_defaults_and_order() {
        let l = Limits::default();
        assert!(l.validate().is_ok());
        assert_eq!(
            &l.commands()[..5],
            &["bstop 0%", "bcull 1%", "brun 10%", "bcull 7%", "bstop 3%"]
        );
        assert_eq!(l.commands()[5], "fstop 0%");
        let bad = Limits {
            bcull: 10,
            ..Limits::default()
        };
        assert!(bad.validate().unwrap_err().contains("bcull"));
        let bad = Limits {
            frun: 100,
            ..Limits::default()
        };
        assert!(bad.validate().is_err());
        let ok = Limits {
            brun: 2,
            bcull: 1,
            bstop: 0,
            ..Limits::default()
        };
        assert!(ok.validate().is_ok());
    }

    /// A fake filesystem: usage grows back as files are culled.
    struct FakeIo {
        busy: Vec<String>,
        log: Mutex<Vec<String>>,
        cwd: Mutex<PathBuf>,
        /// Blocks freed per cull; starts at `start` free of 100.
        start: u64,
    }

    impl CullIo for FakeIo {
        fn command(&self, cmd: &str) -> io::Result<()> {
            let (verb, name) = cmd.split_once(' ').unwrap();
            self.log.lock().unwrap().push(cmd.to_string());
            if self.busy.iter().any(|b| b == name) {
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            if verb == "cull" {
                let p = self.cwd.lock().unwrap().join(name);
                fs::remove_file(p)?;
            }
            Ok(())
        }
        fn enter(&self, dir: &Path) -> io::Result<()> {
            *self.cwd.lock().unwrap() = dir.to_path_buf();
            Ok(())
        }
        fn usage(&self) -> io::Result<Usage> {
            let culled = self
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|c| c.starts_with("cull "))
                .count() as u64;
            Ok(Usage {
                blocks: 100,
                bavail: self.start + culled * 3,
                files: 100,
                ffree: 50,
                block_size: 4096,
            })
        }
    }

    fn touch(dir: &Path, name: &str, atime: i64) {
        fs::create_dir_all(dir).unwrap();
        let p = dir.join(name);
        fs::write(&p, b"x").unwrap();
        let t = nix::sys::time::TimeSpec::new(atime, 0);
        nix::sys::stat::utimensat(
            None,
            &p,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::FollowSymlink,
        )
        .unwrap();
    }

    #[test]
    fn culls_lru_first_skipping_busy_until_run_limit() {
        let root = std::env::temp_dir().join(format!("odd-cull-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let v = root.join("cache/Ierofs,x/@4a");
        touch(&v, "Dold", 1000);
        touch(&v, "Dbusy", 500);
        touch(&v, "Dnew", 3000);
        touch(&root.join("cache/Ierofs,y/@01"), "Dmid", 2000);
        fs::create_dir_all(root.join("graveyard/x1")).unwrap();
        let io = FakeIo {
            busy: vec!["Dbusy".into()],
            log: Mutex::new(Vec::new()),
            cwd: Mutex::new(PathBuf::new()),
            start: 4, // 4% free: below bcull 7%
        };
        let culler = Culler {
            root: root.clone(),
            limits: Limits::default(),
            stats: Arc::new(CullStats::default()),
        };
        assert!(culler.needs_cull(&io.usage().unwrap()));
        // Each cull frees 3%: 4 -> 7 -> 10 (brun): two culls, oldest first,
        // the busy one (oldest of all) asked about and kept.
        assert_eq!(culler.pass(&io), 2);
        assert_eq!(
            *io.log.lock().unwrap(),
            vec![
                "inuse Dbusy",
                "inuse Dold",
                "cull Dold",
                "inuse Dmid",
                "cull Dmid"
            ]
        );
        assert!(v.join("Dbusy").exists());
        assert!(v.join("Dnew").exists());
        assert!(!v.join("Dold").exists());
        assert!(!root.join("graveyard/x1").exists());
        assert_eq!(culler.stats.in_use.load(Ordering::Relaxed), 1);
        assert_eq!(culler.stats.culled.load(Ordering::Relaxed), 2);
        assert!(culler.satisfied(&io.usage().unwrap()));
        fs::remove_dir_all(&root).unwrap();
    }
}
