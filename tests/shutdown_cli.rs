//! `cluster-shutdown` and `cluster-restart` through the binary (OpenShift Container Platform
//! 4.5 Backup and restore ch.3 and ch.4): on the built-in scenarios, and one after the other on
//! one persistent simulated cluster.

mod common;
use common::*;

/// Every host of the run's world powered off.
fn all_off(store: &std::path::Path) -> bool {
    let w: drctl_sim::world::World = drctl_sim::Sim::load(&world_file(store)).unwrap().read(|w| w.clone());
    w.hosts.values().all(|h| !h.powered)
}

#[test]
fn shutdown_backs_up_then_powers_off_every_machine_workers_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["run", "cluster-shutdown", "--sim", "healthy", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(all_off(store), "{}", text(&o));
    // The backup child succeeded before anything was shut down; the workers went first.
    assert_eq!(json(&drctl(store, &["status", "1.1", "-o", "json"]))["status"], "succeeded");
    let h = history(store, "1");
    let order: Vec<&str> = h.iter().filter_map(|e| e["to"].as_str()).filter(|t| t.starts_with("ShutDown(")).collect();
    assert_eq!(order, ["ShutDown(worker-0)", "ShutDown(worker-1)", "ShutDown(master-0)", "ShutDown(master-1)", "ShutDown(master-2)"]);
}

#[test]
fn a_restart_planned_past_the_kubelet_signer_is_warned_about_at_the_gate_and_rejecting_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let (mut run, shown) = run_to_gate(store, &["run", "cluster-shutdown", "--sim", "healthy", "--restart-by", "2027-03-01T00:00:00Z"]);
    assert!(shown.contains("WARNING: the kubelet certificates' signer expires at 2026-11-26"), "{shown}");
    let o = drctl(store, &["reject", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(run.wait().unwrap().code(), Some(5), "a rejected gate ends the run aborted");
    let w: drctl_sim::world::World = drctl_sim::Sim::load(&world_file(store)).unwrap().read(|w| w.clone());
    assert!(w.hosts.values().all(|h| h.powered && h.shutdown_at.is_none()), "a rejected shutdown shut something down");
}

#[test]
fn restart_brings_a_shut_down_cluster_back_and_both_work_on_one_persistent_world() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["run", "cluster-restart", "--sim", "shut-down", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(sim_status(store)["healthy"], true);

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    for args in [
        &["sim", "new", "healthy", "--name", "lab"][..],
        &["run", "cluster-shutdown", "--sim-world", "lab", "--yes"],
        &["sim", "power-on", "lab"],
        &["run", "cluster-restart", "--sim-world", "lab", "--yes"],
    ] {
        let o = drctl(store, args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
    }
    let o = drctl(store, &["sim", "status", "--run", "2", "-o", "json"]);
    let st = json(&o);
    assert_eq!(st["healthy"], true, "{st:#}");
    // Nothing is off any more: powering on again says so.
    let o = drctl(store, &["sim", "power-on", "lab"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("powered on already"), "{}", text(&o));
}
