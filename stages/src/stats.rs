//! The statistics the verdict states: a mean with its 95% t-interval, a one-sided Mann–Whitney
//! U test (SR vs SN on a per-seed metric), and Fisher's exact test on a 2x2 table (spectral
//! collapse x mode collapse, or collapsed runs per arm).
//!
//! Every number here is checked against scipy (`scripts/fixtures/stats_scipy.py` writes
//! `stages/tests/fixtures/stats_scipy.json`, `stages/tests/stats_scipy.rs` compares to 1e-9
//! relative), so the definitions follow scipy's and must never change silently:
//!
//! - [`mean`] and [`sample_std`], the one mean and standard deviation of the project (the
//!   verdict's and the report tables'): a Kahan-compensated sum in order divided by the count,
//!   and Welford's online update, over the values that are there.
//! - [`mean_ci`]: the sample mean and `mean ± t_{0.975, n-1} s / sqrt(n)` with `s` the sample
//!   standard deviation (`ddof = 1`); scipy's `stats.t.interval(0.95, n-1, mean, sem)`. With one
//!   value there is no interval (`None`), not a zero-width one.
//! - [`mann_whitney_u`]: `U = R_x - n_x (n_x + 1) / 2` with mid-ranks for ties, the statistic of
//!   the *first* sample as scipy >= 1.7 reports it. `Greater` asks whether `x` tends to be
//!   larger than `y` (`p = P(U >= u)`), `Less` whether smaller (`p = P(U <= u)`).
//!   - **Without ties** the p-value is *exact*: the null distribution of `U` counted over all
//!     `C(n_x + n_y, n_x)` rank assignments (scipy `method="exact"`), for any sample sizes up to
//!     [`EXACT_MAX`] values in all.
//!   - **With ties** it is the normal approximation with the tie correction and the continuity
//!     correction (scipy `method="asymptotic"`, `use_continuity=True`): `z = (u - n_x n_y / 2
//!     ∓ 1/2) / s`, `s^2 = n_x n_y / 12 ((n + 1) - sum(t^3 - t) / (n (n - 1)))`. scipy's
//!     `method="auto"` would also use it for untied samples of 8 or more; we stay exact there,
//!     which is the better number and what the fixture checks.
//! - [`fisher_exact`]: the hypergeometric law of the top-left cell given the margins.
//!   `Greater`: `P(X >= a)`; `Less`: `P(X <= a)`; `TwoSided`: the sum of the probabilities of the
//!   tables no more likely than the observed one, with scipy's relative tolerance `1 + 1e-7` on
//!   "no more likely".
//!
//! Special functions: `lgamma` and `erfc` from `libm` (FreeBSD msun ports, below an ulp); the
//! regularized incomplete beta by its continued fraction (modified Lentz), inverted by bisection
//! to the last bit for the t quantile.

use thiserror::Error;

/// The largest total sample size for which [`mann_whitney_u`] counts the exact distribution (the
/// count costs about `(n_x n_y)^2` additions: 50 seeds per arm is 6 million). Past it we refuse
/// rather than switch to an approximation silently.
pub const EXACT_MAX: usize = 100;

/// Which side a one-sided test looks at, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alternative {
    /// The first sample (or the top-left cell) tends to be larger.
    Greater,
    /// The first sample (or the top-left cell) tends to be smaller.
    Less,
    /// Either way (only [`fisher_exact`]).
    TwoSided,
}

/// Why a statistic could not be computed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StatsError {
    #[error("`{what}` needs at least {need} values, got {got}")]
    TooFew {
        what: &'static str,
        need: usize,
        got: usize,
    },
    #[error("`{what}` holds a NaN or infinite value; drop the diverged runs first")]
    NonFinite { what: &'static str },
    #[error("the exact Mann–Whitney distribution is counted for at most {EXACT_MAX} values in all, got {got}; split the comparison")]
    TooLarge { got: usize },
    #[error("the Mann–Whitney test is one-sided here; ask for `Greater` or `Less`")]
    TwoSidedMannWhitney,
}

/// A mean with its 95% t-interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanCi {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (`ddof = 1`); `None` for one value.
    pub sd: Option<f64>,
    /// `(low, high)`; `None` for one value.
    pub ci95: Option<(f64, f64)>,
}

/// The mean of `values` and its 95% t-interval (see the module docs).
pub fn mean_ci(values: &[f64]) -> Result<MeanCi, StatsError> {
    finite("values", values)?;
    let n = values.len();
    let present: Vec<Option<f64>> = values.iter().copied().map(Some).collect();
    let Some(mean) = mean(&present) else {
        return Err(StatsError::TooFew {
            what: "values",
            need: 1,
            got: 0,
        });
    };
    let Some(sd) = sample_std(&present) else {
        return Ok(MeanCi {
            n,
            mean,
            sd: None,
            ci95: None,
        });
    };
    let half = t_quantile(0.975, (n - 1) as f64) * sd / (n as f64).sqrt();
    Ok(MeanCi {
        n,
        mean,
        sd: Some(sd),
        ci95: Some((mean - half, mean + half)),
    })
}

/// The mean of the values that are there, `None` when none is. A group of one row is its
/// value as it is; a larger one is a Kahan-compensated sum in order, divided by the count.
pub fn mean(values: &[Option<f64>]) -> Option<f64> {
    if let [only] = values {
        return *only;
    }
    let (mut sum, mut err, mut n) = (0.0f64, 0.0f64, 0usize);
    for &x in values.iter().flatten() {
        let y = x - err;
        let next = sum + y;
        let next_err = (next - sum) - y;
        sum = next;
        // The error stays finite, so that inf - inf brings no NaN in.
        if next_err.is_finite() {
            err = next_err;
        }
        n += 1;
    }
    (n > 0).then(|| sum / n as f64)
}

/// The sample standard deviation (ddof = 1) of the values that are there, by Welford's online
/// update; `None` for fewer than two values.
pub fn sample_std(values: &[Option<f64>]) -> Option<f64> {
    let (mut mean, mut m2, mut n) = (0.0f64, 0.0f64, 0u64);
    for &x in values.iter().flatten() {
        n += 1;
        let d1 = x - mean;
        mean += d1 / n as f64;
        m2 += d1 * (x - mean);
    }
    (n > 1).then(|| (m2 / (n - 1) as f64).sqrt())
}

/// The result of a Mann–Whitney U test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// `U` of the first sample.
    pub u: f64,
    pub p: f64,
    /// Whether `p` is exact (no ties) or the tie-corrected normal approximation.
    pub exact: bool,
}

/// One-sided Mann–Whitney U test of `x` against `y` (see the module docs).
pub fn mann_whitney_u(x: &[f64], y: &[f64], alt: Alternative) -> Result<MannWhitney, StatsError> {
    finite("x", x)?;
    finite("y", y)?;
    for (what, v) in [("x", x), ("y", y)] {
        if v.is_empty() {
            return Err(StatsError::TooFew {
                what,
                need: 1,
                got: 0,
            });
        }
    }
    if alt == Alternative::TwoSided {
        return Err(StatsError::TwoSidedMannWhitney);
    }
    let (nx, ny) = (x.len(), y.len());
    let n = nx + ny;
    // Mid-ranks over the pooled sample, and the tie groups' sizes.
    let mut pooled: Vec<(f64, bool)> = x
        .iter()
        .map(|v| (*v, true))
        .chain(y.iter().map(|v| (*v, false)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_x = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && pooled[j + 1].0 == pooled[i].0 {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_x += mid * pooled[i..=j].iter().filter(|p| p.1).count() as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let u = rank_x - (nx * (nx + 1)) as f64 / 2.0;
    let (nxf, nyf, nf) = (nx as f64, ny as f64, n as f64);
    if tie_term == 0.0 {
        if n > EXACT_MAX {
            return Err(StatsError::TooLarge { got: n });
        }
        // Without ties U is an integer; P(U >= u) or P(U <= u) from the exact counts.
        let counts = u_distribution(nx, ny);
        let total: f64 = counts.iter().sum();
        let k = u.round() as usize;
        let tail: f64 = match alt {
            Alternative::Greater => counts[k..].iter().sum(),
            _ => counts[..=k].iter().sum(),
        };
        return Ok(MannWhitney {
            u,
            p: (tail / total).min(1.0),
            exact: true,
        });
    }
    let mu = nxf * nyf / 2.0;
    let s = (nxf * nyf / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)))).sqrt();
    let p = match alt {
        Alternative::Greater => normal_sf((u - mu - 0.5) / s),
        _ => normal_sf((mu - u - 0.5) / s),
    };
    Ok(MannWhitney {
        u,
        p: p.min(1.0),
        exact: false,
    })
}

/// `counts[u]`: how many of the `C(m + n, m)` orderings of `m` x's and `n` y's give `U_x = u`,
/// as f64 (exact below 2^53, and relative round-off far below 1e-12 above).
fn u_distribution(m: usize, n: usize) -> Vec<f64> {
    // The largest of the pooled values is an x (it beats all n y's: U grows by n) or a y:
    // c(m, n, u) = c(m - 1, n, u - n) + c(m, n - 1, u), c(0, n, 0) = c(m, 0, 0) = 1. Kept one
    // `a` at a time: `prev[b]` is c(a - 1, b, .), `cur[b]` is c(a, b, .).
    let max_u = m * n;
    let mut prev: Vec<Vec<f64>> = (0..=n).map(|_| vec![1.0]).collect(); // a = 0: only U = 0
    for a in 1..=m {
        let mut cur: Vec<Vec<f64>> = Vec::with_capacity(n + 1);
        for b in 0..=n {
            let len = a * b + 1;
            let mut row = vec![0.0; len];
            // c(a - 1, b, u - b)
            for (u, c) in prev[b].iter().enumerate() {
                row[u + b] += c;
            }
            // c(a, b - 1, u)
            if b > 0 {
                for (u, c) in cur[b - 1].iter().enumerate() {
                    row[u] += c;
                }
            }
            cur.push(row);
        }
        prev = cur;
    }
    let out = prev.swap_remove(n);
    debug_assert_eq!(out.len(), max_u + 1);
    out
}

/// Fisher's exact test on the 2x2 table `[[a, b], [c, d]]` (see the module docs).
pub fn fisher_exact(table: [[u64; 2]; 2], alt: Alternative) -> f64 {
    let [[a, b], [c, d]] = table;
    let row1 = a + b;
    let col1 = a + c;
    let total = a + b + c + d;
    // X ~ hypergeometric: X of the col1 marked among total, row1 drawn.
    let lo = row1.saturating_sub(total - col1);
    let hi = row1.min(col1);
    let ln_pmf = |x: u64| -> f64 {
        ln_choose(col1, x) + ln_choose(total - col1, row1 - x) - ln_choose(total, row1)
    };
    let pmf = |x: u64| ln_pmf(x).exp();
    let p = match alt {
        Alternative::Greater => (a..=hi).map(pmf).sum::<f64>(),
        Alternative::Less => (lo..=a).map(pmf).sum::<f64>(),
        Alternative::TwoSided => {
            let observed = pmf(a);
            (lo..=hi)
                .map(pmf)
                .filter(|p| *p <= observed * (1.0 + 1e-7))
                .sum::<f64>()
        }
    };
    p.min(1.0)
}

fn ln_choose(n: u64, k: u64) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

fn ln_factorial(n: u64) -> f64 {
    if n < 2 {
        0.0
    } else {
        libm::lgamma(n as f64 + 1.0)
    }
}

fn finite(what: &'static str, values: &[f64]) -> Result<(), StatsError> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(StatsError::NonFinite { what })
    }
}

/// `P(Z > z)` for a standard normal `Z`.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// The Student t distribution's CDF with `df` degrees of freedom.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let x = df / (df + t * t);
    let tail = 0.5 * beta_inc(df / 2.0, 0.5, x);
    if t > 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The Student t quantile: the `t` with `t_cdf(t, df) = p`, for `p` in `(0, 1)`.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if p == 0.5 {
        return 0.0;
    }
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    // The upper tail `q = 1 - p` solves I_x(df/2, 1/2) = 2 q with x = df / (df + t^2); the
    // tail is monotone in t, so bisect on t from a bracket that surely holds the root.
    let q2 = 2.0 * (1.0 - p);
    let tail = |t: f64| beta_inc(df / 2.0, 0.5, df / (df + t * t));
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    while tail(hi) > q2 {
        lo = hi;
        hi *= 2.0;
        if !hi.is_finite() {
            return f64::INFINITY;
        }
    }
    // Bisection to adjacent floats.
    for _ in 0..2000 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if tail(mid) > q2 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The regularized incomplete beta function `I_x(a, b)`.
pub fn beta_inc(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front =
        libm::lgamma(a + b) - libm::lgamma(a) - libm::lgamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    // The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry
    // I_x(a, b) = 1 - I_{1-x}(b, a) otherwise.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

/// The continued fraction of the incomplete beta function (modified Lentz).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let floor = |v: f64| if v.abs() < TINY { TINY } else { v };
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / floor(1.0 - qab * x / qap);
    let mut h = d;
    // One Lentz step with the next partial numerator `aa`: updates `c` and `d`, returns the
    // factor by which the convergent changes.
    let mut step = |aa: f64| {
        d = 1.0 / floor(1.0 + aa * d);
        c = floor(1.0 + aa / c);
        d * c
    };
    for m in 1..10_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        h *= step(m * (b - m) * x / ((qam + m2) * (a + m2)));
        let del = step(-(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)));
        h *= del;
        if (del - 1.0).abs() < 1e-16 {
            break;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_is_kahan_compensated_and_skips_nulls() {
        assert_eq!(mean(&[]), None);
        assert_eq!(mean(&[None, None]), None);
        assert_eq!(mean(&[Some(2.0), None, Some(4.0)]), Some(3.0));
        // Three 0.8s: the bits of the fixture's summary (0.8000000000000002).
        assert_eq!(
            mean(&[Some(0.8), Some(0.8), Some(0.8)]),
            Some(0.8000000000000002)
        );
        // A one-row group is its value, -0.0 included; the sum of two starts at +0.0.
        assert_eq!(
            mean(&[Some(-0.0)]).map(f64::to_bits),
            Some((-0.0f64).to_bits())
        );
        assert_eq!(
            mean(&[Some(-0.0), None]).map(f64::to_bits),
            Some(0.0f64.to_bits())
        );
        // Compensation: 1 + 1e-16 + 1e-16 keeps the small terms.
        assert_eq!(
            mean(&[Some(1.0), Some(1e-16), Some(1e-16)]),
            Some((1.0 + 2e-16) / 3.0)
        );
        assert_eq!(mean(&[Some(f64::INFINITY), Some(1.0)]), Some(f64::INFINITY));
    }

    #[test]
    fn std_is_the_sample_std() {
        assert_eq!(sample_std(&[Some(1.0)]), None);
        assert_eq!(sample_std(&[Some(1.0), None]), None);
        assert_eq!(sample_std(&[Some(3.0), Some(4.0)]), Some(0.5f64.sqrt()));
        assert_eq!(sample_std(&[Some(2.0), Some(2.0), Some(2.0)]), Some(0.0));
        // The fixture's d32 SN modes (3, 5, 8, 5 in run order): 2.0615528128088303.
        let modes = [Some(3.0), Some(5.0), Some(8.0), Some(5.0)];
        assert_eq!(sample_std(&modes), Some(2.0615528128088303));
    }

    #[test]
    fn t_quantiles_in_closed_form() {
        // df = 1 is Cauchy: tan(pi (p - 1/2)); df = 2: (2p - 1) sqrt(2 / (4 p (1 - p))).
        let p: f64 = 0.975;
        let cauchy = (std::f64::consts::PI * (p - 0.5)).tan();
        assert!((t_quantile(p, 1.0) - cauchy).abs() < 1e-12 * cauchy);
        let two = (2.0 * p - 1.0) * (2.0 / (4.0 * p * (1.0 - p))).sqrt();
        assert!((t_quantile(p, 2.0) - two).abs() < 1e-12 * two);
        assert!((t_cdf(t_quantile(0.9, 7.0), 7.0) - 0.9).abs() < 1e-14);
    }

    #[test]
    fn u_distribution_counts_every_ordering() {
        // C(5, 2) = 10 orderings of 2 x's and 3 y's; U runs 0..=6 with counts 1,1,2,2,2,1,1.
        assert_eq!(
            u_distribution(2, 3),
            vec![1.0, 1.0, 2.0, 2.0, 2.0, 1.0, 1.0]
        );
        let total: f64 = u_distribution(6, 7).iter().sum();
        assert_eq!(total, 1716.0); // C(13, 6)
    }

    #[test]
    fn separated_samples_give_the_smallest_exact_p() {
        // x all above y: U = nx ny, p = 1 / C(nx + ny, nx).
        let r = mann_whitney_u(
            &[5.0, 6.0, 7.0],
            &[1.0, 2.0, 3.0, 4.0],
            Alternative::Greater,
        )
        .unwrap();
        assert_eq!(r.u, 12.0);
        assert!(r.exact);
        assert!((r.p - 1.0 / 35.0).abs() < 1e-15);
        let r = mann_whitney_u(&[5.0, 6.0, 7.0], &[1.0, 2.0, 3.0, 4.0], Alternative::Less).unwrap();
        assert_eq!(r.p, 1.0);
    }

    #[test]
    fn fisher_one_sided_of_the_design_note() {
        // DESIGN.md §5: 0/6 vs 3/6 collapsed gives p ~ 0.09; 0/10 vs 5/10 gives ~ 0.016.
        let p = fisher_exact([[3, 3], [0, 6]], Alternative::Greater);
        assert!((p - 20.0 / 220.0).abs() < 1e-14, "{p}");
        let p = fisher_exact([[5, 5], [0, 10]], Alternative::Greater);
        assert!((p - 0.016253869969040196).abs() < 1e-12, "{p}");
    }

    #[test]
    fn bad_inputs_are_errors_naming_the_argument() {
        let e = mean_ci(&[1.0, f64::NAN]).unwrap_err();
        assert!(e.to_string().contains("`values`"), "{e}");
        assert!(mean_ci(&[]).is_err());
        let one = mean_ci(&[2.0]).unwrap();
        assert_eq!((one.mean, one.ci95), (2.0, None));
        assert!(mann_whitney_u(&[], &[1.0], Alternative::Less).is_err());
        assert!(mann_whitney_u(&[1.0], &[2.0], Alternative::TwoSided).is_err());
    }
}
