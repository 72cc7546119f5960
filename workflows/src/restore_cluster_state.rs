//! `restore-cluster-state`: restore a cluster that lost etcd quorum from an etcd backup
//! (OpenShift Container Platform 4.14 Backup and restore §5.4.2.2; 4.5 §5.3).
//!
//! The run crosses its own API outage: from stopping the static pods until the restored
//! single-member etcd serves again, the API is down by design and only SSH works. The state
//! enum below lists the runbook's steps in order; data lives only in the states where it is
//! known (the recovery host is chosen before the gate, which hosts answer SSH is known only after
//! step 2, and so on).

use crate::ports::*;
use crate::replace_machine::Progress;
pub use crate::replace_machine::ReplaceMachine;
use drctl_runtime::{Decision, Procedure, Step, StepContext, StepError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where the runbook expects the backup on the recovery host.
pub const DEFAULT_BACKUP_DIR: &str = "/home/core/assets/backup";
/// Where OVN-Kubernetes runs.
const OVN_NS: &str = "openshift-ovn-kubernetes";
/// Gate asked before anything destructive happens.
pub const START_GATE: &str = "start";
/// Gate asked when lost hosts are not re-created by this run (bare metal, user-provisioned).
pub const LOST_HOSTS_GATE: &str = "lost-hosts";
/// Gate asked when a host drctl cannot reach over SSH still has etcd answering on its ports.
pub const UNREACHABLE_ETCD_GATE: &str = "unreachable-etcd";
/// SSH attempts before a host is recorded as gone and skipped (the seed allows skipping it).
/// With the engine's backoff (0.8 s doubling to 30 s) that is about a minute and a half: a live
/// host's SSH blip is ridden out, a stopped machine is skipped soon enough.
const SSH_ATTEMPTS_BEFORE_SKIP: u32 = 8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreParams {
    /// Backup set in the backup location (as written by `etcd-backup`).
    pub backup: String,
    /// Control-plane host to restore on; default: the first one that answers SSH.
    #[serde(default)]
    pub recovery_host: Option<String>,
    /// Directory the backup is copied to on the recovery host.
    #[serde(default = "default_backup_dir")]
    pub backup_dir: String,
    /// Restore even though the API answers reads (etcd looks available).
    #[serde(default)]
    pub force: bool,
    /// Recorded by runs of earlier releases; the network is now read from the cluster
    /// (`network.config/cluster`) when the runbook's network steps come.
    #[serde(default = "yes")]
    pub ovn_kubernetes: bool,
    /// Approve kubelet-serving CSRs too: `None` decides from the cluster (only user-provisioned
    /// installations, which have no control-plane Machine objects: elsewhere the cluster machine
    /// approver signs them, 4.14 Backup and restore §5.4.2.2 step 11.4).
    #[serde(default)]
    pub approve_serving_csrs: Option<bool>,
    /// keepalived VIPs, needed when keepalived runs on the control plane.
    #[serde(default)]
    pub api_vip: Option<String>,
    #[serde(default)]
    pub ingress_vip: Option<String>,
}

fn default_backup_dir() -> String {
    DEFAULT_BACKUP_DIR.to_string()
}
fn yes() -> bool {
    true
}

impl RestoreParams {
    pub fn new(backup: impl Into<String>) -> Self {
        RestoreParams {
            backup: backup.into(),
            recovery_host: None,
            backup_dir: default_backup_dir(),
            force: false,
            ovn_kubernetes: true,
            approve_serving_csrs: None,
            api_vip: None,
            ingress_vip: None,
        }
    }
    fn vips(&self) -> Vec<&str> {
        self.api_vip.iter().chain(self.ingress_vip.iter()).map(String::as_str).collect()
    }
}

/// What is fixed once SSH reachability is known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub recovery: HostRef,
    /// Every other control-plane host of the inventory.
    pub others: Vec<HostRef>,
    /// Those of `others` that answered SSH, by name.
    pub reachable: Vec<String>,
    /// Those that did not: recorded and skipped, their machines are re-created later.
    pub unreachable: Vec<String>,
    /// Lost hosts this run does not bring back (their machines are not re-created on this
    /// platform): a person replaces them; the restore goes on with the members it has.
    #[serde(default)]
    pub not_replaced: Vec<String>,
    /// Each inventory node's InternalIP as the restored API records it (read when the API first
    /// answers after the restore): what OVN references, whatever address SSH uses.
    #[serde(default)]
    pub node_ips: std::collections::BTreeMap<String, String>,
    /// When the restore started (step 8 reached): Node statuses written before it are the
    /// backup's.
    #[serde(default)]
    pub restored_at: Option<drctl_runtime::clock::Timestamp>,
    /// Admission webhooks that fail closed, read once the restored API answers: they can reject
    /// the pods steps 15-23 recreate.
    #[serde(default)]
    pub fail_closed_webhooks: Vec<String>,
    /// The inventory's workers (`--workers`): steps 9.2-11 cover those NotReady after the
    /// restore like the control-plane hosts.
    #[serde(default)]
    pub workers: Vec<HostRef>,
    /// Workers that did not answer SSH when step 9.2 came to them: left for a person.
    #[serde(default)]
    pub workers_unreached: Vec<String>,
}

impl Plan {
    /// Hosts the SSH steps act on: the recovery host first, then the reachable others.
    fn ssh_hosts(&self) -> Vec<&str> {
        std::iter::once(self.recovery.name.as_str()).chain(self.reachable.iter().map(String::as_str)).collect()
    }
    fn node_of(&self, host: &str) -> Option<&str> {
        let all = std::iter::once(&self.recovery).chain(self.others.iter()).chain(self.workers.iter());
        all.into_iter().find(|h| h.name == host).map(|h| h.node.as_str())
    }
    fn is_worker(&self, host: &str) -> bool {
        self.workers.iter().any(|w| w.name == host)
    }
    /// Workers steps 9.2-11 act on: the inventory's, less those SSH did not reach.
    fn reached_workers(&self) -> impl Iterator<Item = &str> {
        self.workers.iter().map(|w| w.name.as_str()).filter(|w| !self.workers_unreached.iter().any(|u| u == w))
    }
    /// A host taken for unreachable answers SSH again: it joins the reachable ones.
    fn mark_reachable(&mut self, host: &str) {
        self.unreachable.retain(|u| u != host);
        self.reachable.push(host.to_string());
    }
}

/// Runbook step 4 on one non-recovery host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopPods {
    MoveEtcdManifest,
    WaitEtcdStopped,
    MoveApiServerManifest,
    WaitApiServerStopped,
    MoveEtcdDataDir,
    MoveKeepalivedManifest,
    WaitKeepalivedStopped,
    RemoveVips,
}

/// The interconnect reset of one node's OVN (4.14 Backup and restore §5.4.2.2, OVN-Kubernetes
/// interconnect branch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OvnIcReset {
    RemoveDatabases,
    RestartOvs,
    DeleteNodePod,
    WaitNodePod,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RestoreStep {
    /// 3. Copy the backup directory to the recovery host.
    CopyBackup,
    /// 4. Stop the static pods on each other reachable host (index into `plan.reachable`).
    StopStaticPods {
        host: usize,
        action: StopPods,
    },
    /// 6. With keepalived, the recovery host must own the API VIP.
    CheckRecoveryVip,
    /// 8. Run the restore on the recovery host, fenced by a token recorded here first.
    RunRestore {
        fence: String,
    },
    /// 9. Wait for the API to answer and the nodes to report.
    WaitNodes,
    /// 9.2. Remove kubelet PKI on the NotReady nodes we can reach.
    RemoveKubeletPki {
        hosts: Vec<String>,
        idx: usize,
    },
    /// 10. Restart kubelet on every reachable control-plane host, recovery host first.
    RestartKubelet {
        idx: usize,
    },
    /// 11. Approve pending CSRs by policy until the reachable control-plane nodes are Ready.
    ApproveCsrs,
    /// 12. Wait for the single-member etcd on the recovery host.
    WaitSingleMemberEtcd,
    /// 13. OVN-Kubernetes: delete the node objects of the other control-plane hosts.
    DeleteOtherNodes,
    /// 14. Wait until ovnkube-master no longer references their IPs.
    WaitOvnForgetsIps,
    /// 15.1. Remove the OVN north/southbound databases on each reachable host.
    RemoveOvnDatabases {
        idx: usize,
    },
    /// 15.2-15.3.
    RestartOvnMasters,
    WaitOvnMasters,
    /// 15.4-15.5.
    RestartOvnNodes,
    WaitOvnNodes,
    /// 13-14 with OVN-Kubernetes interconnect: restart the ovnkube-control-plane pods.
    RestartOvnControlPlane,
    WaitOvnControlPlane,
    /// Then on each host in turn (recovery host first): remove its local OVN databases,
    /// restart Open vSwitch, delete its ovnkube-node pod, wait for it to run again.
    ResetOvnIcNode {
        idx: usize,
        action: OvnIcReset,
    },
    /// 16. Delete and re-create the lost control-plane machines, one at a time.
    PlanMachineReplacement,
    /// 16, where machines are not re-created (bare metal IPI, user-provisioned, the 4.5
    /// chapter): the reachable hosts' nodes deleted in step 13 register again after a kubelet
    /// restart, and the etcd operator redeploys onto them.
    RejoinNodes {
        idx: usize,
        why: String,
    },
    WaitNodesRejoined {
        why: String,
    },
    /// Lost hosts that this platform does not re-create: a person replaces them.
    ConfirmLostHosts {
        why: String,
    },
    /// A host taken for lost answers SSH again: step 4 on it now, then steps 9.2-11.
    StopLateHost {
        host: String,
        action: StopPods,
        why: String,
    },
    ReplaceMachines {
        todo: Vec<String>,
        created: Vec<String>,
        current: ReplaceMachine,
    },
    /// 17. Quorum guard off.
    QuorumGuardOff,
    /// 18-19. Force etcd redeployment with a unique reason (recorded here before the patch).
    ForceEtcdRedeployment {
        reason: String,
        before_revision: u64,
    },
    /// The operator created the forced revision (it captured the guard being off).
    WaitEtcdRevisionCreated {
        before_revision: u64,
    },
    /// 20. Quorum guard back on.
    QuorumGuardOn {
        before_revision: u64,
    },
    /// 22. Wait `AllNodesAtLatestRevision` for etcd.
    WaitEtcdRollout {
        before_revision: u64,
    },
    /// 23. Force and wait the kube-apiserver, kube-controller-manager, kube-scheduler rollouts.
    ForceRollout {
        operator: Operator,
        reason: String,
        before_revision: u64,
    },
    WaitRollout {
        operator: Operator,
        before_revision: u64,
    },
    /// 24. Verify three etcd members and pods.
    VerifyEtcd,
    /// Undo path after an abort: turn the quorum guard back on.
    UndoQuorumGuard,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RestoreState {
    /// Guard: the API must not answer reads normally (unless --force).
    CheckApiDown,
    /// Guard: both backup files, named as the runbook requires, from the same backup.
    CheckBackup,
    /// 1. Select the recovery host.
    SelectRecoveryHost,
    /// Guard: positive evidence that etcd lost quorum, from the recovery host: no member answers
    /// `/health` (an API that does not answer drctl may be a DNS or VPN problem, not etcd).
    CheckQuorumLost {
        recovery: HostRef,
        others: Vec<HostRef>,
    },
    /// Guard: the backup is from the cluster's z-stream; keepalived needs the VIPs.
    CheckZStream {
        recovery: HostRef,
        others: Vec<HostRef>,
    },
    /// The run is destructive: a person approves it (or `--yes` did).
    AwaitApproval {
        recovery: HostRef,
        others: Vec<HostRef>,
    },
    /// Runbook step 2: establish SSH to every control-plane host. A host that stays unreachable
    /// is skipped only with proof that its etcd is down (nothing answers on its etcd ports from
    /// the recovery host); otherwise it is `at_risk`.
    EstablishSsh {
        recovery: HostRef,
        others: Vec<HostRef>,
        idx: usize,
        reachable: Vec<String>,
        unreachable: Vec<String>,
        #[serde(default)]
        at_risk: Vec<String>,
    },
    /// Hosts drctl cannot reach whose etcd still answers: left running, they could serve beside
    /// the restored cluster (split brain). A person stops them out of band and says so; the run
    /// goes on only once nothing answers there any more.
    ConfirmHostsDown {
        plan: Plan,
        at_risk: Vec<String>,
    },
    Restoring {
        plan: Plan,
        step: RestoreStep,
    },
}

pub struct RestoreClusterState;

/// The command line of `drctl run restore-cluster-state`.
#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// Backup set in the backup location (with --sim: default the newest one in the world).
    #[arg(long)]
    backup: Option<String>,
    /// Control-plane host to restore on (default: the first that answers SSH).
    #[arg(long)]
    recovery_host: Option<String>,
    /// Where the backup is copied on the recovery host.
    #[arg(long, default_value = DEFAULT_BACKUP_DIR)]
    backup_dir: String,
    /// Restore even though the API answers (etcd looks available).
    #[arg(long)]
    force: bool,
    /// Never approve kubelet-serving CSRs (default: only on user-provisioned clusters; the
    /// machine approver signs them elsewhere).
    #[arg(long, conflicts_with = "serving_csrs")]
    no_serving_csrs: bool,
    /// Approve kubelet-serving CSRs that ask only for their node's own names, whatever the
    /// platform.
    #[arg(long)]
    serving_csrs: bool,
    /// keepalived API VIP (required when keepalived runs on the control plane).
    #[arg(long)]
    api_vip: Option<String>,
    /// keepalived ingress VIP.
    #[arg(long)]
    ingress_vip: Option<String>,
}

impl crate::catalog::IntoParams for RestoreArgs {
    fn into_params(self) -> serde_json::Value {
        serde_json::json!({
            "backup": self.backup, "recovery_host": self.recovery_host, "backup_dir": self.backup_dir, "force": self.force,
            "approve_serving_csrs": match (self.serving_csrs, self.no_serving_csrs) { (true, _) => Some(true), (_, true) => Some(false), _ => None },
            "api_vip": self.api_vip, "ingress_vip": self.ingress_vip,
        })
    }
}

fn next(plan: &Plan, step: RestoreStep) -> Result<Step<RestoreState>, StepError> {
    Ok(Step::Next(RestoreState::Restoring { plan: plan.clone(), step }))
}

fn wait(what: impl Into<String>, recheck_secs: u64, bound_mins: u64) -> Result<Step<RestoreState>, StepError> {
    Ok(Step::Wait {
        waiting_for: what.into(),
        recheck_after: Duration::from_secs(recheck_secs),
        bound: Duration::from_secs(bound_mins * 60),
    })
}

fn halt(reason: impl Into<String>, evidence: Vec<String>) -> Result<Step<RestoreState>, StepError> {
    Ok(Step::Halt { reason: reason.into(), evidence })
}

/// How step 16 brings lost control-plane machines back on this cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachinePolicy {
    /// Save, delete and re-create each machine by hand (cloud installer-provisioned).
    Recreate,
    /// Delete each machine; the Active control plane machine set creates its replacement.
    ControlPlaneMachineSet,
    /// Machines are not re-created; why, in the runbook's words.
    NotRecreated(String),
}

/// Decide step 16 from the platform, the control plane machine set and the release.
pub fn machine_policy(layout: &MachineLayout, cluster_version: &str, has_control_plane_machines: bool) -> MachinePolicy {
    let minor = cluster_version.split('.').nth(1).and_then(|m| m.parse::<u32>().ok());
    if cluster_version.starts_with("4.") && minor.is_some_and(|m| m <= 5) {
        return MachinePolicy::NotRecreated(format!(
            "the cluster runs {cluster_version}: OpenShift Container Platform 4.5 Backup and restore §5.3 re-creates no machines, the etcd \
             operator redeploys onto the remaining masters"
        ));
    }
    if layout.platform == "BareMetal" {
        return MachinePolicy::NotRecreated(
            "bare metal installer-provisioned: control plane machines are not re-created (deleting one deprovisions its BareMetalHost); \
             see OpenShift Container Platform 4.14 Backup and restore §5.4.2.2 step 16 and Replacing a bare-metal control plane node"
                .into(),
        );
    }
    if !has_control_plane_machines {
        return MachinePolicy::NotRecreated(format!(
            "no control-plane Machine objects (platform {}: user-provisioned): re-create lost hosts by the installation method, \
             OpenShift Container Platform 4.14 Backup and restore §5.4.2.2 step 16",
            layout.platform
        ));
    }
    match layout.control_plane_machine_set_active {
        true => MachinePolicy::ControlPlaneMachineSet,
        false => MachinePolicy::Recreate,
    }
}

/// The inventory's node name for `h` against the one its kubelet authenticates as: a wrong name
/// would make every later step act on (or skip) another node. The halt when they differ.
fn node_name_mismatch(ports: &Ports, h: &HostRef) -> Result<Option<Step<RestoreState>>, StepError> {
    let out =
        ports.hosts.run(&h.name, &HostOp::KubeletNodeName).map_err(|e| e.during(format!("read the kubelet's node name on {}", h.name)))?;
    let HostOutput::NodeName(name) = out else {
        return Err(StepError::Bug(format!("KubeletNodeName answered {out:?}")));
    };
    match name {
        Some(kubelet) if kubelet != h.node => Ok(Some(Step::Halt {
            reason: format!(
                "the inventory names node {} for host {}, but its kubelet is node {kubelet}: correct the host list (--hosts \
                 NAME=ADDRESS@NODE) and start a new run; nothing was changed",
                h.node, h.name
            ),
            evidence: vec![format!("{}: kubelet client certificate CN=system:node:{kubelet}", h.name)],
        })),
        Some(_) => Ok(None),
        None => {
            tracing::warn!(host = %h.name, "no kubelet client certificate: the node name {} cannot be checked", h.node);
            Ok(None)
        }
    }
}

/// What answers on `target`'s etcd ports, asked from `from` (hosts reach each other where drctl
/// may not).
fn probe_etcd(ports: &Ports, from: &HostRef, target: &HostRef) -> Result<EtcdProbe, StepError> {
    let op = HostOp::ProbeEtcd { address: target.address.clone(), client_node: from.node.clone() };
    match ports.hosts.run(&from.name, &op).map_err(|e| e.during(format!("probe etcd on {} from {}", target.name, from.name)))? {
        HostOutput::Etcd(probe) => Ok(probe),
        other => Err(StepError::Bug(format!("ProbeEtcd answered {other:?}"))),
    }
}

/// A unique `forceRedeploymentReason`, stable for this run and state so a re-run after a crash
/// patches the same value (a no-op) instead of forcing yet another revision.
fn redeploy_reason(cx: &StepContext, what: &str) -> String {
    format!("recovery-{}-{what}-{}", cx.run_id, cx.now)
}

impl RestoreClusterState {
    fn check_api_down(&self, ports: &Ports, p: &RestoreParams) -> Result<Step<RestoreState>, StepError> {
        // Prerequisite: a certificate-based kubeconfig. A token lives in etcd; one issued after
        // the backup is unknown to the restored cluster, and every step after the restore would
        // fail with 401.
        let credential = ports.api.credential();
        if credential != Credential::ClientCertificate {
            return halt(
                format!(
                    "the kubeconfig authenticates with {credential}: a restore needs a certificate-based kubeconfig (like the one the \
                     installer wrote), because credentials kept in etcd are taken back in time with it (OpenShift Container Platform \
                     4.14 Backup and restore §5.4.2.2, prerequisites); nothing was changed"
                ),
                vec![],
            );
        }
        match ports.api.list_nodes() {
        Err(PortError::Transient(e)) => {
            tracing::info!(error = %e, "API does not answer: consistent with quorum loss");
            Ok(Step::Next(RestoreState::CheckBackup))
        }
        Ok(_) | Err(_) if p.force => Ok(Step::Next(RestoreState::CheckBackup)),
        Ok(nodes) => halt(
            "the API answers reads normally, so etcd is available: restoring from a backup would be wrong (pass --force only if you must go back in time)",
            vec![format!("GET /api/v1/nodes returned {} nodes", nodes.len())],
        ),
        Err(e) => halt(format!("the API answered ({e}), so etcd is available: restoring would be wrong (pass --force to override)"), vec![]),
    }
    }

    fn check_backup(&self, ports: &Ports, p: &RestoreParams) -> Result<Step<RestoreState>, StepError> {
        let files = match ports.backups.list(&p.backup) {
            Ok(f) => f,
            Err(PortError::NotFound(e)) => return halt(format!("backup not found: {e}"), vec![]),
            Err(e) => return Err(e.during(format!("list backup {}", p.backup))),
        };
        match crate::backup_files::the_only_pair(&files) {
            Ok(_) => Ok(Step::Next(RestoreState::SelectRecoveryHost)),
            Err(why) => halt(
                format!("backup {} {why}: it must hold one etcd backup (snapshot and static pod resources)", p.backup),
                vec![format!("files: {}", files.join(", "))],
            ),
        }
    }

    fn select_recovery_host(&self, ports: &Ports, p: &RestoreParams) -> Result<Step<RestoreState>, StepError> {
        let inventory = ports.hosts.control_plane_hosts().map_err(|e| e.during("read the control-plane inventory"))?;
        let chosen = match &p.recovery_host {
            Some(name) => match inventory.iter().find(|h| &h.name == name) {
                Some(h) => {
                    ports.hosts.connect(&h.name).map_err(|e| e.during(format!("ssh to recovery host {name}")))?;
                    h.clone()
                }
                None => {
                    return halt(
                        format!("recovery host {name} is not a control-plane host"),
                        vec![format!("control-plane hosts: {}", inventory.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", "))],
                    )
                }
            },
            None => match inventory.iter().find(|h| ports.hosts.connect(&h.name).is_ok()) {
                Some(h) => h.clone(),
                None => {
                    return Err(StepError::Transient {
                        what: "select recovery host".into(),
                        error: "no control-plane host answers SSH".into(),
                    })
                }
            },
        };
        let others = inventory.into_iter().filter(|h| h.name != chosen.name).collect();
        Ok(Step::Next(RestoreState::CheckQuorumLost { recovery: chosen, others }))
    }

    /// A restore beside an etcd that still has quorum makes two clusters. The API failing for
    /// drctl proves nothing about etcd (a resolver, a VPN, a stale kubeconfig); what the members
    /// answer each other does. Any healthy member means its cluster serves.
    fn check_quorum_lost(
        &self,
        ports: &Ports,
        p: &RestoreParams,
        recovery: &HostRef,
        others: &[HostRef],
    ) -> Result<Step<RestoreState>, StepError> {
        let mut evidence = vec![];
        let mut healthy = vec![];
        for h in std::iter::once(recovery).chain(others) {
            let probe = probe_etcd(ports, recovery, h)?;
            evidence.push(format!("etcd on {} ({}) from {}: {probe}", h.name, h.address, recovery.name));
            if probe == EtcdProbe::Healthy {
                healthy.push(h.name.clone());
            }
        }
        if healthy.is_empty() || p.force {
            return Ok(Step::Next(RestoreState::CheckZStream { recovery: recovery.clone(), others: others.to_vec() }));
        }
        match ports.api.list_nodes() {
            Ok(nodes) => evidence.push(format!("the API answers: {} nodes", nodes.len())),
            Err(e) => evidence.push(format!("the API does not answer drctl: {e}")),
        }
        halt(
            format!(
                "etcd has not lost quorum: {} answer healthy from {}. Restoring now would start a second etcd cluster beside the one that \
                 serves (split brain). If the API does not answer you, look at DNS, the VPN or the kubeconfig; pass --force only to \
                 deliberately take a healthy cluster back in time",
                healthy.join(", "),
                recovery.name
            ),
            evidence,
        )
    }

    fn check_z_stream(
        &self,
        ports: &Ports,
        p: &RestoreParams,
        recovery: &HostRef,
        others: &[HostRef],
    ) -> Result<Step<RestoreState>, StepError> {
        let version = ports.backups.cluster_version(&p.backup).map_err(|e| e.during("read the backup's cluster version"))?;
        let Some(backup_version) = version else {
            return halt(
                format!(
                    "backup {} records no cluster version and its snapshot holds no clusterversion object: it cannot be shown to be \
                     from this z-stream",
                    p.backup
                ),
                vec![],
            );
        };
        let HostOutput::Version(running) =
            ports.hosts.run(&recovery.name, &HostOp::ReleaseVersion).map_err(|e| e.during("read release version"))?
        else {
            return Err(StepError::Bug("ReleaseVersion answered something else".into()));
        };
        if running != backup_version {
            return halt(
                format!(
                    "backup {} was taken from {backup_version} but the cluster runs {running}: a restore must use a backup of the same \
                     z-stream",
                    p.backup
                ),
                vec![],
            );
        }
        let keepalived =
            ports.hosts.run(&recovery.name, &HostOp::ManifestPresent(StaticPod::Keepalived)).map_err(|e| e.during("check keepalived"))?;
        // Step 4.7 removes every VIP a stopped keepalived leaves behind: both must be known, or
        // a stale ingress VIP stays on a host beside the one keepalived moves it to.
        if keepalived == HostOutput::Present(true) && (p.api_vip.is_none() || p.ingress_vip.is_none()) {
            return halt(NEEDS_VIPS, vec![]);
        }
        Ok(Step::Next(RestoreState::AwaitApproval { recovery: recovery.clone(), others: others.to_vec() }))
    }

    fn await_approval(
        &self,
        cx: &StepContext,
        p: &RestoreParams,
        recovery: &HostRef,
        others: &[HostRef],
    ) -> Result<Step<RestoreState>, StepError> {
        match cx.gate(START_GATE).map(|d| &d.decision) {
        Some(Decision::Approved) => Ok(Step::Next(RestoreState::EstablishSsh {
            recovery: recovery.clone(),
            others: others.to_vec(),
            idx: 0,
            reachable: vec![],
            unreachable: vec![],
            at_risk: vec![],
        })),
        Some(Decision::Rejected) => halt("the restore was rejected at its start gate; nothing was changed", vec![]),
        None => Ok(Step::Gate {
            gate: START_GATE.into(),
            prompt: format!(
                "Restore etcd from backup {} on recovery host {}? This stops etcd and the API server on every other control-plane host and takes the cluster back in time.",
                p.backup, recovery.name
            ),
            evidence: vec![
                format!("recovery host: {} ({})", recovery.name, recovery.address),
                format!("other hosts: {}", others.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ")),
            ],
        }),
    }
    }

    /// Runbook step 2: establish SSH to every control-plane host, one per step; a host that
    /// stays unreachable is skipped (its machine is re-created later).
    fn establish_ssh(&self, ports: &Ports, cx: &StepContext, s: &RestoreState) -> Result<Step<RestoreState>, StepError> {
        let RestoreState::EstablishSsh { recovery, others, idx, reachable, unreachable, at_risk } = s else {
            return Err(StepError::Bug(format!("establish_ssh called in {s:?}")));
        };
        if *idx == 0 {
            ports.hosts.connect(&recovery.name).map_err(|e| e.during(format!("ssh to recovery host {}", recovery.name)))?;
            if let Some(mismatch) = node_name_mismatch(ports, recovery)? {
                return Ok(mismatch);
            }
        }
        let (mut reachable, mut unreachable, mut at_risk) = (reachable.to_vec(), unreachable.to_vec(), at_risk.to_vec());
        if let Some(h) = others.get(*idx) {
            match ports.hosts.connect(&h.name) {
                Ok(()) => {
                    if let Some(mismatch) = node_name_mismatch(ports, h)? {
                        return Ok(mismatch);
                    }
                    reachable.push(h.name.clone())
                }
                Err(e) if e.is_transient() && cx.attempt + 1 < SSH_ATTEMPTS_BEFORE_SKIP => {
                    return Err(e.during(format!("ssh to {}", h.name)))
                }
                Err(e) => {
                    // Skipped only with proof its etcd is down; else it is a risk a person weighs.
                    let probe = probe_etcd(ports, recovery, h)?;
                    tracing::warn!(host = %h.name, error = %e, etcd = %probe, "control-plane host unreachable over SSH");
                    unreachable.push(h.name.clone());
                    if probe != EtcdProbe::NoAnswer {
                        at_risk.push(h.name.clone());
                    }
                }
            }
        }
        if idx + 1 < others.len() {
            return Ok(Step::Next(RestoreState::EstablishSsh {
                recovery: recovery.clone(),
                others: others.to_vec(),
                idx: idx + 1,
                reachable,
                unreachable,
                at_risk,
            }));
        }
        let plan = Plan {
            recovery: recovery.clone(),
            others: others.to_vec(),
            reachable,
            unreachable,
            not_replaced: vec![],
            node_ips: Default::default(),
            restored_at: None,
            fail_closed_webhooks: vec![],
            workers: ports.hosts.worker_hosts().map_err(|e| e.during("read the worker inventory"))?,
            workers_unreached: vec![],
        };
        match at_risk.is_empty() {
            true => next(&plan, RestoreStep::CopyBackup),
            false => Ok(Step::Next(RestoreState::ConfirmHostsDown { plan, at_risk })),
        }
    }

    /// The gate names the risk; after approval the run still waits until nothing answers on the
    /// etcd ports of those hosts: an approval is not a stopped etcd. A host that answers SSH
    /// again joins the reachable ones (its static pods are stopped by step 4 like the others').
    fn confirm_hosts_down(
        &self,
        ports: &Ports,
        cx: &StepContext,
        plan: &Plan,
        at_risk: &[String],
    ) -> Result<Step<RestoreState>, StepError> {
        let mut plan = plan.clone();
        let mut answering = vec![];
        let mut still = vec![];
        for name in at_risk {
            let h = plan
                .others
                .iter()
                .find(|h| &h.name == name)
                .cloned()
                .ok_or_else(|| StepError::Bug(format!("{name} is not in the plan")))?;
            if ports.hosts.connect(name).is_ok() {
                plan.mark_reachable(name);
                continue;
            }
            let probe = probe_etcd(ports, &plan.recovery, &h)?;
            if probe != EtcdProbe::NoAnswer {
                answering.push(format!("etcd on {} ({}) from {}: {probe}", h.name, h.address, plan.recovery.name));
                still.push(name.clone());
            }
        }
        if still.is_empty() {
            return next(&plan, RestoreStep::CopyBackup);
        }
        if still != at_risk {
            return Ok(Step::Next(RestoreState::ConfirmHostsDown { plan, at_risk: still }));
        }
        match cx.gate(UNREACHABLE_ETCD_GATE).map(|d| &d.decision) {
            Some(Decision::Rejected) => halt("the restore was stopped at the unreachable-etcd gate; nothing was changed", answering),
            Some(Decision::Approved) => {
                wait(format!("etcd to stop answering on {} (stop it from the console or power the machine off)", still.join(", ")), 30, 60)
            }
            None => Ok(Step::Gate {
                gate: UNREACHABLE_ETCD_GATE.into(),
                prompt: format!(
                    "drctl cannot reach {} over SSH, yet etcd answers there. Left running, that member could serve beside the restored \
                     cluster (split brain) as soon as a peer returns. Stop etcd on those hosts by other means (console, BMC, cloud \
                     console: power the machine off), then approve; the restore goes on once nothing answers on their etcd ports.",
                    still.join(", ")
                ),
                evidence: answering,
            }),
        }
    }

    fn step_restoring(
        &self,
        ports: &Ports,
        cx: &StepContext,
        p: &RestoreParams,
        plan: &Plan,
        step: &RestoreStep,
    ) -> Result<Step<RestoreState>, StepError> {
        let r = Restoring { ports, cx, p, plan };
        match step {
            RestoreStep::CopyBackup => r.copy_backup(),
            RestoreStep::StopStaticPods { host, action } => r.stop_static_pods(host, action),
            RestoreStep::CheckRecoveryVip => r.check_recovery_vip(),
            RestoreStep::RunRestore { fence } => r.run_restore(fence),
            RestoreStep::WaitNodes => r.wait_nodes(),
            RestoreStep::RemoveKubeletPki { hosts: pki_hosts, idx } => r.remove_kubelet_pki(pki_hosts, idx),
            RestoreStep::RestartKubelet { idx } => r.restart_kubelet(idx),
            RestoreStep::ApproveCsrs => r.approve_csrs(),
            RestoreStep::WaitSingleMemberEtcd => r.wait_single_member_etcd(),
            RestoreStep::DeleteOtherNodes => r.delete_other_nodes(),
            RestoreStep::WaitOvnForgetsIps => r.wait_ovn_forgets_ips(),
            RestoreStep::RemoveOvnDatabases { idx } => r.remove_ovn_databases(idx),
            RestoreStep::RestartOvnMasters | RestoreStep::RestartOvnNodes => r.restart_ovn(step),
            RestoreStep::WaitOvnMasters | RestoreStep::WaitOvnNodes => r.wait_ovn(step),
            RestoreStep::RestartOvnControlPlane => r.restart_ovn_control_plane(),
            RestoreStep::WaitOvnControlPlane => r.wait_ovn_control_plane(),
            RestoreStep::ResetOvnIcNode { idx, action } => r.reset_ovn_ic_node(idx, action),
            RestoreStep::PlanMachineReplacement => r.plan_machine_replacement(),
            RestoreStep::RejoinNodes { idx, why } => r.rejoin_nodes(idx, why),
            RestoreStep::WaitNodesRejoined { why } => r.wait_nodes_rejoined(why),
            RestoreStep::ConfirmLostHosts { why } => r.confirm_lost_hosts(why),
            RestoreStep::StopLateHost { host, action, why } => r.stop_late_host(host, action, why),
            RestoreStep::ReplaceMachines { todo, created, current } => r.replace_machine(todo, created, current),
            RestoreStep::QuorumGuardOff => r.quorum_guard_off(),
            RestoreStep::ForceEtcdRedeployment { reason, before_revision } => r.force_etcd_redeployment(reason, before_revision),
            RestoreStep::WaitEtcdRevisionCreated { before_revision } => r.wait_etcd_revision_created(before_revision),
            RestoreStep::QuorumGuardOn { before_revision } => r.quorum_guard_on(before_revision),
            RestoreStep::WaitEtcdRollout { before_revision } => r.wait_etcd_rollout(before_revision),
            RestoreStep::ForceRollout { operator, reason, before_revision } => r.force_rollout(operator, reason, before_revision),
            RestoreStep::WaitRollout { operator, before_revision } => r.wait_rollout(operator, before_revision),
            RestoreStep::VerifyEtcd => r.verify_etcd(),
            RestoreStep::UndoQuorumGuard => r.undo_quorum_guard(),
        }
    }
}

/// The restore's runbook steps 3-24, one handler each, with what every step works with.
struct Restoring<'a> {
    ports: &'a Ports,
    cx: &'a StepContext,
    p: &'a RestoreParams,
    plan: &'a Plan,
}

impl Restoring<'_> {
    /// How many control-plane nodes a rollout must reach: every host the cluster had, less the
    /// lost ones a person agreed to replace afterwards.
    fn control_plane_nodes(&self) -> usize {
        self.plan.others.len() + 1 - self.plan.not_replaced.len()
    }

    /// What a wait for recreated pods adds when admission webhooks fail closed.
    fn webhook_hint(&self) -> String {
        match self.plan.fail_closed_webhooks.is_empty() {
            true => String::new(),
            false => format!(
                "; if they are rejected, the webhooks with failurePolicy Fail may be why: {} (delete them or set failurePolicy \
                 Ignore until the restore is done, OpenShift Container Platform 4.14 Backup and restore §5.4.2.2 step 15)",
                self.plan.fail_closed_webhooks.join("; ")
            ),
        }
    }

    /// Where the approved backup is copied and restored from: a directory of this run's own
    /// under `--backup-dir`, holding exactly the approved pair. `cluster-restore.sh` takes the
    /// newest snapshot and the newest resources it finds, each on its own, so a directory with
    /// older or newer backups in it would restore something other than what was approved.
    fn restore_dir(&self) -> String {
        format!("{}/drctl-{}", self.p.backup_dir.trim_end_matches('/'), self.cx.run_id)
    }

    /// 23. Force the rollout of `operator`, recording its revision before and a unique reason.
    fn force_next_rollout(&self, operator: Operator) -> Result<Step<RestoreState>, StepError> {
        let api = &self.ports.api;
        let before = api.installer_progress(operator).map_err(|e| e.during(format!("read {operator} revision")))?.latest_revision;
        next(
            self.plan,
            RestoreStep::ForceRollout { operator, reason: redeploy_reason(self.cx, &operator.to_string()), before_revision: before },
        )
    }

    /// 16. One step of deleting and re-creating the lost machines, one at a time.
    fn replace_machine(&self, todo: &[String], created: &[String], current: &ReplaceMachine) -> Result<Step<RestoreState>, StepError> {
        match crate::replace_machine::step(self.ports.api.as_ref(), &self.plan.recovery, todo, created, current)? {
            Progress::Next { current, created } => next(self.plan, RestoreStep::ReplaceMachines { todo: todo.to_vec(), created, current }),
            Progress::AllReplaced => next(self.plan, RestoreStep::QuorumGuardOff),
            Progress::Wait { what, recheck_secs, bound_mins } => wait(what, recheck_secs, bound_mins),
            Progress::Halt { reason, evidence } => halt(reason, evidence),
        }
    }

    fn copy_backup(&self) -> Result<Step<RestoreState>, StepError> {
        let hosts = &self.ports.hosts;
        let rec = self.plan.recovery.name.as_str();
        let p = self.p;
        let plan = self.plan;
        let dir = self.restore_dir();
        hosts.copy_backup_to_host(&p.backup, rec, &dir).map_err(|e| e.during(format!("copy backup {} to {rec}:{dir}", p.backup)))?;
        match plan.reachable.is_empty() {
            true => next(plan, RestoreStep::CheckRecoveryVip),
            false => next(plan, RestoreStep::StopStaticPods { host: 0, action: StopPods::MoveEtcdManifest }),
        }
    }

    fn stop_static_pods(&self, host: &usize, action: &StopPods) -> Result<Step<RestoreState>, StepError> {
        let plan = self.plan;
        let then = |action| next(plan, RestoreStep::StopStaticPods { host: *host, action });
        let next_host = || match *host + 1 < plan.reachable.len() {
            true => next(plan, RestoreStep::StopStaticPods { host: *host + 1, action: StopPods::MoveEtcdManifest }),
            false => next(plan, RestoreStep::CheckRecoveryVip),
        };
        self.stop_pods_on(&plan.reachable[*host], action, then, next_host)
    }

    /// Step 4 on a host that was taken for lost and answers SSH again after the restore: its
    /// static pods are stopped as the others' were, then it goes through steps 9.2-11 with them.
    fn stop_late_host(&self, host: &str, action: &StopPods, why: &str) -> Result<Step<RestoreState>, StepError> {
        let plan = self.plan;
        let then = |action| next(plan, RestoreStep::StopLateHost { host: host.to_string(), action, why: why.to_string() });
        let done = || next(plan, RestoreStep::RemoveKubeletPki { hosts: vec![host.to_string()], idx: 0 });
        self.stop_pods_on(host, action, then, done)
    }

    /// One action of runbook step 4 on host `h`; `then` moves to another action on it, `done`
    /// leaves it.
    fn stop_pods_on(
        &self,
        h: &str,
        action: &StopPods,
        then: impl Fn(StopPods) -> Result<Step<RestoreState>, StepError>,
        next_host: impl Fn() -> Result<Step<RestoreState>, StepError>,
    ) -> Result<Step<RestoreState>, StepError> {
        let hosts = &self.ports.hosts;
        let p = self.p;
        let run = |op: HostOp| hosts.run(h, &op).map_err(|e| e.during(format!("{op:?} on {h}")));
        // Neither in place nor already moved aside: nothing there to stop or set aside (a disk
        // that lost /var/lib/etcd, a manifest someone moved elsewhere by hand). What matters
        // is checked next: no container of it runs.
        let move_aside = |op: HostOp| match hosts.run(h, &op) {
            Err(PortError::NotFound(e)) => {
                tracing::warn!(host = %h, "{op:?}: nothing to move ({e})");
                Ok(())
            }
            other => other.map(|_| ()).map_err(|e| e.during(format!("{op:?} on {h}"))),
        };
        let running = |name: &str| match run(HostOp::RunningContainers { name: name.into() })? {
            HostOutput::Names(n) => Ok(n),
            other => Err(StepError::Bug(format!("RunningContainers answered {other:?}"))),
        };
        match action {
            StopPods::MoveEtcdManifest => {
                move_aside(HostOp::MoveManifestOut(StaticPod::Etcd))?;
                then(StopPods::WaitEtcdStopped)
            }
            StopPods::WaitEtcdStopped => match running("etcd")?.is_empty() {
                true => then(StopPods::MoveApiServerManifest),
                false => wait(format!("etcd containers on {h} to stop"), 10, 10),
            },
            StopPods::MoveApiServerManifest => {
                move_aside(HostOp::MoveManifestOut(StaticPod::KubeApiServer))?;
                then(StopPods::WaitApiServerStopped)
            }
            StopPods::WaitApiServerStopped => match running("kube-apiserver")?.is_empty() {
                true => then(StopPods::MoveEtcdDataDir),
                false => wait(format!("kube-apiserver containers on {h} to stop"), 10, 10),
            },
            StopPods::MoveEtcdDataDir => {
                move_aside(HostOp::MoveEtcdDataDirAside)?;
                match run(HostOp::ManifestPresent(StaticPod::Keepalived))? {
                    HostOutput::Present(true) => then(StopPods::MoveKeepalivedManifest),
                    _ => next_host(),
                }
            }
            // 4.7 moves keepalived aside where the node is deleted; drctl moves it on every
            // other host (step 6 needs the recovery host to own the API VIP) and puts it back
            // on the hosts that stay (step 16, `RejoinNodes`).
            StopPods::MoveKeepalivedManifest => {
                move_aside(HostOp::MoveManifestOut(StaticPod::Keepalived))?;
                then(StopPods::WaitKeepalivedStopped)
            }
            StopPods::WaitKeepalivedStopped => match running("keepalived")?.is_empty() {
                true => then(StopPods::RemoveVips),
                false => wait(format!("keepalived containers on {h} to stop"), 10, 10),
            },
            StopPods::RemoveVips => {
                let HostOutput::Addresses(addrs) = run(HostOp::ListAddresses)? else {
                    return Err(StepError::Bug("ListAddresses answered something else".into()));
                };
                let vips = p.vips();
                for (address, device) in addrs.into_iter().filter(|(a, _)| vips.contains(&a.as_str())) {
                    run(HostOp::RemoveAddress { address, device })?;
                }
                next_host()
            }
        }
    }

    fn check_recovery_vip(&self) -> Result<Step<RestoreState>, StepError> {
        let hosts = &self.ports.hosts;
        let rec = self.plan.recovery.name.as_str();
        let p = self.p;
        let plan = self.plan;
        let cx = self.cx;
        let keepalived = hosts.run(rec, &HostOp::ManifestPresent(StaticPod::Keepalived)).map_err(|e| e.during("check keepalived"))?;
        if keepalived == HostOutput::Present(true) {
            let vip = p.api_vip.as_deref().unwrap_or_default();
            let HostOutput::Addresses(addrs) = hosts.run(rec, &HostOp::ListAddresses).map_err(|e| e.during("list addresses"))? else {
                return Err(StepError::Bug("ListAddresses answered something else".into()));
            };
            if !addrs.iter().any(|(a, _)| a == vip) {
                // A host skipped as unreachable may be up after all, its keepalived holding the
                // VIP: one that answers SSH now goes through step 4 like the others, first.
                if let Some(back) = plan.unreachable.iter().find(|h| hosts.connect(h).is_ok()) {
                    let late =
                        plan.others.iter().find(|h| &h.name == back).ok_or_else(|| StepError::Bug(format!("{back} not in the plan")))?;
                    if let Some(mismatch) = node_name_mismatch(self.ports, late)? {
                        return Ok(mismatch);
                    }
                    let mut plan = plan.clone();
                    plan.mark_reachable(back);
                    let host = plan.reachable.len() - 1;
                    return next(&plan, RestoreStep::StopStaticPods { host, action: StopPods::MoveEtcdManifest });
                }
                // keepalived takes the VIP over once the others' keepalived stopped (VRRP
                // advertisements time out): wait for it, bounded.
                let have: Vec<String> = addrs.iter().map(|(a, d)| format!("{a} dev {d}")).collect();
                let unreachable = match plan.unreachable.is_empty() {
                    true => String::new(),
                    false => format!(
                        "; if {} still runs, its keepalived may hold the VIP: stop it out of band (console, power off)",
                        plan.unreachable.join(", ")
                    ),
                };
                return wait(format!("keepalived on {rec} to take over the API VIP {vip} (has {}){unreachable}", have.join(", ")), 10, 10);
            }
        }
        // Recorded before the restore runs (and so before a crash could make a re-run of step 8
        // find it done): Node statuses written since are the restored cluster's own.
        let mut plan = plan.clone();
        plan.restored_at = Some(cx.now);
        next(&plan, RestoreStep::RunRestore { fence: format!("drctl-{}-restore", cx.run_id) })
    }

    fn run_restore(&self, fence: &str) -> Result<Step<RestoreState>, StepError> {
        let hosts = &self.ports.hosts;
        let rec = self.plan.recovery.name.as_str();
        let plan = self.plan;
        hosts
            .run(rec, &HostOp::RunRestore { dir: self.restore_dir(), fence: fence.to_string() })
            .map_err(|e| e.during(format!("cluster-restore.sh on {rec}")))?;
        next(plan, RestoreStep::WaitNodes)
    }

    fn wait_nodes(&self) -> Result<Step<RestoreState>, StepError> {
        let api = &self.ports.api;
        let plan = self.plan;
        // Transient failures here are the API coming back: retried with backoff.
        let nodes = api.list_nodes().map_err(|e| e.during("list nodes (API coming back after the restore)"))?;
        if !nodes.iter().any(|n| n.name == plan.recovery.node) {
            return wait(format!("node {} to report", plan.recovery.node), 15, 20);
        }
        // The lost hosts' names could not be checked over SSH: the restored API must know them,
        // or node deletion and machine re-creation would silently pass them over.
        let unknown: Vec<String> = plan
            .others
            .iter()
            .filter(|h| plan.unreachable.contains(&h.name) && !nodes.iter().any(|n| n.name == h.node))
            .map(|h| format!("{} (node {})", h.name, h.node))
            .collect();
        if !unknown.is_empty() {
            let known: Vec<String> = nodes.iter().filter(|n| n.control_plane).map(|n| format!("{} {}", n.name, n.internal_ip)).collect();
            return halt(
                format!(
                    "the restored cluster has no node for {}: a wrong name in the host list, or a node that joined after the backup. \
                     Its machine cannot be found to re-create; the restore itself is done, finish steps 13-24 by hand or start a \
                     run with a corrected host list",
                    unknown.join(", ")
                ),
                vec![format!("control-plane nodes in the restored API: {}", known.join(", "))],
            );
        }
        if plan.node_ips.is_empty() {
            let mut plan = plan.clone();
            plan.node_ips = std::iter::once(&plan.recovery)
                .chain(plan.others.iter())
                .filter_map(|h| nodes.iter().find(|n| n.name == h.node).map(|n| (h.node.clone(), n.internal_ip.clone())))
                .collect();
            return next(&plan, RestoreStep::WaitNodes);
        }
        // Right after the restore the API serves the backup's Node statuses: decide on statuses
        // written since, or a node whose kubelet cannot report looks Ready (step 9.2 skipped).
        // Workers too: the runbook's step 9 watches every node, and a worker whose kubelet
        // certificate the restored cluster does not trust stays NotReady until step 9.2.
        let covered: Vec<&str> = plan.ssh_hosts().into_iter().chain(plan.reached_workers()).collect();
        let stale: Vec<&str> = covered
            .iter()
            .filter_map(|h| plan.node_of(h))
            .filter(|node| nodes.iter().any(|n| &n.name == node && !n.reported_since(plan.restored_at)))
            .collect();
        if !stale.is_empty() {
            return wait(format!("nodes {} to report a status since the restore", stale.join(", ")), 15, 20);
        }
        let not_ready: Vec<String> = covered
            .iter()
            .filter(|h| plan.node_of(h).is_some_and(|node| nodes.iter().any(|n| n.name == node && !n.ready)))
            .map(|h| h.to_string())
            .collect();
        match not_ready.is_empty() {
            true => next(plan, RestoreStep::RestartKubelet { idx: 0 }),
            false => next(plan, RestoreStep::RemoveKubeletPki { hosts: not_ready, idx: 0 }),
        }
    }

    fn remove_kubelet_pki(&self, pki_hosts: &[String], idx: &usize) -> Result<Step<RestoreState>, StepError> {
        let hosts = &self.ports.hosts;
        let h = &pki_hosts[*idx];
        let mut plan = self.plan.clone();
        match plan.is_worker(h) {
            false => {
                hosts.run(h, &HostOp::RemoveKubeletPki).map_err(|e| e.during(format!("remove kubelet PKI on {h}")))?;
            }
            // Step 10 restarts the control-plane kubelets; a worker's restarts here, so that it
            // asks for a new client certificate (step 11 approves it). A worker that does not
            // answer is left for a person rather than holding the restore.
            true => match hosts.run(h, &HostOp::RemoveKubeletPki).and_then(|_| hosts.run(h, &HostOp::RestartKubelet)) {
                Ok(_) => {}
                Err(e) if e.is_transient() && self.cx.attempt + 1 < SSH_ATTEMPTS_BEFORE_SKIP => {
                    return Err(e.during(format!("renew the kubelet certificates of worker {h}")))
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(host = %h, error = %e, "worker unreachable: its kubelet certificates are left for a person");
                    plan.workers_unreached.push(h.clone());
                }
                Err(e) => return Err(e.during(format!("renew the kubelet certificates of worker {h}"))),
            },
        }
        match idx + 1 < pki_hosts.len() {
            true => next(&plan, RestoreStep::RemoveKubeletPki { hosts: pki_hosts.to_vec(), idx: idx + 1 }),
            false => next(&plan, RestoreStep::RestartKubelet { idx: 0 }),
        }
    }

    fn restart_kubelet(&self, idx: &usize) -> Result<Step<RestoreState>, StepError> {
        let hosts = &self.ports.hosts;
        let plan = self.plan;
        let all = plan.ssh_hosts();
        let h = all[*idx];
        hosts.run(h, &HostOp::RestartKubelet).map_err(|e| e.during(format!("restart kubelet on {h}")))?;
        match idx + 1 < all.len() {
            true => next(plan, RestoreStep::RestartKubelet { idx: idx + 1 }),
            false => next(plan, RestoreStep::ApproveCsrs),
        }
    }

    fn approve_csrs(&self) -> Result<Step<RestoreState>, StepError> {
        let api = &self.ports.api;
        let p = self.p;
        let plan = self.plan;
        let expected: Vec<String> =
            plan.ssh_hosts().into_iter().chain(plan.reached_workers()).filter_map(|h| plan.node_of(h)).map(str::to_string).collect();
        let csrs = api.list_csrs().map_err(|e| e.during("list CSRs"))?;
        let nodes = api.list_nodes().map_err(|e| e.during("list nodes"))?;
        let approve_serving = match p.approve_serving_csrs {
            Some(yes) => yes,
            // User-provisioned: no control-plane Machine objects, so no machine approver for them.
            None => !api.list_machines().map_err(|e| e.during("list machines"))?.iter().any(|m| m.control_plane),
        };
        // Policy: only CSRs for the nodes we restarted; node-bootstrapper first, then
        // kubelet-serving (asking for nothing but the node's own names). Anything else is left
        // for a person.
        for kind in [CsrKind::NodeBootstrapper, CsrKind::KubeletServing] {
            if kind == CsrKind::KubeletServing && !approve_serving {
                continue;
            }
            for c in csrs.iter().filter(|c| c.pending && c.kind == kind) {
                let Some(node) = c.node.as_deref().filter(|n| expected.iter().any(|e| e == n)) else { continue };
                match crate::csr::refusal(c, &expected, nodes.iter().find(|n| n.name == node), self.cx.now) {
                    None => api.approve_csr(&c.name).map_err(|e| e.during(format!("approve CSR {}", c.name)))?,
                    Some(why) => tracing::warn!(csr = %c.name, node, "CSR outside the approval policy, left for a person: {why}"),
                }
            }
        }
        let waiting: Vec<&str> = expected
            .iter()
            .map(String::as_str)
            .filter(|n| !nodes.iter().any(|x| x.name == *n && x.ready && x.reported_since(plan.restored_at)))
            .collect();
        // Pending CSRs of ours that the policy approves: the next call approves them. One outside
        // the policy is not waited for (a person decides on it).
        let pending_ours = api.list_csrs().map_err(|e| e.during("list CSRs"))?.into_iter().any(|c| {
            c.pending
                && (c.kind == CsrKind::NodeBootstrapper || approve_serving)
                && crate::csr::refusal(&c, &expected, nodes.iter().find(|n| Some(n.name.as_str()) == c.node.as_deref()), self.cx.now)
                    .is_none()
        });
        match (waiting.is_empty(), pending_ours) {
            (true, false) => next(plan, RestoreStep::WaitSingleMemberEtcd),
            (true, true) => wait("the CSRs of the restarted nodes to be issued", 20, 30),
            (false, _) => wait(format!("nodes {} Ready", waiting.join(", ")), 20, 30),
        }
    }

    fn wait_single_member_etcd(&self) -> Result<Step<RestoreState>, StepError> {
        let hosts = &self.ports.hosts;
        let api = &self.ports.api;
        let rec = self.plan.recovery.name.as_str();
        let plan = self.plan;
        let HostOutput::Names(running) =
            hosts.run(rec, &HostOp::RunningContainers { name: "etcd".into() }).map_err(|e| e.during("crictl ps on the recovery host"))?
        else {
            return Err(StepError::Bug("RunningContainers answered something else".into()));
        };
        let pods = api.list_pods("openshift-etcd", "k8s-app=etcd").map_err(|e| e.during("list etcd pods"))?;
        let running_pods: Vec<&PodInfo> = pods.iter().filter(|p| p.phase == PodStatus::Running).collect();
        match (running.is_empty(), running_pods.as_slice()) {
            (false, [one]) if one.node == plan.recovery.node => {
                // Steps 13-15 depend on the network plugin and its layout: read, not assumed.
                let net = api.network_layout().map_err(|e| e.during("read network.config/cluster"))?;
                // Step 15's note: fail-closed webhooks can reject the pods recreated from here on.
                let hooks = api.fail_closed_webhooks().map_err(|e| e.during("list admission webhook configurations"))?;
                let mut plan = plan.clone();
                plan.fail_closed_webhooks = hooks.iter().map(|h| h.to_string()).collect();
                if !hooks.is_empty() {
                    tracing::warn!(webhooks = ?plan.fail_closed_webhooks, "admission webhooks with failurePolicy Fail can reject the pods the restore recreates");
                }
                match (net.is_ovn(), net.ovn_interconnect) {
                    (true, false) => next(&plan, RestoreStep::DeleteOtherNodes),
                    (true, true) => next(&plan, RestoreStep::RestartOvnControlPlane),
                    (false, _) => {
                        tracing::info!(network = %net.network_type, "not OVN-Kubernetes: the runbook's OVN steps do not apply");
                        next(&plan, RestoreStep::PlanMachineReplacement)
                    }
                }
            }
            _ => wait(format!("a single running etcd member on {rec}"), 15, 15),
        }
    }

    fn delete_other_nodes(&self) -> Result<Step<RestoreState>, StepError> {
        let api = &self.ports.api;
        let plan = self.plan;
        for h in &plan.others {
            api.delete_node(&h.node).map_err(|e| e.during(format!("delete node {}", h.node)))?;
        }
        next(plan, RestoreStep::WaitOvnForgetsIps)
    }

    fn wait_ovn_forgets_ips(&self) -> Result<Step<RestoreState>, StepError> {
        let api = &self.ports.api;
        let plan = self.plan;
        // The Nodes' InternalIPs as the API recorded them (the SSH address may be another one);
        // runs recorded before they were kept fall back to the inventory address.
        let ips: Vec<String> =
            plan.others.iter().map(|h| plan.node_ips.get(&h.node).cloned().unwrap_or_else(|| h.address.clone())).collect();
        let still = api.ovn_master_references(&ips).map_err(|e| e.during("read ds/ovnkube-master"))?;
        match still.is_empty() {
            true => next(plan, RestoreStep::RemoveOvnDatabases { idx: 0 }),
            // The runbook says 5-10 minutes; slow clusters take several times that.
            false => wait(format!("ovnkube-master to stop referencing {}", still.join(", ")), 30, 60),
        }
    }

    fn remove_ovn_databases(&self, idx: &usize) -> Result<Step<RestoreState>, StepError> {
        let hosts = &self.ports.hosts;
        let plan = self.plan;
        let all = plan.ssh_hosts();
        let h = all[*idx];
        hosts.run(h, &HostOp::RemoveOvnDatabases).map_err(|e| e.during(format!("remove OVN databases on {h}")))?;
        match idx + 1 < all.len() {
            true => next(plan, RestoreStep::RemoveOvnDatabases { idx: idx + 1 }),
            false => next(plan, RestoreStep::RestartOvnMasters),
        }
    }

    fn restart_ovn(&self, step: &RestoreStep) -> Result<Step<RestoreState>, StepError> {
        let api = &self.ports.api;
        let plan = self.plan;
        let (sel, then) = match step {
            RestoreStep::RestartOvnMasters => ("app=ovnkube-master", RestoreStep::WaitOvnMasters),
            _ => ("app=ovnkube-node", RestoreStep::WaitOvnNodes),
        };
        // Deleting twice after a crash only restarts the pods again: idempotent enough.
        for pod in api.list_pods(OVN_NS, sel).map_err(|e| e.during("list OVN pods"))? {
            api.delete_pod(OVN_NS, &pod.name).map_err(|e| e.during(format!("delete pod {}", pod.name)))?;
        }
        next(plan, then)
    }

    fn wait_ovn(&self, step: &RestoreStep) -> Result<Step<RestoreState>, StepError> {
        let api = &self.ports.api;
        let plan = self.plan;
        let (sel, then) = match step {
            RestoreStep::WaitOvnMasters => ("app=ovnkube-master", RestoreStep::RestartOvnNodes),
            _ => ("app=ovnkube-node", RestoreStep::PlanMachineReplacement),
        };
        let pods = api.list_pods(OVN_NS, sel).map_err(|e| e.during("list OVN pods"))?;
        let not_running: Vec<String> =
            pods.iter().filter(|p| p.phase != PodStatus::Running).map(|p| format!("{} {}", p.name, p.phase)).collect();
        // A pod restarted right after its databases were removed may crashloop a few times
        // before it settles: a wait (bounded), not a verdict on the first look.
        match !pods.is_empty() && not_running.is_empty() {
            true => next(plan, then),
            false => wait(format!("{sel} pods Running ({}){}", not_running.join(", "), self.webhook_hint()), 15, 20),
        }
    }

    /// Interconnect step 13: restart the OVN-Kubernetes control plane.
    fn restart_ovn_control_plane(&self) -> Result<Step<RestoreState>, StepError> {
        let api = &self.ports.api;
        for pod in api.list_pods(OVN_NS, "app=ovnkube-control-plane").map_err(|e| e.during("list ovnkube-control-plane pods"))? {
            api.delete_pod(OVN_NS, &pod.name).map_err(|e| e.during(format!("delete pod {}", pod.name)))?;
        }
        next(self.plan, RestoreStep::WaitOvnControlPlane)
    }

    fn wait_ovn_control_plane(&self) -> Result<Step<RestoreState>, StepError> {
        let plan = self.plan;
        let pods =
            self.ports.api.list_pods(OVN_NS, "app=ovnkube-control-plane").map_err(|e| e.during("list ovnkube-control-plane pods"))?;
        // Replicas on lost hosts cannot run until their machines are replaced (step 16): only
        // the hosts this run reaches count.
        let ours: Vec<&str> = plan.ssh_hosts().into_iter().filter_map(|h| plan.node_of(h)).collect();
        let pods: Vec<&PodInfo> = pods.iter().filter(|p| ours.contains(&p.node.as_str())).collect();
        let not_running: Vec<String> =
            pods.iter().filter(|p| p.phase != PodStatus::Running).map(|p| format!("{} {}", p.name, p.phase)).collect();
        match !pods.is_empty() && not_running.is_empty() {
            true => next(self.plan, RestoreStep::ResetOvnIcNode { idx: 0, action: OvnIcReset::RemoveDatabases }),
            false => wait(format!("ovnkube-control-plane pods Running ({}){}", not_running.join(", "), self.webhook_hint()), 15, 20),
        }
    }

    /// Interconnect step 14 on one host: its own databases, Open vSwitch, its ovnkube-node pod.
    fn reset_ovn_ic_node(&self, idx: &usize, action: &OvnIcReset) -> Result<Step<RestoreState>, StepError> {
        let (api, hosts, plan) = (&self.ports.api, &self.ports.hosts, self.plan);
        let all = plan.ssh_hosts();
        let h = all[*idx];
        let node = plan.node_of(h).unwrap_or(h);
        let then = |action| next(plan, RestoreStep::ResetOvnIcNode { idx: *idx, action });
        let node_pods = || -> Result<Vec<PodInfo>, StepError> {
            let pods = api.list_pods(OVN_NS, "app=ovnkube-node").map_err(|e| e.during("list ovnkube-node pods"))?;
            Ok(pods.into_iter().filter(|p| p.node == node).collect())
        };
        match action {
            OvnIcReset::RemoveDatabases => {
                hosts.run(h, &HostOp::RemoveOvnIcDatabases).map_err(|e| e.during(format!("remove the OVN databases on {h}")))?;
                then(OvnIcReset::RestartOvs)
            }
            OvnIcReset::RestartOvs => {
                hosts.run(h, &HostOp::RestartOvs).map_err(|e| e.during(format!("restart Open vSwitch on {h}")))?;
                then(OvnIcReset::DeleteNodePod)
            }
            OvnIcReset::DeleteNodePod => {
                for pod in node_pods()? {
                    api.delete_pod(OVN_NS, &pod.name).map_err(|e| e.during(format!("delete pod {}", pod.name)))?;
                }
                then(OvnIcReset::WaitNodePod)
            }
            OvnIcReset::WaitNodePod => {
                let pods = node_pods()?;
                match (!pods.is_empty() && pods.iter().all(|p| p.phase == PodStatus::Running), idx + 1 < all.len()) {
                    (true, true) => next(plan, RestoreStep::ResetOvnIcNode { idx: idx + 1, action: OvnIcReset::RemoveDatabases }),
                    (true, false) => next(plan, RestoreStep::PlanMachineReplacement),
                    (false, _) => {
                        let phases: Vec<String> = pods.iter().map(|p| format!("{} {}", p.name, p.phase)).collect();
                        wait(format!("the ovnkube-node pod on {node} Running ({}){}", phases.join(", "), self.webhook_hint()), 15, 20)
                    }
                }
            }
        }
    }

    /// Step 16: how the lost machines come back depends on the platform (the step's notes): re-created
    /// by hand on cloud IPI, by the control plane machine set when it is Active, never on bare
    /// metal IPI (deleting the machine deprovisions its host), and by the installation method on
    /// user-provisioned clusters. The 4.5 chapter has no such step at all.
    fn plan_machine_replacement(&self) -> Result<Step<RestoreState>, StepError> {
        let api = &self.ports.api;
        let plan = self.plan;
        let layout = api.machine_layout().map_err(|e| e.during("read infrastructure/cluster and the control plane machine set"))?;
        let version = api.cluster_version().map_err(|e| e.during("read the cluster version"))?;
        let machines = api.list_machines().map_err(|e| e.during("list machines"))?;
        let other_nodes: Vec<&str> = plan.others.iter().map(|h| h.node.as_str()).collect();
        let todo: Vec<String> = machines
            .iter()
            .filter(|m| m.control_plane && m.node.as_deref().is_some_and(|n| other_nodes.contains(&n)))
            .map(|m| m.name.clone())
            .collect();
        let has_control_plane_machines = machines.iter().any(|m| m.control_plane);
        match machine_policy(&layout, &version, has_control_plane_machines) {
            MachinePolicy::NotRecreated(why) => next(plan, RestoreStep::RejoinNodes { idx: 0, why }),
            _ if todo.is_empty() => next(plan, RestoreStep::QuorumGuardOff),
            MachinePolicy::ControlPlaneMachineSet => {
                let known = machines.iter().map(|m| m.name.clone()).collect();
                let current = ReplaceMachine::CpmsDelete { old: todo[0].clone(), known };
                next(plan, RestoreStep::ReplaceMachines { current, todo, created: vec![] })
            }
            MachinePolicy::Recreate => {
                let current = ReplaceMachine::SaveSpec { old: todo[0].clone() };
                next(plan, RestoreStep::ReplaceMachines { current, todo, created: vec![] })
            }
        }
    }

    /// On a reachable host that stays in the cluster: put back the keepalived manifest step 4
    /// moved aside (the runbook moves it only where the node is deleted; this host's is not, and
    /// without it the VIPs cannot fail over here), then restart kubelet if its Node object is
    /// gone (deleted in step 13), so that it registers again.
    fn rejoin_nodes(&self, idx: &usize, why: &str) -> Result<Step<RestoreState>, StepError> {
        let plan = self.plan;
        let Some(h) = self.plan.reachable.get(*idx) else {
            return next(plan, RestoreStep::WaitNodesRejoined { why: why.to_string() });
        };
        match self.ports.hosts.run(h, &HostOp::MoveManifestIn(StaticPod::Keepalived)) {
            // Neither in /tmp nor in place: this host runs no keepalived.
            Ok(_) | Err(PortError::NotFound(_)) => {}
            Err(e) => return Err(e.during(format!("put the keepalived manifest back on {h}"))),
        }
        let node = plan.node_of(h).unwrap_or(h);
        let nodes = self.ports.api.list_nodes().map_err(|e| e.during("list nodes"))?;
        if !nodes.iter().any(|n| n.name == node) {
            self.ports.hosts.run(h, &HostOp::RestartKubelet).map_err(|e| e.during(format!("restart kubelet on {h}")))?;
        }
        next(plan, RestoreStep::RejoinNodes { idx: idx + 1, why: why.to_string() })
    }

    fn wait_nodes_rejoined(&self, why: &str) -> Result<Step<RestoreState>, StepError> {
        let plan = self.plan;
        let nodes = self.ports.api.list_nodes().map_err(|e| e.during("list nodes"))?;
        let missing: Vec<&str> = plan
            .reachable
            .iter()
            .filter_map(|h| plan.node_of(h))
            .filter(|node| !nodes.iter().any(|n| &n.name == node && n.ready))
            .collect();
        match (missing.is_empty(), plan.unreachable.is_empty()) {
            (false, _) => wait(format!("nodes {} to register again and be Ready", missing.join(", ")), 20, 30),
            (true, true) => next(plan, RestoreStep::QuorumGuardOff),
            (true, false) => next(plan, RestoreStep::ConfirmLostHosts { why: why.to_string() }),
        }
    }

    /// Lost hosts stay lost here: a person replaces them as the platform requires; the run says
    /// so at a gate instead of passing over an empty machine list.
    fn confirm_lost_hosts(&self, why: &str) -> Result<Step<RestoreState>, StepError> {
        let plan = self.plan;
        // A host skipped for an SSH blip is not lost: bring it in instead of leaving it out.
        if let Some(back) = plan.unreachable.iter().find(|h| self.ports.hosts.connect(h).is_ok()) {
            let mut plan = plan.clone();
            plan.mark_reachable(back);
            let step = RestoreStep::StopLateHost { host: back.clone(), action: StopPods::MoveEtcdManifest, why: why.to_string() };
            return next(&plan, step);
        }
        match self.cx.gate(LOST_HOSTS_GATE).map(|d| &d.decision) {
            Some(Decision::Approved) => {
                let mut plan = plan.clone();
                plan.not_replaced = plan.unreachable.clone();
                next(&plan, RestoreStep::QuorumGuardOff)
            }
            Some(Decision::Rejected) => halt(
                format!(
                    "stopped at the lost-hosts gate: {} must be replaced before the restore goes on; resume once they are",
                    plan.unreachable.join(", ")
                ),
                vec![why.to_string()],
            ),
            None => Ok(Step::Gate {
                gate: LOST_HOSTS_GATE.into(),
                prompt: format!(
                    "Control-plane hosts {} were lost and this run does not re-create their machines: {why}. Approve to finish the \
                     restore with the {} members left (replace the lost hosts afterwards, as the platform's documentation says), or \
                     reject to stop here.",
                    plan.unreachable.join(", "),
                    plan.others.len() + 1 - plan.unreachable.len()
                ),
                evidence: vec![why.to_string()],
            }),
        }
    }

    fn quorum_guard_off(&self) -> Result<Step<RestoreState>, StepError> {
        let api = &self.ports.api;
        let plan = self.plan;
        let cx = self.cx;
        api.set_quorum_guard(false).map_err(|e| e.during("turn the etcd quorum guard off"))?;
        let before = api.installer_progress(Operator::Etcd).map_err(|e| e.during("read etcd revision"))?.latest_revision;
        next(plan, RestoreStep::ForceEtcdRedeployment { reason: redeploy_reason(cx, "etcd"), before_revision: before })
    }

    fn force_etcd_redeployment(&self, reason: &str, before_revision: &u64) -> Result<Step<RestoreState>, StepError> {
        let plan = self.plan;
        // Steps 18-19: from the recovery host, through its localhost-recovery kubeconfig.
        let rec = self.plan.recovery.name.as_str();
        self.ports
            .hosts
            .run(rec, &HostOp::ForceEtcdRedeploymentLocally { reason: reason.to_string() })
            .map_err(|e| e.during(format!("force etcd redeployment on {rec} (recovery kubeconfig)")))?;
        next(plan, RestoreStep::WaitEtcdRevisionCreated { before_revision: *before_revision })
    }

    fn wait_etcd_revision_created(&self, before_revision: &u64) -> Result<Step<RestoreState>, StepError> {
        let api = &self.ports.api;
        let plan = self.plan;
        let prog = api.installer_progress(Operator::Etcd).map_err(|e| e.during("read etcd revision"))?;
        match prog.latest_revision > *before_revision {
            true => next(plan, RestoreStep::QuorumGuardOn { before_revision: *before_revision }),
            false => wait("the etcd operator to create the forced revision", 10, 15),
        }
    }

    fn quorum_guard_on(&self, before_revision: &u64) -> Result<Step<RestoreState>, StepError> {
        let api = &self.ports.api;
        let plan = self.plan;
        api.set_quorum_guard(true).map_err(|e| e.during("turn the etcd quorum guard back on"))?;
        // 21. The override is gone: read it back rather than trust the write.
        if !api.quorum_guard_enabled().map_err(|e| e.during("check that the unsupportedConfigOverrides are gone"))? {
            return wait("the etcd operator's unsupportedConfigOverrides to be gone (quorum guard back on)", 10, 10);
        }
        next(plan, RestoreStep::WaitEtcdRollout { before_revision: *before_revision })
    }

    fn wait_etcd_rollout(&self, before_revision: &u64) -> Result<Step<RestoreState>, StepError> {
        let api = &self.ports.api;
        let prog = api.installer_progress(Operator::Etcd).map_err(|e| e.during("read etcd NodeInstallerProgressing"))?;
        match prog.latest_revision > *before_revision && prog.rolled_out_to(self.control_plane_nodes()) {
            true => self.force_next_rollout(Operator::KubeApiServer),
            false => wait(format!("etcd AllNodesAtLatestRevision ({})", prog.message), 30, 60),
        }
    }

    fn force_rollout(&self, operator: &Operator, reason: &str, before_revision: &u64) -> Result<Step<RestoreState>, StepError> {
        let api = &self.ports.api;
        let plan = self.plan;
        api.force_redeployment(*operator, reason).map_err(|e| e.during(format!("force {operator} rollout")))?;
        next(plan, RestoreStep::WaitRollout { operator: *operator, before_revision: *before_revision })
    }

    fn wait_rollout(&self, operator: &Operator, before_revision: &u64) -> Result<Step<RestoreState>, StepError> {
        let api = &self.ports.api;
        let plan = self.plan;
        let prog = api.installer_progress(*operator).map_err(|e| e.during(format!("read {operator} NodeInstallerProgressing")))?;
        if !(prog.latest_revision > *before_revision && prog.rolled_out_to(self.control_plane_nodes())) {
            return wait(format!("{operator} AllNodesAtLatestRevision ({})", prog.message), 30, 60);
        }
        match operator {
            Operator::KubeApiServer => self.force_next_rollout(Operator::KubeControllerManager),
            Operator::KubeControllerManager => self.force_next_rollout(Operator::KubeScheduler),
            _ => next(plan, RestoreStep::VerifyEtcd),
        }
    }

    fn verify_etcd(&self) -> Result<Step<RestoreState>, StepError> {
        let api = &self.ports.api;
        let rec = self.plan.recovery.name.as_str();
        let p = self.p;
        let plan = self.plan;
        let pods = api.list_pods("openshift-etcd", "k8s-app=etcd").map_err(|e| e.during("list etcd pods"))?;
        let running = pods.iter().filter(|p| p.phase == PodStatus::Running && p.ready).count();
        // 24. One etcd member per control-plane host the cluster had, not a fixed three.
        let want = self.control_plane_nodes();
        let mut after = vec![
            // The runbook's closing paragraph: what the restore cannot do for the workloads.
            "restart each pod that keeps Kubernetes API information (routers, operators, third-party components); oc login may \
             fail until the OAuth server pods restart (OpenShift Container Platform 4.14 Backup and restore §5.4.2.2, after \
             step 24)"
                .to_string(),
        ];
        // Workers this run could not renew (not in --workers, or not answering SSH).
        let nodes = api.list_nodes().map_err(|e| e.during("list nodes"))?;
        let workers_not_ready: Vec<&str> = nodes.iter().filter(|n| !n.control_plane && !n.ready).map(|n| n.name.as_str()).collect();
        if !workers_not_ready.is_empty() {
            after.push(format!(
                "workers NotReady: {}: on each, remove /var/lib/kubelet/pki/*.pem, restart kubelet and approve its CSRs \
                 (steps 9.2 and 11; list them with --workers to let drctl do it)",
                workers_not_ready.join(", ")
            ));
        }
        if !plan.fail_closed_webhooks.is_empty() {
            after.push(format!(
                "webhooks with failurePolicy Fail were active during the restore: {} (if you changed or removed them for it, \
                 restore them now)",
                plan.fail_closed_webhooks.join("; ")
            ));
        }
        match running == want {
            true => Ok(Step::Done {
                summary: format!(
                    "cluster restored from backup {} on {}; {want} etcd members running; skipped unreachable hosts: {}. Next: {}",
                    p.backup,
                    rec,
                    if plan.unreachable.is_empty() { "none".to_string() } else { plan.unreachable.join(", ") },
                    after.join(". ")
                ),
            }),
            false => wait(format!("{want} running etcd pods (have {running})"), 30, 30),
        }
    }

    fn undo_quorum_guard(&self) -> Result<Step<RestoreState>, StepError> {
        let api = &self.ports.api;
        api.set_quorum_guard(true).map_err(|e| e.during("turn the etcd quorum guard back on"))?;
        Ok(Step::Done { summary: "aborted; the etcd quorum guard is back on".into() })
    }
}

/// Why a restore cannot go on where keepalived runs without both VIPs named (step 4.7 removes
/// every VIP a stopped keepalived leaves behind): said up front and by the z-stream guard.
const NEEDS_VIPS: &str = "keepalived runs on the control plane: pass --api-vip and --ingress-vip so both VIPs can be handled";

/// What the first guards would halt on, checked before the run is stored: the backup set
/// exists, the recovery host is a control-plane host, and both VIPs are named where keepalived
/// runs on the control plane. The same messages as the steps'.
/// The backup set is in the backup location and the recovery host, when named, is a
/// control-plane host of the target (checked up front by every restore from a backup).
pub fn check_backup_and_recovery_host(
    backup: &str,
    recovery_host: Option<&str>,
    facts: &crate::catalog::TargetFacts,
) -> Result<(), String> {
    if let Some(backups) = &facts.backups {
        if !backups.iter().any(|b| b == backup) {
            let known = if backups.is_empty() { "none".to_string() } else { backups.join(", ") };
            return Err(format!("backup not found: backup set '{backup}' is not in the backup location (it holds: {known})"));
        }
    }
    if let (Some(name), Some(hosts)) = (recovery_host, &facts.control_plane_hosts) {
        if !hosts.iter().any(|h| h == name) {
            return Err(format!("recovery host {name} is not a control-plane host (control-plane hosts: {})", hosts.join(", ")));
        }
    }
    Ok(())
}

pub fn preflight(params: &serde_json::Value, facts: &crate::catalog::TargetFacts) -> Result<(), String> {
    let p: RestoreParams = serde_json::from_value(params.clone()).map_err(|e| format!("invalid parameters: {e}"))?;
    check_backup_and_recovery_host(&p.backup, p.recovery_host.as_deref(), facts)?;
    if facts.keepalived == Some(true) && (p.api_vip.is_none() || p.ingress_vip.is_none()) {
        return Err(NEEDS_VIPS.into());
    }
    Ok(())
}

impl Procedure for RestoreClusterState {
    type Env = Ports;
    type Params = RestoreParams;
    type State = RestoreState;
    const NAME: &'static str = "restore-cluster-state";
    const VERSION: u32 = 1;

    fn validate(&self, p: &RestoreParams) -> Result<(), String> {
        if p.backup.trim().is_empty() {
            return Err("--backup must name a backup set in the backup location".into());
        }
        if !p.backup_dir.starts_with('/') {
            return Err(format!("--backup-dir must be an absolute path on the recovery host, got '{}'", p.backup_dir));
        }
        if let Some(h) = &p.recovery_host {
            if h.trim().is_empty() {
                return Err("--recovery-host must not be empty".into());
            }
        }
        // The VIPs go into `ip addr` commands on the hosts: an address, nothing else.
        for (flag, vip) in [("--api-vip", &p.api_vip), ("--ingress-vip", &p.ingress_vip)] {
            if let Some(v) = vip {
                if v.parse::<std::net::IpAddr>().is_err() {
                    return Err(format!("{flag} '{v}' is not an IP address (e.g. 10.0.0.5)"));
                }
            }
        }
        Ok(())
    }

    fn initial_state(&self, _p: &RestoreParams) -> RestoreState {
        RestoreState::CheckApiDown
    }

    fn state_name(&self, s: &RestoreState) -> String {
        match s {
            RestoreState::CheckApiDown => "CheckApiDown".into(),
            RestoreState::CheckBackup => "CheckBackup".into(),
            RestoreState::SelectRecoveryHost => "SelectRecoveryHost".into(),
            RestoreState::CheckQuorumLost { recovery, .. } => format!("CheckQuorumLost({})", recovery.name),
            RestoreState::CheckZStream { recovery, .. } => format!("CheckZStream({})", recovery.name),
            RestoreState::ConfirmHostsDown { at_risk, .. } => format!("ConfirmHostsDown({})", at_risk.join(",")),
            RestoreState::AwaitApproval { .. } => "AwaitApproval".into(),
            RestoreState::EstablishSsh { others, idx, .. } => {
                format!("EstablishSsh({})", others.get(*idx).map(|h| h.name.as_str()).unwrap_or("-"))
            }
            RestoreState::Restoring { plan, step } => match step {
                RestoreStep::StopStaticPods { host, action } => format!("StopStaticPods({}:{action:?})", plan.reachable[*host]),
                RestoreStep::RemoveKubeletPki { hosts, idx } => format!("RemoveKubeletPki({})", hosts[*idx]),
                RestoreStep::RestartKubelet { idx } => format!("RestartKubelet({})", plan.ssh_hosts()[*idx]),
                RestoreStep::RemoveOvnDatabases { idx } => format!("RemoveOvnDatabases({})", plan.ssh_hosts()[*idx]),
                RestoreStep::RunRestore { .. } => "RunRestore".into(),
                RestoreStep::RejoinNodes { idx, .. } => format!("RejoinNodes({})", plan.reachable.get(*idx).map_or("-", String::as_str)),
                RestoreStep::WaitNodesRejoined { .. } => "WaitNodesRejoined".into(),
                RestoreStep::ResetOvnIcNode { idx, action } => format!("ResetOvnIcNode({}:{action:?})", plan.ssh_hosts()[*idx]),
                RestoreStep::ConfirmLostHosts { .. } => "ConfirmLostHosts".into(),
                RestoreStep::StopLateHost { host, action, .. } => format!("StopLateHost({host}:{action:?})"),
                RestoreStep::ReplaceMachines { current, .. } => current.state_name(),
                RestoreStep::ForceEtcdRedeployment { .. } => "ForceEtcdRedeployment".into(),
                RestoreStep::WaitEtcdRevisionCreated { .. } => "WaitEtcdRevisionCreated".into(),
                RestoreStep::QuorumGuardOn { .. } => "QuorumGuardOn".into(),
                RestoreStep::WaitEtcdRollout { .. } => "WaitEtcdRollout".into(),
                RestoreStep::ForceRollout { operator, .. } => format!("ForceRollout({operator})"),
                RestoreStep::WaitRollout { operator, .. } => format!("WaitRollout({operator})"),
                other => format!("{other:?}"),
            },
        }
    }

    fn check_state(&self, _p: &RestoreParams, s: &RestoreState) -> Result<(), String> {
        if let RestoreState::ConfirmHostsDown { plan, at_risk } = s {
            if at_risk.is_empty() || at_risk.iter().any(|h| !plan.unreachable.contains(h)) {
                return Err(format!("hosts at risk {at_risk:?} must be among the unreachable {:?}", plan.unreachable));
            }
            return Ok(());
        }
        let RestoreState::Restoring { plan, step } = s else { return Ok(()) };
        if plan.others.iter().any(|h| h.name == plan.recovery.name) {
            return Err(format!("recovery host {} is also listed among the other hosts", plan.recovery.name));
        }
        for h in plan.reachable.iter().chain(&plan.unreachable) {
            if !plan.others.iter().any(|o| &o.name == h) {
                return Err(format!("host {h} is not one of the other control-plane hosts"));
            }
        }
        let n_ssh = plan.reachable.len() + 1;
        let ok = match step {
            RestoreStep::StopStaticPods { host, .. } => *host < plan.reachable.len(),
            RestoreStep::RemoveKubeletPki { hosts, idx } => *idx < hosts.len(),
            RestoreStep::RestartKubelet { idx } | RestoreStep::RemoveOvnDatabases { idx } | RestoreStep::ResetOvnIcNode { idx, .. } => {
                *idx < n_ssh
            }
            RestoreStep::ReplaceMachines { todo, created, .. } => created.len() <= todo.len(),
            RestoreStep::RejoinNodes { idx, .. } => *idx <= plan.reachable.len(),
            _ => true,
        };
        match ok {
            true => Ok(()),
            false => Err(format!("index out of range in {step:?}")),
        }
    }

    fn step(&self, ports: &Ports, cx: &StepContext, p: &RestoreParams, s: &RestoreState) -> Result<Step<RestoreState>, StepError> {
        match s {
            RestoreState::CheckApiDown => self.check_api_down(ports, p),
            RestoreState::CheckBackup => self.check_backup(ports, p),
            RestoreState::SelectRecoveryHost => self.select_recovery_host(ports, p),
            RestoreState::CheckQuorumLost { recovery, others } => self.check_quorum_lost(ports, p, recovery, others),
            RestoreState::ConfirmHostsDown { plan, at_risk } => self.confirm_hosts_down(ports, cx, plan, at_risk),
            RestoreState::CheckZStream { recovery, others } => self.check_z_stream(ports, p, recovery, others),
            RestoreState::AwaitApproval { recovery, others } => self.await_approval(cx, p, recovery, others),
            RestoreState::EstablishSsh { .. } => self.establish_ssh(ports, cx, s),
            RestoreState::Restoring { plan, step } => self.step_restoring(ports, cx, p, plan, step),
        }
    }

    fn on_abort(&self, _p: &RestoreParams, s: &RestoreState) -> Option<RestoreState> {
        let RestoreState::Restoring { plan, step } = s else { return None };
        match step {
            // Between turning the guard off and turning it back on: turn it back on.
            RestoreStep::QuorumGuardOff
            | RestoreStep::ForceEtcdRedeployment { .. }
            | RestoreStep::WaitEtcdRevisionCreated { .. }
            | RestoreStep::QuorumGuardOn { .. } => Some(RestoreState::Restoring { plan: plan.clone(), step: RestoreStep::UndoQuorumGuard }),
            _ => None,
        }
    }

    /// Every setting may be corrected until the run is approved and acts (step 2 on): up to
    /// then it has only looked, and it starts again from its first guard with the new value.
    fn correctable(&self, key: &str, s: &RestoreState) -> Result<(), String> {
        if key == "ovn_kubernetes" {
            return Err("ovn_kubernetes is no longer used (the network is read from the cluster)".into());
        }
        match s {
            RestoreState::CheckApiDown
            | RestoreState::CheckBackup
            | RestoreState::SelectRecoveryHost
            | RestoreState::CheckQuorumLost { .. }
            | RestoreState::CheckZStream { .. }
            | RestoreState::AwaitApproval { .. } => Ok(()),
            _ => Err(format!(
                "it halted at {}, after the restore began changing the cluster with the {key} it has: changing it now is unsafe; \
                 fix what halted it and resume, or abort it",
                self.state_name(s)
            )),
        }
    }

    fn is_undo_state(&self, s: &RestoreState) -> bool {
        matches!(s, RestoreState::Restoring { step: RestoreStep::UndoQuorumGuard, .. })
    }

    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        STATE_CATALOG
    }
}

/// Every state (as `state_name` names it, argument stripped) and where a step or an abort may
/// move it; the chaos harness reports which were never reached and fails on any not listed.
const STATE_CATALOG: &[(&str, &[&str])] = &[
    ("CheckApiDown", &["CheckBackup"]),
    ("CheckBackup", &["SelectRecoveryHost"]),
    ("SelectRecoveryHost", &["CheckQuorumLost"]),
    ("CheckQuorumLost", &["CheckZStream"]),
    ("CheckZStream", &["AwaitApproval"]),
    ("AwaitApproval", &["EstablishSsh"]),
    ("EstablishSsh", &["EstablishSsh", "CopyBackup", "ConfirmHostsDown"]),
    ("ConfirmHostsDown", &["ConfirmHostsDown", "CopyBackup"]),
    ("CopyBackup", &["StopStaticPods", "CheckRecoveryVip"]),
    ("StopStaticPods", &["StopStaticPods", "CheckRecoveryVip"]),
    ("CheckRecoveryVip", &["RunRestore", "StopStaticPods"]),
    ("RunRestore", &["WaitNodes"]),
    ("WaitNodes", &["WaitNodes", "RemoveKubeletPki", "RestartKubelet"]),
    ("RemoveKubeletPki", &["RemoveKubeletPki", "RestartKubelet"]),
    ("RestartKubelet", &["RestartKubelet", "ApproveCsrs"]),
    ("ApproveCsrs", &["WaitSingleMemberEtcd"]),
    ("WaitSingleMemberEtcd", &["DeleteOtherNodes", "RestartOvnControlPlane", "PlanMachineReplacement"]),
    ("RestartOvnControlPlane", &["WaitOvnControlPlane"]),
    ("WaitOvnControlPlane", &["ResetOvnIcNode"]),
    ("ResetOvnIcNode", &["ResetOvnIcNode", "PlanMachineReplacement"]),
    ("DeleteOtherNodes", &["WaitOvnForgetsIps"]),
    ("WaitOvnForgetsIps", &["RemoveOvnDatabases"]),
    ("RemoveOvnDatabases", &["RemoveOvnDatabases", "RestartOvnMasters"]),
    ("RestartOvnMasters", &["WaitOvnMasters"]),
    ("WaitOvnMasters", &["RestartOvnNodes"]),
    ("RestartOvnNodes", &["WaitOvnNodes"]),
    ("WaitOvnNodes", &["PlanMachineReplacement"]),
    ("PlanMachineReplacement", &["ReplaceMachine.SaveSpec", "ReplaceMachine.CpmsDelete", "RejoinNodes", "QuorumGuardOff"]),
    ("RejoinNodes", &["RejoinNodes", "WaitNodesRejoined"]),
    ("WaitNodesRejoined", &["ConfirmLostHosts", "QuorumGuardOff"]),
    ("ConfirmLostHosts", &["QuorumGuardOff", "StopLateHost"]),
    ("StopLateHost", &["StopLateHost", "RemoveKubeletPki"]),
    ("ReplaceMachine.CpmsDelete", &["ReplaceMachine.WaitReplacement"]),
    ("ReplaceMachine.WaitReplacement", &["ReplaceMachine.CpmsDelete", "QuorumGuardOff"]),
    ("ReplaceMachine.SaveSpec", &["ReplaceMachine.DeleteOld"]),
    ("ReplaceMachine.DeleteOld", &["ReplaceMachine.WaitDeleted"]),
    ("ReplaceMachine.WaitDeleted", &["ReplaceMachine.Create"]),
    ("ReplaceMachine.Create", &["ReplaceMachine.WaitRunning"]),
    ("ReplaceMachine.WaitRunning", &["ReplaceMachine.SaveSpec", "QuorumGuardOff"]),
    ("QuorumGuardOff", &["ForceEtcdRedeployment", "UndoQuorumGuard"]),
    ("ForceEtcdRedeployment", &["WaitEtcdRevisionCreated", "UndoQuorumGuard"]),
    ("WaitEtcdRevisionCreated", &["QuorumGuardOn", "UndoQuorumGuard"]),
    ("QuorumGuardOn", &["WaitEtcdRollout", "UndoQuorumGuard"]),
    ("WaitEtcdRollout", &["ForceRollout"]),
    ("ForceRollout", &["WaitRollout"]),
    ("WaitRollout", &["ForceRollout", "VerifyEtcd"]),
    ("VerifyEtcd", &[]),
    ("UndoQuorumGuard", &[]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_invariants_catch_a_recovery_host_among_the_others() {
        let h = |n: &str| HostRef { name: n.into(), node: n.into(), address: "10.0.0.1".into() };
        let plan = Plan {
            recovery: h("m0"),
            others: vec![h("m0"), h("m1")],
            reachable: vec![],
            unreachable: vec![],
            not_replaced: vec![],
            node_ips: Default::default(),
            restored_at: None,
            fail_closed_webhooks: vec![],
            workers: vec![],
            workers_unreached: vec![],
        };
        let s = RestoreState::Restoring { plan, step: RestoreStep::CopyBackup };
        assert!(RestoreClusterState.check_state(&RestoreParams::new("b"), &s).is_err());
        let plan = Plan {
            recovery: h("m0"),
            others: vec![h("m1")],
            reachable: vec!["m1".into()],
            unreachable: vec![],
            not_replaced: vec![],
            node_ips: Default::default(),
            restored_at: None,
            fail_closed_webhooks: vec![],
            workers: vec![],
            workers_unreached: vec![],
        };
        let bad = RestoreState::Restoring {
            plan: plan.clone(),
            step: RestoreStep::StopStaticPods { host: 1, action: StopPods::MoveEtcdManifest },
        };
        assert!(RestoreClusterState.check_state(&RestoreParams::new("b"), &bad).is_err());
        let good = RestoreState::Restoring { plan, step: RestoreStep::StopStaticPods { host: 0, action: StopPods::MoveEtcdManifest } };
        assert!(RestoreClusterState.check_state(&RestoreParams::new("b"), &good).is_ok());
    }

    #[test]
    fn step_16_follows_the_platform() {
        let layout = |platform: &str, cpms: bool| MachineLayout { platform: platform.into(), control_plane_machine_set_active: cpms };
        assert_eq!(machine_policy(&layout("AWS", false), "4.14.8", true), MachinePolicy::Recreate);
        assert_eq!(machine_policy(&layout("AWS", true), "4.14.8", true), MachinePolicy::ControlPlaneMachineSet);
        let not = |l: &MachineLayout, v: &str, machines: bool, word: &str| match machine_policy(l, v, machines) {
            MachinePolicy::NotRecreated(why) => assert!(why.contains(word), "{why}"),
            other => panic!("{} {v}: {other:?}", l.platform),
        };
        not(&layout("BareMetal", false), "4.14.8", true, "BareMetalHost");
        not(&layout("BareMetal", true), "4.14.8", true, "BareMetalHost");
        not(&layout("None", false), "4.14.8", false, "installation method");
        not(&layout("AWS", false), "4.5.41", true, "4.5 Backup and restore");
    }

    #[test]
    fn params_are_validated() {
        let p = RestoreClusterState;
        assert!(p.validate(&RestoreParams::new("")).is_err());
        let mut r = RestoreParams::new("nightly");
        r.backup_dir = "relative".into();
        assert!(p.validate(&r).is_err());
        assert!(p.validate(&RestoreParams::new("nightly")).is_ok());
    }
}
