//! The 32x32 ResNets of sngan_projection (`resnet_32.py`, `snresnet_32.py`), which the SR paper
//! reuses as its `SRDiscriminator`.
//!
//! G (`ch` = 256): dense `z -> (H/8)^2 ch`, three up-blocks (BN, ReLU, nearest 2x upsample,
//! conv3x3, BN, ReLU, conv3x3; shortcut upsample + conv1x1), BN, ReLU, conv3x3 -> C, tanh.
//! D (`ch` = 128): `block1` optimized block (conv, ReLU, conv, avgpool; shortcut avgpool then
//! conv1x1), `block2` down block (shortcut conv1x1 then avgpool), `block3`/`block4` plain blocks
//! with identity shortcuts, ReLU, global **sum** pooling, SN dense `l5` without bias.
//!
//! The D layer names are chosen so that sorting them reproduces the SR paper's numbering:
//! 0 `block1.c1`, 1 `block1.c2`, 2 `block1.c_sc`, 3 `block2.c1`, 4 `block2.c2`,
//! 5 `block2.c_sc`, 6 `block3.c1`, 7 `block3.c2`, 8 `block4.c1`, **9 `block4.c2`** (the layer the
//! paper plots), then `l5`. Init: Glorot-uniform with scale sqrt(2) for 3x3 convs, 1 for 1x1
//! convs and dense layers, zero biases (sngan_projection).
//!
//! The SN paper's STL-10 ResNet (Table 5, sn_sr.md §3.4) is the same blocks with another
//! channel plan, built by [`Generator::stl`] and [`Discriminator::stl`]: G dense to
//! `(H/8)^2 x 8ch`, up-blocks 8ch -> 4ch -> 2ch -> ch (`ch` = 64), BN, ReLU, conv, tanh; D blocks
//! down to `ch`, `2ch`, `4ch`, `8ch` (48 -> 24 -> 12 -> 6 -> 3), a block to `16ch` without
//! downsampling (learnable 1x1 shortcut, since the width changes), ReLU, global sum, SN dense
//! `l6`. The first D block is the optimized block, as in every sngan_projection D (the table just
//! says "ResBlock down"). Its SN convs sort as `block1.c1` .. `block5.c_sc`: 15 layers, 0-14.
//!
//! The order of the builder calls is the order of the initial values: the ch-constant models
//! must keep theirs, so both plans go through the same constructors in the same order.

use std::rc::Rc;

use candle_core::Tensor;

use crate::nn::init::Init;
use crate::nn::layers::{BatchNorm2d, Builder, Conv2d, Linear, Mode};
use crate::nn::spectral_norm::SpectralNorm;
use crate::nn::{relu, Result};

const INIT_3X3: Init = Init::GlorotUniform(std::f32::consts::SQRT_2);
const INIT_1X1: Init = Init::GlorotUniform(1.0);

fn upsample(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    Ok(x.upsample_nearest2d(2 * h, 2 * w)?)
}

struct UpBlock {
    b1: BatchNorm2d,
    c1: Conv2d,
    b2: BatchNorm2d,
    c2: Conv2d,
    c_sc: Conv2d,
}

impl UpBlock {
    fn new(b: &mut Builder, name: &str, c_in: usize, c_out: usize) -> Result<Self> {
        Ok(UpBlock {
            b1: b.batch_norm(&format!("{name}.b1"), c_in)?,
            c1: b.conv(&format!("{name}.c1"), c_in, c_out, 3, 1, 1, INIT_3X3)?,
            b2: b.batch_norm(&format!("{name}.b2"), c_out)?,
            c2: b.conv(&format!("{name}.c2"), c_out, c_out, 3, 1, 1, INIT_3X3)?,
            c_sc: b.conv(&format!("{name}.c_sc"), c_in, c_out, 1, 1, 0, INIT_1X1)?,
        })
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let h = upsample(&relu(&self.b1.forward(x, mode)?)?)?;
        let h = self.c1.forward(&h, mode)?;
        let h = self.c2.forward(&relu(&self.b2.forward(&h, mode)?)?, mode)?;
        let sc = self.c_sc.forward(&upsample(x)?, mode)?;
        Ok((h + sc)?)
    }
}

/// The ResNet generator.
pub struct Generator {
    l1: Linear,
    blocks: Vec<UpBlock>,
    b5: BatchNorm2d,
    c5: Conv2d,
    ch: usize,
    bottom: usize,
}

impl Generator {
    /// `ch` = 256 in the SN paper's CIFAR runs.
    pub fn new(
        b: Builder,
        z_dim: usize,
        ch: usize,
        channels: usize,
        bottom: usize,
    ) -> Result<Self> {
        Self::with_widths(b, z_dim, [ch; 4], channels, bottom)
    }

    /// The STL-10 ResNet's G (Table 5): widths `8ch, 4ch, 2ch, ch` (`ch` = 64 in the paper).
    pub fn stl(
        b: Builder,
        z_dim: usize,
        ch: usize,
        channels: usize,
        bottom: usize,
    ) -> Result<Self> {
        Self::with_widths(b, z_dim, [8 * ch, 4 * ch, 2 * ch, ch], channels, bottom)
    }

    /// `widths[0]` at the dense layer's output, `widths[i]` after up-block `i + 1`.
    fn with_widths(
        mut b: Builder,
        z_dim: usize,
        widths: [usize; 4],
        channels: usize,
        bottom: usize,
    ) -> Result<Self> {
        let ch = widths[0];
        let l1 = b.linear("l1", z_dim, bottom * bottom * ch, true, INIT_1X1)?;
        let mut blocks = Vec::new();
        for i in 2..=4 {
            blocks.push(UpBlock::new(
                &mut b,
                &format!("block{i}"),
                widths[i - 2],
                widths[i - 1],
            )?);
        }
        let b5 = b.batch_norm("b5", widths[3])?;
        let c5 = b.conv("c5", widths[3], channels, 3, 1, 1, INIT_1X1)?;
        Ok(Generator {
            l1,
            blocks,
            b5,
            c5,
            ch,
            bottom,
        })
    }
}

impl super::Generator for Generator {
    fn forward(&self, z: &Tensor, mode: Mode) -> Result<Tensor> {
        let n = z.dims()[0];
        let mut h = self
            .l1
            .forward(z, mode)?
            .reshape((n, self.ch, self.bottom, self.bottom))?;
        for block in &self.blocks {
            h = block.forward(&h, mode)?;
        }
        let h = relu(&self.b5.forward(&h, mode)?)?;
        Ok(self.c5.forward(&h, mode)?.tanh()?)
    }
}

/// How a discriminator block treats its input.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// The first block: no ReLU before `c1`; shortcut avgpool then conv1x1.
    Optimized,
    /// ReLU first, avgpool at the end; shortcut conv1x1 then avgpool.
    Down,
    /// Same size in and out; identity shortcut.
    Plain,
}

struct DBlock {
    kind: Kind,
    c1: Conv2d,
    c2: Conv2d,
    c_sc: Option<Conv2d>,
}

impl DBlock {
    fn new(b: &mut Builder, name: &str, c_in: usize, c_out: usize, kind: Kind) -> Result<Self> {
        let c1 = b.conv(&format!("{name}.c1"), c_in, c_out, 3, 1, 1, INIT_3X3)?;
        let c2 = b.conv(&format!("{name}.c2"), c_out, c_out, 3, 1, 1, INIT_3X3)?;
        let learnable = kind != Kind::Plain || c_in != c_out;
        let c_sc = if learnable {
            Some(b.conv(&format!("{name}.c_sc"), c_in, c_out, 1, 1, 0, INIT_1X1)?)
        } else {
            None
        };
        Ok(DBlock { kind, c1, c2, c_sc })
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let h = if self.kind == Kind::Optimized {
            x.clone()
        } else {
            relu(x)?
        };
        let h = self
            .c2
            .forward(&self.c1.forward_leaky_relu(&h, mode, 0.0)?, mode)?;
        let h = if self.kind == Kind::Plain {
            h
        } else {
            h.avg_pool2d(2)?
        };
        let sc = match (&self.c_sc, self.kind) {
            (Some(c), Kind::Optimized) => c.forward(&x.avg_pool2d(2)?, mode)?,
            (Some(c), Kind::Down) => c.forward(x, mode)?.avg_pool2d(2)?,
            (Some(c), Kind::Plain) => c.forward(x, mode)?,
            (None, _) => x.clone(),
        };
        Ok((h + sc)?)
    }
}

/// The SR paper's 10-conv ResNet discriminator (sngan_projection's `SNResNetDiscriminator`), or
/// the STL-10 ResNet's 15-conv one.
pub struct Discriminator {
    blocks: Vec<DBlock>,
    /// The dense layer to one logit (`l5`, or `l6` in the STL-10 plan).
    l5: Linear,
    sn: Vec<Rc<SpectralNorm>>,
}

impl Discriminator {
    /// `ch` = 128 in the SN paper; the SR grid uses 32, 64, 128 and 256.
    pub fn new(b: Builder, ch: usize, channels: usize) -> Result<Self> {
        let plan = [
            (ch, Kind::Optimized),
            (ch, Kind::Down),
            (ch, Kind::Plain),
            (ch, Kind::Plain),
        ];
        Self::with_plan(b, &plan, channels)
    }

    /// The STL-10 ResNet's D (Table 5): down to `ch, 2ch, 4ch, 8ch`, then `16ch` at the same size
    /// (`ch` = 64 in the paper).
    pub fn stl(b: Builder, ch: usize, channels: usize) -> Result<Self> {
        let plan = [
            (ch, Kind::Optimized),
            (2 * ch, Kind::Down),
            (4 * ch, Kind::Down),
            (8 * ch, Kind::Down),
            (16 * ch, Kind::Plain),
        ];
        Self::with_plan(b, &plan, channels)
    }

    /// Blocks `block1`.. of `(output width, kind)`, then the dense `l<n+1>` to one logit.
    fn with_plan(mut b: Builder, plan: &[(usize, Kind)], channels: usize) -> Result<Self> {
        let mut blocks = Vec::with_capacity(plan.len());
        let mut c_in = channels;
        for (i, &(c_out, kind)) in plan.iter().enumerate() {
            blocks.push(DBlock::new(
                &mut b,
                &format!("block{}", i + 1),
                c_in,
                c_out,
                kind,
            )?);
            c_in = c_out;
        }
        let l_out = b.linear(&format!("l{}", plan.len() + 1), c_in, 1, false, INIT_1X1)?;
        Ok(Discriminator {
            blocks,
            l5: l_out,
            sn: b.into_sn_layers(),
        })
    }
}

impl super::Discriminator for Discriminator {
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut h = x.clone();
        for block in &self.blocks {
            h = block.forward(&h, mode)?;
        }
        let h = relu(&h)?.sum((2, 3))?;
        Ok(self.l5.forward(&h, mode)?.flatten_all()?)
    }

    fn sn_layers(&self) -> &[Rc<SpectralNorm>] {
        &self.sn
    }
}
