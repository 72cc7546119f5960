//! The ports, implemented on the simulated world, failing with the error text the real
//! adapters meet (so procedures exercise the real classification paths).

use crate::world::*;
use crate::Sim;
use drctl_workflows::ports::*;
use serde_json::json;

/// Virtual time one API request takes when the API answers.
const API_LATENCY_MS: u64 = 40;
/// kube-apiserver's etcd request timeout, spent when etcd has no quorum.
const ETCD_REQUEST_TIMEOUT_MS: u64 = 7 * SECOND;
const SSH_LATENCY_MS: u64 = 250;

pub fn sim_ports(sim: &Sim) -> Ports {
    Ports {
        api: Box::new(SimApi(sim.clone())),
        hosts: Box::new(SimHosts(sim.clone())),
        backups: Box::new(SimBackups(sim.clone())),
    }
}

pub struct SimApi(pub Sim);
pub struct SimHosts(pub Sim);
pub struct SimBackups(pub Sim);
pub struct SimEtcd(pub Sim);

impl SimApi {
    /// One API request: time passes, then it is answered or fails as a real one would.
    fn call<T>(&self, path: &str, f: impl FnOnce(&mut World) -> PortResult<T>) -> PortResult<T> {
        self.0.write(|w| {
            w.advance(API_LATENCY_MS);
            if w.in_api_outage() || !w.kas_running() {
                return Err(PortError::Transient(format!(
                    "Get \"https://api.ocp.example.com:6443{path}\": dial tcp 10.0.0.5:6443: connect: connection refused"
                )));
            }
            if !w.has_quorum() {
                w.advance(ETCD_REQUEST_TIMEOUT_MS);
                return Err(PortError::Transient("etcdserver: request timed out".into()));
            }
            f(w)
        })
    }
}

fn machine_manifest(m: &MachineObj) -> serde_json::Value {
    let mut meta = json!({
        "name": m.name,
        "namespace": "openshift-machine-api",
        "uid": m.uid,
        "generation": m.generation,
        "resourceVersion": m.resource_version.to_string(),
        "labels": {
            "machine.openshift.io/cluster-api-machine-role": if m.control_plane { "master" } else { "worker" },
            "machine.openshift.io/cluster-api-machine-type": if m.control_plane { "master" } else { "worker" },
        },
    });
    if !m.annotations.is_empty() {
        meta["annotations"] = json!(m.annotations);
    }
    let mut spec = json!({
        "providerSpec": { "value": { "instanceType": m.instance_type, "placement": { "availabilityZone": m.zone } } }
    });
    if let Some(p) = &m.provider_id {
        spec["providerID"] = json!(p);
    }
    let mut status = json!({ "phase": m.phase });
    if let Some(n) = &m.node {
        status["nodeRef"] = json!({ "kind": "Node", "name": n });
    }
    json!({ "apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine", "metadata": meta, "spec": spec, "status": status })
}

fn machine_info(m: &MachineObj) -> MachineInfo {
    MachineInfo { name: m.name.clone(), phase: m.phase.clone(), node: m.node.clone(), control_plane: m.control_plane, manifest: machine_manifest(m) }
}

impl ClusterApi for SimApi {
    fn cluster_version(&self) -> PortResult<String> {
        self.call("/apis/config.openshift.io/v1/clusterversions/version", |w| Ok(w.api().cluster_version.clone()))
    }

    fn cluster_age_secs(&self) -> PortResult<u64> {
        self.call("/apis/config.openshift.io/v1/clusterversions/version", |w| Ok(w.now.since(w.installed_at).as_secs()))
    }

    fn cluster_operators(&self) -> PortResult<Vec<ClusterOperatorInfo>> {
        self.call("/apis/config.openshift.io/v1/clusteroperators", |w| {
            Ok(Operator::ALL
                .iter()
                .map(|op| {
                    let (reason, _) = w.installer_progress(*op);
                    ClusterOperatorInfo { name: op.to_string(), available: true, progressing: reason != "AllNodesAtLatestRevision", degraded: false }
                })
                .collect())
        })
    }

    fn list_nodes(&self) -> PortResult<Vec<NodeInfo>> {
        self.call("/api/v1/nodes", |w| {
            Ok(w.api()
                .nodes
                .values()
                .map(|n| {
                    let ready = w.node_ready(&n.name);
                    let powered = w.hosts.get(&n.name).is_some_and(|h| h.powered);
                    let taints = match (ready, powered) {
                        (true, _) => vec![],
                        (false, false) => vec!["node.kubernetes.io/unreachable".to_string()],
                        (false, true) => vec!["node.kubernetes.io/not-ready".to_string()],
                    };
                    NodeInfo { name: n.name.clone(), ready, control_plane: n.control_plane, internal_ip: n.internal_ip.clone(), taints }
                })
                .collect())
        })
    }

    fn delete_node(&self, name: &str) -> PortResult<()> {
        self.call(&format!("/api/v1/nodes/{name}"), |w| {
            if w.api().nodes.contains_key(name) {
                w.api_mut().nodes.remove(name);
                w.note(format!("node {name} deleted"));
            }
            Ok(())
        })
    }

    fn list_csrs(&self) -> PortResult<Vec<CsrInfo>> {
        self.call("/apis/certificates.k8s.io/v1/certificatesigningrequests", |w| {
            Ok(w.api()
                .csrs
                .values()
                .map(|c| CsrInfo {
                    name: c.name.clone(),
                    signer: c.signer.clone(),
                    requestor: c.requestor.clone(),
                    kind: c.kind,
                    node: Some(c.node.clone()),
                    pending: !c.approved,
                    approved: c.approved,
                })
                .collect())
        })
    }

    fn approve_csr(&self, name: &str) -> PortResult<()> {
        self.call(&format!("/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}/approval"), |w| {
            match w.api().csrs.get(name) {
                None => Err(PortError::NotFound(format!("certificatesigningrequests.certificates.k8s.io \"{name}\" not found"))),
                Some(c) if c.approved => Ok(()),
                Some(_) => {
                    w.api_mut().csrs.get_mut(name).expect("csr").approved = true;
                    w.note(format!("csr {name} approved"));
                    Ok(())
                }
            }
        })
    }

    fn list_pods(&self, namespace: &str, selector: &str) -> PortResult<Vec<PodInfo>> {
        self.call(&format!("/api/v1/namespaces/{namespace}/pods?labelSelector={selector}"), |w| {
            match (namespace, selector) {
                ("openshift-etcd", "k8s-app=etcd") => Ok(w
                    .hosts
                    .values()
                    .filter(|h| w.api().nodes.contains_key(&h.name) && h.manifests.contains(&StaticPod::Etcd))
                    .map(|h| {
                        let c = h.containers.get(&StaticPod::Etcd).copied();
                        let (phase, ready) = match c {
                            Some(Container::Running) if w.member_started(h) => ("Running", true),
                            Some(Container::CrashLoop) => ("CrashLoopBackOff", false),
                            _ => ("Pending", false),
                        };
                        PodInfo { name: format!("etcd-{}", h.name), node: h.name.clone(), phase: phase.into(), ready }
                    })
                    .collect()),
                ("openshift-ovn-kubernetes", sel) => {
                    let role = match sel {
                        "app=ovnkube-master" => OvnRole::Master,
                        "app=ovnkube-node" => OvnRole::Node,
                        other => return Err(PortError::Permanent(format!("simulator has no pods for selector {other}"))),
                    };
                    Ok(w.ovn_pods
                        .iter()
                        .filter(|(_, p)| p.role == role)
                        .map(|(n, p)| {
                            let powered = w.hosts.get(&p.node).is_some_and(|h| h.powered);
                            let phase = if powered { p.phase.clone() } else { "Unknown".into() };
                            PodInfo { name: n.clone(), node: p.node.clone(), ready: phase == "Running", phase }
                        })
                        .collect())
                }
                (ns, sel) => Err(PortError::Permanent(format!("simulator has no pods in {ns} for {sel}"))),
            }
        })
    }

    fn delete_pod(&self, namespace: &str, name: &str) -> PortResult<()> {
        self.call(&format!("/api/v1/namespaces/{namespace}/pods/{name}"), |w| {
            if namespace == "openshift-ovn-kubernetes" && w.ovn_pods.contains_key(name) {
                let at = w.delay(10 * SECOND, 40 * SECOND);
                let p = w.ovn_pods.get_mut(name).expect("pod");
                p.phase = "Pending".into();
                p.start_at = Some(at);
                w.note(format!("pod {name} deleted; daemonset re-creates it"));
            }
            Ok(())
        })
    }

    fn ovn_master_references(&self, ips: &[String]) -> PortResult<Vec<String>> {
        self.call("/apis/apps/v1/namespaces/openshift-ovn-kubernetes/daemonsets/ovnkube-master", |w| {
            Ok(ips.iter().filter(|ip| w.ovn_master_ips.contains(*ip)).cloned().collect())
        })
    }

    fn list_machines(&self) -> PortResult<Vec<MachineInfo>> {
        self.call("/apis/machine.openshift.io/v1beta1/namespaces/openshift-machine-api/machines", |w| {
            Ok(w.api().machines.values().map(machine_info).collect())
        })
    }

    fn get_machine(&self, name: &str) -> PortResult<Option<MachineInfo>> {
        self.call(&format!("/apis/machine.openshift.io/v1beta1/namespaces/openshift-machine-api/machines/{name}"), |w| {
            Ok(w.api().machines.get(name).map(machine_info))
        })
    }

    fn delete_machine(&self, name: &str) -> PortResult<()> {
        self.call(&format!("/apis/machine.openshift.io/v1beta1/namespaces/openshift-machine-api/machines/{name}"), |w| {
            let Some(m) = w.api().machines.get(name).cloned() else { return Ok(()) };
            if m.phase != "Deleting" {
                let until = w.delay(MINUTE, 3 * MINUTE);
                let mm = w.api_mut().machines.get_mut(name).expect("machine");
                mm.phase = "Deleting".into();
                mm.phase_until = Some(until);
                w.note(format!("machine {name} deleting"));
            }
            Ok(())
        })
    }

    fn create_machine(&self, manifest: &serde_json::Value) -> PortResult<()> {
        self.call("/apis/machine.openshift.io/v1beta1/namespaces/openshift-machine-api/machines", |w| {
            let name = manifest["metadata"]["name"]
                .as_str()
                .ok_or_else(|| PortError::Permanent("Machine.machine.openshift.io is invalid: metadata.name: Required value".into()))?
                .to_string();
            for forbidden in ["resourceVersion", "uid"] {
                if !manifest["metadata"][forbidden].is_null() {
                    return Err(PortError::Permanent(format!("machines.machine.openshift.io \"{name}\": metadata.{forbidden}: must not be set on create")));
                }
            }
            if w.api().machines.contains_key(&name) {
                return Ok(());
            }
            let spec = &manifest["spec"]["providerSpec"]["value"];
            let until = w.delay(3 * MINUTE, 6 * MINUTE);
            let uid = format!("{:032x}", w.rng.next_u64() as u128);
            let m = MachineObj {
                name: name.clone(),
                phase: "Provisioning".into(),
                node: None,
                control_plane: true,
                provider_id: None,
                instance_type: spec["instanceType"].as_str().unwrap_or("m6i.xlarge").into(),
                zone: spec["placement"]["availabilityZone"].as_str().unwrap_or("us-east-1a").into(),
                uid,
                generation: 1,
                resource_version: 1,
                annotations: Default::default(),
                phase_until: Some(until),
            };
            w.api_mut().machines.insert(name.clone(), m);
            w.note(format!("machine {name} created"));
            Ok(())
        })
    }

    fn set_quorum_guard(&self, enabled: bool) -> PortResult<()> {
        self.call("/apis/operator.openshift.io/v1/etcds/cluster", |w| {
            if w.api().quorum_guard != enabled {
                w.api_mut().quorum_guard = enabled;
                w.note(format!("etcd quorum guard {}", if enabled { "on" } else { "off" }));
            }
            Ok(())
        })
    }

    fn quorum_guard_enabled(&self) -> PortResult<bool> {
        self.call("/apis/operator.openshift.io/v1/etcds/cluster", |w| Ok(w.api().quorum_guard))
    }

    fn force_redeployment(&self, operator: Operator, reason: &str) -> PortResult<()> {
        self.call(&format!("/apis/operator.openshift.io/v1/{}/cluster", operator.resource()), |w| {
            if w.api().operators[&operator].force_reason.as_deref() != Some(reason) {
                w.api_mut().operators.get_mut(&operator).expect("operator").force_reason = Some(reason.to_string());
                w.note(format!("{operator}: forceRedeploymentReason={reason}"));
            }
            Ok(())
        })
    }

    fn installer_progress(&self, operator: Operator) -> PortResult<InstallerProgress> {
        self.call(&format!("/apis/operator.openshift.io/v1/{}/cluster", operator.resource()), |w| {
            let (reason, message) = w.installer_progress(operator);
            let o = &w.api().operators[&operator];
            Ok(InstallerProgress { reason, message, latest_revision: o.latest_revision, force_redeployment_reason: o.force_reason.clone() })
        })
    }
}

impl SimHosts {
    fn on_host<T>(&self, host: &str, f: impl FnOnce(&mut World) -> PortResult<T>) -> PortResult<T> {
        self.0.write(|w| {
            w.advance(SSH_LATENCY_MS);
            if !w.ssh_reachable(host) {
                let addr = w.hosts.get(host).map(|h| h.ip.clone()).unwrap_or_else(|| host.to_string());
                return Err(PortError::Transient(format!("ssh: connect to host {addr} port 22: No route to host")));
            }
            f(w)
        })
    }
}

fn host_mut<'a>(w: &'a mut World, host: &str) -> &'a mut Host {
    w.hosts.get_mut(host).expect("reachable host exists")
}

impl Hosts for SimHosts {
    fn control_plane_hosts(&self) -> PortResult<Vec<HostRef>> {
        Ok(self.0.read(|w| w.hosts.values().map(|h| HostRef { name: h.name.clone(), node: h.name.clone(), address: h.ip.clone() }).collect()))
    }

    fn connect(&self, host: &str) -> PortResult<()> {
        self.on_host(host, |_| Ok(()))
    }

    fn run(&self, host: &str, op: &HostOp) -> PortResult<HostOutput> {
        self.on_host(host, |w| {
            let out = match op {
                HostOp::MoveManifestOut(p) => {
                    let h = host_mut(w, host);
                    let moved = h.manifests.remove(p);
                    if moved {
                        h.moved_manifests.insert(*p);
                    }
                    HostOutput::Moved { moved }
                }
                HostOp::MoveManifestIn(p) => {
                    let h = host_mut(w, host);
                    let moved = h.moved_manifests.remove(p);
                    if moved {
                        h.manifests.insert(*p);
                    }
                    HostOutput::Moved { moved }
                }
                HostOp::ManifestPresent(p) => HostOutput::Present(w.hosts[host].manifests.contains(p)),
                HostOp::RunningContainers { name } => HostOutput::Names(
                    w.hosts[host]
                        .containers
                        .iter()
                        .filter(|(p, c)| p.container() == name && matches!(c, Container::Running | Container::Stopping { .. }))
                        .map(|(p, _)| p.container().to_string())
                        .collect(),
                ),
                HostOp::MoveEtcdDataDirAside => {
                    let h = host_mut(w, host);
                    match h.etcd_data.take() {
                        Some(d) => {
                            h.etcd_data_aside.push(d);
                            HostOutput::Moved { moved: true }
                        }
                        None => HostOutput::Moved { moved: false },
                    }
                }
                HostOp::ListAddresses => HostOutput::Addresses(w.hosts[host].addresses.clone()),
                HostOp::RemoveAddress { address, device } => {
                    host_mut(w, host).addresses.retain(|(a, d)| !(a == address && d == device));
                    HostOutput::Done
                }
                HostOp::RemoveKubeletPki => {
                    let h = host_mut(w, host);
                    h.kubelet_cert_gen = None;
                    h.kubelet_serving = false;
                    HostOutput::Done
                }
                HostOp::RestartKubelet => {
                    let h = host_mut(w, host);
                    h.kubelet_running = true;
                    h.needs_register = true;
                    w.note(format!("kubelet restarted on {host}"));
                    HostOutput::Done
                }
                HostOp::RemoveOvnDatabases => {
                    host_mut(w, host).ovn_db = None;
                    HostOutput::Done
                }
                HostOp::RunBackup { dir } => {
                    w.advance(45 * SECOND);
                    let (snapshot, resources) = w.backup(host, dir).map_err(|e| {
                        if e.contains("timed out") {
                            PortError::Transient(e)
                        } else {
                            PortError::Permanent(e)
                        }
                    })?;
                    HostOutput::Backup { snapshot, resources }
                }
                HostOp::SnapshotStatus { path } => match w.hosts[host].files.get(path) {
                    Some(SimFile::Snapshot { status, .. }) => HostOutput::Snapshot(status.clone()),
                    Some(_) => return Err(PortError::Permanent(format!("{path}: invalid snapshot: snapshot file has no checksum"))),
                    None => return Err(PortError::NotFound(format!("{path}: no such file or directory"))),
                },
                HostOp::RunRestore { dir, fence } => {
                    w.advance(2 * MINUTE);
                    w.restore(host, dir, fence).map_err(PortError::Permanent)?;
                    HostOutput::Done
                }
                HostOp::ListDir { dir } => {
                    let prefix = format!("{}/", dir.trim_end_matches('/'));
                    HostOutput::Names(
                        w.hosts[host]
                            .files
                            .keys()
                            .filter_map(|p| p.strip_prefix(&prefix))
                            .filter(|rest| !rest.contains('/'))
                            .map(str::to_string)
                            .collect(),
                    )
                }
                HostOp::MakePrivateDir { dir } => {
                    host_mut(w, host).dirs.insert(dir.clone());
                    HostOutput::Done
                }
                HostOp::ReleaseVersion => HostOutput::Version(w.hosts[host].release_version.clone()),
                HostOp::Shutdown { minutes } => {
                    let at = w.now.plus(std::time::Duration::from_secs(60 * *minutes as u64));
                    host_mut(w, host).shutdown_at = Some(at);
                    HostOutput::Done
                }
            };
            Ok(out)
        })
    }

    fn copy_backup_to_host(&self, backup: &str, host: &str, dest_dir: &str) -> PortResult<()> {
        self.on_host(host, |w| {
            let set = w.backups.get(backup).cloned().ok_or_else(|| PortError::NotFound(format!("backup {backup}")))?;
            w.advance(30 * SECOND);
            let h = host_mut(w, host);
            h.dirs.insert(dest_dir.to_string());
            for (name, f) in set.files {
                h.files.insert(format!("{}/{name}", dest_dir.trim_end_matches('/')), f);
            }
            Ok(())
        })
    }

    fn copy_backup_from_host(&self, host: &str, files: &[String], backup: &str, info: &BackupInfo) -> PortResult<()> {
        self.on_host(host, |w| {
            let mut set = BackupSet { files: Default::default(), info: Some(info.clone()) };
            for path in files {
                let f = w.hosts[host].files.get(path).cloned().ok_or_else(|| PortError::NotFound(format!("{host}:{path}")))?;
                let name = path.rsplit('/').next().unwrap_or(path).to_string();
                set.files.insert(name, f);
            }
            w.advance(30 * SECOND);
            w.backups.insert(backup.to_string(), set);
            w.note(format!("backup {backup} stored"));
            Ok(())
        })
    }
}

impl BackupStore for SimBackups {
    fn list(&self, backup: &str) -> PortResult<Vec<String>> {
        self.0.read(|w| match w.backups.get(backup) {
            Some(s) => Ok(s.files.keys().cloned().collect()),
            None => Err(PortError::NotFound(format!("backup '{backup}' (known: {})", w.backups.keys().cloned().collect::<Vec<_>>().join(", ")))),
        })
    }

    fn info(&self, backup: &str) -> PortResult<Option<BackupInfo>> {
        self.0.read(|w| match w.backups.get(backup) {
            Some(s) => Ok(s.info.clone()),
            None => Err(PortError::NotFound(format!("backup '{backup}'"))),
        })
    }
}

impl SimEtcd {
    fn call<T>(&self, linearizable: bool, f: impl FnOnce(&mut World) -> PortResult<T>) -> PortResult<T> {
        self.0.write(|w| {
            w.advance(20);
            if w.started_members() == 0 {
                return Err(PortError::Transient("context deadline exceeded".into()));
            }
            if linearizable && !w.has_quorum() {
                w.advance(5 * SECOND);
                return Err(PortError::Transient("etcdserver: request timed out".into()));
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
        self.call(true, |w| {
            let cid = w.current_cluster;
            if w.etcd.get_mut(&cid).expect("cluster").members.remove(&id).is_some() {
                w.api_mut(); // membership change is a raft entry: revision moves
                w.note(format!("etcd member {id:x} removed"));
            }
            Ok(())
        })
    }

    fn member_add(&self, name: &str, _peer_url: &str) -> PortResult<EtcdMemberList> {
        self.call(true, |w| {
            let id = w.new_id();
            let cid = w.current_cluster;
            w.etcd.get_mut(&cid).expect("cluster").members.insert(id, name.to_string());
            w.note(format!("etcd member {id:x} added for {name}"));
            Ok(())
        })?;
        self.member_list()
    }

    fn endpoint_health(&self) -> PortResult<Vec<EndpointHealth>> {
        self.0.write(|w| {
            w.advance(20);
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
        let (snap, _) = self.0.write(|w| w.backup(&host, &dir)).map_err(PortError::Transient)?;
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
