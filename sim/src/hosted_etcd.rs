//! The etcd of a hosted control plane (`../shared/HOSTED.md` §A.2): StatefulSet `etcd` in the
//! control-plane namespace, its pods `etcd-N`, their PVCs `data-etcd-N`, and the members they
//! form. The controllers that matter to a member's recovery run step by step:
//!
//! - the StatefulSet controller recreates a missing pod, and a missing PVC before it. A pod is
//!   recreated with whatever PVC of its name exists — a `Terminating` one included: deleting the
//!   pod before its PVC leaves the PVC Terminating and the new pod on the old data;
//! - PVC protection: a deleted PVC stays `Terminating` while a pod uses it;
//! - the pod's init containers: on an empty data dir `reset-member` removes the member and adds
//!   it back (only while the others keep a quorum), and the member syncs from the leader;
//! - a corrupt data dir crash-loops the `etcd` container for good.

use crate::world::{EffectKind, World, SECOND};
use drctl_runtime::clock::Timestamp;
use drctl_workflows::ports::SnapshotStatus;
use drctl_workflows::ports::{
    control_plane_namespace, etcd_pvc_name, EndpointHealth, EtcdMember, EtcdMemberList, HostedEtcdInfo, HostedEtcdPod, PodStatus,
    PortError, PortResult, PvcInfo,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const HIGHLY_AVAILABLE: &str = "HighlyAvailable";
pub const SINGLE_REPLICA: &str = "SingleReplica";

/// The data directory on a member's PVC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberData {
    /// A new volume: `reset-member` re-adds the member, which then syncs.
    Empty,
    /// The member's data, in step with the cluster.
    Synced,
    /// Unreadable (a torn write, a bad disk): etcd exits at start.
    Corrupt,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdPvc {
    pub uid: String,
    pub data: MemberData,
    /// Deleted; held by `kubernetes.io/pvc-protection` while a pod uses it.
    pub terminating: bool,
    /// Snapshot files written onto the volume (`etcdctl snapshot save`), by path.
    #[serde(default)]
    pub snapshots: BTreeMap<String, SnapshotStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EtcdPodPhase {
    /// Init containers (`ensure-dns`, `reset-member`) run; done at `ready_at`.
    Initializing { ready_at: Timestamp },
    /// etcd serves; every container ready.
    Running,
    /// The `etcd` container exits at start, again and again.
    CrashLoop,
    /// Deleted; gone after its grace period.
    Terminating { gone_at: Timestamp },
    /// Created on a PVC that is being deleted: the scheduler refuses it (`persistentvolumeclaim
    /// "data-etcd-N" is being deleted`) and, since it uses the PVC, the PVC stays too. Pending
    /// until someone deletes the pod.
    Unschedulable,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdPod {
    pub uid: String,
    pub phase: EtcdPodPhase,
    /// The uid of the PVC it was created with.
    pub pvc_uid: String,
}

/// Ordinal `N` of the StatefulSet: pod `etcd-N` and PVC `data-etcd-N`, either may be absent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdSlot {
    pub ordinal: u32,
    pub pod: Option<EtcdPod>,
    pub pvc: Option<EtcdPvc>,
}

impl EtcdSlot {
    pub fn pod_name(&self) -> String {
        format!("etcd-{}", self.ordinal)
    }
    fn serving(&self) -> bool {
        self.pod.as_ref().is_some_and(|p| p.phase == EtcdPodPhase::Running)
    }
}

/// A member as etcd's own member list holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdMemberEntry {
    pub id: u64,
    /// `etcd-N`.
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedEtcd {
    /// `spec.controllerAvailabilityPolicy` of the HostedCluster.
    pub availability_policy: String,
    /// `spec.replicas` of StatefulSet `etcd`.
    pub replicas: u32,
    pub cluster_id: u64,
    /// The keyspace's revision.
    pub revision: u64,
    pub slots: Vec<EtcdSlot>,
    pub members: Vec<EtcdMemberEntry>,
    /// Source of uids and member ids (deterministic: a world's ids do not depend on its seed).
    pub next_id: u64,
    /// The etcd image's minor version (3.N): 3.4 has no `etcdutl`; 3.6 has no `etcdctl
    /// snapshot status` (`../shared/HOSTED.md` §E4).
    #[serde(default = "etcd_minor_default")]
    pub etcd_minor: u32,
}

fn etcd_minor_default() -> u32 {
    5
}

/// The volume's mount point in the `etcd` container: files elsewhere are not on the PVC.
pub const PVC_MOUNT: &str = "/var/lib/";

fn member_id(n: u64) -> u64 {
    // A fixed odd multiplier spreads successive ids over the whole range, as etcd's are.
    n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

impl HostedEtcd {
    /// A healthy etcd of `replicas` members (3 for `HighlyAvailable`, 1 for `SingleReplica`).
    pub fn healthy(policy: &str, revision: u64) -> HostedEtcd {
        let replicas = if policy == SINGLE_REPLICA { 1 } else { 3 };
        let mut e = HostedEtcd {
            availability_policy: policy.into(),
            replicas,
            cluster_id: 0x7d1e_4a2b_90c3_5f61,
            revision,
            slots: vec![],
            members: vec![],
            next_id: 1,
            etcd_minor: etcd_minor_default(),
        };
        for ordinal in 0..replicas {
            let pvc = EtcdPvc { uid: e.uid(), data: MemberData::Synced, terminating: false, snapshots: BTreeMap::new() };
            let pod = EtcdPod { uid: e.uid(), phase: EtcdPodPhase::Running, pvc_uid: pvc.uid.clone() };
            e.slots.push(EtcdSlot { ordinal, pod: Some(pod), pvc: Some(pvc) });
            let id = e.member();
            e.members.push(EtcdMemberEntry { id, name: format!("etcd-{ordinal}") });
        }
        e
    }

    fn uid(&mut self) -> String {
        self.next_id += 1;
        let n = member_id(self.next_id);
        format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", n >> 32, (n >> 16) & 0xffff, n & 0xfff, (n >> 12) & 0xfff, n & 0xffff_ffff_ffff)
    }

    fn member(&mut self) -> u64 {
        self.next_id += 1;
        member_id(self.next_id)
    }

    pub fn slot(&self, pod: &str) -> Option<&EtcdSlot> {
        self.slots.iter().find(|s| s.pod_name() == pod)
    }

    fn slot_mut(&mut self, pod: &str) -> Option<&mut EtcdSlot> {
        self.slots.iter_mut().find(|s| s.pod_name() == pod)
    }

    /// A member answers health checks: its pod serves.
    pub fn member_healthy(&self, name: &str) -> bool {
        self.slot(name).is_some_and(EtcdSlot::serving)
    }

    /// More than half of the members serve.
    pub fn has_quorum(&self) -> bool {
        let healthy = self.members.iter().filter(|m| self.member_healthy(&m.name)).count();
        healthy > self.members.len() / 2
    }

    pub fn ready_replicas(&self) -> u32 {
        self.slots.iter().filter(|s| s.serving()).count() as u32
    }

    /// The HostedControlPlane's `EtcdAvailable`: ready ≥ replicas/2 + 1.
    pub fn available(&self) -> bool {
        self.ready_replicas() > self.replicas / 2
    }

    /// Every member started and serving, one per replica.
    pub fn all_healthy(&self) -> bool {
        self.members.len() == self.replicas as usize && self.members.iter().all(|m| self.member_healthy(&m.name))
    }

    pub fn info(&self) -> HostedEtcdInfo {
        let pods = self
            .slots
            .iter()
            .filter_map(|s| {
                let pod = s.pod.as_ref()?;
                let status = match pod.phase {
                    EtcdPodPhase::Initializing { .. } | EtcdPodPhase::Unschedulable => PodStatus::Pending,
                    EtcdPodPhase::Running => PodStatus::Running,
                    EtcdPodPhase::CrashLoop => PodStatus::CrashLoopBackOff,
                    EtcdPodPhase::Terminating { .. } => PodStatus::Terminating,
                };
                Some(HostedEtcdPod {
                    name: s.pod_name(),
                    uid: pod.uid.clone(),
                    ready: pod.phase == EtcdPodPhase::Running,
                    status,
                    pvc: etcd_pvc_name(&s.pod_name()),
                })
            })
            .collect();
        let pvcs = self
            .slots
            .iter()
            .filter_map(|s| {
                let pvc = s.pvc.as_ref()?;
                Some(PvcInfo {
                    name: etcd_pvc_name(&s.pod_name()),
                    uid: pvc.uid.clone(),
                    phase: "Bound".into(),
                    terminating: pvc.terminating,
                })
            })
            .collect();
        HostedEtcdInfo {
            availability_policy: self.availability_policy.clone(),
            replicas: self.replicas,
            ready_replicas: self.ready_replicas(),
            pods,
            pvcs,
            etcd_available: Some(if self.available() { "True" } else { "False" }.into()),
        }
    }

    /// `etcdctl member list` as a serving member answers it: by member id, as etcd orders them.
    pub fn member_list(&self, cpns: &str) -> EtcdMemberList {
        let mut by_id: Vec<&EtcdMemberEntry> = self.members.iter().collect();
        by_id.sort_by_key(|m| m.id);
        let members = by_id
            .into_iter()
            .map(|m| EtcdMember {
                id: m.id,
                name: m.name.clone(),
                peer_urls: vec![format!("https://{}.etcd-discovery.{cpns}.svc:2380", m.name)],
                client_urls: vec![format!("https://{}.etcd-client.{cpns}.svc:2379", m.name)],
                is_learner: false,
            })
            .collect();
        EtcdMemberList { cluster_id: self.cluster_id, members }
    }

    /// `etcdctl endpoint health --cluster`: a row per member; without a quorum every check
    /// (a linearizable read) times out.
    pub fn endpoint_health(&self, cpns: &str) -> Vec<EndpointHealth> {
        let quorum = self.has_quorum();
        self.members
            .iter()
            .map(|m| {
                let healthy = quorum && self.member_healthy(&m.name);
                EndpointHealth {
                    endpoint: format!("https://{}.etcd-client.{cpns}.svc:2379", m.name),
                    healthy,
                    error: (!healthy).then(|| "context deadline exceeded".to_string()),
                }
            })
            .collect()
    }

    /// The earliest moment a pod of it changes by itself.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.slots
            .iter()
            .filter_map(|s| match s.pod.as_ref()?.phase {
                EtcdPodPhase::Initializing { ready_at } => Some(ready_at),
                EtcdPodPhase::Terminating { gone_at } => Some(gone_at),
                _ => None,
            })
            .min()
    }
}

/// What `snapshot status` says of a snapshot of `etcd` taken now: sizes grow with the
/// revision, the hash stands for the content.
fn snapshot_status_of(etcd: &HostedEtcd) -> SnapshotStatus {
    let r = etcd.revision;
    SnapshotStatus {
        hash: (etcd.cluster_id ^ r.wrapping_mul(0x9e37_79b9)) & 0xffff_ffff,
        revision: r,
        total_key: 900 + r % 700,
        total_size: 24_576 + (r % 64) * 4096,
    }
}

/// The bytes of a snapshot file with `status`: a header naming it, then content that follows
/// from its hash, `total_size` bytes in all. Deterministic, so the same snapshot streams the
/// same bytes every time.
pub fn snapshot_bytes(status: &SnapshotStatus) -> Vec<u8> {
    let mut out =
        format!("drctl-sim etcd snapshot revision={} keys={} hash={:x}\n", status.revision, status.total_key, status.hash).into_bytes();
    let mut x = status.hash | 1;
    while (out.len() as u64) < status.total_size {
        // xorshift64: cheap filler no two snapshots share.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(status.total_size as usize);
    out
}

/// Who asks: the refusals name the HostedCluster.
fn hosted_etcd_mut<'a>(w: &'a mut World, namespace: &str, name: &str) -> PortResult<&'a mut HostedEtcd> {
    w.hosted.as_mut().and_then(|h| h.clusters.get_mut(&crate::hosted::key(namespace, name))).and_then(|hc| hc.etcd.as_mut()).ok_or_else(
        || {
            PortError::NotFound(format!(
                "HTTP 404 NotFound: statefulsets.apps \"etcd\" not found in {}",
                control_plane_namespace(namespace, name)
            ))
        },
    )
}

impl World {
    pub fn hosted_etcd(&self, namespace: &str, name: &str) -> Option<&HostedEtcd> {
        self.hosted.as_ref()?.clusters.get(&crate::hosted::key(namespace, name))?.etcd.as_ref()
    }

    /// The etcd `container` of pod `pod` can be entered (`oc exec`): the pod runs, the container
    /// is up. The refusal is the API server's.
    pub fn admit_hosted_etcd_exec(&self, namespace: &str, name: &str, pod: &str, container: &str) -> PortResult<()> {
        let cpns = control_plane_namespace(namespace, name);
        let Some(slot) = self.hosted_etcd(namespace, name).and_then(|e| e.slot(pod)).filter(|s| s.pod.is_some()) else {
            return Err(PortError::NotFound(format!("HTTP 404 NotFound: pods \"{pod}\" not found in {cpns}")));
        };
        if container != "etcd" {
            return Err(PortError::Permanent(format!("HTTP 400 BadRequest: container {container} is not valid for pod {pod}")));
        }
        match slot.pod.as_ref().map(|p| &p.phase) {
            Some(EtcdPodPhase::Running) => Ok(()),
            _ => Err(PortError::Transient(format!(
                "HTTP 400 BadRequest: unable to upgrade connection: container not found (\"etcd\") in pod {cpns}/{pod}"
            ))),
        }
    }

    /// `etcdctl snapshot save <path>` in pod `pod` (exec admitted): the member's keyspace, as of
    /// now, written onto its PVC.
    pub fn hosted_etcd_snapshot_save(&mut self, namespace: &str, name: &str, pod: &str, path: &str) -> PortResult<()> {
        let writers_ready = self
            .hosted
            .as_ref()
            .and_then(|h| h.clusters.get(&crate::hosted::key(namespace, name)))
            .and_then(|c| c.control_plane.as_ref())
            .map_or(0, |c| c.writers_serving());
        let etcd = hosted_etcd_mut(self, namespace, name)?;
        if !path.starts_with(PVC_MOUNT) || path.ends_with('/') {
            return Err(PortError::Permanent(format!(
                "exit status 1: Error: could not open {path}.part (open {path}.part: read-only file system)"
            )));
        }
        if !etcd.has_quorum() {
            return Err(PortError::Transient("exit status 1: Error: context deadline exceeded".into()));
        }
        let status = snapshot_status_of(etcd);
        let pvc = etcd.slot_mut(pod).and_then(|s| s.pvc.as_mut()).expect("an admitted pod has its PVC");
        pvc.snapshots.insert(path.to_string(), status.clone());
        let cpns = control_plane_namespace(namespace, name);
        self.note(format!("pod {cpns}/{pod}: snapshot saved at {path} (revision {}, {} bytes)", status.revision, status.total_size));
        self.effect(EffectKind::HostedEtcdSnapshotSaved { writers_ready }, format!("{cpns}/{pod}"));
        Ok(())
    }

    /// The snapshot file `path` on pod `pod`'s PVC, as `snapshot status` reads it.
    pub fn hosted_etcd_snapshot_file(&self, namespace: &str, name: &str, pod: &str, path: &str) -> PortResult<SnapshotStatus> {
        self.hosted_etcd(namespace, name)
            .and_then(|e| e.slot(pod))
            .and_then(|s| s.pvc.as_ref())
            .and_then(|c| c.snapshots.get(path))
            .cloned()
            .ok_or_else(|| PortError::Permanent(format!("exit status 1: Error: stat {path}: no such file or directory")))
    }

    /// `rm -f <path>` in pod `pod`.
    pub fn remove_hosted_etcd_file(&mut self, namespace: &str, name: &str, pod: &str, path: &str) -> PortResult<()> {
        let etcd = hosted_etcd_mut(self, namespace, name)?;
        let removed = etcd.slot_mut(pod).and_then(|s| s.pvc.as_mut()).and_then(|c| c.snapshots.remove(path)).is_some();
        if removed {
            let cpns = control_plane_namespace(namespace, name);
            self.note(format!("pod {cpns}/{pod}: {path} removed"));
        }
        Ok(())
    }

    /// `DELETE persistentvolumeclaims/<pvc>` with a uid precondition.
    pub fn delete_hosted_etcd_pvc(&mut self, namespace: &str, name: &str, pvc: &str, uid: &str) -> PortResult<()> {
        let etcd = hosted_etcd_mut(self, namespace, name)?;
        let Some(slot) = etcd.slots.iter().find(|s| etcd_pvc_name(&s.pod_name()) == pvc) else { return Ok(()) };
        let member = slot.pod_name();
        let healthy = etcd.member_healthy(&member);
        let slot = etcd.slot_mut(&member).expect("found above");
        let Some(claim) = slot.pvc.as_mut().filter(|c| c.uid == uid) else { return Ok(()) };
        if claim.terminating {
            return Ok(());
        }
        claim.terminating = true;
        let cpns = control_plane_namespace(namespace, name);
        self.note(format!("pvc {cpns}/{pvc}: deleted (Terminating while a pod uses it)"));
        self.effect(EffectKind::HostedEtcdPvcDeleted { member_healthy: healthy }, format!("{cpns}/{pvc}"));
        Ok(())
    }

    /// `DELETE pods/<pod>` with a uid precondition: the pod terminates after its grace period.
    pub fn delete_hosted_etcd_pod(&mut self, namespace: &str, name: &str, pod: &str, uid: &str) -> PortResult<()> {
        let etcd = hosted_etcd_mut(self, namespace, name)?;
        let live = etcd.slot(pod).and_then(|s| s.pod.as_ref()).filter(|p| p.uid == uid);
        if live.is_none_or(|p| matches!(p.phase, EtcdPodPhase::Terminating { .. })) {
            return Ok(());
        }
        let gone_at = self.delay(3 * SECOND, 30 * SECOND);
        let etcd = hosted_etcd_mut(self, namespace, name)?;
        let p = etcd.slot_mut(pod).and_then(|s| s.pod.as_mut()).expect("checked above");
        p.phase = EtcdPodPhase::Terminating { gone_at };
        let cpns = control_plane_namespace(namespace, name);
        self.note(format!("pod {cpns}/{pod}: deleted, terminating"));
        self.effect(EffectKind::PodDeleted, format!("{cpns}/{pod}"));
        Ok(())
    }

    /// The StatefulSet controller, PVC protection and the pods' init containers of every hosted
    /// etcd, at `now`. One note per transition.
    pub(crate) fn reconcile_hosted_etcds(&mut self) {
        let keys: Vec<String> = match self.hosted.as_ref() {
            Some(h) => h.clusters.iter().filter(|(_, c)| c.etcd.is_some()).map(|(k, _)| k.clone()).collect(),
            None => return,
        };
        for k in keys {
            self.reconcile_hosted_etcd(&k);
        }
    }

    fn reconcile_hosted_etcd(&mut self, key: &str) {
        fn etcd<'a>(w: &'a mut World, key: &str) -> (&'a mut HostedEtcd, String) {
            let hc = w.hosted.as_mut().and_then(|h| h.clusters.get_mut(key)).expect("listed");
            let cpns = control_plane_namespace(&hc.namespace, &hc.cluster.name);
            (hc.etcd.as_mut().expect("listed"), cpns)
        }
        let now = self.now;
        let mut notes = Vec::new();
        let (e, _) = etcd(self, key);
        let going =
            |s: &EtcdSlot| matches!(s.pod.as_ref().map(|p| &p.phase), Some(EtcdPodPhase::Terminating { gone_at }) if *gone_at <= now);
        let races = e.slots.iter().filter(|s| going(s) && s.pvc.as_ref().is_some_and(|c| c.terminating)).count();
        // When a pod goes while its PVC is Terminating, two controllers race: PVC protection
        // (which lets the PVC go) and the StatefulSet controller (which recreates the pod on the
        // PVC of its name, still there). Drawn before the etcd is borrowed again.
        let statefulset_wins: Vec<bool> = (0..races).map(|_| self.rng.chance(1, 3)).collect();
        let (e, cpns) = etcd(self, key);
        let mut statefulset_wins = statefulset_wins.into_iter();
        for i in 0..e.slots.len() {
            let name = e.slots[i].pod_name();
            if going(&e.slots[i]) {
                e.slots[i].pod = None;
                notes.push(format!("pod {cpns}/{name}: gone"));
                let held = e.slots[i].pvc.as_ref().filter(|c| c.terminating).map(|c| c.uid.clone());
                if let Some(pvc_uid) = held.filter(|_| statefulset_wins.next().unwrap_or(false)) {
                    let uid = e.uid();
                    e.slots[i].pod = Some(EtcdPod { uid, phase: EtcdPodPhase::Unschedulable, pvc_uid });
                    notes.push(format!(
                        "statefulset {cpns}/etcd: pod {name} recreated on pvc data-{name}, which is being deleted: \
                         Pending (unschedulable), and the PVC stays Terminating while the pod uses it"
                    ));
                }
            }
            let slot = &mut e.slots[i];
            let in_use = |slot: &EtcdSlot, c: &EtcdPvc| slot.pod.as_ref().is_some_and(|p| p.pvc_uid == c.uid);
            if slot.pvc.as_ref().is_some_and(|c| c.terminating && !in_use(slot, c)) {
                slot.pvc = None;
                notes.push(format!("pvc {cpns}/data-{name}: no pod uses it: removed"));
            }
        }
        let missing = e.slots.iter().filter(|s| s.ordinal < e.replicas && s.pod.is_none()).count();
        // Timings drawn before the etcd is borrowed again: the world's one random stream.
        let starts: Vec<Timestamp> = (0..missing).map(|_| self.delay(20 * SECOND, 75 * SECOND)).collect();
        let (e, cpns) = etcd(self, key);
        let mut starts = starts.into_iter();
        for i in 0..e.slots.len() {
            if e.slots[i].ordinal >= e.replicas || e.slots[i].pod.is_some() {
                continue;
            }
            if e.slots[i].pvc.is_none() {
                let uid = e.uid();
                e.slots[i].pvc = Some(EtcdPvc { uid, data: MemberData::Empty, terminating: false, snapshots: BTreeMap::new() });
                notes.push(format!("statefulset {cpns}/etcd: pvc data-{} created (empty volume)", e.slots[i].pod_name()));
            }
            let uid = e.uid();
            let pvc_uid = e.slots[i].pvc.as_ref().map(|c| c.uid.clone()).unwrap_or_default();
            let ready_at = starts.next().unwrap_or(now);
            e.slots[i].pod = Some(EtcdPod { uid, phase: EtcdPodPhase::Initializing { ready_at }, pvc_uid });
            notes.push(format!("statefulset {cpns}/etcd: pod {} created", e.slots[i].pod_name()));
        }
        for i in 0..e.slots.len() {
            let Some(EtcdPodPhase::Initializing { ready_at }) = e.slots[i].pod.as_ref().map(|p| p.phase.clone()) else { continue };
            if ready_at > now {
                continue;
            }
            let name = e.slots[i].pod_name();
            match e.slots[i].pvc.as_ref().map(|c| c.data) {
                Some(MemberData::Synced) => {
                    set_phase(&mut e.slots[i], EtcdPodPhase::Running);
                    notes.push(format!("pod {cpns}/{name}: etcd started, Ready"));
                }
                Some(MemberData::Corrupt) | None => {
                    set_phase(&mut e.slots[i], EtcdPodPhase::CrashLoop);
                    notes.push(format!("pod {cpns}/{name}: etcd exits at start (corrupt data dir): CrashLoopBackOff"));
                }
                Some(MemberData::Empty) => {
                    let others_quorum = {
                        let healthy = e.members.iter().filter(|m| m.name != name && e.member_healthy(&m.name)).count();
                        healthy > e.members.len() / 2
                    };
                    if !others_quorum {
                        set_phase(&mut e.slots[i], EtcdPodPhase::Initializing { ready_at: now.plus(std::time::Duration::from_secs(30)) });
                        notes.push(format!("pod {cpns}/{name}: reset-member waits: the other members have no quorum"));
                        continue;
                    }
                    e.members.retain(|m| m.name != name);
                    let id = e.member();
                    e.members.push(EtcdMemberEntry { id, name: name.clone() });
                    e.members.sort_by(|a, b| a.name.cmp(&b.name));
                    if let Some(c) = e.slots[i].pvc.as_mut() {
                        c.data = MemberData::Synced;
                    }
                    set_phase(&mut e.slots[i], EtcdPodPhase::Running);
                    notes.push(format!("pod {cpns}/{name}: reset-member re-added the member as {id:x}; synced from the leader, Ready"));
                }
            }
        }
        for n in notes {
            self.note(n);
        }
    }
}

fn set_phase(slot: &mut EtcdSlot, phase: EtcdPodPhase) {
    if let Some(p) = slot.pod.as_mut() {
        p.phase = phase;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_healthy_etcd_has_one_serving_member_per_replica() {
        let e = HostedEtcd::healthy(HIGHLY_AVAILABLE, 100);
        assert!(e.all_healthy() && e.has_quorum() && e.available());
        let info = e.info();
        assert_eq!((info.replicas, info.ready_replicas, info.pods.len(), info.pvcs.len()), (3, 3, 3, 3));
        let ids: std::collections::BTreeSet<u64> = e.members.iter().map(|m| m.id).collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(HostedEtcd::healthy(SINGLE_REPLICA, 1).replicas, 1);
    }
}
