//! `odd`: user-space daemon for Linux cachefiles on-demand read mode.
//!
//! See README.md for usage. The module map:
//!
//! * [`proto`], [`keys`], [`range`]: wire format, key mapping, page arithmetic;
//! * [`devnode`]: `/dev/cachefiles` and anonymous fds behind traits;
//! * [`source`]: blob sources (directory, HTTP);
//! * [`handler`], [`copy`], [`objects`]: the request logic;
//! * [`server`], [`pool`], [`prefetch`]: the event loop and threads;
//! * [`supervise`]: the failover supervisor;
//! * [`persona`], [`stats`], [`log`]: test personas, counters, logging.

#[macro_use]
mod log;

mod cli;
mod config;
mod control;
mod copy;
mod cull;
mod devnode;
mod handler;
mod hold;
mod keys;
mod metrics;
#[cfg(test)]
mod mock;
mod objects;
mod persona;
mod pool;
mod prefetch;
mod proto;
mod range;
mod server;
mod source;
mod stats;
mod supervise;
mod sys;
mod upgrade;

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command, ServeArgs};
use crate::devnode::{CachefilesDev, Devnode};
use crate::handler::{Handler, HandlerConfig};
use crate::persona::Personas;
use crate::prefetch::Prefetcher;
use crate::server::{Exit, Server};
use crate::source::Sources;
use crate::stats::Stats;
use crate::sys::{EventFd, SignalFd};

/// Process exit codes.
pub mod exitcode {
    /// Stopped by SIGTERM/SIGINT (or the worker exited cleanly).
    pub const OK: i32 = 0;
    /// Setup or runtime failure (devnode busy or missing, bind failed, ...).
    pub const FAILURE: i32 = 1;
    /// Bad arguments (also clap's code).
    pub const USAGE: i32 = 2;
    /// The cache died (EIO from the devnode); restarting cannot help.
    pub const CACHE_DEAD: i32 = 3;
}

fn main() {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let config = match &cli.config {
        Some(p) => match config::Config::load(p) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("odd: {e}");
                std::process::exit(exitcode::USAGE);
            }
        },
        None => None,
    };
    if let (Some(c), Some((_, sub))) = (&config, matches.subcommand()) {
        let r = match &mut cli.command {
            Command::Serve(a) => c.apply_serve(a, sub),
            Command::Supervise(a) => c.apply_supervise(a, sub),
            _ => Ok(()),
        };
        if let Err(e) = r {
            eprintln!("odd: config: {e}");
            std::process::exit(exitcode::USAGE);
        }
        if cli.verbose == 0 && !cli.quiet {
            cli.verbose = c.verbose.unwrap_or(0);
            cli.quiet = c.quiet.unwrap_or(false);
        }
        if cli.log.is_none() {
            cli.log = c.log.clone();
        }
    }
    if let Some(f) = &cli.log {
        if let Err(e) = log::check_filter(f) {
            eprintln!("odd: {e}");
            std::process::exit(exitcode::USAGE);
        }
    }
    log::init(
        log::Level::from_verbosity(cli.verbose, cli.quiet),
        cli.log.as_deref(),
    );
    let code = match &cli.command {
        Command::Serve(args) => serve(args),
        Command::Supervise(args) => supervise::run(args, &cli),
        Command::Upgrade(c) => upgrade::client_upgrade(c),
        Command::Metrics(c) => upgrade::client_metrics(c),
        Command::Hold(h) => hold::run(h),
    };
    std::process::exit(code);
}

/// A seed from the clock and pid, for runs without `--seed`.
fn default_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 32)
}

/// Checks sources and personas; returns the persona seed to use.
pub(crate) fn validate_serve_args(args: &ServeArgs) -> Result<u64, i32> {
    if args.sources.is_empty() {
        error!("no blob source: give --source (or `sources` in the config file)");
        return Err(exitcode::USAGE);
    }
    if let Err(e) = args.limits().validate() {
        error!("{e}");
        return Err(exitcode::USAGE);
    }
    let http = args.http_config();
    for spec in &args.sources {
        if let Err(e) = source::from_spec(spec, &http, !args.no_map) {
            error!("--source {e}");
            return Err(exitcode::USAGE);
        }
    }
    let seed = args.seed.unwrap_or_else(default_seed);
    if let Err(e) = Personas::new(args.personas(), seed, args.persona_rate) {
        error!("{e}");
        return Err(exitcode::USAGE);
    }
    Ok(seed)
}

/// Creates the cache directory if it does not exist.
pub(crate) fn prepare_cache_dir(dir: &Path) -> Result<(), i32> {
    if dir.is_dir() {
        return Ok(());
    }
    match std::fs::create_dir_all(dir) {
        Ok(()) => {
            info!("created cache directory {}", dir.display());
            Ok(())
        }
        Err(e) => {
            error!("cannot create cache directory {}: {e}", dir.display());
            Err(exitcode::FAILURE)
        }
    }
}

/// Opens and binds the devnode (limits first), or adopts an inherited one.
fn setup_devnode(args: &ServeArgs) -> Result<CachefilesDev, i32> {
    if let Some(fd) = args.fd {
        return CachefilesDev::from_inherited_fd(fd).map_err(|e| {
            error!("{e}");
            exitcode::FAILURE
        });
    }
    let Some(dir) = &args.dir else {
        error!("serve needs --dir (the cache directory)");
        return Err(exitcode::USAGE);
    };
    open_and_bind(args, dir)
}

/// Opens the devnode, sets the cache limits and binds `dir`.
pub(crate) fn open_and_bind(args: &ServeArgs, dir: &Path) -> Result<CachefilesDev, i32> {
    prepare_cache_dir(dir)?;
    let fail = |e: devnode::SetupError| {
        error!("{e}");
        exitcode::FAILURE
    };
    let dev = CachefilesDev::open(&args.devnode).map_err(fail)?;
    dev.set_limits(&args.limits()).map_err(fail)?;
    dev.bind(dir, args.tag.as_deref()).map_err(fail)?;
    let l = args.limits();
    info!(
        "bound cache {} (tag {}) in on-demand mode; limits brun {}% bcull {}% bstop {}% frun {}% fcull {}% fstop {}%",
        dir.display(),
        args.tag.as_deref().unwrap_or("CacheFiles"),
        l.brun,
        l.bcull,
        l.bstop,
        l.frun,
        l.fcull,
        l.fstop
    );
    Ok(dev)
}

/// Tells whoever started us that we are serving: systemd (`READY=1`, when
/// not under `odd supervise`, which does it itself) and `--ready-fd`.
fn notify_ready(args: &ServeArgs) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let pid = std::process::id();
        let _ = sd_notify::notify(
            false,
            &[
                sd_notify::NotifyState::MainPid(pid),
                sd_notify::NotifyState::Ready,
            ],
        );
    }
    if let Some(fd) = args.ready_fd {
        if sys::fd_is_open(fd) {
            // SAFETY: the caller gave us this descriptor for this one write;
            // nothing else in the process uses it.
            let f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            let _ = (&f).write_all(b"READY\n");
        } else {
            warn!("--ready-fd {fd} is not open");
        }
    }
}

/// `odd serve`; returns the exit code.
fn serve(args: &ServeArgs) -> i32 {
    // Block the signals before any thread exists so all threads inherit it.
    let signals = match SignalFd::new(&[libc::SIGTERM, libc::SIGINT, libc::SIGUSR1, libc::SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            error!("signalfd: {e}");
            return exitcode::FAILURE;
        }
    };
    match sys::raise_nofile_limit() {
        Ok(n) => debug!("fd limit {n}"),
        Err(e) => warn!("cannot raise the fd limit: {e}"),
    }
    let seed = match validate_serve_args(args) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let http = args.http_config();
    let mut list = Vec::new();
    for spec in &args.sources {
        match source::from_spec(spec, &http, !args.no_map) {
            Ok(s) => list.push(s),
            Err(e) => {
                error!("--source {e}");
                return exitcode::USAGE;
            }
        }
    }
    let sources = Sources::new(list);
    let personas = match Personas::new(args.personas(), seed, args.persona_rate) {
        Ok(p) => p,
        Err(e) => {
            error!("{e}");
            return exitcode::USAGE;
        }
    };
    if !personas.is_empty() {
        warn!(
            "test personas active: {} (seed {}, rate {})",
            personas.names(),
            personas.seed(),
            personas.rate()
        );
    }

    // The devnode: taken over from a running odd, inherited, or bound here.
    let (dev, adopted, restore, mut takeover) = if let Some(sock) = &args.takeover {
        match upgrade::take_over(sock) {
            Ok(t) => (t.dev, t.objects, t.unfinished > 0, Some(t.stream)),
            Err(e) => {
                error!("takeover from {}: {e}", sock.display());
                return exitcode::FAILURE;
            }
        }
    } else {
        match setup_devnode(args) {
            Ok(d) => (d, Vec::new(), args.restore, None),
            Err(code) => return code,
        }
    };
    let objects = upgrade::rebuild_objects(adopted, &sources);
    info!(
        "odd {} serving from {}",
        env!("CARGO_PKG_VERSION"),
        sources.describe().join(", ")
    );
    let dev_raw = dev.raw_fd();
    let dev: Arc<dyn Devnode> = Arc::new(dev);
    let stats = Arc::new(Stats::default());
    let page = sys::page_size();
    let chunk = range::align_up(args.chunk_size.clamp(page, 64 << 20), page) as usize;
    let prefetch = if args.prefetch {
        match Prefetcher::start(args.prefetch_rate, chunk, page, stats.clone()) {
            Ok(p) => Some(p),
            Err(e) => {
                error!("cannot start the prefetch thread: {e}");
                return exitcode::FAILURE;
            }
        }
    } else {
        None
    };
    let stop = match EventFd::new() {
        Ok(e) => Arc::new(e),
        Err(e) => {
            error!("eventfd: {e}");
            return exitcode::FAILURE;
        }
    };
    let stop2 = stop.clone();
    let handler = Arc::new(Handler::new(
        dev.clone(),
        sources,
        stats.clone(),
        personas,
        prefetch,
        HandlerConfig {
            page,
            chunk,
            read_extent: args.read_extent,
            inline_max: args.inline_max,
        },
        Box::new(move || stop2.notify()),
    ));
    let n_adopted = objects.len();
    for o in objects {
        handler.adopt_object(o);
    }
    if n_adopted > 0 {
        info!("took over {n_adopted} open objects");
    }

    // Culling, in the process that serves (it knows what is in use).
    let limits = args.limits();
    let cull_stats = Arc::new(cull::CullStats::default());
    let culler = match (&args.dir, args.no_cull) {
        (Some(dir), false) => {
            match cull::CullThread::start(dev.clone(), dir.clone(), limits, cull_stats.clone()) {
                Ok(t) => Some(t),
                Err(e) => {
                    error!("cannot start the culling thread: {e}");
                    return exitcode::FAILURE;
                }
            }
        }
        (None, false) => {
            warn!("no --dir: culling disabled (the cache can fill its disk)");
            None
        }
        _ => None,
    };

    // The control socket: metrics, upgrade, takeover.
    let parked = Arc::new(std::sync::Mutex::new(None));
    let control = match &args.control {
        Some(path) => {
            let listener = match control::bind(path, takeover.is_some()) {
                Ok(l) => l,
                Err(e) => {
                    error!("control socket {}: {e}", path.display());
                    return exitcode::FAILURE;
                }
            };
            let (st, h, cs, dir) = (
                stats.clone(),
                handler.clone(),
                cull_stats.clone(),
                args.dir.clone(),
            );
            let culling = culler.is_some();
            let handlers = control::Handlers {
                metrics: Box::new(move || {
                    metrics::render(&metrics::Sources {
                        stats: &st,
                        open_objects: h.open_objects(),
                        cull: culling.then_some(&*cs),
                        limits,
                        cache_dir: dir.as_deref(),
                    })
                }),
                upgrade: Box::new(upgrade::start_upgrade_fn(path.clone())),
                takeover: parked.clone(),
                stop: stop.clone(),
            };
            match control::Control::start(path, listener, handlers) {
                Ok(c) => {
                    info!("control socket {}", path.display());
                    Some(c)
                }
                Err(e) => {
                    error!("control socket: {e}");
                    return exitcode::FAILURE;
                }
            }
        }
        None => None,
    };
    if let Some(s) = takeover.take() {
        // The old odd exits when it reads this; the devnode stays open here.
        if let Err(e) = (&s).write_all(b"ok\n") {
            warn!("telling the old odd that we took over: {e}");
        }
    }
    notify_ready(args);

    let snapshot = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (snap2, h2, parked2) = (snapshot.clone(), handler.clone(), parked.clone());
    let server = Server {
        dev,
        handler: handler.clone(),
        stop,
        signals: Some(signals),
        threads: usize::from(args.threads),
        restore_at_start: restore,
        before_shutdown: Some(Box::new(move || {
            if parked2.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
                *snap2.lock().unwrap_or_else(|e| e.into_inner()) = h2.objects_snapshot();
            }
        })),
    };
    let exit = server.run();
    if let Some(c) = culler {
        c.stop();
    }
    let handed = parked.lock().unwrap_or_else(|e| e.into_inner()).take();
    let mut code = match exit {
        Exit::Stopped => exitcode::OK,
        Exit::CacheDead => exitcode::CACHE_DEAD,
        Exit::Failed => exitcode::FAILURE,
    };
    let mut unlink = true;
    if let (Some(stream), Exit::Stopped) = (handed, exit) {
        let objs = std::mem::take(&mut *snapshot.lock().unwrap_or_else(|e| e.into_inner()));
        let unfinished = metrics::unfinished(&stats);
        match upgrade::hand_over(&stream, dev_raw, &objs, unfinished) {
            Ok(pid) => {
                info!(
                    "handed the devnode and {} objects to pid {pid}; exiting",
                    objs.len()
                );
                unlink = false;
            }
            Err(e) => {
                error!("hand-over failed: {e}; the cache goes down with this process");
                code = exitcode::FAILURE;
            }
        }
    }
    if let Some(c) = control {
        c.stop(unlink);
    }
    eprint!("{}", stats.report(handler.open_objects()));
    code
}
