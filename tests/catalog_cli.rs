//! The procedure catalog as a user meets it: `drctl procedures`, help texts citing public
//! documents, and `--yes` approving exactly the gates of the procedure being run.

mod common;
use common::*;

#[test]
fn procedures_lists_every_catalog_row_with_family_and_public_reference() {
    let dir = tempfile::tempdir().unwrap();
    let o = drctl(dir.path(), &["procedures", "-o", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let rows = json(&o);
    let rows = rows.as_array().expect("a list");
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    for want in ["etcd-backup", "restore-cluster-state"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for r in rows {
        assert!(matches!(r["family"].as_str(), Some("standalone" | "hosted")), "{r}");
        let reference = r["reference"].as_str().unwrap();
        assert!(reference.starts_with("OpenShift Container Platform 4."), "{reference}");
        assert!(r["version"].as_u64().unwrap() >= 1, "{r}");
        assert!(!r["capabilities"].as_array().unwrap().is_empty(), "{r}");
        assert!(!r["scenarios"].as_array().unwrap().is_empty(), "{r}");
    }
    let restore = rows.iter().find(|r| r["name"] == "restore-cluster-state").unwrap();
    assert_eq!(
        restore["reference"],
        "OpenShift Container Platform 4.14, Backup and restore, §5.4.2.2 Restoring to a previous cluster state"
    );
    assert_eq!(restore["gates"], serde_json::json!(["start"]));

    let table = drctl(dir.path(), &["procedures"]);
    assert!(table.status.success(), "{}", text(&table));
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(table.contains("follows OpenShift Container Platform 4.14, Backup and restore, §5.1.1 Backing up etcd data"), "{table}");
    // Product text cites public documents, never the runbook files kept beside the code.
    for out in [String::from_utf8_lossy(&o.stdout).to_string(), table] {
        assert!(!out.to_ascii_lowercase().contains("seed"), "{out}");
    }
    for p in ["restore-cluster-state", "etcd-backup"] {
        let help = drctl(dir.path(), &["run", "--help"]);
        let help = String::from_utf8_lossy(&help.stdout).to_string();
        assert!(!help.contains("seed 0"), "run --help cites an internal file: {help}");
        let help = drctl(dir.path(), &["run", p, "--help"]);
        let help = String::from_utf8_lossy(&help.stdout).to_string();
        assert!(help.contains("OpenShift Container Platform 4.14, Backup and restore, §5."), "{p}: {help}");
        assert!(!help.contains("seed 0"), "{p} --help cites an internal file: {help}");
    }
}

#[test]
fn yes_approves_the_gates_of_the_procedure_being_run_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["run", "etcd-backup", "--sim", "healthy", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let approvals: Vec<String> =
        history(store, "1").iter().filter(|e| e["outcome"] == "Approved").map(|e| e["detail"].to_string()).collect();
    assert!(approvals.is_empty(), "etcd-backup has no gate, yet --yes approved {approvals:?}");

    let o = drctl(store, &["run", "restore-cluster-state", "--sim", "quorum-loss", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let approvals: Vec<String> = history(store, "2")
        .iter()
        .filter(|e| e["outcome"] == "Approved")
        .map(|e| e["detail"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(approvals.len(), 1, "{approvals:?}");
    assert!(approvals[0].starts_with("start pre-approved by "), "{approvals:?}");
}

#[test]
fn a_halted_run_points_to_the_public_runbook_it_follows() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    // A restore told to work on master-1, whose machine is gone: SSH never answers and the run
    // halts when its deadline is spent.
    let o = drctl(
        store,
        &["run", "restore-cluster-state", "--sim", "quorum-loss", "--recovery-host", "master-1", "--deadline", "10m", "--yes"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("runbook: OpenShift Container Platform 4.14, Backup and restore, §5.4.2.2"), "{out}");
    let o = drctl(store, &["status", "1"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("follows:    OpenShift Container Platform 4.14"), "{}", text(&o));
}

/// Completions, man pages and `--version` come from the same definitions as the commands:
/// every procedure of the catalog is in them, and the version names the commit.
#[test]
fn completions_man_pages_and_version_come_from_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let v = drctl(store, &["--version"]);
    let v = String::from_utf8_lossy(&v.stdout).to_string();
    let commit = v.split("(commit ").nth(1).unwrap_or_else(|| panic!("no commit in {v}"));
    assert!(commit.starts_with("unknown") || commit[..12].bytes().all(|b| b.is_ascii_hexdigit()), "{v}");

    for shell in ["bash", "zsh", "fish"] {
        let o = drctl(store, &["completions", shell]);
        assert!(o.status.success(), "{}", text(&o));
        let script = String::from_utf8_lossy(&o.stdout);
        for word in ["restore-cluster-state", "hosted-pause-reconciliation", "sim-world", "recovery-host", "interval"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    assert_eq!(drctl(store, &["completions", "tcsh"]).status.code(), Some(2));

    let o = drctl(store, &["man"]);
    let page = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && page.contains(".TH drctl 1") && page.contains("resume"), "{}", text(&o));
    let pages = dir.path().join("man");
    assert!(drctl(store, &["man", "--out-dir", pages.to_str().unwrap()]).status.success());
    let restore = std::fs::read_to_string(pages.join("drctl-run-restore-cluster-state.1")).unwrap();
    assert!(restore.contains("recovery\\-host") && restore.contains("5.4.2.2"), "{restore}");
}
