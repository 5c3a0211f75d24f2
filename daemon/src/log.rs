//! Logging through the `log` facade with `env_logger` behind it.
//!
//! Lines look like `2026-12-02T06:01:02.123456Z odd[1234] WARN  handler: message`:
//! a UTC wall-clock timestamp, the pid (a supervisor's lines from its
//! worker's), the level and the module. The level comes from `-v`/`-vv`/`-q`;
//! a filter in env_logger's syntax (`--log`, the config file's `log`, or the
//! `ODD_LOG` environment variable, in that order of precedence) can set
//! levels per module, e.g. `info,odd::cull=debug,odd::source=trace`. Each
//! record is written with one `write(2)` so concurrent lines do not
//! interleave.
//!
//! The daemon's modules use the `error!` .. `trace!` macros below, which
//! forward to the `log` crate's with the caller's module path.

use std::io::Write;

/// Severity of a log record; lower is more severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Warn = 1,
    Info = 2,
    Debug = 3,
    Trace = 4,
}

impl Level {
    /// Level for a `-v` count (0 = info) and the `-q` flag (warnings only).
    /// The command line refuses `-q` together with `-v`.
    pub fn from_verbosity(verbose: u8, quiet: bool) -> Level {
        if quiet {
            return Level::Warn;
        }
        match verbose {
            0 => Level::Info,
            1 => Level::Debug,
            _ => Level::Trace,
        }
    }

    fn filter(self) -> ::log::LevelFilter {
        match self {
            Level::Warn => ::log::LevelFilter::Warn,
            Level::Info => ::log::LevelFilter::Info,
            Level::Debug => ::log::LevelFilter::Debug,
            Level::Trace => ::log::LevelFilter::Trace,
        }
    }
}

/// Builds the logger: `level` for every module, then `filter` (env_logger
/// directives) on top, which may name modules (`odd::cull=debug`).
fn builder(level: Level, filter: Option<&str>) -> env_logger::Builder {
    let mut b = env_logger::Builder::new();
    b.filter_level(level.filter());
    if let Some(f) = filter {
        b.parse_filters(f);
    }
    b.format(|buf, rec| {
        // "odd::server" -> "server"
        let module = rec.module_path().unwrap_or("odd");
        let module = module.split_once("::").map_or(module, |(_, m)| m);
        writeln!(
            buf,
            "{} odd[{}] {:<5} {}: {}",
            buf.timestamp_micros(),
            std::process::id(),
            rec.level(),
            module,
            rec.args()
        )
    });
    b
}

/// Installs the logger once. `filter` is the user's per-module filter; when
/// `None`, `ODD_LOG` from the environment is used if set.
pub fn init(level: Level, filter: Option<&str>) {
    let env = std::env::var("ODD_LOG").ok();
    let filter = filter.or(env.as_deref());
    let mut b = builder(level, filter);
    if cfg!(test) {
        b.is_test(true);
    }
    // A second init (tests) keeps the first logger.
    let _ = b.try_init();
}

/// Checks a filter string; env_logger ignores what it cannot parse, so
/// a typo is reported here instead of silently logging everything or nothing.
pub fn check_filter(f: &str) -> Result<(), String> {
    for d in f.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let lvl = d.rsplit_once('=').map_or(d, |(_, l)| l);
        let is_level = matches!(
            lvl.to_ascii_lowercase().as_str(),
            "off" | "error" | "warn" | "info" | "debug" | "trace"
        );
        if d.contains('=') && !is_level {
            return Err(format!("log filter {d:?}: {lvl:?} is not a level"));
        }
        if !d.contains('=') && !is_level && !d.starts_with("odd") {
            return Err(format!(
                "log filter {d:?}: neither a level nor a module (odd::NAME)"
            ));
        }
    }
    Ok(())
}

macro_rules! error {
    ($($arg:tt)*) => { ::log::error!($($arg)*) };
}
macro_rules! warn {
    ($($arg:tt)*) => { ::log::warn!($($arg)*) };
}
macro_rules! info {
    ($($arg:tt)*) => { ::log::info!($($arg)*) };
}
macro_rules! debug {
    ($($arg:tt)*) => { ::log::debug!($($arg)*) };
}
macro_rules! trace {
    ($($arg:tt)*) => { ::log::trace!($($arg)*) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_maps_to_levels() {
        assert_eq!(Level::from_verbosity(0, false), Level::Info);
        assert_eq!(Level::from_verbosity(1, false), Level::Debug);
        assert_eq!(Level::from_verbosity(5, false), Level::Trace);
        assert_eq!(Level::from_verbosity(0, true), Level::Warn);
        assert!(Level::Warn < Level::Trace);
    }

    #[test]
    fn filters_are_checked() {
        assert!(check_filter("info,odd::cull=debug").is_ok());
        assert!(check_filter("odd::source=trace").is_ok());
        assert!(check_filter("warn").is_ok());
        assert!(check_filter("odd::cull=loud").is_err());
        assert!(check_filter("verbose").is_err());
    }

    #[test]
    fn per_module_filter_applies() {
        let l = builder(Level::Warn, Some("odd::cull=debug")).build();
        let meta = |target: &'static str, level| {
            ::log::MetadataBuilder::new()
                .target(target)
                .level(level)
                .build()
        };
        use ::log::Log;
        assert!(l.enabled(&meta("odd::cull", ::log::Level::Debug)));
        assert!(!l.enabled(&meta("odd::server", ::log::Level::Info)));
        assert!(l.enabled(&meta("odd::server", ::log::Level::Warn)));
    }
}
