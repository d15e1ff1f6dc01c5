//! Content hashes for fetch pins: sha256 of a file, and a manifest hash for a directory.
//!
//! A pin (`sha256:` in a `fetch` stage) names the content **as stored after unpacking**, so
//! mirrors that serve the same data in different wrappers (a `.gz` from the authors, a raw file
//! in a PyPI sdist, a `.deb`) verify against one pin.
//!
//! - A file's hash is the sha256 of its bytes.
//! - A directory's hash is the sha256 of its manifest: one line per regular file,
//!   `RELPATH SHA256HEX\n`, where RELPATH is relative to the directory with `/` separators, lines
//!   sorted by RELPATH bytes. Empty directories contribute nothing. A symlink is followed when
//!   its target lies inside the directory (its content is hashed under the link's path); one
//!   pointing outside, a dangling one, a cycle, and special files are errors.
//!
//! The file-line format is the one specified for the engine's directory hashes (`hash.rs`), so
//! that a pin can be copied from `repro.lock`; the engine cannot be called from this crate, so
//! the two implementations must be kept in step (`tests/data_digest.rs` spells the text out).
//!
//! What must never change silently: the manifest text. Every pin in every pipeline is a hash of
//! it.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::DataError;

/// sha256 hex of a file's bytes.
pub fn file_sha256(path: &Path) -> Result<String, DataError> {
    hash_file::<Sha256>(path)
}

/// md5 hex of a file's bytes (only to check the checksums dataset authors publish).
pub fn file_md5(path: &Path) -> Result<String, DataError> {
    hash_file::<md5::Md5>(path)
}

/// Streams a file through any digest (sha2 and md-5 share the `digest` traits).
fn hash_file<D: Digest>(path: &Path) -> Result<String, DataError> {
    let mut f = File::open(path).map_err(|e| DataError::io("open", path, e))?;
    let mut h = D::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| DataError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The manifest text of a directory (see the module doc).
pub fn manifest(dir: &Path) -> Result<String, DataError> {
    let root = dir
        .canonicalize()
        .map_err(|e| DataError::io("resolve", dir, e))?;
    let mut lines: Vec<(String, String)> = Vec::new();
    walk(&root, &root, "", &mut lines)?;
    lines.sort();
    Ok(lines.into_iter().map(|(_, line)| line).collect())
}

/// Collects `(relpath, line)` pairs so the sort is by path, not by line text. `dir` is
/// canonical, so a symlink's resolved target can be compared with `root` and with `dir`.
fn walk(
    root: &Path,
    dir: &Path,
    prefix: &str,
    lines: &mut Vec<(String, String)>,
) -> Result<(), DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io("list", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let mut path = entry.path();
        let mut ft = entry
            .file_type()
            .map_err(|e| DataError::io("stat", &path, e))?;
        if ft.is_symlink() {
            // Followed when it stays inside, as the engine's hash does: the content is hashed
            // under the link's own path.
            let target = path.canonicalize().map_err(|_| {
                DataError::Source(format!("symlink `{}` is dangling", path.display()))
            })?;
            if !target.starts_with(root) {
                return Err(DataError::Source(format!(
                    "symlink `{}` points outside `{}`",
                    path.display(),
                    root.display()
                )));
            }
            ft = std::fs::metadata(&target)
                .map_err(|e| DataError::io("stat", &target, e))?
                .file_type();
            if ft.is_dir() && dir.starts_with(&target) {
                return Err(DataError::Source(format!(
                    "symlink `{}` points to a directory that contains it",
                    path.display()
                )));
            }
            path = target;
        }
        if ft.is_dir() {
            walk(root, &path, &rel, lines)?;
        } else if ft.is_file() {
            let line = format!("{rel} {}\n", file_sha256(&path)?);
            lines.push((rel, line));
        } else {
            return Err(DataError::Source(format!(
                "`{}` is a special file (socket, fifo or device); it cannot be hashed",
                path.display()
            )));
        }
    }
    Ok(())
}

/// The content hash of a file or directory, as pins are written.
pub fn content_sha256(path: &Path) -> Result<String, DataError> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io("stat", path, e))?;
    if meta.is_dir() {
        Ok(hex::encode(Sha256::digest(manifest(path)?.as_bytes())))
    } else {
        file_sha256(path)
    }
}
