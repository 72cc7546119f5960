//! The hosted-control-plane part of a world: the HyperShift objects a management cluster holds
//! (HostedClusters, their HostedControlPlanes, NodePools) and the HyperShift operator that
//! propagates a pause, as `../shared/HOSTED.md` §A describes them. The management cluster itself
//! is the world's standalone cluster: its API answers (or fails) for these objects as for any
//! other, so API outages and 429/5xx reach the hosted procedures unchanged.
//!
//! The operator is step-driven and lags: a spec change is acted on `OPERATOR_LAG` later, and
//! only while the operator Deployment is available. Until then the conditions still describe the
//! previous generation, as a real controller's would.

use crate::world::{World, SECOND};
use drctl_runtime::clock::Timestamp;
use drctl_workflows::ports::{control_plane_namespace, ConditionInfo, PausableInfo};
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

fn paused_at(value: Option<&str>, now: Timestamp) -> bool {
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
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePool {
    pub namespace: String,
    pub cluster_name: String,
    pub pool: Pausable,
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
}

pub fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl Hosted {
    /// One healthy HostedCluster `namespace/name` with `pools` NodePools, reconciled.
    pub fn with_cluster(namespace: &str, name: &str, pools: &[&str]) -> Hosted {
        let mut h = Hosted { operator_available: true, ..Hosted::default() };
        h.clusters.insert(
            key(namespace, name),
            HostedCluster { namespace: namespace.into(), cluster: Pausable::new(name), hcp_paused_until: None },
        );
        for p in pools {
            h.node_pools
                .insert(key(namespace, p), NodePool { namespace: namespace.into(), cluster_name: name.into(), pool: Pausable::new(p) });
        }
        h
    }

    /// The earliest moment the operator has work.
    pub fn next_due(&self) -> Option<Timestamp> {
        let clusters = self.clusters.values().filter_map(|c| c.cluster.sync_at);
        clusters.chain(self.node_pools.values().filter_map(|p| p.pool.sync_at)).min()
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
}
