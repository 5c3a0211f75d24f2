//! The serving event loop: epoll on the devnode, a stop eventfd and a
//! signalfd; requests go to [`Handler`] and a worker pool.

use std::sync::Arc;
use std::time::Duration;

use crate::devnode::Devnode;
use crate::handler::Handler;
use crate::pool::Pool;
use crate::proto;
use crate::stats;
use crate::sys::{self, Epoll, EventFd, SignalFd};

const TOKEN_DEV: u64 = 1;
const TOKEN_STOP: u64 = 2;
const TOKEN_SIGNAL: u64 = 3;

/// Messages read per wakeup before looking at signals again.
const BATCH: usize = 256;
/// The largest read buffer tried after EMSGSIZE.
const MAX_BUF: usize = 64 * 1024;
/// How long in-flight requests may take to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM/SIGINT or a stop request.
    Stopped,
    /// The kernel reported the cache dead (EIO).
    CacheDead,
    /// The devnode or epoll failed in a way that cannot be retried.
    Failed,
}

/// The event loop and its resources.
pub struct Server {
    pub dev: Arc<dyn Devnode>,
    pub handler: Arc<Handler>,
    /// Made readable to stop the loop (tests, cache death).
    pub stop: Arc<EventFd>,
    pub signals: Option<SignalFd>,
    pub threads: usize,
    /// Write `restore` before serving (a restarted worker after a crash).
    pub restore_at_start: bool,
    /// Runs after in-flight requests are finished, before the objects are
    /// closed (hot upgrade takes them here).
    pub before_shutdown: Option<Box<dyn FnOnce() + Send>>,
}

/// What to do after a devnode read error.
enum ReadErr {
    /// Per-request failure (the kernel failed that request); go on.
    Transient,
    Fatal(Exit),
}

fn classify_read_error(e: &std::io::Error) -> ReadErr {
    match e.raw_os_error() {
        Some(libc::EIO) => ReadErr::Fatal(Exit::CacheDead),
        Some(libc::EBADF) | Some(libc::EINVAL) | Some(libc::ENOTTY) | Some(libc::EOPNOTSUPP) => {
            ReadErr::Fatal(Exit::Failed)
        }
        // EEXIST (OPEN re-read after restore for a still-open object), EFAULT,
        // ENOMEM, EMFILE/ENFILE (no fd for an OPEN), ENOSPC, EAGAIN, ...
        _ => ReadErr::Transient,
    }
}

impl Server {
    /// Serves until stopped; returns why it stopped.
    pub fn run(self) -> Exit {
        let epoll = match Epoll::new() {
            Ok(e) => e,
            Err(e) => {
                error!("epoll_create: {e}");
                return Exit::Failed;
            }
        };
        let mut regs = vec![
            (self.dev.poll_fd(), TOKEN_DEV),
            (self.stop.raw_fd(), TOKEN_STOP),
        ];
        if let Some(s) = &self.signals {
            regs.push((s.raw_fd(), TOKEN_SIGNAL));
        }
        for (fd, token) in regs {
            if let Err(e) = epoll.add_readable(fd, token) {
                error!("epoll_ctl(fd {fd}): {e}");
                return Exit::Failed;
            }
        }
        let pool = match Pool::new(self.threads, "odd-worker") {
            Ok(p) => p,
            Err(e) => {
                error!("cannot start worker threads: {e}");
                return Exit::Failed;
            }
        };
        if self.restore_at_start {
            self.handler.restore("worker restarted");
        }
        info!("serving with {} worker threads", self.threads.max(1));

        let mut buf = vec![0u8; 4 * proto::MSG_MAX_SIZE];
        let mut errors_in_row = 0u32;
        let exit = 'outer: loop {
            let ready = match epoll.wait(Duration::from_secs(1)) {
                Ok(r) => r,
                Err(e) => {
                    error!("epoll_wait: {e}");
                    break Exit::Failed;
                }
            };
            if ready.is_empty() {
                self.handler.idle();
            }
            for r in ready {
                match r.token {
                    TOKEN_DEV => {
                        if let Some(exit) = self.drain_devnode(&pool, &mut buf, &mut errors_in_row)
                        {
                            break 'outer exit;
                        }
                    }
                    TOKEN_STOP => {
                        self.stop.drain();
                        break 'outer if self.handler.is_dead() {
                            Exit::CacheDead
                        } else {
                            Exit::Stopped
                        };
                    }
                    TOKEN_SIGNAL => {
                        if let Some(exit) = self.on_signals(&pool) {
                            break 'outer exit;
                        }
                    }
                    _ => {}
                }
            }
            if self.handler.is_dead() {
                break Exit::CacheDead;
            }
        };

        info!(
            "stopping ({exit:?}); waiting for {} queued requests",
            pool.backlog()
        );
        if !pool.shutdown(DRAIN_TIMEOUT) {
            warn!("some requests did not finish within {DRAIN_TIMEOUT:?}; leaving them");
        }
        if let Some(f) = self.before_shutdown {
            f();
        }
        self.handler.shutdown();
        exit
    }

    /// Reads and dispatches pending requests. `Some` ends the loop.
    fn drain_devnode(
        &self,
        pool: &Pool,
        buf: &mut Vec<u8>,
        errors_in_row: &mut u32,
    ) -> Option<Exit> {
        for _ in 0..BATCH {
            match self.dev.read_msg(buf) {
                Ok(0) => return None,
                Ok(n) => {
                    *errors_in_row = 0;
                    let msg = buf.get(..n)?;
                    if let Some(task) = self.handler.accept(msg) {
                        if self.handler.runs_inline(&task) {
                            stats::inc(&self.handler.stats().inline_runs);
                            crate::pool::run_guarded(|| self.handler.run(task));
                            continue;
                        }
                        let h = self.handler.clone();
                        if !pool.execute(move || h.run(task)) {
                            error!("worker pool is gone; request dropped");
                        }
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) && buf.len() < MAX_BUF => {
                    let new = (buf.len() * 2).min(MAX_BUF);
                    warn!(
                        "request larger than {} bytes; growing the buffer to {new}",
                        buf.len()
                    );
                    buf.resize(new, 0);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    stats::inc(&self.handler.stats().read_errors_devnode);
                    match classify_read_error(&e) {
                        ReadErr::Fatal(exit) => {
                            error!("reading the devnode failed: {e}");
                            return Some(exit);
                        }
                        ReadErr::Transient => {
                            *errors_in_row = errors_in_row.saturating_add(1);
                            warn!("reading a request failed: {e} (the kernel fails that request)");
                            if *errors_in_row > 16 {
                                // Do not spin on a persistent error.
                                let ms = u64::from(*errors_in_row).min(1000);
                                std::thread::sleep(Duration::from_millis(ms));
                            }
                            return None;
                        }
                    }
                }
            }
        }
        None
    }

    fn on_signals(&self, pool: &Pool) -> Option<Exit> {
        let signals = self.signals.as_ref()?;
        let mut exit = None;
        while let Some(sig) = signals.next() {
            match sig {
                libc::SIGTERM | libc::SIGINT => {
                    info!("{} received; stopping", sys::signal_name(sig));
                    exit = Some(Exit::Stopped);
                }
                libc::SIGUSR1 | libc::SIGHUP => self.print_stats(pool),
                _ => debug!("ignoring {}", sys::signal_name(sig)),
            }
        }
        exit
    }

    fn print_stats(&self, pool: &Pool) {
        let mut r = self.handler.stats().report(self.handler.open_objects());
        r.push_str(&format!(
            "  queue: {} requests queued or running\n",
            pool.backlog()
        ));
        eprint!("{r}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::HandlerConfig;
    use crate::mock::MockDev;
    use crate::persona::Personas;
    use crate::proto::encode;
    use crate::source::mem::{pattern, MemSource};
    use crate::source::Sources;
    use crate::stats::Stats;

    /// A handler over `dev` serving `source`, whose fatal-error callback
    /// notifies `stop`.
    fn test_handler(dev: &Arc<MockDev>, source: MemSource, stop: &Arc<EventFd>) -> Arc<Handler> {
        test_handler_inline(dev, source, stop, 0)
    }

    /// As [`test_handler`], with `inline_max` and 64 KiB read extents.
    fn test_handler_inline(
        dev: &Arc<MockDev>,
        source: MemSource,
        stop: &Arc<EventFd>,
        inline_max: u64,
    ) -> Arc<Handler> {
        let stop2 = stop.clone();
        Arc::new(Handler::new(
            dev.clone(),
            Sources::new(vec![Box::new(source)]),
            Arc::new(Stats::default()),
            Personas::new(vec![], 0, None).unwrap(),
            None,
            HandlerConfig {
                page: 4096,
                chunk: 16384,
                read_extent: if inline_max > 0 { 65536 } else { 0 },
                inline_max,
            },
            Box::new(move || stop2.notify()),
        ))
    }

    #[test]
    fn serves_concurrently_until_stopped() {
        let data = pattern(64 * 4096, 1);
        let dev = MockDev::new();
        let stop = Arc::new(EventFd::new().unwrap());
        let handler = test_handler(&dev, MemSource::default().with("img", data.clone()), &stop);
        let server = Server {
            dev: dev.clone(),
            handler: handler.clone(),
            stop: stop.clone(),
            signals: None,
            threads: 4,
            restore_at_start: true,
            before_shutdown: None,
        };
        let t = std::thread::spawn(move || server.run());
        let f = dev.push_open(1, 5, 100, "erofs,img", b"img");
        assert!(dev.wait_until(Duration::from_secs(5), || dev.commands().len() == 2));
        assert_eq!(
            dev.commands(),
            vec!["restore".to_string(), format!("copen 1,{}", data.len())]
        );
        for i in 0..64u32 {
            dev.push(encode::read(10 + i, 5, u64::from(i) * 4096, 4096));
        }
        assert!(dev.wait_until(Duration::from_secs(10), || f.completed().len() == 64));
        assert_eq!(f.bytes(0, data.len()), data);
        // A too-large message is read after the buffer grows.
        let mut p = Vec::new();
        for x in [5000u32, 1, 101, 0] {
            p.extend_from_slice(&x.to_ne_bytes());
        }
        p.extend_from_slice(&vec![b'a'; 4999]);
        p.push(0);
        p.push(b'z');
        dev.add_file(101);
        dev.push(encode::raw(80, proto::OP_OPEN, 6, &p));
        assert!(dev.wait_until(Duration::from_secs(5), || dev.commands().len() == 3));
        assert_eq!(dev.commands()[2], "copen 80,-2");

        stop.notify();
        assert_eq!(t.join().unwrap(), Exit::Stopped);
        assert!(f.closed.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(dev.pending(), 0);
    }

    #[test]
    fn small_local_work_is_served_on_the_devnode_thread() {
        // 64 KiB extents, inline up to 64 KiB: the OPENs, the READ of the
        // 40 KiB blob and those of the 256 KiB blob run on the loop's thread.
        let small = pattern(40 * 1024, 2);
        let big = pattern(256 * 1024, 3);
        let dev = MockDev::new();
        let stop = Arc::new(EventFd::new().unwrap());
        let source = MemSource {
            local: true,
            ..Default::default()
        }
        .with("s", small.clone())
        .with("b", big.clone());
        let blob_s = source.blobs["s"].clone();
        let handler = test_handler_inline(&dev, source, &stop, 65536);
        let server = Server {
            dev: dev.clone(),
            handler: handler.clone(),
            stop: stop.clone(),
            signals: None,
            threads: 2,
            restore_at_start: false,
            before_shutdown: None,
        };
        let t = std::thread::spawn(move || server.run());
        let fs = dev.push_open(1, 5, 100, "erofs,s", b"s");
        let fb = dev.push_open(2, 6, 101, "erofs,b", b"b");
        assert!(dev.wait_until(Duration::from_secs(5), || dev.commands().len() == 2));
        dev.push(encode::read(10, 5, 8192, 4096));
        for i in 0..4u32 {
            dev.push(encode::read(20 + i, 6, u64::from(i) * 65536, 4096));
        }
        assert!(dev.wait_until(Duration::from_secs(10), || {
            fs.completed().len() == 1 && fb.completed().len() == 4
        }));
        assert_eq!(fs.bytes(0, small.len()), small);
        assert_eq!(fb.bytes(0, big.len()), big);
        let inline = handler
            .stats()
            .inline_runs
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(inline, 2 + 1 + 4);
        // A panic in a request served inline fails that READ (EIO for the
        // reader) and the loop goes on serving.
        blob_s
            .panic
            .store(true, std::sync::atomic::Ordering::SeqCst);
        dev.push(encode::read(30, 5, 0, 4096));
        assert!(dev.wait_until(Duration::from_secs(5), || fs.completed().len() == 2));
        blob_s
            .panic
            .store(false, std::sync::atomic::Ordering::SeqCst);
        dev.push(encode::read(31, 5, 0, 4096));
        assert!(dev.wait_until(Duration::from_secs(5), || fs.completed().len() == 3));
        assert_eq!(fs.completed(), vec![10, 30, 31]);
        stop.notify();
        assert_eq!(t.join().unwrap(), Exit::Stopped);
    }

    #[test]
    fn cache_death_ends_the_loop() {
        let dev = MockDev::new();
        let stop = Arc::new(EventFd::new().unwrap());
        let handler = test_handler(&dev, MemSource::default(), &stop);
        *dev.fail_commands.lock().unwrap() = Some(libc::EIO);
        let server = Server {
            dev: dev.clone(),
            handler,
            stop,
            signals: None,
            threads: 1,
            restore_at_start: false,
            before_shutdown: None,
        };
        let t = std::thread::spawn(move || server.run());
        dev.push_open(1, 1, 100, "erofs,x", b"x");
        assert_eq!(t.join().unwrap(), Exit::CacheDead);
    }
}
