//! Simulations per CPU-second of full runs of every procedure in the catalog with fault injection
//! (each seed's own fault schedule, invariants checked after every transition), on one core.
//!
//! `cargo bench -p drctl-sim --bench chaos`. Wall-clock time is used here only to measure.
#![allow(clippy::disallowed_methods)] // a bench measures real time

use drctl_sim::chaos::{registry_factory, row, run_case, ChaosCase};
use drctl_sim::faults::{FaultKind, FaultSchedule};
use std::time::{Duration, Instant};

const BUDGET: Duration = Duration::from_secs(4);

/// CPU time this thread has used: on a machine shared with other work, runs per CPU-second is
/// the per-core throughput; runs per wall-second is what this machine gave us.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn measure(procedure: &str, faults: bool) {
    let row = row(procedure).expect("row");
    let factory = registry_factory(procedure).expect("procedure");
    // Schedules are derived outside the timed loop: building them is not simulating.
    let cases: Vec<ChaosCase> = (1..=400u64)
        .map(|seed| ChaosCase { seed, schedule: if faults { row.schedule_for(seed, &FaultKind::ALL) } else { FaultSchedule::none() } })
        .collect();
    let (mut runs, mut steps, mut failures) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let cpu0 = thread_cpu();
    while start.elapsed() < BUDGET {
        for c in &cases {
            let obs = run_case(&row, &factory, c);
            runs += 1;
            steps += obs.steps as u64;
            failures += obs.violation.is_some() as u64;
            if start.elapsed() >= BUDGET {
                break;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = (thread_cpu() - cpu0).as_secs_f64();
    println!(
        "{procedure:<22} faults {:<3} {:>7.0} runs per CPU-second ({:>6.0} per wall-second)  {:>7.0} steps/CPU-s  {:.1} steps/run  {runs} runs  {failures} failing  {secs:.1} s wall, {cpu:.1} s CPU, 1 thread",
        if faults { "yes" } else { "no" },
        runs as f64 / cpu,
        runs as f64 / secs,
        steps as f64 / cpu,
        steps as f64 / runs as f64
    );
}

fn main() {
    let only = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    // Every procedure of the catalog with faults, and the restore without them for contrast.
    let runs = drctl_workflows::catalog::CATALOG.iter().map(|r| (r.name, true)).chain([("restore-cluster-state", false)]);
    for (p, faults) in runs {
        if only.as_deref().is_some_and(|o| o != p) {
            continue;
        }
        measure(p, faults);
    }
}
