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
//! removed on every error path, swept by the next writing command after a kill). A destination
//! that already exists is replaced only after the new copy is complete ([`replace`]).

use std::fs::File;
use std::io::{self, Seek, Write};

pub use crate::fsutil::{create_temp_dir, create_temp_file, replace, TempPath};

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

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};
    use std::fs;

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
}
