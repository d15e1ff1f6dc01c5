//! Store maintenance: garbage collection and integrity checks.
//!
//! `gc` keeps exactly what the caller names (`keep`: for a directory digest, its manifest and
//! every file it lists) and deletes every other object; then it prunes run-cache entries that
//! refer to objects no longer stored, so the run cache never promises outputs it cannot
//! restore (DVC#9420). Unreadable run entries are pruned too. Leftover temp files older than
//! [`STALE_TEMP`] (from a killed process) are removed; younger ones may belong to a live insert.
//!
//! `fsck` re-hashes every object in parallel and reports (and quarantines) those whose bytes do
//! not match their name. It does not judge run entries: their schema belongs to the executor.

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rayon::prelude::*;

use super::{CacheError, Store};
use crate::fsutil::fs_err;
use crate::hash::{is_sha256_hex, stream_sha256, Digest};

/// Temp files at least this old are debris of a killed process.
pub const STALE_TEMP: Duration = Duration::from_secs(3600);

/// What [`Store::gc`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcStats {
    pub objects_kept: u64,
    pub objects_removed: u64,
    pub bytes_removed: u64,
    pub runs_kept: u64,
    pub runs_removed: u64,
    pub temps_removed: u64,
}

/// One thing [`Store::collect`] deletes (or would delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcItem {
    Object { sha256: String, bytes: u64 },
    RunEntry { fingerprint: String },
}

impl Store {
    /// Every object in the store: (sha256, path). Stray names are ignored.
    pub(crate) fn objects(&self) -> Result<Vec<(String, PathBuf)>, CacheError> {
        let root = self.root.join("objects");
        let mut out = Vec::new();
        for shard in fs::read_dir(&root).map_err(fs_err("read directory", &root))? {
            let shard = shard.map_err(fs_err("read directory", &root))?;
            let prefix = shard.file_name();
            let (Some(prefix), true) = (prefix.to_str(), shard.path().is_dir()) else {
                continue;
            };
            let dir = shard.path();
            for e in fs::read_dir(&dir).map_err(fs_err("read directory", &dir))? {
                let e = e.map_err(fs_err("read directory", &dir))?;
                if let Some(rest) = e.file_name().to_str() {
                    let id = format!("{prefix}{rest}");
                    if is_sha256_hex(&id) {
                        out.push((id, e.path()));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Deletes objects not reachable from `keep` (a directory digest keeps its manifest and
    /// files), then run-cache entries that reference objects no longer stored (`run_refs` says
    /// which digests an entry needs) or that cannot be parsed.
    pub fn gc(
        &self,
        keep: &[Digest],
        run_refs: &dyn Fn(&serde_json::Value) -> Vec<Digest>,
    ) -> Result<GcStats, CacheError> {
        self.collect(keep, run_refs, false, &mut |_| {})
    }

    /// [`gc`](Self::gc), or with `dry_run` only what it would do: every object and run entry it
    /// would delete goes to `each`, and the stats are the ones the real collection would
    /// return (a run entry is judged by whether its objects survive, not by whether they are
    /// still on disk, so the dry run's counts agree with the real one's).
    pub fn collect(
        &self,
        keep: &[Digest],
        run_refs: &dyn Fn(&serde_json::Value) -> Vec<Digest>,
        dry_run: bool,
        each: &mut dyn FnMut(GcItem),
    ) -> Result<GcStats, CacheError> {
        let mut stats = GcStats::default();
        let mut reachable: HashSet<String> = HashSet::new();
        for d in keep {
            reachable.insert(d.sha256.clone());
            if d.is_dir() {
                // A missing or damaged manifest keeps nothing more; `contains` reports it.
                if let Ok(m) = self.load_manifest(&d.sha256) {
                    reachable.extend(m.entries.into_iter().map(|e| e.sha256));
                }
            }
        }
        for (id, path) in self.objects()? {
            if reachable.contains(&id) {
                stats.objects_kept += 1;
                continue;
            }
            let len = fs::metadata(&path).map_or(0, |m| m.len());
            if !dry_run {
                fs::remove_file(&path).map_err(fs_err("remove", &path))?;
            }
            each(GcItem::Object {
                sha256: id,
                bytes: len,
            });
            stats.objects_removed += 1;
            stats.bytes_removed += len;
        }
        // Whether `d` is stored once the unreachable objects are gone.
        let survives = |d: &Digest| {
            self.contains(d)
                && reachable.contains(&d.sha256)
                && (!d.is_dir()
                    || self
                        .load_manifest(&d.sha256)
                        .is_ok_and(|m| m.entries.iter().all(|e| reachable.contains(&e.sha256))))
        };
        for (fp, path) in self.run_entries()? {
            let keep_entry = match self.run_get(&fp) {
                Ok(Some(v)) => run_refs(&v).iter().all(survives),
                Ok(None) => continue,
                Err(_) => false,
            };
            if keep_entry {
                stats.runs_kept += 1;
            } else {
                if !dry_run {
                    fs::remove_file(&path).map_err(fs_err("remove", &path))?;
                }
                each(GcItem::RunEntry { fingerprint: fp });
                stats.runs_removed += 1;
            }
        }
        if !dry_run {
            stats.temps_removed = self.remove_stale_temps()?;
            self.remove_empty_shards();
        }
        Ok(stats)
    }

    fn remove_stale_temps(&self) -> Result<u64, CacheError> {
        let dir = self.tmp_dir();
        let now = SystemTime::now();
        let mut n = 0;
        for e in fs::read_dir(&dir).map_err(fs_err("read directory", &dir))? {
            let path = e.map_err(fs_err("read directory", &dir))?.path();
            let old = fs::symlink_metadata(&path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= STALE_TEMP);
            if old {
                fs::remove_file(&path).map_err(fs_err("remove", &path))?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn remove_empty_shards(&self) {
        for sub in ["objects", "runs"] {
            if let Ok(rd) = fs::read_dir(self.root.join(sub)) {
                for e in rd.flatten() {
                    // Fails (harmlessly) unless the shard is empty.
                    let _ = fs::remove_dir(e.path());
                }
            }
        }
    }

    /// Re-hashes every object; returns the ids (sorted) of those whose bytes do not match
    /// their name, after moving them to quarantine so no run trusts them again.
    pub fn fsck(&self) -> Result<Vec<String>, CacheError> {
        let results: Vec<Result<Option<String>, CacheError>> = self
            .objects()?
            .into_par_iter()
            .map(|(id, path)| {
                let mut f = fs::File::open(&path).map_err(fs_err("open", &path))?;
                let (sha, _) = stream_sha256(&mut f).map_err(fs_err("read", &path))?;
                Ok((hex::encode(sha) != id).then_some(id))
            })
            .collect();
        let mut corrupt = Vec::new();
        for r in results {
            if let Some(id) = r? {
                let _ = self.quarantine(&id);
                corrupt.push(id);
            }
        }
        corrupt.sort();
        Ok(corrupt)
    }
}
