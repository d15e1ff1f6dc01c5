//! Kernel Inception Distance against numpy, and the property that makes it KID: unbiased.
//!
//! The fixture `fixtures/kid/kid_case.npz` (two float32 sets, 40 and 33 rows of 2048) and its
//! expected value `kid_expected.json` come from `scripts/fixtures/kid_fixture.py`: the unbiased
//! MMD² with the cubic polynomial kernel written directly in numpy, in float64.

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use stages::metrics::kid::{kernel_inception_distance, kid_terms, KidReference};
use stages::metrics::npy::read_npz;
use stages::metrics::prdc::PointSet;

fn fixture_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kid")
}

#[test]
fn matches_numpy_on_the_fixture() {
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir().join("kid_expected.json")).expect("read expected"),
    )
    .expect("parse expected");
    let mut arrays = read_npz(&fixture_dir().join("kid_case.npz")).expect("read fixture");
    let mut set = |name: &str| {
        let a = arrays.remove(name).expect("array in fixture");
        let [n, d] = a.shape[..] else {
            panic!("{name}: shape {:?}", a.shape)
        };
        // Stored as float32: narrowing the widened values back is exact.
        let values: Vec<f32> = a.data.iter().map(|&v| v as f32).collect();
        PointSet::new(name, &values, n, d).expect("point set")
    };
    let (real, fake) = (set("real"), set("fake"));
    assert_eq!((real.len(), fake.len(), real.dim()), (40, 33, 2048));

    let t = kid_terms(&real, &fake).expect("kid");
    let close = |ours: f64, theirs: &serde_json::Value, what: &str| {
        let theirs = theirs.as_f64().expect("expected number");
        let rel = (ours - theirs).abs() / theirs.abs();
        assert!(
            rel <= 1e-9,
            "{what}: ours {ours:e}, numpy {theirs:e} (rel {rel:e})"
        );
    };
    close(
        t.real_real,
        &expected["terms"]["real_real"],
        "real-real term",
    );
    close(
        t.fake_fake,
        &expected["terms"]["fake_fake"],
        "fake-fake term",
    );
    close(
        t.real_fake,
        &expected["terms"]["real_fake"],
        "real-fake term",
    );
    close(t.value(), &expected["kid"], "kid");
    assert_eq!((t.n_real, t.n_fake), (40, 33));
    let direct = kernel_inception_distance(&real, &fake).expect("kid");
    assert_eq!(direct, t.value());
    eprintln!("kid: ours {direct:e}, numpy {}", expected["kid"]);
}

fn gaussian(n: usize, d: usize, shift: f32, seed: u64) -> PointSet {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = (0..n * d)
        .map(|_| {
            let z: f32 = StandardNormal.sample(&mut rng);
            shift + z
        })
        .collect();
    PointSet::new("gaussian", &values, n, d).expect("point set")
}

/// Sets drawn from one distribution give estimates scattered around 0, of both signs: the
/// unbiased estimator's signature. Here (N(0, I), d = 64, 150 per set) they spread with a
/// standard deviation of about 0.007. A biased (diagonal-including) estimate, or one clamped at
/// 0, is never negative, and the diagonal adds about 2·(E k(x,x) − E k(x,y))/n ≈ 2·7/150 ≈ 0.09,
/// far outside the band and the bound on the mean. A shift of 0.5 per coordinate gives ≈ 1.
#[test]
fn same_distribution_scatters_around_zero_and_a_shift_is_positive() {
    let (n, d) = (150, 64);
    // Independent pairs, so the estimates are independent draws of the null distribution.
    let same: Vec<f64> = (0..16)
        .map(|s| {
            let x = gaussian(n, d, 0.0, 2 * s);
            kernel_inception_distance(&x, &gaussian(n, d, 0.0, 2 * s + 1)).expect("kid")
        })
        .collect();
    // The within-reference term computed once serves every generated set.
    let reference = KidReference::new(gaussian(n, d, 0.0, 0)).expect("reference");
    let shifted = reference.kid(&gaussian(n, d, 0.5, 99)).expect("kid");
    let (neg, pos) = (
        same.iter().filter(|&&v| v < 0.0).count(),
        same.iter().filter(|&&v| v > 0.0).count(),
    );
    assert!(neg > 0 && pos > 0, "both signs expected: {same:?}");
    let widest = same.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    assert!(widest < 0.05, "same distribution: {same:?}");
    let mean = same.iter().sum::<f64>() / same.len() as f64;
    assert!(mean.abs() < 0.01, "mean {mean} of {same:?}");
    assert!(
        shifted > 0.0 && shifted > 20.0 * widest,
        "shifted {shifted} vs same-distribution band {widest}"
    );
}

/// `evaluate`'s default scale: 10 000 reference rows (the `kid_samples` cap) against 2048
/// generated ones, pool3 width. Prints the time; run in release:
/// `cargo test -p stages --release --test stages metrics_kid::evaluate_scale -- --ignored --nocapture`.
#[test]
#[ignore = "10 000 x 2048 features in 2048-d: seconds in release, minutes in debug; run with --ignored"]
fn evaluate_scale() {
    let d = 2048;
    let real = gaussian(10_000, d, 0.0, 11);
    let fake = gaussian(2048, d, 0.0, 12);
    let start = std::time::Instant::now();
    let reference = KidReference::new(real).expect("reference");
    let within = start.elapsed();
    let kid = reference.kid(&fake).expect("kid");
    let total = start.elapsed();
    eprintln!(
        "kid {kid:e}: reference term {:.2} s, generated and cross terms {:.2} s, total {:.2} s ({} rayon threads)",
        within.as_secs_f64(),
        (total - within).as_secs_f64(),
        total.as_secs_f64(),
        rayon::current_num_threads()
    );
    assert!(kid.abs() < 0.01, "same distribution: {kid}");
}
