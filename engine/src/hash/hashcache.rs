//! The metadata-keyed hash cache: `absolute path -> (dev, inode, size, mtime_ns, ctime_ns) -> sha256`.
//!
//! It is what makes a no-op run cost a `stat` per file instead of a read. An entry is trusted
//! only when all five stamp fields match the file now; `ctime` is in the stamp because tools
//! that restore an old mtime (`cp -p`, `tar`, `rsync -t`, `touch -d`) cannot restore ctime.
//! *Whether* an entry may be stored at all (the racy-file guard) is the [`super::Hasher`]'s
//! policy; this module only keeps, loads and saves entries.
//!
//! On disk (`.repro/state/hashcache.v1`), little-endian:
//!
//! ```text
//! magic "repro-hashcache\0" (16 B) | version u32 | count u64
//! count x ( path_len u32 | path bytes | dev u64 | ino u64 | size u64
//!           | mtime_ns i64 | ctime_ns i64 | last_used_s u64 | sha256 [32] )
//! sha256 of every preceding byte [32]
//! ```
//!
//! A missing, truncated, foreign or checksum-failing file loads as an empty cache: losing it
//! costs one re-hash, never a wrong answer, and never stops a run. Bump [`FORMAT_VERSION`] and
//! the file name together when the layout or the meaning of a field changes.
//!
//! Entries not used for [`MAX_IDLE_SECS`] are dropped at save, so paths of deleted files and
//! of old staging directories do not accumulate forever. `last_used` is refreshed at most once
//! a day so that a warm no-op run does not have to rewrite the file.

use std::collections::HashMap;
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

/// File name of the cache inside the state directory.
pub const FILE_NAME: &str = "hashcache.v1";
/// Version written in the header; must change together with [`FILE_NAME`].
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 16] = b"repro-hashcache\0";
/// Entries unused for this long are dropped at save.
pub const MAX_IDLE_SECS: u64 = 30 * 24 * 3600;
const TOUCH_EVERY_SECS: u64 = 24 * 3600;
const ENTRY_FIXED: usize = 4 + 8 * 6 + 32;

/// The metadata that must be unchanged for a cached hash to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl FileStamp {
    pub fn of(meta: &Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    stamp: FileStamp,
    sha256: [u8; 32],
    last_used: u64,
}

/// How the cache file was found when it was loaded (for the caller to report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLoad {
    /// Not persisted (an ephemeral hasher).
    Ephemeral,
    /// No cache file yet.
    Missing,
    /// Loaded this many entries.
    Loaded { entries: usize },
    /// The file was unreadable or damaged and was ignored; every file will be re-hashed.
    Discarded { reason: String },
}

pub struct HashCache {
    file: Option<PathBuf>,
    map: RwLock<HashMap<PathBuf, Entry>>,
    dirty: AtomicBool,
    load: CacheLoad,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl HashCache {
    pub fn ephemeral() -> HashCache {
        HashCache {
            file: None,
            map: RwLock::new(HashMap::new()),
            dirty: AtomicBool::new(false),
            load: CacheLoad::Ephemeral,
        }
    }

    /// Loads `state_dir/hashcache.v1`; never fails (see the module docs).
    pub fn load(state_dir: &Path) -> HashCache {
        let file = state_dir.join(FILE_NAME);
        let (map, load) = match std::fs::read(&file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (HashMap::new(), CacheLoad::Missing)
            }
            Err(e) => (
                HashMap::new(),
                CacheLoad::Discarded {
                    reason: format!("cannot read `{}`: {e}", file.display()),
                },
            ),
            Ok(bytes) => match decode(&bytes) {
                Ok(map) => {
                    let entries = map.len();
                    (map, CacheLoad::Loaded { entries })
                }
                Err(reason) => (
                    HashMap::new(),
                    CacheLoad::Discarded {
                        reason: format!("`{}` {reason}", file.display()),
                    },
                ),
            },
        };
        HashCache {
            file: Some(file),
            map: RwLock::new(map),
            dirty: AtomicBool::new(false),
            load,
        }
    }

    pub fn load_status(&self) -> &CacheLoad {
        &self.load
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    // A panic while holding the lock cannot leave a map entry half-written (entries are Copy
    // values inserted whole), so a poisoned lock is safe to keep using.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<PathBuf, Entry>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<PathBuf, Entry>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached sha256 of `path`, if its entry's stamp equals `stamp`.
    pub fn lookup(&self, path: &Path, stamp: &FileStamp) -> Option<[u8; 32]> {
        let now = now_secs();
        let (sha, stale_use) = {
            let map = self.read();
            let e = map.get(path)?;
            if e.stamp != *stamp {
                return None;
            }
            (e.sha256, e.last_used + TOUCH_EVERY_SECS < now)
        };
        if stale_use {
            if let Some(e) = self.write().get_mut(path) {
                e.last_used = now;
                self.dirty.store(true, Ordering::Relaxed);
            }
        }
        Some(sha)
    }

    pub fn insert(&self, path: PathBuf, stamp: FileStamp, sha256: [u8; 32]) {
        let entry = Entry {
            stamp,
            sha256,
            last_used: now_secs(),
        };
        self.write().insert(path, entry);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Drops every entry at or below `prefix` (e.g. a staging directory about to be removed).
    pub fn forget_under(&self, prefix: &Path) {
        let mut map = self.write();
        let before = map.len();
        map.retain(|p, _| !p.starts_with(prefix));
        if map.len() != before {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Writes the cache atomically if anything changed since it was loaded.
    pub fn save(&self) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        // Cleared before encoding: an insert racing with this save marks it dirty again.
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let bytes = {
            let mut map = self.write();
            let cutoff = now_secs().saturating_sub(MAX_IDLE_SECS);
            map.retain(|_, e| e.last_used >= cutoff);
            encode(&map)
        };
        crate::fsutil::write_atomic(file, &bytes).inspect_err(|_| {
            self.dirty.store(true, Ordering::Relaxed);
        })
    }
}

fn encode(map: &HashMap<PathBuf, Entry>) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let size: usize = map.keys().map(|p| p.as_os_str().len() + ENTRY_FIXED).sum();
    let mut out = Vec::with_capacity(16 + 4 + 8 + size + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(map.len() as u64).to_le_bytes());
    for (path, e) in map {
        let p = path.as_os_str().as_bytes();
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
        for v in [e.stamp.dev, e.stamp.ino, e.stamp.size] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&e.stamp.mtime_ns.to_le_bytes());
        out.extend_from_slice(&e.stamp.ctime_ns.to_le_bytes());
        out.extend_from_slice(&e.last_used.to_le_bytes());
        out.extend_from_slice(&e.sha256);
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err("is truncated".into());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array()?))
    }
}

fn decode(bytes: &[u8]) -> Result<HashMap<PathBuf, Entry>, String> {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    if bytes.len() < MAGIC.len() + 4 + 8 + 32 {
        return Err("is truncated".into());
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if body[..MAGIC.len()] != MAGIC[..] {
        return Err("is not a repro hash cache".into());
    }
    if Sha256::digest(body)[..] != sum[..] {
        return Err("fails its checksum (damaged or partly written)".into());
    }
    let mut r = Reader {
        buf: &body[MAGIC.len()..],
    };
    let version = r.u32()?;
    if version != FORMAT_VERSION {
        return Err(format!(
            "has format version {version}, expected {FORMAT_VERSION}"
        ));
    }
    let count = r.u64()?;
    // The count is checksummed, but cap the pre-allocation by what the bytes could hold.
    let cap = (count as usize).min(r.buf.len() / ENTRY_FIXED);
    let mut map = HashMap::with_capacity(cap);
    for _ in 0..count {
        let len = r.u32()? as usize;
        let path = PathBuf::from(OsStr::from_bytes(r.take(len)?));
        let stamp = FileStamp {
            dev: r.u64()?,
            ino: r.u64()?,
            size: r.u64()?,
            mtime_ns: r.i64()?,
            ctime_ns: r.i64()?,
        };
        let last_used = r.u64()?;
        let sha256 = r.array()?;
        map.insert(
            path,
            Entry {
                stamp,
                sha256,
                last_used,
            },
        );
    }
    if !r.buf.is_empty() {
        return Err("has trailing bytes".into());
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(n: u64) -> FileStamp {
        FileStamp {
            dev: 1,
            ino: n,
            size: 100 + n,
            mtime_ns: -5,
            ctime_ns: 1_700_000_000_123_456_789,
        }
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let c = HashCache::load(dir.path());
        assert_eq!(c.load_status(), &CacheLoad::Missing);
        for i in 0..50 {
            c.insert(PathBuf::from(format!("/x/f {i}")), stamp(i), [i as u8; 32]);
        }
        c.save().unwrap();
        let d = HashCache::load(dir.path());
        assert_eq!(d.load_status(), &CacheLoad::Loaded { entries: 50 });
        assert_eq!(d.lookup(Path::new("/x/f 7"), &stamp(7)), Some([7; 32]));
        // Any stamp field differing is a miss.
        let mut s = stamp(7);
        s.ctime_ns += 1;
        assert_eq!(d.lookup(Path::new("/x/f 7"), &s), None);
    }

    #[test]
    fn damaged_file_loads_empty_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let c = HashCache::load(dir.path());
        c.insert(PathBuf::from("/a"), stamp(1), [1; 32]);
        c.save().unwrap();
        let file = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&file, &bytes).unwrap();
        let d = HashCache::load(dir.path());
        assert!(matches!(d.load_status(), CacheLoad::Discarded { .. }));
        assert_eq!(d.len(), 0);
        std::fs::write(&file, &bytes[..10]).unwrap();
        assert!(matches!(
            HashCache::load(dir.path()).load_status(),
            CacheLoad::Discarded { .. }
        ));
    }

    #[test]
    fn forget_under_drops_a_subtree_only() {
        let c = HashCache::ephemeral();
        c.insert(PathBuf::from("/w/.repro/tmp/run1/out"), stamp(1), [1; 32]);
        c.insert(PathBuf::from("/w/.repro/tmp/run10"), stamp(2), [2; 32]);
        c.insert(PathBuf::from("/w/data"), stamp(3), [3; 32]);
        c.forget_under(Path::new("/w/.repro/tmp/run1"));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn idle_entries_are_dropped_at_save() {
        let dir = tempfile::tempdir().unwrap();
        let c = HashCache::load(dir.path());
        c.insert(PathBuf::from("/old"), stamp(1), [1; 32]);
        c.insert(PathBuf::from("/new"), stamp(2), [2; 32]);
        c.write().get_mut(Path::new("/old")).unwrap().last_used = 0;
        c.save().unwrap();
        let d = HashCache::load(dir.path());
        assert_eq!(d.load_status(), &CacheLoad::Loaded { entries: 1 });
    }
}
