//! The control socket (metrics, upgrade, takeover) and fd passing.
//!
//! A running `odd serve --control PATH` answers one-line commands on a Unix
//! stream socket:
//!
//! * `metrics` (or an HTTP `GET /metrics`): the Prometheus text;
//! * `pid`: the serving process's pid;
//! * `upgrade`: start the odd binary found on disk (or, under a supervisor,
//!   ask the supervisor to) with `--takeover PATH`;
//! * `takeover`: sent by that new process; this one stops reading the
//!   devnode, finishes the requests it has, and sends the devnode fd and
//!   every object's anonymous fd with its state over the connection
//!   (`SCM_RIGHTS`), then exits once the new process says `ok`. The cache
//!   stays bound throughout: the devnode file is never closed.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};

use crate::sys::EventFd;

/// Most fds sent in one message (the kernel's SCM_MAX_FD is 253).
const FDS_PER_MSG: usize = 200;
const MAGIC: u32 = 0x4f44_4431; // "ODD1"

/// Sends `data` with `fds` attached, in one `sendmsg`.
pub fn send_with_fds(s: &UnixStream, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let iov = [IoSlice::new(data)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    let n = sendmsg::<()>(s.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)
        .map_err(io::Error::from)?;
    if n < data.len() {
        // The fds went with the first byte; the rest is plain data.
        (&*s).write_all(&data[n..])?;
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes; fds attached to them are returned
/// (close-on-exec).
pub fn recv_with_fds(s: &UnixStream, buf: &mut [u8]) -> io::Result<Vec<OwnedFd>> {
    let mut fds = Vec::new();
    let mut cmsg = nix::cmsg_space!([RawFd; 253]);
    let n = {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<()>(
            s.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(v) = c {
                for fd in v {
                    // SAFETY: the kernel installed these descriptors in this
                    // process for this message; nothing else owns them.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
            return Err(io::Error::other("fds truncated (too many in one message)"));
        }
        msg.bytes
    };
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    (&*s).read_exact(&mut buf[n..])?;
    Ok(fds)
}

/// One object handed over.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ObjState {
    pub id: u32,
    pub volume: String,
    pub blob: String,
    pub size: u64,
}

/// What the old process sends first.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Handover {
    pub pid: u32,
    pub version: String,
    /// Requests the old process read but did not answer: the new one
    /// writes `restore` so the kernel delivers them again.
    pub unfinished: u64,
    pub objects: Vec<ObjState>,
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + payload.len());
    v.extend_from_slice(&MAGIC.to_le_bytes());
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// Sends the devnode, the objects and their fds.
pub fn send_handover(
    s: &UnixStream,
    h: &Handover,
    devnode: RawFd,
    fds: &[RawFd],
) -> io::Result<()> {
    assert_eq!(h.objects.len(), fds.len());
    let text = toml::to_string(h).map_err(io::Error::other)?;
    send_with_fds(s, &frame(text.as_bytes()), &[devnode])?;
    for chunk in fds.chunks(FDS_PER_MSG) {
        send_with_fds(s, &frame(&[]), chunk)?;
    }
    Ok(())
}

fn recv_frame(s: &UnixStream) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut hdr = [0u8; 8];
    let fds = recv_with_fds(s, &mut hdr)?;
    let magic = u32::from_le_bytes(hdr[..4].try_into().unwrap_or_default());
    if magic != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad handover frame",
        ));
    }
    let len = u32::from_le_bytes(hdr[4..].try_into().unwrap_or_default()) as usize;
    if len > 64 << 20 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "handover frame too large",
        ));
    }
    let mut payload = vec![0u8; len];
    (&*s).read_exact(&mut payload)?;
    Ok((payload, fds))
}

/// Receives what [`send_handover`] sent: state, devnode fd, object fds.
pub fn recv_handover(s: &UnixStream) -> io::Result<(Handover, OwnedFd, Vec<OwnedFd>)> {
    let (payload, mut fds) = recv_frame(s)?;
    let text = String::from_utf8(payload).map_err(io::Error::other)?;
    let h: Handover = toml::from_str(&text).map_err(io::Error::other)?;
    if fds.len() != 1 {
        return Err(io::Error::other(format!(
            "expected the devnode fd, got {} fds",
            fds.len()
        )));
    }
    let dev = fds.remove(0);
    let mut objs = Vec::with_capacity(h.objects.len());
    while objs.len() < h.objects.len() {
        let (_, fds) = recv_frame(s)?;
        if fds.is_empty() {
            return Err(io::Error::other("handover frame without fds"));
        }
        objs.extend(fds);
    }
    if objs.len() != h.objects.len() {
        return Err(io::Error::other("more fds than objects"));
    }
    Ok((h, dev, objs))
}

/// Sends a one-line command and returns the whole answer.
pub fn request(path: &Path, cmd: &str, timeout: Duration) -> io::Result<String> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(format!("{cmd}\n").as_bytes())?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Reads one line (up to 512 bytes) from `s`.
fn read_line(s: &UnixStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 512 {
        match (&*s).read(&mut b)? {
            0 => break,
            _ if b[0] == b'\n' => break,
            _ => line.push(b[0]),
        }
    }
    Ok(String::from_utf8_lossy(&line).trim().to_string())
}

/// What the control socket can do, supplied by `serve`.
pub struct Handlers {
    pub metrics: Box<dyn Fn() -> String + Send + Sync>,
    /// Starts an upgrade; returns a line for the client.
    pub upgrade: Box<dyn Fn() -> String + Send + Sync>,
    /// A takeover connection is parked here for the main thread, which is
    /// woken through `stop`.
    pub takeover: Arc<Mutex<Option<UnixStream>>>,
    pub stop: Arc<EventFd>,
}

/// The listening control socket and its thread.
pub struct Control {
    path: PathBuf,
    quit: Arc<EventFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Binds `path`, replacing a stale socket (one nobody answers on). With
/// `replace`, an answering one is replaced too (we are taking over from it).
pub fn bind(path: &Path, replace: bool) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if !replace && UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by a running odd", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    UnixListener::bind(path)
}

impl Control {
    pub fn start(path: &Path, listener: UnixListener, h: Handlers) -> io::Result<Control> {
        listener.set_nonblocking(true)?;
        let quit = Arc::new(EventFd::new()?);
        let quit2 = quit.clone();
        let thread = std::thread::Builder::new()
            .name("odd-control".into())
            .spawn(move || serve_control(listener, &h, &quit2))?;
        Ok(Control {
            path: path.to_path_buf(),
            quit,
            thread: Some(thread),
        })
    }

    /// Stops the thread; with `unlink`, removes the socket file.
    pub fn stop(mut self, unlink: bool) {
        self.quit.notify();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if unlink {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn serve_control(listener: UnixListener, h: &Handlers, quit: &EventFd) {
    loop {
        let mut fds = [
            libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: quit.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfds for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 1000) };
        if n > 0 && fds[1].revents != 0 {
            return;
        }
        let Ok((s, _)) = listener.accept() else {
            continue;
        };
        let _ = s.set_nonblocking(false);
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
        let line = match read_line(&s) {
            Ok(l) => l,
            Err(e) => {
                debug!("control: {e}");
                continue;
            }
        };
        let mut w = &s;
        let answer = match line.as_str() {
            "metrics" => (h.metrics)(),
            l if l.starts_with("GET /metrics") => {
                let body = (h.metrics)();
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            }
            l if l.starts_with("GET ") => {
                "HTTP/1.0 404 Not Found\r\nConnection: close\r\n\r\n".into()
            }
            "pid" => format!("{}\n", std::process::id()),
            "upgrade" => (h.upgrade)(),
            "takeover" => {
                info!("control: a new odd asks to take over; handing over");
                let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
                *h.takeover.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
                h.stop.notify();
                continue;
            }
            other => format!("error: unknown command {other:?} (metrics, pid, upgrade)\n"),
        };
        let _ = w.write_all(answer.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handover_round_trip_with_fds() {
        let (a, b) = UnixStream::pair().unwrap();
        let dev = std::fs::File::open("/dev/null").unwrap();
        let files: Vec<_> = (0..(FDS_PER_MSG + 7))
            .map(|_| std::fs::File::open("/proc/self/exe").unwrap())
            .collect();
        let h = Handover {
            pid: 1,
            version: "x".into(),
            unfinished: 2,
            objects: (0..files.len() as u32)
                .map(|i| ObjState {
                    id: i,
                    volume: "erofs,a b".into(),
                    blob: format!("b{i}"),
                    size: u64::from(i) * 4096,
                })
                .collect(),
        };
        let raw: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
        let t = std::thread::spawn({
            let h = h.clone();
            move || send_handover(&a, &h, dev.as_raw_fd(), &raw)
        });
        let (got, dev2, objs) = recv_handover(&b).unwrap();
        t.join().unwrap().unwrap();
        assert_eq!(got, h);
        assert_eq!(objs.len(), files.len());
        assert_eq!(
            crate::sys::fd_link(dev2.as_raw_fd()).as_deref(),
            Some("/dev/null")
        );
    }

    #[test]
    fn control_answers_metrics_and_parks_takeover() {
        let dir = std::env::temp_dir().join(format!("odd-ctl-{}", std::process::id()));
        let path = dir.join("c.sock");
        let stop = Arc::new(EventFd::new().unwrap());
        let parked = Arc::new(Mutex::new(None));
        let l = bind(&path, false).unwrap();
        let c = Control::start(
            &path,
            l,
            Handlers {
                metrics: Box::new(|| "odd_x 1\n".into()),
                upgrade: Box::new(|| "started\n".into()),
                takeover: parked.clone(),
                stop: stop.clone(),
            },
        )
        .unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(request(&path, "metrics", t).unwrap(), "odd_x 1\n");
        let http = request(&path, "GET /metrics HTTP/1.0", t).unwrap();
        assert!(http.starts_with("HTTP/1.0 200 OK\r\n") && http.ends_with("odd_x 1\n"));
        assert_eq!(request(&path, "upgrade", t).unwrap(), "started\n");
        assert!(request(&path, "bogus", t).unwrap().starts_with("error"));
        // A second odd cannot bind an answered socket.
        assert!(bind(&path, false).is_err());
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"takeover\n").unwrap();
        for _ in 0..500 {
            if parked.lock().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(parked.lock().unwrap().is_some());
        c.stop(true);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
