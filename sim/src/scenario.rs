//! Named starting worlds. Each is built from the seed alone.

use crate::world::*;
use drctl_runtime::clock::Timestamp;
use drctl_runtime::rng::{mix, DetRng};
use drctl_workflows::catalog::Capability;
use drctl_workflows::ports::{BackupInfo, Operator, StaticPod};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// 2026-01-05T09:00:00Z: virtual time starts here for every scenario.
pub const EPOCH: Timestamp = Timestamp(1_767_603_600_000);
pub const CLUSTER_VERSION: &str = "4.15.3";
pub const MACHINE_PREFIX: &str = "ocp-7x2lq-master";

pub struct ScenarioInfo {
    pub name: &'static str,
    pub topology: Topology,
    pub summary: &'static str,
}

/// The shape of a simulated world: which clusters it holds and so what a run can talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// One standalone cluster: its API, its control-plane hosts over SSH, their etcd, and a
    /// backup location outside it.
    Standalone,
    /// A management cluster (itself a standalone cluster) holding hosted control planes.
    Hosted,
}

impl Topology {
    pub fn capabilities(self) -> &'static [Capability] {
        use Capability::*;
        match self {
            Topology::Standalone => &[ClusterApi, Hosts, Etcd, BackupLocation],
            Topology::Hosted => &[ClusterApi, Hosts, Etcd, BackupLocation, ManagementCluster, ObjectStore],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Topology::Standalone => "standalone",
            Topology::Hosted => "hosted",
        }
    }
}

/// The capabilities a world of `scenario` provides (none for an unknown scenario).
pub fn capabilities(scenario: &str) -> &'static [Capability] {
    SCENARIOS.iter().find(|s| s.name == scenario).map_or(&[], |s| s.topology.capabilities())
}

pub const SCENARIOS: &[ScenarioInfo] = &[
    ScenarioInfo {
        name: "healthy",
        topology: Topology::Standalone,
        summary: "3 control-plane hosts, 3 etcd members, API available, all operators at their latest revision",
    },
    ScenarioInfo {
        name: "quorum-loss",
        topology: Topology::Standalone,
        summary: "2 of 3 control-plane machines stopped: etcd has lost quorum, the API is down; a same-z-stream backup exists",
    },
    ScenarioInfo {
        name: "quorum-loss-reachable",
        topology: Topology::Standalone,
        summary: "one control-plane machine stopped and another host's etcd data lost (host still reachable, with keepalived VIPs, a fail-closed admission webhook); a backup exists",
    },
    ScenarioInfo {
        name: "api-unreachable",
        topology: Topology::Standalone,
        summary: "a healthy cluster whose API name does not resolve from drctl's machine and whose master-1 and master-2 drctl cannot reach over SSH (a broken VPN): etcd has quorum, a restore would split it",
    },
    ScenarioInfo {
        name: "quorum-loss-partitioned",
        topology: Topology::Standalone,
        summary: "master-1's machine stopped, master-0's etcd data lost, master-2 up with etcd running but unreachable over SSH from drctl: quorum is lost, yet master-2's member would serve again beside a restore",
    },
    ScenarioInfo {
        name: "quorum-loss-cpms",
        topology: Topology::Standalone,
        summary: "as quorum-loss, on a cloud cluster whose control plane machine set is Active: it replaces every deleted control-plane machine by itself",
    },
    ScenarioInfo {
        name: "quorum-loss-baremetal",
        topology: Topology::Standalone,
        summary: "bare metal installer-provisioned, keepalived VIPs 10.0.0.5/10.0.0.7, hosts reached over a management network (192.168.111.0/24, not their InternalIPs): the etcd data of master-1 and master-2 lost (hosts reachable); deleting a control-plane machine would deprovision its host",
    },
    ScenarioInfo {
        name: "quorum-loss-upi",
        topology: Topology::Standalone,
        summary: "user-provisioned (no control-plane Machine objects): the etcd data of master-1 and master-2 lost (hosts reachable)",
    },
    ScenarioInfo {
        name: "quorum-loss-ovn-ic",
        topology: Topology::Standalone,
        summary: "as quorum-loss, with OVN-Kubernetes interconnect: no ovnkube-master, a local OVN database on every node",
    },
    ScenarioInfo {
        name: "quorum-loss-sdn",
        topology: Topology::Standalone,
        summary: "as quorum-loss, on OpenShift SDN: none of the runbook's OVN-Kubernetes steps apply",
    },
    ScenarioInfo {
        name: "quorum-loss-misnamed",
        topology: Topology::Standalone,
        summary: "as quorum-loss-reachable, but the inventory names master-1's node master-1.ocp.example.com (its kubelet is master-1)",
    },
    ScenarioInfo {
        name: "quorum-loss-token-kubeconfig",
        topology: Topology::Standalone,
        summary: "as quorum-loss, but drctl's kubeconfig holds an oc-login token issued after the backup: the restored cluster will not know it",
    },
    ScenarioInfo {
        name: "member-machine-stopped",
        topology: Topology::Standalone,
        summary: "one control-plane machine's instance stopped (which one follows the seed): its etcd member is down, its node unreachable; etcd keeps quorum with the other two",
    },
    ScenarioInfo {
        name: "member-node-notready",
        topology: Topology::Standalone,
        summary: "one control-plane machine running but its kubelet stopped (which one follows the seed): the node is unreachable, its etcd member down; etcd keeps quorum",
    },
    ScenarioInfo {
        name: "member-crashloop",
        topology: Topology::Standalone,
        summary: "one control-plane node Ready but its etcd pod crashlooping on a corrupt data directory (which one follows the seed); etcd keeps quorum",
    },
    ScenarioInfo {
        name: "baremetal-member-lost",
        topology: Topology::Standalone,
        summary: "bare metal installer-provisioned with BareMetalHosts (keepalived VIPs): one control-plane server dead and powered off (which one follows the seed), its member down, etcd keeps quorum; a spare server is racked (drctl sim status shows its BMC and MAC; BMC user admin, password in the README)",
    },
    ScenarioInfo {
        name: "certs-expired",
        topology: Topology::Standalone,
        summary: "the cluster was offline past its kubelet certificates' expiry: every node NotReady, kubelets filing node-bootstrapper CSRs, plus one CSR from worker-rogue-9, a machine that is not the cluster's",
    },
    ScenarioInfo {
        name: "shut-down",
        topology: Topology::Standalone,
        summary: "shut down gracefully two days ago and just powered on again (machines boot within minutes): the workers' kubelet certificates expired meanwhile and they ask for new ones",
    },
    ScenarioInfo {
        name: "legacy-lost-masters",
        topology: Topology::Standalone,
        summary: "OpenShift 4.3 (etcd-member static pods, no etcd operator, user-provisioned): master-1 and master-2 lost for good, etcd without quorum, the API down; master-0 remains, a backup is kept; the replacement masters master-3 and master-4 boot about 40 min in",
    },
    ScenarioInfo {
        name: "hosted-healthy",
        topology: Topology::Hosted,
        summary: "a healthy management cluster running the HyperShift operator and HostedCluster clusters/example with 2 NodePools of 2 workers each, reconciling; on some seeds a PodDisruptionBudget allows no eviction from one worker (its drain ends only at the drain timeout)",
    },
    ScenarioInfo {
        name: "hosted-etcd-member-failed",
        topology: Topology::Hosted,
        summary: "as hosted-healthy, but one etcd member of clusters/example (etcd-0, -1 or -2 by seed) crash-loops on a corrupt data dir (PVC data-etcd-N); the other two keep the quorum",
    },
    ScenarioInfo {
        name: "hosted-data-plane-at-zero",
        topology: Topology::Hosted,
        summary: "as hosted-healthy, but an earlier drctl run scaled both NodePools of clusters/example to zero (each recorded 2 replicas in its annotation): no worker runs",
    },
    ScenarioInfo {
        name: "hosted-autoscaling",
        topology: Topology::Hosted,
        summary: "as hosted-healthy, but NodePool example-us-east-1b autoscales (min 1, max 4) instead of having replicas",
    },
    ScenarioInfo {
        name: "hosted-paused",
        topology: Topology::Hosted,
        summary: "as hosted-healthy, but clusters/example and its NodePools were paused by an earlier drctl run (to practise --unpause)",
    },
    ScenarioInfo {
        name: "hosted-paused-by-other",
        topology: Topology::Hosted,
        summary: "as hosted-healthy, but clusters/example was paused by an OADP backup that never finished (not drctl's pause to clear)",
    },
];

pub fn build(name: &str, seed: u64) -> Result<World, String> {
    match name {
        "healthy" => Ok(healthy(seed)),
        "quorum-loss" => Ok(quorum_loss(seed)),
        "quorum-loss-reachable" => Ok(quorum_loss_reachable(seed)),
        "api-unreachable" => Ok(api_unreachable(seed)),
        "quorum-loss-cpms" => Ok(quorum_loss_cpms(seed)),
        "quorum-loss-ovn-ic" => Ok(quorum_loss_on_network(seed, "quorum-loss-ovn-ic", NetworkType::OvnIc)),
        "quorum-loss-sdn" => Ok(quorum_loss_on_network(seed, "quorum-loss-sdn", NetworkType::Sdn)),
        "quorum-loss-misnamed" => Ok(quorum_loss_misnamed(seed)),
        "quorum-loss-token-kubeconfig" => {
            let mut w = quorum_loss(seed);
            w.scenario = "quorum-loss-token-kubeconfig".into();
            w.drctl_view.token_kubeconfig = true;
            Ok(w)
        }
        "quorum-loss-baremetal" => Ok(quorum_loss_data_lost(seed, "quorum-loss-baremetal", Platform::BareMetalIpi)),
        "quorum-loss-upi" => Ok(quorum_loss_data_lost(seed, "quorum-loss-upi", Platform::Upi)),
        "quorum-loss-partitioned" => Ok(quorum_loss_partitioned(seed)),
        "member-machine-stopped" => Ok(member_down(seed, "member-machine-stopped", |h| h.powered = false)),
        "member-node-notready" => Ok(member_down(seed, "member-node-notready", |h| h.kubelet_running = false)),
        "member-crashloop" => Ok(member_down(seed, "member-crashloop", |h| h.etcd_data_corrupt = true)),
        "baremetal-member-lost" => Ok(baremetal_member_lost(seed)),
        "certs-expired" => Ok(certs_expired(seed)),
        "shut-down" => Ok(shut_down(seed)),
        "legacy-lost-masters" => Ok(crate::legacy::legacy_lost_masters(seed)),
        "hosted-healthy" => Ok(hosted_healthy(seed)),
        "hosted-autoscaling" => Ok(hosted_autoscaling(seed)),
        "hosted-data-plane-at-zero" => Ok(hosted_data_plane_at_zero(seed)),
        "hosted-etcd-member-failed" => Ok(hosted_etcd_member_failed(seed)),
        "hosted-paused" => Ok(hosted_paused(seed, "hosted-paused", DRCTL_PAUSED_BY, true)),
        "hosted-paused-by-other" => Ok(hosted_paused(seed, "hosted-paused-by-other", OADP_PAUSED_BY, false)),
        other => {
            Err(format!("unknown scenario '{other}'; known scenarios: {}", SCENARIOS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")))
        }
    }
}

pub fn healthy(seed: u64) -> World {
    let mut rng = DetRng::derive(seed, b"world");
    let cluster_id = rng.next_u64() | 1;
    let mut members = BTreeMap::new();
    let mut hosts = BTreeMap::new();
    let mut nodes = BTreeMap::new();
    let mut machines = BTreeMap::new();
    let mut ovn_pods = BTreeMap::new();
    let mut ips = BTreeSet::new();
    let revisions: [(Operator, u64); 4] =
        [(Operator::Etcd, 7), (Operator::KubeApiServer, 9), (Operator::KubeControllerManager, 7), (Operator::KubeScheduler, 6)];
    for i in 0..3u32 {
        let name = format!("master-{i}");
        let ip = format!("10.0.0.{}", 10 + i);
        let member_id = rng.next_u64() | 1;
        members.insert(member_id, name.clone());
        let machine = format!("{MACHINE_PREFIX}-{i}");
        hosts.insert(
            name.clone(),
            Host {
                manifests: [StaticPod::Etcd, StaticPod::KubeApiServer, StaticPod::KubeControllerManager, StaticPod::KubeScheduler].into(),
                containers: [
                    (StaticPod::Etcd, Container::Running),
                    (StaticPod::KubeApiServer, Container::Running),
                    (StaticPod::KubeControllerManager, Container::Running),
                    (StaticPod::KubeScheduler, Container::Running),
                ]
                .into(),
                etcd_data: Some(DataDir { cluster_id, member_id }),
                ovn_db: Some(cluster_id),
                ..Host::booted(&name, &ip, &machine, 1, CLUSTER_VERSION)
            },
        );
        nodes.insert(name.clone(), NodeObj { name: name.clone(), internal_ip: ip.clone(), control_plane: true });
        machines.insert(
            machine.clone(),
            MachineObj {
                name: machine.clone(),
                phase: "Running".into(),
                node: Some(name.clone()),
                control_plane: true,
                provider_id: Some(format!("sim:///us-east-1{}/i-0{:015x}", ['a', 'b', 'c'][i as usize], rng.next_u64() >> 4)),
                instance_type: "m6i.xlarge".into(),
                zone: format!("us-east-1{}", ['a', 'b', 'c'][i as usize]),
                uid: format!("{:032x}", (rng.next_u64() as u128) << 64 | rng.next_u64() as u128),
                generation: 2,
                resource_version: 13_000 + i as u64,
                annotations: [("machine.openshift.io/instance-state".to_string(), "running".to_string())].into(),
                phase_until: None,
            },
        );
        for role in [OvnRole::Master, OvnRole::Node] {
            ovn_pods.insert(
                ovn_pod_name(role, &name),
                OvnPod { node: name.clone(), role, phase: "Running".into(), started_at: EPOCH, start_at: None },
            );
        }
        ips.insert(ip);
    }
    // Two workers: kubelets whose certificates a restore can invalidate like the masters'.
    for i in 0..WORKERS {
        let name = format!("worker-{i}");
        let ip = format!("10.0.1.{}", 10 + i);
        let machine = format!("ocp-7x2lq-worker-us-east-1a-{i}");
        hosts.insert(name.clone(), worker_host(&name, &ip, &machine));
        nodes.insert(name.clone(), NodeObj { name: name.clone(), internal_ip: ip, control_plane: false });
        // Its machine, from the workers' machine set (deterministic: the seed's draws are the
        // control plane's).
        let zone = "us-east-1a".to_string();
        machines.insert(
            machine.clone(),
            MachineObj {
                phase: "Running".into(),
                node: Some(name.clone()),
                control_plane: false,
                provider_id: Some(format!("sim:///{zone}/i-0worker{i:09}")),
                instance_type: "m6i.large".into(),
                zone,
                uid: format!("{:032x}", 0xa0 + i),
                generation: 1,
                resource_version: 14_000 + u64::from(i),
                annotations: [("machine.openshift.io/instance-state".to_string(), "running".to_string())].into(),
                phase_until: None,
                name: machine,
            },
        );
    }
    let operators = revisions
        .iter()
        .map(|(op, rev)| {
            let control_plane: Vec<&String> = nodes.values().filter(|n| n.control_plane).map(|n| &n.name).collect();
            let node_revisions = control_plane.iter().map(|n| ((*n).clone(), *rev)).collect();
            (
                *op,
                OperatorObj {
                    force_reason: None,
                    observed_reason: None,
                    latest_revision: *rev,
                    revision_allows_non_ha: false,
                    node_revisions,
                    next_install_at: None,
                    condition: Some(("AllNodesAtLatestRevision".into(), format!("{} nodes are at revision {rev}", control_plane.len()))),
                    condition_at: None,
                },
            )
        })
        .collect();
    let data = ApiData {
        revision: 31_407,
        cluster_version: CLUSTER_VERSION.into(),
        signer_generation: 1,
        nodes,
        machines,
        csrs: BTreeMap::new(),
        operators,
        quorum_guard: true,
        next_csr: 0,
        taken_at: None,
        fail_closed_webhooks: vec![],
        etcd_secrets: (0..3).flat_map(|i| etcd_node_secrets(&format!("master-{i}"))).collect(),
        bare_metal_hosts: BTreeMap::new(),
        bmc_secrets: BTreeMap::new(),
        etcd_signer: None,
    };
    World {
        scenario: "healthy".into(),
        seed,
        now: EPOCH,
        rng,
        installed_at: Timestamp(EPOCH.0 - 40 * 24 * HOUR),
        hosts,
        etcd: [(cluster_id, EtcdCluster { members, data })].into(),
        current_cluster: cluster_id,
        ovn_pods,
        ovn_master_ips: ips,
        cno_sync_at: None,
        ovn_reset_at: EPOCH,
        backups: BTreeMap::new(),
        faults: Faults::default(),
        restored_from_revision: None,
        next_ip: 20,
        log: vec![],
        effects: vec![],
        vips: vec![],
        vip_takeover_at: BTreeMap::new(),
        secrets: vec![encryption_key(seed)],
        fault_rng: None,
        hosted: None,
        object_store: None,
        drctl_view: Default::default(),
        api_up_since: Some(EPOCH),
        platform: Platform::CloudIpi,
        network: NetworkType::OvnCentral,
        inventory_nodes: BTreeMap::new(),
        inventory_addresses: BTreeMap::new(),
        servers: BTreeMap::new(),
        legacy_etcd: false,
        track: Default::default(),
    }
}

/// The control-plane host whose etcd member a `member-*` scenario of `seed` breaks.
pub fn member_victim(seed: u64) -> String {
    format!("master-{}", mix(seed, b"member-victim") % 3)
}

/// A healthy cluster, then one control-plane host broken by `breaks` (its etcd member goes
/// down, the other two keep quorum), settled for a few minutes so the API and the operators
/// show it.
fn member_down(seed: u64, name: &str, breaks: fn(&mut Host)) -> World {
    let mut w = healthy(seed);
    w.scenario = name.into();
    let victim = member_victim(seed);
    breaks(w.hosts.get_mut(&victim).expect("victim host"));
    w.touch();
    w.note(format!("{name}: {victim} broken"));
    w.advance(5 * MINUTE);
    debug_assert!(w.api_available() && w.has_quorum() && w.started_members() == 2, "{name}: one member down, quorum kept");
    w
}

/// The BMC user of every simulated bare metal server.
pub const SIM_BMC_USERNAME: &str = "admin";
/// The BMC password of every simulated bare metal server: recognisable, so tests can scan a
/// run's store, world and output for it. The world keeps only a digest of it.
pub const SIM_BMC_PASSWORD: &str = "sim-BMC-pa55word-7c41e9";

/// Bare metal IPI with BareMetalHosts: one control-plane server died (powered off for good),
/// its member down; a spare server waits in the rack.
pub fn baremetal_member_lost(seed: u64) -> World {
    let mut w = healthy(seed);
    w.scenario = "baremetal-member-lost".into();
    w.platform = Platform::BareMetalIpi;
    with_keepalived(&mut w, "master-0", "master-1");
    crate::bare_metal::install(&mut w, SIM_BMC_USERNAME, SIM_BMC_PASSWORD);
    let victim = member_victim(seed);
    w.hosts.get_mut(&victim).expect("victim host").powered = false;
    let address = w.api().bare_metal_hosts[&victim].bmc_address.clone();
    w.servers.get_mut(&address).expect("victim server").dead = true;
    w.api_mut().bare_metal_hosts.get_mut(&victim).expect("victim bmh").powered_on = false;
    w.touch();
    w.note(format!("baremetal-member-lost: server of {victim} dead"));
    w.advance(5 * MINUTE);
    debug_assert!(w.api_available() && w.has_quorum() && w.started_members() == 2, "baremetal-member-lost: one member down, quorum kept");
    w
}

/// Power on every machine that is off, each at its own moment within a few minutes; an error
/// when none is off.
pub fn power_on_all(w: &mut World) -> Result<(), String> {
    let off: Vec<String> = w.hosts.values().filter(|h| !h.powered && h.power_on_at.is_none()).map(|h| h.name.clone()).collect();
    if off.is_empty() {
        return Err("every machine of this world is powered on already".into());
    }
    for h in off {
        let at = w.delay(MINUTE, 4 * MINUTE);
        w.hosts.get_mut(&h).expect("host").power_on_at = Some(at);
        w.note(format!("machine of {h} powered on from outside the cluster; it boots at {at}"));
    }
    Ok(())
}

/// Shut down cleanly two days ago (workers first, as `cluster-shutdown` does) and powered on
/// again just now: every machine boots, the kubelets of the workers find their client
/// certificates expired meanwhile and ask for new ones.
pub fn shut_down(seed: u64) -> World {
    let mut w = healthy(seed);
    w.scenario = "shut-down".into();
    for h in w.hosts.values_mut() {
        h.powered = false;
        if h.worker {
            h.kubelet_cert_expires_at = Some(EPOCH.plus(std::time::Duration::from_secs(3600)));
        }
    }
    w.touch();
    w.note("cluster shut down gracefully; powered off for two days");
    w.advance(2 * 24 * HOUR);
    power_on_all(&mut w).expect("hosts are off");
    w
}

/// The node named by the CSR of `certs-expired` that no host of the cluster filed.
pub const ROGUE_NODE: &str = "worker-rogue-9";

/// Powered off longer than its kubelet certificates lived, then on again: every kubelet is
/// refused and bootstraps again; someone else's machine asks to join as well.
pub fn certs_expired(seed: u64) -> World {
    let mut w = healthy(seed);
    w.scenario = "certs-expired".into();
    let expired = Timestamp(EPOCH.0 - 3 * 24 * HOUR);
    for h in w.hosts.values_mut() {
        h.kubelet_cert_expires_at = Some(expired);
    }
    w.touch();
    w.note(format!("kubelet certificates expired at {expired}"));
    w.new_csr(drctl_workflows::ports::CsrKind::NodeBootstrapper, ROGUE_NODE);
    w.advance(5 * MINUTE);
    debug_assert!(w.api_available() && w.hosts.keys().all(|h| !w.node_ready(h)), "certs-expired: every node NotReady");
    w
}

/// Worker hosts in every standalone world.
pub const WORKERS: u32 = 2;

/// A worker host: a running kubelet with a client certificate, nothing of the control plane.
fn worker_host(name: &str, ip: &str, machine: &str) -> Host {
    Host { worker: true, ..Host::booted(name, ip, machine, 1, CLUSTER_VERSION) }
}

/// The management cluster of hosted control planes: a healthy standalone cluster holding
/// HostedCluster `clusters/example` and its NodePools, all reconciled.
pub fn hosted_healthy(seed: u64) -> World {
    let mut w = healthy(seed);
    w.scenario = "hosted-healthy".into();
    let key = hosted_encryption_key(seed);
    let mut hosted = crate::hosted::Hosted::with_cluster("clusters", "example", &["example-us-east-1a", "example-us-east-1b"], &key);
    // The key as the Secret holds it and as its base64: neither may leak.
    w.secrets.push(String::from_utf8_lossy(&key).into_owned());
    w.secrets.push(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &key));
    w.object_store = Some(crate::object_store::ObjectStoreWorld::with_bucket(BACKUP_BUCKET, BACKUP_BUCKET_REGION));
    w.note("hypershift-operator running; hostedcluster clusters/example reconciled");
    if w.rng.chance(1, 2) {
        let np = hosted.node_pools.get_mut(&crate::hosted::key("clusters", "example-us-east-1a")).expect("pool");
        np.data_plane.machines[0].eviction_blocked = true;
        w.note("a PodDisruptionBudget on a workload of worker example-us-east-1a-0 allows no eviction");
    }
    w.hosted = Some(hosted);
    w
}

/// `hosted-healthy` after `hosted-scale-data-plane-zero`: every pool at zero replicas, no
/// machine, the replicas each had in its annotation.
fn hosted_data_plane_at_zero(seed: u64) -> World {
    let mut w = hosted_healthy(seed);
    w.scenario = "hosted-data-plane-at-zero".into();
    let h = w.hosted.as_mut().expect("hosted world");
    for np in h.node_pools.values_mut() {
        let dp = &mut np.data_plane;
        (dp.replicas_before_zero, dp.replicas) = (dp.replicas, Some(0));
        dp.machines.clear();
    }
    w.note("nodepools of clusters/example scaled to zero by an earlier drctl run (2 replicas each recorded)");
    w
}

/// The etcd member of clusters/example that fails in `hosted-etcd-member-failed` on `seed`.
pub fn hosted_etcd_victim(seed: u64) -> String {
    format!("etcd-{}", seed % 3)
}

/// `hosted-healthy` with one etcd member crash-looping on a corrupt data dir: the StatefulSet
/// keeps restarting it on the same PVC, so it never comes back by itself.
fn hosted_etcd_member_failed(seed: u64) -> World {
    use crate::hosted_etcd::{EtcdPodPhase, MemberData};
    let mut w = hosted_healthy(seed);
    w.scenario = "hosted-etcd-member-failed".into();
    let victim = hosted_etcd_victim(seed);
    let h = w.hosted.as_mut().expect("hosted world");
    let etcd = h.clusters.get_mut(&crate::hosted::key("clusters", "example")).and_then(|c| c.etcd.as_mut()).expect("example etcd");
    let slot = etcd.slots.iter_mut().find(|s| s.pod_name() == victim).expect("victim slot");
    if let Some(pvc) = slot.pvc.as_mut() {
        pvc.data = MemberData::Corrupt;
    }
    if let Some(pod) = slot.pod.as_mut() {
        pod.phase = EtcdPodPhase::CrashLoop;
    }
    w.note(format!("pod clusters-example/{victim}: etcd exits at start (corrupt data dir on pvc data-{victim}): CrashLoopBackOff"));
    w
}

/// `hosted-healthy` whose second NodePool autoscales: a data plane that cannot be scaled to a
/// fixed count without changing that first.
fn hosted_autoscaling(seed: u64) -> World {
    let mut w = hosted_healthy(seed);
    w.scenario = "hosted-autoscaling".into();
    let h = w.hosted.as_mut().expect("hosted world");
    let np = h.node_pools.get_mut(&crate::hosted::key("clusters", "example-us-east-1b")).expect("pool");
    (np.data_plane.replicas, np.data_plane.autoscaling) = (None, Some((1, 4)));
    w.note("nodepool clusters/example-us-east-1b autoscales between 1 and 4 workers");
    w
}

/// The annotation value of the foreign pause in `hosted-paused-by-other`.
pub const OADP_PAUSED_BY: &str = "oadp.openshift.io/paused-by=velero/backup-example-1";
/// The annotation value of the earlier drctl run's pause in `hosted-paused`.
pub const DRCTL_PAUSED_BY: &str = "drctl run 7";

/// `hosted-healthy` whose HostedCluster (and, with `pools`, its NodePools) someone paused
/// (`paused_by`) a minute before the scenario starts.
fn hosted_paused(seed: u64, scenario: &str, paused_by: &str, pools: bool) -> World {
    let mut w = hosted_healthy(seed);
    w.scenario = scenario.into();
    let at = w.schedule_operator();
    let h = w.hosted.as_mut().expect("hosted world");
    let hc = h.clusters.get_mut(&crate::hosted::key("clusters", "example")).expect("example");
    hc.cluster.set_paused(Some("true"), Some(paused_by));
    hc.cluster.sync_at = Some(at);
    for np in h.node_pools.values_mut().filter(|_| pools) {
        np.pool.set_paused(Some("true"), Some(paused_by));
        np.pool.sync_at = Some(at);
    }
    w.advance(MINUTE);
    w.note(format!("hostedcluster clusters/example paused by {paused_by}"));
    w
}

/// The cluster's etcd encryption key (`aescbc`, 32 bytes), kept in the static pod resources of
/// every backup: a secret that must never reach a run's record.
/// The bucket of the hosted scenarios, empty unless the scenario says otherwise.
pub const BACKUP_BUCKET: &str = "drctl-hcp-backups";
pub const BACKUP_BUCKET_REGION: &str = "us-east-2";

/// The AES-256 key of clusters/example's etcd encryption (32 bytes, printable so a leak of it is
/// easy to find).
pub fn hosted_encryption_key(seed: u64) -> Vec<u8> {
    let (a, b) = (mix(seed, b"hosted-encryption-key-0"), mix(seed, b"hosted-encryption-key-1"));
    format!("{a:016x}{b:016x}").into_bytes()
}

pub fn encryption_key(seed: u64) -> String {
    let (a, b) = (mix(seed, b"encryption-key-0"), mix(seed, b"encryption-key-1"));
    format!("aescbc:key1:{a:016x}{b:016x}")
}

/// Take a backup on master-0 and keep it in the backup location as `name`.
pub(crate) fn keep_backup(w: &mut World, name: &str) {
    let dir = "/home/core/assets/backup";
    let (snap, res) = w.backup("master-0", dir).expect("healthy world can back up");
    let h = &w.hosts["master-0"];
    let snap_file = h.files[&format!("{dir}/{snap}")].clone();
    let res_file = h.files[&format!("{dir}/{res}")].clone();
    let SimFile::Snapshot { status, .. } = &snap_file else { unreachable!("backup writes a snapshot") };
    let info = BackupInfo {
        cluster_version: CLUSTER_VERSION.into(),
        snapshot: status.clone(),
        taken_on: "master-0".into(),
        possibly_dirty: false,
    };
    w.backups.insert(name.to_string(), BackupSet { files: [(snap, snap_file), (res, res_file)].into(), info: Some(info) });
    w.hosts.get_mut("master-0").expect("host").files.clear();
}

/// Healthy, then a backup, then life goes on (writes, a signer rotation that re-issues every
/// kubelet certificate), then the damage.
fn degraded_base(seed: u64, scenario: &str) -> World {
    degraded_base_of(healthy(seed), scenario)
}

/// [`degraded_base`] from a healthy world already shaped (its platform, its machines): the
/// backup holds what the cluster held.
fn degraded_base_of(mut w: World, scenario: &str) -> World {
    w.scenario = scenario.into();
    keep_backup(&mut w, "nightly");
    w.advance(6 * HOUR);
    let api = w.api_mut();
    api.revision += 5_000;
    api.signer_generation = 2;
    for h in w.hosts.values_mut() {
        h.kubelet_cert_gen = Some(2);
    }
    w.note("signer rotated; kubelet certificates re-issued");
    // Someone ran the runbook's own backup this morning: its files stay in the default backup
    // directory of master-0, newer than the nightly set a restore is approved for.
    w.advance(HOUR);
    let _ = w.backup("master-0", "/home/core/assets/backup");
    w.note("a later backup left in master-0:/home/core/assets/backup");
    w
}

/// What `drctl sim break` can do to a persistent world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Breakage {
    /// The machine of each host stops (power lost): its etcd member, API server and kubelet
    /// with it.
    PowerOff(Vec<String>),
    /// The host's disk lost `/var/lib/etcd`: its member cannot start again.
    LoseEtcdData(String),
    /// Someone powers on every machine that is off (outside the cluster, as before
    /// `cluster-restart`): each boots within a few minutes.
    PowerOnAll,
}

/// Break `w` as `b` says; an error names what is wrong (an unknown host, a worker).
pub fn apply_breakage(w: &mut World, b: &Breakage) -> Result<(), String> {
    let control_plane = |w: &World, h: &str| -> Result<(), String> {
        match w.hosts.get(h) {
            Some(host) if !host.worker => Ok(()),
            Some(_) => Err(format!("{h} is a worker: it has no etcd member to break")),
            None => Err(format!(
                "no host {h} (control-plane hosts: {})",
                w.control_plane_hosts().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ")
            )),
        }
    };
    match b {
        Breakage::PowerOff(hosts) => {
            for h in hosts {
                control_plane(w, h)?;
            }
            for h in hosts {
                w.hosts.get_mut(h).expect("checked").powered = false;
                let m = w.hosts[h].machine.clone();
                if let Some(machine) = w.api_mut().machines.get_mut(&m) {
                    machine.annotations.insert("machine.openshift.io/instance-state".into(), "stopped".into());
                }
                w.note(format!("machine of {h} stopped (drctl sim break)"));
            }
        }
        Breakage::LoseEtcdData(h) => {
            control_plane(w, h)?;
            w.hosts.get_mut(h).expect("checked").etcd_data = None;
            w.note(format!("etcd data of {h} lost (drctl sim break)"));
        }
        Breakage::PowerOnAll => power_on_all(w)?,
    }
    w.touch();
    Ok(())
}

pub fn quorum_loss(seed: u64) -> World {
    let mut w = degraded_base(seed, "quorum-loss");
    for h in ["master-1", "master-2"] {
        w.hosts.get_mut(h).expect("host").powered = false;
        let m = w.hosts[h].machine.clone();
        w.api_mut()
            .machines
            .get_mut(&m)
            .expect("machine")
            .annotations
            .insert("machine.openshift.io/instance-state".into(), "stopped".into());
        w.note(format!("machine of {h} stopped"));
    }
    w.advance(5 * MINUTE);
    assert!(!w.api_available(), "quorum-loss scenario must start with the API down");
    w
}

pub fn quorum_loss_reachable(seed: u64) -> World {
    let mut w = healthy(seed);
    // A policy engine someone installed: its validating webhook fails closed.
    w.api_mut().fail_closed_webhooks.push(WebhookObj {
        configuration: "validatingwebhookconfiguration/kyverno-resource-validating-webhook-cfg".into(),
        webhook: "validate.kyverno.svc-fail".into(),
        service: "kyverno/kyverno-svc".into(),
    });
    let mut w = degraded_base_of(w, "quorum-loss-reachable");
    // The API VIP sits on master-1, not on the host a restore picks: step 4 stops its
    // keepalived there and step 6 waits for master-0's keepalived to take it over.
    with_keepalived(&mut w, "master-1", "master-0");
    w.hosts.get_mut("master-2").expect("host").powered = false;
    let m = w.hosts["master-2"].machine.clone();
    w.api_mut().machines.get_mut(&m).expect("machine").annotations.insert("machine.openshift.io/instance-state".into(), "stopped".into());
    // master-1's disk lost its etcd data: the member cannot start.
    w.hosts.get_mut("master-1").expect("host").etcd_data = None;
    w.note("machine of master-2 stopped; etcd data of master-1 lost");
    w.advance(5 * MINUTE);
    assert!(!w.api_available(), "quorum-loss-reachable scenario must start with the API down");
    w
}

/// The API VIP (10.0.0.5) and the ingress VIP (10.0.0.7) that keepalived manages on every
/// control-plane host of an on-premise installer-provisioned cluster.
fn with_keepalived(w: &mut World, api_vip_on: &str, ingress_vip_on: &str) {
    for h in w.hosts.values_mut() {
        h.manifests.insert(StaticPod::Keepalived);
        h.containers.insert(StaticPod::Keepalived, Container::Running);
    }
    w.hosts.get_mut(api_vip_on).expect("host").addresses.push(("10.0.0.5".into(), "br-ex".into()));
    w.hosts.get_mut(ingress_vip_on).expect("host").addresses.push(("10.0.0.7".into(), "br-ex".into()));
    w.vips = vec!["10.0.0.5".into(), "10.0.0.7".into()];
}

/// `quorum-loss` on another network plugin or layout.
pub fn quorum_loss_on_network(seed: u64, scenario: &str, network: NetworkType) -> World {
    let mut w = quorum_loss(seed);
    w.scenario = scenario.into();
    w.network = network;
    let pods: Vec<(String, OvnPod)> = std::mem::take(&mut w.ovn_pods).into_iter().collect();
    for (_, p) in pods {
        for role in network.ovn_roles().iter().filter(|r| **r == p.role || (**r == OvnRole::ControlPlane && p.role == OvnRole::Master)) {
            w.ovn_pods.insert(ovn_pod_name(*role, &p.node), OvnPod { role: *role, ..p.clone() });
        }
    }
    if network != NetworkType::OvnCentral {
        w.ovn_master_ips.clear();
    }
    if network == NetworkType::Sdn {
        for h in w.hosts.values_mut() {
            h.ovn_db = None;
        }
    }
    w.note(format!("network: {}{}", network.status_type(), if network == NetworkType::OvnIc { " (interconnect)" } else { "" }));
    w
}

/// An inventory that names a node the host's kubelet is not: nothing may act on a wrong name.
pub fn quorum_loss_misnamed(seed: u64) -> World {
    let mut w = quorum_loss_reachable(seed);
    w.scenario = "quorum-loss-misnamed".into();
    w.inventory_nodes.insert("master-1".into(), "master-1.ocp.example.com".into());
    w.note("inventory: master-1 listed as node master-1.ocp.example.com");
    w
}

/// `quorum-loss` on a cluster whose control plane machine set is Active.
pub fn quorum_loss_cpms(seed: u64) -> World {
    let mut w = quorum_loss(seed);
    w.scenario = "quorum-loss-cpms".into();
    w.platform = Platform::CloudIpiCpms;
    w.note("controlplanemachineset/cluster is Active");
    w
}

/// Two members' etcd data lost on hosts that stay up and reachable, on a platform whose
/// machines are not re-created: bare metal IPI (machines bound to BareMetalHosts) or UPI (no
/// control-plane machines at all).
pub fn quorum_loss_data_lost(seed: u64, scenario: &str, platform: Platform) -> World {
    let mut w = healthy(seed);
    w.platform = platform;
    let machines = &mut w.api_mut().machines;
    match platform {
        Platform::Upi => machines.clear(),
        _ => {
            for m in machines.values_mut() {
                let host = format!("openshift-machine-api/{}", m.name.replace(MACHINE_PREFIX, "openshift-master"));
                m.annotations.insert("metal3.io/BareMetalHost".into(), host);
                m.provider_id = Some(format!("baremetalhost:///openshift-machine-api/{}", m.name));
            }
        }
    }
    if platform == Platform::BareMetalIpi {
        // Bare metal IPI runs keepalived for its VIPs; the API VIP is on a host that stays.
        with_keepalived(&mut w, "master-2", "master-0");
        // The operator reaches the hosts over the management network, not their InternalIPs.
        for i in 0..3 {
            w.inventory_addresses.insert(format!("master-{i}"), format!("192.168.111.{}", 20 + i));
        }
    }
    let mut w = degraded_base_of(w, scenario);
    for h in ["master-1", "master-2"] {
        w.hosts.get_mut(h).expect("host").etcd_data = None;
    }
    w.note(format!("{}: etcd data of master-1 and master-2 lost", platform.infrastructure_type()));
    w.advance(5 * MINUTE);
    assert!(!w.api_available(), "{scenario} scenario must start with the API down");
    w
}

/// Nothing is wrong with the cluster; drctl's machine cannot resolve the API's name and reaches
/// only master-0 over SSH.
pub fn api_unreachable(seed: u64) -> World {
    let mut w = degraded_base(seed, "api-unreachable");
    w.drctl_view.api_unresolvable = true;
    w.drctl_view.ssh_blocked = ["master-1".to_string(), "master-2".to_string()].into();
    w.note("drctl's machine: api.ocp.example.com does not resolve; master-1 and master-2 unreachable over SSH");
    w.advance(5 * MINUTE);
    assert!(w.api_available() && w.has_quorum(), "api-unreachable scenario must start with a healthy cluster");
    w
}

/// Quorum is lost (one machine stopped, one member's data gone), but the third member still
/// runs on a host drctl cannot reach: it would serve again with any old peer that returns.
pub fn quorum_loss_partitioned(seed: u64) -> World {
    let mut w = degraded_base(seed, "quorum-loss-partitioned");
    w.hosts.get_mut("master-1").expect("host").powered = false;
    let m = w.hosts["master-1"].machine.clone();
    w.api_mut().machines.get_mut(&m).expect("machine").annotations.insert("machine.openshift.io/instance-state".into(), "stopped".into());
    w.hosts.get_mut("master-0").expect("host").etcd_data = None;
    w.drctl_view.ssh_blocked = ["master-2".to_string()].into();
    w.note("machine of master-1 stopped; etcd data of master-0 lost; master-2 unreachable over SSH from drctl");
    w.advance(5 * MINUTE);
    assert!(!w.api_available(), "quorum-loss-partitioned scenario must start with the API down");
    w
}

/// Damage to the scenario's backups, to rehearse the restore guards.
/// `no-info-file` is no damage: the set as the runbook's own `cluster-backup.sh` leaves it,
/// without the info file drctl writes.
pub const BACKUP_DEFECTS: &[&str] = &["drop-snapshot", "drop-resources", "rename-snapshot", "other-z-stream", "no-info-file"];

pub fn apply_backup_defect(w: &mut World, defect: &str) -> Result<(), String> {
    if !BACKUP_DEFECTS.contains(&defect) {
        return Err(format!("unknown backup defect '{defect}'; known: {}", BACKUP_DEFECTS.join(", ")));
    }
    if w.backups.is_empty() {
        return Err(format!("scenario {} has no backup to damage", w.scenario));
    }
    for set in w.backups.values_mut() {
        let snap = set.files.keys().find(|f| is_snapshot_name(f)).cloned();
        let res = set.files.keys().find(|f| is_resources_name(f)).cloned();
        match defect {
            "drop-snapshot" => {
                snap.map(|f| set.files.remove(&f));
            }
            "drop-resources" => {
                res.map(|f| set.files.remove(&f));
            }
            "rename-snapshot" => {
                if let Some(f) = snap {
                    let file = set.files.remove(&f).expect("listed");
                    set.files.insert(f.replace("snapshot_", "etcd-snapshot-"), file);
                }
            }
            "no-info-file" => set.info = None,
            _ => {
                if let Some(i) = set.info.as_mut() {
                    i.cluster_version = "4.15.2".into();
                }
                for f in set.files.values_mut() {
                    if let SimFile::Snapshot { data, .. } = f {
                        data.cluster_version = "4.15.2".into();
                    }
                }
            }
        }
    }
    w.note(format!("backup damaged: {defect}"));
    Ok(())
}
