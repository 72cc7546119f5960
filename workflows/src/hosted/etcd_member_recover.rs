//! `hosted-etcd-member-recover`: bring back one failed etcd member of a hosted control plane
//! (OpenShift Container Platform 4.15 Hosted control planes, §8.1.1 "Checking the status of a
//! hosted cluster" and §8.1.2 "Recovering an etcd member for a hosted cluster").
//!
//! The member's PVC is deleted, then its pod: the StatefulSet controller recreates both, and
//! the pod's `reset-member` init container, finding an empty data dir, removes the member and
//! adds it back, after which it syncs from the leader. That is only safe while the two other
//! members keep the quorum, so the run refuses unless exactly one member has failed and the
//! others are healthy, and never on a `SingleReplica` control plane, whose only PVC holds all the
//! data. The target is checked again just before each delete, and every delete carries the uid
//! it was decided on: an object recreated meanwhile is never deleted by mistake.
//!
//! The order matters: a pod deleted before its PVC is recreated on the same, now `Terminating`,
//! PVC (protection holds it while a pod uses it) and crash-loops on the old data again. The wait
//! notices a pod back on the old PVC and deletes it once more.
//!
//! Nothing of the member's data can be undone once its PVC is deleted; an abort from then on
//! says where the member was left. A member that does not return within ten minutes halts the
//! run: the next step is a restore from a snapshot (§8.3, `hosted-etcd-restore-onprem`).

use crate::ports::{etcd_pvc_name, HostedEtcdInfo, ManagementCluster, Ports};
use drctl_runtime::{Procedure, Step, StepContext, StepError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The runbook's observation of the new pod, as often as a person would look.
const RECHECK: Duration = Duration::from_secs(15);
/// How long the recreated member may take to start, re-join and sync before the run halts.
const MEMBER_BACK_WITHIN: Duration = Duration::from_secs(10 * 60);
/// The pods and `endpoint health` may disagree for a moment (a pod restarting): how long the
/// run waits for them to agree on one failed member.
const SETTLE: Duration = Duration::from_secs(5 * 60);
const HIGHLY_AVAILABLE_MEMBERS: u32 = 3;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecoverParams {
    /// Namespace of the HostedCluster on the management cluster.
    pub namespace: String,
    /// Name of the HostedCluster.
    pub name: String,
    /// The member the caller expects to be the failed one (`etcd-N`); the run refuses if the
    /// cluster says otherwise.
    #[serde(default)]
    pub member: Option<String>,
}

/// The failed member as found: its pod and PVC, each by the uid the deletes are fenced with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedMember {
    pub pod: String,
    pub pod_uid: String,
    pub pvc: String,
    pub pvc_uid: String,
    /// A serving pod to run etcdctl in.
    pub healthy_pod: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberRecoverState {
    /// §8.1.1: guards (the HostedCluster live and HighlyAvailable, three replicas), `endpoint
    /// health --cluster` from a serving pod, `get pods -l app=etcd`: exactly one failed member,
    /// the others healthy.
    FindFailedMember,
    /// §8.1.2 step 1: re-check the target, then delete its PVC without waiting (it stays
    /// Terminating while the pod uses it).
    DeletePvc { member: FailedMember },
    /// §8.1.2 step 1: delete its pod; the StatefulSet controller recreates both.
    DeletePod { member: FailedMember },
    /// §8.1.2 step 2: the new pod Ready on a new PVC, three started members, every endpoint
    /// healthy, `EtcdAvailable`. `new_pod`: the uid of the recreated pod once seen — the ten
    /// minutes it has to re-join count from then (an API outage before it is waited out).
    WaitMemberBack {
        member: FailedMember,
        #[serde(default)]
        new_pod: Option<String>,
    },
    /// Abort after the PVC was deleted: nothing of the data can be undone; says where the member
    /// was left.
    ReportAbort { member: FailedMember },
}

pub struct HostedEtcdMemberRecover;

/// The command line of `drctl run hosted-etcd-member-recover`.
#[derive(clap::Args, Debug)]
pub struct MemberRecoverArgs {
    /// Namespace of the HostedCluster on the management cluster.
    #[arg(long, default_value = "clusters")]
    namespace: String,
    /// Name of the HostedCluster.
    #[arg(long)]
    name: String,
    /// The member you expect to have failed (etcd-0, etcd-1, etcd-2): the run refuses if the
    /// cluster shows another one.
    #[arg(long, value_name = "etcd-N")]
    member: Option<String>,
}

impl crate::catalog::IntoParams for MemberRecoverArgs {
    fn into_params(self) -> serde_json::Value {
        let MemberRecoverArgs { namespace, name, member } = self;
        serde_json::to_value(MemberRecoverParams { namespace, name, member }).expect("params serialise")
    }
}

fn refuse(reason: String, evidence: Vec<String>) -> StepError {
    StepError::Permanent { reason, evidence }
}

/// One line per pod, as `oc get pods -l app=etcd` would show them.
fn pod_lines(etcd: &HostedEtcdInfo) -> Vec<String> {
    etcd.pods.iter().map(|p| format!("pod {}: {}, {}", p.name, p.status, if p.ready { "ready" } else { "not ready" })).collect()
}

impl HostedEtcdMemberRecover {
    fn etcd(&self, mc: &dyn ManagementCluster, p: &MemberRecoverParams) -> Result<HostedEtcdInfo, StepError> {
        mc.hosted_etcd(&p.namespace, &p.name).map_err(|e| e.during(format!("read the etcd of HostedCluster {}/{}", p.namespace, p.name)))
    }

    fn find_failed_member(&self, ports: &Ports, ctx: &StepContext, p: &MemberRecoverParams) -> Result<Step<MemberRecoverState>, StepError> {
        let mc = ports.management()?;
        super::live_hosted_cluster(mc, &p.namespace, &p.name, "", "nothing would recreate the member's pod's configuration")?;
        let etcd = self.etcd(mc, p)?;
        if etcd.availability_policy != "HighlyAvailable" {
            return Err(refuse(
                format!(
                    "HostedCluster {}/{} is {}: its one etcd member's PVC holds all the data, and deleting it loses them. \
                     Restore from a snapshot instead (OpenShift Container Platform 4.15 Hosted control planes, §8.3)",
                    p.namespace, p.name, etcd.availability_policy
                ),
                vec![format!("spec.controllerAvailabilityPolicy: {}", etcd.availability_policy)],
            ));
        }
        if etcd.replicas != HIGHLY_AVAILABLE_MEMBERS {
            return Err(refuse(
                format!(
                    "StatefulSet etcd has {} replicas, not {HIGHLY_AVAILABLE_MEMBERS}: a scale-down or restore is in progress",
                    etcd.replicas
                ),
                pod_lines(&etcd),
            ));
        }
        let Some(serving) = etcd.pods.iter().find(|pod| pod.ready) else {
            return Err(self.no_quorum(p, &etcd, vec![]));
        };
        let health = mc
            .hosted_etcd_health(&p.namespace, &p.name, &serving.name)
            .map_err(|e| e.during(format!("etcdctl endpoint health in pod {}", serving.name)))?;
        let mut evidence = pod_lines(&etcd);
        evidence.extend(health.iter().map(|h| format!("endpoint {}: {}", h.endpoint, if h.healthy { "healthy" } else { "unhealthy" })));
        let not_ready: Vec<&str> = etcd.pods.iter().filter(|pod| !pod.ready).map(|pod| pod.name.as_str()).collect();
        let missing: Vec<String> = (0..etcd.replicas).map(|n| format!("etcd-{n}")).filter(|n| etcd.pod(n).is_none()).collect();
        let unhealthy: Vec<&str> = health.iter().filter(|h| !h.healthy).map(|h| member_of(&h.endpoint)).collect();
        // Two members down (or a majority unhealthy: without a quorum every health check times
        // out) is not this procedure's to mend, however the two views differ.
        if not_ready.len() > 1 || unhealthy.len() as u32 > etcd.replicas / 2 {
            return Err(self.no_quorum(p, &etcd, evidence));
        }
        if health.len() as u32 != etcd.replicas || !missing.is_empty() || not_ready.len() != unhealthy.len() {
            return self.settle(ctx, format!("the pods and endpoint health to agree (pods missing [{}])", missing.join(", ")), evidence);
        }
        match not_ready.as_slice() {
            [] => {
                Err(refuse(format!("every etcd member of {}/{} is healthy: there is no member to recover", p.namespace, p.name), evidence))
            }
            [one] if unhealthy == [*one] => self.choose(&etcd, p, one, &serving.name, evidence),
            _ => self.settle(ctx, "the failed pod and the unhealthy endpoint to be the same member".into(), evidence),
        }
    }

    fn choose(
        &self,
        etcd: &HostedEtcdInfo,
        p: &MemberRecoverParams,
        failed: &str,
        healthy_pod: &str,
        evidence: Vec<String>,
    ) -> Result<Step<MemberRecoverState>, StepError> {
        if let Some(expected) = p.member.as_deref().filter(|m| *m != failed) {
            return Err(refuse(format!("--member {expected} was given, but the failed member is {failed}; nothing deleted"), evidence));
        }
        let pod = etcd.pod(failed).expect("listed as not ready");
        let pvc_name = etcd_pvc_name(failed);
        let Some(pvc) = etcd.pvc(&pvc_name) else {
            return Err(refuse(
                format!("pod {failed} has no PVC {pvc_name}: the StatefulSet controller has not recreated it yet"),
                evidence,
            ));
        };
        let member = FailedMember {
            pod: pod.name.clone(),
            pod_uid: pod.uid.clone(),
            pvc: pvc.name.clone(),
            pvc_uid: pvc.uid.clone(),
            healthy_pod: healthy_pod.to_string(),
        };
        Ok(Step::Next(MemberRecoverState::DeletePvc { member }))
    }

    /// More than one member failed (or none serves): deleting a PVC could lose the quorum.
    fn no_quorum(&self, p: &MemberRecoverParams, etcd: &HostedEtcdInfo, mut evidence: Vec<String>) -> StepError {
        if evidence.is_empty() {
            evidence = pod_lines(etcd);
        }
        refuse(
            format!(
                "more than one etcd member of {}/{} has failed: replacing one could lose the quorum and the data. \
                 Restore from a snapshot instead (OpenShift Container Platform 4.15 Hosted control planes, §8.3)",
                p.namespace, p.name
            ),
            evidence,
        )
    }

    /// Pods and health disagree: a pod restarting. Look again, for a while.
    fn settle(&self, ctx: &StepContext, what: String, evidence: Vec<String>) -> Result<Step<MemberRecoverState>, StepError> {
        if ctx.waiting_since.is_some_and(|since| ctx.now.since(since) >= SETTLE) {
            return Err(refuse(format!("the etcd pods and endpoint health did not settle within {} min", SETTLE.as_secs() / 60), evidence));
        }
        Ok(Step::Wait { waiting_for: format!("{what}: {}", evidence.join("; ")), recheck_after: RECHECK, bound: SETTLE * 2 })
    }

    /// The guard just before a delete: the target's pod still the one decided on and not ready,
    /// the two others ready. `Ok(false)`: the PVC decided on is gone already.
    fn still_failed(&self, mc: &dyn ManagementCluster, p: &MemberRecoverParams, m: &FailedMember) -> Result<bool, StepError> {
        let etcd = self.etcd(mc, p)?;
        if etcd.pvc(&m.pvc).is_none_or(|c| c.uid != m.pvc_uid) {
            return Ok(false);
        }
        let target = etcd.pod(&m.pod);
        if target.is_some_and(|pod| pod.ready) {
            return Err(refuse(format!("pod {} is Ready again: it was not deleted. Run again if it fails again", m.pod), pod_lines(&etcd)));
        }
        let others_ready = etcd.pods.iter().filter(|pod| pod.name != m.pod && pod.ready).count() as u32;
        if others_ready + 1 < etcd.replicas {
            return Err(self.no_quorum(p, &etcd, vec![]));
        }
        Ok(true)
    }

    fn delete_pvc(&self, ports: &Ports, p: &MemberRecoverParams, m: &FailedMember) -> Result<Step<MemberRecoverState>, StepError> {
        let mc = ports.management()?;
        if self.still_failed(mc, p, m)? {
            mc.delete_hosted_etcd_pvc(&p.namespace, &p.name, &m.pvc, &m.pvc_uid)
                .map_err(|e| e.during(format!("delete PVC {} (uid {})", m.pvc, m.pvc_uid)))?;
        }
        Ok(Step::Next(MemberRecoverState::DeletePod { member: m.clone() }))
    }

    fn delete_pod(&self, ports: &Ports, p: &MemberRecoverParams, m: &FailedMember) -> Result<Step<MemberRecoverState>, StepError> {
        let mc = ports.management()?;
        mc.delete_hosted_etcd_pod(&p.namespace, &p.name, &m.pod, &m.pod_uid)
            .map_err(|e| e.during(format!("delete pod {} (uid {})", m.pod, m.pod_uid)))?;
        Ok(Step::Next(MemberRecoverState::WaitMemberBack { member: m.clone(), new_pod: None }))
    }

    fn wait_member_back(
        &self,
        ports: &Ports,
        ctx: &StepContext,
        p: &MemberRecoverParams,
        m: &FailedMember,
        new_pod: Option<&str>,
    ) -> Result<Step<MemberRecoverState>, StepError> {
        let mc = ports.management()?;
        let etcd = self.etcd(mc, p)?;
        let (pod, pvc) = (etcd.pod(&m.pod), etcd.pvc(&m.pvc));
        // The StatefulSet controller won the race against PVC protection: a pod recreated on the
        // old PVC (still Terminating, held by it) is never scheduled. Delete it again, so the PVC
        // can go and the next pod gets a new, empty one.
        if let Some(pod) = pod.filter(|pod| pod.uid != m.pod_uid && pvc.is_some_and(|c| c.uid == m.pvc_uid)) {
            let again = FailedMember { pod_uid: pod.uid.clone(), ..m.clone() };
            return Ok(Step::Next(MemberRecoverState::DeletePod { member: again }));
        }
        let recreated = pod.filter(|pod| pod.uid != m.pod_uid && pvc.is_some_and(|c| c.uid != m.pvc_uid));
        if let Some(pod) = recreated.filter(|pod| new_pod != Some(pod.uid.as_str())) {
            return Ok(Step::Next(MemberRecoverState::WaitMemberBack { member: m.clone(), new_pod: Some(pod.uid.clone()) }));
        }
        if let Some(pod) = recreated.filter(|pod| pod.status == crate::ports::PodStatus::CrashLoopBackOff) {
            return Ok(Step::Halt {
                reason: format!(
                    "the recreated etcd member {} crash-loops on its new, empty PVC: it cannot re-join by itself. Restore the cluster \
                     from a snapshot (OpenShift Container Platform 4.15 Hosted control planes, §8.3: drctl run hosted-etcd-restore-onprem)",
                    m.pod
                ),
                evidence: [format!("pod {} (uid {}): {}", pod.name, pod.uid, pod.status)].into_iter().chain(pod_lines(&etcd)).collect(),
            });
        }
        let mut left = Vec::new();
        match (pod, pvc) {
            (Some(pod), Some(pvc)) if pod.uid != m.pod_uid && pvc.uid != m.pvc_uid && pod.ready => {}
            (pod, pvc) => left.push(format!(
                "pod {}: {}; PVC {}: {}",
                m.pod,
                pod.map_or("absent".to_string(), |pod| format!(
                    "{}{}",
                    pod.status,
                    if pod.uid == m.pod_uid { " (the old pod)" } else { "" }
                )),
                m.pvc,
                pvc.map_or("absent".to_string(), |c| if c.uid == m.pvc_uid { "the old one, Terminating".into() } else { c.phase.clone() })
            )),
        }
        if left.is_empty() {
            left.extend(self.members_back(mc, p, &etcd, m)?);
        }
        if left.is_empty() {
            return Ok(Step::Done {
                summary: format!(
                    "etcd member {} of HostedCluster {}/{} recovered: new PVC {}, pod Ready, {} members started and healthy, EtcdAvailable",
                    m.pod, p.namespace, p.name, m.pvc, etcd.replicas
                ),
            });
        }
        if ctx.waiting_since.is_some_and(|since| ctx.now.since(since) >= MEMBER_BACK_WITHIN) {
            return Ok(Step::Halt {
                reason: format!(
                    "etcd member {} did not come back within {} min; its old data are gone. Restore the cluster from a snapshot \
                     (OpenShift Container Platform 4.15 Hosted control planes, §8.3: drctl run hosted-etcd-restore-onprem)",
                    m.pod,
                    MEMBER_BACK_WITHIN.as_secs() / 60
                ),
                evidence: left,
            });
        }
        Ok(Step::Wait {
            waiting_for: format!("etcd member {} to come back: {}", m.pod, left.join("; ")),
            recheck_after: RECHECK,
            bound: MEMBER_BACK_WITHIN * 2,
        })
    }

    /// What still keeps the members from being whole: from a serving pod, every member started,
    /// every endpoint healthy; the HostedControlPlane's `EtcdAvailable`.
    fn members_back(
        &self,
        mc: &dyn ManagementCluster,
        p: &MemberRecoverParams,
        etcd: &HostedEtcdInfo,
        m: &FailedMember,
    ) -> Result<Vec<String>, StepError> {
        let from = if etcd.pod(&m.healthy_pod).is_some_and(|pod| pod.ready) { m.healthy_pod.as_str() } else { m.pod.as_str() };
        let members =
            mc.hosted_etcd_members(&p.namespace, &p.name, from).map_err(|e| e.during(format!("etcdctl member list in pod {from}")))?;
        let health =
            mc.hosted_etcd_health(&p.namespace, &p.name, from).map_err(|e| e.during(format!("etcdctl endpoint health in pod {from}")))?;
        let mut left = Vec::new();
        let started = members.members.iter().filter(|x| x.started()).count() as u32;
        if started != etcd.replicas || !members.members.iter().any(|x| x.name == m.pod) {
            left.push(format!("{started} of {} members started", etcd.replicas));
        }
        let unhealthy: Vec<&str> = health.iter().filter(|h| !h.healthy).map(|h| h.endpoint.as_str()).collect();
        if !unhealthy.is_empty() {
            left.push(format!("unhealthy endpoints [{}]", unhealthy.join(", ")));
        }
        if etcd.etcd_available.as_deref() != Some("True") {
            left.push(format!("EtcdAvailable {}", etcd.etcd_available.as_deref().unwrap_or("not written")));
        }
        Ok(left)
    }
}

/// `etcd-1` of `https://etcd-1.etcd-client.<cpns>.svc:2379`.
fn member_of(endpoint: &str) -> &str {
    let host = endpoint.split("://").nth(1).unwrap_or(endpoint);
    host.split(['.', ':']).next().unwrap_or(host)
}

impl Procedure for HostedEtcdMemberRecover {
    type Env = Ports;
    type Params = MemberRecoverParams;
    type State = MemberRecoverState;
    const NAME: &'static str = "hosted-etcd-member-recover";
    const VERSION: u32 = 1;

    fn validate(&self, p: &MemberRecoverParams) -> Result<(), String> {
        super::pause_reconciliation::check_names(&p.namespace, &p.name)?;
        if let Some(m) = p.member.as_deref() {
            let ordinal = m.strip_prefix("etcd-").and_then(|n| n.parse::<u32>().ok());
            if ordinal.is_none_or(|n| n >= HIGHLY_AVAILABLE_MEMBERS) {
                return Err(format!("--member '{m}' is not one of etcd-0, etcd-1, etcd-2"));
            }
        }
        Ok(())
    }

    fn initial_state(&self, _: &MemberRecoverParams) -> MemberRecoverState {
        MemberRecoverState::FindFailedMember
    }

    fn state_name(&self, s: &MemberRecoverState) -> String {
        match s {
            MemberRecoverState::FindFailedMember => "FindFailedMember",
            MemberRecoverState::DeletePvc { .. } => "DeletePvc",
            MemberRecoverState::DeletePod { .. } => "DeletePod",
            MemberRecoverState::WaitMemberBack { .. } => "WaitMemberBack",
            MemberRecoverState::ReportAbort { .. } => "ReportAbort",
        }
        .into()
    }

    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[
            ("FindFailedMember", &["DeletePvc"]),
            ("DeletePvc", &["DeletePod"]),
            ("DeletePod", &["WaitMemberBack", "ReportAbort"]),
            ("WaitMemberBack", &["WaitMemberBack", "DeletePod", "ReportAbort"]),
            ("ReportAbort", &[]),
        ]
    }

    fn step(
        &self,
        ports: &Ports,
        ctx: &StepContext,
        p: &MemberRecoverParams,
        s: &MemberRecoverState,
    ) -> Result<Step<MemberRecoverState>, StepError> {
        match s {
            MemberRecoverState::FindFailedMember => self.find_failed_member(ports, ctx, p),
            MemberRecoverState::DeletePvc { member } => self.delete_pvc(ports, p, member),
            MemberRecoverState::DeletePod { member } => self.delete_pod(ports, p, member),
            MemberRecoverState::WaitMemberBack { member, new_pod } => self.wait_member_back(ports, ctx, p, member, new_pod.as_deref()),
            MemberRecoverState::ReportAbort { member } => self.report_abort(ports, p, member),
        }
    }

    fn on_abort(&self, _: &MemberRecoverParams, s: &MemberRecoverState) -> Option<MemberRecoverState> {
        match s {
            // Nothing deleted yet (the PVC delete is this state's act: an abort before it runs
            // leaves everything as found).
            MemberRecoverState::FindFailedMember | MemberRecoverState::DeletePvc { .. } => None,
            MemberRecoverState::DeletePod { member }
            | MemberRecoverState::WaitMemberBack { member, .. }
            | MemberRecoverState::ReportAbort { member } => Some(MemberRecoverState::ReportAbort { member: member.clone() }),
        }
    }

    fn is_undo_state(&self, s: &MemberRecoverState) -> bool {
        matches!(s, MemberRecoverState::ReportAbort { .. })
    }
}

impl HostedEtcdMemberRecover {
    /// Past the PVC delete there is nothing to put back: say where the member stands.
    fn report_abort(&self, ports: &Ports, p: &MemberRecoverParams, m: &FailedMember) -> Result<Step<MemberRecoverState>, StepError> {
        let etcd = self.etcd(ports.management()?, p)?;
        let pod = etcd.pod(&m.pod).map_or("absent".to_string(), |pod| format!("{} (uid {})", pod.status, pod.uid));
        let pvc = match etcd.pvc(&m.pvc) {
            Some(c) if c.uid == m.pvc_uid => "the old one, Terminating until its pod is deleted".to_string(),
            Some(c) => format!("new, {}", c.phase),
            None => "absent".into(),
        };
        Ok(Step::Done {
            summary: format!(
                "aborted past the point of no return: PVC {} (uid {}) of etcd member {} was deleted and cannot be undone. \
                 Now: pod {pod}; PVC {pvc}. The StatefulSet recreates what is missing; if the member does not return, \
                 delete pod {} once more or restore from a snapshot (OpenShift Container Platform 4.15 Hosted control planes, §8.3)",
                m.pvc, m.pvc_uid, m.pod, m.pod
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_before_anything_is_stored() {
        let p = HostedEtcdMemberRecover;
        let params = |member: Option<&str>| MemberRecoverParams {
            namespace: "clusters".into(),
            name: "example".into(),
            member: member.map(Into::into),
        };
        assert_eq!(p.validate(&params(None)), Ok(()));
        assert_eq!(p.validate(&params(Some("etcd-2"))), Ok(()));
        for bad in ["etcd-3", "etcd", "1", "etcd-x"] {
            assert!(p.validate(&params(Some(bad))).unwrap_err().contains("--member"), "{bad}");
        }
    }

    #[test]
    fn an_endpoint_names_its_member() {
        assert_eq!(member_of("https://etcd-1.etcd-client.clusters-example.svc:2379"), "etcd-1");
        assert_eq!(member_of("https://10.0.0.1:2379"), "10");
    }
}
