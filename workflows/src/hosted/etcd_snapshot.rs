//! `hosted-etcd-snapshot`: back up the etcd of a hosted control plane to S3 (OpenShift
//! Container Platform 4.15 Hosted control planes, §8.2.1 "Backing up etcd on a hosted cluster";
//! OpenShift Container Platform 4.15 Backup and restore, §5.3.1).
//!
//! Reconciliation is paused (so the control-plane operator does not scale the API servers back
//! up behind the run), the three etcd writers are scaled to zero, one healthy member writes a
//! snapshot onto its own PVC, `snapshot status` must show keys, and the file is streamed out of
//! the pod into the bucket by drctl itself (SigV4, multipart when large): credentials never enter
//! the pod. The object counts as a backup only once it reads back with the size and SHA-256 that
//! were streamed; the AES-CBC encryption key is saved beside it (a restored etcd is unreadable
//! without it), and only then is the manifest `<cluster>-backup.json` written, naming them.
//! Every run writes its own object keys, so a failed run never overwrites the last good backup.
//!
//! Every exit path — success, failure, abort — removes the snapshot file from the PVC, scales the
//! writers back to the replicas recorded before, and puts the pause back as it was.

use super::pause_reconciliation::{check_names, paused_by};
use crate::object_store::{Digest, S3Location, VerifyDepth};
use crate::ports::{HostedBackupFacts, ManagementCluster, PortError, Ports, SnapshotStatus, ETCD_WRITERS};
use drctl_runtime::{Procedure, Step, StepContext, StepError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

const RECHECK: Duration = Duration::from_secs(5);
/// How long the operator may take to confirm the pause, or the unpause.
const CONFIRM_WITHIN: Duration = Duration::from_secs(10 * 60);
/// How long the writers' pods may take to go, or to come back.
const WRITERS_WITHIN: Duration = Duration::from_secs(10 * 60);
/// How long the cluster may take to be Available again once unpaused.
const AVAILABLE_WITHIN: Duration = Duration::from_secs(20 * 60);
/// An upload that does not read back as streamed is tried again this many times in all.
const UPLOAD_ATTEMPTS: u32 = 3;
/// Where the snapshot is written: on the member's PVC (`/var/lib` is its mount).
pub const SNAPSHOT_FILE: &str = "/var/lib/data/snapshot.db";
/// What the manifest of a backup is called, under the location's prefix.
pub fn manifest_name(cluster: &str) -> String {
    format!("{cluster}-backup.json")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotParams {
    /// Namespace of the HostedCluster on the management cluster.
    pub namespace: String,
    /// Name of the HostedCluster.
    pub name: String,
    /// `s3://BUCKET[/PREFIX]`.
    pub bucket: String,
    /// The bucket's expected region: the run refuses a bucket elsewhere.
    #[serde(default)]
    pub region: Option<String>,
}

/// The command line of `drctl run hosted-etcd-snapshot`.
#[derive(clap::Args, Debug)]
pub struct SnapshotArgs {
    /// Namespace of the HostedCluster on the management cluster.
    #[arg(long, default_value = "clusters")]
    namespace: String,
    /// Name of the HostedCluster.
    #[arg(long)]
    name: String,
    /// Where the backup goes: s3://BUCKET or s3://BUCKET/PREFIX.
    #[arg(long, value_name = "s3://BUCKET[/PREFIX]")]
    bucket: String,
    /// The region the bucket must be in (refused otherwise).
    #[arg(long)]
    region: Option<String>,
}

impl crate::catalog::IntoParams for SnapshotArgs {
    fn into_params(self) -> serde_json::Value {
        let SnapshotArgs { namespace, name, bucket, region } = self;
        serde_json::to_value(SnapshotParams { namespace, name, bucket, region }).expect("params serialise")
    }
}

/// A backup as written to the bucket: what a restore reads to know what to restore and with
/// which key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    pub kind: String,
    pub hosted_cluster: String,
    pub snapshot_key: String,
    pub snapshot: Digest,
    pub status: SnapshotStatus,
    /// `aescbc` or `kms`.
    pub encryption_type: String,
    /// The Secret the HostedCluster's `activeKey` names (aescbc).
    #[serde(default)]
    pub encryption_secret: Option<String>,
    /// The object holding the key's bytes, and their digest (aescbc).
    #[serde(default)]
    pub encryption_key_object: Option<String>,
    #[serde(default)]
    pub encryption_key: Option<Digest>,
    pub run: String,
}

pub const MANIFEST_KIND: &str = "drctl.openshift.io/hosted-etcd-backup/v1";

/// The pause as it was before the run: what every exit path puts back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorPause {
    pub paused_until: Option<String>,
    pub paused_by: Option<String>,
}

/// What the run decided at the start and learnt on the way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub prior: PriorPause,
    /// The etcd writers and their replicas before the scale-down (empty until recorded).
    pub writers: Vec<(String, u32)>,
    pub bucket: String,
    pub snapshot_key: String,
    pub key_object: String,
    pub manifest_key: String,
    /// `aescbc` (with the Secret holding the key) or `kms`.
    pub encryption_type: String,
    pub encryption_secret: Option<String>,
}

/// How the run is ending: the tail of every exit path carries it to the summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ending {
    /// The backup is recorded in its manifest.
    Backed(Box<BackupManifest>),
    Aborted,
    /// No backup: why.
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotState {
    /// Guards: the HostedCluster live and Available, etcd Managed, its encryption known, the
    /// bucket reachable (in the expected region), the writers present.
    Inspect,
    /// §8.2.1 step 1: `pausedUntil: "true"` (unless someone else's pause already holds).
    Pause {
        plan: Plan,
    },
    /// The operator confirms: `ReconciliationActive` False, the HostedControlPlane paused.
    ConfirmPaused {
        plan: Plan,
        generation: i64,
    },
    /// §8.2.1 step 2: the three etcd writers to 0 replicas (recorded in the plan first).
    ScaleDownWriters {
        plan: Plan,
    },
    /// No writer pod left.
    WaitWritersDown {
        plan: Plan,
    },
    /// §8.2.1 step 3: `etcdctl snapshot save` in a healthy member's pod, onto its PVC.
    SaveSnapshot {
        plan: Plan,
        pod: String,
    },
    /// §8.2.1 step 4: `snapshot status`: keys and bytes in it.
    CheckSnapshot {
        plan: Plan,
        pod: String,
    },
    /// §8.2.1 step 5: streamed out of the pod into the bucket.
    Upload {
        plan: Plan,
        pod: String,
        status: SnapshotStatus,
        attempt: u32,
    },
    /// The object reads back with the size and SHA-256 streamed.
    VerifyUpload {
        plan: Plan,
        pod: String,
        status: SnapshotStatus,
        digest: Digest,
        attempt: u32,
    },
    /// §8.2.1 step 6: the encryption key saved beside the snapshot (aescbc).
    SaveEncryptionKey {
        plan: Plan,
        pod: String,
        status: SnapshotStatus,
        digest: Digest,
    },
    /// The manifest naming the verified objects: from now on it is a backup.
    RecordBackup {
        plan: Plan,
        pod: String,
        manifest: Box<BackupManifest>,
    },
    /// An abort before the manifest: this run's objects deleted (unless its manifest was
    /// written after all).
    DeleteUnrecorded {
        plan: Plan,
        pod: Option<String>,
        ending: Ending,
    },
    /// The snapshot file off the PVC (it takes the space etcd grows into).
    RemoveSnapshotFile {
        plan: Plan,
        pod: Option<String>,
        ending: Ending,
    },
    /// The writers back to their recorded replicas.
    ScaleUpWriters {
        plan: Plan,
        ending: Ending,
    },
    WaitWritersUp {
        plan: Plan,
        ending: Ending,
    },
    /// The pause put back as it was (removed, when it was this run's).
    Unpause {
        plan: Plan,
        ending: Ending,
    },
    /// Reconciliation active again and the cluster Available.
    ConfirmUnpaused {
        plan: Plan,
        ending: Ending,
        generation: i64,
    },
}

pub struct HostedEtcdSnapshot;

fn refuse(reason: String, evidence: Vec<String>) -> StepError {
    StepError::Permanent { reason, evidence }
}

/// A `Wait` that turns into `over` once it has lasted `within`.
fn wait_or<S>(
    ctx: &StepContext,
    within: Duration,
    waiting_for: String,
    over: impl FnOnce(String) -> Result<Step<S>, StepError>,
) -> Result<Step<S>, StepError> {
    if ctx.waiting_since.is_some_and(|since| ctx.now.since(since) >= within) {
        return over(format!("{waiting_for}: not within {} min", within.as_secs() / 60));
    }
    Ok(Step::Wait { waiting_for, recheck_after: RECHECK, bound: within * 2 })
}

impl HostedEtcdSnapshot {
    fn inspect(&self, ports: &Ports, cx: &StepContext, p: &SnapshotParams) -> Result<Step<SnapshotState>, StepError> {
        let mc = ports.management()?;
        let hc = super::live_hosted_cluster(mc, &p.namespace, &p.name, "", "nothing would scale its API servers back")?;
        let facts = mc.hosted_cluster_backup_facts(&p.namespace, &p.name).map_err(|e| e.during("read the HostedCluster"))?;
        let (encryption_type, encryption_secret) = self.check_facts(p, &facts)?;
        let location = S3Location::parse(&p.bucket).map_err(|e| refuse(e.to_string(), vec![]))?;
        self.check_bucket(ports, p, &location)?;
        mc.control_plane_deployments(&p.namespace, &p.name, &ETCD_WRITERS).map_err(|e| e.during("read the API server deployments"))?;
        let stem = format!("{}-{}", p.name, cx.run_id);
        let plan = Plan {
            prior: PriorPause { paused_until: hc.paused_until.clone(), paused_by: hc.paused_by.clone() },
            writers: vec![],
            bucket: location.bucket.clone(),
            snapshot_key: location.key(&format!("{stem}-snapshot.db")),
            key_object: location.key(&format!("{stem}-etcd-encryption-key")),
            manifest_key: location.key(&manifest_name(&p.name)),
            encryption_type,
            encryption_secret,
        };
        Ok(Step::Next(SnapshotState::Pause { plan }))
    }

    fn check_facts(&self, p: &SnapshotParams, f: &HostedBackupFacts) -> Result<(String, Option<String>), StepError> {
        let hc = format!("HostedCluster {}/{}", p.namespace, p.name);
        let evidence = vec![format!("{f:?}")];
        if f.available.as_deref() != Some("True") {
            return Err(refuse(
                format!("{hc} is not Available: back up a serving cluster (a snapshot now may hold a broken state)"),
                evidence,
            ));
        }
        if f.etcd_management != "Managed" {
            return Err(refuse(
                format!("{hc}'s etcd is {}: only a Managed etcd runs in the control-plane namespace", f.etcd_management),
                evidence,
            ));
        }
        match (f.encryption_type.as_deref(), f.active_key_secret.as_deref()) {
            (Some("aescbc"), Some(secret)) => Ok(("aescbc".into(), Some(secret.to_string()))),
            (Some("kms"), _) => Ok(("kms".into(), None)),
            _ => Err(refuse(
                format!("{hc}'s secret encryption is not one drctl knows how to keep (aescbc with an active key, or kms): a snapshot without its key cannot be read back"),
                evidence,
            )),
        }
    }

    fn check_bucket(&self, ports: &Ports, p: &SnapshotParams, location: &S3Location) -> Result<(), StepError> {
        let region = ports.object_store()?.bucket_region(&location.bucket).map_err(|e| match e {
            PortError::Transient(_) => e.during(format!("reach the bucket {location}")),
            e => refuse(format!("the bucket {location} cannot be used: {e}"), vec!["check it with: drctl inspect --object-store".into()]),
        })?;
        match p.region.as_deref() {
            Some(want) if want != region => Err(refuse(
                format!("the bucket {location} is in region {region}, not {want} as --region says; nothing was changed"),
                vec![],
            )),
            _ => Ok(()),
        }
    }

    fn pause(&self, ports: &Ports, cx: &StepContext, p: &SnapshotParams, plan: &Plan) -> Result<Step<SnapshotState>, StepError> {
        let mc = ports.management()?;
        // Someone else's pause (an OADP backup's) already stops the operators: keep it as it is.
        if plan.prior.paused_until.is_none() {
            mc.set_hosted_cluster_paused(&p.namespace, &p.name, Some("true"), Some(&paused_by(cx)))
                .map_err(|e| e.during("pause the HostedCluster"))?;
        }
        let hc = mc.hosted_cluster(&p.namespace, &p.name).map_err(|e| e.during("read the HostedCluster back"))?;
        Ok(Step::Next(SnapshotState::ConfirmPaused { plan: plan.clone(), generation: hc.generation }))
    }

    /// Whether the operator acted on `generation` with `ReconciliationActive` = `want` and the
    /// HostedControlPlane carries the HostedCluster's pause. `Err(what)`: not yet.
    fn operator_confirms(
        &self,
        mc: &dyn ManagementCluster,
        p: &SnapshotParams,
        generation: i64,
        want: &str,
    ) -> Result<Result<(), String>, StepError> {
        let hc = mc.hosted_cluster(&p.namespace, &p.name).map_err(|e| e.during("read the HostedCluster"))?;
        match &hc.reconciliation_active {
            Some(c) if c.status == want && c.observed_generation >= generation => {}
            Some(c) => {
                return Ok(Err(format!(
                    "ReconciliationActive={} ({}) at generation {}; {want} at generation {generation} wanted",
                    c.status, c.reason, c.observed_generation
                )))
            }
            None => return Ok(Err("no ReconciliationActive condition yet".into())),
        }
        let hcp = mc.control_plane_paused_until(&p.namespace, &p.name).map_err(|e| e.during("read the HostedControlPlane"))?;
        Ok(match hcp == hc.paused_until {
            true => Ok(()),
            false => Err(format!("HostedControlPlane pausedUntil={hcp:?}, HostedCluster {:?}", hc.paused_until)),
        })
    }

    fn confirm_paused(
        &self,
        ports: &Ports,
        ctx: &StepContext,
        p: &SnapshotParams,
        plan: &Plan,
        generation: i64,
    ) -> Result<Step<SnapshotState>, StepError> {
        let mc = ports.management()?;
        if let Err(not_yet) = self.operator_confirms(mc, p, generation, "False")? {
            return wait_or(ctx, CONFIRM_WITHIN, format!("the operator to confirm the pause: {not_yet}"), |why| {
                Ok(Step::Next(SnapshotState::Unpause { plan: plan.clone(), ending: Ending::Failed(why) }))
            });
        }
        // Recorded now that the operator no longer changes them, before the first scale.
        let writers =
            mc.control_plane_deployments(&p.namespace, &p.name, &ETCD_WRITERS).map_err(|e| e.during("read the API server deployments"))?;
        let plan = Plan { writers: writers.iter().map(|d| (d.name.clone(), d.replicas)).collect(), ..plan.clone() };
        Ok(Step::Next(SnapshotState::ScaleDownWriters { plan }))
    }

    fn scale_writers(&self, mc: &dyn ManagementCluster, p: &SnapshotParams, plan: &Plan, to: impl Fn(u32) -> u32) -> Result<(), StepError> {
        for (name, replicas) in &plan.writers {
            mc.scale_control_plane_deployment(&p.namespace, &p.name, name, to(*replicas))
                .map_err(|e| e.during(format!("scale deployment {name} to {}", to(*replicas))))?;
        }
        Ok(())
    }

    /// Each writer at its target and its pods caught up: `Err(what)` otherwise.
    fn writers_at(&self, mc: &dyn ManagementCluster, p: &SnapshotParams, plan: &Plan, up: bool) -> Result<Result<(), String>, StepError> {
        let now =
            mc.control_plane_deployments(&p.namespace, &p.name, &ETCD_WRITERS).map_err(|e| e.during("read the API server deployments"))?;
        let behind: Vec<String> = plan
            .writers
            .iter()
            .filter_map(|(name, replicas)| {
                let want = if up { *replicas } else { 0 };
                let d = now.iter().find(|d| &d.name == name)?;
                let done = if up { d.ready_replicas >= want && d.replicas == want } else { d.status_replicas == 0 && d.replicas == 0 };
                (!done).then(|| format!("{name}: {} of {} ready, {} pods", d.ready_replicas, d.replicas, d.status_replicas))
            })
            .collect();
        Ok(if behind.is_empty() { Ok(()) } else { Err(behind.join("; ")) })
    }

    fn wait_writers_down(
        &self,
        ports: &Ports,
        ctx: &StepContext,
        p: &SnapshotParams,
        plan: &Plan,
    ) -> Result<Step<SnapshotState>, StepError> {
        let mc = ports.management()?;
        if let Err(behind) = self.writers_at(mc, p, plan, false)? {
            return wait_or(ctx, WRITERS_WITHIN, format!("the API servers to stop: {behind}"), |why| {
                Ok(Step::Next(SnapshotState::ScaleUpWriters { plan: plan.clone(), ending: Ending::Failed(why) }))
            });
        }
        let etcd = mc.hosted_etcd(&p.namespace, &p.name).map_err(|e| e.during("read the etcd pods"))?;
        // The runbook's member is etcd-0; any serving member holds the same keyspace.
        let mut ready: Vec<&str> = etcd.pods.iter().filter(|pod| pod.ready).map(|pod| pod.name.as_str()).collect();
        ready.sort();
        match ready.first() {
            Some(pod) if ready.len() as u32 > etcd.replicas / 2 => {
                Ok(Step::Next(SnapshotState::SaveSnapshot { plan: plan.clone(), pod: pod.to_string() }))
            }
            _ => wait_or(
                ctx,
                WRITERS_WITHIN,
                format!("a quorum of etcd members to serve ({} of {} ready)", ready.len(), etcd.replicas),
                |why| Ok(Step::Next(SnapshotState::ScaleUpWriters { plan: plan.clone(), ending: Ending::Failed(why) })),
            ),
        }
    }

    fn check_snapshot(&self, ports: &Ports, p: &SnapshotParams, plan: &Plan, pod: &str) -> Result<Step<SnapshotState>, StepError> {
        let mc = ports.management()?;
        let status = mc
            .hosted_etcd_snapshot_status(&p.namespace, &p.name, pod, SNAPSHOT_FILE)
            .map_err(|e| e.during(format!("snapshot status in pod {pod}")))?;
        if status.total_key == 0 || status.total_size == 0 {
            return Err(refuse(format!("the snapshot in pod {pod} holds no keys ({status:?}): it is not a backup"), vec![]));
        }
        Ok(Step::Next(SnapshotState::Upload { plan: plan.clone(), pod: pod.to_string(), status, attempt: 1 }))
    }

    fn upload(
        &self,
        ports: &Ports,
        p: &SnapshotParams,
        plan: &Plan,
        pod: &str,
        status: &SnapshotStatus,
        attempt: u32,
    ) -> Result<Step<SnapshotState>, StepError> {
        let mc = ports.management()?;
        let mut file = mc
            .open_hosted_etcd_file(&p.namespace, &p.name, pod, SNAPSHOT_FILE)
            .map_err(|e| e.during(format!("read {SNAPSHOT_FILE} out of pod {pod}")))?;
        let digest = ports
            .object_store()?
            .put_stream(&plan.bucket, &plan.snapshot_key, &mut file, "application/octet-stream")
            .map_err(|e| e.during(format!("upload the snapshot to s3://{}/{}", plan.bucket, plan.snapshot_key)))?;
        if digest.size != status.total_size {
            return self.upload_again(
                plan,
                pod,
                status,
                attempt,
                format!("{} bytes streamed where snapshot status says {}", digest.size, status.total_size),
            );
        }
        Ok(Step::Next(SnapshotState::VerifyUpload { plan: plan.clone(), pod: pod.to_string(), status: status.clone(), digest, attempt }))
    }

    fn upload_again(
        &self,
        plan: &Plan,
        pod: &str,
        status: &SnapshotStatus,
        attempt: u32,
        why: String,
    ) -> Result<Step<SnapshotState>, StepError> {
        if attempt >= UPLOAD_ATTEMPTS {
            let ending = Ending::Failed(format!("the snapshot did not upload intact in {UPLOAD_ATTEMPTS} attempts: {why}"));
            return Ok(Step::Next(SnapshotState::DeleteUnrecorded { plan: plan.clone(), pod: Some(pod.to_string()), ending }));
        }
        Ok(Step::Next(SnapshotState::Upload { plan: plan.clone(), pod: pod.to_string(), status: status.clone(), attempt: attempt + 1 }))
    }

    fn verify_upload(
        &self,
        ports: &Ports,
        plan: &Plan,
        pod: &str,
        status: &SnapshotStatus,
        digest: &Digest,
        attempt: u32,
    ) -> Result<Step<SnapshotState>, StepError> {
        match ports.object_store()?.verify(&plan.bucket, &plan.snapshot_key, digest, VerifyDepth::SizeAndHash) {
            Ok(()) => Ok(Step::Next(SnapshotState::SaveEncryptionKey {
                plan: plan.clone(),
                pod: pod.to_string(),
                status: status.clone(),
                digest: digest.clone(),
            })),
            Err(PortError::Permanent(why)) => self.upload_again(plan, pod, status, attempt, why),
            Err(e) => Err(e.during("read the uploaded snapshot back")),
        }
    }

    /// The manifest of the verified snapshot, the key not saved yet.
    fn manifest_of(cx: &StepContext, p: &SnapshotParams, plan: &Plan, status: &SnapshotStatus, digest: &Digest) -> BackupManifest {
        BackupManifest {
            kind: MANIFEST_KIND.into(),
            hosted_cluster: format!("{}/{}", p.namespace, p.name),
            snapshot_key: plan.snapshot_key.clone(),
            snapshot: digest.clone(),
            status: status.clone(),
            encryption_type: plan.encryption_type.clone(),
            encryption_secret: plan.encryption_secret.clone(),
            encryption_key_object: None,
            encryption_key: None,
            run: cx.run_id.clone(),
        }
    }

    fn save_encryption_key(
        &self,
        ports: &Ports,
        p: &SnapshotParams,
        plan: &Plan,
        pod: &str,
        mut manifest: BackupManifest,
    ) -> Result<Step<SnapshotState>, StepError> {
        if let Some(secret) = &plan.encryption_secret {
            let key = ports
                .management()?
                .encryption_key(&p.namespace, secret)
                .map_err(|e| e.during(format!("read Secret {}/{secret}", p.namespace)))?;
            let store = ports.object_store()?;
            let saved = store
                .put_stream(&plan.bucket, &plan.key_object, &mut key.expose(), "application/octet-stream")
                .map_err(|e| e.during(format!("save the encryption key to s3://{}/{}", plan.bucket, plan.key_object)))?;
            store
                .verify(&plan.bucket, &plan.key_object, &saved, VerifyDepth::SizeAndHash)
                .map_err(|e| e.during("read the saved encryption key back"))?;
            manifest.encryption_key_object = Some(plan.key_object.clone());
            manifest.encryption_key = Some(saved);
        }
        Ok(Step::Next(SnapshotState::RecordBackup { plan: plan.clone(), pod: pod.to_string(), manifest: Box::new(manifest) }))
    }

    fn record_backup(&self, ports: &Ports, plan: &Plan, pod: &str, manifest: &BackupManifest) -> Result<Step<SnapshotState>, StepError> {
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| StepError::Bug(format!("manifest: {e}")))?;
        ports
            .object_store()?
            .put_stream(&plan.bucket, &plan.manifest_key, &mut json.as_slice(), "application/json")
            .map_err(|e| e.during(format!("write the manifest s3://{}/{}", plan.bucket, plan.manifest_key)))?;
        let ending = Ending::Backed(Box::new(manifest.clone()));
        Ok(Step::Next(SnapshotState::RemoveSnapshotFile { plan: plan.clone(), pod: Some(pod.to_string()), ending }))
    }

    /// The manifest in the bucket, if it names this run.
    fn recorded_by(&self, ports: &Ports, plan: &Plan, run: &str) -> Result<Option<BackupManifest>, StepError> {
        let mut bytes = Vec::new();
        match ports.object_store()?.get_to(&plan.bucket, &plan.manifest_key, &mut bytes) {
            Ok(_) => Ok(serde_json::from_slice::<BackupManifest>(&bytes).ok().filter(|m| m.run == run)),
            Err(PortError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.during("read the backup manifest")),
        }
    }

    fn delete_unrecorded(
        &self,
        ports: &Ports,
        cx: &StepContext,
        plan: &Plan,
        pod: &Option<String>,
        ending: Ending,
    ) -> Result<Step<SnapshotState>, StepError> {
        // A crash after the manifest was written leaves a whole backup: keep it.
        if let Some(m) = self.recorded_by(ports, plan, &cx.run_id)? {
            let ending = Ending::Backed(Box::new(m));
            return Ok(Step::Next(SnapshotState::RemoveSnapshotFile { plan: plan.clone(), pod: pod.clone(), ending }));
        }
        let store = ports.object_store()?;
        for key in [&plan.snapshot_key, &plan.key_object] {
            store.delete(&plan.bucket, key).map_err(|e| e.during(format!("delete the unrecorded object s3://{}/{key}", plan.bucket)))?;
        }
        Ok(Step::Next(SnapshotState::RemoveSnapshotFile { plan: plan.clone(), pod: pod.clone(), ending }))
    }

    fn remove_snapshot_file(
        &self,
        ports: &Ports,
        p: &SnapshotParams,
        plan: &Plan,
        pod: &Option<String>,
        ending: &Ending,
    ) -> Result<Step<SnapshotState>, StepError> {
        if let Some(pod) = pod {
            match ports.management()?.remove_hosted_etcd_file(&p.namespace, &p.name, pod, SNAPSHOT_FILE) {
                // A pod that is gone took nothing with it: the file is on its PVC, and a new pod
                // is entered the next time round.
                Ok(()) => {}
                Err(e) => return Err(e.during(format!("remove {SNAPSHOT_FILE} in pod {pod}"))),
            }
        }
        Ok(Step::Next(SnapshotState::ScaleUpWriters { plan: plan.clone(), ending: ending.clone() }))
    }

    fn wait_writers_up(
        &self,
        ports: &Ports,
        ctx: &StepContext,
        p: &SnapshotParams,
        plan: &Plan,
        ending: &Ending,
    ) -> Result<Step<SnapshotState>, StepError> {
        let mc = ports.management()?;
        let next = || Ok(Step::Next(SnapshotState::Unpause { plan: plan.clone(), ending: ending.clone() }));
        match self.writers_at(mc, p, plan, true)? {
            Ok(()) => next(),
            // Unpausing lets the operator start them too: go on, and let the last wait decide.
            Err(behind) => wait_or(ctx, WRITERS_WITHIN, format!("the API servers to be back: {behind}"), |_| next()),
        }
    }

    fn unpause(&self, ports: &Ports, p: &SnapshotParams, plan: &Plan, ending: &Ending) -> Result<Step<SnapshotState>, StepError> {
        let mc = ports.management()?;
        let PriorPause { paused_until, paused_by } = &plan.prior;
        mc.set_hosted_cluster_paused(&p.namespace, &p.name, paused_until.as_deref(), paused_by.as_deref())
            .map_err(|e| e.during("put the HostedCluster's pause back"))?;
        let hc = mc.hosted_cluster(&p.namespace, &p.name).map_err(|e| e.during("read the HostedCluster back"))?;
        Ok(Step::Next(SnapshotState::ConfirmUnpaused { plan: plan.clone(), ending: ending.clone(), generation: hc.generation }))
    }

    fn confirm_unpaused(
        &self,
        ports: &Ports,
        ctx: &StepContext,
        p: &SnapshotParams,
        plan: &Plan,
        ending: &Ending,
        generation: i64,
    ) -> Result<Step<SnapshotState>, StepError> {
        let mc = ports.management()?;
        let hc = format!("HostedCluster {}/{}", p.namespace, p.name);
        let mut left = vec![];
        if plan.prior.paused_until.is_none() {
            left.extend(self.operator_confirms(mc, p, generation, "True")?.err());
            let facts = mc.hosted_cluster_backup_facts(&p.namespace, &p.name).map_err(|e| e.during("read the HostedCluster"))?;
            if left.is_empty() && facts.available.as_deref() != Some("True") {
                left.push(format!("Available={:?}", facts.available));
            }
        }
        if !left.is_empty() {
            return wait_or(ctx, AVAILABLE_WITHIN, format!("{hc} to reconcile and be Available again: {}", left.join("; ")), |why| {
                Ok(Step::Halt {
                    reason: format!("{why}. The backup steps are over and undone; look at the HyperShift operator"),
                    evidence: vec![],
                })
            });
        }
        let back = match &plan.prior.paused_until {
            None => "unpaused and Available".to_string(),
            Some(v) => format!("left paused as it was before (pausedUntil={v})"),
        };
        let writers: Vec<String> = plan.writers.iter().map(|(n, r)| format!("{n}={r}")).collect();
        match ending {
            Ending::Backed(m) => Ok(Step::Done {
                summary: format!(
                    "backed up the etcd of {hc}: s3://{}/{} ({} bytes, sha256 {}, revision {}, {} keys){}; manifest s3://{}/{}; API servers back ({}); {back}",
                    plan.bucket,
                    m.snapshot_key,
                    m.snapshot.size,
                    m.snapshot.sha256,
                    m.status.revision,
                    m.status.total_key,
                    match (&m.encryption_key_object, &m.encryption_secret) {
                        (Some(o), Some(s)) => format!("; encryption key of Secret {s} saved as s3://{}/{o}", plan.bucket),
                        _ => "; the KMS key stays in KMS: a restore needs the same key".into(),
                    },
                    plan.bucket,
                    plan.manifest_key,
                    writers.join(", ")
                ),
            }),
            Ending::Aborted => Ok(Step::Done {
                summary: format!("aborted: no backup recorded; snapshot file removed, API servers back ({}), {hc} {back}", writers.join(", ")),
            }),
            Ending::Failed(why) => Err(refuse(
                format!("no backup was taken of {hc}: {why}. Undone: snapshot file removed, API servers back ({}), {back}", writers.join(", ")),
                vec![],
            )),
        }
    }
}

/// Where the undo path starts from `s`, carrying `ending`: nothing to undo before the pause.
fn undo_from(s: &SnapshotState, ending: Ending) -> Option<SnapshotState> {
    use SnapshotState::*;
    Some(match s {
        Inspect => return None,
        Pause { plan } | ConfirmPaused { plan, .. } => Unpause { plan: plan.clone(), ending },
        ScaleDownWriters { plan } | WaitWritersDown { plan } => ScaleUpWriters { plan: plan.clone(), ending },
        SaveSnapshot { plan, pod }
        | CheckSnapshot { plan, pod }
        | Upload { plan, pod, .. }
        | VerifyUpload { plan, pod, .. }
        | SaveEncryptionKey { plan, pod, .. }
        | RecordBackup { plan, pod, .. } => DeleteUnrecorded { plan: plan.clone(), pod: Some(pod.clone()), ending },
        // Already on the way out: carry on as it is.
        DeleteUnrecorded { .. }
        | RemoveSnapshotFile { .. }
        | ScaleUpWriters { .. }
        | WaitWritersUp { .. }
        | Unpause { .. }
        | ConfirmUnpaused { .. } => s.clone(),
    })
}

fn is_undo(s: &SnapshotState) -> bool {
    use SnapshotState::*;
    matches!(
        s,
        DeleteUnrecorded { .. }
            | RemoveSnapshotFile { .. }
            | ScaleUpWriters { .. }
            | WaitWritersUp { .. }
            | Unpause { .. }
            | ConfirmUnpaused { .. }
    )
}

impl Procedure for HostedEtcdSnapshot {
    type Env = Ports;
    type Params = SnapshotParams;
    type State = SnapshotState;
    const NAME: &'static str = "hosted-etcd-snapshot";
    const VERSION: u32 = 1;

    fn validate(&self, p: &SnapshotParams) -> Result<(), String> {
        check_names(&p.namespace, &p.name)?;
        S3Location::parse(&p.bucket).map_err(|e| format!("--bucket: {e}"))?;
        if let Some(r) = p.region.as_deref() {
            let ok = !r.is_empty() && r.len() <= 32 && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(format!("--region '{r}' is not an AWS region name (such as us-east-2)"));
            }
        }
        Ok(())
    }

    fn initial_state(&self, _: &SnapshotParams) -> SnapshotState {
        SnapshotState::Inspect
    }

    fn state_name(&self, s: &SnapshotState) -> String {
        use SnapshotState::*;
        match s {
            Inspect => "Inspect".into(),
            Pause { .. } => "Pause".into(),
            ConfirmPaused { generation, .. } => format!("ConfirmPaused(generation {generation})"),
            ScaleDownWriters { .. } => "ScaleDownWriters".into(),
            WaitWritersDown { .. } => "WaitWritersDown".into(),
            SaveSnapshot { pod, .. } => format!("SaveSnapshot({pod})"),
            CheckSnapshot { pod, .. } => format!("CheckSnapshot({pod})"),
            Upload { attempt, .. } => format!("Upload(attempt {attempt})"),
            VerifyUpload { attempt, .. } => format!("VerifyUpload(attempt {attempt})"),
            SaveEncryptionKey { .. } => "SaveEncryptionKey".into(),
            RecordBackup { .. } => "RecordBackup".into(),
            DeleteUnrecorded { .. } => "DeleteUnrecorded".into(),
            RemoveSnapshotFile { .. } => "RemoveSnapshotFile".into(),
            ScaleUpWriters { .. } => "ScaleUpWriters".into(),
            WaitWritersUp { .. } => "WaitWritersUp".into(),
            Unpause { .. } => "Unpause".into(),
            ConfirmUnpaused { generation, .. } => format!("ConfirmUnpaused(generation {generation})"),
        }
    }

    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[
            ("Inspect", &["Pause"]),
            ("Pause", &["ConfirmPaused", "Unpause"]),
            ("ConfirmPaused", &["ScaleDownWriters", "Unpause"]),
            ("ScaleDownWriters", &["WaitWritersDown", "ScaleUpWriters"]),
            ("WaitWritersDown", &["SaveSnapshot", "ScaleUpWriters"]),
            ("SaveSnapshot", &["CheckSnapshot", "DeleteUnrecorded"]),
            ("CheckSnapshot", &["Upload", "DeleteUnrecorded"]),
            ("Upload", &["VerifyUpload", "Upload", "DeleteUnrecorded"]),
            ("VerifyUpload", &["SaveEncryptionKey", "Upload", "DeleteUnrecorded"]),
            ("SaveEncryptionKey", &["RecordBackup", "DeleteUnrecorded"]),
            ("RecordBackup", &["RemoveSnapshotFile", "DeleteUnrecorded"]),
            ("DeleteUnrecorded", &["RemoveSnapshotFile"]),
            ("RemoveSnapshotFile", &["ScaleUpWriters"]),
            ("ScaleUpWriters", &["WaitWritersUp"]),
            ("WaitWritersUp", &["Unpause"]),
            ("Unpause", &["ConfirmUnpaused"]),
            ("ConfirmUnpaused", &[]),
        ]
    }

    fn step(&self, ports: &Ports, cx: &StepContext, p: &SnapshotParams, s: &SnapshotState) -> Result<Step<SnapshotState>, StepError> {
        match (self.act(ports, cx, p, s), is_undo(s)) {
            // Past the pause, a refusal is not a halt with the cluster paused and its API
            // servers down: the run undoes what it did, then reports why no backup was taken.
            (Err(StepError::Permanent { reason, evidence }), false) => {
                match undo_from(s, Ending::Failed(with_evidence(reason.clone(), &evidence))) {
                    Some(undo) => Ok(Step::Next(undo)),
                    None => Err(StepError::Permanent { reason, evidence }),
                }
            }
            (r, _) => r,
        }
    }

    fn on_abort(&self, _: &SnapshotParams, s: &SnapshotState) -> Option<SnapshotState> {
        undo_from(s, Ending::Aborted)
    }

    fn is_undo_state(&self, s: &SnapshotState) -> bool {
        is_undo(s)
    }
}

fn with_evidence(reason: String, evidence: &[String]) -> String {
    match evidence.is_empty() {
        true => reason,
        false => format!("{reason} ({})", evidence.join("; ")),
    }
}

impl HostedEtcdSnapshot {
    fn act(&self, ports: &Ports, cx: &StepContext, p: &SnapshotParams, s: &SnapshotState) -> Result<Step<SnapshotState>, StepError> {
        use SnapshotState::*;
        match s {
            Inspect => self.inspect(ports, cx, p),
            Pause { plan } => self.pause(ports, cx, p, plan),
            ConfirmPaused { plan, generation } => self.confirm_paused(ports, cx, p, plan, *generation),
            ScaleDownWriters { plan } => {
                self.scale_writers(ports.management()?, p, plan, |_| 0)?;
                Ok(Step::Next(WaitWritersDown { plan: plan.clone() }))
            }
            WaitWritersDown { plan } => self.wait_writers_down(ports, cx, p, plan),
            SaveSnapshot { plan, pod } => {
                ports
                    .management()?
                    .hosted_etcd_snapshot_save(&p.namespace, &p.name, pod, SNAPSHOT_FILE)
                    .map_err(|e| e.during(format!("etcdctl snapshot save in pod {pod}")))?;
                Ok(Step::Next(CheckSnapshot { plan: plan.clone(), pod: pod.clone() }))
            }
            CheckSnapshot { plan, pod } => self.check_snapshot(ports, p, plan, pod),
            Upload { plan, pod, status, attempt } => self.upload(ports, p, plan, pod, status, *attempt),
            VerifyUpload { plan, pod, status, digest, attempt } => self.verify_upload(ports, plan, pod, status, digest, *attempt),
            SaveEncryptionKey { plan, pod, status, digest } => {
                self.save_encryption_key(ports, p, plan, pod, Self::manifest_of(cx, p, plan, status, digest))
            }
            RecordBackup { plan, pod, manifest } => self.record_backup(ports, plan, pod, manifest),
            DeleteUnrecorded { plan, pod, ending } => self.delete_unrecorded(ports, cx, plan, pod, ending.clone()),
            RemoveSnapshotFile { plan, pod, ending } => self.remove_snapshot_file(ports, p, plan, pod, ending),
            ScaleUpWriters { plan, ending } => {
                self.scale_writers(ports.management()?, p, plan, |r| r)?;
                Ok(Step::Next(WaitWritersUp { plan: plan.clone(), ending: ending.clone() }))
            }
            WaitWritersUp { plan, ending } => self.wait_writers_up(ports, cx, p, plan, ending),
            Unpause { plan, ending } => self.unpause(ports, p, plan, ending),
            ConfirmUnpaused { plan, ending, generation } => self.confirm_unpaused(ports, cx, p, plan, ending, *generation),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SnapshotParams {
        SnapshotParams { namespace: "clusters".into(), name: "example".into(), bucket: "s3://drctl-hcp-backups/hcp".into(), region: None }
    }

    #[test]
    fn parameters_are_checked_before_anything_is_stored() {
        let p = HostedEtcdSnapshot;
        assert_eq!(p.validate(&params()), Ok(()));
        type Edit = fn(&mut SnapshotParams);
        let cases: [(Edit, &str); 4] = [
            (|x| x.bucket = "drctl-hcp-backups".into(), "--bucket"),
            (|x| x.bucket = "s3://Upper".into(), "--bucket"),
            (|x| x.region = Some("US East".into()), "--region"),
            (|x| x.name = "Bad_Name".into(), "--name"),
        ];
        for (edit, want) in cases {
            let mut x = params();
            edit(&mut x);
            let e = p.validate(&x).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn every_state_past_the_pause_has_an_undo_and_the_undo_path_carries_on() {
        let plan = Plan {
            prior: PriorPause { paused_until: None, paused_by: None },
            writers: vec![("kube-apiserver".into(), 3)],
            bucket: "b".into(),
            snapshot_key: "s".into(),
            key_object: "k".into(),
            manifest_key: "m".into(),
            encryption_type: "aescbc".into(),
            encryption_secret: Some("example-etcd-encryption-key".into()),
        };
        let p = HostedEtcdSnapshot;
        assert_eq!(p.on_abort(&params(), &SnapshotState::Inspect), None);
        let down = SnapshotState::SaveSnapshot { plan: plan.clone(), pod: "etcd-0".into() };
        assert!(matches!(p.on_abort(&params(), &down), Some(SnapshotState::DeleteUnrecorded { ending: Ending::Aborted, .. })));
        let tail = SnapshotState::Unpause { plan, ending: Ending::Failed("x".into()) };
        assert_eq!(p.on_abort(&params(), &tail), Some(tail.clone()));
        assert!(p.is_undo_state(&tail) && !p.is_undo_state(&down));
    }
}
