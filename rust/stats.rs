// SPDX-License-Identifier: GPL-2.0

//! Statistics, shown in debugfs as `cachefiles_ondemand_rs/stats`.
//!
//! Plain atomic counters: no lock on the hot path, nothing allocated.

use core::{
    fmt::{self, Write},
    sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
};
use kernel::time::Ktime;

use crate::{
    debugfs::{SeqFile, ShowFile, ShowFops},
    request::Opcode,
};

/// Latency buckets: bucket `i` counts round trips of `[2^(i-1), 2^i)` ns.
const BUCKETS: usize = 48;
const OPCODES: [(Opcode, &str); 3] = [
    (Opcode::Open, "open"),
    (Opcode::Close, "close"),
    (Opcode::Read, "read"),
];

struct Stats {
    queued: [AtomicU64; 3],
    completed: [AtomicU64; 3],
    failed: AtomicU64,
    in_flight: AtomicI64,
    bytes_written: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

static STATS: Stats = Stats {
    queued: [const { AtomicU64::new(0) }; 3],
    completed: [const { AtomicU64::new(0) }; 3],
    failed: AtomicU64::new(0),
    in_flight: AtomicI64::new(0),
    bytes_written: AtomicU64::new(0),
    latency: [const { AtomicU64::new(0) }; BUCKETS],
};

/// The monotonic clock, in ns.
pub(crate) fn now_ns() -> i64 {
    Ktime::ktime_get().to_ns()
}

/// A request was queued.
pub(crate) fn request_queued(op: Opcode) {
    STATS.queued[op as usize].fetch_add(1, Relaxed);
    STATS.in_flight.fetch_add(1, Relaxed);
}

/// A queued request was completed with `result`.
pub(crate) fn request_done(op: Opcode, result: i32, created_ns: i64) {
    STATS.in_flight.fetch_sub(1, Relaxed);
    STATS.completed[op as usize].fetch_add(1, Relaxed);
    if result < 0 {
        STATS.failed.fetch_add(1, Relaxed);
    }
    let elapsed = now_ns().saturating_sub(created_ns).max(0) as u64;
    let bucket = (u64::BITS - elapsed.leading_zeros()) as usize;
    STATS.latency[bucket.min(BUCKETS - 1)].fetch_add(1, Relaxed);
}

/// Bytes written by the daemon through anonymous fds.
pub(crate) fn bytes_written(n: usize) {
    STATS.bytes_written.fetch_add(n as u64, Relaxed);
}

/// The debugfs file.
pub(crate) struct StatsFile;

impl ShowFile for StatsFile {
    fn show(m: &mut SeqFile) -> fmt::Result {
        for (op, name) in OPCODES {
            writeln!(
                m,
                "{name}: queued {} completed {}",
                STATS.queued[op as usize].load(Relaxed),
                STATS.completed[op as usize].load(Relaxed)
            )?;
        }
        writeln!(m, "in_flight: {}", STATS.in_flight.load(Relaxed))?;
        writeln!(m, "failed: {}", STATS.failed.load(Relaxed))?;
        writeln!(m, "bytes_written: {}", STATS.bytes_written.load(Relaxed))?;
        writeln!(m, "latency_ns (log2 histogram, [low, high): count):")?;
        for (i, bucket) in STATS.latency.iter().enumerate() {
            let count = bucket.load(Relaxed);
            if count == 0 {
                continue;
            }
            let low: u64 = if i == 0 { 0 } else { 1 << (i - 1) };
            if i == BUCKETS - 1 {
                writeln!(m, "  [{low}, inf): {count}")?;
            } else {
                writeln!(m, "  [{low}, {}): {count}", 1u64 << i)?;
            }
        }
        Ok(())
    }
}

/// The file operations of the debugfs file.
pub(crate) static STATS_FOPS: ShowFops<StatsFile> = ShowFops::new(&crate::THIS_MODULE);
