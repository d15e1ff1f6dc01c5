//! The collapse detector: the logged iteration at which a layer's spectrum falls sharply.
//!
//! The SR paper judges collapse by eye: in a collapsing run "most singular values drop
//! abruptly" between two checkpoints (sn_sr.md §4, §5.3: B128-64's layer 9 falls between 19K
//! and 21K), while a healthy spectrum flattens slowly. The detector turns that into a rule on
//! one summary, **`tail_mean`**: the mean normalized singular value of the sorted indices
//! `j >= floor(tail r)` (see [`super::summary`]).
//!
//! Why the tail and not `share_above` (the rule of version 1 of the `spectral` builtin): a
//! measure must be able to fail for every method it judges (DESIGN.md §5). Static SR pins the top
//! `floor(r/2)` normalized values to 1 after each projection, so `share_above 0.5` is at least
//! 1/2 in every static-SR spectrum and version 1 could never flag static SR. The tail is what
//! static and graph SR (at `i <= tail`) leave to training: "most singular values drop" shows in
//! it for SN and SR alike, and the pinned head, whatever it does, does not enter it.
//!
//! The rule, on the points `(iteration, tail_mean)` with `iteration >= from`:
//!
//! - The *level before* iteration `t_k` is the largest tail mean over the `window` logged
//!   iterations before it (`window = 1`: the previous one, so a consecutive-pair rule; a wider
//!   window also catches a fall spread over a few checkpoints).
//! - A *sharp fall* at `t_k`: the tail mean lost at least the fraction `drop` of the level before
//!   **and** at least `min_drop` (absolute, in normalized-singular-value units). The relative
//!   test is what decides, and it does not depend on the layer's shape: a random `d_out x d_in`
//!   matrix has a tail level set by its aspect ratio (Marchenko–Pastur: about 0.5 for a 64 x 576
//!   conv, near 0.2 for a square linear), so each layer is compared with its own level. The
//!   absolute guard is a noise floor for tails already near 0. A slow, steady flattening never
//!   loses half its level between two checkpoints, so it never counts.
//! - `collapse_iteration` is the first `t_k` with a sharp fall, or none.
//! - `collapsed` is the verdict at the end of the run: a fall was found and the last logged tail
//!   mean is still below `recover` times the level before the fall. A spectrum that falls and
//!   comes back (the partial recoveries of the paper's Fig. 2) keeps its `collapse_iteration`
//!   but is not `collapsed`.
//! - `from` (default 1) drops the points logged before it. Training logs the random
//!   initialization's spectrum as iteration 0; the first updates reshape that random spectrum in
//!   every run, collapsing or not, so a fall from it is training, not collapse. Set `from: 0` to
//!   judge it too, or a later iteration to skip a warm-up.
//!
//! What this cannot see, by construction: dynamic SR rebuilds every layer to the running maximum
//! of its own normalized spectrum after its `start`, so its spectra stay at or above that
//! reference except for the drift of the D steps between two projections; a dynamic-SR verdict
//! speaks for the iterations before `start` and for that drift. Static or graph SR with `i`
//! above `tail` pins part of the tail; the `spectral` builtin refuses that combination.
//!
//! The defaults are documented on [`Detector::default`]; they enter the `spectral` builtin's
//! output and its fingerprint through its params, so changing a default means bumping the
//! builtin's version.

/// The detector's thresholds (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detector {
    /// A normalized singular value counts toward `share_above` when strictly above this (the
    /// reported share only; it decides nothing).
    pub threshold: f64,
    /// Where the tail of `tail_mean` starts, as a fraction of the rank, in `[0, 1)`.
    pub tail: f64,
    /// The least fraction of the level before that a sharp fall loses.
    pub drop: f64,
    /// The least absolute loss of tail mean in a sharp fall.
    pub min_drop: f64,
    /// How many logged iterations before `t_k` set the level before.
    pub window: usize,
    /// The last share must regain this fraction of the level before for the layer to count as
    /// recovered.
    pub recover: f64,
    /// Points logged before this iteration are not judged.
    pub from: u64,
}

impl Default for Detector {
    /// `threshold` 0.5 (the SR paper's plots and sn_sr.md §5.6, reported only), `tail` 0.5
    /// (the paper's recommended SR fraction `i`, so the tail is exactly what SR leaves free),
    /// `drop` 0.5 (the tail loses at least half its level between two checkpoints: "most
    /// singular values drop abruptly"), `min_drop` 0.05 (a noise floor), `window` 1
    /// (consecutive logged iterations), `recover` 0.8, `from` 1 (the random-init spectrum at
    /// iteration 0 is reported, not judged).
    fn default() -> Self {
        Detector {
            threshold: 0.5,
            tail: super::summary::TAIL_FROM,
            drop: 0.5,
            min_drop: 0.05,
            window: 1,
            recover: 0.8,
            from: 1,
        }
    }
}

/// What the detector found in one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detection {
    /// The first logged iteration with a sharp fall.
    pub collapse_iteration: Option<u64>,
    /// Whether the layer is still collapsed at the last logged iteration.
    pub collapsed: bool,
}

impl Detector {
    /// Why these thresholds cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        let unit = |name: &str, v: f64, lo_open: bool| {
            let ok = v.is_finite() && v <= 1.0 && if lo_open { v > 0.0 } else { v >= 0.0 };
            if ok {
                Ok(())
            } else {
                let range = if lo_open { "(0, 1]" } else { "[0, 1]" };
                Err(format!("`{name}` is {v}; it must lie in {range}"))
            }
        };
        unit("threshold", self.threshold, false)?;
        if !(self.tail.is_finite() && (0.0..1.0).contains(&self.tail)) {
            return Err(format!(
                "`tail` is {}; it must lie in [0, 1) (0.5: the lower half of the spectrum)",
                self.tail
            ));
        }
        unit("drop", self.drop, true)?;
        unit("min_drop", self.min_drop, true)?;
        unit("recover", self.recover, true)?;
        if self.window == 0 {
            return Err("`window` is 0; it must be at least 1 logged iteration".into());
        }
        Ok(())
    }

    /// Runs the detector on `(iteration, tail_mean)` points in ascending iteration order; the
    /// points before `from` are passed over.
    pub fn detect(&self, points: &[(u64, f64)]) -> Detection {
        let first = points.partition_point(|p| p.0 < self.from);
        let points = &points[first..];
        for k in 1..points.len() {
            let before = points[k.saturating_sub(self.window)..k]
                .iter()
                .map(|p| p.1)
                .fold(f64::NEG_INFINITY, f64::max);
            let (iteration, now) = points[k];
            let lost = before - now;
            if lost >= self.min_drop && lost >= self.drop * before {
                let last = points[points.len() - 1].1;
                return Detection {
                    collapse_iteration: Some(iteration),
                    collapsed: last < self.recover * before,
                };
            }
        }
        Detection {
            collapse_iteration: None,
            collapsed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points at iterations 1000, 2000, ... (past the default `from`).
    fn series(means: &[f64]) -> Vec<(u64, f64)> {
        means
            .iter()
            .enumerate()
            .map(|(k, s)| (1000 * (k as u64 + 1), *s))
            .collect()
    }

    #[test]
    fn a_sharp_fall_is_found_at_the_later_iteration() {
        let d = Detector::default().detect(&series(&[0.6, 0.62, 0.58, 0.2, 0.05, 0.03]));
        assert_eq!(d.collapse_iteration, Some(4000));
        assert!(d.collapsed);
    }

    #[test]
    fn slow_flattening_is_not_collapse() {
        // 0.6 down to 0.2 over ten checkpoints: never half of the level in one step.
        let shares: Vec<f64> = (0..11).map(|k| 0.6 - 0.04 * k as f64).collect();
        let d = Detector::default().detect(&series(&shares));
        assert_eq!(d.collapse_iteration, None);
        assert!(!d.collapsed);
    }

    #[test]
    fn a_halving_near_zero_is_below_the_noise_floor() {
        // 0.04 -> 0.015 loses more than half but only 0.025 in all.
        let d = Detector::default().detect(&series(&[0.04, 0.015]));
        assert_eq!(d.collapse_iteration, None);
    }

    #[test]
    fn points_before_from_are_not_judged() {
        // The random init at 0 has a flatter tail than any trained spectrum.
        let points = [(0, 0.6), (1000, 0.25), (2000, 0.24), (3000, 0.08)];
        let d = Detector::default().detect(&points);
        assert_eq!(d.collapse_iteration, Some(3000));
        let from0 = Detector {
            from: 0,
            ..Detector::default()
        };
        assert_eq!(from0.detect(&points).collapse_iteration, Some(1000));
    }

    #[test]
    fn recovery_keeps_the_iteration_but_not_the_verdict() {
        let d = Detector::default().detect(&series(&[0.6, 0.1, 0.3, 0.55]));
        assert_eq!(d.collapse_iteration, Some(2000));
        assert!(!d.collapsed);
    }

    #[test]
    fn a_wider_window_catches_a_fall_over_two_checkpoints() {
        let points = series(&[0.6, 0.6, 0.4, 0.25, 0.2]);
        assert_eq!(Detector::default().detect(&points).collapse_iteration, None);
        let wide = Detector {
            window: 2,
            ..Detector::default()
        };
        assert_eq!(wide.detect(&points).collapse_iteration, Some(4000));
    }

    #[test]
    fn impossible_thresholds_are_refused() {
        for bad in [
            Detector {
                threshold: 1.5,
                ..Detector::default()
            },
            Detector {
                drop: 0.0,
                ..Detector::default()
            },
            Detector {
                window: 0,
                ..Detector::default()
            },
            Detector {
                tail: 1.0,
                ..Detector::default()
            },
            Detector {
                recover: f64::NAN,
                ..Detector::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        assert!(Detector::default().check().is_ok());
    }
}
