//! [`ClusterApi`] on kube-rs: the Kubernetes API and the OpenShift resources the runbooks touch,
//! with their real groups and versions, patched exactly as the runbooks patch them.
//!
//! | what | resource |
//! |---|---|
//! | quorum guard, redeployments, installer progress | `etcds`, `kubeapiservers`, `kubecontrollermanagers`, `kubeschedulers` `.operator.openshift.io/v1`, name `cluster` |
//! | machines | `machines.machine.openshift.io/v1beta1` in `openshift-machine-api` |
//! | release, operators | `clusterversions.config.openshift.io/v1` `version`, `clusteroperators.config.openshift.io/v1` |
//! | OVN references | daemonset `ovnkube-master` in `openshift-ovn-kubernetes` |
//! | bare metal hosts | `baremetalhosts.metal3.io/v1alpha1` in `openshift-machine-api` |
//! | hosted clusters | `hostedclusters`, `nodepools` `.hypershift.openshift.io/v1beta1`; `hostedcontrolplanes` in the control-plane namespace |
//! | hosted etcd | statefulset `etcd`, pods `app=etcd` (and exec into their `etcd` container: etcdctl, `snapshot save`/`status`, `cat` and `rm -f` of a snapshot file), persistentvolumeclaims `data-etcd-N`, in the control-plane namespace |
//! | hosted API servers | deployments `kube-apiserver`, `openshift-apiserver`, `openshift-oauth-apiserver` (and their `scale`) in the control-plane namespace |
//! | hosted encryption key | the Secret a HostedCluster's `spec.secretEncryption.aescbc.activeKey` names, `.data.key` |
//! | HyperShift operator | deployment `operator` in `hypershift` |
//!
//! Every failure goes through [`classify_kube_error`]. Deletes treat 404 as done; a 409 is
//! re-read and retried once here, then reported as transient — except a delete with a uid
//! precondition, whose 409 on that precondition means the object is gone (see
//! [`ManagementCluster::delete_hosted_etcd_pvc`]). Adapters never wait: the procedures poll
//! through the engine.

use crate::blocking::Blocking;
use crate::clock::SystemClock;
use crate::etcd::{EtcdCtl, ExecChannel, PodExec};
use crate::ssh::ExecOutput;
use drctl_runtime::clock::Clock;
use drctl_workflows::ports::{
    control_plane_namespace, etcd_pvc_name, BareMetalHostInfo, ClusterApi, ClusterOperatorInfo, ConditionInfo, Credential, CsrInfo,
    DeploymentScale, EndpointHealth, EtcdMemberList, HostedBackupFacts, HostedEtcdInfo, HostedEtcdPod, InstallerProgress, MachineInfo,
    MachineLayout, MachinePhase, ManagementCluster, NetworkLayout, NewBareMetalHost, NodeInfo, NodePoolScale, Operator, OperatorCondition,
    PausableInfo, PodInfo, PodStatus, PortError, PortResult, PvcInfo, SecretBytes, SnapshotStatus, WebhookInfo, PAUSED_BY_ANNOTATION,
    REPLICAS_BEFORE_ZERO_ANNOTATION,
};
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition};
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{json, Value};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub const MACHINE_API_NAMESPACE: &str = "openshift-machine-api";
/// The secret of the signer of the kubelets' certificates, and the annotation with its expiry.
pub const KUBELET_SIGNER: (&str, &str) = ("openshift-kube-apiserver-operator", "kube-apiserver-to-kubelet-signer");
pub const CERTIFICATE_NOT_AFTER: &str = "auth.openshift.io/certificate-not-after";
pub const OVN_NAMESPACE: &str = "openshift-ovn-kubernetes";
pub const OVN_MASTER_DAEMONSET: &str = "ovnkube-master";
/// The override that turns the etcd operator's quorum guard off.
pub const UNSAFE_NON_HA_ETCD: &str = "useUnsupportedUnsafeNonHANonProductionUnstableEtcd";
pub use drctl_workflows::csr::NODE_BOOTSTRAPPER;
/// Where the HyperShift operator runs on a management cluster, and its Deployment.
pub const HYPERSHIFT_NAMESPACE: &str = "hypershift";
pub const HYPERSHIFT_OPERATOR_DEPLOYMENT: &str = "operator";
/// The HostedCluster/NodePool condition that says whether the controller reconciles.
pub const RECONCILIATION_ACTIVE: &str = "ReconciliationActive";

// ---------------------------------------------------------------------------------------------
// Error classification
// ---------------------------------------------------------------------------------------------

/// A kube-rs failure reduced to what decides its fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeFailure {
    /// The API server answered with an error status (`Status` object or a bare body).
    Status { code: u16, reason: String, message: String },
    /// No connection: refused, reset, aborted, name not resolved, server went away mid-request.
    Connection(String),
    /// No answer in time.
    Timeout(String),
    /// An answer we cannot read (not JSON, not the object we asked for).
    Decode(String),
    /// Our side: kubeconfig, credentials, TLS setup, request construction.
    Config(String),
    /// Anything else from the transport.
    Transport(String),
}

/// The one classification of Kubernetes API failures.
///
/// 404 is [`PortError::NotFound`] (deletes turn it into success); 408, 429, 5xx and every
/// connection problem are transient; 409 is transient (the adapter has already re-read and
/// retried once); 400, 401, 403, 405, 422 and other 4xx are permanent.
pub fn classify(f: &KubeFailure) -> PortError {
    match f {
        KubeFailure::Status { code, reason, message } => {
            let text = format!("HTTP {code} {reason}: {message}");
            match *code {
                404 => PortError::NotFound(text),
                408 | 429 => PortError::Transient(text),
                409 => PortError::Transient(format!("{text} (still conflicting after a re-read)")),
                // 410 Gone: a stale resourceVersion; listing again fixes it.
                410 => PortError::Transient(text),
                500..=599 => PortError::Transient(text),
                400..=499 => PortError::Permanent(text),
                // A code outside the error ranges in an error: trust nothing, retry.
                _ => PortError::Transient(text),
            }
        }
        KubeFailure::Connection(m) => PortError::Transient(format!("API server unreachable: {m}")),
        KubeFailure::Timeout(m) => PortError::Transient(format!("API request timed out: {m}")),
        KubeFailure::Transport(m) => PortError::Transient(format!("API transport: {m}")),
        KubeFailure::Decode(m) => PortError::Permanent(format!("unexpected API response: {m}")),
        KubeFailure::Config(m) => PortError::Permanent(format!("API client configuration: {m}")),
    }
}

/// Reduce a transport error by walking its sources: I/O error kinds, hyper's timeout/closed
/// flags, the pooled client's "could not connect".
fn transport_failure(e: &(dyn std::error::Error + 'static)) -> KubeFailure {
    use std::io::ErrorKind as K;
    let text = error_chain(e);
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    // Bounded by the length of the source chain.
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                K::TimedOut | K::WouldBlock => return KubeFailure::Timeout(text),
                K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::NotConnected
                | K::BrokenPipe
                | K::UnexpectedEof
                | K::AddrNotAvailable
                | K::HostUnreachable
                | K::NetworkUnreachable => return KubeFailure::Connection(text),
                _ => {}
            }
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                return KubeFailure::Timeout(text);
            }
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                return KubeFailure::Connection(text);
            }
        }
        if let Some(c) = err.downcast_ref::<hyper_util::client::legacy::Error>() {
            if c.is_connect() {
                return KubeFailure::Connection(text);
            }
        }
        cur = err.source();
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("timed out") || lower.contains("deadline") {
        KubeFailure::Timeout(text)
    } else if lower.contains("dns error") || lower.contains("failed to lookup address") || lower.contains("connection") {
        KubeFailure::Connection(text)
    } else {
        KubeFailure::Transport(text)
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

/// Reduce a kube-rs error (an exhaustive match: a new variant is a compile error here).
pub fn kube_failure(e: &kube::Error) -> KubeFailure {
    use kube::Error as E;
    match e {
        E::Api(s) => KubeFailure::Status { code: s.code, reason: s.reason.clone(), message: s.message.clone() },
        E::HyperError(h) => transport_failure(h),
        E::Service(b) => transport_failure(b.as_ref()),
        E::ReadEvents(io) => transport_failure(io),
        E::UpgradeConnection(u) => transport_failure(u),
        E::SerdeError(s) => KubeFailure::Decode(s.to_string()),
        E::FromUtf8(s) => KubeFailure::Decode(s.to_string()),
        E::LinesCodecMaxLineLengthExceeded => KubeFailure::Decode(e.to_string()),
        E::ProxyProtocolUnsupported { .. }
        | E::ProxyProtocolDisabled { .. }
        | E::HttpError(_)
        | E::BuildRequest(_)
        | E::InferConfig(_)
        | E::InferKubeconfig(_)
        | E::RustlsTls(_)
        | E::TlsRequired
        | E::Auth(_) => KubeFailure::Config(error_chain(e)),
        E::Discovery(_) => KubeFailure::Decode(error_chain(e)),
    }
}

/// [`classify`] ∘ [`kube_failure`].
pub fn classify_kube_error(e: &kube::Error) -> PortError {
    classify(&kube_failure(e))
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    status_code(e) == Some(404)
}

/// 409 because the object already exists (create), as opposed to a write conflict.
fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

fn is_conflict(e: &kube::Error) -> bool {
    status_code(e) == Some(409) && !is_already_exists(e)
}

/// The field manager our writes are recorded under (`oc` uses `kubectl-patch` and friends).
pub const FIELD_MANAGER: &str = "drctl";

fn patch_params() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() }
}

fn post_params() -> PostParams {
    PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() }
}

fn during(what: &str, e: PortError) -> PortError {
    match e {
        PortError::Transient(m) => PortError::Transient(format!("{what}: {m}")),
        PortError::NotFound(m) => PortError::NotFound(format!("{what}: {m}")),
        PortError::Permanent(m) => PortError::Permanent(format!("{what}: {m}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------------------

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    let api_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    ApiResource { group: group.into(), version: version.into(), api_version, kind: kind.into(), plural: plural.into() }
}

/// `operator.openshift.io/v1` static-pod operator resources, each a singleton named `cluster`.
pub fn operator_resource(op: Operator) -> ApiResource {
    let kind = match op {
        Operator::Etcd => "Etcd",
        Operator::KubeApiServer => "KubeAPIServer",
        Operator::KubeControllerManager => "KubeControllerManager",
        Operator::KubeScheduler => "KubeScheduler",
    };
    resource("operator.openshift.io", "v1", kind, op.resource())
}

pub fn machine_resource() -> ApiResource {
    resource("machine.openshift.io", "v1beta1", "Machine", "machines")
}
pub fn cluster_version_resource() -> ApiResource {
    resource("config.openshift.io", "v1", "ClusterVersion", "clusterversions")
}
pub fn cluster_operator_resource() -> ApiResource {
    resource("config.openshift.io", "v1", "ClusterOperator", "clusteroperators")
}
pub fn webhook_configuration_resource(kind: &str) -> ApiResource {
    let plural = format!("{}s", kind.to_ascii_lowercase());
    resource("admissionregistration.k8s.io", "v1", kind, &plural)
}

/// The webhooks of one `ValidatingWebhookConfiguration` or `MutatingWebhookConfiguration` that
/// fail closed: `failurePolicy: Fail`, or no policy (v1 defaults to `Fail`).
pub fn fail_closed_webhooks_of(configuration: &Value) -> Vec<WebhookInfo> {
    let kind = str_at(configuration, "/kind").to_ascii_lowercase();
    let name = str_at(configuration, "/metadata/name");
    let hooks = configuration.get("webhooks").and_then(Value::as_array).map(|a| a.as_slice()).unwrap_or(&[]);
    hooks
        .iter()
        .filter(|h| matches!(h.get("failurePolicy").and_then(Value::as_str), None | Some("Fail")))
        .map(|h| {
            let service = h.pointer("/clientConfig/service");
            let target = match (service, h.pointer("/clientConfig/url").and_then(Value::as_str)) {
                (Some(svc), _) => format!("service {}/{}", str_at(svc, "/namespace"), str_at(svc, "/name")),
                (None, Some(url)) => format!("url {url}"),
                (None, None) => "no client config".into(),
            };
            WebhookInfo { configuration: format!("{kind}/{name}"), webhook: str_at(h, "/name").to_string(), target }
        })
        .collect()
}

pub fn network_config_resource() -> ApiResource {
    resource("config.openshift.io", "v1", "Network", "networks")
}
pub fn infrastructure_resource() -> ApiResource {
    resource("config.openshift.io", "v1", "Infrastructure", "infrastructures")
}
pub fn control_plane_machine_set_resource() -> ApiResource {
    resource("machine.openshift.io", "v1", "ControlPlaneMachineSet", "controlplanemachinesets")
}
pub fn baremetal_host_resource() -> ApiResource {
    resource("metal3.io", "v1alpha1", "BareMetalHost", "baremetalhosts")
}
pub fn hosted_cluster_resource() -> ApiResource {
    resource("hypershift.openshift.io", "v1beta1", "HostedCluster", "hostedclusters")
}
pub fn node_pool_resource() -> ApiResource {
    resource("hypershift.openshift.io", "v1beta1", "NodePool", "nodepools")
}
/// Lives in the control-plane namespace ([`control_plane_namespace`]), named as its HostedCluster.
pub fn hosted_control_plane_resource() -> ApiResource {
    resource("hypershift.openshift.io", "v1beta1", "HostedControlPlane", "hostedcontrolplanes")
}
/// Cluster API Machines (HyperShift's data plane, in the control-plane namespace).
pub fn capi_machine_resource() -> ApiResource {
    resource("cluster.x-k8s.io", "v1beta1", "Machine", "machines")
}
/// The label Cluster API puts on the Machines of a MachineDeployment (a NodePool's is named as
/// the pool).
pub const CAPI_DEPLOYMENT_LABEL: &str = "cluster.x-k8s.io/deployment-name";
fn daemonset_resource() -> ApiResource {
    resource("apps", "v1", "DaemonSet", "daemonsets")
}
fn deployment_resource() -> ApiResource {
    resource("apps", "v1", "Deployment", "deployments")
}
fn statefulset_resource() -> ApiResource {
    resource("apps", "v1", "StatefulSet", "statefulsets")
}
fn pod_resource() -> ApiResource {
    resource("", "v1", "Pod", "pods")
}
fn pvc_resource() -> ApiResource {
    resource("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims")
}

/// The merge patch the runbook applies to `etcd/cluster` for the quorum guard.
pub fn quorum_guard_patch(enabled: bool) -> Value {
    if enabled {
        json!({"spec": {"unsupportedConfigOverrides": null}})
    } else {
        json!({"spec": {"unsupportedConfigOverrides": {UNSAFE_NON_HA_ETCD: true}}})
    }
}

pub fn force_redeployment_patch(reason: &str) -> Value {
    json!({"spec": {"forceRedeploymentReason": reason}})
}

/// `spec.pausedUntil` of a HostedCluster or NodePool: `"true"` or an RFC 3339 time pauses,
/// `None` (null) resumes reconciliation.
pub fn paused_until_patch(until: Option<&str>) -> Value {
    json!({"spec": {"pausedUntil": until}})
}

/// The one merge patch that pauses or resumes a HostedCluster or NodePool and records who did:
/// `spec.pausedUntil` and the [`PAUSED_BY_ANNOTATION`] together. `None` is JSON `null`, which
/// removes the field (never `""`: newer CRDs reject an empty `pausedUntil` with 422).
pub fn pause_patch(paused_until: Option<&str>, paused_by: Option<&str>) -> Value {
    json!({"metadata": {"annotations": {PAUSED_BY_ANNOTATION: paused_by}}, "spec": {"pausedUntil": paused_until}})
}

pub use drctl_workflows::machines::strip_for_create;

/// Whether `ip` occurs in `text` as a whole address (`10.0.0.1` is not in `10.0.0.10`).
pub fn mentions_ip(text: &str, ip: &str) -> bool {
    if ip.is_empty() {
        return false;
    }
    // An IPv4 address continues with digits or dots; an IPv6 one with hex digits and colons.
    let v6 = ip.contains(':');
    let is_addr_char = |c: char| if v6 { c.is_ascii_hexdigit() || c == ':' || c == '.' } else { c.is_ascii_digit() || c == '.' };
    let mut start = 0;
    // Bounded by the text length: each round moves past one match.
    while let Some(i) = text[start..].find(ip) {
        let at = start + i;
        let before = text[..at].chars().next_back();
        let after = text[at + ip.len()..].chars().next();
        if !before.map(is_addr_char).unwrap_or(false) && !after.map(is_addr_char).unwrap_or(false) {
            return true;
        }
        start = at + ip.len().max(1);
    }
    false
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?.as_array()?.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// `spec.pausedUntil`; an empty string counts as absent (HyperShift does not pause on it).
fn paused_until_of(obj: &Value) -> Option<String> {
    obj.pointer("/spec/pausedUntil").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

/// A status condition's status, reason and `observedGeneration` (0 when absent).
pub fn condition_info(c: &Value) -> ConditionInfo {
    ConditionInfo {
        status: str_at(c, "/status").to_string(),
        reason: str_at(c, "/reason").to_string(),
        observed_generation: c.get("observedGeneration").and_then(Value::as_i64).unwrap_or(0),
    }
}

/// What a pause needs of a HostedCluster or NodePool, from its JSON. Permanent when the object
/// has no `metadata.name` (not an object the API server would serve).
pub fn pausable_info(obj: &Value) -> PortResult<PausableInfo> {
    let name = str_at(obj, "/metadata/name");
    if name.is_empty() {
        let kind = obj.get("kind").and_then(Value::as_str).filter(|k| !k.is_empty()).unwrap_or("object");
        let ns = str_at(obj, "/metadata/namespace");
        let where_ = if ns.is_empty() { String::new() } else { format!(" in namespace {ns}") };
        return Err(PortError::Permanent(format!("{kind}{where_} has no metadata.name")));
    }
    let annotation = format!("/metadata/annotations/{}", PAUSED_BY_ANNOTATION.replace('~', "~0").replace('/', "~1"));
    Ok(PausableInfo {
        name: name.to_string(),
        generation: obj.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0),
        paused_until: paused_until_of(obj),
        paused_by: obj.pointer(&annotation).and_then(Value::as_str).map(str::to_string),
        deleting: obj.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()),
        reconciliation_active: condition(obj, RECONCILIATION_ACTIVE).map(condition_info),
    })
}

/// What scaling needs of a NodePool, from its JSON.
pub fn node_pool_scale(np: &Value) -> PortResult<NodePoolScale> {
    let name = pausable_info(np)?.name;
    let whose = format!("NodePool {name}");
    let count = |path: &str| replica_count(np, path, &whose);
    let autoscaling = match (count("/spec/autoScaling/min")?, count("/spec/autoScaling/max")?) {
        (Some(min), Some(max)) => Some((min, max)),
        (None, None) => None,
        _ => return Err(PortError::Permanent(format!("NodePool {name}: spec.autoScaling needs both min and max"))),
    };
    Ok(NodePoolScale {
        replicas: count("/spec/replicas")?,
        autoscaling,
        drain_timeout: np.pointer("/spec/nodeDrainTimeout").and_then(Value::as_str).map(str::to_string),
        status_replicas: count("/status/replicas")?.unwrap_or(0),
        paused_until: paused_until_of(np),
        replicas_before_zero: np
            .pointer(&format!("/metadata/annotations/{}", REPLICAS_BEFORE_ZERO_ANNOTATION.replace('~', "~0").replace('/', "~1")))
            .and_then(Value::as_str)
            .and_then(|r| r.parse().ok()),
        name,
    })
}

/// The replica count at JSON pointer `path` of `obj` (`None` when absent or null); permanent
/// when the field holds anything but a count (`whose` names the object in the message).
fn replica_count(obj: &Value, path: &str, whose: &str) -> PortResult<Option<u32>> {
    match obj.pointer(path) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| PortError::Permanent(format!("{whose}: {path} is {v}, not a replica count"))),
    }
}

/// A Deployment has at least one available replica.
pub fn deployment_available(d: &Value) -> bool {
    d.pointer("/status/availableReplicas").and_then(Value::as_i64).unwrap_or(0) >= 1
}

/// Machine summary from its JSON.
pub fn machine_info(m: &Value) -> MachineInfo {
    let role = m.pointer("/metadata/labels/machine.openshift.io~1cluster-api-machine-role").and_then(Value::as_str);
    let ty = m.pointer("/metadata/labels/machine.openshift.io~1cluster-api-machine-type").and_then(Value::as_str);
    MachineInfo {
        name: str_at(m, "/metadata/name").to_string(),
        phase: MachinePhase::from(str_at(m, "/status/phase")),
        node: m.pointer("/status/nodeRef/name").and_then(Value::as_str).map(str::to_string),
        control_plane: role == Some("master") || ty == Some("master"),
        manifest: m.clone(),
    }
}

/// `NodeInstallerProgressing` and friends from an operator resource's JSON.
pub fn installer_progress_of(obj: &Value) -> InstallerProgress {
    let c = condition(obj, "NodeInstallerProgressing");
    InstallerProgress {
        reason: c.and_then(|c| c.get("reason")).and_then(Value::as_str).unwrap_or("").to_string(),
        message: c.and_then(|c| c.get("message")).and_then(Value::as_str).unwrap_or("").to_string(),
        latest_revision: obj.pointer("/status/latestAvailableRevision").and_then(Value::as_u64).unwrap_or(0),
        force_redeployment_reason: obj
            .pointer("/spec/forceRedeploymentReason")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    }
}

pub fn node_info(n: &Node) -> NodeInfo {
    let labels = n.metadata.labels.as_ref();
    let has = |k: &str| labels.map(|l| l.contains_key(k)).unwrap_or(false);
    let status = n.status.as_ref();
    let ready =
        status.and_then(|s| s.conditions.as_ref()).map(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")).unwrap_or(false);
    let addresses = status.and_then(|s| s.addresses.as_ref()).map(|a| a.as_slice()).unwrap_or(&[]);
    let internal_ip = addresses.iter().find(|a| a.type_ == "InternalIP").map(|a| a.address.clone()).unwrap_or_default();
    let mut taints: Vec<String> = Vec::new();
    for t in n.spec.as_ref().and_then(|s| s.taints.as_ref()).map(|t| t.as_slice()).unwrap_or(&[]) {
        if !taints.contains(&t.key) {
            taints.push(t.key.clone());
        }
    }
    // As RFC 3339 text whatever time type k8s-openapi is built with.
    let time = |t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.and_then(|t| serde_json::to_value(t).ok()).and_then(|v| v.as_str().and_then(drctl_runtime::clock::Timestamp::parse_rfc3339))
    };
    let status_since = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| time(c.last_heartbeat_time.as_ref()).max(time(c.last_transition_time.as_ref())));
    NodeInfo {
        name: n.metadata.name.clone().unwrap_or_default(),
        ready,
        control_plane: has("node-role.kubernetes.io/master") || has("node-role.kubernetes.io/control-plane"),
        internal_ip,
        taints,
        status_since,
        addresses: addresses.iter().map(|a| a.address.clone()).collect(),
    }
}

/// Pod summary; `phase` reads like the STATUS column of `oc get pods` (`CrashLoopBackOff`,
/// `Error`, `Terminating`, else the phase).
pub fn pod_info(p: &Pod) -> PodInfo {
    let status = p.status.as_ref();
    let mut phase = status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Unknown".into());
    for cs in status.and_then(|s| s.container_statuses.as_ref()).map(|v| v.as_slice()).unwrap_or(&[]) {
        let st = cs.state.as_ref();
        let reason = st
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone())
            .or_else(|| st.and_then(|s| s.terminated.as_ref()).and_then(|t| t.reason.clone()));
        if let Some(r) = reason.filter(|r| !r.is_empty()) {
            phase = r;
        }
    }
    if p.metadata.deletion_timestamp.is_some() {
        phase = "Terminating".into();
    }
    let ready =
        status.and_then(|s| s.conditions.as_ref()).map(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")).unwrap_or(false);
    PodInfo {
        name: p.metadata.name.clone().unwrap_or_default(),
        node: p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
        phase: PodStatus::from(phase),
        ready,
    }
}

pub fn csr_info(c: &CertificateSigningRequest) -> CsrInfo {
    let signer = c.spec.signer_name.clone();
    let requestor = c.spec.username.clone().unwrap_or_default();
    let conds = c.status.as_ref().and_then(|s| s.conditions.as_ref()).map(|v| v.as_slice()).unwrap_or(&[]);
    let has = |t: &str| conds.iter().any(|x| x.type_ == t && x.status != "False");
    let approved = has("Approved");
    let decided = approved || has("Denied") || has("Failed");
    // The node is named by the request itself (a first client certificate is requested by the
    // node-bootstrapper, not the node): one derivation, shared with the simulator.
    let (kind, node) = drctl_workflows::csr::classify(&signer, &requestor, &c.spec.request.0);
    let names = drctl_workflows::csr::requested_names(&c.spec.request.0).ok();
    let usages = c.spec.usages.clone().unwrap_or_default();
    let created = c
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| serde_json::to_value(t).ok())
        .and_then(|v| v.as_str().and_then(drctl_runtime::clock::Timestamp::parse_rfc3339));
    CsrInfo {
        name: c.metadata.name.clone().unwrap_or_default(),
        node,
        names,
        signer,
        requestor,
        kind,
        pending: !decided,
        approved,
        usages,
        created,
    }
}

fn cluster_operator_info(o: &Value) -> ClusterOperatorInfo {
    let is_true = |t: &str| condition(o, t).and_then(|c| c.get("status")).and_then(Value::as_str) == Some("True");
    ClusterOperatorInfo {
        name: str_at(o, "/metadata/name").to_string(),
        available: is_true("Available"),
        progressing: is_true("Progressing"),
        degraded: is_true("Degraded"),
    }
}

// ---------------------------------------------------------------------------------------------
// The adapter
// ---------------------------------------------------------------------------------------------

/// [`ClusterApi`] through kube-rs. Synchronous: see [`crate::blocking`]. A clone shares the
/// client (one connection pool).
#[derive(Clone)]
pub struct KubeApi {
    client: Client,
    rt: Blocking,
    clock: Arc<dyn Clock>,
    /// The API server URL from the kubeconfig (for messages and records; not a secret).
    server: String,
    /// What kind of credential the kubeconfig holds (never the credential itself).
    credential: Credential,
}

/// The kind of credential a kubeconfig user holds.
pub fn credential_of(a: &kube::config::AuthInfo) -> Credential {
    if a.client_certificate.is_some() || a.client_certificate_data.is_some() {
        Credential::ClientCertificate
    } else if a.token.is_some() || a.token_file.is_some() {
        Credential::BearerToken
    } else if a.exec.is_some() || a.auth_provider.is_some() {
        Credential::Plugin
    } else {
        Credential::Anonymous
    }
}

/// Why a kubeconfig cannot be used, without its contents: a kubeconfig holds private keys and
/// tokens, and a parser's message may quote the offending text (YAML errors print the lines
/// around the fault). Kept: the first line of the message with every quoted or back-ticked text
/// cut out, so what is left says what kind of fault and where (line and column).
pub fn kubeconfig_error(path: &Path, e: &(dyn std::error::Error + 'static)) -> PortError {
    kubeconfig_fault(path, &error_chain(e))
}

fn kubeconfig_fault(path: &Path, message: &str) -> PortError {
    let first = message.lines().next().unwrap_or_default().to_string();
    let mut reason = String::with_capacity(first.len());
    let mut quote: Option<char> = None;
    for ch in first.chars() {
        match (quote, ch) {
            (None, '"' | '\'' | '`') => {
                quote = Some(ch);
                reason.push('…');
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, c) => reason.push(c),
        }
    }
    PortError::Permanent(format!(
        "kubeconfig {} cannot be used: {} (its contents are not shown: a kubeconfig holds credentials)",
        path.display(),
        reason.trim_end_matches([':', ' '])
    ))
}

/// Which context of a kubeconfig a client uses, and the server it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigTarget {
    /// The context: the one asked for, else the file's `current-context`.
    pub context: String,
    /// The cluster's `server` URL.
    pub server: String,
}

/// Resolve `context` (or the current context) in the kubeconfig at `path` without connecting:
/// so a run can record exactly which context it acts on, and a resume uses that one even if the
/// file's `current-context` changed meanwhile. Reads only names and the server URL.
pub fn kubeconfig_target(path: &Path, context: Option<&str>) -> PortResult<KubeconfigTarget> {
    let kc = Kubeconfig::read_from(path).map_err(|e| kubeconfig_error(path, &e))?;
    let name = match context.map(str::to_string).or_else(|| kc.current_context.clone()).filter(|c| !c.is_empty()) {
        Some(c) => c,
        None => return Err(PortError::Permanent(format!("kubeconfig {} has no current-context; pass --context", path.display()))),
    };
    let ctx = kc.contexts.iter().find(|c| c.name == name).and_then(|c| c.context.as_ref()).ok_or_else(|| {
        let known: Vec<&str> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
        PortError::Permanent(format!("kubeconfig {} has no context {name:?} (it has: {})", path.display(), known.join(", ")))
    })?;
    let server =
        kc.clusters.iter().find(|c| c.name == ctx.cluster).and_then(|c| c.cluster.as_ref()).and_then(|c| c.server.clone()).ok_or_else(
            || {
                PortError::Permanent(format!(
                    "kubeconfig {}: context {name:?} names cluster {:?}, which has no server",
                    path.display(),
                    ctx.cluster
                ))
            },
        )?;
    Ok(KubeconfigTarget { context: name, server })
}

impl KubeApi {
    /// Cluster access like `oc`: the kubeconfig at `kubeconfig`, else `$KUBECONFIG`, else
    /// `~/.kube/config`; its current context or `context`. Only reads files; nothing is sent
    /// until the first call.
    pub fn connect(rt: Blocking, kubeconfig: Option<&Path>, context: Option<&str>) -> PortResult<Self> {
        let opts = KubeConfigOptions { context: context.map(str::to_string), cluster: None, user: None };
        // What an error names as the kubeconfig.
        let shown = kubeconfig.unwrap_or(Path::new("from $KUBECONFIG or ~/.kube/config"));
        let config = rt
            .block_on(async {
                match kubeconfig {
                    Some(p) => {
                        let kc = Kubeconfig::read_from(p)?;
                        Config::from_custom_kubeconfig(kc, &opts).await
                    }
                    None => Config::from_kubeconfig(&opts).await,
                }
            })
            .map_err(|e| kubeconfig_error(shown, &e))?;
        // A client that cannot be made from it (a key that does not decode, a bad certificate)
        // is the kubeconfig's fault too.
        Self::from_config(rt, config).map_err(|e| match e {
            PortError::Permanent(m) => kubeconfig_fault(shown, &m),
            other => other,
        })
    }

    /// From a ready [`Config`]; sets bounded timeouts (connect 10 s, read/write at most 60 s)
    /// and turns kube-rs's own retry of 429/503/504 off: retrying is the engine's job (durable,
    /// visible in the run's status, bounded by the run's deadline), not a hidden loop here.
    pub fn from_config(rt: Blocking, mut config: Config) -> PortResult<Self> {
        config.default_retry = false;
        config.connect_timeout = config.connect_timeout.or(Some(Duration::from_secs(10)));
        config.read_timeout = Some(config.read_timeout.unwrap_or(Duration::from_secs(60)).min(Duration::from_secs(60)));
        config.write_timeout = config.write_timeout.or(Some(Duration::from_secs(60)));
        // The client spawns its connection tasks on the runtime current at creation.
        let server = config.cluster_url.to_string();
        let credential = credential_of(&config.auth_info);
        let client = rt
            .block_on(async { Client::try_from(config) })
            .map_err(|e| PortError::Permanent(format!("API client: {}", error_chain(&e))))?;
        Ok(KubeApi { client, rt, clock: Arc::new(SystemClock), server, credential })
    }

    /// Use `clock` for [`ClusterApi::cluster_age_secs`] (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn blocking(&self) -> &Blocking {
        &self.rt
    }

    /// The API server URL this client talks to.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// `GET /version`: whether the API answers at all, and its `gitVersion` (`v1.28.6+f1618d5`).
    /// Cheap and allowed for every authenticated user: the reachability probe before a run.
    pub fn server_version(&self) -> PortResult<String> {
        let info = self.call("GET /version", async { self.client.apiserver_version().await })?;
        Ok(info.git_version)
    }

    fn call<T>(&self, what: &str, fut: impl Future<Output = Result<T, kube::Error>>) -> PortResult<T> {
        self.rt.block_on(fut).map_err(|e| {
            let pe = classify_kube_error(&e);
            tracing::debug!(what, error = %e, classified = ?pe, "API call failed");
            during(what, pe)
        })
    }

    fn dynamic(&self, ar: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, ar),
            None => Api::all_with(self.client.clone(), ar),
        }
    }

    fn get_json(&self, what: &str, ar: &ApiResource, namespace: Option<&str>, name: &str) -> PortResult<Option<Value>> {
        let api = self.dynamic(ar, namespace);
        let obj = self.call(what, async { api.get_opt(name).await })?;
        obj.map(|o| with_type(ar, to_json(&o))).transpose()
    }

    /// Get an object that must exist: a 404 is [`PortError::NotFound`] with the server's text.
    fn get_required_json(&self, what: &str, ar: &ApiResource, namespace: Option<&str>, name: &str) -> PortResult<Value> {
        let api = self.dynamic(ar, namespace);
        let obj = self.call(what, async { api.get(name).await })?;
        with_type(ar, to_json(&obj))
    }

    fn list_json(&self, what: &str, ar: &ApiResource, namespace: Option<&str>) -> PortResult<Vec<Value>> {
        let api = self.dynamic(ar, namespace);
        let list = self.call(what, async { api.list(&ListParams::default()).await })?;
        list.items.iter().map(|o| with_type(ar, to_json(o))).collect()
    }

    /// Merge-patch `name`; a 409 is retried once.
    fn merge_patch(&self, what: &str, ar: &ApiResource, namespace: Option<&str>, name: &str, patch: &Value) -> PortResult<()> {
        let api = self.dynamic(ar, namespace);
        let pp = patch_params();
        for attempt in 0..2 {
            match self.rt.block_on(api.patch(name, &pp, &Patch::Merge(patch))) {
                Ok(_) => return Ok(()),
                Err(e) if is_conflict(&e) && attempt == 0 => {
                    tracing::info!(what, "409 on patch; retrying once");
                    continue;
                }
                Err(e) => return Err(during(what, classify_kube_error(&e))),
            }
        }
        unreachable!("the loop returns on its second round")
    }

    /// Delete; absent is done, a 409 is retried once.
    fn delete_dynamic(&self, what: &str, ar: &ApiResource, namespace: Option<&str>, name: &str) -> PortResult<()> {
        let api = self.dynamic(ar, namespace);
        let dp = DeleteParams::default();
        self.delete_with(what, || api.delete(name, &dp))
    }

    fn delete_with<T, F, Fut>(&self, what: &str, call: F) -> PortResult<()>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        for attempt in 0..2 {
            match self.rt.block_on(call()) {
                Ok(_) => return Ok(()),
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) if is_conflict(&e) && attempt == 0 => continue,
                Err(e) => return Err(during(what, classify_kube_error(&e))),
            }
        }
        unreachable!("the loop returns on its second round")
    }

    fn operator(&self, op: Operator) -> PortResult<Value> {
        let what = format!("get {}.operator.openshift.io/cluster", op.resource());
        self.get_json(&what, &operator_resource(op), None, "cluster")?
            .ok_or_else(|| PortError::NotFound(format!("{what}: {}.operator.openshift.io/cluster does not exist", op.resource())))
    }

    /// `status.conditions[type]` of a static-pod operator resource: (status, reason, message),
    /// e.g. `EtcdMembersAvailable` → `2 of 3 members are available, ip-10-0-131-183.ec2.internal is unhealthy`.
    pub fn operator_condition(&self, op: Operator, kind: &str) -> PortResult<Option<(String, String, String)>> {
        let obj = self.operator(op)?;
        Ok(condition(&obj, kind).map(|c| {
            let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            (s("status"), s("reason"), s("message"))
        }))
    }

    /// Secret names in `namespace` (`etcd-peer-<node>`, `etcd-serving-<node>`, ...).
    pub fn list_secrets(&self, namespace: &str) -> PortResult<Vec<String>> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let list = self.call("list secrets", async { api.list_metadata(&ListParams::default()).await })?;
        let mut names: Vec<String> = list.items.into_iter().filter_map(|s| s.metadata.name).collect();
        names.sort();
        Ok(names)
    }

    /// Delete a secret; absent is done.
    pub fn delete_secret(&self, namespace: &str, name: &str) -> PortResult<()> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let dp = DeleteParams::default();
        self.delete_with(&format!("delete secret {namespace}/{name}"), || api.delete(name, &dp))
    }

    pub fn get_baremetal_host(&self, name: &str) -> PortResult<Option<Value>> {
        self.get_json(&format!("get baremetalhost {name}"), &baremetal_host_resource(), Some(MACHINE_API_NAMESPACE), name)
    }

    pub fn list_baremetal_hosts(&self) -> PortResult<Vec<Value>> {
        self.list_json("list baremetalhosts", &baremetal_host_resource(), Some(MACHINE_API_NAMESPACE))
    }

    /// Merge-patch a BareMetalHost (e.g. `{"spec":{"online":false}}`).
    pub fn patch_baremetal_host(&self, name: &str, merge_patch: &Value) -> PortResult<()> {
        self.merge_patch(&format!("patch baremetalhost {name}"), &baremetal_host_resource(), Some(MACHINE_API_NAMESPACE), name, merge_patch)
    }

    pub fn delete_baremetal_host(&self, name: &str) -> PortResult<()> {
        self.delete_dynamic(&format!("delete baremetalhost {name}"), &baremetal_host_resource(), Some(MACHINE_API_NAMESPACE), name)
    }

    pub fn get_hosted_cluster(&self, namespace: &str, name: &str) -> PortResult<Option<Value>> {
        self.get_json(&format!("get hostedcluster {namespace}/{name}"), &hosted_cluster_resource(), Some(namespace), name)
    }

    /// Pause (`Some("true")` or an RFC 3339 time) or resume (`None`) a hosted cluster's
    /// reconciliation: merge patch of `spec.pausedUntil`.
    pub fn set_hosted_cluster_paused_until(&self, namespace: &str, name: &str, until: Option<&str>) -> PortResult<()> {
        let what = format!("patch hostedcluster {namespace}/{name} pausedUntil");
        self.merge_patch(&what, &hosted_cluster_resource(), Some(namespace), name, &paused_until_patch(until))
    }

    pub fn get_node_pool(&self, namespace: &str, name: &str) -> PortResult<Option<Value>> {
        self.get_json(&format!("get nodepool {namespace}/{name}"), &node_pool_resource(), Some(namespace), name)
    }

    pub fn list_node_pools(&self, namespace: &str) -> PortResult<Vec<Value>> {
        self.list_json(&format!("list nodepools in {namespace}"), &node_pool_resource(), Some(namespace))
    }

    pub fn set_node_pool_paused_until(&self, namespace: &str, name: &str, until: Option<&str>) -> PortResult<()> {
        let what = format!("patch nodepool {namespace}/{name} pausedUntil");
        self.merge_patch(&what, &node_pool_resource(), Some(namespace), name, &paused_until_patch(until))
    }
}

fn to_json(o: &DynamicObject) -> PortResult<Value> {
    serde_json::to_value(o).map_err(|e| PortError::Permanent(format!("encode object: {e}")))
}

/// List items may come without `apiVersion`/`kind`; fill them in from the resource.
fn with_type(ar: &ApiResource, v: PortResult<Value>) -> PortResult<Value> {
    let mut v = v?;
    if let Some(o) = v.as_object_mut() {
        o.entry("apiVersion").or_insert_with(|| json!(ar.api_version));
        o.entry("kind").or_insert_with(|| json!(ar.kind));
    }
    Ok(v)
}

impl ClusterApi for KubeApi {
    fn credential(&self) -> Credential {
        self.credential
    }

    fn network_layout(&self) -> PortResult<NetworkLayout> {
        let network = self.get_required_json("get network.config/cluster", &network_config_resource(), None, "cluster")?;
        let network_type = str_at(&network, "/status/networkType").to_string();
        if network_type.is_empty() {
            return Err(PortError::Permanent("network.config/cluster has no status.networkType".into()));
        }
        // Interconnect has no ovnkube-master DaemonSet (an ovnkube-control-plane Deployment).
        let ovn_interconnect = network_type == "OVNKubernetes"
            && self.get_json("get ds/ovnkube-master", &daemonset_resource(), Some("openshift-ovn-kubernetes"), "ovnkube-master")?.is_none();
        Ok(NetworkLayout { network_type, ovn_interconnect })
    }

    fn fail_closed_webhooks(&self) -> PortResult<Vec<WebhookInfo>> {
        let mut out = vec![];
        for kind in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"] {
            let what = format!("list {}s", kind.to_ascii_lowercase());
            for c in self.list_json(&what, &webhook_configuration_resource(kind), None)? {
                out.extend(fail_closed_webhooks_of(&c));
            }
        }
        Ok(out)
    }

    fn machine_layout(&self) -> PortResult<MachineLayout> {
        let infra = self.get_required_json("get infrastructure/cluster", &infrastructure_resource(), None, "cluster")?;
        // `status.platform` is the older field; `platformStatus.type` the current one.
        let platform = [str_at(&infra, "/status/platformStatus/type"), str_at(&infra, "/status/platform")]
            .into_iter()
            .find(|p| !p.is_empty())
            .unwrap_or("None")
            .to_string();
        let cpms = self.get_json(
            "get controlplanemachineset/cluster",
            &control_plane_machine_set_resource(),
            Some("openshift-machine-api"),
            "cluster",
        );
        // Clusters before 4.12 do not serve the resource at all: the same as none.
        let active = match cpms {
            Ok(Some(c)) => str_at(&c, "/spec/state") == "Active",
            Ok(None) | Err(PortError::NotFound(_)) => false,
            Err(e) => return Err(e),
        };
        Ok(MachineLayout { platform, control_plane_machine_set_active: active })
    }

    fn cluster_version(&self) -> PortResult<String> {
        let cv = self
            .get_json("get clusterversion/version", &cluster_version_resource(), None, "version")?
            .ok_or_else(|| PortError::NotFound("clusterversion/version does not exist (not an OpenShift cluster?)".into()))?;
        let desired = str_at(&cv, "/status/desired/version");
        let latest = cv.pointer("/status/history/0/version").and_then(Value::as_str).unwrap_or("");
        let version = [desired, latest].into_iter().find(|v| !v.is_empty()).map(str::to_string);
        version.ok_or_else(|| PortError::Permanent("clusterversion/version has no status.desired.version".into()))
    }

    fn cluster_age_secs(&self) -> PortResult<u64> {
        let api = self.dynamic(&cluster_version_resource(), None);
        let cv = self
            .call("get clusterversion/version", async { api.get_opt("version").await })?
            .ok_or_else(|| PortError::NotFound("clusterversion/version does not exist".into()))?;
        let created = cv
            .metadata
            .creation_timestamp
            .as_ref()
            .ok_or_else(|| PortError::Permanent("clusterversion/version has no creationTimestamp".into()))?;
        let created_ms = u64::try_from(created.0.as_millisecond()).unwrap_or(0);
        Ok(self.clock.now().0.saturating_sub(created_ms) / 1000)
    }

    fn cluster_operators(&self) -> PortResult<Vec<ClusterOperatorInfo>> {
        let mut v: Vec<ClusterOperatorInfo> =
            self.list_json("list clusteroperators", &cluster_operator_resource(), None)?.iter().map(cluster_operator_info).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    fn list_nodes(&self) -> PortResult<Vec<NodeInfo>> {
        let api: Api<Node> = Api::all(self.client.clone());
        let list = self.call("list nodes", async { api.list(&ListParams::default()).await })?;
        Ok(list.items.iter().map(node_info).collect())
    }

    fn delete_node(&self, name: &str) -> PortResult<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        let dp = DeleteParams::default();
        self.delete_with(&format!("delete node {name}"), || api.delete(name, &dp))
    }

    fn list_csrs(&self) -> PortResult<Vec<CsrInfo>> {
        let api: Api<CertificateSigningRequest> = Api::all(self.client.clone());
        let list = self.call("list csrs", async { api.list(&ListParams::default()).await })?;
        Ok(list.items.iter().map(csr_info).collect())
    }

    fn approve_csr(&self, name: &str) -> PortResult<()> {
        let api: Api<CertificateSigningRequest> = Api::all(self.client.clone());
        let what = format!("approve csr {name}");
        // Read, add the condition, write the approval subresource; on a 409 read again once.
        for attempt in 0..2 {
            let mut csr = self.call(&what, async { api.get(name).await })?;
            let info = csr_info(&csr);
            if info.approved {
                return Ok(());
            }
            if !info.pending {
                return Err(PortError::Permanent(format!("{what}: the CSR was denied or failed")));
            }
            let now = k8s_openapi::jiff::Timestamp::from_millisecond(self.clock.now().0 as i64)
                .ok()
                .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time);
            let status = csr.status.get_or_insert_with(Default::default);
            status.conditions.get_or_insert_with(Vec::new).push(CertificateSigningRequestCondition {
                type_: "Approved".into(),
                status: "True".into(),
                reason: Some("DrctlApprove".into()),
                message: Some("This CSR was approved by drctl (runbook step: approve the pending CSRs).".into()),
                last_update_time: now.clone(),
                last_transition_time: now,
            });
            match self.rt.block_on(api.replace_subresource("approval", name, &post_params(), &csr)) {
                Ok(_) => return Ok(()),
                Err(e) if is_conflict(&e) && attempt == 0 => {
                    tracing::info!(csr = name, "409 on approval; re-reading and retrying once");
                    continue;
                }
                Err(e) => return Err(during(&what, classify_kube_error(&e))),
            }
        }
        unreachable!("the loop returns on its second round")
    }

    fn list_pods(&self, namespace: &str, selector: &str) -> PortResult<Vec<PodInfo>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let lp = ListParams::default().labels(selector);
        let list = self.call(&format!("list pods -l {selector} in {namespace}"), async { api.list(&lp).await })?;
        Ok(list.items.iter().map(pod_info).collect())
    }

    fn delete_pod(&self, namespace: &str, name: &str) -> PortResult<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let dp = DeleteParams::default();
        self.delete_with(&format!("delete pod {namespace}/{name}"), || api.delete(name, &dp))
    }

    fn ovn_master_references(&self, ips: &[String]) -> PortResult<Vec<String>> {
        // Absent (OVN-Kubernetes with interconnect has no ovnkube-master): nothing references them.
        let Some(ds) = self.get_json("get ds/ovnkube-master", &daemonset_resource(), Some(OVN_NAMESPACE), OVN_MASTER_DAEMONSET)? else {
            return Ok(vec![]);
        };
        let text = ds.to_string();
        Ok(ips.iter().filter(|ip| mentions_ip(&text, ip)).cloned().collect())
    }

    fn list_machines(&self) -> PortResult<Vec<MachineInfo>> {
        Ok(self.list_json("list machines", &machine_resource(), Some(MACHINE_API_NAMESPACE))?.iter().map(machine_info).collect())
    }

    fn get_machine(&self, name: &str) -> PortResult<Option<MachineInfo>> {
        Ok(self
            .get_json(&format!("get machine {name}"), &machine_resource(), Some(MACHINE_API_NAMESPACE), name)?
            .as_ref()
            .map(machine_info))
    }

    fn delete_machine(&self, name: &str) -> PortResult<()> {
        self.delete_dynamic(&format!("delete machine {name}"), &machine_resource(), Some(MACHINE_API_NAMESPACE), name)
    }

    fn create_machine(&self, manifest: &Value) -> PortResult<()> {
        let body = strip_for_create(manifest);
        let name = str_at(&body, "/metadata/name").to_string();
        if name.is_empty() {
            return Err(PortError::Permanent("create machine: the manifest has no metadata.name".into()));
        }
        let what = format!("create machine {name}");
        let obj: DynamicObject =
            serde_json::from_value(body).map_err(|e| PortError::Permanent(format!("{what}: invalid manifest: {e}")))?;
        let api = self.dynamic(&machine_resource(), Some(MACHINE_API_NAMESPACE));
        for attempt in 0..2 {
            match self.rt.block_on(api.create(&post_params(), &obj)) {
                Ok(_) => return Ok(()),
                Err(e) if is_already_exists(&e) => {
                    // Created before (a re-run after a crash): done, unless it is on its way out.
                    return match self.get_json(&what, &machine_resource(), Some(MACHINE_API_NAMESPACE), &name)? {
                        Some(m) if m.pointer("/metadata/deletionTimestamp").is_some() => {
                            Err(PortError::Transient(format!("{what}: a machine of that name is still being deleted")))
                        }
                        Some(_) => Ok(()),
                        None => Err(PortError::Transient(format!("{what}: it existed a moment ago and is gone now"))),
                    };
                }
                Err(e) if is_conflict(&e) && attempt == 0 => continue,
                Err(e) => return Err(during(&what, classify_kube_error(&e))),
            }
        }
        unreachable!("the loop returns on its second round")
    }

    fn set_quorum_guard(&self, enabled: bool) -> PortResult<()> {
        let what = if enabled { "turn the etcd quorum guard back on" } else { "turn the etcd quorum guard off" };
        self.merge_patch(what, &operator_resource(Operator::Etcd), None, "cluster", &quorum_guard_patch(enabled))
    }

    fn quorum_guard_enabled(&self) -> PortResult<bool> {
        let etcd = self.operator(Operator::Etcd)?;
        let off = etcd.pointer("/spec/unsupportedConfigOverrides").and_then(|o| o.get(UNSAFE_NON_HA_ETCD));
        Ok(!truthy(off))
    }

    fn force_redeployment(&self, operator: Operator, reason: &str) -> PortResult<()> {
        let what = format!("force a redeployment of {operator}");
        self.merge_patch(&what, &operator_resource(operator), None, "cluster", &force_redeployment_patch(reason))
    }

    fn installer_progress(&self, operator: Operator) -> PortResult<InstallerProgress> {
        Ok(installer_progress_of(&self.operator(operator)?))
    }

    fn etcd_members_available(&self) -> PortResult<Option<OperatorCondition>> {
        let c = self.operator_condition(Operator::Etcd, "EtcdMembersAvailable")?;
        Ok(c.map(|(status, reason, message)| OperatorCondition { status, reason, message }))
    }

    fn list_secrets(&self, namespace: &str) -> PortResult<Vec<String>> {
        KubeApi::list_secrets(self, namespace)
    }

    fn delete_secret(&self, namespace: &str, name: &str) -> PortResult<()> {
        KubeApi::delete_secret(self, namespace, name)
    }

    fn list_bare_metal_hosts(&self) -> PortResult<Vec<BareMetalHostInfo>> {
        Ok(self.list_baremetal_hosts()?.iter().map(bare_metal_host_info).collect())
    }

    fn delete_bare_metal_host(&self, name: &str) -> PortResult<()> {
        self.delete_baremetal_host(name)
    }

    fn create_bare_metal_host(&self, host: &NewBareMetalHost) -> PortResult<()> {
        let what = format!("create baremetalhost {}", host.name);
        let obj: DynamicObject =
            serde_json::from_value(host.manifest()).map_err(|e| PortError::Permanent(format!("{what}: invalid manifest: {e}")))?;
        let api = self.dynamic(&baremetal_host_resource(), Some(MACHINE_API_NAMESPACE));
        match self.rt.block_on(api.create(&post_params(), &obj)) {
            Ok(_) => Ok(()),
            // Created before (a re-run after a crash): the step checks what it finds.
            Err(e) if is_already_exists(&e) => Ok(()),
            Err(e) => Err(during(&what, classify_kube_error(&e))),
        }
    }

    fn apply_bmc_secret(&self, name: &str, credentials: &drctl_workflows::bmc::BmcCredentials) -> PortResult<()> {
        let what = format!("create secret {MACHINE_API_NAMESPACE}/{name}");
        let api: Api<Secret> = Api::namespaced(self.client.clone(), MACHINE_API_NAMESPACE);
        let data = [("username", &credentials.username), ("password", &credentials.password)];
        let secret = Secret {
            metadata: kube::api::ObjectMeta { name: Some(name.to_string()), ..Default::default() },
            type_: Some("Opaque".into()),
            string_data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        };
        match self.rt.block_on(api.create(&post_params(), &secret)) {
            Ok(_) => Ok(()),
            Err(e) if is_already_exists(&e) => {
                // Written before: replace its data (a corrected credentials file takes effect).
                let patch = json!({ "stringData": { "username": credentials.username, "password": credentials.password } });
                match self.rt.block_on(api.patch(name, &patch_params(), &Patch::Merge(&patch))) {
                    Ok(_) => Ok(()),
                    Err(e) => Err(during(&what, classify_kube_error(&e))),
                }
            }
            Err(e) => Err(during(&what, classify_kube_error(&e))),
        }
    }

    fn kubelet_signer_expiry(&self) -> PortResult<Option<drctl_runtime::clock::Timestamp>> {
        let (ns, name) = KUBELET_SIGNER;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let what = format!("get secret {ns}/{name}");
        let Some(secret) = self.call(&what, async { api.get_metadata_opt(name).await })? else {
            return Err(PortError::NotFound(format!("{what}: it does not exist")));
        };
        let not_after = secret.metadata.annotations.as_ref().and_then(|a| a.get(CERTIFICATE_NOT_AFTER));
        match not_after {
            None => Ok(None),
            Some(t) => drctl_runtime::clock::Timestamp::parse_rfc3339(t)
                .map(Some)
                .ok_or_else(|| PortError::Permanent(format!("{what}: {CERTIFICATE_NOT_AFTER} is not an RFC 3339 time: {t:?}"))),
        }
    }

    fn remove_machine_finalizers(&self, name: &str) -> PortResult<()> {
        let what = format!("remove the finalizers of machine {name}");
        let patch = json!({ "metadata": { "finalizers": null } });
        match self.merge_patch(&what, &machine_resource(), Some(MACHINE_API_NAMESPACE), name, &patch) {
            Err(PortError::NotFound(_)) => Ok(()),
            other => other,
        }
    }
}

/// A `metal3.io/v1alpha1` BareMetalHost as the procedures read it.
pub fn bare_metal_host_info(h: &Value) -> BareMetalHostInfo {
    let opt = |ptr: &str| h.pointer(ptr).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let error = opt("/status/errorMessage").map(|m| match opt("/status/errorType") {
        Some(t) => format!("{t}: {m}"),
        None => m,
    });
    BareMetalHostInfo {
        name: str_at(h, "/metadata/name").to_string(),
        state: str_at(h, "/status/provisioning/state").to_string(),
        error,
        consumer: opt("/spec/consumerRef/name"),
        bmc_address: str_at(h, "/spec/bmc/address").to_string(),
        boot_mac_address: str_at(h, "/spec/bootMACAddress").to_ascii_lowercase(),
        powered_on: truthy(h.pointer("/status/poweredOn")),
        deleting: h.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()),
    }
}

/// `etcdctl` in the `etcdctl` container of etcd pod `etcd-<node>` (`oc rsh -n openshift-etcd
/// etcd-<node>`), with the endpoints and certificates of the container's own environment.
pub struct KubeEtcdPods(pub KubeApi);

impl KubeEtcdPods {
    fn in_pod(&self, node: &str) -> crate::etcd::EtcdCtl {
        crate::etcd::EtcdCtl::in_pod(&self.0, &format!("etcd-{node}"))
    }
}

impl drctl_workflows::ports::EtcdPods for KubeEtcdPods {
    fn member_list(&self, node: &str) -> PortResult<drctl_workflows::ports::EtcdMemberList> {
        use drctl_workflows::ports::Etcd;
        self.in_pod(node).member_list()
    }

    fn member_remove(&self, node: &str, id: u64) -> PortResult<()> {
        use drctl_workflows::ports::Etcd;
        self.in_pod(node).member_remove(id)
    }

    fn endpoint_health(&self, node: &str) -> PortResult<Vec<drctl_workflows::ports::EndpointHealth>> {
        // Every member, not only the pod's own ETCDCTL_ENDPOINTS default: `--cluster`.
        self.in_pod(node).endpoint_health_cluster()
    }
}

// ---------------------------------------------------------------------------------------------
// The etcd of a hosted control plane (HyperShift), in its control-plane namespace
// ---------------------------------------------------------------------------------------------

/// StatefulSet `etcd` of a control-plane namespace, and the label of its pods.
pub const HOSTED_ETCD_STATEFULSET: &str = "etcd";
pub const HOSTED_ETCD_SELECTOR: &str = "app=etcd";
/// The container of a hosted etcd pod that runs etcd (and holds etcdctl and the client
/// certificate).
pub const HOSTED_ETCD_CONTAINER: &str = "etcd";
/// The CA the hosted etcd pods mount from ConfigMap `etcd-ca`: what etcdctl trusts by default.
pub const HOSTED_ETCD_CA: &str = "/etc/etcd/tls/etcd-ca/ca.crt";
/// The CA path of the older runbooks: Secret `etcd-client-tls` has carried no CA since late
/// 2022, so it is used only when a pod lacks [`HOSTED_ETCD_CA`] and has this file.
pub const HOSTED_ETCD_LEGACY_CA: &str = "/etc/etcd/tls/client/etcd-client-ca.crt";
pub const HOSTED_ETCD_CLIENT_CERT: &str = "/etc/etcd/tls/client/etcd-client.crt";
pub const HOSTED_ETCD_CLIENT_KEY: &str = "/etc/etcd/tls/client/etcd-client.key";
/// The member the pod runs, on its own client port (`etcd-client:2379` would reach any member).
pub const HOSTED_ETCD_ENDPOINT: &str = "https://localhost:2379";
/// The HostedControlPlane condition the control-plane operator sets from the ready members.
pub const ETCD_AVAILABLE: &str = "EtcdAvailable";
/// What a HostedCluster without `spec.controllerAvailabilityPolicy` gets (the CRD's default).
pub const DEFAULT_AVAILABILITY_POLICY: &str = "HighlyAvailable";

/// The waiting reasons of a container that is merely on its way up: `oc get pods` shows them,
/// but they say nothing the phase (`Pending`) does not.
const STARTING_REASONS: &[&str] = &["ContainerCreating", "PodInitializing"];

/// A hosted etcd pod from the API's `Pod`: its status word as `oc get pods` shows it
/// ([`pod_info`], less the reasons of a container still starting), readiness, and the claim of
/// its `data` volume (empty when it has none).
pub fn hosted_etcd_pod(p: &Pod) -> HostedEtcdPod {
    let info = pod_info(p);
    let status = match info.phase {
        PodStatus::Other(reason) if STARTING_REASONS.contains(&reason.as_str()) => {
            PodStatus::from(p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Unknown"))
        }
        word => word,
    };
    let volumes = p.spec.as_ref().and_then(|s| s.volumes.as_ref()).map(|v| v.as_slice()).unwrap_or(&[]);
    let pvc = volumes
        .iter()
        .find(|v| v.name == "data")
        .and_then(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .unwrap_or_default();
    HostedEtcdPod { name: info.name, uid: p.metadata.uid.clone().unwrap_or_default(), status, ready: info.ready, pvc }
}

/// A PersistentVolumeClaim from its JSON.
pub fn pvc_info(c: &Value) -> PvcInfo {
    PvcInfo {
        name: str_at(c, "/metadata/name").to_string(),
        uid: str_at(c, "/metadata/uid").to_string(),
        phase: str_at(c, "/status/phase").to_string(),
        terminating: c.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()),
    }
}

/// [`HostedEtcdInfo`] from what the API served: the HostedCluster, StatefulSet `etcd`, the pods
/// labelled `app=etcd`, every PVC of the namespace (only the `data-etcd-N` ones are kept) and
/// the HostedControlPlane (absent: no condition written yet). Pods and PVCs by name.
pub fn hosted_etcd_info(hc: &Value, sts: &Value, pods: &[Pod], pvcs: &[Value], hcp: Option<&Value>) -> PortResult<HostedEtcdInfo> {
    let whose = format!("statefulset {}/{HOSTED_ETCD_STATEFULSET}", str_at(sts, "/metadata/namespace"));
    let mut pods: Vec<HostedEtcdPod> = pods.iter().map(hosted_etcd_pod).collect();
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    let claim_prefix = etcd_pvc_name("etcd-");
    let mut pvcs: Vec<PvcInfo> = pvcs.iter().map(pvc_info).filter(|c| c.name.starts_with(&claim_prefix)).collect();
    pvcs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(HostedEtcdInfo {
        availability_policy: hc
            .pointer("/spec/controllerAvailabilityPolicy")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .unwrap_or(DEFAULT_AVAILABILITY_POLICY)
            .to_string(),
        // Absent `spec.replicas` is defaulted to 1 by the API server.
        replicas: replica_count(sts, "/spec/replicas", &whose)?.unwrap_or(1),
        // Absent until a pod is ready.
        ready_replicas: replica_count(sts, "/status/readyReplicas", &whose)?.unwrap_or(0),
        pods,
        pvcs,
        etcd_available: hcp.and_then(|h| condition(h, ETCD_AVAILABLE)).map(|c| str_at(c, "/status").to_string()),
    })
}

/// The key of an etcd encryption-key Secret's data that holds the AES-CBC key.
pub const ENCRYPTION_KEY_FIELD: &str = "key";
/// What a HostedCluster without `spec.etcd.managementType` gets (the CRD's default).
pub const DEFAULT_ETCD_MANAGEMENT: &str = "Managed";

/// What a backup checks of a HostedCluster, from its JSON: the `Available` condition's status,
/// `spec.etcd.managementType` (the CRD's default when absent), `spec.secretEncryption.type` and
/// `.aescbc.activeKey.name` (absent when not set or empty).
pub fn hosted_backup_facts(hc: &Value) -> HostedBackupFacts {
    let present = |ptr: &str| Some(str_at(hc, ptr)).filter(|s| !s.is_empty()).map(str::to_string);
    HostedBackupFacts {
        available: condition(hc, "Available").map(|c| str_at(c, "/status").to_string()),
        etcd_management: present("/spec/etcd/managementType").unwrap_or_else(|| DEFAULT_ETCD_MANAGEMENT.to_string()),
        encryption_type: present("/spec/secretEncryption/type"),
        active_key_secret: present("/spec/secretEncryption/aescbc/activeKey/name"),
    }
}

/// A Deployment by its scale, from its JSON: `spec.replicas` (1 when absent, the API server's
/// default), `status.replicas` and `status.readyReplicas` (0 when absent).
pub fn deployment_scale(d: &Value) -> PortResult<DeploymentScale> {
    let name = str_at(d, "/metadata/name").to_string();
    let whose = format!("deployment {name}");
    Ok(DeploymentScale {
        replicas: replica_count(d, "/spec/replicas", &whose)?.unwrap_or(1),
        status_replicas: replica_count(d, "/status/replicas", &whose)?.unwrap_or(0),
        ready_replicas: replica_count(d, "/status/readyReplicas", &whose)?.unwrap_or(0),
        name,
    })
}

/// What the API server answers when a pod's container cannot be entered *now* (it crash-loops,
/// is not scheduled yet, or the pod ended and awaits replacement by its controller): the pod
/// may serve again in a moment, so the refusal is transient. Anything else keeps its class.
const EXEC_REFUSALS: &[&str] = &[
    "unable to upgrade connection",
    "container not found",
    "does not have a host assigned",
    "cannot exec into a container in a completed pod",
];

/// How a failed exec request is classified: as any API error, except that a refusal to enter a
/// container is transient (see [`EXEC_REFUSALS`]). Every exec channel classifies its errors here.
pub(crate) fn classify_exec_error(e: &kube::Error) -> PortError {
    exec_refusal(classify_kube_error(e))
}

fn exec_refusal(e: PortError) -> PortError {
    match e {
        PortError::Permanent(m) if EXEC_REFUSALS.iter().any(|r| m.contains(r)) => PortError::Transient(m),
        other => other,
    }
}

/// An exec channel into the `etcd` container of a hosted etcd pod. The container's own
/// environment names no certificates, so etcdctl gets them in its environment (with CA `ca`;
/// `None` for a command that is not etcdctl); a refusal to enter the container is transient.
struct HostedEtcdExec {
    inner: Arc<dyn ExecChannel>,
    ca: Option<String>,
}

impl ExecChannel for HostedEtcdExec {
    fn run(&self, argv: &[String], env: &[(String, String)], timeout: Duration) -> PortResult<ExecOutput> {
        let mut env = env.to_vec();
        if let Some(ca) = &self.ca {
            env.push(("ETCDCTL_CACERT".into(), ca.clone()));
            env.push(("ETCDCTL_CERT".into(), HOSTED_ETCD_CLIENT_CERT.into()));
            env.push(("ETCDCTL_KEY".into(), HOSTED_ETCD_CLIENT_KEY.into()));
        }
        // The channel (a `PodExec`) classifies a refusal to enter the container as transient.
        self.inner.run(argv, &env, timeout)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// How long the `test -f` probe of the legacy CA may take (one exec, no etcd involved).
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// Run `op` with etcdctl in the `etcd` container behind `channel`, against the member the pod
/// runs: with [`HOSTED_ETCD_CA`]; if etcdctl cannot open that file, and only then, with
/// [`HOSTED_ETCD_LEGACY_CA`] when `test -f` finds it in the pod (HOSTED.md §E3). The first
/// failure stands when the pod has neither.
pub fn hosted_etcdctl<T>(channel: Arc<dyn ExecChannel>, op: impl Fn(&EtcdCtl) -> PortResult<T>) -> PortResult<T> {
    let etcdctl = |ca: &str| {
        let ch = HostedEtcdExec { inner: channel.clone(), ca: Some(ca.to_string()) };
        EtcdCtl::new(Box::new(ch), "etcdctl", vec![HOSTED_ETCD_ENDPOINT.to_string()])
    };
    with_hosted_etcd_ca(&channel, |ca| op(&etcdctl(ca)))
}

/// Run `op` with the CA path etcdctl should trust in the pod behind `channel`:
/// [`HOSTED_ETCD_CA`]; if etcdctl cannot open that file, and only then, [`HOSTED_ETCD_LEGACY_CA`]
/// when `test -f` finds it in the pod (HOSTED.md §E3). The first failure stands when the pod
/// has neither.
fn with_hosted_etcd_ca<T>(channel: &Arc<dyn ExecChannel>, op: impl Fn(&str) -> PortResult<T>) -> PortResult<T> {
    let first = op(HOSTED_ETCD_CA);
    let missing = format!("open {HOSTED_ETCD_CA}: no such file or directory");
    match first {
        // etcdctl's own words for the file it could not open (the error's class is etcdctl's).
        Err(e) if e.to_string().contains(&missing) => {
            let probe = HostedEtcdExec { inner: channel.clone(), ca: None };
            let argv = ["test", "-f", HOSTED_ETCD_LEGACY_CA].map(str::to_string);
            let found = probe.run(&argv, &[], PROBE_TIMEOUT)?;
            let legacy_ca_found = found.code == 0;
            tracing::info!(channel = %channel.describe(), legacy_ca_found, "hosted etcd: the default CA is missing; probed the legacy one");
            if legacy_ca_found {
                op(HOSTED_ETCD_LEGACY_CA)
            } else {
                Err(e)
            }
        }
        other => other,
    }
}

/// Where `etcdutl` is in the etcd image when it has one (etcd 3.5 and later).
pub const HOSTED_ETCDUTL: &str = "/usr/bin/etcdutl";
/// How long `etcdctl snapshot save` may take: it streams the whole keyspace (up to the 8 GiB
/// backend quota) from the member onto the PVC.
const SNAPSHOT_SAVE_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// How long `snapshot status` may take: it reads (and hashes) the whole file.
const SNAPSHOT_STATUS_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long `rm -f` may take.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment etcdctl gets for the v3 API (carried by `env`: the exec API takes none).
fn etcdctl_v3_env() -> Vec<(String, String)> {
    vec![("ETCDCTL_API".to_string(), "3".to_string())]
}

/// `etcdctl --cacert <ca> --cert … --key … --endpoints=https://localhost:2379 snapshot save
/// <path>` (to run with [`etcdctl_v3_env`]): the member the pod runs, written to `path`.
pub fn snapshot_save_argv(ca: &str, path: &str) -> Vec<String> {
    [
        "etcdctl",
        "--cacert",
        ca,
        "--cert",
        HOSTED_ETCD_CLIENT_CERT,
        "--key",
        HOSTED_ETCD_CLIENT_KEY,
        &format!("--endpoints={HOSTED_ETCD_ENDPOINT}"),
        "snapshot",
        "save",
        path,
    ]
    .map(str::to_string)
    .to_vec()
}

/// `snapshot status <path> -w json` and its environment: with `etcdutl` when the image has it
/// (etcd 3.6 dropped the command from etcdctl; 3.5 deprecates it there), else etcdctl. Offline:
/// no endpoint, no certificates.
pub fn snapshot_status_argv(etcdutl: bool, path: &str) -> (Vec<String>, Vec<(String, String)>) {
    let tool = if etcdutl { "etcdutl" } else { "etcdctl" };
    let argv = [tool, "snapshot", "status", path, "-w", "json"].map(str::to_string).to_vec();
    (argv, if etcdutl { vec![] } else { etcdctl_v3_env() })
}

/// A failed `snapshot save`: what etcdctl said, classified as [`classify_etcdctl`] does (an
/// unreachable member — `context deadline exceeded` — is transient), except that a full volume
/// is permanent (waiting does not free the PVC; someone must make room or grow it).
pub fn classify_snapshot_save(stderr: &str) -> PortError {
    match crate::etcd::classify_etcdctl(stderr) {
        PortError::Transient(m) | PortError::NotFound(m) if stderr.to_ascii_lowercase().contains("no space left on device") => {
            PortError::Permanent(m)
        }
        e => e,
    }
}

/// A failed `snapshot status`, `cat` or `rm` of a file in the pod: what the tool said. A file
/// that is not there is permanent, as the simulated port has it: it was written (or named) by
/// the same run a moment before, and asking again will not make it appear.
pub fn classify_file_command(command: &str, path: &str, code: i32, stderr: &str) -> PortError {
    let e = crate::etcd::classify_etcdctl(stderr);
    let said = match &e {
        PortError::Transient(m) | PortError::NotFound(m) | PortError::Permanent(m) => m.trim_start_matches("etcd: "),
    };
    let text = match said {
        "" => format!("{command} {path}: exit status {code}"),
        _ => format!("{command} {path}: exit status {code}: {said}"),
    };
    match e {
        PortError::Transient(_) => PortError::Transient(text),
        _ => PortError::Permanent(text),
    }
}

/// `etcdctl snapshot save <path>` in the pod behind `channel`, with the CA fallback of
/// [`hosted_etcdctl`].
pub fn hosted_snapshot_save(channel: Arc<dyn ExecChannel>, path: &str) -> PortResult<()> {
    let raw = HostedEtcdExec { inner: channel.clone(), ca: None };
    with_hosted_etcd_ca(&channel, |ca| {
        let out = raw.run(&snapshot_save_argv(ca, path), &etcdctl_v3_env(), SNAPSHOT_SAVE_TIMEOUT)?;
        tracing::debug!(channel = %channel.describe(), path, code = out.code, "etcdctl snapshot save");
        match out.code {
            0 => Ok(()),
            _ => Err(classify_snapshot_save(&out.stderr_str())),
        }
    })
}

/// `snapshot status <path> -w json` in the pod behind `channel`: `test -x` of
/// [`HOSTED_ETCDUTL`] picks the tool (HOSTED.md §E4).
pub fn hosted_snapshot_status(channel: Arc<dyn ExecChannel>, path: &str) -> PortResult<SnapshotStatus> {
    let raw = HostedEtcdExec { inner: channel.clone(), ca: None };
    let probe = raw.run(&["test", "-x", HOSTED_ETCDUTL].map(str::to_string), &[], PROBE_TIMEOUT)?;
    let etcdutl = probe.code == 0;
    let (argv, env) = snapshot_status_argv(etcdutl, path);
    let out = raw.run(&argv, &env, SNAPSHOT_STATUS_TIMEOUT)?;
    tracing::debug!(channel = %channel.describe(), path, etcdutl, code = out.code, "snapshot status");
    if out.code != 0 {
        return Err(classify_file_command(&argv[0], path, out.code, &out.stderr_str()));
    }
    crate::etcd::parse_snapshot_status(&out.stdout_str())
}

/// `rm -f <path>` in the pod behind `channel`: done when the file is not there (any more).
pub fn hosted_remove_file(channel: Arc<dyn ExecChannel>, path: &str) -> PortResult<()> {
    let raw = HostedEtcdExec { inner: channel, ca: None };
    let out = raw.run(&["rm", "-f", path].map(str::to_string), &[], REMOVE_TIMEOUT)?;
    match out.code {
        0 => Ok(()),
        code => Err(classify_file_command("rm -f", path, code, &out.stderr_str())),
    }
}

impl KubeApi {
    /// [`hosted_etcdctl`] through the exec API into pod `pod` of the control-plane namespace of
    /// HostedCluster `namespace/name`.
    fn hosted_etcd_exec<T>(&self, namespace: &str, name: &str, pod: &str, op: impl Fn(&EtcdCtl) -> PortResult<T>) -> PortResult<T> {
        let cp_ns = control_plane_namespace(namespace, name);
        let channel = PodExec::new(self.client.clone(), self.rt.clone(), cp_ns, pod, HOSTED_ETCD_CONTAINER);
        hosted_etcdctl(Arc::new(channel), op)
    }

    /// `DELETE` with the precondition `uid`, at the default grace period. Done when the object
    /// is gone (404) or the name now belongs to another object (409 on the uid precondition):
    /// either way the object with that uid no longer exists. Not retried: a 409 of any other
    /// kind is transient for the engine to retry after a fresh look.
    fn delete_uid(&self, what: &str, ar: &ApiResource, namespace: &str, name: &str, uid: &str) -> PortResult<()> {
        let api = self.dynamic(ar, Some(namespace));
        let dp = DeleteParams {
            preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: None }),
            ..DeleteParams::default()
        };
        match self.rt.block_on(api.delete(name, &dp)) {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) if is_uid_precondition_failure(&e) => {
                tracing::info!(what, uid, "the object with this uid is gone (its name belongs to a newer one)");
                Ok(())
            }
            Err(e) => Err(during(what, classify_kube_error(&e))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A file streamed out of a pod (exec `cat`)
// ---------------------------------------------------------------------------------------------

/// How long opening the exec stream may take (the API server upgrading the connection).
const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the stream may stay silent before the reader gives up on it.
const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// What one read off the exec stream hands over at most (and how many are queued ahead).
const STREAM_CHUNK: usize = 256 * 1024;
const STREAM_QUEUE: usize = 8;
/// How much of a failing command's stderr is kept for its error.
const STDERR_KEPT: u64 = 16 * 1024;

/// What the task pumping an exec's stdout hands the reader.
enum StreamPiece {
    Data(Vec<u8>),
    /// The command ended: exit 0 (`Ok`), or why the bytes so far are not the whole file.
    End(Result<(), StreamBroke>),
}

/// Why a streamed file is not whole: the command failed (its exit status and stderr), or the
/// stream broke off (no exit status came).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamBroke {
    Exit { code: i32, stderr: String },
    Broken(String),
}

impl StreamBroke {
    fn io_error(&self, what: &str) -> std::io::Error {
        use std::io::{Error, ErrorKind};
        match self {
            StreamBroke::Exit { code, stderr } => Error::other(format!("{what}: exit status {code}: {}", stderr.trim())),
            // A lost connection: another attempt may get the whole file.
            StreamBroke::Broken(why) => Error::new(ErrorKind::UnexpectedEof, format!("{what}: the stream broke off: {why}")),
        }
    }
}

/// Whether an exec that ended with `status` (its final `Status`, `None` when the stream ended
/// without one) ran its command to a successful end; `stderr` is what it printed there.
pub fn stream_end(status: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>, stderr: &str) -> Result<(), StreamBroke> {
    if status.is_none() {
        return Err(StreamBroke::Broken("the exec ended without an exit status".into()));
    }
    if let Some(e) = crate::etcd::command_not_run(status) {
        return Err(StreamBroke::Broken(e.to_string()));
    }
    match crate::etcd::exit_code_of_status(status) {
        0 => Ok(()),
        code => Err(StreamBroke::Exit { code, stderr: stderr.to_string() }),
    }
}

/// The stdout of an exec as a blocking [`std::io::Read`]: chunks pumped by a task on the
/// adapter's runtime through a bounded queue (at most [`STREAM_QUEUE`] chunks in memory).
/// Ends (`Ok(0)`) only after the command exited 0; a failed command, a stream that broke off or
/// fell silent is an I/O error, every time it is read after that.
pub struct ExecStdout {
    rt: Blocking,
    rx: tokio::sync::mpsc::Receiver<StreamPiece>,
    what: String,
    chunk: Vec<u8>,
    at: usize,
    ended: bool,
    broke: Option<(std::io::ErrorKind, String)>,
}

impl ExecStdout {
    /// Wait for the first piece (or the end), so that a command failing at once (a missing
    /// file) fails the open rather than the first read.
    fn first(mut self) -> PortResult<ExecStdout> {
        match self.next_piece() {
            Ok(()) => Ok(self),
            Err(e) => Err(match &self.broke {
                Some((std::io::ErrorKind::Other, _)) => PortError::Permanent(e.to_string()),
                _ => PortError::Transient(e.to_string()),
            }),
        }
    }

    fn fail(&mut self, e: std::io::Error) -> std::io::Error {
        self.broke = Some((e.kind(), e.to_string()));
        e
    }

    /// Take the next piece off the queue into `chunk` (or mark the end).
    fn next_piece(&mut self) -> std::io::Result<()> {
        let idle = STREAM_IDLE_TIMEOUT;
        let piece = self.rt.block_on(async { tokio::time::timeout(idle, self.rx.recv()).await });
        match piece {
            Ok(Some(StreamPiece::Data(bytes))) => {
                self.chunk = bytes;
                self.at = 0;
                Ok(())
            }
            Ok(Some(StreamPiece::End(Ok(())))) => {
                self.ended = true;
                Ok(())
            }
            Ok(Some(StreamPiece::End(Err(broke)))) => {
                let e = broke.io_error(&self.what);
                Err(self.fail(e))
            }
            Ok(None) => {
                let e = StreamBroke::Broken("the task streaming it ended".into()).io_error(&self.what);
                Err(self.fail(e))
            }
            Err(_) => {
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{}: no data for {idle:?}", self.what));
                Err(self.fail(e))
            }
        }
    }
}

impl std::io::Read for ExecStdout {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Bounded: each round takes a piece off a finite stream, or ends, or fails.
        loop {
            if let Some((kind, message)) = &self.broke {
                return Err(std::io::Error::new(*kind, message.clone()));
            }
            if self.at < self.chunk.len() {
                let n = buf.len().min(self.chunk.len() - self.at);
                buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            if self.ended || buf.is_empty() {
                return Ok(0);
            }
            self.next_piece()?;
        }
    }
}

/// Pump the stdout of `proc` into `tx` until it ends, then say how it ended. Stops (dropping
/// the exec, which closes its connection) as soon as the reader is gone.
async fn pump_stdout(mut proc: kube::api::AttachedProcess, tx: tokio::sync::mpsc::Sender<StreamPiece>) {
    use tokio::io::AsyncReadExt;
    let (Some(mut out), Some(mut err), Some(status)) = (proc.stdout(), proc.stderr(), proc.take_status()) else {
        let _ = tx.send(StreamPiece::End(Err(StreamBroke::Broken("the exec has no stdout, stderr or status".into())))).await;
        return;
    };
    // stderr is drained alongside, so a chatty command never stalls its stdout.
    let stderr = tokio::spawn(async move {
        let mut kept = Vec::new();
        let _ = (&mut err).take(STDERR_KEPT).read_to_end(&mut kept).await;
        let _ = tokio::io::copy(&mut err, &mut tokio::io::sink()).await;
        String::from_utf8_lossy(&kept).into_owned()
    });
    let mut buf = vec![0u8; STREAM_CHUNK];
    // Bounded by the length of the stream.
    loop {
        match out.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if tx.send(StreamPiece::Data(buf[..n].to_vec())).await.is_err() {
                    stderr.abort();
                    return;
                }
            }
            Err(e) => {
                stderr.abort();
                let _ = tx.send(StreamPiece::End(Err(StreamBroke::Broken(e.to_string())))).await;
                return;
            }
        }
    }
    let st = status.await;
    let stderr = stderr.await.unwrap_or_default();
    let _ = proc.join().await;
    let _ = tx.send(StreamPiece::End(stream_end(st.as_ref(), &stderr))).await;
}

impl KubeApi {
    /// An exec channel into the `etcd` container of pod `pod` of the control-plane namespace of
    /// HostedCluster `namespace/name`.
    fn hosted_channel(&self, namespace: &str, name: &str, pod: &str) -> Arc<dyn ExecChannel> {
        let cp_ns = control_plane_namespace(namespace, name);
        Arc::new(PodExec::new(self.client.clone(), self.rt.clone(), cp_ns, pod, HOSTED_ETCD_CONTAINER))
    }

    /// Exec `argv` in container `container` of pod `namespace/pod` and stream its stdout.
    pub fn exec_stdout(&self, namespace: &str, pod: &str, container: &str, argv: Vec<String>) -> PortResult<ExecStdout> {
        use kube::api::AttachParams;
        let what = format!("exec {} in pod {namespace}/{pod}", argv.join(" "));
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let ap = AttachParams::default().container(container).stdin(false).stdout(true).stderr(true);
        let opened = self.rt.block_on(async { tokio::time::timeout(STREAM_OPEN_TIMEOUT, api.exec(pod, argv, &ap)).await });
        let proc = match opened {
            Err(_) => return Err(PortError::Transient(format!("{what}: no answer within {STREAM_OPEN_TIMEOUT:?}"))),
            Ok(Err(e)) => return Err(during(&what, classify_exec_error(&e))),
            Ok(Ok(proc)) => proc,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_QUEUE);
        self.rt.handle().spawn(pump_stdout(proc, tx));
        ExecStdout { rt: self.rt.clone(), rx, what, chunk: Vec::new(), at: 0, ended: false, broke: None }.first()
    }
}

/// A 409 because the object's uid is not the one the delete named (`Precondition failed: UID in
/// precondition: …, UID in object meta: …`).
fn is_uid_precondition_failure(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.message.contains("Precondition failed: UID in precondition"))
}

impl ManagementCluster for KubeApi {
    fn hosted_cluster(&self, namespace: &str, name: &str) -> PortResult<PausableInfo> {
        let what = format!("get hostedcluster {namespace}/{name}");
        pausable_info(&self.get_required_json(&what, &hosted_cluster_resource(), Some(namespace), name)?).map_err(|e| during(&what, e))
    }

    fn set_hosted_cluster_paused(
        &self,
        namespace: &str,
        name: &str,
        paused_until: Option<&str>,
        paused_by: Option<&str>,
    ) -> PortResult<()> {
        let what = format!("patch hostedcluster {namespace}/{name} pausedUntil");
        self.merge_patch(&what, &hosted_cluster_resource(), Some(namespace), name, &pause_patch(paused_until, paused_by))
    }

    fn node_pools(&self, namespace: &str, cluster: &str) -> PortResult<Vec<PausableInfo>> {
        let what = format!("list nodepools in {namespace}");
        self.list_json(&what, &node_pool_resource(), Some(namespace))?
            .iter()
            .filter(|np| str_at(np, "/spec/clusterName") == cluster)
            .map(|np| pausable_info(np).map_err(|e| during(&what, e)))
            .collect()
    }

    fn set_node_pool_paused(&self, namespace: &str, name: &str, paused_until: Option<&str>, paused_by: Option<&str>) -> PortResult<()> {
        let what = format!("patch nodepool {namespace}/{name} pausedUntil");
        self.merge_patch(&what, &node_pool_resource(), Some(namespace), name, &pause_patch(paused_until, paused_by))
    }

    fn control_plane_paused_until(&self, namespace: &str, name: &str) -> PortResult<Option<String>> {
        let cp_ns = control_plane_namespace(namespace, name);
        let what = format!("get hostedcontrolplane {cp_ns}/{name}");
        Ok(paused_until_of(&self.get_required_json(&what, &hosted_control_plane_resource(), Some(&cp_ns), name)?))
    }

    fn node_pool_scales(&self, namespace: &str, cluster: &str) -> PortResult<Vec<NodePoolScale>> {
        let what = format!("list nodepools in {namespace}");
        self.list_json(&what, &node_pool_resource(), Some(namespace))?
            .iter()
            .filter(|np| str_at(np, "/spec/clusterName") == cluster)
            .map(|np| node_pool_scale(np).map_err(|e| during(&what, e)))
            .collect()
    }

    fn scale_node_pool(&self, namespace: &str, name: &str, replicas: u32) -> PortResult<()> {
        let what = format!("scale nodepool {namespace}/{name} to {replicas}");
        let api = self.dynamic(&node_pool_resource(), Some(namespace));
        let patch = json!({"spec": {"replicas": replicas}});
        self.call(&what, async { api.patch_scale(name, &patch_params(), &Patch::Merge(&patch)).await }).map(|_| ())
    }

    fn set_node_pool_drain_timeout(&self, namespace: &str, name: &str, timeout: Option<&str>) -> PortResult<()> {
        let what = format!("patch nodepool {namespace}/{name} nodeDrainTimeout");
        self.merge_patch(&what, &node_pool_resource(), Some(namespace), name, &json!({"spec": {"nodeDrainTimeout": timeout}}))
    }

    fn node_pool_machines(&self, namespace: &str, cluster: &str, pool: &str) -> PortResult<Vec<String>> {
        let cp_ns = control_plane_namespace(namespace, cluster);
        let what = format!("list machines.cluster.x-k8s.io of nodepool {pool} in {cp_ns}");
        let api = self.dynamic(&capi_machine_resource(), Some(&cp_ns));
        let lp = ListParams::default().labels(&format!("{CAPI_DEPLOYMENT_LABEL}={pool}"));
        let list = self.call(&what, async { api.list_metadata(&lp).await })?;
        Ok(list.items.into_iter().filter_map(|m| m.metadata.name).collect())
    }

    fn record_node_pool_replicas(&self, namespace: &str, name: &str, replicas: Option<u32>) -> PortResult<()> {
        let what = format!("patch nodepool {namespace}/{name} annotation {REPLICAS_BEFORE_ZERO_ANNOTATION}");
        let patch = json!({"metadata": {"annotations": {REPLICAS_BEFORE_ZERO_ANNOTATION: replicas.map(|r| r.to_string())}}});
        self.merge_patch(&what, &node_pool_resource(), Some(namespace), name, &patch)
    }

    fn hosted_etcd(&self, namespace: &str, name: &str) -> PortResult<HostedEtcdInfo> {
        let cp_ns = control_plane_namespace(namespace, name);
        let what = format!("get hostedcluster {namespace}/{name}");
        let hc = self.get_required_json(&what, &hosted_cluster_resource(), Some(namespace), name)?;
        let what = format!("get statefulset {cp_ns}/{HOSTED_ETCD_STATEFULSET}");
        let sts = self.get_required_json(&what, &statefulset_resource(), Some(&cp_ns), HOSTED_ETCD_STATEFULSET)?;
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &cp_ns);
        let lp = ListParams::default().labels(HOSTED_ETCD_SELECTOR);
        let pods = self.call(&format!("list pods -l {HOSTED_ETCD_SELECTOR} in {cp_ns}"), async { pods_api.list(&lp).await })?;
        let pvcs = self.list_json(&format!("list persistentvolumeclaims in {cp_ns}"), &pvc_resource(), Some(&cp_ns))?;
        let what = format!("get hostedcontrolplane {cp_ns}/{name}");
        let hcp = self.get_json(&what, &hosted_control_plane_resource(), Some(&cp_ns), name)?;
        hosted_etcd_info(&hc, &sts, &pods.items, &pvcs, hcp.as_ref()).map_err(|e| during(&format!("etcd of {cp_ns}"), e))
    }

    fn hosted_etcd_health(&self, namespace: &str, name: &str, pod: &str) -> PortResult<Vec<EndpointHealth>> {
        // Exits 1 when a member is unhealthy, with every member's row printed: those are read.
        self.hosted_etcd_exec(namespace, name, pod, |e| e.endpoint_health_cluster())
    }

    fn hosted_etcd_members(&self, namespace: &str, name: &str, pod: &str) -> PortResult<EtcdMemberList> {
        // Only `member list`: it is what the recovery reads of the members, and the hosted etcd
        // pods run etcd 3.5 or later, whose member list is a linearizable read already (no
        // separate quorum probe, unlike the 3.4 of older standalone clusters).
        self.hosted_etcd_exec(namespace, name, pod, |e| e.member_list_local())
    }

    fn delete_hosted_etcd_pvc(&self, namespace: &str, name: &str, pvc: &str, uid: &str) -> PortResult<()> {
        let cp_ns = control_plane_namespace(namespace, name);
        self.delete_uid(&format!("delete pvc {cp_ns}/{pvc} (uid {uid})"), &pvc_resource(), &cp_ns, pvc, uid)
    }

    fn delete_hosted_etcd_pod(&self, namespace: &str, name: &str, pod: &str, uid: &str) -> PortResult<()> {
        let cp_ns = control_plane_namespace(namespace, name);
        self.delete_uid(&format!("delete pod {cp_ns}/{pod} (uid {uid})"), &pod_resource(), &cp_ns, pod, uid)
    }

    fn hosted_cluster_backup_facts(&self, namespace: &str, name: &str) -> PortResult<HostedBackupFacts> {
        let what = format!("get hostedcluster {namespace}/{name}");
        Ok(hosted_backup_facts(&self.get_required_json(&what, &hosted_cluster_resource(), Some(namespace), name)?))
    }

    fn control_plane_deployments(&self, namespace: &str, name: &str, names: &[&str]) -> PortResult<Vec<DeploymentScale>> {
        let cp_ns = control_plane_namespace(namespace, name);
        let what = format!("list deployments in {cp_ns}");
        let all = self.list_json(&what, &deployment_resource(), Some(&cp_ns))?;
        names
            .iter()
            .map(|n| match all.iter().find(|d| str_at(d, "/metadata/name") == *n) {
                Some(d) => deployment_scale(d).map_err(|e| during(&what, e)),
                None => Err(PortError::NotFound(format!("{what}: deployments.apps \"{n}\" not found"))),
            })
            .collect()
    }

    fn scale_control_plane_deployment(&self, namespace: &str, name: &str, deployment: &str, replicas: u32) -> PortResult<()> {
        let cp_ns = control_plane_namespace(namespace, name);
        let what = format!("scale deployment {cp_ns}/{deployment} to {replicas}");
        let api = self.dynamic(&deployment_resource(), Some(&cp_ns));
        let patch = json!({"spec": {"replicas": replicas}});
        self.call(&what, async { api.patch_scale(deployment, &patch_params(), &Patch::Merge(&patch)).await }).map(|_| ())
    }

    fn hosted_etcd_snapshot_save(&self, namespace: &str, name: &str, pod: &str, path: &str) -> PortResult<()> {
        hosted_snapshot_save(self.hosted_channel(namespace, name, pod), path)
    }

    fn hosted_etcd_snapshot_status(&self, namespace: &str, name: &str, pod: &str, path: &str) -> PortResult<SnapshotStatus> {
        hosted_snapshot_status(self.hosted_channel(namespace, name, pod), path)
    }

    fn open_hosted_etcd_file(&self, namespace: &str, name: &str, pod: &str, path: &str) -> PortResult<Box<dyn std::io::Read + Send>> {
        let cp_ns = control_plane_namespace(namespace, name);
        let argv = vec!["cat".to_string(), path.to_string()];
        Ok(Box::new(self.exec_stdout(&cp_ns, pod, HOSTED_ETCD_CONTAINER, argv)?))
    }

    fn remove_hosted_etcd_file(&self, namespace: &str, name: &str, pod: &str, path: &str) -> PortResult<()> {
        hosted_remove_file(self.hosted_channel(namespace, name, pod), path)
    }

    fn encryption_key(&self, namespace: &str, secret: &str) -> PortResult<SecretBytes> {
        let what = format!("get secret {namespace}/{secret}");
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let mut s = self.call(&what, async { api.get(secret).await })?;
        // Only the one value leaves; the message never carries any of the data.
        let key = s.data.as_mut().and_then(|d| d.remove(ENCRYPTION_KEY_FIELD));
        match key {
            Some(k) if !k.0.is_empty() => Ok(SecretBytes::new(k.0)),
            _ => Err(PortError::Permanent(format!("{what}: it has no data.{ENCRYPTION_KEY_FIELD}"))),
        }
    }

    fn operator_available(&self) -> PortResult<bool> {
        let what = format!("get deployment {HYPERSHIFT_NAMESPACE}/{HYPERSHIFT_OPERATOR_DEPLOYMENT}");
        match self.get_required_json(&what, &deployment_resource(), Some(HYPERSHIFT_NAMESPACE), HYPERSHIFT_OPERATOR_DEPLOYMENT) {
            Ok(d) => Ok(deployment_available(&d)),
            // Not installed: nothing would propagate a pause.
            Err(PortError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str) -> KubeFailure {
        KubeFailure::Status { code, reason: reason.into(), message: "m".into() }
    }

    #[test]
    fn classification_table() {
        #[derive(Debug, PartialEq)]
        enum C {
            T,
            N,
            P,
        }
        let table = [
            (KubeFailure::Connection("tcp connect error: Connection refused (os error 111)".into()), C::T),
            (KubeFailure::Connection("connection reset by peer".into()), C::T),
            (KubeFailure::Timeout("operation timed out".into()), C::T),
            (KubeFailure::Transport("something else on the wire".into()), C::T),
            (status(408, "Timeout"), C::T),
            (status(429, "TooManyRequests"), C::T),
            (status(500, "InternalError"), C::T),
            (status(502, ""), C::T),
            (status(503, "ServiceUnavailable"), C::T),
            (status(504, "Timeout"), C::T),
            (status(409, "Conflict"), C::T),
            (status(410, "Expired"), C::T),
            (status(404, "NotFound"), C::N),
            (status(400, "BadRequest"), C::P),
            (status(401, "Unauthorized"), C::P),
            (status(403, "Forbidden"), C::P),
            (status(405, "MethodNotAllowed"), C::P),
            (status(415, "UnsupportedMediaType"), C::P),
            (status(422, "Invalid"), C::P),
            (KubeFailure::Decode("expected value".into()), C::P),
            (KubeFailure::Config("no current context".into()), C::P),
        ];
        for (f, want) in table {
            let got = match classify(&f) {
                PortError::Transient(_) => C::T,
                PortError::NotFound(_) => C::N,
                PortError::Permanent(_) => C::P,
            };
            assert_eq!(got, want, "{f:?}");
        }
    }

    #[test]
    fn kube_errors_reduce_to_failures() {
        let api = |code: u16, reason: &str| {
            kube::Error::Api(Box::new(kube::core::Status::failure("etcdserver: request timed out", reason).with_code(code)))
        };
        assert_eq!(
            kube_failure(&api(503, "ServiceUnavailable")),
            KubeFailure::Status { code: 503, reason: "ServiceUnavailable".into(), message: "etcdserver: request timed out".into() }
        );
        assert!(is_already_exists(&api(409, "AlreadyExists")) && !is_conflict(&api(409, "AlreadyExists")));
        assert!(is_conflict(&api(409, "Conflict")));
        let io = |k| kube::Error::Service(Box::new(std::io::Error::new(k, "boom")));
        assert!(matches!(kube_failure(&io(std::io::ErrorKind::ConnectionRefused)), KubeFailure::Connection(_)));
        assert!(matches!(kube_failure(&io(std::io::ErrorKind::ConnectionReset)), KubeFailure::Connection(_)));
        assert!(matches!(kube_failure(&io(std::io::ErrorKind::TimedOut)), KubeFailure::Timeout(_)));
        let serde = serde_json::from_str::<Value>("<html>").unwrap_err();
        assert!(matches!(kube_failure(&kube::Error::SerdeError(serde)), KubeFailure::Decode(_)));
        assert!(matches!(kube_failure(&kube::Error::TlsRequired), KubeFailure::Config(_)));
    }

    /// The Machine of OpenShift Container Platform 4.14 Backup and restore §5.2.4.1
    /// (`clustername-8qw5l-master-0`), as `oc get -o json` gives it.
    fn seed_machine() -> Value {
        json!({
            "apiVersion": "machine.openshift.io/v1beta1",
            "kind": "Machine",
            "metadata": {
                "annotations": {"machine.openshift.io/instance-state": "running"},
                "creationTimestamp": "2020-04-20T16:52:20Z",
                "finalizers": ["machine.machine.openshift.io"],
                "generation": 2,
                "labels": {
                    "machine.openshift.io/cluster-api-cluster": "clustername-8qw5l",
                    "machine.openshift.io/cluster-api-machine-role": "master",
                    "machine.openshift.io/cluster-api-machine-type": "master",
                    "machine.openshift.io/instance-type": "m4.xlarge",
                    "machine.openshift.io/region": "us-east-1",
                    "machine.openshift.io/zone": "us-east-1a"
                },
                "name": "clustername-8qw5l-master-0",
                "namespace": "openshift-machine-api",
                "resourceVersion": "13291",
                "uid": "a282eb70-40a2-4e89-8009-d05dd420d31a"
            },
            "spec": {
                "metadata": {},
                "providerID": "aws:///us-east-1a/i-0fdb85790d76d0c3f",
                "providerSpec": {"value": {"apiVersion": "awsproviderconfig.openshift.io/v1beta1", "kind": "AWSMachineProviderConfig", "instanceType": "m4.xlarge", "placement": {"availabilityZone": "us-east-1a", "region": "us-east-1"}}}
            },
            "status": {
                "addresses": [
                    {"address": "10.0.131.183", "type": "InternalIP"},
                    {"address": "ip-10-0-131-183.ec2.internal", "type": "InternalDNS"},
                    {"address": "ip-10-0-131-183.ec2.internal", "type": "Hostname"}
                ],
                "lastUpdated": "2020-04-20T17:44:29Z",
                "nodeRef": {"kind": "Node", "name": "ip-10-0-131-183.ec2.internal", "uid": "acca4411-af0d-4387-b73e-52b2484295ad"},
                "phase": "Running",
                "providerStatus": {
                    "apiVersion": "awsproviderconfig.openshift.io/v1beta1",
                    "conditions": [{"lastProbeTime": "2020-04-20T16:53:50Z", "lastTransitionTime": "2020-04-20T16:53:50Z", "message": "machine successfully created", "reason": "MachineCreationSucceeded", "status": "True", "type": "MachineCreation"}],
                    "instanceId": "i-0fdb85790d76d0c3f",
                    "instanceState": "stopped",
                    "kind": "AWSMachineProviderStatus"
                }
            }
        })
    }

    #[test]
    fn machine_for_recreate_does_what_the_runbook_says() {
        // The procedure edits the manifest; the adapter strips server-set fields again on create.
        use drctl_workflows::machines::machine_for_recreate;
        let old = seed_machine();
        let new = machine_for_recreate(&old, "clustername-8qw5l-master-3");
        assert_eq!(new["metadata"]["name"], "clustername-8qw5l-master-3");
        assert!(new.get("status").is_none());
        assert!(new["spec"].get("providerID").is_none());
        for gone in ["annotations", "generation", "resourceVersion", "uid", "creationTimestamp"] {
            assert!(new["metadata"].get(gone).is_none(), "{gone} should be removed");
        }
        // Everything else stays.
        assert_eq!(new["metadata"]["labels"], old["metadata"]["labels"]);
        assert_eq!(new["metadata"]["namespace"], "openshift-machine-api");
        assert_eq!(new["spec"]["providerSpec"], old["spec"]["providerSpec"]);
        assert_eq!(new["metadata"]["finalizers"], old["metadata"]["finalizers"]);
        assert_eq!(new["apiVersion"], "machine.openshift.io/v1beta1");
        assert_eq!(new["kind"], "Machine");
        // The input is untouched, and doing it twice changes nothing more.
        assert_eq!(old["spec"]["providerID"], "aws:///us-east-1a/i-0fdb85790d76d0c3f");
        assert_eq!(machine_for_recreate(&new, "clustername-8qw5l-master-3"), new);

        let info = machine_info(&old);
        assert_eq!(info.phase, MachinePhase::Running);
        assert_eq!(info.node.as_deref(), Some("ip-10-0-131-183.ec2.internal"));
        assert!(info.control_plane);
    }

    #[test]
    fn the_patches_are_the_runbooks() {
        assert_eq!(
            quorum_guard_patch(false).to_string(),
            r#"{"spec":{"unsupportedConfigOverrides":{"useUnsupportedUnsafeNonHANonProductionUnstableEtcd":true}}}"#
        );
        assert_eq!(quorum_guard_patch(true).to_string(), r#"{"spec":{"unsupportedConfigOverrides":null}}"#);
        assert_eq!(force_redeployment_patch("recovery-x").to_string(), r#"{"spec":{"forceRedeploymentReason":"recovery-x"}}"#);
        assert_eq!(paused_until_patch(Some("true")).to_string(), r#"{"spec":{"pausedUntil":"true"}}"#);
        assert_eq!(paused_until_patch(None).to_string(), r#"{"spec":{"pausedUntil":null}}"#);
    }

    #[test]
    fn ip_mentions_respect_address_boundaries() {
        let ds = r#"{"env":[{"name":"OVN_NB","value":"ssl:10.0.0.10:9641,ssl:10.0.0.2:9641"}]}"#;
        assert!(mentions_ip(ds, "10.0.0.10"));
        assert!(mentions_ip(ds, "10.0.0.2"));
        assert!(!mentions_ip(ds, "10.0.0.1"));
        assert!(!mentions_ip(ds, "0.0.0.1"));
        assert!(!mentions_ip(ds, ""));
    }

    #[test]
    fn installer_progress_reads_the_condition() {
        let etcd = json!({"spec": {"forceRedeploymentReason": "recovery-2024"},
            "status": {"latestAvailableRevision": 7, "conditions": [
                {"type": "EtcdMembersAvailable", "status": "True", "reason": "AsExpected", "message": "3 members are available"},
                {"type": "NodeInstallerProgressing", "status": "True", "reason": "NodeInstaller", "message": "2 nodes are at revision 6; 1 nodes are at revision 7"}]}});
        let p = installer_progress_of(&etcd);
        assert_eq!(p.latest_revision, 7);
        assert_eq!(p.reason, "NodeInstaller");
        assert!(!p.all_at_latest());
        assert_eq!(p.force_redeployment_reason.as_deref(), Some("recovery-2024"));
    }

    #[test]
    fn fail_closed_webhooks_are_those_with_fail_or_no_policy() {
        let cfg = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "kyverno-resource-validating-webhook-cfg"},
        "webhooks": [
            {"name": "validate.kyverno.svc-fail", "failurePolicy": "Fail",
             "clientConfig": {"service": {"namespace": "kyverno", "name": "kyverno-svc", "path": "/validate/fail"}}},
            {"name": "validate.kyverno.svc-ignore", "failurePolicy": "Ignore",
             "clientConfig": {"service": {"namespace": "kyverno", "name": "kyverno-svc"}}},
            {"name": "external.example.com", "clientConfig": {"url": "https://hooks.example.com/review"}}
        ]});
        let hooks = fail_closed_webhooks_of(&cfg);
        let shown: Vec<String> = hooks.iter().map(|h| h.to_string()).collect();
        assert_eq!(
            shown,
            [
                "validatingwebhookconfiguration/kyverno-resource-validating-webhook-cfg webhook validate.kyverno.svc-fail (service kyverno/kyverno-svc)",
                "validatingwebhookconfiguration/kyverno-resource-validating-webhook-cfg webhook external.example.com (url https://hooks.example.com/review)",
            ]
        );
        assert!(fail_closed_webhooks_of(&json!({"kind": "MutatingWebhookConfiguration", "metadata": {"name": "x"}})).is_empty());
    }

    #[test]
    fn kubeconfig_errors_say_where_never_what() {
        let planted = "c2VjcmV0LWtleS1QTEFOVEVE";
        let dir = std::env::temp_dir().join(format!("drctl-kc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = [
            // YAML that does not parse: the parser quotes the lines around the fault.
            format!("apiVersion: v1\nusers:\n- name: u\n  user:\n    client-key-data: {planted}\ncontexts: [ {{name: x\n"),
            // Parses, but a field has the wrong type: the parser quotes the value.
            format!("apiVersion: v1\nusers:\n- name: u\n  user:\n    client-key-data: [\"{planted}\"]\n"),
            format!("apiVersion: v1\nclusters:\n- name: c\n  cluster:\n    insecure-skip-tls-verify: {planted}\n"),
        ];
        for (i, text) in bad.iter().enumerate() {
            let path = dir.join(format!("bad-{i}.yaml"));
            std::fs::write(&path, text).unwrap();
            let e = kubeconfig_target(&path, None).unwrap_err().to_string();
            assert!(!e.contains(planted) && !e.contains("client-key-data:"), "case {i} echoes the file: {e}");
            assert!(e.contains(&path.display().to_string()) && e.contains("contents are not shown"), "case {i}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_credential_kind_comes_from_the_kubeconfig_user() {
        let kind = |user: &str| {
            let yaml = format!("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers:\n- name: u\n  user:\n{user}");
            let kc = Kubeconfig::from_yaml(&yaml).unwrap();
            credential_of(kc.auth_infos[0].auth_info.as_ref().unwrap())
        };
        assert_eq!(kind("    client-certificate-data: AAAA\n    client-key-data: BBBB\n"), Credential::ClientCertificate);
        assert_eq!(kind("    token: sha256~abcdef\n"), Credential::BearerToken);
        assert_eq!(kind("    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: get-token\n"), Credential::Plugin);
        assert_eq!(kind("    {}\n"), Credential::Anonymous);
    }

    #[test]
    fn a_nodes_status_time_is_its_ready_conditions_latest_write() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "master-0", "labels": {"node-role.kubernetes.io/master": ""}},
            "status": {"conditions": [
                {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": "2026-01-05T10:00:00Z", "lastTransitionTime": "2026-01-05T10:00:00Z"},
                {"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-05T09:00:10Z", "lastTransitionTime": "2026-01-04T08:00:00Z"}]}
        }))
        .unwrap();
        let info = node_info(&node);
        assert!(info.ready);
        let since = info.status_since.expect("a status time");
        assert_eq!(since, drctl_runtime::clock::Timestamp::parse_rfc3339("2026-01-05T09:00:10Z").unwrap());
        assert!(info.reported_since(Some(drctl_runtime::clock::Timestamp::parse_rfc3339("2026-01-05T09:00:00Z").unwrap())));
        assert!(!info.reported_since(Some(drctl_runtime::clock::Timestamp::parse_rfc3339("2026-01-05T09:30:00Z").unwrap())));
    }

    fn etcd_pod(name: &str, uid: &str, status: Value, deleting: bool) -> Pod {
        let mut meta = json!({"name": name, "namespace": "clusters-example", "uid": uid, "labels": {"app": "etcd"}});
        if deleting {
            meta["deletionTimestamp"] = json!("2026-01-05T10:00:00Z");
        }
        serde_json::from_value(json!({
            "metadata": meta,
            "spec": {"containers": [{"name": "etcd"}], "volumes": [
                {"name": "client-tls", "secret": {"secretName": "etcd-client-tls"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{name}")}}]},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_hosted_etcd_reads_as_oc_shows_it() {
        let ready = |r: bool| json!([{"type": "Ready", "status": if r { "True" } else { "False" }}]);
        let pods = vec![
            // Listed out of order: the answer is by name.
            etcd_pod(
                "etcd-2",
                "u2",
                json!({"phase": "Pending", "conditions": ready(false),
                "containerStatuses": [{"name": "etcd", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                                       "state": {"waiting": {"reason": "PodInitializing"}}}]}),
                false,
            ),
            etcd_pod(
                "etcd-0",
                "u0",
                json!({"phase": "Running", "conditions": ready(true),
                "containerStatuses": [{"name": "etcd", "ready": true, "restartCount": 0, "image": "i", "imageID": "",
                                       "state": {"running": {}}}]}),
                false,
            ),
            etcd_pod(
                "etcd-1",
                "u1",
                json!({"phase": "Running", "conditions": ready(false),
                "containerStatuses": [{"name": "etcd", "ready": false, "restartCount": 7, "image": "i", "imageID": "",
                                       "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
                false,
            ),
        ];
        let pvc = |name: &str, deleting: bool| {
            let mut v = json!({"metadata": {"name": name, "uid": format!("uid-{name}")}, "status": {"phase": "Bound"}});
            if deleting {
                v["metadata"]["deletionTimestamp"] = json!("2026-01-05T10:00:00Z");
            }
            v
        };
        let pvcs = vec![pvc("data-etcd-1", true), pvc("data-etcd-0", false), pvc("something-else", false)];
        let sts =
            json!({"metadata": {"name": "etcd", "namespace": "clusters-example"}, "spec": {"replicas": 3}, "status": {"readyReplicas": 1}});
        let hcp = json!({"status": {"conditions": [{"type": "EtcdAvailable", "status": "False", "reason": "EtcdWaitingForQuorum"}]}});
        let info = hosted_etcd_info(&json!({"spec": {}}), &sts, &pods, &pvcs, Some(&hcp)).unwrap();
        assert_eq!(info.availability_policy, "HighlyAvailable", "the CRD's default");
        assert_eq!((info.replicas, info.ready_replicas), (3, 1));
        let words: Vec<(&str, &str, bool, &str)> =
            info.pods.iter().map(|p| (p.name.as_str(), p.status.as_str(), p.ready, p.pvc.as_str())).collect();
        assert_eq!(
            words,
            [
                ("etcd-0", "Running", true, "data-etcd-0"),
                ("etcd-1", "CrashLoopBackOff", false, "data-etcd-1"),
                ("etcd-2", "Pending", false, "data-etcd-2")
            ]
        );
        assert_eq!(info.pods[0].uid, "u0");
        let claims: Vec<(&str, &str, bool)> = info.pvcs.iter().map(|c| (c.name.as_str(), c.uid.as_str(), c.terminating)).collect();
        assert_eq!(claims, [("data-etcd-0", "uid-data-etcd-0", false), ("data-etcd-1", "uid-data-etcd-1", true)]);
        assert_eq!(info.etcd_available.as_deref(), Some("False"));
        // Deleted: Terminating whatever its containers say; no HostedControlPlane: no condition.
        let gone = etcd_pod("etcd-0", "u0", json!({"phase": "Running", "conditions": ready(true)}), true);
        let hc = json!({"spec": {"controllerAvailabilityPolicy": "SingleReplica"}});
        let info = hosted_etcd_info(&hc, &json!({"spec": {}}), &[gone], &[], None).unwrap();
        assert_eq!((info.availability_policy.as_str(), info.replicas, info.ready_replicas), ("SingleReplica", 1, 0));
        assert_eq!(info.pods[0].status, PodStatus::Terminating);
        assert_eq!(info.etcd_available, None);
        // A count that is none is refused, not guessed.
        let bad = json!({"metadata": {"namespace": "ns"}, "spec": {"replicas": "three"}});
        assert!(matches!(hosted_etcd_info(&hc, &bad, &[], &[], None), Err(PortError::Permanent(m)) if m.contains("spec/replicas")));
    }

    /// An `etcd` container that has `files` and answers etcdctl with a fixed member list; records
    /// every argv the exec API would receive.
    struct FakeEtcdContainer {
        files: Vec<&'static str>,
        refuse: Option<PortError>,
        seen: std::sync::Mutex<Vec<Vec<String>>>,
    }

    impl ExecChannel for FakeEtcdContainer {
        fn run(&self, argv: &[String], env: &[(String, String)], _timeout: Duration) -> PortResult<ExecOutput> {
            let full = crate::etcd::pod_exec_argv(argv, env);
            self.seen.lock().unwrap().push(full.clone());
            if let Some(e) = &self.refuse {
                return Err(e.clone());
            }
            let out = |code: i32, stdout: &str, stderr: &str| ExecOutput { code, stdout: stdout.into(), stderr: stderr.into() };
            if full[0] == "test" {
                return Ok(out(i32::from(!self.files.contains(&full[2].as_str())), "", ""));
            }
            let ca = full.iter().find_map(|a| a.strip_prefix("ETCDCTL_CACERT=")).unwrap_or("");
            if !self.files.contains(&ca) {
                return Ok(out(1, "", &format!("Error: open {ca}: no such file or directory\n")));
            }
            Ok(out(0, r#"{"header":{"cluster_id":7},"members":[{"ID":2,"name":"etcd-1"},{"ID":1,"name":"etcd-0"}]}"#, ""))
        }
        fn describe(&self) -> String {
            "pod clusters-example/etcd-0".into()
        }
    }

    fn container(files: &[&'static str], refuse: Option<PortError>) -> Arc<FakeEtcdContainer> {
        Arc::new(FakeEtcdContainer { files: files.to_vec(), refuse, seen: Default::default() })
    }

    #[test]
    fn hosted_etcdctl_uses_the_etcd_ca_and_falls_back_only_when_it_is_missing() {
        let members = |c: &Arc<FakeEtcdContainer>| hosted_etcdctl(c.clone() as Arc<dyn ExecChannel>, |e| e.member_list_local());
        // Today's pods: one exec, the certificates in etcdctl's environment, the pod's own member.
        let modern = container(&[HOSTED_ETCD_CA, HOSTED_ETCD_CLIENT_CERT, HOSTED_ETCD_CLIENT_KEY], None);
        let list = members(&modern).unwrap();
        assert_eq!((list.cluster_id, list.members.len()), (7, 2));
        let seen = modern.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "no probe on the modern path: {seen:?}");
        assert_eq!(
            seen[0],
            [
                "env",
                "ETCDCTL_API=3",
                "ETCDCTL_CACERT=/etc/etcd/tls/etcd-ca/ca.crt",
                "ETCDCTL_CERT=/etc/etcd/tls/client/etcd-client.crt",
                "ETCDCTL_KEY=/etc/etcd/tls/client/etcd-client.key",
                "etcdctl",
                "--endpoints=https://localhost:2379",
                "--dial-timeout=2s",
                "--command-timeout=5s",
                "member",
                "list",
                "-w",
                "json"
            ]
        );
        // A pod from before the CA moved: etcdctl fails on the file, `test -f` finds the old one.
        let legacy = container(&[HOSTED_ETCD_LEGACY_CA, HOSTED_ETCD_CLIENT_CERT, HOSTED_ETCD_CLIENT_KEY], None);
        assert_eq!(members(&legacy).unwrap().members.len(), 2);
        let seen = legacy.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(seen[1], ["test", "-f", HOSTED_ETCD_LEGACY_CA]);
        assert!(seen[2].contains(&format!("ETCDCTL_CACERT={HOSTED_ETCD_LEGACY_CA}")));
        // Neither: etcdctl's own failure stands.
        let neither = container(&[HOSTED_ETCD_CLIENT_CERT, HOSTED_ETCD_CLIENT_KEY], None);
        match members(&neither) {
            Err(PortError::NotFound(m)) => assert!(m.contains(HOSTED_ETCD_CA), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(neither.seen.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_container_that_cannot_be_entered_now_is_transient() {
        // Classified where the exec request fails (every `PodExec`), not by a wrapper of one kind.
        let refused = |code: u16, reason: &str, message: &str| {
            classify_exec_error(&kube::Error::Api(kube::core::Status::failure(message, reason).with_code(code).boxed()))
        };
        let crash = "unable to upgrade connection: container not found (\"etcd\")";
        assert!(matches!(refused(400, "BadRequest", crash), PortError::Transient(m) if m.contains(crash)));
        assert!(matches!(refused(400, "BadRequest", "pod etcd-1 does not have a host assigned"), PortError::Transient(_)));
        // Asking for a container the pod does not have is our mistake; a missing pod is missing.
        assert!(matches!(refused(400, "BadRequest", "container etcdctl is not valid for pod etcd-1"), PortError::Permanent(_)));
        assert!(matches!(refused(404, "NotFound", "pods \"etcd-9\" not found"), PortError::NotFound(_)));
    }

    #[test]
    fn a_uid_precondition_conflict_is_told_from_other_conflicts() {
        let api =
            |code: u16, reason: &str, message: &str| kube::Error::Api(kube::core::Status::failure(message, reason).with_code(code).boxed());
        assert!(is_uid_precondition_failure(&api(
            409,
            "Conflict",
            "Operation cannot be fulfilled on pods \"etcd-1\": Precondition failed: UID in precondition: a, UID in object meta: b"
        )));
        assert!(!is_uid_precondition_failure(&api(409, "Conflict", "the object has been modified; please apply your changes")));
        assert!(!is_uid_precondition_failure(&api(
            409,
            "Conflict",
            "Precondition failed: ResourceVersion in precondition: 4, ResourceVersion in object meta: 5"
        )));
    }

    #[test]
    fn backup_facts_read_the_hosted_cluster_as_the_runbook_does() {
        let hc = json!({
            "metadata": {"name": "example", "namespace": "clusters"},
            "spec": {"etcd": {"managementType": "Managed"},
                     "secretEncryption": {"type": "aescbc", "aescbc": {"activeKey": {"name": "example-etcd-encryption-key"}}}},
            "status": {"conditions": [{"type": "Degraded", "status": "False"}, {"type": "Available", "status": "True"}]},
        });
        assert_eq!(
            hosted_backup_facts(&hc),
            HostedBackupFacts {
                available: Some("True".into()),
                etcd_management: "Managed".into(),
                encryption_type: Some("aescbc".into()),
                active_key_secret: Some("example-etcd-encryption-key".into()),
            }
        );
        // KMS: no key to export; a cluster not reconciled yet: no condition; the CRD's default.
        let kms = json!({"spec": {"secretEncryption": {"type": "kms", "kms": {}}}});
        assert_eq!(
            hosted_backup_facts(&kms),
            HostedBackupFacts {
                available: None,
                etcd_management: "Managed".into(),
                encryption_type: Some("kms".into()),
                active_key_secret: None
            }
        );
        let unmanaged = json!({"spec": {"etcd": {"managementType": "Unmanaged"}, "secretEncryption": {"type": ""}}});
        let f = hosted_backup_facts(&unmanaged);
        assert_eq!((f.etcd_management.as_str(), f.encryption_type), ("Unmanaged", None));
    }

    #[test]
    fn a_deployment_reads_by_its_scale() {
        let d = json!({"metadata": {"name": "kube-apiserver"}, "spec": {"replicas": 0}, "status": {"replicas": 2, "readyReplicas": 1}});
        assert_eq!(
            deployment_scale(&d).unwrap(),
            DeploymentScale { name: "kube-apiserver".into(), replicas: 0, status_replicas: 2, ready_replicas: 1 }
        );
        // Scaled to zero and settled: the API server drops the zero counts from status.
        let settled = json!({"metadata": {"name": "openshift-apiserver"}, "spec": {"replicas": 0}, "status": {"observedGeneration": 4}});
        assert_eq!(deployment_scale(&settled).unwrap().status_replicas, 0);
        assert_eq!(deployment_scale(&json!({"metadata": {"name": "x"}, "spec": {}})).unwrap().replicas, 1, "the API's default");
        assert!(matches!(deployment_scale(&json!({"metadata": {"name": "x"}, "spec": {"replicas": -1}})), Err(PortError::Permanent(_))));
    }

    #[test]
    fn snapshot_commands_are_the_runbooks() {
        let save = crate::etcd::pod_exec_argv(&snapshot_save_argv(HOSTED_ETCD_CA, "/var/lib/data/snapshot.db"), &etcdctl_v3_env());
        assert_eq!(
            save.join(" "),
            "env ETCDCTL_API=3 etcdctl --cacert /etc/etcd/tls/etcd-ca/ca.crt --cert /etc/etcd/tls/client/etcd-client.crt \
             --key /etc/etcd/tls/client/etcd-client.key --endpoints=https://localhost:2379 snapshot save /var/lib/data/snapshot.db"
        );
        let (argv, env) = snapshot_status_argv(true, "/var/lib/data/snapshot.db");
        assert_eq!(crate::etcd::pod_exec_argv(&argv, &env).join(" "), "etcdutl snapshot status /var/lib/data/snapshot.db -w json");
        let (argv, env) = snapshot_status_argv(false, "/var/lib/data/snapshot.db");
        assert_eq!(
            crate::etcd::pod_exec_argv(&argv, &env).join(" "),
            "env ETCDCTL_API=3 etcdctl snapshot status /var/lib/data/snapshot.db -w json"
        );
    }

    #[test]
    fn snapshot_failures_are_classified() {
        let warn = r#"{"level":"warn","msg":"retrying of unary invoker failed","error":"rpc error: code = DeadlineExceeded desc = context deadline exceeded"}"#;
        assert!(matches!(classify_snapshot_save(&format!("{warn}\nError: context deadline exceeded\n")), PortError::Transient(_)));
        let full = "Error: write /var/lib/data/snapshot.db: no space left on device\n";
        assert!(matches!(classify_snapshot_save(full), PortError::Permanent(m) if m.contains("no space left on device")));
        assert!(matches!(classify_snapshot_save("Error: x509: certificate signed by unknown authority"), PortError::Permanent(_)));
        // A status of a file that is not there, and etcd 3.6's etcdctl without the command.
        let missing =
            classify_file_command("etcdutl", "/var/lib/data/x.db", 1, "Error: stat /var/lib/data/x.db: no such file or directory\n");
        assert!(
            matches!(&missing, PortError::Permanent(m) if m == "etcdutl /var/lib/data/x.db: exit status 1: Error: stat /var/lib/data/x.db: no such file or directory"),
            "{missing:?}"
        );
        let gone = classify_file_command("etcdctl", "/p", 1, "Error: unknown command \"status\" for \"etcdctl snapshot\"\n");
        assert!(matches!(gone, PortError::Permanent(m) if m.contains("unknown command")));
        assert!(matches!(classify_file_command("rm -f", "/p", 1, ""), PortError::Permanent(m) if m == "rm -f /p: exit status 1"));
    }

    /// An `etcd` container with `files`, whose etcdctl and etcdutl take snapshots and read them
    /// (etcd 3.`minor`); records every argv the exec API would receive.
    struct FakeSnapshotPod {
        files: Vec<&'static str>,
        minor: u32,
        seen: std::sync::Mutex<Vec<String>>,
    }

    impl ExecChannel for FakeSnapshotPod {
        fn run(&self, argv: &[String], env: &[(String, String)], _timeout: Duration) -> PortResult<ExecOutput> {
            let full = crate::etcd::pod_exec_argv(argv, env);
            self.seen.lock().unwrap().push(full.join(" "));
            let out = |code: i32, stdout: &str, stderr: &str| ExecOutput { code, stdout: stdout.into(), stderr: stderr.into() };
            let words: Vec<&str> = full.iter().map(String::as_str).collect();
            match words.as_slice() {
                ["test", "-f", f] => Ok(out(i32::from(!self.files.contains(f)), "", "")),
                ["test", "-x", "/usr/bin/etcdutl"] => Ok(out(i32::from(self.minor < 5), "", "")),
                ["env", "ETCDCTL_API=3", "etcdctl", "--cacert", ca, .., "snapshot", "save", _] if !self.files.contains(ca) => {
                    Ok(out(1, "", &format!("Error: open {ca}: no such file or directory\n")))
                }
                ["env", "ETCDCTL_API=3", "etcdctl", .., "snapshot", "save", p] => Ok(out(0, &format!("Snapshot saved at {p}\n"), "")),
                ["env", "ETCDCTL_API=3", "etcdctl", "snapshot", "status", ..] if self.minor >= 6 => {
                    Ok(out(1, "", "Error: unknown command \"status\" for \"etcdctl snapshot\"\n"))
                }
                [.., "snapshot", "status", _, "-w", "json"] => {
                    Ok(out(0, r#"{"hash":3866667823,"revision":31407,"totalKey":12828,"totalSize":114446336,"version":"3.5.0"}"#, ""))
                }
                _ => Ok(out(127, "", "exec: not found\n")),
            }
        }
        fn describe(&self) -> String {
            "pod clusters-example/etcd-0".into()
        }
    }

    fn snapshot_pod(files: &[&'static str], minor: u32) -> Arc<FakeSnapshotPod> {
        Arc::new(FakeSnapshotPod { files: files.to_vec(), minor, seen: Default::default() })
    }

    #[test]
    fn snapshot_save_uses_the_etcd_ca_and_falls_back_like_etcdctl() {
        let modern = snapshot_pod(&[HOSTED_ETCD_CA], 5);
        hosted_snapshot_save(modern.clone(), "/var/lib/data/snapshot.db").unwrap();
        assert_eq!(modern.seen.lock().unwrap().len(), 1);
        let legacy = snapshot_pod(&[HOSTED_ETCD_LEGACY_CA], 5);
        hosted_snapshot_save(legacy.clone(), "/var/lib/data/snapshot.db").unwrap();
        let seen = legacy.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(seen[1], format!("test -f {HOSTED_ETCD_LEGACY_CA}"));
        assert!(seen[2].contains(&format!("--cacert {HOSTED_ETCD_LEGACY_CA}")), "{}", seen[2]);
        let neither = snapshot_pod(&[], 5);
        assert!(
            matches!(hosted_snapshot_save(neither, "/var/lib/data/snapshot.db"), Err(PortError::NotFound(m)) if m.contains(HOSTED_ETCD_CA))
        );
    }

    #[test]
    fn snapshot_status_takes_etcdutl_where_the_image_has_it() {
        let want = SnapshotStatus { hash: 3866667823, revision: 31407, total_key: 12828, total_size: 114446336 };
        for minor in [4, 5, 6] {
            let pod = snapshot_pod(&[HOSTED_ETCD_CA], minor);
            assert_eq!(hosted_snapshot_status(pod.clone(), "/var/lib/data/snapshot.db").unwrap(), want, "etcd 3.{minor}");
            let seen = pod.seen.lock().unwrap().clone();
            assert_eq!(seen[0], "test -x /usr/bin/etcdutl");
            let tool = if minor >= 5 { "etcdutl snapshot status" } else { "env ETCDCTL_API=3 etcdctl snapshot status" };
            assert!(seen[1].starts_with(tool), "etcd 3.{minor}: {seen:?}");
        }
    }

    fn stdout_of(pieces: Vec<StreamPiece>, close: bool) -> ExecStdout {
        let rt = Blocking::dedicated("drctl-test-stream").unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(pieces.len() + 1);
        for p in pieces {
            tx.try_send(p).ok().unwrap();
        }
        if !close {
            // The pumping task still holds its end (and never sends more).
            std::mem::forget(tx);
        }
        ExecStdout { rt, rx, what: "exec cat /var/lib/data/snapshot.db".into(), chunk: Vec::new(), at: 0, ended: false, broke: None }
    }

    #[test]
    fn a_streamed_file_is_whole_only_when_the_command_exited_zero() {
        use std::io::Read;
        let data = |b: &[u8]| StreamPiece::Data(b.to_vec());
        let mut whole = String::new();
        stdout_of(vec![data(b"hello "), data(b"world"), StreamPiece::End(Ok(()))], true)
            .first()
            .unwrap()
            .read_to_string(&mut whole)
            .unwrap();
        assert_eq!(whole, "hello world");
        // The connection went away mid-file: an error, never a short file.
        let mut r = stdout_of(vec![data(b"hel")], true).first().unwrap();
        let mut got = Vec::new();
        let e = r.read_to_end(&mut got).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
        assert_eq!(r.read(&mut [0u8; 4]).unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof, "it stays broken");
        let broke = StreamPiece::End(stream_end(None, ""));
        let e = stdout_of(vec![data(b"hel"), broke], true).first().unwrap().read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        // cat failed at once: the open fails, permanently.
        let failed: k8s_openapi::apimachinery::pkg::apis::meta::v1::Status = serde_json::from_str(
            r#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"1"}]}}"#,
        )
        .unwrap();
        let missing = stream_end(Some(&failed), "cat: /var/lib/data/x.db: No such file or directory\n");
        assert!(matches!(&missing, Err(StreamBroke::Exit { code: 1, .. })));
        match stdout_of(vec![StreamPiece::End(missing)], true).first() {
            Err(PortError::Permanent(m)) => assert!(m.contains("exit status 1: cat: /var/lib/data/x.db: No such file or directory"), "{m}"),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("a failed cat opened"),
        }
        let ok: k8s_openapi::apimachinery::pkg::apis::meta::v1::Status = serde_json::from_str(r#"{"status":"Success"}"#).unwrap();
        assert_eq!(stream_end(Some(&ok), ""), Ok(()));
        // An empty file is a file.
        let mut empty = Vec::new();
        stdout_of(vec![StreamPiece::End(Ok(()))], true).first().unwrap().read_to_end(&mut empty).unwrap();
        assert!(empty.is_empty());
    }
}
