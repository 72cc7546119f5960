//! The ports: domain-level operations the procedures act through. The simulator and the real
//! adapters (kube-rs, openssh, etcdctl) implement them; procedures never see either.
//!
//! Every failure is classified where it enters, into [`PortError`], with the real error text
//! preserved so an operator recognises it.

use drctl_runtime::StepError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A failure at a port, classified by the adapter that met it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum PortError {
    /// Passing trouble: connection refused/reset, timeout, 429/5xx, etcd "no leader" or
    /// "request timed out", SSH connection lost. Retried with backoff.
    #[error("{0}")]
    Transient(String),
    /// The thing asked for does not exist (404, no such file).
    #[error("not found: {0}")]
    NotFound(String),
    /// The world refused: forbidden, invalid, conflict that re-reading will not fix, a command
    /// that ran and failed. Halts the run with this as evidence.
    #[error("{0}")]
    Permanent(String),
}

impl PortError {
    pub fn is_transient(&self) -> bool {
        matches!(self, PortError::Transient(_))
    }
    /// Into the engine's classification, naming what was being done.
    pub fn during(self, what: impl Into<String>) -> StepError {
        let what = what.into();
        match self {
            PortError::Transient(e) => StepError::Transient { what, error: e },
            PortError::NotFound(e) => StepError::Permanent { reason: format!("{what}: not found: {e}"), evidence: vec![] },
            PortError::Permanent(e) => StepError::Permanent { reason: format!("{what}: {e}"), evidence: vec![] },
        }
    }
}

pub type PortResult<T> = Result<T, PortError>;

// ---------------------------------------------------------------------------------------------
// Cluster API (kube-apiserver)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub ready: bool,
    pub control_plane: bool,
    pub internal_ip: String,
    /// `node.kubernetes.io/unreachable` and friends.
    pub taints: Vec<String>,
    /// When the Ready condition was last written (the later of its heartbeat and transition
    /// times). Right after a restore the API serves the backup's Node statuses: a status
    /// older than the restore says nothing about the node now.
    #[serde(default)]
    pub status_since: Option<drctl_runtime::clock::Timestamp>,
    /// Every address in the Node's status (InternalIP, ExternalIP, Hostname, InternalDNS...).
    #[serde(default)]
    pub addresses: Vec<String>,
}

impl NodeInfo {
    /// The status was written at or after `t` (a status without times counts as current).
    pub fn reported_since(&self, t: Option<drctl_runtime::clock::Timestamp>) -> bool {
        match (self.status_since, t) {
            (Some(since), Some(t)) => since >= t,
            _ => true,
        }
    }
}

/// Names a closed set of Kubernetes words, keeping any other the server may send as it is.
macro_rules! kube_words {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
            /// A value this build does not know, as the server sent it.
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)*
                    $name::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> $name {
                match s {
                    $($text => $name::$variant,)*
                    other => $name::Other(other.to_string()),
                }
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> $name {
                $name::from(s.as_str())
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.as_str().to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

kube_words! {
    /// A pod's state as the STATUS column of `oc get pods` shows it: the phase, or what keeps a
    /// container from running.
    PodStatus {
        Pending = "Pending",
        Running = "Running",
        Succeeded = "Succeeded",
        Failed = "Failed",
        Unknown = "Unknown",
        /// A container restarts again and again.
        CrashLoopBackOff = "CrashLoopBackOff",
        /// A container exited with an error.
        Error = "Error",
        /// Deleted, still shutting down.
        Terminating = "Terminating",
    }
}

kube_words! {
    /// `status.phase` of a `machine.openshift.io/v1beta1` Machine (empty before the controller
    /// set one).
    MachinePhase {
        NotSet = "",
        Provisioning = "Provisioning",
        Provisioned = "Provisioned",
        Running = "Running",
        Deleting = "Deleting",
        Failed = "Failed",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    pub name: String,
    pub node: String,
    pub phase: PodStatus,
    pub ready: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CsrKind {
    /// `kubernetes.io/kube-apiserver-client-kubelet` requested by the node-bootstrapper.
    NodeBootstrapper,
    /// `kubernetes.io/kubelet-serving` requested by `system:node:<name>`.
    KubeletServing,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsrInfo {
    pub name: String,
    pub signer: String,
    pub requestor: String,
    pub kind: CsrKind,
    /// The node the CSR is for: from the request's subject, and for kubelet-serving CSRs only
    /// when the requestor is that same node.
    pub node: Option<String>,
    /// The subject alternative names the request asks for (`None`: the request cannot be read).
    #[serde(default)]
    pub names: Option<Vec<String>>,
    pub pending: bool,
    pub approved: bool,
    /// `spec.usages` (`client auth`, `server auth`, `digital signature`, …).
    #[serde(default)]
    pub usages: Vec<String>,
    /// `metadata.creationTimestamp`.
    #[serde(default)]
    pub created: Option<drctl_runtime::clock::Timestamp>,
}

/// The `machine.openshift.io/v1beta1` Machine, as much as the procedures need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineInfo {
    pub name: String,
    pub phase: MachinePhase,
    pub node: Option<String>,
    pub control_plane: bool,
    /// The whole object as JSON (spec, metadata, status), for saving and re-creating.
    pub manifest: serde_json::Value,
}

/// The kind of credential drctl's kubeconfig holds: a restore needs one that survives going
/// back in time (a client certificate), not a token stored in etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Credential {
    ClientCertificate,
    /// A bearer token (`oc login`): an OAuth access token lives in etcd.
    BearerToken,
    /// An exec plugin or auth provider: it hands out tokens.
    Plugin,
    /// No user credential at all.
    Anonymous,
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Credential::ClientCertificate => "a client certificate",
            Credential::BearerToken => "a bearer token",
            Credential::Plugin => "an exec plugin or auth provider",
            Credential::Anonymous => "no credential",
        })
    }
}

/// An admission webhook that rejects what it cannot review: `failurePolicy: Fail` (the
/// `admissionregistration.k8s.io/v1` default). While its service is down it can reject the pods
/// a restore recreates (OpenShift Container Platform 4.14 Backup and restore §5.4.2.2, step 15).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookInfo {
    /// `validatingwebhookconfiguration/<name>` or `mutatingwebhookconfiguration/<name>`.
    pub configuration: String,
    /// The webhook's own name within the configuration.
    pub webhook: String,
    /// Where it is served: `service <namespace>/<name>` or `url <url>`.
    pub target: String,
}

impl std::fmt::Display for WebhookInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} webhook {} ({})", self.configuration, self.webhook, self.target)
    }
}

/// Which branch of the runbook's network steps applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkLayout {
    /// `OVNKubernetes`, `OpenShiftSDN`, …
    pub network_type: String,
    /// OVN-Kubernetes with interconnect: a local database per node and an
    /// `ovnkube-control-plane` Deployment instead of the `ovnkube-master` DaemonSet.
    pub ovn_interconnect: bool,
}

impl NetworkLayout {
    pub fn is_ovn(&self) -> bool {
        self.network_type == "OVNKubernetes"
    }
}

/// What decides how lost control-plane machines come back (4.14 Backup and restore §5.4.2.2
/// step 16 and its notes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineLayout {
    /// `AWS`, `Azure`, `GCP`, `VSphere`, `OpenStack`, `BareMetal`, `None` (user-provisioned), …
    pub platform: String,
    /// A control plane machine set in state `Active`: its controller replaces a deleted
    /// control-plane machine by itself.
    pub control_plane_machine_set_active: bool,
}

/// A `metal3.io/v1alpha1` BareMetalHost in `openshift-machine-api`, as much as the bare metal
/// member replacement needs (OpenShift Container Platform 4.14 Backup and restore §5.2.4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BareMetalHostInfo {
    pub name: String,
    /// `status.provisioning.state`: `registering`, `inspecting`, `available`, `provisioning`,
    /// `provisioned`, `externally provisioned`, `deprovisioning`, … (empty before the operator
    /// wrote one).
    pub state: String,
    /// `status.errorType` and `status.errorMessage`, when the operator reports one.
    pub error: Option<String>,
    /// `spec.consumerRef.name`: the machine the host is bound to.
    pub consumer: Option<String>,
    /// `spec.bmc.address`.
    pub bmc_address: String,
    /// `spec.bootMACAddress`.
    pub boot_mac_address: String,
    /// `status.poweredOn`.
    pub powered_on: bool,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
}

/// The BareMetalHost §5.2.4.3 step 11 creates. Its BMC credentials are in the secret
/// `credentials_name`, never here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewBareMetalHost {
    pub name: String,
    pub bmc_address: String,
    pub boot_mac_address: String,
    pub credentials_name: String,
}

impl NewBareMetalHost {
    /// The object as the runbook writes it: provisioned by the cluster (`externallyProvisioned:
    /// false`), powered on, UEFI, no automated cleaning, the control plane's managed user data.
    pub fn manifest(&self) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "metal3.io/v1alpha1",
            "kind": "BareMetalHost",
            "metadata": { "name": self.name, "namespace": "openshift-machine-api" },
            "spec": {
                "automatedCleaningMode": "disabled",
                "bmc": { "address": self.bmc_address, "credentialsName": self.credentials_name, "disableCertificateVerification": true },
                "bootMACAddress": self.boot_mac_address,
                "bootMode": "UEFI",
                "externallyProvisioned": false,
                "online": true,
                "userData": { "name": "master-user-data-managed", "namespace": "openshift-machine-api" }
            }
        })
    }
}

/// The static-pod operators whose revisions the procedures roll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operator {
    Etcd,
    KubeApiServer,
    KubeControllerManager,
    KubeScheduler,
}

impl Operator {
    pub const ALL: [Operator; 4] = [Operator::Etcd, Operator::KubeApiServer, Operator::KubeControllerManager, Operator::KubeScheduler];
    /// The `operator.openshift.io/v1` resource (cluster-scoped, named `cluster`).
    pub fn resource(self) -> &'static str {
        match self {
            Operator::Etcd => "etcds",
            Operator::KubeApiServer => "kubeapiservers",
            Operator::KubeControllerManager => "kubecontrollermanagers",
            Operator::KubeScheduler => "kubeschedulers",
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operator::Etcd => "etcd",
            Operator::KubeApiServer => "kube-apiserver",
            Operator::KubeControllerManager => "kube-controller-manager",
            Operator::KubeScheduler => "kube-scheduler",
        })
    }
}

/// The `NodeInstallerProgressing` condition of a static-pod operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallerProgress {
    /// `AllNodesAtLatestRevision` when done.
    pub reason: String,
    /// e.g. `3 nodes are at revision 7` or `2 nodes are at revision 6; 1 nodes are at revision 7`.
    pub message: String,
    pub latest_revision: u64,
    /// The `forceRedeploymentReason` currently in the spec.
    pub force_redeployment_reason: Option<String>,
}

impl InstallerProgress {
    pub fn all_at_latest(&self) -> bool {
        self.reason == "AllNodesAtLatestRevision"
    }

    /// The message as (nodes, revision) pairs: `2 nodes are at revision 6; 1 node is at
    /// revision 7` gives `[(2, 6), (1, 7)]`. Parts that do not read so are left out.
    pub fn nodes_at_revisions(&self) -> Vec<(usize, u64)> {
        self.message
            .split(';')
            .filter_map(|part| {
                let words: Vec<&str> = part.split_whitespace().collect();
                match words.as_slice() {
                    [n, "nodes" | "node", "are" | "is", "at", "revision", r] => Some((n.parse().ok()?, r.parse().ok()?)),
                    _ => None,
                }
            })
            .collect()
    }

    /// Rolled out as the runbook means it: the condition says all nodes are at the latest
    /// revision AND its message counts every one of `nodes` control-plane nodes at exactly that
    /// revision. A condition not yet rewritten for a new revision, or one counting fewer nodes
    /// (those not registered yet), does not pass.
    pub fn rolled_out_to(&self, nodes: usize) -> bool {
        self.all_at_latest() && self.nodes_at_revisions() == [(nodes, self.latest_revision)]
    }
}

/// A `clusteroperators.config.openshift.io` summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterOperatorInfo {
    pub name: String,
    pub available: bool,
    pub progressing: bool,
    pub degraded: bool,
}

/// Operations on the cluster through its API server. Reads require the API to answer;
/// during quorum loss every call fails transiently.
pub trait ClusterApi: Send + Sync {
    /// `clusterversion/version` desired version, e.g. `4.15.3`.
    fn cluster_version(&self) -> PortResult<String>;
    /// Cluster age since installation, in seconds (first certificate rotation at 24 h).
    fn cluster_age_secs(&self) -> PortResult<u64>;
    fn cluster_operators(&self) -> PortResult<Vec<ClusterOperatorInfo>>;
    fn list_nodes(&self) -> PortResult<Vec<NodeInfo>>;
    /// Delete a node object; an absent node is success.
    fn delete_node(&self, name: &str) -> PortResult<()>;
    fn list_csrs(&self) -> PortResult<Vec<CsrInfo>>;
    /// Approve a CSR (adds the `Approved` condition); approving an approved CSR is success.
    fn approve_csr(&self, name: &str) -> PortResult<()>;
    /// Pods in `namespace` matching the label selector `selector` (`k8s-app=etcd`).
    fn list_pods(&self, namespace: &str, selector: &str) -> PortResult<Vec<PodInfo>>;
    /// Delete one pod; an absent pod is success.
    fn delete_pod(&self, namespace: &str, name: &str) -> PortResult<()>;
    /// Internal IPs that the `ovnkube-master` daemonset still references, among `ips`.
    fn ovn_master_references(&self, ips: &[String]) -> PortResult<Vec<String>>;
    fn list_machines(&self) -> PortResult<Vec<MachineInfo>>;
    /// Validating and mutating admission webhooks with `failurePolicy: Fail` (set or defaulted).
    fn fail_closed_webhooks(&self) -> PortResult<Vec<WebhookInfo>>;
    /// How drctl authenticates to the API (from its kubeconfig; no request is sent).
    fn credential(&self) -> Credential;
    /// The cluster network: `network.config/cluster` `status.networkType`, and for
    /// OVN-Kubernetes whether it runs the interconnect layout (no `ovnkube-master` DaemonSet).
    fn network_layout(&self) -> PortResult<NetworkLayout>;
    /// How the cluster's machines are provisioned: `infrastructure/cluster`
    /// `status.platformStatus.type` and whether `controlplanemachineset/cluster` is Active.
    fn machine_layout(&self) -> PortResult<MachineLayout>;
    fn get_machine(&self, name: &str) -> PortResult<Option<MachineInfo>>;
    /// Delete a machine; an absent machine is success.
    fn delete_machine(&self, name: &str) -> PortResult<()>;
    /// Create a machine from a manifest; creating one that exists with the same name is success.
    fn create_machine(&self, manifest: &serde_json::Value) -> PortResult<()>;
    /// `spec.unsupportedConfigOverrides.useUnsupportedUnsafeNonHANonProductionUnstableEtcd`:
    /// `enabled = false` turns the quorum guard off (merge patch), `true` sets the overrides to
    /// null again.
    fn set_quorum_guard(&self, enabled: bool) -> PortResult<()>;
    fn quorum_guard_enabled(&self) -> PortResult<bool>;
    /// Merge-patch `spec.forceRedeploymentReason`. Setting the value already there is a no-op.
    fn force_redeployment(&self, operator: Operator, reason: &str) -> PortResult<()>;
    fn installer_progress(&self, operator: Operator) -> PortResult<InstallerProgress>;
    /// The `EtcdMembersAvailable` condition of `etcds/cluster` (`2 of 3 members are available,
    /// NODE is unhealthy`); `None` before the operator wrote one.
    fn etcd_members_available(&self) -> PortResult<Option<OperatorCondition>>;
    /// Names of the secrets in `namespace`.
    fn list_secrets(&self, namespace: &str) -> PortResult<Vec<String>>;
    /// Delete a secret; an absent secret is success.
    fn delete_secret(&self, namespace: &str, name: &str) -> PortResult<()>;
    /// BareMetalHosts in `openshift-machine-api`.
    fn list_bare_metal_hosts(&self) -> PortResult<Vec<BareMetalHostInfo>>;
    /// Delete a BareMetalHost; an absent one is success.
    fn delete_bare_metal_host(&self, name: &str) -> PortResult<()>;
    /// Create a BareMetalHost ([`NewBareMetalHost::manifest`]); one that exists with the same
    /// name is success.
    fn create_bare_metal_host(&self, host: &NewBareMetalHost) -> PortResult<()>;
    /// Create the `Opaque` secret `name` in `openshift-machine-api` holding BMC `username` and
    /// `password`; if it exists, its data is replaced (a corrected credentials file takes
    /// effect on a re-run). The values go to the API only: never into an error or a log.
    fn apply_bmc_secret(&self, name: &str, credentials: &crate::bmc::BmcCredentials) -> PortResult<()>;
    /// Remove every finalizer of a machine (merge patch `metadata.finalizers: null`), as §5.2.4.3
    /// step 8 does to a deletion that hangs; an absent machine is success.
    fn remove_machine_finalizers(&self, name: &str) -> PortResult<()>;
    /// When the signer of the kubelets' certificates expires: the annotation
    /// `auth.openshift.io/certificate-not-after` of secret `kube-apiserver-to-kubelet-signer` in
    /// `openshift-kube-apiserver-operator` (None when the secret carries none). A cluster kept
    /// off past it comes back with every kubelet asking for new certificates.
    fn kubelet_signer_expiry(&self) -> PortResult<Option<drctl_runtime::clock::Timestamp>>;
}

/// A status condition of an operator resource, as `oc get … -o jsonpath` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorCondition {
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    pub message: String,
}

impl OperatorCondition {
    /// The members `EtcdMembersAvailable` names as not available: `NAME is unhealthy` or `NAME
    /// has not started` (the etcd operator's wording), in the order it names them.
    pub fn unavailable_members(&self) -> Vec<String> {
        let Some((_, names)) = self.message.split_once("available, ") else { return vec![] };
        names
            .split(", ")
            .filter_map(|part| part.strip_suffix(" is unhealthy").or_else(|| part.strip_suffix(" has not started")))
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// `(available, of)` from `N of M members are available`, or `(M, M)` from `M members are
    /// available`.
    pub fn member_counts(&self) -> Option<(usize, usize)> {
        let head = self.message.split(',').next()?.trim();
        let words: Vec<&str> = head.split_whitespace().collect();
        match words.as_slice() {
            [n, "of", m, "members", "are", "available"] => Some((n.parse().ok()?, m.parse().ok()?)),
            [m, "members", "are", "available"] => {
                let m = m.parse().ok()?;
                Some((m, m))
            }
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Control-plane hosts over SSH
// ---------------------------------------------------------------------------------------------

/// Static pod manifests in `/etc/kubernetes/manifests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum StaticPod {
    Etcd,
    KubeApiServer,
    KubeControllerManager,
    KubeScheduler,
    Keepalived,
}

impl StaticPod {
    pub fn manifest_file(self) -> &'static str {
        match self {
            StaticPod::Etcd => "etcd-pod.yaml",
            StaticPod::KubeApiServer => "kube-apiserver-pod.yaml",
            StaticPod::KubeControllerManager => "kube-controller-manager-pod.yaml",
            StaticPod::KubeScheduler => "kube-scheduler-pod.yaml",
            StaticPod::Keepalived => "keepalived.yaml",
        }
    }
    /// The container name `crictl ps` shows for it.
    pub fn container(self) -> &'static str {
        match self {
            StaticPod::Etcd => "etcd",
            StaticPod::KubeApiServer => "kube-apiserver",
            StaticPod::KubeControllerManager => "kube-controller-manager",
            StaticPod::KubeScheduler => "kube-scheduler",
            StaticPod::Keepalived => "keepalived",
        }
    }
}

/// A typed host operation. Adapters render each to a properly quoted command; nothing from user
/// input reaches a shell unquoted. Every operation is idempotent as the procedures use it
/// (moving a file that is already moved reports `moved: false`, not an error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostOp {
    /// `mv /etc/kubernetes/manifests/<pod> /tmp` (or back in).
    MoveManifestOut(StaticPod),
    MoveManifestIn(StaticPod),
    /// Whether `/etc/kubernetes/manifests/<pod>` exists.
    ManifestPresent(StaticPod),
    /// `crictl ps --name <name>` minus operator/guard containers: names of running containers.
    RunningContainers {
        name: String,
    },
    /// `mv /var/lib/etcd/ /tmp`.
    MoveEtcdDataDirAside,
    /// `ip -o address`: (address, device) pairs.
    ListAddresses,
    /// `ip address del <addr> dev <dev>`.
    RemoveAddress {
        address: String,
        device: String,
    },
    /// `rm -f /var/lib/kubelet/pki/*.pem`.
    RemoveKubeletPki,
    /// `systemctl restart kubelet.service`.
    RestartKubelet,
    /// `rm -f /var/lib/ovn/etc/*.db`.
    RemoveOvnDatabases,
    /// Runbook steps 18-19 on the recovery host: `oc patch etcd cluster` with the
    /// `forceRedeploymentReason`, through the host's localhost-recovery kubeconfig (a
    /// certificate the restored cluster trusts, served by the local API server).
    ForceEtcdRedeploymentLocally {
        reason: String,
    },
    /// OVN-Kubernetes interconnect: `rm -f /var/lib/ovn-ic/etc/*.db` (this node's own databases).
    RemoveOvnIcDatabases,
    /// `systemctl restart ovs-vswitchd ovsdb-server`.
    RestartOvs,
    /// The node name this host's kubelet authenticates as: the `CN=system:node:<name>` of its
    /// client certificate (`/var/lib/kubelet/pki/kubelet-client-current.pem`); `None` if absent.
    KubeletNodeName,
    /// `cluster-backup.sh <dir>`: snapshot + static pod resources into `dir`.
    RunBackup {
        dir: String,
    },
    /// `etcdctl snapshot status <path> -w json`.
    SnapshotStatus {
        path: String,
    },
    /// `cluster-restore.sh <dir>` on the recovery host, fenced: a marker named after `fence` is
    /// written with the restore, and a host that has the marker reports `Done` without
    /// restoring again (a re-run after a crash must not make yet another cluster id).
    RunRestore {
        dir: String,
        fence: String,
    },
    /// Files (names only) in a directory; empty if it does not exist.
    ListDir {
        dir: String,
    },
    /// `install -d -m 0700 <dir>`.
    MakePrivateDir {
        dir: String,
    },
    /// Release version the host runs: the `machineconfiguration.openshift.io/release-image-version`
    /// annotation of `/etc/machine-config-daemon/currentconfig` (static pod resources carry only
    /// operator build versions).
    ReleaseVersion,
    /// `shutdown -h 1`.
    Shutdown {
        minutes: u32,
    },
    /// From this host, ask the etcd member at `address` whether it serves: first whether
    /// anything answers on its client or peer port (2379/2380), then its `/health` endpoint,
    /// authenticated with `client_node`'s etcd peer certificate. `/health` is a quorum read, so
    /// only a member of a cluster that has quorum answers healthy.
    ProbeEtcd {
        address: String,
        client_node: String,
    },
    /// OpenShift 4.1–4.3: one of the recovery scripts the Machine Config Operator installs in
    /// `/usr/local/bin`, fenced like [`HostOp::RunRestore`] (none of them may run twice).
    RunLegacyScript {
        script: LegacyScript,
        fence: String,
    },
    /// OpenShift 4.1–4.3: who this host's etcd member is: the host name (`hostname`) and the
    /// `ETCD_DNS_NAME` its `etcd-member` pod's setup wrote to `/run/etcd/environment` (`None`
    /// when the setup never completed).
    LegacyEtcdIdentity,
    /// OpenShift 4.1–4.3: `tokenize-signer.sh HOSTNAME` with `KUBE_ETCD_SIGNER_SERVER` from the
    /// release, then `oc create -f` of the temporary etcd signer pod it renders, as root with the
    /// credentials of the runbook's `sudo oc login https://localhost:6443`. A signer pod that
    /// exists already is success.
    LegacyStartSigner {
        hostname: String,
    },
    /// OpenShift 4.1–4.3: whether the temporary etcd signer listens on this host (`ss -ltn`,
    /// port 9943).
    LegacySignerListening,
    /// OpenShift 4.1–4.3: `etcdctl member list` inside this host's `etcd-member` container
    /// (`crictl exec`), with its peer certificate. Fails without quorum (a linearizable read).
    LegacyMemberList,
}

/// The recovery scripts of OpenShift 4.1–4.3 ("Recovering from lost master hosts").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LegacyScript {
    /// `etcd-snapshot-restore.sh BACKUP_DIR INITIAL_CLUSTER`: a single-member etcd from the
    /// backup's snapshot on this host.
    SnapshotRestore { dir: String, initial_cluster: String },
    /// `etcd-member-recover.sh SIGNER_IP ETCD_NAME` with `SETUP_ETCD_ENVIRONMENT` and
    /// `KUBE_CLIENT_AGENT` from the release: certificates from the signer, `member add`, etcd
    /// started as the new member.
    MemberRecover { signer_ip: String, member_name: String },
}

impl LegacyScript {
    /// The script's file name in `/usr/local/bin`.
    pub fn file(&self) -> &'static str {
        match self {
            LegacyScript::SnapshotRestore { .. } => "etcd-snapshot-restore.sh",
            LegacyScript::MemberRecover { .. } => "etcd-member-recover.sh",
        }
    }
}

/// What [`HostOp::LegacyEtcdIdentity`] read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyEtcdIdentity {
    pub hostname: String,
    pub dns_name: Option<String>,
}

impl LegacyEtcdIdentity {
    /// The member's name as the 4.1–4.3 `etcd-member` pod names it.
    pub fn member_name(&self) -> String {
        format!("etcd-member-{}", self.hostname)
    }
}

/// What [`HostOp::ProbeEtcd`] found at an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EtcdProbe {
    /// `/health` answered `true`: this member's cluster has quorum and serves writes.
    Healthy,
    /// Something answers on the etcd ports but the member is not healthy (no leader, no
    /// quorum, a TLS or HTTP error): a process that may serve again once peers return.
    Unhealthy(String),
    /// Nothing answers on either etcd port: no etcd process listens there.
    NoAnswer,
}

impl fmt::Display for EtcdProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtcdProbe::Healthy => f.write_str("healthy (serves with quorum)"),
            EtcdProbe::Unhealthy(why) => write!(f, "answers but unhealthy: {why}"),
            EtcdProbe::NoAnswer => f.write_str("no answer on 2379/2380"),
        }
    }
}

/// What a host operation returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostOutput {
    Done,
    /// For moves: false when the source was already gone (a re-run after a crash).
    Moved {
        moved: bool,
    },
    Present(bool),
    Names(Vec<String>),
    /// (address, device), the address bare, without its prefix length.
    Addresses(Vec<(String, String)>),
    /// File names (not paths) of the two backup files, in the directory the backup ran into.
    Backup {
        snapshot: String,
        resources: String,
    },
    Snapshot(SnapshotStatus),
    Version(String),
    Etcd(EtcdProbe),
    NodeName(Option<String>),
    Identity(LegacyEtcdIdentity),
    Members(EtcdMemberList),
}

/// `etcdctl snapshot status -w json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStatus {
    pub hash: u64,
    pub revision: u64,
    pub total_key: u64,
    pub total_size: u64,
}

/// A control-plane host as the operator names it (ssh target) and its node name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HostRef {
    pub name: String,
    pub node: String,
    pub address: String,
}

pub trait Hosts: Send + Sync {
    /// The control-plane hosts of the inventory (`--hosts`, or the simulator's world).
    fn control_plane_hosts(&self) -> PortResult<Vec<HostRef>>;
    /// The worker hosts of the inventory (`--workers`; none unless given): the restore logs in
    /// to NotReady workers as the runbook's step 9.2 does.
    fn worker_hosts(&self) -> PortResult<Vec<HostRef>>;
    /// Open (or check) the SSH session to `host`. Transient when it cannot be reached now.
    fn connect(&self, host: &str) -> PortResult<()>;
    fn run(&self, host: &str, op: &HostOp) -> PortResult<HostOutput>;
    /// Copy a backup set from the backup location onto `host` into `dest_dir` (idempotent).
    fn copy_backup_to_host(&self, backup: &str, host: &str, dest_dir: &str) -> PortResult<()>;
    /// Copy files from `host` into the backup location as backup set `backup` (idempotent).
    fn copy_backup_from_host(&self, host: &str, files: &[String], backup: &str, info: &BackupInfo) -> PortResult<()>;
}

// ---------------------------------------------------------------------------------------------
// etcd (through etcdctl: locally, over SSH on a control-plane host, or in an etcd pod)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdMember {
    /// Member id; etcdctl prints it in hex in tables, as a number in JSON.
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl EtcdMember {
    /// etcd lists a member that was added but never started with no name and no client URLs
    /// (`unstarted` in a table).
    pub fn started(&self) -> bool {
        !self.name.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdMemberList {
    pub cluster_id: u64,
    pub members: Vec<EtcdMember>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointHealth {
    pub endpoint: String,
    pub healthy: bool,
    pub error: Option<String>,
}

/// `etcdctl` in the etcd pod of one control-plane node (`oc rsh -n openshift-etcd etcd-<node>`,
/// OpenShift Container Platform 4.14 Backup and restore §5.2.4.1 step 1): the way the runbooks
/// reach etcd while the cluster serves. A pod whose etcd container does not run cannot be
/// entered (transient: choose another node, or wait).
pub trait EtcdPods: Send + Sync {
    /// The member list, read through the etcd pod on `node`.
    fn member_list(&self, node: &str) -> PortResult<EtcdMemberList>;
    /// `etcdctl member remove <id>` in the etcd pod on `node`; an id that is no longer a member
    /// is success.
    fn member_remove(&self, node: &str, id: u64) -> PortResult<()>;
    /// `etcdctl endpoint health` over every member, from the etcd pod on `node`.
    fn endpoint_health(&self, node: &str) -> PortResult<Vec<EndpointHealth>>;
}

pub trait Etcd: Send + Sync {
    /// Linearizable member list; fails transiently without quorum.
    fn member_list(&self) -> PortResult<EtcdMemberList>;
    /// Remove a member by id; an id that is no longer a member is success.
    fn member_remove(&self, id: u64) -> PortResult<()>;
    fn member_add(&self, name: &str, peer_url: &str) -> PortResult<EtcdMemberList>;
    fn endpoint_health(&self) -> PortResult<Vec<EndpointHealth>>;
    fn snapshot_save(&self, path: &str) -> PortResult<SnapshotStatus>;
    fn snapshot_status(&self, path: &str) -> PortResult<SnapshotStatus>;
}

// ---------------------------------------------------------------------------------------------
// Backup location (outside the cluster)
// ---------------------------------------------------------------------------------------------

/// What `etcd-backup` records beside the files so a restore can check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    pub cluster_version: String,
    pub snapshot: SnapshotStatus,
    pub taken_on: String,
    /// `__POSSIBLY_DIRTY__` when taken while operators were progressing (with --force).
    pub possibly_dirty: bool,
}

pub trait BackupStore: Send + Sync {
    /// File names in backup set `backup`; `NotFound` if the set does not exist.
    fn list(&self, backup: &str) -> PortResult<Vec<String>>;
    fn info(&self, backup: &str) -> PortResult<Option<BackupInfo>>;
    /// The release the backup was taken from: the info file drctl writes with its backups, else
    /// the `clusterversion/version` object inside the snapshot itself (a backup made by the
    /// runbook's `cluster-backup.sh` has no info file). `None` when neither says.
    fn cluster_version(&self, backup: &str) -> PortResult<Option<String>>;
}

// ---------------------------------------------------------------------------------------------
// Management cluster of hosted control planes (HyperShift)
// ---------------------------------------------------------------------------------------------

/// The annotation drctl sets beside every `pausedUntil` it writes, naming the run that paused.
/// A pause without it (or with another value) was set by someone else and is never cleared by
/// drctl on its own.
pub const PAUSED_BY_ANNOTATION: &str = "drctl.openshift.io/paused-by";

/// A status condition as the procedures read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionInfo {
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    /// The `metadata.generation` the controller had seen when it wrote the condition.
    pub observed_generation: i64,
}

/// What a pause/unpause needs of a HostedCluster or a NodePool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PausableInfo {
    pub name: String,
    pub generation: i64,
    /// `.spec.pausedUntil` (`"true"` or an RFC 3339 time), absent when not set.
    pub paused_until: Option<String>,
    /// The [`PAUSED_BY_ANNOTATION`], when present.
    pub paused_by: Option<String>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// The `ReconciliationActive` condition, once the controller wrote one.
    pub reconciliation_active: Option<ConditionInfo>,
}

/// What scaling a data plane needs of a NodePool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePoolScale {
    pub name: String,
    /// `.spec.replicas`; absent while the pool autoscales.
    pub replicas: Option<u32>,
    /// `.spec.autoScaling` as (min, max).
    pub autoscaling: Option<(u32, u32)>,
    /// `.spec.nodeDrainTimeout` as written (absent: never set, which means no limit).
    pub drain_timeout: Option<String>,
    /// `.status.replicas`: the machines available.
    pub status_replicas: u32,
    /// `.spec.pausedUntil`.
    pub paused_until: Option<String>,
    /// The [`REPLICAS_BEFORE_ZERO_ANNOTATION`]: the replicas a scale-to-zero found, for the
    /// scale-up that brings the pool back.
    #[serde(default)]
    pub replicas_before_zero: Option<u32>,
}

/// The annotation drctl writes on a NodePool it scales to zero: the replicas it had, so the data
/// plane can be brought back as it was (`hosted-scale-data-plane-zero --scale-up`).
pub const REPLICAS_BEFORE_ZERO_ANNOTATION: &str = "drctl.openshift.io/replicas-before-scale-to-zero";

/// The management cluster's API, for the hosted-control-plane objects (HyperShift
/// `hypershift.openshift.io/v1beta1`).
pub trait ManagementCluster: Send + Sync {
    /// HostedCluster `namespace/name`; `NotFound` when it does not exist.
    fn hosted_cluster(&self, namespace: &str, name: &str) -> PortResult<PausableInfo>;
    /// Merge-patch the HostedCluster's `spec.pausedUntil` and the [`PAUSED_BY_ANNOTATION`] in one
    /// request; `None` writes `null`, removing the field.
    fn set_hosted_cluster_paused(&self, namespace: &str, name: &str, paused_until: Option<&str>, paused_by: Option<&str>)
        -> PortResult<()>;
    /// The NodePools of `namespace` whose `spec.clusterName` is `cluster`.
    fn node_pools(&self, namespace: &str, cluster: &str) -> PortResult<Vec<PausableInfo>>;
    /// As [`ManagementCluster::set_hosted_cluster_paused`], for a NodePool.
    fn set_node_pool_paused(&self, namespace: &str, name: &str, paused_until: Option<&str>, paused_by: Option<&str>) -> PortResult<()>;
    /// `spec.pausedUntil` of the HostedControlPlane of HostedCluster `namespace/name` (in its
    /// control-plane namespace), as the HyperShift operator copied it.
    fn control_plane_paused_until(&self, namespace: &str, name: &str) -> PortResult<Option<String>>;
    /// The HyperShift operator (Deployment `hypershift/operator`) has an available replica:
    /// without it nothing propagates a pause.
    fn operator_available(&self) -> PortResult<bool>;
    /// The NodePools of `namespace` whose `spec.clusterName` is `cluster`, with their scale.
    fn node_pool_scales(&self, namespace: &str, cluster: &str) -> PortResult<Vec<NodePoolScale>>;
    /// `PATCH nodepools/<name>/scale` with `spec.replicas` (422 `Invalid` while it autoscales).
    fn scale_node_pool(&self, namespace: &str, name: &str, replicas: u32) -> PortResult<()>;
    /// Merge-patch `spec.nodeDrainTimeout`; `None` writes `null`, removing the field.
    fn set_node_pool_drain_timeout(&self, namespace: &str, name: &str, timeout: Option<&str>) -> PortResult<()>;
    /// The Cluster API Machines of NodePool `pool` of HostedCluster `namespace/cluster` (in the
    /// control-plane namespace, label `cluster.x-k8s.io/deployment-name=<pool>`), by name: a
    /// machine still listed still has its instance (and maybe its node and workloads).
    fn node_pool_machines(&self, namespace: &str, cluster: &str, pool: &str) -> PortResult<Vec<String>>;
    /// Merge-patch the [`REPLICAS_BEFORE_ZERO_ANNOTATION`] of a NodePool (`None`: remove it).
    fn record_node_pool_replicas(&self, namespace: &str, name: &str, replicas: Option<u32>) -> PortResult<()>;
    /// The etcd of HostedCluster `namespace/name` as its control-plane namespace shows it: the
    /// HostedCluster's availability policy, StatefulSet `etcd`, its pods (`app=etcd`), the PVCs
    /// `data-etcd-N` and the HostedControlPlane's `EtcdAvailable`.
    fn hosted_etcd(&self, namespace: &str, name: &str) -> PortResult<HostedEtcdInfo>;
    /// `etcdctl endpoint health --cluster` in the `etcd` container of pod `pod` (one row per
    /// member); a pod whose etcd container does not run cannot be entered (transient).
    fn hosted_etcd_health(&self, namespace: &str, name: &str, pod: &str) -> PortResult<Vec<EndpointHealth>>;
    /// `etcdctl member list` in the `etcd` container of pod `pod`.
    fn hosted_etcd_members(&self, namespace: &str, name: &str, pod: &str) -> PortResult<EtcdMemberList>;
    /// `DELETE` PVC `pvc` of the control-plane namespace with the precondition `uid` (without
    /// waiting: the PVC stays `Terminating` while a pod uses it). Success when the object with
    /// that uid no longer exists (gone, or replaced by a new one of the same name).
    fn delete_hosted_etcd_pvc(&self, namespace: &str, name: &str, pvc: &str, uid: &str) -> PortResult<()>;
    /// As [`ManagementCluster::delete_hosted_etcd_pvc`], for pod `pod`.
    fn delete_hosted_etcd_pod(&self, namespace: &str, name: &str, pod: &str, uid: &str) -> PortResult<()>;
    /// What a backup needs of HostedCluster `namespace/name` beyond its pause: its `Available`
    /// condition, how its etcd is managed, its secret encryption.
    fn hosted_cluster_backup_facts(&self, namespace: &str, name: &str) -> PortResult<HostedBackupFacts>;
    /// The Deployments `names` of the control-plane namespace by their scale; a missing one is
    /// `NotFound`.
    fn control_plane_deployments(&self, namespace: &str, name: &str, names: &[&str]) -> PortResult<Vec<DeploymentScale>>;
    /// `PATCH deployments/<deployment>/scale` in the control-plane namespace.
    fn scale_control_plane_deployment(&self, namespace: &str, name: &str, deployment: &str, replicas: u32) -> PortResult<()>;
    /// `etcdctl snapshot save <path>` in the `etcd` container of pod `pod`
    /// (`--endpoints=https://localhost:2379`): the member's keyspace written to its own PVC.
    fn hosted_etcd_snapshot_save(&self, namespace: &str, name: &str, pod: &str, path: &str) -> PortResult<()>;
    /// `snapshot status -w json` of `path` in pod `pod`: with `etcdutl` where the image has it
    /// (`test -x /usr/bin/etcdutl`), `etcdctl` otherwise (etcd 3.6 dropped it from etcdctl).
    fn hosted_etcd_snapshot_status(&self, namespace: &str, name: &str, pod: &str, path: &str) -> PortResult<SnapshotStatus>;
    /// The bytes of file `path` in pod `pod`'s `etcd` container, streamed out (exec `cat`):
    /// the reader fails (an I/O error) if the stream breaks before the end.
    fn open_hosted_etcd_file(&self, namespace: &str, name: &str, pod: &str, path: &str) -> PortResult<Box<dyn std::io::Read + Send>>;
    /// `rm -f <path>` in pod `pod`'s `etcd` container: success when it is not there (any more).
    fn remove_hosted_etcd_file(&self, namespace: &str, name: &str, pod: &str, path: &str) -> PortResult<()>;
    /// `.data.key` of Secret `secret` in `namespace` (the etcd encryption key).
    fn encryption_key(&self, namespace: &str, secret: &str) -> PortResult<SecretBytes>;
}

/// What `hosted-etcd-snapshot` checks of a HostedCluster before it touches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedBackupFacts {
    /// `status` of the `Available` condition, once written.
    pub available: Option<String>,
    /// `spec.etcd.managementType` (`Managed`, `Unmanaged`).
    pub etcd_management: String,
    /// `spec.secretEncryption.type` (`aescbc`, `kms`), absent when not set.
    pub encryption_type: Option<String>,
    /// `spec.secretEncryption.aescbc.activeKey.name`: the Secret holding the key.
    pub active_key_secret: Option<String>,
}

/// A Deployment by its scale: `spec.replicas`, `status.replicas` (pods, terminating ones
/// included), `status.readyReplicas`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentScale {
    pub name: String,
    pub replicas: u32,
    pub status_replicas: u32,
    pub ready_replicas: u32,
}

/// The Deployments of a hosted control plane that write to its etcd (`../shared/HOSTED.md`
/// §A.2): scaled to zero while a snapshot is taken or restored.
pub const ETCD_WRITERS: [&str; 3] = ["kube-apiserver", "openshift-apiserver", "openshift-oauth-apiserver"];

/// Bytes of a secret (an encryption key): never printed, never serialised.
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> SecretBytes {
        SecretBytes(bytes)
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    /// The SHA-256 of the bytes (lowercase hex): names which key without revealing it.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(&self.0).iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes({} bytes, redacted)", self.0.len())
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        // Best effort: the key does not linger in freed memory.
        self.0.fill(0);
        // Keeps the compiler from eliding the wipe of memory about to be freed.
        std::hint::black_box(&self.0);
    }
}

/// The etcd of a hosted control plane, as the management cluster's API serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedEtcdInfo {
    /// `spec.controllerAvailabilityPolicy` of the HostedCluster (`HighlyAvailable`,
    /// `SingleReplica`).
    pub availability_policy: String,
    /// StatefulSet `etcd`: `spec.replicas` and `status.readyReplicas`.
    pub replicas: u32,
    pub ready_replicas: u32,
    /// The pods labelled `app=etcd`, by name.
    pub pods: Vec<HostedEtcdPod>,
    /// The PVCs `data-etcd-N`, by name.
    pub pvcs: Vec<PvcInfo>,
    /// `status` of the HostedControlPlane's `EtcdAvailable` condition, once written.
    pub etcd_available: Option<String>,
}

impl HostedEtcdInfo {
    pub fn pod(&self, name: &str) -> Option<&HostedEtcdPod> {
        self.pods.iter().find(|p| p.name == name)
    }
    pub fn pvc(&self, name: &str) -> Option<&PvcInfo> {
        self.pvcs.iter().find(|p| p.name == name)
    }
}

/// An etcd pod of a hosted control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedEtcdPod {
    pub name: String,
    pub uid: String,
    pub status: PodStatus,
    /// Every container ready.
    pub ready: bool,
    /// The PVC its `data` volume claims.
    pub pvc: String,
}

/// A PersistentVolumeClaim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PvcInfo {
    pub name: String,
    pub uid: String,
    /// `status.phase`: `Bound`, `Pending`, `Lost`.
    pub phase: String,
    /// `metadata.deletionTimestamp` is set (held by `kubernetes.io/pvc-protection` while a pod
    /// uses it).
    pub terminating: bool,
}

/// The PVC of etcd member `pod` (the StatefulSet's `data` volume claim template).
pub fn etcd_pvc_name(pod: &str) -> String {
    format!("data-{pod}")
}

/// The control-plane namespace of HostedCluster `namespace/name`: `<namespace>-<name>`, with any
/// `.` in the name replaced by `-` (as the HyperShift operator names it).
pub fn control_plane_namespace(namespace: &str, name: &str) -> String {
    format!("{namespace}-{}", name.replace('.', "-"))
}

/// Everything a procedure acts through: one port per capability. Capabilities a target does not
/// provide are absent; the catalog refuses such a run before it is stored, so a procedure meeting
/// an absent port reports a bug.
pub struct Ports {
    pub api: Box<dyn ClusterApi>,
    pub hosts: Box<dyn Hosts>,
    pub backups: Box<dyn BackupStore>,
    /// etcdctl in the etcd pods of the cluster (through its API).
    pub etcd: Box<dyn EtcdPods>,
    /// The management cluster of hosted control planes.
    pub management: Option<Box<dyn ManagementCluster>>,
    /// The S3 bucket hosted backups go to.
    pub object_store: Option<Box<dyn crate::object_store::ObjectStore>>,
}

impl Ports {
    /// The management-cluster port, or a bug: the capability check admits a hosted run only on a
    /// target that has one.
    pub fn management(&self) -> Result<&dyn ManagementCluster, StepError> {
        self.management
            .as_deref()
            .ok_or_else(|| StepError::Bug("this target has no management cluster, yet a hosted run was admitted".into()))
    }

    /// The object-store port, or a bug, as [`Ports::management`].
    pub fn object_store(&self) -> Result<&dyn crate::object_store::ObjectStore, StepError> {
        self.object_store
            .as_deref()
            .ok_or_else(|| StepError::Bug("this target has no object store, yet a run that needs one was admitted".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollout_is_over_when_every_node_is_at_the_latest_revision() {
        let p = |reason: &str, message: &str, latest| InstallerProgress {
            reason: reason.into(),
            message: message.into(),
            latest_revision: latest,
            force_redeployment_reason: None,
        };
        assert!(p("AllNodesAtLatestRevision", "3 nodes are at revision 7", 7).rolled_out_to(3));
        // The condition still describes the previous revision.
        assert!(!p("AllNodesAtLatestRevision", "3 nodes are at revision 6", 7).rolled_out_to(3));
        // Only the nodes the operator knows yet.
        assert!(!p("AllNodesAtLatestRevision", "1 nodes are at revision 7", 7).rolled_out_to(3));
        assert!(!p("NodeInstaller", "2 nodes are at revision 6; 1 nodes are at revision 7", 7).rolled_out_to(3));
        assert_eq!(p("NodeInstaller", "2 nodes are at revision 6; 1 node is at revision 7", 7).nodes_at_revisions(), [(2, 6), (1, 7)]);
    }

    #[test]
    fn kubernetes_words_are_typed_and_unknown_ones_kept_as_sent() {
        assert_eq!(PodStatus::from("CrashLoopBackOff"), PodStatus::CrashLoopBackOff);
        assert_eq!(PodStatus::from("ImagePullBackOff"), PodStatus::Other("ImagePullBackOff".into()));
        assert_eq!(PodStatus::Other("ImagePullBackOff".into()).to_string(), "ImagePullBackOff");
        assert_eq!(MachinePhase::from(""), MachinePhase::NotSet);
        // On the wire (JSON, the store) they are the words themselves.
        let pod = PodInfo { name: "etcd-0".into(), node: "m0".into(), phase: PodStatus::Running, ready: true };
        let json = serde_json::to_value(&pod).unwrap();
        assert_eq!(json["phase"], "Running");
        assert_eq!(serde_json::from_value::<PodInfo>(json).unwrap(), pod);
        let odd: MachinePhase = serde_json::from_str("\"Provisioned-ish\"").unwrap();
        assert_eq!(odd, MachinePhase::Other("Provisioned-ish".into()));
    }
}
