//! Safe unpacking of the archives datasets and packages come in: tar, tar.gz, zip, gz and
//! Debian `.deb` (an `ar` archive around `data.tar.{gz,xz}`).
//!
//! An archive is untrusted input: it comes from a mirror, a registry or a user's disk. Every
//! entry is checked before anything is written, and the whole archive is refused (the caller
//! then publishes nothing) when an entry
//! - has an absolute path or a `..` component;
//! - is a symlink whose target is absolute or leaves the destination;
//! - is a hard link to a path that is itself unsafe;
//! - would be written through a symlink the archive created earlier (so a link that looked
//!   harmless cannot redirect a later file);
//! - is a device, fifo or other special file;
//! - pushes the unpacked total past [`Limits::max_bytes`] or the entry count past
//!   [`Limits::max_entries`] (decompression bombs). Bytes are counted as they are written,
//!   never taken from a header that could lie.
//!
//! Hard links are materialized as copies, and no ownership, permission bits beyond "executable"
//! or timestamps are restored: the content hash is all that later stages look at.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, Write};
use std::path::{Component, Path, PathBuf};

use super::DataError;

/// Caps on what one archive may unpack to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Total bytes of all unpacked files.
    pub max_bytes: u64,
    /// Number of entries (files, directories, links).
    pub max_entries: u64,
}

impl Default for Limits {
    /// 64 GiB and one million entries: far above any dataset here (STL-10 is 2.6 GB unpacked),
    /// far below what fills a disk by accident.
    fn default() -> Self {
        Limits {
            max_bytes: 64 << 30,
            max_entries: 1_000_000,
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

/// Unpacks `archive` (of the given kind) into `dest`, which is created if missing.
pub fn unpack(
    archive: &Path,
    kind: ArchiveKind,
    dest: &Path,
    limits: &Limits,
) -> Result<(), DataError> {
    fs::create_dir_all(dest).map_err(|e| DataError::io("create directory", dest, e))?;
    let open = || File::open(archive).map_err(|e| DataError::io("open", archive, e));
    let mut budget = Budget {
        archive: archive.to_path_buf(),
        limits: *limits,
        bytes: 0,
        entries: 0,
    };
    match kind {
        ArchiveKind::Tar => untar(BufReader::new(open()?), dest, &mut budget),
        ArchiveKind::TarGz => untar(
            flate2::read::MultiGzDecoder::new(BufReader::new(open()?)),
            dest,
            &mut budget,
        ),
        ArchiveKind::TarXz => {
            let tar = unxz_to_temp(open()?, dest, &mut budget)?;
            untar(BufReader::new(tar), dest, &mut budget)
        }
        ArchiveKind::Zip => unzip(open()?, dest, &mut budget),
        ArchiveKind::Gz => {
            let name = archive
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let out = name
                .strip_suffix(".gz")
                .filter(|s| !s.is_empty())
                .unwrap_or("data");
            gunzip_file(archive, &dest.join(out), limits)
        }
        ArchiveKind::Deb => undeb(open()?, dest, &mut budget),
    }
}

/// Decompresses one gzip file to `out`, within the byte limit.
pub fn gunzip_file(src: &Path, out: &Path, limits: &Limits) -> Result<(), DataError> {
    let input = File::open(src).map_err(|e| DataError::io("open", src, e))?;
    let mut reader = flate2::read::MultiGzDecoder::new(BufReader::new(input));
    let mut file = File::create(out).map_err(|e| DataError::io("create", out, e))?;
    let mut budget = Budget {
        archive: src.to_path_buf(),
        limits: *limits,
        bytes: 0,
        entries: 0,
    };
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    budget
        .copy(&mut reader, &mut file, &name)
        .map_err(|e| match e {
            DataError::Io { source, .. } if source.kind() == io::ErrorKind::InvalidInput => {
                DataError::raw(src, "gzip", source.to_string())
            }
            other => other,
        })?;
    Ok(())
}

/// Running totals against the limits, and the archive name for errors.
struct Budget {
    archive: PathBuf,
    limits: Limits,
    bytes: u64,
    entries: u64,
}

impl Budget {
    fn refuse(&self, entry: &str, reason: impl Into<String>) -> DataError {
        DataError::UnsafeArchive {
            archive: self.archive.clone(),
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }

    fn entry(&mut self, name: &str) -> Result<(), DataError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.refuse(
                name,
                format!("exceeds the limit of {} entries", self.limits.max_entries),
            ));
        }
        Ok(())
    }

    /// Copies `reader` to `writer`, counting bytes against the limit as they flow.
    fn copy(
        &mut self,
        reader: &mut dyn Read,
        writer: &mut dyn Write,
        name: &str,
    ) -> Result<(), DataError> {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| DataError::io("read from archive", self.archive.clone(), e))?;
            if n == 0 {
                return Ok(());
            }
            self.bytes += n as u64;
            if self.bytes > self.limits.max_bytes {
                return Err(self.refuse(
                    name,
                    format!(
                        "takes the unpacked size past the limit of {} bytes",
                        self.limits.max_bytes
                    ),
                ));
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
                budget.copy(&mut entry, &mut file, &name)?;
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
                budget.copy(&mut from, &mut to, &name)?;
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

fn unzip(file: File, dest: &Path, budget: &mut Budget) -> Result<(), DataError> {
    let zip_err = |b: &Budget, e: zip::result::ZipError| {
        DataError::raw(b.archive.clone(), "zip", e.to_string())
    };
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| zip_err(budget, e))?;
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
            entry
                .read_to_string(&mut link)
                .map_err(|e| DataError::io("read link target from", budget.archive.clone(), e))?;
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
            let target = prepare_target(dest, &rel, budget, &name)?;
            let mut out =
                File::create(&target).map_err(|e| DataError::io("create", target.clone(), e))?;
            budget.copy(&mut entry, &mut out, &name)?;
            set_executable(&target, mode);
        }
    }
    Ok(())
}

/// Decompresses an xz stream into an anonymous temp file beside `dest`, within the byte limit.
fn unxz_to_temp(input: File, dest: &Path, budget: &mut Budget) -> Result<File, DataError> {
    let mut tmp =
        tempfile::tempfile_in(dest).map_err(|e| DataError::io("create a temp file in", dest, e))?;
    {
        let mut limited = LimitedWriter {
            inner: &mut tmp,
            left: budget.limits.max_bytes,
        };
        let mut reader = BufReader::new(input);
        if let Err(e) = lzma_rs::xz_decompress(&mut reader, &mut limited) {
            if limited.left == 0 {
                return Err(budget.refuse(
                    "(xz stream)",
                    format!(
                        "decompresses past the limit of {} bytes",
                        budget.limits.max_bytes
                    ),
                ));
            }
            return Err(DataError::raw(budget.archive.clone(), "xz", e.to_string()));
        }
    }
    tmp.rewind()
        .map_err(|e| DataError::io("rewind temp file in", dest, e))?;
    Ok(tmp)
}

struct LimitedWriter<'a, W: Write> {
    inner: &'a mut W,
    left: u64,
}

impl<W: Write> Write for LimitedWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            self.left = 0;
            return Err(io::Error::other("size limit reached"));
        }
        self.left -= buf.len() as u64;
        self.inner.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Unpacks the `data.tar.*` member of a `.deb` (an `ar` archive: `!<arch>\n`, then members
/// with 60-byte headers, data padded to even length).
fn undeb(file: File, dest: &Path, budget: &mut Budget) -> Result<(), DataError> {
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
                "data.tar.xz" => {
                    let mut compressed = tempfile::tempfile_in(dest)
                        .map_err(|e| DataError::io("create a temp file in", dest, e))?;
                    let mut member = member;
                    io::copy(&mut member, &mut compressed)
                        .map_err(|e| DataError::io("read", budget.archive.clone(), e))?;
                    compressed.rewind().map_err(|e| DataError::io("rewind temp file in", dest, e))?;
                    let tar = unxz_to_temp(compressed, dest, budget)?;
                    untar(BufReader::new(tar), dest, budget)
                }
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
