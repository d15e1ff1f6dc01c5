//! `repro.lock`: the record of what every stage last ran with and produced.
//!
//! It is committed with the project (like `Cargo.lock` or `dvc.lock`), so a fresh clone knows
//! which outputs belong to which inputs. One entry per stage: the fingerprint, the full
//! [`Inputs`] it was computed from (so a later run can say *why* a stage is stale, not only that
//! it is), and the digests of the outs the stage produced.
//!
//! The file is JSON with sorted keys: stable diffs in review, and parsing a 1,000-stage lock
//! takes milliseconds. It is always written whole through [`write_atomic`](crate::fsutil::write_atomic)
//! (temp file, fsync, rename): a crash leaves the previous complete file, never a torn one.
//!
//! Writing it whole after every stage would make a run quadratic in its number of stages (a
//! 10,000-stage lock is about 10 MB; DVC's first run is quadratic for exactly this reason). So
//! during a run the executor appends each finished stage's entry to a [`Journal`]
//! (`.repro/lock-journal`, JSON lines, flushed and fsynced in coalesced batches) and writes
//! `repro.lock` whole once, at the end of the run (also after a failure or an interrupt), then
//! deletes the journal. A `kill -9` loses at most the entries not yet flushed, of stages that
//! just finished (and the run cache, written per stage before the journal, still restores those
//! instead of rerunning them). The journal's first line names the sha256 of the `repro.lock` it
//! extends; [`LockFile::load`] replays a journal only onto that very file, so a lock replaced
//! since (a `git checkout`) is never patched with entries that belong to another. The lock's own
//! format is unchanged: a reader that knows nothing of the journal still reads a complete,
//! consistent (if older) lock.
//!
//! `schema` is bumped when the layout changes; an unknown schema is an error that says so,
//! never a silent rerun of everything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fingerprint::{DigestRecord, Inputs};

mod journal;
pub use journal::Journal;

/// Layout version of `repro.lock`.
pub const LOCK_SCHEMA: u32 = 1;

/// The file name, at the workspace root.
pub const LOCK_FILE: &str = "repro.lock";

/// What one stage's last successful run recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LockEntry {
    pub fingerprint: String,
    pub inputs: Inputs,
    /// Digest of every out, keyed by path.
    pub outputs: BTreeMap<String, DigestRecord>,
    /// Copied from the stage: whether rerunning is expected to reproduce the outputs bit for bit.
    pub deterministic: bool,
    /// The values of the stage's metric files when it ran (path -> flattened key -> value), for
    /// `repro metrics diff`. Not part of the fingerprint.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

/// The whole `repro.lock`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LockFile {
    pub schema: u32,
    /// The content hash used throughout (fixed; recorded so a future change is explicit).
    pub hash: String,
    pub stages: BTreeMap<String, LockEntry>,
}

impl Default for LockFile {
    fn default() -> Self {
        LockFile {
            schema: LOCK_SCHEMA,
            hash: "sha256".into(),
            stages: BTreeMap::new(),
        }
    }
}

/// Why `repro.lock` could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LockFileError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` is not a valid lock file: {source}; restore it from version control, or delete it to rerun every stage")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("`{path}` has schema {found}, this repro reads schema {LOCK_SCHEMA}; use a matching repro version")]
    Schema { path: PathBuf, found: u32 },
    #[error("`{path}` line {line} is not a journal entry: {source}; delete it (the stages it recorded will be restored from the run cache)")]
    Journal {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl LockFile {
    /// Reads `repro.lock` in `root` (a missing file is an empty lock), with the entries of an
    /// interrupted run's [`Journal`] applied.
    pub fn load(root: &Path) -> Result<LockFile, LockFileError> {
        let path = root.join(LOCK_FILE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(LockFileError::Read { path, source }),
        };
        let mut lock = if text.is_empty() {
            LockFile::default()
        } else {
            Self::parse(&path, &text)?
        };
        journal::replay(root, &text, &mut lock)?;
        Ok(lock)
    }

    fn parse(path: &Path, text: &[u8]) -> Result<LockFile, LockFileError> {
        let path = path.to_path_buf();
        #[derive(Deserialize)]
        struct Header {
            schema: u32,
        }
        let header: Header =
            serde_json::from_slice(text).map_err(|source| LockFileError::Parse {
                path: path.clone(),
                source,
            })?;
        if header.schema != LOCK_SCHEMA {
            return Err(LockFileError::Schema {
                path,
                found: header.schema,
            });
        }
        serde_json::from_slice(text).map_err(|source| LockFileError::Parse { path, source })
    }

    /// Writes `repro.lock` in `root` atomically.
    pub fn save(&self, root: &Path) -> Result<(), LockFileError> {
        let path = root.join(LOCK_FILE);
        let mut text = serde_json::to_vec_pretty(self).expect("lock entries serialize");
        text.push(b'\n');
        crate::fsutil::write_atomic(&path, &text)
            .map_err(|source| LockFileError::Write { path, source })
    }
}
