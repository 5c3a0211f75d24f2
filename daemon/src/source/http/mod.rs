//! Blobs fetched over HTTP(S): the `http://`/`https://` source, and the
//! remote blob shared with the `oci://` source.
//!
//! * this module: configuration, errors, [`RemoteBlob`] (verified ranged
//!   reads, or one whole-body download for servers that ignore `Range`) and
//!   the plain [`HttpSource`];
//! * [`client`]: the `ureq` client with deadlines, retries and checks.

pub mod client;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{deadline, Blob, Source};
use crate::keys;
pub use client::{Headers, HttpClient, Probed};

/// Client tunables (`--http-*`, `--request-deadline-ms`, `--ca-file`).
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Bound on one attempt (connect, TLS, redirects, headers and body).
    pub timeout: Duration,
    /// Extra attempts after the first for retryable failures.
    pub retries: u32,
    /// First back-off delay; doubles per retry up to 5 s.
    pub backoff: Duration,
    /// End-to-end bound on one OPEN or READ, all attempts and back-off
    /// included (the request's deadline).
    pub deadline: Duration,
    /// Idle keep-alive connections kept per host.
    pub max_idle: usize,
    /// Redirects followed per request.
    pub max_redirects: u32,
    /// PEM CA bundle instead of the system one.
    pub ca_file: Option<PathBuf>,
    /// Proxy URL; `None` reads `HTTPS_PROXY`/`ALL_PROXY`/`HTTP_PROXY` and `NO_PROXY`.
    pub proxy: Option<String>,
    /// Largest blob fetched whole from a server that ignores `Range`
    /// (held in memory while the blob is open); larger ones are refused.
    pub whole_max: u64,
    /// Worker threads (`--threads`): each source may use at most its share.
    pub workers: usize,
    /// `oci://`: `user:password` file for basic auth and token requests.
    pub credentials: Option<PathBuf>,
    /// `oci://`: file mapping blob names to digests (`NAME sha256:HEX`).
    pub oci_map: Option<PathBuf>,
    /// `oci://`: check each blob's sha256 while prefetching it.
    pub verify_digest: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            timeout: Duration::from_secs(10),
            retries: 3,
            backoff: Duration::from_millis(100),
            deadline: Duration::from_secs(30),
            max_idle: 8,
            max_redirects: 5,
            ca_file: None,
            proxy: None,
            whole_max: 64 << 20,
            workers: 4,
            credentials: None,
            oci_map: None,
            verify_digest: true,
        }
    }
}

/// Why a request failed.
#[derive(Debug)]
pub enum HttpError {
    /// Connect, TLS, send or receive failed, or one attempt timed out.
    Io(io::Error),
    /// The request's deadline passed.
    Deadline,
    /// The response could not be understood (wrong range, error page, ...).
    Protocol(String),
    /// The body ended early.
    Truncated(String),
    /// The blob is not what was probed any more (size or ETag changed).
    Changed(String),
    /// 200 with the whole blob to a ranged request.
    RangeIgnored,
    /// 401, with the `WWW-Authenticate` challenge.
    Unauthorized(Option<String>),
    /// An unexpected status code.
    Status(u16),
    /// 404 or 410.
    NotFound,
    /// A configuration or TLS problem that retrying cannot fix.
    Fatal(String),
}

impl HttpError {
    /// Whether trying again may help.
    pub fn retryable(&self) -> bool {
        match self {
            HttpError::Io(_) | HttpError::Truncated(_) => true,
            HttpError::Status(s) => *s >= 500 || *s == 429 || *s == 408,
            _ => false,
        }
    }

    pub(crate) fn from_resp(resp: &ureq::http::Response<ureq::Body>) -> HttpError {
        match resp.status().as_u16() {
            401 => HttpError::Unauthorized(
                resp.headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            ),
            404 | 410 => HttpError::NotFound,
            s => HttpError::Status(s),
        }
    }

    pub(crate) fn from_ureq(e: ureq::Error) -> HttpError {
        use ureq::Error as E;
        match e {
            E::Io(e) => HttpError::Io(e),
            E::Timeout(t) => HttpError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out ({t:?})"),
            )),
            E::ConnectionFailed | E::HostNotFound | E::Protocol(_) => {
                HttpError::Io(io::Error::other(e.to_string()))
            }
            E::StatusCode(s) => HttpError::Status(s),
            other => HttpError::Fatal(other.to_string()),
        }
    }

    /// An error from reading a body: ureq wraps its own errors (timeouts,
    /// limits) in `io::Error`.
    pub(crate) fn from_body_io(e: io::Error) -> HttpError {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => HttpError::Truncated(e.to_string()),
            _ => HttpError::Io(e),
        }
    }

    /// The errno a failed OPEN is answered with.
    pub fn errno(&self) -> i32 {
        match self {
            HttpError::NotFound => libc::ENOENT,
            HttpError::Unauthorized(_) => libc::EACCES,
            HttpError::Deadline => libc::ETIMEDOUT,
            _ => libc::EIO,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Io(e) => write!(f, "{e}"),
            HttpError::Deadline => write!(f, "request deadline passed"),
            HttpError::Protocol(m) => write!(f, "bad response: {m}"),
            HttpError::Truncated(m) => write!(f, "truncated response: {m}"),
            HttpError::Changed(m) => write!(f, "the blob changed on the server: {m}"),
            HttpError::RangeIgnored => write!(f, "the server ignored Range"),
            HttpError::Unauthorized(c) => match c {
                Some(c) => write!(f, "HTTP 401 unauthorized (challenge {c})"),
                None => write!(f, "HTTP 401 unauthorized"),
            },
            HttpError::Status(s) => write!(f, "HTTP status {s}"),
            HttpError::NotFound => write!(f, "not found"),
            HttpError::Fatal(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<io::Error> for HttpError {
    fn from(e: io::Error) -> Self {
        HttpError::Io(e)
    }
}

impl From<HttpError> for io::Error {
    fn from(e: HttpError) -> io::Error {
        let kind = match &e {
            HttpError::Io(e) => e.kind(),
            HttpError::NotFound => io::ErrorKind::NotFound,
            HttpError::Unauthorized(_) => io::ErrorKind::PermissionDenied,
            HttpError::Deadline => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e.to_string())
    }
}

/// Adds credentials to requests, and reacts to a 401.
pub trait Authorizer: Send + Sync {
    /// Headers for the next request.
    fn headers(&self, deadline: Instant) -> Result<Headers, HttpError>;
    /// A 401 with this challenge came back: true if new credentials were
    /// obtained and the request should be sent once more.
    fn unauthorized(&self, challenge: Option<&str>, deadline: Instant) -> Result<bool, HttpError>;
}

/// No credentials.
pub struct Anonymous;

impl Authorizer for Anonymous {
    fn headers(&self, _: Instant) -> Result<Headers, HttpError> {
        Ok(Vec::new())
    }
    fn unauthorized(&self, _: Option<&str>, _: Instant) -> Result<bool, HttpError> {
        Ok(false)
    }
}

/// Sends `req` with the authorizer's headers; on a 401, lets it refresh its
/// credentials and sends once more.
pub fn with_auth<T>(
    auth: &dyn Authorizer,
    deadline: Instant,
    mut req: impl FnMut(&Headers) -> Result<T, HttpError>,
) -> Result<T, HttpError> {
    let h = auth.headers(deadline)?;
    match req(&h) {
        Err(HttpError::Unauthorized(c)) => {
            if auth.unauthorized(c.as_deref(), deadline)? {
                let h = auth.headers(deadline)?;
                req(&h)
            } else {
                Err(HttpError::Unauthorized(c))
            }
        }
        r => r,
    }
}

/// Probes `url`; `Ok(None)` when the server has no such blob.
pub fn probe(
    client: &HttpClient,
    auth: &dyn Authorizer,
    url: &str,
) -> Result<Option<Probed>, HttpError> {
    let deadline = deadline::for_request(client.cfg.deadline);
    let what = format!("probe {url}");
    client.retrying(&what, deadline, |_| {
        with_auth(auth, deadline, |h| client.probe(url, h, deadline))
    })
}

/// State of the one whole-body download of a blob whose server ignores Range.
#[derive(Default)]
struct Whole {
    /// Bytes downloaded so far (a prefix of the blob).
    have: u64,
    /// A download is running.
    running: bool,
    /// Downloads that failed.
    failures: u32,
    last_error: Option<String>,
}

/// A blob on an HTTP server: verified ranged reads, or for a server that
/// ignores Range one sequential download into memory shared by all reads.
pub struct RemoteBlob {
    client: Arc<HttpClient>,
    auth: Arc<dyn Authorizer>,
    url: String,
    probed: Probed,
    whole: Mutex<Whole>,
    whole_cv: Condvar,
    /// The downloaded prefix (memfd-free: a plain buffer, bounded by `whole_max`).
    whole_buf: Mutex<Vec<u8>>,
    /// Digest to check during prefetch (`oci://`).
    digest: Option<String>,
}

impl RemoteBlob {
    pub fn new(
        client: Arc<HttpClient>,
        auth: Arc<dyn Authorizer>,
        url: String,
        probed: Probed,
        digest: Option<String>,
    ) -> Result<RemoteBlob, HttpError> {
        if !probed.ranges {
            if probed.size > client.cfg.whole_max {
                return Err(HttpError::Fatal(format!(
                    "{url} ignores Range requests and is {} bytes, over the {}-byte limit for \
                     whole-blob downloads; use a server with Range support",
                    probed.size, client.cfg.whole_max
                )));
            }
            warn!(
                "{url} ignores Range requests: downloading its {} bytes once, in order",
                probed.size
            );
        }
        Ok(RemoteBlob {
            client,
            auth,
            url,
            probed,
            whole: Mutex::new(Whole::default()),
            whole_cv: Condvar::new(),
            whole_buf: Mutex::new(Vec::new()),
            digest,
        })
    }

    fn lock_whole(&self) -> std::sync::MutexGuard<'_, Whole> {
        self.whole.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves `buf` at `off` from the whole-body download, starting or
    /// waiting for it, until `deadline`.
    fn read_whole(&self, buf: &mut [u8], off: u64, deadline: Instant) -> Result<(), HttpError> {
        let need = off + buf.len() as u64;
        let mut w = self.lock_whole();
        loop {
            if w.have >= need {
                drop(w);
                let b = self.whole_buf.lock().unwrap_or_else(|e| e.into_inner());
                let (s, e) = (off as usize, need as usize);
                buf.copy_from_slice(&b[s..e]);
                return Ok(());
            }
            if !w.running {
                if w.failures > self.client.cfg.retries {
                    return Err(HttpError::Fatal(format!(
                        "whole-blob download failed {} times, last: {}",
                        w.failures,
                        w.last_error.as_deref().unwrap_or("?")
                    )));
                }
                // This reader downloads (holding no lock while doing so);
                // others wait for the bytes they need.
                w.running = true;
                drop(w);
                let r = self.download_whole(deadline);
                w = self.lock_whole();
                w.running = false;
                if let Err(e) = &r {
                    w.failures += 1;
                    w.last_error = Some(e.to_string());
                }
                self.whole_cv.notify_all();
                if w.have >= need {
                    continue;
                }
                r?;
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HttpError::Deadline);
            }
            w = self
                .whole_cv
                .wait_timeout(w, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn download_whole(&self, deadline: Instant) -> Result<(), HttpError> {
        // Start again from byte 0 (nothing to resume with), keeping what
        // earlier attempts got only if the new body is the same blob.
        let mut resp = with_auth(&*self.auth, deadline, |h| {
            let resp = self.client.get(&self.url, h, deadline)?;
            match resp.status().as_u16() {
                200 => Ok(resp),
                _ => Err(HttpError::from_resp(&resp)),
            }
        })?;
        let h = resp.headers().clone();
        if let Some(e) = h.get("etag").and_then(|v| v.to_str().ok()) {
            if let Some(p) = &self.probed.etag {
                if e.trim() != p {
                    return Err(HttpError::Changed(format!("ETag {e}, was {p}")));
                }
            }
        }
        let mut pos = 0u64;
        let size = self.probed.size;
        client::read_whole_body(&mut resp, size, &mut |chunk| {
            let end = pos + chunk.len() as u64;
            let have = self.lock_whole().have;
            if end > have {
                // Bytes below `have` came with an earlier attempt.
                let skip = usize::try_from(have.saturating_sub(pos)).unwrap_or(usize::MAX);
                self.whole_buf
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(chunk.get(skip..).unwrap_or(&[]));
                self.lock_whole().have = end;
                self.whole_cv.notify_all();
            }
            pos = end;
            Ok(())
        })
    }
}

impl Blob for RemoteBlob {
    fn size(&self) -> u64 {
        self.probed.size
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        if off >= self.probed.size {
            return Ok(0);
        }
        let len = usize::try_from(self.probed.size - off)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let buf = &mut buf[..len];
        let deadline = deadline::for_request(self.client.cfg.deadline);
        if !self.probed.ranges {
            self.read_whole(buf, off, deadline)?;
            return Ok(len);
        }
        let what = format!("GET {} bytes={off}-{}", self.url, off + len as u64 - 1);
        self.client.retrying(&what, deadline, |_| {
            with_auth(&*self.auth, deadline, |h| {
                self.client
                    .get_range(&self.url, h, &self.probed, off, buf, deadline)
            })
        })?;
        Ok(len)
    }

    fn describe(&self) -> String {
        match &self.digest {
            Some(_) => format!("oci:{}", self.url),
            None => self.url.clone(),
        }
    }

    fn sha256_digest(&self) -> Option<String> {
        self.digest
            .clone()
            .filter(|_| self.client.cfg.verify_digest)
    }
}

/// `http(s)://host[:port][/prefix]`: blob `NAME` is `GET /prefix/NAME`.
pub struct HttpSource {
    base: String,
    client: Arc<HttpClient>,
}

impl HttpSource {
    pub fn new(url: &str, cfg: HttpConfig) -> Result<HttpSource, String> {
        let base = check_base_url(url, &["http://", "https://"])?;
        Ok(HttpSource {
            base,
            client: Arc::new(HttpClient::new(cfg)?),
        })
    }
}

/// Checks a base URL (scheme, a host, no query, fragment or credentials)
/// and returns it without a trailing slash.
pub fn check_base_url(url: &str, schemes: &[&str]) -> Result<String, String> {
    let Some(rest) = schemes.iter().find_map(|s| url.strip_prefix(s)) else {
        return Err(format!("{url}: not a {} URL", schemes.join(" or ")));
    };
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err(format!("{url}: no host"));
    }
    if authority.contains('@') {
        return Err(format!(
            "{url}: credentials in URLs are not supported (use --credentials)"
        ));
    }
    if url.contains(['?', '#', ' ']) {
        return Err(format!(
            "{url}: query strings and fragments are not supported"
        ));
    }
    let parsed: ureq::http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    if parsed.host().is_none() {
        return Err(format!("{url}: no host"));
    }
    let port_text = authority.rsplit_once(']').map_or(authority, |(_, p)| p);
    if let Some((_, p)) = port_text.rsplit_once(':') {
        if p.parse::<u16>().is_err() {
            return Err(format!("{url}: bad port {p:?}"));
        }
    }
    Ok(url.trim_end_matches('/').to_owned())
}

impl Source for HttpSource {
    fn open(&self, name: &str) -> io::Result<Option<Arc<dyn Blob>>> {
        let url = format!("{}/{}", self.base, keys::url_segment(name));
        let auth: Arc<dyn Authorizer> = Arc::new(Anonymous);
        match probe(&self.client, &*auth, &url)? {
            Some(p) => Ok(Some(Arc::new(RemoteBlob::new(
                self.client.clone(),
                auth,
                url,
                p,
                None,
            )?))),
            None => Ok(None),
        }
    }

    fn describe(&self) -> String {
        self.base.clone()
    }

    fn worker_budget(&self) -> Option<usize> {
        Some(self.client.cfg.workers)
    }
}

#[cfg(test)]
pub mod testserver;

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
