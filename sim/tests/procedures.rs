//! Per-procedure simulation tests: each procedure against the simulated cluster, happy path and
//! guards, driven by the real engine on a temporary store.

use drctl_runtime::executor::{Engine, NewRun, Tick};
use drctl_runtime::store::Store;
use drctl_runtime::{Clock, RetryPolicy, RunRecord, RunStatus};
use drctl_sim::Sim;
use std::sync::Arc;
use std::time::Duration;

fn engine(dir: &std::path::Path) -> Arc<Engine<drctl_workflows::ports::Ports>> {
    let store = Arc::new(Store::open(dir).expect("store opens"));
    Arc::new(Engine::new(store, Arc::new(drctl_workflows::registry()), RetryPolicy::default()))
}

fn run(sim: &Sim, procedure: &str, params: serde_json::Value, yes: bool) -> (RunRecord, Vec<drctl_runtime::HistoryEvent>) {
    let dir = tempfile::tempdir().unwrap();
    let eng = engine(dir.path());
    let clock: Arc<dyn Clock> = Arc::new(sim.clock());
    let rec = eng
        .create_run(
            NewRun {
                procedure: procedure.into(),
                params,
                seed: 7,
                deadline: Duration::from_secs(24 * 3600),
                pre_approve: if yes { vec!["start".into(), "remove-member".into()] } else { vec![] },
                approver: "test".into(),
                labels: Default::default(),
            },
            &*clock,
        )
        .expect("run created");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let fin = rt.block_on(eng.drive(&rec.id, Arc::new(sim.ports()), clock, Arc::new(|_| {}))).expect("drive");
    let hist = eng.store().history(&rec.id).unwrap();
    (fin, hist)
}

fn show(hist: &[drctl_runtime::HistoryEvent]) -> String {
    hist.iter()
        .map(|e| format!("{} {:?} {} -> {} {}", e.at, e.outcome, e.from, e.to, e.detail.clone().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn restore_cluster_state_recovers_quorum_loss() {
    let sim = Sim::scenario("quorum-loss", 1).unwrap();
    let (fin, hist) = run(&sim, "restore-cluster-state", serde_json::json!({"backup": "nightly"}), true);
    let st = sim.status();
    assert_eq!(fin.status, RunStatus::Succeeded, "{}\n{:#?}\n{}", show(&hist), st, sim.read(|w| w.log.join("\n")));
    assert!(st.healthy, "{st:#?}");
    // The approved backup, not the later one left in the recovery host's backup directory
    // (cluster-restore.sh takes the newest files it finds there).
    let approved = sim.read(|w| w.backups["nightly"].info.as_ref().unwrap().snapshot.revision);
    assert_eq!(st.restored_from_revision, Some(approved));
    // The workers' kubelet certificates were issued after the backup: step 9.2 renewed them too.
    for w in ["worker-0", "worker-1"] {
        let step = format!("RemoveKubeletPki({w})");
        assert!(hist.iter().any(|e| e.to == step), "no {step}:\n{}", show(&hist));
    }
}

fn example(sim: &Sim) -> drctl_sim::hosted::HostedCluster {
    sim.read(|w| w.hosted.as_ref().unwrap().clusters["clusters/example"].clone())
}

#[test]
fn hosted_pause_reconciliation_pauses_waits_for_the_operator_and_unpauses_only_its_own_pause() {
    let sim = Sim::scenario("hosted-healthy", 1).unwrap();
    let pause = serde_json::json!({"namespace": "clusters", "name": "example", "node_pools": true});
    let (fin, hist) = run(&sim, "hosted-pause-reconciliation", pause, false);
    assert_eq!(fin.status, RunStatus::Succeeded, "{}", show(&hist));
    let hc = example(&sim);
    assert_eq!(hc.cluster.paused_until.as_deref(), Some("true"));
    assert_eq!(hc.cluster.paused_by.as_deref(), Some("drctl run 1"));
    assert_eq!(hc.hcp_paused_until.as_deref(), Some("true"), "the run waited until the operator copied it");
    assert_eq!(hc.cluster.reconciliation_active.status, "False");
    assert!(sim.read(|w| w.hosted.as_ref().unwrap().node_pools.values().all(|p| p.pool.paused_until.as_deref() == Some("true"))));
    // The run waited for the operator: at least one re-check of the condition.
    assert!(hist.iter().any(|e| e.outcome == drctl_runtime::Outcome::Waiting), "{}", show(&hist));
    assert!(sim.status().hosted_clusters[0].paused_until.is_some());

    let unpause = serde_json::json!({"namespace": "clusters", "name": "example", "node_pools": true, "unpause": true});
    let (fin, hist) = run(&sim, "hosted-pause-reconciliation", unpause.clone(), false);
    assert_eq!(fin.status, RunStatus::Succeeded, "{}", show(&hist));
    let hc = example(&sim);
    assert_eq!((hc.cluster.paused_until, hc.cluster.paused_by, hc.hcp_paused_until), (None, None, None));
    assert_eq!(hc.cluster.reconciliation_active.status, "True");
    assert!(sim.status().healthy, "{:#?}", sim.status());

    // Someone else's pause is not drctl's to clear.
    let sim = Sim::scenario("hosted-paused-by-other", 1).unwrap();
    let before = example(&sim);
    let (fin, hist) = run(&sim, "hosted-pause-reconciliation", unpause, false);
    assert_eq!(fin.status, RunStatus::Halted, "{}", show(&hist));
    let why = fin.outcome.unwrap();
    assert!(why.contains("a pause drctl did not set") && why.contains("oadp.openshift.io/paused-by"), "{why}");
    assert_eq!(example(&sim), before, "the foreign pause is untouched");
}

/// The harsher truth the restore guards against: etcd members nobody stopped keep serving their
/// old cluster beside a restored one, and the world records the split brain.
#[test]
fn a_restore_beside_an_etcd_that_still_serves_is_split_brain() {
    let sim = Sim::scenario("api-unreachable", 1).unwrap();
    let effects = sim.write(|w| {
        let files = w.backups["nightly"].files.clone();
        let h = w.host_mut("master-0");
        for (name, f) in files {
            h.files.insert(format!("/home/core/restore/{name}"), f);
        }
        w.restore("master-0", "/home/core/restore", "by-hand").unwrap();
        w.advance(10 * 60_000);
        w.effects.clone()
    });
    let split = effects.iter().find(|e| matches!(e.kind, drctl_sim::world::EffectKind::SplitBrain { .. }));
    assert!(split.is_some(), "no split brain recorded: {:#?}", sim.read(|w| w.log.clone()));
    assert_eq!(sim.read(|w| w.serving_clusters().len()), 2);
}

/// With --force the quorum check lets a restore of a healthy cluster go on, but hosts drctl
/// cannot reach whose etcd answers are never skipped silently: the run stops at a gate naming
/// them, before anything is changed.
#[test]
fn a_forced_restore_stops_at_the_unreachable_etcd_gate_before_changing_anything() {
    let sim = Sim::scenario("api-unreachable", 1).unwrap();
    let before = sim.read(drctl_sim::state_digest);
    let dir = tempfile::tempdir().unwrap();
    let eng = engine(dir.path());
    let clock = sim.clock();
    let new = NewRun {
        procedure: "restore-cluster-state".into(),
        params: serde_json::json!({"backup": "nightly", "force": true}),
        seed: 7,
        deadline: Duration::from_secs(24 * 3600),
        pre_approve: vec!["start".into()],
        approver: "test".into(),
        labels: Default::default(),
    };
    let rec = eng.create_run(new, &clock).expect("run created");
    let ports = sim.ports();
    let gated = (0..10_000)
        .find_map(|_| match eng.tick(&rec.id, &ports, &clock).expect("tick") {
            Tick::AwaitDecision(r) => Some(r),
            Tick::SleepUntil(t) => {
                sim.advance_to(t);
                None
            }
            Tick::Stopped(r) => panic!("stopped: {:?} {:?}", r.status, r.outcome),
            Tick::Committed(_) => None,
        })
        .expect("reaches a gate");
    let gate = gated.pending_gate.expect("a pending gate");
    assert_eq!(gate.gate, "unreachable-etcd");
    assert!(gate.prompt.contains("master-1, master-2") && gate.prompt.contains("split brain"), "{}", gate.prompt);
    assert!(gate.evidence.iter().any(|e| e.contains("healthy")), "{:?}", gate.evidence);
    assert_eq!(sim.read(drctl_sim::state_digest), before, "the world changed before the gate");
}

/// VRRP: a VIP whose holder's keepalived stopped is taken by another host's keepalived only
/// after the master-down interval, not at once (what makes the restore's step 6 a wait).
#[test]
fn keepalived_takes_a_free_vip_over_after_a_few_seconds() {
    use drctl_sim::world::Container;
    use drctl_workflows::ports::StaticPod;
    let sim = Sim::scenario("quorum-loss-reachable", 1).unwrap();
    let holds = |host: &str| sim.read(|w| w.hosts[host].addresses.iter().any(|(a, _)| a == "10.0.0.5"));
    assert!(holds("master-1") && !holds("master-0"));
    sim.write(|w| {
        let now = w.now;
        let h = w.host_mut("master-1");
        h.manifests.remove(&StaticPod::Keepalived);
        h.containers.insert(StaticPod::Keepalived, Container::Stopping { at: now });
        h.addresses.retain(|(a, _)| a != "10.0.0.5");
        w.advance(500);
    });
    assert!(!holds("master-0"), "taken over at once");
    sim.write(|w| w.advance(11_000));
    assert!(holds("master-0"), "not taken over within the master-down interval: {:?}", sim.read(|w| w.log.clone()));
}

/// Runbook step 6: the API VIP was on master-1; once step 4 stopped its keepalived, the restore
/// waits for the recovery host's keepalived to take the VIP over instead of halting.
#[test]
fn the_restore_waits_for_the_recovery_host_to_take_the_api_vip_over() {
    use drctl_runtime::Outcome;
    let params = serde_json::json!({"backup": "nightly", "api_vip": "10.0.0.5", "ingress_vip": "10.0.0.7"});
    let mut waited = vec![];
    for seed in 1..=12 {
        let sim = Sim::scenario("quorum-loss-reachable", seed).unwrap();
        let (fin, hist) = run(&sim, "restore-cluster-state", params.clone(), true);
        assert_eq!(fin.status, RunStatus::Succeeded, "seed {seed}:\n{}", show(&hist));
        assert!(sim.read(|w| w.log.iter().any(|l| l.contains("keepalived on master-0 took over VIP 10.0.0.5"))), "seed {seed}");
        if hist.iter().any(|e| e.outcome == Outcome::Waiting && e.from == "CheckRecoveryVip") {
            waited.push(seed);
        }
    }
    assert!(!waited.is_empty(), "no seed made step 6 wait for the VIP takeover");
}

/// Moving a manifest or the etcd data directory answers as the real `mv` the SSH adapter runs:
/// moved, "already moved" when only the destination exists, not found when neither does.
#[test]
fn moves_answer_as_the_real_command_does() {
    use drctl_workflows::ports::{HostOp, HostOutput, PortError, StaticPod};
    let sim = Sim::scenario("quorum-loss-reachable", 1).unwrap();
    let ports = sim.ports();
    let run = |op: HostOp| ports.hosts.run("master-1", &op);
    assert_eq!(run(HostOp::MoveManifestOut(StaticPod::Etcd)).unwrap(), HostOutput::Moved { moved: true });
    assert_eq!(run(HostOp::MoveManifestOut(StaticPod::Etcd)).unwrap(), HostOutput::Moved { moved: false });
    // master-1 lost /var/lib/etcd: nothing to move, and `mv` says so.
    let gone = run(HostOp::MoveEtcdDataDirAside);
    assert!(matches!(&gone, Err(PortError::NotFound(m)) if m.contains("neither /var/lib/etcd")), "{gone:?}");
    sim.write(|w| {
        w.host_mut("master-1").manifests.remove(&StaticPod::KubeApiServer);
        w.host_mut("master-1").manifests.remove(&StaticPod::KubeScheduler);
    });
    let absent = run(HostOp::MoveManifestOut(StaticPod::KubeApiServer));
    assert!(matches!(&absent, Err(PortError::NotFound(m)) if m.contains("kube-apiserver-pod.yaml")), "{absent:?}");
    assert_eq!(run(HostOp::MoveManifestIn(StaticPod::KubeControllerManager)).unwrap(), HostOutput::Moved { moved: false });
    let back = run(HostOp::MoveManifestIn(StaticPod::KubeScheduler));
    assert!(matches!(back, Err(PortError::NotFound(_))), "{back:?}");
}

/// Step 11 approves a kubelet-serving CSR only when it asks for nothing but its node's own names:
/// one restored from the backup asking also for the API's name and VIP stays pending, and the
/// restore still completes.
#[test]
fn a_serving_csr_asking_for_foreign_names_is_not_approved() {
    use drctl_sim::csr_request::{kubelet_request_pem, AltName};
    use drctl_sim::world::{CsrObj, SimFile};
    use drctl_workflows::ports::CsrKind;
    let sim = Sim::scenario("quorum-loss", 3).unwrap();
    let rogue = "csr-rogue";
    sim.write(|w| {
        let names = [AltName::Dns("master-0"), AltName::Dns("api.ocp.example.com"), AltName::Ip([10, 0, 0, 10].into())];
        let csr = CsrObj {
            name: rogue.into(),
            kind: CsrKind::KubeletServing,
            signer: "kubernetes.io/kubelet-serving".into(),
            requestor: "system:node:master-0".into(),
            node: "master-0".into(),
            approved: false,
            created_at: w.now,
            request: kubelet_request_pem("master-0", &names),
        };
        for f in w.backups.get_mut("nightly").unwrap().files.values_mut() {
            if let SimFile::Snapshot { data, .. } = f {
                data.csrs.insert(rogue.into(), csr.clone());
            }
        }
    });
    let (fin, hist) = run(&sim, "restore-cluster-state", serde_json::json!({"backup": "nightly"}), true);
    assert_eq!(fin.status, RunStatus::Succeeded, "{}", show(&hist));
    let (present, approved, others_pending) = sim.read(|w| {
        let c = w.api().csrs.get(rogue);
        (c.is_some(), c.is_some_and(|c| c.approved), w.api().csrs.values().filter(|c| c.name != rogue && !c.approved).count())
    });
    assert!(present, "the restored API lost the CSR");
    assert!(!approved, "a serving CSR for api.ocp.example.com was approved");
    assert_eq!(others_pending, 0, "the kubelets' own CSRs were not all approved");
}

/// Step 11.4 approves kubelet-serving CSRs on user-provisioned clusters only: on an
/// installer-provisioned one the cluster machine approver signs them, and drctl leaves them be.
#[test]
fn serving_csrs_are_approved_by_the_run_only_on_user_provisioned_clusters() {
    use drctl_sim::world::EffectKind;
    use drctl_workflows::ports::CsrKind;
    for (scenario, run_approves_serving) in [("quorum-loss", false), ("quorum-loss-upi", true)] {
        let sim = Sim::scenario(scenario, 2).unwrap();
        let (fin, hist) = run(&sim, "restore-cluster-state", serde_json::json!({"backup": "nightly"}), true);
        assert_eq!(fin.status, RunStatus::Succeeded, "{scenario}:\n{}", show(&hist));
        let st = sim.status();
        assert!(st.healthy, "{scenario}: {st:#?}");
        let by_run = sim.read(|w| {
            let approved: Vec<&str> = w.effects.iter().filter(|e| e.kind == EffectKind::CsrApproved).map(|e| e.target.as_str()).collect();
            approved.iter().filter(|n| w.api().csrs.get(**n).is_some_and(|c| c.kind == CsrKind::KubeletServing)).count()
        });
        assert_eq!(by_run > 0, run_approves_serving, "{scenario}: the run approved {by_run} serving CSRs");
    }
}

/// The inventory's SSH addresses are not the nodes' InternalIPs (bare metal hosts reached over a
/// management network): step 14 waits for ovnkube-master to forget the InternalIPs the API
/// records, not the addresses drctl logs in to.
#[test]
fn step_14_waits_on_the_internal_ips_not_the_ssh_addresses() {
    use drctl_runtime::Outcome;
    let sim = Sim::scenario("quorum-loss-baremetal", 1).unwrap();
    let params = serde_json::json!({"backup": "nightly", "api_vip": "10.0.0.5", "ingress_vip": "10.0.0.7"});
    let (fin, hist) = run(&sim, "restore-cluster-state", params, true);
    assert_eq!(fin.status, RunStatus::Succeeded, "{}", show(&hist));
    let waits: Vec<String> = hist
        .iter()
        .filter(|e| e.outcome == Outcome::Waiting && e.from == "WaitOvnForgetsIps")
        .map(|e| e.detail.clone().unwrap_or_default())
        .collect();
    assert!(waits.iter().any(|d| d.contains("10.0.0.11") || d.contains("10.0.0.12")), "{waits:?}\n{}", show(&hist));
    assert!(waits.iter().all(|d| !d.contains("192.168.111.")), "{waits:?}");
    assert!(sim.status().healthy);
}

/// `--expect-back`: a member whose etcd comes back within the wait is left alone (the runbook's
/// "if you expect it back soon, you do not need to replace it"); one that does not is replaced
/// once the wait is over.
#[test]
fn etcd_member_triage_waits_for_a_member_expected_back() {
    use drctl_sim::world::{HostWindow, Window, MINUTE};
    let mut w = drctl_sim::scenario::healthy(4);
    let from = w.now;
    let until = from.plus(Duration::from_millis(20 * MINUTE));
    w.faults.etcd_down.push(HostWindow { host: "master-1".into(), window: Window { from, until } });
    w.touch();
    w.advance(2 * MINUTE);
    let sim = Sim::new(w);
    let (fin, hist) = run(&sim, "etcd-member-triage", serde_json::json!({ "expect_back_secs": 1800 }), true);
    assert_eq!(fin.status, RunStatus::Succeeded, "{}", show(&hist));
    assert!(fin.outcome.as_deref().unwrap_or("").contains("came back on its own"), "{:?}", fin.outcome);
    assert!(hist.iter().any(|e| e.to.starts_with("ExpectBack(master-1)")), "{}", show(&hist));
    assert!(fin.children.is_empty(), "nothing was replaced");
    assert!(sim.read(|w| w.effects.iter().all(|e| !e.kind.destructive())), "the triage changed the cluster");

    // Not back within the wait: the replacement runs once it is over.
    let sim = Sim::scenario("member-machine-stopped", 4).unwrap();
    let (fin, hist) = run(&sim, "etcd-member-triage", serde_json::json!({ "expect_back_secs": 600 }), true);
    assert_eq!(fin.status, RunStatus::Succeeded, "{}", show(&hist));
    assert_eq!(fin.children.len(), 1, "one replacement");
    let waited = hist.iter().find(|e| e.to.starts_with("DetermineState")).map(|e| e.at).unwrap();
    let started = hist.first().unwrap().at;
    assert!(waited.since(started) >= Duration::from_secs(600), "acted after {:?}", waited.since(started));
}

/// A member recovery refuses, deleting nothing, where a PVC delete could lose data: the one member
/// of a SingleReplica control plane, or one of two failed members.
#[test]
fn hosted_etcd_member_recover_refuses_single_replica_and_a_lost_quorum() {
    use drctl_sim::hosted_etcd::{EtcdPodPhase, HostedEtcd, MemberData, SINGLE_REPLICA};
    let params = serde_json::json!({"namespace": "clusters", "name": "example"});
    fn fail(e: &mut HostedEtcd, pod: &str) {
        let slot = e.slots.iter_mut().find(|s| s.pod_name() == pod).unwrap();
        slot.pvc.as_mut().unwrap().data = MemberData::Corrupt;
        slot.pod.as_mut().unwrap().phase = EtcdPodPhase::CrashLoop;
    }
    fn single_replica(e: &mut HostedEtcd) {
        *e = HostedEtcd::healthy(SINGLE_REPLICA, 7);
        fail(e, "etcd-0");
    }
    fn two_failed(e: &mut HostedEtcd) {
        fail(e, "etcd-0");
        fail(e, "etcd-1");
    }
    let cases = [("SingleReplica", single_replica as fn(&mut HostedEtcd)), ("more than one etcd member", two_failed)];
    for (want, breaks) in cases {
        let mut w = drctl_sim::scenario::build("hosted-healthy", 1).unwrap();
        breaks(w.hosted.as_mut().unwrap().clusters.get_mut("clusters/example").unwrap().etcd.as_mut().unwrap());
        let before = w.hosted.as_ref().unwrap().clusters["clusters/example"].etcd.clone();
        let sim = Sim::new(w);
        let (fin, hist) = run(&sim, "hosted-etcd-member-recover", params.clone(), true);
        assert_eq!(fin.status, RunStatus::Halted, "{}", show(&hist));
        let why = fin.outcome.unwrap();
        assert!(why.contains(want) && why.contains("§8.3"), "{why}");
        assert_eq!(example(&sim).etcd, before, "a refusal changed the etcd");
    }
}
