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
mod copy;
mod devnode;
mod handler;
mod keys;
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

use std::path::Path;
use std::sync::Arc;

use clap::Parser;

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
    let cli = Cli::parse();
    log::init(log::Level::from_verbosity(cli.verbose, cli.quiet));
    let code = match &cli.command {
        Command::Serve(args) => serve(args, cli.verbose, cli.quiet),
        Command::Supervise(args) => supervise::run(args, cli.verbose, cli.quiet),
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
    let http = args.http_config();
    for spec in &args.sources {
        if let Err(e) = source::from_spec(spec, &http) {
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

/// Opens and binds the devnode, or adopts an inherited one.
fn setup_devnode(args: &ServeArgs) -> Result<CachefilesDev, i32> {
    if let Some(fd) = args.fd {
        if args.dir.is_some() || args.tag.is_some() {
            info!("--fd given: the devnode is already bound; ignoring --dir/--tag");
        }
        return CachefilesDev::from_inherited_fd(fd).map_err(|e| {
            error!("{e}");
            exitcode::FAILURE
        });
    }
    let Some(dir) = &args.dir else {
        error!("serve needs --dir (the cache directory) or --fd (an inherited devnode)");
        return Err(exitcode::USAGE);
    };
    prepare_cache_dir(dir)?;
    let dev = CachefilesDev::open(&args.devnode).map_err(|e| {
        error!("{e}");
        exitcode::FAILURE
    })?;
    dev.bind(dir, args.tag.as_deref()).map_err(|e| {
        error!("{e}");
        exitcode::FAILURE
    })?;
    info!(
        "bound cache {} (tag {}) in on-demand mode",
        dir.display(),
        args.tag.as_deref().unwrap_or("CacheFiles")
    );
    Ok(dev)
}

/// `odd serve`; returns the exit code.
fn serve(args: &ServeArgs, _verbose: u8, _quiet: bool) -> i32 {
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
        match source::from_spec(spec, &http) {
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

    let dev = match setup_devnode(args) {
        Ok(d) => d,
        Err(code) => return code,
    };
    info!(
        "odd {} serving from {}",
        env!("CARGO_PKG_VERSION"),
        sources.describe().join(", ")
    );
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
        HandlerConfig { page, chunk },
        Box::new(move || stop2.notify()),
    ));
    let server = Server {
        dev,
        handler: handler.clone(),
        stop,
        signals: Some(signals),
        threads: usize::from(args.threads),
        restore_at_start: args.restore,
    };
    let exit = server.run();
    eprint!("{}", stats.report(handler.open_objects()));
    match exit {
        Exit::Stopped => exitcode::OK,
        Exit::CacheDead => exitcode::CACHE_DEAD,
        Exit::Failed => exitcode::FAILURE,
    }
}
