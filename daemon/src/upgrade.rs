//! Hot upgrade: a new `odd` takes the devnode and the open objects over from
//! a running one, without the cache ever being unbound.
//!
//! `odd upgrade --control PATH` asks the running odd to start the odd binary
//! found on disk (the path it was started from: after a package upgrade
//! that is the new version) with `--takeover PATH`; under `odd supervise`
//! the worker asks its supervisor (SIGUSR2), which starts the new worker.
//! The new process connects to the control socket and says `takeover`; the
//! old one stops reading requests, finishes those it has, and sends the
//! devnode fd and every object (id, volume, blob, size, anonymous fd) with
//! `SCM_RIGHTS`; the new one looks each blob up again, enters the objects,
//! answers `ok` and serves; the old one exits. Requests the old one could
//! not finish are delivered again after a `restore` from the new one.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::ClientArgs;
use crate::control::{self, Handover, ObjState};
use crate::devnode::{self, CachefilesDev};
use crate::exitcode;
use crate::objects::Object;
use crate::source::Sources;

/// What a takeover brings.
pub struct TakenOver {
    pub dev: CachefilesDev,
    pub objects: Vec<(ObjState, OwnedFd)>,
    pub unfinished: u64,
    /// Answer `ok` on it once serving.
    pub stream: UnixStream,
}

/// Connects to a running odd's control socket and takes its devnode over.
pub fn take_over(path: &Path) -> std::io::Result<TakenOver> {
    let s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    (&s).write_all_line("takeover")?;
    let (h, dev, fds) = control::recv_handover(&s)?;
    let dev = CachefilesDev::from_owned(dev).map_err(|e| std::io::Error::other(e.to_string()))?;
    info!(
        "took the devnode over from odd {} (pid {}): {} objects, {} unfinished requests",
        h.version,
        h.pid,
        h.objects.len(),
        h.unfinished
    );
    Ok(TakenOver {
        dev,
        objects: h.objects.into_iter().zip(fds).collect(),
        unfinished: h.unfinished,
        stream: s,
    })
}

trait WriteLine {
    fn write_all_line(self, l: &str) -> std::io::Result<()>;
}

impl WriteLine for &UnixStream {
    fn write_all_line(self, l: &str) -> std::io::Result<()> {
        use std::io::Write;
        let mut w = self;
        w.write_all(format!("{l}\n").as_bytes())
    }
}

/// Turns received objects back into table entries. An object whose blob
/// cannot be found again with the same size is closed instead (the kernel
/// then reopens it on the next read), so no wrong data is ever served.
pub fn rebuild_objects(list: Vec<(ObjState, OwnedFd)>, sources: &Sources) -> Vec<Object> {
    let mut out = Vec::new();
    for (st, fd) in list {
        let found = (0..sources.len()).find_map(|i| sources.lookup_in(i, &st.blob).ok().flatten());
        match found {
            Some(blob) if blob.size() == st.size => out.push(Object::new(
                st.id,
                st.volume,
                st.blob,
                blob,
                devnode::anon_fd_from_owned(fd),
            )),
            Some(blob) => warn!(
                "object {} ({:?}): the blob is now {} bytes, was {}; closing it",
                st.id,
                st.blob,
                blob.size(),
                st.size
            ),
            None => warn!(
                "object {} ({:?}): blob not found any more; closing it",
                st.id, st.blob
            ),
        }
    }
    out
}

/// Sends the devnode and `objs` to the taking-over process and waits for
/// its `ok`; returns its pid.
pub fn hand_over(
    s: &UnixStream,
    devnode: i32,
    objs: &[Arc<Object>],
    unfinished: u64,
) -> std::io::Result<u32> {
    let mut states = Vec::new();
    let mut fds = Vec::new();
    for o in objs {
        if let Some(fd) = o.file.raw_fd() {
            states.push(ObjState {
                id: o.id,
                volume: o.volume.clone(),
                blob: o.blob_name.clone(),
                size: o.size,
            });
            fds.push(fd);
        }
    }
    let h = Handover {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        unfinished,
        objects: states,
    };
    control::send_handover(s, &h, devnode, &fds)?;
    let peer = nix::sys::socket::getsockopt(s, nix::sys::socket::sockopt::PeerCredentials)
        .map(|c| c.pid() as u32)
        .unwrap_or(0);
    let mut line = String::new();
    use std::io::Read;
    let mut b = [0u8; 1];
    while (&*s).read(&mut b)? == 1 && b[0] != b'\n' {
        line.push(b[0] as char);
    }
    if line.trim() == "ok" {
        Ok(peer)
    } else {
        Err(std::io::Error::other(format!(
            "the new odd did not confirm (said {line:?})"
        )))
    }
}

/// The odd binary on disk: the path this process was started from, even if
/// that file has been replaced since (`/proc/self/exe` then ends in
/// " (deleted)").
pub fn exe_on_disk() -> PathBuf {
    let p = std::fs::read_link("/proc/self/exe")
        .map(|p| {
            let s = p.to_string_lossy();
            PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s).to_string())
        })
        .or_else(|_| std::env::current_exe());
    p.unwrap_or_else(|_| PathBuf::from("odd"))
}

/// Our command line for the new process: the same, less one-shot options,
/// plus `--takeover PATH`.
fn takeover_args(control_path: &Path) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut it = std::env::args_os().skip(1);
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--takeover" | "--ready-fd" | "--fd") => {
                it.next();
            }
            Some("--restore") => {}
            Some(s) if s.starts_with("--takeover=") || s.starts_with("--ready-fd=") => {}
            _ => out.push(a),
        }
    }
    out.push("--takeover".into());
    out.push(control_path.into());
    out
}

/// The control socket's `upgrade` command.
pub fn start_upgrade_fn(control_path: PathBuf) -> impl Fn() -> String + Send + Sync {
    move || {
        // Under `odd supervise`, the supervisor starts the new worker.
        let sup = std::env::var("ODD_SUPERVISOR_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok());
        let ppid = std::os::unix::process::parent_id();
        if sup == Some(ppid) {
            return match crate::sys::kill(ppid, libc::SIGUSR2) {
                Ok(()) => {
                    info!("upgrade requested: asked the supervisor (pid {ppid}) for a new worker");
                    format!("upgrading: supervisor {ppid} starts a new worker\n")
                }
                Err(e) => format!("error: signalling the supervisor: {e}\n"),
            };
        }
        let exe = exe_on_disk();
        let args = takeover_args(&control_path);
        match std::process::Command::new(&exe).args(&args).spawn() {
            Ok(c) => {
                info!(
                    "upgrade requested: started {} as pid {}",
                    exe.display(),
                    c.id()
                );
                format!("upgrading: started {} as pid {}\n", exe.display(), c.id())
            }
            Err(e) => {
                error!("upgrade: cannot start {}: {e}", exe.display());
                format!("error: cannot start {}: {e}\n", exe.display())
            }
        }
    }
}

fn pid_of(path: &Path, t: Duration) -> Option<u32> {
    control::request(path, "pid", t)
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// `odd upgrade`: asks, then waits until another process answers.
pub fn client_upgrade(c: &ClientArgs) -> i32 {
    let t = Duration::from_millis(c.timeout_ms.max(1));
    let Some(old) = pid_of(&c.control, t) else {
        error!("no odd answers on {}", c.control.display());
        return exitcode::FAILURE;
    };
    match control::request(&c.control, "upgrade", t) {
        Ok(a) if a.starts_with("upgrading") => print!("{a}"),
        Ok(a) => {
            error!("{}", a.trim());
            return exitcode::FAILURE;
        }
        Err(e) => {
            error!("{}: {e}", c.control.display());
            return exitcode::FAILURE;
        }
    }
    let deadline = Instant::now() + t;
    while Instant::now() < deadline {
        if let Some(new) = pid_of(&c.control, Duration::from_secs(2)) {
            if new != old {
                println!("upgraded: pid {old} -> pid {new}");
                return exitcode::OK;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    error!("no new odd answered within {t:?}");
    exitcode::FAILURE
}

/// `odd metrics`: prints the metrics text.
pub fn client_metrics(c: &ClientArgs) -> i32 {
    match control::request(
        &c.control,
        "metrics",
        Duration::from_millis(c.timeout_ms.max(1)),
    ) {
        Ok(text) => {
            print!("{text}");
            exitcode::OK
        }
        Err(e) => {
            error!("{}: {e}", c.control.display());
            exitcode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exe_path_has_no_deleted_suffix() {
        let p = exe_on_disk();
        assert!(!p.to_string_lossy().ends_with(" (deleted)"));
        assert!(p.is_absolute());
    }
}
