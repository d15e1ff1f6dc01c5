//! Stacked MNIST (reference/metrics.md §6.2): 1000 modes from three MNIST digits as RGB.
//!
//! Following PacGAN's `load_mnist`, the pool is MNIST train and test together (70,000 digits);
//! each sample draws three digits independently and uniformly from the pool (with replacement)
//! and stacks them as channels 0, 1, 2. The label is the mode, `100*d0 + 10*d1 + d2`, where `dk`
//! is the digit in channel k, so a classifier applied per channel recovers it.
//!
//! What must never change silently: the pool order (train then test, file order), the draw
//! order (channel 0, 1, 2 per sample, from ChaCha8 seeded with `seed`), and the label formula.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::prepared::{Dataset, Samples};
use super::DataError;

/// Builds `n` Stacked-MNIST samples from a grey MNIST pool (`[N,1,H,W]` pixels and labels).
pub fn stack(pool: &Dataset, n: usize, seed: u64) -> Result<Dataset, DataError> {
    let invalid = |m: String| DataError::Invalid {
        name: pool.name.clone(),
        message: m,
    };
    let Samples::Images { pixels, shape } = &pool.samples else {
        return Err(invalid("stacked MNIST needs images, found points".into()));
    };
    let [count, c, h, w] = *shape;
    if c != 1 || count == 0 {
        return Err(invalid(format!(
            "stacked MNIST needs a non-empty grey pool, found shape {shape:?}"
        )));
    }
    let labels = pool
        .labels
        .as_ref()
        .ok_or_else(|| invalid("stacked MNIST needs labels".into()))?;
    if let Some(bad) = labels.iter().find(|&&l| l > 9) {
        return Err(invalid(format!("label {bad} is not a digit")));
    }
    let plane = h * w;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n * 3 * plane);
    let mut modes = Vec::with_capacity(n);
    for _ in 0..n {
        let mut mode = 0u32;
        for _ in 0..3 {
            let i = rng.random_range(0..count);
            out.extend_from_slice(&pixels[i * plane..(i + 1) * plane]);
            mode = mode * 10 + labels[i];
        }
        modes.push(mode);
    }
    let mut metadata = BTreeMap::new();
    metadata.insert("seed".to_string(), seed.to_string());
    metadata.insert("pool".to_string(), pool.name.clone());
    metadata.insert("pool_size".to_string(), count.to_string());
    metadata.insert("modes".to_string(), "1000".to_string());
    Ok(Dataset {
        name: "stacked-mnist".to_string(),
        samples: Samples::Images {
            pixels: out,
            shape: [n, 3, h, w],
        },
        labels: Some(modes),
        metadata,
    })
}
