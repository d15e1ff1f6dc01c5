//! Graph-mode spectral regularization of one layer (Liu et al. 2019, §4): the state it keeps and
//! the term it adds inside the SN forward, `W_SR = (W + dW) / sigma`.
//!
//! Why this is a module of its own: graph SR acts in two places. Its term is part of the SN
//! forward ([`super::spectral_norm`] calls [`GraphSr::add_delta`] with SN's own `sigma`), and
//! its state is created and refreshed by the regularizer ([`super::spectral_reg`], which builds on
//! SN). Both import this module and it imports neither, so the imports of `nn/` run one way:
//! `spectral_reg -> spectral_norm -> graph_sr`, and `spectral_reg -> graph_sr`.
//!
//! What must never change silently:
//!
//! - `dW = sum_{j=2..k} (sigma_1 - sigma_j) u_j v_j^T` with `k = floor(i r)`
//!   ([`pinned_count`]), `sigma_j = u_j^T W v_j` computed **inside** the autograd graph and
//!   `u_j`, `v_j` detached buffers, so the gradient is the paper's. `sigma_1` is the SN estimate.
//! - The bases start from an exact SVD of the initial weight and are refreshed by one
//!   warm-started subspace iteration per D step ([`GraphSr::refresh`], called by the regularizer).
//! - They are buffers named `NAME.sr_u` (`d_out x k`) and `NAME.sr_v` (`rest x k`) in the
//!   network's [`Store`], so checkpoints hold them.
//! - `floor(i r) <= 1` makes no state at all: the layer is then plain SN, bit for bit.

use candle_core::{Tensor, Var};

use super::linalg;
use super::{Result, Store};

/// How many singular values regularization pins or compensates: `floor(i r)`.
///
/// The one count of SR: graph mode's `k` here, static mode's pinned head
/// ([`super::spectral_reg::project_static`]) and the spectra summary's tail start all use it. It
/// lives in this module because it is the lowest one that needs it.
pub fn pinned_count(i: f64, rank: usize) -> usize {
    (i * rank as f64).floor().max(0.0) as usize
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
