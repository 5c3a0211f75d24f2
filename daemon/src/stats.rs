//! Counters and latency histograms, printed on SIGUSR1 and at exit.
//!
//! Everything is a relaxed atomic: the numbers are for people, not for
//! synchronisation.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BUCKETS: usize = 40;

/// A log2 histogram of microseconds: bucket `i` counts values in
/// `[2^(i-1), 2^i)` (bucket 0 counts 0 µs), the last bucket everything above.
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let idx = ((64 - us.leading_zeros()) as usize).min(BUCKETS - 1);
        self.buckets[idx].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Upper bound (µs) of the bucket holding the `p`-th percentile (0..=100).
    pub fn percentile(&self, p: f64) -> u64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let bound = if i == 0 { 0 } else { (1u64 << i.min(63)) - 1 };
                return bound.min(self.max_us.load(Ordering::Relaxed));
            }
        }
        self.max_us.load(Ordering::Relaxed)
    }

    fn summary(&self) -> String {
        let n = self.count();
        if n == 0 {
            return "n=0".into();
        }
        format!(
            "n={} avg={}us p50<={}us p90<={}us p99<={}us max={}us",
            n,
            self.sum_us.load(Ordering::Relaxed) / n,
            self.percentile(50.0),
            self.percentile(90.0),
            self.percentile(99.0),
            self.max_us.load(Ordering::Relaxed)
        )
    }

    /// Per-bucket counts and the sum in µs, for the metrics endpoint.
    /// Bucket `i` holds values below `2^i` µs (and at least `2^(i-1)`).
    pub fn snapshot(&self) -> (Vec<u64>, u64) {
        (
            self.buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            self.sum_us.load(Ordering::Relaxed),
        )
    }

    /// Non-empty buckets as `[lo,hi)us:count`.
    fn buckets_line(&self) -> String {
        let mut s = String::new();
        for (i, b) in self.buckets.iter().enumerate() {
            let c = b.load(Ordering::Relaxed);
            if c == 0 {
                continue;
            }
            let lo = if i == 0 { 0 } else { 1u64 << (i - 1) };
            let _ = write!(s, " <{}us:{}", if i == 0 { 1 } else { lo * 2 }, c);
        }
        s
    }
}

/// Everything the daemon counts.
#[derive(Default)]
pub struct Stats {
    pub msgs: AtomicU64,
    pub opens: AtomicU64,
    pub closes: AtomicU64,
    pub reads: AtomicU64,
    pub unknown_opcode: AtomicU64,
    pub malformed: AtomicU64,
    pub read_errors_devnode: AtomicU64,
    pub copen_ok: AtomicU64,
    pub copen_failed: AtomicU64,
    pub copen_write_errors: AtomicU64,
    pub reads_ok: AtomicU64,
    /// READs completed without (all) their data.
    pub reads_failed: AtomicU64,
    pub read_complete_errors: AtomicU64,
    pub duplicate_reads: AtomicU64,
    /// Requests served on the devnode thread, without a hand-off.
    pub inline_runs: AtomicU64,
    pub unknown_object: AtomicU64,
    pub source_errors: AtomicU64,
    pub write_errors: AtomicU64,
    pub bytes_written: AtomicU64,
    /// Bytes written to cache files from a mapped blob, without a copy
    /// (READs and prefetch).
    pub mapped_bytes: AtomicU64,
    pub prefetch_bytes: AtomicU64,
    pub prefetch_done: AtomicU64,
    pub restores: AtomicU64,
    pub persona_actions: AtomicU64,
    /// Prefetched `oci://` blobs whose sha256 matched / did not match.
    pub digest_ok: AtomicU64,
    pub digest_mismatch: AtomicU64,
    pub read_latency: Histogram,
    pub open_latency: Histogram,
    /// Bytes written into cache files, by the kind of source they came from
    /// (indexed like [`SOURCE_KINDS`]).
    pub source_bytes: [AtomicU64; SOURCE_KINDS.len()],
}

/// Source kinds that bytes are counted by.
pub const SOURCE_KINDS: [&str; 5] = ["dir", "http", "https", "oci", "other"];

/// The source kind of a blob, from its description (`/path`, `http://...`).
pub fn source_kind(describe: &str) -> usize {
    let kind = if describe.starts_with('/') || describe.starts_with("dir:") {
        "dir"
    } else if describe.starts_with("https:") {
        "https"
    } else if describe.starts_with("http:") {
        "http"
    } else if describe.starts_with("oci") {
        "oci"
    } else {
        "other"
    };
    SOURCE_KINDS.iter().position(|k| *k == kind).unwrap_or(4)
}

/// Increments a counter by one.
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Stats {
    /// Counts `n` bytes written from a blob described as `describe`.
    pub fn add_source_bytes(&self, describe: &str, n: u64) {
        add(&self.source_bytes[source_kind(describe)], n);
    }

    /// A multi-line report for stderr.
    pub fn report(&self, open_objects: usize) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut s = String::new();
        let _ = writeln!(s, "odd[{}] statistics:", std::process::id());
        let _ = writeln!(
            s,
            "  requests: total={} open={} close={} read={} unknown-opcode={} malformed={} devnode-read-errors={} inline={}",
            g(&self.msgs),
            g(&self.opens),
            g(&self.closes),
            g(&self.reads),
            g(&self.unknown_opcode),
            g(&self.malformed),
            g(&self.read_errors_devnode),
            g(&self.inline_runs)
        );
        let _ = writeln!(
            s,
            "  opens: ok={} failed={} copen-write-errors={} objects-open={}",
            g(&self.copen_ok),
            g(&self.copen_failed),
            g(&self.copen_write_errors),
            open_objects
        );
        let _ = writeln!(
            s,
            "  reads: ok={} failed={} duplicate={} unknown-object={} complete-ioctl-errors={}",
            g(&self.reads_ok),
            g(&self.reads_failed),
            g(&self.duplicate_reads),
            g(&self.unknown_object),
            g(&self.read_complete_errors)
        );
        let _ = writeln!(
            s,
            "  data: bytes-written={} mapped-bytes={} source-errors={} write-errors={} prefetch-bytes={} prefetch-done={}",
            g(&self.bytes_written),
            g(&self.mapped_bytes),
            g(&self.source_errors),
            g(&self.write_errors),
            g(&self.prefetch_bytes),
            g(&self.prefetch_done)
        );
        let _ = writeln!(
            s,
            "  misc: restores={} persona-actions={} digest-ok={} digest-mismatch={}",
            g(&self.restores),
            g(&self.persona_actions),
            g(&self.digest_ok),
            g(&self.digest_mismatch)
        );
        let _ = writeln!(s, "  read latency: {}", self.read_latency.summary());
        let _ = writeln!(s, "    buckets:{}", self.read_latency.buckets_line());
        let _ = writeln!(s, "  open latency: {}", self.open_latency.summary());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_percentiles() {
        let h = Histogram::default();
        assert_eq!(h.percentile(50.0), 0);
        for _ in 0..90 {
            h.record(Duration::from_micros(100)); // bucket [64,128)
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(10)); // bucket [8192,16384)
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.percentile(50.0), 127);
        assert_eq!(h.percentile(90.0), 127);
        assert_eq!(h.percentile(99.0), 10_000); // capped at the max seen
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(1 << 40));
        assert!(h.summary().contains("n=102"));
    }

    #[test]
    fn report_mentions_everything() {
        let s = Stats::default();
        inc(&s.reads);
        add(&s.bytes_written, 4096);
        s.read_latency.record(Duration::from_micros(5));
        let r = s.report(3);
        for word in [
            "read=1",
            "bytes-written=4096",
            "objects-open=3",
            "p99",
            "<8us:1",
        ] {
            assert!(r.contains(word), "{word} missing in {r}");
        }
    }
}
