//! The 2-D mixture-of-Gaussians benchmarks of mode collapse: the ring of 8 and the grid of 25.
//!
//! Constants follow PacGAN's `synthetic_data_experiments/2D{Ring,Grid}_GAN&PacGAN/config.py`,
//! which follows VEEGAN (see `reference/metrics.md` §6.1):
//! - ring: 8 means `(cos 2πk/8, sin 2πk/8)`, k = 0..8, radius 1, σ = 0.01;
//! - grid: 25 means `{-4,-2,0,2,4}²`, σ = 0.05.
//!
//! Each sample picks its mode uniformly at random, then adds isotropic Gaussian noise; the label
//! is the mode index, in the order of [`ring_centers`] / [`grid_centers`]. The angles are
//! `2πk/n` with `k < n`: the Unrolled-GAN notebook's `linspace(0, 2π, 8)` includes the endpoint
//! and silently gives only 7 distinct modes.
//!
//! What must never change silently: the centers, their order (labels and the mode counter
//! depend on it), the sigmas, and the sample stream for a given seed (ChaCha8 seeded with
//! `seed`; mode drawn first, then x noise, then y noise, per sample). Changing any of them
//! changes the data every downstream number is computed on; bump the `synthetic` builtin's
//! version if you must.

use std::collections::BTreeMap;
use std::f64::consts::PI;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::prepared::{Dataset, Samples};

/// Standard deviation of each ring component.
pub const RING_SIGMA: f32 = 0.01;
/// Radius of the ring.
pub const RING_RADIUS: f32 = 1.0;
/// Number of ring components.
pub const RING_MODES: usize = 8;
/// Standard deviation of each grid component.
pub const GRID_SIGMA: f32 = 0.05;
/// Coordinates of the grid along each axis.
pub const GRID_AXIS: [f32; 5] = [-4.0, -2.0, 0.0, 2.0, 4.0];

/// The 8 ring means, k = 0..8 at angle 2πk/8 (k = 0 is `(1, 0)`).
pub fn ring_centers() -> Vec<[f32; 2]> {
    (0..RING_MODES)
        .map(|k| {
            let t = 2.0 * PI * k as f64 / RING_MODES as f64;
            [
                (RING_RADIUS as f64 * t.cos()) as f32,
                (RING_RADIUS as f64 * t.sin()) as f32,
            ]
        })
        .collect()
}

/// The 25 grid means, row-major over x then y: index `5*i + j` is `(GRID_AXIS[i], GRID_AXIS[j])`.
pub fn grid_centers() -> Vec<[f32; 2]> {
    GRID_AXIS
        .iter()
        .flat_map(|&x| GRID_AXIS.iter().map(move |&y| [x, y]))
        .collect()
}

/// `n` points from the ring of 8 Gaussians (labels = mode index), deterministic in `seed`.
pub fn ring(n: usize, seed: u64) -> Dataset {
    mixture("ring", &ring_centers(), RING_SIGMA, n, seed)
}

/// `n` points from the grid of 25 Gaussians (labels = mode index), deterministic in `seed`.
pub fn grid(n: usize, seed: u64) -> Dataset {
    mixture("grid", &grid_centers(), GRID_SIGMA, n, seed)
}

/// The named synthetic set (`ring` or `grid`), for the `synthetic` builtin.
pub fn by_name(name: &str, n: usize, seed: u64) -> Option<Dataset> {
    match name {
        "ring" => Some(ring(n, seed)),
        "grid" => Some(grid(n, seed)),
        _ => None,
    }
}

/// An equal-weight isotropic Gaussian mixture. The noise is drawn in f64 and rounded once, so
/// the f32 output does not depend on how f32 arithmetic is vectorized.
fn mixture(name: &str, centers: &[[f32; 2]], sigma: f32, n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut coords = Vec::with_capacity(n * 2);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let k = rng.random_range(0..centers.len());
        let c = centers[k];
        let dx: f64 = StandardNormal.sample(&mut rng);
        let dy: f64 = StandardNormal.sample(&mut rng);
        coords.push((c[0] as f64 + sigma as f64 * dx) as f32);
        coords.push((c[1] as f64 + sigma as f64 * dy) as f32);
        labels.push(k as u32);
    }
    let mut metadata = BTreeMap::new();
    metadata.insert("seed".to_string(), seed.to_string());
    metadata.insert("sigma".to_string(), sigma.to_string());
    metadata.insert("modes".to_string(), centers.len().to_string());
    metadata.insert("source".to_string(), "synthetic".to_string());
    Dataset {
        name: name.to_string(),
        samples: Samples::Points {
            coords,
            shape: [n, 2],
        },
        labels: Some(labels),
        metadata,
    }
}
