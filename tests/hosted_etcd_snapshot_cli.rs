//! hosted-etcd-snapshot through the real `drctl` binary against the simulated management cluster
//! and its object store: a backup across a SIGKILL of the runner, an abort mid-way, refusals,
//! and the encryption key never leaving the cluster and the bucket.

mod common;
use common::*;

const BUCKET: &str = "s3://drctl-hcp-backups/hcp";

fn hosted_example(st: &serde_json::Value) -> serde_json::Value {
    let hcs = st["hosted_clusters"].as_array().unwrap_or_else(|| panic!("no hosted_clusters in {st:#}"));
    hcs.iter().find(|h| h["name"] == "example").expect("clusters/example").clone()
}

/// The cluster as before the run: unpaused, Available, every API server at 3 of 3, no snapshot
/// file on a PVC.
fn assert_left_as_it_was(st: &serde_json::Value) {
    let hc = hosted_example(st);
    assert!(hc["paused_until"].is_null() && hc["control_plane_paused_until"].is_null(), "{hc:#}");
    assert_eq!(hc["available"], true, "{hc:#}");
    let servers = hc["api_servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3, "{hc:#}");
    assert!(servers.iter().all(|d| d["replicas"] == 3 && d["ready_replicas"] == 3), "{hc:#}");
    assert_eq!(hc["snapshot_files"].as_array().map(Vec::len), Some(0), "{hc:#}");
}

fn objects(st: &serde_json::Value) -> Vec<serde_json::Value> {
    st["objects"].as_array().cloned().unwrap_or_default()
}

/// Every file under `dir` but the simulated world (which holds the cluster's key, as a cluster
/// does), recursively.
fn files_but_the_world(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        match p.is_dir() {
            true => out.extend(files_but_the_world(&p)),
            false if p.extension().is_some_and(|e| e == "world") => {}
            false => out.push(p),
        }
    }
    out
}

#[test]
fn a_backup_survives_a_crash_is_verified_and_leaves_the_cluster_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["sim", "new", "hosted-healthy", "--name", "lab", "--seed", "4"]);
    assert!(o.status.success(), "{}", text(&o));
    let args = ["run", "hosted-etcd-snapshot", "--sim-world", "lab", "--name", "example", "--bucket", BUCKET, "--yes"];
    // Killed with the API servers down and the snapshot on the PVC, before its upload.
    let said = kill_when_it_says(store, &args, "Upload(attempt 1) (running)");
    assert!(said.contains("SaveSnapshot(etcd-0)") && said.contains("CheckSnapshot(etcd-0)"), "{said}");
    let mid = hosted_example(&sim_status(store));
    assert_eq!(mid["paused_until"], "true", "{mid:#}");
    assert!(mid["api_servers"].as_array().unwrap().iter().all(|d| d["replicas"] == 0), "{mid:#}");
    assert_eq!(mid["snapshot_files"][0], "etcd-0:/var/lib/data/snapshot.db", "{mid:#}");

    let o = drctl(store, &["resume", "1"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("backed up the etcd of HostedCluster clusters/example: s3://drctl-hcp-backups/hcp/example-1-snapshot.db"),
        "{out}"
    );
    let st = sim_status(store);
    assert_left_as_it_was(&st);
    // The snapshot, the key and the manifest naming them, nothing else.
    let objects = objects(&st);
    let keys: Vec<&str> = objects.iter().map(|o| o["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["hcp/example-1-etcd-encryption-key", "hcp/example-1-snapshot.db", "hcp/example-backup.json"], "{st:#}");
    let snapshot = &objects[1];
    let revision = hosted_example(&st)["etcd"]["revision"].as_u64().unwrap();
    assert!(out.contains(&format!("sha256 {}, revision {revision}", snapshot["sha256"].as_str().unwrap())), "{out}");
    assert_eq!(objects[0]["size"], 32, "{st:#}");

    // The key is in the cluster and the bucket, nowhere drctl writes or says.
    let key = drctl_sim::scenario::hosted_encryption_key(4);
    let planted = [String::from_utf8(key.clone()).unwrap(), base64_of(&key)];
    let history = drctl(store, &["history", "1", "-o", "json"]);
    for p in &planted {
        assert!(!out.contains(p.as_str()) && !text(&history).contains(p.as_str()) && !said.contains(p.as_str()), "the key leaked");
        let files = files_but_the_world(store);
        assert!(!files.is_empty());
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            assert!(!bytes.windows(p.len()).any(|w| w == p.as_bytes()), "the key is in {}", f.display());
        }
    }
}

fn base64_of(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() { A[(n >> (18 - 6 * i)) as usize & 63] as char } else { '=' });
        }
    }
    out
}

#[test]
fn an_abort_mid_way_deletes_what_it_uploaded_and_brings_the_api_servers_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["sim", "new", "hosted-healthy", "--name", "lab", "--seed", "5"]);
    assert!(o.status.success(), "{}", text(&o));
    let args = ["run", "hosted-etcd-snapshot", "--sim-world", "lab", "--name", "example", "--bucket", BUCKET, "--yes"];
    kill_when_it_says(store, &args, "SaveEncryptionKey (running)");
    assert!(!objects(&sim_status(store)).is_empty(), "the snapshot was uploaded before the kill");
    let o = drctl(store, &["abort", "1"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(5), "{out}");
    assert!(out.contains("aborted: no backup recorded"), "{out}");
    let st = sim_status(store);
    assert_left_as_it_was(&st);
    assert_eq!(objects(&st), Vec::<serde_json::Value>::new(), "{st:#}");
    let states: Vec<String> = history(store, "1").iter().filter_map(|e| e["to"].as_str().map(str::to_string)).collect();
    let undo = ["DeleteUnrecorded", "RemoveSnapshotFile", "ScaleUpWriters", "WaitWritersUp", "Unpause"];
    for s in undo {
        assert!(states.iter().any(|x| x == s), "{s} not in {states:?}");
    }
}

#[test]
fn a_missing_bucket_or_a_bad_location_is_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["sim", "new", "hosted-healthy", "--name", "lab", "--seed", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = drctl(
        store,
        &["run", "hosted-etcd-snapshot", "--sim-world", "lab", "--name", "example", "--bucket", "s3://no-such-bucket", "--yes"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("NoSuchBucket (HTTP 404)"), "{}", text(&o));
    let states: Vec<String> = history(store, "1").iter().filter_map(|e| e["to"].as_str().map(str::to_string)).collect();
    assert!(states.iter().all(|s| s == "Inspect"), "{states:?}");
    assert_left_as_it_was(&sim_status(store));
    // Not an s3:// location: refused before a run is stored.
    let o =
        drctl(store, &["run", "hosted-etcd-snapshot", "--sim-world", "lab", "--name", "example", "--bucket", "drctl-hcp-backups", "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("it must start with s3://"), "{}", text(&o));
    assert_eq!(drctl(store, &["history", "2"]).status.code(), Some(1), "a run was stored");
}
