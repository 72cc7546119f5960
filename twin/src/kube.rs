//! The simulated cluster's Kubernetes/OpenShift API over HTTPS: real paths, real JSON, real
//! `Status` errors, served from the same world the simulated ports act on.
//!
//! Every request passes [`drctl_sim::ports::api_request`] first — the one decision of whether the
//! API answers (latency, outages, quorum, injected 429/5xx) — so faults apply at the HTTP layer:
//! a refused API drops the connection, an injected 503 is a 503 with a `Status` body.
//! Objects are rendered from the world's data as the API server serializes them; writes go
//! through the same world methods as the simulated port.

use bytes::Bytes;
use drctl_sim::hosted_etcd::{EtcdPod, EtcdPodPhase, EtcdPvc, EtcdSlot, HostedEtcd};
use drctl_sim::ports::{api_request, machine_manifest, ApiRefusal, Verb};
use drctl_sim::world::{MachineObj, NetworkType, Platform, World};
use drctl_sim::Sim;
use drctl_workflows::ports::{control_plane_namespace, etcd_pvc_name, NodeInfo, Operator, PodInfo, PodStatus, PortError};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

pub type Body = Full<Bytes>;

const MACHINE_API: &str = "openshift-machine-api";
const OVN: &str = "openshift-ovn-kubernetes";
/// `spec.unsupportedConfigOverrides` key that turns the etcd quorum guard off.
const UNSAFE_NON_HA_ETCD: &str = "useUnsupportedUnsafeNonHANonProductionUnstableEtcd";

/// Why a request got no answer at all: the connection is dropped, as with nothing listening.
#[derive(Debug)]
pub struct Dropped(pub &'static str);

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for Dropped {}

/// One request, as read off the connection.
pub struct ApiCall {
    /// The bearer token the request carries, if any.
    pub bearer: Option<String>,
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl ApiCall {
    pub async fn read(req: Request<Incoming>) -> Result<ApiCall, hyper::Error> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().map(parse_query).unwrap_or_default();
        let content_type = req.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let bearer = bearer(req.headers());
        let body = req.into_body().collect().await?.to_bytes().to_vec();
        Ok(ApiCall { bearer, method, path, query, content_type, body })
    }

    fn param(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The bearer token of a request, if it carries one.
pub fn bearer(headers: &hyper::HeaderMap) -> Option<String> {
    headers.get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::to_string)
}

pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))).map(|(k, v)| (unescape(k), unescape(v))).collect()
}

/// Percent-decoding of a query component (`+` is a space in forms, not in Kubernetes queries).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An answer: status and JSON body.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    fn ok(body: Value) -> Answer {
        Answer { status: 200, body }
    }
    fn created(body: Value) -> Answer {
        Answer { status: 201, body }
    }

    /// A `metav1.Status` failure, as kube-apiserver writes it.
    pub fn status(code: u16, reason: &str, message: impl Into<String>, details: Option<(&str, &str, &str)>) -> Answer {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message.into(), "reason": reason, "code": code,
        });
        if let Some((name, group, kind)) = details {
            s["details"] = json!({ "name": name, "group": group, "kind": kind });
        }
        Answer { status: code, body: s }
    }

    /// `<kind>.<group> "<name>" not found`.
    fn not_found(group: &str, plural: &str, name: &str) -> Answer {
        let resource = if group.is_empty() { plural.to_string() } else { format!("{plural}.{group}") };
        Answer::status(404, "NotFound", format!("{resource} \"{name}\" not found"), Some((name, group, plural)))
    }

    fn no_route() -> Answer {
        Answer::status(404, "NotFound", "the server could not find the requested resource", None)
    }

    fn invalid(plural: &str, name: &str, why: &str) -> Answer {
        Answer::status(422, "Invalid", format!("{plural} \"{name}\" is invalid: {why}"), Some((name, "", plural)))
    }

    fn from_port_error(e: PortError) -> Answer {
        match e {
            PortError::NotFound(m) => Answer::status(404, "NotFound", m, None),
            PortError::Permanent(m) => Answer::status(422, "Invalid", m, None),
            PortError::Transient(m) => Answer::status(503, "ServiceUnavailable", m, None),
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let mut r = Response::new(Full::new(Bytes::from(self.body.to_string())));
        *r.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
        r
    }
}

/// Serve one request against the world: the API's admission decision, then the route.
pub fn serve(sim: &Sim, call: &ApiCall) -> Result<Answer, Dropped> {
    let verb = if call.method == Method::GET { Verb::Read } else { Verb::Write };
    let r = sim.op(|w| {
        let r = api_request(w, verb, |w| route(w, call));
        if verb == Verb::Write {
            // A write (even a refused one) may have changed what the controllers look at.
            w.touch();
        }
        r
    });
    match r {
        Ok(answer) => Ok(answer),
        Err(refusal) => refused(refusal),
    }
}

/// How the served API shows a refusal of the one admission decision: a dropped connection, or
/// the `Status` kube-apiserver answers.
fn refused(refusal: ApiRefusal) -> Result<Answer, Dropped> {
    match refusal {
        ApiRefusal::Refused => Err(Dropped("connection refused: no kube-apiserver answers")),
        ApiRefusal::Unresolvable => Err(Dropped("the API's name does not resolve from drctl's machine")),
        ApiRefusal::Unauthorized => Ok(Answer::status(401, "Unauthorized", "Unauthorized", None)),
        ApiRefusal::NoQuorum => Ok(Answer::status(504, "Timeout", "etcdserver: request timed out", None)),
        ApiRefusal::Status(code) => {
            let (reason, message) = drctl_sim::ports::api_status(code);
            Ok(Answer::status(code, reason, message, None))
        }
        ApiRefusal::Etcd(kind) => Ok(Answer::status(500, "InternalError", kind.message(), None)),
    }
}

fn route(w: &mut World, call: &ApiCall) -> Answer {
    let segs: Vec<&str> = call.path.trim_matches('/').split('/').collect();
    let m = &call.method;
    match (m.as_str(), segs.as_slice()) {
        ("GET", ["version"]) => Answer::ok(version(w)),
        ("GET", ["api", "v1", "nodes"]) => Answer::ok(list("NodeList", "v1", w.node_infos().iter().map(|n| node(w, n)).collect())),
        ("DELETE", ["api", "v1", "nodes", name]) => delete_node(w, name),
        (_, ["api", "v1", "namespaces", ns, plural @ ("pods" | "persistentvolumeclaims"), rest @ ..])
            if hosted_cluster_of(w, ns).is_some() =>
        {
            control_plane_namespace_objects(w, call, ns, plural, rest)
        }
        ("GET", ["api", "v1", "namespaces", _, "persistentvolumeclaims"]) => Answer::ok(list("PersistentVolumeClaimList", "v1", vec![])),
        (_, ["apis", "apps", "v1", "namespaces", ns, "deployments", rest @ ..]) if hosted_cluster_of(w, ns).is_some() => {
            control_plane_deployments(w, call, ns, rest)
        }
        ("GET", ["apis", "apps", "v1", "namespaces", ns, "statefulsets", name]) => match hosted_etcd_in(w, ns) {
            Some(e) if *name == "etcd" => Answer::ok(hosted_etcd_statefulset(ns, e)),
            _ => Answer::not_found("apps", "statefulsets", name),
        },
        ("GET", ["api", "v1", "namespaces", ns, "pods"]) => list_pods(w, ns, call.param("labelSelector").unwrap_or("")),
        ("DELETE", ["api", "v1", "namespaces", ns, "pods", name]) => delete_pod(w, ns, name),
        ("GET", ["api", "v1", "namespaces", ns, "secrets"]) => Answer::ok(list("SecretList", "v1", secrets(w, ns))),
        ("POST", ["api", "v1", "namespaces", MACHINE_API, "secrets"]) => write_bmc_secret(w, call, None),
        ("GET", ["api", "v1", "namespaces", "openshift-kube-apiserver-operator", "secrets", "kube-apiserver-to-kubelet-signer"]) => {
            kubelet_signer(w)
        }
        ("PATCH", ["api", "v1", "namespaces", MACHINE_API, "secrets", name]) => write_bmc_secret(w, call, Some(name)),
        ("GET", ["api", "v1", "namespaces", ns, "secrets", name]) => hosted_secret(w, ns, name),
        (_, ["apis", "metal3.io", "v1alpha1", "namespaces", MACHINE_API, "baremetalhosts", rest @ ..]) => bare_metal_hosts(w, call, rest),
        ("DELETE", ["api", "v1", "namespaces", ns, "secrets", name]) => delete_secret(w, ns, name),
        ("GET", ["apis", "certificates.k8s.io", "v1", "certificatesigningrequests"]) => {
            Answer::ok(list("CertificateSigningRequestList", "certificates.k8s.io/v1", w.api().csrs.values().map(csr).collect()))
        }
        ("GET", ["apis", "certificates.k8s.io", "v1", "certificatesigningrequests", name]) => match w.api().csrs.get(*name) {
            Some(c) => Answer::ok(csr(c)),
            None => Answer::not_found("certificates.k8s.io", "certificatesigningrequests", name),
        },
        ("PUT", ["apis", "certificates.k8s.io", "v1", "certificatesigningrequests", name, "approval"]) => approve_csr(w, name, call),
        ("GET", ["apis", "config.openshift.io", "v1", "clusterversions", "version"]) => Answer::ok(cluster_version(w)),
        ("GET", ["apis", "config.openshift.io", "v1", "clusteroperators"]) => Answer::ok(cluster_operators(w)),
        ("GET", ["apis", "config.openshift.io", "v1", "networks", "cluster"]) => Answer::ok(network(w)),
        ("GET", ["apis", "config.openshift.io", "v1", "infrastructures", "cluster"]) => Answer::ok(infrastructure(w)),
        ("GET", ["apis", "apps", "v1", "namespaces", ns, "daemonsets", name]) => daemonset(w, ns, name),
        ("GET", ["apis", "admissionregistration.k8s.io", "v1", plural]) => webhook_configurations(w, plural),
        ("GET", ["apis", "machine.openshift.io", "v1", "namespaces", MACHINE_API, "controlplanemachinesets", "cluster"]) => {
            control_plane_machine_set(w)
        }
        (_, ["apis", "machine.openshift.io", "v1beta1", "namespaces", MACHINE_API, "machines", rest @ ..]) => machines(w, call, rest),
        (_, ["apis", "hypershift.openshift.io", "v1beta1", "namespaces", ns, plural, rest @ ..]) => hypershift(w, call, ns, plural, rest),
        ("GET", ["apis", "cluster.x-k8s.io", "v1beta1", "namespaces", ns, "machines"]) => {
            capi_machines(w, ns, call.param("labelSelector").unwrap_or(""))
        }
        ("GET", ["apis", "apps", "v1", "namespaces", "hypershift", "deployments", "operator"]) => hypershift_operator(w),
        (_, ["apis", "operator.openshift.io", "v1", plural, "cluster"]) => match operator_of(plural) {
            Some(op) if m == Method::GET => Answer::ok(operator(w, op)),
            Some(op) if m == Method::PATCH => patch_operator(w, op, call),
            Some(_) => Answer::status(405, "MethodNotAllowed", format!("{m} is not supported on {plural}"), None),
            None => Answer::no_route(),
        },
        _ => Answer::no_route(),
    }
}

/// The secrets of `ns` (the etcd operator's TLS secrets), names and types only.
fn secrets(w: &World, ns: &str) -> Vec<Value> {
    let kind = if ns == MACHINE_API { "Opaque" } else { "kubernetes.io/tls" };
    w.secret_names(ns)
        .into_iter()
        .map(|name| json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": name, "namespace": ns }, "type": kind }))
        .collect()
}

/// Create (`name` None) or merge-patch a BMC secret of `openshift-machine-api`. The values are
/// read from `stringData` or base64 `data`, handed to the world (which keeps a digest) and
/// never echoed: the answer carries the name and type only.
fn write_bmc_secret(w: &mut World, call: &ApiCall, name: Option<&str>) -> Answer {
    use base64::Engine;
    let Ok(body) = serde_json::from_slice::<Value>(&call.body) else {
        return Answer::status(400, "BadRequest", "the request body is not a Secret in JSON", None);
    };
    let name = match name {
        Some(n) => n.to_string(),
        None => body.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string(),
    };
    let exists = w.secret_names(MACHINE_API).contains(&name);
    match (call.method.as_str(), exists) {
        ("POST", true) => {
            return Answer::status(409, "AlreadyExists", format!("secrets \"{name}\" already exists"), Some((&name, "", "secrets")));
        }
        ("PATCH", false) => return Answer::not_found("", "secrets", &name),
        _ => {}
    }
    let value = |key: &str| -> Option<String> {
        if let Some(v) = body.pointer(&format!("/stringData/{key}")).and_then(Value::as_str) {
            return Some(v.to_string());
        }
        let b64 = body.pointer(&format!("/data/{key}")).and_then(Value::as_str)?;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).ok()?).ok()
    };
    let (Some(username), Some(password)) = (value("username"), value("password")) else {
        return Answer::status(422, "Invalid", format!("Secret \"{name}\" is invalid: a BMC secret needs username and password"), None);
    };
    w.api_apply_bmc_secret(&name, &username, &password);
    let obj = json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": name, "namespace": MACHINE_API }, "type": "Opaque" });
    if call.method == Method::POST {
        Answer::created(obj)
    } else {
        Answer::ok(obj)
    }
}

/// The kubelet signer's secret, as metadata (the key material is not the twin's to serve).
fn kubelet_signer(w: &World) -> Answer {
    Answer::ok(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": { "name": "kube-apiserver-to-kubelet-signer", "namespace": "openshift-kube-apiserver-operator",
                      "annotations": { "auth.openshift.io/certificate-not-after": time(w.kubelet_signer_not_after()) } },
    }))
}

/// A BareMetalHost as the bare metal operator leaves it.
fn bare_metal_host(w: &World, b: &drctl_sim::bare_metal::BmhObj) -> Value {
    let mut v = json!({
        "apiVersion": "metal3.io/v1alpha1",
        "kind": "BareMetalHost",
        "metadata": { "name": b.name, "namespace": MACHINE_API, "uid": b.uid, "creationTimestamp": time(w.installed_at),
                      "finalizers": ["baremetalhost.metal3.io"] },
        "spec": {
            "bmc": { "address": b.bmc_address, "credentialsName": b.credentials_name },
            "bootMACAddress": b.boot_mac,
            "externallyProvisioned": b.externally_provisioned,
            "online": true,
        },
        "status": {
            "provisioning": { "state": b.state },
            "poweredOn": b.powered_on,
            "operationalStatus": if b.error.is_some() { "error" } else { "OK" },
        }
    });
    if let Some(m) = &b.consumer {
        v["spec"]["consumerRef"] =
            json!({ "apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine", "name": m, "namespace": MACHINE_API });
    }
    if let Some(e) = &b.error {
        let (kind, message) = e.split_once(": ").unwrap_or(("", e));
        v["status"]["errorType"] = json!(kind);
        v["status"]["errorMessage"] = json!(message);
    }
    if b.deleting {
        v["metadata"]["deletionTimestamp"] = json!(time(w.now));
    }
    v
}

fn bare_metal_hosts(w: &mut World, call: &ApiCall, rest: &[&str]) -> Answer {
    let hosts = |w: &World| w.api().bare_metal_hosts.values().map(|b| bare_metal_host(w, b)).collect::<Vec<_>>();
    match (call.method.as_str(), rest) {
        ("GET", []) => Answer::ok(list("BareMetalHostList", "metal3.io/v1alpha1", hosts(w))),
        ("GET", [name]) => match w.api().bare_metal_hosts.get(*name) {
            Some(b) => Answer::ok(bare_metal_host(w, b)),
            None => Answer::not_found("metal3.io", "baremetalhosts", name),
        },
        ("DELETE", [name]) => {
            if !w.api().bare_metal_hosts.contains_key(*name) {
                return Answer::not_found("metal3.io", "baremetalhosts", name);
            }
            w.api_delete_bare_metal_host(name);
            Answer::ok(bare_metal_host(w, &w.api().bare_metal_hosts[*name]))
        }
        ("POST", []) => create_bare_metal_host(w, call),
        _ => Answer::status(405, "MethodNotAllowed", format!("{} is not supported here", call.method), None),
    }
}

fn create_bare_metal_host(w: &mut World, call: &ApiCall) -> Answer {
    let Ok(body) = serde_json::from_slice::<Value>(&call.body) else {
        return Answer::status(400, "BadRequest", "the request body is not a BareMetalHost in JSON", None);
    };
    if body["kind"] != "BareMetalHost" || body["apiVersion"] != "metal3.io/v1alpha1" {
        return Answer::status(400, "BadRequest", "the object is not a metal3.io/v1alpha1 BareMetalHost", None);
    }
    let s = |ptr: &str| body.pointer(ptr).and_then(Value::as_str).unwrap_or("").to_string();
    let host = drctl_workflows::ports::NewBareMetalHost {
        name: s("/metadata/name"),
        bmc_address: s("/spec/bmc/address"),
        boot_mac_address: s("/spec/bootMACAddress"),
        credentials_name: s("/spec/bmc/credentialsName"),
    };
    if body.pointer("/spec/externallyProvisioned") == Some(&Value::Bool(true)) {
        return Answer::invalid("baremetalhosts", &host.name, "the twin provisions new hosts only (externallyProvisioned must be false)");
    }
    if w.api().bare_metal_hosts.contains_key(&host.name) {
        let name = host.name.clone();
        return Answer::status(
            409,
            "AlreadyExists",
            format!("baremetalhosts.metal3.io \"{name}\" already exists"),
            Some((&name, "metal3.io", "baremetalhosts")),
        );
    }
    match w.api_create_bare_metal_host(&host) {
        Ok(()) => Answer::created(bare_metal_host(w, &w.api().bare_metal_hosts[&host.name])),
        Err(e) => Answer::from_port_error(e),
    }
}

fn delete_secret(w: &mut World, ns: &str, name: &str) -> Answer {
    if !w.secret_names(ns).iter().any(|s| s == name) {
        return Answer::not_found("", "secrets", name);
    }
    w.api_delete_secret(ns, name);
    Answer::ok(
        json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": { "name": name, "kind": "secrets" } }),
    )
}

/// Where an admitted exec runs its command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecTarget {
    /// The `etcdctl` container of an etcd pod of the cluster itself (`openshift-etcd`).
    EtcdPod,
    /// The `etcd` container of an etcd pod of HostedCluster `namespace/name`, in its
    /// control-plane namespace.
    HostedEtcd { namespace: String, name: String },
}

/// Admit `kubectl exec` into container `container` of pod `pod` in `ns`: the API's admission
/// decision, then the pod's (the kube adapter's exec of `etcdctl` in an etcd pod, or in a hosted
/// etcd pod of a control-plane namespace). `Ok(Ok(target))`: go on and upgrade;
/// `Ok(Err(answer))`: refused with that `Status`.
pub fn admit_exec(sim: &Sim, ns: &str, pod: &str, container: &str) -> Result<Result<ExecTarget, Answer>, Dropped> {
    let r = sim.op(|w| {
        api_request(w, Verb::Read, |w| {
            if let Some((namespace, name)) = hosted_cluster_of(w, ns) {
                return match w.admit_hosted_etcd_exec(&namespace, &name, pod, container) {
                    Ok(()) => Ok(ExecTarget::HostedEtcd { namespace, name }),
                    Err(e) => Err(hosted_exec_refusal(e, pod, container)),
                };
            }
            let node = pod.strip_prefix("etcd-").filter(|_| ns == "openshift-etcd" && container == "etcdctl");
            let refusal = match node {
                Some(node) => w.etcd_pod_exec(node).err(),
                None => Some(PortError::NotFound(format!("pods \"{pod}\" not found (the twin execs only etcdctl in etcd pods)"))),
            };
            match refusal {
                None => Ok(ExecTarget::EtcdPod),
                Some(PortError::NotFound(m)) => Err(Answer::status(404, "NotFound", m, Some((pod, "", "pods")))),
                // What a kubelet that cannot be reached, or a container that does not run, makes
                // the API server answer.
                Some(e) => Err(Answer::status(500, "InternalError", e.to_string(), None)),
            }
        })
    });
    match r {
        Ok(admitted) => Ok(admitted),
        Err(refusal) => refused(refusal).map(Err),
    }
}

/// The API server's answer to an exec the hosted etcd pod refused: a pod that is not there, a
/// container it does not have, or an `etcd` container that does not run now (it crash-loops,
/// initializes or terminates) — `unable to upgrade connection: container not found`.
fn hosted_exec_refusal(e: PortError, pod: &str, container: &str) -> Answer {
    match e {
        PortError::NotFound(_) => Answer::status(404, "NotFound", format!("pods \"{pod}\" not found"), Some((pod, "", "pods"))),
        PortError::Permanent(m) => {
            let message = m.strip_prefix("HTTP 400 BadRequest: ").unwrap_or(&m).to_string();
            Answer::status(400, "BadRequest", message, None)
        }
        PortError::Transient(_) => {
            Answer::status(400, "BadRequest", format!("unable to upgrade connection: container not found (\"{container}\")"), None)
        }
    }
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    json!({ "apiVersion": api_version, "kind": kind, "metadata": { "resourceVersion": "1" }, "items": items })
}

fn time(t: drctl_runtime::clock::Timestamp) -> String {
    // Kubernetes writes whole seconds.
    let s = t.to_string();
    format!("{}Z", &s[..19])
}

fn version(w: &World) -> Value {
    json!({
        "major": "1", "minor": "28", "gitVersion": "v1.28.6+f1618d5", "gitCommit": "f1618d5", "gitTreeState": "clean",
        "buildDate": time(w.installed_at), "goVersion": "go1.20.12 X:strictfipsruntime", "compiler": "gc", "platform": "linux/amd64",
    })
}

// ---------------------------------------------------------------------------------------------
// Core resources
// ---------------------------------------------------------------------------------------------

fn node(w: &World, n: &NodeInfo) -> Value {
    let mut labels = Map::new();
    labels.insert("kubernetes.io/hostname".into(), json!(n.name));
    labels.insert("kubernetes.io/os".into(), json!("linux"));
    if n.control_plane {
        labels.insert("node-role.kubernetes.io/master".into(), json!(""));
        labels.insert("node-role.kubernetes.io/control-plane".into(), json!(""));
    } else {
        labels.insert("node-role.kubernetes.io/worker".into(), json!(""));
    }
    // The node lifecycle controller puts each taint on twice: NoSchedule and NoExecute.
    let taints: Vec<Value> =
        n.taints.iter().flat_map(|k| ["NoSchedule", "NoExecute"].map(|effect| json!({ "key": k, "effect": effect }))).collect();
    let since = time(n.status_since.unwrap_or(w.now));
    let (status, reason, message) = match (n.ready, n.taints.iter().any(|t| t.ends_with("unreachable"))) {
        (true, _) => ("True", "KubeletReady", "kubelet is posting ready status"),
        (false, true) => ("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."),
        (false, false) => ("False", "KubeletNotReady", "container runtime network not ready"),
    };
    let mut addresses = vec![json!({ "type": "InternalIP", "address": n.internal_ip })];
    addresses.extend(n.addresses.iter().filter(|a| **a != n.internal_ip).map(|a| json!({ "type": "Hostname", "address": a })));
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": n.name, "labels": labels, "resourceVersion": "1" },
        "spec": { "taints": taints },
        "status": {
            "conditions": [{ "type": "Ready", "status": status, "reason": reason, "message": message,
                             "lastHeartbeatTime": since, "lastTransitionTime": since }],
            "addresses": addresses,
            "nodeInfo": { "kubeletVersion": "v1.28.6+f1618d5", "operatingSystem": "linux", "architecture": "amd64" },
        },
    })
}

fn delete_node(w: &mut World, name: &str) -> Answer {
    if !w.api().nodes.contains_key(name) {
        return Answer::not_found("", "nodes", name);
    }
    w.api_delete_node(name);
    Answer::ok(
        json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": { "name": name, "kind": "nodes" } }),
    )
}

/// Every pod of `namespace` the world has, with its labels.
fn pods_of(w: &World, namespace: &str) -> Vec<(PodInfo, &'static str, &'static str)> {
    let selectors: &[(&str, &str, &str)] = match namespace {
        "openshift-etcd" => &[("k8s-app=etcd", "k8s-app", "etcd")],
        OVN => &[
            ("app=ovnkube-master", "app", "ovnkube-master"),
            ("app=ovnkube-node", "app", "ovnkube-node"),
            ("app=ovnkube-control-plane", "app", "ovnkube-control-plane"),
        ],
        // The temporary etcd signer of OpenShift 4.1–4.3.
        "openshift-config" => &[("", "k8s-app", "etcd-signer")],
        _ => &[],
    };
    selectors.iter().flat_map(|(sel, k, v)| w.pod_infos(namespace, sel).unwrap_or_default().into_iter().map(move |p| (p, *k, *v))).collect()
}

/// An equality-based label selector (`a=b,c==d,e!=f`); anything else is refused as the API does.
fn selector_matches(selector: &str, labels: &Map<String, Value>) -> Result<bool, String> {
    for term in selector.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (key, want, negate) = if let Some((k, v)) = term.split_once("!=") {
            (k, v, true)
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            (k, v, false)
        } else {
            return Err(format!("unable to parse requirement: {term}: only equality selectors are served by the drctl twin"));
        };
        let has = labels.get(key.trim()).and_then(Value::as_str) == Some(want.trim());
        if has == negate {
            return Ok(false);
        }
    }
    Ok(true)
}

fn pod(namespace: &str, p: &PodInfo, label: (&str, &str)) -> Value {
    let mut labels = Map::new();
    labels.insert(label.0.into(), json!(label.1));
    if namespace == "openshift-etcd" {
        labels.insert("app".into(), json!("etcd"));
        labels.insert("etcd".into(), json!("true"));
    }
    // `oc get pods` STATUS: a crash-looping container is Running with a waiting reason.
    let (phase, state) = match &p.phase {
        PodStatus::CrashLoopBackOff => {
            ("Running", json!({ "waiting": { "reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container" } }))
        }
        PodStatus::Running => ("Running", json!({ "running": { "startedAt": "2026-01-05T09:00:00Z" } })),
        // Not started yet: the kubelet reports no container state (STATUS shows the phase).
        other => (other.as_str(), json!({})),
    };
    let container = label.1.trim_start_matches("ovnkube-");
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": p.name, "namespace": namespace, "labels": labels, "resourceVersion": "1" },
        "spec": { "nodeName": p.node, "containers": [{ "name": container, "image": "quay.io/openshift-release-dev/ocp-v4.0-art-dev" }] },
        "status": {
            "phase": phase,
            "conditions": [{ "type": "Ready", "status": if p.ready { "True" } else { "False" } }],
            "containerStatuses": [{ "name": container, "ready": p.ready, "restartCount": 0, "state": state }],
        },
    })
}

fn list_pods(w: &World, namespace: &str, selector: &str) -> Answer {
    let mut items = vec![];
    for (p, k, v) in pods_of(w, namespace) {
        let obj = pod(namespace, &p, (k, v));
        let labels = obj["metadata"]["labels"].as_object().cloned().unwrap_or_default();
        match selector_matches(selector, &labels) {
            Ok(true) => items.push(obj),
            Ok(false) => {}
            Err(why) => return Answer::status(400, "BadRequest", why, None),
        }
    }
    Answer::ok(list("PodList", "v1", items))
}

fn delete_pod(w: &mut World, namespace: &str, name: &str) -> Answer {
    let Some((p, k, v)) = pods_of(w, namespace).into_iter().find(|(p, _, _)| p.name == name) else {
        return Answer::not_found("", "pods", name);
    };
    w.api_delete_pod(namespace, name);
    Answer::ok(pod(namespace, &p, (k, v)))
}

// ---------------------------------------------------------------------------------------------
// Certificate signing requests
// ---------------------------------------------------------------------------------------------

fn csr_resource_version(c: &drctl_sim::world::CsrObj) -> String {
    format!("{}", c.created_at.millis() / 1000 * 10 + u64::from(c.approved))
}

fn csr(c: &drctl_sim::world::CsrObj) -> Value {
    use base64::Engine;
    let usages = json!(drctl_sim::ports::kubelet_usages(&c.signer));
    let groups = if c.requestor.starts_with("system:node:") {
        json!(["system:nodes", "system:authenticated"])
    } else {
        json!(["system:serviceaccounts", "system:serviceaccounts:openshift-machine-config-operator", "system:authenticated"])
    };
    let mut status = json!({});
    if c.approved {
        let at = time(c.created_at);
        status = json!({ "conditions": [{ "type": "Approved", "status": "True", "reason": "NodeCSRApprove",
                                          "message": "This CSR was approved by the Node CSR Approver", "lastUpdateTime": at, "lastTransitionTime": at }] });
    }
    json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": { "name": c.name, "creationTimestamp": time(c.created_at), "resourceVersion": csr_resource_version(c) },
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(c.request.as_bytes()),
            "signerName": c.signer, "username": c.requestor, "groups": groups, "usages": usages,
        },
        "status": status,
    })
}

/// `PUT …/certificatesigningrequests/NAME/approval` with the object carrying an `Approved`
/// condition; a stale `resourceVersion` is a 409, as optimistic concurrency makes it.
fn approve_csr(w: &mut World, name: &str, call: &ApiCall) -> Answer {
    let Some(current) = w.api().csrs.get(name).cloned() else {
        return Answer::not_found("certificates.k8s.io", "certificatesigningrequests", name);
    };
    let Ok(body) = serde_json::from_slice::<Value>(&call.body) else {
        return Answer::status(400, "BadRequest", "the request body is not a CertificateSigningRequest in JSON", None);
    };
    if body.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
        return Answer::status(400, "BadRequest", "the name of the object does not match the name on the URL", None);
    }
    if let Some(rv) = body.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
        if rv != csr_resource_version(&current) {
            return Answer::status(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on certificatesigningrequests.certificates.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                ),
                Some((name, "certificates.k8s.io", "certificatesigningrequests")),
            );
        }
    }
    let conditions = body.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let has = |t: &str| conditions.iter().any(|c| c["type"] == t && c["status"] == "True");
    if has("Denied") || !has("Approved") {
        return Answer::invalid("certificatesigningrequests", name, "status.conditions: the drctl twin serves approvals only");
    }
    match w.api_approve_csr(name) {
        Ok(()) => Answer::ok(csr(&w.api().csrs[name])),
        Err(e) => Answer::from_port_error(e),
    }
}

// ---------------------------------------------------------------------------------------------
// config.openshift.io
// ---------------------------------------------------------------------------------------------

fn cluster_version(w: &World) -> Value {
    let v = &w.api().cluster_version;
    json!({
        "apiVersion": "config.openshift.io/v1", "kind": "ClusterVersion",
        "metadata": { "name": "version", "creationTimestamp": time(w.installed_at), "resourceVersion": "1" },
        "spec": { "channel": "stable-4.15", "clusterID": "5f6ad8f0-1d9c-4b8b-9a4e-5b0f7c3c2d11" },
        "status": {
            "desired": { "version": v, "image": format!("quay.io/openshift-release-dev/ocp-release:{v}-x86_64") },
            "history": [{ "state": "Completed", "version": v, "startedTime": time(w.installed_at), "completionTime": time(w.installed_at) }],
        },
    })
}

fn cluster_operators(w: &World) -> Value {
    let cond = |t: &str, on: bool| json!({ "type": t, "status": if on { "True" } else { "False" }, "lastTransitionTime": time(w.now) });
    let items = w
        .cluster_operator_infos()
        .iter()
        .map(|o| {
            json!({
                "apiVersion": "config.openshift.io/v1", "kind": "ClusterOperator",
                "metadata": { "name": o.name, "resourceVersion": "1" },
                "status": { "conditions": [cond("Available", o.available), cond("Progressing", o.progressing), cond("Degraded", o.degraded)] },
            })
        })
        .collect();
    list("ClusterOperatorList", "config.openshift.io/v1", items)
}

fn network(w: &World) -> Value {
    let t = w.network.status_type();
    json!({
        "apiVersion": "config.openshift.io/v1", "kind": "Network",
        "metadata": { "name": "cluster", "resourceVersion": "1" },
        "spec": { "networkType": t, "clusterNetwork": [{ "cidr": "10.128.0.0/14", "hostPrefix": 23 }], "serviceNetwork": ["172.30.0.0/16"] },
        "status": { "networkType": t, "clusterNetwork": [{ "cidr": "10.128.0.0/14", "hostPrefix": 23 }], "serviceNetwork": ["172.30.0.0/16"] },
    })
}

fn infrastructure(w: &World) -> Value {
    let t = w.platform.infrastructure_type();
    json!({
        "apiVersion": "config.openshift.io/v1", "kind": "Infrastructure",
        "metadata": { "name": "cluster", "resourceVersion": "1" },
        "spec": { "platformSpec": { "type": t } },
        "status": { "platform": t, "platformStatus": { "type": t }, "controlPlaneTopology": "HighlyAvailable" },
    })
}

/// `ds/ovnkube-master` exists only with OVN-Kubernetes without interconnect; its northbound and
/// southbound database addresses name the control-plane IPs.
fn daemonset(w: &World, namespace: &str, name: &str) -> Answer {
    if namespace != OVN || name != "ovnkube-master" || w.network != NetworkType::OvnCentral {
        return Answer::not_found("apps", "daemonsets", name);
    }
    let ips: Vec<&String> = w.ovn_master_ips.iter().collect();
    let nb = ips.iter().map(|ip| format!("ssl:{ip}:9641")).collect::<Vec<_>>().join(",");
    let sb = ips.iter().map(|ip| format!("ssl:{ip}:9642")).collect::<Vec<_>>().join(",");
    Answer::ok(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": { "name": name, "namespace": namespace, "resourceVersion": "1" },
        "spec": { "template": { "spec": { "containers": [{
            "name": "ovnkube-master",
            "command": ["/bin/bash", "-c", format!("exec /usr/bin/ovnkube --init-master \"${{K8S_NODE}}\" --nb-address \"{nb}\" --sb-address \"{sb}\"")],
            "env": [{ "name": "OVN_NB_DB_LIST", "value": nb }, { "name": "OVN_SB_DB_LIST", "value": sb }],
        }] } } },
        "status": { "desiredNumberScheduled": ips.len(), "numberReady": ips.len() },
    }))
}

fn webhook_configurations(w: &World, plural: &str) -> Answer {
    let kind = match plural {
        "validatingwebhookconfigurations" => "ValidatingWebhookConfiguration",
        "mutatingwebhookconfigurations" => "MutatingWebhookConfiguration",
        _ => return Answer::no_route(),
    };
    let prefix = format!("{}/", kind.to_ascii_lowercase());
    let mut by_config: std::collections::BTreeMap<&str, Vec<Value>> = Default::default();
    for h in &w.api().fail_closed_webhooks {
        if let Some(name) = h.configuration.strip_prefix(&prefix) {
            let (ns, svc) = h.service.split_once('/').unwrap_or(("default", h.service.as_str()));
            by_config.entry(name).or_default().push(json!({
                "name": h.webhook, "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                "clientConfig": { "service": { "namespace": ns, "name": svc, "port": 443 } },
            }));
        }
    }
    let items = by_config
        .into_iter()
        .map(|(name, hooks)| json!({ "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": { "name": name }, "webhooks": hooks }))
        .collect();
    Answer::ok(list(&format!("{kind}List"), "admissionregistration.k8s.io/v1", items))
}

// ---------------------------------------------------------------------------------------------
// machine.openshift.io
// ---------------------------------------------------------------------------------------------

/// Clusters from 4.12 on AWS have the resource (Active when the set manages the control plane);
/// bare metal and user-provisioned installs have none.
fn control_plane_machine_set(w: &World) -> Answer {
    let state = match w.platform {
        Platform::CloudIpiCpms => "Active",
        Platform::CloudIpi => "Inactive",
        Platform::BareMetalIpi | Platform::Upi => return Answer::not_found("machine.openshift.io", "controlplanemachinesets", "cluster"),
    };
    Answer::ok(json!({
        "apiVersion": "machine.openshift.io/v1", "kind": "ControlPlaneMachineSet",
        "metadata": { "name": "cluster", "namespace": MACHINE_API, "resourceVersion": "1" },
        "spec": { "state": state, "replicas": 3, "strategy": { "type": "RollingUpdate" } },
    }))
}

/// A Machine as the API serves it: a machine being deleted carries its deletionTimestamp.
fn machine(w: &World, m: &MachineObj) -> Value {
    let mut v = machine_manifest(m);
    v["metadata"]["creationTimestamp"] = json!(time(w.installed_at));
    if m.phase == "Deleting" {
        v["metadata"]["deletionTimestamp"] = json!(time(w.now));
    }
    v
}

fn machines(w: &mut World, call: &ApiCall, rest: &[&str]) -> Answer {
    match (call.method.as_str(), rest) {
        ("GET", []) => {
            Answer::ok(list("MachineList", "machine.openshift.io/v1beta1", w.api().machines.values().map(|m| machine(w, m)).collect()))
        }
        ("GET", [name]) => match w.api().machines.get(*name) {
            Some(m) => Answer::ok(machine(w, m)),
            None => Answer::not_found("machine.openshift.io", "machines", name),
        },
        ("DELETE", [name]) => match w.api().machines.get(*name).cloned() {
            Some(m) => {
                if let Err(conflict) = delete_precondition(call, &machine(w, &m)) {
                    return conflict;
                }
                w.api_delete_machine(name);
                Answer::ok(machine(w, &w.api().machines[*name]))
            }
            None => Answer::not_found("machine.openshift.io", "machines", name),
        },
        ("POST", []) => create_machine(w, call),
        ("PATCH", [name]) => patch_machine(w, call, name),
        _ => Answer::status(405, "MethodNotAllowed", format!("{} is not supported here", call.method), None),
    }
}

/// A patch of a machine: the twin acts on its finalizers only (removing them ends a deletion
/// that hangs); any other change is refused rather than silently dropped.
fn patch_machine(w: &mut World, call: &ApiCall, name: &str) -> Answer {
    let Some(m) = w.api().machines.get(name).cloned() else {
        return Answer::not_found("machine.openshift.io", "machines", name);
    };
    let before = machine(w, &m);
    let after = match patched(call, before.clone()) {
        Ok(obj) => obj,
        Err(a) => return a,
    };
    let mut rest = after.clone();
    rest["metadata"]["finalizers"] = before["metadata"]["finalizers"].clone();
    if rest != before {
        return Answer::invalid("machines", name, "the twin patches only metadata.finalizers of a machine");
    }
    let finalizers = after.pointer("/metadata/finalizers");
    if finalizers.is_none_or(|f| f.is_null() || f.as_array().is_some_and(|a| a.is_empty())) {
        w.api_remove_machine_finalizers(name);
    }
    match w.api().machines.get(name) {
        Some(m) => Answer::ok(machine(w, m)),
        None => Answer::ok(after),
    }
}

fn create_machine(w: &mut World, call: &ApiCall) -> Answer {
    if !call.content_type.starts_with("application/json") {
        return Answer::status(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {:?})",
                call.content_type
            ),
            None,
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&call.body) else {
        return Answer::status(400, "BadRequest", "the request body is not a Machine in JSON", None);
    };
    if body["kind"] != "Machine" || body["apiVersion"] != "machine.openshift.io/v1beta1" {
        return Answer::status(400, "BadRequest", "the object is not a machine.openshift.io/v1beta1 Machine", None);
    }
    let name = body.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    if let Some(ns) = body.pointer("/metadata/namespace").and_then(Value::as_str) {
        if ns != MACHINE_API {
            return Answer::status(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
                None,
            );
        }
    }
    if w.api().machines.contains_key(&name) {
        return Answer::status(
            409,
            "AlreadyExists",
            format!("machines.machine.openshift.io \"{name}\" already exists"),
            Some((&name, "machine.openshift.io", "machines")),
        );
    }
    match w.api_create_machine(&body) {
        Ok(()) => Answer::created(machine(w, &w.api().machines[&name])),
        Err(e) => Answer::from_port_error(e),
    }
}

// ---------------------------------------------------------------------------------------------
// operator.openshift.io static-pod operators
// ---------------------------------------------------------------------------------------------

fn operator_of(plural: &str) -> Option<Operator> {
    Operator::ALL.iter().copied().find(|op| op.resource() == plural)
}

fn operator_kind(op: Operator) -> &'static str {
    match op {
        Operator::Etcd => "Etcd",
        Operator::KubeApiServer => "KubeAPIServer",
        Operator::KubeControllerManager => "KubeControllerManager",
        Operator::KubeScheduler => "KubeScheduler",
    }
}

fn operator(w: &World, op: Operator) -> Value {
    let o = &w.api().operators[&op];
    let p = w.installer_progress_info(op);
    let mut spec = json!({ "managementState": "Managed", "logLevel": "Normal", "operatorLogLevel": "Normal" });
    if let Some(r) = &p.force_redeployment_reason {
        spec["forceRedeploymentReason"] = json!(r);
    }
    if op == Operator::Etcd && !w.api().quorum_guard {
        spec["unsupportedConfigOverrides"] = json!({ UNSAFE_NON_HA_ETCD: true });
    }
    let progressing = p.reason != "AllNodesAtLatestRevision";
    let mut conditions = vec![json!({ "type": "NodeInstallerProgressing", "status": if progressing { "True" } else { "False" },
                                      "reason": p.reason, "message": p.message, "lastTransitionTime": time(w.now) })];
    if op == Operator::Etcd {
        let c = w.etcd_members_available_condition();
        conditions.push(json!({ "type": "EtcdMembersAvailable", "status": c.status, "reason": c.reason, "message": c.message,
                                "lastTransitionTime": time(w.now) }));
    }
    let node_statuses: Vec<Value> = o
        .node_revisions
        .iter()
        .map(|(node, rev)| json!({ "nodeName": node, "currentRevision": rev, "targetRevision": p.latest_revision }))
        .collect();
    json!({
        "apiVersion": "operator.openshift.io/v1", "kind": operator_kind(op),
        "metadata": { "name": "cluster", "resourceVersion": format!("{}", o.latest_revision), "generation": o.latest_revision },
        "spec": spec,
        "status": {
            "latestAvailableRevision": p.latest_revision,
            "conditions": conditions,
            "nodeStatuses": node_statuses,
        },
    })
}

/// The object `current` with the request's patch applied: a JSON merge patch (RFC 7386) or a
/// JSON patch (RFC 6902), as the content type says; any other is refused as the API does.
fn patched(call: &ApiCall, current: Value) -> Result<Value, Answer> {
    let Ok(patch) = serde_json::from_slice::<Value>(&call.body) else {
        return Err(Answer::status(400, "BadRequest", "the patch is not JSON", None));
    };
    let mut obj = current;
    match call.content_type.as_str() {
        "application/merge-patch+json" => merge_patch(&mut obj, &patch),
        "application/json-patch+json" => json_patch(&mut obj, &patch).map_err(|why| {
            Answer::status(422, "Invalid", format!("the server rejected our request due to an error in our request: {why}"), None)
        })?,
        _ => {
            return Err(Answer::status(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                None,
            ));
        }
    }
    Ok(obj)
}

/// The parent of a JSON pointer's target and the last reference token, unescaped.
fn split_pointer(path: &str) -> Result<(String, String), String> {
    if !path.starts_with('/') {
        return Err(format!("path {path:?} is not a JSON pointer"));
    }
    let (parent, last) = path.rsplit_once('/').expect("starts with /");
    Ok((parent.to_string(), last.replace("~1", "/").replace("~0", "~")))
}

/// RFC 6902 JSON patch: add, remove, replace, test, move, copy; all or nothing.
fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops.as_array().ok_or("a JSON patch is an array of operations")?;
    let mut doc = target.clone();
    for op in ops {
        let kind = op["op"].as_str().ok_or("an operation without \"op\"")?;
        let path = op["path"].as_str().ok_or("an operation without \"path\"")?;
        match kind {
            "add" | "replace" => {
                put(&mut doc, path, op.get("value").cloned().ok_or("an add or replace without \"value\"")?, kind == "replace")?
            }
            "remove" => {
                take(&mut doc, path)?;
            }
            "test" => {
                if doc.pointer(path) != op.get("value") {
                    return Err(format!("test operation failed at {path}"));
                }
            }
            "move" | "copy" => {
                let from = op["from"].as_str().ok_or("a move or copy without \"from\"")?;
                let v =
                    if kind == "move" { take(&mut doc, from)? } else { doc.pointer(from).cloned().ok_or(format!("no value at {from}"))? };
                put(&mut doc, path, v, false)?;
            }
            other => return Err(format!("unknown operation {other:?}")),
        }
    }
    *target = doc;
    Ok(())
}

fn put(doc: &mut Value, path: &str, v: Value, must_exist: bool) -> Result<(), String> {
    if path.is_empty() {
        *doc = v;
        return Ok(());
    }
    let (parent, key) = split_pointer(path)?;
    let p = doc.pointer_mut(&parent).ok_or(format!("no parent for {path}"))?;
    match p {
        Value::Object(m) => {
            if must_exist && !m.contains_key(&key) {
                return Err(format!("replace of a missing value at {path}"));
            }
            m.insert(key, v);
        }
        Value::Array(a) => {
            let i = if key == "-" { a.len() } else { key.parse::<usize>().map_err(|_| format!("{key:?} is not an index"))? };
            match (must_exist, i < a.len(), i == a.len()) {
                (true, true, _) => a[i] = v,
                (false, _, true) | (false, true, _) => a.insert(i, v),
                _ => return Err(format!("index {i} out of range at {path}")),
            }
        }
        _ => return Err(format!("{parent} is not an object or array")),
    }
    Ok(())
}

fn take(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, key) = split_pointer(path)?;
    let p = doc.pointer_mut(&parent).ok_or(format!("no parent for {path}"))?;
    match p {
        Value::Object(m) => m.remove(&key).ok_or(format!("no value at {path}")),
        Value::Array(a) => {
            let i = key.parse::<usize>().map_err(|_| format!("{key:?} is not an index"))?;
            (i < a.len()).then(|| a.remove(i)).ok_or(format!("index {i} out of range at {path}"))
        }
        _ => Err(format!("{parent} is not an object or array")),
    }
}

/// `DeleteOptions.preconditions` (uid, resourceVersion) against the object about to go: a
/// mismatch is a 409, as the API server's optimistic concurrency makes it.
fn delete_precondition(call: &ApiCall, obj: &Value) -> Result<(), Answer> {
    let Ok(opts) = serde_json::from_slice::<Value>(&call.body) else { return Ok(()) };
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        if let Some(want) = opts.pointer(&format!("/preconditions/{field}")).and_then(Value::as_str) {
            let have = obj.pointer(&format!("/metadata/{field}")).and_then(Value::as_str).unwrap_or("");
            if want != have {
                return Err(Answer::status(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {name}: Precondition failed: {label} in precondition: {want}, {label} in object meta: {have}"
                    ),
                    None,
                ));
            }
        }
    }
    Ok(())
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().expect("made an object above");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// A merge patch of a static-pod operator: the fields the runbook changes (the quorum guard's
/// override, `forceRedeploymentReason`) take effect; any other field is kept as the API's
/// structural schema would keep it, but the simulated operator ignores it.
fn patch_operator(w: &mut World, op: Operator, call: &ApiCall) -> Answer {
    let obj = match patched(call, operator(w, op)) {
        Ok(obj) => obj,
        Err(a) => return a,
    };
    if op == Operator::Etcd {
        let off = obj.pointer(&format!("/spec/unsupportedConfigOverrides/{UNSAFE_NON_HA_ETCD}"));
        let guard = !matches!(off, Some(Value::Bool(true))) && off.and_then(Value::as_str) != Some("true");
        w.api_set_quorum_guard(guard);
    }
    let reason = obj.pointer("/spec/forceRedeploymentReason").and_then(Value::as_str).unwrap_or("").to_string();
    if !reason.is_empty() && w.api().operators[&op].force_reason.as_deref() != Some(reason.as_str()) {
        w.force_redeployment(op, &reason, "");
    }
    Answer::ok(operator(w, op))
}

// ---------------------------------------------------------------------------------------------
// hypershift.openshift.io (a management cluster)
// ---------------------------------------------------------------------------------------------

const PAUSED_BY: &str = drctl_workflows::ports::PAUSED_BY_ANNOTATION;
const REPLICAS_BEFORE_ZERO: &str = drctl_workflows::ports::REPLICAS_BEFORE_ZERO_ANNOTATION;

fn pausable(kind: &str, namespace: &str, p: &drctl_sim::hosted::Pausable, spec: Value, w: &World) -> Value {
    let mut meta =
        json!({ "name": p.name, "namespace": namespace, "generation": p.generation, "resourceVersion": format!("{}", p.generation) });
    if let Some(by) = &p.paused_by {
        meta["annotations"] = json!({ PAUSED_BY: by });
    }
    if p.deleting {
        meta["deletionTimestamp"] = json!(time(w.now));
    }
    let mut spec = spec;
    if let Some(u) = &p.paused_until {
        spec["pausedUntil"] = json!(u);
    }
    let c = &p.reconciliation_active;
    json!({
        "apiVersion": "hypershift.openshift.io/v1beta1", "kind": kind, "metadata": meta, "spec": spec,
        "status": { "conditions": [{ "type": "ReconciliationActive", "status": c.status, "reason": c.reason,
                                     "observedGeneration": c.observed_generation, "lastTransitionTime": time(w.now) }] },
    })
}

/// The HyperShift objects; a cluster without the CRDs has no such resource types.
fn hypershift(w: &mut World, call: &ApiCall, ns: &str, plural: &str, rest: &[&str]) -> Answer {
    let Some(h) = w.hosted.clone() else { return Answer::no_route() };
    let key = |name: &str| drctl_sim::hosted::key(ns, name);
    match (call.method.as_str(), plural, rest) {
        ("GET", "hostedclusters", [name]) => match h.clusters.get(&key(name)) {
            Some(c) => Answer::ok(hosted_cluster(w, ns, c)),
            None => Answer::not_found("hypershift.openshift.io", "hostedclusters", name),
        },
        ("GET", "nodepools", []) => {
            let items = h.node_pools.values().filter(|p| p.namespace == ns).map(|p| node_pool(p, w)).collect();
            Answer::ok(list("NodePoolList", "hypershift.openshift.io/v1beta1", items))
        }
        ("GET", "nodepools", [name]) => match h.node_pools.get(&key(name)) {
            Some(p) => Answer::ok(node_pool(p, w)),
            None => Answer::not_found("hypershift.openshift.io", "nodepools", name),
        },
        ("PATCH", "nodepools", [name, "scale"]) => patch_node_pool_scale(w, call, ns, name),
        ("GET", "hostedcontrolplanes", [name]) => {
            let owner = h
                .clusters
                .values()
                .find(|c| drctl_workflows::ports::control_plane_namespace(&c.namespace, &c.cluster.name) == ns && c.cluster.name == *name);
            match owner {
                Some(c) => {
                    let mut spec = json!({});
                    if let Some(u) = &c.hcp_paused_until {
                        spec["pausedUntil"] = json!(u);
                    }
                    let mut hcp = json!({ "apiVersion": "hypershift.openshift.io/v1beta1", "kind": "HostedControlPlane",
                                          "metadata": { "name": name, "namespace": ns }, "spec": spec, "status": {} });
                    // The control-plane operator's verdict on its etcd: ready ≥ replicas/2+1.
                    if let Some(e) = &c.etcd {
                        let (status, reason) = if e.available() { ("True", "QuorumAvailable") } else { ("False", "EtcdWaitingForQuorum") };
                        hcp["status"]["conditions"] =
                            json!([{ "type": "EtcdAvailable", "status": status, "reason": reason, "lastTransitionTime": time(w.now) }]);
                    }
                    Answer::ok(hcp)
                }
                None => Answer::not_found("hypershift.openshift.io", "hostedcontrolplanes", name),
            }
        }
        ("PATCH", "hostedclusters" | "nodepools", [name]) => patch_pause(w, call, ns, plural, name),
        _ => Answer::status(405, "MethodNotAllowed", format!("{} is not served for {plural} by the drctl twin", call.method), None),
    }
}

/// A HostedCluster as the API serves it: its pause, availability policy, etcd management and
/// secret encryption in `spec`; `Available` beside `ReconciliationActive` in `status`.
fn hosted_cluster(w: &World, ns: &str, c: &drctl_sim::hosted::HostedCluster) -> Value {
    let mut spec = json!({ "release": { "image": "quay.io/openshift-release-dev/ocp-release:4.15.3-x86_64" } });
    if let Some(e) = &c.etcd {
        spec["controllerAvailabilityPolicy"] = json!(e.availability_policy);
    }
    let Ok(facts) = w.hosted_backup_facts(ns, &c.cluster.name) else {
        return pausable("HostedCluster", ns, &c.cluster, spec, w);
    };
    spec["etcd"] = json!({ "managementType": facts.etcd_management });
    if facts.etcd_management == "Managed" {
        spec["etcd"]["managed"] = json!({ "storage": { "type": "PersistentVolume", "persistentVolume": { "size": "8Gi" } } });
    }
    if let Some(kind) = &facts.encryption_type {
        spec["secretEncryption"] = json!({ "type": kind });
        if let Some(key) = &facts.active_key_secret {
            spec["secretEncryption"]["aescbc"] = json!({ "activeKey": { "name": key } });
        }
    }
    let mut hc = pausable("HostedCluster", ns, &c.cluster, spec, w);
    if let (Some(available), Some(conditions)) = (&facts.available, hc.pointer_mut("/status/conditions").and_then(Value::as_array_mut)) {
        let reason = if available == "True" { "AsExpected" } else { "WaitingForAvailable" };
        conditions.insert(
            0,
            json!({ "type": "Available", "status": available, "reason": reason,
                    "observedGeneration": c.cluster.generation, "lastTransitionTime": time(w.now) }),
        );
    }
    hc
}

/// The Deployments of a control-plane namespace (the etcd writers: `kube-apiserver`,
/// `openshift-apiserver`, `openshift-oauth-apiserver`): list, get, and `PATCH …/scale`.
fn control_plane_deployments(w: &mut World, call: &ApiCall, ns: &str, rest: &[&str]) -> Answer {
    let Some((namespace, cluster)) = hosted_cluster_of(w, ns) else { return Answer::no_route() };
    let scales = |w: &World| w.control_plane_deployments(&namespace, &cluster, &drctl_workflows::ports::ETCD_WRITERS).unwrap_or_default();
    let one = |w: &World, name: &str| scales(w).into_iter().find(|d| d.name == name);
    match (call.method.as_str(), rest) {
        ("GET", []) => Answer::ok(list("DeploymentList", "apps/v1", scales(w).iter().map(|d| deployment(ns, d)).collect())),
        ("GET", [name]) => match one(w, name) {
            Some(d) => Answer::ok(deployment(ns, &d)),
            None => Answer::not_found("apps", "deployments", name),
        },
        ("GET" | "PATCH", [name, "scale"]) => {
            let Some(d) = one(w, name) else { return Answer::not_found("apps", "deployments", name) };
            let scale = deployment_scale(ns, &d);
            if call.method == Method::GET {
                return Answer::ok(scale);
            }
            let obj = match patched(call, scale) {
                Ok(obj) => obj,
                Err(a) => return a,
            };
            let Some(replicas) = obj.pointer("/spec/replicas").and_then(Value::as_u64).and_then(|r| u32::try_from(r).ok()) else {
                return Answer::invalid("deployments.apps", name, "spec.replicas: Invalid value: must be greater than or equal to 0");
            };
            match w.scale_control_plane_deployment(&namespace, &cluster, name, replicas) {
                Ok(()) => Answer::ok(one(w, name).map(|d| deployment_scale(ns, &d)).unwrap_or(obj)),
                Err(e) => Answer::from_port_error(e),
            }
        }
        _ => Answer::status(405, "MethodNotAllowed", format!("{} is not served for deployments by the drctl twin", call.method), None),
    }
}

/// A Deployment as the API serves it: zero counts are left out of `status`, as the API server
/// omits them.
fn deployment(ns: &str, d: &drctl_workflows::ports::DeploymentScale) -> Value {
    let mut status = Map::new();
    status.insert("observedGeneration".into(), json!(1));
    for (field, n) in [
        ("replicas", d.status_replicas),
        ("updatedReplicas", d.status_replicas),
        ("readyReplicas", d.ready_replicas),
        ("availableReplicas", d.ready_replicas),
    ] {
        if n > 0 {
            status.insert(field.into(), json!(n));
        }
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": d.name, "namespace": ns, "generation": 1, "resourceVersion": "1",
                      "labels": { "app": d.name, "hypershift.openshift.io/control-plane-component": d.name } },
        "spec": { "replicas": d.replicas, "selector": { "matchLabels": { "app": d.name } },
                  "strategy": { "type": "RollingUpdate" } },
        "status": status,
    })
}

/// The autoscaling/v1 Scale of a Deployment.
fn deployment_scale(ns: &str, d: &drctl_workflows::ports::DeploymentScale) -> Value {
    json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": { "name": d.name, "namespace": ns },
        "spec": { "replicas": d.replicas },
        "status": { "replicas": d.status_replicas, "selector": format!("app={}", d.name) },
    })
}

/// A Secret of a HostedCluster's namespace (its etcd encryption key), with its data in base64
/// as the API serves it to whoever may read secrets.
fn hosted_secret(w: &World, ns: &str, name: &str) -> Answer {
    use base64::Engine;
    match w.hosted_secret(ns, name) {
        Ok(key) => Answer::ok(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": { "name": name, "namespace": ns, "resourceVersion": "1",
                          "labels": { "hypershift.openshift.io/safe-to-delete-with-cluster": "true" } },
            "data": { "key": base64::engine::general_purpose::STANDARD.encode(key) },
        })),
        Err(_) => Answer::not_found("", "secrets", name),
    }
}

/// A merge patch of `spec.pausedUntil` and the paused-by annotation: read back from the patched
/// object, so a patch of any shape has the effect the API would give it.
fn patch_pause(w: &mut World, call: &ApiCall, ns: &str, plural: &str, name: &str) -> Answer {
    let current = {
        let Some(h) = w.hosted.as_ref() else { return Answer::no_route() };
        let key = drctl_sim::hosted::key(ns, name);
        let found = match plural {
            "hostedclusters" => h.clusters.get(&key).map(|c| pausable("HostedCluster", ns, &c.cluster, json!({}), w)),
            _ => h.node_pools.get(&key).map(|p| node_pool(p, w)),
        };
        match found {
            Some(v) => v,
            None => return Answer::not_found("hypershift.openshift.io", plural, name),
        }
    };
    let obj = match patched(call, current) {
        Ok(obj) => obj,
        Err(a) => return a,
    };
    let until = obj.pointer("/spec/pausedUntil").and_then(Value::as_str).map(str::to_string);
    if until.as_deref() == Some("") {
        // Newer CRDs validate the field: an empty string is not a time and not "true".
        return Answer::invalid(
            plural,
            name,
            "spec.pausedUntil: Invalid value: \"\": spec.pausedUntil in body should match '^([Tt]rue|[0-9]{4}-.*)$'",
        );
    }
    let by = obj
        .pointer(&format!("/metadata/annotations/{}", PAUSED_BY.replace('~', "~0").replace('/', "~1")))
        .and_then(Value::as_str)
        .map(str::to_string);
    let r = match plural {
        "hostedclusters" => w.set_hosted_cluster_paused(ns, name, until.as_deref(), by.as_deref()),
        _ => patch_node_pool_spec(w, &obj, ns, name).and_then(|()| w.set_node_pool_paused(ns, name, until.as_deref(), by.as_deref())),
    };
    match r {
        Ok(()) => Answer::ok(obj),
        Err(e) => Answer::from_port_error(e),
    }
}

/// A NodePool as the API serves it: its scale in `spec`, available machines in `status`.
fn node_pool(p: &drctl_sim::hosted::NodePool, w: &World) -> Value {
    let dp = &p.data_plane;
    let mut spec = json!({ "clusterName": p.cluster_name, "management": { "upgradeType": "Replace" } });
    if let Some(r) = dp.replicas {
        spec["replicas"] = json!(r);
    }
    if let Some((min, max)) = dp.autoscaling {
        spec["autoScaling"] = json!({ "min": min, "max": max });
    }
    if let Some(t) = &dp.drain_timeout {
        spec["nodeDrainTimeout"] = json!(t);
    }
    let mut v = pausable("NodePool", &p.namespace, &p.pool, spec, w);
    v["status"]["replicas"] = json!(dp.status_replicas());
    if let Some(r) = dp.replicas_before_zero {
        v["metadata"]["annotations"][REPLICAS_BEFORE_ZERO] = json!(r.to_string());
    }
    v
}

/// The fields of a patched NodePool other than its pause: `spec.replicas` and
/// `spec.nodeDrainTimeout`, each written only when it changed.
fn patch_node_pool_spec(w: &mut World, obj: &Value, ns: &str, name: &str) -> drctl_workflows::ports::PortResult<()> {
    use drctl_workflows::ports::PortError;
    let current = w.node_pool_scales_by_name(ns, name);
    let drain = match obj.pointer("/spec/nodeDrainTimeout") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(v) => {
            return Err(PortError::Permanent(format!(
                "HTTP 422 Invalid: NodePool.hypershift.openshift.io \"{name}\" is invalid: spec.nodeDrainTimeout: Invalid value: \"{v}\": spec.nodeDrainTimeout in body must be of type string"
            )));
        }
    };
    if current.as_ref().is_some_and(|c| c.drain_timeout != drain) {
        w.set_node_pool_drain_timeout(ns, name, drain.as_deref())?;
    }
    let pointer = format!("/metadata/annotations/{}", REPLICAS_BEFORE_ZERO.replace('~', "~0").replace('/', "~1"));
    // An annotation is a string; one drctl cannot read is as good as absent.
    let recorded = obj.pointer(&pointer).and_then(Value::as_str).and_then(|r| r.parse::<u32>().ok());
    if current.as_ref().is_some_and(|c| c.replicas_before_zero != recorded) {
        w.record_node_pool_replicas(ns, name, recorded)?;
    }
    let replicas = obj.pointer("/spec/replicas").and_then(Value::as_u64).and_then(|r| u32::try_from(r).ok());
    match replicas {
        Some(r) if current.is_some_and(|c| c.replicas != Some(r)) => w.scale_node_pool(ns, name, r),
        _ => Ok(()),
    }
}

/// `PATCH nodepools/<name>/scale`: the patch applies to the autoscaling/v1 Scale object.
fn patch_node_pool_scale(w: &mut World, call: &ApiCall, ns: &str, name: &str) -> Answer {
    let Some(current) = w.node_pool_scales_by_name(ns, name) else {
        return Answer::not_found("hypershift.openshift.io", "nodepools", name);
    };
    let scale = json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": { "name": name, "namespace": ns },
        "spec": { "replicas": current.replicas.unwrap_or(0) },
        "status": { "replicas": current.status_replicas },
    });
    let obj = match patched(call, scale) {
        Ok(obj) => obj,
        Err(a) => return a,
    };
    let Some(replicas) = obj.pointer("/spec/replicas").and_then(Value::as_u64).and_then(|r| u32::try_from(r).ok()) else {
        return Answer::invalid("nodepools", name, "spec.replicas: Invalid value: must be a non-negative integer");
    };
    match w.scale_node_pool(ns, name, replicas) {
        Ok(()) => Answer::ok(obj),
        Err(e) => Answer::from_port_error(e),
    }
}

/// Cluster API Machines of the hosted clusters whose control-plane namespace is `ns`: one per
/// NodePool worker, labelled with its pool's MachineDeployment.
fn capi_machines(w: &World, ns: &str, selector: &str) -> Answer {
    let Some(h) = w.hosted.as_ref() else { return Answer::no_route() };
    let mut items = Vec::new();
    for np in h.node_pools.values().filter(|p| drctl_workflows::ports::control_plane_namespace(&p.namespace, &p.cluster_name) == ns) {
        for m in &np.data_plane.machines {
            let labels = json!({ "cluster.x-k8s.io/cluster-name": np.cluster_name, "cluster.x-k8s.io/deployment-name": np.pool.name });
            match selector_matches(selector, labels.as_object().expect("object")) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(why) => return Answer::status(400, "BadRequest", why, None),
            }
            items.push(json!({
                "apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Machine",
                "metadata": { "name": m.name, "namespace": ns, "labels": labels },
                "spec": { "clusterName": np.cluster_name },
                "status": { "phase": m.phase.word() },
            }));
        }
    }
    Answer::ok(list("MachineList", "cluster.x-k8s.io/v1beta1", items))
}

fn hypershift_operator(w: &World) -> Answer {
    let Some(h) = &w.hosted else { return Answer::not_found("apps", "deployments", "operator") };
    let available = u32::from(h.operator_available);
    Answer::ok(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "operator", "namespace": "hypershift" },
        "spec": { "replicas": 1 },
        "status": { "replicas": 1, "availableReplicas": available, "readyReplicas": available },
    }))
}

// ---------------------------------------------------------------------------------------------
// The etcd of a hosted control plane, in its control-plane namespace
// ---------------------------------------------------------------------------------------------

/// The HostedCluster (namespace, name) whose control-plane namespace is `ns`, if any.
fn hosted_cluster_of(w: &World, ns: &str) -> Option<(String, String)> {
    w.hosted
        .as_ref()?
        .clusters
        .values()
        .find(|c| control_plane_namespace(&c.namespace, &c.cluster.name) == ns)
        .map(|c| (c.namespace.clone(), c.cluster.name.clone()))
}

/// The etcd of the HostedCluster whose control-plane namespace is `ns`.
fn hosted_etcd_in<'w>(w: &'w World, ns: &str) -> Option<&'w HostedEtcd> {
    let (namespace, name) = hosted_cluster_of(w, ns)?;
    w.hosted_etcd(&namespace, &name)
}

/// The StatefulSet's uid: the world keeps none, so one is made from the etcd cluster id (stable
/// for the life of the etcd, as a real uid is for the life of its object).
fn statefulset_uid(e: &HostedEtcd) -> String {
    let n = e.cluster_id;
    format!("{:08x}-{:04x}-4{:03x}-9{:03x}-{:012x}", n >> 32, (n >> 16) & 0xffff, (n >> 4) & 0xfff, n & 0xfff, n & 0xffff_ffff_ffff)
}

/// The images of the etcd pod's containers (the release's etcd image for all but `healthz`).
const ETCD_IMAGE: &str =
    "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:0c7f1e6b2d7f4c8aa5d0c4b7a2f1e9d3c6b5a4f3e2d1c0b9a8f7e6d5c4b3a291";

/// StatefulSet `etcd` as the control-plane operator writes it and the StatefulSet controller
/// reports it (`../shared/HOSTED.md` §A.2).
fn hosted_etcd_statefulset(ns: &str, e: &HostedEtcd) -> Value {
    let existing = e.slots.iter().filter(|s| s.pod.is_some()).count();
    let ready = e.ready_replicas();
    let container = |name: &str| json!({ "name": name, "image": ETCD_IMAGE });
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": { "name": "etcd", "namespace": ns, "uid": statefulset_uid(e), "generation": 1, "resourceVersion": "1",
                      "labels": { "app": "etcd" } },
        "spec": {
            "replicas": e.replicas,
            "serviceName": "etcd-discovery",
            "podManagementPolicy": "Parallel",
            "selector": { "matchLabels": { "app": "etcd" } },
            "persistentVolumeClaimRetentionPolicy": { "whenDeleted": "Retain", "whenScaled": "Retain" },
            "template": {
                "metadata": { "labels": { "app": "etcd", "hypershift.openshift.io/control-plane-component": "etcd" } },
                "spec": {
                    "initContainers": [container("ensure-dns"), container("reset-member")],
                    "containers": [container("etcd"), container("etcd-metrics"), container("healthz"), container("etcd-defrag")],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": { "name": "data" },
                "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "8Gi" } } },
            }],
        },
        "status": {
            "observedGeneration": 1, "replicas": existing, "currentReplicas": existing, "updatedReplicas": existing,
            "readyReplicas": ready, "availableReplicas": ready,
        },
    })
}

/// Pod `etcd-N` as the kubelet reports it: `Pending` with its init containers running while it
/// initializes, `Running` with the `etcd` container waiting in `CrashLoopBackOff` while it
/// crash-loops, a `deletionTimestamp` once deleted; `data` claims `data-etcd-N`.
fn hosted_etcd_pod(w: &World, ns: &str, e: &HostedEtcd, slot: &EtcdSlot, p: &EtcdPod) -> Value {
    let name = slot.pod_name();
    let (phase, initialized, ready) = match p.phase {
        EtcdPodPhase::Initializing { .. } | EtcdPodPhase::Unschedulable => ("Pending", false, false),
        EtcdPodPhase::Running => ("Running", true, true),
        EtcdPodPhase::CrashLoop | EtcdPodPhase::Terminating { .. } => ("Running", true, false),
    };
    let started = json!({ "running": { "startedAt": time(w.installed_at) } });
    let at_install = time(w.installed_at);
    let completed = json!({ "terminated": { "exitCode": 0, "reason": "Completed", "startedAt": at_install, "finishedAt": at_install } });
    let status_of = |container: &str| -> Value {
        let (state, last, restarts, up) = match (&p.phase, container) {
            (EtcdPodPhase::Initializing { .. }, _) => (json!({ "waiting": { "reason": "PodInitializing" } }), json!({}), 0, false),
            (EtcdPodPhase::CrashLoop, "etcd") => (
                json!({ "waiting": { "reason": "CrashLoopBackOff",
                                     "message": format!("back-off 5m0s restarting failed container=etcd pod={name}_{ns}({})", p.uid) } }),
                json!({ "terminated": { "exitCode": 1, "reason": "Error", "startedAt": time(w.now), "finishedAt": time(w.now) } }),
                12,
                false,
            ),
            // A pod being deleted reports nothing ready any more.
            (EtcdPodPhase::Terminating { .. }, _) => (started.clone(), json!({}), 0, false),
            _ => (started.clone(), json!({}), 0, true),
        };
        json!({ "name": container, "image": ETCD_IMAGE, "imageID": ETCD_IMAGE, "ready": up, "started": up,
                "restartCount": restarts, "state": state, "lastState": last })
    };
    let init_status = |container: &str, done: bool| -> Value {
        let state = if done { completed.clone() } else { started.clone() };
        json!({ "name": container, "image": ETCD_IMAGE, "imageID": ETCD_IMAGE, "ready": done, "restartCount": 0, "state": state })
    };
    let condition = |kind: &str, on: bool| {
        let mut c = json!({ "type": kind, "status": if on { "True" } else { "False" }, "lastTransitionTime": time(w.now) });
        if !on && kind != "Initialized" {
            c["reason"] = json!("ContainersNotReady");
        }
        c
    };
    let mut metadata = json!({
        "name": name, "namespace": ns, "uid": p.uid, "resourceVersion": "1", "creationTimestamp": time(w.installed_at),
        "labels": { "app": "etcd", "hypershift.openshift.io/control-plane-component": "etcd",
                    "statefulset.kubernetes.io/pod-name": name, "apps.kubernetes.io/pod-index": slot.ordinal.to_string() },
        "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "etcd", "uid": statefulset_uid(e),
                              "controller": true, "blockOwnerDeletion": true }],
    });
    if matches!(p.phase, EtcdPodPhase::Terminating { .. }) {
        metadata["deletionTimestamp"] = json!(time(w.now));
        metadata["deletionGracePeriodSeconds"] = json!(30);
    }
    let containers = ["etcd", "etcd-metrics", "healthz", "etcd-defrag"];
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "hostname": name, "subdomain": "etcd-discovery", "nodeName": "ip-10-0-140-17.ec2.internal",
            "initContainers": [{ "name": "ensure-dns", "image": ETCD_IMAGE }, { "name": "reset-member", "image": ETCD_IMAGE }],
            "containers": containers.iter().map(|c| json!({ "name": c, "image": ETCD_IMAGE })).collect::<Vec<_>>(),
            "volumes": [
                { "name": "data", "persistentVolumeClaim": { "claimName": etcd_pvc_name(&name) } },
                { "name": "client-tls", "secret": { "secretName": "etcd-client-tls" } },
                { "name": "etcd-ca", "configMap": { "name": "etcd-ca" } },
                { "name": "server-tls", "secret": { "secretName": "etcd-server-tls" } },
                { "name": "peer-tls", "secret": { "secretName": "etcd-peer-tls" } },
            ],
        },
        "status": {
            "phase": phase,
            "conditions": [condition("PodScheduled", true), condition("Initialized", initialized),
                           condition("ContainersReady", ready), condition("Ready", ready)],
            "initContainerStatuses": [init_status("ensure-dns", true), init_status("reset-member", initialized)],
            "containerStatuses": containers.iter().map(|c| status_of(c)).collect::<Vec<_>>(),
        },
    });
    if p.phase == EtcdPodPhase::Unschedulable {
        // Never bound to a node: no kubelet has reported on it, the scheduler has said why.
        if let Some(spec) = pod["spec"].as_object_mut() {
            spec.remove("nodeName");
        }
        let why = format!(
            "0/3 nodes are available: persistentvolumeclaim \"{}\" is being deleted. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
            etcd_pvc_name(&name)
        );
        pod["status"] = json!({
            "phase": "Pending",
            "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": why,
                             "lastTransitionTime": time(w.now) }],
        });
    }
    pod
}

/// PVC `data-etcd-N`: bound to its volume, held by `kubernetes.io/pvc-protection` while a pod
/// uses it after its deletion.
fn hosted_etcd_pvc(w: &World, ns: &str, slot: &EtcdSlot, c: &EtcdPvc) -> Value {
    let mut metadata = json!({
        "name": etcd_pvc_name(&slot.pod_name()), "namespace": ns, "uid": c.uid, "resourceVersion": "1",
        "creationTimestamp": time(w.installed_at), "labels": { "app": "etcd" },
        "finalizers": ["kubernetes.io/pvc-protection"],
        "annotations": { "pv.kubernetes.io/bind-completed": "yes", "volume.kubernetes.io/storage-provisioner": "ebs.csi.aws.com" },
    });
    if c.terminating {
        metadata["deletionTimestamp"] = json!(time(w.now));
        metadata["deletionGracePeriodSeconds"] = json!(0);
    }
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": metadata,
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "8Gi" } },
                  "storageClassName": "gp3-csi", "volumeMode": "Filesystem", "volumeName": format!("pvc-{}", c.uid) },
        "status": { "phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": { "storage": "8Gi" } },
    })
}

fn hosted_etcd_pods(w: &World, ns: &str) -> Vec<Value> {
    let Some(e) = hosted_etcd_in(w, ns) else { return vec![] };
    e.slots.iter().filter_map(|s| Some(hosted_etcd_pod(w, ns, e, s, s.pod.as_ref()?))).collect()
}

fn hosted_etcd_pvcs(w: &World, ns: &str) -> Vec<Value> {
    let Some(e) = hosted_etcd_in(w, ns) else { return vec![] };
    e.slots.iter().filter_map(|s| Some(hosted_etcd_pvc(w, ns, s, s.pvc.as_ref()?))).collect()
}

fn by_name(items: Vec<Value>, name: &str) -> Option<Value> {
    items.into_iter().find(|o| o.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
}

/// The pods and PVCs of a control-plane namespace (the hosted etcd's), and their deletes.
fn control_plane_namespace_objects(w: &mut World, call: &ApiCall, ns: &str, plural: &str, rest: &[&str]) -> Answer {
    let items = |w: &World| if plural == "pods" { hosted_etcd_pods(w, ns) } else { hosted_etcd_pvcs(w, ns) };
    match (call.method.as_str(), rest) {
        ("GET", []) => {
            let selector = call.param("labelSelector").unwrap_or("");
            let mut out = vec![];
            for obj in items(w) {
                let labels = obj["metadata"]["labels"].as_object().cloned().unwrap_or_default();
                match selector_matches(selector, &labels) {
                    Ok(true) => out.push(obj),
                    Ok(false) => {}
                    Err(why) => return Answer::status(400, "BadRequest", why, None),
                }
            }
            let kind = if plural == "pods" { "PodList" } else { "PersistentVolumeClaimList" };
            Answer::ok(list(kind, "v1", out))
        }
        ("GET", [name]) => match by_name(items(w), name) {
            Some(obj) => Answer::ok(obj),
            None => Answer::not_found("", plural, name),
        },
        ("DELETE", [name]) => {
            let (Some(obj), Some((namespace, cluster))) = (by_name(items(w), name), hosted_cluster_of(w, ns)) else {
                return Answer::not_found("", plural, name);
            };
            if let Err(conflict) = delete_precondition(call, &obj) {
                return conflict;
            }
            // The precondition held (or none was given): the object as it is goes.
            let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
            let r = if plural == "pods" {
                w.delete_hosted_etcd_pod(&namespace, &cluster, name, &uid)
            } else {
                w.delete_hosted_etcd_pvc(&namespace, &cluster, name, &uid)
            };
            match r {
                // The API answers with the object as the delete left it (Terminating), or as it
                // was if it is gone at once.
                Ok(()) => Answer::ok(by_name(items(w), name).unwrap_or(obj)),
                Err(e) => Answer::from_port_error(e),
            }
        }
        _ => Answer::status(405, "MethodNotAllowed", format!("{} is not served for {plural} by the drctl twin", call.method), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"spec": {"unsupportedConfigOverrides": {"x": true}}});
        merge_patch(&mut t, &json!({"spec": {"unsupportedConfigOverrides": null}}));
        assert_eq!(t, json!({"spec": {}}));
    }

    #[test]
    fn json_patch_follows_rfc_6902() {
        let mut t = json!({"spec": {"a": 1, "list": [1, 2]}, "metadata": {"annotations": {"x/y": "1"}}});
        json_patch(
            &mut t,
            &json!([
                {"op": "test", "path": "/spec/a", "value": 1},
                {"op": "replace", "path": "/spec/a", "value": 2},
                {"op": "add", "path": "/spec/list/-", "value": 3},
                {"op": "remove", "path": "/metadata/annotations/x~1y"},
                {"op": "add", "path": "/spec/forceRedeploymentReason", "value": "r"},
            ]),
        )
        .unwrap();
        assert_eq!(t, json!({"spec": {"a": 2, "list": [1, 2, 3], "forceRedeploymentReason": "r"}, "metadata": {"annotations": {}}}));
        // All or nothing: a failed test leaves the object as it was.
        let before = t.clone();
        assert!(json_patch(
            &mut t,
            &json!([{"op": "replace", "path": "/spec/a", "value": 9}, {"op": "test", "path": "/spec/a", "value": 1}])
        )
        .is_err());
        assert_eq!(t, before);
        assert!(json_patch(&mut t, &json!([{"op": "replace", "path": "/spec/missing", "value": 1}])).is_err());
        assert!(json_patch(&mut t, &json!([{"op": "remove", "path": "/spec/list/7"}])).is_err());
    }

    #[test]
    fn delete_preconditions_must_match() {
        let obj = json!({"metadata": {"name": "m", "uid": "u1", "resourceVersion": "5"}});
        let call = |body: Value| ApiCall {
            bearer: None,
            method: Method::DELETE,
            path: String::new(),
            query: vec![],
            content_type: "application/json".into(),
            body: body.to_string().into_bytes(),
        };
        assert!(delete_precondition(&call(json!({"preconditions": {"uid": "u1"}})), &obj).is_ok());
        let e = delete_precondition(&call(json!({"preconditions": {"uid": "u2"}})), &obj).err().unwrap();
        assert_eq!(e.status, 409);
        assert!(delete_precondition(&call(json!({"preconditions": {"resourceVersion": "4"}})), &obj).is_err());
        assert!(delete_precondition(&call(json!({})), &obj).is_ok());
    }

    #[test]
    fn selectors_are_equality_terms() {
        let labels: Map<String, Value> = serde_json::from_value(json!({"app": "ovnkube-node", "x": "y"})).unwrap();
        assert!(selector_matches("app=ovnkube-node", &labels).unwrap());
        assert!(selector_matches("app==ovnkube-node,x=y", &labels).unwrap());
        assert!(!selector_matches("app=ovnkube-master", &labels).unwrap());
        assert!(!selector_matches("x!=y", &labels).unwrap());
        assert!(selector_matches("app in (a,b)", &labels).is_err());
    }

    #[test]
    fn query_components_are_percent_decoded() {
        assert_eq!(
            parse_query("labelSelector=app%3Dovnkube-node&limit=5"),
            vec![("labelSelector".to_string(), "app=ovnkube-node".to_string()), ("limit".to_string(), "5".to_string())]
        );
    }
}
