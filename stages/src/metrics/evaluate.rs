//! The `evaluate` builtin: every metric of a set of generated samples, into one `metrics.json`.
//!
//! `evaluate` never loads model code. It reads samples in the prepared format (what the
//! training stage writes as `RUN/samples/<iter>.safetensors` and `final.safetensors`): either
//! one file, or a run's `samples/` directory, which gives one row per file so the report can
//! draw curves over training. Rows are ordered by iteration, `final` last.
//!
//! Which metrics a row gets is decided by `dataset_kind`, never guessed from the data:
//! - `ring`, `grid`: the mode counts of `modes.rs` against the fixed mixtures of
//!   `data::synthetic`, plus PRDC on the raw coordinates when a `reference` is given;
//! - `stacked-mnist`: the classifier's mode count and reverse KL (a `classifier` is required;
//!   32×32 samples of the padded set are cropped back to the classifier's centred 28×28), plus
//!   the image metrics below when `inception_weights` is given;
//! - `images`: FID against `reference` (a prepared dataset or an `.npz` of statistics), IS when
//!   the Inception weights carry logits, PRDC on Inception pool3 features when the reference is
//!   a dataset (an `.npz` holds no images, so PRDC is then unavailable), and KID (`kid.rs`) on
//!   pool3 features when the reference is a dataset or an `.npz` with `features` (what
//!   `fid-stats` writes with `kid_samples`), otherwise unavailable with the reason.
//!
//! KID is `{"value", "n_generated", "n_reference"}`: the unbiased MMD² between the first
//! `kid_samples` generated and reference features (for an `.npz`, also at most the `features`
//! it holds and `reference_samples`). Unbiased means it is negative about half the time for a
//! generator that matches the data; a reader must not treat a negative value as an error. The
//! reference's within-set term is computed once and serves every row.
//!
//! Three params narrow what the Inception metrics (FID, KID, IS, PRDC on features) see, for a
//! run whose curves need cheap metrics at every logged iteration and Inception once:
//! `image_rows: final` computes them on the `final` row only (the other rows say so in their
//! `reason`); `image_samples` gives them the first n samples of a row (after `max_samples`,
//! which also caps the mode counts); `image_channel: k` gives them channel k of each sample as
//! a grey image, so Stacked MNIST's generated digits are compared with MNIST itself.
//!
//! A metric that cannot be computed is written as `{"value": null, "reason": "..."}` rather
//! than left out, so a report can tell "not applicable" from "forgotten". Every row carries its
//! sample counts, and the file carries the sha256 of the feature network's and the classifier's
//! weights: a number is only comparable with numbers made by the same networks.
//!
//! `device` (`cpu` by default, or `cuda`, `cuda:N`, `auto`, parsed by `train-gan`'s own
//! [`crate::train::device::select`]) is where the Inception network and the Stacked MNIST digit
//! classifier run; a device that cannot be had is a params error naming the key, never a silent
//! CPU run. FID on a GPU differs from the CPU's in the last float digits (summation order), so the
//! paper profile marks its GPU evaluations `deterministic: false`.
//!
//! What must never change silently: the json keys (the report reads them), the row order, the
//! sample caps (`max_samples`, `reference_samples`, `prdc_samples`, `kid_samples`,
//! `image_samples`: each keeps the *first* n samples of its set), which channel `image_channel`
//! takes, and the metric conventions of the modules this calls. Bump
//! [`VERSION`] when any of them changes (2: rows gained `kid`, the file `kid_samples`; 3: the
//! file gained `final`, a copy of the last row at the top level, so that tools that read flat
//! metrics, `repro exp show` and `repro metrics show`, see the final modes and FID without
//! knowing the `rows` list).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use candle_core::Device;

use super::classifier::{self, DigitClassifier};
use super::fid::{frechet_distance, Stats};
use super::fid_stats::load_features;
use super::inception::{Features, InceptionNet};
use super::inception_score::inception_score_of;
use super::kid::{self, KidReference};
use super::modes::{stacked_mnist_modes, Mixture, MixtureModes, StackedMnistModes};
use super::prdc::{manifold_metrics, ManifoldMetrics, PointSet};
use super::MetricsError;
use crate::data::prepared::{Dataset, Samples};
use crate::data::synthetic;
use repro_engine::builtin::{Builtin, Context, Kind, StageError};

/// The `evaluate` builtin's version: enters the fingerprint of every evaluate stage.
pub const VERSION: u32 = 3;

/// What kind of data the samples are, which decides the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// The ring of 8 Gaussians.
    Ring,
    /// The grid of 25 Gaussians.
    Grid,
    /// Stacked MNIST, 3×28×28 images of three digits.
    StackedMnist,
    /// Natural images (CIFAR-10, STL-10, ...).
    Images,
}

/// Params of the `evaluate` builtin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluateParams {
    /// A prepared samples file, or a directory of them (one row each).
    samples: PathBuf,
    dataset_kind: DatasetKind,
    /// Prepared reference dataset, or `.npz` FID statistics, with `features` for KID (images
    /// only).
    #[serde(default)]
    reference: Option<PathBuf>,
    /// The FID Inception weights.
    #[serde(default)]
    inception_weights: Option<PathBuf>,
    /// The `train-classifier` weights (Stacked MNIST).
    #[serde(default)]
    classifier: Option<PathBuf>,
    #[serde(default = "default_metrics")]
    metrics: PathBuf,
    /// Use at most this many samples of each file (all when absent).
    #[serde(default)]
    max_samples: Option<usize>,
    /// Use at most the first this-many reference samples (all when absent). Inception features
    /// of a large reference are expensive on CPU; an `.npz` of statistics avoids them for FID.
    #[serde(default)]
    reference_samples: Option<usize>,
    /// PRDC uses the first this-many samples of each set: its cost grows with n².
    #[serde(default = "default_prdc_samples")]
    prdc_samples: usize,
    #[serde(default = "default_pr_k")]
    pr_k: usize,
    #[serde(default = "default_dc_k")]
    dc_k: usize,
    /// KID uses the first this-many features of each set: the reference term costs m²·d.
    #[serde(default = "default_kid_samples")]
    kid_samples: usize,
    /// Which rows get the Inception metrics: `all` (default) or `final` only.
    #[serde(default)]
    image_rows: ImageRows,
    /// The Inception metrics use the first this-many samples of a row (all when absent).
    #[serde(default)]
    image_samples: Option<usize>,
    /// The Inception metrics see only this channel of each sample, as a grey image.
    #[serde(default)]
    image_channel: Option<usize>,
    /// Inception Score splits (10 in the original protocol).
    #[serde(default = "default_is_splits")]
    is_splits: usize,
    /// Images per Inception forward pass (default: the device's, see `inception::CPU_BATCH`).
    #[serde(default)]
    batch_size: Option<usize>,
    /// Where the Inception network runs: `cpu`, `cuda`, `cuda:N` or `auto`.
    #[serde(default = "default_device")]
    device: String,
}

/// Which rows of a samples directory get the Inception metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ImageRows {
    /// Every row.
    #[default]
    All,
    /// The `final` row only.
    Final,
}

/// The first `n` samples of an NCHW u8 image set, as `image_samples` and `image_channel` ask:
/// channel `k` alone (a `[n, 1, H, W]` grey set) or all channels.
fn image_view<'a>(
    pixels: &'a [u8],
    shape: [usize; 4],
    p: &EvaluateParams,
    what: &Path,
) -> Result<(std::borrow::Cow<'a, [u8]>, [usize; 4]), MetricsError> {
    let [n, c, h, w] = shape;
    let n = n.min(p.image_samples.unwrap_or(usize::MAX));
    let plane = h * w;
    match p.image_channel {
        None => Ok((pixels[..n * c * plane].into(), [n, c, h, w])),
        Some(k) if k < c => {
            let grey = (0..n)
                .flat_map(|i| &pixels[(i * c + k) * plane..(i * c + k + 1) * plane])
                .copied()
                .collect::<Vec<u8>>();
            Ok((grey.into(), [n, 1, h, w]))
        }
        Some(k) => Err(MetricsError::Input(format!(
            "`image_channel: {k}`, but the samples in `{}` have {c} channel(s)",
            what.display()
        ))),
    }
}

fn default_device() -> String {
    "cpu".to_string()
}

/// The device a metrics stage's `device:` names, by `train-gan`'s rules; a device that cannot be
/// had (a CPU-only build asked for `cuda`, no GPU answering) is a params error naming the key.
/// `auto`'s fall-back to the CPU is reported as progress.
pub(crate) fn stage_device(ctx: &Context, spec: &str) -> Result<Device, StageError> {
    let (device, notice) = crate::train::device::select(spec).map_err(|e| StageError::Params {
        kind: ctx.kind().to_string(),
        message: format!("key `device`: {e}"),
    })?;
    if let Some(notice) = notice {
        ctx.progress(0, 0, &notice);
    }
    Ok(device)
}

fn default_metrics() -> PathBuf {
    PathBuf::from("metrics.json")
}
fn default_prdc_samples() -> usize {
    10_000
}
fn default_pr_k() -> usize {
    super::prdc::DEFAULT_PR_K
}
fn default_dc_k() -> usize {
    super::prdc::DEFAULT_DC_K
}
fn default_kid_samples() -> usize {
    10_000
}
fn default_is_splits() -> usize {
    10
}

/// A metric's value, or why there is none.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Metric<T> {
    /// Computed.
    Value(T),
    /// Not computed: `{"value": null, "reason": "..."}`.
    Unavailable {
        /// Always null; a reader tells an unavailable metric by its `reason` key, which no
        /// computed value has.
        value: Option<()>,
        /// Why, in words a user can act on.
        reason: String,
    },
}

impl<T> Metric<T> {
    fn unavailable(reason: impl Into<String>) -> Self {
        Metric::Unavailable {
            value: None,
            reason: reason.into(),
        }
    }
}

/// The Fréchet Inception distance of one row.
#[derive(Debug, Clone, Serialize)]
pub struct FidValue {
    pub value: f64,
    pub n_fake: usize,
    pub n_real: usize,
}

/// The Inception Score of one row.
#[derive(Debug, Clone, Serialize)]
pub struct IsValue {
    pub mean: f64,
    pub std: f64,
    pub splits: usize,
    pub n: usize,
}

/// The Kernel Inception Distance of one row.
#[derive(Debug, Clone, Serialize)]
pub struct KidValue {
    /// The unbiased MMD² (may be negative; see `kid.rs`).
    pub value: f64,
    pub n_generated: usize,
    pub n_reference: usize,
}

/// Every metric of one samples file.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The file stem (`final`, `5000`).
    pub label: String,
    /// The training iteration, when the stem is a number.
    pub iteration: Option<u64>,
    /// Samples evaluated (after `max_samples`).
    pub n_samples: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modes: Option<MixtureModes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stacked_mnist: Option<StackedMnistModes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fid: Option<Metric<FidValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inception_score: Option<Metric<IsValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prdc: Option<Metric<ManifoldMetrics>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<Metric<KidValue>>,
}

/// A network whose weights decided some of the numbers.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkId {
    pub path: String,
    pub sha256: String,
}

/// The whole `metrics.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub evaluate_version: u32,
    pub dataset_kind: DatasetKind,
    pub samples: String,
    pub reference: Option<String>,
    pub n_reference: Option<usize>,
    pub feature_net: Option<NetworkId>,
    pub classifier: Option<NetworkId>,
    pub prdc_samples: usize,
    pub kid_samples: usize,
    /// The last row again (the final samples when the run wrote them): what a table of runs
    /// compares. `None` for no rows.
    #[serde(rename = "final")]
    pub last: Option<Row>,
    pub rows: Vec<Row>,
}

/// The Inception-based metrics of one row.
struct ImageRow {
    fid: Metric<FidValue>,
    inception_score: Metric<IsValue>,
    prdc: Metric<ManifoldMetrics>,
    kid: Metric<KidValue>,
}

/// The FID Inception network with what it computed once for the reference set.
struct ImageEvaluator {
    net: InceptionNet,
    net_id: NetworkId,
    /// FID statistics of the reference, or why there are none.
    reference_stats: Result<Stats, String>,
    /// pool3 features of the first `prdc_samples` reference images, or why there are none.
    reference_features: Result<(Vec<f32>, usize, usize), String>,
    /// KID's reference side (first `kid_samples` features, within-set term done), or why none.
    kid_reference: Result<KidReference, String>,
    n_reference: Option<usize>,
}

impl ImageEvaluator {
    /// `None` without Inception weights. The reference is either a prepared dataset (features
    /// computed here, giving FID statistics, PRDC and KID features) or an `.npz` of FID
    /// statistics (no PRDC; KID when it holds `features`).
    fn new(
        weights: Option<&Path>,
        reference: Option<&Path>,
        p: &EvaluateParams,
        device: &Device,
        progress: &dyn Fn(u64, u64, &str),
    ) -> Result<Option<Self>, MetricsError> {
        let Some(weights) = weights else {
            return Ok(None);
        };
        let net = InceptionNet::load(weights, device)?;
        let net_id = NetworkId {
            path: show(weights),
            sha256: net.weights_sha256().to_string(),
        };
        let no_reference = "no `reference` given".to_string();
        let (reference_stats, reference_features, kid_reference, n_reference) = match reference {
            None => (
                Err(no_reference.clone()),
                Err(no_reference.clone()),
                Err(no_reference),
                None,
            ),
            Some(path) if path.extension().is_some_and(|e| e == "npz") => {
                let stats = Stats::load_npz(path)?;
                let n = (stats.n > 0).then_some(stats.n);
                let (prdc_reason, kid_reference) = match load_features(path)? {
                    Some((values, k, d)) => {
                        let k = k.min(p.reference_samples.unwrap_or(usize::MAX));
                        (
                            format!(
                                "`{}` holds FID statistics and KID features, no images; give a \
                                 prepared dataset for prdc",
                                show(path)
                            ),
                            kid_reference(&values, k, d, p)?,
                        )
                    }
                    None => (
                        format!(
                            "`{}` holds only FID statistics; give a prepared dataset for prdc",
                            show(path)
                        ),
                        Err(format!(
                            "`{}` holds no `features`; write it with `fid-stats` and \
                             `kid_samples`, or give a prepared dataset for kid",
                            show(path)
                        )),
                    ),
                };
                (Ok(stats), Err(prdc_reason), kid_reference, n)
            }
            Some(path) => {
                let ds = super::load_prepared(path)?;
                let cap = p.reference_samples.unwrap_or(usize::MAX);
                let (pixels, shape) = images(&ds, path, cap)?;
                let f = features(&net, pixels, shape, p, progress, "reference features")?;
                let d = f.pool3.len() / f.n.max(1);
                let stats = Stats::from_features(&f.pool3, f.n, d)?;
                let kid_reference = kid_reference(&f.pool3, f.n, d, p)?;
                let keep = f.n.min(p.prdc_samples);
                let mut pool3 = f.pool3;
                pool3.truncate(keep * d);
                (Ok(stats), Ok((pool3, keep, d)), kid_reference, Some(f.n))
            }
        };
        Ok(Some(ImageEvaluator {
            net,
            net_id,
            reference_stats,
            reference_features,
            kid_reference,
            n_reference,
        }))
    }

    fn n_reference(&self) -> Option<usize> {
        self.n_reference
    }

    fn network_id(&self) -> NetworkId {
        self.net_id.clone()
    }

    fn evaluate(
        &self,
        pixels: &[u8],
        shape: [usize; 4],
        p: &EvaluateParams,
        progress: &dyn Fn(u64, u64, &str),
    ) -> Result<ImageRow, MetricsError> {
        let f = features(&self.net, pixels, shape, p, progress, "sample features")?;
        let d = f.pool3.len() / f.n.max(1);
        let fid = match &self.reference_stats {
            Ok(reference) if f.n >= 2 => {
                let stats = Stats::from_features(&f.pool3, f.n, d)?;
                Metric::Value(FidValue {
                    value: frechet_distance(&stats, reference)?,
                    n_fake: f.n,
                    n_real: reference.n,
                })
            }
            Ok(_) => Metric::unavailable("fid needs at least 2 samples"),
            Err(reason) => Metric::unavailable(reason.clone()),
        };
        let inception_score = if !self.net.has_logits() {
            Metric::unavailable(self.net.no_logits_error().to_string())
        } else if f.n < p.is_splits {
            Metric::unavailable(format!(
                "{} samples cannot make {} splits",
                f.n, p.is_splits
            ))
        } else {
            match inception_score_of(&f, p.is_splits)? {
                Some(is) => Metric::Value(IsValue {
                    mean: is.mean,
                    std: is.std,
                    splits: is.splits,
                    n: is.n,
                }),
                None => Metric::unavailable(self.net.no_logits_error().to_string()),
            }
        };
        let prdc = match &self.reference_features {
            Ok((real, nr, rd)) => prdc_on((real, *nr, *rd), (&f.pool3, f.n, d), p)?,
            Err(reason) => Metric::unavailable(reason.clone()),
        };
        let kid = match &self.kid_reference {
            Ok(reference) => kid_on(reference, (&f.pool3, f.n, d), p)?,
            Err(reason) => Metric::unavailable(reason.clone()),
        };
        Ok(ImageRow {
            fid,
            inception_score,
            prdc,
            kid,
        })
    }
}

/// Inception features of a set of images, reporting progress under `what`.
fn features(
    net: &InceptionNet,
    pixels: &[u8],
    shape: [usize; 4],
    p: &EvaluateParams,
    progress: &dyn Fn(u64, u64, &str),
    what: &str,
) -> Result<Features, MetricsError> {
    net.features(pixels, shape, p.batch_size, &|done, total| {
        progress(done as u64, total as u64, what)
    })
}

/// The samples files to evaluate, ordered: numeric stems by iteration, then the others by name
/// (so `final` comes after every iteration).
pub fn sample_files(path: &Path) -> Result<Vec<(String, Option<u64>, PathBuf)>, MetricsError> {
    let io = |action, source| MetricsError::io(action, path, source);
    let meta = std::fs::metadata(path).map_err(|e| io("read", e))?;
    let files: Vec<PathBuf> = if meta.is_dir() {
        let mut v = Vec::new();
        for entry in std::fs::read_dir(path).map_err(|e| io("list", e))? {
            let p = entry.map_err(|e| io("list", e))?.path();
            if p.extension().is_some_and(|e| e == "safetensors") {
                v.push(p);
            }
        }
        if v.is_empty() {
            return Err(MetricsError::Input(format!(
                "`{}` holds no `.safetensors` samples; point `samples` at a run's `samples/` directory",
                path.display()
            )));
        }
        v
    } else {
        vec![path.to_path_buf()]
    };
    let mut rows: Vec<(String, Option<u64>, PathBuf)> = files
        .into_iter()
        .map(|p| {
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let iteration = stem.parse::<u64>().ok();
            (stem, iteration, p)
        })
        .collect();
    rows.sort_by(|a, b| match (a.1, b.1) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.0.cmp(&b.0),
    });
    Ok(rows)
}

/// The mixture a ring or grid run is judged against.
fn mixture(kind: DatasetKind) -> Result<Option<Mixture>, MetricsError> {
    let (centers, sigma) = match kind {
        DatasetKind::Ring => (synthetic::ring_centers(), synthetic::RING_SIGMA),
        DatasetKind::Grid => (synthetic::grid_centers(), synthetic::GRID_SIGMA),
        _ => return Ok(None),
    };
    let means = centers
        .iter()
        .flat_map(|c| c.iter().map(|&v| f64::from(v)))
        .collect();
    Mixture::new(means, 2, f64::from(sigma)).map(Some)
}

/// Points of a prepared file, capped at `cap` rows.
fn points<'a>(
    ds: &'a Dataset,
    what: &Path,
    cap: usize,
) -> Result<(&'a [f32], usize, usize), MetricsError> {
    match &ds.samples {
        Samples::Points {
            coords,
            shape: [n, d],
        } => {
            let n = (*n).min(cap);
            Ok((&coords[..n * d], n, *d))
        }
        Samples::Images { .. } => Err(MetricsError::Input(format!(
            "`{}` holds images, but `dataset_kind` is a 2-d mixture; check `dataset_kind`",
            what.display()
        ))),
    }
}

/// Pixels of a prepared file, capped at `cap` images.
fn images<'a>(
    ds: &'a Dataset,
    what: &Path,
    cap: usize,
) -> Result<(&'a [u8], [usize; 4]), MetricsError> {
    match &ds.samples {
        Samples::Images { pixels, shape } => {
            let n = shape[0].min(cap);
            let per = shape[1] * shape[2] * shape[3];
            Ok((&pixels[..n * per], [n, shape[1], shape[2], shape[3]]))
        }
        Samples::Points { .. } => Err(MetricsError::Input(format!(
            "`{}` holds points, but `dataset_kind` expects images; check `dataset_kind`",
            what.display()
        ))),
    }
}

/// Stacked MNIST samples as the classifier's 28×28 digits: `[n, 3, 28, 28]` as is, and larger
/// even-margin sizes (the `pad: 2` of the standard CNN's 32×32 input) cropped to their centre,
/// which undoes `prepare`'s zero padding exactly. The digit in each channel is what is counted.
fn classifier_view(pixels: &[u8], shape: [usize; 4], what: &Path) -> Result<Vec<u8>, MetricsError> {
    let side = classifier::IMAGE_SIDE;
    let [n, c, h, w] = shape;
    let margin = |s: usize| (s >= side && (s - side).is_multiple_of(2)).then(|| (s - side) / 2);
    let (Some(top), Some(left), 3) = (margin(h), margin(w), c) else {
        return Err(MetricsError::Input(format!(
            "`{}` has images of shape {:?}; stacked mnist needs [3, 28, 28], or [3, 28 + 2k, 28 + 2k] \
             (cropped to the centre 28×28)",
            what.display(),
            &shape[1..]
        )));
    };
    let mut out = Vec::with_capacity(n * c * side * side);
    for plane in pixels.chunks_exact(h * w) {
        for row in plane.chunks_exact(w).skip(top).take(side) {
            out.extend_from_slice(&row[left..left + side]);
        }
    }
    Ok(out)
}

/// PRDC between the first `prdc_samples` rows of two feature sets, each `(values, n, d)`.
fn prdc_on(
    real: (&[f32], usize, usize),
    fake: (&[f32], usize, usize),
    p: &EvaluateParams,
) -> Result<Metric<ManifoldMetrics>, MetricsError> {
    if real.2 != fake.2 {
        return Err(MetricsError::DimensionMismatch {
            what: "reference and sample features".to_string(),
            left: real.2,
            right: fake.2,
        });
    }
    let d = real.2;
    let (nr, nf) = (real.1.min(p.prdc_samples), fake.1.min(p.prdc_samples));
    let k = p.pr_k.max(p.dc_k);
    if nr <= k || nf <= k {
        return Ok(Metric::unavailable(format!(
            "prdc needs more than {k} samples in each set (have {nr} real, {nf} fake)"
        )));
    }
    let real = PointSet::new("reference features", &real.0[..nr * d], nr, d)?;
    let fake = PointSet::new("sample features", &fake.0[..nf * d], nf, d)?;
    Ok(Metric::Value(manifold_metrics(
        &real, &fake, p.pr_k, p.dc_k,
    )?))
}

/// KID's reference side from the first `kid_samples` of `n` feature rows of width `d`, or why
/// there is none.
fn kid_reference(
    values: &[f32],
    n: usize,
    d: usize,
    p: &EvaluateParams,
) -> Result<Result<KidReference, String>, MetricsError> {
    let m = n.min(p.kid_samples);
    if m < kid::MIN_SAMPLES {
        return Ok(Err(format!(
            "kid needs at least {} reference samples (have {m})",
            kid::MIN_SAMPLES
        )));
    }
    let set = PointSet::new("reference features", &values[..m * d], m, d)?;
    Ok(Ok(KidReference::new(set)?))
}

/// KID of the first `kid_samples` generated features `(values, n, d)` against `reference`.
fn kid_on(
    reference: &KidReference,
    fake: (&[f32], usize, usize),
    p: &EvaluateParams,
) -> Result<Metric<KidValue>, MetricsError> {
    let (values, n, d) = fake;
    let n = n.min(p.kid_samples);
    if n < kid::MIN_SAMPLES {
        return Ok(Metric::unavailable(format!(
            "kid needs at least {} generated samples (have {n})",
            kid::MIN_SAMPLES
        )));
    }
    let fake = PointSet::new("sample features", &values[..n * d], n, d)?;
    Ok(Metric::Value(KidValue {
        value: reference.kid(&fake)?,
        n_generated: n,
        n_reference: reference.len(),
    }))
}

/// Runs the evaluation described by `p` with the Inception network on `device`, reporting
/// progress through `progress(step, total, msg)`.
fn evaluate(
    p: &EvaluateParams,
    device: &Device,
    progress: &dyn Fn(u64, u64, &str),
) -> Result<Report, MetricsError> {
    let files = sample_files(&p.samples)?;
    let cap = p.max_samples.unwrap_or(usize::MAX);
    let mixture = mixture(p.dataset_kind)?;
    if p.dataset_kind == DatasetKind::Images
        && (p.inception_weights.is_none() || p.reference.is_none())
    {
        return Err(MetricsError::Input(
            "`dataset_kind: images` needs `inception_weights` and `reference`".to_string(),
        ));
    }

    let classifier = match (p.dataset_kind, &p.classifier) {
        (DatasetKind::StackedMnist, Some(path)) => Some((
            DigitClassifier::load(path, device)?,
            NetworkId {
                path: show(path),
                sha256: super::sha256_file(path)?,
            },
        )),
        (DatasetKind::StackedMnist, None) => {
            return Err(MetricsError::Input(
                "stacked-mnist needs `classifier`: the weights written by `train-classifier`"
                    .to_string(),
            ))
        }
        _ => None,
    };

    let images_eval = match p.dataset_kind {
        DatasetKind::Images | DatasetKind::StackedMnist => ImageEvaluator::new(
            p.inception_weights.as_deref(),
            p.reference.as_deref(),
            p,
            device,
            progress,
        )?,
        _ => None,
    };

    // Ring and grid compare raw coordinates with the reference set when one is given.
    let reference_points = match (&mixture, &p.reference) {
        (Some(_), Some(path)) => Some(super::load_prepared(path)?),
        _ => None,
    };

    let mut rows = Vec::with_capacity(files.len());
    let total = files.len() as u64;
    for (i, (label, iteration, path)) in files.iter().enumerate() {
        progress(i as u64, total, &format!("evaluating `{}`", path.display()));
        let ds = super::load_prepared(path)?;
        let mut row = Row {
            label: label.clone(),
            iteration: *iteration,
            n_samples: ds.len().min(cap),
            modes: None,
            stacked_mnist: None,
            fid: None,
            inception_score: None,
            prdc: None,
            kid: None,
        };
        if let Some(mixture) = &mixture {
            let (coords, n, d) = points(&ds, path, cap)?;
            if d != mixture.dim {
                return Err(MetricsError::DimensionMismatch {
                    what: format!(
                        "`{}` against the {:?} mixture",
                        path.display(),
                        p.dataset_kind
                    ),
                    left: d,
                    right: mixture.dim,
                });
            }
            row.modes = Some(mixture.evaluate(coords)?);
            if let Some(reference) = &reference_points {
                let (rc, rn, rd) = points(
                    reference,
                    p.reference.as_deref().unwrap_or(path),
                    p.reference_samples.unwrap_or(usize::MAX),
                )?;
                row.prdc = Some(prdc_on((rc, rn, rd), (coords, n, d), p)?);
            }
        }
        if let Some((net, _)) = &classifier {
            let (pixels, shape) = images(&ds, path, cap)?;
            let digits = classifier_view(pixels, shape, path)?;
            // NCHW: the 784 pixels of sample i, channel c, are the (3i + c)-th image, so the
            // predictions come out as consecutive triples.
            let digits = net.predict(&digits)?;
            row.stacked_mnist = Some(stacked_mnist_modes(&digits)?);
        }
        if let Some(eval) = &images_eval {
            if p.image_rows == ImageRows::Final && label != "final" {
                const SKIPPED: &str = "`image_rows: final`: the final row only";
                row.fid = Some(Metric::unavailable(SKIPPED));
                row.inception_score = Some(Metric::unavailable(SKIPPED));
                row.prdc = Some(Metric::unavailable(SKIPPED));
                row.kid = Some(Metric::unavailable(SKIPPED));
            } else {
                let (pixels, shape) = images(&ds, path, cap)?;
                let (pixels, shape) = image_view(pixels, shape, p, path)?;
                let m = eval.evaluate(&pixels, shape, p, progress)?;
                row.fid = Some(m.fid);
                row.inception_score = Some(m.inception_score);
                row.prdc = Some(m.prdc);
                row.kid = Some(m.kid);
            }
        }
        rows.push(row);
    }
    progress(total, total, "evaluated");

    Ok(Report {
        evaluate_version: VERSION,
        dataset_kind: p.dataset_kind,
        samples: show(&p.samples),
        reference: p.reference.as_deref().map(show),
        n_reference: match (&reference_points, &images_eval) {
            (Some(ds), _) => Some(ds.len().min(p.reference_samples.unwrap_or(usize::MAX))),
            (None, Some(eval)) => eval.n_reference(),
            _ => None,
        },
        feature_net: images_eval.as_ref().map(|e| e.network_id()),
        classifier: classifier.map(|(_, id)| id),
        prdc_samples: p.prdc_samples,
        kid_samples: p.kid_samples,
        last: rows.last().cloned(),
        rows,
    })
}

fn show(path: &Path) -> String {
    path.display().to_string()
}

/// The `evaluate` builtin.
pub const BUILTIN: &dyn Builtin = &Kind::<EvaluateParams> {
    kind: "evaluate",
    version: VERSION,
    summary: "FID, KID, IS, precision/recall/density/coverage and mode counts of generated samples",
    run: run_evaluate,
};

fn run_evaluate(ctx: &Context, p: EvaluateParams) -> Result<(), StageError> {
    if p.prdc_samples == 0
        || p.pr_k == 0
        || p.dc_k == 0
        || p.is_splits == 0
        || p.batch_size == Some(0)
    {
        return Err(StageError::Params {
            kind: ctx.kind().to_string(),
            message:
                "`prdc_samples`, `pr_k`, `dc_k`, `is_splits` and `batch_size` must be at least 1"
                    .to_string(),
        });
    }
    if p.kid_samples < kid::MIN_SAMPLES {
        return Err(StageError::Params {
            kind: ctx.kind().to_string(),
            message: format!(
                "`kid_samples` must be at least {}: the unbiased estimate needs a pair",
                kid::MIN_SAMPLES
            ),
        });
    }
    let device = stage_device(ctx, &p.device)?;
    let report = evaluate(&p, &device, &|step, total, msg| {
        ctx.progress(step, total, msg)
    })
    .map_err(StageError::domain)?;
    super::write_json(&p.metrics, &report).map_err(StageError::domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(kind: &str, params: serde_json::Value) -> Result<(), StageError> {
        let ctx = Context::new(kind, params.as_object().cloned().unwrap_or_default());
        crate::REGISTRY.lookup(kind).expect("registered").run(&ctx)
    }

    /// On a build without the `cuda` feature, `device: cuda` fails before any file is read, as a
    /// params error naming the key and the way out; a device that is no device says the choices.
    #[test]
    #[cfg(not(feature = "cuda"))]
    fn metrics_stages_refuse_a_device_they_cannot_have() {
        let evaluate = serde_json::json!({
            "samples": "missing/samples", "dataset_kind": "images", "reference": "r.npz",
            "inception_weights": "w.safetensors", "device": "cuda"
        });
        let fid_stats = serde_json::json!({
            "images": "missing.safetensors", "inception_weights": "w.safetensors",
            "out": "ref.npz", "device": "cuda"
        });
        for (kind, params) in [("evaluate", evaluate), ("fid-stats", fid_stats)] {
            let err = run_with(kind, params.clone()).unwrap_err();
            let msg = err.to_string();
            assert!(err.is_params(), "{kind}: {msg}");
            assert!(
                msg.contains(&format!("`{kind}`"))
                    && msg.contains("key `device`: device `cuda` cannot be used")
                    && msg.contains("built without the `cuda` feature"),
                "{kind}: {msg}"
            );
            let mut bad = params;
            bad["device"] = "gpu".into();
            let msg = run_with(kind, bad).unwrap_err().to_string();
            assert!(
                msg.contains("device `gpu`") && msg.contains("expected `cpu`, `cuda`"),
                "{kind}: {msg}"
            );
        }
    }
}
