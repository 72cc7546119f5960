//! The simulated cluster: hosts with kubelets and static pods, etcd clusters with quorum, the
//! API server and the data it serves, machines, CSRs, the static-pod operators and OVN.
//!
//! Everything is plain data (serialisable, so the world outlives the runner) and every change
//! happens either through an operation (a port call) or through [`World::advance_to`], which
//! runs the cluster's own controllers deterministically from the world's seeded RNG.

use crate::csr_request::AltName;
use drctl_runtime::clock::Timestamp;
use drctl_runtime::rng::{mix, DetRng};
use drctl_workflows::ports::{CsrKind, Operator, SnapshotStatus, StaticPod};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub const SECOND: u64 = 1_000;
pub const MINUTE: u64 = 60 * SECOND;
pub const HOUR: u64 = 60 * MINUTE;

/// What lives in etcd and is served by the API. A restore replaces all of it with the
/// snapshot's copy: that is what "going back in time" means for the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiData {
    pub revision: u64,
    pub cluster_version: String,
    /// Bumped by each signer rotation; kubelet certificates from a later generation are not
    /// trusted by a cluster restored to an earlier one.
    pub signer_generation: u64,
    pub nodes: BTreeMap<String, NodeObj>,
    pub machines: BTreeMap<String, MachineObj>,
    pub csrs: BTreeMap<String, CsrObj>,
    pub operators: BTreeMap<Operator, OperatorObj>,
    /// False while `useUnsupportedUnsafeNonHANonProductionUnstableEtcd` is set.
    pub quorum_guard: bool,
    pub next_csr: u64,
    /// When this data was written to a snapshot (set on the copy a backup keeps): the time of
    /// the Node statuses a restored cluster serves until the kubelets report again.
    #[serde(default)]
    pub taken_at: Option<Timestamp>,
    /// Admission webhooks that fail closed (`failurePolicy: Fail`).
    #[serde(default)]
    pub fail_closed_webhooks: Vec<WebhookObj>,
    /// Secrets of `openshift-etcd` by name: each control-plane node's `etcd-peer-<node>`,
    /// `etcd-serving-<node>` and `etcd-serving-metrics-<node>` (the etcd operator's cert signer
    /// writes them for every control-plane node that lacks them).
    #[serde(default)]
    pub etcd_secrets: BTreeSet<String>,
    /// BareMetalHosts of `openshift-machine-api`, by name (bare metal worlds only).
    #[serde(default)]
    pub bare_metal_hosts: BTreeMap<String, crate::bare_metal::BmhObj>,
    /// BMC secrets of `openshift-machine-api` by name: a digest of what each holds (see
    /// [`crate::bare_metal::credentials_digest`]), never the password.
    #[serde(default)]
    pub bmc_secrets: BTreeMap<String, String>,
    /// The temporary etcd signer pod of OpenShift 4.1–4.3 (`openshift-config/etcd-signer`): the
    /// node it was created for.
    #[serde(default)]
    pub etcd_signer: Option<String>,
}

/// The three TLS secrets the etcd operator keeps for a control-plane node (OpenShift Container
/// Platform 4.14 Backup and restore §5.2.4.1 step 3).
pub fn etcd_node_secrets(node: &str) -> [String; 3] {
    [format!("etcd-peer-{node}"), format!("etcd-serving-{node}"), format!("etcd-serving-metrics-{node}")]
}

/// One webhook of a webhook configuration that fails closed, and the service serving it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookObj {
    /// `validatingwebhookconfiguration/<name>` or `mutatingwebhookconfiguration/<name>`.
    pub configuration: String,
    pub webhook: String,
    /// `<namespace>/<name>` of its service.
    pub service: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeObj {
    pub name: String,
    pub internal_ip: String,
    pub control_plane: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachineObj {
    pub name: String,
    pub phase: String,
    pub node: Option<String>,
    pub control_plane: bool,
    pub provider_id: Option<String>,
    pub instance_type: String,
    pub zone: String,
    pub uid: String,
    pub generation: u64,
    pub resource_version: u64,
    pub annotations: BTreeMap<String, String>,
    /// When the current phase ends (provisioning, deletion).
    pub phase_until: Option<Timestamp>,
}

impl MachineObj {
    /// A control-plane machine just created: Provisioning until `until`, no node, no provider id.
    pub fn provisioning(name: &str, instance_type: &str, zone: &str, uid: String, until: Timestamp) -> MachineObj {
        MachineObj {
            name: name.to_string(),
            phase: "Provisioning".into(),
            node: None,
            control_plane: true,
            provider_id: None,
            instance_type: instance_type.to_string(),
            zone: zone.to_string(),
            uid,
            generation: 1,
            resource_version: 1,
            annotations: Default::default(),
            phase_until: Some(until),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CsrObj {
    pub name: String,
    pub kind: CsrKind,
    pub signer: String,
    pub requestor: String,
    /// The node the certificate is for (the CSR subject).
    pub node: String,
    pub approved: bool,
    pub created_at: Timestamp,
    /// `spec.request`: the PEM PKCS#10 request, naming the node in its subject.
    #[serde(default)]
    pub request: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatorObj {
    pub force_reason: Option<String>,
    /// The reason the operator last acted on; a different spec value makes a new revision.
    pub observed_reason: Option<String>,
    pub latest_revision: u64,
    /// For etcd: the latest revision was created while the quorum guard was off, so it may be
    /// rolled out to a cluster of fewer than three members.
    pub revision_allows_non_ha: bool,
    pub node_revisions: BTreeMap<String, u64>,
    pub next_install_at: Option<Timestamp>,
    /// `NodeInstallerProgressing` (reason, message) as the operator last wrote it: it lags
    /// behind the revisions, so right after a new revision it still says the old one is
    /// everywhere (`AllNodesAtLatestRevision`).
    #[serde(default)]
    pub condition: Option<(String, String)>,
    /// When the operator writes the condition again.
    #[serde(default)]
    pub condition_at: Option<Timestamp>,
}

/// A file on a host or in the backup location.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SimFile {
    Snapshot {
        status: SnapshotStatus,
        data: Box<ApiData>,
    },
    /// The static pod resources, which include the etcd encryption configuration (a secret).
    StaticResources {
        cluster_version: String,
        #[serde(default)]
        encryption_key: String,
    },
    Info(String),
    /// Bytes that are no simulated file of the kinds above (a copy cut short, a corrupt one).
    Bytes(Vec<u8>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Container {
    Starting {
        at: Timestamp,
    },
    Running,
    /// etcd refusing to start (cluster-id mismatch, missing membership).
    CrashLoop,
    Stopping {
        at: Timestamp,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DataDir {
    pub cluster_id: u64,
    pub member_id: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub ip: String,
    pub machine: String,
    pub powered: bool,
    pub kubelet_running: bool,
    /// Signer generation of the kubelet client certificate; `None` once the PKI was removed.
    pub kubelet_cert_gen: Option<u64>,
    pub kubelet_serving: bool,
    /// The kubelet (re)registers its node object when it can.
    pub needs_register: bool,
    pub release_version: String,
    pub manifests: BTreeSet<StaticPod>,
    /// Manifests moved out to /tmp.
    pub moved_manifests: BTreeSet<StaticPod>,
    pub containers: BTreeMap<StaticPod, Container>,
    pub etcd_data: Option<DataDir>,
    pub etcd_data_aside: Vec<DataDir>,
    pub files: BTreeMap<String, SimFile>,
    pub dirs: BTreeSet<String>,
    pub addresses: Vec<(String, String)>,
    /// Cluster id the OVN north/southbound databases belong to; `None` once removed.
    pub ovn_db: Option<u64>,
    pub markers: BTreeSet<String>,
    pub shutdown_at: Option<Timestamp>,
    /// `cluster-restore.sh` still running after the connection that started it dropped.
    #[serde(default)]
    pub restore_running: Option<RestoreRun>,
    /// A worker (compute) host: a kubelet and no control-plane static pods, never etcd.
    #[serde(default)]
    pub worker: bool,
    /// The data directory at `/var/lib/etcd` is corrupt: etcd crashes reading it, over and over.
    /// Moving it aside (or a restore replacing it) leaves a fresh one.
    #[serde(default)]
    pub etcd_data_corrupt: bool,
    /// When the kubelet's client and serving certificates expire (None: not within any run).
    /// Past it the API refuses the kubelet, which asks for new ones through the bootstrap
    /// credentials (a node-bootstrapper CSR, then a serving CSR).
    #[serde(default)]
    pub kubelet_cert_expires_at: Option<Timestamp>,
    /// Someone powers the machine on (outside the cluster) at this moment.
    #[serde(default)]
    pub power_on_at: Option<Timestamp>,
    /// OpenShift 4.1–4.3: the etcd DNS name (`etcd-N.<cluster domain>`) the `etcd-member` pod's
    /// setup found for this host and wrote to `/run/etcd/environment` (None: not set up).
    #[serde(default)]
    pub etcd_dns_name: Option<String>,
}

/// How long the cluster machine approver takes to sign a CSR it approves (after a restore its
/// pod comes back with the API and relists: not at once).
const MACHINE_APPROVER_DELAY: std::time::Duration = std::time::Duration::from_secs(90);

impl Host {
    /// A host that just booted: powered, its kubelet running with a client certificate of signer
    /// generation `cert_gen`, only its own address, nothing of the control plane yet.
    pub fn booted(name: &str, ip: &str, machine: &str, cert_gen: u64, release_version: &str) -> Host {
        Host {
            name: name.into(),
            ip: ip.into(),
            machine: machine.into(),
            powered: true,
            kubelet_running: true,
            kubelet_cert_gen: Some(cert_gen),
            kubelet_serving: true,
            needs_register: false,
            release_version: release_version.into(),
            manifests: BTreeSet::new(),
            moved_manifests: BTreeSet::new(),
            containers: BTreeMap::new(),
            etcd_data: None,
            etcd_data_aside: vec![],
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
            addresses: vec![(ip.into(), "br-ex".into())],
            ovn_db: None,
            markers: BTreeSet::new(),
            shutdown_at: None,
            restore_running: None,
            worker: false,
            etcd_data_corrupt: false,
            kubelet_cert_expires_at: None,
            power_on_at: None,
            etcd_dns_name: None,
        }
    }
}

/// A restore running on a host on its own: it finishes at `until` (and writes its fence).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRun {
    pub dir: String,
    pub fence: String,
    pub until: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EtcdCluster {
    /// member id -> host name.
    pub members: BTreeMap<u64, String>,
    pub data: ApiData,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OvnRole {
    Master,
    Node,
    /// OVN-Kubernetes interconnect: a replica of the `ovnkube-control-plane` Deployment.
    ControlPlane,
}

/// The cluster network plugin and its layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkType {
    /// OVN-Kubernetes with central databases (`ovnkube-master` DaemonSet, raft nbdb/sbdb).
    #[default]
    OvnCentral,
    /// OVN-Kubernetes interconnect: local databases on every node (`/var/lib/ovn-ic/etc`).
    OvnIc,
    /// OpenShift SDN: no OVN at all.
    Sdn,
}

impl NetworkType {
    /// The OVN pods every control-plane node runs.
    pub fn ovn_roles(self) -> &'static [OvnRole] {
        match self {
            NetworkType::OvnCentral => &[OvnRole::Master, OvnRole::Node],
            NetworkType::OvnIc => &[OvnRole::ControlPlane, OvnRole::Node],
            NetworkType::Sdn => &[],
        }
    }

    /// `network.config/cluster` `status.networkType`.
    pub fn status_type(self) -> &'static str {
        match self {
            NetworkType::OvnCentral | NetworkType::OvnIc => "OVNKubernetes",
            NetworkType::Sdn => "OpenShiftSDN",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OvnPod {
    pub node: String,
    pub role: OvnRole,
    /// `Running`, `Pending`, `CrashLoopBackOff`.
    pub phase: String,
    pub started_at: Timestamp,
    pub start_at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub from: Timestamp,
    pub until: Timestamp,
}

impl Window {
    pub fn covers(&self, t: Timestamp) -> bool {
        self.from <= t && t < self.until
    }
}

/// A window of virtual time on one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostWindow {
    pub host: String,
    pub window: Window,
}

/// API requests in `window` fail with HTTP `code` (429, 500, 503 or 504), `percent` of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrors {
    pub window: Window,
    pub code: u16,
    pub percent: u8,
}

/// Everything drawn from the delay distributions in `window` takes `factor_percent`% as long.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slowdown {
    pub window: Window,
    pub factor_percent: u32,
}

/// SSH connections to `host` in `window` are dropped mid-command, `percent` of them; the
/// command may or may not have taken effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshDrops {
    pub host: String,
    pub window: Window,
    pub percent: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EtcdErrorKind {
    /// `etcdserver: no leader` (an election in progress).
    NoLeader,
    /// `etcdserver: request timed out` (a proposal not committed in time).
    RequestTimedOut,
}

impl EtcdErrorKind {
    pub fn message(self) -> &'static str {
        match self {
            EtcdErrorKind::NoLeader => "etcdserver: no leader",
            EtcdErrorKind::RequestTimedOut => "etcdserver: request timed out",
        }
    }
}

/// Requests that reach etcd in `window` (through the API server, etcdctl, cluster-backup.sh)
/// fail with `kind`, `percent` of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdErrors {
    pub window: Window,
    pub kind: EtcdErrorKind,
    pub percent: u8,
}

/// Faults injected into the world, all from the seed or from explicit options (see
/// [`crate::faults::FaultSchedule`], which describes them relative to a run's start).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    pub api_outages: Vec<Window>,
    /// host -> windows in which SSH to it fails.
    pub ssh_outages: BTreeMap<String, Vec<Window>>,
    /// Hosts whose disk is full for good.
    pub disk_full: BTreeSet<String>,
    #[serde(default)]
    pub api_errors: Vec<ApiErrors>,
    /// API responses slowed down.
    #[serde(default)]
    pub api_slow: Vec<Slowdown>,
    #[serde(default)]
    pub ssh_drops: Vec<SshDrops>,
    /// The etcd member on `host` is down (container crashed) in the window, then restarts.
    #[serde(default)]
    pub etcd_down: Vec<HostWindow>,
    #[serde(default)]
    pub etcd_errors: Vec<EtcdErrors>,
    /// Disk full on `host` in the window.
    #[serde(default)]
    pub disk_full_windows: Vec<HostWindow>,
    /// Slow operations: machine provisioning, pod start, revision rollout, ...
    #[serde(default)]
    pub slow_ops: Vec<Slowdown>,
    /// Object-store requests failing with `503 SlowDown`.
    #[serde(default)]
    pub s3_errors: Vec<S3Errors>,
}

/// Object-store requests in `window` fail with `503 SlowDown`, `percent` of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Errors {
    pub window: Window,
    pub percent: u8,
}

impl Faults {
    /// Every moment at which some fault starts or ends (the controllers react to some).
    pub fn boundaries(&self) -> impl Iterator<Item = Timestamp> + '_ {
        let w = self
            .api_outages
            .iter()
            .chain(self.ssh_outages.values().flatten())
            .chain(self.api_errors.iter().map(|e| &e.window))
            .chain(self.api_slow.iter().map(|e| &e.window))
            .chain(self.ssh_drops.iter().map(|e| &e.window))
            .chain(self.etcd_down.iter().map(|e| &e.window))
            .chain(self.etcd_errors.iter().map(|e| &e.window))
            .chain(self.disk_full_windows.iter().map(|e| &e.window))
            .chain(self.slow_ops.iter().map(|e| &e.window))
            .chain(self.s3_errors.iter().map(|e| &e.window));
        w.flat_map(|w| [w.from, w.until])
    }

    /// When the last fault window ends (`None` without windows).
    pub fn last_end(&self) -> Option<Timestamp> {
        self.boundaries().max()
    }

    /// Whether any fault window covers `t`.
    pub fn active_at(&self, t: Timestamp) -> bool {
        let covers = |w: &Window| w.covers(t);
        self.api_outages.iter().any(covers)
            || self.ssh_outages.values().flatten().any(covers)
            || self.api_errors.iter().any(|e| covers(&e.window))
            || self.api_slow.iter().any(|e| covers(&e.window))
            || self.ssh_drops.iter().any(|e| covers(&e.window))
            || self.etcd_down.iter().any(|e| covers(&e.window))
            || self.etcd_errors.iter().any(|e| covers(&e.window))
            || self.disk_full_windows.iter().any(|e| covers(&e.window))
            || self.slow_ops.iter().any(|e| covers(&e.window))
            || self.s3_errors.iter().any(|e| covers(&e.window))
    }

    pub fn etcd_down(&self, host: &str, t: Timestamp) -> bool {
        self.etcd_down.iter().any(|e| e.host == host && e.window.covers(t))
    }

    pub fn disk_full(&self, host: &str, t: Timestamp) -> bool {
        self.disk_full.contains(host) || self.disk_full_windows.iter().any(|e| e.host == host && e.window.covers(t))
    }

    fn slow_factor(list: &[Slowdown], t: Timestamp) -> u64 {
        list.iter().filter(|s| s.window.covers(t)).map(|s| s.factor_percent as u64).max().unwrap_or(100)
    }
}

/// What an operation did to the cluster, recorded when it actually changed something (a
/// repeated operation that finds its work done records nothing). The chaos harness checks its
/// safety invariants against this log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EffectKind {
    ManifestMovedOut(StaticPod),
    ManifestMovedIn(StaticPod),
    EtcdDataMovedAside,
    AddressRemoved(String),
    KubeletPkiRemoved,
    KubeletRestarted,
    OvnDatabasesRemoved,
    HostShutdown,
    /// `cluster-restore.sh`: a new etcd cluster; `machine` is the recovery host's machine.
    Restore {
        cluster_id: u64,
        machine: String,
    },
    BackupWritten,
    BackupStored,
    NodeDeleted,
    PodDeleted,
    CsrApproved,
    /// A machine was asked to go; `node` is the node it ran.
    MachineDeleted {
        node: Option<String>,
    },
    MachineCreated,
    QuorumGuard {
        enabled: bool,
    },
    ForceRedeployment(Operator),
    /// Two etcd clusters serve writes at once (`clusters`: their ids): the restored one and an
    /// old one whose members were never stopped. Not an operation's effect but its consequence,
    /// recorded by the world when it first happens.
    SplitBrain {
        clusters: Vec<u64>,
    },
    /// A hosted etcd member's PVC was deleted (target: `cpns/data-etcd-N`); `member_healthy`:
    /// its member was serving at that moment.
    HostedEtcdPvcDeleted {
        member_healthy: bool,
    },
    /// A Deployment of a control-plane namespace was scaled (target: `cpns/name`).
    ControlPlaneScaled {
        replicas: u32,
    },
    /// `etcdctl snapshot save` in a hosted etcd pod (target: `cpns/pod`); `writers_ready`: the
    /// etcd writers' ready pods at that moment.
    HostedEtcdSnapshotSaved {
        writers_ready: u32,
    },
    /// An object was written to the object store (target: `bucket/key`).
    ObjectPut,
    /// An object was deleted from the object store (target: `bucket/key`).
    ObjectDeleted,
    /// A bare-metal host was deprovisioned (its disks wiped) because its machine was deleted.
    BareMetalHostDeprovisioned,
    /// A BareMetalHost object was deleted (target: its name).
    BareMetalHostDeleted,
    /// A BareMetalHost object was created.
    BareMetalHostCreated,
    /// A BMC credentials secret was written (target: its name).
    BmcSecretWritten,
    /// A machine stuck in deletion lost its finalizers (target: the machine).
    MachineFinalizersRemoved,
    /// A secret of `openshift-etcd` was deleted.
    SecretDeleted,
    /// An etcd member was removed; counts are of the cluster right after.
    MemberRemoved {
        members_after: usize,
        healthy_after: usize,
    },
    MemberAdded,
    /// OpenShift 4.1–4.3 `etcd-member-recover.sh` added a member; `unstarted_before`: members of
    /// the cluster that had been added and not started yet when it did.
    LegacyMemberAdded {
        unstarted_before: usize,
    },
    /// The temporary etcd signer pod was created (target: its node).
    SignerStarted,
    /// The temporary etcd signer pod was deleted.
    SignerRemoved,
    /// `spec.pausedUntil` of a HostedCluster or NodePool written (None: cleared).
    Paused {
        paused_until: Option<String>,
    },
    /// `spec.replicas` of a NodePool written.
    NodePoolScaled {
        replicas: u32,
    },
}

impl EffectKind {
    /// Effects that destroy or take away (what a guard and a gate must come before).
    pub fn destructive(&self) -> bool {
        use EffectKind::*;
        matches!(
            self,
            ManifestMovedOut(_)
                | EtcdDataMovedAside
                | AddressRemoved(_)
                | KubeletPkiRemoved
                | OvnDatabasesRemoved
                | HostShutdown
                | Restore { .. }
                | NodeDeleted
                | MachineDeleted { .. }
                | BareMetalHostDeprovisioned
                | BareMetalHostDeleted
                | MachineFinalizersRemoved
                | SecretDeleted
                | QuorumGuard { .. }
                | MemberRemoved { .. }
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    pub at: Timestamp,
    pub kind: EffectKind,
    /// The host or object it was done to.
    pub target: String,
}

/// Bookkeeping of the controllers' work, not part of the world's data: lets [`World::reconcile`]
/// see whether a pass changed anything without re-serialising the world, and `advance_to` skip
/// the controllers when nothing changed and nothing is due.
#[derive(Clone, Debug, Default)]
pub struct Tracking {
    changes: u64,
    settled_at: Option<u64>,
    /// The host names, kept between passes to spare an allocation per controller and pass.
    host_names: Vec<String>,
    /// `api_available()` as of (changes, now): the controllers ask it many times per pass.
    api_cache: std::cell::Cell<Option<(u64, Timestamp, bool)>>,
}

impl PartialEq for Tracking {
    fn eq(&self, _: &Tracking) -> bool {
        true
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupSet {
    pub files: BTreeMap<String, SimFile>,
    pub info: Option<drctl_workflows::ports::BackupInfo>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct World {
    pub scenario: String,
    pub seed: u64,
    pub now: Timestamp,
    pub rng: DetRng,
    pub installed_at: Timestamp,
    pub hosts: BTreeMap<String, Host>,
    pub etcd: BTreeMap<u64, EtcdCluster>,
    pub current_cluster: u64,
    pub ovn_pods: BTreeMap<String, OvnPod>,
    pub ovn_master_ips: BTreeSet<String>,
    pub cno_sync_at: Option<Timestamp>,
    /// When an ovnkube-master last started on freshly removed databases; every ovnkube-node
    /// must have restarted after that to use the new OVN control plane.
    pub ovn_reset_at: Timestamp,
    pub backups: BTreeMap<String, BackupSet>,
    pub faults: Faults,
    /// Revision of the snapshot the current cluster was restored from, if any.
    pub restored_from_revision: Option<u64>,
    pub next_ip: u32,
    /// Notable changes, in order: the world's own event log.
    pub log: Vec<String>,
    /// What operations did, in order (see [`EffectKind`]).
    #[serde(default)]
    pub effects: Vec<Effect>,
    /// Virtual IPs keepalived manages (API, ingress): a host whose keepalived runs takes over
    /// a VIP no running keepalived holds.
    #[serde(default)]
    pub vips: Vec<String>,
    /// A VIP nobody holds, and when a running keepalived takes it (the VRRP master-down
    /// interval after the last holder stopped advertising).
    #[serde(default)]
    pub vip_takeover_at: BTreeMap<String, Timestamp>,
    /// Secret values the world holds (the etcd encryption key in the static-resources backup
    /// file): none of them may ever appear in a run's record or history.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Where fault decisions (which request fails) are drawn from, apart from the controllers'
    /// RNG so that a fault does not change how the cluster itself behaves.
    #[serde(default)]
    pub fault_rng: Option<DetRng>,
    /// The hosted-control-plane objects this cluster holds as a management cluster (the
    /// `hosted` topology), if any.
    #[serde(default)]
    pub hosted: Option<crate::hosted::Hosted>,
    /// The S3 object store the hosted procedures back up to (the `hosted` topology).
    #[serde(default)]
    pub object_store: Option<crate::object_store::ObjectStoreWorld>,
    /// What drctl's own machine can reach, apart from the cluster's health (a broken VPN or
    /// resolver): a cluster can be healthy while drctl sees nothing of it.
    #[serde(default)]
    pub drctl_view: DrctlView,
    /// How the cluster was installed: decides what happens to a deleted control-plane machine.
    #[serde(default)]
    pub platform: Platform,
    /// Since when the API has answered without a break (None while it is down): the node
    /// lifecycle controller needs its grace period after that before it marks silent nodes.
    #[serde(default)]
    pub api_up_since: Option<Timestamp>,
    /// The network plugin: decides which of the runbook's network steps apply.
    #[serde(default)]
    pub network: NetworkType,
    /// Inventory entries that name another node than the host's own (host → node), as an
    /// operator's `--hosts` list may: the simulator's inventory reports these.
    #[serde(default)]
    pub inventory_nodes: BTreeMap<String, String>,
    /// Inventory entries whose SSH address is not the node's InternalIP (host → address), as on
    /// hosts reached over a management network.
    #[serde(default)]
    pub inventory_addresses: BTreeMap<String, String>,
    /// The physical servers of a bare metal world, by BMC address (empty elsewhere).
    #[serde(default)]
    pub servers: BTreeMap<String, crate::bare_metal::Server>,
    /// The OpenShift 4.1–4.3 control plane: etcd is the `etcd-member` static pod the Machine
    /// Config Operator lays down, there is no etcd operator, and recovery goes through the
    /// scripts it installs (see [`crate::legacy`]).
    #[serde(default)]
    pub legacy_etcd: bool,
    #[serde(skip)]
    pub track: Tracking,
}

/// The installation's platform, as it matters to control-plane machines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    /// Installer-provisioned on a cloud (AWS): Machine objects, re-created by hand.
    #[default]
    CloudIpi,
    /// As `CloudIpi` with an Active control plane machine set: its controller creates a
    /// replacement for every control-plane machine that is deleted.
    CloudIpiCpms,
    /// Installer-provisioned bare metal: each machine is bound to a BareMetalHost; deleting the
    /// machine deprovisions (wipes) the host, and a re-created machine finds no host to claim.
    BareMetalIpi,
    /// User-provisioned: no Machine objects for the control plane.
    Upi,
}

impl Platform {
    /// `infrastructure/cluster` `status.platformStatus.type`.
    pub fn infrastructure_type(self) -> &'static str {
        match self {
            Platform::CloudIpi | Platform::CloudIpiCpms => "AWS",
            Platform::BareMetalIpi => "BareMetal",
            Platform::Upi => "None",
        }
    }
}

/// The network between drctl and the cluster, as drctl's machine sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrctlView {
    /// The API's name does not resolve from drctl's machine.
    #[serde(default)]
    pub api_unresolvable: bool,
    /// Hosts drctl cannot reach over SSH (they may be up and reach each other).
    #[serde(default)]
    pub ssh_blocked: BTreeSet<String>,
    /// drctl's kubeconfig holds an OAuth token (`oc login`) issued after the last backup, not a
    /// client certificate: once etcd is restored, the API no longer knows it (401).
    #[serde(default)]
    pub token_kubeconfig: bool,
}

/// How many world changes `advance_to` may process in one call before it is a bug.
const MAX_TICKS_PER_ADVANCE: usize = 1_000_000;

impl World {
    // -----------------------------------------------------------------------------------------
    // Small helpers
    // -----------------------------------------------------------------------------------------

    pub fn note(&mut self, what: impl AsRef<str>) {
        let line = format!("{} {}", self.now, what.as_ref());
        self.log.push(line);
        self.touch();
    }

    /// Record that the world changed. Every mutation by the controllers and the port
    /// operations calls this (directly or through [`World::host_mut`], [`World::api_mut`],
    /// [`World::note`], [`World::delay`]); code that edits fields directly and then calls
    /// [`World::pass_time`] must call it too. [`World::advance_to`] assumes nothing.
    pub fn touch(&mut self) {
        self.track.changes += 1;
    }

    /// The names of the hosts, to iterate while changing them; give them back with
    /// [`World::put_host_names`].
    fn take_host_names(&mut self) -> Vec<String> {
        let mut names = std::mem::take(&mut self.track.host_names);
        if !names.iter().eq(self.hosts.keys()) {
            names = self.hosts.keys().cloned().collect();
        }
        names
    }

    fn put_host_names(&mut self, names: Vec<String>) {
        self.track.host_names = names;
    }

    fn settled(&self) -> bool {
        self.track.settled_at == Some(self.track.changes)
    }

    /// Record an effect of an operation (see [`EffectKind`]).
    pub fn effect(&mut self, kind: EffectKind, target: impl Into<String>) {
        self.effects.push(Effect { at: self.now, kind, target: target.into() });
    }

    /// A moment `lo..=hi` ms from now (times the slow-operations factor, if one is active).
    pub fn delay(&mut self, lo_ms: u64, hi_ms: u64) -> Timestamp {
        let d = self.rng.range(lo_ms, hi_ms);
        let f = Faults::slow_factor(&self.faults.slow_ops, self.now);
        self.touch();
        self.now.plus(std::time::Duration::from_millis(d * f / 100))
    }

    /// How long an API request takes now: `base` times the slow-response factor, if any.
    pub fn api_latency(&self, base_ms: u64) -> u64 {
        base_ms * Faults::slow_factor(&self.faults.api_slow, self.now) / 100
    }

    /// A fault decision: true with probability `percent`%, from the fault RNG.
    pub fn fault_roll(&mut self, percent: u8) -> bool {
        let seed = self.seed;
        let rng = self.fault_rng.get_or_insert_with(|| DetRng::derive(seed, b"faults"));
        // Not a change the controllers could see: the world stays settled.
        rng.chance(percent as u64, 100)
    }

    /// A fault decision among `n` outcomes, from the fault RNG.
    pub fn fault_pick(&mut self, n: u64) -> u64 {
        let seed = self.seed;
        self.fault_rng.get_or_insert_with(|| DetRng::derive(seed, b"faults")).range(0, n.max(1) - 1)
    }

    /// The HTTP status an API request answered now fails with, if an error window says so.
    pub fn api_error_now(&mut self) -> Option<u16> {
        let now = self.now;
        let active: Vec<(u16, u8)> = self.faults.api_errors.iter().filter(|e| e.window.covers(now)).map(|e| (e.code, e.percent)).collect();
        active.into_iter().find(|(_, pct)| self.fault_roll(*pct)).map(|(code, _)| code)
    }

    /// The etcd error a request reaching etcd now fails with, if an error window says so.
    pub fn etcd_error_now(&mut self) -> Option<EtcdErrorKind> {
        let now = self.now;
        let active: Vec<(EtcdErrorKind, u8)> =
            self.faults.etcd_errors.iter().filter(|e| e.window.covers(now)).map(|e| (e.kind, e.percent)).collect();
        active.into_iter().find(|(_, pct)| self.fault_roll(*pct)).map(|(k, _)| k)
    }

    /// Whether an object-store request now fails with `503 SlowDown`.
    pub fn s3_error_now(&mut self) -> bool {
        let now = self.now;
        let active: Vec<u8> = self.faults.s3_errors.iter().filter(|e| e.window.covers(now)).map(|e| e.percent).collect();
        active.into_iter().any(|pct| self.fault_roll(pct))
    }

    /// Whether an SSH command to `host` now is dropped mid-command.
    pub fn ssh_drop_now(&mut self, host: &str) -> bool {
        let now = self.now;
        let active: Vec<u8> = self.faults.ssh_drops.iter().filter(|e| e.host == host && e.window.covers(now)).map(|e| e.percent).collect();
        active.into_iter().any(|pct| self.fault_roll(pct))
    }

    pub fn api(&self) -> &ApiData {
        &self.etcd[&self.current_cluster].data
    }

    pub fn api_mut(&mut self) -> &mut ApiData {
        self.touch();
        let c = self.current_cluster;
        let d = &mut self.etcd.get_mut(&c).expect("current cluster exists").data;
        d.revision += 1;
        d
    }

    /// A host, to change it.
    pub fn host_mut(&mut self, name: &str) -> &mut Host {
        self.touch();
        self.hosts.get_mut(name).unwrap_or_else(|| panic!("host {name} exists"))
    }

    pub fn new_id(&mut self) -> u64 {
        self.touch();
        // Non-zero, as etcd ids are.
        self.rng.next_u64() | 1
    }

    pub fn alloc_ip(&mut self) -> String {
        self.touch();
        self.next_ip += 1;
        format!("10.0.0.{}", self.next_ip)
    }

    // -----------------------------------------------------------------------------------------
    // Derived state: what the cluster looks like right now
    // -----------------------------------------------------------------------------------------

    pub fn member_started(&self, host: &Host) -> bool {
        let Some(d) = host.etcd_data else { return false };
        host.powered
            && host.kubelet_running
            && host.containers.get(&StaticPod::Etcd) == Some(&Container::Running)
            && d.cluster_id == self.current_cluster
            && self.etcd[&self.current_cluster].members.get(&d.member_id) == Some(&host.name)
    }

    pub fn started_members(&self) -> usize {
        self.hosts.values().filter(|h| self.member_started(h)).count()
    }

    /// Whether member `id` of the current cluster, on `host`, runs and is connected.
    pub fn member_running(&self, id: u64, host: &str) -> bool {
        self.hosts.get(host).is_some_and(|h| self.member_started(h) && h.etcd_data.is_some_and(|d| d.member_id == id))
    }

    /// `etcdctl member remove`: an id that is no longer a member is success (`Ok(false)`).
    /// With `strict` (etcd's default `--strict-reconfig-check`), refused when the members left
    /// would not have a quorum of started ones, or when the member is running and removing it
    /// would leave fewer connected members than a quorum. Without it (a test-only bypass), the
    /// removal happens whatever it leaves.
    pub fn remove_member(&mut self, id: u64, strict: bool) -> Result<bool, String> {
        let cid = self.current_cluster;
        let members: Vec<(u64, String)> = self.etcd[&cid].members.iter().map(|(m, h)| (*m, h.clone())).collect();
        let Some((_, host)) = members.iter().find(|(m, _)| *m == id).cloned() else { return Ok(false) };
        if strict {
            let left = members.len() - 1;
            let started_left = members.iter().filter(|(m, h)| *m != id && self.member_running(*m, h)).count();
            if started_left < left / 2 + 1 {
                return Err("etcdserver: re-configuration failed due to not enough started members".into());
            }
            let active = members.iter().filter(|(m, h)| self.member_running(*m, h)).count();
            if self.member_running(id, &host) && active - 1 < 1 + (members.len() - 1) / 2 {
                return Err("etcdserver: unhealthy cluster".into());
            }
        }
        self.etcd.get_mut(&cid).expect("cluster").members.remove(&id);
        self.api_mut(); // membership change is a raft entry: revision moves
        self.note(format!("etcd member {id:x} removed"));
        let members_after = self.etcd[&cid].members.len();
        let healthy_after = self.healthy_voting_members();
        self.effect(EffectKind::MemberRemoved { members_after, healthy_after }, format!("{id:x}"));
        Ok(true)
    }

    /// Members of the current cluster whose etcd is running (all members vote: no learners).
    pub fn healthy_voting_members(&self) -> usize {
        self.started_members()
    }

    pub fn has_quorum(&self) -> bool {
        let n = self.etcd[&self.current_cluster].members.len();
        n > 0 && self.started_members() > n / 2
    }

    /// Whether `h` runs an etcd member of the cluster its data belongs to, whichever cluster
    /// that is: a member of an old cluster that nobody stopped keeps running it after a restore
    /// made a new one (etcd knows nothing of the other).
    fn runs_member_of(&self, h: &Host) -> Option<u64> {
        let d = h.etcd_data?;
        let member = self.etcd.get(&d.cluster_id).is_some_and(|c| c.members.get(&d.member_id) == Some(&h.name));
        (member && h.powered && h.containers.get(&StaticPod::Etcd) == Some(&Container::Running)).then_some(d.cluster_id)
    }

    /// Whether etcd cluster `cluster_id` has a quorum of running members (it serves writes).
    pub fn cluster_serves(&self, cluster_id: u64) -> bool {
        let Some(c) = self.etcd.get(&cluster_id) else { return false };
        let running = self.hosts.values().filter(|h| self.runs_member_of(h) == Some(cluster_id)).count();
        !c.members.is_empty() && running > c.members.len() / 2
    }

    /// The etcd clusters that serve writes right now: more than one is split brain.
    pub fn serving_clusters(&self) -> Vec<u64> {
        self.etcd.keys().copied().filter(|c| self.cluster_serves(*c)).collect()
    }

    /// What answers at `address`'s etcd ports, as `/health` would report it.
    pub fn probe_etcd(&self, address: &str) -> drctl_workflows::ports::EtcdProbe {
        use drctl_workflows::ports::EtcdProbe;
        // etcd listens on every address of its host: the InternalIP and a management address.
        let at = |h: &&Host| h.ip == address || self.inventory_addresses.get(&h.name).is_some_and(|a| a == address);
        let Some(h) = self.hosts.values().find(at) else { return EtcdProbe::NoAnswer };
        match self.runs_member_of(h) {
            None => EtcdProbe::NoAnswer,
            Some(c) if self.cluster_serves(c) => EtcdProbe::Healthy,
            Some(_) => EtcdProbe::Unhealthy(r#"{"health":"false","reason":"RAFT NO LEADER"}"#.into()),
        }
    }

    /// Keep [`World::api_up_since`] as the API comes and goes.
    fn watch_api_up(&mut self) {
        let up = self.api_available();
        match (up, self.api_up_since) {
            (true, None) => {
                self.api_up_since = Some(self.now);
                self.touch();
            }
            (false, Some(_)) => {
                self.api_up_since = None;
                self.touch();
            }
            _ => {}
        }
    }

    /// A Node's Ready status as the API serves it, with when it was written. After a restore the
    /// API serves the snapshot's statuses: a kubelet that cannot report (its certificate was
    /// signed after the backup) leaves its node Ready as of the backup until the node lifecycle
    /// controller, a grace period after the API came back, marks it not ready.
    pub fn node_status(&self, node: &str) -> (bool, Timestamp) {
        const NODE_MONITOR_GRACE_MS: u64 = 100 * SECOND;
        if self.node_ready(node) {
            return (true, self.now);
        }
        let restored = self.restored_from_revision.is_some();
        let grace_over = self.api_up_since.map(|t| t.plus(std::time::Duration::from_millis(NODE_MONITOR_GRACE_MS)));
        match (restored, grace_over, self.api().taken_at) {
            (true, Some(over), Some(taken)) if self.now < over => (true, taken),
            (_, Some(over), _) => (false, over.min(self.now)),
            _ => (false, self.now),
        }
    }

    /// Record split brain the moment a second cluster starts serving.
    fn watch_split_brain(&mut self) {
        let serving = self.serving_clusters();
        if serving.len() < 2 {
            return; // the common case, checked at every settled reconcile: no log scan
        }
        let already = self.effects.iter().rev().find_map(|e| match &e.kind {
            EffectKind::SplitBrain { clusters } => Some(clusters.clone()),
            _ => None,
        });
        if already.as_ref() != Some(&serving) {
            self.note(format!(
                "split brain: etcd clusters {} all serve writes",
                serving.iter().map(|c| format!("{c:x}")).collect::<Vec<_>>().join(", ")
            ));
            self.effect(EffectKind::SplitBrain { clusters: serving }, "etcd");
        }
    }

    pub fn kas_running(&self) -> bool {
        self.hosts.values().any(|h| h.powered && h.containers.get(&StaticPod::KubeApiServer) == Some(&Container::Running))
    }

    pub fn in_api_outage(&self) -> bool {
        self.faults.api_outages.iter().any(|w| w.covers(self.now))
    }

    pub fn api_available(&self) -> bool {
        !self.in_api_outage() && self.kas_running() && self.has_quorum()
    }

    /// [`World::api_available`] for the controllers, remembered until the world changes (every
    /// change the controllers and the ports make is tracked, see [`World::touch`]).
    fn api_available_tracked(&self) -> bool {
        let key = (self.track.changes, self.now);
        match self.track.api_cache.get() {
            Some((c, t, v)) if (c, t) == key => v,
            _ => {
                let v = self.api_available();
                self.track.api_cache.set(Some((key.0, key.1, v)));
                v
            }
        }
    }

    /// [`World::node_ready`] for the controllers.
    fn node_ready_tracked(&self, node: &str) -> bool {
        match self.hosts.get(node) {
            Some(h) => h.powered && h.kubelet_running && self.cert_valid(h) && self.api_available_tracked(),
            None => false,
        }
    }

    /// When the signer of the kubelets' certificates expires: a year after the installation (the
    /// cluster rotates it; a cluster kept off past it cannot).
    pub fn kubelet_signer_not_after(&self) -> Timestamp {
        self.installed_at.plus(std::time::Duration::from_secs(365 * 24 * 3600))
    }

    pub fn cert_valid(&self, h: &Host) -> bool {
        matches!(h.kubelet_cert_gen, Some(g) if g <= self.api().signer_generation) && h.kubelet_cert_expires_at.is_none_or(|t| self.now < t)
    }

    /// The control-plane hosts (every host but the workers).
    pub fn control_plane_hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.values().filter(|h| !h.worker)
    }

    pub fn node_ready(&self, node: &str) -> bool {
        match self.hosts.get(node) {
            Some(h) => h.powered && h.kubelet_running && self.cert_valid(h) && self.api_available(),
            None => false,
        }
    }

    pub fn ssh_reachable(&self, host: &str) -> bool {
        match self.hosts.get(host) {
            Some(h) => {
                h.powered
                    && !self.drctl_view.ssh_blocked.contains(host)
                    && !self.faults.ssh_outages.get(host).is_some_and(|ws| ws.iter().any(|w| w.covers(self.now)))
            }
            None => false,
        }
    }

    pub fn control_plane_nodes(&self) -> Vec<String> {
        self.api().nodes.values().filter(|n| n.control_plane).map(|n| n.name.clone()).collect()
    }

    /// `NodeInstallerProgressing` as (reason, message).
    pub fn installer_progress(&self, op: Operator) -> (String, String) {
        let o = &self.api().operators[&op];
        let mut by_rev: BTreeMap<u64, usize> = BTreeMap::new();
        for n in self.control_plane_nodes() {
            *by_rev.entry(o.node_revisions.get(&n).copied().unwrap_or(0)).or_default() += 1;
        }
        let parts: Vec<String> = by_rev.iter().map(|(r, c)| format!("{c} nodes are at revision {r}")).collect();
        let all = by_rev.len() == 1 && by_rev.contains_key(&o.latest_revision);
        let reason = if all { "AllNodesAtLatestRevision" } else { "NodeInstaller" };
        (reason.to_string(), parts.join("; "))
    }

    pub fn ovn_healthy(&self) -> bool {
        match self.network {
            NetworkType::Sdn => return true,
            NetworkType::OvnIc => return self.ovn_ic_healthy(),
            NetworkType::OvnCentral => {}
        }
        let cp: BTreeSet<String> =
            self.control_plane_nodes().into_iter().filter_map(|n| self.api().nodes.get(&n).map(|o| o.internal_ip.clone())).collect();
        if self.ovn_master_ips != cp {
            return false;
        }
        let reset = self.ovn_reset_at;
        self.ovn_pods.values().all(|p| {
            p.phase == "Running"
                && match p.role {
                    OvnRole::Master => self.hosts.get(&p.node).is_some_and(|h| h.ovn_db == Some(self.current_cluster)),
                    OvnRole::Node => p.started_at >= reset,
                    OvnRole::ControlPlane => true,
                }
        })
    }

    /// Interconnect: every node's local databases are of the current cluster (rebuilt after the
    /// restore, not the pre-restore copy) and the control-plane replicas restarted since.
    fn ovn_ic_healthy(&self) -> bool {
        let restored_at = self.effects.iter().rev().find(|e| matches!(e.kind, EffectKind::Restore { .. })).map(|e| e.at);
        self.ovn_pods.values().all(|p| {
            p.phase == "Running"
                && match p.role {
                    OvnRole::ControlPlane => restored_at.is_none_or(|t| p.started_at >= t),
                    _ => self.hosts.get(&p.node).is_some_and(|h| h.ovn_db == Some(self.current_cluster)),
                }
        })
    }

    // -----------------------------------------------------------------------------------------
    // Time: the cluster's own controllers
    // -----------------------------------------------------------------------------------------

    /// Advance virtual time to `t`, running every controller at each moment something is due.
    /// Assumes the world may have been edited directly since the controllers last ran.
    pub fn advance_to(&mut self, t: Timestamp) {
        self.touch();
        self.pass_time_to(t);
    }

    pub fn advance(&mut self, ms: u64) {
        self.touch();
        self.pass_time(ms);
    }

    /// [`World::advance_to`] for callers that record every change they make with
    /// [`World::touch`] (the port operations, the simulator's clock): the controllers run only
    /// when something changed or is due, which is what makes a simulated run cheap.
    pub fn pass_time_to(&mut self, t: Timestamp) {
        if !self.settled() {
            self.reconcile();
        }
        for _ in 0..MAX_TICKS_PER_ADVANCE {
            match self.next_due().filter(|d| *d <= t) {
                Some(d) => {
                    self.now = self.now.max(d);
                    self.reconcile();
                }
                None => {
                    self.now = self.now.max(t);
                    // Nothing the controllers do depends on time except through `next_due`:
                    // a settled world stays settled.
                    if !self.settled() {
                        self.reconcile();
                    }
                    return;
                }
            }
        }
        panic!("world did not settle while advancing to {t}: a controller keeps rescheduling itself");
    }

    pub fn pass_time(&mut self, ms: u64) {
        let t = self.now.plus(std::time::Duration::from_millis(ms));
        self.pass_time_to(t);
    }

    /// The earliest future moment at which some controller has work.
    fn next_due(&self) -> Option<Timestamp> {
        let now = self.now;
        let mut best: Option<Timestamp> = None;
        let mut see = |d: Timestamp| {
            if d > now && best.is_none_or(|b| d < b) {
                best = Some(d);
            }
        };
        for h in self.hosts.values() {
            for c in h.containers.values() {
                if let Container::Starting { at } | Container::Stopping { at } = c {
                    see(*at);
                }
            }
            if let Some(at) = h.shutdown_at {
                see(at);
            }
            if let Some(at) = h.power_on_at {
                see(at);
            }
            if let Some(r) = &h.restore_running {
                see(r.until);
            }
        }
        let api = self.api();
        for m in api.machines.values() {
            if let Some(at) = m.phase_until {
                see(at);
            }
        }
        for at in self.bare_metal_due() {
            see(at);
        }
        for c in api.csrs.values().filter(|c| self.machine_approver_signs(c)) {
            see(c.created_at.plus(MACHINE_APPROVER_DELAY));
        }
        for o in api.operators.values() {
            if let Some(at) = o.next_install_at {
                see(at);
            }
            if let Some(at) = o.condition_at {
                see(at);
            }
        }
        for p in self.ovn_pods.values() {
            if let Some(at) = p.start_at {
                see(at);
            }
        }
        if let Some(at) = self.cno_sync_at {
            see(at);
        }
        for at in self.vip_takeover_at.values() {
            see(*at);
        }
        if let Some(at) = self.hosted.as_ref().and_then(|h| h.next_due(self.now)) {
            see(at);
        }
        // The controllers see the API come and go and etcd members crash and restart.
        for w in &self.faults.api_outages {
            see(w.from);
            see(w.until);
        }
        for e in &self.faults.etcd_down {
            see(e.window.from);
            see(e.window.until);
        }
        best
    }

    /// Run every controller once at the current time until nothing changes.
    fn reconcile(&mut self) {
        for _ in 0..64 {
            let before = self.track.changes;
            self.reconcile_hosts();
            self.reconcile_kubelets();
            if self.api_available_tracked() {
                self.reconcile_bare_metal();
                self.reconcile_machines();
                self.reconcile_machine_approver();
                self.reconcile_operators();
                self.reconcile_ovn();
                self.reconcile_hosted();
                self.reconcile_node_pools();
                self.reconcile_hosted_etcds();
                self.reconcile_control_planes();
            }
            if self.track.changes == before {
                self.watch_split_brain();
                self.watch_api_up();
                self.track.settled_at = Some(self.track.changes);
                return;
            }
        }
        panic!("world reconcile did not converge at {}", self.now);
    }

    /// The HyperShift operator of a management cluster.
    fn reconcile_hosted(&mut self) {
        let now = self.now;
        let notes = match self.hosted.as_mut() {
            Some(h) => h.reconcile(now),
            None => return,
        };
        for n in notes {
            self.note(n);
        }
    }

    fn reconcile_hosts(&mut self) {
        let names = self.take_host_names();
        self.reconcile_hosts_named(&names);
        self.put_host_names(names);
        self.reconcile_keepalived();
    }

    /// VRRP: a VIP that no running keepalived holds is taken, once the master-down interval
    /// has passed (a few seconds without advertisements), by the first host (by name) whose
    /// keepalived runs. A host whose keepalived stopped may keep a stale copy until it is
    /// removed by hand (runbook step 4).
    fn reconcile_keepalived(&mut self) {
        let now = self.now;
        for i in 0..self.vips.len() {
            // A stopping keepalived still runs (and advertises) until its process exits.
            let runs = |h: &Host| {
                h.powered && matches!(h.containers.get(&StaticPod::Keepalived), Some(Container::Running | Container::Stopping { .. }))
            };
            let vip = self.vips[i].clone();
            if self.hosts.values().any(|h| runs(h) && h.addresses.iter().any(|(a, _)| *a == vip)) {
                if self.vip_takeover_at.remove(&vip).is_some() {
                    self.touch();
                }
                continue;
            }
            let Some(taker) = self.hosts.values().find(|h| runs(h)).map(|h| h.name.clone()) else { continue };
            match self.vip_takeover_at.get(&vip).copied() {
                None => {
                    let at = self.delay(3 * SECOND, 10 * SECOND);
                    self.vip_takeover_at.insert(vip, at);
                }
                Some(at) if at <= now => {
                    self.vip_takeover_at.remove(&vip);
                    self.host_mut(&taker).addresses.push((vip.clone(), "br-ex".into()));
                    self.note(format!("keepalived on {taker} took over VIP {vip}"));
                }
                Some(_) => {}
            }
        }
    }

    fn reconcile_hosts_named(&mut self, names: &[String]) {
        let now = self.now;
        for name in names {
            let name = name.as_str();
            if self.hosts[name].shutdown_at.is_some_and(|at| at <= now) {
                let h = self.host_mut(name);
                h.powered = false;
                h.shutdown_at = None;
                self.note(format!("host {name} powered off"));
            }
            if self.hosts[name].power_on_at.is_some_and(|at| at <= now) {
                let h = self.host_mut(name);
                h.powered = true;
                h.power_on_at = None;
                self.note(format!("host {name} powered on"));
            }
            if let Some(r) = self.hosts[name].restore_running.clone().filter(|r| r.until <= now) {
                self.host_mut(name).restore_running = None;
                // The script finishes as it would have with the connection up.
                match self.restore(name, &r.dir, &r.fence) {
                    Ok(_) => self.note(format!("cluster-restore.sh on {name} finished on its own (fence {})", r.fence)),
                    Err(e) => self.note(format!("cluster-restore.sh on {name} failed on its own: {e}")),
                }
            }
            let h = &self.hosts[name];
            if !h.powered {
                if !h.containers.is_empty() {
                    self.host_mut(name).containers.clear();
                }
                continue;
            }
            for pod in [
                StaticPod::Etcd,
                StaticPod::KubeApiServer,
                StaticPod::KubeControllerManager,
                StaticPod::KubeScheduler,
                StaticPod::Keepalived,
            ] {
                let h = &self.hosts[name];
                let crashed = pod == StaticPod::Etcd && self.faults.etcd_down(name, now);
                let desired = h.kubelet_running && h.manifests.contains(&pod) && !crashed;
                let cur = h.containers.get(&pod).copied();
                let can_start = pod != StaticPod::Etcd || self.etcd_can_start(h);
                let next = match (desired, cur) {
                    (true, None) => {
                        let (lo, hi) = if pod == StaticPod::KubeApiServer { (30 * SECOND, 90 * SECOND) } else { (5 * SECOND, 20 * SECOND) };
                        Some(Container::Starting { at: self.delay(lo, hi) })
                    }
                    (true, Some(Container::Stopping { .. })) => Some(Container::Starting { at: self.delay(5 * SECOND, 20 * SECOND) }),
                    (true, Some(Container::Starting { at })) if at <= now => {
                        if can_start {
                            Some(Container::Running)
                        } else {
                            Some(Container::CrashLoop)
                        }
                    }
                    (true, Some(Container::CrashLoop)) if can_start => Some(Container::Running),
                    // A running member of an older cluster is not stopped by a restore elsewhere:
                    // it goes on serving that cluster (the split brain the runbook's step 4 and
                    // the unreachable-host checks exist to prevent).
                    (true, Some(Container::Running)) if !can_start && self.runs_member_of(h).is_none() => Some(Container::CrashLoop),
                    // A corrupt data directory crashes etcd whatever cluster it belongs to.
                    (true, Some(Container::Running)) if pod == StaticPod::Etcd && h.etcd_data_corrupt => Some(Container::CrashLoop),
                    (false, Some(Container::Running | Container::Starting { .. })) => {
                        Some(Container::Stopping { at: self.delay(5 * SECOND, 40 * SECOND) })
                    }
                    (false, Some(Container::CrashLoop)) => None,
                    (false, Some(Container::Stopping { at })) if at <= now => None,
                    (_, c) => c,
                };
                if next != cur {
                    if next == Some(Container::CrashLoop) {
                        let why = self.etcd_refusal(&self.hosts[name]);
                        self.note(format!("etcd on {name} crashlooping: {why}"));
                    }
                    if crashed && cur == Some(Container::Running) {
                        self.note(format!("etcd on {name} crashed"));
                    }
                    let hm = self.host_mut(name);
                    match next {
                        Some(c) => hm.containers.insert(pod, c),
                        None => hm.containers.remove(&pod),
                    };
                }
            }
        }
    }

    fn etcd_can_start(&self, h: &Host) -> bool {
        if h.etcd_data_corrupt {
            return false;
        }
        match h.etcd_data {
            Some(d) => d.cluster_id == self.current_cluster && self.etcd[&self.current_cluster].members.get(&d.member_id) == Some(&h.name),
            None => false,
        }
    }

    /// Why etcd on `h` would refuse to run, empty when it can.
    fn etcd_refusal(&self, h: &Host) -> String {
        if h.etcd_data_corrupt && h.etcd_data.is_some() {
            return "panic: freepages: failed to get all reachable pages (page 1405: multiple references): /var/lib/etcd/member/snap/db is corrupt".into();
        }
        match h.etcd_data {
            None => "no data directory and no membership".into(),
            Some(d) if d.cluster_id != self.current_cluster => format!(
                "request cluster ID mismatch (local {:x}, cluster {:x}): member was part of a cluster that no longer exists",
                d.cluster_id, self.current_cluster
            ),
            Some(d) if self.etcd[&self.current_cluster].members.get(&d.member_id) != Some(&h.name) => {
                format!("member {:x} has been removed from the cluster", d.member_id)
            }
            Some(_) => String::new(),
        }
    }

    fn reconcile_kubelets(&mut self) {
        if !self.api_available_tracked() {
            return;
        }
        let names = self.take_host_names();
        self.reconcile_kubelets_named(&names);
        self.put_host_names(names);
    }

    fn reconcile_kubelets_named(&mut self, names: &[String]) {
        for name in names {
            let name = name.as_str();
            let h = &self.hosts[name];
            if !h.powered || !h.kubelet_running {
                continue;
            }
            if h.kubelet_cert_expires_at.is_some_and(|t| t <= self.now) {
                // Refused with an expired certificate, the kubelet bootstraps again.
                let hm = self.host_mut(name);
                hm.kubelet_cert_gen = None;
                hm.kubelet_serving = false;
                hm.kubelet_cert_expires_at = None;
                self.note(format!("kubelet on {name}: its certificates expired; bootstrapping again"));
            }
            let h = &self.hosts[name];
            if h.kubelet_cert_gen.is_none() {
                // Bootstrap: ask for a client certificate, use it once approved.
                let csr = self.own_csr(CsrKind::NodeBootstrapper, name);
                match csr {
                    Some(true) => {
                        let gen = self.api().signer_generation;
                        let hm = self.host_mut(name);
                        hm.kubelet_cert_gen = Some(gen);
                        hm.kubelet_serving = false;
                        hm.needs_register = true;
                        self.note(format!("kubelet on {name} got a client certificate"));
                    }
                    Some(false) => {}
                    None => self.new_csr(CsrKind::NodeBootstrapper, name),
                }
                continue;
            }
            if !self.cert_valid(h) {
                continue; // rejected by the API: the node stays NotReady until its PKI is redone
            }
            let (needs_register, serving) = (h.needs_register, h.kubelet_serving);
            if needs_register && !self.api().nodes.contains_key(name) {
                let (ip, control_plane) = (h.ip.clone(), !h.worker);
                self.api_mut().nodes.insert(name.to_string(), NodeObj { name: name.to_string(), internal_ip: ip, control_plane });
                self.note(format!("node {name} registered"));
            }
            if needs_register {
                self.host_mut(name).needs_register = false;
            }
            if !serving {
                let csr = self.own_csr(CsrKind::KubeletServing, name);
                match csr {
                    Some(true) => self.host_mut(name).kubelet_serving = true,
                    Some(false) => {}
                    None => self.new_csr(CsrKind::KubeletServing, name),
                }
            }
        }
    }

    /// The request a kubelet of `node` files for a certificate of `kind`: a serving certificate
    /// is asked for the node's hostname and address, as its kubelet reports them.
    fn kubelet_request(&self, kind: CsrKind, node: &str) -> String {
        let ip = self.hosts.get(node).and_then(|h| h.ip.parse::<std::net::Ipv4Addr>().ok());
        let names = match (kind, ip) {
            (CsrKind::KubeletServing, Some(ip)) => vec![AltName::Dns(node), AltName::Ip(ip)],
            _ => vec![],
        };
        crate::csr_request::kubelet_request_pem(node, &names)
    }

    /// Whether the CSR this kubelet filed is approved (`None`: it filed none). A kubelet knows
    /// its own request; another CSR naming the same node is not its.
    fn own_csr(&self, kind: CsrKind, node: &str) -> Option<bool> {
        let request = self.kubelet_request(kind, node);
        self.api().csrs.values().find(|c| c.kind == kind && c.node == node && c.request == request).map(|c| c.approved)
    }

    pub(crate) fn new_csr(&mut self, kind: CsrKind, node: &str) {
        let n = self.api().next_csr;
        let suffix = format!("{:05x}", mix(self.seed, format!("csr{n}").as_bytes()) & 0xfffff);
        let name = format!("csr-{suffix}");
        let (signer, requestor) = match kind {
            CsrKind::NodeBootstrapper => (
                "kubernetes.io/kube-apiserver-client-kubelet",
                "system:serviceaccount:openshift-machine-config-operator:node-bootstrapper".to_string(),
            ),
            _ => ("kubernetes.io/kubelet-serving", format!("system:node:{node}")),
        };
        let request = self.kubelet_request(kind, node);
        let now = self.now;
        let api = self.api_mut();
        api.next_csr += 1;
        api.csrs.insert(
            name.clone(),
            CsrObj {
                name: name.clone(),
                kind,
                signer: signer.into(),
                requestor,
                node: node.into(),
                approved: false,
                created_at: now,
                request,
            },
        );
        self.note(format!("csr {name} ({kind:?}) pending for {node}"));
    }

    fn reconcile_machines(&mut self) {
        self.sync_instance_states();
        let now = self.now;
        let due: Vec<(String, String, Option<String>)> = self
            .api()
            .machines
            .values()
            .filter(|m| m.phase_until.is_some_and(|u| u <= now))
            .map(|m| (m.name.clone(), m.phase.clone(), m.node.clone()))
            .collect();
        for (name, phase, node) in due {
            match phase.as_str() {
                "Provisioning" if self.platform == Platform::BareMetalIpi => self.claim_bare_metal_host(&name),
                "Provisioning" => {
                    let next = self.delay(2 * MINUTE, 4 * MINUTE);
                    let mm = self.api_mut().machines.get_mut(&name).expect("machine");
                    mm.phase = "Provisioned".into();
                    mm.phase_until = Some(next);
                    mm.provider_id = Some(format!("sim:///{}", name));
                    self.note(format!("machine {name} provisioned"));
                }
                "Provisioned" => self.machine_joins(&name),
                "Deleting" => {
                    let host = node.or_else(|| self.hosts.values().find(|h| h.machine == name).map(|h| h.name.clone()));
                    // The etcd machine-deletion hook: a machine whose host runs a member of the
                    // current cluster is not removed until that member is gone.
                    if let Some(h) = host.as_ref().and_then(|h| self.hosts.get(h)) {
                        if self.member_started(h) {
                            continue;
                        }
                    }
                    self.api_mut().machines.remove(&name);
                    if let Some(h) = host {
                        self.hosts.remove(&h);
                        self.api_mut().nodes.remove(&h);
                        self.ovn_pods.retain(|_, p| p.node != h);
                        self.note(format!("machine {name} deleted; host {h} terminated"));
                    }
                }
                _ => {}
            }
        }
    }

    /// The machine controller records each cloud instance's state on its machine: `stopped`
    /// once the host is powered off, `running` again when it is back.
    fn sync_instance_states(&mut self) {
        const INSTANCE_STATE: &str = "machine.openshift.io/instance-state";
        let changes: Vec<(String, &'static str)> = self
            .api()
            .machines
            .values()
            .filter_map(|m| {
                let host = self.hosts.values().find(|h| h.machine == m.name)?;
                // On bare metal the state is the BareMetalHost's provisioning state, whatever
                // the power (a dead server still shows `externally provisioned`).
                let bmh = self.api().bare_metal_hosts.values().find(|b| b.consumer.as_deref() == Some(m.name.as_str()));
                let state = match (self.platform, bmh) {
                    (Platform::BareMetalIpi, Some(b)) if b.state == "externally provisioned" => "externally provisioned",
                    (Platform::BareMetalIpi, Some(b)) if b.state == "provisioned" => "provisioned",
                    (Platform::BareMetalIpi, _) => return None,
                    _ if host.powered => "running",
                    _ => "stopped",
                };
                (m.annotations.get(INSTANCE_STATE).map(String::as_str) != Some(state)).then(|| (m.name.clone(), state))
            })
            .collect();
        for (name, state) in changes {
            self.api_mut().machines.get_mut(&name).expect("machine").annotations.insert(INSTANCE_STATE.into(), state.into());
        }
    }

    /// `forceRedeploymentReason` of `op` set to `reason` (a repeat of the same value is a no-op);
    /// `via` says how it was written, for the world's log.
    pub fn force_redeployment(&mut self, op: Operator, reason: &str, via: &str) {
        if self.api().operators[&op].force_reason.as_deref() != Some(reason) {
            self.api_mut().operators.get_mut(&op).expect("operator").force_reason = Some(reason.to_string());
            self.note(format!("{op}: forceRedeploymentReason={reason}{via}"));
            self.effect(EffectKind::ForceRedeployment(op), op.resource());
        }
    }

    /// The cluster machine approver of an installer-provisioned cluster signs, soon after it
    /// appears, a kubelet-serving CSR whose node belongs to a Machine and which asks for nothing
    /// but that node's name and address. A user-provisioned cluster has none: its serving CSRs
    /// wait for a person (the runbook's step 11.4).
    pub fn machine_approver_signs(&self, c: &CsrObj) -> bool {
        let api = self.api();
        let (Some(node), false) = (api.nodes.get(&c.node), c.approved || c.kind != CsrKind::KubeletServing) else { return false };
        let own = |n: &String| *n == node.name || *n == node.internal_ip;
        self.platform != Platform::Upi
            && api.machines.values().any(|m| m.node.as_deref() == Some(c.node.as_str()))
            && drctl_workflows::csr::requested_names(c.request.as_bytes()).is_ok_and(|n| !n.is_empty() && n.iter().all(own))
    }

    fn reconcile_machine_approver(&mut self) {
        let now = self.now;
        let due: Vec<String> = self
            .api()
            .csrs
            .values()
            .filter(|c| self.machine_approver_signs(c) && c.created_at.plus(MACHINE_APPROVER_DELAY) <= now)
            .map(|c| c.name.clone())
            .collect();
        for name in due {
            self.api_mut().csrs.get_mut(&name).expect("csr").approved = true;
            self.note(format!("machine approver approved csr {name}"));
        }
    }

    /// What the platform does when a control-plane machine is deleted: a control plane machine
    /// set creates its replacement at once (next free index, same zone and type); on bare
    /// metal the host behind it is deprovisioned.
    pub fn machine_deleted_by_platform(&mut self, m: &MachineObj) {
        if !m.control_plane {
            return;
        }
        match self.platform {
            Platform::CloudIpiCpms => {
                let taken: Vec<String> = self.api().machines.keys().cloned().collect();
                let Some(new_name) = drctl_workflows::machines::next_machine_name(&m.name, taken.iter().map(String::as_str)) else {
                    return;
                };
                let until = self.delay(3 * MINUTE, 6 * MINUTE);
                let uid = format!("{:032x}", self.rng.next_u64() as u128);
                let replacement = MachineObj::provisioning(&new_name, &m.instance_type, &m.zone, uid, until);
                self.api_mut().machines.insert(new_name.clone(), replacement);
                self.note(format!("control plane machine set: created {new_name} to replace {}", m.name));
            }
            // Modelled bare metal: the BareMetalHost bound to the machine is released.
            Platform::BareMetalIpi if !self.servers.is_empty() => {
                self.release_bare_metal_host(&m.name);
            }
            Platform::BareMetalIpi => {
                let host = m.node.clone().unwrap_or_else(|| m.name.clone());
                self.note(format!("baremetalhost of machine {} deprovisioning: disks of {host} wiped", m.name));
                self.effect(EffectKind::BareMetalHostDeprovisioned, host);
            }
            Platform::CloudIpi | Platform::Upi => {}
        }
    }

    /// What a new control-plane host starts with: the control-plane static pods the installers
    /// lay down (etcd waits for membership) and, where keepalived manages VIPs, the keepalived
    /// manifest the machine config writes.
    fn joining_manifests(&self) -> BTreeSet<StaticPod> {
        let mut m: BTreeSet<StaticPod> = [StaticPod::KubeApiServer, StaticPod::KubeControllerManager, StaticPod::KubeScheduler].into();
        if !self.vips.is_empty() {
            m.insert(StaticPod::Keepalived);
        }
        m
    }

    /// Control-plane hosts in the cluster (powered, their node registered) without the keepalived
    /// manifest on a cluster whose VIPs keepalived manages: the VIPs cannot fail over to them,
    /// and the machine config daemon finds its file missing.
    pub fn hosts_without_keepalived(&self) -> Vec<String> {
        if self.vips.is_empty() {
            return vec![];
        }
        self.control_plane_hosts()
            .filter(|h| h.powered && self.api().nodes.contains_key(&h.name) && !h.manifests.contains(&StaticPod::Keepalived))
            .map(|h| h.name.clone())
            .collect()
    }

    /// A provisioned machine boots, its kubelet joins (the machine approver signs its CSRs) and
    /// the installers lay down the control-plane static pods, except etcd which needs membership.
    fn machine_joins(&mut self, machine: &str) {
        let host_name = self
            .bare_metal_host_name_of(machine)
            .unwrap_or_else(|| machine.rsplit('-').take(2).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("-"));
        let ip = self.alloc_ip();
        let gen = self.api().signer_generation;
        let version = self.api().cluster_version.clone();
        let host = Host {
            manifests: self.joining_manifests(),
            ovn_db: Some(self.current_cluster),
            ..Host::booted(&host_name, &ip, machine, gen, &version)
        };
        self.hosts.insert(host_name.clone(), host);
        let now = self.now;
        let api = self.api_mut();
        api.nodes.insert(host_name.clone(), NodeObj { name: host_name.clone(), internal_ip: ip, control_plane: true });
        let m = api.machines.get_mut(machine).expect("machine");
        m.phase = "Running".into();
        m.phase_until = None;
        m.node = Some(host_name.clone());
        for role in self.network.ovn_roles() {
            let pod = ovn_pod_name(*role, &host_name);
            self.ovn_pods
                .insert(pod, OvnPod { node: host_name.clone(), role: *role, phase: "Running".into(), started_at: now, start_at: None });
        }
        self.note(format!("machine {machine} running; node {host_name} joined"));
    }

    fn reconcile_operators(&mut self) {
        // OpenShift 4.1–4.3 has no etcd operator: nobody signs etcd certificates into secrets.
        if !self.legacy_etcd {
            self.sign_etcd_certificates();
        }
        self.roll_out_revisions();
        self.write_operator_conditions();
    }

    /// The etcd operator's cert signer: every control-plane node has its peer, serving and
    /// metrics secrets (a deleted one is signed again).
    fn sign_etcd_certificates(&mut self) {
        let nodes: Vec<String> = self.api().nodes.values().filter(|n| n.control_plane).map(|n| n.name.clone()).collect();
        for node in nodes {
            let missing: Vec<String> = etcd_node_secrets(&node).into_iter().filter(|s| !self.api().etcd_secrets.contains(s)).collect();
            if !missing.is_empty() {
                self.api_mut().etcd_secrets.extend(missing);
                self.note(format!("etcd operator: certificates for {node} signed"));
            }
        }
    }

    /// `EtcdMembersAvailable` of `etcds/cluster`, as the etcd operator words it: `N of M members
    /// are available, NAME is unhealthy` (or `NAME has not started` for a member whose etcd was
    /// never up yet), `M members are available` when all are. True while etcd has quorum.
    pub fn etcd_members_available(&self) -> (bool, String) {
        let members = &self.etcd[&self.current_cluster].members;
        let mut down = vec![];
        for (id, host) in members {
            if self.member_running(*id, host) {
                continue;
            }
            let starting =
                self.hosts.get(host).is_some_and(|h| matches!(h.containers.get(&StaticPod::Etcd), Some(Container::Starting { .. })));
            down.push(if starting { format!("{host} has not started") } else { format!("{host} is unhealthy") });
        }
        let message = match down.is_empty() {
            true => format!("{} members are available", members.len()),
            false => format!("{} of {} members are available, {}", members.len() - down.len(), members.len(), down.join(", ")),
        };
        (self.has_quorum(), message)
    }

    /// The operators write `NodeInstallerProgressing` a while after the revisions change.
    fn write_operator_conditions(&mut self) {
        let now = self.now;
        for op in Operator::ALL {
            let live = self.installer_progress(op);
            let o = &self.api().operators[&op];
            match (o.condition.as_ref() == Some(&live), o.condition_at) {
                (true, Some(_)) => self.api_mut().operators.get_mut(&op).expect("operator").condition_at = None,
                (true, None) => {}
                (false, None) => {
                    let at = self.delay(5 * SECOND, 40 * SECOND);
                    self.api_mut().operators.get_mut(&op).expect("operator").condition_at = Some(at);
                }
                (false, Some(at)) if at <= now => {
                    let oo = self.api_mut().operators.get_mut(&op).expect("operator");
                    oo.condition = Some(live);
                    oo.condition_at = None;
                }
                (false, Some(_)) => {}
            }
        }
    }

    fn roll_out_revisions(&mut self) {
        let now = self.now;
        for op in self.operators_present() {
            let o = &self.api().operators[&op];
            let (reason_changed, latest, next_at, non_ha) =
                (o.force_reason != o.observed_reason, o.latest_revision, o.next_install_at, o.revision_allows_non_ha);
            if reason_changed {
                let allows_non_ha = !self.api().quorum_guard;
                let next = self.delay(20 * SECOND, 60 * SECOND);
                let oo = self.api_mut().operators.get_mut(&op).expect("operator");
                oo.observed_reason = oo.force_reason.clone();
                oo.latest_revision += 1;
                oo.revision_allows_non_ha = allows_non_ha;
                oo.next_install_at = Some(next);
                let rev = oo.latest_revision;
                self.note(format!("{op}: revision {rev} created (non-HA allowed: {allows_non_ha})"));
                continue;
            }
            // The first control-plane node (by name) behind the latest revision and Ready.
            let behind: Option<String> = self
                .api()
                .nodes
                .values()
                .filter(|n| n.control_plane)
                .find(|n| o.node_revisions.get(&n.name).copied().unwrap_or(0) < latest && self.node_ready_tracked(&n.name))
                .map(|n| n.name.clone());
            match (behind, next_at) {
                (None, Some(_)) => {
                    self.api_mut().operators.get_mut(&op).expect("operator").next_install_at = None;
                }
                (Some(_), None) => {
                    let next = self.delay(30 * SECOND, 90 * SECOND);
                    self.api_mut().operators.get_mut(&op).expect("operator").next_install_at = Some(next);
                }
                (Some(node), Some(at)) if at <= now => {
                    if op == Operator::Etcd && !self.install_etcd_on(&node, non_ha) {
                        // Blocked by the quorum guard: check again later.
                        let next = self.delay(60 * SECOND, 120 * SECOND);
                        self.api_mut().operators.get_mut(&op).expect("operator").next_install_at = Some(next);
                        continue;
                    }
                    // The installer pod lays the revision's static pod manifest down on the host
                    // (a manifest moved aside by hand is replaced by the new revision's).
                    let pod = match op {
                        Operator::Etcd => StaticPod::Etcd,
                        Operator::KubeApiServer => StaticPod::KubeApiServer,
                        Operator::KubeControllerManager => StaticPod::KubeControllerManager,
                        Operator::KubeScheduler => StaticPod::KubeScheduler,
                    };
                    if self.hosts.get(&node).is_some_and(|h| !h.manifests.contains(&pod)) {
                        self.host_mut(&node).manifests.insert(pod);
                    }
                    let next = self.delay(60 * SECOND, 150 * SECOND);
                    let oo = self.api_mut().operators.get_mut(&op).expect("operator");
                    oo.node_revisions.insert(node.clone(), latest);
                    oo.next_install_at = Some(next);
                    self.note(format!("{op}: node {node} at revision {latest}"));
                }
                _ => {}
            }
        }
    }

    /// The static-pod operators the cluster runs: all four, but no etcd operator before 4.4.
    pub fn operators_present(&self) -> Vec<Operator> {
        Operator::ALL.into_iter().filter(|op| *op != Operator::Etcd || !self.legacy_etcd).collect()
    }

    /// The etcd installer on `node`: scale etcd up to it when it has no member. Returns false
    /// when the quorum guard forbids it.
    fn install_etcd_on(&mut self, node: &str, allows_non_ha: bool) -> bool {
        let Some(h) = self.hosts.get(node).cloned() else { return false };
        let cid = self.current_cluster;
        let is_member = matches!(h.etcd_data, Some(d) if d.cluster_id == cid && self.etcd[&cid].members.contains_key(&d.member_id));
        if !is_member && h.etcd_data.is_none() {
            let members = self.etcd[&cid].members.len();
            // A new member counts toward the quorum before it has started: with the guard on,
            // the operator adds one only when the members already started stay a quorum of the
            // larger cluster (scaling 2 -> 3), never 1 -> 2 (OpenShift Container Platform 4.14
            // Backup and restore §5.2.4.1 step 2, §5.4.2.2 step 17).
            let after = members + 1;
            let quorum_after = after / 2 + 1;
            let keeps_quorum = self.started_members() >= quorum_after;
            let guard_allows = allows_non_ha || !self.api().quorum_guard || (members >= 2 && keeps_quorum);
            if members < 3 && !guard_allows {
                self.note(format!("etcd: not scaling to {node}: quorum guard requires 3 members, have {members}"));
                return false;
            }
            if !etcd_node_secrets(node).iter().all(|s| self.api().etcd_secrets.contains(s)) {
                self.note(format!("etcd: not scaling to {node}: its peer and serving certificates are not signed yet"));
                return false;
            }
            let id = self.new_id();
            self.etcd.get_mut(&cid).expect("cluster").members.insert(id, node.to_string());
            let hm = self.host_mut(node);
            hm.etcd_data = Some(DataDir { cluster_id: cid, member_id: id });
            self.note(format!("etcd: member {id:x} added for {node}"));
        }
        self.host_mut(node).manifests.insert(StaticPod::Etcd);
        true
    }

    /// Internal IPs of the control-plane nodes, sorted and without repeats.
    fn control_plane_ips(&self) -> Vec<&str> {
        let mut ips: Vec<&str> = self.api().nodes.values().filter(|n| n.control_plane).map(|n| n.internal_ip.as_str()).collect();
        ips.sort_unstable();
        ips.dedup();
        ips
    }

    fn reconcile_ovn(&mut self) {
        let now = self.now;
        // The cluster network operator re-renders the ovnkube-master daemonset some minutes
        // after the set of control-plane nodes changes (there is none with interconnect).
        match self.cno_sync_at {
            _ if self.network != NetworkType::OvnCentral => {}
            Some(at) if at <= now => {
                self.ovn_master_ips = self.control_plane_ips().into_iter().map(str::to_string).collect();
                self.cno_sync_at = None;
                self.note("cno: ovnkube-master daemonset re-rendered");
            }
            None if !self.ovn_master_ips.iter().map(String::as_str).eq(self.control_plane_ips()) => {
                self.cno_sync_at = Some(self.delay(5 * MINUTE, 10 * MINUTE));
            }
            _ => {}
        }
        let api = self.api();
        let work: Vec<String> = self
            .ovn_pods
            .iter()
            .filter(|(_, p)| !api.nodes.contains_key(&p.node) || p.start_at.is_some_and(|at| at <= now))
            .map(|(n, _)| n.clone())
            .collect();
        let current = self.current_cluster;
        for name in work {
            self.touch();
            let (node, role) = {
                let p = &self.ovn_pods[&name];
                (p.node.clone(), p.role)
            };
            if !self.api().nodes.contains_key(&node) {
                self.ovn_pods.remove(&name);
                continue;
            }
            // Central: a master with the pre-restore raft databases crashloops. Interconnect: a
            // node pod with its pre-restore local databases does.
            let db_role = match self.network {
                NetworkType::OvnIc => OvnRole::Node,
                _ => OvnRole::Master,
            };
            let stale = role == db_role && self.hosts.get(&node).is_some_and(|h| h.ovn_db.is_some_and(|c| c != current));
            let pm = self.ovn_pods.get_mut(&name).expect("pod");
            pm.start_at = None;
            pm.started_at = now;
            pm.phase = if stale { "CrashLoopBackOff".into() } else { "Running".into() };
            if role == db_role && !stale {
                let fresh = self.hosts.get(&node).is_some_and(|h| h.ovn_db.is_none());
                if let Some(h) = self.hosts.get_mut(&node) {
                    h.ovn_db = Some(current);
                }
                if fresh {
                    self.ovn_reset_at = now;
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Operations the ports perform
    // -----------------------------------------------------------------------------------------

    /// `cluster-restore.sh` on `host`: a new single-member cluster from the snapshot in `dir`.
    pub fn restore(&mut self, host: &str, dir: &str, fence: &str) -> Result<bool, String> {
        if self.hosts.get(host).ok_or_else(|| format!("no host {host}"))?.markers.contains(fence) {
            return Ok(false);
        }
        self.restore_snapshot(host, dir)?;
        self.host_mut(host).markers.insert(fence.to_string());
        Ok(true)
    }

    /// What `cluster-restore.sh <dir>` itself does on `host` (without drctl's fence).
    pub fn restore_snapshot(&mut self, host: &str, dir: &str) -> Result<(), String> {
        let h = self.hosts.get(host).ok_or_else(|| format!("no host {host}"))?.clone();
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let in_dir: Vec<(&String, &SimFile)> = h.files.iter().filter(|(p, _)| p.starts_with(&prefix)).collect();
        // As the real script does (`ls -vd …/snapshot*.db | tail -1`, and the same for the
        // resources): the newest of each, chosen independently.
        let snap = in_dir.iter().filter(|(p, _)| is_snapshot_name(&p[prefix.len()..])).max_by_key(|(p, _)| p.as_str());
        let res = in_dir.iter().filter(|(p, _)| is_resources_name(&p[prefix.len()..])).max_by_key(|(p, _)| p.as_str());
        let (Some((_, SimFile::Snapshot { status, data })), Some(_)) = (snap, res) else {
            return Err(format!("{dir} must contain snapshot_<datetimestamp>.db and static_kuberesources_<datetimestamp>.tar.gz"));
        };
        let (status, data) = (status.clone(), data.clone());
        let cid = self.new_id();
        let mid = self.new_id();
        let hm = self.host_mut(host);
        for p in [StaticPod::Etcd, StaticPod::KubeApiServer, StaticPod::KubeControllerManager, StaticPod::KubeScheduler] {
            hm.manifests.remove(&p);
            hm.containers.remove(&p);
        }
        if let Some(d) = hm.etcd_data.take() {
            hm.etcd_data_aside.push(d);
        }
        hm.etcd_data_corrupt = false;
        hm.etcd_data = Some(DataDir { cluster_id: cid, member_id: mid });
        hm.manifests.extend([StaticPod::Etcd, StaticPod::KubeApiServer, StaticPod::KubeControllerManager, StaticPod::KubeScheduler]);
        let mut data = *data;
        data.revision = status.revision;
        self.etcd.insert(cid, EtcdCluster { members: [(mid, host.to_string())].into(), data });
        self.current_cluster = cid;
        self.restored_from_revision = Some(status.revision);
        self.note(format!("restore on {host}: new etcd cluster {cid:x} from snapshot at revision {}", status.revision));
        self.effect(EffectKind::Restore { cluster_id: cid, machine: h.machine.clone() }, host);
        Ok(())
    }

    /// `cluster-backup.sh` on `host` into `dir`: returns the two file names.
    pub fn backup(&mut self, host: &str, dir: &str) -> Result<(String, String), String> {
        self.backup_files(host, dir, true)
    }

    /// `cluster-backup.sh` cut short (its SSH connection died) after `etcdctl snapshot save`
    /// wrote the snapshot and before the static resources were archived.
    pub fn backup_cut_short(&mut self, host: &str, dir: &str) -> Result<String, String> {
        self.backup_files(host, dir, false).map(|(snap, _)| snap)
    }

    fn backup_files(&mut self, host: &str, dir: &str, with_resources: bool) -> Result<(String, String), String> {
        let h = self.hosts.get(host).ok_or_else(|| format!("no host {host}"))?.clone();
        if !self.member_started(&h) || !self.has_quorum() {
            return Err("etcdserver: request timed out".into());
        }
        let ts = self.now.to_string();
        // 2026-01-02T03:04:05.000Z -> 2026-01-02_030405
        let stamp = format!("{}_{}", &ts[..10], ts[11..19].replace(':', ""));
        let snap = format!("snapshot_{stamp}.db");
        let res = format!("static_kuberesources_{stamp}.tar.gz");
        if self.faults.disk_full(host, self.now) {
            return Err(format!("write {dir}/{snap}.part: no space left on device"));
        }
        let mut data = self.api().clone();
        // The hash is of the cluster's data, not of when it was taken.
        let bytes = rmp_serde::to_vec(&data).expect("encodes");
        let status = SnapshotStatus {
            hash: mix(self.seed, &bytes) & 0xffff_ffff,
            revision: data.revision,
            total_key: (data.nodes.len() + data.machines.len() + data.csrs.len() + data.operators.len()) as u64 * 97 + 11_000,
            total_size: bytes.len() as u64 * 4096,
        };
        data.taken_at = Some(self.now);
        let version = data.cluster_version.clone();
        let encryption_key = self.secrets.first().cloned().unwrap_or_default();
        let hm = self.host_mut(host);
        hm.dirs.insert(dir.to_string());
        hm.files.insert(format!("{dir}/{snap}"), SimFile::Snapshot { status, data: Box::new(data) });
        if with_resources {
            hm.files.insert(format!("{dir}/{res}"), SimFile::StaticResources { cluster_version: version, encryption_key });
        }
        self.note(format!("backup on {host}: {dir}/{snap}"));
        self.effect(EffectKind::BackupWritten, host);
        Ok((snap, res))
    }
}

pub fn ovn_pod_name(role: OvnRole, node: &str) -> String {
    match role {
        OvnRole::Master => format!("ovnkube-master-{node}"),
        OvnRole::Node => format!("ovnkube-node-{node}"),
        OvnRole::ControlPlane => format!("ovnkube-control-plane-{node}"),
    }
}

pub use drctl_workflows::backup_files::{is_resources as is_resources_name, is_snapshot as is_snapshot_name};
