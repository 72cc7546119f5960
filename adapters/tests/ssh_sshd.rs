//! The SSH adapter against a real sshd on 127.0.0.1. Each simulated host is a sandbox
//! directory reached through its own `Host` alias: manifests and data dirs really move on disk.
// Real software in real time: these tests wait on the wall clock.
#![allow(clippy::disallowed_methods)]

mod support;

use drctl_adapters::blocking::Blocking;
use drctl_adapters::ssh::{HostLayout, SshHost, SshHosts, SshOptions};
use drctl_adapters::DirBackupStore;
use drctl_workflows::ports::{BackupInfo, BackupStore, HostOp, HostOutput, Hosts, PortError, SnapshotStatus, StaticPod};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::sandbox::Sandbox;
use support::sshd::Sshd;

struct World {
    sshd: Sshd,
    hosts: Arc<SshHosts>,
    boxes: Vec<Sandbox>,
    backups: tempfile::TempDir,
    _roots: tempfile::TempDir,
}

const NAMES: [&str; 3] = ["master-0", "master-1", "master-2"];

fn world() -> World {
    let sshd = Sshd::start(&NAMES);
    let roots = tempfile::Builder::new().prefix("drctl-hosts").tempdir().unwrap();
    let backups = tempfile::Builder::new().prefix("drctl-backups").tempdir().unwrap();
    let mut boxes = Vec::new();
    let mut hosts = Vec::new();
    for (i, n) in NAMES.iter().enumerate() {
        let sb = Sandbox::create(&roots.path().join(format!("sandbox-{n}")), &format!("ip-10-0-0-{i}"));
        hosts.push(
            SshHost::new(*n, format!("ip-10-0-0-{i}"), format!("10.0.0.{i}"), *n)
                .with_layout(HostLayout::sandbox(sb.root.display().to_string())),
        );
        boxes.push(sb);
    }
    let opts = SshOptions {
        config_file: Some(sshd.client_config.clone()),
        connect_timeout: Duration::from_secs(5),
        server_alive_interval: Duration::from_secs(1),
        ..SshOptions::default()
    };
    let rt = Blocking::dedicated("ssh-test").unwrap();
    let hosts = Arc::new(SshHosts::new(rt, opts, hosts, backups.path()).unwrap());
    World { sshd, hosts, boxes, backups, _roots: roots }
}

fn moved(b: bool) -> HostOutput {
    HostOutput::Moved { moved: b }
}

#[test]
fn static_pods_and_the_etcd_data_dir_really_move_and_moves_are_idempotent() {
    let w = world();
    let h = &*w.hosts;
    let sb = &w.boxes[1];
    h.connect("master-1").unwrap();
    assert_eq!(h.run("master-1", &HostOp::ManifestPresent(StaticPod::Etcd)).unwrap(), HostOutput::Present(true));
    assert_eq!(h.run("master-1", &HostOp::RunningContainers { name: "etcd".into() }).unwrap(), HostOutput::Names(vec!["etcd".into()]));

    assert_eq!(h.run("master-1", &HostOp::MoveManifestOut(StaticPod::Etcd)).unwrap(), moved(true));
    assert!(!sb.path("/etc/kubernetes/manifests/etcd-pod.yaml").exists());
    assert!(sb.path("/tmp/etcd-pod.yaml").exists());
    // A re-run after a crash: already done.
    assert_eq!(h.run("master-1", &HostOp::MoveManifestOut(StaticPod::Etcd)).unwrap(), moved(false));
    assert_eq!(h.run("master-1", &HostOp::ManifestPresent(StaticPod::Etcd)).unwrap(), HostOutput::Present(false));
    // The "kubelet" stopped the container: the runbook's check comes back empty.
    assert_eq!(h.run("master-1", &HostOp::RunningContainers { name: "etcd".into() }).unwrap(), HostOutput::Names(vec![]));
    assert_eq!(
        h.run("master-1", &HostOp::RunningContainers { name: "kube-apiserver".into() }).unwrap(),
        HostOutput::Names(vec!["kube-apiserver".into()])
    );

    assert_eq!(h.run("master-1", &HostOp::MoveEtcdDataDirAside).unwrap(), moved(true));
    assert!(!sb.path("/var/lib/etcd").exists());
    assert_eq!(std::fs::read(sb.path("/tmp/etcd/member/snap/db")).unwrap(), b"etcd bolt db of ");
    assert_eq!(h.run("master-1", &HostOp::MoveEtcdDataDirAside).unwrap(), moved(false));

    assert_eq!(h.run("master-1", &HostOp::MoveManifestIn(StaticPod::Etcd)).unwrap(), moved(true));
    assert!(sb.path("/etc/kubernetes/manifests/etcd-pod.yaml").exists());
    assert_eq!(h.run("master-1", &HostOp::MoveManifestIn(StaticPod::Etcd)).unwrap(), moved(false));

    // keepalived.yaml is on neither side: the move cannot be done, and says so.
    let e = h.run("master-1", &HostOp::MoveManifestOut(StaticPod::Keepalived)).unwrap_err();
    assert!(matches!(&e, PortError::NotFound(m) if m.contains("keepalived.yaml")), "{e:?}");
    // The other hosts were not touched.
    assert!(w.boxes[0].path("/etc/kubernetes/manifests/etcd-pod.yaml").exists());
    assert!(w.boxes[0].path("/var/lib/etcd/member").exists());
}

#[test]
fn host_operations_run_the_tools_and_parse_their_output() {
    let w = world();
    let h = &*w.hosts;
    let sb = &w.boxes[0];
    let addrs = h.run("master-0", &HostOp::ListAddresses).unwrap();
    assert_eq!(addrs, HostOutput::Addresses(vec![("192.168.111.20".into(), "br-ex".into()), ("192.168.111.5".into(), "br-ex".into())]));
    let del = HostOp::RemoveAddress { address: "192.168.111.5".into(), device: "br-ex".into() };
    assert_eq!(h.run("master-0", &del).unwrap(), HostOutput::Done);
    assert_eq!(h.run("master-0", &del).unwrap(), HostOutput::Done, "removing a removed VIP is done");
    assert_eq!(h.run("master-0", &HostOp::ListAddresses).unwrap(), HostOutput::Addresses(vec![("192.168.111.20".into(), "br-ex".into())]));
    assert_eq!(sb.calls("ip").iter().filter(|c| c.starts_with("address del")).count(), 1);

    assert_eq!(h.run("master-0", &HostOp::RemoveKubeletPki).unwrap(), HostOutput::Done);
    let left: Vec<String> =
        std::fs::read_dir(sb.path("/var/lib/kubelet/pki")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(left, vec!["README".to_string()], "every *.pem (symlink too) gone, nothing else");
    assert_eq!(h.run("master-0", &HostOp::RemoveKubeletPki).unwrap(), HostOutput::Done);
    assert_eq!(h.run("master-0", &HostOp::RemoveOvnDatabases).unwrap(), HostOutput::Done);
    assert_eq!(std::fs::read_dir(sb.path("/var/lib/ovn/etc")).unwrap().count(), 0);

    assert_eq!(h.run("master-0", &HostOp::RestartKubelet).unwrap(), HostOutput::Done);
    assert_eq!(sb.calls("systemctl"), vec!["restart kubelet.service"]);
    std::fs::write(sb.path("/state/kubelet-broken"), "").unwrap();
    let e = h.run("master-0", &HostOp::RestartKubelet).unwrap_err();
    assert!(matches!(&e, PortError::Permanent(m) if m.contains("Unit kubelet.service not found") && m.contains("exit status 5")), "{e:?}");

    assert_eq!(h.run("master-0", &HostOp::ReleaseVersion).unwrap(), HostOutput::Version("4.15.3".into()));

    let dir = "/home/core/assets/backup";
    assert_eq!(h.run("master-0", &HostOp::ListDir { dir: dir.into() }).unwrap(), HostOutput::Names(vec![]));
    assert_eq!(h.run("master-0", &HostOp::MakePrivateDir { dir: dir.into() }).unwrap(), HostOutput::Done);
    let mode = std::fs::metadata(sb.path(dir)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    // File names in `dir`, as the procedure (and the simulator) use them.
    let HostOutput::Backup { snapshot, resources } = h.run("master-0", &HostOp::RunBackup { dir: dir.into() }).unwrap() else { panic!() };
    assert!(snapshot.starts_with("snapshot_") && snapshot.ends_with(".db"), "{snapshot}");
    assert!(resources.starts_with("static_kuberesources_") && resources.ends_with(".tar.gz"), "{resources}");
    let (snapshot, resources) = (format!("{dir}/{snapshot}"), format!("{dir}/{resources}"));
    assert!(sb.path(&snapshot).exists() && sb.path(&resources).exists());
    let HostOutput::Names(names) = h.run("master-0", &HostOp::ListDir { dir: dir.into() }).unwrap() else { panic!() };
    assert_eq!(names.len(), 2);

    // Not an etcd snapshot: etcdctl (the real one) says so, and that is permanent.
    let e = h.run("master-0", &HostOp::SnapshotStatus { path: snapshot.clone() }).unwrap_err();
    assert!(matches!(e, PortError::Permanent(_)), "{e:?}");
    let e = h.run("master-0", &HostOp::SnapshotStatus { path: "/home/core/assets/backup/nope.db".into() }).unwrap_err();
    assert!(matches!(e, PortError::NotFound(_)), "{e:?}");

    let restore = HostOp::RunRestore { dir: dir.into(), fence: "drctl-run1-restore".into() };
    assert_eq!(h.run("master-0", &restore).unwrap(), HostOutput::Done);
    assert_eq!(sb.calls("restore"), vec![sb.path(dir).display().to_string()]);
    assert!(sb.path("/var/lib/drctl/fences/drctl-run1-restore").exists());
    // Fenced: the same token again (a re-run after a crash) does not restore a second time.
    assert_eq!(h.run("master-0", &restore).unwrap(), HostOutput::Done);
    assert_eq!(sb.calls("restore").len(), 1);
    assert_eq!(h.run("master-0", &HostOp::RunRestore { dir: dir.into(), fence: "drctl-run2-restore".into() }).unwrap(), HostOutput::Done);
    assert_eq!(sb.calls("restore").len(), 2);
    assert_eq!(h.run("master-0", &HostOp::Shutdown { minutes: 1 }).unwrap(), HostOutput::Done);
    assert_eq!(sb.calls("shutdown"), vec!["-h 1"]);

    let refs = h.control_plane_hosts().unwrap();
    assert_eq!(refs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), NAMES);
    assert_eq!(refs[2].node, "ip-10-0-0-2");
    assert!(matches!(h.run("master-9", &HostOp::ListAddresses), Err(PortError::Permanent(_))));
}

#[test]
fn paths_with_spaces_quotes_and_command_substitution_stay_literal() {
    let w = world();
    let h = &*w.hosts;
    let sb = &w.boxes[2];
    let canary = sb.path("/tmp/pwned");
    let evil = format!("/home/core/it's a \"dir\" $(touch {c}) `touch {c}`; touch {c} *", c = canary.display());
    assert_eq!(h.run("master-2", &HostOp::MakePrivateDir { dir: evil.clone() }).unwrap(), HostOutput::Done);
    assert!(sb.path(&evil).is_dir(), "the directory has exactly the odd name");
    std::fs::write(sb.path(&evil).join("a file; $(id)"), "x").unwrap();
    assert_eq!(h.run("master-2", &HostOp::ListDir { dir: evil.clone() }).unwrap(), HostOutput::Names(vec!["a file; $(id)".into()]));
    let e = h.run("master-2", &HostOp::RunningContainers { name: format!("etcd$(touch {})", canary.display()) }).unwrap();
    assert_eq!(e, HostOutput::Names(vec![]));
    assert!(!canary.exists(), "nothing was executed");
}

#[test]
fn backups_copy_to_and_from_hosts_idempotently() {
    let w = world();
    let h = &*w.hosts;
    let sb = &w.boxes[0];
    let dir = "/home/core/assets/backup";
    let HostOutput::Backup { snapshot, resources } = h.run("master-0", &HostOp::RunBackup { dir: dir.into() }).unwrap() else { panic!() };
    let (snapshot, resources) = (format!("{dir}/{snapshot}"), format!("{dir}/{resources}"));
    let info = BackupInfo {
        cluster_version: "4.15.3".into(),
        snapshot: SnapshotStatus { hash: 3866667823, revision: 31407, total_key: 12828, total_size: 4096 },
        taken_on: "master-0".into(),
        possibly_dirty: false,
    };
    let files = vec![snapshot.clone(), resources.clone()];
    h.copy_backup_from_host("master-0", &files, "b1", &info).unwrap();
    let store = DirBackupStore::new(w.backups.path());
    let names = store.list("b1").unwrap();
    let base = |p: &str| p.rsplit('/').next().unwrap().to_string();
    let mut want = vec![base(&snapshot), base(&resources), "backup-info.json".to_string()];
    want.sort();
    assert_eq!(names, want);
    assert_eq!(store.info("b1").unwrap(), Some(info.clone()));
    assert_eq!(std::fs::read(w.backups.path().join("b1").join(base(&snapshot))).unwrap(), std::fs::read(sb.path(&snapshot)).unwrap());
    // Again (a re-run): nothing changes.
    h.copy_backup_from_host("master-0", &files, "b1", &info).unwrap();
    assert_eq!(store.list("b1").unwrap(), want);
    assert!(matches!(store.list("b2"), Err(PortError::NotFound(_))));
    assert_eq!(store.info("b2").unwrap(), None);
    let e = h.copy_backup_from_host("master-0", &["/home/core/assets/backup/gone.db".into()], "b3", &info).unwrap_err();
    assert!(matches!(e, PortError::NotFound(_)), "{e:?}");

    // To the recovery host, as the restore procedure copies it.
    let dest = "/home/core/restore with space";
    h.copy_backup_to_host("b1", "master-2", dest).unwrap();
    let target = w.boxes[2].path(dest);
    assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o700);
    let mut on_host: Vec<String> = std::fs::read_dir(&target).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    on_host.sort();
    assert_eq!(on_host, vec![base(&snapshot), base(&resources)]);
    assert_eq!(std::fs::read(target.join(base(&resources))).unwrap(), std::fs::read(sb.path(&resources)).unwrap());
    let before = std::fs::metadata(target.join(base(&snapshot))).unwrap().modified().unwrap();
    h.copy_backup_to_host("b1", "master-2", dest).unwrap();
    assert_eq!(std::fs::metadata(target.join(base(&snapshot))).unwrap().modified().unwrap(), before, "already there: not copied again");
    assert!(matches!(h.copy_backup_to_host("nope", "master-2", dest), Err(PortError::NotFound(_))));
}

#[test]
fn sshd_killed_between_operations_reconnects_and_retries() {
    let mut w = world();
    let h = w.hosts.clone();
    assert_eq!(h.run("master-0", &HostOp::ManifestPresent(StaticPod::Etcd)).unwrap(), HostOutput::Present(true));

    // The host goes away: connecting is transient, not a failure.
    w.sshd.kill();
    let e = h.run("master-0", &HostOp::ManifestPresent(StaticPod::Etcd)).unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert!(h.connect("master-0").unwrap_err().is_transient());

    // It comes back: the next call makes a new session and succeeds on the first try.
    w.sshd.restart();
    assert_eq!(h.run("master-0", &HostOp::MoveManifestOut(StaticPod::Etcd)).unwrap(), moved(true));

    // Killed again while the cached session looks fine: the dead session is noticed and replaced.
    w.sshd.restart();
    assert_eq!(h.run("master-0", &HostOp::MoveManifestOut(StaticPod::Etcd)).unwrap(), moved(false));
    assert!(w.boxes[0].path("/tmp/etcd-pod.yaml").exists());
}

#[test]
fn a_connection_dropped_during_a_slow_idempotent_operation_is_retried_on_a_new_one() {
    let mut w = world();
    let h = w.hosts.clone();
    let sb = &w.boxes[0];
    h.connect("master-0").unwrap();
    sb.set_slow(Some(1.5));
    let sshd = &mut w.sshd;
    let result = std::thread::scope(|s| {
        let op = s.spawn(|| h.run("master-0", &HostOp::RunningContainers { name: "etcd".into() }));
        // Wait (bounded) until crictl is running on the host, then cut the connection under it.
        support::eventually(100, Duration::from_millis(20), || (!sb.calls("crictl").is_empty()).then_some(())).unwrap();
        sshd.drop_connections();
        op.join().unwrap()
    });
    sb.set_slow(None);
    // One call: the adapter noticed the lost connection, reconnected and ran crictl again.
    assert_eq!(result.unwrap(), HostOutput::Names(vec!["etcd".into()]));
    assert_eq!(sb.calls("crictl").len(), 2, "the interrupted crictl ran again: {:?}", sb.calls("crictl"));
}

#[test]
fn sshd_down_during_a_slow_operation_is_transient_until_it_is_back() {
    let mut w = world();
    let h = w.hosts.clone();
    let sb = &w.boxes[0];
    h.connect("master-0").unwrap();
    sb.set_slow(Some(1.5));
    let sshd = &mut w.sshd;
    let started = Instant::now();
    let first = std::thread::scope(|s| {
        let op = s.spawn(|| h.run("master-0", &HostOp::RunningContainers { name: "etcd".into() }));
        support::eventually(100, Duration::from_millis(20), || (!sb.calls("crictl").is_empty()).then_some(())).unwrap();
        sshd.kill();
        let r = op.join().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        sshd.restart();
        r
    });
    sb.set_slow(None);
    // The host was down when the adapter tried again: transient, for the engine to retry.
    let e = first.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    // The engine's retry (here: a bounded loop) completes it once sshd is back.
    let out =
        support::eventually(20, Duration::from_millis(250), || h.run("master-0", &HostOp::RunningContainers { name: "etcd".into() }).ok())
            .expect("the operation completes once sshd is back");
    assert_eq!(out, HostOutput::Names(vec!["etcd".into()]));
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_non_idempotent_operation_is_not_retried_after_the_connection_drops() {
    let mut w = world();
    let h = w.hosts.clone();
    let sb = &w.boxes[0];
    h.connect("master-0").unwrap();
    sb.set_slow(Some(1.5));
    let sshd = &mut w.sshd;
    let result = std::thread::scope(|s| {
        let op = s.spawn(|| {
            h.run("master-0", &HostOp::RunRestore { dir: "/home/core/assets/backup".into(), fence: "drctl-slow-restore".into() })
        });
        support::eventually(100, Duration::from_millis(20), || (!sb.calls("restore").is_empty()).then_some(())).unwrap();
        // The listener stays up, so a retry would work: the adapter must still not retry.
        sshd.drop_connections();
        op.join().unwrap()
    });
    sb.set_slow(None);
    let e = result.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert_eq!(sb.calls("restore").len(), 1, "cluster-restore.sh must not be started a second time by the adapter");
    assert!(!sb.path("/var/lib/drctl/fences/drctl-slow-restore").exists(), "interrupted: no fence marker");
    // The host is fine again for everything else.
    assert_eq!(h.run("master-0", &HostOp::ManifestPresent(StaticPod::Etcd)).unwrap(), HostOutput::Present(true));
}

#[test]
fn an_unknown_host_key_is_refused_permanently() {
    let w = world();
    std::fs::write(&w.sshd.known_hosts, "").unwrap();
    let opts = SshOptions { config_file: Some(w.sshd.client_config.clone()), ..SshOptions::default() };
    let hosts =
        vec![SshHost::new("master-0", "n", "a", "master-0").with_layout(HostLayout::sandbox(w.boxes[0].root.display().to_string()))];
    let h = SshHosts::new(Blocking::dedicated("ssh-hk").unwrap(), opts, hosts, w.backups.path()).unwrap();
    let e = h.connect("master-0").unwrap_err();
    assert!(matches!(&e, PortError::Permanent(m) if m.contains("Host key verification failed")), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_from_a_spawn_blocking_thread_on_the_callers_runtime() {
    let (sshd, roots) = tokio::task::spawn_blocking(|| {
        let sshd = Sshd::start(&["master-0"]);
        let roots = tempfile::tempdir().unwrap();
        (sshd, roots)
    })
    .await
    .unwrap();
    let sb = Sandbox::create(&roots.path().join("m0"), "n0");
    let opts = SshOptions { config_file: Some(sshd.client_config.clone()), ..SshOptions::default() };
    let hosts =
        vec![SshHost::new("master-0", "n0", "10.0.0.1", "master-0").with_layout(HostLayout::sandbox(sb.root.display().to_string()))];
    let h = SshHosts::new(Blocking::current().unwrap(), opts, hosts, roots.path()).unwrap();
    let out = tokio::task::spawn_blocking(move || h.run("master-0", &HostOp::ManifestPresent(StaticPod::KubeScheduler))).await.unwrap();
    assert_eq!(out.unwrap(), HostOutput::Present(true));
    drop(sshd);
}

#[test]
fn a_restore_an_earlier_attempt_started_is_never_started_again() {
    let mut w = world();
    let h = w.hosts.clone();
    let sb = &w.boxes[0];
    h.connect("master-0").unwrap();
    sb.set_slow(Some(3.0));
    let op = HostOp::RunRestore { dir: "/home/core/assets/backup".into(), fence: "drctl-twice-restore".into() };
    let sshd = &mut w.sshd;
    let first = std::thread::scope(|s| {
        let run = s.spawn(|| h.run("master-0", &op));
        support::eventually(100, Duration::from_millis(20), || (!sb.calls("restore").is_empty()).then_some(())).unwrap();
        sshd.drop_connections();
        run.join().unwrap()
    });
    assert!(first.unwrap_err().is_transient());
    // The engine retries the step: the host either still runs the script (wait) or ran it
    // halfway (a person must look); either way it is not started a second time.
    let again = h.run("master-0", &op);
    sb.set_slow(None);
    match &again {
        Err(PortError::Transient(m)) => assert!(m.contains("is still running on this host"), "{m}"),
        Err(PortError::Permanent(m)) => assert!(m.contains("ended without finishing"), "{m}"),
        other => panic!("a retried restore answered {other:?}"),
    }
    assert_eq!(sb.calls("restore").len(), 1, "cluster-restore.sh was started again: {again:?}");
    assert!(sb.path("/var/lib/drctl/fences/drctl-twice-restore.started").exists());
    assert!(!sb.path("/var/lib/drctl/fences/drctl-twice-restore").exists(), "not finished: no done marker");
}

/// §5.1.1 step 3 and §5.4.2.2 step 7: behind a cluster-wide proxy the scripts run with its
/// variables exported, taken from the node's own `/etc/mco/proxy.env` (an SSH session has
/// none for `sudo -E` to pass on, and drctl never handles the values).
#[test]
fn backup_and_restore_scripts_run_with_the_cluster_wide_proxy_of_the_node() {
    let w = world();
    let h = w.hosts.clone();
    let sb = &w.boxes[0];
    // Without a proxy file nothing is exported and the backup works as before.
    let dir = "/home/core/assets/backup";
    assert!(matches!(h.run("master-0", &HostOp::RunBackup { dir: dir.into() }).unwrap(), HostOutput::Backup { .. }));
    assert_eq!(sb.env_seen("backup"), vec!["HTTPS_PROXY="]);

    std::fs::create_dir_all(sb.path("/etc/mco")).unwrap();
    std::fs::write(
        sb.path("/etc/mco/proxy.env"),
        "HTTP_PROXY=http://proxy.example.com:3128\nHTTPS_PROXY=http://proxy.example.com:3128\nNO_PROXY=.cluster.local,10.0.0.0/16\n",
    )
    .unwrap();
    let dir = "/home/core/assets/backup-2";
    let out = h.run("master-0", &HostOp::RunBackup { dir: dir.into() });
    assert!(matches!(out, Ok(HostOutput::Backup { .. })), "{out:?}");
    assert_eq!(sb.env_seen("backup").last().map(String::as_str), Some("HTTPS_PROXY=http://proxy.example.com:3128"));

    let out = h.run("master-0", &HostOp::RunRestore { dir: dir.into(), fence: "drctl-proxy-restore".into() });
    assert_eq!(out.unwrap(), HostOutput::Done);
    assert_eq!(sb.env_seen("restore"), vec!["HTTPS_PROXY=http://proxy.example.com:3128"]);
}
