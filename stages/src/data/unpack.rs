//! Safe unpacking of the archives datasets and packages come in: tar, tar.gz, tar.xz, zip, gz
//! and Debian `.deb` (an `ar` archive around `data.tar.{gz,xz}`).
//!
//! An archive is untrusted input: it comes from a mirror, a registry or a user's disk. Whatever
//! checksum covers the archive's own bytes (a source's `md5:`/`sha256:`) is verified by
//! [`super::fetch`] **before** this module opens it; the content pin covers what comes out, so
//! it can only be checked afterwards, and until then the bounds below are all that stands
//! between a hostile archive and the disk.
//!
//! ## Safety
//!
//! Every entry is checked before anything is written, and the whole archive is refused when an
//! entry
//! - has an absolute path or a `..` component;
//! - is a symlink whose target is absolute or leaves the destination (or is longer than 4096
//!   bytes);
//! - is a hard link to a path that is itself unsafe;
//! - would be written through a symlink the archive created earlier (so a link that looked
//!   harmless cannot redirect a later file);
//! - is a device, fifo or other special file.
//!
//! ## Bounds ([`Limits`])
//!
//! | bound | default | what it stops |
//! |---|---|---|
//! | `max_bytes` | 4 GiB | total bytes of all unpacked files |
//! | `max_entries` | 100 000 | files, directories and links |
//! | `max_ratio` | 200 | unpacked bytes per compressed byte, once past 64 MiB ([`RATIO_GRACE`]) |
//! | `min_free` | 1 GiB or 5 % of the filesystem, the smaller | the free space left where it unpacks |
//!
//! The defaults derive from the data: STL-10, the largest known dataset, unpacks to 3.1 GB
//! (2.9 GiB; its archive is 2.6 GB), so 4 GiB leaves it a third of headroom; the known
//! datasets compress at most 5:1 (MNIST's IDX files), while a gzip bomb of zeros reaches
//! 1000:1 and an xz one beyond 5000:1. The ratio is measured per zip entry against its
//! compressed size, and for the stream formats (tar, tar.gz, tar.xz, gz, deb) against the
//! compressed bytes read so far; a file of zeros under 64 MiB is harmless and never refused for
//! its ratio. A larger or more compressible archive needs the bound raised explicitly
//! (`max_bytes:` etc. in the `fetch` stage's `with:`).
//!
//! What can be checked before unpacking is: a zip's central directory (entry count, declared
//! sizes and per-entry ratios) and the free space on the destination's filesystem. Headers can
//! lie, so during unpacking bytes are counted as they are written, never taken from a header;
//! the free space is re-read (`statvfs`) every 16 MiB and whenever the last reading would not
//! cover the next write. An xz stream is checked ahead of its decoder: `lzma-rs` holds a whole
//! block in memory before writing any of it, so `XzGuard` reads the LZMA2 chunk headers as the
//! compressed bytes pass and stops at the first chunk whose declared size would break
//! `max_bytes` or `max_ratio`, before it is decoded. A legitimate tar.xz still costs memory
//! for its largest block (the whole archive, as `xz` writes one block), which `max_bytes`
//! bounds.
//!
//! A violation is [`DataError::ArchiveLimit`], naming the archive, the entry, the bound and the
//! param that raises it.
//!
//! ## Nothing half-unpacked
//!
//! [`unpack`] unpacks into a `.unpack-*` directory beside `dest` and renames it into place only
//! when the whole archive went through; on any error the directory is removed and `dest` is
//! untouched. [`gunzip_file`] likewise writes a temp file beside its output. Hard links are
//! materialized as copies, and no ownership, permission bits beyond "executable" or timestamps
//! are restored: the content hash is all that later stages look at.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use super::error::ArchiveBound;
use super::DataError;
use repro_engine::fsutil::parent_dir;

/// Default [`Limits::max_bytes`]: 4 GiB (STL-10 unpacks to 2.9 GiB).
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;
/// Default [`Limits::max_entries`].
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;
/// Default [`Limits::max_ratio`].
pub const DEFAULT_MAX_RATIO: u64 = 200;
/// Output an entry or a stream may produce before its ratio is checked.
pub const RATIO_GRACE: u64 = 64 << 20;
/// Default free space to keep, unless 5 % of the filesystem is less.
pub const DEFAULT_MIN_FREE: u64 = 1 << 30;
/// How many bytes may be written between two readings of the free space.
const SPACE_CHECK_EVERY: u64 = 16 << 20;
/// Longest symlink target read from a zip entry.
const MAX_LINK: u64 = 4096;

/// Caps on what one archive may unpack to (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes of all unpacked files.
    pub max_bytes: u64,
    /// Number of entries (files, directories, links).
    pub max_entries: u64,
    /// Unpacked bytes per compressed byte, checked once past [`RATIO_GRACE`].
    pub max_ratio: u64,
    /// Bytes to leave free on the destination's filesystem; `None`: [`DEFAULT_MIN_FREE`] or 5 %
    /// of the filesystem, whichever is smaller.
    pub min_free: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: DEFAULT_MAX_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_ratio: DEFAULT_MAX_RATIO,
            min_free: None,
        }
    }
}

/// The archive formats this module understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Tar,
    TarGz,
    TarXz,
    Zip,
    /// A single gzipped file (`x.gz` unpacks to `x`).
    Gz,
    /// A Debian package: only its `data.tar.*` member is unpacked.
    Deb,
}

impl ArchiveKind {
    /// Parses the names accepted in `unpack:` params.
    pub fn parse(s: &str) -> Option<ArchiveKind> {
        Some(match s {
            "tar" => ArchiveKind::Tar,
            "tar.gz" | "tgz" => ArchiveKind::TarGz,
            "tar.xz" | "txz" => ArchiveKind::TarXz,
            "zip" | "whl" => ArchiveKind::Zip,
            "gz" => ArchiveKind::Gz,
            "deb" => ArchiveKind::Deb,
            _ => return None,
        })
    }

    /// Guesses the kind from a file name; `None` for a plain file.
    pub fn from_name(name: &str) -> Option<ArchiveKind> {
        let n = name.to_ascii_lowercase();
        let kinds = [
            (".tar.gz", ArchiveKind::TarGz),
            (".tgz", ArchiveKind::TarGz),
            (".tar.xz", ArchiveKind::TarXz),
            (".txz", ArchiveKind::TarXz),
            (".tar", ArchiveKind::Tar),
            (".zip", ArchiveKind::Zip),
            (".whl", ArchiveKind::Zip),
            (".deb", ArchiveKind::Deb),
            (".gz", ArchiveKind::Gz),
        ];
        kinds
            .iter()
            .find(|(ext, _)| n.ends_with(ext))
            .map(|(_, k)| *k)
    }
}

/// Unpacks `archive` (of the given kind) into `dest`, which must not exist or be an empty
/// directory. On error `dest` is left as it was (see the module doc).
pub fn unpack(
    archive: &Path,
    kind: ArchiveKind,
    dest: &Path,
    limits: &Limits,
) -> Result<(), DataError> {
    if fs::read_dir(dest).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(DataError::io(
            "unpack into",
            dest,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the directory is not empty; unpack into a new one",
            ),
        ));
    }
    let parent = parent_dir(dest);
    fs::create_dir_all(parent).map_err(|e| DataError::io("create directory", parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(
            ".unpack-{}-",
            dest.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ))
        .tempdir_in(parent)
        .map_err(|e| DataError::io("create a temp directory in", parent, e))?;
    {
        // Temp directories are created 0700; the unpacked tree should read like any other.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755))
            .map_err(|e| DataError::io("set permissions of", staging.path(), e))?;
    }
    unpack_into(archive, kind, staging.path(), limits)?;
    let staged = staging.keep();
    fs::rename(&staged, dest).map_err(|e| {
        let _ = fs::remove_dir_all(&staged);
        DataError::io("rename into", dest, e)
    })
}

/// The unpacking itself, into the (empty) staging directory `dir`.
fn unpack_into(
    archive: &Path,
    kind: ArchiveKind,
    dir: &Path,
    limits: &Limits,
) -> Result<(), DataError> {
    let read = Arc::new(AtomicU64::new(0));
    let input = || -> Result<Counting<File>, DataError> {
        let file = File::open(archive).map_err(|e| DataError::io("open", archive, e))?;
        Ok(Counting::new(file, read.clone()))
    };
    let mut budget = Budget::new(archive, limits, dir, Some(read.clone()))?;
    match kind {
        ArchiveKind::Tar => untar(BufReader::new(input()?), dir, &mut budget),
        ArchiveKind::TarGz => untar(
            flate2::read::MultiGzDecoder::new(BufReader::new(input()?)),
            dir,
            &mut budget,
        ),
        ArchiveKind::TarXz => untar_xz(BufReader::new(input()?), dir, &mut budget),
        ArchiveKind::Zip => {
            // Zip entries are compressed one by one: their ratio is per entry.
            budget.stream_read = None;
            let file = File::open(archive).map_err(|e| DataError::io("open", archive, e))?;
            unzip(file, dir, &mut budget)
        }
        ArchiveKind::Gz => {
            let name = archive
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let out = name
                .strip_suffix(".gz")
                .filter(|s| !s.is_empty())
                .unwrap_or("data")
                .to_string();
            let mut file = File::create(dir.join(&out))
                .map_err(|e| DataError::io("create", dir.join(&out), e))?;
            gunzip(BufReader::new(input()?), &mut file, &out, &mut budget)
        }
        ArchiveKind::Deb => undeb(input()?, dir, &mut budget),
    }
}

/// Decompresses one gzip file to `out` within the limits, through a temp file beside `out`:
/// on error nothing is left at `out`.
pub fn gunzip_file(src: &Path, out: &Path, limits: &Limits) -> Result<(), DataError> {
    let dir = parent_dir(out);
    fs::create_dir_all(dir).map_err(|e| DataError::io("create directory", dir, e))?;
    let read = Arc::new(AtomicU64::new(0));
    let input = File::open(src).map_err(|e| DataError::io("open", src, e))?;
    let mut budget = Budget::new(src, limits, dir, Some(read.clone()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| DataError::io("create a temp file in", dir, e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(|e| DataError::io("set permissions of", tmp.path(), e))?;
    }
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    gunzip(
        BufReader::new(Counting::new(input, read)),
        tmp.as_file_mut(),
        &name,
        &mut budget,
    )?;
    tmp.persist(out)
        .map_err(|e| DataError::io("rename into", out, e.error))?;
    Ok(())
}

/// Decompresses a gzip stream (several members allowed) into `file`, within the budget.
fn gunzip(
    input: impl Read,
    file: &mut File,
    name: &str,
    budget: &mut Budget,
) -> Result<(), DataError> {
    budget.entry(name)?;
    let mut reader = flate2::read::MultiGzDecoder::new(input);
    budget
        .copy(&mut reader, file, name, None)
        .map_err(|e| match e {
            DataError::Io(e) if e.source.kind() == io::ErrorKind::InvalidInput => {
                DataError::raw(budget.archive.clone(), "gzip", e.source.to_string())
            }
            other => other,
        })
}

/// A reader that adds the bytes it passes on to a shared counter: the compressed bytes
/// consumed so far, for the ratio of a stream.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R> Counting<R> {
    fn new(inner: R, read: Arc<AtomicU64>) -> Self {
        Counting { inner, read }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The free space on the filesystem of a directory, as `statvfs` reports it to an
/// unprivileged user: `(available, total)` bytes; `None` where it cannot be read.
// The statvfs field types differ between platforms (u64 here, u32 on some 32-bit ones).
#[allow(clippy::unnecessary_cast)]
fn free_space(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and a pointer to a statvfs the call fills in.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    let unit = st.f_frsize as u64;
    Some((
        (st.f_bavail as u64).saturating_mul(unit),
        (st.f_blocks as u64).saturating_mul(unit),
    ))
}

/// What may still be written to the destination's filesystem before its reserve is reached.
struct Space {
    dir: PathBuf,
    /// Bytes to keep free.
    reserve: u64,
    /// Free bytes at the last reading.
    free: u64,
    /// Bytes that may still be written, as of the last reading minus what was written since.
    headroom: u64,
    /// Bytes written since the last reading.
    since: u64,
    /// Whether the filesystem answers `statvfs` at all; if not, nothing is checked.
    known: bool,
}

impl Space {
    fn new(dir: &Path, min_free: Option<u64>) -> Space {
        match free_space(dir) {
            Some((free, total)) => {
                let reserve = min_free.unwrap_or(DEFAULT_MIN_FREE.min(total / 20));
                Space {
                    dir: dir.to_path_buf(),
                    reserve,
                    free,
                    headroom: free.saturating_sub(reserve),
                    since: 0,
                    known: true,
                }
            }
            None => Space {
                dir: dir.to_path_buf(),
                reserve: 0,
                free: u64::MAX,
                headroom: u64::MAX,
                since: 0,
                known: false,
            },
        }
    }

    fn refresh(&mut self) {
        if let Some((free, _)) = free_space(&self.dir) {
            self.free = free;
            self.headroom = free.saturating_sub(self.reserve);
            self.since = 0;
        }
    }

    /// Claims `n` bytes; `Err(())` when they would eat into the reserve.
    fn claim(&mut self, n: u64) -> Result<(), ()> {
        if !self.known {
            return Ok(());
        }
        if n > self.headroom || self.since >= SPACE_CHECK_EVERY {
            self.refresh();
            if n > self.headroom {
                return Err(());
            }
        }
        self.headroom -= n;
        self.since += n;
        Ok(())
    }
}

/// Running totals against the limits, and the archive name for errors.
struct Budget {
    archive: PathBuf,
    limits: Limits,
    bytes: u64,
    entries: u64,
    /// Compressed bytes read so far, for the formats that are one stream (the ratio is then
    /// the stream's); `None` for zip, whose entries carry their own compressed size.
    stream_read: Option<Arc<AtomicU64>>,
    space: Space,
}

impl Budget {
    /// A budget for unpacking `archive` into `dir`; refuses at once when the filesystem of
    /// `dir` has no room left above its reserve.
    fn new(
        archive: &Path,
        limits: &Limits,
        dir: &Path,
        stream_read: Option<Arc<AtomicU64>>,
    ) -> Result<Budget, DataError> {
        let budget = Budget {
            archive: archive.to_path_buf(),
            limits: *limits,
            bytes: 0,
            entries: 0,
            stream_read,
            space: Space::new(dir, limits.min_free),
        };
        if budget.space.known && budget.space.headroom == 0 {
            return Err(budget.no_space(""));
        }
        Ok(budget)
    }

    fn refuse(&self, entry: &str, reason: impl Into<String>) -> DataError {
        DataError::UnsafeArchive {
            archive: self.archive.clone(),
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }

    fn over(&self, entry: &str, bound: ArchiveBound, limit: u64, detail: String) -> DataError {
        DataError::ArchiveLimit {
            archive: self.archive.clone(),
            entry: entry.to_string(),
            bound,
            limit,
            detail,
        }
    }

    fn over_bytes(&self, entry: &str) -> DataError {
        let max = self.limits.max_bytes;
        self.over(
            entry,
            ArchiveBound::Bytes,
            max,
            format!("takes the unpacked size past the limit of {max} bytes"),
        )
    }

    fn no_space(&self, entry: &str) -> DataError {
        let s = &self.space;
        self.over(
            entry,
            ArchiveBound::FreeSpace,
            s.reserve,
            format!(
                "would leave less than {} bytes free on the filesystem of `{}` ({} bytes free)",
                s.reserve,
                s.dir.display(),
                s.free
            ),
        )
    }

    fn entry(&mut self, name: &str) -> Result<(), DataError> {
        self.entries += 1;
        let max = self.limits.max_entries;
        if self.entries > max {
            return Err(self.over(
                name,
                ArchiveBound::Entries,
                max,
                format!("exceeds the limit of {max} entries"),
            ));
        }
        Ok(())
    }

    /// Refuses when `out` bytes from `input` compressed ones exceed the ratio (past the grace).
    fn check_ratio(
        &self,
        name: &str,
        out: u64,
        input: u64,
        of_what: &str,
    ) -> Result<(), DataError> {
        let max = self.limits.max_ratio;
        if out > RATIO_GRACE && out > max.saturating_mul(input.max(1)) {
            return Err(self.over(
                name,
                ArchiveBound::Ratio,
                max,
                format!(
                    "expands more than {max} times: {out} bytes from {input} bytes of {of_what}"
                ),
            ));
        }
        Ok(())
    }

    /// Copies `reader` to `writer`, counting bytes against the limits as they flow.
    /// `compressed`: the entry's own compressed size, when it has one (zip).
    fn copy(
        &mut self,
        reader: &mut dyn Read,
        writer: &mut dyn Write,
        name: &str,
        compressed: Option<u64>,
    ) -> Result<(), DataError> {
        let mut buf = vec![0u8; 1 << 16];
        let mut out = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| DataError::io("read from archive", self.archive.clone(), e))?;
            if n == 0 {
                return Ok(());
            }
            out += n as u64;
            self.bytes += n as u64;
            if self.bytes > self.limits.max_bytes {
                return Err(self.over_bytes(name));
            }
            match (compressed, &self.stream_read) {
                (Some(c), _) => self.check_ratio(name, out, c, "its compressed size")?,
                (None, Some(read)) => self.check_ratio(
                    name,
                    self.bytes,
                    read.load(Ordering::Relaxed),
                    "the archive read so far",
                )?,
                (None, None) => {}
            }
            if self.space.claim(n as u64).is_err() {
                return Err(self.no_space(name));
            }
            writer
                .write_all(&buf[..n])
                .map_err(|e| DataError::io("write unpacked data from", self.archive.clone(), e))?;
        }
    }
}

/// The normalized relative path of an entry, or why it is unsafe. `.` components are dropped;
/// an empty result means "the destination itself".
fn safe_relative(path: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("has a `..` component".into()),
            Component::RootDir | Component::Prefix(_) => return Err("has an absolute path".into()),
        }
    }
    Ok(out)
}

/// Whether a symlink at `link` (relative to the destination) pointing to `target` stays inside.
fn link_stays_inside(link: &Path, target: &Path) -> Result<(), String> {
    if target.is_absolute() {
        return Err(format!(
            "is a symlink to the absolute path `{}`",
            target.display()
        ));
    }
    // Depth of the directory holding the link, then walk the target lexically.
    let mut depth: i64 = link.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!(
                        "is a symlink to `{}`, outside the destination",
                        target.display()
                    ));
                }
            }
            _ => return Err(format!("is a symlink to `{}`", target.display())),
        }
    }
    Ok(())
}

/// Refuses to write at `rel` if any existing ancestor inside `dest` is a symlink, and removes a
/// leaf symlink so that creating the file never follows it.
fn prepare_target(
    dest: &Path,
    rel: &Path,
    budget: &Budget,
    name: &str,
) -> Result<PathBuf, DataError> {
    let mut cur = dest.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for (i, c) in comps.iter().enumerate() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                if i + 1 < comps.len() {
                    return Err(budget.refuse(name, "would be written through a symlink"));
                }
                fs::remove_file(&cur).map_err(|e| DataError::io("replace", cur.clone(), e))?;
            }
            Ok(m) if i + 1 < comps.len() && !m.is_dir() => {
                return Err(budget.refuse(name, "lies under a path that is not a directory"));
            }
            _ => {}
        }
    }
    if let Some(parent) = cur.parent() {
        fs::create_dir_all(parent).map_err(|e| DataError::io("create directory", parent, e))?;
    }
    Ok(cur)
}

fn set_executable(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if mode & 0o111 != 0 {
        // Best effort: the bit does not enter the content hash.
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o755));
    }
}

fn untar<R: Read>(reader: R, dest: &Path, budget: &mut Budget) -> Result<(), DataError> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| DataError::io("read tar archive", budget.archive.clone(), e))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| DataError::io("read tar entry from", budget.archive.clone(), e))?;
        let raw = entry
            .path()
            .map_err(|e| DataError::io("read tar entry path from", budget.archive.clone(), e))?
            .into_owned();
        let name = raw.display().to_string();
        budget.entry(&name)?;
        let rel = safe_relative(&raw).map_err(|r| budget.refuse(&name, r))?;
        let kind = entry.header().entry_type();
        if rel.as_os_str().is_empty() {
            if kind.is_dir() {
                continue;
            }
            return Err(budget.refuse(&name, "has an empty path"));
        }
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                let target = prepare_target(dest, &rel, budget, &name)?;
                fs::create_dir_all(&target)
                    .map_err(|e| DataError::io("create directory", target, e))?;
            }
            T::Regular | T::Continuous => {
                let mode = entry.header().mode().unwrap_or(0o644);
                let target = prepare_target(dest, &rel, budget, &name)?;
                let mut file = File::create(&target)
                    .map_err(|e| DataError::io("create", target.clone(), e))?;
                budget.copy(&mut entry, &mut file, &name, None)?;
                set_executable(&target, mode);
            }
            T::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| DataError::io("read link target from", budget.archive.clone(), e))?
                    .ok_or_else(|| budget.refuse(&name, "is a symlink without a target"))?
                    .into_owned();
                link_stays_inside(&rel, &link).map_err(|r| budget.refuse(&name, r))?;
                let target = prepare_target(dest, &rel, budget, &name)?;
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(|e| DataError::io("create symlink", target, e))?;
            }
            T::Link => {
                let link = entry
                    .link_name()
                    .map_err(|e| DataError::io("read link target from", budget.archive.clone(), e))?
                    .ok_or_else(|| budget.refuse(&name, "is a hard link without a target"))?
                    .into_owned();
                let src_rel = safe_relative(&link).map_err(|r| {
                    budget.refuse(&name, format!("is a hard link whose target {r}"))
                })?;
                let src = prepare_target(dest, &src_rel, budget, &name)?;
                let meta = fs::symlink_metadata(&src).map_err(|_| {
                    budget.refuse(
                        &name,
                        format!(
                            "is a hard link to `{}`, which is not unpacked",
                            link.display()
                        ),
                    )
                })?;
                if !meta.is_file() {
                    return Err(budget.refuse(
                        &name,
                        "is a hard link to something that is not a regular file",
                    ));
                }
                let target = prepare_target(dest, &rel, budget, &name)?;
                let mut from =
                    File::open(&src).map_err(|e| DataError::io("open", src.clone(), e))?;
                let mut to = File::create(&target)
                    .map_err(|e| DataError::io("create", target.clone(), e))?;
                budget.copy(&mut from, &mut to, &name, None)?;
            }
            // Metadata records the tar crate does not fold into the next entry itself.
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => {}
            other => {
                return Err(budget.refuse(
                    &name,
                    format!("is a special file ({other:?}), not a file, directory or link"),
                ))
            }
        }
    }
    Ok(())
}

fn zip_err(budget: &Budget, e: zip::result::ZipError) -> DataError {
    DataError::raw(budget.archive.clone(), "zip", e.to_string())
}

fn unzip(file: File, dest: &Path, budget: &mut Budget) -> Result<(), DataError> {
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| zip_err(budget, e))?;
    precheck_zip(&mut archive, budget)?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| zip_err(budget, e))?;
        let name = entry.name().to_string();
        budget.entry(&name)?;
        // Check the raw name ourselves: `enclosed_name` would silently accept `a/../b`.
        let rel = safe_relative(Path::new(&name)).map_err(|r| budget.refuse(&name, r))?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        if entry.is_dir() {
            let target = prepare_target(dest, &rel, budget, &name)?;
            fs::create_dir_all(&target)
                .map_err(|e| DataError::io("create directory", target, e))?;
        } else if entry.is_symlink() {
            let mut link = String::new();
            (&mut entry)
                .take(MAX_LINK + 1)
                .read_to_string(&mut link)
                .map_err(|e| DataError::io("read link target from", budget.archive.clone(), e))?;
            if link.len() as u64 > MAX_LINK {
                return Err(budget.refuse(
                    &name,
                    format!("is a symlink whose target is longer than {MAX_LINK} bytes"),
                ));
            }
            link_stays_inside(&rel, Path::new(&link)).map_err(|r| budget.refuse(&name, r))?;
            let target = prepare_target(dest, &rel, budget, &name)?;
            std::os::unix::fs::symlink(&link, &target)
                .map_err(|e| DataError::io("create symlink", target, e))?;
        } else {
            let mode = entry.unix_mode().unwrap_or(0o644);
            if mode & 0o170000 != 0 && mode & 0o170000 != 0o100000 {
                return Err(
                    budget.refuse(&name, "is a special file, not a file, directory or link")
                );
            }
            let compressed = entry.compressed_size();
            let target = prepare_target(dest, &rel, budget, &name)?;
            let mut out =
                File::create(&target).map_err(|e| DataError::io("create", target.clone(), e))?;
            budget.copy(&mut entry, &mut out, &name, Some(compressed))?;
            set_executable(&target, mode);
        }
    }
    Ok(())
}

/// Checks what a zip's central directory declares (entry count, sizes, ratios, room on the
/// filesystem) before anything is written. The directory may lie, so [`Budget::copy`] counts
/// again while unpacking.
fn precheck_zip<R: Read + io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    budget: &mut Budget,
) -> Result<(), DataError> {
    let limits = budget.limits;
    let count = archive.len() as u64;
    if count > limits.max_entries {
        let name = usize::try_from(limits.max_entries)
            .ok()
            .and_then(|i| archive.name_for_index(i))
            .unwrap_or_default()
            .to_string();
        return Err(budget.over(
            &name,
            ArchiveBound::Entries,
            limits.max_entries,
            format!(
                "exceeds the limit of {} entries (the archive lists {count})",
                limits.max_entries
            ),
        ));
    }
    let mut declared = 0u64;
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(|e| zip_err(budget, e))?;
        let (name, size, compressed) = (
            entry.name().to_string(),
            entry.size(),
            entry.compressed_size(),
        );
        drop(entry);
        declared = declared.saturating_add(size);
        if declared > limits.max_bytes {
            return Err(budget.over(
                &name,
                ArchiveBound::Bytes,
                limits.max_bytes,
                format!(
                    "takes the unpacked size past the limit of {} bytes (by the sizes the archive declares)",
                    limits.max_bytes
                ),
            ));
        }
        budget.check_ratio(&name, size, compressed, "its declared compressed size")?;
    }
    if budget.space.known && declared > budget.space.headroom {
        budget.space.refresh();
        if declared > budget.space.headroom {
            return Err(budget.no_space(""));
        }
    }
    Ok(())
}

/// Unpacks a tar inside an xz stream. The stream is decoded on a second thread (`lzma-rs`
/// writes to a `Write`, `tar` reads from a `Read`) and handed over in chunks through a bounded
/// channel, so no decompressed temp file is needed; [`XzGuard`] bounds what the decoder may
/// produce before it produces it.
fn untar_xz<R: Read + Send>(input: R, dest: &Path, budget: &mut Budget) -> Result<(), DataError> {
    let verdict = Arc::new(Mutex::new(None));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let guard = XzGuard::new(input, budget, verdict.clone(), stop.clone());
    let (tx, rx) = mpsc::sync_channel::<Result<Vec<u8>, String>>(4);
    let unpacked = std::thread::scope(|s| {
        s.spawn(move || {
            let mut input = BufReader::new(guard);
            let mut sink = ChannelWriter(&tx);
            if let Err(e) = lzma_rs::xz_decompress(&mut input, &mut sink) {
                let _ = tx.send(Err(e.to_string()));
            }
        });
        let mut reader = ChannelReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
            failed: None,
        };
        let result = untar(&mut reader, dest, budget).and_then(|()| {
            // Decode the rest (the tar's end padding) so the xz checks run to the end.
            io::copy(&mut reader, &mut io::sink())
                .map(|_| ())
                .map_err(|e| DataError::raw(budget.archive.clone(), "xz", e.to_string()))
        });
        let result = match (result, reader.failed.take()) {
            (Err(_), Some(msg)) => Err(DataError::raw(budget.archive.clone(), "xz", msg)),
            (result, _) => result,
        };
        // A decoder still at work stops at its next read or write.
        stop.store(true, Ordering::Relaxed);
        drop(reader);
        result
    });
    let tripped = verdict.lock().unwrap_or_else(|p| p.into_inner()).take();
    match tripped {
        Some(e) => Err(e),
        None => unpacked,
    }
}

/// The decoder's side of the channel: decoded bytes, in chunks of at most 1 MiB.
struct ChannelWriter<'a>(&'a mpsc::SyncSender<Result<Vec<u8>, String>>);

impl Write for ChannelWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(1 << 20);
        self.0.send(Ok(buf[..n].to_vec())).map_err(|_| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the unpacker stopped reading")
        })?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The unpacker's side of the channel; a decoder error arrives as the last message.
struct ChannelReader {
    rx: mpsc::Receiver<Result<Vec<u8>, String>>,
    chunk: Vec<u8>,
    pos: usize,
    failed: Option<String>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(msg)) => {
                    self.failed = Some(msg.clone());
                    return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Where [`XzGuard`] is in the xz format (the `.xz` file format spec, sections 2-3).
#[derive(Debug, Clone, Copy)]
enum XzState {
    /// Collecting the 12-byte stream header (for the check type).
    StreamHeader,
    /// At a block header's size byte, or the index's 0x00.
    BlockStart,
    /// At a block header's flags byte; `header` is the whole header's size.
    BlockFlags { header: u64 },
    /// At an LZMA2 chunk's control byte.
    ChunkControl,
    /// Collecting the `need` bytes of a chunk header after its `control` byte.
    ChunkHeader { control: u8, need: usize },
    /// Passing `left` bytes (`data`: of the block's LZMA2 data), then a chunk or the next block.
    Skip {
        left: u64,
        data: bool,
        then_block: bool,
    },
    /// The index, the footer, or anything else that declares no output: passed as is (the
    /// decoder checks it).
    Done,
}

/// Reads the framing of an xz stream as its compressed bytes pass to the decoder: every LZMA2
/// chunk header declares how many bytes the chunk decodes to (and `lzma-rs` never produces
/// more), so the sum bounds the decoder's output and memory before a byte of it exists. A
/// chunk that takes the sum past the cap or the ratio stops the stream with the verdict.
struct XzGuard<R> {
    inner: R,
    state: XzState,
    head: Vec<u8>,
    check_size: u64,
    block_data: u64,
    declared: u64,
    read: u64,
    /// `max_bytes` plus room for the tar headers of `max_entries` entries.
    cap: u64,
    max_bytes: u64,
    max_ratio: u64,
    archive: PathBuf,
    verdict: Arc<Mutex<Option<DataError>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl<R: Read> XzGuard<R> {
    fn new(
        inner: R,
        budget: &Budget,
        verdict: Arc<Mutex<Option<DataError>>>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        let l = budget.limits;
        XzGuard {
            inner,
            state: XzState::StreamHeader,
            head: Vec::new(),
            check_size: 0,
            block_data: 0,
            declared: 0,
            read: 0,
            cap: l
                .max_bytes
                .saturating_add(l.max_entries.saturating_mul(2048))
                .saturating_add(1 << 20),
            max_bytes: l.max_bytes,
            max_ratio: l.max_ratio,
            archive: budget.archive.clone(),
            verdict,
            stop,
        }
    }

    fn over(&self, bound: ArchiveBound, limit: u64, detail: String) -> DataError {
        DataError::ArchiveLimit {
            archive: self.archive.clone(),
            entry: String::new(),
            bound,
            limit,
            detail,
        }
    }

    fn feed(&mut self, mut buf: &[u8]) -> Result<(), DataError> {
        while !buf.is_empty() {
            match self.state {
                XzState::Done => return Ok(()),
                XzState::Skip {
                    left,
                    data,
                    then_block,
                } => {
                    let k = left.min(buf.len() as u64);
                    if data {
                        self.block_data += k;
                    }
                    buf = &buf[k as usize..];
                    self.state = if k < left {
                        XzState::Skip {
                            left: left - k,
                            data,
                            then_block,
                        }
                    } else if then_block {
                        XzState::BlockStart
                    } else {
                        XzState::ChunkControl
                    };
                }
                _ => {
                    self.byte(buf[0])?;
                    buf = &buf[1..];
                }
            }
        }
        Ok(())
    }

    fn byte(&mut self, b: u8) -> Result<(), DataError> {
        match self.state {
            XzState::StreamHeader => {
                self.head.push(b);
                if self.head.len() == 12 {
                    self.check_size = match self.head[7] & 0x0F {
                        0 => 0,
                        1..=3 => 4,
                        4..=6 => 8,
                        7..=9 => 16,
                        10..=12 => 32,
                        _ => 64,
                    };
                    self.head.clear();
                    self.state = XzState::BlockStart;
                }
            }
            XzState::BlockStart => {
                self.state = if b == 0 {
                    XzState::Done
                } else {
                    XzState::BlockFlags {
                        header: (u64::from(b) + 1) * 4,
                    }
                };
            }
            XzState::BlockFlags { header } => {
                let filters = (b & 0x03) + 1;
                if filters != 1 {
                    // A second filter would decode the first one's output again, unseen here.
                    return Err(DataError::raw(
                        self.archive.clone(),
                        "xz",
                        format!(
                            "a block has {filters} filters; only a lone LZMA2 filter is supported"
                        ),
                    ));
                }
                self.block_data = 0;
                self.state = XzState::Skip {
                    left: header - 2,
                    data: false,
                    then_block: false,
                };
            }
            XzState::ChunkControl => {
                self.block_data += 1;
                self.state = match b {
                    // End of the block's data: padding to 4 bytes, then the check.
                    0 => XzState::Skip {
                        left: (4 - self.block_data % 4) % 4 + self.check_size,
                        data: false,
                        then_block: true,
                    },
                    1 | 2 => XzState::ChunkHeader {
                        control: b,
                        need: 2,
                    },
                    0x80..=0xFF => XzState::ChunkHeader {
                        control: b,
                        need: if (b >> 5) & 3 >= 2 { 5 } else { 4 },
                    },
                    // Invalid: the decoder refuses it before producing anything.
                    _ => XzState::Done,
                };
            }
            XzState::ChunkHeader { control, need } => {
                self.block_data += 1;
                self.head.push(b);
                if self.head.len() == need {
                    let h = &self.head;
                    let size = u64::from(u16::from_be_bytes([h[0], h[1]])) + 1;
                    let (unpacked, skip) = if control < 0x80 {
                        (size, size)
                    } else {
                        let unpacked = ((u64::from(control & 0x1F) << 16) | (size - 1)) + 1;
                        let packed = u64::from(u16::from_be_bytes([h[2], h[3]])) + 1;
                        (unpacked, packed)
                    };
                    self.head.clear();
                    self.declared += unpacked;
                    self.check()?;
                    self.state = XzState::Skip {
                        left: skip,
                        data: true,
                        then_block: false,
                    };
                }
            }
            XzState::Skip { .. } | XzState::Done => unreachable!("handled by feed"),
        }
        Ok(())
    }

    fn check(&self) -> Result<(), DataError> {
        if self.declared > self.cap {
            return Err(self.over(
                ArchiveBound::Bytes,
                self.max_bytes,
                format!(
                    "its xz stream declares {} bytes, past the limit of {} bytes (plus room for tar headers)",
                    self.declared, self.max_bytes
                ),
            ));
        }
        if self.declared > RATIO_GRACE
            && self.declared > self.max_ratio.saturating_mul(self.read.max(1))
        {
            return Err(self.over(
                ArchiveBound::Ratio,
                self.max_ratio,
                format!(
                    "its xz stream expands more than {} times: {} bytes declared from {} compressed",
                    self.max_ratio, self.declared, self.read
                ),
            ));
        }
        Ok(())
    }
}

impl<R: Read> Read for XzGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(io::Error::other("the unpacker stopped"));
        }
        if self.verdict.lock().map(|v| v.is_some()).unwrap_or(true) {
            return Err(io::Error::other("stopped by the archive's limits"));
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if let Err(e) = self.feed(&buf[..n]) {
            let msg = e.to_string();
            if let Ok(mut v) = self.verdict.lock() {
                *v = Some(e);
            }
            return Err(io::Error::other(msg));
        }
        Ok(n)
    }
}

/// Unpacks the `data.tar.*` member of a `.deb` (an `ar` archive: `!<arch>\n`, then members
/// with 60-byte headers, data padded to even length).
fn undeb(file: Counting<File>, dest: &Path, budget: &mut Budget) -> Result<(), DataError> {
    let bad = |b: &Budget, m: &str| DataError::raw(b.archive.clone(), "deb (ar)", m.to_string());
    let mut r = BufReader::new(file);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .map_err(|_| bad(budget, "too short for an ar header"))?;
    if &magic != b"!<arch>\n" {
        return Err(bad(budget, "missing the `!<arch>` magic"));
    }
    loop {
        let mut header = [0u8; 60];
        match r.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(bad(budget, "no `data.tar.*` member"));
            }
            Err(e) => return Err(DataError::io("read", budget.archive.clone(), e)),
        }
        if &header[58..60] != b"`\n" {
            return Err(bad(budget, "corrupt member header"));
        }
        let name = String::from_utf8_lossy(&header[0..16])
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        let size: u64 = String::from_utf8_lossy(&header[48..58])
            .trim()
            .parse()
            .map_err(|_| bad(budget, "corrupt member size"))?;
        let member = (&mut r).take(size);
        if name.starts_with("data.tar") {
            return match name.as_str() {
                "data.tar" => untar(member, dest, budget),
                "data.tar.gz" => untar(flate2::read::GzDecoder::new(member), dest, budget),
                "data.tar.xz" => untar_xz(member, dest, budget),
                other => Err(DataError::raw(
                    budget.archive.clone(),
                    "deb",
                    format!("member `{other}` uses a compression this build cannot read (gz and xz are supported); unpack it with `dpkg-deb -x` and use a `path` source"),
                )),
            };
        }
        let skip = size + (size % 2);
        io::copy(&mut (&mut r).take(skip), &mut io::sink())
            .map_err(|e| DataError::io("read", budget.archive.clone(), e))?;
    }
}
