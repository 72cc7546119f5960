//! The API servers of a hosted control plane and what the control-plane operator (CPO) does to
//! them (`../shared/HOSTED.md` §A.2, §A.4): the Deployments `kube-apiserver`,
//! `openshift-apiserver` and `openshift-oauth-apiserver` (the etcd writers) in the control-plane
//! namespace, scaled through `/scale`, and the CPO, which puts their replicas back to what it
//! wants unless the HostedControlPlane is paused. Also the HostedCluster's secret encryption:
//! the Secret holding its AES-CBC key, and its `Available` condition.

use crate::hosted::HostedCluster;
use crate::world::{EffectKind, World, SECOND};
use drctl_runtime::clock::Timestamp;
use drctl_workflows::ports::{control_plane_namespace, DeploymentScale, HostedBackupFacts, PortError, PortResult, ETCD_WRITERS};
use serde::{Deserialize, Serialize};

/// A Deployment of the control-plane namespace, by its scale.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiServerDeployment {
    pub name: String,
    /// `spec.replicas`.
    pub replicas: u32,
    /// The pods there are (`status.replicas`): terminating ones count until they are gone.
    pub pods: u32,
    /// Of those, the ready ones.
    pub ready: u32,
    /// When the pods have caught up with `replicas` (None: they have).
    pub settle_at: Option<Timestamp>,
}

impl ApiServerDeployment {
    fn scale(&self) -> DeploymentScale {
        DeploymentScale { name: self.name.clone(), replicas: self.replicas, status_replicas: self.pods, ready_replicas: self.ready }
    }
}

/// The parts of a hosted control plane a backup touches besides its etcd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPlane {
    /// The etcd writers, in the order of [`ETCD_WRITERS`].
    pub writers: Vec<ApiServerDeployment>,
    /// The replicas the CPO gives each writer (3 when HighlyAvailable, 1 when SingleReplica).
    pub cpo_replicas: u32,
    /// `spec.etcd.managementType`.
    pub etcd_management: String,
    /// `spec.secretEncryption.type` and `.aescbc.activeKey.name`.
    pub encryption: Option<(String, Option<String>)>,
}

impl ControlPlane {
    pub fn new(replicas: u32, active_key: Option<String>) -> ControlPlane {
        let writers = ETCD_WRITERS
            .iter()
            .map(|n| ApiServerDeployment { name: n.to_string(), replicas, pods: replicas, ready: replicas, settle_at: None })
            .collect();
        ControlPlane { writers, cpo_replicas: replicas, etcd_management: "Managed".into(), encryption: Some(("aescbc".into(), active_key)) }
    }

    pub fn writer(&self, name: &str) -> Option<&ApiServerDeployment> {
        self.writers.iter().find(|d| d.name == name)
    }

    /// Any etcd writer has a ready pod.
    pub fn writers_serving(&self) -> u32 {
        self.writers.iter().map(|d| d.ready).sum()
    }

    pub fn next_due(&self) -> Option<Timestamp> {
        self.writers.iter().filter_map(|d| d.settle_at).min()
    }
}

impl HostedCluster {
    /// The `Available` condition: the API server answers (a ready kube-apiserver) on an
    /// available etcd.
    pub fn available(&self) -> bool {
        let kas = self.control_plane.as_ref().and_then(|c| c.writer("kube-apiserver")).is_some_and(|d| d.ready > 0);
        let etcd = self.etcd.as_ref().is_some_and(|e| e.available());
        kas && etcd && !self.cluster.deleting
    }
}

/// The encryption key Secret a HostedCluster is created with by default.
pub fn encryption_key_secret(name: &str) -> String {
    format!("{name}-etcd-encryption-key")
}

impl World {
    fn hosted_cluster_mut(&mut self, namespace: &str, name: &str) -> PortResult<&mut HostedCluster> {
        self.hosted
            .as_mut()
            .and_then(|h| h.clusters.get_mut(&crate::hosted::key(namespace, name)))
            .ok_or_else(|| PortError::NotFound(format!("HTTP 404 NotFound: hostedclusters.hypershift.openshift.io \"{name}\" not found")))
    }

    pub fn hosted_backup_facts(&self, namespace: &str, name: &str) -> PortResult<HostedBackupFacts> {
        let hc = self.hosted.as_ref().and_then(|h| h.clusters.get(&crate::hosted::key(namespace, name))).ok_or_else(|| {
            PortError::NotFound(format!("HTTP 404 NotFound: hostedclusters.hypershift.openshift.io \"{name}\" not found"))
        })?;
        let cp = hc.control_plane.as_ref();
        Ok(HostedBackupFacts {
            available: Some(if hc.available() { "True" } else { "False" }.into()),
            etcd_management: cp.map_or("Managed".into(), |c| c.etcd_management.clone()),
            encryption_type: cp.and_then(|c| c.encryption.as_ref()).map(|e| e.0.clone()),
            active_key_secret: cp.and_then(|c| c.encryption.as_ref()).and_then(|e| e.1.clone()),
        })
    }

    pub fn control_plane_deployments(&self, namespace: &str, name: &str, names: &[&str]) -> PortResult<Vec<DeploymentScale>> {
        let cpns = control_plane_namespace(namespace, name);
        let cp =
            self.hosted.as_ref().and_then(|h| h.clusters.get(&crate::hosted::key(namespace, name))).and_then(|c| c.control_plane.as_ref());
        names
            .iter()
            .map(|n| {
                cp.and_then(|c| c.writer(n))
                    .map(ApiServerDeployment::scale)
                    .ok_or_else(|| PortError::NotFound(format!("HTTP 404 NotFound: deployments.apps \"{n}\" not found in {cpns}")))
            })
            .collect()
    }

    /// `PATCH deployments/<name>/scale`: pods start or terminate over the next seconds.
    pub fn scale_control_plane_deployment(&mut self, namespace: &str, name: &str, deployment: &str, replicas: u32) -> PortResult<()> {
        let cpns = control_plane_namespace(namespace, name);
        let settle_at = self.delay(10 * SECOND, 60 * SECOND);
        let hc = self.hosted_cluster_mut(namespace, name)?;
        let d = hc
            .control_plane
            .as_mut()
            .and_then(|c| c.writers.iter_mut().find(|d| d.name == deployment))
            .ok_or_else(|| PortError::NotFound(format!("HTTP 404 NotFound: deployments.apps \"{deployment}\" not found in {cpns}")))?;
        if d.replicas == replicas {
            return Ok(());
        }
        d.replicas = replicas;
        d.settle_at = Some(settle_at);
        self.note(format!("deployment {cpns}/{deployment}: spec.replicas={replicas}"));
        self.effect(EffectKind::ControlPlaneScaled { replicas }, format!("{cpns}/{deployment}"));
        Ok(())
    }

    /// `.data.key` of Secret `namespace/secret`.
    pub fn hosted_secret(&self, namespace: &str, secret: &str) -> PortResult<Vec<u8>> {
        self.hosted
            .as_ref()
            .and_then(|h| h.secrets.get(&crate::hosted::key(namespace, secret)))
            .cloned()
            .ok_or_else(|| PortError::NotFound(format!("HTTP 404 NotFound: secrets \"{secret}\" not found")))
    }

    /// The Deployment controller (pods catch up with replicas) and the CPO (reverting the
    /// writers' replicas unless the HostedControlPlane is paused), for every hosted cluster.
    pub(crate) fn reconcile_control_planes(&mut self) {
        let now = self.now;
        let Some(h) = self.hosted.as_ref() else { return };
        let operator = h.operator_available;
        let keys: Vec<String> = h.clusters.iter().filter(|(_, c)| c.control_plane.is_some()).map(|(k, _)| k.clone()).collect();
        for key in keys {
            let mut notes = vec![];
            let reverts = {
                let hc = &self.hosted.as_ref().expect("listed").clusters[&key];
                let cp = hc.control_plane.as_ref().expect("listed");
                // The CPO runs while the HostedControlPlane is not paused (the operator keeps it
                // deployed).
                let cpo_active = operator && !crate::hosted::paused_at(hc.hcp_paused_until.as_deref(), now);
                match cpo_active {
                    true => cp.writers.iter().filter(|d| d.replicas != cp.cpo_replicas).count(),
                    false => 0,
                }
            };
            let settles: Vec<Timestamp> = (0..reverts).map(|_| self.delay(10 * SECOND, 60 * SECOND)).collect();
            let hc = self.hosted.as_mut().expect("listed").clusters.get_mut(&key).expect("listed");
            let cpns = control_plane_namespace(&hc.namespace, &hc.cluster.name);
            let cp = hc.control_plane.as_mut().expect("listed");
            let want = cp.cpo_replicas;
            let mut settles = settles.into_iter();
            for d in cp.writers.iter_mut() {
                if reverts > 0 && d.replicas != want {
                    d.replicas = want;
                    d.settle_at = settles.next();
                    notes.push(format!("control-plane-operator: deployment {cpns}/{} reverted to {want} replicas", d.name));
                }
                if d.settle_at.is_some_and(|t| t <= now) {
                    d.settle_at = None;
                    d.pods = d.replicas;
                    d.ready = d.replicas;
                    notes.push(format!("deployment {cpns}/{}: {} of {} pods ready", d.name, d.ready, d.replicas));
                }
                // Scaling down, the pods go only at the end of their grace period: an API server
                // keeps serving (and writing) through its shutdown delay.
            }
            if !notes.is_empty() {
                self.touch();
            }
            for n in notes {
                self.note(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_start_at_the_operators_replicas() {
        let cp = ControlPlane::new(3, Some("example-etcd-encryption-key".into()));
        assert_eq!(cp.writers.len(), 3);
        assert_eq!(cp.writers_serving(), 9);
        assert_eq!(cp.writer("kube-apiserver").map(|d| d.ready), Some(3));
        assert_eq!(cp.next_due(), None);
    }
}
