//! Retention from the command line: `drctl gc --finished-before` archives and removes finished
//! runs, and never touches a run that can still be resumed.

mod common;
use common::*;

#[test]
fn gc_archives_finished_runs_and_keeps_resumable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    assert_eq!(drctl(store, &["run", "etcd-backup", "--sim", "healthy"]).status.code(), Some(0));
    // A halted run: resumable, so kept whatever its age.
    let o = drctl(
        store,
        &["run", "restore-cluster-state", "--sim", "quorum-loss", "--recovery-host", "master-1", "--deadline", "10m", "--yes"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));

    // Simulated runs carry simulated (January 2026) times: a year-long bound keeps them.
    let o = drctl(store, &["gc", "--finished-before", "3650d", "-o", "json"]);
    assert_eq!(json(&o)["runs_deleted"], 0, "{}", text(&o));
    let o = drctl(store, &["gc", "--finished-before", "1d", "-o", "json"]);
    let report = json(&o);
    assert_eq!((report["runs_deleted"].as_u64(), report["runs_kept_unfinished"].as_u64()), (Some(1), Some(1)), "{report}");

    let archived = store.join("archive/run-1.json");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&archived).unwrap()).unwrap();
    assert_eq!((doc["run"]["procedure"].as_str(), doc["run"]["status"].as_str()), (Some("etcd-backup"), Some("succeeded")));
    assert!(doc["events"].as_array().unwrap().iter().any(|e| e["outcome"] == "Succeeded"), "{doc}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&archived).unwrap().permissions().mode() & 0o777, 0o600);

    let runs = json(&drctl(store, &["status", "-o", "json"]));
    let ids: Vec<&str> = runs.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["2"]);
    let o = drctl(store, &["history", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(drctl(store, &["gc", "--finished-before", "soon"]).status.code(), Some(1));
}
