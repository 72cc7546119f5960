//! `replace-etcd-member-baremetal`: replace the unhealthy etcd member of a bare metal
//! installer-provisioned cluster, its machine and its BareMetalHost (OpenShift Container
//! Platform 4.14 Backup and restore §5.2.4.3, "Replacing an unhealthy bare metal etcd member
//! whose machine is not running or whose node is not ready").
//!
//! The guards of the other replacements first, plus one of its own: the BMC address and boot
//! MAC given for the new host belong to no other BareMetalHost (pointing them at a healthy
//! control-plane server would provision over it). Then a backup, a gate, and the runbook's
//! steps in order. The BMC credentials are read from their file at the step that writes the
//! secret and go nowhere else: the run records the file's path. From turning the quorum guard
//! off until it is on again, every way out turns it back on first.

use crate::bmc::{self, BmcCredentials};
use crate::etcd_member::*;
use crate::machines::{bare_metal_host_of, machine_for_recreate, next_machine_name};
use crate::ports::*;
use drctl_runtime::{Procedure, Step, StepContext, StepError};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberBaremetalParams {
    /// The node of the unhealthy member (the member's name).
    pub node: String,
    /// A backup set already taken, instead of taking one first.
    #[serde(default)]
    pub backup: Option<String>,
    /// The new host's BMC (`redfish://10.46.61.18:443/redfish/v1/Systems/1`).
    #[serde(default)]
    pub bmc_address: String,
    /// The MAC address of the new host's provisioning NIC (lowercase).
    #[serde(default)]
    pub boot_mac_address: String,
    /// The path of the YAML file with the BMC `username` and `password`: only the path is
    /// kept; the file is read when the secret is written.
    #[serde(default)]
    pub bmc_credentials: String,
}

/// The command line of `drctl run replace-etcd-member-baremetal`.
#[derive(clap::Args, Debug)]
pub struct MemberBaremetalArgs {
    /// The node of the unhealthy etcd member (as `oc get nodes` and EtcdMembersAvailable name it).
    #[arg(long)]
    node: String,
    /// Use this backup set (already in the backup location) instead of taking one first.
    #[arg(long)]
    backup: Option<String>,
    #[command(flatten)]
    host: NewHostArgs,
}

/// Where the new BareMetalHost's BMC is and how it boots: the flags the bare metal replacement
/// needs (also taken by `etcd-member-triage`, which passes them on).
#[derive(clap::Args, Debug, Clone)]
pub struct NewHostArgs {
    /// The new host's BMC URL (e.g. redfish://10.46.61.18:443/redfish/v1/Systems/1).
    #[arg(long, value_name = "URL")]
    pub bmc_address: Option<String>,
    /// The MAC address of the new host's provisioning NIC (e.g. 48:df:37:b0:8a:a0).
    #[arg(long, value_name = "MAC")]
    pub boot_mac_address: Option<String>,
    /// A YAML file with the BMC `username` and `password`. Only its path is recorded; it is read
    /// when the BMC secret is created.
    #[arg(long, value_name = "FILE")]
    pub bmc_credentials: Option<std::path::PathBuf>,
}

impl NewHostArgs {
    /// The three as params (the credentials file made absolute, so a resume from another
    /// directory finds it); absent ones are null and refused by `validate`.
    pub fn to_params(&self) -> serde_json::Value {
        let file = self.bmc_credentials.as_ref().map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone()).display().to_string());
        let mac = self.boot_mac_address.as_ref().map(|m| bmc::normalize_mac(m).unwrap_or_else(|_| m.clone()));
        let given = [("bmc_address", self.bmc_address.clone()), ("boot_mac_address", mac), ("bmc_credentials", file)];
        serde_json::Value::Object(given.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?.into()))).collect())
    }

    /// Whether any of the three was given.
    pub fn any(&self) -> bool {
        self.bmc_address.is_some() || self.boot_mac_address.is_some() || self.bmc_credentials.is_some()
    }
}

impl crate::catalog::IntoParams for MemberBaremetalArgs {
    fn into_params(self) -> serde_json::Value {
        let mut p = self.host.to_params();
        p["node"] = self.node.into();
        if let Some(b) = self.backup {
            p["backup"] = b.into();
        }
        p
    }
}

/// The member being replaced and the BareMetalHost its machine is bound to (the new host gets
/// the same name, as the runbook creates it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub member: Member,
    pub host: String,
}

/// The old machine as saved before it is deleted, edited for re-creation under `name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub name: String,
    pub manifest: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MemberBaremetalState {
    /// The member is unhealthy, the other control-plane nodes are Ready, the rest keep quorum,
    /// the machine names its BareMetalHost, and the new BMC and MAC are no other host's.
    CheckMember,
    /// §5.2.1: an etcd backup before anything changes.
    TakeBackup { t: Target },
    /// A person approves removing this member and re-provisioning its host.
    AwaitApproval { t: Target },
    /// Step 1: `etcdctl member remove` from the etcd pod of a healthy node.
    RemoveMember { t: Target },
    /// Step 2: quorum guard off.
    QuorumGuardOff { t: Target },
    /// Step 3: the member's peer, serving and metrics secrets.
    DeleteSecrets { t: Target },
    /// Steps 4–5: save the machine, edited for re-creation under the next free name.
    SaveMachine { t: Target },
    /// Step 6: the `baremetal` cluster operator is Available.
    CheckBaremetalOperator { t: Target, saved: Saved },
    /// Step 7: delete the old BareMetalHost.
    DeleteHost { t: Target, saved: Saved },
    /// Step 8: delete the machine.
    DeleteMachine { t: Target, saved: Saved },
    /// Step 9: the machine is gone. Never interrupted; if it hangs, its finalizer goes.
    WaitMachineDeleted { t: Target, saved: Saved },
    /// Step 8, when the deletion hangs: remove the machine's finalizers.
    RemoveFinalizer { t: Target, saved: Saved },
    /// Step 10: the node is gone (deleted here if its machine went without taking it).
    WaitNodeGone { t: Target, saved: Saved },
    /// Step 11: the BMC secret, from the credentials file.
    CreateBmcSecret { t: Target, saved: Saved },
    /// Step 11: the new BareMetalHost (`externallyProvisioned: false`).
    CreateHost { t: Target, saved: Saved },
    /// Step 12: the host registered, inspected and `available`.
    WaitHostAvailable { t: Target, saved: Saved },
    /// Resumed after the new host failed to register or inspect: delete it, then write the
    /// secret and the host again (the credentials file is read again).
    RecreateHost { t: Target, saved: Saved },
    /// Step 13.1: create the machine from the saved manifest.
    CreateMachine { t: Target, saved: Saved },
    /// Step 13.3: the host `provisioned` for the new machine, without error.
    WaitHostProvisioned { t: Target, saved: Saved },
    /// Step 13.4: the machine Running and its node Ready.
    WaitNodeReady { t: Target, saved: Saved },
    /// Step 13 (after the node): quorum guard back on.
    QuorumGuardOn { t: Target },
    /// Verification 1: three etcd pods running; if only two after a while, force a redeployment.
    VerifyPods { t: Target, forced: Option<String> },
    /// Verification 1, the remedy: `forceRedeploymentReason`, recorded here before it is written.
    ForceRedeployment { t: Target, reason: String },
    /// Verification 2: exactly three started, healthy members.
    VerifyMembers { t: Target },
    /// Every static pod at its latest revision on the new node, no operator progressing.
    VerifyControlPlane { t: Target },
    /// A halt after step 2: the guard goes back on, then the run halts with `reason`. Resumed,
    /// it turns the guard off again and goes on from `resume`.
    GuardOnThenHalt { reason: String, evidence: Vec<String>, resume: Box<MemberBaremetalState> },
    /// Resumed after such a halt: quorum guard off again, then `resume`.
    ResumeGuardOff { resume: Box<MemberBaremetalState> },
    /// An abort after step 2: the guard goes back on.
    UndoQuorumGuard,
}

pub struct ReplaceEtcdMemberBaremetal;

/// How long a machine may stay in deletion before its finalizer is removed (§5.2.4.3 step 8:
/// "if deletion of the machine is delayed").
const DELETION_PATIENCE: Duration = Duration::from_secs(10 * 60);
/// How long a new host may report a registration or inspection error before the run halts
/// (the operator retries; a wrong address, MAC or password does not fix itself).
const HOST_ERROR_PATIENCE: Duration = Duration::from_secs(10 * 60);

impl MemberBaremetalState {
    /// The quorum guard may be off (it was turned off, and not yet back on).
    fn guard_may_be_off(&self) -> bool {
        use MemberBaremetalState::*;
        !matches!(
            self,
            CheckMember
                | TakeBackup { .. }
                | AwaitApproval { .. }
                | RemoveMember { .. }
                | VerifyPods { .. }
                | ForceRedeployment { .. }
                | VerifyMembers { .. }
                | VerifyControlPlane { .. }
                | GuardOnThenHalt { .. }
                | UndoQuorumGuard
        )
    }

    /// Where a run halted in this state goes on from once it is resumed.
    fn resume_point(&self) -> MemberBaremetalState {
        match self {
            MemberBaremetalState::ResumeGuardOff { resume } => (**resume).clone(),
            other => other.clone(),
        }
    }

    fn target(&self) -> Option<&Target> {
        use MemberBaremetalState::*;
        match self {
            TakeBackup { t }
            | AwaitApproval { t }
            | RemoveMember { t }
            | QuorumGuardOff { t }
            | DeleteSecrets { t }
            | SaveMachine { t }
            | CheckBaremetalOperator { t, .. }
            | DeleteHost { t, .. }
            | DeleteMachine { t, .. }
            | WaitMachineDeleted { t, .. }
            | RemoveFinalizer { t, .. }
            | WaitNodeGone { t, .. }
            | CreateBmcSecret { t, .. }
            | CreateHost { t, .. }
            | WaitHostAvailable { t, .. }
            | RecreateHost { t, .. }
            | CreateMachine { t, .. }
            | WaitHostProvisioned { t, .. }
            | WaitNodeReady { t, .. }
            | QuorumGuardOn { t }
            | VerifyPods { t, .. }
            | ForceRedeployment { t, .. }
            | VerifyMembers { t }
            | VerifyControlPlane { t } => Some(t),
            CheckMember | GuardOnThenHalt { .. } | ResumeGuardOff { .. } | UndoQuorumGuard => None,
        }
    }
}

fn next(s: MemberBaremetalState) -> Result<Step<MemberBaremetalState>, StepError> {
    Ok(Step::Next(s))
}

fn halt(reason: String, evidence: Vec<String>) -> Result<Step<MemberBaremetalState>, StepError> {
    Ok(Step::Halt { reason, evidence })
}

fn host_named<'a>(hosts: &'a [BareMetalHostInfo], name: &str) -> Option<&'a BareMetalHostInfo> {
    hosts.iter().find(|h| h.name == name)
}

fn describe_host(h: &BareMetalHostInfo) -> String {
    format!(
        "baremetalhost {}: {} (consumer {}, powered {}, bmc {}, boot MAC {}{})",
        h.name,
        if h.state.is_empty() { "-" } else { &h.state },
        h.consumer.as_deref().unwrap_or("-"),
        if h.powered_on { "on" } else { "off" },
        h.bmc_address,
        h.boot_mac_address,
        h.error.as_ref().map_or(String::new(), |e| format!(", error: {e}"))
    )
}

/// Hosts other than `own` that already use the BMC address or boot MAC given for the new host.
fn conflicting_hosts(hosts: &[BareMetalHostInfo], own: &str, p: &MemberBaremetalParams) -> Vec<String> {
    hosts
        .iter()
        .filter(|h| h.name != own)
        .filter(|h| h.bmc_address == p.bmc_address || h.boot_mac_address.eq_ignore_ascii_case(&p.boot_mac_address))
        .map(describe_host)
        .collect()
}

impl ReplaceEtcdMemberBaremetal {
    fn check_member(&self, ports: &Ports, p: &MemberBaremetalParams) -> Result<Step<MemberBaremetalState>, StepError> {
        if let Err(why) = bmc::read_credentials(Path::new(&p.bmc_credentials)) {
            return halt(format!("{why}: fix it (drctl resume RUN --set bmc_credentials=FILE for another file), then resume"), vec![]);
        }
        let trouble = other_control_plane_trouble(&*ports.api, &p.node)?;
        if !trouble.is_empty() {
            return halt(
                format!(
                    "another control-plane node is not ready: replacing {} now could lose quorum; bring it back first, then resume",
                    p.node
                ),
                trouble,
            );
        }
        let layout = ports.api.machine_layout().map_err(|e| e.during("read infrastructure/cluster"))?;
        if layout.platform != "BareMetal" {
            return halt(
                format!("this cluster's platform is {}, not BareMetal: use replace-etcd-member-machine (OpenShift Container Platform 4.14 Backup and restore §5.2.4.1)", layout.platform),
                vec![],
            );
        }
        let ops = ports.api.cluster_operators().map_err(|e| e.during("list cluster operators"))?;
        if !ops.iter().any(|o| o.name == "baremetal") {
            return halt("there is no baremetal cluster operator: this is not an installer-provisioned bare metal cluster; replace the host the way it was created".into(), vec![]);
        }
        let machines = ports.api.list_machines().map_err(|e| e.during("list machines"))?;
        let Some(machine) = machines.iter().find(|m| m.node.as_deref() == Some(p.node.as_str())) else {
            return halt(
                format!(
                    "node {} has no Machine: re-create its host the way the control plane was created, then replace the member by hand",
                    p.node
                ),
                machines.iter().map(|m| format!("machine {} (node {})", m.name, m.node.as_deref().unwrap_or("-"))).collect(),
            );
        };
        let Some(host) = bare_metal_host_of(&machine.manifest) else {
            return halt(
                format!("machine {} names no BareMetalHost (no metal3.io/BareMetalHost annotation or provider id)", machine.name),
                vec![],
            );
        };
        let hosts = ports.api.list_bare_metal_hosts().map_err(|e| e.during("list baremetalhosts"))?;
        let conflicts = conflicting_hosts(&hosts, &host, p);
        if !conflicts.is_empty() {
            return halt(
                format!(
                    "--bmc-address {} or --boot-mac-address {} already belongs to another BareMetalHost: provisioning it would wipe that server; give the new server's own (drctl resume RUN --set …)",
                    p.bmc_address, p.boot_mac_address
                ),
                conflicts,
            );
        }
        match member_to_remove(ports, &p.node, Some(machine.name.clone()))? {
            Ok(member) => next(MemberBaremetalState::TakeBackup { t: Target { member, host } }),
            Err((reason, evidence)) => halt(reason, evidence),
        }
    }

    fn await_approval(&self, cx: &StepContext, p: &MemberBaremetalParams, t: &Target) -> Result<Step<MemberBaremetalState>, StepError> {
        let prompt = format!(
            "Remove etcd member {:x} ({}), delete BareMetalHost {} and machine {}, and provision the server at {} (boot MAC {}) in their place? etcd runs on two members until the new one joins.",
            t.member.id,
            t.member.node,
            t.host,
            t.member.machine.as_deref().unwrap_or("-"),
            p.bmc_address,
            p.boot_mac_address
        );
        let evidence = vec![format!("etcdctl runs in etcd-{}", t.member.via), format!("BMC credentials from {}", p.bmc_credentials)];
        remove_gate(cx, prompt, evidence, MemberBaremetalState::RemoveMember { t: t.clone() })
    }

    fn save_machine(&self, ports: &Ports, t: &Target) -> Result<Step<MemberBaremetalState>, StepError> {
        let old = t.member.machine.as_deref().ok_or_else(|| StepError::Bug("no machine recorded".into()))?;
        let Some(m) = ports.api.get_machine(old).map_err(|e| e.during(format!("get machine {old}")))? else {
            return halt(format!("machine {old} disappeared before it was saved; re-create it by hand and resume"), vec![]);
        };
        if m.node.as_deref().is_some_and(|n| n != t.member.node) {
            return Err(StepError::Bug(format!("machine {old} now belongs to node {}", m.node.unwrap_or_default())));
        }
        let machines = ports.api.list_machines().map_err(|e| e.during("list machines"))?;
        let Some(name) = next_machine_name(old, machines.iter().map(|m| m.name.as_str())) else {
            return halt(format!("cannot derive a new name from machine {old} (expected <base>-<index>)"), vec![]);
        };
        let manifest = machine_for_recreate(&m.manifest, &name);
        next(MemberBaremetalState::CheckBaremetalOperator { t: t.clone(), saved: Saved { name, manifest } })
    }

    fn check_baremetal_operator(
        &self,
        ports: &Ports,
        cx: &StepContext,
        t: &Target,
        saved: &Saved,
    ) -> Result<Step<MemberBaremetalState>, StepError> {
        let ops = ports.api.cluster_operators().map_err(|e| e.during("get clusteroperator baremetal"))?;
        match ops.iter().find(|o| o.name == "baremetal") {
            Some(o) if o.available => next(MemberBaremetalState::DeleteHost { t: t.clone(), saved: saved.clone() }),
            Some(o) => bounded_wait(
                cx,
                format!("the baremetal cluster operator Available (available {}, degraded {})", o.available, o.degraded),
                Duration::from_secs(30),
                Duration::from_secs(30 * 60),
            ),
            None => halt("there is no baremetal cluster operator: this is not an installer-provisioned bare metal cluster".into(), vec![]),
        }
    }

    /// Delete the old host only while it is still the one the member's machine is bound to.
    fn delete_host(&self, ports: &Ports, t: &Target, saved: &Saved) -> Result<Step<MemberBaremetalState>, StepError> {
        let hosts = ports.api.list_bare_metal_hosts().map_err(|e| e.during("list baremetalhosts"))?;
        let machine = t.member.machine.as_deref().unwrap_or_default();
        if let Some(h) = host_named(&hosts, &t.host).filter(|h| !h.deleting) {
            if h.consumer.as_deref().is_some_and(|c| c != machine) {
                return halt(
                    format!(
                        "baremetalhost {} is bound to machine {}, not {machine}: not deleting it",
                        t.host,
                        h.consumer.as_deref().unwrap_or("-")
                    ),
                    vec![describe_host(h)],
                );
            }
            ports.api.delete_bare_metal_host(&t.host).map_err(|e| e.during(format!("delete baremetalhost {}", t.host)))?;
        }
        next(MemberBaremetalState::DeleteMachine { t: t.clone(), saved: saved.clone() })
    }

    fn wait_machine_deleted(
        &self,
        ports: &Ports,
        cx: &StepContext,
        t: &Target,
        saved: &Saved,
    ) -> Result<Step<MemberBaremetalState>, StepError> {
        let old = t.member.machine.as_deref().unwrap_or_default();
        let Some(m) = ports.api.get_machine(old).map_err(|e| e.during(format!("get machine {old}")))? else {
            return next(MemberBaremetalState::WaitNodeGone { t: t.clone(), saved: saved.clone() });
        };
        let waited = cx.waiting_since.map_or(Duration::ZERO, |since| cx.now.since(since));
        let finalizers = m.manifest.pointer("/metadata/finalizers").and_then(serde_json::Value::as_array).is_some_and(|f| !f.is_empty());
        if waited >= DELETION_PATIENCE && finalizers {
            return next(MemberBaremetalState::RemoveFinalizer { t: t.clone(), saved: saved.clone() });
        }
        let what = format!(
            "machine {old} to be deleted (phase {}; a finalizer left after {} min is removed)",
            m.phase,
            DELETION_PATIENCE.as_secs() / 60
        );
        bounded_wait(cx, what, Duration::from_secs(30), DELETION_PATIENCE * 2)
    }

    /// The node goes with its machine; one left behind (the finalizer was removed) is deleted
    /// here, but only while it is NotReady: a Ready node of that name is not the lost one.
    fn wait_node_gone(&self, ports: &Ports, cx: &StepContext, t: &Target, saved: &Saved) -> Result<Step<MemberBaremetalState>, StepError> {
        let nodes = ports.api.list_nodes().map_err(|e| e.during("list nodes"))?;
        let Some(n) = nodes.iter().find(|n| n.name == t.member.node) else {
            return next(MemberBaremetalState::CreateBmcSecret { t: t.clone(), saved: saved.clone() });
        };
        if n.ready {
            return halt(format!("node {} is Ready again after its machine was deleted: look before going on", n.name), vec![]);
        }
        let waited = cx.waiting_since.map_or(Duration::ZERO, |since| cx.now.since(since));
        if waited >= Duration::from_secs(60) {
            ports.api.delete_node(&n.name).map_err(|e| e.during(format!("delete node {}", n.name)))?;
        }
        bounded_wait(cx, format!("node {} to be deleted", n.name), Duration::from_secs(20), Duration::from_secs(20 * 60))
    }

    fn create_bmc_secret(
        &self,
        ports: &Ports,
        p: &MemberBaremetalParams,
        t: &Target,
        saved: &Saved,
    ) -> Result<Step<MemberBaremetalState>, StepError> {
        let credentials: BmcCredentials = match bmc::read_credentials(Path::new(&p.bmc_credentials)) {
            Ok(c) => c,
            Err(why) => return halt(format!("{why}: fix the file and resume"), vec![]),
        };
        let name = bmc::secret_name(&t.host);
        ports.api.apply_bmc_secret(&name, &credentials).map_err(|e| e.during(format!("create secret openshift-machine-api/{name}")))?;
        next(MemberBaremetalState::CreateHost { t: t.clone(), saved: saved.clone() })
    }

    fn create_host(
        &self,
        ports: &Ports,
        cx: &StepContext,
        p: &MemberBaremetalParams,
        t: &Target,
        saved: &Saved,
    ) -> Result<Step<MemberBaremetalState>, StepError> {
        let hosts = ports.api.list_bare_metal_hosts().map_err(|e| e.during("list baremetalhosts"))?;
        let conflicts = conflicting_hosts(&hosts, &t.host, p);
        if !conflicts.is_empty() {
            return halt(
                format!("the BMC address or boot MAC of the new host now belongs to another BareMetalHost: not creating {}", t.host),
                conflicts,
            );
        }
        if let Some(h) = host_named(&hosts, &t.host) {
            if h.deleting || h.bmc_address != p.bmc_address {
                let what = format!("the old baremetalhost {} to be gone ({})", t.host, describe_host(h));
                return bounded_wait(cx, what, Duration::from_secs(20), Duration::from_secs(30 * 60));
            }
        }
        let new = NewBareMetalHost {
            name: t.host.clone(),
            bmc_address: p.bmc_address.clone(),
            boot_mac_address: p.boot_mac_address.clone(),
            credentials_name: bmc::secret_name(&t.host),
        };
        ports.api.create_bare_metal_host(&new).map_err(|e| e.during(format!("create baremetalhost {}", t.host)))?;
        next(MemberBaremetalState::WaitHostAvailable { t: t.clone(), saved: saved.clone() })
    }

    fn wait_host_available(
        &self,
        ports: &Ports,
        cx: &StepContext,
        t: &Target,
        saved: &Saved,
    ) -> Result<Step<MemberBaremetalState>, StepError> {
        let hosts = ports.api.list_bare_metal_hosts().map_err(|e| e.during("list baremetalhosts"))?;
        let Some(h) = host_named(&hosts, &t.host) else {
            return halt(format!("baremetalhost {} vanished after it was created", t.host), vec![]);
        };
        if h.state == "available" && h.error.is_none() {
            return next(MemberBaremetalState::CreateMachine { t: t.clone(), saved: saved.clone() });
        }
        let waited = cx.waiting_since.map_or(Duration::ZERO, |since| cx.now.since(since));
        if h.error.is_some() && waited >= HOST_ERROR_PATIENCE {
            return next(MemberBaremetalState::GuardOnThenHalt {
                reason: format!(
                    "baremetalhost {} did not become available: check the BMC address, boot MAC and credentials file; a wrong credentials file can be fixed in place; resuming deletes the host and creates it again",
                    t.host
                ),
                evidence: vec![describe_host(h)],
                resume: Box::new(MemberBaremetalState::RecreateHost { t: t.clone(), saved: saved.clone() }),
            });
        }
        bounded_wait(cx, format!("{} to become available", describe_host(h)), Duration::from_secs(30), Duration::from_secs(60 * 60))
    }

    fn recreate_host(&self, ports: &Ports, cx: &StepContext, t: &Target, saved: &Saved) -> Result<Step<MemberBaremetalState>, StepError> {
        let hosts = ports.api.list_bare_metal_hosts().map_err(|e| e.during("list baremetalhosts"))?;
        match host_named(&hosts, &t.host) {
            None => next(MemberBaremetalState::CreateBmcSecret { t: t.clone(), saved: saved.clone() }),
            Some(h) if h.consumer.is_some() => halt(
                format!("baremetalhost {} is already bound to machine {}: not deleting it", t.host, h.consumer.as_deref().unwrap_or("-")),
                vec![describe_host(h)],
            ),
            Some(h) => {
                if !h.deleting {
                    ports.api.delete_bare_metal_host(&t.host).map_err(|e| e.during(format!("delete baremetalhost {}", t.host)))?;
                }
                bounded_wait(cx, format!("baremetalhost {} to be deleted", t.host), Duration::from_secs(20), Duration::from_secs(30 * 60))
            }
        }
    }

    fn wait_host_provisioned(
        &self,
        ports: &Ports,
        cx: &StepContext,
        t: &Target,
        saved: &Saved,
    ) -> Result<Step<MemberBaremetalState>, StepError> {
        let hosts = ports.api.list_bare_metal_hosts().map_err(|e| e.during("list baremetalhosts"))?;
        let Some(h) = host_named(&hosts, &t.host) else {
            return halt(format!("baremetalhost {} vanished while machine {} was being created", t.host, saved.name), vec![]);
        };
        if h.state == "provisioned" && h.error.is_none() && h.consumer.as_deref() == Some(saved.name.as_str()) {
            return next(MemberBaremetalState::WaitNodeReady { t: t.clone(), saved: saved.clone() });
        }
        if h.consumer.as_deref().is_some_and(|c| c != saved.name) {
            return halt(
                format!("baremetalhost {} was claimed by machine {}, not {}", t.host, h.consumer.as_deref().unwrap_or("-"), saved.name),
                vec![describe_host(h)],
            );
        }
        let waited = cx.waiting_since.map_or(Duration::ZERO, |since| cx.now.since(since));
        if h.error.is_some() && waited >= HOST_ERROR_PATIENCE {
            return halt(
                format!("baremetalhost {} reports an error while provisioning machine {}", t.host, saved.name),
                vec![describe_host(h)],
            );
        }
        bounded_wait(
            cx,
            format!("{} to be provisioned for machine {}", describe_host(h), saved.name),
            Duration::from_secs(30),
            Duration::from_secs(90 * 60),
        )
    }

    fn wait_node_ready(&self, ports: &Ports, cx: &StepContext, t: &Target, saved: &Saved) -> Result<Step<MemberBaremetalState>, StepError> {
        let Some(m) = ports.api.get_machine(&saved.name).map_err(|e| e.during(format!("get machine {}", saved.name)))? else {
            return halt(format!("machine {} vanished after it was created", saved.name), vec![]);
        };
        if m.phase == MachinePhase::Failed {
            return halt(format!("machine {} failed to provision", saved.name), vec![m.manifest.to_string()]);
        }
        let nodes = ports.api.list_nodes().map_err(|e| e.during("list nodes"))?;
        let node = m.node.as_deref().and_then(|n| nodes.iter().find(|x| x.name == n));
        if m.phase == MachinePhase::Running && node.is_some_and(|n| n.ready) {
            return next(MemberBaremetalState::QuorumGuardOn { t: t.clone() });
        }
        let what = format!(
            "machine {} Running (phase {}) and its node Ready ({})",
            saved.name,
            m.phase,
            m.node.as_deref().unwrap_or("no node yet")
        );
        bounded_wait(cx, what, Duration::from_secs(30), Duration::from_secs(60 * 60))
    }

    fn step_inner(
        &self,
        ports: &Ports,
        cx: &StepContext,
        p: &MemberBaremetalParams,
        s: &MemberBaremetalState,
    ) -> Result<Step<MemberBaremetalState>, StepError> {
        use MemberBaremetalState::*;
        let go = |t: &Target, saved: &Saved, to: fn(Target, Saved) -> MemberBaremetalState| next(to(t.clone(), saved.clone()));
        match s {
            CheckMember => self.check_member(ports, p),
            TakeBackup { t } => backup_step(ports, cx, p.backup.as_deref(), AwaitApproval { t: t.clone() }),
            AwaitApproval { t } => self.await_approval(cx, p, t),
            RemoveMember { t } => {
                remove_member(ports, &t.member)?;
                next(QuorumGuardOff { t: t.clone() })
            }
            QuorumGuardOff { t } => {
                set_quorum_guard(ports, false)?;
                next(DeleteSecrets { t: t.clone() })
            }
            DeleteSecrets { t } => {
                delete_secrets(&*ports.api, &t.member.node)?;
                next(SaveMachine { t: t.clone() })
            }
            SaveMachine { t } => self.save_machine(ports, t),
            CheckBaremetalOperator { t, saved } => self.check_baremetal_operator(ports, cx, t, saved),
            DeleteHost { t, saved } => self.delete_host(ports, t, saved),
            DeleteMachine { t, saved } => {
                let old = t.member.machine.as_deref().unwrap_or_default();
                ports.api.delete_machine(old).map_err(|e| e.during(format!("delete machine {old}")))?;
                go(t, saved, |t, saved| WaitMachineDeleted { t, saved })
            }
            WaitMachineDeleted { t, saved } => self.wait_machine_deleted(ports, cx, t, saved),
            RemoveFinalizer { t, saved } => {
                let old = t.member.machine.as_deref().unwrap_or_default();
                ports.api.remove_machine_finalizers(old).map_err(|e| e.during(format!("remove the finalizers of machine {old}")))?;
                go(t, saved, |t, saved| WaitMachineDeleted { t, saved })
            }
            WaitNodeGone { t, saved } => self.wait_node_gone(ports, cx, t, saved),
            CreateBmcSecret { t, saved } => self.create_bmc_secret(ports, p, t, saved),
            CreateHost { t, saved } => self.create_host(ports, cx, p, t, saved),
            WaitHostAvailable { t, saved } => self.wait_host_available(ports, cx, t, saved),
            RecreateHost { t, saved } => self.recreate_host(ports, cx, t, saved),
            CreateMachine { t, saved } => {
                ports.api.create_machine(&saved.manifest).map_err(|e| e.during(format!("create machine {}", saved.name)))?;
                go(t, saved, |t, saved| WaitHostProvisioned { t, saved })
            }
            WaitHostProvisioned { t, saved } => self.wait_host_provisioned(ports, cx, t, saved),
            WaitNodeReady { t, saved } => self.wait_node_ready(ports, cx, t, saved),
            QuorumGuardOn { t } => {
                set_quorum_guard(ports, true)?;
                next(VerifyPods { t: t.clone(), forced: None })
            }
            VerifyPods { t, forced } => {
                let force = |reason| ForceRedeployment { t: t.clone(), reason };
                verify_pods(ports, cx, forced.is_some(), VerifyMembers { t: t.clone() }, force)
            }
            ForceRedeployment { t, reason } => {
                ports.api.force_redeployment(Operator::Etcd, reason).map_err(|e| e.during("force an etcd redeployment"))?;
                next(VerifyPods { t: t.clone(), forced: Some(reason.clone()) })
            }
            VerifyMembers { t } => verify_members(ports, &t.member.via, VerifyControlPlane { t: t.clone() }),
            VerifyControlPlane { t } => verify_control_plane(ports, &t.member),
            GuardOnThenHalt { resume, .. } if cx.resumed => next(ResumeGuardOff { resume: resume.clone() }),
            GuardOnThenHalt { reason, evidence, .. } => halt_with_guard_on(ports, reason, evidence),
            ResumeGuardOff { resume } => {
                set_quorum_guard(ports, false)?;
                next((**resume).clone())
            }
            UndoQuorumGuard => undo_quorum_guard(ports),
        }
    }
}

impl Procedure for ReplaceEtcdMemberBaremetal {
    type Env = Ports;
    type Params = MemberBaremetalParams;
    type State = MemberBaremetalState;
    const NAME: &'static str = "replace-etcd-member-baremetal";
    const VERSION: u32 = 1;

    fn validate(&self, p: &MemberBaremetalParams) -> Result<(), String> {
        validate_node(&p.node)?;
        validate_backup(&p.backup)?;
        validate_new_host(&p.bmc_address, &p.boot_mac_address, &p.bmc_credentials)
    }

    fn initial_state(&self, _p: &MemberBaremetalParams) -> MemberBaremetalState {
        MemberBaremetalState::CheckMember
    }

    fn state_name(&self, s: &MemberBaremetalState) -> String {
        use MemberBaremetalState::*;
        let kind = match s {
            CheckMember => "CheckMember",
            TakeBackup { .. } => "TakeBackup",
            AwaitApproval { .. } => "AwaitApproval",
            RemoveMember { t } => return format!("RemoveMember({:x})", t.member.id),
            QuorumGuardOff { .. } => "QuorumGuardOff",
            DeleteSecrets { .. } => "DeleteSecrets",
            SaveMachine { .. } => "SaveMachine",
            CheckBaremetalOperator { .. } => "CheckBaremetalOperator",
            DeleteHost { .. } => "DeleteHost",
            DeleteMachine { .. } => "DeleteMachine",
            WaitMachineDeleted { .. } => "WaitMachineDeleted",
            RemoveFinalizer { .. } => "RemoveFinalizer",
            WaitNodeGone { .. } => "WaitNodeGone",
            CreateBmcSecret { .. } => "CreateBmcSecret",
            CreateHost { .. } => "CreateHost",
            WaitHostAvailable { .. } => "WaitHostAvailable",
            RecreateHost { .. } => "RecreateHost",
            CreateMachine { saved, .. } => return format!("CreateMachine({})", saved.name),
            WaitHostProvisioned { .. } => "WaitHostProvisioned",
            WaitNodeReady { saved, .. } => return format!("WaitNodeReady({})", saved.name),
            QuorumGuardOn { .. } => "QuorumGuardOn",
            VerifyPods { .. } => "VerifyPods",
            ForceRedeployment { .. } => "ForceRedeployment",
            VerifyMembers { .. } => "VerifyMembers",
            VerifyControlPlane { .. } => "VerifyControlPlane",
            GuardOnThenHalt { .. } => "GuardOnThenHalt",
            ResumeGuardOff { resume } => return format!("ResumeGuardOff({})", self.state_name(resume)),
            UndoQuorumGuard => "UndoQuorumGuard",
        };
        match s.target() {
            Some(t)
                if !matches!(
                    s,
                    TakeBackup { .. }
                        | QuorumGuardOff { .. }
                        | QuorumGuardOn { .. }
                        | VerifyPods { .. }
                        | ForceRedeployment { .. }
                        | VerifyMembers { .. }
                        | VerifyControlPlane { .. }
                ) =>
            {
                format!("{kind}({})", t.host)
            }
            _ => kind.into(),
        }
    }

    fn check_state(&self, p: &MemberBaremetalParams, s: &MemberBaremetalState) -> Result<(), String> {
        use MemberBaremetalState::*;
        if let GuardOnThenHalt { resume, .. } | ResumeGuardOff { resume } = s {
            return match **resume {
                GuardOnThenHalt { .. } | ResumeGuardOff { .. } => Err("a resume point inside a resume point".into()),
                ref inner => self.check_state(p, inner),
            };
        }
        let Some(t) = s.target() else { return Ok(()) };
        if t.member.node != p.node {
            return Err(format!("the state names member {} but the run replaces {}", t.member.node, p.node));
        }
        if t.member.via == t.member.node {
            return Err(format!("etcdctl would run in the pod of the member being replaced ({})", t.member.node));
        }
        let Some(old) = t.member.machine.as_deref() else { return Err("no machine recorded for the member".into()) };
        if t.host.is_empty() {
            return Err("no BareMetalHost recorded for the member".into());
        }
        let saved = match s {
            CheckBaremetalOperator { saved, .. }
            | DeleteHost { saved, .. }
            | DeleteMachine { saved, .. }
            | WaitMachineDeleted { saved, .. }
            | RemoveFinalizer { saved, .. }
            | WaitNodeGone { saved, .. }
            | CreateBmcSecret { saved, .. }
            | CreateHost { saved, .. }
            | WaitHostAvailable { saved, .. }
            | RecreateHost { saved, .. }
            | CreateMachine { saved, .. }
            | WaitHostProvisioned { saved, .. }
            | WaitNodeReady { saved, .. } => saved,
            _ => return Ok(()),
        };
        if saved.name == old || saved.manifest["metadata"]["name"] != saved.name.as_str() {
            return Err(format!("the machine to create ({}) must be a new name, and the saved manifest must carry it", saved.name));
        }
        Ok(())
    }

    fn step(
        &self,
        ports: &Ports,
        cx: &StepContext,
        p: &MemberBaremetalParams,
        s: &MemberBaremetalState,
    ) -> Result<Step<MemberBaremetalState>, StepError> {
        let out = self.step_inner(ports, cx, p, s);
        if !s.guard_may_be_off() {
            return out;
        }
        let resume = Box::new(s.resume_point());
        guard_on_before_halt(out, |reason, evidence| MemberBaremetalState::GuardOnThenHalt { reason, evidence, resume })
    }

    fn on_abort(&self, _p: &MemberBaremetalParams, s: &MemberBaremetalState) -> Option<MemberBaremetalState> {
        let after_guard_off = s.guard_may_be_off() || matches!(s, MemberBaremetalState::GuardOnThenHalt { .. });
        after_guard_off.then_some(MemberBaremetalState::UndoQuorumGuard)
    }

    fn is_undo_state(&self, s: &MemberBaremetalState) -> bool {
        matches!(s, MemberBaremetalState::UndoQuorumGuard | MemberBaremetalState::GuardOnThenHalt { .. })
    }

    /// Parameters may be corrected until the member is removed: up to then the run has only looked.
    fn correctable(&self, key: &str, s: &MemberBaremetalState) -> Result<(), String> {
        use MemberBaremetalState::*;
        match s {
            CheckMember | TakeBackup { .. } | AwaitApproval { .. } => Ok(()),
            _ => Err(format!("{key} cannot change once the member is being removed: fix what halted it and resume, or abort it")),
        }
    }

    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        const OUT: [&str; 2] = ["GuardOnThenHalt", "UndoQuorumGuard"];
        macro_rules! guarded {
            ($($to:literal),*) => { &[$($to,)* OUT[0], OUT[1]] };
        }
        &[
            ("CheckMember", &["TakeBackup"]),
            ("TakeBackup", &["AwaitApproval"]),
            ("AwaitApproval", &["RemoveMember"]),
            ("RemoveMember", &["QuorumGuardOff"]),
            ("QuorumGuardOff", guarded!("DeleteSecrets")),
            ("DeleteSecrets", guarded!("SaveMachine")),
            ("SaveMachine", guarded!("CheckBaremetalOperator")),
            ("CheckBaremetalOperator", guarded!("DeleteHost")),
            ("DeleteHost", guarded!("DeleteMachine")),
            ("DeleteMachine", guarded!("WaitMachineDeleted")),
            ("WaitMachineDeleted", guarded!("WaitNodeGone", "RemoveFinalizer")),
            ("RemoveFinalizer", guarded!("WaitMachineDeleted")),
            ("WaitNodeGone", guarded!("CreateBmcSecret")),
            ("CreateBmcSecret", guarded!("CreateHost")),
            ("CreateHost", guarded!("WaitHostAvailable")),
            ("WaitHostAvailable", guarded!("CreateMachine")),
            ("RecreateHost", guarded!("CreateBmcSecret")),
            ("CreateMachine", guarded!("WaitHostProvisioned")),
            ("WaitHostProvisioned", guarded!("WaitNodeReady")),
            ("WaitNodeReady", guarded!("QuorumGuardOn")),
            ("QuorumGuardOn", guarded!("VerifyPods")),
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
                    "SaveMachine",
                    "CheckBaremetalOperator",
                    "DeleteHost",
                    "DeleteMachine",
                    "WaitMachineDeleted",
                    "RemoveFinalizer",
                    "WaitNodeGone",
                    "CreateBmcSecret",
                    "CreateHost",
                    "WaitHostAvailable",
                    "RecreateHost",
                    "CreateMachine",
                    "WaitHostProvisioned",
                    "WaitNodeReady",
                    "QuorumGuardOn",
                    "GuardOnThenHalt",
                    "UndoQuorumGuard",
                ],
            ),
            ("UndoQuorumGuard", &[]),
        ]
    }
}

/// The three flags of a new bare metal host, as `validate` checks them (no file is read here:
/// a run's params are validated again on every load; [`preflight`] reads it once up front).
pub fn validate_new_host(bmc_address: &str, boot_mac_address: &str, credentials: &str) -> Result<(), String> {
    let missing: Vec<&str> =
        [("--bmc-address URL", bmc_address), ("--boot-mac-address MAC", boot_mac_address), ("--bmc-credentials FILE", credentials)]
            .into_iter()
            .filter(|(_, v)| v.is_empty())
            .map(|(flag, _)| flag)
            .collect();
    if !missing.is_empty() {
        return Err(format!("a bare metal member replacement needs {} for the new BareMetalHost (OpenShift Container Platform 4.14 Backup and restore §5.2.4.3 step 11)", missing.join(", ")));
    }
    bmc::validate_bmc_address(bmc_address)?;
    if bmc::normalize_mac(boot_mac_address)? != boot_mac_address {
        return Err(format!("--boot-mac-address '{boot_mac_address}' must be written in lowercase"));
    }
    if !credentials.starts_with('/') {
        return Err(format!("--bmc-credentials '{credentials}' must be a file path (made absolute on the command line)"));
    }
    Ok(())
}

/// Before the run is stored: the credentials file can be read and holds both keys.
pub fn preflight(params: &serde_json::Value, _facts: &crate::catalog::TargetFacts) -> Result<(), String> {
    match params.get("bmc_credentials").and_then(serde_json::Value::as_str) {
        Some(file) => bmc::read_credentials(Path::new(file)).map(drop),
        None => Ok(()),
    }
}
