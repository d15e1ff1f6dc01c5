//! GAN evaluation metrics: the FID Inception network, FID, KID, IS, precision/recall/density/
//! coverage, mode counts on the synthetic benchmarks and Stacked MNIST (with its digit
//! classifier), and the `evaluate` builtin that writes them all to `metrics.json`.
//!
//! [`MetricsError`] is the one error type of every metric module: a plain enum, so each metric
//! adds the variants it needs. Metric code never prints; long computations take a progress
//! callback and the calling stage forwards it to its `Context`.

pub mod classifier;
pub mod evaluate;
pub mod fid;
pub mod fid_cli;
pub mod fid_stats;
pub mod inception;
pub mod inception_score;
pub mod inception_weights;
pub mod kid;
pub mod modes;
pub mod npy;
pub mod prdc;
pub mod resize;
pub mod trace_sqrt;

use repro_engine::fsutil;
use std::path::{Path, PathBuf};

pub use inception_weights::{convert_weights, WeightsInfo};

/// Why a metric could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    Io(#[from] repro_engine::fsutil::FsError),
    #[error(transparent)]
    TorchFile(#[from] crate::torchfile::TorchFileError),
    #[error("`{path}` is not usable FID Inception weights: {message}")]
    Weights { path: PathBuf, message: String },
    #[error("bad safetensors file `{path}`: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("invalid input: {0}")]
    Input(String),
    #[error(
        "the Inception weights `{path}` have no 1008-way logits, so the Inception Score is \
         unavailable; use pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` converted with \
         `convert_weights` for IS"
    )]
    NoLogits { path: PathBuf },
    #[error("bad npz file `{path}`: {message}")]
    Npz { path: PathBuf, message: String },
    #[error("linear algebra failed: {0}")]
    Linalg(String),
    #[error("cannot decode image `{path}`: {message}")]
    Image { path: PathBuf, message: String },
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
    /// A set is smaller than an estimator is defined for (KID's unbiased one needs a pair).
    #[error("{what}: {n} sample(s); the estimator needs at least {min}")]
    NotEnoughSamples { what: String, n: usize, min: usize },
    /// A value is NaN or infinite, which would make every comparison meaningless.
    #[error("{what}: value at index {index} is not finite; check the generator's output for NaN")]
    NonFinite { what: String, index: usize },
    /// A prepared dataset (samples, reference, MNIST split) could not be read.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
}

impl MetricsError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        MetricsError::Io(repro_engine::fsutil::FsError::new(action, path, source))
    }
}

/// Writes `bytes` atomically through the engine's [`fsutil::write_atomic`] (parent directories
/// created, temp file fsynced, renamed into place, mode 0644), so a reader never sees a
/// half-written file.
pub(crate) fn write_atomic(dst: &Path, bytes: &[u8]) -> Result<(), MetricsError> {
    fsutil::write_atomic(dst, bytes).map_err(|e| MetricsError::io("write", dst, e))
}

/// Writes `value` as pretty JSON (with a final newline) to `path` atomically.
pub(crate) fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), MetricsError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| {
        MetricsError::Input(format!("cannot encode `{}` as json: {e}", path.display()))
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Lowercase hex sha256 of a file's bytes: what identifies a network's weights in a report.
pub fn sha256_file(path: &Path) -> Result<String, MetricsError> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path).map_err(|e| MetricsError::io("open", path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| MetricsError::io("read", path, e))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Row blocks of a set of `n` rows, `rows` at a time, as (start, rows): how the pairwise
/// metrics (PRDC, KID) cut their matrix products.
pub(crate) fn row_blocks(n: usize, rows: usize) -> Vec<(usize, usize)> {
    (0..n).step_by(rows).map(|s| (s, rows.min(n - s))).collect()
}

/// Reads a prepared dataset (samples, references, MNIST splits).
pub(crate) fn load_prepared(path: &Path) -> Result<crate::data::prepared::Dataset, MetricsError> {
    Ok(crate::data::prepared::load(path)?)
}
