//! The hosted-control-plane part of a world: the HyperShift objects a management cluster holds
//! (HostedClusters, their HostedControlPlanes, NodePools) and the HyperShift operator that
//! propagates a pause, as `../shared/HOSTED.md` §A describes them. The management cluster itself
//! is the world's standalone cluster: its API answers (or fails) for these objects as for any
//! other, so API outages and 429/5xx reach the hosted procedures unchanged.
//!
//! The operator is step-driven and lags: a spec change is acted on `OPERATOR_LAG` later, and
//! only while the operator Deployment is available. Until then the conditions still describe the
//! previous generation, as a real controller's would.

use crate::world::EffectKind;
use crate::world::{World, MINUTE, SECOND};
use drctl_runtime::clock::Timestamp;
use drctl_workflows::ports::{control_plane_namespace, ConditionInfo, NodePoolScale, PausableInfo, PortError, PortResult};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How long the HyperShift operator takes to act on a spec change (lo, hi) in ms.
const OPERATOR_LAG: (u64, u64) = (3 * SECOND, 15 * SECOND);

/// A HostedCluster or NodePool, as far as pausing goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pausable {
    pub name: String,
    pub generation: i64,
    pub paused_until: Option<String>,
    pub paused_by: Option<String>,
    pub deleting: bool,
    /// `ReconciliationActive`, as the operator last wrote it.
    pub reconciliation_active: ConditionInfo,
    /// When the operator acts on the current generation (None: it has).
    #[serde(default)]
    pub sync_at: Option<Timestamp>,
}

impl Pausable {
    fn new(name: &str) -> Pausable {
        Pausable {
            name: name.to_string(),
            generation: 1,
            paused_until: None,
            paused_by: None,
            deleting: false,
            reconciliation_active: active_condition(1, None, Timestamp(0)),
            sync_at: None,
        }
    }

    pub fn info(&self) -> PausableInfo {
        PausableInfo {
            name: self.name.clone(),
            generation: self.generation,
            paused_until: self.paused_until.clone(),
            paused_by: self.paused_by.clone(),
            deleting: self.deleting,
            reconciliation_active: Some(self.reconciliation_active.clone()),
        }
    }

    /// A merge patch of `spec.pausedUntil` and the paused-by annotation. The generation moves
    /// only when the spec changes, as the API server's does.
    pub fn set_paused(&mut self, paused_until: Option<&str>, paused_by: Option<&str>) -> bool {
        let spec_changes = self.paused_until.as_deref() != paused_until;
        let changed = spec_changes || self.paused_by.as_deref() != paused_by;
        self.paused_by = paused_by.map(str::to_string);
        if spec_changes {
            self.paused_until = paused_until.map(str::to_string);
            self.generation += 1;
        }
        changed
    }

    /// Whether the operator treats it as paused at `now`: `"true"`/`"True"`, or an RFC 3339
    /// time still ahead. Anything else (unparsable included) is not paused.
    pub fn is_paused(&self, now: Timestamp) -> bool {
        paused_at(self.paused_until.as_deref(), now)
    }
}

pub(crate) fn paused_at(value: Option<&str>, now: Timestamp) -> bool {
    match value {
        Some("true" | "True") => true,
        Some(t) => Timestamp::parse_rfc3339(t).is_some_and(|until| until > now),
        None => false,
    }
}

fn active_condition(generation: i64, paused_until: Option<&str>, now: Timestamp) -> ConditionInfo {
    if paused_at(paused_until, now) {
        ConditionInfo { status: "False".into(), reason: "ReconciliationPaused".into(), observed_generation: generation }
    } else {
        ConditionInfo { status: "True".into(), reason: "ReconciliationActive".into(), observed_generation: generation }
    }
}

/// One HostedCluster with its HostedControlPlane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedCluster {
    pub namespace: String,
    pub cluster: Pausable,
    /// `spec.pausedUntil` of the HostedControlPlane, copied by the operator.
    pub hcp_paused_until: Option<String>,
    /// Its etcd StatefulSet, pods, PVCs and members in the control-plane namespace.
    #[serde(default)]
    pub etcd: Option<crate::hosted_etcd::HostedEtcd>,
    /// Its API server Deployments and secret encryption.
    #[serde(default)]
    pub control_plane: Option<crate::hosted_control_plane::ControlPlane>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePool {
    pub namespace: String,
    pub cluster_name: String,
    pub pool: Pausable,
    #[serde(default)]
    pub data_plane: DataPlane,
}

/// A NodePool's scale and the worker machines (each with its hosted-cluster Node) that the
/// NodePool controller and Cluster API keep in line with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPlane {
    /// `spec.replicas`; absent while the pool autoscales (the two are exclusive).
    pub replicas: Option<u32>,
    /// `spec.autoScaling` as (min, max).
    pub autoscaling: Option<(u32, u32)>,
    /// `spec.nodeDrainTimeout` as written. Absent or zero: a drain is retried without limit.
    pub drain_timeout: Option<String>,
    pub machines: Vec<Worker>,
    /// Suffix of the next machine's name.
    pub next_machine: u32,
    /// The replicas-before-scale-to-zero annotation drctl writes.
    #[serde(default)]
    pub replicas_before_zero: Option<u32>,
}

/// A CAPI Machine of a NodePool, with its Node in the hosted cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    pub name: String,
    pub phase: WorkerPhase,
    /// A PodDisruptionBudget on one of its workloads allows no eviction: its drain ends only
    /// when the pool's drain timeout runs out (never, while it is zero).
    pub eviction_blocked: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerPhase {
    /// The instance boots; its Node joins at `ready_at`.
    Provisioning { ready_at: Timestamp },
    /// Node Ready: counted in the pool's `status.replicas`.
    Running,
    /// Cordoned, its pods evicted one by one: an unblocked drain takes `takes_ms`.
    Draining { since: Timestamp, takes_ms: u64 },
    /// Drained; the instance is terminated and the Machine goes at `gone_at`.
    Terminating { gone_at: Timestamp },
}

impl WorkerPhase {
    pub fn word(&self) -> &'static str {
        match self {
            WorkerPhase::Provisioning { .. } => "Provisioning",
            WorkerPhase::Running => "Running",
            WorkerPhase::Draining { .. } => "Draining",
            WorkerPhase::Terminating { .. } => "Terminating",
        }
    }
}

impl DataPlane {
    /// Machines the pool counts towards its replicas (not on their way out).
    fn live(&self) -> usize {
        self.machines.iter().filter(|m| matches!(m.phase, WorkerPhase::Provisioning { .. } | WorkerPhase::Running)).count()
    }

    /// `status.replicas`: the available machines.
    pub fn status_replicas(&self) -> u32 {
        self.machines.iter().filter(|m| m.phase == WorkerPhase::Running).count() as u32
    }

    /// The replicas the controller aims at: `spec.replicas`, or the live count clamped to the
    /// autoscaler's bounds.
    fn desired(&self) -> usize {
        match (self.replicas, self.autoscaling) {
            (Some(r), _) => r as usize,
            (None, Some((min, max))) => self.live().clamp(min as usize, max as usize),
            (None, None) => self.live(),
        }
    }

    /// When `m`'s drain ends: an unblocked one after its own time, a blocked one when the drain
    /// timeout runs out (never while it is zero or unset).
    fn drained_at(&self, m: &Worker) -> Option<Timestamp> {
        let WorkerPhase::Draining { since, takes_ms } = m.phase else { return None };
        if !m.eviction_blocked {
            return Some(since.plus(std::time::Duration::from_millis(takes_ms)));
        }
        let timeout = self.drain_timeout.as_deref().and_then(drctl_workflows::hosted::go_duration)?;
        (!timeout.is_zero()).then(|| since.plus(timeout))
    }

    /// The earliest moment something is due in this pool.
    fn next_due(&self) -> Option<Timestamp> {
        let at = |m: &Worker| match m.phase {
            WorkerPhase::Provisioning { ready_at } => Some(ready_at),
            WorkerPhase::Draining { .. } => self.drained_at(m),
            WorkerPhase::Terminating { gone_at } => Some(gone_at),
            WorkerPhase::Running => None,
        };
        self.machines.iter().filter_map(at).min()
    }
}

/// The hosted-control-plane objects of a management cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hosted {
    /// The HyperShift operator Deployment (`hypershift/operator`) has an available replica.
    pub operator_available: bool,
    /// By `namespace/name`.
    pub clusters: BTreeMap<String, HostedCluster>,
    /// By `namespace/name`.
    pub node_pools: BTreeMap<String, NodePool>,
    /// `.data.key` of the Secrets the hosted clusters' encryption keys are in, by
    /// `namespace/name` (the world's `secrets` list them too: none may leak).
    #[serde(default)]
    pub secrets: BTreeMap<String, Vec<u8>>,
}

pub fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl NodePool {
    pub fn scale(&self) -> NodePoolScale {
        let dp = &self.data_plane;
        NodePoolScale {
            name: self.pool.name.clone(),
            replicas: dp.replicas,
            autoscaling: dp.autoscaling,
            drain_timeout: dp.drain_timeout.clone(),
            status_replicas: dp.status_replicas(),
            paused_until: self.pool.paused_until.clone(),
            replicas_before_zero: dp.replicas_before_zero,
        }
    }
}

impl Hosted {
    /// One healthy HostedCluster `namespace/name` with `pools` NodePools, reconciled; its etcd
    /// encryption key is `key`.
    pub fn with_cluster(namespace: &str, name: &str, pools: &[&str], encryption_key: &[u8]) -> Hosted {
        let mut h = Hosted { operator_available: true, ..Hosted::default() };
        let secret = crate::hosted_control_plane::encryption_key_secret(name);
        h.secrets.insert(key(namespace, &secret), encryption_key.to_vec());
        h.clusters.insert(
            key(namespace, name),
            HostedCluster {
                namespace: namespace.into(),
                cluster: Pausable::new(name),
                hcp_paused_until: None,
                etcd: Some(crate::hosted_etcd::HostedEtcd::healthy(crate::hosted_etcd::HIGHLY_AVAILABLE, 48_213)),
                control_plane: Some(crate::hosted_control_plane::ControlPlane::new(3, Some(secret))),
            },
        );
        for p in pools {
            let workers = (0..2).map(|i| Worker { name: format!("{p}-{i}"), phase: WorkerPhase::Running, eviction_blocked: false });
            let data_plane = DataPlane { replicas: Some(2), machines: workers.collect(), next_machine: 2, ..DataPlane::default() };
            h.node_pools.insert(
                key(namespace, p),
                NodePool { namespace: namespace.into(), cluster_name: name.into(), pool: Pausable::new(p), data_plane },
            );
        }
        h
    }

    /// The earliest moment the operator or a NodePool's machines have work.
    pub fn next_due(&self, now: Timestamp) -> Option<Timestamp> {
        let clusters = self.clusters.values().filter_map(|c| c.cluster.sync_at);
        let pools = self.node_pools.values().filter_map(|p| p.pool.sync_at);
        let machines = self.node_pools.values().filter(|p| self.scales(p, now)).filter_map(|p| p.data_plane.next_due());
        let etcds = self.clusters.values().filter_map(|c| c.etcd.as_ref()?.next_due());
        let control_planes = self.clusters.values().filter_map(|c| c.control_plane.as_ref()?.next_due());
        clusters.chain(pools).chain(machines).chain(etcds).chain(control_planes).min()
    }

    /// Whether the NodePool controller and Cluster API act on `np` now: the operator runs,
    /// neither the pool nor its cluster is paused (a paused cluster pauses its CAPI Cluster).
    fn scales(&self, np: &NodePool, now: Timestamp) -> bool {
        let cluster_paused = self.clusters.get(&key(&np.namespace, &np.cluster_name)).is_none_or(|c| c.cluster.is_paused(now));
        self.operator_available && !np.pool.is_paused(now) && !cluster_paused
    }

    /// The HyperShift operator, at `now`: acts on every object whose change is due. Returns the
    /// notes of what it did.
    pub fn reconcile(&mut self, now: Timestamp) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.operator_available {
            return notes;
        }
        for hc in self.clusters.values_mut() {
            if hc.cluster.sync_at.is_some_and(|t| t <= now) {
                hc.cluster.sync_at = None;
                hc.hcp_paused_until = hc.cluster.paused_until.clone();
                hc.cluster.reconciliation_active = active_condition(hc.cluster.generation, hc.cluster.paused_until.as_deref(), now);
                let (ns, name) = (hc.namespace.clone(), hc.cluster.name.clone());
                notes.push(format!(
                    "hypershift-operator: hostedcluster {ns}/{name} reconciled at generation {} (ReconciliationActive={}); hostedcontrolplane {}/{name} pausedUntil={:?}",
                    hc.cluster.generation,
                    hc.cluster.reconciliation_active.status,
                    control_plane_namespace(&ns, &name),
                    hc.hcp_paused_until
                ));
            }
        }
        for np in self.node_pools.values_mut() {
            if np.pool.sync_at.is_some_and(|t| t <= now) {
                np.pool.sync_at = None;
                np.pool.reconciliation_active = active_condition(np.pool.generation, np.pool.paused_until.as_deref(), now);
                notes.push(format!(
                    "hypershift-operator: nodepool {}/{} reconciled at generation {} (ReconciliationActive={})",
                    np.namespace, np.pool.name, np.pool.generation, np.pool.reconciliation_active.status
                ));
            }
        }
        notes
    }

    /// Problems a person would see (`drctl sim status`): objects the operator has not caught up
    /// with, or an operator that is not running.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.operator_available {
            p.push("hypershift-operator: no available replica (pauses and unpauses do not propagate)".into());
        }
        for hc in self.clusters.values() {
            if let Some(e) = hc.etcd.as_ref().filter(|e| !e.all_healthy()) {
                let info = e.info();
                let pods: Vec<String> = info.pods.iter().filter(|p| !p.ready).map(|p| format!("{} {}", p.name, p.status)).collect();
                p.push(format!(
                    "hosted etcd of {}/{}: {} of {} members serving; not ready: [{}]",
                    hc.namespace,
                    hc.cluster.name,
                    info.ready_replicas,
                    e.replicas,
                    pods.join(", ")
                ));
            }
            if hc.cluster.reconciliation_active.observed_generation < hc.cluster.generation {
                p.push(format!(
                    "hostedcluster {}/{}: generation {} not reconciled yet",
                    hc.namespace, hc.cluster.name, hc.cluster.generation
                ));
            }
        }
        p
    }
}

/// World operations the management-cluster port performs (after the API call succeeded).
impl World {
    pub fn hosted(&self) -> Option<&Hosted> {
        self.hosted.as_ref()
    }

    /// A spec change the operator will act on after its lag.
    pub(crate) fn schedule_operator(&mut self) -> Timestamp {
        self.delay(OPERATOR_LAG.0, OPERATOR_LAG.1)
    }

    /// The NodePools of HostedCluster `namespace/cluster`, as the API serves them.
    pub fn node_pool_scales(&self, namespace: &str, cluster: &str) -> Vec<NodePoolScale> {
        let Some(h) = self.hosted.as_ref() else { return vec![] };
        h.node_pools.values().filter(|p| p.namespace == namespace && p.cluster_name == cluster).map(NodePool::scale).collect()
    }

    /// NodePool `namespace/name`'s scale, if it exists.
    pub fn node_pool_scales_by_name(&self, namespace: &str, name: &str) -> Option<NodePoolScale> {
        self.hosted.as_ref().and_then(|h| h.node_pools.get(&key(namespace, name))).map(NodePool::scale)
    }

    /// `PATCH nodepools/<name>/scale`: the API's validation refuses replicas beside autoScaling.
    pub fn scale_node_pool(&mut self, namespace: &str, name: &str, replicas: u32) -> PortResult<()> {
        let np = self.node_pool_mut(namespace, name)?;
        if np.data_plane.autoscaling.is_some() {
            return Err(PortError::Permanent(format!(
                "HTTP 422 Invalid: NodePool.hypershift.openshift.io \"{name}\" is invalid: spec: Invalid value: \"object\": Both replicas or autoScaling should not be set"
            )));
        }
        if np.data_plane.replicas != Some(replicas) {
            np.data_plane.replicas = Some(replicas);
            np.pool.generation += 1;
            self.note(format!("nodepool {namespace}/{name}: spec.replicas={replicas}"));
            self.effect(EffectKind::NodePoolScaled { replicas }, format!("nodepools/{namespace}/{name}"));
        }
        Ok(())
    }

    /// A merge patch of `spec.nodeDrainTimeout` (`None`: removed). The CRD's type is a
    /// duration: anything else is refused.
    pub fn set_node_pool_drain_timeout(&mut self, namespace: &str, name: &str, timeout: Option<&str>) -> PortResult<()> {
        // A missing object is a 404 before any validation.
        self.node_pool_mut(namespace, name)?;
        if let Some(t) = timeout.filter(|t| drctl_workflows::hosted::go_duration(t).is_none()) {
            return Err(PortError::Permanent(format!(
                "HTTP 422 Invalid: NodePool.hypershift.openshift.io \"{name}\" is invalid: spec.nodeDrainTimeout: Invalid value: \"{t}\": spec.nodeDrainTimeout in body must be of type duration"
            )));
        }
        let np = self.node_pool_mut(namespace, name)?;
        if np.data_plane.drain_timeout.as_deref() != timeout {
            np.data_plane.drain_timeout = timeout.map(str::to_string);
            np.pool.generation += 1;
            self.note(format!("nodepool {namespace}/{name}: spec.nodeDrainTimeout={timeout:?}"));
        }
        Ok(())
    }

    /// A merge patch of the replicas-before-scale-to-zero annotation (metadata: the generation
    /// stays).
    pub fn record_node_pool_replicas(&mut self, namespace: &str, name: &str, replicas: Option<u32>) -> PortResult<()> {
        let np = self.node_pool_mut(namespace, name)?;
        if np.data_plane.replicas_before_zero != replicas {
            np.data_plane.replicas_before_zero = replicas;
            self.note(format!("nodepool {namespace}/{name}: replicas before scale to zero recorded as {replicas:?}"));
        }
        Ok(())
    }

    /// The Machines of NodePool `pool` (any phase: a terminating instance is still listed).
    pub fn node_pool_machines(&self, namespace: &str, pool: &str) -> Vec<String> {
        let np = self.hosted.as_ref().and_then(|h| h.node_pools.get(&key(namespace, pool)));
        np.map(|p| p.data_plane.machines.iter().map(|m| m.name.clone()).collect()).unwrap_or_default()
    }

    fn node_pool_mut(&mut self, namespace: &str, name: &str) -> PortResult<&mut NodePool> {
        let not_found = || PortError::NotFound(format!("HTTP 404 NotFound: nodepools.hypershift.openshift.io \"{name}\" not found"));
        self.hosted.as_mut().and_then(|h| h.node_pools.get_mut(&key(namespace, name))).ok_or_else(not_found)
    }

    /// The NodePool controller and Cluster API, at `now`, for every pool they act on: too many
    /// live machines → the newest are cordoned and drained; drained → the instance terminates;
    /// too few → new machines boot. Each transition is one note.
    pub(crate) fn reconcile_node_pools(&mut self) {
        let now = self.now;
        let Some(h) = self.hosted.as_ref() else { return };
        let keys: Vec<String> = h.node_pools.iter().filter(|(_, p)| h.scales(p, now)).map(|(k, _)| k.clone()).collect();
        for k in keys {
            self.reconcile_node_pool(&k);
        }
    }

    fn reconcile_node_pool(&mut self, key: &str) {
        fn pool<'a>(w: &'a mut World, key: &str) -> &'a mut NodePool {
            w.hosted.as_mut().and_then(|h| h.node_pools.get_mut(key)).expect("pool listed")
        }
        let now = self.now;
        let dp = &pool(self, key).data_plane;
        let (live, desired) = (dp.live(), dp.desired());
        // Timings drawn before the pool is borrowed: the world's one random stream.
        let drains: Vec<u64> = (desired..live).map(|_| self.rng.range(20 * SECOND, 90 * SECOND)).collect();
        let boots: Vec<Timestamp> = (live..desired).map(|_| self.delay(4 * MINUTE, 9 * MINUTE)).collect();
        let dp = &pool(self, key).data_plane;
        let drained: Vec<usize> = (0..dp.machines.len()).filter(|i| dp.drained_at(&dp.machines[*i]).is_some_and(|t| t <= now)).collect();
        let gone_at: Vec<Timestamp> = drained.iter().map(|_| self.delay(45 * SECOND, 150 * SECOND)).collect();
        let mut notes = Vec::new();
        let np = pool(self, key);
        let name = format!("{}/{}", np.namespace, np.pool.name);
        let dp = &mut np.data_plane;
        for (i, gone_at) in drained.into_iter().zip(gone_at) {
            dp.machines[i].phase = WorkerPhase::Terminating { gone_at };
            notes.push(format!("nodepool {name}: machine {} drained; instance terminating", dp.machines[i].name));
        }
        // Scale down the newest live machines first, as a MachineSet does.
        let mut live_idx: Vec<usize> = (0..dp.machines.len())
            .filter(|i| matches!(dp.machines[*i].phase, WorkerPhase::Provisioning { .. } | WorkerPhase::Running))
            .collect();
        live_idx.reverse();
        for (i, takes_ms) in live_idx.into_iter().zip(drains) {
            dp.machines[i].phase = WorkerPhase::Draining { since: now, takes_ms };
            notes.push(format!("nodepool {name}: node {} cordoned and draining", dp.machines[i].name));
        }
        for ready_at in boots {
            let m = Worker {
                name: format!("{}-{}", np.pool.name, dp.next_machine),
                phase: WorkerPhase::Provisioning { ready_at },
                eviction_blocked: false,
            };
            dp.next_machine += 1;
            notes.push(format!("nodepool {name}: machine {} provisioning", m.name));
            dp.machines.push(m);
        }
        for m in dp.machines.iter_mut() {
            if matches!(m.phase, WorkerPhase::Provisioning { ready_at } if ready_at <= now) {
                m.phase = WorkerPhase::Running;
                notes.push(format!("nodepool {name}: node {} Ready", m.name));
            }
        }
        let before = dp.machines.len();
        dp.machines.retain(|m| !matches!(m.phase, WorkerPhase::Terminating { gone_at } if gone_at <= now));
        if dp.machines.len() < before {
            notes.push(format!("nodepool {name}: {} machine(s) and their nodes gone", before - dp.machines.len()));
        }
        if !notes.is_empty() {
            self.touch();
        }
        for n in notes {
            self.note(n);
        }
    }
}
