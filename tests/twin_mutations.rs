//! The twin catches wrong renderers and parsers: each test here puts back one plausible mistake
//! in what the real adapters send or read (a `crictl` flag, the restore script's path, the
//! directory manifests are moved to, the kubelet certificates' pattern, the CSR's node, the
//! `crictl` JSON field) and the twin run of the restore must no longer end as its direct-port
//! run. A simulator that took any command or answer would let all of these pass.

mod twin_common;

use drctl_adapters::ssh::{interpret, render, ExecOutput};
use drctl_adapters::{KubeApi, SshHosts};
use drctl_sim::chaos;
use drctl_workflows::ports::*;
use twin_common::twin_differences_with;

/// The ssh adapter with one operation's command line edited before it is sent, or its output
/// read by another parser.
struct MutatedHosts {
    inner: SshHosts,
    applies: fn(&HostOp) -> bool,
    edit: fn(String) -> String,
    parse: fn(&HostOp, &ExecOutput) -> PortResult<HostOutput>,
}

impl Hosts for MutatedHosts {
    fn control_plane_hosts(&self) -> PortResult<Vec<HostRef>> {
        self.inner.control_plane_hosts()
    }
    fn worker_hosts(&self) -> PortResult<Vec<HostRef>> {
        self.inner.worker_hosts()
    }
    fn connect(&self, host: &str) -> PortResult<()> {
        self.inner.connect(host)
    }
    fn run(&self, host: &str, op: &HostOp) -> PortResult<HostOutput> {
        if !(self.applies)(op) {
            return self.inner.run(host, op);
        }
        let layout = self.inner.host(host)?.layout.clone();
        let cmd = (self.edit)(render(op, &layout)?);
        let out = self.inner.exec(host, &cmd, drctl_adapters::ssh::is_idempotent(op), drctl_adapters::ssh::op_timeout(op))?;
        (self.parse)(op, &out)
    }
    fn copy_backup_to_host(&self, backup: &str, host: &str, dest_dir: &str) -> PortResult<()> {
        self.inner.copy_backup_to_host(backup, host, dest_dir)
    }
    fn copy_backup_from_host(&self, host: &str, files: &[String], backup: &str, info: &BackupInfo) -> PortResult<()> {
        self.inner.copy_backup_from_host(host, files, backup, info)
    }
}

/// The restore of `scenario` through the twin with `hosts` for the ssh adapter and `api` for
/// the kube adapter; the differences from its direct-port run.
fn restore_differences(
    scenario: &str,
    hosts: impl FnOnce(SshHosts) -> Box<dyn Hosts>,
    api: impl FnOnce(KubeApi) -> Box<dyn ClusterApi>,
) -> Vec<String> {
    let row = chaos::row("restore-cluster-state").unwrap();
    let seed = (0..10_000).find(|s| row.scenario_for(*s).scenario == scenario).unwrap();
    let (_, diffs) = twin_differences_with("restore-cluster-state", seed, |twin, clock| {
        let rt = drctl_adapters::Blocking::dedicated("twin-mutation").unwrap();
        let kube = twin.kube_api(&rt, clock).unwrap();
        Ports {
            etcd: Box::new(drctl_adapters::KubeEtcdPods(kube.clone())),
            api: api(kube),
            hosts: hosts(twin.ssh_hosts(&rt).unwrap()),
            backups: Box::new(drctl_adapters::DirBackupStore::new(&twin.backup_root)),
            management: None,
            object_store: None,
        }
    });
    diffs
}

fn host_mutation(scenario: &str, applies: fn(&HostOp) -> bool, edit: fn(String) -> String) -> Vec<String> {
    restore_differences(scenario, |inner| Box::new(MutatedHosts { inner, applies, edit, parse: interpret }), |api| Box::new(api))
}

fn caught(what: &str, diffs: Vec<String>) {
    assert!(!diffs.is_empty(), "{what}: the twin run still ended as the direct run — the mutation went unnoticed");
    eprintln!("{what}: caught: {}", diffs[0].chars().take(300).collect::<String>());
}

#[test]
fn the_unmutated_adapters_match() {
    let d = host_mutation("quorum-loss-reachable", |_| false, |c| c);
    assert!(d.is_empty(), "the harness itself differs: {d:?}");
}

#[test]
fn a_wrong_crictl_flag_is_caught() {
    caught(
        "crictl ps -o yaml",
        host_mutation(
            "quorum-loss",
            |op| matches!(op, HostOp::RunningContainers { .. }),
            |c| c.replace("'-o' 'json'", "-o yaml").replace("-o json", "-o yaml"),
        ),
    );
}

#[test]
fn a_wrong_restore_script_path_is_caught() {
    caught(
        "/usr/bin/cluster-restore.sh",
        host_mutation(
            "quorum-loss",
            |op| matches!(op, HostOp::RunRestore { .. }),
            |c| c.replace("/usr/local/bin/cluster-restore.sh", "/usr/bin/cluster-restore.sh"),
        ),
    );
}

#[test]
fn manifests_moved_to_the_wrong_directory_are_caught() {
    caught(
        "mv -v …/kube-apiserver-pod.yaml /var/tmp",
        host_mutation("quorum-loss-reachable", |op| matches!(op, HostOp::MoveManifestOut(_)), |c| c.replace(" /tmp &&", " /var/tmp &&")),
    );
}

#[test]
fn a_wrong_kubelet_certificate_pattern_is_caught() {
    caught(
        "find /var/lib/kubelet/pki -name '*.crt' -delete",
        host_mutation("quorum-loss", |op| matches!(op, HostOp::RemoveKubeletPki), |c| c.replace("'*.pem'", "'*.crt'")),
    );
}

/// crictl's JSON names a container under `metadata.name`; a parser reading a top-level `name`
/// sees no container at all.
fn crictl_top_level_name(op: &HostOp, out: &ExecOutput) -> PortResult<HostOutput> {
    drctl_adapters::ssh::classify_exit("crictl ps", out)?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| PortError::Permanent(e.to_string()))?;
    let names = v["containers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str().map(str::to_string)).collect();
    let _ = op;
    Ok(HostOutput::Names(names))
}

#[test]
fn a_crictl_parser_reading_the_wrong_field_is_caught() {
    caught(
        "crictl JSON read at .containers[].name",
        restore_differences(
            "quorum-loss",
            |inner| {
                Box::new(MutatedHosts {
                    inner,
                    applies: |op| matches!(op, HostOp::RunningContainers { .. }),
                    edit: |c| c,
                    parse: crictl_top_level_name,
                })
            },
            |api| Box::new(api),
        ),
    );
}

/// The kube adapter with the CSR's node derived from its requestor (`spec.username`) — the
/// mistake that once let a restore pass every simulated test and never approve a
/// node-bootstrapper CSR on a real cluster (their requestor is the bootstrapper account).
struct RequestorNamesTheNode(KubeApi);

impl ClusterApi for RequestorNamesTheNode {
    fn list_csrs(&self) -> PortResult<Vec<CsrInfo>> {
        let mut v = self.0.list_csrs()?;
        for c in &mut v {
            c.node = c.requestor.strip_prefix("system:node:").map(str::to_string);
        }
        Ok(v)
    }
    fn cluster_version(&self) -> PortResult<String> {
        self.0.cluster_version()
    }
    fn cluster_age_secs(&self) -> PortResult<u64> {
        self.0.cluster_age_secs()
    }
    fn cluster_operators(&self) -> PortResult<Vec<ClusterOperatorInfo>> {
        self.0.cluster_operators()
    }
    fn list_nodes(&self) -> PortResult<Vec<NodeInfo>> {
        self.0.list_nodes()
    }
    fn delete_node(&self, name: &str) -> PortResult<()> {
        self.0.delete_node(name)
    }
    fn approve_csr(&self, name: &str) -> PortResult<()> {
        self.0.approve_csr(name)
    }
    fn list_pods(&self, namespace: &str, selector: &str) -> PortResult<Vec<PodInfo>> {
        self.0.list_pods(namespace, selector)
    }
    fn delete_pod(&self, namespace: &str, name: &str) -> PortResult<()> {
        self.0.delete_pod(namespace, name)
    }
    fn ovn_master_references(&self, ips: &[String]) -> PortResult<Vec<String>> {
        self.0.ovn_master_references(ips)
    }
    fn list_machines(&self) -> PortResult<Vec<MachineInfo>> {
        self.0.list_machines()
    }
    fn etcd_members_available(&self) -> PortResult<Option<drctl_workflows::ports::OperatorCondition>> {
        ClusterApi::etcd_members_available(&self.0)
    }
    fn list_secrets(&self, namespace: &str) -> PortResult<Vec<String>> {
        ClusterApi::list_secrets(&self.0, namespace)
    }
    fn delete_secret(&self, namespace: &str, name: &str) -> PortResult<()> {
        ClusterApi::delete_secret(&self.0, namespace, name)
    }
    fn list_bare_metal_hosts(&self) -> PortResult<Vec<BareMetalHostInfo>> {
        self.0.list_bare_metal_hosts()
    }
    fn delete_bare_metal_host(&self, name: &str) -> PortResult<()> {
        ClusterApi::delete_bare_metal_host(&self.0, name)
    }
    fn create_bare_metal_host(&self, host: &NewBareMetalHost) -> PortResult<()> {
        self.0.create_bare_metal_host(host)
    }
    fn apply_bmc_secret(&self, name: &str, credentials: &drctl_workflows::bmc::BmcCredentials) -> PortResult<()> {
        self.0.apply_bmc_secret(name, credentials)
    }
    fn remove_machine_finalizers(&self, name: &str) -> PortResult<()> {
        self.0.remove_machine_finalizers(name)
    }
    fn kubelet_signer_expiry(&self) -> PortResult<Option<drctl_runtime::clock::Timestamp>> {
        self.0.kubelet_signer_expiry()
    }
    fn fail_closed_webhooks(&self) -> PortResult<Vec<WebhookInfo>> {
        self.0.fail_closed_webhooks()
    }
    fn credential(&self) -> Credential {
        self.0.credential()
    }
    fn network_layout(&self) -> PortResult<NetworkLayout> {
        self.0.network_layout()
    }
    fn machine_layout(&self) -> PortResult<MachineLayout> {
        self.0.machine_layout()
    }
    fn get_machine(&self, name: &str) -> PortResult<Option<MachineInfo>> {
        self.0.get_machine(name)
    }
    fn delete_machine(&self, name: &str) -> PortResult<()> {
        self.0.delete_machine(name)
    }
    fn create_machine(&self, manifest: &serde_json::Value) -> PortResult<()> {
        self.0.create_machine(manifest)
    }
    fn set_quorum_guard(&self, enabled: bool) -> PortResult<()> {
        self.0.set_quorum_guard(enabled)
    }
    fn quorum_guard_enabled(&self) -> PortResult<bool> {
        self.0.quorum_guard_enabled()
    }
    fn force_redeployment(&self, operator: Operator, reason: &str) -> PortResult<()> {
        self.0.force_redeployment(operator, reason)
    }
    fn installer_progress(&self, operator: Operator) -> PortResult<InstallerProgress> {
        self.0.installer_progress(operator)
    }
}

#[test]
fn a_csr_node_taken_from_the_requestor_is_caught() {
    caught("CSR node from spec.username", restore_differences("quorum-loss", |h| Box::new(h), |api| Box::new(RequestorNamesTheNode(api))));
}
