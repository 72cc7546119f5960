//! A real-adapter stack for driving the `drctl` binary: a mock Kubernetes API (kubeconfig with a
//! bearer token), a real sshd whose hosts are sandbox directories with stub tools, and a real
//! 3-member etcd that each host's `cluster-backup.sh` snapshots with the real etcdctl. Built from
//! the adapters' own harness (`adapters/tests/support`, included by each test crate as
//! `support`); a missing binary fails the test, it never skips.
#![allow(dead_code)]

use crate::support::etcd::{Cluster, ETCDCTL};
use crate::support::mockapi::MockApi;
use crate::support::sandbox::Sandbox;
use crate::support::sshd::{user_name, Sshd};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// (inventory name, node name) of the control-plane hosts.
pub const HOSTS: [(&str, &str); 3] = [("master-0", "ip-10-0-0-1"), ("master-1", "ip-10-0-0-2"), ("master-2", "ip-10-0-0-3")];
pub const CLUSTER_VERSION: &str = "4.15.3";
pub const CV_PATH: &str = "/apis/config.openshift.io/v1/clusterversions/version";
pub const CO_PATH: &str = "/apis/config.openshift.io/v1/clusteroperators";
pub const PODS_PATH: &str = "/api/v1/namespaces/openshift-etcd/pods";
pub const NODES_PATH: &str = "/api/v1/nodes";

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_drctl"))
}

/// Run drctl with a clean environment for targets: no $KUBECONFIG, no $DRCTL_STORE, and a HOME
/// without a kubeconfig, so only what the test passes is used.
pub fn drctl(store: &Path, args: &[&str]) -> Output {
    drctl_env(store, args, &[])
}

pub fn drctl_env(store: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let home = std::env::temp_dir().join(format!("drctl-test-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let mut c = Command::new(bin());
    c.arg("--store").arg(store).args(args).env_remove("DRCTL_STORE").env_remove("KUBECONFIG").env("HOME", &home).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("drctl runs")
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", text(o)))
}

/// `GET /version` as an API server answers it.
pub fn version_info() -> Value {
    json!({"major": "1", "minor": "28", "gitVersion": "v1.28.6+f1618d5", "gitCommit": "f1618d5", "gitTreeState": "clean",
           "buildDate": "2024-02-20T00:00:00Z", "goVersion": "go1.20.12", "compiler": "gc", "platform": "linux/amd64"})
}

/// `clusterversion/version`, installed long ago (older than the first certificate rotation).
pub fn cluster_version() -> Value {
    json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterVersion",
        "metadata": {"name": "version", "creationTimestamp": "2024-01-02T03:04:05Z"},
        "spec": {"channel": "stable-4.15", "clusterID": "9a0c2f1e-0000-4000-8000-000000000000"},
        "status": {"desired": {"version": CLUSTER_VERSION, "image": "quay.io/openshift-release-dev/ocp-release@sha256:0000"},
                   "history": [{"state": "Completed", "version": CLUSTER_VERSION, "startedTime": "2024-01-02T03:04:05Z", "completionTime": "2024-01-02T03:44:05Z", "image": "x", "verified": false}]}})
}

pub fn cluster_operators(progressing: &[&str]) -> Value {
    let co = |name: &str| {
        let p = if progressing.contains(&name) { "True" } else { "False" };
        json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterOperator", "metadata": {"name": name}, "status": {"conditions": [
            {"type": "Available", "status": "True"}, {"type": "Progressing", "status": p}, {"type": "Degraded", "status": "False"}]}})
    };
    let items: Vec<Value> = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "machine-config"].map(co).into();
    json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterOperatorList", "metadata": {}, "items": items})
}

/// `oc get pods -n openshift-etcd -l k8s-app=etcd`: one Running, Ready etcd pod per host's node.
pub fn etcd_pods() -> Value {
    let pod = |node: &str| {
        json!({
            "metadata": {"name": format!("etcd-{node}"), "namespace": "openshift-etcd", "labels": {"app": "etcd", "k8s-app": "etcd", "etcd": "true"}},
            "spec": {"nodeName": node, "containers": [{"name": "etcd"}, {"name": "etcdctl"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "etcd", "ready": true, "restartCount": 0, "image": "quay.io/openshift/etcd", "imageID": "", "state": {"running": {"startedAt": "2024-01-02T03:10:00Z"}}}]}
        })
    };
    let items: Vec<Value> = HOSTS.map(|(_, n)| pod(n)).into();
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
}

/// The control-plane nodes (the last one NotReady, tainted unreachable) and a worker.
pub fn nodes() -> Value {
    let node = |name: &str, ip: &str, role: &str, ready: bool| {
        let mut taints = vec![];
        if role == "master" {
            taints.push(json!({"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"}));
        }
        if !ready {
            taints.push(json!({"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": "2024-03-01T10:00:05Z"}));
        }
        json!({
            "metadata": {"name": name, "labels": {format!("node-role.kubernetes.io/{role}"): "", "kubernetes.io/hostname": name}},
            "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "Unknown" }}],
                       "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}
        })
    };
    json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": [
        node("ip-10-0-0-1", "10.0.0.1", "master", true),
        node("ip-10-0-0-2", "10.0.0.2", "master", true),
        node("ip-10-0-0-3", "10.0.0.3", "master", false),
        node("ip-10-0-0-9", "10.0.0.9", "worker", true),
    ]})
}

/// Put `n` keys into etcd through `endpoint`.
pub fn put_keys(endpoint: &str, n: usize) {
    for i in 0..n {
        let out = Command::new(ETCDCTL)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(["put", &format!("/kubernetes.io/configmaps/openshift-config/cm-{i}"), "value"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// `etcdctl snapshot status -w json` of a local file, by the real etcdctl.
pub fn snapshot_status(path: &Path) -> Value {
    let out = Command::new(ETCDCTL).env("ETCDCTL_API", "3").args(["snapshot", "status", "-w", "json"]).arg(path).output().unwrap();
    assert!(out.status.success(), "etcdctl snapshot status {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The whole stack.
pub struct RealCluster {
    pub etcd: Cluster,
    pub sshd: Sshd,
    pub mock: MockApi,
    pub roots: tempfile::TempDir,
    pub sandboxes: Vec<Sandbox>,
    pub backup_root: PathBuf,
    pub kubeconfig: PathBuf,
}

impl RealCluster {
    pub fn start() -> RealCluster {
        let etcd = Cluster::start(3);
        let names: Vec<&str> = HOSTS.iter().map(|(n, _)| *n).collect();
        let sshd = Sshd::start(&names);
        let mock = MockApi::start();
        let kubeconfig = mock.kubeconfig();
        let roots = tempfile::Builder::new().prefix("drctl-hosts").tempdir().unwrap();
        let sandboxes: Vec<Sandbox> = HOSTS
            .iter()
            .enumerate()
            .map(|(i, (name, node))| {
                let sb = Sandbox::create(&roots.path().join("hosts").join(name), node);
                // Each host's cluster-backup.sh snapshots its own etcd member.
                std::fs::write(sb.path("/state/etcd-endpoint"), etcd.members[i].client_url()).unwrap();
                sb
            })
            .collect();
        let backup_root = roots.path().join("backups");
        RealCluster { etcd, sshd, mock, roots, sandboxes, backup_root, kubeconfig }
    }

    pub fn hosts_spec(&self) -> String {
        // The ssh config's Host aliases are the addresses.
        HOSTS.iter().map(|(n, node)| format!("{n}={n}@{node}")).collect::<Vec<_>>().join(",")
    }

    /// The real-target options of `drctl run`.
    pub fn run_args(&self) -> Vec<String> {
        let mut v = self.access_args();
        v.extend(["--backup-root".into(), self.backup_root.display().to_string()]);
        v
    }

    /// How to reach the cluster (API and SSH), as `run` and `inspect` take it.
    pub fn access_args(&self) -> Vec<String> {
        let p = |p: &Path| p.display().to_string();
        vec![
            "--kubeconfig".into(),
            p(&self.kubeconfig),
            "--context".into(),
            "admin".into(),
            "--ssh-user".into(),
            user_name(),
            "--ssh-config".into(),
            p(&self.sshd.client_config),
            "--ssh-identity".into(),
            p(&self.sshd.user_key),
            "--known-hosts".into(),
            p(&self.sshd.known_hosts),
            "--hosts".into(),
            self.hosts_spec(),
            "--ssh-host-root".into(),
            p(&self.roots.path().join("hosts")),
        ]
    }
}

pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
