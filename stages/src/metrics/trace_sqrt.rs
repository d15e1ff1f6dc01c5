//! `Tr √(AB)` for symmetric positive semi-definite `A`, `B`: the hard term of the FID.
//!
//! Route: a pivoted (semi-definite) Cholesky `PᵀAP = LLᵀ` with `L` of width r = rank(A); then
//! the non-zero eigenvalues of `AB` are those of the symmetric PSD r x r matrix
//! `M = Lᵀ (PᵀBP) L` (cyclic similarity), so `Tr √(AB) = Σ √max(λᵢ(M), 0)`. The eigenvalues of
//! `M` come from a Householder tridiagonalization and the implicit QL iteration (no vectors).
//!
//! Why not `faer`'s `self_adjoint_eigen`: its solver is generic code instantiated in *this*
//! crate, which the dev/test profile compiles without optimization; a 2048-d FID then took
//! seven minutes. Here every O(d³) step is a call into faer's `matmul` (concrete, optimized
//! kernels), and only O(d²) work runs in local loops, so a 2048-d FID takes seconds in tests
//! and stays exact to ~1e-9 relative against scipy's `sqrtm` route (see the FID fixture test).
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
    let lambdas = symmetric_eigenvalues(m, r)?;
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

/// Eigenvalues of a symmetric `n x n` column-major matrix: Householder tridiagonalization with
/// faer's kernels for the O(n²) per-step products, then implicit QL.
fn symmetric_eigenvalues(mut a: Vec<f64>, n: usize) -> Option<Vec<f64>> {
    let mut diag = vec![0.0; n];
    let mut off = vec![0.0; n];
    let mut v = vec![0.0f64; n];
    let mut p = vec![0.0f64; n];
    let mut uv = vec![0.0f64; 2 * n];
    let mut vu_t = vec![0.0f64; 2 * n];
    for k in 0..n.saturating_sub(2) {
        let m = n - k - 1;
        let x = &a[k * n + k + 1..k * n + n];
        let norm = x.iter().map(|t| t * t).sum::<f64>().sqrt();
        diag[k] = a[k * n + k];
        if norm == 0.0 {
            off[k] = 0.0;
            continue;
        }
        let alpha = if x[0] > 0.0 { -norm } else { norm };
        // v = (x − αe₁)/‖x − αe₁‖, so H = I − 2vvᵀ maps x to αe₁.
        let v = &mut v[..m];
        v.copy_from_slice(x);
        v[0] -= alpha;
        let vn = v.iter().map(|t| t * t).sum::<f64>().sqrt();
        v.iter_mut().for_each(|t| *t /= vn);
        // H A₂₂ H = A₂₂ − v wᵀ − w vᵀ with p = A₂₂v, w = 2p − 2(vᵀp)v.
        let start = (k + 1) * n + k + 1;
        let p = &mut p[..m];
        {
            let a22 = MatRef::from_column_major_slice_with_stride(&a[start..], m, m, n);
            let vm = MatRef::from_column_major_slice(&v[..], m, 1);
            let pm = MatMut::from_column_major_slice_mut(&mut p[..], m, 1);
            matmul(pm, Accum::Replace, a22, vm, 1.0, Par::Seq);
        }
        let kv: f64 = v.iter().zip(p.iter()).map(|(x, y)| x * y).sum();
        let (uv, vu_t) = (&mut uv[..2 * m], &mut vu_t[..2 * m]);
        for i in 0..m {
            let w = 2.0 * (p[i] - kv * v[i]);
            uv[i] = v[i];
            uv[m + i] = w;
            vu_t[2 * i] = w;
            vu_t[2 * i + 1] = v[i];
        }
        let uvm = MatRef::from_column_major_slice(&uv[..], m, 2);
        let vum = MatRef::from_column_major_slice(&vu_t[..], 2, m);
        let a22 = MatMut::from_column_major_slice_with_stride_mut(&mut a[start..], m, m, n);
        matmul(a22, Accum::Add, uvm, vum, -1.0, Par::Seq);
        off[k] = alpha;
    }
    if n >= 2 {
        diag[n - 2] = a[(n - 2) * n + n - 2];
        off[n - 2] = a[(n - 2) * n + n - 1];
    }
    if n >= 1 {
        diag[n - 1] = a[(n - 1) * n + n - 1];
    }
    tridiagonal_ql(&mut diag, &mut off)?;
    Some(diag)
}

/// Implicit QL with Wilkinson shifts on a symmetric tridiagonal matrix (`d` diagonal, `e[i]`
/// couples i and i+1, `e[n-1]` unused); eigenvalues overwrite `d`. After Numerical Recipes'
/// `tqli`, without eigenvectors.
fn tridiagonal_ql(d: &mut [f64], e: &mut [f64]) -> Option<()> {
    let n = d.len();
    if n == 0 {
        return Some(());
    }
    e[n - 1] = 0.0;
    for l in 0..n {
        let mut iter = 0;
        loop {
            let mut m = l;
            while m + 1 < n {
                let dd = d[m].abs() + d[m + 1].abs();
                if e[m].abs() <= f64::EPSILON * dd {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            iter += 1;
            if iter > 60 {
                return None;
            }
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut r = g.hypot(1.0);
            g = d[m] - d[l] + e[l] / (g + r.copysign(g));
            let (mut s, mut c, mut p) = (1.0f64, 1.0f64, 0.0f64);
            let mut i = m;
            let mut deflated = false;
            while i > l {
                i -= 1;
                let f = s * e[i];
                let b = c * e[i];
                r = f.hypot(g);
                e[i + 1] = r;
                if r == 0.0 {
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    deflated = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
            }
            if deflated {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
    Some(())
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
        let mut ev = symmetric_eigenvalues(a, 3).unwrap();
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
