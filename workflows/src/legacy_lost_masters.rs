//! `legacy-lost-masters`: recover an OpenShift 4.1–4.3 cluster that lost the majority of its
//! masters (OpenShift Container Platform 4.3 Backup and restore §5.2, "Recovering from lost master
//! hosts"; 4.1 Disaster recovery ch.2).
//!
//! On the one master left: restore etcd quorum from a backup with `etcd-snapshot-restore.sh`
//! (a single-member cluster). Then a person creates the new masters as the originals were
//! created; their CSRs are approved by the one CSR policy; a person corrects the `etcd-N` DNS
//! records and the load balancer. Then the temporary etcd signer runs on the remaining master
//! and each new master joins with `etcd-member-recover.sh`, one at a time: a member added to a
//! one-member cluster leaves it without quorum until the new member starts, and a second add
//! before that would make quorum impossible. The signer is removed on every way out of the
//! states where it may run (success, halt, abort).

use crate::etcd_member::bounded_wait;
use crate::ports::*;
use crate::recover_expired_certs::{review_unexpected, Round, Scope};
use drctl_runtime::{Decision, Procedure, Step, StepContext, StepError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Gate before anything changes.
pub const START_GATE: &str = "start";
/// Gate at which a person creates the new masters.
pub const NEW_MASTERS_GATE: &str = "new-masters";
/// Gate at which a person corrects the etcd DNS records and the load balancer.
pub const DNS_LB_GATE: &str = "dns-lb";
/// Where the runbook copies the backup on the remaining master.
pub const DEFAULT_BACKUP_DIR: &str = "/home/core/backup";
/// A full 4.1–4.3 control plane.
const MASTERS: usize = 3;
const SIGNER_NAMESPACE: &str = "openshift-config";
const SIGNER_POD: &str = "etcd-signer";
const DOC: &str = "OpenShift Container Platform 4.3, Backup and restore, §5.2 Recovering from lost master hosts";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyParams {
    /// Backup set in the backup location: `snapshot_<time>.db` and `static_kuberesources_<time>.tar.gz`.
    pub backup: String,
    /// The master that remains (default: the first control-plane host that answers SSH).
    #[serde(default)]
    pub recovery_host: Option<String>,
    /// Where the backup is copied on the remaining master.
    #[serde(default = "default_backup_dir")]
    pub backup_dir: String,
}

fn default_backup_dir() -> String {
    DEFAULT_BACKUP_DIR.into()
}

/// The command line of `drctl run legacy-lost-masters`.
#[derive(clap::Args, Debug)]
pub struct LegacyArgs {
    /// Backup set in the backup location (with --sim: default the newest one in the world).
    #[arg(long)]
    backup: Option<String>,
    /// The master that remains (default: the first control-plane host that answers SSH).
    #[arg(long)]
    recovery_host: Option<String>,
    /// Where the backup is copied on the remaining master.
    #[arg(long, default_value = DEFAULT_BACKUP_DIR)]
    backup_dir: String,
}

impl crate::catalog::IntoParams for LegacyArgs {
    fn into_params(self) -> serde_json::Value {
        serde_json::json!({ "backup": self.backup, "recovery_host": self.recovery_host, "backup_dir": self.backup_dir })
    }
}

/// Input refused before a run is stored.
pub fn preflight(params: &serde_json::Value, facts: &crate::catalog::TargetFacts) -> Result<(), String> {
    let p: LegacyParams = serde_json::from_value(params.clone()).map_err(|e| format!("invalid parameters: {e}"))?;
    crate::restore_cluster_state::check_backup_and_recovery_host(&p.backup, p.recovery_host.as_deref(), facts)
}

/// A new master, once it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMaster {
    pub host: HostRef,
    /// Its host name: its member is `etcd-member-<hostname>`.
    pub hostname: String,
    /// The fence of its `etcd-member-recover.sh` (fixed once, so a re-run is recognised).
    pub fence: String,
}

/// What the run works with, as it learns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The master that remains: etcd is restored and the signer runs there.
    pub recovery: HostRef,
    /// Its host name (the signer is rendered for it).
    pub recovery_hostname: String,
    /// `etcd-member-<hostname>=https://<etcd DNS name>:2380`.
    pub initial_cluster: String,
    /// The other control-plane hosts of the inventory: the lost masters, and the new ones once
    /// they are built.
    pub others: Vec<HostRef>,
    /// The new masters, once they answer SSH (empty before).
    #[serde(default)]
    pub new_masters: Vec<NewMaster>,
}

impl Plan {
    /// The other hosts that are not new masters: the lost ones.
    fn lost(&self) -> impl Iterator<Item = &HostRef> {
        self.others.iter().filter(|o| !self.new_masters.iter().any(|n| n.host.name == o.name))
    }
    fn masters(&self) -> Vec<&str> {
        std::iter::once(self.recovery.node.as_str()).chain(self.new_masters.iter().map(|n| n.host.node.as_str())).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LegacyState {
    /// The master that remains, the release (4.1–4.3), quorum lost, old members shut down.
    Preflight,
    /// A person approves the plan.
    AwaitApproval { plan: Plan },
    /// Copy the backup directory to the remaining master.
    CopyBackup { plan: Plan },
    /// `etcd-snapshot-restore.sh` with the single-member initial cluster, fenced.
    RestoreQuorum { plan: Plan, fence: String },
    /// The single-member cluster serves: the API answers and the remaining master is Ready.
    WaitApi { plan: Plan },
    /// A person creates the new masters as the originals were created.
    CreateNewMasters { plan: Plan },
    /// The new masters answer SSH and run no old member; their CSRs approved by policy until
    /// their nodes are Ready.
    ApproveNewMasters { plan: Plan, scope: Scope },
    /// CSRs outside the policy: a person looks (never approved here).
    ReviewUnexpected { plan: Plan, scope: Scope, csrs: Vec<String>, evidence: Vec<String> },
    /// A person corrects the etcd DNS records and the load balancer.
    CorrectDnsAndLb { plan: Plan },
    /// `tokenize-signer.sh` and the signer pod on the remaining master; then new master `next`.
    StartSigner { plan: Plan, next: usize },
    /// The signer listens on 9943.
    WaitSigner { plan: Plan, next: usize },
    /// `etcd-member-recover.sh` on new master `idx`, once every member has started.
    AddMember { plan: Plan, idx: usize },
    /// The new member is listed and started (up to 20 minutes).
    VerifyMember { plan: Plan, idx: usize },
    /// All members restored: the signer pod is deleted.
    RemoveSigner { plan: Plan },
    /// The lost masters' Node objects (NotReady, no SSH, no etcd) are deleted.
    DeleteLostNodes { plan: Plan },
    /// Three masters Ready, three started members.
    VerifyCluster { plan: Plan },
    /// Leaving a halt while the signer may run: delete it first; resuming starts it again.
    SignerOffThenHalt { reason: String, evidence: Vec<String>, resume: Box<LegacyState> },
    /// Abort while the signer may run: delete it.
    UndoSigner,
}

impl LegacyState {
    /// States in which the signer pod may exist.
    fn signer_may_run(&self) -> bool {
        use LegacyState::*;
        matches!(self, StartSigner { .. } | WaitSigner { .. } | AddMember { .. } | VerifyMember { .. } | RemoveSigner { .. })
    }

    /// Where a resumed run goes on from: the signer is started again first.
    fn resume_point(&self) -> LegacyState {
        use LegacyState::*;
        match self {
            StartSigner { plan, next } | WaitSigner { plan, next } => StartSigner { plan: plan.clone(), next: *next },
            AddMember { plan, idx } | VerifyMember { plan, idx } => StartSigner { plan: plan.clone(), next: *idx },
            RemoveSigner { plan } => RemoveSigner { plan: plan.clone() },
            other => other.clone(),
        }
    }
}

pub struct LegacyLostMasters;

/// The release's minor version when it is 4.1–4.3.
fn legacy_release(version: &str) -> Option<u32> {
    let mut parts = version.trim().split('.');
    let (major, minor) = (parts.next()?, parts.next()?);
    let minor: u32 = minor.parse().ok()?;
    (major == "4" && (1..=3).contains(&minor)).then_some(minor)
}

impl LegacyLostMasters {
    fn preflight(&self, ports: &Ports, p: &LegacyParams) -> Result<Step<LegacyState>, StepError> {
        let hosts = &ports.hosts;
        let inventory = hosts.control_plane_hosts().map_err(|e| e.during("read the control-plane inventory"))?;
        let recovery = match &p.recovery_host {
            Some(name) => inventory.iter().find(|h| &h.name == name).cloned().ok_or_else(|| StepError::Permanent {
                reason: format!("recovery host {name} is not in the control-plane inventory"),
                evidence: vec![],
            })?,
            None => match inventory.iter().find(|h| hosts.connect(&h.name).is_ok()) {
                Some(h) => h.clone(),
                None => {
                    return Ok(Step::Halt {
                        reason: "no control-plane host answers SSH: the runbook needs one healthy master".into(),
                        evidence: vec![],
                    })
                }
            },
        };
        let rec = recovery.name.as_str();
        hosts.connect(rec).map_err(|e| e.during(format!("ssh to {rec}")))?;
        let version = match hosts.run(rec, &HostOp::ReleaseVersion).map_err(|e| e.during(format!("read the release on {rec}")))? {
            HostOutput::Version(v) => v,
            other => return Err(StepError::Bug(format!("release version answered {other:?}"))),
        };
        if legacy_release(&version).is_none() {
            return Ok(Step::Halt {
                reason: format!(
                    "{rec} runs OpenShift {version}: this procedure is for 4.1–4.3 only; from 4.4 on, restore with restore-cluster-state (OpenShift Container Platform 4.14 Backup and restore §5.4.2)"
                ),
                evidence: vec![],
            });
        }
        let probe = |address: &str| match hosts.run(rec, &HostOp::ProbeEtcd { address: address.into(), client_node: recovery.node.clone() })
        {
            Ok(HostOutput::Etcd(p)) => Ok(p),
            Ok(other) => Err(StepError::Bug(format!("etcd probe answered {other:?}"))),
            Err(e) => Err(e.during(format!("probe etcd at {address} from {rec}"))),
        };
        if probe(&recovery.address)? == EtcdProbe::Healthy {
            return Ok(Step::Halt {
                reason: format!("etcd on {rec} is healthy (it has quorum): the majority of masters is not lost; replace the failed master instead (OpenShift Container Platform 4.3, Backup and restore, Replacing a failed master host)"),
                evidence: vec![],
            });
        }
        let others: Vec<HostRef> = inventory.iter().filter(|h| h.name != rec).cloned().collect();
        let mut running = vec![];
        for o in &others {
            let p = probe(&o.address)?;
            if p != EtcdProbe::NoAnswer {
                running.push(format!("{} ({}): {p}", o.name, o.address));
            }
        }
        if !running.is_empty() {
            return Ok(Step::Halt {
                reason: "old etcd members still run: shut them down first, or they would try to join the restored cluster (\"request cluster ID mismatch\"); then resume".into(),
                evidence: running,
            });
        }
        let files = ports.backups.list(&p.backup).map_err(|e| e.during(format!("list backup set {}", p.backup)))?;
        let has = |prefix: &str, suffix: &str| files.iter().any(|f| f.starts_with(prefix) && f.ends_with(suffix));
        if !has("snapshot_", ".db") || !has("static_kuberesources_", ".tar.gz") {
            return Ok(Step::Halt {
                reason: format!(
                    "backup set {} must hold snapshot_<time>.db and static_kuberesources_<time>.tar.gz taken together",
                    p.backup
                ),
                evidence: files,
            });
        }
        let id = identity(ports, rec)?;
        let Some(dns) = id.dns_name.clone() else {
            return Ok(Step::Halt {
                reason: format!("{rec} has no ETCD_DNS_NAME in /run/etcd/environment: its etcd-member setup never completed, so it cannot be the master etcd is restored on"),
                evidence: vec![],
            });
        };
        let initial_cluster = format!("{}=https://{dns}:2380", id.member_name());
        Ok(Step::Next(LegacyState::AwaitApproval {
            plan: Plan { recovery, recovery_hostname: id.hostname.clone(), initial_cluster, others, new_masters: vec![] },
        }))
    }

    fn await_approval(&self, cx: &StepContext, p: &LegacyParams, plan: &Plan) -> Result<Step<LegacyState>, StepError> {
        match cx.gate(START_GATE).map(|d| &d.decision) {
            Some(Decision::Approved) => Ok(Step::Next(LegacyState::CopyBackup { plan: plan.clone() })),
            Some(Decision::Rejected) => Ok(Step::Done { summary: "not started: the plan was rejected; nothing was changed".into() }),
            None => Ok(Step::Gate {
                gate: START_GATE.into(),
                prompt: format!(
                    "Restore etcd quorum on {} from backup {} as a single-member cluster ({}), then grow it to three masters with the new ones?",
                    plan.recovery.name, p.backup, plan.initial_cluster
                ),
                evidence: std::iter::once(format!("remaining master: {} ({})", plan.recovery.name, plan.recovery.address))
                    .chain(plan.others.iter().map(|o| format!("other inventory host: {} ({}): no etcd answers there", o.name, o.address)))
                    .chain([format!("follows {DOC}")])
                    .collect(),
            }),
        }
    }

    fn copy_backup(&self, ports: &Ports, cx: &StepContext, p: &LegacyParams, plan: &Plan) -> Result<Step<LegacyState>, StepError> {
        let rec = plan.recovery.name.as_str();
        ports
            .hosts
            .copy_backup_to_host(&p.backup, rec, &p.backup_dir)
            .map_err(|e| e.during(format!("copy backup {} to {rec}:{}", p.backup, p.backup_dir)))?;
        let fence = format!("drctl-legacy-restore-{}-{:x}", cx.run_id, cx.seed);
        Ok(Step::Next(LegacyState::RestoreQuorum { plan: plan.clone(), fence }))
    }

    fn restore_quorum(&self, ports: &Ports, p: &LegacyParams, plan: &Plan, fence: &str) -> Result<Step<LegacyState>, StepError> {
        let rec = plan.recovery.name.as_str();
        let script = LegacyScript::SnapshotRestore { dir: p.backup_dir.clone(), initial_cluster: plan.initial_cluster.clone() };
        ports
            .hosts
            .run(rec, &HostOp::RunLegacyScript { script, fence: fence.into() })
            .map_err(|e| e.during(format!("etcd-snapshot-restore.sh on {rec}")))?;
        Ok(Step::Next(LegacyState::WaitApi { plan: plan.clone() }))
    }

    /// The runbook's "might take up to 15 minutes": the API answers and the master is Ready.
    fn wait_api(&self, ports: &Ports, cx: &StepContext, plan: &Plan) -> Result<Step<LegacyState>, StepError> {
        let what = format!("the API to answer and {} to be Ready after the restore (up to 15 min)", plan.recovery.node);
        match ports.api.list_nodes() {
            Ok(nodes) if nodes.iter().any(|n| n.name == plan.recovery.node && n.ready) => {
                Ok(Step::Next(LegacyState::CreateNewMasters { plan: plan.clone() }))
            }
            Ok(_) | Err(PortError::Transient(_)) => bounded_wait(cx, what, Duration::from_secs(30), Duration::from_secs(60 * 60)),
            Err(e) => Err(e.during("list nodes")),
        }
    }

    fn create_new_masters(&self, ports: &Ports, cx: &StepContext, plan: &Plan) -> Result<Step<LegacyState>, StepError> {
        match cx.gate(NEW_MASTERS_GATE).map(|d| &d.decision) {
            Some(Decision::Approved) => {
                let (scope, _, _) = Scope::of(ports, Some(true))?;
                Ok(Step::Next(LegacyState::ApproveNewMasters { plan: plan.clone(), scope }))
            }
            Some(Decision::Rejected) => Ok(Step::Halt {
                reason: format!("stopped before the new masters: etcd runs as a single member on {}; resume once they are built", plan.recovery.name),
                evidence: vec![],
            }),
            None => Ok(Step::Gate {
                gate: NEW_MASTERS_GATE.into(),
                prompt: format!(
                    "etcd serves again as a single member on {}. Create {} new master hosts as the originals were created (with the Machine API, its operator creates them); make sure every lost master stays shut down. The run then takes as new masters the inventory hosts other than {} that answer SSH, and approves their client and serving CSRs by policy. Go on?",
                    plan.recovery.name, MASTERS - 1, plan.recovery.name
                ),
                evidence: plan.others.iter().map(|o| format!("inventory host {} ({})", o.name, o.address)).collect(),
            }),
        }
    }

    /// Which hosts are the new masters: those of the others that answer SSH and run no etcd.
    fn find_new_masters(&self, ports: &Ports, cx: &StepContext, plan: &Plan) -> Result<Result<Vec<NewMaster>, String>, StepError> {
        let hosts = &ports.hosts;
        let rec = plan.recovery.name.as_str();
        let mut found = vec![];
        for o in plan.others.iter().filter(|o| hosts.connect(&o.name).is_ok()) {
            let probe = hosts.run(rec, &HostOp::ProbeEtcd { address: o.address.clone(), client_node: plan.recovery.node.clone() });
            match probe.map_err(|e| e.during(format!("probe etcd at {}", o.address)))? {
                HostOutput::Etcd(EtcdProbe::NoAnswer) => {}
                HostOutput::Etcd(p) => {
                    return Err(StepError::Permanent {
                        reason: format!(
                            "{} answers SSH and runs an etcd member ({p}): an old master is back; shut it down, then resume",
                            o.name
                        ),
                        evidence: vec![],
                    })
                }
                other => return Err(StepError::Bug(format!("etcd probe answered {other:?}"))),
            }
            let id = identity(ports, &o.name)?;
            let fence = format!("drctl-legacy-member-{}-{:x}-{}", cx.run_id, cx.seed, o.name);
            found.push(NewMaster { host: o.clone(), hostname: id.hostname, fence });
        }
        Ok(match found.len() {
            n if n == MASTERS - 1 => Ok(found),
            n if n < MASTERS - 1 => Err(format!("{n} of {} new masters answer SSH", MASTERS - 1)),
            _ => {
                return Err(StepError::Permanent {
                    reason: format!(
                        "{} hosts besides {rec} answer SSH: more than the {} new masters; take the extra ones out of the inventory (or shut them down), then resume",
                        found.len(),
                        MASTERS - 1
                    ),
                    evidence: found.iter().map(|n| n.host.name.clone()).collect(),
                })
            }
        })
    }

    fn approve_new_masters(&self, ports: &Ports, cx: &StepContext, plan: &Plan, scope: &Scope) -> Result<Step<LegacyState>, StepError> {
        let bound = Duration::from_secs(3 * 3600);
        let mut plan = plan.clone();
        if plan.new_masters.is_empty() {
            match self.find_new_masters(ports, cx, &plan)? {
                Ok(found) => plan.new_masters = found,
                Err(waiting) => return bounded_wait(cx, format!("the new masters ({waiting})"), Duration::from_secs(60), bound),
            }
            return Ok(Step::Next(LegacyState::ApproveNewMasters { plan, scope: scope.clone() }));
        }
        let Round { approved, refused, unsigned: _, nodes } = scope.approve_round(ports, cx.now)?;
        if !refused.is_empty() {
            let (csrs, evidence) = refused.into_iter().unzip();
            return Ok(Step::Next(LegacyState::ReviewUnexpected { plan, scope: scope.clone(), csrs, evidence }));
        }
        let masters = plan.masters();
        let waiting = scope.not_ready(&nodes, |n| masters.contains(&n));
        if waiting.is_empty() {
            return Ok(Step::Next(LegacyState::CorrectDnsAndLb { plan }));
        }
        bounded_wait(
            cx,
            format!("the new masters Ready ({}; {approved} CSR(s) approved this round)", waiting.join(", ")),
            Duration::from_secs(20),
            bound,
        )
    }

    fn correct_dns_and_lb(&self, ports: &Ports, cx: &StepContext, plan: &Plan) -> Result<Step<LegacyState>, StepError> {
        match cx.gate(DNS_LB_GATE).map(|d| &d.decision) {
            Some(Decision::Approved) => Ok(Step::Next(LegacyState::StartSigner { plan: plan.clone(), next: 0 })),
            Some(Decision::Rejected) => Ok(Step::Halt {
                reason: "stopped before growing etcd: correct the etcd DNS records and the load balancer, then resume".into(),
                evidence: vec![],
            }),
            None => {
                let nodes = ports.api.list_nodes().map_err(|e| e.during("list nodes"))?;
                let ip =
                    |node: &str| nodes.iter().find(|n| n.name == node).map_or("(not registered)".to_string(), |n| n.internal_ip.clone());
                let evidence = plan
                    .masters()
                    .iter()
                    .map(|m| format!("master {m}: InternalIP {}", ip(m)))
                    .chain(plan.lost().map(|l| format!("lost master {}: its etcd-N record and load balancer target must go", l.name)))
                    .collect();
                Ok(Step::Gate {
                    gate: DNS_LB_GATE.into(),
                    prompt: format!(
                        "Point the etcd-0, etcd-1 and etcd-2 records of the private DNS zone at the three masters' addresses ({} keeps its own), and register the masters' addresses with the API load balancer if it is not cluster-managed. Then log in as a cluster-admin on {} and on each new master with `sudo oc login https://localhost:6443` (the recovery scripts run oc as root). Done?",
                        plan.recovery.name, plan.recovery.name
                    ),
                    evidence,
                })
            }
        }
    }

    fn start_signer(&self, ports: &Ports, plan: &Plan, next: usize) -> Result<Step<LegacyState>, StepError> {
        let rec = plan.recovery.name.as_str();
        let hostname = plan.recovery_hostname.clone();
        ports.hosts.run(rec, &HostOp::LegacyStartSigner { hostname }).map_err(|e| e.during(format!("start the etcd signer on {rec}")))?;
        Ok(Step::Next(LegacyState::WaitSigner { plan: plan.clone(), next }))
    }

    fn wait_signer(&self, ports: &Ports, cx: &StepContext, plan: &Plan, next: usize) -> Result<Step<LegacyState>, StepError> {
        let rec = plan.recovery.name.as_str();
        match ports.hosts.run(rec, &HostOp::LegacySignerListening).map_err(|e| e.during(format!("ss -ltn on {rec}")))? {
            HostOutput::Present(true) => Ok(Step::Next(LegacyState::AddMember { plan: plan.clone(), idx: next })),
            HostOutput::Present(false) => {
                bounded_wait(cx, format!("the etcd signer to listen on {rec}:9943"), Duration::from_secs(15), Duration::from_secs(15 * 60))
            }
            other => Err(StepError::Bug(format!("signer check answered {other:?}"))),
        }
    }

    /// The member list through the remaining master's etcd-member container; `None` while it
    /// cannot answer (no quorum while a new member starts).
    fn members(&self, ports: &Ports, plan: &Plan) -> Result<Option<EtcdMemberList>, StepError> {
        let rec = plan.recovery.name.as_str();
        match ports.hosts.run(rec, &HostOp::LegacyMemberList) {
            Ok(HostOutput::Members(m)) => Ok(Some(m)),
            Ok(other) => Err(StepError::Bug(format!("member list answered {other:?}"))),
            Err(PortError::Transient(_)) => Ok(None),
            Err(e) => Err(e.during(format!("etcdctl member list on {rec}"))),
        }
    }

    /// One member at a time: a member is added only while every member has started.
    fn add_member(&self, ports: &Ports, cx: &StepContext, plan: &Plan, idx: usize) -> Result<Step<LegacyState>, StepError> {
        let new = &plan.new_masters[idx];
        let Some(list) = self.members(ports, plan)? else {
            return bounded_wait(cx, "etcd to answer before adding a member".into(), Duration::from_secs(30), Duration::from_secs(30 * 60));
        };
        let unstarted = list.members.iter().filter(|m| !m.started()).count();
        if unstarted > 0 {
            return bounded_wait(
                cx,
                format!("{unstarted} added member(s) to start before adding {}", new.host.name),
                Duration::from_secs(30),
                Duration::from_secs(30 * 60),
            );
        }
        let member_name = format!("etcd-member-{}", new.hostname);
        if list.members.iter().any(|m| m.name == member_name) {
            return Ok(Step::Next(LegacyState::VerifyMember { plan: plan.clone(), idx }));
        }
        let script = LegacyScript::MemberRecover { signer_ip: plan.recovery.address.clone(), member_name };
        ports
            .hosts
            .run(&new.host.name, &HostOp::RunLegacyScript { script, fence: new.fence.clone() })
            .map_err(|e| e.during(format!("etcd-member-recover.sh on {}", new.host.name)))?;
        Ok(Step::Next(LegacyState::VerifyMember { plan: plan.clone(), idx }))
    }

    fn verify_member(&self, ports: &Ports, cx: &StepContext, plan: &Plan, idx: usize) -> Result<Step<LegacyState>, StepError> {
        let name = format!("etcd-member-{}", plan.new_masters[idx].hostname);
        let wait = |what: String| bounded_wait(cx, what, Duration::from_secs(30), Duration::from_secs(40 * 60));
        let Some(list) = self.members(ports, plan)? else {
            return wait(format!("{name} to start (etcd has no quorum until it does; up to 20 min)"));
        };
        let started = list.members.iter().filter(|m| m.started()).count();
        if !list.members.iter().any(|m| m.name == name) || started != list.members.len() || list.members.len() != idx + 2 {
            return wait(format!("{name} listed and started ({started} of {} members started)", list.members.len()));
        }
        Ok(Step::Next(match idx + 1 < plan.new_masters.len() {
            true => LegacyState::AddMember { plan: plan.clone(), idx: idx + 1 },
            false => LegacyState::RemoveSigner { plan: plan.clone() },
        }))
    }

    /// A lost master's Node that still reads Ready carries a status from before it was lost (or,
    /// right after an API outage, the node controller has not looked again yet): wait for it to
    /// be marked NotReady rather than delete a node that may be alive.
    fn delete_lost_nodes(&self, ports: &Ports, cx: &StepContext, plan: &Plan) -> Result<Step<LegacyState>, StepError> {
        let nodes = ports.api.list_nodes().map_err(|e| e.during("list nodes"))?;
        let mut still_ready = vec![];
        for lost in plan.lost() {
            if ports.hosts.connect(&lost.name).is_ok() {
                continue; // it answers: not lost after all; a person decides
            }
            match nodes.iter().find(|n| n.name == lost.node) {
                Some(n) if n.ready => still_ready.push(n.name.clone()),
                Some(n) => ports.api.delete_node(&n.name).map_err(|e| e.during(format!("delete node {}", n.name)))?,
                None => {}
            }
        }
        if still_ready.is_empty() {
            return Ok(Step::Next(LegacyState::VerifyCluster { plan: plan.clone() }));
        }
        let what = format!("the lost masters' nodes to be marked NotReady before they are deleted ({})", still_ready.join(", "));
        bounded_wait(cx, what, Duration::from_secs(30), Duration::from_secs(30 * 60))
    }

    fn verify_cluster(&self, ports: &Ports, cx: &StepContext, plan: &Plan) -> Result<Step<LegacyState>, StepError> {
        let nodes = ports.api.list_nodes().map_err(|e| e.during("list nodes"))?;
        let masters = plan.masters();
        let not_ready: Vec<&str> = masters.iter().copied().filter(|m| !nodes.iter().any(|n| &n.name == m && n.ready)).collect();
        let list = self.members(ports, plan)?;
        let started = list.as_ref().map_or(0, |l| l.members.iter().filter(|m| m.started()).count());
        let members = list.as_ref().map_or(0, |l| l.members.len());
        if not_ready.is_empty() && started == MASTERS && members == MASTERS {
            return Ok(Step::Done {
                summary: format!(
                    "three masters ({}) Ready, etcd at three started members; the temporary signer is removed",
                    masters.join(", ")
                ),
            });
        }
        bounded_wait(
            cx,
            format!(
                "three masters Ready and three started members (not Ready: {}; {started} of {members} members started)",
                not_ready.join(", ")
            ),
            Duration::from_secs(30),
            Duration::from_secs(30 * 60),
        )
    }

    fn step_inner(&self, ports: &Ports, cx: &StepContext, p: &LegacyParams, s: &LegacyState) -> Result<Step<LegacyState>, StepError> {
        use LegacyState::*;
        match s {
            Preflight => self.preflight(ports, p),
            AwaitApproval { plan } => self.await_approval(cx, p, plan),
            CopyBackup { plan } => self.copy_backup(ports, cx, p, plan),
            RestoreQuorum { plan, fence } => self.restore_quorum(ports, p, plan, fence),
            WaitApi { plan } => self.wait_api(ports, cx, plan),
            CreateNewMasters { plan } => self.create_new_masters(ports, cx, plan),
            ApproveNewMasters { plan, scope } => self.approve_new_masters(ports, cx, plan, scope),
            ReviewUnexpected { plan, scope, csrs, evidence } => {
                review_unexpected(cx, scope, csrs, evidence, |scope| ApproveNewMasters { plan: plan.clone(), scope })
            }
            CorrectDnsAndLb { plan } => self.correct_dns_and_lb(ports, cx, plan),
            StartSigner { plan, next } => self.start_signer(ports, plan, *next),
            WaitSigner { plan, next } => self.wait_signer(ports, cx, plan, *next),
            AddMember { plan, idx } => self.add_member(ports, cx, plan, *idx),
            VerifyMember { plan, idx } => self.verify_member(ports, cx, plan, *idx),
            RemoveSigner { plan } => {
                remove_signer(ports)?;
                Ok(Step::Next(DeleteLostNodes { plan: plan.clone() }))
            }
            DeleteLostNodes { plan } => self.delete_lost_nodes(ports, cx, plan),
            VerifyCluster { plan } => self.verify_cluster(ports, cx, plan),
            SignerOffThenHalt { resume, .. } if cx.resumed => Ok(Step::Next((**resume).clone())),
            SignerOffThenHalt { reason, evidence, .. } => {
                remove_signer(ports)?;
                Ok(Step::Halt {
                    reason: format!("{reason} (the temporary etcd signer was removed; resuming starts it again)"),
                    evidence: evidence.clone(),
                })
            }
            UndoSigner => {
                remove_signer(ports)?;
                Ok(Step::Done { summary: "aborted: the temporary etcd signer was removed".into() })
            }
        }
    }
}

/// Who the etcd member of `host` is (its host name and etcd DNS name).
fn identity(ports: &Ports, host: &str) -> Result<LegacyEtcdIdentity, StepError> {
    match ports.hosts.run(host, &HostOp::LegacyEtcdIdentity).map_err(|e| e.during(format!("read the etcd member of {host}")))? {
        HostOutput::Identity(id) => Ok(id),
        other => Err(StepError::Bug(format!("etcd identity answered {other:?}"))),
    }
}

/// `oc delete pod -n openshift-config etcd-signer`, then it is gone from the namespace.
fn remove_signer(ports: &Ports) -> Result<(), StepError> {
    ports.api.delete_pod(SIGNER_NAMESPACE, SIGNER_POD).map_err(|e| e.during("delete the etcd signer pod"))?;
    let left = ports.api.list_pods(SIGNER_NAMESPACE, "").map_err(|e| e.during("list the pods of openshift-config"))?;
    match left.iter().any(|p| p.name == SIGNER_POD) {
        true => Err(StepError::Transient { what: "delete the etcd signer pod".into(), error: "the pod is still terminating".into() }),
        false => Ok(()),
    }
}

impl Procedure for LegacyLostMasters {
    type Env = Ports;
    type Params = LegacyParams;
    type State = LegacyState;
    const NAME: &'static str = "legacy-lost-masters";
    const VERSION: u32 = 1;

    fn validate(&self, p: &LegacyParams) -> Result<(), String> {
        if p.backup.trim().is_empty() {
            return Err("--backup must name a backup set in the backup location".into());
        }
        if !p.backup_dir.starts_with('/') {
            return Err(format!("--backup-dir must be an absolute path on the host, not {:?}", p.backup_dir));
        }
        Ok(())
    }

    fn initial_state(&self, _p: &LegacyParams) -> LegacyState {
        LegacyState::Preflight
    }

    fn state_name(&self, s: &LegacyState) -> String {
        use LegacyState::*;
        match s {
            Preflight => "Preflight".into(),
            AwaitApproval { .. } => "AwaitApproval".into(),
            CopyBackup { .. } => "CopyBackup".into(),
            RestoreQuorum { .. } => "RestoreQuorum".into(),
            WaitApi { .. } => "WaitApi".into(),
            CreateNewMasters { .. } => "CreateNewMasters".into(),
            ApproveNewMasters { .. } => "ApproveNewMasters".into(),
            ReviewUnexpected { csrs, .. } => format!("ReviewUnexpected({})", csrs.join(",")),
            CorrectDnsAndLb { .. } => "CorrectDnsAndLb".into(),
            StartSigner { .. } => "StartSigner".into(),
            WaitSigner { .. } => "WaitSigner".into(),
            AddMember { plan, idx } => format!("AddMember({})", plan.new_masters.get(*idx).map_or("?", |n| n.host.name.as_str())),
            VerifyMember { plan, idx } => format!("VerifyMember({})", plan.new_masters.get(*idx).map_or("?", |n| n.host.name.as_str())),
            RemoveSigner { .. } => "RemoveSigner".into(),
            DeleteLostNodes { .. } => "DeleteLostNodes".into(),
            VerifyCluster { .. } => "VerifyCluster".into(),
            SignerOffThenHalt { .. } => "SignerOffThenHalt".into(),
            UndoSigner => "UndoSigner".into(),
        }
    }

    fn check_state(&self, _p: &LegacyParams, s: &LegacyState) -> Result<(), String> {
        use LegacyState::*;
        let (plan, idx) = match s {
            Preflight | UndoSigner => return Ok(()),
            SignerOffThenHalt { resume, .. } => {
                return match **resume {
                    SignerOffThenHalt { .. } | UndoSigner => Err("a resume point inside a resume point".into()),
                    ref r => self.check_state(_p, r),
                }
            }
            ReviewUnexpected { csrs, evidence, plan, .. } => {
                if csrs.is_empty() || csrs.len() != evidence.len() {
                    return Err("a review needs each refused CSR with why it was refused".into());
                }
                (plan, None)
            }
            StartSigner { plan, next: i } | WaitSigner { plan, next: i } | AddMember { plan, idx: i } | VerifyMember { plan, idx: i } => {
                (plan, Some(*i))
            }
            AwaitApproval { plan }
            | CopyBackup { plan }
            | RestoreQuorum { plan, .. }
            | WaitApi { plan }
            | CreateNewMasters { plan }
            | ApproveNewMasters { plan, .. }
            | CorrectDnsAndLb { plan }
            | RemoveSigner { plan }
            | DeleteLostNodes { plan }
            | VerifyCluster { plan } => (plan, None),
        };
        if plan.others.iter().any(|o| o.name == plan.recovery.name) {
            return Err("the remaining master is among the other hosts".into());
        }
        if plan.initial_cluster.split(',').count() != 1 {
            return Err("the restore's initial cluster must be the remaining master alone".into());
        }
        if !plan.new_masters.is_empty() && plan.new_masters.len() != MASTERS - 1 {
            return Err(format!("{} new masters recorded, want {}", plan.new_masters.len(), MASTERS - 1));
        }
        let grows =
            matches!(s, CorrectDnsAndLb { .. } | RemoveSigner { .. } | DeleteLostNodes { .. } | VerifyCluster { .. }) || idx.is_some();
        if grows && plan.new_masters.is_empty() {
            return Err("growing etcd needs the new masters recorded".into());
        }
        if let Some(i) = idx {
            if i >= plan.new_masters.len() {
                return Err(format!("member index {i} out of range"));
            }
        }
        Ok(())
    }

    fn step(&self, ports: &Ports, cx: &StepContext, p: &LegacyParams, s: &LegacyState) -> Result<Step<LegacyState>, StepError> {
        let out = self.step_inner(ports, cx, p, s);
        if !s.signer_may_run() {
            return out;
        }
        match out {
            Ok(Step::Halt { reason, evidence }) | Err(StepError::Permanent { reason, evidence }) => {
                Ok(Step::Next(LegacyState::SignerOffThenHalt { reason, evidence, resume: Box::new(s.resume_point()) }))
            }
            other => other,
        }
    }

    fn on_abort(&self, _p: &LegacyParams, s: &LegacyState) -> Option<LegacyState> {
        (s.signer_may_run() || matches!(s, LegacyState::SignerOffThenHalt { .. })).then_some(LegacyState::UndoSigner)
    }

    fn is_undo_state(&self, s: &LegacyState) -> bool {
        matches!(s, LegacyState::UndoSigner | LegacyState::SignerOffThenHalt { .. })
    }

    /// The backup and the remaining master may change until the restore runs.
    fn correctable(&self, key: &str, s: &LegacyState) -> Result<(), String> {
        match s {
            LegacyState::Preflight | LegacyState::AwaitApproval { .. } => Ok(()),
            _ => Err(format!("{key} cannot change once the restore began: resume the run, or abort it")),
        }
    }

    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[
            ("Preflight", &["AwaitApproval"]),
            ("AwaitApproval", &["CopyBackup"]),
            ("CopyBackup", &["RestoreQuorum"]),
            ("RestoreQuorum", &["WaitApi"]),
            ("WaitApi", &["CreateNewMasters"]),
            ("CreateNewMasters", &["ApproveNewMasters"]),
            ("ApproveNewMasters", &["ApproveNewMasters", "ReviewUnexpected", "CorrectDnsAndLb"]),
            ("ReviewUnexpected", &["ApproveNewMasters"]),
            ("CorrectDnsAndLb", &["StartSigner"]),
            ("StartSigner", &["WaitSigner", "SignerOffThenHalt", "UndoSigner"]),
            ("WaitSigner", &["AddMember", "SignerOffThenHalt", "UndoSigner"]),
            ("AddMember", &["VerifyMember", "SignerOffThenHalt", "UndoSigner"]),
            ("VerifyMember", &["AddMember", "RemoveSigner", "SignerOffThenHalt", "UndoSigner"]),
            ("RemoveSigner", &["DeleteLostNodes", "SignerOffThenHalt", "UndoSigner"]),
            ("DeleteLostNodes", &["VerifyCluster"]),
            ("VerifyCluster", &[]),
            ("SignerOffThenHalt", &["StartSigner", "RemoveSigner", "UndoSigner"]),
            ("UndoSigner", &[]),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_releases_4_1_to_4_3_are_legacy() {
        assert_eq!(legacy_release("4.3.40"), Some(3));
        assert_eq!(legacy_release("4.1.0"), Some(1));
        for v in ["4.4.0", "4.15.3", "3.11.0", "4", "", "4.x.1"] {
            assert_eq!(legacy_release(v), None, "{v}");
        }
    }

    #[test]
    fn a_halted_run_resumes_by_starting_the_signer_again() {
        let plan = Plan {
            recovery: HostRef { name: "m0".into(), node: "m0".into(), address: "10.0.0.10".into() },
            recovery_hostname: "m0".into(),
            initial_cluster: "etcd-member-m0=https://etcd-0.x:2380".into(),
            others: vec![],
            new_masters: vec![],
        };
        let verify = LegacyState::VerifyMember { plan: plan.clone(), idx: 1 };
        assert_eq!(verify.resume_point(), LegacyState::StartSigner { plan, next: 1 });
        assert!(verify.signer_may_run());
        assert!(!LegacyState::Preflight.signer_may_run());
    }
}
