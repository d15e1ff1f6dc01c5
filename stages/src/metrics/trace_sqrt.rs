//! `Tr √(AB)` for symmetric positive semi-definite `A`, `B`: the hard term of the FID.
//!
//! Route: a pivoted (semi-definite) Cholesky `PᵀAP = LLᵀ` with `L` of width r = rank(A); then
//! the non-zero eigenvalues of `AB` are those of the symmetric PSD r x r matrix
//! `M = Lᵀ (PᵀBP) L` (cyclic similarity), so `Tr √(AB) = Σ √max(λᵢ(M), 0)`, with the
//! eigenvalues of `M` from faer's self-adjoint solver. This stays real and exact to ~1e-9
//! relative against scipy's `sqrtm` route (see the FID fixture test), where `sqrtm` of the
//! non-symmetric `AB` goes complex on rank-deficient covariances.
//!
//! (An earlier version carried its own tridiagonalization and QL iteration because faer's
//! generic solver, instantiated in this crate, ran unoptimized in test builds; this crate is
//! now built at opt-level 2 in dev and test, see the workspace Cargo.toml, so faer's is used.)
//!
//! The Cholesky stops at pivots below `d · ε · max diag(A)`: what is left is rounding noise of a
//! rank-deficient covariance (N < d), which sqrtm-based FIDs also turn into noise.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};

/// `Tr √(AB)` for `d x d` row-major symmetric PSD matrices; `None` if the iteration fails or the
/// result is not finite.
pub fn trace_sqrt_product(a: &[f64], b: &[f64], d: usize) -> Option<f64> {
    let (perm, l, r) = pivoted_cholesky(a, d);
    if r == 0 {
        return Some(0.0);
    }
    let l = MatRef::from_column_major_slice(&l[..d * r], d, r);
    let bp = Mat::from_fn(d, d, |i, j| b[perm[i] * d + perm[j]]);
    let bl = &bp * l;
    let m = l.transpose() * &bl;
    // Symmetrized, column-major r x r.
    let m: Vec<f64> = (0..r * r)
        .map(|k| 0.5 * (m[(k % r, k / r)] + m[(k / r, k % r)]))
        .collect();
    let lambdas = symmetric_eigenvalues(&m, r)?;
    let t: f64 = lambdas.iter().map(|x| x.max(0.0).sqrt()).sum();
    t.is_finite().then_some(t)
}

/// `PᵀAP ≈ LLᵀ` with full pivoting on the diagonal; returns `perm` (row i of `L` is original
/// index `perm[i]`), `L` column-major d x d of which the first `rank` columns are used, and
/// `rank`. Plain slices, not faer indexing: that is generic code, slow in unoptimized builds.
fn pivoted_cholesky(a: &[f64], d: usize) -> (Vec<usize>, Vec<f64>, usize) {
    let mut perm: Vec<usize> = (0..d).collect();
    let mut diag: Vec<f64> = (0..d).map(|i| a[i * d + i]).collect();
    let max_diag = diag.iter().fold(0.0f64, |m, &x| m.max(x));
    let tol = d as f64 * f64::EPSILON * max_diag;
    let mut l = vec![0.0f64; d * d];
    let mut row = vec![0.0f64; d];
    let mut c = vec![0.0f64; d];
    for k in 0..d {
        let p = (k..d)
            .max_by(|&i, &j| diag[i].total_cmp(&diag[j]))
            .unwrap_or(k);
        if diag[p] <= tol || !diag[p].is_finite() {
            return (perm, l, k);
        }
        if p != k {
            perm.swap(k, p);
            diag.swap(k, p);
            for col in 0..k {
                l.swap(col * d + k, col * d + p);
            }
        }
        let lkk = diag[k].sqrt();
        l[k * d + k] = lkk;
        let rest = d - k - 1;
        if rest == 0 {
            continue;
        }
        // c = L[k+1.., ..k] · L[k, ..k]ᵀ, the part of column k already eliminated.
        let c = &mut c[..rest];
        if k > 0 {
            for (col, x) in row[..k].iter_mut().enumerate() {
                *x = l[col * d + k];
            }
            let lower = MatRef::from_column_major_slice_with_stride(&l[k + 1..], rest, k, d);
            let x = MatRef::from_column_major_slice(&row[..k], k, 1);
            let out = MatMut::from_column_major_slice_mut(c, rest, 1);
            matmul(out, Accum::Replace, lower, x, 1.0, Par::Seq);
        } else {
            c.fill(0.0);
        }
        let pk = perm[k];
        let col = &mut l[k * d..];
        for j in 0..rest {
            let v = (a[perm[k + 1 + j] * d + pk] - c[j]) / lkk;
            col[k + 1 + j] = v;
            diag[k + 1 + j] -= v * v;
        }
    }
    (perm, l, d)
}

/// Eigenvalues of a symmetric `n x n` column-major matrix (faer's self-adjoint solver, from
/// the lower triangle; sequential, so the bits do not depend on the machine's core count).
fn symmetric_eigenvalues(a: &[f64], n: usize) -> Option<Vec<f64>> {
    crate::nn::linalg::sequential();
    MatRef::from_column_major_slice(a, n, n)
        .self_adjoint_eigenvalues(faer::Side::Lower)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigenvalues_of_a_known_symmetric_matrix() {
        // [[2,1,0],[1,2,1],[0,1,2]] has eigenvalues 2 − √2, 2, 2 + √2.
        let a: Vec<f64> = (0..9)
            .map(|k: usize| match (k / 3).abs_diff(k % 3) {
                0 => 2.0,
                1 => 1.0,
                _ => 0.0,
            })
            .collect();
        let mut ev = symmetric_eigenvalues(&a, 3).unwrap();
        ev.sort_by(f64::total_cmp);
        let s = 2f64.sqrt();
        for (got, want) in ev.iter().zip([2.0 - s, 2.0, 2.0 + s]) {
            assert!((got - want).abs() < 1e-12, "{ev:?}");
        }
    }

    #[test]
    fn rank_deficient_first_factor() {
        // A = diag(4, 0, 9), B = diag(1, 5, 4): Tr √(AB) = 2 + 0 + 6.
        let a = [4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 9.0];
        let b = [1.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 4.0];
        let t = trace_sqrt_product(&a, &b, 3).unwrap();
        assert!((t - 8.0).abs() < 1e-12, "{t}");
        assert_eq!(
            trace_sqrt_product(&[0.0; 4], &[1.0, 0.0, 0.0, 1.0], 2),
            Some(0.0)
        );
    }
}
