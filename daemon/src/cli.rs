//! Command line interface.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::persona::Persona;
use crate::source::http::HttpConfig;

/// User-space daemon for cachefiles on-demand mode (erofs over fscache).
#[derive(Parser, Debug)]
#[command(name = "odd", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Per-module log filter, e.g. `info,odd::cull=debug` (default: $ODD_LOG).
    #[arg(long, value_name = "FILTER", global = true)]
    pub log: Option<String>,
    /// TOML config file; options given on the command line override it.
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Bind the cache and serve on-demand requests.
    Serve(ServeArgs),
    /// Bind the cache, then run `serve` as a child process and restart it
    /// (with `restore`) whenever it dies abnormally.
    Supervise(SuperviseArgs),
    /// Ask a running odd (through its control socket) to hand its devnode
    /// and objects to a fresh start of the odd binary on disk.
    Upgrade(ClientArgs),
    /// Print a running odd's metrics (Prometheus text format).
    Metrics(ClientArgs),
    /// Keep a devnode fd for a supervisor that might be killed (fd holder).
    Hold(HoldArgs),
}

/// Options of `odd upgrade` and `odd metrics`.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The running odd's control socket.
    #[arg(long, value_name = "PATH", default_value = "/run/odd/control.sock")]
    pub control: PathBuf,
    /// How long to wait for the answer.
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    pub timeout_ms: u64,
}

/// Options of `odd hold`.
#[derive(Args, Debug, Clone)]
pub struct HoldArgs {
    /// Socket on which supervisors store and fetch the devnode fd.
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
}

/// Options of `odd serve` (and, passed through, of `odd supervise`).
#[derive(Args, Debug, Clone, PartialEq)]
pub struct ServeArgs {
    /// Cache directory (on ext4/xfs, not tmpfs); created if missing.
    #[arg(long, value_name = "PATH")]
    pub dir: Option<PathBuf>,
    /// Cache tag (fscache cache name).
    #[arg(long, value_name = "NAME")]
    pub tag: Option<String>,
    /// The cachefiles device.
    #[arg(long, value_name = "PATH", default_value = "/dev/cachefiles")]
    pub devnode: PathBuf,
    /// Use an already open and bound devnode fd (failover); skips tag/bind
    /// (`--dir` still names the cache for culling).
    #[arg(long, value_name = "N", hide = true)]
    pub fd: Option<i32>,
    /// Blob source, tried in order: dir:/path or http://host:port/prefix.
    #[arg(long = "source", value_name = "SPEC")]
    pub sources: Vec<String>,
    /// Worker threads serving requests.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// Fetch each opened blob completely in the background.
    #[arg(long)]
    pub prefetch: bool,
    /// Prefetch rate limit in bytes per second (K/M/G suffixes; 0 = unlimited).
    #[arg(long, value_name = "BYTES", default_value = "0", value_parser = parse_size)]
    pub prefetch_rate: u64,
    /// Bytes copied per write to the cache file (K/M suffixes, page multiple).
    #[arg(long, value_name = "BYTES", default_value = "1M", value_parser = parse_size, hide = true)]
    pub chunk_size: u64,
    /// Read amplification: answer a READ with the aligned extents of this
    /// size around it, clipped to the blob (K/M suffixes; a power of two; 0,
    /// or a page or less, turns it off).
    #[arg(long, value_name = "BYTES", default_value = "1M", value_parser = parse_read_extent)]
    pub read_extent: u64,
    /// Serve an OPEN, or a READ copying at most this many bytes, on the
    /// thread that reads the devnode when its source is local (`dir:`),
    /// without a hand-off to a worker (K/M suffixes; 0 turns it off).
    #[arg(long, value_name = "BYTES", default_value = "128K", value_parser = parse_size)]
    pub inline_max: u64,
    /// Read `dir:` blobs into a buffer before writing them to the cache,
    /// instead of writing them from a read-only mapping of the blob file.
    #[arg(long)]
    pub no_map: bool,
    /// Test personas, comma separated: open-error, read-error, no-data,
    /// close-early, delay:MS, drop, random-restore, chaos.
    #[arg(long, value_name = "LIST", value_parser = parse_personas, action = ArgAction::Append)]
    pub persona: Vec<Vec<Persona>>,
    /// Seed for persona decisions (default: time-based, logged).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Probability (0..1) that a persona acts on a request (default 1, chaos 0.25).
    #[arg(long, value_name = "P")]
    pub persona_rate: Option<f64>,
    /// Write `restore` to the devnode before serving.
    #[arg(long)]
    pub restore: bool,
    /// Bound on one HTTP attempt (connect, TLS, redirects, whole body), ms.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub http_timeout_ms: u64,
    /// HTTP retries after the first attempt for transient failures.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub http_retries: u32,
    /// End-to-end bound on one OPEN or READ from a remote source, all
    /// attempts, retries and back-off included, ms.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub request_deadline_ms: u64,
    /// PEM CA bundle for https and oci:// (default: the system bundle).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// HTTP(S) proxy URL (default: HTTPS_PROXY/ALL_PROXY/HTTP_PROXY, NO_PROXY).
    #[arg(long, value_name = "URL")]
    pub http_proxy: Option<String>,
    /// Largest blob fetched whole from a server that ignores Range (K/M/G).
    #[arg(long, value_name = "BYTES", default_value = "64M", value_parser = parse_size)]
    pub http_whole_max: u64,
    /// oci://: file holding user:password (basic auth, token requests).
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// oci://: file of `NAME sha256:HEX` lines mapping blob names to digests.
    #[arg(long, value_name = "FILE")]
    pub oci_map: Option<PathBuf>,
    /// oci://: do not check prefetched blobs against their digest.
    #[arg(long)]
    pub no_verify_digest: bool,
    /// Culling stops when free blocks are back above this % (cachefilesd's brun).
    #[arg(long, value_name = "PCT")]
    pub brun: Option<u8>,
    /// Culling starts when free blocks fall below this %.
    #[arg(long, value_name = "PCT")]
    pub bcull: Option<u8>,
    /// The kernel stops caching when free blocks fall below this %.
    #[arg(long, value_name = "PCT")]
    pub bstop: Option<u8>,
    /// As --brun, for free files (inodes).
    #[arg(long, value_name = "PCT")]
    pub frun: Option<u8>,
    /// As --bcull, for free files.
    #[arg(long, value_name = "PCT")]
    pub fcull: Option<u8>,
    /// As --bstop, for free files.
    #[arg(long, value_name = "PCT")]
    pub fstop: Option<u8>,
    /// Do not cull (limits are still set).
    #[arg(long)]
    pub no_cull: bool,
    /// Control socket: metrics and upgrade (none by default).
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Take the devnode and objects over from the odd at this control socket.
    #[arg(long, value_name = "PATH", hide = true)]
    pub takeover: Option<PathBuf>,
    /// Write "READY\n" to this inherited fd (then close it) once serving.
    #[arg(long, value_name = "N")]
    pub ready_fd: Option<i32>,
}

/// The values `--max-backoff-ms` and `supervise.max_backoff_ms` accept.
pub const MAX_BACKOFF_MS_RANGE: std::ops::RangeInclusive<u64> = 100..=3_600_000;

/// Options of `odd supervise`.
#[derive(Args, Debug, Clone)]
pub struct SuperviseArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Give up after this many restarts (0 = never).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_restarts: u32,
    /// How long the worker gets to exit after SIGTERM before SIGKILL.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub stop_timeout_ms: u64,
    /// The longest wait before restarting a worker: the back-off starts
    /// at 100 ms and doubles after each early death, up to this.
    #[arg(long, value_name = "MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(MAX_BACKOFF_MS_RANGE))]
    pub max_backoff_ms: u64,
    /// An `odd hold` socket: the devnode fd is stored there after bind and
    /// fetched from there at start (then `restore` is written).
    #[arg(long, value_name = "PATH")]
    pub fd_holder: Option<PathBuf>,
    /// Internal (supervisor re-exec at upgrade): the bound devnode fd.
    #[arg(long, value_name = "N", hide = true, requires = "adopt_worker")]
    pub adopt_fd: Option<i32>,
    /// Internal (supervisor re-exec at upgrade): the running worker's pid.
    #[arg(long, value_name = "PID", hide = true, requires = "adopt_fd")]
    pub adopt_worker: Option<u32>,
}

/// Parses `123`, `64K`, `10M`, `1G` (binary multiples; optional `B`/`iB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 1 << 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size (e.g. 4096, 64K, 10M)"))
}

/// The largest read extent accepted.
pub const MAX_READ_EXTENT: u64 = 1 << 30;

/// Checks a read extent: 0 (off) or a power of two up to 1 GiB.
pub fn check_read_extent(n: u64) -> Result<u64, String> {
    if n == 0 || (n.is_power_of_two() && n <= MAX_READ_EXTENT) {
        Ok(n)
    } else {
        Err(format!(
            "read extent {n} must be 0 (off) or a power of two up to 1G, such as 64K or 1M"
        ))
    }
}

fn parse_read_extent(s: &str) -> Result<u64, String> {
    parse_size(s).and_then(check_read_extent)
}

fn parse_personas(s: &str) -> Result<Vec<Persona>, String> {
    Persona::parse_list(s)
}

impl ServeArgs {
    pub fn http_config(&self) -> HttpConfig {
        HttpConfig {
            timeout: Duration::from_millis(self.http_timeout_ms.max(1)),
            retries: self.http_retries,
            deadline: Duration::from_millis(self.request_deadline_ms.max(1)),
            ca_file: self.ca_file.clone(),
            proxy: self.http_proxy.clone(),
            whole_max: self.http_whole_max,
            workers: usize::from(self.threads),
            credentials: self.credentials.clone(),
            oci_map: self.oci_map.clone(),
            verify_digest: !self.no_verify_digest,
            ..HttpConfig::default()
        }
    }

    pub fn personas(&self) -> Vec<Persona> {
        self.persona.iter().flatten().cloned().collect()
    }

    /// Arguments for a `serve` child that inherits the devnode as `fd`.
    /// `seed` pins the persona seed so restarts stay reproducible (passed only
    /// when personas are active).
    pub fn child_args(
        &self,
        fd: i32,
        restore: bool,
        verbose: u8,
        quiet: bool,
        seed: Option<u64>,
    ) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["serve".into(), "--fd".into(), fd.to_string().into()];
        for _ in 0..verbose {
            a.push("-v".into());
        }
        if quiet {
            a.push("-q".into());
        }
        for s in &self.sources {
            a.push("--source".into());
            a.push(s.into());
        }
        a.push("--threads".into());
        a.push(self.threads.to_string().into());
        if self.prefetch {
            a.push("--prefetch".into());
        }
        a.push("--prefetch-rate".into());
        a.push(self.prefetch_rate.to_string().into());
        a.push("--chunk-size".into());
        a.push(self.chunk_size.to_string().into());
        a.push("--read-extent".into());
        a.push(self.read_extent.to_string().into());
        a.push("--inline-max".into());
        a.push(self.inline_max.to_string().into());
        if self.no_map {
            a.push("--no-map".into());
        }
        let personas = self.personas();
        if !personas.is_empty() {
            let list: Vec<String> = personas.iter().map(|p| p.to_string()).collect();
            a.push("--persona".into());
            a.push(list.join(",").into());
            if let Some(seed) = seed.or(self.seed) {
                a.push("--seed".into());
                a.push(seed.to_string().into());
            }
            if let Some(r) = self.persona_rate {
                a.push("--persona-rate".into());
                a.push(r.to_string().into());
            }
        }
        if restore {
            a.push("--restore".into());
        }
        a.push("--http-timeout-ms".into());
        a.push(self.http_timeout_ms.to_string().into());
        a.push("--http-retries".into());
        a.push(self.http_retries.to_string().into());
        a.push("--request-deadline-ms".into());
        a.push(self.request_deadline_ms.to_string().into());
        a.push("--http-whole-max".into());
        a.push(self.http_whole_max.to_string().into());
        for (flag, v) in [
            ("--ca-file", &self.ca_file),
            ("--credentials", &self.credentials),
            ("--oci-map", &self.oci_map),
        ] {
            if let Some(p) = v {
                a.push(flag.into());
                a.push(p.into());
            }
        }
        if let Some(p) = &self.http_proxy {
            a.push("--http-proxy".into());
            a.push(p.into());
        }
        if self.no_verify_digest {
            a.push("--no-verify-digest".into());
        }
        // The worker culls: it needs the cache directory and the limits
        // (the supervisor has set them in the kernel before bind).
        if let Some(d) = &self.dir {
            a.push("--dir".into());
            a.push(d.into());
        }
        let l = self.limits();
        for (k, v) in [
            ("--brun", l.brun),
            ("--bcull", l.bcull),
            ("--bstop", l.bstop),
            ("--frun", l.frun),
            ("--fcull", l.fcull),
            ("--fstop", l.fstop),
        ] {
            a.push(k.into());
            a.push(v.to_string().into());
        }
        if self.no_cull {
            a.push("--no-cull".into());
        }
        if let Some(c) = &self.control {
            a.push("--control".into());
            a.push(c.into());
        }
        a
    }

    /// The cache limits: cachefilesd's defaults, overridden per option.
    pub fn limits(&self) -> crate::cull::Limits {
        let d = crate::cull::Limits::default();
        crate::cull::Limits {
            brun: self.brun.unwrap_or(d.brun),
            bcull: self.bcull.unwrap_or(d.bcull),
            bstop: self.bstop.unwrap_or(d.bstop),
            frun: self.frun.unwrap_or(d.frun),
            fcull: self.fcull.unwrap_or(d.fcull),
            fstop: self.fstop.unwrap_or(d.fstop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2MB"), Ok(2 << 20));
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999999G").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn read_extents() {
        assert_eq!(parse_read_extent("1M"), Ok(1 << 20));
        assert_eq!(parse_read_extent("0"), Ok(0));
        assert_eq!(parse_read_extent("4K"), Ok(4096));
        assert_eq!(parse_read_extent("1G"), Ok(1 << 30));
        let e = parse_read_extent("3M").unwrap_err();
        assert!(e.contains("power of two"), "{e}");
        assert!(parse_read_extent("2G").is_err());
        assert!(parse_read_extent("x").is_err());
    }

    #[test]
    fn parses_serve() {
        let c = Cli::try_parse_from([
            "odd",
            "-vv",
            "serve",
            "--dir",
            "/c",
            "--tag",
            "t",
            "--source",
            "dir:/b",
            "--source",
            "http://127.0.0.1:1/p",
            "--threads",
            "8",
            "--prefetch",
            "--prefetch-rate",
            "1M",
            "--persona",
            "drop,delay:5",
            "--persona",
            "chaos",
            "--seed",
            "3",
            "--persona-rate",
            "0.5",
        ])
        .unwrap();
        assert_eq!(c.verbose, 2);
        let Command::Serve(s) = c.command else {
            panic!("not serve")
        };
        assert_eq!(s.dir, Some(PathBuf::from("/c")));
        assert_eq!(s.sources.len(), 2);
        assert_eq!(s.prefetch_rate, 1 << 20);
        assert_eq!(s.personas().len(), 3);
        assert_eq!(s.devnode, PathBuf::from("/dev/cachefiles"));
        // Sources may come from the config file: checked after merging.
        assert!(Cli::try_parse_from(["odd", "-q", "-v", "serve", "--dir", "/c"]).is_err());
        assert!(
            Cli::try_parse_from(["odd", "serve", "--source", "dir:/b", "--persona", "nope"])
                .is_err()
        );
        assert!(
            Cli::try_parse_from(["odd", "serve", "--source", "dir:/b", "--threads", "0"]).is_err()
        );
    }

    #[test]
    fn child_args_round_trip() {
        let c = Cli::try_parse_from([
            "odd",
            "supervise",
            "--dir",
            "/c",
            "--tag",
            "t",
            "--source",
            "dir:/b",
            "--prefetch",
            "--persona",
            "read-error,delay:7",
            "--persona-rate",
            "0.25",
            "--max-restarts",
            "3",
            "--http-retries",
            "1",
            "--request-deadline-ms",
            "777",
            "--ca-file",
            "/ca.pem",
            "--oci-map",
            "/m",
        ])
        .unwrap();
        let Command::Supervise(sup) = c.command else {
            panic!("not supervise")
        };
        assert_eq!(sup.max_restarts, 3);
        let mut argv: Vec<OsString> = vec!["odd".into()];
        argv.extend(sup.serve.child_args(7, true, 1, false, Some(99)));
        let c2 = Cli::try_parse_from(argv).unwrap();
        assert_eq!(c2.verbose, 1);
        let Command::Serve(s) = c2.command else {
            panic!("not serve")
        };
        assert_eq!(s.fd, Some(7));
        assert!(s.restore);
        assert_eq!(s.dir, Some(PathBuf::from("/c")));
        assert_eq!(s.seed, Some(99));
        assert_eq!(s.sources, sup.serve.sources);
        assert_eq!(s.personas(), sup.serve.personas());
        assert_eq!(s.persona_rate, Some(0.25));
        assert!(s.prefetch);
        assert_eq!(s.http_retries, 1);
        assert_eq!(s.request_deadline_ms, 777);
        assert_eq!(s.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(s.oci_map, Some(PathBuf::from("/m")));
        assert_eq!(s.credentials, None);
    }
}
