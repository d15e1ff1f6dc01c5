//! The `fid-stats` builtin: a dataset's FID reference statistics, computed once.
//!
//! Every `evaluate` of an image grid compares against the same real images. Given a prepared
//! dataset as `reference`, each would push those images through Inception again; a pipeline
//! instead runs `fid-stats` once per dataset and hands the `.npz` to every `evaluate` (the
//! engine caches it like any output). The file is pytorch-fid's layout (`mu` [2048] and
//! `sigma` [2048, 2048] in f64) plus `n`, the image count, which pytorch-fid ignores: so
//! `python -m pytorch_fid ours.npz theirs.npz` and `repro fid` both read it.
//!
//! What must never change silently: which images are summarized (the *first* `max_samples`,
//! as `evaluate`'s caps) and the Inception input convention (`inception.rs`). Both change
//! every FID computed against the file; bump [`VERSION`] when either does.
//!
//! `device` (default `cpu`) is where the Inception network runs, with `evaluate`'s rules
//! ([`super::evaluate::stage_device`]): a device that cannot be had is a params error.
//!
//! An `.npz` holds no per-image features, so an `evaluate` given one reports precision/recall
//! and density/coverage as unavailable, with that reason.

use std::path::PathBuf;

use serde::Deserialize;

use super::evaluate::stage_device;
use super::fid_cli::image_stats;
use super::inception::InceptionNet;
use repro_engine::builtin::{Builtin, Context, Kind, StageError};

/// Bump when the same params give different statistics.
pub const VERSION: u32 = 1;

/// The registry entry.
pub const BUILTIN: &dyn Builtin = &Kind::<Params> {
    kind: "fid-stats",
    version: VERSION,
    summary: "FID reference statistics (mu, sigma) of a dataset's images, as pytorch-fid's npz",
    run,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// A prepared dataset (safetensors with `images`) or a folder of PNGs.
    images: PathBuf,
    /// The converted FID Inception weights (`convert-inception`).
    inception_weights: PathBuf,
    /// Summarize only the first this-many images (all when absent).
    #[serde(default)]
    max_samples: Option<usize>,
    /// Images per Inception forward pass.
    #[serde(default = "default_batch_size")]
    batch_size: usize,
    /// The `.npz` to write.
    out: PathBuf,
    /// Where the Inception network runs: `cpu`, `cuda`, `cuda:N` or `auto`.
    #[serde(default = "default_device")]
    device: String,
}

fn default_batch_size() -> usize {
    32
}

fn default_device() -> String {
    "cpu".to_string()
}

fn run(ctx: &Context, p: Params) -> Result<(), StageError> {
    if p.batch_size == 0 || p.max_samples == Some(0) {
        return Err(StageError::Params {
            kind: ctx.kind().to_string(),
            message: "`batch_size` and `max_samples` must be at least 1".to_string(),
        });
    }
    let device = stage_device(ctx, &p.device)?;
    let net = InceptionNet::load(&p.inception_weights, &device).map_err(StageError::domain)?;
    let stats = image_stats(
        &p.images,
        p.max_samples.unwrap_or(usize::MAX),
        &|| Ok(&net),
        p.batch_size,
        &|_, done, total| ctx.progress(done as u64, total as u64, "reference features"),
    )
    .map_err(StageError::domain)?;
    stats.save_npz(&p.out).map_err(StageError::domain)
}
