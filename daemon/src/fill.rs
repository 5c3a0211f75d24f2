//! Read amplification's second half: filling the rest of a READ's aligned
//! extent after the READ has been answered.
//!
//! The worker serving a READ copies the requested pages, completes the
//! READ, and then hands the rest of the extent to a [`Filler`]: a few
//! threads of their own (not the request workers, so that a fill never
//! makes a READ wait for a worker). A fill copies the part after the
//! request first, in order from the request's end, in steps of at most
//! [`STEP`] bytes, then the part before the request; pages the cache file
//! already holds (SEEK_DATA/SEEK_HOLE) are not copied again, and the fill stops when
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

/// The parts of `c` (page-aligned start) the cache file does not hold yet,
/// as page-aligned spans (a page only partly held is in them: its held
/// bytes are written again, with the same data): a READ may have written
/// pages inside a fill's step, which the fill does not copy again. If the
/// file cannot say, all of `c`.
fn holes(file: &dyn CacheFile, c: Span, page: u64) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    let mut push = |s: Span| match out.last_mut() {
        Some(last) if last.end >= s.start => last.end = last.end.max(s.end),
        _ => out.push(s),
    };
    let mut pos = c.start;
    while pos < c.end {
        let data = match file.seek_data(pos) {
            Ok(Some(d)) => d.max(pos),
            Ok(None) => c.end,
            Err(_) => c.end,
        };
        let hole_end = range::align_up(data, page).min(c.end);
        if hole_end > pos {
            push(Span {
                start: pos,
                end: hole_end,
            });
        }
        if hole_end >= c.end {
            break;
        }
        let held_end = match file.seek_hole(hole_end) {
            Ok(h) => range::align_down(h, page).min(c.end),
            Err(_) => hole_end,
        };
        if held_end > hole_end {
            pos = held_end;
        } else {
            // Less than a page held there (or no answer): copy that page.
            let end = hole_end.saturating_add(page).min(c.end);
            push(Span {
                start: hole_end,
                end,
            });
            pos = end;
        }
    }
    out
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
                for hole in holes(&*fill.obj.file, c, self.page) {
                    if !self.copy(fill, hole, buf) {
                        return;
                    }
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

    /// Whether a fill of `obj` queued or running already covers `extent`
    /// (a second READ in an extent whose fill has not finished).
    pub fn covers(&self, obj: &Arc<Object>, extent: Span) -> bool {
        let active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        active.iter().any(|f| {
            Arc::ptr_eq(&f.obj, obj) && f.head.start <= extent.start && extent.end <= f.tail.end
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devnode::Devnode;
    use crate::mock::MockDev;

    const P: u64 = 4096;

    fn file_with(writes: &[(u64, usize)]) -> Box<dyn CacheFile> {
        let dev = MockDev::new();
        dev.add_file(7);
        let f = dev.adopt_anon_fd(7).unwrap();
        for &(off, n) in writes {
            f.write_at(&vec![1u8; n], off).unwrap();
        }
        f
    }

    fn sp(start: u64, end: u64) -> Span {
        Span { start, end }
    }

    #[test]
    fn holes_skip_what_is_held() {
        let c = sp(0, 16 * P);
        // Nothing held: all of it.
        assert_eq!(holes(&*file_with(&[]), c, P), vec![c]);
        // All held: nothing.
        assert_eq!(holes(&*file_with(&[(0, 16 * P as usize)]), c, P), vec![]);
        // A READ's window in the middle.
        let f = file_with(&[(4 * P, 2 * P as usize)]);
        assert_eq!(holes(&*f, c, P), vec![sp(0, 4 * P), sp(6 * P, 16 * P)]);
        // Held at the start, and past the end of the span.
        let f = file_with(&[(0, 2 * P as usize), (15 * P, 4 * P as usize)]);
        assert_eq!(holes(&*f, c, P), vec![sp(2 * P, 15 * P)]);
        // Less than a page held: that page is copied whole.
        let f = file_with(&[(4 * P, 100)]);
        assert_eq!(holes(&*f, c, P), vec![c]);
        // A span ending on a partial page (the blob's end).
        let f = file_with(&[(0, P as usize)]);
        assert_eq!(holes(&*f, sp(0, 2 * P + 10), P), vec![sp(P, 2 * P + 10)]);
    }
}
