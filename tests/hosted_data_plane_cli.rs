//! hosted-scale-data-plane-zero through the real `drctl` binary against the simulated
//! management cluster.

mod common;
use common::*;

fn pools(st: &serde_json::Value) -> Vec<serde_json::Value> {
    let hcs = st["hosted_clusters"].as_array().unwrap_or_else(|| panic!("no hosted_clusters in {st:#}"));
    let hc = hcs.iter().find(|h| h["name"] == "example").expect("clusters/example");
    hc["node_pools"].as_array().expect("node_pools").clone()
}

/// Seed 1 of `hosted-healthy` has a worker whose PodDisruptionBudget allows no eviction.
const BLOCKED_SEED: &str = "1";

#[test]
fn the_data_plane_goes_to_zero_with_the_drain_timeout_restored() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(
        store,
        &["run", "hosted-scale-data-plane-zero", "--sim", "hosted-healthy", "--seed", BLOCKED_SEED, "--name", "example", "--yes"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("replicas before: example-us-east-1a 2, example-us-east-1b 2"), "{out}");
    let st = sim_status(store);
    for p in pools(&st) {
        assert_eq!(p["replicas"], 0, "{p:#}");
        assert_eq!(p["status_replicas"], 0, "{p:#}");
        assert_eq!(p["machines"], serde_json::json!([]), "{p:#}");
        // The scenario's pools had no drain timeout: none is left behind.
        assert!(p["drain_timeout"].is_null(), "{p:#}");
    }
    // The blocked worker went only because the run bounded the drain (5m by default): the wait
    // lasted that long, no longer than the drain timeout and an instance's termination.
    let o = drctl(store, &["history", "1", "-o", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let history = json(&o);
    let at = |to: &str| {
        let e = history.as_array().unwrap().iter().find(|e| e["to"] == to).unwrap_or_else(|| panic!("no {to} in {history:#}"));
        let t = e["at"].as_str().unwrap();
        // 2026-01-05T09:07:03.880Z: minutes and seconds within the hour suffice here.
        let (m, s): (u64, f64) = (t[14..16].parse().unwrap(), t[17..23].parse().unwrap());
        m as f64 * 60.0 + s
    };
    let waited = at("RestoreDrainTimeout") - at("WaitScaledDown");
    assert!((300.0..600.0).contains(&waited), "waited {waited} s for the machines: {history:#}");
}

#[test]
fn an_unbounded_drain_halts_and_abort_scales_every_pool_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let args = ["run", "hosted-scale-data-plane-zero", "--sim", "hosted-healthy", "--seed", BLOCKED_SEED, "--name", "example"];
    let o = drctl(store, &[&args[..], &["--drain-timeout", "0s"]].concat());
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("halted at WaitScaledDown") && out.contains("example-us-east-1a-0"), "{out}");
    assert!(out.contains("never forces a drain a PodDisruptionBudget blocks"), "{out}");
    // Abort carries out the undo and ends the run Aborted (exit 5).
    let o = drctl(store, &["abort", "1"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(text(&o).contains("scaled back to their replicas"), "{}", text(&o));
    for p in pools(&sim_status(store)) {
        assert_eq!(p["replicas"], 2, "{p:#}");
        assert!(p["drain_timeout"].is_null(), "{p:#}");
    }
}

#[test]
fn an_autoscaling_pool_is_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["run", "hosted-scale-data-plane-zero", "--sim", "hosted-autoscaling", "--name", "example", "--yes"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("a NodePool autoscales") && out.contains("example-us-east-1b: spec.autoScaling min 1, max 4"), "{out}");
    let pools = pools(&sim_status(store));
    let a = pools.iter().find(|p| p["name"] == "example-us-east-1a").unwrap();
    assert_eq!((a["replicas"].as_u64(), a["status_replicas"].as_u64()), (Some(2), Some(2)), "{a:#}");
    assert!(a["drain_timeout"].is_null(), "{a:#}");
    let b = pools.iter().find(|p| p["name"] == "example-us-east-1b").unwrap();
    assert!(b["replicas"].is_null() && b["autoscaling"] == serde_json::json!([1, 4]), "{b:#}");
    // A duration the API would refuse is refused before anything is stored.
    let o =
        drctl(store, &["run", "hosted-scale-data-plane-zero", "--sim", "hosted-healthy", "--name", "example", "--drain-timeout", "5 min"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--drain-timeout '5 min' is not a duration"), "{}", text(&o));
}
