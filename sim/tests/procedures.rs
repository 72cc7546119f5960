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
}
