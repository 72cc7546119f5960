//! `cluster-restart`: bring a gracefully shut down cluster back once its machines were powered
//! on outside the tool (OpenShift Container Platform 4.5 Backup and restore, ch.4 "Restarting the
//! cluster gracefully").
//!
//! About ten minutes for the machines to boot, then the control-plane nodes Ready, then the
//! workers, approving on the way the CSRs of kubelets whose certificates expired while the
//! cluster was off (one policy with `recover-expired-certs`: anything outside it goes to a
//! person), then no degraded cluster operator. A cluster that does not come back within the
//! bounds is handed over to `restore-cluster-state`, with what was seen.

use crate::ports::*;
use crate::recover_expired_certs::{review_unexpected, Round, Scope};
use drctl_runtime::{Procedure, Step, StepContext, StepError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartParams {
    /// Approve kubelet-serving CSRs as well (`None`: only on user-provisioned clusters).
    #[serde(default)]
    pub approve_serving_csrs: Option<bool>,
}

/// Which of the runbook's checks a run is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    ControlPlane,
    Workers,
}

/// The nodes a restart waits for: all of them, the control plane's named apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub scope: Scope,
    pub control_plane: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RestartState {
    /// Step 3: about ten minutes for the machines to boot before the first look.
    AwaitBoot,
    /// Which nodes are the cluster's (the API answers again).
    FindNodes,
    /// Step 4: every control-plane node Ready, approving valid CSRs.
    ControlPlaneReady { plan: Plan },
    /// Step 5: every worker Ready, approving valid CSRs.
    WorkersReady { plan: Plan },
    /// CSRs outside the policy: a person looks (never approved here).
    ReviewUnexpected { plan: Plan, phase: Phase, csrs: Vec<String>, evidence: Vec<String> },
    /// Step 6: no degraded cluster operator, every node Ready.
    VerifyCluster { plan: Plan },
}

pub struct ClusterRestart;

/// How long the first look waits for the machines to boot (the runbook's "approximately 10 minutes").
const BOOT_GRACE: Duration = Duration::from_secs(10 * 60);
/// How long each phase may take before the run hands over to a restore.
const PHASE_BOUND: Duration = Duration::from_secs(60 * 60);

fn waited(cx: &StepContext) -> Duration {
    cx.waiting_since.map_or(Duration::ZERO, |since| cx.now.since(since))
}

/// Wait for `what`; past [`PHASE_BOUND`] halt, recommending the restore the runbook names.
fn wait_or_restore(cx: &StepContext, what: String, evidence: Vec<String>) -> Result<Step<RestartState>, StepError> {
    if waited(cx) >= PHASE_BOUND {
        return Ok(Step::Halt {
            reason: format!(
                "the cluster did not start properly: still waiting for {what} after {} min; if it does not recover, restore it from the backup taken before the shutdown with restore-cluster-state (OpenShift Container Platform 4.14 Backup and restore §5.4.2)",
                PHASE_BOUND.as_secs() / 60
            ),
            evidence,
        });
    }
    Ok(Step::Wait { waiting_for: what, recheck_after: Duration::from_secs(30), bound: PHASE_BOUND * 2 })
}

impl ClusterRestart {
    fn await_boot(&self, cx: &StepContext) -> Result<Step<RestartState>, StepError> {
        if waited(cx) >= BOOT_GRACE {
            return Ok(Step::Next(RestartState::FindNodes));
        }
        Ok(Step::Wait { waiting_for: "the machines to boot (about 10 min)".into(), recheck_after: BOOT_GRACE, bound: BOOT_GRACE * 3 })
    }

    fn find_nodes(&self, ports: &Ports, p: &RestartParams) -> Result<Step<RestartState>, StepError> {
        let (scope, nodes, inventory) = Scope::of(ports, p.approve_serving_csrs)?;
        let mut control_plane: Vec<String> = nodes.iter().filter(|n| n.control_plane).map(|n| n.name.clone()).collect();
        control_plane.extend(inventory.into_iter().map(|h| h.node).filter(|n| !control_plane.contains(n)).collect::<Vec<_>>());
        control_plane.sort();
        Ok(Step::Next(RestartState::ControlPlaneReady { plan: Plan { scope, control_plane } }))
    }

    /// One round of approvals, then whether the nodes of `phase` are Ready.
    fn nodes_ready(&self, ports: &Ports, cx: &StepContext, plan: &Plan, phase: Phase) -> Result<Step<RestartState>, StepError> {
        let Round { approved, refused, unsigned, nodes } = plan.scope.approve_round(ports, cx.now)?;
        if !refused.is_empty() {
            let (csrs, evidence) = refused.into_iter().unzip();
            return Ok(Step::Next(RestartState::ReviewUnexpected { plan: plan.clone(), phase, csrs, evidence }));
        }
        let in_phase = |n: &str| phase == Phase::Workers || plan.control_plane.iter().any(|c| c == n);
        let mut waiting = plan.scope.not_ready(&nodes, in_phase);
        waiting.extend(unsigned.into_iter().filter(|(node, _)| in_phase(node)).map(|(_, what)| what));
        if waiting.is_empty() {
            return Ok(Step::Next(match phase {
                Phase::ControlPlane => RestartState::WorkersReady { plan: plan.clone() },
                Phase::Workers => RestartState::VerifyCluster { plan: plan.clone() },
            }));
        }
        let which = if phase == Phase::ControlPlane { "control-plane nodes" } else { "every node" };
        let evidence = nodes
            .iter()
            .map(|n| format!("node {}: {} (taints: {})", n.name, if n.ready { "Ready" } else { "NotReady" }, n.taints.join(" ")))
            .collect();
        wait_or_restore(cx, format!("{which} Ready ({}; {approved} CSR(s) approved this round)", waiting.join(", ")), evidence)
    }

    fn verify_cluster(&self, ports: &Ports, cx: &StepContext, plan: &Plan) -> Result<Step<RestartState>, StepError> {
        let ops = ports.api.cluster_operators().map_err(|e| e.during("list cluster operators"))?;
        let nodes = ports.api.list_nodes().map_err(|e| e.during("list nodes"))?;
        let mut trouble: Vec<String> = ops
            .iter()
            .filter(|o| o.degraded || !o.available)
            .map(|o| format!("{} (available {}, degraded {})", o.name, o.available, o.degraded))
            .collect();
        trouble.extend(plan.scope.not_ready(&nodes, |_| true));
        if trouble.is_empty() {
            let left = &plan.scope.reviewed;
            return Ok(Step::Done {
                summary: format!(
                    "the cluster started: {} nodes Ready ({} control plane), no cluster operator degraded{}",
                    plan.scope.expected.len(),
                    plan.control_plane.len(),
                    if left.is_empty() {
                        String::new()
                    } else {
                        format!("; CSR(s) outside the approval policy left for a person: {}", plan.scope.refusals.join("; "))
                    }
                ),
            });
        }
        wait_or_restore(cx, format!("no degraded cluster operator and every node Ready ({})", trouble.join(", ")), trouble.clone())
    }
}

impl Procedure for ClusterRestart {
    type Env = Ports;
    type Params = RestartParams;
    type State = RestartState;
    const NAME: &'static str = "cluster-restart";
    const VERSION: u32 = 1;

    fn validate(&self, _p: &RestartParams) -> Result<(), String> {
        Ok(())
    }

    fn initial_state(&self, _p: &RestartParams) -> RestartState {
        RestartState::AwaitBoot
    }

    fn state_name(&self, s: &RestartState) -> String {
        match s {
            RestartState::AwaitBoot => "AwaitBoot".into(),
            RestartState::FindNodes => "FindNodes".into(),
            RestartState::ControlPlaneReady { .. } => "ControlPlaneReady".into(),
            RestartState::WorkersReady { .. } => "WorkersReady".into(),
            RestartState::ReviewUnexpected { csrs, .. } => format!("ReviewUnexpected({})", csrs.join(",")),
            RestartState::VerifyCluster { .. } => "VerifyCluster".into(),
        }
    }

    fn check_state(&self, _p: &RestartParams, s: &RestartState) -> Result<(), String> {
        let plan = match s {
            RestartState::AwaitBoot | RestartState::FindNodes => return Ok(()),
            RestartState::ControlPlaneReady { plan } | RestartState::WorkersReady { plan } | RestartState::VerifyCluster { plan } => plan,
            RestartState::ReviewUnexpected { plan, csrs, evidence, .. } => {
                if csrs.is_empty() || csrs.len() != evidence.len() {
                    return Err("a review needs each refused CSR with why it was refused".into());
                }
                plan
            }
        };
        if plan.scope.expected.is_empty() || !plan.control_plane.iter().all(|c| plan.scope.expected.contains(c)) {
            return Err("the control-plane nodes must be among the expected nodes".into());
        }
        Ok(())
    }

    fn step(&self, ports: &Ports, cx: &StepContext, p: &RestartParams, s: &RestartState) -> Result<Step<RestartState>, StepError> {
        match s {
            RestartState::AwaitBoot => self.await_boot(cx),
            RestartState::FindNodes => self.find_nodes(ports, p),
            RestartState::ControlPlaneReady { plan } => self.nodes_ready(ports, cx, plan, Phase::ControlPlane),
            RestartState::WorkersReady { plan } => self.nodes_ready(ports, cx, plan, Phase::Workers),
            RestartState::ReviewUnexpected { plan, phase, csrs, evidence } => {
                let control_plane = plan.control_plane.clone();
                review_unexpected(cx, &plan.scope, csrs, evidence, |scope| {
                    let plan = Plan { scope, control_plane };
                    match phase {
                        Phase::ControlPlane => RestartState::ControlPlaneReady { plan },
                        Phase::Workers => RestartState::WorkersReady { plan },
                    }
                })
            }
            RestartState::VerifyCluster { plan } => self.verify_cluster(ports, cx, plan),
        }
    }

    fn correctable(&self, _key: &str, s: &RestartState) -> Result<(), String> {
        match s {
            RestartState::AwaitBoot | RestartState::FindNodes => Ok(()),
            _ => Err("the run has approved CSRs by its settings: resume it, or start another".into()),
        }
    }

    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[
            ("AwaitBoot", &["FindNodes"]),
            ("FindNodes", &["ControlPlaneReady"]),
            ("ControlPlaneReady", &["WorkersReady", "ReviewUnexpected"]),
            ("WorkersReady", &["VerifyCluster", "ReviewUnexpected"]),
            ("ReviewUnexpected", &["ControlPlaneReady", "WorkersReady"]),
            ("VerifyCluster", &[]),
        ]
    }
}
