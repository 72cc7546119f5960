//! The chaos harness: every procedure, many seeds, faults injected while it runs, the runner
//! crashed at any transition, invariants checked after every transition, failures shrunk to a
//! minimal fault schedule and reported with the one command that replays them.
//!
//! A run is driven by the engine that ships ([`Engine`]) on the in-memory [`MemStore`] with the
//! simulated clock ([`run_case`]): every decision (what is due, the step, its commit, aborts,
//! gate decisions, resuming after a crash) is the engine's; this harness only chooses when a
//! fault, a person or the clock acts, and checks invariants on what the engine committed. A
//! crash is a new engine over the same store, as a restarted process would build. Virtual time
//! moves with [`Sim::advance_to`], which keeps a full restore in the millisecond range, so sweeps
//! of thousands of seeds fit in a test run.
//!
//! Which scenario and parameters a procedure runs with, which gates it has and where its guard
//! ends comes from one table, [`rows`]: a new procedure is picked up by adding a row (a test
//! checks every procedure of the registry has one).
//!
//! The library API for `drctl sim chaos` is [`SweepOptions`] + [`sweep`] → [`SweepReport`]
//! (`Display` for people, `Serialize` for `-o json`).

use crate::faults::{CrashPoint, Fault, FaultKind, FaultSchedule, ScheduleContext};
use crate::world::{EffectKind, World, MINUTE};
use crate::{Sim, SimStatus};
use drctl_runtime::backoff::RetryPolicy;
use drctl_runtime::clock::{Clock, Timestamp};
use drctl_runtime::executor::{due, Due, Engine, EngineError, NewRun, Tick};
use drctl_runtime::procedure::{ErasedProcedure, Registry};
use drctl_runtime::record::{Decision, HistoryEvent, Outcome, RunRecord, RunStatus};
use drctl_runtime::rng::{mix, DetRng};
use drctl_runtime::store::{MemStore, RunStore};
use drctl_workflows::ports::{Operator, Ports};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestCaseError, TestError, TestRng, TestRunner};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Builds the procedure under test for one run; test-only variants may keep the [`Sim`] to
/// reach around the ports (that is how a deliberately broken procedure removes a member).
pub type Factory = Arc<dyn Fn(&Sim) -> Arc<dyn ErasedProcedure<Ports>> + Send + Sync>;

/// Gives wall-clock time since some start; injected by the caller (the simulator itself never
/// reads the wall clock), used only to report simulations per second.
pub type Stopwatch = Arc<dyn Fn() -> Duration + Send + Sync>;

const APPROVER: &str = "chaos";
/// How long a run may keep retrying transient failures (the CLI's default `--deadline`).
const RUN_DEADLINE: Duration = Duration::from_secs(24 * 3600);
/// After the run ends and the faults are over, the world is left alone this long before it is
/// judged (health, settled digest).
const SETTLE_MS: u64 = 30 * MINUTE;
/// A success must find the cluster healthy right away when no fault window ended within this
/// long before it (the aftermath of a fault, a member restarting, may take that long).
const QUIET_MS: u64 = 10 * MINUTE;
/// Sometimes-assertions are enforced only by sweeps at least this large.
pub const MIN_SEEDS_FOR_SOMETIMES: u64 = 500;

// ---------------------------------------------------------------------------------------------
// The table: procedure -> scenarios, parameters, gates, guard
// ---------------------------------------------------------------------------------------------

/// A scenario a procedure runs on, picked per seed with this weight.
#[derive(Clone, Copy)]
pub struct ScenarioChoice {
    pub scenario: &'static str,
    pub weight: u64,
    /// The run's parameters, from the world it starts on (a member replacement names the
    /// scenario's broken member).
    pub params: fn(&World) -> serde_json::Value,
}

/// A rare path a large enough sweep must reach ("sometimes" assertion).
#[derive(Clone, Copy)]
pub struct Sometimes {
    pub name: &'static str,
    /// Enforced only when the sweep may inject one of these kinds (empty: always).
    pub needs: &'static [FaultKind],
    pub holds: fn(&RunObservation) -> bool,
}

/// What else a success must have produced, judged on the world.
pub type Postcondition = fn(&World) -> Result<(), String>;

/// How the harness runs one procedure.
#[derive(Clone)]
pub struct ProcedureRow {
    pub procedure: &'static str,
    pub scenarios: &'static [ScenarioChoice],
    /// Gates the procedure asks; pre-approved unless the schedule says otherwise.
    pub gates: &'static [&'static str],
    /// Destructive effects are allowed only after the run left this state (its guard passed)
    /// with every gate approved. `None`: the procedure must never do anything destructive.
    pub guard_state: Option<&'static str>,
    /// Gates asked after the guard, each guarding only the steps after it: not required for the
    /// destructive effects before them.
    pub later_gates: &'static [&'static str],
    /// How long a run usually takes: faults are placed within it.
    pub horizon: Duration,
    /// When a run does most of its SSH work: SSH faults (and half the API outages) start then.
    pub ssh_phase: (Duration, Duration),
    /// Step executions a crash by index may be placed at.
    pub typical_steps: u32,
    /// Once the last fault is over (and the last gate decided), the run must end within this.
    pub liveness_bound: Duration,
    /// No run may take more step executions than this.
    pub max_steps: u32,
    /// The procedure's success means a healthy cluster (a restore), so the cluster must be
    /// healthy the moment it succeeds (faults long over). Any success must leave the cluster
    /// healthy once faults are over and it settled.
    pub healthy_at_success: bool,
    /// The procedure's success shuts the cluster down (`cluster-shutdown`): no health is checked
    /// after it; `postcondition` says what it must have left.
    pub down_at_success: bool,
    /// What else a success must have produced, checked on the world when the run succeeds.
    pub postcondition: Option<Postcondition>,
    /// What an aborted run must have left (its undo done), checked when the run ends aborted.
    pub undone: Option<Postcondition>,
    /// What must hold however the run ended (e.g. what it must never touch).
    pub always: Option<Postcondition>,
    /// What the runbook says holds when a step is reached: checked on the world each time the
    /// run arrives in that state (by its kind, `state_kind`).
    pub arrivals: &'static [(&'static str, Postcondition)],
    pub sometimes: &'static [Sometimes],
    /// The quorum guard must be on at a halt too (a person may leave a halted run for hours).
    pub guard_on_when_halted: bool,
    /// How many child runs the run itself may start.
    pub max_children: usize,
}

fn restore_params(_: &World) -> serde_json::Value {
    serde_json::json!({ "backup": "nightly" })
}

fn restore_params_keepalived(_: &World) -> serde_json::Value {
    serde_json::json!({ "backup": "nightly", "api_vip": "10.0.0.5", "ingress_vip": "10.0.0.7" })
}

/// Defaults only.
fn no_params(_: &World) -> serde_json::Value {
    serde_json::json!({})
}

/// `--expect-back 10m`: the member does not come back in these scenarios; the triage waits, then
/// replaces it.
fn triage_expect_back_params(_: &World) -> serde_json::Value {
    serde_json::json!({ "expect_back_secs": 600 })
}

/// A replacement of the member the scenario broke.
fn member_params(w: &World) -> serde_json::Value {
    serde_json::json!({ "node": crate::scenario::member_victim(w.seed) })
}

/// The new server of a bare metal replacement: the rack's spare, its BMC credentials in a file.
fn new_host_params(params: &mut serde_json::Value) {
    let (address, mac) = crate::bare_metal::server_identity(crate::bare_metal::SPARE_SERVER);
    params["bmc_address"] = address.into();
    params["boot_mac_address"] = mac.into();
    params["bmc_credentials"] = crate::bare_metal::sim_credentials_file().display().to_string().into();
}

/// A bare metal replacement of the member the scenario broke, onto the spare server.
fn baremetal_params(w: &World) -> serde_json::Value {
    let mut p = member_params(w);
    new_host_params(&mut p);
    p
}

/// A triage of a bare metal cluster, given the spare server for the replacement.
fn triage_baremetal_params(_: &World) -> serde_json::Value {
    let mut p = serde_json::json!({});
    new_host_params(&mut p);
    p
}

fn retried_with(o: &RunObservation, text: &str) -> bool {
    o.history.iter().any(|e| e.outcome == Outcome::Retry && e.detail.as_deref().is_some_and(|d| d.contains(text)))
}

fn succeeded(o: &RunObservation) -> bool {
    o.status == RunStatus::Succeeded
}

fn gate_waited(o: &RunObservation) -> bool {
    let gate = o.history.iter().position(|e| e.outcome == Outcome::Gate);
    gate.is_some_and(|g| o.history[g..].iter().any(|e| e.outcome == Outcome::Approved))
}

fn crashed_and_resumed(o: &RunObservation) -> bool {
    o.history.iter().any(|e| e.outcome == Outcome::Resumed)
}

/// An API outage overlapped the part of the restore where only SSH works (from copying the
/// backup until the restored API is waited for).
fn outage_in_ssh_only_phase(o: &RunObservation) -> bool {
    let at = |state: &str| o.history.iter().find(|e| e.outcome == Outcome::Transition && base_state(&e.to) == state).map(|e| e.at);
    let (Some(from), Some(until)) = (at("CopyBackup"), at("WaitNodes")) else { return false };
    let (from, until) = (from.0.saturating_sub(o.started_at.0), until.0.saturating_sub(o.started_at.0));
    o.schedule.faults.iter().any(|f| matches!(f, Fault::ApiOutage { at, dur } if *at < until && at + dur > from))
}

/// Halted on a full disk, and once the disk had room again, resumed to the end.
fn halted_on_full_disk(o: &RunObservation) -> bool {
    o.resumed_after.as_deref().is_some_and(|t| t.to_ascii_lowercase().contains("no space left on device"))
}

const CRASHES: &[FaultKind] = &[FaultKind::CrashBefore, FaultKind::CrashAfter];
const RUN_SUCCEEDED: Sometimes = Sometimes { name: "a run succeeded", needs: &[], holds: succeeded };
const CRASHED_AND_RESUMED: Sometimes = Sometimes { name: "the runner crashed and resumed", needs: CRASHES, holds: crashed_and_resumed };
const UNDID_QUORUM_GUARD: Sometimes = Sometimes {
    name: "an abort turned the quorum guard back on (UndoQuorumGuard)",
    needs: &[FaultKind::Abort],
    holds: |o| o.history.iter().any(|e| e.outcome == Outcome::Transition && e.to == "UndoQuorumGuard"),
};

/// Every backup set in the backup location is one a restore accepts: exactly one
/// `snapshot_<ts>.db` and one `static_kuberesources_<ts>.tar.gz` of the same backup, recorded
/// with the status and version of those very files.
fn backups_are_restorable(w: &World) -> Result<(), String> {
    use crate::world::SimFile;
    for (name, set) in &w.backups {
        let names: Vec<&String> = set.files.keys().collect();
        let (s, r) =
            drctl_workflows::backup_files::the_only_pair(&names).map_err(|why| format!("backup {name} {why}: a restore refuses it"))?;
        let (s, r) = (&s, &r);
        let (Some(SimFile::Snapshot { status, .. }), Some(SimFile::StaticResources { cluster_version, .. })) =
            (set.files.get(s), set.files.get(r))
        else {
            return Err(format!("backup {name}: {s} or {r} is not what its name says"));
        };
        match &set.info {
            Some(i) if &i.snapshot == status && &i.cluster_version == cluster_version => {}
            other => return Err(format!("backup {name} records {other:?}, but its snapshot is {status:?} of {cluster_version}")),
        }
    }
    Ok(())
}

/// Every procedure the harness knows how to run. Add a row for a new procedure.
pub fn rows() -> Vec<ProcedureRow> {
    vec![
        ProcedureRow {
            procedure: "restore-cluster-state",
            scenarios: &[
                ScenarioChoice { scenario: "quorum-loss", weight: 3, params: restore_params },
                ScenarioChoice { scenario: "quorum-loss-reachable", weight: 1, params: restore_params_keepalived },
                ScenarioChoice { scenario: "api-unreachable", weight: 1, params: restore_params },
                ScenarioChoice { scenario: "quorum-loss-cpms", weight: 1, params: restore_params },
                ScenarioChoice { scenario: "quorum-loss-baremetal", weight: 1, params: restore_params_keepalived },
                ScenarioChoice { scenario: "quorum-loss-upi", weight: 1, params: restore_params },
                ScenarioChoice { scenario: "quorum-loss-ovn-ic", weight: 1, params: restore_params },
                ScenarioChoice { scenario: "quorum-loss-sdn", weight: 1, params: restore_params },
                ScenarioChoice { scenario: "quorum-loss-misnamed", weight: 1, params: restore_params_keepalived },
            ],
            gates: &["start"],
            guard_state: Some("AwaitApproval"),
            later_gates: &[],
            horizon: Duration::from_secs(2 * 3600),
            ssh_phase: (Duration::ZERO, Duration::from_secs(20 * 60)),
            typical_steps: 250,
            liveness_bound: Duration::from_secs(12 * 3600),
            max_steps: 20_000,
            healthy_at_success: true,
            down_at_success: false,
            postcondition: None,
            undone: None,
            always: Some(machines_as_the_platform_allows),
            arrivals: &[
                ("ForceRollout", etcd_rolled_out_on_every_control_plane_node),
                ("VerifyEtcd", static_pods_rolled_out_on_every_control_plane_node),
            ],
            sometimes: &[
                RUN_SUCCEEDED,
                Sometimes { name: "a gate was waited on, then approved", needs: &[FaultKind::GateWait], holds: gate_waited },
                Sometimes {
                    name: "refused: the inventory named another node than the host's kubelet",
                    needs: &[],
                    holds: |o| o.outcome.as_deref().is_some_and(|t| t.contains("but its kubelet is node")),
                },
                Sometimes {
                    name: "refused: etcd still had quorum though the API did not answer",
                    needs: &[],
                    holds: |o| o.outcome.as_deref().is_some_and(|t| t.contains("etcd has not lost quorum")),
                },
                Sometimes {
                    name: "an API outage during the SSH-only phase",
                    needs: &[FaultKind::ApiOutage],
                    holds: outage_in_ssh_only_phase,
                },
                Sometimes {
                    name: "a retry after etcdserver: no leader",
                    needs: &[FaultKind::EtcdError],
                    holds: |o| retried_with(o, "no leader"),
                },
                Sometimes {
                    name: "a retry after an SSH connection dropped mid-command",
                    needs: &[FaultKind::SshDrop],
                    holds: |o| retried_with(o, "closed by remote host"),
                },
                Sometimes { name: "a retry after HTTP 504", needs: &[FaultKind::ApiError], holds: |o| retried_with(o, "HTTP 504") },
                CRASHED_AND_RESUMED,
                UNDID_QUORUM_GUARD,
            ],
            guard_on_when_halted: false,
            max_children: 0,
        },
        ProcedureRow {
            procedure: "etcd-backup",
            scenarios: &[ScenarioChoice { scenario: "healthy", weight: 1, params: no_params }],
            gates: &[],
            guard_state: None,
            later_gates: &[],
            horizon: Duration::from_secs(10 * 60),
            ssh_phase: (Duration::ZERO, Duration::from_secs(5)),
            typical_steps: 12,
            liveness_bound: Duration::from_secs(6 * 3600),
            max_steps: 5_000,
            healthy_at_success: false,
            down_at_success: false,
            postcondition: Some(backups_are_restorable),
            undone: None,
            always: None,
            arrivals: &[],
            sometimes: &[
                RUN_SUCCEEDED,
                Sometimes {
                    name: "a retry after etcdserver: no leader",
                    needs: &[FaultKind::EtcdError],
                    holds: |o| retried_with(o, "no leader"),
                },
                Sometimes {
                    name: "halted on a full disk, resumed once it had room",
                    needs: &[FaultKind::DiskFull],
                    holds: halted_on_full_disk,
                },
                Sometimes {
                    name: "a retry after an SSH connection dropped mid-command",
                    needs: &[FaultKind::SshDrop],
                    holds: |o| retried_with(o, "closed by remote host"),
                },
                CRASHED_AND_RESUMED,
            ],
            guard_on_when_halted: false,
            max_children: 0,
        },
        ProcedureRow {
            procedure: "hosted-pause-reconciliation",
            scenarios: &[
                ScenarioChoice { scenario: "hosted-healthy", weight: 3, params: pause_params },
                ScenarioChoice { scenario: "hosted-paused", weight: 2, params: unpause_params },
                ScenarioChoice { scenario: "hosted-paused-by-other", weight: 1, params: unpause_params },
            ],
            gates: &[],
            guard_state: None,
            later_gates: &[],
            horizon: Duration::from_secs(5 * 60),
            ssh_phase: (Duration::ZERO, Duration::from_secs(5)),
            typical_steps: 8,
            liveness_bound: Duration::from_secs(6 * 3600),
            max_steps: 5_000,
            healthy_at_success: false,
            down_at_success: false,
            postcondition: Some(paused_by_this_tool),
            undone: Some(pause_undone),
            always: Some(foreign_pause_kept),
            arrivals: &[],
            sometimes: &[
                RUN_SUCCEEDED,
                Sometimes {
                    name: "a pause it did not set was refused",
                    needs: &[],
                    holds: |o| o.outcome.as_deref().is_some_and(|t| t.contains("a pause drctl did not set")),
                },
                Sometimes {
                    name: "an abort put the prior value back (RestorePrior)",
                    needs: &[FaultKind::Abort],
                    holds: |o| o.history.iter().any(|e| e.outcome == Outcome::Transition && e.to == "RestorePrior"),
                },
                CRASHED_AND_RESUMED,
            ],
            guard_on_when_halted: false,
            max_children: 0,
        },
        ProcedureRow {
            procedure: "hosted-etcd-member-recover",
            scenarios: &[
                ScenarioChoice { scenario: "hosted-etcd-member-failed", weight: 5, params: member_recover_params },
                ScenarioChoice { scenario: "hosted-healthy", weight: 1, params: member_recover_params },
            ],
            gates: &[],
            guard_state: None,
            later_gates: &[],
            horizon: Duration::from_secs(5 * 60),
            ssh_phase: (Duration::ZERO, Duration::from_secs(5)),
            typical_steps: 20,
            liveness_bound: Duration::from_secs(6 * 3600),
            max_steps: 5_000,
            healthy_at_success: false,
            down_at_success: false,
            postcondition: Some(hosted_etcd_whole),
            undone: None,
            always: Some(only_the_failed_member_deleted),
            arrivals: &[],
            sometimes: &[
                RUN_SUCCEEDED,
                Sometimes {
                    name: "a healthy etcd was refused: no member to recover",
                    needs: &[],
                    holds: |o| o.outcome.as_deref().is_some_and(|t| t.contains("there is no member to recover")),
                },
                Sometimes {
                    name: "a pod recreated on the Terminating PVC was deleted again",
                    needs: &[],
                    holds: |o| {
                        o.history.iter().any(|e| e.outcome == Outcome::Transition && e.from == "WaitMemberBack" && e.to == "DeletePod")
                    },
                },
                Sometimes {
                    name: "an abort past the PVC delete said where the member was left",
                    needs: &[FaultKind::Abort],
                    holds: |o| o.history.iter().any(|e| e.outcome == Outcome::Transition && e.to == "ReportAbort"),
                },
                CRASHED_AND_RESUMED,
            ],
            guard_on_when_halted: false,
            max_children: 0,
        },
        ProcedureRow {
            procedure: "hosted-scale-data-plane-zero",
            scenarios: &[
                ScenarioChoice { scenario: "hosted-healthy", weight: 5, params: scale_zero_params },
                ScenarioChoice { scenario: "hosted-autoscaling", weight: 1, params: scale_zero_params },
                ScenarioChoice { scenario: "hosted-data-plane-at-zero", weight: 3, params: scale_up_params },
            ],
            gates: &[],
            guard_state: None,
            later_gates: &[],
            horizon: Duration::from_secs(12 * 60),
            ssh_phase: (Duration::ZERO, Duration::from_secs(5)),
            typical_steps: 40,
            liveness_bound: Duration::from_secs(6 * 3600),
            max_steps: 5_000,
            healthy_at_success: false,
            down_at_success: false,
            postcondition: Some(data_plane_as_promised),
            undone: Some(data_plane_scaled_back),
            always: Some(autoscaling_pool_untouched),
            arrivals: &[],
            sometimes: &[
                RUN_SUCCEEDED,
                Sometimes {
                    name: "an autoscaling pool was refused before anything changed",
                    needs: &[],
                    holds: |o| o.outcome.as_deref().is_some_and(|t| t.contains("a NodePool autoscales")),
                },
                Sometimes {
                    name: "a scale-up brought the data plane back",
                    needs: &[],
                    holds: |o| o.outcome.as_deref().is_some_and(|t| t.contains("is back: NodePools at")),
                },
                Sometimes {
                    name: "an abort scaled the pools back (ScaleBack)",
                    needs: &[FaultKind::Abort],
                    holds: |o| o.history.iter().any(|e| e.outcome == Outcome::Transition && e.to == "ScaleBack"),
                },
                CRASHED_AND_RESUMED,
            ],
            guard_on_when_halted: false,
            max_children: 0,
        },
        ProcedureRow {
            procedure: "hosted-etcd-snapshot",
            scenarios: &[
                ScenarioChoice { scenario: "hosted-healthy", weight: 6, params: snapshot_params },
                ScenarioChoice { scenario: "hosted-paused-by-other", weight: 2, params: snapshot_params },
                ScenarioChoice { scenario: "hosted-healthy", weight: 1, params: snapshot_params_no_bucket },
            ],
            gates: &[],
            guard_state: None,
            later_gates: &[],
            horizon: Duration::from_secs(8 * 60),
            ssh_phase: (Duration::ZERO, Duration::from_secs(5)),
            typical_steps: 40,
            liveness_bound: Duration::from_secs(6 * 3600),
            max_steps: 5_000,
            healthy_at_success: false,
            down_at_success: false,
            postcondition: Some(snapshot_backed_up),
            undone: None,
            always: Some(snapshot_left_nothing_behind),
            arrivals: &[],
            sometimes: &[
                RUN_SUCCEEDED,
                Sometimes {
                    name: "a missing bucket was refused before anything changed",
                    needs: &[],
                    holds: |o| o.outcome.as_deref().is_some_and(|t| t.contains("NoSuchBucket")),
                },
                Sometimes {
                    name: "someone else's pause was kept",
                    needs: &[],
                    holds: |o| o.outcome.as_deref().is_some_and(|t| t.contains("left paused as it was before")),
                },
                Sometimes {
                    name: "an abort deleted the unrecorded objects (DeleteUnrecorded)",
                    needs: &[FaultKind::Abort],
                    holds: |o| o.history.iter().any(|e| e.outcome == Outcome::Transition && e.to == "DeleteUnrecorded"),
                },
                Sometimes { name: "a retry after S3 SlowDown", needs: &[FaultKind::S3Error], holds: |o| retried_with(o, "SlowDown") },
                CRASHED_AND_RESUMED,
            ],
            guard_on_when_halted: false,
            max_children: 0,
        },
        ProcedureRow {
            procedure: "etcd-member-triage",
            scenarios: &[
                ScenarioChoice { scenario: "member-machine-stopped", weight: 2, params: no_params },
                ScenarioChoice { scenario: "member-node-notready", weight: 2, params: no_params },
                ScenarioChoice { scenario: "member-crashloop", weight: 2, params: no_params },
                ScenarioChoice { scenario: "member-node-notready", weight: 1, params: triage_expect_back_params },
                ScenarioChoice { scenario: "quorum-loss", weight: 1, params: no_params },
                ScenarioChoice { scenario: "baremetal-member-lost", weight: 2, params: triage_baremetal_params },
            ],
            gates: &["remove-member"],
            guard_state: Some("AwaitApproval"),
            later_gates: &[],
            horizon: Duration::from_secs(3600),
            ssh_phase: (Duration::ZERO, Duration::from_secs(10 * 60)),
            typical_steps: 120,
            liveness_bound: Duration::from_secs(12 * 3600),
            max_steps: 10_000,
            healthy_at_success: true,
            down_at_success: false,
            postcondition: None,
            undone: None,
            always: Some(only_the_broken_member_replaced),
            arrivals: &[],
            sometimes: &[
                RUN_SUCCEEDED,
                Sometimes {
                    name: "refused: etcd lost a majority (restore-cluster-state)",
                    needs: &[],
                    holds: |o| o.outcome.as_deref().is_some_and(|t| t.contains("restore-cluster-state")),
                },
                CRASHED_AND_RESUMED,
                Sometimes { name: "a gate was waited on, then approved", needs: &[FaultKind::GateWait], holds: gate_waited },
            ],
            guard_on_when_halted: true,
            max_children: 1,
        },
        ProcedureRow {
            procedure: "replace-etcd-member-machine",
            scenarios: &[
                ScenarioChoice { scenario: "member-machine-stopped", weight: 1, params: member_params },
                ScenarioChoice { scenario: "member-node-notready", weight: 1, params: member_params },
            ],
            gates: &["remove-member"],
            guard_state: Some("AwaitApproval"),
            later_gates: &[],
            horizon: Duration::from_secs(3600),
            ssh_phase: (Duration::ZERO, Duration::from_secs(5 * 60)),
            typical_steps: 100,
            liveness_bound: Duration::from_secs(12 * 3600),
            max_steps: 10_000,
            healthy_at_success: true,
            down_at_success: false,
            postcondition: Some(three_members),
            undone: None,
            always: Some(only_the_broken_member_replaced),
            arrivals: &[],
            sometimes: &[
                RUN_SUCCEEDED,
                CRASHED_AND_RESUMED,
                UNDID_QUORUM_GUARD,
                Sometimes { name: "a retry after HTTP 504", needs: &[FaultKind::ApiError], holds: |o| retried_with(o, "HTTP 504") },
            ],
            guard_on_when_halted: true,
            max_children: 1,
        },
        ProcedureRow {
            procedure: "replace-etcd-member-baremetal",
            scenarios: &[ScenarioChoice { scenario: "baremetal-member-lost", weight: 1, params: baremetal_params }],
            gates: &["remove-member"],
            guard_state: Some("AwaitApproval"),
            later_gates: &[],
            horizon: Duration::from_secs(2 * 3600),
            ssh_phase: (Duration::ZERO, Duration::from_secs(5 * 60)),
            typical_steps: 160,
            liveness_bound: Duration::from_secs(12 * 3600),
            max_steps: 10_000,
            healthy_at_success: true,
            down_at_success: false,
            postcondition: Some(three_members),
            undone: None,
            always: Some(only_the_broken_host_replaced),
            arrivals: &[],
            sometimes: &[
                RUN_SUCCEEDED,
                CRASHED_AND_RESUMED,
                UNDID_QUORUM_GUARD,
                Sometimes {
                    name: "a hung machine deletion ended by removing its finalizer",
                    needs: &[],
                    holds: |o| o.history.iter().any(|e| e.outcome == Outcome::Transition && base_state(&e.to) == "RemoveFinalizer"),
                },
            ],
            guard_on_when_halted: true,
            max_children: 1,
        },
        ProcedureRow {
            procedure: "recover-expired-certs",
            scenarios: &[
                ScenarioChoice { scenario: "certs-expired", weight: 4, params: no_params },
                ScenarioChoice { scenario: "healthy", weight: 1, params: no_params },
            ],
            gates: &["unexpected-csrs"],
            guard_state: None,
            later_gates: &[],
            horizon: Duration::from_secs(3600),
            ssh_phase: (Duration::ZERO, Duration::from_secs(10 * 60)),
            typical_steps: 40,
            liveness_bound: Duration::from_secs(12 * 3600),
            max_steps: 10_000,
            healthy_at_success: true,
            down_at_success: false,
            postcondition: None,
            undone: None,
            always: Some(only_csrs_within_the_policy_approved),
            arrivals: &[],
            sometimes: &[
                RUN_SUCCEEDED,
                CRASHED_AND_RESUMED,
                Sometimes {
                    name: "a CSR outside the policy went to a person",
                    needs: &[],
                    holds: |o| o.history.iter().any(|e| e.outcome == Outcome::Transition && base_state(&e.to) == "ReviewUnexpected"),
                },
                Sometimes { name: "a gate was waited on, then approved", needs: &[FaultKind::GateWait], holds: gate_waited },
            ],
            guard_on_when_halted: false,
            max_children: 0,
        },
        ProcedureRow {
            procedure: "cluster-shutdown",
            scenarios: &[
                ScenarioChoice { scenario: "healthy", weight: 2, params: no_params },
                ScenarioChoice { scenario: "healthy", weight: 1, params: shutdown_past_the_signer_params },
            ],
            gates: &["shutdown"],
            guard_state: Some("CheckCertificates"),
            later_gates: &[],
            horizon: Duration::from_secs(3600),
            ssh_phase: (Duration::ZERO, Duration::from_secs(10 * 60)),
            typical_steps: 60,
            liveness_bound: Duration::from_secs(12 * 3600),
            max_steps: 10_000,
            healthy_at_success: false,
            down_at_success: true,
            postcondition: Some(every_machine_off),
            undone: None,
            always: Some(backup_first_then_workers_then_control_plane),
            arrivals: &[],
            sometimes: &[
                RUN_SUCCEEDED,
                CRASHED_AND_RESUMED,
                Sometimes { name: "a gate was waited on, then approved", needs: &[FaultKind::GateWait], holds: gate_waited },
            ],
            guard_on_when_halted: false,
            max_children: 1,
        },
        ProcedureRow {
            procedure: "cluster-restart",
            scenarios: &[ScenarioChoice { scenario: "shut-down", weight: 1, params: no_params }],
            gates: &["unexpected-csrs"],
            guard_state: None,
            later_gates: &[],
            horizon: Duration::from_secs(3600),
            ssh_phase: (Duration::ZERO, Duration::from_secs(10 * 60)),
            typical_steps: 40,
            liveness_bound: Duration::from_secs(12 * 3600),
            max_steps: 10_000,
            healthy_at_success: true,
            down_at_success: false,
            postcondition: None,
            undone: None,
            always: Some(only_csrs_within_the_policy_approved),
            arrivals: &[],
            sometimes: &[
                RUN_SUCCEEDED,
                CRASHED_AND_RESUMED,
                Sometimes { name: "an API outage was waited out", needs: &[FaultKind::ApiOutage], holds: succeeded },
            ],
            guard_on_when_halted: false,
            max_children: 0,
        },
        ProcedureRow {
            procedure: "legacy-lost-masters",
            scenarios: &[ScenarioChoice { scenario: "legacy-lost-masters", weight: 1, params: restore_params }],
            gates: &["start", "new-masters", "dns-lb", "unexpected-csrs"],
            guard_state: Some("AwaitApproval"),
            later_gates: &["new-masters", "dns-lb", "unexpected-csrs"],
            horizon: Duration::from_secs(3600),
            ssh_phase: (Duration::ZERO, Duration::from_secs(60 * 60)),
            typical_steps: 80,
            liveness_bound: Duration::from_secs(12 * 3600),
            max_steps: 10_000,
            healthy_at_success: true,
            down_at_success: false,
            postcondition: Some(legacy_grown),
            undone: Some(signer_gone),
            always: Some(legacy_members_one_at_a_time),
            arrivals: &[("AddMember", signer_listens), ("DeleteLostNodes", signer_gone)],
            sometimes: &[
                RUN_SUCCEEDED,
                CRASHED_AND_RESUMED,
                Sometimes {
                    name: "an abort removed the temporary etcd signer (UndoSigner)",
                    needs: &[FaultKind::Abort],
                    holds: |o| o.history.iter().any(|e| e.outcome == Outcome::Transition && e.to == "UndoSigner"),
                },
                Sometimes { name: "an API outage was waited out", needs: &[FaultKind::ApiOutage], holds: succeeded },
            ],
            guard_on_when_halted: false,
            max_children: 0,
        },
        ProcedureRow {
            procedure: "replace-etcd-member-crashloop",
            scenarios: &[ScenarioChoice { scenario: "member-crashloop", weight: 1, params: member_params }],
            gates: &["remove-member"],
            guard_state: Some("AwaitApproval"),
            later_gates: &[],
            horizon: Duration::from_secs(3600),
            ssh_phase: (Duration::ZERO, Duration::from_secs(5 * 60)),
            typical_steps: 80,
            liveness_bound: Duration::from_secs(12 * 3600),
            max_steps: 10_000,
            healthy_at_success: true,
            down_at_success: false,
            postcondition: Some(three_members),
            undone: None,
            always: Some(only_the_broken_member_replaced),
            arrivals: &[],
            sometimes: &[
                RUN_SUCCEEDED,
                CRASHED_AND_RESUMED,
                UNDID_QUORUM_GUARD,
                Sometimes {
                    name: "a retry after an SSH connection dropped mid-command",
                    needs: &[FaultKind::SshDrop],
                    holds: |o| retried_with(o, "closed by remote host"),
                },
            ],
            guard_on_when_halted: true,
            max_children: 1,
        },
    ]
}

/// Step 16 as the platform allows it (4.14 Backup and restore §5.4.2.2 step 16 and its notes):
/// no bare-metal host deprovisioned, no machine created by hand where a control plane machine
/// set or the installation method owns that, and never more control-plane machines than hosts.
fn machines_as_the_platform_allows(w: &World) -> Result<(), String> {
    use crate::world::{EffectKind, Platform};
    if let Some(e) = w.effects.iter().find(|e| e.kind == EffectKind::BareMetalHostDeprovisioned) {
        return Err(format!("bare-metal host {} deprovisioned at {}: its machine was deleted", e.target, e.at));
    }
    if matches!(w.platform, Platform::CloudIpiCpms | Platform::BareMetalIpi | Platform::Upi) {
        if let Some(e) = w.effects.iter().find(|e| e.kind == EffectKind::MachineCreated) {
            return Err(format!(
                "machine {} created by the run at {} on {:?}, where the platform owns machine creation",
                e.target, e.at, w.platform
            ));
        }
    }
    let live = w.api().machines.values().filter(|m| m.control_plane && m.phase != "Deleting").count();
    if live > 3 {
        return Err(format!("{live} control-plane machines for a 3-host control plane"));
    }
    Ok(())
}

/// Runbook step 22 is over: every control-plane host (the three the cluster had) runs etcd at
/// the operator's latest revision, whatever the operator's condition said meanwhile.
fn etcd_rolled_out_on_every_control_plane_node(w: &World) -> Result<(), String> {
    rolled_out(w, &[Operator::Etcd])
}

/// Runbook step 23 is over: the same for the API server, controller manager and scheduler.
fn static_pods_rolled_out_on_every_control_plane_node(w: &World) -> Result<(), String> {
    rolled_out(w, &[Operator::Etcd, Operator::KubeApiServer, Operator::KubeControllerManager, Operator::KubeScheduler])
}

fn rolled_out(w: &World, operators: &[Operator]) -> Result<(), String> {
    let hosts: Vec<&String> = w.control_plane_hosts().map(|h| &h.name).collect();
    for op in operators {
        let o = &w.api().operators[op];
        let at_latest =
            w.api().nodes.values().filter(|n| n.control_plane && o.node_revisions.get(&n.name) == Some(&o.latest_revision)).count();
        if at_latest < hosts.len() {
            return Err(format!(
                "{op}: only {at_latest} of {} control-plane nodes at revision {} ({:?})",
                hosts.len(),
                o.latest_revision,
                o.node_revisions
            ));
        }
    }
    Ok(())
}

/// A member replacement touches only the member the scenario broke: at most one member removed
/// (the broken one), only its machine deleted, and a machine created only under a name no
/// machine of the cluster ever had.
fn only_the_broken_member_replaced(w: &World) -> Result<(), String> {
    let start = crate::scenario::build(&w.scenario, w.seed)?;
    let victim = crate::scenario::member_victim(w.seed);
    let victim_member = start.hosts.get(&victim).and_then(|h| h.etcd_data).map(|d| format!("{:x}", d.member_id));
    let removed: Vec<&crate::world::Effect> = w.effects.iter().filter(|e| matches!(e.kind, EffectKind::MemberRemoved { .. })).collect();
    if removed.len() > 1 {
        return Err(format!(
            "{} etcd members removed by one run: {}",
            removed.len(),
            removed.iter().map(|e| e.target.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    if let Some(e) = removed.iter().find(|e| Some(&e.target) != victim_member.as_ref()) {
        return Err(format!("etcd member {} removed at {}, but the broken member is {victim}'s ({victim_member:?})", e.target, e.at));
    }
    let victim_machine = start.hosts.get(&victim).map(|h| h.machine.clone());
    for e in &w.effects {
        match &e.kind {
            EffectKind::MachineDeleted { node }
                if node.as_deref() != Some(victim.as_str()) && Some(&e.target) != victim_machine.as_ref() =>
            {
                return Err(format!("machine {} (node {node:?}) deleted at {}: only {victim}'s may be", e.target, e.at));
            }
            EffectKind::MachineCreated if start.api().machines.contains_key(&e.target) => {
                return Err(format!("machine {} created at {} under a name the cluster's machines already had", e.target, e.at));
            }
            _ => {}
        }
    }
    let created: Vec<&str> = w.effects.iter().filter(|e| e.kind == EffectKind::MachineCreated).map(|e| e.target.as_str()).collect();
    if created.len() > 1 {
        return Err(format!("{} machines created for one member: {}", created.len(), created.join(", ")));
    }
    Ok(())
}

/// A restart planned a year on: after the kubelet signer's expiry.
fn shutdown_past_the_signer_params(_: &World) -> serde_json::Value {
    serde_json::json!({ "restart_by": "2027-01-05T09:00:00Z" })
}

/// Every machine is off (or its `shutdown -h 1` is due): what a shutdown's success leaves.
fn every_machine_off(w: &World) -> Result<(), String> {
    let on: Vec<&str> = w.hosts.values().filter(|h| h.powered && h.shutdown_at.is_none()).map(|h| h.name.as_str()).collect();
    match on.is_empty() {
        true => Ok(()),
        false => Err(format!("succeeded with {} still on", on.join(", "))),
    }
}

/// No machine shut down before the backup was stored, and no worker after the first
/// control-plane machine (4.5 Backup and restore ch.3: the backup is the prerequisite; the
/// control plane serves the workers until they are gone).
fn backup_first_then_workers_then_control_plane(w: &World) -> Result<(), String> {
    // Stored in the backup location; where that location is outside the world (the twin's
    // real directory), written on the host is what the world can see.
    let stored = w.effects.iter().position(|e| e.kind == EffectKind::BackupStored);
    let backup = stored.or_else(|| w.effects.iter().position(|e| e.kind == EffectKind::BackupWritten));
    let shutdowns: Vec<(usize, &crate::world::Effect)> =
        w.effects.iter().enumerate().filter(|(_, e)| e.kind == EffectKind::HostShutdown).collect();
    if let Some((i, e)) = shutdowns.first() {
        if backup.is_none_or(|b| b > *i) {
            return Err(format!("{} shut down at {} before the backup was stored", e.target, e.at));
        }
    }
    let worker = |name: &str| w.hosts.get(name).is_some_and(|h| h.worker);
    if let Some(first_cp) = shutdowns.iter().position(|(_, e)| !worker(&e.target)) {
        if let Some((_, e)) = shutdowns[first_cp..].iter().find(|(_, e)| worker(&e.target)) {
            return Err(format!("worker {} shut down at {} after the control plane began shutting down", e.target, e.at));
        }
    }
    Ok(())
}

/// Only CSRs of the cluster's own hosts were approved (by the run or the machine approver):
/// never the foreign one of `certs-expired`, nor any other for a node no host runs.
/// OpenShift 4.1–4.3: no member added while another added one had not started (etcd would
/// be left unable to reach quorum), no CSR outside the policy approved, and the temporary signer
/// gone whenever the run is not in the states that use it.
fn legacy_members_one_at_a_time(w: &World) -> Result<(), String> {
    for e in &w.effects {
        if let EffectKind::LegacyMemberAdded { unstarted_before } = e.kind {
            if unstarted_before > 0 {
                return Err(format!(
                    "a member was added on {} at {} while {unstarted_before} added member(s) had not started",
                    e.target, e.at
                ));
            }
        }
    }
    only_csrs_within_the_policy_approved(w)
}

/// Three members, on the remaining master and the two new ones, the signer gone, the lost
/// masters' nodes deleted.
fn legacy_grown(w: &World) -> Result<(), String> {
    let mut hosts: Vec<&str> = w.etcd[&w.current_cluster].members.values().map(String::as_str).collect();
    hosts.sort();
    let want = ["master-0", crate::legacy::LEGACY_NEW_MASTERS[0], crate::legacy::LEGACY_NEW_MASTERS[1]];
    if hosts != want {
        return Err(format!("succeeded with etcd members on {hosts:?}, want {want:?}"));
    }
    if let Some(lost) = ["master-1", "master-2"].iter().find(|n| w.api().nodes.contains_key(**n)) {
        return Err(format!("succeeded with the lost master's node {lost} still registered"));
    }
    signer_gone(w)
}

fn signer_gone(w: &World) -> Result<(), String> {
    match &w.api().etcd_signer {
        Some(node) => Err(format!("the temporary etcd signer pod (for {node}) is still there")),
        None => Ok(()),
    }
}

fn signer_listens(w: &World) -> Result<(), String> {
    let host = w.api().etcd_signer.clone().unwrap_or_default();
    match w.signer_listening_on(&host) {
        true => Ok(()),
        false => Err("a member is about to be added with no etcd signer listening".into()),
    }
}

fn only_csrs_within_the_policy_approved(w: &World) -> Result<(), String> {
    for c in w.api().csrs.values().filter(|c| c.approved) {
        if !w.hosts.contains_key(&c.node) {
            return Err(format!(
                "CSR {} for {} (requested by {}) was approved: no host of the cluster is that node",
                c.name, c.node, c.requestor
            ));
        }
    }
    Ok(())
}

/// The bare metal replacement touched only the broken member's BareMetalHost (named after its
/// node) and machine, and the BMC password is nowhere in the world (its secret keeps a digest).
fn only_the_broken_host_replaced(w: &World) -> Result<(), String> {
    only_the_broken_member_replaced(w)?;
    let victim = crate::scenario::member_victim(w.seed);
    let victim_machine = crate::scenario::build(&w.scenario, w.seed)?.hosts.get(&victim).map(|h| h.machine.clone());
    for e in &w.effects {
        match e.kind {
            EffectKind::BareMetalHostDeleted | EffectKind::BareMetalHostDeprovisioned if e.target != victim => {
                return Err(format!("baremetalhost {} deleted or wiped at {}: only {victim}'s may be", e.target, e.at));
            }
            EffectKind::MachineFinalizersRemoved if Some(&e.target) != victim_machine.as_ref() => {
                return Err(format!("finalizers of machine {} removed at {}: only {victim}'s machine may lose them", e.target, e.at));
            }
            _ => {}
        }
    }
    let world = serde_json::to_string(w).map_err(|e| e.to_string())?;
    if world.contains(crate::scenario::SIM_BMC_PASSWORD) {
        return Err("the BMC password is in the world (a secret must keep only its digest)".into());
    }
    Ok(())
}

/// A replacement's success: three members of one cluster, none of them on the broken member's
/// old data (that all three run is the settled health check's: an injected etcd crash may have
/// one restarting at the moment of success).
fn three_members(w: &World) -> Result<(), String> {
    let members = &w.etcd[&w.current_cluster].members;
    let start = crate::scenario::build(&w.scenario, w.seed)?;
    let victim = crate::scenario::member_victim(w.seed);
    let old = start.hosts.get(&victim).and_then(|h| h.etcd_data).map(|d| d.member_id);
    match (members.len(), old.is_some_and(|id| members.contains_key(&id))) {
        (3, false) => Ok(()),
        (n, kept) => Err(format!("succeeded with {n} etcd members{}", if kept { ", the broken one among them" } else { "" })),
    }
}

fn pause_params(_: &World) -> serde_json::Value {
    serde_json::json!({"namespace": "clusters", "name": "example", "node_pools": true})
}

fn unpause_params(_: &World) -> serde_json::Value {
    serde_json::json!({"namespace": "clusters", "name": "example", "node_pools": true, "unpause": true})
}

fn member_recover_params(_: &World) -> serde_json::Value {
    serde_json::json!({"namespace": "clusters", "name": "example"})
}

/// The etcd of clusters/example.
fn example_etcd(w: &World) -> Result<&crate::hosted_etcd::HostedEtcd, String> {
    hosted_example(w)?.etcd.as_ref().ok_or_else(|| "HostedCluster clusters/example has no etcd".to_string())
}

/// The member recovered: three members serving, the failed one on a new PVC, `EtcdAvailable`.
fn hosted_etcd_whole(w: &World) -> Result<(), String> {
    let etcd = example_etcd(w)?;
    if !(etcd.all_healthy() && etcd.available()) {
        return Err(format!("succeeded, but the etcd of clusters/example is not whole: {:?}", etcd.info()));
    }
    let start = crate::scenario::build(&w.scenario, w.seed)?;
    let victim = crate::scenario::hosted_etcd_victim(w.seed);
    let pvc_uid = |e: &crate::hosted_etcd::HostedEtcd| e.slot(&victim).and_then(|s| s.pvc.as_ref()).map(|c| c.uid.clone());
    if pvc_uid(etcd) == pvc_uid(example_etcd(&start)?) {
        return Err(format!("succeeded, but {victim} still has its corrupt PVC"));
    }
    Ok(())
}

/// Whatever happened, only the failed member's PVC and pod were deleted, its PVC once, and never
/// while it served; the two others kept the quorum.
fn only_the_failed_member_deleted(w: &World) -> Result<(), String> {
    let victim = crate::scenario::hosted_etcd_victim(w.seed);
    let failed = w.scenario == "hosted-etcd-member-failed";
    let mut pvcs = 0;
    for e in &w.effects {
        match &e.kind {
            EffectKind::HostedEtcdPvcDeleted { member_healthy } => {
                pvcs += 1;
                if *member_healthy || !failed || e.target != format!("clusters-example/data-{victim}") {
                    return Err(format!(
                        "PVC {} deleted at {} (its member serving: {member_healthy}); the failed member is {victim}",
                        e.target, e.at
                    ));
                }
            }
            EffectKind::PodDeleted if e.target.starts_with("clusters-example/") && e.target != format!("clusters-example/{victim}") => {
                return Err(format!("pod {} deleted at {}; the failed member is {victim}", e.target, e.at));
            }
            _ => {}
        }
    }
    if pvcs > 1 {
        return Err(format!("{pvcs} PVC deletions: a member was recovered more than once"));
    }
    let etcd = example_etcd(w)?;
    let others = etcd.members.iter().filter(|m| m.name != victim).filter(|m| etcd.member_healthy(&m.name)).count();
    match others {
        2 => Ok(()),
        n => Err(format!("{n} of the two healthy members still serve")),
    }
}

fn hosted_example(w: &World) -> Result<&crate::hosted::HostedCluster, String> {
    let h = w.hosted.as_ref().ok_or("the world has no hosted clusters")?;
    h.clusters.get(&crate::hosted::key("clusters", "example")).ok_or_else(|| "no HostedCluster clusters/example".to_string())
}

/// A successful pause leaves the cluster and its pools paused under this tool's name, the
/// control plane told; a successful unpause leaves nothing paused.
fn paused_by_this_tool(w: &World) -> Result<(), String> {
    let hc = hosted_example(w)?;
    let h = w.hosted.as_ref().expect("checked");
    let pools = h.node_pools.values().filter(|p| p.cluster_name == "example").map(|p| &p.pool);
    let drctl = |p: &crate::hosted::Pausable| p.paused_by.as_deref().is_some_and(|b| b.starts_with("drctl run "));
    match hc.cluster.paused_until.as_deref() {
        Some("true") if drctl(&hc.cluster) && hc.hcp_paused_until.as_deref() == Some("true") => {
            match pools.clone().all(|p| p.paused_until.as_deref() == Some("true") && drctl(p)) {
                true => Ok(()),
                false => Err(format!("a NodePool is not paused by drctl: {:?}", pools.collect::<Vec<_>>())),
            }
        }
        None if hc.hcp_paused_until.is_none() && pools.clone().all(|p| p.paused_until.is_none()) => Ok(()),
        _ => Err(format!("succeeded, but HostedCluster clusters/example is {:?} (control plane {:?})", hc.cluster, hc.hcp_paused_until)),
    }
}

/// An aborted run leaves every HostedCluster and NodePool pause as the scenario began.
fn pause_undone(w: &World) -> Result<(), String> {
    let pauses = |w: &World| -> Vec<(String, Option<String>, Option<String>)> {
        let Some(h) = w.hosted.as_ref() else { return vec![] };
        let clusters = h.clusters.values().map(|c| &c.cluster);
        clusters
            .chain(h.node_pools.values().map(|p| &p.pool))
            .map(|p| (p.name.clone(), p.paused_until.clone(), p.paused_by.clone()))
            .collect()
    };
    let start = crate::scenario::build(&w.scenario, w.seed)?;
    let (before, after) = (pauses(&start), pauses(w));
    match before == after {
        true => Ok(()),
        false => Err(format!("aborted, but the pauses are {after:?}, not as before {before:?}")),
    }
}

fn snapshot_params(_: &World) -> serde_json::Value {
    serde_json::json!({"namespace": "clusters", "name": "example", "bucket": format!("s3://{}/hcp", crate::scenario::BACKUP_BUCKET)})
}

fn snapshot_params_no_bucket(_: &World) -> serde_json::Value {
    serde_json::json!({"namespace": "clusters", "name": "example", "bucket": "s3://no-such-bucket-7f3a"})
}

/// The backup of clusters/example its manifest names, read from the bucket: `Ok(None)` when
/// there is no manifest; an error when the manifest names objects that are not what it says.
fn recorded_backup(w: &World) -> Result<Option<drctl_workflows::hosted::etcd_snapshot::BackupManifest>, String> {
    use drctl_workflows::hosted::etcd_snapshot::manifest_name;
    let store = w.object_store.as_ref().ok_or("the world has no object store")?;
    let Some(m) = store.object(crate::scenario::BACKUP_BUCKET, &format!("hcp/{}", manifest_name("example"))) else { return Ok(None) };
    let m: drctl_workflows::hosted::etcd_snapshot::BackupManifest =
        serde_json::from_slice(&m.bytes).map_err(|e| format!("the manifest does not parse: {e}"))?;
    let object = |key: &str| store.object(crate::scenario::BACKUP_BUCKET, key).map(|o| crate::object_store::digest_of(&o.bytes));
    if object(&m.snapshot_key).as_ref() != Some(&m.snapshot) {
        return Err(format!("the manifest names {} as {:?}, the bucket holds {:?}", m.snapshot_key, m.snapshot, object(&m.snapshot_key)));
    }
    if crate::object_store::digest_of(&crate::hosted_etcd::snapshot_bytes(&m.status)) != m.snapshot {
        return Err(format!("the object {} is not the snapshot the manifest describes ({:?})", m.snapshot_key, m.status));
    }
    let key = w.hosted_secret("clusters", &crate::hosted_control_plane::encryption_key_secret("example")).map_err(|e| e.to_string())?;
    match (&m.encryption_key_object, &m.encryption_key) {
        (Some(k), Some(d)) if object(k).as_ref() == Some(d) && *d == crate::object_store::digest_of(&key) => Ok(Some(m)),
        other => Err(format!("the manifest's encryption key is not the cluster's key as saved: {other:?}")),
    }
}

/// A success: a manifest naming a snapshot of the etcd as it is and the cluster's key.
fn snapshot_backed_up(w: &World) -> Result<(), String> {
    let m = recorded_backup(w)?.ok_or("succeeded, but the bucket has no manifest")?;
    let revision = example_etcd(w)?.revision;
    match m.status.revision == revision {
        true => Ok(()),
        false => Err(format!("the snapshot is at revision {}, the etcd at {revision}", m.status.revision)),
    }
}

/// However the run ended: the snapshot was taken with the writers stopped, the API servers are
/// back at their replicas, the pause is as it was, no snapshot file is left on a PVC, and the
/// bucket holds a whole backup or nothing of this run.
fn snapshot_left_nothing_behind(w: &World) -> Result<(), String> {
    for e in &w.effects {
        if let EffectKind::HostedEtcdSnapshotSaved { writers_ready } = e.kind {
            if writers_ready > 0 {
                return Err(format!("snapshot saved in {} at {} with {writers_ready} API server pods ready", e.target, e.at));
            }
        }
    }
    let start = crate::scenario::build(&w.scenario, w.seed)?;
    let (hc, was) = (hosted_example(w)?, hosted_example(&start)?);
    if (&hc.cluster.paused_until, &hc.cluster.paused_by) != (&was.cluster.paused_until, &was.cluster.paused_by) {
        return Err(format!(
            "the pause is {:?} by {:?}, was {:?}",
            hc.cluster.paused_until, hc.cluster.paused_by, was.cluster.paused_until
        ));
    }
    let replicas = |c: &crate::hosted::HostedCluster| -> Vec<u32> {
        c.control_plane.iter().flat_map(|p| p.writers.iter().map(|d| d.replicas)).collect()
    };
    if replicas(hc) != replicas(was) {
        return Err(format!("API server replicas {:?}, were {:?}", replicas(hc), replicas(was)));
    }
    let left: Vec<String> =
        example_etcd(w)?.slots.iter().filter(|s| s.pvc.as_ref().is_some_and(|c| !c.snapshots.is_empty())).map(|s| s.pod_name()).collect();
    if !left.is_empty() {
        return Err(format!("snapshot files left on the PVCs of {left:?}"));
    }
    let recorded = recorded_backup(w)?;
    let objects: Vec<&String> = w.object_store.iter().flat_map(|s| s.buckets.values()).flat_map(|b| b.objects.keys()).collect();
    let expected = match &recorded {
        Some(m) => 3 - usize::from(m.encryption_key_object.is_none()),
        None => 0,
    };
    match objects.len() == expected {
        true => Ok(()),
        false => Err(format!("the bucket holds {objects:?} (manifest: {:?})", recorded.map(|m| m.snapshot_key))),
    }
}

fn scale_zero_params(_: &World) -> serde_json::Value {
    serde_json::json!({"namespace": "clusters", "name": "example", "drain_timeout": "2m"})
}

fn scale_up_params(_: &World) -> serde_json::Value {
    serde_json::json!({"namespace": "clusters", "name": "example", "scale_up": true})
}

/// The scale of every NodePool of clusters/example: (name, spec.replicas, nodeDrainTimeout,
/// replicas-before-scale-to-zero annotation).
type PoolScale = (String, Option<u32>, Option<String>, Option<u32>);
fn pool_scales(w: &World) -> Vec<PoolScale> {
    let pools = w.node_pool_scales("clusters", "example").into_iter();
    pools.map(|p| (p.name, p.replicas, p.drain_timeout, p.replicas_before_zero)).collect()
}

/// A successful scale-down leaves every pool at 0 replicas with no machine left, each drain
/// timeout as it was, the replicas it had in its annotation; a successful scale-up leaves every
/// pool at the replicas its annotation said, that many machines available, the annotation gone.
fn data_plane_as_promised(w: &World) -> Result<(), String> {
    let start = crate::scenario::build(&w.scenario, w.seed)?;
    let up = w.scenario == "hosted-data-plane-at-zero";
    let want: Vec<PoolScale> = pool_scales(&start)
        .into_iter()
        .map(|(n, r, d, rec)| match up {
            true => (n, rec, d, None),
            false => (n, Some(0), d, r.filter(|r| *r > 0).or(rec)),
        })
        .collect();
    if pool_scales(w) != want {
        return Err(format!("succeeded, but the pools are {:?}, not {want:?}", pool_scales(w)));
    }
    for p in w.node_pool_scales("clusters", "example") {
        let (machines, want) = (w.node_pool_machines("clusters", &p.name), p.replicas.unwrap_or(0));
        if machines.len() != want as usize || p.status_replicas != want {
            return Err(format!(
                "succeeded, but NodePool {} has machines {machines:?} ({} available), not {want}",
                p.name, p.status_replicas
            ));
        }
    }
    Ok(())
}

/// An aborted scale-down leaves every pool's replicas and drain timeout as the scenario began.
fn data_plane_scaled_back(w: &World) -> Result<(), String> {
    let start = crate::scenario::build(&w.scenario, w.seed)?;
    match pool_scales(&start) == pool_scales(w) {
        true => Ok(()),
        false => Err(format!("aborted, but the pools are {:?}, not as before {:?}", pool_scales(w), pool_scales(&start))),
    }
}

/// An autoscaling pool is never given replicas (the API would refuse; the run must not try).
fn autoscaling_pool_untouched(w: &World) -> Result<(), String> {
    let touched = w.node_pool_scales("clusters", "example").into_iter().find(|p| p.autoscaling.is_some() && p.replicas.is_some());
    match touched {
        None => Ok(()),
        Some(p) => Err(format!("NodePool {} autoscales and was given replicas {:?}", p.name, p.replicas)),
    }
}

/// A pause someone else set (the OADP backup of `hosted-paused-by-other`) is never cleared.
fn foreign_pause_kept(w: &World) -> Result<(), String> {
    if w.scenario != "hosted-paused-by-other" {
        return Ok(());
    }
    let hc = hosted_example(w)?;
    match (hc.cluster.paused_until.as_deref(), hc.cluster.paused_by.as_deref()) {
        (Some("true"), Some(crate::scenario::OADP_PAUSED_BY)) => Ok(()),
        other => Err(format!("the OADP backup's pause of clusters/example was changed to {other:?}")),
    }
}

pub fn row(procedure: &str) -> Option<ProcedureRow> {
    rows().into_iter().find(|r| r.procedure == procedure)
}

/// The procedures of `drctl_workflows::registry()`, as they are.
pub fn registry_factory(procedure: &str) -> Option<Factory> {
    let reg = drctl_workflows::registry();
    let p = reg.get(procedure)?.clone();
    Some(Arc::new(move |_| p.clone()))
}

impl ProcedureRow {
    /// The scenario (and its parameters) seed `seed` runs on.
    pub fn scenario_for(&self, seed: u64) -> ScenarioChoice {
        self.scenarios[self.scenario_index(seed)]
    }

    /// Which of the row's scenario choices seed `seed` runs (two may share a scenario and
    /// differ by their parameters).
    pub fn scenario_index(&self, seed: u64) -> usize {
        let total: u64 = self.scenarios.iter().map(|s| s.weight).sum();
        let mut pick = mix(seed, b"scenario") % total.max(1);
        for (i, s) in self.scenarios.iter().enumerate() {
            if pick < s.weight {
                return i;
            }
            pick -= s.weight;
        }
        0
    }

    fn context(&self, world: &World, catalog: &[(&'static str, &'static [&'static str])]) -> ScheduleContext {
        ScheduleContext {
            hosts: world.control_plane_hosts().map(|h| h.name.clone()).collect(),
            gates: self.gates.iter().map(|g| g.to_string()).collect(),
            states: catalog.iter().map(|(s, _)| s.to_string()).collect(),
            horizon: self.horizon,
            ssh_phase: self.ssh_phase,
            max_step: self.typical_steps,
            object_store: drctl_workflows::catalog::row(self.procedure)
                .is_some_and(|r| r.capabilities.contains(&drctl_workflows::catalog::Capability::ObjectStore)),
        }
    }

    /// The fault schedule seed `seed` stands for (see [`FaultSchedule::generate`]).
    pub fn schedule_for(&self, seed: u64, allowed: &[FaultKind]) -> FaultSchedule {
        let sc = self.scenario_for(seed);
        let world = crate::scenario::build(sc.scenario, seed).expect("table scenarios exist");
        let catalog = registry_factory(self.procedure).map(|f| f(&Sim::new(world.clone())).state_catalog()).unwrap_or(&[]);
        FaultSchedule::generate(&mut DetRng::derive(seed, b"fault-schedule"), allowed, &self.context(&world, catalog))
    }
}

/// `StopStaticPods(master-1:MoveEtcdManifest)` -> `StopStaticPods`.
pub use drctl_runtime::procedure::state_kind as base_state;

// ---------------------------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------------------------

/// A seed and a fault schedule: everything a run depends on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChaosCase {
    pub seed: u64,
    pub schedule: FaultSchedule,
}

/// The properties the harness checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Invariant {
    /// Never remove an etcd member when that leaves fewer than a quorum of healthy voting members.
    QuorumOnMemberRemoval,
    /// Never delete or re-create the machine of the host the restore ran on.
    RecoveryMachineKept,
    /// No destructive effect before the guard passed and the gate was approved.
    DestructiveAfterGuardAndGate,
    /// The quorum guard is on at every Succeeded or Aborted end (and at every halt, where the
    /// row says so).
    QuorumGuardOnAtEnd,
    /// No static pod left moved out on a live host at a Succeeded end.
    NothingLeftStopped,
    /// A success produced what the procedure promises (the row's postcondition).
    Postcondition,
    /// An aborted run left what its undo promises (the row's `undone`).
    UndoneOnAbort,
    /// What a procedure must never change is unchanged, however the run ended (the row's
    /// `always`).
    Untouched,
    /// When the run arrives in a step, the world is as the runbook says it is then (the row's
    /// `arrivals`).
    RunbookStep,
    /// No secret value in the run's record or history.
    NoSecretInStore,
    /// History append-only, seqs contiguous, each transition committed before the next step.
    HistoryAppendOnly,
    /// At most one restore (one new cluster id) per run.
    SingleRestore,
    /// Never two etcd clusters serving writes at once (split brain).
    SingleServingCluster,
    /// The run never fails on a bug of ours (a panic, an invalid state).
    NoBug,
    /// Once faults are over the run ends within its bound.
    Terminates,
    /// A run that succeeded leaves a healthy cluster.
    HealthyOnSuccess,
    /// The same seed and schedule give a byte-identical event log.
    Deterministic,
    /// A crash at any transition ends the same as no crash.
    CrashEquivalent,
}

impl Invariant {
    pub fn name(self) -> &'static str {
        match self {
            Invariant::QuorumOnMemberRemoval => "etcd-quorum-on-member-removal",
            Invariant::RecoveryMachineKept => "recovery-host-machine-kept",
            Invariant::DestructiveAfterGuardAndGate => "destructive-only-after-guard-and-gate",
            Invariant::QuorumGuardOnAtEnd => "quorum-guard-on-at-end",
            Invariant::NothingLeftStopped => "nothing-left-stopped",
            Invariant::Postcondition => "success-postcondition",
            Invariant::UndoneOnAbort => "undone-on-abort",
            Invariant::Untouched => "untouched",
            Invariant::RunbookStep => "runbook-step",
            Invariant::NoSecretInStore => "no-secret-in-store",
            Invariant::HistoryAppendOnly => "history-append-only",
            Invariant::SingleRestore => "single-restore",
            Invariant::SingleServingCluster => "never-two-etcd-clusters-serving",
            Invariant::NoBug => "no-bug",
            Invariant::Terminates => "liveness-terminates",
            Invariant::HealthyOnSuccess => "liveness-healthy-on-success",
            Invariant::Deterministic => "determinism",
            Invariant::CrashEquivalent => "crash-equivalence",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub invariant: Invariant,
    /// Step executions before it was seen.
    pub step: u32,
    pub at: Timestamp,
    pub detail: String,
}

/// What one run did and whether it kept every invariant.
#[derive(Clone, Debug, Serialize)]
pub struct RunObservation {
    pub procedure: String,
    pub seed: u64,
    pub scenario: String,
    pub schedule: FaultSchedule,
    pub status: RunStatus,
    pub outcome: Option<String>,
    pub final_state: String,
    #[serde(skip)]
    pub history: Vec<HistoryEvent>,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    /// Step executions, including those a crash cut short.
    pub steps: u32,
    pub crashes: u32,
    /// The run halted on passing trouble while faults went on and was resumed once they were
    /// over: why it had halted.
    pub resumed_after: Option<String>,
    pub faults_injected: u32,
    pub checks: u64,
    pub violation: Option<Violation>,
    /// SHA-256 of the history and the world's log and effects: equal for equal runs.
    pub event_log_hash: String,
    /// SHA-256 of [`settled_summary`] of the world once the run ended and the world settled
    /// (empty unless asked for: crash equivalence and replays compute it).
    pub settled_digest: String,
    #[serde(skip)]
    pub settled: serde_json::Value,
}

/// The world as crash equivalence compares it: what the cluster IS once it settled, without
/// when things happened, generated ids, revisions or CSR names (which a crash legitimately
/// shifts), but with everything a repeated effect would change: how many restores ran, how many
/// etcd clusters exist, which members, hosts, machines, nodes, manifests, data directories,
/// fences, files and backups there are, and each operator's revision count.
pub fn settled_summary(w: &World) -> serde_json::Value {
    use crate::world::Container;
    let cid = w.current_cluster;
    let hosts: Vec<serde_json::Value> = w
        .hosts
        .values()
        .map(|h| {
            serde_json::json!({
                "name": h.name,
                "powered": h.powered,
                "kubelet": h.kubelet_running,
                "cert": h.kubelet_cert_gen.is_some(),
                "serving": h.kubelet_serving,
                "manifests": h.manifests,
                "moved_out": h.moved_manifests,
                "running": h.containers.iter().filter(|(_, c)| **c == Container::Running).map(|(p, _)| *p).collect::<Vec<_>>(),
                "etcd_data": h.etcd_data.map(|d| d.cluster_id == cid && w.etcd[&cid].members.get(&d.member_id) == Some(&h.name)),
                "etcd_data_aside": h.etcd_data_aside.len(),
                "ovn_db_current": h.ovn_db.map(|c| c == cid),
                "markers": h.markers,
                "addresses": h.addresses,
                "files": h.files.keys().collect::<Vec<_>>(),
                "dirs": h.dirs,
            })
        })
        .collect();
    let api = w.api();
    let mut csrs: Vec<String> =
        api.csrs.values().map(|c| format!("{:?} {} {}", c.kind, c.node, if c.approved { "approved" } else { "pending" })).collect();
    csrs.sort();
    serde_json::json!({
        "scenario": w.scenario,
        "restores": w.effects.iter().filter(|e| matches!(e.kind, EffectKind::Restore { .. })).count(),
        "etcd_clusters": w.etcd.len(),
        "restored_from_revision": w.restored_from_revision,
        "members": w.etcd[&cid].members.values().collect::<BTreeSet<_>>(),
        "quorum": w.has_quorum(),
        "api_available": w.api_available(),
        "quorum_guard": api.quorum_guard,
        "hosts": hosts,
        "nodes": api.nodes.keys().collect::<Vec<_>>(),
        "machines": api.machines.values().map(|m| format!("{} {}", m.name, m.phase)).collect::<Vec<_>>(),
        "csrs": csrs,
        "operators": api.operators.iter().map(|(op, o)| format!("{op} revision {} {}", o.latest_revision, w.installer_progress(*op).0)).collect::<Vec<_>>(),
        "ovn_pods": w.ovn_pods.iter().map(|(n, p)| format!("{n} {}", p.phase)).collect::<Vec<_>>(),
        "ovn_master_ips": w.ovn_master_ips,
        "backups": w.backups.iter().map(|(n, b)| serde_json::json!({"name": n, "files": b.files.keys().collect::<Vec<_>>(), "info": b.info})).collect::<Vec<_>>(),
    })
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let (n, m) = (needle.len(), hay.len());
    if n < 2 || m < n {
        return !needle.is_empty() && m >= n && hay.windows(n).any(|w| w == needle);
    }
    let (a, b, z) = (needle[0], needle[1], needle[n - 1]);
    (0..=m - n).any(|i| hay[i] == a && hay[i + 1] == b && hay[i + n - 1] == z && &hay[i..i + n] == needle)
}

struct CrashPlan {
    point: CrashPoint,
    after_effect: bool,
    restart: u64,
    fired: bool,
}

/// Drives one run over a simulated world, in memory, checking invariants as it goes.
struct Driver<'a> {
    row: &'a ProcedureRow,
    /// The engine that ships, on an in-memory store; replaced by a new one at every crash, as a
    /// restarted process would build it.
    engine: Engine<Ports>,
    registry: Arc<Registry<Ports>>,
    store: Arc<MemStore>,
    /// The engine's clock: the world's (a twin run's clock also keeps its servers in step).
    clock: Arc<dyn Clock>,
    sim: Sim,
    ports: Ports,
    /// The run's record as last committed, and its history as observed so far.
    rec: RunRecord,
    history: Vec<HistoryEvent>,
    crashes: Vec<CrashPlan>,
    gate_plan: BTreeMap<String, (u64, bool)>,
    gates_used: u32,
    abort_at: Option<Timestamp>,
    abort_in: Option<String>,
    abort_fired: bool,
    step_index: u32,
    state_counts: HashMap<String, u32>,
    effects_seen: usize,
    /// The restore this run made: (host, machine).
    recovery: Option<(String, String)>,
    secrets: Vec<Vec<u8>>,
    checks: u64,
    crashes_fired: u32,
    violation: Option<Violation>,
}

impl<'a> Driver<'a> {
    fn fail(&mut self, invariant: Invariant, detail: String) {
        if self.violation.is_none() {
            let at = self.sim.now();
            self.violation = Some(Violation { invariant, step: self.step_index, at, detail });
        }
    }

    fn check(&mut self, ok: bool, invariant: Invariant, detail: impl FnOnce() -> String) {
        self.checks += 1;
        if !ok {
            let d = detail();
            self.fail(invariant, d);
        }
    }

    /// After the engine acted: what it committed is a failure of ours if it failed; otherwise
    /// look at what it committed.
    fn after<T>(&mut self, what: &str, r: Result<T, EngineError>) {
        match r {
            Ok(_) => self.observe(),
            Err(e) => self.fail(Invariant::NoBug, format!("the engine failed to {what}: {e}")),
        }
    }

    /// Read what the engine committed since the last look and check the history and the record.
    fn observe(&mut self) {
        let new = match self.store.get_run(&self.rec.id) {
            Ok(Some(r)) => r,
            other => return self.fail(Invariant::NoBug, format!("run {} cannot be read back from the store: {other:?}", self.rec.id)),
        };
        let events = self.store.history_since(&self.rec.id, self.history.len());
        let mut expect = self.history.last().map_or(0, |e| e.seq + 1);
        let mut last_at = self.history.last().map_or(Timestamp(0), |e| e.at);
        for e in &events {
            let (seq, at) = (e.seq, e.at);
            self.check(seq == expect && at >= last_at, Invariant::HistoryAppendOnly, || {
                format!("event {seq} at {at} appended after event {} at {last_at}", expect.wrapping_sub(1))
            });
            expect = seq + 1;
            last_at = at;
        }
        let next_seq = new.next_seq;
        self.check(next_seq == expect, Invariant::HistoryAppendOnly, || {
            format!("record's next_seq {next_seq} but the history ends at {}", expect.wrapping_sub(1))
        });
        if let Some(t) = events.iter().rev().find(|e| e.outcome == Outcome::Transition) {
            let (to, name) = (t.to.clone(), new.state_name.clone());
            self.check(to == name, Invariant::HistoryAppendOnly, || {
                format!("the last transition went to {to} but the record is in {name}")
            });
        }
        // A halt leaves the run for a person, maybe for hours: where the row says so, the
        // quorum guard must be on by then (checked at each halt, a resume may hide it later).
        if self.row.guard_on_when_halted && new.status == RunStatus::Halted && self.rec.status != RunStatus::Halted {
            let guard = self.sim.read(|w| w.api().quorum_guard);
            let state = new.state_name.clone();
            self.check(guard, Invariant::QuorumGuardOnAtEnd, || format!("the run halted in {state} with the etcd quorum guard off"));
        }
        // No secret in what the store would hold. rmp-serde writes strings and byte strings
        // as they are, so scanning the record's and the events' fields is scanning the bytes.
        if !self.secrets.is_empty() {
            // Params never change and the state only with a transition (or an abort's undo).
            let mut fields: Vec<&[u8]> = vec![new.state_name.as_bytes()];
            if self.history.is_empty() {
                fields.push(&new.params);
            }
            if self.history.is_empty()
                || new.state_name != self.rec.state_name
                || new.state.len() != self.rec.state.len()
                || new.state != self.rec.state
            {
                fields.push(&new.state);
            }
            fields.extend(new.outcome.iter().map(|o| o.as_bytes()));
            fields.extend(new.wait.iter().map(|w| w.waiting_for.as_bytes()));
            fields.extend(new.retry.iter().map(|r| r.last_error.as_bytes()));
            if let Some(g) = &new.pending_gate {
                fields.push(g.prompt.as_bytes());
                fields.extend(g.evidence.iter().map(|e| e.as_bytes()));
            }
            for (k, d) in &new.gates {
                fields.extend([k.as_bytes(), d.by.as_bytes()]);
                fields.extend(d.comment.iter().map(|c| c.as_bytes()));
            }
            for (k, v) in &new.labels {
                fields.extend([k.as_bytes(), v.as_bytes()]);
            }
            for e in &events {
                fields.extend([e.from.as_bytes(), e.to.as_bytes()]);
                fields.extend(e.detail.iter().map(|d| d.as_bytes()));
            }
            let leaked = self.secrets.iter().any(|s| fields.iter().any(|f| contains(f, s)));
            self.check(!leaked, Invariant::NoSecretInStore, || {
                "a secret value (the etcd encryption key, a BMC password) is in the run's record or history".to_string()
            });
        }
        for e in events.iter().filter(|e| e.outcome == Outcome::Transition) {
            if let Some((state, holds)) = self.row.arrivals.iter().find(|(s, _)| *s == base_state(&e.to)) {
                let r = self.sim.read(*holds);
                self.check(r.is_ok(), Invariant::RunbookStep, || format!("arrived in {state}: {}", r.err().unwrap_or_default()));
            }
        }
        self.rec = new;
        self.history.extend(events);
    }

    /// Check the effects the world recorded since the last look.
    fn check_effects(&mut self) {
        let effects: Vec<_> = self.sim.read(|w| w.effects[self.effects_seen..].to_vec());
        self.effects_seen += effects.len();
        for e in effects {
            if e.kind.destructive() {
                match self.row.guard_state {
                    None => self.check(false, Invariant::DestructiveAfterGuardAndGate, || {
                        format!("{} never destroys anything, but {:?} on {} at {}", self.row.procedure, e.kind, e.target, e.at)
                    }),
                    Some(guard) => {
                        let passed =
                            self.history.iter().find(|h| h.outcome == Outcome::Transition && base_state(&h.from) == guard).map(|h| h.at);
                        let approved: Vec<Option<Timestamp>> = self
                            .row
                            .gates
                            .iter()
                            .filter(|g| !self.row.later_gates.contains(g))
                            .map(|g| self.rec.gates.get(*g).filter(|d| d.decision == Decision::Approved).map(|d| d.at))
                            .collect();
                        let ok = passed.is_some_and(|t| t <= e.at) && approved.iter().all(|a| a.is_some_and(|t| t <= e.at));
                        self.check(ok, Invariant::DestructiveAfterGuardAndGate, || {
                            format!(
                                "{:?} on {} at {} (guard {guard} passed: {}; gates approved: {})",
                                e.kind,
                                e.target,
                                e.at,
                                passed.map_or("no".into(), |t| t.to_string()),
                                approved.iter().map(|a| a.map_or("no".into(), |t| t.to_string())).collect::<Vec<_>>().join(", ")
                            )
                        });
                    }
                }
            }
            match &e.kind {
                EffectKind::MemberRemoved { members_after, healthy_after } => {
                    let (m, h) = (*members_after, *healthy_after);
                    self.check(h > m / 2, Invariant::QuorumOnMemberRemoval, || {
                        format!(
                            "etcd member {} removed at {}, leaving {h} healthy of {m} members (a quorum is {})",
                            e.target,
                            e.at,
                            m / 2 + 1
                        )
                    });
                }
                EffectKind::Restore { machine, .. } => {
                    let first = self.recovery.is_none();
                    let target = e.target.clone();
                    self.check(first, Invariant::SingleRestore, || {
                        format!("a second restore ran on {target} at {}: a second new cluster id", e.at)
                    });
                    self.recovery.get_or_insert((e.target.clone(), machine.clone()));
                }
                EffectKind::MachineDeleted { node } => {
                    if let Some((host, machine)) = self.recovery.clone() {
                        let hit = e.target == machine || node.as_deref() == Some(host.as_str());
                        self.check(!hit, Invariant::RecoveryMachineKept, || {
                            format!("machine {} of the recovery host {host} deleted at {}", e.target, e.at)
                        });
                    }
                }
                EffectKind::SplitBrain { clusters } => {
                    self.check(false, Invariant::SingleServingCluster, || {
                        let ids: Vec<String> = clusters.iter().map(|c| format!("{c:x}")).collect();
                        format!("etcd clusters {} all served writes at {}", ids.join(" and "), e.at)
                    });
                }
                EffectKind::MachineCreated => {
                    if let Some((host, machine)) = self.recovery.clone() {
                        self.check(e.target != machine, Invariant::RecoveryMachineKept, || {
                            format!("machine {machine} of the recovery host {host} re-created at {}", e.at)
                        });
                    }
                }
                _ => {}
            }
        }
    }

    fn sleep_until(&mut self, t: Timestamp) {
        let t = match self.abort_at {
            Some(a) if !self.abort_fired && a < t => a,
            _ => t,
        };
        // Both clocks a run can have here (the world's, the twin's) are done when called.
        let mut done = self.clock.sleep_until(t);
        let ready = done.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
        debug_assert!(ready.is_ready(), "a simulated clock's sleep completes at once");
    }

    /// The runner process dies and a new one resumes the run from its last commit.
    fn crash_and_restart(&mut self, restart: u64) {
        self.crashes_fired += 1;
        let t = self.sim.now().plus(Duration::from_millis(restart));
        self.sim.advance_to(t);
        self.engine = Engine::new(self.store.clone(), self.registry.clone(), RetryPolicy::default());
        let r = self.engine.attach(&self.rec.id, self.clock.as_ref());
        self.after("resume after a crash", r);
    }

    fn crash_here(&mut self, idx: u32, state: &str, nth: u32) -> Option<(bool, u64)> {
        let c = self.crashes.iter_mut().find(|c| {
            !c.fired
                && match &c.point {
                    CrashPoint::Step(n) => *n == idx,
                    CrashPoint::State { name, nth: k } => name == state && *k == nth,
                }
        })?;
        c.fired = true;
        Some((c.after_effect, c.restart))
    }

    /// Until the run is terminal (or an invariant broke, or the step bound is reached). Every
    /// decision is the engine's: this loop only picks when a fault, a person or the clock acts.
    fn drive(&mut self) {
        loop {
            if self.violation.is_some() || self.rec.status.is_terminal() {
                return;
            }
            if self.step_index >= self.row.max_steps {
                let (n, s) = (self.row.max_steps, self.rec.state_name.clone());
                self.fail(Invariant::Terminates, format!("not terminal after {n} step executions (in {s})"));
                return;
            }
            let now = self.sim.now();
            let abort_due = self.abort_at.is_some_and(|at| now >= at)
                || self.abort_in.as_deref().is_some_and(|s| s == base_state(&self.rec.state_name));
            if abort_due && !self.abort_fired {
                self.abort_fired = true;
                let r = self.engine.abort(&self.rec.id, APPROVER, self.clock.as_ref());
                self.after("request an abort", r);
                continue;
            }
            match due(&self.rec, now) {
                Due::Stop => return,
                Due::AwaitChild(_) => self.child_tick(),
                Due::ActOnAbort => {
                    let r = self.engine.act_on_abort(&self.rec.id, self.clock.as_ref());
                    self.after("act on the abort", r);
                }
                Due::SleepUntil(t) => self.sleep_until(t),
                Due::AwaitDecision => self.decide_gate(now),
                Due::Step => self.step(),
            }
        }
    }

    /// One action of the child run the run waits for, through the engine (which descends into
    /// it): faults and crashes are scheduled on the run's own steps; a child's gates are
    /// approved as they come.
    fn child_tick(&mut self) {
        self.step_index += 1;
        let r = self.engine.tick(&self.rec.id, &self.ports, self.clock.as_ref());
        self.check_effects();
        match r {
            Ok(Tick::SleepUntil(t)) => self.sleep_until(t),
            Ok(Tick::AwaitDecision(child)) => {
                let gate = child.pending_gate.as_ref().map(|g| g.gate.clone());
                let r = self.engine.approve(&child.id, gate.as_deref(), APPROVER, None, self.clock.as_ref());
                self.after("approve a child's gate", r);
            }
            other => self.after("step a child run", other),
        }
    }

    /// A person answers the pending gate when the schedule says (approve unless told to reject).
    fn decide_gate(&mut self, now: Timestamp) {
        let Some(g) = self.rec.pending_gate.clone() else {
            return self.fail(Invariant::NoBug, "the engine awaits a decision with no gate pending".into());
        };
        let (after, reject) = self.gate_plan.get(&g.gate).copied().unwrap_or((0, false));
        let t = g.since.plus(Duration::from_millis(after));
        if t > now {
            return self.sleep_until(t);
        }
        self.gates_used += 1;
        let (id, gate) = (self.rec.id.clone(), Some(g.gate.as_str()));
        let r = if reject {
            self.engine.reject(&id, gate, APPROVER, None, self.clock.as_ref())
        } else {
            self.engine.approve(&id, gate, APPROVER, None, self.clock.as_ref())
        };
        self.after("record a gate decision", r);
    }

    /// One step through the engine, unless the schedule crashes the runner here: before the
    /// step, or after its effects and before their commit.
    fn step(&mut self) {
        let idx = self.step_index;
        self.step_index += 1;
        let state = base_state(&self.rec.state_name).to_string();
        let nth = {
            let n = self.state_counts.entry(state.clone()).or_insert(0);
            *n += 1;
            *n
        };
        if let Some((after_effect, restart)) = self.crash_here(idx, &state, nth) {
            if after_effect {
                let _lost = self.engine.perform_step(&self.rec, &self.ports, self.clock.as_ref());
                self.check_effects();
            }
            return self.crash_and_restart(restart);
        }
        let result = self.engine.perform_step(&self.rec, &self.ports, self.clock.as_ref());
        self.check_effects();
        let r = self.engine.commit_step(&self.rec, result, self.clock.as_ref());
        self.after("commit a step", r);
    }
}

thread_local! {
    /// The last scenario world built on this thread: a seed is run again and again (the
    /// determinism re-run, every crash point, shrinking), and copying a world is cheaper than
    /// building it.
    static LAST_WORLD: std::cell::RefCell<Option<(&'static str, u64, World)>> = const { std::cell::RefCell::new(None) };
}

fn scenario_world(scenario: &'static str, seed: u64) -> World {
    LAST_WORLD.with(|c| {
        let mut c = c.borrow_mut();
        match &*c {
            Some((s, k, w)) if *s == scenario && *k == seed => w.clone(),
            _ => {
                let w = crate::scenario::build(scenario, seed).expect("table scenarios exist");
                *c = Some((scenario, seed, w.clone()));
                w
            }
        }
    })
}

/// Run one case and check every invariant (not determinism: see [`check_case`]). The settled
/// summary is left out (see [`run_case_in`]).
pub fn run_case(row: &ProcedureRow, factory: &Factory, case: &ChaosCase) -> RunObservation {
    run_case_in(row, factory, case, false).0
}

/// [`run_case`], with the settled summary and digest if `summarize`, also giving the world as
/// the run left it (settled), to look into.
pub fn run_case_in(row: &ProcedureRow, factory: &Factory, case: &ChaosCase, summarize: bool) -> (RunObservation, Sim) {
    let sim = Sim::new(case_world(row, case));
    let ports = sim.ports();
    let obs = run_case_through(row, factory, case, summarize, &sim, ports, Arc::new(sim.clock()));
    (obs, sim)
}

/// The world a case starts from: its scenario's, with the case's faults scheduled.
pub fn case_world(row: &ProcedureRow, case: &ChaosCase) -> World {
    let mut world = scenario_world(row.scenario_for(case.seed).scenario, case.seed);
    case.schedule.apply_to(&mut world);
    world
}

/// [`run_case_in`] on a world already made from [`case_world`], with the procedure talking
/// through `ports`: the simulated ports, or the real adapters against the world served over
/// the real protocols (`drctl-twin`), with `clock` (the world's own, or one that also keeps the
/// twin's servers in step with it).
pub fn run_case_through(
    row: &ProcedureRow,
    factory: &Factory,
    case: &ChaosCase,
    summarize: bool,
    sim: &Sim,
    ports: Ports,
    clock: Arc<dyn Clock>,
) -> RunObservation {
    let sc = row.scenario_for(case.seed);
    let started_at = sim.now();
    let mut d = Driver::start(row, factory, &sc, case, sim, ports, clock);
    d.drive();
    let faults_over = started_at.plus(Duration::from_millis(case.schedule.windows_end()));
    let resumed_after = d.resume_after_passing_trouble(faults_over);
    let ended_at = sim.now();
    d.check_end();
    // Liveness: once the faults are over (and the last gate decided) the run ends within its bound.
    let decided = d.history.iter().filter(|e| matches!(e.outcome, Outcome::Approved | Outcome::Rejected)).map(|e| e.at).max();
    let quiet_from = faults_over.max(decided.unwrap_or(started_at));
    if d.violation.is_none() {
        let limit = quiet_from.plus(row.liveness_bound);
        d.check(ended_at <= limit, Invariant::Terminates, || format!("the run ended at {ended_at}, after its bound {limit}"));
    }
    d.check_healthy_on_success(ended_at, faults_over, quiet_from);
    let (event_log_hash, settled) = sim.read(|w| {
        let mut h = Sha256::new();
        for e in &d.history {
            h.update(rmp_serde::to_vec(e).expect("event encodes"));
        }
        for l in &w.log {
            h.update(l.as_bytes());
            h.update(b"\n");
        }
        h.update(rmp_serde::to_vec(&w.effects).expect("effects encode"));
        (hex::encode(h.finalize()), if summarize { settled_summary(w) } else { serde_json::Value::Null })
    });
    let windows_in_run = case
        .schedule
        .faults
        .iter()
        .filter_map(Fault::window)
        .filter(|(at, _)| started_at.plus(Duration::from_millis(*at)) <= ended_at)
        .count() as u32;
    let obs = RunObservation {
        procedure: d.rec.procedure.clone(),
        seed: case.seed,
        scenario: sc.scenario.to_string(),
        schedule: case.schedule.clone(),
        status: d.rec.status,
        outcome: d.rec.outcome.clone(),
        final_state: d.rec.state_name.clone(),
        started_at,
        ended_at,
        steps: d.step_index,
        crashes: d.crashes_fired,
        resumed_after,
        faults_injected: windows_in_run + d.crashes_fired + d.gates_used + d.abort_fired as u32,
        checks: d.checks,
        violation: d.violation.take(),
        event_log_hash,
        settled_digest: if summarize { sha(settled.to_string().as_bytes()) } else { String::new() },
        settled,
        history: std::mem::take(&mut d.history),
    };
    obs
}

/// What a schedule asks of the people and the runner process (the world's own faults are
/// applied to the world).
struct PeoplePlan {
    crashes: Vec<CrashPlan>,
    gate_plan: BTreeMap<String, (u64, bool)>,
    abort_at: Option<Timestamp>,
    abort_in: Option<String>,
}

impl PeoplePlan {
    fn of(schedule: &FaultSchedule, started_at: Timestamp) -> PeoplePlan {
        let mut plan = PeoplePlan { crashes: vec![], gate_plan: BTreeMap::new(), abort_at: None, abort_in: None };
        for f in &schedule.faults {
            match f {
                Fault::Crash { point, after_effect, restart } => {
                    plan.crashes.push(CrashPlan { point: point.clone(), after_effect: *after_effect, restart: *restart, fired: false })
                }
                Fault::Gate { gate, after, reject } => {
                    plan.gate_plan.entry(gate.clone()).or_insert((*after, *reject));
                }
                Fault::Abort { at } => {
                    let t = started_at.plus(Duration::from_millis(*at));
                    plan.abort_at = Some(plan.abort_at.map_or(t, |a| a.min(t)));
                }
                Fault::AbortIn { state } => {
                    plan.abort_in.get_or_insert_with(|| state.clone());
                }
                _ => {}
            }
        }
        plan
    }
}

impl<'a> Driver<'a> {
    /// Create the run through the engine on a fresh in-memory store, as `drctl run` would.
    fn start(
        row: &'a ProcedureRow,
        factory: &Factory,
        sc: &ScenarioChoice,
        case: &ChaosCase,
        sim: &Sim,
        ports: Ports,
        clock: Arc<dyn Clock>,
    ) -> Driver<'a> {
        let (started_at, mut secrets, effects_seen) =
            sim.read(|w| (w.now, w.secrets.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>(), w.effects.len()));
        // A bare metal world's BMC password lives in the credentials file the run is given.
        if sim.read(|w| !w.servers.is_empty()) {
            secrets.push(crate::scenario::SIM_BMC_PASSWORD.as_bytes().to_vec());
        }
        let people = PeoplePlan::of(&case.schedule, started_at);
        let pre: Vec<String> = row.gates.iter().filter(|g| !people.gate_plan.contains_key(**g)).map(|g| g.to_string()).collect();
        // The procedure under test, possibly a deliberately broken variant under its own name.
        let procedure = factory(sim);
        let name = procedure.name().to_string();
        // The procedure under test, and the catalog's others for the child runs it starts.
        let mut registry = Registry::default();
        for other in drctl_workflows::registry().iter().filter(|p| p.name() != name) {
            registry.insert(other.clone());
        }
        registry.insert(procedure);
        let registry = Arc::new(registry);
        let store = Arc::new(MemStore::new());
        let engine = Engine::new(store.clone(), registry.clone(), RetryPolicy::default());
        let request = NewRun {
            procedure: name,
            params: sim.read(|w| (sc.params)(w)),
            seed: case.seed,
            deadline: RUN_DEADLINE,
            pre_approve: pre,
            approver: APPROVER.into(),
            labels: BTreeMap::new(),
        };
        let rec = match engine.create_run(request, clock.as_ref()) {
            Ok(r) => r,
            Err(e) => panic!("the table's parameters for {} are invalid: {e}", row.procedure),
        };
        let mut d = Driver {
            row,
            engine,
            registry,
            store,
            clock,
            ports,
            sim: sim.clone(),
            rec,
            history: vec![],
            crashes: people.crashes,
            gate_plan: people.gate_plan,
            gates_used: 0,
            abort_at: people.abort_at,
            abort_in: people.abort_in,
            abort_fired: false,
            step_index: 0,
            state_counts: HashMap::new(),
            effects_seen,
            recovery: None,
            secrets,
            checks: 0,
            crashes_fired: 0,
            violation: None,
        };
        d.observe();
        d
    }

    /// Liveness: a run that halted on passing trouble (a wait or the retry deadline ran out
    /// while faults went on) is resumed by a person once the faults are over, as `drctl resume`
    /// would, in a new process; it must then get to its end. Returns why it had halted.
    fn resume_after_passing_trouble(&mut self, faults_over: Timestamp) -> Option<String> {
        let passing =
            |d: &Driver| d.violation.is_none() && d.rec.status == RunStatus::Halted && halted_on_passing_trouble(d.rec.outcome.as_deref());
        if !passing(self) {
            return None;
        }
        let why = self.rec.outcome.as_deref().and_then(|o| o.lines().next()).map(str::to_string);
        self.sim.advance_to(faults_over);
        self.engine = Engine::new(self.store.clone(), self.registry.clone(), RetryPolicy::default());
        let id = self.rec.id.clone();
        let r = self.engine.attach(&id, self.clock.as_ref());
        self.after("resume the halted run", r);
        self.drive();
        if passing(self) {
            let o = self.rec.outcome.clone().unwrap_or_default();
            self.fail(Invariant::Terminates, format!("resumed after the faults were over, it halted again: {o}"));
        }
        why
    }

    /// What must hold at a terminal state.
    fn check_end(&mut self) {
        if self.violation.is_some() {
            return;
        }
        let (row, sim) = (self.row, self.sim.clone());
        let status = self.rec.status;
        match status {
            RunStatus::Failed => {
                let o = self.rec.outcome.clone().unwrap_or_default();
                self.fail(Invariant::NoBug, o);
            }
            RunStatus::Succeeded | RunStatus::Aborted => {
                let guard = sim.read(|w| w.api().quorum_guard);
                self.check(guard, Invariant::QuorumGuardOnAtEnd, || {
                    format!("the run ended {} with the etcd quorum guard off", status.as_str())
                });
                if status == RunStatus::Succeeded {
                    let stopped: Vec<String> = sim.read(|w| {
                        w.hosts
                            .values()
                            // Moved out and not laid down again (an installer writes a new
                            // revision's manifest; the copy in /tmp is then only a leftover).
                            .filter(|h| h.powered && !h.moved_manifests.is_subset(&h.manifests))
                            .map(|h| format!("{}: {:?}", h.name, h.moved_manifests.difference(&h.manifests).collect::<Vec<_>>()))
                            .collect()
                    });
                    self.check(stopped.is_empty(), Invariant::NothingLeftStopped, || {
                        format!("static pods left moved out: {}", stopped.join("; "))
                    });
                    self.check_world(row.postcondition, Invariant::Postcondition);
                }
                if status == RunStatus::Aborted {
                    self.check_world(row.undone, Invariant::UndoneOnAbort);
                }
            }
            _ => {}
        }
        self.check_world(row.always, Invariant::Untouched);
        let children = self.rec.children.len();
        self.check(children <= row.max_children, Invariant::Untouched, || {
            format!("the run started {children} child runs (at most {})", row.max_children)
        });
    }

    fn check_world(&mut self, condition: Option<Postcondition>, invariant: Invariant) {
        if let Some(condition) = condition {
            let r = self.sim.read(condition);
            self.check(r.is_ok(), invariant, || r.err().unwrap_or_default());
        }
    }

    /// A success leaves a healthy cluster: right away if no fault is active then, and in any
    /// case once the faults are over and the world settled (the world is advanced to then).
    fn check_healthy_on_success(&mut self, ended_at: Timestamp, faults_over: Timestamp, quiet_from: Timestamp) {
        let succeeded = self.rec.status == RunStatus::Succeeded;
        let quiet_since_success = ended_at.since(faults_over) >= Duration::from_millis(QUIET_MS);
        let sim = self.sim.clone();
        if self.violation.is_none() && succeeded && self.row.healthy_at_success && quiet_since_success {
            let st = sim.read(SimStatus::health);
            // The network operator re-renders the ovnkube-master daemonset minutes after the
            // control-plane nodes change, on its own: not something the run waits for.
            let rerender_due = sim.read(|w| w.cno_sync_at.is_some());
            let problems: Vec<&String> = st.problems.iter().filter(|p| !(rerender_due && p.starts_with("OVN-Kubernetes"))).collect();
            self.check(problems.is_empty(), Invariant::HealthyOnSuccess, || {
                format!("succeeded with the cluster unhealthy: {}", problems.iter().map(|p| p.as_str()).collect::<Vec<_>>().join("; "))
            });
        }
        sim.advance_to(ended_at.max(quiet_from).plus(Duration::from_millis(SETTLE_MS)));
        // A re-render the network operator scheduled while operations were slowed may be due
        // later still: settling includes it.
        if let Some(at) = sim.read(|w| w.cno_sync_at) {
            sim.advance_to(at.plus(Duration::from_secs(1)));
        }
        if self.violation.is_none() && succeeded && !self.row.down_at_success {
            let st: SimStatus = sim.read(SimStatus::health);
            self.check(st.healthy, Invariant::HealthyOnSuccess, || {
                format!("succeeded, but the cluster is unhealthy once the faults are over and it settled: {}", st.problems.join("; "))
            });
        }
    }
}

/// [`run_case`], then (with `determinism`) the same case again, in process: the event logs
/// must be byte-identical.
pub fn check_case(row: &ProcedureRow, factory: &Factory, case: &ChaosCase, determinism: bool) -> (RunObservation, u32) {
    let mut obs = run_case(row, factory, case);
    if !determinism {
        return (obs, 1);
    }
    let again = run_case(row, factory, case);
    obs.checks += 1;
    if obs.violation.is_none() && again.event_log_hash != obs.event_log_hash {
        let first = obs.history.iter().zip(&again.history).position(|(a, b)| a != b);
        obs.violation = Some(Violation {
            invariant: Invariant::Deterministic,
            step: obs.steps,
            at: obs.ended_at,
            detail: format!(
                "same seed and schedule, different event logs: {} vs {} (histories first differ at event {first:?})",
                obs.event_log_hash, again.event_log_hash
            ),
        });
    }
    (obs, 2)
}

// ---------------------------------------------------------------------------------------------
// Shrinking with proptest
// ---------------------------------------------------------------------------------------------

/// A proptest value tree over fault schedules that shrinks by [`FaultSchedule::simplifications`]:
/// drop a fault, then make one smaller; keep a simplification while the case still fails.
#[derive(Clone, Debug)]
pub struct ScheduleTree {
    seed: u64,
    accepted: FaultSchedule,
    candidates: Vec<FaultSchedule>,
    next: usize,
    current: FaultSchedule,
}

impl ScheduleTree {
    pub fn new(case: ChaosCase) -> ScheduleTree {
        ScheduleTree { seed: case.seed, accepted: case.schedule.clone(), candidates: vec![], next: 0, current: case.schedule }
    }

    fn advance(&mut self) -> bool {
        match self.candidates.get(self.next) {
            Some(c) => {
                self.current = c.clone();
                self.next += 1;
                true
            }
            None => {
                self.current = self.accepted.clone();
                false
            }
        }
    }
}

impl ValueTree for ScheduleTree {
    type Value = ChaosCase;
    fn current(&self) -> ChaosCase {
        ChaosCase { seed: self.seed, schedule: self.current.clone() }
    }
    fn simplify(&mut self) -> bool {
        // The current case failed: it is the new baseline.
        self.accepted = self.current.clone();
        self.candidates = self.accepted.simplifications();
        self.next = 0;
        self.advance()
    }
    fn complicate(&mut self) -> bool {
        // The current case passed: back to the baseline, on to its next simplification.
        self.current = self.accepted.clone();
        self.advance()
    }
}

/// Generates cases for one procedure row: a seed from `seeds` and a schedule drawn for it.
#[derive(Clone)]
pub struct CaseStrategy {
    pub row: ProcedureRow,
    pub seeds: Range<u64>,
    pub allowed: Vec<FaultKind>,
}

impl fmt::Debug for CaseStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaseStrategy({}, {:?}, {:?})", self.row.procedure, self.seeds, self.allowed)
    }
}

impl Strategy for CaseStrategy {
    type Tree = ScheduleTree;
    type Value = ChaosCase;
    fn new_tree(&self, runner: &mut TestRunner) -> proptest::strategy::NewTree<Self> {
        use proptest::prelude::Rng;
        let r = runner.rng().next_u64();
        let span = self.seeds.end.saturating_sub(self.seeds.start).max(1);
        let seed = self.seeds.start + r % span;
        let sc = self.row.scenario_for(seed);
        let world = crate::scenario::build(sc.scenario, seed).expect("table scenarios exist");
        let catalog = registry_factory(self.row.procedure).map(|f| f(&Sim::new(world.clone())).state_catalog()).unwrap_or(&[]);
        let schedule =
            FaultSchedule::generate(&mut DetRng::new(runner.rng().next_u64()), &self.allowed, &self.row.context(&world, catalog));
        Ok(ScheduleTree::new(ChaosCase { seed, schedule }))
    }
}

fn runner(max_shrink_iters: u32, cases: u32, rng_seed: u64) -> TestRunner {
    let config = Config { cases, max_shrink_iters, failure_persistence: None, ..Config::default() };
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&rng_seed.to_le_bytes());
    TestRunner::new_with_rng(config, TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &seed))
}

/// Shrink a failing case to a minimal schedule that still breaks the same invariant, with
/// proptest's runner. Returns the minimal case and what it did.
pub fn shrink(
    row: &ProcedureRow,
    factory: &Factory,
    case: &ChaosCase,
    invariant: Invariant,
    determinism: bool,
) -> (ChaosCase, RunObservation) {
    let tries = Mutex::new(0u32);
    let test = |c: ChaosCase| -> Result<(), TestCaseError> {
        *tries.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        let (obs, _) = check_case(row, factory, &c, determinism && invariant == Invariant::Deterministic);
        match obs.violation {
            Some(v) if v.invariant == invariant => Err(TestCaseError::fail(v.detail)),
            _ => Ok(()),
        }
    };
    let minimal = match runner(2_000, 1, case.seed).run_one(ScheduleTree::new(case.clone()), test) {
        Err(TestError::Fail(_, minimal)) => minimal,
        // It did not fail again (cannot happen for a deterministic run): keep the original.
        _ => case.clone(),
    };
    let (obs, _) = check_case(row, factory, &minimal, determinism && invariant == Invariant::Deterministic);
    (minimal, obs)
}

// ---------------------------------------------------------------------------------------------
// Sweeps
// ---------------------------------------------------------------------------------------------

/// What `drctl sim chaos` asks for.
#[derive(Clone)]
pub struct SweepOptions {
    pub procedure: String,
    pub seeds: Range<u64>,
    /// Replay: every seed runs this schedule instead of the one it derives.
    pub faults: Option<FaultSchedule>,
    /// Fault kinds a derived schedule may contain (default: all).
    pub allowed: Vec<FaultKind>,
    /// Check crash equivalence at every transition for this many seeds (from the start of the
    /// range, covering the row's scenarios first). Default 2.
    pub crash_seeds: u64,
    /// Run each seed twice and compare the event logs.
    pub determinism: bool,
    /// Shrink each failure to a minimal schedule.
    pub shrink: bool,
    /// Worker threads.
    pub threads: usize,
    /// Stop looking after this many failures.
    pub max_failures: usize,
    /// Enforce the sometimes-assertions (only for sweeps of at least
    /// [`MIN_SEEDS_FOR_SOMETIMES`] seeds without a replayed schedule).
    pub sometimes: bool,
    /// Wall-clock stopwatch for simulations per second (the caller's; none: not reported).
    pub stopwatch: Option<Stopwatch>,
}

impl SweepOptions {
    pub fn new(procedure: &str, seeds: Range<u64>) -> SweepOptions {
        SweepOptions {
            procedure: procedure.to_string(),
            seeds,
            faults: None,
            allowed: FaultKind::ALL.to_vec(),
            crash_seeds: 2,
            determinism: true,
            shrink: true,
            threads: 1,
            max_failures: 5,
            sometimes: true,
            stopwatch: None,
        }
    }
}

impl fmt::Debug for SweepOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SweepOptions")
            .field("procedure", &self.procedure)
            .field("seeds", &self.seeds)
            .field("faults", &self.faults.as_ref().map(|s| s.to_string()))
            .field("allowed", &self.allowed)
            .field("crash_seeds", &self.crash_seeds)
            .finish_non_exhaustive()
    }
}

/// One failure, minimal and replayable.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub seed: u64,
    pub scenario: String,
    pub invariant: Invariant,
    pub detail: String,
    /// The minimal schedule (text form).
    pub schedule: String,
    /// The schedule the seed derived, before shrinking.
    pub original_schedule: String,
    pub event_log_hash: String,
    pub status: String,
    pub final_state: String,
    /// The one command that replays it.
    pub replay: String,
}

impl Failure {
    fn from_obs(obs: &RunObservation, original: &FaultSchedule) -> Failure {
        let v = obs.violation.clone().expect("a failure has a violation");
        Failure {
            seed: obs.seed,
            scenario: obs.scenario.clone(),
            invariant: v.invariant,
            detail: v.detail,
            schedule: obs.schedule.to_string(),
            original_schedule: original.to_string(),
            event_log_hash: obs.event_log_hash.clone(),
            status: obs.status.as_str().into(),
            final_state: obs.final_state.clone(),
            replay: replay_command(&obs.procedure, obs.seed, &obs.schedule),
        }
    }
}

/// `drctl sim chaos --procedure P --seeds S..S+1 --faults '...'`
pub fn replay_command(procedure: &str, seed: u64, schedule: &FaultSchedule) -> String {
    format!("drctl sim chaos --procedure {procedure} --seeds {seed}..{} --faults '{schedule}'", seed + 1)
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Coverage {
    /// Times each state (argument stripped) was entered.
    pub states: BTreeMap<String, u64>,
    pub transitions: BTreeMap<String, u64>,
    /// In the procedure's catalog, never reached.
    pub states_never: Vec<String>,
    pub transitions_never: Vec<String>,
    /// Reached but missing from the catalog (the catalog is out of date).
    pub states_unknown: Vec<String>,
    pub transitions_unknown: Vec<String>,
    pub catalog_states: usize,
    pub catalog_transitions: usize,
    /// How runs ended: `succeeded`, `halted: <reason>`, ...
    pub outcomes: BTreeMap<String, u64>,
}

impl Coverage {
    fn add(&mut self, obs: &RunObservation) {
        let mut first = true;
        for e in &obs.history {
            if first && e.outcome == Outcome::Created {
                *self.states.entry(base_state(&e.to).to_string()).or_default() += 1;
                first = false;
            }
            if e.outcome == Outcome::Transition {
                *self.states.entry(base_state(&e.to).to_string()).or_default() += 1;
                *self.transitions.entry(format!("{} -> {}", base_state(&e.from), base_state(&e.to))).or_default() += 1;
            }
        }
        *self.outcomes.entry(outcome_key(obs)).or_default() += 1;
    }

    fn merge(&mut self, o: Coverage) {
        for (k, v) in o.states {
            *self.states.entry(k).or_default() += v;
        }
        for (k, v) in o.transitions {
            *self.transitions.entry(k).or_default() += v;
        }
        for (k, v) in o.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
    }

    fn finish(&mut self, catalog: &[(&'static str, &'static [&'static str])]) {
        let states: BTreeSet<String> = catalog.iter().map(|(s, _)| s.to_string()).collect();
        let transitions: BTreeSet<String> = catalog.iter().flat_map(|(s, to)| to.iter().map(move |t| format!("{s} -> {t}"))).collect();
        self.catalog_states = states.len();
        self.catalog_transitions = transitions.len();
        if catalog.is_empty() {
            return;
        }
        self.states_never = states.iter().filter(|s| !self.states.contains_key(*s)).cloned().collect();
        self.transitions_never = transitions.iter().filter(|t| !self.transitions.contains_key(*t)).cloned().collect();
        self.states_unknown = self.states.keys().filter(|s| !states.contains(*s)).cloned().collect();
        self.transitions_unknown = self.transitions.keys().filter(|t| !transitions.contains(*t)).cloned().collect();
    }
}

/// Halts a person resumes once the trouble is over: a wait bound or the retry deadline ran out,
/// a disk was full.
fn halted_on_passing_trouble(outcome: Option<&str>) -> bool {
    outcome.is_some_and(|o| {
        // A run halted because its child did: judged by the child's reason.
        let o = match o.strip_prefix("child run ") {
            Some(rest) => rest.split_once(" halted: ").map_or(o, |(_, why)| why),
            None => o,
        };
        o.starts_with("timed out after") || o.starts_with("gave up after") || o.to_ascii_lowercase().contains("no space left on device")
    })
}

fn blank_digits(s: &str, max: usize) -> String {
    let line: String = s.lines().next().unwrap_or_default().chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect();
    let mut short: String = line.chars().take(max).collect();
    if short.len() < line.len() {
        short.push('…');
    }
    short
}

/// How a run ended, with digits blanked out of a halt reason so that similar halts group.
fn outcome_key(obs: &RunObservation) -> String {
    let end = outcome_end(obs);
    match &obs.resumed_after {
        Some(r) => format!("{end} (resumed after halting: {})", blank_digits(r, 80)),
        None => end,
    }
}

fn outcome_end(obs: &RunObservation) -> String {
    match (obs.status, &obs.outcome) {
        (RunStatus::Halted, Some(o)) => format!("halted: {}", blank_digits(o, 110)),
        (s, _) => s.as_str().to_string(),
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SometimesResult {
    pub name: String,
    pub runs: u64,
    /// Whether this sweep had to reach it.
    pub required: bool,
}

/// What a sweep found. `Display` prints it for people; `Serialize` for `-o json`.
#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    pub procedure: String,
    pub seeds: Range<u64>,
    pub replayed_schedule: Option<String>,
    pub allowed: Vec<FaultKind>,
    /// Seeds actually run (fewer than the range once `max_failures` were found).
    pub seeds_run: u64,
    /// Simulated runs, each determinism re-run and crash point included.
    pub runs: u64,
    pub faults_injected: u64,
    pub invariant_checks: u64,
    pub crash_points_checked: u64,
    pub crash_seeds: Vec<u64>,
    pub coverage: Coverage,
    pub sometimes: Vec<SometimesResult>,
    pub elapsed_secs: Option<f64>,
    pub simulations_per_sec: Option<f64>,
    pub failures: Vec<Failure>,
    pub passed: bool,
}

#[derive(Default)]
struct Tally {
    seeds: u64,
    runs: u64,
    faults: u64,
    checks: u64,
    coverage: Coverage,
    sometimes: Vec<u64>,
    failures: Vec<(RunObservation, FaultSchedule)>,
}

/// Run a sweep of a procedure of the registry, by the table.
pub fn sweep(opts: &SweepOptions) -> Result<SweepReport, String> {
    let row = row(&opts.procedure).ok_or_else(|| {
        format!(
            "no chaos table row for procedure '{}'; rows: {}",
            opts.procedure,
            rows().iter().map(|r| r.procedure).collect::<Vec<_>>().join(", ")
        )
    })?;
    let factory = registry_factory(&opts.procedure).ok_or_else(|| format!("unknown procedure '{}'", opts.procedure))?;
    if opts.seeds.is_empty() {
        return Err(format!("the seed range {}..{} is empty", opts.seeds.start, opts.seeds.end));
    }
    Ok(sweep_with(opts, &row, &factory))
}

/// [`sweep`] with an explicit row and procedure (tests use this for broken variants).
pub fn sweep_with(opts: &SweepOptions, row: &ProcedureRow, factory: &Factory) -> SweepReport {
    let seeds: Vec<u64> = opts.seeds.clone().collect();
    let mut total = sweep_seeds(opts, row, factory, &seeds);
    total.failures.sort_by_key(|(o, _)| o.seed);
    total.failures.truncate(opts.max_failures.max(1));
    let (crash_points, crash_seeds) = check_crash_equivalence(opts, row, factory, &seeds, &mut total);
    let catalog = factory(&Sim::new(crate::scenario::build(row.scenarios[0].scenario, 0).expect("scenario"))).state_catalog();
    total.coverage.finish(catalog);
    let enforce = opts.sometimes && opts.faults.is_none() && (opts.seeds.end - opts.seeds.start) >= MIN_SEEDS_FOR_SOMETIMES;
    let sometimes: Vec<SometimesResult> = row
        .sometimes
        .iter()
        .zip(&total.sometimes)
        .map(|(s, n)| SometimesResult {
            name: s.name.to_string(),
            runs: *n,
            required: enforce && (s.needs.is_empty() || s.needs.iter().any(|k| opts.allowed.contains(k))),
        })
        .collect();
    let failures = shrink_failures(opts, row, factory, &total.failures);
    let elapsed = opts.stopwatch.as_ref().map(|s| s().as_secs_f64());
    let cov = &total.coverage;
    let passed = failures.is_empty()
        && cov.states_unknown.is_empty()
        && cov.transitions_unknown.is_empty()
        && sometimes.iter().all(|s| !s.required || s.runs > 0);
    SweepReport {
        procedure: opts.procedure.clone(),
        seeds: opts.seeds.clone(),
        replayed_schedule: opts.faults.as_ref().map(|s| s.to_string()),
        allowed: opts.allowed.clone(),
        seeds_run: total.seeds,
        runs: total.runs,
        faults_injected: total.faults,
        invariant_checks: total.checks,
        crash_points_checked: crash_points,
        crash_seeds,
        coverage: total.coverage,
        sometimes,
        elapsed_secs: elapsed,
        simulations_per_sec: elapsed.filter(|e| *e > 0.0).map(|e| total.runs as f64 / e),
        failures,
        passed,
    }
}

impl Tally {
    fn add(&mut self, row: &ProcedureRow, obs: RunObservation, runs: u32, schedule: FaultSchedule) {
        self.seeds += 1;
        self.runs += u64::from(runs);
        self.faults += u64::from(obs.faults_injected);
        self.checks += obs.checks;
        self.coverage.add(&obs);
        self.sometimes.resize(row.sometimes.len(), 0);
        for (i, s) in row.sometimes.iter().enumerate() {
            if (s.holds)(&obs) {
                self.sometimes[i] += 1;
            }
        }
        if obs.violation.is_some() {
            self.failures.push((obs, schedule));
        }
    }

    fn merge(&mut self, t: Tally) {
        self.seeds += t.seeds;
        self.runs += t.runs;
        self.faults += t.faults;
        self.checks += t.checks;
        self.coverage.merge(t.coverage);
        self.sometimes.resize(self.sometimes.len().max(t.sometimes.len()), 0);
        for (i, n) in t.sometimes.iter().enumerate() {
            self.sometimes[i] += n;
        }
        self.failures.extend(t.failures);
    }
}

/// Every seed once (twice with determinism), on `opts.threads` threads; stops early once
/// `max_failures` seeds failed.
fn sweep_seeds(opts: &SweepOptions, row: &ProcedureRow, factory: &Factory, seeds: &[u64]) -> Tally {
    let threads = opts.threads.max(1).min(seeds.len().max(1));
    let failed = std::sync::atomic::AtomicUsize::new(0);
    let run_seed = |seed: u64, t: &mut Tally| {
        if failed.load(std::sync::atomic::Ordering::Relaxed) >= opts.max_failures.max(1) {
            return;
        }
        let schedule = opts.faults.clone().unwrap_or_else(|| row.schedule_for(seed, &opts.allowed));
        let (obs, runs) = check_case(row, factory, &ChaosCase { seed, schedule: schedule.clone() }, opts.determinism);
        if obs.violation.is_some() {
            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        t.add(row, obs, runs, schedule);
    };
    let mut total = Tally { sometimes: vec![0; row.sometimes.len()], ..Tally::default() };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let run_seed = &run_seed;
                scope.spawn(move || {
                    let mut t = Tally::default();
                    for s in seeds.iter().skip(k).step_by(threads) {
                        run_seed(*s, &mut t);
                    }
                    t
                })
            })
            .collect();
        for h in handles {
            total.merge(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
    });
    total
}

/// Crash equivalence for the first `opts.crash_seeds` seeds, one per scenario of the row where
/// it can: returns the crash points checked and the seeds, adding failures to `total`.
fn check_crash_equivalence(
    opts: &SweepOptions,
    row: &ProcedureRow,
    factory: &Factory,
    seeds: &[u64],
    total: &mut Tally,
) -> (u64, Vec<u64>) {
    let mut crash_points = 0;
    let mut crash_seeds = Vec::new();
    let mut scenarios_done = BTreeSet::new();
    for seed in seeds.iter().copied() {
        if crash_seeds.len() as u64 >= opts.crash_seeds {
            break;
        }
        let sc = row.scenario_for(seed).scenario;
        if scenarios_done.contains(sc) && scenarios_done.len() < row.scenarios.len() {
            continue;
        }
        scenarios_done.insert(sc);
        crash_seeds.push(seed);
        let c = crash_equivalence(row, factory, seed);
        crash_points += c.points;
        total.runs += c.points + 1;
        total.checks += c.checks;
        for f in c.failures {
            if total.failures.len() < opts.max_failures.max(1) + 1 {
                let original = f.schedule.clone();
                total.failures.push((f, original));
            }
        }
    }
    (crash_points, crash_seeds)
}

/// Each failure shrunk to its minimal schedule (when asked to and it keeps failing the same way).
fn shrink_failures(
    opts: &SweepOptions,
    row: &ProcedureRow,
    factory: &Factory,
    failures: &[(RunObservation, FaultSchedule)],
) -> Vec<Failure> {
    failures
        .iter()
        .map(|(obs, original)| {
            let v = obs.violation.as_ref().expect("failure");
            if opts.shrink && !obs.schedule.faults.is_empty() {
                let (_, min_obs) =
                    shrink(row, factory, &ChaosCase { seed: obs.seed, schedule: obs.schedule.clone() }, v.invariant, opts.determinism);
                if min_obs.violation.as_ref().is_some_and(|m| m.invariant == v.invariant) {
                    return Failure::from_obs(&min_obs, original);
                }
            }
            Failure::from_obs(obs, original)
        })
        .collect()
}

/// What crash equivalence found for one seed.
#[derive(Clone, Debug, Default)]
pub struct CrashCheck {
    pub points: u64,
    pub checks: u64,
    pub failures: Vec<RunObservation>,
}

/// Crash at every step execution of the seed's fault-free run, before the step's effect and
/// after it (before its commit), restart at once, and compare how the run ends (status, final
/// state) and the settled world ([`settled_summary`]) with the run that did not crash. The
/// restart takes no virtual time, so a crash before an effect must leave an identical world;
/// a crash after it shifts time (the step ran twice), which the settled summary ignores.
pub fn crash_equivalence(row: &ProcedureRow, factory: &Factory, seed: u64) -> CrashCheck {
    let base = run_case_in(row, factory, &ChaosCase { seed, schedule: FaultSchedule::none() }, true).0;
    let mut out = CrashCheck { checks: base.checks, ..CrashCheck::default() };
    if base.violation.is_some() {
        out.failures.push(base);
        return out;
    }
    for i in 0..base.steps {
        for after_effect in [false, true] {
            let schedule = FaultSchedule { faults: vec![Fault::Crash { point: CrashPoint::Step(i), after_effect, restart: 0 }] };
            let mut obs = run_case_in(row, factory, &ChaosCase { seed, schedule }, true).0;
            out.points += 1;
            out.checks += obs.checks + 1;
            if obs.violation.is_none() {
                let diff = settled_diff(&timeless(&base.settled), &timeless(&obs.settled));
                if obs.status != base.status || obs.final_state != base.final_state || !diff.is_empty() {
                    obs.violation = Some(Violation {
                        invariant: Invariant::CrashEquivalent,
                        step: i,
                        at: obs.ended_at,
                        detail: format!(
                            "crash {} the effect of step {i}: ended {} in {} (without the crash: {} in {}){}",
                            if after_effect { "after" } else { "before" },
                            obs.status.as_str(),
                            obs.final_state,
                            base.status.as_str(),
                            base.final_state,
                            if diff.is_empty() { String::new() } else { format!("; settled world differs: {}", diff.join("; ")) }
                        ),
                    });
                }
            }
            if obs.violation.is_some() {
                out.failures.push(obs);
                if out.failures.len() >= 3 {
                    return out;
                }
            }
        }
    }
    out
}

/// File names carry the time they were made (`snapshot_2026-01-05_090045.db`): a crash shifts
/// time, and the twin's requests cost their own, so compare what was made, not the second it
/// was made in.
pub fn timeless(v: &serde_json::Value) -> serde_json::Value {
    let text = v.to_string();
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // `_YYYY-MM-DD_HHMMSS`
        let stamp = b.len() >= i + 18
            && b[i] == b'_'
            && b[i + 5] == b'-'
            && b[i + 8] == b'-'
            && b[i + 11] == b'_'
            && [1..5, 6..8, 9..11, 12..18].iter().all(|r| b[i + r.start..i + r.end].iter().all(u8::is_ascii_digit));
        if stamp {
            out.extend_from_slice(b"_<time>");
            i += 18;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    serde_json::from_slice(&out).expect("still JSON")
}

/// Where two settled summaries differ, as `path: a vs b` (at most eight).
pub fn settled_diff(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    fn walk(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        use serde_json::Value::{Array, Object};
        if a == b || out.len() >= 8 {
            return;
        }
        match (a, b) {
            (Object(x), Object(y)) => {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let null = serde_json::Value::Null;
                    let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    walk(&p, x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), out);
                }
            }
            (Array(x), Array(y)) if x.len() == y.len() && x.iter().all(|v| v.is_object()) => {
                for (i, (u, v)) in x.iter().zip(y).enumerate() {
                    let name = u.get("name").and_then(|n| n.as_str()).map_or(i.to_string(), str::to_string);
                    walk(&format!("{path}[{name}]"), u, v, out);
                }
            }
            _ => out.push(format!("{path}: {a} vs {b}")),
        }
    }
    let mut out = Vec::new();
    walk("", a, b, &mut out);
    out
}

/// Run exactly one seed and schedule, as the replay command does, with determinism checked
/// and the settled summary computed.
pub fn replay(row: &ProcedureRow, factory: &Factory, seed: u64, schedule: &FaultSchedule) -> RunObservation {
    let case = ChaosCase { seed, schedule: schedule.clone() };
    let (mut obs, _) = run_case_in(row, factory, &case, true);
    let (again, _) = check_case(row, factory, &case, false);
    obs.checks += 1;
    if obs.violation.is_none() && again.event_log_hash != obs.event_log_hash {
        obs.violation = Some(Violation {
            invariant: Invariant::Deterministic,
            step: obs.steps,
            at: obs.ended_at,
            detail: format!("same seed and schedule, different event logs: {} vs {}", obs.event_log_hash, again.event_log_hash),
        });
    }
    obs
}

/// Let proptest generate `cases` cases (seed and schedule) for a row and shrink the first
/// failure; `None` when all pass.
pub fn explore(
    row: &ProcedureRow,
    factory: &Factory,
    seeds: Range<u64>,
    allowed: &[FaultKind],
    cases: u32,
    rng_seed: u64,
) -> Option<Failure> {
    let strategy = CaseStrategy { row: row.clone(), seeds, allowed: allowed.to_vec() };
    let result = runner(500, cases, rng_seed).run(&strategy, |c| {
        let (obs, _) = check_case(row, factory, &c, false);
        match obs.violation {
            Some(v) => Err(TestCaseError::fail(format!("{}: {}", v.invariant, v.detail))),
            None => Ok(()),
        }
    });
    match result {
        Err(TestError::Fail(_, minimal)) => {
            let (obs, _) = check_case(row, factory, &minimal, true);
            obs.violation.is_some().then(|| Failure::from_obs(&obs, &minimal.schedule))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------

impl fmt::Display for SweepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.seeds.end - self.seeds.start;
        writeln!(f, "chaos sweep: {}, seeds {}..{} ({n} seeds)", self.procedure, self.seeds.start, self.seeds.end)?;
        if self.seeds_run < n {
            writeln!(f, "  seeds run          {} (stopped after {} failures)", self.seeds_run, self.failures.len())?;
        }
        match &self.replayed_schedule {
            Some(s) => writeln!(f, "  faults             {s} (replayed for every seed)")?,
            None => writeln!(f, "  fault kinds        {}", self.allowed.iter().map(|k| k.name()).collect::<Vec<_>>().join(","))?,
        }
        writeln!(f, "  runs               {}", self.runs)?;
        writeln!(f, "  faults injected    {}", self.faults_injected)?;
        writeln!(f, "  invariant checks   {}", self.invariant_checks)?;
        write!(f, "  crash points       {}", self.crash_points_checked)?;
        if !self.crash_seeds.is_empty() {
            write!(f, " (every transition, before and after its effect, seeds {:?})", self.crash_seeds)?;
        }
        writeln!(f)?;
        match (self.simulations_per_sec, self.elapsed_secs) {
            (Some(r), Some(e)) => writeln!(f, "  simulations/s      {r:.0} ({} runs in {e:.2} s)", self.runs)?,
            _ => writeln!(f, "  simulations/s      (not measured)")?,
        }
        writeln!(f, "  outcomes")?;
        for (k, v) in &self.coverage.outcomes {
            writeln!(f, "    {v:>7}  {k}")?;
        }
        let c = &self.coverage;
        writeln!(
            f,
            "  coverage           {} of {} states, {} of {} transitions",
            c.catalog_states - c.states_never.len(),
            c.catalog_states,
            c.catalog_transitions - c.transitions_never.len(),
            c.catalog_transitions
        )?;
        writeln!(f, "    reached          {}", c.states.iter().map(|(s, n)| format!("{s} ({n})")).collect::<Vec<_>>().join(", "))?;
        if !c.states_never.is_empty() {
            writeln!(f, "    never reached    {}", c.states_never.join(", "))?;
        }
        if !c.transitions_never.is_empty() {
            writeln!(f, "    transitions never taken: {}", c.transitions_never.join(", "))?;
        }
        if !c.states_unknown.is_empty() || !c.transitions_unknown.is_empty() {
            writeln!(
                f,
                "    NOT IN THE PROCEDURE'S CATALOG: {}",
                c.states_unknown.iter().chain(&c.transitions_unknown).cloned().collect::<Vec<_>>().join(", ")
            )?;
        }
        writeln!(f, "  sometimes")?;
        for s in &self.sometimes {
            let mark = match (s.runs > 0, s.required) {
                (true, _) => "ok  ",
                (false, true) => "FAIL",
                (false, false) => "-   ",
            };
            writeln!(f, "    {mark} {} ({} runs)", s.name, s.runs)?;
        }
        if self.failures.is_empty() {
            writeln!(f, "  failures           none")?;
        } else {
            writeln!(f, "  failures           {}", self.failures.len())?;
            for x in &self.failures {
                writeln!(f, "  - seed {} ({}): {}: {}", x.seed, x.scenario, x.invariant, x.detail)?;
                writeln!(f, "    ended            {} in {}", x.status, x.final_state)?;
                writeln!(f, "    minimal faults   {}", x.schedule)?;
                if x.original_schedule != x.schedule {
                    writeln!(f, "    shrunk from      {}", x.original_schedule)?;
                }
                writeln!(f, "    event-log hash   {}", x.event_log_hash)?;
                writeln!(f, "    replay           {}", x.replay)?;
            }
        }
        write!(f, "result: {}", if self.passed { "PASS" } else { "FAIL" })
    }
}
