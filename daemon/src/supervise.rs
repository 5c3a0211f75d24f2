//! `odd supervise`: keeps the devnode open across worker crashes.
//!
//! The supervisor opens and binds `/dev/cachefiles`, then runs `odd serve
//! --fd N` as a child that inherits the descriptor. When the child dies
//! abnormally its anonymous fds are released (its objects become closed) but
//! the cache stays alive because the supervisor still holds the devnode; the
//! replacement child starts with `--restore`, which makes the kernel deliver
//! the pending requests again (READs on closed objects trigger fresh OPENs).

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::cli::SuperviseArgs;
use crate::devnode::CachefilesDev;
use crate::sys::{self, Epoll, SignalFd};
use crate::{exitcode, prepare_cache_dir, validate_serve_args};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A worker that ran this long is considered healthy: back-off resets.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// What ended a wait on the worker.
enum Event {
    Exited(ExitStatus),
    Stop,
}

struct Supervisor<'a> {
    args: &'a SuperviseArgs,
    dev: CachefilesDev,
    signals: SignalFd,
    epoll: Epoll,
    verbose: u8,
    quiet: bool,
    seed: u64,
}

/// Runs the supervisor; returns the process exit code.
pub fn run(args: &SuperviseArgs, verbose: u8, quiet: bool) -> i32 {
    let signals = match SignalFd::new(&[
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGUSR1,
        libc::SIGHUP,
        libc::SIGCHLD,
    ]) {
        Ok(s) => s,
        Err(e) => {
            error!("signalfd: {e}");
            return exitcode::FAILURE;
        }
    };
    if args.serve.fd.is_some() {
        error!("supervise opens the devnode itself; --fd is only for serve");
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
    if let Err(code) = prepare_cache_dir(dir) {
        return code;
    }
    let dev = match CachefilesDev::open(&args.serve.devnode) {
        Ok(d) => d,
        Err(e) => {
            error!("{e}");
            return exitcode::FAILURE;
        }
    };
    if let Err(e) = dev.bind(dir, args.serve.tag.as_deref()) {
        error!("{e}");
        return exitcode::FAILURE;
    }
    info!(
        "bound cache {} (tag {}); supervising workers on devnode fd {}",
        dir.display(),
        args.serve.tag.as_deref().unwrap_or("CacheFiles"),
        dev.raw_fd()
    );
    let epoll = match Epoll::new().and_then(|e| e.add_readable(signals.raw_fd(), 1).map(|_| e)) {
        Ok(e) => e,
        Err(e) => {
            error!("epoll: {e}");
            return exitcode::FAILURE;
        }
    };
    Supervisor {
        args,
        dev,
        signals,
        epoll,
        verbose,
        quiet,
        seed,
    }
    .run()
}

impl Supervisor<'_> {
    fn run(&self) -> i32 {
        let mut restarts = 0u32;
        let mut backoff = MIN_BACKOFF;
        loop {
            let started = Instant::now();
            let mut child = match self.spawn(restarts > 0) {
                Ok(c) => c,
                Err(e) => {
                    error!("cannot start the worker: {e}");
                    return exitcode::FAILURE;
                }
            };
            info!(
                "worker pid {} started{}",
                child.id(),
                if restarts > 0 { " (restore)" } else { "" }
            );
            let status = match self.wait(&mut child) {
                Event::Exited(s) => s,
                Event::Stop => return self.stop(child),
            };
            if status.success() {
                info!("worker exited cleanly; supervisor exits");
                return exitcode::OK;
            }
            match status.code() {
                Some(exitcode::CACHE_DEAD) => {
                    error!("worker reports the cache dead; not restarting");
                    return exitcode::CACHE_DEAD;
                }
                Some(exitcode::USAGE) => {
                    error!("worker rejected its arguments; not restarting");
                    return exitcode::USAGE;
                }
                _ => {}
            }
            warn!("worker pid {} died: {}", child.id(), describe(status));
            restarts += 1;
            if self.args.max_restarts > 0 && restarts > self.args.max_restarts {
                error!(
                    "worker died {restarts} times; giving up (--max-restarts {})",
                    self.args.max_restarts
                );
                return exitcode::FAILURE;
            }
            if started.elapsed() >= HEALTHY_RUN {
                backoff = MIN_BACKOFF;
            }
            info!("restarting the worker in {backoff:?} (restart {restarts})");
            if self.sleep(backoff) {
                info!("stopping");
                return exitcode::OK;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn spawn(&self, restore: bool) -> std::io::Result<Child> {
        // /proc/self/exe, or argv[0] where /proc is not mounted.
        let exe = std::env::current_exe().or_else(|e| {
            std::env::args_os()
                .next()
                .map(std::path::PathBuf::from)
                .ok_or(e)
        })?;
        let fd = self.dev.raw_fd();
        let mut cmd = Command::new(exe);
        cmd.args(self.args.serve.child_args(
            fd,
            restore,
            self.verbose,
            self.quiet,
            Some(self.seed),
        ));
        // SAFETY: the closure runs in the forked child before exec and only
        // calls fcntl(2), which is async-signal-safe; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || sys::set_cloexec(fd, false));
        }
        cmd.spawn()
    }

    /// Waits for the child to exit or a stop signal. SIGCHLD wakes the
    /// wait; a one-second tick covers coalesced signals.
    fn wait(&self, child: &mut Child) -> Event {
        loop {
            if let Some(ev) = self.poll_child(child) {
                return ev;
            }
            let _ = self.epoll.wait(Duration::from_secs(1));
            if self.handle_signals(Some(child)) {
                return Event::Stop;
            }
        }
    }

    fn poll_child(&self, child: &mut Child) -> Option<Event> {
        match child.try_wait() {
            Ok(Some(s)) => Some(Event::Exited(s)),
            Ok(None) => None,
            Err(e) => {
                error!("waitpid: {e}");
                None
            }
        }
    }

    /// Drains pending signals; true if asked to stop. USR1/HUP are forwarded.
    fn handle_signals(&self, child: Option<&Child>) -> bool {
        let mut stop = false;
        while let Some(sig) = self.signals.next() {
            match sig {
                libc::SIGTERM | libc::SIGINT => {
                    info!("{} received; stopping the worker", sys::signal_name(sig));
                    stop = true;
                }
                libc::SIGUSR1 | libc::SIGHUP => {
                    if let Some(c) = child {
                        let _ = sys::kill(c.id(), sig);
                    }
                }
                _ => {}
            }
        }
        stop
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
            if self.handle_signals(None) {
                return true;
            }
        }
    }

    /// SIGTERM to the worker, SIGKILL after the stop timeout; exit 0.
    fn stop(&self, mut child: Child) -> i32 {
        let _ = sys::kill(child.id(), libc::SIGTERM);
        let timeout = Duration::from_millis(self.args.stop_timeout_ms);
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(s)) => {
                    info!("worker stopped: {}", describe(s));
                    return exitcode::OK;
                }
                Ok(None) if Instant::now() < deadline => {
                    let _ = self.epoll.wait(Duration::from_millis(50));
                    let _ = self.handle_signals(None);
                }
                _ => {
                    warn!("worker did not stop within {timeout:?}; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    return exitcode::OK;
                }
            }
        }
    }
}

fn describe(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("killed by signal {sig} ({})", sys::signal_name(sig)),
        _ => s.to_string(),
    }
}
