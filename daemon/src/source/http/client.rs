//! The keep-alive HTTP/1.1 client: a small idle-connection pool, Range
//! GETs, and retries with exponential back-off.

use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::wire::{is_reset, proto_err, read_head, Body, ContentRange, Head, HeadError};
use super::{BaseUrl, HttpConfig, HttpError};

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A pooled connection.
struct Conn {
    r: BufReader<TcpStream>,
}

/// A keep-alive HTTP/1.1 client for one server.
pub struct HttpClient {
    pub(super) url: BaseUrl,
    cfg: HttpConfig,
    idle: Mutex<Vec<Conn>>,
    /// Connections opened so far (for tests and stats).
    connects: AtomicU64,
    warned_no_range: AtomicBool,
}

impl HttpClient {
    pub fn new(url: BaseUrl, cfg: HttpConfig) -> HttpClient {
        HttpClient {
            url,
            cfg,
            idle: Mutex::new(Vec::new()),
            connects: AtomicU64::new(0),
            warned_no_range: AtomicBool::new(false),
        }
    }

    #[cfg(test)]
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    fn addrs(&self) -> io::Result<Vec<SocketAddr>> {
        // A static binary cannot use glibc's NSS for names; numeric addresses
        // never touch the resolver, and "localhost" is spelled out here.
        let host = if self.url.host.eq_ignore_ascii_case("localhost") {
            "127.0.0.1"
        } else {
            self.url.host.as_str()
        };
        Ok((host, self.url.port).to_socket_addrs()?.collect())
    }

    fn connect(&self) -> Result<Conn, HttpError> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "host has no addresses");
        for addr in self.addrs()? {
            match TcpStream::connect_timeout(&addr, self.cfg.timeout) {
                Ok(s) => {
                    s.set_read_timeout(Some(self.cfg.timeout))?;
                    s.set_write_timeout(Some(self.cfg.timeout))?;
                    s.set_nodelay(true)?;
                    self.connects.fetch_add(1, Ordering::Relaxed);
                    return Ok(Conn {
                        r: BufReader::with_capacity(64 * 1024, s),
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(HttpError::Io(io::Error::new(
            last.kind(),
            format!("connect to {}: {last}", self.url),
        )))
    }

    fn checkout(&self) -> Option<Conn> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn checkin(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.cfg.max_idle {
            idle.push(conn);
        }
    }

    /// Sends one GET with a Range header and hands the response to `handle`.
    /// A pooled connection the server closed while idle is replaced once.
    fn exchange<T>(
        &self,
        path: &str,
        first: u64,
        last: u64,
        handle: &mut dyn FnMut(&Head, &mut Body<'_>) -> Result<T, HttpError>,
    ) -> Result<T, HttpError> {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nRange: bytes={first}-{last}\r\n\
             User-Agent: odd/{}\r\nAccept-Encoding: identity\r\n\r\n",
            self.url.authority(),
            env!("CARGO_PKG_VERSION")
        );
        let mut pooled = self.checkout();
        loop {
            let reused = pooled.is_some();
            let mut conn = match pooled.take() {
                Some(c) => c,
                None => self.connect()?,
            };
            if let Err(e) = conn.r.get_mut().write_all(req.as_bytes()) {
                if reused && is_reset(&e) {
                    continue;
                }
                return Err(e.into());
            }
            let head = match read_head(&mut conn.r) {
                Ok(h) => h,
                Err(HeadError::Stale(_)) if reused => continue,
                Err(HeadError::Stale(e)) => {
                    return Err(HttpError::Io(io::Error::new(
                        e.kind(),
                        "connection closed before a response",
                    )))
                }
                Err(HeadError::Other(e)) => return Err(e),
            };
            let mut body = Body::new(&mut conn.r, &head);
            let result = handle(&head, &mut body)?;
            let reusable = !head.close && body.drain();
            if reusable {
                self.checkin(conn);
            }
            return Ok(result);
        }
    }

    /// Runs `f` until it succeeds, fails for good, or retries run out.
    fn retrying<T>(
        &self,
        what: &str,
        mut f: impl FnMut() -> Result<T, HttpError>,
    ) -> Result<T, HttpError> {
        let mut delay = self.cfg.backoff;
        let mut attempt = 0;
        loop {
            match f() {
                Ok(v) => return Ok(v),
                Err(e) if e.retryable() && attempt < self.cfg.retries => {
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

    /// The size of the resource at `path`, `None` if it does not exist.
    pub fn probe_size(&self, path: &str) -> Result<Option<u64>, HttpError> {
        let what = format!("probe {}{path}", self.url);
        self.retrying(&what, || {
            self.exchange(path, 0, 0, &mut |head, body| match head.status {
                206 => match head.content_range {
                    Some(ContentRange::Bytes { total: Some(t), .. }) => {
                        body.drain();
                        Ok(Some(t))
                    }
                    _ => Err(proto_err("206 without a usable Content-Range")),
                },
                // The server ignores Range: the full length is the size. The
                // body is not read; the connection is dropped (not drained).
                200 => match head.content_length {
                    Some(n) if !head.chunked => Ok(Some(n)),
                    _ => Err(proto_err("200 without Content-Length: size unknown")),
                },
                416 => match head.content_range {
                    Some(ContentRange::Unsatisfied { total }) => Ok(Some(total)),
                    _ => Ok(Some(0)),
                },
                404 | 410 => Ok(None),
                s => Err(HttpError::Status(s)),
            })
        })
    }

    /// Reads `buf.len()` bytes (or fewer, at the end of the resource) at `off`.
    /// Returns the bytes read; the caller clips `buf` to the known size.
    pub fn get_range(&self, path: &str, off: u64, buf: &mut [u8]) -> Result<usize, HttpError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let last = off.saturating_add(buf.len() as u64 - 1);
        let what = format!("GET {}{path} bytes={off}-{last}", self.url);
        self.retrying(&what, || {
            self.exchange(path, off, last, &mut |head, body| match head.status {
                206 => {
                    let Some(ContentRange::Bytes { start, end, .. }) = head.content_range else {
                        return Err(proto_err("206 without a usable Content-Range"));
                    };
                    if start != off {
                        return Err(proto_err(format!("asked for offset {off}, got {start}")));
                    }
                    let avail = usize::try_from(end.saturating_sub(start).saturating_add(1))
                        .unwrap_or(usize::MAX);
                    let want = avail.min(buf.len());
                    let n = body.read_full(&mut buf[..want])?;
                    if n < want {
                        return Err(proto_err(format!("body truncated at {n} of {want} bytes")));
                    }
                    Ok(n)
                }
                200 => {
                    if !self.warned_no_range.swap(true, Ordering::Relaxed) {
                        warn!("{} ignores Range requests; reading whole bodies", self.url);
                    }
                    if body.skip(off)? < off {
                        return Ok(0);
                    }
                    body.read_full(buf)
                }
                416 => Ok(0),
                404 | 410 => Err(HttpError::NotFound),
                s => Err(HttpError::Status(s)),
            })
        })
    }
}
