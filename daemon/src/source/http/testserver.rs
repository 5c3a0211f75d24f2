//! A tiny HTTP/1.1 server on 127.0.0.1 (port 0) for the client's tests, with
//! switchable misbehaviour. It only ever listens on loopback, and every
//! connection thread is shut down when the server is dropped.

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
    /// Close each connection silently after one response.
    pub drop_idle_after_one: bool,
    /// Answer with something that is not HTTP.
    pub garbage: bool,
}

struct Shared {
    behaviour: Behaviour,
    blobs: Mutex<HashMap<String, Vec<u8>>>,
    requests: AtomicUsize,
    stop: AtomicBool,
    streams: Mutex<Vec<TcpStream>>,
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
            stop: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
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
        let path = line.split(' ').nth(1).unwrap_or("").to_string();
        let mut range = None;
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
                if k.eq_ignore_ascii_case("range") {
                    range = v.trim().strip_prefix("bytes=").and_then(|v| {
                        let (a, b) = v.split_once('-')?;
                        Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
                    });
                }
            }
        }
        let n = sh.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let b = &sh.behaviour;
        if b.garbage {
            let _ = w.write_all(b"HELLO THERE\r\n\r\n");
            return;
        }
        let conn = if b.close_each { "close" } else { "keep-alive" };
        if n <= b.fail_first {
            let _ = write!(
                w,
                "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: {conn}\r\n\r\n"
            );
            continue;
        }
        let data = sh.blobs.lock().unwrap().get(&path).cloned();
        let Some(data) = data else {
            let _ = write!(w, "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: {conn}\r\n\r\nnot found");
            continue;
        };
        let len = data.len() as u64;
        let (status, extra, body) = match range {
            Some(_) if b.ignore_range => ("200 OK", String::new(), &data[..]),
            None => ("200 OK", String::new(), &data[..]),
            Some((a, _)) if a >= len => (
                "416 Range Not Satisfiable",
                format!("Content-Range: bytes */{len}\r\n"),
                &data[..0],
            ),
            Some((a, e)) => {
                let e = e.min(len - 1);
                (
                    "206 Partial Content",
                    format!("Content-Range: bytes {a}-{e}/{len}\r\n"),
                    &data[a as usize..=e as usize],
                )
            }
        };
        let framing = if b.chunked {
            "Transfer-Encoding: chunked\r\n".to_string()
        } else {
            format!("Content-Length: {}\r\n", body.len())
        };
        let _ = write!(
            w,
            "HTTP/1.1 {status}\r\n{extra}{framing}Connection: {conn}\r\n\r\n"
        );
        if b.truncate && body.len() > 1 {
            let _ = w.write_all(&body[..body.len() / 2]);
            return;
        }
        if b.chunked {
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
