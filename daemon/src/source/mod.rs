//! Where blob data comes from.
//!
//! A [`Source`] maps a blob name to a [`Blob`] (or says it has no such blob);
//! a [`Blob`] has a fixed size and positional reads. [`Sources`] tries each
//! configured source in order, the first that has the blob wins.

pub mod dir;
pub mod http;
pub mod oci;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};

use crate::sys::Mapped;

/// One blob's data.
pub trait Blob: Send + Sync {
    /// Size in bytes, fixed when the blob was opened.
    fn size(&self) -> u64;
    /// Reads up to `buf.len()` bytes at `off`. May return fewer bytes than
    /// asked; 0 means end of data.
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize>;
    /// Where the blob lives, for logs.
    fn describe(&self) -> String;
    /// The blob's name is its sha256 digest (`oci://`): prefetch checks it.
    fn sha256_digest(&self) -> Option<String> {
        None
    }
    /// Index of the source the blob came from (its worker lane).
    fn lane(&self) -> usize {
        0
    }
    /// The blob's bytes mapped, for a blob in a local file: copies then
    /// write them to the cache file from the mapping, without reading them
    /// into a buffer first. `None` when they must be read with `read_at`.
    fn mapped(&self) -> Option<&Mapped> {
        None
    }
    /// For a mapped blob, the size of its file now: it may have shrunk
    /// since the OPEN, and a mapped page past the file's end would be
    /// written as zeros rather than fail.
    fn size_now(&self) -> io::Result<u64> {
        Ok(self.size())
    }
}

/// A place that may have blobs.
pub trait Source: Send + Sync {
    /// `Ok(None)` when this source has no blob of that name.
    fn open(&self, name: &str) -> io::Result<Option<Arc<dyn Blob>>>;
    fn describe(&self) -> String;
    /// Something visibly wrong with the source's configuration, checked
    /// once at start (a `dir:` that does not exist). The source is still
    /// used: the problem may be fixed while the daemon runs.
    fn startup_problem(&self) -> Option<String> {
        None
    }
    /// For a network source, the number of worker threads (`--threads`):
    /// it may use at most its share of them. `None` for local sources,
    /// which are not limited.
    fn worker_budget(&self) -> Option<usize> {
        None
    }
    /// The source reads local storage, in bounded time and without the
    /// network: an OPEN or a small READ for its blobs may be served on the
    /// thread that reads the devnode (`--inline-max`).
    fn is_local(&self) -> bool {
        false
    }
}

/// The end-to-end deadline of the request (OPEN or READ) a thread is
/// serving. The handler opens a [`deadline::Scope`] when it starts a
/// request; every network attempt, retry and back-off of that request then
/// ends by `start + budget`, whatever the number of chunks or retries.
/// Outside a scope (prefetch) each blob read gets its own budget.
pub mod deadline {
    use std::cell::Cell;
    use std::time::{Duration, Instant};

    thread_local! {
        static START: Cell<Option<Instant>> = const { Cell::new(None) };
    }

    /// Marks the start of a request on this thread until dropped.
    pub struct Scope {
        prev: Option<Instant>,
    }

    #[cfg(test)]
    pub fn scope() -> Scope {
        scope_from(Instant::now())
    }

    /// A request that started at `start`.
    pub fn scope_from(start: Instant) -> Scope {
        let prev = START.with(|s| s.replace(Some(start)));
        Scope { prev }
    }

    impl Drop for Scope {
        fn drop(&mut self) {
            START.with(|s| s.set(self.prev));
        }
    }

    /// When the current request must be done, for a source whose budget is
    /// `budget`.
    pub fn for_request(budget: Duration) -> Instant {
        let start = START.with(|s| s.get()).unwrap_or_else(Instant::now);
        start + budget
    }
}

/// Reads as much of `buf` as the blob has at `off`, looping over short reads;
/// returns the number of bytes read (less than `buf.len()` only at end of data).
pub fn read_full(blob: &dyn Blob, buf: &mut [u8], off: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let at = off.saturating_add(done as u64);
        match blob.read_at(&mut buf[done..], at) {
            Ok(0) => break,
            Ok(n) => done += n.min(buf.len() - done),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// A `--source` argument that could not be understood.
#[derive(Debug, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

/// Builds a source from `dir:/path`, `http(s)://host[:port][/prefix]` or
/// `oci://registry[:port]/repository` (`oci+http://` for plain http).
/// `map`: a `dir:` source maps its blob files for copies.
pub fn from_spec(
    spec: &str,
    http: &http::HttpConfig,
    map: bool,
) -> Result<Box<dyn Source>, SpecError> {
    if let Some(path) = spec.strip_prefix("dir:") {
        if path.is_empty() {
            return Err(SpecError("dir: source needs a path".into()));
        }
        return Ok(Box::new(dir::DirSource::new(path.into(), map)));
    }
    if spec.starts_with("http://") || spec.starts_with("https://") {
        let src = http::HttpSource::new(spec, http.clone()).map_err(SpecError)?;
        return Ok(Box::new(src));
    }
    if spec.starts_with("oci://")
        || spec.starts_with("oci+http://")
        || spec.starts_with("oci+https://")
    {
        let src = oci::OciSource::new(spec, http.clone()).map_err(SpecError)?;
        return Ok(Box::new(src));
    }
    Err(SpecError(format!(
        "{spec}: unknown source (use dir:/path, http(s)://host:port/prefix or \
         oci://registry/repository)"
    )))
}

/// What looking a blob up in every source gave.
#[allow(dead_code)]
pub enum Lookup {
    Found(Arc<dyn Blob>),
    /// No source has it (and none failed).
    NotFound,
    /// No source has it and at least one failed to answer.
    Failed(#[allow(dead_code)] io::Error),
}

/// A blob tagged with the index of the source it came from.
struct Laned {
    lane: usize,
    inner: Arc<dyn Blob>,
}

impl Blob for Laned {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        self.inner.read_at(buf, off)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn sha256_digest(&self) -> Option<String> {
        self.inner.sha256_digest()
    }
    fn lane(&self) -> usize {
        self.lane
    }
    fn mapped(&self) -> Option<&Mapped> {
        self.inner.mapped()
    }
    fn size_now(&self) -> io::Result<u64> {
        self.inner.size_now()
    }
}

/// Per-source admission: at most `limit` workers busy on one source;
/// further work for it waits in its queue without holding a thread, so a
/// black-holed remote cannot take the workers a local source needs.
pub struct Lanes<T> {
    lanes: Vec<(usize, Mutex<LaneState<T>>)>,
}

struct LaneState<T> {
    busy: usize,
    queue: VecDeque<T>,
}

impl<T> Lanes<T> {
    pub fn new(limits: &[usize]) -> Lanes<T> {
        Lanes {
            lanes: limits
                .iter()
                .map(|&l| {
                    (
                        l.max(1),
                        Mutex::new(LaneState {
                            busy: 0,
                            queue: VecDeque::new(),
                        }),
                    )
                })
                .collect(),
        }
    }

    fn state(&self, lane: usize) -> Option<(usize, std::sync::MutexGuard<'_, LaneState<T>>)> {
        let (limit, m) = self.lanes.get(lane)?;
        Some((*limit, m.lock().unwrap_or_else(|e| e.into_inner())))
    }

    /// Asks for a slot on `lane` for `item`. Returns the item to run now
    /// (the oldest waiting one, if any) with the slot held, or `None` when
    /// `item` was queued. Unknown lanes are not limited.
    pub fn enter(&self, lane: usize, item: T) -> Option<T> {
        let Some((limit, mut st)) = self.state(lane) else {
            return Some(item);
        };
        if st.busy >= limit {
            st.queue.push_back(item);
            return None;
        }
        st.busy += 1;
        match st.queue.pop_front() {
            Some(older) => {
                st.queue.push_back(item);
                Some(older)
            }
            None => Some(item),
        }
    }

    /// The slot holder is done: hands it the next queued item (the slot
    /// stays held), or releases the slot.
    pub fn next(&self, lane: usize) -> Option<T> {
        let (_, mut st) = self.state(lane)?;
        match st.queue.pop_front() {
            Some(i) => Some(i),
            None => {
                st.busy = st.busy.saturating_sub(1);
                None
            }
        }
    }

    /// Releases a slot without taking queued work (unwinding from a panic;
    /// the queue moves again with the next `enter`).
    pub fn release(&self, lane: usize) {
        if let Some((_, mut st)) = self.state(lane) {
            st.busy = st.busy.saturating_sub(1);
        }
    }

    #[cfg(test)]
    pub fn queued(&self, lane: usize) -> usize {
        self.state(lane).map_or(0, |(_, s)| s.queue.len())
    }
}

/// The configured sources, in priority order.
pub struct Sources {
    list: Vec<Box<dyn Source>>,
}

impl Sources {
    /// Takes the sources in priority order; logs a warning for each one
    /// with a visible configuration problem.
    pub fn new(list: Vec<Box<dyn Source>>) -> Sources {
        for problem in Self::problems(&list) {
            warn!("{problem}");
        }
        Sources { list }
    }

    fn problems(list: &[Box<dyn Source>]) -> Vec<String> {
        list.iter()
            .filter_map(|s| {
                s.startup_problem()
                    .map(|p| format!("source {}: {p}; its blobs will not be found", s.describe()))
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Worker limit per source: a remote source may keep at most
    /// `threads / sources` workers busy (at least one) when there are
    /// several sources; local sources and a lone source are not limited.
    pub fn lane_limits(&self) -> Vec<usize> {
        let n = self.list.len();
        self.list
            .iter()
            .map(|s| match s.worker_budget() {
                Some(t) if n > 1 => (t / n).max(1),
                _ => usize::MAX,
            })
            .collect()
    }

    /// Looks `name` up in source `i` only.
    pub fn lookup_in(&self, i: usize, name: &str) -> io::Result<Option<Arc<dyn Blob>>> {
        let Some(src) = self.list.get(i) else {
            return Ok(None);
        };
        Ok(src
            .open(name)?
            .map(|inner| Arc::new(Laned { lane: i, inner }) as Arc<dyn Blob>))
    }

    /// Whether source `i` is local ([`Source::is_local`]).
    pub fn is_local(&self, i: usize) -> bool {
        self.list.get(i).is_some_and(|s| s.is_local())
    }

    /// Whether every source is local: an OPEN then never reaches the
    /// network, whichever source has its blob.
    pub fn all_local(&self) -> bool {
        !self.list.is_empty() && self.list.iter().all(|s| s.is_local())
    }

    pub fn describe_one(&self, i: usize) -> String {
        self.list.get(i).map(|s| s.describe()).unwrap_or_default()
    }

    /// Finds `name` in the first source that has it. A source that fails
    /// (e.g. an HTTP server that is down) is logged and skipped.
    #[allow(dead_code)] // kept for callers outside the handler
    pub fn lookup(&self, name: &str) -> Lookup {
        let mut failure = None;
        for i in 0..self.list.len() {
            match self.lookup_in(i, name) {
                Ok(Some(blob)) => return Lookup::Found(blob),
                Ok(None) => trace!("blob {name:?} not in {}", self.describe_one(i)),
                Err(e) => {
                    warn!("blob {name:?}: {} failed: {e}", self.describe_one(i));
                    failure = Some(e);
                }
            }
        }
        match failure {
            Some(e) => Lookup::Failed(e),
            None => Lookup::NotFound,
        }
    }

    pub fn describe(&self) -> Vec<String> {
        self.list.iter().map(|s| s.describe()).collect()
    }
}

/// In-memory blobs for tests.
#[cfg(test)]
pub mod mem {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    pub struct MemBlob {
        pub data: Vec<u8>,
        /// Report this size instead of `data.len()` (a "truncated" blob).
        pub claimed_size: Option<u64>,
        pub fail: AtomicBool,
        /// Fail reads that start below this offset (a source error in part
        /// of a blob).
        pub fail_below: AtomicU64,
        /// Panic in read_at (a bug in a source).
        pub panic: AtomicBool,
        /// The digest it claims to have (as an `oci://` blob does).
        pub digest: Option<String>,
    }

    impl Blob for MemBlob {
        fn size(&self) -> u64 {
            self.claimed_size.unwrap_or(self.data.len() as u64)
        }
        fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
            if self.fail.load(Ordering::Relaxed) || off < self.fail_below.load(Ordering::Relaxed) {
                return Err(io::Error::other("injected failure"));
            }
            if self.panic.load(Ordering::Relaxed) {
                panic!("injected panic");
            }
            let off = usize::try_from(off).unwrap_or(usize::MAX);
            let Some(src) = self.data.get(off..) else {
                return Ok(0);
            };
            let n = src.len().min(buf.len());
            buf[..n].copy_from_slice(&src[..n]);
            Ok(n)
        }
        fn describe(&self) -> String {
            "memory".into()
        }
        fn sha256_digest(&self) -> Option<String> {
            self.digest.clone()
        }
    }

    #[derive(Default)]
    pub struct MemSource {
        pub blobs: HashMap<String, Arc<MemBlob>>,
        pub fail: bool,
        /// Claims to be local ([`Source::is_local`]).
        pub local: bool,
    }

    impl MemSource {
        pub fn with(mut self, name: &str, data: Vec<u8>) -> Self {
            let b = MemBlob {
                data,
                claimed_size: None,
                fail: AtomicBool::new(false),
                fail_below: AtomicU64::new(0),
                panic: AtomicBool::new(false),
                digest: None,
            };
            self.blobs.insert(name.into(), Arc::new(b));
            self
        }
        /// A blob that claims `digest` as its sha256.
        pub fn with_digest(mut self, name: &str, data: Vec<u8>, digest: &str) -> Self {
            let b = MemBlob {
                data,
                claimed_size: None,
                fail: AtomicBool::new(false),
                fail_below: AtomicU64::new(0),
                panic: AtomicBool::new(false),
                digest: Some(digest.into()),
            };
            self.blobs.insert(name.into(), Arc::new(b));
            self
        }
        pub fn with_truncated(mut self, name: &str, data: Vec<u8>, size: u64) -> Self {
            let b = MemBlob {
                data,
                claimed_size: Some(size),
                fail: AtomicBool::new(false),
                fail_below: AtomicU64::new(0),
                panic: AtomicBool::new(false),
                digest: None,
            };
            self.blobs.insert(name.into(), Arc::new(b));
            self
        }
    }

    impl Source for MemSource {
        fn open(&self, name: &str) -> io::Result<Option<Arc<dyn Blob>>> {
            if self.fail {
                return Err(io::Error::other("source down"));
            }
            Ok(self.blobs.get(name).map(|b| b.clone() as Arc<dyn Blob>))
        }
        fn describe(&self) -> String {
            "memory source".into()
        }
        fn is_local(&self) -> bool {
            self.local
        }
    }

    /// Deterministic test data: byte i is a hash of i.
    pub fn pattern(len: usize, salt: u8) -> Vec<u8> {
        (0..len)
            .map(|i| ((i as u64).wrapping_mul(2_654_435_761) >> 7) as u8 ^ salt)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::mem::*;
    use super::*;

    #[test]
    fn first_source_wins_and_failures_are_skipped() {
        let a = MemSource::default().with("x", vec![1; 10]);
        let b = MemSource::default()
            .with("x", vec![2; 20])
            .with("y", vec![3; 5]);
        let down = MemSource {
            fail: true,
            ..Default::default()
        };
        let s = Sources::new(vec![Box::new(down), Box::new(a), Box::new(b)]);
        match s.lookup("x") {
            Lookup::Found(blob) => {
                assert_eq!(blob.size(), 10);
            }
            _ => panic!("x not found"),
        }
        assert!(matches!(s.lookup("y"), Lookup::Found(b) if b.size() == 5));
        // Missing everywhere, but a source failed: report the failure.
        assert!(matches!(s.lookup("z"), Lookup::Failed(_)));
        let s = Sources::new(vec![Box::new(MemSource::default())]);
        assert!(matches!(s.lookup("z"), Lookup::NotFound));
    }

    #[test]
    fn missing_dir_source_is_a_startup_warning() {
        let cfg = http::HttpConfig::default();
        let list = vec![
            from_spec("dir:/nonexistent-odd-test", &cfg, true).unwrap(),
            from_spec("dir:/", &cfg, true).unwrap(),
        ];
        let p = Sources::problems(&list);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("dir:/nonexistent-odd-test"), "{p:?}");
    }

    #[test]
    fn lanes_bound_each_source() {
        let l: Lanes<u32> = Lanes::new(&[1, usize::MAX]);
        assert_eq!(l.enter(0, 1), Some(1));
        // Lane 0 is full: queued, no thread held.
        assert_eq!(l.enter(0, 2), None);
        assert_eq!(l.enter(0, 3), None);
        // Lane 1 is not affected.
        assert_eq!(l.enter(1, 10), Some(10));
        assert_eq!(l.enter(1, 11), Some(11));
        // The holder of lane 0 takes the queued work in order.
        assert_eq!(l.next(0), Some(2));
        assert_eq!(l.next(0), Some(3));
        assert_eq!(l.next(0), None);
        assert_eq!(l.enter(0, 4), Some(4));
        // A panicking holder releases; queued work runs on the next enter,
        // oldest first.
        assert_eq!(l.enter(0, 5), None);
        l.release(0);
        assert_eq!(l.enter(0, 6), Some(5));
        assert_eq!(l.queued(0), 1);
    }

    #[test]
    fn read_full_stops_at_end() {
        let b = MemSource::default().with("x", pattern(100, 0));
        let blob = b.open("x").unwrap().unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(read_full(&*blob, &mut buf, 50).unwrap(), 50);
        assert_eq!(&buf[..50], &pattern(100, 0)[50..]);
        assert_eq!(read_full(&*blob, &mut buf, 1000).unwrap(), 0);
    }

    #[test]
    fn parses_specs() {
        let cfg = http::HttpConfig::default();
        assert!(from_spec("dir:/tmp", &cfg, true).is_ok());
        assert!(from_spec("dir:", &cfg, true).is_err());
        assert!(from_spec("http://127.0.0.1:8080/blobs", &cfg, true).is_ok());
        assert!(from_spec("https://127.0.0.1/", &cfg, true).is_ok());
        assert!(from_spec("oci://127.0.0.1:5000/a/b", &cfg, true).is_ok());
        assert!(from_spec("oci+http://127.0.0.1:5000/a", &cfg, true).is_ok());
        assert!(from_spec("oci://127.0.0.1:5000", &cfg, true).is_err());
        assert!(from_spec("/tmp", &cfg, true).is_err());
    }
}
