//! The engine: drives runs step by step, committing every decision durably before the next.
//!
//! Decide, then act. The pure functions [`apply`], [`apply_abort`], [`apply_resume`] and
//! [`apply_gate_decision`] turn a record plus what happened into the next record, the history
//! events to append and the [`NextAction`]; they do no I/O and are unit-tested directly. The async
//! loop in [`Engine::drive`] / [`Engine::step_once`] performs the I/O: it runs the step on a
//! blocking thread, commits the decision through the store (group commit, `fdatasync`), and then
//! sleeps on the injected clock or waits for a person, as the decision says.
//!
//! Concurrency: one driver per run (checked), any number of runs at once. Control operations
//! (approve, reject, abort) and the driver's commits are serialised per run by a lock held only
//! around read-decide-commit, never across a step, so a person is never blocked by a slow step.
//! The driver re-reads the record under that lock before applying a step's outcome, so a decision
//! or abort recorded while the step ran is kept.

use crate::backoff::RetryPolicy;
use crate::clock::{fmt_duration, BoxFuture, Clock, Timestamp};
use crate::procedure::{check_edge, ErasedProcedure, Registry, Step, StepContext, StepError};
use crate::record::{
    AbortRequest, ChildEnd, ChildRun, Decision, GateDecision, HistoryEvent, NewRecord, Outcome, PendingGate, RetryInfo, RunRecord,
    RunStatus, WaitInfo,
};
use crate::store::{RunStore, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::Instrument;

/// A condition re-checked more often than this would spin (a virtual clock does not move by
/// itself); shorter rechecks and retry delays are raised to it.
pub const MIN_RECHECK: Duration = Duration::from_millis(10);
/// While stopped at a gate the driver re-reads the record at least this often (real time), so a
/// decision recorded by another process on the same store is still noticed.
const GATE_RECHECK: Duration = Duration::from_secs(5);

/// A request to start a run.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub procedure: String,
    pub params: serde_json::Value,
    pub seed: u64,
    /// How long the run may keep retrying transient failures, from its creation.
    pub deadline: Duration,
    /// Gates approved up front (by `approver`).
    pub pre_approve: Vec<String>,
    pub approver: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("unknown procedure {name:?}; this binary knows: {}", known.join(", "))]
    UnknownProcedure { name: String, known: Vec<String> },
    #[error("cannot start {procedure}: {error}")]
    InvalidParams { procedure: String, error: String },
    #[error("run {run} is {procedure} version {version}, but this binary {supported}; finish it with the drctl version that started it")]
    UnknownVersion { run: String, procedure: String, version: u32, supported: String },
    #[error("no run {0}")]
    NoSuchRun(String),
    #[error("run {run}: its stored state is invalid: {error} (a bug; the run was not stepped)")]
    InvalidStoredState { run: String, error: String },
    #[error("run {run}: {reason}")]
    Refused { run: String, reason: String },
    #[error("run {0} is already being driven by this process")]
    AlreadyDriving(String),
    #[error("run {run}: {detail} (is another drctl driving it?)")]
    Conflict { run: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// A state as the engine carries it: encoded, with its display name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedState {
    pub bytes: Vec<u8>,
    pub name: String,
}

/// What the driver does after committing a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextAction {
    /// Step again right away.
    Continue,
    /// Sleep on the clock until then (a wait re-check or a retry), or until woken by an abort.
    SleepUntil(Timestamp),
    /// Stopped at a gate: wait for approve/reject/abort.
    AwaitDecision,
    /// The run is terminal.
    Stop,
}

/// How the driver acts on an abort request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AbortPlan {
    /// The run is in an undo state: keep running it, never abort out of it.
    KeepUndoing,
    /// Continue from this undo state.
    Undo(NamedState),
    /// Nothing to undo: stop now.
    Stop,
}

/// Appends events to a record under construction, allocating seqs.
struct Draft {
    rec: RunRecord,
    events: Vec<HistoryEvent>,
    now: Timestamp,
}

impl Draft {
    fn new(rec: &RunRecord, now: Timestamp) -> Draft {
        let mut rec = rec.clone();
        rec.updated_at = now;
        Draft { rec, events: Vec::new(), now }
    }
    fn event(&mut self, outcome: Outcome, from: &str, to: &str, attempt: u32, detail: Option<String>) {
        self.events.push(HistoryEvent {
            seq: self.rec.next_seq,
            at: self.now,
            from: from.to_string(),
            to: to.to_string(),
            attempt,
            outcome,
            detail,
        });
        self.rec.next_seq += 1;
    }
    /// Stop the run: no timers or gates survive into a terminal record.
    fn finish(&mut self, status: RunStatus, outcome: Outcome, text: String) {
        let name = self.rec.state_name.clone();
        let attempt = self.rec.attempt;
        self.rec.status = status;
        self.rec.outcome = Some(text.clone());
        self.rec.wait = None;
        self.rec.retry = None;
        self.rec.pending_gate = None;
        self.event(outcome, &name, &name, attempt, Some(text));
    }
    fn halt(&mut self, reason: String, evidence: &[String]) {
        let mut text = reason;
        if !evidence.is_empty() {
            text.push_str("\nevidence:");
            for e in evidence {
                text.push_str("\n- ");
                text.push_str(e);
            }
        }
        self.finish(RunStatus::Halted, Outcome::Halted, text);
    }
    fn done(self, action: NextAction) -> (RunRecord, Vec<HistoryEvent>, NextAction) {
        (self.rec, self.events, action)
    }
}

fn abort_handled(rec: &RunRecord) -> bool {
    rec.abort.as_ref().is_some_and(|a| a.handled)
}

/// The status of a run that is stepping: on its undo path once an abort was acted on.
fn stepping_status(rec: &RunRecord) -> RunStatus {
    if abort_handled(rec) {
        RunStatus::Aborting
    } else {
        RunStatus::Running
    }
}

/// When a durable timer of the run is due, if it has one.
pub fn due_at(rec: &RunRecord) -> Option<Timestamp> {
    rec.retry.as_ref().map(|r| r.next_try_at).or_else(|| rec.wait.as_ref().map(|w| w.next_check_at))
}

/// Decide: the record, events and next action that follow from one step's result.
pub fn apply(
    rec: &RunRecord,
    result: Result<Step<NamedState>, StepError>,
    now: Timestamp,
    policy: &RetryPolicy,
) -> (RunRecord, Vec<HistoryEvent>, NextAction) {
    let mut d = Draft::new(rec, now);
    d.rec.resumed_after_halt = false;
    let from = rec.state_name.as_str();
    match result {
        Ok(Step::Next(next)) => {
            d.rec.state = next.bytes;
            d.rec.state_name = next.name.clone();
            d.rec.attempt = 0;
            d.rec.wait = None;
            d.rec.retry = None;
            d.rec.pending_gate = None;
            d.rec.status = stepping_status(rec);
            d.event(Outcome::Transition, from, &next.name, rec.attempt, None);
            d.done(NextAction::Continue)
        }
        Ok(Step::Wait { waiting_for, recheck_after, bound }) => {
            d.rec.attempt = 0;
            d.rec.retry = None;
            d.rec.pending_gate = None;
            // A wait belongs to its state (a transition clears it): its text may change from one
            // check to the next ("1 of 3 nodes at revision 8") without restarting its bound.
            // Time spent retrying an unreachable API inside the wait does not count against the
            // bound: the condition could not be observed then.
            let (since, deadline) = match rec.wait.as_ref() {
                Some(w) => {
                    let outage = rec.retry.as_ref().map_or(Duration::ZERO, |r| now.since(r.since));
                    (w.since, w.deadline.plus(outage))
                }
                None => {
                    // Only the start of a wait is history; re-checks just move next_check_at.
                    d.event(Outcome::Waiting, from, from, 0, Some(waiting_for.clone()));
                    (now, now.plus(bound))
                }
            };
            if now >= deadline {
                d.halt(format!("timed out after {} waiting for {waiting_for}", fmt_duration(bound)), &[]);
                return d.done(NextAction::Stop);
            }
            let next = now.plus(recheck_after.max(MIN_RECHECK)).min(deadline);
            d.rec.wait = Some(WaitInfo { waiting_for, since, next_check_at: next, deadline });
            d.rec.status = RunStatus::Waiting;
            d.done(NextAction::SleepUntil(next))
        }
        Ok(Step::Gate { gate, prompt, evidence }) => {
            d.rec.attempt = 0;
            d.rec.retry = None;
            d.rec.wait = None;
            d.rec.status = RunStatus::AwaitingApproval;
            if rec.pending_gate.as_ref().is_none_or(|p| p.gate != gate) {
                d.event(Outcome::Gate, from, from, 0, Some(format!("{gate}: {prompt}")));
                d.rec.pending_gate = Some(PendingGate { gate, prompt, evidence, since: now });
            }
            d.done(NextAction::AwaitDecision)
        }
        Ok(Step::Done { summary }) => {
            if abort_handled(rec) {
                d.finish(RunStatus::Aborted, Outcome::Aborted, summary);
            } else {
                d.finish(RunStatus::Succeeded, Outcome::Succeeded, summary);
            }
            d.done(NextAction::Stop)
        }
        Ok(Step::Halt { reason, evidence }) => {
            d.halt(reason, &evidence);
            d.done(NextAction::Stop)
        }
        Err(StepError::Transient { what, error }) => {
            let msg = format!("{what}: {error}");
            let attempt = rec.attempt.saturating_add(1);
            let since = rec.retry.as_ref().map_or(now, |r| r.since);
            let key = format!("{}/{}", rec.id, rec.state_name);
            let next = now.plus(policy.delay(attempt, rec.seed, key.as_bytes()).max(MIN_RECHECK));
            // Every failed attempt is history: an outage must be visible afterwards.
            d.event(Outcome::Retry, from, from, attempt, Some(msg.clone()));
            d.rec.attempt = attempt;
            d.rec.pending_gate = None;
            if next > rec.deadline {
                let tries = if attempt == 1 { "1 attempt".to_string() } else { format!("{attempt} attempts") };
                d.halt(format!("gave up after {tries} since {since}: {msg}"), &[]);
                return d.done(NextAction::Stop);
            }
            d.rec.retry = Some(RetryInfo { since, next_try_at: next, last_error: msg });
            d.rec.status = RunStatus::Retrying;
            d.done(NextAction::SleepUntil(next))
        }
        Err(StepError::Permanent { reason, evidence }) => {
            d.halt(reason, &evidence);
            d.done(NextAction::Stop)
        }
        Err(StepError::Bug(msg)) => {
            d.finish(RunStatus::Failed, Outcome::Failed, format!("bug: {msg}"));
            d.done(NextAction::Stop)
        }
        Ok(Step::Child { key, .. }) => {
            // The engine creates the child first and decides with `apply_child_started`.
            d.finish(RunStatus::Failed, Outcome::Failed, format!("bug: child {key} reached apply without being started"));
            d.done(NextAction::Stop)
        }
    }
}

/// Decide how an abort request changes the run.
pub fn apply_abort(rec: &RunRecord, plan: AbortPlan, now: Timestamp) -> (RunRecord, Vec<HistoryEvent>, NextAction) {
    let mut d = Draft::new(rec, now);
    let by = rec.abort.as_ref().map_or("?", |a| a.by.as_str()).to_string();
    if let Some(a) = d.rec.abort.as_mut() {
        a.handled = true;
    }
    match plan {
        AbortPlan::KeepUndoing => {
            // Timers and gates of the undo step stay as they are.
            if d.rec.status == RunStatus::Running {
                d.rec.status = RunStatus::Aborting;
            }
            d.done(NextAction::Continue)
        }
        AbortPlan::Undo(undo) => {
            d.rec.state = undo.bytes;
            d.rec.state_name = undo.name.clone();
            d.rec.attempt = 0;
            d.rec.wait = None;
            d.rec.retry = None;
            d.rec.pending_gate = None;
            d.rec.status = RunStatus::Aborting;
            d.event(Outcome::Transition, &rec.state_name, &undo.name, 0, Some(format!("abort requested by {by}: undoing")));
            d.done(NextAction::Continue)
        }
        AbortPlan::Stop => {
            d.finish(RunStatus::Aborted, Outcome::Aborted, format!("aborted by {by} at {}; nothing needed undoing", rec.state_name));
            d.done(NextAction::Stop)
        }
    }
}

/// Decide: the step asked for child `key`, created as run `child` (of `procedure`).
pub fn apply_child_started(
    rec: &RunRecord,
    key: &str,
    child: &str,
    procedure: &str,
    now: Timestamp,
) -> (RunRecord, Vec<HistoryEvent>, NextAction) {
    let mut d = Draft::new(rec, now);
    let name = rec.state_name.clone();
    d.rec.attempt = 0;
    d.rec.wait = None;
    d.rec.retry = None;
    d.rec.pending_gate = None;
    d.rec.status = RunStatus::AwaitingChild;
    d.rec.children.insert(key.to_string(), ChildRun { run: child.to_string(), procedure: procedure.to_string(), ended: None });
    d.event(Outcome::ChildStarted, &name, &name, rec.attempt, Some(format!("child run {child} ({procedure}) started as {key}")));
    d.done(NextAction::Continue)
}

/// Decide how the end of the active child `child` changes its parent `rec`: a child that ended
/// (succeeded, failed, aborted) is recorded and the parent steps on; a halted child halts the
/// parent too, since a person must look (resuming the parent resumes the child).
pub fn apply_child_end(rec: &RunRecord, child: &RunRecord, now: Timestamp) -> (RunRecord, Vec<HistoryEvent>, NextAction) {
    let mut d = Draft::new(rec, now);
    let name = rec.state_name.clone();
    let why = child.outcome.as_deref().and_then(|o| o.lines().next()).unwrap_or_default().to_string();
    if child.status == RunStatus::Halted {
        d.halt(
            format!("child run {} ({}) halted: {why}; fix what it says, then `drctl resume {}`", child.id, child.procedure, rec.id),
            &[],
        );
        return d.done(NextAction::Stop);
    }
    let Some((key, _)) = rec.children.iter().find(|(_, c)| c.run == child.id) else {
        d.finish(RunStatus::Failed, Outcome::Failed, format!("bug: run {} is not a child of {}", child.id, rec.id));
        return d.done(NextAction::Stop);
    };
    let key = key.clone();
    let end = ChildEnd { status: child.status, outcome: child.outcome.clone().unwrap_or_default() };
    if let Some(c) = d.rec.children.get_mut(&key) {
        c.ended = Some(end);
    }
    d.rec.status = stepping_status(rec);
    let detail = format!("child run {} ({}) {}: {why}", child.id, child.procedure, child.status.as_str());
    d.event(Outcome::ChildEnded, &name, &name, rec.attempt, Some(detail));
    d.done(NextAction::Continue)
}

/// The child run `rec` waits for, if any.
pub fn active_child(rec: &RunRecord) -> Option<&ChildRun> {
    rec.children.values().find(|c| c.ended.is_none())
}

/// Decide what resuming a run in a new process (or a halted run, explicitly) records.
pub fn apply_resume(rec: &RunRecord, now: Timestamp) -> (RunRecord, Vec<HistoryEvent>) {
    let mut d = Draft::new(rec, now);
    let name = rec.state_name.clone();
    let mut detail = format!("resumed at {name}");
    if rec.status == RunStatus::Halted {
        if let Some(o) = &rec.outcome {
            detail.push_str(&format!(" after halt: {}", o.lines().next().unwrap_or_default()));
        }
        // A person fixed what halted the run: step the same state again, with fresh bounds.
        d.rec.status = stepping_status(rec);
        d.rec.resumed_after_halt = true;
        d.rec.outcome = None;
        d.rec.attempt = 0;
        d.rec.wait = None;
        d.rec.retry = None;
        d.rec.pending_gate = None;
        if rec.deadline <= now {
            // Otherwise the first transient error would give up at once; grant the run its
            // original allowance again from now.
            d.rec.deadline = now.plus(rec.deadline.since(rec.created_at));
        }
    }
    d.event(Outcome::Resumed, &name, &name, rec.attempt, Some(detail));
    (d.rec, d.events)
}

/// Decide how a person's gate decision changes the run.
pub fn apply_gate_decision(rec: &RunRecord, gate: &str, decision: GateDecision, now: Timestamp) -> (RunRecord, Vec<HistoryEvent>) {
    let mut d = Draft::new(rec, now);
    let name = rec.state_name.clone();
    let (outcome, verb) = match decision.decision {
        Decision::Approved => (Outcome::Approved, "approved"),
        Decision::Rejected => (Outcome::Rejected, "rejected"),
    };
    let mut detail = format!("{gate} {verb} by {}", decision.by);
    if let Some(c) = &decision.comment {
        detail.push_str(&format!(": {c}"));
    }
    let pending = rec.pending_gate.as_ref().is_some_and(|p| p.gate == gate);
    if pending {
        d.rec.pending_gate = None;
        if rec.status == RunStatus::AwaitingApproval {
            d.rec.status = stepping_status(rec);
        }
    }
    let rejected_here = pending && decision.decision == Decision::Rejected && rec.abort.is_none();
    let by = decision.by.clone();
    d.rec.gates.insert(gate.to_string(), decision);
    d.event(outcome, &name, &name, rec.attempt, Some(detail));
    // Saying no to the question the run waits on ends it: aborted, after whatever undo its
    // state needs (a gate decided ahead of time is the procedure's to interpret when it comes).
    if rejected_here {
        d.rec.abort = Some(AbortRequest { by: by.clone(), at: now, handled: false });
        d.event(Outcome::AbortRequested, &name, &name, rec.attempt, Some(format!("by {by}: gate {gate} rejected")));
    }
    (d.rec, d.events)
}

/// Per-run coordination inside one process.
#[derive(Default)]
struct RunSlot {
    /// Serialises read-decide-commit of this run (driver commits and control operations).
    lock: Mutex<()>,
    /// Wakes the driver from a timer or gate wait (approve, reject, abort).
    wake: Notify,
    /// This process created or already resumed the run (so no `Resumed` event is due).
    attached: AtomicBool,
    driving: AtomicBool,
    /// The params and state bytes last checked against the procedure's invariants.
    checked: Mutex<Option<(Vec<u8>, Vec<u8>)>>,
}

impl RunSlot {
    fn checked_is(&self, rec: &RunRecord) -> bool {
        let c = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        c.as_ref().is_some_and(|(params, state)| *params == rec.params && *state == rec.state)
    }

    fn mark_checked(&self, rec: &RunRecord) {
        *self.checked.lock().unwrap_or_else(|p| p.into_inner()) = Some((rec.params.clone(), rec.state.clone()));
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // The guarded data is the store itself; a panic while holding the lock leaves nothing
        // half-written in memory.
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Clears `driving` when a driver stops, however it stops (including cancellation).
struct DrivingGuard(Arc<RunSlot>);

impl DrivingGuard {
    fn take(slot: &Arc<RunSlot>, id: &str) -> Result<DrivingGuard, EngineError> {
        if slot.driving.swap(true, Ordering::SeqCst) {
            return Err(EngineError::AlreadyDriving(id.to_string()));
        }
        Ok(DrivingGuard(slot.clone()))
    }
}

impl Drop for DrivingGuard {
    fn drop(&mut self) {
        self.0.driving.store(false, Ordering::SeqCst);
    }
}

/// Threads that may perform steps and commits at once. Group commit shares each device flush
/// among the commits waiting for it, so a few dozen committers keep the disk busy; thousands of
/// runs need not mean thousands of threads (each costs memory while it lives).
pub const MAX_STEP_THREADS: usize = 64;

/// The tokio runtime that drives runs: two workers (drctl's control work is light), at most
/// [`MAX_STEP_THREADS`] blocking threads for steps and commits.
pub fn driver_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).max_blocking_threads(MAX_STEP_THREADS).enable_all().build()
}

type Proc<E> = Arc<dyn ErasedProcedure<E>>;
pub type Progress = Arc<dyn Fn(&RunRecord) + Send + Sync>;

pub struct Engine<E: ?Sized> {
    store: Arc<dyn RunStore>,
    registry: Arc<Registry<E>>,
    policy: RetryPolicy,
    /// One slot per run touched by this process; bounded by the number of runs in the store.
    slots: Mutex<HashMap<String, Arc<RunSlot>>>,
}

fn join_err(e: tokio::task::JoinError) -> EngineError {
    EngineError::Internal(format!("blocking task failed: {e}"))
}

impl<E: ?Sized + Send + Sync + 'static> Engine<E> {
    pub fn new(store: Arc<dyn RunStore>, registry: Arc<Registry<E>>, policy: RetryPolicy) -> Self {
        Engine { store, registry, policy, slots: Mutex::new(HashMap::new()) }
    }

    pub fn store(&self) -> &Arc<dyn RunStore> {
        &self.store
    }

    pub fn registry(&self) -> &Arc<Registry<E>> {
        &self.registry
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    fn slot(&self, id: &str) -> Arc<RunSlot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(id.to_string()).or_default().clone()
    }

    /// Whether this process drives `rec`: its own driver, or its parent's (which descends into
    /// its active child). A run nobody drives moves only when someone resumes it.
    pub fn is_driven(&self, rec: &RunRecord) -> bool {
        let driving = |id: &str| {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.get(id).is_some_and(|s| s.driving.load(Ordering::SeqCst))
        };
        let mut id = rec.id.clone();
        let mut parent = rec.parent.clone();
        // Bounded: a parent chain is as deep as child runs nest, and ids never repeat.
        for _ in 0..16 {
            if driving(&id) {
                return true;
            }
            let Some(p) = parent.take() else { return false };
            parent = self.store.get_run(&p).ok().flatten().and_then(|r| r.parent);
            id = p;
        }
        false
    }

    fn load(&self, id: &str) -> Result<RunRecord, EngineError> {
        self.store.get_run(id)?.ok_or_else(|| EngineError::NoSuchRun(id.to_string()))
    }

    /// The registered procedure of a run, refusing versions this binary does not know, and
    /// asserting after loading that the stored state satisfies the procedure's invariants.
    fn procedure_for(&self, rec: &RunRecord) -> Result<Proc<E>, EngineError> {
        let unknown = |supported: String| EngineError::UnknownVersion {
            run: rec.id.clone(),
            procedure: rec.procedure.clone(),
            version: rec.procedure_version,
            supported,
        };
        let p = self.registry.get(&rec.procedure).ok_or_else(|| unknown(format!("does not know procedure {}", rec.procedure)))?;
        if p.version() != rec.procedure_version {
            return Err(unknown(format!("supports {} version {}", p.name(), p.version())));
        }
        // Decoding a state to check it costs more than the step itself in the simulator: a
        // record whose exact bytes this process already checked (its last commit, its last
        // load) is not checked again.
        let slot = self.existing_slot(&rec.id);
        if !slot.as_ref().is_some_and(|s| s.checked_is(rec)) {
            p.check(&rec.params, &rec.state).map_err(|error| EngineError::InvalidStoredState { run: rec.id.clone(), error })?;
            if let Some(s) = slot {
                s.mark_checked(rec);
            }
        }
        Ok(p.clone())
    }

    fn existing_slot(&self, id: &str) -> Option<Arc<RunSlot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Validate, build and durably store a new run. Nothing is stored if the procedure is
    /// unknown or the params are invalid. Blocking (durable commit): async callers use
    /// `spawn_blocking`.
    pub fn create_run(&self, req: NewRun, clock: &dyn Clock) -> Result<RunRecord, EngineError> {
        let now = clock.now();
        let id = self.store.next_run_id()?;
        let (rec, events) = self.new_record(&req, id.clone(), now)?;
        let slot = self.slot(&id);
        let _g = slot.lock();
        self.store.create_run(&rec, &events)?;
        slot.attached.store(true, Ordering::SeqCst);
        tracing::info!(run_id = %id, procedure = %rec.procedure, "run created");
        Ok(rec)
    }

    /// A new run's record and first events (created, pre-approvals), not stored yet.
    fn new_record(&self, req: &NewRun, id: String, now: Timestamp) -> Result<(RunRecord, Vec<HistoryEvent>), EngineError> {
        let p = self.registry.get(&req.procedure).ok_or_else(|| EngineError::UnknownProcedure {
            name: req.procedure.clone(),
            known: self.registry.iter().map(|p| p.name().to_string()).collect(),
        })?;
        let invalid = |error: String| EngineError::InvalidParams { procedure: req.procedure.clone(), error };
        let params = p.encode_params(req.params.clone()).map_err(invalid)?;
        let state = p.initial_state(&params).map_err(invalid)?;
        let state_name = p.state_name(&state).map_err(invalid)?;
        let rec = RunRecord::new(NewRecord {
            id,
            procedure: p.name().to_string(),
            procedure_version: p.version(),
            params,
            state,
            state_name: state_name.clone(),
            seed: req.seed,
            now,
            deadline: now.plus(req.deadline),
            labels: req.labels.clone(),
        });
        let mut d = Draft::new(&rec, now);
        d.event(Outcome::Created, "", &state_name, 0, Some(format!("{} v{} (seed {})", rec.procedure, rec.procedure_version, rec.seed)));
        for gate in &req.pre_approve {
            let decision =
                GateDecision { decision: Decision::Approved, by: req.approver.clone(), at: now, comment: Some("pre-approved".into()) };
            d.rec.gates.insert(gate.clone(), decision);
            d.event(Outcome::Approved, &state_name, &state_name, 0, Some(format!("{gate} pre-approved by {}", req.approver)));
        }
        Ok((d.rec, d.events))
    }

    /// The record of child `key` of `parent`, not stored yet: id `<parent>.<n>` (fixed by the
    /// parent's record, so a re-run step finds the same child), a seed derived from the parent's,
    /// the parent's remaining deadline and its labels (the same target).
    fn child_record(
        &self,
        parent: &RunRecord,
        key: &str,
        procedure: &str,
        params: serde_json::Value,
        now: Timestamp,
    ) -> Result<(RunRecord, Vec<HistoryEvent>), StepError> {
        let req = NewRun {
            procedure: procedure.to_string(),
            params,
            seed: crate::rng::mix(parent.seed, key.as_bytes()),
            deadline: parent.deadline.since(now),
            pre_approve: vec![],
            approver: String::new(),
            labels: parent.labels.clone(),
        };
        let id = format!("{}.{}", parent.id, parent.children.len() + 1);
        let (mut rec, events) = self.new_record(&req, id, now).map_err(|e| match e {
            EngineError::InvalidParams { error, .. } => {
                StepError::Permanent { reason: format!("cannot start child {key} ({procedure}): {error}"), evidence: vec![] }
            }
            other => StepError::Bug(format!("cannot start child {key}: {other}")),
        })?;
        rec.parent = Some(parent.id.clone());
        // A gate the parent passed is passed for the child too: the person who approved the
        // parent's gate approved what the child does under the same name (a triage's
        // `remove-member` is the replacement's).
        let mut d = Draft::new(&rec, now);
        for (gate, decision) in parent.gates.iter().filter(|(_, d)| d.decision == Decision::Approved) {
            d.rec.gates.insert(gate.clone(), decision.clone());
            let state = d.rec.state_name.clone();
            d.event(Outcome::Approved, &state, &state, 0, Some(format!("{gate} approved by {} in parent run {}", decision.by, parent.id)));
        }
        let (rec, events) = (d.rec, [events, d.events].concat());
        Ok((rec, events))
    }

    /// Drive run `id` until it is terminal. `progress` is called after every commit.
    /// A halted run driven explicitly is resumed from the state it halted in. Needs a tokio
    /// runtime with time enabled (gate waits re-check the store periodically).
    pub async fn drive(
        &self,
        id: &str,
        env: Arc<E>,
        clock: Arc<dyn Clock>,
        progress: Arc<dyn Fn(&RunRecord) + Send + Sync>,
    ) -> Result<RunRecord, EngineError> {
        let span = tracing::info_span!("run", run_id = %id, procedure = tracing::field::Empty);
        async {
            let slot = self.slot(id);
            let _driving = DrivingGuard::take(&slot, id)?;
            let (rec, resumed) = self.attach_with(id, &slot, &*clock)?;
            tracing::Span::current().record("procedure", rec.procedure.as_str());
            if resumed {
                progress(&rec);
            }
            if rec.status.is_terminal() {
                return Ok(rec);
            }
            // Bounded by the procedure: every outcome either moves to another state, ends the
            // run, or is a wait/retry that halts at its bound or the run's deadline; gates wait
            // for a person by design.
            loop {
                // Boxed: a run spends its life waiting, and its waiting future should not carry
                // the room a step needs (thousands of waiting runs, kilobytes each).
                let (rec, action) = Box::pin(self.step_inner(id, &env, &clock, &slot, &progress)).await?;
                progress(&rec);
                match action {
                    NextAction::Stop => return Ok(rec),
                    NextAction::Continue => {}
                    NextAction::SleepUntil(t) => sleep_or_wake(&*clock, t, &slot).await,
                    NextAction::AwaitDecision => wait_for_decision(&slot).await,
                }
                if rec.status.is_terminal() {
                    return Ok(rec);
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Take up run `id` in this process: the first time a process touches a run it did not
    /// create (a restart after a crash), and whenever the run is halted, that is a `Resumed`
    /// event. Returns the record, and whether it was resumed. A finished run is returned as it
    /// is; a run this binary cannot read is refused before anything is written. Blocking.
    pub fn attach(&self, id: &str, clock: &dyn Clock) -> Result<(RunRecord, bool), EngineError> {
        self.attach_with(id, &self.slot(id), clock)
    }

    fn attach_with(&self, id: &str, slot: &Arc<RunSlot>, clock: &dyn Clock) -> Result<(RunRecord, bool), EngineError> {
        let rec = self.load(id)?;
        if rec.status.is_terminal() && rec.status != RunStatus::Halted {
            return Ok((rec, false));
        }
        // Refuse before writing anything to a run this binary cannot read.
        let p = self.procedure_for(&rec)?;
        if slot.attached.swap(true, Ordering::SeqCst) && rec.status != RunStatus::Halted {
            return Ok((rec, false));
        }
        let now = clock.now();
        let (rec, _) = commit_under_lock(&*self.store, slot, &*p, &self.policy, &rec, move |fresh| {
            let (r, e) = apply_resume(fresh, now);
            (r, e, NextAction::Continue)
        })?;
        tracing::info!(run_id = %id, state = %rec.state_name, "resumed");
        // A parent resumed by a person resumes the child it halted for.
        if let Some(child) = active_child(&rec) {
            if self.load(&child.run)?.status == RunStatus::Halted {
                self.attach_with(&child.run, &self.slot(&child.run), clock)?;
            }
        }
        Ok((rec, true))
    }

    /// Perform exactly one step (or abort handling) and its commit, first sleeping through a
    /// pending timer and waiting at an undecided gate. Returns the committed record; a terminal
    /// run is returned unchanged. Used by [`Engine::drive`], and by tests to stop ("crash") at any
    /// transition. Does not append `Resumed`; `drive` does.
    pub async fn step_once(&self, id: &str, env: Arc<E>, clock: Arc<dyn Clock>) -> Result<RunRecord, EngineError> {
        let slot = self.slot(id);
        let _driving = DrivingGuard::take(&slot, id)?;
        let quiet: Progress = Arc::new(|_: &RunRecord| {});
        Ok(self.step_inner(id, &env, &clock, &slot, &quiet).await?.0)
    }

    async fn step_inner(
        &self,
        id: &str,
        env: &Arc<E>,
        clock: &Arc<dyn Clock>,
        slot: &Arc<RunSlot>,
        progress: &Progress,
    ) -> Result<(RunRecord, NextAction), EngineError> {
        // Each iteration either commits and returns, or waits for a timer or a notification and
        // re-reads the record (which another party may have changed meanwhile).
        let (rec, p) = loop {
            let rec = self.load(id)?;
            match due(&rec, clock.now()) {
                Due::Stop => return Ok((rec, NextAction::Stop)),
                Due::AwaitChild(child) => {
                    if !self.load(&child)?.status.is_terminal() {
                        self.drive_child(child.clone(), env.clone(), clock.clone(), progress.clone()).await?;
                    }
                    let (child, now) = (self.load(&child)?, clock.now());
                    return self.commit_decision(slot, &rec, move |fresh| apply_child_end(fresh, &child, now)).await;
                }
                Due::ActOnAbort => {
                    let p = self.procedure_for(&rec)?;
                    let plan = abort_plan(&*p, &rec)?;
                    let now = clock.now();
                    tracing::info!(run_id = %id, state = %rec.state_name, ?plan, "acting on abort request");
                    return self.commit_decision(slot, &rec, move |fresh| apply_abort(fresh, plan, now)).await;
                }
                // Durable timers: a restarted process does not check early.
                Due::SleepUntil(t) => sleep_or_wake(&**clock, t, slot).await,
                Due::AwaitDecision => wait_for_decision(slot).await,
                Due::Step => break (rec.clone(), self.procedure_for(&rec)?),
            }
        };
        let span = step_span(&rec);
        async {
            let (env, p2, rec2, now) = (env.clone(), p.clone(), rec.clone(), clock.now());
            // Steps are synchronous and may block on I/O: keep them off the async workers.
            let result = tokio::task::spawn_blocking(move || perform_step(&*p2, &*env, &rec2, now))
                .await
                .unwrap_or_else(|e| Err(StepError::Bug(format!("step was cancelled: {e}"))));
            let now = clock.now();
            let policy = self.policy.clone();
            let (new, action) = match self.child_to_start(&rec, result, now) {
                Ok((child, events, key)) => {
                    let (store, procedure) = (self.store.clone(), child.procedure.clone());
                    let parent = rec.id.clone();
                    let created = tokio::task::spawn_blocking(move || create_child(&*store, &child, &events, &parent).map(|()| child.id))
                        .await
                        .map_err(join_err)??;
                    self.commit_decision(slot, &rec, move |fresh| apply_child_started(fresh, &key, &created, &procedure, now)).await?
                }
                Err(result) => self.commit_decision(slot, &rec, move |fresh| apply(fresh, result, now, &policy)).await?,
            };
            record_outcome(&new, action);
            Ok((new, action))
        }
        .instrument(span)
        .await
    }

    /// Act on a pending abort request of run `id` (see [`Due::ActOnAbort`]): move to the undo
    /// path the procedure names, keep undoing, or stop. Blocking (durable commit).
    pub fn act_on_abort(&self, id: &str, clock: &dyn Clock) -> Result<(RunRecord, NextAction), EngineError> {
        let rec = self.load(id)?;
        let p = self.procedure_for(&rec)?;
        let plan = abort_plan(&*p, &rec)?;
        let now = clock.now();
        commit_under_lock(&*self.store, &self.slot(id), &*p, &self.policy, &rec, move |fresh| apply_abort(fresh, plan, now))
    }

    /// Perform the step of `rec`'s current state (its effects happen here) without committing
    /// anything: see [`Engine::commit_step`]. Blocking (the step's I/O).
    pub fn perform_step(&self, rec: &RunRecord, env: &E, clock: &dyn Clock) -> Result<Step<NamedState>, StepError> {
        let p = self.procedure_for(rec).map_err(|e| StepError::Bug(e.to_string()))?;
        perform_step(&*p, env, rec, clock.now())
    }

    /// Decide and commit what the step performed from `seen` leads to. Refused if the run moved
    /// meanwhile (another driver). Blocking (durable commit).
    pub fn commit_step(
        &self,
        seen: &RunRecord,
        result: Result<Step<NamedState>, StepError>,
        clock: &dyn Clock,
    ) -> Result<(RunRecord, NextAction), EngineError> {
        let p = self.procedure_for(seen)?;
        let now = clock.now();
        let policy = self.policy.clone();
        let _span = step_span(seen).entered();
        let slot = self.slot(&seen.id);
        let (new, action) = match self.child_to_start(seen, result, now) {
            Ok((child, events, key)) => {
                create_child(&*self.store, &child, &events, &seen.id)?;
                commit_under_lock(&*self.store, &slot, &*p, &self.policy, seen, |fresh| {
                    apply_child_started(fresh, &key, &child.id, &child.procedure, now)
                })?
            }
            Err(result) => {
                commit_under_lock(&*self.store, &slot, &*p, &self.policy, seen, move |fresh| apply(fresh, result, now, &policy))?
            }
        };
        record_outcome(&new, action);
        Ok((new, action))
    }

    /// A step's result that asks for a child: the child's record to create (and its key), or
    /// the result to decide on as it is (any other result, or the child's refusal).
    #[allow(clippy::type_complexity)]
    fn child_to_start(
        &self,
        parent: &RunRecord,
        result: Result<Step<NamedState>, StepError>,
        now: Timestamp,
    ) -> Result<(RunRecord, Vec<HistoryEvent>, String), Result<Step<NamedState>, StepError>> {
        match result {
            Ok(Step::Child { key, procedure, params }) => match self.child_record(parent, &key, &procedure, params, now) {
                Ok((child, events)) => Ok((child, events, key)),
                Err(e) => Err(Err(e)),
            },
            other => Err(other),
        }
    }

    /// Record how the active child of run `id` ended (see [`Due::AwaitChild`]); refused while it
    /// still runs. Blocking (durable commit).
    pub fn settle_child(&self, id: &str, clock: &dyn Clock) -> Result<(RunRecord, NextAction), EngineError> {
        let rec = self.load(id)?;
        let p = self.procedure_for(&rec)?;
        let Some(c) = active_child(&rec) else {
            return Err(EngineError::Refused { run: id.to_string(), reason: "it has no child run to wait for".into() });
        };
        let child = self.load(&c.run)?;
        if !child.status.is_terminal() {
            return Err(EngineError::Refused {
                run: id.to_string(),
                reason: format!("its child run {} is still {}", child.id, child.status.as_str()),
            });
        }
        let now = clock.now();
        commit_under_lock(&*self.store, &self.slot(id), &*p, &self.policy, &rec, move |fresh| apply_child_end(fresh, &child, now))
    }

    /// One action on run `id` (descending into its active child): act on an abort, perform and
    /// commit a step, or record how a child ended; or say what it waits for. The blocking driver
    /// for harnesses that decide themselves when time passes and when a process crashes.
    pub fn tick(&self, id: &str, env: &E, clock: &dyn Clock) -> Result<Tick, EngineError> {
        let (rec, _) = self.attach(id, clock)?;
        Ok(match due(&rec, clock.now()) {
            Due::Stop => Tick::Stopped(rec),
            Due::AwaitChild(child) => match self.load(&child)?.status.is_terminal() {
                true => Tick::Committed(self.settle_child(id, clock)?.0),
                false => self.tick(&child, env, clock)?,
            },
            Due::ActOnAbort => Tick::Committed(self.act_on_abort(id, clock)?.0),
            Due::SleepUntil(t) => Tick::SleepUntil(t),
            Due::AwaitDecision => Tick::AwaitDecision(rec),
            Due::Step => {
                let result = self.perform_step(&rec, env, clock);
                Tick::Committed(self.commit_step(&rec, result, clock)?.0)
            }
        })
    }

    /// [`Engine::drive`] of a child, boxed: a parent's driver drives its child (recursion).
    fn drive_child(
        &self,
        id: String,
        env: Arc<E>,
        clock: Arc<dyn Clock>,
        progress: Progress,
    ) -> BoxFuture<'_, Result<RunRecord, EngineError>> {
        Box::pin(async move { self.drive(&id, env, clock, progress).await })
    }

    /// [`commit_under_lock`] on a blocking thread.
    async fn commit_decision<F>(&self, slot: &Arc<RunSlot>, seen: &RunRecord, decide: F) -> Result<(RunRecord, NextAction), EngineError>
    where
        F: FnOnce(&RunRecord) -> (RunRecord, Vec<HistoryEvent>, NextAction) + Send + 'static,
    {
        let (store, slot, seen) = (self.store.clone(), slot.clone(), seen.clone());
        let p = self.procedure_for(&seen)?;
        let policy = self.policy.clone();
        tokio::task::spawn_blocking(move || commit_under_lock(&*store, &slot, &*p, &policy, &seen, decide)).await.map_err(join_err)?
    }

    /// Record a decision for the pending gate (or, by name, any gate ahead: a pre-approval).
    fn decide_gate(
        &self,
        id: &str,
        gate: Option<&str>,
        decision: Decision,
        by: &str,
        comment: Option<String>,
        clock: &dyn Clock,
    ) -> Result<RunRecord, EngineError> {
        let refuse = |reason: String| EngineError::Refused { run: id.to_string(), reason };
        let verb = match decision {
            Decision::Approved => "approve",
            Decision::Rejected => "reject",
        };
        let slot = self.slot(id);
        let new = {
            let _g = slot.lock();
            let rec = self.load(id)?;
            if rec.status.is_terminal() {
                return Err(refuse(format!("{}; there is no gate left to {verb}", rec.status.as_phrase())));
            }
            let target = match (gate, &rec.pending_gate) {
                (Some(g), _) => g.to_string(),
                (None, Some(p)) => p.gate.clone(),
                (None, None) => {
                    return Err(refuse(format!(
                        "it is not waiting at a gate (status {}); name the gate to {verb} it in advance",
                        rec.status.as_str()
                    )))
                }
            };
            if let Some(d) = rec.gates.get(&target) {
                let done = match d.decision {
                    Decision::Approved => "approved",
                    Decision::Rejected => "rejected",
                };
                return Err(refuse(format!("gate {target} was already {done} by {} at {}", d.by, d.at)));
            }
            let now = clock.now();
            let (new, events) = apply_gate_decision(&rec, &target, GateDecision { decision, by: by.to_string(), at: now, comment }, now);
            self.store.commit(&new, &events)?;
            tracing::info!(run_id = %id, gate = %target, by, "gate {verb}d");
            new
        };
        slot.wake.notify_one();
        Ok(new)
    }

    /// Approve the pending gate, or the named gate (ahead of time if it is not pending yet).
    /// Blocking (durable commit).
    pub fn approve(
        &self,
        id: &str,
        gate: Option<&str>,
        by: &str,
        comment: Option<String>,
        clock: &dyn Clock,
    ) -> Result<RunRecord, EngineError> {
        self.decide_gate(id, gate, Decision::Approved, by, comment, clock)
    }

    /// Reject the pending or named gate; the procedure decides what a rejection means.
    /// Blocking (durable commit).
    pub fn reject(
        &self,
        id: &str,
        gate: Option<&str>,
        by: &str,
        comment: Option<String>,
        clock: &dyn Clock,
    ) -> Result<RunRecord, EngineError> {
        self.decide_gate(id, gate, Decision::Rejected, by, comment, clock)
    }

    /// Request an abort. The driver acts on it at its next step (or right away if it is
    /// sleeping or at a gate). Requesting again is a no-op. Blocking (durable commit).
    /// Correct parameters of halted run `id` (`drctl resume RUN --set KEY=VALUE`): each key must
    /// be one its procedure declares correctable in the state it halted in. The run starts again
    /// from its first state with the new values, still halted until resumed; the history records
    /// who changed what from what. `check` sees the corrected params (JSON) first: the checks
    /// `drctl run` makes against the target. Nothing is written when anything is refused.
    /// Blocking.
    pub fn correct(
        &self,
        id: &str,
        changes: &[(String, String)],
        by: &str,
        clock: &dyn Clock,
        check: impl FnOnce(&serde_json::Value) -> Result<(), String>,
    ) -> Result<RunRecord, EngineError> {
        let slot = self.slot(id);
        let _g = slot.lock();
        let rec = self.load(id)?;
        let refused = |reason: String| EngineError::Refused { run: id.to_string(), reason };
        if rec.status != RunStatus::Halted {
            return Err(refused(format!("{}: only a halted run's parameters may be corrected", rec.status.as_phrase())));
        }
        if rec.abort.is_some() {
            return Err(refused("an abort was requested: resume it to carry out the abort".into()));
        }
        let p = self.procedure_for(&rec)?;
        let (params, changed) = p.correct(&rec.params, &rec.state, changes).map_err(refused)?;
        check(&p.params_json(&params).map_err(EngineError::Internal)?).map_err(refused)?;
        let state = p.initial_state(&params).map_err(|e| EngineError::Internal(format!("corrected parameters: {e}")))?;
        let state_name = p.state_name(&state).map_err(|e| EngineError::Internal(format!("corrected parameters: {e}")))?;
        let mut d = Draft::new(&rec, clock.now());
        let what: Vec<String> = changed.iter().map(|(k, old, new)| format!("{k}: {old} -> {new}")).collect();
        let detail = format!("by {by}: {}; starts again from {state_name} (halted in {})", what.join(", "), rec.state_name);
        d.rec.params = params;
        // It starts again: with the whole allowance it was started with, from now.
        d.rec.deadline = d.now.plus(rec.deadline.since(rec.created_at));
        d.rec.state = state;
        d.rec.state_name = state_name.clone();
        d.event(Outcome::Corrected, &rec.state_name, &state_name, 0, Some(detail));
        self.store.commit(&d.rec, &d.events)?;
        tracing::info!(run_id = %id, by, "parameters corrected");
        Ok(d.rec)
    }

    pub fn abort(&self, id: &str, by: &str, clock: &dyn Clock) -> Result<RunRecord, EngineError> {
        let slot = self.slot(id);
        let new = {
            let _g = slot.lock();
            let rec = self.load(id)?;
            // A halted run may be aborted too: the request is recorded, and the run carries it
            // out (its undo path, from the state it halted in) when it is next driven.
            // Aborting an aborted run is what was asked for already (a retried request whose
            // first answer was lost): answer it, change nothing.
            if rec.status == RunStatus::Aborted {
                return Ok(rec);
            }
            if rec.status.is_terminal() && rec.status != RunStatus::Halted {
                return Err(EngineError::Refused {
                    run: id.to_string(),
                    reason: format!("{} already; there is nothing to abort", rec.status.as_phrase()),
                });
            }
            if rec.abort.is_some() {
                return Ok(rec);
            }
            let now = clock.now();
            let mut d = Draft::new(&rec, now);
            d.rec.abort = Some(AbortRequest { by: by.to_string(), at: now, handled: false });
            d.event(Outcome::AbortRequested, &rec.state_name, &rec.state_name, rec.attempt, Some(format!("by {by}")));
            self.store.commit(&d.rec, &d.events)?;
            tracing::info!(run_id = %id, by, "abort requested");
            d.rec
        };
        slot.wake.notify_one();
        // The abort reaches the child the run waits for; the run acts on its own once the child
        // ended (a halted child is left for a person).
        if let Some(child) = active_child(&new) {
            match self.abort(&child.run, by, clock) {
                Ok(_) | Err(EngineError::Refused { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(new)
    }

    /// Runs that `drctl resume` continues: those not terminal (children through their parent).
    pub fn resumable(&self) -> Result<Vec<RunRecord>, EngineError> {
        // A child run is driven by its parent's driver.
        Ok(self.store.list_unfinished()?.into_iter().filter(|r| r.parent.is_none()).collect())
    }
}

fn abort_plan<E: ?Sized>(p: &dyn ErasedProcedure<E>, rec: &RunRecord) -> Result<AbortPlan, EngineError> {
    let bug = |error: String| EngineError::InvalidStoredState { run: rec.id.clone(), error };
    if p.is_undo_state(&rec.state).map_err(bug)? {
        return Ok(AbortPlan::KeepUndoing);
    }
    Ok(match p.on_abort(&rec.params, &rec.state).map_err(bug)? {
        Some(bytes) => AbortPlan::Undo(NamedState { name: p.state_name(&bytes).map_err(bug)?, bytes }),
        None => AbortPlan::Stop,
    })
}

/// What one [`Engine::tick`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Tick {
    /// Committed a decision (of the run or of a child it waits for).
    Committed(RunRecord),
    /// Nothing is due before then.
    SleepUntil(Timestamp),
    /// Stopped at a gate nobody decided yet.
    AwaitDecision(RunRecord),
    /// The run is terminal.
    Stopped(RunRecord),
}

/// Create child run `child` of `parent`, or find it created already (by an attempt that crashed
/// before its parent recorded it): exactly one child per key, however often the step re-runs.
fn create_child(store: &dyn RunStore, child: &RunRecord, events: &[HistoryEvent], parent: &str) -> Result<(), EngineError> {
    match store.create_run(child, events) {
        Ok(()) => Ok(()),
        Err(StoreError::RunExists(_)) => match store.get_run(&child.id)? {
            Some(found) if found.parent.as_deref() == Some(parent) && found.procedure == child.procedure => Ok(()),
            found => Err(EngineError::Internal(format!(
                "child run {} of {parent} exists but is not that child ({:?})",
                child.id,
                found.map(|f| (f.procedure, f.parent))
            ))),
        },
        Err(e) => Err(e.into()),
    }
}

/// What a run needs next, decided from its record alone. The one place this is decided: the
/// async driver and the chaos harness both ask it, in this order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    /// The run is terminal.
    Stop,
    /// Its child run (this id) must end first: drive it, then [`Engine::settle_child`].
    AwaitChild(String),
    /// An abort was requested and not acted on yet: see [`Engine::act_on_abort`].
    ActOnAbort,
    /// A durable timer (wait re-check or retry) is not due yet: a restarted process does not
    /// check early.
    SleepUntil(Timestamp),
    /// Stopped at a gate nobody decided yet.
    AwaitDecision,
    /// Perform the current state's step.
    Step,
}

pub fn due(rec: &RunRecord, now: Timestamp) -> Due {
    if rec.status.is_terminal() {
        return Due::Stop;
    }
    // A child runs to its end first, even on an abort (which reaches it too): the parent's undo
    // must not race its child's.
    if let Some(c) = active_child(rec) {
        return Due::AwaitChild(c.run.clone());
    }
    if rec.abort.as_ref().is_some_and(|a| !a.handled) {
        return Due::ActOnAbort;
    }
    if let Some(t) = due_at(rec).filter(|t| *t > now) {
        return Due::SleepUntil(t);
    }
    if rec.pending_gate.as_ref().is_some_and(|g| !rec.gates.contains_key(&g.gate)) {
        return Due::AwaitDecision;
    }
    Due::Step
}

/// What a step may know about its run.
pub fn step_context(rec: &RunRecord, now: Timestamp) -> StepContext {
    StepContext {
        run_id: rec.id.clone(),
        now,
        attempt: rec.attempt,
        seed: rec.seed,
        aborting: rec.abort.is_some(),
        waiting_since: rec.wait.as_ref().map(|w| w.since),
        resumed: rec.resumed_after_halt,
        gates: rec.gates.clone(),
        children: rec.children.clone(),
    }
}

/// Run the step of `rec`'s state and name the state it moves to. A panic in the step, or a step
/// asking again for a gate already decided, is our bug, not the world failing.
fn perform_step<E: ?Sized>(p: &dyn ErasedProcedure<E>, env: &E, rec: &RunRecord, now: Timestamp) -> Result<Step<NamedState>, StepError> {
    let cx = step_context(rec, now);
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.step(env, &cx, &rec.params, &rec.state)));
    let step = match out {
        Ok(r) => r?,
        Err(e) => {
            let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            return Err(StepError::Bug(format!("step panicked: {msg}")));
        }
    };
    Ok(match step {
        Step::Next(bytes) => Step::Next(NamedState { name: p.state_name(&bytes).map_err(StepError::Bug)?, bytes }),
        Step::Gate { gate, .. } if cx.gates.contains_key(&gate) => {
            return Err(StepError::Bug(format!("{} asked again for gate {gate}, which was already decided", rec.procedure)));
        }
        Step::Child { key, .. } if cx.children.contains_key(&key) => {
            return Err(StepError::Bug(format!("{} asked again for child {key}, which was already started", rec.procedure)));
        }
        Step::Child { key, procedure, params } => Step::Child { key, procedure, params },
        Step::Wait { waiting_for, recheck_after, bound } => Step::Wait { waiting_for, recheck_after, bound },
        Step::Gate { gate, prompt, evidence } => Step::Gate { gate, prompt, evidence },
        Step::Done { summary } => Step::Done { summary },
        Step::Halt { reason, evidence } => Step::Halt { reason, evidence },
    })
}

fn step_span(rec: &RunRecord) -> tracing::Span {
    tracing::info_span!(
        "step",
        run_id = %rec.id,
        procedure = %rec.procedure,
        from = %rec.state_name,
        to = tracing::field::Empty,
        attempt = rec.attempt,
        outcome = tracing::field::Empty,
    )
}

fn record_outcome(new: &RunRecord, action: NextAction) {
    let span = tracing::Span::current();
    span.record("to", new.state_name.as_str());
    span.record("outcome", new.status.as_str());
    tracing::info!(status = new.status.as_str(), ?action, "committed");
}

/// Under the run's lock: re-read the record, check nobody else moved its state since `seen`,
/// decide, assert the result, and commit durably.
fn commit_under_lock<E: ?Sized, F>(
    store: &dyn RunStore,
    slot: &RunSlot,
    p: &dyn ErasedProcedure<E>,
    policy: &RetryPolicy,
    seen: &RunRecord,
    decide: F,
) -> Result<(RunRecord, NextAction), EngineError>
where
    F: FnOnce(&RunRecord) -> (RunRecord, Vec<HistoryEvent>, NextAction),
{
    let _g = slot.lock();
    let id = &seen.id;
    let fresh = store.get_run(id)?.ok_or_else(|| EngineError::NoSuchRun(id.clone()))?;
    // Only the driver changes state or ends a run; control operations change neither.
    let ended = fresh.status.is_terminal() && fresh.status != seen.status;
    if fresh.state != seen.state || fresh.state_name != seen.state_name || ended {
        return Err(EngineError::Conflict {
            run: id.clone(),
            detail: format!("the run moved to {} ({}) while a step ran from {}", fresh.state_name, fresh.status.as_str(), seen.state_name),
        });
    }
    let (mut new, mut events, mut action) = decide(&fresh);
    // Assert before persisting: never store a state we could not resume from, nor take an edge
    // the procedure's state graph does not have.
    let invalid = p
        .check(&new.params, &new.state)
        .map_err(|e| format!("{} would move to an invalid state {}: {e}", new.procedure, new.state_name))
        .and_then(|()| match new.state_name != fresh.state_name {
            true => check_edge(p.state_catalog(), &fresh.state_name, &new.state_name).map_err(|e| format!("{}: {e}", new.procedure)),
            false => Ok(()),
        });
    let checked = invalid.is_ok();
    if let Err(e) = invalid {
        (new, events, action) = apply(&fresh, Err(StepError::Bug(e)), new.updated_at, policy);
    }
    store.commit(&new, &events)?;
    if checked {
        slot.mark_checked(&new);
    }
    Ok((new, action))
}

/// Sleep on the injected clock until `t`, or until an approve/reject/abort wakes the run.
async fn sleep_or_wake(clock: &dyn Clock, t: Timestamp, slot: &RunSlot) {
    tokio::select! {
        _ = clock.sleep_until(t) => {}
        _ = slot.wake.notified() => {}
    }
}

/// Wait for a notification, re-checking the store now and then in case the decision came from
/// another process (the CLI deciding on the store directly).
async fn wait_for_decision(slot: &RunSlot) {
    let _ = tokio::time::timeout(GATE_RECHECK, slot.wake.notified()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RunStatus::*;

    fn rec() -> RunRecord {
        RunRecord {
            id: "1".into(),
            procedure: "toy".into(),
            procedure_version: 1,
            params: vec![],
            state: vec![1],
            state_name: "A".into(),
            status: Running,
            seed: 3,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            deadline: Timestamp(60_000),
            attempt: 0,
            wait: None,
            retry: None,
            pending_gate: None,
            gates: BTreeMap::new(),
            abort: None,
            outcome: None,
            next_seq: 1,
            labels: BTreeMap::new(),
            parent: None,
            children: Default::default(),
            resumed_after_halt: false,
        }
    }

    fn wait(bound_s: u64) -> Result<Step<NamedState>, StepError> {
        Ok(Step::Wait { waiting_for: "quorum".into(), recheck_after: Duration::from_secs(10), bound: Duration::from_secs(bound_s) })
    }

    fn transient() -> Result<Step<NamedState>, StepError> {
        Err(StepError::Transient { what: "list members".into(), error: "connection refused".into() })
    }

    #[test]
    fn next_moves_state_and_records_one_transition() {
        let mut r = rec();
        r.attempt = 2;
        r.retry = Some(RetryInfo { since: Timestamp(1), next_try_at: Timestamp(2), last_error: "x".into() });
        let (n, ev, a) = apply(&r, Ok(Step::Next(NamedState { bytes: vec![2], name: "B".into() })), Timestamp(5), &RetryPolicy::default());
        assert_eq!((n.state.clone(), n.state_name.as_str(), n.attempt, n.retry.clone(), n.status), (vec![2], "B", 0, None, Running));
        assert_eq!(a, NextAction::Continue);
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].seq, ev[0].from.as_str(), ev[0].to.as_str(), ev[0].attempt), (1, "A", "B", 2));
        assert_eq!(n.next_seq, 2);
    }

    #[test]
    fn a_wait_is_history_once_and_rechecks_only_move_the_timer() {
        let p = RetryPolicy::default();
        let (r1, ev1, a1) = apply(&rec(), wait(60), Timestamp(1000), &p);
        assert_eq!(ev1.len(), 1);
        assert_eq!(ev1[0].outcome, Outcome::Waiting);
        assert_eq!(a1, NextAction::SleepUntil(Timestamp(11_000)));
        assert_eq!(r1.status, Waiting);
        let (r2, ev2, a2) = apply(&r1, wait(60), Timestamp(11_000), &p);
        assert!(ev2.is_empty(), "a re-check must not add history");
        assert_eq!(r2.wait.as_ref().unwrap().since, Timestamp(1000));
        assert_eq!(a2, NextAction::SleepUntil(Timestamp(21_000)));
        // The last check lands exactly on the bound, then the run halts.
        let (r3, _, a3) = apply(&r2, wait(60), Timestamp(55_000), &p);
        assert_eq!(a3, NextAction::SleepUntil(Timestamp(61_000)));
        let (r4, ev4, a4) = apply(&r3, wait(60), Timestamp(61_000), &p);
        assert_eq!((r4.status, a4), (Halted, NextAction::Stop));
        assert_eq!(r4.outcome.as_deref(), Some("timed out after 1m00s waiting for quorum"));
        assert_eq!(ev4.last().unwrap().outcome, Outcome::Halted);
        assert!(r4.wait.is_none());
    }

    #[test]
    fn transient_failures_retry_with_history_then_give_up_at_the_deadline() {
        let p = RetryPolicy { jitter_percent: 0, ..RetryPolicy::default() };
        let (r1, ev1, a1) = apply(&rec(), transient(), Timestamp(1000), &p);
        assert_eq!((r1.status, r1.attempt), (Retrying, 1));
        assert_eq!(a1, NextAction::SleepUntil(Timestamp(1800)));
        assert_eq!(ev1[0].outcome, Outcome::Retry);
        assert_eq!(ev1[0].detail.as_deref(), Some("list members: connection refused"));
        let (r2, ev2, _) = apply(&r1, transient(), Timestamp(1800), &p);
        assert_eq!(r2.retry.as_ref().unwrap().since, Timestamp(1000));
        assert_eq!(r2.retry.as_ref().unwrap().next_try_at, Timestamp(3400));
        assert_eq!(ev2[0].attempt, 2);
        let mut late = r2.clone();
        late.deadline = Timestamp(4000);
        let (r3, ev3, a3) = apply(&late, transient(), Timestamp(3400), &p);
        assert_eq!((r3.status, a3), (Halted, NextAction::Stop));
        assert!(r3.outcome.as_deref().unwrap().starts_with("gave up after 3 attempts since 1970-01-01T00:00:01.000Z: list members"));
        assert_eq!(ev3.iter().map(|e| e.outcome.clone()).collect::<Vec<_>>(), [Outcome::Retry, Outcome::Halted]);
    }

    #[test]
    fn gate_then_decision() {
        let p = RetryPolicy::default();
        let gate = Ok(Step::Gate { gate: "remove-member".into(), prompt: "remove m1?".into(), evidence: vec![] });
        let (r1, ev1, a1) = apply(&rec(), gate.clone(), Timestamp(5), &p);
        assert_eq!((r1.status, a1, ev1.len()), (AwaitingApproval, NextAction::AwaitDecision, 1));
        // Asking again for the same pending gate adds nothing.
        let (_, ev, _) = apply(&r1, gate, Timestamp(6), &p);
        assert!(ev.is_empty());
        let d = GateDecision { decision: Decision::Approved, by: "ana".into(), at: Timestamp(7), comment: Some("ok".into()) };
        let (r2, ev2) = apply_gate_decision(&r1, "remove-member", d, Timestamp(7));
        assert_eq!((r2.status, r2.pending_gate.is_none()), (Running, true));
        assert_eq!(ev2[0].detail.as_deref(), Some("remove-member approved by ana: ok"));
    }

    #[test]
    fn abort_plans() {
        let mut r = rec();
        r.abort = Some(AbortRequest { by: "bo".into(), at: Timestamp(1), handled: false });
        let (s, ev, a) = apply_abort(&r, AbortPlan::Stop, Timestamp(2));
        assert_eq!((s.status, a, ev[0].outcome.clone()), (Aborted, NextAction::Stop, Outcome::Aborted));
        let (u, ev, a) = apply_abort(&r, AbortPlan::Undo(NamedState { bytes: vec![9], name: "UndoA".into() }), Timestamp(2));
        assert_eq!((u.status, a, u.state_name.as_str()), (Aborting, NextAction::Continue, "UndoA"));
        assert!(u.abort.as_ref().unwrap().handled);
        assert_eq!(ev[0].detail.as_deref(), Some("abort requested by bo: undoing"));
        // The undo path finishing ends the run as Aborted, not Succeeded.
        let (d, _, _) = apply(&u, Ok(Step::Done { summary: "undone".into() }), Timestamp(3), &RetryPolicy::default());
        assert_eq!(d.status, Aborted);
        let (k, ev, _) = apply_abort(&r, AbortPlan::KeepUndoing, Timestamp(2));
        assert!(ev.is_empty());
        assert_eq!((k.status, k.state_name.as_str()), (Aborting, "A"));
    }

    #[test]
    fn resuming_a_halted_run_clears_the_halt_and_renews_an_expired_deadline() {
        let mut r = rec();
        r.status = Halted;
        r.outcome = Some("guard violated\nevidence:\n- x".into());
        let (n, ev) = apply_resume(&r, Timestamp(100_000));
        assert_eq!((n.status, n.outcome.clone()), (Running, None));
        assert_eq!(n.deadline, Timestamp(160_000));
        assert_eq!(ev[0].detail.as_deref(), Some("resumed at A after halt: guard violated"));
    }
}
