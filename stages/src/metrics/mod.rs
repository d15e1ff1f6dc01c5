//! Evaluation metrics for generated samples: manifold metrics (precision, recall, density,
//! coverage), mode-collapse counts on the synthetic benchmarks and Stacked MNIST, the MNIST
//! mode-counting classifier, and the `evaluate` builtin that writes them all to `metrics.json`.
//!
//! Every metric here follows one reference implementation's conventions exactly (which
//! neighbour counts as the radius, `<` versus `<=`, which histogram a KL is taken over); the
//! module that implements a metric names its reference. Changing a convention changes the
//! numbers, so it must bump the `evaluate` builtin's version.

pub mod classifier;
pub mod evaluate;
pub mod modes;
pub mod prdc;

use std::path::PathBuf;

/// Why a metric could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A feature or sample array does not have the size its shape claims.
    #[error("{what}: expected {expected} values for shape {shape}, found {found}")]
    Shape {
        what: String,
        shape: String,
        expected: usize,
        found: usize,
    },
    /// Two sets compared against each other live in different spaces.
    #[error(
        "{what}: dimensions differ ({left} vs {right}); compute both with the same feature network"
    )]
    DimensionMismatch {
        what: String,
        left: usize,
        right: usize,
    },
    /// A set is too small for the neighbourhood size asked for.
    #[error("{what}: {n} samples cannot give a {k}-nearest-neighbour radius; use at least {} samples", k + 1)]
    TooFewSamples { what: String, n: usize, k: usize },
    /// A value is NaN or infinite, which would make every comparison meaningless.
    #[error("{what}: value at index {index} is not finite; check the generator's output for NaN")]
    NonFinite { what: String, index: usize },
    /// An input or parameter is out of its domain.
    #[error("invalid input: {0}")]
    Input(String),
    /// A file could not be read or written.
    #[error("{action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A safetensors file is malformed or lacks a tensor.
    #[error("safetensors `{path}`: {message}")]
    Safetensors { path: PathBuf, message: String },
    /// A prepared dataset (samples or reference) could not be read.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// The tensor library failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Writes a file by letting `write` fill a temporary file beside `path`, then renaming it into
/// place, so a crash never leaves a half-written output that looks complete.
pub(crate) fn write_atomic_with(
    path: &std::path::Path,
    write: impl FnOnce(&std::path::Path) -> Result<(), MetricsError>,
) -> Result<(), MetricsError> {
    let io = |action, source| MetricsError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| io("create the directory of", e))?;
    let tmp =
        tempfile::NamedTempFile::new_in(&dir).map_err(|e| io("create a temporary file for", e))?;
    write(tmp.path())?;
    tmp.persist(path)
        .map_err(|e| io("rename into place", e.error))?;
    Ok(())
}

/// Writes `bytes` to `path` atomically.
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<(), MetricsError> {
    write_atomic_with(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|source| MetricsError::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        })
    })
}

/// Writes `value` as pretty JSON (with a final newline) to `path` atomically.
pub(crate) fn write_json(
    path: &std::path::Path,
    value: &impl serde::Serialize,
) -> Result<(), MetricsError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| {
        MetricsError::Input(format!("cannot encode `{}` as json: {e}", path.display()))
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Lowercase hex sha256 of a file's bytes: what identifies a network's weights in a report.
pub fn sha256_file(path: &std::path::Path) -> Result<String, MetricsError> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path).map_err(|source| MetricsError::Io {
        action: "open",
        path: path.to_path_buf(),
        source,
    })?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|source| MetricsError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(hex::encode(hasher.finalize()))
}

/// Reads a prepared dataset (samples, references, MNIST splits).
pub(crate) fn load_prepared(
    path: &std::path::Path,
) -> Result<crate::data::prepared::Dataset, MetricsError> {
    Ok(crate::data::prepared::load(path)?)
}
