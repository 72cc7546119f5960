//! `recover-expired-certs` through the binary (OpenShift Container Platform 4.14 Backup and
//! restore §5.4.3): every node back, the foreign CSR never approved and shown to a person.

mod common;
use common::*;

#[test]
fn expired_kubelet_certificates_are_recovered_and_the_foreign_csr_is_left_for_a_person() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    // Without --yes the run waits at the gate that shows the foreign CSR, having approved
    // nothing of it; a person approves from another terminal and the run goes on.
    let (mut run, shown) = run_to_gate(store, &["run", "recover-expired-certs", "--sim", "certs-expired"]);
    assert!(shown.contains("unexpected-csrs") && shown.contains(drctl_sim::scenario::ROGUE_NODE), "{shown}");
    assert!(shown.contains("not one of this cluster's nodes"), "{shown}");
    let o = drctl(store, &["approve", "1", "--gate", "unexpected-csrs"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(run.wait().unwrap().code(), Some(0));
    let st = sim_status(store);
    assert_eq!(st["healthy"], true, "{st:#}");
    assert!(st["nodes"].as_array().unwrap().iter().all(|n| n["ready"] == true), "{st:#}");
    let pending = st["pending_csr_list"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["node"], drctl_sim::scenario::ROGUE_NODE);
    let outcome = json(&drctl(store, &["status", "1", "-o", "json"]));
    assert!(outcome.to_string().contains(drctl_sim::scenario::ROGUE_NODE), "{outcome:#}");
}

#[test]
fn with_yes_it_ends_with_every_node_ready_and_on_a_healthy_cluster_it_finds_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let o = drctl(dir.path(), &["run", "recover-expired-certs", "--sim", "certs-expired", "--yes", "--serving-csrs"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("all 5 nodes are Ready; 1 CSR(s) outside the approval policy"), "{}", text(&o));
    let dir = tempfile::tempdir().unwrap();
    let o = drctl(dir.path(), &["run", "recover-expired-certs", "--sim", "healthy", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("nothing to recover"), "{}", text(&o));
    let fresh = drctl_sim::scenario::build("healthy", 1).unwrap();
    assert_eq!(sim_status(dir.path())["state_digest"], drctl_sim::state_digest(&fresh), "nothing to do changed nothing");
}
