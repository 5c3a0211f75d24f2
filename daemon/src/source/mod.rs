//! Where blob data comes from.
//!
//! A [`Source`] maps a blob name to a [`Blob`] (or says it has no such blob);
//! a [`Blob`] has a fixed size and positional reads. [`Sources`] tries each
//! configured source in order, the first that has the blob wins.

pub mod dir;
pub mod http;

use std::fmt;
use std::io;
use std::sync::Arc;

/// One blob's data.
pub trait Blob: Send + Sync {
    /// Size in bytes, fixed when the blob was opened.
    fn size(&self) -> u64;
    /// Reads up to `buf.len()` bytes at `off`. May return fewer bytes than
    /// asked; 0 means end of data.
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize>;
    /// Where the blob lives, for logs.
    fn describe(&self) -> String;
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

/// Builds a source from `dir:/path` or `http://host[:port][/prefix]`.
pub fn from_spec(spec: &str, http: &http::HttpConfig) -> Result<Box<dyn Source>, SpecError> {
    if let Some(path) = spec.strip_prefix("dir:") {
        if path.is_empty() {
            return Err(SpecError("dir: source needs a path".into()));
        }
        return Ok(Box::new(dir::DirSource::new(path.into())));
    }
    if spec.starts_with("http://") {
        let src =
            http::HttpSource::new(spec, http.clone()).map_err(|e| SpecError(e.to_string()))?;
        return Ok(Box::new(src));
    }
    if spec.starts_with("https://") {
        return Err(SpecError(format!(
            "{spec}: https is not supported, use plain http"
        )));
    }
    Err(SpecError(format!(
        "{spec}: unknown source (use dir:/path or http://host:port/prefix)"
    )))
}

/// What looking a blob up in every source gave.
pub enum Lookup {
    Found(Arc<dyn Blob>),
    /// No source has it (and none failed).
    NotFound,
    /// No source has it and at least one failed to answer.
    Failed(io::Error),
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

    /// Finds `name` in the first source that has it. A source that fails
    /// (e.g. an HTTP server that is down) is logged and skipped.
    pub fn lookup(&self, name: &str) -> Lookup {
        let mut failure = None;
        for src in &self.list {
            match src.open(name) {
                Ok(Some(blob)) => return Lookup::Found(blob),
                Ok(None) => trace!("blob {name:?} not in {}", src.describe()),
                Err(e) => {
                    warn!("blob {name:?}: {} failed: {e}", src.describe());
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
    use std::sync::atomic::{AtomicBool, Ordering};

    pub struct MemBlob {
        pub data: Vec<u8>,
        /// Report this size instead of `data.len()` (a "truncated" blob).
        pub claimed_size: Option<u64>,
        pub fail: AtomicBool,
        /// Panic in read_at (a bug in a source).
        pub panic: AtomicBool,
    }

    impl Blob for MemBlob {
        fn size(&self) -> u64 {
            self.claimed_size.unwrap_or(self.data.len() as u64)
        }
        fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
            if self.fail.load(Ordering::Relaxed) {
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
    }

    #[derive(Default)]
    pub struct MemSource {
        pub blobs: HashMap<String, Arc<MemBlob>>,
        pub fail: bool,
    }

    impl MemSource {
        pub fn with(mut self, name: &str, data: Vec<u8>) -> Self {
            let b = MemBlob {
                data,
                claimed_size: None,
                fail: AtomicBool::new(false),
                panic: AtomicBool::new(false),
            };
            self.blobs.insert(name.into(), Arc::new(b));
            self
        }
        pub fn with_truncated(mut self, name: &str, data: Vec<u8>, size: u64) -> Self {
            let b = MemBlob {
                data,
                claimed_size: Some(size),
                fail: AtomicBool::new(false),
                panic: AtomicBool::new(false),
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
            from_spec("dir:/nonexistent-odd-test", &cfg).unwrap(),
            from_spec("dir:/", &cfg).unwrap(),
        ];
        let p = Sources::problems(&list);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("dir:/nonexistent-odd-test"), "{p:?}");
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
        assert!(from_spec("dir:/tmp", &cfg).is_ok());
        assert!(from_spec("dir:", &cfg).is_err());
        assert!(from_spec("http://127.0.0.1:8080/blobs", &cfg).is_ok());
        assert!(from_spec("https://127.0.0.1/", &cfg)
            .err()
            .unwrap()
            .0
            .contains("https"));
        assert!(from_spec("/tmp", &cfg).is_err());
    }
}
