//! The chaos tier through the real adapters: seeds of every procedure, each with its derived
//! fault schedule (API outages, 429/5xx answers, slow API, hosts unreachable, dropped SSH
//! connections, etcd crashes and errors, full disks, runner crashes before and after effects,
//! gates, aborts), run through kube-rs and OpenSSH against the served world, where the faults
//! happen at the protocol layer: a refused API drops the TLS connection, an unreachable host has
//! its sshd stopped, a dropped connection kills the SSH session mid-command. Every safety
//! invariant is checked after every transition and liveness once the faults are over, as in the
//! direct-port sweeps.
//!
//! `DRCTL_TWIN_CHAOS_SEEDS=N` sets the seeds per procedure (default 50); a failure prints the
//! `drctl sim chaos` command that replays its seed and schedule on the direct ports.

#![allow(clippy::disallowed_methods)] // reports how long each seed took in real time

mod twin_common;

use drctl_sim::chaos::{self, replay_command, ChaosCase};
use drctl_sim::faults::FaultKind;
use twin_common::served_case;

fn seeds() -> u64 {
    std::env::var("DRCTL_TWIN_CHAOS_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(50)
}

/// How many seeds of one procedure run at once: a twin run mostly waits on processes (sshd,
/// the forced command) and sockets, so two at a time use the cores better.
const PARALLEL: u64 = 2;

fn sweep(procedure: &str) {
    let row = chaos::row(procedure).unwrap();
    let seeds = seeds();
    let results: Vec<(u64, u32, Option<String>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..PARALLEL)
            .map(|lane| {
                let row = &row;
                s.spawn(move || {
                    let mut out = vec![];
                    for seed in (1..=seeds).filter(|k| k % PARALLEL == lane) {
                        let case = ChaosCase { seed, schedule: row.schedule_for(seed, &FaultKind::ALL) };
                        let t0 = std::time::Instant::now();
                        let served = served_case(procedure, &case);
                        if std::env::var_os("DRCTL_TWIN_CHAOS_TIMES").is_some() {
                            eprintln!("{procedure} seed {seed} ({}): {:?} [{}]", served.obs.scenario, t0.elapsed(), case.schedule);
                        }
                        let failure = served.obs.violation.as_ref().map(|v| {
                            format!(
                                "seed {seed} ({}): {v:?}\n  replay on the direct ports: {}\n  hosts' log:\n{}",
                                served.obs.scenario,
                                replay_command(procedure, seed, &case.schedule),
                                served.log_text()
                            )
                        });
                        out.push((seed, served.obs.faults_injected, failure));
                    }
                    out
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a sweep lane panicked")).collect()
    });
    let ran = results.len();
    let faults: u32 = results.iter().map(|r| r.1).sum();
    let mut failures: Vec<&(u64, u32, Option<String>)> = results.iter().filter(|r| r.2.is_some()).collect();
    failures.sort_by_key(|r| r.0);
    eprintln!("{procedure}: {ran} seeds through the real adapters, {faults} faults injected, {} violations", failures.len());
    // Short procedures end before most windows open (as on the direct ports); some must land.
    assert!(faults > 0, "{procedure}: no fault over {ran} seeds reached the twin");
    let text: Vec<&str> = failures.iter().filter_map(|r| r.2.as_deref()).collect();
    assert!(failures.is_empty(), "{procedure}: {} of {ran} twin chaos runs broke an invariant:\n{}", failures.len(), text.join("\n\n"));
}

#[test]
fn restore_cluster_state_under_protocol_faults() {
    sweep("restore-cluster-state");
}

#[test]
fn etcd_backup_under_protocol_faults() {
    sweep("etcd-backup");
}

#[test]
fn hosted_pause_reconciliation_under_protocol_faults() {
    sweep("hosted-pause-reconciliation");
}

/// Pod exec into the hosted etcd, deletes under uid preconditions, the NodePool scale subresource.
#[test]
fn hosted_etcd_member_recover_and_data_plane_scale_under_protocol_faults() {
    sweep("hosted-etcd-member-recover");
    sweep("hosted-scale-data-plane-zero");
}

/// The triage and, as its child runs, both member replacements and the backup they take first.
#[test]
fn etcd_member_triage_under_protocol_faults() {
    sweep("etcd-member-triage");
}
