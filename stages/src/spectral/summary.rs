//! The numbers that describe one spectrum: how much of it stands above a threshold, how much
//! area it covers, how much its free tail keeps, how many directions it really uses, and its
//! scale.
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
//! - `tail_mean`: the mean of the normalized values of the *tail*, the sorted indices
//!   `j >= floor(tail r)` (0-based, descending; `tail` = [`TAIL_FROM`] = 0.5 by default), i.e.
//!   the area under the lower part of the normalized spectrum. This is the collapse measure the
//!   detector uses, because it is the part spectral regularization leaves free: static SR pins
//!   exactly the sorted indices `j < floor(i r)` to 1 and scales the others by `1 / s_1`, so their
//!   normalized values are untouched; graph SR compensates the same head. The head boundary is
//!   computed by SR's own [`pinned_count`], so the tail starts exactly where an `i = tail` head
//!   ends and the two can never drift apart. Share above 0.5, in contrast, is at least
//!   `floor(r/2)/r` for every static-SR spectrum by construction and so cannot judge SR.
//!   The tail never includes index 0 for `r >= 2`, and for `r = 1` it is that one value (1).
//! - `sigma1`: the largest value as stored. For the monitor's spectra of `W / sigma_hat` it sits
//!   near 1 and its distance from 1 is the power iteration's lag; for a checkpoint it is the
//!   weight's spectral norm.
//!
//! An all-zero (or empty) spectrum has no direction to normalize by: every summary is 0.

use serde::Serialize;

use crate::nn::graph_sr::pinned_count;

/// Where the tail of `tail_mean` starts by default, as a fraction of the rank: the end of the
/// head that SR pins at the paper's recommended `i = 0.5`.
pub const TAIL_FROM: f64 = 0.5;

/// The summaries of one spectrum (see the module docs for the definitions).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub sigma1: f64,
    pub share_above: f64,
    pub auc: f64,
    pub effective_rank: f64,
    pub tail_mean: f64,
}

/// Summarizes the singular values `sigmas` (any order, all finite and non-negative) with
/// `threshold` on the normalized values for `share_above` and the tail of `tail_mean` starting
/// at the fraction `tail` (in `[0, 1)`) of the rank.
pub fn summarize(sigmas: &[f64], threshold: f64, tail: f64) -> Summary {
    let sigma1 = sigmas.iter().copied().fold(0.0_f64, f64::max);
    let total: f64 = sigmas.iter().sum();
    if sigmas.is_empty() || sigma1 <= 0.0 {
        return Summary {
            sigma1,
            share_above: 0.0,
            auc: 0.0,
            effective_rank: 0.0,
            tail_mean: 0.0,
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
    let mut sorted = sigmas.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    // floor(tail r) < r for tail < 1, so the tail holds at least the smallest value.
    let start = pinned_count(tail, sorted.len()).min(sorted.len() - 1);
    let tail_values = &sorted[start..];
    let tail_mean = tail_values.iter().map(|s| s / sigma1).sum::<f64>() / tail_values.len() as f64;
    Summary {
        sigma1,
        share_above: above as f64 / r,
        auc,
        effective_rank: entropy.exp(),
        tail_mean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_spectrum_uses_every_direction() {
        let s = summarize(&[2.0; 8], 0.5, TAIL_FROM);
        assert_eq!(s.sigma1, 2.0);
        assert_eq!(s.share_above, 1.0);
        assert_eq!(s.auc, 1.0);
        assert!((s.effective_rank - 8.0).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn rank_one_spectrum_has_one_direction() {
        let s = summarize(&[3.0, 0.0, 0.0, 0.0], 0.5, TAIL_FROM);
        assert_eq!(s.share_above, 0.25);
        assert_eq!(s.auc, 0.25);
        assert!((s.effective_rank - 1.0).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn threshold_is_strict_and_on_normalized_values() {
        // 0.5 / 1.0 is not above 0.5; 0.6 is.
        let s = summarize(&[1.0, 0.6, 0.5, 0.1], 0.5, TAIL_FROM);
        assert_eq!(s.share_above, 0.5);
        assert!((s.auc - 2.2 / 4.0).abs() < 1e-15);
        let scaled = summarize(&[10.0, 6.0, 5.0, 1.0], 0.5, TAIL_FROM);
        assert_eq!(scaled.share_above, s.share_above);
        assert!((scaled.effective_rank - s.effective_rank).abs() < 1e-12);
    }

    #[test]
    fn two_equal_values_have_effective_rank_two() {
        let s = summarize(&[1.0, 1.0, 0.0], 0.5, TAIL_FROM);
        assert!((s.effective_rank - 2.0).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn zero_and_empty_spectra_summarize_to_zero() {
        for sigmas in [&[][..], &[0.0, 0.0][..]] {
            let s = summarize(sigmas, 0.5, TAIL_FROM);
            assert_eq!((s.share_above, s.auc, s.effective_rank), (0.0, 0.0, 0.0));
            assert_eq!(s.tail_mean, 0.0);
        }
    }

    #[test]
    fn tail_mean_is_the_mean_of_the_lower_half_in_any_order() {
        // r = 5: floor(2.5) = 2, the tail is the sorted indices 2, 3, 4.
        let s = summarize(&[0.2, 2.0, 0.4, 1.0, 0.6], 0.5, TAIL_FROM);
        assert!(
            (s.tail_mean - (0.3 + 0.2 + 0.1) / 3.0).abs() < 1e-15,
            "{s:?}"
        );
        // A flat spectrum's tail is all 1; rank one has the single value 1.
        assert_eq!(summarize(&[2.0; 8], 0.5, TAIL_FROM).tail_mean, 1.0);
        assert_eq!(summarize(&[3.0], 0.5, TAIL_FROM).tail_mean, 1.0);
        // tail 0: the whole spectrum, i.e. the auc.
        let all = summarize(&[1.0, 0.6, 0.5, 0.1], 0.5, 0.0);
        assert!((all.tail_mean - all.auc).abs() < 1e-15);
    }

    #[test]
    fn pinning_the_head_leaves_tail_mean_alone() {
        // Static SR's projection: the top floor(r/2) normalized values set to 1, the rest
        // divided by s_1. share_above jumps to at least 1/2; tail_mean does not move.
        let raw = [4.0, 1.6, 1.2, 0.8, 0.4, 0.2, 0.1, 0.04];
        let mut projected: Vec<f64> = raw.iter().map(|s| s / raw[0]).collect();
        for v in projected.iter_mut().take(pinned_count(0.5, raw.len())) {
            *v = 1.0;
        }
        let (before, after) = (
            summarize(&raw, 0.5, TAIL_FROM),
            summarize(&projected, 0.5, TAIL_FROM),
        );
        assert_eq!(before.share_above, 1.0 / 8.0);
        assert_eq!(after.share_above, 0.5);
        assert!((before.tail_mean - after.tail_mean).abs() < 1e-15);
    }
}
