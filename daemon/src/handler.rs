//! The protocol logic: what to do with each OPEN, READ and CLOSE.
//!
//! [`Handler::accept`] runs on the thread that reads the devnode and does the
//! cheap, ordering-sensitive part at once: decoding, taking ownership of an
//! OPEN's anonymous fd (so it can never leak), answering malformed requests,
//! and CLOSE. It returns a [`Task`] for the worker pool, where
//! [`Handler::run`] does the slow part: looking blobs up, `copen`, copying
//! data and READ_COMPLETE.
//!
//! Invariants:
//! * an object is in the table before its `copen` is written, because the
//!   kernel may send READs for it the moment it sees the `copen`;
//! * every READ for a known object gets a READ_COMPLETE, with or without its
//!   data (the kernel turns missing data into EIO for the reader), except
//!   under the `drop` persona;
//! * a READ whose msg_id is already being served (seen again after a
//!   `restore`) is skipped: the first copy completes it.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::copy::{copy_span, CopyError};
use crate::devnode::{CacheFile, Devnode};
use crate::keys;
use crate::objects::{Object, ObjectTable};
use crate::persona::{Action, Decision, Personas};
use crate::prefetch::Prefetcher;
use crate::proto::{self, Header, OpenReq, ParseError, ReadReq, Request};
use crate::range::{self, Span};
use crate::source::{Blob, Lanes, Sources};
use crate::stats::{self, Stats};

/// Work handed to the pool.
pub enum Task {
    Open {
        hdr: Header,
        req: OpenReq,
        file: Box<dyn CacheFile>,
        decision: Decision,
    },
    Read {
        hdr: Header,
        req: ReadReq,
        decision: Decision,
    },
}

/// Tunables of the handler.
pub struct HandlerConfig {
    /// Page size: writes start on multiples of it.
    pub page: u64,
    /// Bytes copied per write (a multiple of the page size).
    pub chunk: usize,
    /// Read amplification: a READ is answered with the aligned extents of
    /// this many bytes around it (a power of two; 0 or up to a page: off).
    pub read_extent: u64,
    /// Requests whose work is local and copies at most this many bytes are
    /// served on the thread that reads the devnode ([`Handler::runs_inline`]);
    /// 0 hands every request to a worker.
    pub inline_max: u64,
}

/// Bound on the per-msg_id delivery counters kept for personas.
const MAX_TRACKED_DELIVERIES: usize = 100_000;

thread_local! {
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Shared state of the request handlers.
pub struct Handler {
    dev: Arc<dyn Devnode>,
    sources: Sources,
    objects: ObjectTable,
    stats: Arc<Stats>,
    personas: Personas,
    prefetch: Option<Prefetcher>,
    cfg: HandlerConfig,
    inflight_reads: Mutex<HashSet<u32>>,
    lanes: Lanes<Step>,
    deliveries: Mutex<HashMap<u32, u32>>,
    /// Whether the drop persona left a request unanswered since the last
    /// `restore`.
    dropped: AtomicBool,
    dead: AtomicBool,
    on_dead: Box<dyn Fn() + Send + Sync>,
}

impl Handler {
    pub fn new(
        dev: Arc<dyn Devnode>,
        sources: Sources,
        stats: Arc<Stats>,
        personas: Personas,
        prefetch: Option<Prefetcher>,
        cfg: HandlerConfig,
        on_dead: Box<dyn Fn() + Send + Sync>,
    ) -> Handler {
        let lanes = Lanes::new(&sources.lane_limits());
        Handler {
            dev,
            lanes,
            sources,
            objects: ObjectTable::default(),
            stats,
            personas,
            prefetch,
            cfg,
            inflight_reads: Mutex::new(HashSet::new()),
            deliveries: Mutex::new(HashMap::new()),
            dropped: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            on_dead,
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn open_objects(&self) -> usize {
        self.objects.len()
    }

    /// Every open object (hot upgrade hands them to the new daemon).
    pub fn objects_snapshot(&self) -> Vec<Arc<Object>> {
        self.objects.snapshot()
    }

    /// Enters an object taken over from a previous daemon.
    pub fn adopt_object(&self, obj: Object) {
        self.objects.insert(Arc::new(obj));
    }

    /// Whether a command write failed with EIO (the cache is dead).
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    /// Writes a command; EIO marks the cache dead and wakes the event loop.
    pub fn send(&self, cmd: &str) -> std::io::Result<()> {
        let r = self.dev.write_cmd(cmd);
        if let Err(e) = &r {
            if e.raw_os_error() == Some(libc::EIO) && !self.dead.swap(true, Ordering::Relaxed) {
                error!("'{cmd}': {e}: the cache is dead");
                (self.on_dead)();
            }
        }
        r
    }

    /// Writes `restore` (failover, or the random-restore persona).
    pub fn restore(&self, why: &str) {
        // Every request the kernel holds when the write lands is delivered
        // again, so the mark is cleared before it: a request another worker
        // reads after the write and drops marks it again, and the next idle
        // period restores it (cleared after the write, such a drop was lost
        // and its reader waited for good: soak, local run cc19).
        let had_dropped = self.dropped.swap(false, Ordering::SeqCst);
        match self.send(proto::RESTORE) {
            Ok(()) => {
                stats::inc(&self.stats.restores);
                info!("wrote 'restore' ({why})");
            }
            Err(e) => {
                if had_dropped {
                    self.dropped.store(true, Ordering::SeqCst);
                }
                warn!("'restore' ({why}) failed: {e}");
            }
        }
    }

    /// Stops background work and closes every object's fd (at exit).
    pub fn shutdown(&self) {
        if let Some(p) = &self.prefetch {
            p.stop(std::time::Duration::from_secs(2));
        }
        let n = self.objects.drain().len();
        if n > 0 {
            debug!("closing {n} open objects");
        }
    }

    fn decide(&self, hdr: &Header) -> Decision {
        if self.personas.is_empty() {
            return Decision::NORMAL;
        }
        let delivery = {
            let mut d = self.deliveries.lock().unwrap_or_else(|e| e.into_inner());
            if d.len() >= MAX_TRACKED_DELIVERIES {
                d.clear();
            }
            let n = d.entry(hdr.msg_id).or_insert(0);
            let this = *n;
            *n = n.saturating_add(1);
            this
        };
        let dec = self.personas.decide(hdr.opcode, hdr.msg_id, delivery);
        if dec != Decision::NORMAL {
            debug!(
                "persona decision for {} msg {} (delivery {delivery}): {:?}",
                proto::opcode_name(hdr.opcode),
                hdr.msg_id,
                dec
            );
        }
        dec
    }

    fn answered(&self, msg_id: u32) {
        if !self.personas.is_empty() {
            self.deliveries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&msg_id);
        }
    }

    /// Handles the cheap part of one message read from the devnode.
    pub fn accept(&self, buf: &[u8]) -> Option<Task> {
        stats::inc(&self.stats.msgs);
        let hdr = match proto::parse_header(buf) {
            Ok(h) => h,
            Err(e) => {
                stats::inc(&self.stats.malformed);
                error!("malformed message dropped: {e}");
                // Still answer an OPEN if the header is there, so the mount
                // does not wait for an answer that will never come.
                if let Some(h) = proto::peek_header(buf) {
                    if h.opcode == proto::OP_OPEN {
                        self.reject_open(&h, proto::payload(buf), libc::EINVAL);
                    }
                }
                return None;
            }
        };
        trace!(
            "{} msg {} object {} len {}",
            proto::opcode_name(hdr.opcode),
            hdr.msg_id,
            hdr.object_id,
            hdr.len
        );
        let req = match proto::parse_request(&hdr, proto::payload(buf)) {
            Ok(r) => r,
            Err(e) => {
                self.malformed(&hdr, buf, &e);
                return None;
            }
        };
        match req {
            Request::Close => {
                self.close(&hdr);
                None
            }
            Request::Open(req) => {
                stats::inc(&self.stats.opens);
                let file = match self.dev.adopt_anon_fd(req.fd) {
                    Ok(f) => f,
                    Err(e) => {
                        error!(
                            "OPEN msg {}: unusable anonymous fd {}: {e}",
                            hdr.msg_id, req.fd
                        );
                        self.copen_error(&hdr, libc::EBADF);
                        return None;
                    }
                };
                let decision = self.decide(&hdr);
                Some(Task::Open {
                    hdr,
                    req,
                    file,
                    decision,
                })
            }
            Request::Read(req) => {
                stats::inc(&self.stats.reads);
                let fresh = self
                    .inflight_reads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(hdr.msg_id);
                if !fresh {
                    stats::inc(&self.stats.duplicate_reads);
                    debug!(
                        "READ msg {} delivered again while being served; skipping the copy",
                        hdr.msg_id
                    );
                    return None;
                }
                let decision = self.decide(&hdr);
                Some(Task::Read { hdr, req, decision })
            }
        }
    }

    fn malformed(&self, hdr: &Header, buf: &[u8], e: &ParseError) {
        if let ParseError::UnknownOpcode(op) = e {
            stats::inc(&self.stats.unknown_opcode);
            warn!(
                "msg {} object {}: unknown opcode {op}, ignored",
                hdr.msg_id, hdr.object_id
            );
            return;
        }
        stats::inc(&self.stats.malformed);
        error!(
            "{} msg {} object {}: malformed: {e}",
            proto::opcode_name(hdr.opcode),
            hdr.msg_id,
            hdr.object_id
        );
        match hdr.opcode {
            proto::OP_OPEN => self.reject_open(hdr, proto::payload(buf), libc::EINVAL),
            proto::OP_READ => {
                // Complete it without data so the reader gets EIO, not a hang.
                if let Some(obj) = self.objects.get(hdr.object_id) {
                    self.complete(&obj, hdr.msg_id);
                    stats::inc(&self.stats.reads_failed);
                }
            }
            _ => {}
        }
    }

    /// Fails an OPEN we could not decode, releasing its fd if we can find it.
    fn reject_open(&self, hdr: &Header, payload: &[u8], errno: i32) {
        if let Some(fd) = proto::open_fd_hint(payload) {
            match self.dev.adopt_anon_fd(fd) {
                Ok(f) => drop(f),
                Err(e) => warn!("OPEN msg {}: not closing fd {fd}: {e}", hdr.msg_id),
            }
        }
        self.copen_error(hdr, errno);
    }

    fn copen_error(&self, hdr: &Header, errno: i32) {
        stats::inc(&self.stats.copen_failed);
        let cmd = proto::copen_err(hdr.msg_id, errno);
        if let Err(e) = self.send(&cmd) {
            stats::inc(&self.stats.copen_write_errors);
            warn!("'{cmd}' failed: {e}");
        }
        self.answered(hdr.msg_id);
    }

    fn close(&self, hdr: &Header) {
        stats::inc(&self.stats.closes);
        match self.objects.remove(hdr.object_id) {
            Some(obj) => debug!("CLOSE object {} ({:?})", obj.id, obj.blob_name),
            None => warn!(
                "CLOSE msg {} for unknown object {}, ignored",
                hdr.msg_id, hdr.object_id
            ),
        }
    }

    /// Whether `task` is served on the thread that reads the devnode rather
    /// than handed to a worker: its work is local (every source is local,
    /// for an OPEN; its blob's source, for a READ), a READ copies at most
    /// `inline_max` bytes with its amplification, and no persona is set (a
    /// persona may sleep or never answer). Such a task costs less than the
    /// hand-off, a wake-up of a worker that is often on another CPU; while
    /// it runs, newer requests wait in the kernel, so the bound is small.
    pub fn runs_inline(&self, task: &Task) -> bool {
        if self.cfg.inline_max == 0 || !self.personas.is_empty() {
            return false;
        }
        match task {
            Task::Open { .. } => self.sources.all_local(),
            Task::Read { hdr, req, .. } => {
                let Some(obj) = self.objects.get(hdr.object_id) else {
                    return false;
                };
                if !self.sources.is_local(obj.blob.lane()) {
                    return false;
                }
                self.plan(&obj, req)
                    .is_none_or(|(_, span)| span.len() <= self.cfg.inline_max)
            }
        }
    }

    /// Runs the slow part of a request (on a pool thread). Work for a
    /// source whose worker share is in use waits in that source's queue
    /// instead (this thread returns at once) and is run by the thread that
    /// frees the share.
    pub fn run(&self, task: Task) {
        let step = Step {
            started: Instant::now(),
            kind: match task {
                Task::Open {
                    hdr,
                    req,
                    file,
                    decision,
                } => StepKind::Open {
                    hdr,
                    req,
                    file,
                    decision,
                    source: 0,
                    failure: None,
                },
                Task::Read { hdr, req, decision } => StepKind::Read { hdr, req, decision },
            },
        };
        let mut todo = vec![step];
        while let Some(step) = todo.pop() {
            let lane = self.lane_of(&step);
            let Some(mut cur) = self.lanes.enter(lane, step) else {
                continue;
            };
            let mut slot = LaneSlot {
                lanes: &self.lanes,
                lane,
                held: true,
            };
            loop {
                if let Some(next) = self.exec(cur) {
                    todo.push(next);
                }
                match self.lanes.next(lane) {
                    Some(s) => cur = s,
                    None => {
                        slot.held = false;
                        break;
                    }
                }
            }
        }
    }

    fn lane_of(&self, step: &Step) -> usize {
        match &step.kind {
            StepKind::Open { source, .. } => *source,
            StepKind::Read { hdr, .. } => {
                self.objects.get(hdr.object_id).map_or(0, |o| o.blob.lane())
            }
        }
    }

    /// One step, under the request's deadline (which counts from when the
    /// request reached [`Handler::run`], queueing for a source included).
    fn exec(&self, step: Step) -> Option<Step> {
        let _deadline = crate::source::deadline::scope_from(step.started);
        match step.kind {
            StepKind::Read { hdr, req, decision } => {
                let mut guard = InflightRead {
                    h: self,
                    msg_id: hdr.msg_id,
                    obj: None,
                    answered: false,
                    forgotten: false,
                };
                self.read(&hdr, req, decision, &mut guard);
                None
            }
            StepKind::Open {
                hdr,
                req,
                file,
                decision,
                source,
                failure,
            } => self.open_step(step.started, hdr, req, file, decision, source, failure),
        }
    }

    fn forget_inflight(&self, msg_id: u32) {
        self.inflight_reads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&msg_id);
    }

    fn persona_note(&self, what: std::fmt::Arguments<'_>) {
        stats::inc(&self.stats.persona_actions);
        info!("persona: {what}");
    }

    /// Looks an OPEN's blob up in source `source`; returns the step for the
    /// next source when this one does not have it.
    #[allow(clippy::too_many_arguments)]
    fn open_step(
        &self,
        started: Instant,
        hdr: Header,
        req: OpenReq,
        file: Box<dyn CacheFile>,
        decision: Decision,
        source: usize,
        failure: Option<std::io::Error>,
    ) -> Option<Step> {
        if source == 0 {
            if let Action::Delay(d) = decision.action {
                self.persona_note(format_args!("delaying OPEN msg {} by {d:?}", hdr.msg_id));
                std::thread::sleep(d);
            }
            match decision.action {
                Action::Drop => {
                    // Never answer. The fd is closed so that a later `restore`
                    // can deliver this OPEN again with a fresh fd.
                    self.persona_note(format_args!(
                        "dropping OPEN msg {} (never answered)",
                        hdr.msg_id
                    ));
                    drop(file);
                    self.dropped.store(true, Ordering::SeqCst);
                    self.after(&decision);
                    return None;
                }
                Action::FailOpen => {
                    self.persona_note(format_args!("failing OPEN msg {} with EIO", hdr.msg_id));
                    drop(file);
                    self.copen_error(&hdr, libc::EIO);
                    self.after(&decision);
                    return None;
                }
                _ => {}
            }
        }
        let volume = keys::parse_volume(&req.volume_key);
        let name = match keys::blob_name(&req.cookie_key) {
            Ok(n) => n,
            Err(e) => {
                warn!(
                    "OPEN msg {} (volume {:?}): {e}; answering ENOENT",
                    hdr.msg_id, volume.key
                );
                drop(file);
                self.copen_error(&hdr, libc::ENOENT);
                self.after(&decision);
                return None;
            }
        };
        let mut failure = failure;
        match self.sources.lookup_in(source, &name) {
            Ok(Some(blob)) => {
                if decision.action == Action::CloseEarly {
                    self.persona_note(format_args!(
                        "closing the anonymous fd of OPEN msg {} before copen",
                        hdr.msg_id
                    ));
                    drop(file);
                    self.copen_plain(&hdr, blob.size());
                } else {
                    self.install(&hdr, &req, name, blob, file, started);
                }
                self.after(&decision);
                return None;
            }
            Ok(None) => trace!("blob {name:?} not in {}", self.sources.describe_one(source)),
            Err(e) => {
                warn!(
                    "OPEN msg {}: blob {name:?}: {} failed: {e}",
                    hdr.msg_id,
                    self.sources.describe_one(source)
                );
                failure = Some(e);
            }
        }
        if source + 1 < self.sources.len() {
            return Some(Step {
                started,
                kind: StepKind::Open {
                    hdr,
                    req,
                    file,
                    decision,
                    source: source + 1,
                    failure,
                },
            });
        }
        drop(file);
        match failure {
            None => {
                warn!(
                    "OPEN msg {}: blob {name:?} (volume {:?}) is in no source; answering ENOENT",
                    hdr.msg_id, volume.key
                );
                self.copen_error(&hdr, libc::ENOENT);
            }
            Some(e) => {
                error!(
                    "OPEN msg {}: blob {name:?}: sources failed ({e}); answering EIO",
                    hdr.msg_id
                );
                stats::inc(&self.stats.source_errors);
                self.copen_error(&hdr, libc::EIO);
            }
        }
        self.after(&decision);
        None
    }

    /// Enters the object in the table, then answers `copen id,size`.
    fn install(
        &self,
        hdr: &Header,
        req: &OpenReq,
        name: String,
        blob: Arc<dyn Blob>,
        file: Box<dyn CacheFile>,
        started: Instant,
    ) {
        let size = blob.size();
        let described = blob.describe();
        let volume = keys::parse_volume(&req.volume_key).key;
        let obj = Arc::new(Object::new(hdr.object_id, volume, name, blob, file));
        if let Some(old) = self.objects.insert(obj.clone()) {
            warn!(
                "object id {} was still mapped to {:?}; replaced by {:?}",
                old.id, old.blob_name, obj.blob_name
            );
        }
        let cmd = proto::copen_ok(hdr.msg_id, size);
        match self.send(&cmd) {
            Ok(()) => {
                stats::inc(&self.stats.copen_ok);
                self.stats.open_latency.record(started.elapsed());
                info!(
                    "OPEN msg {} object {} ({}): {:?} size {size} from {described} (volume {:?})",
                    hdr.msg_id,
                    obj.id,
                    obj.file.describe(),
                    obj.blob_name,
                    obj.volume
                );
                if let Some(p) = &self.prefetch {
                    p.submit(obj.clone());
                }
            }
            Err(e) => {
                stats::inc(&self.stats.copen_write_errors);
                warn!("'{cmd}' failed: {e}; forgetting object {}", obj.id);
                self.objects.remove_if_same(&obj);
            }
        }
        self.answered(hdr.msg_id);
    }

    /// `copen id,size` for an object we are not going to keep (close-early).
    fn copen_plain(&self, hdr: &Header, size: u64) {
        let cmd = proto::copen_ok(hdr.msg_id, size);
        match self.send(&cmd) {
            Ok(()) => stats::inc(&self.stats.copen_ok),
            Err(e) => {
                stats::inc(&self.stats.copen_write_errors);
                warn!("'{cmd}' failed: {e}");
            }
        }
        self.answered(hdr.msg_id);
    }

    /// Called when the devnode was idle for a while. With random-restore,
    /// requests dropped since the last `restore` are delivered again (with a
    /// fresh decision): otherwise a dropped OPEN whose reader is gone would
    /// wait for a restore that only another request's handling can draw.
    pub fn idle(&self) {
        if self.personas.restores() && self.dropped.load(Ordering::SeqCst) {
            stats::inc(&self.stats.persona_actions);
            self.restore("random-restore persona: dropped requests, devnode idle");
        }
    }

    fn after(&self, decision: &Decision) {
        if decision.restore_after {
            stats::inc(&self.stats.persona_actions);
            self.restore("random-restore persona");
        }
    }

    fn read(&self, hdr: &Header, req: ReadReq, decision: Decision, guard: &mut InflightRead<'_>) {
        let started = Instant::now();
        let Some(obj) = self.objects.get(hdr.object_id) else {
            stats::inc(&self.stats.unknown_object);
            warn!(
                "READ msg {} for unknown object {} [{}, +{}): no anonymous fd to answer through",
                hdr.msg_id, hdr.object_id, req.off, req.len
            );
            return;
        };
        guard.obj = Some(obj.clone());
        match decision.action {
            Action::Delay(d) => {
                self.persona_note(format_args!("delaying READ msg {} by {d:?}", hdr.msg_id));
                std::thread::sleep(d);
            }
            Action::Drop => {
                self.persona_note(format_args!(
                    "dropping READ msg {} (never answered)",
                    hdr.msg_id
                ));
                guard.answered = true;
                self.dropped.store(true, Ordering::SeqCst);
                self.after(&decision);
                return;
            }
            Action::NoData => {
                self.persona_note(format_args!(
                    "completing READ msg {} without data",
                    hdr.msg_id
                ));
                guard.complete();
                stats::inc(&self.stats.reads_failed);
                self.answered(hdr.msg_id);
                self.after(&decision);
                return;
            }
            _ => {}
        }
        let ok = self.serve_read(&obj, hdr, req);
        guard.complete();
        if ok {
            stats::inc(&self.stats.reads_ok);
        } else {
            stats::inc(&self.stats.reads_failed);
        }
        self.stats.read_latency.record(started.elapsed());
        self.answered(hdr.msg_id);
        self.after(&decision);
    }

    /// The pages a READ asks for and the span written for it (those pages
    /// with their amplification, clipped to the blob); `None` past the end.
    fn plan(&self, obj: &Object, req: &ReadReq) -> Option<(Span, Span)> {
        let want = range::plan_read(req.off, req.len, obj.size, self.cfg.page)?;
        let span = range::plan_extent(want, obj.size, self.cfg.read_extent, self.cfg.page);
        Some((want, span))
    }

    /// Copies the pages covering the request; false if some data is missing.
    fn serve_read(&self, obj: &Object, hdr: &Header, req: ReadReq) -> bool {
        let Some((want, span)) = self.plan(obj, &req) else {
            debug!(
                "READ msg {} [{}, +{}) is past the end of {:?} ({} bytes): nothing to write",
                hdr.msg_id, req.off, req.len, obj.blob_name, obj.size
            );
            return true;
        };
        let mut result = self.copy(obj, span);
        if span != want {
            if let Err((n, e)) = &result {
                // The extent is copied in order from its start, so its first
                // n bytes are in the cache. If they cover the request, the
                // READ is served and only the amplified rest failed; if the
                // source failed before that, the rest of the request is
                // tried on its own, as without amplification. A failed
                // write to the cache is not retried.
                let done = span.start.saturating_add(*n);
                if done >= want.end {
                    debug!(
                        "READ msg {} object {} ({:?}): [{}, {}) served; \
                         the amplified part failed at {done}: {e}",
                        hdr.msg_id, obj.id, obj.blob_name, want.start, want.end
                    );
                    stats::add(&self.stats.bytes_written, *n);
                    self.stats.add_source_bytes(&obj.blob.describe(), *n);
                    if !matches!(e, CopyError::Write { .. }) {
                        stats::inc(&self.stats.source_errors);
                    }
                    result = Ok(0);
                } else if !matches!(e, CopyError::Write { .. }) {
                    let rest = Span {
                        start: done.max(want.start),
                        end: want.end,
                    };
                    debug!(
                        "READ msg {} object {} ({:?}): the extent failed at {done} ({e}); \
                         retrying [{}, {}) alone",
                        hdr.msg_id, obj.id, obj.blob_name, rest.start, rest.end
                    );
                    stats::add(&self.stats.bytes_written, *n);
                    self.stats.add_source_bytes(&obj.blob.describe(), *n);
                    result = self.copy(obj, rest);
                }
            }
        }
        match result {
            Ok(n) => {
                stats::add(&self.stats.bytes_written, n);
                self.stats.add_source_bytes(&obj.blob.describe(), n);
                trace!(
                    "READ msg {} object {}: wrote [{}, {}) of {:?}",
                    hdr.msg_id,
                    obj.id,
                    span.start,
                    span.end,
                    obj.blob_name
                );
                true
            }
            Err((n, e)) => {
                stats::add(&self.stats.bytes_written, n);
                self.stats.add_source_bytes(&obj.blob.describe(), n);
                match e {
                    CopyError::Write { .. } => stats::inc(&self.stats.write_errors),
                    _ => stats::inc(&self.stats.source_errors),
                }
                warn!(
                    "READ msg {} object {} ({:?}) [{}, +{}): {e}; the reader will see EIO",
                    hdr.msg_id, obj.id, obj.blob_name, req.off, req.len
                );
                false
            }
        }
    }

    /// Copies `span` of the blob into the cache file (see [`copy_span`]).
    fn copy(&self, obj: &Object, span: Span) -> Result<u64, (u64, CopyError)> {
        let chunk = usize::try_from(span.len())
            .unwrap_or(usize::MAX)
            .min(self.cfg.chunk);
        let chunk = range::align_up(chunk as u64, self.cfg.page) as usize;
        BUF.with(|b| {
            let mut b = b.borrow_mut();
            let buf = crate::copy::aligned(&mut b, chunk);
            let mapped = Some(&self.stats.mapped_bytes);
            copy_span(&*obj.blob, &*obj.file, span, buf, self.cfg.page, mapped)
        })
    }

    fn complete(&self, obj: &Object, msg_id: u32) {
        if let Err(e) = obj.file.read_complete(msg_id) {
            stats::inc(&self.stats.read_complete_errors);
            if e.raw_os_error() == Some(libc::EINVAL) {
                debug!(
                    "READ_COMPLETE msg {msg_id} on object {}: {e} (request gone: reader killed, \
                     object withdrawn, or completed already)",
                    obj.id
                );
            } else {
                warn!("READ_COMPLETE msg {msg_id} on object {}: {e}", obj.id);
            }
        }
    }
}

/// A request on its way through the sources' lanes.
pub struct Step {
    started: Instant,
    kind: StepKind,
}

enum StepKind {
    Open {
        hdr: Header,
        req: OpenReq,
        file: Box<dyn CacheFile>,
        decision: Decision,
        /// The source to look in next.
        source: usize,
        /// An earlier source failed (EIO rather than ENOENT if none has it).
        failure: Option<std::io::Error>,
    },
    Read {
        hdr: Header,
        req: ReadReq,
        decision: Decision,
    },
}

/// A held lane slot, released if the step panics.
struct LaneSlot<'a> {
    lanes: &'a Lanes<Step>,
    lane: usize,
    held: bool,
}

impl Drop for LaneSlot<'_> {
    fn drop(&mut self) {
        if self.held {
            self.lanes.release(self.lane);
        }
    }
}

/// A READ being served. Its msg_id leaves the in-flight set *before*
/// READ_COMPLETE (the kernel may reuse the id the moment it sees the
/// completion, and that new READ must not be taken for a duplicate), and on
/// every other way out, including a panic, when the READ is also completed
/// without data so the reader gets EIO instead of waiting for ever.
struct InflightRead<'a> {
    h: &'a Handler,
    msg_id: u32,
    obj: Option<Arc<Object>>,
    /// Completed, or deliberately left unanswered (the `drop` persona).
    answered: bool,
    /// Removed from the in-flight set.
    forgotten: bool,
}

impl InflightRead<'_> {
    fn forget(&mut self) {
        if !self.forgotten {
            self.forgotten = true;
            self.h.forget_inflight(self.msg_id);
        }
    }

    fn complete(&mut self) {
        self.forget();
        self.answered = true;
        if let Some(obj) = &self.obj {
            self.h.complete(obj, self.msg_id);
        }
    }
}

impl Drop for InflightRead<'_> {
    fn drop(&mut self) {
        if self.answered {
            // Forget only once: after READ_COMPLETE the id may already
            // belong to a new READ.
            self.forget();
            return;
        }
        if std::thread::panicking() && self.obj.is_some() {
            error!(
                "READ msg {} panicked; completing it without data",
                self.msg_id
            );
            stats::inc(&self.h.stats.reads_failed);
        }
        self.complete();
    }
}

#[cfg(test)]
#[path = "handler_tests.rs"]
mod tests;
