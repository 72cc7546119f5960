//! `drctl inspect` through the real binary: a real 3-member etcd 3.4 (local etcdctl), the kube
//! mock API and a real sshd.
// Real software in real time: these tests measure and wait on the wall clock.
#![allow(clippy::disallowed_methods)]

mod real_common;
#[path = "../adapters/tests/support/mod.rs"]
mod support;

use real_common::*;
use serde_json::Value;
use std::time::{Duration, Instant};
use support::etcd::Cluster;
use support::mockapi::Expect;

fn inspect(store: &std::path::Path, args: &[&str]) -> (Option<i32>, Value, std::process::Output) {
    let mut all = vec!["inspect", "-o", "json"];
    all.extend_from_slice(args);
    let o = drctl(store, &all);
    let v = json_of(&o);
    (o.status.code(), v, o)
}

#[test]
fn inspect_etcd_endpoints_reports_three_healthy_members_then_lost_quorum() {
    let mut c = Cluster::start(3);
    let store = tempfile::tempdir().unwrap();
    let eps = c.endpoints().join(",");

    let t = Instant::now();
    let (code, v, o) = inspect(store.path(), &["--etcd-endpoints", &eps]);
    eprintln!("inspect, healthy: {:?}", t.elapsed());
    assert_eq!(code, Some(0), "{}", text(&o));
    let e = &v["etcd"];
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(e["checked"], true);
    let members = e["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{e:#}");
    assert!(members.iter().all(|m| m["healthy"] == true && m["error"].is_null()), "{e:#}");
    let mut names: Vec<&str> = members.iter().map(|m| m["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["m0", "m1", "m2"]);
    assert_eq!(members.iter().filter(|m| m["leader"] == true).count(), 1, "one leader: {e:#}");
    assert_eq!(e["cluster_ids"].as_array().unwrap().len(), 1, "one cluster id: {e:#}");
    let cid = e["cluster_ids"][0].as_str().unwrap().to_string();
    assert!(members.iter().all(|m| m["cluster_id"] == cid.as_str()), "every member reports the cluster id: {e:#}");
    assert_eq!(e["quorum"], true);
    assert_eq!((e["voting_members"].as_u64(), e["healthy_voting_members"].as_u64()), (Some(3), Some(3)));
    // The parts without options are not checked, and say so.
    assert_eq!(v["api"]["checked"], false);
    assert_eq!(v["ssh"]["checked"], false);
    // The table says the same for a person.
    let o = drctl(store.path(), &["inspect", "--etcd-endpoints", &eps]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(table.contains(&format!("cluster id: {cid}")), "{table}");
    assert!(table.contains("quorum: yes (3 of 3 voting members healthy, 2 needed)"), "{table}");
    assert!(table.contains("API:   not checked") && table.contains("SSH:   not checked"), "{table}");
    // One endpoint is enough: the members' own client URLs are checked too.
    let (code, v, o) = inspect(store.path(), &["--etcd-endpoints", &c.members[1].client_url()]);
    assert_eq!(code, Some(0), "{}", text(&o));
    assert_eq!(v["etcd"]["healthy_voting_members"], 3, "{v:#}");

    // Two members killed: lost quorum, exit 1, and it says why.
    c.members[1].kill();
    c.members[2].kill();
    let t = Instant::now();
    let (code, v, o) = inspect(store.path(), &["--etcd-endpoints", &eps]);
    eprintln!("inspect, 2 of 3 killed: {:?}", t.elapsed());
    assert_eq!(code, Some(1), "{}", text(&o));
    assert!(t.elapsed() < Duration::from_secs(30), "bounded: {:?}", t.elapsed());
    let e = &v["etcd"];
    assert_eq!(v["ok"], false);
    assert_eq!(e["quorum"], false, "{e:#}");
    assert_eq!(e["healthy_voting_members"], 0, "no member is healthy without quorum: {e:#}");
    // The surviving member still answers for the membership and the cluster id.
    assert_eq!(e["members"].as_array().unwrap().len(), 3, "{e:#}");
    assert_eq!(e["cluster_ids"], serde_json::json!([cid]));
    let problems: Vec<&str> = v["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert!(problems.iter().any(|p| p.contains("etcd has lost quorum: 0 of 3 voting members healthy, 2 needed")), "{problems:?}");
    let o = drctl(store.path(), &["inspect", "--etcd-endpoints", &eps]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("quorum: LOST"), "{}", text(&o));

    // All gone: nothing answers at all. Still a report, still exit 1, but UNREACHABLE: nobody
    // answering says nothing about quorum (a wrong URL or a firewall looks the same).
    c.members[0].kill();
    for eps in [eps.as_str(), "http://127.0.0.1:1"] {
        let (code, v, o) = inspect(store.path(), &["--etcd-endpoints", eps]);
        assert_eq!(code, Some(1), "{}", text(&o));
        assert!(v["etcd"]["quorum"].is_null(), "{v:#}");
        assert_eq!(v["etcd"]["unreachable"], true, "{v:#}");
        assert!(v["problems"].to_string().contains("etcd UNREACHABLE"), "{v:#}");
        let o = drctl(store.path(), &["inspect", "--etcd-endpoints", eps]);
        let table = String::from_utf8_lossy(&o.stdout);
        assert!(table.contains("quorum: UNKNOWN (etcd UNREACHABLE") && !table.contains("LOST"), "{table}");
    }
    // An endpoint that is not a URL is refused before anything is contacted.
    let o = drctl(store.path(), &["inspect", "--etcd-endpoints", "notaurl"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("'notaurl' is not an etcd client URL"), "{}", text(&o));
    assert_eq!(std::fs::read_dir(store.path()).unwrap().count(), 0, "inspect stores nothing");
}

#[test]
fn inspect_checks_the_api_its_control_plane_nodes_and_ssh() {
    let c = RealCluster::start();
    let store = tempfile::tempdir().unwrap();
    c.mock.expect_all([Expect::get("/version").reply(200, version_info()), Expect::get(NODES_PATH).reply(200, nodes())]);
    let args = c.access_args();
    // The same access options as `drctl run` (less --backup-root), plus etcd.
    let mut a: Vec<&str> = strs(&args);
    let eps = c.etcd.endpoints().join(",");
    a.extend(["--etcd-endpoints", &eps]);
    let (code, v, o) = inspect(store.path(), &a);
    assert_eq!(code, Some(0), "{}", text(&o));
    c.mock.verify();
    let api = &v["api"];
    assert_eq!(api["reachable"], true, "{v:#}");
    assert_eq!(api["context"], "admin");
    assert_eq!(api["version"], "v1.28.6+f1618d5");
    let nodes = api["control_plane_nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "workers are not listed: {api:#}");
    assert_eq!(nodes[2]["ready"], false);
    assert!(nodes[2]["taints"].as_array().unwrap().iter().any(|t| t == "node.kubernetes.io/unreachable"), "{api:#}");
    // A NotReady node is a warning, not a failure.
    assert!(v["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("ip-10-0-0-3 is NotReady")), "{v:#}");
    let hosts = v["ssh"]["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3);
    assert!(hosts.iter().all(|h| h["reachable"] == true), "{v:#}");
    assert_eq!(v["etcd"]["quorum"], true);

    // The kubeconfig's current context points at nothing: the API does not answer, exit 1.
    let kc = c.kubeconfig.display().to_string();
    let (code, v, o) = inspect(store.path(), &["--kubeconfig", &kc]);
    assert_eq!(code, Some(1), "{}", text(&o));
    assert_eq!(v["api"]["reachable"], false);
    assert_eq!(v["api"]["context"], "stale");
    assert!(
        v["api"]["error"].as_str().unwrap().contains("unreachable") || v["api"]["error"].as_str().unwrap().contains("refused"),
        "{v:#}"
    );
    assert_eq!(v["etcd"]["checked"], false);
    // Nothing to inspect is a usage error.
    let o = drctl(store.path(), &["inspect"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to inspect"), "{}", text(&o));
    c.mock.verify();
}
