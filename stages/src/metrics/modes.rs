//! Mode-collapse counts: the 2-D ring and grid mixtures (PacGAN / VEEGAN protocol) and
//! Stacked MNIST's 1,000 digit triples.
//!
//! What this module decides, following `shared/reference/metrics.md` §6 (PacGAN's
//! `MetricLogger` and `stacked_MNIST_experiments/*/model.py`):
//!
//! - A generated point belongs to the mode whose mean is nearest in σ-normalized distance
//!   √Σ dᵢ²/σᵢ². It is *high quality* when that distance is strictly below 3 (`dis_thre=3`).
//! - **Modes captured** = modes with at least one high-quality point; **high-quality share** =
//!   high-quality points / all points.
//! - **Reverse KL** = KL(p̂ ‖ U) = Σ p̂ₘ ln(p̂ₘ · M) over the modes with p̂ₘ > 0, where U is uniform
//!   over the M modes. For Stacked MNIST p̂ is the histogram of every sample's classified triple
//!   (PacGAN's code). For ring and grid, p̂ is the histogram of the *high-quality* points over
//!   modes: PacGAN's 2-D logger counts only high-quality points per mode and writes no KL
//!   column, so taking the same histogram is our (documented) inference. With no high-quality
//!   point the KL is undefined and reported as `None`.
//!
//! The threshold (3 σ), the strict `<`, and the histograms the KL is taken over must never change
//! silently: each moves the reported numbers and must bump the `evaluate` builtin's version.

use serde::Serialize;

use super::MetricsError;

/// Points within this many standard deviations of their nearest mode are high quality.
pub const HIGH_QUALITY_STD: f64 = 3.0;

/// The number of Stacked MNIST modes: one per digit triple.
pub const STACKED_MNIST_MODES: usize = 1000;

/// A mixture of isotropic Gaussians whose components are the modes to find.
#[derive(Debug, Clone, PartialEq)]
pub struct Mixture {
    /// Component means, row-major, `dim` values each.
    pub means: Vec<f64>,
    /// Dimension of the space.
    pub dim: usize,
    /// Per-coordinate standard deviation shared by every component.
    pub sigma: f64,
}

/// Mode statistics of a set of generated points against a [`Mixture`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MixtureModes {
    /// Modes with at least one high-quality point.
    pub modes_captured: usize,
    /// Modes in the mixture.
    pub modes_total: usize,
    /// High-quality points / all points, in [0, 1].
    pub high_quality_share: f64,
    /// KL(p̂ ‖ U) of the high-quality points' mode histogram, `None` without such points.
    pub reverse_kl: Option<f64>,
    /// Points evaluated.
    pub n_samples: usize,
    /// Points within the threshold of their nearest mode.
    pub n_high_quality: usize,
    /// High-quality points per mode, in the order of the mixture's means.
    pub counts: Vec<u64>,
    /// The threshold used, in standard deviations.
    pub threshold_std: f64,
}

impl Mixture {
    /// Checks the means and σ.
    pub fn new(means: Vec<f64>, dim: usize, sigma: f64) -> Result<Self, MetricsError> {
        if dim == 0 || means.is_empty() || !means.len().is_multiple_of(dim) {
            return Err(MetricsError::Input(format!(
                "mixture means: {} values do not form rows of dimension {dim}",
                means.len()
            )));
        }
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(MetricsError::Input(format!(
                "mixture sigma must be positive, got {sigma}"
            )));
        }
        Ok(Mixture { means, dim, sigma })
    }

    /// Number of modes.
    pub fn len(&self) -> usize {
        self.means.len() / self.dim
    }

    /// Whether the mixture has no modes (never true for a checked mixture).
    pub fn is_empty(&self) -> bool {
        self.means.is_empty()
    }

    /// Assigns each of the `points` (row-major, `self.dim` wide) to its nearest mode and counts.
    pub fn evaluate(&self, points: &[f32]) -> Result<MixtureModes, MetricsError> {
        if !points.len().is_multiple_of(self.dim) {
            return Err(MetricsError::Shape {
                what: "generated points".to_string(),
                shape: format!("[N, {}]", self.dim),
                expected: points.len() - points.len() % self.dim,
                found: points.len(),
            });
        }
        let n = points.len() / self.dim;
        let mut counts = vec![0u64; self.len()];
        let mut n_high_quality = 0usize;
        for (index, point) in points.chunks_exact(self.dim).enumerate() {
            if point.iter().any(|v| !v.is_finite()) {
                return Err(MetricsError::NonFinite {
                    what: "generated points".to_string(),
                    index: index * self.dim,
                });
            }
            let (mode, sq) = self
                .means
                .chunks_exact(self.dim)
                .map(|mean| {
                    mean.iter()
                        .zip(point)
                        .map(|(m, &p)| (f64::from(p) - m).powi(2))
                        .sum::<f64>()
                })
                .enumerate()
                .fold(
                    (0, f64::INFINITY),
                    |best, (i, sq)| if sq < best.1 { (i, sq) } else { best },
                );
            // Isotropic σ: the normalized distance is the Euclidean one over σ.
            if sq.sqrt() / self.sigma < HIGH_QUALITY_STD {
                counts[mode] += 1;
                n_high_quality += 1;
            }
        }
        Ok(MixtureModes {
            modes_captured: counts.iter().filter(|&&c| c > 0).count(),
            modes_total: self.len(),
            high_quality_share: if n == 0 {
                0.0
            } else {
                n_high_quality as f64 / n as f64
            },
            reverse_kl: kl_to_uniform(&counts),
            n_samples: n,
            n_high_quality,
            counts,
            threshold_std: HIGH_QUALITY_STD,
        })
    }
}

/// KL(p̂ ‖ U) for the histogram `counts` against the uniform distribution over its bins,
/// skipping empty bins (their term is 0 · ln 0 = 0). `None` when every bin is empty.
pub fn kl_to_uniform(counts: &[u64]) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let bins = counts.len() as f64;
    let total = total as f64;
    Some(
        counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / total;
                p * (p * bins).ln()
            })
            .sum(),
    )
}

/// Mode statistics of Stacked MNIST samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StackedMnistModes {
    /// Distinct digit triples seen, out of 1,000.
    pub modes_captured: usize,
    /// Always 1,000.
    pub modes_total: usize,
    /// KL(p̂ ‖ U₁₀₀₀) of the triple histogram.
    pub reverse_kl: f64,
    /// Samples classified.
    pub n_samples: usize,
}

/// Counts the modes of Stacked MNIST samples from the digit predicted for each channel:
/// `digits` holds three predictions per sample, channel order, each in 0..10.
pub fn stacked_mnist_modes(digits: &[u8]) -> Result<StackedMnistModes, MetricsError> {
    if digits.is_empty() || !digits.len().is_multiple_of(3) {
        return Err(MetricsError::Input(format!(
            "stacked mnist predictions: need three digits per sample, got {} values",
            digits.len()
        )));
    }
    let mut counts = vec![0u64; STACKED_MNIST_MODES];
    for triple in digits.chunks_exact(3) {
        if let Some(bad) = triple.iter().find(|&&d| d > 9) {
            return Err(MetricsError::Input(format!(
                "stacked mnist prediction {bad} is not a digit"
            )));
        }
        let mode =
            usize::from(triple[0]) * 100 + usize::from(triple[1]) * 10 + usize::from(triple[2]);
        counts[mode] += 1;
    }
    Ok(StackedMnistModes {
        modes_captured: counts.iter().filter(|&&c| c > 0).count(),
        modes_total: STACKED_MNIST_MODES,
        reverse_kl: kl_to_uniform(&counts).unwrap_or(0.0),
        n_samples: digits.len() / 3,
    })
}
