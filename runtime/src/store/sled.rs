//! The durable store: runs and their append-only history in sled, with group commit.
//!
//! Layout (four sled trees):
//! - `runs`: run id -> rmp-serde [`RunRecord`]
//! - `history`: run id bytes + `0x00` + seq (big-endian u64) -> rmp-serde [`HistoryEvent`]
//! - `unfinished`: run id -> empty, for every run that is not terminal, written in the same
//!   transaction as its record: a restart finds the runs to resume without reading the finished
//!   ones (schema 2; a schema-1 store gets the index built once when opened)
//! - `meta`: `schema` (u32 BE) and `next_run_id` (u64 BE)
//!
//! Durability: sled 0.34's `flush()` writes its log with `sync_file_range`, which neither flushes
//! file metadata nor the device's write cache, so it is not a durability barrier. After every
//! `flush()` the committer thread also `fdatasync`s the data file (and any new blob files). A
//! [`Store::commit`] returns only after a flush + `fdatasync` that *started after* its
//! transaction was applied has completed.
//!
//! Group commit: one committer thread owns the flush. Committers apply their transaction, take a
//! ticket and block; the committer drains every ticket issued so far, does ONE flush +
//! `fdatasync`, and releases them all. `flush_async` is deliberately not used (it deadlocks with
//! many concurrent flushers, sled #1308).

use super::{check_events, check_id, id_order, RunStore, StoreError, StoreStats};
use crate::record::{HistoryEvent, RunRecord, STORE_SCHEMA};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Commits admitted but not yet durable. Beyond this, new commits wait before applying their
/// transaction, so a stalled disk cannot queue unbounded work in memory.
const MAX_IN_FLIGHT: u64 = 4096;
/// How often a blocked waiter re-checks its condition (shutdown, failure) while waiting.
const WAIT_SLICE: Duration = Duration::from_secs(1);
/// A commit whose durability is not confirmed within this many wait slices fails instead of
/// hanging forever on a wedged device.
const MAX_DURABILITY_SLICES: u32 = 120;
const KEY_SCHEMA: &[u8] = b"schema";
const KEY_NEXT_RUN_ID: &[u8] = b"next_run_id";

#[derive(Default)]
struct GroupState {
    /// Tickets handed out: each is a transaction applied before it was issued.
    requested: u64,
    /// All tickets up to this one are durable.
    durable: u64,
    /// Commits admitted (transaction applying or waiting for durability).
    in_flight: u64,
    shutdown: bool,
    failed: Option<String>,
}

struct Group {
    state: Mutex<GroupState>,
    /// Wakes the committer: a ticket was issued or shutdown was requested.
    work: Condvar,
    /// Wakes waiters: `durable` advanced, `in_flight` dropped, or the store failed.
    done: Condvar,
    device_flushes: AtomicU64,
}

impl Group {
    fn lock(&self) -> MutexGuard<'_, GroupState> {
        // A panic while holding this lock can only come from our own code in this module; the
        // state is plain counters, still consistent, so poisoning is not propagated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Store {
    path: PathBuf,
    db: sled::Db,
    runs: sled::Tree,
    history: sled::Tree,
    unfinished: sled::Tree,
    meta: sled::Tree,
    group: Arc<Group>,
    committer: Mutex<Option<JoinHandle<()>>>,
    commits: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

fn history_prefix(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 9);
    k.extend_from_slice(id.as_bytes());
    k.push(0);
    k
}

fn history_key(id: &str, seq: u64) -> Vec<u8> {
    let mut k = history_prefix(id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn encode<T: serde::Serialize>(what: &str, v: &T) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(v).map_err(|e| StoreError::Bug(format!("cannot encode {what}: {e}")))
}

fn decode_record(id: &str, bytes: &[u8]) -> Result<RunRecord, StoreError> {
    let rec: RunRecord = rmp_serde::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt { run: id.to_string(), detail: format!("record cannot be decoded: {e}") })?;
    if rec.id != id {
        return Err(StoreError::Corrupt { run: id.to_string(), detail: format!("record stored under key {id} says its id is {}", rec.id) });
    }
    Ok(rec)
}

fn decode_event(id: &str, bytes: &[u8]) -> Result<HistoryEvent, StoreError> {
    rmp_serde::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt { run: id.to_string(), detail: format!("history event cannot be decoded: {e}") })
}

fn u64_of(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn tx_abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

/// Keep the `unfinished` index in step with the record written in the same transaction.
fn mark_unfinished(unfinished: &TransactionalTree, rec: &RunRecord) -> TxResult<()> {
    match rec.status.is_terminal() {
        true => unfinished.remove(rec.id.as_bytes())?,
        false => unfinished.insert(rec.id.as_bytes(), &[] as &[u8])?,
    };
    Ok(())
}

/// Schema 1 -> 2: build the `unfinished` index from every record, then mark the store schema 2
/// (an older binary then refuses it rather than write runs the index would miss).
fn index_unfinished(path: &Path, runs: &sled::Tree, unfinished: &sled::Tree, meta: &sled::Tree) -> Result<(), StoreError> {
    let sled_err = |source| StoreError::Sled { path: path.to_path_buf(), source };
    for kv in runs.iter() {
        let (k, v) = kv.map_err(sled_err)?;
        let id = String::from_utf8_lossy(&k).to_string();
        if !decode_record(&id, &v)?.status.is_terminal() {
            unfinished.insert(k, &[] as &[u8]).map_err(sled_err)?;
        }
    }
    unfinished.flush().map_err(sled_err)?;
    meta.insert(KEY_SCHEMA, &STORE_SCHEMA.to_be_bytes()).map_err(sled_err)?;
    meta.flush().map_err(sled_err)?;
    Ok(())
}

fn put_events(history: &TransactionalTree, id: &str, encoded: &[(u64, Vec<u8>)]) -> TxResult<()> {
    for (seq, bytes) in encoded {
        let key = history_key(id, *seq);
        if history.get(&key)?.is_some() {
            return tx_abort(StoreError::Bug(format!("run {id}: history event {seq} already exists; history is append-only")));
        }
        history.insert(key, bytes.as_slice())?;
    }
    Ok(())
}

/// Attempts to open a store whose sled file lock is still held, `LOCK_RETRY` apart.
const LOCK_ATTEMPTS: u32 = 100;
const LOCK_RETRY: Duration = Duration::from_millis(20);

/// Open sled, waiting briefly for a lock held by a store of this same process that was just
/// dropped: sled's background threads finish in-flight writes and only then close the file
/// (and release its lock), so "drop, then reopen" (a simulated crash) can race with them. The
/// old handle is fully gone once the lock is free, so waiting is safe. Another process holding
/// the store is refused by `ProcessLock` before we get here, and by this bound otherwise.
fn open_sled(db_dir: &Path) -> Result<sled::Db, sled::Error> {
    let mut attempt = 0;
    loop {
        // Records are small and few; sled's default 1 GiB cache is sized for a database server.
        match sled::Config::new().path(db_dir).cache_capacity(64 * 1024 * 1024).open() {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") && attempt + 1 < LOCK_ATTEMPTS => {
                attempt += 1;
                std::thread::sleep(LOCK_RETRY);
            }
            other => return other,
        }
    }
}

impl Store {
    /// Open (or create) the store in `dir/db/`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.to_path_buf();
        let io = |what: &'static str| {
            let path = path.clone();
            move |source| StoreError::Io { path, what, source }
        };
        let sled_err = |source| StoreError::Sled { path: dir.to_path_buf(), source };
        super::create_private_dir(dir).map_err(io("create store directory"))?;
        let db_dir = dir.join("db");
        super::create_private_dir(&db_dir).map_err(io("create the database directory"))?;
        let db = open_sled(&db_dir).map_err(sled_err)?;
        let runs = db.open_tree("runs").map_err(sled_err)?;
        let history = db.open_tree("history").map_err(sled_err)?;
        let unfinished = db.open_tree("unfinished").map_err(sled_err)?;
        let meta = db.open_tree("meta").map_err(sled_err)?;

        // Refuse a store we cannot read before writing anything to it.
        match meta.get(KEY_SCHEMA).map_err(sled_err)? {
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref()).map(u32::from_be_bytes);
                match found {
                    Ok(STORE_SCHEMA) => {}
                    Ok(1) => index_unfinished(&path, &runs, &unfinished, &meta)?,
                    Ok(n) if n > STORE_SCHEMA => return Err(StoreError::NewerSchema { path, found: n }),
                    _ => return Err(StoreError::UnknownSchema { path, found: v.to_vec() }),
                }
            }
            None => {
                if !runs.is_empty() || !history.is_empty() {
                    return Err(StoreError::Corrupt {
                        run: "-".into(),
                        detail: format!("store at {} holds runs but no schema marker", path.display()),
                    });
                }
                meta.insert(KEY_SCHEMA, &STORE_SCHEMA.to_be_bytes()).map_err(sled_err)?;
                db.flush().map_err(sled_err)?;
            }
        }

        let data_file = File::options().read(true).write(true).open(db_dir.join("db")).map_err(io("open data file"))?;
        // sled writes `conf` and creates `db`, `blobs/` and `db/` itself without syncing them or
        // their directory entries; make them durable once here.
        data_file.sync_all().map_err(io("fsync data file"))?;
        if let Ok(conf) = File::open(db_dir.join("conf")) {
            conf.sync_all().map_err(io("fsync conf"))?;
        }
        // The parent too: `create_dir_all` may just have created `dir` itself.
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf);
        for d in [Some(db_dir.join("blobs")), Some(db_dir.clone()), Some(path.clone()), parent].into_iter().flatten() {
            if d.exists() {
                File::open(&d).and_then(|f| f.sync_all()).map_err(io("fsync directory"))?;
            }
        }

        let group = Arc::new(Group {
            state: Mutex::new(GroupState::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            device_flushes: AtomicU64::new(0),
        });
        let committer =
            Committer { db: db.clone(), data_file, blobs_dir: db_dir.join("blobs"), synced_blobs: BTreeSet::new(), group: group.clone() };
        let handle = std::thread::Builder::new()
            .name("drctl-committer".into())
            .spawn(move || committer.run())
            .map_err(io("spawn committer thread"))?;
        Ok(Store { path, db, runs, history, unfinished, meta, group, committer: Mutex::new(Some(handle)), commits: AtomicU64::new(0) })
    }

    /// The directory this store lives in (the `db/` sled directory is inside it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats { commits: self.commits.load(Ordering::SeqCst), device_flushes: self.group.device_flushes.load(Ordering::SeqCst) }
    }

    fn sled_err(&self, source: sled::Error) -> StoreError {
        StoreError::Sled { path: self.path.clone(), source }
    }

    fn tx_err(&self, e: TransactionError<StoreError>) -> StoreError {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => self.sled_err(e),
        }
    }

    /// Allocate the next run id ("1", "2", ...). The counter is bumped again inside the create
    /// commit, so an id becomes durable exactly with the run that uses it; an id reserved by a
    /// process that crashed before creating its run may be handed out again, which is harmless.
    pub fn next_run_id(&self) -> Result<String, StoreError> {
        let res: Result<u64, TransactionError<StoreError>> = self.meta.transaction(|meta| {
            let n = match meta.get(KEY_NEXT_RUN_ID)? {
                Some(v) => match u64_of(&v) {
                    Some(n) => n,
                    None => return tx_abort(StoreError::Corrupt { run: "-".into(), detail: "run id counter is not a u64".into() }),
                },
                None => 1,
            };
            meta.insert(KEY_NEXT_RUN_ID, &(n + 1).to_be_bytes())?;
            Ok(n)
        });
        res.map(|n| n.to_string()).map_err(|e| self.tx_err(e))
    }

    /// Store a new run and its first events durably. Fails if the id exists.
    pub fn create_run(&self, rec: &RunRecord, events: &[HistoryEvent]) -> Result<(), StoreError> {
        check_id(&rec.id)?;
        let first = check_events(rec, events)?;
        if first != 0 {
            return Err(StoreError::Bug(format!("run {}: a new run's history must start at seq 0, not {first}", rec.id)));
        }
        let rec_bytes = encode("record", rec)?;
        let evs = events.iter().map(|e| Ok((e.seq, encode("event", e)?))).collect::<Result<Vec<_>, StoreError>>()?;
        let numeric = rec.id.parse::<u64>().ok();
        self.admit()?;
        let res: Result<(), TransactionError<StoreError>> =
            (&self.runs, &self.history, &self.unfinished, &self.meta).transaction(|(runs, history, unfinished, meta)| {
                if runs.get(rec.id.as_bytes())?.is_some() {
                    return tx_abort(StoreError::RunExists(rec.id.clone()));
                }
                runs.insert(rec.id.as_bytes(), rec_bytes.as_slice())?;
                put_events(history, &rec.id, &evs)?;
                mark_unfinished(unfinished, rec)?;
                if let Some(n) = numeric {
                    let cur = meta.get(KEY_NEXT_RUN_ID)?.and_then(|v| u64_of(&v)).unwrap_or(1);
                    if cur <= n {
                        meta.insert(KEY_NEXT_RUN_ID, &(n + 1).to_be_bytes())?;
                    }
                }
                Ok(())
            });
        self.finish(res)
    }

    /// Write `rec` and append `events` atomically; returns once both are durable.
    pub fn commit(&self, rec: &RunRecord, events: &[HistoryEvent]) -> Result<(), StoreError> {
        check_id(&rec.id)?;
        let first = check_events(rec, events)?;
        let rec_bytes = encode("record", rec)?;
        let evs = events.iter().map(|e| Ok((e.seq, encode("event", e)?))).collect::<Result<Vec<_>, StoreError>>()?;
        self.admit()?;
        let res: Result<(), TransactionError<StoreError>> =
            (&self.runs, &self.history, &self.unfinished).transaction(|(runs, history, unfinished)| {
                let stored = match runs.get(rec.id.as_bytes())? {
                    Some(b) => match decode_record(&rec.id, &b) {
                        Ok(r) => r,
                        Err(e) => return tx_abort(e),
                    },
                    None => return tx_abort(StoreError::NoSuchRun(rec.id.clone())),
                };
                // The stored record is the single writer's previous commit: if its history does not
                // end exactly where these events begin, someone else wrote in between.
                if stored.next_seq != first {
                    return tx_abort(StoreError::Bug(format!(
                    "run {}: commit appends history from seq {first} but the stored run is at seq {} (concurrent writer or lost update)",
                    rec.id, stored.next_seq
                )));
                }
                runs.insert(rec.id.as_bytes(), rec_bytes.as_slice())?;
                put_events(history, &rec.id, &evs)?;
                mark_unfinished(unfinished, rec)?;
                Ok(())
            });
        self.finish(res)
    }

    /// Backpressure: wait until fewer than `MAX_IN_FLIGHT` commits are outstanding.
    fn admit(&self) -> Result<(), StoreError> {
        let mut st = self.group.lock();
        let mut slices = 0;
        loop {
            if let Some(e) = &st.failed {
                return Err(StoreError::Poisoned { path: self.path.clone(), error: e.clone() });
            }
            if st.in_flight < MAX_IN_FLIGHT {
                st.in_flight += 1;
                return Ok(());
            }
            let (g, t) = self.group.done.wait_timeout(st, WAIT_SLICE).unwrap_or_else(|p| p.into_inner());
            st = g;
            if t.timed_out() {
                slices += 1;
                if slices >= MAX_DURABILITY_SLICES {
                    return Err(StoreError::DurabilityTimeout { path: self.path.clone(), secs: (WAIT_SLICE * slices).as_secs() });
                }
            }
        }
    }

    /// After the transaction: wait for durability (if it applied) and release the admission.
    fn finish(&self, res: Result<(), TransactionError<StoreError>>) -> Result<(), StoreError> {
        let res = match res {
            Ok(()) => self.wait_durable(),
            Err(e) => Err(self.tx_err(e)),
        };
        let mut st = self.group.lock();
        st.in_flight -= 1;
        drop(st);
        self.group.done.notify_all();
        if res.is_ok() {
            self.commits.fetch_add(1, Ordering::SeqCst);
        }
        res
    }

    /// Take a ticket (our transaction is already applied) and block until a flush that started
    /// after the ticket was issued has completed.
    fn wait_durable(&self) -> Result<(), StoreError> {
        let mut st = self.group.lock();
        st.requested += 1;
        let ticket = st.requested;
        self.group.work.notify_one();
        let mut slices = 0;
        loop {
            if st.durable >= ticket {
                return Ok(());
            }
            if let Some(e) = &st.failed {
                return Err(StoreError::Poisoned { path: self.path.clone(), error: e.clone() });
            }
            let (g, t) = self.group.done.wait_timeout(st, WAIT_SLICE).unwrap_or_else(|p| p.into_inner());
            st = g;
            if t.timed_out() {
                slices += 1;
                if slices >= MAX_DURABILITY_SLICES {
                    return Err(StoreError::DurabilityTimeout { path: self.path.clone(), secs: (WAIT_SLICE * slices).as_secs() });
                }
            }
        }
    }

    /// Remove a run and its whole history atomically and durably (`drctl gc`); the number of
    /// history events removed. Removing a run that is not there removes nothing.
    pub fn delete_run(&self, id: &str) -> Result<u64, StoreError> {
        check_id(id)?;
        let keys: Vec<sled::IVec> =
            self.history.scan_prefix(history_prefix(id)).keys().collect::<Result<_, _>>().map_err(|e| self.sled_err(e))?;
        self.admit()?;
        let res: Result<(), TransactionError<StoreError>> =
            (&self.runs, &self.history, &self.unfinished).transaction(|(runs, history, unfinished)| {
                runs.remove(id.as_bytes())?;
                unfinished.remove(id.as_bytes())?;
                for k in &keys {
                    history.remove(k)?;
                }
                Ok(())
            });
        self.finish(res)?;
        Ok(keys.len() as u64)
    }

    pub fn get_run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        match self.runs.get(id.as_bytes()).map_err(|e| self.sled_err(e))? {
            Some(b) => decode_record(id, &b).map(Some),
            None => Ok(None),
        }
    }

    /// All runs, ordered by numeric id.
    pub fn list_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let mut out = Vec::new();
        for kv in self.runs.iter() {
            let (k, v) = kv.map_err(|e| self.sled_err(e))?;
            let id = String::from_utf8(k.to_vec())
                .map_err(|_| StoreError::Corrupt { run: format!("{:?}", k.as_ref()), detail: "run id is not UTF-8".into() })?;
            out.push(decode_record(&id, &v)?);
        }
        out.sort_by(|a, b| id_order(&a.id).cmp(&id_order(&b.id)));
        Ok(out)
    }

    /// The runs that are not finished (not terminal), ordered by numeric id, read through the
    /// `unfinished` index: the cost does not grow with finished runs.
    pub fn list_unfinished(&self) -> Result<Vec<RunRecord>, StoreError> {
        let mut out = Vec::new();
        for k in self.unfinished.iter().keys() {
            let k = k.map_err(|e| self.sled_err(e))?;
            let id = String::from_utf8(k.to_vec())
                .map_err(|_| StoreError::Corrupt { run: format!("{:?}", k.as_ref()), detail: "run id is not UTF-8".into() })?;
            match self.get_run(&id)? {
                Some(r) if !r.status.is_terminal() => out.push(r),
                Some(_) => return Err(StoreError::Corrupt { run: id, detail: "indexed as unfinished but its record is finished".into() }),
                None => return Err(StoreError::Corrupt { run: id, detail: "indexed as unfinished but has no record".into() }),
            }
        }
        out.sort_by(|a, b| id_order(&a.id).cmp(&id_order(&b.id)));
        Ok(out)
    }

    /// A run's history in seq order, checked contiguous from 0 and consistent with its record.
    pub fn history(&self, id: &str) -> Result<Vec<HistoryEvent>, StoreError> {
        let prefix = history_prefix(id);
        let mut out: Vec<HistoryEvent> = Vec::new();
        for kv in self.history.scan_prefix(&prefix) {
            let (k, v) = kv.map_err(|e| self.sled_err(e))?;
            let expected = out.len() as u64;
            let key_seq = u64_of(&k[prefix.len()..]);
            let ev = decode_event(id, &v)?;
            if key_seq != Some(expected) || ev.seq != expected {
                return Err(StoreError::Corrupt {
                    run: id.to_string(),
                    detail: format!("history is not contiguous: expected seq {expected}, found key {key_seq:?} holding seq {}", ev.seq),
                });
            }
            out.push(ev);
        }
        if let Some(rec) = self.get_run(id)? {
            if rec.next_seq != out.len() as u64 {
                return Err(StoreError::Corrupt {
                    run: id.to_string(),
                    detail: format!("record expects {} history events but {} are stored", rec.next_seq, out.len()),
                });
            }
        }
        Ok(out)
    }
}

impl RunStore for Store {
    fn next_run_id(&self) -> Result<String, StoreError> {
        Store::next_run_id(self)
    }
    fn create_run(&self, rec: &RunRecord, events: &[HistoryEvent]) -> Result<(), StoreError> {
        Store::create_run(self, rec, events)
    }
    fn commit(&self, rec: &RunRecord, events: &[HistoryEvent]) -> Result<(), StoreError> {
        Store::commit(self, rec, events)
    }
    fn get_run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        Store::get_run(self, id)
    }
    fn list_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        Store::list_runs(self)
    }
    fn list_unfinished(&self) -> Result<Vec<RunRecord>, StoreError> {
        Store::list_unfinished(self)
    }
    fn history(&self, id: &str) -> Result<Vec<HistoryEvent>, StoreError> {
        Store::history(self, id)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        {
            let mut st = self.group.lock();
            st.shutdown = true;
        }
        self.group.work.notify_all();
        let handle = self.committer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            // The committer drains outstanding tickets and exits; joining releases its sled
            // handle so the directory can be reopened right away.
            let _ = h.join();
        }
        // sled also flushes on drop; an error here has nowhere to go and every commit that
        // returned Ok is already durable.
        let _ = self.db.flush();
    }
}

/// The thread that owns the flush.
struct Committer {
    db: sled::Db,
    data_file: File,
    blobs_dir: PathBuf,
    /// Blob files already fsynced; pruned to the files still present, so bounded by the dir.
    synced_blobs: BTreeSet<std::ffi::OsString>,
    group: Arc<Group>,
}

impl Committer {
    fn run(mut self) {
        loop {
            let target = {
                let mut st = self.group.lock();
                loop {
                    if st.failed.is_some() || (st.shutdown && st.requested == st.durable) {
                        return;
                    }
                    if st.requested > st.durable {
                        break st.requested;
                    }
                    // Timed so a lost wakeup can only delay, never wedge, the committer.
                    st = self.group.work.wait_timeout(st, WAIT_SLICE).unwrap_or_else(|p| p.into_inner()).0;
                }
            };
            // Every ticket <= target was issued after its transaction was applied, and this
            // flush starts now, so it covers all of them.
            let res = self.flush_durably();
            self.group.device_flushes.fetch_add(1, Ordering::SeqCst);
            let mut st = self.group.lock();
            match res {
                Ok(()) => st.durable = target,
                Err(e) => st.failed = Some(e),
            }
            drop(st);
            self.group.done.notify_all();
        }
    }

    fn flush_durably(&mut self) -> Result<(), String> {
        self.db.flush().map_err(|e| format!("sled flush: {e}"))?;
        self.sync_new_blobs()?;
        self.data_file.sync_data().map_err(|e| format!("fdatasync of the data file: {e}"))
    }

    /// sled writes values too large for its log as separate files under `blobs/` and never
    /// syncs them; the log points at them, so they must be durable before we acknowledge.
    fn sync_new_blobs(&mut self) -> Result<(), String> {
        let entries = match std::fs::read_dir(&self.blobs_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("list blobs: {e}")),
        };
        let mut present = BTreeSet::new();
        let mut synced_any = false;
        for entry in entries {
            let entry = entry.map_err(|e| format!("list blobs: {e}"))?;
            let name = entry.file_name();
            if !self.synced_blobs.contains(&name) {
                match File::open(entry.path()) {
                    Ok(f) => f.sync_data().map_err(|e| format!("fdatasync blob {name:?}: {e}"))?,
                    // Garbage-collected between listing and opening: nothing to make durable.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(format!("open blob {name:?}: {e}")),
                }
                synced_any = true;
            }
            present.insert(name);
        }
        if synced_any {
            File::open(&self.blobs_dir).and_then(|d| d.sync_all()).map_err(|e| format!("fsync blobs directory: {e}"))?;
        }
        self.synced_blobs = present;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::record::{Outcome, RunStatus};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    pub(crate) fn record(id: &str, next_seq: u64, state: u8) -> RunRecord {
        RunRecord {
            id: id.into(),
            procedure: "toy".into(),
            procedure_version: 1,
            params: vec![0x90],
            state: vec![state],
            state_name: format!("S{state}"),
            status: RunStatus::Running,
            seed: 7,
            created_at: Timestamp(1),
            updated_at: Timestamp(2),
            deadline: Timestamp(1_000_000),
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

    pub(crate) fn event(seq: u64) -> HistoryEvent {
        HistoryEvent { seq, at: Timestamp(seq), from: "a".into(), to: "b".into(), attempt: 0, outcome: Outcome::Transition, detail: None }
    }

    fn events(from: u64, to: u64) -> Vec<HistoryEvent> {
        (from..to).map(event).collect()
    }

    #[test]
    fn create_commit_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let id = s.next_run_id().unwrap();
        assert_eq!(id, "1");
        s.create_run(&record(&id, 1, 0), &events(0, 1)).unwrap();
        assert!(matches!(s.create_run(&record(&id, 1, 0), &events(0, 1)), Err(StoreError::RunExists(_))));
        s.commit(&record(&id, 3, 1), &events(1, 3)).unwrap();
        // A record-only commit (a re-check of the same wait) appends nothing.
        s.commit(&record(&id, 3, 2), &[]).unwrap();
        assert_eq!(s.get_run(&id).unwrap().unwrap().state, vec![2]);
        assert_eq!(s.history(&id).unwrap(), events(0, 3));
        assert_eq!(s.next_run_id().unwrap(), "2");
        assert_eq!(s.stats().commits, 3);
        assert!(s.stats().device_flushes >= 1);
    }

    #[test]
    fn history_is_append_only_and_contiguous() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.create_run(&record("1", 2, 0), &events(0, 2)).unwrap();
        // Gap: events 3..4 with next_seq 4 while the store is at 2.
        assert!(matches!(s.commit(&record("1", 4, 1), &events(3, 4)), Err(StoreError::Bug(_))));
        // Rewriting seq 1 (lost update by a second writer).
        assert!(matches!(s.commit(&record("1", 2, 1), &events(1, 2)), Err(StoreError::Bug(_))));
        // Events that do not end at next_seq.
        assert!(matches!(s.commit(&record("1", 5, 1), &events(2, 3)), Err(StoreError::Bug(_))));
        assert!(matches!(s.commit(&record("2", 1, 1), &events(0, 1)), Err(StoreError::NoSuchRun(_))));
        assert!(matches!(s.create_run(&record("3", 2, 0), &events(1, 2)), Err(StoreError::Bug(_))));
        // Nothing of the rejected commits is visible.
        assert_eq!(s.get_run("1").unwrap().unwrap().state, vec![0]);
        assert_eq!(s.history("1").unwrap().len(), 2);
        assert!(s.get_run("3").unwrap().is_none());
    }

    #[test]
    fn create_bumps_the_id_counter_durably() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.create_run(&record("41", 0, 0), &[]).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.next_run_id().unwrap(), "42");
    }

    #[test]
    fn list_orders_numerically() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        for id in ["10", "2", "1", "x"] {
            s.create_run(&record(id, 0, 0), &[]).unwrap();
        }
        let ids: Vec<String> = s.list_runs().unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["1", "2", "10", "x"]);
    }

    #[test]
    fn newer_schema_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.meta.insert(KEY_SCHEMA, &(STORE_SCHEMA + 1).to_be_bytes()).unwrap();
        }
        let err = Store::open(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::NewerSchema { found, .. } if found == STORE_SCHEMA + 1));
        assert!(msg.contains("newer drctl (schema 3)") && msg.contains("understands schema 2"), "{msg}");
    }

    /// The runs a restart resumes come from the `unfinished` index, kept in the same transaction
    /// as each record; a schema-1 store (no index) gets it built when opened.
    #[test]
    fn unfinished_runs_are_indexed_and_a_schema_1_store_is_indexed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let ids = |runs: Vec<RunRecord>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
        {
            let s = Store::open(dir.path()).unwrap();
            for id in ["1", "2", "3"] {
                s.create_run(&record(id, 1, 0), &[event(0)]).unwrap();
            }
            let mut done = record("2", 2, 1);
            done.status = RunStatus::Succeeded;
            s.commit(&done, &[event(1)]).unwrap();
            assert_eq!(ids(s.list_unfinished().unwrap()), ["1", "3"]);
            assert_eq!(s.delete_run("3").unwrap(), 1);
            assert_eq!(ids(s.list_unfinished().unwrap()), ["1"]);
            // As a schema-1 store would be: no index.
            s.unfinished.clear().unwrap();
            s.meta.insert(KEY_SCHEMA, &1u32.to_be_bytes()).unwrap();
            s.db.flush().unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(ids(s.list_unfinished().unwrap()), ["1"]);
        assert_eq!(s.meta.get(KEY_SCHEMA).unwrap().unwrap().as_ref(), STORE_SCHEMA.to_be_bytes());
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.create_run(&record("1", 1, 0), &events(0, 1)).unwrap();
        s.runs.insert("2", &b"\xc1garbage"[..]).unwrap();
        s.history.insert(history_key("1", 1), &b"\xc1"[..]).unwrap();
        assert!(matches!(s.get_run("2"), Err(StoreError::Corrupt { run, .. }) if run == "2"));
        assert!(matches!(s.list_runs(), Err(StoreError::Corrupt { .. })));
        assert!(matches!(s.history("1"), Err(StoreError::Corrupt { run, .. }) if run == "1"));
        // A record filed under the wrong key is corrupt too.
        s.runs.insert("3", encode("r", &record("4", 0, 0)).unwrap()).unwrap();
        assert!(matches!(s.get_run("3"), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn concurrent_commits_share_device_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(dir.path()).unwrap());
        const THREADS: u64 = 16;
        const COMMITS: u64 = 50;
        for t in 0..THREADS {
            s.create_run(&record(&t.to_string(), 0, 0), &[]).unwrap();
        }
        let before = s.stats();
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..COMMITS {
                        s.commit(&record(&t.to_string(), i + 1, (i % 200) as u8), &events(i, i + 1)).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let after = s.stats();
        let commits = after.commits - before.commits;
        let flushes = after.device_flushes - before.device_flushes;
        assert_eq!(commits, THREADS * COMMITS);
        assert!(flushes < commits, "group commit did not share flushes: {flushes} flushes for {commits} commits");
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        for t in 0..THREADS {
            assert_eq!(s.history(&t.to_string()).unwrap().len() as u64, COMMITS);
        }
    }

    /// Set in the child process of `commit_issues_fdatasync_on_the_data_file`.
    const STRACE_CHILD_ENV: &str = "DRCTL_TEST_STRACE_CHILD_DIR";
    const STRACE_COMMITS: u64 = 5;

    /// Does nothing in a normal test run; in the traced child it does exactly
    /// `STRACE_COMMITS` sequential commits.
    #[test]
    fn strace_child_commits() {
        let Ok(dir) = std::env::var(STRACE_CHILD_ENV) else { return };
        let s = Store::open(Path::new(&dir)).unwrap();
        s.create_run(&record("1", 0, 0), &[]).unwrap();
        for i in 0..STRACE_COMMITS {
            s.commit(&record("1", i + 1, i as u8), &events(i, i + 1)).unwrap();
        }
    }

    #[test]
    fn commit_issues_fdatasync_on_the_data_file() {
        let strace = Path::new("/usr/bin/strace");
        assert!(strace.exists(), "this test needs strace at /usr/bin/strace to prove commits reach the device (apt-get install strace)");
        let dir = tempfile::tempdir().unwrap();
        let trace = dir.path().join("trace.txt");
        let store_dir = dir.path().join("store");
        let out = std::process::Command::new(strace)
            .args(["-f", "-qq", "-y", "-e", "trace=fdatasync", "-e", "signal=none", "-o"])
            .arg(&trace)
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "store::sled::tests::strace_child_commits", "--nocapture", "--test-threads=1"])
            .env(STRACE_CHILD_ENV, &store_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "traced child failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&trace).unwrap();
        let data_file = format!("<{}>", store_dir.join("db").join("db").display());
        let syncs = text.lines().filter(|l| l.contains("fdatasync(") && l.contains(&data_file) && l.contains("= 0")).count() as u64;
        // create_run + STRACE_COMMITS sequential commits, each waiting for its own fdatasync.
        assert!(syncs > STRACE_COMMITS, "expected at least {} fdatasync calls on {data_file}, saw {syncs}:\n{text}", STRACE_COMMITS + 1);
    }

    const KILL_CHILD_ENV: &str = "DRCTL_TEST_KILL_CHILD_DIR";

    /// In the child of `acknowledged_commits_survive_sigkill`: commit forever (bounded), reporting
    /// each acknowledged commit on stdout, until killed.
    #[test]
    fn kill_child_commits() {
        let Ok(dir) = std::env::var(KILL_CHILD_ENV) else { return };
        use std::io::Write;
        let s = Store::open(Path::new(&dir)).unwrap();
        s.create_run(&record("1", 0, 0), &[]).unwrap();
        for i in 0..100_000u64 {
            s.commit(&record("1", i + 1, (i % 200) as u8), &events(i, i + 1)).unwrap();
            println!("ACK {}", i + 1);
            std::io::stdout().flush().unwrap();
        }
    }

    /// "Synced survives": every commit acknowledged before a SIGKILL is there after reopening.
    #[test]
    fn acknowledged_commits_survive_sigkill() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store::sled::tests::kill_child_commits", "--nocapture", "--test-threads=1"])
            .env(KILL_CHILD_ENV, dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut acked = 0u64;
        let stdout = child.stdout.take().unwrap();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("ACK ") {
                acked = n.parse().unwrap();
                if acked >= 20 {
                    break;
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(acked >= 20, "child stopped early");
        let s = Store::open(dir.path()).unwrap();
        let rec = s.get_run("1").unwrap().unwrap();
        assert!(rec.next_seq >= acked, "acknowledged {acked} commits but only {} survived", rec.next_seq);
        assert_eq!(s.history("1").unwrap().len() as u64, rec.next_seq);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Create(u8),
        /// Commit to run `n % existing` with this many new events and this state byte.
        Commit(u8, u8, u8),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            2 => any::<u8>().prop_map(Op::Create),
            5 => (any::<u8>(), 0u8..4, any::<u8>()).prop_map(|(r, n, s)| Op::Commit(r, n, s)),
            1 => Just(Op::Reopen),
        ]
    }

    fn check_against_model(s: &Store, model: &BTreeMap<String, (RunRecord, Vec<HistoryEvent>)>) {
        let runs = s.list_runs().unwrap();
        assert_eq!(runs.len(), model.len());
        for r in runs {
            let (mr, mh) = &model[&r.id];
            assert_eq!(&r, mr);
            assert_eq!(&s.history(&r.id).unwrap(), mh);
        }
        let unfinished: Vec<String> = s.list_unfinished().unwrap().into_iter().map(|r| r.id).collect();
        let expected: Vec<String> = s.list_runs().unwrap().into_iter().filter(|r| !r.status.is_terminal()).map(|r| r.id).collect();
        assert_eq!(unfinished, expected, "the unfinished index disagrees with the records");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        /// Like sled's fuzz_model: random creates/commits/reboots against a BTreeMap model.
        #[test]
        fn store_matches_model_across_reopens(ops in proptest::collection::vec(op(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let mut s = Some(Store::open(dir.path()).unwrap());
            let mut model: BTreeMap<String, (RunRecord, Vec<HistoryEvent>)> = BTreeMap::new();
            for op in ops {
                let store = s.as_ref().unwrap();
                match op {
                    Op::Create(state) => {
                        let id = store.next_run_id().unwrap();
                        prop_assert!(!model.contains_key(&id), "id {} handed out twice", id);
                        let rec = record(&id, 1, state);
                        let evs = events(0, 1);
                        store.create_run(&rec, &evs).unwrap();
                        model.insert(id, (rec, evs));
                    }
                    Op::Commit(r, n, state) => {
                        if model.is_empty() { continue; }
                        let id = model.keys().nth(r as usize % model.len()).unwrap().clone();
                        let (mr, mh) = model.get_mut(&id).unwrap();
                        let from = mr.next_seq;
                        let mut rec = record(&id, from + n as u64, state);
                        // Some commits finish the run (and a later one may "un-finish" it: the
                        // store does not judge, it must only index what it holds).
                        rec.status = [RunStatus::Running, RunStatus::Succeeded, RunStatus::Waiting, RunStatus::Halted][state as usize % 4];
                        let evs = events(from, from + n as u64);
                        store.commit(&rec, &evs).unwrap();
                        *mr = rec;
                        mh.extend(evs);
                    }
                    Op::Reopen => {
                        drop(s.take());
                        s = Some(Store::open(dir.path()).unwrap());
                        check_against_model(s.as_ref().unwrap(), &model);
                    }
                }
            }
            drop(s.take());
            let s = Store::open(dir.path()).unwrap();
            check_against_model(&s, &model);
        }
    }
}
