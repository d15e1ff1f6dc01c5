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
//! training stage can resume from its own checkpoint.
//!
//! Inside directories that lead to outs, entries that are *other stages' outs* are linked only
//! when this stage declares them as deps: reading another stage's output without declaring it
//! would make the cache lie, and here it fails loudly instead.
//!
//! A command that writes through an absolute path into the workspace bypasses the view. It
//! cannot be prevented without a sandbox, but it is detected: [`OutStamps`] records each out's
//! metadata in the workspace before the run, and an out missing from the view whose workspace
//! copy changed meanwhile is reported as written to the wrong place, not as never written.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use crate::dag::is_within;
use crate::spec::Stage;

/// Builds the staging view for `stage` at `dir`. `other_outs` are the outs of every other stage.
pub fn build_view(
    root: &Path,
    dir: &Path,
    stage: &Stage,
    other_outs: &BTreeSet<String>,
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // Real directories: the ancestors of each out, and the wdir with its ancestors.
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
    let outs: BTreeSet<&str> = stage.outs.iter().map(|o| o.path.as_str()).collect();
    let deps: Vec<&str> = stage.deps.iter().map(|d| d.path.as_str()).collect();
    populate(root, dir, "", &real, &outs, &deps, other_outs)?;
    for r in &real {
        std::fs::create_dir_all(dir.join(r))?;
    }
    for out in stage.outs.iter().filter(|o| o.persist) {
        let src = root.join(&out.path);
        if std::fs::symlink_metadata(&src).is_ok() {
            copy_tree(&src, &dir.join(&out.path))?;
        }
    }
    Ok(())
}

fn populate(
    root: &Path,
    dir: &Path,
    rel: &str,
    real: &BTreeSet<String>,
    outs: &BTreeSet<&str>,
    deps: &[&str],
    other_outs: &BTreeSet<String>,
) -> io::Result<()> {
    let src_dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let entries = match std::fs::read_dir(&src_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        if (rel.is_empty() && name == ".repro") || crate::fsutil::is_temp_name(name) {
            continue;
        }
        if outs.contains(path.as_str()) {
            continue;
        }
        if real.contains(&path) {
            std::fs::create_dir_all(dir.join(&path))?;
            populate(root, dir, &path, real, outs, deps, other_outs)?;
            continue;
        }
        // Below the workspace root, undeclared outputs of other stages stay out of the view.
        if !rel.is_empty() {
            let foreign = other_outs
                .iter()
                .any(|o| is_within(&path, o) || is_within(o, &path));
            let declared = deps
                .iter()
                .any(|d| is_within(d, &path) || is_within(&path, d));
            if foreign && !declared {
                continue;
            }
        }
        std::os::unix::fs::symlink(entry.path(), dir.join(&path))?;
    }
    Ok(())
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

/// Removes a file or directory tree if it exists.
pub fn remove_path(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Moves a staged out into the workspace, replacing what was there. The old content is first
/// moved aside into `trash` (same filesystem) so the swap is two renames, then deleted.
pub fn publish(staged: &Path, dest: &Path, trash: &Path) -> io::Result<()> {
    if let Some(parent) = dest.parent() {
        // A parent that is a dangling link or a file must not swallow the out.
        std::fs::create_dir_all(parent)?;
    }
    let had_old = std::fs::symlink_metadata(dest).is_ok();
    if had_old {
        std::fs::create_dir_all(trash.parent().unwrap_or(trash))?;
        std::fs::rename(dest, trash)?;
    }
    if let Err(e) = std::fs::rename(staged, dest) {
        if had_old {
            // Put the previous out back: a failed publish must not lose it.
            let _ = std::fs::rename(trash, dest);
        }
        return Err(e);
    }
    if had_old {
        remove_path(trash)?;
    }
    Ok(())
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

/// Deletes staging directories of earlier runs. Called with the project lock held, so no other
/// `repro` can be using them: they belong to runs that were killed.
pub fn clean_stale(tmp_dir: &Path, current_run: &str) {
    let Ok(entries) = std::fs::read_dir(tmp_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name() != current_run {
            let _ = remove_path(&entry.path());
        }
    }
}
