//! OTLP trace export of runs, configured only by the standard environment variables
//! (`OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`, `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL` —
//! `http/protobuf` by default, `grpc` —, `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SDK_DISABLED`). No endpoint: nothing
//! is built and nothing costs anything.
//!
//! The spans are derived from the run's durable history, not from live tracing spans: that is
//! what lets one trace cross the run's own crashes and restarts, and lets a simulated run carry
//! its simulated times (a simulated three-hour restore is three hours long in the viewer). The
//! trace id and the run's root span id are derived from what is persisted with the run (its id,
//! creation time and seed), so a resumed run, in another process, exports into the same trace
//! under the same root. Each state visit is a span (child of the root) from entering the state
//! to leaving it, with `drctl.*` attributes; a wait is a child span covering it; retries, gates,
//! resumes are events. A child run's root is a child of the parent's span that started it.
//!
//! The exporter never hurts a run: spans are built and sent on their own task, at most
//! [`QUEUE_BOUND`] wait to be sent (beyond, they are dropped and counted), a failed export is
//! counted and not retried, and the process waits at most [`FLUSH_BOUND`] for a last flush.
//! What was exported and dropped is kept per run in `<store>/telemetry/<run>.json`, which
//! `drctl status` reads.

use crate::report::{segments, Segment};
use anyhow::{Context, Result};
use drctl_runtime::clock::Timestamp;
use drctl_runtime::record::{HistoryEvent, Outcome};
use drctl_runtime::{RunRecord, RunStatus};
use opentelemetry::trace::{Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Spans waiting to be sent, at most: beyond, new ones are dropped (and counted).
pub const QUEUE_BOUND: usize = 4096;
/// How long the process waits for a last export before it exits.
pub const FLUSH_BOUND: Duration = Duration::from_millis(800);
/// How long the process waits at exit for a collector that has taken nothing yet.
pub const UNPROVEN_FLUSH_BOUND: Duration = Duration::from_millis(150);
/// Span events kept per span (a state retried thousands of times keeps the first ones and
/// counts the rest as dropped).
const MAX_EVENTS: usize = 64;
/// Spans per export request.
const BATCH: usize = 512;

/// What has been exported for one run, kept beside the store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cursor {
    /// Segments opened at or before this history sequence number have been exported.
    #[serde(default)]
    pub exported_through: Option<u64>,
    /// The end time of the root span last exported (a resumed run re-sends it with its new end).
    #[serde(default)]
    pub root_ended: Option<u64>,
    #[serde(default)]
    pub spans_exported: u64,
    /// Spans dropped: the queue was full, or the collector did not take them.
    #[serde(default)]
    pub spans_dropped: u64,
    /// Spans being sent when the cursor was written: dropped unless the send completes (the
    /// process may exit first, its flush bound over).
    #[serde(default)]
    pub spans_in_flight: u64,
    /// The process that exported last (`pid N`): a resumed run names it.
    #[serde(default)]
    pub process: Option<String>,
    /// The process that exported before this one took the run over (read when it did).
    #[serde(skip)]
    pub earlier: Option<String>,
}

pub fn cursor_path(store: &Path, run: &str) -> PathBuf {
    store.join("telemetry").join(format!("{run}.json"))
}

pub fn load_cursor(store: &Path, run: &str) -> Cursor {
    let mut c: Cursor = std::fs::read(cursor_path(store, run)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    // Left in flight by an earlier process: never confirmed, so dropped.
    c.spans_dropped += std::mem::take(&mut c.spans_in_flight);
    c
}

fn save_cursor(store: &Path, run: &str, c: &Cursor) {
    let path = cursor_path(store, run);
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        drctl_runtime::store::create_private_dir(path.parent().expect("telemetry dir"))?;
        std::fs::write(&tmp, serde_json::to_vec(c).unwrap_or_default())?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        tracing::debug!(run, error = %e, "telemetry cursor not saved");
    }
}

/// Whether export is configured, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    HttpProtobuf,
    Grpc,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// The protocol the environment asks for, or `None` when export is off (no endpoint, or the
/// SDK disabled).
pub fn configured() -> Result<Option<Protocol>> {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    if env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT")).is_none() {
        return Ok(None);
    }
    match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL")).as_deref() {
        None | Some("http/protobuf") => Ok(Some(Protocol::HttpProtobuf)),
        Some("grpc") => Ok(Some(Protocol::Grpc)),
        Some(other) => anyhow::bail!("OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported: use http/protobuf (the default) or grpc"),
    }
}

/// The resource: `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME`, with `drctl` as the
/// service name when neither names one.
fn resource() -> opentelemetry_sdk::Resource {
    let named = env("OTEL_SERVICE_NAME").is_some() || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
    // The process, so a trace shows which spans a resumed run's new process sent.
    let b = opentelemetry_sdk::Resource::builder().with_attribute(KeyValue::new("process.pid", i64::from(std::process::id())));
    match named {
        true => b.build(),
        false => b.with_service_name("drctl").build(),
    }
}

/// Deterministic ids from what a run persists.
fn digest(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

fn trace_id_of(root: &RunRecord) -> TraceId {
    let d = digest(&[b"trace", root.id.as_bytes(), &root.created_at.millis().to_le_bytes(), &root.seed.to_le_bytes()]);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[0] |= 1; // never the invalid all-zero id
    TraceId::from_bytes(b)
}

fn span_id(run: &RunRecord, what: &str, seq: u64) -> SpanId {
    let d = digest(&[b"span", run.id.as_bytes(), &run.created_at.millis().to_le_bytes(), what.as_bytes(), &seq.to_le_bytes()]);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    b[0] |= 1;
    SpanId::from_bytes(b)
}

fn root_span_id(run: &RunRecord) -> SpanId {
    span_id(run, "root", 0)
}

fn segment_span_id(run: &RunRecord, s: &Segment) -> SpanId {
    span_id(run, "state", s.opened_seq)
}

fn time(t: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(t.millis())
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("drctl").with_version(env!("CARGO_PKG_VERSION")).build()
}

fn context(trace: TraceId, span: SpanId) -> SpanContext {
    SpanContext::new(trace, span, TraceFlags::SAMPLED, false, TraceState::default())
}

fn base_attributes(run: &RunRecord) -> Vec<KeyValue> {
    vec![
        KeyValue::new("drctl.run_id", run.id.clone()),
        KeyValue::new("drctl.procedure", run.procedure.clone()),
        KeyValue::new("drctl.procedure_version", i64::from(run.procedure_version)),
    ]
}

struct SpanSpec {
    trace: TraceId,
    id: SpanId,
    parent: SpanId,
    name: String,
    from: Timestamp,
    until: Timestamp,
    attributes: Vec<KeyValue>,
    events: Vec<Event>,
    dropped_events: u32,
    status: Status,
}

fn span(s: SpanSpec) -> SpanData {
    let mut events = SpanEvents::default();
    events.events = s.events;
    events.dropped_count = s.dropped_events;
    SpanData {
        span_context: context(s.trace, s.id),
        parent_span_id: s.parent,
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: s.name.into(),
        start_time: time(s.from),
        end_time: time(s.until.max(s.from)),
        attributes: s.attributes,
        dropped_attributes_count: 0,
        events,
        links: SpanLinks::default(),
        status: s.status,
        instrumentation_scope: scope(),
    }
}

/// The events of one state visit: retries (with the classified error), gates and their
/// decisions, resumes (naming the earlier process), child runs, abort requests.
fn segment_events(history: &[HistoryEvent], s: &Segment, earlier_process: Option<&str>) -> (Vec<Event>, u32) {
    let mut events = vec![];
    let mut dropped = 0u32;
    for e in history.iter().filter(|e| e.seq > s.opened_seq && s.closed_seq.is_none_or(|c| e.seq <= c)) {
        let name = match e.outcome {
            Outcome::Retry => "retry",
            Outcome::Resumed => "resumed",
            Outcome::Gate => "gate",
            Outcome::Approved => "gate approved",
            Outcome::Rejected => "gate rejected",
            Outcome::AbortRequested => "abort requested",
            Outcome::ChildStarted => "child started",
            Outcome::ChildEnded => "child ended",
            Outcome::Corrected => "corrected",
            _ => continue,
        };
        if events.len() >= MAX_EVENTS {
            dropped += 1;
            continue;
        }
        let mut attrs = vec![KeyValue::new("drctl.attempt", i64::from(e.attempt))];
        if let Some(d) = &e.detail {
            let key = if e.outcome == Outcome::Retry { "drctl.error" } else { "drctl.detail" };
            attrs.push(KeyValue::new(key, d.clone()));
        }
        if e.outcome == Outcome::Retry {
            // Retried means classified transient where the error entered (a port, the engine).
            attrs.push(KeyValue::new("drctl.error_class", "transient"));
        }
        if e.outcome == Outcome::Resumed {
            attrs.push(KeyValue::new("drctl.earlier_process", earlier_process.unwrap_or("unknown").to_string()));
        }
        events.push(Event::new(name, time(e.at), attrs, 0));
    }
    (events, dropped)
}

/// A gate the state visit stopped at, as a span from the question to the decision (who decided
/// and their comment are in the decision event of the state's span).
fn gate_wait(run: &RunRecord, history: &[HistoryEvent], s: &Segment, trace: TraceId, parent: SpanId) -> Option<SpanData> {
    let inside = |e: &&HistoryEvent| e.seq > s.opened_seq && s.closed_seq.is_none_or(|c| e.seq <= c);
    let asked = history.iter().filter(inside).find(|e| e.outcome == Outcome::Gate)?;
    let decided = history.iter().filter(inside).find(|e| e.seq > asked.seq && matches!(e.outcome, Outcome::Approved | Outcome::Rejected));
    let mut attributes = base_attributes(run);
    attributes.push(KeyValue::new("drctl.gate", asked.detail.clone().unwrap_or_default()));
    attributes.push(KeyValue::new("drctl.decision", decided.map_or("none".to_string(), |d| format!("{:?}", d.outcome))));
    Some(span(SpanSpec {
        trace,
        id: span_id(run, "gate", asked.seq),
        parent,
        name: format!("gate: {}", s.state),
        from: asked.at,
        until: decided.map_or(s.until, |d| d.at),
        attributes,
        events: vec![],
        dropped_events: 0,
        status: Status::Unset,
    }))
}

/// The spans of `run` not exported yet (per `cursor`), and the cursor after them.
fn new_spans(run: &RunRecord, history: &[HistoryEvent], trace: TraceId, root_parent: SpanId, cursor: &Cursor) -> (Vec<SpanData>, Cursor) {
    let mut out = vec![];
    let mut next = cursor.clone();
    let last = history.last().map_or(run.updated_at, |e| e.at).max(run.updated_at);
    let root = root_span_id(run);
    for s in segments(history, last).iter().filter(|s| s.closed_seq.is_some()) {
        if cursor.exported_through.is_some_and(|t| s.opened_seq <= t) {
            continue;
        }
        let (events, dropped_events) = segment_events(history, s, cursor.earlier.as_deref());
        let mut attributes = base_attributes(run);
        attributes.extend([
            KeyValue::new("drctl.from", s.state.clone()),
            KeyValue::new("drctl.to", s.left_by.clone()),
            KeyValue::new("drctl.attempt", i64::from(s.retries)),
            KeyValue::new("drctl.outcome", s.outcome.clone()),
        ]);
        let status = match s.outcome.as_str() {
            "Halted" | "Failed" => Status::error(s.reason.clone().unwrap_or_default()),
            _ => Status::Unset,
        };
        let id = segment_span_id(run, s);
        out.push(span(SpanSpec {
            trace,
            id,
            parent: root,
            name: s.state.clone(),
            from: s.from,
            until: s.until,
            attributes,
            events,
            dropped_events,
            status,
        }));
        if let (Some(began), true) = (s.wait_began, s.waits > 0) {
            let mut attributes = base_attributes(run);
            attributes.push(KeyValue::new("drctl.waiting_for", s.waiting_for.clone().unwrap_or_default()));
            attributes.push(KeyValue::new("drctl.checks", i64::from(s.waits)));
            out.push(span(SpanSpec {
                trace,
                id: span_id(run, "wait", s.opened_seq),
                parent: id,
                name: format!("wait: {}", s.state),
                from: began,
                until: s.until,
                attributes,
                events: vec![],
                dropped_events: 0,
                status: Status::Unset,
            }));
        }
        if let Some(g) = gate_wait(run, history, s, trace, id) {
            out.push(g);
        }
        next.exported_through = Some(s.opened_seq);
    }
    if run.status.is_terminal() && cursor.root_ended != Some(last.millis()) {
        let mut attributes = base_attributes(run);
        attributes.push(KeyValue::new("drctl.outcome", run.status.as_str().to_string()));
        let status = match run.status {
            RunStatus::Halted | RunStatus::Failed => Status::error(run.outcome.clone().unwrap_or_default()),
            RunStatus::Succeeded => Status::Ok,
            _ => Status::Unset,
        };
        out.push(span(SpanSpec {
            trace,
            id: root,
            parent: root_parent,
            name: format!("{} run {}", run.procedure, run.id),
            from: run.created_at,
            until: last,
            attributes,
            events: vec![],
            dropped_events: 0,
            status,
        }));
        next.root_ended = Some(last.millis());
    }
    (out, next)
}

/// The trace and the parent of `run`'s root span: its own trace and none for a top-level run; for
/// a child, its root ancestor's trace and the parent's span of the state that started it.
fn lineage(store: &dyn drctl_runtime::store::RunStore, run: &RunRecord) -> Result<(TraceId, SpanId)> {
    let Some(parent_id) = &run.parent else { return Ok((trace_id_of(run), SpanId::INVALID)) };
    let parent = store.get_run(parent_id)?.with_context(|| format!("parent run {parent_id} of {}", run.id))?;
    let (trace, _) = lineage(store, &parent)?;
    let history = store.history(&parent.id)?;
    let last = history.last().map_or(parent.updated_at, |e| e.at);
    let starter = segments(&history, last).into_iter().rfind(|s| s.from <= run.created_at);
    Ok((trace, starter.map_or(root_span_id(&parent), |s| segment_span_id(&parent, &s))))
}

/// The export task's shared state.
struct Shared {
    dirty: Mutex<BTreeSet<String>>,
    notify: tokio::sync::Notify,
    /// The collector took an export in this process: worth waiting for at exit.
    alive: std::sync::atomic::AtomicBool,
}

/// Tells the exporter a run committed something: its new spans are exported soon (never in the
/// caller, which is the run's own commit path).
#[derive(Clone)]
pub struct Notifier(Arc<Shared>);

impl Notifier {
    pub fn touched(&self, run: &str) {
        self.0.dirty.lock().unwrap_or_else(|p| p.into_inner()).insert(run.to_string());
        self.0.notify.notify_one();
    }
}

/// A running exporter: notified after each commit of a run it follows.
pub struct Telemetry {
    shared: Arc<Shared>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Telemetry {
    /// The exporter the environment configures (`None` when export is off). Call inside the
    /// runtime that drives the runs.
    pub fn start(store: &Path, engine_store: Arc<dyn drctl_runtime::store::RunStore>) -> Result<Option<Telemetry>> {
        let Some(protocol) = configured()? else { return Ok(None) };
        let builder = opentelemetry_otlp::SpanExporter::builder();
        let mut exporter = match protocol {
            Protocol::HttpProtobuf => builder.with_http().build(),
            Protocol::Grpc => builder.with_tonic().build(),
        }
        .context("configure the OTLP trace exporter from OTEL_EXPORTER_OTLP_*")?;
        exporter.set_resource(&resource());
        let shared = Arc::new(Shared {
            dirty: Mutex::new(BTreeSet::new()),
            notify: tokio::sync::Notify::new(),
            alive: std::sync::atomic::AtomicBool::new(false),
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let worker =
            Worker { store: store.to_path_buf(), runs: engine_store, exporter, cursors: BTreeMap::new(), lineages: BTreeMap::new() };
        let task = tokio::spawn(worker.run(shared.clone(), stopped));
        Ok(Some(Telemetry { shared, stop, task }))
    }

    /// What a run's progress callback calls after each commit.
    pub fn notifier(&self) -> Notifier {
        Notifier(self.shared.clone())
    }

    /// Export what is left, waiting at most [`FLUSH_BOUND`] — or [`UNPROVEN_FLUSH_BOUND`] when
    /// the collector has not taken anything yet (it may be dead: exiting is not held up for it).
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        self.shared.notify.notify_one();
        let bound = match self.shared.alive.load(std::sync::atomic::Ordering::Relaxed) {
            true => FLUSH_BOUND,
            false => UNPROVEN_FLUSH_BOUND,
        };
        let mut task = self.task;
        if tokio::time::timeout(bound, &mut task).await.is_err() {
            task.abort();
        }
    }
}

struct Worker {
    store: PathBuf,
    runs: Arc<dyn drctl_runtime::store::RunStore>,
    exporter: opentelemetry_otlp::SpanExporter,
    cursors: BTreeMap<String, Cursor>,
    /// Each run's trace and root parent: fixed once known (a child's starting span does not move).
    lineages: BTreeMap<String, (TraceId, SpanId)>,
}

impl Worker {
    async fn run(mut self, shared: Arc<Shared>, mut stopped: tokio::sync::watch::Receiver<bool>) {
        loop {
            let stopping = *stopped.borrow();
            let runs: Vec<String> = std::mem::take(&mut *shared.dirty.lock().unwrap_or_else(|p| p.into_inner())).into_iter().collect();
            for run in runs {
                if self.export_run(&run).await {
                    shared.alive.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            if stopping {
                let _ = self.exporter.shutdown_with_timeout(FLUSH_BOUND);
                return;
            }
            tokio::select! {
                _ = shared.notify.notified() => {}
                _ = stopped.changed() => {}
            }
            // Commits come in bursts: gather them before reading the history again.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Export the new spans of run `id` and its children; whether the collector took any.
    async fn export_run(&mut self, id: &str) -> bool {
        let spans = match self.spans_of(id) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(run = id, error = %e, "telemetry: spans not built");
                return false;
            }
        };
        let Some((spans, mut cursor, children)) = spans else { return false };
        let n = spans.len() as u64;
        let (mut sent, mut dropped) = (0u64, 0u64);
        cursor.process = Some(format!("pid {}", std::process::id()));
        // One export at a time: what is pending is this run's new spans.
        if spans.len() > QUEUE_BOUND {
            dropped = n;
        } else if n > 0 {
            // Counted as dropped should the process exit before the collector answers.
            cursor.spans_in_flight = n;
            save_cursor(&self.store, id, &cursor);
            for batch in spans.chunks(BATCH) {
                match self.exporter.export(batch.to_vec()).await {
                    Ok(()) => sent += batch.len() as u64,
                    Err(e) => {
                        dropped += batch.len() as u64;
                        tracing::debug!(run = id, error = %e, "telemetry: export failed");
                    }
                }
            }
            cursor.spans_in_flight = 0;
        }
        cursor.spans_exported += sent;
        cursor.spans_dropped += dropped;
        save_cursor(&self.store, id, &cursor);
        self.cursors.insert(id.to_string(), cursor);
        let mut took = sent > 0;
        for c in children {
            took |= Box::pin(self.export_run(&c)).await;
        }
        took
    }

    /// The new spans of run `id`, its cursor after them, and its child runs.
    #[allow(clippy::type_complexity)]
    fn spans_of(&mut self, id: &str) -> Result<Option<(Vec<SpanData>, Cursor, Vec<String>)>> {
        let Some(run) = self.runs.get_run(id)? else { return Ok(None) };
        let history = self.runs.history(id)?;
        let cursor = match self.cursors.get(id) {
            Some(c) => c.clone(),
            None => {
                let mut c = load_cursor(&self.store, id);
                c.earlier = c.process.clone();
                c
            }
        };
        let (trace, root_parent) = match self.lineages.get(id) {
            Some(l) => *l,
            None => {
                let l = lineage(&*self.runs, &run)?;
                self.lineages.insert(id.to_string(), l);
                l
            }
        };
        let (spans, next) = new_spans(&run, &history, trace, root_parent, &cursor);
        let children = run.children.values().map(|c| c.run.clone()).collect();
        Ok(Some((spans, next, children)))
    }
}

/// The line `drctl status RUN` adds about telemetry: only when spans were dropped.
pub fn status_note(store: &Path, run: &str) -> Option<String> {
    let c = load_cursor(store, run);
    (c.spans_dropped > 0).then(|| {
        format!(
            "telemetry: {} span(s) dropped ({} exported): the OTLP collector was unreachable or too slow; the run itself is unaffected",
            c.spans_dropped, c.spans_exported
        )
    })
}
