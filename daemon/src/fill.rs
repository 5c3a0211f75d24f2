//! Read amplification's second half: filling the rest of a READ's aligned
//! extent after the READ has been answered.
//!
//! The worker serving a READ copies the requested pages, completes the
//! READ, and then hands the rest of the extent to a [`Filler`]: a few
//! threads of their own (not the request workers, so that a fill never
//! makes a READ wait for a worker). A fill copies the part after the
//! request first, in order from the request's end, in steps of at most
//! [`STEP`] bytes, then the part before the request; a step the cache file
//! already holds (SEEK_DATA/SEEK_HOLE) is skipped, and the fill stops when
//! its object is closed or a step fails (a failure here never fails a
//! READ: the READ was answered before).
//!
//! A sequential reader's next READ usually asks for the pages just after
//! the request, which the running fill is about to write: instead of
//! copying them a second time, the READ waits for the fill's cursor to pass
//! its end ([`Filler::join`]), which takes at most about one step. A READ
//! further away, or for an extent whose fill has not started, copies its
//! own pages at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::copy::{copy_span, CopyError};
use crate::devnode::CacheFile;
use crate::objects::Object;
use crate::range::{self, Span};
use crate::stats::{self, Stats};

/// The largest piece a fill copies at once: also the longest a READ that
/// joins a fill waits for (one piece from the source into the cache file).
pub const STEP: u64 = 256 * 1024;

/// How long a READ waits for a fill at most before copying its own pages
/// (a safety net: a step of a local source takes about a millisecond).
const JOIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What is left of one READ's extent once the READ is answered.
pub struct Fill {
    obj: Arc<Object>,
    /// Filled first, in order: `[tail.start, tail.end)`, from the request's
    /// end to the extent's.
    tail: Span,
    /// Filled then: from the extent's start to the request's.
    head: Span,
    state: Mutex<FillState>,
    moved: Condvar,
}

#[derive(Default)]
struct FillState {
    /// Everything in `[tail.start, cursor)` is in the cache file.
    cursor: u64,
    running: bool,
    finished: bool,
}

impl Fill {
    /// The rest of `extent` around `want` (the pages already copied), or
    /// `None` if nothing is left.
    pub fn new(obj: Arc<Object>, extent: Span, want: Span) -> Option<Arc<Fill>> {
        let tail = Span {
            start: want.end,
            end: extent.end,
        };
        let head = Span {
            start: extent.start,
            end: want.start,
        };
        if tail.len() == 0 && head.len() == 0 {
            return None;
        }
        Some(Arc::new(Fill {
            obj,
            tail,
            head,
            state: Mutex::new(FillState {
                cursor: tail.start,
                ..Default::default()
            }),
            moved: Condvar::new(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FillState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn advance(&self, to: u64) {
        self.lock().cursor = to;
        self.moved.notify_all();
    }

    fn finish(&self) {
        let mut s = self.lock();
        s.running = false;
        s.finished = true;
        drop(s);
        self.moved.notify_all();
    }
}

/// Whether the cache file already has data for all of `c`.
pub fn already_cached(file: &dyn CacheFile, c: Span) -> bool {
    matches!(file.seek_data(c.start), Ok(Some(d)) if d == c.start)
        && matches!(file.seek_hole(c.start), Ok(h) if h >= c.end)
}

struct Worker {
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    active: Arc<Mutex<Vec<Arc<Fill>>>>,
    page: u64,
    step: usize,
}

impl Worker {
    fn run(&self, rx: &Mutex<Receiver<Arc<Fill>>>) {
        let mut storage = Vec::new();
        let buf = crate::copy::aligned(&mut storage, self.step);
        loop {
            let fill = {
                let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
                rx.recv()
            };
            let Ok(fill) = fill else { return };
            if !self.stop.load(Ordering::Relaxed) {
                // A bug in a source must not take the filler down.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.fill(&fill, buf)
                }));
                if r.is_err() {
                    error!(
                        "filling an extent of {:?} (object {}) panicked",
                        fill.obj.blob_name, fill.obj.id
                    );
                }
            }
            fill.finish();
            self.active
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|f| !Arc::ptr_eq(f, &fill));
        }
    }

    fn fill(&self, fill: &Fill, buf: &mut [u8]) {
        fill.lock().running = true;
        fill.moved.notify_all();
        for part in [fill.tail, fill.head] {
            for c in range::chunks(part, buf.len() as u64) {
                if fill.obj.is_closed() || self.stop.load(Ordering::Relaxed) {
                    return;
                }
                if !already_cached(&*fill.obj.file, c) && !self.copy(fill, c, buf) {
                    return;
                }
                if part == fill.tail {
                    fill.advance(c.end);
                }
            }
        }
    }

    /// Copies one piece; false (counted, logged) if it failed.
    fn copy(&self, fill: &Fill, c: Span, buf: &mut [u8]) -> bool {
        let obj = &fill.obj;
        let r = copy_span(&*obj.blob, &*obj.file, c, buf, self.page);
        let n = match &r {
            Ok(n) | Err((n, _)) => *n,
        };
        stats::add(&self.stats.bytes_written, n);
        self.stats.add_source_bytes(&obj.blob.describe(), n);
        match r {
            Ok(_) => true,
            Err((_, e)) => {
                // As for the amplified part of a READ: a source error is
                // counted, a failed write into the cache file is not
                // retried; the READ was answered already.
                if !matches!(e, CopyError::Write { .. }) {
                    stats::inc(&self.stats.source_errors);
                }
                if !obj.is_closed() {
                    debug!(
                        "object {} ({:?}): filling its extent stopped at [{}, {}): {e}",
                        obj.id, obj.blob_name, c.start, c.end
                    );
                }
                false
            }
        }
    }
}

/// The fill threads and their queue.
pub struct Filler {
    tx: Mutex<Option<Sender<Arc<Fill>>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
    /// Fills queued or running, for [`Filler::join`].
    active: Arc<Mutex<Vec<Arc<Fill>>>>,
}

impl Filler {
    /// Starts `n` (at least one) threads copying at most `step` bytes (at
    /// most [`STEP`], whole pages) at a time.
    pub fn start(n: usize, step: usize, page: u64, stats: Arc<Stats>) -> std::io::Result<Filler> {
        let step = range::align_down((step as u64).min(STEP), page).max(page) as usize;
        let (tx, rx) = channel();
        let rx = Arc::new(Mutex::new(rx));
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let w = Worker {
                stop: stop.clone(),
                stats: stats.clone(),
                active: active.clone(),
                page,
                step,
            };
            let rx = rx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("odd-fill-{i}"))
                    .spawn(move || w.run(&rx))?,
            );
        }
        Ok(Filler {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
            stop,
            active,
        })
    }

    /// Queues a fill.
    pub fn submit(&self, fill: Arc<Fill>) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = tx.as_ref() else { return };
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(fill.clone());
        if tx.send(fill.clone()).is_err() {
            self.active
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|f| !Arc::ptr_eq(f, &fill));
        }
    }

    /// For a READ of `want` on `obj`: if a running fill of that object is
    /// about to write `want` (its cursor is at most a step before it), waits
    /// until it has. True if `want` is then in the cache file; false if the
    /// READ must copy its pages itself.
    pub fn join(&self, obj: &Arc<Object>, want: Span) -> bool {
        let fill = {
            let active = self.active.lock().unwrap_or_else(|e| e.into_inner());
            active
                .iter()
                .find(|f| {
                    Arc::ptr_eq(&f.obj, obj) && f.tail.start <= want.start && want.end <= f.tail.end
                })
                .cloned()
        };
        let Some(fill) = fill else { return false };
        let deadline = Instant::now() + JOIN_TIMEOUT;
        let mut s = fill.lock();
        if !s.running || want.start > s.cursor.saturating_add(STEP) {
            return false;
        }
        while s.cursor < want.end && !s.finished {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = fill
                .moved
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        s.cursor >= want.end
    }

    /// Fills queued or running.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.active.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Fills running now.
    #[cfg(test)]
    pub fn running(&self) -> usize {
        let active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        active.iter().filter(|f| f.lock().running).count()
    }

    /// Stops taking fills, stops the running ones after their current step
    /// and waits up to `timeout` for the threads.
    pub fn stop(&self, timeout: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let threads: Vec<_> = self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        let deadline = Instant::now() + timeout;
        while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        for t in threads {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}
