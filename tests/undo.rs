//! Abort inside restore-cluster-state's quorum-guard-off window: the guard comes back on.

use drctl_runtime::executor::{Engine, NewRun};
use drctl_runtime::store::Store;
use drctl_runtime::{Clock, RetryPolicy, RunStatus};
use drctl_sim::Sim;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn abort_with_the_quorum_guard_off_turns_it_back_on_then_stops() {
    let dir = tempfile::tempdir().unwrap();
    let eng =
        Arc::new(Engine::new(Arc::new(Store::open(dir.path()).unwrap()), Arc::new(drctl_workflows::registry()), RetryPolicy::default()));
    let sim = Sim::scenario("quorum-loss", 3).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(sim.clock());
    let ports = Arc::new(sim.ports());
    let rec = eng
        .create_run(
            NewRun {
                procedure: "restore-cluster-state".into(),
                params: serde_json::json!({"backup": "nightly"}),
                seed: 3,
                deadline: Duration::from_secs(86_400),
                pre_approve: vec!["start".into()],
                approver: "test".into(),
                labels: Default::default(),
            },
            &*clock,
        )
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Step until the run has just turned the guard off.
    let mut steps = 0;
    loop {
        let r = rt.block_on(eng.step_once(&rec.id, ports.clone(), clock.clone())).unwrap();
        steps += 1;
        assert!(steps < 2_000 && !r.status.is_terminal(), "never reached the guard-off window: {r:?}");
        if r.state_name == "ForceEtcdRedeployment" {
            break;
        }
    }
    assert!(!sim.status().quorum_guard, "the guard is off in this window");
    eng.abort(&rec.id, "sre", &*clock).unwrap();
    let fin = rt.block_on(eng.drive(&rec.id, ports, clock, Arc::new(|_| {}))).unwrap();
    assert_eq!(fin.status, RunStatus::Aborted, "{fin:?}");
    assert!(sim.status().quorum_guard, "abort must leave the quorum guard on");
    let h = eng.store().history(&rec.id).unwrap();
    assert!(h.iter().any(|e| e.to == "UndoQuorumGuard"), "the undo step ran");
}
