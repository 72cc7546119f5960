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

/// The production path: `drctl run … --kubeconfig` against a served simulated management
/// cluster, through kube-rs (the NodePool scale subresource, CAPI Machines in the control-plane
/// namespace). The served world keeps what the run did.
#[test]
#[allow(clippy::disallowed_methods)] // waits for the serving process in real time
fn a_served_management_cluster_is_scaled_to_zero_through_the_real_adapter_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let o = drctl(&store, &["sim", "new", "hosted-healthy", "--name", "lab", "--seed", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    let served = Served::start(&store, "lab", "60");
    let kubeconfig = served.kubeconfig.clone();

    let runs = dir.path().join("runs");
    // A standalone cluster's options are refused, not ignored; nothing is stored.
    let o = drctl(&runs, &["run", "hosted-scale-data-plane-zero", "--name", "example", "--kubeconfig", &kubeconfig, "--ssh-user", "core"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--ssh-user is for a standalone cluster's hosts"), "{}", text(&o));
    assert!(!runs.exists(), "a refused run stored something");

    // The runner is killed (SIGKILL) while the machines drain; `resume` rebuilds the target from
    // the run's labels and ends it, with the replicas recorded before the crash.
    let args = ["run", "hosted-scale-data-plane-zero", "--name", "example", "--kubeconfig", &kubeconfig, "--yes"];
    let said = kill_when_it_says(&runs, &args, "waiting for the machines of the NodePools");
    assert!(said.contains("answers (Kubernetes") && said.contains("against management cluster"), "{said}");
    let o = drctl(&runs, &["resume", "1"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("resuming run 1 (hosted-scale-data-plane-zero) against management cluster"), "{out}");
    assert!(out.contains("replicas before: example-us-east-1a 2, example-us-east-1b 2"), "{out}");
    // The run is recorded by reference to the kubeconfig, for `resume`.
    let st = json(&drctl(&runs, &["status", "1", "-o", "json"]));
    assert_eq!(st["labels"]["target"], "real-management", "{st:#}");
    assert_eq!(st["labels"]["real.kubeconfig"], kubeconfig.as_str(), "{st:#}");
    drop(served);

    // The world kept it: a second run, on the world directly, finds every pool at zero already.
    let o = drctl(&store, &["run", "hosted-scale-data-plane-zero", "--sim-world", "lab", "--name", "example", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("replicas before: example-us-east-1a 0, example-us-east-1b 0"), "{}", text(&o));
    for p in pools(&sim_status(&store)) {
        assert_eq!((p["replicas"].as_u64(), p["status_replicas"].as_u64()), (Some(0), Some(0)), "{p:#}");
        assert!(p["drain_timeout"].is_null() && p["machines"] == serde_json::json!([]), "{p:#}");
    }
}

/// The way back: a scale-down then `--scale-up` on one practice cluster ends with every pool at
/// the replicas it had, that many workers available, and no annotation left behind.
#[test]
fn scale_up_brings_back_the_replicas_the_scale_down_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["sim", "new", "hosted-healthy", "--name", "lab", "--seed", "3"]);
    assert!(o.status.success(), "{}", text(&o));
    let run = |extra: &[&str]| {
        let args = [&["run", "hosted-scale-data-plane-zero", "--sim-world", "lab", "--name", "example", "--yes"][..], extra].concat();
        drctl(store, &args)
    };
    // Without a record (the pools were never scaled down by drctl), the counts are asked for.
    let o = run(&["--scale-up"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("it does not know their replicas. Pass --replicas N"), "{}", text(&o));
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("--scale-up"), "the result says how to come back: {}", text(&o));
    // A second scale-down of pools already at zero keeps the first record.
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&["--scale-up"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("is back: NodePools at example-us-east-1a 2, example-us-east-1b 2 replicas"), "{}", text(&o));
    for p in pools(&sim_status(store)) {
        assert_eq!((p["replicas"].as_u64(), p["status_replicas"].as_u64()), (Some(2), Some(2)), "{p:#}");
        assert_eq!(p["machines"].as_array().map(Vec::len), Some(2), "{p:#}");
        assert!(p["replicas_before_zero"].is_null(), "{p:#}");
    }
}
