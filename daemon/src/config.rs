//! The TOML config file (`--config PATH`).
//!
//! Every key sets what the command-line option of the same name sets
//! (underscores for dashes); an option given on the command line wins. See
//! `daemon/odd.toml.example`. Unknown keys are an error, so a typo is not
//! silently ignored.

use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::ArgMatches;
use serde::Deserialize;

use crate::cli::{parse_size, ServeArgs, SuperviseArgs};
use crate::persona::Persona;

/// A size: a number of bytes or a string such as `"10M"`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(&self) -> Result<u64, String> {
        match self {
            Size::Bytes(n) => Ok(*n),
            Size::Text(s) => parse_size(s),
        }
    }
}

/// `[limits]`: cachefilesd's culling limits, in percent.
#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsCfg {
    pub brun: Option<u8>,
    pub bcull: Option<u8>,
    pub bstop: Option<u8>,
    pub frun: Option<u8>,
    pub fcull: Option<u8>,
    pub fstop: Option<u8>,
}

/// `[supervise]`: options of `odd supervise` only.
#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SuperviseCfg {
    pub max_restarts: Option<u32>,
    pub stop_timeout_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
    pub fd_holder: Option<PathBuf>,
}

/// The whole file.
#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub dir: Option<PathBuf>,
    pub tag: Option<String>,
    pub devnode: Option<PathBuf>,
    pub sources: Option<Vec<String>>,
    pub threads: Option<u16>,
    pub prefetch: Option<bool>,
    pub prefetch_rate: Option<Size>,
    pub chunk_size: Option<Size>,
    pub read_extent: Option<Size>,
    pub inline_max: Option<Size>,
    /// `false` is `--no-map`.
    pub map: Option<bool>,
    pub personas: Option<Vec<String>>,
    pub seed: Option<u64>,
    pub persona_rate: Option<f64>,
    pub restore: Option<bool>,
    pub http_timeout_ms: Option<u64>,
    pub http_retries: Option<u32>,
    pub request_deadline_ms: Option<u64>,
    pub ca_file: Option<PathBuf>,
    pub http_proxy: Option<String>,
    pub http_whole_max: Option<Size>,
    /// `oci://` sources (`--credentials`, `--oci-map`).
    pub credentials: Option<PathBuf>,
    pub oci_map: Option<PathBuf>,
    /// `false` is `--no-verify-digest`.
    pub verify_digest: Option<bool>,
    pub cull: Option<bool>,
    pub control: Option<PathBuf>,
    /// Log filter (`--log`).
    pub log: Option<String>,
    /// `-v` count (1 debug, 2 trace).
    pub verbose: Option<u8>,
    pub quiet: Option<bool>,
    #[serde(default)]
    pub limits: LimitsCfg,
    #[serde(default)]
    pub supervise: SuperviseCfg,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("config {}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| format!("config {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Fills the options of `a` that were not given on the command line
    /// (`m` are the subcommand's matches).
    pub fn apply_serve(&self, a: &mut ServeArgs, m: &ArgMatches) -> Result<(), String> {
        let unset = |id: &str| {
            !matches!(
                m.try_get_raw(id).ok().and(m.value_source(id)),
                Some(ValueSource::CommandLine)
            )
        };
        macro_rules! opt {
            ($field:ident) => {
                if unset(stringify!($field)) {
                    if let Some(v) = &self.$field {
                        a.$field = Some(v.clone());
                    }
                }
            };
        }
        macro_rules! val {
            ($field:ident) => {
                if unset(stringify!($field)) {
                    if let Some(v) = &self.$field {
                        a.$field = v.clone();
                    }
                }
            };
        }
        opt!(dir);
        opt!(tag);
        val!(devnode);
        val!(sources);
        val!(threads);
        val!(prefetch);
        val!(restore);
        val!(http_timeout_ms);
        val!(http_retries);
        val!(request_deadline_ms);
        opt!(ca_file);
        opt!(http_proxy);
        opt!(credentials);
        opt!(oci_map);
        opt!(seed);
        opt!(persona_rate);
        opt!(control);
        if unset("prefetch_rate") {
            if let Some(s) = &self.prefetch_rate {
                a.prefetch_rate = s.bytes().map_err(|e| format!("prefetch_rate: {e}"))?;
            }
        }
        if unset("http_whole_max") {
            if let Some(s) = &self.http_whole_max {
                a.http_whole_max = s.bytes().map_err(|e| format!("http_whole_max: {e}"))?;
            }
        }
        if unset("no_verify_digest") {
            if let Some(v) = self.verify_digest {
                a.no_verify_digest = !v;
            }
        }
        if unset("chunk_size") {
            if let Some(s) = &self.chunk_size {
                a.chunk_size = s.bytes().map_err(|e| format!("chunk_size: {e}"))?;
            }
        }
        if unset("read_extent") {
            if let Some(s) = &self.read_extent {
                a.read_extent = s
                    .bytes()
                    .and_then(crate::cli::check_read_extent)
                    .map_err(|e| format!("read_extent: {e}"))?;
            }
        }
        if unset("inline_max") {
            if let Some(s) = &self.inline_max {
                a.inline_max = s.bytes().map_err(|e| format!("inline_max: {e}"))?;
            }
        }
        if unset("persona") {
            if let Some(list) = &self.personas {
                a.persona = list
                    .iter()
                    .map(|s| Persona::parse_list(s))
                    .collect::<Result<_, _>>()?;
            }
        }
        if unset("no_cull") {
            if let Some(c) = self.cull {
                a.no_cull = !c;
            }
        }
        if unset("no_map") {
            if let Some(m) = self.map {
                a.no_map = !m;
            }
        }
        let l = &self.limits;
        for (id, field, v) in [
            ("brun", &mut a.brun, l.brun),
            ("bcull", &mut a.bcull, l.bcull),
            ("bstop", &mut a.bstop, l.bstop),
            ("frun", &mut a.frun, l.frun),
            ("fcull", &mut a.fcull, l.fcull),
            ("fstop", &mut a.fstop, l.fstop),
        ] {
            if unset(id) && v.is_some() {
                *field = v;
            }
        }
        Ok(())
    }

    pub fn apply_supervise(&self, a: &mut SuperviseArgs, m: &ArgMatches) -> Result<(), String> {
        self.apply_serve(&mut a.serve, m)?;
        let unset = |id: &str| {
            !matches!(
                m.try_get_raw(id).ok().and(m.value_source(id)),
                Some(ValueSource::CommandLine)
            )
        };
        let s = &self.supervise;
        if unset("max_restarts") {
            if let Some(v) = s.max_restarts {
                a.max_restarts = v;
            }
        }
        if unset("stop_timeout_ms") {
            if let Some(v) = s.stop_timeout_ms {
                a.stop_timeout_ms = v;
            }
        }
        if unset("max_backoff_ms") {
            if let Some(v) = s.max_backoff_ms {
                let range = crate::cli::MAX_BACKOFF_MS_RANGE;
                if !range.contains(&v) {
                    return Err(format!(
                        "supervise.max_backoff_ms: {v} is not in {}..={}",
                        range.start(),
                        range.end()
                    ));
                }
                a.max_backoff_ms = v;
            }
        }
        if unset("fd_holder") && s.fd_holder.is_some() {
            a.fd_holder = s.fd_holder.clone();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::{CommandFactory, FromArgMatches};
    use std::time::Duration;

    const EXAMPLE: &str = include_str!("../odd.toml.example");

    fn parse(args: &[&str], cfg: &Config) -> ServeArgs {
        let m = Cli::command().try_get_matches_from(args).unwrap();
        let cli = Cli::from_arg_matches(&m).unwrap();
        let (_, sub) = m.subcommand().unwrap();
        let Command::Serve(mut s) = cli.command else {
            panic!()
        };
        cfg.apply_serve(&mut s, sub).unwrap();
        s
    }

    #[test]
    fn example_parses() {
        let c = Config::parse(EXAMPLE).unwrap();
        assert!(c.sources.is_some());
        assert!(c.limits.bcull.is_some());
    }

    #[test]
    fn cli_overrides_config() {
        let c = Config::parse(
            r#"
            dir = "/c"
            sources = ["dir:/a"]
            threads = 9
            prefetch_rate = "2M"
            http_retries = 7
            cull = false
            [limits]
            brun = 40
            bcull = 30
            "#,
        )
        .unwrap();
        let s = parse(&["odd", "serve", "--threads", "3", "--bcull", "20"], &c);
        assert_eq!(s.dir, Some(PathBuf::from("/c")));
        assert_eq!(s.sources, vec!["dir:/a".to_string()]);
        assert_eq!(s.threads, 3);
        assert_eq!(s.prefetch_rate, 2 << 20);
        assert_eq!(s.http_retries, 7);
        assert!(s.no_cull);
        assert_eq!(s.limits().brun, 40);
        assert_eq!(s.limits().bcull, 20);
        let s = parse(&["odd", "serve", "--source", "dir:/b"], &c);
        assert_eq!(s.sources, vec!["dir:/b".to_string()]);
        assert_eq!(s.threads, 9);
    }

    /// `map = false` is `--no-map`; mapping is on by default, and the
    /// supervisor passes the choice on to its worker.
    #[test]
    fn map_key() {
        let s = parse(&["odd", "serve"], &Config::default());
        assert!(!s.no_map);
        assert!(!s
            .child_args(3, false, 0, false, None)
            .contains(&"--no-map".into()));
        let c = Config::parse("map = false").unwrap();
        let s = parse(&["odd", "serve"], &c);
        assert!(s.no_map);
        assert!(s
            .child_args(3, false, 0, false, None)
            .contains(&"--no-map".into()));
        let c = Config::parse("map = true").unwrap();
        assert!(parse(&["odd", "serve", "--no-map"], &c).no_map);
    }

    /// The remote-source options (TLS, deadlines, `oci://`) are keys too,
    /// and the command line still wins over them.
    #[test]
    fn remote_source_keys() {
        let c = Config::parse(
            r#"
            sources = ["oci://registry.example/team/app"]
            request_deadline_ms = 4500
            ca_file = "/etc/odd/ca.pem"
            http_proxy = "http://proxy:3128"
            http_whole_max = "8M"
            credentials = "/etc/odd/creds"
            oci_map = "/etc/odd/map"
            verify_digest = false
            "#,
        )
        .unwrap();
        let s = parse(&["odd", "serve"], &c);
        assert_eq!(s.request_deadline_ms, 4500);
        assert_eq!(s.ca_file, Some(PathBuf::from("/etc/odd/ca.pem")));
        assert_eq!(s.http_proxy.as_deref(), Some("http://proxy:3128"));
        assert_eq!(s.http_whole_max, 8 << 20);
        assert_eq!(s.credentials, Some(PathBuf::from("/etc/odd/creds")));
        assert_eq!(s.oci_map, Some(PathBuf::from("/etc/odd/map")));
        assert!(s.no_verify_digest);
        let h = s.http_config();
        assert_eq!(h.deadline, Duration::from_millis(4500));
        assert!(!h.verify_digest);
        let s = parse(
            &[
                "odd",
                "serve",
                "--ca-file",
                "/ca2.pem",
                "--request-deadline-ms",
                "100",
                "--http-whole-max",
                "1K",
            ],
            &c,
        );
        assert_eq!(s.ca_file, Some(PathBuf::from("/ca2.pem")));
        assert_eq!(s.request_deadline_ms, 100);
        assert_eq!(s.http_whole_max, 1024);
        assert_eq!(s.oci_map, Some(PathBuf::from("/etc/odd/map")));
        assert!(Config::parse("verify_digest = \"no\"").is_err());
    }

    /// Every visible option of `serve` and `supervise` is a key of the
    /// file (so a new option cannot be forgotten here): setting it to a
    /// value of any type is never an "unknown field" error.
    #[test]
    fn every_option_is_a_key() {
        // Options that are not about the service's configuration.
        const CLI_ONLY: &[&str] = &["help", "config", "ready_fd"];
        let cmd = Cli::command();
        for sub in ["serve", "supervise"] {
            let sub = cmd.find_subcommand(sub).unwrap();
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || CLI_ONLY.contains(&id) {
                    continue;
                }
                let key = match id {
                    "sources" => "sources".to_string(),
                    "persona" => "personas".to_string(),
                    "no_cull" => "cull".to_string(),
                    "no_map" => "map".to_string(),
                    "no_verify_digest" => "verify_digest".to_string(),
                    "brun" | "bcull" | "bstop" | "frun" | "fcull" | "fstop" => {
                        format!("limits.{id}")
                    }
                    "max_restarts" | "stop_timeout_ms" | "max_backoff_ms" | "fd_holder"
                        if sub.get_name() == "supervise" =>
                    {
                        format!("supervise.{id}")
                    }
                    _ => id.to_string(),
                };
                let err = Config::parse(&format!("{key} = {{ x = 1 }}")).unwrap_err();
                assert!(
                    !err.contains("unknown field"),
                    "--{} has no config key ({key}): {err}",
                    arg.get_long().unwrap_or(id)
                );
            }
        }
    }

    #[test]
    fn read_extent_key() {
        let c = Config::parse("read_extent = \"256K\"").unwrap();
        let s = parse(&["odd", "serve"], &c);
        assert_eq!(s.read_extent, 256 << 10);
        let s = parse(&["odd", "serve", "--read-extent", "0"], &c);
        assert_eq!(s.read_extent, 0);
        let s = parse(&["odd", "serve"], &Config::default());
        assert_eq!(s.read_extent, 1 << 20);
        let c = Config::parse("read_extent = \"3M\"").unwrap();
        let m = Cli::command()
            .try_get_matches_from(["odd", "serve"])
            .unwrap();
        let Command::Serve(mut a) = Cli::from_arg_matches(&m).unwrap().command else {
            panic!()
        };
        let (_, sub) = m.subcommand().unwrap();
        let e = c.apply_serve(&mut a, sub).unwrap_err();
        assert!(
            e.contains("read_extent") && e.contains("power of two"),
            "{e}"
        );
    }

    #[test]
    fn typos_are_errors() {
        assert!(Config::parse("thread = 3").is_err());
        assert!(Config::parse("[limits]\nbrn = 3").is_err());
        assert!(Config::parse("threads = \"x\"").is_err());
    }
}
