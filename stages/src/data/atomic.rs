//! Publishing files and directories so a reader never sees half of one.
//!
//! Everything the data module writes is first written beside its destination (same directory,
//! hence same filesystem) under a `.tmp-` name, fsynced, then renamed. A killed fetch or prepare
//! therefore leaves either the old content or the new, never a torn file that a later hash check
//! might accept. The engine has the same primitive; this crate cannot depend on the engine, so
//! it keeps its own copy of these few lines.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::DataError;

/// The directory a temp file for `path` must live in (same filesystem as `path`).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` atomically: temp file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let dir = parent_dir(path);
    fs::create_dir_all(dir).map_err(|e| DataError::io("create directory", dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| DataError::io("create a temp file in", dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| DataError::io("write", tmp.path().to_path_buf(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| DataError::io("sync", tmp.path().to_path_buf(), e))?;
    tmp.persist(path)
        .map_err(|e| DataError::io("rename into", path, e.error))?;
    Ok(())
}

/// Moves the finished file or directory `from` to `to`, replacing what was there.
///
/// `from` must be on the same filesystem (callers stage next to `to`). A directory already at
/// `to` is moved aside first and removed only after the rename succeeded, so a failure in
/// between never loses both.
pub fn publish(from: &Path, to: &Path) -> Result<(), DataError> {
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| DataError::io("create directory", dir, e))?;
    }
    let old = fs::symlink_metadata(to).ok();
    match old {
        Some(meta) if meta.is_dir() => {
            let aside = parent_dir(to).join(format!(
                ".old-{}-{}",
                to.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                std::process::id()
            ));
            fs::rename(to, &aside).map_err(|e| DataError::io("move aside", to, e))?;
            if let Err(e) = fs::rename(from, to) {
                // Put the old content back: better stale than gone.
                let _ = fs::rename(&aside, to);
                return Err(DataError::io("rename into", to, e));
            }
            fs::remove_dir_all(&aside).map_err(|e| DataError::io("remove", aside, e))
        }
        _ => fs::rename(from, to).map_err(|e| DataError::io("rename into", to, e)),
    }
}
