//! Process-level tests of the `odd` binary: argument errors, devnode errors,
//! signals and the supervisor's restart loop.
//!
//! There is no `/dev/cachefiles` on a build host, so the lifecycle tests use
//! a pty master (`/dev/ptmx`) as a stand-in devnode: a pollable character
//! device that accepts the setup commands. The pty echoes those commands
//! back, which the daemon logs as malformed messages and ignores. These tests
//! are skipped when `/dev/ptmx` cannot be opened.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const ODD: &str = env!("CARGO_BIN_EXE_odd");

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("odd-it-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn have_ptmx() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/ptmx")
        .is_ok()
}

/// The stderr lines of a running `odd`, kept so that a line can be found
/// even if it arrived before the test started looking for it (the worker's
/// and the supervisor's lines race each other).
struct Log {
    rx: Receiver<String>,
    seen: Vec<String>,
}

impl Log {
    /// Waits until some line (seen before or arriving within `timeout`)
    /// contains `pat`; returns it.
    fn wait_for(&mut self, pat: &str, timeout: Duration) -> Option<String> {
        if let Some(l) = self.seen.iter().find(|l| l.contains(pat)) {
            return Some(l.clone());
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(pat) {
                        return Some(l);
                    }
                }
                Err(_) => break,
            }
        }
        eprintln!("{pat:?} not found in:\n{}", self.seen.join("\n"));
        None
    }
}

/// Starts `odd` with stderr captured line by line.
fn spawn(args: &[&str]) -> (Child, Log) {
    let mut child = Command::new(ODD)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn odd");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (
        child,
        Log {
            rx,
            seen: Vec::new(),
        },
    )
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child we started.
    unsafe { libc::kill(pid as i32, sig) };
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return s.code();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(ODD).args(args).output().expect("run odd");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn argument_errors_exit_2() {
    let d = tmpdir("args");
    let dir = d.to_str().unwrap();
    for args in [
        vec!["serve", "--dir", dir],
        vec!["serve", "--dir", dir, "--source", "ftp://x"],
        vec![
            "serve",
            "--dir",
            dir,
            "--source",
            "dir:/x",
            "--persona",
            "bogus",
        ],
        vec![
            "serve",
            "--dir",
            dir,
            "--source",
            "dir:/x",
            "--persona-rate",
            "2",
        ],
        vec!["serve", "--source", "dir:/x"],
        vec!["supervise", "--source", "dir:/x"],
    ] {
        let (code, err) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn devnode_problems_are_clear_errors() {
    let d = tmpdir("dev");
    let dir = d.join("cache");
    let dir = dir.to_str().unwrap();
    let (code, err) = run(&[
        "serve",
        "--dir",
        dir,
        "--devnode",
        "/nonexistent/cachefiles",
        "--source",
        "dir:/tmp",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cachefiles module"), "{err}");
    let (code, err) = run(&["serve", "--fd", "987", "--source", "dir:/tmp"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("inherited devnode fd 987"), "{err}");
    let (code, err) = run(&[
        "serve",
        "--dir",
        dir,
        "--devnode",
        "/proc/self/exe",
        "--source",
        "dir:/tmp",
    ]);
    assert_eq!(code, Some(1), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn serve_reports_stats_and_stops_on_sigterm() {
    if !have_ptmx() {
        eprintln!("skipped: no /dev/ptmx");
        return;
    }
    let d = tmpdir("serve");
    let cache = d.join("cache");
    let (mut child, mut log) = spawn(&[
        "serve",
        "--dir",
        cache.to_str().unwrap(),
        "--devnode",
        "/dev/ptmx",
        "--source",
        &format!("dir:{}", d.display()),
    ]);
    assert!(log
        .wait_for("serving with 4 worker threads", Duration::from_secs(10))
        .is_some());
    assert!(cache.is_dir());
    signal(child.id(), libc::SIGUSR1);
    assert!(log
        .wait_for("statistics:", Duration::from_secs(5))
        .is_some());
    signal(child.id(), libc::SIGTERM);
    assert!(log
        .wait_for("SIGTERM received", Duration::from_secs(5))
        .is_some());
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn supervisor_restarts_a_killed_worker() {
    if !have_ptmx() {
        eprintln!("skipped: no /dev/ptmx");
        return;
    }
    let d = tmpdir("sup");
    let (mut sup, mut log) = spawn(&[
        "supervise",
        "--dir",
        d.join("cache").to_str().unwrap(),
        "--devnode",
        "/dev/ptmx",
        "--source",
        &format!("dir:{}", d.display()),
        "--threads",
        "2",
    ]);
    let line = log
        .wait_for("worker pid", Duration::from_secs(10))
        .expect("worker started");
    let pid: u32 = line
        .split("worker pid ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("pid in log line");
    assert!(log
        .wait_for("serving with 2 worker threads", Duration::from_secs(10))
        .is_some());
    signal(pid, libc::SIGKILL);
    assert!(log
        .wait_for("killed by signal 9", Duration::from_secs(10))
        .is_some());
    assert!(log
        .wait_for("started (restore)", Duration::from_secs(10))
        .is_some());
    assert!(log
        .wait_for(
            "wrote 'restore' (worker restarted)",
            Duration::from_secs(10)
        )
        .is_some());
    signal(sup.id(), libc::SIGTERM);
    assert!(log
        .wait_for("worker stopped: exit status 0", Duration::from_secs(10))
        .is_some());
    assert_eq!(wait_exit(&mut sup, Duration::from_secs(10)), Some(0));
    let _ = std::fs::remove_dir_all(&d);
}
