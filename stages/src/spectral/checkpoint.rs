//! The spectrum of every weight matrix in a safetensors file: the library half of
//! `repro spectrum FILE`.
//!
//! Which tensors count: every floating-point tensor of rank 2 (a linear weight) or rank 4 (a
//! conv weight). A rank-4 tensor is read as the SN reshape, first dimension by the rest
//! (`out x in*kh*kw` for a PyTorch or candle `Conv2d`; a transposed conv, stored `in x out x kh x
//! kw`, is reshaped the same way, so its rows are the input channels). Other ranks are not
//! weight matrices and are passed over without a word; a rank-2 or rank-4 tensor of an integer
//! or 8-bit float dtype is listed in [`CheckpointSpectra::skipped`] so the caller can say so.
//!
//! Precision: values are widened to `f64` exactly (every f16, bf16 and f32 is an f64) and
//! decomposed in `f64` with faer, because the tail of a spectrum (sigma_j / sigma_1 of 1e-3 and
//! below) is what collapse is about and f32 round-off would blur it. Any file that safetensors
//! can read works, a PyTorch `save_file` one included: the format is the same whoever wrote it.
//!
//! The result lists tensors sorted by name, so it does not depend on the file's header order.

use std::path::Path;

use faer::Mat;
use safetensors::{Dtype, SafeTensors};

use super::summary::{summarize, Summary, TAIL_FROM};
use super::SpectralError;

/// The threshold `repro spectrum` reports `share_above` for (the SR paper's 0.5).
pub const CHECKPOINT_THRESHOLD: f64 = 0.5;

/// One weight matrix's spectrum.
#[derive(Debug, Clone)]
pub struct TensorSpectrum {
    /// The tensor's name in the file.
    pub name: String,
    /// The stored dtype (`F32`, `BF16`, ...).
    pub dtype: String,
    /// The stored shape (rank 2 or 4).
    pub shape: Vec<usize>,
    /// All `min(rows, cols)` singular values, descending.
    pub singular_values: Vec<f64>,
    /// Summaries with `share_above` at [`CHECKPOINT_THRESHOLD`] and the tail from [`TAIL_FROM`].
    pub summary: Summary,
}

/// A rank-2 or rank-4 tensor that was not decomposed, and why.
#[derive(Debug, Clone)]
pub struct SkippedTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
}

/// Every weight matrix of one file.
#[derive(Debug, Clone, Default)]
pub struct CheckpointSpectra {
    /// Sorted by name.
    pub tensors: Vec<TensorSpectrum>,
    /// Rank-2 or rank-4 tensors whose dtype is not f16, bf16, f32 or f64, sorted by name.
    pub skipped: Vec<SkippedTensor>,
}

/// Reads `path` and decomposes every rank-2 and rank-4 float tensor in it.
pub fn checkpoint_spectra(path: &Path) -> Result<CheckpointSpectra, SpectralError> {
    let bytes = std::fs::read(path).map_err(|e| SpectralError::io("read", path, e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| SpectralError::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut names = file.names();
    names.sort_unstable();
    let mut out = CheckpointSpectra::default();
    for name in names {
        let view = file.tensor(name).map_err(|e| SpectralError::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let shape = view.shape().to_vec();
        if shape.len() != 2 && shape.len() != 4 {
            continue;
        }
        let dtype = dtype_name(view.dtype());
        let Some(values) = widen(view.dtype(), view.data()) else {
            out.skipped.push(SkippedTensor {
                name: name.to_string(),
                dtype,
                shape,
            });
            continue;
        };
        let singular_values = matrix_singular_values(&values, &shape, name, path)?;
        out.tensors.push(TensorSpectrum {
            name: name.to_string(),
            dtype,
            summary: summarize(&singular_values, CHECKPOINT_THRESHOLD, TAIL_FROM),
            shape,
            singular_values,
        });
    }
    Ok(out)
}

/// A dtype as the safetensors header spells it (`F32`, `BF16`): the file format's own name,
/// which its crate serializes and cannot change without breaking every file (Rust's Debug text
/// happens to be the same today, but nothing promises it).
fn dtype_name(dtype: safetensors::Dtype) -> String {
    match serde_json::to_value(dtype) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{dtype:?}"),
    }
}

/// The singular values, descending, of `values` read row-major as first dim x the rest.
fn matrix_singular_values(
    values: &[f64],
    shape: &[usize],
    name: &str,
    path: &Path,
) -> Result<Vec<f64>, SpectralError> {
    let rows = shape[0];
    let cols: usize = shape[1..].iter().product();
    if rows == 0 || cols == 0 {
        return Ok(Vec::new());
    }
    if values.iter().any(|x| !x.is_finite()) {
        return Err(SpectralError::NonFinite {
            path: path.to_path_buf(),
            tensor: name.to_string(),
        });
    }
    let m = Mat::from_fn(rows, cols, |i, j| values[i * cols + j]);
    // Bit-identical on every machine, whatever its core count (see `nn::linalg`).
    crate::nn::linalg::sequential();
    let mut s = m.singular_values().map_err(|_| SpectralError::Svd {
        tensor: name.to_string(),
    })?;
    // faer documents them non-increasing already; sorting makes "descending" our own promise.
    s.sort_by(|a, b| b.total_cmp(a));
    Ok(s)
}

/// The little-endian elements of `data` as `f64`, or `None` for a dtype that is not a float
/// this tool reads.
fn widen(dtype: Dtype, data: &[u8]) -> Option<Vec<f64>> {
    let values = match dtype {
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect(),
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f64())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f64())
            .collect(),
        _ => return None,
    };
    Some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_widens_exactly() {
        let h = half::f16::from_f64(-1.5).to_le_bytes();
        let b = half::bf16::from_f64(0.375).to_le_bytes();
        assert_eq!(widen(Dtype::F16, &h), Some(vec![-1.5]));
        assert_eq!(widen(Dtype::BF16, &b), Some(vec![0.375]));
        assert_eq!(widen(Dtype::I64, &[0; 8]), None);
    }

    #[test]
    fn a_diagonal_matrix_has_its_diagonal_as_spectrum() {
        let values = [0.0, 0.0, 3.0, 0.0, -5.0, 0.0];
        let s = matrix_singular_values(&values, &[2, 3], "w", Path::new("f")).unwrap();
        assert!(
            (s[0] - 5.0).abs() < 1e-12 && (s[1] - 3.0).abs() < 1e-12,
            "{s:?}"
        );
    }

    #[test]
    fn nan_is_an_error_naming_the_tensor() {
        let err = matrix_singular_values(&[1.0, f64::NAN], &[1, 2], "d.w", Path::new("c.st"))
            .unwrap_err();
        assert!(err.to_string().contains("`d.w`"), "{err}");
    }
}
