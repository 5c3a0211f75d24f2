//! A small HTTP/1.1 fixture server on 127.0.0.1 (port 0) for the client's
//! tests, with switchable hostile behaviour: servers that ignore Range,
//! answer the wrong range, a wrong total, an error page with 200, reset or
//! truncate bodies, dribble bytes, redirect, or demand authentication. It
//! only ever listens on loopback, and every connection is shut down when the
//! server is dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the server does wrong.
#[derive(Clone, Default)]
pub struct Behaviour {
    /// Answer every request with 200 and the whole body.
    pub ignore_range: bool,
    /// `Connection: close` after each response.
    pub close_each: bool,
    /// Chunked transfer encoding.
    pub chunked: bool,
    /// Answer the first N requests with 500.
    pub fail_first: usize,
    /// Send half of every body longer than one byte, then close.
    pub truncate: bool,
    /// Send half of every body longer than one byte, then reset (RST).
    pub reset: bool,
    /// Close each connection silently after one response.
    pub drop_idle_after_one: bool,
    /// Answer with something that is not HTTP.
    pub garbage: bool,
    /// After the probe: 206 with a Content-Range total one larger.
    pub wrong_total: bool,
    /// After the probe: 206 for a range starting 4096 bytes later.
    pub wrong_start: bool,
    /// After the probe: 200 with an HTML error page.
    pub html_200: bool,
    /// After the probe: 200 with a body of the wrong length (not HTML).
    pub short_200: bool,
    /// Write bodies one byte every this long.
    pub dribble: Option<Duration>,
    /// Send this ETag (quoted) ...
    pub etag: Option<String>,
    /// ... and a different one from request N on (the blob "changed").
    pub etag_changes_at: Option<usize>,
    /// Answer 401 unless `Authorization: Basic base64(user:pass)`.
    pub basic_auth: Option<String>,
    /// Answer 401 with a Bearer challenge unless a token from `/token` is
    /// presented; tokens live `token_life` seconds (expires_in).
    pub bearer: bool,
    pub token_life: u64,
    /// Answer paths outside `/store/` with 307 to `/store/<path>`.
    pub redirect: bool,
    /// Like busybox httpd: `Content-Type: text/html` for every blob, and
    /// a range ending at 0 (`bytes=0-0`) taken as open-ended.
    pub busybox: bool,
}

/// One request as the server saw it.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub path: String,
    pub range: Option<(u64, u64)>,
    pub if_range: Option<String>,
    pub authorization: Option<String>,
}

struct Shared {
    behaviour: Behaviour,
    blobs: Mutex<HashMap<String, Vec<u8>>>,
    requests: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    tokens: Mutex<Vec<(String, std::time::Instant)>>,
    stop: AtomicBool,
    streams: Mutex<Vec<TcpStream>>,
    addr: SocketAddr,
}

pub struct TestServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start(behaviour: Behaviour) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            behaviour,
            blobs: Mutex::new(HashMap::new()),
            requests: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            tokens: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
            addr,
        });
        let sh = shared.clone();
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let Ok(c) = stream.try_clone() {
                    sh.streams.lock().unwrap().push(c);
                }
                let sh = sh.clone();
                std::thread::spawn(move || serve(&sh, stream));
            }
        });
        TestServer {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    pub fn with_blob(self, path: &str, data: Vec<u8>) -> TestServer {
        self.shared.blobs.lock().unwrap().insert(path.into(), data);
        self
    }

    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for s in self.shared.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn serve(sh: &Shared, stream: TcpStream) {
    let other = stream.try_clone();
    serve_conn(sh, stream);
    // The registry in `Shared` holds another handle: close the socket for real.
    if let Ok(s) = other {
        let _ = s.shutdown(Shutdown::Both);
    }
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn serve_conn(sh: &Shared, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(mut w) = stream.try_clone() else {
        return;
    };
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let target = line.split(' ').nth(1).unwrap_or("").to_string();
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target.clone(), String::new()),
        };
        let mut seen = Seen {
            path: path.clone(),
            ..Default::default()
        };
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let v = v.trim();
                if k.eq_ignore_ascii_case("range") {
                    seen.range = v.strip_prefix("bytes=").and_then(|v| {
                        let (a, b) = v.split_once('-')?;
                        Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
                    });
                } else if k.eq_ignore_ascii_case("if-range") {
                    seen.if_range = Some(v.to_string());
                } else if k.eq_ignore_ascii_case("authorization") {
                    seen.authorization = Some(v.to_string());
                }
            }
        }
        sh.seen.lock().unwrap().push(seen.clone());
        let n = sh.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let b = &sh.behaviour;
        if b.garbage {
            let _ = w.write_all(b"HELLO THERE\r\n\r\n");
            return;
        }
        let conn = if b.close_each { "close" } else { "keep-alive" };
        let simple = |w: &mut TcpStream, status: &str, extra: &str, body: &str| {
            let _ = write!(
                w,
                "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: {conn}\r\n\r\n{body}",
                body.len()
            );
        };
        if n <= b.fail_first {
            simple(&mut w, "500 Oops", "", "");
            continue;
        }
        // Token endpoint.
        if path == "/token" {
            if let Some(cred) = &b.basic_auth {
                if seen.authorization.as_deref() != Some(&format!("Basic {}", b64(cred))) {
                    simple(&mut w, "401 Unauthorized", "", "");
                    continue;
                }
            }
            let tok = format!("tok{n}");
            let life = b.token_life.max(1);
            sh.tokens.lock().unwrap().push((
                tok.clone(),
                std::time::Instant::now() + Duration::from_secs(life),
            ));
            let _ = query;
            let body = format!("{{\"token\":\"{tok}\",\"expires_in\":{life}}}");
            simple(
                &mut w,
                "200 OK",
                "Content-Type: application/json\r\n",
                &body,
            );
            continue;
        }
        if b.bearer {
            let ok = seen
                .authorization
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
                .is_some_and(|t| {
                    sh.tokens
                        .lock()
                        .unwrap()
                        .iter()
                        .any(|(k, exp)| k == t && *exp > std::time::Instant::now())
                });
            if !ok {
                let ch = format!(
                    "WWW-Authenticate: Bearer realm=\"http://{}/token\",service=\"test\",scope=\"repository:r:pull\"\r\n",
                    sh.addr
                );
                simple(&mut w, "401 Unauthorized", &ch, "");
                continue;
            }
        } else if let Some(cred) = &b.basic_auth {
            if seen.authorization.as_deref() != Some(&format!("Basic {}", b64(cred))) {
                simple(
                    &mut w,
                    "401 Unauthorized",
                    "WWW-Authenticate: Basic realm=\"test\"\r\n",
                    "",
                );
                continue;
            }
        }
        let path = if b.redirect {
            match path.strip_prefix("/store") {
                Some(p) => p.to_string(),
                None => {
                    let loc = format!("Location: http://{}/store{path}\r\n", sh.addr);
                    simple(&mut w, "307 Temporary Redirect", &loc, "");
                    continue;
                }
            }
        } else {
            path
        };
        let data = sh.blobs.lock().unwrap().get(&path).cloned();
        let Some(data) = data else {
            simple(&mut w, "404 Not Found", "", "not found");
            continue;
        };
        let etag = match (&b.etag, b.etag_changes_at) {
            (Some(e), Some(at)) if n >= at => format!("ETag: \"{e}-new\"\r\n"),
            (Some(e), _) => format!("ETag: \"{e}\"\r\n"),
            _ => String::new(),
        };
        let len = data.len() as u64;
        let probe = seen.range == Some((0, 0));
        if !probe && seen.range.is_some() && b.html_200 {
            let page = "<html><body>Service temporarily unavailable</body></html>";
            simple(
                &mut w,
                "200 OK",
                &format!("{etag}Content-Type: text/html\r\n"),
                page,
            );
            continue;
        }
        if !probe && seen.range.is_some() && b.short_200 {
            simple(&mut w, "200 OK", &etag, "abc");
            continue;
        }
        let (status, extra, body) = match seen.range {
            Some(_) if b.ignore_range => ("200 OK", String::new(), &data[..]),
            None => ("200 OK", String::new(), &data[..]),
            Some((a, _)) if a >= len => (
                "416 Range Not Satisfiable",
                format!("Content-Range: bytes */{len}\r\n"),
                &data[..0],
            ),
            Some((a, e)) => {
                let e = if b.busybox && e == 0 {
                    len - 1
                } else {
                    e.min(len - 1)
                };
                let (mut sa, mut total) = (a, len);
                if !probe && b.wrong_start {
                    sa = (a + 4096).min(e);
                }
                if !probe && b.wrong_total {
                    total = len + 1;
                }
                (
                    "206 Partial Content",
                    format!("Content-Range: bytes {sa}-{e}/{total}\r\n"),
                    &data[sa as usize..=e as usize],
                )
            }
        };
        let framing = if b.chunked {
            "Transfer-Encoding: chunked\r\n".to_string()
        } else {
            format!("Content-Length: {}\r\n", body.len())
        };
        let ctype = if b.busybox {
            "text/html"
        } else {
            "application/octet-stream"
        };
        let _ = write!(
            w,
            "HTTP/1.1 {status}\r\n{extra}{etag}Content-Type: {ctype}\r\n\
             {framing}Connection: {conn}\r\n\r\n"
        );
        if (b.truncate || b.reset) && body.len() > 1 {
            let _ = w.write_all(&body[..body.len() / 2]);
            let _ = w.flush();
            if b.reset {
                // SO_LINGER 0: close() sends RST instead of FIN.
                let _ = socket2_linger0(&w);
            }
            return;
        }
        if let Some(d) = b.dribble {
            for c in body.chunks(1) {
                if w.write_all(c).is_err() || sh.stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(d);
            }
        } else if b.chunked {
            for c in body.chunks(7000) {
                let _ = write!(w, "{:x};ext=1\r\n", c.len());
                let _ = w.write_all(c);
                let _ = w.write_all(b"\r\n");
            }
            let _ = w.write_all(b"0\r\nX-Trailer: 1\r\n\r\n");
        } else {
            let _ = w.write_all(body);
        }
        if b.close_each || b.drop_idle_after_one {
            return;
        }
    }
}

fn socket2_linger0(s: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `s` is an open socket; `l` is a valid linger struct of the
    // size passed.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
