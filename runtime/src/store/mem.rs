//! An in-memory [`RunStore`] with the durable store's contract checks (ids, contiguous history,
//! a single writer per run). Nothing survives the process: it is what the chaos harness runs the
//! shipping engine on, where "the runner crashed" means a new engine over the same store.

use super::{check_events, check_id, id_order, RunStore, StoreError};
use crate::record::{HistoryEvent, RunRecord};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
struct Runs {
    next_id: u64,
    runs: BTreeMap<String, (RunRecord, Vec<HistoryEvent>)>,
}

#[derive(Default)]
pub struct MemStore {
    inner: Mutex<Runs>,
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStore").field("runs", &self.lock().runs.len()).finish()
    }
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// The events of run `id` from position `from` on (all of them for 0): a harness looking at
    /// each commit reads only what is new.
    pub fn history_since(&self, id: &str, from: usize) -> Vec<HistoryEvent> {
        self.lock().runs.get(id).map(|(_, h)| h.get(from..).unwrap_or_default().to_vec()).unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, Runs> {
        // Every mutation below is a single insert or extend: a panic elsewhere leaves it whole.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RunStore for MemStore {
    fn next_run_id(&self) -> Result<String, StoreError> {
        let mut g = self.lock();
        g.next_id = g.next_id.max(1);
        let n = g.next_id;
        g.next_id += 1;
        Ok(n.to_string())
    }

    fn create_run(&self, rec: &RunRecord, events: &[HistoryEvent]) -> Result<(), StoreError> {
        check_id(&rec.id)?;
        let first = check_events(rec, events)?;
        if first != 0 {
            return Err(StoreError::Bug(format!("run {}: a new run's history must start at seq 0, not {first}", rec.id)));
        }
        let mut g = self.lock();
        if g.runs.contains_key(&rec.id) {
            return Err(StoreError::RunExists(rec.id.clone()));
        }
        if let Ok(n) = rec.id.parse::<u64>() {
            g.next_id = g.next_id.max(n + 1);
        }
        g.runs.insert(rec.id.clone(), (rec.clone(), events.to_vec()));
        Ok(())
    }

    fn commit(&self, rec: &RunRecord, events: &[HistoryEvent]) -> Result<(), StoreError> {
        check_id(&rec.id)?;
        let first = check_events(rec, events)?;
        let mut g = self.lock();
        let (stored, history) = g.runs.get_mut(&rec.id).ok_or_else(|| StoreError::NoSuchRun(rec.id.clone()))?;
        if stored.next_seq != first {
            return Err(StoreError::Bug(format!(
                "run {}: commit appends history from seq {first} but the stored run is at seq {} (concurrent writer or lost update)",
                rec.id, stored.next_seq
            )));
        }
        *stored = rec.clone();
        history.extend_from_slice(events);
        Ok(())
    }

    fn get_run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        Ok(self.lock().runs.get(id).map(|(r, _)| r.clone()))
    }

    fn list_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let mut out: Vec<RunRecord> = self.lock().runs.values().map(|(r, _)| r.clone()).collect();
        out.sort_by(|a, b| id_order(&a.id).cmp(&id_order(&b.id)));
        Ok(out)
    }

    fn history(&self, id: &str) -> Result<Vec<HistoryEvent>, StoreError> {
        Ok(self.lock().runs.get(id).map(|(_, h)| h.clone()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::record::{NewRecord, Outcome};

    fn rec(id: &str, next_seq: u64) -> RunRecord {
        let mut r = RunRecord::new(NewRecord {
            id: id.into(),
            procedure: "toy".into(),
            procedure_version: 1,
            params: vec![],
            state: vec![],
            state_name: "A".into(),
            seed: 1,
            now: Timestamp(0),
            deadline: Timestamp(1),
            labels: BTreeMap::new(),
        });
        r.next_seq = next_seq;
        r
    }

    fn ev(seq: u64) -> HistoryEvent {
        HistoryEvent { seq, at: Timestamp(0), from: "A".into(), to: "A".into(), attempt: 0, outcome: Outcome::Resumed, detail: None }
    }

    #[test]
    fn refuses_what_the_durable_store_refuses() {
        let s = MemStore::new();
        assert_eq!(s.next_run_id().unwrap(), "1");
        s.create_run(&rec("1", 1), &[ev(0)]).unwrap();
        assert!(matches!(s.create_run(&rec("1", 1), &[ev(0)]), Err(StoreError::RunExists(_))));
        assert_eq!(s.next_run_id().unwrap(), "2");
        // A gap or an overwrite of history is a second writer: refused, nothing changes.
        assert!(matches!(s.commit(&rec("1", 3), &[ev(2)]), Err(StoreError::Bug(_))));
        assert!(matches!(s.commit(&rec("1", 2), &[ev(0)]), Err(StoreError::Bug(_))));
        s.commit(&rec("1", 2), &[ev(1)]).unwrap();
        assert_eq!(s.history("1").unwrap().len(), 2);
        assert!(matches!(s.commit(&rec("9", 1), &[ev(0)]), Err(StoreError::NoSuchRun(_))));
        assert!(matches!(s.create_run(&rec("", 1), &[ev(0)]), Err(StoreError::Bug(_))));
    }
}
