//! `replace-etcd-member-crashloop`: replace an etcd member whose pod crashloops on a node that
//! is otherwise healthy (OpenShift Container Platform 4.14 Backup and restore §5.2.4.2).
//!
//! The host steps (stop the pod, move its data aside) go over SSH, which works while the API
//! is slow; the member is removed from the etcd pod of another, healthy node; the secrets are
//! deleted and a redeployment, with a reason recorded before it is written, brings a new
//! member up on the same node. From quorum guard off to on, every way out turns it back on.

use crate::etcd_member::*;
use crate::ports::*;
use drctl_runtime::{Procedure, Step, StepContext, StepError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashloopParams {
    /// The node whose etcd pod crashloops (the member's name).
    pub node: String,
    /// A backup set already taken, instead of taking one first.
    #[serde(default)]
    pub backup: Option<String>,
}

/// The command line of `drctl run replace-etcd-member-crashloop`.
#[derive(clap::Args, Debug)]
pub struct CrashloopArgs {
    /// The node whose etcd pod crashloops (as EtcdMembersAvailable names it).
    #[arg(long)]
    node: String,
    /// Use this backup set (already in the backup location) instead of taking one first.
    #[arg(long)]
    backup: Option<String>,
}

impl crate::catalog::IntoParams for CrashloopArgs {
    fn into_params(self) -> serde_json::Value {
        serde_json::json!({ "node": self.node, "backup": self.backup })
    }
}

/// The member, and the host (as the inventory names it) its node runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crashing {
    pub member: Member,
    pub host: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CrashloopState {
    /// The node is Ready and its etcd pod crashloops; the other control-plane nodes are Ready
    /// with their machines running; the rest keep quorum without the member.
    CheckMember,
    /// An etcd backup before anything changes.
    TakeBackup { c: Crashing },
    /// A person approves removing this member.
    AwaitApproval { c: Crashing },
    /// Step 1.3: `etcd-pod.yaml` out of the kubelet's manifest directory (over SSH).
    StopEtcdPod { c: Crashing },
    /// Step 1.4: `/var/lib/etcd` aside (over SSH).
    MoveDataAside { c: Crashing },
    /// Step 2: `etcdctl member remove` from the etcd pod of a healthy node.
    RemoveMember { c: Crashing },
    /// Step 3.
    QuorumGuardOff { c: Crashing },
    /// Step 4.
    DeleteSecrets { c: Crashing },
    /// Step 5: the reason is recorded in this state before it is written.
    ForceRedeployment { c: Crashing, reason: String },
    /// Step 6.
    QuorumGuardOn { c: Crashing },
    /// Verification: three members, every endpoint healthy, one of them on the node again.
    VerifyHealth { c: Crashing },
    /// Every static pod rolled out and no cluster operator progressing or degraded.
    VerifyControlPlane { c: Crashing },
    /// A halt after step 3: the guard goes back on, then the run halts. Resumed, it turns the
    /// guard off again and goes on from `resume`.
    GuardOnThenHalt { reason: String, evidence: Vec<String>, resume: Box<CrashloopState> },
    /// Resumed after such a halt: quorum guard off again, then `resume`.
    ResumeGuardOff { resume: Box<CrashloopState> },
    /// An abort after step 3: the guard goes back on.
    UndoQuorumGuard,
}

impl CrashloopState {
    fn guard_may_be_off(&self) -> bool {
        use CrashloopState::*;
        matches!(
            self,
            QuorumGuardOff { .. } | DeleteSecrets { .. } | ForceRedeployment { .. } | QuorumGuardOn { .. } | ResumeGuardOff { .. }
        )
    }

    fn resume_point(&self) -> CrashloopState {
        match self {
            CrashloopState::ResumeGuardOff { resume } => (**resume).clone(),
            other => other.clone(),
        }
    }

    fn crashing(&self) -> Option<&Crashing> {
        use CrashloopState::*;
        match self {
            TakeBackup { c }
            | AwaitApproval { c }
            | StopEtcdPod { c }
            | MoveDataAside { c }
            | RemoveMember { c }
            | QuorumGuardOff { c }
            | DeleteSecrets { c }
            | ForceRedeployment { c, .. }
            | QuorumGuardOn { c }
            | VerifyHealth { c }
            | VerifyControlPlane { c } => Some(c),
            CheckMember | GuardOnThenHalt { .. } | ResumeGuardOff { .. } | UndoQuorumGuard => None,
        }
    }
}

pub struct ReplaceEtcdMemberCrashloop;

impl ReplaceEtcdMemberCrashloop {
    fn check_member(&self, ports: &Ports, p: &CrashloopParams) -> Result<Step<CrashloopState>, StepError> {
        let nodes = ports.api.list_nodes().map_err(|e| e.during("list nodes"))?;
        match nodes.iter().find(|n| n.name == p.node) {
            Some(n) if n.control_plane && n.ready => {}
            Some(n) if n.control_plane => {
                return Ok(Step::Halt {
                    reason: format!("node {} is not Ready: its member is replaced with its machine (replace-etcd-member-machine)", p.node),
                    evidence: vec![format!("taints: {}", n.taints.join(" "))],
                })
            }
            _ => return Ok(Step::Halt { reason: format!("{} is not a control-plane node of this cluster", p.node), evidence: vec![] }),
        }
        let pods = ports.api.list_pods(ETCD_NAMESPACE, ETCD_PODS).map_err(|e| e.during("list etcd pods"))?;
        let pod = pods.iter().find(|pod| pod.node == p.node);
        if !pod.is_some_and(|pod| matches!(pod.phase, PodStatus::CrashLoopBackOff | PodStatus::Error)) {
            return Ok(Step::Halt {
                reason: format!("the etcd pod of {} is not crashlooping: this procedure replaces a crashlooping member only", p.node),
                evidence: pods.iter().map(|p| format!("{} on {}: {}", p.name, p.node, p.phase)).collect(),
            });
        }
        let trouble = other_control_plane_trouble(&*ports.api, &p.node)?;
        if !trouble.is_empty() {
            return Ok(Step::Halt {
                reason: format!("another control-plane node is not ready: replacing the member of {} now could lose quorum; bring it back first, then resume", p.node),
                evidence: trouble,
            });
        }
        let inventory = ports.hosts.control_plane_hosts().map_err(|e| e.during("read the control-plane inventory"))?;
        let Some(host) = inventory.iter().find(|h| h.node == p.node).map(|h| h.name.clone()) else {
            return Ok(Step::Halt {
                reason: format!("no host of the inventory runs node {}: add it to --hosts", p.node),
                evidence: inventory.iter().map(|h| format!("{} (node {})", h.name, h.node)).collect(),
            });
        };
        match member_to_remove(ports, &p.node, None)? {
            Ok(member) => Ok(Step::Next(CrashloopState::TakeBackup { c: Crashing { member, host } })),
            Err((reason, evidence)) => Ok(Step::Halt { reason, evidence }),
        }
    }

    fn await_approval(&self, cx: &StepContext, c: &Crashing) -> Result<Step<CrashloopState>, StepError> {
        let prompt = format!(
            "Stop etcd on {} (its data directory is moved aside), remove member {:x} and let the operator add a new one?",
            c.host, c.member.id
        );
        let evidence = vec![format!("etcdctl runs in etcd-{}", c.member.via)];
        remove_gate(cx, prompt, evidence, CrashloopState::StopEtcdPod { c: c.clone() })
    }

    fn host_op(&self, ports: &Ports, host: &str, op: HostOp) -> Result<HostOutput, StepError> {
        ports.hosts.run(host, &op).map_err(|e| e.during(format!("{op:?} on {host}")))
    }

    fn verify_health(&self, ports: &Ports, c: &Crashing) -> Result<Step<CrashloopState>, StepError> {
        let via = &c.member.via;
        let list = ports.etcd.member_list(via).map_err(|e| e.during(format!("etcdctl member list in etcd-{via}")))?;
        let health = ports.etcd.endpoint_health(via).map_err(|e| e.during(format!("etcdctl endpoint health in etcd-{via}")))?;
        if list.members.len() > 3 {
            return Ok(Step::Halt {
                reason: format!("etcd has {} members: remove the unwanted one by hand, carefully", list.members.len()),
                evidence: describe_members(&list, &health),
            });
        }
        let back = list.members.iter().any(|m| m.name == c.member.node && m.id != c.member.id);
        let all_healthy = health.len() == list.members.len() && health.iter().all(|h| h.healthy);
        if list.members.len() < 3 || !back || !all_healthy {
            let healthy = health.iter().filter(|h| h.healthy).count();
            return Ok(Step::Wait {
                waiting_for: format!(
                    "a new member on {} and every endpoint healthy ({healthy} of {} healthy)",
                    c.member.node,
                    list.members.len()
                ),
                recheck_after: Duration::from_secs(30),
                bound: Duration::from_secs(45 * 60),
            });
        }
        Ok(Step::Next(CrashloopState::VerifyControlPlane { c: c.clone() }))
    }

    fn step_inner(
        &self,
        ports: &Ports,
        cx: &StepContext,
        p: &CrashloopParams,
        s: &CrashloopState,
    ) -> Result<Step<CrashloopState>, StepError> {
        use CrashloopState::*;
        match s {
            CheckMember => self.check_member(ports, p),
            TakeBackup { c } => backup_step(ports, cx, p.backup.as_deref(), AwaitApproval { c: c.clone() }),
            AwaitApproval { c } => self.await_approval(cx, c),
            StopEtcdPod { c } => {
                self.host_op(ports, &c.host, HostOp::MoveManifestOut(StaticPod::Etcd))?;
                Ok(Step::Next(MoveDataAside { c: c.clone() }))
            }
            MoveDataAside { c } => {
                self.host_op(ports, &c.host, HostOp::MoveEtcdDataDirAside)?;
                Ok(Step::Next(RemoveMember { c: c.clone() }))
            }
            RemoveMember { c } => {
                remove_member(ports, &c.member)?;
                Ok(Step::Next(QuorumGuardOff { c: c.clone() }))
            }
            QuorumGuardOff { c } => {
                set_quorum_guard(ports, false)?;
                Ok(Step::Next(DeleteSecrets { c: c.clone() }))
            }
            DeleteSecrets { c } => {
                delete_secrets(&*ports.api, &c.member.node)?;
                Ok(Step::Next(ForceRedeployment { c: c.clone(), reason: redeployment_reason(cx) }))
            }
            ForceRedeployment { c, reason } => {
                ports.api.force_redeployment(Operator::Etcd, reason).map_err(|e| e.during("force an etcd redeployment"))?;
                Ok(Step::Next(QuorumGuardOn { c: c.clone() }))
            }
            QuorumGuardOn { c } => {
                set_quorum_guard(ports, true)?;
                Ok(Step::Next(VerifyHealth { c: c.clone() }))
            }
            VerifyHealth { c } => self.verify_health(ports, c),
            VerifyControlPlane { c } => await_control_plane(
                &*ports.api,
                format!(
                    "etcd member {:x} of {} replaced by a new one; 3 members, every endpoint healthy; quorum guard on",
                    c.member.id, c.member.node
                ),
            ),
            GuardOnThenHalt { resume, .. } if cx.resumed => Ok(Step::Next(ResumeGuardOff { resume: resume.clone() })),
            GuardOnThenHalt { reason, evidence, .. } => halt_with_guard_on(ports, reason, evidence),
            ResumeGuardOff { resume } => {
                set_quorum_guard(ports, false)?;
                Ok(Step::Next((**resume).clone()))
            }
            UndoQuorumGuard => undo_quorum_guard(ports),
        }
    }
}

impl Procedure for ReplaceEtcdMemberCrashloop {
    type Env = Ports;
    type Params = CrashloopParams;
    type State = CrashloopState;
    const NAME: &'static str = "replace-etcd-member-crashloop";
    const VERSION: u32 = 1;

    fn validate(&self, p: &CrashloopParams) -> Result<(), String> {
        validate_node(&p.node)?;
        validate_backup(&p.backup)
    }

    fn initial_state(&self, _p: &CrashloopParams) -> CrashloopState {
        CrashloopState::CheckMember
    }

    fn state_name(&self, s: &CrashloopState) -> String {
        use CrashloopState::*;
        match s {
            CheckMember => "CheckMember".into(),
            TakeBackup { .. } => "TakeBackup".into(),
            AwaitApproval { c } => format!("AwaitApproval({})", c.member.node),
            StopEtcdPod { c } => format!("StopEtcdPod({})", c.host),
            MoveDataAside { c } => format!("MoveDataAside({})", c.host),
            RemoveMember { c } => format!("RemoveMember({:x})", c.member.id),
            QuorumGuardOff { .. } => "QuorumGuardOff".into(),
            DeleteSecrets { c } => format!("DeleteSecrets({})", c.member.node),
            ForceRedeployment { .. } => "ForceRedeployment".into(),
            QuorumGuardOn { .. } => "QuorumGuardOn".into(),
            VerifyHealth { .. } => "VerifyHealth".into(),
            VerifyControlPlane { .. } => "VerifyControlPlane".into(),
            GuardOnThenHalt { .. } => "GuardOnThenHalt".into(),
            ResumeGuardOff { resume } => format!("ResumeGuardOff({})", self.state_name(resume)),
            UndoQuorumGuard => "UndoQuorumGuard".into(),
        }
    }

    fn check_state(&self, p: &CrashloopParams, s: &CrashloopState) -> Result<(), String> {
        if let CrashloopState::GuardOnThenHalt { resume, .. } | CrashloopState::ResumeGuardOff { resume } = s {
            return match **resume {
                CrashloopState::GuardOnThenHalt { .. } | CrashloopState::ResumeGuardOff { .. } => {
                    Err("a resume point inside a resume point".into())
                }
                ref inner => self.check_state(p, inner),
            };
        }
        let Some(c) = s.crashing() else { return Ok(()) };
        if c.member.node != p.node {
            return Err(format!("the state names member {} but the run replaces {}", c.member.node, p.node));
        }
        if c.member.via == c.member.node {
            return Err(format!("etcdctl would run in the pod of the member being replaced ({})", c.member.node));
        }
        Ok(())
    }

    fn step(&self, ports: &Ports, cx: &StepContext, p: &CrashloopParams, s: &CrashloopState) -> Result<Step<CrashloopState>, StepError> {
        let out = self.step_inner(ports, cx, p, s);
        if !s.guard_may_be_off() {
            return out;
        }
        let resume = Box::new(s.resume_point());
        guard_on_before_halt(out, |reason, evidence| CrashloopState::GuardOnThenHalt { reason, evidence, resume })
    }

    fn on_abort(&self, _p: &CrashloopParams, s: &CrashloopState) -> Option<CrashloopState> {
        let after_guard_off = s.guard_may_be_off() || matches!(s, CrashloopState::GuardOnThenHalt { .. });
        after_guard_off.then_some(CrashloopState::UndoQuorumGuard)
    }

    fn is_undo_state(&self, s: &CrashloopState) -> bool {
        matches!(s, CrashloopState::UndoQuorumGuard)
    }

    fn correctable(&self, key: &str, s: &CrashloopState) -> Result<(), String> {
        use CrashloopState::*;
        match s {
            CheckMember | TakeBackup { .. } | AwaitApproval { .. } => Ok(()),
            _ => Err(format!("{key} cannot change once etcd on the node is being stopped: fix what halted it and resume, or abort it")),
        }
    }

    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[
            ("CheckMember", &["TakeBackup"]),
            ("TakeBackup", &["AwaitApproval"]),
            ("AwaitApproval", &["StopEtcdPod"]),
            ("StopEtcdPod", &["MoveDataAside"]),
            ("MoveDataAside", &["RemoveMember"]),
            ("RemoveMember", &["QuorumGuardOff"]),
            ("QuorumGuardOff", &["DeleteSecrets", "GuardOnThenHalt", "UndoQuorumGuard"]),
            ("DeleteSecrets", &["ForceRedeployment", "GuardOnThenHalt", "UndoQuorumGuard"]),
            ("ForceRedeployment", &["QuorumGuardOn", "GuardOnThenHalt", "UndoQuorumGuard"]),
            ("QuorumGuardOn", &["VerifyHealth", "GuardOnThenHalt", "UndoQuorumGuard"]),
            ("VerifyHealth", &["VerifyControlPlane"]),
            ("VerifyControlPlane", &[]),
            ("GuardOnThenHalt", &["ResumeGuardOff", "UndoQuorumGuard"]),
            (
                "ResumeGuardOff",
                &["QuorumGuardOff", "DeleteSecrets", "ForceRedeployment", "QuorumGuardOn", "GuardOnThenHalt", "UndoQuorumGuard"],
            ),
            ("UndoQuorumGuard", &[]),
        ]
    }
}
