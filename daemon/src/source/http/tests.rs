//! The HTTP source against hostile fixture servers.

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
        deadline: Duration::from_secs(5),
        max_idle: 4,
        ..HttpConfig::default()
    }
}

fn source_cfg(server: &TestServer, prefix: &str, cfg: HttpConfig) -> HttpSource {
    HttpSource::new(&format!("{}{prefix}", server.url()), cfg).unwrap()
}

fn source(server: &TestServer, prefix: &str) -> HttpSource {
    source_cfg(server, prefix, quick())
}

fn open(src: &HttpSource, name: &str) -> Arc<dyn Blob> {
    src.open(name).unwrap().expect("blob")
}

#[test]
fn parses_base_urls() {
    for ok in ["http://127.0.0.1:8080/a/b/", "https://h", "http://[::1]:81"] {
        assert!(check_base_url(ok, &["http://", "https://"]).is_ok(), "{ok}");
    }
    assert_eq!(
        check_base_url("http://h:1/a/", &["http://"]).unwrap(),
        "http://h:1/a"
    );
    for bad in [
        "ftp://h",
        "http://",
        "http://h:x",
        "http://u@h",
        "http://h/?q",
        "http://[::1",
    ] {
        assert!(
            check_base_url(bad, &["http://", "https://"]).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn range_reads_with_keepalive_and_if_range() {
    let data = pattern(300_000, 1);
    let server = TestServer::start(Behaviour {
        etag: Some("v1".into()),
        ..Default::default()
    })
    .with_blob("/blobs/a.img", data.clone());
    let src = source(&server, "/blobs");
    let blob = open(&src, "a.img");
    assert_eq!(blob.size(), 300_000);
    let mut buf = vec![0u8; 70_000];
    for off in [0u64, 4096, 250_000, 299_999] {
        let n = read_full(&*blob, &mut buf, off).unwrap();
        let end = (off as usize + buf.len()).min(data.len());
        assert_eq!(&buf[..n], &data[off as usize..end]);
    }
    assert_eq!(read_full(&*blob, &mut buf, 300_000).unwrap(), 0);
    assert!(src.open("missing").unwrap().is_none());
    let seen = server.seen();
    assert_eq!(seen[0].range, Some((0, 0)));
    // Every read after the probe carries the probed ETag in If-Range.
    assert!(seen[1..5]
        .iter()
        .all(|s| s.if_range.as_deref() == Some("\"v1\"")));
}

/// busybox httpd (the guest's server) answers `bytes=0-0` with the whole
/// blob as a 206 and calls every blob `text/html`: the probe takes the
/// size from the Content-Range, and ranged reads with an exact
/// Content-Range are data, whatever their Content-Type.
#[test]
fn busybox_httpd_quirks() {
    let data = pattern(100_000, 3);
    let server = TestServer::start(Behaviour {
        busybox: true,
        close_each: true,
        ..Default::default()
    })
    .with_blob("/b.img", data.clone());
    let blob = open(&source(&server, ""), "b.img");
    assert_eq!(blob.size(), 100_000);
    let mut buf = vec![0u8; 8192];
    for off in [0u64, 4096, 95_000] {
        let n = read_full(&*blob, &mut buf, off).unwrap();
        let end = (off as usize + buf.len()).min(data.len());
        assert_eq!(&buf[..n], &data[off as usize..end]);
    }
    // One probe and one ranged GET per read: no whole-blob download.
    assert_eq!(server.requests(), 4);
}

#[test]
fn empty_blob_is_416() {
    let server = TestServer::start(Behaviour::default()).with_blob("/e", Vec::new());
    assert_eq!(open(&source(&server, ""), "e").size(), 0);
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
    let blob = open(&source(&server, ""), "c");
    let mut buf = vec![0u8; 30_000];
    assert_eq!(read_full(&*blob, &mut buf, 8192).unwrap(), 30_000);
    assert_eq!(&buf[..], &data[8192..38_192]);
}

#[test]
fn retries_server_errors() {
    let data = pattern(10_000, 4);
    let server = TestServer::start(Behaviour {
        fail_first: 2,
        ..Default::default()
    })
    .with_blob("/r", data.clone());
    let blob = open(&source(&server, ""), "r");
    let mut buf = vec![0u8; 4096];
    assert_eq!(read_full(&*blob, &mut buf, 0).unwrap(), 4096);
    assert_eq!(&buf[..], &data[..4096]);
}

#[test]
fn truncated_and_reset_bodies_fail_after_retries() {
    for (truncate, reset) in [(true, false), (false, true)] {
        let server = TestServer::start(Behaviour {
            truncate,
            reset,
            ..Default::default()
        })
        .with_blob("/t", pattern(100_000, 5));
        let blob = open(&source(&server, ""), "t");
        let before = server.requests();
        let mut buf = vec![0u8; 65536];
        assert!(read_full(&*blob, &mut buf, 0).is_err());
        // 1 + 2 retries.
        assert_eq!(server.requests() - before, 3);
    }
}

#[test]
fn server_gone_is_an_error_not_a_hang() {
    let server = TestServer::start(Behaviour::default()).with_blob("/g", pattern(5000, 7));
    let src = source(&server, "");
    let blob = open(&src, "g");
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
    assert!(source(&server, "").open("x").is_err());
}

/// A wrong answer to a ranged read is an error for that read (and not
/// retried: it is deterministic), never data.
fn hostile_read(b: Behaviour, expect: &str) {
    let data = pattern(64 * 1024, 9);
    let server = TestServer::start(b).with_blob("/h", data.clone());
    let blob = open(&source(&server, ""), "h");
    let before = server.requests();
    let mut buf = vec![0xAAu8; 8192];
    let e = read_full(&*blob, &mut buf, 8192).unwrap_err();
    assert!(e.to_string().contains(expect), "{e}");
    assert_eq!(server.requests() - before, 1, "not retried");
    assert!(buf.iter().all(|&x| x == 0xAA) || buf != data[8192..16384]);
}

#[test]
fn wrong_total_is_refused() {
    hostile_read(
        Behaviour {
            wrong_total: true,
            ..Default::default()
        },
        "size is now 65537",
    );
}

#[test]
fn wrong_start_is_refused() {
    hostile_read(
        Behaviour {
            wrong_start: true,
            ..Default::default()
        },
        "asked for bytes 8192-16383, got 12288-16383",
    );
}

#[test]
fn error_page_with_200_is_refused() {
    hostile_read(
        Behaviour {
            html_200: true,
            ..Default::default()
        },
        "HTML",
    );
    hostile_read(
        Behaviour {
            short_200: true,
            ..Default::default()
        },
        "200 with 3 bytes",
    );
}

#[test]
fn changed_etag_is_refused() {
    hostile_read(
        Behaviour {
            etag: Some("v1".into()),
            etag_changes_at: Some(2),
            ..Default::default()
        },
        "ETag",
    );
}

#[test]
fn dribbling_server_is_cut_at_the_deadline() {
    let server = TestServer::start(Behaviour {
        dribble: Some(Duration::from_millis(150)),
        ..Default::default()
    })
    .with_blob("/d", pattern(8192, 10));
    let cfg = HttpConfig {
        timeout: Duration::from_millis(2000),
        retries: 5,
        deadline: Duration::from_millis(3000),
        ..quick()
    };
    let src = source_cfg(&server, "", cfg);
    let t = Instant::now();
    let _scope = crate::source::deadline::scope();
    // The probe's one byte takes 150 ms; the read dribbles, each attempt is
    // cut after 2 s, and the whole request after 3 s, retries or not (a
    // per-attempt bound alone would end after 4 s).
    let blob = open(&src, "d");
    let mut buf = vec![0u8; 4096];
    assert!(read_full(&*blob, &mut buf, 0).is_err());
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(2900), "{took:?}");
    assert!(took < Duration::from_millis(3700), "{took:?}");
}

#[test]
fn silent_server_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = HttpConfig {
        timeout: Duration::from_millis(300),
        retries: 10,
        deadline: Duration::from_millis(800),
        ..quick()
    };
    let src = HttpSource::new(&format!("http://{addr}"), cfg).unwrap();
    let t = Instant::now();
    assert!(src.open("x").is_err());
    assert!(
        t.elapsed() < Duration::from_millis(1300),
        "{:?}",
        t.elapsed()
    );
    drop(listener);
}

#[test]
fn not_found_and_client_errors_are_not_retried() {
    let server = TestServer::start(Behaviour {
        basic_auth: Some("u:p".into()),
        ..Default::default()
    })
    .with_blob("/a", pattern(10, 1));
    let src = source(&server, "");
    let e = src.open("a").err().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
    assert_eq!(server.requests(), 1);
}

#[test]
fn server_ignoring_range_is_downloaded_once() {
    let data = pattern(200_000, 2);
    let server = TestServer::start(Behaviour {
        ignore_range: true,
        ..Default::default()
    })
    .with_blob("/b", data.clone());
    let blob = open(&source(&server, ""), "b");
    assert_eq!(blob.size(), 200_000);
    let mut buf = vec![0u8; 4096];
    for off in (0..200_000u64).rev().step_by(4096) {
        let n = read_full(&*blob, &mut buf, off).unwrap();
        assert_eq!(&buf[..n], &data[off as usize..off as usize + n]);
    }
    // The probe and one whole download, not one per read.
    assert_eq!(server.requests(), 2);
}

#[test]
fn server_ignoring_range_over_the_limit_is_refused() {
    let server = TestServer::start(Behaviour {
        ignore_range: true,
        ..Default::default()
    })
    .with_blob("/b", pattern(10_000, 2));
    let cfg = HttpConfig {
        whole_max: 9_999,
        ..quick()
    };
    let e = source_cfg(&server, "", cfg).open("b").err().unwrap();
    assert!(e.to_string().contains("ignores Range"), "{e}");
}

#[test]
fn redirects_are_followed_with_range() {
    let data = pattern(50_000, 3);
    let server = TestServer::start(Behaviour {
        redirect: true,
        ..Default::default()
    })
    .with_blob("/r", data.clone());
    let blob = open(&source(&server, ""), "r");
    let mut buf = vec![0u8; 10_000];
    assert_eq!(read_full(&*blob, &mut buf, 20_000).unwrap(), 10_000);
    assert_eq!(&buf[..], &data[20_000..30_000]);
    let seen = server.seen();
    assert!(seen
        .iter()
        .any(|s| s.path == "/store/r" && s.range == Some((20_000, 29_999))));
}
