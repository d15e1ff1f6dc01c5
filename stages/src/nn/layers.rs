//! Layers (linear, conv, transposed conv, BatchNorm) and the [`Builder`] that registers their
//! state in a [`Store`] under dotted names.
//!
//! A discriminator weight is spectrally normalized or not depending on the builder's
//! [`SnConfig`]; a generator is built without SN (the CIFAR/STL setting of both papers). Every
//! SN weight built is also recorded in the builder, so a model can hand its SN layers to the
//! regularizer and the spectra monitor in name order without listing them by hand.
//!
//! Building knows nothing of spectral regularization: SR is one setting held by the trainer's
//! regularizer, which attaches graph mode's state to the built SN layers itself
//! ([`super::spectral_reg::Regularizer::attach`]), so no model or builder carries a piece of it.

use candle_core::{Tensor, Var};
use rand_chacha::ChaCha8Rng;

use super::init::{self, Init};
use super::spectral_norm::SpectralNorm;
use super::{Result, Store};
use std::rc::Rc;

/// Whether a network's weights are spectrally normalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnConfig {
    /// Spectral normalization on every weight.
    pub enabled: bool,
}

impl SnConfig {
    /// No normalization (the generators).
    pub const OFF: SnConfig = SnConfig { enabled: false };
    /// Plain SN (the discriminators).
    pub const SN: SnConfig = SnConfig { enabled: true };
}

/// How a forward pass treats a network's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Training this network: BatchNorm normalizes with (and updates) the batch statistics, SN
    /// advances its power iteration, and the parameters are variables of the graph.
    Train,
    /// Training the other network with this one (G making D's fakes, D judging G's): the state
    /// advances as in `Train`, as the official code runs both there, but the parameters enter
    /// the graph as constants, so backward computes no gradient for them that the optimizer
    /// would discard (the convolutions skip their weight pass). The values are the same bits.
    Frozen,
    /// Sampling and evaluation: BatchNorm's running statistics, nothing advances, and the
    /// parameters are constants as in `Frozen` (no backward follows).
    Eval,
}

impl Mode {
    /// Whether the pass advances the network's state (batch statistics, SN's `u`).
    pub fn advances(self) -> bool {
        self != Mode::Eval
    }

    /// A parameter as this pass uses it: a variable of the graph only when training this
    /// network.
    fn param(self, t: &Tensor) -> Tensor {
        match self {
            Mode::Train => t.clone(),
            Mode::Frozen | Mode::Eval => t.detach(),
        }
    }

    fn bias(self, b: &Option<Var>) -> Option<Tensor> {
        b.as_ref().map(|b| self.param(b.as_tensor()))
    }
}

/// A weight as the layer uses it: raw, or spectrally normalized.
pub enum Weight {
    /// Used as is.
    Plain(Var),
    /// Divided by its spectral norm on every forward.
    Sn(Rc<SpectralNorm>),
}

impl Weight {
    /// The tensor the layer multiplies by (see [`Mode`]).
    pub fn effective(&self, mode: Mode) -> Result<Tensor> {
        Ok(match self {
            Weight::Plain(w) => mode.param(w.as_tensor()),
            Weight::Sn(sn) => mode.param(&sn.normalized(mode.advances())?),
        })
    }
}

/// Registers parameters and buffers under a name prefix, drawing initial values from `rng`.
pub struct Builder<'a> {
    store: &'a mut Store,
    rng: &'a mut ChaCha8Rng,
    sn: SnConfig,
    sn_layers: Vec<Rc<SpectralNorm>>,
}

impl<'a> Builder<'a> {
    /// A builder filling `store`, with `sn` applied to every weight it creates.
    pub fn new(store: &'a mut Store, rng: &'a mut ChaCha8Rng, sn: SnConfig) -> Self {
        Builder {
            store,
            rng,
            sn,
            sn_layers: Vec::new(),
        }
    }

    /// The SN layers built so far, sorted by name (the SR paper's layer numbering).
    pub fn into_sn_layers(self) -> Vec<Rc<SpectralNorm>> {
        let mut layers = self.sn_layers;
        layers.sort_by(|a, b| a.name().cmp(b.name()));
        layers
    }

    fn tensor(
        &mut self,
        name: &str,
        shape: &[usize],
        init: Init,
        fans: (usize, usize),
    ) -> Result<Var> {
        let n = shape.iter().product();
        let values = init.draw(self.rng, n, fans.0, fans.1);
        self.store.param(name, shape, values)
    }

    fn weight(
        &mut self,
        name: &str,
        shape: &[usize],
        init: Init,
        fans: (usize, usize),
    ) -> Result<Weight> {
        let w = self.tensor(&format!("{name}.weight"), shape, init, fans)?;
        if !self.sn.enabled {
            return Ok(Weight::Plain(w));
        }
        let u0 = init::standard_normal(self.rng, shape[0]);
        let u = self
            .store
            .buffer(&format!("{name}.u"), &[shape[0], 1], u0)?;
        let sn = Rc::new(SpectralNorm::new(name, w, u, None));
        self.sn_layers.push(sn.clone());
        Ok(Weight::Sn(sn))
    }

    fn bias(&mut self, name: &str, n: usize, bias: bool) -> Result<Option<Var>> {
        if !bias {
            return Ok(None);
        }
        Ok(Some(self.tensor(
            &format!("{name}.bias"),
            &[n],
            Init::Constant(0.0),
            (0, 0),
        )?))
    }

    /// A dense layer `d_in -> d_out`.
    pub fn linear(
        &mut self,
        name: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
        init: Init,
    ) -> Result<Linear> {
        let weight = self.weight(name, &[d_out, d_in], init, (d_in, d_out))?;
        Ok(Linear {
            weight,
            bias: self.bias(name, d_out, bias)?,
        })
    }

    /// A `k x k` convolution `c_in -> c_out`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        init: Init,
    ) -> Result<Conv2d> {
        let weight = self.weight(
            name,
            &[c_out, c_in, k, k],
            init,
            (c_in * k * k, c_out * k * k),
        )?;
        Ok(Conv2d {
            weight,
            bias: self.bias(name, c_out, true)?,
            stride,
            pad,
        })
    }

    /// A `k x k` transposed convolution `c_in -> c_out` (generators only: never normalized).
    #[allow(clippy::too_many_arguments)]
    pub fn conv_transpose(
        &mut self,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        init: Init,
    ) -> Result<ConvTranspose2d> {
        let weight = self.tensor(
            &format!("{name}.weight"),
            &[c_in, c_out, k, k],
            init,
            (c_in * k * k, c_out * k * k),
        )?;
        let bias = self.tensor(
            &format!("{name}.bias"),
            &[c_out],
            Init::Constant(0.0),
            (0, 0),
        )?;
        Ok(ConvTranspose2d {
            weight,
            bias,
            stride,
            pad,
        })
    }

    /// BatchNorm over the channels of an NCHW tensor, Chainer defaults (decay 0.9, eps 2e-5).
    pub fn batch_norm(&mut self, name: &str, channels: usize) -> Result<BatchNorm2d> {
        let gamma = self.tensor(
            &format!("{name}.gamma"),
            &[channels],
            Init::Constant(1.0),
            (0, 0),
        )?;
        let beta = self.tensor(
            &format!("{name}.beta"),
            &[channels],
            Init::Constant(0.0),
            (0, 0),
        )?;
        let mean = self.store.buffer(
            &format!("{name}.running_mean"),
            &[channels],
            vec![0.0; channels],
        )?;
        let var = self.store.buffer(
            &format!("{name}.running_var"),
            &[channels],
            vec![1.0; channels],
        )?;
        Ok(BatchNorm2d {
            gamma,
            beta,
            mean,
            var,
            decay: 0.9,
            eps: 2e-5,
        })
    }
}

/// `y = x W^T + b`.
pub struct Linear {
    weight: Weight,
    bias: Option<Var>,
}

impl Linear {
    /// `x`: (N, d_in) -> (N, d_out).
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let y = x.matmul(&self.weight.effective(mode)?.t()?)?;
        Ok(match mode.bias(&self.bias) {
            Some(b) => y.broadcast_add(&b)?,
            None => y,
        })
    }
}

/// A 2-D convolution with bias.
pub struct Conv2d {
    weight: Weight,
    bias: Option<Var>,
    stride: usize,
    pad: usize,
}

impl Conv2d {
    /// NCHW in, NCHW out.
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let w = self.weight.effective(mode)?;
        let b = mode.bias(&self.bias);
        let pad = (self.pad, self.pad);
        Ok(kernels::conv2d(x, &w, b.as_ref(), self.stride, pad)?)
    }

    /// `leaky_relu(self.forward(x), slope)` as one fused op ([`kernels::conv2d_leaky_relu`]).
    pub fn forward_leaky_relu(&self, x: &Tensor, mode: Mode, slope: f64) -> Result<Tensor> {
        let w = self.weight.effective(mode)?;
        let b = mode.bias(&self.bias);
        let pad = (self.pad, self.pad);
        Ok(kernels::conv2d_leaky_relu(
            x,
            &w,
            b.as_ref(),
            self.stride,
            pad,
            slope,
        )?)
    }
}

/// A 2-D transposed convolution with bias.
pub struct ConvTranspose2d {
    weight: Var,
    bias: Var,
    stride: usize,
    pad: usize,
}

impl ConvTranspose2d {
    /// NCHW in, NCHW out (`k4 s2 p1` doubles the spatial size).
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let w = mode.param(self.weight.as_tensor());
        let b = mode.param(self.bias.as_tensor());
        Ok(kernels::conv_transpose2d(
            x,
            &w,
            Some(&b),
            self.stride,
            self.pad,
        )?)
    }
}

/// Batch normalization over the channel axis of NCHW tensors.
///
/// A pass that advances ([`Mode::advances`]) normalizes with the batch statistics and updates
/// the running ones as Chainer does (`running = decay running + (1 - decay) batch`, unbiased
/// batch variance); eval mode (sample generation) uses the running statistics.
pub struct BatchNorm2d {
    gamma: Var,
    beta: Var,
    mean: Var,
    var: Var,
    decay: f64,
    eps: f64,
}

impl BatchNorm2d {
    /// NCHW in, NCHW out.
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let (gamma, beta) = (
            mode.param(self.gamma.as_tensor()),
            mode.param(self.beta.as_tensor()),
        );
        if mode.advances() {
            let (y, mean, var) = kernels::batch_norm_train(x, &gamma, &beta, self.eps)?;
            let m = (n * h * w) as f64;
            let unbiased = var.affine(m / (m - 1.0).max(1.0), 0.0)?;
            let new_mean = (self.mean.as_tensor().affine(self.decay, 0.0)?
                + mean.affine(1.0 - self.decay, 0.0)?)?;
            let new_var = (self.var.as_tensor().affine(self.decay, 0.0)?
                + unbiased.affine(1.0 - self.decay, 0.0)?)?;
            self.mean.set(&new_mean)?;
            self.var.set(&new_var)?;
            return Ok(y);
        }
        let mean = self.mean.as_tensor().detach().reshape((1, c, 1, 1))?;
        let var = self.var.as_tensor().detach().reshape((1, c, 1, 1))?;
        let inv = var.affine(1.0, self.eps)?.sqrt()?.recip()?;
        let xhat = x.broadcast_sub(&mean)?.broadcast_mul(&inv)?;
        let g = gamma.reshape((1, c, 1, 1))?;
        let b = beta.reshape((1, c, 1, 1))?;
        Ok(xhat.broadcast_mul(&g)?.broadcast_add(&b)?)
    }
}
