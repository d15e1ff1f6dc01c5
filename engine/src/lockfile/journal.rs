//! The lock journal: `repro.lock` entries of one run, appended as stages finish.
//!
//! `.repro/lock-journal` holds JSON lines. The first names the lock it extends,
//! `{"base": "<sha256 of the repro.lock bytes, or empty for no file>"}`; every later line is one
//! finished stage, `{"stage": NAME, "entry": LockEntry}`, in completion order (a later line for
//! the same stage wins). Lines are buffered and written, then fsynced, in batches
//! ([`Journal::flush`]): appending costs O(1) per stage however large the lock is.
//!
//! Replay ([`replay`]) applies the lines onto the lock they extend and ignores a journal whose
//! base is another file's. A torn last line (the process was killed while writing it) is
//! dropped; a damaged line anywhere else is an error, since skipping it would silently lose a
//! stage that was recorded after it.
//!
//! Only a command that holds the project lock writes a journal, and it first folds any journal
//! left by a killed run into `repro.lock` ([`Journal::start`]), so at most one exists.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{LockEntry, LockFile, LockFileError, LOCK_FILE};

/// Where the journal lives, relative to the workspace root.
pub const JOURNAL_FILE: &str = ".repro/lock-journal";

#[derive(Serialize, Deserialize)]
struct Base {
    base: String,
}

#[derive(Serialize, Deserialize)]
struct Line<S, E> {
    stage: S,
    entry: E,
}

/// The journal of the running command.
pub struct Journal {
    path: PathBuf,
    file: File,
    pending: Vec<u8>,
}

fn sha_of(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        String::new()
    } else {
        hex::encode(Sha256::digest(bytes))
    }
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> LockFileError + '_ {
    move |source| LockFileError::Write {
        path: path.to_owned(),
        source,
    }
}

impl Journal {
    /// Starts the journal of a run on `lock` (as [`LockFile::load`] returned it). A journal left
    /// by a killed run was replayed into `lock` by that load: it is made permanent first, by
    /// writing `repro.lock` whole, so that nothing it holds is lost when the new one begins.
    pub fn start(root: &Path, lock: &LockFile) -> Result<Journal, LockFileError> {
        let path = root.join(JOURNAL_FILE);
        if path.exists() {
            lock.save(root)?;
        }
        let base = match std::fs::read(root.join(LOCK_FILE)) {
            Ok(bytes) => sha_of(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(LockFileError::Read {
                    path: root.join(LOCK_FILE),
                    source,
                })
            }
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write_err(&path))?;
        }
        let mut file = File::create(&path).map_err(write_err(&path))?;
        let mut first = serde_json::to_vec(&Base { base }).expect("serializes");
        first.push(b'\n');
        file.write_all(&first)
            .and_then(|()| file.sync_data())
            .map_err(write_err(&path))?;
        Ok(Journal {
            path,
            file,
            pending: Vec::new(),
        })
    }

    /// Records `entry` as `stage`'s new lock entry (written at the next [`Journal::flush`]).
    pub fn append(&mut self, stage: &str, entry: &LockEntry) {
        serde_json::to_writer(&mut self.pending, &Line { stage, entry }).expect("serializes");
        self.pending.push(b'\n');
    }

    /// Whether appended entries wait for a flush.
    pub fn is_dirty(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes the appended entries and waits until they are on disk.
    pub fn flush(&mut self) -> Result<(), LockFileError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(&self.pending)
            .and_then(|()| self.file.sync_data())
            .map_err(write_err(&self.path))?;
        self.pending.clear();
        Ok(())
    }

    /// Ends the run: `lock` (which holds every appended entry), when given, is written whole,
    /// then the journal is deleted. A kill in between leaves a journal that replays to the same
    /// lock.
    pub fn finish(self, root: &Path, lock: Option<&LockFile>) -> Result<(), LockFileError> {
        if let Some(lock) = lock {
            lock.save(root)?;
        }
        drop(self.file);
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(LockFileError::Write {
                path: self.path,
                source,
            }),
        }
    }
}

/// Applies the journal in `root` (if any, and if it extends exactly `lock_bytes`) to `lock`.
pub(super) fn replay(
    root: &Path,
    lock_bytes: &[u8],
    lock: &mut LockFile,
) -> Result<(), LockFileError> {
    let path = root.join(JOURNAL_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(LockFileError::Read { path, source }),
    };
    let mut lines = text.split_inclusive(|&b| b == b'\n');
    let Some(first) = lines.next() else {
        return Ok(());
    };
    match serde_json::from_slice::<Base>(first) {
        Ok(b) if b.base == sha_of(lock_bytes) => {}
        // Another lock's journal, or a torn first line: nothing of it belongs to this lock.
        _ => return Ok(()),
    }
    for (i, line) in lines.enumerate() {
        if !line.ends_with(b"\n") {
            // Torn by a kill while it was written: never flushed, so never promised.
            break;
        }
        let parsed: Line<String, LockEntry> =
            serde_json::from_slice(line).map_err(|source| LockFileError::Journal {
                path: path.clone(),
                line: i + 2,
                source,
            })?;
        lock.stages.insert(parsed.stage, parsed.entry);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn entry(fp: &str) -> LockEntry {
        LockEntry {
            fingerprint: fp.into(),
            inputs: crate::fingerprint::Inputs {
                action: crate::fingerprint::ActionRecord::Cmd(vec![format!("echo {fp}")]),
                wdir: String::new(),
                params: BTreeMap::new(),
                deps: BTreeMap::new(),
                outs: Vec::new(),
                env: BTreeMap::new(),
            },
            outputs: BTreeMap::new(),
            deterministic: true,
            metrics: BTreeMap::new(),
        }
    }

    #[test]
    fn a_killed_run_keeps_every_flushed_entry_and_only_those() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let mut lock = LockFile::default();
        lock.stages.insert("old".into(), entry("o"));
        lock.save(root).unwrap();

        let mut j = Journal::start(root, &LockFile::load(root).unwrap()).unwrap();
        j.append("a", &entry("a1"));
        j.append("b", &entry("b1"));
        j.flush().unwrap();
        j.append("a", &entry("a2"));
        j.flush().unwrap();
        j.append("c", &entry("never flushed"));
        // Killed here: the journal stays, repro.lock is the old one.
        std::mem::forget(j);

        let loaded = LockFile::load(root).unwrap();
        let fps: Vec<(&str, &str)> = loaded
            .stages
            .iter()
            .map(|(k, v)| (k.as_str(), v.fingerprint.as_str()))
            .collect();
        assert_eq!(fps, [("a", "a2"), ("b", "b1"), ("old", "o")]);

        // The next run folds it into repro.lock before starting its own.
        let j = Journal::start(root, &loaded).unwrap();
        j.finish(root, Some(&loaded)).unwrap();
        assert!(!root.join(JOURNAL_FILE).exists());
        assert_eq!(LockFile::load(root).unwrap(), loaded);
    }

    /// The journal of a run on an empty lock that recorded stage `a` and was killed: its path
    /// and bytes.
    fn killed_after_one_entry(root: &Path) -> (PathBuf, Vec<u8>) {
        let mut j = Journal::start(root, &LockFile::default()).unwrap();
        j.append("a", &entry("a1"));
        j.flush().unwrap();
        std::mem::forget(j);
        let path = root.join(JOURNAL_FILE);
        let text = std::fs::read(&path).unwrap();
        (path, text)
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_a_foreign_journal_ignored() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let (path, mut text) = killed_after_one_entry(root);
        text.extend_from_slice(br#"{"stage":"b","entry":{"finger"#);
        std::fs::write(&path, &text).unwrap();
        assert_eq!(
            LockFile::load(root)
                .unwrap()
                .stages
                .keys()
                .collect::<Vec<_>>(),
            ["a"]
        );
        // A lock put in place since (a checkout) is not patched with the journal's entries.
        let mut other = LockFile::default();
        other.stages.insert("x".into(), entry("x"));
        other.save(root).unwrap();
        assert_eq!(LockFile::load(root).unwrap(), other);
    }

    #[test]
    fn a_damaged_line_before_the_end_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let (path, mut text) = killed_after_one_entry(root);
        text.extend_from_slice(b"garbage\n{\"stage\":\"b\"}\n");
        std::fs::write(&path, &text).unwrap();
        let err = LockFile::load(root).unwrap_err().to_string();
        assert!(err.contains("line 3 is not a journal entry"), "{err}");
    }
}
