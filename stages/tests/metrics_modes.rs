//! Mode-collapse counts on hand-made samples whose answers follow from the definitions in
//! `shared/reference/metrics.md` §6 (3-σ threshold, KL against uniform over modes).

use stages::metrics::modes::{kl_to_uniform, stacked_mnist_modes, Mixture, HIGH_QUALITY_STD};

fn ring() -> Mixture {
    let means = (0..8)
        .flat_map(|k| {
            let a = 2.0 * std::f64::consts::PI * f64::from(k) / 8.0;
            [a.cos(), a.sin()]
        })
        .collect();
    Mixture::new(means, 2, 0.01).expect("ring mixture")
}

fn grid() -> Mixture {
    let means = (-2..=2)
        .flat_map(|i| (-2..=2).flat_map(move |j| [f64::from(2 * i), f64::from(2 * j)]))
        .collect();
    Mixture::new(means, 2, 0.05).expect("grid mixture")
}

#[test]
fn ring_with_three_modes_hit_uniformly() {
    // Two points on each of modes 0, 2, 4 (one exactly on the mean, one 2σ off), plus two
    // points far from every mode: 3 modes, 6/8 high quality, KL = ln(8/3).
    let pts: Vec<f32> = vec![
        1.0, 0.0, 1.02, 0.0, // mode 0
        0.0, 1.0, 0.0, 0.98, // mode 2
        -1.0, 0.0, -1.0, 0.02, // mode 4
        0.5, 0.5, 0.0, 0.0, // off the ring
    ];
    let m = ring().evaluate(&pts).expect("evaluate");
    assert_eq!(m.modes_captured, 3);
    assert_eq!(m.modes_total, 8);
    assert_eq!(m.n_samples, 8);
    assert_eq!(m.n_high_quality, 6);
    assert_eq!(m.high_quality_share, 0.75);
    assert_eq!(m.counts, vec![2, 0, 2, 0, 2, 0, 0, 0]);
    let kl = m.reverse_kl.expect("kl defined");
    assert!((kl - (8.0f64 / 3.0).ln()).abs() < 1e-12, "kl {kl}");
}

#[test]
fn threshold_is_three_sigma_and_strict() {
    let r = ring();
    // 2.99σ from mode 0 counts, 3.01σ does not (σ = 0.01).
    let inside = r.evaluate(&[1.0299, 0.0]).expect("evaluate");
    let outside = r.evaluate(&[1.0301, 0.0]).expect("evaluate");
    assert_eq!(inside.n_high_quality, 1);
    assert_eq!(outside.n_high_quality, 0);
    assert_eq!(outside.modes_captured, 0);
    assert_eq!(outside.reverse_kl, None);
    assert_eq!(HIGH_QUALITY_STD, 3.0);
}

#[test]
fn grid_all_modes_uniform_has_zero_kl() {
    let g = grid();
    let mut pts = Vec::new();
    for i in -2..=2 {
        for j in -2..=2 {
            // 0.1 = 2σ off the mean along x: still high quality.
            pts.extend([2.0 * i as f32 + 0.1, 2.0 * j as f32]);
            pts.extend([2.0 * i as f32, 2.0 * j as f32 - 0.1]);
        }
    }
    let m = g.evaluate(&pts).expect("evaluate");
    assert_eq!(m.modes_captured, 25);
    assert_eq!(m.high_quality_share, 1.0);
    assert!(m.reverse_kl.expect("kl").abs() < 1e-12);
}

#[test]
fn grid_collapsed_to_one_mode_has_kl_ln25() {
    let pts: Vec<f32> = [0.0f32, 0.0].repeat(40);
    let m = grid().evaluate(&pts).expect("evaluate");
    assert_eq!(m.modes_captured, 1);
    assert_eq!(m.counts[12], 40);
    assert!((m.reverse_kl.expect("kl") - 25f64.ln()).abs() < 1e-12);
}

#[test]
fn kl_of_a_skewed_histogram() {
    // p = (3/4, 1/4, 0, 0) against U4: 3/4 ln 3 + 1/4 ln 1.
    let kl = kl_to_uniform(&[3, 1, 0, 0]).expect("kl");
    assert!((kl - 0.75 * 3f64.ln()).abs() < 1e-12);
    assert_eq!(kl_to_uniform(&[0, 0]), None);
}

#[test]
fn stacked_mnist_counts_distinct_triples() {
    // Triples 123, 123, 456, 999: 3 modes; p = (1/2, 1/4, 1/4).
    let digits = [1, 2, 3, 1, 2, 3, 4, 5, 6, 9, 9, 9];
    let m = stacked_mnist_modes(&digits).expect("modes");
    assert_eq!(m.modes_captured, 3);
    assert_eq!(m.modes_total, 1000);
    assert_eq!(m.n_samples, 4);
    let expect = 0.5 * 500f64.ln() + 2.0 * 0.25 * 250f64.ln();
    assert!((m.reverse_kl - expect).abs() < 1e-12);
    assert!(stacked_mnist_modes(&[1, 2]).is_err());
    assert!(stacked_mnist_modes(&[1, 2, 10]).is_err());
}

#[test]
fn mixture_rejects_bad_input() {
    assert!(Mixture::new(vec![0.0, 1.0, 2.0], 2, 0.1).is_err());
    assert!(Mixture::new(vec![0.0, 1.0], 2, 0.0).is_err());
    assert!(ring().evaluate(&[1.0, 0.0, 1.0]).is_err());
    assert!(ring().evaluate(&[f32::NAN, 0.0]).is_err());
}
