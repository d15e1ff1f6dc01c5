//! The numbers that describe one spectrum: how much of it stands above a threshold, how much
//! area it covers, how many directions it really uses, and its scale.
//!
//! Every summary except `sigma1` is computed on the *normalized* spectrum `sigma_j / sigma_1`,
//! the quantity the SR paper plots (its y axis runs from 0 to 1 with the leading value at 1), so
//! the summaries of `W` and of `W / sigma_hat` are the same. That makes them comparable between a
//! raw checkpoint (`repro spectrum`) and the monitor's spectra of the SN-normalized weight.
//!
//! Definitions (changing one changes the meaning of every stored result: bump the `spectral`
//! builtin's version):
//! - `share_above`: the fraction of the `r` normalized values strictly above the threshold, the
//!   leading value included (so it is at least `1/r` for a non-zero matrix). The SR paper's
//!   collapse is exactly this fraction falling: "most singular values drop abruptly".
//! - `auc`: the mean of the normalized values, i.e. the area under the normalized spectrum with
//!   the index axis scaled to `[0, 1]` (rectangle rule). 1 for a flat spectrum, about `1/r` for
//!   a rank-one matrix.
//! - `effective_rank`: Roy and Vetterli's (2007) definition on the singular values themselves,
//!   not their squares: `exp(H(p))` with `p_j = sigma_j / sum_k sigma_k` and `0 ln 0 = 0`. It
//!   runs from 1 (rank one) to `r` (flat), and is scale invariant.
//! - `sigma1`: the largest value as stored. For the monitor's spectra of `W / sigma_hat` it sits
//!   near 1 and its distance from 1 is the power iteration's lag; for a checkpoint it is the
//!   weight's spectral norm.
//!
//! An all-zero (or empty) spectrum has no direction to normalize by: every summary is 0.

use serde::Serialize;

/// The summaries of one spectrum (see the module docs for the definitions).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub sigma1: f64,
    pub share_above: f64,
    pub auc: f64,
    pub effective_rank: f64,
}

/// Summarizes the singular values `sigmas` (any order, all finite and non-negative) with
/// `threshold` on the normalized values for `share_above`.
pub fn summarize(sigmas: &[f64], threshold: f64) -> Summary {
    let sigma1 = sigmas.iter().copied().fold(0.0_f64, f64::max);
    let total: f64 = sigmas.iter().sum();
    if sigmas.is_empty() || sigma1 <= 0.0 {
        return Summary {
            sigma1,
            share_above: 0.0,
            auc: 0.0,
            effective_rank: 0.0,
        };
    }
    let r = sigmas.len() as f64;
    let above = sigmas.iter().filter(|s| *s / sigma1 > threshold).count();
    let auc = sigmas.iter().map(|s| s / sigma1).sum::<f64>() / r;
    let entropy: f64 = sigmas
        .iter()
        .map(|s| s / total)
        .filter(|p| *p > 0.0)
        .map(|p| -p * p.ln())
        .sum();
    Summary {
        sigma1,
        share_above: above as f64 / r,
        auc,
        effective_rank: entropy.exp(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_spectrum_uses_every_direction() {
        let s = summarize(&[2.0; 8], 0.5);
        assert_eq!(s.sigma1, 2.0);
        assert_eq!(s.share_above, 1.0);
        assert_eq!(s.auc, 1.0);
        assert!((s.effective_rank - 8.0).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn rank_one_spectrum_has_one_direction() {
        let s = summarize(&[3.0, 0.0, 0.0, 0.0], 0.5);
        assert_eq!(s.share_above, 0.25);
        assert_eq!(s.auc, 0.25);
        assert!((s.effective_rank - 1.0).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn threshold_is_strict_and_on_normalized_values() {
        // 0.5 / 1.0 is not above 0.5; 0.6 is.
        let s = summarize(&[1.0, 0.6, 0.5, 0.1], 0.5);
        assert_eq!(s.share_above, 0.5);
        assert!((s.auc - 2.2 / 4.0).abs() < 1e-15);
        let scaled = summarize(&[10.0, 6.0, 5.0, 1.0], 0.5);
        assert_eq!(scaled.share_above, s.share_above);
        assert!((scaled.effective_rank - s.effective_rank).abs() < 1e-12);
    }

    #[test]
    fn two_equal_values_have_effective_rank_two() {
        let s = summarize(&[1.0, 1.0, 0.0], 0.5);
        assert!((s.effective_rank - 2.0).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn zero_and_empty_spectra_summarize_to_zero() {
        for sigmas in [&[][..], &[0.0, 0.0][..]] {
            let s = summarize(sigmas, 0.5);
            assert_eq!((s.share_above, s.auc, s.effective_rank), (0.0, 0.0, 0.0));
        }
    }
}
