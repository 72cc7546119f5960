//! Differential test: the simulator's etcd model against real etcd 3.4.
//!
//! ONE table of operation sequences. Each row is run against a fresh real 3-member etcd on
//! 127.0.0.1 (through the etcd adapter, `EtcdCtl`, and the process harness of
//! `adapters/tests/support`) and against the simulator's model (through `SimEtcd` and direct
//! world changes for kill / restart / restore, via `drctl_sim`'s public API). Outcomes are
//! compared at the level both can express: success / transient / permanent, member count,
//! cluster id changed or not, member started or rejected, healthy endpoints.
//!
//! The expected column is what REAL etcd does: `real_etcd_behaves_as_the_table_says` keeps it
//! honest (and prints the side-by-side table), `sim_etcd_model_agrees_with_real_etcd` holds the
//! model to it. Each operation's outcome is the one it settles to when transient failures are
//! retried for a bounded time, as the engine retries them (12 s, wall clock for real etcd,
//! virtual time for the simulator); the first attempt is shown too.
// Real software in real time: these tests measure and wait on the wall clock.
#![allow(clippy::disallowed_methods)]

#[path = "../adapters/tests/support/mod.rs"]
mod support;

use drctl_adapters::etcd::EtcdCtl;
use drctl_runtime::clock::Timestamp;
use drctl_sim::ports::SimEtcd;
use drctl_sim::world::{Container, HostWindow, Window};
use drctl_sim::Sim;
use drctl_workflows::ports::{Etcd, PortError, PortResult, StaticPod};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use support::etcd::{Cluster, Member};

/// One step of a sequence. Members are named by their index in the 3-member cluster (real:
/// `m0..m2`; simulator: the etcd member on `master-0..2`).
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Stop member i's process (simulator: its etcd container crashes and stays down).
    Kill(usize),
    /// Start member i again with the data it has: `started` (serving in the current cluster),
    /// `rejected` (refused: cluster-id mismatch, removed) or `not started`.
    Start(usize),
    /// Linearizable member list: `ok N members, same|new cluster`, or the failure class.
    List,
    /// Endpoint health of the three original members: `N healthy` (one attempt).
    Health,
    /// Remove member i by id.
    Remove(usize),
    /// Remove the member that currently leads (simulator: no leader in the model; the first).
    RemoveLeader,
    /// Add a member under this name with a new peer URL; it is not started.
    Add(&'static str),
    /// Snapshot the cluster, stop every member, restore the snapshot as a new one-member cluster
    /// on member i and start it: `ok` when it serves.
    Restore(usize),
    /// Whether member i's process still runs: `running` / `stopped`.
    Running(usize),
}

struct Row {
    name: &'static str,
    /// Each step with the outcome REAL etcd 3.4 gives.
    steps: &'static [(Op, &'static str)],
}

use Op::*;

const TABLE: &[Row] = &[
    Row {
        name: "quorum loss: 2 of 3 down, list without quorum, members return",
        steps: &[
            (List, "ok 3 members, same cluster"),
            (Kill(1), "killed"),
            (Kill(2), "killed"),
            (List, "transient"),
            (Health, "0 healthy"),
            (Start(1), "started"),
            (Start(2), "started"),
            (List, "ok 3 members, same cluster"),
            (Health, "3 healthy"),
        ],
    },
    Row {
        name: "remove a healthy member from 3",
        steps: &[(Remove(2), "ok"), (List, "ok 2 members, same cluster"), (Running(2), "stopped"), (Health, "2 healthy")],
    },
    Row {
        name: "remove a healthy member while another is down",
        // etcd's strict reconfiguration check: removing it would leave 1 of 2 active.
        steps: &[(Kill(2), "killed"), (Remove(1), "transient"), (List, "ok 3 members, same cluster"), (Health, "2 healthy")],
    },
    Row {
        name: "remove the member that is down (the runbook's case)",
        steps: &[(Kill(2), "killed"), (Remove(2), "ok"), (List, "ok 2 members, same cluster"), (Health, "2 healthy")],
    },
    Row {
        name: "add a member while degraded (1 of 3 down)",
        // Refused as "unhealthy cluster": not every voting member has been connected for 5 s.
        steps: &[(Kill(2), "killed"), (Add("m3"), "transient"), (List, "ok 3 members, same cluster")],
    },
    Row {
        name: "add a second member while the first added has not started",
        steps: &[(Add("m3"), "ok"), (List, "ok 4 members, same cluster"), (Add("m4"), "transient"), (List, "ok 4 members, same cluster")],
    },
    Row {
        name: "remove the leader",
        // The next call may fail once ("request timed out, possibly due to previous leader
        // failure"); it settles.
        steps: &[(RemoveLeader, "ok"), (List, "ok 2 members, same cluster"), (Health, "2 healthy")],
    },
    Row {
        name: "restore -> new cluster id; an old member returns and is rejected",
        steps: &[(Restore(0), "ok"), (List, "ok 1 members, new cluster"), (Start(1), "rejected"), (List, "ok 1 members, new cluster")],
    },
];

/// How long a transient failure is retried before it counts as the outcome.
const SETTLE: Duration = Duration::from_secs(12);

fn class(e: &PortError) -> &'static str {
    match e {
        PortError::Transient(_) => "transient",
        PortError::NotFound(_) | PortError::Permanent(_) => "permanent",
    }
}

/// What one step gave: the first attempt and the outcome it settled to.
struct Seen {
    first: String,
    settled: String,
    /// The error text of the first failure, for the report.
    error: Option<String>,
}

impl Seen {
    fn once(s: impl Into<String>) -> Seen {
        let s = s.into();
        Seen { first: s.clone(), settled: s, error: None }
    }
}

/// Retry `f` while it fails transiently, until `elapsed()` passes [`SETTLE`].
fn settle<T>(
    mut f: impl FnMut() -> PortResult<T>,
    show: impl Fn(&T) -> String,
    elapsed: impl Fn() -> Duration,
    mut pause: impl FnMut(),
) -> Seen {
    let show_r = |r: &PortResult<T>| match r {
        Ok(v) => show(v),
        Err(e) => class(e).to_string(),
    };
    let r = f();
    let first = show_r(&r);
    let mut error = r.as_ref().err().map(|e| e.to_string());
    let mut last = r;
    // Bounded by SETTLE on the caller's clock (each round also passes time: `pause`).
    while matches!(&last, Err(e) if e.is_transient()) && elapsed() < SETTLE {
        pause();
        last = f();
        if error.is_none() {
            error = last.as_ref().err().map(|e| e.to_string());
        }
    }
    Seen { first, settled: show_r(&last), error }
}

trait Target {
    fn step(&mut self, op: Op) -> Seen;
}

// ---------------------------------------------------------------------------------------------
// Real etcd
// ---------------------------------------------------------------------------------------------

struct Real {
    c: Cluster,
    cid0: u64,
    ids: Vec<u64>,
    /// Members added by `Add` (their processes are never started).
    added: Vec<Member>,
}

impl Real {
    fn new() -> Real {
        let c = Cluster::start(3);
        let l = settle_list(&c);
        let ids = (0..3).map(|i| l.members.iter().find(|m| m.name == format!("m{i}")).expect("member").id).collect();
        Real { cid0: l.cluster_id, c, ids, added: vec![] }
    }
    fn ctl(&self) -> EtcdCtl {
        EtcdCtl::local(self.c.endpoints()).with_timeouts(Duration::from_secs(1), Duration::from_secs(3))
    }
    fn ctl_one(&self, i: usize) -> EtcdCtl {
        EtcdCtl::local(vec![self.c.members[i].client_url()]).with_timeouts(Duration::from_secs(1), Duration::from_secs(3))
    }
    fn list_text(&self, l: &drctl_workflows::ports::EtcdMemberList) -> String {
        list_text(l.members.len(), l.cluster_id == self.cid0)
    }
    fn leader(&self) -> Option<u64> {
        let st = self.ctl().endpoint_status().ok()?;
        st.iter().filter_map(|s| s.leader).next()
    }
    fn all_logs(&self) -> String {
        self.c.members.iter().map(|m| m.log_text()).collect::<Vec<_>>().join("\n")
    }
}

fn settle_list(c: &Cluster) -> drctl_workflows::ports::EtcdMemberList {
    let e = EtcdCtl::local(c.endpoints()).with_timeouts(Duration::from_secs(1), Duration::from_secs(3));
    for _ in 0..100 {
        if let Ok(l) = e.member_list() {
            return l;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the new cluster never listed its members")
}

fn list_text(n: usize, same: bool) -> String {
    format!("ok {n} members, {} cluster", if same { "same" } else { "new" })
}

fn wall(start: Instant) -> impl Fn() -> Duration {
    move || start.elapsed()
}

fn nap() {
    std::thread::sleep(Duration::from_millis(300));
}

impl Target for Real {
    fn step(&mut self, op: Op) -> Seen {
        let t = Instant::now();
        match op {
            Kill(i) => {
                self.c.members[i].kill();
                Seen::once("killed")
            }
            Start(i) => {
                let before = self.all_logs().len();
                self.c.members[i].start();
                let name = format!("m{i}");
                let deadline = Instant::now() + Duration::from_secs(25);
                // Bounded by the deadline.
                while Instant::now() < deadline {
                    if !self.c.members[i].is_running() {
                        return Seen::once("rejected");
                    }
                    let logs = self.all_logs();
                    if logs.get(before..).unwrap_or("").contains("cluster ID mismatch") {
                        return Seen::once("rejected");
                    }
                    let healthy = self.ctl_one(i).endpoint_health().map(|h| h.iter().all(|x| x.healthy)).unwrap_or(false);
                    if healthy {
                        if let Ok(l) = self.ctl().member_list() {
                            if l.members.iter().any(|m| m.name == name) {
                                return Seen::once("started");
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Seen::once("not started")
            }
            List => {
                let e = self.ctl();
                let show = |l: &drctl_workflows::ports::EtcdMemberList| self.list_text(l);
                settle(|| e.member_list(), show, wall(t), nap)
            }
            Health => {
                let h = self.ctl().endpoint_health();
                match h {
                    Ok(v) => Seen::once(format!("{} healthy", v.iter().filter(|x| x.healthy).count())),
                    Err(e) => Seen { first: class(&e).into(), settled: class(&e).into(), error: Some(e.to_string()) },
                }
            }
            Remove(i) => {
                let e = self.ctl();
                let id = self.ids[i];
                settle(|| e.member_remove(id), |_| "ok".into(), wall(t), nap)
            }
            RemoveLeader => {
                let leader = (0..50).find_map(|_| {
                    self.leader().or_else(|| {
                        std::thread::sleep(Duration::from_millis(100));
                        None
                    })
                });
                let id = leader.expect("a 3-member cluster has a leader");
                let e = self.ctl();
                settle(|| e.member_remove(id), |_| "ok".into(), wall(t), nap)
            }
            Add(name) => {
                let fresh = self.c.new_member(name, String::new(), "existing");
                let url = fresh.peer_url();
                self.added.push(fresh);
                let e = self.ctl();
                settle(|| e.member_add(name, &url), |_| "ok".into(), wall(t), nap)
            }
            Restore(i) => {
                let snap = self.c.dir.path().join("snapshot_diff.db").display().to_string();
                let e = self.ctl();
                let saved = settle(|| e.snapshot_save(&snap), |_| "ok".into(), wall(t), nap);
                if saved.settled != "ok" {
                    return Seen { first: format!("snapshot {}", saved.first), settled: "failed".into(), error: saved.error };
                }
                for m in &mut self.c.members {
                    m.kill();
                }
                let dir = self.c.dir.path().join(format!("m{i}-restored.etcd"));
                let peer = self.c.members[i].peer_url();
                let ic = format!("m{i}={peer}");
                if let Err(err) = self.ctl_one(i).snapshot_restore(&snap, &dir.display().to_string(), &format!("m{i}"), &ic, &peer) {
                    return Seen { first: "restore failed".into(), settled: "failed".into(), error: Some(err.to_string()) };
                }
                let m = &mut self.c.members[i];
                m.data_dir = dir;
                m.initial_cluster = ic;
                m.state = "new";
                m.start();
                let one = self.ctl_one(i);
                let up = settle(|| one.member_list(), |_| "ok".into(), wall(Instant::now()), nap);
                Seen { first: "ok".into(), settled: up.settled, error: up.error }
            }
            Running(i) => {
                let deadline = Instant::now() + Duration::from_secs(15);
                while Instant::now() < deadline {
                    if !self.c.members[i].is_running() {
                        return Seen::once("stopped");
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Seen::once("running")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The simulator's model
// ---------------------------------------------------------------------------------------------

struct Model {
    sim: Sim,
    cid0: u64,
}

fn host(i: usize) -> String {
    format!("master-{i}")
}

impl Model {
    fn new() -> Model {
        let sim = Sim::scenario("healthy", 1).expect("scenario");
        let cid0 = sim.read(|w| w.current_cluster);
        Model { sim, cid0 }
    }
    fn etcd(&self) -> SimEtcd {
        SimEtcd(self.sim.clone())
    }
    fn elapsed_since(&self, t0: Timestamp) -> impl Fn() -> Duration + '_ {
        move || Duration::from_millis(self.sim.now().0.saturating_sub(t0.0))
    }
    fn pause(&self) {
        self.sim.write(|w| w.advance(300));
    }
    /// Member i's id in the cluster the model started with.
    fn id(&self, i: usize) -> Option<u64> {
        self.sim.read(|w| w.hosts.get(&host(i)).and_then(|h| h.etcd_data).map(|d| d.member_id))
    }
    fn kill(&self, h: &str) {
        self.sim.write(|w| {
            let now = w.now;
            w.faults.etcd_down.push(HostWindow { host: h.to_string(), window: Window { from: now, until: Timestamp(u64::MAX) } });
            w.advance(1_000);
        });
    }
    fn revive(&self, h: &str) {
        self.sim.write(|w| {
            let now = w.now;
            for d in w.faults.etcd_down.iter_mut().filter(|d| d.host == h && d.window.covers(now)) {
                d.window.until = now;
            }
        });
        // Long enough for the kubelet to start the container (5-20 s in the model).
        self.sim.write(|w| w.advance(60_000));
    }
}

impl Target for Model {
    fn step(&mut self, op: Op) -> Seen {
        let t0 = self.sim.now();
        match op {
            Kill(i) => {
                self.kill(&host(i));
                Seen::once("killed")
            }
            Start(i) => {
                self.revive(&host(i));
                self.sim.read(|w| {
                    let h = &w.hosts[&host(i)];
                    if w.member_started(h) {
                        Seen::once("started")
                    } else if h.containers.get(&StaticPod::Etcd) == Some(&Container::CrashLoop) {
                        Seen::once("rejected")
                    } else {
                        Seen::once("not started")
                    }
                })
            }
            List => {
                let e = self.etcd();
                let cid0 = self.cid0;
                settle(|| e.member_list(), |l| list_text(l.members.len(), l.cluster_id == cid0), self.elapsed_since(t0), || self.pause())
            }
            Health => match self.etcd().endpoint_health() {
                Ok(v) => Seen::once(format!("{} healthy", v.iter().filter(|x| x.healthy).count())),
                Err(e) => Seen { first: class(&e).into(), settled: class(&e).into(), error: Some(e.to_string()) },
            },
            Remove(i) => {
                let e = self.etcd();
                let id = self.id(i).expect("member id");
                settle(|| e.member_remove(id), |_| "ok".into(), self.elapsed_since(t0), || self.pause())
            }
            RemoveLeader => {
                // The model has no leader: every member is alike. Remove the first.
                let id = self.sim.read(|w| *w.etcd[&w.current_cluster].members.keys().next().expect("a member"));
                let e = self.etcd();
                settle(|| e.member_remove(id), |_| "ok".into(), self.elapsed_since(t0), || self.pause())
            }
            Add(name) => {
                let e = self.etcd();
                let url = format!("https://10.0.0.99:2380/{name}");
                settle(|| e.member_add(name, &url), |_| "ok".into(), self.elapsed_since(t0), || self.pause())
            }
            Restore(i) => {
                let h = host(i);
                let dir = "/home/core/assets/backup/diff";
                if let Err(e) = self.sim.write(|w| w.backup(&h, dir)) {
                    return Seen { first: "snapshot failed".into(), settled: "failed".into(), error: Some(e) };
                }
                for k in 0..3 {
                    self.kill(&host(k));
                }
                if let Err(e) = self.sim.write(|w| w.restore(&h, dir, "drctl-diff-restore")) {
                    return Seen { first: "restore failed".into(), settled: "failed".into(), error: Some(e) };
                }
                self.revive(&h);
                let e = self.etcd();
                let t1 = self.sim.now();
                let up = settle(|| e.member_list(), |_| "ok".into(), self.elapsed_since(t1), || self.pause());
                Seen { first: "ok".into(), settled: up.settled, error: up.error }
            }
            Running(i) => {
                // As long as a real process would take to notice (it exits within seconds).
                self.sim.write(|w| w.advance(15_000));
                self.sim.read(|w| Seen::once(if w.member_started(&w.hosts[&host(i)]) { "running" } else { "stopped" }))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The two sides against the table
// ---------------------------------------------------------------------------------------------

/// (row, step, expected, seen) for every step of every row.
fn run_all(mut make: impl FnMut() -> Box<dyn Target>) -> Vec<Vec<Seen>> {
    TABLE
        .iter()
        .map(|row| {
            let t = Instant::now();
            let mut target = make();
            let seen: Vec<Seen> = row.steps.iter().map(|(op, _)| target.step(*op)).collect();
            eprintln!("  [{:>5.1}s] {}", t.elapsed().as_secs_f64(), row.name);
            seen
        })
        .collect()
}

fn show(s: &Seen) -> String {
    if s.first == s.settled {
        s.settled.clone()
    } else {
        format!("{} (first: {})", s.settled, s.first)
    }
}

fn report(real: Option<&[Vec<Seen>]>, sim: &[Vec<Seen>]) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut mismatches = vec![];
    for (r, row) in TABLE.iter().enumerate() {
        let _ = writeln!(out, "\n{}. {}", r + 1, row.name);
        let _ = writeln!(out, "   {:<14} {:<28} {:<44} {:<44}", "STEP", "EXPECTED (real etcd)", "REAL", "SIM");
        for (s, (op, want)) in row.steps.iter().enumerate() {
            let sim_seen = &sim[r][s];
            let real_text = real.map(|x| show(&x[r][s])).unwrap_or_else(|| "(not run)".into());
            let mark = if sim_seen.settled == *want { "" } else { "  <-- SIM DIFFERS" };
            let _ = writeln!(out, "   {:<14} {:<28} {:<44} {:<44}{mark}", format!("{op:?}"), want, real_text, show(sim_seen));
            if let Some(x) = real {
                if let Some(e) = &x[r][s].error {
                    let _ = writeln!(out, "   {:<14} real error: {e}", "");
                }
            }
            if let Some(e) = &sim_seen.error {
                let _ = writeln!(out, "   {:<14} sim error:  {e}", "");
            }
            if sim_seen.settled != *want {
                mismatches.push(format!(
                    "row {} '{}', step {} {op:?}: real etcd gives '{want}', the model '{}'",
                    r + 1,
                    row.name,
                    s + 1,
                    sim_seen.settled
                ));
            }
        }
    }
    (out, mismatches)
}

#[test]
fn real_etcd_behaves_as_the_table_says() {
    let t = Instant::now();
    eprintln!("real etcd 3.4, one fresh 3-member cluster per row:");
    let real = run_all(|| Box::new(Real::new()));
    let sim = run_all(|| Box::new(Model::new()));
    let (table, _) = report(Some(&real), &sim);
    eprintln!("{table}\n(total {:?})", t.elapsed());
    let mut wrong = vec![];
    for (r, row) in TABLE.iter().enumerate() {
        for (s, (op, want)) in row.steps.iter().enumerate() {
            if real[r][s].settled != *want {
                wrong.push(format!(
                    "row {} '{}', step {} {op:?}: expected '{want}', real etcd gave '{}'",
                    r + 1,
                    row.name,
                    s + 1,
                    show(&real[r][s])
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "real etcd disagrees with the table:\n{}", wrong.join("\n"));
}

#[test]
fn sim_etcd_model_agrees_with_real_etcd() {
    let sim = run_all(|| Box::new(Model::new()));
    let (table, mismatches) = report(None, &sim);
    eprintln!("{table}");
    assert!(mismatches.is_empty(), "the simulator's etcd model disagrees with real etcd 3.4:\n{}", mismatches.join("\n"));
}
