//! Per-procedure simulation tests: each procedure against the simulated cluster, happy path and
//! guards, driven by the real engine on a temporary store.

use drctl_runtime::executor::{Engine, NewRun};
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
                pre_approve: if yes { vec!["start".into()] } else { vec![] },
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
