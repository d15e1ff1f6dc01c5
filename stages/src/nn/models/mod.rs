//! The generator and discriminator architectures, every width a parameter and the image size
//! and channels taken from the data.
//!
//! - [`cnn`]: the SN paper's standard CNN (Table 3), leaky ReLU 0.1.
//! - [`resnet`]: sngan_projection's 32x32 ResNet G and the SR paper's 10-conv ResNet D
//!   (`arch: resnet`), and the SN paper's STL-10 ResNet of Table 5 (`arch: resnet-stl`).
//! - [`mlp`]: small fully connected G and D for 2-D point data (mixture-of-Gaussians sanity runs).
//!
//! What must never change silently: layer names (they key checkpoints, spectra files and the SR
//! layer numbering, which sorts SN layers by name) and the order in which a model draws its
//! initial values.

pub mod cnn;
pub mod mlp;
pub mod resnet;

use std::rc::Rc;

use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::layers::{Builder, Mode, SnConfig};
use super::spectral_norm::SpectralNorm;
use super::{NnError, Result, Store};

/// What the models must produce / consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataShape {
    /// NCHW images in [-1, 1].
    Images {
        channels: usize,
        height: usize,
        width: usize,
    },
    /// N x dim points.
    Points { dim: usize },
}

/// A generator: noise `z` (N x z_dim) to samples.
pub trait Generator {
    /// A pass that advances ([`Mode::advances`]) uses BatchNorm batch statistics and updates
    /// the running ones.
    fn forward(&self, z: &Tensor, mode: Mode) -> Result<Tensor>;
}

/// A discriminator: samples to one logit each (shape N).
pub trait Discriminator {
    /// A pass that advances steps the SN power iteration; [`Mode::Frozen`] (G's step) leaves
    /// the parameters out of the gradient.
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor>;
    /// Its SN layers in name order (empty without SN).
    fn sn_layers(&self) -> &[Rc<SpectralNorm>];
}

fn d_64() -> usize {
    64
}
fn d_128() -> usize {
    128
}
fn d_256() -> usize {
    256
}
fn d_2() -> usize {
    2
}

/// The `model:` param. Its JSON form (`Serialize`, the same shape as the param) is part of a
/// checkpoint's identity: a field renamed or added changes every identity, so bump `train-gan`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "arch", rename_all = "lowercase", deny_unknown_fields)]
pub enum ModelConfig {
    /// Standard CNN; `g_ch`/`d_ch` are the narrowest widths (64 in the paper; the widest is 8x).
    Cnn {
        #[serde(default = "d_64")]
        g_ch: usize,
        #[serde(default = "d_64")]
        d_ch: usize,
    },
    /// ResNet; `g_ch` 256 and `d_ch` 128 in the SN paper, `d_ch` 32/64/128/256 in the SR grid.
    Resnet {
        #[serde(default = "d_256")]
        g_ch: usize,
        #[serde(default = "d_128")]
        d_ch: usize,
    },
    /// The SN paper's STL-10 ResNet (Table 5); `ch` = 64 is G's narrowest width (it starts at 8ch)
    /// and D's first (it ends at 16ch).
    #[serde(rename = "resnet-stl")]
    ResnetStl {
        #[serde(default = "d_64")]
        ch: usize,
    },
    /// MLP with `layers` hidden layers: G's of `hidden` units, D's of `d_hidden` (default
    /// `hidden`). A D narrower than G is the SR paper's setting for mode collapse (its groups
    /// B/C: D width 64 or 32 against G 256).
    Mlp {
        #[serde(default = "d_128")]
        hidden: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        d_hidden: Option<usize>,
        #[serde(default = "d_2")]
        layers: usize,
    },
}

/// A freshly initialised generator and discriminator.
pub struct Gan {
    /// The generator.
    pub g: Box<dyn Generator>,
    /// The discriminator.
    pub d: Box<dyn Discriminator>,
}

impl ModelConfig {
    /// Builds G into `g_store` and D into `d_store`, drawing G's initial values from `g_rng` and
    /// D's (weights, then `u` vectors as each layer is made) from `d_rng`.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        &self,
        data: DataShape,
        z_dim: usize,
        d_sn: SnConfig,
        g_store: &mut Store,
        d_store: &mut Store,
        g_rng: &mut ChaCha8Rng,
        d_rng: &mut ChaCha8Rng,
    ) -> Result<Gan> {
        let gb = Builder::new(g_store, g_rng, SnConfig::OFF);
        let db = Builder::new(d_store, d_rng, d_sn);
        match (self, data) {
            (
                ModelConfig::Cnn { g_ch, d_ch },
                DataShape::Images {
                    channels,
                    height,
                    width,
                },
            ) => {
                let bottom = image_bottom("cnn", height, width)?;
                Ok(Gan {
                    g: Box::new(cnn::Generator::new(gb, z_dim, *g_ch, channels, bottom)?),
                    d: Box::new(cnn::Discriminator::new(db, *d_ch, channels, bottom)?),
                })
            }
            (
                ModelConfig::Resnet { g_ch, d_ch },
                DataShape::Images {
                    channels,
                    height,
                    width,
                },
            ) => {
                let bottom = image_bottom("resnet", height, width)?;
                Ok(Gan {
                    g: Box::new(resnet::Generator::new(gb, z_dim, *g_ch, channels, bottom)?),
                    d: Box::new(resnet::Discriminator::new(db, *d_ch, channels)?),
                })
            }
            (
                ModelConfig::ResnetStl { ch },
                DataShape::Images {
                    channels,
                    height,
                    width,
                },
            ) => {
                let bottom = image_bottom("resnet-stl", height, width)?;
                Ok(Gan {
                    g: Box::new(resnet::Generator::stl(gb, z_dim, *ch, channels, bottom)?),
                    d: Box::new(resnet::Discriminator::stl(db, *ch, channels)?),
                })
            }
            (
                ModelConfig::Mlp {
                    hidden,
                    d_hidden,
                    layers,
                },
                DataShape::Points { dim },
            ) => Ok(Gan {
                g: Box::new(mlp::Generator::new(gb, z_dim, *hidden, *layers, dim)?),
                d: Box::new(mlp::Discriminator::new(
                    db,
                    d_hidden.unwrap_or(*hidden),
                    *layers,
                    dim,
                )?),
            }),
            (cfg, shape) => Err(NnError::Unsupported {
                model: format!("{cfg:?}"),
                what: format!("data of shape {shape:?}"),
                hint: "use `arch: mlp` for point data and `arch: cnn`, `resnet` or `resnet-stl` for images"
                    .to_string(),
            }),
        }
    }
}

/// The generators start from `H/8 x H/8` and double three times, so images must be square with
/// a side divisible by 8 (32 for CIFAR-10, 48 for STL-10).
fn image_bottom(model: &str, height: usize, width: usize) -> Result<usize> {
    if height != width || !height.is_multiple_of(8) || height == 0 {
        return Err(NnError::Unsupported {
            model: model.to_string(),
            what: format!("{height}x{width} images"),
            hint: "images must be square with a side divisible by 8; resize them in the data stage"
                .to_string(),
        });
    }
    Ok(height / 8)
}
