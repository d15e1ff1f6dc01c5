//! Resuming a stage that did not finish: its `persist: true` outs outlive the failed run.
//!
//! A persist out is a stage's own working state (a training checkpoint), copied into the
//! staging view before the stage runs so that the stage can continue from it. A stage runs in
//! its view and only a successful run publishes; so without this module a training stage that
//! failed, was interrupted, or lost its `repro` to a `kill -9` after two hours lost its
//! checkpoint with the view, and started over from the workspace's copy.
//!
//! What is decided here:
//! - **What is kept:** when a run of a stage with persist outs ends without publishing (failed,
//!   interrupted, or killed), the persist outs found in its view, and nothing else.
//! - **Under which key:** the stage's fingerprint, the hash of everything the run depended on
//!   (command or builtin and its version, params, deps' digests, declared outs). A kept state
//!   is given back only to a run with the same fingerprint, in place of the workspace's copy;
//!   a run with other inputs (a param changed meanwhile) never sees it, since it describes
//!   other work. So resuming can never mix two configurations, whatever the stage's command
//!   does with what it finds.
//! - **Where:** `.repro/resume/<fingerprint>/<out path>`, one entry per fingerprint; a newer
//!   interruption of the same fingerprint replaces the older entry (it holds the later state).
//!   An entry is written under a temp name and renamed into place, so it is whole or absent.
//! - **A killed `repro`:** every view with persist outs gets a marker,
//!   `.repro/tmp/<run>/+resume/<stage>.json` (stage directories never contain `+`), written
//!   once the view is built and naming the fingerprint and the persist outs. The next run,
//!   holding the project lock, salvages marked views of dead runs before it deletes them,
//!   oldest run first, so the latest state of a fingerprint is the one kept. `repro status`
//!   already names such a view ([`Resumes::waiting`]) as where the stage will continue from.
//! - **Consumption:** a run that resumes moves the entry's outs into its view and deletes the
//!   entry; if that run fails too, what its view holds then is kept again, so no progress is
//!   lost in a chain of failures. A state that itself makes the stage fail is discarded by
//!   deleting its folder, which the failure message names.
//!
//! Never: a kept state reaches the workspace, the lock or the cache only through a successful
//! run of the stage, which publishes it as any run does; `repro.lock` never refers to it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::spec::Stage;

/// The kept states of a workspace: `.repro/resume/`.
pub struct Resumes {
    dir: PathBuf,
}

/// What a marker says about a view: enough to salvage it without the pipeline.
#[derive(Serialize, Deserialize)]
struct Marker {
    stage: String,
    fingerprint: String,
    persist: Vec<String>,
}

/// The persist outs of `stage`, by path.
fn persist_outs(stage: &Stage) -> Vec<String> {
    stage
        .outs
        .iter()
        .filter(|o| o.persist)
        .map(|o| o.path.clone())
        .collect()
}

impl Resumes {
    /// The kept states under `dir` (the workspace's `.repro/resume`).
    pub fn new(dir: PathBuf) -> Resumes {
        Resumes { dir }
    }

    /// The folder of the state kept for `fingerprint`, if there is one.
    pub fn find(&self, fingerprint: &str) -> Option<PathBuf> {
        let entry = self.dir.join(fingerprint);
        entry.is_dir().then_some(entry)
    }

    /// Keeps the persist outs of the view at `view` as the state for `fingerprint`, replacing
    /// an older one: each of `paths` from the view where it exists there, else from the older
    /// entry (a resumed run that failed before its view was whole loses nothing). Returns the
    /// entry's folder, or `None` when neither holds any of them.
    fn keep(
        &self,
        view: &Path,
        paths: &[String],
        fingerprint: &str,
    ) -> io::Result<Option<PathBuf>> {
        let entry = self.dir.join(fingerprint);
        let sources: Vec<(&String, PathBuf)> = paths
            .iter()
            .filter_map(|p| {
                [view.join(p), entry.join(p)]
                    .into_iter()
                    .find(|src| std::fs::symlink_metadata(src).is_ok())
                    .map(|src| (p, src))
            })
            .collect();
        if sources.is_empty() {
            return Ok(None);
        }
        std::fs::create_dir_all(&self.dir)?;
        let staged = fsutil::create_temp_dir(&self.dir, fingerprint)?;
        for (path, src) in sources {
            let dest = staged.path().join(path);
            std::fs::create_dir_all(fsutil::parent_dir(&dest))?;
            std::fs::rename(src, &dest)?;
        }
        fsutil::replace(staged, &entry)?;
        Ok(Some(entry))
    }

    /// The views that unfinished runs of other `repro`s (killed, or still running) marked as
    /// holding persist outs, by fingerprint: what the next run salvages into kept states
    /// before it starts. Of two for one fingerprint, the newer run's, as salvaging keeps the
    /// last it meets in name order. `tmp_dir` is the workspace's `.repro/tmp`.
    pub fn waiting(&self, tmp_dir: &Path) -> BTreeMap<String, PathBuf> {
        let Ok(runs) = std::fs::read_dir(tmp_dir) else {
            return BTreeMap::new();
        };
        let mut runs: Vec<PathBuf> = runs.flatten().map(|e| e.path()).collect();
        runs.sort();
        let mut views = BTreeMap::new();
        for run in runs {
            for (m, view) in marked_views(&run) {
                if m.persist.iter().any(|out| view.join(out).exists()) {
                    views.insert(m.fingerprint, view);
                }
            }
        }
        views
    }

    /// Every kept state: its folder and the bytes of the files in it, by fingerprint.
    pub fn list(&self) -> Vec<(PathBuf, u64)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut kept: Vec<(PathBuf, u64)> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                p.is_dir() && !fsutil::is_temp_name(&name)
            })
            .map(|p| {
                let bytes = tree_bytes(&p);
                (p, bytes)
            })
            .collect();
        kept.sort();
        kept
    }

    /// Deletes the state kept for `fingerprint` (a run resumed from it and has its own view).
    pub fn discard(&self, fingerprint: &str) -> io::Result<()> {
        fsutil::remove_path(&self.dir.join(fingerprint))
    }

    /// After a run of `stage` in `view` ended without publishing: keeps its persist outs for
    /// the next run with `fingerprint`, and drops the view's marker. Returns the entry's folder.
    pub fn keep_unfinished(
        &self,
        view: &Path,
        stage: &Stage,
        fingerprint: &str,
    ) -> io::Result<Option<PathBuf>> {
        let kept = self.keep(view, &persist_outs(stage), fingerprint);
        unmark(view);
        kept
    }

    /// Moves the views' persist outs that a dead run (`run_dir`, a `.repro/tmp/<run>`) marked
    /// into kept states. Errors are skipped: salvaging is a courtesy to the next run, which
    /// then starts from the workspace's copy as it always could.
    pub fn salvage(&self, run_dir: &Path) {
        for (m, view) in marked_views(run_dir) {
            let _ = self.keep(&view, &m.persist, &m.fingerprint);
        }
    }
}

/// The readable markers of the run at `run_dir` (a `.repro/tmp/<run>`), each with the view it
/// marks; unreadable ones are skipped, as a run that died mid-write may leave them.
fn marked_views(run_dir: &Path) -> impl Iterator<Item = (Marker, PathBuf)> + '_ {
    std::fs::read_dir(run_dir.join(MARKERS))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(move |marker| {
            let m: Marker = serde_json::from_slice(&std::fs::read(marker.path()).ok()?).ok()?;
            let view = run_dir.join(fsutil::safe_file_name(&m.stage));
            Some((m, view))
        })
}

/// The bytes of the regular files at or below `path`.
fn tree_bytes(path: &Path) -> u64 {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .map(|d| d.flatten().map(|e| tree_bytes(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) if m.is_file() => m.len(),
        _ => 0,
    }
}

/// The folder of a run's markers, beside its stage directories.
const MARKERS: &str = "+resume";

/// The marker of the view at `view` (`.repro/tmp/<run>/<stage>`).
fn marker_path(view: &Path) -> PathBuf {
    let name = view.file_name().unwrap_or_default().to_string_lossy();
    fsutil::parent_dir(view)
        .join(MARKERS)
        .join(format!("{name}.json"))
}

/// Marks the built view at `view` as holding `stage`'s persist outs for `fingerprint`, so that
/// the next run can salvage them if this `repro` dies. Does nothing for a stage without any.
pub fn mark(view: &Path, stage: &Stage, fingerprint: &str) -> io::Result<()> {
    let persist = persist_outs(stage);
    if persist.is_empty() {
        return Ok(());
    }
    let marker = Marker {
        stage: stage.name.clone(),
        fingerprint: fingerprint.to_string(),
        persist,
    };
    let path = marker_path(view);
    std::fs::create_dir_all(fsutil::parent_dir(&path))?;
    std::fs::write(path, serde_json::to_vec(&marker).map_err(io::Error::other)?)
}

/// Removes the marker of the view at `view` (the stage published, or never had persist outs).
pub fn unmark(view: &Path) {
    let path = marker_path(view);
    let _ = std::fs::remove_file(&path);
    // The run's marker folder goes with its last marker; a non-empty one stays.
    let _ = std::fs::remove_dir(fsutil::parent_dir(&path));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn keep_moves_the_outs_and_fills_gaps_from_the_older_entry() {
        let t = tempfile::tempdir().unwrap();
        let resumes = Resumes::new(t.path().join("resume"));
        let view = t.path().join("view");
        let outs = ["run/ck".to_string(), "other".to_string()];
        write(&view.join("run/ck/state"), "1");
        write(&view.join("other"), "o1");
        let entry = resumes.keep(&view, &outs, "fp").unwrap().unwrap();
        assert!(!view.join("run/ck").exists(), "moved, not copied");
        assert_eq!(std::fs::read_to_string(entry.join("other")).unwrap(), "o1");

        // A later view that holds only one of the outs: that one is newer, the other is kept.
        write(&view.join("run/ck/state"), "2");
        let entry = resumes.keep(&view, &outs, "fp").unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(entry.join("run/ck/state")).unwrap(),
            "2"
        );
        assert_eq!(std::fs::read_to_string(entry.join("other")).unwrap(), "o1");
        assert_eq!(resumes.find("fp"), Some(entry));
        assert_eq!(resumes.find("another"), None);

        // Nothing to keep: no entry.
        assert!(resumes.keep(&view, &outs, "empty").unwrap().is_none());
        resumes.discard("fp").unwrap();
        assert_eq!(resumes.find("fp"), None);
    }

    #[test]
    fn salvage_keeps_marked_views_only() {
        let t = tempfile::tempdir().unwrap();
        let resumes = Resumes::new(t.path().join("resume"));
        let run = t.path().join("tmp/run1");
        for stage in ["train@1", "plain"] {
            write(&run.join(stage).join("ck/state"), stage);
        }
        let marker = Marker {
            stage: "train@1".into(),
            fingerprint: "fp1".into(),
            persist: vec!["ck".into()],
        };
        let view = run.join("train@1");
        write(
            &marker_path(&view),
            &serde_json::to_string(&marker).unwrap(),
        );
        resumes.salvage(&run);
        let entry = resumes.find("fp1").unwrap();
        assert_eq!(
            std::fs::read_to_string(entry.join("ck/state")).unwrap(),
            "train@1"
        );
        let entries = std::fs::read_dir(t.path().join("resume")).unwrap().count();
        assert_eq!(entries, 1, "the unmarked view is not salvaged");
    }
}
