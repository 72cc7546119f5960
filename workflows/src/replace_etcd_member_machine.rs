//! `replace-etcd-member-machine`: replace an unhealthy etcd member whose machine is not running
//! or whose node is not ready (OpenShift Container Platform 4.14 Backup and restore §5.2.4.1).
//!
//! Guards first: the member is unhealthy, every other control-plane node is Ready with its
//! machine running, and the members left keep a quorum of healthy voters. Then a backup, a gate,
//! and the runbook's steps in order. From turning the quorum guard off (step 2) until it is on
//! again (step 5), every way out — an abort, a halt, a refusal of the world, a wait that timed
//! out — turns it back on first.

use crate::etcd_member::*;
use crate::ports::*;
use crate::replace_machine::{self, Progress, ReplaceMachine};
use drctl_runtime::{Procedure, Step, StepContext, StepError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberMachineParams {
    /// The node of the unhealthy member (the member's name).
    pub node: String,
    /// A backup set already taken, instead of taking one first.
    #[serde(default)]
    pub backup: Option<String>,
}

/// The command line of `drctl run replace-etcd-member-machine`.
#[derive(clap::Args, Debug)]
pub struct MemberMachineArgs {
    /// The node of the unhealthy etcd member (as `oc get nodes` and EtcdMembersAvailable name it).
    #[arg(long)]
    node: String,
    /// Use this backup set (already in the backup location) instead of taking one first.
    #[arg(long)]
    backup: Option<String>,
}

impl crate::catalog::IntoParams for MemberMachineArgs {
    fn into_params(self) -> serde_json::Value {
        serde_json::json!({ "node": self.node, "backup": self.backup })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MemberMachineState {
    /// The member is unhealthy, the other control-plane nodes are Ready with their machines
    /// running, and the rest keep quorum without it.
    CheckMember,
    /// §5.2.1: an etcd backup before anything changes.
    TakeBackup { member: Member },
    /// A person approves removing this member.
    AwaitApproval { member: Member },
    /// Step 1: `etcdctl member remove` from the etcd pod of a healthy node.
    RemoveMember { member: Member },
    /// Step 2: quorum guard off.
    QuorumGuardOff { member: Member },
    /// Step 3: the member's peer, serving and metrics secrets.
    DeleteSecrets { member: Member },
    /// Step 4: save the machine, delete it, create it under the next free name, wait Running
    /// (with an Active control plane machine set: delete it and wait for the set's replacement).
    ReplaceMachine { member: Member, replace: ReplaceMachine, created: Vec<String> },
    /// Step 5: quorum guard back on.
    QuorumGuardOn { member: Member },
    /// Verification 1: three etcd pods running; if only two after a while, force a
    /// redeployment (once).
    VerifyPods { member: Member, forced: Option<String> },
    /// Verification 1, the remedy: `forceRedeploymentReason`, recorded here before it is written.
    ForceRedeployment { member: Member, reason: String },
    /// Verification 2: exactly three started, healthy members.
    VerifyMembers { member: Member },
    /// The new node runs every static pod at its operator's latest revision and no cluster
    /// operator is still progressing or degraded (the control plane is whole again).
    VerifyControlPlane { member: Member },
    /// A halt after step 2: the guard goes back on, then the run halts with `reason`. Resumed,
    /// it turns the guard off again and goes on from `resume`.
    GuardOnThenHalt { reason: String, evidence: Vec<String>, resume: Box<MemberMachineState> },
    /// Resumed after such a halt: quorum guard off again, then `resume`.
    ResumeGuardOff { resume: Box<MemberMachineState> },
    /// An abort after step 2: the guard goes back on.
    UndoQuorumGuard,
}

pub struct ReplaceEtcdMemberMachine;

impl MemberMachineState {
    /// The quorum guard may be off (it was turned off, and not yet back on).
    fn guard_may_be_off(&self) -> bool {
        use MemberMachineState::*;
        matches!(self, QuorumGuardOff { .. } | DeleteSecrets { .. } | ReplaceMachine { .. } | QuorumGuardOn { .. } | ResumeGuardOff { .. })
    }

    /// Where a run halted in this state goes on from once it is resumed.
    fn resume_point(&self) -> MemberMachineState {
        match self {
            MemberMachineState::ResumeGuardOff { resume } => (**resume).clone(),
            other => other.clone(),
        }
    }
}

impl ReplaceEtcdMemberMachine {
    fn check_member(&self, ports: &Ports, p: &MemberMachineParams) -> Result<Step<MemberMachineState>, StepError> {
        let trouble = other_control_plane_trouble(&*ports.api, &p.node)?;
        if !trouble.is_empty() {
            return Ok(Step::Halt {
                reason: format!(
                    "another control-plane node is not ready: replacing {} now could lose quorum; bring it back first, then resume",
                    p.node
                ),
                evidence: trouble,
            });
        }
        let layout = ports.api.machine_layout().map_err(|e| e.during("read infrastructure/cluster"))?;
        if layout.platform == "BareMetal" {
            return Ok(Step::Halt {
                reason: "this is a bare metal cluster: the member's BareMetalHost must be replaced too; use replace-etcd-member-baremetal (OpenShift Container Platform 4.14 Backup and restore §5.2.4.3)".into(),
                evidence: vec![],
            });
        }
        let machines = ports.api.list_machines().map_err(|e| e.during("list machines"))?;
        let machine = machines.iter().find(|m| m.node.as_deref() == Some(p.node.as_str())).map(|m| m.name.clone());
        if machine.is_none() {
            return Ok(Step::Halt {
                reason: format!(
                    "node {} has no Machine: create its replacement the way the control plane was created (user-provisioned), then replace the member by hand",
                    p.node
                ),
                evidence: machines.iter().map(|m| format!("machine {} (node {})", m.name, m.node.as_deref().unwrap_or("-"))).collect(),
            });
        }
        match member_to_remove(ports, &p.node, machine)? {
            Ok(member) => Ok(Step::Next(MemberMachineState::TakeBackup { member })),
            Err((reason, evidence)) => Ok(Step::Halt { reason, evidence }),
        }
    }

    fn await_approval(&self, cx: &StepContext, member: &Member) -> Result<Step<MemberMachineState>, StepError> {
        let prompt = format!(
            "Remove etcd member {:x} ({}) and replace machine {}? etcd runs on two members until the new one joins.",
            member.id,
            member.node,
            member.machine.as_deref().unwrap_or("-")
        );
        let evidence = vec![format!("etcdctl runs in etcd-{}", member.via)];
        remove_gate(cx, prompt, evidence, MemberMachineState::RemoveMember { member: member.clone() })
    }

    fn replace_machine(
        &self,
        ports: &Ports,
        cx: &StepContext,
        member: &Member,
        replace: &ReplaceMachine,
        created: &[String],
    ) -> Result<Step<MemberMachineState>, StepError> {
        let old = member.machine.clone().ok_or_else(|| StepError::Bug("a machine replacement without a machine".into()))?;
        let keep = HostRef { name: member.via.clone(), node: member.via.clone(), address: String::new() };
        match replace_machine::step(&*ports.api, &keep, &[old], created, replace)? {
            Progress::Next { current, created } => {
                Ok(Step::Next(MemberMachineState::ReplaceMachine { member: member.clone(), replace: current, created }))
            }
            Progress::AllReplaced => Ok(Step::Next(MemberMachineState::QuorumGuardOn { member: member.clone() })),
            Progress::Wait { what, recheck_secs, bound_mins } => {
                bounded_wait(cx, what, Duration::from_secs(recheck_secs), Duration::from_secs(bound_mins * 60))
            }
            Progress::Halt { reason, evidence } => Ok(Step::Halt { reason, evidence }),
        }
    }

    fn step_inner(
        &self,
        ports: &Ports,
        cx: &StepContext,
        p: &MemberMachineParams,
        s: &MemberMachineState,
    ) -> Result<Step<MemberMachineState>, StepError> {
        use MemberMachineState::*;
        match s {
            CheckMember => self.check_member(ports, p),
            TakeBackup { member } => backup_step(ports, cx, p.backup.as_deref(), AwaitApproval { member: member.clone() }),
            AwaitApproval { member } => self.await_approval(cx, member),
            RemoveMember { member } => {
                remove_member(ports, member)?;
                Ok(Step::Next(QuorumGuardOff { member: member.clone() }))
            }
            QuorumGuardOff { member } => {
                set_quorum_guard(ports, false)?;
                Ok(Step::Next(DeleteSecrets { member: member.clone() }))
            }
            DeleteSecrets { member } => {
                delete_secrets(&*ports.api, &member.node)?;
                let old = member.machine.clone().ok_or_else(|| StepError::Bug("no machine recorded".into()))?;
                let layout = ports.api.machine_layout().map_err(|e| e.during("read the control plane machine set"))?;
                let replace = match layout.control_plane_machine_set_active {
                    true => {
                        let known = ports.api.list_machines().map_err(|e| e.during("list machines"))?.into_iter().map(|m| m.name).collect();
                        crate::replace_machine::ReplaceMachine::CpmsDelete { old, known }
                    }
                    false => crate::replace_machine::ReplaceMachine::SaveSpec { old },
                };
                Ok(Step::Next(ReplaceMachine { member: member.clone(), replace, created: vec![] }))
            }
            ReplaceMachine { member, replace, created } => self.replace_machine(ports, cx, member, replace, created),
            QuorumGuardOn { member } => {
                set_quorum_guard(ports, true)?;
                Ok(Step::Next(VerifyPods { member: member.clone(), forced: None }))
            }
            VerifyPods { member, forced } => {
                let force = |reason| ForceRedeployment { member: member.clone(), reason };
                verify_pods(ports, cx, forced.is_some(), VerifyMembers { member: member.clone() }, force)
            }
            ForceRedeployment { member, reason } => {
                ports.api.force_redeployment(Operator::Etcd, reason).map_err(|e| e.during("force an etcd redeployment"))?;
                Ok(Step::Next(VerifyPods { member: member.clone(), forced: Some(reason.clone()) }))
            }
            VerifyMembers { member } => verify_members(ports, &member.via, VerifyControlPlane { member: member.clone() }),
            VerifyControlPlane { member } => verify_control_plane(ports, member),
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

impl Procedure for ReplaceEtcdMemberMachine {
    type Env = Ports;
    type Params = MemberMachineParams;
    type State = MemberMachineState;
    const NAME: &'static str = "replace-etcd-member-machine";
    const VERSION: u32 = 1;

    fn validate(&self, p: &MemberMachineParams) -> Result<(), String> {
        validate_node(&p.node)?;
        validate_backup(&p.backup)
    }

    fn initial_state(&self, _p: &MemberMachineParams) -> MemberMachineState {
        MemberMachineState::CheckMember
    }

    fn state_name(&self, s: &MemberMachineState) -> String {
        use MemberMachineState::*;
        match s {
            CheckMember => "CheckMember".into(),
            TakeBackup { .. } => "TakeBackup".into(),
            AwaitApproval { member } => format!("AwaitApproval({})", member.node),
            RemoveMember { member } => format!("RemoveMember({:x})", member.id),
            QuorumGuardOff { .. } => "QuorumGuardOff".into(),
            DeleteSecrets { member } => format!("DeleteSecrets({})", member.node),
            ReplaceMachine { replace, .. } => replace.state_name(),
            QuorumGuardOn { .. } => "QuorumGuardOn".into(),
            VerifyPods { .. } => "VerifyPods".into(),
            ForceRedeployment { .. } => "ForceRedeployment".into(),
            VerifyMembers { .. } => "VerifyMembers".into(),
            VerifyControlPlane { .. } => "VerifyControlPlane".into(),
            GuardOnThenHalt { .. } => "GuardOnThenHalt".into(),
            ResumeGuardOff { resume } => format!("ResumeGuardOff({})", self.state_name(resume)),
            UndoQuorumGuard => "UndoQuorumGuard".into(),
        }
    }

    fn check_state(&self, p: &MemberMachineParams, s: &MemberMachineState) -> Result<(), String> {
        use MemberMachineState::*;
        let member = match s {
            TakeBackup { member }
            | AwaitApproval { member }
            | RemoveMember { member }
            | QuorumGuardOff { member }
            | DeleteSecrets { member }
            | ReplaceMachine { member, .. }
            | QuorumGuardOn { member }
            | VerifyPods { member, .. }
            | ForceRedeployment { member, .. }
            | VerifyMembers { member }
            | VerifyControlPlane { member } => member,
            GuardOnThenHalt { resume, .. } | ResumeGuardOff { resume } => {
                return match **resume {
                    GuardOnThenHalt { .. } | ResumeGuardOff { .. } => Err("a resume point inside a resume point".into()),
                    ref inner => self.check_state(p, inner),
                }
            }
            CheckMember | UndoQuorumGuard => return Ok(()),
        };
        if member.node != p.node {
            return Err(format!("the state names member {} but the run replaces {}", member.node, p.node));
        }
        if member.via == member.node {
            return Err(format!("etcdctl would run in the pod of the member being replaced ({})", member.node));
        }
        if member.machine.is_none() {
            return Err("no machine recorded for the member".into());
        }
        Ok(())
    }

    fn step(
        &self,
        ports: &Ports,
        cx: &StepContext,
        p: &MemberMachineParams,
        s: &MemberMachineState,
    ) -> Result<Step<MemberMachineState>, StepError> {
        let out = self.step_inner(ports, cx, p, s);
        if !s.guard_may_be_off() {
            return out;
        }
        let resume = Box::new(s.resume_point());
        guard_on_before_halt(out, |reason, evidence| MemberMachineState::GuardOnThenHalt { reason, evidence, resume })
    }

    fn on_abort(&self, _p: &MemberMachineParams, s: &MemberMachineState) -> Option<MemberMachineState> {
        let after_guard_off = s.guard_may_be_off() || matches!(s, MemberMachineState::GuardOnThenHalt { .. });
        after_guard_off.then_some(MemberMachineState::UndoQuorumGuard)
    }

    fn is_undo_state(&self, s: &MemberMachineState) -> bool {
        matches!(s, MemberMachineState::UndoQuorumGuard | MemberMachineState::GuardOnThenHalt { .. })
    }

    /// The node may be corrected until the member is removed: up to then the run has only looked.
    fn correctable(&self, key: &str, s: &MemberMachineState) -> Result<(), String> {
        use MemberMachineState::*;
        match s {
            CheckMember | TakeBackup { .. } | AwaitApproval { .. } => Ok(()),
            _ => Err(format!("{key} cannot change once the member is being removed: fix what halted it and resume, or abort it")),
        }
    }

    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[
            ("CheckMember", &["TakeBackup"]),
            ("TakeBackup", &["AwaitApproval"]),
            ("AwaitApproval", &["RemoveMember"]),
            ("RemoveMember", &["QuorumGuardOff"]),
            ("QuorumGuardOff", &["DeleteSecrets", "GuardOnThenHalt", "UndoQuorumGuard"]),
            ("DeleteSecrets", &["ReplaceMachine.SaveSpec", "ReplaceMachine.CpmsDelete", "GuardOnThenHalt", "UndoQuorumGuard"]),
            ("ReplaceMachine.SaveSpec", &["ReplaceMachine.DeleteOld", "GuardOnThenHalt", "UndoQuorumGuard"]),
            ("ReplaceMachine.DeleteOld", &["ReplaceMachine.WaitDeleted", "GuardOnThenHalt", "UndoQuorumGuard"]),
            ("ReplaceMachine.WaitDeleted", &["ReplaceMachine.Create", "GuardOnThenHalt", "UndoQuorumGuard"]),
            ("ReplaceMachine.Create", &["ReplaceMachine.WaitRunning", "GuardOnThenHalt", "UndoQuorumGuard"]),
            ("ReplaceMachine.WaitRunning", &["QuorumGuardOn", "GuardOnThenHalt", "UndoQuorumGuard"]),
            ("ReplaceMachine.CpmsDelete", &["ReplaceMachine.WaitReplacement", "GuardOnThenHalt", "UndoQuorumGuard"]),
            ("ReplaceMachine.WaitReplacement", &["QuorumGuardOn", "GuardOnThenHalt", "UndoQuorumGuard"]),
            ("QuorumGuardOn", &["VerifyPods", "GuardOnThenHalt", "UndoQuorumGuard"]),
            ("VerifyPods", &["VerifyMembers", "ForceRedeployment"]),
            ("ForceRedeployment", &["VerifyPods"]),
            ("VerifyMembers", &["VerifyControlPlane"]),
            ("VerifyControlPlane", &[]),
            ("GuardOnThenHalt", &["ResumeGuardOff", "UndoQuorumGuard"]),
            (
                "ResumeGuardOff",
                &[
                    "QuorumGuardOff",
                    "DeleteSecrets",
                    "ReplaceMachine.SaveSpec",
                    "ReplaceMachine.DeleteOld",
                    "ReplaceMachine.WaitDeleted",
                    "ReplaceMachine.Create",
                    "ReplaceMachine.WaitRunning",
                    "ReplaceMachine.CpmsDelete",
                    "ReplaceMachine.WaitReplacement",
                    "QuorumGuardOn",
                    "GuardOnThenHalt",
                    "UndoQuorumGuard",
                ],
            ),
            ("UndoQuorumGuard", &[]),
        ]
    }
}
