//! drctl as a real process: killed with SIGKILL mid-run and resumed; driven from a second
//! terminal through the control socket while it runs.
// A real process in real time: the test waits on the wall clock.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A drctl child that is killed and reaped when the test ends, passing or failing.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn spawn(store: &Path, args: &[&str]) -> Reaped {
    Reaped(command(store, args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("drctl starts"))
}

/// [`spawn`], its stderr kept in `log`.
fn spawn_logged(store: &Path, args: &[&str], log: &Path) -> Reaped {
    let err = std::fs::File::create(log).unwrap();
    Reaped(command(store, args).stdout(Stdio::null()).stderr(err).spawn().expect("drctl starts"))
}

/// Poll `f` every 20 ms for at most `bound`.
fn eventually<T>(bound: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < bound, "timed out after {bound:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start a run and SIGKILL it once it has reported `lines` progress lines (plus a few
/// milliseconds more), so the kills spread over the whole procedure, not only its long waits.
fn run_and_kill_after(store: &Path, lines: usize, extra_ms: u64) {
    use std::io::BufRead;
    let mut child = Reaped(
        command(store, &["run", "restore-cluster-state", "--sim", "quorum-loss", "--yes", "--sim-speed", "20000"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("drctl starts"),
    );
    let stderr = child.stderr.take().unwrap();
    let mut seen = 0;
    for line in std::io::BufReader::new(stderr).lines() {
        if line.is_err() {
            break;
        }
        seen += 1;
        if seen >= lines {
            std::thread::sleep(Duration::from_millis(extra_ms));
            break;
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
}

#[test]
fn sigkill_at_twenty_moments_then_resume_always_ends_healthy_and_loses_nothing() {
    let mut killed_at = std::collections::BTreeSet::new();
    let mut results = vec![];
    // Progress lines come about one per commit; walk the kill point through them two at a time
    // (a loaded machine makes some land on the same commit, hence more tries than needed).
    for i in 0..44usize {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path();
        run_and_kill_after(store, 1 + i * 2, (i as u64 * 7) % 5);

        let st = drctl(store, &["status", "1", "-o", "json"]);
        assert!(st.status.success(), "kill #{i}: the run was reported started, so it is stored\n{}", text(&st));
        let before = history(store, "1");
        let last = before.last().unwrap().clone();
        let finished = json(&st)["status"] == "succeeded";

        let o = drctl(store, &["resume", "--sim-speed", "1000000"]);
        assert_eq!(o.status.code(), Some(0), "kill #{i}: resume failed\n{}", text(&o));
        let after = history(store, "1");
        // Nothing committed is ever lost: the history before the kill is a prefix of the end.
        assert!(after.len() >= before.len(), "kill #{i}: history shrank");
        assert_eq!(&after[..before.len()], &before[..], "kill #{i}: committed history changed");
        let status = sim_status(store);
        assert_eq!(status["healthy"], true, "kill #{i} at {last}: {status:#}");
        assert_eq!(json(&drctl(store, &["status", "1", "-o", "json"]))["status"], "succeeded");
        if !finished {
            killed_at.insert(last["seq"].as_u64().unwrap());
            results.push(format!("#{i}: killed after seq {} ({})", last["seq"], last["to"]));
        }
    }
    assert!(killed_at.len() >= 20, "only {} distinct kill points: {results:#?}", killed_at.len());
}

#[test]
fn a_second_terminal_sees_status_and_approves_through_the_running_process() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let log = dir.path().join("run.stderr");
    let mut child = spawn_logged(store, &["run", "restore-cluster-state", "--sim", "quorum-loss", "--sim-speed", "2000"], &log);
    let pid = child.id();

    // The run stops at its start gate; a second process asks the running one.
    eventually(Duration::from_secs(20), "the start gate", || {
        let o = drctl(store, &["status", "1", "-o", "json"]);
        (o.status.success() && json(&o)["status"] == "awaiting-approval").then_some(())
    });
    let o = drctl(store, &["status"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("awaiting-approval"), "{}", text(&o));

    // Nobody else may drive this store meanwhile, and the refusal names the holder.
    for args in [vec!["resume"], vec!["run", "etcd-backup", "--sim", "healthy"]] {
        let o = drctl(store, &args);
        assert_ne!(o.status.code(), Some(0), "{}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("drctl process {pid}")), "{}", text(&o));
    }

    let o = drctl(store, &["approve", "1", "--comment", "ticket OPS-1"]);
    assert!(o.status.success(), "{}", text(&o));
    let view = drctl(store, &["status", "1", "-o", "json"]);
    let gate = &json(&view)["gates"]["start"];
    assert_eq!(gate["decision"], "Approved", "{gate}");
    assert_eq!(gate["comment"], "ticket OPS-1");

    let status = eventually(Duration::from_secs(60), "the run to finish", || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(0));
    assert_eq!(sim_status(store)["healthy"], true);
    assert!(!store.join("control.sock").exists(), "control socket left behind");
    // The terminal that ran it showed the gate's question and commands that reach this store.
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(err.contains("Restore etcd from backup nightly on recovery host master-0?"), "{err}");
    assert!(err.contains(&format!("`drctl --store {} approve 1`", store.display())), "{err}");
}

#[test]
fn abort_at_the_gate_from_a_second_terminal_stops_the_run_without_touching_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let mut child = spawn(store, &["run", "restore-cluster-state", "--sim", "quorum-loss", "--sim-speed", "2000"]);
    eventually(Duration::from_secs(20), "the start gate", || {
        let o = drctl(store, &["status", "1", "-o", "json"]);
        (o.status.success() && json(&o)["status"] == "awaiting-approval").then_some(())
    });
    let o = drctl(store, &["abort", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let status = eventually(Duration::from_secs(30), "the run to stop", || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(5), "aborted runs exit 5");
    let fresh = drctl_sim::scenario::build("quorum-loss", 1).unwrap();
    assert_eq!(sim_status(store)["state_digest"], drctl_sim::state_digest(&fresh));
}

#[test]
fn a_host_out_of_ssh_reach_whose_etcd_answers_is_a_gate_not_a_skip() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let mut child = spawn(store, &["run", "restore-cluster-state", "--sim", "quorum-loss-partitioned", "--yes"]);
    let view = eventually(Duration::from_secs(30), "the unreachable-etcd gate", || {
        let o = drctl(store, &["status", "1", "-o", "json"]);
        let v = o.status.success().then(|| json(&o))?;
        (v["status"] == "awaiting-approval" && v["pending_gate"]["gate"] == "unreachable-etcd").then_some(v)
    });
    let gate = &view["pending_gate"];
    assert!(gate["prompt"].as_str().unwrap().contains("master-2"), "{gate}");
    let evidence = gate["evidence"].to_string();
    assert!(evidence.contains("etcd on master-2 (10.0.0.12)") && evidence.contains("RAFT NO LEADER"), "{evidence}");
    let o = drctl(store, &["reject", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let status = eventually(Duration::from_secs(30), "the run to stop", || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(5), "a rejected gate ends the run aborted");
    assert_eq!(json(&drctl(store, &["status", "1", "-o", "json"]))["status"], "aborted");
    let fresh = drctl_sim::scenario::build("quorum-loss-partitioned", 1).unwrap();
    assert_eq!(sim_status(store)["state_digest"], drctl_sim::state_digest(&fresh), "the world changed");
}

/// SIGTERM (or Ctrl-C) of a running `drctl run` says where the run stopped and how to continue,
/// exits non-zero, leaves no control socket; the resume completes the run.
#[test]
fn sigterm_says_where_the_run_stopped_and_resume_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let log = dir.path().join("run.stderr");
    let mut child = spawn_logged(store, &["run", "restore-cluster-state", "--sim", "quorum-loss", "--yes", "--sim-speed", "20"], &log);
    eventually(Duration::from_secs(30), "the run to be under way", || {
        let o = drctl(store, &["history", "1", "-o", "json"]);
        (o.status.success() && json(&o).as_array().is_some_and(|h| h.len() > 6)).then_some(())
    });
    // SAFETY: a plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = eventually(Duration::from_secs(30), "drctl to stop", || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(143), "SIGTERM exits 128+15");
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(err.contains("SIGTERM: run 1 (restore-cluster-state) stopped at"), "{err}");
    assert!(err.contains(&format!("`drctl --store {} resume 1`", store.display())), "{err}");
    assert!(!store.join("control.sock").exists(), "control socket left behind");

    // (Paced 20x while it ran; the resume needs no pacing.)
    let o = drctl(store, &["resume", "1", "--sim-speed", "1000000"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(sim_status(store)["healthy"], true);
}

/// A run whose process was killed at its gate is not mistaken for a live one: `status` says
/// nobody drives it and how to continue; an approval is recorded and said to take effect at
/// `resume`, which then completes the run.
#[test]
fn a_run_whose_process_died_at_its_gate_is_shown_as_not_driven() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let mut child = spawn(store, &["run", "restore-cluster-state", "--sim", "quorum-loss", "--sim-speed", "2000"]);
    let pid = child.id();
    let live = eventually(Duration::from_secs(20), "the start gate", || {
        let o = drctl(store, &["status", "1", "-o", "json"]);
        let v = o.status.success().then(|| json(&o))?;
        (v["status"] == "awaiting-approval").then_some(v)
    });
    assert_eq!(live["driver"], pid, "{live}");
    let o = drctl(store, &["status", "1"]);
    assert!(text(&o).contains(&format!("driven by:  drctl process {pid}")), "{}", text(&o));

    child.kill().unwrap();
    child.wait().unwrap();
    let o = drctl(store, &["status"]);
    let table = String::from_utf8_lossy(&o.stdout).to_string();
    let resume = format!("`drctl --store {} resume 1`", store.display());
    assert!(table.contains("NOT RUNNING: no drctl process drives it") && table.contains(&resume), "{table}");
    assert!(json(&drctl(store, &["status", "1", "-o", "json"]))["driver"].is_null());

    let o = drctl(store, &["approve", "1", "--comment", "ticket OPS-2"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.starts_with("run 1: gate 'start' approved by ") && out.contains("(\"ticket OPS-2\")"), "{out}");
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains("not driven by any drctl process") && err.contains("takes effect when it is resumed") && err.contains(&resume),
        "{err}"
    );
    let detail = text(&drctl(store, &["status", "1"]));
    assert!(detail.contains("gate:       start: approved by") && detail.contains("\"ticket OPS-2\""), "{detail}");

    let o = drctl(store, &["resume", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(sim_status(store)["healthy"], true);
}

/// `status --watch` follows a run from another terminal: it shows the run at its gate, again
/// after the approval, and returns once the run has ended.
#[test]
fn status_watch_follows_a_run_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let _run = spawn(store, &["run", "restore-cluster-state", "--sim", "quorum-loss", "--sim-speed", "2000"]);
    eventually(Duration::from_secs(20), "the start gate", || {
        let o = drctl(store, &["status", "1", "-o", "json"]);
        (o.status.success() && json(&o)["status"] == "awaiting-approval").then_some(())
    });
    let out = dir.path().join("watch.out");
    let mut watch = Reaped(
        command(store, &["status", "1", "--watch", "--interval", "1s"])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually(Duration::from_secs(10), "the watch to show the gate", || {
        std::fs::read_to_string(&out).unwrap().contains("awaiting-approval").then_some(())
    });
    assert!(drctl(store, &["approve", "1"]).status.success());
    let status = eventually(Duration::from_secs(90), "the watch to end with the run", || watch.try_wait().unwrap());
    assert_eq!(status.code(), Some(0));
    let shown = std::fs::read_to_string(&out).unwrap();
    let gate = shown.find("status:     awaiting-approval").expect("the gate was shown");
    let end = shown.rfind("status:     succeeded").expect("the end was shown");
    assert!(gate < end && shown.matches("run:        1").count() >= 3, "{shown}");
}

/// A simulated world that cannot be saved mid-run (here: a directory where its next version is
/// written) is waited out like an API outage: the run retries, changes nothing meanwhile, and
/// once the world can be saved again it ends healthy, never Failed.
#[test]
fn an_unsavable_world_is_waited_out_not_a_failed_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let mut child = spawn(store, &["run", "restore-cluster-state", "--sim", "quorum-loss", "--yes", "--sim-speed", "600"]);
    eventually(Duration::from_secs(30), "the run to be under way", || {
        let o = drctl(store, &["history", "1", "-o", "json"]);
        (o.status.success() && json(&o).as_array().is_some_and(|h| h.len() > 4)).then_some(())
    });
    let blocker = world_file(store).with_extension("tmp");
    // (Between a save's write and its rename the path is briefly a file: try again.)
    eventually(Duration::from_secs(10), "the blocker in place", || std::fs::create_dir(&blocker).ok());
    let view = eventually(Duration::from_secs(30), "the run to retry", || {
        let v = json(&drctl(store, &["status", "1", "-o", "json"]));
        (v["status"] == "retrying" && v["retry"]["last_error"].as_str().is_some_and(|e| e.contains("nothing was changed"))).then_some(v)
    });
    assert!(view["retry"]["last_error"].as_str().unwrap().contains("simulated world file"), "{view}");
    std::fs::remove_dir(&blocker).unwrap();
    let status = eventually(Duration::from_secs(120), "the run to finish", || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(0));
    assert_eq!(sim_status(store)["healthy"], true);
}
