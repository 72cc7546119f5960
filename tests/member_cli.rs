//! The member replacements through the binary: `etcd-member-triage` on each scenario it is
//! built for, its refusal on a cluster that lost quorum, and a replacement killed with SIGKILL
//! at many moments and resumed.
// A real process in real time: the kill test waits on the wall clock.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// The world is healthy with exactly three started members of one etcd cluster and the guard on.
fn assert_three_started_members(store: &Path, what: &str) {
    let st = sim_status(store);
    assert_eq!(st["healthy"], true, "{what}: {st:#}");
    let members = st["etcd_members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{what}: {members:?}");
    assert!(members.iter().all(|m| m["started"] == true), "{what}: {members:?}");
    assert_eq!(st["running_cluster_ids"].as_array().unwrap().len(), 1, "{what}: {st:#}");
    assert_eq!(st["quorum_guard"], true, "{what}");
}

#[test]
fn triage_replaces_the_broken_member_of_each_scenario_through_a_child_run() {
    for (scenario, procedure) in [
        ("member-machine-stopped", "replace-etcd-member-machine"),
        ("member-node-notready", "replace-etcd-member-machine"),
        ("member-crashloop", "replace-etcd-member-crashloop"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path();
        let o = drctl(store, &["run", "etcd-member-triage", "--sim", scenario, "--yes"]);
        assert_eq!(o.status.code(), Some(0), "{scenario}: {}", text(&o));
        let victim = drctl_sim::scenario::member_victim(1);
        let h = history(store, "1");
        let started = h.iter().find(|e| e["outcome"] == "ChildStarted").unwrap_or_else(|| panic!("{scenario}: no child run: {h:#?}"));
        let detail = started["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("child run 1.1 ({procedure})")), "{scenario}: {detail}");
        assert!(h.iter().any(|e| e["to"].as_str().is_some_and(|t| t.contains(&victim))), "{scenario}: the history names {victim}");
        assert_three_started_members(store, scenario);
        // The replacement took its backup first, as its own child.
        let child = json(&drctl(store, &["status", "1.1", "-o", "json"]));
        assert_eq!(child["status"], "succeeded", "{scenario}: {child:#}");
        assert_eq!(json(&drctl(store, &["status", "1.1.1", "-o", "json"]))["procedure"], "etcd-backup");
        // The world no longer has the broken member's id.
        let before = drctl_sim::scenario::build(scenario, 1).unwrap();
        let old_id = format!("{:x}", before.hosts[&victim].etcd_data.unwrap().member_id);
        let st = sim_status(store);
        assert!(!st["etcd_members"].to_string().contains(&old_id), "{scenario}: member {old_id} still there: {st:#}");
    }
}

#[test]
fn triage_refuses_a_cluster_that_lost_quorum_naming_the_restore_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["run", "etcd-member-triage", "--sim", "quorum-loss", "--yes"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("restore-cluster-state"), "{}", text(&o));
    let fresh = drctl_sim::scenario::build("quorum-loss", 1).unwrap();
    assert_eq!(sim_status(store)["state_digest"], drctl_sim::state_digest(&fresh), "the refused run changed the world");
}

#[test]
fn triage_refuses_when_nothing_is_unhealthy() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["run", "etcd-member-triage", "--sim", "healthy", "--yes"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("nothing to replace"), "{}", text(&o));
}

#[test]
fn a_replacement_refuses_the_member_of_a_healthy_node_before_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["run", "replace-etcd-member-machine", "--sim", "healthy", "--node", "master-1", "--yes"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("is healthy: only an unhealthy member is replaced"), "{}", text(&o));
    // With another member down, the guard on the other nodes refuses first.
    let victim = drctl_sim::scenario::member_victim(1);
    let healthy = ["master-0", "master-1", "master-2"].into_iter().find(|h| *h != victim).unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let o = drctl(dir2.path(), &["run", "replace-etcd-member-machine", "--sim", "member-machine-stopped", "--node", healthy, "--yes"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains(&format!("node {victim} is NotReady")), "{}", text(&o));
    let fresh = drctl_sim::scenario::build("member-machine-stopped", 1).unwrap();
    assert_eq!(sim_status(dir2.path())["state_digest"], drctl_sim::state_digest(&fresh), "the refused run changed the world");
    let fresh = drctl_sim::scenario::build("healthy", 1).unwrap();
    assert_eq!(sim_status(store)["state_digest"], drctl_sim::state_digest(&fresh), "the refused run changed the world");
}

/// Start the replacement and SIGKILL it after `lines` progress lines (about one per commit)
/// plus `extra` more time.
fn run_and_kill_after(store: &Path, node: &str, lines: usize, extra: Duration) {
    use std::io::BufRead;
    let args = ["run", "replace-etcd-member-machine", "--sim", "member-machine-stopped", "--node", node, "--yes", "--sim-speed", "20000"];
    let mut child = command(store, &args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("drctl starts");
    let stderr = child.stderr.take().unwrap();
    for (seen, line) in std::io::BufReader::new(stderr).lines().enumerate() {
        if line.is_err() || seen + 1 >= lines {
            break;
        }
    }
    std::thread::sleep(extra);
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
}

#[test]
fn sigkill_at_many_moments_of_a_member_replacement_then_resume_always_ends_with_three_members() {
    let node = drctl_sim::scenario::member_victim(1);
    let mut killed_at = std::collections::BTreeSet::new();
    for i in 0..40usize {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path();
        run_and_kill_after(store, &node, 1 + i, Duration::from_millis((i as u64 * 7) % 5));
        let st = drctl(store, &["status", "1", "-o", "json"]);
        assert!(st.status.success(), "kill #{i}: {}", text(&st));
        let before = history(store, "1");
        let finished = json(&st)["status"] == "succeeded";
        let o = drctl(store, &["resume", "--sim-speed", "1000000"]);
        assert_eq!(o.status.code(), Some(0), "kill #{i}: resume failed\n{}", text(&o));
        let after = history(store, "1");
        assert_eq!(&after[..before.len()], &before[..], "kill #{i}: committed history changed");
        assert_eq!(json(&drctl(store, &["status", "1", "-o", "json"]))["status"], "succeeded", "kill #{i}");
        assert_three_started_members(store, &format!("kill #{i}"));
        if !finished {
            killed_at.insert(before.last().unwrap()["seq"].as_u64().unwrap());
        }
    }
    // A loaded machine bunches progress lines onto the same commit: some kills land together.
    assert!(killed_at.len() >= 8, "only {} distinct kill points: {killed_at:?}", killed_at.len());
}

// ---------------------------------------------------------------------------------------------
// Bare metal (OpenShift Container Platform 4.14 Backup and restore §5.2.4.3)
// ---------------------------------------------------------------------------------------------

/// A credentials file outside the store, as an operator keeps it.
fn credentials_file(dir: &Path, password: &str) -> String {
    let file = dir.join("bmc.yaml");
    std::fs::write(&file, format!("username: {}\npassword: {password}\n", drctl_sim::scenario::SIM_BMC_USERNAME)).unwrap();
    file.display().to_string()
}

/// `--bmc-address --boot-mac-address --bmc-credentials` of the scenario's spare server.
fn new_host_flags(credentials: &str) -> Vec<String> {
    let (address, mac) = drctl_sim::bare_metal::server_identity(drctl_sim::bare_metal::SPARE_SERVER);
    ["--bmc-address", &address, "--boot-mac-address", &mac.to_uppercase(), "--bmc-credentials", credentials].map(String::from).to_vec()
}

/// Every byte the run left or showed: each file under the store (runs, history, the world) and
/// the outputs given.
fn assert_nowhere(store: &Path, secret: &str, outputs: &[&std::process::Output]) {
    let mut dirs = vec![store.to_path_buf()];
    let mut files = 0;
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&p).unwrap();
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "the BMC password is in {}", p.display());
        }
    }
    assert!(files > 2, "the store holds {files} files");
    for o in outputs {
        assert!(!text(o).contains(secret), "the BMC password is in the output:\n{}", text(o));
    }
}

#[test]
fn triage_replaces_a_lost_bare_metal_member_and_keeps_no_byte_of_the_bmc_password() {
    let (dir, creds_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = dir.path();
    let creds = credentials_file(creds_dir.path(), drctl_sim::scenario::SIM_BMC_PASSWORD);
    let mut args = vec!["run", "etcd-member-triage", "--sim", "baremetal-member-lost", "--yes"];
    let flags = new_host_flags(&creds);
    args.extend(flags.iter().map(String::as_str));
    let o = drctl(store, &args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let h = history(store, "1");
    let started = h.iter().find(|e| e["outcome"] == "ChildStarted").unwrap_or_else(|| panic!("no child run: {h:#?}"));
    assert!(started["detail"].as_str().unwrap().contains("child run 1.1 (replace-etcd-member-baremetal)"), "{started}");
    assert_three_started_members(store, "baremetal-member-lost");
    // The lost member's BareMetalHost is the spare server now, provisioned for the new machine.
    let victim = drctl_sim::scenario::member_victim(1);
    let st = sim_status(store);
    let host = st["bare_metal_hosts"].as_array().unwrap().iter().find(|b| b["name"] == victim.as_str()).unwrap().clone();
    assert_eq!(host["state"], "provisioned", "{host}");
    assert_eq!(host["bmc_address"], flags[1].as_str(), "{host}");
    assert_eq!(host["boot_mac_address"], flags[3].to_lowercase().as_str(), "{host}");
    assert_eq!(host["consumer"], "ocp-7x2lq-master-3", "{host}");
    // The run records the file, not what is in it.
    let child = json(&drctl(store, &["status", "1.1", "-o", "json"]));
    assert!(child.to_string().contains(&creds), "{child:#}");
    let shown = [&o, &drctl(store, &["history", "1.1", "-o", "json"]), &drctl(store, &["sim", "status", "-o", "json"])];
    assert_nowhere(store, drctl_sim::scenario::SIM_BMC_PASSWORD, &shown);
}

#[test]
fn a_wrong_bmc_password_halts_with_the_guard_on_and_the_fixed_file_resumes_it() {
    let (dir, creds_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = dir.path();
    let planted = "planted-Wrong-BMC-9d2c";
    let creds = credentials_file(creds_dir.path(), planted);
    let victim = drctl_sim::scenario::member_victim(1);
    let mut args = vec!["run", "replace-etcd-member-baremetal", "--sim", "baremetal-member-lost", "--yes", "--node", &victim];
    let flags = new_host_flags(&creds);
    args.extend(flags.iter().map(String::as_str));
    let o = drctl(store, &args);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("BMC authentication failed"), "{}", text(&o));
    assert_eq!(sim_status(store)["quorum_guard"], true, "the halt left the quorum guard off");
    assert_nowhere(store, planted, &[&o, &drctl(store, &["history", "1", "-o", "json"])]);
    // Fixed in place: the resumed run deletes the failed host, writes the secret again from the
    // file and provisions the server.
    credentials_file(creds_dir.path(), drctl_sim::scenario::SIM_BMC_PASSWORD);
    let o = drctl(store, &["resume", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(history(store, "1").iter().any(|e| e["to"].as_str().is_some_and(|t| t.starts_with("RecreateHost"))));
    assert_three_started_members(store, "baremetal-member-lost after the fix");
    assert_nowhere(store, drctl_sim::scenario::SIM_BMC_PASSWORD, &[&o]);
}

#[test]
fn a_missing_or_malformed_credentials_file_is_refused_before_the_run_is_stored() {
    let (dir, creds_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = dir.path();
    let missing = creds_dir.path().join("absent.yaml").display().to_string();
    let malformed = creds_dir.path().join("bad.yaml");
    std::fs::write(&malformed, "username: admin\npassword planted-Malformed-51f0\n").unwrap();
    for (file, says) in [(missing.clone(), "no such file"), (malformed.display().to_string(), "line 2 is not `key: value`")] {
        let mut args = vec!["run", "replace-etcd-member-baremetal", "--sim", "baremetal-member-lost", "--yes", "--node", "master-0"];
        let flags = new_host_flags(&file);
        args.extend(flags.iter().map(String::as_str));
        let o = drctl(store, &args);
        assert_ne!(o.status.code(), Some(0), "{}", text(&o));
        assert!(text(&o).contains(says) && text(&o).contains(&file), "{}", text(&o));
        assert!(!text(&o).contains("planted-Malformed"), "{}", text(&o));
    }
    let o = drctl(store, &["run", "replace-etcd-member-baremetal", "--sim", "baremetal-member-lost", "--yes", "--node", "master-0"]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("needs --bmc-address URL, --boot-mac-address MAC, --bmc-credentials FILE"), "{}", text(&o));
    let listed = drctl(store, &["status", "-o", "json"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("replace-etcd-member-baremetal"), "{}", text(&listed));
}
