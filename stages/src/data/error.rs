//! The one error type of the `data` module.
//!
//! Every variant names what failed (a path, a dataset, a source) and what the user can do about
//! it, because a data stage usually fails far away from the person who wrote the pipeline: on a
//! cluster node without a registry client, behind a proxy, with a corrupted mirror. The messages
//! are lowercase and put names in backticks, as everywhere in `repro`.

use std::path::PathBuf;

/// Why reading, writing, fetching or unpacking a dataset failed.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or directory could not be read or written.
    #[error(transparent)]
    Io(#[from] repro_engine::fsutil::FsError),
    /// A prepared dataset file is not valid safetensors.
    /// A fetched file or directory could not be hashed (the engine's hasher says why).
    #[error(transparent)]
    Hash(#[from] repro_engine::hash::HashError),
    #[error("`{path}` is not a valid safetensors file ({message}); delete it and re-run the stage that made it")]
    Safetensors { path: PathBuf, message: String },
    /// A prepared dataset file is valid safetensors but does not follow the prepared format.
    #[error("`{path}` is not a prepared dataset: {message}")]
    Prepared { path: PathBuf, message: String },
    /// An in-memory dataset is inconsistent (shape vs buffer length, labels vs samples).
    #[error("dataset `{name}` is inconsistent: {message}")]
    Invalid { name: String, message: String },
    /// A raw dataset file (IDX, CIFAR binary, STL binary) is malformed or cut short.
    #[error("`{path}` is not a valid {format} file: {message}; fetch it again (the download may be truncated)")]
    Raw {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    /// Content did not match its pinned hash; nothing was published.
    #[error("`{name}`: content from {source_desc} has sha256 {actual}, but the pin is {expected}; nothing was published (if the source is right, update `sha256:`)")]
    HashMismatch {
        name: String,
        source_desc: String,
        expected: String,
        actual: String,
    },
    /// Content has no pin and its source published no checksum: refuse to trust it.
    #[error("`{name}` has no `sha256:` pin and {source_desc} publishes no checksum; the content fetched has sha256 {actual}: if you trust it, add `sha256: {actual}`")]
    Unpinned {
        name: String,
        source_desc: String,
        actual: String,
    },
    /// Every source of a fetch failed.
    #[error("could not fetch `{name}` from any of its {} source(s):\n{}\nto work offline, get the content onto this machine some other way and add it as a `path:` source", attempts.len(), attempts.iter().map(|a| format!("  - {a}")).collect::<Vec<_>>().join("\n"))]
    AllSourcesFailed { name: String, attempts: Vec<String> },
    /// One source failed (collected into [`DataError::AllSourcesFailed`]).
    #[error("{0}")]
    Source(String),
    /// An archive entry would escape the destination or break a limit.
    #[error("refusing to unpack `{archive}`: entry `{entry}` {reason}")]
    UnsafeArchive {
        archive: PathBuf,
        entry: String,
        reason: String,
    },
    /// Unpacking an archive would break one of its bounds ([`super::unpack::Limits`]): a
    /// decompression bomb, an archive larger than the default allows, or a filesystem about to
    /// fill up. Nothing was unpacked into the destination.
    #[error("refusing to unpack `{archive}`: {}{detail}; nothing was unpacked ({})", at_entry(.entry), .bound.remedy())]
    ArchiveLimit {
        archive: PathBuf,
        /// The member being unpacked when the bound was hit (empty: before the first one).
        entry: String,
        bound: ArchiveBound,
        /// The bound's value (bytes, entries, ratio, or bytes to keep free).
        limit: u64,
        /// What happened, with the numbers.
        detail: String,
    },
    /// An unknown dataset name, converter or source kind.
    #[error("{0}")]
    Unknown(String),
    /// A conversion parameter (`resize:`, `pad:`) that the data cannot take: the stage's
    /// params are wrong, not its inputs.
    #[error("converter `{converter}`: {message}")]
    Param { converter: String, message: String },
}

/// Which bound of [`super::unpack::Limits`] an archive broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveBound {
    /// The total bytes of all unpacked files (`max_bytes`).
    Bytes,
    /// The number of entries (`max_entries`).
    Entries,
    /// Unpacked bytes per compressed byte, of one entry or one compressed stream (`max_ratio`).
    Ratio,
    /// The free space to keep on the destination's filesystem (`min_free`).
    FreeSpace,
}

impl ArchiveBound {
    /// The `fetch` param that sets the bound.
    pub fn param(self) -> &'static str {
        match self {
            ArchiveBound::Bytes => "max_bytes",
            ArchiveBound::Entries => "max_entries",
            ArchiveBound::Ratio => "max_ratio",
            ArchiveBound::FreeSpace => "min_free",
        }
    }

    /// What the user can do about it.
    fn remedy(self) -> String {
        match self {
            ArchiveBound::FreeSpace => format!(
                "free some space there, or lower `{}:` in the `fetch` stage's `with:`",
                self.param()
            ),
            _ => format!(
                "if the archive is trusted and really this large, raise `{}:` in the `fetch` stage's `with:`",
                self.param()
            ),
        }
    }
}

fn at_entry(entry: &str) -> String {
    if entry.is_empty() {
        String::new()
    } else {
        format!("entry `{entry}` ")
    }
}

impl DataError {
    /// An I/O error with the path and what was being done to it.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io(repro_engine::fsutil::FsError::new(action, path, source))
    }

    /// A malformed raw file.
    pub fn raw(path: impl Into<PathBuf>, format: &'static str, message: impl Into<String>) -> Self {
        DataError::Raw {
            path: path.into(),
            format,
            message: message.into(),
        }
    }
}
