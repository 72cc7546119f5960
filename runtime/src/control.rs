//! One process per store, and the local control socket other drctl invocations use to reach it.
//!
//! The process that drives runs holds an exclusive `flock` on `<dir>/lock` (so two processes
//! never drive the same run) and serves JSON lines on `<dir>/control.sock`: one request line in,
//! one response line out. When no process holds the store, the CLI calls [`handle_request`]
//! itself on a locally opened engine, so the behaviour is the same either way.

use crate::clock::{Clock, Timestamp};
use crate::executor::{Engine, EngineError};
use crate::record::{AbortRequest, ChildRun, GateDecision, HistoryEvent, PendingGate, RetryInfo, RunRecord, RunStatus, WaitInfo};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// Longest request line accepted by the server.
pub const MAX_REQUEST_LINE: u64 = 1024 * 1024;
/// Longest response line accepted by the client (a long run's history can be large).
pub const MAX_RESPONSE_LINE: u64 = 64 * 1024 * 1024;
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;
/// A client that does not send its request (or read its response) within this is dropped.
const SERVER_IO_TIMEOUT: Duration = Duration::from_secs(30);
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// Canonical store directories whose lock this process holds: only the holder may replace the
/// control socket.
static HELD: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn held() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("store {} is in use by drctl process {}", dir.display(), pid_text(*pid))]
    Held { dir: PathBuf, pid: u32 },
    #[error("store {}: {what}: {source}", dir.display())]
    Io { dir: PathBuf, what: &'static str, source: std::io::Error },
}

fn pid_text(pid: u32) -> String {
    if pid == 0 {
        "(pid not yet written)".into()
    } else {
        pid.to_string()
    }
}

/// Exclusive ownership of a store directory by this process. Released on drop (fd close).
#[derive(Debug)]
pub struct ProcessLock {
    dir: PathBuf,
    canonical: PathBuf,
    _file: File,
}

impl ProcessLock {
    pub fn acquire(dir: &Path) -> Result<ProcessLock, LockError> {
        let io = |what: &'static str| move |source| LockError::Io { dir: dir.to_path_buf(), what, source };
        if !dir.exists() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io("create directory"))?;
        }
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join("lock"))
            .map_err(io("open lock file"))?;
        // SAFETY: flock on a file descriptor we own for the duration of the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(LockError::Held { dir: dir.to_path_buf(), pid: read_holder_pid(&file) });
            }
            return Err(io("flock")(err));
        }
        file.set_len(0).map_err(io("truncate lock file"))?;
        file.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0).map_err(io("write pid"))?;
        let canonical = dir.canonicalize().map_err(io("resolve directory"))?;
        held().insert(canonical.clone());
        Ok(ProcessLock { dir: dir.to_path_buf(), canonical, _file: file })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ProcessLock {
    fn drop(&mut self) {
        held().remove(&self.canonical);
    }
}

/// The holder writes its pid right after taking the lock; give it a moment (bounded).
fn read_holder_pid(file: &File) -> u32 {
    for _ in 0..20 {
        let mut buf = [0u8; 32];
        if let Ok(n) = file.read_at(&mut buf, 0) {
            if let Some(pid) = std::str::from_utf8(&buf[..n]).ok().and_then(|s| s.trim().parse().ok()) {
                return pid;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    0
}

/// A run as people and scripts see it: params and state decoded to JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    pub id: String,
    pub procedure: String,
    pub version: u32,
    pub status: RunStatus,
    pub state_name: String,
    pub state: serde_json::Value,
    pub params: serde_json::Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub deadline: Timestamp,
    pub attempt: u32,
    pub wait: Option<WaitInfo>,
    pub retry: Option<RetryInfo>,
    pub pending_gate: Option<PendingGate>,
    pub gates: BTreeMap<String, GateDecision>,
    pub abort: Option<AbortRequest>,
    pub outcome: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// The run that started this one (and drives it).
    #[serde(default)]
    pub parent: Option<String>,
    /// Child runs this run started, by key.
    #[serde(default)]
    pub children: BTreeMap<String, ChildRun>,
    /// Set when params/state could not be decoded by this binary, saying why.
    pub note: Option<String>,
    /// The pid of the drctl process driving this run (itself or through its parent run), or
    /// `None` when no process drives it: it moves only at `drctl resume`.
    #[serde(default)]
    pub driver: Option<u32>,
}

impl<E: ?Sized + Send + Sync + 'static> Engine<E> {
    /// A view of `rec`, decoding params and state through the registry. A run of a procedure or
    /// version this binary does not know still gets a view, with null state and a note.
    pub fn view(&self, rec: &RunRecord) -> RunView {
        let decoded = match self.registry().get(&rec.procedure) {
            None => Err(format!("this binary does not know procedure {}", rec.procedure)),
            Some(p) if p.version() != rec.procedure_version => {
                Err(format!("run is {} version {}, this binary supports version {}", rec.procedure, rec.procedure_version, p.version()))
            }
            Some(p) => p.params_json(&rec.params).and_then(|params| Ok((params, p.state_json(&rec.state)?))),
        };
        let (params, state, note) = match decoded {
            Ok((p, s)) => (p, s, None),
            Err(e) => (serde_json::Value::Null, serde_json::Value::Null, Some(e)),
        };
        RunView {
            id: rec.id.clone(),
            procedure: rec.procedure.clone(),
            version: rec.procedure_version,
            status: rec.status,
            state_name: rec.state_name.clone(),
            state,
            params,
            created_at: rec.created_at,
            updated_at: rec.updated_at,
            deadline: rec.deadline,
            attempt: rec.attempt,
            wait: rec.wait.clone(),
            retry: rec.retry.clone(),
            pending_gate: rec.pending_gate.clone(),
            gates: rec.gates.clone(),
            abort: rec.abort.clone(),
            outcome: rec.outcome.clone(),
            labels: rec.labels.clone(),
            parent: rec.parent.clone(),
            children: rec.children.clone(),
            note,
            driver: self.is_driven(rec).then(std::process::id),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ControlRequest {
    Status { run: Option<String> },
    History { run: String },
    Approve { run: String, gate: Option<String>, by: String, comment: Option<String> },
    Reject { run: String, gate: Option<String>, by: String, comment: Option<String> },
    Abort { run: String, by: String },
}

// One response per connection, serialised right away: its size on the stack does not matter,
// and an unboxed `Run(RunView)` keeps matching on it simple for callers.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ControlResponse {
    Runs(Vec<RunView>),
    History(Vec<HistoryEvent>),
    Run(RunView),
    Error(String),
}

/// Answer one request. Blocking (approve/reject/abort commit durably): async callers use
/// `spawn_blocking`.
pub fn handle_request<E: ?Sized + Send + Sync + 'static>(engine: &Engine<E>, clock: &dyn Clock, req: ControlRequest) -> ControlResponse {
    let res: Result<ControlResponse, EngineError> = (|| match req {
        ControlRequest::Status { run: None } => {
            Ok(ControlResponse::Runs(engine.store().list_runs()?.iter().map(|r| engine.view(r)).collect()))
        }
        ControlRequest::Status { run: Some(id) } => {
            let rec = engine.store().get_run(&id)?.ok_or(EngineError::NoSuchRun(id))?;
            Ok(ControlResponse::Run(engine.view(&rec)))
        }
        ControlRequest::History { run } => {
            if engine.store().get_run(&run)?.is_none() {
                return Err(EngineError::NoSuchRun(run));
            }
            Ok(ControlResponse::History(engine.store().history(&run)?))
        }
        ControlRequest::Approve { run, gate, by, comment } => {
            Ok(ControlResponse::Run(engine.view(&engine.approve(&run, gate.as_deref(), &by, comment, clock)?)))
        }
        ControlRequest::Reject { run, gate, by, comment } => {
            Ok(ControlResponse::Run(engine.view(&engine.reject(&run, gate.as_deref(), &by, comment, clock)?)))
        }
        ControlRequest::Abort { run, by } => Ok(ControlResponse::Run(engine.view(&engine.abort(&run, &by, clock)?))),
    })();
    res.unwrap_or_else(|e| ControlResponse::Error(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("only the process holding the lock on {} may serve its control socket", dir.display())]
    NotLockHolder { dir: PathBuf },
    #[error("control socket path {} is too long for a Unix socket ({len} bytes, at most {MAX_SOCKET_PATH}); use a shorter store directory", path.display())]
    PathTooLong { path: PathBuf, len: usize },
    #[error("cannot reach the drctl process at {}: {source}", path.display())]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("control socket {}: {what}: {source}", path.display())]
    Io { path: PathBuf, what: &'static str, source: std::io::Error },
    #[error("the drctl process at {} did not answer within {}s", path.display(), timeout.as_secs_f64())]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("control socket {}: {detail}", path.display())]
    Protocol { path: PathBuf, detail: String },
}

/// Serves the control socket until dropped; dropping stops the server and removes the socket.
#[derive(Debug)]
pub struct ControlServerHandle {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
    slots: Arc<tokio::sync::Semaphore>,
}

/// How long [`ControlServerHandle::shutdown`] waits for requests already being answered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

impl ControlServerHandle {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop accepting, then let the requests already in flight be answered (bounded) before the
    /// socket goes away: a process that exits right after an abort or approval it just applied
    /// must still tell the caller it was applied.
    pub async fn shutdown(self) {
        self.task.abort();
        let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.slots.acquire_many(all)).await;
    }
}

impl Drop for ControlServerHandle {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serve `dir/control.sock` for `engine`. The caller must hold `dir`'s [`ProcessLock`].
pub async fn serve_control<E: ?Sized + Send + Sync + 'static>(
    dir: &Path,
    engine: Arc<Engine<E>>,
    clock: Arc<dyn Clock>,
) -> Result<ControlServerHandle, ControlError> {
    let path = socket_path(dir);
    let io = |what: &'static str| {
        let path = path.clone();
        move |source| ControlError::Io { path, what, source }
    };
    let canonical = dir.canonicalize().map_err(io("resolve store directory"))?;
    if !held().contains(&canonical) {
        return Err(ControlError::NotLockHolder { dir: dir.to_path_buf() });
    }
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(ControlError::PathTooLong { path, len });
    }
    // We hold the lock, so a socket file here is left over from a holder that died.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("remove stale socket")(e)),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(&path).map_err(io("bind"))?;
    // The store directory is 0700, so the moment between bind and chmod exposes nothing.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io("chmod 0600"))?;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let handle_slots = slots.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else { return };
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    // Typically EMFILE: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (engine, clock) = (engine.clone(), clock.clone());
            tokio::spawn(async move {
                serve_connection(stream, engine, clock).await;
                drop(permit);
            });
        }
    });
    Ok(ControlServerHandle { path, task, slots: handle_slots })
}

async fn serve_connection<E: ?Sized + Send + Sync + 'static>(
    stream: tokio::net::UnixStream,
    engine: Arc<Engine<E>>,
    clock: Arc<dyn Clock>,
) {
    let (r, mut w) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(r).take(MAX_REQUEST_LINE + 1);
    let mut buf = Vec::new();
    let response = match tokio::time::timeout(SERVER_IO_TIMEOUT, reader.read_until(b'\n', &mut buf)).await {
        Err(_) => ControlResponse::Error(format!("no request received within {}s", SERVER_IO_TIMEOUT.as_secs())),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "control connection read failed");
            return;
        }
        Ok(Ok(_)) if !buf.ends_with(b"\n") && buf.len() as u64 > MAX_REQUEST_LINE => {
            ControlResponse::Error(format!("request longer than {MAX_REQUEST_LINE} bytes"))
        }
        Ok(Ok(_)) => match serde_json::from_slice::<ControlRequest>(&buf) {
            Err(e) => ControlResponse::Error(format!("malformed request: {e}")),
            Ok(req) => {
                tracing::info!(?req, "control request");
                match tokio::task::spawn_blocking(move || handle_request(&*engine, &*clock, req)).await {
                    Ok(r) => r,
                    Err(e) => ControlResponse::Error(format!("internal error: {e}")),
                }
            }
        },
    };
    let mut line = match serde_json::to_vec(&response) {
        Ok(l) => l,
        Err(e) => format!("{{\"Error\":\"cannot encode response: {e}\"}}").into_bytes(),
    };
    line.push(b'\n');
    let _ = tokio::time::timeout(SERVER_IO_TIMEOUT, w.write_all(&line)).await;
}

/// Send one request to the process holding `dir` and wait (at most `timeout` per read/write)
/// for its answer.
pub fn control_request(dir: &Path, req: &ControlRequest, timeout: Duration) -> Result<ControlResponse, ControlError> {
    let path = socket_path(dir);
    let io_err = |what: &'static str, e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ControlError::Timeout { path: path.clone(), timeout },
        _ => ControlError::Io { path: path.clone(), what, source: e },
    };
    let stream = std::os::unix::net::UnixStream::connect(&path).map_err(|source| ControlError::Connect { path: path.clone(), source })?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| io_err("set timeout", e))?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| io_err("set timeout", e))?;
    let mut line =
        serde_json::to_vec(req).map_err(|e| ControlError::Protocol { path: path.clone(), detail: format!("encode request: {e}") })?;
    line.push(b'\n');
    (&stream).write_all(&line).map_err(|e| io_err("send request", e))?;
    let mut buf = Vec::new();
    BufReader::new(&stream).take(MAX_RESPONSE_LINE + 1).read_until(b'\n', &mut buf).map_err(|e| io_err("read response", e))?;
    if !buf.ends_with(b"\n") {
        let detail = if buf.len() as u64 > MAX_RESPONSE_LINE {
            format!("response longer than {MAX_RESPONSE_LINE} bytes")
        } else {
            "connection closed before a complete response".into()
        };
        return Err(ControlError::Protocol { path, detail });
    }
    serde_json::from_slice(&buf).map_err(|e| ControlError::Protocol { path: path.clone(), detail: format!("malformed response: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::procedure::{Procedure, Registry, Step, StepContext, StepError};
    use crate::record::Decision;
    use crate::store::Store;
    use crate::RetryPolicy;
    use std::io::BufRead;

    const LOCK_CHILD_ENV: &str = "DRCTL_TEST_LOCK_CHILD_DIR";

    /// No-op in a normal run. In the child of `lock_is_exclusive_across_processes`: take the
    /// lock, say so, and hold it until stdin closes.
    #[test]
    fn lock_child_holds() {
        let Ok(dir) = std::env::var(LOCK_CHILD_ENV) else { return };
        let _lock = ProcessLock::acquire(Path::new(&dir)).unwrap();
        println!("LOCKED");
        std::io::stdout().flush().unwrap();
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    }

    #[test]
    fn lock_is_exclusive_across_processes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "control::tests::lock_child_holds", "--nocapture", "--test-threads=1"])
            .env(LOCK_CHILD_ENV, &dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Keep reading the child's stdout to the end: closing it early would make the child's
        // test harness fail on EPIPE.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok);
        let locked = lines.any(|l| l.contains("LOCKED"));
        assert!(locked, "child never took the lock");
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        match ProcessLock::acquire(&dir) {
            Err(e @ LockError::Held { pid, .. }) => {
                assert_eq!(pid, child.id());
                assert_eq!(e.to_string(), format!("store {} is in use by drctl process {}", dir.display(), child.id()));
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(child.stdin.take());
        lines.for_each(drop);
        assert!(child.wait().unwrap().success());
        let lock = ProcessLock::acquire(&dir).unwrap();
        let pid = std::fs::read_to_string(dir.join("lock")).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        drop(lock);
    }

    /// Asks for approval once, then finishes.
    struct Ask;
    impl Procedure for Ask {
        type Env = ();
        type Params = serde_json::Value;
        type State = u8;
        const NAME: &'static str = "ask";
        const VERSION: u32 = 1;
        fn validate(&self, _: &Self::Params) -> Result<(), String> {
            Ok(())
        }
        fn initial_state(&self, _: &Self::Params) -> u8 {
            0
        }
        fn state_name(&self, s: &u8) -> String {
            format!("S{s}")
        }
        fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
            &[("S0", &["S1"]), ("S1", &[])]
        }
        fn step(&self, _: &(), cx: &StepContext, _: &Self::Params, s: &u8) -> Result<Step<u8>, StepError> {
            Ok(match (s, cx.gate("go").map(|d| &d.decision)) {
                (0, None) => Step::Gate { gate: "go".into(), prompt: "go on?".into(), evidence: vec![] },
                (0, Some(Decision::Approved)) => Step::Next(1),
                (0, Some(Decision::Rejected)) => Step::Halt { reason: "rejected".into(), evidence: vec![] },
                _ => Step::Done { summary: "done".into() },
            })
        }
    }

    fn engine(dir: &Path) -> Arc<Engine<()>> {
        let mut reg = Registry::default();
        reg.register(Ask);
        Arc::new(Engine::new(Arc::new(Store::open(dir).unwrap()), Arc::new(reg), RetryPolicy::default()))
    }

    fn new_run() -> crate::executor::NewRun {
        crate::executor::NewRun {
            procedure: "ask".into(),
            params: serde_json::json!({"x": 1}),
            seed: 1,
            deadline: Duration::from_secs(600),
            pre_approve: vec![],
            approver: "test".into(),
            labels: BTreeMap::new(),
        }
    }

    async fn request(dir: &Path, req: ControlRequest) -> ControlResponse {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || control_request(&dir, &req, Duration::from_secs(10)).unwrap()).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn socket_status_and_approve() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let lock = ProcessLock::acquire(dir).unwrap();
        let engine = engine(dir);
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp(1_000)));
        // A stale socket from a dead holder is replaced.
        std::fs::write(socket_path(dir), b"stale").unwrap();
        let server = serve_control(dir, engine.clone(), clock.clone()).await.unwrap();
        let mode = std::fs::metadata(server.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let rec = engine.create_run(new_run(), &*clock).unwrap();
        let (tx, mut rx) = tokio::sync::watch::channel(RunStatus::Running);
        let driver = {
            let (engine, clock, id) = (engine.clone(), clock.clone(), rec.id.clone());
            tokio::spawn(async move {
                engine
                    .drive(
                        &id,
                        Arc::new(()),
                        clock,
                        Arc::new(move |r: &RunRecord| {
                            tx.send_replace(r.status);
                        }),
                    )
                    .await
            })
        };
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| *s == RunStatus::AwaitingApproval)).await.unwrap().unwrap();

        match request(dir, ControlRequest::Status { run: None }).await {
            ControlResponse::Runs(runs) => {
                assert_eq!(runs.len(), 1);
                assert_eq!(runs[0].status, RunStatus::AwaitingApproval);
                assert_eq!(runs[0].pending_gate.as_ref().unwrap().gate, "go");
                assert_eq!(runs[0].state, serde_json::json!(0));
                assert_eq!(runs[0].params, serde_json::json!({"x": 1}));
            }
            other => panic!("{other:?}"),
        }
        let approve = ControlRequest::Approve { run: rec.id.clone(), gate: None, by: "ana".into(), comment: Some("checked".into()) };
        match request(dir, approve.clone()).await {
            ControlResponse::Run(v) => assert_eq!(v.gates["go"].by, "ana"),
            other => panic!("{other:?}"),
        }
        let done = tokio::time::timeout(Duration::from_secs(10), driver).await.unwrap().unwrap().unwrap();
        assert_eq!(done.status, RunStatus::Succeeded);
        // Deciding again is refused with a reason, through the same path as the local CLI.
        match request(dir, approve).await {
            ControlResponse::Error(e) => assert!(e.contains("it has succeeded; there is no gate left"), "{e}"),
            other => panic!("{other:?}"),
        }
        match request(dir, ControlRequest::History { run: rec.id.clone() }).await {
            ControlResponse::History(h) => assert!(h.iter().any(|e| e.detail.as_deref() == Some("go approved by ana: checked"))),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(request(dir, ControlRequest::Status { run: Some("99".into()) }).await, ControlResponse::Error(e) if e == "no run 99")
        );

        // Garbage and over-long lines get an error line, not a hang or a crash.
        let path = server.path().to_path_buf();
        let replies = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for payload in [b"not json\n".to_vec(), vec![b'x'; MAX_REQUEST_LINE as usize + 10]] {
                let s = std::os::unix::net::UnixStream::connect(&path).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let _ = (&s).write_all(&payload);
                let mut line = String::new();
                BufReader::new(&s).read_line(&mut line).unwrap();
                out.push(serde_json::from_str::<ControlResponse>(&line).unwrap());
            }
            out
        })
        .await
        .unwrap();
        assert!(matches!(&replies[0], ControlResponse::Error(e) if e.starts_with("malformed request")));
        assert!(matches!(&replies[1], ControlResponse::Error(e) if e.starts_with("request longer than")));

        let sock = server.path().to_path_buf();
        drop(server);
        assert!(!sock.exists(), "socket removed when the server stops");
        drop(lock);
    }

    #[tokio::test]
    async fn only_the_lock_holder_serves() {
        let tmp = tempfile::tempdir().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp(0)));
        let err = serve_control(tmp.path(), engine(tmp.path()), clock).await.unwrap_err();
        assert!(matches!(err, ControlError::NotLockHolder { .. }), "{err}");
        assert!(matches!(
            control_request(tmp.path(), &ControlRequest::Status { run: None }, Duration::from_secs(1)),
            Err(ControlError::Connect { .. })
        ));
    }

    #[test]
    fn handle_request_works_without_a_server_and_views_unknown_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let engine = engine(tmp.path());
        let clock = ManualClock::new(Timestamp(0));
        let rec = engine.create_run(new_run(), &clock).unwrap();
        // Pre-approval of a named gate, then an abort, both through handle_request.
        let r = handle_request(
            &*engine,
            &clock,
            ControlRequest::Approve { run: rec.id.clone(), gate: Some("go".into()), by: "ana".into(), comment: None },
        );
        assert!(matches!(r, ControlResponse::Run(v) if v.gates.contains_key("go")));
        let r = handle_request(&*engine, &clock, ControlRequest::Abort { run: rec.id.clone(), by: "bo".into() });
        assert!(matches!(r, ControlResponse::Run(v) if v.abort.is_some()));

        let mut alien = rec.clone();
        alien.procedure_version = 9;
        let v = engine.view(&alien);
        assert_eq!(v.state, serde_json::Value::Null);
        assert!(v.note.unwrap().contains("version 9"));
        alien.procedure = "gone".into();
        assert!(engine.view(&alien).note.unwrap().contains("does not know procedure gone"));
    }
}
