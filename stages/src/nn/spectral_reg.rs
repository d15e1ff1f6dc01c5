//! Spectral regularization (Liu et al. 2019): keep the tail of each D layer's spectrum from
//! collapsing, in the three ways `sn_sr.md` describes.
//!
//! - **Static** (the official CIFAR/STL code, §5.1): right after a D optimizer step, the raw
//!   weight of every SN layer is *projected*: thin SVD (faer, f64), `s / s_1`, the top
//!   `floor(i r)` values pinned to 1, rebuilt. As in the code the rebuilt `W` has spectral norm
//!   exactly 1 (the SN forward is invariant to that scale); Adam moments and `u` are untouched.
//! - **Dynamic** (the official ImageNet code, §5.2): per layer and sorted index `j`, a running
//!   max `gamma_j` of `s_j / s_1`. The first call on a layer only records; later calls update the
//!   max and rebuild `W` with spectrum `s_1 gamma` (scale preserved). Unlike the official code,
//!   the running max is saved in checkpoints, so a resumed run continues rather than re-baselines.
//! - **Graph** (the paper's formula, §4): `W_SR = (W + dW) / sigma` inside the autograd graph,
//!   `dW = sum_{k=2..i} (sigma_1 - sigma_k) u_k v_k^T` with `sigma_k = u_k^T W v_k` live in the
//!   graph and `u_k`, `v_k` detached buffers, refreshed by one warm-started subspace iteration
//!   per D step. `sigma_1` is the SN estimate, so the gradient is the paper's.
//!
//! What must never change silently:
//! - Which layers: every SN weight of D whose rank `r = min(d_out, d_in kh kw)` is at least 2.
//!   For the image Ds that is exactly the official "all SN convs, not the final linear" (the final
//!   linear has one output, rank 1); for the MLP D it is the hidden linears.
//! - **`floor(i r) <= 1` is a no-op**, so "only sigma_1 pinned" is bit-for-bit SN. (The official
//!   static code would still rescale `W` to norm 1 there; we skip that so the identity holds.)
//! - The static/dynamic schedule: after *each* D update of G-iterations `t >= start` with
//!   `t % every == 0` (the code's `iteration % 5` checked inside the n_dis loop), so on average one
//!   pass per G iteration, in bursts. Defaults `every = 5`, `start = 0` are the official code's.
//! - Dynamic SR's `start` is the G-iteration at which it records its reference spectrum (its
//!   first call, after that iteration's first D step); before it the run is plain SN. The default
//!   0 records the random initialization, as a fresh run of the official code does; the official
//!   ImageNet protocol instead resumes SR from a trained SN snapshot, which is `start: S` here
//!   (the same run, plain SN up to `S`, then the reference). `start` must be a multiple of `every`
//!   so the reference is taken at `start` exactly, and below `iterations` (checked with the
//!   training params), otherwise SR would never run.
//!
//! How the setting reaches the layers: [`SrMode`] is the run's one SR value, parsed once with the
//! `train-gan` params and handed whole to a [`Regularizer`], which acts on it and nothing else
//! does. The models are built with plain SN; [`Regularizer::attach`] then gives graph mode its
//! per-layer state ([`super::graph_sr::GraphSr`]), after which each SN forward adds its term;
//! static and dynamic act in [`Regularizer::after_d_step`]. Graph mode's state and term are in
//! [`super::graph_sr`] because the SN forward needs them too: this module builds on
//! [`super::spectral_norm`] and [`super::graph_sr`], and neither imports it.

use std::collections::BTreeMap;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::graph_sr::pinned_count;
use super::linalg;
use super::spectral_norm::SpectralNorm;
use super::{Result, Store};

fn default_i() -> f64 {
    0.5
}
fn default_every() -> u64 {
    5
}

/// The `sr:` setting of a run, the one value every SR decision is taken from (see the module
/// doc). Its JSON form (`Serialize`: `{"mode": ..., fields}`, fields in declaration order) is
/// part of a checkpoint's identity, pinned by a test in `train::params`: renaming, reordering or
/// adding a field means bumping `train-gan`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum SrMode {
    /// Plain SN.
    None,
    /// Hard projection of the raw weight after the D step (official CIFAR/STL code).
    Static {
        /// Fraction of the rank pinned to sigma_1 (the paper's recommended 0.5).
        #[serde(default = "default_i")]
        i: f64,
        /// Run on G-iterations that are multiples of this.
        #[serde(default = "default_every")]
        every: u64,
        /// First G-iteration at which SR may run.
        #[serde(default)]
        start: u64,
    },
    /// Running-max compensation (official ImageNet code).
    Dynamic {
        /// Run on G-iterations that are multiples of this.
        #[serde(default = "default_every")]
        every: u64,
        /// The G-iteration at which the reference spectrum is recorded (a multiple of `every`);
        /// plain SN before it.
        #[serde(default)]
        start: u64,
    },
    /// `W_SR = (W + dW) / sigma` inside the graph (the paper's formula).
    Graph {
        /// Fraction of the rank compensated.
        #[serde(default = "default_i")]
        i: f64,
    },
}

impl SrMode {
    /// The first G-iteration at which static or dynamic SR may run, if it has one.
    pub fn start(&self) -> Option<u64> {
        match self {
            SrMode::Static { start, .. } | SrMode::Dynamic { start, .. } => Some(*start),
            _ => None,
        }
    }

    /// Checks the numbers; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        match self {
            SrMode::Static { i, every, .. } if !(0.0..=1.0).contains(i) || *every == 0 => {
                Err(format!(
                    "`sr.i` must be in [0, 1] and `sr.every` at least 1, got i={i}, every={every}"
                ))
            }
            SrMode::Dynamic { every: 0, .. } => Err("`sr.every` must be at least 1".to_string()),
            SrMode::Dynamic { every, start } if !start.is_multiple_of(*every) => Err(format!(
                "`sr.start` is {start}, not a multiple of `sr.every` ({every}); dynamic SR records its reference at `start`, so use {} or {}",
                start - start % every,
                start - start % every + every
            )),
            SrMode::Graph { i } if !(0.0..=1.0).contains(i) => {
                Err(format!("`sr.i` must be in [0, 1], got {i}"))
            }
            _ => Ok(()),
        }
    }
}

/// Projects the raw weight of `layer` so its spectrum is `s / s_1` with the top `floor(i r)`
/// values set to 1 (static SR). A no-op when `floor(i r) <= 1`.
pub fn project_static(layer: &SpectralNorm, i: f64) -> Result<()> {
    let w = layer.weight();
    let m = linalg::to_mat(w.as_tensor())?;
    let rank = m.nrows().min(m.ncols());
    let k = pinned_count(i, rank);
    if k <= 1 {
        return Ok(());
    }
    let (u, mut s, v) = linalg::thin_svd(&m, layer.name())?;
    let s1 = s[0];
    if s1.is_nan() || s1 <= 0.0 {
        return Ok(());
    }
    for (j, x) in s.iter_mut().enumerate() {
        *x = if j < k { 1.0 } else { *x / s1 };
    }
    let rebuilt = linalg::rebuild(&u, &s, &v);
    linalg::set_var(w, &rebuilt)
}

/// The running maxima of dynamic SR: layer name -> `gamma_j = max s_j / s_1` by sorted index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DynamicSr {
    reference: BTreeMap<String, Vec<f64>>,
}

impl DynamicSr {
    /// One dynamic-SR call on `layer`: the first records `s / s_1`; later ones raise the running
    /// max and rebuild `W` with spectrum `s_1 * gamma`.
    pub fn apply(&mut self, layer: &SpectralNorm) -> Result<()> {
        let w = layer.weight();
        let m = linalg::to_mat(w.as_tensor())?;
        if m.nrows().min(m.ncols()) < 2 {
            return Ok(());
        }
        let (u, s, v) = linalg::thin_svd(&m, layer.name())?;
        let s1 = s[0];
        if s1.is_nan() || s1 <= 0.0 {
            return Ok(());
        }
        let ratios: Vec<f64> = s.iter().map(|x| x / s1).collect();
        match self.reference.get_mut(layer.name()) {
            None => {
                self.reference.insert(layer.name().to_string(), ratios);
            }
            Some(gamma) => {
                for (g, r) in gamma.iter_mut().zip(&ratios) {
                    *g = g.max(*r);
                }
                let target: Vec<f64> = gamma.iter().map(|g| s1 * g).collect();
                let rebuilt = linalg::rebuild(&u, &target, &v);
                linalg::set_var(w, &rebuilt)?;
            }
        }
        Ok(())
    }

    /// The running max of `layer`, if it has been recorded.
    pub fn reference(&self, layer: &str) -> Option<&[f64]> {
        self.reference.get(layer).map(Vec::as_slice)
    }

    /// The state as `sr.dynamic.LAYER` f64 tensors, for a checkpoint.
    pub fn export(&self, out: &mut BTreeMap<String, Tensor>) -> Result<()> {
        for (name, gamma) in &self.reference {
            let t = Tensor::from_vec(gamma.clone(), gamma.len(), &candle_core::Device::Cpu)?;
            out.insert(format!("sr.dynamic.{name}"), t);
        }
        Ok(())
    }

    /// Restores the state written by [`DynamicSr::export`].
    pub fn import(from: &BTreeMap<String, Tensor>) -> Result<Self> {
        let mut reference = BTreeMap::new();
        for (key, t) in from {
            if let Some(name) = key.strip_prefix("sr.dynamic.") {
                reference.insert(
                    name.to_string(),
                    t.to_dtype(candle_core::DType::F64)?.to_vec1()?,
                );
            }
        }
        Ok(DynamicSr { reference })
    }
}

/// Runs the configured regularization over a discriminator's SN layers at the right moments:
/// the one holder of the run's [`SrMode`].
pub struct Regularizer {
    mode: SrMode,
    dynamic: DynamicSr,
}

impl Regularizer {
    /// A regularizer for `mode` with fresh dynamic state. Graph mode acts through the layers'
    /// forward, so it needs [`Regularizer::attach`] to a discriminator too.
    pub fn new(mode: SrMode) -> Self {
        Regularizer {
            mode,
            dynamic: DynamicSr::default(),
        }
    }

    /// Prepares a freshly built discriminator's SN `layers` for this mode. Graph mode gives
    /// every layer with `floor(i r) >= 2` its [`super::graph_sr::GraphSr`] state, from an exact SVD of its current
    /// (initial) weight, registering the bases in the discriminator's `store`; other layers stay
    /// plain SN. The other modes keep no per-layer state: nothing to do. No random draws, so
    /// attaching after the build gives the same bits as building the state with each layer.
    pub fn attach(&self, store: &mut Store, layers: &[&SpectralNorm]) -> Result<()> {
        if let SrMode::Graph { i } = self.mode {
            for layer in layers {
                layer.attach_graph(store, i)?;
            }
        }
        Ok(())
    }

    /// The configured mode.
    pub fn mode(&self) -> &SrMode {
        &self.mode
    }

    /// Before a D step: graph mode refreshes every layer's triplets by one subspace iteration.
    pub fn before_d_step(&self, layers: &[&SpectralNorm]) -> Result<()> {
        for layer in layers {
            if let Some(g) = layer.graph() {
                g.refresh(layer.name(), layer.weight())?;
            }
        }
        Ok(())
    }

    /// After a D optimizer step of G-iteration `iteration`: static/dynamic projection if due.
    pub fn after_d_step(&mut self, iteration: u64, layers: &[&SpectralNorm]) -> Result<()> {
        match &self.mode {
            SrMode::Static { i, every, start }
                if iteration >= *start && iteration.is_multiple_of(*every) =>
            {
                for layer in layers {
                    project_static(layer, *i)?;
                }
            }
            SrMode::Dynamic { every, start }
                if iteration >= *start && iteration.is_multiple_of(*every) =>
            {
                for layer in layers {
                    self.dynamic.apply(layer)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The dynamic running maxima (empty for other modes).
    pub fn dynamic(&self) -> &DynamicSr {
        &self.dynamic
    }

    /// Restores the dynamic running maxima from a checkpoint.
    pub fn set_dynamic(&mut self, dynamic: DynamicSr) {
        self.dynamic = dynamic;
    }
}
