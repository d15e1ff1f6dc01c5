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

use std::collections::BTreeMap;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use super::linalg;
use super::spectral_norm::SpectralNorm;
use super::{Result, Store};

/// How many singular values regularization pins or compensates: `floor(i r)`.
pub fn pinned_count(i: f64, rank: usize) -> usize {
    (i * rank as f64).floor().max(0.0) as usize
}

fn default_i() -> f64 {
    0.5
}
fn default_every() -> u64 {
    5
}

/// The `sr:` setting of a run. Its JSON form (`Serialize`: `{"mode": ..., fields}`) is part of
/// a checkpoint's identity, so renaming a field means bumping `train-gan`.
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
    /// The fraction `i` a graph-mode layer compensates, if this is graph mode.
    pub fn graph_fraction(&self) -> Option<f64> {
        match self {
            SrMode::Graph { i } => Some(*i),
            _ => None,
        }
    }

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

/// Graph-mode SR state of one layer: the top-k singular triplets' vectors, as buffers.
pub struct GraphSr {
    k: usize,
    u_k: Var,
    v_k: Var,
}

impl GraphSr {
    /// Registers `NAME.sr_u` (d_out x k) and `NAME.sr_v` (rest x k), initialised from an exact
    /// SVD of `weight`. `None` when `floor(i r) <= 1`: the layer is then plain SN.
    pub fn new(store: &mut Store, name: &str, weight: &Var, i: f64) -> Result<Option<GraphSr>> {
        let m = linalg::to_mat(weight.as_tensor())?;
        let k = pinned_count(i, m.nrows().min(m.ncols()));
        if k <= 1 {
            return Ok(None);
        }
        let (u, _, v) = linalg::thin_svd(&m, name)?;
        let (dt, dev) = (store.dtype(), store.device().clone());
        let u_k = linalg::from_mat(&u.subcols(0, k).to_owned(), &[m.nrows(), k], dt, &dev)?;
        let v_k = linalg::from_mat(&v.subcols(0, k).to_owned(), &[m.ncols(), k], dt, &dev)?;
        let u_k = store.buffer_from(&format!("{name}.sr_u"), &u_k)?;
        let v_k = store.buffer_from(&format!("{name}.sr_v"), &v_k)?;
        Ok(Some(GraphSr { k, u_k, v_k }))
    }

    /// How many triplets are tracked (`floor(i r)`).
    pub fn k(&self) -> usize {
        self.k
    }

    /// `W + sum_{j=2..k} (sigma - sigma_j) u_j v_j^T` with `sigma_j = u_j^T W v_j` in the graph.
    pub fn add_delta(&self, wm: &Tensor, sigma: &Tensor) -> Result<Tensor> {
        let u = self.u_k.as_tensor().detach().narrow(1, 1, self.k - 1)?;
        let v = self.v_k.as_tensor().detach().narrow(1, 1, self.k - 1)?;
        // sigma_j = (U^T W)_j . v_j, one per column: shape (1, k-1).
        let sig = (u.t()?.matmul(wm)? * v.t()?)?.sum_keepdim(1)?.t()?;
        let coef = sig.neg()?.broadcast_add(sigma)?;
        let delta = u.broadcast_mul(&coef)?.matmul(&v.t()?)?;
        Ok((wm + delta)?)
    }

    /// One warm-started subspace iteration on `weight`, refreshing `u_k`, `v_k`.
    pub fn refresh(&self, name: &str, weight: &Var) -> Result<()> {
        let m = linalg::to_mat(weight.as_tensor())?;
        let v_prev = linalg::to_mat(self.v_k.as_tensor())?;
        let (u, _, v) = linalg::subspace_step(&m, &v_prev, name)?;
        linalg::set_var(&self.u_k, &u)?;
        linalg::set_var(&self.v_k, &v)
    }

    /// The tracked bases `(U_k, V_k)` as tensors.
    pub fn bases(&self) -> (Tensor, Tensor) {
        (self.u_k.as_tensor().detach(), self.v_k.as_tensor().detach())
    }
}

/// Runs the configured regularization over a discriminator's SN layers at the right moments.
pub struct Regularizer {
    mode: SrMode,
    dynamic: DynamicSr,
}

impl Regularizer {
    /// A regularizer for `mode` with fresh dynamic state.
    pub fn new(mode: SrMode) -> Self {
        Regularizer {
            mode,
            dynamic: DynamicSr::default(),
        }
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
