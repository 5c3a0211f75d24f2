//! The HTTP client under the `http://` and `oci://` sources: `ureq` (rustls
//! TLS, redirects, proxies, a keep-alive pool) wrapped with what a cache
//! needs from a remote blob store:
//!
//! * one end-to-end deadline per request (see [`super::deadline`]): every
//!   attempt gets `min(--http-timeout-ms, time left)` as ureq's *global*
//!   timeout, which covers connect, TLS, redirects and the whole body, so a
//!   server dribbling one byte at a time cannot hold a worker past it;
//! * retries with back-off only for errors that may go away (connection
//!   failures, timeouts, 5xx, 408, 429, truncated bodies), never past the
//!   deadline;
//! * every ranged response checked against what was asked: status, the
//!   `Content-Range` start, end and total against the probed size, the
//!   `Content-Length`, the `ETag`, and the body length. `If-Range` carries the
//!   probed ETag, so a blob that changed comes back as a 200, which is then
//!   refused. Anything else is an error for that read, never data.

use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ureq::http::{HeaderMap, Response};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::{Agent, Body};

use super::{HttpConfig, HttpError};

const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Where Debian (and most distributions) keep the system CA bundle.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What a probe learned about a blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probed {
    pub size: u64,
    /// A strong ETag, used in `If-Range` and checked on every response.
    pub etag: Option<String>,
    /// The server answered the probe's `Range` with 206 (or 416).
    pub ranges: bool,
}

/// Extra request headers (authorization).
pub type Headers = Vec<(&'static str, String)>;

/// A `Content-Range` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentRange {
    Bytes { start: u64, end: u64, total: u64 },
    Unsatisfied { total: u64 },
}

/// Parses `bytes a-b/total` and `bytes */total` (an unknown total `*` is
/// refused: the size must be known).
pub fn parse_content_range(v: &str) -> Option<ContentRange> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let total = total.trim().parse::<u64>().ok()?;
    if span.trim() == "*" {
        return Some(ContentRange::Unsatisfied { total });
    }
    let (a, b) = span.trim().split_once('-')?;
    let (start, end) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?);
    if start > end || end >= total {
        return None;
    }
    Some(ContentRange::Bytes { start, end, total })
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn strong_etag(h: &HeaderMap) -> Option<String> {
    header(h, "etag")
        .map(str::trim)
        .filter(|e| !e.starts_with("W/") && e.len() > 1)
        .map(str::to_owned)
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    header(h, "content-length").and_then(|v| v.trim().parse().ok())
}

fn proto_err(m: impl Into<String>) -> HttpError {
    HttpError::Protocol(m.into())
}

/// Reads the CA certificates in a PEM file.
pub fn load_ca_file(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!("{}: no certificates", path.display()));
    }
    Ok(certs)
}

/// An HTTP client shared by the blobs of one source.
pub struct HttpClient {
    agent: Agent,
    pub cfg: HttpConfig,
    /// Requests sent (attempts), for tests and logs.
    attempts: AtomicU64,
}

impl HttpClient {
    pub fn new(cfg: HttpConfig) -> Result<HttpClient, String> {
        let roots = match &cfg.ca_file {
            Some(p) => RootCerts::Specific(Arc::new(load_ca_file(p)?)),
            None => match load_ca_file(Path::new(SYSTEM_CA_BUNDLE)) {
                Ok(c) => RootCerts::Specific(Arc::new(c)),
                // No system bundle (a busybox guest): the built-in Mozilla set.
                Err(_) => RootCerts::WebPki,
            },
        };
        let proxy = match &cfg.proxy {
            Some(p) => Some(ureq::Proxy::new(p).map_err(|e| format!("proxy {p}: {e}"))?),
            None => ureq::Proxy::try_from_env(),
        };
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .proxy(proxy)
            .max_redirects(cfg.max_redirects)
            .max_idle_connections_per_host(cfg.max_idle)
            .max_idle_connections(cfg.max_idle * 4)
            .user_agent(format!("odd/{}", env!("CARGO_PKG_VERSION")))
            .accept_encoding("identity")
            .build()
            .into();
        Ok(HttpClient {
            agent,
            cfg,
            attempts: AtomicU64::new(0),
        })
    }

    /// One GET, bounded by `min(attempt timeout, deadline)`.
    pub fn get(
        &self,
        url: &str,
        headers: &Headers,
        deadline: Instant,
    ) -> Result<Response<Body>, HttpError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HttpError::Deadline);
        }
        let mut req = self.agent.get(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        self.attempts.fetch_add(1, Ordering::Relaxed);
        req.config()
            .timeout_global(Some(self.cfg.timeout.min(left)))
            .build()
            .call()
            .map_err(HttpError::from_ureq)
    }

    /// Runs `f` until it succeeds, fails for good, retries run out or the
    /// deadline passes. `f` gets the attempt number (0 first).
    pub fn retrying<T>(
        &self,
        what: &str,
        deadline: Instant,
        mut f: impl FnMut(u32) -> Result<T, HttpError>,
    ) -> Result<T, HttpError> {
        let mut delay = self.cfg.backoff;
        let mut attempt = 0;
        loop {
            match f(attempt) {
                Ok(v) => return Ok(v),
                Err(e) if e.retryable() && attempt < self.cfg.retries => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left <= delay {
                        debug!("{what}: {e}; no time left for a retry");
                        return Err(e);
                    }
                    attempt += 1;
                    debug!(
                        "{what}: {e}; retry {attempt}/{} in {delay:?}",
                        self.cfg.retries
                    );
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Asks for byte 0 to learn the size, the ETag and whether Range works.
    /// `Ok(None)`: the server says there is no such blob (404/410).
    pub fn probe(
        &self,
        url: &str,
        headers: &Headers,
        deadline: Instant,
    ) -> Result<Option<Probed>, HttpError> {
        let mut h = headers.clone();
        h.push(("Range", "bytes=0-0".into()));
        let mut resp = self.get(url, &h, deadline)?;
        let status = resp.status();
        let etag = strong_etag(resp.headers());
        let cr = header(resp.headers(), "content-range").map(parse_content_range);
        match status.as_u16() {
            206 => match cr {
                Some(Some(ContentRange::Bytes {
                    start: 0,
                    end: 0,
                    total,
                })) => {
                    read_exact_body(&mut resp, 1, &mut [0u8; 1])?;
                    Ok(Some(Probed {
                        size: total,
                        etag,
                        ranges: true,
                    }))
                }
                // More than byte 0 from byte 0: busybox httpd reads the end
                // 0 as "to the end". It honours other ranges; the total is
                // the size. The body is not read (the connection is dropped).
                Some(Some(ContentRange::Bytes {
                    start: 0, total, ..
                })) => Ok(Some(Probed {
                    size: total,
                    etag,
                    ranges: true,
                })),
                _ => Err(proto_err(
                    "206 to bytes=0-0 without a matching Content-Range",
                )),
            },
            416 => match cr {
                Some(Some(ContentRange::Unsatisfied { total: 0 })) | None => Ok(Some(Probed {
                    size: 0,
                    etag,
                    ranges: true,
                })),
                _ => Err(proto_err("416 to bytes=0-0 for a non-empty blob")),
            },
            // The server ignores Range: the body is the whole blob. Its length
            // is the size; it is not read here (the connection is dropped).
            200 => {
                refuse_error_page(resp.headers())?;
                match content_length(resp.headers()) {
                    Some(n) => Ok(Some(Probed {
                        size: n,
                        etag,
                        ranges: false,
                    })),
                    None => Err(proto_err("200 without Content-Length: size unknown")),
                }
            }
            404 | 410 => Ok(None),
            _ => Err(HttpError::from_resp(&resp)),
        }
    }

    /// Reads exactly `buf.len()` bytes at `off` of a blob known as `probed`
    /// (the caller keeps `off + buf.len() <= probed.size`).
    pub fn get_range(
        &self,
        url: &str,
        headers: &Headers,
        probed: &Probed,
        off: u64,
        buf: &mut [u8],
        deadline: Instant,
    ) -> Result<(), HttpError> {
        if buf.is_empty() {
            return Ok(());
        }
        let last = off + buf.len() as u64 - 1;
        if last >= probed.size {
            return Err(proto_err(format!(
                "read [{off}, {last}] past the blob's size {}",
                probed.size
            )));
        }
        let mut h = headers.clone();
        h.push(("Range", format!("bytes={off}-{last}")));
        if let Some(e) = &probed.etag {
            h.push(("If-Range", e.clone()));
        }
        let mut resp = self.get(url, &h, deadline)?;
        let status = resp.status();
        match status.as_u16() {
            206 => {}
            200 => {
                return Err(match check_identity(resp.headers(), probed) {
                    Err(e) => e,
                    Ok(()) => HttpError::RangeIgnored,
                })
            }
            404 | 410 => return Err(HttpError::NotFound),
            _ => return Err(HttpError::from_resp(&resp)),
        }
        // No Content-Type check here: a 206 whose Content-Range is exactly
        // the range asked, of the probed total, is the blob's bytes whatever
        // type it claims (busybox httpd calls every unknown file text/html).
        let cr = header(resp.headers(), "content-range")
            .and_then(parse_content_range)
            .ok_or_else(|| proto_err("206 without a valid Content-Range"))?;
        let ContentRange::Bytes { start, end, total } = cr else {
            return Err(proto_err("206 with an unsatisfied Content-Range"));
        };
        if (start, end) != (off, last) {
            return Err(proto_err(format!(
                "asked for bytes {off}-{last}, got {start}-{end}"
            )));
        }
        if total != probed.size {
            return Err(HttpError::Changed(format!(
                "size is now {total}, was {}",
                probed.size
            )));
        }
        check_etag(resp.headers(), probed)?;
        if let Some(n) = content_length(resp.headers()) {
            if n != buf.len() as u64 {
                return Err(proto_err(format!(
                    "Content-Length {n} for a {}-byte range",
                    buf.len()
                )));
            }
        }
        read_exact_body(&mut resp, buf.len() as u64, buf)
    }
}

/// A `text/html` body is an error page, whatever the status says.
fn refuse_error_page(h: &HeaderMap) -> Result<(), HttpError> {
    match header(h, "content-type") {
        Some(t) if t.trim_start().to_ascii_lowercase().starts_with("text/html") => Err(proto_err(
            "the server sent an HTML page (an error page?), not blob data",
        )),
        _ => Ok(()),
    }
}

fn check_etag(h: &HeaderMap, probed: &Probed) -> Result<(), HttpError> {
    match (&probed.etag, strong_etag(h)) {
        (Some(a), Some(b)) if *a != b => Err(HttpError::Changed(format!("ETag {b}, was {a}"))),
        _ => Ok(()),
    }
}

/// A 200 to a ranged request: the whole blob (a server ignoring Range, or
/// `If-Range` failing because the blob changed) or an error page.
fn check_identity(h: &HeaderMap, probed: &Probed) -> Result<(), HttpError> {
    refuse_error_page(h)?;
    check_etag(h, probed)?;
    match content_length(h) {
        Some(n) if n == probed.size => Ok(()),
        Some(n) => Err(HttpError::Changed(format!(
            "200 with {n} bytes for a {}-byte blob",
            probed.size
        ))),
        None => Err(proto_err("200 without Content-Length to a ranged request")),
    }
}

/// Reads exactly `want` bytes of body into `buf[..want]`; a body that ends
/// early or is longer is an error.
fn read_exact_body(resp: &mut Response<Body>, want: u64, buf: &mut [u8]) -> Result<(), HttpError> {
    let mut r = resp.body_mut().with_config().limit(want + 1).reader();
    let want = usize::try_from(want).unwrap_or(usize::MAX).min(buf.len());
    let mut done = 0;
    while done < want {
        match r.read(&mut buf[done..want]) {
            Ok(0) => {
                return Err(HttpError::Truncated(format!(
                    "body ended after {done} of {want} bytes"
                )))
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HttpError::from_body_io(e)),
        }
    }
    // The body must end here (a longer body is a broken server).
    let mut extra = [0u8; 1];
    match r.read(&mut extra) {
        Ok(0) => Ok(()),
        Ok(_) => Err(proto_err(format!("body longer than {want} bytes"))),
        Err(e) => Err(HttpError::from_body_io(e)),
    }
}

/// Streams a whole body into `sink` (servers that ignore Range), checking
/// that it has exactly `size` bytes.
pub fn read_whole_body(
    resp: &mut Response<Body>,
    size: u64,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), HttpError> {
    let mut r = resp.body_mut().with_config().limit(size + 1).reader();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got += n as u64;
                if got > size {
                    return Err(proto_err(format!("body longer than {size} bytes")));
                }
                sink(&buf[..n]).map_err(HttpError::Io)?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HttpError::from_body_io(e)),
        }
    }
    if got < size {
        return Err(HttpError::Truncated(format!(
            "body ended after {got} of {size} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        assert_eq!(
            parse_content_range("bytes 0-0/10"),
            Some(ContentRange::Bytes {
                start: 0,
                end: 0,
                total: 10
            })
        );
        assert_eq!(
            parse_content_range("bytes */7"),
            Some(ContentRange::Unsatisfied { total: 7 })
        );
        for bad in [
            "bytes 5-4/10",
            "bytes 0-10/10",
            "bytes 0-1/*",
            "items 0-1/2",
            "bytes -1/2",
            "bytes 0-1",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }
}
