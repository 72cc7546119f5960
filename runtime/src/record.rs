//! What the store holds: runs and their append-only history.

use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Layout version of the records below; a store written by a newer layout is refused.
pub const STORE_SCHEMA: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Stepping.
    Running,
    /// Inside a condition wait (see `RunRecord::wait`).
    Waiting,
    /// Backing off after a transient failure (see `RunRecord::retry`).
    Retrying,
    /// Stopped at a gate until approve/reject.
    AwaitingApproval,
    /// Running the undo path after an abort request.
    Aborting,
    /// Waiting for a child run it started to end (see `RunRecord::children`).
    AwaitingChild,
    Succeeded,
    /// Stopped for a person to look; resumable with `drctl resume` after a fix.
    Halted,
    /// An invariant of ours broke.
    Failed,
    Aborted,
}

impl RunStatus {
    /// Terminal runs are never resumed automatically. `Halted` is terminal for `resume` of all
    /// runs but may be resumed explicitly by id.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Aborted | RunStatus::Halted)
    }
    /// The status in a sentence about the run: "it has succeeded", "it is awaiting approval".
    pub fn as_phrase(self) -> &'static str {
        match self {
            RunStatus::Running => "it is running",
            RunStatus::Waiting => "it is waiting",
            RunStatus::Retrying => "it is retrying",
            RunStatus::AwaitingApproval => "it is awaiting approval",
            RunStatus::Aborting => "it is aborting",
            RunStatus::AwaitingChild => "it is waiting for a child run",
            RunStatus::Succeeded => "it has succeeded",
            RunStatus::Halted => "it has halted",
            RunStatus::Failed => "it has failed",
            RunStatus::Aborted => "it was aborted",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Retrying => "retrying",
            RunStatus::AwaitingApproval => "awaiting-approval",
            RunStatus::Aborting => "aborting",
            RunStatus::AwaitingChild => "awaiting-child",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Halted => "halted",
            RunStatus::Failed => "failed",
            RunStatus::Aborted => "aborted",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    Approved,
    Rejected,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approved => "approved",
            Decision::Rejected => "rejected",
        }
    }
}

/// Who decided a gate, when, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateDecision {
    pub decision: Decision,
    pub by: String,
    pub at: Timestamp,
    pub comment: Option<String>,
}

/// A gate the run is stopped at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingGate {
    pub gate: String,
    pub prompt: String,
    pub evidence: Vec<String>,
    pub since: Timestamp,
}

/// A condition wait in progress. Persisted so a restart neither forgets the bound nor checks
/// early.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitInfo {
    pub waiting_for: String,
    pub since: Timestamp,
    pub next_check_at: Timestamp,
    pub deadline: Timestamp,
}

/// Backing off after transient failures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryInfo {
    pub since: Timestamp,
    pub next_try_at: Timestamp,
    pub last_error: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortRequest {
    pub by: String,
    pub at: Timestamp,
    /// Set once the engine has acted on the request (moved the run onto its undo path, or found
    /// it already in an undo state), so `on_abort` is asked exactly once per abort.
    #[serde(default)]
    pub handled: bool,
}

/// A run a step started as part of its own (see `Step::Child`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRun {
    /// The child's run id: `<parent>.<n>`, fixed before it is created, so a crash between
    /// creating it and recording it here finds the same child again instead of a second one.
    pub run: String,
    pub procedure: String,
    /// How it ended; `None` while it runs (or is halted, waiting for a person).
    pub ended: Option<ChildEnd>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildEnd {
    /// Succeeded, Failed or Aborted.
    pub status: RunStatus,
    pub outcome: String,
}

/// One run of one procedure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub procedure: String,
    pub procedure_version: u32,
    /// rmp-serde encoded `Procedure::Params`.
    pub params: Vec<u8>,
    /// rmp-serde encoded `Procedure::State`.
    pub state: Vec<u8>,
    pub state_name: String,
    pub status: RunStatus,
    pub seed: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The run gives up retrying transient failures after this.
    pub deadline: Timestamp,
    /// Consecutive transient failures in the current state.
    pub attempt: u32,
    pub wait: Option<WaitInfo>,
    pub retry: Option<RetryInfo>,
    pub pending_gate: Option<PendingGate>,
    pub gates: BTreeMap<String, GateDecision>,
    pub abort: Option<AbortRequest>,
    /// Why the run stopped, for halted/failed/aborted/succeeded runs.
    pub outcome: Option<String>,
    /// Sequence number the next history event gets.
    pub next_seq: u64,
    /// Free-form labels owned by the binary (e.g. which simulated world the run acts on).
    pub labels: BTreeMap<String, String>,
    /// The run that started this one as its child; it drives this run.
    #[serde(default)]
    pub parent: Option<String>,
    /// The child runs this run's steps started, by the key the step gave.
    #[serde(default)]
    pub children: BTreeMap<String, ChildRun>,
    /// A person resumed the run after it halted, and its state has not been stepped since
    /// (the step then knows the halt was dealt with: [`crate::StepContext::resumed`]).
    #[serde(default)]
    pub resumed_after_halt: bool,
}

/// What a new run starts from; everything else starts empty.
#[derive(Clone, Debug)]
pub struct NewRecord {
    pub id: String,
    pub procedure: String,
    pub procedure_version: u32,
    pub params: Vec<u8>,
    pub state: Vec<u8>,
    pub state_name: String,
    pub seed: u64,
    pub now: Timestamp,
    pub deadline: Timestamp,
    pub labels: BTreeMap<String, String>,
}

impl RunRecord {
    /// A run that was just created: running, at its first state, with no history yet.
    pub fn new(n: NewRecord) -> RunRecord {
        RunRecord {
            id: n.id,
            procedure: n.procedure,
            procedure_version: n.procedure_version,
            params: n.params,
            state: n.state,
            state_name: n.state_name,
            status: RunStatus::Running,
            seed: n.seed,
            created_at: n.now,
            updated_at: n.now,
            deadline: n.deadline,
            attempt: 0,
            wait: None,
            retry: None,
            pending_gate: None,
            gates: BTreeMap::new(),
            abort: None,
            outcome: None,
            next_seq: 0,
            labels: n.labels,
            parent: None,
            children: BTreeMap::new(),
            resumed_after_halt: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The run was created.
    Created,
    /// A step moved the run to a new state.
    Transition,
    /// A condition wait began or was re-checked and still does not hold.
    Waiting,
    /// A transient failure; the step will be retried.
    Retry,
    Gate,
    Approved,
    Rejected,
    AbortRequested,
    /// The run was resumed by a new process.
    Resumed,
    /// A person corrected parameters of the halted run (detail: who, old -> new); it starts
    /// again from its first state.
    Corrected,
    /// A step started a child run (detail: which).
    ChildStarted,
    /// A child run ended (detail: how).
    ChildEnded,
    Succeeded,
    Halted,
    Failed,
    Aborted,
}

/// One entry of a run's append-only history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub seq: u64,
    pub at: Timestamp,
    pub from: String,
    pub to: String,
    pub attempt: u32,
    pub outcome: Outcome,
    pub detail: Option<String>,
}
