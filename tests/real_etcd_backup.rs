//! `drctl run etcd-backup` through the real binary against the real-adapter stack: the kube mock
//! API (checking every request), a real sshd whose hosts are sandbox directories, and a real
//! 3-member etcd 3.4 that each host's `cluster-backup.sh` snapshots with the real etcdctl.
//! Plus: a halted real run resumed from its recorded target, and refusals before anything is
//! stored.
// Real software in real time: these tests measure and wait on the wall clock.
#![allow(clippy::disallowed_methods)]

mod real_common;
#[path = "../adapters/tests/support/mod.rs"]
mod support;

use real_common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use support::mockapi::{Expect, TOKEN};

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

fn one<'a>(names: &'a [String], prefix: &str, suffix: &str) -> &'a str {
    let m: Vec<&String> = names.iter().filter(|n| n.starts_with(prefix) && n.ends_with(suffix)).collect();
    assert_eq!(m.len(), 1, "exactly one {prefix}*{suffix} in {names:?}");
    m[0]
}

/// The backup set `name` in the backup root is complete and its snapshot verifies with the real
/// etcdctl; it was taken on exactly one host, `master-0`. Returns backup-info.json.
fn assert_backup_set(c: &RealCluster, name: &str, run: &str, min_keys: u64) -> Value {
    let set = c.backup_root.join(name);
    let names = files_in(&set);
    assert_eq!(names.len(), 3, "snapshot, resources, backup-info.json: {names:?}");
    let snap = one(&names, "snapshot_", ".db");
    let res = one(&names, "static_kuberesources_", ".tar.gz");
    assert!(names.iter().any(|n| n == "backup-info.json"), "{names:?}");

    // The copied snapshot, checked by the real etcdctl, is what the run verified and recorded.
    let info: Value = serde_json::from_slice(&std::fs::read(set.join("backup-info.json")).unwrap()).unwrap();
    let real = snapshot_status(&set.join(snap));
    let recorded = &info["snapshot"];
    assert_eq!(recorded["hash"], real["hash"], "{info:#} vs {real:#}");
    assert_eq!(recorded["revision"], real["revision"]);
    assert_eq!(recorded["total_key"], real["totalKey"]);
    assert_eq!(recorded["total_size"], real["totalSize"]);
    assert!(real["totalKey"].as_u64().unwrap() >= min_keys, "{real}");
    assert!(real["revision"].as_u64().unwrap() > min_keys, "{real}");
    assert_eq!(info["cluster_version"], CLUSTER_VERSION);
    assert_eq!(info["taken_on"], "master-0");
    assert_eq!(info["possibly_dirty"], false);

    // The resources archive holds the static pod manifests.
    let tar = std::process::Command::new("tar").arg("-tzf").arg(set.join(res)).output().unwrap();
    assert!(String::from_utf8_lossy(&tar.stdout).contains("manifests/etcd-pod.yaml"), "{}", String::from_utf8_lossy(&tar.stdout));

    // Taken on exactly one host, into the run's own private directory, byte-identical copies.
    let with_backup: Vec<&str> =
        c.sandboxes.iter().zip(HOSTS).filter(|(sb, _)| !sb.calls("backup").is_empty()).map(|(_, (n, _))| n).collect();
    assert_eq!(with_backup, ["master-0"], "backup taken on exactly one host");
    assert_eq!(c.sandboxes[0].calls("backup").len(), 1, "cluster-backup.sh ran once");
    let on_host = c.sandboxes[0].path(&format!("/home/core/assets/backup/drctl-{run}"));
    assert_eq!(std::fs::metadata(&on_host).unwrap().permissions().mode() & 0o777, 0o700);
    for f in [snap, res] {
        let host_sum = drctl_adapters::ssh::file_sha256(&on_host.join(f)).unwrap();
        assert_eq!(drctl_adapters::ssh::file_sha256(&set.join(f)).unwrap(), host_sum, "{f} copied intact");
    }
    info
}

/// The run's record names its target by paths and names: never the token or key material.
fn assert_labels_and_no_secrets(c: &RealCluster, store: &std::path::Path, run: &str) {
    let st = drctl(store, &["status", run, "-o", "json"]);
    assert!(st.status.success(), "{}", text(&st));
    let v = json_of(&st);
    let l = &v["labels"];
    assert_eq!(l["target"], "real", "{v:#}");
    assert_eq!(l["real.kubeconfig"], c.kubeconfig.display().to_string());
    assert_eq!(l["real.context"], "admin");
    assert_eq!(l["real.server"], c.mock.url());
    assert_eq!(l["real.hosts"], c.hosts_spec());
    assert_eq!(l["real.ssh_user"], support::sshd::user_name());
    assert_eq!(l["real.ssh_identity"], c.sshd.user_key.display().to_string());
    assert_eq!(l["real.backup_root"], c.backup_root.display().to_string());
    let history = drctl(store, &["history", run, "-o", "json"]);
    let key = std::fs::read_to_string(&c.sshd.user_key).unwrap();
    let key_line = key.lines().nth(1).unwrap();
    for (what, out) in [("status", &st.stdout), ("history", &history.stdout)] {
        let s = String::from_utf8_lossy(out);
        assert!(!s.contains(TOKEN), "{what} holds the bearer token");
        assert!(!s.contains(key_line), "{what} holds the private key");
    }
}

#[test]
fn etcd_backup_runs_end_to_end_through_kube_mock_real_sshd_and_real_etcd() {
    let t0 = std::time::Instant::now();
    let c = RealCluster::start();
    put_keys(&c.etcd.members[0].client_url(), 25);
    c.mock.expect_all([
        // The reachability probe, before the run is stored.
        Expect::get("/version").reply(200, version_info()),
        // CheckClusterAge, CheckOperators, SelectHost, RecordVersion.
        Expect::get(CV_PATH).reply(200, cluster_version()),
        Expect::get(CO_PATH).reply(200, cluster_operators(&[])),
        Expect::get(PODS_PATH).query(&[("labelSelector", "k8s-app=etcd")]).reply(200, etcd_pods()),
        Expect::get(CV_PATH).reply(200, cluster_version()),
    ]);
    let store = tempfile::tempdir().unwrap();
    let mut args = vec!["run".to_string(), "etcd-backup".into(), "--name".into(), "nightly".into()];
    args.extend(c.run_args());
    let o = drctl(store.path(), &strs(&args));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("succeeded") && out.contains("backup nightly"), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("answers (Kubernetes v1.28.6"), "{}", text(&o));
    c.mock.verify();
    let info = assert_backup_set(&c, "nightly", "1", 25);
    // The run's summary quotes the verified snapshot.
    assert!(out.contains(&format!("revision {}", info["snapshot"]["revision"])), "{out}");
    assert_labels_and_no_secrets(&c, store.path(), "1");
    eprintln!("end-to-end etcd-backup: {:?}", t0.elapsed());
}

#[test]
fn a_halted_real_run_resumes_against_the_target_it_recorded() {
    let c = RealCluster::start();
    put_keys(&c.etcd.members[0].client_url(), 10);
    c.mock.expect_all([
        Expect::get("/version").reply(200, version_info()),
        Expect::get(CV_PATH).reply(200, cluster_version()),
        Expect::get(CO_PATH).reply(200, cluster_operators(&["kube-apiserver"])),
    ]);
    let store = tempfile::tempdir().unwrap();
    let mut args = vec!["run".to_string(), "etcd-backup".into()];
    args.extend(c.run_args());
    let o = drctl(store.path(), &strs(&args));
    assert_eq!(o.status.code(), Some(3), "halts while operators progress\n{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("operators are progressing"), "{}", text(&o));
    c.mock.verify();
    assert!(c.sandboxes.iter().all(|sb| sb.calls("backup").is_empty()), "nothing taken yet");

    // The operators settle; `drctl resume 1` gets no target options: it rebuilds the target from
    // the run's labels (context `admin`, although the kubeconfig's current-context is `stale`),
    // without a new probe, and continues at CheckOperators.
    c.mock.expect_all([
        Expect::get(CO_PATH).reply(200, cluster_operators(&[])),
        Expect::get(PODS_PATH).query(&[("labelSelector", "k8s-app=etcd")]).reply(200, etcd_pods()),
        Expect::get(CV_PATH).reply(200, cluster_version()),
    ]);
    let o = drctl(store.path(), &["resume", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("resuming run 1 (etcd-backup) against"), "{}", text(&o));
    c.mock.verify();
    assert_backup_set(&c, "backup-1", "1", 10);
    assert_labels_and_no_secrets(&c, store.path(), "1");
}

#[test]
fn without_sim_or_a_reachable_cluster_it_fails_before_storing_anything() {
    let c_mock = support::mockapi::MockApi::start();
    let kubeconfig = c_mock.kubeconfig(); // current-context `stale`: a port nothing listens on
    let dir = tempfile::tempdir().unwrap();
    // An ssh config whose only host refuses connections.
    let dead = support::free_port();
    let ssh_config = dir.path().join("ssh_config");
    std::fs::write(
        &ssh_config,
        format!("Host dead-0\n  HostName 127.0.0.1\n  Port {dead}\n  BatchMode yes\n  StrictHostKeyChecking yes\n  UserKnownHostsFile /dev/null\n"),
    )
    .unwrap();
    let kc = kubeconfig.display().to_string();
    let sc = ssh_config.display().to_string();
    let root = dir.path().join("backups").display().to_string();
    let store = dir.path().join("store");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        // No --sim and no kubeconfig anywhere (HOME has none, KUBECONFIG unset).
        (vec!["run", "etcd-backup"], "--sim"),
        (vec!["run", "etcd-backup"], "--kubeconfig"),
        // Neither the API nor any host answers.
        (
            vec![
                "run",
                "etcd-backup",
                "--kubeconfig",
                &kc,
                "--ssh-user",
                "core",
                "--ssh-config",
                &sc,
                "--hosts",
                "master-0=dead-0",
                "--backup-root",
                &root,
            ],
            "the cluster is not reachable",
        ),
        // Incomplete or contradictory options.
        (vec!["run", "etcd-backup", "--kubeconfig", &kc, "--ssh-user", "core", "--backup-root", &root], "--hosts"),
        (vec!["run", "etcd-backup", "--kubeconfig", &kc, "--hosts", "master-0=dead-0", "--backup-root", &root], "--ssh-user"),
        (vec!["run", "etcd-backup", "--kubeconfig", &kc, "--ssh-user", "core", "--hosts", "master-0=dead-0"], "--backup-root"),
        (
            vec![
                "run",
                "etcd-backup",
                "--kubeconfig",
                &kc,
                "--context",
                "nope",
                "--ssh-user",
                "core",
                "--hosts",
                "m=h",
                "--backup-root",
                &root,
            ],
            "no context \"nope\"",
        ),
        (vec!["run", "etcd-backup", "--kubeconfig", "/nonexistent/kubeconfig"], "does not exist"),
        (
            vec!["run", "etcd-backup", "--kubeconfig", &kc, "--ssh-user", "core", "--hosts", "master-0", "--backup-root", &root],
            "NAME=ADDRESS",
        ),
        (vec!["run", "etcd-backup", "--sim", "healthy", "--kubeconfig", &kc], "--sim runs against the simulator"),
        (
            vec!["run", "restore-cluster-state", "--kubeconfig", &kc, "--ssh-user", "core", "--hosts", "m=h", "--backup-root", &root],
            "--backup is required",
        ),
    ];
    for (args, want) in cases {
        let t = std::time::Instant::now();
        let o = drctl(&store, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}\n{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{args:?}: message should say '{want}'\n{}", text(&o));
        assert!(t.elapsed() < std::time::Duration::from_secs(30), "{args:?} took {:?}", t.elapsed());
        assert!(!store.exists(), "{args:?} created the store");
        assert!(!dir.path().join("backups").exists(), "{args:?} created the backup root");
    }
    c_mock.verify();
}

#[test]
fn sshd_down_mid_run_is_retried_and_the_run_completes_once_it_is_back() {
    let mut c = RealCluster::start();
    put_keys(&c.etcd.members[0].client_url(), 10);
    c.mock.expect_all([
        Expect::get("/version").reply(200, version_info()),
        Expect::get(CV_PATH).reply(200, cluster_version()),
        Expect::get(CO_PATH).reply(200, cluster_operators(&["machine-config"])),
    ]);
    let store = tempfile::tempdir().unwrap();
    let mut args = vec!["run".to_string(), "etcd-backup".into()];
    args.extend(c.run_args());
    let o = drctl(store.path(), &strs(&args));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));

    // Every host's sshd goes away; the run is resumed and must wait, not fail.
    c.sshd.kill();
    c.mock.expect_all([
        Expect::get(CO_PATH).reply(200, cluster_operators(&[])),
        // SelectHost lists the etcd pods on every try.
        Expect::get(PODS_PATH).query(&[("labelSelector", "k8s-app=etcd")]).reply(200, etcd_pods()).repeated(),
        Expect::get(CV_PATH).reply(200, cluster_version()),
    ]);
    let home = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(bin())
        .arg("--store")
        .arg(store.path())
        .args(["resume", "1"])
        .env_remove("DRCTL_STORE")
        .env_remove("KUBECONFIG")
        .env("HOME", home.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let retrying = loop {
        let st = drctl(store.path(), &["status", "1", "-o", "json"]);
        if st.status.success() {
            let v = json_of(&st);
            if v["status"] == "retrying" && v["retry"]["last_error"].as_str().is_some_and(|e| e.contains("SSH")) {
                break v;
            }
        }
        assert!(std::time::Instant::now() < deadline, "the run never reported retrying on SSH: {}", text(&st));
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    eprintln!("while sshd is down: {} {}", retrying["state_name"], retrying["retry"]["last_error"]);
    c.sshd.restart();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    c.mock.verify();
    assert_backup_set(&c, "backup-1", "1", 10);
    let h = drctl(store.path(), &["history", "1", "-o", "json"]);
    let retries: Vec<Value> = json_of(&h)
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "Retry" && e["detail"].as_str().unwrap_or("").contains("no healthy control-plane host answers SSH"))
        .cloned()
        .collect();
    assert!(!retries.is_empty(), "no SSH retry recorded: {}", text(&h));
}
