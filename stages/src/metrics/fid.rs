//! Fréchet Inception Distance from Gaussian statistics, in f64.
//!
//! Statistics follow pytorch-fid/TTUR (metrics.md §3): μ is the column mean and Σ the
//! *unbiased* (N−1) covariance of the features, both in f64. The distance is
//! `‖μ₁−μ₂‖² + Tr Σ₁ + Tr Σ₂ − 2 Tr √(Σ₁Σ₂)`, where the last trace is computed from
//! eigenvalues rather than `scipy.linalg.sqrtm`: the eigenvalues of Σ₁Σ₂ are those of a
//! symmetric PSD matrix, so `Tr √(Σ₁Σ₂) = Σᵢ √max(λᵢ, 0)` (see `trace_sqrt` for how, and why not
//! faer's generic eigensolver). That is real-valued and stable where sqrtm produces complex
//! noise; in exact arithmetic it equals the sqrtm trace, and the test fixture checks it against
//! pytorch-fid's sqrtm formula to 1e-6 relative, full-rank and rank-deficient.
//!
//! Clamping: negative eigenvalues are rounding noise of PSD matrices and count as 0. If the
//! iteration still fails or gives a non-finite value, 1e-6 is added to both diagonals
//! (pytorch-fid's fallback) and [`FrechetDetail::eps_added`] says so; callers log it.
//!
//! Stats files use pytorch-fid's npz layout (`mu` [d], `sigma` [d, d], f64), so reference
//! statistics can be exchanged with it in both directions.

use std::path::Path;

use faer::Mat;

use super::npy::{read_npz_members, write_npz, NpyRef};
use super::MetricsError;

/// Gaussian statistics of a feature set.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub mu: Vec<f64>,
    /// `d x d`, row-major.
    pub sigma: Vec<f64>,
    /// Samples the statistics came from (0 when unknown, e.g. loaded from an npz).
    pub n: usize,
}

/// The distance plus how it was obtained.
#[derive(Debug, Clone, PartialEq)]
pub struct FrechetDetail {
    pub fid: f64,
    pub mean_term: f64,
    pub trace_sqrt: f64,
    /// `Some(1e-6)` when the diagonal fallback fired.
    pub eps_added: Option<f64>,
}

/// The diagonal offset of the fallback, as in pytorch-fid.
pub const FALLBACK_EPS: f64 = 1e-6;

impl Stats {
    /// μ and unbiased Σ of `n` feature rows of width `d` (row-major).
    pub fn from_features(features: &[f32], n: usize, d: usize) -> Result<Self, MetricsError> {
        if features.len() != n * d {
            return Err(MetricsError::Input(format!(
                "{} feature values do not make {n} rows of {d}",
                features.len()
            )));
        }
        if n < 2 {
            return Err(MetricsError::Input(format!(
                "FID statistics need at least 2 samples, got {n}"
            )));
        }
        let mut mu = vec![0.0f64; d];
        for row in features.chunks_exact(d) {
            for (m, &v) in mu.iter_mut().zip(row) {
                *m += f64::from(v);
            }
        }
        mu.iter_mut().for_each(|m| *m /= n as f64);
        // Centered data as a d x n matrix, then Σ = X Xᵀ / (n − 1) with faer's matmul.
        let x = Mat::from_fn(d, n, |i, j| f64::from(features[j * d + i]) - mu[i]);
        let cov = &x * x.transpose();
        let scale = 1.0 / (n as f64 - 1.0);
        let sigma = (0..d * d).map(|k| cov[(k / d, k % d)] * scale).collect();
        Ok(Stats { mu, sigma, n })
    }

    pub fn dim(&self) -> usize {
        self.mu.len()
    }

    /// Writes pytorch-fid's layout: `mu` and `sigma` as f64 `.npy` members of a zip, plus `n`.
    pub fn save_npz(&self, path: &Path) -> Result<(), MetricsError> {
        self.save_npz_with(path, &[])
    }

    /// [`Stats::save_npz`] with `extra` members after `n` (`fid-stats` adds KID `features`).
    /// Without extras the bytes are exactly `save_npz`'s.
    pub fn save_npz_with(
        &self,
        path: &Path,
        extra: &[(&str, NpyRef<'_>)],
    ) -> Result<(), MetricsError> {
        let d = self.dim();
        let (vector, matrix, n) = ([d], [d, d], [self.n as f64]);
        let mut members = vec![
            (
                "mu",
                NpyRef::F64 {
                    shape: &vector,
                    data: &self.mu,
                },
            ),
            (
                "sigma",
                NpyRef::F64 {
                    shape: &matrix,
                    data: &self.sigma,
                },
            ),
            // Not in pytorch-fid's files, and ignored by it: how many images the
            // statistics summarize, so a FID row can say so.
            (
                "n",
                NpyRef::F64 {
                    shape: &[],
                    data: &n,
                },
            ),
        ];
        members.extend_from_slice(extra);
        write_npz(path, &members)
    }

    /// Reads an npz with `mu` [d] and `sigma` [d, d] (f32 or f64), e.g. from pytorch-fid.
    /// Other members (`fid-stats`' KID `features`) are not read.
    pub fn load_npz(path: &Path) -> Result<Self, MetricsError> {
        let mut arrays = read_npz_members(path, &|name| matches!(name, "mu" | "sigma" | "n"))?;
        let bad = |message: String| MetricsError::Npz {
            path: path.to_path_buf(),
            message,
        };
        let mu = arrays
            .remove("mu")
            .ok_or_else(|| bad("no `mu` array".into()))?;
        let sigma = arrays
            .remove("sigma")
            .ok_or_else(|| bad("no `sigma` array".into()))?;
        let d = mu.data.len();
        if mu.shape.len() != 1 || sigma.shape != [d, d] {
            return Err(bad(format!(
                "`mu` has shape {:?} and `sigma` {:?}; expected [d] and [d, d]",
                mu.shape, sigma.shape
            )));
        }
        // `n` is ours (see `save_npz`); pytorch-fid's files have none: 0 means unknown.
        let n = match arrays.remove("n") {
            Some(a) if a.shape.is_empty() && a.data.len() == 1 && a.data[0] >= 0.0 => {
                a.data[0] as usize
            }
            _ => 0,
        };
        Ok(Stats {
            mu: mu.data,
            sigma: sigma.data,
            n,
        })
    }
}

/// FID between two sets of statistics.
pub fn frechet_distance(a: &Stats, b: &Stats) -> Result<f64, MetricsError> {
    frechet_distance_detail(a, b).map(|d| d.fid)
}

/// FID with its terms and whether the diagonal fallback fired.
pub fn frechet_distance_detail(a: &Stats, b: &Stats) -> Result<FrechetDetail, MetricsError> {
    let d = a.dim();
    if b.dim() != d || a.sigma.len() != d * d || b.sigma.len() != d * d {
        return Err(MetricsError::Input(format!(
            "statistics of different widths: {} and {}",
            a.dim(),
            b.dim()
        )));
    }
    let all = a.mu.iter().chain(&b.mu).chain(&a.sigma).chain(&b.sigma);
    if all.clone().any(|v| !v.is_finite()) {
        return Err(MetricsError::Input(
            "statistics contain NaN or infinite values".into(),
        ));
    }
    let mean_term: f64 = a.mu.iter().zip(&b.mu).map(|(x, y)| (x - y) * (x - y)).sum();
    let trace = |s: &[f64]| (0..d).map(|i| s[i * d + i]).sum::<f64>();
    let (tr_a, tr_b) = (trace(&a.sigma), trace(&b.sigma));
    let (trace_sqrt, eps_added) = match trace_sqrt_product(&a.sigma, &b.sigma, d, 0.0) {
        Some(t) => (t, None),
        None => {
            let t = trace_sqrt_product(&a.sigma, &b.sigma, d, FALLBACK_EPS).ok_or_else(|| {
                MetricsError::Linalg(
                    "Tr sqrt(sigma1 sigma2) is not finite even with 1e-6 added to the diagonals"
                        .into(),
                )
            })?;
            (t, Some(FALLBACK_EPS))
        }
    };
    // pytorch-fid keeps the traces of the original matrices even when the fallback fired.
    let fid = mean_term + tr_a + tr_b - 2.0 * trace_sqrt;
    Ok(FrechetDetail {
        fid,
        mean_term,
        trace_sqrt,
        eps_added,
    })
}

/// `Tr √(Σ₁Σ₂)` with `eps` on both diagonals; `None` when not finite.
fn trace_sqrt_product(s1: &[f64], s2: &[f64], d: usize, eps: f64) -> Option<f64> {
    // Symmetrize: covariances written by other tools can differ from their transpose in the
    // last bit.
    let sym = |s: &[f64]| -> Vec<f64> {
        (0..d * d)
            .map(|k| {
                let (i, j) = (k / d, k % d);
                0.5 * (s[i * d + j] + s[j * d + i]) + if i == j { eps } else { 0.0 }
            })
            .collect()
    };
    super::trace_sqrt::trace_sqrt_product(&sym(s1), &sym(s2), d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(mu: Vec<f64>, diag: &[f64]) -> Stats {
        let d = diag.len();
        let mut sigma = vec![0.0; d * d];
        for (i, v) in diag.iter().enumerate() {
            sigma[i * d + i] = *v;
        }
        Stats { mu, sigma, n: 0 }
    }

    #[test]
    fn identity_covariances_give_squared_mean_distance() {
        // pytorch-fid's own oracle: mu 0 vs 1 in 2048-d, Σ = I, FID = 2048. A smaller d keeps it
        // fast; the identity is the same.
        let d = 256;
        let a = diag(vec![0.0; d], &vec![1.0; d]);
        let b = diag(vec![1.0; d], &vec![1.0; d]);
        let fid = frechet_distance(&a, &b).unwrap();
        assert!((fid - d as f64).abs() < 1e-9, "{fid}");
    }

    #[test]
    fn diagonal_covariances_follow_the_closed_form() {
        let a = diag(vec![1.0, 2.0, 3.0], &[4.0, 9.0, 1.0]);
        let b = diag(vec![0.0, 2.0, 5.0], &[1.0, 4.0, 16.0]);
        let want = 1.0 + 0.0 + 4.0 + (2.0f64 - 1.0).powi(2) + (3.0f64 - 2.0).powi(2) + 9.0;
        let fid = frechet_distance(&a, &b).unwrap();
        assert!((fid - want).abs() < 1e-9, "{fid} vs {want}");
    }

    #[test]
    fn statistics_are_unbiased_and_self_distance_is_zero() {
        let feats = [1.0f32, 2.0, 3.0, 6.0, 5.0, 4.0];
        let s = Stats::from_features(&feats, 3, 2).unwrap();
        assert_eq!(s.mu, vec![3.0, 4.0]);
        // x: 1,3,5 -> var 4; y: 2,6,4 -> var 4; cov((1,3,5),(2,6,4)) = (−2·−2 + 0 + 2·0)/2 = 2
        assert_eq!(s.sigma, vec![4.0, 2.0, 2.0, 4.0]);
        assert!(frechet_distance(&s, &s).unwrap().abs() < 1e-9);
        assert!(Stats::from_features(&feats[..2], 1, 2).is_err());
    }
}
