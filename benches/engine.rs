//! The whole engine measured against baselines taken in the same run, on the same disk:
//!
//! - `engine`: a no-op procedure of N durable steps driven by the real executor on the sled
//!   store at 1, 64 and 1,000 concurrent runs — per-step latency p50/p99 and transitions per
//!   second, each divided by raw `fdatasync` of the same disk; commits per device flush.
//! - `recovery`: a store holding 100,000 finished runs and 1,000 active ones — time from opening
//!   it to the first resumed transition and to all 1,000 resumed; RSS with 10,000 runs waiting
//!   on timers.
//! - `growth`: bytes on disk per transition over many transitions, and after `gc` compacts the
//!   finished runs.
//! - `--with-restate`: the same durable steps in Restate (benches/restate), same disk, same run.
//!
//! `cargo bench --bench engine -- [engine] [recovery] [growth] [--with-restate] [--quick]`
//! (no section: all but Restate). `DRCTL_BENCH_DIR` picks the file system (default: the system
//! temp dir). Wall-clock time is used here only to measure.
#![allow(clippy::disallowed_methods)] // a bench measures real time

use drctl_runtime::clock::{BoxFuture, Clock, Timestamp};
use drctl_runtime::executor::{Engine, NewRun};
use drctl_runtime::procedure::{Procedure, Registry, Step, StepContext, StepError};
use drctl_runtime::store::Store;
use drctl_runtime::{RetryPolicy, RunRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// N durable steps that do nothing but commit; with `wait`, the first step waits on a timer
/// (an hour) instead.
struct NoopSteps;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct NoopParams {
    steps: u32,
    #[serde(default)]
    wait: bool,
}

impl Procedure for NoopSteps {
    type Env = ();
    type Params = NoopParams;
    type State = u32;
    const NAME: &'static str = "noop-steps";
    const VERSION: u32 = 1;

    fn validate(&self, _: &NoopParams) -> Result<(), String> {
        Ok(())
    }
    fn initial_state(&self, _: &NoopParams) -> u32 {
        0
    }
    fn state_name(&self, s: &u32) -> String {
        format!("Step({s})")
    }
    fn step(&self, _: &(), _: &StepContext, p: &NoopParams, s: &u32) -> Result<Step<u32>, StepError> {
        Ok(match (*s, p.wait) {
            (0, true) => {
                Step::Wait { waiting_for: "a timer".into(), recheck_after: Duration::from_secs(3600), bound: Duration::from_secs(86_400) }
            }
            (s, _) if s >= p.steps => Step::Done { summary: "done".into() },
            (s, _) => Step::Next(s + 1),
        })
    }
    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[("Step", &["Step"])]
    }
}

/// The wall clock, for the bench only.
struct WallClock;

impl Clock for WallClock {
    fn now(&self) -> Timestamp {
        Timestamp(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64)
    }
    fn sleep_until(&self, t: Timestamp) -> BoxFuture<'_, ()> {
        let d = Duration::from_millis(t.millis().saturating_sub(self.now().millis()));
        Box::pin(tokio::time::sleep(d))
    }
}

fn engine(store: Arc<Store>) -> Arc<Engine<()>> {
    let mut reg = Registry::default();
    reg.register(NoopSteps);
    Arc::new(Engine::new(store, Arc::new(reg), RetryPolicy::default()))
}

fn new_run(steps: u32, wait: bool) -> NewRun {
    NewRun {
        procedure: "noop-steps".into(),
        params: serde_json::json!({"steps": steps, "wait": wait}),
        seed: 1,
        deadline: Duration::from_secs(7 * 86_400),
        pre_approve: vec![],
        approver: "bench".into(),
        labels: BTreeMap::new(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Raw `fdatasync` of a 256-byte append on the same disk: the baseline every figure is divided by.
struct Baseline {
    p50: Duration,
    p99: Duration,
    per_sec: f64,
}

fn raw_fdatasync(dir: &Path, budget: Duration) -> Baseline {
    let mut f = std::fs::File::create(dir.join("raw-fdatasync")).unwrap();
    let mut lat = vec![];
    let start = Instant::now();
    while start.elapsed() < budget && lat.len() < 50_000 {
        let t = Instant::now();
        f.write_all(&[7u8; 256]).unwrap();
        f.sync_data().unwrap();
        lat.push(t.elapsed());
    }
    let per_sec = lat.len() as f64 / start.elapsed().as_secs_f64();
    lat.sort();
    Baseline { p50: percentile(&lat, 0.5), p99: percentile(&lat, 0.99), per_sec }
}

/// Drive `runs` runs of `steps` steps each, all at once, through the real executor; per-step
/// latencies (commit to commit of one run) and the elapsed time.
fn drive(rt: &tokio::runtime::Runtime, eng: &Arc<Engine<()>>, runs: usize, steps: u32) -> (Vec<Duration>, Duration) {
    let clock: Arc<dyn Clock> = Arc::new(WallClock);
    let ids: Vec<String> = (0..runs).map(|_| eng.create_run(new_run(steps, false), &*clock).unwrap().id).collect();
    let lat = Arc::new(Mutex::new(Vec::with_capacity(runs * steps as usize)));
    let start = Instant::now();
    rt.block_on(async {
        let mut tasks = vec![];
        for id in ids {
            let (eng, clock, lat) = (eng.clone(), clock.clone(), lat.clone());
            let last = Mutex::new(Instant::now());
            let progress = Arc::new(move |_: &RunRecord| {
                let now = Instant::now();
                let mut l = last.lock().unwrap();
                lat.lock().unwrap().push(now - *l);
                *l = now;
            });
            tasks.push(tokio::spawn(async move { eng.drive(&id, Arc::new(()), clock, progress).await.unwrap() }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let elapsed = start.elapsed();
    let mut lat = Arc::try_unwrap(lat).unwrap().into_inner().unwrap();
    lat.sort();
    (lat, elapsed)
}

fn bench_engine(dir: &Path, quick: bool, base: &Baseline) {
    let store = Arc::new(Store::open(&dir.join("engine-store")).unwrap());
    let eng = engine(store.clone());
    let rt = drctl_runtime::executor::driver_runtime().unwrap();
    println!("\n## Durable steps through the engine (no-op procedure, sled store, real executor)");
    println!(
        "{:>6} {:>6} {:>10} {:>10} {:>12} {:>10} {:>10} {:>12} {:>12}",
        "runs", "steps", "p50 us", "p99 us", "trans/s", "p50/fsync", "p99/fsync", "rate/fsync", "commits/flush"
    );
    for (runs, steps) in [(1usize, 2000u32), (64, 200), (1000, 20)] {
        let steps = if quick { steps / 10 } else { steps };
        let (c0, f0) = (store.stats().commits, store.stats().device_flushes);
        let (lat, elapsed) = drive(&rt, &eng, runs, steps);
        let (commits, flushes) = (store.stats().commits - c0, store.stats().device_flushes - f0);
        let rate = lat.len() as f64 / elapsed.as_secs_f64();
        let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
        println!(
            "{runs:>6} {steps:>6} {:>10.1} {:>10.1} {rate:>12.0} {:>10.2} {:>10.2} {:>12.2} {:>12.2}",
            us(p50),
            us(p99),
            p50.as_secs_f64() / base.p50.as_secs_f64(),
            p99.as_secs_f64() / base.p99.as_secs_f64(),
            rate / base.per_sec,
            commits as f64 / flushes.max(1) as f64
        );
    }
}

/// Resident set size of this process, from /proc.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap();
    kb * 1024
}

/// A store with `finished` finished runs and `active` runs part-way (committed by 64 threads,
/// so group commit fills it quickly).
fn populate(path: &Path, finished: usize, active: usize) {
    let store = Arc::new(Store::open(path).unwrap());
    let eng = engine(store.clone());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..64)
        .map(|_| {
            let (eng, next) = (eng.clone(), next.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= finished + active {
                    return;
                }
                let rec = eng.create_run(new_run(3, false), &WallClock).unwrap();
                if i < finished {
                    // Finished: its record as the engine leaves it.
                    let mut done = rec.clone();
                    done.status = drctl_runtime::RunStatus::Succeeded;
                    done.outcome = Some("done".into());
                    done.next_seq += 1;
                    let ev = drctl_runtime::HistoryEvent {
                        seq: rec.next_seq,
                        at: WallClock.now(),
                        from: rec.state_name.clone(),
                        to: rec.state_name.clone(),
                        attempt: 0,
                        outcome: drctl_runtime::Outcome::Succeeded,
                        detail: Some("done".into()),
                    };
                    eng.store().commit(&done, &[ev]).unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
}

fn bench_recovery(dir: &Path, quick: bool) {
    let (finished, active) = if quick { (10_000, 100) } else { (100_000, 1_000) };
    println!("\n## Recovery at scale ({finished} finished runs, {active} active)");
    let path = dir.join("recovery-store");
    let t = Instant::now();
    populate(&path, finished, active);
    println!("populated in {:.1} s", t.elapsed().as_secs_f64());
    // As a restarted process would: open the store, find the unfinished runs, resume them.
    let start = Instant::now();
    let store = Arc::new(Store::open(&path).unwrap());
    let opened = start.elapsed();
    let eng = engine(store.clone());
    let resumable = eng.resumable().unwrap();
    let listed = start.elapsed();
    assert_eq!(resumable.len(), active);

    let rt = drctl_runtime::executor::driver_runtime().unwrap();
    let first = Arc::new(Mutex::new(None::<Duration>));
    let clock: Arc<dyn Clock> = Arc::new(WallClock);
    rt.block_on(async {
        let mut tasks = vec![];
        for r in resumable {
            let (eng, clock, first) = (eng.clone(), clock.clone(), first.clone());
            let progress = Arc::new(move |_: &RunRecord| {
                first.lock().unwrap().get_or_insert_with(|| start.elapsed());
            });
            tasks.push(tokio::spawn(async move { eng.drive(&r.id, Arc::new(()), clock, progress).await.unwrap() }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let all = start.elapsed();
    let first = first.lock().unwrap().unwrap();
    // What finding them cost before the `unfinished` index (schema 1): open, read every record.
    drop((eng, store));
    rt.shutdown_background();
    let t = Instant::now();
    let store = Store::open(&path).unwrap();
    let scanned = store.list_runs().unwrap().into_iter().filter(|r| !r.status.is_terminal()).count();
    let scan = t.elapsed();
    assert_eq!(scanned, 0, "all were resumed to their end");
    println!("store opened:                 {:>9.1} ms", opened.as_secs_f64() * 1e3);
    println!("unfinished runs found:        {:>9.1} ms after start, through the unfinished index", listed.as_secs_f64() * 1e3);
    println!("  (opening and reading every record instead, as schema 1 did: {:.1} ms)", scan.as_secs_f64() * 1e3);
    println!("first resumed transition:     {:>9.1} ms   (target < 100 ms)", first.as_secs_f64() * 1e3);
    println!("all {active} resumed and ended: {:>9.1} ms", all.as_secs_f64() * 1e3);
}

/// RSS of a process driving `waiting` runs that wait on timers (a fresh process: nothing else
/// measured here shares its memory).
fn bench_timers(dir: &Path, quick: bool) {
    let waiting = if quick { 1_000 } else { 10_000 };
    println!("\n## Memory with {waiting} runs waiting on timers");
    let clock: Arc<dyn Clock> = Arc::new(WallClock);
    let path = dir.join("timers-store");
    // DRCTL_BENCH_MEMSTORE=1: the same runs on the in-memory store, to tell the engine's own
    // memory from sled's.
    let eng = match std::env::var_os("DRCTL_BENCH_MEMSTORE") {
        Some(_) => {
            let mut reg = Registry::default();
            reg.register(NoopSteps);
            Arc::new(Engine::new(Arc::new(drctl_runtime::store::MemStore::new()), Arc::new(reg), RetryPolicy::default()))
        }
        None => engine(Arc::new(Store::open(&path).unwrap())),
    };
    let before = rss_bytes();
    let ids: Vec<String> = (0..waiting).map(|_| eng.create_run(new_run(3, true), &WallClock).unwrap().id).collect();
    let created = rss_bytes();
    let rt = drctl_runtime::executor::driver_runtime().unwrap();
    let waiting_now = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    rt.block_on(async {
        for id in ids {
            let (eng, clock, w) = (eng.clone(), clock.clone(), waiting_now.clone());
            let progress = Arc::new(move |r: &RunRecord| {
                if r.status == drctl_runtime::RunStatus::Waiting {
                    w.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
            let fut = async move { eng.drive(&id, Arc::new(()), clock, progress).await };
            if std::env::var_os("DRCTL_BENCH_FUTURE_SIZE").is_some() {
                eprintln!("drive future: {} bytes", std::mem::size_of_val(&fut));
                std::process::exit(0);
            }
            tokio::spawn(fut);
        }
        while waiting_now.load(std::sync::atomic::Ordering::Relaxed) < waiting {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let rss = rss_bytes();
    // SAFETY: malloc_trim only returns free heap memory to the system.
    unsafe { libc::malloc_trim(0) };
    let live = rss_bytes();
    println!("  after malloc_trim (heap the runs no longer use returned): {:.1} MB", live as f64 / 1e6);
    println!(
        "RSS with {waiting} runs waiting on timers: {:.1} MB (whole process; {:.1} MB with the store open, {:.1} MB once the runs were stored, before they were driven)   (target < 100 MB)",
        rss as f64 / 1e6,
        before as f64 / 1e6,
        created as f64 / 1e6
    );
    rt.shutdown_background();
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => dir_bytes(&e.path()),
                    _ => e.metadata().map(|m| m.len()).unwrap_or(0),
                })
                .sum()
        })
        .unwrap_or(0)
}

fn bench_growth(dir: &Path, quick: bool) {
    let transitions: u32 = if quick { 50_000 } else { 1_000_000 };
    let runs = 1000usize;
    println!("\n## Store growth ({transitions} transitions over {runs} runs)");
    let path = dir.join("growth-store");
    let store = Arc::new(Store::open(&path).unwrap());
    let eng = engine(store.clone());
    let rt = drctl_runtime::executor::driver_runtime().unwrap();
    let (lat, elapsed) = drive(&rt, &eng, runs, transitions / runs as u32);
    drop((eng, store));
    let bytes = dir_bytes(&path);
    println!(
        "{} transitions in {:.1} s; {:.1} MB on disk = {:.0} bytes per transition",
        lat.len(),
        elapsed.as_secs_f64(),
        bytes as f64 / 1e6,
        bytes as f64 / lat.len() as f64
    );
    let store = Store::open(&path).unwrap();
    let report = drctl_runtime::gc::collect(&store, Timestamp(u64::MAX), None).unwrap();
    drop(store);
    let after = dir_bytes(&path);
    println!(
        "gc of every finished run (no archive): {} runs and {} history events removed; {:.1} MB on disk after ({:.0}% of before; sled reclaims freed segments lazily)",
        report.runs_deleted,
        report.events_removed,
        after as f64 / 1e6,
        100.0 * after as f64 / bytes as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let quick = args.iter().any(|a| a == "--quick");
    let with_restate = args.iter().any(|a| a == "--with-restate");
    let sections: Vec<&str> = args.iter().map(String::as_str).filter(|a| !a.starts_with('-')).collect();
    if let Some(unknown) = sections.iter().find(|s| !SECTIONS.contains(s)) {
        eprintln!("unknown section {unknown}: the sections are {}", SECTIONS.join(", "));
        std::process::exit(2);
    }
    if sections.len() != 1 {
        // Each section in a process of its own: memory and caches of one do not colour another.
        let wanted: Vec<&str> = SECTIONS.iter().copied().filter(|s| sections.is_empty() || sections.contains(s)).collect();
        for section in wanted {
            let mut child = std::process::Command::new(std::env::current_exe().unwrap());
            child.arg(section).args(args.iter().filter(|a| *a == "--quick"));
            assert!(child.status().unwrap().success(), "section {section} failed");
        }
        if with_restate {
            let dir = tempfile::tempdir_in(bench_dir()).unwrap();
            restate(dir.path(), quick, &raw_fdatasync(dir.path(), Duration::from_secs(3)));
        }
        return;
    }
    let wants = |s: &str| sections.contains(&s);
    let base_dir = bench_dir();
    let dir = tempfile::tempdir_in(&base_dir).unwrap();
    println!(
        "# drctl engine benchmarks in {} ({} cores{})",
        dir.path().display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if quick { ", quick" } else { "" }
    );
    let base = raw_fdatasync(dir.path(), Duration::from_secs(3));
    println!("raw fdatasync (256 B append, same disk): p50 {:.1} us  p99 {:.1} us  {:.0} ops/s", us(base.p50), us(base.p99), base.per_sec);
    if wants("engine") {
        bench_engine(dir.path(), quick, &base);
    }
    if wants("recovery") {
        bench_recovery(dir.path(), quick);
    }
    if wants("timers") {
        bench_timers(dir.path(), quick);
    }
    if wants("growth") {
        bench_growth(dir.path(), quick);
    }
    if wants("telemetry") {
        bench_telemetry(dir.path(), quick);
    }
    if with_restate {
        restate(dir.path(), quick, &base);
    }
}

const SECTIONS: &[&str] = &["engine", "recovery", "timers", "growth", "telemetry"];

/// What a dead OTLP collector costs a run: the same simulated restore through the binary, with
/// no exporter and with `OTEL_EXPORTER_OTLP_ENDPOINT` at a port nothing listens on, alternated;
/// the ratio of the medians (process start to exit, so the bounded flush at exit is included).
fn bench_telemetry(dir: &Path, quick: bool) {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let rounds = if quick { 5 } else { 15 };
    let run = |i: usize, endpoint: Option<&str>| -> Duration {
        let store = dir.join(format!("telemetry-{i}-{}", endpoint.is_some()));
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_drctl"));
        c.arg("--store").arg(&store).args(["run", "restore-cluster-state", "--sim", "quorum-loss", "--yes"]);
        c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        c.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT").env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        if let Some(e) = endpoint {
            c.env("OTEL_EXPORTER_OTLP_ENDPOINT", e);
        }
        let t0 = Instant::now();
        assert!(c.status().unwrap().success(), "the run failed");
        t0.elapsed()
    };
    let (mut off, mut dead) = (vec![], vec![]);
    for i in 0..rounds {
        off.push(run(i, None));
        dead.push(run(i, Some(&closed)));
    }
    off.sort();
    dead.sort();
    let (a, b) = (percentile(&off, 0.5), percentile(&dead, 0.5));
    println!(
        "telemetry: simulated restore, no exporter p50 {:.1} ms; collector dead p50 {:.1} ms; ratio {:.2}x ({rounds} runs each)",
        us(a) / 1000.0,
        us(b) / 1000.0,
        b.as_secs_f64() / a.as_secs_f64()
    );
}

fn bench_dir() -> PathBuf {
    std::env::var_os("DRCTL_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir)
}

/// The Restate peer (benches/restate): its harness installs and starts the server, runs the
/// same durable steps, and prints one JSON line per concurrency level.
fn restate(dir: &Path, quick: bool, base: &Baseline) {
    println!("\n## Against Restate (same machine, same disk)");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/restate/service/Cargo.toml");
    let seconds = if quick { "3" } else { "10" };
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/restate");
    // Both binaries (the driver starts the service beside it), built before anything is timed.
    let built = std::process::Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--bins", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("cargo builds the Restate harness");
    assert!(built.success(), "the Restate harness does not build");
    let out = std::process::Command::new(target.join("release/restate-bench"))
        .args(["--steps", "100", "--seconds", seconds])
        .env("DRCTL_BENCH_DIR", dir)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("the Restate harness runs");
    assert!(out.status.success(), "the Restate harness failed");
    for line in String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let p50 = v["p50_step_us"].as_f64().unwrap_or(0.0);
        println!(
            "restate {} x{:<3} per-step p50 {:.1} us  p99 {:.1} us  {:.0} steps/s   p50/fsync {:.2}",
            v["restate_version"].as_str().unwrap_or("?"),
            v["concurrency"],
            p50,
            v["p99_step_us"].as_f64().unwrap_or(0.0),
            v["steps_per_sec"].as_f64().unwrap_or(0.0),
            p50 / us(base.p50)
        );
    }
}
