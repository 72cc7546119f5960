//! `legacy-lost-masters` through the binary (OpenShift Container Platform 4.1–4.3, "Recovering
//! from lost master hosts"): quorum restored on the master left, the new masters grown in one at
//! a time through the temporary signer, which is gone at the end; refused on a newer release.

mod common;
use common::*;

#[test]
fn lost_masters_on_4_3_end_with_three_masters_three_members_and_no_signer() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["run", "legacy-lost-masters", "--sim", "legacy-lost-masters", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let st = sim_status(store);
    assert_eq!(st["healthy"], true, "{st:#}");
    let mut members: Vec<(String, bool)> = st["etcd_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["host"].as_str().unwrap().to_string(), m["started"].as_bool().unwrap()))
        .collect();
    members.sort();
    let want: Vec<(String, bool)> = ["master-0", "master-3", "master-4"].iter().map(|h| (h.to_string(), true)).collect();
    assert_eq!(members, want, "{st:#}");
    assert!(st.get("etcd_signer").is_none(), "the signer is still there: {st:#}");
    let nodes: Vec<&str> = st["nodes"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert!(!nodes.contains(&"master-1") && !nodes.contains(&"master-2"), "the lost masters' nodes are left: {nodes:?}");

    // The runbook's order: restore, the new masters, DNS and load balancer, the signer, then
    // each member added and seen started before the next, then the signer removed.
    let h = history(store, "1");
    let to: Vec<&str> = h.iter().filter_map(|e| e["to"].as_str()).collect();
    let at = |s: &str| to.iter().position(|t| *t == s).unwrap_or_else(|| panic!("{s} never reached: {to:?}"));
    let order = [
        "RestoreQuorum",
        "CreateNewMasters",
        "ApproveNewMasters",
        "CorrectDnsAndLb",
        "StartSigner",
        "AddMember(master-3)",
        "VerifyMember(master-3)",
        "AddMember(master-4)",
        "VerifyMember(master-4)",
        "RemoveSigner",
        "DeleteLostNodes",
        "VerifyCluster",
    ];
    let positions: Vec<usize> = order.iter().map(|s| at(s)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "out of order: {to:?}");
}

#[test]
fn a_cluster_past_4_3_is_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["run", "legacy-lost-masters", "--sim", "quorum-loss", "--yes"]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("this procedure is for 4.1–4.3 only"), "{}", text(&o));
    assert!(text(&o).contains("restore-cluster-state"), "{}", text(&o));
    let h = history(store, "1");
    assert!(h.iter().all(|e| e["to"] != "CopyBackup"), "it went on: {h:#?}");
    let w: drctl_sim::world::World = drctl_sim::Sim::load(&world_file(store)).unwrap().read(|w| w.clone());
    let changed: Vec<_> = w.effects.iter().filter(|e| e.kind.destructive()).collect();
    assert!(changed.is_empty(), "the world was changed: {changed:?}");
}

#[test]
fn a_backup_that_does_not_exist_is_refused_before_the_run_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["run", "legacy-lost-masters", "--sim", "legacy-lost-masters", "--backup", "weekly", "--yes"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("backup not found: backup set 'weekly'"), "{}", text(&o));
    assert!(!store.join("sim").exists() || std::fs::read_dir(store.join("sim")).unwrap().next().is_none(), "a world was stored");
}
