//! `drctl sim chaos` through the real binary: the sweep issue 3 asks for, and argument errors.

mod common;
use common::*;

#[test]
fn a_two_thousand_seed_sweep_of_restore_passes_and_reports_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let o = drctl(dir.path(), &["sim", "chaos", "--procedure", "restore-cluster-state", "--seeds", "1..2000", "--jobs", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for field in ["runs", "faults injected", "invariant checks", "crash points", "coverage", "simulations/s", "result: PASS"] {
        assert!(out.contains(field), "report lacks '{field}':\n{out}");
    }
    let json = drctl(dir.path(), &["sim", "chaos", "--procedure", "etcd-backup", "--seeds", "1..50", "-o", "json"]);
    assert_eq!(json.status.code(), Some(0), "{}", text(&json));
    let r = common::json(&json);
    assert_eq!(r["passed"], true);
    assert!(r["runs"].as_u64().unwrap() >= 49, "{r}");
}

#[test]
fn bad_chaos_arguments_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    for (args, want) in [
        (vec!["sim", "chaos", "--procedure", "restore-cluster-state", "--seeds", "5..5"], "empty"),
        (vec!["sim", "chaos", "--procedure", "restore-cluster-state", "--seeds", "x..9"], "not a number"),
        (vec!["sim", "chaos", "--procedure", "etcd-backup", "--faults", "volcano@1s+1s"], "--faults"),
    ] {
        let o = drctl(dir.path(), &args);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(want), "{}", text(&o));
    }
    // The procedures are the catalog's: anything else is a usage error that lists them.
    let o = drctl(dir.path(), &["sim", "chaos", "--procedure", "no-such-procedure"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("no-such-procedure") && err.contains("hosted-pause-reconciliation"), "{err}");
}
