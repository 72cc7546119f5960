//! The file names of one etcd backup, as `cluster-backup.sh` writes them: a snapshot
//! `snapshot_<datetimestamp>.db` and the static pod resources
//! `static_kuberesources_<datetimestamp>.tar.gz`, both stamped alike (the stamp sorts by time).
//! The one place these rules live: the procedures, the ssh adapter and the simulator use them,
//! so a snapshot is never paired with the resources of another backup.

const SNAPSHOT: (&str, &str) = ("snapshot_", ".db");
const RESOURCES: (&str, &str) = ("static_kuberesources_", ".tar.gz");

fn stamp_of<'a>(name: &'a str, (prefix, suffix): (&str, &str)) -> Option<&'a str> {
    let stamp = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    (!stamp.is_empty() && !stamp.contains('/')).then_some(stamp)
}

/// The stamp of `snapshot_<stamp>.db`.
pub fn snapshot_stamp(name: &str) -> Option<&str> {
    stamp_of(name, SNAPSHOT)
}

/// The stamp of `static_kuberesources_<stamp>.tar.gz`.
pub fn resources_stamp(name: &str) -> Option<&str> {
    stamp_of(name, RESOURCES)
}

pub fn is_snapshot(name: &str) -> bool {
    snapshot_stamp(name).is_some()
}

pub fn is_resources(name: &str) -> bool {
    resources_stamp(name).is_some()
}

pub fn snapshot_name(stamp: &str) -> String {
    format!("{}{stamp}{}", SNAPSHOT.0, SNAPSHOT.1)
}

pub fn resources_name(stamp: &str) -> String {
    format!("{}{stamp}{}", RESOURCES.0, RESOURCES.1)
}

/// The newest snapshot that has the resources of the same backup beside it: `(snapshot,
/// resources)` names. A lone snapshot or lone resources file is no backup.
pub fn newest_complete_pair<S: AsRef<str>>(names: &[S]) -> Option<(String, String)> {
    let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    names
        .iter()
        .filter_map(|f| snapshot_stamp(f))
        .filter(|stamp| names.contains(&resources_name(stamp).as_str()))
        .max()
        .map(|stamp| (snapshot_name(stamp), resources_name(stamp)))
}

/// The one backup a set holds: exactly one snapshot and one resources file, of the same backup.
/// Anything else says what is wrong.
pub fn the_only_pair<S: AsRef<str>>(names: &[S]) -> Result<(String, String), String> {
    let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    let snaps: Vec<&str> = names.iter().copied().filter(|f| is_snapshot(f)).collect();
    let res: Vec<&str> = names.iter().copied().filter(|f| is_resources(f)).collect();
    match (snaps.as_slice(), res.as_slice()) {
        ([s], [r]) if snapshot_stamp(s) == resources_stamp(r) => Ok((s.to_string(), r.to_string())),
        ([s], [r]) => Err(format!("{s} and {r} are not of the same backup")),
        _ => Err(format!(
            "must hold exactly one snapshot_<datetimestamp>.db and one static_kuberesources_<datetimestamp>.tar.gz, holds {} and {}",
            snaps.len(),
            res.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_only_files_of_the_same_backup() {
        let a = ["snapshot_2026-01-05_150000.db", "snapshot_2026-01-05_150300.db", "static_kuberesources_2026-01-05_150300.tar.gz"];
        let pair = ("snapshot_2026-01-05_150300.db".to_string(), "static_kuberesources_2026-01-05_150300.tar.gz".to_string());
        assert_eq!(newest_complete_pair(&a), Some(pair));
        // The newest snapshot lacks its resources, the newest resources lack their snapshot:
        // picking each newest on its own would pair two backups.
        let b = [
            "snapshot_2026-01-05_150000.db",
            "static_kuberesources_2026-01-05_150000.tar.gz",
            "snapshot_2026-01-05_170000.db",
            "static_kuberesources_2026-01-05_180000.tar.gz",
        ];
        assert_eq!(newest_complete_pair(&b).unwrap().0, "snapshot_2026-01-05_150000.db");
        assert_eq!(newest_complete_pair(&["snapshot_2026-01-05_150000.db"]), None);
        assert_eq!(newest_complete_pair(&["snapshot_.db", "static_kuberesources_.tar.gz"]), None);
        assert_eq!(newest_complete_pair(&["snapshot_x/y.db", "static_kuberesources_x/y.tar.gz"]), None);
    }

    #[test]
    fn a_set_holds_exactly_one_backup() {
        assert!(the_only_pair(&a_set("1", "1")).is_ok());
        assert!(the_only_pair(&a_set("1", "2")).unwrap_err().contains("not of the same backup"));
        let mut two = a_set("1", "1");
        two.extend(a_set("2", "2"));
        assert!(the_only_pair(&two).unwrap_err().contains("holds 2 and 2"));
        assert!(the_only_pair(&["backup-info.json"]).is_err());
    }

    fn a_set(s: &str, r: &str) -> Vec<String> {
        vec![snapshot_name(s), resources_name(r), "backup-info.json".into()]
    }
}
