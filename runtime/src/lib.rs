//! `drctl-runtime`: a generic engine that runs typed procedures as durable state machines.
//!
//! It knows nothing of Kubernetes. A [`procedure::Procedure`] decides; the [`executor`] performs
//! the decision, commits the new state and a history event durably through the [`store`] (group
//! commit, `fdatasync`), and only then runs the next step. Time and randomness come from an
//! injected [`clock::Clock`] and the run's seed.

pub mod backoff;
pub mod clock;
pub mod control;
pub mod executor;
pub mod gc;
pub mod procedure;
pub mod record;
pub mod rng;
pub mod store;

pub use backoff::RetryPolicy;
pub use clock::{Clock, Timestamp};
pub use procedure::{ErasedProcedure, Procedure, Registry, Step, StepContext, StepError};
pub use record::{Decision, GateDecision, HistoryEvent, Outcome, RunRecord, RunStatus};
