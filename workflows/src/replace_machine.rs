//! Deleting lost control-plane machines and creating them again under the next free name, one
//! machine at a time (OpenShift Container Platform 4.14 Backup and restore §5.4.2.2 step 16; the
//! same sequence replaces a member's machine in §5.2.4.1). A procedure keeps a [`Replacement`]
//! in its state and maps each [`Progress`] onto its own states.

use crate::machines::{machine_for_recreate, next_machine_name};
use crate::ports::{ClusterApi, HostRef, MachinePhase};
use drctl_runtime::StepError;
use serde::{Deserialize, Serialize};

/// Where the replacement of one machine stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReplaceMachine {
    /// Save the old machine's manifest, edited for re-creation under the next free name.
    SaveSpec {
        old: String,
    },
    DeleteOld {
        old: String,
        new_name: String,
        manifest: serde_json::Value,
    },
    WaitDeleted {
        old: String,
        new_name: String,
        manifest: serde_json::Value,
    },
    Create {
        new_name: String,
        manifest: serde_json::Value,
    },
    WaitRunning {
        new_name: String,
    },
    /// With an Active control plane machine set: only delete the old machine; the set's
    /// controller creates the replacement (creating one as well would make two).
    CpmsDelete {
        old: String,
        /// The machines that existed before the deletion: the replacement is not among them.
        known: Vec<String>,
    },
    /// Wait until the machine set's replacement for `old` runs.
    WaitReplacement {
        old: String,
        known: Vec<String>,
    },
}

impl ReplaceMachine {
    /// `ReplaceMachine.SaveSpec(master-1)`, as a procedure's `state_name` shows it.
    pub fn state_name(&self) -> String {
        match self {
            ReplaceMachine::SaveSpec { old } => format!("ReplaceMachine.SaveSpec({old})"),
            ReplaceMachine::DeleteOld { old, .. } => format!("ReplaceMachine.DeleteOld({old})"),
            ReplaceMachine::WaitDeleted { old, .. } => format!("ReplaceMachine.WaitDeleted({old})"),
            ReplaceMachine::Create { new_name, .. } => format!("ReplaceMachine.Create({new_name})"),
            ReplaceMachine::WaitRunning { new_name } => format!("ReplaceMachine.WaitRunning({new_name})"),
            ReplaceMachine::CpmsDelete { old, .. } => format!("ReplaceMachine.CpmsDelete({old})"),
            ReplaceMachine::WaitReplacement { old, .. } => format!("ReplaceMachine.WaitReplacement({old})"),
        }
    }
}

/// What one step of a replacement sequence decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Go on with `current`; `created` lists the machines created so far, in `todo` order.
    Next { current: ReplaceMachine, created: Vec<String> },
    /// Every machine of `todo` was replaced and is Running.
    AllReplaced,
    /// The condition of `current` does not hold yet.
    Wait { what: String, recheck_secs: u64, bound_mins: u64 },
    /// A person must look.
    Halt { reason: String, evidence: Vec<String> },
}

fn halt(reason: String, evidence: Vec<String>) -> Result<Progress, StepError> {
    Ok(Progress::Halt { reason, evidence })
}

fn wait(what: String, recheck_secs: u64, bound_mins: u64) -> Result<Progress, StepError> {
    Ok(Progress::Wait { what, recheck_secs, bound_mins })
}

/// One step of replacing the machines `todo` in order, `created` so far, `current` the one in
/// hand. The machine of `keep` (the recovery host) is never touched: a bug if it is asked to.
pub fn step(
    api: &dyn ClusterApi,
    keep: &HostRef,
    todo: &[String],
    created: &[String],
    current: &ReplaceMachine,
) -> Result<Progress, StepError> {
    let go = |current: ReplaceMachine, created: Vec<String>| Ok(Progress::Next { current, created });
    match current {
        ReplaceMachine::SaveSpec { old } => {
            let Some(m) = api.get_machine(old).map_err(|e| e.during(format!("get machine {old}")))? else {
                return halt(format!("machine {old} disappeared before it was saved; re-create it by hand and resume"), vec![]);
            };
            // Never the kept host's machine: checked against the live object.
            if m.node.as_deref() == Some(keep.node.as_str()) {
                return Err(StepError::Bug(format!("machine {old} belongs to the recovery host {}", keep.name)));
            }
            let names = api.list_machines().map_err(|e| e.during("list machines"))?;
            let taken = names.iter().map(|m| m.name.as_str()).chain(created.iter().map(String::as_str));
            let Some(new_name) = next_machine_name(old, taken) else {
                return halt(format!("cannot derive a new name from machine {old} (expected <base>-<index>)"), vec![]);
            };
            let manifest = machine_for_recreate(&m.manifest, &new_name);
            go(ReplaceMachine::DeleteOld { old: old.clone(), new_name, manifest }, created.to_vec())
        }
        ReplaceMachine::DeleteOld { old, new_name, manifest } => {
            api.delete_machine(old).map_err(|e| e.during(format!("delete machine {old}")))?;
            let next = ReplaceMachine::WaitDeleted { old: old.clone(), new_name: new_name.clone(), manifest: manifest.clone() };
            go(next, created.to_vec())
        }
        ReplaceMachine::WaitDeleted { old, new_name, manifest } => {
            match api.get_machine(old).map_err(|e| e.during(format!("get machine {old}")))? {
                Some(m) => wait(format!("machine {old} to be deleted (phase {})", m.phase), 20, 30),
                None => go(ReplaceMachine::Create { new_name: new_name.clone(), manifest: manifest.clone() }, created.to_vec()),
            }
        }
        ReplaceMachine::Create { new_name, manifest } => {
            api.create_machine(manifest).map_err(|e| e.during(format!("create machine {new_name}")))?;
            let mut created = created.to_vec();
            created.push(new_name.clone());
            go(ReplaceMachine::WaitRunning { new_name: new_name.clone() }, created)
        }
        ReplaceMachine::WaitRunning { new_name } => {
            match api.get_machine(new_name).map_err(|e| e.during(format!("get machine {new_name}")))? {
                // `created` grows by one per machine, in `todo` order.
                Some(m) if m.phase == MachinePhase::Running => match todo.get(created.len()) {
                    Some(old) => go(ReplaceMachine::SaveSpec { old: old.clone() }, created.to_vec()),
                    None => Ok(Progress::AllReplaced),
                },
                Some(m) if m.phase == MachinePhase::Failed => {
                    halt(format!("machine {new_name} failed to provision"), vec![m.manifest.to_string()])
                }
                Some(m) => wait(format!("machine {new_name} Running (phase {})", m.phase), 30, 45),
                None => halt(format!("machine {new_name} vanished after it was created"), vec![]),
            }
        }
        ReplaceMachine::CpmsDelete { old, known } => {
            api.delete_machine(old).map_err(|e| e.during(format!("delete machine {old}")))?;
            go(ReplaceMachine::WaitReplacement { old: old.clone(), known: known.clone() }, created.to_vec())
        }
        ReplaceMachine::WaitReplacement { old, known } => {
            let machines = api.list_machines().map_err(|e| e.during("list machines"))?;
            let fresh: Vec<&crate::ports::MachineInfo> =
                machines.iter().filter(|m| m.control_plane && !known.contains(&m.name) && !created.contains(&m.name)).collect();
            match fresh.first() {
                Some(m) if m.phase == MachinePhase::Running => {
                    let mut created = created.to_vec();
                    created.push(m.name.clone());
                    match todo.get(created.len()) {
                        Some(next) => {
                            let known = machines.iter().map(|m| m.name.clone()).collect();
                            go(ReplaceMachine::CpmsDelete { old: next.clone(), known }, created)
                        }
                        None => Ok(Progress::AllReplaced),
                    }
                }
                Some(m) if m.phase == MachinePhase::Failed => {
                    halt(format!("machine {} (the control plane machine set's replacement for {old}) failed to provision", m.name), vec![])
                }
                Some(m) => wait(format!("machine {} (replacing {old}) Running (phase {})", m.name, m.phase), 30, 45),
                None => wait(format!("the control plane machine set to create a replacement for {old}"), 20, 30),
            }
        }
    }
}
