//! The world's backup location as a real directory, laid out as `DirBackupStore` reads it
//! (`<root>/<set>/snapshot_<ts>.db`, `static_kuberesources_<ts>.tar.gz`, `backup-info.json`),
//! and back: what a run copied there becomes the world's backups again.

use drctl_sim::host_shell::{file_bytes, file_from_bytes};
use drctl_sim::world::{BackupSet, World};
use std::path::Path;

const INFO: &str = "backup-info.json";

/// Write every backup set of the world under `root` (sets already there are replaced).
pub fn materialize(w: &World, root: &Path) -> Result<(), String> {
    for (name, set) in &w.backups {
        let dir = root.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (file, f) in &set.files {
            crate::write_private(&dir.join(file), &file_bytes(f))?;
        }
        if let Some(info) = &set.info {
            let json = serde_json::to_vec_pretty(info).map_err(|e| format!("backup info of {name}: {e}"))?;
            crate::write_private(&dir.join(INFO), &json)?;
        }
    }
    Ok(())
}

/// Read the backup sets under `root` into the world, replacing its own.
pub fn absorb(root: &Path, w: &mut World) -> Result<(), String> {
    let mut sets = std::collections::BTreeMap::new();
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", root.display())),
    };
    for set in rd.flatten().filter(|e| e.path().is_dir()) {
        let name = set.file_name().to_string_lossy().into_owned();
        let mut files = std::collections::BTreeMap::new();
        let mut info = None;
        for f in std::fs::read_dir(set.path()).map_err(|e| format!("{}: {e}", set.path().display()))?.flatten() {
            let file = f.file_name().to_string_lossy().into_owned();
            if file.starts_with('.') || file.ends_with(".part") {
                continue;
            }
            let bytes = std::fs::read(f.path()).map_err(|e| format!("{}: {e}", f.path().display()))?;
            if file == INFO {
                info = Some(serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", f.path().display()))?);
            } else {
                files.insert(file, file_from_bytes(&bytes));
            }
        }
        sets.insert(name, BackupSet { files, info });
    }
    w.backups = sets;
    Ok(())
}
