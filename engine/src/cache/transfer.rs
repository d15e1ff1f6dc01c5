//! Moving bytes between the workspace and the store: verified copies, temp names, swaps.
//!
//! Every copy in either direction hashes the bytes as they are written and returns that hash, so
//! the caller can refuse an object or a restored file whose content is not what it claims
//! (a file edited after it was hashed, a bit-rotted object). Copies try a reflink (`FICLONE`)
//! first: on btrfs/XFS the clone shares blocks, costs no space, and is still a separate inode,
//! so editing a restored file can never write into the store (the reason hardlinks are never
//! used). A clone is verified by reading it back. Where reflinks are unsupported (ext4, tmpfs,
//! across filesystems) the copy is a read-hash-write loop.
//!
//! Temp files are siblings of their destination (same filesystem, so the final `rename` is
//! atomic), named and guarded by [`crate::fsutil`]'s temp files (`.<name>.<pid>-<n>.repro-tmp`,
//! removed on every error path, swept by the next writing command after a kill). A destination that already exists is replaced only after the new copy is
//! complete: a plain `rename` for file-over-file, and otherwise an atomic `RENAME_EXCHANGE`
//! followed by deleting the old tree (a two-rename fallback where the kernel or filesystem
//! lacks it).

use std::fs::{self, File};
use std::io::{self, Seek, Write};
use std::path::Path;

use crate::fsutil::temp_name;
pub use crate::fsutil::{create_temp_dir, create_temp_file, TempPath};

/// Copies `src` into the empty file `dst`, returning sha256 and length of what `dst` now holds.
pub fn copy_hashing(src: &mut File, dst: &mut File) -> io::Result<([u8; 32], u64)> {
    if reflink(src, dst) {
        dst.rewind()?;
        return crate::hash::stream_sha256(dst);
    }
    crate::hash::stream_sha256_into(src, |chunk| dst.write_all(chunk))
}

/// Clones `src`'s extents into `dst`; false when the filesystem cannot (then nothing changed).
#[cfg(target_os = "linux")]
fn reflink(src: &File, dst: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: both descriptors are open for the duration of the call; FICLONE takes the source
    // descriptor by value and does not retain it.
    unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn reflink(_src: &File, _dst: &File) -> bool {
    false
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

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};

    #[test]
    fn copy_hashing_copies_and_hashes() {
        let t = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
        fs::write(t.path().join("src"), &bytes).unwrap();
        let mut src = File::open(t.path().join("src")).unwrap();
        let (mut dst, tmp) = create_temp_file(t.path(), "dst", 0o644).unwrap();
        let (sha, n) = copy_hashing(&mut src, &mut dst).unwrap();
        assert_eq!(n, bytes.len() as u64);
        assert_eq!(sha[..], Sha256::digest(&bytes)[..]);
        assert_eq!(fs::read(tmp.path()).unwrap(), bytes);
        let path = tmp.path().to_owned();
        drop(tmp);
        assert!(!path.exists(), "guard removes the temp file");
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
