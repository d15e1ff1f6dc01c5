//! Small filesystem primitives with the guarantees the engine relies on.
//!
//! Every file the program writes goes through a temp file beside its destination (same
//! filesystem, so the final `rename` is atomic): [`write_atomic`] for whole files, the cache's
//! copies for outs and objects; [`replace`] swaps a finished file or tree in. The domain crates
//! write through these same functions: there is one atomic writer. A reader therefore sees the old content or the new, never a torn
//! file, whatever kills the process in between.
//!
//! All those temp files have one recognisable name, `.<name>.<pid>-<n>.repro-tmp`
//! ([`is_temp_name`]): a [`TempPath`] guard removes them on every error path, and what a `kill -9`
//! leaves behind is removed by [`sweep_temps`], which a writing command runs under the project
//! lock before it hashes anything. Until then the hasher skips such names
//! (`crate::hash`), so a leftover can never become content that a downstream stage reads or a
//! fingerprint records. Never change the pattern without keeping the old one recognised: a
//! leftover of the previous version would turn into data.
//!
//! A failed operation on a path is an [`FsError`] (what was tried, where, and the system's
//! reason), the one I/O error of the libraries: each error enum wraps it as its `Io` variant.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A filesystem operation on `path` that failed. Every library error enum of the project wraps
/// this one as `Io(FsError)`, so every such message reads `cannot ACTION `PATH`: REASON`.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} `{}`: {source}", path.display())]
pub struct FsError {
    /// What was tried, as a verb: `read`, `create`, `rename into`, ...
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FsError {
    pub fn new(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> FsError {
        FsError {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The `map_err` adapter that names `action` and `path`: `.map_err(fs_err("read", path))?`.
pub fn fs_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |source| FsError::new(action, path, source)
}

/// The suffix of every temp file or directory the engine creates.
pub const TEMP_SUFFIX: &str = ".repro-tmp";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh temp name for something that will become `dir/<stem>`.
pub(crate) fn temp_name(dir: &Path, stem: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{stem}.{}-{n}{TEMP_SUFFIX}", std::process::id()))
}

/// Whether `name` is one of the engine's temp names (`.<stem>.<pid>-<n>.repro-tmp`).
pub fn is_temp_name(name: &str) -> bool {
    let Some(body) = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(TEMP_SUFFIX))
    else {
        return false;
    };
    let Some((stem, tag)) = body.rsplit_once('.') else {
        return false;
    };
    let Some((pid, n)) = tag.split_once('-') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    !stem.is_empty() && digits(pid) && digits(n)
}

/// A path removed (file or tree) when dropped, unless [`TempPath::keep`] was called.
pub struct TempPath {
    path: PathBuf,
    armed: bool,
}

impl TempPath {
    /// Guards `path`, which the caller is about to create (or made, and will move away).
    pub fn new(path: PathBuf) -> TempPath {
        TempPath { path, armed: true }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Disarms the guard (the path was renamed away or must stay).
    pub fn keep(mut self) -> PathBuf {
        self.armed = false;
        std::mem::take(&mut self.path)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: the path may already be gone, and an error path has a better error.
            let _ = remove_path(&self.path);
        }
    }
}

/// Removes a file or a directory tree; a path that does not exist is already removed.
pub fn remove_path(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates a new temp file in `dir` with permission bits `mode` (before the umask).
pub fn create_temp_file(dir: &Path, stem: &str, mode: u32) -> io::Result<(File, TempPath)> {
    loop {
        let path = temp_name(dir, stem);
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
        {
            Ok(f) => return Ok((f, TempPath::new(path))),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Creates a new, empty temp directory in `dir`.
pub fn create_temp_dir(dir: &Path, stem: &str) -> io::Result<TempPath> {
    loop {
        let path = temp_name(dir, stem);
        match fs::create_dir(&path) {
            Ok(()) => return Ok(TempPath::new(path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The directory a temp file for `path` must live in: its parent (same filesystem, so the
/// final rename is atomic), or `.` for a bare file name.
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` atomically (temp file in the same directory, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Like [`write_atomic`], for content produced piecewise by `fill` (through a 1 MiB buffer).
/// Creates the parent directories; the file reads like any other (0644 before the umask).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let dir = parent_dir(path);
    fs::create_dir_all(dir)?;
    let stem = path
        .file_name()
        .map_or_else(|| "write".into(), |n| n.to_string_lossy().into_owned());
    let (file, tmp) = create_temp_file(dir, &stem, 0o644)?;
    let mut w = io::BufWriter::with_capacity(1 << 20, file);
    fill(&mut w)?;
    let file = w.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    fs::rename(tmp.path(), path)?;
    tmp.keep();
    Ok(())
}

/// Atomically swaps two existing paths; `Ok(false)` when unsupported here.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn exchange(a: &Path, b: &Path) -> io::Result<bool> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let ca = CString::new(a.as_os_str().as_bytes())?;
    let cb = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: valid NUL-terminated paths that outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => Ok(false),
        _ => Err(e),
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn exchange(_a: &Path, _b: &Path) -> io::Result<bool> {
    Ok(false)
}

/// Moves the completed temp `tmp` to `dest`, replacing whatever `dest` was only now.
pub fn replace(tmp: TempPath, dest: &Path) -> io::Result<()> {
    let tmp_is_dir = fs::symlink_metadata(tmp.path())?.is_dir();
    let dest_is_dir = match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::rename(tmp.path(), dest)?;
            tmp.keep();
            return Ok(());
        }
        Err(e) => return Err(e),
        Ok(m) => m.is_dir(),
    };
    if !tmp_is_dir && !dest_is_dir {
        fs::rename(tmp.path(), dest)?;
        tmp.keep();
        return Ok(());
    }
    if exchange(tmp.path(), dest)? {
        // `tmp` now names the old content; the guard deletes it.
        return Ok(());
    }
    replace_in_two_steps(tmp, dest)
}

/// The fallback of [`replace`] without `RENAME_EXCHANGE`: move `dest` aside, move `tmp` in,
/// delete the old copy. Between the two renames `dest` is briefly absent, never lost.
fn replace_in_two_steps(tmp: TempPath, dest: &Path) -> io::Result<()> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    let old = TempPath::new(temp_name(parent, "old"));
    fs::rename(dest, old.path())?;
    if let Err(e) = fs::rename(tmp.path(), dest) {
        // Put the old content back; if even that fails, keep it under its temp name.
        let _ = fs::rename(old.path(), dest);
        old.keep();
        return Err(e);
    }
    tmp.keep();
    Ok(())
}

/// Removes the engine's temp files and directories directly inside `dir` (see
/// [`is_temp_name`]); returns the paths removed. Only with the project lock held: a temp file
/// of a running `repro` is not a leftover. A missing `dir` has none.
pub fn sweep_temps(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory =>
        {
            return Ok(Vec::new())
        }
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_str().is_some_and(is_temp_name) {
            remove_path(&entry.path())?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

/// Opens `path` for reading, mapping "not found" to `None`.
pub fn open_if_exists(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A file name for a stage name: `train@sn-64` stays readable, anything unusual becomes `_`.
pub fn safe_file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised_and_nothing_else() {
        let t = tempfile::tempdir().unwrap();
        let (_f, tmp) = create_temp_file(t.path(), "big.bin", 0o644).unwrap();
        let name = tmp.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert!(is_temp_name(&name), "{name}");
        assert!(is_temp_name(".old.17-0.repro-tmp"));
        for other in [
            "big.bin",
            ".big.bin",
            ".big.bin.repro-tmp",
            "big.bin.12-0.repro-tmp",
            "..12-0.repro-tmp",
            ".x.12-.repro-tmp",
            ".x.a-0.repro-tmp",
            ".tmp-abc123",
        ] {
            assert!(!is_temp_name(other), "{other}");
        }
    }

    #[test]
    fn sweep_removes_leftover_temps_only() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("keep.txt"), b"k").unwrap();
        let (_f, file) = create_temp_file(t.path(), "keep.txt", 0o644).unwrap();
        let dir = create_temp_dir(t.path(), "tree").unwrap();
        fs::write(dir.path().join("inner"), b"i").unwrap();
        // As a kill leaves them: the guards never run.
        let (file, dir) = (file.keep(), dir.keep());
        let mut removed = sweep_temps(t.path()).unwrap();
        removed.sort();
        let mut expected = vec![file, dir];
        expected.sort();
        assert_eq!(removed, expected);
        let left: Vec<_> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["keep.txt"]);
        assert!(sweep_temps(&t.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn write_atomic_leaves_no_temp() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("repro.lock");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 1);
    }

    #[test]
    fn replace_swaps_files_and_trees_either_way() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("dest");
        // Nothing there yet.
        let (mut f, tmp) = create_temp_file(t.path(), "dest", 0o644).unwrap();
        f.write_all(b"one").unwrap();
        replace(tmp, &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"one");
        // A tree over a file.
        let tmp = create_temp_dir(t.path(), "dest").unwrap();
        fs::write(tmp.path().join("inner"), b"two").unwrap();
        replace(tmp, &dest).unwrap();
        assert_eq!(fs::read(dest.join("inner")).unwrap(), b"two");
        // A file over a tree.
        let (mut f, tmp) = create_temp_file(t.path(), "dest", 0o644).unwrap();
        f.write_all(b"three").unwrap();
        replace(tmp, &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"three");
        // No temp or old copies left behind.
        let left: Vec<_> = fs::read_dir(t.path()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn two_step_fallback_replaces_a_tree() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("dest");
        fs::create_dir_all(dest.join("old/deep")).unwrap();
        let tmp = create_temp_dir(t.path(), "dest").unwrap();
        fs::write(tmp.path().join("new"), b"n").unwrap();
        replace_in_two_steps(tmp, &dest).unwrap();
        assert_eq!(fs::read(dest.join("new")).unwrap(), b"n");
        assert!(!dest.join("old").exists());
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 1);
    }
}
