//! Spectral normalization (Miyato et al. 2018) of one weight, as the official Chainer code runs it.
//!
//! What this module decides, and what must never change silently:
//!
//! - A weight of shape `d_out x ...` is viewed as the matrix `d_out x (d_in kh kw)` (row-major,
//!   exactly `W.reshape(d_out, -1)`), for convs and linears alike.
//! - One power iteration per training forward: `v = l2n(W^T u)`, `u' = l2n(W v)` with
//!   `l2n(x) = x / (|x| + 1e-12)`, computed on a detached copy of `W`, so **no gradient flows
//!   through `u` or `v`**. Then `sigma = u'^T W v` is built **inside** the autograd graph, so the
//!   gradient reaching `W` is the paper's Eq. 12, `(E_ij - [u v^T]_ij W_bar) / sigma`.
//! - `u` is a persistent buffer (saved in checkpoints, never optimized), advanced on every
//!   forward with `train = true` (so a D step with a real and a fake forward advances it twice,
//!   as the official updater does). With `train = false` it is read but not written.
//! - `u` starts as a standard-normal draw, not normalized (normalizing changes nothing since `v`
//!   is normalized first).
//! - Graph-mode spectral regularization ([`GraphSr`], its own module) plugs in here: it adds its
//!   `dW` to the numerator, `W_SR = (W + dW) / sigma`, with the same `sigma`. A layer is built
//!   as plain SN; graph state is attached to it afterwards, once, by the regularizer that holds
//!   the run's `sr` setting ([`super::spectral_reg::Regularizer::attach`]), so the setting never
//!   travels through the model builders. This module knows only the term, not the setting: it
//!   imports [`super::graph_sr`] and nothing of [`super::spectral_reg`], which builds on it.

use std::cell::OnceCell;

use candle_core::{Tensor, Var};

use super::graph_sr::GraphSr;
use super::{NnError, Result, Store};

/// `x / (|x|_2 + 1e-12)` for a column vector (the Chainer/PyTorch epsilon).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_all()?.sqrt()?.affine(1.0, 1e-12)?;
    Ok(x.broadcast_div(&norm)?)
}

/// One spectrally normalized weight.
pub struct SpectralNorm {
    name: String,
    weight: Var,
    u: Var,
    /// Set at most once: at construction, or by [`SpectralNorm::attach_graph`] after the model
    /// is built (layers are shared as `Rc`, hence the cell).
    graph: OnceCell<GraphSr>,
}

impl SpectralNorm {
    /// Wraps `weight` with its persistent `u` buffer (shape `d_out x 1`) and, for graph-mode SR,
    /// its regularizer state.
    pub fn new(name: &str, weight: Var, u: Var, graph: Option<GraphSr>) -> Self {
        SpectralNorm {
            name: name.to_string(),
            weight,
            u,
            graph: graph.map(OnceCell::from).unwrap_or_default(),
        }
    }

    /// Gives the layer graph-mode SR at fraction `i`, turning its forward into
    /// `(W + dW) / sigma`: [`GraphSr::new`] from the current weight, its bases registered in
    /// `store`; nothing when `floor(i r) <= 1`. A layer takes this once: a second call is an
    /// error, checked before anything is registered, rather than a silent swap of the bases.
    pub fn attach_graph(&self, store: &mut Store, i: f64) -> Result<()> {
        if self.graph.get().is_some() {
            return Err(NnError::Unsupported {
                model: self.name.clone(),
                what: "a second graph-SR state".to_string(),
                hint: "attach a regularizer to a discriminator once".to_string(),
            });
        }
        if let Some(graph) = GraphSr::new(store, &self.name, &self.weight, i)? {
            // Empty, checked above: `set` cannot fail.
            let _ = self.graph.set(graph);
        }
        Ok(())
    }

    /// The layer's name (`block4.c2`): the key of its spectra and SR state.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw weight `W` (the optimized parameter).
    pub fn weight(&self) -> &Var {
        &self.weight
    }

    /// The current `u` estimate of the top left singular vector.
    pub fn u(&self) -> &Var {
        &self.u
    }

    /// The graph-mode SR state, if this layer has one.
    pub fn graph(&self) -> Option<&GraphSr> {
        self.graph.get()
    }

    /// `(d_out, d_in kh kw)`: the matrix view of the weight.
    pub fn matrix_dims(&self) -> (usize, usize) {
        let rows = self.weight.dims()[0];
        (rows, self.weight.elem_count() / rows)
    }

    fn matrix(&self) -> Result<Tensor> {
        Ok(self.weight.as_tensor().reshape(self.matrix_dims())?)
    }

    /// One power iteration from the stored `u` on a detached `W`: `(u', v)`.
    fn power_step(&self, wm: &Tensor) -> Result<(Tensor, Tensor)> {
        let wd = wm.detach();
        let u = self.u.as_tensor().detach();
        let v = l2_normalize(&wd.t()?.matmul(&u)?)?;
        let u_new = l2_normalize(&wd.matmul(&v)?)?;
        Ok((u_new, v))
    }

    /// The normalized weight `W / sigma` (or `(W + dW) / sigma` in graph SR), shaped like `W`,
    /// with the gradient flowing to `W` through `sigma`. `train` advances `u`.
    pub fn normalized(&self, train: bool) -> Result<Tensor> {
        let wm = self.matrix()?;
        let (u_new, v) = self.power_step(&wm)?;
        if train {
            self.u.set(&u_new)?;
        }
        // sigma = u'^T W v: u' and v are constants of the graph, W is not.
        match self.graph.get() {
            Some(g) => {
                let sigma = u_new.t()?.matmul(&wm)?.matmul(&v)?;
                Ok(g.add_delta(&wm, &sigma)?
                    .broadcast_div(&sigma)?
                    .reshape(self.weight.shape())?)
            }
            // `wm.broadcast_div(&sigma)` reshaped like `W`, to the bit, as one graph node whose
            // backward is a few parallel passes rather than a dozen serial ones.
            None => Ok(kernels::spectral_divide(
                self.weight.as_tensor(),
                &u_new,
                &v,
            )?),
        }
    }

    /// `sigma = u'^T W v` after one power step from the stored `u`, without updating `u` and
    /// outside the graph: the estimate the next forward would divide by.
    pub fn sigma_estimate(&self) -> Result<f64> {
        let wm = self.matrix()?.detach();
        let (u_new, v) = self.power_step(&wm)?;
        Ok(u_new
            .t()?
            .matmul(&wm)?
            .matmul(&v)?
            .flatten_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?[0])
    }
}
