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
}
