//! The chaos harness over every procedure of the registry: seed sweeps with faults injected
//! (safety after every transition, liveness once the faults are over, determinism by running
//! each seed twice), crash equivalence at every transition, proptest-generated schedules.

use drctl_runtime::record::{Outcome, RunStatus};
use drctl_sim::chaos::*;
use drctl_sim::faults::{FaultKind, FaultSchedule};

fn sweep_ok(procedure: &str, seeds: std::ops::Range<u64>) -> SweepReport {
    let mut opts = SweepOptions::new(procedure, seeds);
    opts.max_failures = 50;
    let r = sweep(&opts).expect("sweep runs");
    println!("{r}");
    assert!(r.failures.is_empty(), "{} failures:\n{r}", r.failures.len());
    let c = &r.coverage;
    assert!(c.states_unknown.is_empty() && c.transitions_unknown.is_empty(), "the procedure's state catalog is out of date:\n{r}");
    let missed: Vec<&SometimesResult> = r.sometimes.iter().filter(|s| s.required && s.runs == 0).collect();
    assert!(missed.is_empty(), "rare paths never reached: {missed:?}\n{r}");
    assert_eq!(r.passed, r.failures.is_empty());
    r
}

#[test]
fn every_procedure_of_the_registry_has_a_chaos_row_and_a_state_catalog() {
    let reg = drctl_workflows::registry();
    let rows = rows();
    for p in reg.iter() {
        let row = rows.iter().find(|r| r.procedure == p.name());
        let row = row
            .unwrap_or_else(|| panic!("procedure {} has no row in drctl_sim::chaos::rows(): add one so chaos sweeps cover it", p.name()));
        assert!(
            !p.state_catalog().is_empty(),
            "procedure {} declares no state_catalog(): coverage cannot say what was never reached",
            p.name()
        );
        for sc in row.scenarios {
            let w = drctl_sim::scenario::build(sc.scenario, 1).expect("the row's scenario exists");
            assert!(!w.hosts.is_empty());
            p.encode_params((sc.params)(&w))
                .unwrap_or_else(|e| panic!("{}: the row's parameters for {} are invalid: {e}", p.name(), sc.scenario));
        }
        // Every state a transition leads to is itself in the catalog.
        let states: Vec<&str> = p.state_catalog().iter().map(|(s, _)| *s).collect();
        for (s, to) in p.state_catalog() {
            for t in *to {
                assert!(states.contains(t), "{}: {s} -> {t}, but {t} is not a state of the catalog", p.name());
            }
        }
    }
    for r in &rows {
        assert!(reg.get(r.procedure).is_some(), "row {} names no procedure of the registry", r.procedure);
    }
}

// 2,000 seeds per procedure, the restore in two halves so that both cores work.

#[test]
fn restore_cluster_state_keeps_every_invariant_over_seeds_1_to_1000() {
    let r = sweep_ok("restore-cluster-state", 1..1001);
    assert_eq!(r.seeds_run, 1000);
    assert_eq!(r.runs, 2000 + r.crash_points_checked + r.crash_seeds.len() as u64, "each seed twice, and every crash point");
    assert_eq!(r.crash_seeds.len(), 2, "crash equivalence for both scenarios");
    assert!(r.faults_injected > 500, "{r}");
}

#[test]
fn restore_cluster_state_keeps_every_invariant_over_seeds_1001_to_2000() {
    sweep_ok("restore-cluster-state", 1001..2001);
}

#[test]
fn etcd_backup_keeps_every_invariant_over_seeds_1_to_2000() {
    let r = sweep_ok("etcd-backup", 1..2001);
    assert!(r.coverage.states_never.is_empty(), "{r}");
}

/// Crash at every step execution, before and after its effect, for seeds covering every
/// scenario of the procedure's row.
/// Scenarios whose runs a guard refuses (they end within the first few transitions).
const REFUSED_SCENARIOS: &[&str] = &["api-unreachable", "quorum-loss-misnamed", "quorum-loss"];
/// Scenarios one procedure refuses, though others act on them.
const REFUSED_BY: &[(&str, &str)] =
    &[("hosted-etcd-member-recover", "hosted-healthy"), ("hosted-scale-data-plane-zero", "hosted-autoscaling")];

/// Scenario choices (by index in the row) one procedure refuses by their parameters.
const REFUSED_CHOICES: &[(&str, usize)] = &[("hosted-etcd-snapshot", 2)];

fn crash_everywhere(procedure: &str, per_scenario: usize, min_points: u64) -> u64 {
    let row = row(procedure).unwrap();
    let factory = registry_factory(procedure).unwrap();
    let mut points = 0;
    for (i, sc) in row.scenarios.iter().enumerate() {
        let seeds: Vec<u64> = (1..200).filter(|s| row.scenario_index(*s) == i).take(per_scenario).collect();
        assert_eq!(seeds.len(), per_scenario, "seeds for {}", sc.scenario);
        for seed in seeds {
            let c = crash_equivalence(&row, &factory, seed);
            let failures: Vec<String> = c
                .failures
                .iter()
                .map(|o| {
                    let v = o.violation.as_ref().unwrap();
                    format!("{}: {}\n  replay: {}", v.invariant, v.detail, replay_command(procedure, seed, &o.schedule))
                })
                .collect();
            assert!(failures.is_empty(), "{procedure} seed {seed} ({}):\n{}", sc.scenario, failures.join("\n"));
            // A scenario the procedure refuses ends after its guards: fewer transitions to crash at.
            let refused = REFUSED_SCENARIOS.contains(&sc.scenario)
                || REFUSED_BY.contains(&(procedure, sc.scenario))
                || REFUSED_CHOICES.contains(&(procedure, i));
            let min = if refused { 2 } else { min_points };
            assert!(c.points >= min, "{procedure} seed {seed} ({}): only {} crash points", sc.scenario, c.points);
            println!("{procedure} seed {seed} ({}): {} crash points, all equivalent", sc.scenario, c.points);
            points += c.points;
        }
    }
    points
}

#[test]
fn restore_cluster_state_crashed_at_every_transition_ends_as_without_the_crash() {
    let points = crash_everywhere("restore-cluster-state", 2, 11);
    println!("restore-cluster-state: {points} crash points checked");
}

#[test]
fn etcd_backup_crashed_at_every_transition_ends_as_without_the_crash() {
    let points = crash_everywhere("etcd-backup", 10, 11);
    println!("etcd-backup: {points} crash points checked");
}

#[test]
fn hosted_pause_reconciliation_keeps_every_invariant_over_seeds_1_to_2000() {
    let r = sweep_ok("hosted-pause-reconciliation", 1..2001);
    assert!(r.coverage.states_never.is_empty(), "{r}");
}

#[test]
fn hosted_pause_reconciliation_crashed_at_every_transition_ends_as_without_the_crash() {
    // The refused unpause of hosted-paused-by-other ends at its first step: few points there.
    let points = crash_everywhere("hosted-pause-reconciliation", 5, 2);
    assert!(points > 40, "{points}");
}

#[test]
fn the_hosted_etcd_member_recovery_snapshot_and_the_data_plane_scale_keep_every_invariant_over_seeds_1_to_2000() {
    for procedure in ["hosted-etcd-member-recover", "hosted-scale-data-plane-zero", "hosted-etcd-snapshot"] {
        let r = sweep_ok(procedure, 1..2001);
        assert!(r.coverage.states_never.is_empty(), "{r}");
    }
}

#[test]
fn the_hosted_etcd_member_recovery_snapshot_and_the_data_plane_scale_crashed_at_every_transition_end_as_without_the_crash() {
    for (procedure, per_scenario, min_points) in
        [("hosted-etcd-member-recover", 4, 8), ("hosted-scale-data-plane-zero", 3, 8), ("hosted-etcd-snapshot", 3, 16)]
    {
        let points = crash_everywhere(procedure, per_scenario, min_points);
        println!("{procedure}: {points} crash points checked");
    }
}

#[test]
fn etcd_member_triage_keeps_every_invariant_over_seeds_1_to_2000() {
    // Its row requires the refusal on quorum-loss (naming restore-cluster-state) to be seen.
    sweep_ok("etcd-member-triage", 1..2001);
}

#[test]
fn replace_etcd_member_machine_keeps_every_invariant_over_seeds_1_to_2000() {
    sweep_ok("replace-etcd-member-machine", 1..2001);
}

#[test]
fn replace_etcd_member_crashloop_keeps_every_invariant_over_seeds_1_to_2000() {
    sweep_ok("replace-etcd-member-crashloop", 1..2001);
}

#[test]
fn replace_etcd_member_baremetal_keeps_every_invariant_over_seeds_1_to_2000() {
    // Its row requires a hung machine deletion ended by removing the finalizer to be seen.
    sweep_ok("replace-etcd-member-baremetal", 1..2001);
}

#[test]
fn recover_expired_certs_keeps_every_invariant_over_seeds_1_to_2000() {
    // Its row requires the foreign CSR to have gone to a person.
    sweep_ok("recover-expired-certs", 1..2001);
}

#[test]
fn recover_expired_certs_crashed_at_every_transition_ends_as_without_the_crash() {
    // On `healthy` it finds nothing to do after one transition: the points are certs-expired's.
    let points = crash_everywhere("recover-expired-certs", 3, 2);
    assert!(points >= 20, "{points}");
}

#[test]
fn cluster_shutdown_and_restart_keep_every_invariant_over_seeds_1_to_2000() {
    sweep_ok("cluster-shutdown", 1..2001);
    sweep_ok("cluster-restart", 1..2001);
}

#[test]
fn cluster_shutdown_and_restart_crashed_at_every_transition_end_as_without_the_crash() {
    for procedure in ["cluster-shutdown", "cluster-restart"] {
        let points = crash_everywhere(procedure, 3, 8);
        assert!(points >= 30, "{procedure}: {points}");
    }
}

#[test]
fn member_replacements_crashed_at_every_transition_end_as_without_the_crash() {
    for (procedure, per_scenario, min_points) in [
        ("etcd-member-triage", 2, 20),
        ("replace-etcd-member-machine", 3, 20),
        ("replace-etcd-member-crashloop", 4, 15),
        ("replace-etcd-member-baremetal", 3, 30),
    ] {
        let points = crash_everywhere(procedure, per_scenario, min_points);
        println!("{procedure}: {points} crash points checked");
    }
}

#[test]
fn proptest_generated_schedules_keep_every_invariant() {
    for (procedure, cases) in [("restore-cluster-state", 150), ("etcd-backup", 600)] {
        let row = row(procedure).unwrap();
        let factory = registry_factory(procedure).unwrap();
        if let Some(f) = explore(&row, &factory, 10_000..20_000, &FaultKind::ALL, cases, 7) {
            panic!(
                "{procedure}: seed {} broke {}: {}\n  minimal faults: {}\n  replay: {}",
                f.seed, f.invariant, f.detail, f.schedule, f.replay
            );
        }
    }
}

#[test]
fn a_replayed_case_reproduces_its_event_log_hash_and_another_seed_does_not() {
    let row = row("restore-cluster-state").unwrap();
    let factory = registry_factory("restore-cluster-state").unwrap();
    let schedule =
        FaultSchedule::parse("api-outage@20m+2h,etcd-error(no-leader)@3h+5m:60%,crash-after(RunRestore)+30s,gate(start)+15m").unwrap();
    let a = replay(&row, &factory, 42, &schedule);
    let b = replay(&row, &factory, 42, &schedule);
    assert!(a.violation.is_none(), "{:?}", a.violation);
    assert_eq!(a.event_log_hash, b.event_log_hash);
    assert_eq!(a.settled_digest, b.settled_digest);
    let c = replay(&row, &factory, 43, &schedule);
    assert_ne!(a.event_log_hash, c.event_log_hash, "the seed matters");
    assert_eq!(a.status, RunStatus::Succeeded);
    assert_eq!(a.crashes, 1);
}

fn details(o: &RunObservation) -> String {
    o.history.iter().filter(|e| e.outcome == Outcome::Retry).filter_map(|e| e.detail.clone()).collect::<Vec<_>>().join("\n")
}

#[test]
fn injected_faults_reach_the_procedure_with_the_adapters_error_texts() {
    let restore = row("restore-cluster-state").unwrap();
    let factory = registry_factory("restore-cluster-state").unwrap();
    // quorum-loss seeds: only master-0 (10.0.0.10) answers SSH.
    let seed = (1..100).find(|s| restore.scenario_for(*s).scenario == "quorum-loss").unwrap();
    for (faults, text) in [
        ("ssh-down(master-0)@1m+10m", "ssh: host unreachable: ssh: connect to host 10.0.0.10 port 22: No route to host"),
        ("ssh-drop(master-0)@1m+5m:100%", "ssh: connection lost: Connection to 10.0.0.10 closed by remote host."),
        ("api-error(503)@0s+4h:100%", "HTTP 503 ServiceUnavailable: the server is currently unable to handle the request"),
        ("api-error(429)@0s+4h:100%", "HTTP 429 TooManyRequests: the server has received too many requests"),
        ("api-error(500)@0s+4h:100%", "HTTP 500 InternalError: Internal error occurred"),
        (
            "api-error(504)@0s+4h:100%",
            "HTTP 504 Timeout: the server was unable to return a response in the time allotted, but may still be processing the request",
        ),
        ("etcd-error(no-leader)@0s+4h:100%", "etcdserver: no leader"),
        ("etcd-error(timed-out)@0s+4h:100%", "etcdserver: request timed out"),
    ] {
        let o = run_case(&restore, &factory, &ChaosCase { seed, schedule: FaultSchedule::parse(faults).unwrap() });
        assert!(o.violation.is_none(), "{faults}: {:?}", o.violation);
        assert!(details(&o).contains(text), "{faults}: no retry with {text:?}:\n{}", details(&o));
        assert_eq!(o.status, RunStatus::Succeeded, "{faults}: transient faults end in success once over");
    }
    // Disk full while the backup is written: the run halts with the real error; once the disk
    // has room again a person resumes it (the liveness phase does) and it completes.
    let backup = row("etcd-backup").unwrap();
    let bf = registry_factory("etcd-backup").unwrap();
    let o = run_case(&backup, &bf, &ChaosCase { seed: 1, schedule: FaultSchedule::parse("disk-full(master-0)@0s+1h").unwrap() });
    assert!(o.violation.is_none(), "{:?}", o.violation);
    assert!(o.resumed_after.as_deref().unwrap().contains("no space left on device"), "{:?}", o.resumed_after);
    assert_eq!(o.status, RunStatus::Succeeded);
    // The same on the recovery host while the backup is copied onto it.
    let o = run_case(&restore, &factory, &ChaosCase { seed, schedule: FaultSchedule::parse("disk-full(master-0)@0s+2h").unwrap() });
    assert!(o.violation.is_none(), "{:?}", o.violation);
    assert!(o.resumed_after.as_deref().unwrap().contains("No space left on device"), "{:?}", o.resumed_after);
    assert_eq!(o.status, RunStatus::Succeeded);
}

#[test]
fn a_member_crash_costs_quorum_only_with_a_second_one() {
    let backup = row("etcd-backup").unwrap();
    let bf = registry_factory("etcd-backup").unwrap();
    // One member down: the backup goes on (from a healthy host).
    let o = run_case(&backup, &bf, &ChaosCase { seed: 3, schedule: FaultSchedule::parse("etcd-crash(master-0)@0s+20m").unwrap() });
    assert_eq!((o.status, o.violation.clone()), (RunStatus::Succeeded, None));
    // Two down: no quorum, the API fails with etcd's error until they restart.
    let o = run_case(
        &backup,
        &bf,
        &ChaosCase { seed: 3, schedule: FaultSchedule::parse("etcd-crash(master-0)@0s+20m,etcd-crash(master-1)@0s+20m").unwrap() },
    );
    assert_eq!((o.status, o.violation.clone()), (RunStatus::Succeeded, None));
    assert!(details(&o).contains("etcdserver: request timed out"), "{}", details(&o));
    assert!(o.ended_at.0 - o.started_at.0 > 20 * 60 * 1000, "it waited for quorum");
}

#[test]
fn the_sweep_report_says_what_was_run_checked_and_covered() {
    let mut opts = SweepOptions::new("etcd-backup", 1..40);
    opts.crash_seeds = 1;
    let start = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    // A stopwatch that ticks per call stands in for the CLI's wall clock.
    let s2 = start.clone();
    opts.stopwatch =
        Some(std::sync::Arc::new(move || std::time::Duration::from_millis(500 + s2.fetch_add(1, std::sync::atomic::Ordering::Relaxed))));
    let r = sweep(&opts).unwrap();
    let text = r.to_string();
    for want in ["runs", "faults injected", "invariant checks", "crash points", "coverage", "simulations/s", "sometimes", "result: PASS"] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    assert!(r.crash_points_checked > 10);
    assert!(r.simulations_per_sec.unwrap() > 0.0);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["procedure"], "etcd-backup");
    assert!(json["coverage"]["states"]["TakeBackup"].as_u64().unwrap() > 0);
    assert!(sweep(&SweepOptions::new("no-such-procedure", 1..2)).unwrap_err().contains("no chaos table row"));
}

#[test]
fn a_world_with_faults_and_effects_persists_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.world");
    let sim = drctl_sim::Sim::scenario("healthy", 5).unwrap();
    sim.write(|w| FaultSchedule::parse("etcd-crash(master-1)@0s+1m,api-error(503)@0s+1h:50%,slow-ops@0s+1h:x3").unwrap().apply_to(w));
    sim.persist_to(&path).unwrap();
    let loaded = drctl_sim::Sim::load(&path).unwrap();
    assert_eq!(loaded.digest(), sim.digest());
    assert_eq!(loaded.read(|w| w.faults.clone()), sim.read(|w| w.faults.clone()));
}
