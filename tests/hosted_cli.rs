//! hosted-pause-reconciliation through the real `drctl` binary against the simulated
//! management cluster.

mod common;
use common::*;

fn example(st: &serde_json::Value) -> serde_json::Value {
    let hcs = st["hosted_clusters"].as_array().unwrap_or_else(|| panic!("no hosted_clusters in {st:#}"));
    hcs.iter().find(|h| h["name"] == "example").expect("clusters/example").clone()
}

#[test]
fn pause_then_status_shows_it_and_unpause_clears_only_a_pause_drctl_set() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["run", "hosted-pause-reconciliation", "--sim", "hosted-healthy", "--name", "example", "--node-pools", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("paused HostedCluster clusters/example"), "{}", text(&o));
    let st = sim_status(store);
    assert_eq!(st["topology"], "hosted", "{st:#}");
    let hc = example(&st);
    assert_eq!(hc["paused_until"], "true", "{hc:#}");
    assert_eq!(hc["paused_by"], "drctl run 1");
    assert_eq!(hc["control_plane_paused_until"], "true");
    assert!(hc["reconciliation_active"].as_str().unwrap().starts_with("False (ReconciliationPaused)"), "{hc:#}");
    assert!(hc["node_pools"].as_array().unwrap().iter().all(|p| p["paused_until"] == "true"), "{hc:#}");

    // An OADP backup's pause is refused (exit 3, halted, nothing changed) ...
    let o = drctl(store, &["run", "hosted-pause-reconciliation", "--sim", "hosted-paused-by-other", "--name", "example", "--unpause"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let st = sim_status(store);
    assert_eq!(example(&st)["paused_until"], "true", "{st:#}");
    let out = text(&o);
    assert!(out.contains("a pause drctl did not set"), "{out}");
    // ... and cleared only when told to.
    let o = drctl(
        store,
        &["run", "hosted-pause-reconciliation", "--sim", "hosted-paused-by-other", "--name", "example", "--unpause", "--force"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let hc = example(&sim_status(store));
    assert!(hc["paused_until"].is_null() && hc["control_plane_paused_until"].is_null(), "{hc:#}");
    assert!(hc["reconciliation_active"].as_str().unwrap().starts_with("True"), "{hc:#}");
}

#[test]
fn a_hosted_procedure_is_refused_on_a_standalone_world_and_bad_input_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["run", "hosted-pause-reconciliation", "--sim", "healthy", "--name", "example"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("needs management-cluster"), "{err}");
    let o = drctl(store, &["run", "hosted-pause-reconciliation", "--sim", "hosted-healthy", "--name", "Example_1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a valid HostedCluster name"), "{}", text(&o));
    let o = drctl(store, &["run", "hosted-pause-reconciliation", "--sim", "hosted-healthy", "--name", "example", "--until", "tomorrow"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // Nothing was stored by any of them.
    let o = drctl(store, &["status", "-o", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json(&o), serde_json::json!([]), "{}", text(&o));
    // A real management cluster whose kubeconfig is missing: said plainly, nothing stored.
    let o = drctl(store, &["run", "hosted-pause-reconciliation", "--name", "example", "--kubeconfig", "/nonexistent"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--kubeconfig /nonexistent does not exist"), "{}", text(&o));
    let o = drctl(store, &["status", "-o", "json"]);
    assert_eq!(json(&o), serde_json::json!([]), "{}", text(&o));
}
