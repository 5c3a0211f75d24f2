//! The Prometheus text exposition of the daemon's counters, served on the
//! control socket (`odd metrics`, or `GET /metrics` over the socket).
//!
//! Names (all prefixed `odd_`) are documented in daemon/README.md:
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `odd_requests_total` | counter | `opcode` = open, read, close, unknown, malformed |
//! | `odd_request_duration_seconds` | histogram | `opcode` = open, read |
//! | `odd_bytes_written_total` | counter | `source` = dir, http, https, oci, other |
//! | `odd_prefetch_bytes_total` | counter | |
//! | `odd_errors_total` | counter | `kind` |
//! | `odd_requests_in_flight` | gauge | `opcode` = open, read |
//! | `odd_objects_open` | gauge | |
//! | `odd_restores_total` | counter | |
//! | `odd_requests_inline_total` | counter | |
//! | `odd_digest_checks_total` | counter | `result` = ok, mismatch (`oci://` prefetch) |
//! | `odd_cache_*` | gauges | filesystem size/free against the limits |
//! | `odd_cull_*` | counters | culling passes, objects and bytes culled |

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cull::{CullStats, Limits, Usage};
use crate::stats::{Histogram, Stats, SOURCE_KINDS};

/// What the renderer reads.
pub struct Sources<'a> {
    pub stats: &'a Stats,
    pub open_objects: usize,
    pub cull: Option<&'a CullStats>,
    pub limits: Limits,
    pub cache_dir: Option<&'a Path>,
}

fn g(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn head(s: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(s, "# HELP {name} {help}");
    let _ = writeln!(s, "# TYPE {name} {kind}");
}

fn histogram(s: &mut String, name: &str, opcode: &str, h: &Histogram) {
    let (buckets, sum_us) = h.snapshot();
    let mut cum = 0u64;
    // Bucket i counts values below 2^i µs; the last one is open-ended.
    for (i, c) in buckets.iter().enumerate().take(buckets.len() - 1) {
        cum += c;
        if !(4..=36).contains(&i) {
            // below 16 µs and above ~19 h: folded into their neighbours
            continue;
        }
        let le = (1u64 << i) as f64 / 1e6;
        let _ = writeln!(s, "{name}_bucket{{opcode=\"{opcode}\",le=\"{le}\"}} {cum}");
    }
    cum += buckets.last().copied().unwrap_or(0);
    let _ = writeln!(s, "{name}_bucket{{opcode=\"{opcode}\",le=\"+Inf\"}} {cum}");
    let _ = writeln!(
        s,
        "{name}_sum{{opcode=\"{opcode}\"}} {}",
        sum_us as f64 / 1e6
    );
    let _ = writeln!(s, "{name}_count{{opcode=\"{opcode}\"}} {cum}");
}

/// Requests read from the devnode and not answered (opens and reads).
pub fn unfinished(st: &Stats) -> u64 {
    let reads_done =
        g(&st.reads_ok) + g(&st.reads_failed) + g(&st.duplicate_reads) + g(&st.unknown_object);
    let opens_done = g(&st.copen_ok) + g(&st.copen_failed) + g(&st.copen_write_errors);
    g(&st.reads).saturating_sub(reads_done) + g(&st.opens).saturating_sub(opens_done)
}

/// Renders everything in the Prometheus text format (version 0.0.4).
pub fn render(m: &Sources<'_>) -> String {
    let st = m.stats;
    let mut s = String::new();
    head(
        &mut s,
        "odd_requests_total",
        "counter",
        "Requests read from the devnode, by opcode.",
    );
    for (op, v) in [
        ("open", g(&st.opens)),
        ("read", g(&st.reads)),
        ("close", g(&st.closes)),
        ("unknown", g(&st.unknown_opcode)),
        ("malformed", g(&st.malformed)),
    ] {
        let _ = writeln!(s, "odd_requests_total{{opcode=\"{op}\"}} {v}");
    }
    head(
        &mut s,
        "odd_request_duration_seconds",
        "histogram",
        "Time from reading a request to answering it.",
    );
    histogram(
        &mut s,
        "odd_request_duration_seconds",
        "open",
        &st.open_latency,
    );
    histogram(
        &mut s,
        "odd_request_duration_seconds",
        "read",
        &st.read_latency,
    );
    head(
        &mut s,
        "odd_bytes_written_total",
        "counter",
        "Bytes written into cache files for reads, by kind of source.",
    );
    for (i, k) in SOURCE_KINDS.iter().enumerate() {
        let _ = writeln!(
            s,
            "odd_bytes_written_total{{source=\"{k}\"}} {}",
            g(&st.source_bytes[i])
        );
    }
    head(
        &mut s,
        "odd_prefetch_bytes_total",
        "counter",
        "Bytes written into cache files by background prefetch.",
    );
    let _ = writeln!(s, "odd_prefetch_bytes_total {}", g(&st.prefetch_bytes));
    head(&mut s, "odd_errors_total", "counter", "Errors, by kind.");
    for (k, v) in [
        ("source", g(&st.source_errors)),
        ("cache_write", g(&st.write_errors)),
        ("open_failed", g(&st.copen_failed)),
        ("copen_write", g(&st.copen_write_errors)),
        ("read_failed", g(&st.reads_failed)),
        ("read_complete", g(&st.read_complete_errors)),
        ("unknown_object", g(&st.unknown_object)),
        ("devnode_read", g(&st.read_errors_devnode)),
        ("cull", m.cull.map_or(0, |c| g(&c.errors))),
    ] {
        let _ = writeln!(s, "odd_errors_total{{kind=\"{k}\"}} {v}");
    }
    head(
        &mut s,
        "odd_requests_in_flight",
        "gauge",
        "Requests read from the devnode and not answered yet.",
    );
    let reads_done =
        g(&st.reads_ok) + g(&st.reads_failed) + g(&st.duplicate_reads) + g(&st.unknown_object);
    let opens_done = g(&st.copen_ok) + g(&st.copen_failed) + g(&st.copen_write_errors);
    let _ = writeln!(
        s,
        "odd_requests_in_flight{{opcode=\"open\"}} {}",
        g(&st.opens).saturating_sub(opens_done)
    );
    let _ = writeln!(
        s,
        "odd_requests_in_flight{{opcode=\"read\"}} {}",
        g(&st.reads).saturating_sub(reads_done)
    );
    head(
        &mut s,
        "odd_objects_open",
        "gauge",
        "Cache objects the daemon holds an anonymous fd for.",
    );
    let _ = writeln!(s, "odd_objects_open {}", m.open_objects);
    head(
        &mut s,
        "odd_restores_total",
        "counter",
        "'restore' commands written.",
    );
    let _ = writeln!(s, "odd_restores_total {}", g(&st.restores));
    head(
        &mut s,
        "odd_requests_inline_total",
        "counter",
        "OPENs and READs served on the thread that reads the devnode, without a hand-off.",
    );
    let _ = writeln!(s, "odd_requests_inline_total {}", g(&st.inline_runs));
    head(
        &mut s,
        "odd_digest_checks_total",
        "counter",
        "Whole blobs checked against their sha256 digest while prefetching (oci://), by result.",
    );
    for (r, v) in [
        ("ok", g(&st.digest_ok)),
        ("mismatch", g(&st.digest_mismatch)),
    ] {
        let _ = writeln!(s, "odd_digest_checks_total{{result=\"{r}\"}} {v}");
    }
    if let Some(dir) = m.cache_dir {
        if let Ok(u) = Usage::of(dir) {
            cache_usage(&mut s, &u, &m.limits);
        }
    }
    if let Some(c) = m.cull {
        head(
            &mut s,
            "odd_cull_culling",
            "gauge",
            "1 while the kernel asks for culling (devnode polls EPOLLOUT).",
        );
        let _ = writeln!(
            s,
            "odd_cull_culling {}",
            u8::from(c.culling.load(Ordering::Relaxed))
        );
        for (name, help, v) in [
            ("odd_cull_passes_total", "Culling passes run.", g(&c.passes)),
            (
                "odd_cull_objects_total",
                "Cache files culled (least recently used first).",
                g(&c.culled),
            ),
            (
                "odd_cull_bytes_total",
                "Disk space of the culled cache files.",
                g(&c.culled_bytes),
            ),
            (
                "odd_cull_in_use_total",
                "Candidates kept because the kernel reported them in use.",
                g(&c.in_use),
            ),
        ] {
            head(&mut s, name, "counter", help);
            let _ = writeln!(s, "{name} {v}");
        }
    }
    s
}

fn cache_usage(s: &mut String, u: &Usage, l: &Limits) {
    for (name, help, v) in [
        (
            "odd_cache_bytes",
            "Size of the cache's filesystem.",
            u.blocks * u.block_size,
        ),
        (
            "odd_cache_free_bytes",
            "Free space of the cache's filesystem (available to the kernel's check).",
            u.bavail * u.block_size,
        ),
        (
            "odd_cache_files",
            "Inodes of the cache's filesystem.",
            u.files,
        ),
        ("odd_cache_free_files", "Free inodes.", u.ffree),
    ] {
        head(s, name, "gauge", help);
        let _ = writeln!(s, "{name} {v}");
    }
    head(
        s,
        "odd_cache_limit_percent",
        "gauge",
        "Cache limits (free space percentages, cachefilesd's names).",
    );
    for (k, v) in [
        ("brun", l.brun),
        ("bcull", l.bcull),
        ("bstop", l.bstop),
        ("frun", l.frun),
        ("fcull", l.fcull),
        ("fstop", l.fstop),
    ] {
        let _ = writeln!(s, "odd_cache_limit_percent{{limit=\"{k}\"}} {v}");
    }
    head(
        s,
        "odd_cache_free_percent",
        "gauge",
        "Free blocks and files in percent, to compare with the limits.",
    );
    let _ = writeln!(
        s,
        "odd_cache_free_percent{{of=\"blocks\"}} {:.2}",
        u.free_block_pct()
    );
    let _ = writeln!(
        s,
        "odd_cache_free_percent{{of=\"files\"}} {:.2}",
        u.free_file_pct()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats;
    use std::time::Duration;

    #[test]
    fn renders_counters_histograms_and_usage() {
        let st = Stats::default();
        stats::inc(&st.reads);
        stats::inc(&st.reads);
        stats::inc(&st.reads_ok);
        stats::inc(&st.opens);
        stats::inc(&st.digest_ok);
        stats::inc(&st.digest_ok);
        stats::inc(&st.digest_mismatch);
        stats::add(&st.inline_runs, 5);
        st.add_source_bytes("http://127.0.0.1:1/x", 8192);
        st.add_source_bytes("/blobs/x", 4096);
        st.read_latency.record(Duration::from_micros(300));
        st.read_latency.record(Duration::from_millis(3));
        let cull = CullStats::default();
        cull.culled.store(3, Ordering::Relaxed);
        let dir = std::env::temp_dir();
        let text = render(&Sources {
            stats: &st,
            open_objects: 2,
            cull: Some(&cull),
            limits: Limits::default(),
            cache_dir: Some(&dir),
        });
        for line in [
            "odd_requests_total{opcode=\"read\"} 2",
            "odd_requests_total{opcode=\"open\"} 1",
            "odd_bytes_written_total{source=\"http\"} 8192",
            "odd_bytes_written_total{source=\"dir\"} 4096",
            "odd_requests_in_flight{opcode=\"read\"} 1",
            "odd_requests_in_flight{opcode=\"open\"} 1",
            "odd_objects_open 2",
            "odd_request_duration_seconds_bucket{opcode=\"read\",le=\"0.000512\"} 1",
            "odd_request_duration_seconds_bucket{opcode=\"read\",le=\"0.004096\"} 2",
            "odd_request_duration_seconds_bucket{opcode=\"read\",le=\"+Inf\"} 2",
            "odd_request_duration_seconds_count{opcode=\"read\"} 2",
            "odd_cull_objects_total 3",
            "odd_digest_checks_total{result=\"ok\"} 2",
            "odd_digest_checks_total{result=\"mismatch\"} 1",
            "odd_requests_inline_total 5",
            "odd_cache_limit_percent{limit=\"bcull\"} 7",
            "# TYPE odd_request_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(text.contains("odd_cache_free_bytes "));
        // Every sample line is "name{labels} value" or "name value".
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "bad value in {l}");
        }
    }
}
