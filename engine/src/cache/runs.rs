//! The run cache: stage fingerprint -> the record the executor wrote for that run.
//!
//! The record is opaque JSON here (the executor owns its schema); this module decides only
//! where it lives (`runs/<fp[..2]>/<fp>.json`), that keys cannot escape that directory, and that
//! a write is atomic (temp file, fsync, rename), so a reader never sees half a record.

use std::fs;
use std::io;
use std::path::PathBuf;

use super::{CacheError, Store};
use crate::fsutil::fs_err;

impl Store {
    pub(crate) fn run_path(&self, fingerprint: &str) -> Result<PathBuf, CacheError> {
        let ok = (3..=128).contains(&fingerprint.len())
            && fingerprint
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(CacheError::BadFingerprint {
                fingerprint: fingerprint.to_owned(),
            });
        }
        Ok(self
            .root
            .join("runs")
            .join(&fingerprint[..2])
            .join(format!("{fingerprint}.json")))
    }

    /// The record stored for `fingerprint`, if any. A record that is not valid JSON is an
    /// error (it was damaged outside repro: writes are atomic), not a silent miss.
    pub fn run_get(&self, fingerprint: &str) -> Result<Option<serde_json::Value>, CacheError> {
        let path = self.run_path(fingerprint)?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fs_err("read", &path)(e).into()),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| CacheError::BadRunEntry { path, source })
    }

    /// Stores `record` for `fingerprint`, replacing any previous one atomically.
    pub fn run_put(&self, fingerprint: &str, record: &serde_json::Value) -> Result<(), CacheError> {
        let path = self.run_path(fingerprint)?;
        let mut bytes = serde_json::to_vec(record).map_err(|source| CacheError::BadRunEntry {
            path: path.clone(),
            source,
        })?;
        bytes.push(b'\n');
        crate::fsutil::write_atomic(&path, &bytes).map_err(fs_err("write", &path))?;
        Ok(())
    }

    /// Every run-cache entry: (fingerprint, path).
    pub(crate) fn run_entries(&self) -> Result<Vec<(String, PathBuf)>, CacheError> {
        let mut out = Vec::new();
        let runs = self.root.join("runs");
        for shard in fs::read_dir(&runs).map_err(fs_err("read directory", &runs))? {
            let shard = shard.map_err(fs_err("read directory", &runs))?.path();
            if !shard.is_dir() {
                continue;
            }
            for e in fs::read_dir(&shard).map_err(fs_err("read directory", &shard))? {
                let p = e.map_err(fs_err("read directory", &shard))?.path();
                let Some(fp) = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".json"))
                else {
                    continue;
                };
                out.push((fp.to_owned(), p));
            }
        }
        Ok(out)
    }
}
