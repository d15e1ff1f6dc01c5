//! Staging directories: where a stage runs, and how its outs reach the workspace.
//!
//! A stage never writes into the workspace directly. It runs in `.repro/tmp/<run>/<stage>/`, a
//! *view* of the workspace built from symlinks: every directory on the way to one of the stage's
//! outs (and to its `wdir`) is a real, empty-of-outs directory; every other entry is a symlink to
//! the workspace. The command sees the same relative paths it would see in the workspace, reads
//! its deps through the links, and writes its outs into real directories of the staging view.
//!
//! Only after the stage succeeded are its outs hashed, stored, and renamed into the workspace
//! ([`publish`]); the lock entry comes last. So a failed or killed stage leaves the previous
//! outs and the previous lock entry exactly as they were, and the next run simply finds the
//! stage stale again. `persist: true` outs are copied into the view before the run, so a
//! training stage can resume from its own checkpoint; those of a run that did not finish are
//! kept for the next run with the same inputs ([`super::resume`]).
//!
//! Inside directories that lead to outs, entries that are *other stages' outs* are linked only
//! when this stage declares them as deps: reading another stage's output without declaring it
//! would make the cache lie, and here it fails loudly instead.
//!
//! A command that writes through an absolute path into the workspace bypasses the view. It
//! cannot be prevented without a sandbox, but it is detected: [`OutStamps`] records each out's
//! metadata in the workspace before the run, and an out missing from the view whose workspace
//! copy changed meanwhile is reported as written to the wrong place, not as never written.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::resume::Resumes;
use crate::dag::is_within;
use crate::fsutil;
use crate::spec::Stage;

/// What the staging views of one run share: the outs of every stage, and the listings of the
/// directories below the root that lead to outs.
///
/// Building a view must not cost more as the run goes on: with 10,000 stages writing into one
/// `out/`, listing that directory for every view (and comparing each entry with every out) made
/// the first run quadratic. Outs are excluded from views unless declared as deps, and during a
/// run only outs (and the directories holding them) appear or disappear, so the entries that
/// are no stage's out and hold none (*plain* entries) are listed once per directory and run;
/// a view adds to them only its own real directories and the outs it declares as deps. The root
/// is listed for every view: it links everything but `.repro` and the stage's own outs.
pub struct Views {
    all_outs: BTreeSet<String>,
    plain: Mutex<HashMap<String, Arc<[String]>>>,
}

impl Views {
    /// The views of one run of `dag`.
    pub fn of(dag: &crate::dag::Dag) -> Views {
        Views {
            all_outs: dag
                .stages
                .iter()
                .flat_map(|s| s.outs.iter().map(|o| o.path.clone()))
                .collect(),
            plain: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `path` is an out of some stage, lies inside one, or holds one.
    fn touches_an_out(&self, path: &str) -> bool {
        let mut end = path.len();
        loop {
            if self.all_outs.contains(&path[..end]) {
                return true;
            }
            match path[..end].rfind('/') {
                Some(i) => end = i,
                None => break,
            }
        }
        let prefix = format!("{path}/");
        self.all_outs
            .range(prefix.clone()..)
            .next()
            .is_some_and(|o| o.starts_with(&prefix))
    }

    /// The plain entries of directory `rel` (below the root), listed once per run.
    fn plain_entries(&self, root: &Path, rel: &str) -> io::Result<Arc<[String]>> {
        if let Some(names) = self.lock().get(rel) {
            return Ok(Arc::clone(names));
        }
        let names: Arc<[String]> = list(&root.join(rel))?
            .into_iter()
            .filter(|name| !self.touches_an_out(&format!("{rel}/{name}")))
            .collect();
        self.lock().insert(rel.to_string(), Arc::clone(&names));
        Ok(names)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<[String]>>> {
        self.plain.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The names in `dir` a view may show (UTF-8, not an engine temp file); none if it is missing.
fn list(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        if let Some(name) = name.to_str() {
            if !crate::fsutil::is_temp_name(name) {
                names.push(name.to_string());
            }
        }
    }
    Ok(names)
}

/// One stage's view under construction.
struct View<'a> {
    root: &'a Path,
    dir: &'a Path,
    views: &'a Views,
    /// Directories that are real in the view: ancestors of the outs, the wdir and its ancestors.
    real: BTreeSet<String>,
    outs: BTreeSet<&'a str>,
    deps: Vec<&'a str>,
}

/// Builds the staging view for `stage` at `dir`. Its persist outs come from `kept` (the state
/// an unfinished run with the same inputs left, see [`super::resume`]; moved, not copied) where
/// it holds them, else from the workspace (copied).
pub fn build_view(
    root: &Path,
    dir: &Path,
    stage: &Stage,
    views: &Views,
    kept: Option<&Path>,
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut real: BTreeSet<String> = BTreeSet::new();
    let mut add_ancestors = |path: &str, include_self: bool| {
        let mut acc = String::new();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let n = if include_self {
            parts.len()
        } else {
            parts.len().saturating_sub(1)
        };
        for part in &parts[..n] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            real.insert(acc.clone());
        }
    };
    for out in &stage.outs {
        add_ancestors(&out.path, false);
    }
    add_ancestors(&stage.wdir, true);
    let view = View {
        root,
        dir,
        views,
        real,
        outs: stage.outs.iter().map(|o| o.path.as_str()).collect(),
        deps: stage.deps.iter().map(|d| d.path.as_str()).collect(),
    };
    view.populate("")?;
    for r in &view.real {
        std::fs::create_dir_all(dir.join(r))?;
    }
    for out in stage.outs.iter().filter(|o| o.persist) {
        let dest = dir.join(&out.path);
        let kept = kept.map(|k| k.join(&out.path));
        if let Some(kept) = kept.filter(|k| std::fs::symlink_metadata(k).is_ok()) {
            std::fs::create_dir_all(fsutil::parent_dir(&dest))?;
            std::fs::rename(kept, dest)?;
            continue;
        }
        let src = root.join(&out.path);
        if std::fs::symlink_metadata(&src).is_ok() {
            copy_tree(&src, &dest)?;
        }
    }
    Ok(())
}

impl View<'_> {
    /// Fills the real directory `rel` of the view: links to the workspace's entries, real
    /// subdirectories on the way to outs, never the stage's own outs.
    fn populate(&self, rel: &str) -> io::Result<()> {
        let names: Vec<String> = if rel.is_empty() {
            list(self.root)?
                .into_iter()
                .filter(|n| n != ".repro")
                .collect()
        } else if self.deps.iter().any(|d| is_within(rel, d)) {
            // A dep holds this whole directory: every entry is declared.
            list(&self.root.join(rel))?
        } else {
            self.declared_entries(rel)?
        };
        for name in names {
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if self.outs.contains(path.as_str()) {
                continue;
            }
            if self.real.contains(&path) {
                std::fs::create_dir_all(self.dir.join(&path))?;
                self.populate(&path)?;
                continue;
            }
            std::os::unix::fs::symlink(self.root.join(&path), self.dir.join(&path))?;
        }
        Ok(())
    }

    /// The entries of `rel` (below the root) the view shows: the plain ones, the real
    /// directories on the way to this stage's outs, and other stages' outs (or directories
    /// holding them) that a dep of this stage names and that exist now.
    fn declared_entries(&self, rel: &str) -> io::Result<Vec<String>> {
        let mut names: BTreeSet<String> = self
            .views
            .plain_entries(self.root, rel)?
            .iter()
            .cloned()
            .collect();
        let prefix = format!("{rel}/");
        for below in self
            .deps
            .iter()
            .copied()
            .chain(self.real.iter().map(String::as_str))
        {
            let Some(rest) = below.strip_prefix(&prefix) else {
                continue;
            };
            let name = rest.split('/').next().unwrap_or(rest);
            if !names.contains(name)
                && std::fs::symlink_metadata(self.root.join(rel).join(name)).is_ok()
            {
                names.insert(name.to_string());
            }
        }
        Ok(names.into_iter().collect())
    }
}

/// Copies a file or a directory tree (regular files, directories, symlinks as links).
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(src)?;
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if meta.is_dir() {
        std::fs::create_dir_all(dst)?;
        for entry in std::fs::read_dir(src)? {
            let entry = entry?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
        }
    } else if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(src)?, dst)?;
    } else {
        std::fs::copy(src, dst)?;
    }
    Ok(())
}

/// Moves a staged out into the workspace, replacing what was there only once the new content
/// is in place ([`fsutil::replace`]: an atomic exchange, or two renames that put the old content
/// back if the second fails).
pub fn publish(staged: &Path, dest: &Path) -> io::Result<()> {
    if let Some(parent) = dest.parent() {
        // A parent that is a dangling link or a file must not swallow the out.
        std::fs::create_dir_all(parent)?;
    }
    fsutil::replace(fsutil::TempPath::new(staged.to_path_buf()), dest)
}

/// The workspace's copy of each of a stage's outs as it was before the stage ran: inode, size,
/// modification time (a directory's mtime changes when an entry is added or removed in it).
pub struct OutStamps(std::collections::BTreeMap<String, Option<(u64, u64, i64, i64)>>);

impl OutStamps {
    pub fn take(root: &Path, stage: &Stage) -> OutStamps {
        OutStamps(
            stage
                .outs
                .iter()
                .map(|o| (o.path.clone(), out_stamp(&root.join(&o.path))))
                .collect(),
        )
    }

    /// Whether the workspace's copy of `out` is not what it was when the stamps were taken.
    pub fn changed(&self, root: &Path, out: &str) -> bool {
        self.0
            .get(out)
            .is_some_and(|before| *before != out_stamp(&root.join(out)))
    }
}

fn out_stamp(path: &Path) -> Option<(u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).ok()?;
    Some((m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// The staging directory for one stage in one run.
pub fn stage_dir(tmp_dir: &Path, run_id: &str, stage: &str) -> PathBuf {
    tmp_dir
        .join(run_id)
        .join(crate::fsutil::safe_file_name(stage))
}

/// Deletes staging directories of earlier runs, after keeping the persist outs of their
/// unfinished stages for the next run ([`Resumes::salvage`]). Called with the project lock held,
/// so no other `repro` can be using them: they belong to runs that were killed.
pub fn clean_stale(tmp_dir: &Path, current_run: &str, resumes: &Resumes) {
    let Ok(entries) = std::fs::read_dir(tmp_dir) else {
        return;
    };
    // Oldest run first (run ids start with their UTC start time), so that of two dead runs of
    // one fingerprint the later one's state is kept last, and wins.
    let mut runs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name() != current_run)
        .map(|e| e.path())
        .collect();
    runs.sort();
    for run in runs {
        resumes.salvage(&run);
        let _ = fsutil::remove_path(&run);
    }
}
