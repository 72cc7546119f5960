//! [`BackupStore`] on a local (or mounted) directory: backup set `<root>/<backup>/` holds the
//! files copied from the host (`snapshot_<ts>.db`, `static_kuberesources_<ts>.tar.gz`) and
//! `backup-info.json`, written last, so a set with an info file is complete.

use crate::ssh::{backup_set_dir, BACKUP_INFO_FILE};
use drctl_workflows::ports::{BackupInfo, BackupStore, PortError, PortResult};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct DirBackupStore {
    root: PathBuf,
}

impl DirBackupStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirBackupStore { root: root.into() }
    }
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }
}

impl BackupStore for DirBackupStore {
    fn list(&self, backup: &str) -> PortResult<Vec<String>> {
        let dir = backup_set_dir(&self.root, backup)?;
        let rd = std::fs::read_dir(&dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PortError::NotFound(format!("backup set {backup} ({})", dir.display())),
            _ => PortError::Permanent(format!("backup set {backup} ({}): {e}", dir.display())),
        })?;
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.') && !n.ends_with(".part"))
            .collect();
        names.sort();
        Ok(names)
    }

    fn info(&self, backup: &str) -> PortResult<Option<BackupInfo>> {
        let p = backup_set_dir(&self.root, backup)?.join(BACKUP_INFO_FILE);
        match std::fs::read(&p) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| PortError::Permanent(format!("{} is not a backup info file: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PortError::Permanent(format!("{}: {e}", p.display()))),
        }
    }

    fn cluster_version(&self, backup: &str) -> PortResult<Option<String>> {
        if let Some(info) = self.info(backup)? {
            return Ok(Some(info.cluster_version));
        }
        let names = self.list(backup)?;
        let Some(snapshot) = names.iter().find(|n| drctl_workflows::backup_files::is_snapshot(n)) else { return Ok(None) };
        let path = backup_set_dir(&self.root, backup)?.join(snapshot);
        snapshot_cluster_version(&path).map_err(|e| PortError::Permanent(format!("read {}: {e}", path.display())))
    }
}

/// The etcd key of the cluster version object (a custom resource, stored as JSON).
const CLUSTER_VERSION_KEY: &[u8] = b"/kubernetes.io/config.openshift.io/clusterversions/version";
/// How much of a stored value is read after its key: a ClusterVersion with a long update history
/// is tens of kilobytes.
const VALUE_WINDOW: usize = 4 << 20;

/// The cluster version recorded in an etcd snapshot file, read without etcd: the snapshot is a
/// bbolt file whose values are `mvccpb.KeyValue` messages, each contiguous in the file. Of every
/// copy of the clusterversion key found (older revisions and freed pages may remain), the one
/// with the highest `mod_revision` is the snapshot's; its `status.desired.version` (else the
/// newest history entry) is the release. Streams the file: snapshots are gigabytes.
pub fn snapshot_cluster_version(path: &std::path::Path) -> std::io::Result<Option<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    // Offsets just past each `0a <len> <key>` (protobuf field 1, the key).
    let mut found = vec![];
    let (mut buf, mut base) = (vec![0u8; 8 << 20], 0u64);
    let keep = CLUSTER_VERSION_KEY.len() + 2;
    let mut filled = 0;
    loop {
        let n = f.read(&mut buf[filled..])?;
        let end = filled + n;
        let window = &buf[..end];
        let mut i = 0;
        while let Some(at) = find(&window[i..], CLUSTER_VERSION_KEY) {
            let k = i + at;
            if k >= 2 && window[k - 2] == 0x0a && usize::from(window[k - 1]) == CLUSTER_VERSION_KEY.len() {
                found.push(base + (k + CLUSTER_VERSION_KEY.len()) as u64);
            }
            i = k + 1;
        }
        if n == 0 {
            break;
        }
        // Keep the tail, in case a key straddles two reads.
        let tail = end.saturating_sub(keep);
        buf.copy_within(tail..end, 0);
        base += tail as u64;
        filled = end - tail;
    }
    let mut best: Option<(u64, Vec<u8>)> = None;
    for at in found {
        f.seek(SeekFrom::Start(at))?;
        let mut rest = Vec::new();
        f.by_ref().take(VALUE_WINDOW as u64).read_to_end(&mut rest)?;
        if let Some((mod_revision, value)) = key_value_fields(&rest) {
            if best.as_ref().is_none_or(|(r, _)| mod_revision > *r) {
                best = Some((mod_revision, value.to_vec()));
            }
        }
    }
    let Some((_, value)) = best else { return Ok(None) };
    let cv: serde_json::Value = serde_json::from_slice(&value).map_err(|e| std::io::Error::other(format!("clusterversion: {e}")))?;
    let version = cv
        .pointer("/status/desired/version")
        .or_else(|| cv.pointer("/status/history/0/version"))
        .and_then(serde_json::Value::as_str)
        .filter(|v| !v.is_empty());
    Ok(version.map(str::to_string))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// After the key of an `mvccpb.KeyValue`: its `mod_revision` (field 3) and `value` (field 5).
/// `None` when the bytes are not such a message (a stray copy of the key, a cut-off value).
fn key_value_fields(b: &[u8]) -> Option<(u64, &[u8])> {
    let (mut i, mut mod_revision, mut value) = (0, None, None);
    while i < b.len() && value.is_none() {
        let (tag, n) = varint(&b[i..])?;
        i += n;
        match (tag >> 3, tag & 7) {
            (2..=4 | 6, 0) => {
                let (v, n) = varint(&b[i..])?;
                if tag >> 3 == 3 {
                    mod_revision = Some(v);
                }
                i += n;
            }
            (5, 2) => {
                let (len, n) = varint(&b[i..])?;
                let start = i + n;
                let end = start.checked_add(usize::try_from(len).ok()?)?;
                value = Some(b.get(start..end)?);
            }
            _ => return None,
        }
    }
    Some((mod_revision?, value?))
}

/// A protobuf varint and its length in bytes.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().take(10).enumerate() {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `mvccpb.KeyValue` as etcd marshals it.
    fn kv(key: &[u8], create: u8, modified: u8, version: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![0x0a, key.len() as u8];
        out.extend_from_slice(key);
        out.extend([0x10, create, 0x18, modified, 0x20, version, 0x2a]);
        let len = value.len();
        out.extend([(len & 0x7f) as u8 | 0x80, (len >> 7) as u8]);
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn the_newest_clusterversion_in_a_snapshot_is_read() {
        let cv = |v: &str| {
            format!(
                r#"{{"apiVersion":"config.openshift.io/v1","kind":"ClusterVersion","status":{{"desired":{{"version":"{v}","image":"quay.io/x@sha256:00"}},"history":[{{"state":"Completed","version":"{v}"}}]}},"spec":{{"channel":"stable-4.15","clusterID":"{}"}}}}"#,
                "a".repeat(200)
            )
        };
        let dir = std::env::temp_dir().join(format!("drctl-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("snapshot_x.db");
        // A freed page keeps an older copy; the current one has the higher mod_revision. Filler
        // pushes the current copy across the reader's 8 MiB boundary.
        let mut file = vec![0u8; 4096];
        file.extend(kv(CLUSTER_VERSION_KEY, 5, 90, 3, cv("4.15.2").as_bytes()));
        file.resize((8 << 20) - 20, 0);
        file.extend(kv(CLUSTER_VERSION_KEY, 5, 120, 4, cv("4.15.3").as_bytes()));
        file.extend(kv(b"/kubernetes.io/configmaps/ns/cm", 7, 121, 1, b"{}"));
        std::fs::write(&path, &file).unwrap();
        assert_eq!(snapshot_cluster_version(&path).unwrap().as_deref(), Some("4.15.3"));
        // No clusterversion at all, or only a cut-off copy: nothing to say.
        std::fs::write(&path, kv(b"/kubernetes.io/configmaps/ns/cm", 7, 121, 1, b"{}")).unwrap();
        assert_eq!(snapshot_cluster_version(&path).unwrap(), None);
        let cut = kv(CLUSTER_VERSION_KEY, 5, 90, 3, cv("4.15.2").as_bytes());
        std::fs::write(&path, &cut[..cut.len() - 10]).unwrap();
        assert_eq!(snapshot_cluster_version(&path).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
