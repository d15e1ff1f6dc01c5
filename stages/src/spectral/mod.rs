//! Spectral-collapse analysis: the `spectral` builtin over a training run's logged spectra, and
//! the library behind `repro spectrum FILE` over any safetensors checkpoint.
//!
//! The SR paper (Liu et al. 2019) names *spectral collapse*: in an SN-GAN that mode-collapses,
//! most singular values of a discriminator layer's normalized weight drop abruptly at about the
//! iteration where IS falls and FID rises. This module measures that and nothing else:
//!
//! - [`summary`]: what one spectrum is reduced to (share above a threshold, area under the
//!   normalized spectrum, mean of its free tail, effective rank, sigma_1). The definitions live
//!   there and only there.
//! - [`history`]: reads `RUN/spectra/<iteration>.csv` (the training stage's format) into one
//!   history of summaries per layer.
//! - [`detect`]: the rule that names the iteration where collapse sets in, and the verdict. It
//!   judges the tail of the normalized spectrum, the part spectral regularization leaves free,
//!   so it can flag SR runs as well as SN ones.
//! - [`stage`]: the `spectral` builtin: params, and the `spectral.json` / `spectral.csv` it
//!   writes, byte-identical for the same input.
//! - [`checkpoint`]: singular values of every weight matrix in a safetensors file.
//!
//! What must never change silently: the summary definitions, the detector's rule and defaults,
//! and the output layout. Each is part of what a cached `spectral` result means, so a change to
//! any of them bumps [`BUILTIN`]'s version.

use std::path::{Path, PathBuf};

pub mod checkpoint;
pub mod detect;
pub mod history;
pub mod stage;
pub mod summary;

pub use checkpoint::{checkpoint_spectra, CheckpointSpectra, TensorSpectrum, CHECKPOINT_THRESHOLD};
pub use detect::{Detection, Detector};
pub use history::{read_history, LayerHistory};
pub use stage::BUILTIN;
pub use summary::{summarize, Summary, TAIL_FROM};

/// Why a spectrum could not be read or computed.
#[derive(Debug, thiserror::Error)]
pub enum SpectralError {
    #[error(transparent)]
    Io(#[from] repro_engine::fsutil::FsError),
    #[error("`{path}` is not a readable safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("tensor `{tensor}` in `{path}` holds NaN or infinite values; a diverged run has no spectrum, use an earlier checkpoint")]
    NonFinite { path: PathBuf, tensor: String },
    #[error("the singular value decomposition of tensor `{tensor}` did not converge")]
    Svd { tensor: String },
    #[error("no `<iteration>.csv` files in `{dir}`; is `run` a train-gan run directory that logged spectra?")]
    NoSpectra { dir: PathBuf },
    #[error("bad spectra file {}: {message}", location(path, *line))]
    Csv {
        path: PathBuf,
        /// 1-based; 0 when the problem is the file as a whole.
        line: usize,
        message: String,
    },
    #[error("cannot read the run's training params `{path}`: {message}; is it the `params.json` a train-gan stage wrote?")]
    RunParams { path: PathBuf, message: String },
    #[error("layer {layer} changes in `{path}`: it was {was}, now {now}; spectra from different models share a `spectra/` directory, rerun the training stage")]
    LayerChanged {
        path: PathBuf,
        layer: u32,
        was: String,
        now: String,
    },
}

impl SpectralError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        SpectralError::Io(repro_engine::fsutil::FsError::new(action, path, source))
    }
}

fn location(path: &Path, line: usize) -> String {
    if line == 0 {
        format!("`{}`", path.display())
    } else {
        format!("`{}` line {line}", path.display())
    }
}
