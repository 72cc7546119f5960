//! Twin tests: each procedure runs through the real adapters (kube-rs over HTTPS, OpenSSH to a
//! real sshd per host) against the simulated cluster served over those protocols, and must end
//! exactly as the direct-port run of the same seed does: same outcome, same final state, same
//! cluster (the settled summary crash equivalence uses). The harness, invariants and engine are
//! the chaos harness's; only the ports differ.

mod twin_common;

use drctl_sim::chaos;
use twin_common::{twin_differences, Served};

/// Seeds of `procedure` whose scenario is `scenario`.
fn seed_for(procedure: &str, scenario: &str) -> u64 {
    let row = chaos::row(procedure).unwrap();
    (0..10_000).find(|s| row.scenario_for(*s).scenario == scenario).unwrap_or_else(|| panic!("no seed of {procedure} plays {scenario}"))
}

fn twin_matches_direct(procedure: &str, seed: u64) -> Served {
    let (served, diffs) = twin_differences(procedure, seed);
    let scenario = served.obs.scenario.clone();
    assert!(diffs.is_empty(), "{procedure} seed {seed} ({scenario}):\n{}\nthe hosts' log:\n{}", diffs.join("\n"), served.log_text());
    served
}

/// The twin tier of the catalog: every procedure the twin serves, in every scenario its chaos
/// row plays, through the real adapters, ends as its direct-port run of the same seed. A new
/// procedure is in this test by its row.
#[test]
fn every_procedure_in_every_scenario_ends_as_its_direct_run() {
    let mut failures = vec![];
    let mut ran = 0;
    for row in chaos::rows() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..400u64 {
            let scenario = row.scenario_for(seed).scenario;
            if !seen.insert(scenario) {
                continue;
            }
            let (served, diffs) = twin_differences(row.procedure, seed);
            ran += 1;
            if !diffs.is_empty() {
                failures.push(format!("{} seed {seed} ({scenario}):\n  {}\n{}", row.procedure, diffs.join("\n  "), served.log_text()));
            }
        }
    }
    assert!(ran >= 12, "only {ran} procedure/scenario pairs ran");
    assert!(failures.is_empty(), "{} of {ran} twin runs differ from their direct runs:\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn restore_quorum_loss_through_the_real_adapters_ends_as_the_direct_run() {
    let served = twin_matches_direct("restore-cluster-state", seed_for("restore-cluster-state", "quorum-loss"));
    assert!(served.sim.status().healthy, "the served cluster is not healthy: {:?}", served.sim.status().problems);
    // The hosts received the runbook's commands, in the runbook's order (§5.4.2.2 steps 4-7).
    let recovery = served.recovery_host();
    let log = served.commands_on(&recovery);
    // Quorum loss with the other two machines gone: on the recovery host, copy the backup,
    // restore (§5.4.2.2 step 7), renew the kubelet's certificates and restart it (step 9), check
    // etcd runs (step 11), reset OVN (step 13), force the etcd redeployment (step 19).
    let order = [
        "sudo tee -- /home/core/assets/backup/",
        "/usr/local/bin/cluster-restore.sh",
        "sudo find /var/lib/kubelet/pki -maxdepth 1 -name '*.pem'",
        "sudo systemctl restart kubelet.service",
        "sudo crictl ps --name etcd -o json",
        "sudo find /var/lib/ovn/etc -maxdepth 1 -name '*.db'",
        "patch etcd cluster --type=merge -p",
    ];
    let mut at = 0;
    for want in order {
        let found = log[at..].iter().position(|c| c.contains(want));
        assert!(found.is_some(), "{want:?} not sent to {recovery} after the commands before it; the hosts' log:\n{}", served.log_text());
        at += found.unwrap_or(0) + 1;
    }
}

#[test]
fn etcd_backup_through_the_real_adapters_ends_as_the_direct_run() {
    let seed = seed_for("etcd-backup", "healthy");
    let served = twin_matches_direct("etcd-backup", seed);
    // The set the run copied into the backup directory is complete: the snapshot, the static
    // resources and the info file written last.
    let root = served.twin.backup_root.clone();
    let sets: Vec<std::path::PathBuf> = std::fs::read_dir(&root).unwrap().flatten().map(|e| e.path()).collect();
    let complete = sets.iter().any(|d| {
        let names: Vec<String> = std::fs::read_dir(d).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.iter().any(|n| n.starts_with("snapshot_") && n.ends_with(".db"))
            && names.iter().any(|n| n.starts_with("static_kuberesources_"))
            && names.iter().any(|n| n == "backup-info.json")
    });
    assert!(complete, "no complete backup set in {}: {sets:?}", root.display());
}

/// A run through the real adapters is reproducible from its seed: every request costs its
/// modelled time on the world's clock, so two twin runs of the same case write the same history
/// and leave the same world log.
#[test]
fn a_twin_run_is_reproducible_from_its_seed() {
    let row = chaos::row("restore-cluster-state").unwrap();
    let seed = (0..10_000).find(|s| row.scenario_for(*s).scenario == "quorum-loss-ovn-ic").unwrap();
    let case = chaos::ChaosCase { seed, schedule: row.schedule_for(seed, &drctl_sim::faults::FaultKind::ALL) };
    let a = twin_common::served_case("restore-cluster-state", &case);
    let b = twin_common::served_case("restore-cluster-state", &case);
    // Each served world listens on ports of its own: error texts quote them.
    let unported = |o: &chaos::RunObservation| -> Vec<String> {
        o.history
            .iter()
            .map(|e| {
                let text = format!("{} {} {} {} {:?} {:?}", e.at.0, e.from, e.to, e.attempt, e.outcome, e.detail);
                let mut out = String::new();
                let mut rest = text.as_str();
                while let Some(i) = rest.find("127.0.0.1") {
                    out.push_str(&rest[..i + 9]);
                    rest =
                        rest[i + 9..].trim_start_matches([' ', ':', 'p', 'o', 'r', 't']).trim_start_matches(|c: char| c.is_ascii_digit());
                    out.push_str(":<port>");
                }
                out + rest
            })
            .collect()
    };
    let (ha, hb) = (unported(&a.obs), unported(&b.obs));
    let i = ha.iter().zip(&hb).position(|(x, y)| x != y);
    assert!(
        i.is_none() && ha.len() == hb.len(),
        "seed {seed} [{}]: two twin runs differ at event {i:?}: {:?} vs {:?}",
        case.schedule,
        i.map(|i| &ha[i]),
        i.map(|i| &hb[i])
    );
    assert_eq!(a.twin.hosts.commands(), b.twin.hosts.commands());
    assert_eq!(a.sim.read(drctl_sim::world_digest), b.sim.read(drctl_sim::world_digest), "the worlds differ");
}

/// Scenarios no chaos row plays, through both paths: a kubeconfig holding an `oc login` token
/// (refused before anything changes: a restored cluster would not know the token), and a host
/// drctl cannot reach whose etcd still answers (the unreachable-etcd gate).
#[test]
fn cli_only_scenarios_end_as_their_direct_runs() {
    let row = chaos::row("restore-cluster-state").unwrap();
    let factory = chaos::registry_factory("restore-cluster-state").unwrap();
    let seed = (0..10_000).find(|s| row.scenario_for(*s).scenario == "quorum-loss").unwrap();
    let case = chaos::ChaosCase { seed, schedule: Default::default() };
    for scenario in ["quorum-loss-token-kubeconfig", "quorum-loss-partitioned"] {
        let world = drctl_sim::scenario::build(scenario, seed).unwrap();
        let direct_sim = drctl_sim::Sim::new(world.clone());
        let direct =
            chaos::run_case_through(&row, &factory, &case, false, &direct_sim, direct_sim.ports(), std::sync::Arc::new(direct_sim.clock()));
        let served = twin_common::served_world_with("restore-cluster-state", &case, world, |twin, clock| twin.real_ports(clock).unwrap());
        let headline = |o: &Option<String>| o.as_deref().map(|t| t.lines().next().unwrap_or("").to_string());
        assert_eq!(
            (served.obs.status, &served.obs.final_state, headline(&served.obs.outcome)),
            (direct.status, &direct.final_state, headline(&direct.outcome)),
            "{scenario}: the twin ended unlike the direct run; hosts' log:\n{}",
            served.log_text()
        );
    }
}

#[test]
fn member_triage_through_the_real_adapters_ends_as_the_direct_run() {
    for scenario in ["member-machine-stopped", "member-crashloop"] {
        let served = twin_matches_direct("etcd-member-triage", seed_for("etcd-member-triage", scenario));
        assert_eq!(served.obs.status, drctl_runtime::RunStatus::Succeeded, "{scenario}: {:?}", served.obs.outcome);
        assert!(served.sim.status().healthy, "{scenario}: {:?}", served.sim.status().problems);
    }
}

#[test]
fn bare_metal_replacement_through_the_real_adapters_ends_as_the_direct_run() {
    for procedure in ["replace-etcd-member-baremetal", "etcd-member-triage"] {
        let served = twin_matches_direct(procedure, seed_for(procedure, "baremetal-member-lost"));
        assert_eq!(served.obs.status, drctl_runtime::RunStatus::Succeeded, "{procedure}: {:?}", served.obs.outcome);
        assert!(served.sim.status().healthy, "{procedure}: {:?}", served.sim.status().problems);
        let hosts = served.sim.status().bare_metal_hosts;
        assert!(hosts.iter().any(|h| h.state == "provisioned" && h.consumer.is_some()), "{procedure}: {hosts:?}");
    }
}

#[test]
fn the_hosted_etcd_snapshot_goes_through_the_served_s3_and_ends_as_the_direct_run() {
    let seed = (0..10_000u64)
        .find(|s| chaos::row("hosted-etcd-snapshot").unwrap().scenario_index(*s) == 0)
        .expect("a seed backing up hosted-healthy");
    let served = twin_matches_direct("hosted-etcd-snapshot", seed);
    assert_eq!(served.obs.status, drctl_runtime::RunStatus::Succeeded, "{:?}", served.obs.outcome);
    // The SDK wrote the objects into the served world: the snapshot, the key, the manifest.
    let objects = served.sim.status().objects;
    assert_eq!(objects.len(), 3, "{objects:?}");
    assert!(objects.iter().any(|o| o.key == "hcp/example-backup.json"), "{objects:?}");
}
