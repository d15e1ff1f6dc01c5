//! Content hashing (sha256) of files and directories, with a metadata-keyed hash cache.
//!
//! What a digest is (this is what lock files and stage fingerprints record; changing any of it
//! changes every hash the project ever wrote, so bump the lock's `hash:` scheme if you do):
//! - a **file**: sha256 of its bytes; `size` = its length; `nfiles = None`;
//! - a **directory**: sha256 of its [`Manifest`] text (`relpath sha256\n` per regular file,
//!   sorted by relpath bytes); `size` = sum of the file sizes; `nfiles = Some(count)`. Names,
//!   modes, mtimes and empty directories are not hashed. The engine's own temp files
//!   (`crate::fsutil::is_temp_name`: a copy in flight, or what a `kill -9` left) are not part of
//!   a directory: they are never content, and the next writing command sweeps them.
//!
//! Symlinks: the top-level path is followed. A symlink *inside* a directory is followed when its
//! target lies inside the (canonicalized) directory being hashed, and the target's content is
//! hashed under the link's own relpath; a link pointing outside, a dangling link, and a link to
//! a directory that contains the link (a cycle) are errors. Following only inside links keeps a
//! directory hash a function of the directory: an outside target would be an undeclared
//! dependency. Sockets, FIFOs and devices are errors.
//!
//! Speed: files are streamed through `sha2`, which picks the SHA-NI compression function at run
//! time (`cpufeatures`) and otherwise the `asm` feature's assembly. Files are hashed in parallel
//! on the rayon pool, including the files of one directory (the directory walk itself is
//! sequential: it only reads directory entries). Before reading a file, its metadata stamp
//! `(dev, inode, size, mtime_ns, ctime_ns)` is looked up in the hash cache ([`hashcache`]); a hit
//! costs one `stat`.
//!
//! Racy files: an entry is stored only if the file's mtime *and* ctime are at least
//! [`RACY_WINDOW`] older than the moment hashing began. Timestamps come from a coarse kernel
//! clock, so a file written again right after we read it can keep the very same stamp; such a
//! stamp must not vouch for content (git's "racily clean" problem). A file found modified while
//! it was read (its stamp differs before and after) is re-read, up to three times, then reported.
//! A file with a timestamp in the future (clock skew, an odd tar) is never cached: always
//! re-hashed, never trusted.
//!
//! Cache keys are absolute paths, so files hashed in a staging directory and then renamed into
//! the workspace miss once (the rename changes ctime; a stamp cannot prove it was only a
//! rename). [`Hasher::forget_under`] drops a discarded staging directory's entries.

mod hashcache;
mod manifest;

pub use hashcache::{CacheLoad, FileStamp};
pub use manifest::{is_sha256_hex, Manifest, ManifestEntry, ManifestError};

use std::cell::RefCell;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::fsutil::fs_err;

use hashcache::HashCache;

/// Files modified this recently before hashing began are hashed but not cached.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);
const READ_BUF: usize = 256 * 1024;
const READ_ATTEMPTS: usize = 3;

/// The content hash of a file or directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Digest {
    /// Lowercase hex sha256 (of the bytes, or of the manifest text for a directory).
    pub sha256: String,
    /// Bytes (for a directory, the sum over its files).
    pub size: u64,
    /// Number of files, for directories only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfiles: Option<u64>,
}

impl Digest {
    pub fn is_dir(&self) -> bool {
        self.nfiles.is_some()
    }
}

/// Why a path could not be hashed.
#[derive(Debug, Error)]
pub enum HashError {
    #[error(transparent)]
    Io(#[from] crate::fsutil::FsError),
    #[error(
        "symlink `{link}` points outside `{root}`; copy its target into the directory or declare \
         the target as a dependency of its own"
    )]
    SymlinkOutside { link: PathBuf, root: PathBuf },
    #[error("symlink `{link}` is dangling; remove it or restore its target")]
    DanglingSymlink { link: PathBuf },
    #[error("symlink `{link}` points to a directory that contains it (a cycle); remove the link")]
    SymlinkCycle { link: PathBuf },
    #[error(
        "`{path}` is not a regular file or directory (sockets, FIFOs and devices cannot be \
         hashed); move it out of the tracked path"
    )]
    Unsupported { path: PathBuf },
    #[error("file name `{path}` cannot be recorded in a manifest ({reason}); rename it")]
    BadName { path: PathBuf, reason: &'static str },
    #[error("`{path}` is not a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "`{path}` kept changing while it was being hashed; stop whatever writes it and run again"
    )]
    Unstable { path: PathBuf },
    #[error("failed to save the hash cache in `{path}`: {source}")]
    Save {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Counters since the hasher was opened (for `--verbose` reporting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HashStats {
    /// Files whose bytes were read and hashed.
    pub files_hashed: u64,
    /// Bytes read and hashed.
    pub bytes_hashed: u64,
    /// Files answered from the hash cache with a `stat` only.
    pub cache_hits: u64,
}

/// Hashes files and directories; shared by worker threads (`Send + Sync`).
pub struct Hasher {
    cache: HashCache,
    state_dir: Option<PathBuf>,
    racy_window: Duration,
    progress: Option<Box<dyn Fn(u64) + Send + Sync>>,
    files_hashed: AtomicU64,
    bytes_hashed: AtomicU64,
    cache_hits: AtomicU64,
}

/// A regular file found by a directory walk: its relpath and the path to read it through.
struct WalkedFile {
    rel: String,
    path: PathBuf,
}

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUF]);
}

fn unix_ns(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

impl Hasher {
    /// Opens the hasher with the hash cache in `state_dir` (`.repro/state`). A missing or
    /// damaged cache loads empty (see [`Hasher::cache_load`]); this does not fail on it.
    pub fn open(state_dir: &Path) -> Result<Self, HashError> {
        Ok(Self::with_cache(
            HashCache::load(state_dir),
            Some(state_dir.to_owned()),
        ))
    }

    /// A hasher whose cache lives in memory only ([`Hasher::save`] does nothing).
    pub fn ephemeral() -> Self {
        Self::with_cache(HashCache::ephemeral(), None)
    }

    fn with_cache(cache: HashCache, state_dir: Option<PathBuf>) -> Self {
        Hasher {
            cache,
            state_dir,
            racy_window: RACY_WINDOW,
            progress: None,
            files_hashed: AtomicU64::new(0),
            bytes_hashed: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
        }
    }

    /// Changes the racy-file window (tests use zero to cache files they just wrote).
    pub fn with_racy_window(mut self, window: Duration) -> Self {
        self.racy_window = window;
        self
    }

    /// Calls `progress(bytes)` after each file whose bytes were read (not for cache hits), from
    /// whichever worker thread hashed it: the executor forwards it to its reporter (library code
    /// never prints).
    pub fn with_progress(mut self, progress: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// How the on-disk cache was found at open.
    pub fn cache_load(&self) -> &CacheLoad {
        self.cache.load_status()
    }

    /// Number of entries in the hash cache.
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    pub fn stats(&self) -> HashStats {
        HashStats {
            files_hashed: self.files_hashed.load(Ordering::Relaxed),
            bytes_hashed: self.bytes_hashed.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
        }
    }

    /// Digest of a file or directory (`None` when the path does not exist). A directory's
    /// sha256 is sha256(manifest text); its size is the sum of file sizes; empty dirs and dir
    /// entries are not hashed.
    pub fn digest(&self, path: &Path) -> Result<Option<Digest>, HashError> {
        let path = std::path::absolute(path).map_err(fs_err("resolve", path))?;
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fs_err("stat", &path)(e).into()),
        };
        if meta.is_file() {
            let (sha, size) = self.hash_file(&path)?;
            Ok(Some(Digest {
                sha256: sha,
                size,
                nfiles: None,
            }))
        } else if meta.is_dir() {
            let m = self.manifest_abs(&path)?;
            Ok(Some(Digest {
                sha256: m.sha256(),
                size: m.total_size(),
                nfiles: Some(m.entries.len() as u64),
            }))
        } else {
            Err(HashError::Unsupported { path })
        }
    }

    /// The manifest of directory `dir` (files hashed in parallel).
    pub fn manifest(&self, dir: &Path) -> Result<Manifest, HashError> {
        let dir = std::path::absolute(dir).map_err(fs_err("resolve", dir))?;
        self.manifest_abs(&dir)
    }

    /// Digests of many paths, hashed in parallel, in the order given.
    pub fn digest_many(&self, paths: &[PathBuf]) -> Vec<Result<Option<Digest>, HashError>> {
        paths.par_iter().map(|p| self.digest(p)).collect()
    }

    /// Persists the hash cache atomically (no-op if nothing changed or the hasher is ephemeral).
    pub fn save(&self) -> Result<(), HashError> {
        self.cache.save().map_err(|source| HashError::Save {
            path: self
                .state_dir
                .clone()
                .unwrap_or_default()
                .join(hashcache::FILE_NAME),
            source,
        })
    }

    /// Forgets cached hashes at or below `prefix` (e.g. a staging directory being discarded),
    /// so the cache does not carry entries that can never hit again.
    pub fn forget_under(&self, prefix: &Path) {
        match std::path::absolute(prefix) {
            Ok(p) => self.cache.forget_under(&p),
            Err(_) => self.cache.forget_under(prefix),
        }
    }

    fn manifest_abs(&self, dir: &Path) -> Result<Manifest, HashError> {
        let meta = fs::metadata(dir).map_err(fs_err("stat", dir))?;
        if !meta.is_dir() {
            return Err(HashError::NotADirectory {
                path: dir.to_owned(),
            });
        }
        let root = fs::canonicalize(dir).map_err(fs_err("resolve", dir))?;
        let mut files = Vec::new();
        let mut ancestors = vec![root.clone()];
        walk(&root, dir, "", &mut ancestors, &mut files)?;
        files.sort_unstable_by(|a, b| a.rel.as_bytes().cmp(b.rel.as_bytes()));
        let entries = files
            .into_par_iter()
            .map(|f| {
                let (sha256, size) = self.hash_file(&f.path)?;
                Ok(ManifestEntry {
                    path: f.rel,
                    sha256,
                    size,
                })
            })
            .collect::<Result<Vec<_>, HashError>>()?;
        Ok(Manifest { entries })
    }

    /// sha256 (hex) and size of the regular file at absolute `path`, through the hash cache.
    fn hash_file(&self, path: &Path) -> Result<(String, u64), HashError> {
        let meta = fs::metadata(path).map_err(fs_err("stat", path))?;
        let stamp = FileStamp::of(&meta);
        if let Some(sha) = self.cache.lookup(path, &stamp) {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok((hex::encode(sha), stamp.size));
        }
        for _ in 0..READ_ATTEMPTS {
            let started = unix_ns(SystemTime::now());
            let mut file = File::open(path).map_err(fs_err("open", path))?;
            let before = FileStamp::of(&file.metadata().map_err(fs_err("stat", path))?);
            let (sha, n) = stream_sha256(&mut file).map_err(fs_err("read", path))?;
            let after = FileStamp::of(&file.metadata().map_err(fs_err("stat", path))?);
            if before != after || n != before.size {
                continue;
            }
            self.files_hashed.fetch_add(1, Ordering::Relaxed);
            self.bytes_hashed.fetch_add(n, Ordering::Relaxed);
            if let Some(progress) = &self.progress {
                progress(n);
            }
            let window = self.racy_window.as_nanos() as i128;
            let settled = |ts: i64| ts as i128 + window <= started;
            if settled(before.mtime_ns) && settled(before.ctime_ns) {
                self.cache.insert(path.to_owned(), before, sha);
            }
            return Ok((hex::encode(sha), n));
        }
        Err(HashError::Unstable {
            path: path.to_owned(),
        })
    }
}

/// Streams `reader` through sha256; returns the digest and the byte count.
pub fn stream_sha256(reader: &mut impl Read) -> io::Result<([u8; 32], u64)> {
    stream_sha256_into(reader, |_| Ok(()))
}

/// Streams `reader` through sha256, handing every chunk to `sink` too (a copy that hashes what
/// it writes in one pass). Uses a per-thread buffer: no allocation per file.
pub fn stream_sha256_into(
    reader: &mut impl Read,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<([u8; 32], u64)> {
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        let mut h = Sha256::new();
        let mut n = 0u64;
        loop {
            match reader.read(&mut buf[..]) {
                Ok(0) => break,
                Ok(k) => {
                    h.update(&buf[..k]);
                    sink(&buf[..k])?;
                    n += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok((h.finalize().into(), n))
    })
}

/// Collects the regular files below `dir` (read through `dir`, whose canonical path is the
/// last of `ancestors`) into `out`, with relpaths prefixed by `prefix`.
fn walk(
    root: &Path,
    dir: &Path,
    prefix: &str,
    ancestors: &mut Vec<PathBuf>,
    out: &mut Vec<WalkedFile>,
) -> Result<(), HashError> {
    let rd = fs::read_dir(dir).map_err(fs_err("read directory", dir))?;
    for entry in rd {
        let entry = entry.map_err(fs_err("read directory", dir))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_str().ok_or_else(|| HashError::BadName {
            path: path.clone(),
            reason: "not valid UTF-8",
        })?;
        if crate::fsutil::is_temp_name(name) {
            // An engine temp file (a copy in flight, or a leftover of a killed run): never content.
            continue;
        }
        if name.contains('\n') {
            return Err(HashError::BadName {
                path,
                reason: "contains a newline",
            });
        }
        let rel = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        let ft = entry.file_type().map_err(fs_err("stat", &path))?;
        let (is_dir, canonical) = if ft.is_symlink() {
            let target = match fs::canonicalize(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(HashError::DanglingSymlink { link: path })
                }
                Err(e) => return Err(fs_err("resolve", &path)(e).into()),
            };
            if !target.starts_with(root) {
                return Err(HashError::SymlinkOutside {
                    link: path,
                    root: root.to_owned(),
                });
            }
            let meta = fs::metadata(&target).map_err(fs_err("stat", &target))?;
            if meta.is_dir() {
                if ancestors.contains(&target) {
                    return Err(HashError::SymlinkCycle { link: path });
                }
                (true, target)
            } else if meta.is_file() {
                (false, target)
            } else {
                return Err(HashError::Unsupported { path });
            }
        } else if ft.is_dir() {
            let parent = ancestors.last().cloned().unwrap_or_else(|| root.to_owned());
            (true, parent.join(name))
        } else if ft.is_file() {
            (false, PathBuf::new())
        } else {
            return Err(HashError::Unsupported { path });
        };
        if is_dir {
            ancestors.push(canonical);
            let r = walk(root, &path, &rel, ancestors, out);
            ancestors.pop();
            r?;
        } else {
            out.push(WalkedFile { rel, path });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::process::Command;

    fn sha_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// Sets mtime one hour back, so the only "recent" timestamp left is ctime.
    fn age(path: &Path) {
        let f = File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
    }

    fn sha256sum_cmd(path: &Path) -> Option<String> {
        let out = Command::new("sha256sum").arg(path).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        Some(text.split_whitespace().next()?.to_owned())
    }

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d");
        fs::create_dir_all(d.join("sub/deeper")).unwrap();
        fs::create_dir_all(d.join("empty")).unwrap();
        fs::write(d.join("a.txt"), b"alpha\n").unwrap();
        fs::write(d.join("sub/b.bin"), vec![7u8; 300_000]).unwrap();
        fs::write(d.join("sub/deeper/c"), b"").unwrap();
        fs::write(d.join("with space"), b"x").unwrap();
        t
    }

    #[test]
    fn file_digest_matches_sha2_and_sha256sum() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f.bin");
        // Larger than the read buffer, not a multiple of it.
        let bytes: Vec<u8> = (0..(READ_BUF * 2 + 12345))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        fs::write(&p, &bytes).unwrap();
        let d = Hasher::ephemeral().digest(&p).unwrap().unwrap();
        assert_eq!(d.sha256, sha_hex(&bytes));
        assert_eq!(d.size, bytes.len() as u64);
        assert_eq!(d.nfiles, None);
        if let Some(external) = sha256sum_cmd(&p) {
            assert_eq!(d.sha256, external);
        }
    }

    #[test]
    fn dir_digest_is_sha_of_sorted_manifest_text() {
        let t = tree();
        let d = t.path().join("d");
        let h = Hasher::ephemeral();
        let got = h.digest(&d).unwrap().unwrap();
        // Built by hand: byte-sorted relpaths, `relpath sha256\n`, empty dirs absent.
        let text = format!(
            "a.txt {}\nsub/b.bin {}\nsub/deeper/c {}\nwith space {}\n",
            sha_hex(b"alpha\n"),
            sha_hex(&vec![7u8; 300_000]),
            sha_hex(b""),
            sha_hex(b"x"),
        );
        assert_eq!(h.manifest(&d).unwrap().text(), text);
        assert_eq!(got.sha256, sha_hex(text.as_bytes()));
        assert_eq!(got.size, 6 + 300_000 + 1);
        assert_eq!(got.nfiles, Some(4));
        // An empty directory is not part of the content.
        fs::remove_dir(d.join("empty")).unwrap();
        assert_eq!(h.digest(&d).unwrap().unwrap(), got);
    }

    #[test]
    fn missing_path_is_none() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(
            Hasher::ephemeral().digest(&t.path().join("nope")).unwrap(),
            None
        );
    }

    #[test]
    fn digest_many_keeps_order() {
        let t = tree();
        let d = t.path().join("d");
        let paths = vec![
            d.join("with space"),
            d.join("missing"),
            d.clone(),
            d.join("a.txt"),
        ];
        let h = Hasher::ephemeral();
        let got: Vec<_> = h
            .digest_many(&paths)
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        for (p, g) in paths.iter().zip(&got) {
            assert_eq!(&h.digest(p).unwrap(), g);
        }
        assert_eq!(got[0].as_ref().unwrap().sha256, sha_hex(b"x"));
        assert!(got[1].is_none());
    }

    #[test]
    fn cache_hit_avoids_rehash_and_survives_save() {
        let t = tree();
        let d = t.path().join("d");
        let state = t.path().join("state");
        let h = Hasher::open(&state)
            .unwrap()
            .with_racy_window(Duration::ZERO);
        let first = h.digest(&d).unwrap();
        assert_eq!(h.stats().files_hashed, 4);
        assert_eq!(h.digest(&d).unwrap(), first);
        assert_eq!(h.stats().files_hashed, 4);
        assert_eq!(h.stats().cache_hits, 4);
        h.save().unwrap();

        let counter = || std::sync::Arc::new(AtomicU64::new(0));
        let (warm_bytes, cold_bytes) = (counter(), counter());
        let w = warm_bytes.clone();
        let warm = Hasher::open(&state)
            .unwrap()
            .with_progress(move |n| _ = w.fetch_add(n, Ordering::Relaxed));
        assert_eq!(warm.digest(&d).unwrap(), first);
        assert_eq!(
            warm_bytes.load(Ordering::Relaxed),
            0,
            "hits report no bytes"
        );
        let c = cold_bytes.clone();
        let cold =
            Hasher::ephemeral().with_progress(move |n| _ = c.fetch_add(n, Ordering::Relaxed));
        cold.digest(&d).unwrap();
        let size = first.as_ref().unwrap().size;
        assert_eq!(cold_bytes.load(Ordering::Relaxed), size);
        assert_eq!(cold.stats().bytes_hashed, size);

        let h2 = Hasher::open(&state).unwrap();
        assert_eq!(h2.cache_load(), &CacheLoad::Loaded { entries: 4 });
        assert_eq!(h2.digest(&d).unwrap(), first);
        assert_eq!(h2.stats().files_hashed, 0);
    }

    #[test]
    fn same_size_edit_with_restored_mtime_is_detected() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        fs::write(&p, b"aaaa").unwrap();
        age(&p);
        let h = Hasher::ephemeral().with_racy_window(Duration::ZERO);
        let before = h.digest(&p).unwrap().unwrap();
        let mtime = fs::metadata(&p).unwrap().modified().unwrap();
        // Same size, and the old mtime put back (like `cp -p`/`touch -d`): only ctime moves.
        std::thread::sleep(Duration::from_millis(20));
        fs::write(&p, b"bbbb").unwrap();
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let after = h.digest(&p).unwrap().unwrap();
        assert_eq!(after.sha256, sha_hex(b"bbbb"));
        assert_ne!(before, after);
        assert_eq!(h.stats().files_hashed, 2);
    }

    #[test]
    fn racy_entry_is_not_stored() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        fs::write(&p, b"fresh").unwrap();
        let h = Hasher::ephemeral(); // default 2 s window: the file was written just now
        h.digest(&p).unwrap();
        assert_eq!(h.cache_len(), 0);
        h.digest(&p).unwrap();
        assert_eq!(h.stats().files_hashed, 2);
        // An old mtime alone is not enough: ctime is still recent.
        age(&p);
        h.digest(&p).unwrap();
        assert_eq!(h.cache_len(), 0);
    }

    #[test]
    fn symlink_inside_is_followed_outside_is_an_error() {
        let t = tree();
        let d = t.path().join("d");
        symlink("a.txt", d.join("link")).unwrap();
        symlink("sub", d.join("sublink")).unwrap();
        let h = Hasher::ephemeral();
        let m = h.manifest(&d).unwrap();
        let find = |p: &str| {
            m.entries
                .iter()
                .find(|e| e.path == p)
                .unwrap()
                .sha256
                .clone()
        };
        assert_eq!(find("link"), sha_hex(b"alpha\n"));
        assert_eq!(find("sublink/b.bin"), find("sub/b.bin"));

        fs::write(t.path().join("outside"), b"o").unwrap();
        symlink("../outside", d.join("out")).unwrap();
        assert!(matches!(
            h.digest(&d),
            Err(HashError::SymlinkOutside { .. })
        ));
        fs::remove_file(d.join("out")).unwrap();

        symlink("..", d.join("sub/up")).unwrap();
        assert!(matches!(h.digest(&d), Err(HashError::SymlinkCycle { .. })));
        fs::remove_file(d.join("sub/up")).unwrap();

        symlink("nowhere", d.join("dangling")).unwrap();
        assert!(matches!(
            h.digest(&d),
            Err(HashError::DanglingSymlink { .. })
        ));
    }

    #[test]
    fn file_names_that_break_the_manifest_are_errors() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("bad\nname"), b"x").unwrap();
        let err = Hasher::ephemeral().digest(t.path()).unwrap_err();
        assert!(matches!(err, HashError::BadName { .. }), "{err}");
    }

    #[test]
    fn fifo_is_unsupported() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("pipe");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo does not retain the pointer.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let h = Hasher::ephemeral();
        assert!(matches!(
            h.digest(&fifo),
            Err(HashError::Unsupported { .. })
        ));
        assert!(matches!(
            h.digest(t.path()),
            Err(HashError::Unsupported { .. })
        ));
    }
}
