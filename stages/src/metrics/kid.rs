//! Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs"), in f64.
//!
//! KID is the squared maximum mean discrepancy between the real features X (m × d) and the
//! generated features Y (n × d) under the cubic polynomial kernel
//!
//! ```text
//! k(a, b) = (aᵀb / d + 1)³,      d = the feature width (2048 for Inception pool3),
//! ```
//!
//! estimated with the **unbiased** U-statistic (`shared/reference/metrics.md`, "KID"):
//!
//! ```text
//! KID = mean_{i≠j} k(xᵢ, xⱼ) + mean_{i≠j} k(yᵢ, yⱼ) − 2 · mean_{i,j} k(xᵢ, yⱼ).
//! ```
//!
//! Why unbiased: the plain (V-statistic) estimate keeps the diagonal terms k(xᵢ, xᵢ), whose
//! expectation is not that of a pair of distinct samples, so it overstates MMD² by O(1/m + 1/n)
//! and the number depends on the sample count, as FID's does. Without the diagonal the
//! expectation is the population MMD² for any m, n ≥ 2, which is what lets KID compare runs
//! evaluated on a few hundred images. The price: for two sets from the same distribution the
//! estimate scatters around 0 and is **negative about half the time**. That is correct and must
//! not be clamped, or the estimator is biased again.
//!
//! What must never change silently, because each moves every KID (bump `evaluate`'s version):
//! - the kernel: degree 3, offset 1, scale 1/d with d the feature width;
//! - the estimator: diagonal terms excluded from both within-set means, all m·n cross pairs in
//!   the cross mean;
//! - which samples: all rows given, in one estimate. torch-fidelity instead averages over 100
//!   random subsets of 1000 and reports mean ± std; the expectation is the same, the digits are
//!   not, and there is no subset sampling here. Callers choose the rows (`evaluate` keeps the
//!   *first* `kid_samples` of each set);
//! - the value is raw MMD², not the ×10³ some papers print.
//!
//! Computation: the dot products come from faer's GEMM in f64 on blocks of [`BLOCK_ROWS`] rows
//! of the left set, each reduced at once to a sum of kernel values (never the whole m × m
//! matrix: 10 000 reference rows would be 800 MB). The within-set sum uses symmetry, so only
//! the blocks' columns right of the diagonal are multiplied. Rayon spreads the blocks over
//! threads; each GEMM runs sequentially and the block sums are added in block order, so the
//! value does not depend on the thread count. The within-reference term does not depend on the
//! generated set: [`KidReference`] computes it once and reuses it for every generated set, which
//! is what `evaluate` does across the rows of a run.
//!
//! The fixture `stages/tests/fixtures/kid/` (made by `scripts/fixtures/kid_fixture.py`) holds a
//! numpy float64 implementation's value; the test requires 1e-9 relative agreement.

use rayon::prelude::*;

use super::prdc::PointSet;
use super::MetricsError;

/// Rows of the left set handled together in one GEMM call.
pub const BLOCK_ROWS: usize = 256;

/// The fewest samples per set the unbiased estimator is defined for (it needs a pair i ≠ j).
pub const MIN_SAMPLES: usize = 2;

/// The estimate with its three terms, so a difference can be traced to one of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KidTerms {
    /// `mean_{i≠j} k(xᵢ, xⱼ)` over the real set.
    pub real_real: f64,
    /// `mean_{i≠j} k(yᵢ, yⱼ)` over the generated set.
    pub fake_fake: f64,
    /// `mean_{i,j} k(xᵢ, yⱼ)`.
    pub real_fake: f64,
    /// Real samples used (m).
    pub n_real: usize,
    /// Generated samples used (n).
    pub n_fake: usize,
}

impl KidTerms {
    /// The unbiased MMD²: `real_real + fake_fake − 2 · real_fake`.
    pub fn value(&self) -> f64 {
        self.real_real + self.fake_fake - 2.0 * self.real_fake
    }
}

/// A real feature set with its within-set kernel mean computed once.
pub struct KidReference {
    set: PointSet,
    real_real: f64,
}

impl KidReference {
    /// Computes the within-set term of `real` (the expensive m² part); fails with
    /// [`MetricsError::NotEnoughSamples`] below [`MIN_SAMPLES`] rows.
    pub fn new(real: PointSet) -> Result<Self, MetricsError> {
        let real_real = within_mean(&real, "real features")?;
        Ok(KidReference {
            set: real,
            real_real,
        })
    }

    /// Real samples (m).
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether the set is empty (never, once constructed).
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// KID of `fake` against this reference, with its terms.
    pub fn terms(&self, fake: &PointSet) -> Result<KidTerms, MetricsError> {
        check_dims(&self.set, fake)?;
        let fake_fake = within_mean(fake, "generated features")?;
        let real_fake = cross_sum(&self.set, fake) / (self.set.len() as f64 * fake.len() as f64);
        Ok(KidTerms {
            real_real: self.real_real,
            fake_fake,
            real_fake,
            n_real: self.set.len(),
            n_fake: fake.len(),
        })
    }

    /// KID of `fake` against this reference.
    pub fn kid(&self, fake: &PointSet) -> Result<f64, MetricsError> {
        self.terms(fake).map(|t| t.value())
    }
}

/// KID between `real` (m × d) and `fake` (n × d), with its terms.
pub fn kid_terms(real: &PointSet, fake: &PointSet) -> Result<KidTerms, MetricsError> {
    check_dims(real, fake)?;
    let real_real = within_mean(real, "real features")?;
    let fake_fake = within_mean(fake, "generated features")?;
    let real_fake = cross_sum(real, fake) / (real.len() as f64 * fake.len() as f64);
    Ok(KidTerms {
        real_real,
        fake_fake,
        real_fake,
        n_real: real.len(),
        n_fake: fake.len(),
    })
}

/// KID between `real` (m × d) and `fake` (n × d): the unbiased squared MMD under the cubic
/// polynomial kernel (see the module doc). Needs m, n ≥ 2 and equal widths.
pub fn kernel_inception_distance(real: &PointSet, fake: &PointSet) -> Result<f64, MetricsError> {
    kid_terms(real, fake).map(|t| t.value())
}

fn check_dims(real: &PointSet, fake: &PointSet) -> Result<(), MetricsError> {
    if real.dim() != fake.dim() {
        return Err(MetricsError::DimensionMismatch {
            what: "kid: real and generated features".to_string(),
            left: real.dim(),
            right: fake.dim(),
        });
    }
    Ok(())
}

/// The kernel on a dot product already divided by d.
#[inline]
fn kernel(scaled_dot: f64) -> f64 {
    let t = scaled_dot + 1.0;
    t * t * t
}

/// `(x rows start..start + rows) · (y rows col_start..)ᵀ / d`, row-major, `rows × (y.n − col_start)`.
fn scaled_gram(
    x: &PointSet,
    start: usize,
    rows: usize,
    y: &PointSet,
    col_start: usize,
) -> Vec<f64> {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, MatMut, MatRef, Par};

    let d = x.dim();
    let cols = y.len() - col_start;
    let mut out = vec![0.0f64; rows * cols];
    let lhs = MatRef::from_row_major_slice(&x.values()[start * d..(start + rows) * d], rows, d);
    let rhs = MatRef::from_row_major_slice(&y.values()[col_start * d..], cols, d).transpose();
    // Sequential inside a block: rayon runs one block per thread, and a fixed summation order
    // keeps the value identical whatever the thread count.
    matmul(
        MatMut::from_row_major_slice_mut(&mut out, rows, cols),
        Accum::Replace,
        lhs,
        rhs,
        1.0 / d as f64,
        Par::Seq,
    );
    out
}

/// `mean_{i≠j} k(sᵢ, sⱼ)`: twice the sum over i < j, divided by n(n − 1).
fn within_mean(set: &PointSet, what: &str) -> Result<f64, MetricsError> {
    let n = set.len();
    if n < MIN_SAMPLES {
        return Err(MetricsError::NotEnoughSamples {
            what: format!("kid: {what}"),
            n,
            min: MIN_SAMPLES,
        });
    }
    // Block (start, rows) multiplies its rows by the columns from `start` on; in row r (global
    // start + r) the pairs j > i are the columns right of local column r.
    let sums: Vec<f64> = super::row_blocks(n, BLOCK_ROWS)
        .into_par_iter()
        .map(|(start, rows)| {
            let cols = n - start;
            let gram = scaled_gram(set, start, rows, set, start);
            gram.chunks_exact(cols)
                .enumerate()
                .map(|(r, row)| row[r + 1..].iter().map(|&g| kernel(g)).sum::<f64>())
                .sum::<f64>()
        })
        .collect();
    let upper: f64 = sums.iter().sum();
    Ok(2.0 * upper / (n as f64 * (n as f64 - 1.0)))
}

/// `Σ_{i,j} k(xᵢ, yⱼ)`.
fn cross_sum(x: &PointSet, y: &PointSet) -> f64 {
    let m = y.len();
    let sums: Vec<f64> = super::row_blocks(x.len(), BLOCK_ROWS)
        .into_par_iter()
        .map(|(start, rows)| {
            scaled_gram(x, start, rows, y, 0)
                .chunks_exact(m)
                .map(|row| row.iter().map(|&g| kernel(g)).sum::<f64>())
                .sum::<f64>()
        })
        .collect();
    sums.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(values: &[f32], d: usize) -> PointSet {
        PointSet::new("test", values, values.len() / d, d).expect("valid set")
    }

    /// The definition, one pair at a time, in f64.
    fn naive(x: &[f32], y: &[f32], d: usize) -> f64 {
        let k = |a: &[f32], b: &[f32]| {
            let dot: f64 = a
                .iter()
                .zip(b)
                .map(|(&p, &q)| f64::from(p) * f64::from(q))
                .sum();
            (dot / d as f64 + 1.0).powi(3)
        };
        let (xs, ys): (Vec<&[f32]>, Vec<&[f32]>) = (x.chunks(d).collect(), y.chunks(d).collect());
        let within = |s: &[&[f32]]| {
            let n = s.len() as f64;
            let mut t = 0.0;
            for (i, a) in s.iter().enumerate() {
                for (j, b) in s.iter().enumerate() {
                    if i != j {
                        t += k(a, b);
                    }
                }
            }
            t / (n * (n - 1.0))
        };
        let mut cross = 0.0;
        for a in &xs {
            for b in &ys {
                cross += k(a, b);
            }
        }
        within(&xs) + within(&ys) - 2.0 * cross / (xs.len() * ys.len()) as f64
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        // A small LCG: deterministic, no dependency, values in [0, 1).
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32
            })
            .collect()
    }

    #[test]
    fn blocks_and_symmetry_agree_with_the_pairwise_definition() {
        // More rows than one block, so the diagonal and off-diagonal blocks are both exercised.
        let d = 7;
        let (m, n) = (BLOCK_ROWS + 37, 300);
        let x = pseudo_random(m * d, 1);
        let y: Vec<f32> = pseudo_random(n * d, 2).iter().map(|v| 1.3 * v).collect();
        let want = naive(&x, &y, d);
        let got = kernel_inception_distance(&set(&x, d), &set(&y, d)).expect("kid");
        assert!((got - want).abs() <= 1e-12 * want.abs(), "{got} vs {want}");
        let reference = KidReference::new(set(&x, d)).expect("reference");
        assert_eq!(reference.kid(&set(&y, d)).expect("kid"), got);
    }

    #[test]
    fn two_points_per_set_by_hand() {
        // d = 1: k(a, b) = (ab + 1)³. X = {0, 1}, Y = {1, 2}.
        // within X: k(0,1) = 1; within Y: k(1,2) = 27; cross: k(0,1)=1, k(0,2)=1, k(1,1)=8,
        // k(1,2)=27 → mean 37/4. KID = 1 + 27 − 2·37/4 = 9.5.
        let got = kernel_inception_distance(&set(&[0.0, 1.0], 1), &set(&[1.0, 2.0], 1));
        assert_eq!(got.expect("kid"), 9.5);
    }

    #[test]
    fn rejects_too_few_samples_and_mismatched_widths() {
        let one = set(&[1.0, 2.0], 2);
        let two = set(&[1.0, 2.0, 3.0, 4.0], 2);
        for (a, b) in [(&one, &two), (&two, &one)] {
            assert!(matches!(
                kernel_inception_distance(a, b),
                Err(MetricsError::NotEnoughSamples { n: 1, min: 2, .. })
            ));
        }
        assert!(matches!(
            KidReference::new(set(&[1.0, 2.0], 2)),
            Err(MetricsError::NotEnoughSamples { .. })
        ));
        let wide = set(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3);
        assert!(matches!(
            kernel_inception_distance(&two, &wide),
            Err(MetricsError::DimensionMismatch {
                left: 2,
                right: 3,
                ..
            })
        ));
    }
}
