//! hosted-etcd-member-recover through the real `drctl` binary: against the simulated management
//! cluster directly, and served over HTTPS through kube-rs (pod exec, deletes with uid
//! preconditions) across a SIGKILL of the runner.

mod common;
use common::*;

/// The etcd of clusters/example in `drctl sim status -o json`.
fn etcd(st: &serde_json::Value) -> serde_json::Value {
    let hcs = st["hosted_clusters"].as_array().unwrap_or_else(|| panic!("no hosted_clusters in {st:#}"));
    let hc = hcs.iter().find(|h| h["name"] == "example").expect("clusters/example");
    hc["etcd"].clone()
}

/// PVC name → uid.
fn pvc_uids(etcd: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    let pvcs = etcd["pvcs"].as_array().unwrap_or_else(|| panic!("no pvcs in {etcd:#}"));
    pvcs.iter().map(|p| (p["name"].as_str().unwrap().to_string(), p["uid"].as_str().unwrap().to_string())).collect()
}

/// Three members serving; the failed one (`victim`) on a new PVC, the others on theirs.
fn assert_recovered(before: &serde_json::Value, after: &serde_json::Value, victim: &str) {
    assert_eq!(after["all_healthy"], true, "{after:#}");
    assert_eq!(after["etcd_available"], "True", "{after:#}");
    assert_eq!(after["ready_replicas"], 3, "{after:#}");
    let members = after["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{after:#}");
    assert!(members.iter().all(|m| m["healthy"] == true), "{after:#}");
    let (was, now) = (pvc_uids(before), pvc_uids(after));
    for (name, uid) in &was {
        match name == &format!("data-{victim}") {
            true => assert_ne!(now.get(name), Some(uid), "{victim}'s PVC was not replaced: {after:#}"),
            false => assert_eq!(now.get(name), Some(uid), "the PVC of a healthy member was replaced: {after:#}"),
        }
    }
}

#[test]
fn a_crash_looping_member_is_recovered_on_a_new_pvc_and_nothing_else_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["sim", "new", "hosted-etcd-member-failed", "--name", "lab", "--seed", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    // The caller expected another member to have failed: nothing is deleted.
    let o = drctl(store, &["run", "hosted-etcd-member-recover", "--sim-world", "lab", "--name", "example", "--member", "etcd-0", "--yes"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("--member etcd-0 was given, but the failed member is etcd-2; nothing deleted"), "{}", text(&o));
    let before = etcd(&sim_status(store));
    // Seed 2: etcd-2 crash-loops on a corrupt data dir.
    let pods = before["pods"].as_array().unwrap();
    let failed = pods.iter().find(|p| p["name"] == "etcd-2").unwrap();
    assert_eq!((failed["status"].as_str(), failed["ready"].as_bool()), (Some("CrashLoopBackOff"), Some(false)), "{before:#}");

    let o = drctl(store, &["run", "hosted-etcd-member-recover", "--sim-world", "lab", "--name", "example", "--member", "etcd-2", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("etcd member etcd-2 of HostedCluster clusters/example recovered"), "{}", text(&o));
    let st = sim_status(store);
    assert_eq!(st["healthy"], true, "{st:#}");
    assert_recovered(&before, &etcd(&st), "etcd-2");
}

#[test]
fn refusals_leave_every_member_and_pvc_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    // Nothing to recover on a healthy etcd.
    let o = drctl(store, &["sim", "new", "hosted-healthy", "--name", "ok", "--seed", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = drctl(store, &["run", "hosted-etcd-member-recover", "--sim-world", "ok", "--name", "example", "--yes"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("there is no member to recover"), "{}", text(&o));
    // It halted where it looked: no state that deletes was ever entered.
    let states: Vec<String> = history(store, "1").iter().filter_map(|e| e["to"].as_str().map(str::to_string)).collect();
    assert!(states.iter().all(|s| s == "FindFailedMember"), "{states:?}");
    let after = etcd(&sim_status(store));
    assert_eq!(after["all_healthy"], true, "{after:#}");
    assert!(after["pvcs"].as_array().unwrap().iter().all(|c| c["terminating"] == false), "{after:#}");

    // A member name that cannot exist is refused before anything is stored.
    let o = drctl(store, &["run", "hosted-etcd-member-recover", "--sim-world", "ok", "--name", "example", "--member", "etcd-3"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--member 'etcd-3' is not one of etcd-0, etcd-1, etcd-2"), "{}", text(&o));
    assert_eq!(drctl(store, &["history", "2"]).status.code(), Some(1), "the refused run was stored");
}

/// The production path: `drctl run … --kubeconfig` against a served management cluster, through
/// kube-rs: pods and PVCs listed in the control-plane namespace, etcdctl run by exec in the etcd
/// container, deletes fenced by uid. The runner is killed while the member re-joins; `resume`
/// ends it.
#[test]
#[allow(clippy::disallowed_methods)] // waits for the serving process in real time
fn a_served_management_cluster_recovers_its_member_through_the_real_adapter_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let o = drctl(&store, &["sim", "new", "hosted-etcd-member-failed", "--name", "lab", "--seed", "3"]);
    assert!(o.status.success(), "{}", text(&o));
    // Seed 3: etcd-0 failed. A refused run shows the world as it is.
    let o = drctl(&store, &["run", "hosted-etcd-member-recover", "--sim-world", "lab", "--name", "example", "--member", "etcd-1", "--yes"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let before = etcd(&sim_status(&store));
    let served = Served::start(&store, "lab", "20");
    let kubeconfig = served.kubeconfig.clone();

    let runs = dir.path().join("runs");
    let args = ["run", "hosted-etcd-member-recover", "--name", "example", "--kubeconfig", &kubeconfig, "--yes"];
    let said = kill_when_it_says(&runs, &args, "waiting for etcd member etcd-0 to come back");
    assert!(said.contains("DeletePod") && said.contains("against management cluster"), "{said}");
    let o = drctl(&runs, &["resume", "1"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("etcd member etcd-0 of HostedCluster clusters/example recovered"), "{out}");
    drop(served);
    // The served world kept it: a run on it directly finds nothing to recover.
    let o = drctl(&store, &["run", "hosted-etcd-member-recover", "--sim-world", "lab", "--name", "example", "--yes"]);
    assert!(text(&o).contains("there is no member to recover"), "{}", text(&o));
    assert_recovered(&before, &etcd(&sim_status(&store)), "etcd-0");
}
