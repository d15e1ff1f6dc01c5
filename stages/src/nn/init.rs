//! Weight initialisers, drawn on the host from a seeded `rand_chacha` stream.
//!
//! What must never change silently: the order in which a model draws its tensors and the
//! distribution of each. Both decide the initial weights for a seed, and therefore every
//! result of a run; a change here must bump the `train-gan` builtin version.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// How a weight tensor is initialised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// N(0, std^2): the DCGAN/chainer-gan-lib convention for the standard CNN.
    Normal(f32),
    /// Chainer's `GlorotUniform(scale)`: U(-a, a), a = scale * sqrt(6 / (fan_in + fan_out)),
    /// the sngan_projection convention for the ResNets.
    GlorotUniform(f32),
    /// Every value equal to the constant (biases, BatchNorm scale and shift).
    Constant(f32),
}

impl Init {
    /// `n` values for a tensor with the given fans.
    pub fn draw(self, rng: &mut ChaCha8Rng, n: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
        match self {
            Init::Normal(std) => (0..n)
                .map(|_| {
                    let z: f32 = StandardNormal.sample(rng);
                    z * std
                })
                .collect(),
            Init::GlorotUniform(scale) => {
                let a = scale * (6.0 / (fan_in + fan_out) as f32).sqrt();
                (0..n).map(|_| rng.random_range(-a..a)).collect()
            }
            Init::Constant(c) => vec![c; n],
        }
    }
}

/// `n` standard-normal values (SN `u` vectors, noise `z`).
pub fn standard_normal(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}
