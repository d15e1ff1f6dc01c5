//! Inception Score, the original (improved-gan) protocol.
//!
//! From 1008-way logits (no bias, see `inception`): p(y|x) = softmax, the samples cut into
//! `splits` **contiguous** chunks `[⌊i·N/s⌋, ⌊(i+1)·N/s⌋)` in the order given (no shuffle, unlike
//! torch-fidelity's default), per chunk `exp(mean_x KL(p(y|x) ‖ p̄(y)))`, then the mean and the
//! **population** std (`np.std`) of the chunk scores (metrics.md §2). Computed in f64 with
//! log-softmax, as torch-fidelity does, so a zero probability never makes a NaN.
//!
//! Every one of these choices moves the number; they are fixed here and recorded beside each
//! reported IS. Weights without logits give `None`, never a zero score.

use super::inception::Features;
use super::MetricsError;

/// The default and the literature's split count.
pub const DEFAULT_SPLITS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InceptionScore {
    pub mean: f64,
    /// Population standard deviation over the splits.
    pub std: f64,
    pub splits: usize,
    pub n: usize,
}

/// IS of `n` rows of `classes` logits.
pub fn inception_score(
    logits: &[f32],
    n: usize,
    classes: usize,
    splits: usize,
) -> Result<InceptionScore, MetricsError> {
    if logits.len() != n * classes || classes == 0 {
        return Err(MetricsError::Input(format!(
            "{} logits do not make {n} rows of {classes}",
            logits.len()
        )));
    }
    if splits == 0 || n < splits {
        return Err(MetricsError::Input(format!(
            "the Inception Score needs at least one sample per split: {n} samples, {splits} splits"
        )));
    }
    if logits.iter().any(|v| !v.is_finite()) {
        return Err(MetricsError::Input(
            "logits contain NaN or infinite values".into(),
        ));
    }
    // log p(y|x) for every row.
    let mut logp = vec![0.0f64; n * classes];
    for (row, out) in logits
        .chunks_exact(classes)
        .zip(logp.chunks_exact_mut(classes))
    {
        let max = row
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let lse = max
            + row
                .iter()
                .map(|&v| (f64::from(v) - max).exp())
                .sum::<f64>()
                .ln();
        for (o, &v) in out.iter_mut().zip(row) {
            *o = f64::from(v) - lse;
        }
    }
    let mut scores = Vec::with_capacity(splits);
    for k in 0..splits {
        let (lo, hi) = (k * n / splits, (k + 1) * n / splits);
        let part = &logp[lo * classes..hi * classes];
        let m = (hi - lo) as f64;
        let mut pbar = vec![0.0f64; classes];
        for row in part.chunks_exact(classes) {
            for (p, &l) in pbar.iter_mut().zip(row) {
                *p += l.exp();
            }
        }
        let log_pbar: Vec<f64> = pbar.iter().map(|p| (p / m).ln()).collect();
        let kl: f64 = part
            .chunks_exact(classes)
            .map(|row| {
                row.iter()
                    .zip(&log_pbar)
                    .map(|(&l, &lb)| l.exp() * (l - lb))
                    .sum::<f64>()
            })
            .sum::<f64>()
            / m;
        scores.push(kl.exp());
    }
    let mean = scores.iter().sum::<f64>() / splits as f64;
    let var = scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / splits as f64;
    Ok(InceptionScore {
        mean,
        std: var.sqrt(),
        splits,
        n,
    })
}

/// IS of extracted features: `None` when the network had no logits (pool3-only weights).
pub fn inception_score_of(
    features: &Features,
    splits: usize,
) -> Result<Option<InceptionScore>, MetricsError> {
    match &features.logits {
        None => Ok(None),
        Some(l) => {
            let classes = if features.n == 0 {
                0
            } else {
                l.len() / features.n
            };
            inception_score(l, features.n, classes, splits).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_predictions_score_one_and_confident_distinct_classes_score_k() {
        let uniform = vec![0.0f32; 20 * 5];
        let s = inception_score(&uniform, 20, 5, 2).unwrap();
        assert!((s.mean - 1.0).abs() < 1e-12 && s.std.abs() < 1e-12, "{s:?}");
        // Each split holds one sample of each of 4 classes, predicted with certainty: IS = 4.
        let mut sharp = vec![-1e4f32; 8 * 4];
        for i in 0..8 {
            sharp[i * 4 + i % 4] = 0.0;
        }
        let s = inception_score(&sharp, 8, 4, 2).unwrap();
        assert!((s.mean - 4.0).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn missing_logits_are_none_not_zero() {
        let f = Features {
            n: 1,
            pool3: vec![0.0; 2048],
            logits: None,
        };
        assert_eq!(inception_score_of(&f, 10).unwrap(), None);
        assert!(inception_score(&[0.0; 10], 2, 5, 10).is_err());
    }
}
