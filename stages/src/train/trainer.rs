//! The training state of one run and the G/D update steps, apart from any file I/O.
//!
//! What this module decides, and what must never change silently (each changes every result):
//!
//! - **Update order** within a G iteration: for each of the `n_dis` D steps, the G step comes
//!   first when it is the first D step (sngan_projection's order; the SR code runs G after the
//!   first D step instead, see sn_sr.md §5.1), then the D step, then static/dynamic SR if due.
//!   Graph-mode SR refreshes its singular bases at the start of every D step.
//! - **The `sr` setting** goes whole to one [`Regularizer`], built with the models: it attaches
//!   graph mode's state to D's SN layers right after D is built (before any step; no random
//!   draws), and the D step calls it at its two moments. The models never see the setting.
//! - **Random streams**: all from `seed` through ChaCha8 streams: 1 = data indices, 2 = noise,
//!   3 = G init, 4 = D init (weights, then SN `u` per layer), 5 = the fixed evaluation z. Batches
//!   are drawn uniformly *with replacement*, so the data stream's position is all the sampler
//!   state a checkpoint needs. Streams 1 and 2 are saved in checkpoints (seed, stream, word
//!   position), which is what makes a resumed CPU run bit-identical to an uninterrupted one.
//! - **What a checkpoint holds**: G and D parameters and buffers (SN `u`, BN running stats,
//!   graph-SR bases), both Adams' moments and step counts, the dynamic-SR running maxima, the two
//!   RNG states, the completed G iterations, and a hash of the identity params.
//! - z ~ N(0, I) drawn on the host; images are scaled to [-1, 1] as `x / 127.5 - 1`.
//! - Linear LR decay is over G iterations: `lr (1 - t / iterations)` for iteration `t`, both nets.

use std::collections::BTreeMap;
use std::rc::Rc;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::params::{Loss, LrDecay, TrainParams};
use super::TrainError;
use crate::nn::layers::{Mode, SnConfig};
use crate::nn::models::{DataShape, Gan};
use crate::nn::optim::Adam;
use crate::nn::spectral_norm::SpectralNorm;
use crate::nn::spectral_reg::{DynamicSr, Regularizer};
use crate::nn::{init, softplus, Store};

/// The random stream numbers (see the module doc).
pub mod stream {
    /// Batch indices.
    pub const DATA: u64 = 1;
    /// Noise for training steps.
    pub const NOISE: u64 = 2;
    /// Generator initialisation.
    pub const G_INIT: u64 = 3;
    /// Discriminator initialisation.
    pub const D_INIT: u64 = 4;
    /// The fixed evaluation noise.
    pub const EVAL: u64 = 5;
}

/// A ChaCha8 generator for `seed` on `stream`.
pub fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Training data held on the host, as f32 in the models' scale.
pub struct HostData {
    /// Row-major samples.
    pub values: Vec<f32>,
    /// Number of samples.
    pub n: usize,
    /// The shape the models see.
    pub shape: DataShape,
}

impl HostData {
    fn per_sample(&self) -> usize {
        match self.shape {
            DataShape::Images {
                channels,
                height,
                width,
            } => channels * height * width,
            DataShape::Points { dim } => dim,
        }
    }

    fn batch_dims(&self, n: usize) -> Vec<usize> {
        match self.shape {
            DataShape::Images {
                channels,
                height,
                width,
            } => vec![n, channels, height, width],
            DataShape::Points { dim } => vec![n, dim],
        }
    }
}

/// Losses of the last steps, for the log.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepLosses {
    /// The last D step's loss.
    pub d: f64,
    /// The G step's loss.
    pub g: f64,
}

/// Everything that evolves during training.
pub struct Trainer {
    device: Device,
    z_dim: usize,
    batch: usize,
    g_batch: usize,
    iterations: u64,
    n_dis: u32,
    loss: Loss,
    base_lr: f64,
    decay: LrDecay,
    g_store: Store,
    d_store: Store,
    gan: Gan,
    adam_g: Adam,
    adam_d: Adam,
    sr: Regularizer,
    data_rng: ChaCha8Rng,
    noise_rng: ChaCha8Rng,
    /// Completed G iterations.
    pub iteration: u64,
}

impl Trainer {
    /// A fresh run: models initialised from `params.seed`.
    pub fn new(
        params: &TrainParams,
        shape: DataShape,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let mut g_store = Store::new(device, DType::F32);
        let mut d_store = Store::new(device, DType::F32);
        let gan = params.model.build(
            shape,
            params.z_dim,
            SnConfig { enabled: params.sn },
            &mut g_store,
            &mut d_store,
            &mut rng_for(params.seed, stream::G_INIT),
            &mut rng_for(params.seed, stream::D_INIT),
        )?;
        // The `sr` setting goes whole to the regularizer, the one place that acts on it.
        let sr = Regularizer::new(params.sr.0.clone());
        sr.attach(&mut d_store, &sn_refs(gan.d.sn_layers()))?;
        let adam = params.adam();
        Ok(Trainer {
            device: device.clone(),
            z_dim: params.z_dim,
            batch: params.batch_size,
            g_batch: params.g_batch(),
            iterations: params.iterations,
            n_dis: params.n_dis(),
            loss: params.loss,
            base_lr: adam.lr,
            decay: params.lr_decay,
            adam_g: Adam::new(&g_store, adam)?,
            adam_d: Adam::new(&d_store, adam)?,
            g_store,
            d_store,
            gan,
            sr,
            data_rng: rng_for(params.seed, stream::DATA),
            noise_rng: rng_for(params.seed, stream::NOISE),
            iteration: 0,
        })
    }

    /// The learning rate of G iteration `t`.
    pub fn lr_at(&self, t: u64) -> f64 {
        match self.decay {
            LrDecay::None => self.base_lr,
            LrDecay::Linear => self.base_lr * (1.0 - t as f64 / self.iterations as f64).max(0.0),
        }
    }

    /// The discriminator's SN layers in name order.
    pub fn sn_layers(&self) -> Vec<&SpectralNorm> {
        sn_refs(self.gan.d.sn_layers())
    }

    fn noise(&mut self, n: usize) -> Result<Tensor, TrainError> {
        let z = init::standard_normal(&mut self.noise_rng, n * self.z_dim);
        Ok(Tensor::from_vec(z, (n, self.z_dim), &Device::Cpu)?.to_device(&self.device)?)
    }

    fn real_batch(&mut self, data: &HostData) -> Result<Tensor, TrainError> {
        let per = data.per_sample();
        let mut values = Vec::with_capacity(self.batch * per);
        for _ in 0..self.batch {
            let i = self.data_rng.random_range(0..data.n);
            values.extend_from_slice(&data.values[i * per..(i + 1) * per]);
        }
        Ok(
            Tensor::from_vec(values, data.batch_dims(self.batch), &Device::Cpu)?
                .to_device(&self.device)?,
        )
    }

    fn checked(&self, loss: &Tensor, which: &'static str) -> Result<f64, TrainError> {
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if value.is_finite() {
            Ok(value)
        } else {
            Err(TrainError::NonFinite {
                iteration: self.iteration + 1,
                which,
                value,
            })
        }
    }

    /// One D update (with its SR hooks) at learning rate `lr`; returns the D loss.
    pub fn d_step(&mut self, data: &HostData, lr: f64) -> Result<f64, TrainError> {
        self.sr.before_d_step(&self.sn_layers())?;
        let real = self.real_batch(data)?;
        let z = self.noise(self.batch)?;
        let fake = self.gan.g.forward(&z, Mode::Frozen)?.detach();
        let d_real = self.gan.d.forward(&real, Mode::Train)?;
        let d_fake = self.gan.d.forward(&fake, Mode::Train)?;
        let loss = match self.loss {
            Loss::Hinge => {
                (d_real.neg()?.affine(1.0, 1.0)?.relu()?.mean_all()?
                    + d_fake.affine(1.0, 1.0)?.relu()?.mean_all()?)?
            }
            Loss::Standard => {
                (softplus(&d_real.neg()?)?.mean_all()? + softplus(&d_fake)?.mean_all()?)?
            }
        };
        let value = self.checked(&loss, "discriminator")?;
        let grads = loss.backward()?;
        self.adam_d.step(&self.d_store, &grads, lr)?;
        self.sr
            .after_d_step(self.iteration, &sn_refs(self.gan.d.sn_layers()))?;
        Ok(value)
    }

    /// One G update at learning rate `lr`; returns the G loss.
    pub fn g_step(&mut self, lr: f64) -> Result<f64, TrainError> {
        let z = self.noise(self.g_batch)?;
        let fake = self.gan.g.forward(&z, Mode::Train)?;
        let d_fake = self.gan.d.forward(&fake, Mode::Frozen)?;
        let loss = match self.loss {
            Loss::Hinge => d_fake.mean_all()?.neg()?,
            Loss::Standard => softplus(&d_fake.neg()?)?.mean_all()?,
        };
        let value = self.checked(&loss, "generator")?;
        let grads = loss.backward()?;
        self.adam_g.step(&self.g_store, &grads, lr)?;
        Ok(value)
    }

    /// One G iteration: `n_dis` D steps with the G step before the first.
    pub fn iterate(&mut self, data: &HostData) -> Result<StepLosses, TrainError> {
        let lr = self.lr_at(self.iteration);
        let mut losses = StepLosses::default();
        for i in 0..self.n_dis {
            if i == 0 {
                losses.g = self.g_step(lr)?;
            }
            losses.d = self.d_step(data, lr)?;
        }
        self.iteration += 1;
        Ok(losses)
    }

    /// `n` samples from the fixed evaluation noise, G in eval mode, on the host as f32
    /// (generated in chunks to bound memory).
    pub fn eval_samples(&self, seed: u64, n: usize) -> Result<(Vec<f32>, Vec<usize>), TrainError> {
        let mut rng = rng_for(seed, stream::EVAL);
        let mut values = Vec::new();
        let mut dims = Vec::new();
        let mut done = 0;
        while done < n {
            let k = (n - done).min(256);
            let z = init::standard_normal(&mut rng, k * self.z_dim);
            let z = Tensor::from_vec(z, (k, self.z_dim), &Device::Cpu)?.to_device(&self.device)?;
            let x = self
                .gan
                .g
                .forward(&z, Mode::Eval)?
                .to_dtype(DType::F32)?
                .to_device(&Device::Cpu)?;
            dims = x.dims().to_vec();
            values.extend(x.flatten_all()?.to_vec1::<f32>()?);
            done += k;
        }
        if let Some(first) = dims.first_mut() {
            *first = n;
        }
        Ok((values, dims))
    }

    /// The whole state as named host tensors (see the module doc).
    pub fn export(&self, identity_hash: &[u8; 32]) -> Result<BTreeMap<String, Tensor>, TrainError> {
        let mut out = BTreeMap::new();
        self.g_store.export("g", &mut out);
        self.d_store.export("d", &mut out);
        self.adam_g.export("adam_g", &mut out)?;
        self.adam_d.export("adam_d", &mut out)?;
        self.sr.dynamic().export(&mut out)?;
        out.insert("rng.data".into(), rng_tensor(&self.data_rng)?);
        out.insert("rng.noise".into(), rng_tensor(&self.noise_rng)?);
        out.insert(
            "iteration".into(),
            Tensor::new(&[self.iteration as i64], &Device::Cpu)?,
        );
        out.insert(
            "identity".into(),
            Tensor::new(identity_hash.as_slice(), &Device::Cpu)?,
        );
        let mut host = BTreeMap::new();
        for (k, t) in out {
            host.insert(k, t.to_device(&Device::Cpu)?);
        }
        Ok(host)
    }

    /// Restores a state written by [`Trainer::export`] (the identity is checked by the caller).
    pub fn import(&mut self, from: &BTreeMap<String, Tensor>) -> Result<(), TrainError> {
        self.g_store.import("g", from)?;
        self.d_store.import("d", from)?;
        self.adam_g.import("adam_g", from)?;
        self.adam_d.import("adam_d", from)?;
        self.sr.set_dynamic(DynamicSr::import(from)?);
        self.data_rng = rng_from(from, "rng.data")?;
        self.noise_rng = rng_from(from, "rng.noise")?;
        let it = from
            .get("iteration")
            .ok_or(TrainError::CorruptCheckpoint { key: "iteration" })?;
        let it: Vec<i64> = it.to_dtype(DType::I64)?.to_vec1()?;
        self.iteration = it.first().copied().unwrap_or(0).max(0) as u64;
        Ok(())
    }
}

/// Borrows shared SN layers as the regularizer and the monitor take them.
fn sn_refs(layers: &[Rc<SpectralNorm>]) -> Vec<&SpectralNorm> {
    layers.iter().map(|l| l.as_ref()).collect()
}

/// seed (32 bytes), stream (8, little endian), word position (16, little endian).
fn rng_tensor(rng: &ChaCha8Rng) -> Result<Tensor, TrainError> {
    let mut bytes = rng.get_seed().to_vec();
    bytes.extend_from_slice(&rng.get_stream().to_le_bytes());
    bytes.extend_from_slice(&rng.get_word_pos().to_le_bytes());
    Ok(Tensor::new(bytes.as_slice(), &Device::Cpu)?)
}

fn rng_from(from: &BTreeMap<String, Tensor>, key: &'static str) -> Result<ChaCha8Rng, TrainError> {
    let bytes: Vec<u8> = from
        .get(key)
        .ok_or(TrainError::CorruptCheckpoint { key })?
        .to_vec1()?;
    if bytes.len() != 56 {
        return Err(TrainError::CorruptCheckpoint { key });
    }
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&bytes[..32]);
    let mut stream = [0u8; 8];
    stream.copy_from_slice(&bytes[32..40]);
    let mut pos = [0u8; 16];
    pos.copy_from_slice(&bytes[40..56]);
    let mut rng = ChaCha8Rng::from_seed(seed);
    rng.set_stream(u64::from_le_bytes(stream));
    rng.set_word_pos(u128::from_le_bytes(pos));
    Ok(rng)
}
