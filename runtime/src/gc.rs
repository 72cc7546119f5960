//! Retention (`drctl gc --finished-before DURATION`): finished runs older than a bound leave the
//! store, each first written to an archive file that keeps what an incident review reads — the
//! run (procedure, parameters, outcome, who approved or rejected which gate and why, when it
//! started and ended) and every event of its history except the repeated re-checks of waits and
//! the retries, which are counted instead.

use crate::clock::Timestamp;
use crate::record::{HistoryEvent, Outcome, RunRecord, RunStatus};
use crate::store::{Store, StoreError};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::Path;

/// What a collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub runs_deleted: u64,
    pub events_removed: u64,
    /// Runs kept because they are not finished (running, waiting, halted: resumable).
    pub runs_kept_unfinished: u64,
    /// Finished runs kept because they ended after the bound.
    pub runs_kept_recent: u64,
}

/// One archived run: what an incident review needs, without the noise.
#[derive(Serialize)]
struct Archived<'a> {
    run: &'a RunRecord,
    /// Every event but wait re-checks and retries.
    events: Vec<&'a HistoryEvent>,
    /// How many wait re-checks and retries were left out.
    rechecks_left_out: u64,
    retries_left_out: u64,
}

/// Finished (succeeded, failed, aborted) runs whose last change is before `finished_before`:
/// a child run only with its parent, so a parent never points to a run that is gone.
fn eligible(runs: &[RunRecord], finished_before: Timestamp) -> BTreeSet<String> {
    let finished = |r: &RunRecord| r.status.is_terminal() && r.status != RunStatus::Halted && r.updated_at < finished_before;
    let old: BTreeSet<&str> = runs.iter().filter(|r| finished(r)).map(|r| r.id.as_str()).collect();
    let mut out = BTreeSet::new();
    for r in runs.iter().filter(|r| old.contains(r.id.as_str())) {
        // Walk up: every ancestor must be going too (ids never repeat, so this ends).
        let mut parent = r.parent.clone();
        let mut ok = true;
        while let Some(p) = parent {
            if !old.contains(p.as_str()) {
                ok = false;
                break;
            }
            parent = runs.iter().find(|x| x.id == p).and_then(|x| x.parent.clone());
        }
        if ok {
            out.insert(r.id.clone());
        }
    }
    out
}

/// Archive (into `archive_dir`, one owner-only JSON file per run, when given) and delete every
/// finished run older than `finished_before`. A run is deleted only after its archive file is
/// durably written; an error stops the collection with what was done so far intact.
pub fn collect(store: &Store, finished_before: Timestamp, archive_dir: Option<&Path>) -> Result<GcReport, GcError> {
    let runs = store.list_runs()?;
    let going = eligible(&runs, finished_before);
    let mut report = GcReport::default();
    for r in &runs {
        match (going.contains(&r.id), r.status.is_terminal() && r.status != RunStatus::Halted) {
            (false, false) => report.runs_kept_unfinished += 1,
            (false, true) => report.runs_kept_recent += 1,
            (true, _) => {}
        }
    }
    if let Some(dir) = archive_dir {
        crate::store::create_private_dir(dir).map_err(|e| GcError::Archive(format!("create {}: {e}", dir.display())))?;
    }
    for r in runs.iter().filter(|r| going.contains(&r.id)) {
        if let Some(dir) = archive_dir {
            archive(dir, r, &store.history(&r.id)?)?;
        }
        report.events_removed += store.delete_run(&r.id)?;
        report.runs_deleted += 1;
    }
    Ok(report)
}

fn archive(dir: &Path, run: &RunRecord, history: &[HistoryEvent]) -> Result<(), GcError> {
    let noise = |e: &HistoryEvent| matches!(e.outcome, Outcome::Waiting | Outcome::Retry);
    let doc = Archived {
        run,
        events: history.iter().filter(|e| !noise(e)).collect(),
        rechecks_left_out: history.iter().filter(|e| e.outcome == Outcome::Waiting).count() as u64,
        retries_left_out: history.iter().filter(|e| e.outcome == Outcome::Retry).count() as u64,
    };
    let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| GcError::Archive(format!("run {}: {e}", run.id)))?;
    let path = dir.join(format!("run-{}.json", run.id));
    let tmp = dir.join(format!(".run-{}.json.tmp", run.id));
    let fail = |e: std::io::Error| GcError::Archive(format!("{}: {e}", path.display()));
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(fail)?
    };
    std::io::Write::write_all(&mut f, &bytes).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, &path).map_err(fail)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(fail)
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot archive: {0} (nothing more was deleted)")]
    Archive(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sled::tests::{event, record};

    fn finished(id: &str, at: u64, parent: Option<&str>) -> RunRecord {
        let mut r = record(id, 1, 0);
        r.status = RunStatus::Succeeded;
        r.updated_at = Timestamp(at);
        r.parent = parent.map(str::to_string);
        r
    }

    #[test]
    fn old_finished_runs_go_to_the_archive_and_the_rest_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s")).unwrap();
        let mut retry = event(1);
        retry.outcome = Outcome::Retry;
        for (r, extra) in [
            (finished("1", 100, None), vec![]),
            (finished("2", 5_000, None), vec![]),
            (record("3", 1, 0), vec![]),
            (finished("4", 100, None), vec![retry.clone()]),
            (finished("4.1", 100, Some("4")), vec![]),
            (finished("5.1", 100, Some("5")), vec![]),
            (record("5", 1, 0), vec![]),
        ] {
            let mut r = r;
            r.next_seq = 1 + extra.len() as u64;
            let mut evs = vec![event(0)];
            evs.extend(extra);
            store.create_run(&r, &evs).unwrap();
        }
        let archive = dir.path().join("archive");
        let report = collect(&store, Timestamp(1_000), Some(&archive)).unwrap();
        assert_eq!(report, GcReport { runs_deleted: 3, events_removed: 4, runs_kept_unfinished: 2, runs_kept_recent: 2 });
        let left: Vec<String> = store.list_runs().unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(left, ["2", "3", "5", "5.1"], "a child stays with its unfinished parent");
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(archive.join("run-4.json")).unwrap()).unwrap();
        assert_eq!((doc["retries_left_out"].as_u64(), doc["events"].as_array().map(Vec::len)), (Some(1), Some(1)));
        assert_eq!(doc["run"]["id"], "4");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(archive.join("run-4.json")).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(store.history("1").unwrap().is_empty());
    }
}
