//! Where runs live. The engine is written against [`RunStore`]; two implementations ship:
//! [`Store`] (sled, group commit, `fdatasync`: what `drctl` uses) and [`MemStore`] (in memory,
//! with the same contract checks: what the chaos harness drives the same engine on, so a sweep of
//! thousands of simulated runs tests the engine that ships without touching a disk).

mod mem;
pub(crate) mod sled;

/// Create `dir` (and its missing parents) owner-only: a store holds evidence about a cluster.
/// A directory that exists already is left as it is (it may be one the user shares).
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

pub use self::mem::MemStore;
pub use self::sled::Store;

use crate::record::{HistoryEvent, RunRecord, STORE_SCHEMA};
use std::path::PathBuf;

/// The store contract the engine relies on. Every method is blocking; `commit` and
/// `create_run` return only once what they wrote would survive a crash of the process (for the
/// durable store: of the machine).
pub trait RunStore: Send + Sync + 'static {
    /// A fresh run id, never handed out before.
    fn next_run_id(&self) -> Result<String, StoreError>;
    /// Store a new run and its first events (seq 0..). Fails if the id exists.
    fn create_run(&self, rec: &RunRecord, events: &[HistoryEvent]) -> Result<(), StoreError>;
    /// Write `rec` and append `events` atomically. The events must continue the stored history
    /// exactly (a single writer per run): anything else is refused as a bug.
    fn commit(&self, rec: &RunRecord, events: &[HistoryEvent]) -> Result<(), StoreError>;
    fn get_run(&self, id: &str) -> Result<Option<RunRecord>, StoreError>;
    /// All runs, ordered by numeric id.
    fn list_runs(&self) -> Result<Vec<RunRecord>, StoreError>;
    /// A run's history in seq order, checked contiguous from 0 and consistent with its record.
    fn history(&self, id: &str) -> Result<Vec<HistoryEvent>, StoreError>;
    /// The runs that are not terminal, ordered by numeric id (what a restart resumes).
    fn list_unfinished(&self) -> Result<Vec<RunRecord>, StoreError> {
        Ok(self.list_runs()?.into_iter().filter(|r| !r.status.is_terminal()).collect())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store at {path}: {source}")]
    Sled { path: PathBuf, source: ::sled::Error },
    #[error("store at {path}: {what}: {source}")]
    Io { path: PathBuf, what: &'static str, source: std::io::Error },
    #[error(
        "store at {path} was written by a newer drctl (schema {found}); this binary understands schema {} — use a newer drctl",
        STORE_SCHEMA
    )]
    NewerSchema { path: PathBuf, found: u32 },
    #[error("store at {path} has schema marker {found:?}, which this binary does not understand (it understands schema {})", STORE_SCHEMA)]
    UnknownSchema { path: PathBuf, found: Vec<u8> },
    #[error("store is corrupt: run {run}: {detail}")]
    Corrupt { run: String, detail: String },
    #[error("run {0} already exists")]
    RunExists(String),
    #[error("no run {0} in the store")]
    NoSuchRun(String),
    /// A caller broke the store's contract (non-contiguous or overwriting history, two writers).
    #[error("bug: {0}")]
    Bug(String),
    /// A flush or `fdatasync` failed. After that the kernel may have dropped dirty pages, so no
    /// later commit can be trusted either (fsyncgate): the store refuses further commits.
    #[error("store at {path} is unusable after a failed flush: {error}; restart drctl to recover from the last durable state")]
    Poisoned { path: PathBuf, error: String },
    #[error("store at {path}: commit not confirmed durable within {secs}s (device stalled?)")]
    DurabilityTimeout { path: PathBuf, secs: u64 },
}

/// Counters for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Successful `commit` + `create_run` calls.
    pub commits: u64,
    /// Flush + `fdatasync` rounds performed by the committer.
    pub device_flushes: u64,
}

/// Numeric ids in numeric order, then any other ids in byte order.
pub(crate) fn id_order(id: &str) -> (u8, u64, &str) {
    match id.parse::<u64>() {
        Ok(n) => (0, n, id),
        Err(_) => (1, 0, id),
    }
}

pub(crate) fn check_id(id: &str) -> Result<(), StoreError> {
    if id.is_empty() || id.as_bytes().contains(&0) {
        return Err(StoreError::Bug(format!("invalid run id {id:?}: must be non-empty and contain no NUL")));
    }
    Ok(())
}

/// Assert before persisting: `events` are exactly the seqs `rec.next_seq - len .. rec.next_seq`.
pub(crate) fn check_events(rec: &RunRecord, events: &[HistoryEvent]) -> Result<u64, StoreError> {
    let n = events.len() as u64;
    let first = rec
        .next_seq
        .checked_sub(n)
        .ok_or_else(|| StoreError::Bug(format!("run {}: {} events but next_seq is only {}", rec.id, n, rec.next_seq)))?;
    for (i, ev) in events.iter().enumerate() {
        if ev.seq != first + i as u64 {
            return Err(StoreError::Bug(format!(
                "run {}: event #{i} has seq {} but must be {} (events must be contiguous and end at next_seq {})",
                rec.id,
                ev.seq,
                first + i as u64,
                rec.next_seq
            )));
        }
    }
    Ok(first)
}
