//! `drctl-sim`: a deterministic simulator of an OpenShift control plane and its etcd.
//!
//! One seed determines everything. The world is plain data ([`world::World`]); [`Sim`] shares
//! it between the ports the procedures call ([`Sim::ports`]) and the clock the engine waits on
//! ([`SimClock`]), and, when given a file, persists it after every change so that the world
//! outlives a killed runner.
//!
//! Faults ([`faults::FaultSchedule`]: API outages and error responses, slow responses, SSH
//! outages and dropped connections, etcd member crashes and errors, full disks, slow operations,
//! runner crashes, gates waited on, aborts) are plain data too, and the chaos harness
//! ([`chaos`]) drives every procedure through seed sweeps of them, checking safety invariants
//! after every transition, liveness once the faults are over, determinism, and crash
//! equivalence at every transition.

pub mod bare_metal;
pub mod chaos;
pub mod csr_request;
pub mod faults;
pub mod host_ops;
pub mod host_shell;
pub mod hosted;
pub mod hosted_control_plane;
pub mod hosted_etcd;
pub mod legacy;
pub mod object_store;
pub mod pod_exec;
pub mod ports;
pub mod scenario;
pub mod world;

use drctl_runtime::clock::{BoxFuture, Clock, Timestamp};
use drctl_workflows::ports::{PortError, PortResult};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use world::World;

/// Format version of a persisted world file.
const WORLD_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{0}")]
    Scenario(String),
    #[error("simulated world file {path}: {why}")]
    File { path: PathBuf, why: String },
}

struct Inner {
    world: World,
    file: Option<PathBuf>,
}

/// A shared handle on one simulated world.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Serialize, Deserialize)]
struct WorldFile {
    format: u32,
    world: World,
}

impl Sim {
    pub fn new(world: World) -> Sim {
        Sim { inner: Arc::new(Mutex::new(Inner { world, file: None })) }
    }

    pub fn scenario(name: &str, seed: u64) -> Result<Sim, SimError> {
        scenario::build(name, seed).map(Sim::new).map_err(SimError::Scenario)
    }

    /// Persist the world to `path` now and after every later change.
    pub fn persist_to(&self, path: &Path) -> Result<(), SimError> {
        let mut g = self.lock();
        g.file = Some(path.to_path_buf());
        save(path, &g.world)
    }

    /// Load a world persisted by [`Sim::persist_to`]; keeps persisting to the same file.
    pub fn load(path: &Path) -> Result<Sim, SimError> {
        let bytes = std::fs::read(path).map_err(|e| SimError::File { path: path.into(), why: e.to_string() })?;
        let f: WorldFile = rmp_serde::from_slice(&bytes).map_err(|e| SimError::File { path: path.into(), why: format!("corrupt: {e}") })?;
        if f.format != WORLD_FORMAT {
            return Err(SimError::File { path: path.into(), why: format!("format {} is not the supported {WORLD_FORMAT}", f.format) });
        }
        Ok(Sim { inner: Arc::new(Mutex::new(Inner { world: f.world, file: Some(path.into()) })) })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a simulator bug; the world is still data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Read the world.
    pub fn read<T>(&self, f: impl FnOnce(&World) -> T) -> T {
        f(&self.lock().world)
    }

    /// Change the world and persist the change before returning, so that what a caller was told
    /// happened has happened, even if the caller dies right after.
    pub fn write<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        self.op(|w| {
            let out = f(w);
            // Whatever `f` changed, the controllers must look at it.
            w.touch();
            out
        })
    }

    /// [`Sim::write`] for operations that record their own changes with [`World::touch`]: a
    /// read-only request leaves the world settled, so time passes cheaply. A world that cannot
    /// be saved stays changed in memory and is saved with the next change that can be (only the
    /// passing of time and the served twin use this; the ports use [`Sim::port_op`]).
    pub fn op<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let mut g = self.lock();
        let out = f(&mut g.world);
        if let Some(p) = g.file.clone() {
            let _ = save(&p, &g.world);
        }
        out
    }

    /// One request of a run through a port: the world changes and is saved, or, when its file
    /// cannot be written (a full disk, a directory in the way), nothing changed and the request
    /// fails as a transient error the run waits out, as it would a cluster that does not answer.
    pub fn port_op<T>(&self, f: impl FnOnce(&mut World) -> PortResult<T>) -> PortResult<T> {
        let mut g = self.lock();
        let Some(path) = g.file.clone() else { return f(&mut g.world) };
        let before = g.world.clone();
        let out = f(&mut g.world);
        match save(&path, &g.world) {
            Ok(()) => out,
            Err(e) => {
                g.world = before;
                Err(PortError::Transient(format!("{e} (nothing was changed; drctl retries until it can be saved)")))
            }
        }
    }

    pub fn now(&self) -> Timestamp {
        self.read(|w| w.now)
    }

    pub fn advance_to(&self, t: Timestamp) {
        if t > self.now() {
            self.op(|w| w.pass_time_to(t));
        }
    }

    pub fn clock(&self) -> SimClock {
        SimClock { sim: self.clone() }
    }

    pub fn ports(&self) -> drctl_workflows::ports::Ports {
        ports::sim_ports(self)
    }

    /// A digest of the whole world: equal digests mean equal worlds.
    pub fn digest(&self) -> String {
        self.read(world_digest)
    }

    pub fn status(&self) -> SimStatus {
        self.read(SimStatus::of)
    }
}

/// A digest of what the world IS, leaving out when it is (`now`), the controllers' RNG and the
/// log: two worlds with equal state digests differ only in time having passed.
pub fn state_digest(w: &World) -> String {
    let mut w = w.clone();
    w.now = Default::default();
    w.rng = drctl_runtime::rng::DetRng::new(0);
    w.log.clear();
    w.effects.clear();
    w.fault_rng = None;
    world_digest(&w)
}

pub fn world_digest(w: &World) -> String {
    use sha2::{Digest, Sha256};
    let bytes = rmp_serde::to_vec(w).expect("world encodes");
    hex::encode(Sha256::digest(bytes))
}

fn save(path: &Path, world: &World) -> Result<(), SimError> {
    let err = |e: std::io::Error| SimError::File { path: path.into(), why: e.to_string() };
    let bytes = rmp_serde::to_vec_named(&WorldFile { format: WORLD_FORMAT, world: world.clone() }).expect("world encodes");
    // Write then rename: a killed process leaves either the old world or the new one, whole.
    // No fsync: this must survive the runner being killed, not the machine losing power.
    let tmp = path.with_extension("tmp");
    // Owner-only, like the rest of the store: a world holds the cluster's backups and secrets.
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(err)?
    };
    std::io::Write::write_all(&mut f, &bytes).map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)
}

/// The engine's clock for a simulated run: virtual time, advanced by waiting.
#[derive(Clone)]
pub struct SimClock {
    sim: Sim,
}

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        self.sim.now()
    }
    fn sleep_until(&self, t: Timestamp) -> BoxFuture<'_, ()> {
        self.sim.advance_to(t);
        Box::pin(async {})
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub id: String,
    pub host: String,
    pub started: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorStatus {
    pub operator: String,
    pub latest_revision: u64,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub ready: bool,
}

/// The simulated cluster's health summary (`drctl sim status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimStatus {
    pub scenario: String,
    pub seed: u64,
    pub time: String,
    pub healthy: bool,
    pub problems: Vec<String>,
    pub api_available: bool,
    pub etcd_cluster_id: String,
    /// Cluster ids of every etcd that is running on some host.
    pub running_cluster_ids: Vec<String>,
    pub etcd_members: Vec<MemberStatus>,
    pub etcd_quorum: bool,
    pub nodes: Vec<NodeStatus>,
    pub operators: Vec<OperatorStatus>,
    pub quorum_guard: bool,
    pub ovn_healthy: bool,
    pub pending_csrs: usize,
    pub data_revision: u64,
    pub restored_from_revision: Option<u64>,
    /// The world's topology (`standalone`, `hosted`).
    #[serde(default)]
    pub topology: String,
    /// The HostedClusters of a management cluster (the `hosted` topology), with their pause.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosted_clusters: Vec<HostedClusterStatus>,
    /// The objects of the world's object store (the `hosted` topology).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<ObjectStatus>,
    /// The BareMetalHosts of a bare metal world.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bare_metal_hosts: Vec<drctl_workflows::ports::BareMetalHostInfo>,
    /// Pending CSRs, by name, with the node they name and who asked (`certs-expired`'s foreign
    /// one stays here: nothing may approve it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_csr_list: Vec<PendingCsr>,
    /// The servers of a bare metal world no BareMetalHost points at: what a replacement can
    /// provision (`--bmc-address`, `--boot-mac-address`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spare_servers: Vec<SpareServer>,
    /// The temporary etcd signer pod of OpenShift 4.1–4.3 (`openshift-config/etcd-signer`), by
    /// the node it is for, while it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_signer: Option<String>,
    /// See [`state_digest`].
    pub state_digest: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingCsr {
    pub name: String,
    pub node: String,
    pub requestor: String,
}

/// A server racked and cabled but bound to no BareMetalHost.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SpareServer {
    pub bmc_address: String,
    pub boot_mac_address: String,
}

/// A HostedCluster as `drctl sim status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostedClusterStatus {
    pub namespace: String,
    pub name: String,
    /// `spec.pausedUntil` (absent: reconciling).
    pub paused_until: Option<String>,
    pub paused_by: Option<String>,
    /// `ReconciliationActive`, as the operator last wrote it.
    pub reconciliation_active: String,
    /// `spec.pausedUntil` of its HostedControlPlane.
    pub control_plane_paused_until: Option<String>,
    pub node_pools: Vec<NodePoolStatus>,
    /// Its etcd in the control-plane namespace.
    #[serde(default)]
    pub etcd: Option<HostedEtcdStatus>,
    /// The `Available` condition.
    #[serde(default)]
    pub available: bool,
    /// The etcd writers (`kube-apiserver`, `openshift-apiserver`, `openshift-oauth-apiserver`)
    /// by their scale.
    #[serde(default)]
    pub api_servers: Vec<drctl_workflows::ports::DeploymentScale>,
    /// Snapshot files on the etcd PVCs, as `pod:path`.
    #[serde(default)]
    pub snapshot_files: Vec<String>,
}

/// An object in the world's object store.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectStatus {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

/// A hosted control plane's etcd as `drctl sim status` shows it: what the management cluster's
/// API serves, and the members etcd itself lists.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostedEtcdStatus {
    #[serde(flatten)]
    pub info: drctl_workflows::ports::HostedEtcdInfo,
    pub members: Vec<HostedEtcdMemberStatus>,
    /// Every member started and serving, one per replica.
    pub all_healthy: bool,
    /// The keyspace's revision.
    pub revision: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostedEtcdMemberStatus {
    pub name: String,
    /// In hex, as etcdctl prints it in tables.
    pub id: String,
    pub healthy: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodePoolStatus {
    /// Name, pause and scale, as the management-cluster port reads them.
    #[serde(flatten)]
    pub scale: drctl_workflows::ports::NodePoolScale,
    pub reconciliation_active: String,
    /// Its machines (with their nodes in the hosted cluster), whatever their phase.
    #[serde(default)]
    pub machines: Vec<String>,
}

fn hosted_status(h: &hosted::Hosted) -> Vec<HostedClusterStatus> {
    let condition = |p: &hosted::Pausable| format!("{} ({})", p.reconciliation_active.status, p.reconciliation_active.reason);
    h.clusters
        .values()
        .map(|hc| HostedClusterStatus {
            namespace: hc.namespace.clone(),
            name: hc.cluster.name.clone(),
            paused_until: hc.cluster.paused_until.clone(),
            paused_by: hc.cluster.paused_by.clone(),
            reconciliation_active: condition(&hc.cluster),
            control_plane_paused_until: hc.hcp_paused_until.clone(),
            node_pools: h
                .node_pools
                .values()
                .filter(|np| np.namespace == hc.namespace && np.cluster_name == hc.cluster.name)
                .map(|np| NodePoolStatus {
                    scale: np.scale(),
                    reconciliation_active: condition(&np.pool),
                    machines: np.data_plane.machines.iter().map(|m| format!("{} ({})", m.name, m.phase.word())).collect(),
                })
                .collect(),
            etcd: hc.etcd.as_ref().map(|e| HostedEtcdStatus {
                info: e.info(),
                members: e
                    .members
                    .iter()
                    .map(|m| HostedEtcdMemberStatus { name: m.name.clone(), id: format!("{:x}", m.id), healthy: e.member_healthy(&m.name) })
                    .collect(),
                all_healthy: e.all_healthy(),
                revision: e.revision,
            }),
            available: hc.available(),
            api_servers: hc
                .control_plane
                .iter()
                .flat_map(|c| &c.writers)
                .map(|d| drctl_workflows::ports::DeploymentScale {
                    name: d.name.clone(),
                    replicas: d.replicas,
                    status_replicas: d.pods,
                    ready_replicas: d.ready,
                })
                .collect(),
            snapshot_files: hc
                .etcd
                .iter()
                .flat_map(|e| &e.slots)
                .flat_map(|slot| slot.pvc.iter().flat_map(move |c| c.snapshots.keys().map(move |p| format!("{}:{p}", slot.pod_name()))))
                .collect(),
        })
        .collect()
}

fn object_status(w: &World) -> Vec<ObjectStatus> {
    let store = w.object_store.iter().flat_map(|s| &s.buckets);
    store
        .flat_map(|(bucket, b)| {
            b.objects.iter().map(move |(key, o)| {
                let d = object_store::digest_of(&o.bytes);
                ObjectStatus { bucket: bucket.clone(), key: key.clone(), size: d.size, sha256: d.sha256 }
            })
        })
        .collect()
}

impl SimStatus {
    pub fn of(w: &World) -> SimStatus {
        let mut s = SimStatus::health(w);
        s.state_digest = state_digest(w);
        s
    }

    /// [`SimStatus::of`] without the state digest (left empty), which copies and hashes the
    /// whole world: for checking health often.
    pub fn health(w: &World) -> SimStatus {
        use world::Container;
        let cid = w.current_cluster;
        let members: Vec<MemberStatus> = w.etcd[&cid]
            .members
            .iter()
            .map(|(id, host)| MemberStatus {
                id: format!("{id:x}"),
                host: host.clone(),
                started: w.hosts.get(host).is_some_and(|h| w.member_started(h)),
            })
            .collect();
        let running: std::collections::BTreeSet<String> = w
            .hosts
            .values()
            .filter(|h| h.powered && h.containers.get(&drctl_workflows::ports::StaticPod::Etcd) == Some(&Container::Running))
            .filter_map(|h| h.etcd_data.map(|d| format!("{:x}", d.cluster_id)))
            .collect();
        let nodes: Vec<NodeStatus> = w.api().nodes.keys().map(|n| NodeStatus { name: n.clone(), ready: w.node_ready(n) }).collect();
        let operators: Vec<OperatorStatus> = w
            .operators_present()
            .iter()
            .map(|op| {
                let (reason, message) = w.installer_progress(*op);
                OperatorStatus { operator: op.to_string(), latest_revision: w.api().operators[op].latest_revision, reason, message }
            })
            .collect();
        // Pending CSRs that need someone: the machine approver signs its own on its own, and one
        // whose host is gone (its machine replaced) is garbage the CSR cleaner removes.
        let live = |c: &world::CsrObj| w.hosts.get(&c.node).is_some_and(|h| h.powered);
        let pending_csrs = w.api().csrs.values().filter(|c| !c.approved && !w.machine_approver_signs(c) && live(c)).count();
        let mut problems = vec![];
        let api_available = w.api_available();
        if !api_available {
            problems.push("API unavailable".to_string());
        }
        if members.len() != 3 || members.iter().any(|m| !m.started) {
            let started = members.iter().filter(|m| m.started).count();
            problems.push(format!("etcd has {} members, {started} started (want 3 of 3)", members.len()));
        }
        if running.len() > 1 {
            problems.push(format!("etcd running with {} different cluster ids", running.len()));
        }
        let not_ready: Vec<&str> = nodes.iter().filter(|n| !n.ready).map(|n| n.name.as_str()).collect();
        if !not_ready.is_empty() {
            problems.push(format!("nodes not ready: {}", not_ready.join(", ")));
        }
        // A control-plane host whose Node object is gone (deleted, never re-registered) is not
        // "not ready": it is missing, and says so.
        let control_plane_nodes = w.control_plane_nodes().len();
        if control_plane_nodes < 3 {
            let missing: Vec<&str> = w
                .control_plane_hosts()
                .filter(|h| !w.api().nodes.values().any(|n| n.control_plane && n.internal_ip == h.ip))
                .map(|h| h.name.as_str())
                .collect();
            let which = if missing.is_empty() { String::new() } else { format!(": no Node for host {}", missing.join(", ")) };
            problems.push(format!("{control_plane_nodes} of 3 control-plane nodes registered{which}"));
        }
        for o in &operators {
            if o.reason != "AllNodesAtLatestRevision" {
                problems.push(format!("{} not at latest revision: {}", o.operator, o.message));
            }
        }
        if !w.api().quorum_guard {
            problems.push("etcd quorum guard is off".into());
        }
        let ovn_healthy = w.ovn_healthy();
        if !ovn_healthy {
            problems.push("OVN-Kubernetes control plane not healthy".into());
        }
        let without_keepalived = w.hosts_without_keepalived();
        if !without_keepalived.is_empty() {
            problems.push(format!("keepalived.yaml missing on {}: the VIPs cannot fail over there", without_keepalived.join(", ")));
        }
        if pending_csrs > 0 {
            problems.push(format!("{pending_csrs} pending CSRs"));
        }
        if let Some(h) = &w.hosted {
            problems.extend(h.problems());
        }
        let bare_metal_hosts = w.bare_metal_host_infos();
        for b in &bare_metal_hosts {
            if let Some(e) = &b.error {
                problems.push(format!("baremetalhost {}: {e}", b.name));
            }
        }
        let spare_servers = w
            .servers
            .iter()
            .filter(|(address, _)| !bare_metal_hosts.iter().any(|b| &b.bmc_address == *address))
            .map(|(address, s)| SpareServer { bmc_address: address.clone(), boot_mac_address: s.boot_mac.clone() })
            .collect();
        SimStatus {
            scenario: w.scenario.clone(),
            seed: w.seed,
            time: w.now.to_string(),
            healthy: problems.is_empty(),
            problems,
            api_available,
            etcd_cluster_id: format!("{cid:x}"),
            running_cluster_ids: running.into_iter().collect(),
            etcd_members: members,
            etcd_quorum: w.has_quorum(),
            nodes,
            operators,
            quorum_guard: w.api().quorum_guard,
            ovn_healthy,
            pending_csrs,
            data_revision: w.api().revision,
            restored_from_revision: w.restored_from_revision,
            topology: if w.hosted.is_some() { "hosted" } else { "standalone" }.into(),
            hosted_clusters: w.hosted.as_ref().map(hosted_status).unwrap_or_default(),
            objects: object_status(w),
            bare_metal_hosts,
            spare_servers,
            etcd_signer: w.api().etcd_signer.clone(),
            pending_csr_list: w
                .api()
                .csrs
                .values()
                .filter(|c| !c.approved)
                .map(|c| PendingCsr { name: c.name.clone(), node: c.node.clone(), requestor: c.requestor.clone() })
                .collect(),
            state_digest: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A control-plane host whose Node is gone is reported missing, by host name; not as an
    /// empty "nodes not ready" list.
    #[test]
    fn a_missing_control_plane_node_is_named() {
        let mut w = scenario::build("healthy", 1).unwrap();
        assert!(SimStatus::health(&w).healthy, "{:?}", SimStatus::health(&w).problems);
        w.api_mut().nodes.remove("master-1");
        let st = SimStatus::health(&w);
        assert!(!st.healthy);
        assert_eq!(st.problems[0], "2 of 3 control-plane nodes registered: no Node for host master-1");
        assert!(!st.problems.iter().any(|p| p.starts_with("nodes not ready")), "{:?}", st.problems);
    }
}

#[cfg(test)]
mod persist_tests {
    use super::*;
    use drctl_workflows::ports::{HostOp, StaticPod};

    /// A world that cannot be saved changes nothing and says so as a transient failure; once it
    /// can be saved again, the same request goes through.
    #[test]
    fn an_unsavable_world_is_a_transient_failure_that_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.world");
        let sim = Sim::scenario("healthy", 1).unwrap();
        sim.persist_to(&file).unwrap();
        let before = sim.digest();
        // A directory where the next version of the file is written: even root cannot write it.
        std::fs::create_dir(file.with_extension("tmp")).unwrap();
        let ports = sim.ports();
        let stop = HostOp::MoveManifestOut(StaticPod::Etcd);
        match ports.hosts.run("master-1", &stop) {
            Err(PortError::Transient(e)) => assert!(e.contains("w.world") && e.contains("nothing was changed"), "{e}"),
            other => panic!("expected a transient failure, got {other:?}"),
        }
        assert_eq!(sim.digest(), before, "the refused request changed the world");
        assert_eq!(Sim::load(&file).unwrap().digest(), before);
        std::fs::remove_dir(file.with_extension("tmp")).unwrap();
        assert!(ports.hosts.run("master-1", &stop).is_ok());
        assert_ne!(Sim::load(&file).unwrap().digest(), before, "the change was saved");
    }
}
