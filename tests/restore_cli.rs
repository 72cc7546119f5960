//! restore-cluster-state and etcd-backup through the real `drctl` binary against the simulator.

mod common;
use common::*;
use drctl_sim::world::SimFile;
use sha2::{Digest, Sha256};

fn expected_backup_revision() -> u64 {
    let sim = drctl_sim::Sim::scenario("quorum-loss", 1).unwrap();
    sim.read(|w| w.backups["nightly"].info.as_ref().unwrap().snapshot.revision)
}

fn assert_restored_healthy(st: &serde_json::Value) {
    assert_eq!(st["healthy"], true, "{st:#}");
    assert_eq!(st["api_available"], true);
    let members = st["etcd_members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| m["started"] == true), "{st:#}");
    assert_eq!(st["running_cluster_ids"].as_array().unwrap().len(), 1, "one cluster id: {st:#}");
    assert!(st["nodes"].as_array().unwrap().iter().all(|n| n["ready"] == true));
    for op in st["operators"].as_array().unwrap() {
        assert_eq!(op["reason"], "AllNodesAtLatestRevision", "{op}");
    }
    assert_eq!(op_names(st), ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]);
    assert_eq!(st["quorum_guard"], true);
    assert_eq!(st["restored_from_revision"], expected_backup_revision());
}

fn op_names(st: &serde_json::Value) -> Vec<String> {
    st["operators"].as_array().unwrap().iter().map(|o| o["operator"].as_str().unwrap().to_string()).collect()
}

#[test]
fn restore_after_quorum_loss_ends_healthy_and_shows_the_outage_it_crossed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["run", "restore-cluster-state", "--sim", "quorum-loss", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("succeeded"), "{}", text(&o));
    assert_restored_healthy(&sim_status(store));
    // One reporter: the procedure's warnings carry drctl's prefix and the run's simulated time
    // (the scenario starts on 2026-01-05), never the wall clock.
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let warns: Vec<&str> = err.lines().filter(|l| l.contains("WARN")).collect();
    assert!(!warns.is_empty(), "{err}");
    assert!(warns.iter().all(|l| l.starts_with("drctl: [2026-01-05T")), "{warns:#?}");

    let h = history(store, "1");
    let idx = |to: &str| {
        h.iter()
            .position(|e| e["outcome"] == "Transition" && e["to"].as_str().unwrap().starts_with(to))
            .unwrap_or_else(|| panic!("no transition to {to}"))
    };
    // The SSH-only phase: copy the backup, run the restore, in order, before the API is back.
    let (copy, restore, wait_nodes, csrs) = (idx("CopyBackup"), idx("RunRestore"), idx("WaitNodes"), idx("ApproveCsrs"));
    assert!(copy < restore && restore < wait_nodes && wait_nodes < csrs);
    // The API outage it crossed: retries of the first API step after the restore, with the
    // real error text, then progress.
    let outage: Vec<&serde_json::Value> = h[wait_nodes..csrs]
        .iter()
        .filter(|e| e["outcome"] == "Retry" && e["detail"].as_str().unwrap_or("").contains("connection refused"))
        .collect();
    assert!(!outage.is_empty(), "no API outage recorded after the restore: {h:#?}");
    // And the outage before it: the guard saw the API down.
    assert!(h.iter().any(|e| e["to"] == "CheckBackup"), "guard passed");
    // Steps 18-19 went through the recovery host's localhost-recovery kubeconfig.
    let world = drctl_sim::Sim::load(&world_file(store)).unwrap();
    let log = world.read(|w| w.log.join("\n"));
    assert!(log.contains("forceRedeploymentReason=recovery-1-etcd") && log.contains("(recovery kubeconfig on master-0)"), "{log}");
}

/// While a run waits or retries, the terminal gets a line at least every 30 s of the run's time
/// (a second of slack for the checks' own latency), each saying when the next check comes.
fn assert_progress_at_least_every_30s(stderr: &str) {
    let lines: Vec<(u64, &str)> = stderr
        .lines()
        .filter_map(|l| {
            let at = l.strip_prefix("drctl: run 1 [")?.split(']').next()?;
            Some((drctl_runtime::Timestamp::parse_rfc3339(at)?.millis(), l))
        })
        .collect();
    let mut waits = 0;
    for pair in lines.windows(2) {
        let ((t0, l0), (t1, l1)) = (pair[0], pair[1]);
        if l0.contains("waiting for") || l0.contains("unavailable since") {
            waits += 1;
            assert!(l0.contains("next check at") || l0.contains("next try at"), "{l0}");
            assert!(t1 - t0 <= 31_000, "{} s without a line while waiting:\n{l0}\n{l1}", (t1 - t0) / 1000);
        }
    }
    assert!(waits > 200, "a two-hour outage gave only {waits} progress lines");
}

#[test]
fn a_two_hour_api_outage_mid_restore_is_waited_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    // 40 minutes in, the run is replacing machines; the API then goes away for 2 hours.
    let o = drctl(store, &["run", "restore-cluster-state", "--sim", "quorum-loss", "--yes", "--sim-api-outage", "40m+2h"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unavailable since") && err.contains("next try at"), "progress did not report the wait:\n{err}");
    assert_progress_at_least_every_30s(&err);
    assert_restored_healthy(&sim_status(store));
    let h = history(store, "1");
    let retry_times: Vec<u64> = h
        .iter()
        .filter(|e| e["outcome"] == "Retry" && e["detail"].as_str().unwrap_or("").contains("connection refused"))
        .map(|e| drctl_runtime::Timestamp::parse_rfc3339(e["at"].as_str().unwrap()).unwrap().millis())
        .collect();
    let span = retry_times.iter().max().unwrap() - retry_times.iter().min().unwrap();
    assert!(span >= 110 * 60 * 1000, "retries span only {} minutes", span / 60_000);
}

fn refused(args: &[&str], want: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let mut all = vec!["run", "restore-cluster-state", "--yes"];
    all.extend_from_slice(args);
    let o = drctl(store, &all);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(want), "message should say '{want}':\n{}", text(&o));
    // No effect on the world: the same state as the scenario it started from, time aside.
    let world = drctl_sim::Sim::load(&world_file(store)).unwrap();
    let scenario = args[args.iter().position(|a| *a == "--sim").unwrap() + 1];
    let mut fresh = drctl_sim::scenario::build(scenario, 1).unwrap();
    if let Some(p) = args.iter().position(|a| *a == "--sim-backup-defect") {
        drctl_sim::scenario::apply_backup_defect(&mut fresh, args[p + 1]).unwrap();
    }
    let before = drctl_sim::state_digest(&fresh);
    assert_eq!(world.status().state_digest, before, "the refused run changed the world");
}

/// On a healthy cluster (a practice world backed up by `etcd-backup`), the API answers: the
/// restore halts at its first guard and the world is untouched.
#[test]
fn refused_when_the_api_answers_normally() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    assert!(drctl(store, &["sim", "new", "healthy", "--name", "lab"]).status.success());
    let o = drctl(store, &["run", "etcd-backup", "--sim-world", "lab", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let world = store.join("sim/practice/lab.world");
    let before = drctl_sim::Sim::load(&world).unwrap().status().state_digest;
    let o = drctl(store, &["run", "restore-cluster-state", "--sim-world", "lab", "--backup", "backup-1", "--yes"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("the API answers reads normally"), "{}", text(&o));
    assert_eq!(drctl_sim::Sim::load(&world).unwrap().status().state_digest, before, "the refused run changed the world");
}

#[test]
fn refused_when_etcd_still_has_quorum_though_the_api_is_unreachable() {
    // The API name does not resolve and two hosts are out of SSH reach, but the members answer
    // each other: restoring would make a second cluster beside the one that serves.
    refused(&["--sim", "api-unreachable"], "etcd has not lost quorum");
}

/// Input a step would halt on is refused before the run is stored: exit 1, one line saying what
/// is wrong, no store left behind.
fn refused_up_front(args: &[&str], want: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let mut all = vec!["run", "restore-cluster-state", "--yes"];
    all.extend_from_slice(args);
    let o = drctl(&store, &all);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(want) && err.lines().count() == 1, "message should say '{want}' in one line:\n{}", text(&o));
    assert!(!store.exists(), "a refused run left {} behind", store.display());
}

#[test]
fn refused_when_keepalived_runs_and_the_ingress_vip_is_not_given() {
    refused_up_front(&["--sim", "quorum-loss-reachable", "--api-vip", "10.0.0.5"], "pass --api-vip and --ingress-vip");
    refused_up_front(&["--sim", "quorum-loss-baremetal"], "pass --api-vip and --ingress-vip");
}

#[test]
fn refused_when_the_recovery_host_is_not_a_control_plane_host() {
    refused_up_front(
        &["--sim", "quorum-loss", "--recovery-host", "master-9"],
        "recovery host master-9 is not a control-plane host (control-plane hosts: master-0, master-1, master-2)",
    );
}

#[test]
fn refused_when_the_inventory_names_another_node_than_the_hosts_kubelet() {
    refused(
        &["--sim", "quorum-loss-misnamed", "--api-vip", "10.0.0.5", "--ingress-vip", "10.0.0.7"],
        "the inventory names node master-1.ocp.example.com for host master-1, but its kubelet is node master-1",
    );
}

#[test]
fn refused_without_a_certificate_based_kubeconfig() {
    refused(&["--sim", "quorum-loss-token-kubeconfig"], "a restore needs a certificate-based kubeconfig");
}

#[test]
fn refused_when_a_backup_file_is_missing() {
    refused(&["--sim", "quorum-loss", "--sim-backup-defect", "drop-snapshot"], "must hold exactly one snapshot_<datetimestamp>.db");
    refused(&["--sim", "quorum-loss", "--sim-backup-defect", "drop-resources"], "static_kuberesources_<datetimestamp>.tar.gz");
}

#[test]
fn refused_when_a_backup_file_is_misnamed() {
    refused(&["--sim", "quorum-loss", "--sim-backup-defect", "rename-snapshot"], "must hold exactly one snapshot_<datetimestamp>.db");
}

#[test]
fn refused_when_the_backup_is_from_another_z_stream() {
    refused(&["--sim", "quorum-loss", "--sim-backup-defect", "other-z-stream"], "same z-stream");
}

/// A backup taken by the runbook's `cluster-backup.sh` has no drctl info file: the z-stream
/// guard reads the release from the snapshot and the restore goes on.
#[test]
fn a_backup_made_by_the_runbooks_script_is_accepted_by_its_release() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["run", "restore-cluster-state", "--sim", "quorum-loss", "--yes", "--sim-backup-defect", "no-info-file"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_restored_healthy(&sim_status(store));
}

#[test]
fn refused_when_the_backup_does_not_exist() {
    refused_up_front(
        &["--sim", "quorum-loss", "--backup", "last-tuesday"],
        "backup not found: backup set 'last-tuesday' is not in the backup location (it holds: nightly)",
    );
}

#[test]
fn invalid_input_is_refused_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    // A scenario is one of a closed set: a usage error (exit 2) that lists them.
    let o = drctl(&store, &["run", "restore-cluster-state", "--sim", "no-such-scenario", "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("invalid value 'no-such-scenario'") && err.contains("quorum-loss-reachable"), "{err}");
    for (args, want) in [
        (vec!["run", "restore-cluster-state", "--sim", "quorum-loss", "--backup-dir", "relative/dir"], "absolute path"),
        (vec!["run", "restore-cluster-state", "--sim", "quorum-loss", "--deadline", "soon"], "duration"),
        (vec!["run", "restore-cluster-state", "--sim", "quorum-loss", "--api-vip", "10.0.0.5; reboot"], "is not an IP address"),
        (vec!["run", "restore-cluster-state", "--yes"], "--sim"),
    ] {
        let o = drctl(&store, &args);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(want), "{}", text(&o));
    }
    // Refused before anything was created: no store, no simulated world.
    assert!(!store.exists(), "a refused run left {} behind", store.display());
}

#[test]
fn the_same_seed_gives_byte_identical_histories() {
    let digest = |seed: &str| {
        let dir = tempfile::tempdir().unwrap();
        let o = drctl(dir.path(), &["run", "restore-cluster-state", "--sim", "quorum-loss", "--yes", "--seed", seed]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let h = drctl(dir.path(), &["history", "1", "-o", "json"]);
        hex::encode(Sha256::digest(&h.stdout))
    };
    assert_eq!(digest("11"), digest("11"));
    assert_ne!(digest("11"), digest("12"), "different seeds should give different runs");
}

#[test]
fn etcd_backup_writes_both_files_verified_on_exactly_one_host() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["run", "etcd-backup", "--sim", "healthy", "--name", "before-upgrade"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let world = drctl_sim::Sim::load(&world_file(store)).unwrap();
    world.read(|w| {
        let set = &w.backups["before-upgrade"];
        let info = set.info.as_ref().expect("backup info recorded");
        assert_eq!(info.cluster_version, drctl_sim::scenario::CLUSTER_VERSION);
        let snap = set.files.iter().find(|(n, _)| n.starts_with("snapshot_") && n.ends_with(".db")).expect("snapshot copied out");
        assert!(set.files.keys().any(|n| n.starts_with("static_kuberesources_") && n.ends_with(".tar.gz")), "resources copied out");
        match snap.1 {
            SimFile::Snapshot { status, .. } => assert_eq!(status, &info.snapshot, "verified status recorded"),
            other => panic!("{other:?}"),
        }
        let hosts_with_backup: Vec<&String> =
            w.hosts.iter().filter(|(_, h)| h.files.keys().any(|f| f.contains("/snapshot_"))).map(|(n, _)| n).collect();
        assert_eq!(hosts_with_backup.len(), 1, "backup taken on exactly one host: {hosts_with_backup:?}");
        assert!(w.hosts[hosts_with_backup[0]].dirs.iter().any(|d| d.contains("drctl-1")), "private backup dir made");
    });
}

#[test]
fn restore_with_a_reachable_other_host_stops_its_static_pods_and_moves_the_vips() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["run", "restore-cluster-state", "--sim", "quorum-loss-reachable", "--yes"]);
    assert_eq!(o.status.code(), Some(1), "keepalived without VIPs is refused up front\n{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--api-vip"), "{}", text(&o));

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(
        store,
        &["run", "restore-cluster-state", "--sim", "quorum-loss-reachable", "--yes", "--api-vip", "10.0.0.5", "--ingress-vip", "10.0.0.7"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(sim_status(store)["healthy"], true);
    // The runbook's notes that a person must act on are in the run's result: the fail-closed
    // webhook (step 15) and restarting the pods that keep API data (after step 24).
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("validatingwebhookconfiguration/kyverno-resource-validating-webhook-cfg webhook validate.kyverno.svc-fail"),
        "{out}"
    );
    assert!(out.contains("restart each pod that keeps Kubernetes API information"), "{out}");
    let h = history(store, "1");
    let steps: Vec<&str> = h.iter().filter(|e| e["outcome"] == "Transition").map(|e| e["to"].as_str().unwrap()).collect();
    let pos = |s: &str| steps.iter().position(|x| *x == s).unwrap_or_else(|| panic!("never reached {s}: {steps:#?}"));
    // Runbook step 4 on master-1, in order, all before the restore.
    let order = [
        "StopStaticPods(master-1:MoveEtcdManifest)",
        "StopStaticPods(master-1:WaitEtcdStopped)",
        "StopStaticPods(master-1:MoveApiServerManifest)",
        "StopStaticPods(master-1:WaitApiServerStopped)",
        "StopStaticPods(master-1:MoveEtcdDataDir)",
        "StopStaticPods(master-1:MoveKeepalivedManifest)",
        "StopStaticPods(master-1:WaitKeepalivedStopped)",
        "StopStaticPods(master-1:RemoveVips)",
        "CheckRecoveryVip",
        "RunRestore",
    ];
    for w in order.windows(2) {
        assert!(pos(w[0]) < pos(w[1]), "{} must come before {}", w[0], w[1]);
    }
}

/// Step 16 as each platform allows: the control plane machine set replaces what is deleted (drctl
/// creates nothing), bare-metal machines are never deleted (that would wipe their hosts), and a
/// user-provisioned cluster's hosts rejoin without any Machine object. Each ends healthy.
#[test]
fn restore_brings_the_control_plane_back_as_each_platform_allows() {
    use drctl_sim::world::EffectKind;
    for scenario in ["quorum-loss-cpms", "quorum-loss-baremetal", "quorum-loss-upi"] {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path();
        let vips = ["--api-vip", "10.0.0.5", "--ingress-vip", "10.0.0.7"];
        let keepalived = if scenario == "quorum-loss-baremetal" { &vips[..] } else { &[] };
        let o = drctl(store, &[&["run", "restore-cluster-state", "--sim", scenario, "--yes"][..], keepalived].concat());
        assert_eq!(o.status.code(), Some(0), "{scenario}: {}", text(&o));
        let st = sim_status(store);
        // Hosts that stay (bare metal) run keepalived again: a manifest left in /tmp would keep
        // the VIPs from failing over to them.
        assert_eq!(st["healthy"], true, "{scenario}: {st:#}");
        let world = drctl_sim::Sim::load(&world_file(store)).unwrap();
        let (created, deleted, wiped, live) = world.read(|w| {
            let count = |k: fn(&EffectKind) -> bool| w.effects.iter().filter(|e| k(&e.kind)).count();
            let live = w.api().machines.values().filter(|m| m.control_plane).count();
            (
                count(|k| *k == EffectKind::MachineCreated),
                count(|k| matches!(k, EffectKind::MachineDeleted { .. })),
                count(|k| *k == EffectKind::BareMetalHostDeprovisioned),
                live,
            )
        });
        assert_eq!((created, wiped), (0, 0), "{scenario}: the run created machines or wiped hosts");
        match scenario {
            "quorum-loss-cpms" => assert_eq!((deleted, live), (2, 3), "{scenario}: two deleted, three control-plane machines left"),
            "quorum-loss-baremetal" => assert_eq!((deleted, live), (0, 3), "{scenario}"),
            _ => assert_eq!((deleted, live), (0, 0), "{scenario}"),
        }
    }
}

/// Steps 13-15 follow the network the cluster reports: OVN-Kubernetes interconnect resets each
/// node's own databases (no node deletion, no ovnkube-master), OpenShift SDN has no OVN steps.
#[test]
fn restore_follows_the_network_plugin_the_cluster_reports() {
    for (scenario, want, never) in [
        ("quorum-loss-ovn-ic", &["RestartOvnControlPlane", "ResetOvnIcNode"][..], &["DeleteOtherNodes", "WaitOvnForgetsIps"][..]),
        ("quorum-loss-sdn", &[][..], &["DeleteOtherNodes", "RemoveOvnDatabases", "RestartOvnControlPlane", "ResetOvnIcNode"][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path();
        let o = drctl(store, &["run", "restore-cluster-state", "--sim", scenario, "--yes"]);
        assert_eq!(o.status.code(), Some(0), "{scenario}: {}", text(&o));
        assert_eq!(sim_status(store)["healthy"], true, "{scenario}");
        let h = history(store, "1");
        let reached = |s: &str| h.iter().any(|e| e["outcome"] == "Transition" && e["to"].as_str().unwrap().starts_with(s));
        for s in want {
            assert!(reached(s), "{scenario}: never reached {s}");
        }
        for s in never {
            assert!(!reached(s), "{scenario}: reached {s}");
        }
    }
}

/// Out-of-range numbers on the command line are one-line errors, never panics.
#[test]
fn out_of_range_inputs_are_refused_with_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    for (args, want) in [
        (&["run", "etcd-backup", "--sim", "healthy", "--deadline", "300000000000000d"][..], "too long"),
        (&["run", "etcd-backup", "--sim", "healthy", "--deadline", "0s"][..], "--deadline must be longer than 0s"),
        (&["run", "etcd-backup", "--sim", "healthy", "--sim-speed", "0"][..], "--sim-speed must be a positive number"),
        (&["resume", "--sim-speed", "0"][..], "--sim-speed must be a positive number"),
        (&["sim", "chaos", "--procedure", "etcd-backup", "--seeds", "1..2", "--faults", "api-slow@1s+1s:x50000000"][..], "at most x1000"),
    ] {
        let o = drctl(store, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(err.contains(want) && !err.contains("panicked"), "{args:?}: {}", text(&o));
    }
}

/// A halted run can be closed: `abort` carries out what undo its state needs and ends it
/// Aborted (exit 5), instead of leaving it halted for ever.
#[test]
fn a_halted_run_is_closed_by_abort() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    halt_on_a_dead_recovery_host(store);
    let o = drctl(store, &["abort", "1"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let view = drctl(store, &["status", "1", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&view.stdout).unwrap();
    assert_eq!(v["status"], "aborted", "{v:#}");
    // Nothing is left to abort, and it says so.
    let o = drctl(store, &["abort", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// A run told to restore on master-1, a host lost with its machine: SSH to it never answers, and
/// the run halts once its 30-minute deadline is spent (exit 3), having changed nothing.
fn halt_on_a_dead_recovery_host(store: &std::path::Path) {
    let o = drctl(
        store,
        &["run", "restore-cluster-state", "--sim", "quorum-loss", "--yes", "--recovery-host", "master-1", "--deadline", "30m"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(json(&drctl(store, &["status", "1", "-o", "json"]))["state_name"], "SelectRecoveryHost");
}

/// A halted run's setting is corrected with `resume --set`: checked as `run` checks it, refused
/// for keys the procedure does not have, recorded in history with who and old -> new; the run
/// starts again from its first guard and ends healthy.
#[test]
fn a_halted_run_is_corrected_with_resume_set_and_ends_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    halt_on_a_dead_recovery_host(store);
    let events = || history(store, "1").len();
    let before = events();
    for (set, want) in [
        ("recovery_host=master-9", "recovery host master-9 is not a control-plane host"),
        ("backup=last-tuesday", "backup not found"),
        ("backup_dir=relative", "absolute path"),
        ("no_such_key=1", "has no parameter 'no_such_key' (its parameters: "),
        ("ovn_kubernetes=false", "no longer used"),
        ("recovery_host", "must be KEY=VALUE"),
    ] {
        let o = drctl(store, &["resume", "1", "--set", set]);
        assert_eq!(o.status.code(), Some(1), "{set}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(want), "{set}: {}", text(&o));
    }
    assert_eq!(events(), before, "a refused correction was recorded");
    let o = drctl(store, &["sim", "status", "--run", "999"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no run 999 in "), "{}", text(&o));
    assert_eq!(json(&drctl(store, &["status", "1", "-o", "json"]))["status"], "halted");

    let o = drctl(store, &["resume", "1", "--set", "recovery-host=master-0"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("run 1 corrected (recovery_host=master-0): starts again from CheckApiDown"),
        "{}",
        text(&o)
    );
    assert_restored_healthy(&sim_status(store));
    let h = history(store, "1");
    let fix = h.iter().find(|e| e["outcome"] == "Corrected").expect("the correction is in the history");
    let detail = fix["detail"].as_str().unwrap();
    assert!(detail.starts_with("by ") && detail.contains(r#"recovery_host: "master-1" -> "master-0""#), "{detail}");
    assert_eq!((fix["from"].as_str(), fix["to"].as_str()), (Some("SelectRecoveryHost"), Some("CheckApiDown")));
    let view = json(&drctl(store, &["status", "1", "-o", "json"]));
    assert_eq!(view["params"]["recovery_host"], "master-0");
    // One time format in JSON: RFC 3339 in UTC with milliseconds, as `sim status` writes it.
    for t in [&view["created_at"], &view["updated_at"], &h[0]["at"], &sim_status(store)["time"]] {
        let t = t.as_str().unwrap_or_else(|| panic!("{t} is not RFC 3339 text"));
        assert!(t.len() == 24 && t.ends_with('Z') && drctl_runtime::Timestamp::parse_rfc3339(t).is_some(), "{t}");
    }
}

/// Once the restore has changed the cluster, a setting can no longer be corrected: resuming with
/// `--set` is refused and the run stays as it was.
#[test]
fn a_setting_cannot_be_corrected_once_the_run_changed_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    // Halts at step 6: the API VIP never reaches the recovery host (its keepalived was stopped
    // on every host by a fault), long after static pods were moved.
    let o =
        drctl(store, &["run", "restore-cluster-state", "--sim", "quorum-loss", "--yes", "--sim-api-outage", "0s+1h", "--deadline", "20m"]);
    let state = json(&drctl(store, &["status", "1", "-o", "json"]))["state_name"].as_str().unwrap().to_string();
    if o.status.code() != Some(3) || ["CheckApiDown", "CheckBackup", "SelectRecoveryHost"].iter().any(|s| state.starts_with(s)) {
        panic!("the run should halt after changing the cluster, at {state}: {}", text(&o));
    }
    let before = history(store, "1").len();
    let o = drctl(store, &["resume", "1", "--set", "backup=nightly"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("changing it now is unsafe"), "{}", text(&o));
    assert_eq!(history(store, "1").len(), before);
}
