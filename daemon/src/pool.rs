//! A fixed-size pool of worker threads fed through a channel.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Worker threads running queued jobs in FIFO order.
pub struct Pool {
    tx: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    queued: Arc<AtomicUsize>,
}

impl Pool {
    /// Starts `n` (at least one) threads named `name-<i>`.
    pub fn new(n: usize, name: &str) -> std::io::Result<Pool> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let queued = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for i in 0..n.max(1) {
            let rx = rx.clone();
            let queued = queued.clone();
            let t = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || worker(&rx, &queued))?;
            workers.push(t);
        }
        Ok(Pool {
            tx: Some(tx),
            workers,
            queued,
        })
    }

    /// Queues a job; false if the pool is shutting down.
    pub fn execute(&self, job: impl FnOnce() + Send + 'static) -> bool {
        let Some(tx) = &self.tx else { return false };
        self.queued.fetch_add(1, Ordering::Relaxed);
        if tx.send(Box::new(job)).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Jobs queued or running.
    pub fn backlog(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Stops accepting jobs, lets the queued ones finish, and waits up to
    /// `timeout` for the threads. Returns false if some are still busy
    /// (they are left to die with the process).
    pub fn shutdown(mut self, timeout: Duration) -> bool {
        self.tx = None;
        let deadline = Instant::now() + timeout;
        while self.workers.iter().any(|w| !w.is_finished()) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        true
    }
}

fn worker(rx: &Mutex<Receiver<Job>>, queued: &AtomicUsize) {
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        let Ok(job) = job else { return };
        run_guarded(job);
        queued.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `job`, logging a panic instead of letting it unwind further: a bug
/// in one request must not take its thread (and the daemon) down.
pub fn run_guarded(job: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
        error!("a request handler panicked; continuing");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn runs_jobs_concurrently_and_shuts_down() {
        let pool = Pool::new(4, "t").unwrap();
        let sum = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        for i in 0..8 {
            let sum = sum.clone();
            assert!(pool.execute(move || {
                std::thread::sleep(Duration::from_millis(50));
                sum.fetch_add(i, Ordering::SeqCst);
            }));
        }
        assert!(pool.shutdown(Duration::from_secs(5)));
        assert_eq!(sum.load(Ordering::SeqCst), 28);
        // 8 jobs of 50 ms on 4 threads: about 100 ms, well under 400 ms.
        assert!(start.elapsed() < Duration::from_millis(350));
    }

    #[test]
    fn survives_a_panicking_job() {
        let pool = Pool::new(1, "p").unwrap();
        let done = Arc::new(AtomicU64::new(0));
        pool.execute(|| panic!("boom"));
        let d = done.clone();
        pool.execute(move || {
            d.store(1, Ordering::SeqCst);
        });
        assert!(pool.shutdown(Duration::from_secs(5)));
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn shutdown_times_out_on_stuck_jobs() {
        let pool = Pool::new(1, "s").unwrap();
        pool.execute(|| std::thread::sleep(Duration::from_millis(300)));
        std::thread::sleep(Duration::from_millis(20));
        assert!(!pool.shutdown(Duration::from_millis(30)));
    }
}
