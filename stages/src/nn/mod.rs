//! Neural-network building blocks for the GAN training core, on candle tensors.
//!
//! Design decisions this module owns:
//!
//! - **Every piece of state has a stable name.** A model's trainable weights and its buffers
//!   (SN `u` vectors, BatchNorm running statistics, the graph-SR singular bases) live in one
//!   [`Store`] per network, two ordered maps keyed by dotted names (`block1.c1.weight`). The
//!   checkpoint, the optimizer and the spectra monitor all iterate these maps, so their order
//!   (and therefore every file we write) is deterministic. Renaming a key breaks old
//!   checkpoints: treat names as a file format.
//! - **Buffers are `Var`s too.** A `Var`'s storage is shared by all its clones and updated in
//!   place by [`candle_core::Var::set`], so layers hold clones and forward passes take `&self`
//!   while still advancing `u`. Buffers are always read through `detach()`, so no gradient ever
//!   flows into them.
//! - **Randomness comes from the host.** Initial weights and `u` vectors are drawn from a seeded
//!   `rand_chacha` stream and copied to the device; candle's own RNG is never used, so a CPU run
//!   is bit-reproducible from its seed.
//! - Library code never prints; errors are [`NnError`].

pub mod graph_sr;
pub mod init;
pub mod layers;
pub mod linalg;
pub mod models;
pub mod optim;
pub mod spectral_norm;
pub mod spectral_reg;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// A tensor operation failed (shape mismatch, device error, out of memory).
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// The SVD of a layer's weight did not converge, which in practice means NaN or inf in it.
    #[error("the svd of layer `{layer}` did not converge; its weights probably hold nan or inf, lower the learning rate")]
    Svd { layer: String },
    /// A model was asked for a shape it cannot produce.
    #[error("model `{model}` cannot handle {what}; {hint}")]
    Unsupported {
        model: String,
        what: String,
        hint: String,
    },
    /// A checkpoint does not hold the state this network needs.
    #[error("checkpoint is missing `{key}` or it has the wrong shape; it was written by another model configuration, delete it to start over")]
    MissingState { key: String },
}

/// Shorthand for results of this module.
pub type Result<T> = std::result::Result<T, NnError>;

/// All named state of one network: trainable parameters and non-trainable buffers.
pub struct Store {
    device: Device,
    dtype: DType,
    params: BTreeMap<String, Var>,
    buffers: BTreeMap<String, Var>,
}

impl Store {
    /// An empty store whose tensors live on `device` in `dtype`.
    pub fn new(device: &Device, dtype: DType) -> Self {
        Store {
            device: device.clone(),
            dtype,
            params: BTreeMap::new(),
            buffers: BTreeMap::new(),
        }
    }

    /// The device of every tensor in the store.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The float type of every tensor in the store.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Registers a trainable tensor built from host values.
    pub fn param(&mut self, name: &str, shape: &[usize], values: Vec<f32>) -> Result<Var> {
        let var = Var::from_tensor(&self.host_tensor(shape, values)?)?;
        self.params.insert(name.to_string(), var.clone());
        Ok(var)
    }

    /// Registers a buffer (state that is saved but never optimized) built from host values.
    pub fn buffer(&mut self, name: &str, shape: &[usize], values: Vec<f32>) -> Result<Var> {
        let var = Var::from_tensor(&self.host_tensor(shape, values)?)?;
        self.buffers.insert(name.to_string(), var.clone());
        Ok(var)
    }

    /// Registers a buffer from a tensor (converted to the store's dtype and device).
    pub fn buffer_from(&mut self, name: &str, t: &Tensor) -> Result<Var> {
        let var = Var::from_tensor(&t.to_dtype(self.dtype)?.to_device(&self.device)?)?;
        self.buffers.insert(name.to_string(), var.clone());
        Ok(var)
    }

    fn host_tensor(&self, shape: &[usize], values: Vec<f32>) -> Result<Tensor> {
        Ok(Tensor::from_vec(values, shape, &Device::Cpu)?
            .to_dtype(self.dtype)?
            .to_device(&self.device)?)
    }

    /// The trainable tensors, in name order.
    pub fn params(&self) -> &BTreeMap<String, Var> {
        &self.params
    }

    /// The buffers, in name order.
    pub fn buffers(&self) -> &BTreeMap<String, Var> {
        &self.buffers
    }

    /// Every tensor of the store under `prefix.param.NAME` / `prefix.buffer.NAME`, for a checkpoint.
    pub fn export(&self, prefix: &str, out: &mut BTreeMap<String, Tensor>) {
        for (name, var) in &self.params {
            out.insert(format!("{prefix}.param.{name}"), var.as_tensor().detach());
        }
        for (name, var) in &self.buffers {
            out.insert(format!("{prefix}.buffer.{name}"), var.as_tensor().detach());
        }
    }

    /// Overwrites every tensor of the store from a checkpoint written by [`Store::export`].
    pub fn import(&self, prefix: &str, from: &BTreeMap<String, Tensor>) -> Result<()> {
        let all = self
            .params
            .iter()
            .map(|(n, v)| (format!("{prefix}.param.{n}"), v))
            .chain(
                self.buffers
                    .iter()
                    .map(|(n, v)| (format!("{prefix}.buffer.{n}"), v)),
            );
        for (key, var) in all {
            let src = from
                .get(&key)
                .ok_or_else(|| NnError::MissingState { key: key.clone() })?;
            if src.dims() != var.dims() {
                return Err(NnError::MissingState { key });
            }
            var.set(&src.to_dtype(self.dtype)?.to_device(&self.device)?)?;
        }
        Ok(())
    }
}

/// Leaky ReLU, one fused pass each way on the CPU ([`kernels::leaky_relu`]); candle's
/// `maximum` and candle-nn's five-op version were the hot spot of small-model training.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    Ok(kernels::leaky_relu(x, slope)?)
}

/// ReLU, one pass each way on the CPU ([`kernels::relu`]): candle's relu backward is four
/// full-tensor passes, a tenth of a generator step.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    Ok(kernels::relu(x)?)
}

/// Numerically stable softplus, `relu(x) + log(1 + exp(-|x|))`; candle has no softplus op.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    let tail = x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    Ok((x.relu()? + tail)?)
}
