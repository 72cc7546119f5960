//! etcd-backup's guards against the simulator, in process: too young a cluster, operators
//! progressing (refused, or taken with --force and marked __POSSIBLY_DIRTY__), a host without a
//! healthy member.

use drctl_runtime::executor::{Engine, NewRun};
use drctl_runtime::store::Store;
use drctl_runtime::{Clock, RetryPolicy, RunRecord, RunStatus};
use drctl_sim::Sim;
use drctl_workflows::ports::Operator;
use std::sync::Arc;
use std::time::Duration;

fn backup(sim: &Sim, params: serde_json::Value) -> RunRecord {
    let dir = tempfile::tempdir().unwrap();
    let eng = Engine::new(Arc::new(Store::open(dir.path()).unwrap()), Arc::new(drctl_workflows::registry()), RetryPolicy::default());
    let clock: Arc<dyn Clock> = Arc::new(sim.clock());
    let rec = eng
        .create_run(
            NewRun {
                procedure: "etcd-backup".into(),
                params,
                seed: 1,
                deadline: Duration::from_secs(3600),
                pre_approve: vec![],
                approver: "test".into(),
                labels: Default::default(),
            },
            &*clock,
        )
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(eng.drive(&rec.id, Arc::new(sim.ports()), clock, Arc::new(|_| {}))).unwrap()
}

fn backups(sim: &Sim) -> Vec<String> {
    sim.read(|w| w.backups.keys().cloned().collect())
}

#[test]
fn refuses_a_cluster_younger_than_its_first_certificate_rotation() {
    let sim = Sim::scenario("healthy", 1).unwrap();
    sim.write(|w| w.installed_at = drctl_runtime::Timestamp(w.now.0 - 3 * 3_600_000));
    let r = backup(&sim, serde_json::json!({}));
    assert_eq!(r.status, RunStatus::Halted);
    assert!(r.outcome.unwrap().contains("first certificate rotation"));
    assert!(backups(&sim).is_empty(), "nothing was written");
}

/// An operator mid-rollout: one node is still a revision behind, and stays so for hours.
fn progressing(sim: &Sim) {
    sim.write(|w| {
        let far = w.now.plus(Duration::from_secs(6 * 3600));
        let op = w.api_mut().operators.get_mut(&Operator::KubeApiServer).unwrap();
        op.latest_revision += 1;
        op.node_revisions.insert("master-0".into(), op.latest_revision);
        op.next_install_at = Some(far);
    });
}

#[test]
fn refuses_while_operators_progress_unless_forced_then_marks_the_backup_dirty() {
    let sim = Sim::scenario("healthy", 1).unwrap();
    progressing(&sim);
    let r = backup(&sim, serde_json::json!({"name": "b1"}));
    assert_eq!(r.status, RunStatus::Halted, "{r:?}");
    assert!(r.outcome.unwrap().contains("operators are progressing"));
    assert!(backups(&sim).is_empty());

    let r = backup(&sim, serde_json::json!({"name": "b1", "force": true}));
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(backups(&sim), vec!["b1__POSSIBLY_DIRTY__".to_string()]);
    assert!(sim.read(|w| w.backups["b1__POSSIBLY_DIRTY__"].info.as_ref().unwrap().possibly_dirty));
}

#[test]
fn refuses_a_named_host_without_a_healthy_member() {
    let sim = Sim::scenario("healthy", 1).unwrap();
    // master-2 lost its etcd data: its member crashloops, the other two keep quorum.
    sim.write(|w| {
        w.hosts.get_mut("master-2").unwrap().etcd_data = None;
        w.advance(60_000);
    });
    assert!(sim.status().api_available);
    let r = backup(&sim, serde_json::json!({"host": "master-2"}));
    assert_eq!(r.status, RunStatus::Halted, "{r:?}");
    assert!(r.outcome.unwrap().contains("host master-2 has no healthy etcd member"));
    assert!(backups(&sim).is_empty());
    // Without a host named, a healthy one is chosen.
    let r = backup(&sim, serde_json::json!({}));
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
}
