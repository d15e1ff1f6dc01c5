//! The `fid-stats` builtin: a dataset's FID reference statistics, computed once, and
//! optionally the reference features KID needs.
//!
//! Every `evaluate` of an image grid compares against the same real images. Given a prepared
//! dataset as `reference`, each would push those images through Inception again; a pipeline
//! instead runs `fid-stats` once per dataset and hands the `.npz` to every `evaluate` (the
//! engine caches it like any output). The file is pytorch-fid's layout (`mu` [2048] and
//! `sigma` [2048, 2048] in f64) plus `n`, the image count, which pytorch-fid ignores: so
//! `python -m pytorch_fid ours.npz theirs.npz` and `repro fid` both read it.
//!
//! `kid_samples` (default 0) adds a fourth member, `features`: the pool3 features of the first
//! k = min(`kid_samples`, images summarized) images, float32 [k, 2048], row i being image i.
//! KID, unlike FID, is not a function of Gaussian statistics: it needs the features themselves
//! (`kid.rs`), and an `evaluate` given this file computes KID against them. pytorch-fid ignores
//! the extra member. With `kid_samples` absent or 0 the file is byte for byte what it was before
//! the key existed, so no stage that does not set it is rerun.
//!
//! What must never change silently: which images are summarized (the *first* `max_samples`,
//! as `evaluate`'s caps), which images give `features` (the first `kid_samples` of those), and
//! the Inception input convention (`inception.rs`). Each changes every FID or KID computed
//! against the file; bump [`VERSION`] when one does.
//!
//! `device` (default `cpu`) is where the Inception network runs, with `evaluate`'s rules
//! ([`super::evaluate::stage_device`]): a device that cannot be had is a params error.
//!
//! An `.npz` holds no prepared images, so an `evaluate` given one reports precision/recall and
//! density/coverage as unavailable, with that reason, and KID as unavailable too unless the
//! file has `features`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::evaluate::stage_device;
use super::fid::Stats;
use super::fid_cli::image_features;
use super::inception::{InceptionNet, POOL3_DIM};
use super::npy::{read_npz_members, NpyRef};
use super::MetricsError;
use repro_engine::builtin::{Builtin, Context, Kind, StageError};

/// Bump when the same params give different statistics.
pub const VERSION: u32 = 1;

/// The registry entry.
pub const BUILTIN: &dyn Builtin = &Kind::<Params> {
    kind: "fid-stats",
    version: VERSION,
    summary: "FID reference statistics (mu, sigma) of a dataset's images, as pytorch-fid's npz, \
              optionally with pool3 features for KID",
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
    /// Images per Inception forward pass (default: the device's, see `inception::CPU_BATCH`).
    #[serde(default)]
    batch_size: Option<usize>,
    /// The `.npz` to write.
    out: PathBuf,
    /// Where the Inception network runs: `cpu`, `cuda`, `cuda:N` or `auto`.
    #[serde(default = "default_device")]
    device: String,
    /// Also store the pool3 features of the first this-many images as `features`, for KID
    /// (0, the default: none, and the file is unchanged).
    #[serde(default)]
    kid_samples: usize,
}

/// The npz member with the reference features for KID.
pub const FEATURES: &str = "features";

fn default_device() -> String {
    "cpu".to_string()
}

fn run(ctx: &Context, p: Params) -> Result<(), StageError> {
    if p.batch_size == Some(0) || p.max_samples == Some(0) {
        return Err(StageError::Params {
            kind: ctx.kind().to_string(),
            message: "`batch_size` and `max_samples` must be at least 1".to_string(),
        });
    }
    let device = stage_device(ctx, &p.device)?;
    let net = InceptionNet::load(&p.inception_weights, &device).map_err(StageError::domain)?;
    let (pool3, n) = image_features(
        &p.images,
        p.max_samples.unwrap_or(usize::MAX),
        &|| Ok(&net),
        p.batch_size,
        &|_, done, total| ctx.progress(done as u64, total as u64, "reference features"),
    )
    .map_err(StageError::domain)?;
    let stats = Stats::from_features(&pool3, n, POOL3_DIM).map_err(StageError::domain)?;
    let k = n.min(p.kid_samples);
    let shape = [k, POOL3_DIM];
    let features = (k > 0).then(|| {
        (
            FEATURES,
            NpyRef::F32 {
                shape: &shape,
                data: &pool3[..k * POOL3_DIM],
            },
        )
    });
    stats
        .save_npz_with(&p.out, features.as_slice())
        .map_err(StageError::domain)
}

/// The `features` member of a `fid-stats` npz as (values, rows, width), f32 row-major; `None`
/// when the file has none (written without `kid_samples`, or by pytorch-fid). Only that member
/// is read. `<f8` features (another tool's) are narrowed to f32, the precision pool3 has here.
pub fn load_features(path: &Path) -> Result<Option<(Vec<f32>, usize, usize)>, MetricsError> {
    let Some(a) = read_npz_members(path, &|name| name == FEATURES)?.remove(FEATURES) else {
        return Ok(None);
    };
    let [k, d] = a.shape[..] else {
        return Err(MetricsError::Npz {
            path: path.to_path_buf(),
            message: format!("`{FEATURES}` has shape {:?}; expected [k, d]", a.shape),
        });
    };
    Ok(Some((a.data.iter().map(|&v| v as f32).collect(), k, d)))
}
