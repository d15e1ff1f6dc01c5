//! GAN evaluation metrics: the FID Inception network, FID, IS (and, from other modules,
//! precision/recall/density/coverage and mode counts).
//!
//! [`MetricsError`] is the one error type of every metric module: a plain enum, so each metric
//! adds the variants it needs. Metric code never prints; long computations take a progress
//! callback and the calling stage forwards it to its `Context`.

pub mod fid;
pub mod fid_cli;
pub mod inception;
pub mod inception_score;
pub mod inception_weights;
pub mod npy;
pub mod resize;
pub mod trace_sqrt;

use std::path::{Path, PathBuf};

pub use inception_weights::{convert_weights, WeightsInfo};

/// Why a metric could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
}

impl MetricsError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        MetricsError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Writes `bytes` to a temp file beside `dst`, then renames it into place, so a reader never
/// sees a half-written file.
pub(crate) fn write_atomic(dst: &Path, bytes: &[u8]) -> Result<(), MetricsError> {
    use std::io::Write;
    let dir = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| MetricsError::io("create a temp file in", dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| MetricsError::io("write", dst, e))?;
    tmp.persist(dst)
        .map_err(|e| MetricsError::io("rename into", dst, e.error))?;
    Ok(())
}
