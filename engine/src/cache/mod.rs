//! The content-addressed store (CAS) and the run cache, under `.repro/cache/`.
//!
//! ```text
//! .repro/cache/v1/objects/ab/cdef…   file objects and directory manifests, named by sha256
//! .repro/cache/v1/runs/ab/<fp>.json  run cache: stage fingerprint -> record (opaque JSON)
//! .repro/cache/v1/tmp/               objects being written (renamed into objects/ when complete)
//! .repro/cache/v1/quarantine/<id>    objects found corrupt, moved aside (never deleted by us)
//! ```
//!
//! Decisions, and what must not change silently:
//! - An object's name is the sha256 of its bytes, for files and for directory manifests alike
//!   (a directory object *is* its [`Manifest`] text, so a directory digest names its manifest).
//!   Bump [`LAYOUT`] (`v1`) whenever the layout or the meaning of a name changes: old stores are
//!   then simply not found, never misread.
//! - Objects are immutable and read-only (mode 0444). They are written to `tmp/` and renamed in;
//!   an existing object of the right size is never rewritten. Objects are not fsynced (10,000
//!   fsyncs would dominate a first run); a crash can leave a short object, which the size check
//!   at insert replaces, and anything else is found by [`Store::fsck`] or on restore.
//! - A directory is inserted files first, manifest last, so a manifest in the store implies its
//!   files were stored (until `gc`/damage); [`Store::contains`] still checks every file.
//! - Restores verify every byte against its sha256 while copying, write a temp sibling of the
//!   destination and swap it in only when complete. They never hardlink into the store: a GAN
//!   checkpoint edited in place would corrupt the cache (DVC#9641). Reflink, else copy. Restored
//!   files get mode 0666 minus the umask (modes are not part of the content).
//! - An object found corrupt is moved to `quarantine/`, so that the next run re-creates it
//!   instead of trusting it; nothing is deleted without `gc`.
//! - The run cache maps a fingerprint to a record the executor defines; this module only stores
//!   it atomically. Entries whose objects are gone are pruned by [`Store::gc`] (DVC#9420).

mod maintenance;
mod runs;
mod transfer;

pub use maintenance::{GcItem, GcStats};

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::fsutil::fs_err;
use crate::hash::{is_sha256_hex, Digest, HashError, Hasher, Manifest, ManifestError};
use transfer::{copy_hashing, create_temp_dir, create_temp_file, replace};

/// Layout version directory; bump when the store's format changes meaning.
pub const LAYOUT: &str = "v1";
const OBJECT_MODE: u32 = 0o444;
const RESTORED_MODE: u32 = 0o666;

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum CacheError {
    #[error(transparent)]
    Io(#[from] crate::fsutil::FsError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(
        "`{path}` changed after it was hashed (expected sha256 {expected}, found {found}); \
         make sure nothing writes it and run again"
    )]
    Changed {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("object `{id}` is not in the cache; run the stage again to re-create it")]
    Missing { id: String },
    #[error(
        "object `{id}` is corrupt (its bytes no longer match its sha256) and was moved to \
         `{quarantined}`; run the stage again to re-create it and `repro fsck` to check the rest"
    )]
    Corrupt { id: String, quarantined: PathBuf },
    #[error("directory object `{id}` is not a valid manifest: {source}; run `repro fsck`")]
    BadManifest {
        id: String,
        #[source]
        source: ManifestError,
    },
    #[error(
        "the bytes offered as object `{id}` have sha256 {found}; refused (nothing was stored)"
    )]
    Mismatch { id: String, found: String },
    #[error("`{sha256}` is not a sha256 digest (64 lowercase hex digits)")]
    BadDigest { sha256: String },
    #[error("`{fingerprint}` is not a valid run-cache key (use 3-128 of `[0-9A-Za-z_-]`)")]
    BadFingerprint { fingerprint: String },
    #[error("run-cache entry `{path}` is unreadable: {source}; delete it or run `repro gc`")]
    BadRunEntry {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// An object being added from outside ([`Store::import_begin`]): write its bytes to
/// [`Import::file`], then [`Store::import_finish`]. Dropped unfinished, its temp file is removed.
pub struct Import {
    pub file: File,
    tmp: transfer::TempPath,
    sha256: String,
}

/// The content-addressed store and run cache rooted at `.repro/cache`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store in `cache_dir` (`.repro/cache`).
    pub fn open(cache_dir: &Path) -> Result<Self, CacheError> {
        let root = std::path::absolute(cache_dir)
            .map_err(fs_err("resolve", cache_dir))?
            .join(LAYOUT);
        for sub in ["objects", "runs", "tmp"] {
            let d = root.join(sub);
            fs::create_dir_all(&d).map_err(fs_err("create directory", &d))?;
        }
        Ok(Store { root })
    }

    /// The versioned root (`.repro/cache/v1`), for messages.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where object `sha256` lives (whether or not it exists).
    pub fn object_path(&self, sha256: &str) -> PathBuf {
        let (shard, rest) = sha256.split_at(2.min(sha256.len()));
        self.root.join("objects").join(shard).join(rest)
    }

    /// Where objects are written before they are renamed into place.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Stores the file or directory at `path` (whose digest the caller computed) into the CAS.
    /// Objects are written to a temp file in the store and renamed; existing objects are not
    /// rewritten. Every byte copied is re-hashed: a file that changed since `digest` was
    /// computed is refused ([`CacheError::Changed`]), never stored under the wrong name.
    pub fn insert(&self, path: &Path, digest: &Digest, hasher: &Hasher) -> Result<(), CacheError> {
        check_sha(&digest.sha256)?;
        if !digest.is_dir() {
            return self.insert_file(path, &digest.sha256, digest.size);
        }
        let manifest = hasher.manifest(path)?;
        let text = manifest.text();
        let found = hex::encode(Sha256::digest(text.as_bytes()));
        if found != digest.sha256 {
            return Err(CacheError::Changed {
                path: path.to_owned(),
                expected: digest.sha256.clone(),
                found,
            });
        }
        manifest
            .entries
            .par_iter()
            .try_for_each(|e| self.insert_file(&path.join(&e.path), &e.sha256, e.size))?;
        self.insert_bytes(&digest.sha256, text.as_bytes())
    }

    /// True when object `sha256` is stored as a file (of `size` bytes, when given).
    pub(crate) fn has_object(&self, sha256: &str, size: Option<u64>) -> bool {
        match fs::metadata(self.object_path(sha256)) {
            Ok(m) => m.is_file() && size.is_none_or(|s| m.len() == s),
            Err(_) => false,
        }
    }

    fn insert_file(&self, src: &Path, sha256: &str, size: u64) -> Result<(), CacheError> {
        if self.has_object(sha256, Some(size)) {
            return Ok(());
        }
        let mut input = File::open(src).map_err(fs_err("open", src))?;
        let tmp_dir = self.tmp_dir();
        let (mut out, tmp) =
            create_temp_file(&tmp_dir, "object", 0o644).map_err(fs_err("create", &tmp_dir))?;
        let (sha, _) = copy_hashing(&mut input, &mut out).map_err(fs_err("copy", src))?;
        let found = hex::encode(sha);
        if found != sha256 {
            return Err(CacheError::Changed {
                path: src.to_owned(),
                expected: sha256.to_owned(),
                found,
            });
        }
        self.commit_object(out, tmp, sha256)
    }

    fn insert_bytes(&self, sha256: &str, bytes: &[u8]) -> Result<(), CacheError> {
        if self.has_object(sha256, Some(bytes.len() as u64)) {
            return Ok(());
        }
        let tmp_dir = self.tmp_dir();
        let (mut out, tmp) =
            create_temp_file(&tmp_dir, "object", 0o644).map_err(fs_err("create", &tmp_dir))?;
        io::Write::write_all(&mut out, bytes).map_err(fs_err("write", tmp.path()))?;
        self.commit_object(out, tmp, sha256)
    }

    fn commit_object(
        &self,
        out: File,
        tmp: transfer::TempPath,
        sha256: &str,
    ) -> Result<(), CacheError> {
        out.set_permissions(fs::Permissions::from_mode(OBJECT_MODE))
            .map_err(fs_err("set permissions of", tmp.path()))?;
        drop(out);
        let dest = self.object_path(sha256);
        if let Some(shard) = dest.parent() {
            fs::create_dir_all(shard).map_err(fs_err("create directory", shard))?;
        }
        fs::rename(tmp.path(), &dest).map_err(fs_err("rename into", &dest))?;
        tmp.keep();
        Ok(())
    }

    /// Starts adding object `sha256` from bytes that arrive elsewhere (a download): a temp file
    /// in the store for the caller to fill, then [`Store::import_finish`]. `None` when the
    /// object is already stored (with `size` bytes, when given).
    pub fn import_begin(
        &self,
        sha256: &str,
        size: Option<u64>,
    ) -> Result<Option<Import>, CacheError> {
        check_sha(sha256)?;
        if self.has_object(sha256, size) {
            return Ok(None);
        }
        let tmp_dir = self.tmp_dir();
        let (file, tmp) =
            create_temp_file(&tmp_dir, "import", 0o644).map_err(fs_err("create", &tmp_dir))?;
        Ok(Some(Import {
            file,
            tmp,
            sha256: sha256.to_owned(),
        }))
    }

    /// Verifies and publishes an [`Import`]: its bytes are hashed back from the temp file, and
    /// only content that matches its name is renamed into `objects/` (else
    /// [`CacheError::Mismatch`], and the temp file is removed). The store never takes a name on
    /// trust, whoever wrote the bytes.
    pub fn import_finish(&self, import: Import) -> Result<(), CacheError> {
        let Import {
            mut file,
            tmp,
            sha256,
        } = import;
        io::Seek::rewind(&mut file).map_err(fs_err("rewind", tmp.path()))?;
        let (sha, _) = crate::hash::stream_sha256(&mut file).map_err(fs_err("read", tmp.path()))?;
        let found = hex::encode(sha);
        if found != sha256 {
            return Err(CacheError::Mismatch { id: sha256, found });
        }
        self.commit_object(file, tmp, &sha256)
    }

    /// True when the object is stored: for directories, the manifest *and* every file object.
    pub fn contains(&self, digest: &Digest) -> bool {
        if !is_sha256_hex(&digest.sha256) {
            return false;
        }
        if !digest.is_dir() {
            return self.has_object(&digest.sha256, Some(digest.size));
        }
        match self.load_manifest(&digest.sha256) {
            Ok(m) => m.entries.iter().all(|e| self.has_object(&e.sha256, None)),
            Err(_) => false,
        }
    }

    /// Reads and parses directory object `sha256` (entry sizes are those of the file objects,
    /// `0` for missing ones). The manifest's own hash is checked by `restore` and `fsck`.
    pub fn load_manifest(&self, sha256: &str) -> Result<Manifest, CacheError> {
        let text = self.read_object_text(sha256)?;
        let mut m = Manifest::parse(&text).map_err(|source| CacheError::BadManifest {
            id: sha256.to_owned(),
            source,
        })?;
        for e in &mut m.entries {
            e.size = fs::metadata(self.object_path(&e.sha256)).map_or(0, |m| m.len());
        }
        Ok(m)
    }

    fn read_object_text(&self, sha256: &str) -> Result<String, CacheError> {
        check_sha(sha256)?;
        let path = self.object_path(sha256);
        match fs::read(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(CacheError::Missing {
                id: sha256.to_owned(),
            }),
            Err(e) => Err(fs_err("read", &path)(e).into()),
            // Not UTF-8 cannot be a manifest; let the parser report it as such.
            Ok(bytes) => Ok(String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())),
        }
    }

    /// Moves a corrupt object aside so it is neither trusted nor kept as "already stored".
    fn quarantine(&self, sha256: &str) -> CacheError {
        let dir = self.root.join("quarantine");
        let to = dir.join(sha256);
        let moved =
            fs::create_dir_all(&dir).and_then(|_| fs::rename(self.object_path(sha256), &to));
        CacheError::Corrupt {
            id: sha256.to_owned(),
            quarantined: if moved.is_ok() {
                to
            } else {
                self.object_path(sha256)
            },
        }
    }

    /// Copies object `sha256` into the new file `out`, verifying its bytes.
    fn copy_object_out(
        &self,
        sha256: &str,
        out: &mut File,
        out_path: &Path,
    ) -> Result<(), CacheError> {
        let obj = self.object_path(sha256);
        let mut input = match File::open(&obj) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CacheError::Missing {
                    id: sha256.to_owned(),
                })
            }
            r => r.map_err(fs_err("open", &obj))?,
        };
        let (sha, _) = copy_hashing(&mut input, out).map_err(fs_err("write", out_path))?;
        if hex::encode(sha) != sha256 {
            return Err(self.quarantine(sha256));
        }
        Ok(())
    }

    /// Materializes the object at `dest` (file or directory), verifying every object's sha256
    /// while it copies; writes to a temp sibling and renames into place (an existing `dest` is
    /// replaced only after the new copy is complete). Never a hardlink into the store: reflink
    /// (FICLONE) when the filesystem supports it, else a copy. The result is writable by the user.
    pub fn restore(&self, digest: &Digest, dest: &Path) -> Result<(), CacheError> {
        check_sha(&digest.sha256)?;
        let dest = std::path::absolute(dest).map_err(fs_err("resolve", dest))?;
        let parent = dest.parent().unwrap_or(Path::new("/")).to_owned();
        fs::create_dir_all(&parent).map_err(fs_err("create directory", &parent))?;
        let stem = dest
            .file_name()
            .map_or_else(|| "restore".into(), |n| n.to_string_lossy().into_owned());
        if !digest.is_dir() {
            let (mut out, tmp) = create_temp_file(&parent, &stem, RESTORED_MODE)
                .map_err(fs_err("create a file in", &parent))?;
            self.copy_object_out(&digest.sha256, &mut out, tmp.path())?;
            drop(out);
            replace(tmp, &dest).map_err(fs_err("replace", &dest))?;
            return Ok(());
        }

        // Verify the manifest's bytes before trusting a single path in it.
        let text = self.read_object_text(&digest.sha256)?;
        if hex::encode(Sha256::digest(text.as_bytes())) != digest.sha256 {
            return Err(self.quarantine(&digest.sha256));
        }
        let manifest = Manifest::parse(&text).map_err(|source| CacheError::BadManifest {
            id: digest.sha256.clone(),
            source,
        })?;
        let tmp =
            create_temp_dir(&parent, &stem).map_err(fs_err("create a directory in", &parent))?;
        let root = tmp.path().to_owned();
        // Parent directories first, sequentially, then the files in parallel.
        let dirs: BTreeSet<&str> = manifest
            .entries
            .iter()
            .filter_map(|e| e.path.rsplit_once('/').map(|(d, _)| d))
            .collect();
        for dir in dirs {
            let d = root.join(dir);
            fs::create_dir_all(&d).map_err(fs_err("create directory", &d))?;
        }
        manifest.entries.par_iter().try_for_each(|e| {
            let path = root.join(&e.path);
            let mut out = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(RESTORED_MODE)
                .open(&path)
                .map_err(fs_err("create", &path))?;
            self.copy_object_out(&e.sha256, &mut out, &path)
        })?;
        replace(tmp, &dest).map_err(fs_err("replace", &dest))?;
        Ok(())
    }
}

fn check_sha(sha256: &str) -> Result<(), CacheError> {
    if is_sha256_hex(sha256) {
        Ok(())
    } else {
        Err(CacheError::BadDigest {
            sha256: sha256.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    struct Fixture {
        _t: tempfile::TempDir,
        ws: PathBuf,
        store: Store,
        hasher: Hasher,
    }

    fn fixture() -> Fixture {
        let t = tempfile::tempdir().unwrap();
        let ws = t.path().join("ws");
        fs::create_dir_all(ws.join("data/sub")).unwrap();
        fs::write(ws.join("data/a.txt"), b"alpha\n").unwrap();
        fs::write(ws.join("data/sub/b.bin"), vec![3u8; 200_000]).unwrap();
        fs::write(ws.join("data/sub/empty"), b"").unwrap();
        fs::write(ws.join("model.ckpt"), b"weights v1").unwrap();
        let store = Store::open(&t.path().join("cache")).unwrap();
        Fixture {
            _t: t,
            ws,
            store,
            hasher: Hasher::ephemeral(),
        }
    }

    impl Fixture {
        fn add(&self, rel: &str) -> Digest {
            let p = self.ws.join(rel);
            let d = self.hasher.digest(&p).unwrap().unwrap();
            self.store.insert(&p, &d, &self.hasher).unwrap();
            d
        }
        fn digest(&self, p: &Path) -> Digest {
            self.hasher.digest(p).unwrap().unwrap()
        }
    }

    /// Objects are read-only; a test that damages one must first undo that.
    fn make_writable(path: &Path) {
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    }

    fn corrupt(path: &Path) {
        make_writable(path);
        let mut bytes = fs::read(path).unwrap();
        bytes[0] ^= 1;
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn store_and_hasher_can_be_shared_by_worker_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Store>();
        shared::<Hasher>();
    }

    #[test]
    fn file_round_trip() {
        let f = fixture();
        let d = f.add("model.ckpt");
        assert!(f.store.contains(&d));
        let obj = f.store.object_path(&d.sha256);
        assert_eq!(fs::read(&obj).unwrap(), b"weights v1");
        assert_eq!(fs::metadata(&obj).unwrap().mode() & 0o777, OBJECT_MODE);
        let dest = f.ws.join("restored/model.ckpt");
        f.store.restore(&d, &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"weights v1");
        // Replaces an existing file.
        fs::write(&dest, b"something else").unwrap();
        f.store.restore(&d, &dest).unwrap();
        assert_eq!(f.digest(&dest), d);
    }

    #[test]
    fn dir_round_trip_and_replace_existing_tree() {
        let f = fixture();
        let d = f.add("data");
        assert_eq!(d.nfiles, Some(3));
        assert!(f.store.contains(&d));
        // The directory object is the manifest text, named by its own sha256.
        let text = fs::read_to_string(f.store.object_path(&d.sha256)).unwrap();
        assert_eq!(text, f.hasher.manifest(&f.ws.join("data")).unwrap().text());

        let dest = f.ws.join("copy");
        fs::create_dir_all(dest.join("stale/deep")).unwrap();
        fs::write(dest.join("stale/deep/x"), b"old").unwrap();
        f.store.restore(&d, &dest).unwrap();
        assert_eq!(f.digest(&dest), d);
        assert!(
            !dest.join("stale").exists(),
            "the old tree is replaced, not merged"
        );
        assert_eq!(
            fs::read(dest.join("sub/b.bin")).unwrap(),
            vec![3u8; 200_000]
        );
        let m = f.store.load_manifest(&d.sha256).unwrap();
        assert_eq!(m.total_size(), d.size);
        // No temp siblings left behind.
        let names: Vec<_> = fs::read_dir(&f.ws)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| !n.to_string_lossy().contains("repro-tmp")),
            "{names:?}"
        );
    }

    #[test]
    fn contains_needs_every_file_of_a_dir() {
        let f = fixture();
        let d = f.digest(&f.ws.join("data"));
        assert!(!f.store.contains(&d));
        f.store.insert(&f.ws.join("data"), &d, &f.hasher).unwrap();
        let m = f.store.load_manifest(&d.sha256).unwrap();
        fs::remove_file(f.store.object_path(&m.entries[1].sha256)).unwrap();
        assert!(!f.store.contains(&d));
        let err = f.store.restore(&d, &f.ws.join("out")).unwrap_err();
        assert!(matches!(err, CacheError::Missing { .. }), "{err}");
        assert!(!f.ws.join("out").exists());
    }

    #[test]
    fn existing_objects_are_not_rewritten() {
        let f = fixture();
        let d = f.add("model.ckpt");
        let ino = fs::metadata(f.store.object_path(&d.sha256)).unwrap().ino();
        f.add("model.ckpt");
        assert_eq!(
            fs::metadata(f.store.object_path(&d.sha256)).unwrap().ino(),
            ino
        );
    }

    #[test]
    fn insert_refuses_a_file_changed_after_hashing() {
        let f = fixture();
        let p = f.ws.join("model.ckpt");
        let d = f.digest(&p);
        fs::write(&p, b"weights v2").unwrap(); // same size
        let err = f.store.insert(&p, &d, &f.hasher).unwrap_err();
        assert!(matches!(err, CacheError::Changed { .. }), "{err}");
        assert!(!f.store.contains(&d));
        assert_eq!(fs::read_dir(f.store.tmp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn corrupt_object_fails_restore_and_leaves_dest_untouched() {
        let f = fixture();
        let d = f.add("data");
        let m = f.store.load_manifest(&d.sha256).unwrap();
        let victim = m.entries.iter().find(|e| e.path == "sub/b.bin").unwrap();
        corrupt(&f.store.object_path(&victim.sha256));

        let dest = f.ws.join("dest");
        fs::create_dir_all(&dest).unwrap();
        fs::write(dest.join("keep.txt"), b"last good").unwrap();
        let err = f.store.restore(&d, &dest).unwrap_err();
        assert!(
            matches!(err, CacheError::Corrupt { ref id, .. } if *id == victim.sha256),
            "{err}"
        );
        assert_eq!(fs::read(dest.join("keep.txt")).unwrap(), b"last good");
        assert_eq!(fs::read_dir(&dest).unwrap().count(), 1);
        // Quarantined: no longer trusted as stored, so the next run re-creates it.
        assert!(!f.store.contains(&d));
        f.store.insert(&f.ws.join("data"), &d, &f.hasher).unwrap();
        f.store.restore(&d, &dest).unwrap();
        assert_eq!(f.digest(&dest), d);
    }

    #[test]
    fn corrupt_manifest_and_file_objects_are_found_by_fsck() {
        let f = fixture();
        let dir = f.add("data");
        let file = f.add("model.ckpt");
        assert_eq!(f.store.fsck().unwrap(), Vec::<String>::new());
        corrupt(&f.store.object_path(&file.sha256));
        corrupt(&f.store.object_path(&dir.sha256));
        let mut expect = vec![file.sha256.clone(), dir.sha256.clone()];
        expect.sort();
        assert_eq!(f.store.fsck().unwrap(), expect);
        assert!(!f.store.contains(&file));
        assert_eq!(f.store.fsck().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn corrupt_manifest_fails_restore_before_any_path_is_used() {
        let f = fixture();
        let d = f.add("data");
        let obj = f.store.object_path(&d.sha256);
        make_writable(&obj);
        // Still a well-formed manifest, but not the one the digest names.
        let text = fs::read_to_string(&obj)
            .unwrap()
            .replacen("a.txt", "a.txx", 1);
        fs::write(&obj, text).unwrap();
        let dest = f.ws.join("dest");
        let err = f.store.restore(&d, &dest).unwrap_err();
        assert!(matches!(err, CacheError::Corrupt { .. }), "{err}");
        assert!(!dest.exists());
    }

    #[test]
    fn corrupt_file_object_fails_file_restore() {
        let f = fixture();
        let d = f.add("model.ckpt");
        corrupt(&f.store.object_path(&d.sha256));
        let dest = f.ws.join("model.ckpt");
        let err = f.store.restore(&d, &dest).unwrap_err();
        assert!(matches!(err, CacheError::Corrupt { .. }), "{err}");
        assert_eq!(fs::read(&dest).unwrap(), b"weights v1");
    }

    #[test]
    fn restore_is_a_private_writable_copy() {
        let f = fixture();
        let d = f.add("model.ckpt");
        let obj = f.store.object_path(&d.sha256);
        let dest = f.ws.join("restored.ckpt");
        f.store.restore(&d, &dest).unwrap();
        let (om, dm) = (fs::metadata(&obj).unwrap(), fs::metadata(&dest).unwrap());
        assert_ne!((om.dev(), om.ino()), (dm.dev(), dm.ino()));
        assert_eq!(dm.nlink(), 1);
        assert!(dm.mode() & 0o200 != 0, "user-writable");
        fs::OpenOptions::new()
            .write(true)
            .open(&dest)
            .and_then(|mut w| io::Write::write_all(&mut w, b"EDITED"))
            .unwrap();
        assert_eq!(fs::read(&obj).unwrap(), b"weights v1");
        assert_eq!(f.store.fsck().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn gc_keeps_reachable_and_prunes_runs_whose_objects_are_gone() {
        let f = fixture();
        let dir = f.add("data");
        let file = f.add("model.ckpt");
        fs::write(f.ws.join("other"), b"unreferenced").unwrap();
        let other = f.add("other");
        let rec = |d: &Digest| serde_json::json!({ "outs": [d] });
        f.store.run_put("fp_dir", &rec(&dir)).unwrap();
        f.store.run_put("fp_file", &rec(&file)).unwrap();
        fs::create_dir_all(f.store.root.join("runs/ba")).unwrap();
        fs::write(f.store.root.join("runs/ba/bad.json"), b"{not json").unwrap();
        let refs = |v: &serde_json::Value| -> Vec<Digest> {
            serde_json::from_value(v["outs"].clone()).unwrap_or_default()
        };

        let stats = f.store.gc(std::slice::from_ref(&dir), &refs).unwrap();
        assert!(f.store.contains(&dir));
        assert!(!f.store.contains(&file));
        assert!(!f.store.contains(&other));
        assert_eq!(stats.objects_kept, 4); // manifest + 3 files
        assert_eq!(stats.objects_removed, 2);
        assert_eq!(stats.bytes_removed, file.size + other.size);
        assert_eq!((stats.runs_kept, stats.runs_removed), (1, 2));
        assert!(f.store.run_get("fp_dir").unwrap().is_some());
        assert!(f.store.run_get("fp_file").unwrap().is_none());
        // Idempotent.
        let again = f.store.gc(std::slice::from_ref(&dir), &refs).unwrap();
        assert_eq!((again.objects_removed, again.runs_removed), (0, 0));
    }

    #[test]
    fn run_cache_round_trip() {
        let f = fixture();
        let fp = "3f786850e387550fdab836ed7e6dc881de23001b";
        assert_eq!(f.store.run_get(fp).unwrap(), None);
        let rec = serde_json::json!({"outs": [{"path": "m", "sha256": "ab", "size": 1}], "z": 1, "a": [1.5]});
        f.store.run_put(fp, &rec).unwrap();
        assert_eq!(f.store.run_get(fp).unwrap(), Some(rec.clone()));
        let rec2 = serde_json::json!({"v": 2});
        f.store.run_put(fp, &rec2).unwrap();
        assert_eq!(f.store.run_get(fp).unwrap(), Some(rec2));
        for bad in ["", "ab", "../../etc/passwd", "a/b/c", "x y z"] {
            assert!(
                matches!(f.store.run_get(bad), Err(CacheError::BadFingerprint { .. })),
                "{bad}"
            );
        }
        let p = f.store.run_path(fp).unwrap();
        fs::write(&p, b"{").unwrap();
        assert!(matches!(
            f.store.run_get(fp),
            Err(CacheError::BadRunEntry { .. })
        ));
    }

    #[test]
    fn bad_digest_is_rejected_not_joined_into_a_path() {
        let f = fixture();
        let d = Digest {
            sha256: "../../x".into(),
            size: 1,
            nfiles: None,
        };
        assert!(!f.store.contains(&d));
        assert!(matches!(
            f.store.restore(&d, &f.ws.join("x")),
            Err(CacheError::BadDigest { .. })
        ));
    }
}
