//! Commit latency against the device's own `fdatasync` latency, and how well group commit
//! shares device flushes between concurrent committers.
//!
//! `cargo bench -p drctl-runtime --bench commit`. Set `DRCTL_BENCH_DIR` to measure a particular
//! file system (default: the system temp dir). Wall-clock time is used here only to measure.
#![allow(clippy::disallowed_methods)] // a bench measures real time

use drctl_runtime::clock::Timestamp;
use drctl_runtime::record::{HistoryEvent, Outcome, RunRecord, RunStatus};
use drctl_runtime::store::Store;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Each measurement runs for about this long (bounded also by a count), keeping the whole bench
/// under ~20 s.
const BUDGET: Duration = Duration::from_millis(2500);
const MAX_OPS: u32 = 20_000;

fn record(id: &str, next_seq: u64) -> RunRecord {
    RunRecord {
        id: id.into(),
        procedure: "bench".into(),
        procedure_version: 1,
        params: vec![0x80],
        state: vec![0u8; 64],
        state_name: "Bench".into(),
        status: RunStatus::Running,
        seed: 1,
        created_at: Timestamp(0),
        updated_at: Timestamp(next_seq),
        deadline: Timestamp(u64::MAX / 2),
        attempt: 0,
        wait: None,
        retry: None,
        pending_gate: None,
        gates: BTreeMap::new(),
        abort: None,
        outcome: None,
        next_seq,
        labels: BTreeMap::new(),
        parent: None,
        children: Default::default(),
        resumed_after_halt: false,
    }
}

fn event(seq: u64) -> HistoryEvent {
    HistoryEvent {
        seq,
        at: Timestamp(seq),
        from: "StopStaticPods(master-1)".into(),
        to: "MoveEtcdDataAside(master-1)".into(),
        attempt: 0,
        outcome: Outcome::Transition,
        detail: None,
    }
}

struct Measured {
    ops: u64,
    elapsed: Duration,
}

impl Measured {
    fn per_op(&self) -> Duration {
        self.elapsed / self.ops.max(1) as u32
    }
    fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

fn raw_fdatasync(dir: &std::path::Path) -> Measured {
    let path = dir.join("raw-fdatasync");
    let mut f = std::fs::File::create(&path).unwrap();
    let payload = [7u8; 256];
    let start = Instant::now();
    let mut ops = 0;
    while ops < MAX_OPS && start.elapsed() < BUDGET {
        f.write_all(&payload).unwrap();
        f.sync_data().unwrap();
        ops += 1;
    }
    Measured { ops: ops as u64, elapsed: start.elapsed() }
}

/// `threads` committers, each appending to its own run, for one budget.
fn commits(store: &Arc<Store>, threads: usize, tag: &str) -> (Measured, u64) {
    let ids: Vec<String> = (0..threads).map(|t| format!("{tag}-{t}")).collect();
    for id in &ids {
        store.create_run(&record(id, 0), &[]).unwrap();
    }
    let flushes_before = store.stats().device_flushes;
    let start = Instant::now();
    let handles: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while n < MAX_OPS as u64 && start.elapsed() < BUDGET {
                    store.commit(&record(&id, n + 1), &[event(n)]).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let ops: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let elapsed = start.elapsed();
    let flushes = store.stats().device_flushes - flushes_before;
    (Measured { ops, elapsed }, flushes)
}

fn main() {
    // `cargo bench` passes `--bench`; there are no options to parse.
    let base = std::env::var_os("DRCTL_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&base).unwrap();
    println!("commit bench in {} ({}s per measurement)", dir.path().display(), BUDGET.as_secs_f64());

    let raw = raw_fdatasync(dir.path());
    println!(
        "raw fdatasync (256 B append):   {:>9.1} us/op  {:>8.0} ops/s  ({} ops)",
        raw.per_op().as_secs_f64() * 1e6,
        raw.per_sec(),
        raw.ops
    );

    let store = Arc::new(Store::open(&dir.path().join("store")).unwrap());
    for threads in [1usize, 8, 32] {
        let (m, flushes) = commits(&store, threads, &format!("t{threads}"));
        // Latency seen by one committer: each thread waits for its own commits in turn.
        let latency = m.elapsed.as_secs_f64() * threads as f64 / m.ops.max(1) as f64;
        println!(
            "commit x{threads:<2} concurrent:         {:>9.1} us/commit latency  {:>8.0} commits/s  {:>6} commits  {:>6} device flushes",
            latency * 1e6,
            m.per_sec(),
            m.ops,
            flushes
        );
        println!(
            "    ratios: commit latency / raw fdatasync = {:.2}   commits per device flush = {:.2}   throughput / raw fdatasync rate = {:.2}",
            latency / raw.per_op().as_secs_f64(),
            m.ops as f64 / flushes.max(1) as f64,
            m.per_sec() / raw.per_sec()
        );
    }
}
