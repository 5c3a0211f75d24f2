//! Background prefetch: after a successful `copen`, the whole blob is copied
//! into the cache file in page-aligned chunks, at most `--prefetch-rate`
//! bytes per second across all blobs. Chunks the cache file already holds
//! (SEEK_DATA/SEEK_HOLE on the anonymous fd) are skipped, so a warm cache
//! costs no downloads. Prefetch of an object stops when it is closed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::copy::copy_span;
use crate::devnode::CacheFile;
use crate::objects::Object;
use crate::range::{self, Span};
use crate::stats::{self, Stats};

/// A pacing rate limiter: each reservation of `n` bytes pushes the next
/// allowed start `n / rate` seconds further; idle time is not banked.
pub struct RateLimiter {
    bytes_per_sec: u64,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// `0` means unlimited.
    pub fn new(bytes_per_sec: u64) -> RateLimiter {
        RateLimiter {
            bytes_per_sec,
            next: Mutex::new(None),
        }
    }

    /// Reserves `n` bytes at time `now`; returns how long to wait first.
    pub fn reserve(&self, n: u64, now: Instant) -> Duration {
        if self.bytes_per_sec == 0 {
            return Duration::ZERO;
        }
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let start = match *next {
            Some(t) if t > now => t,
            _ => now,
        };
        let cost = Duration::from_secs_f64(n as f64 / self.bytes_per_sec as f64);
        *next = Some(start + cost);
        start - now
    }
}

/// Whether the cache file already has data for all of `c`.
fn already_cached(file: &dyn CacheFile, c: Span) -> bool {
    matches!(file.seek_data(c.start), Ok(Some(d)) if d == c.start)
        && matches!(file.seek_hole(c.start), Ok(h) if h >= c.end)
}

/// Sleeps for `d`, waking early when `stop` is set. Returns false if stopped.
fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

struct Worker {
    limiter: RateLimiter,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    chunk: usize,
    page: u64,
}

impl Worker {
    fn run(&self, rx: Receiver<Arc<Object>>) {
        let mut storage = Vec::new();
        let buf = crate::copy::aligned(&mut storage, self.chunk);
        while let Ok(obj) = rx.recv() {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            self.prefetch(&obj, buf);
        }
    }

    fn prefetch(&self, obj: &Object, buf: &mut [u8]) {
        let started = Instant::now();
        let mut fetched = 0u64;
        // An `oci://` blob is named by its sha256: hash it on the way,
        // when every chunk comes from the source in order.
        let digest = obj.blob.sha256_digest();
        let mut hasher = digest.as_ref().map(|_| Sha256::new());
        for c in range::chunks(
            Span {
                start: 0,
                end: obj.size,
            },
            buf.len() as u64,
        ) {
            if obj.is_closed() {
                debug!(
                    "prefetch of {:?} (object {}) stopped: closed",
                    obj.blob_name, obj.id
                );
                return;
            }
            if already_cached(&*obj.file, c) {
                // The cache file cannot be read back through the anonymous
                // fd: this chunk is not hashed, so the digest is not checked.
                hasher = None;
                continue;
            }
            let wait = self.limiter.reserve(c.len(), Instant::now());
            if !sleep_unless(&self.stop, wait) {
                return;
            }
            // The digest is computed from `buf`, which a write from the
            // blob's mapping would leave unfilled.
            let mapped = hasher.is_none().then_some(&self.stats.mapped_bytes);
            match copy_span(&*obj.blob, &*obj.file, c, buf, self.page, mapped) {
                Ok(n) => {
                    fetched += n;
                    stats::add(&self.stats.prefetch_bytes, n);
                    if let Some(h) = &mut hasher {
                        let len = usize::try_from(c.len()).unwrap_or(usize::MAX);
                        match buf.get(..len) {
                            Some(data) if n == c.len() => h.update(data),
                            _ => hasher = None,
                        }
                    }
                }
                Err((n, e)) => {
                    stats::add(&self.stats.prefetch_bytes, n);
                    if !obj.is_closed() {
                        warn!(
                            "prefetch of {:?} (object {}) abandoned: {e}",
                            obj.blob_name, obj.id
                        );
                    }
                    return;
                }
            }
        }
        // The digest's verdict is counted before the blob counts as done
        // (Release below), so whoever sees prefetch_done move (Acquire) also
        // sees the verdict.
        if let (Some(want), Some(h)) = (&digest, hasher) {
            let got = format!("sha256:{:x}", h.finalize());
            if got == *want {
                stats::inc(&self.stats.digest_ok);
                debug!(
                    "{:?} (object {}): digest {want} verified",
                    obj.blob_name, obj.id
                );
            } else {
                stats::inc(&self.stats.digest_mismatch);
                error!(
                    "{:?} (object {}): DIGEST MISMATCH: the source served data hashing to {got}, \
                     not {want}; the cached copy of this blob is wrong, remove the cache",
                    obj.blob_name, obj.id
                );
            }
        } else if let Some(want) = &digest {
            debug!(
                "{:?} (object {}): digest {want} not checked (parts were cached already)",
                obj.blob_name, obj.id
            );
        }
        self.stats.prefetch_done.fetch_add(1, Ordering::Release);
        info!(
            "prefetched {:?} (object {}): {} of {} bytes fetched in {:?}",
            obj.blob_name,
            obj.id,
            fetched,
            obj.size,
            started.elapsed()
        );
    }
}

/// The prefetch thread and its queue of objects.
pub struct Prefetcher {
    tx: Mutex<Option<Sender<Arc<Object>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
}

impl Prefetcher {
    /// Starts the thread. `rate` is bytes per second (0 = unlimited); `chunk`
    /// is rounded to whole pages.
    pub fn start(
        rate: u64,
        chunk: usize,
        page: u64,
        stats: Arc<Stats>,
    ) -> std::io::Result<Prefetcher> {
        let chunk = (range::align_down(chunk as u64, page).max(page)) as usize;
        let (tx, rx) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let w = Worker {
            limiter: RateLimiter::new(rate),
            stop: stop.clone(),
            stats,
            chunk,
            page,
        };
        let thread = std::thread::Builder::new()
            .name("prefetch".into())
            .spawn(move || w.run(rx))?;
        Ok(Prefetcher {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            stop,
        })
    }

    /// Queues `obj` for prefetching.
    pub fn submit(&self, obj: Arc<Object>) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = tx.send(obj);
        }
    }

    /// Stops the thread, waiting up to `timeout` for it.
    pub fn stop(&self, timeout: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let deadline = Instant::now() + timeout;
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if t.is_finished() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_paces_reservations() {
        let l = RateLimiter::new(1000);
        let t0 = Instant::now();
        let waits: Vec<u128> = (0..5).map(|_| l.reserve(100, t0).as_millis()).collect();
        assert_eq!(waits, vec![0, 100, 200, 300, 400]);
        // Time passing pays the debt off; idle time is not banked.
        assert_eq!(l.reserve(100, t0 + Duration::from_secs(10)), Duration::ZERO);
        assert_eq!(
            l.reserve(100, t0 + Duration::from_secs(10)).as_millis(),
            100
        );
        let unlimited = RateLimiter::new(0);
        assert_eq!(unlimited.reserve(u64::MAX, t0), Duration::ZERO);
    }

    #[test]
    fn sleep_stops_early() {
        let stop = AtomicBool::new(true);
        let t = Instant::now();
        assert!(!sleep_unless(&stop, Duration::from_secs(10)));
        assert!(t.elapsed() < Duration::from_secs(1));
        let go = AtomicBool::new(false);
        assert!(sleep_unless(&go, Duration::from_millis(1)));
    }
}
