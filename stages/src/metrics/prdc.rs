//! Manifold metrics on feature vectors: improved precision/recall (Kynkäänniemi et al. 2019)
//! and precision/recall/density/coverage (Naeem et al. 2020).
//!
//! Both estimate the support of a set as the union of balls around its points, each ball's
//! radius being the distance to the point's k-th nearest neighbour *within the same set, not
//! counting itself* (the (k+1)-th smallest distance of its row, self included, as the `prdc`
//! package's `get_kth_value(..., k + 1)` and torch-fidelity's `kthvalue(k + 1)` take it).
//! The two families differ in two conventions, and these must never change silently because
//! they move the numbers (see `shared/reference/metrics.md` §5):
//!
//! - Kynkäänniemi P&R (`kynkaat/improved-precision-and-recall-metric`, torch-fidelity PRC):
//!   default k = 3, membership is `d <= r` (closed balls).
//! - Naeem PRDC (`clovaai/generative-evaluation-prdc`): default k = 5, every comparison is
//!   strict `d < r` (open balls); density counts how many real balls contain each fake,
//!   divided by k; coverage is the share of real points whose nearest fake lies in their ball.
//!
//! Distances are Euclidean, computed in f64 as `|x|² + |y|² − 2 x·y` clamped at zero, with the
//! self-distance of a point set exactly to zero, as scikit-learn's `pairwise_distances` (which
//! the `prdc` package calls) does. The dot products come from faer's GEMM on blocks of rows;
//! rayon spreads the blocks over threads, and each block's GEMM runs sequentially so the result
//! does not depend on the thread count. The full n×m matrix is never held: each block is
//! reduced to per-row and per-column counts as soon as it is computed, so 50k×50k fits in
//! memory.

use rayon::prelude::*;
use serde::Serialize;

use super::MetricsError;

/// Rows of the left set handled together in one GEMM call.
const BLOCK_ROWS: usize = 256;

/// The neighbourhood size of Kynkäänniemi et al.'s improved precision and recall.
pub const DEFAULT_PR_K: usize = 3;
/// The neighbourhood size of Naeem et al.'s density and coverage.
pub const DEFAULT_DC_K: usize = 5;

/// A set of n points in d dimensions, row-major, checked and widened to f64 once. KID
/// (`kid.rs`) takes its feature sets in the same form.
pub struct PointSet {
    data: Vec<f64>,
    sq_norms: Vec<f64>,
    n: usize,
    d: usize,
}

impl PointSet {
    /// Checks that `values` holds `n` finite rows of `d` features. `what` names the set in
    /// errors (`real features`, `samples/final.safetensors`).
    pub fn new(what: &str, values: &[f32], n: usize, d: usize) -> Result<Self, MetricsError> {
        if n.checked_mul(d) != Some(values.len()) || d == 0 {
            return Err(MetricsError::Shape {
                what: what.to_string(),
                shape: format!("[{n}, {d}]"),
                expected: n.saturating_mul(d),
                found: values.len(),
            });
        }
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(MetricsError::NonFinite {
                what: what.to_string(),
                index,
            });
        }
        let data: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
        let sq_norms = data
            .chunks_exact(d)
            .map(|row| row.iter().map(|v| v * v).sum())
            .collect();
        Ok(PointSet {
            data,
            sq_norms,
            n,
            d,
        })
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the set has no points.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Feature dimension.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// The values, row-major, widened to f64.
    pub(super) fn values(&self) -> &[f64] {
        &self.data
    }
}

/// Euclidean distances from rows `start..start + rows` of `x` to every row of `y`, row-major
/// (`rows` × `y.n`). `same` marks `x` and `y` as one set, whose self-distances are set to zero.
fn distance_block(x: &PointSet, y: &PointSet, start: usize, rows: usize, same: bool) -> Vec<f64> {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, MatMut, MatRef, Par};

    let mut out = vec![0.0f64; rows * y.n];
    let lhs = MatRef::from_row_major_slice(&x.data[start * x.d..(start + rows) * x.d], rows, x.d);
    let rhs = MatRef::from_row_major_slice(&y.data, y.n, y.d).transpose();
    // Sequential GEMM inside a block: rayon already runs one block per thread, and a fixed
    // summation order keeps the distances identical whatever the thread count.
    matmul(
        MatMut::from_row_major_slice_mut(&mut out, rows, y.n),
        Accum::Replace,
        lhs,
        rhs,
        -2.0,
        Par::Seq,
    );
    for (r, row) in out.chunks_exact_mut(y.n).enumerate() {
        let xx = x.sq_norms[start + r];
        for (dist, yy) in row.iter_mut().zip(&y.sq_norms) {
            *dist = (*dist + xx + yy).max(0.0).sqrt();
        }
        if same {
            row[start + r] = 0.0;
        }
    }
    out
}

/// For every point, the distance to its k-th nearest neighbour in the same set, not counting
/// itself, for each k in `ks`. Returns one vector of radii per k, in the order of `ks`.
pub fn knn_radii(set: &PointSet, ks: &[usize], what: &str) -> Result<Vec<Vec<f64>>, MetricsError> {
    let max_k = ks.iter().copied().max().unwrap_or(0);
    if ks.contains(&0) {
        return Err(MetricsError::Input(format!(
            "{what}: neighbourhood size k must be at least 1"
        )));
    }
    if set.n <= max_k {
        return Err(MetricsError::TooFewSamples {
            what: what.to_string(),
            n: set.n,
            k: max_k,
        });
    }
    let per_block: Vec<Vec<Vec<f64>>> = super::row_blocks(set.n, BLOCK_ROWS)
        .into_par_iter()
        .map(|(start, rows)| {
            let dist = distance_block(set, set, start, rows, true);
            let mut radii = vec![Vec::with_capacity(rows); ks.len()];
            let mut scratch = vec![0.0f64; set.n];
            for row in dist.chunks_exact(set.n) {
                for (slot, &k) in radii.iter_mut().zip(ks) {
                    scratch.copy_from_slice(row);
                    // Index k of the sorted row: index 0 is the point itself (distance 0).
                    let (_, kth, _) = scratch.select_nth_unstable_by(k, f64::total_cmp);
                    slot.push(*kth);
                }
            }
            radii
        })
        .collect();
    let mut out = vec![Vec::with_capacity(set.n); ks.len()];
    for block in per_block {
        for (all, part) in out.iter_mut().zip(block) {
            all.extend(part);
        }
    }
    Ok(out)
}

/// Kynkäänniemi et al.'s improved precision and recall (closed balls, `<=`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ImprovedPrecisionRecall {
    /// Share of fake points inside the real manifold.
    pub precision: f64,
    /// Share of real points inside the fake manifold.
    pub recall: f64,
    /// F1 as torch-fidelity defines it: 2PR / max(1e-5, P + R).
    pub f1: f64,
    /// Neighbourhood size.
    pub k: usize,
}

/// Naeem et al.'s precision, recall, density and coverage (open balls, `<`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DensityCoverage {
    /// Share of fake points inside at least one real ball.
    pub precision: f64,
    /// Share of real points inside at least one fake ball.
    pub recall: f64,
    /// Mean number of real balls containing a fake point, divided by k (≈1 for equal sets).
    pub density: f64,
    /// Share of real points whose nearest fake lies inside their ball.
    pub coverage: f64,
    /// Neighbourhood size.
    pub k: usize,
}

/// Both manifold-metric families for one real/fake pair, with the sample counts they used.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ManifoldMetrics {
    /// Kynkäänniemi P&R.
    pub improved: ImprovedPrecisionRecall,
    /// Naeem PRDC.
    pub prdc: DensityCoverage,
    /// Real points used.
    pub n_real: usize,
    /// Fake points used.
    pub n_fake: usize,
}

/// Counts one block of real rows contributes; summed over blocks, they give every metric.
struct Tally {
    /// Per fake: whether some real closed k_pr-ball contains it.
    fake_in_real_closed: Vec<bool>,
    /// Per fake: whether some real open k_dc-ball contains it.
    fake_in_real_open: Vec<bool>,
    /// Per fake: how many real open k_dc-balls contain it.
    fake_ball_count: Vec<u64>,
    real_in_fake_closed: u64,
    real_in_fake_open: u64,
    real_covered: u64,
}

impl Tally {
    fn new(n_fake: usize) -> Self {
        Tally {
            fake_in_real_closed: vec![false; n_fake],
            fake_in_real_open: vec![false; n_fake],
            fake_ball_count: vec![0; n_fake],
            real_in_fake_closed: 0,
            real_in_fake_open: 0,
            real_covered: 0,
        }
    }

    fn merge(mut self, other: Tally) -> Tally {
        for (a, b) in self
            .fake_in_real_closed
            .iter_mut()
            .zip(&other.fake_in_real_closed)
        {
            *a |= b;
        }
        for (a, b) in self
            .fake_in_real_open
            .iter_mut()
            .zip(&other.fake_in_real_open)
        {
            *a |= b;
        }
        for (a, b) in self.fake_ball_count.iter_mut().zip(&other.fake_ball_count) {
            *a += b;
        }
        self.real_in_fake_closed += other.real_in_fake_closed;
        self.real_in_fake_open += other.real_in_fake_open;
        self.real_covered += other.real_covered;
        self
    }
}

/// Computes improved P&R with neighbourhood `k_pr` and PRDC with `k_dc` between `real` and
/// `fake` feature sets, sharing the three distance passes between them.
pub fn manifold_metrics(
    real: &PointSet,
    fake: &PointSet,
    k_pr: usize,
    k_dc: usize,
) -> Result<ManifoldMetrics, MetricsError> {
    if real.d != fake.d {
        return Err(MetricsError::DimensionMismatch {
            what: "real and fake features".to_string(),
            left: real.d,
            right: fake.d,
        });
    }
    let mut real_r = knn_radii(real, &[k_pr, k_dc], "real features")?.into_iter();
    let mut fake_r = knn_radii(fake, &[k_pr, k_dc], "fake features")?.into_iter();
    let (real_pr, real_dc) = (
        real_r.next().unwrap_or_default(),
        real_r.next().unwrap_or_default(),
    );
    let (fake_pr, fake_dc) = (
        fake_r.next().unwrap_or_default(),
        fake_r.next().unwrap_or_default(),
    );

    let m = fake.n;
    let tally = super::row_blocks(real.n, BLOCK_ROWS)
        .into_par_iter()
        .map(|(start, rows)| {
            let dist = distance_block(real, fake, start, rows, false);
            let mut t = Tally::new(m);
            for (r, row) in dist.chunks_exact(m).enumerate() {
                let i = start + r;
                let (rp, rd) = (real_pr[i], real_dc[i]);
                let mut in_closed = false;
                let mut in_open = false;
                let mut nearest = f64::INFINITY;
                for (j, &dij) in row.iter().enumerate() {
                    if dij <= rp {
                        t.fake_in_real_closed[j] = true;
                    }
                    if dij < rd {
                        t.fake_in_real_open[j] = true;
                        t.fake_ball_count[j] += 1;
                    }
                    in_closed |= dij <= fake_pr[j];
                    in_open |= dij < fake_dc[j];
                    nearest = nearest.min(dij);
                }
                t.real_in_fake_closed += u64::from(in_closed);
                t.real_in_fake_open += u64::from(in_open);
                t.real_covered += u64::from(nearest < rd);
            }
            t
        })
        .reduce(|| Tally::new(m), Tally::merge);

    let (n, m_f) = (real.n as f64, m as f64);
    let share = |flags: &[bool]| flags.iter().filter(|&&f| f).count() as f64 / m_f;
    let p = share(&tally.fake_in_real_closed);
    let r = tally.real_in_fake_closed as f64 / n;
    Ok(ManifoldMetrics {
        improved: ImprovedPrecisionRecall {
            precision: p,
            recall: r,
            f1: 2.0 * p * r / (p + r).max(1e-5),
            k: k_pr,
        },
        prdc: DensityCoverage {
            precision: share(&tally.fake_in_real_open),
            recall: tally.real_in_fake_open as f64 / n,
            density: tally.fake_ball_count.iter().sum::<u64>() as f64 / (k_dc as f64 * m_f),
            coverage: tally.real_covered as f64 / n,
            k: k_dc,
        },
        n_real: real.n,
        n_fake: m,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(values: &[f32], d: usize) -> PointSet {
        PointSet::new("test", values, values.len() / d, d).expect("valid set")
    }

    #[test]
    fn radii_exclude_the_point_itself() {
        // Points on a line at 0, 1, 3, 7: nearest neighbours of 0 are at 1, 3, 7.
        let s = set(&[0.0, 1.0, 3.0, 7.0], 1);
        let r = knn_radii(&s, &[1, 2], "line").expect("radii");
        assert_eq!(r[0], vec![1.0, 1.0, 2.0, 4.0]);
        assert_eq!(r[1], vec![3.0, 2.0, 3.0, 6.0]);
    }

    #[test]
    fn closed_and_open_balls_differ_exactly_on_the_boundary() {
        // Real points 0 and 2 have 1-NN radius 2; a fake at distance exactly 2 from real 0
        // (at 4, which is also exactly 2 from real 2) is inside a closed ball, never an open one.
        let real = set(&[0.0, 2.0], 1);
        let fake = set(&[4.0, 10.0], 1);
        let m = manifold_metrics(&real, &fake, 1, 1).expect("metrics");
        assert_eq!(m.improved.precision, 0.5);
        assert_eq!(m.prdc.precision, 0.0);
        assert_eq!(m.prdc.density, 0.0);
        assert_eq!(m.prdc.coverage, 0.0);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            PointSet::new("x", &[1.0, 2.0, 3.0], 2, 2),
            Err(MetricsError::Shape { .. })
        ));
        assert!(matches!(
            PointSet::new("x", &[1.0, f32::NAN], 1, 2),
            Err(MetricsError::NonFinite { index: 1, .. })
        ));
        let small = set(&[0.0, 1.0, 2.0], 1);
        assert!(matches!(
            manifold_metrics(&small, &small, 3, 5),
            Err(MetricsError::TooFewSamples { .. })
        ));
        let other = set(&[0.0, 1.0, 2.0, 3.0], 2);
        assert!(matches!(
            manifold_metrics(&small, &other, 1, 1),
            Err(MetricsError::DimensionMismatch { .. })
        ));
    }
}
