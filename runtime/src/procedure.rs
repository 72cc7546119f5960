//! What a procedure is, to the engine: typed params, a serde state enum, and a step function
//! that decides what comes next. The engine persists every decision before acting on the next.

use crate::clock::Timestamp;
use crate::record::{ChildEnd, ChildRun, GateDecision};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

/// What a step decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Step<S> {
    /// A transition: persist `S` (durably) and run the next step from it.
    Next(S),
    /// The condition the current state waits for does not hold yet. Stay in this state and check
    /// again after `recheck_after`. The engine records when the wait began (durably) and halts
    /// the run if the condition still does not hold after `bound`.
    Wait { waiting_for: String, recheck_after: Duration, bound: Duration },
    /// Stop until a person approves or rejects `gate`. The step is re-run after the decision and
    /// finds it in [`StepContext::gate`].
    Gate { gate: String, prompt: String, evidence: Vec<String> },
    /// The procedure completed.
    Done { summary: String },
    /// The procedure cannot continue safely; a person must look. Resumable after a fix.
    Halt { reason: String, evidence: Vec<String> },
    /// Start a run of `procedure` with `params` as this run's child `key`, and wait for it to
    /// end. The step is re-run once it ended and finds how in [`StepContext::child`]. The engine
    /// creates the child exactly once, even across crashes; an abort of this run aborts it too.
    Child { key: String, procedure: String, params: serde_json::Value },
}

/// A failure met while performing a step, classified where it entered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepError {
    /// The world failed in a way that passes (API outage, timeout, lost connection): retry with
    /// backoff for as long as the run's deadline allows.
    #[error("{what}: {error}")]
    Transient { what: String, error: String },
    /// The world said no (not found, forbidden, invalid, guard violated): halt with evidence.
    #[error("{reason}")]
    Permanent { reason: String, evidence: Vec<String> },
    /// An invariant of our own is broken: the run fails.
    #[error("bug: {0}")]
    Bug(String),
}

/// What a step may know about its run besides params and state.
#[derive(Debug, Clone)]
pub struct StepContext {
    pub run_id: String,
    pub now: Timestamp,
    /// Consecutive transient failures of this step so far (0 on the first try).
    pub attempt: u32,
    /// The run's seed: tokens derived from it are stable across restarts.
    pub seed: u64,
    /// True once an abort was requested: the step should head for its undo path.
    pub aborting: bool,
    /// When the current wait began, if the step is being re-checked inside a wait.
    pub waiting_since: Option<Timestamp>,
    /// A person resumed the run after it halted in this state, and this is the first step since.
    pub resumed: bool,
    pub gates: BTreeMap<String, GateDecision>,
    /// The child runs started so far, by key (each with how it ended).
    pub children: BTreeMap<String, ChildRun>,
}

impl StepContext {
    /// The decision recorded for `gate`, if any.
    pub fn gate(&self, gate: &str) -> Option<&GateDecision> {
        self.gates.get(gate)
    }

    /// How child `key` ended, once it did.
    pub fn child(&self, key: &str) -> Option<&ChildEnd> {
        self.children.get(key).and_then(|c| c.ended.as_ref())
    }
}

/// A typed procedure. `Env` is whatever the procedure acts through (its ports); the engine
/// never looks inside it.
pub trait Procedure: Send + Sync + 'static {
    type Env: ?Sized + Send + Sync + 'static;
    type Params: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static;
    type State: Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + Sync + 'static;

    /// Stable name, as typed on the command line.
    const NAME: &'static str;
    /// Bumped whenever `Params` or `State` change shape; persisted with every run.
    const VERSION: u32;

    /// Reject bad parameters before anything is stored.
    fn validate(&self, params: &Self::Params) -> Result<(), String>;
    fn initial_state(&self, params: &Self::Params) -> Self::State;
    /// Short name of a state for history and status (`StopStaticPods(master-1)`).
    fn state_name(&self, state: &Self::State) -> String;
    /// Invariants of a state, asserted before persisting and after loading.
    fn check_state(&self, _params: &Self::Params, _state: &Self::State) -> Result<(), String> {
        Ok(())
    }
    /// Decide and perform one step from `state`. May be re-run after a crash: every effect in
    /// it must be observe-then-act or fenced by a token recorded in an earlier state.
    fn step(&self, env: &Self::Env, cx: &StepContext, params: &Self::Params, state: &Self::State) -> Result<Step<Self::State>, StepError>;
    /// An abort was requested while in `state`: the state of the undo path to continue with,
    /// or `None` when nothing needs undoing and the run can stop right away.
    fn on_abort(&self, _params: &Self::Params, _state: &Self::State) -> Option<Self::State> {
        None
    }
    /// Whether parameter `key` of a run halted in `state` may be corrected (`drctl resume RUN
    /// --set KEY=VALUE`): `Err` says why not. A corrected run starts again from
    /// `initial_state`, so a procedure allows this only in states before its first change to
    /// the world (every guard then re-runs with the new value). By default nothing may be
    /// corrected.
    fn correctable(&self, key: &str, state: &Self::State) -> Result<(), String> {
        let _ = (key, state);
        Err(format!("{} declares no parameter that may be corrected on a halted run", Self::NAME))
    }
    /// True for states the engine must never abort out of without running them (undo steps).
    fn is_undo_state(&self, _state: &Self::State) -> bool {
        false
    }
    /// The state machine as data: every state (named as `state_name` names it, without the
    /// parenthesised argument: see [`state_kind`]) with the states a step or an abort may move it
    /// to. The engine refuses any other transition as a bug the first time it is taken (before
    /// it is stored), and the chaos harness reports which states a sweep never reached.
    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])];
}

/// The kind of a state named by `state_name`: the name without its parenthesised argument
/// (`StopStaticPods(master-1:Etcd)` → `StopStaticPods`).
pub fn state_kind(name: &str) -> &str {
    name.split_once('(').map_or(name, |(kind, _)| kind)
}

/// Check a move from state `from` to state `to` (both as `state_name` names them) against a
/// procedure's declared state graph. Staying in a state is always allowed (a re-check).
pub fn check_edge(catalog: &[(&str, &[&str])], from: &str, to: &str) -> Result<(), String> {
    let (from, to) = (state_kind(from), state_kind(to));
    if from == to && catalog.iter().any(|(s, _)| *s == from) {
        return Ok(());
    }
    let Some((_, successors)) = catalog.iter().find(|(s, _)| *s == from) else {
        return Err(format!("state {from} is not in the procedure's state graph"));
    };
    if !catalog.iter().any(|(s, _)| *s == to) {
        return Err(format!("state {to} is not in the procedure's state graph"));
    }
    if !successors.contains(&to) {
        return Err(format!("the state graph has no edge {from} -> {to} (allowed: {})", successors.join(", ")));
    }
    Ok(())
}

/// A procedure with its types erased to bytes, so runs of any procedure live in one store.
pub trait ErasedProcedure<E: ?Sized>: Send + Sync {
    fn name(&self) -> &'static str;
    fn version(&self) -> u32;
    /// Validate JSON params and encode them for the store.
    fn encode_params(&self, params: serde_json::Value) -> Result<Vec<u8>, String>;
    fn params_json(&self, params: &[u8]) -> Result<serde_json::Value, String>;
    fn initial_state(&self, params: &[u8]) -> Result<Vec<u8>, String>;
    fn state_name(&self, state: &[u8]) -> Result<String, String>;
    fn state_json(&self, state: &[u8]) -> Result<serde_json::Value, String>;
    fn check(&self, params: &[u8], state: &[u8]) -> Result<(), String>;
    fn step(&self, env: &E, cx: &StepContext, params: &[u8], state: &[u8]) -> Result<Step<Vec<u8>>, StepError>;
    fn on_abort(&self, params: &[u8], state: &[u8]) -> Result<Option<Vec<u8>>, String>;
    fn is_undo_state(&self, state: &[u8]) -> Result<bool, String>;
    /// Apply corrections (`key`, new value as typed) to stored params, refusing a key the
    /// params do not have, one [`Procedure::correctable`] refuses in `state`, or a result
    /// `validate` refuses. The new params and what changed (key, old value, new value).
    fn correct(&self, params: &[u8], state: &[u8], changes: &[(String, String)]) -> Result<Corrected, String>;
    /// See [`Procedure::state_catalog`].
    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])];
}

/// Params after [`ErasedProcedure::correct`]: encoded, and each change as (key, old, new).
pub type Corrected = (Vec<u8>, Vec<(String, serde_json::Value, serde_json::Value)>);

/// A value typed on the command line, as JSON of the kind the parameter holds: text for a text
/// parameter; otherwise a number, boolean or `null` when it reads as one (`--set force=true`),
/// else text (`--set api_vip=10.0.0.5` where the VIP was unset).
fn typed_like(old: &serde_json::Value, typed: &str) -> serde_json::Value {
    if old.is_string() {
        return serde_json::Value::String(typed.to_string());
    }
    match serde_json::from_str::<serde_json::Value>(typed) {
        Ok(v) if !v.is_object() && !v.is_array() => v,
        _ => serde_json::Value::String(typed.to_string()),
    }
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec_named(v).map_err(|e| format!("encode: {e}"))
}
fn dec<T: DeserializeOwned>(what: &str, b: &[u8]) -> Result<T, String> {
    rmp_serde::from_slice(b).map_err(|e| format!("stored {what} cannot be decoded: {e}"))
}

impl<P> ErasedProcedure<P::Env> for P
where
    P: Procedure,
{
    fn name(&self) -> &'static str {
        P::NAME
    }
    fn version(&self) -> u32 {
        P::VERSION
    }
    fn encode_params(&self, params: serde_json::Value) -> Result<Vec<u8>, String> {
        let p: P::Params = serde_json::from_value(params).map_err(|e| format!("invalid parameters for {}: {e}", P::NAME))?;
        self.validate(&p)?;
        enc(&p)
    }
    fn params_json(&self, params: &[u8]) -> Result<serde_json::Value, String> {
        let p: P::Params = dec("params", params)?;
        serde_json::to_value(p).map_err(|e| e.to_string())
    }
    fn initial_state(&self, params: &[u8]) -> Result<Vec<u8>, String> {
        let p: P::Params = dec("params", params)?;
        let s = Procedure::initial_state(self, &p);
        self.check_state(&p, &s)?;
        enc(&s)
    }
    fn state_name(&self, state: &[u8]) -> Result<String, String> {
        Ok(Procedure::state_name(self, &dec::<P::State>("state", state)?))
    }
    fn state_json(&self, state: &[u8]) -> Result<serde_json::Value, String> {
        serde_json::to_value(dec::<P::State>("state", state)?).map_err(|e| e.to_string())
    }
    fn check(&self, params: &[u8], state: &[u8]) -> Result<(), String> {
        let p: P::Params = dec("params", params)?;
        let s: P::State = dec("state", state)?;
        self.check_state(&p, &s)
    }
    fn step(&self, env: &P::Env, cx: &StepContext, params: &[u8], state: &[u8]) -> Result<Step<Vec<u8>>, StepError> {
        let p: P::Params = dec("params", params).map_err(StepError::Bug)?;
        let s: P::State = dec("state", state).map_err(StepError::Bug)?;
        let out = Procedure::step(self, env, cx, &p, &s)?;
        Ok(match out {
            Step::Next(n) => {
                // Assert before persisting: a state we could not resume from must never be stored.
                self.check_state(&p, &n).map_err(|e| StepError::Bug(format!("{} produced an invalid state: {e}", P::NAME)))?;
                Step::Next(enc(&n).map_err(StepError::Bug)?)
            }
            Step::Wait { waiting_for, recheck_after, bound } => Step::Wait { waiting_for, recheck_after, bound },
            Step::Gate { gate, prompt, evidence } => Step::Gate { gate, prompt, evidence },
            Step::Done { summary } => Step::Done { summary },
            Step::Halt { reason, evidence } => Step::Halt { reason, evidence },
            Step::Child { key, procedure, params } => Step::Child { key, procedure, params },
        })
    }
    fn on_abort(&self, params: &[u8], state: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let p: P::Params = dec("params", params)?;
        let s: P::State = dec("state", state)?;
        Procedure::on_abort(self, &p, &s).map(|n| enc(&n)).transpose()
    }
    fn is_undo_state(&self, state: &[u8]) -> Result<bool, String> {
        Ok(Procedure::is_undo_state(self, &dec::<P::State>("state", state)?))
    }
    fn correct(&self, params: &[u8], state: &[u8], changes: &[(String, String)]) -> Result<Corrected, String> {
        let s: P::State = dec("state", state)?;
        let mut json = self.params_json(params)?;
        let Some(fields) = json.as_object_mut() else { return Err(format!("{} has no named parameters", P::NAME)) };
        let mut changed = vec![];
        for (key, value) in changes {
            let Some(old) = fields.get(key).cloned() else {
                let known: Vec<&str> = fields.keys().map(String::as_str).collect();
                return Err(format!("{} has no parameter '{key}' (its parameters: {})", P::NAME, known.join(", ")));
            };
            self.correctable(key, &s)?;
            let value = typed_like(&old, value);
            fields.insert(key.clone(), value.clone());
            changed.push((key.clone(), old, value));
        }
        Ok((self.encode_params(json)?, changed))
    }
    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        Procedure::state_catalog(self)
    }
}

/// The procedures a binary knows, by name.
pub struct Registry<E: ?Sized> {
    procedures: BTreeMap<&'static str, Arc<dyn ErasedProcedure<E>>>,
}

impl<E: ?Sized> Default for Registry<E> {
    fn default() -> Self {
        Registry { procedures: BTreeMap::new() }
    }
}

impl<E: ?Sized + 'static> Registry<E> {
    pub fn register<P: Procedure<Env = E>>(&mut self, p: P) {
        let prev = self.procedures.insert(P::NAME, Arc::new(p));
        assert!(prev.is_none(), "procedure {} registered twice", P::NAME);
    }
    /// Register a procedure already erased (a harness building procedure variants at run time).
    pub fn insert(&mut self, p: Arc<dyn ErasedProcedure<E>>) {
        let name = p.name();
        let prev = self.procedures.insert(name, p);
        assert!(prev.is_none(), "procedure {name} registered twice");
    }
    pub fn get(&self, name: &str) -> Option<&Arc<dyn ErasedProcedure<E>>> {
        self.procedures.get(name)
    }
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn ErasedProcedure<E>>> {
        self.procedures.values()
    }
}
