//! Minimal levelled logger writing one line per record to stderr.
//!
//! Lines look like `[   12.345678] odd[1234] WARN  handler: message`: the
//! timestamp is monotonic seconds since the process started (like dmesg), and
//! the pid tells a supervisor's lines from its worker's. Each record is emitted
//! with a single `write(2)` so lines from concurrent threads do not interleave.

use std::fmt;
#[cfg(not(test))]
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Severity of a log record; lower is more severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
    Trace = 4,
}

impl Level {
    /// Level for a `-v` count (0 = info) and the `-q` flag (warnings only).
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

    fn label(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static START: OnceLock<Instant> = OnceLock::new();

/// Sets the most verbose level that is printed and starts the clock.
pub fn init(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
    START.get_or_init(Instant::now);
}

/// Whether records of `level` are printed.
pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Formats and writes one record. Use the `error!` .. `trace!` macros.
pub fn emit(level: Level, module: &str, args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let t = START.get_or_init(Instant::now).elapsed();
    // "odd::server" -> "server"
    let module = module.split_once("::").map_or(module, |(_, m)| m);
    let line = format!(
        "[{:>5}.{:06}] odd[{}] {:<5} {}: {}\n",
        t.as_secs(),
        t.subsec_micros(),
        std::process::id(),
        level.label(),
        module,
        args
    );
    // Logging must never take the daemon down: ignore a closed stderr.
    #[cfg(not(test))]
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    // Under `cargo test`, go through the harness's output capture.
    #[cfg(test)]
    eprint!("{line}");
}

macro_rules! error {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Error, module_path!(), format_args!($($arg)*)) };
}
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Warn, module_path!(), format_args!($($arg)*)) };
}
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Info, module_path!(), format_args!($($arg)*)) };
}
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Debug, module_path!(), format_args!($($arg)*)) };
}
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Trace, module_path!(), format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_maps_to_levels() {
        assert_eq!(Level::from_verbosity(0, false), Level::Info);
        assert_eq!(Level::from_verbosity(1, false), Level::Debug);
        assert_eq!(Level::from_verbosity(5, false), Level::Trace);
        assert_eq!(Level::from_verbosity(3, true), Level::Warn);
        assert!(Level::Error < Level::Trace);
    }
}
