//! The etcd adapter against a real 3-member etcd 3.4 on 127.0.0.1 (Debian etcd-server and
//! etcd-client), started by the test harness.
// Real software in real time: these tests wait on the wall clock.
#![allow(clippy::disallowed_methods)]

mod support;

use drctl_adapters::blocking::Blocking;
use drctl_adapters::etcd::EtcdCtl;
use drctl_adapters::ssh::{HostLayout, SshHost, SshHosts, SshOptions};
use drctl_workflows::ports::{Etcd, HostOp, HostOutput, Hosts, PortError};
use std::process::Command;
use std::time::{Duration, Instant};
use support::etcd::{Cluster, ETCDCTL};

fn ctl(c: &Cluster) -> EtcdCtl {
    EtcdCtl::local(c.endpoints()).with_timeouts(Duration::from_secs(1), Duration::from_secs(3))
}

fn put(endpoint: &str, k: &str, v: &str) {
    let out = Command::new(ETCDCTL).env("ETCDCTL_API", "3").arg(format!("--endpoints={endpoint}")).args(["put", k, v]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Retry `op` (bounded) while it fails transiently, as the engine would.
fn retry_transient<T>(what: &str, tries: u32, mut op: impl FnMut() -> Result<T, PortError>) -> T {
    let mut last = None;
    for _ in 0..tries {
        match op() {
            Ok(v) => return v,
            Err(e) if e.is_transient() => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(300));
            }
            Err(e) => panic!("{what}: permanent failure {e:?}"),
        }
    }
    panic!("{what}: still failing after {tries} tries: {last:?}");
}

#[test]
fn list_remove_and_add_back_a_member() {
    let c = Cluster::start(3);
    let e = ctl(&c);
    let l = e.member_list().unwrap();
    assert_eq!(l.members.len(), 3);
    assert_ne!(l.cluster_id, 0);
    let mut names: Vec<&str> = l.members.iter().map(|m| m.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["m0", "m1", "m2"]);
    let m2 = l.members.iter().find(|m| m.name == "m2").unwrap().clone();
    assert_eq!(m2.peer_urls, vec![c.members[2].peer_url()]);
    assert_eq!(m2.client_urls, vec![c.members[2].client_url()]);
    assert!(!m2.is_learner);

    // The ids are the same numbers the table prints in hex.
    let table = Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", c.members[0].client_url()))
        .args(["member", "list"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains(&format!("{:x}, started, m2,", m2.id)));

    // Remove the member (the runbook's "remove the unhealthy member"); again is success. A
    // cluster whose peers have not been connected for 5 s yet refuses with "unhealthy cluster"
    // (etcd's strict reconfiguration check): transient, retried as the engine would.
    let survivors = EtcdCtl::local(c.endpoints()[..2].to_vec()).with_timeouts(Duration::from_secs(1), Duration::from_secs(3));
    retry_transient("member remove", 60, || survivors.member_remove(m2.id));
    // Removing it again is success; if m2 was the leader, the others elect a new one first
    // ("request timed out, possibly due to previous leader failure": transient).
    retry_transient("member remove again", 60, || survivors.member_remove(m2.id));
    let l2 = retry_transient("member list", 60, || survivors.member_list());
    assert_eq!(l2.members.len(), 2);
    assert_eq!(l2.cluster_id, l.cluster_id);
    assert!(l2.members.iter().all(|m| m.id != m2.id));

    // Add it back as a new member with a fresh data dir, started with --initial-cluster-state existing.
    let mut fresh = c.new_member("m2", String::new(), "existing");
    let added = retry_transient("member add", 60, || survivors.member_add("m2", &fresh.peer_url()));
    assert_eq!(added.members.len(), 3);
    let new = added.members.iter().find(|m| m.peer_urls == vec![fresh.peer_url()]).unwrap().clone();
    assert_eq!(new.name, "", "not started yet");
    // Adding the same peer URL again (a re-run) is success.
    assert_eq!(retry_transient("member add again", 60, || survivors.member_add("m2", &fresh.peer_url())).members.len(), 3);
    fresh.initial_cluster = format!("m0={},m1={},m2={}", c.members[0].peer_url(), c.members[1].peer_url(), fresh.peer_url());
    fresh.start();
    let all = EtcdCtl::local(vec![c.members[0].client_url(), c.members[1].client_url(), fresh.client_url()])
        .with_timeouts(Duration::from_secs(1), Duration::from_secs(3));
    let l3 = support::eventually(100, Duration::from_millis(100), || {
        all.member_list().ok().filter(|l| l.members.iter().all(|m| !m.name.is_empty()))
    })
    .unwrap_or_else(|| panic!("the new member never started; log:\n{}", fresh.log_text()));
    assert_eq!(l3.members.len(), 3);
    assert_eq!(l3.cluster_id, l.cluster_id);
    assert!(l3.members.iter().any(|m| m.id == new.id && m.name == "m2"));
    let health = retry_transient("endpoint health", 60, || {
        let h = all.endpoint_health()?;
        if h.iter().all(|x| x.healthy) {
            Ok(h)
        } else {
            Err(PortError::Transient(format!("{h:?}")))
        }
    });
    assert_eq!(health.len(), 3);

    // A member id that never existed: remove is idempotent success.
    retry_transient("remove an unknown member", 60, || all.member_remove(0x1234));
}

#[test]
fn losing_quorum_is_transient_and_the_operation_completes_once_members_return() {
    let mut c = Cluster::start(3);
    let e = ctl(&c);
    let before = e.member_list().unwrap();
    c.members[1].kill();
    c.members[2].kill();

    let t = Instant::now();
    let err = e.member_list().unwrap_err();
    let PortError::Transient(m) = &err else { panic!("expected transient, got {err:?}") };
    assert!(
        ["context deadline exceeded", "request timed out", "no leader", "connection refused"].iter().any(|p| m.contains(p)),
        "a quorum-loss message: {m}"
    );
    assert!(t.elapsed() < Duration::from_secs(15), "bounded by etcdctl's command timeout");
    eprintln!("member list without quorum: {err:?}");
    let err = e.member_remove(before.members[0].id).unwrap_err();
    eprintln!("member remove without quorum: {err:?}");
    assert!(err.is_transient(), "{err:?}");
    let health = e.endpoint_health().unwrap();
    assert_eq!(health.iter().filter(|h| h.healthy).count(), 0, "no endpoint is healthy without quorum: {health:?}");
    assert!(health.iter().all(|h| h.error.is_some()));
    let err = e.member_add("m9", "http://127.0.0.1:1").unwrap_err();
    assert!(err.is_transient(), "{err:?}");

    // The members come back while the "engine" keeps retrying: the operation completes.
    let mut restarter = std::thread::scope(|s| {
        let h = s.spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            c.members[1].start();
            c.members[2].start();
            c
        });
        let l = retry_transient("member list", 60, || e.member_list());
        assert_eq!(l.cluster_id, before.cluster_id);
        assert_eq!(l.members.len(), 3);
        h.join().unwrap()
    });
    retry_transient("endpoint health", 60, || {
        let h = e.endpoint_health()?;
        if h.iter().all(|x| x.healthy) {
            Ok(h)
        } else {
            Err(PortError::Transient(format!("{h:?}")))
        }
    });
    restarter.members[0].kill();
}

#[test]
fn snapshot_save_status_restore_new_cluster_and_old_member_rejected() {
    let mut c = Cluster::start(3);
    let e = ctl(&c);
    for i in 0..20 {
        put(&c.members[0].client_url(), &format!("/kubernetes.io/configmaps/ns/cm-{i}"), "value");
    }
    let before = e.member_list().unwrap();
    let snap = c.dir.path().join("snapshot_2026-11-21_181141.db");
    let snap_s = snap.display().to_string();
    let st = e.snapshot_save(&snap_s).unwrap();
    assert!(snap.exists());
    assert!(st.total_key >= 20, "{st:?}");
    assert!(st.revision >= 21 && st.hash != 0 && st.total_size > 0, "{st:?}");
    assert_eq!(e.snapshot_status(&snap_s).unwrap(), st);
    assert!(matches!(e.snapshot_status("/nonexistent/snapshot.db"), Err(PortError::NotFound(_))));

    // Disaster: all members down. Restore member m0 (same name and peer URL) into a new data dir.
    for m in &mut c.members {
        m.kill();
    }
    let restored_dir = c.dir.path().join("m0-restored.etcd");
    let m0_peer = c.members[0].peer_url();
    e.snapshot_restore(&snap_s, &restored_dir.display().to_string(), "m0", &format!("m0={m0_peer}"), &m0_peer).unwrap();
    let again = e.snapshot_restore(&snap_s, &restored_dir.display().to_string(), "m0", &format!("m0={m0_peer}"), &m0_peer);
    assert!(matches!(&again, Err(PortError::Permanent(m)) if m.contains("exists")), "{again:?}");

    let old_dir = std::mem::replace(&mut c.members[0].data_dir, restored_dir);
    c.members[0].initial_cluster = format!("m0={m0_peer}");
    c.members[0].start();
    c.wait_healthy(0, Duration::from_secs(30));
    let solo = EtcdCtl::local(vec![c.members[0].client_url()]).with_timeouts(Duration::from_secs(1), Duration::from_secs(3));
    let after = retry_transient("member list after restore", 30, || solo.member_list());
    assert_eq!(after.members.len(), 1);
    assert_ne!(after.cluster_id, before.cluster_id, "a restore makes a new cluster");
    let keys = Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", c.members[0].client_url()))
        .args(["get", "--prefix", "/kubernetes.io/configmaps/", "--keys-only", "-w", "json"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&keys.stdout).contains("\"count\":20"), "{}", String::from_utf8_lossy(&keys.stdout));
    assert!(old_dir.exists());

    // An old member comes back with its old data dir: it is rejected for the cluster id.
    c.members[1].start();
    let deadline = Instant::now() + Duration::from_secs(20);
    let rejected = loop {
        let logs = format!("{}\n{}", c.members[1].log_text(), c.members[0].log_text());
        if logs.contains("cluster ID mismatch") {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for l in
        format!("{}\n{}", c.members[1].log_text(), c.members[0].log_text()).lines().filter(|l| l.contains("cluster ID mismatch")).take(2)
    {
        eprintln!("{l}");
    }
    assert!(
        rejected,
        "no cluster ID mismatch logged; old member log:\n{}\nrestored member log:\n{}",
        c.members[1].log_text(),
        c.members[0].log_text()
    );
    // And the restored cluster did not take it in.
    assert_eq!(solo.member_list().unwrap().members.len(), 1);
}

#[test]
fn etcdctl_over_ssh_on_a_control_plane_host() {
    let c = Cluster::start(3);
    let sshd = support::sshd::Sshd::start(&["master-0"]);
    let roots = tempfile::tempdir().unwrap();
    let sb = support::sandbox::Sandbox::create(&roots.path().join("master-0"), "ip-10-0-0-1");
    let opts = SshOptions { config_file: Some(sshd.client_config.clone()), ..SshOptions::default() };
    let hosts = vec![
        SshHost::new("master-0", "ip-10-0-0-1", "10.0.0.1", "master-0").with_layout(HostLayout::sandbox(sb.root.display().to_string()))
    ];
    let hosts = SshHosts::new(Blocking::dedicated("etcd-ssh").unwrap(), opts, hosts, roots.path()).unwrap();
    let remote =
        EtcdCtl::over_ssh(&hosts, "master-0", c.endpoints()).unwrap().with_timeouts(Duration::from_secs(1), Duration::from_secs(3));
    let local = ctl(&c);
    assert_eq!(remote.member_list().unwrap(), local.member_list().unwrap());
    assert!(remote.endpoint_health().unwrap().iter().all(|h| h.healthy));

    // The host's cluster-backup.sh (stub: etcdctl snapshot save) and the snapshot check over SSH.
    std::fs::write(sb.path("/state/etcd-endpoint"), c.members[0].client_url()).unwrap();
    let HostOutput::Backup { snapshot, .. } = hosts.run("master-0", &HostOp::RunBackup { dir: "/home/core/assets/backup".into() }).unwrap()
    else {
        panic!()
    };
    let snapshot = format!("/home/core/assets/backup/{snapshot}");
    let HostOutput::Snapshot(st) = hosts.run("master-0", &HostOp::SnapshotStatus { path: snapshot.clone() }).unwrap() else { panic!() };
    assert_eq!(local.snapshot_status(&sb.path(&snapshot).display().to_string()).unwrap(), st);
    assert!(st.total_key > 0);
    // The same through the etcd adapter's ssh channel (its paths are the host's real paths).
    let on_host = sb.path("/home/core/assets/backup/again.db").display().to_string();
    let st2 = remote.snapshot_save(&on_host).unwrap();
    assert_eq!(remote.snapshot_status(&on_host).unwrap(), st2);
}

#[test]
fn a_missing_etcdctl_is_permanent() {
    let e = EtcdCtl::new(Box::new(drctl_adapters::etcd::LocalExec), "/nonexistent/etcdctl", vec!["http://127.0.0.1:1".into()]);
    assert!(matches!(e.member_list(), Err(PortError::Permanent(m)) if m.contains("not installed")));
}

/// A backup made by the runbook's own script has no drctl info file: its release is read from
/// the clusterversion object inside a real etcd snapshot (the newest revision of it).
#[test]
fn the_cluster_version_is_read_from_a_real_snapshot() {
    let c = Cluster::start(1);
    let e = ctl(&c);
    let key = "/kubernetes.io/config.openshift.io/clusterversions/version";
    let cv = |v: &str| {
        format!(
            r#"{{"apiVersion":"config.openshift.io/v1","kind":"ClusterVersion","metadata":{{"name":"version"}},"status":{{"desired":{{"version":"{v}"}},"history":[{{"state":"Completed","version":"{v}"}}]}}}}"#
        )
    };
    put(&c.members[0].client_url(), key, &cv("4.15.2"));
    for i in 0..50 {
        put(&c.members[0].client_url(), &format!("/kubernetes.io/configmaps/ns/cm-{i}"), &"x".repeat(2000));
    }
    put(&c.members[0].client_url(), key, &cv("4.15.3"));
    let snap = c.dir.path().join("snapshot_2026-11-21_181141.db");
    e.snapshot_save(&snap.display().to_string()).unwrap();
    assert_eq!(drctl_adapters::backup::snapshot_cluster_version(&snap).unwrap().as_deref(), Some("4.15.3"));
}

/// `etcdctl` in an etcd pod through the kube exec API (kube-rs over a WebSocket to the mock API
/// server, which runs the command here against the real cluster, as a pod's etcdctl container
/// runs it against its cluster): the member list, health, and removing the member of a stopped
/// node, once and again.
#[test]
fn member_remove_through_etcdctl_in_a_pod_reaches_the_real_cluster() {
    use drctl_adapters::kube::{KubeApi, KubeEtcdPods};
    use drctl_workflows::ports::EtcdPods;
    use support::mockapi::{Expect, MockApi};
    let mut c = Cluster::start(3);
    let api = MockApi::start();
    let env = [("ETCDCTL_ENDPOINTS", c.endpoints()[..2].join(","))];
    api.expect(Expect::exec("/api/v1/namespaces/openshift-etcd/pods/etcd-node-0", "etcdctl", &env).repeated());
    let rt = Blocking::dedicated("pod-exec").unwrap();
    let pods = KubeEtcdPods(KubeApi::connect(rt, Some(&api.kubeconfig()), Some("admin")).unwrap());
    let list = retry_transient("member list in the pod", 60, || pods.member_list("node-0"));
    assert_eq!(list.members.len(), 3);
    let m2 = list.members.iter().find(|m| m.name == "m2").unwrap().clone();
    // The member of a stopped node: unhealthy in the pod's view, then removed.
    c.members[2].kill();
    let health = retry_transient("endpoint health in the pod", 60, || {
        let h = pods.endpoint_health("node-0")?;
        match h.iter().filter(|e| !e.healthy).count() {
            1 => Ok(h),
            _ => Err(PortError::Transient(format!("{h:?}"))),
        }
    });
    assert!(health.iter().any(|h| !h.healthy && h.endpoint == c.members[2].client_url()), "{health:?}");
    retry_transient("member remove in the pod", 60, || pods.member_remove("node-0", m2.id));
    retry_transient("member remove in the pod again", 60, || pods.member_remove("node-0", m2.id));
    let after = retry_transient("member list after", 60, || pods.member_list("node-0"));
    assert_eq!(after.members.len(), 2);
    assert!(!after.members.iter().any(|m| m.id == m2.id));
    // The cluster itself agrees, asked directly.
    let direct = EtcdCtl::local(c.endpoints()[..2].to_vec()).member_list().unwrap();
    assert_eq!(direct.members.len(), 2);
    api.verify();
}
