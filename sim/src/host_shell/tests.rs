//! The shell against the direct simulator: every host operation, rendered by the real adapter
//! and run through [`World::host_shell`], must answer and change the world exactly as
//! [`World::host_op`] does; and renderings the shell does not know must be refused.

use super::*;
use crate::scenario;
use crate::world::{SimFile, World};
use drctl_adapters::ssh::{interpret, render, ExecOutput, HostLayout};
use drctl_workflows::ports::{HostOp, HostOutput, PortError, PortResult, StaticPod};

const BACKUP_DIR: &str = "/home/core/assets/backup";
const FENCE: &str = "drctl-r1-restore";
const SCENARIOS: [&str; 6] = ["healthy", "quorum-loss", "quorum-loss-ovn-ic", "quorum-loss-sdn", "quorum-loss-misnamed", "quorum-loss-upi"];
const PODS: [StaticPod; 5] =
    [StaticPod::Etcd, StaticPod::KubeApiServer, StaticPod::KubeControllerManager, StaticPod::KubeScheduler, StaticPod::Keepalived];

/// Which variant an operation is. The match is exhaustive: a new [`HostOp`] variant does not
/// compile until [`ops_for`] covers it and it is listed here.
fn variant(op: &HostOp) -> &'static str {
    match op {
        HostOp::MoveManifestOut(_) => "MoveManifestOut",
        HostOp::MoveManifestIn(_) => "MoveManifestIn",
        HostOp::ManifestPresent(_) => "ManifestPresent",
        HostOp::RunningContainers { .. } => "RunningContainers",
        HostOp::MoveEtcdDataDirAside => "MoveEtcdDataDirAside",
        HostOp::ListAddresses => "ListAddresses",
        HostOp::RemoveAddress { .. } => "RemoveAddress",
        HostOp::RemoveKubeletPki => "RemoveKubeletPki",
        HostOp::RestartKubelet => "RestartKubelet",
        HostOp::RemoveOvnDatabases => "RemoveOvnDatabases",
        HostOp::ForceEtcdRedeploymentLocally { .. } => "ForceEtcdRedeploymentLocally",
        HostOp::RemoveOvnIcDatabases => "RemoveOvnIcDatabases",
        HostOp::RestartOvs => "RestartOvs",
        HostOp::KubeletNodeName => "KubeletNodeName",
        HostOp::RunBackup { .. } => "RunBackup",
        HostOp::SnapshotStatus { .. } => "SnapshotStatus",
        HostOp::RunRestore { .. } => "RunRestore",
        HostOp::ListDir { .. } => "ListDir",
        HostOp::MakePrivateDir { .. } => "MakePrivateDir",
        HostOp::ReleaseVersion => "ReleaseVersion",
        HostOp::Shutdown { .. } => "Shutdown",
        HostOp::ProbeEtcd { .. } => "ProbeEtcd",
        // The OpenShift 4.1–4.3 host steps: checked by `the_4_3_recovery_through_the_shell…`,
        // not counted in VARIANTS.
        HostOp::RunLegacyScript { .. } => "RunLegacyScript",
        HostOp::LegacyStartSigner { .. } => "LegacyStartSigner",
        HostOp::LegacyEtcdIdentity => "LegacyEtcdIdentity",
        HostOp::LegacySignerListening => "LegacySignerListening",
        HostOp::LegacyMemberList => "LegacyMemberList",
    }
}
const VARIANTS: usize = 22;

/// Every operation, with the arguments that matter in this world for `host`.
fn ops_for(w: &World, host: &str) -> Vec<HostOp> {
    let h = &w.hosts[host];
    let mut ops = Vec::new();
    for p in PODS {
        ops.extend([HostOp::MoveManifestOut(p), HostOp::MoveManifestIn(p), HostOp::ManifestPresent(p)]);
        ops.push(HostOp::RunningContainers { name: p.container().into() });
    }
    ops.extend([HostOp::MoveEtcdDataDirAside, HostOp::ListAddresses]);
    for (address, device) in h.addresses.iter().chain([&("10.99.0.1".to_string(), "br-ex".to_string())]) {
        ops.push(HostOp::RemoveAddress { address: address.clone(), device: device.clone() });
    }
    ops.push(HostOp::RemoveAddress { address: h.ip.clone(), device: "eth9".into() });
    ops.extend([HostOp::RemoveKubeletPki, HostOp::RestartKubelet, HostOp::RemoveOvnDatabases, HostOp::RemoveOvnIcDatabases]);
    ops.extend([HostOp::RestartOvs, HostOp::KubeletNodeName]);
    ops.extend([HostOp::ListDir { dir: BACKUP_DIR.into() }, HostOp::ListDir { dir: "/home/core/nothing".into() }]);
    ops.extend([HostOp::MakePrivateDir { dir: "/home/core/assets/new".into() }, HostOp::ReleaseVersion, HostOp::Shutdown { minutes: 1 }]);
    if !h.worker {
        // Only control-plane hosts have OpenShift's etcd tools and scripts (a worker answers
        // `No such file or directory`, exit 127), the recovery kubeconfig and the etcd
        // certificates.
        ops.push(HostOp::RunBackup { dir: BACKUP_DIR.into() });
        let files = h.files.keys().cloned().chain([format!("{BACKUP_DIR}/snapshot_missing.db")]);
        ops.extend(files.map(|path| HostOp::SnapshotStatus { path }));
        ops.push(HostOp::RunRestore { dir: BACKUP_DIR.into(), fence: FENCE.into() });
        ops.push(HostOp::ForceEtcdRedeploymentLocally { reason: "recovery-1-etcd".into() });
        let addresses = w.hosts.values().map(|o| o.ip.clone()).chain(w.inventory_addresses.values().cloned());
        for address in addresses.chain(["10.99.0.2".to_string()]) {
            ops.push(HostOp::ProbeEtcd { address, client_node: host.into() });
        }
    }
    ops
}

fn via_shell(w: &mut World, host: &str, op: &HostOp) -> PortResult<HostOutput> {
    let cmd = render(op, &HostLayout::real())?;
    let out = w.host_shell(host, &cmd, b"");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.code != 127 && out.code != 2, "{host}: the shell refused {cmd}\n{stderr}");
    interpret(op, &ExecOutput { code: out.code, stdout: out.stdout, stderr: out.stderr })
}

fn same_answer(a: &PortResult<HostOutput>, b: &PortResult<HostOutput>) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (Err(x), Err(y)) => std::mem::discriminant(x) == std::mem::discriminant(y),
        _ => false,
    }
}

/// How many operations were checked, how many failed (both ways), and how many failed with
/// the known difference of classification.
#[derive(Debug, Default)]
struct Tally {
    checks: usize,
    errors: usize,
}

/// One operation both ways, from the same world; returns the variant's name.
fn differential(w: &World, host: &str, op: &HostOp, tally: &mut Tally) -> &'static str {
    let (mut direct, mut shell) = (w.clone(), w.clone());
    let a = direct.host_op(host, op);
    let b = via_shell(&mut shell, host, op);
    tally.checks += 1;
    tally.errors += usize::from(a.is_err());
    assert!(same_answer(&a, &b), "{} on {host} ({}): direct {a:?}, shell {b:?}", w.scenario, variant(op));
    assert!(direct == shell, "{} on {host} ({op:?}): the worlds differ\n{}", w.scenario, world_diff(&direct, &shell));
    variant(op)
}

fn world_diff(a: &World, b: &World) -> String {
    let (ja, jb) = (serde_json::to_value(a).unwrap(), serde_json::to_value(b).unwrap());
    let (oa, ob) = (ja.as_object().unwrap(), jb.as_object().unwrap());
    oa.iter()
        .filter(|(k, v)| ob.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}:\n  direct {v}\n  shell  {}", ob[k]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every operation on every host of `w`, both ways.
fn check_all(w: &World, seen: &mut BTreeSet<&'static str>, tally: &mut Tally) {
    for host in w.hosts.keys() {
        for op in ops_for(w, host) {
            seen.insert(differential(w, host, &op, tally));
        }
    }
}

/// Copy the files of backup set `name` to `dest` on `host` the way the SSH adapter does:
/// `install -d`, then per file `sha256sum`, `tee` into a part file, `mv -f` into place.
fn copy_via_shell(w: &mut World, name: &str, host: &str, dest: &str) {
    let sudo = "sudo -n true 2>/dev/null || { echo 'drctl: passwordless sudo is required' >&2; exit 45; }; ";
    let files = w.backups[name].files.clone();
    let out = w.host_shell(host, &format!("{sudo}sudo install -d -m 0700 {dest}"), b"");
    assert_eq!(out.code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    for (file, f) in files {
        let (remote, part) = (format!("{dest}/{file}"), format!("{dest}/.{file}.part"));
        let sum = |w: &mut World| {
            let out = w.host_shell(host, &format!("{sudo}if sudo test -f {remote}; then sudo sha256sum -- {remote}; fi"), b"");
            assert_eq!(out.code, 0);
            String::from_utf8_lossy(&out.stdout).split_whitespace().next().map(str::to_string)
        };
        assert_eq!(sum(w), None);
        let bytes = file_bytes(&f);
        let cmd = format!("{sudo}sudo tee -- {part} >/dev/null && sudo mv -f -- {part} {remote}");
        let out = w.host_shell(host, &cmd, &bytes);
        assert_eq!(out.code, 0, "{}", String::from_utf8_lossy(&out.stderr));
        use sha2::{Digest, Sha256};
        assert_eq!(sum(w), Some(hex::encode(Sha256::digest(&bytes))));
        let cat = w.host_shell(host, &format!("{sudo}if sudo test -e {remote}; then sudo cat {remote}; else exit 44; fi"), b"");
        assert_eq!(cat.stdout, bytes);
    }
}

/// What the simulated `copy_backup_to_host` does to the host (without its SSH time).
fn copy_direct(w: &mut World, name: &str, host: &str, dest: &str) {
    let files = w.backups[name].files.clone();
    let h = w.host_mut(host);
    h.dirs.insert(dest.to_string());
    for (file, f) in files {
        h.files.insert(format!("{dest}/{file}"), f);
    }
}

/// Both worlds take the same step, each its own way; they must stay equal.
fn lockstep(direct: &mut World, shell: &mut World, host: &str, op: &HostOp) {
    let a = direct.host_op(host, op);
    let b = via_shell(shell, host, op);
    assert!(same_answer(&a, &b), "{host} {op:?}: direct {a:?}, shell {b:?}");
    assert!(direct == shell, "{host} {op:?}\n{}", world_diff(direct, shell));
}

/// The recovery, step by step: backup, manifests and data out, PKI removed, the backup copied
/// to the recovery host, the restore, manifests back. Every operation is checked both ways
/// before each step.
fn recovery_steps(w: &World) -> Vec<(String, HostOp)> {
    let cp: Vec<String> = w.hosts.values().filter(|h| !h.worker).map(|h| h.name.clone()).collect();
    let mut steps = vec![(cp[0].clone(), HostOp::RunBackup { dir: BACKUP_DIR.into() })];
    for h in &cp[1..] {
        steps.push((h.clone(), HostOp::MoveManifestOut(StaticPod::Etcd)));
        steps.push((h.clone(), HostOp::MoveManifestOut(StaticPod::KubeApiServer)));
        steps.push((h.clone(), HostOp::MoveEtcdDataDirAside));
    }
    steps.push((cp[1].clone(), HostOp::RemoveKubeletPki));
    steps.push((cp[0].clone(), HostOp::RunRestore { dir: "/home/core/restore".into(), fence: FENCE.into() }));
    steps.push((cp[1].clone(), HostOp::MoveManifestIn(StaticPod::Etcd)));
    steps.push((cp[1].clone(), HostOp::RestartKubelet));
    steps
}

#[test]
fn every_operation_answers_and_acts_as_the_direct_simulator() {
    let mut seen = BTreeSet::new();
    let mut tally = Tally::default();
    let mut checked = 0;
    for name in SCENARIOS {
        for seed in [1, 7] {
            let base = scenario::build(name, seed).unwrap();
            let (mut direct, mut shell) = (base.clone(), base.clone());
            let recovery_host = direct.hosts.values().find(|h| !h.worker).map(|h| h.name.clone()).unwrap();
            if let Some(set) = direct.backups.keys().next().cloned() {
                copy_direct(&mut direct, &set, &recovery_host, "/home/core/restore");
                copy_via_shell(&mut shell, &set, &recovery_host, "/home/core/restore");
                assert!(direct == shell, "{name}: copies differ\n{}", world_diff(&direct, &shell));
            }
            for (host, op) in recovery_steps(&base) {
                check_all(&direct, &mut seen, &mut tally);
                lockstep(&mut direct, &mut shell, &host, &op);
                checked += 1;
            }
            check_all(&direct, &mut seen, &mut tally);
            if !base.backups.is_empty() {
                assert_ne!(shell.current_cluster, base.current_cluster, "{name}: the restore through the shell made a new cluster");
            }
        }
    }
    assert_eq!(seen.len(), VARIANTS, "variants covered: {seen:?}");
    assert!(checked > 50, "{checked}");
    assert!(tally.checks > 10_000 && tally.errors > 100, "{tally:?}");
    eprintln!("differential: {} variants, {checked} lockstep steps, {tally:?}", seen.len());
}

/// The OpenShift 4.1–4.3 host operations on `host` of a 4.3 world.
fn legacy_ops_for(w: &World, host: &str) -> Vec<HostOp> {
    use drctl_workflows::ports::LegacyScript;
    let initial_cluster = format!("etcd-member-{host}=https://{}:2380", w.hosts[host].etcd_dns_name.clone().unwrap_or_default());
    let restore = LegacyScript::SnapshotRestore { dir: "/home/core/backup".into(), initial_cluster };
    let recover = LegacyScript::MemberRecover { signer_ip: w.hosts["master-0"].ip.clone(), member_name: format!("etcd-member-{host}") };
    vec![
        HostOp::LegacyEtcdIdentity,
        HostOp::LegacySignerListening,
        HostOp::LegacyMemberList,
        HostOp::LegacyStartSigner { hostname: host.into() },
        HostOp::RunLegacyScript { script: restore, fence: "drctl-legacy-restore".into() },
        HostOp::RunLegacyScript { script: recover, fence: format!("drctl-legacy-member-{host}") },
    ]
}

/// The 4.1–4.3 recovery, step by step, the direct simulator's way and through the shell with
/// the SSH adapter's renderings: the same answers and the same worlds at every step, and every
/// legacy operation on every powered control-plane host checked both ways before each step.
#[test]
fn the_4_3_recovery_through_the_shell_answers_and_acts_as_the_direct_simulator() {
    let mut seen = BTreeSet::new();
    let mut tally = Tally::default();
    for seed in [1, 7] {
        let base = scenario::build("legacy-lost-masters", seed).unwrap();
        let (mut direct, mut shell) = (base.clone(), base.clone());
        copy_direct(&mut direct, "nightly", "master-0", "/home/core/backup");
        copy_via_shell(&mut shell, "nightly", "master-0", "/home/core/backup");
        let check = |w: &World, seen: &mut BTreeSet<&'static str>, tally: &mut Tally| {
            for h in w.hosts.values().filter(|h| !h.worker && h.powered) {
                for op in legacy_ops_for(w, &h.name) {
                    seen.insert(differential(w, &h.name, &op, tally));
                }
            }
        };
        let ops = legacy_ops_for(&base, "master-0");
        let restore = ops[4].clone();
        let steps: Vec<(Option<u64>, &str, HostOp)> = vec![
            (None, "master-0", HostOp::LegacyEtcdIdentity),
            (None, "master-0", restore),
            // The new masters boot; the API is back.
            (Some(50 * crate::world::MINUTE), "master-0", HostOp::LegacyStartSigner { hostname: "master-0".into() }),
            (None, "master-0", HostOp::LegacySignerListening),
            (None, "master-3", legacy_ops_for(&base, "master-3")[5].clone()),
            (Some(20 * crate::world::MINUTE), "master-0", HostOp::LegacyMemberList),
            (None, "master-4", legacy_ops_for(&base, "master-4")[5].clone()),
            (Some(20 * crate::world::MINUTE), "master-0", HostOp::LegacyMemberList),
        ];
        for (wait, host, op) in steps {
            if let Some(ms) = wait {
                direct.advance(ms);
                shell.advance(ms);
            }
            check(&direct, &mut seen, &mut tally);
            lockstep(&mut direct, &mut shell, host, &op);
        }
        check(&direct, &mut seen, &mut tally);
        let members = &direct.etcd[&direct.current_cluster].members;
        assert_eq!(members.len(), 3, "{seed}: the members the recovery made: {members:?}");
        assert!(direct.started_members() == 3 && direct.api().etcd_signer.is_some(), "{seed}: {:?}", direct.log);
    }
    assert_eq!(seen.len(), 5, "legacy variants covered: {seen:?}");
    assert!(tally.errors > 10 && tally.checks > 100, "{tally:?}");
}

#[test]
fn a_restore_left_running_or_half_done_is_reported_as_the_fence_says() {
    let mut w = scenario::build("quorum-loss", 3).unwrap();
    let set = w.backups.keys().next().cloned().unwrap();
    copy_direct(&mut w, &set, "master-0", BACKUP_DIR);
    w.restore_left_running("master-0", BACKUP_DIR, FENCE);
    let op = HostOp::RunRestore { dir: BACKUP_DIR.into(), fence: FENCE.into() };
    let mut tally = Tally::default();
    differential(&w, "master-0", &op, &mut tally);
    assert!(matches!(via_shell(&mut w.clone(), "master-0", &op), Err(PortError::Transient(_))));
    // The script ended without its fence: half done.
    w.host_mut("master-0").restore_running = None;
    differential(&w, "master-0", &op, &mut tally);
    assert!(matches!(via_shell(&mut w.clone(), "master-0", &op), Err(PortError::Permanent(m)) if m.contains("half")
        || m.contains("without finishing")));
    assert_eq!(tally.checks, 2);
}

#[test]
fn simulated_files_round_trip_and_snapshots_carry_their_cluster_version() {
    let w = scenario::build("quorum-loss", 5).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for set in w.backups.values() {
        for (name, f) in &set.files {
            let bytes = file_bytes(f);
            assert_eq!(&file_from_bytes(&bytes), f, "{name}");
            if let SimFile::Snapshot { data, .. } = f {
                let path = dir.path().join(name);
                std::fs::write(&path, &bytes).unwrap();
                let version = drctl_adapters::backup::snapshot_cluster_version(&path).unwrap();
                assert_eq!(version.as_deref(), Some(data.cluster_version.as_str()));
            }
            // A copy cut short is bytes, and stays the same bytes.
            let cut = &bytes[..bytes.len() - 3];
            assert_eq!(file_from_bytes(cut), SimFile::Bytes(cut.to_vec()));
            assert_eq!(file_bytes(&file_from_bytes(cut)), cut);
        }
    }
    let info = SimFile::Info("{\"x\":1}".into());
    assert_eq!(file_from_bytes(&file_bytes(&info)), info);
}

// ---------------------------------------------------------------------------------------------
// Strictness: renderings the shell does not know are refused, and nothing changes
// ---------------------------------------------------------------------------------------------

const PRE: &str = "sudo -n true 2>/dev/null || { echo 'drctl: passwordless sudo is required' >&2; exit 45; }; ";

fn refused(cmd: &str, code: i32, message: &str) {
    let before = scenario::build("quorum-loss", 2).unwrap();
    let mut w = before.clone();
    let out = w.host_shell("master-0", cmd, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.code, code, "{cmd}: {stderr}");
    assert!(stderr.contains(message), "{cmd}: {stderr}");
    assert!(w == before, "{cmd} changed the world\n{}", world_diff(&before, &w));
}

const UNSUPPORTED: &str = "drctl sim host-shell: unsupported command form:";

#[test]
fn crictl_with_another_output_format_is_refused() {
    refused(&format!("{PRE}sudo crictl ps --name etcd -o yaml"), 127, &format!("{UNSUPPORTED} crictl ps --name etcd -o yaml"));
}

#[test]
fn crictl_with_a_state_filter_is_refused() {
    refused(&format!("{PRE}sudo crictl ps --state running --name etcd -o json"), 127, UNSUPPORTED);
}

#[test]
fn a_restore_script_elsewhere_is_not_found() {
    let real = render(&HostOp::RunBackup { dir: BACKUP_DIR.into() }, &HostLayout::real()).unwrap();
    let moved = real.replace("/usr/local/bin/cluster-backup.sh", "/usr/bin/cluster-backup.sh");
    assert_ne!(real, moved);
    refused(&moved, 127, "/usr/bin/cluster-backup.sh: No such file or directory");
    // The restore writes its started marker before it execs the script; the script never runs.
    let real = render(&HostOp::RunRestore { dir: BACKUP_DIR.into(), fence: FENCE.into() }, &HostLayout::real()).unwrap();
    let moved = real.replace("/usr/local/bin/cluster-restore.sh", "/usr/bin/cluster-restore.sh");
    let mut w = scenario::build("quorum-loss", 2).unwrap();
    let cluster = w.current_cluster;
    let out = w.host_shell("master-0", &moved, b"");
    assert_eq!(out.code, 127, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/usr/bin/cluster-restore.sh: No such file or directory"));
    assert_eq!(w.current_cluster, cluster);
    assert!(!w.hosts["master-0"].markers.contains(FENCE));
}

#[test]
fn a_manifest_moved_anywhere_but_tmp_is_refused() {
    refused(&format!("{PRE}sudo mv -v /etc/kubernetes/manifests/etcd-pod.yaml /var/tmp"), 127, UNSUPPORTED);
}

#[test]
fn an_unknown_tool_is_refused() {
    refused(&format!("{PRE}sudo rm -rf /var/lib/etcd"), 127, &format!("{UNSUPPORTED} rm -rf /var/lib/etcd"));
    refused("reboot", 127, &format!("{UNSUPPORTED} reboot"));
}

#[test]
fn refusals_are_not_hidden_by_redirections_or_conditions() {
    refused(&format!("{PRE}if sudo test -x /usr/bin/true 2>/dev/null; then echo yes; else echo no; fi"), 127, UNSUPPORTED);
}

#[test]
fn a_partial_certificate_removal_is_refused() {
    let cmd = format!("{PRE}sudo find /var/lib/kubelet/pki -maxdepth 1 -name 'kubelet-client*' '!' -type d -print -delete");
    refused(&cmd, 127, UNSUPPORTED);
}

#[test]
fn another_awk_program_is_refused() {
    let cmd = "cidr=$(ip -o address show dev br-ex 2>/dev/null | awk -v a=10.0.0.5 '{ print $4 }'); echo \"$cidr\"";
    refused(cmd, 127, UNSUPPORTED);
}

#[test]
fn other_argument_forms_are_refused() {
    for cmd in [
        "ip -o addr",
        "ip address del 10.0.0.5/24 dev br-ex label x",
        "sudo systemctl restart kubelet crio",
        "sudo shutdown -r 1",
        "sudo install -d -m 0755 /home/core/x",
        "sudo etcdctl snapshot status /x -w table",
        "sudo oc --kubeconfig /etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs/localhost-recovery.kubeconfig patch etcd cluster --type=merge -p '{\"spec\":{\"x\":1}}'",
        "timeout 3 bash -c 'cat < /dev/tcp/10.0.0.1/22' 10.0.0.1 22",
        "set -e",
        "exec 3<>/dev/null",
    ] {
        let code = if cmd.starts_with("exec 3") { 2 } else { 127 };
        refused(cmd, code, if code == 2 { "syntax error" } else { UNSUPPORTED });
    }
}

#[test]
fn syntax_outside_the_subset_is_exit_2() {
    for cmd in ["echo `id`", "sleep 1 &", "(cd /tmp)", "sudo rm /var/lib/kubelet/pki/*.pem", "if true; then echo"] {
        refused(cmd, 2, "drctl sim host-shell: syntax error:");
    }
}

// ---------------------------------------------------------------------------------------------
// The shell itself
// ---------------------------------------------------------------------------------------------

fn run(w: &mut World, cmd: &str) -> (String, String, i32) {
    let out = w.host_shell("master-0", cmd, b"");
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned(), out.code)
}

#[test]
fn the_shell_evaluates_quoting_expansion_and_control_flow() {
    let mut w = scenario::build("healthy", 1).unwrap();
    assert_eq!(run(&mut w, "echo 'a  b' \"c\"d\\ e; echo $$"), ("a  b cd e\n4243\n".into(), String::new(), 0));
    assert_eq!(run(&mut w, "x=$(echo '1  2'); echo $x; echo \"$x\"").0, "1 2\n1  2\n");
    assert_eq!(run(&mut w, "false || { echo no >&2; exit 45; }; echo unreachable"), (String::new(), "no\n".into(), 45));
    assert_eq!(run(&mut w, "sh -c 'echo \"$0-$1\"; exit 3' a b; echo $?").0, "a-b\n3\n");
    assert_eq!(run(&mut w, "if false; then echo 1; elif true; then echo 2; else echo 3; fi").0, "2\n");
    assert_eq!(run(&mut w, "env A=1 sh -c 'set -a; B=2; set +a; exec sh -c \"echo \\$A\\$B\"'").0, "12\n");
    assert_eq!(run(&mut w, "echo x 2>&1 >/dev/null").0, "");
    let (out, _, code) = run(&mut w, "sudo test -e /etc/mco/proxy.env");
    assert_eq!((out.as_str(), code), ("", 1));
}

#[test]
fn tools_print_what_the_real_ones_print() {
    let mut w = scenario::build("healthy", 1).unwrap();
    let (out, _, _) = run(&mut w, "ip -o address");
    let ip = w.hosts["master-0"].ip.clone();
    assert!(out.starts_with(&format!("2: br-ex    inet {ip}/24 brd ")), "{out}");
    assert!(out.contains("scope global noprefixroute br-ex\\       valid_lft forever preferred_lft forever\n"), "{out}");
    let (out, _, _) = run(&mut w, "sudo crictl ps --name etcd -o json");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.pointer("/containers/0/metadata/name").and_then(|n| n.as_str()), Some("etcd"));
    assert_eq!(v.pointer("/containers/0/state").and_then(|n| n.as_str()), Some("CONTAINER_RUNNING"));
    let (out, err, code) = run(&mut w, "sudo mv -v /etc/kubernetes/manifests/etcd-pod.yaml /tmp");
    assert_eq!((out.as_str(), err.as_str(), code), ("renamed '/etc/kubernetes/manifests/etcd-pod.yaml' -> '/tmp/etcd-pod.yaml'\n", "", 0));
    let (_, err, code) = run(&mut w, "sudo mv -v /etc/kubernetes/manifests/etcd-pod.yaml /tmp");
    assert_eq!((err.as_str(), code), ("mv: cannot stat '/etc/kubernetes/manifests/etcd-pod.yaml': No such file or directory\n", 1));
    let (_, err, code) = run(&mut w, "mv -v /tmp/etcd-pod.yaml /etc/kubernetes/manifests");
    assert!(code == 1 && err.contains("Permission denied"), "{err}");
    let (out, _, _) = run(&mut w, "sudo openssl x509 -noout -subject -nameopt RFC2253 -in /var/lib/kubelet/pki/kubelet-client-current.pem");
    assert_eq!(out, "subject=CN=system:node:master-0,O=system:nodes\n");
    let (out, _, _) = run(&mut w, &format!("curl -sS --max-time 10 --cacert x --cert y --key z https://{ip}:2379/health"));
    assert_eq!(out, "");
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 400, ..Default::default() })]

    /// The command line comes from the network (sshd hands it over): whatever it is, the shell
    /// answers with an exit status, never a panic, and one it cannot parse changes nothing (it
    /// is parsed whole before anything runs).
    #[test]
    fn any_command_line_is_answered(
        line in proptest::string::string_regex("[a-z/ '\"$(){};|&<>=.*!0-9\\\\-]{0,80}").unwrap(),
        stdin in proptest::collection::vec(proptest::num::u8::ANY, 0..32),
    ) {
        let w = scenario::build("healthy", 1).unwrap();
        let mut after = w.clone();
        let out = after.host_shell("master-0", &line, &stdin);
        if out.code == 2 {
            proptest::prop_assert!(after == w, "{line:?} did not parse but changed the world");
        }
    }
}
