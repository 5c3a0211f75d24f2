//! `odd hold`: an fd holder, for supervisors that may be killed.
//!
//! Like systemd's fd store (`FDSTORE=1`), but for systems without systemd:
//! `odd supervise --fd-holder PATH` stores its bound devnode fd here after
//! `bind`. If the supervisor is then killed (SIGKILL, OOM), the holder's
//! copy keeps the cache bound; the next `odd supervise --fd-holder PATH`
//! fetches the fd instead of binding again and its worker writes `restore`,
//! so the reads that were waiting complete. A clean stop clears the holder.
//!
//! Protocol: 6-byte commands `store\n` (with the fd attached), `fetch\n`
//! (answered `fd\n` with the fd attached, or `no\n`), `clear\n`.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::cli::HoldArgs;
use crate::control::{self, recv_with_fds, send_with_fds};
use crate::exitcode;
use crate::sys::SignalFd;

fn connect(path: &Path) -> io::Result<UnixStream> {
    let s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

/// Gives `fd` to the holder at `path`.
pub fn store(path: &Path, fd: RawFd) -> io::Result<()> {
    let s = connect(path)?;
    send_with_fds(&s, b"store\n", &[fd])?;
    let mut a = [0u8; 3];
    recv_with_fds(&s, &mut a)?;
    if &a == b"ok\n" {
        Ok(())
    } else {
        Err(io::Error::other("the holder refused the fd"))
    }
}

/// Takes the held fd back (the holder keeps its copy until `clear`).
pub fn fetch(path: &Path) -> io::Result<Option<OwnedFd>> {
    let s = connect(path)?;
    (&s).write_all(b"fetch\n")?;
    let mut a = [0u8; 3];
    let mut fds = recv_with_fds(&s, &mut a)?;
    match (&a, fds.len()) {
        (b"fd\n", 1) => Ok(fds.pop()),
        (b"no\n", 0) => Ok(None),
        _ => Err(io::Error::other("bad answer from the holder")),
    }
}

/// Makes the holder close its copy (a clean stop).
pub fn clear(path: &Path) -> io::Result<()> {
    let s = connect(path)?;
    (&s).write_all(b"clear\n")?;
    let mut a = [0u8; 3];
    recv_with_fds(&s, &mut a)?;
    Ok(())
}

/// `odd hold --socket PATH`: serves until SIGTERM/SIGINT.
pub fn run(h: &HoldArgs) -> i32 {
    let signals = match SignalFd::new(&[libc::SIGTERM, libc::SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            error!("signalfd: {e}");
            return exitcode::FAILURE;
        }
    };
    let listener = match control::bind(&h.socket, false) {
        Ok(l) => l,
        Err(e) => {
            error!("{}: {e}", h.socket.display());
            return exitcode::FAILURE;
        }
    };
    info!("holding fds on {}", h.socket.display());
    let mut held: Option<OwnedFd> = None;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: signals.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfds for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n > 0 && fds[1].revents != 0 && signals.next().is_some() {
            info!(
                "stopping; {} fd released",
                if held.is_some() { "the" } else { "no" }
            );
            let _ = std::fs::remove_file(&h.socket);
            return exitcode::OK;
        }
        if n <= 0 || fds[0].revents == 0 {
            continue;
        }
        let Ok((s, _)) = listener.accept() else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut cmd = [0u8; 6];
        let mut got = match recv_with_fds(&s, &mut cmd) {
            Ok(f) => f,
            Err(e) => {
                warn!("holder: {e}");
                continue;
            }
        };
        let r = match &cmd {
            b"store\n" if got.len() == 1 => {
                held = got.pop();
                info!("holding a devnode fd");
                (&s).write_all(b"ok\n")
            }
            b"fetch\n" => match &held {
                Some(fd) => {
                    info!("handing the held fd out");
                    send_with_fds(&s, b"fd\n", &[fd.as_raw_fd()])
                }
                None => (&s).write_all(b"no\n"),
            },
            b"clear\n" => {
                if held.take().is_some() {
                    info!("released the held fd");
                }
                (&s).write_all(b"ok\n")
            }
            _ => (&s).write_all(b"er\n"),
        };
        if let Err(e) = r {
            warn!("holder: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_fetch_clear() {
        let dir = std::env::temp_dir().join(format!("odd-hold-{}", std::process::id()));
        let sock = dir.join("h.sock");
        let args = HoldArgs {
            socket: sock.clone(),
        };
        std::thread::spawn(move || run(&args));
        for _ in 0..500 {
            if UnixStream::connect(&sock).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(fetch(&sock).unwrap().is_none());
        let f = std::fs::File::open("/dev/null").unwrap();
        store(&sock, f.as_raw_fd()).unwrap();
        drop(f);
        let got = fetch(&sock).unwrap().unwrap();
        assert_eq!(
            crate::sys::fd_link(got.as_raw_fd()).as_deref(),
            Some("/dev/null")
        );
        clear(&sock).unwrap();
        assert!(fetch(&sock).unwrap().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
