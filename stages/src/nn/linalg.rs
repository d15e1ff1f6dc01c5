//! Host-side linear algebra (faer) for spectral regularization and the spectra monitor.
//!
//! candle has no SVD or QR, so weights are copied to the host as `f64` matrices, decomposed
//! with faer, and copied back. `f64` is deliberate: the tail of a spectrum (sigma_j / sigma_1 of
//! 1e-3 and below) is what spectral collapse is about, and float32 round-off would blur it.
//! Matrices are row-major `d_out x rest`, the SN reshape of a weight.
//!
//! **faer runs sequentially** ([`sequential`], called by every function here that decomposes or
//! multiplies). faer's default is to split its work over one task per core, and its parallel
//! SVD rounds differently from its sequential one (a 128 x 128 thin SVD: the same singular
//! values, `U` different in the last bits; 512 x 2304: both differ). Left at the default, static
//! and dynamic SR, whose projections rebuild D's weights from `U` and `V`, would train a
//! different GAN on a machine with another number of cores, under the same fingerprint; a cache
//! shared between machines would then hold results nobody can reproduce bit for bit.
//! Sequential, the bits depend on the inputs only. It is also faster at the sizes SR works on
//! (this 2-core machine: one warm-started subspace step on 128 x 128, k 64, 0.86 ms sequential
//! against 2.6 ms parallel; a 32 x 32 one 0.05 against 0.17 ms), where a split costs more in
//! thread wake-ups than it saves.

use candle_core::{DType, Device, Tensor};
use faer::Mat;

/// Makes faer run sequentially in this process (see the module doc): an atomic store, cheap
/// enough to call at the entry of every decomposition, so no caller can forget it.
pub fn sequential() {
    faer::set_global_parallelism(faer::Par::Seq);
}

use super::{NnError, Result};

/// A weight tensor as a `rows x cols` host matrix (`rows` = first dim, the SN reshape).
pub fn to_mat(t: &Tensor) -> Result<Mat<f64>> {
    let rows = t.dims()[0];
    let cols = t.elem_count() / rows.max(1);
    let data: Vec<f64> = t
        .to_dtype(DType::F64)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1()?;
    Ok(Mat::from_fn(rows, cols, |i, j| data[i * cols + j]))
}

/// A host matrix back to a tensor of `shape`, `dtype` on `device` (row-major).
pub fn from_mat(m: &Mat<f64>, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
    let (rows, cols) = (m.nrows(), m.ncols());
    let mut data = Vec::with_capacity(rows * cols);
    for i in 0..rows {
        for j in 0..cols {
            data.push(m[(i, j)]);
        }
    }
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)?)
}

/// Overwrites the variable `w` with the host matrix `m` (same element count, row-major).
pub fn set_var(w: &candle_core::Var, m: &Mat<f64>) -> Result<()> {
    w.set(&from_mat(m, w.dims(), w.dtype(), w.device())?)?;
    Ok(())
}

/// Thin SVD: `(U, s, V)` with `s` descending and `M = U diag(s) V^T`.
pub fn thin_svd(m: &Mat<f64>, layer: &str) -> Result<(Mat<f64>, Vec<f64>, Mat<f64>)> {
    sequential();
    let svd = m.thin_svd().map_err(|_| NnError::Svd {
        layer: layer.to_string(),
    })?;
    let s = svd.S().column_vector().iter().copied().collect();
    Ok((svd.U().to_owned(), s, svd.V().to_owned()))
}

/// All singular values, descending.
pub fn singular_values(m: &Mat<f64>, layer: &str) -> Result<Vec<f64>> {
    sequential();
    if m.col_iter().any(|c| c.iter().any(|x| !x.is_finite())) {
        return Err(NnError::Svd {
            layer: layer.to_string(),
        });
    }
    m.singular_values().map_err(|_| NnError::Svd {
        layer: layer.to_string(),
    })
}

/// `U diag(s) V^T`.
pub fn rebuild(u: &Mat<f64>, s: &[f64], v: &Mat<f64>) -> Mat<f64> {
    sequential();
    let k = s.len();
    let us = Mat::from_fn(u.nrows(), k, |i, j| u[(i, j)] * s[j]);
    let vk = v.subcols(0, k);
    &us * vk.transpose()
}

/// One warm-started subspace (block power) iteration with a Rayleigh-Ritz rotation: from an
/// approximate top-k right basis `v` (cols x k) of `m`, returns improved `(U_k, s_k, V_k)`.
///
/// One step per discriminator step is enough because the weights move little between steps
/// (the rust_stack measurement: sigma_k relative error 4e-5..4e-4 after one warm step).
pub fn subspace_step(
    m: &Mat<f64>,
    v: &Mat<f64>,
    layer: &str,
) -> Result<(Mat<f64>, Vec<f64>, Mat<f64>)> {
    sequential();
    let y = m * v;
    let q_u = y.qr().compute_thin_Q();
    let z = m.transpose() * &q_u;
    let q_v = z.qr().compute_thin_Q();
    // B = Q_u^T M Q_v = Z^T Q_v, a small k x k matrix whose SVD rotates both bases.
    let b = z.transpose() * &q_v;
    let (ub, s, vb) = thin_svd(&b, layer)?;
    Ok((&q_u * &ub, s, &q_v * &vb))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(m: &Mat<f64>) -> Vec<u64> {
        m.col_iter()
            .flat_map(|c| c.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
            .collect()
    }

    /// faer's parallel SVD of this 128 x 128 matrix rounds `U` differently from its sequential
    /// one; ours must not depend on how the process (or a previous caller) set faer up.
    #[test]
    fn decompositions_do_not_depend_on_faer_parallelism() {
        let m = Mat::<f64>::from_fn(128, 128, |i, j| {
            ((i * 31 + j * 17) % 13) as f64 / 13.0 + if i == j { 1.0 } else { 0.0 }
        });
        let v = Mat::<f64>::from_fn(128, 64, |i, j| ((i * 7 + j * 3) % 11) as f64 / 11.0);
        let run = |par: faer::Par| {
            faer::set_global_parallelism(par);
            let (u, s, vt) = thin_svd(&m, "w").unwrap();
            let (su, ss, sv) = subspace_step(&m, &v, "w").unwrap();
            (bits(&u), s, bits(&vt), bits(&su), ss, bits(&sv))
        };
        let seq = run(faer::Par::Seq);
        for threads in [2, 4] {
            assert!(
                run(faer::Par::rayon(threads)) == seq,
                "a decomposition changed with faer's parallelism set to {threads} threads"
            );
        }
    }
}
