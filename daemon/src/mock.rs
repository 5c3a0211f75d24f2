//! A fake devnode and fake anonymous fds for tests, emulating the kernel
//! rules the daemon depends on: page-aligned writes (else ENOBUFS), READ
//! completion once per id (else EINVAL), 0 from read() when idle, EMSGSIZE
//! for a short buffer, and a pollable fd that is readable while requests
//! are queued.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::devnode::{CacheFile, Devnode};
use crate::proto::encode;
use crate::sys::{EventFd, Mapped};

/// State of one fake anonymous fd, shared with the test.
#[derive(Default)]
pub struct MockFile {
    pub data: Mutex<Vec<u8>>,
    /// Byte ranges written, in order.
    pub writes: Mutex<Vec<(u64, usize)>>,
    pub completed: Mutex<Vec<u32>>,
    pub closed: AtomicBool,
    /// Largest write accepted at once (short writes); 0 = unlimited.
    pub max_write: AtomicUsize,
    pub fail_writes: AtomicBool,
    /// Writes made from a mapped blob ([`CacheFile::write_mapped`]).
    pub mapped_writes: AtomicUsize,
    /// Called after a successful READ_COMPLETE, as the kernel would then
    /// be free to reuse the msg_id.
    #[allow(clippy::type_complexity)]
    pub on_complete: Mutex<Option<Box<dyn Fn(u32) + Send>>>,
}

impl MockFile {
    pub fn bytes(&self, off: usize, len: usize) -> Vec<u8> {
        let d = self.data.lock().unwrap();
        d.get(off..(off + len).min(d.len())).unwrap_or(&[]).to_vec()
    }

    pub fn completed(&self) -> Vec<u32> {
        self.completed.lock().unwrap().clone()
    }

    pub fn written_bytes(&self) -> usize {
        self.writes.lock().unwrap().iter().map(|w| w.1).sum()
    }

    fn present(&self, off: u64) -> bool {
        self.writes
            .lock()
            .unwrap()
            .iter()
            .any(|&(s, n)| off >= s && off < s + n as u64)
    }
}

struct Handle(Arc<MockFile>, u32);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::SeqCst);
    }
}

impl CacheFile for Handle {
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<usize> {
        if off % 4096 != 0 || self.0.fail_writes.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::ENOBUFS));
        }
        let max = self.0.max_write.load(Ordering::SeqCst);
        let n = if max == 0 {
            buf.len()
        } else {
            buf.len().min(max)
        };
        let mut d = self.0.data.lock().unwrap();
        let end = off as usize + n;
        if d.len() < end {
            d.resize(end, 0);
        }
        d[off as usize..end].copy_from_slice(&buf[..n]);
        self.0.writes.lock().unwrap().push((off, n));
        Ok(n)
    }

    fn write_mapped(&self, map: &Mapped, off: u64, len: usize) -> io::Result<usize> {
        self.0.mapped_writes.fetch_add(1, Ordering::SeqCst);
        self.write_at(&map.to_vec(off, len)?, off)
    }

    fn read_complete(&self, msg_id: u32) -> io::Result<()> {
        let mut c = self.0.completed.lock().unwrap();
        if c.contains(&msg_id) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        c.push(msg_id);
        drop(c);
        if let Some(hook) = &*self.0.on_complete.lock().unwrap() {
            hook(msg_id);
        }
        Ok(())
    }

    fn seek_data(&self, off: u64) -> io::Result<Option<u64>> {
        let len = self.0.data.lock().unwrap().len() as u64;
        Ok((off..len).find(|&o| self.0.present(o)))
    }

    fn seek_hole(&self, off: u64) -> io::Result<u64> {
        let len = self.0.data.lock().unwrap().len() as u64;
        Ok((off..len)
            .find(|&o| !self.0.present(o))
            .unwrap_or(len.max(off)))
    }

    fn describe(&self) -> String {
        format!("mock fd {}", self.1)
    }
}

/// The fake `/dev/cachefiles`.
pub struct MockDev {
    queue: Mutex<VecDeque<Vec<u8>>>,
    ready: EventFd,
    pub commands: Mutex<Vec<String>>,
    files: Mutex<HashMap<u32, Arc<MockFile>>>,
    adopted: Mutex<Vec<u32>>,
    /// errno returned by every command write, if set.
    pub fail_commands: Mutex<Option<i32>>,
    /// Called once, with the next command written: what the kernel or
    /// another thread does meanwhile, before the writer returns.
    pub on_command: Mutex<Option<CommandHook>>,
}

/// A [`MockDev::on_command`] hook.
pub type CommandHook = Box<dyn FnOnce(&str) + Send>;

impl MockDev {
    pub fn new() -> Arc<MockDev> {
        Arc::new(MockDev {
            queue: Mutex::new(VecDeque::new()),
            ready: EventFd::new().expect("eventfd"),
            commands: Mutex::new(Vec::new()),
            files: Mutex::new(HashMap::new()),
            adopted: Mutex::new(Vec::new()),
            fail_commands: Mutex::new(None),
            on_command: Mutex::new(None),
        })
    }

    /// Queues a raw message.
    pub fn push(&self, msg: Vec<u8>) {
        let mut q = self.queue.lock().unwrap();
        q.push_back(msg);
        self.ready.notify();
    }

    /// Queues an OPEN and creates its anonymous fd.
    pub fn push_open(
        &self,
        msg_id: u32,
        object_id: u32,
        fd: u32,
        volume: &str,
        cookie: &[u8],
    ) -> Arc<MockFile> {
        let f = Arc::new(MockFile::default());
        self.files.lock().unwrap().insert(fd, f.clone());
        self.push(encode::open(msg_id, object_id, fd, volume, cookie));
        f
    }

    /// Creates an fd without a message (for hand-built OPENs).
    pub fn add_file(&self, fd: u32) -> Arc<MockFile> {
        let f = Arc::new(MockFile::default());
        self.files.lock().unwrap().insert(fd, f.clone());
        f
    }

    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().unwrap().clone()
    }

    pub fn pending(&self) -> usize {
        self.queue.lock().unwrap().len()
    }

    /// Polls `pred` until it holds or `timeout` passes.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if pred() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        pred()
    }
}

impl Devnode for MockDev {
    fn read_msg(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut q = self.queue.lock().unwrap();
        let Some(front) = q.front() else {
            self.ready.drain();
            return Ok(0);
        };
        if front.len() > buf.len() {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        let m = q.pop_front().unwrap_or_default();
        buf[..m.len()].copy_from_slice(&m);
        if q.is_empty() {
            self.ready.drain();
        }
        Ok(m.len())
    }

    fn write_cmd(&self, cmd: &str) -> io::Result<()> {
        if let Some(errno) = *self.fail_commands.lock().unwrap() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        self.commands.lock().unwrap().push(cmd.to_owned());
        let hook = self.on_command.lock().unwrap().take();
        if let Some(hook) = hook {
            hook(cmd);
        }
        Ok(())
    }

    fn adopt_anon_fd(&self, fd: u32) -> io::Result<Box<dyn CacheFile>> {
        let mut adopted = self.adopted.lock().unwrap();
        let f = self.files.lock().unwrap().get(&fd).cloned();
        match f {
            Some(f) if !adopted.contains(&fd) => {
                adopted.push(fd);
                Ok(Box::new(Handle(f, fd)))
            }
            _ => Err(io::Error::from_raw_os_error(libc::EBADF)),
        }
    }

    fn poll_fd(&self) -> RawFd {
        self.ready.raw_fd()
    }
}
