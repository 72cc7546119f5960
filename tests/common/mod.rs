//! Helpers for driving the real `drctl` binary in tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_drctl"))
}

/// `drctl --store STORE ARGS…`, with no stdin and no store from the environment.
pub fn command(store: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("--store").arg(store).args(args).env_remove("DRCTL_STORE").stdin(Stdio::null());
    // No trace export unless a test asks for it.
    for var in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] {
        c.env_remove(var);
    }
    c
}

pub fn drctl(store: &Path, args: &[&str]) -> Output {
    command(store, args).output().expect("drctl runs")
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", text(o)))
}

pub fn history(store: &Path, run: &str) -> Vec<serde_json::Value> {
    let o = drctl(store, &["history", run, "-o", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    json(&o).as_array().expect("history is a list").clone()
}

pub fn sim_status(store: &Path) -> serde_json::Value {
    let o = drctl(store, &["sim", "status", "-o", "json"]);
    json(&o)
}

/// The one simulated world file of a store.
pub fn world_file(store: &Path) -> PathBuf {
    let mut worlds: Vec<PathBuf> = std::fs::read_dir(store.join("sim"))
        .expect("sim dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "world"))
        .collect();
    assert_eq!(worlds.len(), 1, "expected one world in {}", store.display());
    worlds.pop().unwrap()
}

/// Start `drctl --store STORE ARGS…` and read its stderr until it waits at a gate (it prints
/// how to approve): the running child, and what it showed up to there. The rest of its stderr
/// is drained in the background.
pub fn run_to_gate(store: &Path, args: &[&str]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut run = command(store, args).stderr(Stdio::piped()).spawn().expect("drctl runs");
    let mut lines = BufReader::new(run.stderr.take().expect("piped")).lines();
    let mut shown = String::new();
    while !shown.contains(" approve: ") {
        match lines.next() {
            Some(line) => shown.push_str(&(line.expect("utf-8 stderr") + "\n")),
            None => panic!("the run ended before its gate:\n{shown}"),
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    (run, shown)
}

/// A persistent simulated cluster served over the real protocols (`drctl sim serve`), stopped
/// (SIGINT, the world kept) when dropped.
pub struct Served {
    child: std::process::Child,
    /// The `--kubeconfig` path it printed.
    pub kubeconfig: String,
}

impl Served {
    /// `drctl sim serve WORLD --speed SPEED --for 10m`, once it printed its options.
    pub fn start(store: &Path, world: &str, speed: &str) -> Served {
        use std::io::{BufRead, BufReader};
        let mut child = command(store, &["sim", "serve", world, "--speed", speed, "--for", "10m"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("drctl sim serve starts");
        let mut flags = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut flags).expect("serve prints its options");
        let words: Vec<&str> = flags.split_whitespace().collect();
        let at = words.iter().position(|f| *f == "--kubeconfig").unwrap_or_else(|| panic!("serve printed no --kubeconfig: {flags}"));
        Served { kubeconfig: words[at + 1].to_string(), child }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let _ = self.child.wait();
    }
}

/// Start `drctl ARGS…` and kill it (SIGKILL) as soon as a line of its stderr contains `until`:
/// what it said until then.
pub fn kill_when_it_says(store: &Path, args: &[&str], until: &str) -> String {
    use std::io::{BufRead, BufReader};
    let mut run = command(store, args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("drctl runs");
    let mut said = String::new();
    for line in BufReader::new(run.stderr.take().expect("piped")).lines() {
        let line = line.expect("stderr is text");
        said.push_str(&line);
        said.push('\n');
        if line.contains(until) {
            break;
        }
    }
    run.kill().expect("kill the runner");
    run.wait().expect("reap the runner");
    said
}
