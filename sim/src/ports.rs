//! The ports, implemented on the simulated world, failing with the error text the real
//! adapters meet (so procedures exercise the real classification paths).

use crate::world::*;
use crate::Sim;
use drctl_workflows::ports::*;

/// Virtual time one API request takes when the API answers.
const API_LATENCY_MS: u64 = 40;
/// kube-apiserver's etcd request timeout, spent when etcd has no quorum.
const ETCD_REQUEST_TIMEOUT_MS: u64 = 7 * SECOND;
/// Virtual time one SSH command costs before it runs (the served hosts charge it too).
pub const SSH_LATENCY_MS: u64 = 250;

pub fn sim_ports(sim: &Sim) -> Ports {
    let management = sim.read(|w| w.hosted.is_some()).then(|| Box::new(SimManagement(sim.clone())) as Box<dyn ManagementCluster>);
    Ports {
        api: Box::new(SimApi(sim.clone())),
        hosts: Box::new(SimHosts(sim.clone())),
        backups: Box::new(SimBackups(sim.clone())),
        etcd: Box::new(SimEtcdPods(sim.clone())),
        management,
        object_store: sim
            .read(|w| w.object_store.is_some())
            .then(|| Box::new(crate::object_store::SimObjectStore(sim.clone())) as Box<dyn drctl_workflows::object_store::ObjectStore>),
    }
}

pub struct SimApi(pub Sim);
pub struct SimHosts(pub Sim);
pub struct SimBackups(pub Sim);
pub struct SimEtcd(pub Sim);
/// The management cluster of the `hosted` topology: the world's own API, serving the HyperShift
/// objects of [`crate::hosted::Hosted`].
pub struct SimManagement(pub Sim);

/// Whether a request changes something: a 504 may still have applied a write.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verb {
    Read,
    Write,
}
use Verb::*;

/// A host as the simulated inventory lists it (its node name as the world's inventory says).
fn inventory_ref(w: &World, h: &Host) -> HostRef {
    let node = w.inventory_nodes.get(&h.name).cloned().unwrap_or_else(|| h.name.clone());
    let address = w.inventory_addresses.get(&h.name).cloned().unwrap_or_else(|| h.ip.clone());
    HostRef { name: h.name.clone(), node, address }
}

/// The `reason` and `message` of the `Status` kube-apiserver answers with this HTTP status.
pub fn api_status(code: u16) -> (&'static str, &'static str) {
    match code {
        429 => ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
        500 => ("InternalError", "Internal error occurred: the server could not complete the request"),
        503 => ("ServiceUnavailable", "the server is currently unable to handle the request"),
        504 => ("Timeout", "the server was unable to return a response in the time allotted, but may still be processing the request"),
        _ => ("InternalError", "Internal error occurred"),
    }
}

/// The text the kube adapter gives a failed request with this HTTP status (see
/// `drctl_adapters::kube::classify`: `HTTP {code} {reason}: {message}`).
pub fn api_status_text(code: u16) -> String {
    let (reason, message) = api_status(code);
    format!("HTTP {code} {reason}: {message}")
}

/// kube-apiserver's own request timeout, spent by a request that ends in 504.
const API_REQUEST_TIMEOUT_MS: u64 = 60 * SECOND;

/// Why the API did not serve a request, as a client meets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiRefusal {
    /// The API's name does not resolve (DNS, VPN): the request never left.
    Unresolvable,
    /// A bearer token that the restored cluster no longer knows.
    Unauthorized,
    /// Nothing listens on the API port (no kube-apiserver, or an outage).
    Refused,
    /// kube-apiserver answered after etcd's request timeout: no quorum.
    NoQuorum,
    /// An injected error answer: 429, 500, 503, 504.
    Status(u16),
    /// etcd answered kube-apiserver with an error.
    Etcd(EtcdErrorKind),
}

/// One API request against the world: time passes, then `f` serves it, or it is refused as a
/// real API server would refuse it. A 504 may still have applied a write. The one decision the
/// simulated port and the served API (`drctl-twin`) share.
pub fn api_request<T>(w: &mut World, verb: Verb, f: impl FnOnce(&mut World) -> T) -> Result<T, ApiRefusal> {
    let latency = w.api_latency(API_LATENCY_MS);
    w.pass_time(latency);
    if w.drctl_view.api_unresolvable {
        return Err(ApiRefusal::Unresolvable);
    }
    if w.drctl_view.token_kubeconfig && w.restored_from_revision.is_some() {
        return Err(ApiRefusal::Unauthorized);
    }
    if w.in_api_outage() || !w.kas_running() {
        return Err(ApiRefusal::Refused);
    }
    if !w.has_quorum() {
        w.pass_time(ETCD_REQUEST_TIMEOUT_MS);
        return Err(ApiRefusal::NoQuorum);
    }
    if let Some(code) = w.api_error_now() {
        if code == 504 {
            // The API server gave up waiting, but the write may still go through.
            if verb == Write && w.fault_roll(50) {
                let _ = f(w);
            }
            w.pass_time(API_REQUEST_TIMEOUT_MS);
        }
        return Err(ApiRefusal::Status(code));
    }
    if let Some(kind) = w.etcd_error_now() {
        w.pass_time(ETCD_REQUEST_TIMEOUT_MS);
        return Err(ApiRefusal::Etcd(kind));
    }
    Ok(f(w))
}

impl ApiRefusal {
    /// The error the kube adapter gives for this refusal of a request for `path`.
    pub fn port_error(self, path: std::fmt::Arguments<'_>) -> PortError {
        match self {
            ApiRefusal::Unresolvable => PortError::Transient(format!(
                "Get \"https://api.ocp.example.com:6443{path}\": dial tcp: lookup api.ocp.example.com on 192.168.122.1:53: no such host"
            )),
            ApiRefusal::Unauthorized => PortError::Permanent("HTTP 401 Unauthorized: Unauthorized".into()),
            ApiRefusal::Refused => PortError::Transient(format!(
                "Get \"https://api.ocp.example.com:6443{path}\": dial tcp 10.0.0.5:6443: connect: connection refused"
            )),
            ApiRefusal::NoQuorum => PortError::Transient("etcdserver: request timed out".into()),
            ApiRefusal::Status(code) => PortError::Transient(api_status_text(code)),
            ApiRefusal::Etcd(kind) => PortError::Transient(format!("HTTP 500 InternalError: {}", kind.message())),
        }
    }
}

impl SimApi {
    /// One API request: time passes, then it is answered or fails as a real one would.
    pub(crate) fn call<T>(&self, verb: Verb, path: std::fmt::Arguments<'_>, f: impl FnOnce(&mut World) -> PortResult<T>) -> PortResult<T> {
        self.0.port_op(|w| api_request(w, verb, f).unwrap_or_else(|refusal| Err(refusal.port_error(path))))
    }
}

/// A JSON object from its members (cheaper than `json!`, which serialises every value).
fn obj<const N: usize>(members: [(&str, serde_json::Value); N]) -> serde_json::Value {
    serde_json::Value::Object(members.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn text(s: &str) -> serde_json::Value {
    serde_json::Value::String(s.to_string())
}

pub fn machine_manifest(m: &MachineObj) -> serde_json::Value {
    let role = if m.control_plane { "master" } else { "worker" };
    let mut meta = obj([
        ("name", text(&m.name)),
        ("namespace", text("openshift-machine-api")),
        ("uid", text(&m.uid)),
        ("generation", m.generation.into()),
        ("resourceVersion", m.resource_version.to_string().into()),
        // The machine controller puts its finalizer on every machine it reconciles (the
        // runbook's saved manifest carries it into the re-created machine, harmlessly).
        ("finalizers", serde_json::Value::Array(vec![text("machine.machine.openshift.io")])),
        (
            "labels",
            obj([
                ("machine.openshift.io/cluster-api-machine-role", text(role)),
                ("machine.openshift.io/cluster-api-machine-type", text(role)),
            ]),
        ),
    ]);
    if !m.annotations.is_empty() {
        meta["annotations"] = serde_json::Value::Object(m.annotations.iter().map(|(k, v)| (k.clone(), text(v))).collect());
    }
    let mut spec = obj([(
        "providerSpec",
        obj([("value", obj([("instanceType", text(&m.instance_type)), ("placement", obj([("availabilityZone", text(&m.zone))]))]))]),
    )]);
    if let Some(p) = &m.provider_id {
        spec["providerID"] = text(p);
    }
    let mut status = obj([("phase", text(&m.phase))]);
    if let Some(state) = m.annotations.get("machine.openshift.io/instance-state") {
        status["providerStatus"] = obj([("instanceState", text(state))]);
    }
    if let Some(n) = &m.node {
        status["nodeRef"] = obj([("kind", text("Node")), ("name", text(n))]);
    }
    obj([
        ("apiVersion", text("machine.openshift.io/v1beta1")),
        ("kind", text("Machine")),
        ("metadata", meta),
        ("spec", spec),
        ("status", status),
    ])
}

fn machine_info(m: &MachineObj) -> MachineInfo {
    MachineInfo {
        name: m.name.clone(),
        phase: MachinePhase::from(m.phase.as_str()),
        node: m.node.clone(),
        control_plane: m.control_plane,
        manifest: machine_manifest(m),
    }
}

/// What the API serves and does, on the world: one implementation for the simulated port and the
/// served API (`drctl-twin` renders these as Kubernetes JSON).
impl World {
    /// The cluster operators as `oc get clusteroperators` summarises them.
    pub fn cluster_operator_infos(&self) -> Vec<ClusterOperatorInfo> {
        let mut ops: Vec<ClusterOperatorInfo> = Operator::ALL
            .iter()
            .map(|op| {
                let (reason, _) = self.installer_progress(*op);
                ClusterOperatorInfo {
                    name: op.to_string(),
                    available: true,
                    progressing: reason != "AllNodesAtLatestRevision",
                    degraded: false,
                }
            })
            .collect();
        // The network operator progresses while the OVN-Kubernetes control plane rolls out
        // (after the set of control-plane nodes changed, or its databases were reset).
        ops.push(ClusterOperatorInfo { name: "network".into(), available: true, progressing: !self.ovn_healthy(), degraded: false });
        // Bare metal installer-provisioned clusters run the bare metal operator (metal3).
        if self.platform == Platform::BareMetalIpi {
            ops.push(ClusterOperatorInfo { name: "baremetal".into(), available: true, progressing: false, degraded: false });
        }
        // As the API lists them: by name.
        ops.sort_by(|a, b| a.name.cmp(&b.name));
        ops
    }

    /// Every Node as the API serves it (the snapshot's status after a restore, see
    /// [`World::node_status`]) with the taint the node lifecycle controller sets.
    pub fn node_infos(&self) -> Vec<NodeInfo> {
        self.api()
            .nodes
            .values()
            .map(|n| {
                let (ready, since) = self.node_status(&n.name);
                // A kubelet that no longer reports (host off, kubelet stopped, its certificate
                // not trusted) leaves Ready Unknown: the unreachable taint. One that reports
                // NotReady gets the not-ready taint.
                let reports = self.hosts.get(&n.name).is_some_and(|h| h.powered && h.kubelet_running && self.cert_valid(h));
                let taints = match (ready, reports) {
                    (true, _) => vec![],
                    (false, false) => vec!["node.kubernetes.io/unreachable".to_string()],
                    (false, true) => vec!["node.kubernetes.io/not-ready".to_string()],
                };
                NodeInfo {
                    name: n.name.clone(),
                    ready,
                    control_plane: n.control_plane,
                    internal_ip: n.internal_ip.clone(),
                    taints,
                    status_since: Some(since),
                    // As a kubelet reports them: its InternalIP and its hostname.
                    addresses: vec![n.internal_ip.clone(), n.name.clone()],
                }
            })
            .collect()
    }

    pub fn api_delete_node(&mut self, name: &str) {
        if self.api().nodes.contains_key(name) {
            self.api_mut().nodes.remove(name);
            self.note(format!("node {name} deleted"));
            self.effect(EffectKind::NodeDeleted, name);
        }
    }

    /// Approve a pending CSR (an approved one stays approved).
    pub fn api_approve_csr(&mut self, name: &str) -> PortResult<()> {
        match self.api().csrs.get(name) {
            None => Err(PortError::NotFound(format!("certificatesigningrequests.certificates.k8s.io \"{name}\" not found"))),
            Some(c) if c.approved => Ok(()),
            Some(_) => {
                self.api_mut().csrs.get_mut(name).expect("csr").approved = true;
                self.note(format!("csr {name} approved"));
                self.effect(EffectKind::CsrApproved, name);
                Ok(())
            }
        }
    }

    /// The pods of `namespace` matching `selector`, for the selectors the procedures use.
    pub fn pod_infos(&self, namespace: &str, selector: &str) -> PortResult<Vec<PodInfo>> {
        match (namespace, selector) {
            ("openshift-etcd", "k8s-app=etcd") => Ok(self
                .hosts
                .values()
                .filter(|h| self.api().nodes.contains_key(&h.name) && h.manifests.contains(&StaticPod::Etcd))
                .map(|h| {
                    let c = h.containers.get(&StaticPod::Etcd).copied();
                    let (phase, ready) = match c {
                        Some(Container::Running) if self.member_started(h) => ("Running", true),
                        Some(Container::CrashLoop) => ("CrashLoopBackOff", false),
                        _ => ("Pending", false),
                    };
                    PodInfo { name: format!("etcd-{}", h.name), node: h.name.clone(), phase: PodStatus::from(phase), ready }
                })
                .collect()),
            ("openshift-ovn-kubernetes", sel) => {
                let role = match sel {
                    "app=ovnkube-master" => OvnRole::Master,
                    "app=ovnkube-node" => OvnRole::Node,
                    "app=ovnkube-control-plane" => OvnRole::ControlPlane,
                    other => return Err(PortError::Permanent(format!("simulator has no pods for selector {other}"))),
                };
                Ok(self
                    .ovn_pods
                    .iter()
                    .filter(|(_, p)| p.role == role)
                    .map(|(n, p)| {
                        let powered = self.hosts.get(&p.node).is_some_and(|h| h.powered);
                        let phase = if powered { PodStatus::from(p.phase.as_str()) } else { PodStatus::Unknown };
                        PodInfo { name: n.clone(), node: p.node.clone(), ready: phase == PodStatus::Running, phase }
                    })
                    .collect())
            }
            // The temporary etcd signer of OpenShift 4.1–4.3 (`oc get pods -n openshift-config`).
            ("openshift-config", "") => Ok(self
                .api()
                .etcd_signer
                .iter()
                .map(|node| {
                    let running = self.signer_listening_on(node);
                    let phase = PodStatus::from(if running { "Running" } else { "Pending" });
                    PodInfo { name: "etcd-signer".into(), node: node.clone(), phase, ready: running }
                })
                .collect()),
            (ns, sel) => Err(PortError::Permanent(format!("simulator has no pods in {ns} for {sel}"))),
        }
    }

    pub fn api_delete_pod(&mut self, namespace: &str, name: &str) {
        if (namespace, name) == ("openshift-config", "etcd-signer") {
            self.delete_signer();
        }
        if namespace == "openshift-ovn-kubernetes" && self.ovn_pods.contains_key(name) {
            let at = self.delay(10 * SECOND, 40 * SECOND);
            let p = self.ovn_pods.get_mut(name).expect("pod");
            p.phase = "Pending".into();
            p.start_at = Some(at);
            self.note(format!("pod {name} deleted; daemonset re-creates it"));
            self.effect(EffectKind::PodDeleted, name);
        }
    }

    /// Delete a Machine: it goes Deleting, and the platform takes its host away.
    pub fn api_delete_machine(&mut self, name: &str) {
        let Some(m) = self.api().machines.get(name).cloned() else { return };
        if m.phase != "Deleting" {
            let until = self.delay(MINUTE, 3 * MINUTE);
            // A bare metal machine's deletion may hang on its host for good (§5.2.4.3 step 8):
            // only removing its finalizer ends it.
            let hangs = self.platform == Platform::BareMetalIpi && !self.servers.is_empty() && self.rng.chance(1, 2);
            let mm = self.api_mut().machines.get_mut(name).expect("machine");
            mm.phase = "Deleting".into();
            mm.phase_until = (!hangs).then_some(until);
            self.note(format!("machine {name} deleting{}", if hangs { " (its deletion hangs)" } else { "" }));
            self.effect(EffectKind::MachineDeleted { node: m.node.clone() }, name);
            self.machine_deleted_by_platform(&m);
        }
    }

    /// Create a Machine from its manifest, as the machine API validates it.
    pub fn api_create_machine(&mut self, manifest: &serde_json::Value) -> PortResult<()> {
        let name = manifest["metadata"]["name"]
            .as_str()
            .ok_or_else(|| PortError::Permanent("Machine.machine.openshift.io is invalid: metadata.name: Required value".into()))?
            .to_string();
        for forbidden in ["resourceVersion", "uid"] {
            if !manifest["metadata"][forbidden].is_null() {
                return Err(PortError::Permanent(format!(
                    "machines.machine.openshift.io \"{name}\": metadata.{forbidden}: must not be set on create"
                )));
            }
        }
        if self.api().machines.contains_key(&name) {
            return Ok(());
        }
        let spec = &manifest["spec"]["providerSpec"]["value"];
        let until = self.delay(3 * MINUTE, 6 * MINUTE);
        let uid = format!("{:032x}", self.rng.next_u64() as u128);
        let instance_type = spec["instanceType"].as_str().unwrap_or("m6i.xlarge");
        let zone = spec["placement"]["availabilityZone"].as_str().unwrap_or("us-east-1a");
        let m = MachineObj::provisioning(&name, instance_type, zone, uid, until);
        self.api_mut().machines.insert(name.clone(), m);
        self.note(format!("machine {name} created"));
        self.effect(EffectKind::MachineCreated, name);
        Ok(())
    }

    pub fn api_set_quorum_guard(&mut self, enabled: bool) {
        if self.api().quorum_guard != enabled {
            self.api_mut().quorum_guard = enabled;
            self.note(format!("etcd quorum guard {}", if enabled { "on" } else { "off" }));
            self.effect(EffectKind::QuorumGuard { enabled }, "etcds/cluster");
        }
    }

    /// `NodeInstallerProgressing` as the operator last wrote it (it lags behind the revisions).
    pub fn installer_progress_info(&self, operator: Operator) -> InstallerProgress {
        let o = &self.api().operators[&operator];
        let (reason, message) = o.condition.clone().unwrap_or_else(|| self.installer_progress(operator));
        InstallerProgress { reason, message, latest_revision: o.latest_revision, force_redeployment_reason: o.force_reason.clone() }
    }
}

/// A CSR as the kube adapter reads it: kind and node derived from signer, user and request.
pub fn csr_info(c: &CsrObj) -> CsrInfo {
    let (kind, node) = drctl_workflows::csr::classify(&c.signer, &c.requestor, c.request.as_bytes());
    CsrInfo {
        names: drctl_workflows::csr::requested_names(c.request.as_bytes()).ok(),
        name: c.name.clone(),
        signer: c.signer.clone(),
        requestor: c.requestor.clone(),
        kind,
        node,
        pending: !c.approved,
        approved: c.approved,
        usages: kubelet_usages(&c.signer).iter().map(|u| u.to_string()).collect(),
        // The API keeps whole seconds.
        created: Some(drctl_runtime::clock::Timestamp(c.created_at.0 / 1000 * 1000)),
    }
}

/// The usages a kubelet asks for with a CSR of `signer` (what the served API renders too).
pub fn kubelet_usages(signer: &str) -> &'static [&'static str] {
    match signer {
        "kubernetes.io/kubelet-serving" => &["digital signature", "server auth"],
        _ => &["digital signature", "client auth"],
    }
}

const MACHINES: &str = "/apis/machine.openshift.io/v1beta1/namespaces/openshift-machine-api/machines";

impl ClusterApi for SimApi {
    fn cluster_version(&self) -> PortResult<String> {
        self.call(Read, format_args!("/apis/config.openshift.io/v1/clusterversions/version"), |w| Ok(w.api().cluster_version.clone()))
    }

    fn cluster_age_secs(&self) -> PortResult<u64> {
        self.call(Read, format_args!("/apis/config.openshift.io/v1/clusterversions/version"), |w| Ok(w.now.since(w.installed_at).as_secs()))
    }

    fn cluster_operators(&self) -> PortResult<Vec<ClusterOperatorInfo>> {
        self.call(Read, format_args!("/apis/config.openshift.io/v1/clusteroperators"), |w| Ok(w.cluster_operator_infos()))
    }

    fn list_nodes(&self) -> PortResult<Vec<NodeInfo>> {
        self.call(Read, format_args!("/api/v1/nodes"), |w| Ok(w.node_infos()))
    }

    fn delete_node(&self, name: &str) -> PortResult<()> {
        self.call(Write, format_args!("/api/v1/nodes/{name}"), |w| {
            w.api_delete_node(name);
            Ok(())
        })
    }

    fn list_csrs(&self) -> PortResult<Vec<CsrInfo>> {
        self.call(Read, format_args!("/apis/certificates.k8s.io/v1/certificatesigningrequests"), |w| {
            Ok(w.api().csrs.values().map(csr_info).collect())
        })
    }

    fn approve_csr(&self, name: &str) -> PortResult<()> {
        self.call(Write, format_args!("/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}/approval"), |w| {
            w.api_approve_csr(name)
        })
    }

    fn list_pods(&self, namespace: &str, selector: &str) -> PortResult<Vec<PodInfo>> {
        self.call(Read, format_args!("/api/v1/namespaces/{namespace}/pods?labelSelector={selector}"), |w| w.pod_infos(namespace, selector))
    }

    fn delete_pod(&self, namespace: &str, name: &str) -> PortResult<()> {
        self.call(Write, format_args!("/api/v1/namespaces/{namespace}/pods/{name}"), |w| {
            w.api_delete_pod(namespace, name);
            Ok(())
        })
    }

    fn ovn_master_references(&self, ips: &[String]) -> PortResult<Vec<String>> {
        self.call(Read, format_args!("/apis/apps/v1/namespaces/openshift-ovn-kubernetes/daemonsets/ovnkube-master"), |w| {
            // No ovnkube-master DaemonSet (interconnect, OpenShift SDN): nothing references them,
            // as the kube adapter reads a 404 there.
            if w.network != NetworkType::OvnCentral {
                return Ok(vec![]);
            }
            Ok(ips.iter().filter(|ip| w.ovn_master_ips.contains(*ip)).cloned().collect())
        })
    }

    fn credential(&self) -> Credential {
        match self.0.read(|w| w.drctl_view.token_kubeconfig) {
            true => Credential::BearerToken,
            false => Credential::ClientCertificate,
        }
    }

    fn network_layout(&self) -> PortResult<NetworkLayout> {
        self.call(Read, format_args!("/apis/config.openshift.io/v1/networks/cluster"), |w| {
            Ok(NetworkLayout { network_type: w.network.status_type().to_string(), ovn_interconnect: w.network == NetworkType::OvnIc })
        })
    }

    fn fail_closed_webhooks(&self) -> PortResult<Vec<WebhookInfo>> {
        self.call(Read, format_args!("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"), |w| {
            Ok(w.api()
                .fail_closed_webhooks
                .iter()
                .map(|h| WebhookInfo {
                    configuration: h.configuration.clone(),
                    webhook: h.webhook.clone(),
                    target: format!("service {}", h.service),
                })
                .collect())
        })
    }

    fn list_machines(&self) -> PortResult<Vec<MachineInfo>> {
        self.call(Read, format_args!("{MACHINES}"), |w| Ok(w.api().machines.values().map(machine_info).collect()))
    }

    fn get_machine(&self, name: &str) -> PortResult<Option<MachineInfo>> {
        self.call(Read, format_args!("{MACHINES}/{name}"), |w| Ok(w.api().machines.get(name).map(machine_info)))
    }

    fn delete_machine(&self, name: &str) -> PortResult<()> {
        self.call(Write, format_args!("{MACHINES}/{name}"), |w| {
            w.api_delete_machine(name);
            Ok(())
        })
    }

    fn machine_layout(&self) -> PortResult<MachineLayout> {
        self.call(Read, format_args!("/apis/config.openshift.io/v1/infrastructures/cluster"), |w| {
            Ok(MachineLayout {
                platform: w.platform.infrastructure_type().to_string(),
                control_plane_machine_set_active: w.platform == Platform::CloudIpiCpms,
            })
        })
    }

    fn create_machine(&self, manifest: &serde_json::Value) -> PortResult<()> {
        self.call(Write, format_args!("{MACHINES}"), |w| w.api_create_machine(manifest))
    }

    fn set_quorum_guard(&self, enabled: bool) -> PortResult<()> {
        self.call(Write, format_args!("/apis/operator.openshift.io/v1/etcds/cluster"), |w| {
            w.api_set_quorum_guard(enabled);
            Ok(())
        })
    }

    fn quorum_guard_enabled(&self) -> PortResult<bool> {
        self.call(Read, format_args!("/apis/operator.openshift.io/v1/etcds/cluster"), |w| Ok(w.api().quorum_guard))
    }

    fn force_redeployment(&self, operator: Operator, reason: &str) -> PortResult<()> {
        self.call(Write, format_args!("/apis/operator.openshift.io/v1/{}/cluster", operator.resource()), |w| {
            w.force_redeployment(operator, reason, "");
            Ok(())
        })
    }

    fn installer_progress(&self, operator: Operator) -> PortResult<InstallerProgress> {
        self.call(Read, format_args!("/apis/operator.openshift.io/v1/{}/cluster", operator.resource()), |w| {
            Ok(w.installer_progress_info(operator))
        })
    }

    fn etcd_members_available(&self) -> PortResult<Option<OperatorCondition>> {
        self.call(Read, format_args!("/apis/operator.openshift.io/v1/etcds/cluster"), |w| Ok(Some(w.etcd_members_available_condition())))
    }

    fn list_secrets(&self, namespace: &str) -> PortResult<Vec<String>> {
        self.call(Read, format_args!("/api/v1/namespaces/{namespace}/secrets"), |w| Ok(w.secret_names(namespace)))
    }

    fn delete_secret(&self, namespace: &str, name: &str) -> PortResult<()> {
        self.call(Write, format_args!("/api/v1/namespaces/{namespace}/secrets/{name}"), |w| {
            w.api_delete_secret(namespace, name);
            Ok(())
        })
    }

    fn list_bare_metal_hosts(&self) -> PortResult<Vec<BareMetalHostInfo>> {
        self.call(Read, format_args!("{BARE_METAL_HOSTS}"), |w| Ok(w.bare_metal_host_infos()))
    }

    fn delete_bare_metal_host(&self, name: &str) -> PortResult<()> {
        self.call(Write, format_args!("{BARE_METAL_HOSTS}/{name}"), |w| {
            w.api_delete_bare_metal_host(name);
            Ok(())
        })
    }

    fn create_bare_metal_host(&self, host: &NewBareMetalHost) -> PortResult<()> {
        self.call(Write, format_args!("{BARE_METAL_HOSTS}"), |w| w.api_create_bare_metal_host(host))
    }

    fn apply_bmc_secret(&self, name: &str, credentials: &drctl_workflows::bmc::BmcCredentials) -> PortResult<()> {
        self.call(Write, format_args!("/api/v1/namespaces/openshift-machine-api/secrets/{name}"), |w| {
            w.api_apply_bmc_secret(name, &credentials.username, &credentials.password);
            Ok(())
        })
    }

    fn remove_machine_finalizers(&self, name: &str) -> PortResult<()> {
        self.call(Write, format_args!("{MACHINES}/{name}"), |w| {
            w.api_remove_machine_finalizers(name);
            Ok(())
        })
    }

    fn kubelet_signer_expiry(&self) -> PortResult<Option<drctl_runtime::clock::Timestamp>> {
        self.call(
            Read,
            format_args!("/api/v1/namespaces/openshift-kube-apiserver-operator/secrets/kube-apiserver-to-kubelet-signer"),
            |w| Ok(Some(w.kubelet_signer_not_after())),
        )
    }
}

const BARE_METAL_HOSTS: &str = "/apis/metal3.io/v1alpha1/namespaces/openshift-machine-api/baremetalhosts";

/// The namespace of the etcd operator's secrets and pods.
const ETCD_NAMESPACE: &str = "openshift-etcd";

impl World {
    /// `EtcdMembersAvailable` as the API serves it.
    pub fn etcd_members_available_condition(&self) -> OperatorCondition {
        let (quorate, message) = self.etcd_members_available();
        let (status, reason) = if quorate { ("True", "EtcdQuorate") } else { ("False", "NoQuorum") };
        OperatorCondition { status: status.into(), reason: reason.into(), message }
    }

    /// The secrets of `namespace` the world keeps (the etcd operator's; none elsewhere).
    pub fn secret_names(&self, namespace: &str) -> Vec<String> {
        match namespace {
            ETCD_NAMESPACE => self.api().etcd_secrets.iter().cloned().collect(),
            "openshift-machine-api" => self.api().bmc_secrets.keys().cloned().collect(),
            _ => vec![],
        }
    }

    pub fn api_delete_secret(&mut self, namespace: &str, name: &str) {
        if namespace == ETCD_NAMESPACE && self.api().etcd_secrets.contains(name) {
            self.api_mut().etcd_secrets.remove(name);
            self.note(format!("secret {namespace}/{name} deleted"));
            self.effect(EffectKind::SecretDeleted, name);
        }
    }

    /// Whether `kubectl exec` into the etcdctl container of pod `etcd-<node>` gets in: the API
    /// relays it to the node's kubelet, and the pod must run its member (the runbook enters a
    /// pod on a healthy node).
    pub fn etcd_pod_exec(&self, node: &str) -> PortResult<()> {
        let pod = format!("etcd-{node}");
        let Some(h) = self.hosts.get(node).filter(|h| h.manifests.contains(&StaticPod::Etcd) && self.api().nodes.contains_key(node)) else {
            return Err(PortError::NotFound(format!("pods \"{pod}\" not found")));
        };
        if !(h.powered && h.kubelet_running) {
            return Err(PortError::Transient(format!("error dialing backend: dial tcp {}:10250: connect: no route to host", h.ip)));
        }
        if !self.member_started(h) {
            return Err(PortError::Transient("unable to upgrade connection: container not found (\"etcdctl\")".into()));
        }
        Ok(())
    }
}

/// `etcdctl` in the etcd pods of the simulated cluster: through the API (exec), then as
/// [`SimEtcd`] answers.
pub struct SimEtcdPods(pub Sim);

impl SimEtcdPods {
    fn exec<T>(&self, node: &str, op: impl FnOnce(&SimEtcd) -> PortResult<T>) -> PortResult<T> {
        SimApi(self.0.clone())
            .call(Read, format_args!("/api/v1/namespaces/{ETCD_NAMESPACE}/pods/etcd-{node}/exec"), |w| w.etcd_pod_exec(node))?;
        op(&SimEtcd(self.0.clone()))
    }
}

impl EtcdPods for SimEtcdPods {
    fn member_list(&self, node: &str) -> PortResult<EtcdMemberList> {
        self.exec(node, |e| e.member_list())
    }

    fn member_remove(&self, node: &str, id: u64) -> PortResult<()> {
        self.exec(node, |e| e.member_remove(id))
    }

    fn endpoint_health(&self, node: &str) -> PortResult<Vec<EndpointHealth>> {
        self.exec(node, |e| e.endpoint_health())
    }
}

impl SimHosts {
    /// One SSH command on `host`: time passes, then it runs, or the host cannot be reached, or
    /// the connection drops while the command runs (which may or may not have taken effect).
    fn on_host<T>(&self, host: &str, op: Option<&HostOp>, f: impl FnOnce(&mut World) -> PortResult<T>) -> PortResult<T> {
        self.0.port_op(|w| {
            w.pass_time(SSH_LATENCY_MS);
            let addr = w.hosts.get(host).map(|h| h.ip.clone()).unwrap_or_else(|| host.to_string());
            if !w.ssh_reachable(host) {
                return Err(PortError::Transient(format!("ssh: host unreachable: ssh: connect to host {addr} port 22: No route to host")));
            }
            if w.ssh_drop_now(host) {
                // Not run, run, or cut short half-way (where that leaves something behind).
                match (w.fault_pick(3), op) {
                    (0, _) => {}
                    (2, Some(HostOp::RunBackup { dir })) => {
                        w.pass_time(30 * SECOND);
                        let _ = w.backup_cut_short(host, dir);
                    }
                    (2, Some(HostOp::RunRestore { dir, fence })) => {
                        w.pass_time(20 * SECOND);
                        w.restore_left_running(host, dir, fence);
                    }
                    _ => {
                        let _ = f(w);
                    }
                }
                return Err(PortError::Transient(format!("ssh: connection lost: Connection to {addr} closed by remote host.")));
            }
            f(w)
        })
    }
}

impl Hosts for SimHosts {
    fn control_plane_hosts(&self) -> PortResult<Vec<HostRef>> {
        Ok(self.0.read(|w| w.control_plane_hosts().map(|h| inventory_ref(w, h)).collect()))
    }

    fn worker_hosts(&self) -> PortResult<Vec<HostRef>> {
        Ok(self.0.read(|w| w.hosts.values().filter(|h| h.worker).map(|h| inventory_ref(w, h)).collect()))
    }

    fn connect(&self, host: &str) -> PortResult<()> {
        self.on_host(host, None, |_| Ok(()))
    }

    fn run(&self, host: &str, op: &HostOp) -> PortResult<HostOutput> {
        self.on_host(host, Some(op), |w| w.host_op(host, op))
    }

    fn copy_backup_to_host(&self, backup: &str, host: &str, dest_dir: &str) -> PortResult<()> {
        self.on_host(host, None, |w| {
            let set = w.backups.get(backup).cloned().ok_or_else(|| PortError::NotFound(format!("backup {backup}")))?;
            w.pass_time(30 * SECOND);
            if w.faults.disk_full(host, w.now) {
                let first = set.files.keys().next().cloned().unwrap_or_default();
                return Err(PortError::Permanent(format!(
                    "copy {first} to {host}:{dest_dir}: exit status 1: cat: write error: No space left on device"
                )));
            }
            let h = w.host_mut(host);
            h.dirs.insert(dest_dir.to_string());
            for (name, f) in set.files {
                h.files.insert(format!("{}/{name}", dest_dir.trim_end_matches('/')), f);
            }
            Ok(())
        })
    }

    fn copy_backup_from_host(&self, host: &str, files: &[String], backup: &str, info: &BackupInfo) -> PortResult<()> {
        self.on_host(host, None, |w| {
            let mut set = BackupSet { files: Default::default(), info: Some(info.clone()) };
            for path in files {
                let f = w.hosts[host].files.get(path).cloned().ok_or_else(|| PortError::NotFound(format!("{host}:{path}")))?;
                let name = path.rsplit('/').next().unwrap_or(path).to_string();
                set.files.insert(name, f);
            }
            w.pass_time(30 * SECOND);
            w.backups.insert(backup.to_string(), set);
            w.note(format!("backup {backup} stored"));
            w.effect(EffectKind::BackupStored, backup);
            Ok(())
        })
    }
}

impl BackupStore for SimBackups {
    fn list(&self, backup: &str) -> PortResult<Vec<String>> {
        self.0.read(|w| match w.backups.get(backup) {
            Some(s) => Ok(s.files.keys().cloned().collect()),
            None => {
                Err(PortError::NotFound(format!("backup '{backup}' (known: {})", w.backups.keys().cloned().collect::<Vec<_>>().join(", "))))
            }
        })
    }

    fn info(&self, backup: &str) -> PortResult<Option<BackupInfo>> {
        self.0.read(|w| match w.backups.get(backup) {
            Some(s) => Ok(s.info.clone()),
            None => Err(PortError::NotFound(format!("backup '{backup}'"))),
        })
    }

    fn cluster_version(&self, backup: &str) -> PortResult<Option<String>> {
        self.0.read(|w| match w.backups.get(backup) {
            Some(s) => Ok(s.info.as_ref().map(|i| i.cluster_version.clone()).or_else(|| {
                // The clusterversion object in the snapshot's data, as the real adapter reads it.
                s.files.iter().find_map(|(name, f)| match f {
                    SimFile::Snapshot { data, .. } if is_snapshot_name(name) => Some(data.cluster_version.clone()),
                    _ => None,
                })
            })),
            None => Err(PortError::NotFound(format!("backup '{backup}'"))),
        })
    }
}

impl SimEtcd {
    fn call<T>(&self, linearizable: bool, f: impl FnOnce(&mut World) -> PortResult<T>) -> PortResult<T> {
        self.0.port_op(|w| {
            w.pass_time(20);
            if w.started_members() == 0 {
                return Err(PortError::Transient("context deadline exceeded".into()));
            }
            if linearizable && !w.has_quorum() {
                w.pass_time(5 * SECOND);
                return Err(PortError::Transient("etcdserver: request timed out".into()));
            }
            if let Some(kind) = w.etcd_error_now() {
                return Err(PortError::Transient(kind.message().into()));
            }
            f(w)
        })
    }
}

impl Etcd for SimEtcd {
    fn member_list(&self) -> PortResult<EtcdMemberList> {
        self.call(true, |w| {
            let cid = w.current_cluster;
            let members = w.etcd[&cid]
                .members
                .iter()
                .map(|(id, host)| {
                    let ip = w.hosts.get(host).map(|h| h.ip.clone()).unwrap_or_default();
                    EtcdMember {
                        id: *id,
                        name: host.clone(),
                        peer_urls: vec![format!("https://{ip}:2380")],
                        client_urls: vec![format!("https://{ip}:2379")],
                        is_learner: false,
                    }
                })
                .collect();
            Ok(EtcdMemberList { cluster_id: cid, members })
        })
    }

    fn member_remove(&self, id: u64) -> PortResult<()> {
        self.call(true, |w| w.remove_member(id, true).map(|_| ()).map_err(PortError::Transient))
    }

    fn member_add(&self, name: &str, _peer_url: &str) -> PortResult<EtcdMemberList> {
        self.call(true, |w| {
            // etcd's strict reconfiguration check: a voting member is added only while every
            // voting member is connected.
            if w.etcd[&w.current_cluster].members.iter().any(|(id, host)| !w.member_running(*id, host)) {
                return Err(PortError::Transient("etcdserver: unhealthy cluster".into()));
            }
            let id = w.new_id();
            let cid = w.current_cluster;
            w.etcd.get_mut(&cid).expect("cluster").members.insert(id, name.to_string());
            w.note(format!("etcd member {id:x} added for {name}"));
            w.effect(EffectKind::MemberAdded, name);
            Ok(())
        })?;
        self.member_list()
    }

    fn endpoint_health(&self) -> PortResult<Vec<EndpointHealth>> {
        self.0.port_op(|w| {
            w.pass_time(20);
            let quorum = w.has_quorum();
            Ok(w.etcd[&w.current_cluster]
                .members
                .values()
                .map(|host| {
                    let h = w.hosts.get(host);
                    let started = h.is_some_and(|h| w.member_started(h));
                    let endpoint = format!("https://{}:2379", h.map(|h| h.ip.as_str()).unwrap_or("unknown"));
                    let error = match (started, quorum) {
                        (true, true) => None,
                        (true, false) => Some("etcdserver: request timed out".to_string()),
                        (false, _) => Some("context deadline exceeded".to_string()),
                    };
                    EndpointHealth { endpoint, healthy: error.is_none(), error }
                })
                .collect())
        })
    }

    fn snapshot_save(&self, path: &str) -> PortResult<SnapshotStatus> {
        let host = self.0.read(|w| w.hosts.values().find(|h| w.member_started(h)).map(|h| h.name.clone()));
        let host = host.ok_or_else(|| PortError::Transient("context deadline exceeded".into()))?;
        let (dir, _) = path.rsplit_once('/').unwrap_or((".", path));
        let dir = dir.to_string();
        let (snap, _) = self.0.port_op(|w| {
            let taken = w.backup(&host, &dir).map_err(PortError::Transient);
            w.touch();
            taken
        })?;
        self.snapshot_status(&format!("{dir}/{snap}"))
    }

    fn snapshot_status(&self, path: &str) -> PortResult<SnapshotStatus> {
        self.0.read(|w| {
            w.hosts
                .values()
                .find_map(|h| match h.files.get(path) {
                    Some(SimFile::Snapshot { status, .. }) => Some(status.clone()),
                    _ => None,
                })
                .ok_or_else(|| PortError::NotFound(format!("{path}: no such file or directory")))
        })
    }
}

const HYPERSHIFT: &str = "/apis/hypershift.openshift.io/v1beta1";

/// Pausing, on the world: one implementation for the simulated port and the served API.
impl World {
    /// A merge patch of a HostedCluster's `spec.pausedUntil` and paused-by annotation.
    pub fn set_hosted_cluster_paused(
        &mut self,
        namespace: &str,
        name: &str,
        paused_until: Option<&str>,
        paused_by: Option<&str>,
    ) -> PortResult<()> {
        self.set_paused("hostedclusters", namespace, name, paused_until, paused_by)
    }

    /// A merge patch of a NodePool's `spec.pausedUntil` and paused-by annotation.
    pub fn set_node_pool_paused(
        &mut self,
        namespace: &str,
        name: &str,
        paused_until: Option<&str>,
        paused_by: Option<&str>,
    ) -> PortResult<()> {
        self.set_paused("nodepools", namespace, name, paused_until, paused_by)
    }

    /// The pause of the `plural` object `namespace/name`; the operator acts on a change later.
    fn set_paused(
        &mut self,
        plural: &str,
        namespace: &str,
        name: &str,
        paused_until: Option<&str>,
        paused_by: Option<&str>,
    ) -> PortResult<()> {
        let at = self.schedule_operator();
        let key = crate::hosted::key(namespace, name);
        let h = self.hosted.as_mut().ok_or_else(|| hypershift_not_found(plural, name))?;
        let object = match plural {
            "hostedclusters" => h.clusters.get_mut(&key).map(|c| &mut c.cluster),
            _ => h.node_pools.get_mut(&key).map(|p| &mut p.pool),
        };
        let object = object.ok_or_else(|| hypershift_not_found(plural, name))?;
        if object.set_paused(paused_until, paused_by) {
            object.sync_at.get_or_insert(at);
            let kind = plural.trim_end_matches('s');
            self.note(format!("{kind} {namespace}/{name}: pausedUntil={paused_until:?} paused-by={paused_by:?}"));
            self.effect(EffectKind::Paused { paused_until: paused_until.map(str::to_string) }, format!("{plural}/{namespace}/{name}"));
        }
        Ok(())
    }
}

/// The 404 the API server gives for a missing HyperShift object.
fn hypershift_not_found(resource: &str, name: &str) -> PortError {
    PortError::NotFound(format!("HTTP 404 NotFound: {resource}.hypershift.openshift.io \"{name}\" not found"))
}

impl SimManagement {
    fn hosted<T>(&self, verb: Verb, path: std::fmt::Arguments<'_>, f: impl FnOnce(&mut World) -> PortResult<T>) -> PortResult<T> {
        SimApi(self.0.clone()).call(verb, path, |w| match w.hosted.is_some() {
            true => f(w),
            // No HyperShift CRDs on this cluster: the API has no such resource type.
            false => Err(PortError::NotFound(
                "HTTP 404 NotFound: the server could not find the requested resource (hostedclusters.hypershift.openshift.io)".into(),
            )),
        })
    }
}

impl SimManagement {
    /// `kubectl exec` into the `etcd` container of a hosted etcd pod, then etcdctl against the
    /// member it serves.
    fn etcd_exec<T>(&self, namespace: &str, name: &str, pod: &str, op: impl FnOnce(&crate::hosted_etcd::HostedEtcd) -> T) -> PortResult<T> {
        let cpns = control_plane_namespace(namespace, name);
        self.hosted(Read, format_args!("/api/v1/namespaces/{cpns}/pods/{pod}/exec"), |w| {
            w.admit_hosted_etcd_exec(namespace, name, pod, "etcd")?;
            Ok(op(w.hosted_etcd(namespace, name).expect("admitted")))
        })
    }
}

impl ManagementCluster for SimManagement {
    fn hosted_cluster(&self, namespace: &str, name: &str) -> PortResult<PausableInfo> {
        self.hosted(Read, format_args!("{HYPERSHIFT}/namespaces/{namespace}/hostedclusters/{name}"), |w| {
            let h = w.hosted.as_ref().expect("checked");
            h.clusters
                .get(&crate::hosted::key(namespace, name))
                .map(|c| c.cluster.info())
                .ok_or_else(|| hypershift_not_found("hostedclusters", name))
        })
    }

    fn set_hosted_cluster_paused(
        &self,
        namespace: &str,
        name: &str,
        paused_until: Option<&str>,
        paused_by: Option<&str>,
    ) -> PortResult<()> {
        self.hosted(Write, format_args!("{HYPERSHIFT}/namespaces/{namespace}/hostedclusters/{name}"), |w| {
            w.set_hosted_cluster_paused(namespace, name, paused_until, paused_by)
        })
    }

    fn node_pools(&self, namespace: &str, cluster: &str) -> PortResult<Vec<PausableInfo>> {
        self.hosted(Read, format_args!("{HYPERSHIFT}/namespaces/{namespace}/nodepools"), |w| {
            let h = w.hosted.as_ref().expect("checked");
            Ok(h.node_pools.values().filter(|p| p.namespace == namespace && p.cluster_name == cluster).map(|p| p.pool.info()).collect())
        })
    }

    fn set_node_pool_paused(&self, namespace: &str, name: &str, paused_until: Option<&str>, paused_by: Option<&str>) -> PortResult<()> {
        self.hosted(Write, format_args!("{HYPERSHIFT}/namespaces/{namespace}/nodepools/{name}"), |w| {
            w.set_node_pool_paused(namespace, name, paused_until, paused_by)
        })
    }

    fn control_plane_paused_until(&self, namespace: &str, name: &str) -> PortResult<Option<String>> {
        let cpns = control_plane_namespace(namespace, name);
        self.hosted(Read, format_args!("{HYPERSHIFT}/namespaces/{cpns}/hostedcontrolplanes/{name}"), |w| {
            let h = w.hosted.as_ref().expect("checked");
            let hc =
                h.clusters.get(&crate::hosted::key(namespace, name)).ok_or_else(|| hypershift_not_found("hostedcontrolplanes", name))?;
            Ok(hc.hcp_paused_until.clone())
        })
    }

    fn node_pool_scales(&self, namespace: &str, cluster: &str) -> PortResult<Vec<NodePoolScale>> {
        self.hosted(Read, format_args!("{HYPERSHIFT}/namespaces/{namespace}/nodepools"), |w| Ok(w.node_pool_scales(namespace, cluster)))
    }

    fn scale_node_pool(&self, namespace: &str, name: &str, replicas: u32) -> PortResult<()> {
        self.hosted(Write, format_args!("{HYPERSHIFT}/namespaces/{namespace}/nodepools/{name}/scale"), |w| {
            w.scale_node_pool(namespace, name, replicas)
        })
    }

    fn set_node_pool_drain_timeout(&self, namespace: &str, name: &str, timeout: Option<&str>) -> PortResult<()> {
        self.hosted(Write, format_args!("{HYPERSHIFT}/namespaces/{namespace}/nodepools/{name}"), |w| {
            w.set_node_pool_drain_timeout(namespace, name, timeout)
        })
    }

    fn node_pool_machines(&self, namespace: &str, cluster: &str, pool: &str) -> PortResult<Vec<String>> {
        let cpns = control_plane_namespace(namespace, cluster);
        self.hosted(Read, format_args!("/apis/cluster.x-k8s.io/v1beta1/namespaces/{cpns}/machines"), |w| {
            Ok(w.node_pool_machines(namespace, pool))
        })
    }

    fn record_node_pool_replicas(&self, namespace: &str, name: &str, replicas: Option<u32>) -> PortResult<()> {
        self.hosted(Write, format_args!("{HYPERSHIFT}/namespaces/{namespace}/nodepools/{name}"), |w| {
            w.record_node_pool_replicas(namespace, name, replicas)
        })
    }

    fn hosted_etcd(&self, namespace: &str, name: &str) -> PortResult<HostedEtcdInfo> {
        let cpns = control_plane_namespace(namespace, name);
        self.hosted(Read, format_args!("/apis/apps/v1/namespaces/{cpns}/statefulsets/etcd"), |w| {
            w.hosted_etcd(namespace, name)
                .map(|e| e.info())
                .ok_or_else(|| PortError::NotFound(format!("HTTP 404 NotFound: statefulsets.apps \"etcd\" not found in {cpns}")))
        })
    }

    fn hosted_etcd_health(&self, namespace: &str, name: &str, pod: &str) -> PortResult<Vec<EndpointHealth>> {
        let cpns = control_plane_namespace(namespace, name);
        self.etcd_exec(namespace, name, pod, |e| e.endpoint_health(&cpns))
    }

    fn hosted_etcd_members(&self, namespace: &str, name: &str, pod: &str) -> PortResult<EtcdMemberList> {
        let cpns = control_plane_namespace(namespace, name);
        self.etcd_exec(namespace, name, pod, |e| e.member_list(&cpns))
    }

    fn delete_hosted_etcd_pvc(&self, namespace: &str, name: &str, pvc: &str, uid: &str) -> PortResult<()> {
        let cpns = control_plane_namespace(namespace, name);
        self.hosted(Write, format_args!("/api/v1/namespaces/{cpns}/persistentvolumeclaims/{pvc}"), |w| {
            w.delete_hosted_etcd_pvc(namespace, name, pvc, uid)
        })
    }

    fn delete_hosted_etcd_pod(&self, namespace: &str, name: &str, pod: &str, uid: &str) -> PortResult<()> {
        let cpns = control_plane_namespace(namespace, name);
        self.hosted(Write, format_args!("/api/v1/namespaces/{cpns}/pods/{pod}"), |w| w.delete_hosted_etcd_pod(namespace, name, pod, uid))
    }

    fn hosted_cluster_backup_facts(&self, namespace: &str, name: &str) -> PortResult<HostedBackupFacts> {
        self.hosted(Read, format_args!("{HYPERSHIFT}/namespaces/{namespace}/hostedclusters/{name}"), |w| {
            w.hosted_backup_facts(namespace, name)
        })
    }

    fn control_plane_deployments(&self, namespace: &str, name: &str, names: &[&str]) -> PortResult<Vec<DeploymentScale>> {
        let cpns = control_plane_namespace(namespace, name);
        self.hosted(Read, format_args!("/apis/apps/v1/namespaces/{cpns}/deployments"), |w| {
            w.control_plane_deployments(namespace, name, names)
        })
    }

    fn scale_control_plane_deployment(&self, namespace: &str, name: &str, deployment: &str, replicas: u32) -> PortResult<()> {
        let cpns = control_plane_namespace(namespace, name);
        self.hosted(Write, format_args!("/apis/apps/v1/namespaces/{cpns}/deployments/{deployment}/scale"), |w| {
            w.scale_control_plane_deployment(namespace, name, deployment, replicas)
        })
    }

    fn hosted_etcd_snapshot_save(&self, namespace: &str, name: &str, pod: &str, path: &str) -> PortResult<()> {
        let cpns = control_plane_namespace(namespace, name);
        self.hosted(Write, format_args!("/api/v1/namespaces/{cpns}/pods/{pod}/exec"), |w| {
            w.admit_hosted_etcd_exec(namespace, name, pod, "etcd")?;
            w.hosted_etcd_snapshot_save(namespace, name, pod, path)
        })
    }

    fn hosted_etcd_snapshot_status(&self, namespace: &str, name: &str, pod: &str, path: &str) -> PortResult<SnapshotStatus> {
        let cpns = control_plane_namespace(namespace, name);
        self.hosted(Read, format_args!("/api/v1/namespaces/{cpns}/pods/{pod}/exec"), |w| {
            w.admit_hosted_etcd_exec(namespace, name, pod, "etcd")?;
            w.hosted_etcd_snapshot_file(namespace, name, pod, path)
        })
    }

    fn open_hosted_etcd_file(&self, namespace: &str, name: &str, pod: &str, path: &str) -> PortResult<Box<dyn std::io::Read + Send>> {
        let cpns = control_plane_namespace(namespace, name);
        let status = self.hosted(Read, format_args!("/api/v1/namespaces/{cpns}/pods/{pod}/exec"), |w| {
            w.admit_hosted_etcd_exec(namespace, name, pod, "etcd")?;
            w.hosted_etcd_snapshot_file(namespace, name, pod, path)
                .map_err(|_| PortError::Permanent(format!("exit status 1: cat: {path}: No such file or directory")))
        })?;
        Ok(Box::new(std::io::Cursor::new(crate::hosted_etcd::snapshot_bytes(&status))))
    }

    fn remove_hosted_etcd_file(&self, namespace: &str, name: &str, pod: &str, path: &str) -> PortResult<()> {
        let cpns = control_plane_namespace(namespace, name);
        self.hosted(Write, format_args!("/api/v1/namespaces/{cpns}/pods/{pod}/exec"), |w| {
            w.admit_hosted_etcd_exec(namespace, name, pod, "etcd")?;
            w.remove_hosted_etcd_file(namespace, name, pod, path)
        })
    }

    fn encryption_key(&self, namespace: &str, secret: &str) -> PortResult<SecretBytes> {
        self.hosted(Read, format_args!("/api/v1/namespaces/{namespace}/secrets/{secret}"), |w| w.hosted_secret(namespace, secret))
            .map(SecretBytes::new)
    }

    fn operator_available(&self) -> PortResult<bool> {
        // A Deployment, not a HyperShift resource: on a cluster without HyperShift it is simply
        // absent (404), which the kube adapter reads as "no operator available".
        SimApi(self.0.clone()).call(Read, format_args!("/apis/apps/v1/namespaces/hypershift/deployments/operator"), |w| {
            Ok(w.hosted.as_ref().is_some_and(|h| h.operator_available))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn machine_manifest_is_the_object_the_api_serves() {
        let w = crate::scenario::healthy(1);
        let m = &w.api().machines["ocp-7x2lq-master-0"];
        let v = machine_manifest(m);
        let expected = json!({
            "apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine",
            "metadata": {
                "name": m.name, "namespace": "openshift-machine-api", "uid": m.uid, "generation": m.generation,
                "resourceVersion": m.resource_version.to_string(),
                "labels": {"machine.openshift.io/cluster-api-machine-role": "master", "machine.openshift.io/cluster-api-machine-type": "master"},
                "annotations": m.annotations, "finalizers": ["machine.machine.openshift.io"],
            },
            "spec": {"providerSpec": {"value": {"instanceType": m.instance_type, "placement": {"availabilityZone": m.zone}}}, "providerID": m.provider_id},
            "status": {"phase": "Running", "nodeRef": {"kind": "Node", "name": "master-0"}, "providerStatus": {"instanceState": "running"}},
        });
        assert_eq!(v, expected);
    }

    #[test]
    fn injected_api_errors_read_like_the_kube_adapter() {
        assert_eq!(api_status_text(503), "HTTP 503 ServiceUnavailable: the server is currently unable to handle the request");
        assert!(api_status_text(504).starts_with("HTTP 504 Timeout: the server was unable to return a response in the time allotted"));
        assert!(api_status_text(429).starts_with("HTTP 429 TooManyRequests:"));
        assert!(api_status_text(500).starts_with("HTTP 500 InternalError: Internal error occurred"));
    }
}
