//! Manifold metrics against the reference implementations.
//!
//! The fixture `fixtures/metrics/prdc_case.safetensors` and its expected values
//! `prdc_expected.json` come from `scripts/fixtures/metrics_prdc.py`: Naeem PRDC from the
//! official `prdc` package, Kynkäänniemi P&R from a numpy re-implementation of the official code.

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use stages::metrics::prdc::{manifold_metrics, PointSet, DEFAULT_DC_K, DEFAULT_PR_K};

fn fixture_set(name: &str) -> (Vec<f32>, usize, usize) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics/prdc_case.safetensors");
    let bytes = std::fs::read(&path).expect("read fixture");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("parse fixture");
    let t = st.tensor(name).expect("tensor in fixture");
    let shape = t.shape();
    let values = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (values, shape[0], shape[1])
}

#[test]
fn matches_the_reference_packages_on_a_mode_dropping_case() {
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics/prdc_expected.json"),
        )
        .expect("read expected"),
    )
    .expect("parse expected");
    let (real, n, d) = fixture_set("real");
    let (fake, m, _) = fixture_set("fake");
    let real = PointSet::new("real", &real, n, d).expect("real");
    let fake = PointSet::new("fake", &fake, m, d).expect("fake");
    let got = manifold_metrics(&real, &fake, DEFAULT_PR_K, DEFAULT_DC_K).expect("metrics");

    let close = |a: f64, key: &str, sub: &str| {
        let e = expected[sub][key].as_f64().expect("expected number");
        assert!(
            (a - e).abs() < 1e-12,
            "{sub}.{key}: ours {a}, reference {e}"
        );
    };
    close(got.prdc.precision, "precision", "prdc");
    close(got.prdc.recall, "recall", "prdc");
    close(got.prdc.density, "density", "prdc");
    close(got.prdc.coverage, "coverage", "prdc");
    close(got.improved.precision, "precision", "improved");
    close(got.improved.recall, "recall", "improved");
    assert_eq!((got.n_real, got.n_fake), (300, 250));
    // The case drops two of four clusters: coverage must say so.
    assert!(got.prdc.coverage < 0.6);
}

#[test]
fn identical_sets_are_fully_covered() {
    let (real, n, d) = fixture_set("real");
    let a = PointSet::new("real", &real, n, d).expect("real");
    let b = PointSet::new("real again", &real, n, d).expect("real");
    let got = manifold_metrics(&a, &b, 3, 5).expect("metrics");
    // Each point lies at distance 0 from its copy, inside every open ball of positive radius.
    assert_eq!(got.improved.precision, 1.0);
    assert_eq!(got.improved.recall, 1.0);
    assert_eq!(got.prdc.coverage, 1.0);
    assert_eq!(got.prdc.precision, 1.0);
}

fn gaussian(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * d)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect()
}

/// The sanity vector of the `prdc` README (metrics.md §5): 10k real and 10k fake from the same
/// N(0, I) in 1000-d, k=5, give P≈0.4772, R≈0.4705, D≈1.0555, C≈0.9735. Our draws differ from
/// the README's, so the tolerances are loose; they still fail for any wrong radius convention.
#[test]
#[ignore = "10k x 10k in 1000-d: about a minute on two cores; run with --ignored"]
fn readme_sanity_vector() {
    let (n, d) = (10_000, 1000);
    let real = PointSet::new("real", &gaussian(n, d, 1), n, d).expect("real");
    let fake = PointSet::new("fake", &gaussian(n, d, 2), n, d).expect("fake");
    let got = manifold_metrics(&real, &fake, 3, 5).expect("metrics");
    eprintln!("{got:?}");
    assert!((got.prdc.precision - 0.4772).abs() < 0.02, "{got:?}");
    assert!((got.prdc.recall - 0.4705).abs() < 0.02, "{got:?}");
    assert!((got.prdc.density - 1.0555).abs() < 0.03, "{got:?}");
    assert!((got.prdc.coverage - 0.9735).abs() < 0.01, "{got:?}");
}

/// A quarter-size version of the sanity vector that fits the test budget: same distribution
/// for both sets, so density stays near 1 and coverage near 1 while P and R stay far below 1
/// in high dimension (the README's point).
#[test]
fn same_gaussian_in_high_dimension() {
    let (n, d) = (2000, 256);
    let real = PointSet::new("real", &gaussian(n, d, 3), n, d).expect("real");
    let fake = PointSet::new("fake", &gaussian(n, d, 4), n, d).expect("fake");
    let got = manifold_metrics(&real, &fake, 3, 5).expect("metrics");
    assert!((got.prdc.density - 1.0).abs() < 0.15, "{got:?}");
    assert!(got.prdc.coverage > 0.9, "{got:?}");
    assert!(got.prdc.precision < 0.8 && got.prdc.recall < 0.8, "{got:?}");
}
