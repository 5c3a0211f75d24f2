//! Blobs fetched with HTTP/1.1 Range GETs.
//!
//! A deliberately small client over `std::net::TcpStream`: plain `http://`
//! only, keep-alive connections kept in a small idle pool, connect and I/O
//! timeouts, and bounded retries with exponential back-off for transient
//! failures (connection errors, 5xx, 429, truncated bodies). A server that is
//! gone turns into an error within `timeout * (retries + 1)` plus back-off,
//! never a hang. Responses are parsed with hard limits on line and header
//! sizes; nothing received from the network can panic the daemon.
//!
//! * this module: configuration, URLs, errors, and the [`Source`]/[`Blob`];
//! * [`client`]: connections, requests and retries;
//! * [`wire`]: response parsing (status line, headers, body framing).

mod client;
mod wire;

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::{Blob, Source};
use crate::keys;
pub use client::HttpClient;

/// Client tunables (`--http-timeout-ms`, `--http-retries`).
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Connect timeout, and read/write timeout per socket operation.
    pub timeout: Duration,
    /// Extra attempts after the first for retryable failures.
    pub retries: u32,
    /// First back-off delay; doubles per retry up to 5 s.
    pub backoff: Duration,
    /// Idle keep-alive connections kept per server.
    pub max_idle: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            timeout: Duration::from_secs(10),
            retries: 3,
            backoff: Duration::from_millis(100),
            max_idle: 8,
        }
    }
}

/// An `http://host[:port][/prefix]` base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash (`""` or `/a/b`).
    pub prefix: String,
}

impl BaseUrl {
    pub fn parse(s: &str) -> Result<BaseUrl, String> {
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| format!("{s}: not an http:// URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(format!("{s}: credentials in URLs are not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{s}: bad IPv6 host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("{s}: bad authority")),
            };
            (h, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{s}: no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("{s}: bad port {p:?}"))?,
            None => 80,
        };
        if path.contains(['?', '#', ' ']) {
            return Err(format!(
                "{s}: query strings and fragments are not supported"
            ));
        }
        Ok(BaseUrl {
            host: host.to_owned(),
            port,
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The `Host:` header value.
    fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Request path for blob `name`.
    pub fn blob_path(&self, name: &str) -> String {
        format!("{}/{}", self.prefix, keys::url_segment(name))
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.prefix)
    }
}

/// Why a request failed.
#[derive(Debug)]
pub enum HttpError {
    /// Connect, send or receive failed (includes timeouts).
    Io(io::Error),
    /// The response could not be understood or ended early.
    Protocol(String),
    /// An unexpected status code.
    Status(u16),
    /// 404 or 410.
    NotFound,
}

impl HttpError {
    /// Whether trying again may help.
    pub fn retryable(&self) -> bool {
        match self {
            HttpError::Io(_) | HttpError::Protocol(_) => true,
            HttpError::Status(s) => *s >= 500 || *s == 429 || *s == 408,
            HttpError::NotFound => false,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Io(e) => write!(f, "{e}"),
            HttpError::Protocol(m) => write!(f, "bad response: {m}"),
            HttpError::Status(s) => write!(f, "HTTP status {s}"),
            HttpError::NotFound => write!(f, "not found"),
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
        match e {
            HttpError::Io(e) => e,
            HttpError::NotFound => io::Error::new(io::ErrorKind::NotFound, "HTTP 404"),
            other => io::Error::other(other.to_string()),
        }
    }
}

/// `http://host:port/prefix`: blob `NAME` is `GET /prefix/NAME`.
pub struct HttpSource {
    client: Arc<HttpClient>,
}

impl HttpSource {
    pub fn new(url: &str, cfg: HttpConfig) -> Result<HttpSource, String> {
        let url = BaseUrl::parse(url)?;
        Ok(HttpSource {
            client: Arc::new(HttpClient::new(url, cfg)),
        })
    }
}

impl Source for HttpSource {
    fn open(&self, name: &str) -> io::Result<Option<Arc<dyn Blob>>> {
        let path = self.client.url.blob_path(name);
        match self.client.probe_size(&path)? {
            Some(size) => Ok(Some(Arc::new(HttpBlob {
                client: self.client.clone(),
                path,
                size,
            }))),
            None => Ok(None),
        }
    }

    fn describe(&self) -> String {
        self.client.url.to_string()
    }
}

struct HttpBlob {
    client: Arc<HttpClient>,
    path: String,
    size: u64,
}

impl Blob for HttpBlob {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        if off >= self.size {
            return Ok(0);
        }
        let len = usize::try_from(self.size - off)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        Ok(self.client.get_range(&self.path, off, &mut buf[..len])?)
    }

    fn describe(&self) -> String {
        format!("{}{}", self.client.url, self.path)
    }
}

#[cfg(test)]
pub mod testserver;

#[cfg(test)]
mod tests {
    use super::testserver::{Behaviour, TestServer};
    use super::*;
    use crate::source::mem::pattern;
    use crate::source::read_full;
    use std::time::Instant;

    fn quick() -> HttpConfig {
        HttpConfig {
            timeout: Duration::from_secs(2),
            retries: 2,
            backoff: Duration::from_millis(10),
            max_idle: 4,
        }
    }

    fn source(server: &TestServer, prefix: &str) -> HttpSource {
        HttpSource::new(&format!("http://{}{prefix}", server.addr), quick()).unwrap()
    }

    #[test]
    fn parses_urls() {
        let u = BaseUrl::parse("http://127.0.0.1:8080/a/b/").unwrap();
        assert_eq!(
            u,
            BaseUrl {
                host: "127.0.0.1".into(),
                port: 8080,
                prefix: "/a/b".into()
            }
        );
        assert_eq!(u.blob_path("x y"), "/a/b/x%20y");
        assert_eq!(u.to_string(), "http://127.0.0.1:8080/a/b");
        let u = BaseUrl::parse("http://[::1]:81").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("::1", 81, "")
        );
        assert_eq!(u.authority(), "[::1]:81");
        assert_eq!(BaseUrl::parse("http://h").unwrap().port, 80);
        for bad in [
            "ftp://h",
            "http://",
            "http://h:x",
            "http://h:99999",
            "http://u@h",
            "http://h/?q",
            "http://[::1",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn range_reads_with_keepalive() {
        let data = pattern(300_000, 1);
        let server =
            TestServer::start(Behaviour::default()).with_blob("/blobs/a.img", data.clone());
        let src = source(&server, "/blobs");
        let blob = src.open("a.img").unwrap().unwrap();
        assert_eq!(blob.size(), 300_000);
        let mut buf = vec![0u8; 70_000];
        for off in [0u64, 4096, 250_000, 299_999] {
            let n = read_full(&*blob, &mut buf, off).unwrap();
            let end = (off as usize + buf.len()).min(data.len());
            assert_eq!(&buf[..n], &data[off as usize..end]);
        }
        assert_eq!(read_full(&*blob, &mut buf, 300_000).unwrap(), 0);
        // One probe and four reads over a single kept-alive connection.
        assert_eq!(src.client.connects(), 1);
        assert!(src.open("missing").unwrap().is_none());
    }

    #[test]
    fn empty_blob_is_416() {
        let server = TestServer::start(Behaviour::default()).with_blob("/e", Vec::new());
        let blob = source(&server, "").open("e").unwrap().unwrap();
        assert_eq!(blob.size(), 0);
    }

    #[test]
    fn server_without_range_support() {
        let data = pattern(50_000, 2);
        let server = TestServer::start(Behaviour {
            ignore_range: true,
            ..Default::default()
        })
        .with_blob("/b", data.clone());
        let blob = source(&server, "").open("b").unwrap().unwrap();
        assert_eq!(blob.size(), 50_000);
        let mut buf = vec![0u8; 1000];
        assert_eq!(read_full(&*blob, &mut buf, 49_500).unwrap(), 500);
        assert_eq!(&buf[..500], &data[49_500..]);
    }

    #[test]
    fn chunked_and_connection_close() {
        let data = pattern(40_000, 3);
        let server = TestServer::start(Behaviour {
            chunked: true,
            close_each: true,
            ..Default::default()
        })
        .with_blob("/c", data.clone());
        let src = source(&server, "");
        let blob = src.open("c").unwrap().unwrap();
        let mut buf = vec![0u8; 30_000];
        assert_eq!(read_full(&*blob, &mut buf, 8192).unwrap(), 30_000);
        assert_eq!(&buf[..], &data[8192..38_192]);
        assert!(src.client.connects() >= 2);
    }

    #[test]
    fn retries_server_errors() {
        let data = pattern(10_000, 4);
        let server = TestServer::start(Behaviour {
            fail_first: 2,
            ..Default::default()
        })
        .with_blob("/r", data.clone());
        let blob = source(&server, "").open("r").unwrap().unwrap();
        let mut buf = vec![0u8; 4096];
        assert_eq!(read_full(&*blob, &mut buf, 0).unwrap(), 4096);
        assert_eq!(&buf[..], &data[..4096]);
    }

    #[test]
    fn truncated_bodies_fail_after_retries() {
        let server = TestServer::start(Behaviour {
            truncate: true,
            ..Default::default()
        })
        .with_blob("/t", pattern(100_000, 5));
        let src = source(&server, "");
        let blob = src.open("t").unwrap().unwrap();
        let mut buf = vec![0u8; 65536];
        let e = read_full(&*blob, &mut buf, 0).unwrap_err();
        assert!(
            e.to_string().contains("truncated") || e.to_string().contains("early"),
            "{e}"
        );
        // 1 + 2 retries, each on a new connection (the server closes them).
        assert!(server.requests() >= 4);
    }

    #[test]
    fn stale_keepalive_connection_is_replaced() {
        let data = pattern(9000, 6);
        let server = TestServer::start(Behaviour {
            drop_idle_after_one: true,
            ..Default::default()
        })
        .with_blob("/s", data.clone());
        let src = source(&server, "");
        let blob = src.open("s").unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut buf = vec![0u8; 100];
        assert_eq!(read_full(&*blob, &mut buf, 10).unwrap(), 100);
        assert_eq!(&buf[..], &data[10..110]);
        assert_eq!(src.client.connects(), 2);
    }

    #[test]
    fn server_gone_is_an_error_not_a_hang() {
        let server = TestServer::start(Behaviour::default()).with_blob("/g", pattern(5000, 7));
        let src = source(&server, "");
        let blob = src.open("g").unwrap().unwrap();
        drop(server);
        let t = Instant::now();
        let mut buf = vec![0u8; 100];
        assert!(read_full(&*blob, &mut buf, 0).is_err());
        assert!(src.open("g").is_err());
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn garbage_responses_are_errors() {
        let server = TestServer::start(Behaviour {
            garbage: true,
            ..Default::default()
        })
        .with_blob("/x", pattern(10, 8));
        let e = source(&server, "").open("x").err().unwrap();
        assert!(e.to_string().contains("bad"), "{e}");
    }

    #[test]
    fn silent_server_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cfg = HttpConfig {
            timeout: Duration::from_millis(200),
            retries: 1,
            ..quick()
        };
        let src = HttpSource::new(&format!("http://{addr}"), cfg).unwrap();
        let t = Instant::now();
        assert!(src.open("x").is_err());
        assert!(t.elapsed() < Duration::from_secs(3));
        drop(listener);
    }
}
