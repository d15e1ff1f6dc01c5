//! The collapse detector: the logged iteration at which a layer's spectrum falls sharply.
//!
//! The SR paper judges collapse by eye: in a collapsing run "most singular values drop
//! abruptly" between two checkpoints (sn_sr.md §4, §5.3: B128-64's layer 9 falls between 19K
//! and 21K), while a healthy spectrum flattens slowly. The detector turns that into a rule on
//! one summary, `share_above` (the fraction of normalized singular values above the threshold),
//! as sn_sr.md §5.6 suggests:
//!
//! - The *level before* iteration `t_k` is the largest share over the `window` logged
//!   iterations before it (`window = 1`: the previous one, so a consecutive-pair rule; a wider
//!   window also catches a fall spread over a few checkpoints).
//! - A *sharp fall* at `t_k`: the share lost at least `min_drop` (absolute: a fraction of all
//!   `r` values) **and** at least the fraction `drop` of the level before. The absolute guard
//!   keeps a layer whose share is already tiny from "collapsing" when one value crosses; the
//!   relative one keeps a slow, steady flattening from ever counting.
//! - `collapse_iteration` is the first `t_k` with a sharp fall, or none.
//! - `collapsed` is the verdict at the end of the run: a fall was found and the last logged
//!   share is still below `recover` times the level before the fall. A spectrum that falls and
//!   comes back (the partial recoveries of the paper's Fig. 2) keeps its `collapse_iteration`
//!   but is not `collapsed`.
//!
//! The defaults are documented on [`Detector::default`]; they enter the `spectral` builtin's
//! output and its fingerprint through its params, so changing a default means bumping the
//! builtin's version.

/// The detector's thresholds (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detector {
    /// A normalized singular value counts toward `share_above` when strictly above this.
    pub threshold: f64,
    /// The least fraction of the level before that a sharp fall loses.
    pub drop: f64,
    /// The least absolute loss of share (a fraction of all values) in a sharp fall.
    pub min_drop: f64,
    /// How many logged iterations before `t_k` set the level before.
    pub window: usize,
    /// The last share must regain this fraction of the level before for the layer to count as
    /// recovered.
    pub recover: f64,
}

impl Default for Detector {
    /// `threshold` 0.5 (the SR paper's plots and sn_sr.md §5.6), `drop` 0.5 (at least half the
    /// values above the threshold go under it), `min_drop` 0.15 (at least 15% of all values:
    /// for the paper's layer 9 at ch = 64 that is 10 of 64), `window` 1 (consecutive logged
    /// iterations), `recover` 0.8.
    fn default() -> Self {
        Detector {
            threshold: 0.5,
            drop: 0.5,
            min_drop: 0.15,
            window: 1,
            recover: 0.8,
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
        unit("drop", self.drop, true)?;
        unit("min_drop", self.min_drop, true)?;
        unit("recover", self.recover, true)?;
        if self.window == 0 {
            return Err("`window` is 0; it must be at least 1 logged iteration".into());
        }
        Ok(())
    }

    /// Runs the detector on `(iteration, share_above)` points in ascending iteration order.
    pub fn detect(&self, points: &[(u64, f64)]) -> Detection {
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

    fn series(shares: &[f64]) -> Vec<(u64, f64)> {
        shares
            .iter()
            .enumerate()
            .map(|(k, s)| (1000 * k as u64, *s))
            .collect()
    }

    #[test]
    fn a_sharp_fall_is_found_at_the_later_iteration() {
        let d = Detector::default().detect(&series(&[0.6, 0.62, 0.58, 0.2, 0.05, 0.03]));
        assert_eq!(d.collapse_iteration, Some(3000));
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
    fn a_fall_of_few_values_is_not_collapse() {
        // 2/64 -> 1/64 halves the share but moves one value.
        let d = Detector::default().detect(&series(&[2.0 / 64.0, 1.0 / 64.0]));
        assert_eq!(d.collapse_iteration, None);
    }

    #[test]
    fn recovery_keeps_the_iteration_but_not_the_verdict() {
        let d = Detector::default().detect(&series(&[0.6, 0.1, 0.3, 0.55]));
        assert_eq!(d.collapse_iteration, Some(1000));
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
        assert_eq!(wide.detect(&points).collapse_iteration, Some(3000));
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
                recover: f64::NAN,
                ..Detector::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        assert!(Detector::default().check().is_ok());
    }
}
