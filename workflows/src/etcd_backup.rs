//! `etcd-backup`: one etcd snapshot plus the static pod resources, from ONE healthy
//! control-plane host, verified and copied out of the cluster (OpenShift Container Platform 4.14 Backup and restore §5.1.1; 4.5 ch.1).

use crate::ports::*;
use drctl_runtime::{Procedure, Step, StepContext, StepError};
use serde::{Deserialize, Serialize};

/// The first certificate rotation happens 24 h after installation; a backup before it holds
/// certificates that will have expired by the time it is restored.
const FIRST_ROTATION_SECS: u64 = 24 * 3600;
pub const DEFAULT_HOST_DIR: &str = "/home/core/assets/backup";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupParams {
    /// Name of the backup set in the backup location; default `backup-<run id>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Control-plane host to take it on; default: the first with a running etcd member.
    #[serde(default)]
    pub host: Option<String>,
    /// Parent directory on the host; the run writes into its own subdirectory.
    #[serde(default = "default_dir")]
    pub host_dir: String,
    /// Take it even though operators are progressing (marked `__POSSIBLY_DIRTY__`) or the
    /// cluster is younger than its first certificate rotation.
    #[serde(default)]
    pub force: bool,
}

fn default_dir() -> String {
    DEFAULT_HOST_DIR.into()
}

impl Default for BackupParams {
    fn default() -> Self {
        BackupParams { name: None, host: None, host_dir: default_dir(), force: false }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Taken {
    pub host: String,
    pub dir: String,
    pub snapshot: String,
    pub resources: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BackupState {
    /// Guard: not before the first certificate rotation.
    CheckClusterAge,
    /// Guard: no operator progressing (else `--force`, and the backup is marked dirty).
    CheckOperators,
    /// One healthy host, never one per host.
    SelectHost { dirty: bool },
    /// The backup must be restored on the same z-stream: record it.
    RecordVersion { host: String, dirty: bool },
    /// Run the backup into this run's own directory (mode 0700), unless it is already there.
    TakeBackup { host: String, version: String, dirty: bool },
    /// `etcdctl snapshot status`: hash, revision, keys, size.
    VerifySnapshot { taken: Taken, version: String, dirty: bool },
    /// Copy both files out of the cluster, with the version and status beside them.
    CopyOut { taken: Taken, info: BackupInfo },
    /// Check the copy is complete in the backup location.
    VerifyCopy { info: BackupInfo },
}

pub struct EtcdBackup;

/// The command line of `drctl run etcd-backup`.
#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// Name of the backup set in the backup location (default backup-<run id>).
    #[arg(long)]
    name: Option<String>,
    /// Control-plane host to take it on (default: the first with a healthy etcd member).
    #[arg(long)]
    host: Option<String>,
    /// Parent directory on the host.
    #[arg(long, default_value = DEFAULT_HOST_DIR)]
    host_dir: String,
    /// Back up even when operators are progressing (marked __POSSIBLY_DIRTY__) or the cluster is
    /// younger than 24h.
    #[arg(long)]
    force: bool,
}

impl crate::catalog::IntoParams for BackupArgs {
    fn into_params(self) -> serde_json::Value {
        serde_json::json!({ "name": self.name, "host": self.host, "host_dir": self.host_dir, "force": self.force })
    }
}

pub use crate::backup_files::newest_complete_pair;

fn halt(reason: String) -> Result<Step<BackupState>, StepError> {
    Ok(Step::Halt { reason, evidence: vec![] })
}

fn backup_name(p: &BackupParams, cx: &StepContext, dirty: bool) -> String {
    let base = p.name.clone().unwrap_or_else(|| format!("backup-{}", cx.run_id));
    if dirty {
        format!("{base}__POSSIBLY_DIRTY__")
    } else {
        base
    }
}

impl EtcdBackup {
    /// One healthy host, never one per host: the named one, or the first healthy one that answers.
    fn select_host(&self, ports: &Ports, p: &BackupParams, dirty: &bool) -> Result<Step<BackupState>, StepError> {
        let pods = ports.api.list_pods("openshift-etcd", "k8s-app=etcd").map_err(|e| e.during("list etcd pods"))?;
        let healthy: Vec<&str> = pods.iter().filter(|p| p.phase == PodStatus::Running && p.ready).map(|p| p.node.as_str()).collect();
        let inventory = ports.hosts.control_plane_hosts().map_err(|e| e.during("read control-plane inventory"))?;
        let candidates: Vec<&HostRef> = inventory.iter().filter(|h| healthy.contains(&h.node.as_str())).collect();
        let host = match &p.host {
            Some(want) => match candidates.iter().find(|h| &h.name == want) {
                Some(h) => h.name.clone(),
                None => return halt(format!("host {want} has no healthy etcd member; healthy: {}", healthy.join(", "))),
            },
            None => match candidates.iter().find(|h| ports.hosts.connect(&h.name).is_ok()) {
                Some(h) => h.name.clone(),
                None => {
                    return Err(StepError::Transient {
                        what: "select backup host".into(),
                        error: "no healthy control-plane host answers SSH".into(),
                    })
                }
            },
        };
        Ok(Step::Next(BackupState::RecordVersion { host, dirty: *dirty }))
    }

    /// Run the backup into this run's own directory (mode 0700), unless a crashed attempt
    /// already left a complete one there.
    fn take_backup(
        &self,
        ports: &Ports,
        cx: &StepContext,
        p: &BackupParams,
        host: &str,
        version: &str,
        dirty: &bool,
    ) -> Result<Step<BackupState>, StepError> {
        let dir = format!("{}/drctl-{}", p.host_dir.trim_end_matches('/'), cx.run_id);
        let run = |op: HostOp| ports.hosts.run(host, &op).map_err(|e| e.during(format!("{op:?} on {host}")));
        // Observe first: after a crash the backup may already be there.
        let HostOutput::Names(existing) = run(HostOp::ListDir { dir: dir.clone() })? else {
            return Err(StepError::Bug("ListDir answered something else".into()));
        };
        // Only a snapshot and a resources file of the SAME backup make a pair: an
        // attempt cut short by a dropped connection can leave a lone snapshot behind.
        let (snapshot, resources) = match newest_complete_pair(&existing) {
            Some(pair) => pair,
            None => {
                run(HostOp::MakePrivateDir { dir: dir.clone() })?;
                match run(HostOp::RunBackup { dir: dir.clone() })? {
                    HostOutput::Backup { snapshot, resources } => (snapshot, resources),
                    other => return Err(StepError::Bug(format!("RunBackup answered {other:?}"))),
                }
            }
        };
        Ok(Step::Next(BackupState::VerifySnapshot {
            taken: Taken { host: host.to_string(), dir, snapshot, resources },
            version: version.to_string(),
            dirty: *dirty,
        }))
    }

    /// `etcdctl snapshot status`: hash, revision, keys and size must all be there.
    fn verify_snapshot(&self, ports: &Ports, taken: &Taken, version: &str, dirty: &bool) -> Result<Step<BackupState>, StepError> {
        let path = format!("{}/{}", taken.dir, taken.snapshot);
        let status = match ports.hosts.run(&taken.host, &HostOp::SnapshotStatus { path: path.clone() }) {
            Ok(HostOutput::Snapshot(s)) => s,
            Ok(other) => return Err(StepError::Bug(format!("SnapshotStatus answered {other:?}"))),
            Err(e) => return Err(e.during(format!("etcdctl snapshot status {path}"))),
        };
        if status.hash == 0 || status.revision == 0 || status.total_key == 0 || status.total_size == 0 {
            return Ok(Step::Halt { reason: format!("snapshot {path} failed verification"), evidence: vec![format!("{status:?}")] });
        }
        let info =
            BackupInfo { cluster_version: version.to_string(), snapshot: status, taken_on: taken.host.clone(), possibly_dirty: *dirty };
        Ok(Step::Next(BackupState::CopyOut { taken: taken.clone(), info }))
    }

    /// The copy is complete in the backup location, with the recorded version and status.
    fn verify_copy(&self, ports: &Ports, cx: &StepContext, p: &BackupParams, info: &BackupInfo) -> Result<Step<BackupState>, StepError> {
        let name = backup_name(p, cx, info.possibly_dirty);
        let files = ports.backups.list(&name).map_err(|e| e.during(format!("list backup {name}")))?;
        let stored = ports.backups.info(&name).map_err(|e| e.during(format!("read backup info {name}")))?;
        let both = crate::backup_files::the_only_pair(&files).is_ok();
        if !both || stored.as_ref() != Some(info) {
            return Ok(Step::Halt { reason: format!("backup {name} is incomplete in the backup location"), evidence: files });
        }
        Ok(Step::Done {
            summary: format!(
                "backup {name}: revision {}, {} keys, {} bytes, hash {:x}, cluster {} (taken on {})",
                info.snapshot.revision,
                info.snapshot.total_key,
                info.snapshot.total_size,
                info.snapshot.hash,
                info.cluster_version,
                info.taken_on
            ),
        })
    }
}

impl Procedure for EtcdBackup {
    type Env = Ports;
    type Params = BackupParams;
    type State = BackupState;
    const NAME: &'static str = "etcd-backup";
    const VERSION: u32 = 1;

    fn validate(&self, p: &BackupParams) -> Result<(), String> {
        if !p.host_dir.starts_with('/') {
            return Err(format!("--host-dir must be an absolute path, got '{}'", p.host_dir));
        }
        if let Some(n) = &p.name {
            if n.is_empty() || n.contains('/') || n.starts_with('.') {
                return Err(format!("--name '{n}' must be a plain name (no '/', not starting with '.')"));
            }
        }
        Ok(())
    }
    fn initial_state(&self, _p: &BackupParams) -> BackupState {
        BackupState::CheckClusterAge
    }
    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[
            ("CheckClusterAge", &["CheckOperators"]),
            ("CheckOperators", &["SelectHost"]),
            ("SelectHost", &["RecordVersion"]),
            ("RecordVersion", &["TakeBackup"]),
            ("TakeBackup", &["VerifySnapshot"]),
            ("VerifySnapshot", &["CopyOut"]),
            ("CopyOut", &["VerifyCopy"]),
            ("VerifyCopy", &[]),
        ]
    }
    fn state_name(&self, s: &BackupState) -> String {
        match s {
            BackupState::CheckClusterAge => "CheckClusterAge".into(),
            BackupState::CheckOperators => "CheckOperators".into(),
            BackupState::SelectHost { .. } => "SelectHost".into(),
            BackupState::RecordVersion { host, .. } => format!("RecordVersion({host})"),
            BackupState::TakeBackup { host, .. } => format!("TakeBackup({host})"),
            BackupState::VerifySnapshot { taken, .. } => format!("VerifySnapshot({})", taken.snapshot),
            BackupState::CopyOut { .. } => "CopyOut".into(),
            BackupState::VerifyCopy { .. } => "VerifyCopy".into(),
        }
    }

    fn step(&self, ports: &Ports, cx: &StepContext, p: &BackupParams, s: &BackupState) -> Result<Step<BackupState>, StepError> {
        match s {
            BackupState::CheckClusterAge => {
                let age = ports.api.cluster_age_secs().map_err(|e| e.during("read cluster age"))?;
                if age < FIRST_ROTATION_SECS && !p.force {
                    return halt(format!(
                        "the cluster is {}h old: a backup before the first certificate rotation (24h) would hold expired certificates; wait, or pass --force",
                        age / 3600
                    ));
                }
                Ok(Step::Next(BackupState::CheckOperators))
            }
            BackupState::CheckOperators => {
                let ops = ports.api.cluster_operators().map_err(|e| e.during("list cluster operators"))?;
                let progressing: Vec<String> = ops.iter().filter(|o| o.progressing).map(|o| o.name.clone()).collect();
                match (progressing.is_empty(), p.force) {
                    (true, _) => Ok(Step::Next(BackupState::SelectHost { dirty: false })),
                    (false, true) => Ok(Step::Next(BackupState::SelectHost { dirty: true })),
                    (false, false) => Ok(Step::Halt {
                        reason: "operators are progressing: a backup now may be inconsistent; wait, or pass --force (the backup is then marked __POSSIBLY_DIRTY__)".into(),
                        evidence: progressing,
                    }),
                }
            }
            BackupState::SelectHost { dirty } => self.select_host(ports, p, dirty),
            BackupState::RecordVersion { host, dirty } => {
                let version = ports.api.cluster_version().map_err(|e| e.during("read cluster version"))?;
                Ok(Step::Next(BackupState::TakeBackup { host: host.clone(), version, dirty: *dirty }))
            }
            BackupState::TakeBackup { host, version, dirty } => self.take_backup(ports, cx, p, host, version, dirty),
            BackupState::VerifySnapshot { taken, version, dirty } => self.verify_snapshot(ports, taken, version, dirty),
            BackupState::CopyOut { taken, info } => {
                let files = vec![format!("{}/{}", taken.dir, taken.snapshot), format!("{}/{}", taken.dir, taken.resources)];
                let name = backup_name(p, cx, info.possibly_dirty);
                ports
                    .hosts
                    .copy_backup_from_host(&taken.host, &files, &name, info)
                    .map_err(|e| e.during(format!("copy backup to the backup location as {name}")))?;
                Ok(Step::Next(BackupState::VerifyCopy { info: info.clone() }))
            }
            BackupState::VerifyCopy { info } => self.verify_copy(ports, cx, p, info),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::newest_complete_pair;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pairs_only_files_of_the_same_backup_and_prefers_the_newest() {
        assert_eq!(newest_complete_pair(&v(&["snapshot_2026-01-05_150000.db"])), None, "a lone snapshot is no backup");
        assert_eq!(
            newest_complete_pair(&v(&[
                "snapshot_2026-01-05_150000.db",
                "snapshot_2026-01-05_150300.db",
                "static_kuberesources_2026-01-05_150300.tar.gz"
            ])),
            Some(("snapshot_2026-01-05_150300.db".into(), "static_kuberesources_2026-01-05_150300.tar.gz".into())),
            "the cut-short snapshot of 15:00 is not paired with the resources of 15:03"
        );
        assert_eq!(
            newest_complete_pair(&v(&[
                "snapshot_2026-01-05_150000.db",
                "static_kuberesources_2026-01-05_150000.tar.gz",
                "snapshot_2026-01-05_160000.db",
                "static_kuberesources_2026-01-05_160000.tar.gz",
                "snapshot_2026-01-05_170000.db",
            ])),
            Some(("snapshot_2026-01-05_160000.db".into(), "static_kuberesources_2026-01-05_160000.tar.gz".into()))
        );
        assert_eq!(newest_complete_pair(&v(&["snapshot_.db", "static_kuberesources_.tar.gz"])), None);
    }
}
