//! `recover-expired-certs`: bring back the kubelets of a cluster that was offline past the
//! expiry of their certificates (OpenShift Container Platform 4.14 Backup and restore §5.4.3
//! "Recovering from expired control plane certificates"; 4.5-era §5.4).
//!
//! The kubelets ask for new certificates once their old ones are refused: a node-bootstrapper
//! client CSR each, then, once that is approved, a kubelet-serving CSR. This run approves, by
//! the one CSR policy ([`crate::csr::refusal`]), the client CSRs and then (where no machine
//! approver signs them) the serving CSRs, again and again as the kubelets file the next ones,
//! until every node is Ready. A CSR outside the policy is never approved here: a person sees it
//! at a gate, with why it was refused.

use crate::csr::refusal;
use crate::ports::*;
use drctl_runtime::{Decision, Procedure, Step, StepContext, StepError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// The gate at which a person sees the CSRs the policy refused.
pub const UNEXPECTED_CSRS_GATE: &str = "unexpected-csrs";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverCertsParams {
    /// Approve kubelet-serving CSRs as well: `None` decides by the cluster (only when no
    /// control-plane Machine objects exist, i.e. user-provisioned: elsewhere the cluster
    /// machine approver signs them).
    #[serde(default)]
    pub approve_serving_csrs: Option<bool>,
}

/// The command line of `drctl run recover-expired-certs` and `drctl run cluster-restart` (their
/// parameters are the same: whose serving CSRs to approve).
#[derive(clap::Args, Debug)]
pub struct ServingCsrArgs {
    /// Never approve kubelet-serving CSRs (default: only on user-provisioned clusters).
    #[arg(long, conflicts_with = "serving_csrs")]
    no_serving_csrs: bool,
    /// Approve kubelet-serving CSRs that ask only for their node's own names, whatever the platform.
    #[arg(long)]
    serving_csrs: bool,
}

impl crate::catalog::IntoParams for ServingCsrArgs {
    fn into_params(self) -> serde_json::Value {
        let approve = match (self.serving_csrs, self.no_serving_csrs) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        serde_json::json!({ "approve_serving_csrs": approve })
    }
}

/// What a run approves for: the nodes it expects and whether serving CSRs are its to approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// The cluster's nodes: the inventory's, the registered Node objects, the machines' nodes.
    pub expected: Vec<String>,
    pub approve_serving: bool,
    /// CSRs outside the policy a person has already seen at the gate (never approved here).
    pub reviewed: Vec<String>,
    /// Why each of them was refused, for the run's outcome.
    #[serde(default)]
    pub refusals: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RecoverCertsState {
    /// Which nodes are the cluster's, and whether any needs recovering.
    FindNodes,
    /// Steps 2–4: approve the valid node-bootstrapper CSRs, then the valid kubelet-serving ones,
    /// until every node is Ready.
    ApproveCsrs { scope: Scope },
    /// Pending CSRs outside the policy: a person looks (the run never approves them).
    ReviewUnexpected { scope: Scope, csrs: Vec<String>, evidence: Vec<String> },
}

pub struct RecoverExpiredCerts;

/// The gate at pending CSRs outside the policy: approved, the run goes on (`go_on`) with them
/// reviewed and still unapproved; rejected, it halts for a person to decide on them by hand.
pub fn review_unexpected<S>(
    cx: &StepContext,
    scope: &Scope,
    csrs: &[String],
    evidence: &[String],
    go_on: impl FnOnce(Scope) -> S,
) -> Result<Step<S>, StepError> {
    match cx.gate(UNEXPECTED_CSRS_GATE).map(|d| &d.decision) {
        Some(Decision::Approved) => Ok(Step::Next(go_on(scope.reviewed(csrs, evidence)))),
        Some(Decision::Rejected) => Ok(Step::Halt {
            reason: format!(
                "stopped at CSRs outside the approval policy ({}): approve or deny them by hand (oc adm certificate approve|deny NAME) once you know whose they are",
                csrs.join(", ")
            ),
            evidence: evidence.to_vec(),
        }),
        None => Ok(Step::Gate {
            gate: UNEXPECTED_CSRS_GATE.into(),
            prompt: format!(
                "{} pending CSR(s) are outside the approval policy and will not be approved by this run. Go on approving the valid ones?",
                csrs.len()
            ),
            evidence: evidence.to_vec(),
        }),
    }
}

/// What one approval round did and saw.
pub struct Round {
    pub approved: usize,
    /// Pending CSRs outside the policy not yet reviewed: name and why.
    pub refused: Vec<(String, String)>,
    /// Valid serving CSRs left for the cluster machine approver to sign: node, description.
    pub unsigned: Vec<(String, String)>,
    /// The nodes as listed for the round.
    pub nodes: Vec<NodeInfo>,
}

impl Scope {
    /// The cluster's nodes (the inventory's, the Node objects, the machines') and whether
    /// serving CSRs are the run's to approve (`approve_serving`, else: only where no
    /// control-plane Machine objects exist, i.e. user-provisioned, where no machine approver
    /// signs them); with the nodes and the control-plane inventory it was read from.
    pub fn of(ports: &Ports, approve_serving: Option<bool>) -> Result<(Scope, Vec<NodeInfo>, Vec<HostRef>), StepError> {
        let nodes = ports.api.list_nodes().map_err(|e| e.during("list nodes"))?;
        let machines = ports.api.list_machines().map_err(|e| e.during("list machines"))?;
        let inventory = ports.hosts.control_plane_hosts().map_err(|e| e.during("read the control-plane inventory"))?;
        let workers = ports.hosts.worker_hosts().map_err(|e| e.during("read the worker inventory"))?;
        let mut expected: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
        expected.extend(machines.iter().filter_map(|m| m.node.clone()));
        expected.extend(inventory.iter().chain(&workers).map(|h| h.node.clone()));
        let approve_serving = approve_serving.unwrap_or_else(|| !machines.iter().any(|m| m.control_plane));
        let scope = Scope { expected: expected.into_iter().collect(), approve_serving, reviewed: vec![], refusals: vec![] };
        Ok((scope, nodes, inventory))
    }

    /// Approve what the policy allows (node-bootstrapper CSRs first, then kubelet-serving ones
    /// when they are the run's), collect what it refuses (not yet reviewed) and the valid
    /// serving CSRs left to the machine approver: a kubelet without its serving certificate
    /// serves no logs or exec, so they are waited for.
    pub fn approve_round(&self, ports: &Ports, now: drctl_runtime::clock::Timestamp) -> Result<Round, StepError> {
        let csrs = ports.api.list_csrs().map_err(|e| e.during("list certificate signing requests"))?;
        let nodes = ports.api.list_nodes().map_err(|e| e.during("list nodes"))?;
        let mut round = Round { approved: 0, refused: vec![], unsigned: vec![], nodes: vec![] };
        for kind in [CsrKind::NodeBootstrapper, CsrKind::KubeletServing] {
            for c in csrs.iter().filter(|c| c.pending && c.kind == kind) {
                let node = nodes.iter().find(|n| Some(n.name.as_str()) == c.node.as_deref());
                match refusal(c, &self.expected, node, now) {
                    None if kind == CsrKind::KubeletServing && !self.approve_serving => {
                        let node = c.node.clone().unwrap_or_default();
                        let what = format!("serving CSR {} of {node} for the machine approver to sign", c.name);
                        round.unsigned.push((node, what));
                    }
                    None => {
                        ports.api.approve_csr(&c.name).map_err(|e| e.during(format!("approve CSR {}", c.name)))?;
                        round.approved += 1;
                    }
                    Some(why) if !self.reviewed.contains(&c.name) => round.refused.push((c.name.clone(), why)),
                    Some(_) => {}
                }
            }
        }
        round.nodes = nodes;
        Ok(round)
    }

    /// The expected nodes `which` selects that are not Ready (or not registered), described.
    pub fn not_ready(&self, nodes: &[NodeInfo], which: impl Fn(&str) -> bool) -> Vec<String> {
        self.expected
            .iter()
            .filter(|e| which(e))
            .filter_map(|e| match nodes.iter().find(|n| &n.name == e) {
                Some(n) if n.ready => None,
                Some(n) => Some(format!("{} NotReady", n.name)),
                None => Some(format!("{e} not registered")),
            })
            .collect()
    }

    /// The scope after a person saw `csrs` refused for `why`.
    pub fn reviewed(&self, csrs: &[String], why: &[String]) -> Scope {
        let mut scope = self.clone();
        scope.reviewed.extend(csrs.iter().cloned());
        scope.refusals.extend(why.iter().cloned());
        scope
    }
}

impl RecoverExpiredCerts {
    fn find_nodes(&self, ports: &Ports, p: &RecoverCertsParams) -> Result<Step<RecoverCertsState>, StepError> {
        let (scope, nodes, _) = Scope::of(ports, p.approve_serving_csrs)?;
        let not_ready: Vec<&NodeInfo> = nodes.iter().filter(|n| !n.ready).collect();
        let csrs = ports.api.list_csrs().map_err(|e| e.during("list certificate signing requests"))?;
        let pending = csrs.iter().filter(|c| c.pending && c.kind != CsrKind::Other).count();
        if not_ready.is_empty() && pending == 0 && scope.expected.iter().all(|e| nodes.iter().any(|n| &n.name == e)) {
            return Ok(Step::Done { summary: format!("nothing to recover: all {} nodes are Ready and no CSR is pending", nodes.len()) });
        }
        Ok(Step::Next(RecoverCertsState::ApproveCsrs { scope }))
    }

    /// One round (clients first, then serving), then whether every node is Ready.
    fn approve_csrs(&self, ports: &Ports, cx: &StepContext, scope: &Scope) -> Result<Step<RecoverCertsState>, StepError> {
        let Round { approved, refused, unsigned, nodes } = scope.approve_round(ports, cx.now)?;
        if !refused.is_empty() {
            let (csrs, evidence) = refused.into_iter().unzip();
            return Ok(Step::Next(RecoverCertsState::ReviewUnexpected { scope: scope.clone(), csrs, evidence }));
        }
        let mut waiting = scope.not_ready(&nodes, |_| true);
        waiting.extend(unsigned.into_iter().map(|(_, what)| what));
        if waiting.is_empty() {
            let left = scope.reviewed.len();
            return Ok(Step::Done {
                summary: format!(
                    "all {} nodes are Ready; {left} CSR(s) outside the approval policy left for a person{}",
                    scope.expected.len(),
                    if left == 0 { String::new() } else { format!(": {}", scope.refusals.join("; ")) }
                ),
            });
        }
        Ok(Step::Wait {
            waiting_for: format!(
                "every node Ready ({}; {approved} CSR(s) approved this round; the kubelets file the next ones)",
                waiting.join(", ")
            ),
            recheck_after: Duration::from_secs(20),
            bound: Duration::from_secs(60 * 60),
        })
    }
}

impl Procedure for RecoverExpiredCerts {
    type Env = Ports;
    type Params = RecoverCertsParams;
    type State = RecoverCertsState;
    const NAME: &'static str = "recover-expired-certs";
    const VERSION: u32 = 1;

    fn validate(&self, _p: &RecoverCertsParams) -> Result<(), String> {
        Ok(())
    }

    fn initial_state(&self, _p: &RecoverCertsParams) -> RecoverCertsState {
        RecoverCertsState::FindNodes
    }

    fn state_name(&self, s: &RecoverCertsState) -> String {
        match s {
            RecoverCertsState::FindNodes => "FindNodes".into(),
            RecoverCertsState::ApproveCsrs { .. } => "ApproveCsrs".into(),
            RecoverCertsState::ReviewUnexpected { csrs, .. } => format!("ReviewUnexpected({})", csrs.join(",")),
        }
    }

    fn check_state(&self, _p: &RecoverCertsParams, s: &RecoverCertsState) -> Result<(), String> {
        let (scope, csrs) = match s {
            RecoverCertsState::FindNodes => return Ok(()),
            RecoverCertsState::ApproveCsrs { scope } => (scope, &[][..]),
            RecoverCertsState::ReviewUnexpected { scope, csrs, evidence } => {
                if csrs.is_empty() || csrs.len() != evidence.len() {
                    return Err("a review needs each refused CSR with why it was refused".into());
                }
                (scope, &csrs[..])
            }
        };
        if scope.expected.is_empty() {
            return Err("no expected nodes recorded".into());
        }
        if let Some(c) = csrs.iter().find(|c| scope.reviewed.contains(c)) {
            return Err(format!("CSR {c} is already reviewed"));
        }
        Ok(())
    }

    fn step(
        &self,
        ports: &Ports,
        cx: &StepContext,
        p: &RecoverCertsParams,
        s: &RecoverCertsState,
    ) -> Result<Step<RecoverCertsState>, StepError> {
        match s {
            RecoverCertsState::FindNodes => self.find_nodes(ports, p),
            RecoverCertsState::ApproveCsrs { scope } => self.approve_csrs(ports, cx, scope),
            RecoverCertsState::ReviewUnexpected { scope, csrs, evidence } => {
                review_unexpected(cx, scope, csrs, evidence, |scope| RecoverCertsState::ApproveCsrs { scope })
            }
        }
    }

    /// Nothing is undone: an approved CSR is a certificate the kubelet already uses.
    fn correctable(&self, _key: &str, s: &RecoverCertsState) -> Result<(), String> {
        match s {
            RecoverCertsState::FindNodes => Ok(()),
            _ => Err("the run has approved CSRs by its settings: resume it, or start another".into()),
        }
    }

    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[("FindNodes", &["ApproveCsrs"]), ("ApproveCsrs", &["ReviewUnexpected"]), ("ReviewUnexpected", &["ApproveCsrs"])]
    }
}
