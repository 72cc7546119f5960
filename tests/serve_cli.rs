//! The practice range from the command line: `drctl sim new`, `drctl sim serve`, and a run of
//! the production path (`drctl run … --kubeconfig … --hosts … --ssh-config …`) against the
//! served simulated cluster.

#![allow(clippy::disallowed_methods)] // waits for another process in real time

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DRCTL: &str = env!("CARGO_BIN_EXE_drctl");

fn drctl(store: &Path, args: &[&str]) -> std::process::Output {
    Command::new(DRCTL).arg("--store").arg(store).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.path().is_dir() {
            true => out.extend(walk(&e.path())),
            false => out.push(e.path()),
        }
    }
    out
}

#[test]
fn a_served_world_takes_a_backup_through_the_real_adapters() {
    assert!(Path::new(drctl_twin::sshd::SSHD).exists(), "{} is missing: scripts/install-test-deps.sh installs it", drctl_twin::sshd::SSHD);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let out = drctl(&store, &["sim", "new", "healthy", "--name", "lab", "--seed", "3"]);
    assert!(out.status.success(), "sim new: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "lab");

    // Bad input is refused with a clear message and changes nothing.
    let again = drctl(&store, &["sim", "new", "healthy", "--name", "lab"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("exists already"), "{}", text(&again.stderr));
    let bogus = drctl(&store, &["sim", "new", "no-such-scenario"]);
    assert_eq!(bogus.status.code(), Some(1));
    assert!(text(&bogus.stderr).contains("unknown scenario"), "{}", text(&bogus.stderr));
    let missing = drctl(&store, &["sim", "serve", "nothing"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no simulated cluster named nothing"), "{}", text(&missing.stderr));
    let bad_name = drctl(&store, &["sim", "new", "healthy", "--name", "../x"]);
    assert_eq!(bad_name.status.code(), Some(1));

    let mut serve = Command::new(DRCTL)
        .arg("--store")
        .arg(&store)
        .args(["sim", "serve", "lab", "--speed", "10", "--for", "5m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut flags = String::new();
    BufReader::new(serve.stdout.take().unwrap()).read_line(&mut flags).unwrap();
    let flags: Vec<&str> = flags.split_whitespace().collect();
    assert!(flags.contains(&"--kubeconfig") && flags.contains(&"--ssh-config"), "serve printed {flags:?}");

    let runs = dir.path().join("runs");
    let mut args = vec!["run", "etcd-backup"];
    args.extend(&flags);
    args.push("--yes");
    let out = drctl(&runs, &args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "the backup through the served world failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("succeeded"), "{stdout}");
    assert!(stderr.contains("answers (Kubernetes"), "the run probed the served API: {stderr}");

    // A restore on this healthy cluster halts at its first guard (the API answers). If its
    // kubeconfig is then damaged, `resume` names the file and its fault, never its contents.
    let mut args = vec!["run", "restore-cluster-state", "--backup", "backup-1"];
    args.extend(&flags);
    args.push("--yes");
    let halted = drctl(&runs, &args);
    assert_eq!(halted.status.code(), Some(3), "{}\n{}", text(&halted.stdout), text(&halted.stderr));
    let kubeconfig = flags[flags.iter().position(|f| *f == "--kubeconfig").unwrap() + 1];
    let good = std::fs::read(kubeconfig).unwrap();
    const PLANTED: &str = "UExBTlRFRC1mYWtlLWtleS1kcmN0bC0xMjM0NQ";
    std::fs::write(kubeconfig, format!("apiVersion: v1\nusers:\n- name: u\n  user:\n    client-key-data: [\"{PLANTED}\"]\n")).unwrap();
    let resumed = drctl(&runs, &["resume", "2"]);
    let said = format!("{}{}", text(&resumed.stdout), text(&resumed.stderr));
    assert_eq!(resumed.status.code(), Some(1), "{said}");
    assert!(said.contains(kubeconfig) && !said.contains(PLANTED), "{said}");
    for f in walk(&runs) {
        assert!(!String::from_utf8_lossy(&std::fs::read(&f).unwrap()).contains(PLANTED), "the key is in {}", f.display());
    }
    std::fs::write(kubeconfig, good).unwrap();

    // While it is served, a direct run on it is refused: two writers would lose changes.
    let both = drctl(&store, &["run", "etcd-backup", "--sim-world", "lab", "--yes"]);
    assert_eq!(both.status.code(), Some(1), "{}", text(&both.stderr));
    assert!(text(&both.stderr).contains("is being served"), "{}", text(&both.stderr));

    // The hosts received the runbook's backup command (OpenShift Container Platform 4.14 Backup
    // and restore §5.1.1 step 3) through sshd.
    let log = std::fs::read_to_string(store.join("sim/practice/lab.served/commands.jsonl")).unwrap();
    assert!(log.contains("/usr/local/bin/cluster-backup.sh"), "{log}");

    // Ctrl-C stops serving, keeps the world, and the run's backup is in it.
    unsafe {
        libc::kill(serve.id() as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = serve.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "sim serve did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("stopped serving lab") && err.contains("healthy"), "{err}");
    let worlds = drctl(&store, &["-o", "json", "sim", "worlds"]);
    let listed: serde_json::Value = serde_json::from_slice(&worlds.stdout).unwrap();
    assert_eq!(listed[0]["name"], "lab");
    // The served world follows the wall clock: it is no longer at its scenario's start.
    assert!(listed[0]["time"].as_str().unwrap() > "2026-01-05T10", "{listed}");
    // Practise the next step on the same cluster: break it. A wrong host changes nothing.
    let wrong = drctl(&store, &["sim", "break", "lab", "--power-off", "master-1,master-9"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(text(&wrong.stderr).contains("no host master-9"), "{}", text(&wrong.stderr));
    let unchanged: serde_json::Value = serde_json::from_slice(&drctl(&store, &["-o", "json", "sim", "worlds"]).stdout).unwrap();
    assert_eq!(unchanged[0]["healthy"], true, "a refused break changed the world: {unchanged}");
    let broke = drctl(&store, &["sim", "break", "lab", "--power-off", "master-1,master-2"]);
    assert!(broke.status.success(), "{}", text(&broke.stderr));
    assert!(text(&broke.stderr).contains("not healthy"), "{}", text(&broke.stderr));
    let broken: serde_json::Value = serde_json::from_slice(&drctl(&store, &["-o", "json", "sim", "worlds"]).stdout).unwrap();
    assert_eq!(broken[0]["healthy"], false, "{broken}");

    // No sshd of the world is left behind.
    let ssh_dir = store.join("sim/practice/lab.served/ssh");
    for pid_file in std::fs::read_dir(&ssh_dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".pid")) {
        let pid: i32 = std::fs::read_to_string(pid_file.path()).unwrap().trim().parse().unwrap();
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "sshd {pid} of the served world still runs");
    }
}

/// The practice range on the direct ports: back up a cluster, break it, restore it from that very
/// backup — one persistent world through three commands.
#[test]
fn a_practice_world_is_backed_up_broken_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    assert!(drctl(&store, &["sim", "new", "healthy", "--name", "range"]).status.success());
    let backup = drctl(&store, &["run", "etcd-backup", "--sim-world", "range", "--yes"]);
    assert_eq!(backup.status.code(), Some(0), "{}", text(&backup.stderr));
    assert!(text(&backup.stdout).contains("backup backup-1"), "{}", text(&backup.stdout));
    let broke = drctl(&store, &["sim", "break", "range", "--power-off", "master-1,master-2"]);
    assert!(broke.status.success(), "{}", text(&broke.stderr));
    let restore = drctl(&store, &["run", "restore-cluster-state", "--sim-world", "range", "--backup", "backup-1", "--yes"]);
    assert_eq!(restore.status.code(), Some(0), "{}\n{}", text(&restore.stdout), text(&restore.stderr));
    assert!(text(&restore.stdout).contains("restored from backup backup-1"), "{}", text(&restore.stdout));
    let worlds: serde_json::Value = serde_json::from_slice(&drctl(&store, &["-o", "json", "sim", "worlds"]).stdout).unwrap();
    assert_eq!(worlds[0]["healthy"], true, "{worlds}");
    // A world that does not exist is a clear error, before anything is stored.
    let none = drctl(&store, &["run", "etcd-backup", "--sim-world", "nowhere", "--yes"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(text(&none.stderr).contains("no simulated cluster named nowhere"), "{}", text(&none.stderr));
}
