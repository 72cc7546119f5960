//! Every `ClusterApi` method, called through the real kube adapter (kube-rs, HTTPS) against the
//! served world and through the simulated port on a copy of the same world, gives the same
//! answer and leaves the same cluster. Where the two disagree, either the adapter misreads the
//! real JSON or the simulator tells a kinder story than the API it stands for.

use drctl_adapters::kube::KubeApi;
use drctl_adapters::Blocking;
use drctl_sim::chaos::{settled_summary, ChaosCase};
use drctl_sim::faults::FaultSchedule;
use drctl_sim::ports::SimApi;
use drctl_sim::world::World;
use drctl_sim::Sim;
use drctl_twin::ServedApi;
use drctl_workflows::ports::{ClusterApi, MachineInfo, NewBareMetalHost, NodeInfo, Operator, PortError, PortResult, StaticPod};
use serde_json::json;

/// One world twice: served over HTTPS to the kube adapter, and behind the simulated port.
struct Pair {
    served: Sim,
    direct: Sim,
    adapter: KubeApi,
    sim_api: SimApi,
    _api: ServedApi,
    _dir: tempfile::TempDir,
}

impl Pair {
    fn of(world: &World) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let served = Sim::new(world.clone());
        let direct = Sim::new(world.clone());
        let api = ServedApi::start(served.clone(), dir.path(), 0, Default::default()).unwrap();
        let rt = Blocking::dedicated("twin-test").unwrap();
        let adapter = KubeApi::connect(rt, Some(&api.kubeconfig), None).unwrap().with_clock(std::sync::Arc::new(served.clock()));
        Pair { sim_api: SimApi(direct.clone()), served, direct, adapter, _api: api, _dir: dir }
    }

    /// The same call both ways; the answers, made comparable by `norm`, must be equal.
    fn same<T: std::fmt::Debug + PartialEq, U: std::fmt::Debug + PartialEq>(
        &self,
        what: &str,
        call: impl Fn(&dyn ClusterApi) -> PortResult<T>,
        norm: impl Fn(T) -> U,
    ) {
        let a = call(&self.adapter).map(&norm);
        let b = call(&self.sim_api).map(&norm);
        match (&a, &b) {
            (Ok(x), Ok(y)) => assert_eq!(x, y, "{what}: the adapter read {x:?} from the served API, the sim port says {y:?}"),
            (Err(x), Err(y)) => assert_eq!(kind(x), kind(y), "{what}: adapter {x:?}, sim port {y:?}"),
            _ => panic!("{what}: adapter {a:?}, sim port {b:?}"),
        }
    }

    fn same_cluster(&self, after: &str) {
        let (a, b) = (self.served.read(settled_summary), self.direct.read(settled_summary));
        let diff = drctl_sim::chaos::settled_diff(&a, &b);
        assert!(diff.is_empty(), "after {after}, the served world and the direct one differ:\n{}", diff.join("\n"));
    }
}

fn kind(e: &PortError) -> &'static str {
    match e {
        PortError::Transient(_) => "transient",
        PortError::NotFound(_) => "not found",
        PortError::Permanent(_) => "permanent",
    }
}

/// Kubernetes writes times in whole seconds.
fn nodes_norm(mut v: Vec<NodeInfo>) -> Vec<NodeInfo> {
    for n in &mut v {
        n.status_since = n.status_since.map(|t| drctl_runtime::clock::Timestamp(t.0 / 1000 * 1000));
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// What the procedures read of a machine, and the manifest they would re-create it from.
fn machine_norm(m: MachineInfo) -> (String, String, Option<String>, bool, serde_json::Value) {
    (m.name.clone(), m.phase.to_string(), m.node.clone(), m.control_plane, drctl_workflows::machines::strip_for_create(&m.manifest))
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn every_read(p: &Pair) {
    p.same("cluster_version", |a| a.cluster_version(), |v| v);
    p.same("cluster_operators", |a| a.cluster_operators(), |v| v);
    p.same("list_nodes", |a| a.list_nodes(), nodes_norm);
    p.same(
        "list_csrs",
        |a| a.list_csrs(),
        |mut v| {
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v
        },
    );
    for (ns, sel) in [
        ("openshift-etcd", "k8s-app=etcd"),
        ("openshift-ovn-kubernetes", "app=ovnkube-node"),
        ("openshift-ovn-kubernetes", "app=ovnkube-master"),
        ("openshift-ovn-kubernetes", "app=ovnkube-control-plane"),
    ] {
        p.same(
            &format!("list_pods {ns} {sel}"),
            |a| a.list_pods(ns, sel),
            |mut v| {
                v.sort_by(|a, b| a.name.cmp(&b.name));
                v
            },
        );
    }
    let ips: Vec<String> = p.direct.read(|w| w.api().nodes.values().map(|n| n.internal_ip.clone()).collect());
    p.same("ovn_master_references", |a| a.ovn_master_references(&ips), sorted);
    p.same(
        "list_machines",
        |a| a.list_machines(),
        |v| {
            let mut v: Vec<_> = v.into_iter().map(machine_norm).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        },
    );
    let names: Vec<String> = p.direct.read(|w| w.api().machines.keys().cloned().collect());
    for name in names.iter().map(String::as_str).chain(["no-such-machine"]) {
        p.same(&format!("get_machine {name}"), |a| a.get_machine(name), |m| m.map(machine_norm));
    }
    p.same("fail_closed_webhooks", |a| a.fail_closed_webhooks(), |v| v);
    p.same("network_layout", |a| a.network_layout(), |v| v);
    p.same("machine_layout", |a| a.machine_layout(), |v| v);
    p.same("quorum_guard_enabled", |a| a.quorum_guard_enabled(), |v| v);
    p.same("etcd_members_available", |a| a.etcd_members_available(), |v| v);
    p.same("list_secrets openshift-etcd", |a| a.list_secrets("openshift-etcd"), sorted);
    p.same("list_bare_metal_hosts", |a| a.list_bare_metal_hosts(), |v| v);
    p.same("list_secrets openshift-machine-api", |a| a.list_secrets("openshift-machine-api"), sorted);
    for op in Operator::ALL {
        p.same(&format!("installer_progress {op}"), |a| a.installer_progress(op), |v| v);
    }
    assert_eq!(p.adapter.credential(), p.sim_api.credential(), "the kubeconfig the twin writes holds a client certificate");
}

/// Worlds a procedure meets: healthy ones of each platform and network, a restored one with
/// NotReady nodes and pending CSRs, one with operators rolling out.
fn worlds() -> Vec<(String, World)> {
    let mut out = vec![];
    let healthy = drctl_sim::scenario::build("healthy", 3).unwrap();
    out.push(("healthy".to_string(), healthy.clone()));
    // After a restore: every scenario's cluster once the direct-port restore ended.
    for scenario in ["quorum-loss", "quorum-loss-baremetal", "quorum-loss-upi", "quorum-loss-ovn-ic", "quorum-loss-sdn", "quorum-loss-cpms"]
    {
        let row = drctl_sim::chaos::row("restore-cluster-state").unwrap();
        let factory = drctl_sim::chaos::registry_factory("restore-cluster-state").unwrap();
        let seed = (0..200).find(|s| row.scenario_for(*s).scenario == scenario).unwrap();
        let (_, sim) = drctl_sim::chaos::run_case_in(&row, &factory, &ChaosCase { seed, schedule: FaultSchedule::default() }, false);
        out.push((format!("{scenario} restored"), sim.read(|w| w.clone())));
    }
    // Mid-recovery: kubelets without certificates (CSRs pending, nodes NotReady), a machine
    // being deleted, the quorum guard off and an etcd rollout under way.
    let mut w = healthy;
    let hosts: Vec<String> = w.hosts.keys().take(2).cloned().collect();
    for h in &hosts {
        let host = w.host_mut(h);
        host.kubelet_cert_gen = None;
        host.kubelet_serving = false;
        host.needs_register = true;
    }
    w.pass_time(5 * drctl_sim::world::MINUTE);
    if let Some(m) = w.api().machines.keys().next().cloned() {
        w.api_delete_machine(&m);
    }
    w.api_set_quorum_guard(false);
    w.force_redeployment(Operator::Etcd, "recovery-differential", "");
    w.host_mut(&hosts[0]).manifests.remove(&StaticPod::Etcd);
    w.pass_time(30 * drctl_sim::world::SECOND);
    out.push(("mid-recovery".to_string(), w));
    // Bare metal with BareMetalHosts, one server dead; and one whose new host is registering.
    let bm = drctl_sim::scenario::build("baremetal-member-lost", 3).unwrap();
    out.push(("baremetal-member-lost".to_string(), bm.clone()));
    let mut bm = bm;
    let (address, mac) = drctl_sim::bare_metal::server_identity(drctl_sim::bare_metal::SPARE_SERVER);
    let host =
        NewBareMetalHost { name: "spare".into(), bmc_address: address, boot_mac_address: mac, credentials_name: "spare-bmc-secret".into() };
    bm.api_apply_bmc_secret("spare-bmc-secret", "admin", "wrong");
    bm.api_create_bare_metal_host(&host).unwrap();
    bm.pass_time(3 * drctl_sim::world::MINUTE);
    out.push(("baremetal registering".to_string(), bm));
    out
}

#[test]
fn every_read_agrees_on_every_world() {
    for (name, w) in worlds() {
        eprintln!("world: {name}");
        let p = Pair::of(&w);
        every_read(&p);
        p.same_cluster(&format!("the reads of {name}"));
    }
}

#[test]
fn every_write_leaves_the_same_cluster() {
    for (name, w) in worlds() {
        let p = Pair::of(&w);
        let csrs: Vec<String> = p.direct.read(|w| w.api().csrs.values().filter(|c| !c.approved).map(|c| c.name.clone()).collect());
        for c in csrs.iter().map(String::as_str).chain(["csr-none"]) {
            p.same(&format!("{name}: approve_csr {c}"), |a| a.approve_csr(c), |v| v);
        }
        p.same(&format!("{name}: set_quorum_guard off"), |a| a.set_quorum_guard(false), |v| v);
        p.same(&format!("{name}: force_redeployment"), |a| a.force_redeployment(Operator::Etcd, "differential-1"), |v| v);
        p.same(&format!("{name}: set_quorum_guard on"), |a| a.set_quorum_guard(true), |v| v);
        let pods = p.direct.read(|w| w.ovn_pods.keys().next().cloned());
        if let Some(pod) = pods {
            p.same(&format!("{name}: delete_pod {pod}"), |a| a.delete_pod("openshift-ovn-kubernetes", &pod), |v| v);
        }
        let machine = p.direct.read(|w| w.api().machines.values().next().cloned());
        if let Some(m) = machine {
            let info = p.sim_api.get_machine(&m.name).unwrap().unwrap();
            p.same(&format!("{name}: delete_machine {}", m.name), |a| a.delete_machine(&m.name), |v| v);
            let mut manifest = drctl_workflows::machines::strip_for_create(&info.manifest);
            manifest["metadata"]["name"] = json!(format!("{}-new", m.name));
            p.same(&format!("{name}: create_machine"), |a| a.create_machine(&manifest), |v| v);
            p.same(&format!("{name}: create_machine again"), |a| a.create_machine(&manifest), |v| v);
        }
        let secret = p.direct.read(|w| w.api().etcd_secrets.iter().next().cloned());
        if let Some(sec) = secret {
            p.same(&format!("{name}: delete_secret {sec}"), |a| a.delete_secret("openshift-etcd", &sec), |v| v);
            p.same(&format!("{name}: delete_secret {sec} again"), |a| a.delete_secret("openshift-etcd", &sec), |v| v);
        }
        let bmh = p.direct.read(|w| w.api().bare_metal_hosts.keys().next().cloned());
        if let Some(b) = bmh {
            p.same(&format!("{name}: delete_bare_metal_host {b}"), |a| a.delete_bare_metal_host(&b), |v| v);
            p.same(&format!("{name}: delete_bare_metal_host {b} again"), |a| a.delete_bare_metal_host(&b), |v| v);
            let creds = drctl_workflows::bmc::BmcCredentials { username: "admin".into(), password: "differential".into() };
            p.same(&format!("{name}: apply_bmc_secret"), |a| a.apply_bmc_secret("new-bmc-secret", &creds), |v| v);
            p.same(&format!("{name}: apply_bmc_secret again"), |a| a.apply_bmc_secret("new-bmc-secret", &creds), |v| v);
            let (address, mac) = drctl_sim::bare_metal::server_identity(drctl_sim::bare_metal::SPARE_SERVER);
            let host = NewBareMetalHost {
                name: "new".into(),
                bmc_address: address,
                boot_mac_address: mac,
                credentials_name: "new-bmc-secret".into(),
            };
            p.same(&format!("{name}: create_bare_metal_host"), |a| a.create_bare_metal_host(&host), |v| v);
            p.same(&format!("{name}: create_bare_metal_host again"), |a| a.create_bare_metal_host(&host), |v| v);
            let m = p.direct.read(|w| w.api().machines.values().find(|m| m.phase == "Deleting").map(|m| m.name.clone()));
            for m in m.iter().map(String::as_str).chain(["no-such-machine"]) {
                p.same(&format!("{name}: remove_machine_finalizers {m}"), |a| a.remove_machine_finalizers(m), |v| v);
            }
        }
        let node = p.direct.read(|w| w.api().nodes.keys().last().cloned());
        if let Some(n) = node {
            p.same(&format!("{name}: delete_node {n}"), |a| a.delete_node(&n), |v| v);
            p.same(&format!("{name}: delete_node {n} again"), |a| a.delete_node(&n), |v| v);
        }
        p.same_cluster(&format!("the writes on {name}"));
        every_read(&p);
    }
}

#[test]
fn a_broken_api_fails_alike() {
    // Quorum lost: the API refuses (no kube-apiserver) or times out (no etcd quorum), both ways.
    for scenario in ["quorum-loss", "quorum-loss-reachable", "api-unreachable"] {
        let w = drctl_sim::scenario::build(scenario, 5).unwrap();
        let p = Pair::of(&w);
        p.same(&format!("{scenario}: list_nodes"), |a| a.list_nodes(), nodes_norm);
        p.same(&format!("{scenario}: approve_csr"), |a| a.approve_csr("csr-x"), |v| v);
        p.same(&format!("{scenario}: cluster_version"), |a| a.cluster_version(), |v| v);
    }
}

/// The `ManagementCluster` port (HyperShift objects) both ways, reads and pause writes.
#[test]
fn the_management_cluster_agrees() {
    use drctl_sim::ports::SimManagement;
    use drctl_workflows::ports::ManagementCluster;
    for scenario in ["hosted-healthy", "hosted-autoscaling", "hosted-paused", "hosted-paused-by-other", "healthy"] {
        let w = drctl_sim::scenario::build(scenario, 2).unwrap();
        let p = Pair::of(&w);
        let sim = SimManagement(p.direct.clone());
        let both = |what: &str, f: &dyn Fn(&dyn ManagementCluster) -> PortResult<String>| {
            let (a, b) = (f(&p.adapter), f(&sim));
            match (&a, &b) {
                (Ok(x), Ok(y)) => assert_eq!(x, y, "{scenario}: {what}"),
                (Err(x), Err(y)) => assert_eq!(kind(x), kind(y), "{scenario}: {what}: adapter {x:?}, sim {y:?}"),
                _ => panic!("{scenario}: {what}: adapter {a:?}, sim port {b:?}"),
            }
        };
        let reads = |when: &str| {
            both(&format!("{when} hosted_cluster"), &|m| m.hosted_cluster("clusters", "example").map(|v| format!("{v:?}")));
            both(&format!("{when} node_pools"), &|m| m.node_pools("clusters", "example").map(|v| format!("{v:?}")));
            both(&format!("{when} control_plane_paused_until"), &|m| {
                m.control_plane_paused_until("clusters", "example").map(|v| format!("{v:?}"))
            });
            both(&format!("{when} operator_available"), &|m| m.operator_available().map(|v| format!("{v:?}")));
            both(&format!("{when} missing cluster"), &|m| m.hosted_cluster("clusters", "nope").map(|v| format!("{v:?}")));
            both(&format!("{when} node_pool_scales"), &|m| m.node_pool_scales("clusters", "example").map(|v| format!("{v:?}")));
            both(&format!("{when} hosted_etcd"), &|m| m.hosted_etcd("clusters", "example").map(|v| format!("{v:?}")));
            for pool in ["example-us-east-1a", "example-us-east-1b", "nope"] {
                both(&format!("{when} machines of {pool}"), &|m| {
                    m.node_pool_machines("clusters", "example", pool).map(|v| format!("{v:?}"))
                });
            }
        };
        reads("before");
        both("pause", &|m| m.set_hosted_cluster_paused("clusters", "example", Some("true"), Some("drctl run 9")).map(|v| format!("{v:?}")));
        let pools: Vec<String> = sim.node_pools("clusters", "example").map(|v| v.into_iter().map(|p| p.name).collect()).unwrap_or_default();
        for pool in &pools {
            both("pause pool", &|m| m.set_node_pool_paused("clusters", pool, Some("true"), Some("drctl run 9")).map(|v| format!("{v:?}")));
        }
        p.served.advance_to(p.served.now().plus(std::time::Duration::from_secs(60)));
        p.direct.advance_to(p.served.now());
        reads("paused");
        both("unpause", &|m| m.set_hosted_cluster_paused("clusters", "example", None, None).map(|v| format!("{v:?}")));
        reads("unpaused");
        // Scaling: drain timeouts (a valid one, one the CRD refuses, removal), the scale
        // subresource (refused beside autoScaling), and the machines draining away.
        for pool in ["example-us-east-1a", "example-us-east-1b", "nope"] {
            both("drain timeout", &|m| m.set_node_pool_drain_timeout("clusters", pool, Some("1m")).map(|v| format!("{v:?}")));
            both("bad drain timeout", &|m| m.set_node_pool_drain_timeout("clusters", pool, Some("1 minute")).map(|v| format!("{v:?}")));
            both("scale", &|m| m.scale_node_pool("clusters", pool, 0).map(|v| format!("{v:?}")));
        }
        p.served.advance_to(p.served.now().plus(std::time::Duration::from_secs(90)));
        p.direct.advance_to(p.served.now());
        reads("scaling down");
        both("drain timeout removed", &|m| m.set_node_pool_drain_timeout("clusters", "example-us-east-1a", None).map(|v| format!("{v:?}")));
        for pool in ["example-us-east-1a", "nope"] {
            both("record replicas", &|m| m.record_node_pool_replicas("clusters", pool, Some(2)).map(|v| format!("{v:?}")));
        }
        reads("recorded");
        both("forget replicas", &|m| m.record_node_pool_replicas("clusters", "example-us-east-1a", None).map(|v| format!("{v:?}")));
        reads("scaled");
        p.same_cluster(&format!("{scenario}: pausing and scaling"));
    }
}

/// The served API authenticates as kube-apiserver does: a client certificate of its CA or the
/// token of the kubeconfig it wrote; anything else is 401, which the adapter holds permanent.
#[test]
fn the_api_wants_credentials() {
    let w = drctl_sim::scenario::build("healthy", 1).unwrap();
    let p = Pair::of(&w);
    assert!(p.adapter.list_nodes().is_ok());
    let kubeconfig = std::fs::read_to_string(&p._api.kubeconfig).unwrap();
    let user_at = kubeconfig.find("    client-certificate-data").unwrap();
    let anonymous = format!("{}    token: sha256~not-the-one\npreferences: {{}}\n", &kubeconfig[..user_at]);
    let path = p._dir.path().join("anonymous");
    std::fs::write(&path, anonymous).unwrap();
    let rt = Blocking::dedicated("twin-test-anon").unwrap();
    let stranger = KubeApi::connect(rt, Some(&path), None).unwrap();
    match stranger.list_nodes() {
        Err(PortError::Permanent(m)) => assert!(m.contains("401"), "{m}"),
        other => panic!("a wrong token was answered with {other:?}"),
    }
}

/// `etcdctl` in an etcd pod (kube exec over a WebSocket, the pod's etcdctl answering as the
/// simulated port does): member list, endpoint health and member remove agree both ways, and a
/// pod that cannot be entered fails alike.
#[test]
fn etcdctl_in_an_etcd_pod_agrees() {
    use drctl_adapters::KubeEtcdPods;
    use drctl_sim::ports::SimEtcdPods;
    use drctl_workflows::ports::EtcdPods;
    for scenario in ["member-machine-stopped", "member-crashloop", "quorum-loss"] {
        let w = drctl_sim::scenario::build(scenario, 1).unwrap();
        let p = Pair::of(&w);
        let (real, sim) = (KubeEtcdPods(p.adapter.clone()), SimEtcdPods(p.direct.clone()));
        let victim = drctl_sim::scenario::member_victim(1);
        let both = |what: &str, f: &dyn Fn(&dyn EtcdPods) -> PortResult<String>| {
            let (a, b) = (f(&real), f(&sim));
            match (&a, &b) {
                (Ok(x), Ok(y)) => assert_eq!(x, y, "{scenario}: {what}"),
                (Err(x), Err(y)) => assert_eq!(kind(x), kind(y), "{scenario}: {what}: adapter {x:?}, sim {y:?}"),
                _ => panic!("{scenario}: {what}: adapter {a:?}, sim port {b:?}"),
            }
        };
        for node in ["master-0", "master-1", "master-2"] {
            both(&format!("member_list via {node}"), &|e| e.member_list(node).map(|v| format!("{v:?}")));
            both(&format!("endpoint_health via {node}"), &|e| e.endpoint_health(node).map(|v| format!("{v:?}")));
        }
        both("member_list via a node that is none", &|e| e.member_list("master-9").map(|v| format!("{v:?}")));
        let id = w.hosts[&victim].etcd_data.map(|d| d.member_id).unwrap_or(0);
        let via = ["master-0", "master-1", "master-2"].into_iter().find(|n| *n != victim).unwrap();
        both("member_remove", &|e| e.member_remove(via, id).map(|v| format!("{v:?}")));
        both("member_remove again", &|e| e.member_remove(via, id).map(|v| format!("{v:?}")));
        both("member_list after", &|e| e.member_list(via).map(|v| format!("{v:?}")));
        p.same_cluster(&format!("{scenario}: etcdctl in pods"));
    }
}

/// Agreement of one `ManagementCluster` call both ways: equal answers (made comparable by
/// `norm`), or failures of the same kind.
fn agree<T: std::fmt::Debug>(
    what: &str,
    adapter: &dyn drctl_workflows::ports::ManagementCluster,
    sim: &dyn drctl_workflows::ports::ManagementCluster,
    call: impl Fn(&dyn drctl_workflows::ports::ManagementCluster) -> PortResult<T>,
    norm: impl Fn(T) -> String,
) {
    let (a, b) = (call(adapter).map(&norm), call(sim).map(&norm));
    match (&a, &b) {
        (Ok(x), Ok(y)) => assert_eq!(x, y, "{what}: the adapter read {x} from the served API, the sim port says {y}"),
        (Err(x), Err(y)) => assert_eq!(kind(x), kind(y), "{what}: adapter {x:?}, sim port {y:?}"),
        _ => panic!("{what}: adapter {a:?}, sim port {b:?}"),
    }
}

/// Members by id: etcd lists them so and the adapter sorts them so; the simulated etcd keeps
/// them by name. The order carries nothing (the procedures look members up by name or id).
fn members_norm(mut l: drctl_workflows::ports::EtcdMemberList) -> String {
    l.members.sort_by_key(|m| m.id);
    format!("{l:?}")
}

/// The etcd of a hosted control plane through the `ManagementCluster` port both ways: what its
/// control-plane namespace shows, etcdctl in a serving pod and in the crash-looping one, and a
/// member's replacement (its PVC, then its pod, deleted by uid; a wrong or stale uid changes
/// nothing) leaving the same etcd on both sides, before and after the StatefulSet controller
/// brought the member back.
#[test]
fn the_hosted_etcd_agrees() {
    use drctl_sim::ports::SimManagement;
    use drctl_workflows::ports::{etcd_pvc_name, ManagementCluster};
    for scenario in ["hosted-healthy", "hosted-etcd-member-failed"] {
        // Seed 4: the StatefulSet controller wins the race against PVC protection.
        for seed in [1, 2, 4] {
            let w = drctl_sim::scenario::build(scenario, seed).unwrap();
            let p = Pair::of(&w);
            let sim = SimManagement(p.direct.clone());
            let at = |what: &str| format!("{scenario} seed {seed}: {what}");
            let both = |what: &str, f: &dyn Fn(&dyn drctl_workflows::ports::ManagementCluster) -> PortResult<String>| {
                agree(&at(what), &p.adapter, &sim, f, |s| s)
            };
            let etcd = |when: &str| {
                both(&format!("{when}: hosted_etcd"), &|m| m.hosted_etcd("clusters", "example").map(|v| format!("{v:?}")));
            };
            let victim = drctl_sim::scenario::hosted_etcd_victim(seed);
            let serving = ["etcd-0", "etcd-1", "etcd-2"].into_iter().find(|p| *p != victim).unwrap();
            let etcdctl = |when: &str, pod: &str| {
                both(&format!("{when}: health via {pod}"), &|m| m.hosted_etcd_health("clusters", "example", pod).map(|v| format!("{v:?}")));
                agree(
                    &at(&format!("{when}: members via {pod}")),
                    &p.adapter,
                    &sim,
                    |m| m.hosted_etcd_members("clusters", "example", pod),
                    members_norm,
                );
            };
            etcd("before");
            etcdctl("before", serving);
            // Crash-looping in hosted-etcd-member-failed (its container cannot be entered: transient);
            // serving in hosted-healthy.
            etcdctl("before", &victim);
            let crash_looping = scenario == "hosted-etcd-member-failed";
            let entered = sim.hosted_etcd_members("clusters", "example", &victim);
            assert_eq!(entered.is_err_and(|e| e.is_transient()), crash_looping, "{}", at("the victim's container"));
            etcdctl("before", "etcd-9");
            both("missing cluster", &|m| m.hosted_etcd("clusters", "nope").map(|v| format!("{v:?}")));
            both("missing cluster's pod", &|m| m.hosted_etcd_members("clusters", "nope", "etcd-0").map(|v| format!("{v:?}")));

            let info = sim.hosted_etcd("clusters", "example").unwrap();
            let pvc = etcd_pvc_name(&victim);
            let (pvc_uid, pod_uid) = (info.pvc(&pvc).unwrap().uid.clone(), info.pod(&victim).unwrap().uid.clone());
            both("delete pvc", &|m| m.delete_hosted_etcd_pvc("clusters", "example", &pvc, &pvc_uid).map(|v| format!("{v:?}")));
            etcd("pvc deleted");
            both("delete pvc, wrong uid", &|m| {
                m.delete_hosted_etcd_pvc("clusters", "example", &pvc, "not-its-uid").map(|v| format!("{v:?}"))
            });
            both("delete pvc again", &|m| m.delete_hosted_etcd_pvc("clusters", "example", &pvc, &pvc_uid).map(|v| format!("{v:?}")));
            etcd("pvc deleted twice");
            both("delete pod, wrong uid", &|m| {
                m.delete_hosted_etcd_pod("clusters", "example", &victim, "not-its-uid").map(|v| format!("{v:?}"))
            });
            etcd("pod kept");
            both("delete pod", &|m| m.delete_hosted_etcd_pod("clusters", "example", &victim, &pod_uid).map(|v| format!("{v:?}")));
            etcd("pod deleted");
            let deleting = sim.hosted_etcd("clusters", "example").unwrap();
            assert_eq!(deleting.pod(&victim).map(|p| p.status.as_str()), Some("Terminating"), "{}", at("pod deleted"));
            assert!(deleting.pvc(&pvc).is_some_and(|c| c.terminating), "{}", at("the pvc waits for its pod"));
            both("delete missing pod", &|m| m.delete_hosted_etcd_pod("clusters", "example", "etcd-9", "any").map(|v| format!("{v:?}")));
            etcdctl("member being replaced", serving);
            p.same_cluster(&at("the member's deletes"));

            // The pod goes, the PVC with it; the StatefulSet controller creates both anew and
            // the member is re-added on the empty volume. Unless the controller won the race
            // against PVC protection and recreated the pod on the Terminating PVC: that pod stays
            // unschedulable (and holds the PVC) until it is deleted in turn.
            for round in 0..3 {
                p.served.advance_to(p.served.now().plus(std::time::Duration::from_secs(600)));
                p.direct.advance_to(p.served.now());
                etcd(&format!("replacing, round {round}"));
                let now = sim.hosted_etcd("clusters", "example").unwrap();
                let Some(stuck) = now.pod(&victim).filter(|p| p.status.as_str() == "Pending").map(|p| p.uid.clone()) else { break };
                eprintln!("{}", at(&format!("round {round}: {victim} unschedulable on its Terminating PVC; deleting it")));
                both("delete unschedulable pod", &|m| {
                    m.delete_hosted_etcd_pod("clusters", "example", &victim, &stuck).map(|v| format!("{v:?}"))
                });
            }
            etcd("replaced");
            etcdctl("replaced", serving);
            etcdctl("replaced", &victim);
            // The old uids name objects that are gone: the new ones of the same names stay.
            both("delete old pvc", &|m| m.delete_hosted_etcd_pvc("clusters", "example", &pvc, &pvc_uid).map(|v| format!("{v:?}")));
            both("delete old pod", &|m| m.delete_hosted_etcd_pod("clusters", "example", &victim, &pod_uid).map(|v| format!("{v:?}")));
            etcd("replaced, old uids deleted");
            let after = sim.hosted_etcd("clusters", "example").unwrap();
            assert_ne!(after.pod(&victim).map(|p| p.uid.as_str()), Some(pod_uid.as_str()), "{}", at("a new pod"));
            assert_ne!(after.pvc(&pvc).map(|c| c.uid.as_str()), Some(pvc_uid.as_str()), "{}", at("a new pvc"));
            assert!(after.pods.iter().all(|p| p.ready) && after.ready_replicas == 3, "{}: {after:?}", at("the member is back"));
            let health = sim.hosted_etcd_health("clusters", "example", serving).unwrap();
            assert!(health.len() == 3 && health.iter().all(|h| h.healthy), "{}: {health:?}", at("every member healthy"));
            p.same_cluster(&at("the member's replacement"));
        }
    }
}

/// What only the served API shows: the shapes behind the adapter's answers (the StatefulSet's
/// retention policy, the PVC protection finalizer, the exec refusal of a crash-looping
/// container), a DELETE whose uid precondition does not hold (409, nothing changes), and etcdctl
/// reached on the modern CA path in one exec (no probe for the legacy CA).
#[test]
fn the_served_hosted_etcd_is_the_real_api() {
    use drctl_sim::ports::SimManagement;
    use drctl_twin::kube::{admit_exec, serve, ApiCall};
    use drctl_workflows::ports::ManagementCluster;
    let seed = 1;
    let w = drctl_sim::scenario::build("hosted-etcd-member-failed", seed).unwrap();
    let p = Pair::of(&w);
    let sim = SimManagement(p.direct.clone());
    let victim = drctl_sim::scenario::hosted_etcd_victim(seed);
    let cpns = "clusters-example";
    let call = |method: hyper::Method, path: String, body: serde_json::Value| ApiCall {
        bearer: None,
        method,
        path,
        query: vec![],
        content_type: "application/json".into(),
        body: body.to_string().into_bytes(),
    };
    let get = |path: String| {
        let a = serve(&p.served, &call(hyper::Method::GET, path.clone(), json!(null))).unwrap();
        assert_eq!(a.status, 200, "GET {path}: {}", a.body);
        a.body
    };
    let sts = get(format!("/apis/apps/v1/namespaces/{cpns}/statefulsets/etcd"));
    assert_eq!(sts["spec"]["persistentVolumeClaimRetentionPolicy"], json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
    assert_eq!((sts["spec"]["serviceName"].as_str(), sts["spec"]["replicas"].as_u64()), (Some("etcd-discovery"), Some(3)));
    assert_eq!(sts["status"]["readyReplicas"], 2);
    let pod = get(format!("/api/v1/namespaces/{cpns}/pods/{victim}"));
    assert_eq!(pod["metadata"]["labels"]["app"], "etcd");
    assert_eq!(pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "CrashLoopBackOff");
    let claim = format!("data-{victim}");
    let pvc = get(format!("/api/v1/namespaces/{cpns}/persistentvolumeclaims/{claim}"));
    assert_eq!(pvc["metadata"]["finalizers"], json!(["kubernetes.io/pvc-protection"]));
    assert_eq!(pvc["status"]["phase"], "Bound");
    let hc = get("/apis/hypershift.openshift.io/v1beta1/namespaces/clusters/hostedclusters/example".into());
    assert_eq!(hc["spec"]["controllerAvailabilityPolicy"], "HighlyAvailable");

    // The crash-looping etcd container cannot be entered: the API server's 400.
    match admit_exec(&p.served, cpns, &victim, "etcd").unwrap() {
        Err(a) => {
            assert_eq!(a.status, 400);
            assert_eq!(a.body["message"], "unable to upgrade connection: container not found (\"etcd\")");
        }
        Ok(target) => panic!("exec into a crash-looping container admitted: {target:?}"),
    }

    // A uid precondition that does not hold: 409 Conflict, the objects stay as they were.
    let before = p.adapter.hosted_etcd("clusters", "example").unwrap();
    for (plural, name, uid) in [
        ("persistentvolumeclaims", claim.as_str(), &before.pvc(&claim).unwrap().uid),
        ("pods", victim.as_str(), &before.pod(&victim).unwrap().uid),
    ] {
        let path = format!("/api/v1/namespaces/{cpns}/{plural}/{name}");
        let a =
            serve(&p.served, &call(hyper::Method::DELETE, path, json!({"kind": "DeleteOptions", "preconditions": {"uid": "0000-wrong"}})))
                .unwrap();
        assert_eq!((a.status, a.body["reason"].as_str()), (409, Some("Conflict")), "{}", a.body);
        let message = a.body["message"].as_str().unwrap_or("");
        assert!(message.contains(&format!("Precondition failed: UID in precondition: 0000-wrong, UID in object meta: {uid}")), "{message}");
        // Through the adapter the same answer means "that object is gone", which it is not: the
        // world is untouched either way.
        let through_adapter = match plural {
            "pods" => p.adapter.delete_hosted_etcd_pod("clusters", "example", name, "0000-wrong"),
            _ => p.adapter.delete_hosted_etcd_pvc("clusters", "example", name, "0000-wrong"),
        };
        assert_eq!(through_adapter, Ok(()));
    }
    assert_eq!(p.adapter.hosted_etcd("clusters", "example").unwrap(), before, "a DELETE refused on its uid changed nothing");

    // The modern CA: one exec, as the simulated port's one request; a probe of the legacy CA
    // and the second etcdctl would be two more requests on the served API's clock. (The pod has
    // no legacy CA, so an answer at all means the modern path was taken.)
    let serving = ["etcd-0", "etcd-1", "etcd-2"].into_iter().find(|p| *p != victim).unwrap();
    p.direct.advance_to(p.served.now());
    let (t_served, t_direct) = (p.served.now(), p.direct.now());
    let members = p.adapter.hosted_etcd_members("clusters", "example", serving).unwrap();
    assert_eq!(members_norm(members), members_norm(sim.hosted_etcd_members("clusters", "example", serving).unwrap()));
    assert_eq!(
        p.served.now().since(t_served),
        p.direct.now().since(t_direct),
        "the adapter made more API requests than one exec: did it probe for the legacy CA?"
    );
}

/// What a hosted backup changes of a management cluster, without the times (the adapter's calls
/// are not all one request, so the two worlds' clocks drift by a few API latencies): the pause,
/// the etcd writers' scale, the snapshot files on each member's volume, the secrets.
fn hosted_backup_summary(w: &World) -> String {
    let Some(h) = w.hosted.as_ref() else { return "no hosted clusters".into() };
    let clusters: Vec<String> = h
        .clusters
        .values()
        .map(|c| {
            let writers =
                c.control_plane.as_ref().map(|cp| cp.writers.iter().map(|d| (&d.name, d.replicas, d.pods, d.ready)).collect::<Vec<_>>());
            let files = c
                .etcd
                .as_ref()
                .map(|e| e.slots.iter().map(|s| (s.ordinal, s.pvc.as_ref().map(|v| format!("{:?}", v.snapshots)))).collect::<Vec<_>>());
            format!(
                "{}/{}: paused {:?} by {:?}, control plane paused {:?}, writers {writers:?}, snapshot files {files:?}",
                c.namespace, c.cluster.name, c.cluster.paused_until, c.cluster.paused_by, c.hcp_paused_until
            )
        })
        .collect();
    format!("{clusters:#?}\nsecrets {:?}", h.secrets.keys().collect::<Vec<_>>())
}

/// The calls of a hosted etcd backup through the `ManagementCluster` port both ways, on
/// `hosted-healthy` with etcd 3.5 (`etcdutl` and a deprecated `etcdctl snapshot status`), 3.4
/// (no `etcdutl`) and 3.6 (no `etcdctl snapshot status`): the HostedCluster's backup facts, the
/// etcd writers scaled to zero under a pause and read back, a snapshot saved, its status read,
/// the file streamed out byte for byte and removed, the encryption key; refusals of each (a
/// missing cluster, deployment, pod, file or secret, a path off the volume) of the same kind.
#[test]
fn the_hosted_backup_agrees() {
    use drctl_sim::ports::SimManagement;
    use drctl_workflows::ports::{ManagementCluster, ETCD_WRITERS};
    use std::io::Read;
    for (minor, seed) in [(5, 1), (4, 2), (6, 3)] {
        let mut w = drctl_sim::scenario::build("hosted-healthy", seed).unwrap();
        let key = drctl_sim::hosted::key("clusters", "example");
        w.hosted.as_mut().unwrap().clusters.get_mut(&key).unwrap().etcd.as_mut().unwrap().etcd_minor = minor;
        let p = Pair::of(&w);
        let sim = SimManagement(p.direct.clone());
        let at = |what: &str| format!("hosted-healthy seed {seed}, etcd 3.{minor}: {what}");
        let both = |what: &str, f: &dyn Fn(&dyn ManagementCluster) -> PortResult<String>| agree(&at(what), &p.adapter, &sim, f, |s| s);
        // Both worlds at the same time, `secs` from the later one's now.
        let later = |secs: u64| {
            let t = std::cmp::max(p.served.now(), p.direct.now()).plus(std::time::Duration::from_secs(secs));
            p.served.advance_to(t);
            p.direct.advance_to(t);
        };
        let same_hosted = |after: &str| {
            let (a, b) = (p.served.read(hosted_backup_summary), p.direct.read(hosted_backup_summary));
            assert_eq!(a, b, "{}: the served world and the direct one differ", at(after));
        };
        let writers = |m: &dyn ManagementCluster| m.control_plane_deployments("clusters", "example", &ETCD_WRITERS);

        // The guards: available, etcd managed, aescbc with its key's Secret.
        both("backup facts", &|m| m.hosted_cluster_backup_facts("clusters", "example").map(|v| format!("{v:?}")));
        both("backup facts of a cluster that is none", &|m| m.hosted_cluster_backup_facts("clusters", "nope").map(|v| format!("{v:?}")));
        let facts = p.adapter.hosted_cluster_backup_facts("clusters", "example").unwrap();
        assert_eq!(
            (facts.available.as_deref(), facts.etcd_management.as_str(), facts.encryption_type.as_deref()),
            (Some("True"), "Managed", Some("aescbc")),
            "{}",
            at("backup facts")
        );
        both("writers", &|m| writers(m).map(|v| format!("{v:?}")));
        both("a deployment that is none", &|m| {
            m.control_plane_deployments("clusters", "example", &["kube-apiserver", "nope"]).map(|v| format!("{v:?}"))
        });

        // Paused, so that the control-plane operator leaves the writers at zero.
        both("pause", &|m| {
            m.set_hosted_cluster_paused("clusters", "example", Some("true"), Some("differential")).map(|v| format!("{v:?}"))
        });
        later(300);
        both("control plane paused", &|m| m.control_plane_paused_until("clusters", "example").map(|v| format!("{v:?}")));
        assert_eq!(sim.control_plane_paused_until("clusters", "example").unwrap().as_deref(), Some("true"), "{}", at("paused"));
        later(0);
        for d in ETCD_WRITERS {
            both(&format!("scale {d} to 0"), &|m| m.scale_control_plane_deployment("clusters", "example", d, 0).map(|v| format!("{v:?}")));
        }
        both("writers scaled", &|m| writers(m).map(|v| format!("{v:?}")));
        later(120);
        both("writers settled", &|m| writers(m).map(|v| format!("{v:?}")));
        let settled = p.adapter.control_plane_deployments("clusters", "example", &ETCD_WRITERS).unwrap();
        assert!(settled.iter().all(|d| (d.replicas, d.status_replicas, d.ready_replicas) == (0, 0, 0)), "{}: {settled:?}", at("at zero"));
        both("scale a deployment that is none", &|m| {
            m.scale_control_plane_deployment("clusters", "example", "nope", 0).map(|v| format!("{v:?}"))
        });
        same_hosted("the writers' scale");

        // The snapshot: saved on etcd-0's volume, read, streamed out, removed.
        let path = "/var/lib/data/snapshot.db";
        later(0);
        both("snapshot save", &|m| m.hosted_etcd_snapshot_save("clusters", "example", "etcd-0", path).map(|v| format!("{v:?}")));
        both("snapshot status", &|m| m.hosted_etcd_snapshot_status("clusters", "example", "etcd-0", path).map(|v| format!("{v:?}")));
        let status = p.adapter.hosted_etcd_snapshot_status("clusters", "example", "etcd-0", path).unwrap();
        // The tools of this etcd image, as the served pod runs them.
        let run = |words: &[&str]| {
            let argv: Vec<String> = words.iter().map(|w| w.to_string()).collect();
            drctl_twin::exec::hosted_etcd_command(&p.served, "clusters", "example", "etcd-0", &argv).expect("a backup command")
        };
        assert_eq!(run(&["test", "-x", "/usr/bin/etcdutl"]).code, i32::from(minor < 5), "{}", at("etcdutl in the image"));
        let etcdctl_status = run(&["env", "ETCDCTL_API=3", "etcdctl", "snapshot", "status", path, "-w", "json"]);
        let stderr = String::from_utf8_lossy(&etcdctl_status.stderr).into_owned();
        match minor {
            6 => assert!(etcdctl_status.code == 1 && stderr.contains("unknown command \"status\" for \"etcdctl snapshot\""), "{stderr}"),
            5 => assert!(etcdctl_status.code == 0 && stderr.starts_with("Deprecated: Use `etcdutl snapshot status` instead."), "{stderr}"),
            _ => assert!(etcdctl_status.code == 0 && stderr.is_empty(), "{stderr}"),
        }
        assert!(status.total_key > 0 && status.total_size > 0, "{}: {status:?}", at("a snapshot with keys"));
        let streamed = |m: &dyn ManagementCluster| -> Vec<u8> {
            let mut bytes = Vec::new();
            m.open_hosted_etcd_file("clusters", "example", "etcd-0", path).unwrap().read_to_end(&mut bytes).unwrap();
            bytes
        };
        let (through_adapter, direct) = (streamed(&p.adapter), streamed(&sim));
        let want = drctl_sim::hosted_etcd::snapshot_bytes(&status);
        assert_eq!(through_adapter.len() as u64, status.total_size, "{}", at("the streamed file's size"));
        assert!(through_adapter == want, "{}: the bytes streamed through the exec API are not the snapshot's", at("cat"));
        assert!(direct == want, "{}: the sim port's bytes are not the snapshot's", at("cat"));
        let digest = |b: &[u8]| drctl_workflows::ports::SecretBytes::new(b.to_vec()).fingerprint();
        assert_eq!(digest(&through_adapter), digest(&want), "{}", at("sha256"));
        let opened = |m: &dyn ManagementCluster, pod: &str, file: &str| {
            m.open_hosted_etcd_file("clusters", "example", pod, file).map(|_| "opened".to_string())
        };
        both("open a file that is none", &|m| opened(m, "etcd-0", "/var/lib/data/none.db"));
        both("open the file on another member", &|m| opened(m, "etcd-1", path));
        both("open the file in a pod that is none", &|m| opened(m, "etcd-9", path));
        both("status of a file that is none", &|m| {
            m.hosted_etcd_snapshot_status("clusters", "example", "etcd-0", "/var/lib/data/none.db").map(|v| format!("{v:?}"))
        });
        both("snapshot save off the volume", &|m| {
            m.hosted_etcd_snapshot_save("clusters", "example", "etcd-0", "/tmp/snapshot.db").map(|v| format!("{v:?}"))
        });
        both("snapshot save in a pod that is none", &|m| {
            m.hosted_etcd_snapshot_save("clusters", "example", "etcd-9", path).map(|v| format!("{v:?}"))
        });
        same_hosted("the snapshot");
        both("remove", &|m| m.remove_hosted_etcd_file("clusters", "example", "etcd-0", path).map(|v| format!("{v:?}")));
        both("remove again", &|m| m.remove_hosted_etcd_file("clusters", "example", "etcd-0", path).map(|v| format!("{v:?}")));
        both("status after the remove", &|m| {
            m.hosted_etcd_snapshot_status("clusters", "example", "etcd-0", path).map(|v| format!("{v:?}"))
        });
        same_hosted("the remove");

        // The encryption key, by the Secret the HostedCluster names.
        let secret = facts.active_key_secret.clone().expect("aescbc names its key");
        both("encryption key", &|m| m.encryption_key("clusters", &secret).map(|k| k.fingerprint()));
        let got = p.adapter.encryption_key("clusters", &secret).unwrap();
        assert_eq!(got.expose(), drctl_sim::scenario::hosted_encryption_key(seed).as_slice(), "{}", at("the key's bytes"));
        both("a secret that is none", &|m| m.encryption_key("clusters", "nope").map(|k| k.fingerprint()));

        // The backup's end: the writers back, the pause lifted.
        for d in ETCD_WRITERS {
            both(&format!("scale {d} back"), &|m| m.scale_control_plane_deployment("clusters", "example", d, 3).map(|v| format!("{v:?}")));
        }
        both("unpause", &|m| m.set_hosted_cluster_paused("clusters", "example", None, None).map(|v| format!("{v:?}")));
        later(600);
        both("writers back", &|m| writers(m).map(|v| format!("{v:?}")));
        both("backup facts after", &|m| m.hosted_cluster_backup_facts("clusters", "example").map(|v| format!("{v:?}")));
        same_hosted("the backup's end");
        p.same_cluster(&at("the backup"));
    }
}
