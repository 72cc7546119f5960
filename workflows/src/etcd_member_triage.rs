//! `etcd-member-triage`: find the unhealthy etcd member, decide which state it is in, and start
//! the replacement that state calls for as a child run (OpenShift Container Platform 4.14 Backup
//! and restore §5.2.2 Identifying an unhealthy etcd member, §5.2.3 Determining the state of the
//! unhealthy etcd member).
//!
//! It refuses, with the evidence and the procedure to follow instead, when etcd lost a majority
//! (restore-cluster-state), when the member's node waits for certificates (recover-expired-certs),
//! when more than one member is unhealthy, and when none is.

use crate::etcd_member::{validate_backup, validate_node};
use crate::etcd_member::{ETCD_NAMESPACE, ETCD_PODS, REMOVE_GATE};
use crate::ports::*;
use drctl_runtime::clock::Timestamp;
use drctl_runtime::{Decision, Procedure, RunStatus, Step, StepContext, StepError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The key of the one child run a triage starts.
pub const REPLACEMENT_CHILD: &str = "replacement";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageParams {
    /// Wait this long for the member to come back on its own before replacing it (the
    /// runbook's "if you expect it back soon, do nothing"); 0: act at once.
    #[serde(default)]
    pub expect_back_secs: u64,
    /// Passed on to the replacement: a backup already taken, instead of taking one first.
    #[serde(default)]
    pub backup: Option<String>,
    /// Passed on to `replace-etcd-member-baremetal` (needed only on bare metal): the new host's
    /// BMC URL, boot MAC and the path of its credentials file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_mac_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc_credentials: Option<String>,
}

impl TriageParams {
    fn new_host_given(&self) -> bool {
        self.bmc_address.is_some() || self.boot_mac_address.is_some() || self.bmc_credentials.is_some()
    }

    /// The params of the replacement `procedure`.
    fn replacement_params(&self, node: &str, procedure: &str) -> serde_json::Value {
        let mut params = serde_json::json!({ "node": node, "backup": self.backup });
        if procedure == crate::ReplaceEtcdMemberBaremetal::NAME {
            params["bmc_address"] = self.bmc_address.clone().into();
            params["boot_mac_address"] = self.boot_mac_address.clone().into();
            params["bmc_credentials"] = self.bmc_credentials.clone().into();
        }
        params
    }
}

/// The command line of `drctl run etcd-member-triage`.
#[derive(clap::Args, Debug)]
pub struct TriageArgs {
    /// Wait this long (e.g. 30m, 2h) for the member to return on its own before replacing it.
    #[arg(long, value_name = "DURATION", value_parser = crate::catalog::parse_duration)]
    expect_back: Option<Duration>,
    /// Give the replacement this backup set (already in the backup location) instead of taking
    /// one first.
    #[arg(long)]
    backup: Option<String>,
    /// On bare metal: the new BareMetalHost the replacement provisions.
    #[command(flatten)]
    host: crate::replace_etcd_member_baremetal::NewHostArgs,
}

impl crate::catalog::IntoParams for TriageArgs {
    fn into_params(self) -> serde_json::Value {
        let mut p = self.host.to_params();
        p["expect_back_secs"] = self.expect_back.map_or(0, |d| d.as_secs()).into();
        p["backup"] = self.backup.into();
        p
    }
}

/// The state §5.2.3 finds the member in, and the replacement it calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberTrouble {
    /// The machine's instance is not running (§5.2.3 step 1).
    MachineNotRunning,
    /// The node is unreachable or NotReady (§5.2.3 step 2).
    NodeNotReady,
    /// The node is Ready, its etcd pod in Error or CrashLoopBackOff (§5.2.3 step 3).
    PodCrashlooping,
}

impl MemberTrouble {
    /// The procedure that replaces a member in this state.
    pub fn procedure(self, platform: &str) -> &'static str {
        match (self, platform) {
            (MemberTrouble::PodCrashlooping, _) => "replace-etcd-member-crashloop",
            (_, "BareMetal") => "replace-etcd-member-baremetal",
            _ => "replace-etcd-member-machine",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TriageState {
    /// A majority of etcd members must still serve (over SSH, from each reachable host): else
    /// this is a restore, not a replacement.
    CheckQuorum,
    /// §5.2.2: `EtcdMembersAvailable` names exactly one unhealthy member.
    IdentifyMember,
    /// The member may come back on its own: wait until `until`.
    ExpectBack { node: String, until: Timestamp },
    /// §5.2.3, in the runbook's order; certificates first.
    DetermineState { node: String },
    /// A person approves the replacement (its removal gate is approved with it).
    AwaitApproval { node: String, trouble: MemberTrouble, procedure: String, evidence: Vec<String> },
    /// The replacement runs as this run's child.
    RunReplacement { node: String, procedure: String },
    /// Every member available again.
    Verify { node: String, procedure: String },
}

pub struct EtcdMemberTriage;

fn halt(reason: String, evidence: Vec<String>) -> Result<Step<TriageState>, StepError> {
    Ok(Step::Halt { reason, evidence })
}

impl EtcdMemberTriage {
    /// A member of a cluster with quorum answers `/health` healthy; without quorum every
    /// member that answers says so. Asked on each reachable control-plane host of its own etcd.
    fn check_quorum(&self, ports: &Ports) -> Result<Step<TriageState>, StepError> {
        let hosts = ports.hosts.control_plane_hosts().map_err(|e| e.during("read the control-plane inventory"))?;
        let mut evidence = vec![];
        let mut answered = 0;
        for h in &hosts {
            if let Err(e) = ports.hosts.connect(&h.name) {
                evidence.push(format!("{}: not reachable over SSH ({e})", h.name));
                continue;
            }
            let op = HostOp::ProbeEtcd { address: h.address.clone(), client_node: h.node.clone() };
            match ports.hosts.run(&h.name, &op).map_err(|e| e.during(format!("probe etcd on {}", h.name)))? {
                HostOutput::Etcd(EtcdProbe::Healthy) => return Ok(Step::Next(TriageState::IdentifyMember)),
                HostOutput::Etcd(probe) => {
                    answered += 1;
                    evidence.push(format!("{}: etcd {probe}", h.name));
                }
                other => return Err(StepError::Bug(format!("ProbeEtcd answered {other:?}"))),
            }
        }
        if answered == 0 {
            return Err(StepError::Transient {
                what: "probe etcd on the control-plane hosts".into(),
                error: format!("no control-plane host answers over SSH ({})", evidence.join("; ")),
            });
        }
        halt(
            "etcd has lost a majority of its members: no member serves with quorum. Replacing one member cannot help; restore the cluster with restore-cluster-state (OpenShift Container Platform 4.14 Backup and restore §5.4.2.2)".into(),
            evidence,
        )
    }

    fn identify(&self, ports: &Ports, cx: &StepContext, p: &TriageParams) -> Result<Step<TriageState>, StepError> {
        let Some(cond) = ports.api.etcd_members_available().map_err(|e| e.during("read EtcdMembersAvailable of etcds/cluster"))? else {
            return Ok(Step::Wait {
                waiting_for: "the etcd operator to report EtcdMembersAvailable".into(),
                recheck_after: Duration::from_secs(30),
                bound: Duration::from_secs(15 * 60),
            });
        };
        let down = cond.unavailable_members();
        let evidence = vec![format!("EtcdMembersAvailable={}: {}", cond.status, cond.message)];
        match down.as_slice() {
            [] if cond.member_counts().is_some_and(|(up, of)| up == of) => {
                halt("every etcd member is available: nothing to replace".into(), evidence)
            }
            [] => halt("EtcdMembersAvailable reports missing members without naming them; look at the etcd operator".into(), evidence),
            [node] if p.expect_back_secs > 0 => {
                let until = cx.now.plus(Duration::from_secs(p.expect_back_secs));
                Ok(Step::Next(TriageState::ExpectBack { node: node.clone(), until }))
            }
            [node] => Ok(Step::Next(TriageState::DetermineState { node: node.clone() })),
            _ => halt(
                format!(
                    "{} etcd members are unhealthy ({}): replacing them one at a time risks quorum; bring all but one back first, or restore with restore-cluster-state",
                    down.len(),
                    down.join(", ")
                ),
                evidence,
            ),
        }
    }

    fn expect_back(&self, ports: &Ports, cx: &StepContext, node: &str, until: Timestamp) -> Result<Step<TriageState>, StepError> {
        let cond = ports.api.etcd_members_available().map_err(|e| e.during("read EtcdMembersAvailable of etcds/cluster"))?;
        let still_down = cond.as_ref().is_none_or(|c| c.unavailable_members().iter().any(|n| n == node));
        if !still_down {
            return Ok(Step::Done { summary: format!("the etcd member of {node} came back on its own; nothing was replaced") });
        }
        if cx.now >= until {
            return Ok(Step::Next(TriageState::DetermineState { node: node.to_string() }));
        }
        Ok(Step::Wait {
            waiting_for: format!("the etcd member of {node} to come back on its own (until {until})"),
            recheck_after: Duration::from_secs(60),
            bound: until.since(cx.now) + Duration::from_secs(10 * 60),
        })
    }

    /// §5.2.3 in order: machine not running, node not ready, pod crashlooping. First of all, a
    /// node whose kubelet asks for new certificates is a certificate recovery, not a replacement.
    fn determine_state(&self, ports: &Ports, p: &TriageParams, node: &str) -> Result<Step<TriageState>, StepError> {
        let csrs = ports.api.list_csrs().map_err(|e| e.during("list certificate signing requests"))?;
        let waiting: Vec<String> = csrs
            .iter()
            .filter(|c| c.pending && c.kind != CsrKind::Other && c.node.as_deref() == Some(node))
            .map(|c| format!("csr {} ({:?}) pending from {}", c.name, c.kind, c.requestor))
            .collect();
        if !waiting.is_empty() {
            return halt(
                format!("the kubelet of {node} is asking for new certificates: its certificates have expired; recover them with recover-expired-certs (OpenShift Container Platform 4.14 Backup and restore §5.4.3), not by replacing the member"),
                waiting,
            );
        }
        let platform = ports.api.machine_layout().map_err(|e| e.during("read infrastructure/cluster"))?.platform;
        let machines = ports.api.list_machines().map_err(|e| e.during("list machines"))?;
        let machine = machines.iter().find(|m| m.node.as_deref() == Some(node));
        let instance = machine.and_then(|m| crate::machines::instance_state(&m.manifest));
        let nodes = ports.api.list_nodes().map_err(|e| e.during("list nodes"))?;
        let n = nodes.iter().find(|n| n.name == node);
        let pods = ports.api.list_pods(ETCD_NAMESPACE, ETCD_PODS).map_err(|e| e.during("list etcd pods"))?;
        let pod = pods.iter().find(|p| p.node == node);
        let mut evidence = vec![
            format!("machine: {} (instance {})", machine.map_or("none", |m| m.name.as_str()), instance.unwrap_or("-")),
            match n {
                Some(n) => format!("node {node}: {} (taints: {})", if n.ready { "Ready" } else { "NotReady" }, n.taints.join(" ")),
                None => format!("node {node}: not registered"),
            },
            match pod {
                Some(p) => format!("pod {}: {}", p.name, p.phase),
                None => format!("no etcd pod on {node}"),
            },
        ];
        let unreachable = n.is_some_and(|n| n.taints.iter().any(|t| t == "node.kubernetes.io/unreachable"));
        let trouble = if machine.and_then(|m| crate::machines::instance_not_running(&m.manifest)).is_some() {
            MemberTrouble::MachineNotRunning
        } else if n.is_none_or(|n| !n.ready) || unreachable {
            MemberTrouble::NodeNotReady
        } else if pod.is_some_and(|p| matches!(p.phase, PodStatus::Error | PodStatus::CrashLoopBackOff)) {
            MemberTrouble::PodCrashlooping
        } else {
            return halt(
                format!("the etcd member of {node} is unhealthy, but its machine runs, its node is Ready and its pod is not crashlooping: none of the runbook's states; look at the etcd pod's logs"),
                evidence,
            );
        };
        let procedure = trouble.procedure(&platform);
        if crate::catalog::row(procedure).is_none() {
            evidence.push(format!("platform: {platform}"));
            return halt(format!("the member of {node} needs {procedure}, which this build does not have; follow OpenShift Container Platform 4.14 Backup and restore §5.2.4.3 by hand"), evidence);
        }
        if procedure == crate::ReplaceEtcdMemberBaremetal::NAME && !p.new_host_given() {
            return halt(
                format!("the member of {node} is on bare metal: its host must be provisioned again; give the new server's --bmc-address, --boot-mac-address and --bmc-credentials (drctl resume RUN --set bmc_address=… --set boot_mac_address=… --set bmc_credentials=FILE)"),
                evidence,
            );
        }
        evidence.insert(0, format!("decided: {trouble:?} -> {procedure}"));
        Ok(Step::Next(TriageState::AwaitApproval { node: node.to_string(), trouble, procedure: procedure.to_string(), evidence }))
    }

    fn await_approval(&self, cx: &StepContext, node: &str, procedure: &str, evidence: &[String]) -> Result<Step<TriageState>, StepError> {
        match cx.gate(REMOVE_GATE).map(|d| &d.decision) {
            Some(Decision::Approved) => {
                Ok(Step::Next(TriageState::RunReplacement { node: node.to_string(), procedure: procedure.to_string() }))
            }
            Some(Decision::Rejected) => halt(format!("replacing the member of {node} was rejected; nothing was changed"), vec![]),
            None => Ok(Step::Gate {
                gate: REMOVE_GATE.into(),
                prompt: format!(
                    "Replace the unhealthy etcd member of {node} with {procedure}? It removes the member and starts a new one."
                ),
                evidence: evidence.to_vec(),
            }),
        }
    }

    fn run_replacement(&self, cx: &StepContext, p: &TriageParams, node: &str, procedure: &str) -> Result<Step<TriageState>, StepError> {
        match cx.child(REPLACEMENT_CHILD) {
            None => Ok(Step::Child {
                key: REPLACEMENT_CHILD.into(),
                procedure: procedure.to_string(),
                params: p.replacement_params(node, procedure),
            }),
            Some(end) if end.status == RunStatus::Succeeded => {
                Ok(Step::Next(TriageState::Verify { node: node.to_string(), procedure: procedure.to_string() }))
            }
            Some(end) => halt(format!("the replacement ({procedure}) {}", end.status.as_str()), vec![end.outcome.clone()]),
        }
    }

    fn verify(&self, ports: &Ports, cx: &StepContext, node: &str, procedure: &str) -> Result<Step<TriageState>, StepError> {
        let cond = ports.api.etcd_members_available().map_err(|e| e.during("read EtcdMembersAvailable of etcds/cluster"))?;
        let all = cond.as_ref().and_then(OperatorCondition::member_counts).is_some_and(|(up, of)| up == of && of >= 3);
        if !all {
            return Ok(Step::Wait {
                waiting_for: format!("every etcd member available ({})", cond.map_or("no condition yet".into(), |c| c.message)),
                recheck_after: Duration::from_secs(30),
                bound: Duration::from_secs(30 * 60),
            });
        }
        let child = cx.children.get(REPLACEMENT_CHILD).map_or("-", |c| c.run.as_str());
        let done = format!(
            "the unhealthy etcd member of {node} was replaced by child run {child} ({procedure}); {}",
            cond.map(|c| c.message).unwrap_or_default()
        );
        crate::etcd_member::await_control_plane(&*ports.api, done)
    }
}

impl Procedure for EtcdMemberTriage {
    type Env = Ports;
    type Params = TriageParams;
    type State = TriageState;
    const NAME: &'static str = "etcd-member-triage";
    const VERSION: u32 = 1;

    fn validate(&self, p: &TriageParams) -> Result<(), String> {
        if p.expect_back_secs > 7 * 24 * 3600 {
            return Err("--expect-back is at most 7d: a member gone longer is replaced".into());
        }
        validate_backup(&p.backup)?;
        match p.new_host_given() {
            true => crate::replace_etcd_member_baremetal::validate_new_host(
                p.bmc_address.as_deref().unwrap_or_default(),
                p.boot_mac_address.as_deref().unwrap_or_default(),
                p.bmc_credentials.as_deref().unwrap_or_default(),
            ),
            false => Ok(()),
        }
    }

    fn initial_state(&self, _p: &TriageParams) -> TriageState {
        TriageState::CheckQuorum
    }

    fn state_name(&self, s: &TriageState) -> String {
        match s {
            TriageState::CheckQuorum => "CheckQuorum".into(),
            TriageState::IdentifyMember => "IdentifyMember".into(),
            TriageState::ExpectBack { node, .. } => format!("ExpectBack({node})"),
            TriageState::DetermineState { node } => format!("DetermineState({node})"),
            TriageState::AwaitApproval { node, .. } => format!("AwaitApproval({node})"),
            TriageState::RunReplacement { procedure, .. } => format!("RunReplacement({procedure})"),
            TriageState::Verify { node, .. } => format!("Verify({node})"),
        }
    }

    fn check_state(&self, _p: &TriageParams, s: &TriageState) -> Result<(), String> {
        match s {
            TriageState::CheckQuorum | TriageState::IdentifyMember => Ok(()),
            TriageState::ExpectBack { node, .. } | TriageState::DetermineState { node } => validate_node(node),
            TriageState::AwaitApproval { node, procedure, .. }
            | TriageState::RunReplacement { node, procedure }
            | TriageState::Verify { node, procedure } => {
                validate_node(node)?;
                match crate::catalog::row(procedure) {
                    Some(_) if procedure.starts_with("replace-etcd-member-") => Ok(()),
                    _ => Err(format!("{procedure} is not a member replacement of this build")),
                }
            }
        }
    }

    fn step(&self, ports: &Ports, cx: &StepContext, p: &TriageParams, s: &TriageState) -> Result<Step<TriageState>, StepError> {
        match s {
            TriageState::CheckQuorum => self.check_quorum(ports),
            TriageState::IdentifyMember => self.identify(ports, cx, p),
            TriageState::ExpectBack { node, until } => self.expect_back(ports, cx, node, *until),
            TriageState::DetermineState { node } => self.determine_state(ports, p, node),
            TriageState::AwaitApproval { node, procedure, evidence, .. } => self.await_approval(cx, node, procedure, evidence),
            TriageState::RunReplacement { node, procedure } => self.run_replacement(cx, p, node, procedure),
            TriageState::Verify { node, procedure } => self.verify(ports, cx, node, procedure),
        }
    }

    /// Every setting may be corrected until the replacement starts.
    fn correctable(&self, key: &str, s: &TriageState) -> Result<(), String> {
        match s {
            TriageState::RunReplacement { .. } | TriageState::Verify { .. } => {
                Err(format!("{key} cannot change once the replacement runs: resume it, or abort it"))
            }
            _ => Ok(()),
        }
    }

    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[
            ("CheckQuorum", &["IdentifyMember"]),
            ("IdentifyMember", &["ExpectBack", "DetermineState"]),
            ("ExpectBack", &["DetermineState"]),
            ("DetermineState", &["AwaitApproval"]),
            ("AwaitApproval", &["RunReplacement"]),
            ("RunReplacement", &["Verify"]),
            ("Verify", &[]),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(message: &str) -> OperatorCondition {
        OperatorCondition { status: "True".into(), reason: "EtcdQuorate".into(), message: message.into() }
    }

    #[test]
    fn the_unhealthy_member_is_read_from_the_operator_condition() {
        let c = cond("2 of 3 members are available, ip-10-0-131-183.ec2.internal is unhealthy");
        assert_eq!(c.unavailable_members(), ["ip-10-0-131-183.ec2.internal"]);
        assert_eq!(c.member_counts(), Some((2, 3)));
        let two = cond("1 of 3 members are available, master-1 is unhealthy, master-2 has not started");
        assert_eq!(two.unavailable_members(), ["master-1", "master-2"]);
        let all = cond("3 members are available");
        assert!(all.unavailable_members().is_empty());
        assert_eq!(all.member_counts(), Some((3, 3)));
    }

    #[test]
    fn the_replacement_follows_the_state_and_the_platform() {
        assert_eq!(MemberTrouble::MachineNotRunning.procedure("AWS"), "replace-etcd-member-machine");
        assert_eq!(MemberTrouble::NodeNotReady.procedure("BareMetal"), "replace-etcd-member-baremetal");
        assert_eq!(MemberTrouble::PodCrashlooping.procedure("BareMetal"), "replace-etcd-member-crashloop");
    }
}
