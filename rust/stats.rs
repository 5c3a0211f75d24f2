// SPDX-License-Identifier: GPL-2.0

//! Statistics: per cache while it is bound, summed over unbound caches.
//!
//! Each bound cache has its own counters, shown in debugfs as
//! `cachefiles_ondemand_rs/cache<N>/stats` (`N` counts binds since the module
//! was loaded) and removed at unbind, when they are added to the module's
//! totals, `cachefiles_ondemand_rs/stats`.
//!
//! Counting is off unless `cachefiles_ondemand_rs/stats_enabled` is set: a
//! request is then stamped with the clock when it is made, and only stamped
//! requests are counted, when queued and when completed, so that turning it
//! on or off with requests in flight keeps `in_flight` right. Off, the hot
//! path pays one relaxed load and a branch per request, and the daemon's
//! writes through anonymous fds go straight to cachefiles; on, it touches
//! the counters of the cache it works for: relaxed atomics, no lock, nothing
//! allocated.

use core::{
    fmt::{self, Write},
    sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed},
};
use kernel::{c_str, prelude::*, str::CString, sync::Arc, time::Ktime};

use crate::{
    abstractions::{
        completion::MARK_MAX,
        debugfs::{DataDir, DataFops, SeqFile, ShowData},
    },
    request::Opcode,
};

/// Latency buckets: bucket `i` counts round trips of `[2^(i-1), 2^i)` ns.
const BUCKETS: usize = 48;
const OPCODES: [(Opcode, &str); 3] = [
    (Opcode::Open, "open"),
    (Opcode::Close, "close"),
    (Opcode::Read, "read"),
];

/// The counters of one cache (or the totals of the unbound ones).
pub(crate) struct Stats {
    queued: [AtomicU64; 3],
    completed: [AtomicU64; 3],
    failed: AtomicU64,
    in_flight: AtomicI64,
    read_bytes: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

/// The totals of the caches unbound since the module was loaded.
static RELEASED: Stats = Stats::new();
/// How many caches were bound since the module was loaded.
static BOUND: AtomicU64 = AtomicU64::new(0);
/// How many of them were unbound.
static UNBOUND: AtomicU64 = AtomicU64::new(0);

/// Whether requests are counted (debugfs `stats_enabled`): 0, the default, or not.
pub(crate) static ENABLED: AtomicU32 = AtomicU32::new(0);

/// Returns whether requests are counted now.
pub(crate) fn counting() -> bool {
    ENABLED.load(Relaxed) != 0
}

/// A request's stamp counts the clock in units of 2^10 ns (1.024 us).
const STAMP_SHIFT: u32 = 10;

/// The monotonic clock, in stamp units, in the 30 bits a stamp keeps.
fn now_units() -> u32 {
    ((Ktime::ktime_get().to_ns() as u64 >> STAMP_SHIFT) as u32) & MARK_MAX
}

/// When a request was made, in units of 2^10 ns modulo 2^30 (so the clock
/// wraps every 2^40 ns, 18.3 minutes), if it is counted; 0 if it is not.
///
/// Thirty bits: a request keeps it in its outcome word
/// ([`Outcome`](crate::abstractions::completion::Outcome)), which has no
/// more, so that a request and its count fit in 64 bytes. A round trip is
/// then measured to within 1.024 us, and one longer than 18.3 minutes is
/// counted as its length modulo that.
#[derive(Clone, Copy)]
pub(crate) struct Stamp(u32);

impl Stamp {
    /// Stamps a request being made: with the clock if counting is on.
    pub(crate) fn new() -> Self {
        if !counting() {
            return Stamp(0);
        }
        // 0 means "not counted": a request made at 0 is stamped a unit late.
        Stamp(now_units().max(1))
    }

    /// Returns the stamp as a request's mark (30 bits).
    pub(crate) fn mark(self) -> u32 {
        self.0
    }

    /// Returns the stamp a request was marked with ([`Self::mark`]).
    pub(crate) fn from_mark(mark: u32) -> Self {
        Stamp(mark)
    }

    /// Returns whether the request is counted.
    fn counted(self) -> bool {
        self.0 != 0
    }

    /// Returns the ns since the stamp (modulo 2^40).
    fn elapsed_ns(self) -> u64 {
        u64::from(now_units().wrapping_sub(self.0) & MARK_MAX) << STAMP_SHIFT
    }
}

impl Stats {
    const fn new() -> Self {
        Self {
            queued: [const { AtomicU64::new(0) }; 3],
            completed: [const { AtomicU64::new(0) }; 3],
            failed: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            read_bytes: AtomicU64::new(0),
            latency: [const { AtomicU64::new(0) }; BUCKETS],
        }
    }

    /// A request was queued.
    pub(crate) fn request_queued(&self, op: Opcode, stamp: Stamp) {
        if !stamp.counted() {
            return;
        }
        self.queued[op as usize].fetch_add(1, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
    }

    /// A queued request was completed with `result`; `read_len` gives the
    /// bytes a READ asked for (0 for another request), asked only if the
    /// request is counted.
    ///
    /// The test in line, the counting out of line: on the hot path, with
    /// counting off, the completer keeps no value across the clock's call.
    #[inline(always)]
    pub(crate) fn request_done(
        &self,
        op: Opcode,
        result: i32,
        stamp: Stamp,
        read_len: impl FnOnce() -> u64,
    ) {
        if stamp.counted() {
            self.count_done(op, result, stamp, read_len());
        }
    }

    /// Counts a completed request made while counting was on.
    #[inline(never)]
    fn count_done(&self, op: Opcode, result: i32, stamp: Stamp, read_len: u64) {
        let elapsed = stamp.elapsed_ns();
        self.in_flight.fetch_sub(1, Relaxed);
        self.completed[op as usize].fetch_add(1, Relaxed);
        if result < 0 {
            self.failed.fetch_add(1, Relaxed);
        } else {
            self.read_bytes.fetch_add(read_len, Relaxed);
        }
        let bucket = (u64::BITS - elapsed.leading_zeros()) as usize;
        self.latency[bucket.min(BUCKETS - 1)].fetch_add(1, Relaxed);
    }

    /// Adds these counters to `into`.
    fn add_to(&self, into: &Stats) {
        // Counting was off for all this cache's life (the usual case): a
        // request is counted as queued before it is counted in any other way,
        // so there is nothing to add.
        if self.queued.iter().all(|q| q.load(Relaxed) == 0) {
            return;
        }
        let counters = self.queued.iter().zip(&into.queued);
        let counters = Iterator::chain(counters, self.completed.iter().zip(&into.completed));
        let counters = Iterator::chain(counters, self.latency.iter().zip(&into.latency));
        let counters = Iterator::chain(
            counters,
            [
                (&self.failed, &into.failed),
                (&self.read_bytes, &into.read_bytes),
            ],
        );
        for (from, to) in counters {
            to.fetch_add(from.load(Relaxed), Relaxed);
        }
        into.in_flight
            .fetch_add(self.in_flight.load(Relaxed), Relaxed);
    }

    fn write(&self, m: &mut SeqFile) -> fmt::Result {
        for (op, name) in OPCODES {
            writeln!(
                m,
                "{name}: queued {} completed {}",
                self.queued[op as usize].load(Relaxed),
                self.completed[op as usize].load(Relaxed)
            )?;
        }
        writeln!(m, "in_flight: {}", self.in_flight.load(Relaxed))?;
        writeln!(m, "failed: {}", self.failed.load(Relaxed))?;
        writeln!(m, "read_bytes: {}", self.read_bytes.load(Relaxed))?;
        writeln!(m, "latency_ns (log2 histogram, [low, high): count):")?;
        for (i, bucket) in self.latency.iter().enumerate() {
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

impl Drop for Stats {
    /// The cache is unbound and its debugfs file gone: keep its counts in
    /// the totals. (`RELEASED` is a static and never dropped.)
    fn drop(&mut self) {
        self.add_to(&RELEASED);
        UNBOUND.fetch_add(1, Relaxed);
    }
}

impl ShowData for Stats {
    fn show(&self, m: &mut SeqFile) -> fmt::Result {
        self.write(m)
    }
}

static CACHE_FOPS: DataFops<Stats> = DataFops::new(&crate::THIS_MODULE);

/// The statistics of a bound cache, with their debugfs file if debugfs works.
pub(crate) struct CacheStats {
    stats: Arc<Stats>,
    _file: Option<DataDir<Stats>>,
}

impl CacheStats {
    /// Counters for a cache being bound, shown as `cache<N>/stats`.
    pub(crate) fn new() -> Result<Self> {
        let stats = Arc::new(Stats::new(), GFP_KERNEL)?;
        // Wrapping, as the counter itself does (after 2^64 binds).
        let n = BOUND.fetch_add(1, Relaxed).wrapping_add(1);
        let file = CString::try_from_fmt(format_args!("cache{n}"))
            .ok()
            .and_then(|name| {
                DataDir::new(
                    c_str!("cachefiles_ondemand_rs"),
                    &name,
                    c_str!("stats"),
                    &CACHE_FOPS,
                    stats.clone(),
                )
            });
        Ok(Self { stats, _file: file })
    }

    pub(crate) fn get(&self) -> &Stats {
        &self.stats
    }
}

/// The module's file: totals over the unbound caches.
pub(crate) struct Totals;

impl ShowData for Totals {
    fn show(&self, m: &mut SeqFile) -> fmt::Result {
        let bound = BOUND.load(Relaxed);
        let unbound = UNBOUND.load(Relaxed);
        let enabled = ENABLED.load(Relaxed) != 0;
        writeln!(m, "caches: bound {bound} unbound {unbound}")?;
        writeln!(m, "counting: {}", if enabled { "on" } else { "off" })?;
        RELEASED.write(m)
    }
}

/// What the module's file shows.
pub(crate) static TOTALS: Totals = Totals;
/// The file operations of the module's file.
pub(crate) static TOTALS_FOPS: DataFops<Totals> = DataFops::new(&crate::THIS_MODULE);
