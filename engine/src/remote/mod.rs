//! Remotes: the cache shared between machines (`repro push`, `repro pull`, `--pull`).
//!
//! A remote holds the same two things as the local store ([`crate::cache`]), under the same
//! names, so that a stage computed anywhere is computed once for everyone:
//!
//! ```text
//! <remote>/v1/objects/ab/cdef…    file objects and directory manifests, named by sha256
//! <remote>/v1/runs/ab/<fp>.json   run cache: stage fingerprint -> its lock entry
//! ```
//!
//! Two kinds, one client: a directory (a cluster's shared filesystem, `/shared/cache` or
//! `file:///shared/cache`) and S3-compatible object storage (`s3://bucket/prefix`), both through
//! the `object_store` crate ([`Location`]), which also covers GCS and Azure should they be
//! wanted. No hand-written HTTP.
//!
//! What must hold, and how:
//! - **Nothing unverified reaches the workspace or the local store.** A download goes to a temp
//!   file in the local store and is hashed back before it is renamed in
//!   ([`Store::import_finish`]); an object whose bytes do not match its name is
//!   [`RemoteError::Corrupt`], and nothing of it is kept. Outputs are then restored from the
//!   local store, which verifies again as it copies.
//! - **A partial upload is never visible.** S3 publishes an object when its single PUT or its
//!   multipart upload completes; `object_store`'s directory backend writes a staging file and
//!   renames it. And a stage's objects are all pushed before its run record: a reader that finds
//!   the record finds what it names.
//! - **Two machines pushing at once lose nothing.** Objects are named by their content, so two
//!   writers of one name write the same bytes; a run record is a complete lock entry written
//!   whole, and two for one fingerprint describe the same inputs.
//! - **A remote that fails damages nothing.** Pulls write only through the store's temp files;
//!   a failed transfer is an error that names the remote, the operation and the object
//!   ([`RemoteError::Transfer`]), and the local state is what it was before.
//! - Transfers run concurrently up to a bound (`jobs`), report progress as
//!   [`Event::Transfer`], and retry a failed request a few times, briefly: an unreachable remote
//!   says so in seconds, not after minutes of backoff.
//! - An S3 remote needs credentials in the environment (`AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`, or a web-identity / container-credentials variable). Without
//!   them it is an error at once, never a silent fallback to the instance-metadata service.

pub mod config;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload, WriteMultipart};
use thiserror::Error;

use crate::cache::{CacheError, Store, LAYOUT};
use crate::events::{emit, Direction, Event, Sender};
use crate::fsutil::fs_err;
use crate::hash::Digest;
use crate::lockfile::LockEntry;

/// Why a remote operation failed. [`RemoteError::is_usage`] tells configuration mistakes
/// (exit code 2) from failures of the remote itself.
#[derive(Debug, Error)]
pub enum RemoteError {
    #[error("no remote is configured: add one with `repro remote add NAME URL` (a directory, or s3://bucket/prefix)")]
    NoneConfigured,
    #[error("no remote named `{name}` (configured: {known}); see `repro remote list`")]
    Unknown { name: String, known: String },
    #[error("several remotes and no default (configured: {known}): pass `--remote NAME`, or make one the default with `repro remote default NAME`")]
    NoDefault { known: String },
    #[error("`{name}` is not a remote name: use letters, digits, `-` and `_`")]
    BadName { name: String },
    #[error("remote `{name}` is not in the {scope} config `{path}`")]
    NotInScope {
        name: String,
        scope: &'static str,
        path: PathBuf,
    },
    #[error("neither XDG_CONFIG_HOME nor HOME is set, so there is no user config file")]
    NoUserConfig,
    #[error("remote `{name}`: `{url}` is not a remote URL: {reason}")]
    BadUrl {
        name: String,
        url: String,
        reason: String,
    },
    #[error("remote `{name}` ({url}): no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for storage other than AWS); credentials are never read from repro's config files")]
    NoCredentials { name: String, url: String },
    #[error("remote `{name}` ({url}): the directory does not exist (it is created by the first `repro push`)")]
    NoDirectory { name: String, url: String },
    #[error("{}{}: {reason}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    BadConfig {
        path: PathBuf,
        line: Option<usize>,
        reason: String,
    },
    #[error("cannot write `{path}`: {source}")]
    ConfigIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("remote `{name}` ({url}): cannot {action} `{key}`: {reason}")]
    Transfer {
        name: String,
        url: String,
        action: &'static str,
        key: String,
        /// What went wrong, shortest form ([`reason`]).
        reason: String,
    },
    #[error("remote `{name}` ({url}): object `{id}` is corrupt there (its bytes hash to {found}); it was not used. Push it again from a machine that has it")]
    Corrupt {
        name: String,
        url: String,
        id: String,
        found: String,
    },
    #[error("remote `{name}` ({url}): run record `{key}` is unreadable: {reason}")]
    BadRecord {
        name: String,
        url: String,
        key: String,
        reason: String,
    },
    #[error("remote `{name}` ({url}): cannot push `{id}`: it is not in the local cache (run the stage, or pull it, first)")]
    NotLocal {
        name: String,
        url: String,
        id: String,
    },
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A local file the transfer reads or writes (an object, a temp file).
    #[error(transparent)]
    Io(#[from] crate::fsutil::FsError),
    #[error("cannot start the transfer runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl RemoteError {
    /// A mistake in the command line or the config files, not a failure of the remote.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            RemoteError::NoneConfigured
                | RemoteError::Unknown { .. }
                | RemoteError::NoDefault { .. }
                | RemoteError::BadName { .. }
                | RemoteError::NotInScope { .. }
                | RemoteError::NoUserConfig
                | RemoteError::BadUrl { .. }
                | RemoteError::NoCredentials { .. }
                | RemoteError::BadConfig { .. }
        )
    }
}

/// The one line that says why a request failed. `object_store`'s errors nest the same text at
/// every level (and S3's answer is an XML document); its code and message, or else the
/// innermost cause (the refused connection, the missing file), say it best.
fn reason(e: &object_store::Error) -> String {
    if let object_store::Error::NotFound { .. } = e {
        return "not found".to_owned();
    }
    let mut chain: Vec<String> = vec![e.to_string()];
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        chain.push(next.to_string());
        cur = next;
    }
    let tag = |text: &str, t: &str| {
        let (_, rest) = text.split_once(&format!("<{t}>"))?;
        rest.split_once(&format!("</{t}>"))
            .map(|(v, _)| v.to_owned())
    };
    for text in &chain {
        if let (Some(code), Some(message)) = (tag(text, "Code"), tag(text, "Message")) {
            return format!("{code}: {message}");
        }
    }
    chain.pop().unwrap_or_default()
}

/// Where a remote's URL points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A directory: an absolute path, a `file://` URL, or a path relative to the workspace.
    Dir(PathBuf),
    /// `s3://bucket/prefix`.
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// Parses a remote URL; a relative directory is taken relative to `root`.
    pub fn parse(name: &str, url: &str, root: &Path) -> Result<Location, RemoteError> {
        let bad = |reason: &str| RemoteError::BadUrl {
            name: name.to_owned(),
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket (write s3://bucket or s3://bucket/prefix)"));
            }
            return Ok(Location::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        let path = url.strip_prefix("file://").unwrap_or(url);
        if let Some((scheme, _)) = path.split_once("://") {
            return Err(bad(&format!(
                "`{scheme}://` is not supported (a directory path, file:// or s3://)"
            )));
        }
        if path.is_empty() {
            return Err(bad("the URL is empty"));
        }
        Ok(Location::Dir(root.join(path)))
    }
}

/// What a transfer moved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transferred {
    /// Objects copied, and their bytes.
    pub objects: u64,
    pub bytes: u64,
    /// Objects already where they were going.
    pub present: u64,
    /// Run records copied.
    pub records: u64,
    /// Fingerprints of the entries left out because some object of theirs is not at the source
    /// (a push: not in the local cache; a pull: not on the remote). Nothing of theirs is
    /// recorded at the destination; the other entries are transferred all the same.
    pub incomplete: Vec<String>,
}

/// Where the objects of one stage's outs are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Presence {
    /// Objects (and bytes) not in the local cache: to pull.
    pub not_local: Count,
    /// Objects not on the remote: to push.
    pub not_remote: Count,
    /// Objects in neither: the stage must run again somewhere.
    pub nowhere: Count,
}

/// A number of objects and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub objects: u64,
    pub bytes: u64,
}

/// Upload size above which a file is sent in parts (S3 wants parts of at least 5 MiB).
const PART: usize = 16 << 20;

/// An open remote.
pub struct Remote {
    pub name: String,
    pub url: String,
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
    jobs: usize,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({} at {})", self.name, self.url)
    }
}

/// One object to move: its name and size (0 for a manifest: its size is not recorded).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Object {
    sha256: String,
    size: u64,
}

/// The objects some outputs consist of, as the local store knows them: the files, and each
/// directory's manifest with the files it names. The one expansion that `push`, `pull` and
/// `presence` share.
#[derive(Default)]
struct Objects {
    files: BTreeSet<Object>,
    manifests: BTreeSet<Object>,
    /// Directories whose manifest the local store lacks: their files cannot be named.
    unknown: Vec<String>,
}

impl Objects {
    fn of(local: &Store, outputs: impl IntoIterator<Item = Digest>) -> Result<Objects, CacheError> {
        let mut o = Objects::default();
        for d in outputs {
            if !d.is_dir() {
                o.files.insert(Object {
                    sha256: d.sha256,
                    size: d.size,
                });
                continue;
            }
            match local.load_manifest(&d.sha256) {
                Ok(m) => o.files.extend(m.entries.into_iter().map(|e| Object {
                    sha256: e.sha256,
                    size: e.size,
                })),
                Err(CacheError::Missing { .. }) => o.unknown.push(d.sha256.clone()),
                Err(e) => return Err(e),
            }
            o.manifests.insert(Object {
                sha256: d.sha256,
                size: 0,
            });
        }
        Ok(o)
    }

    /// True when every object is in `local`: each manifest named its files, and each file
    /// object is there at its size (what [`Store::contains`] checks of each output).
    fn all_stored(&self, local: &Store) -> bool {
        self.unknown.is_empty()
            && self
                .files
                .iter()
                .all(|f| local.has_object(&f.sha256, Some(f.size)))
    }
}

impl Remote {
    /// Opens remote `name` at `url` (see [`Location::parse`]), moving up to `jobs` objects at
    /// once. `create` makes a missing directory (a push); otherwise a missing one is an error.
    pub fn open(
        name: &str,
        url: &str,
        root: &Path,
        jobs: usize,
        create: bool,
    ) -> Result<Remote, RemoteError> {
        let location = Location::parse(name, url, root)?;
        let store: Arc<dyn ObjectStore> = match &location {
            Location::Dir(dir) => {
                if create {
                    std::fs::create_dir_all(dir).map_err(|e| RemoteError::BadUrl {
                        name: name.to_owned(),
                        url: url.to_owned(),
                        reason: format!("cannot create `{}`: {e}", dir.display()),
                    })?;
                } else if !dir.is_dir() {
                    return Err(RemoteError::NoDirectory {
                        name: name.to_owned(),
                        url: url.to_owned(),
                    });
                }
                let fs =
                    object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| {
                        RemoteError::BadUrl {
                            name: name.to_owned(),
                            url: url.to_owned(),
                            reason: e.to_string(),
                        }
                    })?;
                Arc::new(fs.with_automatic_cleanup(true))
            }
            Location::S3 { bucket, prefix } => {
                let has = |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty());
                let keys = has("AWS_ACCESS_KEY_ID") && has("AWS_SECRET_ACCESS_KEY");
                let other = has("AWS_WEB_IDENTITY_TOKEN_FILE")
                    || has("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                    || has("AWS_CONTAINER_CREDENTIALS_FULL_URI");
                if !keys && !other {
                    return Err(RemoteError::NoCredentials {
                        name: name.to_owned(),
                        url: url.to_owned(),
                    });
                }
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(object_store::RetryConfig {
                        backoff: Default::default(),
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(20),
                    })
                    .with_client_options(
                        object_store::ClientOptions::new()
                            .with_connect_timeout(Duration::from_secs(10))
                            .with_timeout(Duration::from_secs(300)),
                    );
                let endpoint = std::env::var("AWS_ENDPOINT_URL")
                    .or_else(|_| std::env::var("AWS_ENDPOINT"))
                    .unwrap_or_default();
                if endpoint.starts_with("http://") {
                    // An endpoint written with http:// is a deliberate choice (a local
                    // MinIO or test server), not a downgrade to guard against.
                    b = b.with_allow_http(true);
                }
                if std::env::var_os("AWS_DEFAULT_REGION").is_none()
                    && std::env::var_os("AWS_REGION").is_none()
                {
                    b = b.with_region("us-east-1");
                }
                let s3 = b.build().map_err(|e| RemoteError::BadUrl {
                    name: name.to_owned(),
                    url: url.to_owned(),
                    reason: e.to_string(),
                })?;
                if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(s3, prefix.as_str()))
                }
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RemoteError::Runtime)?;
        Ok(Remote {
            name: name.to_owned(),
            url: url.to_owned(),
            store,
            runtime,
            jobs: jobs.max(1),
        })
    }

    fn object_key(sha256: &str) -> Key {
        Key::from(format!(
            "{LAYOUT}/objects/{}/{}",
            &sha256[..2],
            &sha256[2..]
        ))
    }

    fn run_key(fingerprint: &str) -> Key {
        let shard = &fingerprint[..2.min(fingerprint.len())];
        Key::from(format!("{LAYOUT}/runs/{shard}/{fingerprint}.json"))
    }

    fn transfer_err(
        &self,
        action: &'static str,
        key: &Key,
    ) -> impl FnOnce(object_store::Error) -> RemoteError {
        let (name, url, key) = (self.name.clone(), self.url.clone(), key.to_string());
        move |source| RemoteError::Transfer {
            name,
            url,
            action,
            key,
            reason: reason(&source),
        }
    }

    /// Whether `key` exists on the remote (with `size` bytes, when non-zero).
    async fn exists(&self, key: &Key, size: u64) -> Result<bool, RemoteError> {
        match self.store.head(key).await {
            Ok(meta) => Ok(size == 0 || meta.size == size),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.transfer_err("look up", key)(e)),
        }
    }

    /// Pushes the outputs of `entries` and their run records. Objects already on the remote are
    /// not sent again. Per entry, objects first and the record last.
    pub fn push(
        &self,
        local: &Store,
        entries: &[LockEntry],
        events: &Sender,
    ) -> Result<Transferred, RemoteError> {
        // Each entry's objects, expanded once: an entry goes only if the store holds all of
        // them (a partly collected output stays here, reported as incomplete).
        let (mut complete, mut incomplete) = (Vec::new(), Vec::new());
        let mut objects = Objects::default();
        for e in entries {
            match Objects::of(local, e.outputs.values().map(Digest::from)) {
                Ok(o) if o.all_stored(local) => {
                    objects.files.extend(o.files);
                    objects.manifests.extend(o.manifests);
                    complete.push(e);
                }
                // A manifest missing or unreadable: as `Store::contains` judges it, not here.
                _ => incomplete.push(e),
            }
        }
        let (entries, objects, manifests) = (complete, objects.files, objects.manifests);
        let progress = Progress::new(
            self,
            Direction::Push,
            objects.len() + manifests.len(),
            events,
        );
        self.runtime.block_on(async {
            // Files, then the manifests that name them, then the records that name both.
            for batch in [objects, manifests] {
                futures::stream::iter(batch)
                    .map(|o| self.upload(local, o, &progress))
                    .buffer_unordered(self.jobs)
                    .try_collect::<Vec<()>>()
                    .await?;
            }
            futures::stream::iter(&entries)
                .map(|e| self.put_record(e))
                .buffer_unordered(self.jobs)
                .try_collect::<Vec<()>>()
                .await
        })?;
        Ok(Transferred {
            records: entries.len() as u64,
            incomplete: incomplete.iter().map(|e| e.fingerprint.clone()).collect(),
            ..progress.finish()
        })
    }

    fn not_local(&self, e: CacheError) -> RemoteError {
        match e {
            CacheError::Missing { id } => RemoteError::NotLocal {
                name: self.name.clone(),
                url: self.url.clone(),
                id,
            },
            e => e.into(),
        }
    }

    async fn upload(
        &self,
        local: &Store,
        o: Object,
        progress: &Progress<'_>,
    ) -> Result<(), RemoteError> {
        let key = Self::object_key(&o.sha256);
        let path = local.object_path(&o.sha256);
        let size = std::fs::metadata(&path)
            .map_err(|_| {
                self.not_local(CacheError::Missing {
                    id: o.sha256.clone(),
                })
            })?
            .len();
        if self.exists(&key, size).await? {
            progress.present();
            return Ok(());
        }
        let read_err = fs_err("read", &path);
        if size <= PART as u64 {
            let bytes = std::fs::read(&path).map_err(read_err)?;
            self.store
                .put(&key, PutPayload::from(bytes))
                .await
                .map_err(self.transfer_err("upload", &key))?;
        } else {
            // In parts, read one at a time: a checkpoint of hundreds of MB is never held whole,
            // and at most two parts per upload are in flight.
            let mut file = std::fs::File::open(&path).map_err(read_err)?;
            let upload = self
                .store
                .put_multipart(&key)
                .await
                .map_err(self.transfer_err("start uploading", &key))?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
            let mut buf = vec![0u8; PART];
            loop {
                let n = std::io::Read::read(&mut file, &mut buf).map_err(fs_err("read", &path))?;
                if n == 0 {
                    break;
                }
                w.wait_for_capacity(2)
                    .await
                    .map_err(self.transfer_err("upload", &key))?;
                w.write(&buf[..n]);
            }
            // An error here aborts the upload: S3 never shows the parts.
            w.finish()
                .await
                .map_err(self.transfer_err("upload", &key))?;
        }
        progress.moved(size);
        Ok(())
    }

    async fn put_record(&self, entry: &LockEntry) -> Result<(), RemoteError> {
        let key = Self::run_key(&entry.fingerprint);
        let mut bytes = serde_json::to_vec(entry).expect("a lock entry serializes");
        bytes.push(b'\n');
        self.store
            .put(&key, PutPayload::from(bytes))
            .await
            .map_err(self.transfer_err("upload", &key))?;
        Ok(())
    }

    /// Downloads every object the outputs of `entries` need into `local` (verified), and their
    /// run records into the local run cache. Objects already stored locally are not fetched.
    pub fn pull(
        &self,
        local: &Store,
        entries: &[LockEntry],
        events: &Sender,
    ) -> Result<Transferred, RemoteError> {
        let outputs: Vec<Digest> = entries
            .iter()
            .flat_map(|e| e.outputs.values().map(Digest::from))
            .collect();
        let t = self.pull_objects(local, &outputs, events)?;
        let mut records = 0;
        let mut incomplete = Vec::new();
        for entry in entries {
            if !entry.outputs.values().all(|d| local.contains(&d.into())) {
                incomplete.push(entry.fingerprint.clone());
                continue;
            }
            let value = serde_json::to_value(entry).expect("a lock entry serializes");
            local.run_put(&entry.fingerprint, &value)?;
            records += 1;
        }
        Ok(Transferred {
            records,
            incomplete,
            ..t
        })
    }

    fn pull_objects(
        &self,
        local: &Store,
        outputs: &[Digest],
        events: &Sender,
    ) -> Result<Transferred, RemoteError> {
        let (files, dirs): (Vec<&Digest>, Vec<&Digest>) = outputs.iter().partition(|d| !d.is_dir());
        // Sets: two outputs may be the same file or directory.
        let files = Objects::of(local, files.into_iter().cloned())?.files;
        let dirs: BTreeMap<&str, &Digest> =
            dirs.into_iter().map(|d| (d.sha256.as_str(), d)).collect();
        let progress = Progress::new(self, Direction::Pull, files.len() + dirs.len(), events);
        let progress = &progress;
        self.runtime.block_on(async {
            // Manifests first: they name the files to fetch.
            futures::stream::iter(dirs.keys())
                .map(|sha| self.download(local, sha, 0, progress))
                .buffer_unordered(self.jobs)
                .try_collect::<Vec<()>>()
                .await?;
            // A manifest on neither side names no files: its entries are left out (see `pull`).
            let named = Objects::of(local, dirs.values().map(|d| (*d).clone()))?.files;
            let counted = files.len();
            let objects: BTreeSet<Object> = files.into_iter().chain(named).collect();
            progress.grow(objects.len() - counted);
            futures::stream::iter(objects)
                .map(|o| async move { self.download(local, &o.sha256, o.size, progress).await })
                .buffer_unordered(self.jobs)
                .try_collect::<Vec<()>>()
                .await
        })?;
        Ok(progress.finish())
    }

    async fn download(
        &self,
        local: &Store,
        sha256: &str,
        size: u64,
        progress: &Progress<'_>,
    ) -> Result<(), RemoteError> {
        let Some(mut import) = local.import_begin(sha256, (size > 0).then_some(size))? else {
            progress.present();
            return Ok(());
        };
        let key = Self::object_key(sha256);
        let got = match self.store.get(&key).await {
            Ok(got) => got,
            // Not there: the entries that need it are left out (see `pull`), the rest go on.
            Err(object_store::Error::NotFound { .. }) => {
                progress.missing();
                return Ok(());
            }
            Err(e) => return Err(self.transfer_err("download", &key)(e)),
        };
        let mut stream = got.into_stream();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(self.transfer_err("download", &key))?;
            n += chunk.len() as u64;
            import
                .file
                .write_all(&chunk)
                .map_err(fs_err("write", &local.tmp_dir()))?;
        }
        local.import_finish(import).map_err(|e| match e {
            CacheError::Mismatch { id, found } => RemoteError::Corrupt {
                name: self.name.clone(),
                url: self.url.clone(),
                id,
                found,
            },
            e => e.into(),
        })?;
        progress.moved(n);
        Ok(())
    }

    /// The remote's run record for `fingerprint`, with every object it names pulled into
    /// `local` and the record put into the local run cache: after `Some`, the local run cache
    /// restores the stage. `None` when the remote has no record for it.
    pub fn fetch_run(
        &self,
        local: &Store,
        fingerprint: &str,
        events: &Sender,
    ) -> Result<Option<LockEntry>, RemoteError> {
        let key = Self::run_key(fingerprint);
        let bytes = self.runtime.block_on(async {
            match self.store.get(&key).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        let Some(bytes) = bytes.map_err(self.transfer_err("download", &key))? else {
            return Ok(None);
        };
        let bad = |reason: String| RemoteError::BadRecord {
            name: self.name.clone(),
            url: self.url.clone(),
            key: key.to_string(),
            reason,
        };
        let entry: LockEntry = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if entry.fingerprint != fingerprint {
            return Err(bad(format!("it is the record of `{}`", entry.fingerprint)));
        }
        let t = self.pull(local, std::slice::from_ref(&entry), events)?;
        Ok(t.incomplete.is_empty().then_some(entry))
    }

    /// Per entry (keyed by stage name): where its objects are. A directory whose manifest is
    /// in neither place counts as its manifest alone (its files cannot be named).
    pub fn presence(
        &self,
        local: &Store,
        entries: &BTreeMap<String, LockEntry>,
    ) -> Result<BTreeMap<String, Presence>, RemoteError> {
        let mut out = BTreeMap::new();
        self.runtime.block_on(async {
            for (stage, entry) in entries {
                let o = Objects::of(local, entry.outputs.values().map(Digest::from))?;
                let objects = o.files.into_iter().chain(o.manifests);
                let checks: Vec<(bool, bool, u64)> = futures::stream::iter(objects)
                    .map(|o| async move {
                        let on_remote = self.exists(&Self::object_key(&o.sha256), 0).await?;
                        let here = local.object_path(&o.sha256).is_file();
                        Ok::<_, RemoteError>((here, on_remote, o.size))
                    })
                    .buffer_unordered(self.jobs)
                    .try_collect()
                    .await?;
                let mut p = Presence::default();
                for (here, there, size) in checks {
                    let count = match (here, there) {
                        (true, true) => continue,
                        (false, true) => &mut p.not_local,
                        (true, false) => &mut p.not_remote,
                        (false, false) => &mut p.nowhere,
                    };
                    count.objects += 1;
                    count.bytes += size;
                }
                out.insert(stage.clone(), p);
            }
            Ok::<_, RemoteError>(())
        })?;
        Ok(out)
    }
}

/// Counts a transfer as it goes and reports it (at most every 100 ms, and at the end).
struct Progress<'a> {
    remote: &'a Remote,
    direction: Direction,
    total: AtomicU64,
    done: AtomicU64,
    moved: AtomicU64,
    missing: AtomicU64,
    bytes: AtomicU64,
    last: std::sync::Mutex<std::time::Instant>,
    events: &'a Sender,
}

impl<'a> Progress<'a> {
    fn new(remote: &'a Remote, direction: Direction, total: usize, events: &'a Sender) -> Self {
        let p = Progress {
            remote,
            direction,
            total: AtomicU64::new(total as u64),
            done: AtomicU64::new(0),
            moved: AtomicU64::new(0),
            missing: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last: std::sync::Mutex::new(std::time::Instant::now()),
            events,
        };
        p.report(false);
        p
    }

    fn grow(&self, n: usize) {
        self.total.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn missing(&self) {
        self.missing.fetch_add(1, Ordering::Relaxed);
        self.present();
    }

    fn present(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.tick();
    }

    fn moved(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.moved.fetch_add(1, Ordering::Relaxed);
        self.done.fetch_add(1, Ordering::Relaxed);
        self.tick();
    }

    fn tick(&self) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= Duration::from_millis(100) {
            *last = std::time::Instant::now();
            drop(last);
            self.report(false);
        }
    }

    fn report(&self, done: bool) {
        emit(
            self.events,
            Event::Transfer {
                remote: self.remote.name.clone(),
                direction: self.direction,
                objects: self.done.load(Ordering::Relaxed),
                total: self.total.load(Ordering::Relaxed),
                bytes: self.bytes.load(Ordering::Relaxed),
                done,
            },
        );
    }

    fn finish(&self) -> Transferred {
        self.report(true);
        let moved = self.moved.load(Ordering::Relaxed);
        Transferred {
            objects: moved,
            bytes: self.bytes.load(Ordering::Relaxed),
            present: self.done.load(Ordering::Relaxed)
                - moved
                - self.missing.load(Ordering::Relaxed),
            records: 0,
            incomplete: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
