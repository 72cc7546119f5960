//! The engine end to end on a real store, with toy procedures and a manual clock.

use drctl_runtime::clock::ManualClock;
use drctl_runtime::executor::{due, Due, Engine, EngineError, NewRun, NextAction, Tick};
use drctl_runtime::record::{Decision, HistoryEvent, Outcome, RunRecord, RunStatus};
use drctl_runtime::store::{MemStore, RunStore, Store};
use drctl_runtime::{Clock, Procedure, Registry, RetryPolicy, Step, StepContext, StepError, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T0: Timestamp = Timestamp(1_700_000_000_000);

#[derive(Default)]
struct ToyEnv {
    /// Lets the `halter` procedure pass once "a person fixed it".
    fixed: AtomicBool,
    /// Effects performed by the `undo` procedure, in order.
    effects: Mutex<Vec<String>>,
}

fn step_ok<S>(s: Step<S>) -> Result<Step<S>, StepError> {
    Ok(s)
}

/// Counts to `n`, one transition per number.
struct Counter;
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CounterParams {
    n: u32,
}
impl Procedure for Counter {
    type Env = ToyEnv;
    type Params = CounterParams;
    type State = u32;
    const NAME: &'static str = "counter";
    const VERSION: u32 = 1;
    fn validate(&self, p: &CounterParams) -> Result<(), String> {
        if p.n > 1000 {
            return Err("n must be at most 1000".into());
        }
        Ok(())
    }
    fn initial_state(&self, _: &CounterParams) -> u32 {
        0
    }
    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[("Count", &[])]
    }
    fn state_name(&self, s: &u32) -> String {
        format!("Count({s})")
    }
    fn check_state(&self, p: &CounterParams, s: &u32) -> Result<(), String> {
        if *s > p.n {
            return Err(format!("count {s} beyond {}", p.n));
        }
        Ok(())
    }
    fn step(&self, _: &ToyEnv, _: &StepContext, p: &CounterParams, s: &u32) -> Result<Step<u32>, StepError> {
        step_ok(if *s >= p.n { Step::Done { summary: format!("counted to {}", p.n) } } else { Step::Next(s + 1) })
    }
}

/// Waits until `ready_after_s` have passed since the wait began.
struct Waiter;
#[derive(Clone, Debug, Serialize, Deserialize)]
struct WaiterParams {
    ready_after_s: u64,
    recheck_s: u64,
    bound_s: u64,
}
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum WaiterState {
    Check,
    Ready,
}
impl Procedure for Waiter {
    type Env = ToyEnv;
    type Params = WaiterParams;
    type State = WaiterState;
    const NAME: &'static str = "waiter";
    const VERSION: u32 = 1;
    fn validate(&self, _: &WaiterParams) -> Result<(), String> {
        Ok(())
    }
    fn initial_state(&self, _: &WaiterParams) -> WaiterState {
        WaiterState::Check
    }
    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[("Check", &["Ready"]), ("Ready", &[])]
    }
    fn state_name(&self, s: &WaiterState) -> String {
        format!("{s:?}")
    }
    fn step(&self, _: &ToyEnv, cx: &StepContext, p: &WaiterParams, s: &WaiterState) -> Result<Step<WaiterState>, StepError> {
        step_ok(match s {
            WaiterState::Check => match cx.waiting_since {
                Some(since) if cx.now.since(since) >= Duration::from_secs(p.ready_after_s) => Step::Next(WaiterState::Ready),
                _ => Step::Wait {
                    waiting_for: "the condition".into(),
                    recheck_after: Duration::from_secs(p.recheck_s),
                    bound: Duration::from_secs(p.bound_s),
                },
            },
            WaiterState::Ready => Step::Done { summary: "ready".into() },
        })
    }
}

/// Fails transiently `failures` times, then succeeds.
struct Flaky;
#[derive(Clone, Debug, Serialize, Deserialize)]
struct FlakyParams {
    failures: u32,
}
impl Procedure for Flaky {
    type Env = ToyEnv;
    type Params = FlakyParams;
    type State = bool;
    const NAME: &'static str = "flaky";
    const VERSION: u32 = 1;
    fn validate(&self, _: &FlakyParams) -> Result<(), String> {
        Ok(())
    }
    fn initial_state(&self, _: &FlakyParams) -> bool {
        false
    }
    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[("Call", &["Called"]), ("Called", &[])]
    }
    fn state_name(&self, s: &bool) -> String {
        (if *s { "Called" } else { "Call" }).into()
    }
    fn step(&self, _: &ToyEnv, cx: &StepContext, p: &FlakyParams, s: &bool) -> Result<Step<bool>, StepError> {
        if *s {
            return Ok(Step::Done { summary: "called".into() });
        }
        if cx.attempt < p.failures {
            return Err(StepError::Transient { what: "call api".into(), error: "connection refused".into() });
        }
        Ok(Step::Next(true))
    }
}

/// Prepare -> gate "apply" -> Apply -> done; rejection halts. Nothing to undo on abort.
struct Approval;
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum ApprovalState {
    Prepare,
    Approve,
    Apply,
}
impl Procedure for Approval {
    type Env = ToyEnv;
    type Params = ();
    type State = ApprovalState;
    const NAME: &'static str = "approval";
    const VERSION: u32 = 2;
    fn validate(&self, _: &()) -> Result<(), String> {
        Ok(())
    }
    fn initial_state(&self, _: &()) -> ApprovalState {
        ApprovalState::Prepare
    }
    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[("Prepare", &["Approve"]), ("Approve", &["Apply"]), ("Apply", &[])]
    }
    fn state_name(&self, s: &ApprovalState) -> String {
        format!("{s:?}")
    }
    fn step(&self, _: &ToyEnv, cx: &StepContext, _: &(), s: &ApprovalState) -> Result<Step<ApprovalState>, StepError> {
        step_ok(match s {
            ApprovalState::Prepare => Step::Next(ApprovalState::Approve),
            ApprovalState::Approve => match cx.gate("apply") {
                None => Step::Gate { gate: "apply".into(), prompt: "apply the change?".into(), evidence: vec!["diff: +1".into()] },
                Some(d) if d.decision == Decision::Approved => Step::Next(ApprovalState::Apply),
                Some(d) => Step::Halt { reason: format!("rejected by {}", d.by), evidence: vec![] },
            },
            ApprovalState::Apply => Step::Done { summary: "applied".into() },
        })
    }
}

/// A -> B; B halts with a permanent error until the env is fixed.
struct Halter;
impl Procedure for Halter {
    type Env = ToyEnv;
    type Params = ();
    type State = char;
    const NAME: &'static str = "halter";
    const VERSION: u32 = 1;
    fn validate(&self, _: &()) -> Result<(), String> {
        Ok(())
    }
    fn initial_state(&self, _: &()) -> char {
        'A'
    }
    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[("A", &["B"]), ("B", &[])]
    }
    fn state_name(&self, s: &char) -> String {
        s.to_string()
    }
    fn step(&self, env: &ToyEnv, _: &StepContext, _: &(), s: &char) -> Result<Step<char>, StepError> {
        match s {
            'A' => Ok(Step::Next('B')),
            _ if env.fixed.load(Ordering::SeqCst) => Ok(Step::Done { summary: "fixed".into() }),
            _ => Err(StepError::Permanent { reason: "guard violated".into(), evidence: vec!["member m1 unhealthy".into()] }),
        }
    }
}

/// Do(0) -> Do(1) -> Do(2) -> Hold (gate "finish") -> done. Aborting from Do(i>0) or Hold undoes
/// step by step through Undo(i) .. Undo(0).
struct Undo;
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum UndoState {
    Do(u8),
    Hold,
    Undo(u8),
}
impl Procedure for Undo {
    type Env = ToyEnv;
    type Params = ();
    type State = UndoState;
    const NAME: &'static str = "undo";
    const VERSION: u32 = 1;
    fn validate(&self, _: &()) -> Result<(), String> {
        Ok(())
    }
    fn initial_state(&self, _: &()) -> UndoState {
        UndoState::Do(0)
    }
    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[("Do", &["Hold", "Undo"]), ("Hold", &["Undo"]), ("Undo", &[])]
    }
    fn state_name(&self, s: &UndoState) -> String {
        format!("{s:?}")
    }
    fn step(&self, env: &ToyEnv, cx: &StepContext, _: &(), s: &UndoState) -> Result<Step<UndoState>, StepError> {
        step_ok(match s {
            UndoState::Do(i) => {
                env.effects.lock().unwrap().push(format!("do {i}"));
                Step::Next(if *i >= 2 { UndoState::Hold } else { UndoState::Do(i + 1) })
            }
            UndoState::Hold => match cx.gate("finish") {
                None => Step::Gate { gate: "finish".into(), prompt: "finish?".into(), evidence: vec![] },
                Some(_) => Step::Done { summary: "finished".into() },
            },
            UndoState::Undo(i) => {
                assert!(cx.aborting);
                env.effects.lock().unwrap().push(format!("undo {i}"));
                if *i == 0 {
                    Step::Done { summary: "undone".into() }
                } else {
                    Step::Next(UndoState::Undo(i - 1))
                }
            }
        })
    }
    fn on_abort(&self, _: &(), s: &UndoState) -> Option<UndoState> {
        match s {
            UndoState::Do(0) => None,
            UndoState::Do(i) => Some(UndoState::Undo(i - 1)),
            UndoState::Hold => Some(UndoState::Undo(2)),
            UndoState::Undo(i) => Some(UndoState::Undo(*i)),
        }
    }
    fn is_undo_state(&self, s: &UndoState) -> bool {
        matches!(s, UndoState::Undo(_))
    }
}

fn engine(dir: &Path) -> Arc<Engine<ToyEnv>> {
    engine_on(Arc::new(Store::open(dir).unwrap()))
}

fn engine_on(store: Arc<dyn RunStore>) -> Arc<Engine<ToyEnv>> {
    let mut reg = Registry::default();
    reg.register(Counter);
    reg.register(Waiter);
    reg.register(Flaky);
    reg.register(Approval);
    reg.register(Halter);
    reg.register(Undo);
    let policy = RetryPolicy { initial: Duration::from_secs(1), max: Duration::from_secs(30), multiplier: 2, jitter_percent: 20 };
    Arc::new(Engine::new(store, Arc::new(reg), policy))
}

fn req(procedure: &str, params: serde_json::Value) -> NewRun {
    NewRun {
        procedure: procedure.into(),
        params,
        seed: 42,
        deadline: Duration::from_secs(3600),
        pre_approve: vec![],
        approver: "test".into(),
        labels: BTreeMap::new(),
    }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(T0))
}

fn no_progress() -> Arc<dyn Fn(&RunRecord) + Send + Sync> {
    Arc::new(|_: &RunRecord| {})
}

fn outcomes(h: &[HistoryEvent]) -> Vec<Outcome> {
    h.iter().map(|e| e.outcome.clone()).collect()
}

async fn run_to_end(e: &Engine<ToyEnv>, r: NewRun) -> (RunRecord, Vec<HistoryEvent>) {
    let c = clock();
    let rec = e.create_run(r, &*c).unwrap();
    let done = e.drive(&rec.id, Arc::new(ToyEnv::default()), c, no_progress()).await.unwrap();
    let h = e.store().history(&rec.id).unwrap();
    (done, h)
}

/// Drive `id` in the background, reporting each committed status.
fn spawn_driver(
    e: &Arc<Engine<ToyEnv>>,
    id: &str,
    env: Arc<ToyEnv>,
    c: Arc<ManualClock>,
) -> (tokio::task::JoinHandle<Result<RunRecord, EngineError>>, tokio::sync::watch::Receiver<RunStatus>) {
    let (tx, rx) = tokio::sync::watch::channel(RunStatus::Running);
    let (e, id) = (e.clone(), id.to_string());
    let h = tokio::spawn(async move {
        e.drive(
            &id,
            env,
            c,
            Arc::new(move |r: &RunRecord| {
                tx.send_replace(r.status);
            }),
        )
        .await
    });
    (h, rx)
}

async fn until(rx: &mut tokio::sync::watch::Receiver<RunStatus>, s: RunStatus) {
    tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|x| *x == s)).await.expect("status not reached in time").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_runs_to_success_with_one_event_per_transition() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let (done, h) = run_to_end(&e, req("counter", serde_json::json!({"n": 3}))).await;
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(done.outcome.as_deref(), Some("counted to 3"));
    assert_eq!(outcomes(&h), [Outcome::Created, Outcome::Transition, Outcome::Transition, Outcome::Transition, Outcome::Succeeded]);
    assert_eq!((h[1].from.as_str(), h[1].to.as_str()), ("Count(0)", "Count(1)"));
    assert!(e.resumable().unwrap().is_empty());
}

#[tokio::test]
async fn unknown_procedure_and_invalid_params_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let c = clock();
    let err = e.create_run(req("nope", serde_json::json!({})), &*c).unwrap_err();
    assert!(err.to_string().starts_with("unknown procedure \"nope\"; this binary knows: approval, counter"), "{err}");
    let err = e.create_run(req("counter", serde_json::json!({"n": 5000})), &*c).unwrap_err();
    assert_eq!(err.to_string(), "cannot start counter: n must be at most 1000");
    let err = e.create_run(req("counter", serde_json::json!({"m": 1})), &*c).unwrap_err();
    assert!(err.to_string().contains("missing field `n`"), "{err}");
    assert!(e.store().list_runs().unwrap().is_empty());
}

#[tokio::test]
async fn waits_are_durable_timers_and_do_not_bloat_history() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let c = clock();
    let rec = e.create_run(req("waiter", serde_json::json!({"ready_after_s": 300, "recheck_s": 10, "bound_s": 600})), &*c).unwrap();
    let env = Arc::new(ToyEnv::default());
    let r = e.step_once(&rec.id, env.clone(), c.clone()).await.unwrap();
    assert_eq!(r.status, RunStatus::Waiting);
    let w = r.wait.clone().unwrap();
    assert_eq!((w.since, w.next_check_at, w.deadline), (T0, T0.plus(Duration::from_secs(10)), T0.plus(Duration::from_secs(600))));
    // The next step first sleeps until the persisted next check.
    let r = e.step_once(&rec.id, env.clone(), c.clone()).await.unwrap();
    assert_eq!(c.now(), T0.plus(Duration::from_secs(10)));
    assert_eq!(r.wait.unwrap().next_check_at, T0.plus(Duration::from_secs(20)));
    let done = e.drive(&rec.id, env, c.clone(), no_progress()).await.unwrap();
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(c.now(), T0.plus(Duration::from_secs(300)));
    let h = e.store().history(&rec.id).unwrap();
    assert_eq!(outcomes(&h), [Outcome::Created, Outcome::Waiting, Outcome::Transition, Outcome::Succeeded]);
    assert_eq!(h[1].detail.as_deref(), Some("the condition"));
}

#[tokio::test]
async fn a_wait_past_its_bound_halts_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let (done, h) = run_to_end(&e, req("waiter", serde_json::json!({"ready_after_s": 900, "recheck_s": 60, "bound_s": 600}))).await;
    assert_eq!(done.status, RunStatus::Halted);
    assert_eq!(done.outcome.as_deref(), Some("timed out after 10m00s waiting for the condition"));
    assert_eq!(outcomes(&h), [Outcome::Created, Outcome::Waiting, Outcome::Halted]);
    assert_eq!(done.updated_at, T0.plus(Duration::from_secs(600)));
}

#[tokio::test]
async fn transient_failures_are_retried_and_each_is_history() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let (done, h) = run_to_end(&e, req("flaky", serde_json::json!({"failures": 3}))).await;
    assert_eq!(done.status, RunStatus::Succeeded);
    let retries: Vec<_> = h.iter().filter(|e| e.outcome == Outcome::Retry).collect();
    assert_eq!(retries.iter().map(|e| e.attempt).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(retries[0].detail.as_deref(), Some("call api: connection refused"));
    // Backoff grows: 1 s, 2 s, 4 s nominal (20% jitter).
    let gaps: Vec<u64> = retries.windows(2).map(|w| w[1].at.millis() - w[0].at.millis()).collect();
    assert!((800..=1000).contains(&gaps[0]) && (1600..=2000).contains(&gaps[1]), "{gaps:?}");
    let transition = h.iter().find(|e| e.outcome == Outcome::Transition).unwrap();
    assert_eq!(transition.attempt, 3, "the transition records the attempt that succeeded");
}

#[tokio::test]
async fn transient_failures_give_up_at_the_run_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let mut r = req("flaky", serde_json::json!({"failures": 1000}));
    r.deadline = Duration::from_secs(120);
    let (done, h) = run_to_end(&e, r).await;
    assert_eq!(done.status, RunStatus::Halted);
    let outcome = done.outcome.unwrap();
    assert!(
        outcome.starts_with("gave up after ") && outcome.contains(" attempts since 2023-11-14T22:13:20.000Z: call api: connection refused"),
        "{outcome}"
    );
    assert!(h.iter().filter(|e| e.outcome == Outcome::Retry).count() >= 5);
    assert!(done.updated_at <= T0.plus(Duration::from_secs(120)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_waits_for_approval() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let c = clock();
    let rec = e.create_run(req("approval", serde_json::Value::Null), &*c).unwrap();
    let (h, mut rx) = spawn_driver(&e, &rec.id, Arc::new(ToyEnv::default()), c.clone());
    until(&mut rx, RunStatus::AwaitingApproval).await;
    let at_gate = e.store().get_run(&rec.id).unwrap().unwrap();
    let pending = at_gate.pending_gate.unwrap();
    assert_eq!((pending.gate.as_str(), pending.evidence.clone()), ("apply", vec!["diff: +1".to_string()]));
    assert!(e.approve(&rec.id, Some("other"), "ana", None, &*c).is_ok(), "pre-approving another gate is allowed");
    assert_eq!(e.store().get_run(&rec.id).unwrap().unwrap().status, RunStatus::AwaitingApproval);
    e.approve(&rec.id, None, "ana", Some("diff reviewed".into()), &*c).unwrap();
    let done = h.await.unwrap().unwrap();
    assert_eq!(done.status, RunStatus::Succeeded);
    let hist = e.store().history(&rec.id).unwrap();
    assert!(hist.iter().any(|e| e.outcome == Outcome::Approved && e.detail.as_deref() == Some("apply approved by ana: diff reviewed")));
    let err = e.approve(&rec.id, None, "ana", None, &*c).unwrap_err();
    assert!(err.to_string().contains("it has succeeded"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejecting_the_pending_gate_ends_the_run_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let c = clock();
    let rec = e.create_run(req("approval", serde_json::Value::Null), &*c).unwrap();
    let (h, mut rx) = spawn_driver(&e, &rec.id, Arc::new(ToyEnv::default()), c.clone());
    until(&mut rx, RunStatus::AwaitingApproval).await;
    e.reject(&rec.id, None, "bo", Some("not now".into()), &*c).unwrap();
    let done = h.await.unwrap().unwrap();
    assert_eq!((done.status, done.outcome.as_deref()), (RunStatus::Aborted, Some("aborted by bo at Approve; nothing needed undoing")));
    let hist = e.store().history(&rec.id).unwrap();
    let why = hist.iter().find(|e| e.outcome == Outcome::AbortRequested).and_then(|e| e.detail.clone());
    assert_eq!(why.as_deref(), Some("by bo: gate apply rejected"));
}

#[tokio::test]
async fn pre_approved_gates_do_not_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let mut r = req("approval", serde_json::Value::Null);
    r.pre_approve = vec!["apply".into()];
    r.approver = "ana".into();
    let (done, h) = run_to_end(&e, r).await;
    assert_eq!(done.status, RunStatus::Succeeded);
    let g = &done.gates["apply"];
    assert_eq!((g.by.as_str(), g.comment.as_deref(), g.at), ("ana", Some("pre-approved"), T0));
    assert!(!outcomes(&h).contains(&Outcome::Gate));
}

#[tokio::test]
async fn a_halted_run_resumes_from_the_same_state_after_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let c = clock();
    let env = Arc::new(ToyEnv::default());
    let rec = e.create_run(req("halter", serde_json::Value::Null), &*c).unwrap();
    let halted = e.drive(&rec.id, env.clone(), c.clone(), no_progress()).await.unwrap();
    assert_eq!(halted.status, RunStatus::Halted);
    assert_eq!(halted.outcome.as_deref(), Some("guard violated\nevidence:\n- member m1 unhealthy"));
    assert!(e.resumable().unwrap().is_empty(), "halted runs are resumed only explicitly");
    env.fixed.store(true, Ordering::SeqCst);
    let done = e.drive(&rec.id, env, c, no_progress()).await.unwrap();
    assert_eq!((done.status, done.outcome.as_deref()), (RunStatus::Succeeded, Some("fixed")));
    let h = e.store().history(&rec.id).unwrap();
    assert_eq!(outcomes(&h), [Outcome::Created, Outcome::Transition, Outcome::Halted, Outcome::Resumed, Outcome::Succeeded]);
    assert_eq!(h[3].detail.as_deref(), Some("resumed at B after halt: guard violated"));
}

/// A halted run can be closed: the abort is recorded, and driving it carries the abort out
/// from the state it halted in, instead of re-running the step that halted.
#[tokio::test]
async fn a_halted_run_is_aborted_when_next_driven() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let c = clock();
    let env = Arc::new(ToyEnv::default());
    let rec = e.create_run(req("halter", serde_json::Value::Null), &*c).unwrap();
    let halted = e.drive(&rec.id, env.clone(), c.clone(), no_progress()).await.unwrap();
    assert_eq!(halted.status, RunStatus::Halted);
    assert!(e.abort(&rec.id, "bo", &*c).unwrap().abort.is_some());
    env.fixed.store(true, Ordering::SeqCst);
    let done = e.drive(&rec.id, env, c, no_progress()).await.unwrap();
    assert_eq!(done.status, RunStatus::Aborted, "{:?}", done.outcome);
    let h = e.store().history(&rec.id).unwrap();
    assert!(h.iter().any(|e| e.outcome == Outcome::AbortRequested));
    assert!(!h.iter().any(|e| e.outcome == Outcome::Succeeded), "the halting step ran again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_at_a_gate_runs_the_undo_path() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let c = clock();
    let env = Arc::new(ToyEnv::default());
    let rec = e.create_run(req("undo", serde_json::Value::Null), &*c).unwrap();
    let (h, mut rx) = spawn_driver(&e, &rec.id, env.clone(), c.clone());
    until(&mut rx, RunStatus::AwaitingApproval).await;
    let r = e.abort(&rec.id, "bo", &*c).unwrap();
    assert!(r.abort.is_some());
    let done = h.await.unwrap().unwrap();
    assert_eq!((done.status, done.outcome.as_deref()), (RunStatus::Aborted, Some("undone")));
    assert_eq!(*env.effects.lock().unwrap(), ["do 0", "do 1", "do 2", "undo 2", "undo 1", "undo 0"]);
    let h = e.store().history(&rec.id).unwrap();
    let abort_tr = h.iter().find(|e| e.detail.as_deref() == Some("abort requested by bo: undoing")).unwrap();
    assert_eq!((abort_tr.from.as_str(), abort_tr.to.as_str()), ("Hold", "Undo(2)"));
    assert_eq!(outcomes(&h).last(), Some(&Outcome::Aborted));
    assert_eq!(h.iter().filter(|e| e.outcome == Outcome::AbortRequested).count(), 1);
    // Aborting it again answers with the run as it is: idempotent, no new history.
    let again = e.abort(&rec.id, "bo", &*c).unwrap();
    assert_eq!((again.status, again.next_seq), (RunStatus::Aborted, done.next_seq));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_with_nothing_to_undo_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let c = clock();
    let rec = e.create_run(req("approval", serde_json::Value::Null), &*c).unwrap();
    let (h, mut rx) = spawn_driver(&e, &rec.id, Arc::new(ToyEnv::default()), c.clone());
    until(&mut rx, RunStatus::AwaitingApproval).await;
    e.abort(&rec.id, "bo", &*c).unwrap();
    let done = h.await.unwrap().unwrap();
    assert_eq!(done.status, RunStatus::Aborted);
    assert_eq!(done.outcome.as_deref(), Some("aborted by bo at Approve; nothing needed undoing"));
    assert!(done.pending_gate.is_none());
    // A retried abort (its first answer lost when the driver exited) is answered, not refused,
    // and changes nothing.
    let again = e.abort(&rec.id, "bo", &*c).unwrap();
    assert_eq!(again, done);
}

#[tokio::test]
async fn an_abort_inside_an_undo_state_keeps_undoing() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let c = clock();
    let env = Arc::new(ToyEnv::default());
    let rec = e.create_run(req("undo", serde_json::Value::Null), &*c).unwrap();
    for _ in 0..2 {
        e.step_once(&rec.id, env.clone(), c.clone()).await.unwrap();
    }
    let first = e.abort(&rec.id, "bo", &*c).unwrap();
    let again = e.abort(&rec.id, "carl", &*c).unwrap();
    assert_eq!((again.abort, again.next_seq), (first.abort, first.next_seq), "a second abort request is a no-op");
    let r = e.step_once(&rec.id, env.clone(), c.clone()).await.unwrap();
    assert_eq!((r.state_name.as_str(), r.status), ("Undo(1)", RunStatus::Aborting));
    let done = e.drive(&rec.id, env.clone(), c, no_progress()).await.unwrap();
    assert_eq!(done.status, RunStatus::Aborted);
    assert_eq!(*env.effects.lock().unwrap(), ["do 0", "do 1", "undo 1", "undo 0"]);
}

#[tokio::test]
async fn a_run_of_an_unknown_version_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let c = clock();
    let mut rec = e.create_run(req("counter", serde_json::json!({"n": 2})), &*c).unwrap();
    rec.id = "77".into();
    rec.procedure_version = 9;
    let h: Vec<HistoryEvent> = e.store().history("1").unwrap();
    e.store().create_run(&rec, &h).unwrap();
    let err = e.drive("77", Arc::new(ToyEnv::default()), c.clone(), no_progress()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "run 77 is counter version 9, but this binary supports counter version 1; finish it with the drctl version that started it"
    );
    let mut gone = rec.clone();
    gone.id = "78".into();
    gone.procedure = "retired".into();
    e.store().create_run(&gone, &h).unwrap();
    let err = e.drive("78", Arc::new(ToyEnv::default()), c, no_progress()).await.unwrap_err();
    assert!(err.to_string().contains("this binary does not know procedure retired"), "{err}");
    // Nothing was written to the refused runs.
    assert_eq!(e.store().history("77").unwrap(), h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_driver_per_run() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let c = clock();
    let rec = e.create_run(req("approval", serde_json::Value::Null), &*c).unwrap();
    let (h, mut rx) = spawn_driver(&e, &rec.id, Arc::new(ToyEnv::default()), c.clone());
    until(&mut rx, RunStatus::AwaitingApproval).await;
    let err = e.drive(&rec.id, Arc::new(ToyEnv::default()), c.clone(), no_progress()).await.unwrap_err();
    assert!(matches!(err, EngineError::AlreadyDriving(_)));
    assert_eq!(e.resumable().unwrap().len(), 1);
    e.approve(&rec.id, None, "ana", None, &*c).unwrap();
    assert_eq!(h.await.unwrap().unwrap().status, RunStatus::Succeeded);
}

/// Run `r` with an optional abort before step `abort_at` and an optional crash (engine and store
/// dropped, store reopened by a new engine) after `crash_after` steps. Returns the final record,
/// the history, and whether the crash point was reached before the run ended.
async fn run_with_crash(r: NewRun, abort_at: Option<usize>, crash_after: Option<usize>) -> (RunRecord, Vec<HistoryEvent>, bool) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let env = Arc::new(ToyEnv::default());
    let mut e = engine(dir.path());
    let id = e.create_run(r, &*c).unwrap().id;
    let mut steps = 0;
    let crashed = loop {
        if abort_at == Some(steps) {
            e.abort(&id, "ops", &*c).unwrap();
        }
        if crash_after == Some(steps) {
            break true;
        }
        if !(crash_after.is_some_and(|k| steps < k) || abort_at.is_some_and(|a| steps < a)) {
            break false;
        }
        let rec = e.step_once(&id, env.clone(), c.clone()).await.unwrap();
        steps += 1;
        if rec.status.is_terminal() {
            break false;
        }
    };
    if crashed {
        drop(e);
        e = engine(dir.path());
    }
    let current = e.store().get_run(&id).unwrap().unwrap();
    // A run that already ended is left alone (driving a halted run by id would resume it).
    let done = if current.status.is_terminal() { current } else { e.drive(&id, env, c, no_progress()).await.unwrap() };
    let h = e.store().history(&id).unwrap();
    (done, h, crashed)
}

/// What must be identical between a crashed-and-resumed run and an uncrashed one.
fn essence(rec: &RunRecord, h: &[HistoryEvent]) -> impl PartialEq + std::fmt::Debug {
    let events: Vec<_> = h
        .iter()
        .filter(|e| e.outcome != Outcome::Resumed)
        .map(|e| (e.at, e.from.clone(), e.to.clone(), e.attempt, e.outcome.clone(), e.detail.clone()))
        .collect();
    (rec.status, rec.state.clone(), rec.state_name.clone(), rec.outcome.clone(), rec.gates.clone(), rec.abort.clone(), events)
}

#[tokio::test]
async fn crash_at_every_transition_resumes_to_the_same_end() {
    let mut approval = req("approval", serde_json::Value::Null);
    approval.pre_approve = vec!["apply".into()];
    let scenarios: Vec<(&str, NewRun, Option<usize>)> = vec![
        ("counter", req("counter", serde_json::json!({"n": 4})), None),
        ("waiter", req("waiter", serde_json::json!({"ready_after_s": 60, "recheck_s": 15, "bound_s": 600})), None),
        ("wait-timeout", req("waiter", serde_json::json!({"ready_after_s": 90, "recheck_s": 20, "bound_s": 60})), None),
        ("flaky", req("flaky", serde_json::json!({"failures": 3})), None),
        ("approval", approval, None),
        ("undo-after-abort", req("undo", serde_json::Value::Null), Some(2)),
    ];
    for (name, r, abort_at) in scenarios {
        let (ref_rec, ref_h, _) = run_with_crash(r.clone(), abort_at, None).await;
        assert!(ref_rec.status.is_terminal(), "{name}: {:?}", ref_rec.status);
        let want = essence(&ref_rec, &ref_h);
        let mut crashes = 0;
        for k in abort_at.unwrap_or(0).. {
            assert!(k < 100, "{name}: run did not end");
            let (rec, h, crashed) = run_with_crash(r.clone(), abort_at, Some(k)).await;
            assert_eq!(essence(&rec, &h), want, "{name}: crash after {k} steps diverged");
            if !crashed {
                break;
            }
            crashes += 1;
            assert_eq!(h.iter().filter(|e| e.outcome == Outcome::Resumed).count(), 1, "{name}: crash after {k}");
        }
        assert!(crashes >= 2, "{name}: only {crashes} crash points exercised");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_runs_share_device_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let e = engine_on(store.clone());
    let c = clock();
    let ids: Vec<String> = (0..50).map(|_| e.create_run(req("counter", serde_json::json!({"n": 5})), &*c).unwrap().id).collect();
    let before = store.stats();
    let handles: Vec<_> = ids
        .iter()
        .map(|id| {
            let (e, c, id) = (e.clone(), c.clone(), id.clone());
            tokio::spawn(async move { e.drive(&id, Arc::new(ToyEnv::default()), c, no_progress()).await })
        })
        .collect();
    for h in handles {
        assert_eq!(h.await.unwrap().unwrap().status, RunStatus::Succeeded);
    }
    let after = store.stats();
    let commits = after.commits - before.commits;
    let flushes = after.device_flushes - before.device_flushes;
    assert_eq!(commits, 50 * 6, "5 transitions + done per run");
    assert!(flushes < commits, "{flushes} device flushes for {commits} commits: no group commit");
    for id in &ids {
        assert_eq!(e.store().history(id).unwrap().len(), 7);
    }
}

mod wait_bounds {
    //! A wait's bound is about the condition, not about the world being reachable.
    use drctl_runtime::executor::{apply, NamedState};
    use drctl_runtime::record::{RunRecord, RunStatus};
    use drctl_runtime::{RetryPolicy, Step, StepError, Timestamp};
    use std::time::Duration;

    fn rec() -> RunRecord {
        RunRecord {
            id: "1".into(),
            procedure: "p".into(),
            procedure_version: 1,
            params: vec![],
            state: vec![],
            state_name: "S".into(),
            status: RunStatus::Running,
            seed: 0,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            deadline: Timestamp(48 * 3_600_000),
            attempt: 0,
            wait: None,
            retry: None,
            pending_gate: None,
            gates: Default::default(),
            abort: None,
            outcome: None,
            next_seq: 0,
            labels: Default::default(),
            parent: None,
            children: Default::default(),
            resumed_after_halt: false,
        }
    }

    fn wait(text: &str) -> Result<Step<NamedState>, StepError> {
        Ok(Step::Wait { waiting_for: text.into(), recheck_after: Duration::from_secs(30), bound: Duration::from_secs(3600) })
    }

    #[test]
    fn changing_wait_text_keeps_the_bound() {
        let p = RetryPolicy::default();
        let (r, ev, _) = apply(&rec(), wait("1 of 3 at revision 8"), Timestamp(0), &p);
        assert_eq!(ev.len(), 1);
        let (r, ev, _) = apply(&r, wait("2 of 3 at revision 8"), Timestamp(1_800_000), &p);
        assert!(ev.is_empty(), "a re-check is not history");
        let w = r.wait.clone().unwrap();
        assert_eq!((w.since, w.deadline), (Timestamp(0), Timestamp(3_600_000)));
        assert_eq!(w.waiting_for, "2 of 3 at revision 8");
        let (r, _, _) = apply(&r, wait("2 of 3 at revision 8"), Timestamp(3_600_000), &p);
        assert_eq!(r.status, RunStatus::Halted, "the bound still holds");
    }

    #[test]
    fn an_outage_inside_a_wait_extends_its_bound_by_the_outage() {
        let p = RetryPolicy::default();
        let (r, _, _) = apply(&rec(), wait("rollout"), Timestamp(0), &p);
        // Ten minutes in, the API goes away for two hours.
        let down = || Err(StepError::Transient { what: "read".into(), error: "connection refused".into() });
        let (mut r, _, _) = apply(&r, down(), Timestamp(600_000), &p);
        let mut t = 600_000;
        while t < 600_000 + 7_200_000 {
            t += 30_000;
            r = apply(&r, down(), Timestamp(t), &p).0;
        }
        let (r, _, _) = apply(&r, wait("rollout"), Timestamp(t + 1000), &p);
        assert_eq!(r.status, RunStatus::Waiting, "an outage longer than the bound must not halt the wait: {:?}", r.outcome);
        assert!(r.wait.as_ref().unwrap().deadline >= Timestamp(3_600_000 + 7_200_000));
    }
}

/// A -> C, though its state graph says A -> B -> C: a step that takes an undeclared edge.
struct Skipper;
impl Procedure for Skipper {
    type Env = ToyEnv;
    type Params = ();
    type State = char;
    const NAME: &'static str = "skipper";
    const VERSION: u32 = 1;
    fn validate(&self, _: &()) -> Result<(), String> {
        Ok(())
    }
    fn initial_state(&self, _: &()) -> char {
        'A'
    }
    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[("A", &["B"]), ("B", &["C"]), ("C", &[])]
    }
    fn state_name(&self, s: &char) -> String {
        s.to_string()
    }
    fn step(&self, _: &ToyEnv, _: &StepContext, _: &(), s: &char) -> Result<Step<char>, StepError> {
        Ok(match s {
            'A' => Step::Next('C'),
            _ => Step::Done { summary: "done".into() },
        })
    }
}

#[test]
fn a_transition_the_state_graph_lacks_fails_the_run_before_it_is_stored() {
    let mut reg = Registry::default();
    reg.register(Skipper);
    let store = Arc::new(MemStore::new());
    let e = Engine::new(store.clone(), Arc::new(reg), RetryPolicy::default());
    let c = clock();
    let rec = e.create_run(req("skipper", serde_json::json!(null)), &*c).unwrap();
    assert_eq!(due(&rec, c.now()), Due::Step);
    let result = e.perform_step(&rec, &ToyEnv::default(), &*c);
    let (after, action) = e.commit_step(&rec, result, &*c).unwrap();
    assert_eq!((after.status, action), (RunStatus::Failed, NextAction::Stop));
    assert_eq!(after.state_name, "A", "the undeclared state must never be stored");
    let o = after.outcome.unwrap();
    assert!(o.contains("no edge A -> C (allowed: B)"), "{o}");
    assert_eq!(store.get_run(&rec.id).unwrap().unwrap().status, RunStatus::Failed);
}

#[test]
fn the_engine_runs_on_the_in_memory_store_as_on_sled_and_a_new_engine_resumes() {
    let reg = {
        let mut r = Registry::default();
        r.register(Undo);
        Arc::new(r)
    };
    let store = Arc::new(MemStore::new());
    let c = clock();
    let env = ToyEnv::default();
    let first = Engine::new(store.clone(), reg.clone(), RetryPolicy::default());
    let rec = first.create_run(req("undo", serde_json::json!(null)), &*c).unwrap();
    let result = first.perform_step(&rec, &env, &*c);
    first.commit_step(&rec, result, &*c).unwrap();
    // "Crash": a new engine over the same store takes the run up with a Resumed event.
    let second = Engine::new(store.clone(), reg, RetryPolicy::default());
    let (rec, resumed) = second.attach(&rec.id, &*c).unwrap();
    assert!(resumed);
    assert_eq!(rec.state_name, "Do(1)");
    second.abort(&rec.id, "ana", &*c).unwrap();
    let rec = store.get_run(&rec.id).unwrap().unwrap();
    assert_eq!(due(&rec, c.now()), Due::ActOnAbort);
    let (rec, _) = second.act_on_abort(&rec.id, &*c).unwrap();
    assert_eq!(rec.state_name, "Undo(0)");
    let result = second.perform_step(&rec, &env, &*c);
    let (rec, _) = second.commit_step(&rec, result, &*c).unwrap();
    assert_eq!(rec.status, RunStatus::Aborted);
    assert_eq!(
        outcomes(&store.history(&rec.id).unwrap()),
        [Outcome::Created, Outcome::Transition, Outcome::Resumed, Outcome::AbortRequested, Outcome::Transition, Outcome::Aborted]
    );
    assert_eq!(*env.effects.lock().unwrap(), ["do 0", "undo 0"]);
}

/// Prepare -> StartChild (a `counter` child, or an `approval` one) -> Finish(how it ended).
struct Parent;
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum ParentState {
    Prepare,
    StartChild,
    Finish(String),
}
impl Procedure for Parent {
    type Env = ToyEnv;
    type Params = String;
    type State = ParentState;
    const NAME: &'static str = "parent";
    const VERSION: u32 = 1;
    fn validate(&self, child: &String) -> Result<(), String> {
        match child.as_str() {
            "counter" | "approval" => Ok(()),
            other => Err(format!("no child procedure {other}")),
        }
    }
    fn initial_state(&self, _: &String) -> ParentState {
        ParentState::Prepare
    }
    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[("Prepare", &["StartChild"]), ("StartChild", &["Finish"]), ("Finish", &[])]
    }
    fn state_name(&self, s: &ParentState) -> String {
        match s {
            ParentState::Finish(how) => format!("Finish({how})"),
            other => format!("{other:?}"),
        }
    }
    fn step(&self, _: &ToyEnv, cx: &StepContext, child: &String, s: &ParentState) -> Result<Step<ParentState>, StepError> {
        Ok(match s {
            ParentState::Prepare => Step::Next(ParentState::StartChild),
            ParentState::StartChild => match cx.child("work") {
                None => Step::Child {
                    key: "work".into(),
                    procedure: child.clone(),
                    params: if child == "counter" { serde_json::json!({"n": 3}) } else { serde_json::json!(null) },
                },
                Some(end) => Step::Next(ParentState::Finish(end.status.as_str().into())),
            },
            ParentState::Finish(how) => Step::Done { summary: format!("the child {how}") },
        })
    }
}

/// A MemStore whose `n`-th write (create or commit) fails once, as if the process died right
/// after the step's effect and before its commit.
struct CrashingStore {
    inner: MemStore,
    crash_at: Option<usize>,
    writes: std::sync::atomic::AtomicUsize,
}
impl CrashingStore {
    fn write(&self) -> Result<(), drctl_runtime::store::StoreError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        match Some(n) == self.crash_at {
            true => Err(drctl_runtime::store::StoreError::Bug(format!("simulated crash at write {n}"))),
            false => Ok(()),
        }
    }
}
impl RunStore for CrashingStore {
    fn next_run_id(&self) -> Result<String, drctl_runtime::store::StoreError> {
        self.inner.next_run_id()
    }
    fn create_run(&self, rec: &RunRecord, events: &[HistoryEvent]) -> Result<(), drctl_runtime::store::StoreError> {
        self.write()?;
        self.inner.create_run(rec, events)
    }
    fn commit(&self, rec: &RunRecord, events: &[HistoryEvent]) -> Result<(), drctl_runtime::store::StoreError> {
        self.write()?;
        self.inner.commit(rec, events)
    }
    fn get_run(&self, id: &str) -> Result<Option<RunRecord>, drctl_runtime::store::StoreError> {
        self.inner.get_run(id)
    }
    fn list_runs(&self) -> Result<Vec<RunRecord>, drctl_runtime::store::StoreError> {
        self.inner.list_runs()
    }
    fn history(&self, id: &str) -> Result<Vec<HistoryEvent>, drctl_runtime::store::StoreError> {
        self.inner.history(id)
    }
}

fn family_registry() -> Arc<Registry<ToyEnv>> {
    let mut r = Registry::default();
    r.register(Parent);
    r.register(Counter);
    r.register(Approval);
    Arc::new(r)
}

/// What a family of runs ended as: (id, procedure, status, outcome) of every run, and the
/// parent's history outcomes without the `Resumed` a crash adds.
type FamilyEnd = (Vec<(String, String, RunStatus, Option<String>)>, Vec<Outcome>);

/// Run `parent` with a `counter` child on a fresh store, the process crashing before tick
/// `crash_tick` (a new engine takes over) or at write `crash_write` (after a step's effect,
/// before its commit), and tick it to its end.
fn family_run(crash_tick: Option<usize>, crash_write: Option<usize>) -> (FamilyEnd, usize, usize) {
    let store = Arc::new(CrashingStore { inner: MemStore::new(), crash_at: crash_write, writes: Default::default() });
    let reg = family_registry();
    let c = clock();
    let env = ToyEnv::default();
    let mut e = Engine::new(store.clone(), reg.clone(), RetryPolicy::default());
    let id = e.create_run(req("parent", serde_json::json!("counter")), &*c).unwrap().id;
    let mut ticks = 0;
    loop {
        assert!(ticks < 100, "the family never ended");
        if Some(ticks) == crash_tick {
            e = Engine::new(store.clone(), reg.clone(), RetryPolicy::default());
        }
        ticks += 1;
        match e.tick(&id, &env, &*c) {
            Ok(Tick::Stopped(_)) => break,
            Ok(Tick::Committed(_)) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            // The simulated crash: the next process takes over.
            Err(_) => e = Engine::new(store.clone(), reg.clone(), RetryPolicy::default()),
        }
    }
    let runs = store.list_runs().unwrap().into_iter().map(|r| (r.id, r.procedure, r.status, r.outcome)).collect();
    let history = store.history(&id).unwrap().into_iter().map(|e| e.outcome).filter(|o| *o != Outcome::Resumed).collect();
    ((runs, history), ticks, store.writes.load(Ordering::SeqCst))
}

#[test]
fn a_child_run_crashed_at_every_transition_of_both_is_started_exactly_once_with_the_same_outcome() {
    let (want, ticks, writes) = family_run(None, None);
    assert_eq!(
        want.0,
        [
            ("1".into(), "parent".into(), RunStatus::Succeeded, Some("the child succeeded".into())),
            ("1.1".into(), "counter".into(), RunStatus::Succeeded, Some("counted to 3".into())),
        ]
    );
    assert!(want.1.contains(&Outcome::ChildStarted) && want.1.contains(&Outcome::ChildEnded), "{:?}", want.1);
    let mut points = 0;
    for k in 0..ticks {
        assert_eq!(family_run(Some(k), None).0, want, "crash before tick {k}");
        points += 1;
    }
    // Every write of the family, the child's creation among them: lost as if the process died
    // right after the effect.
    for w in 1..writes {
        assert_eq!(family_run(None, Some(w)).0, want, "crash at write {w}");
        points += 1;
    }
    assert!(points > 15, "{points} crash points");
}

#[test]
fn aborting_a_parent_aborts_the_child_it_waits_for_then_the_parent() {
    let store = Arc::new(MemStore::new());
    let e = Engine::new(store.clone(), family_registry(), RetryPolicy::default());
    let c = clock();
    let env = ToyEnv::default();
    let id = e.create_run(req("parent", serde_json::json!("approval")), &*c).unwrap().id;
    let child = loop {
        match e.tick(&id, &env, &*c).unwrap() {
            Tick::AwaitDecision(child) => break child,
            Tick::Committed(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!((child.id.as_str(), child.parent.as_deref()), ("1.1", Some("1")));
    assert_eq!(store.get_run(&id).unwrap().unwrap().status, RunStatus::AwaitingChild);
    // `drctl resume` leaves the child to its parent.
    assert_eq!(e.resumable().unwrap().iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["1"]);
    e.abort(&id, "ana", &*c).unwrap();
    assert!(store.get_run("1.1").unwrap().unwrap().abort.is_some(), "the abort reached the child");
    let end = loop {
        match e.tick(&id, &env, &*c).unwrap() {
            Tick::Stopped(r) => break r,
            Tick::Committed(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(end.status, RunStatus::Aborted);
    assert_eq!(store.get_run("1.1").unwrap().unwrap().status, RunStatus::Aborted);
    let ended = store.history(&id).unwrap().into_iter().find(|e| e.outcome == Outcome::ChildEnded).unwrap();
    assert!(ended.detail.unwrap().starts_with("child run 1.1 (approval) aborted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_driver_drives_a_child_to_its_end_and_names_it_in_the_parents_history() {
    let dir = tempfile::tempdir().unwrap();
    let e = Arc::new(Engine::new(Arc::new(Store::open(dir.path()).unwrap()), family_registry(), RetryPolicy::default()));
    let c = clock();
    let rec = e.create_run(req("parent", serde_json::json!("counter")), &*c).unwrap();
    let done = e.drive(&rec.id, Arc::new(ToyEnv::default()), c, no_progress()).await.unwrap();
    assert_eq!((done.status, done.outcome.as_deref()), (RunStatus::Succeeded, Some("the child succeeded")));
    let h = e.store().history(&rec.id).unwrap();
    let started = h.iter().find(|e| e.outcome == Outcome::ChildStarted).unwrap();
    assert_eq!(started.detail.as_deref(), Some("child run 1.1 (counter) started as work"));
    let child = e.store().get_run("1.1").unwrap().unwrap();
    assert_eq!((child.status, child.parent.as_deref()), (RunStatus::Succeeded, Some("1")));
    assert_eq!(e.view(&done).children["work"].ended.as_ref().unwrap().status, RunStatus::Succeeded);
}
