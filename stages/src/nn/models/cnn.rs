//! The SN paper's standard CNN (Table 3), widths parameterized by the narrowest one, `ch`.
//!
//! G: dense `z -> (H/8)^2 x 8ch`, BN, ReLU; three `deconv 4x4 s2 p1` halving the width
//! (BN, ReLU each); `conv 3x3 -> C`, tanh. D: the seven convs `3x3 s1 / 4x4 s2` pairs with
//! widths ch, ch, 2ch, 2ch, 4ch, 4ch, 8ch, leaky ReLU 0.1 after each, and a dense to one logit;
//! all padded by 1 (32 -> 16 -> 8 -> 4). Every D layer is SN when the builder says so.
//!
//! Deliberate choices where the paper is silent: the BN after G's dense acts on the reshaped
//! feature map (per channel); weights start from N(0, 0.02) (the DCGAN / chainer-gan-lib
//! convention), biases from 0. Do not copy chainer-gan-lib's `SNDCGANDiscriminator` widths or its
//! slope 0.2 (sn_sr.md §3.3).

use std::rc::Rc;

use candle_core::Tensor;

use crate::nn::init::Init;
use crate::nn::layers::{BatchNorm2d, Builder, Conv2d, ConvTranspose2d, Linear, Mode};
use crate::nn::spectral_norm::SpectralNorm;
use crate::nn::{relu, Result};

const INIT: Init = Init::Normal(0.02);
const SLOPE: f64 = 0.1;

/// The standard CNN generator.
pub struct Generator {
    l0: Linear,
    bn0: BatchNorm2d,
    deconvs: Vec<(ConvTranspose2d, BatchNorm2d)>,
    c4: Conv2d,
    ch: usize,
    bottom: usize,
}

impl Generator {
    /// `ch` = 64 in the paper (so the dense layer outputs 512 maps).
    pub fn new(
        mut b: Builder,
        z_dim: usize,
        ch: usize,
        channels: usize,
        bottom: usize,
    ) -> Result<Self> {
        let l0 = b.linear("l0", z_dim, bottom * bottom * ch * 8, true, INIT)?;
        let bn0 = b.batch_norm("bn0", ch * 8)?;
        let mut deconvs = Vec::new();
        for (i, (c_in, c_out)) in [(8 * ch, 4 * ch), (4 * ch, 2 * ch), (2 * ch, ch)]
            .into_iter()
            .enumerate()
        {
            let dc = b.conv_transpose(&format!("dc{}", i + 1), c_in, c_out, 4, 2, 1, INIT)?;
            let bn = b.batch_norm(&format!("bn{}", i + 1), c_out)?;
            deconvs.push((dc, bn));
        }
        let c4 = b.conv("c4", ch, channels, 3, 1, 1, INIT)?;
        Ok(Generator {
            l0,
            bn0,
            deconvs,
            c4,
            ch,
            bottom,
        })
    }
}

impl super::Generator for Generator {
    fn forward(&self, z: &Tensor, mode: Mode) -> Result<Tensor> {
        let n = z.dims()[0];
        let h = self
            .l0
            .forward(z, mode)?
            .reshape((n, self.ch * 8, self.bottom, self.bottom))?;
        let mut h = relu(&self.bn0.forward(&h, mode)?)?;
        for (dc, bn) in &self.deconvs {
            h = relu(&bn.forward(&dc.forward(&h, mode)?, mode)?)?;
        }
        Ok(self.c4.forward(&h, mode)?.tanh()?)
    }
}

/// The standard CNN discriminator (all layers SN).
pub struct Discriminator {
    convs: Vec<Conv2d>,
    l4: Linear,
    sn: Vec<Rc<SpectralNorm>>,
}

impl Discriminator {
    /// `ch` = 64 in the paper (widths 64..512).
    pub fn new(mut b: Builder, ch: usize, channels: usize, bottom: usize) -> Result<Self> {
        let plan = [
            ("c0_0", channels, ch, 3, 1),
            ("c0_1", ch, ch, 4, 2),
            ("c1_0", ch, 2 * ch, 3, 1),
            ("c1_1", 2 * ch, 2 * ch, 4, 2),
            ("c2_0", 2 * ch, 4 * ch, 3, 1),
            ("c2_1", 4 * ch, 4 * ch, 4, 2),
            ("c3_0", 4 * ch, 8 * ch, 3, 1),
        ];
        let mut convs = Vec::new();
        for (name, c_in, c_out, k, stride) in plan {
            convs.push(b.conv(name, c_in, c_out, k, stride, 1, INIT)?);
        }
        let l4 = b.linear("l4", bottom * bottom * 8 * ch, 1, true, INIT)?;
        Ok(Discriminator {
            convs,
            l4,
            sn: b.into_sn_layers(),
        })
    }
}

impl super::Discriminator for Discriminator {
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut h = x.clone();
        for conv in &self.convs {
            h = conv.forward_leaky_relu(&h, mode, SLOPE)?;
        }
        let n = h.dims()[0];
        Ok(self.l4.forward(&h.reshape((n, ()))?, mode)?.flatten_all()?)
    }

    fn sn_layers(&self) -> &[Rc<SpectralNorm>] {
        &self.sn
    }
}
