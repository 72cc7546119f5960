//! The files of a simulated host, as the shell's tools see them: which paths exist, what
//! reading one gives, and which paths stand for which part of the host's state. The world keeps
//! state, not files; this is the one place that maps between the two.

use crate::world::{Host, NetworkType, World};
use drctl_workflows::ports::StaticPod;
use std::collections::BTreeMap;

pub const MANIFESTS: &str = "/etc/kubernetes/manifests";
pub const ASIDE: &str = "/tmp";
pub const ETCD_DATA: &str = "/var/lib/etcd";
pub const ETCD_ASIDE: &str = "/tmp/etcd";
pub const KUBELET_PKI: &str = "/var/lib/kubelet/pki";
pub const KUBELET_CLIENT_PEM: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";
pub const KUBELET_SERVER_PEM: &str = "/var/lib/kubelet/pki/kubelet-server-current.pem";
pub const OVN_DB_DIR: &str = "/var/lib/ovn/etc";
pub const OVN_IC_DB_DIR: &str = "/var/lib/ovn-ic/etc";
/// The north- and southbound databases OVN keeps in its database directory.
pub const OVN_DB_FILES: [&str; 2] = ["ovnnb_db.db", "ovnsb_db.db"];
pub const FENCE_DIR: &str = "/var/lib/drctl/fences";
pub const MCD_CURRENT_CONFIG: &str = "/etc/machine-config-daemon/currentconfig";
pub const RELEASE_ANNOTATION: &str = "machineconfiguration.openshift.io/release-image-version";
pub const RECOVERY_KUBECONFIG: &str =
    "/etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs/localhost-recovery.kubeconfig";
pub const ETCD_SERVING_CA: &str = "/etc/kubernetes/static-pod-resources/etcd-certs/configmaps/etcd-serving-ca/ca-bundle.crt";
pub const ETCD_ALL_CERTS: &str = "/etc/kubernetes/static-pod-resources/etcd-certs/secrets/etcd-all-certs";
/// Tools OpenShift installs on control-plane hosts only.
pub const CONTROL_PLANE_TOOLS: [&str; 3] =
    ["/usr/local/bin/cluster-backup.sh", "/usr/local/bin/cluster-restore.sh", "/usr/local/bin/etcdctl"];

/// The recovery scripts of OpenShift 4.1–4.3 (OpenShift Container Platform 4.3 Backup and
/// restore, "Recovering from lost master hosts"): on control-plane hosts of those releases only.
pub const LEGACY_TOOLS: [&str; 3] =
    ["/usr/local/bin/etcd-snapshot-restore.sh", "/usr/local/bin/tokenize-signer.sh", "/usr/local/bin/etcd-member-recover.sh"];
/// What the 4.1–4.3 `etcd-member` pod's setup found for its host.
pub const RUN_ETCD_ENVIRONMENT: &str = "/run/etcd/environment";

/// Directories every RHCOS host has.
const BASE_DIRS: [&str; 10] = [
    "/tmp",
    "/dev",
    "/home/core",
    "/usr/local/bin",
    MANIFESTS,
    KUBELET_PKI,
    "/etc/machine-config-daemon",
    "/etc/mco",
    // The world keeps the fences, not their directory: it is there whenever they can be.
    FENCE_DIR,
    "/var/lib",
];

/// Readable by root only: what the kubelet, etcd and drctl keep to themselves.
const PRIVATE: [&str; 4] = ["/etc/kubernetes/static-pod-resources/", "/var/lib/kubelet/pki/", "/var/lib/etcd/", "/var/lib/drctl/"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// A path as given, made canonical: absolute, no repeated or trailing `/`, no `.` or `..`
/// (those are refused rather than resolved). `dir_only` is set when it ended with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub path: String,
    pub dir_only: bool,
}

pub fn canonical(p: &str) -> Option<Path> {
    if !p.starts_with('/') {
        return None;
    }
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    if parts.iter().any(|s| *s == "." || *s == "..") {
        return None;
    }
    Some(Path { path: format!("/{}", parts.join("/")), dir_only: p.len() > 1 && p.ends_with('/') })
}

pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

pub fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

pub fn is_private(path: &str) -> bool {
    PRIVATE.iter().any(|p| path.starts_with(p) || path == p.trim_end_matches('/'))
}

/// Every path that exists on `h`, files and directories (with all their ancestors).
pub fn tree(w: &World, h: &Host) -> BTreeMap<String, Kind> {
    let mut t = Tree(BTreeMap::new());
    BASE_DIRS.iter().for_each(|d| t.dir(d));
    t.file("/dev/null");
    t.file(MCD_CURRENT_CONFIG);
    if !h.worker {
        control_plane_files(w, &mut t);
    }
    if w.legacy_etcd && !h.worker {
        LEGACY_TOOLS.iter().for_each(|p| t.file(p));
    }
    if h.etcd_dns_name.is_some() {
        t.file(RUN_ETCD_ENVIRONMENT);
    }
    h.manifests.iter().for_each(|p| t.file(&manifest_path(*p, false)));
    h.moved_manifests.iter().for_each(|p| t.file(&manifest_path(*p, true)));
    if h.etcd_data.is_some() {
        t.dir(&format!("{ETCD_DATA}/member"));
    }
    if !h.etcd_data_aside.is_empty() {
        t.dir(&format!("{ETCD_ASIDE}/member"));
    }
    if h.kubelet_cert_gen.is_some() {
        t.file(KUBELET_CLIENT_PEM);
    }
    if h.kubelet_serving {
        t.file(KUBELET_SERVER_PEM);
    }
    if let Some(dir) = ovn_db_dir(w.network) {
        t.dir(dir);
        if h.ovn_db.is_some() {
            OVN_DB_FILES.iter().for_each(|f| t.file(&format!("{dir}/{f}")));
        }
    }
    h.markers.iter().for_each(|m| t.file(&format!("{FENCE_DIR}/{m}")));
    h.dirs.iter().for_each(|d| t.dir(d));
    h.files.keys().for_each(|f| t.file(f));
    t.0
}

fn control_plane_files(w: &World, t: &mut Tree) {
    CONTROL_PLANE_TOOLS.iter().for_each(|p| t.file(p));
    t.file(RECOVERY_KUBECONFIG);
    t.file(ETCD_SERVING_CA);
    for node in etcd_peer_nodes(w) {
        t.file(&format!("{ETCD_ALL_CERTS}/etcd-peer-{node}.crt"));
        t.file(&format!("{ETCD_ALL_CERTS}/etcd-peer-{node}.key"));
    }
}

/// The nodes the etcd operator made peer certificates for: every control-plane node.
fn etcd_peer_nodes(w: &World) -> Vec<String> {
    let hosts = w.hosts.values().filter(|h| !h.worker).map(|h| h.name.clone());
    let named = w.inventory_nodes.values().cloned();
    let api = w.api().nodes.values().filter(|n| n.control_plane).map(|n| n.name.clone());
    let mut all: Vec<String> = hosts.chain(named).chain(api).collect();
    all.sort();
    all.dedup();
    all
}

struct Tree(BTreeMap<String, Kind>);

impl Tree {
    fn dir(&mut self, p: &str) {
        self.ancestors(p);
        self.0.entry(p.to_string()).or_insert(Kind::Dir);
    }
    fn file(&mut self, p: &str) {
        self.ancestors(p);
        self.0.entry(p.to_string()).or_insert(Kind::File);
    }
    fn ancestors(&mut self, p: &str) {
        let mut at = parent(p);
        loop {
            self.0.insert(at.to_string(), Kind::Dir);
            if at == "/" {
                return;
            }
            at = parent(at);
        }
    }
}

pub fn ovn_db_dir(n: NetworkType) -> Option<&'static str> {
    match n {
        NetworkType::OvnCentral => Some(OVN_DB_DIR),
        NetworkType::OvnIc => Some(OVN_IC_DB_DIR),
        NetworkType::Sdn => None,
    }
}

pub fn manifest_path(p: StaticPod, aside: bool) -> String {
    format!("{}/{}", if aside { ASIDE } else { MANIFESTS }, p.manifest_file())
}

pub const PODS: [StaticPod; 5] =
    [StaticPod::Etcd, StaticPod::KubeApiServer, StaticPod::KubeControllerManager, StaticPod::KubeScheduler, StaticPod::Keepalived];

/// The static pod whose manifest is at `path` (in the manifests directory, or set aside in /tmp).
pub fn manifest_at(path: &str) -> Option<(StaticPod, bool)> {
    PODS.iter().find_map(|p| {
        (path == manifest_path(*p, false)).then_some((*p, false)).or_else(|| (path == manifest_path(*p, true)).then_some((*p, true)))
    })
}

/// The fence marker a path under the fence directory names.
pub fn marker_at(path: &str) -> Option<&str> {
    path.strip_prefix(FENCE_DIR).and_then(|r| r.strip_prefix('/')).filter(|m| !m.is_empty() && !m.contains('/'))
}

/// Where the host keeps state the world models other than as files: writing there with a
/// generic tool would change nothing the world knows, so the shell refuses it.
pub fn is_modelled(path: &str) -> bool {
    let under = |root: &str| path == root || path.starts_with(&format!("{root}/"));
    ["/etc", "/usr", "/dev", "/var/lib/etcd", "/var/lib/kubelet", "/var/lib/ovn", "/var/lib/ovn-ic", "/var/lib/drctl", ETCD_ASIDE]
        .iter()
        .any(|r| under(r))
        || manifest_at(path).is_some()
}

/// The pid `cat` reads from a `.started` marker. The world keeps the marker, not its content:
/// the pid is derived from the marker's name, and `kill -0` knows it while that restore runs.
pub fn marker_pid(marker: &str) -> u32 {
    // FNV-1a: stable across runs and platforms.
    let h = marker.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    2000 + h % 60000
}

/// What `cat` gives for an existing file of the host.
pub fn read(w: &World, h: &Host, path: &str) -> Vec<u8> {
    if let Some(f) = h.files.get(path) {
        return super::file_bytes(f);
    }
    if let Some(m) = marker_at(path) {
        return match m.strip_suffix(".started") {
            Some(_) => format!("{}\n", marker_pid(m)).into_bytes(),
            None => vec![],
        };
    }
    if let Some((p, _)) = manifest_at(path) {
        return format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {}\n  namespace: openshift-{}\n", p.container(), p.container())
            .into_bytes();
    }
    match path {
        MCD_CURRENT_CONFIG => machine_config(h).into_bytes(),
        KUBELET_CLIENT_PEM | KUBELET_SERVER_PEM => pem(&format!("CN=system:node:{}", h.name)).into_bytes(),
        "/dev/null" => vec![],
        p if CONTROL_PLANE_TOOLS.contains(&p) || LEGACY_TOOLS.contains(&p) => {
            format!("#!/usr/bin/env bash\n# {}\n", base_name(p)).into_bytes()
        }
        RUN_ETCD_ENVIRONMENT => {
            format!("ETCD_IPV4_ADDRESS={}\nETCD_DNS_NAME={}\n", h.ip, h.etcd_dns_name.as_deref().unwrap_or_default()).into_bytes()
        }
        p => format!("simulated {} of {} ({})\n", base_name(p), h.name, w.scenario).into_bytes(),
    }
}

/// The rendered MachineConfig the machine-config daemon keeps, with the release it came from.
fn machine_config(h: &Host) -> String {
    let role = if h.worker { "worker" } else { "master" };
    serde_json::json!({
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfig",
        "metadata": {
            "name": format!("rendered-{role}-0d1e2c3b4a"),
            "annotations": { RELEASE_ANNOTATION: h.release_version },
        },
        "spec": { "config": { "ignition": { "version": "3.4.0" } } },
    })
    .to_string()
}

fn pem(subject: &str) -> String {
    use sha2::{Digest, Sha256};
    let body = hex::encode(Sha256::digest(subject.as_bytes()));
    format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
}
