//! Protocol tests of the handler against the fake devnode.

use super::*;
use crate::mock::{MockDev, MockFile};
use crate::persona::Persona;
use crate::proto::encode;
use crate::source::mem::{pattern, MemSource};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const P: u64 = 4096;

struct Rig {
    dev: Arc<MockDev>,
    h: Arc<Handler>,
    dead_calls: Arc<AtomicUsize>,
}

fn rig_with(src: MemSource, personas: Vec<Persona>, chunk: usize) -> Rig {
    rig_ext(src, personas, chunk, 0)
}

fn rig_ext(src: MemSource, personas: Vec<Persona>, chunk: usize, read_extent: u64) -> Rig {
    let dev = MockDev::new();
    let dead_calls = Arc::new(AtomicUsize::new(0));
    let dc = dead_calls.clone();
    let h = Arc::new(Handler::new(
        dev.clone(),
        Sources::new(vec![Box::new(src)]),
        Arc::new(Stats::default()),
        Personas::new(personas, 7, None).unwrap(),
        None,
        HandlerConfig {
            page: P,
            chunk,
            read_extent,
            inline_max: 0,
        },
        Box::new(move || {
            dc.fetch_add(1, Ordering::SeqCst);
        }),
    ));
    Rig { dev, h, dead_calls }
}

fn rig(src: MemSource) -> Rig {
    rig_with(src, vec![], 64 * 1024)
}

impl Rig {
    /// Reads every queued message and runs its task inline.
    fn pump(&self) {
        let mut buf = vec![0u8; 1024];
        loop {
            let n = self.dev.read_msg(&mut buf).unwrap();
            if n == 0 {
                return;
            }
            if let Some(t) = self.h.accept(&buf[..n]) {
                self.h.run(t);
            }
        }
    }

    fn open(&self, msg_id: u32, object_id: u32, fd: u32, name: &str) -> Arc<MockFile> {
        let f = self.dev.push_open(
            msg_id,
            object_id,
            fd,
            &format!("erofs,{name}"),
            name.as_bytes(),
        );
        self.pump();
        f
    }

    fn read(&self, msg_id: u32, object_id: u32, off: u64, len: u64) {
        self.dev.push(encode::read(msg_id, object_id, off, len));
        self.pump();
    }

    fn stat(&self, f: impl Fn(&Stats) -> &std::sync::atomic::AtomicU64) -> u64 {
        f(self.h.stats()).load(Ordering::Relaxed)
    }
}

#[test]
fn open_read_close() {
    let data = pattern(3 * 4096 + 100, 1);
    let r = rig(MemSource::default().with("img.blob", data.clone()));
    let f = r.open(1, 10, 100, "img.blob");
    assert_eq!(r.dev.commands(), vec![format!("copen 1,{}", data.len())]);
    assert_eq!(r.h.open_objects(), 1);
    assert!(!f.closed.load(Ordering::SeqCst));

    r.read(2, 10, 0, 8192);
    assert_eq!(f.completed(), vec![2]);
    assert_eq!(f.bytes(0, 8192), &data[..8192]);

    // Final partial page: written only up to the blob's end.
    r.read(3, 10, 12288, 4096);
    assert_eq!(f.completed(), vec![2, 3]);
    assert_eq!(f.bytes(12288, 200), &data[12288..]);
    assert_eq!(f.writes.lock().unwrap().last(), Some(&(12288, 100)));

    r.dev.push(encode::close(4, 10));
    r.pump();
    assert_eq!(r.h.open_objects(), 0);
    assert!(f.closed.load(Ordering::SeqCst));
    assert_eq!(r.stat(|s| &s.reads_ok), 2);
    assert_eq!(r.stat(|s| &s.bytes_written), 8192 + 100);
}

#[test]
fn unaligned_reads_write_whole_pages() {
    let data = pattern(5 * 4096, 2);
    let r = rig(MemSource::default().with("b", data.clone()));
    let f = r.open(1, 1, 100, "b");
    r.read(2, 1, 5000, 10);
    assert_eq!(*f.writes.lock().unwrap(), vec![(4096, 4096)]);
    r.read(3, 1, 4095, 2);
    assert_eq!(f.writes.lock().unwrap()[1..], [(0, 8192)]);
    assert_eq!(f.bytes(0, 8192), &data[..8192]);
    // Beyond the end: completed with nothing written.
    r.read(4, 1, 1 << 30, 4096);
    assert_eq!(f.completed(), vec![2, 3, 4]);
    assert_eq!(f.writes.lock().unwrap().len(), 2);
}

#[test]
fn large_reads_are_chunked_and_short_writes_resume_on_pages() {
    let data = pattern(100_000, 3);
    let r = rig_with(
        MemSource::default().with("b", data.clone()),
        vec![],
        16 * 1024,
    );
    let f = r.open(1, 1, 100, "b");
    f.max_write.store(5000, Ordering::SeqCst);
    r.read(2, 1, 0, 100_000);
    assert_eq!(f.completed(), vec![2]);
    assert_eq!(f.bytes(0, 100_000), data);
    assert!(f.writes.lock().unwrap().iter().all(|w| w.0 % P == 0));
    assert_eq!(r.stat(|s| &s.reads_ok), 1);
}

#[test]
fn unknown_and_invalid_blobs_get_enoent() {
    let r = rig(MemSource::default());
    let f = r.open(1, 1, 100, "missing.blob");
    assert_eq!(r.dev.commands(), vec!["copen 1,-2"]);
    assert!(f.closed.load(Ordering::SeqCst));
    let f = r.dev.push_open(2, 2, 101, "erofs,x", b"../etc/passwd");
    r.pump();
    assert_eq!(r.dev.commands()[1], "copen 2,-2");
    assert!(f.closed.load(Ordering::SeqCst));
    assert_eq!(r.h.open_objects(), 0);
    assert_eq!(r.stat(|s| &s.copen_failed), 2);
}

#[test]
fn failing_source_gives_eio() {
    let r = rig(MemSource {
        fail: true,
        ..Default::default()
    });
    r.open(1, 1, 100, "x");
    assert_eq!(r.dev.commands(), vec!["copen 1,-5"]);
}

#[test]
fn malformed_open_is_failed_and_its_fd_closed() {
    let r = rig(MemSource::default().with("b", vec![0; 10]));
    let f = r.dev.add_file(100);
    let mut p = Vec::new();
    for x in [1000u32, 5, 100, 0] {
        p.extend_from_slice(&x.to_ne_bytes());
    }
    p.extend_from_slice(b"short");
    r.dev.push(encode::raw(9, proto::OP_OPEN, 1, &p));
    r.pump();
    assert_eq!(r.dev.commands(), vec!["copen 9,-22"]);
    assert!(f.closed.load(Ordering::SeqCst));
    assert_eq!(r.stat(|s| &s.malformed), 1);
}

#[test]
fn open_with_lying_length_is_failed() {
    let r = rig(MemSource::default().with("b", vec![0; 10]));
    let f = r.dev.add_file(100);
    let mut m = encode::open(4, 1, 100, "erofs,b", b"b");
    m[8..12].copy_from_slice(&1000u32.to_ne_bytes());
    r.dev.push(m);
    r.pump();
    assert_eq!(r.dev.commands(), vec!["copen 4,-22"]);
    assert!(f.closed.load(Ordering::SeqCst));
}

#[test]
fn open_with_unusable_fd_is_failed() {
    let r = rig(MemSource::default().with("b", vec![0; 10]));
    // No such fd in the fake process.
    r.dev.push(encode::open(3, 1, 555, "erofs,b", b"b"));
    r.pump();
    assert_eq!(r.dev.commands(), vec!["copen 3,-9"]);
    assert_eq!(r.h.open_objects(), 0);
}

#[test]
fn garbage_messages_do_not_panic() {
    let r = rig(MemSource::default().with("b", vec![0; 10]));
    r.dev.push(vec![1, 2, 3]);
    r.dev.push(encode::raw(1, 99, 1, &[1, 2, 3]));
    r.dev.push(encode::raw(2, proto::OP_READ, 1, &[0; 4]));
    r.dev.push(encode::close(3, 12345));
    r.dev.push(encode::read(4, 777, 0, 4096));
    let mut lying = encode::close(5, 1);
    lying[8..12].copy_from_slice(&500u32.to_ne_bytes());
    r.dev.push(lying);
    r.pump();
    assert_eq!(r.stat(|s| &s.unknown_opcode), 1);
    assert_eq!(r.stat(|s| &s.malformed), 3);
    assert_eq!(r.stat(|s| &s.unknown_object), 1);
    assert!(r.dev.commands().is_empty());
}

#[test]
fn malformed_read_on_known_object_is_completed() {
    let r = rig(MemSource::default().with("b", vec![7; 8192]));
    let f = r.open(1, 4, 100, "b");
    r.dev.push(encode::raw(2, proto::OP_READ, 4, &[0; 8]));
    r.pump();
    assert_eq!(f.completed(), vec![2]);
    assert_eq!(f.written_bytes(), 0);
}

#[test]
fn source_errors_still_complete_the_read() {
    let src = MemSource::default().with("b", pattern(8192, 4));
    let blob = src.blobs.get("b").unwrap().clone();
    let r = rig(src);
    let f = r.open(1, 1, 100, "b");
    blob.fail.store(true, Ordering::SeqCst);
    r.read(2, 1, 0, 4096);
    assert_eq!(f.completed(), vec![2]);
    assert_eq!(f.written_bytes(), 0);
    assert_eq!(r.stat(|s| &s.reads_failed), 1);
    assert_eq!(r.stat(|s| &s.source_errors), 1);
}

#[test]
fn truncated_blob_writes_only_whole_pages() {
    // Claims 3 pages, has 1.5.
    let data = pattern(6144, 5);
    let r = rig(MemSource::default().with_truncated("t", data.clone(), 3 * 4096));
    let f = r.open(1, 1, 100, "t");
    assert_eq!(r.dev.commands(), vec!["copen 1,12288"]);
    r.read(2, 1, 0, 12288);
    assert_eq!(f.completed(), vec![2]);
    assert_eq!(*f.writes.lock().unwrap(), vec![(0, 4096)]);
    assert_eq!(f.bytes(0, 4096), &data[..4096]);
    assert_eq!(r.stat(|s| &s.reads_failed), 1);
}

#[test]
fn write_errors_still_complete_the_read() {
    let r = rig(MemSource::default().with("b", pattern(8192, 6)));
    let f = r.open(1, 1, 100, "b");
    f.fail_writes.store(true, Ordering::SeqCst);
    r.read(2, 1, 0, 4096);
    assert_eq!(f.completed(), vec![2]);
    assert_eq!(r.stat(|s| &s.write_errors), 1);
}

#[test]
fn duplicate_read_while_in_flight_is_skipped() {
    let r = rig(MemSource::default().with("b", pattern(8192, 7)));
    let f = r.open(1, 1, 100, "b");
    let m = encode::read(2, 1, 0, 4096);
    let first = r.h.accept(&m).expect("task");
    assert!(r.h.accept(&m).is_none());
    r.h.run(first);
    assert_eq!(f.completed(), vec![2]);
    // Delivered again after completion (restore raced): served again; the
    // kernel's EINVAL for the second completion is tolerated.
    r.read(2, 1, 0, 4096);
    assert_eq!(r.stat(|s| &s.duplicate_reads), 1);
    assert_eq!(r.stat(|s| &s.read_complete_errors), 1);
}

#[test]
fn msg_id_reused_right_after_completion_is_served() {
    let r = rig(MemSource::default().with("b", pattern(8192, 7)));
    let f = r.open(1, 1, 100, "b");
    // The kernel may hand the msg_id to a new READ as soon as it sees the
    // completion: deliver it from inside READ_COMPLETE, as the reading
    // thread could.
    let weak = Arc::downgrade(&r.h);
    let again: Arc<Mutex<Vec<Task>>> = Arc::default();
    let a2 = again.clone();
    *f.on_complete.lock().unwrap() = Some(Box::new(move |id| {
        let h = weak.upgrade().unwrap();
        if let Some(t) = h.accept(&encode::read(id, 1, 4096, 4096)) {
            a2.lock().unwrap().push(t);
        }
    }));
    r.read(5, 1, 0, 4096);
    *f.on_complete.lock().unwrap() = None;
    let t = again
        .lock()
        .unwrap()
        .pop()
        .expect("the reused msg_id was dropped as a duplicate");
    r.h.run(t);
    // (The fake devnode refuses a second completion of an id; the kernel
    // does not, once the first is done. Count the served READs instead.)
    assert_eq!(r.stat(|s| &s.reads_ok), 2);
    assert_eq!(f.bytes(4096, 4096), &pattern(8192, 7)[4096..]);
    assert_eq!(r.stat(|s| &s.duplicate_reads), 0);
}

#[test]
fn panicking_read_is_completed_and_forgotten() {
    let src = MemSource::default().with("b", pattern(8192, 8));
    let blob = src.blobs["b"].clone();
    let r = rig(src);
    let f = r.open(1, 1, 100, "b");
    blob.panic.store(true, Ordering::SeqCst);
    let t = r.h.accept(&encode::read(2, 1, 0, 4096)).expect("task");
    let h = r.h.clone();
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || h.run(t)));
    assert!(res.is_err());
    // Completed without data (the reader gets EIO, not a hang) ...
    assert_eq!(f.completed(), vec![2]);
    assert_eq!(f.written_bytes(), 0);
    assert_eq!(r.stat(|s| &s.reads_failed), 1);
    // ... and its id is free again.
    blob.panic.store(false, Ordering::SeqCst);
    r.read(2, 1, 0, 4096);
    assert_eq!(r.stat(|s| &s.duplicate_reads), 0);
    assert_eq!(f.bytes(0, 4096), &pattern(8192, 8)[..4096]);
}

/// A remote source that never answers until released.
struct BlackHole {
    release: Arc<(Mutex<bool>, std::sync::Condvar)>,
    active: Arc<AtomicUsize>,
    max_active: Arc<AtomicUsize>,
}

impl crate::source::Source for BlackHole {
    fn open(&self, _: &str) -> std::io::Result<Option<Arc<dyn Blob>>> {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(now, Ordering::SeqCst);
        let (m, cv) = &*self.release;
        let mut r = m.lock().unwrap();
        while !*r {
            r = cv.wait(r).unwrap();
        }
        self.active.fetch_sub(1, Ordering::SeqCst);
        Err(std::io::Error::other("black hole"))
    }
    fn describe(&self) -> String {
        "black hole".into()
    }
    fn worker_budget(&self) -> Option<usize> {
        Some(4)
    }
}

#[test]
fn a_black_holed_remote_does_not_starve_a_local_source() {
    let release = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let (active, max_active) = (Arc::default(), Arc::new(AtomicUsize::new(0)));
    let hole = BlackHole {
        release: release.clone(),
        active: Arc::clone(&active),
        max_active: max_active.clone(),
    };
    let dev = MockDev::new();
    let data = pattern(8192, 3);
    let h = Arc::new(Handler::new(
        dev.clone(),
        Sources::new(vec![
            Box::new(MemSource::default().with("local", data.clone())),
            Box::new(hole),
        ]),
        Arc::new(Stats::default()),
        Personas::new(vec![], 0, None).unwrap(),
        None,
        HandlerConfig {
            page: P,
            chunk: 4096,
            read_extent: 0,
            inline_max: 0,
        },
        Box::new(|| {}),
    ));
    // Four workers, as --threads 4; the remote may hold 4 / 2 sources = 2.
    let pool = crate::pool::Pool::new(4, "starve").unwrap();
    let submit = |msg: Vec<u8>| {
        dev.push(msg);
        let mut buf = vec![0u8; 1024];
        let n = dev.read_msg(&mut buf).unwrap();
        if let Some(t) = h.accept(&buf[..n]) {
            let h = h.clone();
            assert!(pool.execute(move || h.run(t)));
        }
    };
    for i in 0..6u32 {
        dev.add_file(200 + i);
        submit(encode::open(
            10 + i,
            10 + i,
            200 + i,
            &format!("erofs,r{i}"),
            format!("remote{i}").as_bytes(),
        ));
    }
    assert!(
        dev.wait_until(Duration::from_secs(5), || max_active.load(Ordering::SeqCst)
            == 2)
    );
    let f = dev.add_file(300);
    submit(encode::open(1, 1, 300, "erofs,local", b"local"));
    assert!(
        dev.wait_until(Duration::from_secs(5), || dev
            .commands()
            .contains(&"copen 1,8192".to_string())),
        "the local OPEN starved behind the remote: {:?}",
        dev.commands()
    );
    submit(encode::read(2, 1, 0, 8192));
    assert!(dev.wait_until(Duration::from_secs(5), || f.completed() == vec![2]));
    assert_eq!(f.bytes(0, 8192), data);
    // The remote never had more than its share, and its OPENs are waiting.
    assert_eq!(max_active.load(Ordering::SeqCst), 2);
    assert_eq!(h.lanes.queued(1), 4);
    *release.0.lock().unwrap() = true;
    release.1.notify_all();
    assert!(dev.wait_until(Duration::from_secs(5), || dev.commands().len() == 7));
    for i in 0..6 {
        assert!(dev.commands().contains(&format!("copen {},-5", 10 + i)));
    }
    assert!(pool.shutdown(Duration::from_secs(5)));
}

#[test]
fn copen_write_failure_forgets_the_object() {
    let r = rig(MemSource::default().with("b", vec![1; 10]));
    *r.dev.fail_commands.lock().unwrap() = Some(libc::EINVAL);
    let f = r.open(1, 1, 100, "b");
    assert_eq!(r.h.open_objects(), 0);
    assert!(f.closed.load(Ordering::SeqCst));
    assert!(!r.h.is_dead());
    *r.dev.fail_commands.lock().unwrap() = Some(libc::EIO);
    r.open(2, 2, 101, "b");
    assert!(r.h.is_dead());
    assert_eq!(r.dead_calls.load(Ordering::SeqCst), 1);
}

#[test]
fn persona_open_error() {
    let r = rig_with(
        MemSource::default().with("b", vec![1; 10]),
        vec![Persona::OpenError],
        65536,
    );
    let f = r.open(1, 1, 100, "b");
    assert_eq!(r.dev.commands(), vec!["copen 1,-5"]);
    assert!(f.closed.load(Ordering::SeqCst));
}

#[test]
fn persona_close_early() {
    let r = rig_with(
        MemSource::default().with("b", vec![1; 10]),
        vec![Persona::CloseEarly],
        65536,
    );
    let f = r.open(1, 1, 100, "b");
    assert!(f.closed.load(Ordering::SeqCst));
    assert_eq!(r.dev.commands(), vec!["copen 1,10"]);
    assert_eq!(r.h.open_objects(), 0);
}

#[test]
fn persona_read_error_and_no_data() {
    for p in [Persona::ReadError, Persona::NoData] {
        let r = rig_with(
            MemSource::default().with("b", vec![1; 8192]),
            vec![p],
            65536,
        );
        let f = r.open(1, 1, 100, "b");
        assert_eq!(r.dev.commands(), vec!["copen 1,8192"]);
        r.read(2, 1, 0, 4096);
        assert_eq!(f.completed(), vec![2]);
        assert_eq!(f.written_bytes(), 0);
    }
}

#[test]
fn persona_drop() {
    let r = rig_with(
        MemSource::default().with("b", vec![1; 8192]),
        vec![Persona::Drop],
        65536,
    );
    let f = r.open(1, 1, 100, "b");
    assert!(r.dev.commands().is_empty());
    assert!(f.closed.load(Ordering::SeqCst));
    // Without random-restore a dropped request stays dropped.
    r.h.idle();
    assert!(r.dev.commands().is_empty());
}

/// The OPEN ids that chaos (seed 7) drops without drawing a restore, in order.
fn chaos_drop_only_open_ids() -> impl Iterator<Item = u32> {
    let p = Personas::new(vec![Persona::Chaos], 7, None).unwrap();
    let drop_only = Decision {
        action: crate::persona::Action::Drop,
        restore_after: false,
    };
    (1..10_000u32).filter(move |&id| p.decide(crate::proto::OP_OPEN, id, 0) == drop_only)
}

#[test]
fn chaos_restores_a_dropped_request_when_idle() {
    let id = chaos_drop_only_open_ids()
        .next()
        .expect("chaos drops some OPEN");
    let r = rig_with(
        MemSource::default().with("b", vec![1; 8192]),
        vec![Persona::Chaos],
        65536,
    );
    r.h.idle();
    assert!(r.dev.commands().is_empty(), "nothing dropped yet");
    let f = r.open(id, 1, 100, "b");
    assert!(f.closed.load(Ordering::SeqCst));
    assert!(r.dev.commands().is_empty());
    r.h.idle();
    assert_eq!(r.dev.commands(), vec!["restore"]);
    // The restore re-delivered everything: the next idle period is quiet.
    r.h.idle();
    assert_eq!(r.dev.commands(), vec!["restore"]);
}

#[test]
fn chaos_a_drop_during_a_restore_is_restored_when_idle() {
    let mut ids = chaos_drop_only_open_ids();
    let (first, second) = (ids.next().unwrap(), ids.next().unwrap());
    let r = Arc::new(rig_with(
        MemSource::default().with("b", vec![1; 8192]),
        vec![Persona::Chaos],
        65536,
    ));
    r.open(first, 1, 100, "b");
    // While the idle restore is being written, another worker reads a
    // request the restore did not cover (it came after) and drops it.
    let weak = Arc::downgrade(&r);
    *r.dev.on_command.lock().unwrap() = Some(Box::new(move |cmd| {
        if let (Some(r), "restore") = (weak.upgrade(), cmd) {
            r.open(second, 2, 101, "b");
        }
    }));
    r.h.idle();
    assert_eq!(r.dev.commands(), vec!["restore"]);
    // That drop is still marked: the next idle period restores it.
    r.h.idle();
    assert_eq!(r.dev.commands(), vec!["restore", "restore"]);
}

#[test]
fn persona_delay_and_random_restore() {
    let r = rig_with(
        MemSource::default().with("b", vec![1; 8192]),
        vec![
            Persona::Delay(Duration::from_millis(30)),
            Persona::RandomRestore,
        ],
        65536,
    );
    let t = Instant::now();
    let f = r.open(1, 1, 100, "b");
    r.read(2, 1, 0, 4096);
    assert!(t.elapsed() >= Duration::from_millis(60));
    assert_eq!(f.completed(), vec![2]);
    assert_eq!(r.dev.commands(), vec!["copen 1,8192", "restore", "restore"]);
    assert_eq!(r.stat(|s| &s.restores), 2);
}

#[test]
fn shutdown_closes_everything() {
    let r = rig(MemSource::default()
        .with("a", vec![1; 10])
        .with("b", vec![2; 10]));
    let fa = r.open(1, 1, 100, "a");
    let fb = r.open(2, 2, 101, "b");
    r.h.shutdown();
    assert!(fa.closed.load(Ordering::SeqCst) && fb.closed.load(Ordering::SeqCst));
    assert_eq!(r.h.open_objects(), 0);
}

#[test]
fn prefetch_fills_the_cache_file() {
    let data = pattern(200_000, 9);
    let dev = MockDev::new();
    let stats = Arc::new(Stats::default());
    let pf = Prefetcher::start(0, 32 * 1024, P, stats.clone()).unwrap();
    let h = Handler::new(
        dev.clone(),
        Sources::new(vec![Box::new(MemSource::default().with("b", data.clone()))]),
        stats.clone(),
        Personas::new(vec![], 0, None).unwrap(),
        Some(pf),
        HandlerConfig {
            page: P,
            chunk: 65536,
            read_extent: 0,
            inline_max: 0,
        },
        Box::new(|| {}),
    );
    let f = dev.push_open(1, 1, 100, "erofs,b", b"b");
    let mut buf = [0u8; 1024];
    let n = dev.read_msg(&mut buf).unwrap();
    let t = h.accept(&buf[..n]).unwrap();
    h.run(t);
    assert!(dev.wait_until(Duration::from_secs(5), || stats
        .prefetch_done
        .load(Ordering::SeqCst)
        == 1));
    assert_eq!(f.bytes(0, data.len()), data);
    assert_eq!(stats.prefetch_bytes.load(Ordering::SeqCst), 200_000);
    h.shutdown();
}

#[test]
fn prefetch_checks_digests() {
    use sha2::{Digest, Sha256};
    let data = pattern(200_000, 9);
    let good = format!("sha256:{:x}", Sha256::digest(&data));
    let bad = format!("sha256:{}", "00".repeat(32));
    let dev = MockDev::new();
    let stats = Arc::new(Stats::default());
    let pf = Prefetcher::start(0, 32 * 1024, P, stats.clone()).unwrap();
    let src = MemSource::default()
        .with_digest("good", data.clone(), &good)
        .with_digest("bad", data.clone(), &bad);
    let h = Handler::new(
        dev.clone(),
        Sources::new(vec![Box::new(src)]),
        stats.clone(),
        Personas::new(vec![], 0, None).unwrap(),
        Some(pf),
        HandlerConfig {
            page: P,
            chunk: 65536,
            read_extent: 0,
            inline_max: 0,
        },
        Box::new(|| {}),
    );
    for (i, name) in ["good", "bad"].iter().enumerate() {
        let i = i as u32 + 1;
        dev.push_open(i, i, 100 + i, &format!("erofs,{name}"), name.as_bytes());
        let mut buf = [0u8; 1024];
        let n = dev.read_msg(&mut buf).unwrap();
        let t = h.accept(&buf[..n]).unwrap();
        h.run(t);
    }
    assert!(dev.wait_until(Duration::from_secs(5), || stats
        .prefetch_done
        .load(Ordering::SeqCst)
        == 2));
    assert_eq!(stats.digest_ok.load(Ordering::SeqCst), 1);
    assert_eq!(stats.digest_mismatch.load(Ordering::SeqCst), 1);
    h.shutdown();
}

mod over_http {
    use super::*;
    use crate::source::http::testserver::{Behaviour, TestServer};
    use crate::source::http::{HttpConfig, HttpSource};
    use crate::source::Source;

    fn http_rig(server: &TestServer) -> (Arc<MockDev>, Handler) {
        let cfg = HttpConfig {
            timeout: Duration::from_millis(500),
            retries: 1,
            backoff: Duration::from_millis(10),
            max_idle: 4,
            ..HttpConfig::default()
        };
        let src: Box<dyn Source> =
            Box::new(HttpSource::new(&format!("http://{}/blobs", server.addr), cfg).unwrap());
        let dev = MockDev::new();
        let h = Handler::new(
            dev.clone(),
            Sources::new(vec![Box::new(MemSource::default()), src]),
            Arc::new(Stats::default()),
            Personas::new(vec![], 0, None).unwrap(),
            None,
            HandlerConfig {
                page: P,
                chunk: 16384,
                read_extent: 0,
                inline_max: 0,
            },
            Box::new(|| {}),
        );
        (dev, h)
    }

    fn pump(dev: &MockDev, h: &Handler) {
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = dev.read_msg(&mut buf) {
            if let Some(t) = h.accept(&buf[..n]) {
                h.run(t);
            }
        }
    }

    #[test]
    fn serves_blobs_over_http_and_fails_cleanly_when_the_server_goes() {
        let data = pattern(50_000, 11);
        let server = TestServer::start(Behaviour::default()).with_blob("/blobs/img", data.clone());
        let (dev, h) = http_rig(&server);
        let f = dev.push_open(1, 1, 100, "erofs,img", b"img");
        dev.push_open(2, 2, 101, "erofs,img", b"nope");
        pump(&dev, &h);
        assert_eq!(dev.commands(), vec!["copen 1,50000", "copen 2,-2"]);
        dev.push(encode::read(3, 1, 0, 50_000));
        pump(&dev, &h);
        assert_eq!(f.bytes(0, 50_000), data);
        assert_eq!(f.completed(), vec![3]);

        drop(server);
        let t = Instant::now();
        dev.push(encode::read(4, 1, 0, 4096));
        dev.push_open(5, 3, 102, "erofs,img", b"img");
        pump(&dev, &h);
        assert!(t.elapsed() < Duration::from_secs(5));
        // The READ is completed (the reader gets EIO), the OPEN fails with EIO.
        assert_eq!(f.completed(), vec![3, 4]);
        assert_eq!(dev.commands()[2], "copen 5,-5");
    }
}

/// The union of the ranges written, as sorted disjoint [start, end) pairs.
fn coverage(f: &MockFile) -> Vec<(u64, u64)> {
    let mut w: Vec<(u64, u64)> = f
        .writes
        .lock()
        .unwrap()
        .iter()
        .map(|&(s, n)| (s, s + n as u64))
        .collect();
    w.sort();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in w {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

const M: u64 = 1 << 20;

#[test]
fn read_extent_fills_aligned_extents_up_to_the_end() {
    // Not page aligned, and not a multiple of the extent.
    let size = 3 * M + 1000;
    let data = pattern(size as usize, 9);
    let r = rig_ext(
        MemSource::default().with("b", data.clone()),
        vec![],
        64 * 1024,
        M,
    );
    let f = r.open(1, 1, 100, "b");
    // READ at 0: the first extent, whole.
    r.read(2, 1, 0, 4096);
    assert_eq!(coverage(&f), vec![(0, M)]);
    // The last byte: the last extent, which ends at the blob's end.
    r.read(3, 1, size - 1, 1);
    assert_eq!(coverage(&f), vec![(0, M), (3 * M, size)]);
    // Straddling the boundary between the second and third extents: both.
    r.read(4, 1, 2 * M - 4096, 8192);
    assert_eq!(coverage(&f), vec![(0, size)]);
    assert_eq!(f.completed(), vec![2, 3, 4]);
    assert_eq!(r.stat(|s| &s.reads_ok), 3);
    assert_eq!(r.stat(|s| &s.bytes_written), size);
    // Every byte is the blob's, and nothing lies past its end.
    assert_eq!(f.data.lock().unwrap().len() as u64, size);
    assert_eq!(f.bytes(0, size as usize), data);
    // Writes start on pages.
    assert!(f.writes.lock().unwrap().iter().all(|w| w.0 % P == 0));
}

#[test]
fn read_extent_never_passes_a_small_blob() {
    let data = pattern(50_000, 4);
    let r = rig_ext(
        MemSource::default().with("b", data.clone()),
        vec![],
        65536,
        M,
    );
    let f = r.open(1, 1, 100, "b");
    r.read(2, 1, 8192, 4096);
    assert_eq!(coverage(&f), vec![(0, 50_000)]);
    assert_eq!(f.bytes(0, 50_000), data);
    assert_eq!(f.data.lock().unwrap().len(), 50_000);
}

#[test]
fn read_extent_zero_writes_only_the_request() {
    let data = pattern(4 * M as usize, 5);
    let r = rig_ext(MemSource::default().with("b", data), vec![], 65536, 0);
    let f = r.open(1, 1, 100, "b");
    r.read(2, 1, 8192 + 5, 100);
    assert_eq!(coverage(&f), vec![(8192, 12288)]);
}

#[test]
fn read_extent_source_errors_fail_only_the_requested_part() {
    // The blob claims 3 MiB but has only 1 MiB + 8 KiB: its extent
    // [1M, 2M) comes up short at 1M + 8K.
    let size = 3 * M;
    let have = (M + 8192) as usize;
    let data = pattern(have, 6);
    let r = rig_ext(
        MemSource::default().with_truncated("b", data.clone(), size),
        vec![],
        65536,
        M,
    );
    let f = r.open(1, 1, 100, "b");
    // The request [1M, 1M+4K) is there: served, though its extent is short.
    r.read(2, 1, M, 4096);
    assert_eq!(r.stat(|s| &s.reads_ok), 1);
    assert_eq!(r.stat(|s| &s.reads_failed), 0);
    // The short extent is a source error all the same.
    assert_eq!(r.stat(|s| &s.source_errors), 1);
    assert_eq!(coverage(&f), vec![(M, M + 8192)]);
    assert_eq!(f.bytes(M as usize, 8192), &data[M as usize..]);
    // The request [1M+8K, 1M+12K) is not: it fails, as without amplification.
    r.read(3, 1, M + 8192, 4096);
    assert_eq!(r.stat(|s| &s.reads_failed), 1);
    assert_eq!(coverage(&f), vec![(M, M + 8192)]);
    assert_eq!(f.completed(), vec![2, 3]);
}

#[test]
fn read_extent_failing_before_the_request_still_serves_it() {
    let data = pattern(2 * M as usize, 7);
    let src = MemSource::default().with("b", data.clone());
    // Reads of the blob's first 64 KiB fail.
    src.blobs["b"].fail_below.store(65536, Ordering::Relaxed);
    let r = rig_ext(src, vec![], 65536, M);
    let f = r.open(1, 1, 100, "b");
    r.read(2, 1, 512 * 1024, 4096);
    assert_eq!(r.stat(|s| &s.reads_ok), 1);
    assert_eq!(r.stat(|s| &s.reads_failed), 0);
    assert_eq!(coverage(&f), vec![(512 * 1024, 512 * 1024 + 4096)]);
    assert_eq!(
        f.bytes(512 * 1024, 4096),
        &data[512 * 1024..512 * 1024 + 4096]
    );
    // A READ inside the failing part fails.
    r.read(3, 1, 4096, 4096);
    assert_eq!(r.stat(|s| &s.reads_failed), 1);
}

/// A handler over `sources` with 1 MiB extents, `inline_max` and
/// `personas`.
fn rig_inline(sources: Vec<MemSource>, personas: Vec<Persona>, inline_max: u64) -> Rig {
    let dev = MockDev::new();
    let h = Arc::new(Handler::new(
        dev.clone(),
        Sources::new(
            sources
                .into_iter()
                .map(|s| Box::new(s) as Box<dyn crate::source::Source>)
                .collect(),
        ),
        Arc::new(Stats::default()),
        Personas::new(personas, 7, None).unwrap(),
        None,
        HandlerConfig {
            page: P,
            chunk: 65536,
            read_extent: M,
            inline_max,
        },
        Box::new(|| {}),
    ));
    Rig {
        dev,
        h,
        dead_calls: Arc::new(AtomicUsize::new(0)),
    }
}

fn local() -> MemSource {
    MemSource {
        local: true,
        ..Default::default()
    }
}

impl Rig {
    /// Whether the next queued message's task would run inline; the task
    /// is then run.
    fn next_inline(&self) -> bool {
        let mut buf = vec![0u8; 1024];
        let n = self.dev.read_msg(&mut buf).unwrap();
        let t = self.h.accept(&buf[..n]).expect("a task");
        let inline = self.h.runs_inline(&t);
        self.h.run(t);
        inline
    }

    fn push_read(&self, msg_id: u32, object_id: u32, off: u64, len: u64) {
        self.dev.push(encode::read(msg_id, object_id, off, len));
    }
}

#[test]
fn inline_takes_only_local_work_up_to_its_bound() {
    const K: u64 = 1024;
    let small = pattern(70_000, 5);
    let big = pattern((3 * M + 8 * K) as usize, 6);
    let r = rig_inline(
        vec![local().with("s", small.clone()).with("b", big.clone())],
        vec![],
        128 * K,
    );
    r.dev.push_open(1, 1, 100, "erofs,s", b"s");
    assert!(r.next_inline(), "an OPEN when every source is local");
    let fb = r.dev.push_open(2, 2, 101, "erofs,b", b"b");
    assert!(r.next_inline());
    r.push_read(3, 1, 8192, 4096);
    assert!(
        r.next_inline(),
        "a READ whose extent is the 70,000-byte blob"
    );
    r.push_read(4, 2, 0, 4096);
    assert!(!r.next_inline(), "a READ amplified to 1 MiB");
    r.push_read(5, 2, 3 * M, 4096);
    assert!(r.next_inline(), "a READ of the last 8 KiB extent");
    r.push_read(6, 2, 4 * M, 4096);
    assert!(r.next_inline(), "a READ past the end writes nothing");
    r.push_read(7, 9, 0, 4096);
    assert!(!r.next_inline(), "a READ of an unknown object");
    assert_eq!(
        fb.bytes(3 * M as usize, 8 * K as usize),
        big[3 * M as usize..]
    );
    assert_eq!(fb.bytes(0, M as usize), big[..M as usize]);

    // The bound is inclusive.
    let r = rig_inline(vec![local().with("b", big.clone())], vec![], M);
    r.dev.push_open(1, 1, 100, "erofs,b", b"b");
    assert!(r.next_inline());
    r.push_read(2, 1, M, 4096);
    assert!(r.next_inline(), "a 1 MiB extent with a 1 MiB bound");
}

#[test]
fn inline_is_off_for_remote_sources_personas_and_zero() {
    let data = pattern(8192, 7);
    let remote = || MemSource::default().with("s", data.clone());
    let near = || local().with("s", data.clone());
    let delay = vec![Persona::Delay(Duration::from_millis(1))];
    // (what, sources, personas, inline_max, OPEN inline, READ inline)
    type Case = (&'static str, Vec<MemSource>, Vec<Persona>, u64, bool, bool);
    let cases: Vec<Case> = vec![
        ("a remote source", vec![remote()], vec![], M, false, false),
        // The OPEN may reach the remote second source; a READ of a blob
        // the local first one had does not.
        (
            "local, then remote",
            vec![near(), MemSource::default()],
            vec![],
            M,
            false,
            true,
        ),
        (
            "remote, then local",
            vec![remote(), local()],
            vec![],
            M,
            false,
            false,
        ),
        // A persona may sleep or never answer.
        ("a persona", vec![near()], delay, M, false, false),
        ("inline_max 0", vec![near()], vec![], 0, false, false),
    ];
    for (what, sources, personas, max, open, read) in cases {
        let r = rig_inline(sources, personas, max);
        r.dev.push_open(1, 1, 100, "erofs,s", b"s");
        assert_eq!(r.next_inline(), open, "{what}: the OPEN");
        r.push_read(2, 1, 0, 4096);
        assert_eq!(r.next_inline(), read, "{what}: the READ");
    }
}
