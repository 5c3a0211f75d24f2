//! `odd supervise`: keeps the devnode open across worker crashes and
//! upgrades.
//!
//! The supervisor opens the devnode, sets the cache limits and binds it (or
//! gets an already bound devnode back from an fd holder or systemd's fd
//! store), then runs `odd serve --fd N` as a child that inherits the
//! descriptor. The child is started through `/proc/self/exe`, so a restart
//! runs the same binary even after the file on disk was replaced; a failed
//! start (fork's EAGAIN/ENOMEM, ...) is retried with back-off. The child
//! has `PR_SET_PDEATHSIG(SIGKILL)`: it never outlives the supervisor.
//!
//! When the child dies abnormally its anonymous fds are released (its
//! objects become closed) but the cache stays alive because the supervisor
//! still holds the devnode; the replacement child starts with `--restore`,
//! which makes the kernel deliver the pending requests again.
//!
//! SIGUSR2 (or `odd upgrade` on the worker's control socket) starts a new
//! worker from the odd binary on disk with `--takeover`: the old worker
//! hands its objects over and exits, with no `restore` and no failed read.

use std::io::Read as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::cli::{Cli, SuperviseArgs};
use crate::devnode::CachefilesDev;
use crate::sys::{self, Epoll, SignalFd};
use crate::{exitcode, hold, open_and_bind, upgrade, validate_serve_args};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// A worker that ran this long is considered healthy: back-off resets.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// The name of the devnode in systemd's fd store.
const FDNAME: &str = "devnode";

const TOKEN_SIGNAL: u64 = 1;
const TOKEN_READY: u64 = 2;

/// A worker: started by this process, or by the supervisor this process
/// was before it re-executed itself at an upgrade.
enum Worker {
    Spawned(Child),
    Adopted(u32),
}

impl Worker {
    fn id(&self) -> u32 {
        match self {
            Worker::Spawned(c) => c.id(),
            Worker::Adopted(p) => *p,
        }
    }

    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        match self {
            Worker::Spawned(c) => c.try_wait(),
            Worker::Adopted(pid) => {
                let mut status = 0;
                // SAFETY: waitpid writes one int; `pid` is our child.
                let r = unsafe { libc::waitpid(*pid as libc::pid_t, &mut status, libc::WNOHANG) };
                match r {
                    0 => Ok(None),
                    r if r < 0 => Err(std::io::Error::last_os_error()),
                    _ => Ok(Some(ExitStatus::from_raw(status))),
                }
            }
        }
    }

    fn kill_and_reap(&mut self) {
        let _ = sys::kill(self.id(), libc::SIGKILL);
        match self {
            Worker::Spawned(c) => {
                let _ = c.wait();
            }
            Worker::Adopted(pid) => {
                let mut status = 0;
                // SAFETY: as in try_wait.
                unsafe { libc::waitpid(*pid as libc::pid_t, &mut status, 0) };
            }
        }
    }
}

/// What ended a wait on the worker.
enum Event {
    Exited(ExitStatus),
    Stop,
}

struct Supervisor<'a> {
    args: &'a SuperviseArgs,
    cli: &'a Cli,
    dev: CachefilesDev,
    signals: SignalFd,
    epoll: Epoll,
    seed: u64,
    /// The first worker writes `restore` (devnode taken back from a holder,
    /// or `--restore`).
    restore_first: bool,
    /// Read end of the workers' readiness pipe; write end given as --ready-fd.
    ready_rx: OwnedFd,
    ready_tx: OwnedFd,
    told_ready: std::cell::Cell<bool>,
    /// Where this binary was started from (for when /proc is missing).
    exe: PathBuf,
    /// A worker inherited from the supervisor we were before an upgrade.
    adopted: std::cell::Cell<Option<u32>>,
}

/// Gets an already bound devnode back from systemd's fd store or the holder.
fn devnode_from_store(args: &SuperviseArgs) -> Option<CachefilesDev> {
    if let Ok(fds) = sd_notify::listen_fds_with_names(true) {
        for (fd, name) in fds {
            if name == FDNAME {
                info!("got the devnode back from systemd's fd store (fd {fd})");
                return CachefilesDev::from_inherited_fd(fd)
                    .map_err(|e| error!("{e}"))
                    .ok();
            }
        }
    }
    let path = args.fd_holder.as_ref()?;
    match hold::fetch(path) {
        Ok(Some(fd)) => {
            info!("got the devnode back from the fd holder {}", path.display());
            CachefilesDev::from_owned(fd)
                .map_err(|e| error!("{e}"))
                .ok()
        }
        Ok(None) => None,
        Err(e) => {
            warn!("fd holder {}: {e}; binding afresh", path.display());
            None
        }
    }
}

/// Puts the devnode in systemd's fd store and the holder, if there are any.
fn store_devnode(args: &SuperviseArgs, dev: &CachefilesDev) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        // SAFETY: the devnode stays open for the duration of the call.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(dev.raw_fd()) };
        if let Err(e) = sd_notify::notify_with_fds(
            false,
            &[
                sd_notify::NotifyState::FdStore,
                sd_notify::NotifyState::FdName(FDNAME),
            ],
            &[fd],
        ) {
            warn!("FDSTORE: {e}");
        }
    }
    if let Some(path) = &args.fd_holder {
        match hold::store(path, dev.raw_fd()) {
            Ok(()) => info!(
                "the fd holder {} keeps a copy of the devnode",
                path.display()
            ),
            Err(e) => warn!(
                "fd holder {}: {e}; a killed supervisor will take the cache down",
                path.display()
            ),
        }
    }
}

/// Runs the supervisor; returns the process exit code.
pub fn run(args: &SuperviseArgs, cli: &Cli) -> i32 {
    let signals = match SignalFd::new(&[
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGHUP,
        libc::SIGCHLD,
    ]) {
        Ok(s) => s,
        Err(e) => {
            error!("signalfd: {e}");
            return exitcode::FAILURE;
        }
    };
    if args.serve.fd.is_some() || args.serve.takeover.is_some() {
        error!("supervise opens the devnode itself; --fd and --takeover are for its workers");
        return exitcode::USAGE;
    }
    let seed = match validate_serve_args(&args.serve) {
        Ok(seed) => seed,
        Err(code) => return code,
    };
    let Some(dir) = &args.serve.dir else {
        error!("supervise needs --dir (the cache directory)");
        return exitcode::USAGE;
    };
    let adopted = args.adopt_worker;
    let stored = match args.adopt_fd {
        Some(fd) => match CachefilesDev::from_inherited_fd(fd) {
            Ok(d) => {
                info!(
                    "re-executed at upgrade; keeping the devnode (fd {fd}) and worker pid {}",
                    adopted.unwrap_or(0)
                );
                Some((d, false))
            }
            Err(e) => {
                error!("{e}");
                return exitcode::FAILURE;
            }
        },
        None => devnode_from_store(args).map(|d| (d, true)),
    };
    let (dev, restore_first) = match stored {
        Some(d) => d,
        None => match open_and_bind(&args.serve, dir) {
            Ok(d) => {
                store_devnode(args, &d);
                (d, args.serve.restore)
            }
            Err(code) => return code,
        },
    };
    info!("supervising workers on devnode fd {}", dev.raw_fd());
    let (ready_rx, ready_tx) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            error!("pipe: {e}");
            return exitcode::FAILURE;
        }
    };
    let _ = sys::set_nonblocking(ready_rx.as_raw_fd());
    let epoll = match Epoll::new().and_then(|e| {
        e.add_readable(signals.raw_fd(), TOKEN_SIGNAL)?;
        e.add_readable(ready_rx.as_raw_fd(), TOKEN_READY)?;
        Ok(e)
    }) {
        Ok(e) => e,
        Err(e) => {
            error!("epoll: {e}");
            return exitcode::FAILURE;
        }
    };
    Supervisor {
        args,
        cli,
        dev,
        signals,
        epoll,
        seed,
        restore_first,
        ready_rx,
        ready_tx,
        told_ready: std::cell::Cell::new(false),
        exe: upgrade::exe_on_disk(),
        adopted: std::cell::Cell::new(adopted),
    }
    .run()
}

impl Supervisor<'_> {
    fn run(&self) -> i32 {
        let mut restarts = 0u32;
        let max_backoff = Duration::from_millis(self.args.max_backoff_ms).max(MIN_BACKOFF);
        let mut backoff = MIN_BACKOFF;
        let mut restore = self.restore_first;
        loop {
            let started = Instant::now();
            let spawned = match self.adopted.take() {
                Some(pid) => Ok(Worker::Adopted(pid)),
                None => self.spawn(restore, None).map(Worker::Spawned),
            };
            let mut child = match spawned {
                Ok(c) => c,
                Err(e) => {
                    // fork's EAGAIN/ENOMEM, a missing binary: the devnode is
                    // still ours, so keep trying instead of dropping the cache.
                    error!("cannot start the worker: {e}; retrying in {backoff:?}");
                    if self.sleep(backoff) {
                        return self.finish(exitcode::OK);
                    }
                    backoff = (backoff * 2).min(max_backoff);
                    continue;
                }
            };
            info!(
                "worker pid {} {}{}",
                child.id(),
                if matches!(child, Worker::Adopted(_)) {
                    "adopted"
                } else {
                    "started"
                },
                if restore { " (restore)" } else { "" }
            );
            let status = match self.wait(&mut child) {
                Event::Exited(s) => s,
                Event::Stop => return self.stop(child),
            };
            if status.success() {
                info!("worker exited cleanly; supervisor exits");
                return self.finish(exitcode::OK);
            }
            match status.code() {
                Some(exitcode::CACHE_DEAD) => {
                    error!("worker reports the cache dead; not restarting");
                    return self.finish(exitcode::CACHE_DEAD);
                }
                Some(exitcode::USAGE) => {
                    error!("worker rejected its arguments; not restarting");
                    return self.finish(exitcode::USAGE);
                }
                _ => {}
            }
            warn!("worker pid {} died: {}", child.id(), describe(status));
            restarts += 1;
            restore = true;
            if self.args.max_restarts > 0 && restarts > self.args.max_restarts {
                error!(
                    "worker died {restarts} times; giving up (--max-restarts {})",
                    self.args.max_restarts
                );
                return self.finish(exitcode::FAILURE);
            }
            if started.elapsed() >= HEALTHY_RUN {
                backoff = MIN_BACKOFF;
            }
            info!("restarting the worker in {backoff:?} (restart {restarts})");
            if self.sleep(backoff) {
                info!("stopping");
                return self.finish(exitcode::OK);
            }
            backoff = (backoff * 2).min(max_backoff);
        }
    }

    /// A clean end: the fd holder and systemd's store let go of the devnode
    /// so that the cache is unbound when this process exits.
    fn finish(&self, code: i32) -> i32 {
        if let Some(path) = &self.args.fd_holder {
            if let Err(e) = hold::clear(path) {
                debug!("fd holder {}: {e}", path.display());
            }
        }
        if std::env::var_os("NOTIFY_SOCKET").is_some() {
            let _ = sd_notify::notify(
                false,
                &[
                    sd_notify::NotifyState::Stopping,
                    sd_notify::NotifyState::FdStoreRemove,
                    sd_notify::NotifyState::FdName(FDNAME),
                ],
            );
        }
        code
    }

    /// Starts a worker: the running binary through /proc/self/exe (the same
    /// version even if the file was replaced), or `upgrade_from` the binary
    /// on disk taking over from the worker at the control socket.
    fn spawn(&self, restore: bool, takeover: Option<&std::path::Path>) -> std::io::Result<Child> {
        let exe = if takeover.is_some() {
            upgrade::exe_on_disk()
        } else if std::path::Path::new("/proc/self/exe").exists() {
            PathBuf::from("/proc/self/exe")
        } else {
            self.exe.clone()
        };
        let fd = self.dev.raw_fd();
        let ready = self.ready_tx.as_raw_fd();
        let mut cmd = Command::new(&exe);
        cmd.arg0("odd");
        let mut args = self.args.serve.child_args(
            fd,
            restore,
            self.cli.verbose,
            self.cli.quiet,
            Some(self.seed),
        );
        args.push("--ready-fd".into());
        args.push(ready.to_string().into());
        if let Some(t) = takeover {
            args.push("--takeover".into());
            args.push(t.into());
        }
        cmd.args(args);
        cmd.env("ODD_SUPERVISOR_PID", std::process::id().to_string());
        // The supervisor is the service's main process: it says READY.
        cmd.env_remove("NOTIFY_SOCKET");
        if let Some(f) = &self.cli.log {
            cmd.env("ODD_LOG", f);
        }
        let parent = std::process::id();
        // SAFETY: the closure runs in the forked child before exec and only
        // calls fcntl(2), prctl(2) and getppid(2), which are
        // async-signal-safe; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                sys::set_cloexec(fd, false)?;
                sys::set_cloexec(ready, false)?;
                // Die with the supervisor: an orphan worker would keep
                // serving a cache nobody can restart or stop.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The supervisor may have died before the prctl.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        cmd.spawn()
    }

    /// Waits for the child to exit or a stop signal. SIGCHLD wakes the
    /// wait; a one-second tick covers coalesced signals. SIGUSR2 upgrades
    /// the worker in place (the new one replaces `child`).
    fn wait(&self, child: &mut Worker) -> Event {
        let mut retiring: Option<Worker> = None;
        loop {
            if let Some(old) = &mut retiring {
                if let Ok(Some(s)) = old.try_wait() {
                    info!(
                        "old worker pid {} exited after the hand-over: {}",
                        old.id(),
                        describe(s)
                    );
                    retiring = None;
                    // Now the supervisor itself moves to the new binary.
                    self.reexec(child.id());
                }
            }
            if let Some(ev) = self.poll_child(child) {
                return ev;
            }
            let ready = self.epoll.wait(Duration::from_secs(1)).unwrap_or_default();
            if ready.iter().any(|r| r.token == TOKEN_READY) {
                self.on_ready();
            }
            match self.handle_signals(Some(child)) {
                Sig::Stop => return Event::Stop,
                Sig::Upgrade => match self.upgrade() {
                    Ok(new) => {
                        info!(
                            "upgrade: new worker pid {} takes over from pid {}",
                            new.id(),
                            child.id()
                        );
                        retiring = Some(std::mem::replace(child, Worker::Spawned(new)));
                    }
                    Err(e) => error!("upgrade: {e}"),
                },
                Sig::None => {}
            }
        }
    }

    fn upgrade(&self) -> Result<Child, String> {
        let Some(control) = &self.args.serve.control else {
            return Err("needs --control (the worker's control socket)".into());
        };
        self.spawn(false, Some(control))
            .map_err(|e| format!("cannot start {}: {e}", upgrade::exe_on_disk().display()))
    }

    /// A worker wrote READY: tell systemd (once).
    fn on_ready(&self) {
        let mut buf = [0u8; 64];
        // SAFETY: ready_rx is our open pipe end; File is not dropped (forget).
        let mut f = unsafe { std::fs::File::from_raw_fd(self.ready_rx.as_raw_fd()) };
        let n = f.read(&mut buf).unwrap_or(0);
        std::mem::forget(f);
        if n > 0 && !self.told_ready.replace(true) {
            info!("worker ready");
            if std::env::var_os("NOTIFY_SOCKET").is_some() {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
            }
            if let Some(fd) = self.args.serve.ready_fd {
                write_ready(fd);
            }
        }
    }

    /// Replaces this process's image by the odd binary on disk, keeping the
    /// devnode and the worker (a child stays a child across exec, and the
    /// worker's parent-death signal does not fire). Returns only on failure.
    fn reexec(&self, worker: u32) {
        use std::os::unix::ffi::OsStrExt;
        let exe = upgrade::exe_on_disk();
        let fd = self.dev.raw_fd();
        let mut args: Vec<std::ffi::CString> = vec![c"odd".into()];
        let mut it = std::env::args_os().skip(1);
        while let Some(a) = it.next() {
            if a == "--adopt-fd" || a == "--adopt-worker" {
                it.next();
                continue;
            }
            args.extend(std::ffi::CString::new(a.as_bytes()).ok());
        }
        for a in [
            "--adopt-fd".to_string(),
            fd.to_string(),
            "--adopt-worker".to_string(),
            worker.to_string(),
        ] {
            args.extend(std::ffi::CString::new(a).ok());
        }
        let Ok(path) = std::ffi::CString::new(exe.as_os_str().as_bytes()) else {
            return;
        };
        if let Err(e) = sys::set_cloexec(fd, false) {
            error!("upgrade: cannot keep the devnode across exec: {e}");
            return;
        }
        info!("upgrade: the supervisor re-executes {}", exe.display());
        let e = nix::unistd::execv(&path, &args).unwrap_err();
        error!(
            "upgrade: exec {}: {e}; the supervisor stays as it is",
            exe.display()
        );
        let _ = sys::set_cloexec(fd, true);
    }

    fn poll_child(&self, child: &mut Worker) -> Option<Event> {
        match child.try_wait() {
            Ok(Some(s)) => Some(Event::Exited(s)),
            Ok(None) => None,
            Err(e) => {
                error!("waitpid: {e}");
                None
            }
        }
    }

    /// Drains pending signals. USR1/HUP are forwarded.
    fn handle_signals(&self, child: Option<&Worker>) -> Sig {
        let mut out = Sig::None;
        while let Some(sig) = self.signals.next() {
            match sig {
                libc::SIGTERM | libc::SIGINT => {
                    info!("{} received; stopping the worker", sys::signal_name(sig));
                    out = Sig::Stop;
                }
                libc::SIGUSR2 if !matches!(out, Sig::Stop) => {
                    info!("SIGUSR2 received: upgrading the worker");
                    out = Sig::Upgrade;
                }
                libc::SIGUSR1 | libc::SIGHUP => {
                    if let Some(c) = child {
                        let _ = sys::kill(c.id(), sig);
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Sleeps for `d` unless a stop signal arrives (then returns true).
    fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let _ = self.epoll.wait(deadline - now);
            if matches!(self.handle_signals(None), Sig::Stop) {
                return true;
            }
        }
    }

    /// SIGTERM to the worker, SIGKILL after the stop timeout; exit 0.
    fn stop(&self, mut child: Worker) -> i32 {
        let _ = sys::kill(child.id(), libc::SIGTERM);
        let timeout = Duration::from_millis(self.args.stop_timeout_ms);
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(s)) => {
                    info!("worker stopped: {}", describe(s));
                    return self.finish(exitcode::OK);
                }
                Ok(None) if Instant::now() < deadline => {
                    let _ = self.epoll.wait(Duration::from_millis(50));
                    let _ = self.handle_signals(None);
                }
                _ => {
                    warn!("worker did not stop within {timeout:?}; killing it");
                    child.kill_and_reap();
                    return self.finish(exitcode::OK);
                }
            }
        }
    }
}

enum Sig {
    None,
    Stop,
    Upgrade,
}

fn write_ready(fd: RawFd) {
    if sys::fd_is_open(fd) {
        // SAFETY: the caller gave us this descriptor for this one write.
        let f = unsafe { std::fs::File::from_raw_fd(fd) };
        let _ = std::io::Write::write_all(&mut &f, b"READY\n");
    }
}

fn describe(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("killed by signal {sig} ({})", sys::signal_name(sig)),
        _ => s.to_string(),
    }
}
