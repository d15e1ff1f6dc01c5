//! Content hashes for fetch pins: what a `sha256:` pin is a hash of.
//!
//! A pin names the content **as stored after unpacking**, so mirrors that serve the same data in
//! different wrappers (a `.gz` from the authors, a raw file in a PyPI sdist, a `.deb`) verify
//! against one pin. It is exactly the engine's content hash ([`repro_engine::hash`]): a file's
//! sha256, or for a directory the sha256 of its manifest text (`RELPATH SHA256HEX\n` per regular
//! file, sorted by path bytes; symlinks followed inside the directory only). So a pin can be
//! copied from `repro.lock`, and there is one implementation of the format, the engine's.
//! `tests/data_digest.rs` spells the text out: every pin in every pipeline is a hash of it.
//!
//! The one hash of this module's own is md5, only to check the checksums dataset authors publish.

use std::fs::File;
use std::path::Path;

use repro_engine::hash::Hasher;

use super::DataError;

/// sha256 hex of a file's bytes.
pub fn file_sha256(path: &Path) -> Result<String, DataError> {
    let mut f = File::open(path).map_err(|e| DataError::io("open", path, e))?;
    let (sha, _) =
        repro_engine::hash::stream_sha256(&mut f).map_err(|e| DataError::io("read", path, e))?;
    Ok(hex::encode(sha))
}

/// md5 hex of a file's bytes (only to check the checksums dataset authors publish).
pub fn file_md5(path: &Path) -> Result<String, DataError> {
    use md5::Digest as _;
    let mut f = File::open(path).map_err(|e| DataError::io("open", path, e))?;
    let mut h = md5::Md5::new();
    std::io::copy(&mut f, &mut h).map_err(|e| DataError::io("read", path, e))?;
    Ok(hex::encode(h.finalize()))
}

/// The manifest text of a directory (see the module doc).
pub fn manifest(dir: &Path) -> Result<String, DataError> {
    Ok(Hasher::ephemeral().manifest(dir)?.text())
}

/// The content hash of a file or directory, as pins are written.
pub fn content_sha256(path: &Path) -> Result<String, DataError> {
    match Hasher::ephemeral().digest(path)? {
        Some(d) => Ok(d.sha256),
        None => Err(DataError::io(
            "hash",
            path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )),
    }
}
