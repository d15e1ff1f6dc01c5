//! Small fully connected G and D for 2-D point data (rings and grids of Gaussians), the cheap
//! sanity setting for SN/SR: the same training loop, losses and regularizers as the image
//! models, at a size a CPU test can train in seconds.
//!
//! G: `layers` x (dense, ReLU), dense -> dim. D: `layers` x (dense, leaky ReLU 0.1), dense -> 1,
//! every layer SN when the builder says so (the hidden layers are then also SR targets; the
//! output layer has rank 1). Glorot-uniform init, zero biases.

use std::rc::Rc;

use candle_core::Tensor;

use crate::nn::init::Init;
use crate::nn::layers::{Builder, Linear, Mode};
use crate::nn::spectral_norm::SpectralNorm;
use crate::nn::{leaky_relu, Result};

const INIT: Init = Init::GlorotUniform(1.0);

fn stack(
    b: &mut Builder,
    d_in: usize,
    hidden: usize,
    layers: usize,
    d_out: usize,
) -> Result<(Vec<Linear>, Linear)> {
    let mut hidden_layers = Vec::new();
    let mut width = d_in;
    for i in 0..layers {
        hidden_layers.push(b.linear(&format!("l{i}"), width, hidden, true, INIT)?);
        width = hidden;
    }
    Ok((hidden_layers, b.linear("out", width, d_out, true, INIT)?))
}

/// The MLP generator.
pub struct Generator {
    hidden: Vec<Linear>,
    out: Linear,
}

impl Generator {
    /// `z_dim -> hidden^layers -> dim`.
    pub fn new(
        mut b: Builder,
        z_dim: usize,
        hidden: usize,
        layers: usize,
        dim: usize,
    ) -> Result<Self> {
        let (hidden, out) = stack(&mut b, z_dim, hidden, layers, dim)?;
        Ok(Generator { hidden, out })
    }
}

impl super::Generator for Generator {
    fn forward(&self, z: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut h = z.clone();
        for l in &self.hidden {
            h = l.forward(&h, mode)?.relu()?;
        }
        self.out.forward(&h, mode)
    }
}

/// The MLP discriminator.
pub struct Discriminator {
    hidden: Vec<Linear>,
    out: Linear,
    sn: Vec<Rc<SpectralNorm>>,
}

impl Discriminator {
    /// `dim -> hidden^layers -> 1`.
    pub fn new(mut b: Builder, hidden: usize, layers: usize, dim: usize) -> Result<Self> {
        let (hidden, out) = stack(&mut b, dim, hidden, layers, 1)?;
        Ok(Discriminator {
            hidden,
            out,
            sn: b.into_sn_layers(),
        })
    }
}

impl super::Discriminator for Discriminator {
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut h = x.clone();
        for l in &self.hidden {
            h = leaky_relu(&l.forward(&h, mode)?, 0.1)?;
        }
        Ok(self.out.forward(&h, mode)?.flatten_all()?)
    }

    fn sn_layers(&self) -> &[Rc<SpectralNorm>] {
        &self.sn
    }
}
